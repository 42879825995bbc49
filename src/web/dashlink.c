/*
 * dashlink.c — see dashlink.h.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/util.h"
#include "metrics/dashboard.h"
#include "web/dashlink.h"
#include "web/hub.h"

typedef struct link {
    p2p_ctx *ctx;
    uv_timer_t tick; /* follows the hub's watcher count into the dashboard */
    int tick_open;
    int watched;
} link;

static json_t *snapshot(p2p_ctx *ctx, void *arg)
{
    return p2p__dash_snapshot(ctx);
}

static void on_samples(p2p_ctx *ctx, const char *node_id, json_t *samples, void *arg)
{
    json_t *f = json_pack("{s:s, s:O}", "node_id", node_id, "samples", samples);
    if (f)
        p2p__hub_publish(ctx, "metrics", f);
    json_decref(f);
}

static void on_tick(uv_timer_t *t)
{
    link *l = t->data;
    int w = p2p__hub_watchers(l->ctx) > 0;
    if (w != l->watched) {
        l->watched = w;
        p2p__dash_set_watched(l->ctx, w);
    }
}

static int link_start(p2p_component *c, char **err)
{
    link *l = c->self;
    int r = p2p__dash_listen(c->ctx, on_samples, l);
    if (r != 0) {
        *err = p2p__xasprintf("dashboard_link: cannot listen to the metrics dashboard: %d", r);
        return r;
    }
    p2p__hub_set_snapshot(c->ctx, snapshot, l);
    uv_timer_init(c->ctx->loop, &l->tick);
    l->tick.data = l;
    l->tick_open = 1;
    uv_timer_start(&l->tick, on_tick, 250, 250);
    uv_unref((uv_handle_t *)&l->tick);
    return 0;
}

static void link_stop(p2p_component *c)
{
    link *l = c->self;
    p2p__dash_unlisten(c->ctx, on_samples, l);
    p2p__hub_set_snapshot(c->ctx, NULL, NULL);
    if (l->tick_open) {
        uv_timer_stop(&l->tick);
        uv_close((uv_handle_t *)&l->tick, NULL);
        l->tick_open = 0;
    }
}

static const char *const link_deps[] = {"metrics_dashboard", "dashboard_ws", NULL};
static const p2p_component_ops link_ops = {
    .name = "dashboard_link",
    .deps = link_deps,
    .start = link_start,
    .stop = link_stop,
};

static void free_link(p2p_ctx *ctx, void *arg)
{
    free(arg);
}

int p2p__dashlink_register(p2p_ctx *ctx)
{
    link *l = p2p__xcalloc(1, sizeof(*l));
    l->ctx = ctx;
    if (!p2p__component_add(ctx, &link_ops, l)) {
        free(l);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_link, l);
    return 0;
}
