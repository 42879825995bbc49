/*
 * test_registry.c — unit tests for src/pki/registry.c: enrolling an id once,
 * renewal (the superseded certificate remembered, not revoked), replacement
 * (current and previous certificates revoked until they expire), pruning, the
 * limits, and the persisted JSON form (round trip, strict rejection of
 * malformed documents).
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

#include "pki/registry.h"

#define NOW 1700000000LL
#define DAY 86400

static registry_cert cert(int n, int64_t not_after)
{
    registry_cert c = {.not_after = not_after};
    for (int i = 0; i < PKI_FINGERPRINT_LEN; i++)
        c.fingerprint[i] = "0123456789abcdef"[(n + i) % 16];
    c.fingerprint[0] = "0123456789abcdef"[n % 16];
    c.fingerprint[1] = "0123456789abcdef"[(n / 16) % 16];
    snprintf(c.serial, sizeof c.serial, "01%02x", n & 0xff);
    return c;
}

static void test_enroll_once(void **state)
{
    (void)state;
    registry *r = registry_new();
    registry_cert a = cert(1, NOW + DAY), b = cert(2, NOW + DAY);
    assert_int_equal(registry_enroll(r, "worker-1", "worker", &a, NOW), 0);
    assert_int_equal(registry_enroll(r, "worker-1", "worker", &b, NOW), -EEXIST);
    const registry_node *n = registry_find(r, "worker-1");
    assert_non_null(n);
    assert_string_equal(n->role, "worker");
    assert_string_equal(n->cert.fingerprint, a.fingerprint);
    assert_int_equal(n->issued_at, NOW);
    assert_false(n->replaced);
    assert_null(registry_find(r, "worker-2"));
    assert_null(registry_find(r, NULL));
    assert_int_equal(registry_count(r), 1);
    /* arguments */
    registry_cert bad = a;
    bad.fingerprint[3] = 'G';
    assert_int_equal(registry_enroll(r, "w", "worker", &bad, NOW), -EINVAL);
    bad = a;
    bad.serial[0] = '\0';
    assert_int_equal(registry_enroll(r, "w", "worker", &bad, NOW), -EINVAL);
    assert_int_equal(registry_enroll(r, "bad id", "worker", &a, NOW), -EINVAL);
    assert_int_equal(registry_enroll(r, "w", "", &a, NOW), -EINVAL);
    assert_int_equal(registry_enroll(r, "w", "worker", NULL, NOW), -EINVAL);
    assert_int_equal(registry_enroll(r, "w", "worker", &a, -1), -EINVAL);
    assert_int_equal(registry_enroll(NULL, "w", "worker", &a, NOW), -EINVAL);
    assert_int_equal(registry_count(r), 1);
    registry_free(r);
}

static void test_renew_and_replace(void **state)
{
    (void)state;
    registry *r = registry_new();
    registry_cert c1 = cert(1, NOW + DAY), c2 = cert(2, NOW + 2 * DAY), c3 = cert(3, NOW + 3 * DAY),
                  c4 = cert(4, NOW + 4 * DAY);
    assert_int_equal(registry_enroll(r, "worker-2", "worker", &c1, NOW), 0);
    /* renewal: the new certificate is current; the old one is not revoked */
    assert_int_equal(registry_renew(r, "worker-2", "other", &c2, NOW + 10), 0);
    const registry_node *n = registry_find(r, "worker-2");
    assert_string_equal(n->cert.fingerprint, c2.fingerprint);
    assert_string_equal(n->role, "worker"); /* renewal keeps the role */
    assert_int_equal(n->renewed_at, NOW + 10);
    assert_int_equal(n->n_previous, 1);
    assert_false(registry_is_revoked(r, c1.fingerprint));
    /* the same certificate again: nothing superseded */
    assert_int_equal(registry_renew(r, "worker-2", "worker", &c2, NOW + 11), 0);
    assert_int_equal(registry_find(r, "worker-2")->n_previous, 1);
    /* replacement: the current and the previous certificate are revoked */
    size_t nrev = 0;
    assert_int_equal(registry_replace(r, "worker-2", "worker", &c3, NOW + 20, &nrev), 0);
    assert_int_equal(nrev, 2);
    assert_true(registry_is_revoked(r, c1.fingerprint));
    assert_true(registry_is_revoked(r, c2.fingerprint));
    assert_false(registry_is_revoked(r, c3.fingerprint));
    n = registry_find(r, "worker-2");
    assert_true(n->replaced);
    assert_int_equal(n->n_previous, 0);
    assert_string_equal(n->cert.fingerprint, c3.fingerprint);
    json_t *list = registry_revoked_json(r);
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "node_id")), "worker-2");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "expires_at")), NOW + 2 * DAY);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 1), "expires_at")), NOW + DAY);
    json_decref(list);
    /* pruned once expired: c1 after a day, c2 after two */
    assert_int_equal(registry_prune(r, NOW + DAY), 1);
    assert_false(registry_is_revoked(r, c1.fingerprint));
    assert_true(registry_is_revoked(r, c2.fingerprint));
    /* an expired current certificate is not listed on replacement */
    assert_int_equal(registry_replace(r, "worker-2", "worker", &c4, NOW + 5 * DAY, &nrev), 0);
    assert_int_equal(nrev, 0);
    assert_false(registry_is_revoked(r, c3.fingerprint));
    /* replacing an id that was never enrolled enters it */
    assert_int_equal(registry_replace(r, "worker-9", "worker", &c1, NOW, &nrev), 0);
    assert_int_equal(nrev, 0);
    assert_non_null(registry_find(r, "worker-9"));
    /* renewal of an id from before the registry enters it */
    assert_int_equal(registry_renew(r, "old-timer", "worker", &c2, NOW), 0);
    assert_string_equal(registry_find(r, "old-timer")->role, "worker");
    registry_free(r);
}

static void test_previous_is_bounded(void **state)
{
    (void)state;
    registry *r = registry_new();
    registry_cert c = cert(0, NOW + 1000);
    assert_int_equal(registry_enroll(r, "w", "worker", &c, NOW), 0);
    for (int i = 1; i <= 3 * REGISTRY_MAX_PREVIOUS; i++) {
        c = cert(i, NOW + 1000 + i);
        assert_int_equal(registry_renew(r, "w", "worker", &c, NOW + i), 0);
    }
    const registry_node *n = registry_find(r, "w");
    assert_int_equal(n->n_previous, REGISTRY_MAX_PREVIOUS);
    /* the ones kept are the latest (the furthest from expiry) */
    for (size_t k = 0; k < n->n_previous; k++)
        assert_true(n->previous[k].expires_at >= NOW + 1000 + 2 * REGISTRY_MAX_PREVIOUS);
    size_t nrev = 0;
    c = cert(200, NOW + 5000);
    assert_int_equal(registry_replace(r, "w", "worker", &c, NOW + 100, &nrev), 0);
    assert_int_equal(nrev, REGISTRY_MAX_PREVIOUS + 1);
    registry_free(r);
}

static void test_json_round_trip(void **state)
{
    (void)state;
    registry *r = registry_new();
    registry_cert c1 = cert(1, NOW + DAY), c2 = cert(2, NOW + DAY), c3 = cert(3, NOW + DAY);
    assert_int_equal(registry_enroll(r, "coord", "coordinator", &c1, NOW), 0);
    assert_int_equal(registry_enroll(r, "worker-1", "worker", &c2, NOW), 0);
    assert_int_equal(registry_replace(r, "worker-1", "worker", &c3, NOW + 5, NULL), 0);
    json_t *doc = registry_to_json(r);
    registry *back = NULL;
    char *err = NULL;
    assert_int_equal(registry_from_json(doc, &back, &err), 0);
    assert_null(err);
    json_t *doc2 = registry_to_json(back);
    assert_true(json_equal(doc, doc2));
    assert_true(registry_is_revoked(back, c2.fingerprint));
    assert_true(registry_find(back, "worker-1")->replaced);
    assert_string_equal(registry_find(back, "coord")->role, "coordinator");
    json_decref(doc);
    json_decref(doc2);
    registry_free(back);
    registry_free(r);
}

#define FP "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define NODE(extra)                                                                                                    \
    "{\"id\":\"w\",\"role\":\"worker\",\"fingerprint\":\"" FP "\",\"serial\":\"01ab\",\"not_after\":5,"               \
    "\"issued_at\":1,\"renewed_at\":2,\"replaced\":false,\"previous\":[]" extra "}"

static void test_json_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        const char *needle;
    } cases[] = {
        {"[]", "expected {version, nodes, revoked}"},
        {"{\"version\":1,\"nodes\":[],\"revoked\":[],\"x\":1}", "expected"},
        {"{\"version\":2,\"nodes\":[],\"revoked\":[]}", "version must be 1"},
        {"{\"version\":1,\"nodes\":{},\"revoked\":[]}", "nodes must be an array"},
        {"{\"version\":1,\"nodes\":[],\"revoked\":0}", "revoked must be an array"},
        {"{\"version\":1,\"nodes\":[1],\"revoked\":[]}", "nodes[0]: must be an object"},
        {"{\"version\":1,\"nodes\":[" NODE(",\"x\":1") "],\"revoked\":[]}", "nodes[0]: must be an object"},
        {"{\"version\":1,\"nodes\":[" NODE("") "," NODE("") "],\"revoked\":[]}", "nodes[1].id: 'w' is listed twice"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"bad id\"}],\"revoked\":[]}", "nodes[0].id"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"w\",\"role\":\"\"}],\"revoked\":[]}", "nodes[0].role"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"w\",\"role\":\"worker\",\"fingerprint\":\"ABC\"}],\"revoked\":[]}",
         "nodes[0].fingerprint"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"w\",\"role\":\"worker\",\"fingerprint\":\"" FP "\",\"serial\":\"\"}],"
         "\"revoked\":[]}",
         "nodes[0].serial"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"w\",\"role\":\"worker\",\"fingerprint\":\"" FP "\",\"serial\":\"01\","
         "\"not_after\":-1}],\"revoked\":[]}",
         "must be times"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"w\",\"role\":\"worker\",\"fingerprint\":\"" FP "\",\"serial\":\"01\","
         "\"not_after\":1,\"issued_at\":1,\"renewed_at\":1,\"replaced\":0,\"previous\":[]}],\"revoked\":[]}",
         "nodes[0].replaced"},
        {"{\"version\":1,\"nodes\":[{\"id\":\"w\",\"role\":\"worker\",\"fingerprint\":\"" FP "\",\"serial\":\"01\","
         "\"not_after\":1,\"issued_at\":1,\"renewed_at\":1,\"replaced\":true,\"previous\":[{}]}],\"revoked\":[]}",
         "nodes[0].previous[0]"},
        {"{\"version\":1,\"nodes\":[],\"revoked\":[{\"fingerprint\":\"" FP "\",\"node_id\":\"w\",\"revoked_at\":1}]}",
         "revoked[0]"},
        {"{\"version\":1,\"nodes\":[],\"revoked\":[{\"fingerprint\":\"" FP "\",\"node_id\":\"w\",\"revoked_at\":1,"
         "\"expires_at\":2},{\"fingerprint\":\"" FP "\",\"node_id\":\"w\",\"revoked_at\":1,\"expires_at\":2}]}",
         "revoked[1]: the fingerprint is listed twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_error_t je;
        json_t *doc = json_loads(cases[i].doc, 0, &je);
        if (!doc)
            fail_msg("case %zu does not parse: %s", i, je.text);
        registry *r = NULL;
        char *err = NULL;
        int rc = registry_from_json(doc, &r, &err);
        if (rc != -EINVAL || r || !err || !strstr(err, cases[i].needle))
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err ? err : "(none)", cases[i].needle);
        free(err);
        json_decref(doc);
    }
    /* a well-formed one is accepted */
    json_t *doc = json_loads("{\"version\":1,\"nodes\":[" NODE("") "],\"revoked\":[]}", 0, NULL);
    registry *r = NULL;
    assert_int_equal(registry_from_json(doc, &r, NULL), 0);
    assert_non_null(registry_find(r, "w"));
    registry_free(r);
    assert_int_equal(registry_from_json(doc, NULL, NULL), -EINVAL);
    json_decref(doc);
    assert_int_equal(registry_from_json(NULL, &r, NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enroll_once),     cmocka_unit_test(test_renew_and_replace),
        cmocka_unit_test(test_previous_is_bounded), cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
