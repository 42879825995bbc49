/*
 * test_pushpull.c — unit tests for src/membership/pushpull.c: the merge order of
 * (incarnation, state), records and digest entries at their limits, and whole
 * documents accepted or refused all or nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "membership/pushpull.h"

static const char *REC = "{\"id\": \"w1\", \"incarnation\": 3, \"port\": 8002, \"addrs\": [\"10.0.0.2\"], "
                         "\"role\": \"worker\", \"meta\": \"{}\", \"state\": \"alive\"}";

static json_t *load(const char *text)
{
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(j);
    return j;
}

static int check(const char *text)
{
    json_t *j = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *why = NULL;
    int r = p2p__pp_check(j, &why);
    if (r != 0)
        assert_non_null(why);
    json_decref(j);
    return r;
}

static void test_order(void **state)
{
    (void)state;
    /* a higher incarnation wins whatever the states */
    assert_true(p2p__pp_newer(5, P2P_SWIM_ALIVE, 4, P2P_SWIM_LEFT));
    assert_false(p2p__pp_newer(4, P2P_SWIM_LEFT, 5, P2P_SWIM_ALIVE));
    /* at the same incarnation: alive < suspect < dead < left */
    p2p_swim_state order[] = {P2P_SWIM_ALIVE, P2P_SWIM_SUSPECT, P2P_SWIM_DEAD, P2P_SWIM_LEFT};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++)
            assert_int_equal(p2p__pp_newer(7, order[a], 7, order[b]), a > b);
    /* the extremes of the incarnation range */
    assert_true(p2p__pp_newer(UINT32_MAX, P2P_SWIM_ALIVE, UINT32_MAX - 1, P2P_SWIM_DEAD));
    assert_false(p2p__pp_newer(0, P2P_SWIM_ALIVE, 0, P2P_SWIM_ALIVE));
}

static void test_record(void **state)
{
    (void)state;
    p2p_gossip_node n;
    p2p_swim_state st;
    json_t *j = load(REC);
    assert_int_equal(p2p__pp_parse_record(j, &n, &st), 0);
    assert_string_equal(n.id, "w1");
    assert_int_equal(n.incarnation, 3);
    assert_int_equal(n.port, 8002);
    assert_int_equal(n.naddrs, 1);
    assert_string_equal(n.addrs[0], "10.0.0.2");
    assert_int_equal(st, P2P_SWIM_ALIVE);
    assert_int_equal(n.meta_len, 2);
    /* each field broken in turn */
    const char *bad[][2] = {
        {"id", "5"},           {"id", "\"\""},         {"incarnation", "-1"}, {"incarnation", "4294967296"},
        {"incarnation", "1.5"}, {"port", "0"},         {"port", "65536"},     {"addrs", "\"10.0.0.2\""},
        {"addrs", "[5]"},      {"role", "null"},       {"meta", "{}"},        {"state", "\"zombie\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *c = json_deep_copy(j);
        json_t *v = json_loads(bad[i][1], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_object_set_new(c, bad[i][0], v);
        if (p2p__pp_parse_record(c, &n, &st) == 0)
            fail_msg("accepted %s = %s", bad[i][0], bad[i][1]);
        json_decref(c);
    }
    json_t *c = json_deep_copy(j);
    json_object_del(c, "meta");
    assert_int_equal(p2p__pp_parse_record(c, &n, &st), -EINVAL);
    json_decref(c);
    /* a meta over the codec's limit */
    c = json_deep_copy(j);
    char *big = calloc(1, P2P_GOSSIP_META_MAX + 2);
    memset(big, 'm', P2P_GOSSIP_META_MAX + 1);
    json_object_set_new(c, "meta", json_string(big));
    assert_int_equal(p2p__pp_parse_record(c, &n, &st), -EINVAL);
    big[P2P_GOSSIP_META_MAX] = '\0';
    json_object_set_new(c, "meta", json_string(big));
    assert_int_equal(p2p__pp_parse_record(c, &n, &st), 0);
    free(big);
    json_decref(c);
    json_decref(j);
}

static void test_documents(void **state)
{
    (void)state;
    char doc[1024];
    /* accepted */
    assert_int_equal(check("{\"digest\": {}}"), 0);
    assert_int_equal(check("{\"nodes\": []}"), 0);
    assert_int_equal(check("{\"digest\": {\"a\": [0, \"alive\"], \"b\": [4294967295, \"left\"]}, \"nodes\": []}"), 0);
    snprintf(doc, sizeof doc, "{\"nodes\": [%s], \"want\": [\"w1\", \"coord\"]}", REC);
    assert_int_equal(check(doc), 0);
    /* refused */
    assert_int_equal(check("[]"), -EINVAL);
    assert_int_equal(check("{}"), -EINVAL);
    assert_int_equal(check("{\"digest\": []}"), -EINVAL);
    assert_int_equal(check("{\"digest\": {\"a\": [1]}}"), -EINVAL);
    assert_int_equal(check("{\"digest\": {\"a\": [1, \"alive\", 3]}}"), -EINVAL);
    assert_int_equal(check("{\"digest\": {\"a\": [1, \"zombie\"]}}"), -EINVAL);
    assert_int_equal(check("{\"digest\": {\"\": [1, \"alive\"]}}"), -EINVAL);
    assert_int_equal(check("{\"digest\": {}, \"want\": [5]}"), -EINVAL);
    assert_int_equal(check("{\"digest\": {}, \"want\": \"a\"}"), -EINVAL);
    assert_int_equal(check("{\"nodes\": {}}"), -EINVAL);
    /* one bad record among good ones refuses the whole document */
    snprintf(doc, sizeof doc, "{\"nodes\": [%s, {\"id\": \"w2\"}]}", REC);
    assert_int_equal(check(doc), -EINVAL);
    assert_int_equal(check(NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
