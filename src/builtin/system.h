/*
 * system.h — the built-in `system` service (always present, cannot be stopped).
 */
#ifndef P2P_BUILTIN_SYSTEM_H
#define P2P_BUILTIN_SYSTEM_H

#include "core/ctx.h"

/* Adds the "system" component, which registers the service and its methods. */
int p2p__system_register(p2p_ctx *ctx);

#endif
