/*
 * http.h — the log collector's HTTP routes, thin handlers over its methods:
 *   GET    /api/logs          log_collector/get_logs, filters as query parameters
 *   GET    /api/logs/sources  log_collector/get_log_sources
 *   DELETE /api/logs          log_collector/clear_logs (?node_id=, none = all; admin)
 * Registered by the log collector when it starts (coordinator only), removed
 * when it stops.
 */
#ifndef P2P_LOGS_HTTP_H
#define P2P_LOGS_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "core/ctx.h"

/* Adds / removes the three routes (owner "log_collector"). */
int p2p__logs_http_start(p2p_ctx *ctx);
void p2p__logs_http_stop(p2p_ctx *ctx);

/* Query string -> get_logs params (pure; new object). Unknown keys are kept,
 * so the method refuses them by name. NULL when the query is malformed. */
json_t *p2p__logs_query_params(const char *q, size_t len);

#endif
