/*
 * test_seal.c — unit tests for src/membership/seal.c: round trips (small, empty,
 * compressed, incompressible, the size limits), every single-bit flip and every
 * truncation of a sealed datagram refused (and nothing committed by the
 * failures), wrong keys, key rotation, the replay window (duplicates, out of
 * order, older than the window, restarted senders), stale timestamps, distinct
 * nonces, a flood of 100 000 senders against the bounded table, and LZ4 bombs.
 *
 * Datagrams that seal.c would never produce (a lying length, a bad LZ4 block,
 * 100 000 sender ids) are built by craft(): an independent AES-256-GCM sealer
 * holding the real key, written from the format in seal.h.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lz4.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "membership/seal.h"

#define NOW 1700000000000ull /* a fixed wall clock for every test */

static const uint8_t key1[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t key2[32] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa,
                                 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5,
                                 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf};
static const uint8_t key3[32] = {0x33};

static uint8_t pkt[P2P_SEAL_MAX_PACKET + 16];
static uint8_t out[P2P_SEAL_MAX_PAYLOAD];

static p2p__seal_ctx *ctx_new(const uint8_t *key, const char *id)
{
    p2p__seal_ctx *c = p2p__seal_new(key, id, NULL);
    assert_non_null(c);
    return c;
}

static p2p__seal_ctx *ctx_epoch(const uint8_t *key, const char *id, uint64_t epoch)
{
    p2p__seal_opts o = {.epoch = epoch};
    p2p__seal_ctx *c = p2p__seal_new(key, id, &o);
    assert_non_null(c);
    return c;
}

static size_t seal_ok(p2p__seal_ctx *c, const void *payload, size_t len, uint8_t *dst)
{
    size_t n = 0;
    assert_int_equal(p2p__seal(c, NOW, payload, len, dst, P2P_SEAL_MAX_PACKET, &n), 0);
    assert_true(n <= len + P2P_SEAL_OVERHEAD);
    return n;
}

static void open_ok(p2p__seal_ctx *c, const uint8_t *p, size_t n, const void *payload, size_t len)
{
    size_t got = 12345;
    int r = p2p__seal_open(c, NOW, p, n, out, sizeof out, &got, NULL);
    if (r != 0)
        fail_msg("open failed: %s", p2p__seal_strerror(r));
    assert_int_equal(got, len);
    if (len)
        assert_memory_equal(out, payload, len);
}

static int open_rc(p2p__seal_ctx *c, const uint8_t *p, size_t n)
{
    size_t got = 0;
    return p2p__seal_open(c, NOW, p, n, out, sizeof out, &got, NULL);
}

static p2p__seal_stats stats(const p2p__seal_ctx *c)
{
    p2p__seal_stats s;
    p2p__seal_get_stats(c, &s);
    return s;
}

static uint64_t drops(const p2p__seal_stats *s)
{
    return s->dropped_malformed + s->dropped_auth + s->dropped_replay + s->dropped_stale + s->dropped_oversize;
}

static uint64_t drops_of(const p2p__seal_ctx *c)
{
    p2p__seal_stats s = stats(c);
    return drops(&s);
}

static void fill_random(uint8_t *p, size_t n)
{
    assert_int_equal(RAND_bytes(p, (int)n), 1);
}

/* ---- an independent sealer for datagrams seal.c would never write ------------------------- */

typedef struct inner {
    uint64_t sender, epoch, seq, sent_ms;
    uint32_t plen;
    uint64_t cert;
} inner;

static void be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static size_t craft(const uint8_t *key, uint8_t flags, const inner *in, const void *body, size_t body_len, uint8_t *dst)
{
    static uint64_t counter;
    uint8_t plain[P2P_SEAL_MAX_PACKET];
    be(plain, in->sender, 8);
    be(plain + 8, in->epoch, 8);
    be(plain + 16, in->seq, 8);
    be(plain + 24, in->sent_ms, 8);
    be(plain + 32, in->cert, 8);
    be(plain + 40, in->plen, 4);
    if (body_len)
        memcpy(plain + 44, body, body_len);
    size_t plain_len = 44 + body_len;

    dst[0] = 2;
    dst[1] = flags;
    be(dst + 2, p2p__seal_key_id(key), 4);
    memset(dst + 6, 0x77, 4);
    be(dst + 10, ++counter, 8);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0;
    assert_non_null(c);
    assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, dst + 6), 1);
    assert_int_equal(EVP_EncryptUpdate(c, NULL, &n, dst, 18), 1);
    assert_int_equal(EVP_EncryptUpdate(c, dst + 18, &n, plain, (int)plain_len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, dst + 18 + plain_len, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, dst + 18 + plain_len), 1);
    EVP_CIPHER_CTX_free(c);
    return 18 + plain_len + 16;
}

static inner fresh(uint64_t sender, uint64_t seq, uint32_t plen)
{
    return (inner){.sender = sender, .epoch = 7, .seq = seq, .sent_ms = NOW, .plen = plen};
}

/* ---- round trips --------------------------------------------------------------------------- */

static void test_round_trip_small(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_epoch(key1, "node-a", 4242);
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    const char msg[] = "ping from a";
    size_t n = seal_ok(a, msg, sizeof msg, pkt);
    assert_int_equal(n, sizeof msg + P2P_SEAL_OVERHEAD);
    assert_int_equal(pkt[0], P2P_SEAL_VERSION);
    assert_int_equal(pkt[1], 0);
    assert_null(memmem(pkt, n, msg, 4)); /* not in the clear */

    p2p__seal_sender s = {0};
    size_t got = 0;
    assert_int_equal(p2p__seal_open(b, NOW + 5, pkt, n, out, sizeof out, &got, &s), 0);
    assert_int_equal(got, sizeof msg);
    assert_memory_equal(out, msg, sizeof msg);
    assert_true(s.id == p2p__seal_sender_id("node-a"));
    assert_true(s.id != p2p__seal_sender_id("node-b"));
    assert_int_equal(s.epoch, 4242);
    assert_int_equal(s.seq, 1);
    assert_true(s.sent_ms == NOW);

    /* empty payloads, and an exact-size output buffer */
    n = seal_ok(a, NULL, 0, pkt);
    assert_int_equal(n, P2P_SEAL_OVERHEAD);
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, NULL, 0, &got, &s), 0);
    assert_int_equal(got, 0);
    assert_int_equal(s.seq, 2);
    n = seal_ok(a, msg, sizeof msg, pkt);
    uint8_t exact[sizeof msg];
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, exact, sizeof exact, &got, NULL), 0);
    assert_memory_equal(exact, msg, sizeof msg);

    p2p__seal_stats st = stats(a);
    assert_int_equal(st.sealed, 3);
    assert_int_equal(st.compressed, 0);
    st = stats(b);
    assert_int_equal(st.opened, 3);
    assert_int_equal(drops(&st), 0);
    assert_int_equal(st.senders, 1);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

static void test_round_trip_large(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    static uint8_t big[P2P_SEAL_MAX_PAYLOAD + 1];

    /* compressible: gossip-like text */
    for (size_t i = 0; i < 8192; i++)
        big[i] = (uint8_t) "{\"id\":\"node-17\",\"state\":\"alive\",\"inc\":3}"[i % 40];
    size_t n = seal_ok(a, big, 8192, pkt);
    assert_true(n < 2048);
    assert_int_equal(pkt[1], P2P_SEAL_FLAG_LZ4);
    open_ok(b, pkt, n, big, 8192);

    /* at the threshold: not compressed; one above: compressed */
    n = seal_ok(a, big, P2P_SEAL_DEFAULT_COMPRESS_THRESHOLD, pkt);
    assert_int_equal(pkt[1], 0);
    open_ok(b, pkt, n, big, P2P_SEAL_DEFAULT_COMPRESS_THRESHOLD);
    n = seal_ok(a, big, P2P_SEAL_DEFAULT_COMPRESS_THRESHOLD + 1, pkt);
    assert_int_equal(pkt[1], P2P_SEAL_FLAG_LZ4);
    open_ok(b, pkt, n, big, P2P_SEAL_DEFAULT_COMPRESS_THRESHOLD + 1);

    /* the largest payload, compressible */
    memset(big, 'z', P2P_SEAL_MAX_PAYLOAD);
    n = seal_ok(a, big, P2P_SEAL_MAX_PAYLOAD, pkt);
    open_ok(b, pkt, n, big, P2P_SEAL_MAX_PAYLOAD);
    size_t dummy;
    assert_int_equal(p2p__seal(a, NOW, big, P2P_SEAL_MAX_PAYLOAD + 1, pkt, sizeof pkt, &dummy), -EMSGSIZE);

    /* incompressible: sent raw, up to the largest datagram */
    fill_random(big, P2P_SEAL_MAX_PAYLOAD);
    n = seal_ok(a, big, 1000, pkt);
    assert_int_equal(pkt[1], 0);
    assert_int_equal(n, 1000 + P2P_SEAL_OVERHEAD);
    open_ok(b, pkt, n, big, 1000);
    n = seal_ok(a, big, P2P_SEAL_MAX_RAW_PAYLOAD, pkt);
    assert_int_equal(n, P2P_SEAL_MAX_PACKET);
    open_ok(b, pkt, n, big, P2P_SEAL_MAX_RAW_PAYLOAD);
    assert_int_equal(p2p__seal(a, NOW, big, P2P_SEAL_MAX_RAW_PAYLOAD + 1, pkt, sizeof pkt, &dummy), -EMSGSIZE);

    /* output buffers too small: refused, not counted, nothing committed */
    assert_int_equal(p2p__seal(a, NOW, big, 100, pkt, 100 + P2P_SEAL_OVERHEAD - 1, &dummy), -ENOBUFS);
    n = seal_ok(a, big, 100, pkt);
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, out, 99, &dummy, NULL), -ENOBUFS);
    open_ok(b, pkt, n, big, 100);

    /* compression off */
    p2p__seal_opts o = {.compress_threshold = SIZE_MAX};
    p2p__seal_ctx *raw = p2p__seal_new(key1, "node-raw", &o);
    memset(big, 0, 4096);
    n = seal_ok(raw, big, 4096, pkt);
    assert_int_equal(pkt[1], 0);
    open_ok(b, pkt, n, big, 4096);

    p2p__seal_stats st = stats(a);
    assert_int_equal(st.compressed, 3);
    assert_int_equal(drops_of(b), 0);
    p2p__seal_free(raw);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    size_t n;
    assert_null(p2p__seal_new(NULL, "x", NULL));
    assert_null(p2p__seal_new(key1, NULL, NULL));
    assert_null(p2p__seal_new(key1, "", NULL));
    p2p__seal_opts o = {.max_senders = P2P_SEAL_MAX_MAX_SENDERS + 1};
    assert_null(p2p__seal_new(key1, "x", &o));
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    assert_int_equal(p2p__seal(NULL, NOW, "x", 1, pkt, sizeof pkt, &n), -EINVAL);
    assert_int_equal(p2p__seal(a, NOW, NULL, 1, pkt, sizeof pkt, &n), -EINVAL);
    assert_int_equal(p2p__seal(a, NOW, "x", 1, NULL, sizeof pkt, &n), -EINVAL);
    assert_int_equal(p2p__seal_open(a, NOW, NULL, 5, out, sizeof out, &n, NULL), -EINVAL);
    assert_int_equal(p2p__seal_open(a, NOW, pkt, 5, out, sizeof out, NULL, NULL), -EINVAL);
    assert_int_equal(drops_of(a), 0);
    p2p__seal_free(a);
    p2p__seal_free(NULL);

    /* every error has its own code and name */
    const int codes[] = {P2P_SEAL_EOVERSIZE, P2P_SEAL_ESHORT, P2P_SEAL_EVERSION, P2P_SEAL_EFLAGS,
                         P2P_SEAL_EKEYID,    P2P_SEAL_EAUTH,  P2P_SEAL_EBODY,    P2P_SEAL_EREPLAY,
                         P2P_SEAL_EREFLECT,  P2P_SEAL_ESTALE, -ENOBUFS,          -EINVAL};
    size_t nc = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < nc; i++) {
        assert_true(codes[i] < 0);
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(p2p__seal_strerror(codes[i]), p2p__seal_strerror(codes[j]));
        }
    }
}

/* ---- tampering ----------------------------------------------------------------------------- */

/* The error a flip of bit `bit` of byte `i` must produce. */
static int expected_flip(size_t i, int bit)
{
    if (i == 0)
        return P2P_SEAL_EVERSION;
    if (i == 1)
        return bit == 0 ? P2P_SEAL_EAUTH : P2P_SEAL_EFLAGS;
    if (i < 6)
        return P2P_SEAL_EKEYID;
    return P2P_SEAL_EAUTH;
}

static void flip_every_bit(p2p__seal_ctx *b, uint8_t *p, size_t n, const void *payload, size_t len)
{
    p2p__seal_stats before = stats(b);
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1u << bit);
            int r = open_rc(b, p, n);
            if (r != expected_flip(i, bit))
                fail_msg("flip of byte %zu bit %d: got %d (%s)", i, bit, r, p2p__seal_strerror(r));
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    p2p__seal_stats after = stats(b);
    assert_int_equal(drops(&after) - drops(&before), n * 8);
    assert_int_equal(after.opened, before.opened);
    assert_int_equal(after.senders, before.senders);
    open_ok(b, p, n, payload, len); /* the failures committed nothing */
}

static void test_flip_every_bit(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    const char msg[] = "suspect node-c incarnation 9";
    size_t n = seal_ok(a, msg, sizeof msg, pkt);
    flip_every_bit(b, pkt, n, msg, sizeof msg);

    uint8_t big[3000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i % 97 < 50 ? 'a' : i % 13);
    n = seal_ok(a, big, sizeof big, pkt);
    assert_int_equal(pkt[1], P2P_SEAL_FLAG_LZ4);
    flip_every_bit(b, pkt, n, big, sizeof big);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

static void test_truncate_every_length(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    uint8_t big[2000];
    memset(big, 'q', sizeof big);
    size_t lens[] = {0, 20, sizeof big};
    for (size_t k = 0; k < 3; k++) {
        size_t n = seal_ok(a, big, lens[k], pkt);
        for (size_t cut = 0; cut < n; cut++) {
            int r = open_rc(b, pkt, cut);
            assert_int_equal(r, cut < P2P_SEAL_OVERHEAD ? P2P_SEAL_ESHORT : P2P_SEAL_EAUTH);
        }
        pkt[n] = 0; /* one byte too many */
        assert_int_equal(open_rc(b, pkt, n + 1), P2P_SEAL_EAUTH);
        open_ok(b, pkt, n, big, lens[k]);
    }
    p2p__seal_stats st = stats(b);
    assert_int_equal(st.opened, 3);
    assert_true(st.dropped_malformed == 3 * P2P_SEAL_OVERHEAD);

    /* wrong version, oversize */
    size_t n = seal_ok(a, "x", 1, pkt);
    pkt[0] = 1; /* version 1: no certificate id */
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EVERSION);
    assert_int_equal(open_rc(b, pkt, 1), P2P_SEAL_EVERSION);
    assert_int_equal(open_rc(b, pkt, P2P_SEAL_MAX_PACKET + 1), P2P_SEAL_EOVERSIZE);
    st = stats(b);
    assert_int_equal(st.dropped_oversize, 1);
    assert_true(st.dropped_malformed == 3 * P2P_SEAL_OVERHEAD + 2);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

/* ---- keys ---------------------------------------------------------------------------------- */

static void test_wrong_key(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key2, "node-b");
    size_t n = seal_ok(a, "hello", 5, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EKEYID);
    /* the right key id but another key: the tag fails */
    uint32_t id = p2p__seal_key_id(key2);
    pkt[2] = (uint8_t)(id >> 24), pkt[3] = (uint8_t)(id >> 16), pkt[4] = (uint8_t)(id >> 8), pkt[5] = (uint8_t)id;
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EAUTH);
    p2p__seal_stats st = stats(b);
    assert_int_equal(st.dropped_auth, 2);
    assert_int_equal(st.opened, 0);
    assert_int_equal(st.senders, 0);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

static void test_key_rotation(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *late = ctx_new(key1, "node-late"); /* has not rotated yet */
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    assert_true(p2p__seal_key_id(key1) != p2p__seal_key_id(key2));

    assert_int_equal(p2p__seal_add_key(a, key2), 0);
    assert_int_equal(p2p__seal_add_key(a, key2), 0); /* idempotent */
    assert_int_equal(p2p__seal_key_count(a), 2);
    assert_int_equal(p2p__seal_set_primary(a, key2), 0);
    size_t n = seal_ok(a, "new", 3, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EKEYID); /* b has not got key2 yet */
    assert_int_equal(p2p__seal_add_key(b, key2), 0);
    open_ok(b, pkt, n, "new", 3);

    /* the old key still opens while it is in the ring */
    n = seal_ok(late, "old", 3, pkt);
    open_ok(b, pkt, n, "old", 3);
    open_ok(a, pkt, n, "old", 3);

    /* removed: no longer opens; the primary cannot be removed */
    assert_int_equal(p2p__seal_remove_key(b, key1), -EBUSY);
    assert_int_equal(p2p__seal_set_primary(b, key2), 0);
    assert_int_equal(p2p__seal_remove_key(b, key1), 0);
    assert_int_equal(p2p__seal_remove_key(b, key1), -ENOENT);
    assert_int_equal(p2p__seal_set_primary(b, key1), -ENOENT);
    n = seal_ok(late, "old", 3, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EKEYID);
    n = seal_ok(a, "new", 3, pkt);
    open_ok(b, pkt, n, "new", 3);

    /* the ring is bounded */
    uint8_t k[32];
    for (int i = 0; i < P2P_SEAL_MAX_KEYS - 1; i++) {
        memset(k, 0x40 + i, sizeof k);
        assert_int_equal(p2p__seal_add_key(b, k), 0);
    }
    assert_int_equal(p2p__seal_key_count(b), P2P_SEAL_MAX_KEYS);
    assert_int_equal(p2p__seal_add_key(b, key3), -ENOSPC);
    p2p__seal_free(a);
    p2p__seal_free(late);
    p2p__seal_free(b);
}

/* ---- replay -------------------------------------------------------------------------------- */

static void test_replay_same_packet(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    size_t n = seal_ok(a, "ack", 3, pkt);
    open_ok(b, pkt, n, "ack", 3);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EREPLAY);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EREPLAY);
    p2p__seal_stats st = stats(b);
    assert_int_equal(st.opened, 1);
    assert_int_equal(st.dropped_replay, 2);

    /* our own datagram sent back to us */
    n = seal_ok(b, "ping", 4, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EREFLECT);
    assert_int_equal(stats(b).dropped_replay, 3);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

static void test_window(void **state)
{
    (void)state;
    enum { N = 1100 };
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    static uint8_t pk[N][96];
    size_t len[N];
    for (int i = 0; i < N; i++) {
        len[i] = seal_ok(a, &i, sizeof i, pk[i]);
        assert_true(len[i] <= sizeof pk[i]);
    }
    /* out of order within the window: each accepted exactly once */
    for (int i = 9; i >= 0; i--)
        open_ok(b, pk[i], len[i], &i, sizeof i);
    for (int i = 0; i < 10; i++)
        assert_int_equal(open_rc(b, pk[i], len[i]), P2P_SEAL_EREPLAY);

    /* jump to seq 1100: 1100 - seq >= 1024 is older than the window */
    int last = N - 1;
    open_ok(b, pk[last], len[last], &last, sizeof last);
    int edge = N - P2P_SEAL_REPLAY_WINDOW; /* seq edge + 1 = 77, the oldest still inside */
    assert_int_equal(open_rc(b, pk[edge - 1], len[edge - 1]), P2P_SEAL_EREPLAY);
    open_ok(b, pk[edge], len[edge], &edge, sizeof edge);
    assert_int_equal(open_rc(b, pk[edge], len[edge]), P2P_SEAL_EREPLAY);
    for (int i = edge + 1; i < last; i++)
        open_ok(b, pk[i], len[i], &i, sizeof i);
    for (int i = 0; i < N; i++)
        assert_int_equal(open_rc(b, pk[i], len[i]), P2P_SEAL_EREPLAY);

    /* a big jump clears the whole window */
    size_t n = 0;
    for (int i = 0; i < 5000; i++)
        n = seal_ok(a, "x", 1, pkt);
    open_ok(b, pkt, n, "x", 1);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EREPLAY);
    n = seal_ok(a, "y", 1, pkt);
    open_ok(b, pkt, n, "y", 1);
    p2p__seal_free(a);
    p2p__seal_free(b);
}

static void test_restarted_sender(void **state)
{
    (void)state;
    p2p__seal_ctx *old = ctx_epoch(key1, "node-a", 1000);
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    uint8_t old_pkt[128];
    size_t n1 = seal_ok(old, "one", 3, pkt);
    size_t n2 = seal_ok(old, "two", 3, old_pkt);
    open_ok(b, pkt, n1, "one", 3);

    /* node-a restarts: a new epoch, its sequence starts over */
    p2p__seal_ctx *now = ctx_epoch(key1, "node-a", 2000);
    size_t n = seal_ok(now, "restarted", 9, pkt);
    p2p__seal_sender s;
    size_t got;
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, out, sizeof out, &got, &s), 0);
    assert_int_equal(s.epoch, 2000);
    assert_int_equal(s.seq, 1);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EREPLAY);
    /* the old epoch is over, even for a sequence number never seen */
    assert_int_equal(open_rc(b, old_pkt, n2), P2P_SEAL_EREPLAY);
    n = seal_ok(now, "again", 5, pkt);
    open_ok(b, pkt, n, "again", 5);
    assert_int_equal(stats(b).senders, 1);
    p2p__seal_free(old);
    p2p__seal_free(now);
    p2p__seal_free(b);
}

static void test_stale_timestamp(void **state)
{
    (void)state;
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    size_t got;
    const uint64_t skew = P2P_SEAL_DEFAULT_MAX_SKEW_MS;
    size_t n = seal_ok(a, "t", 1, pkt); /* stamped NOW */
    assert_int_equal(p2p__seal_open(b, NOW + skew + 1, pkt, n, out, sizeof out, &got, NULL), P2P_SEAL_ESTALE);
    assert_int_equal(p2p__seal_open(b, NOW - skew - 1, pkt, n, out, sizeof out, &got, NULL), P2P_SEAL_ESTALE);
    assert_int_equal(p2p__seal_open(b, 0, pkt, n, out, sizeof out, &got, NULL), P2P_SEAL_ESTALE);
    assert_int_equal(p2p__seal_open(b, UINT64_MAX, pkt, n, out, sizeof out, &got, NULL), P2P_SEAL_ESTALE);
    assert_int_equal(stats(b).dropped_stale, 4);
    assert_int_equal(p2p__seal_open(b, NOW + skew, pkt, n, out, sizeof out, &got, NULL), 0);

    /* the receiver restarts and forgets its windows: an old capture is still refused */
    p2p__seal_ctx *b2 = ctx_new(key1, "node-b");
    assert_int_equal(p2p__seal_open(b2, NOW + 10 * 60 * 1000, pkt, n, out, sizeof out, &got, NULL), P2P_SEAL_ESTALE);

    /* a tighter skew */
    p2p__seal_opts o = {.max_skew_ms = 1000};
    p2p__seal_ctx *c = p2p__seal_new(key1, "node-c", &o);
    n = seal_ok(a, "t", 1, pkt);
    assert_int_equal(p2p__seal_open(c, NOW + 1001, pkt, n, out, sizeof out, &got, NULL), P2P_SEAL_ESTALE);
    assert_int_equal(p2p__seal_open(c, NOW - 1000, pkt, n, out, sizeof out, &got, NULL), 0);
    p2p__seal_free(a);
    p2p__seal_free(b);
    p2p__seal_free(b2);
    p2p__seal_free(c);
}

static int cmp_nonce(const void *x, const void *y)
{
    return memcmp(x, y, P2P_SEAL_NONCE_LEN);
}

static void test_nonces_distinct(void **state)
{
    (void)state;
    enum { N = 10000 };
    p2p__seal_ctx *a = ctx_new(key1, "node-a");
    p2p__seal_ctx *a2 = ctx_new(key1, "node-a2");
    static uint8_t nonces[N + 1][P2P_SEAL_NONCE_LEN];
    for (int i = 0; i < N; i++) {
        seal_ok(a, "same payload", 12, pkt);
        memcpy(nonces[i], pkt + 6, P2P_SEAL_NONCE_LEN);
    }
    seal_ok(a2, "same payload", 12, pkt);
    memcpy(nonces[N], pkt + 6, P2P_SEAL_NONCE_LEN);
    qsort(nonces, N + 1, sizeof nonces[0], cmp_nonce);
    for (int i = 1; i <= N; i++)
        assert_true(memcmp(nonces[i - 1], nonces[i], P2P_SEAL_NONCE_LEN) != 0);
    p2p__seal_free(a);
    p2p__seal_free(a2);
}

/* ---- the bounded sender table -------------------------------------------------------------- */

static void test_sender_flood(void **state)
{
    (void)state;
    enum { N = 100000 };
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    p2p__seal_ctx *x = ctx_new(key1, "node-x"); /* a real member, active throughout */
    uint8_t x_pkt[128];
    size_t x_len = 0;
    const size_t bound = P2P_SEAL_DEFAULT_MAX_SENDERS * 256 + 64 * 1024;
    for (uint64_t i = 0; i < N; i++) {
        inner in = fresh(0x1000000 + i, 1, 1);
        size_t n = craft(key1, 0, &in, "f", 1, pkt);
        open_ok(b, pkt, n, "f", 1);
        if (i % 1000 == 0) {
            x_len = seal_ok(x, "x", 1, x_pkt);
            open_ok(b, x_pkt, x_len, "x", 1);
        }
        if (i % 10000 == 0)
            assert_true(p2p__seal_table_bytes(b) <= bound);
    }
    p2p__seal_stats st = stats(b);
    assert_int_equal(st.opened, N + N / 1000);
    assert_int_equal(st.senders, P2P_SEAL_DEFAULT_MAX_SENDERS);
    assert_int_equal(st.senders_evicted, N + 1 - P2P_SEAL_DEFAULT_MAX_SENDERS);
    assert_int_equal(drops(&st), 0);
    assert_true(p2p__seal_table_bytes(b) <= bound);

    /* the active member kept its window; the latest flood sender too */
    assert_int_equal(open_rc(b, x_pkt, x_len), P2P_SEAL_EREPLAY);
    inner in = fresh(0x1000000 + N - 1, 1, 1);
    size_t n = craft(key1, 0, &in, "f", 1, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EREPLAY);
    p2p__seal_free(x);
    p2p__seal_free(b);
}

/* ---- the inner header and LZ4 -------------------------------------------------------------- */

/* Replay windows are per certificate: another identity using the same node id
 * (an old or replaced certificate, an impostor) with a newer epoch and higher
 * sequence numbers does not get the real node's datagrams dropped. */
static void test_windows_per_certificate(void **state)
{
    (void)state;
    p2p__seal_ctx *real = p2p__seal_new(key1, "w1", NULL), *b = p2p__seal_new(key1, "b", NULL);
    p2p__seal_set_cert(real, 0x1111);
    static uint8_t imp[P2P_SEAL_MAX_PACKET];
    size_t n = seal_ok(real, "a", 1, pkt), len = 0;
    p2p__seal_sender snd;
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, out, sizeof out, &len, &snd), 0);
    assert_true(snd.cert == 0x1111 && snd.id == p2p__seal_sender_id("w1"));
    /* the impostor: same node id, its own certificate, far ahead */
    inner in = fresh(p2p__seal_sender_id("w1"), 1000000, 1);
    in.epoch = UINT64_C(1) << 62;
    in.cert = 0x2222;
    size_t m = craft(key1, 0, &in, "f", 1, imp);
    assert_int_equal(p2p__seal_open(b, NOW, imp, m, out, sizeof out, &len, NULL), 0);
    /* the real node goes on as before */
    for (int i = 0; i < 5; i++) {
        n = seal_ok(real, "a", 1, pkt);
        assert_int_equal(p2p__seal_open(b, NOW, pkt, n, out, sizeof out, &len, NULL), 0);
    }
    /* and within one certificate, replays are still replays */
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, out, sizeof out, &len, NULL), P2P_SEAL_EREPLAY);
    assert_int_equal(p2p__seal_open(b, NOW, imp, m, out, sizeof out, &len, NULL), P2P_SEAL_EREPLAY);
    /* a renewal (new certificate id) starts a new window at the receiver */
    p2p__seal_set_cert(real, 0x3333);
    n = seal_ok(real, "a", 1, pkt);
    assert_int_equal(p2p__seal_open(b, NOW, pkt, n, out, sizeof out, &len, &snd), 0);
    assert_true(snd.cert == 0x3333);
    p2p__seal_free(real);
    p2p__seal_free(b);
}

static void test_crafted_bodies(void **state)
{
    (void)state;
    p2p__seal_ctx *b = ctx_new(key1, "node-b");
    static uint8_t big[P2P_SEAL_MAX_PAYLOAD];
    static char lz[LZ4_COMPRESSBOUND(P2P_SEAL_MAX_PAYLOAD)];
    uint64_t seq = 1;
    size_t n;

    /* the crafter is right: a good raw and a good compressed datagram open */
    inner in = fresh(99, seq++, 5);
    n = craft(key1, 0, &in, "hello", 5, pkt);
    open_ok(b, pkt, n, "hello", 5);
    memset(big, 0, sizeof big);
    int zlen = LZ4_compress_default((const char *)big, lz, P2P_SEAL_MAX_PAYLOAD, sizeof lz);
    assert_true(zlen > 0 && zlen < 1000);
    in = fresh(99, seq++, P2P_SEAL_MAX_PAYLOAD);
    n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, lz, (size_t)zlen, pkt);
    open_ok(b, pkt, n, big, P2P_SEAL_MAX_PAYLOAD);

    /* LZ4 bombs: a small block claiming a huge size */
    uint32_t lies[] = {P2P_SEAL_MAX_PAYLOAD + 1, 1u << 20, UINT32_MAX};
    for (size_t i = 0; i < 3; i++) {
        in = fresh(99, seq++, lies[i]);
        n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, lz, (size_t)zlen, pkt);
        assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    }
    /* a block of 65536 zeros (truly that large, so under the bound) whose header says more or less */
    uint32_t wrong[] = {P2P_SEAL_MAX_PAYLOAD - 1, 1000, 1};
    for (size_t i = 0; i < 3; i++) {
        in = fresh(99, seq++, wrong[i]);
        n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, lz, (size_t)zlen, pkt);
        assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    }
    int small = LZ4_compress_default("abcabcabcabcabcabcabc", lz, 21, sizeof lz);
    in = fresh(99, seq++, 22);
    n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, lz, (size_t)small, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    /* garbage and truncated blocks, an empty compressed body */
    in = fresh(99, seq++, 100);
    n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    in = fresh(99, seq++, P2P_SEAL_MAX_PAYLOAD);
    n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, lz, (size_t)zlen / 2, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    in = fresh(99, seq++, 0);
    n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, NULL, 0, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    /* raw bodies whose length field lies; sequence number 0 */
    in = fresh(99, seq++, 6);
    n = craft(key1, 0, &in, "hello", 5, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    in = fresh(99, seq++, 4);
    n = craft(key1, 0, &in, "hello", 5, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    in = fresh(99, 0, 5);
    n = craft(key1, 0, &in, "hello", 5, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);

    p2p__seal_stats st = stats(b);
    assert_int_equal(st.dropped_malformed, 13);
    assert_int_equal(st.opened, 2);

    /* a failed body does not burn its sequence number: the same seq then opens */
    in = fresh(99, seq, 100);
    n = craft(key1, P2P_SEAL_FLAG_LZ4, &in, "\xff", 1, pkt);
    assert_int_equal(open_rc(b, pkt, n), P2P_SEAL_EBODY);
    in = fresh(99, seq, 5);
    n = craft(key1, 0, &in, "hello", 5, pkt);
    open_ok(b, pkt, n, "hello", 5);
    p2p__seal_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_small),
        cmocka_unit_test(test_round_trip_large),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_flip_every_bit),
        cmocka_unit_test(test_truncate_every_length),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_replay_same_packet),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_restarted_sender),
        cmocka_unit_test(test_stale_timestamp),
        cmocka_unit_test(test_nonces_distinct),
        cmocka_unit_test(test_sender_flood),
        cmocka_unit_test(test_crafted_bodies),
        cmocka_unit_test(test_windows_per_certificate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
