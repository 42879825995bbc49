/*
 * test_wsproto.c — the dashboard WebSocket's pure half (src/web/wsproto.c):
 * client messages (valid and malformed), frame headers at the length
 * boundaries, delta and logs encoding with the per-socket filter, and the
 * resume ring (eviction by count and bytes, resumable and lost seqs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/wsproto.h"

static int decode(const char *s, p2p_wsm *m, char *err)
{
    return p2p__wsm_decode(s, strlen(s), m, err, 200);
}

static void test_decode_valid(void **state)
{
    (void)state;
    p2p_wsm m;
    char err[200];
    assert_int_equal(decode("{\"type\":\"auth\",\"token\":\"tok\",\"resume\":42,"
                            "\"log_filter\":{\"node_id\":\"w1\",\"level\":\"warning\",\"logger_name\":\"access\","
                            "\"search\":\"GET\"}}",
                            &m, err),
                     0);
    assert_int_equal(m.type, P2P_WSM_AUTH);
    assert_string_equal(m.token, "tok");
    assert_int_equal(m.token_len, 3);
    assert_true(m.has_resume && m.resume == 42);
    assert_true(m.has_filter);
    assert_string_equal(m.filter.node, "w1");
    assert_int_equal(m.filter.min_level, LOGREC_WARNING);
    assert_string_equal(m.filter.logger, "access");
    assert_string_equal(m.filter.search, "GET");
    p2p__wsm_free(&m);

    assert_int_equal(decode("{\"type\":\"auth\",\"token\":\"t\"}", &m, err), 0);
    assert_false(m.has_resume);
    assert_false(m.has_filter);
    p2p__wsm_free(&m);

    assert_int_equal(decode("{\"type\":\"log_filter\",\"filter\":{\"node_id\":null,\"level\":\"\"}}", &m, err), 0);
    assert_int_equal(m.type, P2P_WSM_LOG_FILTER);
    assert_string_equal(m.filter.node, "");
    assert_int_equal(m.filter.min_level, 0);
    p2p__wsm_free(&m);

    assert_int_equal(decode("{\"type\":\"ping\"}", &m, err), 0);
    assert_int_equal(m.type, P2P_WSM_PING);
    assert_int_equal(decode("ping", &m, err), 0); /* the original page's */
    assert_int_equal(m.type, P2P_WSM_PING);
}

static void test_decode_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "pong",
        "[]",
        "{}",
        "{\"type\":\"nope\"}",
        "{\"type\":1}",
        "{\"type\":\"auth\"}",
        "{\"type\":\"auth\",\"token\":\"\"}",
        "{\"type\":\"auth\",\"token\":5}",
        "{\"type\":\"auth\",\"token\":\"a\\u0000b\"}",
        "{\"type\":\"auth\",\"token\":\"t\",\"resume\":-1}",
        "{\"type\":\"auth\",\"token\":\"t\",\"resume\":\"5\"}",
        "{\"type\":\"auth\",\"token\":\"t\",\"extra\":1}",
        "{\"type\":\"auth\",\"token\":\"t\",\"log_filter\":[]}",
        "{\"type\":\"auth\",\"token\":\"t\",\"type\":\"auth\"}",
        "{\"type\":\"log_filter\",\"filter\":{\"level\":\"LOUD\"}}",
        "{\"type\":\"log_filter\",\"filter\":{\"node_id\":7}}",
        "{\"type\":\"log_filter\",\"filter\":{\"colour\":\"red\"}}",
        "{\"type\":\"ping\",\"x\":1}",
        "{\"type\":\"auth\",\"token\":\"t\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p2p_wsm m;
        char err[200] = "";
        assert_int_equal(decode(bad[i], &m, err), -EINVAL);
        assert_true(err[0] != '\0');
        assert_null(m.token);
        assert_int_equal(m.type, 0);
    }
    /* over-long strings */
    char *big = malloc(P2P_WS_MAX_TOKEN + 64);
    memcpy(big, "{\"type\":\"auth\",\"token\":\"", 24);
    memset(big + 24, 'a', P2P_WS_MAX_TOKEN + 1);
    strcpy(big + 24 + P2P_WS_MAX_TOKEN + 1, "\"}");
    p2p_wsm m;
    char err[200];
    assert_int_equal(decode(big, &m, err), -EINVAL);
    big[24 + P2P_WS_MAX_TOKEN] = '"';
    big[24 + P2P_WS_MAX_TOKEN + 1] = '}';
    big[24 + P2P_WS_MAX_TOKEN + 2] = '\0';
    assert_int_equal(decode(big, &m, err), 0); /* exactly the cap */
    assert_int_equal(m.token_len, P2P_WS_MAX_TOKEN);
    p2p__wsm_free(&m);
    free(big);
    char node[200];
    snprintf(node, sizeof node, "{\"type\":\"log_filter\",\"filter\":{\"node_id\":\"%0*d\"}}", 64, 0);
    assert_int_equal(decode(node, &m, err), -EINVAL);
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[10];
    assert_int_equal(p2p__ws_frame_header(1, 0, h), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(p2p__ws_frame_header(1, 125, h), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(p2p__ws_frame_header(1, 126, h), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(p2p__ws_frame_header(1, 65535, h), 4);
    assert_int_equal(h[2], 0xff);
    assert_int_equal(p2p__ws_frame_header(1, 65536, h), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
    assert_int_equal(h[8], 0);
    assert_int_equal(h[9], 0);
    assert_int_equal(p2p__ws_frame_header(8, 2, h), 2);
    assert_int_equal(h[0], 0x88);
}

static logrec *rec(const char *node, int level, const char *logger, const char *msg, uint64_t seq)
{
    json_t *o = json_pack("{s:I, s:f, s:s, s:s, s:s}", "seq", (json_int_t)seq, "ts", 1796209961.0, "level",
                          logrec_level_name(level), "logger", logger, "message", msg);
    char err[200];
    logrec *r = logrec_from_json(o, node, 0, err, sizeof err);
    json_decref(o);
    assert_non_null(r);
    return r;
}

static void test_delta_and_logs(void **state)
{
    (void)state;
    json_t *f = json_pack("{s:s, s:s, s:I}", "node_id", "w1", "type", "evil", "seq", (json_int_t)1);
    p2p_wsbuf *b = p2p__ws_delta("member", 77, f);
    json_decref(f);
    assert_int_equal(b->hdr_len, 2);
    assert_int_equal(b->hdr[1], b->len);
    json_t *o = json_loadb(b->data, b->len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "member");
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), 77);
    assert_string_equal(json_string_value(json_object_get(o, "node_id")), "w1");
    json_decref(o);
    assert_int_equal(b->refs, 1);
    p2p__wsbuf_ref(b);
    p2p__wsbuf_unref(b);
    p2p__wsbuf_unref(b);

    logrec *recs[3] = {rec("w1", LOGREC_INFO, "access", "GET /a", 1), rec("w2", LOGREC_ERROR, "app", "boom", 1),
                       rec("w1", LOGREC_DEBUG, "app", "detail", 2)};
    p2p_wsfilter wf = {0};
    logfilter lf;
    snprintf(wf.node, sizeof wf.node, "w1");
    p2p__wsfilter_logfilter(&wf, &lf);
    b = p2p__ws_logs(5, recs, 3, &lf, 0);
    o = json_loadb(b->data, b->len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(o, "logs")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "skipped")), 0);
    json_decref(o);
    p2p__wsbuf_unref(b);
    wf.min_level = LOGREC_INFO;
    snprintf(wf.search, sizeof wf.search, "get");
    p2p__wsfilter_logfilter(&wf, &lf);
    b = p2p__ws_logs(5, recs, 3, &lf, 0);
    o = json_loadb(b->data, b->len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(o, "logs")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(o, "logs"), 0), "message")),
                        "GET /a");
    json_decref(o);
    p2p__wsbuf_unref(b);
    snprintf(wf.node, sizeof wf.node, "w3"); /* nothing matches */
    p2p__wsfilter_logfilter(&wf, &lf);
    assert_null(p2p__ws_logs(5, recs, 3, &lf, 0));
    b = p2p__ws_logs(5, recs, 3, &lf, 9); /* ... but the socket missed lines: it is told */
    o = json_loadb(b->data, b->len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(o, "logs")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "skipped")), 9);
    json_decref(o);
    p2p__wsbuf_unref(b);
    for (int i = 0; i < 3; i++)
        logrec_unref(recs[i]);
}

static void test_ring(void **state)
{
    (void)state;
    p2p_wsring r;
    p2p__wsring_init(&r, 4, 1 << 20, 1000);
    size_t first;
    assert_int_equal(p2p__wsring_resume(&r, 999, &first), 0); /* nothing missed yet */
    assert_int_equal(first, 0);
    assert_int_equal(p2p__wsring_resume(&r, 1000, &first), -ENOENT); /* never issued */
    for (int i = 0; i < 6; i++) {
        json_t *f = json_pack("{s:i}", "i", i);
        const p2p_wsring_entry *e = p2p__wsring_push_msg(&r, "x", f);
        json_decref(f);
        assert_int_equal(e->seq, 1000 + i);
    }
    assert_int_equal(r.n, 4); /* 1002..1005 kept */
    assert_int_equal(p2p__wsring_at(&r, 0)->seq, 1002);
    assert_int_equal(p2p__wsring_resume(&r, 1005, &first), 0);
    assert_int_equal(first, 4);
    assert_int_equal(p2p__wsring_resume(&r, 1003, &first), 0);
    assert_int_equal(first, 2);
    assert_int_equal(p2p__wsring_at(&r, first)->seq, 1004);
    assert_int_equal(p2p__wsring_resume(&r, 1001, &first), 0); /* 1002 on are all there */
    assert_int_equal(first, 0);
    assert_int_equal(p2p__wsring_resume(&r, 1000, &first), -ENOENT); /* 1001 is gone */
    assert_int_equal(p2p__wsring_resume(&r, 5000, &first), -ENOENT);
    /* a log batch: its references pass to the ring and go with eviction */
    logrec *recs[2] = {rec("w1", LOGREC_INFO, "a", "one", 1), rec("w1", LOGREC_INFO, "a", "two", 2)};
    logrec_ref(recs[0]);
    const p2p_wsring_entry *e = p2p__wsring_push_logs(&r, recs, 2, 3);
    assert_int_equal(e->seq, 1006);
    assert_int_equal(e->n, 2);
    assert_int_equal(e->skipped, 3);
    assert_int_equal(recs[0]->refs, 2);
    p2p__wsring_free(&r);
    assert_int_equal(recs[0]->refs, 1);
    logrec_unref(recs[0]);

    /* the byte bound evicts too, but always keeps the newest */
    p2p__wsring_init(&r, 100, 300, 1);
    for (int i = 0; i < 10; i++)
        p2p__wsring_push_msg(&r, "x", NULL);
    assert_true(r.n >= 1 && r.n < 10);
    assert_true(r.bytes <= 300 || r.n == 1);
    assert_int_equal(r.last_seq, 10);
    assert_int_equal(p2p__wsring_at(&r, r.n - 1)->seq, 10);
    p2p__wsring_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid),   cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_frame_header),   cmocka_unit_test(test_delta_and_logs),
        cmocka_unit_test(test_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
