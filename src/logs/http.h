/*
 * http.h — the log collector's HTTP routes, thin handlers over its methods:
 *   GET    /api/logs          log_collector/get_logs, filters as query parameters
 *   GET    /api/logs/sources  log_collector/get_log_sources
 *   DELETE /api/logs          log_collector/clear_logs (?node_id=, none = all; admin)
 * The route table (src/http/server.c) names them until routes register
 * themselves.
 */
#ifndef P2P_LOGS_HTTP_H
#define P2P_LOGS_HTTP_H

#include "http/internal.h"

enum { LOGS_HTTP_GET, LOGS_HTTP_SOURCES, LOGS_HTTP_DELETE };

struct p2p_identity;
void p2p__logs_http(http_server *srv, h2o_req_t *req, const struct p2p_identity *id, int kind);

/* Query string -> get_logs params (pure; new object). Unknown keys are kept,
 * so the method refuses them by name. NULL when the query is malformed. */
json_t *p2p__logs_query_params(const char *q, size_t len);

#endif
