/*
 * test_pki.c — unit tests for src/pki/pki.c: the enrollment path end to end
 * (CA, key, CSR, parse, check, sign, parse, verify), the certificate profile as
 * OpenSSL sees it, the name policy's rejection table, malformed and tampered
 * CSRs, foreign CAs, expiry and renewal.
 *
 * Also the cert-request body parser (src/pki/certreq.c): a real request, the
 * field-by-field rejection table, and the answer's shape.
 *
 * CSRs the module would never make (RSA, other curves, URI names, CA requests,
 * no CN) are assembled here with OpenSSL directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pki/certreq.h"
#include "pki/pki.h"

#define YEAR 31536000L
#define DAY 86400L

typedef struct fixture {
    char *ca_cert, *ca_key;   /* the cluster CA */
    char *ca2_cert, *ca2_key; /* a foreign CA */
    char *key;                /* a worker's key */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;
    if (!f || pki_ca_create("test-cluster", PKI_DEFAULT_CA_DAYS, &f->ca_cert, &f->ca_key, &err) != 0 ||
        pki_ca_create("other-cluster", 30, &f->ca2_cert, &f->ca2_key, &err) != 0 ||
        pki_key_create(&f->key, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err ? err : "?");
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    free(f->ca_cert);
    pki_secret_free(f->ca_key);
    free(f->ca2_cert);
    pki_secret_free(f->ca2_key);
    pki_secret_free(f->key);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static char *csr_for(const char *key, const char *node, const char *const *names, size_t n)
{
    char *csr = NULL, *err = NULL;
    int rc = pki_csr_create(key, node, names, n, &csr, &err);
    if (rc != 0)
        fprintf(stderr, "pki_csr_create: %s\n", err);
    assert_int_equal(rc, 0);
    assert_null(err);
    return csr;
}

static X509 *load_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

/* PEM of a CSR built directly with OpenSSL: `cn` NULL for none, `san` an OpenSSL
 * config string or NULL, optionally asking for CA:TRUE. */
static char *raw_csr(EVP_PKEY *key, const char *cn, const char *san, int ask_ca, const EVP_MD *md)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_version(req, 0), 1);
    if (cn)
        assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                                    (const unsigned char *)cn, -1, -1, 0),
                         1);
    else
        assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "O", MBSTRING_ASC,
                                                    (const unsigned char *)"nobody", -1, -1, 0),
                         1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (san)
        sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san));
    if (ask_ca)
        sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE"));
    if (sk_X509_EXTENSION_num(exts))
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_true(X509_REQ_sign(req, key, md) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)len);
    BIO_free(b);
    X509_REQ_free(req);
    return s;
}

static EVP_PKEY *load_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

/* PEM of a CSR's DER after `edit` changed it. */
static char *csr_edit_der(const char *pem, void (*edit)(unsigned char *der, int len))
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(req);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    assert_true(len > 0);
    edit(der, len);
    BIO *o = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio(o, "CERTIFICATE REQUEST", "", der, len) > 0);
    OPENSSL_free(der);
    char *data;
    long olen = BIO_get_mem_data(o, &data);
    char *s = strndup(data, (size_t)olen);
    BIO_free(o);
    return s;
}

static void flip_cn_byte(unsigned char *der, int len)
{
    /* the first "worker-1" is the subject CN (the SAN comes later): make it "xorker-1" */
    for (int i = 0; i + 8 <= len; i++)
        if (!memcmp(der + i, "worker-1", 8)) {
            der[i] = 'x';
            return;
        }
    fail_msg("CN not found in DER");
}

static void flip_last_byte(unsigned char *der, int len)
{
    der[len - 1] ^= 0x01; /* inside the ECDSA signature's s */
}

static void expect_parse_fail(const char *pem, size_t len, int code, const char *needle)
{
    pki_csr_info info = {0};
    char *err = NULL;
    int rc = pki_csr_parse(pem, len, &info, &err);
    if (rc != code)
        fprintf(stderr, "expected %d, got %d: %s\n", code, rc, err ? err : "");
    assert_int_equal(rc, code);
    assert_non_null(err);
    if (needle && !strstr(err, needle))
        fail_msg("message '%s' lacks '%s'", err, needle);
    assert_null(info.node_id);
    free(err);
    assert_int_equal(ERR_peek_error(), 0); /* the thread's OpenSSL error queue is left clean */
}

/* ---- the happy path ------------------------------------------------------ */

static void test_enrollment_flow(void **state)
{
    fixture *f = *state;
    const char *names[] = {"127.0.0.1", "10.1.2.3", "localhost", "10.1.2.3", "worker-1", "::1"};
    char *csr = csr_for(f->key, "worker-1", names, 6);
    assert_non_null(strstr(csr, "-----BEGIN CERTIFICATE REQUEST-----"));

    pki_csr_info info = {0};
    char *err = NULL;
    assert_int_equal(pki_csr_parse(csr, strlen(csr), &info, &err), 0);
    assert_string_equal(info.node_id, "worker-1");
    assert_int_equal(info.n_dns, 2); /* duplicates dropped by csr_create */
    assert_string_equal(info.dns[0], "worker-1");
    assert_string_equal(info.dns[1], "localhost");
    assert_int_equal(info.n_ips, 3);
    assert_string_equal(info.ips[0], "127.0.0.1");
    assert_string_equal(info.ips[1], "10.1.2.3");
    assert_string_equal(info.ips[2], "::1");
    /* loopback names only for a request from loopback (a node on this host) */
    assert_int_equal(pki_csr_check(&info, "worker-1", "10.1.2.3", &err), -EACCES);
    assert_non_null(strstr(err, "localhost"));
    free(err);
    err = NULL;
    assert_int_equal(pki_csr_check(&info, "worker-1", "127.0.0.1", &err), 0);
    assert_int_equal(pki_csr_check(&info, "worker-1", "::ffff:127.0.0.1", &err), 0); /* dual-stack socket */
    assert_int_equal(pki_csr_check(&info, "worker-1", "0:0:0:0:0:0:0:1", &err), 0);
    assert_null(err);
    pki_csr_info_free(&info);
    pki_csr_info_free(&info); /* zeroed: harmless */

    time_t before = time(NULL);
    char *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &cert, &err), 0);
    time_t after = time(NULL);
    assert_null(err);

    pki_cert_info ci = {0};
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &ci, &err), 0);
    assert_string_equal(ci.node_id, "worker-1");
    assert_int_equal(ci.n_dns, 2);
    assert_string_equal(ci.dns[0], "worker-1");
    assert_string_equal(ci.dns[1], "localhost");
    assert_int_equal(ci.n_ips, 3);
    assert_string_equal(ci.ips[1], "10.1.2.3");
    assert_true(ci.not_before >= before - PKI_BACKDATE_S && ci.not_before <= after - PKI_BACKDATE_S);
    assert_true(ci.not_after >= before + YEAR && ci.not_after <= after + YEAR);
    pki_cert_info_free(&ci);

    assert_int_equal(pki_cert_verify(cert, f->ca_cert, &err), 0);
    assert_null(err);
    assert_int_equal(pki_key_matches_cert(f->key, cert), 1);
    char *other = NULL;
    assert_int_equal(pki_key_create(&other, NULL), 0);
    assert_int_equal(pki_key_matches_cert(other, cert), 0);
    assert_int_equal(pki_key_matches_cert("not a key", cert), -EINVAL);
    assert_int_equal(pki_key_matches_cert(other, "not a cert"), -EINVAL);
    pki_secret_free(other);
    assert_int_equal(ERR_peek_error(), 0);

    free(csr);
    free(cert);
}

/* The certificate profile, read back with OpenSSL. */
static void test_certificate_profile(void **state)
{
    fixture *f = *state;
    const char *names[] = {"192.0.2.10"};
    char *csr = csr_for(f->key, "node-a", names, 1), *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &cert, NULL), 0);
    X509 *x = load_x509(cert), *ca = load_x509(f->ca_cert);

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(X509_check_issued(ca, x), X509_V_OK);
    /* serial: 0x01 then 128 random bits */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    assert_int_equal(ASN1_STRING_length(sn), 17);
    assert_int_equal(ASN1_STRING_get0_data(sn)[0], 0x01);
    /* basicConstraints CA:FALSE critical, keyUsage digitalSignature critical, EKU both */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(bc->ca, 0);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    int ku_idx = X509_get_ext_by_NID(x, NID_key_usage, -1);
    assert_true(ku_idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(x, ku_idx)), 1);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(ca)), 0);
    /* names as a TLS client checks them; no loopback unless asked */
    assert_int_equal(X509_check_host(x, "node-a", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "192.0.2.10", 0), 1);
    assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 0);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 0);
    /* subject is CN only */
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 1);
    /* the CA */
    assert_true(X509_check_ca(ca) >= 1);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    EVP_PKEY *cak = X509_get0_pubkey(ca);
    assert_true(EVP_PKEY_is_a(cak, "EC"));
    char group[32];
    size_t glen;
    assert_int_equal(EVP_PKEY_get_group_name(cak, group, sizeof(group), &glen), 1);
    assert_string_equal(group, "prime256v1");
    pki_cert_info cai = {0};
    assert_int_equal(pki_cert_parse(f->ca_cert, strlen(f->ca_cert), &cai, NULL), 0);
    assert_string_equal(cai.node_id, "test-cluster CA");
    assert_true(cai.not_after - cai.not_before >= PKI_DEFAULT_CA_DAYS * DAY);
    pki_cert_info_free(&cai);

    X509_free(x);
    X509_free(ca);
    free(csr);
    free(cert);
}

/* ---- the name policy ----------------------------------------------------- */

typedef struct reject_case {
    const char *node;    /* CN in the CSR */
    const char *claimed; /* node id the request claims */
    const char *src;     /* request address */
    const char *names[20];
    size_t n;
    const char *needle; /* must appear in the message */
} reject_case;

static void test_check_rejections(void **state)
{
    fixture *f = *state;
    static const reject_case cases[] = {
        {"worker-1", "worker-2", "10.0.0.1", {"10.0.0.1"}, 1, "'worker-1' does not match the node id 'worker-2'"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "evil.example.com"}, 2, "DNS:evil.example.com"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "*.example.com"}, 2, "DNS:*.example.com: wildcard"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "*"}, 2, "DNS:*: wildcard"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "WORKER-1"}, 2, "DNS:WORKER-1"},
        {"worker-1", "worker-1", "10.0.0.9", {"10.0.0.1"}, 1, "came from 10.0.0.9"},
        {"worker-1", "worker-1", "127.0.0.1", {"localhost"}, 1, "came from 127.0.0.1"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "localhost"}, 2, "DNS:localhost is not allowed"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "127.0.0.1"}, 2, "IP:127.0.0.1 is not allowed: loopback"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "127.9.9.9"}, 2, "IP:127.9.9.9 is not allowed"},
        {"worker-1", "worker-1", "fd00::2", {"fd00::2", "::1"}, 2, "IP:::1 is not allowed: loopback"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "0.0.0.0"}, 2, "IP:0.0.0.0"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "::"}, 2, "IP:::"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "224.0.0.1"}, 2, "IP:224.0.0.1 is not a host address"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "255.255.255.255"}, 2, "broadcast"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "ff02::1"}, 2, "IP:ff02::1"},
        {"worker-1", "worker-1", "10.0.0.1", {"10.0.0.1", "::ffff:10.0.0.1"}, 2, "IPv4-mapped"},
        {"worker-1", "bad id", "10.0.0.1", {"10.0.0.1"}, 1, "node id 'bad id' is invalid"},
        {"worker-1", "", "10.0.0.1", {"10.0.0.1"}, 1, "node id '' is invalid"},
        {"worker-1",
         "a123456789b123456789c123456789d123456789e123456789f123456789abcd",
         "10.0.0.1",
         {"10.0.0.1"},
         1,
         "is invalid"},
        {"worker-1",
         "worker-1",
         "10.0.0.1",
         {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9",
          "10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "10.0.0.15", "10.0.0.16"},
         16,
         "17 subjectAltNames"}, /* 16 IPs + DNS:<node id> */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        const reject_case *c = &cases[i];
        char *csr = csr_for(f->key, c->node, c->names, c->n);
        pki_csr_info info = {0};
        char *err = NULL;
        assert_int_equal(pki_csr_parse(csr, strlen(csr), &info, &err), 0);
        int rc = pki_csr_check(&info, c->claimed, c->src, &err);
        if (rc != -EACCES || !err || !strstr(err, c->needle))
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err ? err : "(none)", c->needle);
        free(err);
        pki_csr_info_free(&info);
        free(csr);
    }

    /* 15 IPs + the node id: exactly at the limit, accepted */
    const char *ok_names[15] = {"10.0.0.1",  "10.0.0.2",  "10.0.0.3",  "10.0.0.4",  "10.0.0.5",
                                "10.0.0.6",  "10.0.0.7",  "10.0.0.8",  "10.0.0.9",  "10.0.0.10",
                                "10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14", "10.0.0.15"};
    char *csr = csr_for(f->key, "worker-1", ok_names, 15);
    pki_csr_info info = {0};
    assert_int_equal(pki_csr_parse(csr, strlen(csr), &info, NULL), 0);
    assert_int_equal(pki_csr_check(&info, "worker-1", "10.0.0.15", NULL), 0);
    /* caller errors */
    char *err = NULL;
    assert_int_equal(pki_csr_check(&info, "worker-1", "not-an-ip", &err), -EINVAL);
    assert_non_null(strstr(err, "not-an-ip"));
    free(err);
    assert_int_equal(pki_csr_check(&info, "worker-1", NULL, NULL), -EINVAL);
    assert_int_equal(pki_csr_check(NULL, "worker-1", "10.0.0.1", NULL), -EINVAL);
    pki_csr_info_free(&info);
    free(csr);
}

/* pki_sign_csr applies the policy itself: a CSR that skipped the check is refused. */
static void test_sign_rechecks(void **state)
{
    fixture *f = *state;
    const char *wild[] = {"10.0.0.1", "*.cluster.local"};
    const char *foreign[] = {"10.0.0.1", "coordinator-1"};
    const char *bad_ip[] = {"0.0.0.0"};
    const char *const *lists[] = {wild, foreign, bad_ip};
    size_t counts[] = {2, 2, 1};
    const char *needles[] = {"*.cluster.local", "DNS:coordinator-1", "IP:0.0.0.0"};
    for (size_t i = 0; i < 3; i++) {
        char *csr = csr_for(f->key, "worker-1", lists[i], counts[i]), *cert = NULL, *err = NULL;
        assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &cert, &err), -EACCES);
        assert_null(cert);
        assert_non_null(strstr(err, needles[i]));
        free(err);
        free(csr);
    }
    /* wrong CA key, non-CA "CA", bad lifetimes */
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *cert = NULL, *err = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca2_key, csr, YEAR, &cert, &err), -EINVAL);
    assert_non_null(strstr(err, "does not belong"));
    free(err);
    err = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, 0, &cert, &err), -EINVAL);
    free(err);
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, PKI_MAX_CERT_LIFETIME_S + 1, &cert, NULL), -EINVAL);
    char *leaf = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &leaf, NULL), 0);
    err = NULL;
    assert_int_equal(pki_sign_csr(leaf, f->key, csr, YEAR, &cert, &err), -EINVAL); /* a node cert is no CA */
    assert_non_null(strstr(err, "not a CA"));
    free(err);
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, "garbage", YEAR, &cert, NULL), -EINVAL);
    assert_null(cert);
    assert_int_equal(ERR_peek_error(), 0);
    free(leaf);
    free(csr);
}

/* A CSR asking for CA:TRUE (or anything else) still gets the node profile. */
static void test_csr_extensions_ignored(void **state)
{
    fixture *f = *state;
    EVP_PKEY *k = load_key(f->key);
    char *csr = raw_csr(k, "worker-1", "DNS:worker-1,IP:10.0.0.1", 1, EVP_sha256()), *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &cert, NULL), 0);
    X509 *x = load_x509(cert);
    assert_int_equal(X509_check_ca(x), 0);
    X509_free(x);
    free(cert);
    free(csr);
    /* ECDSA with SHA-384 is fine too */
    csr = raw_csr(k, "worker-1", "IP:10.0.0.1", 0, EVP_sha384());
    pki_csr_info info = {0};
    assert_int_equal(pki_csr_parse(csr, strlen(csr), &info, NULL), 0);
    assert_int_equal(pki_csr_check(&info, "worker-1", "10.0.0.1", NULL), 0);
    pki_csr_info_free(&info);
    free(csr);
    EVP_PKEY_free(k);
}

/* ---- malformed and tampered CSRs ----------------------------------------- */

static void test_csr_tampered(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1);
    char *t1 = csr_edit_der(csr, flip_cn_byte), *t2 = csr_edit_der(csr, flip_last_byte);
    expect_parse_fail(t1, strlen(t1), -EBADMSG, "signature");
    expect_parse_fail(t2, strlen(t2), -EBADMSG, "signature");
    /* and signing refuses it as well */
    char *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, t1, YEAR, &cert, NULL), -EBADMSG);
    assert_null(cert);
    free(t1);
    free(t2);
    free(csr);
}

static void test_csr_malformed(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1);
    size_t len = strlen(csr);
    char buf[20000];

    expect_parse_fail("", 0, -EINVAL, "no PEM block");
    expect_parse_fail("garbage", 7, -EINVAL, "no PEM block");
    expect_parse_fail(csr, len - 40, -EINVAL, "malformed PEM"); /* truncated */
    snprintf(buf, sizeof(buf), "%sextra", csr);
    expect_parse_fail(buf, strlen(buf), -EINVAL, "data after");
    snprintf(buf, sizeof(buf), "%s%s", csr, csr);
    expect_parse_fail(buf, strlen(buf), -EINVAL, "data after");
    snprintf(buf, sizeof(buf), "text before\n%s", csr);
    expect_parse_fail(buf, strlen(buf), -EINVAL, "no PEM block");
    expect_parse_fail(f->ca_cert, strlen(f->ca_cert), -EINVAL, "wrong type");
    /* whitespace around is fine; the length argument is honoured (no NUL needed) */
    snprintf(buf, sizeof(buf), "\n  %s\n\n", csr);
    pki_csr_info info = {0};
    assert_int_equal(pki_csr_parse(buf, strlen(buf), &info, NULL), 0);
    pki_csr_info_free(&info);
    memcpy(buf, csr, len);
    buf[len] = 'X';
    assert_int_equal(pki_csr_parse(buf, len, &info, NULL), 0);
    pki_csr_info_free(&info);
    /* PEM headers */
    const char *nl = strchr(csr, '\n');
    snprintf(buf, sizeof(buf), "%.*sProc-Type: 4,ENCRYPTED\n\n%s", (int)(nl - csr + 1), csr, nl + 1);
    expect_parse_fail(buf, strlen(buf), -EINVAL, NULL);
    /* too large */
    char *big = malloc(PKI_MAX_CSR_PEM + 2);
    memset(big, ' ', PKI_MAX_CSR_PEM + 1);
    memcpy(big, csr, len);
    expect_parse_fail(big, PKI_MAX_CSR_PEM + 1, -EINVAL, "at most");
    free(big);
    free(csr);

    /* keys and names the module never makes */
    EVP_PKEY *rsa = EVP_RSA_gen(2048), *p384 = EVP_EC_gen("P-384"), *k = load_key(f->key);
    assert_non_null(rsa);
    assert_non_null(p384);
    char *c1 = raw_csr(rsa, "worker-1", "IP:10.0.0.1", 0, EVP_sha256());
    expect_parse_fail(c1, strlen(c1), -EINVAL, "P-256");
    char *c2 = raw_csr(p384, "worker-1", "IP:10.0.0.1", 0, EVP_sha384());
    expect_parse_fail(c2, strlen(c2), -EINVAL, "P-256");
    char *c3 = raw_csr(k, NULL, "IP:10.0.0.1", 0, EVP_sha256());
    expect_parse_fail(c3, strlen(c3), -EINVAL, "no CN");
    char *c4 = raw_csr(k, "worker-1", "IP:10.0.0.1,URI:https://evil.example/", 0, EVP_sha256());
    expect_parse_fail(c4, strlen(c4), -EINVAL, "URI:https://evil.example/");
    char *c5 = raw_csr(k, "worker-1", "IP:10.0.0.1,email:root@example.com", 0, EVP_sha256());
    expect_parse_fail(c5, strlen(c5), -EINVAL, "email:root@example.com");
    char *c6 = raw_csr(k, "worker-1", "IP:10.0.0.1,DNS:a b", 0, EVP_sha256());
    expect_parse_fail(c6, strlen(c6), -EINVAL, "'a b'");
    char *c7 = raw_csr(k, "worker-1", "IP:10.0.0.1", 0, EVP_sha1());
    expect_parse_fail(c7, strlen(c7), -EINVAL, "signature algorithm");
    free(c1);
    free(c2);
    free(c3);
    free(c4);
    free(c5);
    free(c6);
    free(c7);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(k);
}

static void test_csr_create_args(void **state)
{
    fixture *f = *state;
    char *csr = NULL, *err = NULL;
    const char *bad_names[] = {"ok", "has space"};
    assert_int_equal(pki_csr_create(f->key, "bad id", NULL, 0, &csr, &err), -EINVAL);
    assert_non_null(strstr(err, "bad id"));
    free(err);
    err = NULL;
    assert_int_equal(pki_csr_create(f->key, "worker-1", bad_names, 2, &csr, &err), -EINVAL);
    assert_non_null(strstr(err, "has space"));
    free(err);
    assert_int_equal(pki_csr_create("not a key", "worker-1", NULL, 0, &csr, NULL), -EINVAL);
    char *ca_is_ok_key = NULL;
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, rsa, NULL, NULL, 0, NULL, NULL);
    char *data;
    long len = BIO_get_mem_data(b, &data);
    ca_is_ok_key = strndup(data, (size_t)len);
    assert_int_equal(pki_csr_create(ca_is_ok_key, "worker-1", NULL, 0, &csr, NULL), -EINVAL); /* RSA */
    assert_null(csr);
    free(ca_is_ok_key);
    BIO_free(b);
    EVP_PKEY_free(rsa);
    /* no names: DNS:<node id> only, and then the source address rule refuses it */
    csr = csr_for(f->key, "worker-1", NULL, 0);
    pki_csr_info info = {0};
    assert_int_equal(pki_csr_parse(csr, strlen(csr), &info, NULL), 0);
    assert_int_equal(info.n_dns, 1);
    assert_int_equal(info.n_ips, 0);
    assert_int_equal(pki_csr_check(&info, "worker-1", "127.0.0.1", NULL), -EACCES);
    pki_csr_info_free(&info);
    free(csr);
    char *ca = NULL, *ca_key = NULL;
    assert_int_equal(pki_ca_create("", 10, &ca, &ca_key, NULL), -EINVAL);
    assert_int_equal(pki_ca_create("x", 0, &ca, &ca_key, NULL), -EINVAL);
    assert_int_equal(pki_ca_create("x", PKI_MAX_CA_DAYS + 1, &ca, &ca_key, NULL), -EINVAL);
    err = NULL;
    assert_int_equal(pki_ca_create("bad\nname", 10, &ca, &ca_key, &err), -EINVAL);
    assert_non_null(strstr(err, "bad\\x0aname"));
    free(err);
    assert_null(ca);
    assert_null(ca_key);
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- verification, expiry, renewal --------------------------------------- */

static void test_foreign_ca(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *mine = NULL, *theirs = NULL, *err = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &mine, NULL), 0);
    assert_int_equal(pki_sign_csr(f->ca2_cert, f->ca2_key, csr, YEAR, &theirs, NULL), 0);
    assert_int_equal(pki_cert_verify(theirs, f->ca_cert, &err), -EACCES);
    assert_non_null(err);
    free(err);
    err = NULL;
    assert_int_equal(pki_cert_verify(mine, f->ca2_cert, &err), -EACCES);
    free(err);
    /* a bundle holding both CAs trusts both */
    size_t n = strlen(f->ca_cert) + strlen(f->ca2_cert) + 2;
    char *bundle = malloc(n);
    snprintf(bundle, n, "%s\n%s", f->ca2_cert, f->ca_cert);
    assert_int_equal(pki_cert_verify(mine, bundle, NULL), 0);
    assert_int_equal(pki_cert_verify(theirs, bundle, NULL), 0);
    /* the CA itself is not a node certificate; a node certificate is no CA */
    err = NULL;
    assert_int_equal(pki_cert_verify(f->ca_cert, f->ca_cert, &err), -EACCES);
    assert_non_null(strstr(err, "CA certificate"));
    free(err);
    assert_int_equal(pki_cert_verify(mine, mine, NULL), -EINVAL);
    assert_int_equal(pki_cert_verify("junk", f->ca_cert, NULL), -EINVAL);
    assert_int_equal(pki_cert_verify(mine, "junk", NULL), -EINVAL);
    assert_int_equal(ERR_peek_error(), 0);
    free(bundle);
    free(mine);
    free(theirs);
    free(csr);
}

static void test_expired(void **state)
{
    fixture *f = *state;
    const char *names[] = {"127.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *cert = NULL, *err = NULL;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, 1, &cert, NULL), 0);
    assert_int_equal(pki_cert_verify_at(cert, f->ca_cert, now, NULL), 0);
    assert_int_equal(pki_cert_verify_at(cert, f->ca_cert, now + 2, &err), -EKEYEXPIRED);
    assert_non_null(strstr(err, "expired"));
    free(err);
    err = NULL;
    assert_int_equal(pki_cert_verify_at(cert, f->ca_cert, now - 3600, &err), -EACCES); /* not yet valid */
    free(err);

    pki_cert_info ci = {0};
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &ci, NULL), 0);
    const char *ips[] = {"127.0.0.1"};
    assert_int_equal(pki_cert_needs_renewal(&ci, now + 2, 0, ips, 1), 1);
    assert_int_equal(pki_cert_needs_renewal(&ci, ci.not_after - 1, 0, ips, 1), 0);
    pki_cert_info_free(&ci);
    free(cert);
    free(csr);
}

static void test_renewal(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.1.2.3", "fd00::5"};
    char *csr = csr_for(f->key, "worker-1", names, 2), *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &cert, NULL), 0);
    pki_cert_info ci = {0};
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &ci, NULL), 0);
    int64_t now = (int64_t)time(NULL), before = PKI_DEFAULT_RENEW_BEFORE_S;

    const char *same[] = {"10.1.2.3", "fd00:0::5"};
    const char *subset[] = {"10.1.2.3"};
    const char *moved[] = {"10.1.2.4"};
    const char *added[] = {"10.1.2.3", "fd00::5", "192.0.2.1"};
    const char *bind_any[] = {"0.0.0.0", "::", "10.1.2.3"};
    const char *bad[] = {"10.1.2.3", "eth0"};
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, NULL, 0), 0);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, same, 2), 0);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, subset, 1), 0);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, moved, 1), 1);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, added, 3), 1);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, bind_any, 3), 0);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, bad, 2), -EINVAL);
    /* time: renew from not_after - 30 days on */
    assert_int_equal(pki_cert_needs_renewal(&ci, ci.not_after - before - 1, before, same, 2), 0);
    assert_int_equal(pki_cert_needs_renewal(&ci, ci.not_after - before, before, same, 2), 1);
    assert_int_equal(pki_cert_needs_renewal(&ci, ci.not_after + YEAR, before, same, 2), 1);
    assert_int_equal(pki_cert_needs_renewal(NULL, now, before, NULL, 0), -EINVAL);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, -1, NULL, 0), -EINVAL);
    pki_cert_info_free(&ci);

    /* the renewed certificate, for the new address, verifies and no longer needs renewal */
    const char *new_names[] = {"10.1.2.4"};
    char *csr2 = csr_for(f->key, "worker-1", new_names, 1), *cert2 = NULL;
    pki_csr_info info = {0};
    assert_int_equal(pki_csr_parse(csr2, strlen(csr2), &info, NULL), 0);
    assert_int_equal(pki_csr_check(&info, "worker-1", "10.1.2.4", NULL), 0);
    pki_csr_info_free(&info);
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr2, YEAR, &cert2, NULL), 0);
    assert_int_equal(pki_cert_parse(cert2, strlen(cert2), &ci, NULL), 0);
    assert_int_equal(pki_cert_needs_renewal(&ci, now, before, moved, 1), 0);
    assert_int_equal(pki_cert_verify(cert2, f->ca_cert, NULL), 0);
    pki_cert_info_free(&ci);
    free(cert);
    free(cert2);
    free(csr);
    free(csr2);
}

/* A certificate cannot outlive its CA: the lifetime is clamped to the CA's notAfter. */
static void test_lifetime_clamped(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca2_cert, f->ca2_key, csr, YEAR, &cert, NULL), 0); /* CA of 30 days */
    pki_cert_info ci = {0}, cai = {0};
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &ci, NULL), 0);
    assert_int_equal(pki_cert_parse(f->ca2_cert, strlen(f->ca2_cert), &cai, NULL), 0);
    assert_int_equal(ci.not_after, cai.not_after);
    pki_cert_info_free(&ci);
    pki_cert_info_free(&cai);
    free(cert);
    free(csr);
}

static void test_cert_parse_malformed(void **state)
{
    fixture *f = *state;
    pki_cert_info ci = {0};
    char *err = NULL;
    assert_int_equal(pki_cert_parse("nope", 4, &ci, &err), -EINVAL);
    free(err);
    size_t n = 2 * strlen(f->ca_cert) + 1;
    char *two = malloc(n);
    snprintf(two, n, "%s%s", f->ca_cert, f->ca_cert);
    err = NULL;
    assert_int_equal(pki_cert_parse(two, strlen(two), &ci, &err), -EINVAL);
    assert_non_null(strstr(err, "data after"));
    free(err);
    free(two);
    assert_int_equal(pki_cert_parse(f->key, strlen(f->key), &ci, NULL), -EINVAL);
    assert_null(ci.node_id);
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- the cert-request body (certreq.c) ------------------------------------ */

#define CHAL "Q2hhbGxlbmdlLWZvci10aGUtd29ya2VyLTEyMzQ1Njc4"
#define TOKEN "p2pj_secretsecretsecretsecretsecretsecretsecre"

/* A request body with `csr` and the other members from `extra_json` spliced in
 * ("" for the defaults). */
static char *request_body(const char *csr, const char *members)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[s,s]}", "node_id", "worker-1", "csr", csr, "challenge", CHAL,
                          "challenge_port", 8802, "join_token", TOKEN, "addresses", "10.0.0.1", "::0001");
    assert_non_null(o);
    if (members && *members) {
        json_t *m = json_loads(members, 0, NULL);
        assert_non_null(m);
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v)
        {
            if (json_is_null(v))
                json_object_del(o, k);
            else
                json_object_set(o, k, v);
        }
        json_decref(m);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void test_certreq_valid(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *body = request_body(csr, "");
    certreq r = {0};
    char *err = NULL;
    assert_int_equal(certreq_parse(body, strlen(body), &r, &err), 0);
    assert_null(err);
    assert_string_equal(r.node_id, "worker-1");
    assert_string_equal(r.csr, csr);
    assert_string_equal(r.challenge, CHAL);
    assert_int_equal(r.challenge_port, 8802);
    assert_string_equal(r.join_token, TOKEN);
    assert_int_equal(r.n_addresses, 2);
    assert_string_equal(r.addresses[0], "10.0.0.1");
    assert_string_equal(r.addresses[1], "::1"); /* canonical */

    /* the worker side builds the same request */
    json_t *j = certreq_request_json(&r);
    char *again_text = json_dumps(j, JSON_COMPACT);
    certreq again = {0};
    assert_int_equal(certreq_parse(again_text, strlen(again_text), &again, NULL), 0);
    assert_string_equal(again.join_token, TOKEN);
    assert_int_equal(again.n_addresses, 2);
    certreq_free(&again);
    free(again_text);
    json_decref(j);

    /* and the coordinator can take it from there */
    pki_csr_info info = {0};
    assert_int_equal(pki_csr_parse(r.csr, strlen(r.csr), &info, NULL), 0);
    assert_int_equal(pki_csr_check(&info, r.node_id, "10.0.0.1", NULL), 0);
    pki_csr_info_free(&info);
    certreq_free(&r);
    certreq_free(&r);
    free(body);

    /* without addresses */
    body = request_body(csr, "{\"addresses\":null}");
    assert_int_equal(certreq_parse(body, strlen(body), &r, NULL), 0);
    assert_null(r.addresses);
    assert_int_equal(r.n_addresses, 0);
    certreq_free(&r);
    free(body);
    free(csr);
}

static void test_certreq_rejections(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1);
    static const struct {
        const char *members;
        const char *needle;
    } cases[] = {
        {"{\"extra\":1}", "field 'extra': unknown"},
        {"{\"Node_id\":\"x\"}", "field 'Node_id': unknown"},
        {"{\"node_id\":null}", "field 'node_id': missing"},
        {"{\"node_id\":7}", "field 'node_id': must be a string"},
        {"{\"node_id\":\"bad id\"}", "field 'node_id': 'bad id'"},
        {"{\"node_id\":\"\"}", "field 'node_id'"},
        {"{\"csr\":null}", "field 'csr': missing"},
        {"{\"csr\":[]}", "field 'csr': must be a string"},
        {"{\"csr\":\"hello\"}", "field 'csr': not a PEM"},
        {"{\"challenge\":null}", "field 'challenge': missing"},
        {"{\"challenge\":\"tooshort\"}", "field 'challenge'"},
        {"{\"challenge\":\"Q2hhbGxlbmdlLWZvci10aGUtd29ya2VyLTEyMzQ1Njc4====\"}", "field 'challenge'"},
        {"{\"challenge\":\"Q2hhbGxlbmdlLWZvci10aGUtd29ya2VyLTEy+zQ1Njc4\"}", "field 'challenge'"},
        {"{\"challenge_port\":null}", "field 'challenge_port': missing"},
        {"{\"challenge_port\":0}", "field 'challenge_port'"},
        {"{\"challenge_port\":65536}", "field 'challenge_port'"},
        {"{\"challenge_port\":8802.0}", "field 'challenge_port'"},
        {"{\"challenge_port\":\"8802\"}", "field 'challenge_port'"},
        {"{\"join_token\":null}", "field 'join_token': missing"},
        {"{\"join_token\":\"has space\"}", "field 'join_token'"},
        {"{\"join_token\":true}", "field 'join_token': must be a string"},
        {"{\"addresses\":\"10.0.0.1\"}", "field 'addresses'"},
        {"{\"addresses\":[\"10.0.0.1\",\"example.com\"]}", "field 'addresses[1]': not an IP address"},
        {"{\"addresses\":[1]}", "field 'addresses[0]': must be a string"},
        {"{\"addresses\":[\"10.0.0.1\",\"10.0.0.01\"]}", "field 'addresses[1]'"},
        {"{\"addresses\":[\"::1\",\"0::1\"]}", "field 'addresses[1]': ::1 is listed twice"},
        {"{\"addresses\":[\"1.0.0.1\",\"1.0.0.2\",\"1.0.0.3\",\"1.0.0.4\",\"1.0.0.5\",\"1.0.0.6\",\"1.0.0.7\","
         "\"1.0.0.8\",\"1.0.0.9\",\"1.0.0.10\",\"1.0.0.11\",\"1.0.0.12\",\"1.0.0.13\",\"1.0.0.14\",\"1.0.0.15\","
         "\"1.0.0.16\",\"1.0.0.17\"]}",
         "field 'addresses': 17 entries"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *body = request_body(csr, cases[i].members), *err = NULL;
        certreq r = {0};
        int rc = certreq_parse(body, strlen(body), &r, &err);
        if (rc != -EINVAL || !err || !strstr(err, cases[i].needle))
            fail_msg("case %zu: rc %d, message '%s', expected '%s'", i, rc, err ? err : "(none)", cases[i].needle);
        assert_null(strstr(err, TOKEN)); /* never echoes the secret */
        assert_null(r.node_id);
        free(err);
        free(body);
    }

    /* long join token, long CSR */
    char big[CERTREQ_MAX_CSR + 64];
    memset(big, 'a', CERTREQ_MAX_JOIN_TOKEN + 1);
    big[CERTREQ_MAX_JOIN_TOKEN + 1] = '\0';
    char members[sizeof(big) + 64];
    snprintf(members, sizeof(members), "{\"join_token\":\"%s\"}", big);
    char *body = request_body(csr, members), *err = NULL;
    certreq r = {0};
    assert_int_equal(certreq_parse(body, strlen(body), &r, &err), -EINVAL);
    assert_non_null(strstr(err, "field 'join_token': must be 1..256 bytes"));
    free(err);
    free(body);
    snprintf(big, sizeof(big), "%s", csr);
    memset(big + strlen(csr), '\n', CERTREQ_MAX_CSR + 1 - strlen(csr));
    big[CERTREQ_MAX_CSR + 1] = '\0';
    json_t *o = json_pack("{s:s}", "csr", big);
    char *m = json_dumps(o, 0);
    body = request_body(csr, m);
    err = NULL;
    assert_int_equal(certreq_parse(body, strlen(body), &r, &err), -EINVAL);
    assert_non_null(strstr(err, "field 'csr': must be 1..16384 bytes"));
    free(err);
    free(body);
    free(m);
    json_decref(o);

    /* body-level failures */
    static const char *bodies[] = {"",
                                   "[]",
                                   "\"x\"",
                                   "{",
                                   "{\"node_id\":\"a\",\"node_id\":\"b\"}",
                                   "{\"join_token\":\"" TOKEN "\"",
                                   "{\"join_token\":\"" TOKEN "\" x}",
                                   "{\"node_id\":\"a\\u0000b\"}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        err = NULL;
        assert_int_equal(certreq_parse(bodies[i], strlen(bodies[i]), &r, &err), -EINVAL);
        assert_non_null(err);
        if (strstr(err, "p2pj_"))
            fail_msg("body %zu: message quotes the token: %s", i, err);
        free(err);
    }
    char *huge = malloc(CERTREQ_MAX_BODY + 1);
    memset(huge, ' ', CERTREQ_MAX_BODY + 1);
    err = NULL;
    assert_int_equal(certreq_parse(huge, CERTREQ_MAX_BODY + 1, &r, &err), -E2BIG);
    free(err);
    free(huge);
    assert_int_equal(certreq_parse(NULL, 0, &r, NULL), -EINVAL);
    free(csr);
}

static void test_certreq_response(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.0.0.1"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *cert = NULL;
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, YEAR, &cert, NULL), 0);
    json_t *j = certreq_response_json(cert, f->ca_cert, "c2VjcmV0LWdvc3NpcC1rZXk=");
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 3);
    assert_string_equal(json_string_value(json_object_get(j, "certificate")), cert);
    assert_string_equal(json_string_value(json_object_get(j, "ca_certificate")), f->ca_cert);
    assert_string_equal(json_string_value(json_object_get(j, "gossip_key")), "c2VjcmV0LWdvc3NpcC1rZXk=");
    json_object_set_new(j, "future_member", json_true()); /* ignored by the worker */
    char *text = json_dumps(j, 0);
    certreq_response resp = {0};
    assert_int_equal(certreq_response_parse(text, strlen(text), &resp, NULL), 0);
    assert_string_equal(resp.certificate, cert);
    assert_string_equal(resp.gossip_key, "c2VjcmV0LWdvc3NpcC1rZXk=");
    assert_int_equal(pki_cert_verify(resp.certificate, resp.ca_certificate, NULL), 0);
    assert_int_equal(pki_key_matches_cert(f->key, resp.certificate), 1);
    certreq_response_free(&resp);
    free(text);
    json_decref(j);

    j = certreq_response_json(cert, f->ca_cert, NULL);
    assert_int_equal(json_object_size(j), 2);
    text = json_dumps(j, 0);
    assert_int_equal(certreq_response_parse(text, strlen(text), &resp, NULL), 0);
    assert_null(resp.gossip_key);
    certreq_response_free(&resp);
    free(text);
    json_decref(j);
    assert_null(certreq_response_json(NULL, f->ca_cert, NULL));

    static const char *bad[] = {"{}", "{\"certificate\":\"x\",\"ca_certificate\":\"y\"}",
                                "{\"certificate\":\"-----BEGIN CERTIFICATE-----\",\"ca_certificate\":1}",
                                ("{\"certificate\":\"-----BEGIN CERTIFICATE-----\",\"ca_certificate\":"
                                 "\"-----BEGIN CERTIFICATE-----\",\"gossip_key\":\"not base64!\"}")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char *err = NULL;
        assert_int_equal(certreq_response_parse(bad[i], strlen(bad[i]), &resp, &err), -EINVAL);
        assert_non_null(err);
        free(err);
    }
    free(cert);
    free(csr);
}

/* ---- the role in the certificate, fingerprints (issue 9) ----------------- */

static X509 *x509_of(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

static void test_role_in_certificate(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.1.2.3"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *cert = NULL, *err = NULL;
    assert_int_equal(pki_sign_node_csr(f->ca_cert, f->ca_key, csr, 3600, "worker", &cert, &err), 0);
    X509 *x = x509_of(cert);
    char role[PKI_MAX_ROLE + 1];
    assert_int_equal(p2p__pki_cert_role(x, role, sizeof role), 0);
    assert_string_equal(role, "worker");
    assert_int_equal(p2p__pki_cert_role(x, role, 6), -ENOSPC); /* "worker" needs 7 bytes */
    assert_int_equal(p2p__pki_cert_role(x, NULL, 8), -EINVAL);
    assert_int_equal(p2p__pki_cert_role(NULL, role, 8), -EINVAL);
    pki_cert_info info = {0};
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &info, NULL), 0);
    assert_string_equal(info.role, "worker");
    assert_string_equal(info.node_id, "worker-1");
    /* the certificate names what the coordinator asked for, exactly: the CN and the OU */
    char buf[256];
    X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf);
    assert_string_equal(buf, "/CN=worker-1/OU=worker");
    pki_cert_info_free(&info);
    X509_free(x);
    free(cert);
    cert = NULL;

    /* without a role (pki_sign_csr): no OU */
    assert_int_equal(pki_sign_csr(f->ca_cert, f->ca_key, csr, 3600, &cert, &err), 0);
    x = x509_of(cert);
    assert_int_equal(p2p__pki_cert_role(x, role, sizeof role), -ENOENT);
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &info, NULL), 0);
    assert_null(info.role);
    pki_cert_info_free(&info);
    X509_free(x);
    free(cert);
    cert = NULL;

    /* invalid roles are not signed */
    static const char *bad[] = {"", "two words", "a23456789b123456789c123456789d12", "r\xc3\xb4le", "x/y"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(pki_sign_node_csr(f->ca_cert, f->ca_key, csr, 3600, bad[i], &cert, &err), -EINVAL);
        assert_null(cert);
        free(err);
        err = NULL;
    }
    assert_int_equal(pki_sign_node_csr(f->ca_cert, f->ca_key, csr, 3600, NULL, &cert, &err), -EINVAL);
    free(err);
    assert_true(pki_role_valid("coordinator") && pki_role_valid("a23456789b123456789c123456789d1"));
    free(csr);
}

/* Certificates with hand-made subjects: what p2p__pki_cert_role refuses. */
static void test_role_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *ou[3];
        int type; /* MBSTRING_ASC or a V_ASN1_ string type */
        int want;
    } cases[] = {
        {{"worker", "admin"}, MBSTRING_ASC, -EINVAL},                     /* two OUs */
        {{"has space"}, MBSTRING_ASC, -EINVAL},                            /* not a role name */
        {{"a23456789b123456789c123456789d123456789"}, MBSTRING_ASC, -EINVAL}, /* too long */
        {{"wor\x01ker"}, MBSTRING_ASC, -EINVAL},                           /* control character */
        {{"worker"}, V_ASN1_BMPSTRING, -EINVAL},                           /* not an ASCII string type */
        {{NULL}, MBSTRING_ASC, -ENOENT},                                   /* none */
        {{"ops-team_2.a"}, MBSTRING_ASC, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        X509 *x = X509_new();
        X509_NAME *nm = X509_get_subject_name(x);
        assert_int_equal(X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_ASC, (const unsigned char *)"n1", -1,
                                                    -1, 0),
                         1);
        for (size_t k = 0; k < 3 && cases[i].ou[k]; k++) {
            if (cases[i].type == V_ASN1_BMPSTRING) {
                static const unsigned char bmp[] = {0, 'w', 0, 'o', 0, 'r', 0, 'k', 0, 'e', 0, 'r'};
                assert_int_equal(X509_NAME_add_entry_by_NID(nm, NID_organizationalUnitName, V_ASN1_BMPSTRING, bmp,
                                                            sizeof bmp, -1, 0),
                                 1);
            } else {
                assert_int_equal(X509_NAME_add_entry_by_NID(nm, NID_organizationalUnitName, MBSTRING_ASC,
                                                            (const unsigned char *)cases[i].ou[k], -1, -1, 0),
                                 1);
            }
        }
        char role[PKI_MAX_ROLE + 1] = "";
        int rc = p2p__pki_cert_role(x, role, sizeof role);
        if (rc != cases[i].want)
            fail_msg("case %zu: %d, expected %d", i, rc, cases[i].want);
        if (rc == 0)
            assert_string_equal(role, cases[i].ou[0]);
        X509_free(x);
    }
}

static void test_fingerprint(void **state)
{
    fixture *f = *state;
    const char *names[] = {"10.1.2.3"};
    char *csr = csr_for(f->key, "worker-1", names, 1), *a = NULL, *b = NULL;
    assert_int_equal(pki_sign_node_csr(f->ca_cert, f->ca_key, csr, 3600, "worker", &a, NULL), 0);
    assert_int_equal(pki_sign_node_csr(f->ca_cert, f->ca_key, csr, 3600, "worker", &b, NULL), 0);
    char fa[PKI_FINGERPRINT_LEN + 1], fb[PKI_FINGERPRINT_LEN + 1], sa[41], sb[41];
    assert_int_equal(pki_cert_fingerprint(a, fa, sa, sizeof sa), 0);
    assert_int_equal(pki_cert_fingerprint(b, fb, sb, sizeof sb), 0);
    assert_int_equal(strlen(fa), PKI_FINGERPRINT_LEN);
    assert_string_not_equal(fa, fb); /* same key and names, another serial */
    assert_string_not_equal(sa, sb);
    assert_int_equal(strlen(sa), 34); /* 0x01 and 128 random bits */
    assert_memory_equal(sa, "01", 2);
    /* the same as OpenSSL's own SHA-256 fingerprint of the DER */
    X509 *x = x509_of(a);
    unsigned char md[32];
    unsigned n = 0;
    assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
    char hex[65];
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(hex, fa);
    char fx[PKI_FINGERPRINT_LEN + 1];
    assert_int_equal(p2p__pki_cert_fingerprint(x, fx), 0);
    assert_string_equal(fx, fa);
    X509_free(x);
    assert_int_equal(pki_cert_fingerprint(a, fa, sa, 10), -EINVAL); /* serial does not fit */
    assert_int_equal(pki_cert_fingerprint("not a certificate", fa, NULL, 0), -EINVAL);
    assert_int_equal(pki_cert_fingerprint(NULL, fa, NULL, 0), -EINVAL);
    free(a);
    free(b);
    free(csr);
}

/* A node that names no loopback address gets a certificate without any (finding 11). */
static void test_certificate_without_loopback(void **state)
{
    fixture *f = *state;
    const char *names[] = {"192.0.2.7", "fd00::7"};
    char *csr = csr_for(f->key, "worker-7", names, 2), *cert = NULL;
    pki_csr_info ci = {0};
    assert_int_equal(pki_csr_parse(csr, strlen(csr), &ci, NULL), 0);
    assert_int_equal(pki_csr_check(&ci, "worker-7", "192.0.2.7", NULL), 0);
    pki_csr_info_free(&ci);
    assert_int_equal(pki_sign_node_csr(f->ca_cert, f->ca_key, csr, 3600, "worker", &cert, NULL), 0);
    pki_cert_info info = {0};
    assert_int_equal(pki_cert_parse(cert, strlen(cert), &info, NULL), 0);
    assert_int_equal(info.n_dns, 1);
    assert_string_equal(info.dns[0], "worker-7");
    assert_int_equal(info.n_ips, 2);
    assert_string_equal(info.ips[0], "192.0.2.7");
    assert_string_equal(info.ips[1], "fd00::7");
    pki_cert_info_free(&info);
    free(cert);
    free(csr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrollment_flow),
        cmocka_unit_test(test_certificate_profile),
        cmocka_unit_test(test_check_rejections),
        cmocka_unit_test(test_sign_rechecks),
        cmocka_unit_test(test_csr_extensions_ignored),
        cmocka_unit_test(test_csr_tampered),
        cmocka_unit_test(test_csr_malformed),
        cmocka_unit_test(test_csr_create_args),
        cmocka_unit_test(test_foreign_ca),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_renewal),
        cmocka_unit_test(test_lifetime_clamped),
        cmocka_unit_test(test_cert_parse_malformed),
        cmocka_unit_test(test_certreq_valid),
        cmocka_unit_test(test_certreq_rejections),
        cmocka_unit_test(test_certreq_response),
        cmocka_unit_test(test_role_in_certificate),
        cmocka_unit_test(test_role_malformed),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_certificate_without_loopback),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
