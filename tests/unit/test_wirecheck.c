/*
 * test_wirecheck.c — the connection scanner of src/http/wirecheck.c: HTTP/1.1
 * framing that h2o 2.2.5 accepted and must not (request smuggling), framing that
 * must keep working, verdict offsets, state kept across reads, and the HTTP/2
 * reset and stream budgets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "http/wirecheck.h"

/* Feeds `s` whole; returns the verdict and the offset of the bad byte. */
static p2p_wire_verdict scan_h1(const char *s, int64_t *at)
{
    p2p_wirecheck w;
    p2p__wire_init(&w, 0, 100, 0);
    *at = -1;
    return p2p__wire_feed(&w, (const uint8_t *)s, strlen(s), 0, UINT32_MAX, at);
}

/* Feeds `s` one byte at a time; returns the verdict and its absolute offset. */
static p2p_wire_verdict scan_h1_bytewise(const char *s, int64_t *at)
{
    p2p_wirecheck w;
    p2p__wire_init(&w, 0, 100, 0);
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        int64_t a = 0;
        p2p_wire_verdict v = p2p__wire_feed(&w, (const uint8_t *)s + i, 1, 0, UINT32_MAX, &a);
        if (v != P2P_WIRE_OK) {
            *at = (int64_t)i + a;
            return v;
        }
    }
    *at = -1;
    return P2P_WIRE_OK;
}

static void expect_ok(const char *s)
{
    int64_t at;
    if (scan_h1(s, &at) != P2P_WIRE_OK)
        fail_msg("refused at %lld: %s", (long long)at, s);
    assert_int_equal(scan_h1_bytewise(s, &at), P2P_WIRE_OK);
}

/* Refused, at the first byte of `marker` inside `s` (the first one after `after`),
 * whole and byte by byte. */
static void expect_bad_after(const char *s, const char *after, const char *marker)
{
    const char *from = strstr(s, after);
    assert_non_null(from);
    const char *m = strstr(from, marker);
    assert_non_null(m);
    int64_t at, at2;
    assert_int_equal(scan_h1(s, &at), P2P_WIRE_BAD_FRAMING);
    assert_int_equal(scan_h1_bytewise(s, &at2), P2P_WIRE_BAD_FRAMING);
    if (at != (int64_t)(m - s))
        fail_msg("refused at %lld, expected %lld: %s", (long long)at, (long long)(m - s), s);
    assert_int_equal(at, at2);
}

static void expect_bad_at(const char *s, const char *marker)
{
    expect_bad_after(s, "", marker);
}

#define HEAD "POST /rpc HTTP/1.1\r\nHost: x\r\n"
#define PING "{\"jsonrpc\":\"2.0\",\"method\":\"system/ping\",\"id\":10}" /* 48 bytes */

static void test_good_framing(void **state)
{
    (void)state;
    expect_ok("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_ok(HEAD "Content-Length: 48\r\n\r\n" PING);
    expect_ok(HEAD "content-length:48\r\nContent-Length: 48 \r\n\r\n" PING); /* identical repeats */
    expect_ok(HEAD "Transfer-Encoding: chunked\r\n\r\n30\r\n" PING "\r\n0\r\n\r\n");
    expect_ok(HEAD "Transfer-Encoding: Chunked\r\n\r\n30;name=val\r\n" PING "\r\n0\r\nX-Trailer: 1\r\n\r\n");
    expect_ok(HEAD "Content-Length: 0\r\n\r\n");
    /* bare LF line ends, as picohttpparser takes them */
    expect_ok("GET / HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}");
    /* pipelining, with empty lines between requests */
    expect_ok(HEAD "Content-Length: 48\r\n\r\n" PING "\r\n" HEAD "Transfer-Encoding: chunked\r\n\r\n"
                   "30\r\n" PING "\r\n0\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    /* body bytes that look like bad framing are body bytes */
    expect_ok(HEAD "Content-Length: 40\r\n\r\nContent-Length: 1\r\n obs\r\nTransfer-E");
    /* long names and values of other headers are fine */
    char big[2048];
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-%0900d: %0900d\r\n\r\n", 1, 2);
    expect_ok(big);
}

static void test_smuggling_forms(void **state)
{
    (void)state;
    expect_bad_at(HEAD "Content-Length: 48\r\nContent-Length: 60\r\n\r\n" PING, "\n\r\n" PING);
    /* both framing headers: refused at the end of the head */
    expect_bad_at(HEAD "Content-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "\n0\r");
    expect_bad_at(HEAD "Transfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n0\r\n\r\n", "\n0\r");
    expect_bad_at(HEAD "X-A: 1\r\n Content-Length: 5\r\n\r\n", " Content-Length");
    expect_bad_at(HEAD "X-A: 1\r\n\tfolded\r\n\r\n", "\tfolded");
    expect_bad_at(HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                  "\n\r\n"); /* the LF of the second TE line */
    expect_bad_at(HEAD "Transfer-Encoding: gzip, chunked\r\n\r\n", "\n\r\n");
    expect_bad_at(HEAD "Transfer-Encoding: identity\r\n\r\n", "\n\r\n");
    expect_bad_at(HEAD "Content-Length: 5, 5\r\n\r\n", "\n\r\n");
    expect_bad_at(HEAD "Content-Length: +5\r\n\r\n", "\n\r\n");
    expect_bad_at(HEAD "Content-Length: \r\n\r\n", "\n\r\n");
    expect_bad_at(HEAD "Content-Length: 1234567890123456789\r\n\r\n", "\n\r\n");
    expect_bad_at(HEAD "Content-Length: 0000000000000000000000000000000000000000000005\r\n\r\n", "\n\r\n");
    /* a CR must be followed by LF */
    expect_bad_at("GET / HTTP/1.1\rX: y\r\n\r\n", "X: y");
    expect_bad_at(HEAD "X-A: 1\r2\r\n\r\n", "2\r\n");
    expect_bad_at(HEAD "X-A: 1\r\n\rZ", "Z");
    /* broken chunks */
    expect_bad_at(HEAD "Transfer-Encoding: chunked\r\n\r\nzz\r\n", "zz");
    expect_bad_at(HEAD "Transfer-Encoding: chunked\r\n\r\n1234567890abcdef\r\n", "f\r\n");
    expect_bad_at(HEAD "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", "XX");
}

static void test_smuggled_request_after_a_good_one(void **state)
{
    (void)state;
    /* a good request, then a bad head pipelined behind it: the verdict falls on the second */
    expect_bad_after(HEAD "Content-Length: 48\r\n\r\n" PING HEAD "Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
                     "Length: 2", "\n\r\n");
}

static void test_verdict_is_sticky(void **state)
{
    (void)state;
    p2p_wirecheck w;
    p2p__wire_init(&w, 0, 100, 0);
    int64_t at = -1;
    const char *bad = HEAD " x\r\n";
    assert_int_equal(p2p__wire_feed(&w, (const uint8_t *)bad, strlen(bad), 0, 0, &at), P2P_WIRE_BAD_FRAMING);
    const char *good = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(p2p__wire_feed(&w, (const uint8_t *)good, strlen(good), 0, 0, &at), P2P_WIRE_BAD_FRAMING);
    assert_int_equal(at, 0);
}

/* ---- HTTP/2 ------------------------------------------------------------------ */

static size_t put_frame(uint8_t *p, uint32_t len, uint8_t type, uint32_t sid)
{
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = 0;
    p[5] = (uint8_t)(sid >> 24);
    p[6] = (uint8_t)(sid >> 16);
    p[7] = (uint8_t)(sid >> 8);
    p[8] = (uint8_t)sid;
    memset(p + 9, 0, len);
    return 9 + len;
}

static size_t preface(uint8_t *p)
{
    memcpy(p, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    return 24 + put_frame(p + 24, 6, 0x4, 0); /* SETTINGS */
}

static void test_h2_rapid_reset(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t n = preface(buf), offs[20];
    for (uint32_t i = 0; i < 20; i++) {
        n += put_frame(buf + n, 8, 0x1, 1 + 2 * i); /* HEADERS */
        offs[i] = n;
        n += put_frame(buf + n, 4, 0x3, 1 + 2 * i); /* RST_STREAM */
    }
    p2p_wirecheck w;
    p2p__wire_init(&w, 1, 10, 1000);
    int64_t at = -1;
    assert_int_equal(p2p__wire_feed(&w, buf, n, 1000, UINT32_MAX, &at), P2P_WIRE_RAPID_RESET);
    assert_int_equal(at, (int64_t)offs[10]); /* the 11th reset, at its header */

    /* the same pace spread over time is fine: 10 per second refills */
    p2p__wire_init(&w, 1, 10, 0);
    size_t pos = 0, step = n / 20;
    uint64_t now = 0;
    while (pos < n) {
        size_t k = n - pos < step ? n - pos : step;
        assert_int_equal(p2p__wire_feed(&w, buf + pos, k, now, UINT32_MAX, &at), P2P_WIRE_OK);
        pos += k;
        now += 200;
    }
}

static void test_h2_stream_budget(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = preface(buf);
    n += put_frame(buf + n, 8, 0x1, 1);
    n += put_frame(buf + n, 8, 0x1, 1); /* trailers on stream 1: not a new stream */
    n += put_frame(buf + n, 8, 0x1, 3);
    size_t third = n;
    n += put_frame(buf + n, 8, 0x1, 5);
    p2p_wirecheck w;
    p2p__wire_init(&w, 1, 100, 0);
    int64_t at = -1;
    assert_int_equal(p2p__wire_feed(&w, buf, n, 0, 2, &at), P2P_WIRE_TOO_MANY_STREAMS);
    assert_int_equal(at, (int64_t)third);
    /* the budget is per call */
    p2p__wire_init(&w, 1, 100, 0);
    assert_int_equal(p2p__wire_feed(&w, buf, third, 0, 2, &at), P2P_WIRE_OK);
    assert_int_equal(p2p__wire_feed(&w, buf + third, n - third, 0, 2, &at), P2P_WIRE_OK);
}

static void test_h2_header_split_across_reads(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = preface(buf);
    size_t rst = n;
    n += put_frame(buf + n, 4, 0x3, 1);
    p2p_wirecheck w;
    p2p__wire_init(&w, 1, 1, 0);
    w.reset_tokens = 0; /* no reset allowed now */
    int64_t at = -1;
    /* the frame header ends 3 bytes into the second read: the verdict points 6 bytes back */
    assert_int_equal(p2p__wire_feed(&w, buf, rst + 6, 0, UINT32_MAX, &at), P2P_WIRE_OK);
    assert_int_equal(p2p__wire_feed(&w, buf + rst + 6, n - rst - 6, 0, UINT32_MAX, &at), P2P_WIRE_RAPID_RESET);
    assert_int_equal(at, -6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_framing),
        cmocka_unit_test(test_smuggling_forms),
        cmocka_unit_test(test_smuggled_request_after_a_good_one),
        cmocka_unit_test(test_verdict_is_sticky),
        cmocka_unit_test(test_h2_rapid_reset),
        cmocka_unit_test(test_h2_stream_budget),
        cmocka_unit_test(test_h2_header_split_across_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
