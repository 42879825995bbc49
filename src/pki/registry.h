/*
 * registry.h — the coordinator's registry of enrolled node identities, and the
 * certificates it revoked.
 *
 * A node id, once it has a certificate from the cluster CA, belongs to that
 * node: a join token cannot get another certificate for it (issue 9: anyone
 * holding a join token could otherwise enroll as a live worker, or as the
 * coordinator, and have the cluster route that node's calls to them). The
 * registry remembers every id the CA issued a certificate for, alive or not:
 * its role, the current certificate (SHA-256 fingerprint, serial, notAfter),
 * when it was first issued and last renewed, and whether the id was ever
 * replaced. The coordinator's own id is entered at its first start.
 *
 * Replacing a node (the operator's replacement join token, bound to one id)
 * issues a new certificate for the id and revokes the old ones: the current
 * certificate and those it superseded by renewal that are still valid (at most
 * REGISTRY_MAX_PREVIOUS per node; a renewal pushes out the one closest to
 * expiry). A revoked certificate is listed by fingerprint until its notAfter,
 * then pruned: an expired certificate is refused anyway.
 *
 * Renewal does not revoke the certificate it supersedes: a worker whose renewal
 * answer was lost retries with its current certificate, which must still open
 * the coordinator's door.
 *
 * Persisted form (in the coordinator's vault), strictly validated on load:
 *   {"version":1,
 *    "nodes":[{"id":ID,"role":ROLE,"fingerprint":HEX64,"serial":HEX,"not_after":S,
 *              "issued_at":S,"renewed_at":S,"replaced":BOOL,
 *              "previous":[{"fingerprint":HEX64,"expires_at":S},...]},...],
 *    "revoked":[{"fingerprint":HEX64,"node_id":ID,"revoked_at":S,"expires_at":S},...]}
 * exactly these members; ids are node ids (pki_node_id_valid) and distinct,
 * roles are role names (pki_role_valid), fingerprints 64 lowercase hex digits,
 * serials 1..40 lowercase hex digits, times 0..REGISTRY_MAX_TIME, at most
 * REGISTRY_MAX_NODES nodes and REGISTRY_MAX_REVOKED revoked certificates.
 *
 * Pure: time is passed in (Unix seconds), no I/O, nothing global. Lookups are
 * linear scans: the tables are bounded, and enrollment, renewal and a TLS
 * handshake's revocation check happen at human or connection rate.
 * Errors: 0 or a negative errno.
 */
#ifndef P2P_PKI_REGISTRY_H
#define P2P_PKI_REGISTRY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "pki/pki.h"

#define REGISTRY_MAX_NODES 8192
#define REGISTRY_MAX_REVOKED 8192
#define REGISTRY_MAX_PREVIOUS 8
#define REGISTRY_MAX_SERIAL 40 /* hex digits: 20 octets (RFC 5280) */
#define REGISTRY_MAX_TIME 253402300799LL

typedef struct registry registry;

/* What the CA issued: a certificate's fingerprint, serial and notAfter. */
typedef struct registry_cert {
    char fingerprint[PKI_FINGERPRINT_LEN + 1];
    char serial[REGISTRY_MAX_SERIAL + 1];
    int64_t not_after;
} registry_cert;

typedef struct registry_node {
    char id[PKI_MAX_NODE_ID + 1];
    char role[PKI_MAX_ROLE + 1];
    registry_cert cert;
    int64_t issued_at, renewed_at;
    int replaced;
    size_t n_previous;
    struct {
        char fingerprint[PKI_FINGERPRINT_LEN + 1];
        int64_t expires_at;
    } previous[REGISTRY_MAX_PREVIOUS];
} registry_node;

registry *registry_new(void);
void registry_free(registry *r);

/* The entry for `id`, or NULL. Valid until the registry changes. */
const registry_node *registry_find(const registry *r, const char *id);
size_t registry_count(const registry *r);

/* A first certificate for `id` (not in the registry). 0, -EEXIST (enrolled
 * already), -ENOSPC (REGISTRY_MAX_NODES), -EINVAL (arguments). */
int registry_enroll(registry *r, const char *id, const char *role, const registry_cert *c, int64_t now);

/* A renewed certificate for `id` (in the registry, or added: a node enrolled
 * before the registry existed). The role stays as it was (`role` is used for a
 * new entry). 0, -ENOSPC, -EINVAL. */
int registry_renew(registry *r, const char *id, const char *role, const registry_cert *c, int64_t now);

/* A replacement: `id` gets certificate `c` with `role`; its current and previous
 * certificates that are still valid at `now` are revoked. Works for an id not
 * in the registry too. 0, -ENOSPC (revoked list full after pruning: nothing
 * changed), -EINVAL. *n_revoked (may be NULL) = how many were revoked. */
int registry_replace(registry *r, const char *id, const char *role, const registry_cert *c, int64_t now,
                     size_t *n_revoked);

/* 1 if the certificate with this fingerprint is revoked, else 0. */
int registry_is_revoked(const registry *r, const char *fingerprint);

/* Forgets revoked and previous certificates expired at `now`; returns how many. */
size_t registry_prune(registry *r, int64_t now);

/* The revoked certificates, a new reference:
 * [{"fingerprint":HEX64,"node_id":ID,"revoked_at":S,"expires_at":S},...]. */
json_t *registry_revoked_json(const registry *r);

/* The persisted form above (a new reference), and back. from_json is
 * all-or-nothing: 0 and *out, or -EINVAL with a heap message in *err (optional)
 * naming the member. */
json_t *registry_to_json(const registry *r);
int registry_from_json(const json_t *doc, registry **out, char **err);

#endif
