/*
 * records.c — signatures of node records and the certificate cache (see
 * records.h for the design). OpenSSL 3: the CA in an X509_STORE, one parsed
 * EVP_PKEY per cached certificate (so a verification never parses anything),
 * ECDSA with SHA-256 through EVP_DigestSign/Verify. The cache is a small array
 * scanned linearly: it is consulted only when a record would change our view
 * or a certificate arrives, never per datagram.
 */
#include "membership/records.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct cert_entry {
    uint8_t id[P2P_GOSSIP_CERT_ID_LEN];
    char cn[P2P_GOSSIP_ID_MAX + 1];
    char ou[P2P_GOSSIP_ROLE_MAX + 1];
    int has_ou;
    EVP_PKEY *key;
    uint8_t *der;
    size_t der_len;
    uint64_t used; /* LRU clock */
} cert_entry;

struct p2p__records {
    X509_STORE *store;
    cert_entry *e;
    size_t n, max;
    uint64_t clock;
    EVP_PKEY *own_key;
    uint8_t own_id[P2P_GOSSIP_CERT_ID_LEN];
    char own_role[P2P_GOSSIP_ROLE_MAX + 1];
    p2p__records_stats st;
};

static char *ossl_err(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return p2p__xasprintf("%s%s%s", what, e ? ": " : "", e ? buf : "");
}

void p2p__records_cert_id(const uint8_t *der, size_t len, uint8_t out[P2P_GOSSIP_CERT_ID_LEN])
{
    uint8_t h[32];
    unsigned n = 0;
    if (EVP_Digest(der, len, h, &n, EVP_sha256(), NULL) != 1)
        abort(); /* nothing works without SHA-256 */
    memcpy(out, h, P2P_GOSSIP_CERT_ID_LEN);
}

static X509_STORE *store_from_pem(const char *ca_pem)
{
    BIO *b = BIO_new_mem_buf(ca_pem, -1);
    X509_STORE *st = X509_STORE_new();
    int n = 0;
    X509 *x;
    while (b && st && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (X509_STORE_add_cert(st, x) == 1)
            n++;
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the bundle */
    BIO_free(b);
    if (n == 0) {
        X509_STORE_free(st);
        return NULL;
    }
    return st;
}

static void entry_clear(cert_entry *c)
{
    EVP_PKEY_free(c->key);
    free(c->der);
    memset(c, 0, sizeof *c);
}

static void cache_clear(p2p__records *r)
{
    for (size_t i = 0; i < r->n; i++)
        entry_clear(&r->e[i]);
    r->n = 0;
}

p2p__records *p2p__records_new(const char *ca_pem, size_t max_certs, char **err)
{
    X509_STORE *st = ca_pem ? store_from_pem(ca_pem) : NULL;
    if (!st) {
        if (err)
            *err = p2p__xstrdup("records: no CA certificate");
        return NULL;
    }
    p2p__records *r = p2p__xcalloc(1, sizeof *r);
    r->store = st;
    r->max = max_certs ? max_certs : P2P_RECORDS_DEFAULT_MAX_CERTS;
    r->e = p2p__xcalloc(r->max, sizeof *r->e);
    return r;
}

void p2p__records_free(p2p__records *r)
{
    if (!r)
        return;
    cache_clear(r);
    free(r->e);
    X509_STORE_free(r->store);
    EVP_PKEY_free(r->own_key);
    free(r);
}

static cert_entry *cache_find(p2p__records *r, const uint8_t *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (!memcmp(r->e[i].id, id, P2P_GOSSIP_CERT_ID_LEN)) {
            r->e[i].used = ++r->clock;
            return &r->e[i];
        }
    return NULL;
}

/* Checks x against the CA and reads its CN and OU into c. 0 or -EACCES. */
static int check_cert(p2p__records *r, X509 *x, cert_entry *c)
{
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    int ok = vc && X509_STORE_CTX_init(vc, r->store, x, NULL) == 1 && X509_verify_cert(vc) == 1;
    X509_STORE_CTX_free(vc);
    if (!ok || X509_check_ca(x) != 0)
        return -EACCES;
    X509_NAME *subj = X509_get_subject_name(x);
    char cn[P2P_GOSSIP_ID_MAX + 2] = "", ou[P2P_GOSSIP_ROLE_MAX + 2] = "";
    int n = X509_NAME_get_text_by_NID(subj, NID_commonName, cn, sizeof cn);
    if (n <= 0 || n > P2P_GOSSIP_ID_MAX || !p2p_gossip_id_valid(cn))
        return -EACCES;
    int m = X509_NAME_get_text_by_NID(subj, NID_organizationalUnitName, ou, sizeof ou);
    if (m > P2P_GOSSIP_ROLE_MAX || (m > 0 && !p2p_gossip_role_valid(ou)))
        return -EACCES;
    memcpy(c->cn, cn, (size_t)n + 1);
    c->has_ou = m > 0;
    if (m > 0)
        memcpy(c->ou, ou, (size_t)m + 1);
    c->key = X509_get_pubkey(x);
    return c->key && EVP_PKEY_get_base_id(c->key) == EVP_PKEY_EC ? 0 : -EACCES;
}

static cert_entry *cache_slot(p2p__records *r)
{
    if (r->n < r->max)
        return &r->e[r->n++];
    size_t old = 0;
    for (size_t i = 1; i < r->n; i++)
        if (r->e[i].used < r->e[old].used)
            old = i;
    entry_clear(&r->e[old]);
    r->st.certs_evicted++;
    return &r->e[old];
}

int p2p__records_add_cert(p2p__records *r, const uint8_t *der, size_t len, const uint8_t *expect)
{
    if (!r || !der || len == 0 || len > P2P_GOSSIP_CERT_MAX)
        return -EINVAL;
    uint8_t id[P2P_GOSSIP_CERT_ID_LEN];
    p2p__records_cert_id(der, len, id);
    if (expect && memcmp(id, expect, sizeof id)) {
        r->st.certs_refused++;
        return -EINVAL;
    }
    if (cache_find(r, id))
        return 0;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    cert_entry c = {0};
    int rc = !x || p != der + len ? -EINVAL : check_cert(r, x, &c);
    X509_free(x);
    ERR_clear_error();
    if (rc != 0) {
        EVP_PKEY_free(c.key);
        r->st.certs_refused++;
        return rc;
    }
    memcpy(c.id, id, sizeof id);
    c.der = p2p__xmalloc(len);
    memcpy(c.der, der, len);
    c.der_len = len;
    c.used = ++r->clock;
    r->st.legacy_certs += !c.has_ou;
    *cache_slot(r) = c;
    r->st.certs_added++;
    return 0;
}

int p2p__records_cert_der(p2p__records *r, const uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN], const uint8_t **der,
                          size_t *len)
{
    cert_entry *c = r ? cache_find(r, cert_id) : NULL;
    if (!c)
        return -ENOENT;
    *der = c->der;
    *len = c->der_len;
    return 0;
}

int p2p__records_set_identity(p2p__records *r, const char *cert_pem, const char *key_pem, const char *ca_pem,
                              char **err)
{
    if (!r || !cert_pem || !key_pem)
        return -EINVAL;
    if (ca_pem) {
        X509_STORE *st = store_from_pem(ca_pem);
        if (!st) {
            if (err)
                *err = p2p__xstrdup("records: no CA certificate");
            return -EINVAL;
        }
        X509_STORE_free(r->store);
        r->store = st;
        cache_clear(r);
    }
    int rc = -EINVAL;
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    int dlen = x ? i2d_X509(x, &der) : -1;
    if (!x || !k || dlen <= 0) {
        if (err)
            *err = ossl_err("records: cannot read the node certificate or key");
        goto out;
    }
    if (X509_check_private_key(x, k) != 1) {
        if (err)
            *err = p2p__xstrdup("records: the node key does not match its certificate");
        goto out;
    }
    rc = p2p__records_add_cert(r, der, (size_t)dlen, NULL);
    if (rc != 0) {
        if (err)
            *err = p2p__xstrdup("records: the node certificate does not chain to the cluster CA");
        goto out;
    }
    p2p__records_cert_id(der, (size_t)dlen, r->own_id);
    cert_entry *c = cache_find(r, r->own_id);
    snprintf(r->own_role, sizeof r->own_role, "%s", c && c->has_ou ? c->ou : "");
    EVP_PKEY_free(r->own_key);
    r->own_key = k;
    k = NULL;
out:
    OPENSSL_free(der);
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    return rc;
}

const uint8_t *p2p__records_own_cert_id(const p2p__records *r)
{
    return r->own_id;
}

const char *p2p__records_own_role(const p2p__records *r)
{
    return r->own_role;
}

int p2p__records_sign(p2p__records *r, const uint8_t *tbs, size_t len, p2p_gossip_sig *sig)
{
    if (!r || !r->own_key)
        return -ENOKEY;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = sizeof sig->sig;
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, r->own_key) == 1 &&
             EVP_DigestSign(md, sig->sig, &n, tbs, len) == 1 && n <= P2P_GOSSIP_SIG_MAX;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (!ok)
        return -EIO;
    memcpy(sig->cert_id, r->own_id, P2P_GOSSIP_CERT_ID_LEN);
    sig->len = (uint8_t)n;
    r->st.signed_records++;
    return 0;
}

int p2p__records_verify(p2p__records *r, const char *id, const char *role, const uint8_t *tbs, size_t len,
                        const p2p_gossip_sig *sig)
{
    if (!sig || sig->len == 0) {
        r->st.refused_unsigned++;
        return -EBADMSG;
    }
    cert_entry *c = cache_find(r, sig->cert_id);
    if (!c) {
        r->st.unknown_cert++;
        return -ENOKEY;
    }
    if (strcmp(c->cn, id)) {
        r->st.refused_id++;
        return -EACCES;
    }
    if (role && strcmp(c->has_ou ? c->ou : P2P_RECORDS_LEGACY_ROLE, role)) {
        r->st.refused_role++;
        return -EACCES;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, c->key) == 1 &&
             EVP_DigestVerify(md, sig->sig, sig->len, tbs, len) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    if (!ok) {
        r->st.refused_sig++;
        return -EBADMSG;
    }
    r->st.verified++;
    return 0;
}

void p2p__records_get_stats(const p2p__records *r, p2p__records_stats *out)
{
    *out = r->st;
}

size_t p2p__records_cached(const p2p__records *r)
{
    return r->n;
}
