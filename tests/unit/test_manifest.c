/*
 * test_manifest.c — the service manifest parser: a full good document, the
 * defaults, each kind of refusal (with the file and key named in the message),
 * and semantic-version parsing and precedence (semver.org §11).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "services/manifest.h"

static const char *good =
    "{\"name\":\"greeter\",\"version\":\"1.2.3-beta.1+build.5\",\"description\":\"says hello\","
    "\"type\":\"exec\",\"command\":[\"python3\",\"main.py\"],"
    "\"methods\":[{\"name\":\"hello\",\"description\":\"greets\",\"params\":\"{name}\",\"read_only\":true},"
    "{\"name\":\"set_greeting\",\"public\":false}],"
    "\"dependencies\":[\"store\"],\"roles\":[\"worker\"],\"settings\":{\"greeting\":\"hi\"},"
    "\"timeouts\":{\"call\":2.5}}";

static int parse(const char *text, const char *folder, p2p_manifest *m, char **err)
{
    memset(m, 0, sizeof(*m));
    *err = NULL;
    return p2p__manifest_parse(text, strlen(text), folder, "svc/x/manifest.json", m, err);
}

static void test_good_document(void **state)
{
    (void)state;
    p2p_manifest m;
    char *err;
    assert_int_equal(parse(good, "greeter", &m, &err), 0);
    assert_null(err);
    assert_string_equal(m.name, "greeter");
    assert_string_equal(m.version, "1.2.3-beta.1+build.5");
    assert_int_equal(m.semver.major, 1);
    assert_int_equal(m.semver.minor, 2);
    assert_int_equal(m.semver.patch, 3);
    assert_string_equal(m.semver.pre, "beta.1");
    assert_int_equal(m.type, P2P_SVC_EXEC);
    assert_null(m.entry);
    assert_int_equal(m.n_command, 2);
    assert_string_equal(m.command[1], "main.py");
    assert_null(m.command[2]);
    assert_int_equal(m.n_methods, 2);
    assert_string_equal(m.methods[0].name, "hello");
    assert_int_equal(m.methods[0].read_only, 1);
    assert_string_equal(m.methods[0].params, "{name}");
    assert_string_equal(m.methods[1].description, "");
    assert_int_equal(m.methods[1].read_only, 0);
    assert_int_equal(m.n_dependencies, 1);
    assert_string_equal(m.roles[0], "worker");
    assert_string_equal(json_string_value(json_object_get(m.settings, "greeting")), "hi");
    assert_int_equal(m.call_timeout_ms, 2500);
    assert_int_equal(m.start_timeout_ms, P2P_MANIFEST_DEFAULT_START_MS);
    p2p__manifest_free(&m);
    p2p__manifest_free(&m); /* safe on a zeroed struct */
}

static void test_native_defaults(void **state)
{
    (void)state;
    p2p_manifest m;
    char *err;
    assert_int_equal(parse("{\"name\":\"kv\",\"version\":\"0.1.0\",\"type\":\"native\"}", "kv", &m, &err), 0);
    assert_string_equal(m.entry, "service.so");
    assert_null(m.command);
    assert_int_equal(m.n_methods, 0);
    assert_int_equal(m.n_roles, 0);
    assert_true(json_is_object(m.settings));
    assert_string_equal(m.description, "");
    p2p__manifest_free(&m);
}

/* Each bad document must be refused with a message naming the file and the key. */
static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *folder, *needle;
    } cases[] = {
        {"", "x", "empty file"},
        {"[1]", "x", "must be a JSON object"},
        {"{\"name\":\"x\"", "x", "not valid JSON"},
        {"{\"name\":\"x\",\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\"}", "x", "not valid JSON"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"verison\":\"1\"}", "x", "key 'verison': unknown key"},
        {"{\"version\":\"1.0.0\",\"type\":\"native\"}", "x", "key 'name': missing"},
        {"{\"name\":7,\"version\":\"1.0.0\",\"type\":\"native\"}", "x", "key 'name': must be a string"},
        {"{\"name\":\"Bad Name\",\"version\":\"1.0.0\",\"type\":\"native\"}", "x", "key 'name': 'Bad Name' is not"},
        {"{\"name\":\"y\",\"version\":\"1.0.0\",\"type\":\"native\"}", "x", "key 'name': 'y' differs from its folder 'x'"},
        {"{\"name\":\"system\",\"version\":\"1.0.0\",\"type\":\"native\"}", "system", "built-in"},
        {"{\"name\":\"deploy\",\"version\":\"1.0.0\",\"type\":\"native\"}", "deploy", "built-in"},
        {"{\"name\":\"x\",\"version\":\"1.0\",\"type\":\"native\"}", "x", "key 'version': '1.0' is not a semantic"},
        {"{\"name\":\"x\",\"version\":\"01.0.0\",\"type\":\"native\"}", "x", "key 'version'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0-\",\"type\":\"native\"}", "x", "key 'version'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0-01\",\"type\":\"native\"}", "x", "key 'version'"},
        {"{\"name\":\"x\",\"version\":1,\"type\":\"native\"}", "x", "key 'version': must be a string"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\"}", "x", "key 'type': missing"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"python\"}", "x", "key 'type': 'python'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"exec\"}", "x", "key 'command': missing"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"exec\",\"command\":[]}", "x", "key 'command': must name"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"exec\",\"command\":[\"\"]}", "x", "key 'command': entry 0"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"exec\",\"command\":\"a b\"}", "x", "key 'command': must be an array"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"command\":[\"a\"]}", "x", "key 'command': only for"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"exec\",\"command\":[\"a\"],\"entry\":\"a\"}", "x", "key 'entry': only for"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"entry\":\"../evil.so\"}", "x", "key 'entry'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":{}}", "x", "key 'methods': must be an array"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":[{\"name\":\"Hi\"}]}", "x", "key 'methods[0].name'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":[{\"name\":\"a\"},{\"name\":\"a\"}]}", "x", "listed twice"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":[{\"name\":\"shutdown\"}]}", "x", "reserved"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":[{\"name\":\"a\",\"ro\":1}]}", "x", "key 'methods[0].ro': unknown"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":[{\"name\":\"a\",\"read_only\":1}]}", "x", "key 'methods[0].read_only': must be true"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"methods\":[{\"name\":\"a\",\"description\":5}]}", "x", "key 'methods[0].description'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"dependencies\":[\"x\"]}", "x", "depend on itself"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"dependencies\":[\"a\",\"a\"]}", "x", "listed twice"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"roles\":[\"a b\"]}", "x", "key 'roles'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"settings\":[]}", "x", "key 'settings': must be an object"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"timeouts\":{\"call\":0}}", "x", "key 'timeouts.call'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"timeouts\":{\"boot\":1}}", "x", "key 'timeouts.boot'"},
        {"{\"name\":\"x\",\"version\":\"1.0.0\",\"type\":\"native\",\"description\":\"a\\u0000b\"}", "x", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p2p_manifest m;
        char *err;
        int rc = parse(cases[i].doc, cases[i].folder, &m, &err);
        if (rc != -EINVAL || !err || !strstr(err, cases[i].needle) || !strstr(err, "svc/x/manifest.json")) {
            print_error("case %zu: rc %d, message '%s', wanted '%s'\n", i, rc, err ? err : "(none)", cases[i].needle);
            fail();
        }
        assert_null(m.name); /* untouched */
        free(err);
    }
}

static void test_size_limit(void **state)
{
    (void)state;
    size_t n = P2P_MANIFEST_MAX_BYTES + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    p2p_manifest m;
    memset(&m, 0, sizeof m);
    char *err = NULL;
    assert_int_equal(p2p__manifest_parse(big, n, "x", "f", &m, &err), -EINVAL);
    assert_non_null(strstr(err, "larger than"));
    free(err);
    free(big);
}

static int cmp(const char *a, const char *b)
{
    p2p_semver x, y;
    assert_int_equal(p2p__semver_parse(a, &x), 0);
    assert_int_equal(p2p__semver_parse(b, &y), 0);
    return p2p__semver_cmp(&x, &y);
}

static void test_semver(void **state)
{
    (void)state;
    /* the precedence example of semver.org §11 */
    const char *order[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                           "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0"};
    size_t n = sizeof order / sizeof order[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int c = cmp(order[i], order[j]);
            assert_int_equal(c, i < j ? -1 : i > j ? 1 : 0);
        }
    assert_int_equal(cmp("1.0.0+a", "1.0.0+b"), 0);
    p2p_semver v;
    const char *bad[] = {"", "1", "1.0", "1.0.0.0", "v1.0.0", "1.0.0-", "1.0.0+", "1..0", "-1.0.0", "1.0.0-a..b",
                         "1.0.0 ", "18446744073709551616.0.0", "1.0.0-é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(p2p__semver_parse(bad[i], &v), -EINVAL);
    assert_int_equal(p2p__semver_parse("18446744073709551615.0.0", &v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_document), cmocka_unit_test(test_native_defaults),
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_semver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
