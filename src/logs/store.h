/*
 * store.h — the collector's segment store: per node, append-only segment files
 * on disk and a bounded ring of the most recent records in memory.
 *
 * Layout: <dir>/<node_id>/<first-seq, 20 digits>.seg. One stream per node keeps
 * a node's records in its sequence order, makes "highest seq stored" (the
 * add_logs acknowledgement) the last record of the newest segment, and makes
 * clear_logs for one node a matter of deleting its files. A segment's name is
 * the first seq it may hold, so after a clear the next segment's name still
 * remembers the node's high-water mark across a restart.
 *
 * The store does plain synchronous file I/O and no fsync: the collector calls
 * it on the loop thread (write(2) of one buffer per batch into the page cache)
 * and runs fsync on the thread pool for the fds logstore_take_dirty() hands
 * out (group commit). Unit tests drive it directly.
 */
#ifndef P2P_LOGS_STORE_H
#define P2P_LOGS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "logs/record.h"

typedef struct logstore_cfg {
    const char *dir;          /* <state_directory>/logs */
    uint64_t segment_bytes;   /* rotate a segment once it is this big */
    uint64_t retention_bytes; /* all segments of all nodes together */
    int retention_days;       /* 0 = no age limit */
    size_t max_entries;       /* ring size per node (max_log_entries) */
} logstore_cfg;

typedef struct logseg_info {
    uint64_t base;   /* first seq it may hold (its name) */
    uint64_t bytes;  /* file size */
    int64_t mtime_s; /* last write */
} logseg_info;

typedef struct logstream {
    char node[64];
    char *dir;
    uint64_t hwm; /* highest seq stored (acknowledged) */
    int fd;       /* newest segment, open for append; -1 = none yet */
    int dirty;    /* written since the last logstore_take_dirty */
    int dir_dirty; /* a segment was created since */
    logseg_info *segs; /* oldest first; the last is the one `fd` appends to */
    size_t n_segs;
    /* the ring: the newest min(count, cap) records in seq order */
    logrec **ring;
    size_t cap, head, count;
    /* figures */
    uint64_t lines[LOGREC_NLEVELS]; /* records in the ring, by level */
    uint64_t ingested;              /* stored since the store opened */
    uint64_t lost, suppressed;      /* sums of those members over stored records (since open, plus the ring read back) */
    int64_t oldest_ts_us;           /* first record on disk, 0 = none */
    int64_t newest_ts_us;
    uint64_t damaged_bytes; /* cut from a segment's damaged tail at open */
} logstream;

typedef struct logstore {
    logstore_cfg cfg;
    char *dir;
    logstream **streams; /* sorted by node id */
    size_t n;
    uint64_t total_bytes;
    uint64_t deleted_segments;
} logstore;

/* Opens (creating <dir>) and reads every node's newest records back into the
 * rings: only the newest segments needed to fill max_entries are read; a
 * damaged tail of a newest segment is cut off. Returns 0 or a negative errno
 * with *err set (heap). */
int logstore_open(logstore **out, const logstore_cfg *cfg, char **err);
void logstore_close(logstore *s);

logstream *logstore_find(logstore *s, const char *node);

/* Stores the records of `b` whose seq is above the node's high-water mark, in
 * one write. All or nothing: on a write error the segment is cut back and
 * -errno returned. On success the stored records are also in the ring; their
 * pointers (borrowed) are in (*stored)[0..*n_stored) (inside b->recs). */
int logstore_append(logstore *s, const logbatch *b, logrec ***stored, size_t *n_stored, int64_t now_s);

/* Deletes the records of one node (NULL = all); the high-water marks stay. */
int logstore_clear(logstore *s, const char *node);

/* Deletes the oldest segments while the total is over retention_bytes, and
 * segments last written more than retention_days ago. Returns how many. */
size_t logstore_retention(logstore *s, int64_t now_s);

/* fds (dup'ed: the caller closes them) of segments written since the last
 * call, and paths of node directories that got a new file (heap, caller
 * frees). Returns the counts through the out-parameters. */
void logstore_take_dirty(logstore *s, int **fds, size_t *n_fds, char ***dirs, size_t *n_dirs);

/* The record `i` places from the oldest in a stream's ring. */
static inline logrec *logstream_at(const logstream *st, size_t i)
{
    return st->ring[(st->head + i) % st->cap];
}

#endif
