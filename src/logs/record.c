/*
 * record.c — log records: decoding an add_logs batch, the record codec of the
 * segment files, and the wire object.
 *
 * Everything here is pure (JSON in, records out, no I/O, no clock: the caller
 * passes "now"), so the batch decoder is unit-tested and fuzzed on its own.
 * A batch is checked completely before anything is kept: the collector stores
 * a batch whole or not at all, and a refusal names the first bad record and
 * field, so a shipper author sees at once what to fix.
 */
#include "logs/record.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/util.h"
#include "pki/pki.h"

static const char *const level_names[LOGREC_NLEVELS] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

const char *logrec_level_name(int level)
{
    return level >= 0 && level < LOGREC_NLEVELS ? level_names[level] : "INFO";
}

int logrec_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < LOGREC_NLEVELS; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "WARN") == 0)
        return LOGREC_WARNING;
    return -1;
}

void logrec_unref(logrec *r)
{
    if (r && --r->refs == 0)
        free(r);
}

int logrec_utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p++;
        if (c == 0)
            return 0;
        if (c < 0x80)
            continue;
        size_t more;
        unsigned min;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1, min = 0x80;
            c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2, min = 0x800;
            c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3, min = 0x10000;
            c &= 0x07;
        } else {
            return 0;
        }
        if ((size_t)(end - p) < more)
            return 0;
        for (size_t i = 0; i < more; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (p[i] & 0x3f);
        }
        p += more;
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
    }
    return 1;
}

/* A string member: absent is fine unless `required`; else a string of
 * min..max bytes of valid UTF-8 without NUL. Sets *out (borrowed) and *len. */
static int get_str(json_t *obj, const char *key, int required, size_t min, size_t max, const char **out,
                   size_t *len, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    *len = 0;
    if (!v || (json_is_null(v) && !required))
        return required ? (snprintf(err, errlen, "%s: missing", key), -1) : 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: must be a string", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n < min || n > max) {
        snprintf(err, errlen, "%s: must be %zu..%zu bytes (got %zu)", key, min, max, n);
        return -1;
    }
    if (!logrec_utf8_ok(json_string_value(v), n)) {
        snprintf(err, errlen, "%s: must be UTF-8 without NUL", key);
        return -1;
    }
    *out = json_string_value(v);
    *len = n;
    return 0;
}

/* An integer member in lo..hi, or absent (*out = absent_value). */
static int get_int(json_t *obj, const char *key, int required, int64_t lo, int64_t hi, int64_t absent_value,
                   int64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v || (json_is_null(v) && !required)) {
        if (required) {
            snprintf(err, errlen, "%s: missing", key);
            return -1;
        }
        *out = absent_value;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s: must be an integer in %lld..%lld", key, (long long)lo, (long long)hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

enum { S_NODE, S_LOGGER, S_MESSAGE, S_FILE, S_FUNC, S_SERVICE, S_REQID, S_N };

logrec *logrec_from_json(json_t *obj, const char *node, int64_t now_us, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "must be an object");
        return NULL;
    }
    int64_t seq, line, lost, supp;
    if (get_int(obj, "seq", 1, 1, LOGREC_MAX_SEQ, 0, &seq, err, errlen))
        return NULL;
    json_t *ts = json_object_get(obj, "ts");
    if (!json_is_number(ts)) {
        snprintf(err, errlen, "ts: must be a number (UTC seconds since the epoch)");
        return NULL;
    }
    double tsv = json_number_value(ts);
    if (!isfinite(tsv) || tsv < LOGREC_MIN_TS_S || tsv > 32503680000.0 /* year 3000 */) {
        snprintf(err, errlen, "ts: out of range");
        return NULL;
    }
    int64_t ts_us = (int64_t)llround(tsv * 1e6);
    json_t *exact = json_object_get(obj, "ts_us"); /* written by logrec_encode: read back exactly */
    if (now_us == 0 && json_is_integer(exact) && llabs(json_integer_value(exact) - ts_us) < 1000)
        ts_us = json_integer_value(exact);
    if (now_us > 0 && ts_us > now_us + (int64_t)LOGREC_MAX_FUTURE_S * 1000000) {
        snprintf(err, errlen, "ts: more than %d s in the future (clock skew?)", LOGREC_MAX_FUTURE_S);
        return NULL;
    }
    json_t *lv = json_object_get(obj, "level");
    int level = -1;
    if (json_is_string(lv))
        for (int i = 0; i < LOGREC_NLEVELS; i++)
            if (strcmp(json_string_value(lv), level_names[i]) == 0)
                level = i;
    if (level < 0) {
        snprintf(err, errlen, "level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL");
        return NULL;
    }
    const char *s[S_N];
    size_t len[S_N];
    s[S_NODE] = node;
    len[S_NODE] = strlen(node);
    if (get_str(obj, "logger", 1, 1, LOGREC_MAX_LOGGER, &s[S_LOGGER], &len[S_LOGGER], err, errlen) ||
        get_str(obj, "message", 1, 0, LOGREC_MAX_MESSAGE, &s[S_MESSAGE], &len[S_MESSAGE], err, errlen) ||
        get_str(obj, "file", 0, 1, LOGREC_MAX_FILE, &s[S_FILE], &len[S_FILE], err, errlen) ||
        get_str(obj, "func", 0, 1, LOGREC_MAX_FUNC, &s[S_FUNC], &len[S_FUNC], err, errlen) ||
        get_str(obj, "service", 0, 1, LOGREC_MAX_SERVICE, &s[S_SERVICE], &len[S_SERVICE], err, errlen) ||
        get_str(obj, "request_id", 0, 1, LOGREC_MAX_REQUEST_ID, &s[S_REQID], &len[S_REQID], err, errlen) ||
        get_int(obj, "line", 0, 0, 2147483647, -1, &line, err, errlen) ||
        get_int(obj, "lost", 0, 0, LOGREC_MAX_SEQ, -1, &lost, err, errlen) ||
        get_int(obj, "suppressed", 0, 0, LOGREC_MAX_SEQ, -1, &supp, err, errlen))
        return NULL;

    size_t total = sizeof(logrec);
    for (int i = 0; i < S_N; i++)
        if (s[i])
            total += len[i] + 1;
    logrec *r = p2p__xmalloc(total);
    memset(r, 0, sizeof(*r));
    r->refs = 1;
    r->seq = (uint64_t)seq;
    r->ts_us = ts_us;
    r->level = level;
    r->line = (int)line;
    r->lost = lost;
    r->suppressed = supp;
    char *p = (char *)(r + 1);
    const char **dst[S_N] = {&r->node, &r->logger, &r->message, &r->file, &r->func, &r->service, &r->request_id};
    for (int i = 0; i < S_N; i++) {
        if (!s[i])
            continue;
        memcpy(p, s[i], len[i]);
        p[len[i]] = '\0';
        *dst[i] = p;
        p += len[i] + 1;
    }
    return r;
}

static json_t *to_json(const logrec *r, int with_node)
{
    /* ts as a real with microseconds; %.6f round-trips through llround(x*1e6) */
    json_t *o = json_object();
    json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
    json_object_set_new(o, "ts", json_real((double)r->ts_us / 1e6));
    if (with_node)
        json_object_set_new(o, "node_id", json_string(r->node));
    json_object_set_new(o, "level", json_string(level_names[r->level]));
    json_object_set_new(o, "logger", json_string(r->logger));
    json_object_set_new(o, "message", json_string(r->message));
    if (r->file)
        json_object_set_new(o, "file", json_string(r->file));
    if (r->func)
        json_object_set_new(o, "func", json_string(r->func));
    if (r->line >= 0)
        json_object_set_new(o, "line", json_integer(r->line));
    if (r->service)
        json_object_set_new(o, "service", json_string(r->service));
    if (r->request_id)
        json_object_set_new(o, "request_id", json_string(r->request_id));
    if (r->lost >= 0)
        json_object_set_new(o, "lost", json_integer(r->lost));
    if (r->suppressed >= 0)
        json_object_set_new(o, "suppressed", json_integer(r->suppressed));
    return o;
}

json_t *logrec_to_json(const logrec *r)
{
    json_t *o = to_json(r, 1);
    /* exact microseconds too: encoders print reals with 15-17 digits */
    json_object_set_new(o, "ts_us", json_integer(r->ts_us));
    /* ISO 8601 too, for people and for the guide's "timestamp" */
    time_t sec = (time_t)(r->ts_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char iso[96];
    snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)(r->ts_us % 1000000));
    json_object_set_new(o, "timestamp", json_string(iso));
    return o;
}

char *logrec_encode(const logrec *r, size_t *len)
{
    json_t *o = to_json(r, 0);
    /* the timestamp as exact microseconds too: a double of today's epoch has
     * ~0.2 us of resolution, so the disk copy keeps an integer to read back */
    json_object_set_new(o, "ts_us", json_integer(r->ts_us));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    *len = strlen(s);
    return s;
}

int logbatch_decode(json_t *params, int64_t now_us, logbatch *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(params)) {
        snprintf(err, errlen, "Invalid params: expected {node_id, records}");
        return -EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach(params, key, val)
    {
        if (strcmp(key, "node_id") != 0 && strcmp(key, "records") != 0) {
            snprintf(err, errlen, "Invalid params: unexpected parameter '%.40s'", key);
            return -EINVAL;
        }
    }
    json_t *node = json_object_get(params, "node_id"), *recs = json_object_get(params, "records");
    if (!json_is_string(node) || json_string_length(node) != strlen(json_string_value(node)) ||
        !pki_node_id_valid(json_string_value(node))) {
        snprintf(err, errlen, "Invalid params: node_id must be a node id (1..63 of [A-Za-z0-9._-])");
        return -EINVAL;
    }
    if (!json_is_array(recs)) {
        snprintf(err, errlen, "Invalid params: records must be an array");
        return -EINVAL;
    }
    size_t n = json_array_size(recs);
    if (n < 1 || n > LOGREC_MAX_BATCH) {
        snprintf(err, errlen, "Invalid params: records must hold 1..%d records (got %zu)", LOGREC_MAX_BATCH, n);
        return -EINVAL;
    }
    snprintf(out->node, sizeof out->node, "%s", json_string_value(node));
    out->recs = p2p__xcalloc(n, sizeof(logrec *));
    char why[200];
    for (size_t i = 0; i < n; i++) {
        logrec *r = logrec_from_json(json_array_get(recs, i), out->node, now_us, why, sizeof why);
        if (r && i > 0 && r->seq <= out->recs[i - 1]->seq) {
            snprintf(why, sizeof why, "seq: must be greater than the previous record's (%llu)",
                     (unsigned long long)out->recs[i - 1]->seq);
            logrec_unref(r);
            r = NULL;
        }
        if (!r) {
            snprintf(err, errlen, "Invalid params: records[%zu].%s; nothing stored", i, why);
            logbatch_free(out);
            return -EINVAL;
        }
        out->recs[out->n++] = r;
    }
    return 0;
}

void logbatch_free(logbatch *b)
{
    for (size_t i = 0; i < b->n; i++)
        logrec_unref(b->recs[i]);
    free(b->recs);
    memset(b, 0, sizeof(*b));
}
