/*
 * revsync.h — the "revsync" component: one deny list and one token key set for
 * the whole cluster.
 *
 * The coordinator holds the authoritative deny list (auth/guard.h), each entry
 * stamped with the list version at which it was added; the version only grows.
 * It publishes the version in its membership record ("metadata":
 * {"revocations": V}), which gossips to every node well within a second. A node
 * that sees a version other than its own fetches the entries it lacks
 * (GET /internal/revocations?since=MINE, mutual TLS, through the membership's
 * outbound client), applies them and stores them in its vault; it also fetches
 * once at start, so a node that was down catches up as it rejoins. The
 * coordinator counts a node as confirmed for version V once it served that
 * node a fetch at V or later.
 *
 * A revocation made on a worker is checked and listed there at once (vault),
 * kept as pending and sent to the coordinator (POST /internal/revoke with the
 * token itself: the coordinator re-verifies it, so a node can revoke only
 * tokens it holds), again every few seconds until the coordinator has it.
 *
 * POST /auth/revoke answers once the entry is on disk and, on a healthy
 * cluster, on every live node, waiting at most P2P_REVSYNC_CONFIRM_MS:
 *   {"revoked":true,"version":V,"nodes_total":N,"nodes_confirmed":M}
 *
 * Keys: the coordinator publishes the tag of its public key set
 * (p2p_jwt_keyset_tag) in its record ("metadata": {"jwt_keys": TAG}); a node
 * whose own set has another tag (a rotation, a prune) fetches GET
 * /internal/jwt-keys and takes the coordinator's set as its own (at most once
 * per P2P_REVSYNC_TAG_KEYS_MS). A token naming a key id the node does not know
 * makes it fetch too (at most once per P2P_REVSYNC_KEYS_EVERY_MS). Every node
 * prunes retired keys whose retire_at has come, on every tick.
 */
#ifndef P2P_AUTH_REVSYNC_H
#define P2P_AUTH_REVSYNC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

#define P2P_REVSYNC_TICK_MS 100
#define P2P_REVSYNC_CONFIRM_MS 2000   /* how long a revoke answer waits for the nodes */
#define P2P_REVSYNC_RETRY_MS 2000     /* pending revocations are sent again after */
#define P2P_REVSYNC_KEYS_EVERY_MS 5000
#define P2P_REVSYNC_TAG_KEYS_MS 1000
#define P2P_REVSYNC_MAX_CONFIRMS 10000 /* nodes remembered with their confirmed version */

/* Adds the component (after "security" and "membership"). */
int p2p__revsync_register(p2p_ctx *ctx);

/* An answer for the HTTP layer: status and body (ownership passes to the callee). */
typedef void (*p2p_revsync_cb)(int status, json_t *body, void *arg);

/* Revokes a presented token cluster-wide (see above). Returns 0 (then `cb`
 * runs exactly once, maybe before this returns), or -EACCES with `why` when the
 * token does not verify here, or another negative errno with `why`. */
int p2p__revsync_revoke(p2p_ctx *ctx, const char *token, size_t len, const char **why, p2p_revsync_cb cb,
                        void *arg);

/* The coordinator's answer to GET /internal/revocations?since=V from `node_id`
 * (a new reference), remembering that node as confirmed at the current version. */
json_t *p2p__revsync_serve(p2p_ctx *ctx, uint64_t since, const char *node_id);

#endif
