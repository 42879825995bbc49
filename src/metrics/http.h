/*
 * http.h — the dashboard's HTTP API (GET /api/dashboard/..., POST
 * /api/dashboard/control-service): each route runs the matching
 * metrics_dashboard method with the caller's identity (see http.c).
 */
#ifndef P2P_METRICS_HTTP_H
#define P2P_METRICS_HTTP_H

#include "core/ctx.h"

int p2p__dash_http_start(p2p_ctx *ctx);
void p2p__dash_http_stop(p2p_ctx *ctx);

#endif
