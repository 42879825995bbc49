/*
 * view.h — the pure half of `p2p logs`: time arguments, the get_logs
 * parameters from the command's filters, reading a get_logs answer, and a
 * record as a human line (with colour on a terminal). No I/O, so it is tested
 * directly (tests/unit/test_logview.c).
 */
#ifndef P2P_LOGS_VIEW_H
#define P2P_LOGS_VIEW_H

#include <jansson.h>
#include <stddef.h>

/* A time argument as UTC seconds since the epoch. Accepts seconds ("1796209961.5"),
 * ISO 8601 UTC ("2026-11-21T00:51:25Z", "2026-11-21 00:51:25", "2026-11-21",
 * fractions allowed), relative ("-5m", "5m ago", "30s", "2h", "1d": that long
 * before now), and "now", "today", "yesterday". 0, or -EINVAL. */
int p2p__logs_parse_time(const char *s, double now, double *out);

/* The filters of `p2p logs`. NULL / 0 = not given. */
typedef struct p2p_logs_filter {
    const char *node, *level, *logger, *grep;
    double since, until; /* 0 = open */
    long limit;          /* -n; 0 = the collector's default */
} p2p_logs_filter;

/* get_logs params (contract names: node_id, level, logger_name, search,
 * since, until, limit) plus cursor/wait_ms when following. A new reference. */
json_t *p2p__logs_params(const p2p_logs_filter *f, const char *cursor, long wait_ms);

/* The records of a get_logs answer (borrowed array, or NULL): the answer
 * itself when it is an array, else its "logs" (or "records", "entries"),
 * sorted by ts in place. *cursor: its "cursor" (or "next_cursor") as text, or
 * NULL (borrowed until the answer is freed; a number is written into buf). */
json_t *p2p__logs_answer(json_t *answer, const char **cursor, char *buf, size_t n);

/* One record as a line, without the newline:
 *   2026-11-21T00:51:25.123456Z worker-2 WARNING [membership] message
 * with ANSI colour by level when `color`. Returns the length written (cut to n-1). */
size_t p2p__logs_format(const json_t *rec, int color, char *out, size_t n);

#endif
