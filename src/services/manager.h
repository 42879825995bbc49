/*
 * manager.h — the "services" component: pluggable services from
 * services_directory (manager.c; the design is described there).
 */
#ifndef P2P_SERVICES_MANAGER_H
#define P2P_SERVICES_MANAGER_H

#include "core/ctx.h"

/* Adds the "services" component (after "system"). */
int p2p__services_register(p2p_ctx *ctx);

/* 1 when no pluggable service has anything running or stopping (tests, shutdown). */
int p2p__services_quiet(p2p_ctx *ctx);

#endif
