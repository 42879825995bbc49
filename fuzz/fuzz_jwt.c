/*
 * fuzz_jwt.c — libFuzzer target for src/auth/jwt.c. Each input is used four ways:
 *   1. as an Authorization header value: p2p_auth_parse_bearer, then
 *      p2p_jwt_verify of the token it finds, with a fixed secret;
 *   2. as a compact token given straight to p2p_jwt_verify;
 *   3. as a claims payload, signed here with the fixed secret under an HS256
 *      header, so the claim and time checks behind the signature are reached;
 *   4. as a revocation document: p2p_revoked_from_json, and when accepted the
 *      to_json -> from_json round trip must reproduce it.
 * Invariants: a reason string always; an accepted token has all claims with
 * valid values; a crash, leak, UB or failed invariant is a finding.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t SECRET[] = "fuzz-secret-0123456789abcdef-0123456789";
#define SECRET_LEN (sizeof(SECRET) - 1)
#define NOW 1700000000

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

static void verify(const char *tok, size_t len)
{
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    int rc = p2p_jwt_verify(SECRET, SECRET_LEN, tok, len, NOW, NULL, &c, &why);
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
    static const char hdr[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."; /* {"alg":"HS256","typ":"JWT"} */
    char *tok = malloc(sizeof(hdr) + 4 * (size / 3 + 1) + 64);
    CHECK(tok);
    size_t n = sizeof(hdr) - 1;
    memcpy(tok, hdr, n);
    n += b64url(data, size, tok + n);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mlen = 0;
    CHECK(HMAC(EVP_sha256(), SECRET, (int)SECRET_LEN, (const unsigned char *)tok, n, mac, &mlen));
    tok[n++] = '.';
    n += b64url(mac, mlen, tok + n);
    verify(tok, n);
    free(tok);
}

static void revocation(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    if (!doc)
        return;
    p2p_revoked *set = p2p_revoked_new(1000, 30);
    CHECK(set);
    int rc = p2p_revoked_from_json(set, doc);
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOSPC);
    if (rc == 0) {
        json_t *out = p2p_revoked_to_json(set);
        CHECK(out);
        CHECK(json_equal(out, doc));
        p2p_revoked *again = p2p_revoked_new(1000, 30);
        CHECK(p2p_revoked_from_json(again, out) == 0);
        CHECK(p2p_revoked_count(again) == p2p_revoked_count(set));
        p2p_revoked_purge(again, NOW);
        p2p_revoked_free(again);
        json_decref(out);
    } else {
        CHECK(p2p_revoked_count(set) == 0);
    }
    p2p_revoked_free(set);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
    revocation(data, size);
    return 0;
}
