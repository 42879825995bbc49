/*
 * http_auth.c — the security component on the HTTP server: the admission hook
 * every request passes (authentication, rate limit, the route's auth class),
 * and the routes it owns: POST /auth/token and GET /internal/jwt-keys (the
 * guard's), POST /auth/revoke, POST /internal/revoke and GET
 * /internal/revocations (the revocation sync's, auth/revsync.c).
 *
 * Admission answers, before any handler runs:
 *   429 + Retry-After  the identity's (or address's) bucket of the route's class is empty;
 *   401 + WWW-Authenticate  no (or a refused) credential on a NODE/ANY/ADMIN route,
 *                      or a token where a node certificate is required;
 *   403                a valid token of a role below the route's (ADMIN).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/guard.h"
#include "auth/http_auth.h"
#include "auth/jwt.h"
#include "auth/ratelimit.h"
#include "auth/revsync.h"
#include "core/util.h"
#include "http/routes.h"

/* ---- admission ------------------------------------------------------------------ */

static h2o_iovec_t header_value(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static void peer_ip(h2o_req_t *req, char *out, size_t n)
{
    struct sockaddr_storage ss;
    snprintf(out, n, "-");
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl == 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)n);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)n);
}

static void send_unauthorized(h2o_req_t *req, const char *why)
{
    char *hdr = h2o_mem_alloc_pool(&req->pool, 256); /* h2o keeps the pointer: pool memory */
    int n = why ? snprintf(hdr, 256, "Bearer realm=\"p2p\", error=\"invalid_token\", error_description=\"%s\"", why)
                : snprintf(hdr, 256, "Bearer realm=\"p2p\"");
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, hdr,
                   n < 256 ? (size_t)n : 255);
    char msg[200];
    snprintf(msg, sizeof msg, "authentication required%s%s", why ? ": " : "", why ? why : "");
    p2p__http_send_error(req, 401, "Unauthorized", msg);
}

/* The admission hook (http/routes.h): `caller` is a p2p_identity. */
static int admit(void *arg, h2o_req_t *req, const char *peer_node, p2p_http_auth auth, int rl_class, void *caller)
{
    p2p_guard *g = arg;
    p2p_identity *id = caller;
    char ip[INET6_ADDRSTRLEN];
    peer_ip(req, ip, sizeof ip);
    h2o_iovec_t authz = header_value(req, H2O_TOKEN_AUTHORIZATION);
    h2o_iovec_t xff = header_value(req, H2O_TOKEN_X_FORWARDED_FOR);
    char *xffs = xff.base ? h2o_strdup(&req->pool, xff.base, xff.len).base : NULL;
    p2p__guard_identify(g, peer_node, authz.base, authz.len, ip, xffs, id);
    uint32_t retry = 0;
    if (!p2p__guard_rate(g, id, rl_class, &retry)) {
        char buf[16];
        int n = snprintf(buf, sizeof buf, "%u", retry ? retry : 1);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       h2o_strdup(&req->pool, buf, (size_t)n).base, (size_t)n);
        p2p__http_send_error(req, 429, "Too Many Requests", "rate limit exceeded; retry later");
        return 0;
    }
    switch (auth) {
    case P2P_HTTP_OPEN:
    case P2P_HTTP_SELF:
        return 1;
    case P2P_HTTP_NODE:
        if (id->via_cert)
            return 1;
        /* no credentials: a plain challenge; a token: it is not enough here */
        send_unauthorized(req, id->why ? id->why : id->role != P2P_ROLE_NONE ? "a node certificate is required" : NULL);
        return 0;
    case P2P_HTTP_ANY:
        if (id->role != P2P_ROLE_NONE)
            return 1;
        send_unauthorized(req, id->why);
        return 0;
    case P2P_HTTP_ADMIN:
        if (id->role == P2P_ROLE_ADMIN)
            return 1;
        if (id->role == P2P_ROLE_NONE)
            send_unauthorized(req, id->why);
        else
            p2p__http_send_error(req, 403, "Forbidden", "this needs the admin role");
        return 0;
    }
    return 0;
}

/* ---- POST /auth/token and GET /internal/jwt-keys ------------------------------------- */

static json_t *json_body(h2o_req_t *req)
{
    if (!req->entity.base || req->entity.len == 0)
        return json_object();
    json_error_t jerr;
    return json_loadb(req->entity.base, req->entity.len, 0, &jerr);
}

static void auth_token(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    const p2p_identity *id = hr->caller;
    p2p_guard *g = p2p__guard(hr->ctx);
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
        (ttl && (json_integer_value(ttl) < 60 || json_integer_value(ttl) > hr->ctx->cfg.jwt_ttl))) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "expected {\"api_key\": string, \"role\"?: \"admin\"|\"viewer\", \"ttl\"?: 60..%d, \"name\"?: string}",
                 hr->ctx->cfg.jwt_ttl);
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
            p2p_log(hr->ctx, P2P_LOG_WARN, "security", "refused a token request with a wrong API key from %s",
                    id->client_ip);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                           H2O_STRLIT("ApiKey realm=\"p2p\""));
            p2p__http_send_error(req, 401, "Unauthorized", "wrong API key");
            return;
        }
        sub = "admin";
        grant = want && strcmp(want, "viewer") == 0 ? "viewer" : "admin";
    } else {
        /* a node certificate is a node identity: it never turns into an operator token */
        json_decref(body);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("ApiKey realm=\"p2p\""));
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

static void jwt_keys(p2p_http_req *hr)
{
    json_t *doc = p2p__guard_keys_json(p2p__guard(hr->ctx));
    p2p__http_send_json(hr->req, 200, "OK", doc);
    json_decref(doc);
}

/* ---- revocation: POST /auth/revoke, POST /internal/revoke, GET /internal/revocations ---- */

static void on_revoked(int status, json_t *body, void *arg)
{
    h2o_req_t *req = p2p__http_later_take(arg);
    if (req)
        p2p__http_send_json(req, status, p2p__http_reason(status), body);
    json_decref(body);
}

/* POST /auth/revoke (admin) and, on the coordinator, POST /internal/revoke (a
 * worker passing on a revocation made there): both go through auth/revsync.c,
 * which answers once the entry is stored and the nodes have it (or ~2 s). */
static void revoke_common(p2p_http_req *hr, int forwarded)
{
    h2o_req_t *req = hr->req;
    const p2p_identity *id = hr->caller;
    json_t *body = json_body(req);
    json_t *tok = json_is_object(body) ? json_object_get(body, "token") : NULL;
    if (!json_is_string(tok) || json_string_length(tok) == 0) {
        json_decref(body);
        p2p__http_send_error(req, 400, "Bad Request", "expected {\"token\": string}");
        return;
    }
    const char *why = NULL;
    p2p_http_later *later = p2p__http_later(req);
    int r = p2p__revsync_revoke(hr->ctx, json_string_value(tok), json_string_length(tok), &why, on_revoked, later);
    json_decref(body);
    if (r != 0) {
        p2p__http_later_take(later);
        char msg[160];
        snprintf(msg, sizeof msg, "cannot revoke: %s", why ? why : p2p_strerror(r));
        p2p__http_send_error(req, r == -EACCES ? 400 : 500, r == -EACCES ? "Bad Request" : "Internal Server Error",
                             msg);
        return;
    }
    p2p_log(hr->ctx, P2P_LOG_INFO, "security", "token revoked by %s%s", id->subject,
            forwarded ? " (made on that node)" : "");
}

static void auth_revoke(p2p_http_req *hr)
{
    revoke_common(hr, 0);
}

static void internal_revoke(p2p_http_req *hr)
{
    if (!p2p__guard_can_sign(p2p__guard(hr->ctx))) {
        p2p__http_send_error(hr->req, 404, "Not Found", "only the coordinator keeps the cluster's deny list");
        return;
    }
    revoke_common(hr, 1);
}

static void revocations(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    const p2p_identity *id = hr->caller;
    if (!p2p__guard_can_sign(p2p__guard(hr->ctx))) {
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
    json_t *doc = p2p__revsync_serve(hr->ctx, since, id->peer_node);
    p2p__http_send_json(req, 200, "OK", doc);
    json_decref(doc);
}

/* ---- registration ------------------------------------------------------------------ */

static int add_all(p2p_ctx *ctx, const p2p_http_route_desc *d, size_t n, const char *owner)
{
    for (size_t i = 0; i < n; i++) {
        int r = p2p__http_route_add(ctx, &d[i]);
        if (r != 0) {
            p2p__http_routes_remove_owner(ctx, owner);
            return r;
        }
    }
    return 0;
}

int p2p__auth_http_start(p2p_ctx *ctx, p2p_guard *g)
{
    static const p2p_http_route_desc routes[] = {
        {"POST", "/auth/token", P2P_HTTP_EXACT, P2P_HTTP_SELF, P2P_RL_OTHER, "security", auth_token, NULL},
        {"GET", "/internal/jwt-keys", P2P_HTTP_EXACT, P2P_HTTP_NODE, P2P_RL_OTHER, "security", jwt_keys, NULL},
    };
    int r = add_all(ctx, routes, sizeof routes / sizeof routes[0], "security");
    if (r == 0)
        p2p__http_set_admission(ctx, admit, g, sizeof(p2p_identity));
    return r;
}

void p2p__auth_http_stop(p2p_ctx *ctx)
{
    p2p__http_set_admission(ctx, NULL, NULL, 0);
    p2p__http_routes_remove_owner(ctx, "security");
}

int p2p__revsync_http_start(p2p_ctx *ctx)
{
    static const p2p_http_route_desc routes[] = {
        {"POST", "/auth/revoke", P2P_HTTP_EXACT, P2P_HTTP_ADMIN, P2P_RL_OTHER, "revsync", auth_revoke, NULL},
        {"POST", "/internal/revoke", P2P_HTTP_EXACT, P2P_HTTP_NODE, P2P_RL_OTHER, "revsync", internal_revoke,
         NULL},
        {"GET", "/internal/revocations", P2P_HTTP_EXACT, P2P_HTTP_NODE, P2P_RL_OTHER, "revsync", revocations,
         NULL},
    };
    return add_all(ctx, routes, sizeof routes / sizeof routes[0], "revsync");
}

void p2p__revsync_http_stop(p2p_ctx *ctx)
{
    p2p__http_routes_remove_owner(ctx, "revsync");
}
