/*
 * component.c — the "cache" component (see component.h). Start builds the
 * cache (a bad redis_url cannot get here: config.c validates it), stop closes
 * it; the figures go to /metrics as the group "cache".
 */
#include "cache/component.h"

#include <errno.h>
#include <stdlib.h>

#include "cache/cache.h"
#include "core/metrics.h"
#include "core/util.h"

typedef struct cache_comp {
    p2p_ctx *ctx;
    p2p_cache *cache;
} cache_comp;

static void on_log(void *arg, int level, const char *msg)
{
    p2p_log(arg, (p2p_log_level)level, "cache", "%s", msg);
}

#define C(name, help, v) p2p__metrics_emit(out, name, help, P2P_METRIC_COUNTER, NULL, NULL, (double)(v))
#define G(name, help, v) p2p__metrics_emit(out, name, help, P2P_METRIC_GAUGE, NULL, NULL, (double)(v))

static void cache_metrics(p2p_ctx *ctx, p2p_metrics_out *out, void *arg)
{
    (void)ctx;
    cache_comp *cc = arg;
    if (!cc->cache)
        return;
    p2p_cache_stats st;
    p2p__cache_stats(cc->cache, &st);
    static const char hits_help[] = "Cache lookups answered, by level (l1: in the node, l2: Redis).";
    p2p__metrics_emit(out, "p2p_cache_hits_total", hits_help, P2P_METRIC_COUNTER, "level", "l1", (double)st.l1_hits);
    p2p__metrics_emit(out, "p2p_cache_hits_total", hits_help, P2P_METRIC_COUNTER, "level", "l2", (double)st.l2_hits);
    static const char miss_help[] = "Cache lookups a level did not have (l2: Redis answered 'not there').";
    p2p__metrics_emit(out, "p2p_cache_misses_total", miss_help, P2P_METRIC_COUNTER, "level", "l1",
                      (double)st.l1_misses);
    p2p__metrics_emit(out, "p2p_cache_misses_total", miss_help, P2P_METRIC_COUNTER, "level", "l2",
                      (double)st.l2_misses);
    C("p2p_cache_gets_total", "Cache get and get-or-load calls.", st.gets);
    C("p2p_cache_sets_total", "Cache sets.", st.sets);
    C("p2p_cache_deletes_total", "Cache deletes.", st.dels);
    C("p2p_cache_coalesced_total", "Gets that joined a lookup or load of the same key already running.", st.coalesced);
    static const char load_help[] = "Loader runs of get-or-load, by outcome.";
    p2p__metrics_emit(out, "p2p_cache_loads_total", load_help, P2P_METRIC_COUNTER, "outcome", "ok", (double)st.load_ok);
    p2p__metrics_emit(out, "p2p_cache_loads_total", load_help, P2P_METRIC_COUNTER, "outcome", "failed",
                      (double)st.load_failed);
    p2p__metrics_emit(out, "p2p_cache_loads_total", load_help, P2P_METRIC_COUNTER, "outcome", "timeout",
                      (double)st.load_timeouts);
    C("p2p_cache_busy_total", "Cache calls refused: too many keys or waiters in flight.", st.busy);
    G("p2p_cache_flights", "Keys being looked up in Redis or loaded now.", st.flights);
    G("p2p_cache_l1_entries", "Entries in the in-process cache.", st.l1.entries);
    G("p2p_cache_l1_bytes", "Bytes charged to the in-process cache.", st.l1.bytes);
    G("p2p_cache_l1_max_bytes", "Bound of the in-process cache (cache_l1_max_bytes).", st.l1.max_bytes);
    C("p2p_cache_l1_evictions_total", "In-process entries evicted to stay within the bound.", st.l1.evictions);
    C("p2p_cache_l1_expirations_total", "In-process entries removed at the end of their TTL.", st.l1.expirations);
    G("p2p_cache_l2_enabled", "1 when Redis is configured (redis_enabled and redis_url).", st.l2_enabled);
    if (!st.l2_enabled)
        return;
    G("p2p_cache_l2_connected", "1 while the Redis link is ready.", st.l2.state == P2P_L2_READY);
    C("p2p_cache_l2_connects_total", "Redis links established (the first one and every reconnect).", st.l2.connects);
    C("p2p_cache_l2_connect_failures_total", "Redis connect attempts that failed or timed out.",
      st.l2.connect_failures);
    C("p2p_cache_l2_disconnects_total", "Ready Redis links lost or dropped.", st.l2.disconnects);
    C("p2p_cache_l2_commands_total", "Commands sent to Redis.", st.l2.commands);
    C("p2p_cache_l2_errors_total", "Redis error replies and failed commands.", st.l2.errors);
    C("p2p_cache_l2_timeouts_total", "Redis commands that missed cache_redis_timeout_ms.", st.l2.timeouts);
    C("p2p_cache_l2_skipped_total", "Lookups and writes not sent to Redis (away, or in-flight cap).",
      st.l2_skipped + st.l2_write_failed);
    G("p2p_cache_l2_inflight", "Redis commands awaiting their reply.", st.l2.inflight);
}

static int cache_start(p2p_component *c, char **err)
{
    cache_comp *cc = c->self;
    p2p_ctx *ctx = c->ctx;
    const p2p_config *cfg = &ctx->cfg;
    p2p_cache_config conf = {
        .l1_max_bytes = (size_t)cfg->cache_l1_max_bytes,
        .default_ttl_ms = (uint64_t)cfg->cache_default_ttl * 1000,
        .redis_url = cfg->redis_enabled ? cfg->redis_url : NULL,
        .redis_timeout_ms = (uint64_t)cfg->cache_redis_timeout_ms,
        .log = on_log,
        .log_arg = ctx,
    };
    cc->cache = p2p__cache_new(ctx->loop, &conf, err);
    if (!cc->cache)
        return -EINVAL;
    p2p_shared_set(ctx, "cache", cc->cache);
    p2p__metrics_source_add(ctx, "cache", cache_metrics, cc);
    if (conf.redis_url && *conf.redis_url)
        p2p_log(ctx, P2P_LOG_INFO, "cache", "L1 %lld bytes, L2 Redis (timeout %d ms)",
                (long long)cfg->cache_l1_max_bytes, cfg->cache_redis_timeout_ms);
    else
        p2p_log(ctx, P2P_LOG_INFO, "cache", "L1 %lld bytes, no L2 (redis_url empty)",
                (long long)cfg->cache_l1_max_bytes);
    return 0;
}

static void cache_stop(p2p_component *c)
{
    cache_comp *cc = c->self;
    p2p__metrics_source_remove(c->ctx, "cache");
    p2p_shared_set(c->ctx, "cache", NULL);
    p2p__cache_close(cc->cache); /* freed when its handles have closed */
    cc->cache = NULL;
}

static const p2p_component_ops cache_ops = {
    .name = "cache",
    .deps = NULL,
    .start = cache_start,
    .stop = cache_stop,
};

static void free_comp(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    free(arg);
}

int p2p__cache_register(p2p_ctx *ctx)
{
    cache_comp *cc = p2p__xcalloc(1, sizeof *cc);
    cc->ctx = ctx;
    if (!p2p__component_add(ctx, &cache_ops, cc)) {
        free(cc);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_comp, cc);
    return 0;
}
