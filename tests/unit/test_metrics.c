/*
 * test_metrics.c — per-method metrics: counting, error counting, histogram
 * buckets at their boundaries, and quantile estimates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "rpc/registry.h"

static void test_counts_and_buckets(void **state)
{
    (void)state;
    p2p_method_stats st;
    memset(&st, 0, sizeof(st));
    p2p__method_stats_record(&st, 50, 0);        /* <= 100us */
    p2p__method_stats_record(&st, 100, 0);       /* boundary: still the first bucket */
    p2p__method_stats_record(&st, 101, 1);       /* second bucket */
    p2p__method_stats_record(&st, 20000000, 1);  /* over 10 s: +Inf */
    assert_int_equal(st.calls, 4);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.sum_us, 50 + 100 + 101 + 20000000);
    assert_int_equal(st.max_us, 20000000);
    assert_int_equal(st.buckets[0], 2);
    assert_int_equal(st.buckets[1], 1);
    assert_int_equal(st.buckets[P2P_LAT_BUCKETS], 1);
    uint64_t total = 0;
    for (size_t b = 0; b <= P2P_LAT_BUCKETS; b++)
        total += st.buckets[b];
    assert_int_equal(total, st.calls);
}

static void test_bounds_increase(void **state)
{
    (void)state;
    for (size_t b = 1; b < P2P_LAT_BUCKETS; b++)
        assert_true(p2p__lat_bounds_us[b] > p2p__lat_bounds_us[b - 1]);
}

static void test_quantiles(void **state)
{
    (void)state;
    p2p_method_stats st;
    memset(&st, 0, sizeof(st));
    assert_true(p2p__method_stats_quantile(&st, 0.5) == 0.0);
    /* 99 fast calls (~80us) and one slow (~40ms) */
    for (int i = 0; i < 99; i++)
        p2p__method_stats_record(&st, 80, 0);
    p2p__method_stats_record(&st, 40000, 0);
    double p50 = p2p__method_stats_quantile(&st, 0.50);
    double p99 = p2p__method_stats_quantile(&st, 0.99);
    double p100 = p2p__method_stats_quantile(&st, 1.0);
    assert_true(p50 > 0 && p50 <= 100);      /* inside the first bucket */
    assert_true(p99 <= 100);                  /* the 99th call is still fast */
    assert_true(p100 > 25000 && p100 <= 40000); /* the slow one, capped by the max seen */
    assert_true(p50 <= p99 && p99 <= p100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_buckets),
        cmocka_unit_test(test_bounds_increase),
        cmocka_unit_test(test_quantiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
