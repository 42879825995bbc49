/*
 * pki.c — the cluster CA, node keys, CSRs, the name policy and certificate
 * checks, on OpenSSL 3. The policy and the certificate profile are documented in
 * pki.h.
 *
 * Everything works on PEM strings in memory (BIO_s_mem), never on files. Input
 * that may come from the network (CSRs) is decoded by hand around PEM_read_bio:
 * one block with the exact label, no headers, whitespace only around it, and
 * d2i must consume the whole DER, so one CSR has one accepted spelling. Names
 * are moved between CSR and certificate as GENERAL_NAME structures, never
 * through OpenSSL's "DNS:a,IP:b" config strings, so a name cannot inject
 * another. Every public function brackets its work with ERR_set_mark /
 * ERR_pop_to_mark: OpenSSL's error queue is per thread, and an error left on it
 * would be picked up by the next SSL_get_error of a TLS connection on the loop.
 */
#include "pki/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

#define MAX_NAME_LEN 253    /* a DNS name */
#define MAX_CN_LEN 64       /* RFC 5280 ub-common-name */
#define MAX_PARSED_SANS 256 /* beyond the policy's 16: enough to report "too many", bounded memory */
#define SERIAL_RANDOM_BYTES 16

/* ---- errors and messages --------------------------------------------------------------------- */


/* `what` plus the reason of the newest OpenSSL error, if any. */
static int ssl_fail(char **err, int rc, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    return p2p__fail(err, rc, "%s%s%s", what, e ? ": " : "", buf);
}

/* Untrusted bytes rendered for a message: printable ASCII as is, anything else
 * as \xNN, cut after 64 input bytes. `buf` holds SHOW_CAP bytes. */
#define SHOW_CAP (64 * 4 + 4)
static const char *show(const char *s, size_t len, char *buf)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
    }
    if (len > 64) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}
#define SHOWZ(s, buf) show((s), strlen(s), (buf))

/* ---- small helpers --------------------------------------------------------------------------- */

typedef struct strlist {
    char **v;
    size_t n;
} strlist;

static void strlist_push(strlist *l, const char *s, size_t len)
{
    l->v = p2p__xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    char *c = p2p__xmalloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    l->v[l->n++] = c;
}

static int strlist_has(const strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s))
            return 1;
    return 0;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1; /* never prompt: an encrypted key is an error here */
}

/* A copy of the contents of a memory BIO as a NUL-terminated heap string. */
static char *bio_string(BIO *b)
{
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    if (len < 0)
        len = 0;
    char *s = p2p__xmalloc((size_t)len + 1);
    if (len)
        memcpy(s, data, (size_t)len);
    s[len] = '\0';
    return s;
}

/* An IP address: family and 4 or 16 bytes. */
typedef struct ipaddr {
    int family;
    size_t len;
    unsigned char b[16];
} ipaddr;

static int ip_parse(const char *s, ipaddr *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(AF_INET, s, ip->b) == 1) {
        ip->family = AF_INET;
        ip->len = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, s, ip->b) == 1) {
        ip->family = AF_INET6;
        ip->len = 16;
        return 0;
    }
    return -1;
}

static int ip_from_bytes(const unsigned char *b, size_t len, ipaddr *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (len != 4 && len != 16)
        return -1;
    ip->family = len == 4 ? AF_INET : AF_INET6;
    ip->len = len;
    memcpy(ip->b, b, len);
    return 0;
}

static void ip_text(const ipaddr *ip, char out[INET6_ADDRSTRLEN])
{
    if (!inet_ntop(ip->family, ip->b, out, INET6_ADDRSTRLEN))
        out[0] = '\0';
}

static int ip_v4_mapped(const ipaddr *ip)
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return ip->family == AF_INET6 && memcmp(ip->b, prefix, 12) == 0;
}

static int ip_unspecified(const ipaddr *ip)
{
    static const unsigned char zero[16] = {0};
    return memcmp(ip->b, zero, ip->len) == 0;
}

static int ip_equal(const ipaddr *a, const ipaddr *b)
{
    return a->family == b->family && memcmp(a->b, b->b, a->len) == 0;
}

static int ip_loopback(const ipaddr *ip)
{
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return ip->family == AF_INET ? ip->b[0] == 127 : memcmp(ip->b, one, 16) == 0;
}

/* NULL for a host address, else why it is not one. */
static const char *ip_not_host(const ipaddr *ip)
{
    static const unsigned char zero[16] = {0};
    if (ip->family == AF_INET) {
        if (ip->b[0] == 0)
            return "unspecified (0.0.0.0/8)";
        if (ip->b[0] >= 224 && ip->b[0] <= 239)
            return "multicast";
        if (ip->b[0] == 255 && ip->b[1] == 255 && ip->b[2] == 255 && ip->b[3] == 255)
            return "broadcast";
        return NULL;
    }
    if (memcmp(ip->b, zero, 16) == 0)
        return "unspecified";
    if (ip->b[0] == 0xff)
        return "multicast";
    if (ip_v4_mapped(ip))
        return "IPv4-mapped (name the IPv4 address instead)";
    return NULL;
}

/* 1 for a DNS SAN we can carry as a C string: 1..253 printable ASCII, no space. */
static int name_syntax_ok(const char *s, size_t len)
{
    if (len == 0 || len > MAX_NAME_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

int pki_node_id_valid(const char *id)
{
    if (!id)
        return 0;
    size_t n = strlen(id);
    if (n < 1 || n > PKI_MAX_NODE_ID)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int pki_role_valid(const char *role)
{
    /* the node id alphabet, shorter: a role travels in gossip records (P2P_GOSSIP_ROLE_MAX) */
    return role && strlen(role) <= PKI_MAX_ROLE && pki_node_id_valid(role);
}

/* ASN1_TIME -> Unix seconds (days-from-civil; no time zone, no libc state). */
static int asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    int64_t y = (int64_t)tm.tm_year + 1900, m = tm.tm_mon + 1, d = tm.tm_mday;
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = days * 86400 + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return 0;
}

/* ---- PEM decoding ---------------------------------------------------------------------------- */

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* Reads the PEM block starting at *pos (after optional whitespace) with label
 * `label` into DER; advances *pos past it. Returns 0, or -1 with *why set. */
static int pem_block(const char **pos, const char *end, const char *label, unsigned char **der, long *der_len,
                     const char **why)
{
    static const char begin[] = "-----BEGIN ";
    const char *p = skip_space(*pos, end);
    if ((size_t)(end - p) < sizeof(begin) - 1 || memcmp(p, begin, sizeof(begin) - 1) != 0) {
        *why = "no PEM block where one was expected";
        return -1;
    }
    BIO *b = BIO_new_mem_buf(p, (int)(end - p));
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int rc = -1;
    if (!b) {
        *why = "out of memory";
        return -1;
    }
    if (PEM_read_bio(b, &name, &header, &data, &len) != 1) {
        *why = "malformed PEM";
        goto out;
    }
    if (strcmp(name, label) != 0) {
        *why = "PEM block of the wrong type";
        goto out;
    }
    if (header[0] != '\0') {
        *why = "PEM headers are not allowed";
        goto out;
    }
    char *rest = NULL;
    long rest_len = BIO_get_mem_data(b, &rest);
    *pos = end - (rest_len > 0 ? rest_len : 0);
    *der = data;
    *der_len = len;
    data = NULL;
    rc = 0;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(b);
    return rc;
}

/* Exactly one certificate. */
static X509 *read_one_cert(const char *pem, size_t len, const char **why)
{
    const char *pos = pem, *end = pem + len;
    unsigned char *der = NULL;
    long der_len = 0;
    if (len > PKI_MAX_CERT_PEM) {
        *why = "too large";
        return NULL;
    }
    if (pem_block(&pos, end, "CERTIFICATE", &der, &der_len, why) != 0)
        return NULL;
    const unsigned char *q = der;
    X509 *x = d2i_X509(NULL, &q, der_len);
    if (!x || q != der + der_len) {
        *why = "malformed certificate";
        X509_free(x);
        x = NULL;
    } else if (skip_space(pos, end) != end) {
        *why = "data after the certificate";
        X509_free(x);
        x = NULL;
    }
    OPENSSL_free(der);
    return x;
}

/* One or more certificates. */
static STACK_OF(X509) * read_cert_bundle(const char *pem, size_t len, const char **why)
{
    const char *pos = pem, *end = pem + len;
    if (len > PKI_MAX_CERT_PEM) {
        *why = "too large";
        return NULL;
    }
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk) {
        *why = "out of memory";
        return NULL;
    }
    do {
        unsigned char *der = NULL;
        long der_len = 0;
        if (pem_block(&pos, end, "CERTIFICATE", &der, &der_len, why) != 0)
            goto fail;
        const unsigned char *q = der;
        X509 *x = d2i_X509(NULL, &q, der_len);
        int ok = x && q == der + der_len;
        OPENSSL_free(der);
        if (!ok || !sk_X509_push(sk, x)) {
            *why = "malformed certificate";
            X509_free(x);
            goto fail;
        }
    } while (skip_space(pos, end) != end);
    return sk;
fail:
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

static EVP_PKEY *read_key(const char *pem)
{
    size_t len = strlen(pem);
    if (len > PKI_MAX_CERT_PEM)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    return k;
}

static int is_p256(const EVP_PKEY *k)
{
    char group[64];
    size_t glen = 0;
    return k && EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

/* ---- names ------------------------------------------------------------------------------------ */

/* The single CN of `nm` as UTF-8 (1..64 bytes, no control characters). */
static int subject_cn(const X509_NAME *nm, char **out, const char **why)
{
    int i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    if (i < 0) {
        *why = "no CN in the subject";
        return -1;
    }
    if (X509_NAME_get_index_by_NID(nm, NID_commonName, i) >= 0) {
        *why = "more than one CN in the subject";
        return -1;
    }
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)));
    int ok = n >= 1 && n <= MAX_CN_LEN;
    for (int k = 0; ok && k < n; k++)
        if (u[k] < 0x20 || u[k] == 0x7f)
            ok = 0;
    if (!ok) {
        *why = "invalid CN (empty, too long or control characters)";
        OPENSSL_free(u);
        return -1;
    }
    *out = p2p__xmalloc((size_t)n + 1);
    memcpy(*out, u, (size_t)n);
    (*out)[n] = '\0';
    OPENSSL_free(u);
    return 0;
}

static const char *gen_type_name(int type)
{
    switch (type) {
    case GEN_OTHERNAME:
        return "otherName";
    case GEN_EMAIL:
        return "email";
    case GEN_DNS:
        return "DNS";
    case GEN_X400:
        return "x400Address";
    case GEN_DIRNAME:
        return "directoryName";
    case GEN_EDIPARTY:
        return "ediPartyName";
    case GEN_URI:
        return "URI";
    case GEN_IPADD:
        return "IP";
    case GEN_RID:
        return "registeredID";
    default:
        return "unknown";
    }
}

/* DNS and IP names of `gens` into the lists. `strict`: any other type is an error. */
static int collect_sans(const GENERAL_NAMES *gens, int strict, strlist *dns, strlist *ips, char **err)
{
    char b1[SHOW_CAP];
    int n = sk_GENERAL_NAME_num(gens);
    if (n > MAX_PARSED_SANS)
        return p2p__fail(err, -EINVAL, "%d subjectAltNames (at most %d are read)", n, MAX_PARSED_SANS);
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        if (gn->type == GEN_DNS) {
            const char *s = (const char *)ASN1_STRING_get0_data(gn->d.dNSName);
            size_t len = (size_t)ASN1_STRING_length(gn->d.dNSName);
            if (!name_syntax_ok(s, len))
                return p2p__fail(err, -EINVAL, "invalid DNS subjectAltName '%s'", show(s, len, b1));
            strlist_push(dns, s, len);
        } else if (gn->type == GEN_IPADD) {
            ipaddr ip;
            char text[INET6_ADDRSTRLEN];
            if (ip_from_bytes(ASN1_STRING_get0_data(gn->d.iPAddress), (size_t)ASN1_STRING_length(gn->d.iPAddress),
                              &ip) != 0)
                return p2p__fail(err, -EINVAL, "IP subjectAltName of %d bytes (4 or 16 expected)",
                            ASN1_STRING_length(gn->d.iPAddress));
            ip_text(&ip, text);
            strlist_push(ips, text, strlen(text));
        } else if (strict) {
            if (gn->type == GEN_EMAIL || gn->type == GEN_URI) {
                const ASN1_IA5STRING *s = gn->type == GEN_EMAIL ? gn->d.rfc822Name : gn->d.uniformResourceIdentifier;
                return p2p__fail(err, -EINVAL, "subjectAltName %s:%s: only DNS and IP names are allowed",
                            gen_type_name(gn->type),
                            show((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), b1));
            }
            return p2p__fail(err, -EINVAL, "subjectAltName of type %s: only DNS and IP names are allowed",
                        gen_type_name(gn->type));
        }
    }
    return 0;
}

/* A GENERAL_NAMES of DNS names then IP names (texts already validated). */
static GENERAL_NAMES *make_sans(const strlist *dns, const strlist *ips)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens)
        return NULL;
    for (size_t i = 0; i < dns->n + ips->n; i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        if (!gn)
            goto fail;
        if (i < dns->n) {
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            if (!s || ASN1_STRING_set(s, dns->v[i], (int)strlen(dns->v[i])) != 1) {
                ASN1_IA5STRING_free(s);
                GENERAL_NAME_free(gn);
                goto fail;
            }
            GENERAL_NAME_set0_value(gn, GEN_DNS, s);
        } else {
            ASN1_OCTET_STRING *o = a2i_IPADDRESS(ips->v[i - dns->n]);
            if (!o) {
                GENERAL_NAME_free(gn);
                goto fail;
            }
            GENERAL_NAME_set0_value(gn, GEN_IPADD, o);
        }
        if (!sk_GENERAL_NAME_push(gens, gn)) {
            GENERAL_NAME_free(gn);
            goto fail;
        }
    }
    return gens;
fail:
    GENERAL_NAMES_free(gens);
    return NULL;
}

/* ---- keys and the CA -------------------------------------------------------------------------- */

static char *key_pem_string(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_secmem()); /* wiped when freed */
    char *s = NULL;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1)
        s = bio_string(b);
    BIO_free(b);
    return s;
}

static char *cert_pem_string(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (b && PEM_write_bio_X509(b, x) == 1)
        s = bio_string(b);
    BIO_free(b);
    return s;
}

/* 0x01 followed by 128 random bits: positive, non-zero, always 17 bytes. */
static int set_random_serial(X509 *x)
{
    unsigned char buf[1 + SERIAL_RANDOM_BYTES];
    buf[0] = 0x01;
    if (RAND_bytes(buf + 1, SERIAL_RANDOM_BYTES) != 1)
        return -1;
    BIGNUM *bn = BN_bin2bn(buf, sizeof(buf), NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = sn && X509_set_serialNumber(x, sn) == 1;
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

int pki_ca_create(const char *cluster_name, long days, char **ca_cert_pem, char **ca_key_pem, char **err)
{
    char b1[SHOW_CAP];
    if (!cluster_name || !ca_cert_pem || !ca_key_pem)
        return p2p__fail(err, -EINVAL, "pki_ca_create: NULL argument");
    size_t nlen = strlen(cluster_name);
    int name_ok = nlen >= 1 && nlen <= PKI_MAX_CLUSTER_NAME;
    for (size_t i = 0; name_ok && i < nlen; i++)
        name_ok = (unsigned char)cluster_name[i] >= 0x20 && (unsigned char)cluster_name[i] < 0x7f;
    if (!name_ok)
        return p2p__fail(err, -EINVAL, "cluster name '%s': must be 1..%d printable ASCII characters",
                    show(cluster_name, nlen, b1), PKI_MAX_CLUSTER_NAME);
    if (days < 1 || days > PKI_MAX_CA_DAYS)
        return p2p__fail(err, -EINVAL, "CA validity of %ld days: must be 1..%d", days, PKI_MAX_CA_DAYS);

    ERR_set_mark();
    int rc = -EIO;
    X509 *cert = NULL;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key) {
        rc = ssl_fail(err, -EIO, "cannot generate the CA key");
        goto out;
    }
    char *cn = p2p__xasprintf("%s CA", cluster_name);
    time_t now = time(NULL);
    cert = X509_new();
    X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;
    int ok =
        cert && X509_set_version(cert, X509_VERSION_3) == 1 && set_random_serial(cert) == 0 &&
        ASN1_TIME_set(X509_getm_notBefore(cert), now - PKI_BACKDATE_S) &&
        ASN1_TIME_set(X509_getm_notAfter(cert), now + (time_t)days * 86400) && X509_set_pubkey(cert, key) == 1 &&
        X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_ASC, (const unsigned char *)"p2pcore", -1, -1,
                                   0) == 1 &&
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1 &&
        X509_set_issuer_name(cert, name) == 1 &&
        add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
        add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
        add_ext(cert, cert, NID_subject_key_identifier, "hash") == 0 && X509_sign(cert, key, EVP_sha256()) > 0;
    free(cn);
    if (!ok) {
        rc = ssl_fail(err, -EIO, "cannot create the CA certificate");
        goto out;
    }
    char *c = cert_pem_string(cert), *k = key_pem_string(key);
    if (!c || !k) {
        free(c);
        pki_secret_free(k);
        rc = ssl_fail(err, -EIO, "cannot encode the CA");
        goto out;
    }
    *ca_cert_pem = c;
    *ca_key_pem = k;
    rc = 0;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_pop_to_mark();
    return rc;
}

int pki_key_create(char **key_pem, char **err)
{
    if (!key_pem)
        return p2p__fail(err, -EINVAL, "pki_key_create: NULL argument");
    ERR_set_mark();
    int rc = 0;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    char *k = key ? key_pem_string(key) : NULL;
    if (!k)
        rc = ssl_fail(err, -EIO, "cannot generate a P-256 key");
    else
        *key_pem = k;
    EVP_PKEY_free(key);
    ERR_pop_to_mark();
    return rc;
}

/* ---- CSRs ------------------------------------------------------------------------------------- */

int pki_csr_create(const char *key_pem, const char *node_id, const char *const *names, size_t n, char **csr_pem,
                   char **err)
{
    char b1[SHOW_CAP];
    if (!key_pem || !node_id || !csr_pem || (n && !names))
        return p2p__fail(err, -EINVAL, "pki_csr_create: NULL argument");
    if (!pki_node_id_valid(node_id))
        return p2p__fail(err, -EINVAL, "node id '%s' is invalid (1..%d characters of A-Z a-z 0-9 . _ -)", SHOWZ(node_id, b1),
                    PKI_MAX_NODE_ID);
    if (n > MAX_PARSED_SANS)
        return p2p__fail(err, -EINVAL, "%zu names: at most %d", n, MAX_PARSED_SANS);

    strlist dns = {0}, ips = {0};
    strlist_push(&dns, node_id, strlen(node_id));
    for (size_t i = 0; i < n; i++) {
        ipaddr ip;
        char text[INET6_ADDRSTRLEN];
        if (!names[i] || !name_syntax_ok(names[i], strlen(names[i]))) {
            strlist_free(&dns);
            strlist_free(&ips);
            return p2p__fail(err, -EINVAL, "name '%s': must be 1..%d printable ASCII characters without spaces",
                        names[i] ? SHOWZ(names[i], b1) : "(null)", MAX_NAME_LEN);
        }
        if (ip_parse(names[i], &ip) == 0) {
            ip_text(&ip, text);
            if (!strlist_has(&ips, text))
                strlist_push(&ips, text, strlen(text));
        } else if (!strlist_has(&dns, names[i])) {
            strlist_push(&dns, names[i], strlen(names[i]));
        }
    }

    ERR_set_mark();
    int rc = -EIO;
    X509_REQ *req = NULL;
    GENERAL_NAMES *gens = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    BIO *out = NULL;
    EVP_PKEY *key = read_key(key_pem);
    if (!is_p256(key)) {
        rc = p2p__fail(err, -EINVAL, "the key is not a readable unencrypted EC P-256 private key");
        goto out;
    }
    req = X509_REQ_new();
    gens = make_sans(&dns, &ips);
    exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext = gens ? X509V3_EXT_i2d(NID_subject_alt_name, 0, gens) : NULL;
    if (!ext || !exts || !sk_X509_EXTENSION_push(exts, ext)) {
        X509_EXTENSION_free(ext);
        rc = ssl_fail(err, -EIO, "cannot encode the subjectAltNames");
        goto out;
    }
    out = BIO_new(BIO_s_mem());
    if (!req || !out || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(req), NID_commonName, MBSTRING_ASC,
                                   (const unsigned char *)node_id, -1, -1, 0) != 1 ||
        X509_REQ_set_pubkey(req, key) != 1 || X509_REQ_add_extensions(req, exts) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 || PEM_write_bio_X509_REQ(out, req) != 1) {
        rc = ssl_fail(err, -EIO, "cannot create the CSR");
        goto out;
    }
    *csr_pem = bio_string(out);
    rc = 0;
out:
    BIO_free(out);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    strlist_free(&dns);
    strlist_free(&ips);
    ERR_pop_to_mark();
    return rc;
}

/* Decodes and verifies a CSR; on success *req_out (if non-NULL) keeps the object. */
static int csr_parse(const char *pem, size_t len, pki_csr_info *out, X509_REQ **req_out, char **err)
{
    const char *why = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    const char *pos = pem;
    if (len > PKI_MAX_CSR_PEM)
        return p2p__fail(err, -EINVAL, "CSR of %zu bytes: at most %d", len, PKI_MAX_CSR_PEM);
    if (pem_block(&pos, pem + len, "CERTIFICATE REQUEST", &der, &der_len, &why) != 0)
        return p2p__fail(err, -EINVAL, "CSR: %s", why);
    if (skip_space(pos, pem + len) != pem + len) {
        OPENSSL_free(der);
        return p2p__fail(err, -EINVAL, "CSR: data after the CSR");
    }
    const unsigned char *q = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &q, der_len);
    int whole = req && q == der + der_len;
    OPENSSL_free(der);
    if (!whole) {
        X509_REQ_free(req);
        return p2p__fail(err, -EINVAL, "CSR: malformed");
    }

    int rc = -EINVAL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *gens = NULL;
    strlist dns = {0}, ips = {0};
    char *cn = NULL;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    int sig_nid = X509_REQ_get_signature_nid(req);
    if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
        rc = p2p__fail(err, -EINVAL, "CSR: version %ld (only version 1 exists)", X509_REQ_get_version(req) + 1);
        goto out;
    }
    if (!is_p256(pub)) {
        rc = p2p__fail(err, -EINVAL, "CSR: the key must be EC P-256");
        goto out;
    }
    if (sig_nid != NID_ecdsa_with_SHA256 && sig_nid != NID_ecdsa_with_SHA384 && sig_nid != NID_ecdsa_with_SHA512) {
        rc = p2p__fail(err, -EINVAL, "CSR: signature algorithm %s not allowed (ECDSA with SHA-256/384/512)",
                  sig_nid == NID_undef ? "unknown" : OBJ_nid2sn(sig_nid));
        goto out;
    }
    if (X509_REQ_verify(req, pub) != 1) {
        rc = p2p__fail(err, -EBADMSG, "CSR: the signature does not verify");
        goto out;
    }
    if (subject_cn(X509_REQ_get_subject_name(req), &cn, &why) != 0) {
        rc = p2p__fail(err, -EINVAL, "CSR: %s", why);
        goto out;
    }
    exts = X509_REQ_get_extensions(req);
    int crit = -1;
    gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL) : NULL;
    if (!gens && crit == -2) {
        rc = p2p__fail(err, -EINVAL, "CSR: more than one subjectAltName extension");
        goto out;
    }
    if (!gens && crit >= 0) {
        rc = p2p__fail(err, -EINVAL, "CSR: malformed subjectAltName extension");
        goto out;
    }
    char *e2 = NULL;
    if (gens && collect_sans(gens, 1, &dns, &ips, &e2) != 0) {
        rc = p2p__fail(err, -EINVAL, "CSR: %s", e2);
        free(e2);
        goto out;
    }
    out->node_id = cn;
    out->dns = dns.v;
    out->n_dns = dns.n;
    out->ips = ips.v;
    out->n_ips = ips.n;
    cn = NULL;
    dns = (strlist){0};
    ips = (strlist){0};
    if (req_out) {
        *req_out = req;
        req = NULL;
    }
    rc = 0;
out:
    free(cn);
    strlist_free(&dns);
    strlist_free(&ips);
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return rc;
}

int pki_csr_parse(const char *csr_pem, size_t len, pki_csr_info *out, char **err)
{
    if (!csr_pem || !out)
        return p2p__fail(err, -EINVAL, "pki_csr_parse: NULL argument");
    ERR_set_mark();
    int rc = csr_parse(csr_pem, len, out, NULL, err);
    ERR_pop_to_mark();
    return rc;
}

/* The name policy (pki.h). `request_ip` NULL skips the rules about the request's
 * source address (signing, which does not know it). */
static int check_names(const pki_csr_info *csr, const char *claimed, const ipaddr *request_ip, char **err)
{
    char b1[SHOW_CAP], b2[SHOW_CAP];
    if (!pki_node_id_valid(claimed))
        return p2p__fail(err, -EACCES, "node id '%s' is invalid (1..%d characters of A-Z a-z 0-9 . _ -)", SHOWZ(claimed, b1),
                    PKI_MAX_NODE_ID);
    if (!csr->node_id || strcmp(csr->node_id, claimed) != 0)
        return p2p__fail(err, -EACCES, "CSR CN '%s' does not match the node id '%s'",
                    csr->node_id ? SHOWZ(csr->node_id, b1) : "", SHOWZ(claimed, b2));
    if (csr->n_dns + csr->n_ips > PKI_MAX_SANS)
        return p2p__fail(err, -EACCES, "CSR has %zu subjectAltNames: at most %d", csr->n_dns + csr->n_ips, PKI_MAX_SANS);
    for (size_t i = 0; i < csr->n_dns; i++) {
        const char *d = csr->dns[i];
        if (strchr(d, '*'))
            return p2p__fail(err, -EACCES, "DNS:%s: wildcard names are not allowed", SHOWZ(d, b1));
        if (strcmp(d, claimed) != 0 && strcmp(d, "localhost") != 0)
            return p2p__fail(err, -EACCES, "DNS:%s is not allowed (only the node id '%s' or 'localhost')", SHOWZ(d, b1),
                        claimed);
        if (request_ip && !ip_loopback(request_ip) && strcmp(d, "localhost") == 0)
            return p2p__fail(err, -EACCES,
                             "DNS:localhost is not allowed: the request did not come from this host's loopback");
    }
    int found = 0;
    for (size_t i = 0; i < csr->n_ips; i++) {
        ipaddr ip;
        const char *why;
        if (ip_parse(csr->ips[i], &ip) != 0)
            return p2p__fail(err, -EACCES, "IP:%s is not an IP address", SHOWZ(csr->ips[i], b1));
        if ((why = ip_not_host(&ip)) != NULL)
            return p2p__fail(err, -EACCES, "IP:%s is not a host address: %s", csr->ips[i], why);
        if (request_ip && !ip_loopback(request_ip) && ip_loopback(&ip))
            return p2p__fail(err, -EACCES, "IP:%s is not allowed: loopback, and the request did not come from loopback",
                             csr->ips[i]);
        if (request_ip && ip_equal(&ip, request_ip))
            found = 1;
    }
    if (request_ip && !found) {
        char text[INET6_ADDRSTRLEN];
        ip_text(request_ip, text);
        return p2p__fail(err, -EACCES, "the request came from %s, which is not among the CSR's IP subjectAltNames", text);
    }
    return 0;
}

int pki_csr_check(const pki_csr_info *csr, const char *claimed_node_id, const char *request_ip, char **err)
{
    char b1[SHOW_CAP];
    if (!csr || !claimed_node_id || !request_ip)
        return p2p__fail(err, -EINVAL, "pki_csr_check: NULL argument");
    ipaddr src;
    if (ip_parse(request_ip, &src) != 0)
        return p2p__fail(err, -EINVAL, "request address '%s' is not an IP address", SHOWZ(request_ip, b1));
    if (ip_v4_mapped(&src)) { /* ::ffff:a.b.c.d from a dual-stack socket is a.b.c.d */
        unsigned char v4[4];
        memcpy(v4, src.b + 12, 4);
        ip_from_bytes(v4, 4, &src);
    }
    return check_names(csr, claimed_node_id, &src, err);
}

/* ---- signing ---------------------------------------------------------------------------------- */

static X509 *issue(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const pki_csr_info *info, const char *role, time_t now,
                   time_t not_after)
{
    strlist dns = {0}, ips = {0};
    strlist_push(&dns, info->node_id, strlen(info->node_id));
    for (size_t i = 0; i < info->n_dns; i++)
        if (!strlist_has(&dns, info->dns[i]))
            strlist_push(&dns, info->dns[i], strlen(info->dns[i]));
    for (size_t i = 0; i < info->n_ips; i++)
        if (!strlist_has(&ips, info->ips[i]))
            strlist_push(&ips, info->ips[i], strlen(info->ips[i]));
    GENERAL_NAMES *gens = make_sans(&dns, &ips);
    strlist_free(&dns);
    strlist_free(&ips);

    X509 *cert = X509_new();
    int ok = gens && cert && X509_set_version(cert, X509_VERSION_3) == 1 && set_random_serial(cert) == 0 &&
             ASN1_TIME_set(X509_getm_notBefore(cert), now - PKI_BACKDATE_S) &&
             ASN1_TIME_set(X509_getm_notAfter(cert), not_after) && X509_set_pubkey(cert, pub) == 1 &&
             X509_NAME_add_entry_by_NID(X509_get_subject_name(cert), NID_commonName, MBSTRING_ASC,
                                        (const unsigned char *)info->node_id, -1, -1, 0) == 1 &&
             (!role || X509_NAME_add_entry_by_NID(X509_get_subject_name(cert), NID_organizationalUnitName,
                                                  MBSTRING_ASC, (const unsigned char *)role, -1, -1, 0) == 1) &&
             X509_set_issuer_name(cert, X509_get_subject_name(ca)) == 1 &&
             add_ext(cert, ca, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(cert, ca, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(cert, ca, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
             add_ext(cert, ca, NID_subject_key_identifier, "hash") == 0 &&
             add_ext(cert, ca, NID_authority_key_identifier, "keyid:always") == 0 &&
             X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1 &&
             X509_sign(cert, ca_key, EVP_sha256()) > 0;
    GENERAL_NAMES_free(gens);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static int sign_csr(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem, long lifetime_seconds,
                    const char *role, char **cert_pem, char **err)
{
    char b1[SHOW_CAP];
    if (!ca_cert_pem || !ca_key_pem || !csr_pem || !cert_pem)
        return p2p__fail(err, -EINVAL, "pki_sign_csr: NULL argument");
    if (role && !pki_role_valid(role))
        return p2p__fail(err, -EINVAL, "role '%s' is invalid (1..%d characters of A-Z a-z 0-9 . _ -)", SHOWZ(role, b1),
                         PKI_MAX_ROLE);
    if (lifetime_seconds < 1 || lifetime_seconds > PKI_MAX_CERT_LIFETIME_S)
        return p2p__fail(err, -EINVAL, "certificate lifetime of %ld s: must be 1..%ld", lifetime_seconds,
                    PKI_MAX_CERT_LIFETIME_S);
    ERR_set_mark();
    int rc = -EINVAL;
    const char *why = NULL;
    pki_csr_info info = {0};
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    EVP_PKEY *ca_key = NULL;
    X509 *ca = read_one_cert(ca_cert_pem, strlen(ca_cert_pem), &why);
    if (!ca) {
        rc = p2p__fail(err, -EINVAL, "CA certificate: %s", why);
        goto out;
    }
    ca_key = read_key(ca_key_pem);
    if (!ca_key) {
        rc = p2p__fail(err, -EINVAL, "CA key: not a readable unencrypted private key");
        goto out;
    }
    if (X509_check_ca(ca) < 1) {
        rc = p2p__fail(err, -EINVAL, "the CA certificate is not a CA");
        goto out;
    }
    if (X509_check_private_key(ca, ca_key) != 1) {
        rc = p2p__fail(err, -EINVAL, "the CA key does not belong to the CA certificate");
        goto out;
    }
    time_t now = time(NULL);
    int64_t ca_nb, ca_na;
    if (asn1_time_unix(X509_get0_notBefore(ca), &ca_nb) != 0 || asn1_time_unix(X509_get0_notAfter(ca), &ca_na) != 0) {
        rc = p2p__fail(err, -EINVAL, "the CA certificate has unreadable validity times");
        goto out;
    }
    if ((int64_t)now < ca_nb || (int64_t)now >= ca_na) {
        rc = p2p__fail(err, -EKEYEXPIRED, "the CA certificate is not valid now (expired or not yet valid)");
        goto out;
    }
    if ((rc = csr_parse(csr_pem, strlen(csr_pem), &info, &req, err)) != 0)
        goto out;
    if ((rc = check_names(&info, info.node_id, NULL, err)) != 0)
        goto out;
    int64_t not_after = (int64_t)now + lifetime_seconds;
    if (not_after > ca_na)
        not_after = ca_na;
    cert = issue(ca, ca_key, X509_REQ_get0_pubkey(req), &info, role, now, (time_t)not_after);
    char *pem = cert ? cert_pem_string(cert) : NULL;
    if (!pem) {
        rc = ssl_fail(err, -EIO, "cannot issue the certificate");
        goto out;
    }
    *cert_pem = pem;
    rc = 0;
out:
    pki_csr_info_free(&info);
    X509_REQ_free(req);
    X509_free(cert);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    ERR_pop_to_mark();
    return rc;
}

int pki_sign_csr(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem, long lifetime_seconds,
                 char **cert_pem, char **err)
{
    return sign_csr(ca_cert_pem, ca_key_pem, csr_pem, lifetime_seconds, NULL, cert_pem, err);
}

int pki_sign_node_csr(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem, long lifetime_seconds,
                      const char *role, char **cert_pem, char **err)
{
    if (!role)
        return p2p__fail(err, -EINVAL, "pki_sign_node_csr: NULL role");
    return sign_csr(ca_cert_pem, ca_key_pem, csr_pem, lifetime_seconds, role, cert_pem, err);
}

/* ---- certificates ----------------------------------------------------------------------------- */

int p2p__pki_cert_role(const X509 *cert, char *out, size_t cap)
{
    if (!cert || !out)
        return -EINVAL;
    const X509_NAME *nm = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(nm, NID_organizationalUnitName, -1);
    if (i < 0)
        return -ENOENT;
    if (X509_NAME_get_index_by_NID(nm, NID_organizationalUnitName, i) >= 0)
        return -EINVAL;
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i));
    int t = ASN1_STRING_type(v);
    const unsigned char *d = ASN1_STRING_get0_data(v);
    int n = ASN1_STRING_length(v);
    /* our roles are ASCII: accept the string types that hold ASCII as is */
    if ((t != V_ASN1_UTF8STRING && t != V_ASN1_PRINTABLESTRING && t != V_ASN1_IA5STRING) || n < 1 ||
        n > PKI_MAX_ROLE || !d)
        return -EINVAL;
    char buf[PKI_MAX_ROLE + 1];
    memcpy(buf, d, (size_t)n);
    buf[n] = '\0';
    if (strlen(buf) != (size_t)n || !pki_role_valid(buf))
        return -EINVAL;
    if ((size_t)n + 1 > cap)
        return -ENOSPC;
    memcpy(out, buf, (size_t)n + 1);
    return 0;
}

static void hex_of(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int p2p__pki_cert_fingerprint(const X509 *cert, char out[PKI_FINGERPRINT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!cert || !out)
        return -EINVAL;
    ERR_set_mark();
    int ok = X509_digest(cert, EVP_sha256(), md, &n) == 1 && n == PKI_FINGERPRINT_LEN / 2;
    ERR_pop_to_mark();
    if (!ok)
        return -EINVAL;
    hex_of(md, n, out);
    return 0;
}

int pki_cert_fingerprint(const char *pem, char out[PKI_FINGERPRINT_LEN + 1], char *serial_out, size_t serial_cap)
{
    const char *why = NULL;
    if (!pem || !out)
        return -EINVAL;
    ERR_set_mark();
    X509 *x = read_one_cert(pem, strlen(pem), &why);
    int rc = x ? p2p__pki_cert_fingerprint(x, out) : -EINVAL;
    if (rc == 0 && serial_out) {
        const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
        int n = ASN1_STRING_length(sn);
        if (n < 1 || n > 20 || serial_cap < 2 * (size_t)n + 1)
            rc = -EINVAL;
        else
            hex_of(ASN1_STRING_get0_data(sn), (size_t)n, serial_out);
    }
    X509_free(x);
    ERR_pop_to_mark();
    return rc;
}

int pki_cert_parse(const char *pem, size_t len, pki_cert_info *out, char **err)
{
    if (!pem || !out)
        return p2p__fail(err, -EINVAL, "pki_cert_parse: NULL argument");
    ERR_set_mark();
    int rc = -EINVAL;
    const char *why = NULL;
    char *cn = NULL, *e2 = NULL;
    strlist dns = {0}, ips = {0};
    GENERAL_NAMES *gens = NULL;
    int64_t nb, na;
    X509 *x = read_one_cert(pem, len, &why);
    if (!x) {
        rc = p2p__fail(err, -EINVAL, "certificate: %s", why);
        goto out;
    }
    if (subject_cn(X509_get_subject_name(x), &cn, &why) != 0) {
        rc = p2p__fail(err, -EINVAL, "certificate: %s", why);
        goto out;
    }
    if (asn1_time_unix(X509_get0_notBefore(x), &nb) != 0 || asn1_time_unix(X509_get0_notAfter(x), &na) != 0) {
        rc = p2p__fail(err, -EINVAL, "certificate: unreadable validity times");
        goto out;
    }
    int crit = -1;
    gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (!gens && crit != -1) {
        rc = p2p__fail(err, -EINVAL, "certificate: %s subjectAltName extension", crit == -2 ? "more than one" : "malformed");
        goto out;
    }
    if (gens && collect_sans(gens, 0, &dns, &ips, &e2) != 0) {
        rc = p2p__fail(err, -EINVAL, "certificate: %s", e2);
        free(e2);
        goto out;
    }
    char role[PKI_MAX_ROLE + 1];
    out->role = p2p__pki_cert_role(x, role, sizeof role) == 0 ? p2p__xstrdup(role) : NULL;
    out->node_id = cn;
    out->dns = dns.v;
    out->n_dns = dns.n;
    out->ips = ips.v;
    out->n_ips = ips.n;
    out->not_before = nb;
    out->not_after = na;
    cn = NULL;
    dns = (strlist){0};
    ips = (strlist){0};
    rc = 0;
out:
    free(cn);
    strlist_free(&dns);
    strlist_free(&ips);
    GENERAL_NAMES_free(gens);
    X509_free(x);
    ERR_pop_to_mark();
    return rc;
}

int pki_cert_verify_at(const char *cert_pem, const char *ca_pem, int64_t now, char **err)
{
    if (!cert_pem || !ca_pem)
        return p2p__fail(err, -EINVAL, "pki_cert_verify: NULL argument");
    if (now < 0 || now > 253402300799LL)
        return p2p__fail(err, -EINVAL, "pki_cert_verify: time %lld out of range", (long long)now);
    ERR_set_mark();
    int rc = -EINVAL;
    const char *why = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *cas = NULL;
    X509 *leaf = read_one_cert(cert_pem, strlen(cert_pem), &why);
    if (!leaf) {
        rc = p2p__fail(err, -EINVAL, "certificate: %s", why);
        goto out;
    }
    cas = read_cert_bundle(ca_pem, strlen(ca_pem), &why);
    if (!cas) {
        rc = p2p__fail(err, -EINVAL, "CA certificate: %s", why);
        goto out;
    }
    if (X509_check_ca(leaf) != 0) {
        rc = p2p__fail(err, -EACCES, "the certificate is a CA certificate, not a node certificate");
        goto out;
    }
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (!store || !ctx) {
        rc = ssl_fail(err, -EIO, "cannot set up verification");
        goto out;
    }
    for (int i = 0; i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        if (X509_check_ca(ca) < 1) {
            rc = p2p__fail(err, -EINVAL, "CA certificate %d of the bundle is not a CA", i + 1);
            goto out;
        }
        if (X509_STORE_add_cert(store, ca) != 1) {
            rc = ssl_fail(err, -EIO, "cannot load the CA certificate");
            goto out;
        }
    }
    if (X509_STORE_CTX_init(ctx, store, leaf, NULL) != 1) {
        rc = ssl_fail(err, -EIO, "cannot set up verification");
        goto out;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, (time_t)now);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
    if (X509_verify_cert(ctx) == 1) {
        rc = 0;
        goto out;
    }
    int code = X509_STORE_CTX_get_error(ctx), depth = X509_STORE_CTX_get_error_depth(ctx);
    rc = code == X509_V_ERR_CERT_HAS_EXPIRED ? -EKEYEXPIRED : -EACCES;
    rc = p2p__fail(err, rc, "%s: %s", depth == 0 ? "certificate" : "CA certificate", X509_verify_cert_error_string(code));
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(cas, X509_free);
    X509_free(leaf);
    ERR_pop_to_mark();
    return rc;
}

int pki_cert_verify(const char *cert_pem, const char *ca_pem, char **err)
{
    return pki_cert_verify_at(cert_pem, ca_pem, (int64_t)time(NULL), err);
}

int pki_cert_needs_renewal(const pki_cert_info *c, int64_t now, int64_t renew_before_s, const char *const *current_ips,
                           size_t n)
{
    if (!c || now < 0 || renew_before_s < 0 || (n && !current_ips))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        ipaddr want;
        if (!current_ips[i] || ip_parse(current_ips[i], &want) != 0)
            return -EINVAL;
    }
    /* now >= not_after - renew_before, written so it cannot overflow */
    if (now >= c->not_after || c->not_after - now <= renew_before_s)
        return 1;
    for (size_t i = 0; i < n; i++) {
        ipaddr want;
        ip_parse(current_ips[i], &want);
        if (ip_unspecified(&want))
            continue;
        int held = 0;
        for (size_t k = 0; k < c->n_ips && !held; k++) {
            ipaddr have;
            held = c->ips[k] && ip_parse(c->ips[k], &have) == 0 && ip_equal(&have, &want);
        }
        if (!held)
            return 1;
    }
    return 0;
}

int pki_key_matches_cert(const char *key_pem, const char *cert_pem)
{
    if (!key_pem || !cert_pem)
        return -EINVAL;
    ERR_set_mark();
    const char *why = NULL;
    EVP_PKEY *key = read_key(key_pem);
    X509 *x = read_one_cert(cert_pem, strlen(cert_pem), &why);
    int rc = !key || !x ? -EINVAL : EVP_PKEY_eq(X509_get0_pubkey(x), key) == 1;
    EVP_PKEY_free(key);
    X509_free(x);
    ERR_pop_to_mark();
    return rc;
}

/* ---- freeing ---------------------------------------------------------------------------------- */

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void pki_csr_info_free(pki_csr_info *info)
{
    if (!info)
        return;
    free(info->node_id);
    free_list(info->dns, info->n_dns);
    free_list(info->ips, info->n_ips);
    memset(info, 0, sizeof(*info));
}

void pki_cert_info_free(pki_cert_info *info)
{
    if (!info)
        return;
    free(info->node_id);
    free(info->role);
    free_list(info->dns, info->n_dns);
    free_list(info->ips, info->n_ips);
    memset(info, 0, sizeof(*info));
}

void pki_secret_free(char *pem)
{
    if (!pem)
        return;
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
}
