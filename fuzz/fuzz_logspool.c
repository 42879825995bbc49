/*
 * fuzz_logspool.c — libFuzzer target for the log spool file reader
 * (src/logs/spool.c): the header decoder and the record scanner, on the bytes
 * a crash or a damaged disk could leave.
 *
 * The input is a whole spool file. Invariants checked beside "no crash, no
 * sanitizer report": the scanner reports only records that lie inside the
 * input, with strictly increasing seqs and intact CRCs (re-framing each one
 * gives its bytes back), and the bytes it says are good are exactly the sum of
 * the frames it reported; a header that decodes encodes back to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "logs/spool.h"

typedef struct walk {
    const uint8_t *base;
    size_t len, frames_bytes;
    uint64_t prev;
    uint8_t *tmp;
} walk;

static void on_rec(void *arg, uint64_t seq, const uint8_t *payload, size_t len, size_t off)
{
    walk *w = arg;
    if (seq <= w->prev || len == 0 || len > P2P_SPOOL_MAX_PAYLOAD || off + P2P_SPOOL_FRAME + len > w->len ||
        payload != w->base + off + P2P_SPOOL_FRAME)
        abort();
    w->prev = seq;
    size_t n = p2p__spool_frame(seq, payload, len, w->tmp);
    if (memcmp(w->tmp, w->base + off, n) != 0)
        abort();
    w->frames_bytes += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_spool_header h;
    if (p2p__spool_header_decode(data, size, &h) == 0) {
        uint8_t again[P2P_SPOOL_HDR];
        p2p__spool_header_encode(&h, again);
        if (memcmp(again, data, P2P_SPOOL_HDR) != 0)
            abort();
    }
    const uint8_t *body = size > P2P_SPOOL_HDR ? data + P2P_SPOOL_HDR : data;
    size_t blen = size > P2P_SPOOL_HDR ? size - P2P_SPOOL_HDR : size;
    walk w = {body, blen, 0, 0, malloc(P2P_SPOOL_FRAME + blen + 1)};
    uint64_t last = 0;
    int stop;
    size_t good = p2p__spool_scan(body, blen, &last, on_rec, &w, &stop);
    if (good != w.frames_bytes || good > blen || (stop == 0 && good != blen) || last != w.prev)
        abort();
    free(w.tmp);
    return 0;
}
