/*
 * p2p.h — the public API of a p2pcore node, as seen by services.
 *
 * A node is one process with one libuv loop thread that owns all of its state.
 * Everything a service can touch hangs off a `p2p_ctx`, handed to it explicitly;
 * there is no global state. Services register methods under `service/method`
 * paths; a method handler receives a `p2p_call` and completes it exactly once,
 * either before returning or later from the loop thread (asynchronous methods).
 *
 * Error convention: functions return 0 on success or a negative errno-style code
 * (`-EINVAL`, `-ENOMEM`, ...); `p2p_strerror()` names it. Out-parameters are set
 * only on success.
 *
 * JSON values are jansson `json_t`. Ownership is stated per function: "borrowed"
 * means the callee does not take a reference, "stolen" means it does.
 */
#ifndef P2P_P2P_H
#define P2P_P2P_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define P2P_EXTERN __attribute__((visibility("default")))
#else
#define P2P_EXTERN
#endif

/** Version of this API. A plugin built against another major version is refused. */
#define P2P_API_VERSION_MAJOR 1
#define P2P_API_VERSION_MINOR 0

/** The node's context: config, loop, components, method registry, shared objects. */
typedef struct p2p_ctx p2p_ctx;

/** One in-progress method invocation. Valid until completed with p2p_call_reply*(). */
typedef struct p2p_call p2p_call;

/* JSON-RPC 2.0 error codes, plus the server-defined range the node uses. */
#define P2P_RPC_PARSE_ERROR (-32700)
#define P2P_RPC_INVALID_REQUEST (-32600)
#define P2P_RPC_METHOD_NOT_FOUND (-32601)
#define P2P_RPC_INVALID_PARAMS (-32602)
#define P2P_RPC_INTERNAL_ERROR (-32603)
#define P2P_RPC_SHUTTING_DOWN (-32000)
/* Calls to other nodes (p2p_call_remote, X-P2P-Node forwarding). A remote
 * method's own error is passed through unchanged. */
#define P2P_RPC_E_UNKNOWN_NODE (-32001) /**< no such node in the cluster (or no live node of a role) */
#define P2P_RPC_E_NODE_DOWN (-32002)    /**< the node is dead or left */
#define P2P_RPC_E_TIMEOUT (-32003)      /**< no answer in time */
#define P2P_RPC_E_TRANSPORT (-32004)    /**< connection, TLS or HTTP failure */
/** The service is not running (stopped, failed, starting); the message says why. */
#define P2P_RPC_E_SERVICE_DOWN (-32005)

/** A method handler. `params` is borrowed: an object, an array, or NULL when absent.
 * The handler must complete `call` exactly once with p2p_call_reply() or
 * p2p_call_error(), either before it returns or later on the loop thread. */
typedef void (*p2p_method_fn)(p2p_call *call, json_t *params, void *udata);

/** Flags of a method. */
enum {
    /** Read-only method: allowed for the `viewer` role. */
    P2P_METHOD_READONLY = 1u << 0,
    /** Listed to unauthenticated discovery (the guide's `public=True`). */
    P2P_METHOD_PUBLIC = 1u << 1,
    /** Only an operator with the `admin` role may call it; another node's
     * certificate (the `node` identity) may not. For methods that change the
     * node's configuration or security. */
    P2P_METHOD_ADMIN = 1u << 2,
    /** With P2P_METHOD_ADMIN: the coordinator's own node certificate (role
     * `coordinator` in its subject, verified by mutual TLS, a call it makes
     * itself, not one it relays) may call it too, as the rollout orchestrator
     * does (docs/security.md). A worker's certificate still may not. */
    P2P_METHOD_COORDINATOR = 1u << 3,
};

/** Description of a method, copied by p2p_method_register(). */
typedef struct p2p_method_desc {
    const char *name;        /**< method name without the service prefix, e.g. "ping" */
    const char *description; /**< one line for humans */
    const char *params;      /**< human description of the parameters, e.g. "{message?: string}" */
    unsigned flags;          /**< P2P_METHOD_* */
    p2p_method_fn fn;
    void *udata;
} p2p_method_desc;

/** Description of a service, copied by p2p_service_register(). */
typedef struct p2p_service_desc {
    const char *name;
    const char *version;
    const char *description;
    int builtin; /**< built-in services cannot be stopped or reloaded */
} p2p_service_desc;

/** Registers a service. -EEXIST if one of that name exists, -EINVAL on a bad name. */
P2P_EXTERN int p2p_service_register(p2p_ctx *ctx, const p2p_service_desc *desc);

/** Registers `service/desc->name`. The service must exist. -EEXIST on a duplicate. */
P2P_EXTERN int p2p_method_register(p2p_ctx *ctx, const char *service, const p2p_method_desc *desc);

/** Completes a call with a result (stolen; NULL means JSON null). */
P2P_EXTERN void p2p_call_reply(p2p_call *call, json_t *result);

/** Completes a call with a JSON-RPC error. `data` is stolen and may be NULL. */
P2P_EXTERN void p2p_call_error(p2p_call *call, int code, const char *message, json_t *data);

/** The context a call runs in. */
P2P_EXTERN p2p_ctx *p2p_call_ctx(const p2p_call *call);

/** The full method path of a call ("service/method"). */
P2P_EXTERN const char *p2p_call_method(const p2p_call *call);

/** Completion of p2p_call_remote, on the loop thread, exactly once. `results`
 * (borrowed) is {"node_id", "result"} or {"node_id", "error": {code, message,
 * data?}} for a single target, or an array of those for a fan-out. */
typedef void (*p2p_remote_cb)(p2p_ctx *ctx, json_t *results, void *udata);

/** Calls `method` ("service/name") with `params` (borrowed; object, array or
 * NULL) on `target`: "local" (or NULL), a node id, "role:NAME" (one live node of
 * that role, this one when it qualifies), "all" or "all:ROLE" (every live node,
 * this one included, at once). Remote calls go over pooled HTTP/2 with mutual
 * TLS. `timeout_ms` 0 = 30 s. The call is the node's own: it runs with the
 * node identity (here and on the target), which may not call P2P_METHOD_ADMIN
 * methods (error -32005). Returns 0 (then `cb` runs, maybe before this
 * returns) or -EINVAL. */
P2P_EXTERN int p2p_call_remote(p2p_ctx *ctx, const char *target, const char *method, json_t *params,
                               uint32_t timeout_ms, p2p_remote_cb cb, void *udata);

/** Log levels. */
typedef enum p2p_log_level { P2P_LOG_DEBUG, P2P_LOG_INFO, P2P_LOG_WARN, P2P_LOG_ERROR } p2p_log_level;

/** Logs a line attributed to `source` (a component or service name). */
P2P_EXTERN void p2p_log(p2p_ctx *ctx, p2p_log_level level, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Shared objects by name: `set` replaces (returns the previous or NULL), `get` returns NULL when absent. */
P2P_EXTERN void *p2p_shared_set(p2p_ctx *ctx, const char *name, void *ptr);
P2P_EXTERN void *p2p_shared_get(p2p_ctx *ctx, const char *name);

/** The node's id and role ("coordinator" or "worker"). */
P2P_EXTERN const char *p2p_node_id(const p2p_ctx *ctx);
P2P_EXTERN const char *p2p_node_role(const p2p_ctx *ctx);

/** Names a negative error code. */
P2P_EXTERN const char *p2p_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
