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

#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "core/util.h"
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

typedef struct logs_pending {
    h2o_req_t *req;
    struct logs_pending **guard;
} logs_pending;

static void on_dispose(void *p)
{
    logs_pending **slot = p;
    if (*slot)
        (*slot)->req = NULL;
}

static void on_done(json_t *response, void *arg)
{
    logs_pending *pend = arg;
    h2o_req_t *req = pend->req;
    if (req) {
        *pend->guard = NULL;
        json_t *err = json_object_get(response, "error");
        if (err) {
            json_int_t code = json_integer_value(json_object_get(err, "code"));
            const char *msg = json_string_value(json_object_get(err, "message"));
            int st = code == P2P_RPC_INVALID_PARAMS ? 400 : code == P2P_RPC_E_FORBIDDEN ? 403
                     : code == P2P_RPC_METHOD_NOT_FOUND                                  ? 404
                                                                                         : 500;
            if (st == 404)
                msg = "the log collector runs on the coordinator: ask it";
            p2p__http_send_error(req, st, st == 400 ? "Bad Request" : st == 403 ? "Forbidden" : st == 404 ? "Not Found"
                                                                                                        : "Internal Server Error",
                                 msg ? msg : "error");
        } else {
            p2p__http_send_json(req, 200, "OK", json_object_get(response, "result"));
        }
    }
    json_decref(response);
    free(pend);
}

void p2p__logs_http(http_server *srv, h2o_req_t *req, const struct p2p_identity *id, int kind)
{
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
    logs_pending *pend = p2p__xcalloc(1, sizeof(*pend));
    pend->req = req;
    pend->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*pend->guard), on_dispose);
    *pend->guard = pend;
    jsonrpc_caller caller = {NULL, id->role == P2P_ROLE_NODE, NULL};
    jsonrpc_execute_as(srv->ctx, &msg, &caller, on_done, pend);
}
