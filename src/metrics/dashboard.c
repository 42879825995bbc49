/*
 * dashboard.c — the `metrics_dashboard` built-in service on the coordinator
 * (see dashboard.h; the API in docs/dashboard.md).
 *
 * report_metrics: only a node may report, and only as itself: the node id of
 * the client certificate that sent the call directly (p2p__call_node_id; a call
 * relayed for someone else has none) must equal the report's node_id, as for
 * log_collector/add_logs. The decoded samples go into the node's tiers in time
 * order (a sample at or before the node's last one is a duplicate: counted,
 * not stored), its last sample and services are kept for the views, and the
 * listeners (the WebSocket hub) see the new samples. The answer carries the
 * interval the coordinator wants (next_interval_ms).
 *
 * Stale and cleanup: a node whose last report is older than
 * max(metrics_stale_after, 3 reporting intervals) is marked stale (checked
 * every second); one silent for metrics_cleanup_after loses its history
 * (swept every metrics_cleanup_interval).
 *
 * Persistence: store.c's snapshot, written by a pool job every
 * metrics_snapshot_interval seconds when something changed, and at stop; one
 * job at a time. The table is copied into the raw form on the loop (a memcpy of
 * ~180 KB per node) and compressed and written on the pool.
 */
#include "metrics/dashboard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "membership/node.h"
#include "metrics/http.h"
#include "metrics/report.h"
#include "metrics/store.h"
#include "pki/cluster.h"
#include "rpc/jsonrpc.h"
#include "rpc/remote.h"

#define DASH_MAX_NODES 4096
#define DASH_MAX_LISTENERS 16
#define DASH_LARGE_CLUSTER 100
#define DASH_WATCHED_INTERVAL_MS 1000
#define CONTROL_TIMEOUT_MS 30000

typedef struct listener {
    p2p_dash_listener fn;
    void *arg;
} listener;

typedef struct snap_job {
    uv_work_t w;
    struct dash *d;
    dsnap snap;
    size_t raw_bytes, file_bytes;
    char *path;
    int rc;
    char err[300];
    uint64_t t0;
} snap_job;

#define SNAP_NODES_PER_TURN 4 /* ~0.7 MB of copying per loop turn */

typedef struct dash {
    p2p_ctx *ctx;
    dstore store;
    listener listeners[DASH_MAX_LISTENERS];
    size_t n_listeners;
    int watched, running;
    uv_timer_t tick;
    int tick_open;
    uint64_t ticks;
    char *dir, *path;
    int snap_inflight, dirty, snap_again;
    snap_job *building; /* a snapshot being copied, a few nodes per loop turn */
    size_t build_next;
    uint64_t build_ns;
    uv_timer_t build_timer;
    int build_timer_open;
    /* figures */
    uint64_t reports, refused, samples, duplicates;
    uint64_t snap_writes, snap_errors, snap_bytes, snap_raw_bytes;
    double snap_ms, snap_loop_ms, snap_slice_ms;
    int64_t snap_at;
    char snap_error[300];
    size_t loaded_nodes;
} dash;

static dash *get(p2p_ctx *ctx)
{
    return p2p_shared_get(ctx, "metrics_dashboard");
}

static int64_t now_s(void)
{
    return (int64_t)(p2p__wall_ms() / 1000);
}

/* ---- interval and staleness ---------------------------------------------------------- */

/* Nobody watching: metrics_report_interval, or for a large cluster (over
 * DASH_LARGE_CLUSTER nodes) reporter_interval_min x nodes / 200, between
 * reporter_interval_min and reporter_interval_max. Sampling stays at 1/s, so
 * the coordinator ingests the same samples either way; a longer interval saves
 * the per-report cost (request, TLS records). It does not go past
 * reporter_interval_min until 200 nodes: at 30 s a node's pooled connection is
 * still open at its next report (clients drop idle connections after 50 s),
 * while a report every 60 s costs a TLS handshake each, which is more than
 * the report. */
static uint32_t idle_interval_ms(const dash *d)
{
    const p2p_config *c = &d->ctx->cfg;
    size_t n = d->store.n;
    uint64_t ms = (uint64_t)c->metrics_report_interval * 1000;
    if (n > DASH_LARGE_CLUSTER) {
        uint64_t lo = (uint64_t)c->reporter_interval_min * 1000, hi = (uint64_t)c->reporter_interval_max * 1000;
        uint64_t big = lo * n / 200;
        if (big < lo)
            big = lo;
        if (big > hi)
            big = hi;
        if (big > ms)
            ms = big;
    }
    return (uint32_t)(ms > 300000 ? 300000 : ms);
}

static uint32_t interval_ms(const dash *d)
{
    return d->watched ? DASH_WATCHED_INTERVAL_MS : idle_interval_ms(d);
}

static int64_t stale_after_s(const dash *d)
{
    int64_t a = d->ctx->cfg.metrics_stale_after, b = 3 * (int64_t)idle_interval_ms(d) / 1000;
    return a > b ? a : b;
}

static void mark_stale(dash *d, int64_t now)
{
    int64_t lim = stale_after_s(d);
    for (size_t i = 0; i < d->store.n; i++) {
        dnode *n = d->store.nodes[i];
        if (!strcmp(n->id, d->ctx->cfg.node_id))
            n->stale = n->last_report && now - n->last_report > 5; /* itself: every second */
        else
            n->stale = !n->last_report || now - n->last_report > lim;
    }
}

static void cleanup(dash *d, int64_t now)
{
    if (d->building)
        return; /* the snapshot walks the table by index: next sweep */
    int64_t lim = d->ctx->cfg.metrics_cleanup_after;
    for (size_t i = 0; i < d->store.n;) {
        dnode *n = d->store.nodes[i];
        if (strcmp(n->id, d->ctx->cfg.node_id) != 0 && n->last_report && now - n->last_report > lim) {
            p2p_log(d->ctx, P2P_LOG_INFO, "metrics_dashboard", "%s has not reported for %lld s: its history goes",
                    n->id, (long long)(now - n->last_report));
            dstore_remove(&d->store, n->id);
            d->dirty = 1;
        } else {
            i++;
        }
    }
}

/* ---- ingest --------------------------------------------------------------------------- */

/* Stores validated samples/services of `id`; returns the accepted samples (new
 * reference) or NULL when the table is full. */
static json_t *ingest(dash *d, const char *id, const char *version, json_t *samples, json_t *services)
{
    dnode *n = dstore_get_or_add(&d->store, id, DASH_MAX_NODES);
    if (!n)
        return NULL;
    json_t *accepted = json_array();
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s)
    {
        double v[MT_NMETRICS];
        mreport_sample_values(s, v);
        int64_t t = mreport_sample_time(s);
        if (t <= 0 || t > UINT32_MAX || mt_add(&n->series, (uint32_t)t, v) != 0) {
            n->duplicates++;
            d->duplicates++;
            continue;
        }
        json_array_append(accepted, s);
        json_decref(n->latest);
        n->latest = json_incref(s);
        n->samples++;
        d->samples++;
    }
    if (services) {
        json_decref(n->services);
        n->services = json_incref(services);
    }
    if (version && *version)
        snprintf(n->version, sizeof n->version, "%s", version);
    n->last_report = now_s();
    n->reports++;
    n->stale = 0;
    d->reports++;
    d->dirty = 1;
    if (json_array_size(accepted))
        for (size_t k = 0; k < d->n_listeners; k++)
            d->listeners[k].fn(d->ctx, id, accepted, d->listeners[k].arg);
    return accepted;
}

void p2p__dash_ingest_local(p2p_ctx *ctx, json_t *samples, json_t *services)
{
    dash *d = get(ctx);
    if (!d || !d->running)
        return;
    json_decref(ingest(d, ctx->cfg.node_id, P2P_VERSION, samples, services));
}

/* ---- views ---------------------------------------------------------------------------- */

static const char *state_of_member(const char *status)
{
    if (!status)
        return "dead";
    if (!strcmp(status, "alive") || !strcmp(status, "suspect") || !strcmp(status, "dead") || !strcmp(status, "left"))
        return status;
    return "dead";
}

static json_t *node_view(dash *d, const char *id, json_t *member, dnode *n)
{
    const char *role = member ? json_string_value(json_object_get(member, "role")) : NULL;
    if (!role)
        role = !strcmp(id, d->ctx->cfg.node_id) ? "coordinator" : "worker";
    const char *addr = member ? json_string_value(json_array_get(json_object_get(member, "addresses"), 0)) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "node_id", id, "role", role, "state",
                          member ? state_of_member(json_string_value(json_object_get(member, "status"))) : "dead",
                          "stale", n ? n->stale : 1);
    json_object_set_new(o, "addr", addr ? json_string(addr) : json_null());
    if (addr) {
        int port = (int)json_integer_value(json_object_get(member, "port"));
        char *u = strchr(addr, ':') ? p2p__xasprintf("%s://[%s]:%d", d->ctx->cfg.https_enabled ? "https" : "http",
                                                      addr, port)
                                    : p2p__xasprintf("%s://%s:%d", d->ctx->cfg.https_enabled ? "https" : "http",
                                                      addr, port);
        json_object_set_new(o, "http_addr", json_string(u));
        free(u);
    } else {
        json_object_set_new(o, "http_addr", json_null());
    }
    json_object_set_new(o, "version", n && n->version[0] ? json_string(n->version) : json_null());
    json_object_set_new(o, "last_report", n && n->last_report ? json_integer(n->last_report) : json_null());
    json_object_set_new(o, "latest", n && n->latest ? json_incref(n->latest) : json_null());
    return o;
}

static json_t *service_views(dash *d, const char *only_node)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < d->store.n; i++) {
        dnode *n = d->store.nodes[i];
        if (only_node && strcmp(n->id, only_node) != 0)
            continue;
        size_t k;
        json_t *s;
        json_array_foreach(n->services, k, s)
        {
            json_t *v = json_deep_copy(s);
            json_object_set_new(v, "node_id", json_string(n->id));
            if (!json_object_get(v, "version"))
                json_object_set_new(v, "version", json_null());
            json_array_append_new(arr, v);
        }
    }
    return arr;
}

/* member list keyed by node id (new reference) */
static json_t *members_by_id(p2p_ctx *ctx)
{
    json_t *doc = p2p__membership_nodes_json(ctx), *by = json_object();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(doc, "nodes"), i, m)
    {
        const char *id = json_string_value(json_object_get(m, "node_id"));
        if (id)
            json_object_set(by, id, m);
    }
    json_decref(doc);
    return by;
}

json_t *p2p__dash_snapshot(p2p_ctx *ctx)
{
    dash *d = get(ctx);
    if (!d || !d->running)
        return NULL;
    json_t *members = members_by_id(ctx);
    const char *self = ctx->cfg.node_id;
    json_t *workers = json_object();
    size_t alive = 0, suspect = 0, dead = 0, total = 0, cpu_n = 0, mem_n = 0;
    double cpu = 0, mem = 0;
    json_t *coordinator = NULL;
    /* every member, then nodes known only from their reports */
    json_t *ids = json_object();
    const char *id;
    json_t *m;
    json_object_foreach(members, id, m) json_object_set_new(ids, id, json_true());
    for (size_t i = 0; i < d->store.n; i++)
        json_object_set_new(ids, d->store.nodes[i]->id, json_true());
    json_t *dummy;
    json_object_foreach(ids, id, dummy)
    {
        dnode *n = dstore_find(&d->store, id);
        json_t *v = node_view(d, id, json_object_get(members, id), n);
        const char *st = json_string_value(json_object_get(v, "state"));
        total++;
        if (!strcmp(st, "alive"))
            alive++;
        else if (!strcmp(st, "suspect"))
            suspect++;
        else
            dead++;
        json_t *lt = json_object_get(v, "latest");
        if ((!strcmp(st, "alive") || !strcmp(st, "suspect")) && !json_is_true(json_object_get(v, "stale")) &&
            json_is_object(lt)) {
            json_t *c = json_object_get(lt, "cpu"), *mp = json_object_get(lt, "mem_percent");
            if (json_is_number(c))
                cpu += json_number_value(c), cpu_n++;
            if (json_is_number(mp))
                mem += json_number_value(mp), mem_n++;
        }
        if (!strcmp(id, self))
            coordinator = v;
        else
            json_object_set_new(workers, id, v);
    }
    json_decref(ids);
    json_decref(members);
    if (!coordinator)
        coordinator = node_view(d, self, NULL, dstore_find(&d->store, self));
    json_t *services = service_views(d, NULL);
    size_t running = 0;
    size_t k;
    json_t *s;
    json_array_foreach(services, k, s) running += !strcmp(json_string_value(json_object_get(s, "state")), "running");
    json_t *stats = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:I}", "nodes_total", (json_int_t)total,
                              "nodes_alive", (json_int_t)alive, "nodes_suspect", (json_int_t)suspect, "nodes_dead",
                              (json_int_t)dead, "services_total", (json_int_t)json_array_size(services),
                              "services_running", (json_int_t)running, "cpu_avg",
                              cpu_n ? json_real(round(cpu / cpu_n * 100) / 100) : json_null(), "mem_avg",
                              mem_n ? json_real(round(mem / mem_n * 100) / 100) : json_null(), "uptime_s",
                              (json_int_t)p2p__ctx_uptime(ctx));
    return json_pack("{s:o, s:o, s:o, s:o, s:I}", "coordinator", coordinator, "workers", workers, "services",
                     services, "cluster_stats", stats, "generated_at", (json_int_t)now_s());
}

/* ---- history -------------------------------------------------------------------------- */

static const char *const default_series[] = {"cpu",        "mem_percent", "disk_percent", "net_rx_bps",
                                             "net_tx_bps", "load1",       "rss",          "rpc_calls"};

static json_t *num_or_null(double v)
{
    if (!isfinite(v))
        return json_null();
    if (fabs(v) >= 1e6)
        return json_real(round(v));
    return json_real(round(v * 1000) / 1000);
}

/* "15m", "1h", "24h", "30d", "90s" -> seconds, or -1. */
static int64_t parse_span(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 8 || strspn(s, "0123456789") != n - 1)
        return -1;
    int64_t k = strtoll(s, NULL, 10);
    switch (s[n - 1]) {
    case 's': return k;
    case 'm': return k * 60;
    case 'h': return k * 3600;
    case 'd': return k * 86400;
    default: return -1;
    }
}

static void bad_params(p2p_call *call, const char *fmt, const char *arg)
{
    char msg[300];
    snprintf(msg, sizeof msg, fmt, arg);
    char *full = p2p__xasprintf("Invalid params: %s", msg);
    p2p_call_error(call, P2P_RPC_INVALID_PARAMS, full, NULL);
    free(full);
}

static void m_history(p2p_call *call, json_t *params, void *udata)
{
    dash *d = udata;
    if (!json_is_object(params)) {
        bad_params(call, "%s", "expected {node_id, range?, resolution?, metrics?, limit?}");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        if (strcmp(key, "node_id") && strcmp(key, "range") && strcmp(key, "resolution") && strcmp(key, "metrics") &&
            strcmp(key, "limit")) {
            bad_params(call, "unexpected parameter '%.40s'", key);
            return;
        }
    }
    const char *id = json_string_value(json_object_get(params, "node_id"));
    if (!id || !*id || strlen(id) > 63) {
        bad_params(call, "%s", "node_id (a string) is required");
        return;
    }
    dnode *n = dstore_find(&d->store, id);
    if (!n) {
        json_t *members = members_by_id(d->ctx);
        int known = json_object_get(members, id) != NULL;
        json_decref(members);
        if (!known) {
            p2p_call_error(call, P2P_RPC_E_UNKNOWN_NODE, "no such node: it is not a member and has no metrics",
                           NULL);
            return;
        }
    }
    json_t *rj = json_object_get(params, "range"), *resj = json_object_get(params, "resolution"),
           *lj = json_object_get(params, "limit"), *mj = json_object_get(params, "metrics");
    int64_t span = -1, limit = 0;
    if (rj && !json_is_null(rj)) {
        span = json_is_string(rj) ? parse_span(json_string_value(rj)) : -1;
        if (span <= 0 || span > 30 * 86400) {
            bad_params(call, "%s", "range must be like 15m, 1h, 24h or 30d (at most 30d)");
            return;
        }
    }
    if (lj && !json_is_null(lj)) {
        if (json_is_string(lj) && strspn(json_string_value(lj), "0123456789") == json_string_length(lj) &&
            json_string_length(lj) > 0 && json_string_length(lj) < 8)
            limit = strtoll(json_string_value(lj), NULL, 10);
        else if (json_is_integer(lj))
            limit = json_integer_value(lj);
        else
            limit = -1;
        if (limit < 1 || limit > 1440) {
            bad_params(call, "%s", "limit must be an integer in 1..1440");
            return;
        }
    }
    int tier = -1;
    if (resj && !json_is_null(resj)) {
        int64_t res = json_is_integer(resj) ? json_integer_value(resj)
                      : json_is_string(resj) ? (parse_span(json_string_value(resj)) > 0
                                                     ? parse_span(json_string_value(resj))
                                                     : strtoll(json_string_value(resj), NULL, 10))
                                               : -1;
        for (int t = 0; t < MT_NTIERS; t++)
            if (res == mt_tiers[t].res_s)
                tier = t;
        if (tier < 0) {
            bad_params(call, "%s", "resolution must be 1, 60 or 3600 (seconds)");
            return;
        }
    }
    if (span < 0) {
        uint32_t res = tier >= 0 ? mt_tiers[tier].res_s : 1;
        span = (int64_t)res * (limit ? limit : (tier >= 0 ? (int64_t)mt_tiers[tier].slots : (int64_t)d->ctx->cfg.metrics_retention_count));
    }
    if (tier < 0)
        tier = mt_tier_for_span((uint32_t)span);
    if (tier < 0 || (uint64_t)mt_tiers[tier].res_s * mt_tiers[tier].slots < (uint64_t)span) {
        bad_params(call, "%s", "that resolution does not keep that range (1 s: 15m, 60 s: 24h, 3600 s: 30d)");
        return;
    }
    int metrics[MT_NMETRICS];
    size_t nm = 0;
    if (mj && !json_is_null(mj)) {
        char buf[512];
        if (!json_is_string(mj) || json_string_length(mj) >= sizeof buf) {
            bad_params(call, "%s", "metrics must be a comma-separated string of metric names");
            return;
        }
        snprintf(buf, sizeof buf, "%s", json_string_value(mj));
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            int idx = mt_metric_index(tok);
            if (idx < 0) {
                bad_params(call, "unknown metric '%.40s'", tok);
                return;
            }
            int dup = 0;
            for (size_t i = 0; i < nm; i++)
                dup |= metrics[i] == idx;
            if (!dup && nm < MT_NMETRICS)
                metrics[nm++] = idx;
        }
        if (!nm) {
            bad_params(call, "%s", "metrics names none");
            return;
        }
    } else {
        for (size_t i = 0; i < sizeof default_series / sizeof default_series[0]; i++)
            metrics[nm++] = mt_metric_index(default_series[i]);
    }
    uint32_t res = mt_tiers[tier].res_s;
    uint32_t last = (uint32_t)(now_s() / res);
    uint32_t npts = (uint32_t)((span + res - 1) / res);
    if (npts > mt_tiers[tier].slots)
        npts = mt_tiers[tier].slots;
    if (limit && (uint32_t)limit < npts)
        npts = (uint32_t)limit;
    uint32_t first = last - npts + 1;
    json_t *t = json_array(), *series = json_object();
    json_t *cols[MT_NMETRICS];
    for (size_t i = 0; i < nm; i++) {
        cols[i] = json_array();
        json_object_set_new(series, mt_metric_names[metrics[i]], cols[i]);
    }
    for (uint32_t b = first; b <= last; b++) {
        json_array_append_new(t, json_integer((json_int_t)b * res));
        for (size_t i = 0; i < nm; i++)
            json_array_append_new(cols[i], num_or_null(n ? mt_get(&n->series, tier, b, metrics[i]) : NAN));
    }
    p2p_call_reply(call, json_pack("{s:s, s:I, s:I, s:I, s:s, s:o, s:o}", "node_id", id, "resolution",
                                   (json_int_t)res, "from", (json_int_t)first * res, "to", (json_int_t)last * res,
                                   "aggregate", tier ? "avg" : "value", "t", t, "series", series));
}

/* ---- methods -------------------------------------------------------------------------- */

static int no_params(p2p_call *call, json_t *params, const char *name)
{
    if (params && !(json_is_object(params) && json_object_size(params) == 0) &&
        !(json_is_array(params) && json_array_size(params) == 0)) {
        bad_params(call, "%s takes no parameters", name);
        return 0;
    }
    return 1;
}

static void m_report(p2p_call *call, json_t *params, void *udata)
{
    dash *d = udata;
    const char *from = p2p__call_node_id(call);
    if (!from) {
        d->refused++;
        p2p_call_error(call, P2P_RPC_E_FORBIDDEN,
                       "Forbidden: only a node may report metrics, directly with its own certificate", NULL);
        return;
    }
    mreport r;
    char err[300];
    if (mreport_decode(params, now_s(), &r, err, sizeof err) != 0) {
        d->refused++;
        char *msg = p2p__xasprintf("Invalid params: %s", err);
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
        free(msg);
        return;
    }
    if (strcmp(r.node_id, from) != 0) {
        d->refused++;
        snprintf(err, sizeof err, "Forbidden: node %s may not report metrics as node %s", from, r.node_id);
        mreport_free(&r);
        p2p_call_error(call, P2P_RPC_E_FORBIDDEN, err, NULL);
        return;
    }
    json_t *acc = ingest(d, r.node_id, r.version, r.samples, r.services);
    size_t n = json_array_size(r.samples);
    mreport_free(&r);
    if (!acc) {
        d->refused++;
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "the dashboard holds its maximum of 4096 nodes", NULL);
        return;
    }
    p2p_call_reply(call, json_pack("{s:b, s:I, s:I, s:I}", "ok", 1, "accepted", (json_int_t)json_array_size(acc),
                                   "duplicates", (json_int_t)(n - json_array_size(acc)), "next_interval_ms",
                                   (json_int_t)interval_ms(d)));
    json_decref(acc);
}

static void m_cluster(p2p_call *call, json_t *params, void *udata)
{
    if (no_params(call, params, "get_cluster_metrics"))
        p2p_call_reply(call, p2p__dash_snapshot(((dash *)udata)->ctx));
}

static void m_services(p2p_call *call, json_t *params, void *udata)
{
    if (no_params(call, params, "get_services"))
        p2p_call_reply(call, json_pack("{s:o}", "services", service_views(udata, NULL)));
}

static void m_certificates(p2p_call *call, json_t *params, void *udata)
{
    dash *d = udata;
    if (!no_params(call, params, "get_certificates"))
        return;
    json_t *c = p2p__pki_certificates_json(d->ctx);
    if (!c) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "this node has no CA certificate", NULL);
        return;
    }
    json_t *members = members_by_id(d->ctx);
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(c, "nodes"), i, n)
    {
        json_t *m = json_object_get(members, json_string_value(json_object_get(n, "node_id")));
        json_t *a = json_object_get(m, "addresses");
        if (json_is_array(a))
            json_object_set(n, "addresses", a);
    }
    json_decref(members);
    p2p_call_reply(call, c);
}

static void m_stats(p2p_call *call, json_t *params, void *udata)
{
    dash *d = udata;
    if (!no_params(call, params, "get_stats"))
        return;
    size_t reporting = 0, json_bytes = 0;
    for (size_t i = 0; i < d->store.n; i++) {
        reporting += !d->store.nodes[i]->stale;
        char *s = d->store.nodes[i]->latest ? json_dumps(d->store.nodes[i]->latest, JSON_COMPACT) : NULL;
        char *v = d->store.nodes[i]->services ? json_dumps(d->store.nodes[i]->services, JSON_COMPACT) : NULL;
        json_bytes += (s ? strlen(s) : 0) + (v ? strlen(v) : 0);
        free(s);
        free(v);
    }
    json_t *tiers = json_array();
    for (int t = 0; t < MT_NTIERS; t++)
        json_array_append_new(tiers, json_pack("{s:I, s:I, s:I, s:s}", "resolution_s", (json_int_t)mt_tiers[t].res_s,
                                               "points", (json_int_t)mt_tiers[t].slots, "span_s",
                                               (json_int_t)mt_tiers[t].res_s * mt_tiers[t].slots, "aggregate",
                                               t ? "avg" : "value"));
    json_t *names = json_array();
    for (int m = 0; m < MT_NMETRICS; m++)
        json_array_append_new(names, json_string(mt_metric_names[m]));
    size_t per_node = mt_series_bytes() + sizeof(dnode);
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:b, s:I}",
        "reports_received", (json_int_t)d->reports, "reports_refused", (json_int_t)d->refused, "nodes_reporting",
        (json_int_t)reporting, "nodes_stored", (json_int_t)d->store.n, "samples_stored", (json_int_t)d->samples,
        "samples_duplicate", (json_int_t)d->duplicates, "bytes_used", (json_int_t)(d->store.n * per_node + json_bytes),
        "bytes_per_node", (json_int_t)MT_SERIES_BYTES, "bytes_per_metric_per_node", (json_int_t)MT_BYTES_PER_METRIC,
        "max_nodes", (json_int_t)DASH_MAX_NODES, "tiers", tiers, "metrics", names, "stale_after_s",
        (json_int_t)stale_after_s(d), "cleanup_after_s", (json_int_t)d->ctx->cfg.metrics_cleanup_after,
        "report_interval_ms", (json_int_t)interval_ms(d), "idle_interval_ms", (json_int_t)idle_interval_ms(d),
        "watched", d->watched, "listeners", (json_int_t)d->n_listeners);
    json_object_set_new(o, "snapshot",
                        json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, s:I, s:s?}", "path", d->path, "writes",
                                  (json_int_t)d->snap_writes, "errors", (json_int_t)d->snap_errors, "file_bytes",
                                  (json_int_t)d->snap_bytes, "raw_bytes", (json_int_t)d->snap_raw_bytes, "write_ms",
                                  d->snap_ms, "loop_ms", d->snap_loop_ms, "loop_slice_max_ms", d->snap_slice_ms,
                                  "last_write",
                                  d->snap_at ? json_integer(d->snap_at) : json_null(), "loaded_nodes",
                                  (json_int_t)d->loaded_nodes, "last_error", d->snap_error[0] ? d->snap_error : NULL));
    p2p_call_reply(call, o);
}

/* ---- control_service ------------------------------------------------------------------ */

typedef struct control {
    p2p_call *call;
    dash *d;
    char node[64], service[65], action[8];
} control;

static void on_controlled(p2p_ctx *ctx, json_t *results, void *udata)
{
    control *c = udata;
    json_t *res = json_object_get(results, "result"), *err = json_object_get(results, "error");
    if (err) {
        int code = (int)json_integer_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        int status = code == P2P_RPC_E_UNKNOWN_NODE ? 404
                     : code == P2P_RPC_E_FORBIDDEN  ? 403
                     : code == P2P_RPC_INVALID_PARAMS && msg && strstr(msg, "no pluggable service") ? 404
                     : code == P2P_RPC_INVALID_PARAMS ? 400
                                                      : 502;
        p2p_call_error(c->call, code, msg ? msg : "the worker refused", json_pack("{s:i}", "status", status));
    } else {
        const char *state = json_string_value(json_object_get(res, "state"));
        /* the view shows the new state at once, before the node's next report */
        dnode *n = c->d->running ? dstore_find(&c->d->store, c->node) : NULL;
        size_t i;
        json_t *s;
        if (n && state)
            json_array_foreach(n->services, i, s) if (!strcmp(json_string_value(json_object_get(s, "name")),
                                                              c->service))
                json_object_set_new(s, "state", json_string(state));
        p2p_log(ctx, P2P_LOG_INFO, "metrics_dashboard", "%s %s on %s: %s", c->action, c->service, c->node,
                state ? state : "?");
        json_t *o = json_pack("{s:b, s:s, s:s, s:s, s:s?}", "ok", 1, "node_id", c->node, "service", c->service,
                              "action", c->action, "state", state);
        if (json_is_object(res))
            json_object_set(o, "detail", res);
        p2p_call_reply(c->call, o);
    }
    free(c);
}

static void m_control(p2p_call *call, json_t *params, void *udata)
{
    dash *d = udata;
    const char *node = json_string_value(json_object_get(params, "worker_id"));
    const char *svc = json_string_value(json_object_get(params, "service_name"));
    const char *action = json_string_value(json_object_get(params, "action"));
    if (!json_is_object(params) || json_object_size(params) != 3 || !node || !svc || !action || !*node ||
        strlen(node) > 63 || !*svc || strlen(svc) > 64) {
        bad_params(call, "%s", "expected {worker_id, service_name, action: start|stop|restart|reload}");
        return;
    }
    if (strcmp(action, "start") && strcmp(action, "stop") && strcmp(action, "restart") && strcmp(action, "reload")) {
        bad_params(call, "action '%.20s' is not start, stop, restart or reload", action);
        return;
    }
    if (!p2p__call_authz(call)) {
        /* with no operator's token the worker would see this node's identity,
         * which may not operate services anywhere */
        p2p_call_error(call, P2P_RPC_E_FORBIDDEN,
                       "Forbidden: control_service acts with an operator's admin token (call it with one)",
                       json_pack("{s:i}", "status", 403));
        return;
    }
    control *c = p2p__xcalloc(1, sizeof(*c));
    c->call = call;
    c->d = d;
    snprintf(c->node, sizeof c->node, "%s", node);
    snprintf(c->service, sizeof c->service, "%s", svc);
    snprintf(c->action, sizeof c->action, "%s", action);
    char method[32];
    snprintf(method, sizeof method, "services/%s", action);
    json_t *p = json_pack("{s:s}", "name", svc);
    p2p__call_remote_for(call, node, method, p, CONTROL_TIMEOUT_MS, on_controlled, c);
    json_decref(p);
}

static const p2p_method_desc methods[] = {
    {"report_metrics",
     "A node's samples and services; only a node, for itself. Answers {ok, accepted, next_interval_ms}.",
     "{node_id, version?, samples | encoding: \"lz4\", size, data, services?}", 0, m_report, NULL},
    {"get_cluster_metrics", "Coordinator, workers, services and cluster_stats in one answer.", "none",
     P2P_METHOD_READONLY, m_cluster, NULL},
    {"get_metrics_history", "A node's history, columnar (t and one array per metric), from its time tiers.",
     "{node_id, range? (15m|1h|24h|30d), resolution? (1|60|3600), metrics? (comma-separated), limit?}",
     P2P_METHOD_READONLY, m_history, NULL},
    {"get_stats", "Reports received, nodes reporting, samples and bytes stored, tiers, snapshot.", "none",
     P2P_METHOD_READONLY, m_stats, NULL},
    {"get_services", "Every service of every node, as last reported.", "none", P2P_METHOD_READONLY, m_services, NULL},
    {"get_certificates", "The CA and the node certificates it issued, with expiry.", "none", P2P_METHOD_READONLY,
     m_certificates, NULL},
    {"control_service", "Starts, stops, restarts or reloads a service on a node, as the calling operator.",
     "{worker_id, service_name, action}", P2P_METHOD_ADMIN, m_control, NULL},
};

/* ---- snapshot ------------------------------------------------------------------------- */

static void snap_work(uv_work_t *w)
{
    snap_job *j = w->data;
    uint64_t t0 = uv_hrtime();
    dsnap_seal(&j->snap);
    j->raw_bytes = dsnap_bytes(&j->snap);
    j->rc = dstore_write_file(j->path, &j->snap, &j->file_bytes, j->err, sizeof j->err);
    j->t0 = uv_hrtime() - t0;
}

static void snapshot(dash *d);

static void snap_after(uv_work_t *w, int status)
{
    snap_job *j = w->data;
    dash *d = j->d;
    d->snap_inflight = 0;
    d->snap_ms = (double)j->t0 / 1e6;
    if (j->rc == 0) {
        d->snap_writes++;
        d->snap_bytes = j->file_bytes;
        d->snap_raw_bytes = j->raw_bytes;
        d->snap_at = now_s();
        d->snap_error[0] = '\0';
    } else {
        d->snap_errors++;
        d->dirty = 1;
        snprintf(d->snap_error, sizeof d->snap_error, "%s", j->err);
        p2p_log(d->ctx, P2P_LOG_ERROR, "metrics_dashboard", "metrics snapshot: %s", j->err);
    }
    dsnap_free(&j->snap);
    free(j->path);
    free(j);
    if (d->snap_again) { /* a stop asked while this one ran: its data is newer */
        d->snap_again = 0;
        snapshot(d);
    }
}

/* Copies up to `max` more nodes; when the table is done, hands the snapshot to the pool. */
static void build_some(dash *d, size_t max)
{
    snap_job *j = d->building;
    uint64_t t0 = uv_hrtime();
    for (size_t k = 0; k < max && d->build_next < d->store.n; k++)
        dsnap_add_node(&j->snap, d->store.nodes[d->build_next++]);
    uint64_t dt = uv_hrtime() - t0;
    d->build_ns += dt;
    if ((double)dt / 1e6 > d->snap_slice_ms)
        d->snap_slice_ms = (double)dt / 1e6;
    if (d->build_next < d->store.n)
        return; /* more on the next loop turn (on_build_turn) */
    dsnap_finish(&j->snap);
    d->building = NULL;
    d->snap_loop_ms = (double)d->build_ns / 1e6;
    d->snap_inflight = 1;
    if (uv_queue_work(d->ctx->loop, &j->w, snap_work, snap_after) != 0) {
        snap_work(&j->w);
        snap_after(&j->w, 0);
    }
}

static void on_build_turn(uv_timer_t *t)
{
    dash *d = t->data;
    if (!d->building)
        return;
    build_some(d, SNAP_NODES_PER_TURN);
    if (d->building && d->build_timer_open)
        uv_timer_start(&d->build_timer, on_build_turn, 0, 0);
}

static void snapshot(dash *d)
{
    if (d->snap_inflight || d->building) {
        d->snap_again = d->snap_again || !d->running;
        if (d->building && !d->running)
            build_some(d, SIZE_MAX); /* stopping: finish it now */
        return;
    }
    snap_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->d = d;
    j->path = p2p__xstrdup(d->path);
    dsnap_begin(&j->snap);
    d->building = j;
    d->build_next = 0;
    d->build_ns = 0;
    d->dirty = 0;
    if (d->running && d->build_timer_open)
        on_build_turn(&d->build_timer);
    else
        build_some(d, SIZE_MAX); /* at stop: in one go */
}

static void load_snapshot(dash *d)
{
    uint8_t *raw = NULL;
    size_t len = 0;
    char err[300];
    int r = dstore_read_file(d->path, &raw, &len, err, sizeof err);
    if (r == -ENOENT)
        return;
    if (r == 0)
        r = dstore_deserialize(&d->store, raw, len, err, sizeof err);
    free(raw);
    if (r != 0) {
        char *aside = p2p__xasprintf("%s.bad", d->path);
        rename(d->path, aside);
        p2p_log(d->ctx, P2P_LOG_ERROR, "metrics_dashboard", "metrics history not read back (%s); set aside as %s",
                err, aside);
        free(aside);
        return;
    }
    d->loaded_nodes = d->store.n;
}

/* ---- component ------------------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    dash *d = t->data;
    int64_t now = now_s();
    d->ticks++;
    mark_stale(d, now);
    if (d->ticks % (uint64_t)d->ctx->cfg.metrics_cleanup_interval == 0)
        cleanup(d, now);
    if (d->dirty && d->ticks % (uint64_t)d->ctx->cfg.metrics_snapshot_interval == 0)
        snapshot(d);
}

static int dash_start(p2p_component *c, char **err)
{
    dash *d = c->self;
    p2p_ctx *ctx = c->ctx;
    d->dir = p2p__xasprintf("%s/metrics", ctx->cfg.state_directory);
    d->path = p2p__xasprintf("%s/history.snap", d->dir);
    int r = p2p__mkdir_p(d->dir, 0700);
    if (r != 0)
        return p2p__fail(err, r, "cannot create %s: %s", d->dir, strerror(-r));
    uint64_t t0 = uv_hrtime();
    load_snapshot(d);
    static const p2p_service_desc desc = {"metrics_dashboard", P2P_VERSION,
                                          "Cluster metrics: every node's samples in time tiers, the dashboard API", 1};
    r = p2p_service_register(ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    for (size_t i = 0; r == 0 && i < sizeof methods / sizeof methods[0]; i++) {
        p2p_method_desc m = methods[i];
        m.udata = d;
        r = p2p_method_register(ctx, "metrics_dashboard", &m);
        if (r == -EEXIST)
            r = 0;
    }
    if (r == 0)
        r = p2p__dash_http_start(ctx);
    if (r != 0)
        return p2p__fail(err, r, "cannot register the metrics_dashboard service: %s", p2p_strerror(r));
    p2p_log(ctx, P2P_LOG_INFO, "metrics_dashboard", "%zu nodes' metric history read back in %.1f ms", d->store.n,
            (double)(uv_hrtime() - t0) / 1e6);
    mark_stale(d, now_s());
    uv_timer_init(ctx->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&d->tick);
    d->tick_open = 1;
    uv_timer_init(ctx->loop, &d->build_timer);
    d->build_timer.data = d;
    d->build_timer_open = 1;
    d->running = 1;
    return 0;
}

static void dash_stop(p2p_component *c)
{
    dash *d = c->self;
    d->running = 0;
    p2p__dash_http_stop(c->ctx);
    if (d->tick_open) {
        uv_close((uv_handle_t *)&d->tick, NULL);
        d->tick_open = 0;
    }
    if (d->build_timer_open) {
        uv_close((uv_handle_t *)&d->build_timer, NULL);
        d->build_timer_open = 0;
    }
    snapshot(d); /* the last one: copied now, written by the drain after stop */
}

static const p2p_component_ops dash_ops = {
    .name = "metrics_dashboard",
    .deps = (const char *const[]){"membership", NULL},
    .start = dash_start,
    .stop = dash_stop,
};

static void dash_free(p2p_ctx *ctx, void *arg)
{
    dash *d = arg;
    p2p_shared_set(ctx, "metrics_dashboard", NULL);
    dstore_free(&d->store);
    free(d->dir);
    free(d->path);
    free(d);
}

int p2p__dash_register(p2p_ctx *ctx)
{
    dash *d = p2p__xcalloc(1, sizeof(*d));
    d->ctx = ctx;
    if (!p2p__component_add(ctx, &dash_ops, d)) {
        free(d);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "metrics_dashboard", d); /* listeners may register before it starts */
    p2p__ctx_on_shutdown(ctx, dash_free, d);
    return 0;
}

/* ---- hooks ---------------------------------------------------------------------------- */

int p2p__dash_running(p2p_ctx *ctx)
{
    dash *d = get(ctx);
    return d && d->running;
}

int p2p__dash_listen(p2p_ctx *ctx, p2p_dash_listener fn, void *arg)
{
    dash *d = get(ctx);
    if (!d)
        return -ENOENT;
    if (d->n_listeners == DASH_MAX_LISTENERS)
        return -ENOSPC;
    d->listeners[d->n_listeners++] = (listener){fn, arg};
    return 0;
}

void p2p__dash_unlisten(p2p_ctx *ctx, p2p_dash_listener fn, void *arg)
{
    dash *d = get(ctx);
    for (size_t i = 0; d && i < d->n_listeners; i++)
        if (d->listeners[i].fn == fn && d->listeners[i].arg == arg) {
            memmove(&d->listeners[i], &d->listeners[i + 1], (d->n_listeners - i - 1) * sizeof(listener));
            d->n_listeners--;
            return;
        }
}

void p2p__dash_set_watched(p2p_ctx *ctx, int watching)
{
    dash *d = get(ctx);
    if (d)
        d->watched = watching != 0;
}
