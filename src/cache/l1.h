/*
 * l1.h — the node's in-process cache (the guide's L1): namespaced keys, a TTL
 * per entry, bounded by bytes, least-recently-used eviction. Pure: time is
 * passed in (monotonic ms), no I/O, nothing global; one loop thread.
 *
 * Memory. Every entry is charged its key, namespace and value bytes plus a fixed
 * P2P_L1_ENTRY_OVERHEAD for its bookkeeping, so max_bytes bounds what the cache
 * really holds (within the hash table's own array, 8 bytes per bucket, which
 * grows with the entry count). A value larger than max_bytes / 8 is refused
 * (-E2BIG): one entry may not flush the whole cache.
 *
 * Expiry. An entry expires at now + ttl (ttl 0 = never, bounded only by
 * eviction). An expired entry is never returned; it is freed when it is next
 * looked up, or when eviction or p2p__l1_expire() reaches it.
 *
 * Namespaces keep services apart: "greeter" and "store" may use the same key.
 */
#ifndef P2P_CACHE_L1_H
#define P2P_CACHE_L1_H

#include <stddef.h>
#include <stdint.h>

#define P2P_L1_ENTRY_OVERHEAD 96 /* bytes charged per entry besides its data */
#define P2P_L1_MAX_KEY 1024      /* bytes, namespace and key each */

typedef struct p2p_l1 p2p_l1;

typedef struct p2p_l1_stats {
    uint64_t hits, misses, sets, evictions, expirations;
    size_t entries, bytes, max_bytes;
} p2p_l1_stats;

/* A cache of at most `max_bytes` (at least 4096). */
p2p_l1 *p2p__l1_new(size_t max_bytes);
void p2p__l1_free(p2p_l1 *c);

/* Stores a copy of `len` bytes under (ns, key), replacing any entry, with
 * ttl_ms (0 = no expiry). Returns 0, -EINVAL (empty or oversized ns/key) or
 * -E2BIG (value above max_bytes / 8). */
int p2p__l1_set(p2p_l1 *c, const char *ns, const char *key, const void *value, size_t len, uint64_t ttl_ms,
                uint64_t now);

/* Looks up (ns, key). Returns 1 and points *value (valid until the next call
 * that changes the cache) and *len at the bytes, or 0 when absent or expired.
 * A hit makes the entry the most recently used. `*ttl_left_ms` (may be NULL)
 * gets the time to expiry, 0 for none. */
int p2p__l1_get(p2p_l1 *c, const char *ns, const char *key, uint64_t now, const void **value, size_t *len,
                uint64_t *ttl_left_ms);

/* Removes (ns, key); returns 1 if it was there. */
int p2p__l1_del(p2p_l1 *c, const char *ns, const char *key);

/* Removes every entry of `ns`; returns how many. */
size_t p2p__l1_clear_ns(p2p_l1 *c, const char *ns);

/* Frees expired entries, at most `budget` of them (0 = all); returns how many. */
size_t p2p__l1_expire(p2p_l1 *c, uint64_t now, size_t budget);

void p2p__l1_stats(const p2p_l1 *c, p2p_l1_stats *out);

#endif
