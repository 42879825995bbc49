/*
 * pki.h — the cluster PKI as a library: the coordinator's CA, node keys, CSRs,
 * the name policy a CSR must pass, signing, and the checks a node runs on its
 * own certificate (chain, expiry, renewal). PEM strings in, PEM strings or
 * structs out; no files, no sockets, nothing global.
 *
 * Keys: every key this module makes or accepts in a CSR is ECDSA P-256. RSA and
 * other curves are refused in CSRs on purpose: our own workers only ever make
 * P-256 keys, so a different key type means a foreign client, and one key type
 * keeps the TLS configuration and the attack surface small.
 *
 * Enrollment (ACME-like, see ARCHITECTURE.md): a worker makes its key
 * (pki_key_create) and a CSR (pki_csr_create); the private key never leaves it.
 * The coordinator parses the CSR (pki_csr_parse: self-signature, key type, CN),
 * applies the name policy (pki_csr_check) against the node id the request claims
 * and the address it came from, proves reachability by fetching the challenge
 * from that address, then signs (pki_sign_csr, which applies the policy again).
 *
 * Name policy (pki_csr_check), every rejection naming the offending value:
 *   - node ids are 1..63 characters of [A-Za-z0-9._-] (the node_id config rule);
 *   - the CSR's CN equals the claimed node id (case-sensitive);
 *   - at most PKI_MAX_SANS subjectAltNames (DNS and IP together);
 *   - a DNS SAN is exactly the node id or "localhost"; no wildcards, no other name;
 *   - an IP SAN is a host address: not unspecified (0.0.0.0, ::), not multicast,
 *     not 255.255.255.255, not an IPv4-mapped IPv6 address;
 *   - loopback names (127.0.0.0/8, ::1, DNS "localhost") only when the request
 *     itself came from a loopback address: a node asks for them only when it
 *     binds or advertises loopback (a cluster on one host, the tests on
 *     127.0.0.1), and such a node reaches its coordinator over loopback. A node
 *     elsewhere asking for them names hosts it is not;
 *   - the request's source address is one of the IP SANs (an IPv4-mapped source
 *     address, as a dual-stack socket reports it, counts as its IPv4 form).
 * pki_csr_parse itself refuses SAN types other than DNS and IP (email, URI,
 * otherName, directoryName, ...). Other subject attributes and any extensions
 * the CSR requests (basicConstraints, keyUsage, ...) are ignored: the issued
 * certificate's subject and extensions are built here, never copied.
 *
 * Issued node certificates: subject CN=<node id> and, from pki_sign_node_csr,
 * OU=<role> (the node's role name exactly, "worker", "coordinator", ...: the
 * coordinator decides it, never the CSR); SAN DNS:<node id>, then
 * the CSR's other accepted names (duplicates dropped); serial 0x01 followed by
 * 128 random bits; basicConstraints CA:FALSE (critical), keyUsage
 * digitalSignature (critical), extendedKeyUsage serverAuth+clientAuth, SKI, AKI;
 * notBefore = now - 5 min (clock skew), notAfter = now + lifetime, clamped to the
 * CA's notAfter (a certificate cannot usefully outlive its issuer); ECDSA-SHA256.
 * The CA: subject CN="<cluster name> CA", O=p2pcore; basicConstraints CA:TRUE,
 * pathlen:0 (critical); keyUsage keyCertSign+cRLSign (critical); SKI.
 *
 * PEM input is read strictly where it comes from the network (CSRs): exactly one
 * "CERTIFICATE REQUEST" block, nothing but whitespace around it, no PEM headers,
 * and DER with no trailing bytes. Certificates: one "CERTIFICATE" block (a CA
 * argument may hold several: a bundle of trust anchors, e.g. during a CA change).
 *
 * Errors: 0 or a negative errno; `err` (optional, may be NULL; point it at NULL)
 * receives a heap message on failure, which the caller frees. Codes:
 *   -EINVAL       malformed input or bad argument (unparsable PEM, wrong key type,
 *                 no CN, bad lifetime, ...)
 *   -EBADMSG      a CSR whose self-signature does not verify
 *   -EACCES       refused by policy (csr_check, sign) or by verification (untrusted)
 *   -EKEYEXPIRED  a certificate (or the CA) outside its validity period
 *   -EIO          OpenSSL failed (randomness, key generation, signing)
 * OpenSSL's per-thread error queue is left as it was found (ERR_set_mark /
 * ERR_pop_to_mark), so no stale error reaches the TLS code on the same thread.
 *
 * Private keys come back as PEM in ordinary heap memory; release them with
 * pki_secret_free(), which wipes before freeing. Times are Unix seconds.
 * Every function is thread-safe (no shared state). Costs measured here: key 0.2
 * ms, CA 1 ms, CSR create 1.4 ms, CSR parse 0.4 ms, sign 2 ms, verify 0.5 ms
 * (mostly OpenSSL 3's PEM key decoding): enrollment-rate work, meant for the
 * libuv thread pool in a node.
 */
#ifndef P2P_PKI_PKI_H
#define P2P_PKI_PKI_H

#include <stddef.h>
#include <stdint.h>

#define PKI_MAX_SANS 16                       /* subjectAltNames in a CSR that passes the check */
#define PKI_MAX_NODE_ID 63                    /* characters */
#define PKI_MAX_CLUSTER_NAME 60               /* bytes of printable ASCII */
#define PKI_MAX_CSR_PEM 16384                 /* bytes */
#define PKI_MAX_CERT_PEM 65536                /* bytes, a certificate or a CA bundle */
#define PKI_DEFAULT_CA_DAYS 3650              /* 10 years */
#define PKI_MAX_CA_DAYS 36500                 /* 100 years */
#define PKI_DEFAULT_CERT_LIFETIME_S 31536000L /* 365 days */
#define PKI_MAX_CERT_LIFETIME_S 315360000L    /* 10 years */
#define PKI_DEFAULT_RENEW_BEFORE_S 2592000L   /* 30 days */
#define PKI_BACKDATE_S 300                    /* notBefore = now - 5 min */
#define PKI_MAX_ROLE 31                       /* characters of a role name (as in gossip) */
#define PKI_FINGERPRINT_LEN 64                /* hex digits of a SHA-256 fingerprint */

/* 1 if `id` is a valid node id: 1..63 characters of [A-Za-z0-9._-]. */
int pki_node_id_valid(const char *id);

/* 1 if `role` is a valid role name: 1..31 characters of [A-Za-z0-9._-]. */
int pki_role_valid(const char *role);

/* Creates the cluster CA: a new P-256 key and a self-signed certificate valid
 * for `days` (1..PKI_MAX_CA_DAYS) from now - 5 min. `cluster_name` is 1..60
 * bytes of printable ASCII. On success *ca_cert_pem and *ca_key_pem are heap
 * strings (free the key with pki_secret_free). Store them in the vault. */
int pki_ca_create(const char *cluster_name, long days, char **ca_cert_pem, char **ca_key_pem, char **err);

/* Makes a new EC P-256 private key, PKCS#8 PEM ("PRIVATE KEY"), unencrypted. */
int pki_key_create(char **key_pem, char **err);

/* Makes a CSR signed by `key_pem` (EC P-256) with subject CN=<node_id> and the
 * SANs DNS:<node_id> plus `names` (n of them): IP literals become IP SANs,
 * anything else a DNS SAN; duplicates are dropped. Only syntax is checked here
 * (node id valid; names 1..253 printable ASCII characters without spaces, at
 * most 256): the coordinator's pki_csr_check decides what it will sign. */
int pki_csr_create(const char *key_pem, const char *node_id, const char *const *names, size_t n, char **csr_pem,
                   char **err);

/* A parsed CSR: owned copies. IPs are in canonical text form (inet_ntop). */
typedef struct pki_csr_info {
    char *node_id; /* the subject CN (UTF-8, no control characters) */
    char **dns;
    size_t n_dns;
    char **ips;
    size_t n_ips;
} pki_csr_info;

/* Parses `len` bytes of PEM (need not be NUL-terminated, at most PKI_MAX_CSR_PEM)
 * into *out: verifies the self-signature (ECDSA with SHA-256/384/512), requires
 * an EC P-256 key, exactly one CN, and only DNS and IP SANs. Does not apply the
 * name policy. -EINVAL, -EBADMSG (signature). *out is set only on success. */
int pki_csr_parse(const char *csr_pem, size_t len, pki_csr_info *out, char **err);

/* The name policy above. Returns 0, -EACCES (refused; the message names the
 * value) or -EINVAL (NULL arguments, `request_ip` not an IP literal). */
int pki_csr_check(const pki_csr_info *csr, const char *claimed_node_id, const char *request_ip, char **err);

/* Signs `csr_pem` with the CA into a node certificate valid for
 * `lifetime_seconds` (1..PKI_MAX_CERT_LIFETIME_S; PKI_DEFAULT_CERT_LIFETIME_S is
 * the default to use). Parses the CSR and applies the name policy again (except
 * the request address, which only pki_csr_check knows); only accepted names are
 * copied. The CA must be a CA certificate, match `ca_key_pem` and be valid now
 * (-EKEYEXPIRED otherwise). *cert_pem is a heap string. */
int pki_sign_csr(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem, long lifetime_seconds,
                 char **cert_pem, char **err);

/* pki_sign_csr for a node: the certificate's subject also says the node's `role`
 * (OU=<role>, pki_role_valid). */
int pki_sign_node_csr(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem, long lifetime_seconds,
                      const char *role, char **cert_pem, char **err);

/* A parsed certificate: owned copies. SAN types other than DNS and IP are skipped. */
typedef struct pki_cert_info {
    char *node_id; /* the subject CN */
    char *role;    /* the subject OU (p2p__pki_cert_role), NULL when it has none */
    char **dns;
    size_t n_dns;
    char **ips; /* canonical text form */
    size_t n_ips;
    int64_t not_before, not_after;
} pki_cert_info;

/* Parses one PEM certificate of `len` bytes (at most PKI_MAX_CERT_PEM), which must
 * have a CN. No verification. -EINVAL. *out is set only on success. */
int pki_cert_parse(const char *pem, size_t len, pki_cert_info *out, char **err);

/* Verifies that `cert_pem` (one certificate, not a CA) chains to a certificate in
 * `ca_pem` (one or more CA certificates) and that both are valid now (or at
 * `now`, Unix seconds, for the _at form). 0, -EINVAL (unparsable), -EKEYEXPIRED
 * (the certificate or the CA expired), -EACCES (anything else: other CA, bad
 * signature, not yet valid, a CA certificate given as the node certificate). */
int pki_cert_verify(const char *cert_pem, const char *ca_pem, char **err);
int pki_cert_verify_at(const char *cert_pem, const char *ca_pem, int64_t now, char **err);

/* 1 when the certificate should be renewed at `now`: now >= not_after -
 * renew_before_s, or one of `current_ips` (the addresses the node would put in
 * its next CSR) is not among its IP SANs; else 0. Unspecified addresses
 * (0.0.0.0, ::) in `current_ips` are ignored: they are bind addresses, never SANs.
 * -EINVAL when `c` is NULL, now < 0, renew_before_s < 0, or an address is not an
 * IP literal (callers treating non-zero as "renew" fail safe). */
int pki_cert_needs_renewal(const pki_cert_info *c, int64_t now, int64_t renew_before_s, const char *const *current_ips,
                           size_t n);

/* The role a node certificate names: its subject's single OU, a valid role name,
 * into `out` (`cap` bytes, at least PKI_MAX_ROLE + 1 for every role to fit).
 * For readers holding an X509 (a TLS verify callback). 0, -ENOENT (no OU),
 * -EINVAL (NULL, several OUs, not a valid role name), -ENOSPC (`cap` too small). */
struct x509_st;
int p2p__pki_cert_role(const struct x509_st *cert, char *out, size_t cap);

/* The SHA-256 fingerprint of a certificate's DER as PKI_FINGERPRINT_LEN lowercase
 * hex digits and a NUL: the name a certificate is revoked by. -EINVAL. */
int p2p__pki_cert_fingerprint(const struct x509_st *cert, char out[PKI_FINGERPRINT_LEN + 1]);
/* The same from one PEM certificate; also its serial number in hex (serial_out
 * may be NULL, else 2 * 20 + 1 bytes at least: serials are at most 20 octets). */
int pki_cert_fingerprint(const char *pem, char out[PKI_FINGERPRINT_LEN + 1], char *serial_out, size_t serial_cap);

/* 1 if the private key `key_pem` belongs to the certificate `cert_pem`, 0 if not,
 * -EINVAL when either does not parse. */
int pki_key_matches_cert(const char *key_pem, const char *cert_pem);

/* Free the members of the struct and zero it; safe on a zeroed struct and NULL. */
void pki_csr_info_free(pki_csr_info *info);
void pki_cert_info_free(pki_cert_info *info);

/* Wipes a NUL-terminated secret (a private key PEM) and frees it; NULL is fine. */
void pki_secret_free(char *pem);

#endif
