/*
 * test_jwt.c — unit tests for src/auth/jwt.c: issuing and verifying HS256
 * tokens, the rejection table (shape, algorithm confusion including HS384/HS512
 * made by libjwt with the same secret, signatures, claims, time), the Bearer
 * header parser, and the revocation list with its JSON form.
 *
 * Tokens with chosen headers and claims are assembled here and signed with
 * OpenSSL's HMAC, independently of the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"

static const uint8_t SECRET[] = "0123456789abcdef0123456789abcdef"; /* 32 bytes + NUL */
#define SECRET_LEN 32
static const uint8_t OTHER[] = "fedcba9876543210fedcba9876543210";
#define NOW 1700000000

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

/* header.payload.HMAC-SHA256(secret) — or with `sig` verbatim when non-NULL. */
static char *make_token(const char *header, const char *payload, const uint8_t *secret, const char *sig)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    char *s;
    if (sig) {
        s = strdup(sig);
    } else {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned mlen = 0;
        HMAC(EVP_sha256(), secret, SECRET_LEN, (const unsigned char *)signing, strlen(signing), mac, &mlen);
        s = b64url(mac, mlen);
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

#define HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

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
    int rc = p2p_jwt_verify(SECRET, SECRET_LEN, tok, tok ? strlen(tok) : 0, now, NULL, &c, why);
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
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "node-7", "node", NULL, NOW, 600, &tok, &jti), 0);
    assert_non_null(tok);
    assert_int_equal(strlen(jti), 32);
    assert_int_equal(strspn(jti, "0123456789abcdef"), 32);

    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, NULL, &c, &why), 0);
    assert_string_equal(why, "ok");
    assert_string_equal(c.sub, "node-7");
    assert_string_equal(c.role, "node");
    assert_string_equal(c.jti, jti);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 600);
    assert_int_equal(c.has_nbf, 0);
    p2p_jwt_claims_free(&c);
    assert_null(c.sub);
    p2p_jwt_claims_free(&c); /* idempotent */

    /* the header libjwt wrote passes our strict header check, and libjwt agrees the token is HS256 */
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, tok, SECRET, SECRET_LEN), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_HS256);
    jwt_free(j);

    /* two tokens never share a jti */
    char *tok2 = NULL, *jti2 = NULL;
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "node-7", "node", NULL, NOW, 600, &tok2, &jti2), 0);
    assert_string_not_equal(jti, jti2);
    free(tok2);
    free(jti2);

    /* jti_out is optional */
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "bob", "admin", NULL, NOW, 1, &tok2, NULL), 0);
    free(tok2);
    free(tok);
    free(jti);
}

static void test_issue_rejects_bad_arguments(void **state)
{
    (void)state;
    char *tok = NULL;
    assert_int_equal(p2p_jwt_issue(SECRET, 31, "a", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(NULL, 32, "a", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, NULL, "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a\nb", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "\xff\xfe", "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "root", NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", NULL, NULL, NOW, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "admin", NULL, NOW, 0, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "admin", NULL, -1, 60, &tok, NULL), -EINVAL);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "admin", NULL, NOW, INT64_MAX, &tok, NULL), -EINVAL);
    assert_null(tok);
    char sub[P2P_JWT_MAX_SUB + 2];
    memset(sub, 'x', sizeof(sub) - 1);
    sub[sizeof(sub) - 1] = '\0';
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, sub, "admin", NULL, NOW, 60, &tok, NULL), -EINVAL);
    sub[P2P_JWT_MAX_SUB] = '\0';
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, sub, "admin", NULL, NOW, 60, &tok, NULL), 0);
    free(tok);
}

/* The optional "name" claim (p2p token --name): issued only when given, checked
 * like sub when present, absent otherwise. */
static void test_name_claim(void **state)
{
    (void)state;
    char *tok = NULL;
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "admin", "viewer", "ci-bot", NOW, 60, &tok, NULL), 0);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, NULL, &c, &why), 0);
    assert_string_equal(c.name, "ci-bot");
    assert_string_equal(c.role, "viewer");
    p2p_jwt_claims_free(&c);
    assert_null(c.name);
    free(tok);
    tok = NULL;
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "admin", "admin", NULL, NOW, 60, &tok, NULL), 0);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, NULL, &c, &why), 0);
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
        assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "admin", bad[i], NOW, 60, &tok, NULL), -EINVAL);
        assert_null(tok);
        assert_int_equal(p2p_jwt_name_valid(bad[i]), 0);
    }
    assert_int_equal(p2p_jwt_name_valid(NULL), 0);
    longname[P2P_JWT_MAX_NAME] = '\0';
    assert_int_equal(p2p_jwt_name_valid(longname), 1);
    assert_int_equal(p2p_jwt_name_valid("ci bot \xc3\xa9"), 1);
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "admin", longname, NOW, 60, &tok, NULL), 0);
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

static void test_verify_caller_errors(void **state)
{
    (void)state;
    char *tok = NULL;
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "a", "admin", NULL, NOW, 60, &tok, NULL), 0);
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(SECRET, 31, tok, strlen(tok), NOW, NULL, &c, &why), -EINVAL);
    assert_string_equal(why, "bad arguments");
    assert_int_equal(p2p_jwt_verify(NULL, 32, tok, strlen(tok), NOW, NULL, &c, &why), -EINVAL);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), -1, NULL, &c, &why), -EINVAL);
    p2p_jwt_opts o = {.leeway_s = -1};
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, &o, &c, &why), -EINVAL);
    o.leeway_s = P2P_JWT_MAX_LEEWAY_S + 1;
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, &o, &c, &why), -EINVAL);
    assert_null(c.sub);
    /* why may be NULL */
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, NULL, &c, NULL), 0);
    p2p_jwt_claims_free(&c);
    /* a token that is a prefix of a longer buffer (as from the Bearer parser) */
    char *padded = malloc(strlen(tok) + 10);
    sprintf(padded, "%s  trailer", tok);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, padded, strlen(tok), NOW, NULL, &c, NULL), 0);
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
    expect_reject("eyJhbGciOiJIUzI1NiJ9..", NOW, "malformed token"); /* empty payload */
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
    expect_reject("eyJhbGciOiJIUzI1NiJ9.e31.sig", NOW, "malformed token"); /* "e31" has stray low bits */

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
    /* verified with another secret */
    p2p_jwt_claims c = {0};
    assert_int_equal(p2p_jwt_verify(OTHER, SECRET_LEN, good, strlen(good), NOW, NULL, &c, &why), -EACCES);
    assert_string_equal(why, "bad signature");

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
    char *t = make_token("{\"typ\":\"JWT\",\"alg\":\"HS256\"}", claims, SECRET, sig);
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

/* ---- rejection table: algorithms ----------------------------------------- */

static char *libjwt_token(jwt_alg_t alg)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    char *claims = claims_json();
    assert_int_equal(jwt_add_grants_json(j, claims), 0);
    assert_int_equal(jwt_set_alg(j, alg, SECRET, SECRET_LEN), 0);
    char *tok = jwt_encode_str(j);
    assert_non_null(tok);
    jwt_free(j);
    free(claims);
    return tok;
}

static void test_reject_algorithms(void **state)
{
    (void)state;
    char *claims = claims_json();

    /* alg none, hand-crafted with an empty signature, in a few spellings */
    const char *none_hdrs[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"none\"}", "{\"alg\":\"NONE\"}",
                               "{\"alg\":\"None\"}", "{\"alg\":\"\"}"};
    for (size_t i = 0; i < sizeof(none_hdrs) / sizeof(none_hdrs[0]); i++) {
        char *t = make_token(none_hdrs[i], claims, SECRET, "");
        expect_reject(t, NOW, "algorithm not allowed");
        free(t);
    }

    /* HS384 / HS512 made by libjwt with the same secret: libjwt itself accepts them */
    jwt_alg_t algs[] = {JWT_ALG_HS384, JWT_ALG_HS512};
    for (int i = 0; i < 2; i++) {
        char *t = libjwt_token(algs[i]);
        jwt_t *j = NULL;
        assert_int_equal(jwt_decode(&j, t, SECRET, SECRET_LEN), 0); /* the sharp edge */
        jwt_free(j);
        expect_reject(t, NOW, "algorithm not allowed");
        free(t);
    }
    /* and HS256 from libjwt is fine */
    char *t = libjwt_token(JWT_ALG_HS256);
    const char *why = NULL;
    assert_int_equal(verify_at(t, NOW, &why), 0);
    free(t);

    /* RS256 / ES256 headers; lower-case hs256 (libjwt would accept it); HS256 signed "correctly" */
    const char *other_hdrs[] = {"{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"alg\":\"ES256\"}", "{\"alg\":\"hs256\"}",
                                "{\"alg\":\"HS256 \"}", "{\"alg\":\"PS256\"}"};
    for (size_t i = 0; i < sizeof(other_hdrs) / sizeof(other_hdrs[0]); i++) {
        t = make_token(other_hdrs[i], claims, SECRET, NULL);
        expect_reject(t, NOW, "algorithm not allowed");
        free(t);
    }

    /* unsupported header members */
    const char *odd_hdrs[] = {"{\"alg\":\"HS256\",\"typ\":\"jwt\"}", "{\"alg\":\"HS256\",\"typ\":\"JOSE\"}",
                              "{\"alg\":\"HS256\",\"typ\":1}", "{\"alg\":\"HS256\",\"kid\":\"k1\"}",
                              "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}"};
    for (size_t i = 0; i < sizeof(odd_hdrs) / sizeof(odd_hdrs[0]); i++) {
        t = make_token(odd_hdrs[i], claims, SECRET, NULL);
        expect_reject(t, NOW, "unsupported header");
        free(t);
    }
    /* typ is optional */
    t = make_token("{\"alg\":\"HS256\"}", claims, SECRET, NULL);
    assert_int_equal(verify_at(t, NOW, &why), 0);
    free(t);
    free(claims);
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
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, t, strlen(t), NOW + 3599, &o, &c, &why), 0);
    p2p_jwt_claims_free(&c);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, t, strlen(t), NOW + 3600, &o, &c, &why), -EACCES);
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
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, t, strlen(t), NOW + 60, NULL, &c, &why), 0);
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
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "s", "viewer", NULL, NOW, 60, &tok, NULL), 0);
    assert_int_equal(verify_at(tok, NOW + 89, &why), 0);
    expect_reject(tok, NOW + 90, "expired");
    free(tok);
}

static void test_revoked_token_rejected(void **state)
{
    (void)state;
    char *tok = NULL, *jti = NULL;
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "s", "admin", NULL, NOW, 60, &tok, &jti), 0);
    p2p_revoked *rv = p2p_revoked_new(0, -1);
    assert_non_null(rv);
    p2p_jwt_opts o = {.leeway_s = P2P_JWT_DEFAULT_LEEWAY_S, .revoked = rv};
    p2p_jwt_claims c = {0};
    const char *why = NULL;
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, &o, &c, &why), 0);
    p2p_jwt_claims_free(&c);
    assert_int_equal(p2p_revoked_add(rv, jti, NOW + 60), 0);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW, &o, &c, &why), -EACCES);
    assert_string_equal(why, "revoked");
    /* purge keeps it while the token could still pass the exp check (exp + leeway) */
    assert_int_equal(p2p_revoked_purge(rv, NOW + 60 + 29), 0);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW + 89, &o, &c, &why), -EACCES);
    assert_string_equal(why, "revoked");
    assert_int_equal(p2p_revoked_purge(rv, NOW + 90), 1);
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, strlen(tok), NOW + 90, &o, &c, &why), -EACCES);
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
    assert_int_equal(p2p_jwt_issue(SECRET, SECRET_LEN, "s", "admin", NULL, NOW, 60, &t, NULL), 0);
    char hdr[1024];
    snprintf(hdr, sizeof(hdr), "Bearer %s", t);
    assert_int_equal(p2p_auth_parse_bearer(hdr, strlen(hdr), &tok, &tlen), 0);
    p2p_jwt_claims c = {0};
    assert_int_equal(p2p_jwt_verify(SECRET, SECRET_LEN, tok, tlen, NOW, NULL, &c, NULL), 0);
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
    assert_int_equal(p2p_revoked_add(rv, "a", 100), 0);
    assert_int_equal(p2p_revoked_add(rv, "b", 200), 0);
    assert_int_equal(p2p_revoked_contains(rv, "a"), 1);
    assert_int_equal(p2p_revoked_contains(rv, "b"), 1);
    assert_int_equal(p2p_revoked_contains(rv, "c"), 0);
    assert_int_equal(p2p_revoked_contains(rv, NULL), 0);
    assert_int_equal(p2p_revoked_count(rv), 2);
    /* re-adding keeps the later exp */
    assert_int_equal(p2p_revoked_add(rv, "a", 50), 0);
    assert_int_equal(p2p_revoked_add(rv, "b", 300), 0);
    assert_int_equal(p2p_revoked_count(rv), 2);
    /* bad input */
    assert_int_equal(p2p_revoked_add(rv, "", 1), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, "a b", 1), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, NULL, 1), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, "x", -1), -EINVAL);
    assert_int_equal(p2p_revoked_add(rv, "x", P2P_JWT_MAX_TIME + 1), -EINVAL);
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
        assert_int_equal(p2p_revoked_add(rv, jti, i), 0);
    }
    assert_int_equal(p2p_revoked_add(rv, "one-more", 5), -ENOSPC);
    assert_int_equal(p2p_revoked_add(rv, "j5", 5000), 0); /* existing: fine when full */
    assert_int_equal(p2p_revoked_count(rv), 1000);
    /* purge half; survivors are all still found after the rebuild */
    assert_int_equal(p2p_revoked_purge(rv, 500), 500); /* exp 0..499 plus j5 (now 5000) stays: 0..500 minus j5 */
    for (int i = 0; i < 1000; i++) {
        snprintf(jti, sizeof(jti), "j%d", i);
        assert_int_equal(p2p_revoked_contains(rv, jti), i > 500 || i == 5);
    }
    assert_int_equal(p2p_revoked_add(rv, "one-more", 5000), 0);
    p2p_revoked_free(rv);
}

static void test_revoked_json(void **state)
{
    (void)state;
    p2p_revoked *rv = p2p_revoked_new(0, 30);
    char jti[40];
    for (int i = 0; i < 200; i++) {
        snprintf(jti, sizeof(jti), "%032x", i * 7919);
        assert_int_equal(p2p_revoked_add(rv, jti, NOW + i), 0);
    }
    json_t *doc = p2p_revoked_to_json(rv);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "version")), 1);
    assert_int_equal(json_object_size(json_object_get(doc, "revoked")), 200);

    /* round trip through text */
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    p2p_revoked *rv2 = p2p_revoked_new(0, 30);
    assert_int_equal(p2p_revoked_from_json(rv2, back), 0);
    assert_int_equal(p2p_revoked_count(rv2), 200);
    json_t *doc2 = p2p_revoked_to_json(rv2);
    assert_true(json_equal(doc, doc2));
    /* loading again merges (no change) */
    assert_int_equal(p2p_revoked_from_json(rv2, back), 0);
    assert_int_equal(p2p_revoked_count(rv2), 200);
    json_decref(doc2);
    json_decref(back);
    free(text);
    p2p_revoked_free(rv2);

    /* an empty list */
    p2p_revoked *empty = p2p_revoked_new(0, 30);
    json_t *e = p2p_revoked_to_json(empty);
    text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"revoked\":{},\"version\":1}");
    free(text);
    json_decref(e);

    /* malformed documents: rejected, nothing added */
    const char *bad[] = {
        "[]",
        "{}",
        "{\"version\":1}",
        "{\"revoked\":{}}",
        "{\"version\":2,\"revoked\":{}}",
        "{\"version\":\"1\",\"revoked\":{}}",
        "{\"version\":1.0,\"revoked\":{}}",
        "{\"version\":1,\"revoked\":[]}",
        "{\"version\":1,\"revoked\":{},\"extra\":0}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"bad jti\":1}}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"\":1}}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"x\":\"1\"}}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"x\":-1}}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"x\":1.5}}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"x\":null}}",
        "{\"version\":1,\"revoked\":{\"ok\":1,\"x\":999999999999999}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        assert_non_null(j);
        if (p2p_revoked_from_json(empty, j) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
        json_decref(j);
    }
    assert_int_equal(p2p_revoked_from_json(empty, NULL), -EINVAL);
    assert_int_equal(p2p_revoked_count(empty), 0);
    p2p_revoked_free(empty);

    /* over the bound: -ENOSPC, all or nothing */
    p2p_revoked *small = p2p_revoked_new(150, 30);
    assert_int_equal(p2p_revoked_add(small, "keep", NOW), 0);
    assert_int_equal(p2p_revoked_from_json(small, doc), -ENOSPC);
    assert_int_equal(p2p_revoked_count(small), 1);
    p2p_revoked_free(small);

    json_decref(doc);
    p2p_revoked_free(rv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_verify_roundtrip),
        cmocka_unit_test(test_issue_rejects_bad_arguments),
        cmocka_unit_test(test_name_claim),
        cmocka_unit_test(test_verify_caller_errors),
        cmocka_unit_test(test_reject_malformed),
        cmocka_unit_test(test_reject_bad_signature),
        cmocka_unit_test(test_reject_algorithms),
        cmocka_unit_test(test_reject_claims),
        cmocka_unit_test(test_time_checks),
        cmocka_unit_test(test_revoked_token_rejected),
        cmocka_unit_test(test_parse_bearer),
        cmocka_unit_test(test_revoked_basic),
        cmocka_unit_test(test_revoked_many_and_bound),
        cmocka_unit_test(test_revoked_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
