/*
 * test_jwt.c — unit tests for src/auth/jwt.c: issuing and verifying ES256
 * tokens with key ids, the key set and its JSON form, the rejection table
 * (shape, unknown and missing kid, algorithm confusion: HS256 keyed with the
 * public key's PEM, none, HS384/HS512, DER signatures; signatures, claims,
 * time), the Bearer header parser, and the revocation list with its JSON form.
 *
 * Tokens with chosen headers and claims are assembled here and signed with
 * OpenSSL's ECDSA (converted to the JWS r || s form here), independently of the
 * code under test; libjwt's own ES256 tokens are checked to verify too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"

#define NOW 1700000000

/* The cluster's key (private PEM, its public key set, its kid) and another key. */
static char *PRIV, *OTHER_PRIV;
static char *PUB_PEM;
static EVP_PKEY *SECRET, *OTHER;
static p2p_jwt_keyset *KEYS;
static char KID[P2P_JWT_KID_LEN + 1];
static char HDR[128];

static EVP_PKEY *load_priv(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(pk);
    return pk;
}

static int setup_keys(void **state)
{
    (void)state;
    if (p2p_jwt_keygen(&PRIV) != 0 || p2p_jwt_keygen(&OTHER_PRIV) != 0)
        return -1;
    SECRET = load_priv(PRIV);
    OTHER = load_priv(OTHER_PRIV);
    KEYS = p2p_jwt_keyset_new();
    if (p2p_jwt_keyset_add_pem(KEYS, PRIV, KID) != 0 || p2p_jwt_key_info(PRIV, &PUB_PEM, NULL) != 0)
        return -1;
    snprintf(HDR, sizeof HDR, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", KID);
    return 0;
}

static int teardown_keys(void **state)
{
    (void)state;
    p2p_jwt_pem_free(PRIV);
    p2p_jwt_pem_free(OTHER_PRIV);
    free(PUB_PEM);
    EVP_PKEY_free(SECRET);
    EVP_PKEY_free(OTHER);
    p2p_jwt_keyset_free(KEYS);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static char *b64url(const void *data, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *in = data;
    char *out = malloc(4 * (n / 3 + 1) + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* ECDSA P-256 / SHA-256 of `msg` as r || s (64 bytes); *der_out gets the DER form too. */
static void es256_sign(EVP_PKEY *pk, const char *msg, uint8_t out[64], unsigned char **der_out, size_t *der_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dlen = sizeof der;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk), 1);
    assert_int_equal(EVP_DigestSign(md, der, &dlen, (const unsigned char *)msg, strlen(msg)), 1);
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    assert_non_null(es);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), out, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), out + 32, 32), 32);
    ECDSA_SIG_free(es);
    if (der_out) {
        *der_out = malloc(dlen);
        memcpy(*der_out, der, dlen);
        *der_len = dlen;
    }
}

/* header.payload.ES256(key) — or with `sig` verbatim when non-NULL. */
static char *make_token(const char *header, const char *payload, EVP_PKEY *key, const char *sig)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    char *s;
    if (sig) {
        s = strdup(sig);
    } else {
        uint8_t rs[64];
        es256_sign(key, signing, rs, NULL, NULL);
        s = b64url(rs, sizeof rs);
    }
    size_t tn = strlen(signing) + strlen(s) + 2;
    char *tok = malloc(tn);
    snprintf(tok, tn, "%s.%s", signing, s);
    free(h);
    free(p);
    free(s);
    free(signing);
    return tok;
}


/* A complete, valid claim set (iat = NOW, exp = NOW + 3600). */
static char *claims_json(void)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "{\"sub\":\"alice\",\"role\":\"viewer\",\"iat\":%d,\"exp\":%d,\"jti\":\"abc123\"}", NOW,
             NOW + 3600);
    return strdup(buf);
}

/* Verifies `tok` at `now` with default options; returns rc and the reason. */
static int verify_at(const char *tok, int64_t now, const char **why)
{
    p2p_jwt_claims c = {0};
    int rc = p2p_jwt_verify(KEYS, tok, tok ? strlen(tok) : 0, now, NULL, &c, why);
    p2p_jwt_claims_free(&c);
    return rc;
}

static void expect_reject(const char *tok, int64_t now, const char *reason)
{
    const char *why = NULL;
    int rc = verify_at(tok, now, &why);
    if (rc != -EACCES || !why || strcmp(why, reason) != 0)
        fail_msg("token %.80s: rc %d why '%s', expected '%s'", tok ? tok : "(null)", rc, why ? why : "(null)",
                 reason);
}

static void expect_reject_claims(const char *payload, const char *reason)
{
    char *tok = make_token(HDR, payload, SECRET, NULL);
    expect_reject(tok, NOW, reason);
    free(tok);
}

/* ---- issue / verify ------------------------------------------------------ */

static void test_issue_verify_roundtrip(void **state)
{
    (void)state;
    char *tok = NULL, *jti = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "node-7", "viewer", NULL, NOW, 600, &tok, &jti), 0);
    assert_non_null(tok);
    assert_int_equal(strlen(jti), 32);
    assert_int_equal(strspn(jti, "0123456789abcdef"), 32);

    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, NULL, &c, &why), 0);
    assert_string_equal(why, "ok");
    assert_string_equal(c.sub, "node-7");
    assert_string_equal(c.role, "viewer");
    assert_string_equal(c.jti, jti);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 600);
    assert_int_equal(c.has_nbf, 0);
    p2p_jwt_claims_free(&c);
    assert_null(c.sub);
    p2p_jwt_claims_free(&c); /* idempotent */

    /* the header names the key; the signature is r || s; libjwt agrees the token is ES256 */
    char *h64 = b64url(HDR, strlen(HDR));
    assert_memory_equal(tok, h64, strlen(h64));
    free(h64);
    assert_int_equal(strlen(strrchr(tok, '.') + 1), 86);
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, tok, (const unsigned char *)PUB_PEM, (int)strlen(PUB_PEM)), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_ES256);
    jwt_free(j);

    /* two tokens never share a jti */
    char *tok2 = NULL, *jti2 = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "node-7", "viewer", NULL, NOW, 600, &tok2, &jti2), 0);
    assert_string_not_equal(jti, jti2);
    free(tok2);
    free(jti2);

    /* jti_out is optional */
    assert_int_equal(p2p_jwt_issue(PRIV, "bob", "admin", NULL, NOW, 1, &tok2, NULL), 0);
    free(tok2);
    free(tok);
    free(jti);
}

static void test_issue_rejects_bad_arguments(void **state)
{
    (void)state;
    char *tok = NULL;
    assert_int_equal(p2p_jwt_issue(NULL, "a", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue("not a key", "a", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PUB_PEM, "a", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL); /* public only */
    assert_int_equal(p2p_jwt_issue(PRIV, "", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, NULL, "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "a\nb", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "\xff\xfe", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "root", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "a", NULL, NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", NULL, NOW, 0, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", NULL, -1, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", NULL, NOW, INT64_MAX, &tok, NULL), -EINVAL);
    assert_null(tok);
    /* an EC key on another curve is not an ES256 key */
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, p384, NULL, NULL, 0, NULL, NULL);
    char *pem = NULL;
    long n = BIO_get_mem_data(bio, &pem);
    char *pemz = strndup(pem, (size_t)n);
    assert_int_equal(p2p_jwt_issue(pemz, "a", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    p2p_jwt_keyset *ks = p2p_jwt_keyset_new();
    assert_int_equal(p2p_jwt_keyset_add_pem(ks, pemz, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_keyset_count(ks), 0);
    p2p_jwt_keyset_free(ks);
    free(pemz);
    BIO_free(bio);
    EVP_PKEY_free(p384);
    char sub[P2P_JWT_MAX_SUB + 2];
    memset(sub, 'x', sizeof(sub) - 1);
    sub[sizeof(sub) - 1] = '\0';
    assert_int_equal(p2p_jwt_issue(PRIV, sub, "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    sub[P2P_JWT_MAX_SUB] = '\0';
    assert_int_equal(p2p_jwt_issue(PRIV, sub, "admin", NULL, NOW, 60, &tok, NULL), 0);
    free(tok);
}

static void test_verify_caller_errors(void **state)
{
    (void)state;
    char *tok = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", NULL, NOW, 60, &tok, NULL), 0);
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(NULL, tok, strlen(tok), NOW, NULL, &c, &why), -EINVAL);
    assert_string_equal(why, "bad arguments");
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), -1, NULL, &c, &why), -EINVAL);
    p2p_jwt_opts o = {.leeway_s = -1};
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, &o, &c, &why), -EINVAL);
    o.leeway_s = P2P_JWT_MAX_LEEWAY_S + 1;
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, &o, &c, &why), -EINVAL);
    assert_null(c.sub);
    /* an empty key set knows no kid */
    p2p_jwt_keyset *empty = p2p_jwt_keyset_new();
    assert_int_equal(p2p_jwt_verify(empty, tok, strlen(tok), NOW, NULL, &c, &why), -EACCES);
    assert_string_equal(why, "unknown key id");
    p2p_jwt_keyset_free(empty);
    /* why may be NULL */
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, NULL, &c, NULL), 0);
    p2p_jwt_claims_free(&c);
    /* a token that is a prefix of a longer buffer (as from the Bearer parser) */
    char *padded = malloc(strlen(tok) + 10);
    sprintf(padded, "%s  trailer", tok);
    assert_int_equal(p2p_jwt_verify(KEYS, padded, strlen(tok), NOW, NULL, &c, NULL), 0);
    p2p_jwt_claims_free(&c);
    free(padded);
    free(tok);
}

/* ---- rejection table: shape ---------------------------------------------- */

static void test_reject_malformed(void **state)
{
    (void)state;
    char *good = make_token(HDR, "{\"sub\":\"a\"}", SECRET, NULL);
    expect_reject(NULL, NOW, "no token");
    expect_reject("", NOW, "no token");
    expect_reject("abc.def", NOW, "malformed token");
    expect_reject("abc", NOW, "malformed token");
    expect_reject("a.b.c.d", NOW, "malformed token");
    expect_reject("..", NOW, "malformed token");
    {
        char *h = b64url(HDR, strlen(HDR)), buf[256];
        snprintf(buf, sizeof buf, "%s..", h);
        expect_reject(buf, NOW, "malformed token"); /* empty payload */
        free(h);
    }
    expect_reject(".eyJhbGciOiJIUzI1NiJ9.", NOW, "malformed token"); /* empty header */

    /* characters outside base64url: standard alphabet, padding, spaces */
    char *t = strdup(good);
    t[3] = '+';
    expect_reject(t, NOW, "malformed token");
    t[3] = '=';
    expect_reject(t, NOW, "malformed token");
    t[3] = ' ';
    expect_reject(t, NOW, "malformed token");
    free(t);
    size_t n = strlen(good);
    t = malloc(n + 2);
    memcpy(t, good, n + 1);
    strcat(t, "=");
    expect_reject(t, NOW, "malformed token");
    free(t);

    /* a segment of length 1 mod 4 and a non-canonical last character */
    expect_reject("eyJhbGciOiJIUzI1NiJ9A.e30.sig", NOW, "malformed token");
    {
        char *h = b64url(HDR, strlen(HDR)), buf[256];
        snprintf(buf, sizeof buf, "%s.e31.sig", h);
        expect_reject(buf, NOW, "malformed token"); /* "e31" has stray low bits */
        free(h);
    }

    /* header that is not JSON / not an object / has duplicates / has a NUL */
    char *x = make_token("not json", "{}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    x = make_token("[\"HS256\"]", "{}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    x = make_token("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "{}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    x = make_token("{\"alg\":\"HS256\"} trailing", "{}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    x = make_token("{\"typ\":\"JWT\"}", "{}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    x = make_token("{\"alg\":5}", "{}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    {
        const char hdr_nul[] = "{\"alg\":\"HS256\"}\0{\"x\":1}";
        char *h = b64url(hdr_nul, sizeof(hdr_nul) - 1);
        char buf[256];
        snprintf(buf, sizeof(buf), "%s.e30.AAAA", h);
        expect_reject(buf, NOW, "malformed token");
        free(h);
    }
    /* payload that is not a JSON object */
    x = make_token(HDR, "[1,2]", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);
    x = make_token(HDR, "{\"sub\":\"a\",\"sub\":\"b\"}", SECRET, NULL);
    expect_reject(x, NOW, "malformed token");
    free(x);

    /* huge */
    char *huge = malloc(P2P_JWT_MAX_TOKEN + 2);
    memset(huge, 'A', P2P_JWT_MAX_TOKEN + 1);
    huge[10] = '.';
    huge[20] = '.';
    huge[P2P_JWT_MAX_TOKEN + 1] = '\0';
    expect_reject(huge, NOW, "token too large");
    free(huge);
    free(good);
}

/* ---- rejection table: signatures ----------------------------------------- */

static void test_reject_bad_signature(void **state)
{
    (void)state;
    char *claims = claims_json();
    char *good = make_token(HDR, claims, SECRET, NULL);
    const char *why = NULL;
    assert_int_equal(verify_at(good, NOW, &why), 0);

    /* signed with another secret */
    char *other = make_token(HDR, claims, OTHER, NULL);
    expect_reject(other, NOW, "bad signature");
    free(other);
    /* verified with another key under the same kid: impossible (the kid is the key's hash),
     * so: a set holding only another key does not know this kid */
    p2p_jwt_claims c = {0};
    p2p_jwt_keyset *others = p2p_jwt_keyset_new();
    assert_int_equal(p2p_jwt_keyset_add_pem(others, OTHER_PRIV, NULL), 0);
    assert_int_equal(p2p_jwt_verify(others, good, strlen(good), NOW, NULL, &c, &why), -EACCES);
    assert_string_equal(why, "unknown key id");
    p2p_jwt_keyset_free(others);

    /* the DER form of a valid signature is not the JWS form */
    {
        const char *dd = strrchr(good, '.');
        char *signing = strndup(good, (size_t)(dd - good));
        uint8_t rs[64];
        unsigned char *der = NULL;
        size_t dlen = 0;
        es256_sign(SECRET, signing, rs, &der, &dlen);
        char *d64 = b64url(der, dlen);
        char *t = malloc(strlen(signing) + strlen(d64) + 2);
        sprintf(t, "%s.%s", signing, d64);
        expect_reject(t, NOW, "bad signature");
        /* and r || s with r or s zero, or all bits set */
        memset(rs, 0, 32);
        char *z64 = b64url(rs, 64);
        sprintf(t, "%s.%s", signing, z64);
        expect_reject(t, NOW, "bad signature");
        free(z64);
        memset(rs, 0xff, 64);
        z64 = b64url(rs, 64);
        sprintf(t, "%s.%s", signing, z64);
        expect_reject(t, NOW, "bad signature");
        free(z64);
        free(t);
        free(d64);
        free(der);
        free(signing);
    }

    /* one character flipped in each part */
    const char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
    size_t pos[3] = {2, (size_t)(d1 - good) + 5, (size_t)(d2 - good) + 5};
    for (int k = 0; k < 3; k++) {
        char *t = strdup(good);
        t[pos[k]] = t[pos[k]] == 'A' ? 'B' : 'A';
        assert_int_equal(verify_at(t, NOW, &why), -EACCES);
        if (k == 2)
            assert_string_equal(why, "bad signature");
        else
            assert_true(!strcmp(why, "bad signature") || !strcmp(why, "malformed token") ||
                        !strcmp(why, "unsupported header") || !strcmp(why, "algorithm not allowed"));
        free(t);
    }

    /* a well-formed but different header / payload under the original signature */
    char *sig = strdup(d2 + 1);
    char reordered[160];
    snprintf(reordered, sizeof reordered, "{\"typ\":\"JWT\",\"kid\":\"%s\",\"alg\":\"ES256\"}", KID);
    char *t = make_token(reordered, claims, SECRET, sig);
    expect_reject(t, NOW, "bad signature");
    free(t);
    char buf[512]; /* the same claims with role admin */
    snprintf(buf, sizeof(buf), "{\"sub\":\"alice\",\"role\":\"admin\",\"iat\":%d,\"exp\":%d,\"jti\":\"abc123\"}", NOW,
             NOW + 3600);
    t = make_token(HDR, buf, SECRET, sig);
    expect_reject(t, NOW, "bad signature");
    free(t);

    /* truncated, extended, empty signature */
    t = strdup(good);
    t[strlen(t) - 1] = '\0';
    expect_reject(t, NOW, "bad signature");
    free(t);
    t = malloc(strlen(good) + 3);
    sprintf(t, "%sAA", good);
    expect_reject(t, NOW, "bad signature");
    free(t);
    t = make_token(HDR, claims, SECRET, "");
    expect_reject(t, NOW, "bad signature");
    free(t);

    free(sig);
    free(good);
    free(claims);
}

/* ---- rejection table: algorithms and keys ----------------------------- */

static char *libjwt_token(jwt_alg_t alg, const unsigned char *key, int key_len, const char *kid)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    char *claims = claims_json();
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    if (kid)
        assert_int_equal(jwt_add_header(j, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(j, alg, key, key_len), 0);
    char *tok = jwt_encode_str(j);
    assert_non_null(tok);
    jwt_free(j);
    free(claims);
    return tok;
}

static void hmac_token(const char *header, const char *payload, const void *key, size_t key_len, const EVP_MD *md,
                       char **out)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mlen = 0;
    HMAC(md, key, (int)key_len, (const unsigned char *)signing, strlen(signing), mac, &mlen);
    char *s = b64url(mac, mlen);
    *out = malloc(strlen(signing) + strlen(s) + 2);
    sprintf(*out, "%s.%s", signing, s);
    free(h);
    free(p);
    free(s);
    free(signing);
}

static void test_reject_algorithms(void **state)
{
    (void)state;
    char *claims = claims_json();
    char hdr[200];

    /* alg none, hand-crafted with an empty signature, in a few spellings */
    const char *none_algs[] = {"none", "NONE", "None", ""};
    for (size_t i = 0; i < sizeof(none_algs) / sizeof(none_algs[0]); i++) {
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\"}", none_algs[i], KID);
        char *t = make_token(hdr, claims, SECRET, "");
        expect_reject(t, NOW, "algorithm not allowed");
        free(t);
    }

    /* alg confusion: HS256 keyed with the public key's PEM text (what a worker holds),
     * made by libjwt and by hand; libjwt itself would accept it if asked for HS256 */
    char *t = libjwt_token(JWT_ALG_HS256, (const unsigned char *)PUB_PEM, (int)strlen(PUB_PEM), KID);
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, t, (const unsigned char *)PUB_PEM, (int)strlen(PUB_PEM)), 0); /* the sharp edge */
    jwt_free(j);
    expect_reject(t, NOW, "algorithm not allowed");
    free(t);
    const EVP_MD *mds[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
    const char *hs[] = {"HS256", "HS384", "HS512"};
    for (int i = 0; i < 3; i++) {
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", hs[i], KID);
        hmac_token(hdr, claims, PUB_PEM, strlen(PUB_PEM), mds[i], &t);
        expect_reject(t, NOW, "algorithm not allowed");
        free(t);
    }

    /* ES256 from libjwt with the private key: libjwt writes r || s, and we accept it */
    t = libjwt_token(JWT_ALG_ES256, (const unsigned char *)PRIV, (int)strlen(PRIV), KID);
    const char *why = NULL;
    assert_int_equal(verify_at(t, NOW, &why), 0);
    free(t);
    /* ... without a kid: refused */
    t = libjwt_token(JWT_ALG_ES256, (const unsigned char *)PRIV, (int)strlen(PRIV), NULL);
    expect_reject(t, NOW, "missing key id");
    free(t);

    /* other algorithms; lower-case es256 (libjwt would accept it) */
    const char *other_algs[] = {"RS256", "ES384", "es256", "ES256 ", "PS256", "EdDSA", "HS256"};
    for (size_t i = 0; i < sizeof(other_algs) / sizeof(other_algs[0]); i++) {
        snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\"}", other_algs[i], KID);
        t = make_token(hdr, claims, SECRET, NULL);
        expect_reject(t, NOW, "algorithm not allowed");
        free(t);
    }

    /* key ids: missing, not hex, too long, unknown */
    const char *bad_kids[] = {"{\"alg\":\"ES256\"}", "{\"alg\":\"ES256\",\"kid\":5}", "{\"alg\":\"ES256\",\"kid\":\"\"}",
                              "{\"alg\":\"ES256\",\"kid\":\"K1\"}", "{\"alg\":\"ES256\",\"kid\":\"../x\"}"};
    for (size_t i = 0; i < sizeof(bad_kids) / sizeof(bad_kids[0]); i++) {
        t = make_token(bad_kids[i], claims, SECRET, NULL);
        expect_reject(t, NOW, "missing key id");
        free(t);
    }
    char longkid[P2P_JWT_MAX_KID + 2];
    memset(longkid, 'a', sizeof longkid - 1);
    longkid[sizeof longkid - 1] = '\0';
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", longkid);
    t = make_token(hdr, claims, SECRET, NULL);
    expect_reject(t, NOW, "missing key id");
    free(t);
    t = make_token("{\"alg\":\"ES256\",\"kid\":\"0123456789abcdef0123456789abcdef\"}", claims, SECRET, NULL);
    expect_reject(t, NOW, "unknown key id");
    free(t);

    /* unsupported header members */
    const char *odd[] = {"\"typ\":\"jwt\"", "\"typ\":\"JOSE\"", "\"typ\":1", "\"crit\":[\"exp\"]", "\"jku\":\"x\"",
                         "\"x5u\":\"https://x\"", "\"jwk\":{}"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\",%s}", KID, odd[i]);
        t = make_token(hdr, claims, SECRET, NULL);
        expect_reject(t, NOW, "unsupported header");
        free(t);
    }
    /* typ is optional */
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", KID);
    t = make_token(hdr, claims, SECRET, NULL);
    assert_int_equal(verify_at(t, NOW, &why), 0);
    free(t);
    free(claims);
}

/* ---- the key set ----------------------------------------------------------- */

static void test_keyset(void **state)
{
    (void)state;
    char kid[P2P_JWT_KID_LEN + 1], kid2[P2P_JWT_KID_LEN + 1];
    assert_int_equal(p2p_jwt_key_info(PRIV, NULL, kid), 0);
    assert_string_equal(kid, KID);
    assert_int_equal(p2p_jwt_key_info(PUB_PEM, NULL, kid2), 0); /* the public half has the same kid */
    assert_string_equal(kid2, KID);
    assert_int_equal(p2p_jwt_key_info("garbage", NULL, kid), -EINVAL);
    assert_int_equal(p2p_jwt_keyset_has(KEYS, KID), 1);
    assert_int_equal(p2p_jwt_keyset_has(KEYS, "00"), 0);

    /* JSON round trip: public keys only */
    json_t *doc = p2p_jwt_keyset_to_json(KEYS);
    char *text = json_dumps(doc, JSON_COMPACT);
    assert_null(strstr(text, "PRIVATE"));
    p2p_jwt_keyset *ks = p2p_jwt_keyset_new();
    assert_int_equal(p2p_jwt_keyset_from_json(ks, doc), 0);
    assert_int_equal(p2p_jwt_keyset_count(ks), 1);
    assert_int_equal(p2p_jwt_keyset_from_json(ks, doc), 0); /* again: no duplicate */
    assert_int_equal(p2p_jwt_keyset_count(ks), 1);
    /* rotation: a second key; tokens of both verify */
    assert_int_equal(p2p_jwt_keyset_add_pem(ks, OTHER_PRIV, kid2), 0);
    assert_int_equal(p2p_jwt_keyset_count(ks), 2);
    char *t1 = NULL, *t2 = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", NULL, NOW, 60, &t1, NULL), 0);
    assert_int_equal(p2p_jwt_issue(OTHER_PRIV, "a", "admin", NULL, NOW, 60, &t2, NULL), 0);
    p2p_jwt_claims c = {0};
    assert_int_equal(p2p_jwt_verify(ks, t1, strlen(t1), NOW, NULL, &c, NULL), 0);
    p2p_jwt_claims_free(&c);
    assert_int_equal(p2p_jwt_verify(ks, t2, strlen(t2), NOW, NULL, &c, NULL), 0);
    p2p_jwt_claims_free(&c);
    /* a token of the second key claiming the first key's kid: bad signature */
    const char *d = strchr(t2, '.');
    char *forged = malloc(strlen(t2) + 64);
    char *h64 = b64url(HDR, strlen(HDR));
    sprintf(forged, "%s%s", h64, d);
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(ks, forged, strlen(forged), NOW, NULL, &c, &why), -EACCES);
    assert_string_equal(why, "bad signature");
    free(h64);
    free(forged);
    free(t1);
    free(t2);
    p2p_jwt_keyset_free(ks);
    free(text);

    /* malformed documents: refused, nothing added */
    const char *pem_json = json_string_value(json_object_get(json_array_get(json_object_get(doc, "keys"), 0), "pem"));
    char bad[6][2048];
    snprintf(bad[0], sizeof bad[0], "{\"keys\":[{\"kid\":\"%s\",\"alg\":\"ES256\",\"pem\":\"x\"}]}", KID);
    snprintf(bad[1], sizeof bad[1], "{\"keys\":[{\"kid\":\"00\",\"alg\":\"ES256\",\"pem\":\"\"}]}");
    snprintf(bad[2], sizeof bad[2], "{\"keys\":{}}");
    snprintf(bad[3], sizeof bad[3], "{\"keys\":[],\"x\":1}");
    snprintf(bad[4], sizeof bad[4], "{\"keys\":[{\"kid\":\"%s\",\"alg\":\"HS256\",\"pem\":\"\"}]}", KID);
    snprintf(bad[5], sizeof bad[5], "{\"keys\":[5]}");
    for (int i = 0; i < 6; i++) {
        json_t *jd = json_loads(bad[i], 0, NULL);
        assert_non_null(jd);
        p2p_jwt_keyset *k = p2p_jwt_keyset_new();
        if (p2p_jwt_keyset_from_json(k, jd) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(p2p_jwt_keyset_count(k), 0);
        p2p_jwt_keyset_free(k);
        json_decref(jd);
    }
    /* the kid must be the key's own: a real PEM under another kid is refused */
    json_t *wrong = json_pack("{s:[{s:s, s:s, s:s}]}", "keys", "kid", "0123456789abcdef0123456789abcdef", "alg",
                              "ES256", "pem", pem_json);
    p2p_jwt_keyset *k = p2p_jwt_keyset_new();
    assert_int_equal(p2p_jwt_keyset_from_json(k, wrong), -EINVAL);
    assert_int_equal(p2p_jwt_keyset_count(k), 0);
    p2p_jwt_keyset_free(k);
    json_decref(wrong);
    json_decref(doc);
}

/* ---- retired keys: retire_at, prune, tag, remove ------------------------------ */

static void test_keyset_retire(void **state)
{
    (void)state;
    p2p_jwt_keyset *ks = p2p_jwt_keyset_new();
    char k1[P2P_JWT_KID_LEN + 1], k2[P2P_JWT_KID_LEN + 1], t0[P2P_JWT_TAG_LEN + 1], t1[P2P_JWT_TAG_LEN + 1];
    assert_int_equal(p2p_jwt_keyset_add_pem(ks, PRIV, k1), 0);
    p2p_jwt_keyset_tag(ks, t0);
    assert_int_equal(strlen(t0), P2P_JWT_TAG_LEN);
    assert_int_equal(p2p_jwt_keyset_add_pem(ks, OTHER_PRIV, k2), 0);
    p2p_jwt_keyset_tag(ks, t1);
    assert_string_not_equal(t0, t1);
    assert_int_equal(p2p_jwt_keyset_retire_at(ks, k1), 0);
    assert_int_equal(p2p_jwt_keyset_retire_at(ks, "00"), -1);
    assert_int_equal(p2p_jwt_keyset_set_retire(ks, "00", NOW), -ENOENT);
    assert_int_equal(p2p_jwt_keyset_set_retire(ks, k1, -1), -EINVAL);
    assert_int_equal(p2p_jwt_keyset_set_retire(ks, k1, NOW + 100), 0);
    p2p_jwt_keyset_tag(ks, t0);
    assert_string_not_equal(t0, t1); /* the retire time is part of the tag */

    /* a token of the retired key verifies until retire_at, then not */
    char *tok = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", NULL, NOW, 60, &tok, NULL), 0);
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(ks, tok, strlen(tok), NOW + 50, NULL, &c, &why), 0);
    p2p_jwt_claims_free(&c);
    assert_int_equal(p2p_jwt_verify(ks, tok, strlen(tok), NOW + 30, NULL, &c, &why), 0);
    p2p_jwt_claims_free(&c);
    p2p_jwt_keyset *late = p2p_jwt_keyset_new();
    json_t *doc = p2p_jwt_keyset_to_json(ks);
    /* round trip keeps retire_at; the tag follows the content, not the order */
    assert_int_equal(p2p_jwt_keyset_from_json(late, doc), 0);
    assert_int_equal(p2p_jwt_keyset_retire_at(late, k1), NOW + 100);
    p2p_jwt_keyset_tag(late, t1);
    assert_string_equal(t0, t1);
    assert_int_equal(p2p_jwt_verify(late, tok, strlen(tok), NOW + 100, NULL, &c, &why), -EACCES);
    assert_string_equal(why, "key retired");

    /* prune: nothing before retire_at, the retired key at it */
    assert_int_equal(p2p_jwt_keyset_prune(late, NOW + 99), 0);
    assert_int_equal(p2p_jwt_keyset_prune(late, NOW + 100), 1);
    assert_int_equal(p2p_jwt_keyset_count(late), 1);
    assert_int_equal(p2p_jwt_keyset_has(late, k1), 0);
    assert_int_equal(p2p_jwt_keyset_has(late, k2), 1);
    p2p_jwt_keyset_free(late);

    /* remove */
    assert_int_equal(p2p_jwt_keyset_remove(ks, k2), 0);
    assert_int_equal(p2p_jwt_keyset_remove(ks, k2), -ENOENT);
    assert_int_equal(p2p_jwt_keyset_count(ks), 1);

    /* malformed retire_at: refused whole */
    const char *pem = json_string_value(json_object_get(json_array_get(json_object_get(doc, "keys"), 0), "pem"));
    const char *kid0 = json_string_value(json_object_get(json_array_get(json_object_get(doc, "keys"), 0), "kid"));
    json_t *bad[] = {
        json_pack("{s:[{s:s, s:s, s:s, s:i}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "retire_at", 0),
        json_pack("{s:[{s:s, s:s, s:s, s:i}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "retire_at", -5),
        json_pack("{s:[{s:s, s:s, s:s, s:I}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "retire_at",
                  (json_int_t)P2P_JWT_MAX_TIME + 1),
        json_pack("{s:[{s:s, s:s, s:s, s:s}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "retire_at", "1"),
        json_pack("{s:[{s:s, s:s, s:s, s:f}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "retire_at", 1.5),
        json_pack("{s:[{s:s, s:s, s:s, s:i}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "other", 1),
        json_pack("{s:[{s:s, s:s, s:s, s:i, s:i}]}", "keys", "kid", kid0, "alg", "ES256", "pem", pem, "retire_at", 5,
                  "x", 1),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_non_null(bad[i]);
        p2p_jwt_keyset *k = p2p_jwt_keyset_new();
        assert_int_equal(p2p_jwt_keyset_from_json(k, bad[i]), -EINVAL);
        assert_int_equal(p2p_jwt_keyset_count(k), 0);
        p2p_jwt_keyset_free(k);
        json_decref(bad[i]);
    }
    json_decref(doc);
    free(tok);
    p2p_jwt_keyset_free(ks);
}

/* ---- rejection table: claims and time ------------------------------------ */

static void test_reject_claims(void **state)
{
    (void)state;
    char buf[512];
    const char *names[] = {"sub", "role", "iat", "exp", "jti"};
    const char *parts[] = {"\"sub\":\"alice\"", "\"role\":\"viewer\"", "\"iat\":1700000000", "\"exp\":1700003600",
                           "\"jti\":\"abc123\""};
    for (int miss = 0; miss < 5; miss++) {
        size_t o = 0;
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "{");
        int first = 1;
        for (int k = 0; k < 5; k++) {
            if (k == miss)
                continue;
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", first ? "" : ",", parts[k]);
            first = 0;
        }
        snprintf(buf + o, sizeof(buf) - o, ",\"extra\":true}");
        char reason[64];
        snprintf(reason, sizeof(reason), "missing claim: %s", names[miss]);
        expect_reject_claims(buf, reason);
    }

    struct {
        const char *payload;
        const char *why;
    } table[] = {
        {"{\"sub\":1,\"role\":\"viewer\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\"}", "invalid claim: sub"},
        {"{\"sub\":\"\",\"role\":\"viewer\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\"}", "invalid claim: sub"},
        {"{\"sub\":\"a\\nb\",\"role\":\"viewer\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\"}",
         "invalid claim: sub"},
        {"{\"sub\":\"a\",\"role\":\"root\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\"}",
         "invalid claim: role"},
        {"{\"sub\":\"a\",\"role\":\"Admin\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\"}",
         "invalid claim: role"},
        {"{\"sub\":\"a\",\"role\":[\"admin\"],\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\"}",
         "invalid claim: role"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":\"1700000000\",\"exp\":1700003600,\"jti\":\"a\"}",
         "invalid claim: iat"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":-1,\"exp\":1700003600,\"jti\":\"a\"}", "invalid claim: iat"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700003600.5,\"jti\":\"a\"}",
         "invalid claim: exp"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":null,\"jti\":\"a\"}", "invalid claim: exp"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700000000,\"jti\":\"a\"}",
         "invalid claim: exp"}, /* exp <= iat */
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":5}", "invalid claim: jti"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"\"}", "invalid claim: jti"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a b\"}",
         "invalid claim: jti"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":1700003600,\"jti\":\"a\",\"nbf\":\"x\"}",
         "invalid claim: nbf"},
        {"{\"sub\":\"a\",\"role\":\"admin\",\"iat\":1700000000,\"exp\":99999999999999999999,\"jti\":\"a\"}",
         "malformed token"}, /* integer overflow in the JSON itself */
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        expect_reject_claims(table[i].payload, table[i].why);
}

static void test_time_checks(void **state)
{
    (void)state;
    char buf[512];
    /* exp boundary with the default 30 s leeway */
    char *claims = claims_json(); /* exp = NOW + 3600 */
    char *t = make_token(HDR, claims, SECRET, NULL);
    const char *why = NULL;
    assert_int_equal(verify_at(t, NOW + 3600 + 29, &why), 0);
    expect_reject(t, NOW + 3600 + 30, "expired");
    expect_reject(t, NOW + 100000, "expired");
    /* leeway 0: valid strictly before exp */
    p2p_jwt_opts o = {.leeway_s = 0};
    p2p_jwt_claims c = {0};
    assert_int_equal(p2p_jwt_verify(KEYS, t, strlen(t), NOW + 3599, &o, &c, &why), 0);
    p2p_jwt_claims_free(&c);
    assert_int_equal(p2p_jwt_verify(KEYS, t, strlen(t), NOW + 3600, &o, &c, &why), -EACCES);
    assert_string_equal(why, "expired");
    free(t);
    free(claims);

    /* nbf in the future, beyond and within the leeway */
    snprintf(buf, sizeof(buf),
             "{\"sub\":\"a\",\"role\":\"admin\",\"iat\":%d,\"exp\":%d,\"jti\":\"a\",\"nbf\":%d}", NOW, NOW + 3600,
             NOW + 60);
    t = make_token(HDR, buf, SECRET, NULL);
    expect_reject(t, NOW, "not yet valid");
    assert_int_equal(verify_at(t, NOW + 30, &why), 0);
    assert_int_equal(p2p_jwt_verify(KEYS, t, strlen(t), NOW + 60, NULL, &c, &why), 0);
    assert_int_equal(c.has_nbf, 1);
    assert_int_equal(c.nbf, NOW + 60);
    p2p_jwt_claims_free(&c);
    free(t);

    /* iat in the (far) future */
    snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"role\":\"admin\",\"iat\":%d,\"exp\":%d,\"jti\":\"a\"}",
             NOW + 86400 * 365, NOW + 86400 * 366);
    t = make_token(HDR, buf, SECRET, NULL);
    expect_reject(t, NOW, "issued in the future");
    free(t);
    snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"role\":\"admin\",\"iat\":%d,\"exp\":%d,\"jti\":\"a\"}", NOW + 20,
             NOW + 3600);
    t = make_token(HDR, buf, SECRET, NULL);
    assert_int_equal(verify_at(t, NOW, &why), 0); /* 20 s of skew is tolerated */
    free(t);

    /* an issued token: valid from iat to exp + leeway */
    char *tok = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "s", "viewer", NULL, NOW, 60, &tok, NULL), 0);
    assert_int_equal(verify_at(tok, NOW + 89, &why), 0);
    expect_reject(tok, NOW + 90, "expired");
    free(tok);
}

static void test_revoked_token_rejected(void **state)
{
    (void)state;
    char *tok = NULL, *jti = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "s", "admin", NULL, NOW, 60, &tok, &jti), 0);
    p2p_revoked *rv = p2p_revoked_new(0, -1);
    assert_non_null(rv);
    p2p_jwt_opts o = {.leeway_s = P2P_JWT_DEFAULT_LEEWAY_S, .revoked = rv};
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, &o, &c, &why), 0);
    p2p_jwt_claims_free(&c);
    assert_int_equal(p2p_revoked_add(rv, jti, NOW + 60, 0), 0);
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, &o, &c, &why), -EACCES);
    assert_string_equal(why, "revoked");
    /* purge keeps it while the token could still pass the exp check (exp + leeway) */
    assert_int_equal(p2p_revoked_purge(rv, NOW + 60 + 29), 0);
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW + 89, &o, &c, &why), -EACCES);
    assert_string_equal(why, "revoked");
    assert_int_equal(p2p_revoked_purge(rv, NOW + 90), 1);
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW + 90, &o, &c, &why), -EACCES);
    assert_string_equal(why, "expired");
    p2p_revoked_free(rv);
    free(tok);
    free(jti);
}

/* ---- Bearer -------------------------------------------------------------- */

static void test_parse_bearer(void **state)
{
    (void)state;
    struct {
        const char *in;
        int rc;
        const char *token;
    } table[] = {
        {"Bearer abc.def.ghi", 0, "abc.def.ghi"},
        {"bearer abc", 0, "abc"},
        {"BEARER abc", 0, "abc"},
        {"bEaReR abc", 0, "abc"},
        {"Bearer    abc", 0, "abc"},
        {"  Bearer abc  ", 0, "abc"},
        {"\tBearer abc\t", 0, "abc"},
        {"Bearer a-b_c.d~e+f/g==", 0, "a-b_c.d~e+f/g=="},
        {"", -ENOENT, NULL},
        {"   ", -ENOENT, NULL},
        {"Bearer", -EINVAL, NULL},
        {"Bearer ", -EINVAL, NULL},
        {"Bearer    ", -EINVAL, NULL},
        {"Bearerabc", -EINVAL, NULL},
        {"Bearer\tabc", -EINVAL, NULL},
        {"Basic dXNlcjpwYXNz", -EINVAL, NULL},
        {"Token abc", -EINVAL, NULL},
        {"Bear abc", -EINVAL, NULL},
        {"Bearer abc def", -EINVAL, NULL},
        {"Bearer abc,def", -EINVAL, NULL},
        {"Bearer ab=c", -EINVAL, NULL},
        {"Bearer ===", -EINVAL, NULL},
        {"Bearer abc\"", -EINVAL, NULL},
        {"Bearer \xc3\xa9t\xc3\xa9", -EINVAL, NULL},
        {"abc.def.ghi", -EINVAL, NULL},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const char *tok = NULL;
        size_t tlen = 0;
        int rc = p2p_auth_parse_bearer(table[i].in, strlen(table[i].in), &tok, &tlen);
        if (rc != table[i].rc)
            fail_msg("'%s': rc %d, expected %d", table[i].in, rc, table[i].rc);
        if (rc == 0) {
            assert_int_equal(tlen, strlen(table[i].token));
            assert_memory_equal(tok, table[i].token, tlen);
        }
    }
    const char *tok = NULL;
    size_t tlen = 0;
    assert_int_equal(p2p_auth_parse_bearer(NULL, 0, &tok, &tlen), -ENOENT);
    /* embedded NUL within len, and len shorter than the string */
    assert_int_equal(p2p_auth_parse_bearer("Bearer ab\0cd", 12, &tok, &tlen), -EINVAL);
    assert_int_equal(p2p_auth_parse_bearer("Bearer abcdef", 9, &tok, &tlen), 0);
    assert_int_equal(tlen, 2);

    /* parse -> verify end to end */
    char *t = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "s", "admin", NULL, NOW, 60, &t, NULL), 0);
    char hdr[1024];
    snprintf(hdr, sizeof(hdr), "Bearer %s", t);
    assert_int_equal(p2p_auth_parse_bearer(hdr, strlen(hdr), &tok, &tlen), 0);
    p2p_jwt_claims c = {0};
    assert_int_equal(p2p_jwt_verify(KEYS, tok, tlen, NOW, NULL, &c, NULL), 0);
    p2p_jwt_claims_free(&c);
    free(t);
}

/* ---- revocation list ----------------------------------------------------- */

static void test_revoked_basic(void **state)
{
    (void)state;
    assert_null(p2p_revoked_new(0, P2P_JWT_MAX_LEEWAY_S + 1));
    p2p_revoked *rv = p2p_revoked_new(0, 0);
    assert_int_equal(p2p_revoked_count(rv), 0);
    assert_int_equal(p2p_revoked_contains(rv, "a"), 0);
    assert_int_equal(p2p_revoked_add(rv, "a", 100, 0), 0);
    assert_int_equal(p2p_revoked_add(rv, "b", 200, 0), 0);
    assert_int_equal(p2p_revoked_contains(rv, "a"), 1);
    assert_int_equal(p2p_revoked_contains(rv, "b"), 1);
    assert_int_equal(p2p_revoked_contains(rv, "c"), 0);
    assert_int_equal(p2p_revoked_contains(rv, NULL), 0);
    assert_int_equal(p2p_revoked_count(rv), 2);
    /* re-adding keeps the later exp */
    assert_int_equal(p2p_revoked_add(rv, "a", 50, 0), 0);
    assert_int_equal(p2p_revoked_add(rv, "b", 300, 0), 0);
    assert_int_equal(p2p_revoked_count(rv), 2);
    /* bad input */
    assert_int_equal(p2p_revoked_add(rv, "", 1, 0), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, "a b", 1, 0), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, NULL, 1, 0), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, "x", -1, 0), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, "x", P2P_JWT_MAX_TIME + 1, 0), -EINVAL);
    /* purge with leeway 0: forgets entries with exp <= now */
    assert_int_equal(p2p_revoked_purge(rv, 99), 0);
    assert_int_equal(p2p_revoked_purge(rv, 100), 1);
    assert_int_equal(p2p_revoked_contains(rv, "a"), 0);
    assert_int_equal(p2p_revoked_contains(rv, "b"), 1);
    assert_int_equal(p2p_revoked_purge(rv, 299), 0);
    assert_int_equal(p2p_revoked_purge(rv, 300), 1);
    assert_int_equal(p2p_revoked_count(rv), 0);
    assert_int_equal(p2p_revoked_purge(rv, -5), 0);
    p2p_revoked_free(rv);
    p2p_revoked_free(NULL);
}

static void test_revoked_many_and_bound(void **state)
{
    (void)state;
    p2p_revoked *rv = p2p_revoked_new(1000, 0);
    char jti[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(jti, sizeof(jti), "j%d", i);
        assert_int_equal(p2p_revoked_add(rv, jti, i, 0), 0);
    }
    assert_int_equal(p2p_revoked_add(rv, "one-more", 5, 0), -ENOSPC);
    assert_int_equal(p2p_revoked_add(rv, "j5", 5000, 0), 0); /* existing: fine when full */
    assert_int_equal(p2p_revoked_count(rv), 1000);
    /* purge half; survivors are all still found after the rebuild */
    assert_int_equal(p2p_revoked_purge(rv, 500), 500); /* exp 0..499 plus j5 (now 5000) stays: 0..500 minus j5 */
    for (int i = 0; i < 1000; i++) {
        snprintf(jti, sizeof(jti), "j%d", i);
        assert_int_equal(p2p_revoked_contains(rv, jti), i > 500 || i == 5);
    }
    assert_int_equal(p2p_revoked_add(rv, "one-more", 5000, 0), 0);
    p2p_revoked_free(rv);
}

static void test_revoked_json(void **state)
{
    (void)state;
    p2p_revoked *rv = p2p_revoked_new(0, 30);
    char jti[40];
    for (int i = 0; i < 200; i++) {
        snprintf(jti, sizeof(jti), "%032x", i * 7919);
        assert_int_equal(p2p_revoked_add(rv, jti, NOW + i, (uint64_t)i), 0);
    }
    /* seq: kept at the larger value; -1 when not listed */
    assert_int_equal(p2p_revoked_seq(rv, "00000000000000000000000000000000"), 0);
    snprintf(jti, sizeof(jti), "%032x", 7919);
    assert_int_equal(p2p_revoked_seq(rv, jti), 1);
    assert_int_equal(p2p_revoked_add(rv, jti, NOW, 0), 0);
    assert_int_equal(p2p_revoked_seq(rv, jti), 1);
    assert_int_equal(p2p_revoked_seq(rv, "nope"), -1);

    json_t *doc = p2p_revoked_to_json(rv, -1);
    assert_non_null(doc);
    assert_int_equal(json_object_size(doc), 200);
    /* since: only entries with a larger seq */
    json_t *part = p2p_revoked_to_json(rv, 149);
    assert_int_equal(json_object_size(part), 50);
    json_decref(part);
    part = p2p_revoked_to_json(rv, 0); /* seq 0 = unconfirmed, not sent */
    assert_int_equal(json_object_size(part), 199);
    json_decref(part);

    /* round trip through text */
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    p2p_revoked *rv2 = p2p_revoked_new(0, 30);
    assert_int_equal(p2p_revoked_merge_json(rv2, back), 0);
    assert_int_equal(p2p_revoked_count(rv2), 200);
    json_t *doc2 = p2p_revoked_to_json(rv2, -1);
    assert_true(json_equal(doc, doc2));
    assert_int_equal(p2p_revoked_merge_json(rv2, back), 0); /* merging again changes nothing */
    assert_int_equal(p2p_revoked_count(rv2), 200);
    json_decref(doc2);
    json_decref(back);
    free(text);
    p2p_revoked_free(rv2);

    /* the version 1 document still loads (seq 0) */
    p2p_revoked *old = p2p_revoked_new(0, 30);
    json_t *v1 = json_loads("{\"version\":1,\"revoked\":{\"abc\":1700000000}}", 0, NULL);
    assert_int_equal(p2p_revoked_from_json_v1(old, v1), 0);
    assert_int_equal(p2p_revoked_seq(old, "abc"), 0);
    json_decref(v1);
    p2p_revoked_free(old);

    /* malformed maps: rejected, nothing added */
    p2p_revoked *empty = p2p_revoked_new(0, 30);
    const char *bad[] = {
        "[]",
        "{\"ok\":[1,1],\"bad jti\":[1,1]}",
        "{\"ok\":[1,1],\"\":[1,1]}",
        "{\"ok\":[1,1],\"x\":1}",
        "{\"ok\":[1,1],\"x\":[1]}",
        "{\"ok\":[1,1],\"x\":[1,1,1]}",
        "{\"ok\":[1,1],\"x\":[\"1\",1]}",
        "{\"ok\":[1,1],\"x\":[-1,1]}",
        "{\"ok\":[1,1],\"x\":[1,-1]}",
        "{\"ok\":[1,1],\"x\":[1.5,1]}",
        "{\"ok\":[1,1],\"x\":[1,null]}",
        "{\"ok\":[1,1],\"x\":[999999999999999,1]}",
        "{\"ok\":[1,1],\"x\":[1,9007199254740993]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        assert_non_null(j);
        if (p2p_revoked_merge_json(empty, j) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
        json_decref(j);
    }
    const char *bad_v1[] = {"{}", "{\"version\":2,\"revoked\":{}}", "{\"version\":1,\"revoked\":{\"x\":-1}}"};
    for (size_t i = 0; i < sizeof(bad_v1) / sizeof(bad_v1[0]); i++) {
        json_t *j = json_loads(bad_v1[i], 0, NULL);
        assert_int_equal(p2p_revoked_from_json_v1(empty, j), -EINVAL);
        json_decref(j);
    }
    assert_int_equal(p2p_revoked_merge_json(empty, NULL), -EINVAL);
    assert_int_equal(p2p_revoked_count(empty), 0);
    p2p_revoked_free(empty);

    /* over the bound: -ENOSPC, all or nothing */
    p2p_revoked *small = p2p_revoked_new(150, 30);
    assert_int_equal(p2p_revoked_add(small, "keep", NOW, 0), 0);
    assert_int_equal(p2p_revoked_merge_json(small, doc), -ENOSPC);
    assert_int_equal(p2p_revoked_count(small), 1);
    p2p_revoked_free(small);

    json_decref(doc);
    p2p_revoked_free(rv);
}

static void test_name_claim(void **state)
{
    (void)state;
    char *tok = NULL;
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "admin", "viewer", "ci-bot", NOW, 60, &tok, NULL), 0);
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, NULL, &c, &why), 0);
    assert_string_equal(c.name, "ci-bot");
    assert_string_equal(c.role, "viewer");
    p2p_jwt_claims_free(&c);
    assert_null(c.name);
    free(tok);
    tok = NULL;
    assert_int_equal(p2p_jwt_issue(PRIV, "admin", "admin", NULL, NOW, 60, &tok, NULL), 0);
    assert_int_equal(p2p_jwt_verify(KEYS, tok, strlen(tok), NOW, NULL, &c, &why), 0);
    assert_null(c.name);
    p2p_jwt_claims_free(&c);
    free(tok);
    tok = NULL;

    /* issuing refuses a name that would not verify */
    char longname[P2P_JWT_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *bad[] = {"", "a\nb", "tab\there", "\x7f", "\xff\xfe", longname};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", bad[i], NOW, 60, &tok, NULL), -EINVAL);
        assert_null(tok);
        assert_int_equal(p2p_jwt_name_valid(bad[i]), 0);
    }
    assert_int_equal(p2p_jwt_name_valid(NULL), 0);
    longname[P2P_JWT_MAX_NAME] = '\0';
    assert_int_equal(p2p_jwt_name_valid(longname), 1);
    assert_int_equal(p2p_jwt_name_valid("ci bot \xc3\xa9"), 1);
    assert_int_equal(p2p_jwt_issue(PRIV, "a", "admin", longname, NOW, 60, &tok, NULL), 0);
    free(tok);

    /* a signed token with a malformed name is refused, whatever else it holds */
    char payload[512];
    const char *names[] = {"1", "null", "[]", "{}", "\"\"", "\"a\\nb\"",
                           "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\""}; /* 65 bytes */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(payload, sizeof payload,
                 "{\"sub\":\"a\",\"role\":\"viewer\",\"iat\":%d,\"exp\":%d,\"jti\":\"j1\",\"name\":%s}", NOW,
                 NOW + 60, names[i]);
        expect_reject_claims(payload, "invalid claim: name");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_verify_roundtrip),
        cmocka_unit_test(test_issue_rejects_bad_arguments),
        cmocka_unit_test(test_verify_caller_errors),
        cmocka_unit_test(test_reject_malformed),
        cmocka_unit_test(test_reject_bad_signature),
        cmocka_unit_test(test_reject_algorithms),
        cmocka_unit_test(test_keyset),
        cmocka_unit_test(test_keyset_retire),
        cmocka_unit_test(test_reject_claims),
        cmocka_unit_test(test_time_checks),
        cmocka_unit_test(test_revoked_token_rejected),
        cmocka_unit_test(test_parse_bearer),
        cmocka_unit_test(test_revoked_basic),
        cmocka_unit_test(test_revoked_many_and_bound),
        cmocka_unit_test(test_revoked_json),
        cmocka_unit_test(test_name_claim),
    };
    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
