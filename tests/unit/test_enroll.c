/*
 * test_enroll.c — unit tests for the pure parts of src/pki/enroll.c: challenges
 * (format, embedded time, malformed input), the key authorization (bound to the
 * challenge and the CSR), CA pins and join strings (token, optional pin,
 * malformed shapes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pki/enroll.h"
#include "pki/pki.h"

static void test_challenge_round_trip(void **state)
{
    char c1[ENROLL_CHALLENGE_LEN + 1], c2[ENROLL_CHALLENGE_LEN + 1];
    assert_int_equal(p2p__enroll_challenge_new(1700000000123ULL, c1), 0);
    assert_int_equal(p2p__enroll_challenge_new(1700000000123ULL, c2), 0);
    assert_int_equal(strlen(c1), ENROLL_CHALLENGE_LEN);
    assert_string_not_equal(c1, c2); /* 24 random bytes each */
    uint64_t t = 0;
    assert_int_equal(p2p__enroll_challenge_time(c1, &t), 0);
    assert_int_equal(t, 1700000000123ULL);
}

static void test_challenge_malformed(void **state)
{
    uint64_t t = 0;
    char c[ENROLL_CHALLENGE_LEN + 1];
    assert_int_equal(p2p__enroll_challenge_new(1, c), 0);
    static const char *const bad[] = {"", "short", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 44 */,
                                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" /* padding */,
                                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+" /* std alphabet */,
                                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB" /* non-zero tail bits */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(p2p__enroll_challenge_time(bad[i], &t), -EINVAL);
    assert_int_equal(p2p__enroll_challenge_time(NULL, &t), -EINVAL);
    for (size_t n = 0; n < ENROLL_CHALLENGE_LEN; n++) { /* every truncation */
        char tr[ENROLL_CHALLENGE_LEN + 1];
        memcpy(tr, c, n);
        tr[n] = '\0';
        assert_int_equal(p2p__enroll_challenge_time(tr, &t), -EINVAL);
    }
}

static void test_key_auth_binds_challenge_and_csr(void **state)
{
    char a[ENROLL_KEYAUTH_LEN + 1], b[ENROLL_KEYAUTH_LEN + 1], c[ENROLL_KEYAUTH_LEN + 1], d[ENROLL_KEYAUTH_LEN + 1];
    p2p__enroll_key_auth("challenge-1", "csr-1", a);
    p2p__enroll_key_auth("challenge-1", "csr-1", b);
    p2p__enroll_key_auth("challenge-2", "csr-1", c);
    p2p__enroll_key_auth("challenge-1", "csr-2", d);
    assert_int_equal(strlen(a), ENROLL_KEYAUTH_LEN);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
}

static void test_ca_pin(void **state)
{
    char *ca = NULL, *key = NULL, *ca2 = NULL, *key2 = NULL;
    assert_int_equal(pki_ca_create("test", 10, &ca, &key, NULL), 0);
    assert_int_equal(pki_ca_create("test", 10, &ca2, &key2, NULL), 0);
    char p1[ENROLL_PIN_LEN + 1], p2[ENROLL_PIN_LEN + 1], p3[ENROLL_PIN_LEN + 1];
    assert_int_equal(p2p__enroll_ca_pin(ca, p1), 0);
    assert_int_equal(p2p__enroll_ca_pin(ca, p2), 0);
    assert_int_equal(p2p__enroll_ca_pin(ca2, p3), 0);
    assert_string_equal(p1, p2);
    assert_string_not_equal(p1, p3);
    assert_int_equal(p2p__enroll_ca_pin("not a certificate", p1), -EINVAL);
    assert_int_equal(p2p__enroll_ca_pin("", p1), -EINVAL);
    pki_secret_free(key);
    pki_secret_free(key2);
    free(ca);
    free(ca2);
}

static void test_join_split(void **state)
{
    char tok[300], pin[ENROLL_PIN_LEN + 1];
    const char *t = "p2pj_Ch0xcxsiEiUv0fX1NT8JCVJ11_y9MECd_9YjLxzsbWE";
    const char *p = "vqnO3y1xDFLEUliUcNQuGLDEOb7QJuXxD85bnutIEvc";
    char joined[200];
    snprintf(joined, sizeof joined, "%s.%s", t, p);
    assert_int_equal(p2p__enroll_join_split(joined, tok, sizeof tok, pin), 0);
    assert_string_equal(tok, t);
    assert_string_equal(pin, p);
    assert_int_equal(p2p__enroll_join_split(t, tok, sizeof tok, pin), 0);
    assert_string_equal(tok, t);
    assert_string_equal(pin, "");
    static const char *const bad[] = {
        "",                                                   /* empty */
        ".vqnO3y1xDFLEUliUcNQuGLDEOb7QJuXxD85bnutIEvc",       /* no token */
        "p2pj_abc.",                                          /* empty pin */
        "p2pj_abc.short",                                     /* pin too short */
        "p2pj_abc.vqnO3y1xDFLEUliUcNQuGLDEOb7QJuXxD85bnutIEvc.x", /* two dots */
        "p2pj_abc.vqnO3y1xDFLEUliUcNQuGLDEOb7QJuXxD85bnutIEv!", /* not base64url */
        "p2pj abc",                                           /* space */
        "p2pj_\x01",                                          /* control character */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(p2p__enroll_join_split(bad[i], tok, sizeof tok, pin), -EINVAL);
    assert_int_equal(p2p__enroll_join_split(NULL, tok, sizeof tok, pin), -EINVAL);
    assert_int_equal(p2p__enroll_join_split(t, tok, 5, pin), -EINVAL); /* does not fit */
    char huge[400];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(p2p__enroll_join_split(huge, tok, sizeof tok, pin), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge_round_trip), cmocka_unit_test(test_challenge_malformed),
        cmocka_unit_test(test_key_auth_binds_challenge_and_csr), cmocka_unit_test(test_ca_pin),
        cmocka_unit_test(test_join_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
