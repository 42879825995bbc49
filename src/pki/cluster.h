/*
 * cluster.h — the "pki" component: the node's certificate, key and CA as the
 * TLS layer uses them, renewal, and on the coordinator the certificate
 * authority's side of enrollment (join tokens, challenge checks, signing) and
 * the "auth" RPC service (create_join_token, list_join_tokens,
 * revoke_join_token).
 *
 * Where the material comes from:
 *   - ssl_cert_file/ssl_key_file set: the operator's files (no renewal);
 *   - coordinator: its vault; on first start it creates the cluster CA (ECDSA
 *     P-256, 10 years), its own certificate, the gossip key and a bootstrap join
 *     token (24 h, 10 uses) printed once in the log;
 *   - worker: its vault, filled by enrollment (enroll.h) before the component starts.
 *
 * Renewal: a timer checks the certificate every lifetime/20 (between 1 s and
 * 10 min). When it expires within cert_renew_before seconds or the node's
 * addresses are no longer all in it, the node makes a new key and CSR; the
 * coordinator signs it itself, a worker sends it to POST /internal/cert-renew
 * over mutual TLS with its current certificate. The new material goes to the
 * vault and then to the TLS layer for new connections; established connections
 * keep theirs.
 */
#ifndef P2P_PKI_CLUSTER_H
#define P2P_PKI_CLUSTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

/* Adds the "pki" component (after "security", which owns the vault's JWT secret). */
int p2p__pki_register(p2p_ctx *ctx);

/* The current certificate, key and CA bundle (PEM, borrowed: valid until the next
 * change notification). Any may be NULL when TLS is off. */
typedef struct p2p_tls_material {
    const char *cert, *key, *ca;
} p2p_tls_material;
int p2p__pki_material(p2p_ctx *ctx, p2p_tls_material *out);

/* Called on the loop after renewal installed new material (up to 4 listeners;
 * -ENOSPC beyond). off_change removes one. */
int p2p__pki_on_change(p2p_ctx *ctx, void (*cb)(p2p_ctx *ctx, void *arg), void *arg);
void p2p__pki_off_change(p2p_ctx *ctx, void (*cb)(p2p_ctx *ctx, void *arg), void *arg);

/* The cluster gossip key (32 bytes) or NULL. */
const uint8_t *p2p__pki_gossip_key(p2p_ctx *ctx);

/* Answer callback of the asynchronous handlers below: an HTTP status and a JSON
 * body (stolen). Runs on the loop, exactly once, maybe before the call returns. */
typedef void (*p2p_pki_reply)(int status, json_t *body, void *arg);

/* POST /internal/cert-request (coordinator): body, the address the request came from. */
void p2p__pki_cert_request(p2p_ctx *ctx, const char *body, size_t len, const char *peer_ip, p2p_pki_reply cb,
                           void *arg);
/* POST /internal/cert-renew (coordinator): {"csr": PEM} from a node authenticated by
 * its certificate; the CSR must be for that node id. */
void p2p__pki_cert_renew(p2p_ctx *ctx, const char *body, size_t len, const char *peer_node, const char *peer_ip,
                         p2p_pki_reply cb, void *arg);

/* The component's routes (pki/http_pki.c), added at start, removed at stop. */
int p2p__pki_http_start(p2p_ctx *ctx);
void p2p__pki_http_stop(p2p_ctx *ctx);

/* 1 if `cert` (a peer's certificate in a TLS verify callback) is revoked: on the
 * coordinator, a certificate of a node id that was replaced (registry.h). 0
 * otherwise, and on nodes that keep no registry. */
struct x509_st;
int p2p__pki_cert_revoked(p2p_ctx *ctx, const struct x509_st *cert);

/* The revoked node certificates not yet expired, a new reference:
 * [{"fingerprint": SHA-256 hex of the DER, "node_id", "revoked_at", "expires_at"}]
 * (an empty array on nodes that keep no registry). For cluster-wide propagation:
 * a node that learns these refuses them as p2p__pki_cert_revoked does. */
json_t *p2p__pki_revoked_certs(p2p_ctx *ctx);

/* Counters for /metrics. */
typedef struct p2p_pki_stats {
    uint64_t enrolled, enroll_refused, renewed_issued; /* coordinator: certificates issued */
    uint64_t renewals, renewal_failures;               /* this node's own certificate */
    int64_t cert_not_after;                            /* Unix seconds, 0 when unknown */
} p2p_pki_stats;
int p2p__pki_stats(p2p_ctx *ctx, p2p_pki_stats *out);

/* The CA and the certificates the coordinator issued, for the dashboard:
 * {"ca": {subject, not_before, not_after, fingerprint}, "nodes": [{node_id,
 * role, serial, not_after, fingerprint, addresses: [], revoked}]} (a new
 * reference; "nodes" is empty on nodes that keep no registry), or NULL
 * without a CA. */
json_t *p2p__pki_certificates_json(p2p_ctx *ctx);

#endif
