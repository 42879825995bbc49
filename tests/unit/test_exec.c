/*
 * test_exec.c — the exec supervisor against real processes: a Python script
 * (written to a temp dir, standard library only) that plays a service whose
 * behaviour is chosen by its first argument and by the method called.
 *
 * Covered: the handshake (env, cwd, settings), 100 concurrent calls answered
 * in reverse order and the pending-call cap, a call timeout and the late
 * answer after it, a crash mid-call (pending calls fail, restart with a
 * growing backoff, FAILED after too many, start again), garbage and an
 * over-long line, a stderr flood (bounded, cut, rate limited, counted), a child
 * that ignores SIGTERM (SIGKILL after the stop timeout), a child that does not
 * read its stdin (calls refused once the queue is full), failed starts
 * (initialize error, start timeout, missing command), requests and
 * notifications from the child with the node's answer getting back, free with
 * calls in flight, and the child dying with its parent (with the trampoline;
 * without it, the control case, the child survives).
 *
 * This binary routes P2P_EXEC_TRAMPOLINE_ARG like the p2p binary does, so the
 * default trampoline (/proc/self/exe) works here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
// clang-format off: cmocka needs the four headers above first
#include <cmocka.h>
// clang-format on
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "services/exec.h"
#include "services/manifest.h"

static char g_dir[256];
static char *g_python = "/usr/bin/python3";

static const char SCRIPT[] =
    "import sys, json, os, signal, time, threading\n"
    "mode = sys.argv[1] if len(sys.argv) > 1 else 'normal'\n"
    "lock = threading.Lock()\n"
    "def send(m):\n"
    "    m['jsonrpc'] = '2.0'\n"
    "    with lock:\n"
    "        sys.stdout.write(json.dumps(m) + '\\n'); sys.stdout.flush()\n"
    "if mode == 'ignore_term': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "settings = None\n"
    "held = []\n"
    "asking = None\n"
    "while True:\n"
    "    line = sys.stdin.readline()\n"
    "    if not line: break\n"
    "    m = json.loads(line)\n"
    "    meth = m.get('method'); mid = m.get('id'); params = m.get('params') or {}\n"
    "    if meth == 'initialize':\n"
    "        if mode == 'init_error':\n"
    "            send({'id': mid, 'error': {'code': -1, 'message': 'bad settings'}}); continue\n"
    "        if mode == 'slow_start': continue\n"
    "        settings = params.get('settings')\n"
    "        send({'id': mid, 'result': {'ok': True}})\n"
    "        if mode == 'noread': time.sleep(30)\n"
    "        continue\n"
    "    if meth == 'shutdown':\n"
    "        if mode == 'ignore_term': continue\n"
    "        break\n"
    "    if mid == 'q1':\n"
    "        send({'id': asking, 'result': {'got': m.get('result')}}); continue\n"
    "    if meth == 'echo': send({'id': mid, 'result': params})\n"
    "    elif meth == 'env':\n"
    "        send({'id': mid, 'result': {'service': os.environ.get('P2P_SERVICE'),\n"
    "              'node': os.environ.get('P2P_NODE_ID'), 'cwd': os.getcwd(), 'settings': settings,\n"
    "              'path': 'PATH' in os.environ, 'home': 'HOME' in os.environ}})\n"
    "    elif meth == 'batch':\n"
    "        held.append((mid, params['i']))\n"
    "        if len(held) == params['n']:\n"
    "            for i, v in reversed(held): send({'id': i, 'result': v})\n"
    "            held = []\n"
    "    elif meth == 'hang': pass\n"
    "    elif meth == 'late':\n"
    "        threading.Timer(params['s'], lambda i=mid: send({'id': i, 'result': 'late'})).start()\n"
    "    elif meth == 'fail': send({'id': mid, 'error': {'code': 7, 'message': 'no such thing'}})\n"
    "    elif meth == 'crash': os._exit(3)\n"
    "    elif meth == 'garbage':\n"
    "        sys.stdout.write('this is not json\\n'); sys.stdout.flush()\n"
    "    elif meth == 'flood':\n"
    "        sys.stderr.write('x' * 10000 + '\\n')\n"
    "        for i in range(params['n']): sys.stderr.write('line %d\\n' % i)\n"
    "        sys.stderr.flush(); send({'id': mid, 'result': 'flooded'})\n"
    "    elif meth == 'ask':\n"
    "        asking = mid\n"
    "        send({'id': 'q1', 'method': 'call', 'params': {'method': 'other/x', 'target': 'local'}})\n"
    "        send({'method': 'log', 'params': {'level': 'info', 'message': 'hello\\nfrom python'}})\n"
    "        send({'method': 'log', 'params': {'level': 'loud', 'message': 'x'}})\n"
    "        send({'method': 'event', 'params': {'k': 1}})\n"
    "    else: send({'id': mid, 'error': {'code': -32601, 'message': 'method not found'}})\n"
    "if mode == 'ignore_term':\n"
    "    while True: time.sleep(1)\n";

/* ---- harness ---------------------------------------------------------------------- */

#define MAX_EV 512

typedef struct rec {
    p2p_exec_state states[MAX_EV];
    int pids[MAX_EV];
    uint64_t backoffs[MAX_EV], at_ms[MAX_EV];
    int n_states;
    char reason[256];
    uint32_t restarts;
    /* logs */
    int n_logs[3];
    int longest_log;
    int cut_lines, suppressed_lines, bad_log, hello_log;
    char last_supervisor[512];
    char stderr_first[64];
    /* requests / notifications */
    int n_requests;
    uint64_t token;
    char req_method[64];
    json_t *req_params;
    int n_notify;
    char notify_method[64];
} rec;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void on_state(p2p_exec_proc *p, const p2p_exec_status *st, void *udata)
{
    rec *r = udata;
    if (r->n_states < MAX_EV) {
        r->states[r->n_states] = st->state;
        r->pids[r->n_states] = st->pid;
        r->backoffs[r->n_states] = st->backoff_ms;
        r->at_ms[r->n_states] = now_ms();
        r->n_states++;
    }
    snprintf(r->reason, sizeof r->reason, "%s", st->reason);
    r->restarts = st->restarts;
}

static void on_log(p2p_exec_proc *p, p2p_exec_log_level level, p2p_exec_log_source src, const char *msg, void *udata)
{
    rec *r = udata;
    r->n_logs[src]++;
    int len = (int)strlen(msg);
    if (len > r->longest_log && src != P2P_EXEC_FROM_SUPERVISOR)
        r->longest_log = len;
    if (strstr(msg, " [cut]"))
        r->cut_lines++;
    if (src == P2P_EXEC_FROM_SUPERVISOR) {
        snprintf(r->last_supervisor, sizeof r->last_supervisor, "%s", msg);
        if (strstr(msg, "log lines suppressed"))
            r->suppressed_lines += atoi(msg);
        if (strstr(msg, "bad log notification"))
            r->bad_log++;
    }
    if (src == P2P_EXEC_FROM_STDERR && !r->stderr_first[0])
        snprintf(r->stderr_first, sizeof r->stderr_first, "%s", msg);
    if (src == P2P_EXEC_FROM_SERVICE && level == P2P_EXEC_LOG_INFO && strcmp(msg, "hello?from python") == 0)
        r->hello_log++;
}

static void on_request(p2p_exec_proc *p, const char *method, json_t *params, uint64_t token, void *udata)
{
    rec *r = udata;
    r->n_requests++;
    r->token = token;
    snprintf(r->req_method, sizeof r->req_method, "%s", method);
    json_decref(r->req_params);
    r->req_params = json_incref(params);
}

static void on_notify(p2p_exec_proc *p, const char *method, json_t *params, void *udata)
{
    rec *r = udata;
    r->n_notify++;
    snprintf(r->notify_method, sizeof r->notify_method, "%s", method);
}

typedef struct fx {
    uv_loop_t loop;
    rec r;
    p2p_exec_proc *p;
    char *argv[4];
    char mode[32];
    p2p_exec_opts o;
} fx;

static void fx_init(fx *f, const char *mode)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->mode, sizeof f->mode, "%s", mode);
    static char script[300];
    snprintf(script, sizeof script, "%s/svc.py", g_dir);
    f->argv[0] = g_python;
    f->argv[1] = script;
    f->argv[2] = f->mode;
    f->argv[3] = NULL;
    f->o.name = "pysvc";
    f->o.version = "1.0.0";
    f->o.node_id = "node-test";
    f->o.dir = g_dir;
    f->o.argv = f->argv;
    f->o.start_timeout_ms = 5000;
    f->o.stop_timeout_ms = 2000;
    f->o.cb.on_state = on_state;
    f->o.cb.on_log = on_log;
    f->o.cb.on_request = on_request;
    f->o.cb.on_notify = on_notify;
    f->o.udata = &f->r;
}

static void fx_create(fx *f)
{
    const char *why = NULL;
    assert_int_equal(p2p__exec_new(&f->loop, &f->o, &f->p, &why), 0);
}

static void tick(uv_timer_t *t)
{
}

/* Runs the loop until pred holds or ms pass. */
static int run_until(fx *f, int (*pred)(fx *), uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t end = now_ms() + ms;
    while (!pred(f) && now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return pred(f);
}

static void run_for(fx *f, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int is_running(fx *f)
{
    return p2p__exec_state_get(f->p) == P2P_EXEC_RUNNING;
}
static int is_stopped(fx *f)
{
    return p2p__exec_state_get(f->p) == P2P_EXEC_STOPPED;
}
static int is_failed(fx *f)
{
    return p2p__exec_state_get(f->p) == P2P_EXEC_FAILED;
}
static int is_restarting(fx *f)
{
    return p2p__exec_state_get(f->p) == P2P_EXEC_RESTARTING;
}

static void fx_start(fx *f)
{
    fx_create(f);
    assert_int_equal(p2p__exec_start(f->p), 0);
    assert_true(run_until(f, is_running, 5000));
}

/* Frees the proc and runs the loop dry: every handle closed, nothing left. */
static void fx_done(fx *f)
{
    p2p__exec_free(f->p);
    f->p = NULL;
    uint64_t end = now_ms() + 8000;
    while (uv_loop_alive(&f->loop) && now_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    json_decref(f->r.req_params);
}

/* ---- call results ---------------------------------------------------------------------- */

typedef struct answer {
    int done, status, order;
    json_t *result;
    char message[320];
    uint64_t at_ms;
} answer;

static int g_order;

static void on_answer(p2p_exec_proc *p, int status, json_t *result, const char *message, void *udata)
{
    answer *a = udata;
    assert_false(a->done);
    a->done = 1;
    a->status = status;
    a->order = g_order++;
    a->at_ms = now_ms();
    a->result = json_incref(result);
    snprintf(a->message, sizeof a->message, "%s", message ? message : "");
}

static answer *g_wait;
static size_t g_wait_n;
static int all_answered(fx *f)
{
    for (size_t i = 0; i < g_wait_n; i++)
        if (!g_wait[i].done)
            return 0;
    return 1;
}

static void wait_answers(fx *f, answer *a, size_t n, uint64_t ms)
{
    g_wait = a;
    g_wait_n = n;
    assert_true(run_until(f, all_answered, ms));
}

static void answers_free(answer *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(a[i].result);
}

static int call(fx *f, const char *method, json_t *params, uint32_t timeout, answer *a)
{
    memset(a, 0, sizeof *a);
    const char *why = NULL;
    int r = p2p__exec_call(f->p, method, params, timeout, on_answer, a, &why);
    json_decref(params);
    return r;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_handshake_and_calls(void **state)
{
    fx f;
    fx_init(&f, "normal");
    json_t *settings = json_pack("{s:i}", "greeting", 5);
    f.o.settings = settings;
    fx_start(&f);
    json_decref(settings);
    /* states: starting (with the pid), running */
    assert_int_equal(f.r.n_states, 2);
    assert_int_equal(f.r.states[0], P2P_EXEC_STARTING);
    assert_true(f.r.pids[0] > 0);
    assert_int_equal(f.r.states[1], P2P_EXEC_RUNNING);
    assert_true(f.r.pids[f.r.n_states - 1] > 0);

    answer a;
    assert_int_equal(call(&f, "env", NULL, 0, &a), 0);
    wait_answers(&f, &a, 1, 3000);
    assert_int_equal(a.status, 0);
    assert_string_equal(json_string_value(json_object_get(a.result, "service")), "pysvc");
    assert_string_equal(json_string_value(json_object_get(a.result, "node")), "node-test");
    assert_string_equal(json_string_value(json_object_get(a.result, "cwd")), g_dir);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a.result, "settings"), "greeting")), 5);
    assert_true(json_is_true(json_object_get(a.result, "path")));
    assert_true(json_is_false(json_object_get(a.result, "home"))); /* only what we hand over */
    answers_free(&a, 1);

    /* a service error is passed through */
    assert_int_equal(call(&f, "fail", NULL, 0, &a), 0);
    wait_answers(&f, &a, 1, 3000);
    assert_int_equal(a.status, P2P_EXEC_SERVICE_ERROR);
    assert_string_equal(a.message, "no such thing");
    assert_int_equal(json_integer_value(json_object_get(a.result, "code")), 7);
    answers_free(&a, 1);

    /* 100 calls in flight at once, answered in reverse order; the 101st is refused */
    enum { N = 100 };
    answer as[N + 1];
    g_order = 0;
    for (int i = 0; i < N; i++)
        assert_int_equal(call(&f, "batch", json_pack("{s:i,s:i}", "n", N, "i", i), 5000, &as[i]), 0);
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.pending_calls, N);
    wait_answers(&f, as, N, 5000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(as[i].status, 0);
        assert_int_equal(json_integer_value(as[i].result), i);
        assert_int_equal(as[i].order, N - 1 - i);
    }
    answers_free(as, N);
    /* the cap on calls in flight */
    p2p__exec_free(f.p);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    f.o.max_pending = N;
    fx_start(&f);
    for (int i = 0; i < N; i++)
        assert_int_equal(call(&f, "batch", json_pack("{s:i,s:i}", "n", N, "i", i), 5000, &as[i]), 0);
    const char *why = NULL;
    assert_int_equal(p2p__exec_call(f.p, "echo", NULL, 0, on_answer, &as[N], &why), -EAGAIN);
    assert_non_null(strstr(why, "too many"));
    wait_answers(&f, as, N, 5000);
    answers_free(as, N);
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.pending_calls, 0);
    assert_int_equal(st.refused_calls, 1);
    /* bad arguments are refused without a callback */
    assert_int_equal(p2p__exec_call(f.p, "", NULL, 0, on_answer, &as[N], &why), -EINVAL);
    json_t *s = json_string("x");
    assert_int_equal(p2p__exec_call(f.p, "echo", s, 0, on_answer, &as[N], &why), -EINVAL);
    json_decref(s);

    /* stop + start is a restart: the start waits for the stop */
    int old_pid = f.r.pids[f.r.n_states - 1];
    int mark = f.r.n_states;
    assert_int_equal(p2p__exec_stop(f.p), 0);
    assert_int_equal(p2p__exec_start(f.p), 0);
    assert_int_equal(p2p__exec_state_get(f.p), P2P_EXEC_STOPPING);
    assert_true(run_until(&f, is_running, 5000));
    assert_int_equal(f.r.states[mark], P2P_EXEC_STOPPING);
    assert_int_equal(f.r.states[mark + 1], P2P_EXEC_STOPPED);
    assert_int_equal(f.r.states[mark + 2], P2P_EXEC_STARTING);
    assert_true(f.r.pids[f.r.n_states - 1] != old_pid);

    /* a clean stop: shutdown + EOF, the script exits 0 */
    assert_int_equal(p2p__exec_stop(f.p), 0);
    assert_true(run_until(&f, is_stopped, 3000));
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.last_exit_status, 0);
    assert_int_equal(st.pid, 0);
    assert_int_equal(call(&f, "echo", NULL, 0, &a), -ENOTCONN);
    fx_done(&f);
}

/* Not a benchmark, a figure for the record: calls per second through the pipe
 * to the Python script, 100 in flight. */
static void test_throughput(void **state)
{
    fx f;
    fx_init(&f, "normal");
    fx_start(&f);
    enum { N = 100, ROUNDS = 30 };
    answer as[N];
    uint64_t t0 = uv_hrtime();
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++)
            assert_int_equal(call(&f, "echo", json_pack("{s:i}", "i", i), 5000, &as[i]), 0);
        wait_answers(&f, as, N, 5000);
        for (int i = 0; i < N; i++)
            assert_int_equal(json_integer_value(json_object_get(as[i].result, "i")), i);
        answers_free(as, N);
    }
    double s = (double)(uv_hrtime() - t0) / 1e9;
    printf("# %d calls to a Python exec service, %d in flight: %.0f calls/s\n", N * ROUNDS, N, N * ROUNDS / s);
    fx_done(&f);
}

static void test_call_timeout(void **state)
{
    fx f;
    fx_init(&f, "normal");
    fx_start(&f);
    answer a[2];
    uint64_t t0 = now_ms();
    assert_int_equal(call(&f, "hang", NULL, 200, &a[0]), 0);
    assert_int_equal(call(&f, "late", json_pack("{s:f}", "s", 0.4), 150, &a[1]), 0);
    wait_answers(&f, a, 2, 3000);
    assert_int_equal(a[0].status, -ETIMEDOUT);
    assert_int_equal(a[1].status, -ETIMEDOUT);
    assert_non_null(strstr(a[0].message, "did not answer within 200 ms"));
    assert_true(a[0].at_ms - t0 >= 190 && a[0].at_ms - t0 < 1000);
    assert_true(a[1].at_ms - t0 >= 140 && a[1].at_ms < a[0].at_ms);
    answers_free(a, 2);
    /* the late answer arrives, is ignored and counted; the service still works */
    run_for(&f, 500);
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.late_answers, 1);
    assert_int_equal(st.call_timeouts, 2);
    assert_int_equal(st.state, P2P_EXEC_RUNNING);
    assert_int_equal(call(&f, "echo", json_pack("{s:i}", "x", 1), 0, &a[0]), 0);
    wait_answers(&f, a, 1, 3000);
    assert_int_equal(a[0].status, 0);
    answers_free(a, 1);
    fx_done(&f);
}

static void test_crash_backoff_failed(void **state)
{
    fx f;
    fx_init(&f, "normal");
    f.o.backoff_initial_ms = 100;
    f.o.max_failures = 3;
    f.o.failure_window_ms = 20000;
    fx_start(&f);
    uint64_t backoffs[2];
    for (int round = 0; round < 3; round++) {
        answer a[4];
        for (int i = 0; i < 3; i++)
            assert_int_equal(call(&f, "hang", NULL, 10000, &a[i]), 0);
        assert_int_equal(call(&f, "crash", NULL, 10000, &a[3]), 0);
        uint64_t t0 = now_ms();
        wait_answers(&f, a, 4, 3000);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(a[i].status, -ECONNRESET);
            assert_non_null(strstr(a[i].message, "crashed before answering (exited with status 3)"));
            assert_true(a[i].at_ms - t0 < 1000); /* at once, not at their timeout */
        }
        answers_free(a, 4);
        if (round < 2) {
            assert_true(is_restarting(&f));
            p2p_exec_status st;
            p2p__exec_status_get(f.p, &st);
            backoffs[round] = st.backoff_ms;
            assert_string_equal(st.reason, "exited with status 3");
            uint64_t t1 = now_ms();
            assert_true(run_until(&f, is_running, 5000));
            assert_true(now_ms() - t1 >= st.backoff_ms - 10);
            assert_int_equal(f.r.restarts, round + 1);
        }
    }
    /* 100 ms ±20 %, then 200 ms ±20 % */
    assert_true(backoffs[0] >= 80 && backoffs[0] <= 120);
    assert_true(backoffs[1] >= 160 && backoffs[1] <= 240);
    /* the third failure within the window: FAILED, and it stays down */
    assert_true(run_until(&f, is_failed, 2000));
    assert_string_equal(f.r.reason, "exited with status 3");
    assert_non_null(strstr(f.r.last_supervisor, "not restarting"));
    run_for(&f, 400);
    assert_true(is_failed(&f));
    answer a;
    assert_int_equal(call(&f, "echo", NULL, 0, &a), -ENOTCONN);
    /* an operator's start brings it back with a fresh count */
    assert_int_equal(p2p__exec_start(f.p), 0);
    assert_true(run_until(&f, is_running, 5000));
    assert_int_equal(f.r.restarts, 0);
    assert_string_equal(f.r.reason, "");
    fx_done(&f);
}

static void test_garbage(void **state)
{
    fx f;
    fx_init(&f, "normal");
    f.o.backoff_initial_ms = 50;
    f.o.max_line = 1024;
    fx_start(&f);
    answer a[4];
    for (int i = 0; i < 3; i++)
        assert_int_equal(call(&f, "hang", NULL, 10000, &a[i]), 0);
    assert_int_equal(call(&f, "garbage", NULL, 10000, &a[3]), 0);
    wait_answers(&f, a, 4, 3000);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i].status, -EPROTO);
        assert_string_equal(a[i].message, "service wrote an invalid message: not JSON");
    }
    answers_free(a, 4);
    assert_true(run_until(&f, is_restarting, 3000));
    assert_string_equal(f.r.reason, "invalid output: not JSON");
    assert_true(run_until(&f, is_running, 5000));
    /* a line over the limit (the echo of 2000 bytes) is garbage too */
    char big[2001];
    memset(big, 'a', 2000);
    big[2000] = '\0';
    assert_int_equal(call(&f, "echo", json_pack("{s:s}", "s", big), 10000, &a[0]), 0);
    wait_answers(&f, a, 1, 3000);
    assert_int_equal(a[0].status, -EPROTO);
    assert_string_equal(a[0].message, "service wrote an invalid message: a line longer than 1024 bytes");
    answers_free(a, 1);
    assert_true(run_until(&f, is_restarting, 3000));
    assert_true(run_until(&f, is_running, 5000));
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.invalid_messages, 2);
    assert_int_equal(st.restarts, 2);
    fx_done(&f);
}

static fx *g_fx;
static int flood_reported(fx *f)
{
    p2p_exec_status st;
    p2p__exec_status_get(f->p, &st);
    return st.log_lines + st.log_suppressed == 20001 && f->r.suppressed_lines == (int)st.log_suppressed;
}

static void test_stderr_flood(void **state)
{
    fx f;
    fx_init(&f, "normal");
    f.o.log_rate = 50;
    f.o.max_log_line = 256;
    fx_start(&f);
    answer a;
    enum { LINES = 20000 };
    assert_int_equal(call(&f, "flood", json_pack("{s:i}", "n", LINES), 10000, &a), 0);
    wait_answers(&f, &a, 1, 5000);
    assert_int_equal(a.status, 0);
    answers_free(&a, 1);
    /* the suppressed lines are reported once their second is over, while the
     * process keeps running */
    g_fx = &f;
    assert_true(run_until(&f, flood_reported, 3000));
    assert_true(is_running(&f));
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    /* every line was either logged or counted as suppressed, and reported */
    assert_int_equal(st.log_lines + st.log_suppressed, LINES + 1);
    assert_true(st.log_lines <= 50 * 3); /* the flood lasts well under 3 s */
    assert_int_equal(f.r.n_logs[P2P_EXEC_FROM_STDERR], (int)st.log_lines);
    assert_int_equal(f.r.suppressed_lines, (int)st.log_suppressed);
    /* the 10000-byte line came first: cut at 256 bytes and marked */
    assert_int_equal(f.r.cut_lines, 1);
    assert_int_equal(f.r.longest_log, 256 + 6);
    assert_int_equal(strncmp(f.r.stderr_first, "xxxx", 4), 0);
    fx_done(&f);
}

static void test_ignores_sigterm(void **state)
{
    fx f;
    fx_init(&f, "ignore_term");
    f.o.stop_timeout_ms = 300;
    f.o.kill_grace_ms = 300;
    fx_start(&f);
    answer a;
    assert_int_equal(call(&f, "hang", NULL, 10000, &a), 0);
    uint64_t t0 = now_ms();
    assert_int_equal(p2p__exec_stop(f.p), 0);
    assert_int_equal(p2p__exec_state_get(f.p), P2P_EXEC_STOPPING);
    assert_true(run_until(&f, is_stopped, 3000));
    uint64_t took = now_ms() - t0;
    assert_true(took >= 590 && took < 2000); /* stop timeout + kill grace */
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.last_term_signal, SIGKILL);
    wait_answers(&f, &a, 1, 100);
    assert_int_equal(a.status, -ECONNRESET);
    assert_non_null(strstr(a.message, "stopped before answering (killed by signal 9)"));
    answers_free(&a, 1);
    fx_done(&f);
}

static void test_stdin_not_read(void **state)
{
    fx f;
    fx_init(&f, "noread");
    f.o.max_stdin_queue = 64 * 1024;
    f.o.stop_timeout_ms = 200;
    fx_start(&f);
    char *blob = malloc(16 * 1024 + 1);
    memset(blob, 'b', 16 * 1024);
    blob[16 * 1024] = '\0';
    enum { MAXC = 400 };
    answer *as = calloc(MAXC, sizeof *as);
    int accepted = 0, r = 0;
    for (; accepted < MAXC; accepted++) {
        r = call(&f, "echo", json_pack("{s:s}", "b", blob), 10000, &as[accepted]);
        if (r != 0)
            break;
    }
    assert_int_equal(r, -ENOBUFS); /* refused at once, a bounded queue */
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    assert_true(st.stdin_queued <= 64 * 1024 + 17 * 1024);
    assert_int_equal(st.pending_calls, (size_t)accepted);
    /* the stop: SIGTERM after the stop timeout (the script does not read its
     * stdin, so it never sees shutdown or EOF); pending calls fail */
    assert_int_equal(p2p__exec_stop(f.p), 0);
    assert_true(run_until(&f, is_stopped, 3000));
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.last_term_signal, SIGTERM);
    wait_answers(&f, as, (size_t)accepted, 100);
    for (int i = 0; i < accepted; i++)
        assert_int_equal(as[i].status, -ECONNRESET);
    answers_free(as, (size_t)accepted);
    free(as);
    free(blob);
    fx_done(&f);
}

static void test_start_failures(void **state)
{
    /* an error answer to initialize */
    fx f;
    fx_init(&f, "init_error");
    f.o.backoff_initial_ms = 20;
    f.o.max_failures = 2;
    fx_create(&f);
    assert_int_equal(p2p__exec_start(f.p), 0);
    assert_true(run_until(&f, is_failed, 5000));
    assert_string_equal(f.r.reason, "initialize failed: bad settings");
    fx_done(&f);
    /* no answer within the start timeout */
    fx_init(&f, "slow_start");
    f.o.start_timeout_ms = 300;
    f.o.max_failures = 1;
    fx_create(&f);
    uint64_t t0 = now_ms();
    assert_int_equal(p2p__exec_start(f.p), 0);
    assert_true(run_until(&f, is_failed, 5000));
    assert_true(now_ms() - t0 >= 290);
    assert_non_null(strstr(f.r.reason, "start timeout"));
    fx_done(&f);
    /* a command that does not exist: the trampoline says so and exits 127 */
    fx_init(&f, "normal");
    char *argv[] = {"/nonexistent/p2p-test-command", NULL};
    f.o.argv = argv;
    f.o.max_failures = 1;
    fx_create(&f);
    assert_int_equal(p2p__exec_start(f.p), 0);
    assert_true(run_until(&f, is_failed, 5000));
    assert_string_equal(f.r.reason, "exited with status 127");
    assert_non_null(strstr(f.r.stderr_first, "cannot run '/nonexistent/p2p-test-command'"));
    fx_done(&f);
    /* without the trampoline, uv_spawn itself fails */
    fx_init(&f, "normal");
    f.o.argv = argv;
    f.o.trampoline = "";
    f.o.max_failures = 1;
    fx_create(&f);
    assert_int_equal(p2p__exec_start(f.p), 0);
    assert_true(run_until(&f, is_failed, 5000));
    assert_non_null(strstr(f.r.reason, "cannot start /nonexistent/p2p-test-command"));
    fx_done(&f);
    /* options that are missing */
    const char *why = NULL;
    p2p_exec_proc *p = NULL;
    p2p_exec_opts o = {.name = "x", .dir = "/"};
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_int_equal(p2p__exec_new(&loop, &o, &p, &why), -EINVAL);
    assert_string_equal(why, "a command is required");
    uv_loop_close(&loop);
}

static int got_request(fx *f)
{
    return f->r.n_requests > 0 && f->r.n_notify > 0 && f->r.hello_log > 0 && f->r.bad_log > 0;
}

static void test_requests_and_notifications(void **state)
{
    fx f;
    fx_init(&f, "normal");
    fx_start(&f);
    answer a;
    assert_int_equal(call(&f, "ask", NULL, 5000, &a), 0);
    assert_true(run_until(&f, got_request, 3000));
    assert_string_equal(f.r.req_method, "call");
    assert_string_equal(json_string_value(json_object_get(f.r.req_params, "method")), "other/x");
    assert_string_equal(f.r.notify_method, "event");
    assert_false(a.done);
    /* the node answers later; the service gets it and answers our call with it */
    json_t *res = json_pack("{s:i}", "answer", 42);
    assert_int_equal(p2p__exec_reply(f.p, f.r.token, res), 0);
    assert_int_equal(p2p__exec_reply(f.p, f.r.token, res), -ENOENT); /* once only */
    assert_int_equal(p2p__exec_reply_error(f.p, 9999, 1, "x"), -ENOENT);
    json_decref(res);
    wait_answers(&f, &a, 1, 3000);
    assert_int_equal(a.status, 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a.result, "got"), "answer")), 42);
    answers_free(&a, 1);
    p2p_exec_status st;
    p2p__exec_status_get(f.p, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.inbound_requests, 0);
    assert_int_equal(st.notifications, 3);
    fx_done(&f);
}

static void test_free_while_running(void **state)
{
    fx f;
    fx_init(&f, "normal");
    fx_start(&f);
    answer a[2];
    assert_int_equal(call(&f, "hang", NULL, 10000, &a[0]), 0);
    assert_int_equal(call(&f, "ask", NULL, 10000, &a[1]), 0);
    assert_true(run_until(&f, got_request, 3000));
    int pid = f.r.pids[f.r.n_states - 1];
    p2p__exec_free(f.p); /* calls fail inside free */
    assert_true(a[0].done && a[1].done);
    assert_int_equal(a[0].status, -ECANCELED);
    answers_free(a, 2);
    f.p = NULL;
    /* the stop goes on without the proc's owner; the loop runs dry */
    uint64_t end = now_ms() + 5000;
    while (uv_loop_alive(&f.loop) && now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(uv_loop_close(&f.loop), 0);
    assert_int_equal(kill(pid, 0), -1);
    json_decref(f.r.req_params);
}

/* A callback that frees the proc: the other pending calls are answered inside
 * that free, none after it. */
typedef struct freer {
    fx *f;
    answer *others;
    int others_done_when_free_returned;
} freer;

static void on_answer_free(p2p_exec_proc *p, int status, json_t *result, const char *message, void *udata)
{
    freer *fr = udata;
    assert_int_equal(status, -ECONNRESET);
    p2p__exec_free(p);
    fr->f->p = NULL;
    fr->others_done_when_free_returned = fr->others[0].done && fr->others[1].done;
}

static int freed(fx *f)
{
    return f->p == NULL;
}

static void test_free_from_callback(void **state)
{
    fx f;
    fx_init(&f, "normal");
    fx_start(&f);
    answer a[3];
    freer fr = {.f = &f, .others = a};
    const char *why;
    assert_int_equal(p2p__exec_call(f.p, "hang", NULL, 10000, on_answer_free, &fr, &why), 0);
    assert_int_equal(call(&f, "hang", NULL, 10000, &a[0]), 0);
    assert_int_equal(call(&f, "hang", NULL, 10000, &a[1]), 0);
    assert_int_equal(call(&f, "crash", NULL, 10000, &a[2]), 0);
    assert_true(run_until(&f, freed, 3000));
    assert_true(fr.others_done_when_free_returned);
    assert_true(a[2].done);
    answers_free(a, 3);
    uint64_t end = now_ms() + 5000;
    while (uv_loop_alive(&f.loop) && now_ms() < end)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(uv_loop_close(&f.loop), 0);
}

static void test_opts_from_manifest(void **state)
{
    const char *text = "{\"name\":\"pysvc\",\"version\":\"1.2.3\",\"type\":\"exec\","
                       "\"command\":[\"python3\",\"main.py\"],\"settings\":{\"a\":1},"
                       "\"timeouts\":{\"start\":2,\"stop\":3,\"call\":0.5}}";
    p2p_manifest m;
    char *err = NULL;
    assert_int_equal(p2p__manifest_parse(text, strlen(text), "pysvc", "manifest.json", &m, &err), 0);
    p2p_exec_opts o;
    p2p__exec_opts_from_manifest(&o, &m, "/srv/pysvc", "n1");
    assert_string_equal(o.name, "pysvc");
    assert_string_equal(o.version, "1.2.3");
    assert_string_equal(o.argv[1], "main.py");
    assert_null(o.argv[2]);
    assert_int_equal(o.start_timeout_ms, 2000);
    assert_int_equal(o.stop_timeout_ms, 3000);
    assert_int_equal(o.call_timeout_ms, 500);
    assert_int_equal(json_integer_value(json_object_get(o.settings, "a")), 1);
    assert_string_equal(o.dir, "/srv/pysvc");
    p2p__manifest_free(&m);
}

/* ---- the child dies with its parent ------------------------------------------------------- */

static int proc_gone(int pid)
{
    if (kill(pid, 0) != 0)
        return 1;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'); /* a zombie nobody reaps is dead */
}

/* Forks a "node" that starts the noread service (it never sees stdin EOF) and
 * reports its pid, then kills the node with SIGKILL. Returns the service's pid
 * and whether it was gone within a second. */
static int parent_dies(const char *trampoline, int *gone)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t node = fork();
    assert_true(node >= 0);
    if (node == 0) {
        close(fds[0]);
        fx f;
        fx_init(&f, "noread");
        f.o.trampoline = trampoline;
        const char *why;
        if (p2p__exec_new(&f.loop, &f.o, &f.p, &why) != 0 || p2p__exec_start(f.p) != 0)
            _exit(1);
        uint64_t end = now_ms() + 5000;
        while (!is_running(&f) && now_ms() < end)
            uv_run(&f.loop, UV_RUN_ONCE);
        p2p_exec_status st;
        p2p__exec_status_get(f.p, &st);
        int pid = st.state == P2P_EXEC_RUNNING ? st.pid : 0;
        if (write(fds[1], &pid, sizeof pid) != sizeof pid)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    int pid = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 8000), 1);
    assert_int_equal(read(fds[0], &pid, sizeof pid), sizeof pid);
    close(fds[0]);
    assert_true(pid > 0);
    assert_false(proc_gone(pid));
    kill(node, SIGKILL);
    waitpid(node, NULL, 0);
    uint64_t end = now_ms() + 1000;
    while (!proc_gone(pid) && now_ms() < end)
        usleep(10000);
    *gone = proc_gone(pid);
    return pid;
}

static void test_dies_with_parent(void **state)
{
    int gone = 0;
    parent_dies(NULL, &gone); /* the default trampoline */
    assert_true(gone);
    /* control: spawned directly, the child outlives the node (so the check above can fail) */
    int pid = parent_dies("", &gone);
    assert_false(gone);
    kill(pid, SIGKILL);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    char tmpl[] = "/tmp/p2p-test-exec-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    /* the cwd the child reports is the resolved path */
    char *real = realpath(tmpl, NULL);
    snprintf(g_dir, sizeof g_dir, "%s", real);
    free(real);
    char path[300];
    snprintf(path, sizeof path, "%s/svc.py", g_dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(SCRIPT, fp);
    fclose(fp);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], P2P_EXEC_TRAMPOLINE_ARG) == 0)
        return p2p__exec_trampoline_main(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* as the agent does: a dead child's pipe gives EPIPE */
    if (access(g_python, X_OK) != 0) {
        printf("# skipped: no %s\n", g_python);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_calls),
        cmocka_unit_test(test_throughput),
        cmocka_unit_test(test_call_timeout),
        cmocka_unit_test(test_crash_backoff_failed),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_stderr_flood),
        cmocka_unit_test(test_ignores_sigterm),
        cmocka_unit_test(test_stdin_not_read),
        cmocka_unit_test(test_start_failures),
        cmocka_unit_test(test_requests_and_notifications),
        cmocka_unit_test(test_free_while_running),
        cmocka_unit_test(test_free_from_callback),
        cmocka_unit_test(test_dies_with_parent),
        cmocka_unit_test(test_opts_from_manifest),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
