/*
 * dashlink.c — see dashlink.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* 1 when `services` (an array of ServiceView) has one for (node_id, name). */
static int has_service(json_t *services, const char *node_id, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(services, i, s)
    {
        const char *n = json_string_value(json_object_get(s, "node_id")), *m = json_string_value(json_object_get(s, "name"));
        if (n && m && !strcmp(n, node_id) && !strcmp(m, name))
            return 1;
    }
    return 0;
}

/* The metrics dashboard's snapshot, with the services a node has not reported yet (a
 * node that just joined, the first second of the coordinator) taken from what the
 * member list knows; without the dashboard's, the hub's own. */
static json_t *snapshot(p2p_ctx *ctx, void *arg)
{
    json_t *dash = p2p__dash_snapshot(ctx);
    json_t *mem = p2p__hub_membership_snapshot(ctx);
    if (!dash)
        return mem;
    json_t *services = json_object_get(dash, "services");
    if (mem && json_is_array(services)) {
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(mem, "services"), i, s)
        {
            const char *n = json_string_value(json_object_get(s, "node_id")), *m = json_string_value(json_object_get(s, "name"));
            if (n && m && !has_service(services, n, m))
                json_array_append(services, s);
        }
    }
    json_decref(mem);
    return dash;
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
