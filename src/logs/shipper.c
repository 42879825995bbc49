/*
 * shipper.c — every log line of the node, as a sequenced record, to the
 * coordinator's log collector; nothing lost while the spool holds, nothing
 * stored twice, losses counted and reported.
 *
 * Path of a line:
 *   p2p_log (any thread) -> sink: level filter (log_ship_level), per-source
 *   rate limit, the record's JSON without its seq -> intake list (mutex)
 *   -> loop thread, a few ms later (batch timer): seq assigned, record
 *   appended to the memory spool -> batch (at most batch_max_records and
 *   batch_max_bytes) -> add_logs on the coordinator -> {"acked": N} drops every
 *   record with seq <= N from memory and file.
 *
 * One batch is in flight at a time. Under load the lines that arrive during
 * one round trip form the next batch, so the request rate follows the round
 * trip, never the line rate; with few lines each is sent within
 * batch_delay_ms. After a failure the next attempt waits (capped exponential
 * backoff with jitter) and records stay spooled.
 *
 * Spool: memory first (mem_bytes); past that the oldest records move to the
 * spool file as chunks (one chunk = one future batch) through the thread pool;
 * past file_bytes the oldest chunks are dropped and counted. The file is sent
 * before memory (it holds the older records). File jobs run one at a time, in
 * the order queued; the loop keeps the file's layout (a chunk index) and
 * rebases it when it queues a rewrite, so every queued job sees the layout
 * the jobs before it leave.
 *
 * Seqs never go backwards across restarts: the spool header holds a reserved
 * seq (handed out in blocks of SEQ_BLOCK, written and synced before any seq of
 * the block is sent); after a crash the node continues above it (a gap, which
 * the collector accepts); a clean stop writes the exact last seq.
 *
 * Its own trouble: lines about shipping failures are logged under the source
 * "logs.shipper", which the sink never ships (they go to stderr only, else a
 * failing shipper would feed itself), and at most one per outage plus one per
 * minute while it lasts. Losses and suppressed floods become records of
 * logger "p2p.logs" with "lost"/"suppressed" counts, sent once the collector
 * answers again.
 */
#define _GNU_SOURCE /* memmem */
#include "logs/shipper.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "core/util.h"
#include "logs/spool.h"
#include "logs/srclimit.h"

#define SEQ_BLOCK 100000u
#define REC_OVERHEAD 48u    /* memory accounted per record beside its text */
#define MAX_FILE_JOBS 8     /* queued spill appends before memory overflow drops instead */
#define OUTAGE_LOG_MS 60000 /* "still cannot ship" at most this often */
#define SELF_SOURCE "logs.shipper"
#define LOGSHIP_ENVELOPE_ROOM (16 * 1024)
#define LOGSHIP_MIN_CAP (16 * 1024)

/* ---- data ------------------------------------------------------------------------ */

/* A line in the intake: the record's JSON object text without "seq". */
typedef struct pend {
    struct pend *next;
    size_t len;
    char text[];
} pend;

/* A record in the memory spool: its full JSON text. */
typedef struct rec {
    struct rec *next;
    uint64_t seq;
    size_t len;
    char text[];
} rec;

/* A run of records in the spool file, sent as one batch. */
typedef struct chunk {
    uint64_t first, last; /* seqs */
    uint64_t off, len;    /* bytes in the file (frames) */
    uint32_t n;
} chunk;

typedef enum { JOB_OPEN, JOB_APPEND, JOB_READ, JOB_REWRITE, JOB_HEADER, JOB_CLOSE } job_kind;

typedef struct job {
    uv_work_t work;
    struct job *next;
    p2p_shipper *sh;
    job_kind kind;
    uint64_t off;
    uint8_t *buf;
    size_t len;
    p2p_spool_header hdr;
    p2p_spool_range *ranges;
    size_t n_ranges;
    uint64_t first_seq; /* READ: the chunk it reads */
    int status;
    char *err;
    /* OPEN: what the scan found */
    p2p_spool_loaded loaded;
    chunk *chunks;
    size_t n_chunks, cap_chunks;
} job;

struct p2p_shipper {
    p2p_ctx *ctx;
    p2p_shipper_opts o;

    /* shared with the sink (any thread), under mu */
    uv_mutex_t mu;
    pend *in_head, *in_tail;
    size_t in_bytes, in_count;
    p2p_srclimit *lim;
    int accepting;     /* 0 after stop */
    int handles_ready; /* wake may be signalled */
    uint64_t in_lost, suppressed;
    int64_t in_lost_t1, in_lost_t2;
    uv_thread_t loop_thread;

    /* loop thread only */
    uv_async_t wake;
    uv_timer_t batch_timer, retry_timer, tick_timer;
    int started, stopping, handles_open;
    int opened; /* spool open, seqs being handed out */
    uint64_t last_seq, reserved_pending, reserved_durable, acked_seq;

    rec *mq_head, *mq_tail;
    size_t mq_bytes, mq_count;

    chunk *chunks; /* chunks[c_first .. c_first+c_n) are live, in seq order */
    size_t c_first, c_n, c_cap;
    uint64_t file_end; /* logical end of the file after all queued jobs */
    int file_ok;       /* 0: the spool file failed; memory only */
    p2p_spool_file file;
    job *jq_head, *jq_tail;
    int job_running, appends_queued;

    int inflight, reading;
    uint64_t inflight_last;
    size_t inflight_n;
    uint32_t backoff_ms;

    uint64_t lost_unreported;
    int64_t lost_t1, lost_t2;
    char lost_why[160];

    uint64_t shipped, acked, batches, failures, lost;
    size_t inflight_bytes; /* body of the batch in flight */
    size_t size_cap;       /* after a failed (or 413) batch: smaller batches, 0 = batch_max_bytes */
    int size_refused;      /* the collector said 413: size_cap stays */
    uint64_t outage_since_ms, outage_logged_ms, outage_fails;
    int freed_pending;
};

static void kick(p2p_shipper *sh, uint64_t delay_ms);
static void try_send(p2p_shipper *sh);
static void queue_job(p2p_shipper *sh, job *j);
static void on_retry(uv_timer_t *t);

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void iso_time(int64_t us, char *buf, size_t n)
{
    if (us < 0)
        us = 0;
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(us % 1000000));
}

/* ---- intake (any thread) ------------------------------------------------------------ */

static pend *pend_from_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(16));
    if (!s || s[0] != '{' || s[1] == '}') {
        free(s);
        return NULL;
    }
    size_t len = strlen(s);
    pend *p = p2p__xmalloc(sizeof(*p) + len + 1);
    p->next = NULL;
    p->len = len;
    memcpy(p->text, s, len + 1);
    free(s);
    return p;
}

/* A record of the shipper's own ("p2p.logs"): a loss or a suppressed flood. */
static pend *own_record(int64_t ts_us, const char *message, const char *count_key, uint64_t count)
{
    json_t *o = json_pack("{s:f, s:s, s:s, s:s, s:I}", "ts", (double)ts_us / 1e6, "level", "WARNING", "logger",
                          "p2p.logs", "message", message, count_key, (json_int_t)count);
    pend *p = pend_from_json(o);
    json_decref(o);
    return p;
}

static pend *suppressed_record(const p2p_srclimit_report *r, uint32_t burst, uint32_t window_ms)
{
    char t1[64], t2[64], msg[400];
    iso_time(r->first_us, t1, sizeof t1);
    iso_time(r->last_us, t2, sizeof t2);
    snprintf(msg, sizeof msg, "%" PRIu64 " lines suppressed from %s (more than %u in %u s) between %s and %s",
             r->suppressed, r->source, burst, window_ms / 1000, t1, t2);
    return own_record(now_us(), msg, "suppressed", r->suppressed);
}

/* Under mu. */
static void intake_push(p2p_shipper *sh, pend *p)
{
    if (!p)
        return;
    if (sh->in_tail)
        sh->in_tail->next = p;
    else
        sh->in_head = p;
    sh->in_tail = p;
    sh->in_bytes += p->len + REC_OVERHEAD;
    sh->in_count++;
    /* The intake is drained every few ms once running; it grows only before the
     * spool opens (start-up) or if the loop stalls. Keep it within the memory cap. */
    while (sh->in_bytes > sh->o.mem_bytes && sh->in_head && sh->in_head != p) {
        pend *old = sh->in_head;
        sh->in_head = old->next;
        sh->in_bytes -= old->len + REC_OVERHEAD;
        sh->in_count--;
        int64_t t = now_us();
        if (sh->in_lost++ == 0)
            sh->in_lost_t1 = t;
        sh->in_lost_t2 = t;
        free(old);
    }
}

static void sink(p2p_ctx *ctx, const p2p_log_line *l, void *arg)
{
    (void)ctx;
    p2p_shipper *sh = arg;
    if (strcmp(l->source, SELF_SOURCE) == 0)
        return; /* the shipper's own trouble: stderr only */
    if (p2p__log_level5(l->level, l->message, NULL) < sh->o.ship_level)
        return;
    json_t *o = p2p__log_line_json(l);
    pend *p = pend_from_json(o);
    json_decref(o);
    if (!p)
        return;
    int wake_async = 0, wake_here = 0;
    uv_mutex_lock(&sh->mu);
    if (!sh->accepting) {
        uv_mutex_unlock(&sh->mu);
        free(p);
        return;
    }
    p2p_srclimit_report rep;
    int have_rep = 0;
    int ok = p2p__srclimit_check(sh->lim, l->source, l->ts_us, &rep, &have_rep);
    if (have_rep)
        intake_push(sh, suppressed_record(&rep, sh->o.rate_burst, sh->o.rate_window_ms));
    if (ok) {
        intake_push(sh, p);
        p = NULL;
    } else {
        sh->suppressed++;
    }
    if (sh->handles_ready) {
        uv_thread_t self = uv_thread_self();
        if (uv_thread_equal(&self, &sh->loop_thread))
            wake_here = 1;
        else
            wake_async = 1;
    }
    uv_mutex_unlock(&sh->mu);
    free(p);
    if (wake_here)
        kick(sh, sh->o.batch_delay_ms); /* only arms a timer: safe from inside any caller */
    else if (wake_async)
        uv_async_send(&sh->wake);
}

/* ---- memory spool (loop) ------------------------------------------------------------ */

static rec *rec_new(uint64_t seq, const char *text_noseq, size_t len)
{
    char head[32];
    int h = snprintf(head, sizeof head, "{\"seq\":%" PRIu64 ",", seq);
    rec *r = p2p__xmalloc(sizeof(*r) + (size_t)h + len);
    r->next = NULL;
    r->seq = seq;
    memcpy(r->text, head, (size_t)h);
    memcpy(r->text + h, text_noseq + 1, len - 1); /* skips the '{' */
    r->len = (size_t)h + len - 1;
    r->text[r->len] = '\0';
    return r;
}

static void mq_push(p2p_shipper *sh, rec *r)
{
    if (sh->mq_tail)
        sh->mq_tail->next = r;
    else
        sh->mq_head = r;
    sh->mq_tail = r;
    sh->mq_bytes += r->len + REC_OVERHEAD;
    sh->mq_count++;
}

static rec *mq_pop(p2p_shipper *sh)
{
    rec *r = sh->mq_head;
    if (!r)
        return NULL;
    sh->mq_head = r->next;
    if (!sh->mq_head)
        sh->mq_tail = NULL;
    sh->mq_bytes -= r->len + REC_OVERHEAD;
    sh->mq_count--;
    return r;
}

static void count_lost(p2p_shipper *sh, uint64_t n, int64_t t1, int64_t t2, const char *why)
{
    if (!n)
        return;
    sh->lost += n;
    if (sh->lost_unreported == 0) {
        sh->lost_t1 = t1;
        snprintf(sh->lost_why, sizeof sh->lost_why, "%.150s", why);
    }
    sh->lost_unreported += n;
    sh->lost_t2 = t2;
}

/* The ts of a record's text (for loss times), or now. */
static int64_t rec_ts(const char *text, size_t len)
{
    const char *p = memmem(text, len, "\"ts\":", 5);
    return p ? (int64_t)(strtod(p + 5, NULL) * 1e6) : now_us();
}

/* ---- the spool file (loop side) ----------------------------------------------------- */

static chunk *chunk_at(p2p_shipper *sh, size_t i)
{
    return &sh->chunks[sh->c_first + i];
}

static void chunk_push(p2p_shipper *sh, const chunk *c)
{
    if (sh->c_first + sh->c_n == sh->c_cap) {
        if (sh->c_first > 0) { /* slide down before growing */
            memmove(sh->chunks, sh->chunks + sh->c_first, sh->c_n * sizeof(chunk));
            sh->c_first = 0;
        }
        if (sh->c_n == sh->c_cap) {
            sh->c_cap = sh->c_cap ? sh->c_cap * 2 : 64;
            sh->chunks = p2p__xrealloc(sh->chunks, sh->c_cap * sizeof(chunk));
        }
    }
    sh->chunks[sh->c_first + sh->c_n++] = *c;
}

static uint64_t file_live_bytes(p2p_shipper *sh)
{
    uint64_t b = 0;
    for (size_t i = 0; i < sh->c_n; i++)
        b += chunk_at(sh, i)->len;
    return b;
}

static uint64_t file_records(p2p_shipper *sh)
{
    uint64_t n = 0;
    for (size_t i = 0; i < sh->c_n; i++)
        n += chunk_at(sh, i)->n;
    return n;
}

static p2p_spool_header header_now(p2p_shipper *sh, uint64_t reserved)
{
    p2p_spool_header h = {reserved, sh->acked_seq < reserved ? sh->acked_seq : reserved};
    return h;
}

/* Queues a rewrite keeping the live chunks, and rebases their offsets to where
 * the rewrite puts them. */
static void queue_rewrite(p2p_shipper *sh)
{
    job *j = p2p__xcalloc(1, sizeof(*j));
    j->kind = JOB_REWRITE;
    j->hdr = header_now(sh, sh->reserved_pending);
    j->n_ranges = sh->c_n;
    j->ranges = j->n_ranges ? p2p__xcalloc(j->n_ranges, sizeof(p2p_spool_range)) : NULL;
    uint64_t off = P2P_SPOOL_HDR;
    for (size_t i = 0; i < sh->c_n; i++) {
        chunk *c = chunk_at(sh, i);
        j->ranges[i] = (p2p_spool_range){c->off, c->len};
        c->off = off;
        off += c->len;
    }
    sh->file_end = off;
    queue_job(sh, j);
}

/* Moves the oldest memory records into one framed chunk appended to the file.
 * Makes room under file_bytes first (dropping the oldest chunks that are not
 * being sent). Returns 0, or -1 when the file cannot take them. */
static int spill_one(p2p_shipper *sh)
{
    size_t bytes = 0, n = 0;
    for (rec *r = sh->mq_head; r && n < sh->o.batch_max_records; r = r->next) {
        if (n && bytes + P2P_SPOOL_FRAME + r->len > sh->o.batch_max_bytes)
            break;
        bytes += P2P_SPOOL_FRAME + r->len;
        n++;
    }
    if (!n)
        return -1;
    uint64_t cap = sh->o.file_bytes;
    if (!sh->file_ok || cap < P2P_SPOOL_HDR + bytes)
        return -1;
    if (sh->file_end + bytes > cap) {
        /* drop the oldest chunks (not one being read or sent) until the live data
         * and this chunk fit in 3/4 of the cap, so rewrites stay rare */
        uint64_t live = file_live_bytes(sh), target = (cap - P2P_SPOOL_HDR) * 3 / 4;
        if (target < bytes)
            target = bytes;
        size_t keep_first = (sh->reading || (sh->inflight && sh->c_n && chunk_at(sh, 0)->first <= sh->inflight_last))
                                ? 1
                                : 0;
        while (live + bytes > target && sh->c_n > keep_first) {
            size_t idx = keep_first; /* the oldest droppable */
            chunk *c = chunk_at(sh, idx);
            count_lost(sh, c->n, 0, 0, "spool full");
            if (sh->lost_t1 == 0)
                sh->lost_t1 = now_us();
            live -= c->len;
            if (idx == 0) {
                sh->c_first++;
                sh->c_n--;
            } else {
                memmove(c, c + 1, (sh->c_n - idx - 1) * sizeof(chunk));
                sh->c_n--;
            }
        }
        if (live + bytes + P2P_SPOOL_HDR > cap)
            return -1;
        queue_rewrite(sh);
    }
    job *j = p2p__xcalloc(1, sizeof(*j));
    j->kind = JOB_APPEND;
    j->buf = p2p__xmalloc(bytes);
    j->len = bytes;
    j->off = sh->file_end;
    chunk c = {0, 0, sh->file_end, bytes, (uint32_t)n};
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        rec *r = mq_pop(sh);
        if (i == 0)
            c.first = r->seq;
        c.last = r->seq;
        o += p2p__spool_frame(r->seq, r->text, r->len, j->buf + o);
        free(r);
    }
    sh->file_end += bytes;
    chunk_push(sh, &c);
    sh->appends_queued++;
    queue_job(sh, j);
    return 0;
}

/* Drops the oldest memory record that is not in flight. */
static int drop_oldest_mem(p2p_shipper *sh)
{
    rec *prev = NULL, *r = sh->mq_head;
    while (r && sh->inflight && r->seq <= sh->inflight_last) {
        prev = r;
        r = r->next;
    }
    if (!r)
        return -1;
    if (prev)
        prev->next = r->next;
    else
        sh->mq_head = r->next;
    if (sh->mq_tail == r)
        sh->mq_tail = prev;
    sh->mq_bytes -= r->len + REC_OVERHEAD;
    sh->mq_count--;
    int64_t t = rec_ts(r->text, r->len);
    count_lost(sh, 1, t, t, "spool full");
    free(r);
    return 0;
}

/* Keeps memory within mem_bytes: spill to the file, else drop the oldest. */
static void enforce_mem_cap(p2p_shipper *sh, int all)
{
    uint64_t target = all ? 0 : sh->o.mem_bytes * 3 / 4;
    if (!all && sh->mq_bytes <= sh->o.mem_bytes)
        return;
    while (sh->mq_bytes > target && sh->mq_head) {
        if ((all || sh->appends_queued < MAX_FILE_JOBS) && spill_one(sh) == 0)
            continue;
        if (all)
            break; /* stopping: what does not fit is counted below by the caller */
        if (sh->mq_bytes <= sh->o.mem_bytes || drop_oldest_mem(sh) != 0)
            break;
    }
}

/* ---- seqs ------------------------------------------------------------------------------ */

static void reserve_more(p2p_shipper *sh)
{
    if (!sh->o.spool_path || !sh->file_ok) {
        sh->reserved_pending = sh->reserved_durable = UINT64_MAX;
        return;
    }
    if (sh->last_seq + SEQ_BLOCK / 2 < sh->reserved_pending)
        return;
    sh->reserved_pending = sh->last_seq + SEQ_BLOCK;
    job *j = p2p__xcalloc(1, sizeof(*j));
    j->kind = JOB_HEADER;
    j->hdr = header_now(sh, sh->reserved_pending);
    queue_job(sh, j);
}

/* Moves the intake into the memory spool, handing out seqs. */
static void drain(p2p_shipper *sh)
{
    if (!sh->opened)
        return;
    uv_mutex_lock(&sh->mu);
    pend *p = sh->in_head;
    sh->in_head = sh->in_tail = NULL;
    sh->in_bytes = sh->in_count = 0;
    uint64_t lost = sh->in_lost;
    int64_t t1 = sh->in_lost_t1, t2 = sh->in_lost_t2;
    sh->in_lost = 0;
    uv_mutex_unlock(&sh->mu);
    count_lost(sh, lost, t1, t2, "spool full");
    while (p) {
        pend *next = p->next;
        mq_push(sh, rec_new(++sh->last_seq, p->text, p->len));
        free(p);
        p = next;
    }
    reserve_more(sh);
    enforce_mem_cap(sh, 0);
}

/* ---- sending --------------------------------------------------------------------------- */

/* The most record text one batch may carry: batch_max_bytes, or less once the
 * collector refused a batch as too large (HTTP 413: its http_max_body_size is
 * smaller than ours). */
static size_t max_bytes(const p2p_shipper *sh)
{
    return sh->size_cap && sh->size_cap < sh->o.batch_max_bytes ? sh->size_cap : sh->o.batch_max_bytes;
}

static void send_body(p2p_shipper *sh, char *body, size_t len, uint64_t last, size_t n)
{
    sh->inflight = 1;
    sh->inflight_bytes = len;
    sh->inflight_last = last;
    sh->inflight_n = n;
    sh->batches++;
    sh->shipped += n;
    sh->o.transport(sh, body, len, sh->o.transport_arg);
    free(body);
}

static char *batch_open(p2p_shipper *sh, size_t *len, size_t *cap)
{
    json_t *id = json_string(p2p_node_id(sh->ctx));
    char *node = json_dumps(id, JSON_ENCODE_ANY);
    json_decref(id);
    *cap = sh->o.batch_max_bytes + 256;
    char *b = p2p__xmalloc(*cap);
    *len = (size_t)snprintf(b, *cap, "{\"node_id\":%s,\"records\":[", node ? node : "\"\"");
    free(node);
    return b;
}

static void batch_add(char **b, size_t *len, size_t *cap, const char *text, size_t tlen, int first)
{
    if (*len + tlen + 4 > *cap) {
        *cap = (*len + tlen + 4) * 2;
        *b = p2p__xrealloc(*b, *cap);
    }
    if (!first)
        (*b)[(*len)++] = ',';
    memcpy(*b + *len, text, tlen);
    *len += tlen;
}

static void batch_close(char *b, size_t *len)
{
    memcpy(b + *len, "]}", 3);
    *len += 2;
}

static void send_from_memory(p2p_shipper *sh)
{
    size_t len, cap, n = 0, bytes = 0;
    uint64_t last = 0;
    char *b = NULL;
    for (rec *r = sh->mq_head; r && n < sh->o.batch_max_records && r->seq <= sh->reserved_durable; r = r->next) {
        if (n && bytes + r->len > max_bytes(sh))
            break;
        if (!b)
            b = batch_open(sh, &len, &cap);
        batch_add(&b, &len, &cap, r->text, r->len, n == 0);
        bytes += r->len;
        last = r->seq;
        n++;
    }
    if (!n)
        return;
    batch_close(b, &len);
    send_body(sh, b, len, last, n);
}

typedef struct chunk_batch {
    char *b;
    size_t len, cap, n;
    uint64_t last;
    uint64_t acked;
    size_t max;  /* record bytes at most: the rest of the chunk goes in the next batch */
    size_t bytes;
    int full;
} chunk_batch;

static void on_chunk_record(void *arg, uint64_t seq, const uint8_t *payload, size_t len, size_t off)
{
    (void)off;
    chunk_batch *cb = arg;
    if (seq <= cb->acked || cb->full)
        return;
    if (cb->n && cb->bytes + len > cb->max) {
        cb->full = 1; /* a partial ack leaves the chunk; its next read skips what was acked */
        return;
    }
    cb->bytes += len;
    batch_add(&cb->b, &cb->len, &cb->cap, (const char *)payload, len, cb->n == 0);
    cb->n++;
    cb->last = seq;
}

static void read_done(p2p_shipper *sh, job *j)
{
    sh->reading = 0;
    if (sh->stopping)
        return;
    if (j->status != 0 || !sh->c_n || chunk_at(sh, 0)->first != j->first_seq) {
        if (j->status != 0) {
            /* unreadable chunk: drop it (counted) rather than block everything behind it */
            if (sh->c_n && chunk_at(sh, 0)->first == j->first_seq) {
                chunk *c = chunk_at(sh, 0);
                count_lost(sh, c->n, now_us(), now_us(), "spool file unreadable");
                sh->c_first++;
                sh->c_n--;
            }
        }
        kick(sh, 0);
        return;
    }
    chunk_batch cb = {0};
    cb.acked = sh->acked_seq;
    cb.max = max_bytes(sh);
    cb.b = batch_open(sh, &cb.len, &cb.cap);
    uint64_t last = 0;
    int stop;
    p2p__spool_scan(j->buf, j->len, &last, on_chunk_record, &cb, &stop);
    if (cb.n == 0) {
        free(cb.b);
        chunk *c = chunk_at(sh, 0);
        if (stop == -1)
            count_lost(sh, c->n, now_us(), now_us(), "spool file damaged");
        sh->c_first++;
        sh->c_n--;
        kick(sh, 0);
        return;
    }
    batch_close(cb.b, &cb.len);
    send_body(sh, cb.b, cb.len, cb.last, cb.n);
}

static void try_send(p2p_shipper *sh)
{
    if (!sh->opened || sh->stopping || sh->inflight || sh->reading || uv_is_active((uv_handle_t *)&sh->retry_timer))
        return;
    if (sh->c_n) {
        chunk *c = chunk_at(sh, 0);
        job *j = p2p__xcalloc(1, sizeof(*j));
        j->kind = JOB_READ;
        j->off = c->off;
        j->len = c->len;
        j->first_seq = c->first;
        sh->reading = 1;
        queue_job(sh, j);
        return;
    }
    send_from_memory(sh);
}

/* The shipper's own lines: with SELF_SOURCE they go to stderr only (see the top). */
#define shipper_log(sh, lv, source, ...) p2p_log((sh)->ctx, lv, source, __VA_ARGS__)

/* Drops the records with seq <= upto from memory and file; returns how many. */
static uint64_t drop_upto(p2p_shipper *sh, uint64_t upto)
{
    uint64_t dropped = 0;
    while (sh->mq_head && sh->mq_head->seq <= upto) {
        free(mq_pop(sh));
        dropped++;
    }
    int file_changed = 0;
    while (sh->c_n && chunk_at(sh, 0)->last <= upto) {
        dropped += chunk_at(sh, 0)->n;
        sh->c_first++;
        sh->c_n--;
        file_changed = 1;
    }
    if (file_changed && sh->c_n == 0 && sh->file_end > P2P_SPOOL_HDR)
        queue_rewrite(sh); /* nothing left: empty the file */
    return dropped;
}

static void apply_ack(p2p_shipper *sh, uint64_t acked)
{
    if (acked > sh->acked_seq)
        sh->acked_seq = acked;
    sh->acked += drop_upto(sh, acked);
}

static void report_losses(p2p_shipper *sh)
{
    if (!sh->lost_unreported)
        return;
    char t1[64], t2[64], msg[400];
    iso_time(sh->lost_t1 ? sh->lost_t1 : now_us(), t1, sizeof t1);
    iso_time(sh->lost_t2 ? sh->lost_t2 : now_us(), t2, sizeof t2);
    snprintf(msg, sizeof msg, "lost %" PRIu64 " records (%s) between %s and %s", sh->lost_unreported, sh->lost_why,
             t1, t2);
    pend *p = own_record(now_us(), msg, "lost", sh->lost_unreported);
    shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "%s", msg);
    sh->lost_unreported = 0;
    sh->lost_t1 = sh->lost_t2 = 0;
    if (p) {
        mq_push(sh, rec_new(++sh->last_seq, p->text, p->len));
        free(p);
        reserve_more(sh);
    }
}

void p2p__shipper_result(p2p_shipper *sh, int code, const char *message, json_t *result)
{
    if (!sh->inflight)
        return;
    sh->inflight = 0;
    if (sh->stopping)
        return;
    json_t *a = json_object_get(result, "acked");
    uint64_t now = p2p__wall_ms();
    if (code == 0 && json_is_integer(a) && json_integer_value(a) >= 0) {
        uint64_t acked = (uint64_t)json_integer_value(a);
        if (acked > sh->last_seq) {
            /* the collector has seqs above ours (this node's spool was reset): what we
             * sent was skipped as already stored; continue above its seq */
            count_lost(sh, sh->inflight_n, now_us(), now_us(), "collector is ahead of this node's seq");
            shipper_log(sh, P2P_LOG_WARN, "logs", "the collector already has seq %" PRIu64 " of this node (ours: %" PRIu64
                        "): continuing above it", acked, sh->last_seq);
            sh->last_seq = acked;
            reserve_more(sh);
        }
        if (acked < sh->inflight_last) {
            code = P2P_RPC_INTERNAL_ERROR;
            message = "the collector acknowledged less than it was sent";
            apply_ack(sh, acked);
        } else {
            apply_ack(sh, acked);
            sh->backoff_ms = 0;
            if (sh->size_cap && !sh->size_refused) {
                sh->size_cap *= 2;
                if (sh->size_cap >= sh->o.batch_max_bytes)
                    sh->size_cap = 0;
            }
            if (sh->outage_since_ms) {
                shipper_log(sh, P2P_LOG_INFO, "logs",
                            "shipping to the coordinator again after %.1f s (%" PRIu64 " failed attempts)",
                            (double)(now - sh->outage_since_ms) / 1000.0, sh->outage_fails);
                sh->outage_since_ms = 0;
                sh->outage_fails = 0;
            }
            report_losses(sh);
            kick(sh, 0);
            return;
        }
    }
    if (code != 0 && message && strstr(message, "HTTP 413")) {
        /* larger than the collector's http_max_body_size (smaller than ours): send
         * less per batch from now on; one record alone that big can never go */
        if (sh->inflight_n <= 1) {
            uint64_t n = drop_upto(sh, sh->inflight_last);
            count_lost(sh, n, now_us(), now_us(), "larger than the collector's http_max_body_size");
            shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "a log record of %zu bytes is larger than the collector's "
                        "http_max_body_size: dropped", sh->inflight_bytes);
            kick(sh, 0);
            return;
        } else if (!sh->size_cap || sh->inflight_bytes / 2 < sh->size_cap) {
            size_t cap = sh->inflight_bytes / 2;
            sh->size_cap = cap < 1024 ? 1024 : cap;
            sh->size_refused = 1; /* an explicit 413: stay below it */
            shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "the collector refused a log batch of %zu bytes as too "
                        "large (its http_max_body_size is smaller than this node's): batches of at most %zu "
                        "bytes from now on", sh->inflight_bytes, sh->size_cap);
            kick(sh, 0);
            return;
        }
        /* cannot split further: a failure like any other (backoff) */
    }
    if (code == P2P_RPC_INVALID_PARAMS) {
        /* the collector will never take this batch: drop it (counted) so the rest can go */
        char why[200];
        snprintf(why, sizeof why, "refused by the collector: %.150s", message ? message : "?");
        uint64_t n = drop_upto(sh, sh->inflight_last);
        count_lost(sh, n, now_us(), now_us(), why);
        shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "log batch %s", why);
        kick(sh, 0);
        return;
    }
    sh->failures++;
    sh->outage_fails++;
    /* Over HTTP/2 a body above the collector's http_max_body_size shows as a
     * transport failure, like any outage: halve the batch size after each
     * failed multi-record batch (down to 16 KiB), and double it back after each
     * success. A real outage costs nothing but smaller first batches after it. */
    if (sh->inflight_n > 1 && sh->inflight_bytes > LOGSHIP_MIN_CAP) {
        size_t cap = sh->inflight_bytes / 2;
        sh->size_cap = cap < LOGSHIP_MIN_CAP ? LOGSHIP_MIN_CAP : cap;
    }
    if (!sh->outage_since_ms || now - sh->outage_logged_ms >= OUTAGE_LOG_MS) {
        uint64_t spooled = sh->mq_count + file_records(sh);
        if (!sh->outage_since_ms)
            shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "cannot ship logs to the coordinator (%d: %s): keeping them "
                        "in the spool (%" PRIu64 " records), retrying",
                        code, message ? message : "?", spooled);
        else
            shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "still cannot ship logs (%d: %s) after %.0f s: %" PRIu64
                        " records spooled, %" PRIu64 " lost so far",
                        code, message ? message : "?", (double)(now - sh->outage_since_ms) / 1000.0, spooled,
                        sh->lost);
        if (!sh->outage_since_ms)
            sh->outage_since_ms = now;
        sh->outage_logged_ms = now;
    }
    sh->backoff_ms = sh->backoff_ms ? sh->backoff_ms * 2 : sh->o.backoff_min_ms;
    if (sh->backoff_ms > sh->o.backoff_max_ms)
        sh->backoff_ms = sh->o.backoff_max_ms;
    uint64_t delay = sh->backoff_ms - sh->backoff_ms / 5 + uv_hrtime() / 1000 % (sh->backoff_ms / 5 * 2 + 1); /* +-20% jitter */
    if (sh->handles_open)
        uv_timer_start(&sh->retry_timer, on_retry, delay, 0);
}

/* ---- timers and wake-ups ----------------------------------------------------------------- */

static void on_batch_timer(uv_timer_t *t)
{
    p2p_shipper *sh = t->data;
    drain(sh);
    try_send(sh);
}

static void on_retry(uv_timer_t *t)
{
    p2p_shipper *sh = t->data;
    drain(sh);
    try_send(sh);
}

static void on_wake(uv_async_t *a)
{
    kick(a->data, ((p2p_shipper *)a->data)->o.batch_delay_ms);
}

static void on_suppressed_report(void *arg, const p2p_srclimit_report *r)
{
    p2p_shipper *sh = arg;
    intake_push(sh, suppressed_record(r, sh->o.rate_burst, sh->o.rate_window_ms));
}

/* Once a second: report floods that stopped (their window ended). */
static void on_tick(uv_timer_t *t)
{
    p2p_shipper *sh = t->data;
    uv_mutex_lock(&sh->mu);
    size_t n = p2p__srclimit_sweep(sh->lim, now_us(), on_suppressed_report, sh);
    uv_mutex_unlock(&sh->mu);
    if (n)
        kick(sh, 0);
}

/* Arms the batch timer unless it is already armed (never postpones a send). */
static void kick(p2p_shipper *sh, uint64_t delay_ms)
{
    if (!sh->handles_open || sh->stopping)
        return;
    if (uv_is_active((uv_handle_t *)&sh->batch_timer)) {
        if (delay_ms > 0 || uv_timer_get_due_in(&sh->batch_timer) == 0)
            return;
    }
    uv_timer_start(&sh->batch_timer, on_batch_timer, delay_ms, 0);
}

/* ---- file jobs (thread pool, one at a time) --------------------------------------------- */

static void on_open_record(void *arg, uint64_t seq, const uint8_t *payload, size_t len, size_t off)
{
    (void)payload;
    job *j = arg;
    uint64_t frame = P2P_SPOOL_FRAME + len;
    if (seq <= j->loaded.hdr.acked_seq)
        return;
    chunk *c = j->n_chunks ? &j->chunks[j->n_chunks - 1] : NULL;
    p2p_shipper *sh = j->sh;
    if (!c || c->n >= sh->o.batch_max_records || c->len + frame > sh->o.batch_max_bytes || c->off + c->len != off) {
        if (j->n_chunks == j->cap_chunks) {
            j->cap_chunks = j->cap_chunks ? j->cap_chunks * 2 : 64;
            j->chunks = p2p__xrealloc(j->chunks, j->cap_chunks * sizeof(chunk));
        }
        c = &j->chunks[j->n_chunks++];
        *c = (chunk){seq, seq, off, 0, 0};
    }
    c->last = seq;
    c->len += frame;
    c->n++;
}

static void job_work(uv_work_t *w)
{
    job *j = w->data;
    p2p_shipper *sh = j->sh;
    switch (j->kind) {
    case JOB_OPEN:
        /* p2p__spool_open decodes the header into j->loaded before it scans, so
         * on_open_record sees the acked seq and skips what was delivered */
        j->status = p2p__spool_open(&sh->file, sh->o.spool_path, on_open_record, j, &j->loaded, &j->err);
        break;
    case JOB_APPEND: j->status = p2p__spool_append(&sh->file, j->off, j->buf, j->len); break;
    case JOB_READ:
        j->buf = malloc(j->len ? j->len : 1);
        j->status = j->buf ? p2p__spool_read(&sh->file, j->off, j->buf, j->len) : -ENOMEM;
        break;
    case JOB_REWRITE: j->status = p2p__spool_rewrite(&sh->file, &j->hdr, j->ranges, j->n_ranges); break;
    case JOB_HEADER: j->status = p2p__spool_write_header(&sh->file, &j->hdr, 1); break;
    case JOB_CLOSE:
        j->status = p2p__spool_write_header(&sh->file, &j->hdr, 1);
        p2p__spool_close(&sh->file);
        break;
    }
}

static void run_next_job(p2p_shipper *sh);

static void file_failed(p2p_shipper *sh, job *j)
{
    if (!sh->file_ok)
        return;
    sh->file_ok = 0;
    shipper_log(sh, P2P_LOG_ERROR, "logs", "log spool file %s: %s (%s); spooling in memory only",
                sh->o.spool_path, j->err ? j->err : "write failed", strerror(-j->status));
    /* the records the file held are gone for this run */
    count_lost(sh, file_records(sh), now_us(), now_us(), "spool file failed");
    sh->c_first = sh->c_n = 0;
}

static void open_done(p2p_shipper *sh, job *j)
{
    if (j->status != 0) {
        shipper_log(sh, P2P_LOG_ERROR, "logs", "log spool: %s; shipping from memory only, seqs start above the "
                    "collector's", j->err ? j->err : strerror(-j->status));
        sh->file_ok = 0;
        sh->last_seq = 0;
    } else {
        sh->file_ok = 1;
        sh->last_seq = j->loaded.hdr.reserved_seq;
        sh->acked_seq = j->loaded.hdr.acked_seq;
        sh->reserved_pending = sh->reserved_durable = sh->last_seq;
        sh->file_end = j->loaded.end;
        for (size_t i = 0; i < j->n_chunks; i++)
            chunk_push(sh, &j->chunks[i]);
        if (j->loaded.cut_bytes)
            shipper_log(sh, P2P_LOG_WARN, "logs", "log spool %s: cut %" PRIu64 " damaged bytes at its end (a crash "
                        "while writing); every whole record before them is kept", sh->o.spool_path,
                        j->loaded.cut_bytes);
        if (sh->c_n)
            shipper_log(sh, P2P_LOG_INFO, "logs", "log spool %s: %" PRIu64 " records from before the restart to send",
                        sh->o.spool_path, file_records(sh));
    }
    sh->opened = 1;
    reserve_more(sh);
    kick(sh, 0);
}

static void job_after(uv_work_t *w, int status)
{
    (void)status;
    job *j = w->data;
    p2p_shipper *sh = j->sh;
    sh->job_running = 0;
    switch (j->kind) {
    case JOB_OPEN: open_done(sh, j); break;
    case JOB_APPEND:
        sh->appends_queued--;
        if (j->status != 0)
            file_failed(sh, j);
        break;
    case JOB_READ:
        if (j->status != 0 && sh->file_ok)
            file_failed(sh, j);
        read_done(sh, j);
        break;
    case JOB_REWRITE:
        if (j->status != 0)
            file_failed(sh, j);
        break;
    case JOB_HEADER:
        if (j->status == 0 && j->hdr.reserved_seq > sh->reserved_durable)
            sh->reserved_durable = j->hdr.reserved_seq;
        else if (j->status != 0)
            file_failed(sh, j);
        kick(sh, 0);
        break;
    case JOB_CLOSE: break;
    }
    free(j->buf);
    free(j->ranges);
    free(j->chunks);
    free(j->err);
    free(j);
    run_next_job(sh);
}

static void run_next_job(p2p_shipper *sh)
{
    if (sh->job_running || !sh->jq_head)
        return;
    job *j = sh->jq_head;
    sh->jq_head = j->next;
    if (!sh->jq_head)
        sh->jq_tail = NULL;
    if (j->kind != JOB_OPEN && j->kind != JOB_CLOSE && !sh->file_ok && j->kind != JOB_READ) {
        /* the file failed: later writes are moot */
        j->status = -EIO;
        sh->job_running = 1;
        job_after(&j->work, 0);
        return;
    }
    if (j->kind == JOB_READ && !sh->file_ok) {
        j->status = -EIO;
        sh->job_running = 1;
        job_after(&j->work, 0);
        return;
    }
    j->work.data = j;
    sh->job_running = 1;
    if (uv_queue_work(sh->ctx->loop, &j->work, job_work, job_after) != 0) {
        j->status = -EIO;
        job_after(&j->work, 0);
    }
}

static void queue_job(p2p_shipper *sh, job *j)
{
    j->sh = sh;
    if (sh->jq_tail)
        sh->jq_tail->next = j;
    else
        sh->jq_head = j;
    sh->jq_tail = j;
    run_next_job(sh);
}

/* ---- default transport ------------------------------------------------------------------ */

static void on_remote_done(p2p_ctx *ctx, json_t *results, void *udata)
{
    (void)ctx;
    p2p_shipper *sh = udata;
    json_t *err = json_object_get(results, "error");
    if (err) {
        json_t *c = json_object_get(err, "code");
        p2p__shipper_result(sh, json_is_integer(c) ? (int)json_integer_value(c) : P2P_RPC_INTERNAL_ERROR,
                            json_string_value(json_object_get(err, "message")), NULL);
        return;
    }
    p2p__shipper_result(sh, 0, NULL, json_object_get(results, "result"));
}

static void remote_transport(p2p_shipper *sh, const char *params, size_t len, void *arg)
{
    (void)arg;
    json_t *p = json_loadb(params, len, 0, NULL);
    int r = p ? p2p_call_remote(sh->ctx, "role:coordinator", "log_collector/add_logs", p, sh->o.call_timeout_ms,
                                on_remote_done, sh)
              : -EINVAL;
    json_decref(p);
    if (r != 0)
        p2p__shipper_result(sh, P2P_RPC_INTERNAL_ERROR, "cannot encode the batch", NULL);
}

/* ---- life ------------------------------------------------------------------------------- */

p2p_shipper *p2p__shipper_new(p2p_ctx *ctx, const p2p_shipper_opts *opts)
{
    p2p_shipper *sh = p2p__xcalloc(1, sizeof(*sh));
    sh->ctx = ctx;
    sh->o = *opts;
    if (opts->spool_path)
        sh->o.spool_path = p2p__xstrdup(opts->spool_path);
#define DEF(f, v)                                                                                                  \
    if (!sh->o.f)                                                                                                  \
    sh->o.f = (v)
    DEF(mem_bytes, 8u << 20);
    DEF(batch_delay_ms, 2);
    DEF(batch_max_records, 5000);
    DEF(batch_max_bytes, 1u << 20);
    DEF(rate_window_ms, 30000);
    DEF(backoff_min_ms, 100);
    DEF(backoff_max_ms, 5000);
    DEF(call_timeout_ms, 10000);
#undef DEF
    if (sh->o.batch_max_records > 5000)
        sh->o.batch_max_records = 5000;
    if (!sh->o.transport)
        sh->o.transport = remote_transport;
    uv_mutex_init(&sh->mu);
    sh->lim = p2p__srclimit_new(sh->o.rate_burst, (int64_t)sh->o.rate_window_ms * 1000);
    sh->accepting = 1;
    sh->file.fd = -1;
    p2p__ctx_add_log_sink(ctx, sink, sh->o.ship_level <= P2P_LOG5_DEBUG ? P2P_LOG_DEBUG
                                     : sh->o.ship_level == P2P_LOG5_INFO ? P2P_LOG_INFO
                                     : sh->o.ship_level == P2P_LOG5_WARNING ? P2P_LOG_WARN
                                                                            : P2P_LOG_ERROR,
                          sh);
    return sh;
}

int p2p__shipper_ready(const p2p_shipper *sh)
{
    return sh->opened;
}

int p2p__shipper_start(p2p_shipper *sh)
{
    if (sh->started)
        return 0;
    uv_loop_t *loop = sh->ctx->loop;
    uv_async_init(loop, &sh->wake, on_wake);
    uv_timer_init(loop, &sh->batch_timer);
    uv_timer_init(loop, &sh->retry_timer);
    uv_timer_init(loop, &sh->tick_timer);
    sh->wake.data = sh->batch_timer.data = sh->retry_timer.data = sh->tick_timer.data = sh;
    uv_unref((uv_handle_t *)&sh->wake);
    uv_timer_start(&sh->tick_timer, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&sh->tick_timer);
    sh->handles_open = 1;
    sh->started = 1;
    uv_mutex_lock(&sh->mu);
    sh->loop_thread = uv_thread_self();
    sh->handles_ready = 1;
    uv_mutex_unlock(&sh->mu);
    if (sh->o.spool_path) {
        job *j = p2p__xcalloc(1, sizeof(*j));
        j->kind = JOB_OPEN;
        queue_job(sh, j);
    } else {
        sh->opened = 1;
        sh->reserved_pending = sh->reserved_durable = UINT64_MAX;
        kick(sh, 0);
    }
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

void p2p__shipper_stop(p2p_shipper *sh)
{
    if (!sh->started || sh->stopping)
        return;
    uv_mutex_lock(&sh->mu);
    sh->accepting = 0;
    sh->handles_ready = 0;
    uv_mutex_unlock(&sh->mu);
    /* what was logged up to now goes into the spool too */
    drain(sh);
    sh->stopping = 1;
    if (sh->opened && sh->file_ok) {
        uint64_t before = sh->mq_count;
        enforce_mem_cap(sh, 1);
        if (sh->mq_count)
            shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "%zu unshipped log records do not fit the spool file and are "
                        "dropped at stop", sh->mq_count);
        (void)before;
        job *j = p2p__xcalloc(1, sizeof(*j));
        j->kind = JOB_CLOSE;
        j->hdr = header_now(sh, sh->last_seq);
        queue_job(sh, j);
    } else if (sh->mq_count) {
        shipper_log(sh, P2P_LOG_WARN, SELF_SOURCE, "%zu unshipped log records dropped at stop (no spool file)",
                    sh->mq_count);
    }
    sh->handles_open = 0;
    uv_close((uv_handle_t *)&sh->wake, on_closed);
    uv_close((uv_handle_t *)&sh->batch_timer, on_closed);
    uv_close((uv_handle_t *)&sh->retry_timer, on_closed);
    uv_close((uv_handle_t *)&sh->tick_timer, on_closed);
}

void p2p__shipper_free(p2p_shipper *sh)
{
    if (!sh)
        return;
    p2p__ctx_remove_log_sink(sh->ctx, sink, sh);
    while (sh->in_head) {
        pend *p = sh->in_head;
        sh->in_head = p->next;
        free(p);
    }
    while (sh->mq_head)
        free(mq_pop(sh));
    while (sh->jq_head) { /* never ran: the loop was not run after stop */
        job *j = sh->jq_head;
        sh->jq_head = j->next;
        free(j->buf);
        free(j->ranges);
        free(j);
    }
    if (sh->file.fd >= 0 || sh->file.path)
        p2p__spool_close(&sh->file);
    free(sh->chunks);
    p2p__srclimit_free(sh->lim);
    uv_mutex_destroy(&sh->mu);
    free((char *)sh->o.spool_path);
    free(sh);
}

void p2p__shipper_stats(p2p_shipper *sh, p2p_shipper_stats *out)
{
    memset(out, 0, sizeof *out);
    uv_mutex_lock(&sh->mu);
    out->suppressed = sh->suppressed;
    out->mem_bytes = sh->in_bytes;
    out->mem_records = sh->in_count;
    out->lost = sh->in_lost;
    uv_mutex_unlock(&sh->mu);
    out->shipped = sh->shipped;
    out->acked = sh->acked;
    out->batches = sh->batches;
    out->failures = sh->failures;
    out->lost += sh->lost;
    out->mem_bytes += sh->mq_bytes;
    out->mem_records += sh->mq_count;
    out->file_bytes = sh->file_ok ? sh->file_end : 0;
    out->file_records = file_records(sh);
    out->last_seq = sh->last_seq;
    out->acked_seq = sh->acked_seq;
}

/* ---- the node's component --------------------------------------------------------------- */

static void logs_metrics(p2p_ctx *ctx, p2p_metrics_out *out, void *arg)
{
    (void)ctx;
    p2p_shipper_stats s;
    p2p__shipper_stats(arg, &s);
    p2p__metrics_emit(out, "p2p_logs_shipped_total", "Log records sent to the collector (resends count again).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)s.shipped);
    p2p__metrics_emit(out, "p2p_logs_acked_total", "Log records the collector acknowledged.", P2P_METRIC_COUNTER,
                      NULL, NULL, (double)s.acked);
    p2p__metrics_emit(out, "p2p_logs_batches_total", "add_logs calls made.", P2P_METRIC_COUNTER, NULL, NULL,
                      (double)s.batches);
    p2p__metrics_emit(out, "p2p_logs_send_failures_total", "add_logs calls that failed.", P2P_METRIC_COUNTER, NULL,
                      NULL, (double)s.failures);
    p2p__metrics_emit(out, "p2p_logs_lost_total", "Log records dropped (spool full, or refused), reported.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)s.lost);
    p2p__metrics_emit(out, "p2p_logs_suppressed_total", "Log lines held back by the per-source rate limit.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)s.suppressed);
    p2p__metrics_emit(out, "p2p_logs_spooled_bytes", "Bytes of unacknowledged log records (memory + file).",
                      P2P_METRIC_GAUGE, NULL, NULL, (double)(s.mem_bytes + s.file_bytes));
    p2p__metrics_emit(out, "p2p_logs_spool_memory_bytes", "Bytes of unacknowledged log records in memory.",
                      P2P_METRIC_GAUGE, NULL, NULL, (double)s.mem_bytes);
    p2p__metrics_emit(out, "p2p_logs_spool_file_bytes", "Size of the log spool file.", P2P_METRIC_GAUGE, NULL, NULL,
                      (double)s.file_bytes);
    p2p__metrics_emit(out, "p2p_logs_spooled_records", "Unacknowledged log records (memory + file).",
                      P2P_METRIC_GAUGE, NULL, NULL, (double)(s.mem_records + s.file_records));
    p2p__metrics_emit(out, "p2p_logs_last_seq", "Highest log record seq handed out.", P2P_METRIC_GAUGE, NULL, NULL,
                      (double)s.last_seq);
    p2p__metrics_emit(out, "p2p_logs_acked_seq", "Highest log record seq the collector acknowledged.",
                      P2P_METRIC_GAUGE, NULL, NULL, (double)s.acked_seq);
}

static int logs_start(p2p_component *c, char **err)
{
    (void)err;
    p2p_shipper *sh = c->self;
    p2p__metrics_source_add(c->ctx, "logs", logs_metrics, sh);
    return p2p__shipper_start(sh);
}

static void logs_stop(p2p_component *c)
{
    p2p__metrics_source_remove(c->ctx, "logs");
    p2p__shipper_stop(c->self);
}

static void logs_free(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    p2p__shipper_free(arg);
}

static const p2p_component_ops logs_ops = {
    .name = "logs",
    .deps = NULL, /* first up, last down: it ships the others' start and stop lines */
    .start = logs_start,
    .stop = logs_stop,
};

/* Record text per batch, so that the whole add_logs request stays within the
 * collector's http_max_body_size (the same key on every node by default): the
 * limit less room for the JSON-RPC envelope, the commas between records and the
 * few bytes per record the remote call's re-encoding may add (at most 5000
 * records: 16 KiB covers it). */
static size_t ship_batch_bytes(int64_t body_max)
{
    if (body_max <= 0)
        body_max = 1 << 20;
    size_t b = body_max > 2 * LOGSHIP_ENVELOPE_ROOM ? (size_t)body_max - LOGSHIP_ENVELOPE_ROOM : (size_t)body_max / 2;
    return b > (1u << 20) ? (1u << 20) : b;
}

void p2p__logs_register(p2p_ctx *ctx)
{
    const p2p_config *cfg = &ctx->cfg;
    char *path = p2p__xasprintf("%s/log-spool", cfg->state_directory);
    int lv = p2p__log_level5_parse(cfg->log_ship_level ? cfg->log_ship_level : "info");
    p2p_shipper_opts o = {
        .spool_path = path,
        .mem_bytes = cfg->log_spool_memory_bytes ? (uint64_t)cfg->log_spool_memory_bytes : 8u << 20,
        .file_bytes = (uint64_t)cfg->log_spool_file_bytes,
        .ship_level = lv < 0 ? P2P_LOG5_INFO : lv,
        .rate_burst = 10000,
        .rate_window_ms = 30000,
        .batch_max_bytes = ship_batch_bytes(cfg->http_max_body_size),
    };
    p2p_shipper *sh = p2p__shipper_new(ctx, &o);
    free(path);
    p2p__component_add(ctx, &logs_ops, sh);
    p2p__ctx_on_shutdown(ctx, logs_free, sh);
}
