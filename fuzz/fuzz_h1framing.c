/*
 * fuzz_h1framing.c — libFuzzer target for the connection scanner
 * (src/http/wirecheck.c) that guards h2o against request smuggling (HTTP/1.1)
 * and rapid reset / stream floods (HTTP/2).
 *
 * The first input byte picks the protocol (bit 0: HTTP/2) and a split step
 * (bits 1-7, 1..128); the rest is what a client sends. The data is scanned twice:
 * whole, and in pieces of the step size with the clock advancing between them.
 * Invariants: a verdict's offset lies where wirecheck.h promises (HTTP/1.1: a
 * byte of the fed chunk; HTTP/2: a frame header that ends inside it); without
 * the clock mattering (HTTP/1.1, or HTTP/2 with unlimited budgets) both scans
 * reach the same verdict at the same absolute offset; and once given, a verdict
 * sticks. A crash, a sanitizer report or a broken invariant is a finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "http/wirecheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct result {
    p2p_wire_verdict v;
    int64_t abs_at;
} result;

static result scan(int h2, const uint8_t *p, size_t n, size_t step, uint32_t rate, uint64_t tick)
{
    p2p_wirecheck w;
    uint64_t now = 1000;
    p2p__wire_init(&w, h2, rate, now);
    size_t pos = 0;
    while (pos < n) {
        size_t k = n - pos < step ? n - pos : step;
        int64_t at = 0;
        p2p_wire_verdict v = p2p__wire_feed(&w, p + pos, k, now, UINT32_MAX, &at);
        if (v != P2P_WIRE_OK) {
            if (!h2 && (at < 0 || at >= (int64_t)k))
                abort();
            if (h2 && (at < -8 || at + 9 > (int64_t)k))
                abort();
            int64_t again = 0;
            if (p2p__wire_feed(&w, p, n > 4 ? 4 : n, now, UINT32_MAX, &again) != v || again != 0)
                abort(); /* sticky */
            return (result){v, (int64_t)pos + at};
        }
        pos += k;
        now += tick;
    }
    return (result){P2P_WIRE_OK, -1};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int h2 = data[0] & 1;
    size_t step = (size_t)(data[0] >> 1) + 1;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    /* resets never run out (rate far above any input): the verdict depends on the bytes only */
    result whole = scan(h2, p, n, n ? n : 1, 1000000, 0);
    result split = scan(h2, p, n, step, 1000000, 0);
    if (whole.v != split.v || whole.abs_at != split.abs_at) {
        fprintf(stderr, "whole %d@%lld, split %d@%lld\n", whole.v, (long long)whole.abs_at, split.v,
                (long long)split.abs_at);
        abort();
    }
    /* a tight reset budget and a moving clock: offsets must still be in bounds */
    (void)scan(h2, p, n, step, 3, 7);
    return 0;
}
