/*
 * cache.c — the two-level cache facade (see cache.h for the rules).
 *
 * A "flight" is one missing key being looked up in Redis and, if a waiter
 * brought a loader, loaded. Flights live in a small hash table keyed by
 * (namespace, key) so later callers join them instead of starting their own;
 * the waiters are a FIFO list. All loaders share one timeout, so flights that
 * are loading sit in a list in deadline order and one timer serves them all.
 *
 * A flight is finished exactly once (finish()): it leaves the table first, so
 * callbacks of its waiters that ask for the same key start a fresh flight (or
 * hit the value just cached), then each waiter is answered, then it is freed.
 */
#include "cache/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define SWEEP_MS 1000
#define SWEEP_BUDGET 1024
#define HIT_STACK_COPY 1024

typedef struct waiter {
    struct waiter *next;
    p2p_cache_get_cb cb;
    void *udata;
} waiter;

typedef struct flight {
    struct flight *hnext;         /* hash chain */
    struct flight *dprev, *dnext; /* loading list, deadline order */
    p2p_cache *c;
    uint64_t hash;
    char *ns, *key;
    waiter *whead, **wtail;
    size_t n_waiters;
    p2p_cache_loader loader;
    void *loader_udata;
    p2p_cache_fill *fill; /* while loading */
    uint64_t deadline;
    unsigned in_l2 : 1;
    unsigned loading : 1;
    unsigned superseded : 1; /* a write to this key happened meanwhile: do not cache */
} flight;

struct p2p_cache_fill {
    flight *f; /* NULL once the flight ended without it (timeout, close) */
};

struct p2p_cache {
    uv_loop_t *loop;
    p2p_cache_config cfg;
    p2p_l1 *l1;
    p2p_l2 *l2; /* NULL = L1 only */

    flight **buckets;
    size_t n_buckets, n_flights;
    flight *dhead, *dtail;

    uv_timer_t load_timer, sweep_timer;
    int handles_open;
    int closing;
    p2p_cache_stats st;
};

static uint64_t now_of(const p2p_cache *c)
{
    return c->cfg.now_ms ? c->cfg.now_ms(c->cfg.now_arg) : uv_now(c->loop);
}

static int key_ok(const char *key)
{
    if (!key)
        return 0;
    size_t n = strlen(key);
    return n > 0 && n <= P2P_L1_MAX_KEY;
}

static int names_ok(const char *ns, const char *key)
{
    return p2p__l2_ns_valid(ns) && key_ok(key);
}

static uint64_t hash_of(const char *ns, const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = ns; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return h ^ (h >> 31);
}

/* ---- the TTL rules ---- */

static uint64_t ttl_or_default(const p2p_cache *c, uint64_t ttl)
{
    return ttl ? ttl : c->cfg.default_ttl_ms;
}

/* TTL of an L1 copy of a value whose L2 entry has `ttl` left. */
static uint64_t l1_ttl(const p2p_cache *c, uint64_t ttl)
{
    if (c->l2 && c->cfg.l1_max_ttl_ms && ttl > c->cfg.l1_max_ttl_ms)
        return c->cfg.l1_max_ttl_ms;
    return ttl;
}

/* ---- the flight table ---- */

static flight *flight_find(p2p_cache *c, const char *ns, const char *key, uint64_t h)
{
    for (flight *f = c->buckets[h & (c->n_buckets - 1)]; f; f = f->hnext)
        if (f->hash == h && strcmp(f->ns, ns) == 0 && strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static void table_grow(p2p_cache *c)
{
    size_t n = c->n_buckets * 2;
    flight **b = p2p__xcalloc(n, sizeof *b);
    for (size_t i = 0; i < c->n_buckets; i++)
        for (flight *f = c->buckets[i], *next; f; f = next) {
            next = f->hnext;
            f->hnext = b[f->hash & (n - 1)];
            b[f->hash & (n - 1)] = f;
        }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = n;
}

static void table_remove(p2p_cache *c, flight *f)
{
    flight **p = &c->buckets[f->hash & (c->n_buckets - 1)];
    while (*p && *p != f)
        p = &(*p)->hnext;
    if (*p) {
        *p = f->hnext;
        c->n_flights--;
    }
    f->hnext = NULL;
}

static void dlist_remove(p2p_cache *c, flight *f)
{
    if (!f->loading)
        return;
    if (f->dprev)
        f->dprev->dnext = f->dnext;
    else
        c->dhead = f->dnext;
    if (f->dnext)
        f->dnext->dprev = f->dprev;
    else
        c->dtail = f->dprev;
    f->dprev = f->dnext = NULL;
    f->loading = 0;
}

static int add_waiter(flight *f, p2p_cache_get_cb cb, void *udata)
{
    if (f->n_waiters >= f->c->cfg.max_waiters)
        return -EBUSY;
    waiter *w = p2p__xcalloc(1, sizeof *w);
    w->cb = cb;
    w->udata = udata;
    *f->wtail = w;
    f->wtail = &w->next;
    f->n_waiters++;
    return 0;
}

/* Ends the flight: out of the table, every waiter answered, freed. `value`
 * must not live in L1 (a waiter's callback may change L1). */
static void finish(flight *f, int status, const void *value, size_t len)
{
    p2p_cache *c = f->c;
    table_remove(c, f);
    dlist_remove(c, f);
    if (f->fill) {
        f->fill->f = NULL;
        f->fill = NULL;
    }
    waiter *w = f->whead;
    f->whead = NULL;
    while (w) {
        waiter *next = w->next;
        w->cb(status, status == 0 ? value : NULL, status == 0 ? len : 0, w->udata);
        free(w);
        w = next;
    }
    free(f->ns);
    free(f->key);
    free(f);
}

/* Answers the flight from L1 when it holds the key (written meanwhile). */
static int finish_from_l1(flight *f)
{
    p2p_cache *c = f->c;
    const void *v;
    size_t len;
    if (!p2p__l1_get(c->l1, f->ns, f->key, now_of(c), &v, &len, NULL))
        return 0;
    void *copy = p2p__xmalloc(len ? len : 1);
    memcpy(copy, v, len);
    finish(f, 0, copy, len);
    free(copy);
    return 1;
}

/* ---- loading ---- */

static void on_load_timer(uv_timer_t *t);

static void arm_load_timer(p2p_cache *c)
{
    if (!c->dhead || c->closing)
        return;
    uint64_t now = now_of(c);
    uv_timer_start(&c->load_timer, on_load_timer, c->dhead->deadline > now ? c->dhead->deadline - now : 1, 0);
}

static void on_load_timer(uv_timer_t *t)
{
    p2p_cache *c = t->data;
    uint64_t now = now_of(c);
    while (c->dhead && c->dhead->deadline <= now) {
        flight *f = c->dhead;
        c->st.load_timeouts++;
        finish(f, -ETIMEDOUT, NULL, 0); /* detaches the fill: a late answer is dropped */
    }
    arm_load_timer(c);
}

static void run_loader(flight *f)
{
    p2p_cache *c = f->c;
    c->st.loads++;
    p2p_cache_fill *fill = p2p__xcalloc(1, sizeof *fill);
    fill->f = f;
    f->fill = fill;
    f->loading = 1;
    f->deadline = now_of(c) + c->cfg.loader_timeout_ms;
    f->dprev = c->dtail;
    f->dnext = NULL;
    if (c->dtail)
        c->dtail->dnext = f;
    else
        c->dhead = f;
    c->dtail = f;
    if (c->dhead == f)
        arm_load_timer(c);
    f->loader(fill, f->ns, f->key, f->loader_udata); /* may finish (and free) f at once */
}

/* Redis had nothing (or could not be asked): load, or answer not found. */
static void after_l2_miss(flight *f)
{
    if (f->superseded && finish_from_l1(f))
        return;
    if (f->loader)
        run_loader(f);
    else
        finish(f, -ENOENT, NULL, 0);
}

static void l2_write(p2p_cache *c, int kind, const char *ns, const char *key, const void *value, size_t len,
                     uint64_t ttl, p2p_cache_done_cb done, void *udata, uint64_t l1_removed);

void p2p__cache_fill_done(p2p_cache_fill *fill, const void *value, size_t len, uint64_t ttl_ms)
{
    flight *f = fill->f;
    free(fill);
    if (!f)
        return;
    f->fill = NULL;
    p2p_cache *c = f->c;
    c->st.load_ok++;
    if (!f->superseded) {
        uint64_t ttl = ttl_or_default(c, ttl_ms);
        if (p2p__l1_set(c->l1, f->ns, f->key, value, len, l1_ttl(c, ttl), now_of(c)) == 0)
            l2_write(c, 0, f->ns, f->key, value, len, ttl, NULL, NULL, 0);
    }
    finish(f, 0, value ? value : "", len);
}

void p2p__cache_fill_fail(p2p_cache_fill *fill, int err)
{
    flight *f = fill->f;
    free(fill);
    if (!f)
        return;
    f->fill = NULL;
    f->c->st.load_failed++;
    finish(f, err < 0 ? err : -EIO, NULL, 0);
}

/* ---- reads ---- */

static void on_l2_got(int status, const void *value, size_t len, uint64_t ttl, void *udata)
{
    flight *f = udata;
    p2p_cache *c = f->c;
    f->in_l2 = 0;
    if (c->closing || status == -ECANCELED) {
        finish(f, -ECANCELED, NULL, 0);
        return;
    }
    if (status == 1) {
        c->st.l2_hits++;
        if (f->superseded && finish_from_l1(f))
            return;
        if (!f->superseded)
            p2p__l1_set(c->l1, f->ns, f->key, value, len, l1_ttl(c, ttl ? ttl : c->cfg.default_ttl_ms), now_of(c));
        finish(f, 0, value, len); /* value belongs to the Redis reply: stable here */
        return;
    }
    if (status == 0)
        c->st.l2_misses++;
    else
        c->st.l2_failed++;
    after_l2_miss(f);
}

static int lookup(p2p_cache *c, const char *ns, const char *key, p2p_cache_loader loader, void *loader_udata,
                  p2p_cache_get_cb cb, void *udata)
{
    if (!c || !cb || !names_ok(ns, key))
        return -EINVAL;
    if (c->closing)
        return -ECANCELED;
    c->st.gets++;
    const void *v;
    size_t len;
    if (p2p__l1_get(c->l1, ns, key, now_of(c), &v, &len, NULL)) {
        c->st.l1_hits++;
        /* copy: the callback may change L1 and so move or free the entry */
        char stack[HIT_STACK_COPY];
        char *copy = len <= sizeof stack ? stack : p2p__xmalloc(len);
        memcpy(copy, v, len);
        cb(0, copy, len, udata);
        if (copy != stack)
            free(copy);
        return 0;
    }
    c->st.l1_misses++;
    uint64_t h = hash_of(ns, key);
    flight *f = flight_find(c, ns, key, h);
    if (f) {
        if (add_waiter(f, cb, udata) != 0) {
            c->st.busy++;
            return -EBUSY;
        }
        c->st.coalesced++;
        if (loader && !f->loader) { /* the first loader brought wins */
            f->loader = loader;
            f->loader_udata = loader_udata;
        }
        return 0;
    }
    int l2_up = p2p__l2_ready(c->l2);
    if (!l2_up && c->l2)
        c->st.l2_skipped++;
    if (!l2_up && !loader) {
        cb(-ENOENT, NULL, 0, udata);
        return 0;
    }
    if (c->n_flights >= c->cfg.max_flights) {
        c->st.busy++;
        return -EBUSY;
    }
    f = p2p__xcalloc(1, sizeof *f);
    f->c = c;
    f->hash = h;
    f->ns = p2p__xstrdup(ns);
    f->key = p2p__xstrdup(key);
    f->wtail = &f->whead;
    f->loader = loader;
    f->loader_udata = loader_udata;
    add_waiter(f, cb, udata);
    if (c->n_flights + 1 > c->n_buckets)
        table_grow(c);
    f->hnext = c->buckets[h & (c->n_buckets - 1)];
    c->buckets[h & (c->n_buckets - 1)] = f;
    c->n_flights++;
    if (l2_up) {
        int r = p2p__l2_get(c->l2, ns, key, on_l2_got, f);
        if (r == 0) {
            f->in_l2 = 1;
            return 0;
        }
        c->st.l2_skipped++;
    }
    after_l2_miss(f);
    return 0;
}

int p2p__cache_get(p2p_cache *c, const char *ns, const char *key, p2p_cache_get_cb cb, void *udata)
{
    return lookup(c, ns, key, NULL, NULL, cb, udata);
}

int p2p__cache_get_or_load(p2p_cache *c, const char *ns, const char *key, p2p_cache_loader loader, void *loader_udata,
                           p2p_cache_get_cb cb, void *udata)
{
    if (!loader)
        return -EINVAL;
    return lookup(c, ns, key, loader, loader_udata, cb, udata);
}

/* ---- writes ---- */

typedef struct write_ctx {
    p2p_cache *c;
    p2p_cache_done_cb done;
    void *udata;
} write_ctx;

static void on_l2_written(int status, uint64_t n, void *udata)
{
    write_ctx *w = udata;
    if (status != 0 && status != -ECANCELED)
        w->c->st.l2_write_failed++;
    if (w->done)
        w->done(status, n, w->udata);
    free(w);
}

/* kind: 0 set, 1 del, 2 clear. Reports to `done` exactly once. */
static void l2_write(p2p_cache *c, int kind, const char *ns, const char *key, const void *value, size_t len,
                     uint64_t ttl, p2p_cache_done_cb done, void *udata, uint64_t l1_removed)
{
    int r = -ENOTCONN;
    if (c->l2) {
        write_ctx *w = p2p__xmalloc(sizeof *w);
        w->c = c;
        w->done = done;
        w->udata = udata;
        r = kind == 0   ? p2p__l2_set(c->l2, ns, key, value, len, ttl, on_l2_written, w)
            : kind == 1 ? p2p__l2_del(c->l2, ns, key, on_l2_written, w)
                        : p2p__l2_clear_ns(c->l2, ns, on_l2_written, w);
        if (r == 0)
            return;
        free(w);
        c->st.l2_write_failed++;
    }
    if (done)
        done(r, l1_removed, udata);
}

static void supersede(p2p_cache *c, const char *ns, const char *key)
{
    if (!c->n_flights)
        return;
    if (key) {
        flight *f = flight_find(c, ns, key, hash_of(ns, key));
        if (f)
            f->superseded = 1;
        return;
    }
    for (size_t i = 0; i < c->n_buckets; i++)
        for (flight *f = c->buckets[i]; f; f = f->hnext)
            if (strcmp(f->ns, ns) == 0)
                f->superseded = 1;
}

int p2p__cache_set(p2p_cache *c, const char *ns, const char *key, const void *value, size_t len, uint64_t ttl_ms,
                   p2p_cache_done_cb done, void *udata)
{
    if (!c || !names_ok(ns, key) || (len && !value))
        return -EINVAL;
    if (c->closing)
        return -ECANCELED;
    uint64_t ttl = ttl_or_default(c, ttl_ms);
    int r = p2p__l1_set(c->l1, ns, key, value, len, l1_ttl(c, ttl), now_of(c));
    if (r != 0)
        return r;
    c->st.sets++;
    supersede(c, ns, key);
    l2_write(c, 0, ns, key, value, len, ttl, done, udata, 0);
    return 0;
}

int p2p__cache_del(p2p_cache *c, const char *ns, const char *key, p2p_cache_done_cb done, void *udata)
{
    if (!c || !names_ok(ns, key))
        return -EINVAL;
    if (c->closing)
        return -ECANCELED;
    int n = p2p__l1_del(c->l1, ns, key);
    c->st.dels++;
    supersede(c, ns, key);
    l2_write(c, 1, ns, key, NULL, 0, 0, done, udata, (uint64_t)n);
    return 0;
}

int p2p__cache_clear_ns(p2p_cache *c, const char *ns, p2p_cache_done_cb done, void *udata)
{
    if (!c || !p2p__l2_ns_valid(ns))
        return -EINVAL;
    if (c->closing)
        return -ECANCELED;
    size_t n = p2p__l1_clear_ns(c->l1, ns);
    c->st.clears++;
    supersede(c, ns, NULL);
    l2_write(c, 2, ns, NULL, NULL, 0, 0, done, udata, n);
    return 0;
}

/* ---- life cycle ---- */

static void on_sweep(uv_timer_t *t)
{
    p2p_cache *c = t->data;
    p2p__l1_expire(c->l1, now_of(c), SWEEP_BUDGET);
}

p2p_cache *p2p__cache_new(uv_loop_t *loop, const p2p_cache_config *cfg, char **err)
{
    p2p_cache *c = p2p__xcalloc(1, sizeof *c);
    c->loop = loop;
    c->cfg = *cfg;
    c->cfg.redis_url = NULL; /* not kept: the L2 parses it now */
    if (!c->cfg.l1_max_bytes)
        c->cfg.l1_max_bytes = 64u << 20;
    if (!c->cfg.default_ttl_ms)
        c->cfg.default_ttl_ms = 300000;
    if (!c->cfg.redis_timeout_ms)
        c->cfg.redis_timeout_ms = 500;
    if (!c->cfg.loader_timeout_ms)
        c->cfg.loader_timeout_ms = 5000;
    if (!c->cfg.max_flights)
        c->cfg.max_flights = 4096;
    if (!c->cfg.max_waiters)
        c->cfg.max_waiters = 4096;
    if (cfg->redis_url && *cfg->redis_url) {
        uint64_t ct = c->cfg.redis_timeout_ms * 4;
        p2p_l2_config lc = {
            .url = cfg->redis_url,
            .prefix = "p2p",
            .connect_timeout_ms = ct < 1000 ? 1000 : ct,
            .command_timeout_ms = c->cfg.redis_timeout_ms,
            .max_inflight = c->cfg.redis_max_inflight,
            .log = cfg->log,
            .log_arg = cfg->log_arg,
        };
        c->l2 = p2p__l2_new(loop, &lc, err);
        if (!c->l2) {
            free(c);
            return NULL;
        }
        c->st.l2_enabled = 1;
    }
    c->l1 = p2p__l1_new(c->cfg.l1_max_bytes);
    c->n_buckets = 64;
    c->buckets = p2p__xcalloc(c->n_buckets, sizeof *c->buckets);
    uv_timer_init(loop, &c->load_timer);
    uv_timer_init(loop, &c->sweep_timer);
    c->load_timer.data = c->sweep_timer.data = c;
    c->handles_open = 2;
    uv_timer_start(&c->sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&c->sweep_timer);
    return c;
}

static void on_closed(uv_handle_t *h)
{
    p2p_cache *c = h->data;
    if (--c->handles_open > 0)
        return;
    p2p__l1_free(c->l1);
    free(c->buckets);
    free(c);
}

void p2p__cache_close(p2p_cache *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    /* L2 lookups in flight are answered -ECANCELED now, which ends their flights */
    p2p__l2_close(c->l2);
    c->l2 = NULL;
    for (size_t i = 0; i < c->n_buckets; i++)
        while (c->buckets[i])
            finish(c->buckets[i], -ECANCELED, NULL, 0);
    uv_timer_stop(&c->load_timer);
    uv_close((uv_handle_t *)&c->load_timer, on_closed);
    uv_close((uv_handle_t *)&c->sweep_timer, on_closed);
}

int p2p__cache_l2_ready(const p2p_cache *c)
{
    return c && p2p__l2_ready(c->l2);
}

void p2p__cache_stats(const p2p_cache *c, p2p_cache_stats *out)
{
    *out = c->st;
    out->flights = c->n_flights;
    p2p__l1_stats(c->l1, &out->l1);
    if (c->l2)
        p2p__l2_stats(c->l2, &out->l2);
    else
        memset(&out->l2, 0, sizeof out->l2);
}
