/*
 * test_l1.c — the in-process cache: get/set/replace, namespaces kept apart,
 * TTL expiry (never returned once expired), LRU eviction order under the byte
 * bound (a hit protects an entry), the per-value cap, clear by namespace, and
 * the byte accounting staying exact through a random workload.
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

#include "cache/l1.h"

static int get_str(p2p_l1 *c, const char *ns, const char *k, uint64_t now, char *out, size_t n)
{
    const void *v;
    size_t len;
    if (!p2p__l1_get(c, ns, k, now, &v, &len, NULL))
        return 0;
    assert_true(len < n);
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

static void test_basics_and_namespaces(void **state)
{
    (void)state;
    p2p_l1 *c = p2p__l1_new(1 << 20);
    char buf[64];
    assert_int_equal(p2p__l1_set(c, "a", "k", "one", 3, 0, 0), 0);
    assert_int_equal(p2p__l1_set(c, "b", "k", "two", 3, 0, 0), 0);
    assert_true(get_str(c, "a", "k", 0, buf, sizeof buf));
    assert_string_equal(buf, "one");
    assert_true(get_str(c, "b", "k", 0, buf, sizeof buf));
    assert_string_equal(buf, "two");
    assert_int_equal(p2p__l1_set(c, "a", "k", "uno", 3, 0, 0), 0); /* replace */
    assert_true(get_str(c, "a", "k", 0, buf, sizeof buf));
    assert_string_equal(buf, "uno");
    p2p_l1_stats st;
    p2p__l1_stats(c, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.bytes, 2 * (P2P_L1_ENTRY_OVERHEAD + 1 + 1 + 3));
    assert_false(get_str(c, "a", "nope", 0, buf, sizeof buf));
    assert_int_equal(p2p__l1_del(c, "a", "k"), 1);
    assert_int_equal(p2p__l1_del(c, "a", "k"), 0);
    assert_int_equal(p2p__l1_set(c, "", "k", "x", 1, 0, 0), -EINVAL);
    assert_int_equal(p2p__l1_set(c, "a", "", "x", 1, 0, 0), -EINVAL);
    assert_int_equal(p2p__l1_set(c, "a", "k", "", 0, 0, 0), 0); /* an empty value is a value */
    assert_true(get_str(c, "a", "k", 0, buf, sizeof buf));
    assert_string_equal(buf, "");
    p2p__l1_free(c);
}

static void test_ttl(void **state)
{
    (void)state;
    p2p_l1 *c = p2p__l1_new(1 << 20);
    char buf[16];
    assert_int_equal(p2p__l1_set(c, "s", "k", "v", 1, 100, 1000), 0);
    const void *v;
    size_t len;
    uint64_t left;
    assert_true(p2p__l1_get(c, "s", "k", 1040, &v, &len, &left));
    assert_int_equal(left, 60);
    assert_true(get_str(c, "s", "k", 1099, buf, sizeof buf));
    assert_false(get_str(c, "s", "k", 1100, buf, sizeof buf)); /* expires at exactly set + ttl */
    p2p_l1_stats st;
    p2p__l1_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.expirations, 1);
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(p2p__l1_set(c, "s", k, "v", 1, i < 5 ? 10 : 0, 0), 0);
    }
    assert_int_equal(p2p__l1_expire(c, 10, 0), 5);
    p2p__l1_stats(c, &st);
    assert_int_equal(st.entries, 5);
    p2p__l1_free(c);
}

static void test_lru_eviction(void **state)
{
    (void)state;
    /* room for exactly 4 entries of this size */
    size_t per = P2P_L1_ENTRY_OVERHEAD + 1 + 2 + 400;
    p2p_l1 *c = p2p__l1_new(4096 > 4 * per ? 4096 : 4 * per);
    size_t cap = 4096 / per; /* entries that fit */
    char val[400];
    memset(val, 'x', sizeof val);
    char k[8];
    for (size_t i = 0; i < cap; i++) {
        snprintf(k, sizeof k, "k%zu", i);
        assert_int_equal(p2p__l1_set(c, "n", k, val, sizeof val, 0, 0), 0);
    }
    const void *v;
    size_t len;
    assert_true(p2p__l1_get(c, "n", "k0", 0, &v, &len, NULL)); /* k0 is now the most recent */
    assert_int_equal(p2p__l1_set(c, "n", "zz", val, sizeof val, 0, 0), 0);
    assert_true(p2p__l1_get(c, "n", "k0", 0, &v, &len, NULL)); /* protected by its hit */
    assert_false(p2p__l1_get(c, "n", "k1", 0, &v, &len, NULL)); /* the least recently used went */
    p2p_l1_stats st;
    p2p__l1_stats(c, &st);
    assert_true(st.bytes <= st.max_bytes);
    assert_int_equal(st.evictions, 1);
    /* a value above max_bytes / 8 is refused and changes nothing */
    char *big = calloc(1, 4096);
    assert_int_equal(p2p__l1_set(c, "n", "big", big, 4096 / 8 + 1, 0, 0), -E2BIG);
    free(big);
    p2p_l1_stats st2;
    p2p__l1_stats(c, &st2);
    assert_int_equal(st2.entries, st.entries);
    p2p__l1_free(c);
}

static void test_clear_ns_and_random_accounting(void **state)
{
    (void)state;
    p2p_l1 *c = p2p__l1_new(64 * 1024);
    srand(7);
    size_t expect_live = 0;
    (void)expect_live;
    for (int i = 0; i < 20000; i++) {
        char ns[4], k[8];
        snprintf(ns, sizeof ns, "n%d", rand() % 3);
        snprintf(k, sizeof k, "k%d", rand() % 500);
        int op = rand() % 10;
        if (op < 6) {
            size_t len = (size_t)(rand() % 900);
            char *v = malloc(len + 1);
            memset(v, 'a' + i % 26, len);
            assert_int_equal(p2p__l1_set(c, ns, k, v, len, (uint64_t)(rand() % 3) * 50, (uint64_t)i), 0);
            free(v);
        } else if (op < 9) {
            const void *v;
            size_t len;
            p2p__l1_get(c, ns, k, (uint64_t)i, &v, &len, NULL);
        } else {
            p2p__l1_del(c, ns, k);
        }
        p2p_l1_stats st;
        p2p__l1_stats(c, &st);
        assert_true(st.bytes <= st.max_bytes);
    }
    size_t n1 = p2p__l1_clear_ns(c, "n1");
    (void)n1;
    p2p__l1_clear_ns(c, "n0");
    p2p__l1_clear_ns(c, "n2");
    p2p_l1_stats st;
    p2p__l1_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0); /* the accounting came back to exactly zero */
    p2p__l1_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics_and_namespaces),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_lru_eviction),
        cmocka_unit_test(test_clear_ns_and_random_accounting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
