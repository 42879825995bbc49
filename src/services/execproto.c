/*
 * execproto.c — newline-delimited JSON-RPC between a node and an exec service
 * (see execproto.h).
 *
 * The line buffer keeps only the unfinished tail of the stream: complete lines
 * are handed out straight from the caller's read buffer when they do not start
 * in the tail, so a service writing many small messages costs no copies. The
 * message checks are strict because the other side is a program we did not
 * write: a shape we did not define is refused, never guessed at.
 */
#include "services/execproto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void p2p__linebuf_init(p2p_linebuf *lb, size_t max_line)
{
    memset(lb, 0, sizeof(*lb));
    lb->max_line = max_line ? max_line : P2P_EXEC_DEFAULT_MAX_LINE;
}

void p2p__linebuf_free(p2p_linebuf *lb)
{
    free(lb->buf);
    memset(lb, 0, sizeof(*lb));
}

size_t p2p__linebuf_pending(const p2p_linebuf *lb)
{
    return lb->len;
}

static int emit(const char *line, size_t len, p2p_line_fn fn, void *arg)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return 0;
    return fn(line, len, arg);
}

int p2p__linebuf_feed(p2p_linebuf *lb, const char *data, size_t n, p2p_line_fn fn, void *arg)
{
    if (lb->overflow)
        return -EMSGSIZE;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (lb->len + take > lb->max_line) { /* the line ("\r" included) is too long */
            lb->overflow = 1;
            free(lb->buf);
            lb->buf = NULL;
            lb->len = lb->cap = 0;
            return -EMSGSIZE;
        }
        if (!nl) {
            if (lb->len + take > lb->cap) {
                size_t cap = lb->cap ? lb->cap : 256;
                while (cap < lb->len + take)
                    cap *= 2;
                if (cap > lb->max_line)
                    cap = lb->max_line;
                lb->buf = p2p__xrealloc(lb->buf, cap);
                lb->cap = cap;
            }
            memcpy(lb->buf + lb->len, data, take);
            lb->len += take;
            return 0;
        }
        int rc;
        if (lb->len == 0) {
            rc = emit(data, take, fn, arg);
        } else {
            if (lb->len + take > lb->cap) {
                lb->buf = p2p__xrealloc(lb->buf, lb->len + take);
                lb->cap = lb->len + take;
            }
            memcpy(lb->buf + lb->len, data, take);
            size_t l = lb->len + take;
            lb->len = 0;
            rc = emit(lb->buf, l, fn, arg);
        }
        data += take + 1;
        n -= take + 1;
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- messages ------------------------------------------------------------------- */

void p2p__exec_msg_free(p2p_exec_msg *m)
{
    if (!m)
        return;
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

static int only_members(json_t *o, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            ok |= strcmp(k, allowed[i]) == 0;
        if (!ok)
            return 0;
    }
    return 1;
}

int p2p__exec_msg_parse(const char *line, size_t len, p2p_exec_msg *out, const char **why)
{
    const char *w = "ok";
    json_error_t je;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    p2p_exec_msg m;
    memset(&m, 0, sizeof m);
    if (!root) {
        w = "not JSON";
        goto bad;
    }
    if (!json_is_object(root)) {
        w = "not a JSON object";
        goto bad;
    }
    json_t *ver = json_object_get(root, "jsonrpc");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
        w = "\"jsonrpc\" must be \"2.0\"";
        goto bad;
    }
    json_t *id = json_object_get(root, "id");
    json_t *method = json_object_get(root, "method");
    if (method) {
        static const char *const allowed[] = {"jsonrpc", "id", "method", "params", NULL};
        if (!only_members(root, allowed)) {
            w = "unknown member in a request";
            goto bad;
        }
        if (!json_is_string(method) || json_string_length(method) == 0 ||
            json_string_length(method) > P2P_EXEC_MAX_METHOD) {
            w = "\"method\" must be a non-empty string of at most 256 bytes";
            goto bad;
        }
        json_t *params = json_object_get(root, "params");
        if (params && !json_is_object(params) && !json_is_array(params)) {
            w = "\"params\" must be an object or an array";
            goto bad;
        }
        if (id && !json_is_string(id) && !json_is_integer(id)) {
            w = "\"id\" must be a string or an integer";
            goto bad;
        }
        m.kind = id ? P2P_EXEC_REQUEST : P2P_EXEC_NOTIFICATION;
        m.id = id;
        m.method = json_string_value(method);
        m.params = params;
    } else {
        static const char *const allowed[] = {"jsonrpc", "id", "result", "error", NULL};
        if (!only_members(root, allowed)) {
            w = "unknown member in a response";
            goto bad;
        }
        if (!json_is_integer(id) || json_integer_value(id) < 0) {
            w = id ? "a response's \"id\" must be the node's request number" : "neither a request nor a response";
            goto bad;
        }
        json_t *result = json_object_get(root, "result"), *error = json_object_get(root, "error");
        if (!!result == !!error) {
            w = "a response needs exactly one of \"result\" and \"error\"";
            goto bad;
        }
        if (error) {
            static const char *const eallowed[] = {"code", "message", "data", NULL};
            if (!json_is_object(error) || !json_is_integer(json_object_get(error, "code")) ||
                !json_is_string(json_object_get(error, "message")) || !only_members(error, eallowed)) {
                w = "\"error\" must be {\"code\": integer, \"message\": string[, \"data\"]}";
                goto bad;
            }
        }
        m.kind = P2P_EXEC_RESPONSE;
        m.id = id;
        m.num_id = (int64_t)json_integer_value(id);
        m.result = result;
        m.error = error;
    }
    m.root = root;
    *out = m;
    if (why)
        *why = w;
    return 0;
bad:
    json_decref(root);
    if (why)
        *why = w;
    return -EINVAL;
}

char *p2p__exec_encode(const json_t *msg, size_t *len)
{
    char *s = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *out = p2p__xmalloc(n + 2);
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = '\0';
    free(s);
    *len = n + 1;
    return out;
}
