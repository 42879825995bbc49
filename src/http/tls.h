/*
 * tls.h — the node's TLS material and server context.
 *
 * Until enrollment exists, a node makes its own CA and node certificate in its
 * data directory on first start (ECDSA P-256; CA 10 years, node 1 year; node
 * SANs: its id, localhost, 127.0.0.1, ::1 and its configured addresses).
 */
#ifndef P2P_HTTP_TLS_H
#define P2P_HTTP_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

typedef struct p2p_tls_paths {
    char *ca_cert;
    char *ca_key;
    char *cert;
    char *key;
} p2p_tls_paths;

/* Creates the CA and the node certificate under `certs_dir` when they are missing.
 * `names` are extra SANs (IP literals become IP SANs, others DNS SANs).
 * Keys are written with mode 0600, atomically. Returns 0 or a negative errno with
 * a heap message in `*err`. */
int p2p__tls_ensure_self_signed(const char *certs_dir, const char *node_id, const char *const *names, size_t n_names,
                                char **err);

/* A server SSL_CTX: TLS 1.2+, ECDHE AEAD suites, ALPN h2 and http/1.1. */
SSL_CTX *p2p__tls_server_ctx(const char *cert_file, const char *key_file, char **err);

#endif
