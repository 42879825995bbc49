/*
 * http_rpc.h — POST /rpc on the HTTP server (rpc/http_rpc.c).
 */
#ifndef P2P_RPC_HTTP_RPC_H
#define P2P_RPC_HTTP_RPC_H

#include "core/ctx.h"

/* Adds POST /rpc (owned by `owner`, shown in GET /routes) and the drain's
 * probe for calls in flight. Returns 0 or a negative code. */
int p2p__rpc_http_start(p2p_ctx *ctx, const char *owner);
void p2p__rpc_http_stop(p2p_ctx *ctx);

#endif
