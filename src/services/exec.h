/*
 * exec.h — the process side of an exec service: one external program started,
 * supervised and spoken to over newline-delimited JSON-RPC 2.0 (execproto.h).
 * Self-contained: the services manager owns one p2p_exec_proc per exec service
 * and routes calls, service requests, logs and state changes through it.
 *
 * ---- The exec protocol (copied into docs/services.md) -------------------------
 *
 * Process. The node starts the manifest's `command` (argv; the first word is
 * looked up in PATH) with libuv: working directory = the service's folder, a
 * fresh environment holding only P2P_SERVICE=<name>, P2P_NODE_ID=<node id>,
 * the node's PATH (and what the manager adds), stdin, stdout and stderr as
 * pipes. The process is the leader of a new session and process group: a
 * Ctrl-C on the node's terminal does not reach it (the node stops it in
 * order), and stop signals go to the whole group, so helpers it forked go too.
 *
 * Children die with the node. On Linux the command is not started directly:
 * the node re-executes its own binary (/proc/self/exe) as
 *     p2p __exec-trampoline <node pid> -- <command...>
 * which calls prctl(PR_SET_PDEATHSIG, SIGKILL), then checks that its parent is
 * still <node pid> (had the node died between fork and prctl, the trampoline
 * would already belong to init and would never get the signal: it exits
 * instead), then execvp's the command — same pid, the flag survives exec. If
 * the node dies in any way, even kill -9, the kernel kills the service. A
 * service also sees EOF on stdin when the node closes it, and should exit
 * then. Nothing is persisted by pid: a node that restarts never adopts or
 * signals a process by a pid it remembered. Why a trampoline and not
 * util-linux's `setpriv --pdeathsig KILL` (present on Debian 12): setpriv does
 * not close the fork/prctl race above, it is one more package a minimal image
 * may lack, and a failed exec of the command is reported by our own words on
 * stderr ("p2p: cannot run 'x': No such file or directory", exit status 127).
 * The cost is one extra exec of the node binary per start (a few ms). Linux
 * sends the signal when the *thread* that forked the child ends, not only the
 * process: procs must live on the loop thread that lasts as long as the node
 * (the agent's main thread), never on a short-lived worker thread.
 *
 * Framing. One JSON text per line, "\n"-terminated ("\r\n" accepted), written
 * compact (no raw newline inside a message). Lines longer than `max_line`
 * (default 4 MiB) are a protocol error. The node writes only compact ASCII
 * JSON. Every message carries "jsonrpc": "2.0".
 *
 * Handshake. Right after the start the node sends
 *     {"jsonrpc":"2.0","id":N,"method":"initialize",
 *      "params":{"service":NAME,"version":VERSION,"node_id":ID,"settings":{...}}}
 * The service is running once it answers {"jsonrpc":"2.0","id":N,"result":...}
 * (any result). An error answer, an exit, or no answer within the start
 * timeout (manifest timeouts.start) fails the start.
 *
 * Calls, node -> service. A call of "<service>/<method>" arrives as
 *     {"jsonrpc":"2.0","id":N,"method":"<method>","params":<caller's params>}
 * with a fresh integer id N; many are in flight at once and may be answered
 * in any order with {"id":N,"result":X} or {"id":N,"error":{"code":C,
 * "message":M[,"data":D]}}. A call not answered within its timeout fails for
 * the caller; an answer that comes later is ignored (and counted).
 *
 * Requests, service -> node. {"jsonrpc":"2.0","id":ID,"method":M,"params":P}
 * with ID a string or integer of the service's choosing; the node answers
 * {"jsonrpc":"2.0","id":ID,"result":...} or {...,"error":{"code","message"}}.
 * Which methods exist ("call", "cache.get", ...) is the manager's business;
 * at most `max_inbound` requests may wait for their answer, further ones are
 * answered at once with error -32000 "too many requests in flight".
 *
 * Notifications, service -> node (no id, no answer):
 *     {"jsonrpc":"2.0","method":"log","params":{"level":L,"message":S}}
 * L one of "debug", "info", "warning", "error", "critical"; the line goes into
 * the node's log under the service's name. A log notification of another
 * shape is reported as such. Other notification methods go to the manager.
 * Each line the service writes on stderr is logged at level warning. Log
 * lines are cut at `max_log_line` bytes (marked " [cut]"), control characters
 * are replaced by '?', and at most `log_rate` lines per second are kept (from
 * stderr and log notifications together); the rest are counted and reported
 * in one "N log lines suppressed ..." line once that second is over.
 *
 * Stop. The node sends {"jsonrpc":"2.0","method":"shutdown"}, then closes the
 * service's stdin (calls still in flight may be answered meanwhile), sends
 * SIGTERM to its process group after the stop timeout (manifest
 * timeouts.stop), then SIGKILL after `kill_grace_ms` (2 s) more. The stop is
 * done when the process has exited and its pipes are closed.
 *
 * Garbage. A line that is not a valid message, or is too long, fails every
 * pending call at once with "service wrote an invalid message: <why>", and the
 * process is killed (SIGKILL) and restarted: it counts as a crash. So does a
 * service that closes its stdout while it should run.
 *
 * Supervision. A process that exits or is killed while it should run (a
 * crash, whatever its exit status) has its pending calls failed at once with
 * the reason, and is restarted after a backoff: `backoff_initial_ms` (100 ms)
 * doubling per consecutive failure up to `backoff_max_ms` (30 s), each delay
 * drawn within ±20 % (jitter, so a fleet does not restart in step); the
 * doubling starts over once a process has been running `healthy_reset_ms`
 * (60 s). A failed start counts as a failure too. After `max_failures` (5)
 * failures within `failure_window_ms` (60 s) the service is FAILED with the
 * last reason ("exited with status 3", "killed by signal 9", "invalid output:
 * not JSON", "start timeout", "initialize failed: ...") and stays down until
 * p2p__exec_start is called again.
 *
 * ---- Threads, memory, ownership ------------------------------------------------
 *
 * Everything runs on the loop thread; nothing blocks. Memory per process is
 * bounded: the stdout line buffer (max_line + one 64 KiB read), the stderr
 * line (max_log_line), at most max_pending calls and max_inbound requests, and
 * at most max_stdin_queue bytes queued to a child that does not read its stdin
 * (a call or reply that would go past it is refused at once; one message is
 * always accepted into an empty queue).
 *
 * p2p__exec_new copies what it keeps of the options (strings, argv, settings
 * by reference count). p2p__exec_free may be called in any state, also from
 * inside one of this module's callbacks: it fails pending calls with
 * -ECANCELED (their callbacks run inside p2p__exec_free), makes no callback
 * after it returns, stops a running process as p2p__exec_stop does (shutdown,
 * EOF, SIGTERM, SIGKILL — so the loop must keep running up to stop_timeout_ms
 * + kill_grace_ms for the free to complete: the agent's final uv_run does
 * that) and releases the memory in the last handle's close callback. Handles
 * are always closed through uv_close, so ASan/LSan see no leak once the loop
 * has run dry.
 */
#ifndef P2P_SERVICES_EXEC_H
#define P2P_SERVICES_EXEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* argv[1] that makes the node binary act as the trampoline (src/cli/main.c). */
#define P2P_EXEC_TRAMPOLINE_ARG "__exec-trampoline"

/* The default of each option left 0 in p2p_exec_opts. */
#define P2P_EXEC_DEFAULT_MAX_PENDING 1024
#define P2P_EXEC_DEFAULT_MAX_INBOUND 1024
#define P2P_EXEC_DEFAULT_MAX_STDIN_QUEUE (8u << 20) /* bytes */
#define P2P_EXEC_DEFAULT_MAX_LOG_LINE 4096          /* bytes */
#define P2P_EXEC_DEFAULT_LOG_RATE 200               /* lines per second */
#define P2P_EXEC_DEFAULT_KILL_GRACE_MS 2000
#define P2P_EXEC_DEFAULT_BACKOFF_INITIAL_MS 100
#define P2P_EXEC_DEFAULT_BACKOFF_MAX_MS 30000
#define P2P_EXEC_DEFAULT_HEALTHY_RESET_MS 60000
#define P2P_EXEC_DEFAULT_MAX_FAILURES 5
#define P2P_EXEC_DEFAULT_FAILURE_WINDOW_MS 60000
#define P2P_EXEC_MAX_FAILURES_CAP 64 /* max_failures is clamped to this */

/* The status of a call's answer, > 0 next to the negative errno codes. */
#define P2P_EXEC_SERVICE_ERROR 1

typedef struct p2p_exec_proc p2p_exec_proc;

typedef enum p2p_exec_state {
    P2P_EXEC_STOPPED = 0, /* not running, not wanted (initial state) */
    P2P_EXEC_STARTING,    /* spawned, waiting for the initialize answer */
    P2P_EXEC_RUNNING,     /* answered initialize: takes calls */
    P2P_EXEC_RESTARTING,  /* crashed: waiting out the backoff before a new start */
    P2P_EXEC_STOPPING,    /* shutdown sent: waiting for the exit */
    P2P_EXEC_FAILED,      /* too many failures: down until p2p__exec_start */
} p2p_exec_state;

typedef enum p2p_exec_log_level {
    P2P_EXEC_LOG_DEBUG = 0,
    P2P_EXEC_LOG_INFO,
    P2P_EXEC_LOG_WARNING,
    P2P_EXEC_LOG_ERROR,
    P2P_EXEC_LOG_CRITICAL,
} p2p_exec_log_level;

typedef enum p2p_exec_log_source {
    P2P_EXEC_FROM_SERVICE = 0, /* a "log" notification */
    P2P_EXEC_FROM_STDERR,      /* a line the process wrote on stderr */
    P2P_EXEC_FROM_SUPERVISOR,  /* this module: state changes, protocol errors */
} p2p_exec_log_source;

/* A snapshot of one process. Strings are borrowed from the proc and valid until
 * the next call into this module or the next callback. */
typedef struct p2p_exec_status {
    p2p_exec_state state;
    int pid;             /* the process now, 0 when none */
    const char *reason;  /* why the last process ended or failed; "" when none */
    uint32_t restarts;   /* starts after a crash since p2p__exec_start */
    uint32_t failures;   /* failures counted in the current window */
    uint64_t backoff_ms; /* the delay before the next start (RESTARTING) */
    uint64_t running_ms; /* time since the process answered initialize (RUNNING) */
    int last_exit_status, last_term_signal;
    size_t pending_calls, inbound_requests, stdin_queued;
    uint64_t calls, call_errors, call_timeouts, late_answers, refused_calls;
    uint64_t requests, notifications, log_lines, log_suppressed, invalid_messages;
} p2p_exec_status;

/* Answer to p2p__exec_call, on the loop thread, exactly once, never from inside
 * p2p__exec_call. `status`:
 *   0                       `result` is the service's result (borrowed: incref
 *                           to keep it); `message` NULL;
 *   P2P_EXEC_SERVICE_ERROR  the service answered an error: `result` is its
 *                           error object {"code","message"[,"data"]} (borrowed),
 *                           `message` its message;
 *   -ETIMEDOUT              no answer within the call's timeout;
 *   -ECONNRESET             the process ended before answering (crash, exit,
 *                           stop), `message` says how;
 *   -EPROTO                 the service wrote an invalid message;
 *   -ECANCELED              p2p__exec_free was called.
 * `message` (borrowed) is a sentence for the caller when status != 0. */
typedef void (*p2p_exec_call_cb)(p2p_exec_proc *proc, int status, json_t *result, const char *message, void *udata);

typedef struct p2p_exec_callbacks {
    /* A state change (also a new pid or restart count). Optional. */
    void (*on_state)(p2p_exec_proc *proc, const p2p_exec_status *st, void *udata);
    /* A log line (NUL-terminated, bounded, control characters replaced).
     * Optional: without it lines are dropped. */
    void (*on_log)(p2p_exec_proc *proc, p2p_exec_log_level level, p2p_exec_log_source src, const char *message,
                   void *udata);
    /* A request from the service. `params` is borrowed (NULL when absent). The
     * manager answers exactly once, now or later, with p2p__exec_reply or
     * p2p__exec_reply_error and `token` (not the JSON id: a token is never
     * reused, so a late answer after a restart cannot reach the new process).
     * Optional: without it requests are answered -32601 "method not found". */
    void (*on_request)(p2p_exec_proc *proc, const char *method, json_t *params, uint64_t token, void *udata);
    /* A notification other than "log". `params` borrowed. Optional. */
    void (*on_notify)(p2p_exec_proc *proc, const char *method, json_t *params, void *udata);
} p2p_exec_callbacks;

typedef struct p2p_exec_opts {
    const char *name;       /* service name: P2P_SERVICE, the initialize params */
    const char *version;    /* initialize params */
    const char *node_id;    /* P2P_NODE_ID, the initialize params */
    const char *dir;        /* working directory (the service folder) */
    char *const *argv;      /* the command, NULL-terminated, at least one word */
    char *const *extra_env; /* more "KEY=VALUE" entries, NULL-terminated; may be NULL */
    json_t *settings;       /* object handed over in initialize; borrowed, may be NULL */
    /* The program run as trampoline (Linux): NULL = "/proc/self/exe" (the node
     * binary, or a test binary that routes P2P_EXEC_TRAMPOLINE_ARG too); "" =
     * spawn the command directly (no PR_SET_PDEATHSIG; stdin EOF only). */
    const char *trampoline;
    uint32_t start_timeout_ms, stop_timeout_ms, call_timeout_ms; /* 0: the manifest defaults */
    uint32_t kill_grace_ms;
    size_t max_line, max_pending, max_inbound, max_stdin_queue, max_log_line;
    uint32_t log_rate;
    uint32_t backoff_initial_ms, backoff_max_ms, healthy_reset_ms;
    uint32_t max_failures, failure_window_ms;
    p2p_exec_callbacks cb;
    void *udata; /* handed to every callback */
} p2p_exec_opts;

/* Fills the manifest's part of `o` (name, version, argv, settings, the three
 * timeouts) plus the folder and node id; `o` is zeroed first, so set the
 * callbacks and any other option afterwards. Borrows from `m`, `dir` and
 * `node_id` (p2p__exec_new copies what it keeps). */
struct p2p_manifest;
void p2p__exec_opts_from_manifest(p2p_exec_opts *o, const struct p2p_manifest *m, const char *dir, const char *node_id);

/* Creates a stopped proc (nothing spawned). Returns 0 and *out, or -EINVAL
 * with *err_desc (static) when a required option is missing. */
int p2p__exec_new(uv_loop_t *loop, const p2p_exec_opts *opts, p2p_exec_proc **out, const char **err_desc);

/* Stops (see above) and frees. NULL is fine. */
void p2p__exec_free(p2p_exec_proc *proc);

/* Starts the process: from STOPPED or FAILED (the failure count starts over);
 * while STOPPING, once the stop is done (stop + start is a restart). Returns 0
 * (also when it already runs or starts), -EINVAL after p2p__exec_free. The
 * outcome arrives through on_state (RUNNING, or RESTARTING / FAILED). */
int p2p__exec_start(p2p_exec_proc *proc);

/* Stops the process (shutdown, EOF, SIGTERM, SIGKILL as above; calls in
 * flight may still be answered until the process exits, then fail); from
 * RESTARTING or FAILED it just cancels and becomes STOPPED. Cancels a start
 * requested while STOPPING. Returns 0. */
int p2p__exec_stop(p2p_exec_proc *proc);

/* Calls `method` (the name without the "<service>/" prefix) with `params`
 * (borrowed: object, array or NULL). `timeout_ms` 0 = the call timeout option.
 * Returns 0 (then cb runs later, exactly once), or refuses at once without
 * calling cb: -ENOTCONN (not RUNNING), -EAGAIN (max_pending calls in flight),
 * -ENOBUFS (the child's stdin queue is full), -EINVAL (no method, bad params);
 * *err_desc (optional, static) says which. */
int p2p__exec_call(p2p_exec_proc *proc, const char *method, json_t *params, uint32_t timeout_ms, p2p_exec_call_cb cb,
                   void *udata, const char **err_desc);

/* Answers the service's request `token` (from on_request) with `result`
 * (borrowed; NULL means null) or an error. Returns 0, -ENOENT when the token is
 * unknown (answered already, or the process it came from has ended: nothing
 * is sent), or -ENOBUFS when the stdin queue is full (the request is then
 * answered with an error -32000 instead, if that fits). */
int p2p__exec_reply(p2p_exec_proc *proc, uint64_t token, json_t *result);
int p2p__exec_reply_error(p2p_exec_proc *proc, uint64_t token, int code, const char *message);

/* Sends a notification (no answer). Returns 0, -ENOTCONN or -ENOBUFS. */
int p2p__exec_notify(p2p_exec_proc *proc, const char *method, json_t *params);

void p2p__exec_status_get(const p2p_exec_proc *proc, p2p_exec_status *st);
p2p_exec_state p2p__exec_state_get(const p2p_exec_proc *proc);
const char *p2p__exec_state_name(p2p_exec_state s);
const char *p2p__exec_log_level_name(p2p_exec_log_level l);
/* The service name the proc was created with. */
const char *p2p__exec_name(const p2p_exec_proc *proc);

/* The trampoline: argv = {binary, P2P_EXEC_TRAMPOLINE_ARG, parent pid, "--",
 * command...}. Sets PR_SET_PDEATHSIG(SIGKILL), checks the parent, execs the
 * command; returns only on failure (an exit status: 2 usage, 1 orphaned,
 * 126/127 exec failed, with a line on stderr). */
int p2p__exec_trampoline_main(int argc, char **argv);

#endif
