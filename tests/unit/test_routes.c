/*
 * test_routes.c — the HTTP route table (src/http/routes.c): registration
 * before any server exists, refused descriptions, the most specific path wins,
 * HEAD on GET, 405 with the path's methods, removal by route and by owner.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/util.h"
#include "http/internal.h"
#include "http/routes.h"

static void h_a(p2p_http_req *r) { (void)r; }
static void h_b(p2p_http_req *r) { (void)r; }

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

static int add(p2p_ctx *ctx, const char *m, const char *p, p2p_http_match match, p2p_http_handler fn,
               const char *owner)
{
    p2p_http_route_desc d = {m, p, match, P2P_HTTP_ANY, 0, owner, fn, (void *)p};
    return p2p__http_route_add(ctx, &d);
}

static int look(p2p_ctx *ctx, const char *m, const char *p, http_route *out, char *allow)
{
    return p2p__http_route_lookup(p2p__http_routes(ctx), m, strlen(m), p, strlen(p), out, allow, 64);
}

static void test_lookup_and_removal(void **state)
{
    (void)state;
    uv_loop_t loop;
    p2p_ctx *ctx = new_ctx(&loop);
    assert_int_equal(add(ctx, "GET", "/services", P2P_HTTP_EXACT, h_a, "system"), 0);
    assert_int_equal(add(ctx, "GET", "/services/", P2P_HTTP_PREFIX, h_a, "system"), 0);
    assert_int_equal(add(ctx, "GET", "/services/hello/greeting", P2P_HTTP_EXACT, h_b, "services"), 0);
    assert_int_equal(add(ctx, "POST", "/services/hello/greeting", P2P_HTTP_EXACT, h_b, "services"), 0);
    assert_int_equal(add(ctx, "GET", "/services/hello/greeting", P2P_HTTP_EXACT, h_b, "x"), -EEXIST);
    /* refused descriptions */
    assert_int_equal(add(ctx, "get", "/x", P2P_HTTP_EXACT, h_a, "x"), -EINVAL);
    assert_int_equal(add(ctx, "GET", "x", P2P_HTTP_EXACT, h_a, "x"), -EINVAL);
    assert_int_equal(add(ctx, "GET", "/x", P2P_HTTP_PREFIX, h_a, "x"), -EINVAL); /* a prefix ends in '/' */
    assert_int_equal(add(ctx, "GET", "/x y", P2P_HTTP_EXACT, h_a, "x"), -EINVAL);
    assert_int_equal(add(ctx, "GET", "/x", P2P_HTTP_EXACT, NULL, "x"), -EINVAL);

    http_route r;
    char allow[64];
    assert_int_equal(look(ctx, "GET", "/services", &r, allow), 0);
    assert_string_equal(r.path, "/services");
    /* the exact service route beats the /services/ prefix */
    assert_int_equal(look(ctx, "GET", "/services/hello/greeting", &r, allow), 0);
    assert_ptr_equal(r.fn, h_b);
    assert_int_equal(look(ctx, "HEAD", "/services/hello/greeting", &r, allow), 0);
    assert_string_equal(r.method, "GET");
    assert_int_equal(look(ctx, "GET", "/services/hello", &r, allow), 0);
    assert_ptr_equal(r.fn, h_a);
    /* a prefix needs something after it */
    assert_int_equal(look(ctx, "GET", "/services/", &r, allow), -ENOENT);
    assert_int_equal(look(ctx, "GET", "/nope", &r, allow), -ENOENT);
    /* wrong method on the most specific path: its methods */
    assert_int_equal(look(ctx, "DELETE", "/services/hello/greeting", &r, allow), -EPERM);
    assert_string_equal(allow, "GET, POST");
    assert_int_equal(look(ctx, "POST", "/services/x", &r, allow), -EPERM);
    assert_string_equal(allow, "GET");

    json_t *j = p2p__http_routes_json(ctx);
    assert_int_equal(json_array_size(j), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 2), "owner")), "services");
    json_decref(j);

    /* removal: the prefix serves the path again */
    p2p__http_routes_remove_owner(ctx, "services");
    assert_int_equal(look(ctx, "GET", "/services/hello/greeting", &r, allow), 0);
    assert_ptr_equal(r.fn, h_a);
    assert_int_equal(p2p__http_route_remove(ctx, "GET", "/services/", P2P_HTTP_PREFIX), 0);
    assert_int_equal(p2p__http_route_remove(ctx, "GET", "/services/", P2P_HTTP_PREFIX), -ENOENT);
    assert_int_equal(look(ctx, "GET", "/services/hello/greeting", &r, allow), -ENOENT);
    p2p__ctx_free(ctx);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_and_removal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
