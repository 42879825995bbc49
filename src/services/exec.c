/*
 * exec.c — one external program supervised and spoken to over JSON-RPC lines
 * (the protocol and the ownership rules are in exec.h).
 *
 * A proc runs at most one process at a time, its "incarnation": the process
 * handle and three pipes embedded in the proc, initialised at each spawn and
 * closed together when the incarnation ends. The incarnation ends when the
 * process has exited and both its stdout and stderr have reached EOF (what a
 * service writes just before it exits is still read), or one second after the
 * exit when a grandchild keeps a pipe open. Only when all four handles are
 * closed does the proc decide what comes next (stopped, restart, failed), so
 * a new spawn never reuses a handle that is still closing.
 *
 * One phase timer serves the transitions that are mutually exclusive: the
 * start timeout (STARTING), the SIGTERM and SIGKILL steps of a stop, the drain
 * after an exit, the backoff before a restart. A second timer serves the call
 * deadlines: it is armed for the earliest one, and when it fires the pending
 * calls (at most max_pending) are scanned once. Calls and the service's own
 * requests live in two small hash tables keyed by sequential numbers.
 *
 * User callbacks may re-enter any function of this module, p2p__exec_free
 * included. Lists are detached before their callbacks run, and memory is only
 * released in a close callback, so a callback never pulls the proc away from
 * under the code that called it.
 */
#include "services/exec.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "core/util.h"
#include "services/execproto.h"
#include "services/manifest.h"

#define DRAIN_MS 1000 /* after an exit, how long we wait for EOF on stdout/stderr */
#define CUT_MARK " [cut]"
#define READ_CHUNK 65536

/* ---- a hash table of numbered entries, with a list for iteration ------------- */

typedef struct slot {
    uint64_t key;
    struct slot *hnext;
    struct slot *prev, *next;
} slot;

typedef struct table {
    slot **buckets;
    size_t mask, n;
    slot head; /* circular list sentinel, oldest first */
} table;

static void table_init(table *t, size_t cap)
{
    size_t b = 16;
    while (b < cap)
        b <<= 1;
    t->buckets = p2p__xcalloc(b, sizeof(slot *));
    t->mask = b - 1;
    t->n = 0;
    t->head.prev = t->head.next = &t->head;
}

static void table_add(table *t, slot *s)
{
    slot **b = &t->buckets[s->key & t->mask];
    s->hnext = *b;
    *b = s;
    s->prev = t->head.prev;
    s->next = &t->head;
    t->head.prev->next = s;
    t->head.prev = s;
    t->n++;
}

static slot *table_find(table *t, uint64_t key)
{
    for (slot *s = t->buckets[key & t->mask]; s; s = s->hnext)
        if (s->key == key)
            return s;
    return NULL;
}

static void table_del(table *t, slot *s)
{
    for (slot **b = &t->buckets[s->key & t->mask]; *b; b = &(*b)->hnext)
        if (*b == s) {
            *b = s->hnext;
            break;
        }
    s->prev->next = s->next;
    s->next->prev = s->prev;
    s->prev = s->next = s->hnext = NULL;
    t->n--;
}

/* ---- the proc ----------------------------------------------------------------- */

typedef struct call {
    slot s; /* first: a slot* is a call* */
    uint64_t deadline;
    uint32_t timeout_ms;
    p2p_exec_call_cb cb;
    void *udata;
    int fail_status;      /* in p->dying */
    const char *fail_msg; /* borrowed */
} call;

typedef struct inreq {
    slot s;
    json_t *id; /* the service's id, owned */
} inreq;

typedef struct wreq {
    uv_write_t req;
    char *data;
} wreq;

enum phase { PHASE_NONE, PHASE_START, PHASE_STDOUT_CLOSED, PHASE_TERM, PHASE_KILL, PHASE_DRAIN, PHASE_BACKOFF };

struct p2p_exec_proc {
    uv_loop_t *loop;
    char *name, *version, *node_id, *dir, *trampoline;
    char **argv, **extra_env;
    json_t *settings;
    p2p_exec_opts o; /* numbers with defaults applied; its pointers are not used */
    p2p_exec_callbacks cb;
    void *udata;
    p2p_exec_state state;
    int freeing, timers_open;
    int start_after_stop; /* p2p__exec_start while STOPPING */

    /* the incarnation */
    int have_child, open_handles, closing, process_open;
    uv_process_t process;
    uv_pipe_t in, out, err;
    uv_shutdown_t shut_req;
    int pid, exited, out_eof, err_eof, in_shut, killed;
    int64_t exit_status;
    int term_signal;
    uint64_t init_id, running_at;
    char end_reason[256]; /* a reason this module found; wins over the exit status */
    p2p_linebuf outbuf;
    char *errline; /* the stderr line being gathered, max_log_line bytes */
    size_t errlen;
    int errcut;
    char *rbuf, *erbuf; /* read buffers */
    char *logbuf;       /* a sanitized log line, max_log_line + sizeof CUT_MARK */

    uv_timer_t phase_timer, call_timer;
    enum phase phase;
    uint64_t call_due; /* when call_timer fires, 0 when idle */

    table calls, inbound;
    slot dying; /* calls being failed, see drain_dying */
    uint64_t next_id, next_token;

    /* supervision */
    uint64_t fail_at[P2P_EXEC_MAX_FAILURES_CAP]; /* ring of failure times */
    size_t fail_n, fail_head;
    uint32_t consecutive, restarts;
    uint64_t backoff_ms, rng;
    char reason[256];
    int last_exit_status, last_term_signal;

    /* log rate */
    uint64_t log_window;
    uint32_t log_in_window;
    uint64_t log_held; /* suppressed in this window, not reported yet */

    uint64_t n_calls, n_call_errors, n_call_timeouts, n_late, n_refused, n_requests, n_notifications, n_log_lines,
        n_log_suppressed, n_invalid;
};

static const char *const state_names[] = {"stopped", "starting", "running", "restarting", "stopping", "failed"};
static const char *const level_names[] = {"debug", "info", "warning", "error", "critical"};

const char *p2p__exec_state_name(p2p_exec_state s)
{
    return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "?";
}

const char *p2p__exec_log_level_name(p2p_exec_log_level l)
{
    return (unsigned)l < sizeof level_names / sizeof *level_names ? level_names[l] : "?";
}

const char *p2p__exec_name(const p2p_exec_proc *p)
{
    return p->name;
}

p2p_exec_state p2p__exec_state_get(const p2p_exec_proc *p)
{
    return p->state;
}

static void spawn_child(p2p_exec_proc *p);
static void on_phase_timer(uv_timer_t *t);
static void on_call_timer(uv_timer_t *t);
static void arm_call_timer(p2p_exec_proc *p, uint64_t deadline);
static void begin_stop(p2p_exec_proc *p);
static void finish_free(p2p_exec_proc *p);

/* ---- status, logs --------------------------------------------------------------- */

static size_t failures_in_window(const p2p_exec_proc *p, uint64_t now)
{
    size_t n = 0, cap = p->o.max_failures;
    for (size_t i = 0; i < p->fail_n; i++) {
        uint64_t t = p->fail_at[(p->fail_head + cap - 1 - i) % cap];
        if (now - t <= p->o.failure_window_ms)
            n++;
    }
    return n;
}

void p2p__exec_status_get(const p2p_exec_proc *p, p2p_exec_status *st)
{
    memset(st, 0, sizeof *st);
    uint64_t now = uv_now(p->loop);
    st->state = p->state;
    st->pid = p->have_child && !p->exited ? p->pid : 0;
    st->reason = p->reason;
    st->restarts = p->restarts;
    st->failures = (uint32_t)failures_in_window(p, now);
    st->backoff_ms = p->state == P2P_EXEC_RESTARTING ? p->backoff_ms : 0;
    st->running_ms = p->state == P2P_EXEC_RUNNING ? now - p->running_at : 0;
    st->last_exit_status = p->last_exit_status;
    st->last_term_signal = p->last_term_signal;
    st->pending_calls = p->calls.n;
    st->inbound_requests = p->inbound.n;
    st->stdin_queued = p->have_child && !p->closing ? uv_stream_get_write_queue_size((uv_stream_t *)&p->in) : 0;
    st->calls = p->n_calls;
    st->call_errors = p->n_call_errors;
    st->call_timeouts = p->n_call_timeouts;
    st->late_answers = p->n_late;
    st->refused_calls = p->n_refused;
    st->requests = p->n_requests;
    st->notifications = p->n_notifications;
    st->log_lines = p->n_log_lines;
    st->log_suppressed = p->n_log_suppressed;
    st->invalid_messages = p->n_invalid;
}

static void emit_state(p2p_exec_proc *p)
{
    if (p->freeing || !p->cb.on_state)
        return;
    p2p_exec_status st;
    p2p__exec_status_get(p, &st);
    p->cb.on_state(p, &st, p->udata);
}

static void set_state(p2p_exec_proc *p, p2p_exec_state s)
{
    p->state = s;
    emit_state(p);
}

/* Hands a line to on_log: cut at max_log_line, control characters replaced
 * (a service must not be able to forge the node's log lines). */
static void deliver_log(p2p_exec_proc *p, p2p_exec_log_level level, p2p_exec_log_source src, const char *msg,
                        size_t len, int cut)
{
    if (p->freeing || !p->cb.on_log)
        return;
    if (len > p->o.max_log_line) {
        len = p->o.max_log_line;
        cut = 1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        p->logbuf[i] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
    }
    if (cut) {
        memcpy(p->logbuf + len, CUT_MARK, sizeof CUT_MARK);
    } else {
        p->logbuf[len] = '\0';
    }
    p->cb.on_log(p, level, src, p->logbuf, p->udata);
}

static void supervisor_log(p2p_exec_proc *p, p2p_exec_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void supervisor_log(p2p_exec_proc *p, p2p_exec_log_level level, const char *fmt, ...)
{
    if (p->freeing || !p->cb.on_log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    deliver_log(p, level, P2P_EXEC_FROM_SUPERVISOR, line, strlen(line), 0);
}

static void flush_suppressed(p2p_exec_proc *p)
{
    if (p->log_held) {
        supervisor_log(p, P2P_EXEC_LOG_WARNING, "%llu log lines suppressed (more than %u per second)",
                       (unsigned long long)p->log_held, p->o.log_rate);
        p->log_held = 0;
    }
}

/* A line from the service (stderr or a log notification), rate limited. */
static void service_log(p2p_exec_proc *p, p2p_exec_log_level level, p2p_exec_log_source src, const char *msg,
                        size_t len, int cut)
{
    uint64_t now = uv_now(p->loop);
    if (now - p->log_window >= 1000) {
        flush_suppressed(p);
        p->log_window = now;
        p->log_in_window = 0;
    }
    if (p->log_in_window >= p->o.log_rate) {
        if (p->log_held++ == 0)
            arm_call_timer(p, p->log_window + 1000);
        p->n_log_suppressed++;
        return;
    }
    p->log_in_window++;
    p->n_log_lines++;
    deliver_log(p, level, src, msg, len, cut);
}

/* ---- writing to the child -------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    free(w->data);
    free(w);
}

static int stdin_open(const p2p_exec_proc *p)
{
    return p->have_child && !p->closing && !p->exited && !p->in_shut && !p->killed;
}

/* Queues one message. 0, -ENOTCONN (no stdin to write to) or -ENOBUFS. */
static int send_msg(p2p_exec_proc *p, json_t *msg)
{
    if (!stdin_open(p))
        return -ENOTCONN;
    size_t len;
    char *data = p2p__exec_encode(msg, &len);
    if (!data)
        return -EINVAL;
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&p->in);
    if (queued > 0 && queued + len > p->o.max_stdin_queue) {
        free(data);
        return -ENOBUFS;
    }
    wreq *w = p2p__xmalloc(sizeof *w);
    w->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_written);
    if (r != 0) {
        free(data);
        free(w);
        return -ENOTCONN;
    }
    return 0;
}

static json_t *rpc_msg(void)
{
    return json_pack("{s:s}", "jsonrpc", "2.0");
}

/* ---- calls ---------------------------------------------------------------------- */

/* Calls that are being failed wait in p->dying, each with its status: a
 * callback may call, stop or free, and p2p__exec_free drains the same list, so
 * no callback runs after it has returned. */
static void move_to_dying(p2p_exec_proc *p, call *c, int status, const char *message)
{
    table_del(&p->calls, &c->s);
    c->fail_status = status;
    c->fail_msg = message;
    c->s.prev = p->dying.prev;
    c->s.next = &p->dying;
    p->dying.prev->next = &c->s;
    p->dying.prev = &c->s;
}

static void drain_dying(p2p_exec_proc *p)
{
    while (p->dying.next != &p->dying) {
        call *c = (call *)p->dying.next;
        c->s.next->prev = &p->dying;
        p->dying.next = c->s.next;
        char msg[96];
        const char *m = c->fail_msg;
        if (c->fail_status == -ETIMEDOUT) {
            snprintf(msg, sizeof msg, "service %s did not answer within %u ms", p->name, c->timeout_ms);
            m = msg;
            p->n_call_timeouts++;
        }
        p->n_call_errors++;
        c->cb(p, c->fail_status, NULL, m, c->udata);
        free(c);
    }
}

/* `message` must stay valid until this returns */
static void fail_calls(p2p_exec_proc *p, int status, const char *message)
{
    while (p->calls.head.next != &p->calls.head)
        move_to_dying(p, (call *)p->calls.head.next, status, message);
    drain_dying(p);
}

static void arm_call_timer(p2p_exec_proc *p, uint64_t deadline)
{
    if (p->freeing)
        return;
    if (p->call_due && p->call_due <= deadline)
        return;
    uint64_t now = uv_now(p->loop);
    p->call_due = deadline;
    uv_timer_start(&p->call_timer, on_call_timer, deadline > now ? deadline - now : 0, 0);
}

/* Call deadlines, and the report of suppressed log lines once their second is over. */
static void on_call_timer(uv_timer_t *t)
{
    p2p_exec_proc *p = t->data;
    uint64_t now = uv_now(p->loop), next = 0;
    p->call_due = 0;
    if (p->log_held && now - p->log_window >= 1000)
        flush_suppressed(p);
    for (slot *s = p->calls.head.next; s != &p->calls.head;) {
        slot *nx = s->next;
        call *c = (call *)s;
        if (c->deadline <= now)
            move_to_dying(p, c, -ETIMEDOUT, NULL);
        else if (!next || c->deadline < next)
            next = c->deadline;
        s = nx;
    }
    if (next)
        arm_call_timer(p, next);
    if (p->log_held)
        arm_call_timer(p, p->log_window + 1000);
    drain_dying(p);
}

int p2p__exec_call(p2p_exec_proc *p, const char *method, json_t *params, uint32_t timeout_ms, p2p_exec_call_cb cb,
                   void *udata, const char **err_desc)
{
    const char *why = NULL;
    int r = 0;
    json_t *msg = NULL;
    if (!method || !*method || strlen(method) > P2P_EXEC_MAX_METHOD || !cb ||
        (params && !json_is_object(params) && !json_is_array(params))) {
        why = "a call needs a method name and params that are an object, an array or absent";
        r = -EINVAL;
        goto out;
    }
    if (p->state != P2P_EXEC_RUNNING || p->freeing) {
        why = "service is not running";
        r = -ENOTCONN;
        goto out;
    }
    if (p->calls.n >= p->o.max_pending) {
        why = "too many calls in flight to this service";
        r = -EAGAIN;
        goto out;
    }
    uint64_t id = p->next_id++;
    msg = rpc_msg();
    json_object_set_new(msg, "id", json_integer((json_int_t)id));
    json_object_set_new(msg, "method", json_string(method));
    if (params)
        json_object_set(msg, "params", params);
    r = send_msg(p, msg);
    if (r == -ENOBUFS) {
        why = "service is not reading its input (stdin queue full)";
        goto out;
    } else if (r != 0) {
        why = "service is not running";
        r = -ENOTCONN;
        goto out;
    }
    if (!timeout_ms)
        timeout_ms = p->o.call_timeout_ms;
    call *c = p2p__xcalloc(1, sizeof *c);
    c->s.key = id;
    c->timeout_ms = timeout_ms;
    c->deadline = uv_now(p->loop) + timeout_ms;
    c->cb = cb;
    c->udata = udata;
    table_add(&p->calls, &c->s);
    p->n_calls++;
    arm_call_timer(p, c->deadline);
out:
    json_decref(msg);
    if (r != 0)
        p->n_refused++;
    if (err_desc)
        *err_desc = why;
    return r;
}

/* ---- requests from the service ----------------------------------------------------- */

static void clear_inbound(p2p_exec_proc *p)
{
    while (p->inbound.head.next != &p->inbound.head) {
        inreq *q = (inreq *)p->inbound.head.next;
        table_del(&p->inbound, &q->s);
        json_decref(q->id);
        free(q);
    }
}

static int answer(p2p_exec_proc *p, json_t *id, json_t *result, json_t *error)
{
    json_t *msg = rpc_msg();
    json_object_set(msg, "id", id);
    if (error)
        json_object_set_new(msg, "error", error);
    else
        json_object_set(msg, "result", result ? result : json_null());
    int r = send_msg(p, msg);
    json_decref(msg);
    return r;
}

static json_t *error_obj(int code, const char *message)
{
    return json_pack("{s:i,s:s}", "code", code, "message", message ? message : "");
}

static int reply(p2p_exec_proc *p, uint64_t token, json_t *result, json_t *error)
{
    slot *s = table_find(&p->inbound, token);
    if (!s) {
        json_decref(error);
        return -ENOENT;
    }
    inreq *q = (inreq *)s;
    table_del(&p->inbound, s);
    int r = answer(p, q->id, result, error);
    if (r == -ENOBUFS && !error)
        answer(p, q->id, NULL, error_obj(-32000, "answer too large for the service's input queue"));
    json_decref(q->id);
    free(q);
    return r == -ENOTCONN ? 0 : r; /* the process is going away: nothing to answer */
}

int p2p__exec_reply(p2p_exec_proc *p, uint64_t token, json_t *result)
{
    return reply(p, token, result, NULL);
}

int p2p__exec_reply_error(p2p_exec_proc *p, uint64_t token, int code, const char *message)
{
    return reply(p, token, NULL, error_obj(code, message));
}

int p2p__exec_notify(p2p_exec_proc *p, const char *method, json_t *params)
{
    json_t *msg = rpc_msg();
    json_object_set_new(msg, "method", json_string(method));
    if (params)
        json_object_set(msg, "params", params);
    int r = send_msg(p, msg);
    json_decref(msg);
    return r;
}

/* ---- reading the child's stdout --------------------------------------------------- */

static void kill_child(p2p_exec_proc *p, int sig)
{
    if (!p->have_child || p->exited || p->pid <= 0)
        return;
    if (sig == SIGKILL)
        p->killed = 1;
    /* The process leads its own group (UV_PROCESS_DETACHED): signal the group, so
     * what it forked goes too. The pid is still ours: it is not reaped yet. */
    if (kill(-p->pid, sig) != 0)
        uv_process_kill(&p->process, sig);
}

static void protocol_error(p2p_exec_proc *p, const char *why)
{
    if (p->end_reason[0])
        return;
    p->n_invalid++;
    snprintf(p->end_reason, sizeof p->end_reason, "invalid output: %s", why);
    supervisor_log(p, P2P_EXEC_LOG_ERROR, "service wrote an invalid message: %s; killing it", why);
    char msg[300];
    snprintf(msg, sizeof msg, "service wrote an invalid message: %s", why);
    if (!p->out_eof) {
        uv_read_stop((uv_stream_t *)&p->out);
        p->out_eof = 1;
    }
    kill_child(p, SIGKILL);
    fail_calls(p, -EPROTO, msg);
}

static void became_running(p2p_exec_proc *p)
{
    uv_timer_stop(&p->phase_timer);
    p->phase = PHASE_NONE;
    p->running_at = uv_now(p->loop);
    supervisor_log(p, P2P_EXEC_LOG_INFO, "running (pid %d%s)", p->pid, p->restarts ? ", restarted" : "");
    set_state(p, P2P_EXEC_RUNNING);
}

static void on_response(p2p_exec_proc *p, p2p_exec_msg *m)
{
    if (m->num_id == (int64_t)p->init_id && p->state == P2P_EXEC_STARTING) {
        if (m->result) {
            became_running(p);
        } else {
            const char *em = json_string_value(json_object_get(m->error, "message"));
            snprintf(p->end_reason, sizeof p->end_reason, "initialize failed: %.200s", em);
            supervisor_log(p, P2P_EXEC_LOG_ERROR, "%s", p->end_reason);
            kill_child(p, SIGKILL);
        }
        return;
    }
    slot *s = m->num_id >= 0 ? table_find(&p->calls, (uint64_t)m->num_id) : NULL;
    if (!s) {
        p->n_late++;
        return;
    }
    call *c = (call *)s;
    table_del(&p->calls, s);
    if (m->result) {
        c->cb(p, 0, m->result, NULL, c->udata);
    } else {
        p->n_call_errors++;
        c->cb(p, P2P_EXEC_SERVICE_ERROR, m->error, json_string_value(json_object_get(m->error, "message")), c->udata);
    }
    free(c);
}

static void on_request(p2p_exec_proc *p, p2p_exec_msg *m)
{
    p->n_requests++;
    if (p->inbound.n >= p->o.max_inbound) {
        answer(p, m->id, NULL, error_obj(-32000, "too many requests in flight"));
        return;
    }
    if (p->freeing || !p->cb.on_request) {
        answer(p, m->id, NULL, error_obj(-32601, "method not found"));
        return;
    }
    inreq *q = p2p__xcalloc(1, sizeof *q);
    q->s.key = ++p->next_token;
    q->id = json_incref(m->id);
    table_add(&p->inbound, &q->s);
    p->cb.on_request(p, m->method, m->params, q->s.key, p->udata);
}

static int log_level_parse(const char *s, p2p_exec_log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof *level_names; i++)
        if (strcmp(s, level_names[i]) == 0) {
            *out = (p2p_exec_log_level)i;
            return 0;
        }
    return -EINVAL;
}

static void on_log_notification(p2p_exec_proc *p, json_t *params)
{
    json_t *lv = json_object_get(params, "level"), *msg = json_object_get(params, "message");
    p2p_exec_log_level level;
    const char *why = NULL;
    if (!json_is_object(params))
        why = "params must be an object {\"level\", \"message\"}";
    else if (!json_is_string(lv) || log_level_parse(json_string_value(lv), &level) != 0)
        why = "\"level\" must be one of debug, info, warning, error, critical";
    else if (!json_is_string(msg))
        why = "\"message\" must be a string";
    else if (json_object_size(params) != 2)
        why = "only \"level\" and \"message\" are allowed";
    if (why) {
        supervisor_log(p, P2P_EXEC_LOG_WARNING, "bad log notification from the service: %s", why);
        return;
    }
    service_log(p, level, P2P_EXEC_FROM_SERVICE, json_string_value(msg), json_string_length(msg), 0);
}

static int on_out_line(const char *line, size_t len, void *arg)
{
    p2p_exec_proc *p = arg;
    p2p_exec_msg m;
    const char *why;
    if (p2p__exec_msg_parse(line, len, &m, &why) != 0) {
        protocol_error(p, why);
        return 1;
    }
    switch (m.kind) {
    case P2P_EXEC_RESPONSE:
        on_response(p, &m);
        break;
    case P2P_EXEC_REQUEST:
        on_request(p, &m);
        break;
    case P2P_EXEC_NOTIFICATION:
        p->n_notifications++;
        if (strcmp(m.method, "log") == 0)
            on_log_notification(p, m.params);
        else if (!p->freeing && p->cb.on_notify)
            p->cb.on_notify(p, m.method, m.params, p->udata);
        break;
    }
    p2p__exec_msg_free(&m);
    return p->end_reason[0] ? 1 : 0; /* killed meanwhile (e.g. a bad initialize) */
}

static void maybe_close(p2p_exec_proc *p);

static void on_out_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    p2p_exec_proc *p = h->data;
    *buf = uv_buf_init(p->rbuf, READ_CHUNK);
}

static void on_out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    p2p_exec_proc *p = s->data;
    if (nread > 0) {
        int r = p2p__linebuf_feed(&p->outbuf, buf->base, (size_t)nread, on_out_line, p);
        if (r == -EMSGSIZE) {
            char why[96];
            snprintf(why, sizeof why, "a line longer than %zu bytes", p->o.max_line);
            protocol_error(p, why);
        }
        return;
    }
    if (nread == 0)
        return;
    /* EOF or a read error: nothing more will come */
    if (!p->out_eof) {
        uv_read_stop(s);
        p->out_eof = 1;
    }
    if (!p->exited && !p->end_reason[0] && (p->state == P2P_EXEC_STARTING || p->state == P2P_EXEC_RUNNING)) {
        /* Usually the process is exiting and its SIGCHLD is on its way: give the
         * exit a moment to be seen before calling this a protocol failure. */
        p->phase = PHASE_STDOUT_CLOSED;
        uv_timer_start(&p->phase_timer, on_phase_timer, DRAIN_MS, 0);
    }
    maybe_close(p);
}

/* ---- stderr ------------------------------------------------------------------------- */

static void on_err_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    p2p_exec_proc *p = h->data;
    *buf = uv_buf_init(p->erbuf, 4096);
}

static void err_line_done(p2p_exec_proc *p)
{
    size_t len = p->errlen;
    if (len && p->errline[len - 1] == '\r')
        len--;
    if (len || p->errcut)
        service_log(p, P2P_EXEC_LOG_WARNING, P2P_EXEC_FROM_STDERR, p->errline, len, p->errcut);
    p->errlen = 0;
    p->errcut = 0;
}

static void on_err_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    p2p_exec_proc *p = s->data;
    if (nread > 0) {
        const char *d = buf->base;
        size_t n = (size_t)nread;
        while (n) {
            const char *nl = memchr(d, '\n', n);
            size_t take = nl ? (size_t)(nl - d) : n;
            size_t room = p->o.max_log_line - p->errlen;
            size_t copy = take < room ? take : room;
            memcpy(p->errline + p->errlen, d, copy);
            p->errlen += copy;
            if (copy < take)
                p->errcut = 1; /* the rest of the line is dropped */
            if (!nl)
                break;
            err_line_done(p);
            d += take + 1;
            n -= take + 1;
        }
        return;
    }
    if (nread == 0)
        return;
    if (p->errlen || p->errcut)
        err_line_done(p);
    if (!p->err_eof) {
        uv_read_stop(s);
        p->err_eof = 1;
    }
    maybe_close(p);
}

/* ---- the end of an incarnation -------------------------------------------------------- */

static void record_failure(p2p_exec_proc *p, const char *reason)
{
    uint64_t now = uv_now(p->loop);
    size_t cap = p->o.max_failures;
    if (p->running_at && now - p->running_at >= p->o.healthy_reset_ms)
        p->consecutive = 0;
    p->fail_at[p->fail_head] = now;
    p->fail_head = (p->fail_head + 1) % cap;
    if (p->fail_n < cap)
        p->fail_n++;
    if (failures_in_window(p, now) >= cap) {
        supervisor_log(p, P2P_EXEC_LOG_CRITICAL, "failed: %s (%u failures within %u ms); not restarting", reason,
                       p->o.max_failures, p->o.failure_window_ms);
        set_state(p, P2P_EXEC_FAILED);
        return;
    }
    uint64_t delay = p->o.backoff_initial_ms;
    for (uint32_t i = 0; i < p->consecutive && delay < p->o.backoff_max_ms; i++)
        delay *= 2;
    /* ±20 % jitter (xorshift64: no need for a strong generator here) */
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    delay = delay * 8 / 10 + (delay ? p->rng % (delay * 4 / 10 + 1) : 0);
    if (delay > p->o.backoff_max_ms)
        delay = p->o.backoff_max_ms;
    p->consecutive++;
    p->backoff_ms = delay;
    supervisor_log(p, P2P_EXEC_LOG_ERROR, "process ended: %s; restarting in %llu ms", reason,
                   (unsigned long long)delay);
    p->phase = PHASE_BACKOFF;
    uv_timer_start(&p->phase_timer, on_phase_timer, delay, 0);
    set_state(p, P2P_EXEC_RESTARTING);
}

static void incarnation_ended(p2p_exec_proc *p)
{
    p->have_child = 0;
    p->closing = 0;
    p2p__linebuf_free(&p->outbuf);
    flush_suppressed(p);
    char reason[256];
    if (p->end_reason[0])
        snprintf(reason, sizeof reason, "%s", p->end_reason);
    else if (p->term_signal)
        snprintf(reason, sizeof reason, "killed by signal %d", p->term_signal);
    else
        snprintf(reason, sizeof reason, "exited with status %lld", (long long)p->exit_status);
    p->last_exit_status = (int)p->exit_status;
    p->last_term_signal = p->term_signal;
    p->pid = 0;
    clear_inbound(p);
    int stopping = p->state == P2P_EXEC_STOPPING || p->freeing;
    if (!stopping)
        snprintf(p->reason, sizeof p->reason, "%s", reason);
    if (p->calls.n) {
        char msg[320];
        snprintf(msg, sizeof msg, "service %s %s before answering (%s)", p->name, stopping ? "stopped" : "crashed",
                 reason);
        fail_calls(p, -ECONNRESET, msg);
    }
    if (p->freeing) {
        p->state = P2P_EXEC_STOPPED;
        finish_free(p);
        return;
    }
    if (p->state == P2P_EXEC_STOPPING) {
        supervisor_log(p, P2P_EXEC_LOG_INFO, "stopped (%s)", reason);
        int again = p->start_after_stop;
        p->start_after_stop = 0;
        set_state(p, P2P_EXEC_STOPPED);
        if (again && p->state == P2P_EXEC_STOPPED)
            p2p__exec_start(p);
        return;
    }
    record_failure(p, reason);
}

static void on_handle_closed(uv_handle_t *h)
{
    p2p_exec_proc *p = h->data;
    if (--p->open_handles == 0)
        incarnation_ended(p);
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

static void begin_close(p2p_exec_proc *p)
{
    if (p->closing)
        return;
    p->closing = 1;
    if (p->phase != PHASE_BACKOFF) {
        uv_timer_stop(&p->phase_timer);
        p->phase = PHASE_NONE;
    }
    close_if_open((uv_handle_t *)&p->in);
    close_if_open((uv_handle_t *)&p->out);
    close_if_open((uv_handle_t *)&p->err);
    if (p->process_open) {
        p->process_open = 0;
        uv_close((uv_handle_t *)&p->process, on_handle_closed);
    }
}

static void maybe_close(p2p_exec_proc *p)
{
    if (p->exited && p->out_eof && p->err_eof)
        begin_close(p);
}

static void on_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    p2p_exec_proc *p = proc->data;
    p->exited = 1;
    p->exit_status = exit_status;
    p->term_signal = term_signal;
    p->process_open = 0;
    uv_close((uv_handle_t *)&p->process, on_handle_closed);
    if (p->out_eof && p->err_eof) {
        begin_close(p);
        return;
    }
    p->phase = PHASE_DRAIN; /* a grandchild may hold the pipes: wait a little, then close */
    uv_timer_start(&p->phase_timer, on_phase_timer, DRAIN_MS, 0);
}

/* ---- the phase timer ---------------------------------------------------------------- */

static void on_phase_timer(uv_timer_t *t)
{
    p2p_exec_proc *p = t->data;
    enum phase ph = p->phase;
    p->phase = PHASE_NONE;
    switch (ph) {
    case PHASE_START:
        snprintf(p->end_reason, sizeof p->end_reason, "start timeout (no answer to initialize within %u ms)",
                 p->o.start_timeout_ms);
        supervisor_log(p, P2P_EXEC_LOG_ERROR, "%s; killing it", p->end_reason);
        kill_child(p, SIGKILL);
        break;
    case PHASE_STDOUT_CLOSED:
        snprintf(p->end_reason, sizeof p->end_reason, "closed its stdout");
        supervisor_log(p, P2P_EXEC_LOG_ERROR, "service closed its stdout but did not exit; killing it");
        kill_child(p, SIGKILL);
        break;
    case PHASE_TERM:
        supervisor_log(p, P2P_EXEC_LOG_WARNING, "still running %u ms after shutdown: sending SIGTERM",
                       p->o.stop_timeout_ms);
        kill_child(p, SIGTERM);
        p->phase = PHASE_KILL;
        uv_timer_start(&p->phase_timer, on_phase_timer, p->o.kill_grace_ms, 0);
        break;
    case PHASE_KILL:
        supervisor_log(p, P2P_EXEC_LOG_WARNING, "still running %u ms after SIGTERM: sending SIGKILL",
                       p->o.kill_grace_ms);
        kill_child(p, SIGKILL);
        break;
    case PHASE_DRAIN:
        begin_close(p);
        break;
    case PHASE_BACKOFF:
        p->restarts++;
        spawn_child(p);
        break;
    case PHASE_NONE:
        break;
    }
}

/* ---- spawning --------------------------------------------------------------------------- */

static void spawn_child(p2p_exec_proc *p)
{
    if (p->freeing || p->have_child)
        return;
    p->have_child = 1;
    p->closing = 0;
    p->process_open = 0;
    p->pid = 0;
    p->exited = p->out_eof = p->err_eof = p->in_shut = p->killed = 0;
    p->exit_status = 0;
    p->term_signal = 0;
    p->running_at = 0;
    p->end_reason[0] = '\0';
    p->errlen = 0;
    p->errcut = 0;
    p2p__linebuf_init(&p->outbuf, p->o.max_line);
    uv_pipe_init(p->loop, &p->in, 0);
    uv_pipe_init(p->loop, &p->out, 0);
    uv_pipe_init(p->loop, &p->err, 0);
    p->in.data = p->out.data = p->err.data = p->process.data = p;
    p->open_handles = 4;

    size_t n_argv = 0, n_extra = 0;
    while (p->argv[n_argv])
        n_argv++;
    while (p->extra_env && p->extra_env[n_extra])
        n_extra++;
    char **args = p2p__xcalloc(n_argv + 5, sizeof(char *));
    char ppid[24];
    size_t a = 0;
    int tramp = p->trampoline && *p->trampoline;
    if (tramp) {
        snprintf(ppid, sizeof ppid, "%d", (int)getpid());
        args[a++] = p->trampoline;
        args[a++] = (char *)P2P_EXEC_TRAMPOLINE_ARG;
        args[a++] = ppid;
        args[a++] = (char *)"--";
    }
    for (size_t i = 0; i < n_argv; i++)
        args[a++] = p->argv[i];
    char **env = p2p__xcalloc(n_extra + 4, sizeof(char *));
    const char *path = getenv("PATH");
    env[0] = p2p__xasprintf("P2P_SERVICE=%s", p->name);
    env[1] = p2p__xasprintf("P2P_NODE_ID=%s", p->node_id);
    env[2] = p2p__xasprintf("PATH=%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (size_t i = 0; i < n_extra; i++)
        env[3 + i] = p->extra_env[i];

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&p->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err;
    uv_process_options_t opts;
    memset(&opts, 0, sizeof opts);
    opts.exit_cb = on_exit_cb;
    opts.file = args[0];
    opts.args = args;
    opts.env = env;
    opts.cwd = p->dir;
    opts.flags = UV_PROCESS_DETACHED; /* own session and process group, see exec.h */
    opts.stdio_count = 3;
    opts.stdio = stdio;
    int r = uv_spawn(p->loop, &p->process, &opts);
    for (size_t i = 0; i < 3; i++)
        free(env[i]);
    free(env);
    free(args);
    p->process_open = 1; /* uv_spawn initialises the handle even when it fails */
    /* STARTING is announced only now: a callback must not see the handles half made */
    p->state = P2P_EXEC_STARTING;
    if (r != 0) {
        p->exited = 1;
        p->exit_status = 127;
        snprintf(p->end_reason, sizeof p->end_reason, "cannot start %s: %s", p->argv[0], uv_strerror(r));
        supervisor_log(p, P2P_EXEC_LOG_ERROR, "%s", p->end_reason);
        begin_close(p);
        emit_state(p);
        return;
    }
    p->pid = p->process.pid;
    uv_read_start((uv_stream_t *)&p->out, on_out_alloc, on_out_read);
    uv_read_start((uv_stream_t *)&p->err, on_err_alloc, on_err_read);
    p->init_id = p->next_id++;
    json_t *msg = rpc_msg();
    json_object_set_new(msg, "id", json_integer((json_int_t)p->init_id));
    json_object_set_new(msg, "method", json_string("initialize"));
    json_object_set_new(msg, "params",
                        json_pack("{s:s,s:s,s:s,s:O}", "service", p->name, "version", p->version, "node_id", p->node_id,
                                  "settings", p->settings));
    send_msg(p, msg);
    json_decref(msg);
    p->phase = PHASE_START;
    uv_timer_start(&p->phase_timer, on_phase_timer, p->o.start_timeout_ms, 0);
    emit_state(p);
}

/* ---- stop, start, free --------------------------------------------------------------------- */

static void on_stdin_shut(uv_shutdown_t *req, int status)
{
    p2p_exec_proc *p = req->data;
    close_if_open((uv_handle_t *)&p->in);
}

/* shutdown notification, EOF on stdin, then the SIGTERM / SIGKILL steps */
static void begin_stop(p2p_exec_proc *p)
{
    if (!p->have_child || p->closing)
        return;
    if (!p->exited && !p->killed) {
        json_t *msg = rpc_msg();
        json_object_set_new(msg, "method", json_string("shutdown"));
        send_msg(p, msg);
        json_decref(msg);
    }
    if (!p->in_shut && !uv_is_closing((uv_handle_t *)&p->in)) {
        p->in_shut = 1;
        p->shut_req.data = p;
        if (uv_shutdown(&p->shut_req, (uv_stream_t *)&p->in, on_stdin_shut) != 0)
            close_if_open((uv_handle_t *)&p->in);
    }
    if (!p->exited) {
        p->phase = PHASE_TERM;
        uv_timer_start(&p->phase_timer, on_phase_timer, p->o.stop_timeout_ms, 0);
    }
}

int p2p__exec_stop(p2p_exec_proc *p)
{
    p->start_after_stop = 0;
    switch (p->state) {
    case P2P_EXEC_STOPPED:
    case P2P_EXEC_STOPPING:
        return 0;
    case P2P_EXEC_RESTARTING:
    case P2P_EXEC_FAILED:
        uv_timer_stop(&p->phase_timer);
        p->phase = PHASE_NONE;
        set_state(p, P2P_EXEC_STOPPED);
        return 0;
    case P2P_EXEC_STARTING:
    case P2P_EXEC_RUNNING:
        p->state = P2P_EXEC_STOPPING;
        begin_stop(p);
        emit_state(p);
        return 0;
    }
    return 0;
}

int p2p__exec_start(p2p_exec_proc *p)
{
    if (p->freeing)
        return -EINVAL;
    switch (p->state) {
    case P2P_EXEC_STARTING:
    case P2P_EXEC_RUNNING:
    case P2P_EXEC_RESTARTING:
        return 0;
    case P2P_EXEC_STOPPING:
        p->start_after_stop = 1; /* a restart: starts once the stop is done */
        return 0;
    case P2P_EXEC_STOPPED:
    case P2P_EXEC_FAILED:
        break;
    }
    p->fail_n = p->fail_head = 0;
    p->consecutive = 0;
    p->restarts = 0;
    p->reason[0] = '\0';
    spawn_child(p);
    return 0;
}

static void free_now(p2p_exec_proc *p)
{
    free(p->calls.buckets);
    free(p->inbound.buckets);
    free(p->name);
    free(p->version);
    free(p->node_id);
    free(p->dir);
    free(p->trampoline);
    for (size_t i = 0; p->argv && p->argv[i]; i++)
        free(p->argv[i]);
    free(p->argv);
    for (size_t i = 0; p->extra_env && p->extra_env[i]; i++)
        free(p->extra_env[i]);
    free(p->extra_env);
    json_decref(p->settings);
    free(p->errline);
    free(p->rbuf);
    free(p->erbuf);
    free(p->logbuf);
    free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    p2p_exec_proc *p = h->data;
    if (--p->timers_open == 0)
        free_now(p);
}

static void finish_free(p2p_exec_proc *p)
{
    if (p->timers_open != 2 || uv_is_closing((uv_handle_t *)&p->phase_timer))
        return;
    uv_close((uv_handle_t *)&p->phase_timer, on_timer_closed);
    uv_close((uv_handle_t *)&p->call_timer, on_timer_closed);
}

void p2p__exec_free(p2p_exec_proc *p)
{
    if (!p || p->freeing)
        return;
    p->freeing = 1; /* first: a callback below may not start new calls */
    fail_calls(p, -ECANCELED, "service removed");
    memset(&p->cb, 0, sizeof p->cb);
    clear_inbound(p);
    uv_timer_stop(&p->call_timer);
    if (p->state == P2P_EXEC_STARTING || p->state == P2P_EXEC_RUNNING) {
        p->state = P2P_EXEC_STOPPING;
        begin_stop(p);
    } else if (p->phase == PHASE_BACKOFF) {
        uv_timer_stop(&p->phase_timer);
        p->phase = PHASE_NONE;
    }
    if (!p->have_child)
        finish_free(p);
    /* else incarnation_ended() calls finish_free */
}

/* ---- creation ------------------------------------------------------------------------------- */

static char **dup_list(char *const *v)
{
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **out = p2p__xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = p2p__xstrdup(v[i]);
    return out;
}

#define DEFAULT(field, value)                                                                                          \
    do {                                                                                                               \
        if (!o->field)                                                                                                 \
            o->field = (value);                                                                                        \
    } while (0)

void p2p__exec_opts_from_manifest(p2p_exec_opts *o, const struct p2p_manifest *m, const char *dir, const char *node_id)
{
    memset(o, 0, sizeof *o);
    o->name = m->name;
    o->version = m->version;
    o->node_id = node_id;
    o->dir = dir;
    o->argv = m->command;
    o->settings = m->settings;
    o->start_timeout_ms = m->start_timeout_ms;
    o->stop_timeout_ms = m->stop_timeout_ms;
    o->call_timeout_ms = m->call_timeout_ms;
}

int p2p__exec_new(uv_loop_t *loop, const p2p_exec_opts *opts, p2p_exec_proc **out, const char **err_desc)
{
    const char *why = NULL;
    if (!loop || !opts || !out)
        why = "missing argument";
    else if (!opts->name || !*opts->name)
        why = "a service name is required";
    else if (!opts->argv || !opts->argv[0] || !*opts->argv[0])
        why = "a command is required";
    else if (!opts->dir || !*opts->dir)
        why = "a working directory is required";
    else if (opts->settings && !json_is_object(opts->settings))
        why = "settings must be an object";
    if (why) {
        if (err_desc)
            *err_desc = why;
        return -EINVAL;
    }
    p2p_exec_proc *p = p2p__xcalloc(1, sizeof *p);
    p->loop = loop;
    p->o = *opts;
    p2p_exec_opts *o = &p->o;
    DEFAULT(start_timeout_ms, P2P_MANIFEST_DEFAULT_START_MS);
    DEFAULT(stop_timeout_ms, P2P_MANIFEST_DEFAULT_STOP_MS);
    DEFAULT(call_timeout_ms, P2P_MANIFEST_DEFAULT_CALL_MS);
    DEFAULT(kill_grace_ms, P2P_EXEC_DEFAULT_KILL_GRACE_MS);
    DEFAULT(max_line, P2P_EXEC_DEFAULT_MAX_LINE);
    DEFAULT(max_pending, P2P_EXEC_DEFAULT_MAX_PENDING);
    DEFAULT(max_inbound, P2P_EXEC_DEFAULT_MAX_INBOUND);
    DEFAULT(max_stdin_queue, P2P_EXEC_DEFAULT_MAX_STDIN_QUEUE);
    DEFAULT(max_log_line, P2P_EXEC_DEFAULT_MAX_LOG_LINE);
    DEFAULT(log_rate, P2P_EXEC_DEFAULT_LOG_RATE);
    DEFAULT(backoff_initial_ms, P2P_EXEC_DEFAULT_BACKOFF_INITIAL_MS);
    DEFAULT(backoff_max_ms, P2P_EXEC_DEFAULT_BACKOFF_MAX_MS);
    DEFAULT(healthy_reset_ms, P2P_EXEC_DEFAULT_HEALTHY_RESET_MS);
    DEFAULT(max_failures, P2P_EXEC_DEFAULT_MAX_FAILURES);
    DEFAULT(failure_window_ms, P2P_EXEC_DEFAULT_FAILURE_WINDOW_MS);
    if (o->max_failures > P2P_EXEC_MAX_FAILURES_CAP)
        o->max_failures = P2P_EXEC_MAX_FAILURES_CAP;
    p->name = p2p__xstrdup(opts->name);
    p->version = p2p__xstrdup(opts->version ? opts->version : "");
    p->node_id = p2p__xstrdup(opts->node_id ? opts->node_id : "");
    p->dir = p2p__xstrdup(opts->dir);
#ifdef __linux__
    p->trampoline = p2p__xstrdup(opts->trampoline ? opts->trampoline : "/proc/self/exe");
#else
    p->trampoline = p2p__xstrdup("");
#endif
    p->argv = dup_list(opts->argv);
    p->extra_env = dup_list(opts->extra_env);
    p->settings = opts->settings ? json_incref(opts->settings) : json_object();
    p->cb = opts->cb;
    p->udata = opts->udata;
    o->name = o->version = o->node_id = o->dir = o->trampoline = NULL;
    o->argv = o->extra_env = NULL;
    o->settings = NULL;
    p->errline = p2p__xmalloc(o->max_log_line);
    p->logbuf = p2p__xmalloc(o->max_log_line + sizeof CUT_MARK);
    p->rbuf = p2p__xmalloc(READ_CHUNK);
    p->erbuf = p2p__xmalloc(4096);
    table_init(&p->calls, o->max_pending);
    table_init(&p->inbound, o->max_inbound);
    p->dying.prev = p->dying.next = &p->dying;
    p->next_id = 1;
    p->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)p;
    if (!p->rng)
        p->rng = 1;
    uv_timer_init(loop, &p->phase_timer);
    uv_timer_init(loop, &p->call_timer);
    p->phase_timer.data = p->call_timer.data = p;
    p->timers_open = 2;
    *out = p;
    return 0;
}

/* ---- the trampoline ------------------------------------------------------------------------- */

int p2p__exec_trampoline_main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[1], P2P_EXEC_TRAMPOLINE_ARG) != 0 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "p2p: usage: p2p %s <parent pid> -- <command> [args...] (internal)\n", P2P_EXEC_TRAMPOLINE_ARG);
        return 2;
    }
    char *end;
    long ppid = strtol(argv[2], &end, 10);
    if (*end || ppid <= 1) {
        fprintf(stderr, "p2p: %s: bad parent pid '%s'\n", P2P_EXEC_TRAMPOLINE_ARG, argv[2]);
        return 2;
    }
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        fprintf(stderr, "p2p: cannot set the parent-death signal: %s\n", strerror(errno));
        return 1;
    }
#endif
    /* The node may have died before prctl: then we belong to init (or a
     * subreaper) already and the signal will never come. */
    if (getppid() != (pid_t)ppid)
        return 1;
    execvp(argv[4], argv + 4);
    int e = errno;
    fprintf(stderr, "p2p: cannot run '%s': %s\n", argv[4], strerror(e));
    return e == ENOENT ? 127 : 126;
}
