/*
 * guard.h — who is calling, and may they: the node's authentication,
 * authorization and rate limiting, registered as the "security" component.
 *
 * Identities, strongest first:
 *   node    a client certificate from the cluster CA (mutual TLS): subject = CN;
 *   admin / viewer / node tokens: an HS256 JWT from POST /auth/token, checked
 *           against the cluster JWT secret and the revocation list;
 *   anonymous: neither (only the open routes answer).
 * Secrets (JWT secret, admin API key, revoked tokens) live in the node's vault.
 */
#ifndef P2P_AUTH_GUARD_H
#define P2P_AUTH_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef enum p2p_role { P2P_ROLE_NONE = 0, P2P_ROLE_VIEWER, P2P_ROLE_ADMIN, P2P_ROLE_NODE } p2p_role;

typedef struct p2p_identity {
    p2p_role role;
    int via_cert;         /* authenticated by a client certificate */
    char subject[128];    /* node id or token subject; "" when anonymous */
    char client_ip[64];   /* the peer (or, from a trusted proxy, the forwarded client) */
    char rl_key[160];     /* rate-limit bucket: "node:<id>", "tok:<role>:name:<name>",
                             "tok:<role>:jti:<jti>"; "" = the client address's */
    const char *why;      /* why a presented token was refused (static), or NULL */
} p2p_identity;

typedef struct p2p_guard p2p_guard;

/* Adds the "security" component; it needs the vault opened by the agent
 * (shared object "vault"). */
int p2p__guard_register(p2p_ctx *ctx);
p2p_guard *p2p__guard(p2p_ctx *ctx);

/* Fills `id` from the peer certificate's node id (or NULL), the Authorization
 * header value (or NULL) and the peer address. */
void p2p__guard_identify(p2p_guard *g, const char *peer_node, const char *authz, size_t authz_len,
                         const char *peer_ip, const char *xff, p2p_identity *id);

/* Rate limit: 1 allowed, 0 limited (with seconds to wait). cls: P2P_RL_RPC,
 * _HEALTH or _OTHER; a node certificate is counted in the node classes. */
int p2p__guard_rate(p2p_guard *g, const p2p_identity *id, int cls, uint32_t *retry_after_s);
/* A JSON-RPC batch of `calls` calls costs `calls` tokens; its request paid one
 * at admission (p2p__guard_rate), this takes the other calls - 1. Returns 1
 * allowed, 0 limited (nothing more taken; *retry_after_s is the wait until
 * the whole batch can pass again), -E2BIG when `calls` exceeds the identity's
 * burst in that class (*burst set: such a batch can never pass). */
int p2p__guard_rate_batch(p2p_guard *g, const p2p_identity *id, int cls, uint32_t calls, uint32_t *retry_after_s,
                          uint32_t *burst);

/* Checks an admin API key in constant time. */
int p2p__guard_admin_key_ok(p2p_guard *g, const char *key, size_t len);

/* Issues a token for `sub` with `role` ("admin", "viewer", "node") and an
 * optional `name` (NULL = none; keys the token's rate-limit bucket); ttl 0 = jwt_ttl. */
int p2p__guard_issue(p2p_guard *g, const char *sub, const char *role, const char *name, int64_t ttl_s, char **token,
                     int64_t *exp);

/* Revokes a presented token (which must verify) and saves the list to the vault.
 * `done` runs once the list is on disk (status 0) or saving failed; it may run
 * before this returns. Returns 0 (then `done` runs exactly once) or -EACCES with
 * `why` when the token is not one this node would accept. */
typedef void (*p2p_guard_done_cb)(int status, void *arg);
int p2p__guard_revoke(p2p_guard *g, const char *token, size_t len, const char **why, p2p_guard_done_cb done,
                      void *arg);

/* The cluster JWT secret (for enrollment of workers), 32 bytes. */
const uint8_t *p2p__guard_jwt_secret(p2p_guard *g, size_t *len);
/* Replaces the JWT secret (a worker takes the cluster's at enrollment) and saves. */
int p2p__guard_set_jwt_secret(p2p_guard *g, const uint8_t *secret, size_t len);

const char *p2p__role_name(p2p_role r);

/* A rate limiter for the rate_limit_* keys of `cfg`. Returns 0, or an error
 * with *err (heap string) when err is non-NULL. system/update_config builds
 * the new one before it changes or stores anything, then swaps it in. */
struct p2p_ratelimit;
int p2p__guard_limiter_new(const p2p_config *cfg, struct p2p_ratelimit **out, char **err);
/* Installs `rl` (ownership passes) and frees the previous limiter. */
void p2p__guard_limiter_swap(p2p_guard *g, struct p2p_ratelimit *rl);

#endif
