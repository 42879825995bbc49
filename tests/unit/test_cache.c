/*
 * test_cache.c — the cache facade with L1 only: hits answer at once, TTLs
 * (explicit, default, a loader's), one loader per missing key however many
 * callers wait (single flight), a failing or too slow loader answers every
 * waiter and caches nothing, a write during a flight wins, the caps on flights
 * and waiters, callbacks that call back in, and close with a loader still out.
 * The Redis URL parser is tested here too (pure).
 */
/* cmocka needs these first */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cache/cache.h"

typedef struct fixture {
    uv_loop_t loop;
    p2p_cache *c;
    uint64_t now; /* fake clock */
} fixture;

static uint64_t fake_now(void *arg)
{
    return ((fixture *)arg)->now;
}

static fixture *setup_with(p2p_cache_config *cfg, int fake_clock)
{
    fixture *fx = calloc(1, sizeof *fx);
    uv_loop_init(&fx->loop);
    fx->now = 1000;
    if (fake_clock) {
        cfg->now_ms = fake_now;
        cfg->now_arg = fx;
    }
    char *err = NULL;
    fx->c = p2p__cache_new(&fx->loop, cfg, &err);
    assert_non_null(fx->c);
    return fx;
}

static fixture *setup_default(void)
{
    p2p_cache_config cfg = {.l1_max_bytes = 1 << 20, .default_ttl_ms = 5000};
    return setup_with(&cfg, 1);
}

static void teardown(fixture *fx)
{
    p2p__cache_close(fx->c);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
}

/* ---- recording callbacks ---- */

typedef struct answer {
    int calls;
    int status;
    char value[64];
    size_t len;
} answer;

static void on_answer(int status, const void *value, size_t len, void *udata)
{
    answer *a = udata;
    a->calls++;
    a->status = status;
    a->len = len;
    assert_true(len < sizeof a->value);
    if (status == 0) {
        memcpy(a->value, value, len);
        a->value[len] = '\0';
    } else {
        assert_null(value);
    }
}

typedef struct loader_state {
    int calls;
    p2p_cache_fill *fill;
    const char *sync_value; /* non-NULL: complete at once with it */
    int sync_err;
} loader_state;

static void loader(p2p_cache_fill *fill, const char *ns, const char *key, void *udata)
{
    loader_state *ls = udata;
    ls->calls++;
    assert_non_null(ns);
    assert_non_null(key);
    if (ls->sync_value)
        p2p__cache_fill_done(fill, ls->sync_value, strlen(ls->sync_value), 0);
    else if (ls->sync_err)
        p2p__cache_fill_fail(fill, ls->sync_err);
    else
        ls->fill = fill;
}

static int get_now(fixture *fx, const char *ns, const char *key, answer *a)
{
    memset(a, 0, sizeof *a);
    int r = p2p__cache_get(fx->c, ns, key, on_answer, a);
    assert_int_equal(r, 0);
    assert_int_equal(a->calls, 1); /* L1 only: always answered at once */
    return a->status;
}

/* ---- tests ---- */

static void test_set_get_and_names(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    answer a;
    assert_int_equal(get_now(fx, "svc", "k", &a), -ENOENT);
    assert_int_equal(p2p__cache_set(fx->c, "svc", "k", "v1", 2, 0, NULL, NULL), 0);
    assert_int_equal(get_now(fx, "svc", "k", &a), 0);
    assert_string_equal(a.value, "v1");
    assert_int_equal(get_now(fx, "other", "k", &a), -ENOENT); /* namespaces apart */
    /* names: no ':' in a namespace (it would alias another's keys in Redis) */
    assert_int_equal(p2p__cache_set(fx->c, "a:b", "k", "v", 1, 0, NULL, NULL), -EINVAL);
    assert_int_equal(p2p__cache_set(fx->c, "", "k", "v", 1, 0, NULL, NULL), -EINVAL);
    assert_int_equal(p2p__cache_set(fx->c, "svc", "", "v", 1, 0, NULL, NULL), -EINVAL);
    assert_int_equal(p2p__cache_get(fx->c, "svc", "k", NULL, NULL), -EINVAL);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", NULL, NULL, on_answer, &a), -EINVAL);
    char big[200000];
    memset(big, 'x', sizeof big);
    assert_int_equal(p2p__cache_set(fx->c, "svc", "big", big, sizeof big, 0, NULL, NULL), -E2BIG);
    /* keys may hold ':' and any byte but NUL */
    assert_int_equal(p2p__cache_set(fx->c, "svc", "a:b c", "v2", 2, 0, NULL, NULL), 0);
    assert_int_equal(get_now(fx, "svc", "a:b c", &a), 0);
    assert_string_equal(a.value, "v2");
    /* delete */
    assert_int_equal(p2p__cache_del(fx->c, "svc", "k", NULL, NULL), 0);
    assert_int_equal(get_now(fx, "svc", "k", &a), -ENOENT);
    p2p_cache_stats st;
    p2p__cache_stats(fx->c, &st);
    assert_int_equal(st.l2_enabled, 0);
    assert_int_equal(st.l1_hits, 2);
    assert_int_equal(st.l1_misses, 3);
    teardown(fx);
}

static void test_ttl_rules(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    answer a;
    /* explicit TTL: expires at exactly set + ttl */
    assert_int_equal(p2p__cache_set(fx->c, "svc", "short", "s", 1, 100, NULL, NULL), 0);
    /* ttl 0 = the default (5000 here): every entry expires */
    assert_int_equal(p2p__cache_set(fx->c, "svc", "dflt", "d", 1, 0, NULL, NULL), 0);
    fx->now = 1099;
    assert_int_equal(get_now(fx, "svc", "short", &a), 0);
    fx->now = 1100;
    assert_int_equal(get_now(fx, "svc", "short", &a), -ENOENT);
    fx->now = 5999;
    assert_int_equal(get_now(fx, "svc", "dflt", &a), 0);
    fx->now = 6000;
    assert_int_equal(get_now(fx, "svc", "dflt", &a), -ENOENT);
    teardown(fx);
}

static void test_single_flight(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    loader_state ls = {0};
    answer w[5];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[i]), 0);
    /* a plain get of the same key joins the flight too */
    assert_int_equal(p2p__cache_get(fx->c, "svc", "k", on_answer, &w[4]), 0);
    assert_int_equal(ls.calls, 1); /* one loader, no stampede */
    for (int i = 0; i < 5; i++)
        assert_int_equal(w[i].calls, 0);
    p2p_cache_stats st;
    p2p__cache_stats(fx->c, &st);
    assert_int_equal(st.flights, 1);
    assert_int_equal(st.coalesced, 4);
    /* the loader answers with a TTL of 200 ms */
    p2p__cache_fill_done(ls.fill, "loaded", 6, 200);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, 0);
        assert_string_equal(w[i].value, "loaded");
    }
    answer a;
    assert_int_equal(get_now(fx, "svc", "k", &a), 0); /* cached */
    assert_string_equal(a.value, "loaded");
    fx->now = 1200; /* the loader's TTL applies */
    assert_int_equal(get_now(fx, "svc", "k", &a), -ENOENT);
    p2p__cache_stats(fx->c, &st);
    assert_int_equal(st.loads, 1);
    assert_int_equal(st.load_ok, 1);
    assert_int_equal(st.flights, 0);
    /* a loader that completes before returning */
    loader_state sync = {.sync_value = "now"};
    memset(&a, 0, sizeof a);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "s", loader, &sync, on_answer, &a), 0);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.value, "now");
    assert_int_equal(get_now(fx, "svc", "s", &a), 0);
    fx->now = 1200 + 5000; /* ttl 0 from a loader = the default */
    assert_int_equal(get_now(fx, "svc", "s", &a), -ENOENT);
    teardown(fx);
}

static void test_loader_failure_caches_nothing(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    loader_state ls = {0};
    answer w[3];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[i]), 0);
    p2p__cache_fill_fail(ls.fill, -EIO);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, -EIO);
    }
    answer a;
    assert_int_equal(get_now(fx, "svc", "k", &a), -ENOENT);
    /* the next caller tries again; -ENOENT from a loader is "no such value" */
    loader_state none = {.sync_err = -ENOENT};
    memset(&a, 0, sizeof a);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &none, on_answer, &a), 0);
    assert_int_equal(none.calls, 1);
    assert_int_equal(a.status, -ENOENT);
    p2p_cache_stats st;
    p2p__cache_stats(fx->c, &st);
    assert_int_equal(st.load_failed, 2);
    assert_int_equal(st.l1.entries, 0);
    teardown(fx);
}

static void test_loader_timeout(void **state)
{
    (void)state;
    p2p_cache_config cfg = {.l1_max_bytes = 1 << 20, .loader_timeout_ms = 50};
    fixture *fx = setup_with(&cfg, 0); /* the real loop clock: the timer must fire */
    loader_state ls = {0};
    answer w[2];
    memset(w, 0, sizeof w);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 2; i++)
        assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[i]), 0);
    while (w[1].calls == 0)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_true(ms >= 45 && ms < 1000);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].status, -ETIMEDOUT);
    }
    /* the late answer is dropped: nothing cached */
    p2p__cache_fill_done(ls.fill, "late", 4, 0);
    answer a;
    assert_int_equal(get_now(fx, "svc", "k", &a), -ENOENT);
    p2p_cache_stats st;
    p2p__cache_stats(fx->c, &st);
    assert_int_equal(st.load_timeouts, 1);
    assert_int_equal(st.flights, 0);
    teardown(fx);
}

static void test_write_during_flight_wins(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    loader_state ls = {0};
    answer w;
    memset(&w, 0, sizeof w);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w), 0);
    assert_int_equal(p2p__cache_set(fx->c, "svc", "k", "fresh", 5, 0, NULL, NULL), 0);
    p2p__cache_fill_done(ls.fill, "stale", 5, 0);
    assert_int_equal(w.status, 0);
    assert_string_equal(w.value, "stale"); /* delivered... */
    answer a;
    assert_int_equal(get_now(fx, "svc", "k", &a), 0);
    assert_string_equal(a.value, "fresh"); /* ...but not cached over the newer write */
    /* a delete during a flight: the load is not cached either */
    loader_state ls2 = {0};
    memset(&w, 0, sizeof w);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k2", loader, &ls2, on_answer, &w), 0);
    assert_int_equal(p2p__cache_clear_ns(fx->c, "svc", NULL, NULL), 0);
    p2p__cache_fill_done(ls2.fill, "old", 3, 0);
    assert_int_equal(get_now(fx, "svc", "k2", &a), -ENOENT);
    teardown(fx);
}

static void test_caps(void **state)
{
    (void)state;
    p2p_cache_config cfg = {.l1_max_bytes = 1 << 20, .max_flights = 1, .max_waiters = 2};
    fixture *fx = setup_with(&cfg, 1);
    loader_state ls = {0}, ls2 = {0};
    answer w[3];
    memset(w, 0, sizeof w);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[0]), 0);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[1]), 0);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[2]), -EBUSY);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "other", loader, &ls2, on_answer, &w[2]), -EBUSY);
    assert_int_equal(w[2].calls, 0); /* refused calls are never answered */
    p2p__cache_fill_done(ls.fill, "v", 1, 0);
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "other", loader, &ls2, on_answer, &w[2]), 0);
    p2p__cache_fill_done(ls2.fill, "o", 1, 0);
    assert_int_equal(w[2].status, 0);
    p2p_cache_stats st;
    p2p__cache_stats(fx->c, &st);
    assert_int_equal(st.busy, 2);
    teardown(fx);
}

/* A waiter that asks again for the key from inside its callback. */
typedef struct reentrant {
    fixture *fx;
    answer inner;
    int calls;
} reentrant;

static void on_reenter(int status, const void *value, size_t len, void *udata)
{
    reentrant *r = udata;
    r->calls++;
    assert_int_equal(status, 0);
    assert_int_equal(p2p__cache_get(r->fx->c, "svc", "k", on_answer, &r->inner), 0);
    /* and changes the cache while it still reads its value */
    assert_int_equal(p2p__cache_set(r->fx->c, "svc", "k", "zz", 2, 0, NULL, NULL), 0);
    assert_int_equal(len, 1);
    assert_memory_equal(value, "v", 1);
}

static void test_reentrant_callbacks(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    loader_state ls = {0};
    reentrant r = {.fx = fx};
    assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_reenter, &r), 0);
    p2p__cache_fill_done(ls.fill, "v", 1, 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.inner.calls, 1);
    assert_string_equal(r.inner.value, "v"); /* cached before the waiters ran */
    /* an L1 hit whose callback overwrites the entry it is reading */
    r.calls = 0;
    assert_int_equal(p2p__cache_set(fx->c, "svc", "k", "v", 1, 0, NULL, NULL), 0);
    assert_int_equal(p2p__cache_get(fx->c, "svc", "k", on_reenter, &r), 0);
    assert_int_equal(r.calls, 1);
    teardown(fx);
}

static void on_done(int status, uint64_t n, void *udata)
{
    int64_t *out = udata;
    out[0] = status;
    out[1] = (int64_t)n;
}

static void test_clear_ns_and_done(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    int64_t d[2] = {1, 0};
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(p2p__cache_set(fx->c, "a", k, "v", 1, 0, on_done, d), 0);
        assert_int_equal(d[0], -ENOTCONN); /* no L2: in L1 only, said at once */
    }
    assert_int_equal(p2p__cache_set(fx->c, "b", "k0", "v", 1, 0, NULL, NULL), 0);
    assert_int_equal(p2p__cache_clear_ns(fx->c, "a", on_done, d), 0);
    assert_int_equal(d[1], 3);
    answer a;
    assert_int_equal(get_now(fx, "a", "k1", &a), -ENOENT);
    assert_int_equal(get_now(fx, "b", "k0", &a), 0);
    assert_int_equal(p2p__cache_clear_ns(fx->c, "a*", NULL, NULL), -EINVAL);
    teardown(fx);
}

static void test_close_with_loader_out(void **state)
{
    (void)state;
    fixture *fx = setup_default();
    loader_state ls = {0};
    answer w[2];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++)
        assert_int_equal(p2p__cache_get_or_load(fx->c, "svc", "k", loader, &ls, on_answer, &w[i]), 0);
    p2p_cache_fill *fill = ls.fill;
    p2p__cache_close(fx->c);
    for (int i = 0; i < 2; i++)
        assert_int_equal(w[i].status, -ECANCELED);
    answer a = {0};
    assert_int_equal(p2p__cache_get(fx->c, "svc", "k", on_answer, &a), -ECANCELED);
    uv_run(&fx->loop, UV_RUN_DEFAULT);        /* the cache is freed here */
    p2p__cache_fill_done(fill, "late", 4, 0); /* still the loader's to complete: a no-op */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
}

static void test_bad_redis_url_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_cache_config cfg = {.redis_url = "http://x"};
    char *err = NULL;
    assert_null(p2p__cache_new(&loop, &cfg, &err));
    assert_non_null(strstr(err, "redis://"));
    free(err);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_url_parser(void **state)
{
    (void)state;
    p2p_l2_target t;
    assert_int_equal(p2p__l2_parse_url("redis://localhost", &t, NULL), 0);
    assert_string_equal(t.host, "localhost");
    assert_int_equal(t.port, 6379);
    assert_int_equal(t.db, 0);
    assert_int_equal(t.is_unix, 0);
    assert_int_equal(p2p__l2_parse_url("redis://10.0.0.5:6380/3", &t, NULL), 0);
    assert_string_equal(t.host, "10.0.0.5");
    assert_int_equal(t.port, 6380);
    assert_int_equal(t.db, 3);
    assert_int_equal(p2p__l2_parse_url("redis://[::1]:7000/", &t, NULL), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 7000);
    assert_int_equal(p2p__l2_parse_url("redis://:s3cr@t@cache.internal:6379/1", &t, NULL), 0);
    assert_string_equal(t.password, "s3cr@t");
    assert_string_equal(t.user, "");
    assert_string_equal(t.host, "cache.internal");
    assert_int_equal(p2p__l2_parse_url("redis://app:pw@h", &t, NULL), 0);
    assert_string_equal(t.user, "app");
    assert_string_equal(t.password, "pw");
    assert_int_equal(p2p__l2_parse_url("unix:/run/redis/redis.sock", &t, NULL), 0);
    assert_int_equal(t.is_unix, 1);
    assert_string_equal(t.path, "/run/redis/redis.sock");
    assert_int_equal(p2p__l2_parse_url("unix:///tmp/r.sock?db=2", &t, NULL), 0);
    assert_string_equal(t.path, "/tmp/r.sock");
    assert_int_equal(t.db, 2);

    static const char *const bad[] = {
        "",
        "localhost:6379",
        "http://h",
        "rediss://h",
        "redis://",
        "redis://:6379",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:x",
        "redis://h:",
        "redis://h/x",
        "redis://h/1/2",
        "redis://h/99999999",
        "redis://[::1",
        "redis://[zz]:1",
        "redis://h h",
        "redis://h\n",
        "redis://user@h",
        "redis://u:@h",
        "redis://h_!",
        "unix:",
        "unix:relative.sock",
        "unix:/s?db=x",
        "unix:/s?x=1",
        "unix:/"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aa",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        memset(&t, 0x5a, sizeof t);
        if (p2p__l2_parse_url(bad[i], &t, &err) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(err);
        assert_int_equal((unsigned char)t.host[0], 0x5a); /* untouched on refusal */
        free(err);
    }
    assert_int_equal(p2p__l2_ns_valid("greeter"), 1);
    assert_int_equal(p2p__l2_ns_valid("a:b"), 0);
    assert_int_equal(p2p__l2_ns_valid("a*"), 0);
    assert_int_equal(p2p__l2_ns_valid(""), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_and_names),
        cmocka_unit_test(test_ttl_rules),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_loader_failure_caches_nothing),
        cmocka_unit_test(test_loader_timeout),
        cmocka_unit_test(test_write_during_flight_wins),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_reentrant_callbacks),
        cmocka_unit_test(test_clear_ns_and_done),
        cmocka_unit_test(test_close_with_loader_out),
        cmocka_unit_test(test_bad_redis_url_refused),
        cmocka_unit_test(test_url_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
