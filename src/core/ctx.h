/*
 * ctx.h — the node context and its components.
 *
 * `p2p_ctx` owns everything a node has: the effective config, the libuv loop,
 * the components, the method registry, shared objects by name and shutdown
 * hooks. It is created by the agent, handed to every component and service,
 * and there is no other mutable state in the process.
 *
 * Components declare their dependencies by name. The context orders them
 * (Kahn's algorithm, ties broken by registration order, so the order is stable),
 * starts them in that order and stops them in reverse. A cycle or a missing
 * dependency is reported at start-up, naming the components involved.
 */
#ifndef P2P_CORE_CTX_H
#define P2P_CORE_CTX_H

#include <stdint.h>
#include <jansson.h>
#include <uv.h>

#include "core/config.h"
#include "p2p/p2p.h"

typedef enum p2p_component_state {
    P2P_COMP_NOT_INITIALIZED,
    P2P_COMP_INITIALIZING,
    P2P_COMP_RUNNING,
    P2P_COMP_STOPPING,
    P2P_COMP_STOPPED,
    P2P_COMP_ERROR,
} p2p_component_state;

typedef struct p2p_component p2p_component;

typedef struct p2p_component_ops {
    const char *name;
    const char *const *deps; /* NULL-terminated list of component names, or NULL */
    /* Brings the component up. Returns 0 when running, or a negative error with
     * `*err` set to a heap message (freed by the context). Runs before the loop
     * serves requests, on the loop thread. */
    int (*start)(p2p_component *c, char **err);
    /* Releases what start acquired. Called once, in reverse start order, also for
     * components whose start failed half-way is NOT called (start cleans itself). */
    void (*stop)(p2p_component *c);
} p2p_component_ops;

struct p2p_component {
    const p2p_component_ops *ops;
    p2p_ctx *ctx;
    void *self; /* the component's own state, owned by the component */
    p2p_component_state state;
    uint64_t started_at_ms; /* wall clock when it reached RUNNING */
    unsigned error_count;
    char *last_error;
};

typedef void (*p2p_shutdown_hook)(p2p_ctx *ctx, void *arg);

typedef struct p2p_registry p2p_registry;

/* One log line as a sink sees it (all borrowed, valid during the call only). */
typedef struct p2p_log_line {
    int64_t ts_us;              /* wall clock, UTC microseconds since the epoch */
    p2p_log_level level;        /* the node's level (see p2p__log_level5 for the five record levels) */
    const char *source;         /* component or service name, never NULL */
    const char *message;        /* the formatted text, NUL-terminated, maybe cut at 8 KiB */
    const char *file, *func;    /* where it was logged, NULL when unknown */
    int line;                   /* 0 when unknown */
    const char *service;        /* a service's name when a service logged it, else NULL */
    const char *request_id;     /* NULL when unknown */
} p2p_log_line;

/* A sink: sees every line at or above the level it registered with, on the
 * thread that logged it (usually the loop, but pool jobs log too). */
typedef void (*p2p_log_sink)(p2p_ctx *ctx, const p2p_log_line *line, void *arg);

struct p2p_ctx {
    p2p_config cfg;
    uv_loop_t *loop;
    uint64_t start_hr_ns;   /* uv_hrtime() at creation, for uptime */
    uint64_t start_wall_ms; /* wall clock at creation */
    p2p_log_level log_level;
    int log_json;              /* log_format: json */
    p2p_log_level sink_level;  /* lowest level any sink wants */

    p2p_component **components; /* registration order */
    size_t n_components;
    p2p_component **started; /* start order, filled as components come up */
    size_t n_started;

    p2p_registry *registry;

    struct p2p_shared_entry {
        char *name;
        void *ptr;
    } *shared;
    size_t n_shared;

    struct p2p_hook_entry {
        p2p_shutdown_hook fn;
        void *arg;
    } *hooks;
    size_t n_hooks;

    struct p2p_sink_entry {
        p2p_log_sink fn;
        p2p_log_level level;
        void *arg;
    } *sinks;
    size_t n_sinks;

    struct p2p_metrics_sources *metrics; /* core/metrics.c: sources of GET /metrics */

    int shutting_down;
};

/* Creates a context owning `cfg` (moved in; the caller must not free it) over `loop`. */
p2p_ctx *p2p__ctx_new(p2p_config *cfg, uv_loop_t *loop);
/* Stops what is running (if anything), runs shutdown hooks, frees everything. */
void p2p__ctx_free(p2p_ctx *ctx);

/* Node uptime in seconds (monotonic). */
double p2p__ctx_uptime(const p2p_ctx *ctx);

/* Registers a component. Returns it (owned by ctx) or NULL on a duplicate name. */
p2p_component *p2p__component_add(p2p_ctx *ctx, const p2p_component_ops *ops, void *self);
p2p_component *p2p__component_find(p2p_ctx *ctx, const char *name);

/* Computes the start order into `order` (n_components entries). Returns 0, or
 * -ELOOP (cycle) / -ENOENT (missing dependency) with a heap message in `*err`. */
int p2p__components_order(p2p_ctx *ctx, p2p_component **order, char **err);

/* Starts all components in dependency order. On a failure, stops those already
 * started (reverse order) and returns the error with a heap message. */
int p2p__components_start(p2p_ctx *ctx, char **err);

/* Stops started components in reverse order. Idempotent. */
void p2p__components_stop(p2p_ctx *ctx);

const char *p2p__component_state_name(p2p_component_state s);

/* Shutdown hooks run (in reverse registration order) after components stop. */
void p2p__ctx_on_shutdown(p2p_ctx *ctx, p2p_shutdown_hook fn, void *arg);

/* Log sinks (the log shipper) see every line at or above `level`, whatever the
 * local log_level; removing is by fn and arg. Register and remove on the loop
 * thread before or after other threads log (at start and stop). */
void p2p__ctx_add_log_sink(p2p_ctx *ctx, p2p_log_sink fn, p2p_log_level level, void *arg);
void p2p__ctx_remove_log_sink(p2p_ctx *ctx, p2p_log_sink fn, void *arg);

/* p2p_log with what the caller knows about the line: file/func/line, the
 * service and request it belongs to (each NULL/0 when unknown). Inside the core
 * p2p_log is this macro, so every line carries its file, function and line. */
void p2p__log_meta(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *file, const char *func,
                   int line, const char *service, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));
#define p2p_log(ctx, level, source, ...)                                                                           \
    p2p__log_meta(ctx, level, source, __FILE__, __func__, __LINE__, NULL, NULL, __VA_ARGS__)

/* Sets the request id that lines logged on this thread without one of their
 * own carry (NULL = none) and returns the one it replaces: the RPC dispatcher
 * sets it around a method's handler. */
const char *p2p__log_request_swap(const char *request_id);

/* A line for this node's stderr only, never handed to sinks (so never
 * shipped to the collector, where viewers could read it): for secrets shown
 * once at bootstrap. */
void p2p__log_local(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The five record levels of shipped logs (DEBUG, INFO, WARNING, ERROR,
 * CRITICAL) from a node level and its message: an ERROR line whose message
 * starts with "critical: " (how exec services' critical lines are logged) is
 * CRITICAL, and *message_out then skips that prefix. */
enum { P2P_LOG5_DEBUG, P2P_LOG5_INFO, P2P_LOG5_WARNING, P2P_LOG5_ERROR, P2P_LOG5_CRITICAL };
int p2p__log_level5(p2p_log_level level, const char *message, const char **message_out);
const char *p2p__log_level5_name(int level5);
/* "DEBUG".."CRITICAL" (any case; "warn" too) -> 0..4, or -1. */
int p2p__log_level5_parse(const char *name);

/* The record of a line as a JSON object: ts (seconds, microsecond precision),
 * level, logger, message, and file/func/line/service/request_id when known.
 * Text is made valid UTF-8 (bad bytes become U+FFFD), the logger is cut to 64
 * bytes and the message to 16 KiB (marked " [cut]"). A new reference. */
json_t *p2p__log_line_json(const p2p_log_line *line);
/* Copies `s` (n bytes) as valid UTF-8 into a heap string: each byte that is not
 * part of a well-formed sequence becomes U+FFFD. */
char *p2p__utf8_sanitize(const char *s, size_t n);

/* Parses "debug"/"info"/"warn"/"error". Returns -EINVAL otherwise. */
int p2p__log_level_parse(const char *s, p2p_log_level *out);

#endif
