/*
 * ratelimit.c — token buckets in a fixed-size, keyed-hash table with
 * least-deficit eviction, and X-Forwarded-For resolution behind trusted
 * proxies. The policies are documented in ratelimit.h.
 */
#include "auth/ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define UNITS_PER_TOKEN 60000u /* ms per minute: a rate of R/min adds R units per ms */

typedef struct rl_entry {
    uint64_t key;     /* keyed hash of (class, identity); 0 = free slot */
    uint64_t last_ms; /* when `tokens` was last brought up to date */
    uint32_t tokens;  /* in units of 1/60000 token; <= B * 60000 <= 6e8 */
    uint32_t cls;
} rl_entry;
_Static_assert(sizeof(rl_entry) == 24, "ratelimit.h documents 24 bytes per slot");

struct p2p_ratelimit {
    p2p_ratelimit_rate rates[P2P_RL_NCLASSES];
    uint8_t hash_key[16];
    size_t mask; /* capacity - 1 */
    size_t count;
    rl_entry *slots;
};

/* ---- SipHash-2-4 ----------------------------------------------------------- */

static uint64_t rotl64(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1;                                                                                                      \
        v1 = rotl64(v1, 13);                                                                                           \
        v1 ^= v0;                                                                                                      \
        v0 = rotl64(v0, 32);                                                                                           \
        v2 += v3;                                                                                                      \
        v3 = rotl64(v3, 16);                                                                                           \
        v3 ^= v2;                                                                                                      \
        v0 += v3;                                                                                                      \
        v3 = rotl64(v3, 21);                                                                                           \
        v3 ^= v0;                                                                                                      \
        v2 += v1;                                                                                                      \
        v1 = rotl64(v1, 17);                                                                                           \
        v1 ^= v2;                                                                                                      \
        v2 = rotl64(v2, 32);                                                                                           \
    } while (0)

static uint64_t siphash24(const uint8_t key[16], uint64_t tweak, const uint8_t *in, size_t len)
{
    uint64_t k0 = le64(key), k1 = le64(key + 8) ^ tweak;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- limiter ------------------------------------------------------------- */

void p2p_ratelimit_opts_default(p2p_ratelimit_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->rates[P2P_RL_RPC] = (p2p_ratelimit_rate){100, 20};
    o->rates[P2P_RL_HEALTH] = (p2p_ratelimit_rate){300, 50};
    o->rates[P2P_RL_OTHER] = (p2p_ratelimit_rate){200, 30};
    o->rates[P2P_RL_NODE_RPC] = (p2p_ratelimit_rate){6000, 1000};
    o->rates[P2P_RL_NODE_OTHER] = (p2p_ratelimit_rate){1200, 200};
    o->rates[P2P_RL_ENROLL_TOKEN] = (p2p_ratelimit_rate){6000, 1000};
    o->rates[P2P_RL_ENROLL_FAIL] = (p2p_ratelimit_rate){30, 10};
    o->rates[P2P_RL_CA_CERT] = (p2p_ratelimit_rate){60000, 5000};
    o->capacity = P2P_RL_DEFAULT_CAPACITY;
}

int p2p_ratelimit_new(const p2p_ratelimit_opts *o, p2p_ratelimit **out)
{
    if (!o || !out)
        return -EINVAL;
    for (int c = 0; c < P2P_RL_NCLASSES; c++)
        if (o->rates[c].per_minute < P2P_RL_MIN_RATE || o->rates[c].per_minute > P2P_RL_MAX_RATE ||
            o->rates[c].burst < P2P_RL_MIN_BURST ||
            o->rates[c].burst > P2P_RL_MAX_BURST)
            return -EINVAL;
    size_t want = o->capacity ? o->capacity : P2P_RL_DEFAULT_CAPACITY;
    if (want < P2P_RL_MIN_CAPACITY || want > P2P_RL_MAX_CAPACITY)
        return -EINVAL;
    size_t cap = P2P_RL_MIN_CAPACITY;
    while (cap < want)
        cap *= 2;

    p2p_ratelimit *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return -ENOMEM;
    rl->slots = calloc(cap, sizeof(*rl->slots));
    if (!rl->slots) {
        free(rl);
        return -ENOMEM;
    }
    if (RAND_bytes(rl->hash_key, sizeof(rl->hash_key)) != 1) {
        free(rl->slots);
        free(rl);
        return -EIO;
    }
    memcpy(rl->rates, o->rates, sizeof(rl->rates));
    rl->mask = cap - 1;
    *out = rl;
    return 0;
}

void p2p_ratelimit_free(p2p_ratelimit *rl)
{
    if (!rl)
        return;
    free(rl->slots);
    free(rl);
}

size_t p2p_ratelimit_count(const p2p_ratelimit *rl)
{
    return rl->count;
}

size_t p2p_ratelimit_capacity(const p2p_ratelimit *rl)
{
    return rl->mask + 1;
}

size_t p2p_ratelimit_memory(const p2p_ratelimit *rl)
{
    return sizeof(*rl) + (rl->mask + 1) * sizeof(*rl->slots);
}

static uint32_t full_units(const p2p_ratelimit *rl, uint32_t cls)
{
    return rl->rates[cls].burst * UNITS_PER_TOKEN;
}

/* Tokens (in units) the entry holds at now_ms; does not modify it. */
static uint32_t projected(const p2p_ratelimit *rl, const rl_entry *e, uint64_t now_ms)
{
    uint32_t full = full_units(rl, e->cls);
    if (now_ms <= e->last_ms)
        return e->tokens;
    uint64_t elapsed = now_ms - e->last_ms;
    if (elapsed >= full) /* R >= 1 unit per ms: certainly refilled (and no overflow below) */
        return full;
    uint64_t t = e->tokens + elapsed * rl->rates[e->cls].per_minute;
    return t >= full ? full : (uint32_t)t;
}

uint32_t p2p_ratelimit_burst(const p2p_ratelimit *rl, int cls)
{
    return rl && cls >= 0 && cls < P2P_RL_NCLASSES ? rl->rates[cls].burst : 0;
}

int p2p_ratelimit_check(p2p_ratelimit *rl, const char *identity, int cls, uint64_t now_ms, uint32_t *retry_after_s)
{
    return p2p_ratelimit_take(rl, identity, cls, 1, now_ms, retry_after_s);
}

static uint64_t key_of(const p2p_ratelimit *rl, const char *identity, int cls)
{
    uint64_t key = siphash24(rl->hash_key, (uint64_t)cls + 1, (const uint8_t *)identity, strlen(identity));
    return key ? key : 1;
}

static uint32_t wait_s(const p2p_ratelimit *rl, int cls, uint32_t need, uint32_t tokens)
{
    uint32_t rate = rl->rates[cls].per_minute;
    uint64_t wait_ms = (need - tokens + (uint64_t)rate - 1) / rate;
    return (uint32_t)((wait_ms + 999) / 1000);
}

int p2p_ratelimit_peek(const p2p_ratelimit *rl, const char *identity, int cls, uint32_t cost, uint64_t now_ms,
                       uint32_t *retry_after_s)
{
    if (retry_after_s)
        *retry_after_s = 0;
    if (!rl || !identity || !*identity || cls < 0 || cls >= P2P_RL_NCLASSES || cost == 0)
        return -EINVAL;
    if (cost > rl->rates[cls].burst)
        return -E2BIG;
    uint32_t need = cost * UNITS_PER_TOKEN;
    uint64_t key = key_of(rl, identity, cls);
    size_t home = (size_t)key & rl->mask;
    for (size_t k = 0; k < P2P_RL_WINDOW; k++) {
        const rl_entry *s = &rl->slots[(home + k) & rl->mask];
        if (s->key == 0)
            break;
        if (s->key == key) {
            uint32_t t = projected(rl, s, now_ms);
            if (t >= need)
                return 1;
            if (retry_after_s)
                *retry_after_s = wait_s(rl, cls, need, t);
            return 0;
        }
    }
    return 1; /* no bucket: a full one */
}

int p2p_ratelimit_take(p2p_ratelimit *rl, const char *identity, int cls, uint32_t cost, uint64_t now_ms,
                       uint32_t *retry_after_s)
{
    if (!rl || !identity || !*identity || cls < 0 || cls >= P2P_RL_NCLASSES || cost == 0)
        return -EINVAL;
    if (cost > rl->rates[cls].burst) {
        if (retry_after_s)
            *retry_after_s = 0;
        return -E2BIG; /* checked before any slot is touched: a refused giant stores nothing */
    }
    /* cost <= B <= 10 000: need <= 6e8 units, within uint32_t like a full bucket */
    uint32_t need = cost * UNITS_PER_TOKEN;
    uint64_t key = key_of(rl, identity, cls);

    rl_entry *e = NULL, *free_slot = NULL, *victim = NULL;
    uint32_t victim_deficit = 0;
    size_t home = (size_t)key & rl->mask;
    for (size_t k = 0; k < P2P_RL_WINDOW; k++) {
        rl_entry *s = &rl->slots[(home + k) & rl->mask];
        if (s->key == key) {
            e = s;
            break;
        }
        if (s->key == 0) {
            /* Slots are never freed, so a key is never stored past the first free slot of its window. */
            free_slot = s;
            break;
        }
        uint32_t deficit = full_units(rl, s->cls) - projected(rl, s, now_ms);
        if (!victim || deficit < victim_deficit || (deficit == victim_deficit && s->last_ms < victim->last_ms)) {
            victim = s;
            victim_deficit = deficit;
        }
    }
    if (!e) {
        if (free_slot) {
            e = free_slot;
            rl->count++;
        } else {
            e = victim;
        }
        e->key = key;
        e->cls = (uint32_t)cls;
        e->tokens = full_units(rl, (uint32_t)cls);
        e->last_ms = now_ms;
    }

    e->tokens = projected(rl, e, now_ms);
    if (now_ms > e->last_ms)
        e->last_ms = now_ms;
    if (e->tokens >= need) {
        e->tokens -= need;
        if (retry_after_s)
            *retry_after_s = 0;
        return 1;
    }
    if (retry_after_s)
        *retry_after_s = wait_s(rl, cls, need, e->tokens);
    return 0;
}

/* ---- client address -------------------------------------------------------- */

/* Parses an IP literal of n bytes (optionally [bracketed] when brackets is set)
 * into 16 bytes, IPv4 as ::ffff:a.b.c.d. Returns 0 or -1. */
static int parse_ip(const char *s, size_t n, int brackets, uint8_t out[16])
{
    int bracketed = 0;
    if (brackets && n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
        bracketed = 1; /* IPv6 syntax only inside */
    }
    char buf[INET6_ADDRSTRLEN + 1];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (memchr(buf, '\0', n))
        return -1;
    uint8_t v4[4];
    if (!bracketed && inet_pton(AF_INET, buf, v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, buf, out) == 1 ? 0 : -1;
}

static int is_v4_mapped(const uint8_t a[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, 12) == 0;
}

/* "ip" or "ip/len" -> network and prefix length over the 128-bit form. */
static int parse_spec(const char *spec, uint8_t net[16], int *prefix)
{
    const char *slash = strchr(spec, '/');
    size_t n = slash ? (size_t)(slash - spec) : strlen(spec);
    if (parse_ip(spec, n, 0, net) != 0)
        return -1;
    int v4 = is_v4_mapped(net) && memchr(spec, ':', n) == NULL; /* "::ffff:1.2.3.4/120" stays IPv6 */
    int max = v4 ? 32 : 128, len = max;
    if (slash) {
        const char *d = slash + 1;
        size_t nd = strlen(d);
        if (nd == 0 || nd > 3)
            return -1;
        len = 0;
        for (size_t i = 0; i < nd; i++) {
            if (d[i] < '0' || d[i] > '9')
                return -1;
            len = len * 10 + (d[i] - '0');
        }
        if (len > max || (nd > 1 && d[0] == '0'))
            return -1;
    }
    *prefix = v4 ? len + 96 : len;
    return 0;
}

static int in_net(const uint8_t a[16], const uint8_t net[16], int prefix)
{
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & m) == (net[whole] & m);
}

int p2p_ratelimit_proxy_valid(const char *spec)
{
    uint8_t net[16];
    int prefix;
    return spec && parse_spec(spec, net, &prefix) == 0 ? 0 : -EINVAL;
}

/* 1 trusted, 0 not, -1 a malformed trusted entry. */
static int is_trusted(const uint8_t a[16], const char *const *trusted)
{
    for (size_t i = 0; trusted && trusted[i]; i++) {
        uint8_t net[16];
        int prefix;
        if (parse_spec(trusted[i], net, &prefix) != 0)
            return -1;
        if (in_net(a, net, prefix))
            return 1;
    }
    return 0;
}

static int format_ip(const uint8_t a[16], char *out, size_t outlen)
{
    char buf[INET6_ADDRSTRLEN];
    const char *r = is_v4_mapped(a) ? inet_ntop(AF_INET, a + 12, buf, sizeof(buf))
                                    : inet_ntop(AF_INET6, a, buf, sizeof(buf));
    if (!r)
        return -EINVAL;
    size_t n = strlen(buf);
    if (n + 1 > outlen)
        return -ENOSPC;
    memcpy(out, buf, n + 1);
    return 0;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int p2p_ratelimit_client_ip(const char *peer_ip, const char *xff, const char *const *trusted_proxies, char *out,
                            size_t outlen)
{
    uint8_t peer[16];
    if (!peer_ip || !out || parse_ip(peer_ip, strlen(peer_ip), 1, peer) != 0)
        return -EINVAL;
    for (size_t i = 0; trusted_proxies && trusted_proxies[i]; i++)
        if (p2p_ratelimit_proxy_valid(trusted_proxies[i]) != 0)
            return -EINVAL;
    if (!xff || is_trusted(peer, trusted_proxies) != 1)
        return format_ip(peer, out, outlen);

    uint8_t cand[16];
    size_t end = strlen(xff);
    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t s = start, e = end;
        while (s < e && is_ows(xff[s]))
            s++;
        while (e > s && is_ows(xff[e - 1]))
            e--;
        if (parse_ip(xff + s, e - s, 1, cand) != 0)
            return format_ip(peer, out, outlen); /* garbage: ignore the header */
        if (is_trusted(cand, trusted_proxies) != 1 || start == 0)
            return format_ip(cand, out, outlen);
        end = start - 1; /* skip the comma */
    }
}
