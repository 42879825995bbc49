/*
 * pkgsign.c — the Ed25519 side of packages (see package.h): keys, the
 * signature of package.json and package.sig, and the operator's version
 * floors. OpenSSL EVP only; the message signed is P2P_PKG_SIG_CONTEXT followed
 * by package.json, so a package signature can never be taken for another kind
 * of signature made with the same key.
 */
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "deploy/pkg_internal.h"

/* ---- version floors ---------------------------------------------------------------- */

/* Checks every "name=version" item; with `want`, copies its floor (its own
 * entry, else "*") to `out` and sets *found. */
static int floors_walk(const char *floors, const char *want, char *out, size_t n, int *found, char **err)
{
    const char *p = floors;
    while (p && *p) {
        const char *end = strchr(p, ','), *eq;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[160], name[80];
        if (len == 0 || len >= sizeof item)
            return p2p__fail(err, -EINVAL, "version floors: empty or overlong item");
        memcpy(item, p, len);
        item[len] = '\0';
        eq = strchr(item, '=');
        p2p_semver v;
        if (!eq || (size_t)(eq - item) >= sizeof name)
            return p2p__fail(err, -EINVAL, "version floors: '%s' is not NAME=VERSION", item);
        memcpy(name, item, (size_t)(eq - item));
        name[eq - item] = '\0';
        if (strcmp(name, "*") && !p2p__service_name_valid(name))
            return p2p__fail(err, -EINVAL, "version floors: '%s' is not a package name", name);
        if (p2p__semver_parse(eq + 1, &v) != 0)
            return p2p__fail(err, -EINVAL, "version floors: '%s' is not a semantic version", eq + 1);
        if (want && out && (!strcmp(name, want) || (!strcmp(name, "*") && !*found))) {
            snprintf(out, n, "%s", eq + 1);
            *found = !strcmp(name, want) ? 2 : 1;
            if (*found == 2)
                want = NULL; /* its own entry wins over '*' */
        }
        p = end ? end + 1 : NULL;
        if (end && !*p)
            return p2p__fail(err, -EINVAL, "version floors: a trailing comma");
    }
    return 0;
}

int p2p__pkg_floors_check(const char *floors, char **err)
{
    int found = 0;
    return floors_walk(floors, NULL, NULL, 0, &found, err);
}

int p2p__pkg_floor_for(const char *floors, const char *name, char *out, size_t n)
{
    int found = 0;
    if (floors_walk(floors, name, out, n, &found, NULL) != 0)
        return -EINVAL;
    return found ? 0 : -ENOENT;
}

/* ---- Ed25519 ----------------------------------------------------------------------- */

void p2p__pkg_key_id(const uint8_t raw[32], char out[P2P_PKG_KEY_ID_LEN + 1])
{
    uint8_t h[32];
    unsigned hl = 0;
    EVP_Digest(raw, 32, h, &hl, EVP_sha256(), NULL);
    for (int i = 0; i < P2P_PKG_KEY_ID_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static uint8_t *signed_message(const char *manifest, size_t len, size_t *mlen)
{
    size_t cl = sizeof(P2P_PKG_SIG_CONTEXT) - 1;
    uint8_t *m = p2p__xmalloc(cl + len);
    memcpy(m, P2P_PKG_SIG_CONTEXT, cl);
    memcpy(m + cl, manifest, len);
    *mlen = cl + len;
    return m;
}

int p2p__pkg_ed25519_verify(const uint8_t pub[32], const uint8_t sig[64], const char *manifest, size_t len)
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    size_t mlen;
    uint8_t *m = signed_message(manifest, len, &mlen);
    int ok = pk && mc && EVP_DigestVerifyInit(mc, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(mc, sig, 64, m, mlen) == 1;
    free(m);
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(pk);
    return ok ? 0 : -EBADMSG;
}

static EVP_PKEY *load_private(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (k && EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

static char *bio_text(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = p2p__xmalloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

int p2p__pkg_keygen(char **priv_pem)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    EVP_PKEY *k = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    int rc = -EIO;
    if (pc && b && EVP_PKEY_keygen_init(pc) == 1 && EVP_PKEY_keygen(pc, &k) == 1 &&
        PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
        *priv_pem = bio_text(b);
        rc = 0;
    }
    BIO_free_all(b); /* a memory BIO: OpenSSL clears it on free only with BIO_FLAGS_MEM_RDONLY unset... */
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(pc);
    return rc;
}

void p2p__pkg_secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int p2p__pkg_public_pem(const char *priv_pem, char **pub_pem)
{
    EVP_PKEY *k = load_private(priv_pem);
    BIO *b = BIO_new(BIO_s_mem());
    int rc = -EINVAL;
    if (k && b && PEM_write_bio_PUBKEY(b, k) == 1) {
        *pub_pem = bio_text(b);
        rc = 0;
    }
    BIO_free(b);
    EVP_PKEY_free(k);
    return rc;
}

int p2p__pkg_pubkey_raw(const char *pub_pem, uint8_t raw[32])
{
    BIO *b = BIO_new_mem_buf(pub_pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    size_t n = 32;
    int rc = k && EVP_PKEY_id(k) == EVP_PKEY_ED25519 && EVP_PKEY_get_raw_public_key(k, raw, &n) == 1 && n == 32
                 ? 0
                 : -EINVAL;
    EVP_PKEY_free(k);
    BIO_free(b);
    return rc;
}

int p2p__pkg_sign_manifest(const char *priv_pem, const char *manifest, size_t len, char **sig_json, char **err)
{
    EVP_PKEY *k = load_private(priv_pem);
    if (!k)
        return p2p__fail(err, -EINVAL, "the release key is not an Ed25519 private key");
    uint8_t pub[32], sig[64];
    size_t pn = sizeof pub, sn = sizeof sig, mlen;
    uint8_t *m = signed_message(manifest, len, &mlen);
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    int ok = mc && EVP_PKEY_get_raw_public_key(k, pub, &pn) == 1 && EVP_DigestSignInit(mc, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(mc, sig, &sn, m, mlen) == 1 && sn == 64;
    free(m);
    EVP_MD_CTX_free(mc);
    EVP_PKEY_free(k);
    if (!ok)
        return p2p__fail(err, -EIO, "signing failed");
    char kid[P2P_PKG_KEY_ID_LEN + 1], b64[4 * 22 + 1];
    p2p__pkg_key_id(pub, kid);
    p2p__b64url_encode(sig, 64, b64);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "alg", "ed25519", "key_id", kid, "signature", b64);
    *sig_json = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    return 0;
}

int p2p__pkg_sig_parse(const char *text, size_t len, p2p_pkg_info *info, char **err)
{
    static const char *const keys[] = {"alg", "key_id", "signature", NULL};
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    const char *bad = NULL;
    const char *alg = json_string_value(json_object_get(doc, "alg"));
    const char *kid = json_string_value(json_object_get(doc, "key_id"));
    const char *sig = json_string_value(json_object_get(doc, "signature"));
    uint8_t raw[66];
    size_t rawn = 0, i;
    int rc = -EINVAL;
    if (!json_is_object(doc) || p2p__pkg_only_keys(doc, keys, &bad) != 0 || !alg || strcmp(alg, "ed25519") || !kid ||
        strlen(kid) != P2P_PKG_KEY_ID_LEN || !sig || strlen(sig) != 86 ||
        p2p__b64url_decode(sig, 86, raw, &rawn) != 0 || rawn != 64) {
        p2p__fail(err, rc, "package.sig: malformed (expected {alg: \"ed25519\", key_id, signature})");
        goto out;
    }
    for (i = 0; i < P2P_PKG_KEY_ID_LEN; i++)
        if (!((kid[i] >= '0' && kid[i] <= '9') || (kid[i] >= 'a' && kid[i] <= 'f')))
            break;
    if (i != P2P_PKG_KEY_ID_LEN) {
        p2p__fail(err, rc, "package.sig: key_id must be %d lowercase hex digits", P2P_PKG_KEY_ID_LEN);
        goto out;
    }
    memcpy(info->key_id, kid, P2P_PKG_KEY_ID_LEN + 1);
    memcpy(info->signature, raw, 64);
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

