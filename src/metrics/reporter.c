/*
 * reporter.c — the "metrics" component (see reporter.h).
 *
 * Timing. A 1 s timer takes a Sample (sampler.c) and appends it to the ring.
 * Every `interval` a report carries the ring's oldest samples (at most
 * MREP_BATCH, LZ4-compressed) and the node's services; one report is in
 * flight at a time. The coordinator's answer sets the interval
 * (next_interval_ms: 1 s while someone watches the dashboard, the configured
 * metrics_report_interval otherwise, longer for a large idle cluster); a
 * backlog left after a report is sent at once. Samples leave the ring only
 * once acknowledged; a failed report is retried with a doubling delay (up to
 * 60 s) and the ring keeps the newest MREP_RING samples meanwhile, dropping
 * (and counting) the oldest.
 *
 * On the coordinator the samples go straight into the dashboard each second
 * (no RPC to itself).
 */
#include "metrics/reporter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/util.h"
#include "metrics/dashboard.h"
#include "metrics/report.h"
#include "metrics/sampler.h"
#include "p2p/p2p.h"

#define BACKOFF_MAX_MS 60000
#define CALL_TIMEOUT_MS 10000

typedef struct slot {
    uint64_t seq;
    json_t *sample;
} slot;

typedef struct reporter {
    p2p_ctx *ctx;
    p2p_msampler *sampler;
    uv_timer_t tick;
    int tick_open, running;
    slot ring[MREP_RING];
    size_t head, count; /* oldest at head */
    uint64_t next_seq;
    int64_t last_t;
    int inflight, freed;
    uint64_t inflight_last;
    uint64_t next_ship_ms;
    uint32_t interval_ms, backoff_ms;
    int outage_logged;
    p2p_reporter_stats st;
} reporter;

static uint64_t mono_ms(reporter *r)
{
    return uv_now(r->ctx->loop);
}

static void ring_push(reporter *r, json_t *s)
{
    if (r->count == MREP_RING) {
        json_decref(r->ring[r->head].sample);
        r->head = (r->head + 1) % MREP_RING;
        r->count--;
        r->st.dropped++;
    }
    slot *sl = &r->ring[(r->head + r->count) % MREP_RING];
    sl->seq = ++r->next_seq;
    sl->sample = s;
    r->count++;
}

static void ring_drop_upto(reporter *r, uint64_t seq)
{
    while (r->count && r->ring[r->head].seq <= seq) {
        json_decref(r->ring[r->head].sample);
        r->ring[r->head].sample = NULL;
        r->head = (r->head + 1) % MREP_RING;
        r->count--;
    }
}

static void ship(reporter *r);

static void on_reported(p2p_ctx *ctx, json_t *results, void *udata)
{
    reporter *r = udata;
    r->inflight = 0;
    if (r->freed) { /* the component went while the call was out */
        free(r);
        return;
    }
    json_t *res = json_object_get(results, "result"), *err = json_object_get(results, "error");
    uint64_t now = mono_ms(r);
    if (json_is_object(res) && json_is_true(json_object_get(res, "ok"))) {
        ring_drop_upto(r, r->inflight_last);
        r->st.reports++;
        json_t *ni = json_object_get(res, "next_interval_ms");
        if (json_is_integer(ni) && json_integer_value(ni) >= 1000 && json_integer_value(ni) <= 300000)
            r->interval_ms = (uint32_t)json_integer_value(ni);
        r->backoff_ms = 0;
        if (r->outage_logged) {
            p2p_log(ctx, P2P_LOG_INFO, "metrics", "reporting metrics to the coordinator again");
            r->outage_logged = 0;
        }
        /* a backlog (after an outage): on at once */
        int backlog = (uint64_t)r->count * 1000 > (uint64_t)r->interval_ms;
        r->next_ship_ms = now + (backlog ? 0 : r->interval_ms);
        if (backlog && r->running)
            ship(r);
        return;
    }
    int code = (int)json_integer_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    r->st.failures++;
    if (code == P2P_RPC_INVALID_PARAMS) {
        /* the coordinator will never take these: drop them, counted */
        size_t before = r->count;
        ring_drop_upto(r, r->inflight_last);
        r->st.dropped += before - r->count;
        p2p_log(ctx, P2P_LOG_WARN, "metrics", "the coordinator refused a metrics report: %s", msg ? msg : "?");
        r->next_ship_ms = now + r->interval_ms;
        return;
    }
    if (!r->outage_logged) {
        p2p_log(ctx, P2P_LOG_WARN, "metrics", "cannot report metrics to the coordinator (%d: %s); keeping up to %d s "
                "of samples", code, msg ? msg : "?", MREP_RING);
        r->outage_logged = 1;
    }
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : (r->interval_ms < 2000 ? 2000 : r->interval_ms);
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    r->next_ship_ms = now + r->backoff_ms;
}

static void ship(reporter *r)
{
    if (r->inflight || !r->count)
        return;
    size_t n = r->count < MREP_BATCH ? r->count : MREP_BATCH;
    json_t *params = NULL;
    while (n && !params) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append(arr, r->ring[(r->head + i) % MREP_RING].sample);
        params = mreport_encode(r->ctx->cfg.node_id, P2P_VERSION, arr);
        json_decref(arr);
        if (!params)
            n /= 2; /* over the coordinator's inflated-size limit: fewer samples per report */
    }
    if (!params) { /* one sample alone is too big: cannot happen within the decoder's bounds */
        ring_drop_upto(r, r->ring[r->head].seq);
        r->st.dropped++;
        r->next_ship_ms = mono_ms(r) + r->interval_ms;
        return;
    }
    json_object_set_new(params, "services", p2p__msampler_services(r->sampler));
    r->inflight = 1;
    r->inflight_last = r->ring[(r->head + n - 1) % MREP_RING].seq;
    p2p_call_remote(r->ctx, "role:coordinator", "metrics_dashboard/report_metrics", params, CALL_TIMEOUT_MS,
                    on_reported, r);
    json_decref(params);
}

/* The next tick just after the next wall-clock second: a fixed 1000 ms repeat
 * drifts and would now and then skip a second. */
static uint64_t to_next_second(void)
{
    return 1000 - p2p__wall_ms() % 1000 + 5;
}

static void on_tick(uv_timer_t *t)
{
    reporter *r = t->data;
    if (r->running)
        uv_timer_start(&r->tick, on_tick, to_next_second(), 0);
    int64_t now_s = (int64_t)(p2p__wall_ms() / 1000);
    if (now_s <= r->last_t)
        return; /* the timer ran early: one sample per second */
    r->last_t = now_s;
    json_t *s = p2p__msampler_take(r->sampler, now_s);
    r->st.samples++;
    if (r->ctx->cfg.coordinator_mode) {
        if (p2p__dash_running(r->ctx)) {
            json_t *one = json_pack("[o]", s);
            json_t *svcs = p2p__msampler_services(r->sampler);
            p2p__dash_ingest_local(r->ctx, one, svcs);
            json_decref(svcs);
            json_decref(one);
        } else {
            json_decref(s);
        }
        return;
    }
    ring_push(r, s);
    if (mono_ms(r) >= r->next_ship_ms)
        ship(r);
}

static void reporter_metrics(p2p_ctx *ctx, p2p_metrics_out *out, void *arg)
{
    reporter *r = arg;
    p2p__metrics_emit(out, "p2p_reporter_samples_total", "Metric samples taken (one per second).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)r->st.samples);
    p2p__metrics_emit(out, "p2p_reporter_reports_total", "Metric reports the coordinator accepted.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)r->st.reports);
    p2p__metrics_emit(out, "p2p_reporter_failures_total", "Metric reports that failed (samples kept).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)r->st.failures);
    p2p__metrics_emit(out, "p2p_reporter_dropped_total", "Metric samples dropped (ring full or refused).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)r->st.dropped);
    p2p__metrics_emit(out, "p2p_reporter_buffered", "Metric samples waiting to be reported.", P2P_METRIC_GAUGE, NULL,
                      NULL, (double)r->count);
    p2p__metrics_emit(out, "p2p_reporter_interval_ms", "Current reporting interval.", P2P_METRIC_GAUGE, NULL, NULL,
                      (double)r->interval_ms);
}

static int reporter_start(p2p_component *c, char **err)
{
    reporter *r = c->self;
    r->sampler = p2p__msampler_new(c->ctx);
    r->interval_ms = (uint32_t)c->ctx->cfg.metrics_report_interval * 1000;
    r->next_ship_ms = mono_ms(r) + r->interval_ms;
    uv_timer_init(c->ctx->loop, &r->tick);
    r->tick.data = r;
    uv_timer_start(&r->tick, on_tick, to_next_second(), 0);
    uv_unref((uv_handle_t *)&r->tick);
    r->tick_open = r->running = 1;
    p2p__metrics_source_add(c->ctx, "reporter", reporter_metrics, r);
    p2p_shared_set(c->ctx, "metrics.reporter", r);
    return 0;
}

static void reporter_stop(p2p_component *c)
{
    reporter *r = c->self;
    r->running = 0;
    p2p__metrics_source_remove(c->ctx, "reporter");
    p2p_shared_set(c->ctx, "metrics.reporter", NULL);
    if (r->tick_open) {
        uv_close((uv_handle_t *)&r->tick, NULL);
        r->tick_open = 0;
    }
}

static const p2p_component_ops reporter_ops = {
    .name = "metrics",
    .deps = (const char *const[]){"membership", "services", NULL},
    .start = reporter_start,
    .stop = reporter_stop,
};

static void reporter_free(p2p_ctx *ctx, void *arg)
{
    reporter *r = arg;
    while (r->count)
        ring_drop_upto(r, r->ring[r->head].seq);
    p2p__msampler_free(r->sampler);
    r->sampler = NULL;
    if (r->inflight)
        r->freed = 1; /* its callback frees it */
    else
        free(r);
}

int p2p__reporter_register(p2p_ctx *ctx)
{
    reporter *r = p2p__xcalloc(1, sizeof(*r));
    r->ctx = ctx;
    if (!p2p__component_add(ctx, &reporter_ops, r)) {
        free(r);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, reporter_free, r);
    return 0;
}

int p2p__reporter_stats(p2p_ctx *ctx, p2p_reporter_stats *out)
{
    reporter *r = p2p_shared_get(ctx, "metrics.reporter");
    if (!r)
        return -ENOENT;
    *out = r->st;
    out->buffered = r->count;
    out->interval_ms = r->interval_ms;
    return 0;
}
