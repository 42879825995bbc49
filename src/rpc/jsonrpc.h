/*
 * jsonrpc.h — JSON-RPC 2.0: a pure decoder (bytes in, requests out, no I/O) and
 * an executor that runs decoded requests against the method registry.
 *
 * Accepted: single requests and batches; notifications (no "id" member: run,
 * never answered); ids that are strings, numbers or null, echoed as given; the
 * original framework's shape {"method","params","id"} without "jsonrpc".
 * A "jsonrpc" member other than "2.0" is an invalid request.
 */
#ifndef P2P_RPC_JSONRPC_H
#define P2P_RPC_JSONRPC_H

#include <jansson.h>
#include <stddef.h>

#include "p2p/p2p.h"

#define JSONRPC_MAX_BATCH 1000

typedef struct jsonrpc_item {
    json_t *id;          /* borrowed from the message; NULL when absent */
    int notification;    /* no "id" member */
    const char *method;  /* borrowed; valid when error == 0 */
    json_t *params;      /* borrowed; object, array or NULL */
    int error;           /* 0, or P2P_RPC_INVALID_REQUEST for this item */
    const char *error_msg;
} jsonrpc_item;

typedef struct jsonrpc_msg {
    json_t *root;      /* owned */
    int is_batch;
    size_t n;
    jsonrpc_item *items;
    int error;         /* whole-message error: parse error, empty or oversized batch, not a request */
    char error_msg[200];
} jsonrpc_msg;

/* Decodes `len` bytes. Returns 0 or the whole-message error code (also in
 * out->error); `out` must be released with jsonrpc_msg_free() either way. */
int jsonrpc_decode(const char *buf, size_t len, jsonrpc_msg *out);
void jsonrpc_msg_free(jsonrpc_msg *m);

/* A JSON-RPC error response object (new reference). `id` is borrowed (NULL = null). */
json_t *jsonrpc_error_response(json_t *id, int code, const char *message, json_t *data);

/* Called once when every request of a message has completed. `response` is the
 * object (single), the array (batch) or NULL when nothing is to be sent (only
 * notifications); ownership passes to the callee. */
typedef void (*jsonrpc_done_cb)(json_t *response, void *arg);

/* Runs the decoded message against ctx's registry. Takes ownership of `msg`'s
 * contents (the caller must not free it). `cb` may run before this returns. */
void jsonrpc_execute(p2p_ctx *ctx, jsonrpc_msg *msg, jsonrpc_done_cb cb, void *arg);

/* Who sent a message, for calls a method makes on to other nodes.
 * `authz`: the operator's Authorization header value (copied), or NULL;
 * `node`: the caller is another node's certificate (no operator token), which
 * may not run P2P_METHOD_ADMIN methods (error P2P_RPC_E_FORBIDDEN). */
typedef struct jsonrpc_caller {
    const char *authz;
    int node;
    /* the node id of a client certificate that sent the call itself (not
     * relayed by cluster/call or X-P2P-Node: those carry X-P2P-Relayed), or NULL */
    const char *node_id;
    /* the node is the coordinator (its certificate's role, verified by mutual
     * TLS) and the call is its own: it may run P2P_METHOD_COORDINATOR methods */
    int coordinator;
} jsonrpc_caller;

#define P2P_RPC_E_FORBIDDEN (-32005)

/* Set by a node on requests it relays for another caller (cluster/call,
 * X-P2P-Node): the receiver then does not take the call as the relaying
 * node's own (p2p__call_node_id is NULL). */
#define P2P_RELAYED_HEADER "X-P2P-Relayed"
/* Set by the coordinator's orchestrator on its own calls (never on a
 * service's): with the coordinator's verified certificate, the receiver lets
 * them run P2P_METHOD_COORDINATOR methods. */
#define P2P_COORDINATOR_CALL_HEADER "X-P2P-Coordinator-Call"

/* jsonrpc_execute for a known caller (NULL = in process, trusted). */
void jsonrpc_execute_as(p2p_ctx *ctx, jsonrpc_msg *msg, const jsonrpc_caller *caller, jsonrpc_done_cb cb,
                        void *arg);
/* The caller of the message a call belongs to (see above). */
const char *p2p__call_authz(const p2p_call *call);
int p2p__call_from_node(const p2p_call *call);
/* The node a call comes from: the node id of the client certificate that sent
 * it directly, this node's id for an in-process call (no caller), or NULL (an
 * operator's token, or a call relayed for someone else). For methods only a
 * node may call about itself (log_collector/add_logs). */
const char *p2p__call_node_id(const p2p_call *call);
/* The call's request id ("<this node's id>-<n>", unique on this node until it
 * restarts): lines logged on the loop thread while the method's handler runs
 * carry it as their request_id; code that logs later for the call (after an
 * asynchronous step) passes it to p2p__log_meta itself. */
const char *p2p__call_request_id(const p2p_call *call);

/* How many method calls are running right now (for graceful shutdown). */
size_t jsonrpc_inflight(const p2p_ctx *ctx);

/* Runs fn(arg) once `call` has completed (after its response is recorded, on
 * the loop thread): the services manager counts calls in flight per loaded
 * version with it. One hook per call; a second replaces the first. */
void p2p__call_on_done(p2p_call *call, void (*fn)(void *arg), void *arg);

#endif
