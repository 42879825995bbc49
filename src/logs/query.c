/*
 * query.c — filters, cursors and the two query modes over the rings (see
 * query.h). Pure with respect to I/O: everything is in memory.
 *
 * Cost: a query scans the rings of the nodes it asks for (at most
 * max_log_entries each) once; tail mode then sorts the matches by time. With
 * the default 1000 lines per node that is well under a millisecond for a
 * dozen nodes.
 */
#define _GNU_SOURCE /* strcasestr */
#include "logs/query.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "logs/segment.h"
#include "pki/pki.h"

int logfilter_match(const logfilter *f, const logrec *r)
{
    if (r->level < f->min_level)
        return 0;
    if (f->since_us && r->ts_us < f->since_us)
        return 0;
    if (f->until_us && r->ts_us > f->until_us)
        return 0;
    if (f->logger && strcmp(f->logger, r->logger) != 0)
        return 0;
    if (f->re)
        return regexec(f->re, r->message, 0, NULL, 0) == 0;
    if (f->search && *f->search && !strcasestr(r->message, f->search))
        return 0;
    return 1;
}

int logfilter_regcomp(regex_t *re, const char *pattern, char *err, size_t errlen)
{
    size_t n = strlen(pattern);
    if (n == 0 || n > LOGQ_MAX_SEARCH) {
        snprintf(err, errlen, "search: a regex must be 1..%d bytes", LOGQ_MAX_SEARCH);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] == '\\' && i + 1 < n) {
            if (pattern[i + 1] >= '0' && pattern[i + 1] <= '9') {
                snprintf(err, errlen, "search: back-references are not allowed in a regex");
                return -EINVAL;
            }
            i++;
            continue;
        }
        if (pattern[i] == '{') {
            /* {m}, {m,}, {m,n}: every count at most 255 */
            size_t j = i + 1;
            while (j < n && pattern[j] != '}') {
                if (pattern[j] >= '0' && pattern[j] <= '9') {
                    long v = strtol(pattern + j, NULL, 10);
                    if (v > 255) {
                        snprintf(err, errlen, "search: repetition counts above 255 are not allowed");
                        return -EINVAL;
                    }
                    while (j < n && pattern[j] >= '0' && pattern[j] <= '9')
                        j++;
                } else {
                    j++;
                }
            }
        }
    }
    int r = regcomp(re, pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB);
    if (r != 0) {
        char why[128];
        regerror(r, re, why, sizeof why);
        snprintf(err, errlen, "search: invalid regex: %s", why);
        return -EINVAL;
    }
    return 0;
}

/* ---- cursors ------------------------------------------------------------------ */

int logcursor_parse(const char *s, logcursor *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    size_t len = strlen(s);
    if (len > LOGQ_MAX_CURSOR) {
        snprintf(err, errlen, "cursor: too long");
        return -EINVAL;
    }
    const char *p = s;
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        if (!eq || eq > end || eq == p || (size_t)(eq - p) > 63) {
            snprintf(err, errlen, "cursor: malformed (use the cursor a get_logs answer returned)");
            logcursor_free(c);
            return -EINVAL;
        }
        logcursor_pos pos;
        memset(&pos, 0, sizeof pos);
        memcpy(pos.node, p, (size_t)(eq - p));
        char *stop = NULL;
        errno = 0;
        unsigned long long v = strtoull(eq + 1, &stop, 10);
        if (!pki_node_id_valid(pos.node) || stop != end || eq + 1 == end || errno || eq[1] == '-') {
            snprintf(err, errlen, "cursor: malformed (use the cursor a get_logs answer returned)");
            logcursor_free(c);
            return -EINVAL;
        }
        pos.seq = v;
        c->pos = p2p__xrealloc(c->pos, (c->n + 1) * sizeof(*c->pos));
        c->pos[c->n++] = pos;
        p = *end ? end + 1 : end;
    }
    return 0;
}

void logcursor_free(logcursor *c)
{
    free(c->pos);
    memset(c, 0, sizeof(*c));
}

static uint64_t cursor_pos(const logcursor *c, const char *node)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->pos[i].node, node) == 0)
            return c->pos[i].seq;
    return 0;
}

static void cursor_append(char **buf, size_t *len, size_t *cap, const char *node, uint64_t seq)
{
    char one[100];
    int n = snprintf(one, sizeof one, "%s%s=%" PRIu64, *len ? "," : "", node, seq);
    if (*len + (size_t)n + 1 > *cap) {
        *cap = (*cap + (size_t)n + 1) * 2;
        *buf = p2p__xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, one, (size_t)n + 1);
    *len += (size_t)n;
}

/* ---- queries -------------------------------------------------------------------- */

static int cmp_time(const void *a, const void *b)
{
    const logrec *x = *(logrec *const *)a, *y = *(logrec *const *)b;
    if (x->ts_us != y->ts_us)
        return x->ts_us < y->ts_us ? -1 : 1;
    int c = strcmp(x->node, y->node);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Index of the first ring entry with seq > after (the ring is in seq order). */
static size_t ring_after(const logstream *st, uint64_t after)
{
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (logstream_at(st, mid)->seq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void push(logrec ***v, size_t *n, size_t *cap, logrec *r)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *v = p2p__xrealloc(*v, *cap * sizeof(logrec *));
    }
    (*v)[(*n)++] = r;
}

/* ---- a query in three steps ---------------------------------------------------------- */

typedef struct segref {
    uint64_t base, bytes;
} segref;

typedef struct lane {
    char node[64];
    uint64_t after;     /* resume: the cursor's position */
    logrec **ring;      /* ring matches after `after`, seq order (references) */
    size_t n_ring;
    /* the disk part */
    int disk;           /* read segment files for this node */
    char *dir;
    segref *segs;       /* copied at prepare, oldest first */
    size_t n_segs;
    uint64_t below;     /* disk records must have seq < below: the ring's first at prepare */
    logrec **dm;        /* disk matches, seq order (owned references) */
    size_t n_dm, cap_dm;
    uint64_t counted;   /* tail: matches seen on disk (kept or not) */
    int truncated;      /* resume: the disk scan stopped before `below`, at stop_seq */
    uint64_t stop_seq;
    uint64_t skipped;
    /* merging */
    size_t next;
} lane;

typedef struct nodepos {
    char node[64];
    uint64_t hwm;
} nodepos;

struct logq {
    int resume;
    logfilter f; /* strings owned; the regex borrowed from the caller */
    char *f_node, *f_logger, *f_search;
    size_t limit, offset;
    lane *lanes;
    size_t n_lanes;
    nodepos *all; /* every node of the store and its high-water mark at prepare */
    size_t n_all;
    logcursor_pos *gone; /* cursor entries of nodes the store does not have */
    size_t n_gone;
    uint64_t scanned, budget;
    int progress; /* the disk part has read a line in range */
    int partial;
    int too_deep;
};

static int lane_has_disk_only(const logstream *st)
{
    /* records older than the ring are on disk when the ring is full and the
     * oldest segment starts before the ring's first record */
    return st->count && st->count == st->cap && st->n_segs && st->segs[0].base < logstream_at(st, 0)->seq;
}

static void lane_copy_segs(lane *l, const logstream *st)
{
    l->disk = 1;
    l->dir = p2p__xstrdup(st->dir);
    l->below = logstream_at(st, 0)->seq;
    l->segs = p2p__xcalloc(st->n_segs, sizeof(segref));
    for (size_t k = 0; k < st->n_segs; k++)
        if (st->segs[k].base < l->below)
            l->segs[l->n_segs++] = (segref){st->segs[k].base, st->segs[k].bytes};
}

logq *logq_prepare(logstore *s, const logfilter *f, const logcursor *cur, size_t limit, size_t offset,
                   int *needs_disk)
{
    logq *q = p2p__xcalloc(1, sizeof(*q));
    q->resume = cur != NULL;
    q->f = *f;
    q->f.node = q->f_node = f->node ? p2p__xstrdup(f->node) : NULL;
    q->f.logger = q->f_logger = f->logger ? p2p__xstrdup(f->logger) : NULL;
    q->f.search = q->f_search = f->search ? p2p__xstrdup(f->search) : NULL;
    q->limit = limit;
    q->offset = offset;
    q->budget = LOGQ_DISK_MAX_BYTES;
    q->lanes = p2p__xcalloc(s->n ? s->n : 1, sizeof(lane));
    q->all = p2p__xcalloc(s->n ? s->n : 1, sizeof(nodepos));
    size_t want = offset + limit;
    int disk = 0;
    for (size_t i = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        snprintf(q->all[q->n_all].node, sizeof q->all[0].node, "%s", st->node);
        q->all[q->n_all++].hwm = st->hwm;
        if (f->node && strcmp(f->node, st->node) != 0)
            continue;
        lane *l = &q->lanes[q->n_lanes++];
        snprintf(l->node, sizeof l->node, "%s", st->node);
        size_t cap = 0;
        if (q->resume) {
            l->after = cursor_pos(cur, st->node);
            for (size_t k = ring_after(st, l->after); k < st->count; k++) {
                logrec *r = logstream_at(st, k);
                if (logfilter_match(f, r))
                    push(&l->ring, &l->n_ring, &cap, logrec_ref(r));
            }
            if (st->count) {
                uint64_t first = logstream_at(st, 0)->seq;
                if (l->after + 1 < first && l->after < st->hwm) {
                    if (lane_has_disk_only(st))
                        lane_copy_segs(l, st);
                    else
                        l->skipped = first - 1 - l->after;
                }
            }
        } else {
            for (size_t k = 0; k < st->count; k++) {
                logrec *r = logstream_at(st, k);
                if (logfilter_match(f, r))
                    push(&l->ring, &l->n_ring, &cap, logrec_ref(r));
            }
            /* older lines are wanted when the ring has too few matches, unless the
             * ring already reaches back past `since` (a node's times follow its seqs) */
            if (l->n_ring < want && lane_has_disk_only(st) &&
                !(f->since_us && logstream_at(st, 0)->ts_us < f->since_us))
                lane_copy_segs(l, st);
        }
        disk |= l->disk;
    }
    if (cur)
        for (size_t i = 0; i < cur->n; i++)
            if (!logstore_find(s, cur->pos[i].node)) {
                q->gone = p2p__xrealloc(q->gone, (q->n_gone + 1) * sizeof(*q->gone));
                q->gone[q->n_gone++] = cur->pos[i];
            }
    if (disk && want > LOGQ_DISK_MAX_KEEP) {
        q->too_deep = 1; /* answered from memory, marked partial */
        for (size_t i = 0; i < q->n_lanes; i++)
            q->lanes[i].disk = 0;
        disk = 0;
        q->partial = 1;
    }
    *needs_disk = disk;
    return q;
}

void logq_set_budget(logq *q, uint64_t bytes)
{
    q->budget = bytes;
}

void logq_set_regex(logq *q, regex_t *re)
{
    q->f.re = re;
}

int logq_too_deep(const logq *q)
{
    return q->too_deep;
}

/* ---- reading segment files (thread pool) ------------------------------------------------ */

#define SEG_CHUNK (1024 * 1024)

typedef int (*seg_fn)(void *arg, logrec *r); /* takes the record; nonzero stops */

/* Streams the records of one segment file through fn, reading 1 MiB at a time.
 * Adds the bytes read to *scanned; stops (returning 1) when fn asks. Returns -1
 * when the file cannot be opened (deleted meanwhile by retention or
 * clear_logs), 0 at its end. */
static int seg_each(const char *path, const char *node, uint64_t *scanned, seg_fn fn, void *arg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t cap = SEG_CHUNK + LOGSEG_FRAME_HDR + LOGSEG_MAX_PAYLOAD;
    uint8_t *buf = p2p__xmalloc(cap);
    size_t len = 0, off = 0;
    int eof = 0, started = 0, ret = 0;
    for (;;) {
        const uint8_t *p = NULL;
        size_t plen = 0;
        int r = started ? logseg_next(buf, len, &off, &p, &plen) : -1;
        if (r == 1) {
            json_t *o = json_loadb((const char *)p, plen, 0, NULL);
            char why[100];
            logrec *rec = logrec_from_json(o, node, 0, why, sizeof why);
            json_decref(o);
            if (rec && fn(arg, rec)) {
                ret = 1;
                break;
            }
            continue;
        }
        if (eof)
            break; /* the end, or a partial frame at the end */
        if (started && r == -1 && len - off >= LOGSEG_FRAME_HDR + LOGSEG_MAX_PAYLOAD)
            break; /* damage: the valid prefix is all there is */
        /* keep the unparsed tail and read the next chunk behind it */
        memmove(buf, buf + off, len - off);
        len -= off;
        off = 0;
        ssize_t n;
        do
            n = read(fd, buf + len, cap - len);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            eof = 1;
        else {
            len += (size_t)n;
            *scanned += (uint64_t)n;
        }
        if (!started && (len >= LOGSEG_MAGIC_LEN || eof)) {
            if (!logseg_check_magic(buf, len))
                break;
            off = LOGSEG_MAGIC_LEN;
            started = 1;
        }
    }
    free(buf);
    close(fd);
    return ret;
}

typedef struct tail_ctx {
    logq *q;
    lane *l;
    logrec **m; /* a circular window of the newest `keep` matches */
    size_t head, n, keep;
    int64_t max_ts;
} tail_ctx;

static int tail_rec(void *arg, logrec *r)
{
    tail_ctx *c = arg;
    if (r->ts_us > c->max_ts)
        c->max_ts = r->ts_us;
    if (r->seq >= c->l->below || !logfilter_match(&c->q->f, r)) {
        logrec_unref(r);
        return 0;
    }
    c->l->counted++;
    if (c->n == c->keep) {
        logrec_unref(c->m[c->head]);
        c->m[c->head] = r;
        c->head = (c->head + 1) % c->keep;
    } else {
        c->m[(c->head + c->n) % c->keep] = r;
        c->n++;
    }
    return 0;
}

/* Tail: newest segments first, until the lane has enough matches, the
 * segments reach back past `since`, or the budget is spent. */
static void disk_tail(logq *q, lane *l)
{
    size_t want = q->offset + q->limit;
    for (size_t k = l->n_segs; k-- > 0;) {
        if (l->n_ring + l->n_dm >= want)
            return;
        if (q->scanned && q->scanned + l->segs[k].bytes > q->budget) {
            q->partial = 1;
            return;
        }
        char *path = p2p__xasprintf("%s/%020" PRIu64 ".seg", l->dir, l->segs[k].base);
        size_t keep = want - l->n_ring - l->n_dm;
        tail_ctx c = {q, l, p2p__xcalloc(keep, sizeof(logrec *)), 0, 0, keep, INT64_MIN};
        uint64_t scanned = q->scanned;
        seg_each(path, l->node, &scanned, tail_rec, &c);
        q->scanned = scanned;
        free(path);
        /* this (older) segment's matches go before the ones already read */
        if (c.n) {
            if (l->n_dm + c.n > l->cap_dm) {
                l->cap_dm = l->n_dm + c.n;
                l->dm = p2p__xrealloc(l->dm, l->cap_dm * sizeof(logrec *));
            }
            memmove(l->dm + c.n, l->dm, l->n_dm * sizeof(logrec *));
            for (size_t i = 0; i < c.n; i++)
                l->dm[i] = c.m[(c.head + i) % c.keep];
            l->n_dm += c.n;
        }
        free(c.m);
        if (q->f.since_us && c.max_ts != INT64_MIN && c.max_ts < q->f.since_us)
            return; /* everything older is older still */
    }
}

typedef struct resume_ctx {
    logq *q;
    lane *l;
    size_t want;
    int any, why; /* why it stopped: 1 = reached the ring, 2 = enough matches, 3 = the budget */
    uint64_t first_seq, last_seq;
} resume_ctx;

static int resume_rec(void *arg, logrec *r)
{
    resume_ctx *c = arg;
    lane *l = c->l;
    uint64_t seq = r->seq;
    if (seq <= l->after || seq >= l->below) {
        logrec_unref(r);
        if (seq >= l->below) {
            c->why = 1; /* past the ring's start: this lane's disk part is done */
            return 1;
        }
        return 0;
    }
    if (!c->any) {
        c->any = 1;
        c->first_seq = seq;
    }
    c->last_seq = seq;
    c->q->progress = 1;
    if (!logfilter_match(&c->q->f, r)) {
        logrec_unref(r);
    } else {
        push(&l->dm, &l->n_dm, &l->cap_dm, r);
        if (l->n_dm >= c->want) {
            c->why = 2; /* enough for any page this query can return */
            return 1;
        }
    }
    if (c->q->scanned >= c->q->budget) {
        c->why = 3; /* stopped after a line it read: the next page goes on from there */
        return 1;
    }
    return 0;
}

/* Resume: from the segment holding after + 1 forward to the ring's start. */
static void disk_resume(logq *q, lane *l)
{
    size_t k0 = 0;
    for (size_t k = 0; k < l->n_segs; k++)
        if (l->segs[k].base <= l->after + 1)
            k0 = k;
    int from_oldest = l->n_segs && l->after + 1 < l->segs[0].base;
    resume_ctx c = {q, l, q->offset + q->limit, 0, 0, 0, l->after};
    for (size_t k = k0; k < l->n_segs && !c.why; k++) {
        /* once some lane has read a line, the budget can stop the scan (and the
         * cursor moves on from there); before that, a page always reads on */
        if (q->scanned >= q->budget && q->progress) {
            q->partial = l->truncated = 1;
            break;
        }
        char *path = p2p__xasprintf("%s/%020" PRIu64 ".seg", l->dir, l->segs[k].base);
        seg_each(path, l->node, &q->scanned, resume_rec, &c);
        free(path);
        if (c.why == 2)
            l->truncated = 1;
        else if (c.why == 3)
            q->partial = l->truncated = 1;
    }
    if (l->truncated)
        l->stop_seq = c.last_seq;
    if (from_oldest)
        l->skipped = (c.any ? c.first_seq : l->below) - 1 - l->after;
}

void logq_disk(logq *q)
{
    for (size_t i = 0; i < q->n_lanes; i++) {
        lane *l = &q->lanes[i];
        if (!l->disk)
            continue;
        if (q->resume)
            disk_resume(q, l);
        else
            disk_tail(q, l);
        if (q->partial && !q->resume)
            break;
    }
}

/* ---- finishing (loop thread) --------------------------------------------------------------- */

static size_t lane_len(const lane *l)
{
    return l->n_dm + (l->truncated ? 0 : l->n_ring);
}

static logrec *lane_at(const lane *l, size_t i)
{
    return i < l->n_dm ? l->dm[i] : l->ring[i - l->n_dm];
}

static void finish_tail(logq *q, logquery_result *out)
{
    logrec **m = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < q->n_lanes; i++) {
        lane *l = &q->lanes[i];
        for (size_t k = 0; k < lane_len(l); k++)
            push(&m, &n, &cap, lane_at(l, k));
        out->total += l->n_ring + (l->counted > l->n_dm ? l->counted : l->n_dm);
    }
    if (n > 1)
        qsort(m, n, sizeof(*m), cmp_time);
    size_t end = q->offset >= n ? 0 : n - q->offset;
    size_t start = end > q->limit ? end - q->limit : 0;
    out->n = end - start;
    out->recs = p2p__xcalloc(out->n ? out->n : 1, sizeof(logrec *));
    for (size_t i = 0; i < out->n; i++)
        out->recs[i] = logrec_ref(m[start + i]);
    free(m);
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    for (size_t i = 0; i < q->n_all; i++)
        cursor_append(&buf, &len, &bcap, q->all[i].node, q->all[i].hwm);
    out->cursor = buf ? buf : p2p__xstrdup("");
}

static void finish_resume(logq *q, logquery_result *out)
{
    out->recs = p2p__xcalloc(q->limit ? q->limit : 1, sizeof(logrec *));
    for (size_t i = 0; i < q->n_lanes; i++) {
        out->total += lane_len(&q->lanes[i]);
        out->skipped += q->lanes[i].skipped;
    }
    size_t skip = q->offset;
    while (out->n < q->limit) {
        lane *best = NULL;
        logrec *br = NULL;
        for (size_t i = 0; i < q->n_lanes; i++) {
            lane *l = &q->lanes[i];
            if (l->next < lane_len(l)) {
                logrec *r = lane_at(l, l->next);
                if (!best || cmp_time(&r, &br) < 0) {
                    best = l;
                    br = r;
                }
            }
        }
        if (!best)
            break;
        best->next++;
        if (skip) {
            skip--;
            continue;
        }
        out->recs[out->n++] = logrec_ref(br);
    }
    /* where each node's page ended */
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    for (size_t i = 0, j = 0; i < q->n_all; i++) {
        uint64_t pos = q->all[i].hwm;
        if (j < q->n_lanes && strcmp(q->lanes[j].node, q->all[i].node) == 0) {
            lane *l = &q->lanes[j++];
            if (l->next < lane_len(l))
                pos = lane_at(l, l->next)->seq - 1;
            else if (l->truncated)
                pos = l->stop_seq;
        }
        cursor_append(&buf, &len, &bcap, q->all[i].node, pos);
    }
    /* nodes the cursor names that the store no longer has keep their place */
    for (size_t i = 0; i < q->n_gone; i++)
        cursor_append(&buf, &len, &bcap, q->gone[i].node, q->gone[i].seq);
    out->cursor = buf ? buf : p2p__xstrdup("");
}

void logq_finish(logq *q, logquery_result *out)
{
    memset(out, 0, sizeof(*out));
    if (q->resume)
        finish_resume(q, out);
    else
        finish_tail(q, out);
    out->partial = q->partial;
    out->scanned_bytes = q->scanned;
}

void logq_free(logq *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n_lanes; i++) {
        lane *l = &q->lanes[i];
        for (size_t k = 0; k < l->n_ring; k++)
            logrec_unref(l->ring[k]);
        for (size_t k = 0; k < l->n_dm; k++)
            logrec_unref(l->dm[k]);
        free(l->ring);
        free(l->dm);
        free(l->segs);
        free(l->dir);
    }
    free(q->lanes);
    free(q->all);
    free(q->gone);
    free(q->f_node);
    free(q->f_logger);
    free(q->f_search);
    free(q);
}

void logquery_run(logstore *s, const logfilter *f, const logcursor *cur, size_t limit, size_t offset,
                  logquery_result *out)
{
    int disk;
    logq *q = logq_prepare(s, f, cur, limit, offset, &disk);
    for (size_t i = 0; i < q->n_lanes; i++)
        if (q->lanes[i].disk) {
            /* memory only: what the ring holds, older lines counted as skipped */
            lane *l = &q->lanes[i];
            l->disk = 0;
            if (q->resume)
                l->skipped = l->below - 1 - l->after;
        }
    logq_finish(q, out);
    logq_free(q);
}

void logquery_result_free(logquery_result *r)
{
    for (size_t i = 0; i < r->n; i++)
        logrec_unref(r->recs[i]);
    free(r->recs);
    free(r->cursor);
    memset(r, 0, sizeof(*r));
}

int logquery_has_new(logstore *s, const logfilter *f, const logcursor *cur, const char *node)
{
    if (f->node && strcmp(f->node, node) != 0)
        return 0;
    logstream *st = logstore_find(s, node);
    if (!st)
        return 0;
    for (size_t k = ring_after(st, cursor_pos(cur, node)); k < st->count; k++)
        if (logfilter_match(f, logstream_at(st, k)))
            return 1;
    return 0;
}
