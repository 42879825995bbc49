/*
 * jwt.h — ES256 JSON Web Tokens for API authentication, the verification key
 * set, a revocation list, and the Authorization header parser. Pure: no I/O,
 * time is passed in (Unix seconds), nothing global.
 *
 * Why ES256: the coordinator alone holds the private key (in its vault); every
 * node verifies with the public key(s). A worker can check a token but never
 * make one, so a compromised worker cannot mint admin tokens.
 *
 * Issuing: a token carries exactly the claims sub, role, iat, exp and jti
 * (128 random bits, 32 lowercase hex digits), header
 * {"alg":"ES256","kid":"<key id>","typ":"JWT"}; the signature is the JWS form
 * of ECDSA P-256/SHA-256: r || s, 32 bytes each (RFC 7518 §3.4), not DER.
 *
 * Key ids: the first 16 bytes of SHA-256 over the public key's DER
 * SubjectPublicKeyInfo, 32 lowercase hex digits. A key id names one key; a
 * rotated key gets a new id, and the key set keeps the old public key, marked
 * with a retire_at time (Unix seconds: past the expiry of every token it
 * signed, leeway included), so its tokens verify until they expire; from
 * retire_at on it verifies nothing and p2p_jwt_keyset_prune() drops it.
 * Key set document: {"keys":[{"kid","alg":"ES256","pem","retire_at"?}, ...]}
 * ("retire_at" only on retired keys: an integer 1..P2P_JWT_MAX_TIME).
 *
 * Verification policy, in order (the first failure decides; `why` names it):
 *   1. size and shape: 1..P2P_JWT_MAX_TOKEN bytes, exactly two dots, three
 *      segments of the base64url alphabet without padding, canonical encoding
 *      (unused trailing bits zero), header and payload non-empty and decoding to
 *      JSON objects without NUL bytes or duplicate members   -> "no token",
 *      "token too large", "malformed token";
 *   2. header: "alg" must be exactly "ES256" (case-sensitive; none, HS256,
 *      HS384, RS256, ES384 ... are refused) -> "algorithm not allowed"; "kid"
 *      a string of 1..P2P_JWT_MAX_KID hex digits -> "missing key id"; the only
 *      other member allowed is "typ", exactly "JWT" -> "unsupported header";
 *      the kid must be in the key set -> "unknown key id", and its key not
 *      past its retire_at time -> "key retired";
 *   3. signature: exactly 64 bytes (86 base64url characters), verified with
 *      OpenSSL against that key only (r || s turned into DER here; r or s zero
 *      or not below the group order fail) -> "bad signature"; then libjwt
 *      decodes it again with the same (never NULL) public key and the algorithm
 *      it reports must be ES256 (a second opinion, never the only one);
 *   4. claims (only looked at once the signature is good): sub (string of
 *      1..P2P_JWT_MAX_SUB bytes, no control characters), role ("admin",
 *      "viewer" or "node"), iat and exp (JSON integers >= 0, exp > iat),
 *      jti (1..P2P_JWT_MAX_JTI characters of [A-Za-z0-9._~-]); nbf optional
 *      (integer >= 0); name optional (string of 1..P2P_JWT_MAX_NAME bytes, no
 *      control characters); other claims are ignored -> "missing claim: X",
 *      "invalid claim: X";
 *   5. time, with a leeway L (default P2P_JWT_DEFAULT_LEEWAY_S):
 *      expired when now >= exp + L; "not yet valid" when nbf > now + L;
 *      "issued in the future" when iat > now + L;
 *   6. if a revocation list is given and holds the jti -> "revoked".
 *
 * Revocation list (p2p_revoked): a bounded set of key -> (exp, seq). Keys are
 * jtis, or certificate fingerprints (64 hex digits, the same syntax). `seq` is
 * the coordinator's deny-list version at which the entry was added (0: added
 * here and not yet confirmed by the coordinator). An entry is kept until the
 * token it revokes could no longer pass step 5 on its own, i.e. purge forgets
 * it once now >= exp + L, with the same leeway L the verifier uses.
 * JSON form of a list: {"<key>": [<exp>, <seq>], ...}; the node's persisted and
 * wire documents (guard.c) are {"format":2,"version":V,"jtis":{..},"certs":{..}}.
 * The version 1 document {"version":1,"revoked":{"<jti>":<exp>}} still loads.
 */
#ifndef P2P_AUTH_JWT_H
#define P2P_AUTH_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_JWT_MAX_TOKEN 8192       /* bytes, whole compact token */
#define P2P_JWT_DEFAULT_LEEWAY_S 30  /* seconds of clock skew tolerated */
#define P2P_JWT_MAX_LEEWAY_S 3600
#define P2P_JWT_MAX_SUB 256          /* bytes */
#define P2P_JWT_MAX_JTI 128          /* characters */
#define P2P_JWT_MAX_NAME 64          /* bytes of the optional "name" claim */
#define P2P_JWT_KID_LEN 32           /* hex digits of the key ids we make */
#define P2P_JWT_MAX_KID 64           /* hex digits accepted in a header or key set */
#define P2P_JWT_MAX_KEYS 16          /* public keys in a key set */
#define P2P_JWT_MAX_PEM 4096         /* bytes of one PEM key */
#define P2P_JWT_TAG_LEN 16           /* hex digits of a key set's tag */
#define P2P_JWT_MAX_TIME 253402300799 /* 9999-12-31T23:59:59Z; `now` and exp must not exceed it */
#define P2P_REVOKED_DEFAULT_MAX 100000

/* Verified claims; strings are owned copies, released by p2p_jwt_claims_free(). */
typedef struct p2p_jwt_claims {
    char *sub;
    char *role; /* "admin", "viewer" or "node" */
    char *jti;
    char *name; /* optional "name" claim; NULL when absent */
    int64_t iat;
    int64_t exp;
    int64_t nbf; /* 0 when absent */
    int has_nbf;
} p2p_jwt_claims;

typedef struct p2p_revoked p2p_revoked;
typedef struct p2p_jwt_keyset p2p_jwt_keyset;

/* Verification options; NULL means leeway P2P_JWT_DEFAULT_LEEWAY_S, no revocation list. */
typedef struct p2p_jwt_opts {
    int64_t leeway_s;           /* 0..P2P_JWT_MAX_LEEWAY_S */
    const p2p_revoked *revoked; /* borrowed; NULL = none */
} p2p_jwt_opts;

/* 1 if `role` is one of "admin", "viewer", "node". */
int p2p_jwt_role_valid(const char *role);

/* ---- keys ---- */

/* Makes a new ECDSA P-256 private key, PEM (PKCS#8) in *pem_out (free with
 * p2p_jwt_pem_free). Slow-ish (a millisecond): call it off the loop thread.
 * Returns 0, -EIO or -ENOMEM. */
int p2p_jwt_keygen(char **pem_out);
/* Wipes and frees a PEM string from this module (NULL is fine). */
void p2p_jwt_pem_free(char *pem);
/* The public key (PEM SubjectPublicKeyInfo, *pub_out for free()) and key id
 * (kid_out, P2P_JWT_KID_LEN + 1 bytes) of a private or public P-256 PEM key.
 * Either out may be NULL. Returns 0 or -EINVAL (not a P-256 key). */
int p2p_jwt_key_info(const char *pem, char **pub_out, char *kid_out);

/* A set of at most P2P_JWT_MAX_KEYS public keys by key id. */
p2p_jwt_keyset *p2p_jwt_keyset_new(void);
void p2p_jwt_keyset_free(p2p_jwt_keyset *ks);
/* Adds a public (or private: only its public half is kept) P-256 PEM key; its
 * kid is computed. Adding a kid already present is a no-op. Returns 0,
 * -EINVAL (not a P-256 key) or -ENOSPC (set full). kid_out as above, may be NULL. */
int p2p_jwt_keyset_add_pem(p2p_jwt_keyset *ks, const char *pem, char *kid_out);
int p2p_jwt_keyset_has(const p2p_jwt_keyset *ks, const char *kid);
size_t p2p_jwt_keyset_count(const p2p_jwt_keyset *ks);
/* New reference to {"keys":[{"kid":"..","alg":"ES256","pem":".."},...]}. */
json_t *p2p_jwt_keyset_to_json(const p2p_jwt_keyset *ks);
/* Replaces nothing: adds every key of a document of the form above. All or
 * nothing: the whole document is validated first (at most P2P_JWT_MAX_KEYS
 * keys, each a P-256 public key whose computed kid equals the given one, alg
 * "ES256", retire_at absent or 1..P2P_JWT_MAX_TIME, no other member); on any
 * error nothing is added. A kid already in the set keeps its entry. Returns 0,
 * -EINVAL or -ENOSPC. */
int p2p_jwt_keyset_from_json(p2p_jwt_keyset *ks, const json_t *doc);

/* Retires key `kid` at `retire_at` (0 = in use again). 0, -ENOENT or -EINVAL. */
int p2p_jwt_keyset_set_retire(p2p_jwt_keyset *ks, const char *kid, int64_t retire_at);
/* The retire_at of `kid` (0 = in use), or -1 when it is not in the set. */
int64_t p2p_jwt_keyset_retire_at(const p2p_jwt_keyset *ks, const char *kid);
/* Removes `kid` at once. 0 or -ENOENT. */
int p2p_jwt_keyset_remove(p2p_jwt_keyset *ks, const char *kid);
/* Drops the keys whose retire_at has come (now >= retire_at); returns how many. */
size_t p2p_jwt_keyset_prune(p2p_jwt_keyset *ks, int64_t now);
/* A short name of the set's content (kids and retire_at times, order ignored):
 * P2P_JWT_TAG_LEN hex digits of SHA-256. Two nodes with the same tag hold the
 * same keys; the coordinator publishes its tag so workers notice a rotation. */
void p2p_jwt_keyset_tag(const p2p_jwt_keyset *ks, char out[P2P_JWT_TAG_LEN + 1]);

/* ---- tokens ---- */

/* 1 if `name` is a valid "name" claim: 1..P2P_JWT_MAX_NAME bytes of valid
 * UTF-8 without control characters. */
int p2p_jwt_name_valid(const char *name);

/* Issues a token for `sub` with `role` and an optional `name` (NULL = none; it
 * keys the token's rate-limit bucket: `p2p token --name ci-bot`), iat = now,
 * exp = now + ttl_s (ttl_s > 0),
 * signed with the private P-256 key `priv_pem` and its key id in the header.
 * *token_out (and *jti_out unless jti_out is NULL) are heap strings for free().
 * Returns 0, -EINVAL (not a private P-256 key, bad sub/role/times), -EIO (no
 * randomness, signing failed) or -ENOMEM. */
int p2p_jwt_issue(const char *priv_pem, const char *sub, const char *role, const char *name, int64_t now,
                  int64_t ttl_s, char **token_out, char **jti_out);

/* Verifies `token_len` bytes at `token` (need not be NUL-terminated, e.g. the
 * output of p2p_auth_parse_bearer) at time `now` (Unix seconds, 0..P2P_JWT_MAX_TIME)
 * against the public keys of `keys`.
 * Returns 0 and fills *out; -EACCES when the token is rejected; -EINVAL on a
 * caller error (keys NULL, now, opts); -ENOMEM. *why (if why is non-NULL) always
 * gets a static string: "ok" or the reason (see the policy above). */
int p2p_jwt_verify(const p2p_jwt_keyset *keys, const char *token, size_t token_len, int64_t now,
                   const p2p_jwt_opts *opts, p2p_jwt_claims *out, const char **why);

/* Frees the strings of `c` and zeroes it; safe on a zeroed struct. */
void p2p_jwt_claims_free(p2p_jwt_claims *c);

/* Parses an Authorization header value: optional leading/trailing spaces or
 * tabs, the scheme "Bearer" (any case), one or more spaces, then a token of
 * RFC 6750 b64token characters (ALPHA DIGIT - . _ ~ + /, then '=' padding only
 * at the end) and nothing else. On success *token points into `value`
 * (not NUL-terminated), *token_len > 0. Returns 0, -ENOENT when the value is
 * NULL, empty or blank, -EINVAL otherwise (other scheme, no token, bad chars). */
int p2p_auth_parse_bearer(const char *value, size_t len, const char **token, size_t *token_len);

/* ---- revocation list ---- */

/* Revocation list of at most `max_entries` (0 = P2P_REVOKED_DEFAULT_MAX) keys,
 * purged with `leeway_s` (use the verifier's leeway; negative = default).
 * Returns NULL only on a bad argument (leeway above P2P_JWT_MAX_LEEWAY_S). */
p2p_revoked *p2p_revoked_new(size_t max_entries, int64_t leeway_s);
void p2p_revoked_free(p2p_revoked *set);

/* Adds `key` (a jti or fingerprint) revoking something that expires at `exp`,
 * at deny-list version `seq` (0 = local, unconfirmed); adding a listed key
 * again keeps the later exp and the larger seq. Returns 0, -EINVAL (key
 * syntax, exp < 0 or beyond P2P_JWT_MAX_TIME) or -ENOSPC (set full; purge first). */
int p2p_revoked_add(p2p_revoked *set, const char *key, int64_t exp, uint64_t seq);

/* 1 if `key` is listed, else 0. */
int p2p_revoked_contains(const p2p_revoked *set, const char *key);
/* The seq of a listed key, or -1 when it is not listed. */
int64_t p2p_revoked_seq(const p2p_revoked *set, const char *key);

/* Forgets entries with now >= exp + leeway; returns how many. */
size_t p2p_revoked_purge(p2p_revoked *set, int64_t now);

size_t p2p_revoked_count(const p2p_revoked *set);

/* New reference to {"<key>": [exp, seq], ...} of the entries with seq > since
 * (since < 0: all entries, the unconfirmed ones included). */
json_t *p2p_revoked_to_json(const p2p_revoked *set, int64_t since);

/* Merges a map of the form above into `set`. All-or-nothing: the whole map is
 * validated first (an object whose keys are valid keys and whose values are
 * [exp, seq] with exp 0..P2P_JWT_MAX_TIME, seq 0..2^53); on any error nothing
 * is added. Returns 0, -EINVAL (malformed) or -ENOSPC (would exceed the bound). */
int p2p_revoked_merge_json(p2p_revoked *set, const json_t *map);

/* Loads the version 1 document {"version":1,"revoked":{"<jti>":<exp>,...}}
 * (entries get seq 0), all or nothing. Returns 0, -EINVAL or -ENOSPC. */
int p2p_revoked_from_json_v1(p2p_revoked *set, const json_t *doc);

#endif
