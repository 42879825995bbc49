/*
 * fuzz_enroll.c — libFuzzer target for the enrollment parsers of src/pki/enroll.c
 * (join strings, challenges).
 * Invariants: a split join string re-joins to the input; an accepted challenge
 * has the canonical length and decodes the same twice.
 */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/certreq.h"
#include "pki/enroll.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char tok[CERTREQ_MAX_JOIN_TOKEN + 1], pin[ENROLL_PIN_LEN + 1];
    if (p2p__enroll_join_split(s, tok, sizeof tok, pin) == 0) {
        char back[CERTREQ_MAX_JOIN_TOKEN + ENROLL_PIN_LEN + 3];
        snprintf(back, sizeof back, "%s%s%s", tok, pin[0] ? "." : "", pin);
        if (strcmp(back, s) != 0)
            abort();
    }
    uint64_t t1 = 0, t2 = 0;
    if (p2p__enroll_challenge_time(s, &t1) == 0) {
        if (strlen(s) != ENROLL_CHALLENGE_LEN || p2p__enroll_challenge_time(s, &t2) != 0 || t1 != t2)
            abort();
    }
    free(s);
    return 0;
}
