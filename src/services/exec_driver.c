/*
 * exec_driver.c — the driver for exec services: an external program per
 * loaded version, supervised by exec.c, spoken to in newline-delimited
 * JSON-RPC (the protocol is written down in exec.h and docs/services.md).
 *
 * What this file adds to exec.c is the node's side of the conversation:
 *   calls      "<service>/<method>" from anywhere become requests to the
 *              process; its answers, errors and timeouts become the caller's;
 *   requests   what a service may ask of the node: "call" (any method, local,
 *              on a node, a role or all nodes), "state.get" / "state.save"
 *              (its persisted state, as native services have);
 *   notices    "health" {status, message} and "metric" {type, name, value}
 *              feed the same health and metrics as the native host API;
 *              "log" lines and stderr go to the node's log under its name.
 * Start succeeds once the process answered initialize; a process that keeps
 * failing makes the start fail (or, later, the service FAILED).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "services/exec.h"
#include "services/internal.h"

typedef struct exec_inst {
    p2p_exec_proc *proc;
    svc_done_fn start_done, stop_done;
    int started; /* reached RUNNING once */
    uint32_t restarts_seen;
} exec_inst;

static exec_inst *X(p2p_svc *inst)
{
    return inst->exec;
}

static p2p_log_level log_level(p2p_exec_log_level l)
{
    switch (l) {
    case P2P_EXEC_LOG_DEBUG: return P2P_LOG_DEBUG;
    case P2P_EXEC_LOG_INFO: return P2P_LOG_INFO;
    case P2P_EXEC_LOG_WARNING: return P2P_LOG_WARN;
    default: return P2P_LOG_ERROR;
    }
}

static void on_log(p2p_exec_proc *proc, p2p_exec_log_level level, p2p_exec_log_source src, const char *message,
                   void *udata)
{
    (void)proc;
    p2p_svc *inst = udata;
    /* the line is the service's own: no file/line of ours, its name as the service */
    p2p__log_meta(inst->ctx, log_level(level), inst->man.name, NULL, NULL, 0, inst->man.name, NULL, "%s%s%s",
                  level == P2P_EXEC_LOG_CRITICAL ? "critical: " : "", src == P2P_EXEC_FROM_STDERR ? "stderr: " : "",
                  message);
}

static void on_state(p2p_exec_proc *proc, const p2p_exec_status *st, void *udata)
{
    (void)proc;
    p2p_svc *inst = udata;
    exec_inst *x = X(inst);
    int restarted = st->restarts > x->restarts_seen ? (int)(st->restarts - x->restarts_seen) : 0;
    x->restarts_seen = st->restarts;
    switch (st->state) {
    case P2P_EXEC_RUNNING:
        if (!x->started) {
            x->started = 1;
            if (x->start_done) {
                svc_done_fn d = x->start_done;
                x->start_done = NULL;
                d(inst, 0, NULL);
            }
        } else {
            p2p__svc_instance_event(inst, SVC_RUNNING, NULL, restarted);
        }
        break;
    case P2P_EXEC_RESTARTING:
        if (x->started)
            p2p__svc_instance_event(inst, SVC_STARTING, st->reason, restarted);
        break;
    case P2P_EXEC_FAILED:
        if (x->start_done) {
            svc_done_fn d = x->start_done;
            x->start_done = NULL;
            d(inst, -EIO, st->reason && *st->reason ? st->reason : "the process failed");
        } else {
            p2p__svc_instance_event(inst, SVC_FAILED, st->reason, restarted);
        }
        /* a stop asked meanwhile is done: nothing runs */
        if (x->stop_done) {
            svc_done_fn d = x->stop_done;
            x->stop_done = NULL;
            d(inst, 0, NULL);
        }
        break;
    case P2P_EXEC_STOPPED:
        if (x->stop_done) {
            svc_done_fn d = x->stop_done;
            x->stop_done = NULL;
            d(inst, 0, NULL);
        }
        break;
    default:
        if (restarted)
            p2p__svc_instance_event(inst, SVC_STARTING, NULL, restarted);
        break;
    }
}

/* ---- requests from the service ------------------------------------------------- */

typedef struct remote_req {
    p2p_svc *inst;
    p2p_exec_proc *proc;
    uint64_t token;
    int fanout;
} remote_req;

static void remote_done(p2p_ctx *ctx, json_t *results, void *udata)
{
    (void)ctx;
    remote_req *r = udata;
    /* the instance outlives its requests: it is freed only once quiet, and a
     * request in flight counts as work (see the works counter below) */
    r->inst->works--;
    if (!r->fanout) {
        json_t *err = json_object_get(results, "error");
        if (err)
            p2p__exec_reply_error(r->proc, r->token, (int)json_integer_value(json_object_get(err, "code")),
                                  json_string_value(json_object_get(err, "message")));
        else
            p2p__exec_reply(r->proc, r->token, json_object_get(results, "result"));
    } else {
        p2p__exec_reply(r->proc, r->token, results);
    }
    p2p_svc *inst = r->inst;
    free(r);
    p2p__svc_instance_maybe_free(inst);
}

static void req_call(p2p_svc *inst, p2p_exec_proc *proc, json_t *params, uint64_t token)
{
    const char *method = json_string_value(json_object_get(params, "method"));
    json_t *target = json_object_get(params, "target");
    json_t *args = json_object_get(params, "params");
    json_t *timeout = json_object_get(params, "timeout_ms");
    if (!json_is_object(params) || !method || (target && !json_is_string(target)) ||
        (args && !json_is_object(args) && !json_is_array(args)) ||
        (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 1 ||
                     json_integer_value(timeout) > 600000))) {
        p2p__exec_reply_error(proc, token, P2P_RPC_INVALID_PARAMS,
                              "call needs {\"method\": \"service/name\", \"params\"?: object|array, \"target\"?: "
                              "\"local\"|node id|\"role:R\"|\"all\"|\"all:R\", \"timeout_ms\"?: 1..600000}");
        return;
    }
    const char *t = target ? json_string_value(target) : "local";
    remote_req *r = p2p__xcalloc(1, sizeof(*r));
    r->inst = inst;
    r->proc = proc;
    r->token = token;
    r->fanout = strcmp(t, "all") == 0 || strncmp(t, "all:", 4) == 0;
    inst->works++;
    int rc = p2p_call_remote(inst->ctx, t, method, args, timeout ? (uint32_t)json_integer_value(timeout) : 0,
                             remote_done, r);
    if (rc != 0) {
        inst->works--;
        free(r);
        p2p__exec_reply_error(proc, token, P2P_RPC_INVALID_PARAMS, "bad target or method");
    }
}

typedef struct cache_req {
    p2p_exec_proc *proc;
    uint64_t token;
} cache_req;

static void cache_got(p2p_svc *svc, int status, const void *value, size_t len, void *udata)
{
    (void)svc;
    cache_req *r = udata;
    json_t *v = status == 0 ? json_loadb(value, len, JSON_DECODE_ANY, NULL) : NULL;
    if (status == 0 && v) {
        json_t *res = json_pack("{s:b, s:o}", "found", 1, "value", v);
        p2p__exec_reply(r->proc, r->token, res);
        json_decref(res);
    } else if (status == 0 || status == -ENOENT) {
        json_t *res = json_pack("{s:b}", "found", 0);
        p2p__exec_reply(r->proc, r->token, res);
        json_decref(res);
    } else {
        p2p__exec_reply_error(r->proc, r->token, -32000, p2p_strerror(status));
    }
    free(r);
}

/* cache.get {key} -> {found, value?}; cache.set {key, value, ttl_ms?};
 * cache.delete {key}: values are any JSON, stored as its text. */
static void req_cache(p2p_svc *inst, p2p_exec_proc *proc, const char *op, json_t *params, uint64_t token)
{
    const char *key = json_string_value(json_object_get(params, "key"));
    json_t *ttl = json_object_get(params, "ttl_ms");
    if (!key || (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 0))) {
        p2p__exec_reply_error(proc, token, P2P_RPC_INVALID_PARAMS,
                              "cache.get/delete need {\"key\": string}; cache.set {\"key\", \"value\", \"ttl_ms\"?}");
        return;
    }
    int r;
    if (strcmp(op, "get") == 0) {
        cache_req *c = p2p__xcalloc(1, sizeof(*c));
        c->proc = proc;
        c->token = token;
        r = p2p_svc_cache_get(inst, key, cache_got, c);
        if (r != 0)
            free(c);
        else
            return;
    } else if (strcmp(op, "set") == 0) {
        json_t *v = json_object_get(params, "value");
        char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        r = text ? p2p_svc_cache_set(inst, key, text, strlen(text), ttl ? (uint64_t)json_integer_value(ttl) : 0)
                 : -EINVAL;
        free(text);
    } else {
        r = p2p_svc_cache_del(inst, key);
    }
    if (r == 0)
        p2p__exec_reply(proc, token, json_true());
    else
        p2p__exec_reply_error(proc, token, r == -EINVAL || r == -E2BIG ? P2P_RPC_INVALID_PARAMS : -32000,
                              p2p_strerror(r));
}

static void on_request(p2p_exec_proc *proc, const char *method, json_t *params, uint64_t token, void *udata)
{
    p2p_svc *inst = udata;
    if (strncmp(method, "cache.", 6) == 0 &&
        (!strcmp(method + 6, "get") || !strcmp(method + 6, "set") || !strcmp(method + 6, "delete"))) {
        req_cache(inst, proc, method + 6, params, token);
    } else if (strcmp(method, "call") == 0) {
        req_call(inst, proc, params, token);
    } else if (strcmp(method, "secret.get") == 0 || strcmp(method, "secret.set") == 0) {
        const char *name = json_string_value(json_object_get(params, "name"));
        json_t *val = json_object_get(params, "value");
        int set = method[7] == 's';
        if (!name || (set && !json_is_string(val))) {
            p2p__exec_reply_error(proc, token, P2P_RPC_INVALID_PARAMS,
                                  "secret.get needs {\"name\"}; secret.set {\"name\", \"value\": string}");
            return;
        }
        if (set) {
            int r = p2p_svc_secret_set(inst, name, json_string_value(val), json_string_length(val));
            if (r == 0)
                p2p__exec_reply(proc, token, json_true());
            else
                p2p__exec_reply_error(proc, token, r == -EINVAL ? P2P_RPC_INVALID_PARAMS : -32000, p2p_strerror(r));
            return;
        }
        char *v = NULL;
        size_t len = 0;
        int r = p2p_svc_secret_get(inst, name, &v, &len);
        json_t *res = r == 0 ? json_pack("{s:b, s:s%}", "found", 1, "value", v, len)
                             : r == -ENOENT ? json_pack("{s:b}", "found", 0) : NULL;
        if (r == 0)
            p2p_svc_secret_free(v, len);
        if (res)
            p2p__exec_reply(proc, token, res);
        else
            p2p__exec_reply_error(proc, token, r == -EINVAL ? P2P_RPC_INVALID_PARAMS : -32000,
                                  r == 0 ? "the secret is not valid UTF-8" : p2p_strerror(r));
        json_decref(res);
    } else if (strcmp(method, "state.get") == 0) {
        p2p__exec_reply(proc, token, p2p_svc_state(inst));
    } else if (strcmp(method, "state.save") == 0) {
        json_t *doc = json_is_object(params) ? json_object_get(params, "state") : NULL;
        if (!json_is_object(doc) || p2p_svc_state_save(inst, doc) != 0)
            p2p__exec_reply_error(proc, token, P2P_RPC_INVALID_PARAMS, "state.save needs {\"state\": object}");
        else
            p2p__exec_reply(proc, token, json_true());
    } else {
        char *msg = p2p__xasprintf("the node has no method '%s' for services (call, state.get, state.save, cache.get, cache.set, "
                                   "cache.delete, secret.get, secret.set)", method);
        p2p__exec_reply_error(proc, token, P2P_RPC_METHOD_NOT_FOUND, msg);
        free(msg);
    }
}

static void on_notify(p2p_exec_proc *proc, const char *method, json_t *params, void *udata)
{
    (void)proc;
    p2p_svc *inst = udata;
    if (strcmp(method, "health") == 0) {
        const char *st = json_string_value(json_object_get(params, "status"));
        const char *msg = json_string_value(json_object_get(params, "message"));
        p2p_health h = st && strcmp(st, "critical") == 0  ? P2P_HEALTH_CRITICAL
                       : st && strcmp(st, "warning") == 0 ? P2P_HEALTH_WARNING
                                                          : P2P_HEALTH_OK;
        p2p_svc_health(inst, h, msg);
    } else if (strcmp(method, "metric") == 0) {
        const char *type = json_string_value(json_object_get(params, "type"));
        const char *name = json_string_value(json_object_get(params, "name"));
        json_t *v = json_object_get(params, "value");
        int r = -EINVAL;
        if (type && name && json_is_number(v)) {
            double d = json_number_value(v);
            r = strcmp(type, "counter") == 0     ? p2p_svc_counter_add(inst, name, d)
                : strcmp(type, "gauge") == 0     ? p2p_svc_gauge_set(inst, name, d)
                : strcmp(type, "histogram") == 0 ? p2p_svc_observe(inst, name, d)
                                                 : -EINVAL;
        }
        if (r != 0)
            p2p_log(inst->ctx, P2P_LOG_WARN, inst->man.name,
                    "metric notification refused: needs {\"type\": counter|gauge|histogram, \"name\": [a-z_][a-z0-9_]*, "
                    "\"value\": number}");
    } else {
        p2p_log(inst->ctx, P2P_LOG_DEBUG, inst->man.name, "notification '%s' ignored", method);
    }
}

/* ---- the driver ------------------------------------------------------------------- */

static void exec_load(p2p_svc *inst, svc_done_fn done)
{
    exec_inst *x = p2p__xcalloc(1, sizeof(*x));
    inst->exec = x;
    p2p_exec_opts o;
    p2p__exec_opts_from_manifest(&o, &inst->man, inst->entry->dir, p2p_node_id(inst->ctx));
    o.cb.on_state = on_state;
    o.cb.on_log = on_log;
    o.cb.on_request = on_request;
    o.cb.on_notify = on_notify;
    o.udata = inst;
    const char *why = NULL;
    int r = p2p__exec_new(inst->ctx->loop, &o, &x->proc, &why);
    if (r != 0) {
        done(inst, r, why ? why : "cannot prepare the process");
        return;
    }
    done(inst, 0, NULL);
}

static void exec_start(p2p_svc *inst, svc_done_fn done)
{
    exec_inst *x = X(inst);
    x->start_done = done;
    int r = p2p__exec_start(x->proc);
    if (r != 0 && x->start_done) {
        x->start_done = NULL;
        done(inst, r, "cannot start the process");
    }
}

typedef struct exec_call {
    p2p_call *call;
} exec_call;

static void call_answered(p2p_exec_proc *proc, int status, json_t *result, const char *message, void *udata)
{
    (void)proc;
    p2p_call *call = udata;
    if (status == 0) {
        p2p_call_reply(call, json_incref(result));
    } else if (status == P2P_EXEC_SERVICE_ERROR) {
        json_t *data = json_object_get(result, "data");
        p2p_call_error(call, (int)json_integer_value(json_object_get(result, "code")), message,
                       data ? json_incref(data) : NULL);
    } else if (status == -ETIMEDOUT) {
        p2p_call_error(call, P2P_RPC_E_TIMEOUT, message ? message : "the service did not answer in time", NULL);
    } else {
        p2p_call_error(call, P2P_RPC_E_SERVICE_DOWN, message ? message : "the service is not available", NULL);
    }
}

static void exec_call_method(p2p_svc *inst, p2p_call *call, const char *method, json_t *params)
{
    const char *why = NULL;
    int r = p2p__exec_call(X(inst)->proc, method, params, 0, call_answered, call, &why);
    if (r == 0)
        return;
    char *msg = p2p__xasprintf("%s/%s: %s", inst->man.name, method,
                               r == -ENOTCONN ? "the service's process is restarting or stopped"
                               : why          ? why
                                              : p2p_strerror(r));
    p2p_call_error(call, r == -EINVAL ? P2P_RPC_INVALID_PARAMS : P2P_RPC_E_SERVICE_DOWN, msg, NULL);
    free(msg);
}

static void exec_stop(p2p_svc *inst, svc_done_fn done)
{
    exec_inst *x = X(inst);
    if (!x || !x->proc) {
        done(inst, 0, NULL);
        return;
    }
    x->start_done = NULL; /* a start still in progress is given up */
    p2p_exec_state s = p2p__exec_state_get(x->proc);
    if (s == P2P_EXEC_STOPPED || s == P2P_EXEC_FAILED) {
        done(inst, 0, NULL);
        return;
    }
    x->stop_done = done;
    p2p__exec_stop(x->proc);
    if (x->stop_done && p2p__exec_state_get(x->proc) == P2P_EXEC_STOPPED) {
        x->stop_done = NULL;
        done(inst, 0, NULL);
    }
}

static void exec_destroy(p2p_svc *inst)
{
    exec_inst *x = X(inst);
    if (!x)
        return;
    x->start_done = x->stop_done = NULL;
    p2p__exec_free(x->proc); /* no callback after it returns */
    free(x);
    inst->exec = NULL;
}

const svc_driver p2p__svc_exec_driver = {
    .name = "exec",
    .load = exec_load,
    .start = exec_start,
    .call = exec_call_method,
    .stop = exec_stop,
    .destroy = exec_destroy,
};
