/*
 * fuzz_logfwd.c — libFuzzer target for log forwarding's pure half: the
 * destination parser (log_forward_syslog) takes any text and either accepts a
 * well-formed target or refuses with a reason; the RFC 5424 formatter takes
 * records with arbitrary bytes in every text field (invalid UTF-8 included)
 * and any cap, and always writes at most cap bytes of a header that parses,
 * structured data that is whole or nil, and valid UTF-8; the journald
 * formatter always writes well-formed fields.
 */
#define _GNU_SOURCE /* memmem */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "logs/fwdfmt.h"
#include "logs/record.h"

static char *take(const uint8_t **p, size_t *n)
{
    /* a field: one length byte, then that many bytes (NUL bytes become 'x') */
    size_t k = *n ? **p : 0;
    if (*n) {
        (*p)++;
        (*n)--;
    }
    if (k > *n)
        k = *n;
    char *s = malloc(k + 1);
    for (size_t i = 0; i < k; i++)
        s[i] = (*p)[i] ? (char)(*p)[i] : 'x';
    s[k] = 0;
    *p += k;
    *n -= k;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    char *target = take(&p, &n);
    logfwd_target t;
    char why[200] = "";
    if (logfwd_parse_target(target, &t, why, sizeof why) == 0)
        assert((t.proto == LOGFWD_UDP || t.proto == LOGFWD_TCP) && t.port >= 1 && t.port <= 65535 && t.host[0]);
    else
        assert(why[0]);
    logrec r;
    memset(&r, 0, sizeof r);
    char *node = take(&p, &n), *logger = take(&p, &n), *file = take(&p, &n), *reqid = take(&p, &n);
    char *msg = take(&p, &n);
    r.refs = 1;
    r.seq = size;
    r.ts_us = 1796209961123456LL;
    r.level = (int)(size % LOGREC_NLEVELS);
    r.line = size & 1 ? -1 : 12;
    r.lost = r.suppressed = -1;
    r.node = node;
    r.logger = logger;
    r.file = *file ? file : NULL;
    r.request_id = *reqid ? reqid : NULL;
    r.message = msg;
    size_t cap = 64 + (size * 7) % (LOGFWD_SYSLOG_MAX - 63);
    char *out = malloc(cap);
    size_t len = logfwd_rfc5424(&r, out, cap);
    assert(len <= cap);
    assert(len >= 4 && out[0] == '<' && memcmp(out + (out[3] == '>' ? 4 : 3), "1 ", 2) == 0);
    assert(logrec_utf8_ok(out, len));
    /* the structured data is whole or nil (checked when no field holds the SD-ID itself) */
    int own = strstr(node, "p2p@") || strstr(logger, "p2p@") || strstr(file, "p2p@") || strstr(reqid, "p2p@") ||
              strstr(msg, "p2p@");
    char *sd = own ? NULL : memmem(out, len, "[p2p@32473", 10);
    if (sd)
        assert(memmem(sd, len - (size_t)(sd - out), "] \xef\xbb\xbf", 5) != NULL);
    free(out);
    size_t jl;
    char *j = logfwd_journal(&r, &jl);
    assert(j && jl > 8 && j[jl - 1] == '\n' && memcmp(j, "MESSAGE", 7) == 0);
    free(j);
    free(target);
    free(node);
    free(logger);
    free(file);
    free(reqid);
    free(msg);
    return 0;
}
