/*
 * test_dashmetrics.c — unit tests for src/metrics/: the time tiers (bucket
 * arithmetic, the ring's laps, downsampling to minute and hour averages from
 * the raw samples, duplicates refused, the stated byte figures, the snapshot
 * form of a series), the report_metrics decoder (valid plain and compressed
 * reports, every kind of malformed one refused whole, strict base64), the
 * /proc/net/dev parser, and the store's snapshot form (round trip, truncation
 * and a flipped byte refused with the table unchanged).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <lz4.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics/report.h"
#include "metrics/sampler.h"
#include "metrics/store.h"
#include "metrics/tiers.h"

#define NOW 1764681600

static void all(double v[MT_NMETRICS], double x)
{
    for (int m = 0; m < MT_NMETRICS; m++)
        v[m] = x;
}

/* ---- tiers ------------------------------------------------------------------------------ */

static void test_byte_figures(void **state)
{
    (void)state;
    assert_int_equal(MT_BYTES_PER_METRIC, 12240);
    assert_int_equal(MT_SERIES_BYTES, 12240 * 15);
    assert_int_equal(MT_NMETRICS, 14);
    assert_int_equal(mt_tiers[0].res_s * mt_tiers[0].slots, 15 * 60);
    assert_int_equal(mt_tiers[1].res_s * mt_tiers[1].slots, 24 * 3600);
    assert_int_equal(mt_tiers[2].res_s * mt_tiers[2].slots, 30 * 86400);
    assert_int_equal(mt_metric_index("cpu"), MT_CPU);
    assert_int_equal(mt_metric_index("rpc_errors"), MT_RPC_ERRORS);
    assert_int_equal(mt_metric_index("nope"), -1);
}

static void test_tier0_values_gaps_and_laps(void **state)
{
    (void)state;
    mt_series s;
    mt_series_init(&s);
    double v[MT_NMETRICS];
    for (uint32_t t = NOW; t < NOW + 10; t++) {
        all(v, t - NOW);
        v[MT_CPU] = t % 3 ? NAN : 50.0;
        assert_int_equal(mt_add(&s, t, v), 0);
    }
    assert_true(mt_get(&s, 0, NOW + 4, MT_RSS) == 4.0);
    assert_true(isnan(mt_get(&s, 0, NOW + 10, MT_RSS))); /* not yet */
    assert_true(isnan(mt_get(&s, 0, NOW - 1, MT_RSS)));  /* before */
    assert_true(mt_get(&s, 0, NOW + (3 - NOW % 3) % 3, MT_CPU) == 50.0);
    /* a gap: nothing at NOW+10..NOW+19 */
    all(v, 7);
    assert_int_equal(mt_add(&s, NOW + 20, v), 0);
    for (uint32_t t = NOW + 10; t < NOW + 20; t++)
        assert_true(isnan(mt_get(&s, 0, t, MT_MEM_USED)));
    /* one lap later the same slot holds the new second; the old one reads as a gap */
    assert_int_equal(mt_add(&s, NOW + 900, v), 0);
    assert_true(isnan(mt_get(&s, 0, NOW, MT_MEM_USED)));
    assert_true(mt_get(&s, 0, NOW + 900, MT_MEM_USED) == 7.0);
    assert_true(mt_get(&s, 0, NOW + 20, MT_MEM_USED) == 7.0);
    mt_series_free(&s);
}

static void test_duplicates_and_order(void **state)
{
    (void)state;
    mt_series s;
    mt_series_init(&s);
    double v[MT_NMETRICS];
    all(v, 10);
    assert_int_equal(mt_add(&s, NOW, v), 0);
    all(v, 1000);
    assert_int_equal(mt_add(&s, NOW, v), -EALREADY);     /* sent again */
    assert_int_equal(mt_add(&s, NOW - 5, v), -EALREADY); /* older */
    assert_int_equal(mt_add(&s, 0, v), -EINVAL);
    assert_true(mt_get(&s, 0, NOW, MT_CPU) == 10.0);
    assert_true(mt_get(&s, 1, NOW / 60, MT_CPU) == 10.0); /* not averaged with the duplicate */
    mt_series_free(&s);
}

static void test_downsampling_minute_and_hour(void **state)
{
    (void)state;
    mt_series s;
    mt_series_init(&s);
    double v[MT_NMETRICS];
    uint32_t h0 = (NOW / 3600) * 3600; /* an hour boundary */
    for (uint32_t t = h0; t < h0 + 3600; t++) {
        all(v, (double)(t - h0));
        /* half of the seconds do not know the CPU: they do not count */
        v[MT_CPU] = (t - h0) % 2 ? NAN : 10.0 + (t - h0) % 60;
        assert_int_equal(mt_add(&s, t, v), 0);
        if (t == h0 + 29) /* the open minute reads as its partial average */
            assert_true(mt_get(&s, 1, h0 / 60, MT_RSS) == 14.5);
    }
    /* minute k holds seconds 60k..60k+59: average 60k + 29.5 */
    for (uint32_t k = 0; k < 60; k++)
        assert_true(fabs(mt_get(&s, 1, h0 / 60 + k, MT_RSS) - (60.0 * k + 29.5)) < 1e-3);
    /* CPU: the even seconds only, 10 + (0, 2, ..., 58) -> 39 */
    assert_true(fabs(mt_get(&s, 1, h0 / 60 + 7, MT_CPU) - 39.0) < 1e-6);
    /* the hour, from the raw samples: average of 0..3599 */
    assert_true(fabs(mt_get(&s, 2, h0 / 3600, MT_RSS) - 1799.5) < 1e-6);
    /* the next sample closes the hour into its slot */
    all(v, 0);
    assert_int_equal(mt_add(&s, h0 + 3600, v), 0);
    assert_true(fabs(mt_get(&s, 2, h0 / 3600, MT_RSS) - 1799.5) < 1e-3);
    assert_true(mt_get(&s, 2, h0 / 3600 + 1, MT_RSS) == 0.0);
    /* a metric never known is a gap, not 0 */
    mt_series s2;
    mt_series_init(&s2);
    all(v, NAN);
    assert_int_equal(mt_add(&s2, NOW, v), 0);
    assert_int_equal(mt_add(&s2, NOW + 3600, v), 0);
    assert_true(isnan(mt_get(&s2, 1, NOW / 60, MT_CPU)));
    assert_true(isnan(mt_get(&s2, 2, NOW / 3600, MT_CPU)));
    mt_series_free(&s2);
    mt_series_free(&s);
}

static void test_minutes_after_a_day_are_gaps(void **state)
{
    (void)state;
    mt_series s;
    mt_series_init(&s);
    double v[MT_NMETRICS];
    all(v, 3);
    assert_int_equal(mt_add(&s, NOW, v), 0);
    all(v, 4);
    assert_int_equal(mt_add(&s, NOW + 86400 + 60, v), 0); /* a day and a minute later */
    assert_true(isnan(mt_get(&s, 1, NOW / 60, MT_CPU)));  /* that slot's lap is over */
    assert_true(mt_get(&s, 2, NOW / 3600, MT_CPU) == 3.0); /* the hour is kept 30 days */
    mt_series_free(&s);
}

static void test_tier_for_span(void **state)
{
    (void)state;
    assert_int_equal(mt_tier_for_span(60), 0);
    assert_int_equal(mt_tier_for_span(900), 0);
    assert_int_equal(mt_tier_for_span(901), 1);
    assert_int_equal(mt_tier_for_span(3600), 1);
    assert_int_equal(mt_tier_for_span(86400), 1);
    assert_int_equal(mt_tier_for_span(86401), 2);
    assert_int_equal(mt_tier_for_span(30 * 86400), 2);
    assert_int_equal(mt_tier_for_span(30 * 86400 + 1), -1);
}

static void test_series_save_load(void **state)
{
    (void)state;
    mt_series a, b;
    mt_series_init(&a);
    mt_series_init(&b);
    double v[MT_NMETRICS];
    for (uint32_t t = NOW; t < NOW + 200; t++) {
        all(v, t % 97);
        assert_int_equal(mt_add(&a, t, v), 0);
    }
    size_t n = mt_series_bytes();
    uint8_t *buf = malloc(n);
    mt_series_save(&a, buf);
    assert_int_equal(mt_series_load(&b, buf, n - 1), -EINVAL);
    assert_int_equal(mt_series_load(&b, buf, n), 0);
    for (uint32_t t = NOW; t < NOW + 200; t++)
        assert_true(mt_get(&b, 0, t, MT_FDS) == mt_get(&a, 0, t, MT_FDS));
    assert_true(mt_get(&b, 1, (NOW + 199) / 60, MT_FDS) == mt_get(&a, 1, (NOW + 199) / 60, MT_FDS));
    all(v, 1);
    assert_int_equal(mt_add(&b, NOW + 199, v), -EALREADY); /* the last time came back too */
    /* an open bucket claiming more samples than seconds is refused */
    mt_open bad = a.open[1];
    bad.n[0] = 61;
    memcpy(buf + sizeof(uint32_t) + sizeof(mt_open), &bad, sizeof bad);
    mt_series c;
    mt_series_init(&c);
    assert_int_equal(mt_series_load(&c, buf, n), -EINVAL);
    assert_int_equal(c.last_t, 0);
    mt_series_free(&c);
    free(buf);
    mt_series_free(&a);
    mt_series_free(&b);
}

/* ---- report decoder ------------------------------------------------------------------------ */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad test JSON: %s: %s", e.text, text);
    return j;
}

static void test_decode_plain(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof text,
             "{\"node_id\":\"w1\",\"version\":\"0.1.0\",\"samples\":[{\"t\":%d,\"cpu\":12.5,\"mem_percent\":41,"
             "\"mem_used\":123,\"disks\":{\"/\":{\"percent\":55,\"used\":1,\"total\":2}},"
             "\"nets\":{\"eth0\":{\"rx_bps\":1200,\"tx_bps\":800}},\"rpc\":{\"system/ping\":{\"calls\":10,"
             "\"errors\":0,\"p50_ms\":0.4,\"p99_ms\":2}},\"gossip\":{\"sent\":1,\"recv\":2,\"dropped\":0},"
             "\"future_field\":{\"x\":1},\"load1\":null}],"
             "\"services\":[{\"name\":\"hello\",\"version\":\"1.0.0\",\"kind\":\"native\",\"state\":\"running\","
             "\"health\":\"healthy\",\"methods\":{\"hello\":{\"calls\":3}},\"metrics\":{\"greetings\":3}}]}",
             NOW);
    json_t *p = J(text);
    mreport r;
    char err[300];
    assert_int_equal(mreport_decode(p, NOW, &r, err, sizeof err), 0);
    assert_string_equal(r.node_id, "w1");
    assert_string_equal(r.version, "0.1.0");
    assert_int_equal(json_array_size(r.samples), 1);
    json_t *s = json_array_get(r.samples, 0);
    assert_null(json_object_get(s, "future_field")); /* unknown: dropped */
    assert_true(json_is_null(json_object_get(s, "load1")));
    assert_int_equal(json_integer_value(json_object_get(s, "mem_used")), 123);
    assert_true(json_number_value(json_object_get(json_object_get(json_object_get(s, "disks"), "/"), "percent")) == 55);
    double v[MT_NMETRICS];
    mreport_sample_values(s, v);
    assert_true(v[MT_CPU] == 12.5 && v[MT_MEM_PERCENT] == 41 && isnan(v[MT_LOAD1]) && isnan(v[MT_RSS]));
    assert_int_equal(mreport_sample_time(s), NOW);
    json_t *svc = json_array_get(r.services, 0);
    assert_string_equal(json_string_value(json_object_get(svc, "kind")), "native");
    assert_non_null(json_object_get(json_object_get(svc, "methods"), "hello"));
    mreport_free(&r);
    json_decref(p);
}

static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    json_t *samples = json_array();
    for (int i = 0; i < 300; i++)
        json_array_append_new(samples, json_pack("{s:i, s:f, s:f, s:i}", "t", NOW - 300 + i, "cpu", i / 3.0,
                                                 "mem_percent", 40.0, "rss", 1000000 + i));
    json_t *p = mreport_encode("worker-7", "0.1.0", samples);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "encoding")), "lz4");
    char *plain = json_dumps(samples, JSON_COMPACT);
    assert_true(json_string_length(json_object_get(p, "data")) < strlen(plain)); /* compressed */
    free(plain);
    mreport r;
    char err[300];
    assert_int_equal(mreport_decode(p, NOW, &r, err, sizeof err), 0);
    assert_int_equal(json_array_size(r.samples), 300);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r.samples, 299), "rss")), 1000299);
    assert_null(r.services);
    mreport_free(&r);
    json_decref(p);
    json_decref(samples);
}

static void expect_refused(json_t *p, const char *why)
{
    mreport r;
    char err[300] = "";
    int rc = mreport_decode(p, NOW, &r, err, sizeof err);
    if (rc == 0) {
        mreport_free(&r);
        fail_msg("accepted a report that should be refused (%s)", why);
    }
    assert_int_equal(rc, -EINVAL);
    if (!strstr(err, why))
        fail_msg("error '%s' does not say '%s'", err, why);
    json_decref(p);
}

/* params with the given samples JSON (an array text), node w1 */
static json_t *with_samples(const char *arr)
{
    char *t = malloc(strlen(arr) + 64);
    sprintf(t, "{\"node_id\":\"w1\",\"samples\":%s}", arr);
    json_t *j = J(t);
    free(t);
    return j;
}

static json_t *packed(const char *text, int size_delta, const char *b64_override)
{
    size_t n = strlen(text);
    char z[4096];
    int zn = LZ4_compress_default(text, z, (int)n, sizeof z);
    char b[8192];
    mreport_b64_encode((const uint8_t *)z, (size_t)zn, b);
    return json_pack("{s:s, s:s, s:I, s:s}", "node_id", "w1", "encoding", "lz4", "size",
                     (json_int_t)n + size_delta, "data", b64_override ? b64_override : b);
}

static void test_malformed_reports_are_refused_whole(void **state)
{
    (void)state;
    char s[512];
    expect_refused(J("[]"), "params must be an object");
    expect_refused(J("{\"samples\":[]}"), "node_id");
    expect_refused(J("{\"node_id\":\"w 1\",\"samples\":[]}"), "node_id");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":[],\"x\":1}"), "unexpected parameter 'x'");
    expect_refused(J("{\"node_id\":\"w1\"}"), "either samples or");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":[],\"data\":\"\"}"), "either samples or");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":{}}"), "samples must be an array");
    expect_refused(with_samples("[5]"), "samples[0] must be an object");
    expect_refused(with_samples("[{\"cpu\":1}]"), "t (unix seconds, integer) is required");
    expect_refused(with_samples("[{\"t\":\"now\"}]"), "t (unix seconds");
    snprintf(s, sizeof s, "[{\"t\":%d}]", NOW + 3600);
    expect_refused(with_samples(s), "ahead of the coordinator");
    snprintf(s, sizeof s, "[{\"t\":%d}]", NOW - 32 * 86400);
    expect_refused(with_samples(s), "31 days old");
    snprintf(s, sizeof s, "[{\"t\":%d},{\"t\":%d,\"cpu\":\"hot\"}]", NOW, NOW);
    expect_refused(with_samples(s), "samples[1]: cpu must be a number");
    snprintf(s, sizeof s, "[{\"t\":%d,\"cpu\":100.5}]", NOW);
    expect_refused(with_samples(s), "cpu must be in 0..100");
    snprintf(s, sizeof s, "[{\"t\":%d,\"rss\":-1}]", NOW);
    expect_refused(with_samples(s), "rss must be in");
    snprintf(s, sizeof s, "[{\"t\":%d,\"disks\":[]}]", NOW);
    expect_refused(with_samples(s), "disks must be an object");
    snprintf(s, sizeof s, "[{\"t\":%d,\"nets\":{\"eth0\":5}}]", NOW);
    expect_refused(with_samples(s), "each entry must be an object");
    snprintf(s, sizeof s, "[{\"t\":%d,\"nets\":{\"%s\":{}}}]", NOW, "an-interface-name-far-too-long-to-be-real");
    expect_refused(with_samples(s), "longer than 32 bytes");
    snprintf(s, sizeof s, "[{\"t\":%d,\"rpc\":{\"m\":{\"p99_ms\":\"slow\"}}}]", NOW);
    expect_refused(with_samples(s), "p99_ms must be a number");
    snprintf(s, sizeof s, "[{\"t\":%d,\"gossip\":3}]", NOW);
    expect_refused(with_samples(s), "gossip must be an object");
    /* too many disks */
    json_t *p = with_samples("[]");
    json_t *smp = json_pack("{s:i}", "t", NOW), *disks = json_object();
    for (int i = 0; i < MREPORT_MAX_DISKS + 1; i++) {
        char k[16];
        snprintf(k, sizeof k, "/d%d", i);
        json_object_set_new(disks, k, json_object());
    }
    json_object_set_new(smp, "disks", disks);
    json_array_append_new(json_object_get(p, "samples"), smp);
    expect_refused(p, "more than 32 entries");
    /* too many samples */
    p = with_samples("[]");
    for (int i = 0; i < MREPORT_MAX_SAMPLES + 1; i++)
        json_array_append_new(json_object_get(p, "samples"), json_pack("{s:i}", "t", NOW - 1000 + i));
    expect_refused(p, "at most 900 samples");
    /* services */
    snprintf(s, sizeof s, "{\"node_id\":\"w1\",\"samples\":[],\"services\":[{\"name\":\"a\",\"kind\":\"plugin\","
                          "\"state\":\"running\",\"health\":\"healthy\"}]}");
    expect_refused(J(s), "kind 'plugin' is not one of");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":[],\"services\":[{\"kind\":\"native\",\"state\":\"running\","
                     "\"health\":\"healthy\"}]}"),
                   "name is required");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":[],\"services\":[{\"name\":\"a\",\"kind\":\"native\","
                     "\"state\":\"running\",\"health\":\"fine\"}]}"),
                   "health 'fine'");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":[],\"services\":[{\"name\":\"a\",\"kind\":\"native\","
                     "\"state\":\"running\",\"health\":\"healthy\",\"metrics\":{\"x\":\"1\"}}]}"),
                   "finite numbers");
    expect_refused(J("{\"node_id\":\"w1\",\"samples\":[],\"services\":{}}"), "services must be an array");
    /* compressed payloads */
    snprintf(s, sizeof s, "[{\"t\":%d,\"cpu\":1}]", NOW);
    json_t *ok = packed(s, 0, NULL);
    mreport r;
    char err[300];
    assert_int_equal(mreport_decode(ok, NOW, &r, err, sizeof err), 0);
    mreport_free(&r);
    json_decref(ok);
    expect_refused(packed(s, 1, NULL), "exactly size bytes");
    expect_refused(packed(s, -1, NULL), "exactly size bytes");
    expect_refused(packed(s, 0, "AAAA"), "exactly size bytes");
    expect_refused(packed(s, 0, "not base64!"), "not valid base64");
    expect_refused(packed("{\"t\":1}", 0, NULL), "not a JSON array");
    expect_refused(packed("[1,", 0, NULL), "not a JSON array");
    p = packed(s, 0, NULL);
    json_object_set_new(p, "encoding", json_string("gzip"));
    expect_refused(p, "encoding must be \"lz4\"");
    p = packed(s, 0, NULL);
    json_object_set_new(p, "size", json_integer(MREPORT_MAX_SIZE + 1));
    expect_refused(p, "size must be an integer");
}

static void test_base64_is_strict(void **state)
{
    (void)state;
    uint8_t out[16];
    char enc[16];
    assert_int_equal(mreport_b64_decode("QQ==", 4, out), 1);
    assert_int_equal(out[0], 'A');
    assert_int_equal(mreport_b64_decode("QUI=", 4, out), 2);
    assert_int_equal(mreport_b64_decode("QUJD", 4, out), 3);
    assert_int_equal(mreport_b64_decode("QR==", 4, out), -1);     /* bits under the padding */
    assert_int_equal(mreport_b64_decode("QQ=", 3, out), -1);      /* length */
    assert_int_equal(mreport_b64_decode("Q===", 4, out), -1);     /* padding where data must be */
    assert_int_equal(mreport_b64_decode("QQ==QUJD", 8, out), -1); /* data after padding */
    assert_int_equal(mreport_b64_decode("QU D", 4, out), -1);
    assert_int_equal(mreport_b64_encode((const uint8_t *)"AB", 2, enc), 4);
    assert_string_equal(enc, "QUI=");
}

/* ---- /proc/net/dev ------------------------------------------------------------------------- */

static char names[8][32];
static uint64_t rxs[8], txs[8];
static int seen;

static void on_if(void *arg, const char *name, uint64_t rx, uint64_t tx)
{
    (void)arg;
    if (seen < 8) {
        snprintf(names[seen], sizeof names[seen], "%s", name);
        rxs[seen] = rx;
        txs[seen] = tx;
    }
    seen++;
}

static void test_net_dev(void **state)
{
    (void)state;
    const char *text =
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls "
        "carrier compressed\n"
        "    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0 "
        "      0          0\n"
        "  eth0: 98765432 5000 0 0 0 0 0 0 1234567 4000 0 0 0 0 0 0\n"
        "  bad: 1 2 3\n";
    seen = 0;
    assert_int_equal(p2p__parse_net_dev(text, on_if, NULL), 2);
    assert_string_equal(names[0], "lo");
    assert_string_equal(names[1], "eth0");
    assert_true(rxs[1] == 98765432 && txs[1] == 1234567);
    seen = 0;
    assert_int_equal(p2p__parse_net_dev("garbage\n", on_if, NULL), -1);
    assert_int_equal(p2p__parse_net_dev("Inter-|\n", on_if, NULL), -1);
    assert_int_equal(seen, 0);
}

/* ---- store snapshot form ----------------------------------------------------------------- */

static void test_store_round_trip_and_damage(void **state)
{
    (void)state;
    dstore a = {0}, b = {0};
    double v[MT_NMETRICS];
    for (int k = 0; k < 2; k++) {
        dnode *n = dstore_get_or_add(&a, k ? "w2" : "w1", 10);
        snprintf(n->version, sizeof n->version, "0.1.%d", k);
        n->last_report = NOW + k;
        n->latest = json_pack("{s:i, s:f}", "t", NOW, "cpu", 5.0 + k);
        n->services = json_pack("[{s:s}]", "name", "hello");
        for (uint32_t t = NOW; t < NOW + 50; t++) {
            all(v, t % 7 + k);
            mt_add(&n->series, t, v);
        }
    }
    assert_null(dstore_get_or_add(&a, "w3", 2)); /* the table's bound */
    size_t len;
    uint8_t *raw = dstore_serialize(&a, &len);
    char err[200];
    assert_int_equal(dstore_deserialize(&b, raw, len, err, sizeof err), 0);
    assert_int_equal(b.n, 2);
    dnode *w2 = dstore_find(&b, "w2");
    assert_non_null(w2);
    assert_string_equal(w2->version, "0.1.1");
    assert_int_equal(w2->last_report, NOW + 1);
    assert_true(json_real_value(json_object_get(w2->latest, "cpu")) == 6.0);
    assert_true(mt_get(&w2->series, 0, NOW + 10, MT_CPU) == mt_get(&dstore_find(&a, "w2")->series, 0, NOW + 10, MT_CPU));
    /* damage: the table is left as it was */
    dstore c = {0};
    dstore_get_or_add(&c, "keep", 10);
    assert_int_equal(dstore_deserialize(&c, raw, len - 9, err, sizeof err), -EINVAL);
    raw[len / 2] ^= 0x40;
    assert_int_equal(dstore_deserialize(&c, raw, len, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "checksum"));
    assert_int_equal(c.n, 1);
    assert_non_null(dstore_find(&c, "keep"));
    free(raw);
    /* and through a file */
    char path[] = "/tmp/p2p-dash-XXXXXX";
    assert_non_null(mkdtemp(path));
    char file[256];
    snprintf(file, sizeof file, "%s/history.snap", path);
    raw = dstore_serialize(&a, &len);
    dsnap sn;
    dsnap_begin(&sn);
    dsnap_add_node(&sn, a.nodes[0]);
    dsnap_add_node(&sn, a.nodes[1]);
    dsnap_finish(&sn);
    dsnap_seal(&sn);
    assert_int_equal(dsnap_bytes(&sn), len);
    size_t fb = 0;
    assert_int_equal(dstore_write_file(file, &sn, &fb, err, sizeof err), 0);
    dsnap_free(&sn);
    assert_true(fb > 0 && fb < len); /* compressed */
    uint8_t *back;
    size_t blen;
    assert_int_equal(dstore_read_file(file, &back, &blen, err, sizeof err), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(back, raw, len);
    free(back);
    free(raw);
    /* a torn file (not what rename leaves, but a disk can) is refused */
    assert_int_equal(truncate(file, (off_t)fb - 5), 0);
    assert_int_equal(dstore_read_file(file, &back, &blen, err, sizeof err), -EINVAL);
    unlink(file);
    assert_int_equal(dstore_read_file(file, &back, &blen, err, sizeof err), -ENOENT);
    rmdir(path);
    dstore_free(&a);
    dstore_free(&b);
    dstore_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_figures),
        cmocka_unit_test(test_tier0_values_gaps_and_laps),
        cmocka_unit_test(test_duplicates_and_order),
        cmocka_unit_test(test_downsampling_minute_and_hour),
        cmocka_unit_test(test_minutes_after_a_day_are_gaps),
        cmocka_unit_test(test_tier_for_span),
        cmocka_unit_test(test_series_save_load),
        cmocka_unit_test(test_decode_plain),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_malformed_reports_are_refused_whole),
        cmocka_unit_test(test_base64_is_strict),
        cmocka_unit_test(test_net_dev),
        cmocka_unit_test(test_store_round_trip_and_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
