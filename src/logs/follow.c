/*
 * follow.c — live-follow subscribers (see follow.h).
 *
 * Each subscriber's queue is a fixed ring of record references. Publishing a
 * batch costs, per subscriber, one filter check per record and no allocation:
 * a subscriber that does not drain its queue costs a counter increment.
 */
#include "logs/follow.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

struct logsub {
    logsub *next;
    logfilter f;
    regex_t re;
    int has_re;
    char *node, *logger, *search; /* owned copies behind f */
    logrec **q;
    size_t qmax, qhead, qn;
    uint64_t skipped;
    logsub_notify_fn fn;
    void *arg;
    int closed;
};

logsub *logfollow_subscribe(logfollow *fl, const logfilter *f, int regex, size_t queue_max, logsub_notify_fn fn,
                            void *arg, char *err, size_t errlen)
{
    logsub *s = p2p__xcalloc(1, sizeof(*s));
    s->f = *f;
    s->node = f->node ? p2p__xstrdup(f->node) : NULL;
    s->logger = f->logger ? p2p__xstrdup(f->logger) : NULL;
    s->search = f->search ? p2p__xstrdup(f->search) : NULL;
    s->f.node = s->node;
    s->f.logger = s->logger;
    s->f.search = s->search;
    s->f.re = NULL;
    if (regex && s->search) {
        if (logfilter_regcomp(&s->re, s->search, err, errlen) != 0) {
            free(s->node);
            free(s->logger);
            free(s->search);
            free(s);
            return NULL;
        }
        s->has_re = 1;
        s->f.re = &s->re;
    }
    s->qmax = queue_max;
    s->q = queue_max ? p2p__xcalloc(queue_max, sizeof(logrec *)) : NULL;
    s->fn = fn;
    s->arg = arg;
    s->next = fl->head;
    fl->head = s;
    fl->n++;
    return s;
}

const logfilter *logsub_filter(const logsub *s)
{
    return &s->f;
}

size_t logsub_take(logsub *s, logrec **out, size_t max, uint64_t *skipped)
{
    size_t n = 0;
    while (n < max && s->qn) {
        out[n++] = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % s->qmax;
        s->qn--;
    }
    if (skipped) {
        *skipped = s->skipped;
        s->skipped = 0;
    }
    return n;
}

static void sub_free(logsub *s)
{
    while (s->qn) {
        logrec_unref(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % s->qmax;
        s->qn--;
    }
    if (s->has_re)
        regfree(&s->re);
    free(s->q);
    free(s->node);
    free(s->logger);
    free(s->search);
    free(s);
}

static void unlink_sub(logfollow *fl, logsub *s)
{
    for (logsub **pp = &fl->head; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            fl->n--;
            return;
        }
    }
}

void logsub_close(logfollow *fl, logsub *s)
{
    if (fl->publishing) {
        s->closed = 1; /* freed when the publish loop is done with it */
        return;
    }
    unlink_sub(fl, s);
    sub_free(s);
}

void logfollow_publish(logfollow *fl, logrec *const *recs, size_t n)
{
    if (!n || !fl->head)
        return;
    fl->publishing = 1;
    for (logsub *s = fl->head; s; s = s->next) {
        if (s->closed)
            continue;
        int any = 0;
        for (size_t i = 0; i < n; i++) {
            if (s->f.node && strcmp(s->f.node, recs[i]->node) != 0)
                break; /* a batch is one node's */
            if (!logfilter_match(&s->f, recs[i]))
                continue;
            any = 1;
            if (!s->qmax)
                break; /* wake-up only */
            if (s->qn == s->qmax) {
                s->skipped++;
                continue;
            }
            s->q[(s->qhead + s->qn) % s->qmax] = logrec_ref(recs[i]);
            s->qn++;
        }
        if (any && s->fn)
            s->fn(s, s->arg);
    }
    fl->publishing = 0;
    for (logsub **pp = &fl->head; *pp;) {
        logsub *s = *pp;
        if (s->closed) {
            *pp = s->next;
            fl->n--;
            sub_free(s);
        } else {
            pp = &s->next;
        }
    }
}

void logfollow_close_all(logfollow *fl)
{
    while (fl->head) {
        logsub *s = fl->head;
        fl->head = s->next;
        sub_free(s);
    }
    fl->n = 0;
}
