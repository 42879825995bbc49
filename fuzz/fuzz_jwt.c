/*
 * fuzz_jwt.c — libFuzzer target for src/auth/jwt.c. Each input is used five ways:
 *   1. as an Authorization header value: p2p_auth_parse_bearer, then
 *      p2p_jwt_verify of the token it finds, against a fixed key set;
 *   2. as a compact token given straight to p2p_jwt_verify;
 *   3. as a claims payload, signed here with the fixed ES256 key under a header
 *      naming its kid, so the claim and time checks behind the signature are reached;
 *   4. as a revocation map: p2p_revoked_merge_json, and when accepted the
 *      to_json -> merge round trip must reproduce it;
 *   5. as a key set document: p2p_jwt_keyset_from_json (all or nothing); an
 *      accepted set round-trips through to_json with the same tag, and prune
 *      keeps exactly the keys not yet retired.
 * Invariants: a reason string always; an accepted token has all claims with
 * valid values; a crash, leak, UB or failed invariant is a finding.
 */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

/* One key for the whole run (made on the first input). */
static char *priv;
static EVP_PKEY *pk;
static p2p_jwt_keyset *keys;
static char hdr64[256];

static void init(void)
{
    if (keys)
        return;
    CHECK(p2p_jwt_keygen(&priv) == 0);
    BIO *b = BIO_new_mem_buf(priv, -1);
    pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    CHECK(pk);
    keys = p2p_jwt_keyset_new();
    char kid[P2P_JWT_KID_LEN + 1];
    CHECK(p2p_jwt_keyset_add_pem(keys, priv, kid) == 0);
    char hdr[128];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid);
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(hdr), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)hdr[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)hdr[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)hdr[i + 2];
        hdr64[o++] = a[v >> 18];
        hdr64[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            hdr64[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            hdr64[o++] = a[v & 63];
    }
    hdr64[o] = '\0';
}

static void verify(const char *tok, size_t len)
{
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    int rc = p2p_jwt_verify(keys, tok, len, NOW, NULL, &c, &why);
    CHECK(why != NULL);
    CHECK(rc == 0 || rc == -EACCES);
    if (rc == 0) {
        CHECK(!strcmp(why, "ok"));
        CHECK(c.sub && c.role && c.jti && p2p_jwt_role_valid(c.role));
        CHECK(c.exp > c.iat && c.exp > NOW - P2P_JWT_DEFAULT_LEEWAY_S && c.iat <= NOW + P2P_JWT_DEFAULT_LEEWAY_S);
        CHECK(!c.has_nbf || c.nbf <= NOW + P2P_JWT_DEFAULT_LEEWAY_S);
    } else {
        CHECK(c.sub == NULL);
    }
    p2p_jwt_claims_free(&c);
}

static size_t b64url(const uint8_t *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
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
    return o;
}

static void verify_signed_payload(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return;
    size_t hl = strlen(hdr64);
    char *tok = malloc(hl + 2 + 4 * (size / 3 + 1) + 100);
    CHECK(tok);
    memcpy(tok, hdr64, hl);
    size_t n = hl;
    tok[n++] = '.';
    n += b64url(data, size, tok + n);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t dlen = sizeof der;
    CHECK(md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
          EVP_DigestSign(md, der, &dlen, (const unsigned char *)tok, n) == 1);
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    CHECK(es);
    uint8_t rs[64];
    CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32) == 32 && BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32) == 32);
    ECDSA_SIG_free(es);
    tok[n++] = '.';
    n += b64url(rs, sizeof rs, tok + n);
    verify(tok, n);
    free(tok);
}

static void revocation(const json_t *doc)
{
    p2p_revoked *set = p2p_revoked_new(1000, 30);
    CHECK(set);
    int rc = p2p_revoked_merge_json(set, doc);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
    if (rc == 0) {
        json_t *out = p2p_revoked_to_json(set, -1);
        CHECK(out);
        CHECK(json_equal(out, doc));
        p2p_revoked *again = p2p_revoked_new(1000, 30);
        CHECK(p2p_revoked_merge_json(again, out) == 0);
        CHECK(p2p_revoked_count(again) == p2p_revoked_count(set));
        p2p_revoked_purge(again, NOW);
        p2p_revoked_free(again);
        json_decref(out);
    } else {
        CHECK(p2p_revoked_count(set) == 0);
    }
    rc = p2p_revoked_from_json_v1(set, doc);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
    p2p_revoked_free(set);
}

static void keyset(const json_t *doc)
{
    p2p_jwt_keyset *ks = p2p_jwt_keyset_new();
    int rc = p2p_jwt_keyset_from_json(ks, doc);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
    if (rc != 0)
        CHECK(p2p_jwt_keyset_count(ks) == 0);
    CHECK(p2p_jwt_keyset_count(ks) <= P2P_JWT_MAX_KEYS);
    if (rc == 0) {
        char t1[P2P_JWT_TAG_LEN + 1], t2[P2P_JWT_TAG_LEN + 1];
        p2p_jwt_keyset_tag(ks, t1);
        json_t *back = p2p_jwt_keyset_to_json(ks);
        p2p_jwt_keyset *again = p2p_jwt_keyset_new();
        CHECK(p2p_jwt_keyset_from_json(again, back) == 0);
        p2p_jwt_keyset_tag(again, t2);
        CHECK(strcmp(t1, t2) == 0);
        size_t before = p2p_jwt_keyset_count(again), retired = 0;
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(back, "keys"), i, k)
        {
            json_t *ra = json_object_get(k, "retire_at");
            if (ra && json_integer_value(ra) <= NOW)
                retired++;
        }
        CHECK(p2p_jwt_keyset_prune(again, NOW) == retired);
        CHECK(p2p_jwt_keyset_count(again) == before - retired);
        json_decref(back);
        p2p_jwt_keyset_free(again);
    }
    p2p_jwt_keyset_free(ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    const char *tok = NULL;
    size_t tlen = 0;
    int rc = p2p_auth_parse_bearer((const char *)data, size, &tok, &tlen);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT);
    if (rc == 0) {
        CHECK(tlen > 0 && tok >= (const char *)data && tok + tlen <= (const char *)data + size);
        verify(tok, tlen);
    }
    verify((const char *)data, size);
    verify_signed_payload(data, size);
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    if (doc) {
        revocation(doc);
        keyset(doc);
        json_decref(doc);
    }
    return 0;
}
