/*
 * fuzz_records.c — libFuzzer target for the certificate and signature input of
 * src/membership/records.c: the DER of a CERT frame or of a push-pull record's
 * certificate (p2p__records_add_cert: d2i_X509, the chain to the cluster CA,
 * CN and OU), and the ECDSA signature carried in a record (p2p__records_verify).
 * A fixed CA and a node certificate (CN=w1, OU=worker; both valid until 2126)
 * are built in; the seeds are that certificate, one without an OU, and a
 * signature by w1's key over FUZZ_TBS, all from the same CA. Each input is:
 *   1. a certificate for add_cert, without and with an expected id (its first 8
 *      bytes): 0, -EINVAL or -EACCES only; once accepted it is cached under its
 *      id with the same bytes, and adding it again is 0;
 *   2. a signature (up to 72 bytes) by w1's certificate over FUZZ_TBS, checked
 *      for w1 as a worker, as a coordinator (never 0: OU mismatch) and for
 *      another id (never 0: CN mismatch).
 * Invariants: only the documented codes, the cache bound, OpenSSL's error queue
 * left empty; a crash, leak, UB or failed invariant is a finding.
 */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "membership/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

#define FUZZ_TBS "p2p-fuzz-records-tbs"
#define MAX_CERTS 8

static const char CA_PEM[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBjDCCATGgAwIBAgIUatk0uI/8vhdth87lwajSdKLXF/kwCgYIKoZIzj0EAwIw\n"
                             "EjEQMA4GA1UEAwwHZnV6ei1jYTAgFw0yNjEyMDIxMTI0MDlaGA8yMTI2MTEwODEx\n"
                             "MjQwOVowEjEQMA4GA1UEAwwHZnV6ei1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
                             "A0IABDB1Pys9IRKDBuBoDsPJV9oY7O7BUqIWN9F5n59DNvhHyVwM/CtMqHIFm+xC\n"
                             "vST3xO202a1WtSIuFsZPKdjSCr6jYzBhMB0GA1UdDgQWBBTfpV6WiwYkZv+Bg2i/\n"
                             "lpp7A8Qd5jAfBgNVHSMEGDAWgBTfpV6WiwYkZv+Bg2i/lpp7A8Qd5jAPBgNVHRMB\n"
                             "Af8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNJADBGAiEAvEjM\n"
                             "shhEB84LQRNuag3n7Lv0l4Ud/vaPZs6HMGWxDmACIQD+JBVrqsaXItqvDRsclzS9\n"
                             "YAnzU//Kl01nFzo+ZiVgJw==\n"
                             "-----END CERTIFICATE-----\n";

static const char W1_PEM[] = "-----BEGIN CERTIFICATE-----\n"
                             "MIIBrjCCAVWgAwIBAgIUDx1//SgChccGwYFLOG/sXWg39gswCgYIKoZIzj0EAwIw\n"
                             "EjEQMA4GA1UEAwwHZnV6ei1jYTAgFw0yNjEyMDIxMTI0MDlaGA8yMTI2MTEwODEx\n"
                             "MjQwOVowHjELMAkGA1UEAwwCdzExDzANBgNVBAsMBndvcmtlcjBZMBMGByqGSM49\n"
                             "AgEGCCqGSM49AwEHA0IABLwdgxKEu9v7cZVjdFJ07uJOJUYYQPpWXO27ZcvFloQM\n"
                             "/eoLg1DHPlkaKq+XGc9ARdCM7UY8T7/xe3UVrI6gdW+jezB5MAkGA1UdEwQCMAAw\n"
                             "HQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMA0GA1UdEQQGMASCAncxMB0G\n"
                             "A1UdDgQWBBRP3/rjXo+jZpziJnzL9KA+BtiWjDAfBgNVHSMEGDAWgBTfpV6WiwYk\n"
                             "Zv+Bg2i/lpp7A8Qd5jAKBggqhkjOPQQDAgNHADBEAiBV4YEDqburBbGMfN365pP/\n"
                             "jRcddeuclbm7a25xoCSV8AIgRPUIqeSIjfJRmH2WPlmMpDcO9IcmcV0z8eSXjJM7\n"
                             "Soc=\n"
                             "-----END CERTIFICATE-----\n";

static p2p__records *R;
static uint8_t W1_ID[P2P_GOSSIP_CERT_ID_LEN];

static void init(void)
{
    char *err = NULL;
    R = p2p__records_new(CA_PEM, MAX_CERTS, &err);
    CHECK(R && !err);
    BIO *b = BIO_new_mem_buf(W1_PEM, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    unsigned char *der = NULL;
    int n = x ? i2d_X509(x, &der) : -1;
    CHECK(n > 0);
    CHECK(p2p__records_add_cert(R, der, (size_t)n, NULL) == 0);
    p2p__records_cert_id(der, (size_t)n, W1_ID);
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
}

static void cert_input(const uint8_t *data, size_t size, const uint8_t *expect)
{
    int rc = p2p__records_add_cert(R, data, size, expect);
    CHECK(rc == 0 || rc == -EINVAL || rc == -EACCES);
    CHECK(ERR_peek_error() == 0);
    CHECK(p2p__records_cached(R) <= MAX_CERTS);
    if (rc != 0)
        return;
    uint8_t id[P2P_GOSSIP_CERT_ID_LEN];
    p2p__records_cert_id(data, size, id);
    CHECK(!expect || !memcmp(id, expect, sizeof id));
    const uint8_t *der = NULL;
    size_t len = 0;
    CHECK(p2p__records_cert_der(R, id, &der, &len) == 0);
    CHECK(len == size && !memcmp(der, data, size));
    CHECK(p2p__records_add_cert(R, data, size, id) == 0);
}

static void sig_input(const uint8_t *data, size_t size)
{
    p2p_gossip_sig sig;
    memset(&sig, 0, sizeof sig);
    memcpy(sig.cert_id, W1_ID, sizeof sig.cert_id);
    sig.len = (uint8_t)(size < P2P_GOSSIP_SIG_MAX ? size : P2P_GOSSIP_SIG_MAX);
    memcpy(sig.sig, data, sig.len);
    const uint8_t *tbs = (const uint8_t *)FUZZ_TBS;
    size_t n = sizeof FUZZ_TBS - 1;
    /* w1 may have been evicted by accepted inputs: then -ENOKEY */
    int rc = p2p__records_verify(R, "w1", "worker", tbs, n, &sig);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -ENOKEY);
    rc = p2p__records_verify(R, "w1", "coordinator", tbs, n, &sig);
    CHECK(rc == -EACCES || rc == -EBADMSG || rc == -ENOKEY);
    rc = p2p__records_verify(R, "w2", NULL, tbs, n, &sig);
    CHECK(rc == -EACCES || rc == -EBADMSG || rc == -ENOKEY);
    CHECK(ERR_peek_error() == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!R)
        init();
    if (size > P2P_GOSSIP_CERT_MAX + 16)
        return 0;
    cert_input(data, size, NULL);
    if (size >= P2P_GOSSIP_CERT_ID_LEN)
        cert_input(data, size, data);
    sig_input(data, size);
    return 0;
}
