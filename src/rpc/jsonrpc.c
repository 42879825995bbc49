/*
 * jsonrpc.c — JSON-RPC 2.0 decoding and execution.
 *
 * Decoding is pure so it can be unit-tested and fuzzed on its own. Execution
 * keeps one exchange per HTTP request: every call of a batch gets a slot, calls
 * may complete synchronously or later (asynchronous methods), and the response
 * is assembled in request order once the last one completes. The exchange holds
 * one extra reference while it dispatches, so a call completing synchronously
 * can never finish the exchange under the dispatch loop's feet.
 */
#include "rpc/jsonrpc.h"

#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/ctx.h"
#include "core/util.h"
#include "rpc/registry.h"

static void set_msg_error(jsonrpc_msg *m, int code, const char *fmt, const char *detail)
{
    m->error = code;
    snprintf(m->error_msg, sizeof(m->error_msg), fmt, detail ? detail : "");
}

static void decode_item(json_t *req, jsonrpc_item *it)
{
    memset(it, 0, sizeof(*it));
    it->notification = 1;
    if (!json_is_object(req)) {
        it->notification = 0; /* an invalid request is answered, with a null id */
        it->error = P2P_RPC_INVALID_REQUEST;
        it->error_msg = "Invalid Request: a request must be a JSON object";
        return;
    }
    json_t *id = json_object_get(req, "id");
    if (id) {
        it->notification = 0;
        if (json_is_string(id) || json_is_number(id) || json_is_null(id)) {
            it->id = id;
        } else {
            it->error = P2P_RPC_INVALID_REQUEST;
            it->error_msg = "Invalid Request: id must be a string, a number or null";
            return;
        }
    }
    json_t *ver = json_object_get(req, "jsonrpc");
    if (ver && !(json_is_string(ver) && strcmp(json_string_value(ver), "2.0") == 0)) {
        it->notification = 0;
        it->error = P2P_RPC_INVALID_REQUEST;
        it->error_msg = "Invalid Request: jsonrpc must be \"2.0\"";
        return;
    }
    json_t *method = json_object_get(req, "method");
    if (!json_is_string(method)) {
        it->notification = 0;
        it->error = P2P_RPC_INVALID_REQUEST;
        it->error_msg = "Invalid Request: method must be a string";
        return;
    }
    it->method = json_string_value(method);
    json_t *params = json_object_get(req, "params");
    if (params && !json_is_object(params) && !json_is_array(params)) {
        if (json_is_null(params) && !ver) {
            params = NULL; /* the original's clients send "params": null */
        } else {
            it->notification = 0;
            it->error = P2P_RPC_INVALID_REQUEST;
            it->error_msg = "Invalid Request: params must be an object or an array";
            return;
        }
    }
    it->params = params;
}

int jsonrpc_decode(const char *buf, size_t len, jsonrpc_msg *out)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    out->root = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
    if (!out->root) {
        set_msg_error(out, P2P_RPC_PARSE_ERROR, "Parse error: %s", jerr.text);
        return out->error;
    }
    if (json_is_array(out->root)) {
        out->is_batch = 1;
        size_t n = json_array_size(out->root);
        if (n == 0) {
            set_msg_error(out, P2P_RPC_INVALID_REQUEST, "Invalid Request: empty batch%s", NULL);
            return out->error;
        }
        if (n > JSONRPC_MAX_BATCH) {
            set_msg_error(out, P2P_RPC_INVALID_REQUEST, "Invalid Request: batch larger than %s requests",
                          "1000");
            return out->error;
        }
        out->items = p2p__xcalloc(n, sizeof(*out->items));
        out->n = n;
        for (size_t i = 0; i < n; i++)
            decode_item(json_array_get(out->root, i), &out->items[i]);
        return 0;
    }
    if (!json_is_object(out->root)) {
        set_msg_error(out, P2P_RPC_INVALID_REQUEST, "Invalid Request: expected an object or an array%s", NULL);
        return out->error;
    }
    out->items = p2p__xcalloc(1, sizeof(*out->items));
    out->n = 1;
    decode_item(out->root, &out->items[0]);
    return 0;
}

void jsonrpc_msg_free(jsonrpc_msg *m)
{
    json_decref(m->root);
    free(m->items);
    memset(m, 0, sizeof(*m));
}

json_t *jsonrpc_error_response(json_t *id, int code, const char *message, json_t *data)
{
    json_t *err = json_pack("{s:i, s:s}", "code", code, "message", message ? message : "");
    if (data)
        json_object_set_new(err, "data", data);
    return json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "error", err, "id", id ? id : json_null());
}

/* ---- execution ------------------------------------------------------------ */

typedef struct jsonrpc_exchange jsonrpc_exchange;

struct p2p_call {
    p2p_ctx *ctx;
    jsonrpc_exchange *ex;
    p2p_method *method;
    uint64_t t0_ns;
    int done;
    void (*on_done)(void *arg); /* p2p__call_on_done: runs once the call completed */
    void *on_done_arg;
    char request_id[96]; /* "<node id>-<n>": the request_id of the lines logged while handling it */
};

struct jsonrpc_exchange {
    p2p_ctx *ctx;
    jsonrpc_msg msg;
    json_t **responses; /* one per item; NULL for notifications */
    p2p_call *calls;
    size_t pending; /* calls not yet completed, +1 while dispatching */
    jsonrpc_done_cb cb;
    void *arg;
    char *authz; /* the operator's Authorization value, or NULL */
    int node;    /* sent by another node's certificate */
    char *node_id; /* p2p__call_node_id */
    int coordinator; /* jsonrpc_caller.coordinator */
};

size_t jsonrpc_inflight(const p2p_ctx *ctx)
{
    return ctx->registry->inflight;
}

static void exchange_finish(jsonrpc_exchange *ex)
{
    json_t *out = NULL;
    if (ex->msg.is_batch) {
        out = json_array();
        for (size_t i = 0; i < ex->msg.n; i++)
            if (ex->responses[i])
                json_array_append_new(out, ex->responses[i]);
        if (json_array_size(out) == 0) {
            json_decref(out);
            out = NULL;
        }
    } else {
        out = ex->responses[0];
    }
    jsonrpc_done_cb cb = ex->cb;
    void *arg = ex->arg;
    jsonrpc_msg_free(&ex->msg);
    if (ex->authz) {
        OPENSSL_cleanse(ex->authz, strlen(ex->authz));
        free(ex->authz);
    }
    free(ex->node_id);
    free(ex->responses);
    free(ex->calls);
    free(ex);
    cb(out, arg);
}

static void exchange_release(jsonrpc_exchange *ex)
{
    if (--ex->pending == 0)
        exchange_finish(ex);
}

static void call_complete(p2p_call *call, json_t *response, int is_error)
{
    if (call->done) {
        p2p_log(call->ctx, P2P_LOG_ERROR, "rpc", "method %s completed a call twice; ignored",
                call->method ? call->method->path : "?");
        json_decref(response);
        return;
    }
    call->done = 1;
    jsonrpc_exchange *ex = call->ex;
    size_t idx = (size_t)(call - ex->calls);
    if (call->method) {
        uint64_t dur_us = (uv_hrtime() - call->t0_ns) / 1000u;
        p2p__method_stats_record(&call->method->stats, dur_us, is_error);
        call->ctx->registry->inflight--;
    }
    if (call->on_done) {
        void (*fn)(void *) = call->on_done;
        call->on_done = NULL;
        fn(call->on_done_arg);
    }
    if (ex->msg.items[idx].notification) {
        json_decref(response);
    } else {
        ex->responses[idx] = response;
    }
    exchange_release(ex);
}

P2P_EXTERN void p2p_call_reply(p2p_call *call, json_t *result)
{
    jsonrpc_item *it = &call->ex->msg.items[call - call->ex->calls];
    json_t *resp = json_pack("{s:s, s:o, s:O}", "jsonrpc", "2.0", "result", result ? result : json_null(), "id",
                             it->id ? it->id : json_null());
    call_complete(call, resp, 0);
}

P2P_EXTERN void p2p_call_error(p2p_call *call, int code, const char *message, json_t *data)
{
    jsonrpc_item *it = &call->ex->msg.items[call - call->ex->calls];
    call_complete(call, jsonrpc_error_response(it->id, code, message, data), 1);
}

void p2p__call_on_done(p2p_call *call, void (*fn)(void *arg), void *arg)
{
    call->on_done = fn;
    call->on_done_arg = arg;
}

P2P_EXTERN p2p_ctx *p2p_call_ctx(const p2p_call *call)
{
    return call->ctx;
}

P2P_EXTERN const char *p2p_call_method(const p2p_call *call)
{
    return call->method ? call->method->path : "";
}

const char *p2p__call_authz(const p2p_call *call)
{
    return call->ex->authz;
}

int p2p__call_from_node(const p2p_call *call)
{
    return call->ex->node;
}

const char *p2p__call_node_id(const p2p_call *call)
{
    return call->ex->node_id;
}

const char *p2p__call_request_id(const p2p_call *call)
{
    return call->request_id;
}

void jsonrpc_execute(p2p_ctx *ctx, jsonrpc_msg *msg, jsonrpc_done_cb cb, void *arg)
{
    jsonrpc_execute_as(ctx, msg, NULL, cb, arg);
}

void jsonrpc_execute_as(p2p_ctx *ctx, jsonrpc_msg *msg, const jsonrpc_caller *caller, jsonrpc_done_cb cb,
                        void *arg)
{
    if (msg->error) {
        json_t *resp = jsonrpc_error_response(NULL, msg->error, msg->error_msg, NULL);
        jsonrpc_msg_free(msg);
        cb(resp, arg);
        return;
    }
    jsonrpc_exchange *ex = p2p__xcalloc(1, sizeof(*ex));
    ex->ctx = ctx;
    ex->msg = *msg;
    memset(msg, 0, sizeof(*msg));
    ex->responses = p2p__xcalloc(ex->msg.n, sizeof(*ex->responses));
    ex->calls = p2p__xcalloc(ex->msg.n, sizeof(*ex->calls));
    ex->cb = cb;
    ex->arg = arg;
    if (caller) {
        ex->authz = caller->authz ? p2p__xstrdup(caller->authz) : NULL;
        ex->node = caller->node;
        ex->node_id = caller->node_id ? p2p__xstrdup(caller->node_id) : NULL;
        ex->coordinator = caller->node && caller->coordinator && caller->node_id;
    } else {
        ex->node_id = p2p__xstrdup(ctx->cfg.node_id); /* in process: this node itself */
    }
    ex->pending = ex->msg.n + 1;
    for (size_t i = 0; i < ex->msg.n; i++) {
        jsonrpc_item *it = &ex->msg.items[i];
        p2p_call *call = &ex->calls[i];
        call->ctx = ctx;
        call->ex = ex;
        if (it->error) {
            call_complete(call, jsonrpc_error_response(it->id, it->error, it->error_msg, NULL), 1);
            continue;
        }
        p2p_method *m = p2p__registry_find(ctx->registry, it->method, strlen(it->method));
        if (!m) {
            char *text = p2p__xasprintf("Method not found: %s", it->method);
            p2p_call_error(call, P2P_RPC_METHOD_NOT_FOUND, text, NULL);
            free(text);
            continue;
        }
        if (ex->node && (m->flags & P2P_METHOD_ADMIN) &&
            !(ex->coordinator && (m->flags & P2P_METHOD_COORDINATOR))) {
            char *text = p2p__xasprintf("Forbidden: a node identity may not call %s", m->path);
            p2p_call_error(call, P2P_RPC_E_FORBIDDEN, text, NULL);
            free(text);
            continue;
        }
        call->method = m;
        call->t0_ns = uv_hrtime();
        ctx->registry->inflight++;
        /* lines the method logs while it runs (on this thread) carry the call's request id */
        snprintf(call->request_id, sizeof call->request_id, "%s-%llu", ctx->cfg.node_id ? ctx->cfg.node_id : "node",
                 (unsigned long long)++ctx->registry->calls_seen);
        const char *outer = p2p__log_request_swap(call->request_id);
        m->fn(call, it->params, m->udata);
        p2p__log_request_swap(outer);
    }
    exchange_release(ex);
}
