/*
 * api.c — the node's HTTP endpoints: /health, /rpc, /services, /metrics.
 *
 * /rpc hands the body to the JSON-RPC decoder and executor. Calls may finish
 * after the HTTP request is gone (client reset, connection closed): the pending
 * record is separate from the request's memory pool, and a pool-owned guard
 * clears its request pointer when h2o disposes the request, so a late reply is
 * dropped instead of written into freed memory.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>

#include "auth/guard.h"
#include "auth/jwt.h"
#include "auth/ratelimit.h"
#include "auth/revsync.h"
#include "builtin/sysinfo.h"
#include "core/metrics.h"
#include "core/util.h"
#include "http/internal.h"
#include "membership/node.h"
#include "pki/cluster.h"
#include "pki/pki.h"
#include "rpc/remote.h"
#include "rpc/jsonrpc.h"
#include "rpc/registry.h"

/* ---- /health -------------------------------------------------------------- */

void p2p__api_health(http_server *srv, h2o_req_t *req)
{
    p2p_ctx *ctx = srv->ctx;
    json_t *comps = json_object();
    int all_running = 1;
    for (size_t i = 0; i < ctx->n_components; i++) {
        p2p_component *c = ctx->components[i];
        if (c->state != P2P_COMP_RUNNING)
            all_running = 0;
        json_t *o = json_pack("{s:s, s:I}", "state", p2p__component_state_name(c->state), "error_count",
                              (json_int_t)c->error_count);
        if (c->started_at_ms)
            json_object_set_new(o, "started_at", json_real((double)c->started_at_ms / 1000.0));
        if (c->last_error)
            json_object_set_new(o, "last_error", json_string(c->last_error));
        json_object_set_new(comps, c->ops->name, o);
    }
    const char *status = srv->draining ? "stopping" : all_running ? "healthy" : "degraded";
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:f, s:o}", "status", status, "node_id", p2p_node_id(ctx), "role",
                             p2p_node_role(ctx), "version", P2P_VERSION, "uptime_seconds", p2p__ctx_uptime(ctx),
                             "components", comps);
    int ok = !srv->draining && all_running;
    p2p__http_send_json(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", body);
    json_decref(body);
}

/* ---- /rpc ----------------------------------------------------------------- */

typedef struct rpc_pending {
    h2o_req_t *req;            /* NULL once h2o disposed the request */
    struct rpc_pending **guard; /* pool-owned slot pointing back at us */
} rpc_pending;

static void on_guard_dispose(void *p)
{
    rpc_pending **slot = p;
    if (*slot)
        (*slot)->req = NULL;
}

/* Keeps a request answerable after its handler returned (see the top of the file). */
static rpc_pending *pending_new(h2o_req_t *req)
{
    rpc_pending *pend = p2p__xcalloc(1, sizeof(*pend));
    pend->req = req;
    pend->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*pend->guard), on_guard_dispose);
    *pend->guard = pend;
    return pend;
}

static void on_rpc_done(json_t *response, void *arg)
{
    rpc_pending *pend = arg;
    h2o_req_t *req = pend->req;
    if (req) {
        *pend->guard = NULL;
        if (response) {
            p2p__http_send_json(req, 200, "OK", response);
        } else {
            req->res.status = 204;
            req->res.reason = "No Content";
            h2o_send_inline(req, "", 0);
        }
    }
    json_decref(response);
    free(pend);
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
static const char *first_forbidden(http_server *srv, const jsonrpc_msg *msg, const p2p_identity *id)
{
    if ((id->role != P2P_ROLE_VIEWER && id->role != P2P_ROLE_NODE) || msg->error)
        return NULL;
    for (size_t i = 0; i < msg->n; i++) {
        const jsonrpc_item *it = &msg->items[i];
        if (it->error || !it->method)
            continue;
        p2p_method *m = p2p__registry_find(srv->ctx->registry, it->method, strlen(it->method));
        if (m && id->role == P2P_ROLE_VIEWER && !(m->flags & P2P_METHOD_READONLY))
            return m->path;
        if (m && id->role == P2P_ROLE_NODE && (m->flags & P2P_METHOD_ADMIN))
            return m->path;
    }
    return NULL;
}

/* ---- X-P2P-Node: the call is for another node ------------------------------- */

static void on_forwarded(void *arg, int status, const char *body, size_t len, int err, const char *msg)
{
    rpc_pending *pend = arg;
    h2o_req_t *req = pend->req;
    if (req) {
        *pend->guard = NULL;
        if (status) {
            p2p__http_send(req, status, status == 200 ? "OK" : "Upstream Status", "application/json", body, len);
        } else {
            json_t *e = jsonrpc_error_response(json_null(), err, msg && *msg ? msg : "the node did not answer", NULL);
            p2p__http_send_json(req, 200, "OK", e);
            json_decref(e);
        }
    }
    free(pend);
}

/* Returns 1 when the request was for another node (and is answered), else 0. */
static int forward_if_asked(http_server *srv, h2o_req_t *req, const p2p_identity *id)
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
    if (strcmp(node, srv->ctx->cfg.node_id) == 0)
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
    rpc_pending *pend = pending_new(req);
    int r = p2p__remote_forward(srv->ctx, node, req->entity.base ? req->entity.base : "", req->entity.len, authz,
                                30000, on_forwarded, pend);
    if (r != 0) {
        *pend->guard = NULL;
        free(pend);
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
static int charge_batch(http_server *srv, h2o_req_t *req, const jsonrpc_msg *msg, const p2p_identity *id)
{
    if (msg->error || !msg->is_batch || msg->n <= 1)
        return 1;
    uint32_t retry = 0, burst = 0;
    int r = p2p__guard_rate_batch(p2p__guard(srv->ctx), id, P2P_RL_RPC, (uint32_t)msg->n, &retry, &burst);
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

void p2p__api_rpc(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    if (!is_json_type(req)) {
        p2p__http_send_error(req, 415, "Unsupported Media Type", "Content-Type must be application/json");
        return;
    }
    jsonrpc_msg msg;
    jsonrpc_decode(req->entity.base ? req->entity.base : "", req->entity.len, &msg);
    if (!charge_batch(srv, req, &msg, id) || forward_if_asked(srv, req, id)) {
        jsonrpc_msg_free(&msg);
        return;
    }
    const char *denied = first_forbidden(srv, &msg, id);
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
    int relayed = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-p2p-relayed"), -1) >= 0;
    jsonrpc_caller caller = {bearer_of(req, id), id->role == P2P_ROLE_NODE,
                             id->role == P2P_ROLE_NODE && !relayed ? id->peer_node : NULL};
    jsonrpc_execute_as(srv->ctx, &msg, &caller, on_rpc_done, pending_new(req));
}

/* ---- /auth/token and /auth/revoke ---------------------------------------- */

static json_t *json_body(h2o_req_t *req)
{
    if (!req->entity.base || req->entity.len == 0)
        return json_object();
    json_error_t jerr;
    return json_loadb(req->entity.base, req->entity.len, 0, &jerr);
}

void p2p__api_auth_token(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    p2p_guard *g = p2p__guard(srv->ctx);
    json_t *body = json_body(req);
    if (!json_is_object(body)) {
        json_decref(body);
        p2p__http_send_error(req, 400, "Bad Request", "the body must be a JSON object");
        return;
    }
    json_t *key = json_object_get(body, "api_key"), *role = json_object_get(body, "role"),
           *ttl = json_object_get(body, "ttl"), *name = json_object_get(body, "name");
    const char *want = json_is_string(role) ? json_string_value(role) : NULL;
    if (name && (!json_is_string(name) || strlen(json_string_value(name)) != json_string_length(name) ||
                 !p2p_jwt_name_valid(json_string_value(name)))) {
        char msg[160];
        snprintf(msg, sizeof msg, "\"name\" must be a string of 1..%d bytes without control characters",
                 P2P_JWT_MAX_NAME);
        json_decref(body);
        p2p__http_send_error(req, 400, "Bad Request", msg);
        return;
    }
    if ((role && !json_is_string(role)) || (ttl && !json_is_integer(ttl)) || (key && !json_is_string(key)) ||
        (want && strcmp(want, "admin") != 0 && strcmp(want, "viewer") != 0) ||
        (ttl && (json_integer_value(ttl) < 60 || json_integer_value(ttl) > srv->ctx->cfg.jwt_ttl))) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "expected {\"api_key\": string, \"role\"?: \"admin\"|\"viewer\", \"ttl\"?: 60..%d, \"name\"?: string}",
                 srv->ctx->cfg.jwt_ttl);
        json_decref(body);
        p2p__http_send_error(req, 400, "Bad Request", msg);
        return;
    }
    const char *sub, *grant; /* static strings: `body` is freed below */
    if (!p2p__guard_can_sign(g)) {
        json_decref(body);
        p2p__http_send_error(req, 403, "Forbidden",
                             "this node cannot issue tokens: only the coordinator signs them (POST /auth/token on the "
                             "coordinator; any node accepts its tokens)");
        return;
    }
    if (key) {
        if (!p2p__guard_admin_key_ok(g, json_string_value(key), json_string_length(key))) {
            json_decref(body);
            p2p_log(srv->ctx, P2P_LOG_WARN, "security", "refused a token request with a wrong API key from %s",
                    id->client_ip);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("ApiKey realm=\"p2p\""));
            p2p__http_send_error(req, 401, "Unauthorized", "wrong API key");
            return;
        }
        sub = "admin";
        grant = want && strcmp(want, "viewer") == 0 ? "viewer" : "admin";
    } else {
        /* a node certificate is a node identity: it never turns into an operator token */
        json_decref(body);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("ApiKey realm=\"p2p\""));
        p2p__http_send_error(req, 401, "Unauthorized",
                             id->via_cert ? "a node certificate does not get a token: give the admin api_key"
                                          : "give the admin api_key");
        return;
    }
    char *token = NULL;
    int64_t exp = 0;
    int r = p2p__guard_issue(g, sub, grant, name ? json_string_value(name) : NULL, ttl ? json_integer_value(ttl) : 0,
                             &token, &exp);
    if (r != 0) {
        json_decref(body);
        p2p__http_send_error(req, 500, "Internal Server Error", "cannot issue a token");
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:s, s:I}", "token", token, "token_type", "Bearer", "role", grant,
                            "subject", sub, "expires_at", (json_int_t)exp);
    if (name)
        json_object_set(out, "name", name);
    json_decref(body);
    free(token);
    p2p__http_send_json(req, 200, "OK", out);
    json_decref(out);
}

static void on_pki_reply(int status, json_t *body, void *arg);

/* POST /auth/revoke (admin) and, on the coordinator, POST /internal/revoke (a
 * worker passing on a revocation made there): both go through auth/revsync.c,
 * which answers once the entry is stored and the nodes have it (or ~2 s). */
static void revoke_common(http_server *srv, h2o_req_t *req, const p2p_identity *id, int forwarded)
{
    json_t *body = json_body(req);
    json_t *tok = json_is_object(body) ? json_object_get(body, "token") : NULL;
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        json_decref(body);
        p2p__http_send_error(req, 400, "Bad Request", "expected {\"token\": string}");
        return;
    }
    const char *why = NULL;
    rpc_pending *pend = pending_new(req);
    int r = p2p__revsync_revoke(srv->ctx, json_string_value(tok), json_string_length(tok), &why, on_pki_reply, pend);
    json_decref(body);
    if (r != 0) {
        *pend->guard = NULL;
        free(pend);
        char msg[160];
        snprintf(msg, sizeof msg, "cannot revoke: %s", why ? why : p2p_strerror(r));
        p2p__http_send_error(req, r == -EACCES ? 400 : 500, r == -EACCES ? "Bad Request" : "Internal Server Error",
                             msg);
        return;
    }
    p2p_log(srv->ctx, P2P_LOG_INFO, "security", "token revoked by %s%s", id->subject,
            forwarded ? " (made on that node)" : "");
}

void p2p__api_auth_revoke(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    revoke_common(srv, req, id, 0);
}

void p2p__api_internal_revoke(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    if (!p2p__guard_can_sign(p2p__guard(srv->ctx))) {
        p2p__http_send_error(req, 404, "Not Found", "only the coordinator keeps the cluster's deny list");
        return;
    }
    revoke_common(srv, req, id, 1);
}

void p2p__api_revocations(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    if (!p2p__guard_can_sign(p2p__guard(srv->ctx))) {
        p2p__http_send_error(req, 404, "Not Found", "only the coordinator keeps the cluster's deny list");
        return;
    }
    uint64_t since = 0;
    if (req->query_at != SIZE_MAX) {
        const char *q = req->path.base + req->query_at + 1;
        size_t ql = req->path.len - req->query_at - 1;
        if (ql < 7 || memcmp(q, "since=", 6) != 0 || ql > 6 + 16) {
            p2p__http_send_error(req, 400, "Bad Request", "expected ?since=VERSION");
            return;
        }
        for (size_t i = 6; i < ql; i++) {
            if (q[i] < '0' || q[i] > '9') {
                p2p__http_send_error(req, 400, "Bad Request", "expected ?since=VERSION");
                return;
            }
            since = since * 10 + (uint64_t)(q[i] - '0');
        }
    }
    json_t *doc = p2p__revsync_serve(srv->ctx, since, id->peer_node);
    p2p__http_send_json(req, 200, "OK", doc);
    json_decref(doc);
}

void p2p__api_jwt_keys(http_server *srv, h2o_req_t *req)
{
    json_t *doc = p2p__guard_keys_json(p2p__guard(srv->ctx));
    p2p__http_send_json(req, 200, "OK", doc);
    json_decref(doc);
}

/* ---- /internal: the CA certificate, enrollment and renewal ------------------ */

void p2p__api_ca_cert(http_server *srv, h2o_req_t *req)
{
    p2p_tls_material m;
    if (p2p__pki_material(srv->ctx, &m) != 0 || !m.ca) {
        p2p__http_send_error(req, 404, "Not Found", "this node has no CA certificate");
        return;
    }
    p2p__http_send(req, 200, "OK", "application/x-pem-file", m.ca, strlen(m.ca));
}

static void on_pki_reply(int status, json_t *body, void *arg)
{
    rpc_pending *pend = arg;
    h2o_req_t *req = pend->req;
    if (req) {
        *pend->guard = NULL;
        static const struct {
            int status;
            const char *reason;
        } reasons[] = {{200, "OK"},        {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
                       {404, "Not Found"}, {500, "Internal Server Error"}, {503, "Service Unavailable"}};
        const char *reason = "Error";
        for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
            if (reasons[i].status == status)
                reason = reasons[i].reason;
        p2p__http_send_json(req, status, reason, body);
    }
    json_decref(body);
    free(pend);
}

void p2p__api_cert_request(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    p2p__pki_cert_request(srv->ctx, req->entity.base ? req->entity.base : "", req->entity.len, id->client_ip,
                          on_pki_reply, pending_new(req));
}

void p2p__api_cert_renew(http_server *srv, h2o_req_t *req, const p2p_identity *id)
{
    p2p__pki_cert_renew(srv->ctx, req->entity.base ? req->entity.base : "", req->entity.len,
                        id->via_cert ? id->subject : NULL, id->client_ip, on_pki_reply, pending_new(req));
}

/* ---- /cluster/nodes and push-pull ---------------------------------------------- */

void p2p__api_cluster_nodes(http_server *srv, h2o_req_t *req)
{
    json_t *out = p2p__membership_nodes_json(srv->ctx);
    p2p__http_send_json(req, 200, "OK", out);
    json_decref(out);
}

void p2p__api_gossip_exchange(http_server *srv, h2o_req_t *req)
{
    const char *why = NULL;
    json_t *out = p2p__membership_exchange(srv->ctx, req->entity.base ? req->entity.base : "", req->entity.len,
                                           p2p__http_peer_node(srv, req), &why);
    if (!out) {
        p2p__http_send_error(req, 400, "Bad Request", why);
        return;
    }
    p2p__http_send_json(req, 200, "OK", out);
    json_decref(out);
}

/* ---- /services ------------------------------------------------------------ */

static json_t *method_stats_json(const p2p_method *m)
{
    const p2p_method_stats *st = &m->stats;
    return json_pack("{s:I, s:I, s:{s:f, s:f, s:f, s:f}}", "calls", (json_int_t)st->calls, "errors",
                     (json_int_t)st->errors, "latency_ms", "avg",
                     st->calls ? (double)st->sum_us / (double)st->calls / 1000.0 : 0.0, "p50",
                     p2p__method_stats_quantile(st, 0.50) / 1000.0, "p99",
                     p2p__method_stats_quantile(st, 0.99) / 1000.0, "max", (double)st->max_us / 1000.0);
}

static json_t *service_json(const p2p_service *s, int detailed)
{
    json_t *methods = json_array();
    for (size_t i = 0; i < s->n_methods; i++) {
        const p2p_method *m = s->methods[i];
        if (!detailed) {
            json_array_append_new(methods, json_string(m->name));
            continue;
        }
        json_array_append_new(methods, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:o}", "name", m->name, "path",
                                                 m->path, "description", m->description, "params", m->params,
                                                 "readonly", (m->flags & P2P_METHOD_READONLY) != 0, "public",
                                                 (m->flags & P2P_METHOD_PUBLIC) != 0, "metrics",
                                                 method_stats_json(m)));
    }
    json_t *out = json_pack("{s:s, s:s, s:s, s:b, s:s, s:f, s:o}", "name", s->name, "version", s->version,
                            "description", s->description, "builtin", s->builtin, "status", s->status, "started_at",
                            (double)s->started_at_ms / 1000.0, "methods", methods);
    if (s->describe) {
        json_t *more = s->describe(s, s->describe_arg);
        if (json_is_object(more))
            json_object_update(out, more);
        json_decref(more);
    }
    return out;
}

static p2p_service *find_service(p2p_ctx *ctx, const char *name, size_t len)
{
    for (size_t i = 0; i < ctx->registry->n_services; i++) {
        p2p_service *s = ctx->registry->services[i];
        if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
            return s;
    }
    return NULL;
}

void p2p__api_services(http_server *srv, h2o_req_t *req, const char *name, size_t name_len)
{
    p2p_registry *reg = srv->ctx->registry;
    if (name) {
        p2p_service *s = find_service(srv->ctx, name, name_len);
        if (!s) {
            p2p__http_send_error(req, 404, "Not Found", "no such service");
            return;
        }
        json_t *body = service_json(s, 1);
        p2p__http_send_json(req, 200, "OK", body);
        json_decref(body);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < reg->n_services; i++)
        json_array_append_new(list, service_json(reg->services[i], 0));
    json_t *body = json_pack("{s:s, s:o}", "node_id", p2p_node_id(srv->ctx), "services", list);
    p2p__http_send_json(req, 200, "OK", body);
    json_decref(body);
}

/* ---- /metrics ------------------------------------------------------------- */

static int wants_prometheus(const h2o_req_t *req)
{
    if (req->query_at != SIZE_MAX) {
        const char *q = req->path.base + req->query_at + 1;
        size_t ql = req->path.len - req->query_at - 1;
        for (size_t i = 0; i + 17 <= ql; i++)
            if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "format=prometheus", 17) == 0)
                return 1;
        for (size_t i = 0; i + 11 <= ql; i++)
            if ((i == 0 || q[i - 1] == '&') && memcmp(q + i, "format=json", 11) == 0)
                return 0;
    }
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    const char *json = h2o_strstr(v.base, v.len, H2O_STRLIT("application/json")) != SIZE_MAX ? "" : NULL;
    return !json && h2o_strstr(v.base, v.len, H2O_STRLIT("text/plain")) != SIZE_MAX;
}

static json_t *metrics_json(http_server *srv, const p2p_service *only)
{
    p2p_ctx *ctx = srv->ctx;
    json_t *methods = json_object();
    p2p_registry *reg = ctx->registry;
    for (size_t i = 0; i < reg->n_services; i++) {
        const p2p_service *s = reg->services[i];
        if (only && s != only)
            continue;
        for (size_t j = 0; j < s->n_methods; j++)
            json_object_set_new(methods, s->methods[j]->path, method_stats_json(s->methods[j]));
    }
    if (only)
        return json_pack("{s:s, s:s, s:s, s:o}", "node_id", p2p_node_id(ctx), "service", only->name, "status",
                         only->status, "methods", methods);
    const http_stats *st = &srv->stats;
    json_t *body = json_pack("{s:s, s:s, s:f, s:{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}}, s:{s:I}, s:{s:I}, s:o}",
                     "node_id", p2p_node_id(ctx), "role", p2p_node_role(ctx), "uptime_seconds",
                     p2p__ctx_uptime(ctx), "http", "connections_active", (json_int_t)st->connections_active,
                     "connections_total", (json_int_t)st->connections_total, "connections_rejected",
                     (json_int_t)st->connections_rejected, "requests_total", (json_int_t)st->requests_total,
                     "responses", "1xx", (json_int_t)st->responses[1], "2xx", (json_int_t)st->responses[2], "3xx",
                     (json_int_t)st->responses[3], "4xx", (json_int_t)st->responses[4], "5xx",
                     (json_int_t)st->responses[5], "rpc", "inflight", (json_int_t)reg->inflight, "process",
                     "rss_bytes", (json_int_t)sysinfo_process_rss(), "methods", methods);
    /* the caps of limits.c: how often each was hit, and the bytes waiting now */
    json_object_set_new(json_object_get(body, "http"), "limits",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "http1_framing_rejected",
                                  (json_int_t)st->framing_rejected, "http2_rapid_resets", (json_int_t)st->rapid_resets,
                                  "http2_stream_limit", (json_int_t)st->stream_limit, "pending_refused",
                                  (json_int_t)st->pending_refused, "write_timeouts", (json_int_t)st->write_timeouts,
                                  "pending_bytes", (json_int_t)st->pending_bytes));
    /* the components' own sources (gossip, ...), each under its group name */
    json_t *sources = p2p__metrics_sources_json(ctx);
    json_object_update_missing(body, sources);
    json_decref(sources);
    return body;
}

/* A growing text buffer for the Prometheus exposition format. */
typedef struct textbuf {
    char *p;
    size_t len, cap;
} textbuf;

static void tb_printf(textbuf *tb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(textbuf *tb, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tb->p + tb->len, tb->cap - tb->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < tb->cap - tb->len) {
            tb->len += (size_t)n;
            return;
        }
        tb->cap = tb->cap * 2 + (n > 0 ? (size_t)n : 0);
        tb->p = p2p__xrealloc(tb->p, tb->cap);
    }
}

/* Label values escape backslash, double quote and newline (exposition format 0.0.4). */
static void tb_label(textbuf *tb, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            tb_printf(tb, "\\%c", *v);
        else if (*v == '\n')
            tb_printf(tb, "\\n");
        else
            tb_printf(tb, "%c", *v);
    }
}

static void prom_method(textbuf *tb, const p2p_method *m, const char *metric)
{
    tb_printf(tb, "%s{method=\"", metric);
    tb_label(tb, m->path);
    tb_printf(tb, "\",service=\"");
    tb_label(tb, m->service->name);
    tb_printf(tb, "\"");
}

static char *metrics_prometheus(http_server *srv, const p2p_service *only, size_t *len)
{
    p2p_ctx *ctx = srv->ctx;
    textbuf tb = {p2p__xmalloc(4096), 0, 4096};
    if (!only) {
        const http_stats *st = &srv->stats;
        tb_printf(&tb, "# HELP p2p_uptime_seconds Seconds since the node started.\n# TYPE p2p_uptime_seconds gauge\n");
        tb_printf(&tb, "p2p_uptime_seconds %.3f\n", p2p__ctx_uptime(ctx));
        tb_printf(&tb, "# HELP p2p_process_resident_memory_bytes Resident set size.\n"
                       "# TYPE p2p_process_resident_memory_bytes gauge\np2p_process_resident_memory_bytes %llu\n",
                  (unsigned long long)sysinfo_process_rss());
        tb_printf(&tb, "# HELP p2p_http_connections_active Open client connections.\n"
                       "# TYPE p2p_http_connections_active gauge\np2p_http_connections_active %zu\n",
                  st->connections_active);
        tb_printf(&tb, "# HELP p2p_http_connections_total Accepted connections.\n"
                       "# TYPE p2p_http_connections_total counter\np2p_http_connections_total %llu\n",
                  (unsigned long long)st->connections_total);
        tb_printf(&tb, "# HELP p2p_http_connections_rejected_total Connections refused over the limit.\n"
                       "# TYPE p2p_http_connections_rejected_total counter\np2p_http_connections_rejected_total %llu\n",
                  (unsigned long long)st->connections_rejected);
        tb_printf(&tb, "# HELP p2p_http_limit_hits_total Requests or connections refused by a per-client cap.\n"
                       "# TYPE p2p_http_limit_hits_total counter\n"
                       "p2p_http_limit_hits_total{cap=\"http1_framing\"} %llu\n"
                       "p2p_http_limit_hits_total{cap=\"http2_rapid_reset\"} %llu\n"
                       "p2p_http_limit_hits_total{cap=\"http2_streams\"} %llu\n"
                       "p2p_http_limit_hits_total{cap=\"pending_bytes\"} %llu\n"
                       "p2p_http_limit_hits_total{cap=\"write_timeout\"} %llu\n",
                  (unsigned long long)st->framing_rejected, (unsigned long long)st->rapid_resets,
                  (unsigned long long)st->stream_limit, (unsigned long long)st->pending_refused,
                  (unsigned long long)st->write_timeouts);
        tb_printf(&tb, "# HELP p2p_http_pending_response_bytes Response bytes waiting for clients to read them.\n"
                       "# TYPE p2p_http_pending_response_bytes gauge\np2p_http_pending_response_bytes %llu\n",
                  (unsigned long long)st->pending_bytes);
        tb_printf(&tb, "# HELP p2p_http_responses_total Responses by status class.\n"
                       "# TYPE p2p_http_responses_total counter\n");
        for (int c = 1; c <= 5; c++)
            tb_printf(&tb, "p2p_http_responses_total{code=\"%dxx\"} %llu\n", c,
                      (unsigned long long)st->responses[c]);
        tb_printf(&tb, "# HELP p2p_rpc_inflight Method calls running now.\n# TYPE p2p_rpc_inflight gauge\n"
                       "p2p_rpc_inflight %zu\n",
                  ctx->registry->inflight);
    }
    tb_printf(&tb, "# HELP p2p_rpc_calls_total Completed method calls.\n# TYPE p2p_rpc_calls_total counter\n");
    p2p_registry *reg = ctx->registry;
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 1)
            tb_printf(&tb, "# HELP p2p_rpc_errors_total Method calls that returned an error.\n"
                           "# TYPE p2p_rpc_errors_total counter\n");
        if (pass == 2)
            tb_printf(&tb, "# HELP p2p_rpc_duration_seconds Method call latency.\n"
                           "# TYPE p2p_rpc_duration_seconds histogram\n");
        for (size_t i = 0; i < reg->n_services; i++) {
            const p2p_service *s = reg->services[i];
            if (only && s != only)
                continue;
            for (size_t j = 0; j < s->n_methods; j++) {
                const p2p_method *m = s->methods[j];
                const p2p_method_stats *st = &m->stats;
                if (pass == 0) {
                    prom_method(&tb, m, "p2p_rpc_calls_total");
                    tb_printf(&tb, "} %llu\n", (unsigned long long)st->calls);
                } else if (pass == 1) {
                    prom_method(&tb, m, "p2p_rpc_errors_total");
                    tb_printf(&tb, "} %llu\n", (unsigned long long)st->errors);
                } else {
                    uint64_t cum = 0;
                    for (size_t b = 0; b <= P2P_LAT_BUCKETS; b++) {
                        cum += st->buckets[b];
                        prom_method(&tb, m, "p2p_rpc_duration_seconds_bucket");
                        if (b < P2P_LAT_BUCKETS)
                            tb_printf(&tb, ",le=\"%g\"} %llu\n", (double)p2p__lat_bounds_us[b] / 1e6,
                                      (unsigned long long)cum);
                        else
                            tb_printf(&tb, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
                    }
                    prom_method(&tb, m, "p2p_rpc_duration_seconds_sum");
                    tb_printf(&tb, "} %.6f\n", (double)st->sum_us / 1e6);
                    prom_method(&tb, m, "p2p_rpc_duration_seconds_count");
                    tb_printf(&tb, "} %llu\n", (unsigned long long)st->calls);
                }
            }
        }
    }
    if (!only) {
        size_t n;
        char *more = p2p__metrics_sources_prometheus(ctx, &n);
        if (n)
            tb_printf(&tb, "%s", more);
        free(more);
    }
    *len = tb.len;
    return tb.p;
}

void p2p__api_metrics(http_server *srv, h2o_req_t *req, const char *service, size_t service_len)
{
    const p2p_service *only = NULL;
    if (service) {
        only = find_service(srv->ctx, service, service_len);
        if (!only) {
            p2p__http_send_error(req, 404, "Not Found", "no such service");
            return;
        }
    }
    if (wants_prometheus(req)) {
        size_t len;
        char *text = metrics_prometheus(srv, only, &len);
        p2p__http_send(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        return;
    }
    json_t *body = metrics_json(srv, only);
    p2p__http_send_json(req, 200, "OK", body);
    json_decref(body);
}
