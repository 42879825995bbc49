/*
 * query.h — filters, cursors and queries over the store's in-memory rings and,
 * for older lines, its segment files.
 *
 * Two modes:
 *  - tail (no cursor): the newest `limit` matching lines after skipping the
 *    `offset` newest, returned oldest first (journalctl -n); paging back in
 *    time is offset += limit. The cursor returned is "now": every node's
 *    high-water mark, so a follow starts after the last line shown.
 *  - resume (a cursor): the first `limit` matching lines after the cursor,
 *    node by node in sequence order, merged by time. The cursor returned says
 *    exactly where that page ended for every node, so resuming with it never
 *    repeats and never misses a line, including late lines of a node that was
 *    cut off (they carry old times but new sequence numbers).
 *
 * A cursor is text: "node=seq,node=seq,..." (node ids cannot hold '=' or ','),
 * opaque to clients.
 */
#ifndef P2P_LOGS_QUERY_H
#define P2P_LOGS_QUERY_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "logs/store.h"

#define LOGQ_MAX_LIMIT 10000
#define LOGQ_MAX_SEARCH 256
#define LOGQ_MAX_CURSOR 65536
/* A query that reaches the segment files reads at most this many bytes of them
 * (a tail query always reads at least one whole segment) ... */
#define LOGQ_DISK_MAX_BYTES (64u * 1024 * 1024)
/* ... and keeps at most this many lines (offset + limit) per node from them. */
#define LOGQ_DISK_MAX_KEEP 100000

typedef struct logfilter {
    const char *node;   /* NULL = all */
    int min_level;      /* LOGREC_*, 0 = all */
    const char *logger; /* exact, NULL = all */
    const char *search; /* substring of the message, case-insensitive; NULL = none */
    regex_t *re;        /* instead of search when set */
    int64_t since_us;   /* inclusive, 0 = none */
    int64_t until_us;   /* inclusive, 0 = none */
} logfilter;

int logfilter_match(const logfilter *f, const logrec *r);

/* Compiles a POSIX extended regex for `search` (case-insensitive). Refuses
 * back-references (exponential in glibc) and repetition counts above 255
 * (they expand into huge automata). Returns 0 or -EINVAL with err set. */
int logfilter_regcomp(regex_t *re, const char *pattern, char *err, size_t errlen);

typedef struct logcursor_pos {
    char node[64];
    uint64_t seq;
} logcursor_pos;

typedef struct logcursor {
    logcursor_pos *pos;
    size_t n;
} logcursor;

/* Parses a cursor; "" is the empty cursor (everything retained is after it). */
int logcursor_parse(const char *s, logcursor *c, char *err, size_t errlen);
void logcursor_free(logcursor *c);

typedef struct logquery_result {
    logrec **recs; /* borrowed references taken (logquery_result_free drops them) */
    size_t n;
    size_t total;     /* lines matching in memory (tail mode: before offset/limit; resume: after the cursor) */
    uint64_t skipped; /* resume: lines deleted (or, memory only: out of memory) before they could be read */
    char *cursor;     /* heap */
    int partial;      /* the disk part stopped at its budget: resume from the cursor for more */
    uint64_t scanned_bytes; /* of segment files read */
} logquery_result;

/* A query in three steps, so the disk part can run on the thread pool:
 *  1. logq_prepare (loop thread): takes the matching ring records by reference,
 *     copies the filter, every node's high-water mark and, for the nodes whose
 *     wanted lines are older than their ring, the list of segment files;
 *     *needs_disk says whether step 2 is needed.
 *  2. logq_disk (any thread; touches nothing but the query and the files):
 *     reads those segments, at most LOGQ_DISK_MAX_BYTES, through the same
 *     filter. Records are taken only below the ring's first seq at step 1, so
 *     appends, eviction, retention (a deleted file is skipped) and clear_logs
 *     meanwhile cannot make a line appear twice or disappear between the parts.
 *  3. logq_finish (loop thread): merges disk and ring lines, pages, cursor.
 * The filter's regex (f->re) is borrowed: it must outlive the query. */
typedef struct logq logq;
logq *logq_prepare(logstore *s, const logfilter *f, const logcursor *cur, size_t limit, size_t offset,
                   int *needs_disk);
void logq_disk(logq *q);
void logq_finish(logq *q, logquery_result *out);
void logq_free(logq *q);
/* Sets the query's byte budget for its disk part (tests). */
void logq_set_budget(logq *q, uint64_t bytes);
/* Points the query's filter at the caller's regex after the caller moved it. */
void logq_set_regex(logq *q, regex_t *re);
/* 1 when the lines asked for lie on disk deeper than LOGQ_DISK_MAX_KEEP lines. */
int logq_too_deep(const logq *q);

/* Runs a query from memory only (no disk step). `cur` NULL = tail mode. */
void logquery_run(logstore *s, const logfilter *f, const logcursor *cur, size_t limit, size_t offset,
                  logquery_result *out);
void logquery_result_free(logquery_result *r);

/* 1 when a resume query with this cursor and filter would return something
 * (checks only the records of `node` after the cursor: for follow wake-ups). */
int logquery_has_new(logstore *s, const logfilter *f, const logcursor *cur, const char *node);

#endif
