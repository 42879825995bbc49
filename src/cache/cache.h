/*
 * cache.h — the cache services use (the guide's multi-level cache): L1 in the
 * node (cache/l1.h) in front of an optional L2 in Redis (cache/l2.h).
 *
 * Reads. p2p__cache_get answers an L1 hit at once (the callback runs before
 * the call returns). On a miss it asks Redis for the value and its remaining
 * TTL; a hit is copied into L1 with a TTL no longer than what Redis has left
 * (less the round trip), so an L1 copy never outlives its L2 entry. While Redis
 * is away, slow or over its in-flight cap, a miss is just a miss: the cache
 * never fails a call because Redis is down.
 *
 * Loads. p2p__cache_get_or_load adds a loader for values in neither level.
 * There is ONE flight per missing key: concurrent gets of that key (with or
 * without a loader) wait for the first one's Redis lookup and loader, then all
 * get the same answer. A loader that fails or misses the loader timeout answers
 * every waiter with its error (or -ETIMEDOUT) and nothing is cached; its late
 * completion is ignored. A set, delete or clear of a key while its flight runs
 * wins: the flight's result is still delivered but not cached.
 *
 * Writes. p2p__cache_set stores in L1 and sends SET ... PX ttl to Redis; a TTL
 * of 0 means the configured default (every entry expires). A delete or clear
 * removes from both. Writes made while Redis is away reach L1 only, so Redis
 * may still hold an older value until its TTL ends; L1 is per node and is not
 * invalidated by other nodes' writes (l1_max_ttl_ms bounds how stale a copy
 * may get).
 *
 * Names. Namespaces (one per service) are 1..64 of [A-Za-z0-9_.-]; keys are
 * NUL-terminated strings of 1..P2P_L1_MAX_KEY bytes. In Redis a key is
 * "p2p:<namespace>:<key>".
 *
 * Ownership. The cache copies namespaces, keys and values it keeps. A callback
 * gets `value` for the duration of the call only (copy what you keep); it may
 * call back into the cache. A call that returns 0 calls its callback exactly
 * once (perhaps before returning); one that returns an error never calls it.
 * The fill handle belongs to the loader until it calls p2p__cache_fill_done or
 * p2p__cache_fill_fail exactly once (which frees it), even after a timeout or
 * after the cache closed. Loop thread only.
 */
#ifndef P2P_CACHE_CACHE_H
#define P2P_CACHE_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache/l1.h"
#include "cache/l2.h"

typedef struct p2p_cache p2p_cache;
typedef struct p2p_cache_fill p2p_cache_fill;

typedef struct p2p_cache_config {
    size_t l1_max_bytes;         /* default 64 MiB */
    uint64_t default_ttl_ms;     /* TTL of a set with ttl 0 and of loads; default 300 s */
    uint64_t l1_max_ttl_ms;      /* with L2 on, an L1 copy lives at most this long (0 = no cap) */
    const char *redis_url;       /* NULL or "" = L1 only */
    uint64_t redis_timeout_ms;   /* per command; default 500. Connect: 4x, at least 1 s */
    unsigned redis_max_inflight; /* default 1024 */
    uint64_t loader_timeout_ms;  /* default 5000 */
    size_t max_flights;          /* keys being looked up or loaded at once; default 4096 */
    size_t max_waiters;          /* callers waiting on one key; default 4096 */
    /* Monotonic clock in ms; NULL = uv_now(loop). Tests use their own. */
    uint64_t (*now_ms)(void *arg);
    void *now_arg;
    /* State changes of the Redis link (never per call); may be NULL. */
    void (*log)(void *arg, int level /* p2p_log_level */, const char *msg);
    void *log_arg;
} p2p_cache_config;

typedef struct p2p_cache_stats {
    uint64_t gets;               /* get and get_or_load calls */
    uint64_t l1_hits, l1_misses; /* of those calls */
    uint64_t l2_hits, l2_misses; /* Redis lookups that answered */
    uint64_t l2_failed;          /* Redis lookups that failed (timeout, link lost) */
    uint64_t l2_skipped;         /* misses not asked to Redis (away, or over its cap) */
    uint64_t coalesced;          /* calls that joined a flight already running */
    uint64_t loads, load_ok, load_failed, load_timeouts;
    uint64_t sets, dels, clears;
    uint64_t l2_write_failed; /* sets/dels/clears Redis did not take (away or error) */
    uint64_t busy;            /* calls refused over max_flights / max_waiters */
    size_t flights;           /* running now */
    int l2_enabled;
    p2p_l1_stats l1;
    p2p_l2_stats l2; /* zero when L2 is off */
} p2p_cache_stats;

/* Creates the cache (and starts connecting to Redis when redis_url is set).
 * Returns NULL with a heap message in *err on a bad config (bad URL). */
p2p_cache *p2p__cache_new(uv_loop_t *loop, const p2p_cache_config *cfg, char **err);

/* Answers every waiting caller -ECANCELED, closes the Redis link and frees the
 * cache once its handles have closed (the loop must run on). Loaders still
 * running keep their fill handles (completing them is then a no-op). */
void p2p__cache_close(p2p_cache *c);

/* status: 0 found (value, len), -ENOENT not found, or the loader's error,
 * -ETIMEDOUT (loader too slow), -ECANCELED (cache closing). */
typedef void (*p2p_cache_get_cb)(int status, const void *value, size_t len, void *udata);

/* Completion of a write: status 0, or why Redis did not take it (-ENOTCONN when
 * L2 is off or away: the write is then in L1 only); n = entries removed by a
 * delete or clear (Redis's count when L2 answered, else L1's). */
typedef void (*p2p_cache_done_cb)(int status, uint64_t n, void *udata);

/* Called with a fill handle for a key in neither level; `ns` and `key` are
 * valid during the call. Completes with one of the two calls below, now or
 * later. */
typedef void (*p2p_cache_loader)(p2p_cache_fill *fill, const char *ns, const char *key, void *loader_udata);

/* Returns 0 (cb called once), -EINVAL (bad name or NULL cb), -EBUSY (too many
 * flights or waiters) or -ECANCELED (closing). */
int p2p__cache_get(p2p_cache *c, const char *ns, const char *key, p2p_cache_get_cb cb, void *udata);
int p2p__cache_get_or_load(p2p_cache *c, const char *ns, const char *key, p2p_cache_loader loader, void *loader_udata,
                           p2p_cache_get_cb cb, void *udata);

/* The loader's answer: the value is cached in L1 and Redis with ttl_ms (0 =
 * the default) and handed to every waiter. `value` must stay valid during the
 * call. Frees `fill`. */
void p2p__cache_fill_done(p2p_cache_fill *fill, const void *value, size_t len, uint64_t ttl_ms);
/* The loader failed: every waiter gets `err` (negative; -ENOENT = no such
 * value), nothing is cached. Frees `fill`. */
void p2p__cache_fill_fail(p2p_cache_fill *fill, int err);

/* Stores a copy. ttl_ms 0 = the default. Returns 0, -EINVAL, -E2BIG (value
 * above l1_max_bytes / 8) or -ECANCELED; `done` (may be NULL) reports what
 * Redis did. */
int p2p__cache_set(p2p_cache *c, const char *ns, const char *key, const void *value, size_t len, uint64_t ttl_ms,
                   p2p_cache_done_cb done, void *udata);
int p2p__cache_del(p2p_cache *c, const char *ns, const char *key, p2p_cache_done_cb done, void *udata);
/* Removes every key of `ns` from L1 and (SCAN + UNLINK, bounded) Redis. */
int p2p__cache_clear_ns(p2p_cache *c, const char *ns, p2p_cache_done_cb done, void *udata);

/* 1 when Redis is configured and the link is ready. */
int p2p__cache_l2_ready(const p2p_cache *c);
void p2p__cache_stats(const p2p_cache *c, p2p_cache_stats *out);

#endif
