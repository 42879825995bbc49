/*
 * jwt.h — HS256 JSON Web Tokens for API authentication, a revocation list, and
 * the Authorization header parser. Pure: no I/O, time is passed in (Unix
 * seconds), nothing global.
 *
 * Issuing: a token carries exactly the claims sub, role, iat, exp and jti
 * (128 random bits, 32 lowercase hex digits), plus "name" when one is given,
 * header {"alg":"HS256","typ":"JWT"}. The name (`p2p token --name ci-bot`)
 * keys the token's rate-limit bucket: all tokens of one name and role share it.
 *
 * Verification policy, in order (the first failure decides; `why` names it):
 *   1. size and shape: 1..P2P_JWT_MAX_TOKEN bytes, exactly two dots, three
 *      segments of the base64url alphabet without padding, canonical encoding
 *      (unused trailing bits zero), header and payload non-empty and decoding to
 *      JSON objects without NUL bytes or duplicate members   -> "no token",
 *      "token too large", "malformed token";
 *   2. header: "alg" must be exactly "HS256" (case-sensitive; none, HS384,
 *      HS512, RS256, ... are refused) -> "algorithm not allowed"; the only other
 *      member allowed is "typ", exactly "JWT" -> "unsupported header";
 *   3. signature: HMAC-SHA256 over "header.payload" with the secret, compared in
 *      constant time (libjwt 1.10 compares with strcmp, a timing oracle, so its
 *      own check only ever runs on tokens whose signature is already known to
 *      be right) -> "bad signature"; then libjwt decodes and verifies it again
 *      with the (never NULL) key, and the algorithm it reports must be HS256;
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
 * Secrets must be at least P2P_JWT_MIN_SECRET bytes (RFC 7518 §3.2: a key the
 * size of the hash output); shorter or NULL secrets are caller errors (-EINVAL).
 *
 * Revocation list (p2p_revoked): a bounded set of jti -> exp. An entry is kept
 * until the token it revokes could no longer pass step 5 on its own, i.e. purge
 * forgets it once now >= exp + L, with the same leeway L the verifier uses
 * (forgetting at exp would let a revoked token back in for L seconds).
 * Persisted form: {"version":1,"revoked":{"<jti>":<exp>,...}}.
 */
#ifndef P2P_AUTH_JWT_H
#define P2P_AUTH_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_JWT_MAX_TOKEN 8192       /* bytes, whole compact token */
#define P2P_JWT_MIN_SECRET 32        /* bytes */
#define P2P_JWT_DEFAULT_LEEWAY_S 30  /* seconds of clock skew tolerated */
#define P2P_JWT_MAX_LEEWAY_S 3600
#define P2P_JWT_MAX_SUB 256          /* bytes */
#define P2P_JWT_MAX_JTI 128          /* characters */
#define P2P_JWT_MAX_NAME 64          /* bytes of the optional "name" claim */
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

/* Verification options; NULL means leeway P2P_JWT_DEFAULT_LEEWAY_S, no revocation list. */
typedef struct p2p_jwt_opts {
    int64_t leeway_s;           /* 0..P2P_JWT_MAX_LEEWAY_S */
    const p2p_revoked *revoked; /* borrowed; NULL = none */
} p2p_jwt_opts;

/* 1 if `role` is one of "admin", "viewer", "node". */
int p2p_jwt_role_valid(const char *role);

/* 1 if `name` is a valid "name" claim: 1..P2P_JWT_MAX_NAME bytes of valid
 * UTF-8 without control characters. */
int p2p_jwt_name_valid(const char *name);

/* Issues a token for `sub` with `role` and an optional `name` (NULL = none),
 * iat = now, exp = now + ttl_s (ttl_s > 0).
 * *token_out (and *jti_out unless jti_out is NULL) are heap strings for free().
 * Returns 0, -EINVAL (short secret, bad sub/role/name/times), -EIO (no
 * randomness) or -ENOMEM. */
int p2p_jwt_issue(const uint8_t *secret, size_t secret_len, const char *sub, const char *role, const char *name,
                  int64_t now, int64_t ttl_s, char **token_out, char **jti_out);

/* Verifies `token_len` bytes at `token` (need not be NUL-terminated, e.g. the
 * output of p2p_auth_parse_bearer) at time `now` (Unix seconds, 0..P2P_JWT_MAX_TIME).
 * Returns 0 and fills *out; -EACCES when the token is rejected; -EINVAL on a
 * caller error (secret, now, opts); -ENOMEM. *why (if why is non-NULL) always
 * gets a static string: "ok" or the reason (see the policy above). */
int p2p_jwt_verify(const uint8_t *secret, size_t secret_len, const char *token, size_t token_len, int64_t now,
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

/* Revocation list of at most `max_entries` (0 = P2P_REVOKED_DEFAULT_MAX) jtis,
 * purged with `leeway_s` (use the verifier's leeway; negative = default).
 * Returns NULL only on a bad argument (leeway above P2P_JWT_MAX_LEEWAY_S). */
p2p_revoked *p2p_revoked_new(size_t max_entries, int64_t leeway_s);
void p2p_revoked_free(p2p_revoked *set);

/* Adds `jti` revoking a token that expires at `exp`; adding a listed jti again
 * keeps the later exp. Returns 0, -EINVAL (jti syntax, exp < 0 or beyond
 * P2P_JWT_MAX_TIME) or -ENOSPC (set full; purge first). */
int p2p_revoked_add(p2p_revoked *set, const char *jti, int64_t exp);

/* 1 if `jti` is listed, else 0. */
int p2p_revoked_contains(const p2p_revoked *set, const char *jti);

/* Forgets entries with now >= exp + leeway; returns how many. */
size_t p2p_revoked_purge(p2p_revoked *set, int64_t now);

size_t p2p_revoked_count(const p2p_revoked *set);

/* New reference to {"version":1,"revoked":{jti:exp,...}}. */
json_t *p2p_revoked_to_json(const p2p_revoked *set);

/* Merges a document of the form above into `set`. All-or-nothing: the whole
 * document is validated first (root object with exactly "version" == 1 and
 * "revoked", an object whose keys are valid jtis and whose values are integers
 * 0..P2P_JWT_MAX_TIME); on any error nothing is added. Returns 0, -EINVAL
 * (malformed) or -ENOSPC (would exceed the bound). */
int p2p_revoked_from_json(p2p_revoked *set, const json_t *doc);

#endif
