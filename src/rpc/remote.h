/*
 * remote.h — calls to other nodes (see remote.c). The public entry point,
 * p2p_call_remote, is declared in include/p2p/p2p.h.
 */
#ifndef P2P_RPC_REMOTE_H
#define P2P_RPC_REMOTE_H
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

/* Registers the "cluster" service (cluster/call). */
int p2p__remote_register_service(p2p_ctx *ctx);

/* Forwards a raw JSON-RPC body to a node's /rpc. Returns 0 (then `cb` runs once,
 * later, with the HTTP status and body, or status 0 and an error code/message)
 * or a P2P_RPC_E_* code when it cannot start (unknown node, not alive, no client). */
typedef void (*p2p_remote_raw_cb)(void *arg, int status, const char *body, size_t len, int err, const char *msg);
/* `authz`: the operator's Authorization header value to send along (NULL: the
 * call goes as this node). */
/* p2p_call_remote for the coordinator's orchestrator only: the target runs the
 * call as the coordinator's (P2P_METHOD_COORDINATOR methods allowed). -EPERM
 * on a node that is not the coordinator. */
int p2p__call_remote_coordinator(p2p_ctx *ctx, const char *target, const char *method, json_t *params,
                                 uint32_t timeout_ms, p2p_remote_cb cb, void *udata);

int p2p__remote_forward(p2p_ctx *ctx, const char *node_id, const char *body, size_t len, const char *authz,
                        uint32_t timeout_ms, p2p_remote_raw_cb cb, void *arg);
/* p2p_call_remote on behalf of whoever made `call`: the operator's
 * Authorization goes along (the target authorizes the operator, as
 * cluster/call does), a node caller stays a node identity. For methods that act
 * on another node for their caller (metrics_dashboard/control_service). */
#include <jansson.h>
#include "p2p/p2p.h"
int p2p__call_remote_for(p2p_call *call, const char *target, const char *method, json_t *params,
                         uint32_t timeout_ms, p2p_remote_cb cb, void *udata);
#endif
