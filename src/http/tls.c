/*
 * tls.c — the node's certificate and key (kept in the vault), and the server
 * TLS context.
 *
 * The coordinator is the cluster CA: on first start it makes the CA and its
 * certificate with the PKI module and stores every key in the vault; only the CA
 * certificate (public) is written to <state_directory>/certs/ca.crt for clients.
 * Keys written to disk by earlier versions are moved into the vault. Workers
 * enroll instead (pki/enroll.c).
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
#include "pki/pki.h"
#include "vault/vault.h"
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

/* ---- the node's certificate, from the vault --------------------------------- */

/* Moves PEM files left by versions that kept keys on disk into the vault. */
static int import_legacy(vault *v, const char *dir, const char *file, const char *ns, const char *name, int *dirty,
                         int *had_keyfile)
{
    char *path = p2p__xasprintf("%s/%s", dir, file), *data = NULL;
    size_t len = 0;
    int r = p2p__read_file(path, 1 << 20, &data, &len);
    if (r == 0) {
        vault_put(v, ns, name, data, len);
        *dirty = 1;
        if (strcmp(ns, "keys") == 0)
            *had_keyfile = 1;
        OPENSSL_cleanse(data, len);
        free(data);
    }
    free(path);
    return r;
}

int p2p__tls_write_public_ca(const char *state_dir, const char *ca_pem)
{
    char *dir = p2p__xasprintf("%s/certs", state_dir);
    int r = p2p__mkdir_p(dir, 0700);
    if (r == 0) {
        char *path = p2p__xasprintf("%s/ca.crt", dir), *old = NULL;
        size_t olen = 0;
        if (p2p__read_file(path, 1 << 20, &old, &olen) != 0 || olen != strlen(ca_pem) ||
            memcmp(old, ca_pem, olen) != 0)
            r = p2p__write_file_atomic(path, ca_pem, strlen(ca_pem), 0644);
        free(old);
        free(path);
    }
    free(dir);
    return r;
}

int p2p__tls_node_material(vault *v, const char *state_dir, const char *node_id, const char *const *names,
                           size_t n_names, long lifetime_s, char **cert_pem, char **key_pem, char **err)
{
    char *certs_dir = p2p__xasprintf("%s/certs", state_dir);
    int dirty = 0, had_keyfile = 0, r = 0;
    char *ca = NULL, *ca_key = NULL, *crt = NULL, *key = NULL, *csr = NULL;

    crt = vault_get_text(v, "certificates", "node.crt");
    key = vault_get_text(v, "keys", "node.key");
    ca = vault_get_text(v, "certificates", "ca.crt");
    if (!crt || !key || !ca) {
        /* nothing in the vault yet: take over files from an older version, if any */
        import_legacy(v, certs_dir, "ca.crt", "certificates", "ca.crt", &dirty, &had_keyfile);
        import_legacy(v, certs_dir, "ca.key", "keys", "ca.key", &dirty, &had_keyfile);
        if (import_legacy(v, certs_dir, "node.key", "keys", "node.key", &dirty, &had_keyfile) == 0)
            import_legacy(v, certs_dir, "node.crt", "certificates", "node.crt", &dirty, &had_keyfile);
        free(crt);
        pki_secret_free(key);
        free(ca);
        crt = vault_get_text(v, "certificates", "node.crt");
        key = vault_get_text(v, "keys", "node.key");
        ca = vault_get_text(v, "certificates", "ca.crt");
    }
    if (crt && key && !pki_key_matches_cert(key, crt)) {
        *err = p2p__xstrdup("the node key and certificate in the vault do not match");
        r = -EINVAL;
        goto out;
    }
    if (!crt || !key) {
        ca_key = vault_get_text(v, "keys", "ca.key");
        if (!ca || !ca_key) {
            free(ca);
            pki_secret_free(ca_key);
            ca = ca_key = NULL;
            if ((r = pki_ca_create("p2pcore", 3650, &ca, &ca_key, err)) != 0)
                goto out;
            vault_put(v, "certificates", "ca.crt", ca, strlen(ca));
            vault_put(v, "keys", "ca.key", ca_key, strlen(ca_key));
        }
        pki_secret_free(key);
        free(crt);
        crt = key = NULL;
        const char *all[20];
        size_t n = 0; /* the node's real addresses only (p2p__node_names): loopback when it binds it */
        for (size_t i = 0; i < n_names && n < 20; i++)
            if (names[i] && *names[i] && strcmp(names[i], "0.0.0.0") != 0 && strcmp(names[i], "::") != 0)
                all[n++] = names[i];
        if ((r = pki_key_create(&key, err)) != 0 || (r = pki_csr_create(key, node_id, all, n, &csr, err)) != 0 ||
            (r = pki_sign_node_csr(ca, ca_key, csr, lifetime_s, "coordinator", &crt, err)) != 0)
            goto out;
        vault_put(v, "certificates", "node.crt", crt, strlen(crt));
        vault_put(v, "keys", "node.key", key, strlen(key));
        dirty = 1;
    }
    if (dirty && (r = vault_save(v, err)) != 0)
        goto out;
    if (had_keyfile) { /* in the vault now: no private key stays on disk */
        static const char *const keyfiles[] = {"ca.key", "node.key"};
        for (size_t i = 0; i < 2; i++) {
            char *path = p2p__xasprintf("%s/%s", certs_dir, keyfiles[i]);
            unlink(path);
            free(path);
        }
    }
    if ((r = p2p__tls_write_public_ca(state_dir, ca)) != 0) {
        *err = p2p__xasprintf("cannot write %s/ca.crt: %s", certs_dir, strerror(-r));
        goto out;
    }
    *cert_pem = crt;
    *key_pem = key;
    crt = key = NULL;
out:
    free(ca);
    pki_secret_free(ca_key);
    free(crt);
    pki_secret_free(key);
    free(csr);
    free(certs_dir);
    return r;
}

static int use_pem(SSL_CTX *ctx, const char *cert_pem, const char *key_pem, char **err)
{
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *cert = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int ok = cert && key && SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
             SSL_CTX_check_private_key(ctx) == 1;
    if (!ok)
        *err = ssl_err_text("the node certificate or key is unusable");
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return ok ? 0 : -EINVAL;
}

SSL_CTX *p2p__tls_server_ctx(const char *cert_file, const char *key_file, const char *cert_pem, const char *key_pem,
                              char **err)
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
    if (cert_pem) {
        if (use_pem(ctx, cert_pem, key_pem, err) != 0)
            goto fail;
    } else {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            *err = ssl_err_text(cert_file);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
            *err = ssl_err_text(key_file);
            goto fail;
        }
    }
    /* No session resumption: a resumed session skips the client-certificate check
     * that tells us the peer's node id (see p2p__tls_client_auth). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    /* h2o's own list names only h2; clients that offer just http/1.1 should see it chosen. */
    static const h2o_iovec_t alpn[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL, 0}};
    h2o_ssl_register_alpn_protocols(ctx, alpn);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int p2p__tls_client_auth(SSL_CTX *ctx, const char *ca_pem, int (*verify_cb)(int, X509_STORE_CTX *), void *app,
                         char **err)
{
    BIO *b = BIO_new_mem_buf(ca_pem, -1);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1)
            n++;
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the PEM stream leaves an error behind */
    BIO_free(b);
    if (n == 0) {
        *err = p2p__xstrdup("the CA bundle has no usable certificate");
        return -EINVAL;
    }
    /* Ask for a certificate, do not require one: operators come with tokens. A
     * certificate that does not verify fails the handshake. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    SSL_CTX_set_verify_depth(ctx, 2);
    SSL_CTX_set_app_data(ctx, app);
    return 0;
}
