/*
 * test_component.c — component ordering and lifecycle: dependency order, stable
 * order, reverse stop, a cycle and a missing dependency reported clearly, a
 * failing start rolling back what already started, states and error counts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/util.h"

typedef struct trace {
    char log[512];
    const char *fail_on; /* component whose start fails */
} trace;

static void note(trace *t, const char *what, const char *name)
{
    strcat(t->log, what);
    strcat(t->log, name);
    strcat(t->log, " ");
}

static int start_cb(p2p_component *c, char **err)
{
    trace *t = c->self;
    note(t, "+", c->ops->name);
    if (t->fail_on && strcmp(t->fail_on, c->ops->name) == 0) {
        *err = p2p__xstrdup("boom");
        return -EIO;
    }
    return 0;
}

static void stop_cb(p2p_component *c)
{
    note(c->self, "-", c->ops->name);
}

#define OPS(var, nm, ...)                                                                                              \
    static const p2p_component_ops var = {                                                                             \
        .name = nm, .deps = (const char *const[]){__VA_ARGS__}, .start = start_cb, .stop = stop_cb}

OPS(op_vault, "vault", NULL);
OPS(op_pki, "pki", "vault", NULL);
OPS(op_http, "http", "pki", "system", NULL);
OPS(op_system, "system", NULL);
OPS(op_member, "membership", "http", "pki", NULL);
OPS(op_a, "a", "b", NULL);
OPS(op_b, "b", "c", NULL);
OPS(op_c, "c", "a", NULL);
OPS(op_d, "d", "a", NULL);
OPS(op_ghost, "ghost-user", "ghost", NULL);

static p2p_ctx *new_ctx(uv_loop_t *loop)
{
    p2p_config cfg;
    p2p_config_defaults(&cfg, 1);
    char *err = NULL;
    assert_int_equal(p2p_config_finalize(&cfg, &err), 0);
    uv_loop_init(loop);
    p2p_ctx *ctx = p2p__ctx_new(&cfg, loop);
    ctx->log_level = P2P_LOG_ERROR;
    return ctx;
}

static void test_dependency_order_and_reverse_stop(void **state)
{
    (void)state;
    uv_loop_t loop;
    p2p_ctx *ctx = new_ctx(&loop);
    trace t = {0};
    /* registered out of order on purpose */
    p2p__component_add(ctx, &op_member, &t);
    p2p__component_add(ctx, &op_http, &t);
    p2p__component_add(ctx, &op_system, &t);
    p2p__component_add(ctx, &op_pki, &t);
    p2p__component_add(ctx, &op_vault, &t);
    assert_null(p2p__component_add(ctx, &op_vault, &t)); /* duplicate name */
    char *err = NULL;
    assert_int_equal(p2p__components_start(ctx, &err), 0);
    assert_string_equal(t.log, "+system +vault +pki +http +membership ");
    for (size_t i = 0; i < ctx->n_components; i++) {
        assert_int_equal(ctx->components[i]->state, P2P_COMP_RUNNING);
        assert_true(ctx->components[i]->started_at_ms > 0);
    }
    t.log[0] = '\0';
    p2p__components_stop(ctx);
    assert_string_equal(t.log, "-membership -http -pki -vault -system ");
    assert_int_equal(p2p__component_find(ctx, "http")->state, P2P_COMP_STOPPED);
    t.log[0] = '\0';
    p2p__components_stop(ctx); /* idempotent */
    assert_string_equal(t.log, "");
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
}

static void test_cycle_is_named(void **state)
{
    (void)state;
    uv_loop_t loop;
    p2p_ctx *ctx = new_ctx(&loop);
    trace t = {0};
    p2p__component_add(ctx, &op_vault, &t);
    p2p__component_add(ctx, &op_d, &t);
    p2p__component_add(ctx, &op_a, &t);
    p2p__component_add(ctx, &op_b, &t);
    p2p__component_add(ctx, &op_c, &t);
    char *err = NULL;
    assert_int_equal(p2p__components_start(ctx, &err), -ELOOP);
    assert_non_null(err);
    assert_non_null(strstr(err, "dependency cycle"));
    assert_non_null(strstr(err, "a -> b -> c -> a"));
    assert_string_equal(t.log, ""); /* nothing started */
    free(err);
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
}

static void test_missing_dependency(void **state)
{
    (void)state;
    uv_loop_t loop;
    p2p_ctx *ctx = new_ctx(&loop);
    trace t = {0};
    p2p__component_add(ctx, &op_vault, &t);
    p2p__component_add(ctx, &op_ghost, &t);
    char *err = NULL;
    assert_int_equal(p2p__components_start(ctx, &err), -ENOENT);
    assert_non_null(strstr(err, "'ghost-user' depends on 'ghost'"));
    assert_string_equal(t.log, "");
    free(err);
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
}

static void test_failed_start_rolls_back(void **state)
{
    (void)state;
    uv_loop_t loop;
    p2p_ctx *ctx = new_ctx(&loop);
    trace t = {.fail_on = "http"};
    p2p__component_add(ctx, &op_vault, &t);
    p2p__component_add(ctx, &op_pki, &t);
    p2p__component_add(ctx, &op_system, &t);
    p2p__component_add(ctx, &op_http, &t);
    p2p__component_add(ctx, &op_member, &t);
    char *err = NULL;
    assert_int_equal(p2p__components_start(ctx, &err), -EIO);
    assert_non_null(strstr(err, "component 'http' failed to start: boom"));
    /* started ones stop in reverse; the failed one is not stopped; later ones never start */
    assert_string_equal(t.log, "+vault +pki +system +http -system -pki -vault ");
    p2p_component *http = p2p__component_find(ctx, "http");
    assert_int_equal(http->state, P2P_COMP_ERROR);
    assert_int_equal(http->error_count, 1);
    assert_string_equal(http->last_error, "boom");
    assert_int_equal(p2p__component_find(ctx, "membership")->state, P2P_COMP_NOT_INITIALIZED);
    assert_int_equal(p2p__component_find(ctx, "vault")->state, P2P_COMP_STOPPED);
    free(err);
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
}

static void test_state_names_and_shared(void **state)
{
    (void)state;
    assert_string_equal(p2p__component_state_name(P2P_COMP_NOT_INITIALIZED), "NOT_INITIALIZED");
    assert_string_equal(p2p__component_state_name(P2P_COMP_ERROR), "ERROR");
    uv_loop_t loop;
    p2p_ctx *ctx = new_ctx(&loop);
    int a = 1, b = 2;
    assert_null(p2p_shared_get(ctx, "x"));
    assert_null(p2p_shared_set(ctx, "x", &a));
    assert_ptr_equal(p2p_shared_set(ctx, "x", &b), &a);
    assert_ptr_equal(p2p_shared_get(ctx, "x"), &b);
    assert_string_equal(p2p_node_role(ctx), "coordinator");
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dependency_order_and_reverse_stop),
        cmocka_unit_test(test_cycle_is_named),
        cmocka_unit_test(test_missing_dependency),
        cmocka_unit_test(test_failed_start_rolls_back),
        cmocka_unit_test(test_state_names_and_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
