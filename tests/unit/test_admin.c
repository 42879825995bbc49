/*
 * test_admin.c — unit tests for the admin service's parsers (src/builtin/admin.c):
 * the admin_commands_file allow-list and the path check of admin/read_file and
 * write_file. Every malformed input is refused with a message naming it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "builtin/admin.h"

static int check(const char *doc, size_t *n, char **err)
{
    *err = NULL;
    return p2p__admin_check_commands(doc, strlen(doc), n, err);
}

static void test_good_allow_lists(void **state)
{
    (void)state;
    size_t n = 99;
    char *err = NULL;
    assert_int_equal(check("{}", &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(check("{\"df\": {\"argv\": [\"/usr/bin/df\", \"-h\"]}, \"up\": [\"/usr/bin/uptime\"],"
                           " \"j\": {\"argv\": [\"/usr/bin/journalctl\"], \"allow_args\": true}}",
                           &n, &err),
                     0);
    assert_int_equal(n, 3);
    assert_null(err);
}

static void test_bad_allow_lists(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *says;
    } cases[] = {
        {"", "line"},
        {"[]", "object"},
        {"{\"a\": 1}", "argv"},
        {"{\"a\": []}", "argv"},
        {"{\"a\": {\"argv\": \"/bin/ls\"}}", "argv"},
        {"{\"a\": [\"ls\"]}", "absolute path"},
        {"{\"a\": [\"\"]}", "absolute path"},
        {"{\"a\": [\"/bin/ls\", 3]}", "string"},
        {"{\"a\": {\"argv\": [\"/bin/ls\"], \"allow_args\": \"yes\"}}", "allow_args"},
        {"{\"a\": {\"argv\": [\"/bin/ls\"], \"shell\": true}}", "unknown member 'shell'"},
        {"{\"a b\": [\"/bin/ls\"]}", "name"},
        {"{\"\": [\"/bin/ls\"]}", "name"},
        {"{\"a;rm\": [\"/bin/ls\"]}", "name"},
        {"{\"a\": [\"/bin/ls\"], \"a\": [\"/bin/cat\"]}", "line"},
        {"{\"a\": [\"/bin/ls\"]", "line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 99;
        char *err = NULL;
        int r = check(cases[i].doc, &n, &err);
        if (r == 0 || !err || !strstr(err, cases[i].says))
            fail_msg("case %zu (%s): r=%d err=%s", i, cases[i].doc, r, err ? err : "(null)");
        assert_int_equal(n, 0);
        free(err);
    }
    /* a NUL inside an argument */
    static const char nul[] = "{\"a\": [\"/bin/ls\", \"x\\u0000y\"]}";
    size_t n = 0;
    char *err = NULL;
    assert_int_not_equal(p2p__admin_check_commands(nul, sizeof nul - 1, &n, &err), 0);
    free(err);
}

static void test_paths(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(p2p__admin_path_check("a", &why), 1);
    assert_int_equal(p2p__admin_path_check("conf/app.ini", &why), 2);
    assert_int_equal(p2p__admin_path_check(".hidden/..x/x..", &why), 3);
    static const char *const bad[] = {"", "/etc/passwd", "../x", "a/../b", "a/..", "..", ".", "./a", "a/./b",
                                      "a//b", "a/", "/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (p2p__admin_path_check(bad[i], &why) != -1 || !why)
            fail_msg("path '%s' was accepted", bad[i]);
    }
    char deep[200] = "";
    for (int i = 0; i < 33; i++)
        strcat(deep, "d/");
    strcat(deep, "f");
    assert_int_equal(p2p__admin_path_check(deep, &why), -1);
    char *longp = malloc(2000);
    memset(longp, 'a', 1999);
    longp[1999] = 0;
    assert_int_equal(p2p__admin_path_check(longp, &why), -1);
    assert_non_null(strstr(why, "too long"));
    free(longp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_allow_lists),
        cmocka_unit_test(test_bad_allow_lists),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
