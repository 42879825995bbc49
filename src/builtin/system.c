/*
 * system.c — the built-in `system` service: host facts, live metrics, the
 * node's services and methods, and ping.
 *
 * CPU % needs two samples of /proc/stat. The original measured it by sleeping
 * one second inside the request, stalling its whole server; here an unref'd
 * loop timer samples every few seconds and requests read the last figure.
 */
#include "builtin/system.h"
#include "builtin/http_api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "builtin/runconfig.h"
#include "builtin/sysinfo.h"
#include "membership/node.h"
#include "rpc/remote.h"
#include "core/util.h"
#include "rpc/registry.h"

#define CPU_SAMPLE_MS 5000
/* get_system_info reads a dozen /proc files, statvfs()s every disk and walks the
 * interfaces: ~100 us. Its facts change on the scale of minutes, so the assembled
 * answer is reused for this long; a busy caller costs one rebuild per second. */
#define INFO_CACHE_MS 1000

typedef struct system_svc {
    p2p_ctx *ctx;
    json_t *info_cache;        /* last get_system_info answer, shared read-only */
    uint64_t info_cached_at;   /* uv_now() when it was built */
    sysinfo_cpu_sampler cpu;
    uv_timer_t timer;
    int timer_open;
} system_svc;

/* Checks that `params` only holds the named keys (object form) or at most
 * `max_positional` items (array form). Answers -32602 and returns -1 otherwise. */
static int check_params(p2p_call *call, json_t *params, const char *const *allowed, size_t max_positional)
{
    if (!params)
        return 0;
    if (json_is_array(params)) {
        if (json_array_size(params) <= max_positional)
            return 0;
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: too many positional parameters", NULL);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(params, key, val)
    {
        int ok = 0;
        for (const char *const *a = allowed; a && *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok) {
            char *msg = p2p__xasprintf("Invalid params: unexpected parameter '%s'", key);
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
            free(msg);
            return -1;
        }
    }
    return 0;
}

/* The value of a named or first positional parameter, or NULL. */
static json_t *param(json_t *params, const char *name, size_t pos)
{
    if (json_is_object(params))
        return json_object_get(params, name);
    if (json_is_array(params))
        return json_array_get(params, pos);
    return NULL;
}

static void m_ping(p2p_call *call, json_t *params, void *udata)
{
    system_svc *svc = udata;
    static const char *const allowed[] = {"message", NULL};
    if (check_params(call, params, allowed, 1))
        return;
    json_t *msg = param(params, "message", 0);
    if (msg && !json_is_string(msg)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: message must be a string", NULL);
        return;
    }
    json_t *res = json_pack("{s:b, s:s, s:f}", "pong", 1, "node_id", p2p_node_id(svc->ctx), "time",
                            (double)p2p__wall_ms() / 1000.0);
    if (msg)
        json_object_set(res, "message", msg);
    p2p_call_reply(call, res);
}

static void m_get_system_info(p2p_call *call, json_t *params, void *udata)
{
    system_svc *svc = udata;
    if (check_params(call, params, NULL, 0))
        return;
    uint64_t now = uv_now(svc->ctx->loop);
    if (!svc->info_cache || now - svc->info_cached_at >= INFO_CACHE_MS) {
        json_t *info = sysinfo_collect_info();
        json_object_set_new(info, "node_id", json_string(p2p_node_id(svc->ctx)));
        json_object_set_new(info, "role", json_string(p2p_node_role(svc->ctx)));
        json_object_set_new(info, "version", json_string(P2P_VERSION));
        json_object_set_new(info, "node_uptime_seconds", json_real(p2p__ctx_uptime(svc->ctx)));
        json_object_set_new(info, "port", json_integer(svc->ctx->cfg.port));
        json_decref(svc->info_cache);
        svc->info_cache = info;
        svc->info_cached_at = now;
    }
    p2p_call_reply(call, json_incref(svc->info_cache));
}

static void m_get_system_metrics(p2p_call *call, json_t *params, void *udata)
{
    system_svc *svc = udata;
    if (check_params(call, params, NULL, 0))
        return;
    json_t *m = sysinfo_collect_metrics(&svc->cpu);
    json_object_set_new(m, "node_id", json_string(p2p_node_id(svc->ctx)));
    json_object_set_new(m, "node_uptime_seconds", json_real(p2p__ctx_uptime(svc->ctx)));
    json_object_set_new(m, "rpc_inflight", json_integer((json_int_t)svc->ctx->registry->inflight));
    p2p_call_reply(call, m);
}

static void m_list_services(p2p_call *call, json_t *params, void *udata)
{
    system_svc *svc = udata;
    if (check_params(call, params, NULL, 0))
        return;
    p2p_registry *reg = svc->ctx->registry;
    json_t *out = json_object();
    for (size_t i = 0; i < reg->n_services; i++) {
        p2p_service *s = reg->services[i];
        json_t *methods = json_array();
        for (size_t j = 0; j < s->n_methods; j++)
            json_array_append_new(methods, json_string(s->methods[j]->name));
        json_t *one = json_pack("{s:s, s:s, s:s, s:b, s:o}", "version", s->version, "description", s->description,
                                "status", s->status, "builtin", s->builtin, "methods", methods);
        if (s->describe) {
            json_t *more = s->describe(s, s->describe_arg);
            if (json_is_object(more))
                json_object_update(one, more);
            json_decref(more);
        }
        json_object_set_new(out, s->name, one);
    }
    p2p_call_reply(call, out);
}

static void m_list_methods(p2p_call *call, json_t *params, void *udata)
{
    system_svc *svc = udata;
    static const char *const allowed[] = {"service", NULL};
    if (check_params(call, params, allowed, 1))
        return;
    json_t *only = param(params, "service", 0);
    if (only && !json_is_string(only)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: service must be a string", NULL);
        return;
    }
    p2p_registry *reg = svc->ctx->registry;
    json_t *out = json_array();
    for (size_t i = 0; i < reg->n_services; i++) {
        p2p_service *s = reg->services[i];
        if (only && strcmp(s->name, json_string_value(only)) != 0)
            continue;
        for (size_t j = 0; j < s->n_methods; j++) {
            p2p_method *m = s->methods[j];
            json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "method", m->path, "service",
                                                 s->name, "description", m->description, "params", m->params,
                                                 "readonly", (m->flags & P2P_METHOD_READONLY) != 0, "public",
                                                 (m->flags & P2P_METHOD_PUBLIC) != 0));
        }
    }
    p2p_call_reply(call, out);
}

static void m_get_cluster_nodes(p2p_call *call, json_t *params, void *udata)
{
    p2p_call_reply(call, p2p__membership_nodes_json(p2p_call_ctx(call)));
}

static const p2p_method_desc methods[] = {
    {"ping", "Answers with pong, the node id and the time; echoes an optional message.", "{message?: string}",
     P2P_METHOD_READONLY | P2P_METHOD_PUBLIC, m_ping, NULL},
    {"get_system_info",
     "Host facts: hostname, OS, kernel, CPUs, memory, disks, network interfaces, uptime, node id, role, version.",
     "none", P2P_METHOD_READONLY | P2P_METHOD_PUBLIC, m_get_system_info, NULL},
    {"get_system_metrics", "Live figures: CPU %, memory %, disk usage, load, process RSS.", "none",
     P2P_METHOD_READONLY | P2P_METHOD_PUBLIC, m_get_system_metrics, NULL},
    {"list_services", "The services on this node with their status and methods.", "none",
     P2P_METHOD_READONLY | P2P_METHOD_PUBLIC, m_list_services, NULL},
    {"list_methods", "Every method on this node with its description and parameters.", "{service?: string}",
     P2P_METHOD_READONLY | P2P_METHOD_PUBLIC, m_list_methods, NULL},
    {"get_cluster_nodes", "The cluster's members as this node sees them: id, status, addresses, role, services.",
     "none", P2P_METHOD_READONLY | P2P_METHOD_PUBLIC, m_get_cluster_nodes, NULL},
    {"get_config", "The node's effective config (secrets hidden), the keys update_config may change and the stored "
                   "overrides.",
     "none", P2P_METHOD_READONLY, p2p__runconfig_get, NULL},
    {"update_config", "Changes whitelisted config keys at run time and stores them in the vault (all or nothing).",
     "{key: value, ...} or {config: {key: value, ...}}", P2P_METHOD_ADMIN, p2p__runconfig_update, NULL},
};

static void on_cpu_timer(uv_timer_t *t)
{
    system_svc *svc = t->data;
    sysinfo_cpu_sample(&svc->cpu);
}

static int system_start(p2p_component *c, char **err)
{
    system_svc *svc = c->self;
    p2p_ctx *ctx = c->ctx;
    static const p2p_service_desc desc = {"system", P2P_VERSION, "Built-in node information and health", 1};
    int r = p2p_service_register(ctx, &desc);
    if (r == -EEXIST)
        r = 0; /* restarted component: the registry keeps the service */
    if (r == 0)
        r = p2p__remote_register_service(ctx);
    for (size_t i = 0; r == 0 && i < sizeof(methods) / sizeof(methods[0]); i++) {
        p2p_method_desc d = methods[i];
        d.udata = svc;
        r = p2p_method_register(ctx, "system", &d);
        if (r == -EEXIST)
            r = 0;
    }
    if (r != 0) {
        *err = p2p__xasprintf("cannot register the system service: %s", p2p_strerror(r));
        return r;
    }
    if ((r = p2p__system_http_start(ctx)) != 0) {
        *err = p2p__xasprintf("cannot add the system routes: %s", p2p_strerror(r));
        return r;
    }
    sysinfo_cpu_sample(&svc->cpu);
    uv_timer_init(ctx->loop, &svc->timer);
    svc->timer.data = svc;
    uv_timer_start(&svc->timer, on_cpu_timer, CPU_SAMPLE_MS, CPU_SAMPLE_MS);
    uv_unref((uv_handle_t *)&svc->timer);
    svc->timer_open = 1;
    return 0;
}

static void system_stop(p2p_component *c)
{
    system_svc *svc = c->self;
    p2p__system_http_stop(c->ctx);
    if (svc->timer_open) {
        uv_close((uv_handle_t *)&svc->timer, NULL);
        svc->timer_open = 0;
    }
}

static const p2p_component_ops system_ops = {
    .name = "system",
    .deps = NULL,
    .start = system_start,
    .stop = system_stop,
};

static void free_svc(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    system_svc *svc = arg;
    json_decref(svc->info_cache);
    free(svc);
}

int p2p__system_register(p2p_ctx *ctx)
{
    system_svc *svc = p2p__xcalloc(1, sizeof(*svc));
    svc->ctx = ctx;
    if (!p2p__component_add(ctx, &system_ops, svc)) {
        free(svc);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_svc, svc);
    return 0;
}
