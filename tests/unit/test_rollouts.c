/*
 * test_rollouts.c — the orchestrator's state file (rollouts.json) read back at a
 * coordinator's start: good documents, and malformed ones that are refused or
 * whose bad entries are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "deploy/orchestrator.h"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int check(const char *s) { return p2p__orch_state_check(s, strlen(s)); }

static void test_good_document(void **state)
{
    (void)state;
    const char *doc = "{\"format\":1,\"committed\":{\"pyhello\":{\"sha256\":\"" SHA "\",\"version\":\"1.0.0\"}},"
                      "\"rollouts\":[{\"id\":\"r1-1\",\"sha256\":\"" SHA "\",\"name\":\"pyhello\",\"version\":"
                      "\"1.0.0\",\"target\":\"all:worker\",\"max_parallel\":2,\"canary\":1,\"state\":\"running\","
                      "\"auto_revert\":true,\"nodes\":[{\"node\":\"w1\",\"state\":\"installing\",\"install_id\":"
                      "\"1-1\"},{\"node\":\"w2\",\"state\":\"pending\"}],\"events\":[]}]}";
    assert_int_equal(check(doc), 1);
    assert_int_equal(check("{}"), 0);
    assert_int_equal(check("{\"rollouts\":[]}"), 0);
}

static void test_malformed_documents_are_refused(void **state)
{
    (void)state;
    assert_int_equal(check(""), -1);
    assert_int_equal(check("not json"), -1);
    assert_int_equal(check("[1,2]"), -1);
    assert_int_equal(check("\"x\""), -1);
    assert_int_equal(check("{\"rollouts\":[{\"id\":\"r\""), -1); /* truncated */
    assert_int_equal(p2p__orch_state_check("{\"a\":1}\0junk", 12), -1);
}

static void test_bad_entries_are_skipped(void **state)
{
    (void)state;
    /* not an object; a bad sha; no nodes; an id too long; nodes not an array */
    const char *doc = "{\"committed\":[1],\"rollouts\":[1,\"x\",null,{\"id\":\"a\",\"sha256\":\"zz\",\"nodes\":[]},"
                      "{\"id\":\"b\",\"sha256\":\"" SHA "\"},"
                      "{\"id\":\"0123456789012345678901234567890123456789x\",\"sha256\":\"" SHA "\",\"nodes\":[]},"
                      "{\"id\":\"c\",\"sha256\":\"" SHA "\",\"nodes\":\"w1\"},"
                      "{\"id\":\"ok\",\"sha256\":\"" SHA "\",\"nodes\":[1,{\"node\":7,\"state\":\"??\"}],"
                      "\"max_parallel\":-5,\"canary\":-1,\"state\":\"bogus\",\"events\":{}}]}";
    assert_int_equal(check(doc), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_document),
        cmocka_unit_test(test_malformed_documents_are_refused),
        cmocka_unit_test(test_bad_entries_are_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
