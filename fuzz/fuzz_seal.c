/*
 * fuzz_seal.c — libFuzzer target for the gossip datagram sealer.
 *
 * The first input byte picks the mode (byte % 3); the rest is the data:
 *  0. The data is a received datagram: p2p__seal_open() with the fixed key at
 *     the fixed clock. Seeds are real datagrams sealed at that clock, so the
 *     header checks are explored; GCM makes a forged tag hopeless, hence:
 *  1. The data is a payload: sealed by one context (compression threshold
 *     picked by bits 2-3 of the first byte: default, 1 byte, never) and opened
 *     by another; the round trip must give the same bytes, compress only when
 *     it shrinks, and a second open must be a replay.
 *  2. The data is the decrypted inner plaintext (sender, epoch, seq, time,
 *     length, body; bit 2 of the first byte sets the LZ4 flag): the harness
 *     seals it itself (independently of seal.c, with the real key) so the inner
 *     header checks and LZ4_decompress_safe behind the tag are fuzzed. When it
 *     opens, the output must match an independent decoding of the body.
 * Contexts are made fresh for every input so that runs are reproducible. A
 * crash, a leak, a sanitizer report or a broken invariant is a finding.
 */
#include <lz4.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "membership/seal.h"

#define NOW 1700000000000ull /* the seeds are stamped with this clock */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[P2P_SEAL_KEY_LEN] = {0x46, 0x55, 0x5a, 0x5a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                              0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12,
                                              0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c};
static const p2p__seal_opts small_table = {.max_senders = 16};

static uint8_t pkt[P2P_SEAL_MAX_PACKET + 1];
static uint8_t out[P2P_SEAL_MAX_PAYLOAD];
static uint8_t check[P2P_SEAL_MAX_PAYLOAD];

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                               \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static p2p__seal_ctx *receiver(void)
{
    p2p__seal_ctx *c = p2p__seal_new(key, "fuzz-receiver", &small_table);
    REQUIRE(c);
    return c;
}

static int known_error(int r)
{
    return r == P2P_SEAL_EOVERSIZE || r == P2P_SEAL_ESHORT || r == P2P_SEAL_EVERSION || r == P2P_SEAL_EFLAGS ||
           r == P2P_SEAL_EKEYID || r == P2P_SEAL_EAUTH || r == P2P_SEAL_EBODY || r == P2P_SEAL_EREPLAY ||
           r == P2P_SEAL_EREFLECT || r == P2P_SEAL_ESTALE;
}

/* Opening counts exactly one outcome. */
static int open_counted(p2p__seal_ctx *c, const uint8_t *p, size_t n, size_t *len, p2p__seal_sender *s)
{
    p2p__seal_stats a, b;
    p2p__seal_get_stats(c, &a);
    int r = p2p__seal_open(c, NOW, p, n, out, sizeof out, len, s);
    p2p__seal_get_stats(c, &b);
    uint64_t before =
        a.opened + a.dropped_malformed + a.dropped_auth + a.dropped_replay + a.dropped_stale + a.dropped_oversize;
    uint64_t after =
        b.opened + b.dropped_malformed + b.dropped_auth + b.dropped_replay + b.dropped_stale + b.dropped_oversize;
    REQUIRE(r == 0 || known_error(r));
    REQUIRE(after == before + 1);
    REQUIRE((r == 0) == (b.opened == a.opened + 1));
    return r;
}

static void fuzz_open(const uint8_t *d, size_t n)
{
    p2p__seal_ctx *rx = receiver();
    size_t len = 0;
    p2p__seal_sender s;
    if (open_counted(rx, d, n, &len, &s) == 0) {
        REQUIRE(len <= P2P_SEAL_MAX_PAYLOAD);
        REQUIRE(open_counted(rx, d, n, &len, &s) == P2P_SEAL_EREPLAY);
    }
    p2p__seal_free(rx);
}

static void fuzz_round_trip(uint8_t mode, const uint8_t *d, size_t n)
{
    static const size_t thresholds[] = {0, 1, SIZE_MAX, 64};
    p2p__seal_opts o = {.compress_threshold = thresholds[(mode >> 2) & 3], .max_senders = 16};
    p2p__seal_ctx *tx = p2p__seal_new(key, "fuzz-sender", &o);
    p2p__seal_ctx *rx = receiver();
    REQUIRE(tx);
    size_t plen = 0, len = 0;
    int r = p2p__seal(tx, NOW, d, n, pkt, sizeof pkt, &plen);
    if (n > P2P_SEAL_MAX_PAYLOAD) {
        REQUIRE(r == -EMSGSIZE);
    } else if (r == -EMSGSIZE) {
        REQUIRE(n > P2P_SEAL_MAX_RAW_PAYLOAD); /* only incompressible payloads that do not fit */
    } else {
        REQUIRE(r == 0);
        REQUIRE(plen <= n + P2P_SEAL_OVERHEAD && plen <= P2P_SEAL_MAX_PACKET);
        REQUIRE(pkt[1] == 0 || plen < n + P2P_SEAL_OVERHEAD); /* compressed only when smaller */
        p2p__seal_sender s;
        REQUIRE(open_counted(rx, pkt, plen, &len, &s) == 0);
        REQUIRE(len == n && (n == 0 || memcmp(out, d, n) == 0));
        REQUIRE(s.id == p2p__seal_sender_id("fuzz-sender") && s.seq == 1 && s.sent_ms == NOW);
        REQUIRE(open_counted(rx, pkt, plen, &len, &s) == P2P_SEAL_EREPLAY);
    }
    p2p__seal_free(tx);
    p2p__seal_free(rx);
}

/* Seals `plain` as the inner plaintext of a datagram of the current version. */
static size_t craft(uint8_t flags, const uint8_t *plain, size_t n)
{
    pkt[0] = P2P_SEAL_VERSION;
    pkt[1] = flags;
    uint32_t id = p2p__seal_key_id(key);
    pkt[2] = (uint8_t)(id >> 24), pkt[3] = (uint8_t)(id >> 16), pkt[4] = (uint8_t)(id >> 8), pkt[5] = (uint8_t)id;
    memset(pkt + 6, 0x5a, P2P_SEAL_NONCE_LEN); /* fixed: harmless in a harness */
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int k = 0;
    uint8_t *ct = pkt + P2P_SEAL_HEADER_LEN;
    if (!c || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, pkt + 6) != 1 ||
        EVP_EncryptUpdate(c, NULL, &k, pkt, P2P_SEAL_HEADER_LEN) != 1 ||
        (n && EVP_EncryptUpdate(c, ct, &k, plain, (int)n) != 1) || EVP_EncryptFinal_ex(c, ct + n, &k) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, P2P_SEAL_TAG_LEN, ct + n) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    return P2P_SEAL_HEADER_LEN + n + P2P_SEAL_TAG_LEN;
}

static void fuzz_inner(uint8_t mode, const uint8_t *d, size_t n)
{
    if (n > P2P_SEAL_MAX_PACKET - P2P_SEAL_HEADER_LEN - P2P_SEAL_TAG_LEN)
        return;
    uint8_t flags = (mode & 4) ? P2P_SEAL_FLAG_LZ4 : 0;
    size_t plen = craft(flags, d, n);
    p2p__seal_ctx *rx = receiver();
    size_t len = 0;
    p2p__seal_sender s;
    int r = open_counted(rx, pkt, plen, &len, &s);
    if (n < P2P_SEAL_INNER_LEN) {
        REQUIRE(r == P2P_SEAL_ESHORT);
    } else if (r == 0) {
        const uint8_t *body = d + P2P_SEAL_INNER_LEN;
        size_t body_len = n - P2P_SEAL_INNER_LEN;
        uint32_t claimed = (uint32_t)d[32] << 24 | (uint32_t)d[33] << 16 | (uint32_t)d[34] << 8 | d[35];
        REQUIRE(len == claimed && len <= P2P_SEAL_MAX_PAYLOAD && s.seq != 0);
        if (flags) {
            int k = LZ4_decompress_safe((const char *)body, (char *)check, (int)body_len, (int)sizeof check);
            REQUIRE(k >= 0 && (size_t)k == len && memcmp(check, out, len) == 0);
        } else {
            REQUIRE(body_len == len && (len == 0 || memcmp(body, out, len) == 0));
        }
        REQUIRE(open_counted(rx, pkt, plen, &len, &s) == P2P_SEAL_EREPLAY);
    }
    p2p__seal_free(rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    switch (mode % 3) {
    case 0:
        fuzz_open(data + 1, size - 1);
        break;
    case 1:
        fuzz_round_trip(mode, data + 1, size - 1);
        break;
    default:
        fuzz_inner(mode, data + 1, size - 1);
        break;
    }
    return 0;
}
