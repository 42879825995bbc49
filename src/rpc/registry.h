/*
 * registry.h — the method registry: services and their methods, keyed
 * "service/method" in an open-addressing hash table, with per-method metrics.
 *
 * It is the single source of truth for what a node can do: /rpc dispatches
 * through it, /services and /metrics and system/list_methods read it.
 */
#ifndef P2P_RPC_REGISTRY_H
#define P2P_RPC_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "p2p/p2p.h"

/* Latency histogram bucket upper bounds, in microseconds; one more bucket for +Inf. */
#define P2P_LAT_BUCKETS 16
extern const uint64_t p2p__lat_bounds_us[P2P_LAT_BUCKETS];

typedef struct p2p_method_stats {
    uint64_t calls;  /* completed calls */
    uint64_t errors; /* completed with an error */
    uint64_t sum_us;
    uint64_t max_us;
    uint64_t buckets[P2P_LAT_BUCKETS + 1]; /* non-cumulative counts */
} p2p_method_stats;

typedef struct p2p_service p2p_service;

typedef struct p2p_method {
    char *path; /* "service/name" */
    char *name;
    char *description;
    char *params;
    unsigned flags;
    p2p_method_fn fn;
    void *udata;
    p2p_service *service;
    p2p_method_stats stats;
} p2p_method;

struct p2p_service {
    char *name;
    char *version;
    char *description;
    int builtin;
    const char *status; /* "running", "stopped", ... (static strings) */
    uint64_t started_at_ms;
    p2p_method **methods;
    size_t n_methods;
    /* More about the service for /services and list_services (pluggable
     * services: type, state, health, restarts ...): a new object whose members
     * are added to the description, or NULL. Set by the service's owner. */
    json_t *(*describe)(const p2p_service *s, void *arg);
    void *describe_arg;
};

typedef struct p2p_registry p2p_registry;
struct p2p_registry {
    p2p_method **table; /* open addressing, power-of-two capacity */
    size_t cap, count;
    p2p_service **services; /* registration order */
    size_t n_services;
    size_t inflight; /* method calls started and not yet completed */
    uint64_t calls_seen; /* method calls dispatched since start (request ids) */
    /* Removed services with their methods: calls in flight may still point at
     * them, so they are freed only with the registry. */
    p2p_service **removed;
    size_t n_removed;
};

p2p_registry *p2p__registry_new(void);
void p2p__registry_free(p2p_registry *reg);

p2p_service *p2p__registry_service(p2p_registry *reg, const char *name);
p2p_method *p2p__registry_find(p2p_registry *reg, const char *path, size_t len);

/* Removes a service and its methods from lookups and listings (a removed
 * pluggable service). Its memory stays valid until the registry is freed.
 * Returns 0 or -ENOENT. */
int p2p__registry_remove_service(p2p_registry *reg, const char *name);

/* Records a completed call's outcome and duration. */
void p2p__method_stats_record(p2p_method_stats *st, uint64_t dur_us, int is_error);

/* Estimates the q-quantile (0..1) from the histogram, in microseconds (0 when empty). */
double p2p__method_stats_quantile(const p2p_method_stats *st, double q);

#endif
