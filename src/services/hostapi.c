/*
 * hostapi.c — what a native service can use (include/p2p/service.h): its
 * identity and settings, method handlers, logs, timers, background work,
 * metrics, health and persisted state.
 *
 * Timers and work belong to the instance (the loaded version) and end with it:
 * when it stops, its timers are closed and queued work is cancelled; work that
 * already runs on the pool finishes and its `done` runs with -ECANCELED. The
 * instance is freed only after all of that (p2p__svc_host_quiet). Metrics,
 * health and state belong to the entry (the service by name), so they survive
 * a reload: the new version sees the state the old one saved, counters go on.
 *
 * State saves are written on the thread pool (temp file, fsync, rename, fsync
 * of the folder: p2p__write_file_atomic). One write runs at a time per
 * service; saves made meanwhile are coalesced into the latest document, which
 * is written next. The in-memory document is updated at once, so a reload in
 * between sees it.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/util.h"
#include "services/internal.h"

P2P_EXTERN uint32_t p2p_svc_abi_minor(void)
{
    return P2P_SERVICE_ABI_MINOR;
}

P2P_EXTERN p2p_ctx *p2p_svc_ctx(const p2p_svc *svc)
{
    return svc->ctx;
}

P2P_EXTERN const char *p2p_svc_name(const p2p_svc *svc)
{
    return svc->man.name;
}

P2P_EXTERN const char *p2p_svc_version(const p2p_svc *svc)
{
    return svc->man.version;
}

P2P_EXTERN json_t *p2p_svc_settings(const p2p_svc *svc)
{
    return svc->man.settings;
}

P2P_EXTERN const char *p2p_svc_dir(const p2p_svc *svc)
{
    return svc->entry->dir;
}

P2P_EXTERN int p2p_svc_method(p2p_svc *svc, const char *name, p2p_method_fn fn, void *udata)
{
    if (!svc || !name || !fn || !svc->in_init)
        return -EINVAL;
    int listed = 0;
    for (size_t i = 0; i < svc->man.n_methods; i++)
        listed |= strcmp(svc->man.methods[i].name, name) == 0;
    if (!listed) {
        p2p_log(svc->ctx, P2P_LOG_WARN, svc->man.name,
                "p2p_svc_method(\"%s\"): not in the manifest's \"methods\"; not served", name);
        return -ENOENT;
    }
    for (size_t i = 0; i < svc->n_handlers; i++)
        if (strcmp(svc->handlers[i].name, name) == 0)
            return -EEXIST;
    svc->handlers = p2p__xrealloc(svc->handlers, (svc->n_handlers + 1) * sizeof(*svc->handlers));
    svc->handlers[svc->n_handlers++] = (svc_handler){p2p__xstrdup(name), fn, udata};
    return 0;
}

P2P_EXTERN void p2p_svc_log(p2p_svc *svc, p2p_log_level level, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    p2p__log_meta(svc->ctx, level, svc->man.name, NULL, NULL, 0, svc->man.name, NULL, "%s", buf);
}

/* ---- timers ---------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    svc_timer *t = h->data;
    p2p_svc *inst = t->inst;
    inst->timers_closing--;
    free(t);
    p2p__svc_instance_maybe_free(inst);
}

static void timer_unlink_close(svc_timer *t)
{
    p2p_svc *inst = t->inst;
    for (svc_timer **p = &inst->timers; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    inst->timers_closing++;
    uv_close((uv_handle_t *)&t->t, on_timer_closed);
}

static void on_timer(uv_timer_t *h)
{
    svc_timer *t = h->data;
    p2p_svc *inst = t->inst;
    int once = uv_timer_get_repeat(h) == 0;
    p2p_svc_timer_fn fn = t->fn;
    void *udata = t->udata;
    if (once)
        timer_unlink_close(t); /* before the callback, which may start another */
    fn(inst, udata);
}

P2P_EXTERN int64_t p2p_svc_timer(p2p_svc *svc, uint64_t delay_ms, uint64_t repeat_ms, p2p_svc_timer_fn fn,
                                 void *udata)
{
    if (!svc || !fn)
        return -EINVAL;
    if (svc->destroying || svc->stop_started)
        return -ECANCELED;
    svc_timer *t = p2p__xcalloc(1, sizeof(*t));
    t->inst = svc;
    t->fn = fn;
    t->udata = udata;
    t->id = ++svc->next_timer_id;
    uv_timer_init(svc->ctx->loop, &t->t);
    t->t.data = t;
    uv_timer_start(&t->t, on_timer, delay_ms, repeat_ms);
    t->next = svc->timers;
    svc->timers = t;
    return t->id;
}

P2P_EXTERN void p2p_svc_timer_stop(p2p_svc *svc, int64_t id)
{
    for (svc_timer *t = svc ? svc->timers : NULL; t; t = t->next) {
        if (t->id == id) {
            timer_unlink_close(t);
            return;
        }
    }
}

void p2p__svc_host_stop(p2p_svc *inst)
{
    while (inst->timers)
        timer_unlink_close(inst->timers);
}

int p2p__svc_host_quiet(const p2p_svc *inst)
{
    return inst->timers == NULL && inst->timers_closing == 0 && inst->works == 0;
}

/* ---- work ------------------------------------------------------------------------- */

typedef struct work_job {
    uv_work_t w;
    p2p_svc *inst;
    void (*work)(void *);
    void (*done)(p2p_svc *, void *, int);
    void *udata;
} work_job;

static void work_run(uv_work_t *w)
{
    work_job *j = w->data;
    j->work(j->udata);
}

static void work_after(uv_work_t *w, int status)
{
    work_job *j = w->data;
    p2p_svc *inst = j->inst;
    inst->works--;
    int st = status == UV_ECANCELED || inst->destroying || inst->stop_started ? -ECANCELED : 0;
    if (j->done)
        j->done(inst, j->udata, st);
    free(j);
    p2p__svc_instance_maybe_free(inst);
}

P2P_EXTERN int p2p_svc_work(p2p_svc *svc, void (*work)(void *udata),
                            void (*done)(p2p_svc *svc, void *udata, int status), void *udata)
{
    if (!svc || !work)
        return -EINVAL;
    if (svc->destroying || svc->stop_started)
        return -ECANCELED;
    work_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->inst = svc;
    j->work = work;
    j->done = done;
    j->udata = udata;
    int r = uv_queue_work(svc->ctx->loop, &j->w, work_run, work_after);
    if (r != 0) {
        free(j);
        return -EIO;
    }
    svc->works++;
    return 0;
}

/* ---- metrics ---------------------------------------------------------------------- */

static const double hist_bounds[SVC_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1,    2.5,   5};

static int metric_name_ok(const char *n)
{
    size_t l = n ? strlen(n) : 0;
    if (l == 0 || l > 64 || !((n[0] >= 'a' && n[0] <= 'z') || n[0] == '_'))
        return 0;
    for (size_t i = 1; i < l; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_'))
            return 0;
    return 1;
}

#define SVC_MAX_METRICS 256

static svc_metric *metric(p2p_svc *svc, const char *name, int type)
{
    if (!svc || !metric_name_ok(name))
        return NULL;
    svc_entry *e = svc->entry;
    for (size_t i = 0; i < e->n_metrics; i++)
        if (strcmp(e->metrics[i].name, name) == 0)
            return e->metrics[i].type == type ? &e->metrics[i] : NULL;
    if (e->n_metrics >= SVC_MAX_METRICS)
        return NULL;
    e->metrics = p2p__xrealloc(e->metrics, (e->n_metrics + 1) * sizeof(*e->metrics));
    svc_metric *m = &e->metrics[e->n_metrics++];
    memset(m, 0, sizeof(*m));
    m->name = p2p__xstrdup(name);
    m->type = type;
    /* service names may hold '-', which Prometheus names may not */
    char svcname[80];
    snprintf(svcname, sizeof svcname, "%s", e->name);
    for (char *p = svcname; *p; p++)
        if (*p == '-')
            *p = '_';
    m->prom = p2p__xasprintf("p2p_service_%s_%s%s", svcname, name, type == 0 ? "_total" : "");
    return m;
}

P2P_EXTERN int p2p_svc_counter_add(p2p_svc *svc, const char *name, double v)
{
    svc_metric *m = metric(svc, name, 0);
    if (!m || !(v >= 0) || !isfinite(v))
        return -EINVAL;
    m->value += v;
    return 0;
}

P2P_EXTERN int p2p_svc_gauge_set(p2p_svc *svc, const char *name, double v)
{
    svc_metric *m = metric(svc, name, 1);
    if (!m || !isfinite(v))
        return -EINVAL;
    m->value = v;
    return 0;
}

P2P_EXTERN int p2p_svc_observe(p2p_svc *svc, const char *name, double v)
{
    svc_metric *m = metric(svc, name, 2);
    if (!m || !isfinite(v))
        return -EINVAL;
    m->sum += v;
    m->count++;
    size_t b = 0;
    while (b < SVC_HIST_BUCKETS && v > hist_bounds[b])
        b++;
    m->buckets[b]++;
    return 0;
}

/* The services' figures: state and counts per service, then their own metrics. */
void p2p__svc_metrics_source(p2p_ctx *ctx, struct p2p_metrics_out *out, void *arg)
{
    (void)ctx;
    svc_manager *mgr = arg;
    static const char up_help[] = "1 when the pluggable service is running, else 0.";
    for (size_t i = 0; i < mgr->n_entries; i++) {
        svc_entry *e = mgr->entries[i];
        if (e->present || e->active)
            p2p__metrics_emit(out, "p2p_services_up", up_help, P2P_METRIC_GAUGE, "service", e->name,
                              e->state == SVC_RUNNING);
    }
    for (size_t i = 0; i < mgr->n_entries; i++) {
        svc_entry *e = mgr->entries[i];
        if (e->present || e->active)
            p2p__metrics_emit(out, "p2p_services_restarts_total", "Restarts of the service (crashes, operator).",
                              P2P_METRIC_COUNTER, "service", e->name, e->restarts);
    }
    for (size_t i = 0; i < mgr->n_entries; i++) {
        svc_entry *e = mgr->entries[i];
        if (e->present || e->active)
            p2p__metrics_emit(out, "p2p_services_inflight", "Calls in flight in the service.", P2P_METRIC_GAUGE,
                              "service", e->name, e->active ? (double)e->active->inflight : 0);
    }
    for (size_t i = 0; i < mgr->n_entries; i++) {
        svc_entry *e = mgr->entries[i];
        if (e->present || e->active)
            p2p__metrics_emit(out, "p2p_services_health", "Health the service reports: 0 ok, 1 warning, 2 critical.",
                              P2P_METRIC_GAUGE, "service", e->name, e->health);
    }
    for (size_t i = 0; i < mgr->n_entries; i++) {
        svc_entry *e = mgr->entries[i];
        for (size_t k = 0; k < e->n_metrics; k++) {
            svc_metric *m = &e->metrics[k];
            if (m->type == 0)
                p2p__metrics_emit(out, m->prom, "A counter of the service.", P2P_METRIC_COUNTER, NULL, NULL, m->value);
            else if (m->type == 1)
                p2p__metrics_emit(out, m->prom, "A gauge of the service.", P2P_METRIC_GAUGE, NULL, NULL, m->value);
            else {
                /* as a count, a sum and cumulative "le" buckets: enough for
                 * histogram_quantile() over *_bucket-like gauges */
                char *c = p2p__xasprintf("%s_count", m->prom), *s = p2p__xasprintf("%s_sum", m->prom);
                p2p__metrics_emit(out, c, "Observations of the service's histogram.", P2P_METRIC_COUNTER, NULL, NULL,
                                  (double)m->count);
                p2p__metrics_emit(out, s, "Sum of the service's histogram.", P2P_METRIC_COUNTER, NULL, NULL, m->sum);
                uint64_t cum = 0;
                char *bn = p2p__xasprintf("%s_le", m->prom);
                for (size_t b = 0; b <= SVC_HIST_BUCKETS; b++) {
                    cum += m->buckets[b];
                    char le[32];
                    if (b < SVC_HIST_BUCKETS)
                        snprintf(le, sizeof le, "%g", hist_bounds[b]);
                    else
                        snprintf(le, sizeof le, "+Inf");
                    p2p__metrics_emit(out, bn, "Cumulative bucket counts of the service's histogram.",
                                      P2P_METRIC_COUNTER, "le", le, (double)cum);
                }
                /* the collector keeps pointers to names until it renders: park them on the metric */
                free(m->name_count);
                free(m->name_sum);
                free(m->name_le);
                m->name_count = c;
                m->name_sum = s;
                m->name_le = bn;
            }
        }
    }
}

/* ---- health ----------------------------------------------------------------------- */

static char *health_copy(const char *message)
{
    if (!message)
        return NULL;
    size_t n = strnlen(message, 1024);
    char *m = p2p__xmalloc(n + 1);
    memcpy(m, message, n);
    m[n] = '\0';
    return m;
}

/* The entry reports `inst`'s health (it just became the active version). */
void p2p__svc_health_adopt(svc_entry *e, p2p_svc *inst)
{
    if (e->health != inst->health)
        p2p_log(inst->ctx, inst->health == P2P_HEALTH_OK ? P2P_LOG_INFO : P2P_LOG_WARN, e->name,
                "health: %s%s%s (version %s)",
                inst->health == P2P_HEALTH_OK ? "ok" : inst->health == P2P_HEALTH_WARNING ? "warning" : "critical",
                inst->health_msg ? ": " : "", inst->health_msg ? inst->health_msg : "", inst->man.version);
    e->health = inst->health;
    free(e->health_msg);
    e->health_msg = health_copy(inst->health_msg);
}

P2P_EXTERN void p2p_svc_health(p2p_svc *svc, p2p_health level, const char *message)
{
    if (!svc)
        return;
    svc_entry *e = svc->entry;
    if ((unsigned)level > P2P_HEALTH_CRITICAL)
        level = P2P_HEALTH_CRITICAL;
    svc->health = level;
    free(svc->health_msg);
    svc->health_msg = health_copy(message);
    /* a version starting beside the running one, or a retired one, keeps its own
     * health until it is the active one (p2p__svc_health_adopt) */
    if (e->active && e->active != svc)
        return;
    if (e->health != level)
        p2p_log(svc->ctx, level == P2P_HEALTH_OK ? P2P_LOG_INFO : P2P_LOG_WARN, e->name, "health: %s%s%s",
                level == P2P_HEALTH_OK ? "ok" : level == P2P_HEALTH_WARNING ? "warning" : "critical",
                message ? ": " : "", message ? message : "");
    e->health = level;
    free(e->health_msg);
    e->health_msg = health_copy(message);
}

/* ---- state -------------------------------------------------------------------------- */

#define STATE_MAX_BYTES (16u << 20)

int p2p__svc_state_load(svc_entry *e, char **err)
{
    char *text = NULL;
    size_t len = 0;
    int r = p2p__read_file(e->state_path, STATE_MAX_BYTES, &text, &len);
    if (r == -ENOENT) {
        e->state_doc = json_object();
        return 0;
    }
    if (r != 0)
        return p2p__fail(err, r, "cannot read its state %s: %s", e->state_path, strerror(-r));
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(doc)) {
        json_decref(doc);
        /* the writes are atomic, so this is not a torn write: someone edited it */
        return p2p__fail(err, -EINVAL,
                         "its state %s is not a JSON object (line %d: %s); fix or remove the file to start afresh",
                         e->state_path, je.line, doc ? "not an object" : je.text);
    }
    e->state_doc = doc;
    return 0;
}

P2P_EXTERN json_t *p2p_svc_state(const p2p_svc *svc)
{
    return svc->entry->state_doc;
}

typedef struct state_job {
    uv_work_t w;
    svc_entry *e;
    char *path;
    char *text;
    size_t len;
    int rc;
} state_job;

static void state_write_work(uv_work_t *w)
{
    state_job *j = w->data;
    j->rc = p2p__write_file_atomic(j->path, j->text, j->len, 0600);
}

static void state_write_next(svc_entry *e);

static void state_write_after(uv_work_t *w, int status)
{
    state_job *j = w->data;
    svc_entry *e = j->e;
    e->state_writing = 0;
    if (status == 0 && j->rc != 0) {
        p2p_log(e->mgr->ctx, P2P_LOG_ERROR, e->name, "cannot save its state to %s: %s", j->path, strerror(-j->rc));
        p2p__svc_note_error(e, "cannot save its state: %s", strerror(-j->rc));
    }
    free(j->path);
    free(j->text);
    free(j);
    state_write_next(e);
}

static void state_write_next(svc_entry *e)
{
    if (e->state_writing || !e->state_next)
        return;
    json_t *doc = e->state_next;
    e->state_next = NULL;
    state_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->e = e;
    j->path = p2p__xstrdup(e->state_path);
    j->text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (!j->text) {
        free(j->path);
        free(j);
        return;
    }
    j->len = strlen(j->text);
    if (uv_queue_work(e->mgr->ctx->loop, &j->w, state_write_work, state_write_after) != 0) {
        free(j->path);
        free(j->text);
        free(j);
        return;
    }
    e->state_writing = 1;
}

P2P_EXTERN int p2p_svc_state_save(p2p_svc *svc, json_t *doc)
{
    if (!svc || !json_is_object(doc))
        return -EINVAL;
    svc_entry *e = svc->entry;
    json_t *copy = json_deep_copy(doc);
    if (!copy)
        return -ENOMEM;
    json_decref(e->state_doc);
    e->state_doc = json_incref(copy);
    json_decref(e->state_next);
    e->state_next = copy;
    state_write_next(e);
    return 0;
}

void p2p__svc_entry_free_host(svc_entry *e)
{
    for (size_t i = 0; i < e->n_metrics; i++) {
        free(e->metrics[i].name);
        free(e->metrics[i].prom);
        free(e->metrics[i].name_count);
        free(e->metrics[i].name_sum);
        free(e->metrics[i].name_le);
    }
    free(e->metrics);
    free(e->health_msg);
    json_decref(e->state_doc);
    json_decref(e->state_next);
}

json_t *p2p__services_own_metrics(p2p_ctx *ctx, const char *name)
{
    svc_manager *mgr = p2p_shared_get(ctx, "services");
    for (size_t i = 0; mgr && i < mgr->n_entries; i++) {
        svc_entry *e = mgr->entries[i];
        if (strcmp(e->name, name) != 0)
            continue;
        json_t *o = json_object();
        for (size_t k = 0; k < e->n_metrics && k < 64; k++) {
            svc_metric *m = &e->metrics[k];
            if (m->type == 2) {
                char key[160];
                snprintf(key, sizeof key, "%.120s_count", m->name);
                json_object_set_new(o, key, json_integer((json_int_t)m->count));
                snprintf(key, sizeof key, "%.120s_sum", m->name);
                json_object_set_new(o, key, json_real(isfinite(m->sum) ? m->sum : 0));
            } else {
                json_object_set_new(o, m->name, json_real(isfinite(m->value) ? m->value : 0));
            }
        }
        return o;
    }
    return NULL;
}
