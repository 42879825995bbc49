/*
 * test_jsonrpc.c — JSON-RPC decoding and dispatch: every error code, batches,
 * the empty batch, notifications, id echo for every id type, the original
 * framework's request shape, and asynchronous completion.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "rpc/jsonrpc.h"
#include "rpc/registry.h"

typedef struct fixture {
    uv_loop_t loop;
    p2p_ctx *ctx;
    json_t *response;
    int done_calls;
    p2p_call *parked; /* an asynchronous call waiting for completion */
} fixture;

static void m_echo(p2p_call *call, json_t *params, void *udata)
{
    (void)udata;
    p2p_call_reply(call, params ? json_incref(params) : NULL);
}

static void m_bad_params(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    (void)udata;
    p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: x must be a number", json_string("x"));
}

static void m_internal(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    (void)udata;
    p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "Internal error", NULL);
}

static void m_async(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    fixture *f = udata;
    f->parked = call;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    p2p_config cfg;
    p2p_config_defaults(&cfg, 1);
    char *err = NULL;
    assert_int_equal(p2p_config_finalize(&cfg, &err), 0);
    f->ctx = p2p__ctx_new(&cfg, &f->loop);
    f->ctx->log_level = P2P_LOG_ERROR;
    p2p_service_desc sd = {"t", "1.0", "test", 0};
    assert_int_equal(p2p_service_register(f->ctx, &sd), 0);
    p2p_method_desc md[] = {
        {"echo", "", "", 0, m_echo, f},
        {"bad_params", "", "", 0, m_bad_params, f},
        {"internal", "", "", 0, m_internal, f},
        {"async", "", "", 0, m_async, f},
    };
    for (size_t i = 0; i < sizeof(md) / sizeof(md[0]); i++)
        assert_int_equal(p2p_method_register(f->ctx, "t", &md[i]), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    json_decref(f->response);
    p2p__ctx_free(f->ctx);
    uv_loop_close(&f->loop);
    free(f);
    return 0;
}

static void on_done(json_t *response, void *arg)
{
    fixture *f = arg;
    f->done_calls++;
    json_decref(f->response);
    f->response = response;
}

/* Decodes and executes `text`; returns the response (borrowed from the fixture). */
static json_t *run(fixture *f, const char *text)
{
    jsonrpc_msg msg;
    jsonrpc_decode(text, strlen(text), &msg);
    json_decref(f->response);
    f->response = NULL;
    f->done_calls = 0;
    jsonrpc_execute(f->ctx, &msg, on_done, f);
    return f->response;
}

static void assert_error(json_t *resp, int code, json_t *expected_id)
{
    assert_non_null(resp);
    assert_true(json_is_object(resp));
    assert_string_equal(json_string_value(json_object_get(resp, "jsonrpc")), "2.0");
    json_t *err = json_object_get(resp, "error");
    assert_non_null(err);
    assert_int_equal(json_integer_value(json_object_get(err, "code")), code);
    assert_true(json_is_string(json_object_get(err, "message")));
    assert_null(json_object_get(resp, "result"));
    json_t *id = json_object_get(resp, "id");
    assert_non_null(id); /* always present, null when unknown */
    assert_true(json_equal(id, expected_id ? expected_id : json_null()));
}

static void test_parse_error(void **state)
{
    fixture *f = *state;
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":"), P2P_RPC_PARSE_ERROR, NULL);
    assert_error(run(f, ""), P2P_RPC_PARSE_ERROR, NULL);
    assert_error(run(f, "[{\"method\":\"t/echo\",\"id\":1},"), P2P_RPC_PARSE_ERROR, NULL);
    assert_int_equal(f->done_calls, 1);
}

static void test_invalid_request(void **state)
{
    fixture *f = *state;
    json_t *one = json_integer(1);
    assert_error(run(f, "42"), P2P_RPC_INVALID_REQUEST, NULL);
    assert_error(run(f, "\"x\""), P2P_RPC_INVALID_REQUEST, NULL);
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"id\":1}"), P2P_RPC_INVALID_REQUEST, one);
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":5,\"id\":1}"), P2P_RPC_INVALID_REQUEST, one);
    assert_error(run(f, "{\"jsonrpc\":\"1.0\",\"method\":\"t/echo\",\"id\":1}"), P2P_RPC_INVALID_REQUEST, one);
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":3,\"id\":1}"),
                 P2P_RPC_INVALID_REQUEST, one);
    /* an id that is neither string, number nor null cannot be echoed: null */
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"id\":{\"a\":1}}"), P2P_RPC_INVALID_REQUEST,
                 NULL);
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"id\":[1]}"), P2P_RPC_INVALID_REQUEST, NULL);
    json_decref(one);
}

static void test_empty_batch(void **state)
{
    fixture *f = *state;
    assert_error(run(f, "[]"), P2P_RPC_INVALID_REQUEST, NULL);
}

static void test_batch_of_invalid(void **state)
{
    fixture *f = *state;
    json_t *r = run(f, "[1,2,3]");
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 3);
    for (size_t i = 0; i < 3; i++)
        assert_error(json_array_get(r, i), P2P_RPC_INVALID_REQUEST, NULL);
}

static void test_batch_too_large(void **state)
{
    fixture *f = *state;
    size_t n = JSONRPC_MAX_BATCH + 1;
    char *buf = malloc(n * 48 + 8);
    char *p = buf;
    *p++ = '[';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s{\"method\":\"t/echo\",\"id\":%zu}", i ? "," : "", i);
    *p++ = ']';
    *p = '\0';
    assert_error(run(f, buf), P2P_RPC_INVALID_REQUEST, NULL);
    free(buf);
}

static void test_method_not_found(void **state)
{
    fixture *f = *state;
    json_t *id = json_string("abc");
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/nope\",\"id\":\"abc\"}"), P2P_RPC_METHOD_NOT_FOUND, id);
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"\",\"id\":\"abc\"}"), P2P_RPC_METHOD_NOT_FOUND, id);
    json_decref(id);
}

static void test_invalid_params_and_internal(void **state)
{
    fixture *f = *state;
    json_t *id = json_integer(9);
    json_t *r = run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/bad_params\",\"params\":{\"x\":\"y\"},\"id\":9}");
    assert_error(r, P2P_RPC_INVALID_PARAMS, id);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "error"), "data")), "x");
    assert_error(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/internal\",\"id\":9}"), P2P_RPC_INTERNAL_ERROR, id);
    json_decref(id);
    p2p_method *m = p2p__registry_find(f->ctx->registry, "t/bad_params", 12);
    assert_int_equal(m->stats.calls, 1);
    assert_int_equal(m->stats.errors, 1);
}

static void test_id_echo(void **state)
{
    fixture *f = *state;
    const char *cases[] = {
        "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[1],\"id\":\"s-1\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[1],\"id\":17}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[1],\"id\":-3.5}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[1],\"id\":null}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[1],\"id\":0}",
    };
    json_t *ids[] = {json_string("s-1"), json_integer(17), json_real(-3.5), json_null(), json_integer(0)};
    for (size_t i = 0; i < 5; i++) {
        json_t *r = run(f, cases[i]);
        assert_non_null(r);
        assert_true(json_equal(json_object_get(r, "id"), ids[i]));
        assert_non_null(json_object_get(r, "result"));
        assert_null(json_object_get(r, "error"));
        json_decref(ids[i]);
    }
}

static void test_original_shape(void **state)
{
    fixture *f = *state;
    json_t *r = run(f, "{\"method\":\"t/echo\",\"params\":{\"a\":1},\"id\":\"req-1\"}");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "req-1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "result"), "a")), 1);
    /* the original's clients send "params": null */
    r = run(f, "{\"method\":\"t/echo\",\"params\":null,\"id\":2}");
    assert_true(json_is_null(json_object_get(r, "result")));
}

static void test_notifications(void **state)
{
    fixture *f = *state;
    assert_null(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[1]}"));
    assert_int_equal(f->done_calls, 1);
    /* a notification to an unknown method is not answered either */
    assert_null(run(f, "{\"jsonrpc\":\"2.0\",\"method\":\"t/nope\"}"));
    /* an all-notification batch has no response */
    assert_null(run(f, "[{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\"},{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\"}]"));
    p2p_method *m = p2p__registry_find(f->ctx->registry, "t/echo", 6);
    assert_int_equal(m->stats.calls, 3); /* notifications still run */
}

static void test_mixed_batch_order(void **state)
{
    fixture *f = *state;
    json_t *r = run(f, "[{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[\"a\"],\"id\":1},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[\"n\"]},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"t/nope\",\"id\":2},"
                       "7,"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[\"c\"],\"id\":3}]");
    assert_true(json_is_array(r));
    assert_int_equal(json_array_size(r), 4); /* the notification is omitted */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r, 0), "id")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(json_array_get(r, 0), "result"), 0)), "a");
    json_t *two = json_integer(2);
    assert_error(json_array_get(r, 1), P2P_RPC_METHOD_NOT_FOUND, two);
    json_decref(two);
    assert_error(json_array_get(r, 2), P2P_RPC_INVALID_REQUEST, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(r, 3), "id")), 3);
}

static void test_async_completion(void **state)
{
    fixture *f = *state;
    json_t *r = run(f, "[{\"jsonrpc\":\"2.0\",\"method\":\"t/async\",\"id\":1},"
                       "{\"jsonrpc\":\"2.0\",\"method\":\"t/echo\",\"params\":[2],\"id\":2}]");
    assert_null(r);
    assert_int_equal(f->done_calls, 0); /* waits for the parked call */
    assert_non_null(f->parked);
    assert_int_equal(jsonrpc_inflight(f->ctx), 1);
    p2p_call_reply(f->parked, json_string("late"));
    f->parked = NULL;
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(jsonrpc_inflight(f->ctx), 0);
    r = f->response;
    assert_int_equal(json_array_size(r), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "result")), "late");
}

static void test_registry_rules(void **state)
{
    fixture *f = *state;
    p2p_method_desc d = {"echo", "", "", 0, m_echo, NULL};
    assert_int_equal(p2p_method_register(f->ctx, "t", &d), -EEXIST);
    assert_int_equal(p2p_method_register(f->ctx, "missing", &d), -ENOENT);
    d.name = "bad/name";
    assert_int_equal(p2p_method_register(f->ctx, "t", &d), -EINVAL);
    p2p_service_desc sd = {"t", "1", "", 0};
    assert_int_equal(p2p_service_register(f->ctx, &sd), -EEXIST);
    /* many methods: the table grows and every one stays reachable */
    p2p_service_desc big = {"big", "1", "", 0};
    assert_int_equal(p2p_service_register(f->ctx, &big), 0);
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        p2p_method_desc md = {name, "", "", 0, m_echo, NULL};
        assert_int_equal(p2p_method_register(f->ctx, "big", &md), 0);
    }
    for (int i = 0; i < 500; i++) {
        char path[40];
        int n = snprintf(path, sizeof(path), "big/m%d", i);
        assert_non_null(p2p__registry_find(f->ctx->registry, path, (size_t)n));
    }
    assert_null(p2p__registry_find(f->ctx->registry, "big/m500", 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_of_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_params_and_internal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_original_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_batch_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_rules, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
