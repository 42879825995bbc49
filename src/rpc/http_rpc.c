/*
 * http_rpc.c — POST /rpc: the JSON-RPC endpoint on the node's HTTPS server,
 * registered by the system service when it starts.
 *
 * The body goes to the JSON-RPC decoder and executor (rpc/jsonrpc.c), or, with
 * an X-P2P-Node header naming another node, to that node (rpc/remote.c). Calls
 * may finish after the HTTP request is gone (client reset, connection closed):
 * the reply waits on a hold (p2p__http_later) that learns when h2o frees the
 * request, so a late reply is dropped instead of written into freed memory.
 * The drain of a graceful stop waits for calls in flight (the busy probe).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "http/routes.h"
#include "pki/pki.h"
#include "rpc/http_rpc.h"
#include "rpc/jsonrpc.h"
#include "rpc/registry.h"
#include "rpc/remote.h"

/* ---- /rpc ----------------------------------------------------------------- */

static void on_rpc_done(json_t *response, void *arg)
{
    h2o_req_t *req = p2p__http_later_take(arg);
    if (req) {
        if (response) {
            p2p__http_send_json(req, 200, "OK", response);
        } else {
            req->res.status = 204;
            req->res.reason = "No Content";
            h2o_send_inline(req, "", 0);
        }
    }
    json_decref(response);
}

static int is_json_type(const h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char *const ok[] = {"application/json", "application/json-rpc", "application/jsonrequest"};
    for (size_t k = 0; k < sizeof(ok) / sizeof(ok[0]); k++) {
        size_t n = strlen(ok[k]);
        if (v.len >= n && h2o_lcstris(v.base, n, ok[k], n) && (v.len == n || v.base[n] == ';' || v.base[n] == ' '))
            return 1;
    }
    return 0;
}

/* A viewer may call read-only methods only; a node identity anything but the
 * admin-only methods. One forbidden method in a batch refuses it all. */
static const char *first_forbidden(p2p_ctx *ctx, const jsonrpc_msg *msg, const p2p_identity *id, int coordinator)
{
    if ((id->role != P2P_ROLE_VIEWER && id->role != P2P_ROLE_NODE) || msg->error)
        return NULL;
    for (size_t i = 0; i < msg->n; i++) {
        const jsonrpc_item *it = &msg->items[i];
        if (it->error || !it->method)
            continue;
        p2p_method *m = p2p__registry_find(ctx->registry, it->method, strlen(it->method));
        if (m && id->role == P2P_ROLE_VIEWER && !(m->flags & P2P_METHOD_READONLY))
            return m->path;
        if (m && id->role == P2P_ROLE_NODE && (m->flags & P2P_METHOD_ADMIN) &&
            !(coordinator && (m->flags & P2P_METHOD_COORDINATOR)))
            return m->path;
    }
    return NULL;
}

/* ---- X-P2P-Node: the call is for another node ------------------------------- */

static void on_forwarded(void *arg, int status, const char *body, size_t len, int err, const char *msg)
{
    h2o_req_t *req = p2p__http_later_take(arg);
    if (req) {
        if (status) {
            p2p__http_send(req, status, status == 200 ? "OK" : "Upstream Status", "application/json", body, len);
        } else {
            json_t *e = jsonrpc_error_response(json_null(), err, msg && *msg ? msg : "the node did not answer", NULL);
            p2p__http_send_json(req, 200, "OK", e);
            json_decref(e);
        }
    }
}

/* Returns 1 when the request was for another node (and is answered), else 0. */
static int forward_if_asked(p2p_ctx *ctx, h2o_req_t *req, const p2p_identity *id)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-p2p-node"), -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    char node[PKI_MAX_NODE_ID + 1];
    if (v.len == 0 || v.len > PKI_MAX_NODE_ID) {
        p2p__http_send_error(req, 400, "Bad Request", "X-P2P-Node must name a node id");
        return 1;
    }
    memcpy(node, v.base, v.len);
    node[v.len] = '\0';
    if (!pki_node_id_valid(node)) {
        p2p__http_send_error(req, 400, "Bad Request", "X-P2P-Node must name a node id");
        return 1;
    }
    if (strcmp(node, ctx->cfg.node_id) == 0)
        return 0; /* that is us */
    if (id->role != P2P_ROLE_ADMIN && id->role != P2P_ROLE_NODE) {
        p2p__http_send_error(req, 403, "Forbidden", "calling another node through this one needs the admin role");
        return 1;
    }
    /* the operator's token goes along: the target authorizes the operator, not us */
    char *authz = NULL;
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (ai >= 0 && id->role != P2P_ROLE_NODE) {
        h2o_iovec_t av = req->headers.entries[ai].value;
        authz = h2o_mem_alloc_pool(&req->pool, av.len + 1);
        memcpy(authz, av.base, av.len);
        authz[av.len] = '\0';
    }
    p2p_http_later *later = p2p__http_later(req);
    int r = p2p__remote_forward(ctx, node, req->entity.base ? req->entity.base : "", req->entity.len, authz, 30000,
                                on_forwarded, later);
    if (r != 0) {
        p2p__http_later_take(later);
        json_t *e = jsonrpc_error_response(json_null(), r,
                                           r == P2P_RPC_E_UNKNOWN_NODE ? "no such node in the cluster"
                                           : r == P2P_RPC_E_NODE_DOWN  ? "the node is not alive (dead or left)"
                                                                       : "cannot reach the node",
                                           NULL);
        p2p__http_send_json(req, 200, "OK", e);
        json_decref(e);
    }
    return 1;
}

/* A batch of N calls costs N rate-limit tokens, whether it runs here or is
 * forwarded (X-P2P-Node): the request paid one at admission, the other N - 1 are
 * taken here, all or nothing, before any call runs. Returns 1 to go on, 0 when
 * an answer was sent: 429 with Retry-After (the wait until the whole batch can
 * pass), or 413 when the batch is larger than the client's burst and so could
 * never pass. */
static int charge_batch(p2p_ctx *ctx, h2o_req_t *req, const jsonrpc_msg *msg, const p2p_identity *id)
{
    if (msg->error || !msg->is_batch || msg->n <= 1)
        return 1;
    uint32_t retry = 0, burst = 0;
    int r = p2p__guard_rate_batch(p2p__guard(ctx), id, P2P_RL_RPC, (uint32_t)msg->n, &retry, &burst);
    if (r == 1)
        return 1;
    char text[200];
    if (r == -E2BIG) {
        snprintf(text, sizeof text,
                 "a batch of %zu calls costs %zu rate-limit tokens, more than this client's burst of %u: send at "
                 "most %u calls per batch",
                 msg->n, msg->n, burst, burst);
        p2p__http_send_error(req, 413, "Payload Too Large", text);
        return 0;
    }
    char buf[16];
    int n = snprintf(buf, sizeof buf, "%u", retry ? retry : 1);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, buf, (size_t)n).base,
                   (size_t)n);
    snprintf(text, sizeof text, "rate limit exceeded: a batch of %zu calls costs %zu tokens; retry later", msg->n,
             msg->n);
    p2p__http_send_error(req, 429, "Too Many Requests", text);
    return 0;
}

/* The Authorization header of an operator's request (NULL for a node's own
 * calls): methods that call other nodes for the operator send it along. */
static const char *bearer_of(h2o_req_t *req, const p2p_identity *id)
{
    if (id->role != P2P_ROLE_ADMIN && id->role != P2P_ROLE_VIEWER)
        return NULL;
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (ai < 0)
        return NULL;
    h2o_iovec_t av = req->headers.entries[ai].value;
    return h2o_strdup(&req->pool, av.base, av.len).base;
}

static void rpc_endpoint(p2p_http_req *hr)
{
    p2p_ctx *ctx = hr->ctx;
    h2o_req_t *req = hr->req;
    const p2p_identity *id = hr->caller;
    if (!is_json_type(req)) {
        p2p__http_send_error(req, 415, "Unsupported Media Type", "Content-Type must be application/json");
        return;
    }
    jsonrpc_msg msg;
    jsonrpc_decode(req->entity.base ? req->entity.base : "", req->entity.len, &msg);
    if (!charge_batch(ctx, req, &msg, id) || forward_if_asked(ctx, req, id)) {
        jsonrpc_msg_free(&msg);
        return;
    }
    /* a node's own call (not one it relays for someone else: those carry
     * X-P2P-Relayed) says which node sent it, for handlers such as add_logs;
     * the coordinator's own call (role in its verified certificate) may run
     * P2P_METHOD_COORDINATOR methods */
    int relayed = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-p2p-relayed"), -1) >= 0;
    const char *prole = id->role == P2P_ROLE_NODE && !relayed ? p2p__http_peer_role(ctx, req) : NULL;
    int coordinator = prole && !strcmp(prole, "coordinator") &&
                      h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-p2p-coordinator-call"), -1) >= 0;
    const char *denied = first_forbidden(ctx, &msg, id, coordinator);
    if (denied) {
        char text[200];
        if (id->role == P2P_ROLE_VIEWER)
            snprintf(text, sizeof text, "the viewer role may not call %s (it changes state)", denied);
        else
            snprintf(text, sizeof text, "a node identity may not call %s (it needs an operator's admin token)",
                     denied);
        jsonrpc_msg_free(&msg);
        p2p__http_send_error(req, 403, "Forbidden", text);
        return;
    }
    jsonrpc_caller caller = {bearer_of(req, id), id->role == P2P_ROLE_NODE,
                             id->role == P2P_ROLE_NODE && !relayed ? id->peer_node : NULL, coordinator};
    jsonrpc_execute_as(ctx, &msg, &caller, on_rpc_done, p2p__http_later(req));
}


static size_t calls_in_flight(const p2p_ctx *ctx)
{
    return jsonrpc_inflight(ctx);
}

int p2p__rpc_http_start(p2p_ctx *ctx, const char *owner)
{
    static const p2p_http_route_desc d = {"POST", "/rpc", P2P_HTTP_EXACT, P2P_HTTP_ANY, P2P_RL_RPC, NULL,
                                          rpc_endpoint, NULL};
    p2p_http_route_desc mine = d;
    mine.owner = owner;
    int r = p2p__http_route_add(ctx, &mine);
    if (r == 0)
        p2p__http_set_busy_probe(ctx, calls_in_flight);
    return r;
}

void p2p__rpc_http_stop(p2p_ctx *ctx)
{
    p2p__http_route_remove(ctx, "POST", "/rpc", P2P_HTTP_EXACT);
    p2p__http_set_busy_probe(ctx, NULL);
}
