/*
 * view.c — the pure half of `p2p logs` (see view.h).
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "logs/view.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse_iso(const char *s, double *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p)
        return -EINVAL;
    double frac = 0;
    if (*p == 'T' || *p == ' ') {
        const char *q = strptime(p + 1, "%H:%M", &tm);
        if (!q)
            return -EINVAL;
        p = q;
        if (*p == ':') {
            if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]))
                return -EINVAL;
            tm.tm_sec = (p[1] - '0') * 10 + (p[2] - '0');
            p += 3;
            if (*p == '.') {
                char *e;
                frac = strtod(p, &e);
                p = e;
            }
        }
    }
    if (*p == 'Z')
        p++;
    if (*p)
        return -EINVAL;
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -EINVAL;
    *out = (double)timegm(&tm) + frac;
    return 0;
}

int p2p__logs_parse_time(const char *s, double now, double *out)
{
    if (!s || !*s)
        return -EINVAL;
    if (!strcmp(s, "now")) {
        *out = now;
        return 0;
    }
    if (!strcmp(s, "today") || !strcmp(s, "yesterday")) {
        double day = floor(now / 86400) * 86400;
        *out = !strcmp(s, "today") ? day : day - 86400;
        return 0;
    }
    if (parse_iso(s, out) == 0)
        return 0;
    /* relative: [-]N(s|m|h|d)[ ago] */
    const char *p = s;
    int neg = *p == '-';
    if (neg)
        p++;
    char *e;
    errno = 0;
    double v = strtod(p, &e);
    if (e == p || errno || v < 0 || !isfinite(v))
        return -EINVAL;
    if (!*e && !neg) { /* a bare number: seconds since the epoch */
        *out = v;
        return 0;
    }
    double unit;
    switch (*e) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return -EINVAL;
    }
    e++;
    if (!strcmp(e, " ago"))
        e += 4;
    if (*e)
        return -EINVAL;
    *out = now - v * unit;
    return 0;
}

json_t *p2p__logs_params(const p2p_logs_filter *f, const char *cursor, long wait_ms)
{
    json_t *p = json_object();
    if (f->node)
        json_object_set_new(p, "node_id", json_string(f->node));
    if (f->level)
        json_object_set_new(p, "level", json_string(f->level));
    if (f->logger)
        json_object_set_new(p, "logger_name", json_string(f->logger));
    if (f->grep)
        json_object_set_new(p, "search", json_string(f->grep));
    if (f->since > 0)
        json_object_set_new(p, "since", json_real(f->since));
    if (f->until > 0)
        json_object_set_new(p, "until", json_real(f->until));
    if (f->limit > 0)
        json_object_set_new(p, "limit", json_integer(f->limit));
    if (cursor)
        json_object_set_new(p, "cursor", json_string(cursor));
    if (wait_ms > 0)
        json_object_set_new(p, "wait_ms", json_integer(wait_ms));
    return p;
}

static double rec_ts(json_t *r)
{
    json_t *t = json_object_get(r, "ts");
    return json_is_number(t) ? json_number_value(t) : 0;
}

static int by_ts(const void *a, const void *b)
{
    double x = rec_ts(*(json_t *const *)a), y = rec_ts(*(json_t *const *)b);
    return x < y ? -1 : x > y;
}

json_t *p2p__logs_answer(json_t *answer, const char **cursor, char *buf, size_t n)
{
    *cursor = NULL;
    json_t *recs = answer;
    if (json_is_object(answer)) {
        static const char *const keys[] = {"logs", "records", "entries"};
        recs = NULL;
        for (size_t i = 0; i < 3 && !recs; i++)
            if (json_is_array(json_object_get(answer, keys[i])))
                recs = json_object_get(answer, keys[i]);
        json_t *c = json_object_get(answer, "cursor");
        if (!c)
            c = json_object_get(answer, "next_cursor");
        if (json_is_string(c)) {
            *cursor = json_string_value(c);
        } else if (json_is_integer(c)) {
            snprintf(buf, n, "%lld", (long long)json_integer_value(c));
            *cursor = buf;
        }
    }
    if (!json_is_array(recs))
        return NULL;
    /* time order; a stable sort so records of one timestamp keep the collector's order */
    size_t len = json_array_size(recs);
    if (len > 1) {
        json_t **v = malloc(len * sizeof(*v));
        if (v) {
            for (size_t i = 0; i < len; i++)
                v[i] = json_incref(json_array_get(recs, i));
            /* insertion sort keeps equal keys in order; mergesort would too, qsort does not */
            for (size_t i = 1; i < len; i++) {
                json_t *x = v[i];
                size_t j = i;
                while (j > 0 && by_ts(&v[j - 1], &x) > 0) {
                    v[j] = v[j - 1];
                    j--;
                }
                v[j] = x;
            }
            for (size_t i = 0; i < len; i++)
                json_array_set_new(recs, i, v[i]);
            free(v);
        }
    }
    return recs;
}

size_t p2p__logs_format(const json_t *rec, int color, char *out, size_t n)
{
    if (!n)
        return 0;
    double ts = rec_ts((json_t *)rec);
    time_t sec = (time_t)ts;
    long us = (long)llround((ts - (double)sec) * 1e6);
    if (us >= 1000000) {
        sec++;
        us -= 1000000;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    const char *node = json_string_value(json_object_get(rec, "node_id"));
    const char *level = json_string_value(json_object_get(rec, "level"));
    const char *logger = json_string_value(json_object_get(rec, "logger"));
    const char *msg = json_string_value(json_object_get(rec, "message"));
    level = level ? level : "INFO";
    const char *on = "", *off = "";
    if (color) {
        off = "\033[0m";
        if (!strcmp(level, "DEBUG"))
            on = "\033[2m";
        else if (!strcmp(level, "WARNING"))
            on = "\033[33m";
        else if (!strcmp(level, "ERROR"))
            on = "\033[31m";
        else if (!strcmp(level, "CRITICAL"))
            on = "\033[1;31m";
        else
            off = "";
    }
    int w = snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s %s%-8s [%s] %s%s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us, node ? node : "-", on, level,
                     logger ? logger : "-", msg ? msg : "", off);
    if (w < 0)
        return 0;
    return (size_t)w < n ? (size_t)w : n - 1;
}
