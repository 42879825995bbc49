/*
 * test_logfwd.c — unit tests for src/logs/fwdfmt.c: the RFC 5424 formatter
 * (header, PRI per level, timestamp, hostname = node id, app-name cut and
 * sanitised, structured data escaping, invalid UTF-8, length limits that never
 * split a character or an escape), the journald native format, and the
 * forwarding destination parser (good and malformed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logs/fwdfmt.h"
#include "logs/record.h"

static logrec base(void)
{
    logrec r;
    memset(&r, 0, sizeof r);
    r.refs = 1;
    r.seq = 17;
    r.ts_us = 1796209961123456LL; /* 2026-12-02T11:12:41.123456Z */
    r.level = LOGREC_WARNING;
    r.line = -1;
    r.lost = r.suppressed = -1;
    r.node = "worker-2";
    r.logger = "membership";
    r.message = "worker-3 suspect";
    return r;
}

static char out[LOGFWD_SYSLOG_MAX + 1];

static const char *fmt(const logrec *r, size_t cap)
{
    size_t n = logfwd_rfc5424(r, out, cap);
    assert_true(n <= cap);
    out[n] = 0;
    return out;
}

static void test_rfc5424_basic(void **state)
{
    logrec r = base();
    assert_string_equal(fmt(&r, LOGFWD_SYSLOG_MAX),
                        "<28>1 2026-12-02T11:12:41.123456Z worker-2 membership - - "
                        "[p2p@32473 seq=\"17\" level=\"WARNING\" logger=\"membership\"] \xef\xbb\xbfworker-3 suspect");
    /* every optional field */
    r.level = LOGREC_CRITICAL;
    r.file = "src/x.c";
    r.func = "apply";
    r.line = 223;
    r.service = "hello";
    r.request_id = "abc";
    r.lost = 5;
    assert_string_equal(fmt(&r, LOGFWD_SYSLOG_MAX),
                        "<26>1 2026-12-02T11:12:41.123456Z worker-2 membership - - "
                        "[p2p@32473 seq=\"17\" level=\"CRITICAL\" logger=\"membership\" file=\"src/x.c\" func=\"apply\" "
                        "line=\"223\" service=\"hello\" request_id=\"abc\" lost=\"5\"] \xef\xbb\xbfworker-3 suspect");
    /* PRI: daemon (3) * 8 + severity */
    int want[] = {31, 30, 28, 27, 26};
    for (int l = 0; l < LOGREC_NLEVELS; l++) {
        r.level = l;
        char pri[8];
        snprintf(pri, sizeof pri, "<%d>1 ", want[l]);
        assert_memory_equal(fmt(&r, LOGFWD_SYSLOG_MAX), pri, strlen(pri));
    }
}

static void test_rfc5424_escaping_and_app_name(void **state)
{
    logrec r = base();
    r.logger = "my logger \xc3\xa9\"]";
    r.request_id = "a\"b]c\\d";
    const char *s = fmt(&r, LOGFWD_SYSLOG_MAX);
    /* app-name: printable ASCII only, others '_' (each byte) */
    assert_non_null(strstr(s, " worker-2 my_logger___\"] - - ["));
    /* SD values: '"', ']' and '\' escaped; UTF-8 kept */
    assert_non_null(strstr(s, "logger=\"my logger \xc3\xa9\\\"\\]\""));
    assert_non_null(strstr(s, "request_id=\"a\\\"b\\]c\\\\d\""));
    /* app-name at most 48 characters */
    char longname[65];
    memset(longname, 'x', 64);
    longname[64] = 0;
    r = base();
    r.logger = longname;
    s = fmt(&r, LOGFWD_SYSLOG_MAX);
    char want[80];
    snprintf(want, sizeof want, " worker-2 %.48s - - ", longname);
    assert_non_null(strstr(s, want));
    /* an empty logger is the nil value */
    r.logger = "";
    assert_non_null(strstr(fmt(&r, LOGFWD_SYSLOG_MAX), " worker-2 - - - ["));
}

static void test_rfc5424_invalid_utf8(void **state)
{
    logrec r = base();
    r.message = "ok \xff\xfe end \xc3";   /* two stray bytes and a truncated sequence */
    r.request_id = "\xed\xa0\x80";       /* a UTF-16 surrogate encoded: invalid */
    const char *s = fmt(&r, LOGFWD_SYSLOG_MAX);
    assert_non_null(strstr(s, "\xef\xbb\xbfok \xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd"));
    assert_non_null(strstr(s, "request_id=\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
    /* overlong encodings are invalid too */
    r.message = "\xc0\xaf";
    assert_non_null(strstr(fmt(&r, LOGFWD_SYSLOG_MAX), "\xef\xbb\xbf\xef\xbf\xbd\xef\xbf\xbd"));
}

static int utf8_valid(const char *s, size_t n)
{
    return logrec_utf8_ok(s, n);
}

static void test_rfc5424_length_limits(void **state)
{
    /* a long message of 2-byte characters: cut on a character boundary at the cap */
    char *msg = malloc(20001);
    for (int i = 0; i < 10000; i++)
        memcpy(msg + 2 * i, "\xc3\xa9", 2);
    msg[20000] = 0;
    logrec r = base();
    r.message = msg;
    for (size_t cap = 150; cap < 260; cap++) {
        size_t n = logfwd_rfc5424(&r, out, cap);
        assert_true(n <= cap && n >= cap - 1);
        assert_true(utf8_valid(out, n));
    }
    size_t n = logfwd_rfc5424(&r, out, LOGFWD_SYSLOG_MAX);
    assert_true(n <= LOGFWD_SYSLOG_MAX && n > LOGFWD_SYSLOG_MAX - 2);
    /* structured data that does not fit becomes "-" (nil), the message still follows */
    char big[300];
    memset(big, '"', 299);
    big[299] = 0;
    r = base();
    r.request_id = big; /* 598 bytes escaped */
    const char *s = fmt(&r, 400);
    assert_non_null(strstr(s, " worker-2 membership - - - \xef\xbb\xbfworker-3 suspect"));
    /* an escape is never split: with a cap that ends inside the SD, SD is nil */
    for (size_t cap = 100; cap < 700; cap += 7) {
        n = logfwd_rfc5424(&r, out, cap);
        out[n] = 0;
        assert_true(n <= cap);
        assert_true(strstr(out, "[p2p@32473") == NULL || strstr(out, "\"] \xef\xbb\xbf") != NULL);
    }
    free(msg);
}

static void test_journal_format(void **state)
{
    logrec r = base();
    r.message = "two\nlines";
    r.file = "src/x.c";
    r.line = 9;
    size_t len;
    char *j = logfwd_journal(&r, &len);
    /* MESSAGE in the binary form (it holds a newline): name, LF, le64 length, value, LF */
    assert_memory_equal(j, "MESSAGE\n\x09\0\0\0\0\0\0\0two\nlines\n", 8 + 8 + 10);
    char *rest = j + 26;
    size_t rlen = len - 26;
    char *text = strndup(rest, rlen);
    assert_non_null(strstr(text, "PRIORITY=4\n"));
    assert_non_null(strstr(text, "SYSLOG_FACILITY=3\n"));
    assert_non_null(strstr(text, "SYSLOG_IDENTIFIER=membership\n"));
    assert_non_null(strstr(text, "P2P_NODE_ID=worker-2\n"));
    assert_non_null(strstr(text, "P2P_SEQ=17\n"));
    assert_non_null(strstr(text, "P2P_TIMESTAMP=2026-12-02T11:12:41.123456Z\n"));
    assert_non_null(strstr(text, "CODE_FILE=src/x.c\nCODE_LINE=9\n"));
    assert_null(strstr(text, "P2P_REQUEST_ID"));
    free(text);
    free(j);
}

static void test_parse_target(void **state)
{
    logfwd_target t;
    char why[200];
    assert_int_equal(logfwd_parse_target("udp://127.0.0.1:5514", &t, why, sizeof why), 0);
    assert_int_equal(t.proto, LOGFWD_UDP);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(t.port, 5514);
    assert_int_equal(logfwd_parse_target("tcp://[::1]:514", &t, why, sizeof why), 0);
    assert_int_equal(t.proto, LOGFWD_TCP);
    assert_string_equal(t.host, "::1");
    const char *bad[] = {"", "127.0.0.1:514", "http://127.0.0.1:514", "udp://127.0.0.1", "udp://:514",
                         "udp://localhost:514", "udp://127.0.0.1:0", "udp://127.0.0.1:65536", "tcp://::1:514",
                         "tcp://[::1]514", "udp://127.0.0.1:5x4", "udp://127.0.0.1:-1", "udp://1.2.3.4:123456"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = 0;
        if (logfwd_parse_target(bad[i], &t, why, sizeof why) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_true(why[0] != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc5424_basic),
        cmocka_unit_test(test_rfc5424_escaping_and_app_name),
        cmocka_unit_test(test_rfc5424_invalid_utf8),
        cmocka_unit_test(test_rfc5424_length_limits),
        cmocka_unit_test(test_journal_format),
        cmocka_unit_test(test_parse_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
