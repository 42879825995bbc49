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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
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

static void run_tail(logstore *s, const logfilter *f, size_t limit, size_t offset, logquery_result *out)
{
    logrec **m = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        if (f->node && strcmp(f->node, st->node) != 0)
            continue;
        for (size_t k = 0; k < st->count; k++) {
            logrec *r = logstream_at(st, k);
            if (logfilter_match(f, r))
                push(&m, &n, &cap, r);
        }
    }
    if (n > 1)
        qsort(m, n, sizeof(*m), cmp_time);
    out->total = n;
    size_t end = offset >= n ? 0 : n - offset;
    size_t start = end > limit ? end - limit : 0;
    out->n = end - start;
    out->recs = p2p__xcalloc(out->n ? out->n : 1, sizeof(logrec *));
    for (size_t i = 0; i < out->n; i++)
        out->recs[i] = logrec_ref(m[start + i]);
    free(m);
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    for (size_t i = 0; i < s->n; i++)
        cursor_append(&buf, &len, &bcap, s->streams[i]->node, s->streams[i]->hwm);
    out->cursor = buf ? buf : p2p__xstrdup("");
}

typedef struct lane {
    logstream *st;
    logrec **m; /* matches after the cursor, seq order */
    size_t n, cap, next;
} lane;

static void run_resume(logstore *s, const logfilter *f, const logcursor *cur, size_t limit, size_t offset,
                       logquery_result *out)
{
    lane *lanes = p2p__xcalloc(s->n ? s->n : 1, sizeof(lane));
    size_t nl = 0;
    for (size_t i = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        if (f->node && strcmp(f->node, st->node) != 0)
            continue;
        uint64_t after = cursor_pos(cur, st->node);
        if (st->count) {
            uint64_t first = logstream_at(st, 0)->seq;
            if (after + 1 < first && after < st->hwm)
                out->skipped += first - 1 - after;
        }
        lane *l = &lanes[nl++];
        l->st = st;
        for (size_t k = ring_after(st, after); k < st->count; k++) {
            logrec *r = logstream_at(st, k);
            if (logfilter_match(f, r))
                push(&l->m, &l->n, &l->cap, r);
        }
        out->total += l->n;
    }
    out->recs = p2p__xcalloc(limit ? limit : 1, sizeof(logrec *));
    size_t skip = offset;
    while (out->n < limit) {
        lane *best = NULL;
        for (size_t i = 0; i < nl; i++) {
            lane *l = &lanes[i];
            if (l->next < l->n && (!best || cmp_time(&l->m[l->next], &best->m[best->next]) < 0))
                best = l;
        }
        if (!best)
            break;
        logrec *r = best->m[best->next++];
        if (skip) {
            skip--;
            continue;
        }
        out->recs[out->n++] = logrec_ref(r);
    }
    /* where each node's page ended */
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    for (size_t i = 0, j = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        uint64_t pos = st->hwm;
        if (j < nl && lanes[j].st == st) {
            lane *l = &lanes[j++];
            if (l->next < l->n)
                pos = l->m[l->next]->seq - 1;
            free(l->m);
        }
        cursor_append(&buf, &len, &bcap, st->node, pos);
    }
    /* nodes the cursor names that the store no longer has keep their place */
    for (size_t i = 0; i < cur->n; i++)
        if (!logstore_find(s, cur->pos[i].node))
            cursor_append(&buf, &len, &bcap, cur->pos[i].node, cur->pos[i].seq);
    out->cursor = buf ? buf : p2p__xstrdup("");
    free(lanes);
}

void logquery_run(logstore *s, const logfilter *f, const logcursor *cur, size_t limit, size_t offset,
                  logquery_result *out)
{
    memset(out, 0, sizeof(*out));
    if (cur)
        run_resume(s, f, cur, limit, offset, out);
    else
        run_tail(s, f, limit, offset, out);
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
