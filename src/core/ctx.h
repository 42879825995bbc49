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
typedef void (*p2p_log_sink)(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *line, void *arg);

struct p2p_ctx {
    p2p_config cfg;
    uv_loop_t *loop;
    uint64_t start_hr_ns;   /* uv_hrtime() at creation, for uptime */
    uint64_t start_wall_ms; /* wall clock at creation */
    p2p_log_level log_level;

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

/* Log sinks see every line that passes the level filter (the log collector). */
void p2p__ctx_add_log_sink(p2p_ctx *ctx, p2p_log_sink fn, void *arg);

/* Parses "debug"/"info"/"warn"/"error". Returns -EINVAL otherwise. */
int p2p__log_level_parse(const char *s, p2p_log_level *out);

#endif
