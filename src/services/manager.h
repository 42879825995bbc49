/*
 * manager.h — the "services" component: pluggable services from
 * services_directory (manager.c; the design is described there).
 */
#ifndef P2P_SERVICES_MANAGER_H
#define P2P_SERVICES_MANAGER_H

#include <jansson.h>

#include "core/ctx.h"

/* Adds the "services" component (after "system"). */
int p2p__services_register(p2p_ctx *ctx);

/* What services/list says of service `name` (a new reference), or NULL when
 * the node has no such pluggable service. */
json_t *p2p__services_describe(p2p_ctx *ctx, const char *name);

/* The folder the node loads pluggable services from. */
const char *p2p__services_dir(p2p_ctx *ctx);

/* 1 when no pluggable service has anything running or stopping (tests, shutdown). */
int p2p__services_quiet(p2p_ctx *ctx);

/* A pluggable service's own metrics (p2p_svc_counter_add, gauge_set, observe)
 * as {name: value} (a histogram as name_count and name_sum; at most 64), a new
 * reference; NULL when there is no pluggable service of that name. For the
 * dashboard's ServiceView. */
#include <jansson.h>
json_t *p2p__services_own_metrics(p2p_ctx *ctx, const char *name);
/* Listener of this node's pluggable services: runs on the loop after each state
 * change, with the service's name and its description as `list` shows it
 * (borrowed: version, type, state, reason, health, methods, ...). Listeners stay
 * until the context is freed; `arg` must live as long. Returns 0. */
typedef void (*p2p_services_listener)(p2p_ctx *ctx, const char *name, json_t *desc, void *arg);
int p2p__services_listen(p2p_ctx *ctx, p2p_services_listener fn, void *arg);
/* New reference to [description, ...] of this node's pluggable services (as
 * the listener gets them). */
json_t *p2p__services_list_json(p2p_ctx *ctx);

#endif
