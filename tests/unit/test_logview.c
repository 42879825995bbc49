/*
 * test_logview.c — the pure half of `p2p logs` (src/logs/view.c): time
 * arguments (absolute, relative, malformed), the get_logs parameters with the
 * contract's names, reading an answer (time order, cursor), and the line
 * format with and without colour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "logs/view.h"

#define NOW 1796209961.0 /* 2026-12-02T11:12:41Z */

static void test_times(void **state)
{
    (void)state;
    double t;
    assert_int_equal(p2p__logs_parse_time("2026-11-21T00:51:25Z", NOW, &t), 0);
    assert_true(t == 1795222285.0);
    assert_int_equal(p2p__logs_parse_time("2026-11-21 00:51:25.5", NOW, &t), 0);
    assert_true(t == 1795222285.5);
    assert_int_equal(p2p__logs_parse_time("2026-11-21", NOW, &t), 0);
    assert_true(t == 1795219200.0);
    assert_int_equal(p2p__logs_parse_time("1796209961.25", NOW, &t), 0);
    assert_true(t == 1796209961.25);
    assert_int_equal(p2p__logs_parse_time("-10m", NOW, &t), 0);
    assert_true(t == NOW - 600);
    assert_int_equal(p2p__logs_parse_time("2h ago", NOW, &t), 0);
    assert_true(t == NOW - 7200);
    assert_int_equal(p2p__logs_parse_time("1d", NOW, &t), 0);
    assert_true(t == NOW - 86400);
    assert_int_equal(p2p__logs_parse_time("now", NOW, &t), 0);
    assert_true(t == NOW);
    assert_int_equal(p2p__logs_parse_time("today", NOW, &t), 0);
    assert_true(t == 1796169600.0);
    static const char *const bad[] = {"", "soon", "-", "10x", "2026-13-01", "2026-11-21T25:00",
                                      "2026-11-21Tab", "1e999", "-5", "5m later", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(p2p__logs_parse_time(bad[i], NOW, &t), -22);
}

static void test_params(void **state)
{
    (void)state;
    p2p_logs_filter f = {.node = "worker-2", .level = "WARNING", .logger = "membership", .grep = "alive",
                         .since = 10.5, .until = 20, .limit = 50};
    json_t *p = p2p__logs_params(&f, "c-17", 10000);
    char *s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"cursor\":\"c-17\",\"level\":\"WARNING\",\"limit\":50,\"logger_name\":\"membership\","
                           "\"node_id\":\"worker-2\",\"search\":\"alive\",\"since\":10.5,\"until\":20.0,"
                           "\"wait_ms\":10000}");
    free(s);
    json_decref(p);
    p2p_logs_filter none = {0};
    p = p2p__logs_params(&none, NULL, 0);
    assert_int_equal(json_object_size(p), 0);
    json_decref(p);
}

static void test_answer(void **state)
{
    (void)state;
    json_t *a = json_loads("{\"logs\":[{\"ts\":3,\"message\":\"c\"},{\"ts\":1,\"message\":\"a\"},"
                           "{\"ts\":2,\"message\":\"b1\"},{\"ts\":2,\"message\":\"b2\"}],\"cursor\":\"x9\"}",
                           0, NULL);
    const char *cur;
    char buf[32];
    json_t *r = p2p__logs_answer(a, &cur, buf, sizeof buf);
    assert_non_null(r);
    assert_string_equal(cur, "x9");
    const char *want[] = {"a", "b1", "b2", "c"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(r, i), "message")), want[i]);
    json_decref(a);
    a = json_loads("{\"records\":[],\"next_cursor\":42}", 0, NULL);
    assert_non_null(p2p__logs_answer(a, &cur, buf, sizeof buf));
    assert_string_equal(cur, "42");
    json_decref(a);
    a = json_loads("{\"nothing\":1}", 0, NULL);
    assert_null(p2p__logs_answer(a, &cur, buf, sizeof buf));
    assert_null(cur);
    json_decref(a);
}

static void test_format(void **state)
{
    (void)state;
    json_t *r = json_loads("{\"ts\":1795222285.123456,\"node_id\":\"worker-2\",\"level\":\"WARNING\","
                           "\"logger\":\"membership\",\"message\":\"worker-3 suspect\"}",
                           0, NULL);
    char line[256];
    p2p__logs_format(r, 0, line, sizeof line);
    assert_string_equal(line, "2026-11-21T00:51:25.123456Z worker-2 WARNING  [membership] worker-3 suspect");
    p2p__logs_format(r, 1, line, sizeof line);
    assert_non_null(strstr(line, "\033[33mWARNING"));
    assert_non_null(strstr(line, "\033[0m"));
    char tiny[10];
    assert_int_equal(p2p__logs_format(r, 0, tiny, sizeof tiny), 9);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_answer),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
