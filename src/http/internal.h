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
#include "http/wirecheck.h"

/* How the node serializes JSON: compact, and reals without 17-digit noise. */
#define P2P_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

typedef struct http_stats {
    uint64_t connections_total;
    uint64_t connections_rejected; /* over http_max_connections */
    size_t connections_active;
    uint64_t requests_total;
    uint64_t responses[6]; /* by class: [1]=1xx ... [5]=5xx, [0]=other */
    /* limits.c */
    uint64_t framing_rejected;   /* HTTP/1.1 heads refused for ambiguous framing */
    uint64_t rapid_resets;       /* HTTP/2 connections closed for too many RST_STREAM */
    uint64_t stream_limit;       /* HTTP/2 connections closed for too many open streams */
    uint64_t pending_refused;    /* responses refused (503) over a pending-bytes cap */
    uint64_t write_timeouts;     /* connections closed for not reading */
    uint64_t pending_bytes;      /* response bytes waiting for clients to read, all connections */
} http_stats;

#define HTTP_CONN_MAGIC 0x70327063u /* "p2pc" */

struct http_out;

/* One accepted client connection (server.c makes and frees it). */
typedef struct http_conn {
    uv_tcp_t tcp; /* first: h2o's close callback hands us this handle */
    uint32_t magic;
    struct http_server *srv;
    /* a write libuv refused, waiting for its callback (see uv_write in server.c) */
    struct http_conn *next_failed;
    uv_write_t *failed_req;
    uv_write_cb failed_cb;
    int failed_status;
    int fd;
    char peer_node[64]; /* CN of a verified client certificate, "" without one */
    /* limits.c: what the client sent, and what waits for it to read */
    h2o_socket_t *sock;
    struct st_h2o_http2_conn_t *h2; /* set by the first HTTP/2 request */
    p2p_wirecheck wire;
    int wire_started, wire_refused;
    struct http_out *outs; /* responses not yet finished */
    uint64_t pending_bytes;
    uint64_t outs_done;      /* responses finished, for the write-timeout sweep */
    uint64_t stall_mark;     /* progress seen at the last sweep */
    size_t stall_wqs;
    uint64_t stalled_since_ms; /* 0: making progress or nothing to send */
    uint64_t closing_since_ms; /* write timeout: GOAWAY sent, shutdown next */
} http_conn;

#define HTTP_SERVER_MAGIC 0x70327368u /* "p2sh" */

typedef struct http_server {
    uint32_t magic; /* HTTP_SERVER_MAGIC: limits.c finds the server from an SSL_CTX */
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
    /* limits.c: write-timeout sweep */
    uv_timer_t sweep_timer;
    int sweep_open;
    uint64_t last_limit_log_ms;
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

/* ---- limits.c: bounded memory per client ---------------------------------- */

/* The connection record of a request, or NULL. */
http_conn *p2p__http_conn_of(http_server *srv, h2o_req_t *req);
/* Before a response body of `len` bytes is handed to h2o: 1 and the bytes are
 * counted against the connection's and the node's pending caps until the request
 * is freed; 0 when a cap would be exceeded (the caller answers 503). */
int p2p__http_out_admit(h2o_req_t *req, size_t len);
/* A connection is going away: forget its pending responses. */
void p2p__http_conn_closed(http_conn *c);
/* Starts / stops the once-a-second write-timeout sweep. */
void p2p__http_limits_start(http_server *srv);
void p2p__http_limits_stop(http_server *srv);

#endif
