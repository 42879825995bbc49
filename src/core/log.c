/*
 * log.c — one line per event on stderr, and to any registered sinks.
 *
 * A line is formatted into a stack buffer and written with a single write(2),
 * so concurrent writers (several nodes sharing a terminal in the demo) never
 * interleave inside a line, and nothing is held in a user-space buffer that a
 * crash would lose. Format:
 *   2026-11-21T00:51:25.123Z INFO  [http] message
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/ctx.h"

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

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

P2P_EXTERN void p2p_log(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *fmt, ...)
{
    if (ctx && level < ctx->log_level)
        return;
    char line[8192];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int head = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                        level_names[level & 3], source ? source : "-");
    if (head < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + head, sizeof(line) - (size_t)head - 1, fmt, ap);
    va_end(ap);
    if (body < 0)
        return;
    size_t len = (size_t)head + (size_t)body;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len] = '\n';
    ssize_t w;
    do {
        w = write(STDERR_FILENO, line, len + 1);
    } while (w < 0 && errno == EINTR);
    if (ctx && ctx->n_sinks) {
        line[len] = '\0';
        for (size_t i = 0; i < ctx->n_sinks; i++)
            ctx->sinks[i].fn(ctx, level, source, line + head, ctx->sinks[i].arg);
    }
}
