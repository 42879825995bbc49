/*
 * l1.c — the in-process cache (see l1.h): a chained hash table for lookups and
 * one doubly linked list in recency order for eviction.
 *
 * Each entry is one allocation: header, namespace, key and value side by side,
 * so charging an entry is exact and freeing it is one free(). The hash is
 * FNV-1a over "ns\0key" mixed with a per-cache random seed, so keys chosen by
 * a service cannot be aimed at one bucket across nodes.
 */
#include "cache/l1.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct entry {
    struct entry *next_hash;
    struct entry *prev, *next; /* recency list: head = most recent */
    uint64_t hash;
    uint64_t expires; /* 0 = never */
    size_t ns_len, key_len, val_len;
    char data[]; /* ns '\0' key '\0' value */
} entry;

struct p2p_l1 {
    entry **buckets;
    size_t n_buckets; /* power of two */
    entry *head, *tail;
    uint64_t seed;
    size_t max_bytes;
    p2p_l1_stats st;
};

static size_t charge(const entry *e)
{
    return P2P_L1_ENTRY_OVERHEAD + e->ns_len + e->key_len + e->val_len;
}

static uint64_t hash_of(const p2p_l1 *c, const char *ns, size_t nl, const char *key, size_t kl)
{
    uint64_t h = 1469598103934665603ULL ^ c->seed;
    for (size_t i = 0; i < nl; i++)
        h = (h ^ (uint8_t)ns[i]) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (size_t i = 0; i < kl; i++)
        h = (h ^ (uint8_t)key[i]) * 1099511628211ULL;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

p2p_l1 *p2p__l1_new(size_t max_bytes)
{
    p2p_l1 *c = p2p__xcalloc(1, sizeof(*c));
    c->max_bytes = max_bytes < 4096 ? 4096 : max_bytes;
    c->st.max_bytes = c->max_bytes;
    c->n_buckets = 64;
    c->buckets = p2p__xcalloc(c->n_buckets, sizeof(entry *));
    if (RAND_bytes((unsigned char *)&c->seed, sizeof c->seed) != 1)
        c->seed = (uint64_t)(uintptr_t)c ^ p2p__wall_ms();
    return c;
}

void p2p__l1_free(p2p_l1 *c)
{
    if (!c)
        return;
    for (entry *e = c->head, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    free(c->buckets);
    free(c);
}

static void list_unlink(p2p_l1 *c, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(p2p_l1 *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static entry **slot_of(p2p_l1 *c, const char *ns, size_t nl, const char *key, size_t kl, uint64_t h)
{
    entry **p = &c->buckets[h & (c->n_buckets - 1)];
    for (; *p; p = &(*p)->next_hash) {
        entry *e = *p;
        if (e->hash == h && e->ns_len == nl && e->key_len == kl && memcmp(e->data, ns, nl) == 0 &&
            memcmp(e->data + nl + 1, key, kl) == 0)
            return p;
    }
    return p;
}

/* Unlinks and frees the entry at *slot. */
static void remove_at(p2p_l1 *c, entry **slot)
{
    entry *e = *slot;
    *slot = e->next_hash;
    list_unlink(c, e);
    c->st.entries--;
    c->st.bytes -= charge(e);
    free(e);
}

static void remove_entry(p2p_l1 *c, entry *e)
{
    entry **p = &c->buckets[e->hash & (c->n_buckets - 1)];
    while (*p != e)
        p = &(*p)->next_hash;
    remove_at(c, p);
}

static void grow(p2p_l1 *c)
{
    size_t n = c->n_buckets * 2;
    entry **b = p2p__xcalloc(n, sizeof(entry *));
    for (size_t i = 0; i < c->n_buckets; i++) {
        for (entry *e = c->buckets[i], *next; e; e = next) {
            next = e->next_hash;
            entry **slot = &b[e->hash & (n - 1)];
            e->next_hash = *slot;
            *slot = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

static int names_ok(const char *ns, const char *key, size_t *nl, size_t *kl)
{
    if (!ns || !key)
        return 0;
    *nl = strlen(ns);
    *kl = strlen(key);
    return *nl > 0 && *kl > 0 && *nl <= P2P_L1_MAX_KEY && *kl <= P2P_L1_MAX_KEY;
}

int p2p__l1_set(p2p_l1 *c, const char *ns, const char *key, const void *value, size_t len, uint64_t ttl_ms,
                uint64_t now)
{
    size_t nl, kl;
    if (!names_ok(ns, key, &nl, &kl) || (len && !value))
        return -EINVAL;
    if (len > c->max_bytes / 8)
        return -E2BIG;
    uint64_t h = hash_of(c, ns, nl, key, kl);
    entry **slot = slot_of(c, ns, nl, key, kl, h);
    if (*slot)
        remove_at(c, slot);
    entry *e = p2p__xmalloc(sizeof(*e) + nl + 1 + kl + 1 + len);
    e->hash = h;
    e->expires = ttl_ms ? now + ttl_ms : 0;
    e->ns_len = nl;
    e->key_len = kl;
    e->val_len = len;
    memcpy(e->data, ns, nl + 1);
    memcpy(e->data + nl + 1, key, kl + 1);
    if (len)
        memcpy(e->data + nl + 1 + kl + 1, value, len);
    /* make room: expired entries first (cheap to find at the tail only when
     * they are also old), then least recently used */
    while (c->tail && c->st.bytes + charge(e) > c->max_bytes) {
        entry *victim = c->tail;
        if (victim->expires && victim->expires <= now)
            c->st.expirations++;
        else
            c->st.evictions++;
        remove_entry(c, victim);
    }
    if (c->st.entries + 1 > c->n_buckets)
        grow(c);
    slot = &c->buckets[h & (c->n_buckets - 1)];
    e->next_hash = *slot;
    *slot = e;
    list_push_front(c, e);
    c->st.entries++;
    c->st.bytes += charge(e);
    c->st.sets++;
    return 0;
}

int p2p__l1_get(p2p_l1 *c, const char *ns, const char *key, uint64_t now, const void **value, size_t *len,
                uint64_t *ttl_left_ms)
{
    size_t nl, kl;
    if (!names_ok(ns, key, &nl, &kl)) {
        c->st.misses++;
        return 0;
    }
    entry **slot = slot_of(c, ns, nl, key, kl, hash_of(c, ns, nl, key, kl));
    entry *e = *slot;
    if (!e) {
        c->st.misses++;
        return 0;
    }
    if (e->expires && e->expires <= now) {
        c->st.expirations++;
        c->st.misses++;
        remove_at(c, slot);
        return 0;
    }
    list_unlink(c, e);
    list_push_front(c, e);
    c->st.hits++;
    *value = e->data + nl + 1 + kl + 1;
    *len = e->val_len;
    if (ttl_left_ms)
        *ttl_left_ms = e->expires ? e->expires - now : 0;
    return 1;
}

int p2p__l1_del(p2p_l1 *c, const char *ns, const char *key)
{
    size_t nl, kl;
    if (!names_ok(ns, key, &nl, &kl))
        return 0;
    entry **slot = slot_of(c, ns, nl, key, kl, hash_of(c, ns, nl, key, kl));
    if (!*slot)
        return 0;
    remove_at(c, slot);
    return 1;
}

size_t p2p__l1_clear_ns(p2p_l1 *c, const char *ns)
{
    size_t n = 0, nl = ns ? strlen(ns) : 0;
    for (entry *e = c->head, *next; e; e = next) {
        next = e->next;
        if (e->ns_len == nl && memcmp(e->data, ns, nl) == 0) {
            remove_entry(c, e);
            n++;
        }
    }
    return n;
}

size_t p2p__l1_expire(p2p_l1 *c, uint64_t now, size_t budget)
{
    size_t n = 0, seen = 0;
    for (entry *e = c->tail, *prev; e && (budget == 0 || seen < budget); e = prev, seen++) {
        prev = e->prev;
        if (e->expires && e->expires <= now) {
            remove_entry(c, e);
            c->st.expirations++;
            n++;
        }
    }
    return n;
}

void p2p__l1_stats(const p2p_l1 *c, p2p_l1_stats *out)
{
    *out = c->st;
}
