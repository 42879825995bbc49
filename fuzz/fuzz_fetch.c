/*
 * fuzz_fetch.c — libFuzzer target for the answer parser of the blocking
 * HTTP/1.1 fetch (p2p__fetch_parse, src/pki/fetch.c), used for enrollment,
 * renewal and the coordinator's challenge fetch.
 *
 * The input is an answer as it arrives. Invariants: a complete parse gives a
 * status in 100..599 and a NUL-terminated body within the cap; a refusal says
 * why and gives no body; feeding the answer in two pieces never completes on
 * the first piece with a different result than the whole (what is complete on
 * a prefix is complete, with the same body, on the whole when the length is
 * framed). A crash, a leak or a sanitizer report is a finding.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/enroll.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t cap = 1024;
    for (int eof = 0; eof < 2; eof++) {
        long st = 0;
        char *b = NULL;
        size_t bl = 0;
        const char *why = NULL;
        int r = p2p__fetch_parse((const char *)data, size, eof, cap, &st, &b, &bl, &why);
        if (r == 1) {
            if (!b || st < 100 || st > 599 || bl > cap || b[bl] != '\0')
                abort();
            free(b);
        } else if (r == -1) {
            if (!why || b)
                abort();
        } else if (r != 0 || b || eof) {
            abort(); /* with eof the answer is complete or refused */
        }
    }
    return 0;
}
