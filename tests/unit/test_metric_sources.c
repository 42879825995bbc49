/*
 * test_metric_sources.c — metric sources (core/metrics.c): registration rules,
 * the JSON shape (group -> key without prefix and _total -> value or object by
 * label), the Prometheus text (one HELP/TYPE per name, escaped labels, integers
 * printed exactly, NaN/Inf spelled as the format wants), and removal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/metrics.h"

static void gossip(p2p_ctx *ctx, p2p_metrics_out *out, void *arg)
{
    (void)ctx;
    int *scrapes = arg;
    (*scrapes)++;
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", "Drops.\nby reason", P2P_METRIC_COUNTER, "reason", "auth", 3);
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", "Drops.\nby reason", P2P_METRIC_COUNTER, "reason",
                      "we\"ird\\", 4);
    p2p__metrics_emit(out, "p2p_gossip_senders", "Senders.", P2P_METRIC_GAUGE, NULL, NULL, 12345678901.0);
    p2p__metrics_emit(out, "p2p_gossip_ratio", "A ratio.", P2P_METRIC_GAUGE, NULL, NULL, 0.25);
    p2p__metrics_emit(out, "p2p_gossip_nan", "Not a number.", P2P_METRIC_GAUGE, NULL, NULL, NAN);
    p2p__metrics_emit(out, "p2p_gossip_inf", "Infinite.", P2P_METRIC_GAUGE, NULL, NULL, -INFINITY);
}

static p2p_ctx *new_ctx(void)
{
    p2p_config cfg;
    memset(&cfg, 0, sizeof cfg);
    return p2p__ctx_new(&cfg, uv_default_loop());
}

static void test_registration_rules(void **state)
{
    (void)state;
    p2p_ctx *ctx = new_ctx();
    int n = 0;
    assert_int_equal(p2p__metrics_source_add(ctx, "gossip", gossip, &n), 0);
    assert_int_equal(p2p__metrics_source_add(ctx, "gossip", gossip, &n), -EEXIST);
    assert_int_equal(p2p__metrics_source_add(ctx, "Bad-Name", gossip, &n), -EINVAL);
    assert_int_equal(p2p__metrics_source_add(ctx, "", gossip, &n), -EINVAL);
    assert_int_equal(p2p__metrics_source_add(ctx, "x", NULL, &n), -EINVAL);
    p2p__metrics_source_remove(ctx, "gossip");
    p2p__metrics_source_remove(ctx, "never-added");
    json_t *j = p2p__metrics_sources_json(ctx);
    assert_int_equal(json_object_size(j), 0);
    json_decref(j);
    assert_int_equal(n, 0);
    p2p__ctx_free(ctx);
}

static void test_json_shape(void **state)
{
    (void)state;
    p2p_ctx *ctx = new_ctx();
    int n = 0;
    assert_int_equal(p2p__metrics_source_add(ctx, "gossip", gossip, &n), 0);
    json_t *j = p2p__metrics_sources_json(ctx);
    json_t *g = json_object_get(j, "gossip");
    assert_non_null(g);
    json_t *d = json_object_get(g, "dropped");
    assert_true(json_is_object(d));
    assert_int_equal(json_integer_value(json_object_get(d, "auth")), 3);
    assert_int_equal(json_integer_value(json_object_get(d, "we\"ird\\")), 4);
    assert_int_equal(json_integer_value(json_object_get(g, "senders")), 12345678901LL);
    assert_true(json_real_value(json_object_get(g, "ratio")) == 0.25);
    assert_true(json_is_null(json_object_get(g, "nan")));
    json_decref(j);
    assert_int_equal(n, 1);
    p2p__ctx_free(ctx);
}

static void test_prometheus_text(void **state)
{
    (void)state;
    p2p_ctx *ctx = new_ctx();
    int n = 0;
    assert_int_equal(p2p__metrics_source_add(ctx, "gossip", gossip, &n), 0);
    size_t len = 0;
    char *t = p2p__metrics_sources_prometheus(ctx, &len);
    assert_int_equal(strlen(t), len);
    const char *want = "# HELP p2p_gossip_dropped_total Drops.\\nby reason\n"
                       "# TYPE p2p_gossip_dropped_total counter\n"
                       "p2p_gossip_dropped_total{reason=\"auth\"} 3\n"
                       "p2p_gossip_dropped_total{reason=\"we\\\"ird\\\\\"} 4\n"
                       "# HELP p2p_gossip_senders Senders.\n"
                       "# TYPE p2p_gossip_senders gauge\n"
                       "p2p_gossip_senders 12345678901\n";
    assert_memory_equal(t, want, strlen(want));
    assert_non_null(strstr(t, "p2p_gossip_ratio 0.25\n"));
    assert_non_null(strstr(t, "p2p_gossip_nan NaN\n"));
    assert_non_null(strstr(t, "p2p_gossip_inf -Inf\n"));
    /* one HELP per name */
    assert_null(strstr(strstr(t, "# HELP p2p_gossip_dropped_total") + 1, "# HELP p2p_gossip_dropped_total"));
    free(t);
    p2p__ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_prometheus_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
