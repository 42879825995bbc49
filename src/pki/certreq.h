/*
 * certreq.h — the body of POST /internal/cert-request (a worker asking the
 * coordinator to sign its CSR) and of the answer, as pure functions: bytes in,
 * struct + error out; no I/O, no crypto.
 *
 * Request, a JSON object with exactly these members (anything else is refused,
 * so a typo is an error and not a silently missing field):
 *   "node_id"        string, the node id rule of pki_node_id_valid()   required
 *   "csr"            string, PEM "CERTIFICATE REQUEST", <= 16 KiB      required
 *   "challenge"      string, 32..128 base64url characters (no '=')     required
 *   "challenge_port" integer 1..65535 (the worker's challenge server)  required
 *   "join_token"     string, 1..256 printable ASCII, no spaces         required
 *   "addresses"      array of at most 16 distinct IP literals          optional
 *   "role"           string, the node's configured role, a role name   optional
 *                    (pki_role_valid; absent: "worker"). The coordinator
 *                    puts it in the certificate and never issues "coordinator".
 * The body is at most 64 KiB and must be valid UTF-8 JSON without duplicate
 * members or NUL characters. Each error message names the field; no message ever
 * contains the join token (a malformed body's JSON error is reported without the
 * "near '...'" excerpt for the same reason).
 *
 * The CSR is only checked for size and shape here; pki_csr_parse() and
 * pki_csr_check() judge it. Addresses are stored in canonical form (inet_ntop),
 * so "::0001" arrives as "::1".
 *
 * Answer: {"certificate": PEM, "ca_certificate": PEM bundle, "gossip_key": str}
 * (gossip_key optional, e.g. on renewal). The answer parser (the worker side)
 * ignores members it does not know, so a newer coordinator can add some.
 *
 * Errors: 0 or a negative errno (-EINVAL malformed, -E2BIG body too large);
 * `err` (optional; point it at NULL) receives a heap message on failure.
 */
#ifndef P2P_PKI_CERTREQ_H
#define P2P_PKI_CERTREQ_H

#include <jansson.h>
#include <stddef.h>

#define CERTREQ_MAX_BODY 65536
#define CERTREQ_MAX_CSR 16384
#define CERTREQ_MIN_CHALLENGE 32
#define CERTREQ_MAX_CHALLENGE 128
#define CERTREQ_MAX_JOIN_TOKEN 256
#define CERTREQ_MAX_ADDRESSES 16
#define CERTREQ_MAX_CERT 65536     /* a certificate or CA bundle in the answer */
#define CERTREQ_MAX_GOSSIP_KEY 256 /* characters */

/* A parsed request: owned copies, released by certreq_free(). */
typedef struct certreq {
    char *node_id;
    char *csr;       /* PEM */
    char *challenge; /* base64url */
    int challenge_port;
    char *join_token; /* secret: certreq_free() wipes it */
    char **addresses; /* canonical IP literals; NULL when absent */
    size_t n_addresses;
    char *role; /* NULL when absent */
} certreq;

/* Parses `len` bytes (need not be NUL-terminated). *out is set only on success. */
int certreq_parse(const char *body, size_t len, certreq *out, char **err);

/* Frees the members and zeroes *r; safe on a zeroed struct and NULL. */
void certreq_free(certreq *r);

/* The request body for `r` (the worker side), a new reference; "addresses" only
 * when n_addresses > 0, "role" only when set. NULL when a required string member is NULL. */
json_t *certreq_request_json(const certreq *r);

/* The answer body, a new reference; gossip_key is left out when NULL. NULL when
 * cert_pem or ca_pem is NULL. */
json_t *certreq_response_json(const char *cert_pem, const char *ca_pem, const char *gossip_key_b64);

/* A parsed answer: owned copies, released by certreq_response_free(). */
typedef struct certreq_response {
    char *certificate;    /* PEM */
    char *ca_certificate; /* PEM, one or more certificates */
    char *gossip_key;     /* NULL when absent; secret: wiped when freed */
} certreq_response;

/* Parses an answer (at most CERTREQ_MAX_BODY * 2 bytes): "certificate" and
 * "ca_certificate" strings of PEM certificates up to CERTREQ_MAX_CERT bytes,
 * optional "gossip_key" of 1..256 base64 characters (standard or URL alphabet,
 * '=' padding allowed). Unknown members are ignored. */
int certreq_response_parse(const char *body, size_t len, certreq_response *out, char **err);
void certreq_response_free(certreq_response *r);

#endif
