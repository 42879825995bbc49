/*
 * internal.h — what the HTTP transport (server.c) and the endpoint handlers
 * (routes.c, limits.c) share: the server state, its counters and the route table.
 */
#ifndef P2P_HTTP_INTERNAL_H
#define P2P_HTTP_INTERNAL_H

#include <openssl/ssl.h>
#include <uv.h>

#include "core/ctx.h"
#include "h2o.h"
#include "http/routes.h"
#include "http/wirecheck.h"

/* The server's counters (routes.h). */
typedef p2p_http_stats http_stats;

/* One entry of the route table (routes.c). */
typedef struct http_route {
    char *method, *path, *owner;
    size_t path_len;
    p2p_http_match match;
    p2p_http_auth auth;
    int rl_class;
    p2p_http_handler fn;
    void *udata;
} http_route;

typedef struct http_route_table http_route_table;

/* The context's route table, made on first use. */
http_route_table *p2p__http_routes(p2p_ctx *ctx);
/* Finds the route for a request: 0 with *out (a copy: the table may change
 * while its handler runs), -EPERM when the path is served but not with this
 * method (`allow` then names the path's methods), -ENOENT for an unknown path. */
int p2p__http_route_lookup(http_route_table *t, const char *method, size_t mlen, const char *path, size_t plen,
                           http_route *out, char *allow, size_t allow_size);
/* Runs the admission hook for route `r`; 1 to go on (*caller set), 0 answered. */
int p2p__http_admit(http_route_table *t, h2o_req_t *req, const char *peer_node, const http_route *r,
                    const void **caller);
/* The busy probe's count (0 without one). */
size_t p2p__http_busy(p2p_ctx *ctx);
const char *p2p__http_auth_name(p2p_http_auth a);

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
    uv_read_cb h2o_read_cb; /* h2o's, behind on_conn_read (server.c) */
    int fd;
    char peer_node[64]; /* CN of a verified client certificate, "" without one */
    char peer_role[32]; /* its subject OU (the role the CA vouched for), "" without one */
    /* limits.c: what the client sent, and what waits for it to read */
    h2o_socket_t *sock;
    struct st_h2o_http2_conn_t *h2; /* set by the first HTTP/2 request */
    p2p_wirecheck wire;
    int wire_started, wire_refused;
    int upgraded; /* taken over by another protocol (p2p__http_upgrade): no HTTP checks */
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
