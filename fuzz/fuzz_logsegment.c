/*
 * fuzz_logsegment.c — libFuzzer target for the segment reader: arbitrary file
 * contents are read frame by frame up to the first damaged one, never past the
 * buffer; every frame with a good CRC is then decoded as a record or skipped.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "logs/record.h"
#include "logs/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* half the inputs get a valid header so the frames are reached */
    uint8_t *buf = malloc(size + LOGSEG_MAGIC_LEN + 1);
    size_t len = size;
    if (size && (data[0] & 1)) {
        memcpy(buf, LOGSEG_MAGIC, LOGSEG_MAGIC_LEN);
        memcpy(buf + LOGSEG_MAGIC_LEN, data + 1, size - 1);
        len = size - 1 + LOGSEG_MAGIC_LEN;
    } else {
        memcpy(buf, data, size);
    }
    if (logseg_check_magic(buf, len)) {
        size_t off = LOGSEG_MAGIC_LEN, plen;
        const uint8_t *p;
        int r;
        while ((r = logseg_next(buf, len, &off, &p, &plen)) == 1) {
            assert(p >= buf && p + plen <= buf + len && off <= len);
            json_t *o = json_loadb((const char *)p, plen, 0, NULL);
            char err[200];
            logrec *rec = logrec_from_json(o, "n", 0, err, sizeof err);
            logrec_unref(rec);
            json_decref(o);
        }
        assert(off <= len);
    }
    free(buf);
    return 0;
}
