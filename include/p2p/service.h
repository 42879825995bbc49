/*
 * service.h — the plugin ABI for native (C) services.
 *
 * A native service is a shared object (`service.so`) in its folder under the
 * node's services directory, beside a manifest.json (docs/services.md). The
 * node loads it with dlopen(RTLD_NOW | RTLD_LOCAL): every symbol the module
 * uses must exist in the node, or the load is refused naming the symbol.
 *
 * The module exports exactly one thing: a descriptor named
 * `p2p_service_module`, best written with P2P_SERVICE_MODULE(...):
 *
 *     static int init(p2p_svc *svc, void **state) {
 *         p2p_svc_method(svc, "hello", hello, NULL);
 *         return 0;
 *     }
 *     P2P_SERVICE_MODULE(.name = "greeter", .version = "1.0.0", .init = init);
 *
 * Versioning. P2P_SERVICE_ABI_MAJOR changes only when an existing declaration
 * changes meaning or layout; a module built for another major is refused. The
 * minor grows when functions or descriptor fields are added (fields only ever
 * at the end): a module built against 1.0 keeps loading on every 1.x node.
 * A module that wants a function newer than its own minor checks
 * p2p_svc_abi_minor() first.
 *
 * Threads. Every hook and every function here runs on the node's loop thread,
 * except the `work` callback of p2p_svc_work(), which runs on the thread pool
 * and must touch nothing of the node. A hook must not block: slow work goes to
 * p2p_svc_work().
 *
 * Lifecycle of one loaded version (an "instance"):
 *   init     register methods, allocate state; no calls arrive yet;
 *   start    calls may arrive once it returns 0 (timers may start here);
 *   stop     no new calls arrive; calls in flight still complete; timers the
 *            host made for the instance are stopped by the host right after;
 *   cleanup  free the state. The code itself is never unloaded (dlclose is
 *            unsafe with thread-local storage and atexit handlers), so a module
 *            must not rely on its destructors running.
 * A non-zero return from init or start fails the instance (its reason is
 * logged and shown in `p2p services`); on a reload the old version keeps
 * serving. Hot reload runs the new version's init and start while the old one
 * still serves; new calls switch to the new version once its start returned
 * 0; the old one gets stop and cleanup after its last call in flight.
 */
#ifndef P2P_SERVICE_H
#define P2P_SERVICE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "p2p/p2p.h"

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version of this header. */
#define P2P_SERVICE_ABI_MAJOR 1
#define P2P_SERVICE_ABI_MINOR 1 /* 1.1: HTTP routes, the cache, secrets */

/** One loaded version of a service, as its hooks and the host API see it. */
typedef struct p2p_svc p2p_svc;

/** The descriptor a module exports as `p2p_service_module`. */
typedef struct p2p_svc_module {
    uint32_t abi_major; /**< P2P_SERVICE_ABI_MAJOR the module was built with */
    uint32_t abi_minor; /**< P2P_SERVICE_ABI_MINOR the module was built with */
    const char *name;    /**< must equal the manifest's name; NULL: any (one module installed under
                              several names, each with its own settings) */
    const char *version; /**< the module's own version, for logs; the manifest's version is the
                              service's (a settings change is a new version of the same module) */
    /** Registers methods, allocates `*state` (handed to every later hook).
     * Returns 0, or a negative errno-style code to refuse to load. Required. */
    int (*init)(p2p_svc *svc, void **state);
    /** Starts serving. Returns 0 or a negative code. Optional. */
    int (*start)(p2p_svc *svc, void *state);
    /** Stops serving; calls in flight still complete afterwards. Optional. */
    void (*stop)(p2p_svc *svc, void *state);
    /** Frees `state`. Optional. */
    void (*cleanup)(p2p_svc *svc, void *state);
} p2p_svc_module;

/** Defines the module's descriptor with the ABI version filled in. */
#define P2P_SERVICE_MODULE(...)                                                                                  \
    P2P_EXTERN const p2p_svc_module p2p_service_module = {.abi_major = P2P_SERVICE_ABI_MAJOR,                \
                                                              .abi_minor = P2P_SERVICE_ABI_MINOR, __VA_ARGS__}

/** The ABI minor of the running node. */
P2P_EXTERN uint32_t p2p_svc_abi_minor(void);

/* ---- identity and settings ------------------------------------------------------ */

/** The node context (for p2p_call_remote, p2p_node_id, ...). */
P2P_EXTERN p2p_ctx *p2p_svc_ctx(const p2p_svc *svc);
/** The service's name and version (the manifest's). */
P2P_EXTERN const char *p2p_svc_name(const p2p_svc *svc);
P2P_EXTERN const char *p2p_svc_version(const p2p_svc *svc);
/** The manifest's "settings" object (borrowed; never NULL). */
P2P_EXTERN json_t *p2p_svc_settings(const p2p_svc *svc);
/** The service's folder (absolute path), e.g. for its assets. */
P2P_EXTERN const char *p2p_svc_dir(const p2p_svc *svc);

/* ---- methods ----------------------------------------------------------------------- */

/** Serves `name`, a method listed in the manifest, with `fn` (called with
 * `udata`). Only from init. Returns 0, -ENOENT (not in the manifest), -EEXIST,
 * or -EINVAL. The call completes exactly once, with p2p_call_reply() or
 * p2p_call_error(), now or later on the loop thread. A listed method that no
 * version serves answers "method not implemented". */
P2P_EXTERN int p2p_svc_method(p2p_svc *svc, const char *name, p2p_method_fn fn, void *udata);

/* ---- logging ------------------------------------------------------------------------ */

/** Logs a line with the service's name as its source. */
P2P_EXTERN void p2p_svc_log(p2p_svc *svc, p2p_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- timers and background work ----------------------------------------------------- */

/** A timer callback, on the loop thread. */
typedef void (*p2p_svc_timer_fn)(p2p_svc *svc, void *udata);

/** Runs `fn` after `delay_ms`, then every `repeat_ms` (0 = once). Returns a
 * timer id > 0, or a negative code. The host stops every timer of the
 * instance when it stops. */
P2P_EXTERN int64_t p2p_svc_timer(p2p_svc *svc, uint64_t delay_ms, uint64_t repeat_ms, p2p_svc_timer_fn fn,
                                 void *udata);
/** Stops and forgets a timer; unknown ids are ignored. */
P2P_EXTERN void p2p_svc_timer_stop(p2p_svc *svc, int64_t id);

/** Runs `work(udata)` on the thread pool, then `done(svc, udata, status)` on the
 * loop thread (status 0, or -ECANCELED when the instance stopped first: then
 * `done` still runs, once). Returns 0 or a negative code. */
P2P_EXTERN int p2p_svc_work(p2p_svc *svc, void (*work)(void *udata),
                            void (*done)(p2p_svc *svc, void *udata, int status), void *udata);

/* ---- metrics -------------------------------------------------------------------------- */

/** Adds `v` to the counter `name` ([a-z_][a-z0-9_]*), created at 0. It appears in
 * /metrics as p2p_service_<service>_<name>_total and in the JSON under
 * services.<service>.<name>. Returns 0 or -EINVAL. */
P2P_EXTERN int p2p_svc_counter_add(p2p_svc *svc, const char *name, double v);
/** Sets the gauge `name`. */
P2P_EXTERN int p2p_svc_gauge_set(p2p_svc *svc, const char *name, double v);
/** Records `v` in the histogram `name` (Prometheus _count, _sum and quantiles). */
P2P_EXTERN int p2p_svc_observe(p2p_svc *svc, const char *name, double v);

/* ---- health ----------------------------------------------------------------------------- */

typedef enum p2p_health { P2P_HEALTH_OK = 0, P2P_HEALTH_WARNING = 1, P2P_HEALTH_CRITICAL = 2 } p2p_health;

/** Reports the service's own health with a message (copied), shown in
 * `p2p services` and /services/<name>. */
P2P_EXTERN void p2p_svc_health(p2p_svc *svc, p2p_health level, const char *message);

/* ---- persisted state --------------------------------------------------------------------- */

/** The service's persisted state document (borrowed; an empty object the first
 * time). It was read before init, so it is the one the previous version (or
 * the node's previous run) last saved. */
P2P_EXTERN json_t *p2p_svc_state(const p2p_svc *svc);

/** Saves `doc` (borrowed; an object) as the state: written to disk atomically
 * (temp file, fsync, rename) on the thread pool, so a crash at any moment leaves
 * the old or the new document. Saves made while one is being written are
 * coalesced into the latest. Returns 0 or -EINVAL. */
P2P_EXTERN int p2p_svc_state_save(p2p_svc *svc, json_t *doc);

/* ---- secrets (ABI 1.1) ------------------------------------------------------------------------ */

/** Reads the service's secret `name` (1..200 bytes of UTF-8, no control
 * characters) from the node's vault (encrypted at rest: docs/vault.md). Returns
 * 0 with a heap copy in *value (NUL-terminated; the NUL is not in *len; free it
 * with p2p_svc_secret_free), -ENOENT when absent, or a negative code. */
P2P_EXTERN int p2p_svc_secret_get(p2p_svc *svc, const char *name, char **value, size_t *len);

/** Stores `len` bytes as the service's secret `name` in the vault; the vault is
 * written to disk right after, off the loop. Returns 0 or a negative code. */
P2P_EXTERN int p2p_svc_secret_set(p2p_svc *svc, const char *name, const void *value, size_t len);

/** Wipes and frees a value from p2p_svc_secret_get. */
P2P_EXTERN void p2p_svc_secret_free(char *value, size_t len);

/* ---- cache (ABI 1.1) ------------------------------------------------------------------------ */

/* The node's cache (docs/services.md, "The cache"): an in-process L1 in front of
 * Redis when the node has `redis_url`, keys private to the service (its name is
 * the namespace), values are bytes, every entry expires. While Redis is away the
 * cache answers from L1: a cache call never fails because Redis is down. */

/** Answer of a cache read, on the loop thread, exactly once: `status` 0 with
 * `value` (`len` bytes, valid during the call only: copy what you keep),
 * -ENOENT when absent, or the loader's error / -ETIMEDOUT / -ECANCELED. */
typedef void (*p2p_svc_cache_cb)(p2p_svc *svc, int status, const void *value, size_t len, void *udata);

/** Reads `key` (1..1024 bytes). Returns 0 (then `cb` runs, maybe before this
 * returns) or a negative code (then it never runs). */
P2P_EXTERN int p2p_svc_cache_get(p2p_svc *svc, const char *key, p2p_svc_cache_cb cb, void *udata);

/** Stores a copy of `len` bytes under `key` for `ttl_ms` (0: the node's
 * cache_default_ttl). Returns 0 or a negative code (-E2BIG: larger than 1/8 of
 * the node's L1). */
P2P_EXTERN int p2p_svc_cache_set(p2p_svc *svc, const char *key, const void *value, size_t len, uint64_t ttl_ms);

/** Removes `key`. Returns 0 or a negative code. */
P2P_EXTERN int p2p_svc_cache_del(p2p_svc *svc, const char *key);

/** A load in progress (p2p_svc_cache_get_or_load). */
typedef struct p2p_svc_cache_fill p2p_svc_cache_fill;

/** Computes the value of a missing key and completes `fill` exactly once, now or
 * later, with p2p_svc_cache_fill_done() or p2p_svc_cache_fill_fail(). */
typedef void (*p2p_svc_cache_loader)(p2p_svc *svc, const char *key, p2p_svc_cache_fill *fill, void *udata);

/** Reads `key`; when it is in neither level, runs `loader` once however many
 * callers ask for the key meanwhile (they all get its value: no stampede), and
 * caches what it produces. Returns 0 (then `cb` runs once) or a negative code. */
P2P_EXTERN int p2p_svc_cache_get_or_load(p2p_svc *svc, const char *key, p2p_svc_cache_loader loader,
                                         void *loader_udata, p2p_svc_cache_cb cb, void *udata);

/** Completes a load with `len` bytes, cached for `ttl_ms` (0: the default). */
P2P_EXTERN void p2p_svc_cache_fill_done(p2p_svc_cache_fill *fill, const void *value, size_t len, uint64_t ttl_ms);
/** Completes a load with an error (a negative code): nothing is cached. */
P2P_EXTERN void p2p_svc_cache_fill_fail(p2p_svc_cache_fill *fill, int err);

/* ---- HTTP routes (ABI 1.1) ------------------------------------------------------------ */

/** One HTTP request to a service's route. Owned by the host until
 * p2p_svc_respond(), which must be called exactly once (now or later, on the
 * loop thread); the strings it hands out stay valid until then. */
typedef struct p2p_svc_request p2p_svc_request;

/** A route's handler, on the loop thread. */
typedef void (*p2p_svc_route_fn)(p2p_svc *svc, p2p_svc_request *req, void *udata);

/** The viewer role may call the route (it changes nothing). */
#define P2P_ROUTE_READONLY (1u << 0)
/** Anyone may call it, without credentials (like GET /health). Use with care. */
#define P2P_ROUTE_PUBLIC (1u << 1)

/** Serves `method` ("GET", "POST", "PUT", "PATCH" or "DELETE"; a GET route
 * answers HEAD too) on /services/<name>/<subpath> with `fn` (called with
 * `udata`). `subpath` is 1..200 characters of [A-Za-z0-9._~-] in segments
 * separated by single '/', no "." or ".." segment, no leading '/'; one ending
 * in '/' serves every path below it (p2p_svc_req_path() tells which). Callers
 * authenticate as for /rpc (a token or a node certificate); a viewer only on a
 * P2P_ROUTE_READONLY route; P2P_ROUTE_PUBLIC drops authentication. Only from
 * init. Requests go to the running version: after a reload to the new one
 * (requests in flight finish on the old one), and a stopped service's routes
 * are gone. Returns 0, -EEXIST or -EINVAL. Since 1.1. */
P2P_EXTERN int p2p_svc_route(p2p_svc *svc, const char *method, const char *subpath, unsigned flags,
                             p2p_svc_route_fn fn, void *udata);

/** The request's method ("HEAD" for a HEAD on a GET route). */
P2P_EXTERN const char *p2p_svc_req_method(const p2p_svc_request *req);
/** The normalized path, without the query ("/services/<name>/..."). */
P2P_EXTERN const char *p2p_svc_req_path(const p2p_svc_request *req);
/** The query string without its '?' ("" when there is none), not decoded. */
P2P_EXTERN const char *p2p_svc_req_query(const p2p_svc_request *req);
/** The body (not NUL-terminated; may be NULL when *len is 0). */
P2P_EXTERN const char *p2p_svc_req_body(const p2p_svc_request *req, size_t *len);
/** A request header's value by name (case-insensitive), or NULL (also once the
 * client is gone). */
P2P_EXTERN const char *p2p_svc_req_header(p2p_svc_request *req, const char *name);
/** Who calls: the token's subject or the node id of a node certificate ("" on
 * a public route without credentials), and the role: "admin", "viewer",
 * "node" or "". */
P2P_EXTERN const char *p2p_svc_req_caller(const p2p_svc_request *req);
P2P_EXTERN const char *p2p_svc_req_role(const p2p_svc_request *req);

/** Answers and ends the request: `status` 200..599, a content type (NULL:
 * "application/octet-stream") and `len` bytes of body (copied). A client that
 * went away meanwhile gets nothing; the request ends all the same. Returns 0,
 * or -EINVAL for a status out of range (the client then gets 500). */
P2P_EXTERN int p2p_svc_respond(p2p_svc_request *req, int status, const char *content_type, const char *body,
                               size_t len);

#ifdef __cplusplus
}
#endif
#endif
