/*
 * seal.c — sealing of gossip datagrams (format and reasoning in seal.h).
 *
 * Layers, bottom up: byte order helpers and ids (SHA-256 with a domain label),
 * the key ring (one pre-keyed decrypting EVP context per key, one encrypting
 * context for the primary), the sender table (hash chains and an LRU list over a
 * slot array, 32-bit indices), the replay window, then seal and open. Open runs
 * the cheap checks on the clear header first, authenticates, and only then
 * reads the inner header and touches the sender table, so nothing an outsider
 * sends can change our state beyond a counter.
 */
#include "membership/seal.h"

#include <limits.h>
#include <lz4.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "p2p/p2p.h"

_Static_assert(P2P_SEAL_HEADER_LEN == 2 + P2P_SEAL_KEY_ID_LEN + P2P_SEAL_NONCE_LEN, "clear header layout");
_Static_assert(P2P_SEAL_INNER_LEN == 5 * 8 + 4, "inner header layout");
_Static_assert(P2P_SEAL_OVERHEAD == 78, "overhead budgeted by callers");
_Static_assert(P2P_SEAL_REPLAY_WINDOW % 64 == 0, "window is whole bitmap words");
_Static_assert(P2P_SEAL_MAX_PAYLOAD <= (unsigned)LZ4_MAX_INPUT_SIZE, "LZ4 bounds");
_Static_assert(P2P_SEAL_MAX_PACKET <= INT_MAX, "EVP lengths are int");

#define KEY_ID_LABEL "p2p-seal-key-id-v1"
#define SENDER_LABEL "p2p-seal-sender-v1"

/* RFC 6479: one spare word, so advancing clears whole words and the last
 * P2P_SEAL_REPLAY_WINDOW numbers are always all kept. */
#define WINDOW_WORDS (P2P_SEAL_REPLAY_WINDOW / 64 + 1)
#define NIL UINT32_MAX

typedef struct key_slot {
    int used;
    uint32_t id;
    uint8_t key[P2P_SEAL_KEY_LEN];
    EVP_CIPHER_CTX *dec; /* keyed once; each packet only sets the nonce */
} key_slot;

typedef struct sender_entry {
    uint64_t id, cert, epoch, max_seq; /* a window per (sender, certificate) */
    uint64_t bits[WINDOW_WORDS]; /* bit (seq % 64) of word (seq / 64) % WINDOW_WORDS */
    uint32_t prev, next;         /* LRU list, head = most recently accepted */
    uint32_t chain;              /* next entry in the same hash bucket */
} sender_entry;

typedef struct sender_table {
    sender_entry *e; /* slots 0..n-1 are all in use */
    uint32_t n, cap, max;
    uint32_t *bucket; /* mask + 1 heads */
    uint32_t mask;
    uint32_t head, tail;
    uint64_t seed; /* random, so bucket positions are not predictable */
} sender_table;

struct p2p__seal_ctx {
    key_slot keys[P2P_SEAL_MAX_KEYS];
    int primary; /* index into keys */
    EVP_CIPHER_CTX *enc;
    uint8_t nonce[P2P_SEAL_NONCE_LEN]; /* the next nonce to use */

    uint64_t self_id, epoch, seq;
    uint64_t cert; /* our certificate id, carried in every datagram */
    size_t compress_threshold;
    uint64_t max_skew_ms;

    uint8_t *buf;    /* P2P_SEAL_MAX_PACKET bytes: compressed body when sealing, plaintext when opening */
    void *lz4_state; /* LZ4_sizeofState() bytes */

    sender_table t;
    p2p__seal_stats stats;
};

/* ---- bytes and ids ------------------------------------------------------------------------- */

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* SHA-256(label || data); aborts if OpenSSL cannot hash (nothing would work). */
static void labelled_hash(const char *label, const void *data, size_t len, uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(md, label, strlen(label)) != 1 ||
        EVP_DigestUpdate(md, data, len) != 1 || EVP_DigestFinal_ex(md, out, &n) != 1)
        abort();
    EVP_MD_CTX_free(md);
}

uint32_t p2p__seal_key_id(const uint8_t key[P2P_SEAL_KEY_LEN])
{
    uint8_t h[32];
    labelled_hash(KEY_ID_LABEL, key, P2P_SEAL_KEY_LEN, h);
    return get_be32(h);
}

uint64_t p2p__seal_sender_id(const char *node_id)
{
    uint8_t h[32];
    labelled_hash(SENDER_LABEL, node_id, strlen(node_id), h);
    return get_be64(h);
}

const char *p2p__seal_strerror(int code)
{
    switch (code) {
    case P2P_SEAL_EOVERSIZE:
        return "datagram too large";
    case P2P_SEAL_ESHORT:
        return "datagram too short to be sealed";
    case P2P_SEAL_EVERSION:
        return "unknown seal version";
    case P2P_SEAL_EFLAGS:
        return "unknown seal flags";
    case P2P_SEAL_EKEYID:
        return "datagram sealed under a key we do not hold";
    case P2P_SEAL_EAUTH:
        return "datagram failed authentication";
    case P2P_SEAL_EBODY:
        return "malformed sealed body (inner header or compression)";
    case P2P_SEAL_EREPLAY:
        return "replayed datagram";
    case P2P_SEAL_EREFLECT:
        return "datagram from ourselves (reflected)";
    case P2P_SEAL_ESTALE:
        return "datagram timestamp outside the allowed clock skew";
    case -ENOBUFS:
        return "output buffer too small";
    default:
        return p2p_strerror(code);
    }
}

/* ---- key ring ------------------------------------------------------------------------------ */

static int find_key(const p2p__seal_ctx *ctx, uint32_t id)
{
    for (int i = 0; i < P2P_SEAL_MAX_KEYS; i++)
        if (ctx->keys[i].used && ctx->keys[i].id == id)
            return i;
    return -1;
}

static void slot_clear(key_slot *s)
{
    EVP_CIPHER_CTX_free(s->dec); /* wipes its key schedule */
    OPENSSL_cleanse(s->key, sizeof s->key);
    memset(s, 0, sizeof *s);
}

static int slot_fill(key_slot *s, const uint8_t *key, uint32_t id)
{
    s->dec = EVP_CIPHER_CTX_new();
    if (!s->dec || EVP_DecryptInit_ex(s->dec, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(s->dec, EVP_CTRL_GCM_SET_IVLEN, P2P_SEAL_NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(s->dec, NULL, NULL, key, NULL) != 1) {
        slot_clear(s);
        return -EIO;
    }
    memcpy(s->key, key, P2P_SEAL_KEY_LEN);
    s->id = id;
    s->used = 1;
    return 0;
}

int p2p__seal_add_key(p2p__seal_ctx *ctx, const uint8_t key[P2P_SEAL_KEY_LEN])
{
    if (!ctx || !key)
        return -EINVAL;
    uint32_t id = p2p__seal_key_id(key);
    int at = find_key(ctx, id);
    if (at >= 0)
        return CRYPTO_memcmp(ctx->keys[at].key, key, P2P_SEAL_KEY_LEN) == 0 ? 0 : -EEXIST;
    for (int i = 0; i < P2P_SEAL_MAX_KEYS; i++)
        if (!ctx->keys[i].used)
            return slot_fill(&ctx->keys[i], key, id);
    return -ENOSPC;
}

/* The ring index holding exactly `key`, or -ENOENT. */
static int key_index(const p2p__seal_ctx *ctx, const uint8_t *key)
{
    int at = find_key(ctx, p2p__seal_key_id(key));
    if (at < 0 || CRYPTO_memcmp(ctx->keys[at].key, key, P2P_SEAL_KEY_LEN) != 0)
        return -ENOENT;
    return at;
}

int p2p__seal_remove_key(p2p__seal_ctx *ctx, const uint8_t key[P2P_SEAL_KEY_LEN])
{
    if (!ctx || !key)
        return -EINVAL;
    int at = key_index(ctx, key);
    if (at < 0)
        return at;
    if (at == ctx->primary)
        return -EBUSY;
    slot_clear(&ctx->keys[at]);
    return 0;
}

/* Keys the encrypting context and draws a fresh random nonce start for it. */
static int use_primary(p2p__seal_ctx *ctx, int at)
{
    if (RAND_bytes(ctx->nonce, sizeof ctx->nonce) != 1 ||
        EVP_EncryptInit_ex(ctx->enc, NULL, NULL, ctx->keys[at].key, NULL) != 1)
        return -EIO;
    ctx->primary = at;
    return 0;
}

int p2p__seal_set_primary(p2p__seal_ctx *ctx, const uint8_t key[P2P_SEAL_KEY_LEN])
{
    if (!ctx || !key)
        return -EINVAL;
    int at = key_index(ctx, key);
    return at < 0 ? at : use_primary(ctx, at);
}

size_t p2p__seal_key_count(const p2p__seal_ctx *ctx)
{
    size_t n = 0;
    for (int i = 0; i < P2P_SEAL_MAX_KEYS; i++)
        n += ctx->keys[i].used != 0;
    return n;
}

/* ---- sender table -------------------------------------------------------------------------- */

static uint32_t bucket_of(const sender_table *t, uint64_t id, uint64_t cert)
{
    uint64_t z = id ^ (cert * 0x9e3779b97f4a7c15ull) ^ t->seed; /* splitmix64 finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (uint32_t)z & t->mask;
}

static int table_init(sender_table *t, uint32_t max)
{
    uint32_t nb = 16;
    while (nb < 2 * max)
        nb *= 2;
    t->bucket = p2p__xmalloc(nb * sizeof *t->bucket);
    for (uint32_t i = 0; i < nb; i++)
        t->bucket[i] = NIL;
    t->mask = nb - 1;
    t->max = max;
    t->head = t->tail = NIL;
    return RAND_bytes((uint8_t *)&t->seed, sizeof t->seed) == 1 ? 0 : -EIO;
}

static uint32_t table_find(const sender_table *t, uint64_t id, uint64_t cert)
{
    uint32_t i = t->bucket[bucket_of(t, id, cert)];
    while (i != NIL && (t->e[i].id != id || t->e[i].cert != cert))
        i = t->e[i].chain;
    return i;
}

static void lru_unlink(sender_table *t, uint32_t i)
{
    sender_entry *s = &t->e[i];
    if (s->prev != NIL)
        t->e[s->prev].next = s->next;
    else
        t->head = s->next;
    if (s->next != NIL)
        t->e[s->next].prev = s->prev;
    else
        t->tail = s->prev;
}

static void lru_push_front(sender_table *t, uint32_t i)
{
    t->e[i].prev = NIL;
    t->e[i].next = t->head;
    if (t->head != NIL)
        t->e[t->head].prev = i;
    t->head = i;
    if (t->tail == NIL)
        t->tail = i;
}

static void chain_unlink(sender_table *t, uint32_t i)
{
    uint32_t *p = &t->bucket[bucket_of(t, t->e[i].id, t->e[i].cert)];
    while (*p != i)
        p = &t->e[*p].chain;
    *p = t->e[i].chain;
}

/* A fresh entry for `id`: a new slot while below the bound, else the least
 * recently accepted sender's. */
static uint32_t table_insert(sender_table *t, uint64_t id, uint64_t cert, uint64_t *evicted)
{
    uint32_t i;
    if (t->n < t->max) {
        if (t->n == t->cap) {
            t->cap = t->cap ? (t->cap > t->max / 2 ? t->max : t->cap * 2) : (t->max < 16 ? t->max : 16);
            t->e = p2p__xrealloc(t->e, (size_t)t->cap * sizeof *t->e);
        }
        i = t->n++;
    } else {
        i = t->tail;
        lru_unlink(t, i);
        chain_unlink(t, i);
        (*evicted)++;
    }
    sender_entry *s = &t->e[i];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->cert = cert;
    uint32_t b = bucket_of(t, id, cert);
    s->chain = t->bucket[b];
    t->bucket[b] = i;
    lru_push_front(t, i);
    return i;
}

static void table_touch(sender_table *t, uint32_t i)
{
    if (t->head == i)
        return;
    lru_unlink(t, i);
    lru_push_front(t, i);
}

/* ---- replay window ------------------------------------------------------------------------- */

static int window_seen(const sender_entry *s, uint64_t seq)
{
    if (seq > s->max_seq)
        return 0;
    if (s->max_seq - seq >= P2P_SEAL_REPLAY_WINDOW)
        return 1; /* too old to tell: refuse */
    return (s->bits[(seq / 64) % WINDOW_WORDS] >> (seq % 64)) & 1;
}

static void window_mark(sender_entry *s, uint64_t seq)
{
    if (seq > s->max_seq) {
        uint64_t from = s->max_seq / 64, to = seq / 64;
        uint64_t words = to - from < WINDOW_WORDS ? to - from : WINDOW_WORDS;
        for (uint64_t k = 1; k <= words; k++)
            s->bits[(from + k) % WINDOW_WORDS] = 0;
        s->max_seq = seq;
    }
    s->bits[(seq / 64) % WINDOW_WORDS] |= 1ull << (seq % 64);
}

/* ---- context ------------------------------------------------------------------------------- */

p2p__seal_ctx *p2p__seal_new(const uint8_t key[P2P_SEAL_KEY_LEN], const char *self_id, const p2p__seal_opts *opts)
{
    p2p__seal_opts o = opts ? *opts : (p2p__seal_opts){0};
    if (!key || !self_id || !*self_id || o.max_senders > P2P_SEAL_MAX_MAX_SENDERS)
        return NULL;
    p2p__seal_ctx *ctx = p2p__xcalloc(1, sizeof *ctx);
    ctx->self_id = p2p__seal_sender_id(self_id);
    ctx->epoch = o.epoch ? o.epoch : p2p__wall_ms();
    ctx->compress_threshold = o.compress_threshold ? o.compress_threshold : P2P_SEAL_DEFAULT_COMPRESS_THRESHOLD;
    ctx->max_skew_ms = o.max_skew_ms ? o.max_skew_ms : P2P_SEAL_DEFAULT_MAX_SKEW_MS;
    ctx->buf = p2p__xmalloc(P2P_SEAL_MAX_PACKET);
    ctx->lz4_state = p2p__xmalloc((size_t)LZ4_sizeofState());
    ctx->enc = EVP_CIPHER_CTX_new();
    if (table_init(&ctx->t, o.max_senders ? o.max_senders : P2P_SEAL_DEFAULT_MAX_SENDERS) != 0 || !ctx->enc ||
        EVP_EncryptInit_ex(ctx->enc, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx->enc, EVP_CTRL_GCM_SET_IVLEN, P2P_SEAL_NONCE_LEN, NULL) != 1 ||
        p2p__seal_add_key(ctx, key) != 0 || use_primary(ctx, 0) != 0) {
        p2p__seal_free(ctx);
        return NULL;
    }
    return ctx;
}

void p2p__seal_free(p2p__seal_ctx *ctx)
{
    if (!ctx)
        return;
    for (int i = 0; i < P2P_SEAL_MAX_KEYS; i++)
        slot_clear(&ctx->keys[i]);
    EVP_CIPHER_CTX_free(ctx->enc);
    if (ctx->buf) /* held plaintext */
        OPENSSL_cleanse(ctx->buf, P2P_SEAL_MAX_PACKET);
    free(ctx->buf);
    free(ctx->lz4_state);
    free(ctx->t.e);
    free(ctx->t.bucket);
    OPENSSL_cleanse(ctx->nonce, sizeof ctx->nonce);
    free(ctx);
}

void p2p__seal_get_stats(const p2p__seal_ctx *ctx, p2p__seal_stats *out)
{
    *out = ctx->stats;
    out->senders = ctx->t.n;
}

size_t p2p__seal_table_bytes(const p2p__seal_ctx *ctx)
{
    return (size_t)ctx->t.cap * sizeof(sender_entry) + ((size_t)ctx->t.mask + 1) * sizeof(uint32_t);
}

/* ---- seal ---------------------------------------------------------------------------------- */

/* Returns the nonce to use now and advances the low 64 bits for the next packet. */
static void next_nonce(p2p__seal_ctx *ctx, uint8_t *nonce)
{
    memcpy(nonce, ctx->nonce, P2P_SEAL_NONCE_LEN);
    put_be64(ctx->nonce + 4, get_be64(ctx->nonce + 4) + 1);
}

int p2p__seal(p2p__seal_ctx *ctx, uint64_t now_ms, const void *payload, size_t len, uint8_t *out, size_t cap,
              size_t *out_len)
{
    if (!ctx || (!payload && len) || !out || !out_len)
        return -EINVAL;
    if (len > P2P_SEAL_MAX_PAYLOAD)
        return -EMSGSIZE;

    /* Compress only when it saves at least one byte and the result fits. */
    const uint8_t *body = payload;
    size_t body_len = len;
    int flags = 0;
    if (len > ctx->compress_threshold) {
        size_t room = len - 1 < P2P_SEAL_MAX_RAW_PAYLOAD ? len - 1 : P2P_SEAL_MAX_RAW_PAYLOAD;
        int n = LZ4_compress_fast_extState(ctx->lz4_state, payload, (char *)ctx->buf, (int)len, (int)room, 1);
        if (n > 0) {
            body = ctx->buf;
            body_len = (size_t)n;
            flags = P2P_SEAL_FLAG_LZ4;
        }
    }
    if (body_len > P2P_SEAL_MAX_RAW_PAYLOAD)
        return -EMSGSIZE;
    size_t total = P2P_SEAL_OVERHEAD + body_len;
    if (total > cap)
        return -ENOBUFS;

    uint8_t *h = out;
    h[0] = P2P_SEAL_VERSION;
    h[1] = (uint8_t)flags;
    put_be32(h + 2, ctx->keys[ctx->primary].id);
    next_nonce(ctx, h + 6);

    uint8_t inner[P2P_SEAL_INNER_LEN];
    put_be64(inner, ctx->self_id);
    put_be64(inner + 8, ctx->epoch);
    put_be64(inner + 16, ++ctx->seq);
    put_be64(inner + 24, now_ms);
    put_be64(inner + 32, ctx->cert);
    put_be32(inner + 40, (uint32_t)len);

    uint8_t *ct = out + P2P_SEAL_HEADER_LEN;
    int n = 0;
    int ok = EVP_EncryptInit_ex(ctx->enc, NULL, NULL, NULL, h + 6) == 1 &&
             EVP_EncryptUpdate(ctx->enc, NULL, &n, h, P2P_SEAL_HEADER_LEN) == 1 &&
             EVP_EncryptUpdate(ctx->enc, ct, &n, inner, P2P_SEAL_INNER_LEN) == 1;
    if (ok && body_len > 0)
        ok = EVP_EncryptUpdate(ctx->enc, ct + P2P_SEAL_INNER_LEN, &n, body, (int)body_len) == 1;
    if (ok) /* GCM: Final writes nothing and computes the tag */
        ok = EVP_EncryptFinal_ex(ctx->enc, ct + P2P_SEAL_INNER_LEN + body_len, &n) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx->enc, EVP_CTRL_GCM_GET_TAG, P2P_SEAL_TAG_LEN,
                                 ct + P2P_SEAL_INNER_LEN + body_len) == 1;
    if (!ok)
        return -EIO;
    ctx->stats.sealed++;
    ctx->stats.compressed += flags != 0;
    *out_len = total;
    return 0;
}

/* ---- open ---------------------------------------------------------------------------------- */

/* Checks the clear header; on success *slot is the key to try. */
static int check_header(const p2p__seal_ctx *ctx, const uint8_t *pkt, size_t len, int *slot)
{
    if (len > P2P_SEAL_MAX_PACKET)
        return P2P_SEAL_EOVERSIZE;
    if (len == 0)
        return P2P_SEAL_ESHORT;
    if (pkt[0] != P2P_SEAL_VERSION)
        return P2P_SEAL_EVERSION;
    if (len < P2P_SEAL_OVERHEAD)
        return P2P_SEAL_ESHORT;
    if (pkt[1] & ~P2P_SEAL_FLAG_LZ4)
        return P2P_SEAL_EFLAGS;
    *slot = find_key(ctx, get_be32(pkt + 2));
    return *slot < 0 ? P2P_SEAL_EKEYID : 0;
}

/* Authenticates and decrypts pkt into ctx->buf. */
static int decrypt(p2p__seal_ctx *ctx, EVP_CIPHER_CTX *c, const uint8_t *pkt, size_t len)
{
    size_t ct_len = len - P2P_SEAL_HEADER_LEN - P2P_SEAL_TAG_LEN;
    const uint8_t *ct = pkt + P2P_SEAL_HEADER_LEN;
    uint8_t tag[P2P_SEAL_TAG_LEN];
    memcpy(tag, ct + ct_len, sizeof tag); /* SET_TAG takes a non-const pointer */
    int n = 0;
    int ok = EVP_DecryptInit_ex(c, NULL, NULL, NULL, pkt + 6) == 1 &&
             EVP_DecryptUpdate(c, NULL, &n, pkt, P2P_SEAL_HEADER_LEN) == 1 &&
             EVP_DecryptUpdate(c, ctx->buf, &n, ct, (int)ct_len) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, P2P_SEAL_TAG_LEN, tag) == 1 &&
             EVP_DecryptFinal_ex(c, ctx->buf + ct_len, &n) == 1;
    return ok ? 0 : P2P_SEAL_EAUTH;
}

static int count_drop(p2p__seal_ctx *ctx, int r)
{
    switch (r) {
    case P2P_SEAL_EOVERSIZE:
        ctx->stats.dropped_oversize++;
        break;
    case P2P_SEAL_ESHORT:
    case P2P_SEAL_EVERSION:
    case P2P_SEAL_EFLAGS:
    case P2P_SEAL_EBODY:
        ctx->stats.dropped_malformed++;
        break;
    case P2P_SEAL_EKEYID:
    case P2P_SEAL_EAUTH:
        ctx->stats.dropped_auth++;
        break;
    case P2P_SEAL_EREPLAY:
    case P2P_SEAL_EREFLECT:
        ctx->stats.dropped_replay++;
        break;
    case P2P_SEAL_ESTALE:
        ctx->stats.dropped_stale++;
        break;
    default: /* the caller's arguments or OpenSSL: not the datagram's fault */
        break;
    }
    return r;
}

/* The authenticated inner header against the clock and the sender's window.
 * *at is the sender's table slot, or NIL when it has none yet. */
static int check_fresh(const p2p__seal_ctx *ctx, uint64_t now_ms, const p2p__seal_sender *s, uint32_t *at)
{
    if (s->id == ctx->self_id)
        return P2P_SEAL_EREFLECT;
    uint64_t skew = now_ms > s->sent_ms ? now_ms - s->sent_ms : s->sent_ms - now_ms;
    if (skew > ctx->max_skew_ms)
        return P2P_SEAL_ESTALE;
    *at = table_find(&ctx->t, s->id, s->cert);
    if (*at == NIL)
        return 0;
    const sender_entry *e = &ctx->t.e[*at];
    if (s->epoch < e->epoch || (s->epoch == e->epoch && window_seen(e, s->seq)))
        return P2P_SEAL_EREPLAY;
    return 0;
}

/* Records an accepted datagram in its sender's window. */
static void commit(p2p__seal_ctx *ctx, const p2p__seal_sender *s, uint32_t at)
{
    sender_table *t = &ctx->t;
    if (at == NIL)
        at = table_insert(t, s->id, s->cert, &ctx->stats.senders_evicted);
    else
        table_touch(t, at);
    sender_entry *e = &t->e[at];
    if (s->epoch > e->epoch) { /* the sender restarted: a new sequence */
        memset(e->bits, 0, sizeof e->bits);
        e->max_seq = 0;
    }
    e->epoch = s->epoch;
    window_mark(e, s->seq);
}

static int open_body(p2p__seal_ctx *ctx, uint64_t now_ms, const uint8_t *pkt, size_t len, uint8_t *out, size_t cap,
                     size_t *out_len, p2p__seal_sender *sender)
{
    int slot = -1;
    int r = check_header(ctx, pkt, len, &slot);
    if (r == 0)
        r = decrypt(ctx, ctx->keys[slot].dec, pkt, len);
    if (r != 0)
        return r;

    const uint8_t *in = ctx->buf;
    size_t body_len = len - P2P_SEAL_OVERHEAD;
    const uint8_t *body = in + P2P_SEAL_INNER_LEN;
    p2p__seal_sender s = {
        .id = get_be64(in), .epoch = get_be64(in + 8), .seq = get_be64(in + 16), .sent_ms = get_be64(in + 24),
        .cert = get_be64(in + 32)};
    uint32_t plen = get_be32(in + 40);
    int lz4 = pkt[1] & P2P_SEAL_FLAG_LZ4;
    /* The length is checked before anything is allocated or written: a body
     * claiming more than a datagram can carry is refused outright. */
    if (s.seq == 0 || plen > P2P_SEAL_MAX_PAYLOAD || (!lz4 && plen != body_len) || (lz4 && body_len == 0))
        return P2P_SEAL_EBODY;

    uint32_t at = NIL;
    r = check_fresh(ctx, now_ms, &s, &at);
    if (r != 0)
        return r;
    if (plen > cap || (!out && plen))
        return -ENOBUFS;
    if (lz4) {
        uint8_t none[1];
        if (LZ4_decompress_safe((const char *)body, (char *)(out ? out : none), (int)body_len, (int)plen) != (int)plen)
            return P2P_SEAL_EBODY;
    } else if (plen) {
        memcpy(out, body, plen);
    }
    commit(ctx, &s, at);
    ctx->stats.opened++;
    *out_len = plen;
    if (sender)
        *sender = s;
    return 0;
}

int p2p__seal_open(p2p__seal_ctx *ctx, uint64_t now_ms, const uint8_t *pkt, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len, p2p__seal_sender *sender)
{
    if (!ctx || (!pkt && len) || !out_len)
        return -EINVAL;
    return count_drop(ctx, open_body(ctx, now_ms, pkt, len, out, cap, out_len, sender));
}

void p2p__seal_set_cert(p2p__seal_ctx *ctx, uint64_t cert_id)
{
    ctx->cert = cert_id;
}
