/*
 * tls.h — the node's TLS material and server context.
 *
 * The coordinator makes the cluster CA and its own certificate on first start
 * (ECDSA P-256; CA 10 years, node cert_lifetime; SANs: its id and addresses)
 * and keeps the keys in its vault. Workers get theirs by enrollment (pki/enroll.h).
 */
#ifndef P2P_HTTP_TLS_H
#define P2P_HTTP_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

struct vault;

/* The node's certificate and key (heap PEM; free the key with pki_secret_free):
 * from the vault, made on first start (a CA of its own, 10 years, and a node
 * certificate for `lifetime_s`, OU=coordinator, with SANs node id and `names`,
 * the node's real addresses: p2p__node_names). Writes the public CA certificate to <state_dir>/certs/ca.crt. */
int p2p__tls_node_material(struct vault *v, const char *state_dir, const char *node_id, const char *const *names,
                           size_t n_names, long lifetime_s, char **cert_pem, char **key_pem, char **err);

/* Writes the public CA certificate to <state_dir>/certs/ca.crt (mode 0644) for
 * clients, unless it already holds exactly that. 0 or a negative errno. */
int p2p__tls_write_public_ca(const char *state_dir, const char *ca_pem);

/* A server SSL_CTX: TLS 1.2+, ECDHE AEAD suites, ALPN h2 and http/1.1. The
 * certificate and key come from PEM text when `cert_pem` is set, else from files. */
SSL_CTX *p2p__tls_server_ctx(const char *cert_file, const char *key_file, const char *cert_pem, const char *key_pem,
                              char **err);

/* Mutual TLS on a server context: trust the CA certificates in `ca_pem`, ask
 * every client for a certificate (not required), fail the handshake when one is
 * presented that does not verify, and call `verify_cb` (OpenSSL's callback) with
 * `app` as the context's app data. */
int p2p__tls_client_auth(SSL_CTX *ctx, const char *ca_pem, int (*verify_cb)(int, X509_STORE_CTX *), void *app,
                         char **err);
#endif
