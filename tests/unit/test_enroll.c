/*
 * test_enroll.c — unit tests for the pure parts of src/pki/enroll.c: challenges
 * (format, embedded time, malformed input), the key authorization (bound to the
 * challenge and the CSR), CA pins and join strings (token, optional pin,
 * malformed shapes), and the names a node asks for in its certificate (its real
 * addresses; loopback only when it binds or advertises loopback, or the cluster
 * lives on this host).
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

#include "core/config.h"
#include "core/ctx.h"
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

/* p2p__node_names for a worker with this bind address and coordinator. */
static int names_have(const char *bind, const char *coord, const char *want, size_t *n_out, int *any_loopback)
{
    p2p_config cfg;
    p2p_config_defaults(&cfg, 0);
    char *err = NULL;
    assert_int_equal(p2p_config_finalize(&cfg, &err), 0); /* role defaults for keys not set explicitly */
    free(cfg.bind_address);
    cfg.bind_address = strdup(bind);
    for (size_t i = 0; i < cfg.n_coordinator_addresses; i++)
        free(cfg.coordinator_addresses[i]);
    cfg.coordinator_addresses[0] = strdup(coord);
    cfg.n_coordinator_addresses = 1;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = p2p__ctx_new(&cfg, &loop);
    char **names = NULL;
    size_t n = 0;
    p2p__node_names(ctx, &names, &n);
    int found = 0;
    *any_loopback = 0;
    for (size_t i = 0; i < n; i++) {
        if (getenv("NAMES_DEBUG"))
            fprintf(stderr, "%s %s: %s\n", bind, coord, names[i]);
        if (want && !strcmp(names[i], want))
            found = 1;
        if (!strcmp(names[i], "localhost") || !strncmp(names[i], "127.", 4) || !strcmp(names[i], "::1"))
            *any_loopback = 1;
        free(names[i]);
    }
    free(names);
    *n_out = n;
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
    return found;
}

static void test_node_names(void **state)
{
    (void)state;
    size_t n = 0;
    int lo = 0;
    /* bound to one address: that address, nothing else */
    assert_true(names_have("192.0.2.77", "192.0.2.1:8001", "192.0.2.77", &n, &lo));
    assert_int_equal(n, 1);
    assert_false(lo);
    /* bound to loopback: loopback and localhost */
    assert_true(names_have("127.0.0.1", "127.0.0.1:8001", "127.0.0.1", &n, &lo));
    assert_true(names_have("127.0.0.1", "127.0.0.1:8001", "localhost", &n, &lo));
    assert_int_equal(n, 2);
    /* bound to every address, the cluster on this host: loopback is one of them */
    assert_true(names_have("0.0.0.0", "127.0.0.1:8001", "127.0.0.1", &n, &lo));
    /* bound to every address, the coordinator elsewhere: loopback only on a host that
     * has nothing else (the address selection's rule) */
    uv_interface_address_t *ifs = NULL;
    int cnt = 0, other = 0;
    assert_int_equal(uv_interface_addresses(&ifs, &cnt), 0);
    for (int i = 0; i < cnt; i++)
        if (!ifs[i].is_internal && ifs[i].address.address4.sin_family == AF_INET)
            other = 1;
    uv_free_interface_addresses(ifs, cnt);
    names_have("0.0.0.0", "192.0.2.1:8001", NULL, &n, &lo);
    if (other)
        assert_false(lo);
}

/* The worker's retry wait: jittered within [base/2, base], capped at 30 s, and
 * never shorter than the coordinator's Retry-After (itself capped at 300 s). */
static void test_backoff(void **state)
{
    (void)state;
    static const unsigned base[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (unsigned a = 0; a < 8; a++) {
        unsigned lo = ~0u, hi = 0;
        for (uint32_t r = 0; r < 20000; r++) {
            uint32_t rnd = r * 2654435761u;
            unsigned d = p2p__enroll_backoff_ms(a, 0, rnd);
            assert_true(d >= base[a] / 2 && d <= base[a]);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        assert_true(hi - lo >= base[a] / 4); /* really spread, not a constant */
    }
    assert_int_equal(p2p__enroll_backoff_ms(1000000, 0, 0xffffffffu) <= 30000, 1);
    /* Retry-After wins when longer, plus under a second of jitter */
    for (uint32_t r = 0; r < 1000; r++) {
        unsigned d = p2p__enroll_backoff_ms(0, 7, r * 2654435761u);
        assert_true(d >= 7000 && d < 8000);
    }
    assert_true(p2p__enroll_backoff_ms(0, 100000, 0) <= 301000);
    assert_true(p2p__enroll_backoff_ms(5, 2, 0) >= 15000); /* a short Retry-After does not shorten the backoff */
}

static void test_fetch_retry_after(void **state)
{
    (void)state;
    const char *a = "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nRetry-After: 12\r\n\r\n";
    assert_int_equal(p2p__fetch_retry_after(a, strlen(a)), 12);
    const char *b = "HTTP/1.1 429 X\r\nretry-after:\t99999999\r\n\r\n";
    assert_int_equal(p2p__fetch_retry_after(b, strlen(b)), 3600);
    const char *c = "HTTP/1.1 503 X\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n";
    assert_int_equal(p2p__fetch_retry_after(c, strlen(c)), 0);
    const char *d = "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n\r\nRetry-After: 5\r\n"; /* in the body: ignored */
    assert_int_equal(p2p__fetch_retry_after(d, strlen(d)), 0);
    const char *e = "HTTP/1.1 429 X\r\nX-Retry-After: 5\r\nRetry-After";
    assert_int_equal(p2p__fetch_retry_after(e, strlen(e)), 0);
    assert_int_equal(p2p__fetch_retry_after("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_names), cmocka_unit_test(test_backoff), cmocka_unit_test(test_fetch_retry_after),
        cmocka_unit_test(test_challenge_round_trip), cmocka_unit_test(test_challenge_malformed),
        cmocka_unit_test(test_key_auth_binds_challenge_and_csr), cmocka_unit_test(test_ca_pin),
        cmocka_unit_test(test_join_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
