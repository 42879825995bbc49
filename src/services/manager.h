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

#endif
