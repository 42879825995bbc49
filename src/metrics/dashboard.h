/*
 * dashboard.h — the coordinator's `metrics_dashboard` built-in service
 * (dashboard.c): every node's reports, stored in time tiers (tiers.h) that
 * survive a restart (store.c), served as the HTTP API and RPC methods of
 * docs/dashboard.md; and the C hooks the WebSocket hub uses.
 *
 * Loop thread only.
 */
#ifndef P2P_METRICS_DASHBOARD_H
#define P2P_METRICS_DASHBOARD_H

#include <jansson.h>

#include "core/ctx.h"

/* Adds the "metrics_dashboard" component (coordinator, dashboard_enabled). */
int p2p__dash_register(p2p_ctx *ctx);

/* The body of GET /api/dashboard/metrics: {"coordinator", "workers",
 * "services", "cluster_stats", "generated_at"} (a new reference), or NULL when
 * the dashboard does not run on this node. */
json_t *p2p__dash_snapshot(p2p_ctx *ctx);

/* Called on the loop after each accepted report with the samples it added
 * (an array of Samples, borrowed: valid during the call). */
typedef void (*p2p_dash_listener)(p2p_ctx *ctx, const char *node_id, json_t *samples, void *arg);
/* Adds a listener (at most 16). 0, -ENOSPC, or -ENOENT when the dashboard
 * does not run on this node. */
int p2p__dash_listen(p2p_ctx *ctx, p2p_dash_listener fn, void *arg);
/* Removes one (same fn and arg). */
void p2p__dash_unlisten(p2p_ctx *ctx, p2p_dash_listener fn, void *arg);

/* Whether someone watches the dashboard live (the WebSocket hub calls this with
 * 1 when its first viewer connects and 0 when its last one leaves): nodes are
 * then asked to report every second instead of every metrics_report_interval. */
void p2p__dash_set_watched(p2p_ctx *ctx, int watching);

/* The coordinator's own samples and services (borrowed), stored like a report
 * from itself. No-op when the dashboard does not run. */
void p2p__dash_ingest_local(p2p_ctx *ctx, json_t *samples, json_t *services);

/* 1 when the dashboard runs on this node. */
int p2p__dash_running(p2p_ctx *ctx);

#endif
