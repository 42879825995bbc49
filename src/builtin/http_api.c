/*
 * http_api.c — the system service's routes: GET /health (open), GET /services
 * and /services/{name}, GET /metrics and /metrics/{service} (JSON, or the
 * Prometheus text format by ?format=prometheus or Accept: text/plain), POST
 * /rpc (rpc/http_rpc.c) and GET /routes (admin: the route table as the
 * components registered it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/ratelimit.h"
#include "builtin/http_api.h"
#include "builtin/sysinfo.h"
#include "core/metrics.h"
#include "core/util.h"
#include "http/routes.h"
#include "rpc/http_rpc.h"
#include "rpc/registry.h"

/* ---- /health -------------------------------------------------------------- */

static void health(p2p_http_req *hr)
{
    p2p_ctx *ctx = hr->ctx;
    h2o_req_t *req = hr->req;
    int draining = p2p__http_draining(ctx);
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
    const char *status = draining ? "stopping" : all_running ? "healthy" : "degraded";
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:f, s:o}", "status", status, "node_id", p2p_node_id(ctx), "role",
                             p2p_node_role(ctx), "version", P2P_VERSION, "uptime_seconds", p2p__ctx_uptime(ctx),
                             "components", comps);
    int ok = !draining && all_running;
    p2p__http_send_json(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", body);
    json_decref(body);
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

static void services_send(p2p_ctx *ctx, h2o_req_t *req, const char *name, size_t name_len)
{
    p2p_registry *reg = ctx->registry;
    if (name) {
        p2p_service *s = find_service(ctx, name, name_len);
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
    json_t *body = json_pack("{s:s, s:o}", "node_id", p2p_node_id(ctx), "services", list);
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

static json_t *metrics_json(p2p_ctx *ctx, const p2p_service *only)
{
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
    const p2p_http_stats *st = p2p__http_stats(ctx);
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

static char *metrics_prometheus(p2p_ctx *ctx, const p2p_service *only, size_t *len)
{
    textbuf tb = {p2p__xmalloc(4096), 0, 4096};
    if (!only) {
        const p2p_http_stats *st = p2p__http_stats(ctx);
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

static void metrics_send(p2p_ctx *ctx, h2o_req_t *req, const char *service, size_t service_len)
{
    const p2p_service *only = NULL;
    if (service) {
        only = find_service(ctx, service, service_len);
        if (!only) {
            p2p__http_send_error(req, 404, "Not Found", "no such service");
            return;
        }
    }
    if (wants_prometheus(req)) {
        size_t len;
        char *text = metrics_prometheus(ctx, only, &len);
        p2p__http_send(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        return;
    }
    json_t *body = metrics_json(ctx, only);
    p2p__http_send_json(req, 200, "OK", body);
    json_decref(body);
}

/* ---- the handlers ----------------------------------------------------------------- */

static void services_all(p2p_http_req *hr)
{
    services_send(hr->ctx, hr->req, NULL, 0);
}

static void service_one(p2p_http_req *hr)
{
    services_send(hr->ctx, hr->req, hr->rest, hr->rest_len);
}

static void metrics_all(p2p_http_req *hr)
{
    metrics_send(hr->ctx, hr->req, NULL, 0);
}

static void metrics_one(p2p_http_req *hr)
{
    metrics_send(hr->ctx, hr->req, hr->rest, hr->rest_len);
}

static void routes_list(p2p_http_req *hr)
{
    json_t *body = json_pack("{s:s, s:o}", "node_id", p2p_node_id(hr->ctx), "routes", p2p__http_routes_json(hr->ctx));
    p2p__http_send_json(hr->req, 200, "OK", body);
    json_decref(body);
}

int p2p__system_http_start(p2p_ctx *ctx)
{
    static const p2p_http_route_desc routes[] = {
        {"GET", "/health", P2P_HTTP_EXACT, P2P_HTTP_OPEN, P2P_RL_HEALTH, "system", health, NULL},
        {"GET", "/services", P2P_HTTP_EXACT, P2P_HTTP_ANY, P2P_RL_OTHER, "system", services_all, NULL},
        {"GET", "/services/", P2P_HTTP_PREFIX, P2P_HTTP_ANY, P2P_RL_OTHER, "system", service_one, NULL},
        {"GET", "/metrics", P2P_HTTP_EXACT, P2P_HTTP_ANY, P2P_RL_OTHER, "system", metrics_all, NULL},
        {"GET", "/metrics/", P2P_HTTP_PREFIX, P2P_HTTP_ANY, P2P_RL_OTHER, "system", metrics_one, NULL},
        {"GET", "/routes", P2P_HTTP_EXACT, P2P_HTTP_ADMIN, P2P_RL_OTHER, "system", routes_list, NULL},
    };
    int r = p2p__rpc_http_start(ctx, "system");
    for (size_t i = 0; r == 0 && i < sizeof routes / sizeof routes[0]; i++)
        r = p2p__http_route_add(ctx, &routes[i]);
    if (r != 0)
        p2p__system_http_stop(ctx);
    return r;
}

void p2p__system_http_stop(p2p_ctx *ctx)
{
    p2p__rpc_http_stop(ctx);
    p2p__http_routes_remove_owner(ctx, "system");
}
