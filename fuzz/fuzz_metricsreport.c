/*
 * fuzz_metricsreport.c — libFuzzer target for what a node sends the
 * dashboard and what the dashboard reads back from disk. The first byte picks:
 *   0: the bytes as report_metrics params (JSON): decoded or refused whole;
 *      a decoded report is idempotent (its samples, sent again as plain
 *      params, decode to the same samples) and its values are in range;
 *   1: the bytes as the LZ4 block of a compressed report (base64-encoded
 *      here, size from the next two bytes): inflates exactly or is refused;
 *   2: the bytes as a history snapshot (store.c raw form): loaded or refused
 *      with the table unchanged;
 *   3: the bytes as /proc/net/dev text.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/report.h"
#include "metrics/sampler.h"
#include "metrics/store.h"

#define NOW 1796209961LL

static void check_report(json_t *params)
{
    mreport r;
    char err[300] = "";
    if (mreport_decode(params, NOW, &r, err, sizeof err) != 0) {
        assert(err[0]);
        return;
    }
    assert(json_array_size(r.samples) <= MREPORT_MAX_SAMPLES);
    size_t i;
    json_t *s;
    json_array_foreach(r.samples, i, s)
    {
        int64_t t = mreport_sample_time(s);
        assert(t > 0 && t <= NOW + MREPORT_MAX_FUTURE_S);
        (void)t;
        double v[MT_NMETRICS];
        mreport_sample_values(s, v);
        for (int m = 0; m < MT_NMETRICS; m++)
            assert(isnan(v[m]) || (v[m] >= 0 && isfinite(v[m])));
    }
    json_t *again = json_pack("{s:s, s:O}", "node_id", r.node_id, "samples", r.samples);
    if (r.services)
        json_object_set(again, "services", r.services);
    mreport r2;
    int rc = mreport_decode(again, NOW, &r2, err, sizeof err);
    assert(rc == 0);
    (void)rc;
    assert(json_equal(r.samples, r2.samples));
    assert(!r.services || json_equal(r.services, r2.services));
    mreport_free(&r2);
    json_decref(again);
    mreport_free(&r);
}

static void on_if(void *arg, const char *name, uint64_t rx, uint64_t tx)
{
    (void)arg;
    (void)rx;
    (void)tx;
    assert(name[0] && strlen(name) < 32 && !strchr(name, ':'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 4;
    data++;
    size--;
    if (mode == 0) {
        json_t *p = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
        if (p)
            check_report(p);
        json_decref(p);
    } else if (mode == 1) {
        if (size < 2)
            return 0;
        int want = data[0] << 8 | data[1];
        char *b = malloc((size - 2 + 2) / 3 * 4 + 1);
        mreport_b64_encode(data + 2, size - 2, b);
        json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "node_id", "w1", "encoding", "lz4", "size", want, "data", b);
        free(b);
        check_report(p);
        json_decref(p);
    } else if (mode == 2) {
        dstore s = {0};
        dstore_get_or_add(&s, "keep", 10);
        char err[200];
        if (dstore_deserialize(&s, data, size, err, sizeof err) != 0) {
            assert(s.n == 1 && dstore_find(&s, "keep"));
        } else {
            size_t len;
            uint8_t *raw = dstore_serialize(&s, &len);
            dstore t = {0};
            assert(dstore_deserialize(&t, raw, len, err, sizeof err) == 0 && t.n == s.n);
            dstore_free(&t);
            free(raw);
        }
        dstore_free(&s);
    } else {
        char *text = malloc(size + 1);
        memcpy(text, data, size);
        text[size] = '\0';
        p2p__parse_net_dev(text, on_if, NULL);
        free(text);
    }
    return 0;
}
