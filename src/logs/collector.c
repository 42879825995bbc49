/*
 * collector.c — the `log_collector` service (coordinator): the methods over
 * the segment store, group-committed durability, and long-poll follow.
 *
 * Durability: a batch is written to its node's segment with one write(2) on
 * the loop thread (into the page cache: microseconds, and it survives a kill
 * of this process); fsync runs on the thread pool. add_logs answers once an
 * fsync that started after its write has finished, so an acknowledged record
 * also survives a power cut. Only one fsync job runs at a time and it covers
 * every segment written since the previous one (group commit): under load many
 * batches share one fsync, and the loop never waits for the disk.
 *
 * Follow: get_logs with a cursor and wait_ms parks the call as a wake-up-only
 * subscriber (follow.c) when nothing new matches; the first ingested batch
 * with a matching record answers it with a resume query from its cursor.
 * Waiting calls are bounded (LOGCOL_MAX_WAITERS); a follower that does not
 * come back costs nothing.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "logs/http.h"
#include "logs/collector.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "logs/query.h"
#include "logs/record.h"
#include "logs/store.h"
#include "rpc/jsonrpc.h"

#define LOGCOL_MAX_WAITERS 256
#define LOGCOL_MAX_WAIT_MS 60000
#define LOGCOL_DEFAULT_LIMIT 100
#define LOGCOL_MAX_OFFSET 10000000
#define LOGCOL_RATE_SECONDS 10
#define LOGCOL_TICK_MS 60000

typedef struct ack_wait {
    struct ack_wait *next;
    p2p_call *call;
    uint64_t gen; /* write generation that must be synced first */
    uint64_t acked;
} ack_wait;

typedef struct waiter waiter;

struct logcol {
    p2p_ctx *ctx;
    logstore *store;
    logfollow follow;
    uv_timer_t tick;
    int tick_open;
    int running;
    /* group commit */
    uint64_t write_gen, synced_gen;
    int sync_inflight;
    ack_wait *acks, **acks_tail;
    int sync_errno; /* last fsync failure, 0 = none */
    /* figures */
    uint64_t refused_batches;
    uint64_t rate_sec[LOGCOL_RATE_SECONDS];
    int64_t rate_at[LOGCOL_RATE_SECONDS];
    waiter *waiters;
    size_t n_waiters;
};

struct waiter {
    waiter *next;
    logcol *col;
    p2p_call *call;
    logsub *sub;
    logcursor cur;
    size_t limit;
    uv_timer_t timer;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- group commit ------------------------------------------------------------------ */

typedef struct sync_job {
    uv_work_t w;
    logcol *col;
    uint64_t gen;
    int *fds;
    size_t n_fds;
    char **dirs;
    size_t n_dirs;
    int err;
} sync_job;

static void sync_work(uv_work_t *w)
{
    sync_job *j = w->data;
    for (size_t i = 0; i < j->n_fds; i++) {
        if (fdatasync(j->fds[i]) != 0 && !j->err)
            j->err = errno;
        close(j->fds[i]);
    }
    for (size_t i = 0; i < j->n_dirs; i++) {
        int fd = open(j->dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            if (fsync(fd) != 0 && !j->err)
                j->err = errno;
            close(fd);
        }
    }
}

static void kick_sync(logcol *col);

static void answer_acks(logcol *col, int err)
{
    while (col->acks && col->acks->gen <= col->synced_gen) {
        ack_wait *a = col->acks;
        col->acks = a->next;
        if (err) {
            char msg[160];
            snprintf(msg, sizeof msg, "the records were written but fsync failed (%s); send them again",
                     strerror(err));
            p2p_call_error(a->call, P2P_RPC_INTERNAL_ERROR, msg, NULL);
        } else {
            p2p_call_reply(a->call, json_pack("{s:I}", "acked", (json_int_t)a->acked));
        }
        free(a);
    }
    if (!col->acks)
        col->acks_tail = &col->acks;
}

static void sync_after(uv_work_t *w, int status)
{
    sync_job *j = w->data;
    logcol *col = j->col;
    col->sync_inflight = 0;
    col->synced_gen = j->gen;
    col->sync_errno = j->err;
    if (j->err)
        p2p_log(col->ctx, P2P_LOG_ERROR, "log_collector", "fsync of log segments failed: %s", strerror(j->err));
    answer_acks(col, j->err);
    for (size_t i = 0; i < j->n_dirs; i++)
        free(j->dirs[i]);
    free(j->dirs);
    free(j->fds);
    free(j);
    kick_sync(col);
}

static void kick_sync(logcol *col)
{
    if (col->sync_inflight || col->synced_gen == col->write_gen || !col->store)
        return;
    sync_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->col = col;
    j->gen = col->write_gen;
    logstore_take_dirty(col->store, &j->fds, &j->n_fds, &j->dirs, &j->n_dirs);
    col->sync_inflight = 1;
    if (uv_queue_work(col->ctx->loop, &j->w, sync_work, sync_after) != 0) {
        sync_work(&j->w); /* cannot happen with a live loop; stay correct anyway */
        sync_after(&j->w, 0);
    }
}

/* ---- params ---------------------------------------------------------------------- */

static void rate_add(logcol *col, uint64_t n)
{
    int64_t sec = (int64_t)(p2p__wall_ms() / 1000);
    size_t k = (size_t)(sec % LOGCOL_RATE_SECONDS);
    if (col->rate_at[k] != sec) {
        col->rate_at[k] = sec;
        col->rate_sec[k] = 0;
    }
    col->rate_sec[k] += n;
}

static double rate_get(const logcol *col)
{
    int64_t sec = (int64_t)(p2p__wall_ms() / 1000);
    uint64_t sum = 0;
    for (size_t k = 0; k < LOGCOL_RATE_SECONDS; k++)
        if (col->rate_at[k] > sec - LOGCOL_RATE_SECONDS && col->rate_at[k] < sec)
            sum += col->rate_sec[k];
    return (double)sum / (LOGCOL_RATE_SECONDS - 1);
}

/* since/until: seconds since the epoch (number), ISO 8601 UTC
 * ("2026-01-02T03:04:05[.123456][Z]"), or an age ("90s", "15m", "2h", "7d").
 * Returns microseconds, or -1. */
static int64_t parse_time(json_t *v, int64_t now)
{
    if (json_is_number(v)) {
        double d = json_number_value(v);
        return isfinite(d) && d >= 0 && d < 32503680000.0 ? (int64_t)llround(d * 1e6) : -1;
    }
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    if (n >= 2 && n < 16 && strspn(s, "0123456789") == n - 1) {
        int64_t k = strtoll(s, NULL, 10), unit;
        switch (s[n - 1]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: return -1;
        }
        if (k > 36500LL * 86400 / unit)
            return -1;
        return now - k * unit * 1000000;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    int64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                frac = frac * 10 + (*p - '0');
        if (!digits)
            return -1;
        for (; digits < 6; digits++)
            frac *= 10;
    }
    if (*p == 'Z')
        p++;
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t * 1000000 + frac;
}

typedef struct get_params {
    logfilter f;
    int regex;
    regex_t re;
    int has_re;
    int has_cursor;
    logcursor cur;
    size_t limit, offset;
    int wait_ms;
} get_params;

static void get_params_free(get_params *g)
{
    if (g->has_re)
        regfree(&g->re);
    logcursor_free(&g->cur);
}

/* Parses get_logs params. Returns 0, or -1 after answering the call. */
static int parse_get(p2p_call *call, json_t *params, get_params *g)
{
    memset(g, 0, sizeof(*g));
    g->limit = LOGCOL_DEFAULT_LIMIT;
    char err[200] = "";
    if (params && !json_is_object(params)) {
        snprintf(err, sizeof err, "params must be an object");
        goto bad;
    }
    static const char *const allowed[] = {"node_id", "level",  "logger_name", "logger", "search", "regex", "since",
                                          "until",   "limit",  "offset",      "cursor", "wait_ms", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, key) == 0;
        if (!ok) {
            snprintf(err, sizeof err, "unexpected parameter '%.40s'", key);
            goto bad;
        }
        if (json_is_null(v))
            continue;
        if (!strcmp(key, "node_id") || !strcmp(key, "logger_name") || !strcmp(key, "logger") ||
            !strcmp(key, "search") || !strcmp(key, "level") || !strcmp(key, "cursor")) {
            if (!json_is_string(v)) {
                snprintf(err, sizeof err, "%s must be a string", key);
                goto bad;
            }
        }
        const char *s = json_string_value(v);
        if (!strcmp(key, "node_id")) {
            g->f.node = *s ? s : NULL;
        } else if (!strcmp(key, "logger_name") || !strcmp(key, "logger")) {
            g->f.logger = *s ? s : NULL;
        } else if (!strcmp(key, "level")) {
            int l = logrec_level_parse(s);
            if (l < 0) {
                snprintf(err, sizeof err, "level must be DEBUG, INFO, WARNING, ERROR or CRITICAL");
                goto bad;
            }
            g->f.min_level = l;
        } else if (!strcmp(key, "search")) {
            if (strlen(s) > LOGQ_MAX_SEARCH) {
                snprintf(err, sizeof err, "search must be at most %d bytes", LOGQ_MAX_SEARCH);
                goto bad;
            }
            g->f.search = *s ? s : NULL;
        } else if (!strcmp(key, "regex")) {
            if (!json_is_boolean(v)) {
                snprintf(err, sizeof err, "regex must be true or false");
                goto bad;
            }
            g->regex = json_is_true(v);
        } else if (!strcmp(key, "since") || !strcmp(key, "until")) {
            int64_t t = parse_time(v, now_us());
            if (t < 0) {
                snprintf(err, sizeof err,
                         "%s must be seconds since the epoch, an ISO 8601 UTC time or an age like 15m", key);
                goto bad;
            }
            if (!strcmp(key, "since"))
                g->f.since_us = t ? t : 1;
            else
                g->f.until_us = t ? t : 1;
        } else if (!strcmp(key, "limit") || !strcmp(key, "offset") || !strcmp(key, "wait_ms")) {
            json_int_t hi = !strcmp(key, "limit") ? LOGQ_MAX_LIMIT
                            : !strcmp(key, "offset") ? LOGCOL_MAX_OFFSET
                                                     : LOGCOL_MAX_WAIT_MS;
            json_int_t lo = !strcmp(key, "limit") ? 1 : 0;
            if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
                snprintf(err, sizeof err, "%s must be an integer in %lld..%lld", key, (long long)lo, (long long)hi);
                goto bad;
            }
            if (!strcmp(key, "limit"))
                g->limit = (size_t)json_integer_value(v);
            else if (!strcmp(key, "offset"))
                g->offset = (size_t)json_integer_value(v);
            else
                g->wait_ms = (int)json_integer_value(v);
        } else if (!strcmp(key, "cursor")) {
            if (logcursor_parse(s, &g->cur, err, sizeof err) != 0)
                goto bad;
            g->has_cursor = 1;
        }
    }
    if (g->f.since_us && g->f.until_us && g->f.since_us > g->f.until_us) {
        snprintf(err, sizeof err, "since is after until");
        goto bad;
    }
    if (g->regex && g->f.search) {
        if (logfilter_regcomp(&g->re, g->f.search, err, sizeof err) != 0)
            goto bad;
        g->has_re = 1;
        g->f.re = &g->re;
    }
    return 0;
bad:;
    char *msg = p2p__xasprintf("Invalid params: %s", err);
    p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
    free(msg);
    get_params_free(g);
    return -1;
}

static json_t *result_json(const logquery_result *q, int resume)
{
    json_t *logs = json_array();
    for (size_t i = 0; i < q->n; i++)
        json_array_append_new(logs, logrec_to_json(q->recs[i]));
    json_t *o = json_pack("{s:o, s:I, s:s}", "logs", logs, "total", (json_int_t)q->total, "cursor", q->cursor);
    if (resume)
        json_object_set_new(o, "skipped", json_integer((json_int_t)q->skipped));
    return o;
}

/* ---- methods ------------------------------------------------------------------------ */

static void m_add_logs(p2p_call *call, json_t *params, void *udata)
{
    logcol *col = udata;
    const char *from = p2p__call_node_id(call);
    if (!from) {
        p2p_call_error(call, P2P_RPC_E_FORBIDDEN,
                       "Forbidden: only a node may call add_logs, directly with its own certificate", NULL);
        return;
    }
    logbatch b;
    char err[300];
    if (logbatch_decode(params, now_us(), &b, err, sizeof err) != 0) {
        col->refused_batches++;
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, err, NULL);
        return;
    }
    if (strcmp(b.node, from) != 0) {
        col->refused_batches++;
        snprintf(err, sizeof err, "Forbidden: node %s may not add lines as node %s", from, b.node);
        logbatch_free(&b);
        p2p_call_error(call, P2P_RPC_E_FORBIDDEN, err, NULL);
        return;
    }
    logrec **stored = NULL;
    size_t n = 0;
    int r = logstore_append(col->store, &b, &stored, &n, (int64_t)(p2p__wall_ms() / 1000));
    if (r != 0) {
        col->refused_batches++;
        snprintf(err, sizeof err, "cannot store the records (%s); nothing stored", strerror(-r));
        logbatch_free(&b);
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, err, NULL);
        return;
    }
    logstream *st = logstore_find(col->store, b.node);
    if (n) {
        col->write_gen++;
        rate_add(col, n);
        if (col->store->total_bytes > col->store->cfg.retention_bytes)
            logstore_retention(col->store, (int64_t)(p2p__wall_ms() / 1000));
        logfollow_publish(&col->follow, stored, n);
    }
    logbatch_free(&b);
    ack_wait *a = p2p__xcalloc(1, sizeof(*a));
    a->call = call;
    a->gen = col->write_gen;
    a->acked = st ? st->hwm : 0;
    *col->acks_tail = a;
    col->acks_tail = &a->next;
    answer_acks(col, 0); /* nothing new to sync: answered now */
    kick_sync(col);
}

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Answers a parked get_logs and drops it. */
static void waiter_finish(waiter *w)
{
    logcol *col = w->col;
    for (waiter **pp = &col->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            col->n_waiters--;
            break;
        }
    logquery_result q;
    logquery_run(col->store, logsub_filter(w->sub), &w->cur, w->limit, 0, &q);
    p2p_call_reply(w->call, result_json(&q, 1));
    logquery_result_free(&q);
    logsub_close(&col->follow, w->sub);
    logcursor_free(&w->cur);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void on_waiter_wake(logsub *sub, void *arg)
{
    waiter_finish(arg);
}

static void on_waiter_timeout(uv_timer_t *t)
{
    waiter_finish(t->data);
}

static void m_get_logs(p2p_call *call, json_t *params, void *udata)
{
    logcol *col = udata;
    get_params g;
    if (parse_get(call, params, &g) != 0)
        return;
    int resume = g.has_cursor || g.wait_ms > 0;
    logquery_result q;
    logquery_run(col->store, &g.f, g.has_cursor ? &g.cur : NULL, g.limit, g.offset, &q);
    if (g.wait_ms > 0 && !g.has_cursor) {
        /* follow from now: the tail query's cursor is "now" */
        char err[200];
        logcursor_free(&g.cur);
        logcursor_parse(q.cursor, &g.cur, err, sizeof err);
        logquery_result_free(&q);
        logquery_run(col->store, &g.f, &g.cur, g.limit, 0, &q);
    }
    if (q.n > 0 || q.skipped > 0 || g.wait_ms == 0 || !col->running) {
        p2p_call_reply(call, result_json(&q, resume));
        logquery_result_free(&q);
        get_params_free(&g);
        return;
    }
    if (col->n_waiters >= LOGCOL_MAX_WAITERS) {
        logquery_result_free(&q);
        get_params_free(&g);
        p2p_call_error(call, P2P_RPC_SHUTTING_DOWN - 10,
                       "too many followers are waiting (256); retry shortly or call without wait_ms", NULL);
        return;
    }
    /* park it: nothing matches yet */
    waiter *w = p2p__xcalloc(1, sizeof(*w));
    char err[200];
    w->sub = logfollow_subscribe(&col->follow, &g.f, g.regex, 0, on_waiter_wake, w, err, sizeof err);
    w->col = col;
    w->call = call;
    w->limit = g.limit;
    logcursor_parse(q.cursor, &w->cur, err, sizeof err); /* the answer's cursor: where the wait starts */
    logquery_result_free(&q);
    get_params_free(&g);
    uv_timer_init(col->ctx->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_waiter_timeout, (uint64_t)g.wait_ms, 0);
    w->next = col->waiters;
    col->waiters = w;
    col->n_waiters++;
}

static void m_get_log_sources(p2p_call *call, json_t *params, void *udata)
{
    logcol *col = udata;
    if (params && !(json_is_object(params) && json_object_size(params) == 0) &&
        !(json_is_array(params) && json_array_size(params) == 0)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: get_log_sources takes none", NULL);
        return;
    }
    p2p_call_reply(call, p2p__logcol_sources_json(col));
}

static void m_clear_logs(p2p_call *call, json_t *params, void *udata)
{
    logcol *col = udata;
    json_t *node = json_is_object(params) ? json_object_get(params, "node_id") : NULL;
    if ((params && !json_is_object(params)) || (node && !json_is_null(node) && !json_is_string(node)) ||
        (json_is_object(params) && json_object_size(params) > (node ? 1u : 0u))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {node_id?: string} (none = all)",
                       NULL);
        return;
    }
    const char *id = json_is_string(node) ? json_string_value(node) : NULL;
    int r = logstore_clear(col->store, id);
    if (r == -ENOENT) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: no logs from that node", NULL);
        return;
    }
    if (r != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "cannot clear the logs: %s", strerror(-r));
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, msg, NULL);
        return;
    }
    col->write_gen++; /* the new empty segments: synced with the next fsync */
    kick_sync(col);
    p2p_log(col->ctx, P2P_LOG_INFO, "log_collector", "logs cleared: %s", id ? id : "all nodes");
    p2p_call_reply(call, json_pack("{s:b, s:s}", "cleared", 1, "node_id", id ? id : "all"));
}

static json_t *ts_json(int64_t us)
{
    return us ? json_real((double)us / 1e6) : json_null();
}

static void m_get_stats(p2p_call *call, json_t *params, void *udata)
{
    logcol *col = udata;
    logstore *s = col->store;
    json_t *nodes = json_object();
    uint64_t total_lines[LOGREC_NLEVELS] = {0}, ingested = 0, lost = 0, supp = 0, damaged = 0;
    int64_t oldest = 0, newest = 0;
    for (size_t i = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        json_t *lv = json_object();
        for (int l = 0; l < LOGREC_NLEVELS; l++) {
            json_object_set_new(lv, logrec_level_name(l), json_integer((json_int_t)st->lines[l]));
            total_lines[l] += st->lines[l];
        }
        uint64_t bytes = 0;
        for (size_t k = 0; k < st->n_segs; k++)
            bytes += st->segs[k].bytes;
        json_object_set_new(
            nodes, st->node,
            json_pack("{s:o, s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:I, s:I}", "lines", lv, "in_memory",
                      (json_int_t)st->count, "ingested", (json_int_t)st->ingested, "bytes", (json_int_t)bytes,
                      "segments", (json_int_t)st->n_segs, "oldest", ts_json(st->oldest_ts_us), "newest",
                      ts_json(st->newest_ts_us), "acked_seq", (json_int_t)st->hwm, "lost", (json_int_t)st->lost,
                      "suppressed", (json_int_t)st->suppressed, "damaged_bytes", (json_int_t)st->damaged_bytes));
        ingested += st->ingested;
        lost += st->lost;
        supp += st->suppressed;
        damaged += st->damaged_bytes;
        if (st->oldest_ts_us && (!oldest || st->oldest_ts_us < oldest))
            oldest = st->oldest_ts_us;
        if (st->newest_ts_us > newest)
            newest = st->newest_ts_us;
    }
    json_t *lv = json_object();
    for (int l = 0; l < LOGREC_NLEVELS; l++)
        json_object_set_new(lv, logrec_level_name(l), json_integer((json_int_t)total_lines[l]));
    json_t *o = json_pack("{s:o, s:o, s:I, s:I, s:o, s:o, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I}", "nodes", nodes,
                          "lines", lv, "ingested", (json_int_t)ingested, "bytes", (json_int_t)s->total_bytes, "oldest",
                          ts_json(oldest), "newest", ts_json(newest), "lost", (json_int_t)lost, "suppressed",
                          (json_int_t)supp, "ingest_rate", rate_get(col), "refused_batches",
                          (json_int_t)col->refused_batches, "deleted_segments", (json_int_t)s->deleted_segments,
                          "damaged_bytes", (json_int_t)damaged, "followers",
                          (json_int_t)(col->follow.n), "max_log_entries", (json_int_t)s->cfg.max_entries);
    p2p_call_reply(call, o);
}

static const p2p_method_desc methods[] = {
    {"add_logs",
     "A node's log records, stored durably; answers {acked: highest seq stored}. Only a node, for itself.",
     "{node_id, records: [{seq, ts, level, logger, message, file?, func?, line?, service?, request_id?, lost?, "
     "suppressed?}]}",
     0, m_add_logs, NULL},
    {"get_logs", "Collected log lines, filtered; oldest first; a cursor resumes exactly; wait_ms follows.",
     "{node_id?, level? (minimum), logger_name?, search?, regex?, since?, until?, limit?, offset?, cursor?, wait_ms?}",
     P2P_METHOD_READONLY, m_get_logs, NULL},
    {"get_log_sources", "The nodes, loggers and levels seen in the collected logs.", "none", P2P_METHOD_READONLY,
     m_get_log_sources, NULL},
    {"clear_logs", "Deletes the collected logs of one node, or of all.", "{node_id?}", P2P_METHOD_ADMIN,
     m_clear_logs, NULL},
    {"get_stats", "Lines per node and level, bytes, oldest/newest, lost and suppressed counts, ingest rate.", "none",
     P2P_METHOD_READONLY, m_get_stats, NULL},
};

/* ---- component ------------------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    logcol *col = t->data;
    logstore_retention(col->store, (int64_t)(p2p__wall_ms() / 1000));
    kick_sync(col);
}

static int logcol_start(p2p_component *c, char **err)
{
    logcol *col = c->self;
    p2p_ctx *ctx = c->ctx;
    char *dir = p2p__xasprintf("%s/logs", ctx->cfg.state_directory);
    logstore_cfg cfg = {dir, (uint64_t)ctx->cfg.log_segment_bytes, (uint64_t)ctx->cfg.log_retention_bytes,
                        ctx->cfg.log_retention_days, (size_t)ctx->cfg.max_log_entries};
    uint64_t t0 = uv_hrtime();
    int r = col->store ? 0 : logstore_open(&col->store, &cfg, err);
    free(dir);
    if (r)
        return r;
    static const p2p_service_desc desc = {"log_collector", P2P_VERSION,
                                          "Cluster log collection: every node's lines, stored and followed", 1};
    r = p2p_service_register(ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(methods) / sizeof(methods[0]); i++) {
        p2p_method_desc d = methods[i];
        d.udata = col;
        r = p2p_method_register(ctx, "log_collector", &d);
        if (r == -EEXIST)
            r = 0;
    }
    if (r == 0)
        r = p2p__logs_http_start(ctx);
    if (r != 0) {
        *err = p2p__xasprintf("cannot register the log_collector service: %s", p2p_strerror(r));
        return r;
    }
    size_t lines = 0;
    for (size_t i = 0; i < col->store->n; i++)
        lines += col->store->streams[i]->count;
    p2p_log(ctx, P2P_LOG_INFO, "log_collector", "%zu nodes, %zu lines read back, %llu bytes on disk in %.1f ms",
            col->store->n, lines, (unsigned long long)col->store->total_bytes, (double)(uv_hrtime() - t0) / 1e6);
    logstore_retention(col->store, (int64_t)(p2p__wall_ms() / 1000));
    uv_timer_init(ctx->loop, &col->tick);
    col->tick.data = col;
    uv_timer_start(&col->tick, on_tick, LOGCOL_TICK_MS, LOGCOL_TICK_MS);
    uv_unref((uv_handle_t *)&col->tick);
    col->tick_open = 1;
    col->running = 1;
    p2p_shared_set(ctx, "log_collector", col);
    return 0;
}

static void logcol_stop(p2p_component *c)
{
    logcol *col = c->self;
    col->running = 0;
    p2p__logs_http_stop(c->ctx);
    while (col->waiters)
        waiter_finish(col->waiters); /* followers get what there is */
    if (col->tick_open) {
        uv_close((uv_handle_t *)&col->tick, NULL);
        col->tick_open = 0;
    }
    p2p_shared_set(c->ctx, "log_collector", NULL);
    /* a running fsync job answers its acks when the agent drains the loop */
}

static const p2p_component_ops logcol_ops = {
    .name = "log_collector",
    .deps = NULL,
    .start = logcol_start,
    .stop = logcol_stop,
};

static void free_col(p2p_ctx *ctx, void *arg)
{
    logcol *col = arg;
    /* acks still waiting (the loop is gone): their exchanges are gone with it */
    while (col->acks) {
        ack_wait *a = col->acks;
        col->acks = a->next;
        free(a);
    }
    logfollow_close_all(&col->follow);
    logstore_close(col->store);
    free(col);
}

int p2p__logcol_register(p2p_ctx *ctx)
{
    logcol *col = p2p__xcalloc(1, sizeof(*col));
    col->ctx = ctx;
    col->acks_tail = &col->acks;
    if (!p2p__component_add(ctx, &logcol_ops, col)) {
        free(col);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_col, col);
    return 0;
}

logfollow *p2p__logcol_follow(logcol *col)
{
    return &col->follow;
}

logstore *p2p__logcol_store(logcol *col)
{
    return col->store;
}

json_t *p2p__logcol_sources_json(logcol *col)
{
    json_t *nodes = json_array(), *loggers = json_object(), *levels = json_array();
    for (size_t i = 0; i < col->store->n; i++) {
        logstream *st = col->store->streams[i];
        json_array_append_new(nodes, json_string(st->node));
        for (size_t k = 0; k < st->count; k++)
            json_object_set_new(loggers, logstream_at(st, k)->logger, json_true());
    }
    json_t *names = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(loggers, key, v) json_array_append_new(names, json_string(key));
    json_decref(loggers);
    for (int l = 0; l < LOGREC_NLEVELS; l++)
        json_array_append_new(levels, json_string(logrec_level_name(l)));
    return json_pack("{s:o, s:o, s:o}", "nodes", nodes, "loggers", names, "log_levels", levels);
}
