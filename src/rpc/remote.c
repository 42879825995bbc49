/*
 * remote.c — calling service methods on other nodes: by node id, by role, or on
 * all (live) nodes at once, over the membership's pooled HTTP/2 mutual-TLS
 * client; the local node is called in process. Also the raw forwarding behind
 * `X-P2P-Node` (an operator reaching any node through the one it can reach).
 *
 * Whose call it is: a call made for an operator (cluster/call, X-P2P-Node)
 * carries the operator's Authorization header to the target, which then
 * authorizes the operator (role, revocation) and not the forwarding node; a
 * call without one goes as this node's certificate identity, which may not run
 * admin-only methods anywhere, this node included.
 *
 * Errors are JSON-RPC errors with distinct codes (P2P_RPC_E_*): unknown node,
 * node not alive, timeout, transport failure; a remote method's own error is
 * passed through unchanged.
 */
#include "rpc/remote.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "membership/node.h"
#include "rpc/client.h"
#include "rpc/jsonrpc.h"

/* ---- one call ----------------------------------------------------------------- */

typedef struct fanout fanout;

typedef struct one_call {
    fanout *f;
    size_t slot;
    char node[64];
} one_call;

struct fanout {
    p2p_ctx *ctx;
    char *authz; /* operator's Authorization value, or NULL */
    int node;    /* asked for by another node's identity */
    int relayed; /* made for a caller (cluster/call), not by this node itself */
    int privileged; /* the coordinator's orchestrator: P2P_METHOD_COORDINATOR methods allowed */
    p2p_remote_cb cb;
    void *udata;
    int single;
    size_t n, pending;
    json_t **results;
    one_call *calls;
};

static json_t *error_entry(const char *node, int code, const char *msg)
{
    return json_pack("{s:s, s:{s:i, s:s}}", "node_id", node, "error", "code", code, "message", msg);
}

static void finish_one(fanout *f, size_t slot, json_t *entry)
{
    f->results[slot] = entry;
    if (--f->pending)
        return;
    json_t *out;
    if (f->single) {
        out = f->results[0];
    } else {
        out = json_array();
        for (size_t i = 0; i < f->n; i++)
            json_array_append_new(out, f->results[i]);
    }
    f->cb(f->ctx, out, f->udata);
    json_decref(out);
    if (f->authz) {
        OPENSSL_cleanse(f->authz, strlen(f->authz));
        free(f->authz);
    }
    free(f->results);
    free(f->calls);
    free(f);
}

/* A JSON-RPC response object -> {node_id, result} or {node_id, error}. */
static json_t *entry_from_response(const char *node, json_t *resp)
{
    json_t *res = json_object_get(resp, "result"), *err = json_object_get(resp, "error");
    if (err && json_is_object(err)) {
        json_t *e = json_pack("{s:s, s:O}", "node_id", node, "error", err);
        return e;
    }
    if (res)
        return json_pack("{s:s, s:O}", "node_id", node, "result", res);
    if (json_object_get(resp, "result")) /* "result": null */
        return json_pack("{s:s, s:n}", "node_id", node, "result");
    return error_entry(node, P2P_RPC_E_TRANSPORT, "the node's answer is not a JSON-RPC response");
}

static void on_local_done(json_t *response, void *arg)
{
    one_call *c = arg;
    json_t *e = response ? entry_from_response(c->node, response)
                         : json_pack("{s:s, s:n}", "node_id", c->node, "result");
    json_decref(response);
    finish_one(c->f, c->slot, e);
}

static void on_remote_done(void *udata, const p2p__httpc_res *res)
{
    one_call *c = udata;
    json_t *e;
    if (res->error == P2P_HTTPC_E_TIMEOUT) {
        e = error_entry(c->node, P2P_RPC_E_TIMEOUT, "the node did not answer in time");
    } else if (res->error != P2P_HTTPC_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "transport failure (%s): %s", p2p__httpc_error_name(res->error), res->message);
        e = error_entry(c->node, P2P_RPC_E_TRANSPORT, msg);
    } else {
        json_t *doc = json_loadb((const char *)res->body, res->body_len, 0, NULL);
        if (res->status == 200 && json_is_object(doc)) {
            e = entry_from_response(c->node, doc);
        } else {
            char msg[300];
            json_t *why = json_object_get(doc, "error");
            snprintf(msg, sizeof msg, "HTTP %d from the node%s%s", res->status, json_is_string(why) ? ": " : "",
                     json_is_string(why) ? json_string_value(why) : "");
            e = error_entry(c->node, P2P_RPC_E_TRANSPORT, msg);
        }
        json_decref(doc);
    }
    finish_one(c->f, c->slot, e);
}

static void start_one(fanout *f, size_t slot, const char *method, json_t *params, uint32_t timeout_ms)
{
    one_call *c = &f->calls[slot];
    c->f = f;
    c->slot = slot;
    p2p_ctx *ctx = f->ctx;
    json_t *req = json_pack("{s:s, s:s, s:i}", "jsonrpc", "2.0", "method", method, "id", 1);
    if (params)
        json_object_set(req, "params", params);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (strcmp(c->node, ctx->cfg.node_id) == 0) { /* ourselves: no network */
        jsonrpc_msg msg;
        jsonrpc_decode(body, strlen(body), &msg);
        free(body);
        /* for an operator or another node: never this node's own identity */
        jsonrpc_caller caller = {f->authz, f->node, f->relayed ? NULL : ctx->cfg.node_id,
                                 f->privileged && ctx->cfg.coordinator_mode};
        jsonrpc_execute_as(ctx, &msg, &caller, on_local_done, c);
        return;
    }
    char addr[64];
    uint16_t port = 0;
    int r = p2p__membership_lookup(ctx, c->node, addr, sizeof addr, &port);
    p2p__httpc *http = p2p__membership_client(ctx);
    if (r == -ENOENT || (r == 0 && !http)) {
        free(body);
        finish_one(f, slot, error_entry(c->node, r == -ENOENT ? P2P_RPC_E_UNKNOWN_NODE : P2P_RPC_E_TRANSPORT,
                                        r == -ENOENT ? "no such node in the cluster" : "no outbound client"));
        return;
    }
    if (r != 0) {
        free(body);
        finish_one(f, slot, error_entry(c->node, P2P_RPC_E_NODE_DOWN, "the node is not alive (dead or left)"));
        return;
    }
    char *hline = f->authz ? p2p__xasprintf("Authorization: %s", f->authz) : NULL;
    const char *hdrs[3];
    size_t nh = 0;
    if (hline)
        hdrs[nh++] = hline;
    if (f->relayed)
        hdrs[nh++] = P2P_RELAYED_HEADER ": 1"; /* our certificate, someone else's call */
    if (f->privileged)
        hdrs[nh++] = P2P_COORDINATOR_CALL_HEADER ": 1"; /* the orchestrator's own call */
    p2p__httpc_req hr = {.method = "POST", .node_id = c->node, .address = addr, .port = port, .path = "/rpc",
                         .body = body, .body_len = strlen(body), .timeout_ms = timeout_ms,
                         .headers = nh ? hdrs : NULL, .n_headers = nh};
    char *err = NULL;
    uint64_t id = p2p__httpc_request(http, &hr, on_remote_done, c, &err);
    free(body);
    if (hline) {
        OPENSSL_cleanse(hline, strlen(hline));
        free(hline);
    }
    if (!id) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot start the call: %s", err ? err : "?");
        free(err);
        finish_one(f, slot, error_entry(c->node, P2P_RPC_E_TRANSPORT, msg));
    }
}

/* Resolves a target to node ids: "local", a node id, "role:R", "all", "all:R". */
static json_t *resolve(p2p_ctx *ctx, const char *target, int *single, const char **why)
{
    *single = 1;
    if (!target || !*target || !strcmp(target, "local"))
        return json_pack("[s]", ctx->cfg.node_id);
    if (!strncmp(target, "role:", 5)) {
        json_t *ids = p2p__membership_live_ids(ctx, target + 5);
        if (!strcmp(target + 5, p2p_node_role(ctx)) && json_array_size(ids) == 0)
            json_array_append_new(ids, json_string(ctx->cfg.node_id));
        if (json_array_size(ids) == 0) {
            json_decref(ids);
            *why = "no live node has that role";
            return NULL;
        }
        /* one of them: ourselves when we have the role, else the first */
        json_t *one = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v)
        {
            if (!strcmp(json_string_value(v), ctx->cfg.node_id))
                one = v;
        }
        json_t *out = json_pack("[O]", one ? one : json_array_get(ids, 0));
        json_decref(ids);
        return out;
    }
    if (!strcmp(target, "all") || !strncmp(target, "all:", 4)) {
        *single = 0;
        json_t *ids = p2p__membership_live_ids(ctx, target[3] == ':' ? target + 4 : NULL);
        if (json_array_size(ids) == 0 && (target[3] != ':' || !strcmp(target + 4, p2p_node_role(ctx))))
            json_array_append_new(ids, json_string(ctx->cfg.node_id));
        return ids;
    }
    return json_pack("[s]", target);
}

static int call_remote_as(p2p_ctx *ctx, const jsonrpc_caller *caller, const char *target, const char *method,
                          json_t *params, uint32_t timeout_ms, p2p_remote_cb cb, void *udata);

/* A service's own call (native or exec) is the node's: on another node it goes as
 * this node's certificate, and here it runs as that identity too, so a service
 * cannot reach this node's admin-only methods (join tokens, key rotation, config,
 * operating services) any more than another node could. */
/* The node's own calls (its components, its services): they run as the node
 * identity, and a node that receives one over mTLS knows which node sent it
 * (no X-P2P-Relayed): what add_logs relies on. */
static const jsonrpc_caller as_node = {NULL, 1, NULL};
/* The coordinator's orchestrator (src/deploy/orchestrator.c): its calls carry
 * P2P_COORDINATOR_CALL_HEADER, and a receiver that verified the coordinator's
 * certificate lets them run P2P_METHOD_COORDINATOR methods. The services'
 * calls (p2p_call_remote) never carry it, so a service on the coordinator
 * does not get that power. */
static const jsonrpc_caller as_coordinator = {NULL, 1, NULL, 1};

int p2p__call_remote_coordinator(p2p_ctx *ctx, const char *target, const char *method, json_t *params,
                                 uint32_t timeout_ms, p2p_remote_cb cb, void *udata)
{
    if (!ctx->cfg.coordinator_mode)
        return -EPERM;
    return call_remote_as(ctx, &as_coordinator, target, method, params, timeout_ms, cb, udata);
}

int p2p_call_remote(p2p_ctx *ctx, const char *target, const char *method, json_t *params, uint32_t timeout_ms,
                    p2p_remote_cb cb, void *udata)
{
    return call_remote_as(ctx, &as_node, target, method, params, timeout_ms, cb, udata);
}

static int call_remote_as(p2p_ctx *ctx, const jsonrpc_caller *caller, const char *target, const char *method,
                          json_t *params, uint32_t timeout_ms, p2p_remote_cb cb, void *udata)
{
    if (!ctx || !method || !cb || (params && !json_is_object(params) && !json_is_array(params)))
        return -EINVAL;
    int single = 1;
    const char *why = NULL;
    json_t *ids = resolve(ctx, target, &single, &why);
    if (!ids) {
        json_t *e = error_entry(target, P2P_RPC_E_UNKNOWN_NODE, why);
        cb(ctx, e, udata);
        json_decref(e);
        return 0;
    }
    fanout *f = p2p__xcalloc(1, sizeof(*f));
    f->ctx = ctx;
    f->cb = cb;
    f->udata = udata;
    f->single = single;
    f->n = json_array_size(ids);
    if (f->n == 0) {
        free(f);
        json_t *empty = json_array();
        cb(ctx, empty, udata);
        json_decref(empty);
        json_decref(ids);
        return 0;
    }
    if (caller) {
        f->authz = caller->authz ? p2p__xstrdup(caller->authz) : NULL;
        f->node = caller->node;
        f->relayed = caller != &as_node && caller != &as_coordinator; /* made for someone else (cluster/call) */
        f->privileged = caller == &as_coordinator;
    }
    f->pending = f->n;
    f->results = p2p__xcalloc(f->n, sizeof(json_t *));
    f->calls = p2p__xcalloc(f->n, sizeof(one_call));
    for (size_t i = 0; i < f->n; i++)
        snprintf(f->calls[i].node, sizeof f->calls[i].node, "%s", json_string_value(json_array_get(ids, i)));
    json_decref(ids);
    size_t n = f->n; /* f may be freed by the last synchronous completion */
    for (size_t i = 0; i < n; i++)
        start_one(f, i, method, params, timeout_ms ? timeout_ms : 30000);
    return 0;
}

/* ---- cluster/call: the API above as a method --------------------------------------- */

static void on_cluster_call_done(p2p_ctx *ctx, json_t *results, void *udata)
{
    p2p_call_reply((p2p_call *)udata, json_incref(results));
}

static void m_call(p2p_call *call, json_t *params, void *udata)
{
    const char *target = json_string_value(json_object_get(params, "target"));
    const char *method = json_string_value(json_object_get(params, "method"));
    json_t *p = json_object_get(params, "params"), *to = json_object_get(params, "timeout_ms");
    if (!json_is_object(params) || !target || !method || (p && !json_is_object(p) && !json_is_array(p)) ||
        (to && (!json_is_integer(to) || json_integer_value(to) < 1 || json_integer_value(to) > 600000))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "Invalid params: expected {target, method, params?, timeout_ms? (1..600000)}", NULL);
        return;
    }
    if (!strcmp(method, "cluster/call")) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: cluster/call cannot call itself", NULL);
        return;
    }
    /* on for whoever asked: the operator's token, or this call's node identity */
    jsonrpc_caller caller = {p2p__call_authz(call), p2p__call_from_node(call)};
    call_remote_as(p2p_call_ctx(call), &caller, target, method, p, to ? (uint32_t)json_integer_value(to) : 0,
                   on_cluster_call_done, call);
}

static const p2p_method_desc cluster_methods[] = {
    {"call",
     "Calls a method on a node id, on one node of a role (\"role:coordinator\"), or on all live nodes (\"all\", "
     "\"all:worker\"); per-node results and errors.",
     "{target, method, params?, timeout_ms?}", 0, m_call, NULL},
};

int p2p__remote_register_service(p2p_ctx *ctx)
{
    static const p2p_service_desc desc = {"cluster", P2P_VERSION, "Calls across the cluster", 1};
    int r = p2p_service_register(ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    for (size_t i = 0; r == 0 && i < sizeof cluster_methods / sizeof cluster_methods[0]; i++) {
        r = p2p_method_register(ctx, "cluster", &cluster_methods[i]);
        if (r == -EEXIST)
            r = 0;
    }
    return r;
}

/* ---- raw forwarding (X-P2P-Node) ------------------------------------------------------- */

typedef struct fwd {
    p2p_remote_raw_cb cb;
    void *arg;
} fwd;

static void on_fwd_done(void *udata, const p2p__httpc_res *res)
{
    fwd *w = udata;
    if (res->error == P2P_HTTPC_OK)
        w->cb(w->arg, res->status, (const char *)res->body, res->body_len, 0, NULL);
    else
        w->cb(w->arg, 0, NULL, 0, res->error == P2P_HTTPC_E_TIMEOUT ? P2P_RPC_E_TIMEOUT : P2P_RPC_E_TRANSPORT,
              res->message);
    free(w);
}

int p2p__remote_forward(p2p_ctx *ctx, const char *node_id, const char *body, size_t len, const char *authz,
                        uint32_t timeout_ms, p2p_remote_raw_cb cb, void *arg)
{
    char addr[64];
    uint16_t port = 0;
    int r = p2p__membership_lookup(ctx, node_id, addr, sizeof addr, &port);
    if (r == -ENOENT)
        return P2P_RPC_E_UNKNOWN_NODE;
    if (r != 0)
        return P2P_RPC_E_NODE_DOWN;
    p2p__httpc *http = p2p__membership_client(ctx);
    if (!http)
        return P2P_RPC_E_TRANSPORT;
    fwd *w = p2p__xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    char *hline = authz ? p2p__xasprintf("Authorization: %s", authz) : NULL;
    const char *hdrs[2];
    size_t nh = 0;
    if (hline)
        hdrs[nh++] = hline;
    hdrs[nh++] = P2P_RELAYED_HEADER ": 1"; /* always someone else's request */
    p2p__httpc_req hr = {.method = "POST", .node_id = node_id, .address = addr, .port = port, .path = "/rpc",
                         .body = body, .body_len = len, .timeout_ms = timeout_ms ? timeout_ms : 30000,
                         .headers = hdrs, .n_headers = nh};
    char *err = NULL;
    uint64_t id = p2p__httpc_request(http, &hr, on_fwd_done, w, &err);
    if (hline) {
        OPENSSL_cleanse(hline, strlen(hline));
        free(hline);
    }
    if (!id) {
        free(err);
        free(w);
        return P2P_RPC_E_TRANSPORT;
    }
    return 0;
}

int p2p__call_remote_for(p2p_call *call, const char *target, const char *method, json_t *params,
                         uint32_t timeout_ms, p2p_remote_cb cb, void *udata)
{
    jsonrpc_caller caller = {p2p__call_authz(call), p2p__call_from_node(call), NULL};
    return call_remote_as(p2p_call_ctx(call), &caller, target, method, params, timeout_ms, cb, udata);
}
