/*
 * wsproto.c — the dashboard WebSocket's message codec and resume ring (see
 * wsproto.h). Pure: unit-tested in tests/unit/test_wsproto.c, the decoder
 * fuzzed by fuzz/fuzz_wsmsg.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "web/wsproto.h"

#define WS_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15)) /* as P2P_JSON_FLAGS */

/* ---- client messages ------------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A string member of at most `max` bytes, UTF-8 without NUL; copied into `dst`. */
static int get_str(json_t *v, const char *name, char *dst, size_t max, char *err, size_t errlen)
{
    if (!json_is_string(v))
        return fail(err, errlen, "%s must be a string", name);
    size_t n = json_string_length(v);
    if (n > max)
        return fail(err, errlen, "%s must be at most %zu bytes", name, max);
    if (strlen(json_string_value(v)) != n)
        return fail(err, errlen, "%s must not contain NUL", name);
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

static int decode_filter(json_t *o, p2p_wsfilter *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    if (json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return fail(err, errlen, "the log filter must be an object {node_id?, level?, logger_name?, search?}");
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (json_is_null(v))
            continue;
        int r = 0;
        if (!strcmp(key, "node_id")) {
            r = get_str(v, "filter.node_id", f->node, sizeof f->node - 1, err, errlen);
        } else if (!strcmp(key, "logger_name") || !strcmp(key, "logger")) {
            r = get_str(v, "filter.logger_name", f->logger, sizeof f->logger - 1, err, errlen);
        } else if (!strcmp(key, "search")) {
            r = get_str(v, "filter.search", f->search, sizeof f->search - 1, err, errlen);
        } else if (!strcmp(key, "level")) {
            char lv[16];
            r = get_str(v, "filter.level", lv, sizeof lv - 1, err, errlen);
            if (r == 0 && *lv) {
                int l = logrec_level_parse(lv);
                if (l < 0)
                    return fail(err, errlen, "filter.level must be DEBUG, INFO, WARNING, ERROR or CRITICAL");
                f->min_level = l;
            }
        } else {
            return fail(err, errlen, "unexpected filter member '%.40s'", key);
        }
        if (r)
            return r;
    }
    return 0;
}

static int only_keys(json_t *o, const char *const *allowed, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= !strcmp(*a, key);
        if (!ok)
            return fail(err, errlen, "unexpected member '%.40s'", key);
    }
    return 0;
}

int p2p__wsm_decode(const char *data, size_t len, p2p_wsm *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len == 4 && memcmp(data, "ping", 4) == 0) { /* the original page's keep-alive */
        out->type = P2P_WSM_PING;
        return 0;
    }
    json_error_t je;
    json_t *o = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return fail(err, errlen, "a message must be a JSON object with a \"type\"");
    }
    int r = 0;
    json_t *type = json_object_get(o, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    if (!strcmp(t, "ping")) {
        static const char *const keys[] = {"type", NULL};
        r = only_keys(o, keys, err, errlen);
        out->type = P2P_WSM_PING;
    } else if (!strcmp(t, "log_filter")) {
        static const char *const keys[] = {"type", "filter", NULL};
        r = only_keys(o, keys, err, errlen);
        if (r == 0)
            r = decode_filter(json_object_get(o, "filter"), &out->filter, err, errlen);
        out->type = P2P_WSM_LOG_FILTER;
        out->has_filter = 1;
    } else if (!strcmp(t, "auth")) {
        static const char *const keys[] = {"type", "token", "resume", "log_filter", NULL};
        r = only_keys(o, keys, err, errlen);
        json_t *tok = json_object_get(o, "token"), *resume = json_object_get(o, "resume"),
               *filter = json_object_get(o, "log_filter");
        out->type = P2P_WSM_AUTH;
        if (r == 0 && (!json_is_string(tok) || json_string_length(tok) == 0 ||
                       json_string_length(tok) > P2P_WS_MAX_TOKEN ||
                       strlen(json_string_value(tok)) != json_string_length(tok)))
            r = fail(err, errlen, "auth needs \"token\": a bearer token or the admin API key (1..%d bytes)",
                     P2P_WS_MAX_TOKEN);
        if (r == 0 && resume && !json_is_null(resume)) {
            if (!json_is_integer(resume) || json_integer_value(resume) < 0)
                r = fail(err, errlen, "resume must be the seq of the last message received (an integer >= 0)");
            else {
                out->has_resume = 1;
                out->resume = (uint64_t)json_integer_value(resume);
            }
        }
        if (r == 0 && filter) {
            r = decode_filter(filter, &out->filter, err, errlen);
            out->has_filter = 1;
        }
        if (r == 0) {
            out->token_len = json_string_length(tok);
            out->token = p2p__xmalloc(out->token_len + 1);
            memcpy(out->token, json_string_value(tok), out->token_len + 1);
        }
    } else {
        r = fail(err, errlen, "unknown message type '%.40s' (auth, log_filter, ping)", t);
    }
    json_decref(o);
    if (r)
        memset(out, 0, sizeof(*out));
    return r;
}

void p2p__wsm_free(p2p_wsm *m)
{
    if (m->token) {
        memset(m->token, 0, m->token_len);
        free(m->token);
    }
    memset(m, 0, sizeof(*m));
}

void p2p__wsfilter_logfilter(const p2p_wsfilter *wf, logfilter *f)
{
    memset(f, 0, sizeof(*f));
    f->node = wf->node[0] ? wf->node : NULL;
    f->min_level = wf->min_level;
    f->logger = wf->logger[0] ? wf->logger : NULL;
    f->search = wf->search[0] ? wf->search : NULL;
}

/* ---- outgoing messages -------------------------------------------------------------- */

size_t p2p__ws_frame_header(uint8_t opcode, uint64_t len, uint8_t hdr[10])
{
    hdr[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        hdr[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        return 4;
    }
    hdr[1] = 127;
    for (int i = 0; i < 8; i++)
        hdr[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

p2p_wsbuf *p2p__wsbuf_new(const char *data, size_t len)
{
    p2p_wsbuf *b = p2p__xmalloc(sizeof(*b) + len + 1);
    b->refs = 1;
    b->len = len;
    b->hdr_len = p2p__ws_frame_header(0x1, len, b->hdr);
    memcpy(b->data, data, len);
    b->data[len] = '\0';
    return b;
}

p2p_wsbuf *p2p__wsbuf_json(const json_t *obj)
{
    size_t len = json_dumpb(obj, NULL, 0, WS_JSON_FLAGS);
    p2p_wsbuf *b = p2p__xmalloc(sizeof(*b) + len + 1);
    b->refs = 1;
    b->len = json_dumpb(obj, b->data, len, WS_JSON_FLAGS);
    b->data[b->len] = '\0';
    b->hdr_len = p2p__ws_frame_header(0x1, b->len, b->hdr);
    return b;
}

void p2p__wsbuf_unref(p2p_wsbuf *b)
{
    if (b && --b->refs == 0)
        free(b);
}

p2p_wsbuf *p2p__ws_delta(const char *type, uint64_t seq, json_t *fields)
{
    json_t *o = json_pack("{s:s, s:I}", "type", type, "seq", (json_int_t)seq);
    if (fields)
        json_object_update(o, fields);
    json_object_set_new(o, "type", json_string(type)); /* fields cannot override these */
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    p2p_wsbuf *b = p2p__wsbuf_json(o);
    json_decref(o);
    return b;
}

int p2p__ws_log_match(const logfilter *f, const logrec *r)
{
    return (!f->node || strcmp(f->node, r->node) == 0) && logfilter_match(f, r);
}

p2p_wsbuf *p2p__ws_logs(uint64_t seq, logrec *const *recs, size_t n, const logfilter *f, uint64_t skipped)
{
    json_t *logs = json_array();
    for (size_t i = 0; i < n; i++)
        if (!f || p2p__ws_log_match(f, recs[i]))
            json_array_append_new(logs, logrec_to_json(recs[i]));
    if (json_array_size(logs) == 0 && skipped == 0) {
        json_decref(logs);
        return NULL;
    }
    json_t *o = json_pack("{s:s, s:I, s:o, s:I}", "type", "logs", "seq", (json_int_t)seq, "logs", logs, "skipped",
                          (json_int_t)skipped);
    p2p_wsbuf *b = p2p__wsbuf_json(o);
    json_decref(o);
    return b;
}

/* ---- ring ----------------------------------------------------------------------------- */

void p2p__wsring_init(p2p_wsring *r, size_t cap, size_t max_bytes, uint64_t first_seq)
{
    memset(r, 0, sizeof(*r));
    r->cap = cap ? cap : 1;
    r->v = p2p__xcalloc(r->cap, sizeof(*r->v));
    r->max_bytes = max_bytes;
    r->last_seq = first_seq - 1;
}

static void entry_clear(p2p_wsring_entry *e)
{
    p2p__wsbuf_unref(e->msg);
    for (size_t i = 0; i < e->n; i++)
        logrec_unref(e->recs[i]);
    free(e->recs);
    memset(e, 0, sizeof(*e));
}

static void drop_oldest(p2p_wsring *r)
{
    p2p_wsring_entry *e = &r->v[r->head];
    r->bytes -= e->bytes;
    entry_clear(e);
    r->head = (r->head + 1) % r->cap;
    r->n--;
}

void p2p__wsring_free(p2p_wsring *r)
{
    while (r->n)
        drop_oldest(r);
    free(r->v);
    r->v = NULL;
}

static p2p_wsring_entry *push(p2p_wsring *r, size_t bytes)
{
    while (r->n && (r->n == r->cap || r->bytes + bytes > r->max_bytes))
        drop_oldest(r);
    p2p_wsring_entry *e = &r->v[(r->head + r->n) % r->cap];
    r->n++;
    e->seq = ++r->last_seq;
    e->bytes = bytes;
    r->bytes += bytes;
    return e;
}

const p2p_wsring_entry *p2p__wsring_push_msg(p2p_wsring *r, const char *type, json_t *fields)
{
    p2p_wsbuf *b = p2p__ws_delta(type, r->last_seq + 1, fields);
    p2p_wsring_entry *e = push(r, p2p__wsbuf_wire(b) + sizeof(*b));
    e->msg = b;
    return e;
}

const p2p_wsring_entry *p2p__wsring_push_logs(p2p_wsring *r, logrec **recs, size_t n, uint64_t skipped)
{
    size_t bytes = sizeof(logrec *) * n;
    for (size_t i = 0; i < n; i++)
        bytes += sizeof(logrec) + strlen(recs[i]->message) + 64; /* the records are shared with the store */
    p2p_wsring_entry *e = push(r, bytes);
    e->recs = p2p__xmalloc((n ? n : 1) * sizeof(*recs));
    memcpy(e->recs, recs, n * sizeof(*recs));
    e->n = n;
    e->skipped = skipped;
    return e;
}

const p2p_wsring_entry *p2p__wsring_at(const p2p_wsring *r, size_t i)
{
    return i < r->n ? &r->v[(r->head + i) % r->cap] : NULL;
}

int p2p__wsring_resume(const p2p_wsring *r, uint64_t seq, size_t *first)
{
    if (seq > r->last_seq)
        return -ENOENT; /* not one of ours (another run of the node) */
    if (seq == r->last_seq) {
        *first = r->n;
        return 0;
    }
    if (r->n == 0)
        return -ENOENT;
    uint64_t oldest = r->v[r->head].seq;
    if (seq + 1 < oldest)
        return -ENOENT; /* what came right after seq is gone */
    *first = (size_t)(seq + 1 - oldest);
    return 0;
}
