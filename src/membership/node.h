/*
 * node.h — the "membership" component: SWIM gossip (swim.h) over sealed UDP
 * datagrams (seal.h) on the node's port number, HTTPS push-pull anti-entropy
 * with the other nodes (POST /internal/gossip/exchange over mutual TLS), a
 * persisted snapshot for rejoining after a restart, and the member list other
 * components and the API read.
 *
 * Every state change of another node is logged as
 *     [membership] <node-id> <alive|suspect|dead|left> (incarnation N)
 * and passed to the listeners.
 */
#ifndef P2P_MEMBERSHIP_NODE_H
#define P2P_MEMBERSHIP_NODE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

/* Adds the "membership" component (after "pki", which holds the gossip key). */
int p2p__membership_register(p2p_ctx *ctx);

/* A member as the API shows it (a new reference): node_id, status, incarnation,
 * addresses, port, role, last_seen (Unix seconds, null for never), services,
 * capabilities, metadata. */
json_t *p2p__membership_nodes_json(p2p_ctx *ctx);

/* Looks a member up: its advertised address and port, and whether it is alive
 * (ALIVE or SUSPECT). Returns 0, -ENOENT (unknown) or -ENODEV (dead or left). */
int p2p__membership_lookup(p2p_ctx *ctx, const char *node_id, char *addr, size_t addr_len, uint16_t *port);

/* Ids of the live members (ALIVE or SUSPECT, self included) with `role` (NULL =
 * any), as a new JSON array of strings. */
json_t *p2p__membership_live_ids(p2p_ctx *ctx, const char *role);

/* Listener of membership events: `ev` is "join", "update", "suspect", "dead",
 * "leave", "alive" (back from suspect/dead/left) or "reaped". */
typedef void (*p2p_membership_listener)(p2p_ctx *ctx, const char *ev, const char *node_id, void *arg);
int p2p__membership_listen(p2p_ctx *ctx, p2p_membership_listener fn, void *arg);

/* Publishes `key` = `value` (borrowed) in this node's record's "metadata"
 * object and gossips the record at once when it changed. 0 or -EINVAL. */
int p2p__membership_set_metadata(p2p_ctx *ctx, const char *key, json_t *value);
/* The "metadata" object of a member's record as this node last heard it (a new
 * reference), or NULL (unknown member, no metadata). */
json_t *p2p__membership_metadata(p2p_ctx *ctx, const char *node_id);

/* The pooled HTTP/2 mutual-TLS client to other nodes, or NULL. */
struct p2p__httpc;
struct p2p__httpc *p2p__membership_client(p2p_ctx *ctx);

/* POST /internal/gossip/exchange from the node `peer_node` (its client certificate's
 * node id): merges the peer's records (each must be signed by its own node) and
 * answers with ours (a new reference), or NULL with a message when the body is
 * malformed or its "from" is not peer_node. */
json_t *p2p__membership_exchange(p2p_ctx *ctx, const char *body, size_t len, const char *peer_node,
                                 const char **why);

/* The component's routes (membership/http_membership.c). */
int p2p__membership_http_start(p2p_ctx *ctx);
void p2p__membership_http_stop(p2p_ctx *ctx);

#endif
