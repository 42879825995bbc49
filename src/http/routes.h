/*
 * routes.h — the HTTP component's route table: how the other components put
 * their endpoints on the node's HTTPS server without the server knowing them.
 *
 * Direction of dependencies. Components (PKI, membership, auth, the system
 * service, the services manager) include this header and register their own
 * routes when they start and remove them when they stop; src/http/ includes
 * none of them. Even admission is a hook: the security component installs the
 * function that authenticates, rate-limits and authorizes a request for a
 * route's auth class, so the server only carries the class through.
 *
 * The table is owned by the context (shared object "http.routes"), created by
 * the first call that needs it and freed at shutdown, so registration does not
 * depend on whether the "http" component started yet: components that start
 * before it (security, pki, system, membership, services) register into the
 * same table the server reads from its first request on.
 *
 * Matching. The most specific path wins: an exact path, else the longest
 * prefix (a prefix route matches paths strictly longer than its prefix). Among
 * the routes on that path the request's method picks one (HEAD is served by a
 * GET route); none: 405 with an Allow header naming the path's methods. No
 * path: 404. Loop thread only.
 */
#ifndef P2P_HTTP_ROUTES_H
#define P2P_HTTP_ROUTES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"
#include "h2o.h"

typedef enum p2p_http_match { P2P_HTTP_EXACT, P2P_HTTP_PREFIX } p2p_http_match;

/* Who may call a route. The admission hook (auth/admit.c) gives each its meaning:
 *   OPEN   anyone (GET /health, the CA certificate);
 *   SELF   the handler checks credentials in the request (api key, join token);
 *   NODE   a client certificate from the cluster CA;
 *   ANY    a node certificate or a token of any role (viewers: read-only);
 *   ADMIN  an admin token (a node certificate is not enough). */
typedef enum p2p_http_auth {
    P2P_HTTP_OPEN,
    P2P_HTTP_SELF,
    P2P_HTTP_NODE,
    P2P_HTTP_ANY,
    P2P_HTTP_ADMIN,
} p2p_http_auth;

/* One admitted request, as a route's handler sees it (valid during the call). */
typedef struct p2p_http_req {
    p2p_ctx *ctx;
    h2o_req_t *req;
    const char *rest; /* the path after a prefix route's prefix ("" for an exact route) */
    size_t rest_len;
    const void *caller; /* what the admission hook filled in (auth/guard.h: p2p_identity) */
    void *udata;        /* the route's */
} p2p_http_req;

/* Answers the request, now (one of the send helpers below) or later (hold it
 * with p2p__http_later first). */
typedef void (*p2p_http_handler)(p2p_http_req *r);

typedef struct p2p_http_route_desc {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact path, or a prefix ending in '/' */
    p2p_http_match match;
    p2p_http_auth auth;
    int rl_class; /* the admission hook's rate-limit class (auth/ratelimit.h P2P_RL_*) */
    const char *owner; /* the registering component, shown by GET /routes */
    p2p_http_handler fn;
    void *udata;
} p2p_http_route_desc;

/* Adds a route (strings copied). Returns 0, -EEXIST (same method, path and
 * match) or -EINVAL. Usable before or after the server starts. */
int p2p__http_route_add(p2p_ctx *ctx, const p2p_http_route_desc *d);
/* Removes one route; -ENOENT when there is none. */
int p2p__http_route_remove(p2p_ctx *ctx, const char *method, const char *path, p2p_http_match match);
/* Removes every route of `owner`. */
void p2p__http_routes_remove_owner(p2p_ctx *ctx, const char *owner);
/* New reference to [{"method", "path", "match", "auth", "owner"}, ...] in
 * registration order (GET /routes, admin only, served by the system service). */
json_t *p2p__http_routes_json(p2p_ctx *ctx);

/* ---- admission: installed by the security component ------------------------ */

/* Authenticates, rate-limits and authorizes `req` for a route of class `auth`
 * and rate-limit class `rl_class`, filling `caller` (caller_size bytes, zeroed,
 * in the request's pool). Returns 1 to go on, 0 when an answer (401/403/429)
 * was sent. `peer_node` is the verified client certificate's node id, or NULL. */
typedef int (*p2p_http_admit_fn)(void *arg, h2o_req_t *req, const char *peer_node, p2p_http_auth auth,
                                 int rl_class, void *caller);
/* Installs the hook (fn NULL: removes it). Without one, only OPEN routes answer;
 * the others get 503. */
void p2p__http_set_admission(p2p_ctx *ctx, p2p_http_admit_fn fn, void *arg, size_t caller_size);

/* Work that still finishes after its client is gone (calls in flight): the
 * drain waits for it as for open connections. One probe; NULL removes it. */
void p2p__http_set_busy_probe(p2p_ctx *ctx, size_t (*busy)(const p2p_ctx *ctx));

/* ---- answering --------------------------------------------------------------- */

/* How the node serializes JSON: compact, and reals without 17-digit noise. */
#define P2P_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Sends `body` (copied) with a status and content type. */
void p2p__http_send(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body,
                    size_t len);
/* Sends `len` bytes of `body` that outlive the request (static data: not copied,
 * may be NULL with len 0), with the headers the handler has already added; unlike
 * p2p__http_send it adds no Cache-Control of its own. ctype NULL: no Content-Type. */
void p2p__http_send_static(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body,
                           size_t len);
/* Sends a JSON value (borrowed) with a status. */
void p2p__http_send_json(h2o_req_t *req, int status, const char *reason, json_t *body);
/* Sends {"error": message, "status": status}. */
void p2p__http_send_error(h2o_req_t *req, int status, const char *reason, const char *message);
/* The standard reason phrase of a status ("Error" for one we do not name). */
const char *p2p__http_reason(int status);

/* A request answered after its handler returned. The client may go away in the
 * meantime (reset, closed connection): h2o then frees the request, and the
 * record, which lives outside the request's pool, learns it through a
 * pool-owned guard. */
typedef struct p2p_http_later p2p_http_later;
p2p_http_later *p2p__http_later(h2o_req_t *req);
/* Ends the hold: the request to answer now, or NULL when the client is gone.
 * Frees `l`; call exactly once. */
h2o_req_t *p2p__http_later_take(p2p_http_later *l);
/* The request, or NULL when the client is gone, without ending the hold. */
h2o_req_t *p2p__http_later_peek(const p2p_http_later *l);

/* ---- taking a connection over (WebSocket) ------------------------------------ */

/* Runs once h2o has written the 101 response: `sock` is now the caller's (it
 * closes it with h2o_socket_close), and the first `reqsize` bytes of
 * sock->input are the request head h2o already parsed (consume them). `sock`
 * is NULL when the response could not be written (the connection is gone). */
typedef void (*p2p_http_upgrade_cb)(void *arg, h2o_socket_t *sock, size_t reqsize);
/* Switches the HTTP/1.1 connection of `req` to another protocol: answers 101
 * Switching Protocols with `Upgrade: <proto>` and the headers the caller put on
 * req->res.headers, then hands the socket over through `cb`. From then on the
 * server no longer reads the connection as HTTP (framing checks, request
 * timeout) but still counts it among its open connections (http_max_connections,
 * the drain) until it closes. Returns 0, or -EPROTO when the request did not
 * come over HTTP/1.1 (nothing was sent: answer it as usual). */
int p2p__http_upgrade(p2p_ctx *ctx, h2o_req_t *req, const char *proto, p2p_http_upgrade_cb cb, void *arg);

/* ---- what the server knows ---------------------------------------------------- */

/* The node id of the request's verified client certificate, or NULL. */
const char *p2p__http_peer_node(p2p_ctx *ctx, h2o_req_t *req);
/* The role (subject OU) of that verified client certificate, or NULL. */
const char *p2p__http_peer_role(p2p_ctx *ctx, h2o_req_t *req);
/* 1 while the server drains for a graceful stop. */
int p2p__http_draining(p2p_ctx *ctx);

typedef struct p2p_http_stats {
    uint64_t connections_total;
    uint64_t connections_rejected; /* over http_max_connections */
    size_t connections_active;
    uint64_t requests_total;
    uint64_t responses[6]; /* by class: [1]=1xx ... [5]=5xx, [0]=other */
    /* limits.c */
    uint64_t framing_rejected; /* HTTP/1.1 heads refused for ambiguous framing */
    uint64_t rapid_resets;     /* HTTP/2 connections closed for too many RST_STREAM */
    uint64_t stream_limit;     /* HTTP/2 connections closed for too many open streams */
    uint64_t pending_refused;  /* responses refused (503) over a pending-bytes cap */
    uint64_t write_timeouts;   /* connections closed for not reading */
    uint64_t pending_bytes;    /* response bytes waiting for clients to read, all connections */
} p2p_http_stats;

/* The server's counters (all zero before it is registered). */
const p2p_http_stats *p2p__http_stats(p2p_ctx *ctx);

#endif
