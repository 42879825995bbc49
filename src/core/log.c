/*
 * log.c — one line per event on stderr, and to any registered sinks.
 *
 * A line is formatted into a stack buffer and written with a single write(2),
 * so concurrent writers (several nodes sharing a terminal in the demo) never
 * interleave inside a line, and nothing is held in a user-space buffer that a
 * crash would lose. Two formats (config key log_format):
 *   text: 2026-11-21T00:51:25.123Z INFO  [http] message
 *   json: {"ts":1796209961.123456,"node_id":"worker-1","level":"INFO","logger":"http",
 *          "message":"...","file":"src/http/server.c","func":"on_log_access","line":447}
 * The JSON object is the record the log shipper sends to the coordinator (see
 * docs/logs.md) plus the node id, so a site that collects stderr gets the same
 * fields as `p2p logs --json`.
 *
 * Sinks (the shipper) see each line at or above the level they asked for, which
 * may be below the local log_level: what is shipped and what is printed are
 * chosen apart (log_ship_level, log_level).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/util.h"

#undef p2p_log /* the macro in ctx.h; the exported function is defined here */

#define MAX_LOGGER 64
#define MAX_MESSAGE 16384

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
static const char *const level5_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};

int p2p__log_level_parse(const char *s, p2p_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (p2p_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

int p2p__log_level5(p2p_log_level level, const char *message, const char **message_out)
{
    if (message_out)
        *message_out = message;
    switch (level) {
    case P2P_LOG_DEBUG: return P2P_LOG5_DEBUG;
    case P2P_LOG_INFO: return P2P_LOG5_INFO;
    case P2P_LOG_WARN: return P2P_LOG5_WARNING;
    default: break;
    }
    if (message && strncmp(message, "critical: ", 10) == 0) {
        if (message_out)
            *message_out = message + 10;
        return P2P_LOG5_CRITICAL;
    }
    return P2P_LOG5_ERROR;
}

const char *p2p__log_level5_name(int level5)
{
    return level5 >= 0 && level5 <= P2P_LOG5_CRITICAL ? level5_names[level5] : "INFO";
}

int p2p__log_level5_parse(const char *name)
{
    if (!name)
        return -1;
    if (!strcasecmp(name, "warn"))
        return P2P_LOG5_WARNING;
    for (int i = 0; i <= P2P_LOG5_CRITICAL; i++)
        if (!strcasecmp(name, level5_names[i]))
            return i;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

char *p2p__utf8_sanitize(const char *s, size_t n)
{
    /* worst case every byte becomes the 3-byte replacement character */
    char *out = p2p__xmalloc(n * 3 + 1);
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(p + i, n - i);
        if (l == 0 || (l == 1 && p[i] == 0)) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = '\0';
    return out;
}

/* "/abs/path/src/core/log.c" -> "src/core/log.c": the part a reader knows. */
static const char *short_file(const char *file)
{
    if (!file)
        return NULL;
    const char *best = NULL;
    for (const char *p = strstr(file, "src/"); p; p = strstr(p + 1, "src/"))
        if (p == file || p[-1] == '/')
            best = p;
    return best ? best : file;
}

/* Cuts `s` to at most `max` bytes on a UTF-8 boundary (s is valid UTF-8). */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

static void set_text(json_t *o, const char *key, const char *s, size_t max, const char *mark)
{
    char *clean = p2p__utf8_sanitize(s, strlen(s));
    size_t len = strlen(clean);
    size_t cut = utf8_cut(clean, len, max - (mark ? strlen(mark) : 0));
    if (cut < len && mark) {
        memcpy(clean + cut, mark, strlen(mark));
        cut += strlen(mark);
    }
    json_object_set_new(o, key, json_stringn(clean, cut));
    free(clean);
}

json_t *p2p__log_line_json(const p2p_log_line *l)
{
    const char *msg;
    int lv = p2p__log_level5(l->level, l->message ? l->message : "", &msg);
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_real((double)l->ts_us / 1e6));
    json_object_set_new(o, "level", json_string(level5_names[lv]));
    set_text(o, "logger", l->source && *l->source ? l->source : "-", MAX_LOGGER, NULL);
    set_text(o, "message", msg, MAX_MESSAGE, " [cut]");
    if (l->file) {
        set_text(o, "file", short_file(l->file), 256, NULL);
        if (l->func)
            set_text(o, "func", l->func, 128, NULL);
        if (l->line > 0)
            json_object_set_new(o, "line", json_integer(l->line));
    }
    if (l->service)
        set_text(o, "service", l->service, MAX_LOGGER, NULL);
    if (l->request_id)
        set_text(o, "request_id", l->request_id, 128, NULL);
    return o;
}

static void write_all(const char *buf, size_t len)
{
    ssize_t w;
    do {
        w = write(STDERR_FILENO, buf, len);
    } while (w < 0 && errno == EINTR);
}

static void write_text(const p2p_log_line *l)
{
    char line[8400];
    time_t sec = (time_t)(l->ts_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] %s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(l->ts_us % 1000000) / 1000, level_names[l->level & 3], l->source, l->message);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(line) - 1 ? (size_t)n : sizeof(line) - 1;
    line[len] = '\n';
    write_all(line, len + 1);
}

static void write_json(p2p_ctx *ctx, const p2p_log_line *l)
{
    json_t *o = p2p__log_line_json(l);
    json_object_set_new(o, "node_id", json_string(p2p_node_id(ctx)));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(16));
    json_decref(o);
    if (!s)
        return;
    size_t len = strlen(s);
    s[len] = '\n'; /* over the NUL: written with its length */
    write_all(s, len + 1);
    free(s);
}

static __thread const char *tl_request_id;

const char *p2p__log_request_swap(const char *request_id)
{
    const char *old = tl_request_id;
    tl_request_id = request_id;
    return old;
}

static void vlog(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *file, const char *func,
                 int lineno, const char *service, const char *request_id, int local_only, const char *fmt, va_list ap)
{
    if (!request_id)
        request_id = tl_request_id;
    int to_stderr = !ctx || level >= ctx->log_level;
    int to_sinks = ctx && ctx->n_sinks && level >= ctx->sink_level && !local_only;
    if (!to_stderr && !to_sinks)
        return;
    char msg[8192];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(msg))
        memcpy(msg + sizeof(msg) - 4, "...", 4);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p2p_log_line l = {.ts_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000,
                      .level = level,
                      .source = source ? source : "-",
                      .message = msg,
                      .file = file,
                      .func = func,
                      .line = lineno,
                      .service = service,
                      .request_id = request_id};
    if (to_stderr) {
        if (ctx && ctx->log_json)
            write_json(ctx, &l);
        else
            write_text(&l);
    }
    if (to_sinks)
        for (size_t i = 0; i < ctx->n_sinks; i++)
            if (level >= ctx->sinks[i].level)
                ctx->sinks[i].fn(ctx, &l, ctx->sinks[i].arg);
}

void p2p__log_meta(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *file, const char *func,
                   int line, const char *service, const char *request_id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, level, source, file, func, line, service, request_id, 0, fmt, ap);
    va_end(ap);
}

P2P_EXTERN void p2p_log(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, level, source, NULL, NULL, 0, NULL, NULL, 0, fmt, ap);
    va_end(ap);
}

void p2p__log_local(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(ctx, level, source, NULL, NULL, 0, NULL, NULL, 1, fmt, ap);
    va_end(ap);
}
