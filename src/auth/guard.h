/*
 * guard.h — who is calling, and may they: the node's authentication,
 * authorization and rate limiting, registered as the "security" component.
 *
 * Identities:
 *   admin / viewer: an ES256 JWT from the coordinator's POST /auth/token,
 *           checked against the cluster's public key set and the revocation
 *           list. A token decides even on a connection with a node
 *           certificate: that is an operator's call forwarded by a node, and
 *           the target authorizes the operator, not the forwarding node;
 *   node    a client certificate from the cluster CA (mutual TLS) and no token:
 *           subject = CN. A node identity never becomes an operator token;
 *   anonymous: neither (only the open routes answer).
 *
 * Keys: only the coordinator holds the private signing key (vault
 * keys/jwt_signing_key); every node holds the public key set (vault
 * data/jwt_public_keys), delivered at enrollment and renewal, and refreshed
 * from the coordinator (GET /internal/jwt-keys) when a token names an unknown
 * key id or the coordinator publishes another key set tag (auth/revsync.h).
 * The coordinator rotates its signing key on an operator's request
 * (auth/rotate_signing_key, auth/keyrot.c); a retired public key stays in the
 * set until every token it signed has expired, then every node prunes it.
 *
 * Revocation: a deny list of token ids (jti) and certificate fingerprints, with
 * the coordinator's version number on each entry (see auth/revsync.h for how it
 * spreads). Stored in the vault (data/revoked_tokens) as
 *   {"format":2,"version":V,"jtis":{jti:[exp,seq]},"certs":{fp:[exp,seq]},
 *    "pending":[token,...]}
 * where "pending" holds tokens revoked on this worker that the coordinator has
 * not confirmed yet (they are sent again until it does).
 */
#ifndef P2P_AUTH_GUARD_H
#define P2P_AUTH_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth/jwt.h"
#include "core/ctx.h"

#define P2P_GUARD_JTI_MAX 128

typedef enum p2p_role { P2P_ROLE_NONE = 0, P2P_ROLE_VIEWER, P2P_ROLE_ADMIN, P2P_ROLE_NODE } p2p_role;

typedef struct p2p_identity {
    p2p_role role;
    int via_cert;         /* the connection has a client certificate from the cluster CA */
    char peer_node[64];   /* that certificate's node id, "" without one */
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
 * _HEALTH or _OTHER; a node certificate is counted in the node classes;
 * P2P_RL_CA_CERT is one bucket for all callers; P2P_RL_ENROLL_* are not
 * metered here (always 1): the route meters them with p2p__guard_rate_key. */
int p2p__guard_rate(p2p_guard *g, const p2p_identity *id, int cls, uint32_t *retry_after_s);
/* The bucket `key` of class `cls`: takes one token (peek 0) or only says
 * whether one is there (peek 1). 1 allowed, 0 limited (*retry_after_s >= 1).
 * Always 1 when rate limiting is off. */
int p2p__guard_rate_key(p2p_guard *g, const char *key, int cls, int peek, uint32_t *retry_after_s);
/* A JSON-RPC batch of `calls` calls costs `calls` tokens; its request paid one
 * at admission (p2p__guard_rate), this takes the other calls - 1. Returns 1
 * allowed, 0 limited (nothing more taken; *retry_after_s is the wait until
 * the whole batch can pass again), -E2BIG when `calls` exceeds the identity's
 * burst in that class (*burst set: such a batch can never pass). */
int p2p__guard_rate_batch(p2p_guard *g, const p2p_identity *id, int cls, uint32_t calls, uint32_t *retry_after_s,
                          uint32_t *burst);

/* Checks an admin API key in constant time. */
int p2p__guard_admin_key_ok(p2p_guard *g, const char *key, size_t len);

/* 1 when this node holds the signing key (the coordinator), else 0. */
int p2p__guard_can_sign(p2p_guard *g);

/* Issues a token for `sub` with `role` ("admin" or "viewer") and an optional
 * `name` (NULL = none; keys the token's rate-limit bucket); ttl 0 = jwt_ttl.
 * Returns 0, -EPERM on a node without the signing key, or -EINVAL/-EIO/-ENOMEM. */
int p2p__guard_issue(p2p_guard *g, const char *sub, const char *role, const char *name, int64_t ttl_s, char **token,
                     int64_t *exp);

/* ---- public keys ---- */

/* New reference to the public key set {"keys":[{kid, alg, pem}, ...]}. */
json_t *p2p__guard_keys_json(p2p_guard *g);
/* 1 once a token named a key id this node does not know (cleared by reading):
 * the caller should refresh the key set. */
int p2p__guard_keys_wanted(p2p_guard *g);
/* The tag of this node's key set (p2p_jwt_keyset_tag). */
void p2p__guard_keys_tag(p2p_guard *g, char out[P2P_JWT_TAG_LEN + 1]);
/* Takes the coordinator's key set document as this node's set (a worker: the
 * coordinator is the authority on which keys exist, retired or not), stores it
 * and saves the vault in the background. All or nothing; a document without
 * a usable key is refused. Returns 0, -EINVAL or -ENOSPC. */
int p2p__guard_set_keys_json(p2p_guard *g, const json_t *doc);
/* Drops retired keys whose retire_at has come (any node; called every tick);
 * stores the set when it changed. Returns how many went. */
size_t p2p__guard_prune_keys(p2p_guard *g);

/* ---- rotating the signing key (coordinator) ---- */

/* `info` (borrowed, NULL on failure): {"kid", "previous_kid", "dropped",
 * "previous_retire_at" (null when dropped), "keys"}; `err` names a failure. */
typedef void (*p2p_guard_rotate_cb)(int status, json_t *info, const char *err, void *arg);
/* Makes `new_pem` (a private P-256 key made off the loop thread; ownership
 * passes, whatever the result) the signing key. The old public key stays in the
 * set with retire_at = the latest expiry of a token it signed (now + jwt_ttl,
 * or later when a longer token was issued in this run) + the verifier's
 * leeway, and is pruned then; with `drop_old` it goes at once and its tokens
 * are refused. The new key and set are saved to the vault first; only then are
 * they used (`cb` runs once, on the loop thread; a save failure changes
 * nothing). Returns 0, or -EPERM (not the coordinator), -EBUSY (a rotation is
 * being saved), -ENOSPC (16 keys, none retired yet), -EINVAL with `why`. */
int p2p__guard_rotate(p2p_guard *g, char *new_pem, int drop_old, p2p_guard_rotate_cb cb, void *arg,
                      const char **why);

/* ---- revocation ---- */

typedef void (*p2p_guard_done_cb)(int status, void *arg);

/* Checks a presented token's signature and claims (not the revocation list) and
 * returns its jti and exp. 0 or -EACCES with `why`. */
int p2p__guard_check_token(p2p_guard *g, const char *token, size_t len, char jti[P2P_GUARD_JTI_MAX + 1],
                           int64_t *exp, const char **why);

/* Revokes a presented token (which must verify) and saves the list to the vault.
 * On the coordinator the entry gets the next deny-list version (*seq_out); on
 * a worker it is kept as pending until the coordinator confirms it (*seq_out 0).
 * `done` runs once the list is on disk (status 0) or saving failed; it may run
 * before this returns. Returns 0 (then `done` runs exactly once) or -EACCES with
 * `why` when the token is not one this node would accept. */
int p2p__guard_revoke(p2p_guard *g, const char *token, size_t len, const char **why, uint64_t *seq_out,
                      p2p_guard_done_cb done, void *arg);

/* Revokes a certificate by its SHA-256 fingerprint (64 lowercase hex digits)
 * until `exp` (its notAfter), on the coordinator with the next deny-list version;
 * TLS peer verification then refuses it on every node. `done` as above (may be
 * NULL). Returns 0, -EINVAL (fingerprint, exp) or -ENOSPC. */
int p2p__guard_revoke_cert(p2p_guard *g, const char *fingerprint, int64_t exp, p2p_guard_done_cb done, void *arg);
/* 1 when the fingerprint (64 lowercase hex digits) is revoked. */
int p2p__guard_cert_revoked(p2p_guard *g, const char *fingerprint);

/* The deny-list version: on the coordinator the authoritative one, on a worker
 * the coordinator version it has caught up with. */
uint64_t p2p__guard_revocation_version(p2p_guard *g);
/* New reference to {"format":2,"version":V,"jtis":{..},"certs":{..}} with the
 * entries whose version is > since. */
json_t *p2p__guard_revocations_json(p2p_guard *g, uint64_t since);
/* Merges such a document from the coordinator, sets the version to its
 * "version", confirms pending tokens now listed with a version, and saves in
 * the background. All or nothing; returns 0 or -EINVAL/-ENOSPC. */
int p2p__guard_apply_revocations(p2p_guard *g, const json_t *doc);
/* The tokens revoked here and not yet confirmed by the coordinator (borrowed
 * array of strings, valid until the next guard call). */
const json_t *p2p__guard_pending(p2p_guard *g);

const char *p2p__role_name(p2p_role r);

/* A rate limiter for the rate_limit_* keys of `cfg`. Returns 0, or an error
 * with *err (heap string) when err is non-NULL. system/update_config builds
 * the new one before it changes or stores anything, then swaps it in. */
struct p2p_ratelimit;
int p2p__guard_limiter_new(const p2p_config *cfg, struct p2p_ratelimit **out, char **err);
/* Installs `rl` (ownership passes) and frees the previous limiter. */
void p2p__guard_limiter_swap(p2p_guard *g, struct p2p_ratelimit *rl);

#endif
