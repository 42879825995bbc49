/*
 * record.h — a collected log record and the pure decoders that make one: the
 * add_logs batch decoder (JSON params in, records or a clear error out) and the
 * record codec shared with the segment files.
 *
 * A record is one heap block (struct + its strings), reference counted on the
 * loop thread only: the in-memory index holds one reference, each live-follow
 * subscriber queue another, so an evicted line stays valid for a follower that
 * has not taken it yet. The wire shape is the one of docs/logs.md and
 * LOGS-CONTRACT: {seq, ts, level, logger, message, file?, func?, line?,
 * service?, request_id?, lost?, suppressed?}.
 */
#ifndef P2P_LOGS_RECORD_H
#define P2P_LOGS_RECORD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Levels, least severe first (the order `level` filters use). */
enum { LOGREC_DEBUG, LOGREC_INFO, LOGREC_WARNING, LOGREC_ERROR, LOGREC_CRITICAL, LOGREC_NLEVELS };

/* Limits of one record and one batch (docs/logs.md, "Limits"). */
#define LOGREC_MAX_BATCH 5000
#define LOGREC_MAX_LOGGER 64
/* 16 KiB as the contract says, plus room for the shipper's " [cut]" marker:
 * refusing a batch for a marker would stall that node's spool for good. */
#define LOGREC_MAX_MESSAGE (16384 + 64)
#define LOGREC_MAX_FILE 256
#define LOGREC_MAX_FUNC 128
#define LOGREC_MAX_SERVICE 64
#define LOGREC_MAX_REQUEST_ID 128
/* A record stamped further than this in the future is refused (clock skew we accept). */
#define LOGREC_MAX_FUTURE_S 600
/* ... and one before 2000-01-01 is a clock that was never set. */
#define LOGREC_MIN_TS_S 946684800
#define LOGREC_MAX_SEQ 9007199254740991LL /* 2^53 - 1: exact in every JSON reader */

typedef struct logrec {
    unsigned refs;
    uint64_t seq;
    int64_t ts_us; /* UTC microseconds since the epoch */
    int level;     /* LOGREC_* */
    int line;      /* -1 when absent */
    int64_t lost;        /* -1 when absent */
    int64_t suppressed;  /* -1 when absent */
    size_t disk_bytes;   /* framed size in its segment (for stats) */
    /* all inside the same block; the optional ones are NULL when absent */
    const char *node;
    const char *logger;
    const char *message;
    const char *file;
    const char *func;
    const char *service;
    const char *request_id;
} logrec;

static inline logrec *logrec_ref(logrec *r)
{
    r->refs++;
    return r;
}
void logrec_unref(logrec *r);

const char *logrec_level_name(int level);
/* "DEBUG".."CRITICAL" (also "WARN" and lower case, for filters) -> LOGREC_*, or -1. */
int logrec_level_parse(const char *s);

/* 1 when the n bytes are valid UTF-8 without NUL. */
int logrec_utf8_ok(const char *s, size_t n);

/* Decodes one record object for `node`. `now_us` > 0 also refuses timestamps
 * more than LOGREC_MAX_FUTURE_S ahead of it (0: no check, for records read
 * back from disk). Returns the record (refs = 1) or NULL with a message in
 * err ("field: what is wrong"). */
logrec *logrec_from_json(json_t *obj, const char *node, int64_t now_us, char *err, size_t errlen);

/* The record as its wire object (new reference), node_id included. */
json_t *logrec_to_json(const logrec *r);
/* The record's compact segment payload, without the node id (heap, *len set). */
char *logrec_encode(const logrec *r, size_t *len);

/* A decoded add_logs batch: every record valid, seqs strictly increasing. */
typedef struct logbatch {
    char node[64];
    logrec **recs;
    size_t n;
} logbatch;

/* Decodes add_logs params {node_id, records}. All or nothing: returns 0 with
 * `out` filled, or -EINVAL with `err` naming the index and the field and
 * nothing allocated. */
int logbatch_decode(json_t *params, int64_t now_us, logbatch *out, char *err, size_t errlen);
void logbatch_free(logbatch *b);

#endif
