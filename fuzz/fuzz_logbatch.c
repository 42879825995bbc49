/*
 * fuzz_logbatch.c — libFuzzer target for the add_logs batch decoder: any JSON
 * either decodes into valid, strictly ordered records or is refused whole with
 * a message and nothing allocated; decoded records round-trip through the
 * segment codec unchanged.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "logs/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *params = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!params)
        return 0;
    logbatch b;
    char err[300];
    int r = logbatch_decode(params, 1796209961LL * 1000000, &b, err, sizeof err);
    if (r != 0) {
        assert(b.n == 0 && b.recs == NULL && err[0]);
    } else {
        assert(b.n >= 1 && b.n <= LOGREC_MAX_BATCH);
        for (size_t i = 0; i < b.n; i++) {
            logrec *x = b.recs[i];
            assert(i == 0 || x->seq > b.recs[i - 1]->seq);
            assert(logrec_utf8_ok(x->message, strlen(x->message)));
            size_t len;
            char *enc = logrec_encode(x, &len);
            json_t *o = json_loadb(enc, len, 0, NULL);
            assert(o);
            logrec *y = logrec_from_json(o, b.node, 0, err, sizeof err);
            assert(y && y->seq == x->seq && y->ts_us == x->ts_us && y->level == x->level);
            assert(strcmp(y->message, x->message) == 0 && strcmp(y->logger, x->logger) == 0);
            json_t *wire = logrec_to_json(y);
            assert(wire);
            json_decref(wire);
            logrec_unref(y);
            json_decref(o);
            free(enc);
        }
        logbatch_free(&b);
    }
    json_decref(params);
    return 0;
}
