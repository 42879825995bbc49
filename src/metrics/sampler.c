/*
 * sampler.c — this node's per-second Sample and its services (see sampler.h).
 */
#include "metrics/sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtin/sysinfo.h"
#include "core/metrics.h"
#include "core/util.h"
#include "http/routes.h"
#include "rpc/registry.h"
#include "services/manager.h"

#define MS_MAX_NETS 64

typedef struct net_prev {
    char name[32];
    uint64_t rx, tx;
} net_prev;

typedef struct rpc_prev {
    const p2p_method *m;
    uint64_t calls, errors;
    uint64_t buckets[P2P_LAT_BUCKETS + 1];
} rpc_prev;

typedef struct disk_job {
    uv_work_t w;
    p2p_msampler *s;
    json_t *disks;
} disk_job;

struct p2p_msampler {
    p2p_ctx *ctx;
    sysinfo_cpu_sampler cpu;
    net_prev nets[MS_MAX_NETS];
    size_t n_nets;
    uint64_t net_at_ms;
    json_t *disks; /* {"/": {percent, used, total}} */
    double disk_max;
    uint64_t disk_at_ms;
    int disk_job, closing;
    rpc_prev *rpc;
    size_t n_rpc, cap_rpc;
    uint64_t rpc_at_ms;
    double g_sent, g_recv, g_drop;
    uint64_t g_at_ms;
};

/* ---- /proc/net/dev ------------------------------------------------------------------ */

static int parse_u64(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
        p++;
    }
    *pp = p;
    *out = v;
    return 1;
}

int p2p__parse_net_dev(const char *text, void (*fn)(void *arg, const char *name, uint64_t rx, uint64_t tx),
                       void *arg)
{
    if (strncmp(text, "Inter-|", 7) != 0)
        return -1;
    const char *p = strchr(text, '\n');
    if (!p || !(p = strchr(p + 1, '\n')))
        return -1;
    p++;
    int n = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            eol = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            const char *a = p;
            while (a < colon && *a == ' ')
                a++;
            char name[32];
            size_t len = (size_t)(colon - a);
            const char *q = colon + 1;
            uint64_t f[16];
            int k = 0;
            while (k < 16 && q < eol && parse_u64(&q, &f[k]))
                k++;
            if (len > 0 && len < sizeof name && k == 16) {
                memcpy(name, a, len);
                name[len] = '\0';
                fn(arg, name, f[0], f[8]);
                n++;
            }
        }
        p = *eol ? eol + 1 : eol;
    }
    return n;
}

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

typedef struct net_acc {
    p2p_msampler *s;
    net_prev cur[MS_MAX_NETS];
    size_t n;
    double dt;
    json_t *nets;
    double rx, tx;
} net_acc;

static void on_iface(void *arg, const char *name, uint64_t rx, uint64_t tx)
{
    net_acc *a = arg;
    if (strcmp(name, "lo") == 0 || a->n >= MS_MAX_NETS)
        return;
    net_prev *c = &a->cur[a->n++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->rx = rx;
    c->tx = tx;
    if (a->dt <= 0)
        return;
    for (size_t i = 0; i < a->s->n_nets; i++) {
        net_prev *p = &a->s->nets[i];
        if (strcmp(p->name, name) != 0)
            continue;
        if (rx < p->rx || tx < p->tx)
            return; /* counters reset (interface re-created) */
        double r = (double)(rx - p->rx) / a->dt, t = (double)(tx - p->tx) / a->dt;
        json_object_set_new(a->nets, name, json_pack("{s:f, s:f}", "rx_bps", r, "tx_bps", t));
        a->rx += r;
        a->tx += t;
        return;
    }
}

static void sample_net(p2p_msampler *s, json_t *out)
{
    char buf[16384];
    uint64_t now = uv_hrtime() / 1000000;
    net_acc a = {.s = s, .dt = s->net_at_ms ? (double)(now - s->net_at_ms) / 1000.0 : 0};
    a.nets = json_object();
    if (read_file("/proc/net/dev", buf, sizeof buf) < 0 || p2p__parse_net_dev(buf, on_iface, &a) < 0) {
        json_decref(a.nets);
        json_object_set_new(out, "net_rx_bps", json_null());
        json_object_set_new(out, "net_tx_bps", json_null());
        return;
    }
    int have = a.dt > 0;
    memcpy(s->nets, a.cur, sizeof(net_prev) * a.n);
    s->n_nets = a.n;
    s->net_at_ms = now;
    json_object_set_new(out, "net_rx_bps", have ? json_real(a.rx) : json_null());
    json_object_set_new(out, "net_tx_bps", have ? json_real(a.tx) : json_null());
    json_object_set_new(out, "nets", a.nets);
}

/* ---- disks (thread pool) ----------------------------------------------------------- */

static void disk_work(uv_work_t *w)
{
    disk_job *j = w->data;
    j->disks = sysinfo_collect_disks();
}

static void disk_after(uv_work_t *w, int status)
{
    disk_job *j = w->data;
    p2p_msampler *s = j->s;
    s->disk_job = 0;
    if (s->closing) {
        json_decref(j->disks);
        free(j);
        p2p__msampler_free(s);
        return;
    }
    json_t *map = json_object();
    double mx = NAN;
    size_t i;
    json_t *d;
    json_array_foreach(j->disks, i, d)
    {
        const char *mp = json_string_value(json_object_get(d, "mount_point"));
        double pct = json_number_value(json_object_get(d, "used_percent"));
        if (!mp)
            continue;
        json_object_set_new(map, mp,
                            json_pack("{s:f, s:O, s:O}", "percent", pct, "used", json_object_get(d, "used_bytes"),
                                      "total", json_object_get(d, "total_bytes")));
        if (isnan(mx) || pct > mx)
            mx = pct;
    }
    json_decref(j->disks);
    free(j);
    json_decref(s->disks);
    s->disks = map;
    s->disk_max = mx;
}

static void maybe_refresh_disks(p2p_msampler *s)
{
    uint64_t now = uv_hrtime() / 1000000;
    if (s->disk_job || (s->disk_at_ms && now - s->disk_at_ms < MS_DISK_EVERY_MS))
        return;
    s->disk_at_ms = now;
    disk_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->s = s;
    if (uv_queue_work(s->ctx->loop, &j->w, disk_work, disk_after) == 0)
        s->disk_job = 1;
    else
        free(j);
}

/* ---- RPC ---------------------------------------------------------------------------- */

static rpc_prev *rpc_prev_of(p2p_msampler *s, const p2p_method *m, size_t hint)
{
    if (hint < s->n_rpc && s->rpc[hint].m == m)
        return &s->rpc[hint];
    for (size_t i = 0; i < s->n_rpc; i++)
        if (s->rpc[i].m == m)
            return &s->rpc[i];
    if (s->n_rpc == s->cap_rpc) {
        s->cap_rpc = s->cap_rpc ? s->cap_rpc * 2 : 64;
        s->rpc = p2p__xrealloc(s->rpc, s->cap_rpc * sizeof(*s->rpc));
    }
    rpc_prev *p = &s->rpc[s->n_rpc++];
    memset(p, 0, sizeof(*p));
    p->m = m;
    p->calls = m->stats.calls; /* counted from now on */
    p->errors = m->stats.errors;
    memcpy(p->buckets, m->stats.buckets, sizeof p->buckets);
    return p;
}

static void sample_rpc(p2p_msampler *s, json_t *out)
{
    uint64_t now = uv_hrtime() / 1000000;
    double dt = s->rpc_at_ms ? (double)(now - s->rpc_at_ms) / 1000.0 : 0;
    s->rpc_at_ms = now;
    p2p_registry *reg = s->ctx->registry;
    json_t *per = json_object();
    uint64_t calls = 0, errors = 0;
    size_t k = 0;
    for (size_t i = 0; reg && i < reg->n_services; i++) {
        p2p_service *svc = reg->services[i];
        for (size_t j = 0; j < svc->n_methods; j++, k++) {
            const p2p_method *m = svc->methods[j];
            rpc_prev *p = rpc_prev_of(s, m, k);
            const p2p_method_stats *st = &m->stats;
            if (st->calls < p->calls) /* cannot happen; stay sane */
                p->calls = st->calls;
            uint64_t dc = st->calls - p->calls, de = st->errors >= p->errors ? st->errors - p->errors : 0;
            if (dc && json_object_size(per) < 256) {
                p2p_method_stats d;
                memset(&d, 0, sizeof d);
                d.calls = dc;
                d.max_us = st->max_us;
                for (size_t b = 0; b <= P2P_LAT_BUCKETS; b++)
                    d.buckets[b] = st->buckets[b] >= p->buckets[b] ? st->buckets[b] - p->buckets[b] : 0;
                double per_s = dt > 0 ? dt : 1;
                json_object_set_new(per, m->path,
                                    json_pack("{s:f, s:f, s:f, s:f}", "calls", (double)dc / per_s, "errors",
                                              (double)de / per_s, "p50_ms", p2p__method_stats_quantile(&d, 0.5) / 1000.0,
                                              "p99_ms", p2p__method_stats_quantile(&d, 0.99) / 1000.0));
            }
            calls += dc;
            errors += de;
            p->calls = st->calls;
            p->errors = st->errors;
            memcpy(p->buckets, st->buckets, sizeof p->buckets);
        }
    }
    double per_s = dt > 0 ? dt : 1;
    json_object_set_new(out, "rpc_calls", json_real((double)calls / per_s));
    json_object_set_new(out, "rpc_errors", json_real((double)errors / per_s));
    json_object_set_new(out, "rpc", per);
}

/* ---- gossip ------------------------------------------------------------------------- */

static double sum_of(json_t *v)
{
    if (json_is_number(v))
        return json_number_value(v);
    double t = 0;
    const char *k;
    json_t *x;
    if (json_is_object(v))
        json_object_foreach(v, k, x) t += json_is_number(x) ? json_number_value(x) : 0;
    return t;
}

static void sample_gossip(p2p_msampler *s, json_t *out)
{
    json_t *all = p2p__metrics_sources_json(s->ctx);
    json_t *g = json_object_get(all, "gossip");
    uint64_t now = uv_hrtime() / 1000000;
    if (json_is_object(g)) {
        double sent = sum_of(json_object_get(g, "sent")), recv = sum_of(json_object_get(g, "received")),
               drop = sum_of(json_object_get(g, "dropped"));
        if (s->g_at_ms && sent >= s->g_sent && recv >= s->g_recv && drop >= s->g_drop) {
            double dt = (double)(now - s->g_at_ms) / 1000.0;
            if (dt <= 0)
                dt = 1;
            json_object_set_new(out, "gossip",
                                json_pack("{s:f, s:f, s:f}", "sent", (sent - s->g_sent) / dt, "recv",
                                          (recv - s->g_recv) / dt, "dropped", (drop - s->g_drop) / dt));
        }
        s->g_sent = sent;
        s->g_recv = recv;
        s->g_drop = drop;
        s->g_at_ms = now;
    }
    json_decref(all);
}

/* ---- the sample --------------------------------------------------------------------- */

static void copy_num(json_t *out, const char *to, json_t *from, const char *key)
{
    json_t *v = json_object_get(from, key);
    json_object_set_new(out, to, json_is_number(v) ? json_incref(v) : json_null());
}

p2p_msampler *p2p__msampler_new(p2p_ctx *ctx)
{
    p2p_msampler *s = p2p__xcalloc(1, sizeof(*s));
    s->ctx = ctx;
    s->disk_max = NAN;
    sysinfo_cpu_sample(&s->cpu); /* the baseline */
    maybe_refresh_disks(s);
    return s;
}

json_t *p2p__msampler_take(p2p_msampler *s, int64_t t)
{
    sysinfo_cpu_sample(&s->cpu);
    json_t *h = sysinfo_collect_metrics_host(&s->cpu);
    json_t *o = json_pack("{s:I}", "t", (json_int_t)t);
    copy_num(o, "cpu", h, "cpu_percent");
    copy_num(o, "mem_percent", h, "memory_percent");
    copy_num(o, "mem_used", h, "memory_used_bytes");
    copy_num(o, "mem_total", h, "memory_total_bytes");
    copy_num(o, "load1", h, "load_1m");
    copy_num(o, "load5", h, "load_5m");
    copy_num(o, "load15", h, "load_15m");
    maybe_refresh_disks(s);
    json_object_set_new(o, "disk_percent", isnan(s->disk_max) ? json_null() : json_real(s->disk_max));
    json_object_set_new(o, "disks", s->disks ? json_deep_copy(s->disks) : json_object());
    sample_net(s, o);
    copy_num(o, "rss", h, "rss_bytes");
    copy_num(o, "proc_cpu", h, "process_cpu_percent");
    copy_num(o, "fds", h, "open_fds");
    copy_num(o, "threads", h, "threads");
    json_decref(h);
    const p2p_http_stats *hs = p2p__http_stats(s->ctx);
    json_object_set_new(o, "conns", json_integer(hs ? (json_int_t)hs->connections_active : 0));
    sample_rpc(s, o);
    sample_gossip(s, o);
    return o;
}

/* ---- services ----------------------------------------------------------------------- */

static const char *health_of(const char *status)
{
    if (!status)
        return "unknown";
    if (!strcmp(status, "ok"))
        return "healthy";
    if (!strcmp(status, "warning") || !strcmp(status, "critical"))
        return status;
    return "unknown";
}

json_t *p2p__msampler_services(p2p_msampler *s)
{
    p2p_registry *reg = s->ctx->registry;
    json_t *arr = json_array();
    for (size_t i = 0; reg && i < reg->n_services && i < 256; i++) {
        p2p_service *svc = reg->services[i];
        json_t *methods = json_object();
        for (size_t j = 0; j < svc->n_methods && j < 128; j++) {
            const p2p_method *m = svc->methods[j];
            json_object_set_new(methods, m->name,
                                json_pack("{s:I, s:I, s:f, s:f}", "calls", (json_int_t)m->stats.calls, "errors",
                                          (json_int_t)m->stats.errors, "p50_ms",
                                          p2p__method_stats_quantile(&m->stats, 0.5) / 1000.0, "p99_ms",
                                          p2p__method_stats_quantile(&m->stats, 0.99) / 1000.0));
        }
        json_t *d = svc->describe ? svc->describe(svc, svc->describe_arg) : NULL;
        const char *kind = "builtin", *state = svc->status ? svc->status : "running", *health = "healthy";
        if (d) {
            const char *ty = json_string_value(json_object_get(d, "type"));
            kind = ty && !strcmp(ty, "exec") ? "exec" : "native";
            const char *st = json_string_value(json_object_get(d, "state"));
            if (st)
                state = st;
            health = health_of(json_string_value(json_object_get(json_object_get(d, "health"), "status")));
        } else if (strcmp(state, "running") != 0) {
            health = "unknown";
        }
        json_t *metrics = d ? p2p__services_own_metrics(s->ctx, svc->name) : NULL;
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "name", svc->name, "version",
                              svc->version && *svc->version ? svc->version : "?", "kind", kind, "state", state,
                              "health", health, "methods", methods, "metrics", metrics ? metrics : json_object());
        json_t *restarts = json_object_get(d, "restarts");
        if (json_is_integer(restarts))
            json_object_set(o, "restarts", restarts);
        json_decref(d);
        if (o)
            json_array_append_new(arr, o);
    }
    return arr;
}

void p2p__msampler_free(p2p_msampler *s)
{
    if (!s)
        return;
    if (s->disk_job) {
        s->closing = 1; /* freed when the job comes back */
        return;
    }
    json_decref(s->disks);
    free(s->rpc);
    free(s);
}
