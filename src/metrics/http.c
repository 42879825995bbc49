/*
 * http.c — /api/dashboard/... (see http.h and docs/dashboard.md).
 *
 * The handlers only translate, as the logs API does: the path and query (or
 * the POST body) become the method's params and the call runs through the
 * JSON-RPC executor with the caller's identity, so HTTP and RPC share every
 * check and message. The operator's Authorization header goes along so that
 * control-service acts on the worker as that operator. Errors map to statuses:
 * invalid params 400, forbidden 403, unknown node 404, a status the method
 * names in its error data (control_service: 404 no such service, 502 the
 * worker failed), else 500.
 */
#include "metrics/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "http/routes.h"
#include "logs/http.h"
#include "rpc/jsonrpc.h"

#define OWNER "metrics_dashboard"

enum { R_METRICS, R_HISTORY, R_STATS, R_SERVICES, R_CERTS, R_CONTROL };

static void on_done(json_t *response, void *arg)
{
    h2o_req_t *req = p2p__http_later_take(arg);
    if (req) {
        json_t *err = json_object_get(response, "error");
        if (err) {
            json_int_t code = json_integer_value(json_object_get(err, "code"));
            const char *msg = json_string_value(json_object_get(err, "message"));
            json_t *named = json_object_get(json_object_get(err, "data"), "status");
            int st = json_is_integer(named)                  ? (int)json_integer_value(named)
                     : code == P2P_RPC_INVALID_PARAMS         ? 400
                     : code == P2P_RPC_E_FORBIDDEN            ? 403
                     : code == P2P_RPC_E_UNKNOWN_NODE         ? 404
                     : code == P2P_RPC_METHOD_NOT_FOUND       ? 404
                                                              : 500;
            if (code == P2P_RPC_METHOD_NOT_FOUND)
                msg = "the dashboard runs on the coordinator: ask it";
            p2p__http_send_error(req, st, p2p__http_reason(st), msg ? msg : "error");
        } else {
            p2p__http_send_json(req, 200, "OK", json_object_get(response, "result"));
        }
    }
    json_decref(response);
}

static const char *authz_of(h2o_req_t *req, const p2p_identity *id)
{
    if (id->role != P2P_ROLE_ADMIN && id->role != P2P_ROLE_VIEWER)
        return NULL;
    ssize_t ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (ai < 0)
        return NULL;
    h2o_iovec_t av = req->headers.entries[ai].value;
    return h2o_strdup(&req->pool, av.base, av.len).base;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* the node id in the path: percent-decoded; NULL when malformed */
static char *path_node(const char *s, size_t n)
{
    if (n == 0 || n > 200)
        return NULL;
    char *out = p2p__xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                return NULL;
            }
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (c == '\0' || c == '/' || c == '?') {
            free(out);
            return NULL;
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

static void serve(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    const p2p_identity *id = hr->caller;
    int kind = (int)(intptr_t)hr->udata;
    static const char *const names[] = {"get_cluster_metrics", "get_metrics_history", "get_stats",
                                        "get_services",        "get_certificates",    "control_service"};
    json_t *params = NULL;
    if (kind == R_HISTORY) {
        size_t rest = hr->rest_len;
        const char *q = memchr(hr->rest, '?', rest);
        if (q)
            rest = (size_t)(q - hr->rest);
        char *node = path_node(hr->rest, rest);
        if (!node) {
            p2p__http_send_error(req, 400, "Bad Request", "GET /api/dashboard/history/{node_id}: bad node id");
            return;
        }
        params = req->query_at != SIZE_MAX
                     ? p2p__logs_query_params(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)
                     : json_object();
        if (!params) {
            free(node);
            p2p__http_send_error(req, 400, "Bad Request", "malformed query string");
            return;
        }
        json_object_set_new(params, "node_id", json_string(node));
        free(node);
    } else if (kind == R_CONTROL) {
        json_error_t je;
        params = json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(params)) {
            json_decref(params);
            p2p__http_send_error(req, 400, "Bad Request",
                                 "the body must be a JSON object {worker_id, service_name, action}");
            return;
        }
    } else {
        if (req->query_at != SIZE_MAX && req->path.len > req->query_at + 1) {
            p2p__http_send_error(req, 400, "Bad Request", "this endpoint takes no query parameters");
            return;
        }
        params = json_object();
    }
    char method[64];
    snprintf(method, sizeof method, "metrics_dashboard/%s", names[kind]);
    json_t *call = json_pack("{s:s, s:s, s:o, s:i}", "jsonrpc", "2.0", "method", method, "params", params, "id", 1);
    char *body = json_dumps(call, JSON_COMPACT);
    json_decref(call);
    jsonrpc_msg msg;
    jsonrpc_decode(body, strlen(body), &msg);
    free(body);
    jsonrpc_caller caller = {authz_of(req, id), id->role == P2P_ROLE_NODE, NULL};
    jsonrpc_execute_as(hr->ctx, &msg, &caller, on_done, p2p__http_later(req));
}

int p2p__dash_http_start(p2p_ctx *ctx)
{
    static const struct {
        const char *method, *path;
        p2p_http_match match;
        p2p_http_auth auth;
        int kind;
    } r[] = {
        {"GET", "/api/dashboard/metrics", P2P_HTTP_EXACT, P2P_HTTP_ANY, R_METRICS},
        {"GET", "/api/dashboard/history/", P2P_HTTP_PREFIX, P2P_HTTP_ANY, R_HISTORY},
        {"GET", "/api/dashboard/stats", P2P_HTTP_EXACT, P2P_HTTP_ANY, R_STATS},
        {"GET", "/api/dashboard/services", P2P_HTTP_EXACT, P2P_HTTP_ANY, R_SERVICES},
        {"GET", "/api/dashboard/certificates", P2P_HTTP_EXACT, P2P_HTTP_ANY, R_CERTS},
        {"POST", "/api/dashboard/control-service", P2P_HTTP_EXACT, P2P_HTTP_ADMIN, R_CONTROL},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        p2p_http_route_desc d = {r[i].method, r[i].path, r[i].match, r[i].auth, P2P_RL_OTHER, OWNER, serve,
                                 (void *)(intptr_t)r[i].kind};
        int rc = p2p__http_route_add(ctx, &d);
        if (rc != 0 && rc != -EEXIST)
            return rc;
    }
    return 0;
}

void p2p__dash_http_stop(p2p_ctx *ctx)
{
    p2p__http_routes_remove_owner(ctx, OWNER);
}
