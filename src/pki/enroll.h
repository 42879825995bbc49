/*
 * enroll.h — the network side of the cluster PKI: challenges, the join string
 * with its CA pin, blocking HTTPS fetches for the thread pool, and a worker's
 * first enrollment.
 *
 * Enrollment (ARCHITECTURE.md, "Security model"):
 *   1. the worker makes its key and CSR (the key never leaves it) and a challenge:
 *      base64url of an 8-byte big-endian timestamp (ms) and 24 random bytes;
 *   2. it serves GET /internal/cert-challenge/{challenge} on a temporary plain-HTTP
 *      port (enroll_challenge_port, 8802; another free port when that one is
 *      taken). The answer is the key authorization, base64url(SHA-256(challenge
 *      "." CSR)), which binds the challenge to this CSR. One use, 60 s;
 *   3. it fetches the coordinator's CA (GET /internal/ca-cert) and checks it against
 *      the pin in the join string, then POSTs /internal/cert-request over TLS
 *      verified with that CA;
 *   4. the coordinator checks the join token, the challenge's age and that it was
 *      not used before, the CSR's names against the request's source address,
 *      fetches the challenge from that address and port, signs, and answers with
 *      the certificate, the CA bundle, the gossip key and the cluster JWT secret.
 *
 * Join strings: "p2pj_<43>" (the token) or "p2pj_<43>.<43>", where the part
 * after the dot is base64url(SHA-256(DER of the cluster CA certificate)). With a
 * pin the worker trusts nothing but that CA; without one it trusts the CA it is
 * served on first use and says so in the log.
 */
#ifndef P2P_PKI_ENROLL_H
#define P2P_PKI_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

#define ENROLL_CHALLENGE_LEN 43 /* base64url of 32 bytes */
#define ENROLL_KEYAUTH_LEN 43
#define ENROLL_CHALLENGE_TTL_MS 60000
#define ENROLL_PIN_LEN 43

struct vault;

/* A fresh challenge (NUL-terminated, ENROLL_CHALLENGE_LEN characters) made at `now_ms`. */
int p2p__enroll_challenge_new(uint64_t now_ms, char out[ENROLL_CHALLENGE_LEN + 1]);
/* The time a challenge was made (ms), or -EINVAL when it is not one of ours. */
int p2p__enroll_challenge_time(const char *challenge, uint64_t *made_ms);
/* base64url(SHA-256(challenge "." csr_pem)). */
void p2p__enroll_key_auth(const char *challenge, const char *csr_pem, char out[ENROLL_KEYAUTH_LEN + 1]);
/* base64url(SHA-256(DER)) of the first certificate in `ca_pem`; -EINVAL if none. */
int p2p__enroll_ca_pin(const char *ca_pem, char out[ENROLL_PIN_LEN + 1]);
/* Splits a join string into the token and the pin ("" when absent). -EINVAL when
 * it has the wrong shape. */
int p2p__enroll_join_split(const char *join, char *token, size_t token_cap, char pin[ENROLL_PIN_LEN + 1]);

/* A blocking HTTP(S)/1.1 request (fetch.c: OpenSSL on a socket), for the thread pool only. */
typedef struct p2p_fetch {
    const char *url;
    const char *body; /* POST when set (application/json) */
    size_t body_len;
    const char *ca_pem;   /* verify the server against this CA; NULL = no verification */
    int verify_host;      /* also check the host name (only with ca_pem) */
    const char *cert_pem; /* client certificate and key for mutual TLS, or NULL */
    const char *key_pem;
    long timeout_ms;
    size_t max_body; /* bigger answers fail */
    /* out */
    long status;
    long retry_after; /* seconds of a Retry-After header (delta-seconds, capped at 3600), 0 without */
    char *answer; /* heap, NUL-terminated */
    size_t answer_len;
    char error[256];
} p2p_fetch;
/* 0 when an HTTP answer arrived (any status), else -EIO with `error` set. */
int p2p__fetch_run(p2p_fetch *f);
/* The answer parser of p2p__fetch_run, exposed for tests: `buf` holds what
 * arrived so far, `eof` says the peer closed. 1 when complete (*body heap,
 * NUL-terminated, *body_len; *status), 0 when more is needed, -1 when malformed
 * or larger than max_body (*why says which). */
int p2p__fetch_parse(const char *buf, size_t len, bool eof, size_t max_body, long *status, char **body,
                     size_t *body_len, const char **why);
void p2p__fetch_clear(p2p_fetch *f);
/* The delta-seconds of a Retry-After header in the answer head buf[len]
 * (status line and headers), capped at 3600; 0 when absent or not a number. */
long p2p__fetch_retry_after(const char *buf, size_t len);
/* The worker's wait before enrollment attempt `attempt` + 1 (0-based count of
 * failures so far): exponential from 1 s, capped at 30 s, with full jitter in
 * [base/2, base]; at least `retry_after_s` (the coordinator's Retry-After, capped
 * at 300 s) plus up to 1 s of jitter. `rnd` is a random 32-bit value. Milliseconds. */
unsigned p2p__enroll_backoff_ms(unsigned attempt, long retry_after_s, uint32_t rnd);

/* A worker's first enrollment: runs the loop until the vault holds a certificate
 * from the coordinator, its key, the CA, the gossip key and the JWT secret (and
 * is saved), retrying unreachable coordinators with backoff. Returns 0, or
 * -EACCES (refused: bad join token, pin mismatch, names refused) / -EINVAL (no
 * join token) with *err set: errors an operator must fix. */
int p2p__enroll_worker(p2p_ctx *ctx, struct vault *v, const char *join, char **err);

/* 1 when the vault holds a node certificate, its key and the CA, the certificate
 * chains to the CA and is valid now. */
int p2p__enroll_have_valid_cert(struct vault *v);

/* The names a node asks for in its certificate: its real addresses only. The
 * advertise address, a specific bind address, and for a node bound to every
 * address (0.0.0.0, ::) its interfaces' addresses as the address selection ranks
 * them (addrsel.h: no link-local; loopback only when every coordinator address
 * is loopback or the host has nothing else); "localhost" only beside a loopback
 * address. At most PKI_MAX_SANS - 1 (the node id comes first). Heap array of
 * heap strings. */
void p2p__node_names(p2p_ctx *ctx, char ***names, size_t *n);

/* https://HOST:PORT/path for a coordinator address "host:port", "[v6]:port" or a
 * bare IPv6 literal with a port after the last ':'. Heap string. */
char *p2p__enroll_url(const char *hostport, const char *path);

#endif
