/*
 * http_api.h — the system service's HTTP routes (builtin/http_api.c).
 */
#ifndef P2P_BUILTIN_HTTP_API_H
#define P2P_BUILTIN_HTTP_API_H

#include "core/ctx.h"

/* Adds /health, /rpc, /services, /metrics and /routes; from the system
 * component's start. Returns 0 or a negative code. */
int p2p__system_http_start(p2p_ctx *ctx);
void p2p__system_http_stop(p2p_ctx *ctx);

#endif
