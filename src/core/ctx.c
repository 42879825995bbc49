/*
 * ctx.c — the node context: lifetime, shared objects, shutdown hooks, identity.
 */
#include "core/ctx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/util.h"
#include "rpc/registry.h"

p2p_ctx *p2p__ctx_new(p2p_config *cfg, uv_loop_t *loop)
{
    p2p_ctx *ctx = p2p__xcalloc(1, sizeof(*ctx));
    ctx->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    ctx->loop = loop;
    ctx->start_hr_ns = uv_hrtime();
    ctx->start_wall_ms = p2p__wall_ms();
    ctx->log_level = P2P_LOG_INFO;
    if (ctx->cfg.log_level)
        p2p__log_level_parse(ctx->cfg.log_level, &ctx->log_level);
    ctx->log_json = ctx->cfg.log_format && strcmp(ctx->cfg.log_format, "json") == 0;
    ctx->sink_level = P2P_LOG_ERROR + 1;
    ctx->registry = p2p__registry_new();
    return ctx;
}

void p2p__ctx_free(p2p_ctx *ctx)
{
    if (!ctx)
        return;
    p2p__components_stop(ctx);
    for (size_t i = ctx->n_hooks; i-- > 0;)
        ctx->hooks[i].fn(ctx, ctx->hooks[i].arg);
    for (size_t i = 0; i < ctx->n_components; i++) {
        free(ctx->components[i]->last_error);
        free(ctx->components[i]);
    }
    free(ctx->components);
    free(ctx->started);
    for (size_t i = 0; i < ctx->n_shared; i++)
        free(ctx->shared[i].name);
    free(ctx->shared);
    free(ctx->hooks);
    free(ctx->sinks);
    p2p__metrics_sources_free(ctx);
    p2p__registry_free(ctx->registry);
    p2p_config_free(&ctx->cfg);
    free(ctx);
}

double p2p__ctx_uptime(const p2p_ctx *ctx)
{
    return (double)(uv_hrtime() - ctx->start_hr_ns) / 1e9;
}

void p2p__ctx_on_shutdown(p2p_ctx *ctx, p2p_shutdown_hook fn, void *arg)
{
    ctx->hooks = p2p__xrealloc(ctx->hooks, (ctx->n_hooks + 1) * sizeof(*ctx->hooks));
    ctx->hooks[ctx->n_hooks++] = (struct p2p_hook_entry){fn, arg};
}

static void sink_level_update(p2p_ctx *ctx)
{
    ctx->sink_level = P2P_LOG_ERROR + 1;
    for (size_t i = 0; i < ctx->n_sinks; i++)
        if (ctx->sinks[i].level < ctx->sink_level)
            ctx->sink_level = ctx->sinks[i].level;
}

void p2p__ctx_add_log_sink(p2p_ctx *ctx, p2p_log_sink fn, p2p_log_level level, void *arg)
{
    ctx->sinks = p2p__xrealloc(ctx->sinks, (ctx->n_sinks + 1) * sizeof(*ctx->sinks));
    ctx->sinks[ctx->n_sinks++] = (struct p2p_sink_entry){fn, level, arg};
    sink_level_update(ctx);
}

void p2p__ctx_remove_log_sink(p2p_ctx *ctx, p2p_log_sink fn, void *arg)
{
    for (size_t i = 0; i < ctx->n_sinks; i++) {
        if (ctx->sinks[i].fn == fn && ctx->sinks[i].arg == arg) {
            memmove(&ctx->sinks[i], &ctx->sinks[i + 1], (ctx->n_sinks - i - 1) * sizeof(*ctx->sinks));
            ctx->n_sinks--;
            break;
        }
    }
    sink_level_update(ctx);
}

P2P_EXTERN void *p2p_shared_set(p2p_ctx *ctx, const char *name, void *ptr)
{
    for (size_t i = 0; i < ctx->n_shared; i++) {
        if (strcmp(ctx->shared[i].name, name) == 0) {
            void *old = ctx->shared[i].ptr;
            ctx->shared[i].ptr = ptr;
            return old;
        }
    }
    ctx->shared = p2p__xrealloc(ctx->shared, (ctx->n_shared + 1) * sizeof(*ctx->shared));
    ctx->shared[ctx->n_shared++] = (struct p2p_shared_entry){p2p__xstrdup(name), ptr};
    return NULL;
}

P2P_EXTERN void *p2p_shared_get(p2p_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->n_shared; i++)
        if (strcmp(ctx->shared[i].name, name) == 0)
            return ctx->shared[i].ptr;
    return NULL;
}

P2P_EXTERN const char *p2p_node_id(const p2p_ctx *ctx)
{
    return ctx->cfg.node_id ? ctx->cfg.node_id : "";
}

P2P_EXTERN const char *p2p_node_role(const p2p_ctx *ctx)
{
    return ctx->cfg.coordinator_mode ? "coordinator" : "worker";
}
