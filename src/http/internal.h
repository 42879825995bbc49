/*
 * internal.h — what the HTTP transport (server.c) and the endpoint handlers
 * (api.c) share: the server state, counters and response helpers.
 */
#ifndef P2P_HTTP_INTERNAL_H
#define P2P_HTTP_INTERNAL_H

#include <openssl/ssl.h>
#include <uv.h>

#include "core/ctx.h"
#include "h2o.h"

/* How the node serializes JSON: compact, and reals without 17-digit noise. */
#define P2P_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

typedef struct http_stats {
    uint64_t connections_total;
    uint64_t connections_rejected; /* over http_max_connections */
    size_t connections_active;
    uint64_t requests_total;
    uint64_t responses[6]; /* by class: [1]=1xx ... [5]=5xx, [0]=other */
} http_stats;

typedef struct http_server {
    p2p_ctx *ctx;
    h2o_globalconf_t config;
    h2o_context_t h2o;
    h2o_accept_ctx_t accept_ctx;
    SSL_CTX *ssl;
    uv_tcp_t listener;
    int listening, h2o_ready;
    int port;
    http_stats stats;
    /* connections whose write libuv refused; their callbacks run from this check handle */
    uv_check_t write_fail_check;
    int write_fail_check_open;
    struct http_conn *write_failed;
    /* connections by file descriptor, to find a request's client certificate */
    struct http_conn **by_fd;
    size_t n_by_fd;
    /* graceful drain */
    int draining;
    uv_timer_t drain_timer;
    uint64_t drain_deadline_ns;
    void (*drain_done)(p2p_ctx *ctx, int timed_out);
} http_server;

/* Response helpers: send `body` (copied) with a status and content type. */
void p2p__http_send(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body,
                    size_t len);
/* Sends a JSON value (borrowed) with a status. */
void p2p__http_send_json(h2o_req_t *req, int status, const char *reason, json_t *body);
/* Sends {"error": message} with a status. */
void p2p__http_send_error(h2o_req_t *req, int status, const char *reason, const char *message);

/* Endpoint handlers (api.c). `rest` is the path after the route's prefix. */
struct p2p_identity;
void p2p__api_health(http_server *srv, h2o_req_t *req);
void p2p__api_rpc(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
void p2p__api_auth_token(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
void p2p__api_auth_revoke(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
/* Cluster-wide revocation and token keys (auth/revsync.h): node certificates only. */
void p2p__api_internal_revoke(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
void p2p__api_revocations(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
void p2p__api_jwt_keys(http_server *srv, h2o_req_t *req);

void p2p__api_ca_cert(http_server *srv, h2o_req_t *req);
void p2p__api_cert_request(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
void p2p__api_cert_renew(http_server *srv, h2o_req_t *req, const struct p2p_identity *id);
void p2p__api_cluster_nodes(http_server *srv, h2o_req_t *req);
void p2p__api_gossip_exchange(http_server *srv, h2o_req_t *req);
/* The node id from the client certificate of the request's connection, or NULL. */
const char *p2p__http_peer_node(http_server *srv, h2o_req_t *req);
void p2p__api_services(http_server *srv, h2o_req_t *req, const char *name, size_t name_len);
void p2p__api_metrics(http_server *srv, h2o_req_t *req, const char *service, size_t service_len);

#endif
