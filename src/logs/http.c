/*
 * http.c — GET/DELETE /api/logs and GET /api/logs/sources (see http.h).
 *
 * The handlers only translate: the query string becomes the method's params
 * and the call runs through the JSON-RPC executor with the caller's identity,
 * so HTTP and RPC share every check and every error message. Errors map to
 * HTTP statuses: invalid params 400, forbidden 403, no collector on this node
 * 404, anything else 500.
 */
#include "logs/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "http/routes.h"
#include "rpc/jsonrpc.h"

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes s[0..n) ('+' is a space). NULL on a bad escape or a NUL. */
static char *url_decode(const char *s, size_t n)
{
    char *out = p2p__xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                return NULL;
            }
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
            if (c == '\0') {
                free(out);
                return NULL;
            }
        }
        *o++ = c;
    }
    *o = '\0';
    return out;
}

static int is_int(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 19 && strspn(s, "0123456789") == n;
}

static int is_number(const char *s)
{
    char *end = NULL;
    if (!*s)
        return 0;
    strtod(s, &end);
    return *end == '\0' && strspn(s, "0123456789.") == strlen(s);
}

json_t *p2p__logs_query_params(const char *q, size_t len)
{
    json_t *p = json_object();
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && q[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(q + i, '=', j - i);
            size_t klen = eq ? (size_t)(eq - (q + i)) : j - i;
            char *k = url_decode(q + i, klen);
            char *v = eq ? url_decode(eq + 1, (size_t)(q + j - eq - 1)) : p2p__xstrdup("");
            if (!k || !v || !*k || json_object_size(p) > 32) {
                free(k);
                free(v);
                json_decref(p);
                return NULL;
            }
            json_t *val;
            if (!strcmp(k, "limit") || !strcmp(k, "offset") || !strcmp(k, "wait_ms"))
                val = is_int(v) ? json_integer(strtoll(v, NULL, 10)) : json_string(v);
            else if (!strcmp(k, "since") || !strcmp(k, "until"))
                val = is_number(v) ? json_real(strtod(v, NULL)) : json_string(v);
            else if (!strcmp(k, "regex"))
                val = !strcmp(v, "true") || !strcmp(v, "1") ? json_true()
                      : !strcmp(v, "false") || !strcmp(v, "0") ? json_false()
                                                               : json_string(v);
            else
                val = json_string(v);
            if (!val) /* not UTF-8 */
                val = json_integer(0), free(k), k = NULL;
            if (k)
                json_object_set_new(p, k, val);
            else
                json_decref(val);
            int bad = k == NULL;
            free(k);
            free(v);
            if (bad) {
                json_decref(p);
                return NULL;
            }
        }
        i = j + 1;
    }
    return p;
}

enum { LOGS_HTTP_GET, LOGS_HTTP_SOURCES, LOGS_HTTP_DELETE };

static void on_done(json_t *response, void *arg)
{
    h2o_req_t *req = p2p__http_later_take(arg);
    if (req) {
        json_t *err = json_object_get(response, "error");
        if (err) {
            json_int_t code = json_integer_value(json_object_get(err, "code"));
            const char *msg = json_string_value(json_object_get(err, "message"));
            int st = code == P2P_RPC_INVALID_PARAMS ? 400 : code == P2P_RPC_E_FORBIDDEN ? 403
                     : code == P2P_RPC_METHOD_NOT_FOUND                                  ? 404
                                                                                         : 500;
            if (st == 404)
                msg = "the log collector runs on the coordinator: ask it";
            p2p__http_send_error(req, st, p2p__http_reason(st), msg ? msg : "error");
        } else {
            p2p__http_send_json(req, 200, "OK", json_object_get(response, "result"));
        }
    }
    json_decref(response);
}

static void serve(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    const p2p_identity *id = hr->caller;
    int kind = (int)(intptr_t)hr->udata;
    const char *method = kind == LOGS_HTTP_GET       ? "log_collector/get_logs"
                         : kind == LOGS_HTTP_SOURCES ? "log_collector/get_log_sources"
                                                     : "log_collector/clear_logs";
    json_t *params;
    if (req->query_at != SIZE_MAX && kind != LOGS_HTTP_SOURCES)
        params = p2p__logs_query_params(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    else
        params = json_object();
    if (!params) {
        p2p__http_send_error(req, 400, "Bad Request", "malformed query string");
        return;
    }
    json_t *call = json_pack("{s:s, s:s, s:o, s:i}", "jsonrpc", "2.0", "method", method, "params", params, "id", 1);
    char *body = json_dumps(call, JSON_COMPACT);
    json_decref(call);
    jsonrpc_msg msg;
    jsonrpc_decode(body, strlen(body), &msg);
    free(body);
    jsonrpc_caller caller = {NULL, id->role == P2P_ROLE_NODE, NULL};
    jsonrpc_execute_as(hr->ctx, &msg, &caller, on_done, p2p__http_later(req));
}

int p2p__logs_http_start(p2p_ctx *ctx)
{
    static const struct {
        const char *method, *path;
        p2p_http_auth auth;
        int kind;
    } r[] = {
        {"GET", "/api/logs", P2P_HTTP_ANY, LOGS_HTTP_GET},
        {"DELETE", "/api/logs", P2P_HTTP_ADMIN, LOGS_HTTP_DELETE},
        {"GET", "/api/logs/sources", P2P_HTTP_ANY, LOGS_HTTP_SOURCES},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        p2p_http_route_desc d = {r[i].method, r[i].path, P2P_HTTP_EXACT, r[i].auth, P2P_RL_OTHER, "log_collector",
                                 serve, (void *)(intptr_t)r[i].kind};
        int rc = p2p__http_route_add(ctx, &d);
        if (rc != 0 && rc != -EEXIST)
            return rc;
    }
    return 0;
}

void p2p__logs_http_stop(p2p_ctx *ctx)
{
    p2p__http_routes_remove_owner(ctx, "log_collector");
}
