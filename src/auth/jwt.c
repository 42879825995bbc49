/*
 * jwt.c — HS256 tokens on top of libjwt 1.10, the Bearer header parser and the
 * revocation list. The policy is documented in jwt.h.
 *
 * libjwt is only handed tokens that passed our own structural and signature
 * checks: it skips the signature when given no key, trusts the header's "alg"
 * (case-insensitively, HS384/HS512 with the same secret verify fine), compares
 * signatures with strcmp, accepts duplicate JSON members and alloca()s buffers
 * the size of the token. The payload claims are read from our own strict parse
 * of the (now authenticated) payload bytes rather than from libjwt's.
 */
#include "auth/jwt.h"

#include <errno.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define HS256_SIG_B64_LEN 43 /* 32 bytes, base64url without padding */

/* ---- base64url ---------------------------------------------------------- */

/* ---- claim syntax -------------------------------------------------------- */

int p2p_jwt_role_valid(const char *role)
{
    return role && (!strcmp(role, "admin") || !strcmp(role, "viewer") || !strcmp(role, "node"));
}

static int sub_valid(const char *s, size_t len)
{
    if (len == 0 || len > P2P_JWT_MAX_SUB)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

int p2p_jwt_name_valid(const char *name)
{
    if (!name || strlen(name) > P2P_JWT_MAX_NAME || !sub_valid(name, strlen(name)))
        return 0;
    json_t *j = json_string(name); /* NULL for invalid UTF-8 (a verified token only carries JSON strings) */
    json_decref(j);
    return j != NULL;
}

static int jti_valid(const char *s, size_t len)
{
    if (len == 0 || len > P2P_JWT_MAX_JTI)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == '~' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

/* ---- issuing ------------------------------------------------------------- */

static int secret_ok(const uint8_t *secret, size_t len)
{
    return secret && len >= P2P_JWT_MIN_SECRET && len <= INT_MAX;
}

int p2p_jwt_issue(const uint8_t *secret, size_t secret_len, const char *sub, const char *role, const char *name,
                  int64_t now, int64_t ttl_s, char **token_out, char **jti_out)
{
    if (!secret_ok(secret, secret_len) || !sub || !sub_valid(sub, strlen(sub)) || !p2p_jwt_role_valid(role) ||
        (name && !p2p_jwt_name_valid(name)) ||
        !token_out || now < 0 || now > P2P_JWT_MAX_TIME || ttl_s <= 0 || ttl_s > P2P_JWT_MAX_TIME - now)
        return -EINVAL;

    uint8_t rnd[16];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -EIO;
    char jti[2 * sizeof(rnd) + 1];
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(rnd); i++) {
        jti[2 * i] = hex[rnd[i] >> 4];
        jti[2 * i + 1] = hex[rnd[i] & 15];
    }
    jti[2 * sizeof(rnd)] = '\0';

    /* json_string() refuses invalid UTF-8, which makes the sub check complete. */
    json_t *claims = json_pack("{s:s, s:s, s:I, s:I, s:s}", "sub", sub, "role", role, "iat", (json_int_t)now, "exp",
                               (json_int_t)(now + ttl_s), "jti", jti);
    if (!claims || (name && json_object_set_new(claims, "name", json_string(name)) != 0)) {
        json_decref(claims);
        return -EINVAL;
    }
    char *claims_text = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(claims);
    if (!claims_text)
        return -ENOMEM;

    int rc = 0;
    jwt_t *jwt = NULL;
    char *tok = NULL;
    if (jwt_new(&jwt) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    if (jwt_add_grants_json(jwt, claims_text) != 0 ||
        jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int)secret_len) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    tok = jwt_encode_str(jwt);
    if (!tok) {
        rc = -ENOMEM;
        goto out;
    }
    *token_out = p2p__xstrdup(tok);
    if (jti_out)
        *jti_out = p2p__xstrdup(jti);
out:
    free(tok);
    jwt_free(jwt);
    free(claims_text);
    return rc;
}

/* ---- verification -------------------------------------------------------- */

void p2p_jwt_claims_free(p2p_jwt_claims *c)
{
    if (!c)
        return;
    free(c->sub);
    free(c->role);
    free(c->jti);
    free(c->name);
    memset(c, 0, sizeof(*c));
}

/* Decodes one segment into `buf` and parses it as a JSON object (strictly:
 * no NUL bytes, no duplicate members, nothing after the value). */
static json_t *decode_segment(const char *seg, size_t n, uint8_t *buf)
{
    size_t blen;
    if (n == 0 || p2p__b64url_decode(seg, n, buf, &blen) != 0 || memchr(buf, '\0', blen))
        return NULL;
    json_t *j = json_loadb((const char *)buf, blen, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Header policy: "alg" exactly "HS256", optional "typ" exactly "JWT", nothing else. */
static const char *check_header(json_t *h)
{
    json_t *alg = json_object_get(h, "alg");
    if (!json_is_string(alg))
        return "malformed token";
    if (strcmp(json_string_value(alg), "HS256") != 0)
        return "algorithm not allowed";
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v)
    {
        if (!strcmp(key, "alg"))
            continue;
        if (!strcmp(key, "typ") && json_is_string(v) && !strcmp(json_string_value(v), "JWT"))
            continue;
        return "unsupported header";
    }
    return NULL;
}

/* Returns NULL when the claim is a valid non-negative integer (stored in *out),
 * else its "missing claim: X" / "invalid claim: X" reason. */
static const char *int_claim(json_t *p, const char *name, const char *missing, const char *invalid, int64_t *out)
{
    json_t *v = json_object_get(p, name);
    if (!v)
        return missing;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return invalid;
    *out = (int64_t)json_integer_value(v);
    return NULL;
}

static const char *check_claims(json_t *p, int64_t now, int64_t leeway, const p2p_revoked *revoked,
                                p2p_jwt_claims *c)
{
    const char *why;
    json_t *sub = json_object_get(p, "sub");
    if (!sub)
        return "missing claim: sub";
    if (!json_is_string(sub) || !sub_valid(json_string_value(sub), json_string_length(sub)))
        return "invalid claim: sub";
    json_t *role = json_object_get(p, "role");
    if (!role)
        return "missing claim: role";
    if (!json_is_string(role) || !p2p_jwt_role_valid(json_string_value(role)))
        return "invalid claim: role";
    int64_t iat = 0, exp = 0, nbf = 0;
    if ((why = int_claim(p, "iat", "missing claim: iat", "invalid claim: iat", &iat)))
        return why;
    if ((why = int_claim(p, "exp", "missing claim: exp", "invalid claim: exp", &exp)))
        return why;
    json_t *jti = json_object_get(p, "jti");
    if (!jti)
        return "missing claim: jti";
    if (!json_is_string(jti) || !jti_valid(json_string_value(jti), json_string_length(jti)))
        return "invalid claim: jti";
    json_t *name = json_object_get(p, "name");
    if (name && (!json_is_string(name) || json_string_length(name) > P2P_JWT_MAX_NAME ||
                 !sub_valid(json_string_value(name), json_string_length(name))))
        return "invalid claim: name";
    int has_nbf = json_object_get(p, "nbf") != NULL;
    if (has_nbf && (why = int_claim(p, "nbf", "missing claim: nbf", "invalid claim: nbf", &nbf)))
        return why;
    if (exp <= iat)
        return "invalid claim: exp";

    /* now is in 0..P2P_JWT_MAX_TIME and leeway in 0..P2P_JWT_MAX_LEEWAY_S: no overflow. */
    if (exp <= now - leeway)
        return "expired";
    if (has_nbf && nbf > now + leeway)
        return "not yet valid";
    if (iat > now + leeway)
        return "issued in the future";
    if (revoked && p2p_revoked_contains(revoked, json_string_value(jti)))
        return "revoked";

    c->sub = p2p__xstrdup(json_string_value(sub));
    c->role = p2p__xstrdup(json_string_value(role));
    c->jti = p2p__xstrdup(json_string_value(jti));
    c->name = name ? p2p__xstrdup(json_string_value(name)) : NULL;
    c->iat = iat;
    c->exp = exp;
    c->nbf = nbf;
    c->has_nbf = has_nbf;
    return NULL;
}

int p2p_jwt_verify(const uint8_t *secret, size_t secret_len, const char *token, size_t token_len, int64_t now,
                   const p2p_jwt_opts *opts, p2p_jwt_claims *out, const char **why)
{
    const char *why_local;
    if (!why)
        why = &why_local;
    *why = "bad arguments";
    int64_t leeway = opts ? opts->leeway_s : P2P_JWT_DEFAULT_LEEWAY_S;
    if (!secret_ok(secret, secret_len) || !out || now < 0 || now > P2P_JWT_MAX_TIME || leeway < 0 ||
        leeway > P2P_JWT_MAX_LEEWAY_S)
        return -EINVAL;
    if (!token || token_len == 0) {
        *why = "no token";
        return -EACCES;
    }
    if (token_len > P2P_JWT_MAX_TOKEN) {
        *why = "token too large";
        return -EACCES;
    }

    /* 1. shape */
    size_t dot[2] = {0, 0}, ndots = 0;
    for (size_t i = 0; i < token_len; i++) {
        if (token[i] == '.') {
            if (ndots == 2) {
                *why = "malformed token";
                return -EACCES;
            }
            dot[ndots++] = i;
        } else if (p2p__b64url_value((unsigned char)token[i]) < 0) {
            *why = "malformed token";
            return -EACCES;
        }
    }
    if (ndots != 2) {
        *why = "malformed token";
        return -EACCES;
    }
    const char *hseg = token, *pseg = token + dot[0] + 1, *sseg = token + dot[1] + 1;
    size_t hlen = dot[0], plen = dot[1] - dot[0] - 1, slen = token_len - dot[1] - 1;

    int rc = -EACCES;
    uint8_t *buf = p2p__xmalloc(token_len);
    char *tokz = NULL;
    jwt_t *jwt = NULL;
    json_t *header = NULL, *payload = NULL;
    p2p_jwt_claims claims = {0};

    header = decode_segment(hseg, hlen, buf);
    if (!header) {
        *why = "malformed token";
        goto out;
    }
    /* 2. header */
    if ((*why = check_header(header)))
        goto out;
    payload = decode_segment(pseg, plen, buf);
    if (!payload) {
        *why = "malformed token";
        goto out;
    }

    /* 3. signature, in constant time */
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token, hlen + 1 + plen, mac, &mac_len) ||
        mac_len != 32) {
        *why = "internal error";
        rc = -ENOMEM;
        goto out;
    }
    char expect[HS256_SIG_B64_LEN + 2];
    p2p__b64url_encode(mac, mac_len, expect);
    OPENSSL_cleanse(mac, sizeof(mac));
    if (slen != HS256_SIG_B64_LEN || CRYPTO_memcmp(expect, sseg, HS256_SIG_B64_LEN) != 0) {
        *why = "bad signature";
        goto out;
    }

    /* ... and libjwt's own verification, with the key always given. */
    tokz = p2p__xmalloc(token_len + 1);
    memcpy(tokz, token, token_len);
    tokz[token_len] = '\0';
    int jrc = jwt_decode(&jwt, tokz, secret, (int)secret_len);
    if (jrc == ENOMEM) {
        *why = "internal error";
        rc = -ENOMEM;
        goto out;
    }
    if (jrc != 0 || !jwt) { /* libjwt disagrees with checks that passed: treat as garbage */
        *why = "malformed token";
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        *why = "algorithm not allowed";
        goto out;
    }

    /* 4-6. claims and time */
    if ((*why = check_claims(payload, now, leeway, opts ? opts->revoked : NULL, &claims)))
        goto out;
    *why = "ok";
    *out = claims;
    rc = 0;
out:
    jwt_free(jwt);
    free(tokz);
    free(buf);
    json_decref(header);
    json_decref(payload);
    return rc;
}

/* ---- Authorization: Bearer ----------------------------------------------- */

static int is_b64token_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~' || c == '+' || c == '/';
}

int p2p_auth_parse_bearer(const char *value, size_t len, const char **token, size_t *token_len)
{
    if (!value)
        return -ENOENT;
    size_t i = 0, end = len;
    while (i < end && (value[i] == ' ' || value[i] == '\t'))
        i++;
    while (end > i && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    if (i == end)
        return -ENOENT;
    static const char scheme[] = "bearer";
    if (end - i < sizeof(scheme) - 1)
        return -EINVAL;
    for (size_t k = 0; k < sizeof(scheme) - 1; k++) {
        unsigned char c = (unsigned char)value[i + k];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)scheme[k])
            return -EINVAL;
    }
    i += sizeof(scheme) - 1;
    if (i == end || value[i] != ' ')
        return -EINVAL; /* "Bearer" alone, or "Bearerfoo" */
    while (i < end && value[i] == ' ')
        i++;
    size_t start = i;
    while (i < end && is_b64token_char((unsigned char)value[i]))
        i++;
    if (i == start)
        return -EINVAL;
    while (i < end && value[i] == '=')
        i++;
    if (i != end)
        return -EINVAL;
    if (token)
        *token = value + start;
    if (token_len)
        *token_len = end - start;
    return 0;
}

/* ---- revocation list ----------------------------------------------------- */

/* Open addressing, linear probing, at most half full; removal (purge) rebuilds
 * the table. The keys are jtis an administrator chose to revoke, not attacker
 * input, so an unkeyed hash is adequate. */
typedef struct revoked_entry {
    char *jti; /* NULL = empty slot */
    int64_t exp;
} revoked_entry;

struct p2p_revoked {
    revoked_entry *slots;
    size_t cap; /* power of two */
    size_t count;
    size_t max;
    int64_t leeway;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static size_t revoked_find(const p2p_revoked *set, const char *jti)
{
    size_t mask = set->cap - 1, i = (size_t)fnv1a(jti) & mask;
    while (set->slots[i].jti && strcmp(set->slots[i].jti, jti) != 0)
        i = (i + 1) & mask;
    return i;
}

p2p_revoked *p2p_revoked_new(size_t max_entries, int64_t leeway_s)
{
    if (leeway_s > P2P_JWT_MAX_LEEWAY_S)
        return NULL;
    p2p_revoked *set = p2p__xcalloc(1, sizeof(*set));
    set->max = max_entries ? max_entries : P2P_REVOKED_DEFAULT_MAX;
    set->leeway = leeway_s < 0 ? P2P_JWT_DEFAULT_LEEWAY_S : leeway_s;
    set->cap = 16;
    set->slots = p2p__xcalloc(set->cap, sizeof(*set->slots));
    return set;
}

void p2p_revoked_free(p2p_revoked *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i].jti);
    free(set->slots);
    free(set);
}

static void revoked_rehash(p2p_revoked *set, size_t new_cap)
{
    revoked_entry *old = set->slots;
    size_t old_cap = set->cap;
    set->slots = p2p__xcalloc(new_cap, sizeof(*set->slots));
    set->cap = new_cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].jti)
            set->slots[revoked_find(set, old[i].jti)] = old[i];
    free(old);
}

/* Inserts a jti known to be valid; the caller checked the bound. */
static void revoked_put(p2p_revoked *set, const char *jti, int64_t exp)
{
    size_t i = revoked_find(set, jti);
    if (set->slots[i].jti) {
        if (exp > set->slots[i].exp)
            set->slots[i].exp = exp;
        return;
    }
    if (2 * (set->count + 1) > set->cap) {
        revoked_rehash(set, set->cap * 2);
        i = revoked_find(set, jti);
    }
    set->slots[i].jti = p2p__xstrdup(jti);
    set->slots[i].exp = exp;
    set->count++;
}

int p2p_revoked_add(p2p_revoked *set, const char *jti, int64_t exp)
{
    if (!set || !jti || !jti_valid(jti, strlen(jti)) || exp < 0 || exp > P2P_JWT_MAX_TIME)
        return -EINVAL;
    if (!set->slots[revoked_find(set, jti)].jti && set->count >= set->max)
        return -ENOSPC;
    revoked_put(set, jti, exp);
    return 0;
}

int p2p_revoked_contains(const p2p_revoked *set, const char *jti)
{
    if (!set || !jti)
        return 0;
    return set->slots[revoked_find(set, jti)].jti != NULL;
}

size_t p2p_revoked_count(const p2p_revoked *set)
{
    return set ? set->count : 0;
}

size_t p2p_revoked_purge(p2p_revoked *set, int64_t now)
{
    if (!set || now < 0) /* exp >= 0, so nothing can be past exp + leeway */
        return 0;
    size_t removed = 0;
    for (size_t i = 0; i < set->cap; i++) {
        /* exp >= 0 and leeway >= 0: compare without adding to stay clear of overflow */
        if (set->slots[i].jti && set->slots[i].exp <= now - set->leeway) {
            free(set->slots[i].jti);
            set->slots[i].jti = NULL;
            removed++;
        }
    }
    if (removed) {
        set->count -= removed;
        size_t cap = 16;
        while (cap < 2 * set->count)
            cap *= 2;
        revoked_rehash(set, cap); /* also closes the holes the removals left in probe chains */
    }
    return removed;
}

json_t *p2p_revoked_to_json(const p2p_revoked *set)
{
    json_t *map = json_object();
    if (!map)
        return NULL;
    for (size_t i = 0; set && i < set->cap; i++)
        if (set->slots[i].jti &&
            json_object_set_new(map, set->slots[i].jti, json_integer((json_int_t)set->slots[i].exp)) != 0) {
            json_decref(map);
            return NULL;
        }
    return json_pack("{s:i, s:o}", "version", 1, "revoked", map);
}

int p2p_revoked_from_json(p2p_revoked *set, const json_t *doc)
{
    if (!set || !json_is_object(doc) || json_object_size(doc) != 2)
        return -EINVAL;
    json_t *ver = json_object_get(doc, "version");
    json_t *map = json_object_get(doc, "revoked");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1 || !json_is_object(map))
        return -EINVAL;
    const char *jti;
    json_t *v;
    size_t fresh = 0;
    json_object_foreach(map, jti, v)
    {
        if (!jti_valid(jti, strlen(jti)) || !json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > P2P_JWT_MAX_TIME)
            return -EINVAL;
        if (!p2p_revoked_contains(set, jti))
            fresh++;
    }
    if (fresh > set->max - set->count)
        return -ENOSPC;
    json_object_foreach(map, jti, v)
    {
        revoked_put(set, jti, (int64_t)json_integer_value(v));
    }
    return 0;
}
