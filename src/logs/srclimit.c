/*
 * srclimit.c — per-source rate limit of shipped log lines (see srclimit.h).
 *
 * Fixed windows per source, as journald does: the window opens at the
 * source's first line and lasts window_us; lines past the burst are counted,
 * not shipped. Sources are few (components and services), so a linear table
 * is the simplest structure that is fast enough.
 */
#include "logs/srclimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct entry {
    char source[65];
    int64_t window_start;
    uint32_t count;
    uint64_t suppressed;
    int64_t first_us, last_us;
} entry;

struct p2p_srclimit {
    uint32_t burst;
    int64_t window_us;
    entry *v;
    size_t n;
    entry shared; /* "*": sources past the table's size */
};

p2p_srclimit *p2p__srclimit_new(uint32_t burst, int64_t window_us)
{
    p2p_srclimit *l = p2p__xcalloc(1, sizeof(*l));
    l->burst = burst;
    l->window_us = window_us > 0 ? window_us : 1;
    l->v = p2p__xcalloc(P2P_SRCLIMIT_MAX_SOURCES, sizeof(entry));
    snprintf(l->shared.source, sizeof l->shared.source, "*");
    return l;
}

void p2p__srclimit_free(p2p_srclimit *l)
{
    if (!l)
        return;
    free(l->v);
    free(l);
}

static void take_report(entry *e, p2p_srclimit_report *rep)
{
    memcpy(rep->source, e->source, sizeof rep->source);
    rep->suppressed = e->suppressed;
    rep->first_us = e->first_us;
    rep->last_us = e->last_us;
    e->suppressed = 0;
}

static entry *find(p2p_srclimit *l, const char *source, int64_t now)
{
    for (size_t i = 0; i < l->n; i++)
        if (strncmp(l->v[i].source, source, 64) == 0)
            return &l->v[i];
    entry *e = NULL;
    if (l->n < P2P_SRCLIMIT_MAX_SOURCES) {
        e = &l->v[l->n++];
    } else {
        for (size_t i = 0; i < l->n && !e; i++) /* reuse one whose window ended with nothing to report */
            if (now - l->v[i].window_start >= l->window_us && l->v[i].suppressed == 0)
                e = &l->v[i];
        if (!e)
            return &l->shared;
    }
    memset(e, 0, sizeof *e);
    snprintf(e->source, sizeof e->source, "%.64s", source);
    e->window_start = now;
    return e;
}

int p2p__srclimit_check(p2p_srclimit *l, const char *source, int64_t now_us, p2p_srclimit_report *rep,
                        int *have_rep)
{
    *have_rep = 0;
    if (l->burst == 0)
        return 1;
    entry *e = find(l, source, now_us);
    if (now_us - e->window_start >= l->window_us || now_us < e->window_start) {
        if (e->suppressed) {
            take_report(e, rep);
            *have_rep = 1;
        }
        e->window_start = now_us;
        e->count = 0;
    }
    if (e->count < l->burst) {
        e->count++;
        return 1;
    }
    if (e->suppressed++ == 0)
        e->first_us = now_us;
    e->last_us = now_us;
    return 0;
}

size_t p2p__srclimit_sweep(p2p_srclimit *l, int64_t now_us, void (*fn)(void *arg, const p2p_srclimit_report *r),
                           void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i <= l->n; i++) {
        entry *e = i < l->n ? &l->v[i] : &l->shared;
        if (e->suppressed && now_us - e->window_start >= l->window_us) {
            p2p_srclimit_report rep;
            take_report(e, &rep);
            e->window_start = now_us;
            e->count = 0;
            fn(arg, &rep);
            n++;
        }
    }
    return n;
}
