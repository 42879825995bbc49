/*
 * fwdfmt.c — destination URLs, RFC 5424 and journald native formatting of
 * collected records (see fwdfmt.h). Pure: bytes in, bytes out.
 */
#include "logs/fwdfmt.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

int logfwd_parse_target(const char *s, logfwd_target *t, char *why, size_t n)
{
    memset(t, 0, sizeof(*t));
    if (!strncmp(s, "udp://", 6))
        t->proto = LOGFWD_UDP;
    else if (!strncmp(s, "tcp://", 6))
        t->proto = LOGFWD_TCP;
    else {
        snprintf(why, n, "must be udp://IP:PORT or tcp://IP:PORT");
        return -1;
    }
    const char *h = s + 6, *colon;
    size_t hl;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (!close || close[1] != ':') {
            snprintf(why, n, "an IPv6 address goes in brackets: tcp://[::1]:514");
            return -1;
        }
        hl = (size_t)(close - h - 1);
        h++;
        colon = close + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon) {
            snprintf(why, n, "needs a port: udp://127.0.0.1:514");
            return -1;
        }
        hl = (size_t)(colon - h);
        if (memchr(h, ':', hl)) {
            snprintf(why, n, "an IPv6 address goes in brackets: tcp://[::1]:514");
            return -1;
        }
    }
    if (hl == 0 || hl >= sizeof t->host) {
        snprintf(why, n, "needs an IP address: udp://127.0.0.1:514");
        return -1;
    }
    memcpy(t->host, h, hl);
    t->host[hl] = 0;
    unsigned char a[16];
    if (inet_pton(AF_INET, t->host, a) != 1 && inet_pton(AF_INET6, t->host, a) != 1) {
        snprintf(why, n, "'%s' is not an IP address (names are not resolved)", t->host);
        return -1;
    }
    const char *p = colon + 1;
    if (!*p || strspn(p, "0123456789") != strlen(p) || strlen(p) > 5 || atoi(p) < 1 || atoi(p) > 65535) {
        snprintf(why, n, "the port must be 1..65535");
        return -1;
    }
    t->port = atoi(p);
    return 0;
}

int logfwd_severity(int level)
{
    static const int sev[LOGREC_NLEVELS] = {7, 6, 4, 3, 2};
    return level >= 0 && level < LOGREC_NLEVELS ? sev[level] : 6;
}

/* ---- a bounded buffer ---------------------------------------------------------------- */

typedef struct wbuf {
    char *p;
    size_t len, cap;
} wbuf;

static int put(wbuf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int puts_(wbuf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Length of the valid UTF-8 character at s (1..4), 0 when invalid. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Copies UTF-8 text, invalid bytes as U+FFFD, with '"', '\' and ']' escaped
 * when `sd`. Stops before a character that does not fit: returns -1 then. */
static int put_text(wbuf *b, const char *s, int sd)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n) {
        size_t k = utf8_char(p, n);
        int r;
        if (!k) {
            r = put(b, "\xef\xbf\xbd", 3);
            k = 1;
        } else if (sd && (*p == '"' || *p == '\\' || *p == ']')) {
            char e[2] = {'\\', (char)*p};
            r = put(b, e, 2);
        } else {
            r = put(b, p, k);
        }
        if (r)
            return -1;
        p += k;
        n -= k;
    }
    return 0;
}

/* Printable US-ASCII (33..126) only, at most max characters, "-" when empty. */
static int put_ascii(wbuf *b, const char *s, size_t max)
{
    size_t n = 0;
    for (; s && s[n] && n < max; n++) {
        char c = (unsigned char)s[n] >= 33 && (unsigned char)s[n] <= 126 ? s[n] : '_';
        if (put(b, &c, 1))
            return -1;
    }
    return n ? 0 : puts_(b, "-");
}

static void iso_time(int64_t ts_us, char *out, size_t n)
{
    if (ts_us < 0)
        ts_us = 0;
    time_t t = (time_t)(ts_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (unsigned)(ts_us % 1000000));
}

static int sd_param(wbuf *b, const char *name, const char *value)
{
    if (!value)
        return 0;
    if (put(b, " ", 1) || puts_(b, name) || put(b, "=\"", 2) || put_text(b, value, 1) || put(b, "\"", 1))
        return -1;
    return 0;
}

static int sd_int(wbuf *b, const char *name, long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    return sd_param(b, name, num);
}

size_t logfwd_rfc5424(const logrec *r, char *out, size_t cap)
{
    wbuf b = {out, 0, cap};
    char ts[96], hdr[128];
    iso_time(r->ts_us, ts, sizeof ts);
    snprintf(hdr, sizeof hdr, "<%d>1 %s ", LOGFWD_FACILITY * 8 + logfwd_severity(r->level), ts);
    if (puts_(&b, hdr) || put_ascii(&b, r->node, LOGFWD_MAX_HOST) || put(&b, " ", 1) ||
        put_ascii(&b, r->logger, 48) || puts_(&b, " - - "))
        return b.len; /* only with a cap below any header: what fits */
    /* structured data, nil when it does not fit with room for the BOM */
    size_t mark = b.len;
    size_t keep = b.cap;
    b.cap = cap > 4 ? cap - 4 : 0;
    int bad = puts_(&b, "[" LOGFWD_SD_ID) || sd_int(&b, "seq", (long long)r->seq) ||
              sd_param(&b, "level", logrec_level_name(r->level)) || sd_param(&b, "logger", r->logger) ||
              sd_param(&b, "file", r->file) || sd_param(&b, "func", r->func) ||
              (r->line >= 0 && sd_int(&b, "line", r->line)) || sd_param(&b, "service", r->service) ||
              sd_param(&b, "request_id", r->request_id) || (r->lost >= 0 && sd_int(&b, "lost", r->lost)) ||
              (r->suppressed >= 0 && sd_int(&b, "suppressed", r->suppressed)) || put(&b, "]", 1);
    b.cap = keep;
    if (bad) {
        b.len = mark;
        if (put(&b, "-", 1))
            return mark;
    }
    if (put(&b, " \xef\xbb\xbf", 4))
        return b.len;
    put_text(&b, r->message, 0); /* cut at the cap, on a character boundary */
    return b.len;
}

/* ---- journald ---------------------------------------------------------------------------- */

typedef struct gbuf {
    char *p;
    size_t len, cap;
} gbuf;

static void gput(gbuf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = p2p__xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* NAME=value\n, or the binary form NAME\n<le64 length>value\n when the value
 * holds a newline. */
static void jfield(gbuf *b, const char *name, const char *value)
{
    if (!value)
        return;
    size_t n = strlen(value);
    gput(b, name, strlen(name));
    if (memchr(value, '\n', n)) {
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
            le[i] = (uint8_t)((uint64_t)n >> (8 * i));
        gput(b, "\n", 1);
        gput(b, le, 8);
    } else {
        gput(b, "=", 1);
    }
    gput(b, value, n);
    gput(b, "\n", 1);
}

static void jint(gbuf *b, const char *name, long long v)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", v);
    jfield(b, name, num);
}

char *logfwd_journal(const logrec *r, size_t *len)
{
    gbuf b = {NULL, 0, 0};
    char ts[96];
    iso_time(r->ts_us, ts, sizeof ts);
    jfield(&b, "MESSAGE", r->message);
    jint(&b, "PRIORITY", logfwd_severity(r->level));
    jint(&b, "SYSLOG_FACILITY", LOGFWD_FACILITY);
    jfield(&b, "SYSLOG_IDENTIFIER", r->logger);
    jfield(&b, "P2P_NODE_ID", r->node);
    jint(&b, "P2P_SEQ", (long long)r->seq);
    jfield(&b, "P2P_LEVEL", logrec_level_name(r->level));
    jfield(&b, "P2P_TIMESTAMP", ts);
    jfield(&b, "CODE_FILE", r->file);
    if (r->line >= 0)
        jint(&b, "CODE_LINE", r->line);
    jfield(&b, "CODE_FUNC", r->func);
    jfield(&b, "P2P_SERVICE", r->service);
    jfield(&b, "P2P_REQUEST_ID", r->request_id);
    if (r->lost >= 0)
        jint(&b, "P2P_LOST", r->lost);
    if (r->suppressed >= 0)
        jint(&b, "P2P_SUPPRESSED", r->suppressed);
    *len = b.len;
    return b.p;
}
