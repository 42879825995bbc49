/*
 * dashlink.h — joins the metrics dashboard (src/metrics) and the WebSocket hub
 * (src/web/hub.c), which know nothing of each other: the hub's `initial`
 * message carries the dashboard's snapshot (GET /api/dashboard/metrics), each
 * accepted report is pushed as a `metrics` delta, and the dashboard learns
 * whether a page is watching (nodes then report every second).
 */
#ifndef P2P_WEB_DASHLINK_H
#define P2P_WEB_DASHLINK_H

#include "core/ctx.h"

/* Adds the "dashboard_link" component (after metrics_dashboard and dashboard_ws). */
int p2p__dashlink_register(p2p_ctx *ctx);

#endif
