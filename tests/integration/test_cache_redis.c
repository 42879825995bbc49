/*
 * test_cache_redis.c — the cache against a real redis-server that this test
 * starts itself (127.0.0.1, a free port, no persistence) and kills at the end:
 *   - a value set through one cache is found in Redis by a fresh one (empty L1);
 *   - an L1 copy never outlives the L2 entry it came from;
 *   - clear of a namespace reaches Redis; single flight with Redis in front;
 *   - Redis killed mid-run: gets and sets keep answering from L1, at once and
 *     without errors; Redis restarted: the cache reconnects and uses L2 again;
 *   - Redis stopped (SIGSTOP: TCP still accepted, nothing answered): the
 *     command timeout fires, the call falls back to L1 / the loader, and the
 *     cache recovers after SIGCONT;
 *   - a listener that never answers and a refused port: never ready, calls
 *     answered from L1 at once.
 * Exits 77 (skipped) only when redis-server is not installed.
 */
/* cmocka needs these first */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "cache/cache.h"

#define TIMEOUT_MS 200 /* the caches' Redis command timeout in these tests */

static const char *redis_bin;
static uv_loop_t loop;

/* ---- processes and sockets ---- */

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static int can_connect(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static pid_t redis_start(int port)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execl(redis_bin, redis_bin, "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--daemonize", "no", "--logfile", "", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !can_connect(port); i++)
        usleep(10000);
    assert_true(can_connect(port));
    return pid;
}

static void redis_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- running the loop ---- */

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag is non-zero or ms pass; returns *flag. */
static int run_until(volatile int *flag, uint64_t ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uint64_t end = uv_hrtime() / 1000000 + ms;
    while (!*flag && uv_hrtime() / 1000000 < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag;
}

static void run_for(uint64_t ms)
{
    int never = 0;
    run_until(&never, ms);
}

static int wait_ready(p2p_cache *c, uint64_t ms)
{
    uint64_t end = uv_hrtime() / 1000000 + ms;
    while (!p2p__cache_l2_ready(c) && uv_hrtime() / 1000000 < end)
        run_for(10);
    return p2p__cache_l2_ready(c);
}

static p2p_cache *cache_new(int port)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/2", port);
    p2p_cache_config cfg = {.l1_max_bytes = 1 << 20,
                            .default_ttl_ms = 300000,
                            .redis_url = url,
                            .redis_timeout_ms = TIMEOUT_MS,
                            .loader_timeout_ms = 2000};
    char *err = NULL;
    p2p_cache *c = p2p__cache_new(&loop, &cfg, &err);
    if (!c)
        fail_msg("cache: %s", err);
    return c;
}

static void cache_free(p2p_cache *c)
{
    p2p__cache_close(c);
    run_for(20);
}

/* ---- recording callbacks ---- */

typedef struct answer {
    int calls;
    int status;
    char value[64];
} answer;

static void on_answer(int status, const void *value, size_t len, void *udata)
{
    answer *a = udata;
    a->calls++;
    a->status = status;
    a->value[0] = '\0';
    if (status == 0 && len < sizeof a->value) {
        memcpy(a->value, value, len);
        a->value[len] = '\0';
    }
}

typedef struct done {
    int calls;
    int status;
    uint64_t n;
} done;

static void on_done(int status, uint64_t n, void *udata)
{
    done *d = udata;
    d->calls++;
    d->status = status;
    d->n = n;
}

/* A get that must not block: returns how long the call itself took (µs). */
static uint64_t get(p2p_cache *c, const char *ns, const char *key, answer *a)
{
    memset(a, 0, sizeof *a);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(p2p__cache_get(c, ns, key, on_answer, a), 0);
    return (uv_hrtime() - t0) / 1000;
}

static void set_and_wait(p2p_cache *c, const char *ns, const char *key, const char *v, uint64_t ttl)
{
    done d = {0};
    assert_int_equal(p2p__cache_set(c, ns, key, v, strlen(v), ttl, on_done, &d), 0);
    assert_true(run_until(&d.calls, 2000));
    assert_int_equal(d.status, 0);
}

/* ---- tests ---- */

static void test_set_get_through_l2(void **state)
{
    (void)state;
    int port = free_port();
    pid_t rp = redis_start(port);
    p2p_cache *a = cache_new(port), *b = cache_new(port);
    assert_true(wait_ready(a, 3000));
    assert_true(wait_ready(b, 3000));
    set_and_wait(a, "svc", "k", "hello", 60000);
    answer ans;
    get(b, "svc", "k", &ans);
    assert_int_equal(ans.calls, 0); /* not in B's L1: asked to Redis */
    assert_true(run_until(&ans.calls, 2000));
    assert_int_equal(ans.status, 0);
    assert_string_equal(ans.value, "hello");
    get(b, "svc", "k", &ans); /* now in B's L1 */
    assert_int_equal(ans.calls, 1);
    assert_string_equal(ans.value, "hello");
    /* a key nobody set: a miss at both levels */
    get(b, "svc", "nope", &ans);
    assert_true(run_until(&ans.calls, 2000));
    assert_int_equal(ans.status, -ENOENT);
    /* delete reaches Redis */
    done d = {0};
    assert_int_equal(p2p__cache_del(a, "svc", "k", on_done, &d), 0);
    assert_true(run_until(&d.calls, 2000));
    assert_int_equal(d.status, 0);
    assert_int_equal(d.n, 1);
    p2p__cache_del(b, "svc", "k", NULL, NULL);
    get(b, "svc", "k", &ans);
    assert_true(run_until(&ans.calls, 2000));
    assert_int_equal(ans.status, -ENOENT);
    p2p_cache_stats st;
    p2p__cache_stats(b, &st);
    assert_int_equal(st.l2_hits, 1);
    assert_int_equal(st.l2_misses, 2);
    assert_int_equal(st.l1_hits, 1);
    assert_int_equal(st.l2.connects, 1);
    assert_int_equal(st.l2.timeouts, 0);
    cache_free(a);
    cache_free(b);
    redis_kill(rp);
}

static void test_l1_never_outlives_l2(void **state)
{
    (void)state;
    int port = free_port();
    pid_t rp = redis_start(port);
    p2p_cache *a = cache_new(port), *b = cache_new(port);
    assert_true(wait_ready(a, 3000) && wait_ready(b, 3000));
    uint64_t t0 = uv_hrtime() / 1000000;
    set_and_wait(a, "svc", "short", "v", 400);
    run_for(150);
    answer ans;
    get(b, "svc", "short", &ans); /* L2 hit with ~250 ms left: B's L1 copy gets at most that */
    assert_true(run_until(&ans.calls, 1000));
    assert_int_equal(ans.status, 0);
    get(b, "svc", "short", &ans);
    assert_int_equal(ans.calls, 1); /* from B's L1 */
    /* past the L2 TTL, B (whose default TTL is 300 s) must not answer from L1 */
    while (uv_hrtime() / 1000000 < t0 + 420)
        run_for(10);
    get(b, "svc", "short", &ans);
    assert_int_equal(ans.calls, 0);
    assert_true(run_until(&ans.calls, 1000));
    assert_int_equal(ans.status, -ENOENT);
    cache_free(a);
    cache_free(b);
    redis_kill(rp);
}

static void test_clear_and_single_flight(void **state)
{
    (void)state;
    int port = free_port();
    pid_t rp = redis_start(port);
    p2p_cache *a = cache_new(port), *b = cache_new(port);
    assert_true(wait_ready(a, 3000) && wait_ready(b, 3000));
    char k[16];
    for (int i = 0; i < 700; i++) { /* more than one SCAN batch */
        snprintf(k, sizeof k, "k%d", i);
        p2p__cache_set(a, "gone", k, "v", 1, 60000, NULL, NULL);
    }
    set_and_wait(a, "kept", "k", "stay", 60000);
    done d = {0};
    assert_int_equal(p2p__cache_clear_ns(a, "gone", on_done, &d), 0);
    assert_true(run_until(&d.calls, 5000));
    assert_int_equal(d.status, 0);
    assert_int_equal(d.n, 700);
    answer ans;
    get(b, "gone", "k5", &ans);
    assert_true(run_until(&ans.calls, 2000));
    assert_int_equal(ans.status, -ENOENT);
    get(b, "kept", "k", &ans);
    assert_true(run_until(&ans.calls, 2000));
    assert_string_equal(ans.value, "stay");
    cache_free(a);
    cache_free(b);
    redis_kill(rp);
}

typedef struct loader_state {
    int calls;
    p2p_cache_fill *fill;
} loader_state;

static void loader(p2p_cache_fill *fill, const char *ns, const char *key, void *udata)
{
    loader_state *ls = udata;
    ls->calls++;
    ls->fill = fill;
}

static void test_single_flight_with_l2(void **state)
{
    (void)state;
    int port = free_port();
    pid_t rp = redis_start(port);
    p2p_cache *a = cache_new(port), *b = cache_new(port);
    assert_true(wait_ready(a, 3000) && wait_ready(b, 3000));
    loader_state ls = {0};
    answer w[3];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 3; i++)
        assert_int_equal(p2p__cache_get_or_load(a, "svc", "lazy", loader, &ls, on_answer, &w[i]), 0);
    assert_true(run_until(&ls.calls, 2000)); /* after Redis said "not there" */
    run_for(50);
    assert_int_equal(ls.calls, 1);
    p2p__cache_fill_done(ls.fill, "built", 5, 60000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_string_equal(w[i].value, "built");
    }
    /* the loaded value went to Redis too: a fresh cache finds it without loading */
    loader_state none = {0};
    answer ans = {0};
    assert_int_equal(p2p__cache_get_or_load(b, "svc", "lazy", loader, &none, on_answer, &ans), 0);
    assert_true(run_until(&ans.calls, 2000));
    assert_string_equal(ans.value, "built");
    assert_int_equal(none.calls, 0);
    cache_free(a);
    cache_free(b);
    redis_kill(rp);
}

static void test_redis_killed_and_restarted(void **state)
{
    (void)state;
    int port = free_port();
    pid_t rp = redis_start(port);
    p2p_cache *a = cache_new(port);
    assert_true(wait_ready(a, 3000));
    set_and_wait(a, "svc", "k1", "one", 60000);

    redis_kill(rp);
    /* at once, before the loss is even noticed, and after: answers from L1,
     * no error, no blocking */
    answer ans;
    uint64_t worst = 0, us;
    for (int round = 0; round < 20; round++) {
        us = get(a, "svc", "k1", &ans);
        worst = us > worst ? us : worst;
        assert_int_equal(ans.calls, 1);
        assert_string_equal(ans.value, "one");
        uint64_t t0 = uv_hrtime();
        assert_int_equal(p2p__cache_set(a, "svc", "k2", "two", 3, 60000, NULL, NULL), 0);
        us = (uv_hrtime() - t0) / 1000;
        worst = us > worst ? us : worst;
        us = get(a, "svc", "k2", &ans);
        assert_int_equal(ans.calls, 1);
        assert_string_equal(ans.value, "two");
        worst = us > worst ? us : worst;
        /* a miss is answered "not found" (at once once the loss is known) */
        get(a, "svc", "missing", &ans);
        assert_true(run_until(&ans.calls, TIMEOUT_MS * 3));
        assert_int_equal(ans.status, -ENOENT);
        run_for(20);
    }
    assert_true(worst < 20000); /* µs: no call waited for Redis */
    p2p_cache_stats st;
    p2p__cache_stats(a, &st);
    assert_false(p2p__cache_l2_ready(a));
    assert_true(st.l2.disconnects >= 1);
    assert_true(st.l2_skipped >= 1);

    /* Redis back on the same port: reconnect (backoff from 100 ms) and use L2 */
    run_for(300);
    rp = redis_start(port);
    uint64_t t0 = uv_hrtime() / 1000000;
    assert_true(wait_ready(a, 12000));
    fprintf(stderr, "  reconnected %llu ms after Redis came back\n", (unsigned long long)(uv_hrtime() / 1000000 - t0));
    set_and_wait(a, "svc", "k3", "three", 60000);
    p2p_cache *b = cache_new(port);
    assert_true(wait_ready(b, 3000));
    get(b, "svc", "k3", &ans);
    assert_true(run_until(&ans.calls, 2000));
    assert_string_equal(ans.value, "three");
    p2p__cache_stats(a, &st);
    assert_int_equal(st.l2.connects, 2);
    fprintf(stderr, "  connect failures while away: %llu, last backoff %llu ms\n",
            (unsigned long long)st.l2.connect_failures, (unsigned long long)st.l2.backoff_ms);
    cache_free(a);
    cache_free(b);
    redis_kill(rp);
}

static void test_redis_stopped_command_timeout(void **state)
{
    (void)state;
    int port = free_port();
    pid_t rp = redis_start(port);
    p2p_cache *a = cache_new(port);
    assert_true(wait_ready(a, 3000));
    set_and_wait(a, "svc", "k", "cached", 60000);
    kill(rp, SIGSTOP); /* TCP still accepted by the kernel, nothing answered */

    answer ans;
    get(a, "svc", "missing", &ans);
    assert_int_equal(ans.calls, 0); /* asked to Redis, which does not answer */
    uint64_t t0 = uv_hrtime();
    /* meanwhile L1 answers at once */
    answer hit;
    get(a, "svc", "k", &hit);
    assert_int_equal(hit.calls, 1);
    assert_string_equal(hit.value, "cached");
    assert_true(run_until(&ans.calls, 3000));
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    fprintf(stderr, "  stopped Redis: the miss was answered after %llu ms (timeout %d)\n", (unsigned long long)ms,
            TIMEOUT_MS);
    assert_int_equal(ans.status, -ENOENT); /* a miss, not an error */
    assert_true(ms >= TIMEOUT_MS - 20 && ms < TIMEOUT_MS + 300);
    p2p_cache_stats st;
    p2p__cache_stats(a, &st);
    assert_int_equal(st.l2.timeouts, 1);
    assert_int_equal(st.l2_failed, 1);
    assert_false(p2p__cache_l2_ready(a));
    /* the link is down (reconnects get no PING answer): a loader runs at once */
    loader_state ls = {0};
    memset(&ans, 0, sizeof ans);
    assert_int_equal(p2p__cache_get_or_load(a, "svc", "lazy", loader, &ls, on_answer, &ans), 0);
    assert_int_equal(ls.calls, 1);
    p2p__cache_fill_done(ls.fill, "local", 5, 0);
    assert_string_equal(ans.value, "local");
    run_for(1500); /* a reconnect attempt or two time out in the handshake */
    p2p__cache_stats(a, &st);
    assert_true(st.l2.connect_failures >= 1);
    assert_false(p2p__cache_l2_ready(a));

    kill(rp, SIGCONT);
    assert_true(wait_ready(a, 12000));
    set_and_wait(a, "svc", "after", "ok", 60000);
    cache_free(a);
    redis_kill(rp);
}

static void test_silent_and_refused(void **state)
{
    (void)state;
    /* a listener that never accepts: the kernel completes the TCP handshake */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s, 16), 0);
    socklen_t l = sizeof sa;
    getsockname(s, (struct sockaddr *)&sa, &l);
    p2p_cache *silent = cache_new(ntohs(sa.sin_port));
    p2p_cache *refused = cache_new(free_port());
    run_for(1300); /* connect timeout here: 4 x 200 ms, at least 1 s */
    p2p_cache_stats st;
    p2p__cache_stats(silent, &st);
    assert_false(p2p__cache_l2_ready(silent));
    assert_true(st.l2.connect_failures >= 1);
    assert_int_equal(st.l2.connects, 0);
    p2p__cache_stats(refused, &st);
    assert_true(st.l2.connect_failures >= 3); /* 100, 200, 400 ms ... apart */
    assert_int_equal(st.l2.connects, 0);
    p2p_cache *caches[2] = {silent, refused};
    for (int i = 0; i < 2; i++) {
        answer ans;
        assert_int_equal(p2p__cache_set(caches[i], "svc", "k", "v", 1, 0, NULL, NULL), 0);
        uint64_t us = get(caches[i], "svc", "k", &ans);
        assert_int_equal(ans.calls, 1);
        assert_string_equal(ans.value, "v");
        assert_true(us < 20000);
        get(caches[i], "svc", "other", &ans);
        assert_int_equal(ans.calls, 1); /* Redis not ready: a miss at once */
        assert_int_equal(ans.status, -ENOENT);
    }
    cache_free(silent);
    cache_free(refused);
    close(s);
}

int main(void)
{
    static const char *const candidates[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server",
                                             "/usr/sbin/redis-server"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !redis_bin; i++)
        if (access(candidates[i], X_OK) == 0)
            redis_bin = candidates[i];
    if (!redis_bin) {
        fprintf(stderr, "SKIP: redis-server is not installed (scripts/install-deps.sh installs it)\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IONBF, 0);
    uv_loop_init(&loop);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_through_l2),         cmocka_unit_test(test_l1_never_outlives_l2),
        cmocka_unit_test(test_clear_and_single_flight),    cmocka_unit_test(test_single_flight_with_l2),
        cmocka_unit_test(test_redis_killed_and_restarted), cmocka_unit_test(test_redis_stopped_command_timeout),
        cmocka_unit_test(test_silent_and_refused),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    if (r != 0)
        return r; /* a failed test may have left its caches open */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "handles left open on the loop\n");
        return 1;
    }
    return r;
}
