/*
 * tls.c — self-made CA and node certificate, and the server TLS context.
 *
 * OpenSSL 3 EVP APIs only. Files are written through p2p__write_file_atomic, so
 * a crash during first start leaves either nothing or a complete file; a CA
 * without its node certificate is completed on the next start.
 */
#include "http/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "h2o.h"
#include "h2o/http2.h"

static char *ssl_err_text(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return p2p__xasprintf("%s%s%s", what, e ? ": " : "", buf);
}

static int write_pem_key(const char *path, EVP_PKEY *key)
{
    BIO *mem = BIO_new(BIO_s_mem());
    int r = -EIO;
    if (mem && PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data;
        long len = BIO_get_mem_data(mem, &data);
        r = p2p__write_file_atomic(path, data, (size_t)len, 0600);
    }
    BIO_free(mem);
    return r;
}

static int write_pem_cert(const char *path, X509 *cert)
{
    BIO *mem = BIO_new(BIO_s_mem());
    int r = -EIO;
    if (mem && PEM_write_bio_X509(mem, cert) == 1) {
        char *data;
        long len = BIO_get_mem_data(mem, &data);
        r = p2p__write_file_atomic(path, data, (size_t)len, 0644);
    }
    BIO_free(mem);
    return r;
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

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, long days, int is_ca,
                       const char *san)
{
    X509 *cert = X509_new();
    if (!cert)
        return NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    if (!sn || X509_set_serialNumber(cert, sn) != 1)
        goto fail;
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -300);
    X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400L);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"p2pcore", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : cert;
    if (is_ca) {
        if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
            add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign") ||
            add_ext(cert, iss, NID_subject_key_identifier, "hash"))
            goto fail;
    } else {
        if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE") ||
            add_ext(cert, iss, NID_key_usage, "critical,digitalSignature,keyAgreement") ||
            add_ext(cert, iss, NID_ext_key_usage, "serverAuth,clientAuth") ||
            add_ext(cert, iss, NID_subject_key_identifier, "hash") ||
            add_ext(cert, iss, NID_authority_key_identifier, "keyid") ||
            (san && add_ext(cert, iss, NID_subject_alt_name, san)))
            goto fail;
    }
    if (X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
        goto fail;
    BN_free(bn);
    ASN1_INTEGER_free(sn);
    return cert;
fail:
    BN_free(bn);
    ASN1_INTEGER_free(sn);
    X509_free(cert);
    return NULL;
}

static int is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static char *build_san(const char *node_id, const char *const *names, size_t n)
{
    size_t cap = 256 + strlen(node_id);
    for (size_t i = 0; i < n; i++)
        cap += strlen(names[i]) + 8;
    char *san = p2p__xmalloc(cap);
    snprintf(san, cap, "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", node_id);
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !*names[i] || strcmp(names[i], "0.0.0.0") == 0 || strcmp(names[i], "::") == 0 ||
            strcmp(names[i], "127.0.0.1") == 0 || strcmp(names[i], "::1") == 0 ||
            strcmp(names[i], "localhost") == 0 || strcmp(names[i], node_id) == 0)
            continue; /* wildcards, or already named above */
        strcat(san, is_ip(names[i]) ? ",IP:" : ",DNS:");
        strcat(san, names[i]);
    }
    return san;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return c;
}

int p2p__tls_ensure_self_signed(const char *certs_dir, const char *node_id, const char *const *names, size_t n_names,
                                char **err)
{
    char *ca_crt = p2p__xasprintf("%s/ca.crt", certs_dir), *ca_key = p2p__xasprintf("%s/ca.key", certs_dir);
    char *crt = p2p__xasprintf("%s/node.crt", certs_dir), *key = p2p__xasprintf("%s/node.key", certs_dir);
    EVP_PKEY *cakey = NULL, *nodekey = NULL;
    X509 *cacert = NULL, *nodecert = NULL;
    char *san = NULL;
    int r = 0;

    if (access(crt, R_OK) == 0 && access(key, R_OK) == 0)
        goto out; /* already provisioned */
    if ((r = p2p__mkdir_p(certs_dir, 0700)) != 0) {
        *err = p2p__xasprintf("cannot create %s: %s", certs_dir, strerror(-r));
        goto out;
    }
    if (access(ca_crt, R_OK) == 0 && access(ca_key, R_OK) == 0) {
        cakey = load_key(ca_key);
        cacert = load_cert(ca_crt);
        if (!cakey || !cacert) {
            *err = p2p__xasprintf("cannot read the CA in %s (remove ca.crt and ca.key to make a new one)", certs_dir);
            r = -EINVAL;
            goto out;
        }
    } else {
        cakey = EVP_EC_gen("P-256");
        cacert = cakey ? make_cert(cakey, "p2pcore node CA", NULL, NULL, 3650, 1, NULL) : NULL;
        if (!cacert) {
            *err = ssl_err_text("cannot create the CA");
            r = -EIO;
            goto out;
        }
        if ((r = write_pem_key(ca_key, cakey)) != 0 || (r = write_pem_cert(ca_crt, cacert)) != 0) {
            *err = p2p__xasprintf("cannot write the CA in %s: %s", certs_dir, strerror(-r));
            goto out;
        }
    }
    san = build_san(node_id, names, n_names);
    nodekey = EVP_EC_gen("P-256");
    nodecert = nodekey ? make_cert(nodekey, node_id, cacert, cakey, 365, 0, san) : NULL;
    if (!nodecert) {
        *err = ssl_err_text("cannot create the node certificate");
        r = -EIO;
        goto out;
    }
    /* Key first: a certificate is only ever present together with its key. */
    if ((r = write_pem_key(key, nodekey)) != 0 || (r = write_pem_cert(crt, nodecert)) != 0) {
        *err = p2p__xasprintf("cannot write the node certificate in %s: %s", certs_dir, strerror(-r));
        goto out;
    }
out:
    EVP_PKEY_free(cakey);
    EVP_PKEY_free(nodekey);
    X509_free(cacert);
    X509_free(nodecert);
    free(san);
    free(ca_crt);
    free(ca_key);
    free(crt);
    free(key);
    return r;
}

SSL_CTX *p2p__tls_server_ctx(const char *cert_file, const char *key_file, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *err = ssl_err_text("SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    static const unsigned char sid_ctx[] = "p2pcore";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        *err = ssl_err_text(cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        *err = ssl_err_text(key_file);
        goto fail;
    }
    /* h2o's own list names only h2; clients that offer just http/1.1 should see it chosen. */
    static const h2o_iovec_t alpn[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL, 0}};
    h2o_ssl_register_alpn_protocols(ctx, alpn);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
