/*
 * ratelimit.h — per-client request rate limiting with token buckets, and the
 * client address behind trusted reverse proxies. Pure: time is passed in as
 * monotonic milliseconds, nothing global, no I/O; one loop thread (not
 * thread-safe).
 *
 * Buckets. There is one bucket per (identity, endpoint class). A class has a
 * rate R (requests per minute) and a burst B. A bucket starts full with B
 * tokens, gains R tokens per 60 000 ms continuously (kept exactly, in integer
 * units of 1/60000 token, so there is no rounding drift), never holds more than
 * B, and every allowed request takes its cost in tokens (1 for a plain
 * request, N for a JSON-RPC batch of N calls). A request finding fewer tokens
 * than its cost is refused whole (nothing is taken) with
 *     retry_after = ceil(ceil(missing_units / R) ms / 1000) seconds  (>= 1),
 * i.e. the wait until the whole cost is back. A cost above the class's burst
 * can never be paid: it is refused with -E2BIG (nothing taken), so the caller
 * can say "too large" instead of "retry later". Defaults (the node's config
 * keys rate_limit_*): operators rpc 100/min burst 20, health 300/min burst 50,
 * other 200/min burst 30; node identities (client certificates, which call
 * each other's /rpc for remote calls and push-pull) rpc 6000/min burst 1000,
 * other 1200/min burst 200; enrollment per join token 6000/min burst 1000,
 * refused enrollment attempts per address 30/min burst 10, the CA certificate
 * (all clients together) 60000/min burst 5000. Bounds: 1 <= R <= P2P_RL_MAX_RATE (1 000 000),
 * 1 <= B <= P2P_RL_MAX_BURST (10 000); the config keys take their ranges from
 * these constants. A clock that goes backwards counts as no time passing.
 *
 * Table. A fixed array of `capacity` slots (power of two, default 65536,
 * 24 bytes each) allocated at creation; nothing is allocated afterwards. A slot
 * holds a 64-bit SipHash-2-4 of (class, identity) under a random key drawn at
 * creation — not the identity itself — so memory does not depend on identity
 * length, and nobody can aim collisions at a slot. (Two identities share a
 * bucket only on a 64-bit hash collision: about capacity/2^64 per lookup.)
 * A key lives within a window of 16 consecutive slots from its home slot
 * (linear probing). When a new key finds no free slot in its window, one
 * entry in the window is evicted:
 *   - the victim is the entry whose bucket, refilled to now, is fullest —
 *     smallest deficit (B - tokens), compared in token units across classes;
 *     ties go to the one least recently seen;
 *   - a full bucket is indistinguishable from no bucket, so evicting it loses
 *     nothing; evicting any other entry can only hand that client back its
 *     deficit, and the policy picks the entry for which this gift is smallest.
 * Consequences: a flood of one-shot identities (addresses, subjects) only ever
 * displaces entries at least as full as its own fresh ones — a client that is
 * being limited (a nearly empty bucket) is displaced only when all 15 other
 * entries of its window are even emptier, which an attacker cannot arrange
 * without depleting (and so being limited on) thousands of buckets in a
 * keyed-hash layout it cannot see. The flood itself costs a fixed amount of
 * memory.
 *
 * Client address (p2p_ratelimit_client_ip). X-Forwarded-For is honoured only
 * when the TCP peer is a trusted proxy. Then the list is read from the right:
 * addresses that are themselves trusted proxies are skipped, and the first one
 * that is not is the client (if all are trusted, the left-most one). Every
 * element read must be an IP literal (IPv4 dotted quad, IPv6, optionally in
 * [brackets], surrounded by optional spaces/tabs); an empty or non-IP element
 * makes the whole header ignored and the peer is the client. Elements to the
 * left of the chosen one are never read: they are whatever the client sent.
 * Several X-Forwarded-For header lines must be joined with "," in order.
 * Trusted proxies are IP literals or CIDR blocks ("10.0.0.0/8", "fd00::/8",
 * host bits ignored). IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are the
 * same as the IPv4 address in every comparison, and the result is normalized
 * text (inet_ntop; mapped addresses printed as IPv4).
 */
#ifndef P2P_AUTH_RATELIMIT_H
#define P2P_AUTH_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/* Endpoint classes: operators (tokens, anonymous clients) and node identities
 * (client certificates) have their own. */
enum {
    P2P_RL_RPC = 0,
    P2P_RL_HEALTH = 1,
    P2P_RL_OTHER = 2,
    P2P_RL_NODE_RPC = 3,   /* a node certificate on /rpc */
    P2P_RL_NODE_OTHER = 4, /* a node certificate anywhere else (push-pull, renewal, health) */
    /* Enrollment (POST /internal/cert-request): the admission hook does not
     * meter it; the PKI component does once it knows the outcome:
     * ENROLL_TOKEN is keyed by join token (taken once the token checks out),
     * ENROLL_FAIL by client address (taken for every refused attempt, and an
     * empty one refuses the address's next attempts with 429). */
    P2P_RL_ENROLL_TOKEN = 5,
    P2P_RL_ENROLL_FAIL = 6,
    /* GET /internal/ca-cert: one bucket for all clients (a public, static
     * document; the bucket bounds a flood, it does not single anyone out). */
    P2P_RL_CA_CERT = 7,
    P2P_RL_NCLASSES = 8
};

#define P2P_RL_DEFAULT_CAPACITY 65536
#define P2P_RL_MIN_CAPACITY 16
#define P2P_RL_MAX_CAPACITY (1u << 24)
#define P2P_RL_MAX_RATE 1000000 /* per minute */
#define P2P_RL_MAX_BURST 10000
#define P2P_RL_MIN_RATE 1
#define P2P_RL_MIN_BURST 1
#define P2P_RL_WINDOW 16 /* probe window, slots */

typedef struct p2p_ratelimit p2p_ratelimit;

typedef struct p2p_ratelimit_rate {
    uint32_t per_minute; /* R */
    uint32_t burst;      /* B */
} p2p_ratelimit_rate;

typedef struct p2p_ratelimit_opts {
    p2p_ratelimit_rate rates[P2P_RL_NCLASSES]; /* indexed by P2P_RL_* */
    size_t capacity; /* slots; rounded up to a power of two; 0 = default */
} p2p_ratelimit_opts;

/* Fills `o` with the defaults above. */
void p2p_ratelimit_opts_default(p2p_ratelimit_opts *o);

/* Creates a limiter. Returns 0, -EINVAL (a rate or burst out of bounds, capacity
 * out of P2P_RL_MIN_CAPACITY..P2P_RL_MAX_CAPACITY), -EIO (no randomness for the
 * hash key) or -ENOMEM. */
int p2p_ratelimit_new(const p2p_ratelimit_opts *o, p2p_ratelimit **out);
void p2p_ratelimit_free(p2p_ratelimit *rl);

/* Accounts a request of `identity` (non-empty string: node id, token key or
 * client IP) costing `cost` tokens (>= 1) in class `cls` at `now_ms`
 * (monotonic). Returns 1 when allowed (all `cost` tokens taken,
 * *retry_after_s = 0), 0 when limited (nothing taken, *retry_after_s >= 1:
 * the wait until `cost` tokens are there), -E2BIG when `cost` exceeds the
 * class's burst (nothing taken, nothing stored; *retry_after_s = 0), -EINVAL
 * on a bad argument (cost 0 included). retry_after_s may be NULL. */
int p2p_ratelimit_take(p2p_ratelimit *rl, const char *identity, int cls, uint32_t cost, uint64_t now_ms,
                       uint32_t *retry_after_s);

/* Whether `identity` could take `cost` tokens of class `cls` now, without
 * taking them or storing anything: 1 yes (*retry_after_s = 0), 0 no
 * (*retry_after_s >= 1, as p2p_ratelimit_take would say), -E2BIG / -EINVAL as
 * p2p_ratelimit_take. An identity without a bucket has a full one. */
int p2p_ratelimit_peek(const p2p_ratelimit *rl, const char *identity, int cls, uint32_t cost, uint64_t now_ms,
                       uint32_t *retry_after_s);

/* p2p_ratelimit_take() with cost 1. */
int p2p_ratelimit_check(p2p_ratelimit *rl, const char *identity, int cls, uint64_t now_ms, uint32_t *retry_after_s);

/* The burst of class `cls` (0 for a bad class). */
uint32_t p2p_ratelimit_burst(const p2p_ratelimit *rl, int cls);

/* Occupied slots, total slots, and bytes held (constant for the limiter's life). */
size_t p2p_ratelimit_count(const p2p_ratelimit *rl);
size_t p2p_ratelimit_capacity(const p2p_ratelimit *rl);
size_t p2p_ratelimit_memory(const p2p_ratelimit *rl);

/* 0 if `spec` is a valid trusted-proxy entry (IP literal or CIDR), else -EINVAL.
 * For validating configuration at startup. */
int p2p_ratelimit_proxy_valid(const char *spec);

/* Writes the client's address (see the policy above) to out[outlen] as a
 * NUL-terminated string (46 bytes always suffice). `xff` may be NULL (no
 * header); `trusted_proxies` is a NULL-terminated list, or NULL for none.
 * Returns 0, -EINVAL (peer_ip not an IP literal, a malformed trusted entry) or
 * -ENOSPC (outlen too small). */
int p2p_ratelimit_client_ip(const char *peer_ip, const char *xff, const char *const *trusted_proxies, char *out,
                            size_t outlen);

#endif
