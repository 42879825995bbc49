/*
 * test_records.c — membership/records.c with real keys and certificates: a
 * cluster CA and a foreign one (pki_ca_create), node certificates with and
 * without a role (pki_sign_node_csr / pki_sign_csr), signatures made by one
 * p2p__records and checked by another. Covers: the happy path and the
 * certificate fetch (-ENOKEY until the certificate is added), a foreign CA, a
 * CA certificate, garbage and trailing bytes, a certificate id that does not
 * match, CN mismatch, OU (role) mismatch, tampered records and signatures,
 * unsigned records, certificates without an OU (they vouch for "worker"
 * only), the LRU bound, and identities that do not fit together.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "membership/codec.h"
#include "membership/records.h"
#include "pki/pki.h"

typedef struct ident {
    char *key, *cert;
    uint8_t *der;
    size_t der_len;
} ident;

typedef struct fixture {
    char *ca, *ca_key, *ca2, *ca2_key;
    ident w1, w2, coord, legacy, foreign_w1;
} fixture;

static fixture F;

static void pem_to_der(const char *pem, uint8_t **der, size_t *len)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    assert_non_null(x);
    unsigned char *out = NULL;
    int n = i2d_X509(x, &out);
    assert_true(n > 0);
    *der = malloc((size_t)n);
    memcpy(*der, out, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(out);
    X509_free(x);
    BIO_free(b);
}

/* role NULL: a certificate without an OU, as issued before roles. */
static int make_ident(ident *id, const char *ca, const char *ca_key, const char *node_id, const char *role,
                      const char *key_pem)
{
    char *err = NULL, *csr = NULL;
    id->key = key_pem ? strdup(key_pem) : NULL;
    if (!id->key && pki_key_create(&id->key, &err) != 0)
        goto fail;
    const char *names[] = {"127.0.0.1"};
    if (pki_csr_create(id->key, node_id, names, 1, &csr, &err) != 0)
        goto fail;
    int rc = role ? pki_sign_node_csr(ca, ca_key, csr, 3600, role, &id->cert, &err)
                  : pki_sign_csr(ca, ca_key, csr, 3600, &id->cert, &err);
    free(csr);
    if (rc != 0)
        goto fail;
    pem_to_der(id->cert, &id->der, &id->der_len);
    return 0;
fail:
    fprintf(stderr, "setup %s: %s\n", node_id, err ? err : "?");
    free(err);
    return -1;
}

static int group_setup(void **state)
{
    (void)state;
    char *err = NULL;
    if (pki_ca_create("records-test", 1, &F.ca, &F.ca_key, &err) != 0 ||
        pki_ca_create("another-cluster", 1, &F.ca2, &F.ca2_key, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err ? err : "?");
        return -1;
    }
    if (make_ident(&F.w1, F.ca, F.ca_key, "w1", "worker", NULL) ||
        make_ident(&F.w2, F.ca, F.ca_key, "w2", "worker", NULL) ||
        make_ident(&F.coord, F.ca, F.ca_key, "coord", "coordinator", NULL) ||
        make_ident(&F.legacy, F.ca, F.ca_key, "w3", NULL, NULL) ||
        /* w1's own key, certified by another cluster's CA */
        make_ident(&F.foreign_w1, F.ca2, F.ca2_key, "w1", "worker", F.w1.key))
        return -1;
    return 0;
}

static void ident_free(ident *id)
{
    pki_secret_free(id->key);
    free(id->cert);
    free(id->der);
}

static int group_teardown(void **state)
{
    (void)state;
    ident_free(&F.w1);
    ident_free(&F.w2);
    ident_free(&F.coord);
    ident_free(&F.legacy);
    ident_free(&F.foreign_w1);
    free(F.ca);
    pki_secret_free(F.ca_key);
    free(F.ca2);
    pki_secret_free(F.ca2_key);
    return 0;
}

static p2p__records *node_as(const ident *id)
{
    char *err = NULL;
    p2p__records *r = p2p__records_new(F.ca, 0, &err);
    assert_non_null(r);
    assert_int_equal(p2p__records_set_identity(r, id->cert, id->key, NULL, &err), 0);
    assert_null(err);
    return r;
}

static const uint8_t *cert_id_of(const ident *id)
{
    static uint8_t out[P2P_GOSSIP_CERT_ID_LEN];
    p2p__records_cert_id(id->der, id->der_len, out);
    return out;
}

/* A record for `node_id` with `role`, signed by `r` (its cert_id is r's). */
static int signed_record(p2p__records *r, const char *node_id, const char *role, uint8_t *tbs, size_t cap,
                         p2p_gossip_sig *sig)
{
    p2p_gossip_node n = {0};
    snprintf(n.id, sizeof n.id, "%s", node_id);
    snprintf(n.role, sizeof n.role, "%s", role);
    n.incarnation = 7;
    n.port = 8001;
    n.naddrs = 1;
    snprintf(n.addrs[0], sizeof n.addrs[0], "127.0.0.1");
    n.meta = "{}";
    n.meta_len = 2;
    memcpy(n.sig.cert_id, p2p__records_own_cert_id(r), P2P_GOSSIP_CERT_ID_LEN);
    int len = p2p_gossip_alive_tbs(&n, tbs, cap);
    assert_true(len > 0);
    assert_int_equal(p2p__records_sign(r, tbs, (size_t)len, sig), 0);
    assert_memory_equal(sig->cert_id, n.sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
    return len;
}

static void test_sign_verify_and_fetch(void **state)
{
    (void)state;
    p2p__records *a = node_as(&F.w1), *b = node_as(&F.w2);
    assert_string_equal(p2p__records_own_role(a), "worker");
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_sig sig;
    int len = signed_record(a, "w1", "worker", tbs, sizeof tbs, &sig);
    /* b has not seen w1's certificate: ask for it */
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &sig), -ENOKEY);
    const uint8_t *der = NULL;
    size_t dlen = 0;
    assert_int_equal(p2p__records_cert_der(b, sig.cert_id, &der, &dlen), -ENOENT);
    assert_int_equal(p2p__records_cert_der(a, sig.cert_id, &der, &dlen), 0); /* a answers CERT_REQ */
    assert_int_equal(p2p__records_add_cert(b, der, dlen, sig.cert_id), 0);
    assert_int_equal(p2p__records_add_cert(b, der, dlen, sig.cert_id), 0); /* again: cached */
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &sig), 0);
    p2p__records_stats st;
    p2p__records_get_stats(b, &st);
    assert_int_equal(st.unknown_cert, 1);
    assert_int_equal(st.verified, 1);
    assert_int_equal(st.certs_added, 2); /* its own and w1's */
    assert_int_equal(st.refused_sig + st.refused_unsigned + st.refused_id + st.refused_role, 0);
    assert_int_equal(p2p__records_cached(b), 2);
    p2p__records_free(a);
    p2p__records_free(b);
}

static void test_wrong_ca_and_bad_certificates(void **state)
{
    (void)state;
    p2p__records *b = node_as(&F.w2);
    p2p__records_stats st;
    /* the same key and names, another cluster's CA */
    assert_int_equal(p2p__records_add_cert(b, F.foreign_w1.der, F.foreign_w1.der_len, NULL), -EACCES);
    /* the cluster CA itself is not a node */
    uint8_t *ca_der;
    size_t ca_len;
    pem_to_der(F.ca, &ca_der, &ca_len);
    assert_int_equal(p2p__records_add_cert(b, ca_der, ca_len, NULL), -EACCES);
    free(ca_der);
    /* the id it was asked under is not its id */
    assert_int_equal(p2p__records_add_cert(b, F.w1.der, F.w1.der_len, cert_id_of(&F.w2)), -EINVAL);
    /* trailing bytes, truncation, garbage, nothing */
    uint8_t *buf = malloc(F.w1.der_len + 1);
    memcpy(buf, F.w1.der, F.w1.der_len);
    buf[F.w1.der_len] = 0;
    assert_int_equal(p2p__records_add_cert(b, buf, F.w1.der_len + 1, NULL), -EINVAL);
    assert_int_equal(p2p__records_add_cert(b, buf, F.w1.der_len - 1, NULL), -EINVAL);
    memset(buf, 0x30, F.w1.der_len);
    assert_int_equal(p2p__records_add_cert(b, buf, F.w1.der_len, NULL), -EINVAL);
    assert_int_equal(p2p__records_add_cert(b, buf, 0, NULL), -EINVAL);
    /* a signature bit flipped in the certificate: does not chain */
    memcpy(buf, F.w1.der, F.w1.der_len);
    buf[F.w1.der_len - 3] ^= 0x01;
    int rc = p2p__records_add_cert(b, buf, F.w1.der_len, NULL);
    assert_true(rc == -EACCES || rc == -EINVAL);
    free(buf);
    p2p__records_get_stats(b, &st);
    assert_int_equal(st.certs_refused, 7); /* the empty input is the caller's error, not counted */
    assert_int_equal(p2p__records_cached(b), 1);
    assert_int_equal(ERR_peek_error(), 0);
    /* an identity from another CA is refused at set_identity */
    char *err = NULL;
    assert_int_not_equal(p2p__records_set_identity(b, F.foreign_w1.cert, F.foreign_w1.key, NULL, &err), 0);
    assert_non_null(err);
    free(err);
    err = NULL;
    /* a key that is not the certificate's */
    assert_int_not_equal(p2p__records_set_identity(b, F.w1.cert, F.w2.key, NULL, &err), 0);
    assert_non_null(err);
    free(err);
    assert_string_equal(p2p__records_own_role(b), "worker"); /* still w2 */
    p2p__records_free(b);
}

static void test_cn_mismatch(void **state)
{
    (void)state;
    p2p__records *w2 = node_as(&F.w2), *c = node_as(&F.coord);
    assert_int_equal(p2p__records_add_cert(c, F.w2.der, F.w2.der_len, NULL), 0);
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_sig sig;
    /* w2 signs a record for w1 with its own, valid, certificate */
    int len = signed_record(w2, "w1", "worker", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(c, "w1", "worker", tbs, (size_t)len, &sig), -EACCES);
    /* and a leave for w1 */
    len = p2p_gossip_leave_tbs("w1", 9, sig.cert_id, tbs, sizeof tbs);
    assert_int_equal(p2p__records_sign(w2, tbs, (size_t)len, &sig), 0);
    assert_int_equal(p2p__records_verify(c, "w1", NULL, tbs, (size_t)len, &sig), -EACCES);
    p2p__records_stats st;
    p2p__records_get_stats(c, &st);
    assert_int_equal(st.refused_id, 2);
    assert_int_equal(st.verified, 0);
    p2p__records_free(w2);
    p2p__records_free(c);
}

static void test_role_mismatch(void **state)
{
    (void)state;
    p2p__records *w1 = node_as(&F.w1), *c = node_as(&F.coord), *w2 = node_as(&F.w2);
    assert_string_equal(p2p__records_own_role(c), "coordinator");
    assert_int_equal(p2p__records_add_cert(w2, F.w1.der, F.w1.der_len, NULL), 0);
    assert_int_equal(p2p__records_add_cert(w2, F.coord.der, F.coord.der_len, NULL), 0);
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_sig sig;
    /* a worker claiming the coordinator's role in its own, well signed, record */
    int len = signed_record(w1, "w1", "coordinator", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(w2, "w1", "coordinator", tbs, (size_t)len, &sig), -EACCES);
    /* the coordinator as a worker: also a mismatch (the OU says exactly one role) */
    len = signed_record(c, "coord", "worker", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(w2, "coord", "worker", tbs, (size_t)len, &sig), -EACCES);
    len = signed_record(c, "coord", "coordinator", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(w2, "coord", "coordinator", tbs, (size_t)len, &sig), 0);
    p2p__records_stats st;
    p2p__records_get_stats(w2, &st);
    assert_int_equal(st.refused_role, 2);
    assert_int_equal(st.verified, 1);
    p2p__records_free(w1);
    p2p__records_free(c);
    p2p__records_free(w2);
}

static void test_tampered_and_unsigned(void **state)
{
    (void)state;
    p2p__records *a = node_as(&F.w1), *b = node_as(&F.w2);
    assert_int_equal(p2p__records_add_cert(b, F.w1.der, F.w1.der_len, NULL), 0);
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_sig sig;
    int len = signed_record(a, "w1", "worker", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &sig), 0);
    /* every byte of the record counts (the label, the port, an address, the cert id) */
    for (int i = 0; i < len; i++) {
        tbs[i] ^= 0x20;
        assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &sig), -EBADMSG);
        tbs[i] ^= 0x20;
    }
    /* a shorter record, a longer one */
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len - 1, &sig), -EBADMSG);
    /* the signature itself */
    p2p_gossip_sig bad = sig;
    bad.sig[bad.len / 2] ^= 0x01;
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &bad), -EBADMSG);
    bad = sig;
    bad.len = 8;
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &bad), -EBADMSG);
    /* another certificate id: unknown, not a pass */
    bad = sig;
    bad.cert_id[0] ^= 0xff;
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &bad), -ENOKEY);
    /* unsigned */
    bad = sig;
    bad.len = 0;
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &bad), -EBADMSG);
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, NULL), -EBADMSG);
    p2p__records_stats st;
    p2p__records_get_stats(b, &st);
    assert_int_equal(st.refused_sig, (uint64_t)len + 3);
    assert_int_equal(st.refused_unsigned, 2);
    assert_int_equal(st.unknown_cert, 1);
    assert_int_equal(st.verified, 1);
    assert_int_equal(ERR_peek_error(), 0);
    p2p__records_free(a);
    p2p__records_free(b);
}

static void test_certificate_without_ou(void **state)
{
    (void)state;
    p2p__records *old = node_as(&F.legacy), *b = node_as(&F.w2);
    assert_string_equal(p2p__records_own_role(old), "");
    assert_int_equal(p2p__records_add_cert(b, F.legacy.der, F.legacy.der_len, NULL), 0);
    p2p__records_stats st;
    p2p__records_get_stats(b, &st);
    assert_int_equal(st.legacy_certs, 1);
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_sig sig;
    /* it vouches for its id as a worker ... */
    int len = signed_record(old, "w3", P2P_RECORDS_LEGACY_ROLE, tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(b, "w3", "worker", tbs, (size_t)len, &sig), 0);
    /* ... and for its leave (no role) ... */
    len = p2p_gossip_leave_tbs("w3", 3, sig.cert_id, tbs, sizeof tbs);
    assert_int_equal(p2p__records_sign(old, tbs, (size_t)len, &sig), 0);
    assert_int_equal(p2p__records_verify(b, "w3", NULL, tbs, (size_t)len, &sig), 0);
    /* ... never for the coordinator's role, nor any other */
    len = signed_record(old, "w3", "coordinator", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(b, "w3", "coordinator", tbs, (size_t)len, &sig), -EACCES);
    len = signed_record(old, "w3", "gpu", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(b, "w3", "gpu", tbs, (size_t)len, &sig), -EACCES);
    /* nor for another id */
    len = signed_record(old, "w1", "worker", tbs, sizeof tbs, &sig);
    assert_int_equal(p2p__records_verify(b, "w1", "worker", tbs, (size_t)len, &sig), -EACCES);
    p2p__records_get_stats(b, &st);
    assert_int_equal(st.verified, 2);
    assert_int_equal(st.refused_role, 2);
    assert_int_equal(st.refused_id, 1);
    p2p__records_free(old);
    p2p__records_free(b);
}

static void test_cache_bound(void **state)
{
    (void)state;
    char *err = NULL;
    p2p__records *r = p2p__records_new(F.ca, 2, &err);
    assert_non_null(r);
    assert_int_equal(p2p__records_add_cert(r, F.w1.der, F.w1.der_len, NULL), 0);
    assert_int_equal(p2p__records_add_cert(r, F.w2.der, F.w2.der_len, NULL), 0);
    const uint8_t *der;
    size_t len;
    assert_int_equal(p2p__records_cert_der(r, cert_id_of(&F.w1), &der, &len), 0); /* w1 used: w2 is older */
    assert_int_equal(p2p__records_add_cert(r, F.coord.der, F.coord.der_len, NULL), 0);
    assert_int_equal(p2p__records_cached(r), 2);
    assert_int_equal(p2p__records_cert_der(r, cert_id_of(&F.w2), &der, &len), -ENOENT);
    assert_int_equal(p2p__records_cert_der(r, cert_id_of(&F.w1), &der, &len), 0);
    assert_int_equal(len, F.w1.der_len);
    assert_memory_equal(der, F.w1.der, len);
    p2p__records_stats st;
    p2p__records_get_stats(r, &st);
    assert_int_equal(st.certs_evicted, 1);
    /* no identity yet: nothing to sign with */
    p2p_gossip_sig sig;
    assert_int_equal(p2p__records_sign(r, (const uint8_t *)"x", 1, &sig), -ENOKEY);
    p2p__records_free(r);
    /* no CA */
    assert_null(p2p__records_new("not a certificate", 0, &err));
    assert_non_null(err);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_and_fetch), cmocka_unit_test(test_wrong_ca_and_bad_certificates),
        cmocka_unit_test(test_cn_mismatch),           cmocka_unit_test(test_role_mismatch),
        cmocka_unit_test(test_tampered_and_unsigned), cmocka_unit_test(test_certificate_without_ou),
        cmocka_unit_test(test_cache_bound),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
