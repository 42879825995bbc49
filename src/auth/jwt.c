/*
 * jwt.c — ES256 tokens, the verification key set, the Bearer header parser and
 * the revocation list. The policy is documented in jwt.h.
 *
 * Signatures are made and checked with OpenSSL here. JWS wants ECDSA as r || s
 * (64 bytes); OpenSSL speaks DER (ECDSA_SIG), so both directions convert.
 * libjwt 1.10 is kept as a second opinion on tokens that already passed our
 * own checks: it skips the signature when given no key, trusts the header's
 * "alg" (case-insensitively; it would verify an HMAC keyed with the PEM text of
 * a public key if asked for HS256), accepts duplicate JSON members and
 * alloca()s buffers the size of the token. So it is only ever given our
 * verified tokens, with the key of the kid, and the algorithm it reports must
 * be ES256. The claims are read from our own strict parse of the (now
 * authenticated) payload bytes.
 */
#include "auth/jwt.h"

#include <errno.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define ES256_SIG_LEN 64
#define ES256_SIG_B64_LEN 86 /* 64 bytes, base64url without padding */

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

static int kid_valid(const char *s, size_t len)
{
    if (len == 0 || len > P2P_JWT_MAX_KID)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ---- keys ---------------------------------------------------------------- */

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Parses a PEM key (private first, then public) and insists on EC P-256. */
static EVP_PKEY *load_p256(const char *pem, int *is_private)
{
    if (!pem)
        return NULL;
    size_t n = strnlen(pem, P2P_JWT_MAX_PEM + 1);
    if (n == 0 || n > P2P_JWT_MAX_PEM)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (!bio)
        return NULL;
    int priv = 1;
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (!pk) {
        priv = 0;
        (void)BIO_reset(bio);
        pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    char group[64] = "";
    size_t glen = 0;
    if (!pk || !EVP_PKEY_is_a(pk, "EC") ||
        EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        EVP_PKEY_free(pk);
        return NULL;
    }
    if (is_private)
        *is_private = priv;
    return pk;
}

static int pubkey_pem_and_kid(EVP_PKEY *pk, char **pub_out, char *kid_out)
{
    unsigned char *der = NULL;
    int dlen = i2d_PUBKEY(pk, &der);
    if (dlen <= 0)
        return -EINVAL;
    if (kid_out) {
        uint8_t md[SHA256_DIGEST_LENGTH];
        SHA256(der, (size_t)dlen, md);
        hex(md, P2P_JWT_KID_LEN / 2, kid_out);
    }
    OPENSSL_free(der);
    if (pub_out) {
        BIO *bio = BIO_new(BIO_s_mem());
        char *p = NULL;
        long len;
        if (!bio || PEM_write_bio_PUBKEY(bio, pk) != 1 || (len = BIO_get_mem_data(bio, &p)) <= 0) {
            BIO_free(bio);
            return -ENOMEM;
        }
        *pub_out = p2p__xmalloc((size_t)len + 1);
        memcpy(*pub_out, p, (size_t)len);
        (*pub_out)[len] = '\0';
        BIO_free(bio);
    }
    return 0;
}

int p2p_jwt_keygen(char **pem_out)
{
    if (!pem_out)
        return -EINVAL;
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!pk)
        return -EIO;
    BIO *bio = BIO_new(BIO_s_secmem());
    char *p = NULL;
    long len;
    int rc = 0;
    if (!bio || PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &p)) <= 0) {
        rc = -ENOMEM;
    } else {
        *pem_out = p2p__xmalloc((size_t)len + 1);
        memcpy(*pem_out, p, (size_t)len);
        (*pem_out)[len] = '\0';
    }
    BIO_free(bio); /* secure memory BIO: cleansed on free */
    EVP_PKEY_free(pk);
    return rc;
}

void p2p_jwt_pem_free(char *pem)
{
    if (!pem)
        return;
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
}

int p2p_jwt_key_info(const char *pem, char **pub_out, char *kid_out)
{
    EVP_PKEY *pk = load_p256(pem, NULL);
    if (!pk)
        return -EINVAL;
    int r = pubkey_pem_and_kid(pk, pub_out, kid_out);
    EVP_PKEY_free(pk);
    return r;
}

typedef struct keyset_entry {
    char kid[P2P_JWT_MAX_KID + 1];
    EVP_PKEY *pk;      /* public half only */
    char *pem;         /* public PEM */
    int64_t retire_at; /* 0: in use; else verifies nothing from then on, and is pruned */
} keyset_entry;

struct p2p_jwt_keyset {
    keyset_entry keys[P2P_JWT_MAX_KEYS];
    size_t n;
};

p2p_jwt_keyset *p2p_jwt_keyset_new(void)
{
    return p2p__xcalloc(1, sizeof(p2p_jwt_keyset));
}

void p2p_jwt_keyset_free(p2p_jwt_keyset *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++) {
        EVP_PKEY_free(ks->keys[i].pk);
        free(ks->keys[i].pem);
    }
    free(ks);
}

static const keyset_entry *keyset_find(const p2p_jwt_keyset *ks, const char *kid, size_t len)
{
    for (size_t i = 0; ks && i < ks->n; i++)
        if (strlen(ks->keys[i].kid) == len && memcmp(ks->keys[i].kid, kid, len) == 0)
            return &ks->keys[i];
    return NULL;
}

int p2p_jwt_keyset_has(const p2p_jwt_keyset *ks, const char *kid)
{
    return kid && keyset_find(ks, kid, strlen(kid)) != NULL;
}

size_t p2p_jwt_keyset_count(const p2p_jwt_keyset *ks)
{
    return ks ? ks->n : 0;
}

/* Parses `pem` into a public-only entry (kid computed). 0 or -EINVAL. */
static int make_entry(const char *pem, keyset_entry *e)
{
    EVP_PKEY *pk = load_p256(pem, NULL);
    if (!pk)
        return -EINVAL;
    char *pub = NULL;
    int r = pubkey_pem_and_kid(pk, &pub, e->kid);
    EVP_PKEY_free(pk);
    if (r != 0)
        return r;
    /* keep only the public half, re-read from its own PEM */
    e->pk = load_p256(pub, NULL);
    if (!e->pk) {
        free(pub);
        return -EINVAL;
    }
    e->pem = pub;
    return 0;
}

int p2p_jwt_keyset_add_pem(p2p_jwt_keyset *ks, const char *pem, char *kid_out)
{
    if (!ks)
        return -EINVAL;
    keyset_entry e = {0};
    int r = make_entry(pem, &e);
    if (r != 0)
        return r;
    if (kid_out)
        memcpy(kid_out, e.kid, P2P_JWT_KID_LEN + 1);
    if (keyset_find(ks, e.kid, strlen(e.kid))) {
        EVP_PKEY_free(e.pk);
        free(e.pem);
        return 0;
    }
    if (ks->n >= P2P_JWT_MAX_KEYS) {
        EVP_PKEY_free(e.pk);
        free(e.pem);
        return -ENOSPC;
    }
    ks->keys[ks->n++] = e;
    return 0;
}

json_t *p2p_jwt_keyset_to_json(const p2p_jwt_keyset *ks)
{
    json_t *arr = json_array();
    for (size_t i = 0; ks && i < ks->n; i++) {
        json_t *k = json_pack("{s:s, s:s, s:s}", "kid", ks->keys[i].kid, "alg", "ES256", "pem", ks->keys[i].pem);
        if (ks->keys[i].retire_at)
            json_object_set_new(k, "retire_at", json_integer((json_int_t)ks->keys[i].retire_at));
        json_array_append_new(arr, k);
    }
    return json_pack("{s:o}", "keys", arr);
}

static keyset_entry *keyset_find_mut(p2p_jwt_keyset *ks, const char *kid)
{
    for (size_t i = 0; ks && kid && i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

int p2p_jwt_keyset_set_retire(p2p_jwt_keyset *ks, const char *kid, int64_t retire_at)
{
    keyset_entry *e = keyset_find_mut(ks, kid);
    if (!e)
        return -ENOENT;
    if (retire_at < 0 || retire_at > P2P_JWT_MAX_TIME)
        return -EINVAL;
    e->retire_at = retire_at;
    return 0;
}

int64_t p2p_jwt_keyset_retire_at(const p2p_jwt_keyset *ks, const char *kid)
{
    const keyset_entry *e = kid ? keyset_find(ks, kid, strlen(kid)) : NULL;
    return e ? e->retire_at : -1;
}

static void keyset_drop(p2p_jwt_keyset *ks, size_t i)
{
    EVP_PKEY_free(ks->keys[i].pk);
    free(ks->keys[i].pem);
    memmove(&ks->keys[i], &ks->keys[i + 1], (ks->n - i - 1) * sizeof(keyset_entry));
    ks->n--;
}

int p2p_jwt_keyset_remove(p2p_jwt_keyset *ks, const char *kid)
{
    keyset_entry *e = keyset_find_mut(ks, kid);
    if (!e)
        return -ENOENT;
    keyset_drop(ks, (size_t)(e - ks->keys));
    return 0;
}

size_t p2p_jwt_keyset_prune(p2p_jwt_keyset *ks, int64_t now)
{
    size_t gone = 0;
    for (size_t i = 0; ks && i < ks->n;) {
        if (ks->keys[i].retire_at && now >= ks->keys[i].retire_at) {
            keyset_drop(ks, i);
            gone++;
        } else {
            i++;
        }
    }
    return gone;
}

static int cmp_entry_ptr(const void *a, const void *b)
{
    return strcmp((*(const keyset_entry *const *)a)->kid, (*(const keyset_entry *const *)b)->kid);
}

void p2p_jwt_keyset_tag(const p2p_jwt_keyset *ks, char out[P2P_JWT_TAG_LEN + 1])
{
    const keyset_entry *order[P2P_JWT_MAX_KEYS];
    size_t n = ks ? ks->n : 0;
    for (size_t i = 0; i < n; i++)
        order[i] = &ks->keys[i];
    qsort(order, n, sizeof order[0], cmp_entry_ptr);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t h[32];
    unsigned hl = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        memset(h, 0, sizeof h);
    } else {
        for (size_t i = 0; i < n; i++) {
            char line[P2P_JWT_MAX_KID + 32];
            int len = snprintf(line, sizeof line, "%s:%lld;", order[i]->kid, (long long)order[i]->retire_at);
            EVP_DigestUpdate(md, line, (size_t)len);
        }
        if (EVP_DigestFinal_ex(md, h, &hl) != 1)
            memset(h, 0, sizeof h);
    }
    EVP_MD_CTX_free(md);
    hex(h, P2P_JWT_TAG_LEN / 2, out);
}

int p2p_jwt_keyset_from_json(p2p_jwt_keyset *ks, const json_t *doc)
{
    if (!ks || !json_is_object(doc) || json_object_size(doc) != 1)
        return -EINVAL;
    json_t *arr = json_object_get(doc, "keys");
    if (!json_is_array(arr) || json_array_size(arr) > P2P_JWT_MAX_KEYS)
        return -EINVAL;
    keyset_entry fresh[P2P_JWT_MAX_KEYS];
    size_t nf = 0, i;
    int rc = 0;
    json_t *k;
    json_array_foreach(arr, i, k)
    {
        json_t *kid = json_object_get(k, "kid"), *alg = json_object_get(k, "alg"), *pem = json_object_get(k, "pem");
        json_t *ret = json_object_get(k, "retire_at");
        if (!json_is_object(k) || json_object_size(k) != (ret ? 4u : 3u) ||
            (ret &&
             (!json_is_integer(ret) || json_integer_value(ret) < 1 || json_integer_value(ret) > P2P_JWT_MAX_TIME)) ||
            !json_is_string(kid) || !kid_valid(json_string_value(kid), json_string_length(kid)) ||
            !json_is_string(alg) || strcmp(json_string_value(alg), "ES256") != 0 || !json_is_string(pem) ||
            json_string_length(pem) > P2P_JWT_MAX_PEM) {
            rc = -EINVAL;
            break;
        }
        keyset_entry e = {0};
        e.retire_at = ret ? (int64_t)json_integer_value(ret) : 0;
        if (make_entry(json_string_value(pem), &e) != 0 || strcmp(e.kid, json_string_value(kid)) != 0) {
            EVP_PKEY_free(e.pk);
            free(e.pem);
            rc = -EINVAL;
            break;
        }
        int dup = keyset_find(ks, e.kid, strlen(e.kid)) != NULL;
        for (size_t j = 0; j < nf && !dup; j++)
            dup = !strcmp(fresh[j].kid, e.kid);
        if (dup) {
            EVP_PKEY_free(e.pk);
            free(e.pem);
            continue;
        }
        fresh[nf++] = e;
    }
    if (rc == 0 && ks->n + nf > P2P_JWT_MAX_KEYS)
        rc = -ENOSPC;
    for (size_t j = 0; j < nf; j++) {
        if (rc == 0) {
            ks->keys[ks->n++] = fresh[j];
        } else {
            EVP_PKEY_free(fresh[j].pk);
            free(fresh[j].pem);
        }
    }
    return rc;
}

/* ---- ES256 signatures ------------------------------------------------------ */

/* Signs `msg` with SHA-256/ECDSA into r || s. 0 or -EIO. */
static int es256_sign(EVP_PKEY *pk, const void *msg, size_t len, uint8_t sig[ES256_SIG_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dlen = sizeof der;
    int rc = -EIO;
    ECDSA_SIG *es = NULL;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) != 1 ||
        EVP_DigestSign(md, der, &dlen, msg, len) != 1)
        goto out;
    const unsigned char *p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    if (!es)
        goto out;
    const BIGNUM *r = ECDSA_SIG_get0_r(es), *s = ECDSA_SIG_get0_s(es);
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
        goto out;
    rc = 0;
out:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    return rc;
}

/* 1 when r || s is a valid signature of `msg` under `pk`, else 0. */
static int es256_verify(EVP_PKEY *pk, const void *msg, size_t len, const uint8_t sig[ES256_SIG_LEN])
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    int ok = 0;
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int dlen = i2d_ECDSA_SIG(es, &der);
    md = EVP_MD_CTX_new();
    if (dlen <= 0 || !md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) != 1)
        goto out;
    ok = EVP_DigestVerify(md, der, (size_t)dlen, msg, len) == 1;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    ECDSA_SIG_free(es);
    return ok;
}

/* ---- issuing ------------------------------------------------------------- */

int p2p_jwt_issue(const char *priv_pem, const char *sub, const char *role, const char *name, int64_t now,
                  int64_t ttl_s, char **token_out, char **jti_out)
{
    if (!sub || !sub_valid(sub, strlen(sub)) || !p2p_jwt_role_valid(role) || (name && !p2p_jwt_name_valid(name)) ||
        !token_out || now < 0 ||
        now > P2P_JWT_MAX_TIME || ttl_s <= 0 || ttl_s > P2P_JWT_MAX_TIME - now)
        return -EINVAL;
    int is_priv = 0;
    EVP_PKEY *pk = load_p256(priv_pem, &is_priv);
    if (!pk || !is_priv) {
        EVP_PKEY_free(pk);
        return -EINVAL;
    }
    char kid[P2P_JWT_KID_LEN + 1];
    int rc = pubkey_pem_and_kid(pk, NULL, kid);
    uint8_t rnd[16];
    if (rc == 0 && RAND_bytes(rnd, sizeof(rnd)) != 1)
        rc = -EIO;
    if (rc != 0) {
        EVP_PKEY_free(pk);
        return rc;
    }
    char jti[2 * sizeof(rnd) + 1];
    hex(rnd, sizeof rnd, jti);

    /* json_string() refuses invalid UTF-8, which makes the sub check complete. */
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "kid", kid, "typ", "JWT");
    json_t *claims = json_pack("{s:s, s:s, s:I, s:I, s:s}", "sub", sub, "role", role, "iat", (json_int_t)now, "exp",
                               (json_int_t)(now + ttl_s), "jti", jti);
    if (claims && name && json_object_set_new(claims, "name", json_string(name)) != 0) {
        json_decref(claims);
        claims = NULL;
    }
    char *ht = hdr ? json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *ct = claims ? json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(hdr);
    json_decref(claims);
    if (!ht || !ct) {
        rc = claims ? -ENOMEM : -EINVAL;
        goto out;
    }
    size_t hl = strlen(ht), cl = strlen(ct);
    size_t cap = 4 * ((hl + 2) / 3) + 4 * ((cl + 2) / 3) + ES256_SIG_B64_LEN + 8;
    char *tok = p2p__xmalloc(cap);
    p2p__b64url_encode((const uint8_t *)ht, hl, tok);
    size_t n = strlen(tok);
    tok[n++] = '.';
    p2p__b64url_encode((const uint8_t *)ct, cl, tok + n);
    n += strlen(tok + n);
    uint8_t sig[ES256_SIG_LEN];
    if ((rc = es256_sign(pk, tok, n, sig)) != 0) {
        free(tok);
        goto out;
    }
    tok[n++] = '.';
    p2p__b64url_encode(sig, sizeof sig, tok + n);
    *token_out = tok;
    if (jti_out)
        *jti_out = p2p__xstrdup(jti);
out:
    free(ht);
    free(ct);
    EVP_PKEY_free(pk);
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

/* Header policy: "alg" exactly "ES256", "kid" hex, optional "typ" exactly "JWT",
 * nothing else. */
static const char *check_header(json_t *h)
{
    json_t *alg = json_object_get(h, "alg");
    if (!json_is_string(alg))
        return "malformed token";
    if (strcmp(json_string_value(alg), "ES256") != 0)
        return "algorithm not allowed";
    json_t *kid = json_object_get(h, "kid");
    if (!json_is_string(kid) || !kid_valid(json_string_value(kid), json_string_length(kid)))
        return "missing key id";
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v)
    {
        if (!strcmp(key, "alg") || !strcmp(key, "kid"))
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

int p2p_jwt_verify(const p2p_jwt_keyset *keys, const char *token, size_t token_len, int64_t now,
                   const p2p_jwt_opts *opts, p2p_jwt_claims *out, const char **why)
{
    const char *why_local;
    if (!why)
        why = &why_local;
    *why = "bad arguments";
    int64_t leeway = opts ? opts->leeway_s : P2P_JWT_DEFAULT_LEEWAY_S;
    if (!keys || !out || now < 0 || now > P2P_JWT_MAX_TIME || leeway < 0 || leeway > P2P_JWT_MAX_LEEWAY_S)
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
    /* 2. header, and the key it names */
    if ((*why = check_header(header)))
        goto out;
    json_t *kid = json_object_get(header, "kid");
    const keyset_entry *key = keyset_find(keys, json_string_value(kid), json_string_length(kid));
    if (!key) {
        *why = "unknown key id";
        goto out;
    }
    if (key->retire_at && now >= key->retire_at) {
        *why = "key retired";
        goto out;
    }
    payload = decode_segment(pseg, plen, buf);
    if (!payload) {
        *why = "malformed token";
        goto out;
    }

    /* 3. signature: r || s, with OpenSSL */
    uint8_t sig[ES256_SIG_LEN + 3];
    size_t sig_len = 0;
    if (slen != ES256_SIG_B64_LEN || p2p__b64url_decode(sseg, slen, sig, &sig_len) != 0 ||
        sig_len != ES256_SIG_LEN || !es256_verify(key->pk, token, hlen + 1 + plen, sig)) {
        *why = "bad signature";
        goto out;
    }

    /* ... and libjwt's own verification, with the key of the kid always given. */
    tokz = p2p__xmalloc(token_len + 1);
    memcpy(tokz, token, token_len);
    tokz[token_len] = '\0';
    int jrc = jwt_decode(&jwt, tokz, (const unsigned char *)key->pem, (int)strlen(key->pem));
    if (jrc == ENOMEM) {
        *why = "internal error";
        rc = -ENOMEM;
        goto out;
    }
    if (jrc != 0 || !jwt) { /* libjwt disagrees with checks that passed: treat as garbage */
        *why = "malformed token";
        goto out;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_ES256) {
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
 * the table. The keys are jtis and fingerprints an administrator chose to
 * revoke (each verified before it is listed), not attacker input, so an
 * unkeyed hash is adequate. */
typedef struct revoked_entry {
    char *key; /* NULL = empty slot */
    int64_t exp;
    uint64_t seq;
} revoked_entry;

struct p2p_revoked {
    revoked_entry *slots;
    size_t cap; /* power of two */
    size_t count;
    size_t max;
    int64_t leeway;
};

#define SEQ_MAX 9007199254740992ull /* 2^53: exact in any JSON reader */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static size_t revoked_find(const p2p_revoked *set, const char *key)
{
    size_t mask = set->cap - 1, i = (size_t)fnv1a(key) & mask;
    while (set->slots[i].key && strcmp(set->slots[i].key, key) != 0)
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
        free(set->slots[i].key);
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
        if (old[i].key)
            set->slots[revoked_find(set, old[i].key)] = old[i];
    free(old);
}

/* Inserts a key known to be valid; the caller checked the bound. */
static void revoked_put(p2p_revoked *set, const char *key, int64_t exp, uint64_t seq)
{
    size_t i = revoked_find(set, key);
    if (set->slots[i].key) {
        if (exp > set->slots[i].exp)
            set->slots[i].exp = exp;
        if (seq > set->slots[i].seq)
            set->slots[i].seq = seq;
        return;
    }
    if (2 * (set->count + 1) > set->cap) {
        revoked_rehash(set, set->cap * 2);
        i = revoked_find(set, key);
    }
    set->slots[i].key = p2p__xstrdup(key);
    set->slots[i].exp = exp;
    set->slots[i].seq = seq;
    set->count++;
}

int p2p_revoked_add(p2p_revoked *set, const char *key, int64_t exp, uint64_t seq)
{
    if (!set || !key || !jti_valid(key, strlen(key)) || exp < 0 || exp > P2P_JWT_MAX_TIME || seq > SEQ_MAX)
        return -EINVAL;
    if (!set->slots[revoked_find(set, key)].key && set->count >= set->max)
        return -ENOSPC;
    revoked_put(set, key, exp, seq);
    return 0;
}

int p2p_revoked_contains(const p2p_revoked *set, const char *key)
{
    if (!set || !key)
        return 0;
    return set->slots[revoked_find(set, key)].key != NULL;
}

int64_t p2p_revoked_seq(const p2p_revoked *set, const char *key)
{
    if (!set || !key)
        return -1;
    const revoked_entry *e = &set->slots[revoked_find(set, key)];
    return e->key ? (int64_t)e->seq : -1;
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
        if (set->slots[i].key && set->slots[i].exp <= now - set->leeway) {
            free(set->slots[i].key);
            set->slots[i].key = NULL;
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

json_t *p2p_revoked_to_json(const p2p_revoked *set, int64_t since)
{
    json_t *map = json_object();
    if (!map)
        return NULL;
    for (size_t i = 0; set && i < set->cap; i++) {
        const revoked_entry *e = &set->slots[i];
        if (!e->key || (since >= 0 && e->seq <= (uint64_t)since))
            continue;
        if (json_object_set_new(map, e->key, json_pack("[I, I]", (json_int_t)e->exp, (json_int_t)e->seq)) != 0) {
            json_decref(map);
            return NULL;
        }
    }
    return map;
}

static int entry_valid(const char *key, const json_t *v)
{
    json_t *exp = json_array_get(v, 0), *seq = json_array_get(v, 1);
    return jti_valid(key, strlen(key)) && json_is_array(v) && json_array_size(v) == 2 && json_is_integer(exp) &&
           json_integer_value(exp) >= 0 && json_integer_value(exp) <= P2P_JWT_MAX_TIME && json_is_integer(seq) &&
           json_integer_value(seq) >= 0 && (uint64_t)json_integer_value(seq) <= SEQ_MAX;
}

int p2p_revoked_merge_json(p2p_revoked *set, const json_t *map)
{
    if (!set || !json_is_object(map))
        return -EINVAL;
    const char *key;
    json_t *v;
    size_t fresh = 0;
    json_object_foreach((json_t *)map, key, v)
    {
        if (!entry_valid(key, v))
            return -EINVAL;
        if (!p2p_revoked_contains(set, key))
            fresh++;
    }
    if (fresh > set->max - set->count)
        return -ENOSPC;
    json_object_foreach((json_t *)map, key, v)
    {
        revoked_put(set, key, (int64_t)json_integer_value(json_array_get(v, 0)),
                    (uint64_t)json_integer_value(json_array_get(v, 1)));
    }
    return 0;
}

int p2p_revoked_from_json_v1(p2p_revoked *set, const json_t *doc)
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
        revoked_put(set, jti, (int64_t)json_integer_value(v), 0);
    }
    return 0;
}
