/*
 * records.h — node records owned by their node: signing our own ALIVE records
 * and leaves with the node's certificate key, checking the records of others,
 * and the cache of the certificates that vouch for them.
 *
 * Why. Every node of the cluster holds the gossip key, so a sealed datagram
 * proves only "some member of the cluster sent this", and the push-pull route
 * only "some node certificate". Before signed records, any node could gossip
 * or push an ALIVE for another node with a higher incarnation and new
 * addresses or role, or a leave for it (issue 9, finding 4). Now the part of
 * a record only its node may say — addresses, port, role, meta (services,
 * capabilities, metadata), and "I left" — carries the node's own signature:
 *
 *   - X signs its ALIVE (p2p_gossip_alive_tbs: id, incarnation, port,
 *     addresses, role, meta, and the id of the certificate) and its leave
 *     (p2p_gossip_leave_tbs) with the ECDSA P-256 key of its cluster
 *     certificate. Anyone may relay the signed record unchanged, by gossip,
 *     sync or push-pull; nobody else can make or change one.
 *   - A record names its certificate by id (first 8 bytes of SHA-256 of the
 *     DER). A receiver that does not have that certificate asks the node that
 *     sent the datagram for it (CERT_REQ / CERT frames, codec.h), or gets it
 *     with the record in push-pull. A certificate enters the cache only after
 *     it chains to the cluster CA (X509_verify_cert: signature, validity
 *     period); from then on a record costs one ECDSA verification, and only
 *     when it would change our view (a new member or a higher incarnation: the
 *     swim state machine never verifies a record it would ignore).
 *   - The record is accepted when the certificate's CN is the record's id,
 *     the certificate's role (subject OU, issued by enrollment) is the
 *     record's role, and the signature verifies.
 *   - A certificate without an OU was issued before roles went into
 *     certificates (or by an operator, ssl_cert_file). It vouches for the id
 *     and for the role "worker" only (P2P_RECORDS_LEGACY_ROLE), never for
 *     "coordinator". Why not refuse it outright: every certificate of a
 *     cluster upgraded in place lacks the OU until it is renewed, and
 *     refusing them would split the cluster until then. Why not accept any
 *     role: the role is what "role:coordinator" routing (operator calls, with
 *     the operator's token forwarded) and the revocation sync look for, so a
 *     worker with an old certificate could otherwise draw them to itself. The
 *     price: a coordinator whose certificate has no OU is not accepted as a
 *     member by the others — so the pki component renews a certificate
 *     without OU at its first check (at start; the coordinator signs its own
 *     at once, a worker asks the coordinator), and an operator's coordinator
 *     certificate must carry OU=coordinator. Such certificates are counted
 *     (legacy_certs) when cached.
 *   - SUSPECT and DEAD from other nodes stay unsigned: that is what SWIM is
 *     made of, and they cannot carry a record (an accusation names an id and
 *     an incarnation, never addresses). The node refutes them as before.
 *
 * What this does not stop: a member holding the gossip key can still send
 * false SUSPECT/DEAD (the node refutes them) and can still forge the sealing
 * layer's inner header (sender id, certificate id, sequence numbers) — seal.c
 * keys its replay windows by (sender, certificate id) so that another
 * *honest* identity (an old or replaced certificate, an impostor enrolled
 * with the same node id) never blocks the real node's datagrams, but a
 * malicious key holder can still disturb them. Records stay authentic either way.
 *
 * Cache bound: max_certs certificates (default 4096, ~1.5 KB each with the
 * parsed key); the least recently used one is evicted when a new one comes.
 * Costs measured on this machine: sign ~40 µs, verify ~90 µs, certificate
 * check ~250 µs (once per certificate). One loop thread; not thread-safe.
 */
#ifndef P2P_MEMBERSHIP_RECORDS_H
#define P2P_MEMBERSHIP_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "membership/codec.h"

#define P2P_RECORDS_DEFAULT_MAX_CERTS 4096
/* The only role a certificate without an OU vouches for (see above). */
#define P2P_RECORDS_LEGACY_ROLE "worker"

typedef struct p2p__records p2p__records;

typedef struct p2p__records_stats {
    uint64_t signed_records;  /* our own records and leaves signed */
    uint64_t verified;        /* records and leaves of others accepted */
    uint64_t refused_unsigned; /* no signature at all */
    uint64_t refused_sig;     /* a signature that does not verify */
    uint64_t refused_id;      /* certificate CN is not the record's id */
    uint64_t refused_role;    /* certificate role (OU) is not the record's role (a certificate
                               * without OU vouches only for P2P_RECORDS_LEGACY_ROLE) */
    uint64_t unknown_cert;    /* a record named a certificate we do not have */
    uint64_t certs_added;     /* certificates checked against the CA and cached */
    uint64_t certs_refused;   /* certificates that did not parse or chain to the CA */
    uint64_t certs_evicted;
    uint64_t legacy_certs;    /* cached certificates without a role (OU) */
} p2p__records_stats;

/* A cache trusting `ca_pem` (one or more CA certificates). max_certs 0 = the
 * default. NULL with *err (heap) on a bad CA. */
p2p__records *p2p__records_new(const char *ca_pem, size_t max_certs, char **err);
void p2p__records_free(p2p__records *r);

/* Our identity: certificate and private key (PEM). The certificate must chain
 * to the CA and match the key. Replaces the previous one (renewal); the CA may
 * change too (ca_pem non-NULL: the cache is emptied). 0 or -EINVAL/-EACCES. */
int p2p__records_set_identity(p2p__records *r, const char *cert_pem, const char *key_pem, const char *ca_pem,
                              char **err);
/* The id of our certificate (all zero before set_identity). */
const uint8_t *p2p__records_own_cert_id(const p2p__records *r);
/* Our subject OU (role), or "" when the certificate has none. */
const char *p2p__records_own_role(const p2p__records *r);

/* Signs tbs[len] with our key into *sig (cert_id = ours). 0, -ENOKEY (no
 * identity) or -EIO. */
int p2p__records_sign(p2p__records *r, const uint8_t *tbs, size_t len, p2p_gossip_sig *sig);

/* Checks that `sig` over tbs[len] is by the certificate sig->cert_id, that its
 * CN is `id` and, when `role` is not NULL, that its OU is `role` (without an
 * OU: that `role` is P2P_RECORDS_LEGACY_ROLE). 0, -ENOKEY (certificate not
 * cached: ask for it), -EBADMSG (no or bad signature), -EACCES (CN or role
 * mismatch). Counted. */
int p2p__records_verify(p2p__records *r, const char *id, const char *role, const uint8_t *tbs, size_t len,
                        const p2p_gossip_sig *sig);

/* Adds a certificate (DER) after checking it against the CA. When `expect`
 * is not NULL the certificate's id must be it. 0 (also when already cached),
 * -EINVAL (does not parse, wrong id), -EACCES (does not chain, a CA, no valid CN). */
int p2p__records_add_cert(p2p__records *r, const uint8_t *der, size_t len, const uint8_t *expect);

/* A cached certificate's DER (borrowed until the next call), or -ENOENT. */
int p2p__records_cert_der(p2p__records *r, const uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN], const uint8_t **der,
                          size_t *len);

/* The id of a certificate in DER. */
void p2p__records_cert_id(const uint8_t *der, size_t len, uint8_t out[P2P_GOSSIP_CERT_ID_LEN]);

void p2p__records_get_stats(const p2p__records *r, p2p__records_stats *out);
size_t p2p__records_cached(const p2p__records *r);

#endif
