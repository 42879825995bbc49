/*
 * wsproto.h — the dashboard WebSocket's messages, pure (no loop, no I/O): the
 * decoder of what a browser sends, the encoder of what the hub pushes (one
 * shared, already framed buffer per message), and the bounded ring of recent
 * deltas that a reconnecting page resumes from. docs/dashboard.md describes
 * the protocol; src/web/hub.c drives it, src/web/ws.c carries it.
 */
#ifndef P2P_WEB_WSPROTO_H
#define P2P_WEB_WSPROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "logs/query.h"
#include "logs/record.h"

/* ---- client messages ---------------------------------------------------------- */

#define P2P_WS_MAX_TOKEN 8192 /* bytes of a token or API key in an auth message */

typedef enum p2p_wsm_type { P2P_WSM_AUTH = 1, P2P_WSM_LOG_FILTER, P2P_WSM_PING } p2p_wsm_type;

/* A page's log filter; "" / 0 = any. */
typedef struct p2p_wsfilter {
    char node[64];
    int min_level; /* LOGREC_* */
    char logger[LOGREC_MAX_LOGGER + 1];
    char search[LOGQ_MAX_SEARCH + 1]; /* case-insensitive substring of the message */
} p2p_wsfilter;

typedef struct p2p_wsm {
    p2p_wsm_type type;
    char *token; /* auth: heap, NUL-terminated (no NUL inside) */
    size_t token_len;
    int has_resume;
    uint64_t resume;
    int has_filter; /* auth (optional "log_filter") and log_filter ("filter") */
    p2p_wsfilter filter;
} p2p_wsm;

/* Decodes one text message: {"type":"auth","token":..,"resume"?:..,"log_filter"?:{..}},
 * {"type":"log_filter","filter":{..}}, {"type":"ping"} (or the original page's bare
 * text "ping"). Unknown members, wrong types, over-long strings, a level that is
 * not a level: -EINVAL with a sentence in err and nothing allocated. 0 with
 * `out` filled (free with p2p__wsm_free). */
int p2p__wsm_decode(const char *data, size_t len, p2p_wsm *out, char *err, size_t errlen);
void p2p__wsm_free(p2p_wsm *m);
/* The filter as the log store's (pointers into `wf`). */
void p2p__wsfilter_logfilter(const p2p_wsfilter *wf, logfilter *f);

/* ---- outgoing messages: framed once, shared by every socket ----------------------- */

/* One server-to-client text frame: header + JSON payload, reference counted
 * (loop thread only). */
typedef struct p2p_wsbuf {
    unsigned refs;
    size_t len;     /* payload bytes */
    size_t hdr_len; /* 2, 4 or 10 */
    uint8_t hdr[10];
    char data[];
} p2p_wsbuf;

/* Writes the header of an unmasked, final frame with `opcode` and a payload of
 * `len` bytes; returns its size (2, 4 or 10). */
size_t p2p__ws_frame_header(uint8_t opcode, uint64_t len, uint8_t hdr[10]);
/* A text frame of `len` bytes of `data` (copied), refs = 1. */
p2p_wsbuf *p2p__wsbuf_new(const char *data, size_t len);
/* A text frame of `obj` serialized compactly, refs = 1. */
p2p_wsbuf *p2p__wsbuf_json(const json_t *obj);
static inline p2p_wsbuf *p2p__wsbuf_ref(p2p_wsbuf *b)
{
    b->refs++;
    return b;
}
void p2p__wsbuf_unref(p2p_wsbuf *b);
/* Bytes a frame puts on the wire (header + payload). */
static inline size_t p2p__wsbuf_wire(const p2p_wsbuf *b)
{
    return b->hdr_len + b->len;
}

/* {"type": type, "seq": seq, <fields>...} (fields borrowed, may be NULL). */
p2p_wsbuf *p2p__ws_delta(const char *type, uint64_t seq, json_t *fields);
/* 1 when the record passes the filter, its node included (logfilter_match
 * leaves the node to the store's per-node streams). */
int p2p__ws_log_match(const logfilter *f, const logrec *r);
/* {"type":"logs","seq":seq,"logs":[the records matching f],"skipped":skipped},
 * or NULL when nothing matches and skipped is 0. */
p2p_wsbuf *p2p__ws_logs(uint64_t seq, logrec *const *recs, size_t n, const logfilter *f, uint64_t skipped);

/* ---- the ring of recent deltas -------------------------------------------------- */

/* One delta: a broadcast message (the same bytes for everyone), or a batch of
 * log records (filtered per socket when sent). */
typedef struct p2p_wsring_entry {
    uint64_t seq;
    p2p_wsbuf *msg; /* broadcast, or NULL */
    logrec **recs;  /* log batch (references held) */
    size_t n;
    uint64_t skipped; /* lines the hub itself missed before this batch */
    size_t bytes;     /* what the entry costs (counted against max_bytes) */
} p2p_wsring_entry;

typedef struct p2p_wsring {
    p2p_wsring_entry *v;
    size_t cap, head, n; /* head: index of the oldest */
    size_t bytes, max_bytes;
    uint64_t last_seq; /* seq of the newest entry ever pushed (kept when the ring empties) */
} p2p_wsring;

/* A ring of at most `cap` entries and `max_bytes` bytes; `first_seq` - 1 is the
 * seq before anything was pushed. */
void p2p__wsring_init(p2p_wsring *r, size_t cap, size_t max_bytes, uint64_t first_seq);
void p2p__wsring_free(p2p_wsring *r);
/* Appends a delta with seq = last_seq + 1, dropping the oldest entries while
 * over a bound, and returns it (the ring's; valid until the next push):
 *   push_msg: the broadcast p2p__ws_delta(type, seq, fields);
 *   push_logs: a log batch; the n references in `recs` pass to the ring. */
const p2p_wsring_entry *p2p__wsring_push_msg(p2p_wsring *r, const char *type, json_t *fields);
const p2p_wsring_entry *p2p__wsring_push_logs(p2p_wsring *r, logrec **recs, size_t n, uint64_t skipped);
/* The i-th entry, oldest first. */
const p2p_wsring_entry *p2p__wsring_at(const p2p_wsring *r, size_t i);
/* Where a client that saw everything up to `seq` resumes: 0 and *first (index
 * of the first entry it lacks; r->n when it lacks none), or -ENOENT when
 * deltas it lacks are gone (or `seq` was never issued by this ring): it needs a
 * fresh `initial`. */
int p2p__wsring_resume(const p2p_wsring *r, uint64_t seq, size_t *first);

#endif
