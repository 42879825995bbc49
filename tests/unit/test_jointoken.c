/*
 * test_jointoken.c — unit tests for src/pki/jointoken.c: token format, uses,
 * expiry, check vs consume, revocation, the table limit, the persisted JSON form
 * (round trip, no secret in it, strict rejection of malformed documents) and
 * unknown tokens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/jointoken.h"

#define NOW 1700000000LL
#define HOUR 3600

static char *create(jointoken_table *t, int64_t now, int64_t ttl, unsigned uses)
{
    char *tok = NULL;
    assert_int_equal(jointoken_create(t, now, ttl, uses, &tok), 0);
    assert_non_null(tok);
    return tok;
}

static void test_format(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *a = create(t, NOW, HOUR, 1), *b = create(t, NOW, HOUR, 1);
    assert_int_equal(strlen(a), JOINTOKEN_LEN);
    assert_memory_equal(a, "p2pj_", 5);
    for (size_t i = 5; i < JOINTOKEN_LEN; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
    assert_string_not_equal(a, b);
    assert_int_equal(jointoken_count(t), 2);

    /* the id is the first 8 hex digits of SHA-256(token) */
    unsigned char h[32];
    unsigned hl = 0;
    EVP_Digest(a, strlen(a), h, &hl, EVP_sha256(), NULL);
    char want[9], id[JOINTOKEN_ID_LEN + 1];
    snprintf(want, sizeof(want), "%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
    assert_int_equal(jointoken_token_id(a, id), 0);
    assert_string_equal(id, want);
    assert_int_equal(jointoken_token_id(NULL, id), -EINVAL);

    jointoken_secret_free(a);
    jointoken_secret_free(b);
    jointoken_secret_free(NULL);
    jointoken_table_free(t);
    jointoken_table_free(NULL);
}

static void test_uses(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *once = create(t, NOW, HOUR, 1), *thrice = create(t, NOW, HOUR, 3);
    assert_int_equal(jointoken_consume(t, once, NOW + 1), 0);
    assert_int_equal(jointoken_consume(t, once, NOW + 2), -EACCES);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jointoken_check(t, thrice, NOW + 1), 0); /* check takes no use */
        assert_int_equal(jointoken_consume(t, thrice, NOW + 1), 0);
    }
    assert_int_equal(jointoken_check(t, thrice, NOW + 1), -EACCES);
    assert_int_equal(jointoken_consume(t, thrice, NOW + 1), -EACCES);

    /* used-up tokens stay listed (uses_left 0) until they expire */
    json_t *l = jointoken_list(t, NOW + 5);
    assert_int_equal(json_array_size(l), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(l, i);
        assert_int_equal(json_object_size(e), 4);
        assert_int_equal(json_integer_value(json_object_get(e, "uses_left")), 0);
        assert_int_equal(json_integer_value(json_object_get(e, "created_at")), NOW);
        assert_int_equal(json_integer_value(json_object_get(e, "expires_at")), NOW + HOUR);
        assert_int_equal(strlen(json_string_value(json_object_get(e, "id"))), JOINTOKEN_ID_LEN);
    }
    json_decref(l);
    jointoken_secret_free(once);
    jointoken_secret_free(thrice);
    jointoken_table_free(t);
}

static void test_expiry(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *tok = create(t, NOW, 60, 10), *later = create(t, NOW, 2 * HOUR, 10);
    assert_int_equal(jointoken_consume(t, tok, NOW + 59), 0);
    assert_int_equal(jointoken_check(t, tok, NOW + 60), -EACCES);
    assert_int_equal(jointoken_consume(t, tok, NOW + 60), -EACCES);
    /* the consume above purged the expired entry */
    assert_int_equal(jointoken_count(t), 1);
    json_t *l = jointoken_list(t, NOW + 60);
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);
    l = jointoken_list(t, NOW + 2 * HOUR); /* list hides expired entries without purging */
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    assert_int_equal(jointoken_count(t), 1);
    assert_int_equal(jointoken_purge(t, NOW + 2 * HOUR), 1);
    assert_int_equal(jointoken_count(t), 0);
    assert_int_equal(jointoken_consume(t, later, NOW + 2 * HOUR), -EACCES);
    jointoken_secret_free(tok);
    jointoken_secret_free(later);
    jointoken_table_free(t);
}

static void test_revoke(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *a = create(t, NOW, HOUR, 5), *b = create(t, NOW, HOUR, 5);
    char id[JOINTOKEN_ID_LEN + 1];
    assert_int_equal(jointoken_token_id(a, id), 0);
    json_t *l = jointoken_list(t, NOW);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "id")), id);
    json_decref(l);
    assert_int_equal(jointoken_revoke(t, id), 0);
    assert_int_equal(jointoken_revoke(t, id), -ENOENT);
    assert_int_equal(jointoken_consume(t, a, NOW), -EACCES);
    assert_int_equal(jointoken_consume(t, b, NOW), 0);
    assert_int_equal(jointoken_revoke(t, "zzzzzzzz"), -ENOENT);
    assert_int_equal(jointoken_revoke(t, "abc"), -ENOENT);
    assert_int_equal(jointoken_revoke(t, NULL), -ENOENT);
    assert_int_equal(jointoken_count(t), 1);
    jointoken_secret_free(a);
    jointoken_secret_free(b);
    jointoken_table_free(t);
}

static void test_unknown_token(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *tok = create(t, NOW, HOUR, 5);
    char other[JOINTOKEN_LEN + 1];
    memcpy(other, tok, sizeof(other));
    other[JOINTOKEN_LEN - 1] = other[JOINTOKEN_LEN - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(jointoken_consume(t, other, NOW), -EACCES);
    assert_int_equal(jointoken_consume(t, "", NOW), -EACCES);
    assert_int_equal(jointoken_consume(t, "p2pj_", NOW), -EACCES);
    assert_int_equal(jointoken_consume(t, NULL, NOW), -EACCES);
    assert_int_equal(jointoken_consume(NULL, tok, NOW), -EACCES);
    char *huge = malloc(100000);
    memset(huge, 'a', 99999);
    huge[99999] = '\0';
    assert_int_equal(jointoken_consume(t, huge, NOW), -EACCES);
    free(huge);
    /* the prefix of a valid token, and the token with a suffix */
    char longer[JOINTOKEN_LEN + 2];
    snprintf(longer, sizeof(longer), "%sx", tok);
    assert_int_equal(jointoken_consume(t, longer, NOW), -EACCES);
    tok[JOINTOKEN_LEN - 1] = '\0';
    assert_int_equal(jointoken_consume(t, tok, NOW), -EACCES);
    /* nothing was used up by the failures */
    json_t *l = jointoken_list(t, NOW);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(l, 0), "uses_left")), 5);
    json_decref(l);
    jointoken_secret_free(tok);
    jointoken_table_free(t);
}

static void test_create_args_and_limit(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *tok = NULL;
    assert_int_equal(jointoken_create(t, NOW, 0, 1, &tok), -EINVAL);
    assert_int_equal(jointoken_create(t, NOW, JOINTOKEN_MAX_TTL_S + 1, 1, &tok), -EINVAL);
    assert_int_equal(jointoken_create(t, NOW, HOUR, 0, &tok), -EINVAL);
    assert_int_equal(jointoken_create(t, NOW, HOUR, JOINTOKEN_MAX_USES + 1, &tok), -EINVAL);
    assert_int_equal(jointoken_create(t, -1, HOUR, 1, &tok), -EINVAL);
    assert_int_equal(jointoken_create(t, JOINTOKEN_MAX_TIME, HOUR, 1, &tok), -EINVAL);
    assert_int_equal(jointoken_create(NULL, NOW, HOUR, 1, &tok), -EINVAL);
    assert_int_equal(jointoken_create(t, NOW, HOUR, 1, NULL), -EINVAL);
    assert_null(tok);

    for (int i = 0; i < JOINTOKEN_MAX_ENTRIES; i++) {
        assert_int_equal(jointoken_create(t, NOW, 10, 1, &tok), 0);
        jointoken_secret_free(tok);
        tok = NULL;
    }
    assert_int_equal(jointoken_create(t, NOW, 10, 1, &tok), -ENOSPC);
    assert_null(tok);
    /* once they expire, create purges them and has room again */
    assert_int_equal(jointoken_create(t, NOW + 10, 10, 1, &tok), 0);
    assert_int_equal(jointoken_count(t), 1);
    jointoken_secret_free(tok);
    jointoken_table_free(t);
}

static void test_json_round_trip(void **state)
{
    jointoken_table *t = jointoken_table_new();
    char *a = create(t, NOW, HOUR, 2), *b = create(t, NOW + 5, 2 * HOUR, 1);
    assert_int_equal(jointoken_consume(t, a, NOW + 10), 0);
    json_t *doc = jointoken_table_to_json(t);
    assert_non_null(doc);
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_null(strstr(text, a)); /* only hashes are stored */
    assert_null(strstr(text, b));
    assert_null(strstr(text, a + 5));
    free(text);

    jointoken_table *u = NULL;
    char *err = NULL;
    assert_int_equal(jointoken_table_from_json(doc, &u, &err), 0);
    assert_null(err);
    json_t *again = jointoken_table_to_json(u);
    assert_true(json_equal(doc, again));
    json_decref(again);
    assert_int_equal(jointoken_consume(u, a, NOW + 20), 0);
    assert_int_equal(jointoken_consume(u, a, NOW + 20), -EACCES); /* the loaded count was 1 */
    assert_int_equal(jointoken_consume(u, b, NOW + 20), 0);
    jointoken_table_free(u);

    /* the empty table */
    jointoken_table *e = jointoken_table_new(), *e2 = NULL;
    json_t *edoc = jointoken_table_to_json(e);
    assert_int_equal(jointoken_table_from_json(edoc, &e2, NULL), 0);
    assert_int_equal(jointoken_count(e2), 0);
    json_decref(edoc);
    jointoken_table_free(e);
    jointoken_table_free(e2);

    json_decref(doc);
    jointoken_secret_free(a);
    jointoken_secret_free(b);
    jointoken_table_free(t);
}

#define H64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define H64B "00112233ffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

static void test_json_malformed(void **state)
{
    static const struct {
        const char *doc;
        const char *needle;
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"tokens\":[]}", "version"},
        {"{\"version\":2,\"tokens\":[]}", "version"},
        {"{\"version\":\"1\",\"tokens\":[]}", "version"},
        {"{\"version\":1}", "'tokens'"},
        {"{\"version\":1,\"tokens\":{}}", "'tokens'"},
        {"{\"version\":1,\"tokens\":[],\"extra\":0}", "unknown member"},
        {"{\"version\":1,\"tokens\":[1]}", "tokens[0]: must be an object"},
        {"{\"version\":1,\"tokens\":[{\"created_at\":1,\"expires_at\":2,\"uses_left\":1}]}", "tokens[0].hash: missing"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"abc\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1}]}",
         "tokens[0].hash"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "0\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1}]}",
         "tokens[0].hash"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\","
         "\"created_at\":1,\"expires_at\":2,\"uses_left\":1}]}",
         "lowercase hex"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"expires_at\":2,\"uses_left\":1}]}",
         "tokens[0].created_at: missing"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":-1,\"expires_at\":2,\"uses_left\":1}]}",
         "tokens[0].created_at"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1.5,\"expires_at\":2,\"uses_left\":1}]}",
         "tokens[0].created_at"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":5,\"expires_at\":5,\"uses_left\":1}]}",
         "tokens[0].expires_at"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":5,\"expires_at\":99999999,\"uses_left\":1}]}",
         "more than"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":-1}]}",
         "tokens[0].uses_left"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":true}]}",
         "tokens[0].uses_left"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2}]}",
         "tokens[0].uses_left: missing"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1,"
         "\"replace\":\"bad id\"}]}",
         "tokens[0].replace: must be a node id"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1,"
         "\"replace\":7}]}",
         "tokens[0].replace"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1,"
         "\"replace\":\"\"}]}",
         "tokens[0].replace"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1,"
         "\"token\":\"p2pj_x\"}]}",
         "tokens[0]: unknown member"},
        {"{\"version\":1,\"tokens\":[{\"hash\":\"" H64 "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1},"
         "{\"hash\":\"" H64B "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":1}]}",
         "tokens[1]: id already used"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_error_t je;
        json_t *doc = json_loads(cases[i].doc, 0, &je);
        if (!doc)
            fail_msg("case %zu is not JSON: %s", i, je.text);
        jointoken_table *t = NULL;
        char *err = NULL;
        int rc = jointoken_table_from_json(doc, &t, &err);
        if (rc != -EINVAL || !err || !strstr(err, cases[i].needle))
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err ? err : "(none)", cases[i].needle);
        assert_null(t);
        free(err);
        json_decref(doc);
    }
    jointoken_table *t = NULL;
    assert_int_equal(jointoken_table_from_json(NULL, &t, NULL), -EINVAL);
    /* a well-formed hand-written document loads */
    json_t *ok = json_loads("{\"version\":1,\"tokens\":[{\"hash\":\"" H64
                            "\",\"created_at\":1,\"expires_at\":2,\"uses_left\":0}]}",
                            0, NULL);
    assert_int_equal(jointoken_table_from_json(ok, &t, NULL), 0);
    assert_int_equal(jointoken_count(t), 1);
    assert_int_equal(jointoken_revoke(t, "00112233"), 0);
    jointoken_table_free(t);
    json_decref(ok);
}

/* Replacement tokens (issue 9): bound to one node id, one use, kept across a save. */
static void test_replacement(void **state)
{
    (void)state;
    jointoken_table *t = jointoken_table_new();
    char *plain = create(t, NOW, HOUR, 3), *rep = NULL;
    assert_int_equal(jointoken_create_replacement(t, NOW, HOUR, "worker-2", &rep), 0);
    assert_null(jointoken_replaces(t, plain, NOW));
    assert_string_equal(jointoken_replaces(t, rep, NOW), "worker-2");
    assert_null(jointoken_replaces(t, rep, NOW + HOUR)); /* expired */
    assert_null(jointoken_replaces(t, "p2pj_unknown", NOW));
    assert_null(jointoken_replaces(NULL, rep, NOW));
    /* listed with the id it replaces; persisted and loaded with it */
    json_t *list = jointoken_list(t, NOW);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1), "replaces")), "worker-2");
    assert_null(json_object_get(json_array_get(list, 0), "replaces"));
    json_decref(list);
    json_t *doc = jointoken_table_to_json(t);
    jointoken_table *again = NULL;
    assert_int_equal(jointoken_table_from_json(doc, &again, NULL), 0);
    json_decref(doc);
    assert_string_equal(jointoken_replaces(again, rep, NOW), "worker-2");
    /* one use */
    assert_int_equal(jointoken_consume(again, rep, NOW), 0);
    assert_null(jointoken_replaces(again, rep, NOW));
    assert_int_equal(jointoken_check(again, rep, NOW), -EACCES);
    jointoken_table_free(again);
    /* arguments */
    char *x = NULL;
    assert_int_equal(jointoken_create_replacement(t, NOW, HOUR, "bad id", &x), -EINVAL);
    assert_int_equal(jointoken_create_replacement(t, NOW, HOUR, "", &x), -EINVAL);
    assert_int_equal(jointoken_create_replacement(t, NOW, HOUR, NULL, &x), -EINVAL);
    assert_int_equal(jointoken_create_replacement(t, NOW, 0, "worker-2", &x), -EINVAL);
    assert_null(x);
    jointoken_secret_free(plain);
    jointoken_secret_free(rep);
    jointoken_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),          cmocka_unit_test(test_uses),
        cmocka_unit_test(test_expiry),          cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_unknown_token),   cmocka_unit_test(test_create_args_and_limit),
        cmocka_unit_test(test_json_round_trip), cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_replacement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
