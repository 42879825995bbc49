/*
 * follow.h — live-follow subscribers of the log collector.
 *
 * A subscriber gives a filter and a queue bound. Every stored record that
 * matches is pushed to its queue as it is ingested (a reference, no copy) and
 * its notify callback runs once per ingested batch that added something; the
 * consumer takes records when it can. A consumer that falls behind never slows
 * ingestion: once its queue is full, further matching records are not queued
 * but counted, and the next take reports them as skipped ("N lines skipped").
 *
 * Pure (no loop, no I/O): the collector calls logfollow_publish() after each
 * stored batch. Callbacks run on the loop thread; a notify callback may close
 * its own subscriber.
 */
#ifndef P2P_LOGS_FOLLOW_H
#define P2P_LOGS_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "logs/query.h"
#include "logs/record.h"

typedef struct logsub logsub;
typedef void (*logsub_notify_fn)(logsub *sub, void *arg);

typedef struct logfollow {
    logsub *head;
    size_t n;
    int publishing; /* inside logfollow_publish: closes are deferred */
} logfollow;

/* Subscribes with `f` (copied, strings included; a regex is compiled from
 * f->search when `regex`). queue_max 0 = wake-up only (nothing is queued; the
 * consumer re-reads with a cursor). Returns NULL with err set on a bad regex. */
logsub *logfollow_subscribe(logfollow *fl, const logfilter *f, int regex, size_t queue_max, logsub_notify_fn fn,
                            void *arg, char *err, size_t errlen);
/* Takes up to `max` queued records (references now owned by the caller) and
 * the count of records skipped since the last take. Returns how many. */
size_t logsub_take(logsub *s, logrec **out, size_t max, uint64_t *skipped);
const logfilter *logsub_filter(const logsub *s);
void logsub_close(logfollow *fl, logsub *s);

/* Offers stored records (of one batch, one node) to every subscriber. */
void logfollow_publish(logfollow *fl, logrec *const *recs, size_t n);
void logfollow_close_all(logfollow *fl);

#endif
