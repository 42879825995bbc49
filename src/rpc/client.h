/*
 * client.h — the node's outbound HTTP client for node-to-node calls.
 *
 * HTTP/2 only (ALPN h2), on libnghttp2 over OpenSSL memory BIOs on a uv_tcp_t of
 * the node's libuv loop (client.c). One connection per peer — node id, address,
 * port and TLS material generation — multiplexes every call to that peer: at most
 * min(max_streams, the peer's SETTINGS_MAX_CONCURRENT_STREAMS) streams at once,
 * further calls queue in order on the connection. Windows: 256 KiB per stream,
 * 1 MiB per connection, refilled as the body is read (a 1 MiB body flows without
 * stalling); responses are capped at max_response_bytes.
 *
 * Connection life: connect + TLS handshake bounded by connect_timeout_ms; a
 * keep-alive PING after 15 s of silence, the connection dropped when it stays
 * unanswered 10 s; closed (GOAWAY NO_ERROR) after idle_seconds without a call. A
 * peer's GOAWAY stops new streams on that connection (calls in flight finish;
 * new calls open a new connection). Retries: a call that never reached the
 * server — refused with REFUSED_STREAM, above a GOAWAY's last-stream-id, or queued
 * on a connection that died before its HEADERS went out — is moved once to a new
 * connection (only when the dead one had answered before: a peer that refuses us
 * is not hammered). A call that may have reached the server is never retried: it
 * fails with E_PROTOCOL.
 *
 * Peer identity. A request names the node it means (`node_id`) and the address
 * to reach it at (an IP literal: nodes are addressed by IP). The TCP connection
 * goes to <address>:<port>; the server certificate is verified against the
 * cluster CA *and* must carry the node id as a DNS subjectAltName
 * (SSL_set1_host, no partial wildcards), and the node id is sent as SNI and
 * :authority: a node answering on an address we believed was another node's
 * fails with P2P_HTTPC_E_TLS. Names compare case-insensitively, as DNS names do,
 * so node ids that differ only in case must not both be enrolled. Node ids that
 * read as IPv4 numbers ("10", "0x0a", "10.1") are refused. Only the CA given here
 * is trusted (no system store), no proxy, no redirect, TLS 1.2 or later.
 *
 * TLS material (CA bundle, client certificate, client key) is PEM text in memory,
 * never a file: keys live in the vault. It is loaded once into an SSL_CTX (the
 * PEM copy is not kept). p2p__httpc_set_tls swaps it (certificate renewal):
 * requests already running keep the material they started with; later requests
 * use the new one and therefore new connections; old connections idle out.
 *
 * Threading: everything here runs on the loop thread, which owns the client.
 * Nothing blocks: set_tls/new parse the PEM once (about a millisecond). A
 * request is put on a connection from the loop (never inside
 * p2p__httpc_request), so its callback never runs inside that call.
 *
 * Callbacks: every request accepted by p2p__httpc_request gets exactly one call
 * of its callback, on the loop thread: on completion, on failure, on timeout, on
 * p2p__httpc_cancel and on p2p__httpc_free/close (P2P_HTTPC_E_CANCELLED). Cancel
 * and free call back synchronously, before they return. A callback may start new
 * requests, cancel others and free/close the client (the teardown then finishes
 * when the callback returns). The response body is borrowed: valid only during
 * the callback.
 *
 * Errors: functions returning int give 0 or a negative errno (-EINVAL for bad
 * arguments, -ENOENT for an unknown request id, -ESHUTDOWN once the client is
 * closing) and, where they take `char **err`, a heap message the caller frees.
 *
 * Teardown: p2p__httpc_free (or _close with a done callback) cancels what is in
 * flight, closes every connection and starts closing the libuv handles. The
 * memory is released from the handles' close callbacks, so the caller must run
 * the loop afterwards (uv_run until it has no more active handles, as the agent's
 * shutdown does) — never uv_loop_close right after free.
 *
 * Process set-up: call p2p__httpc_global_init() once from main (before threads
 * exist); it is idempotent and p2p__httpc_new calls it too.
 */
#ifndef P2P_RPC_CLIENT_H
#define P2P_RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct p2p__httpc p2p__httpc;

/* Client options. Zero fields take the defaults in brackets. */
typedef struct p2p__httpc_opts {
    const char *ca_pem;             /* cluster CA bundle (one or more certificates); required unless insecure */
    const char *cert_pem;           /* this node's certificate; NULL (with key_pem) for server authentication
                                       only (the CLI, which authenticates with a bearer token) */
    const char *key_pem;            /* its private key; loaded into the TLS context, not kept as text */
    int insecure;                   /* the CLI's --insecure: the server's certificate is not verified */
    uint32_t connect_timeout_ms;    /* TCP + TLS handshake [5000] */
    uint32_t default_timeout_ms;    /* whole request, when a request gives none [30000] */
    uint32_t max_host_connections;  /* unused (libcurl era): one connection per peer */
    uint32_t max_total_connections; /* unused (libcurl era) */
    uint32_t max_streams;           /* concurrent HTTP/2 streams per connection; more queue [100] */
    uint32_t max_idle_connections;  /* unused (libcurl era): idle ones close after idle_seconds */
    uint32_t idle_seconds;          /* reuse a connection idle at most this long; keep it below
                                       the peers' http_idle_timeout (60 s by default) [50] */
    size_t max_response_bytes;      /* larger responses fail with E_PROTOCOL [16 MiB] */
} p2p__httpc_opts;

/* Why a request ended. OK means an HTTP response arrived: check `status`. */
typedef enum p2p__httpc_error {
    P2P_HTTPC_OK = 0,
    P2P_HTTPC_E_TIMEOUT,   /* connect or whole-request timeout */
    P2P_HTTPC_E_CONNECT,   /* refused, unreachable: the request was not sent */
    P2P_HTTPC_E_TLS,       /* handshake or verification failure: the request was not processed */
    P2P_HTTPC_E_PROTOCOL,  /* reset, closed, malformed or oversized response, HTTP/2 error: the
                              request may have been processed. Under TLS 1.3 a peer rejecting
                              our certificate without an alert (h2o 2.2) lands here too; the
                              message then says so. */
    P2P_HTTPC_E_CANCELLED, /* p2p__httpc_cancel, p2p__httpc_free/close */
    P2P_HTTPC_E_INTERNAL,  /* nghttp2/OpenSSL could not set up, out of memory */
} p2p__httpc_error;

/* A request. Everything is copied by p2p__httpc_request; nothing needs to
 * outlive the call. */
typedef struct p2p__httpc_req {
    const char *method;  /* "GET" or "POST"; NULL: POST with a body, else GET */
    const char *node_id; /* the peer's node id: :authority and the name its certificate must carry */
    const char *tls_name; /* instead of node_id (CLI): a host name or IP literal the certificate must
                             carry (an IP as an IP SAN, a name as a DNS SAN) */
    const char *address; /* IPv4 or IPv6 literal (no brackets, no zone) to connect to */
    uint16_t port;
    const char *path; /* "/rpc"; may carry a query; no spaces or control characters */
    const void *body; /* POST only; may be NULL with body_len 0 */
    size_t body_len;
    const char *content_type;   /* with a body; NULL: application/json */
    const char *const *headers; /* n_headers "Name: value" lines (e.g. Authorization); not Host,
                                   Content-Type, Content-Length, Transfer-Encoding, Connection, Expect */
    size_t n_headers;
    uint32_t timeout_ms; /* whole request; 0: opts.default_timeout_ms */
} p2p__httpc_req;

/* What a callback receives; valid only during the callback. */
typedef struct p2p__httpc_res {
    uint64_t id;            /* as returned by p2p__httpc_request */
    p2p__httpc_error error; /* P2P_HTTPC_OK when a response arrived */
    int status;             /* HTTP status, or 0 without a response */
    int curl_code;          /* always 0 (kept for callers of the libcurl era) */
    const char *message;    /* human detail; "" on OK */
    const uint8_t *body;    /* response body, NUL-terminated for convenience */
    size_t body_len;
    double total_ms; /* time from start to the end of the transfer */
} p2p__httpc_res;

typedef void (*p2p__httpc_cb)(void *udata, const p2p__httpc_res *res);

/* Counters since creation; `active` is the number of requests in flight. */
typedef struct p2p__httpc_stats {
    uint64_t requests;  /* accepted by p2p__httpc_request */
    uint64_t responses; /* ended with an HTTP response (any status) */
    uint64_t failures;  /* ended with an error other than CANCELLED */
    uint64_t cancelled;
    uint64_t connections; /* connections opened */
    uint64_t tls_updates; /* successful p2p__httpc_set_tls calls */
    size_t active;
    size_t sockets; /* connections open now */
} p2p__httpc_stats;

/* OpenSSL's initialisation (thread-safe, idempotent). 0 or -EIO. */
int p2p__httpc_global_init(void);

/* Creates a client on `loop`. Validates the TLS material (the key must match
 * the certificate). Returns NULL with *err set (heap) on failure. */
p2p__httpc *p2p__httpc_new(uv_loop_t *loop, const p2p__httpc_opts *o, char **err);

/* Replaces the TLS material for requests started from now on (see above).
 * 0, or -EINVAL (unparsable, key does not match) leaving the old material. */
int p2p__httpc_set_tls(p2p__httpc *c, const char *ca_pem, const char *cert_pem, const char *key_pem, char **err);

/* Starts a request. Returns its id (> 0), or 0 with *err set when the request is
 * malformed or the client is closing; then `cb` is never called. */
uint64_t p2p__httpc_request(p2p__httpc *c, const p2p__httpc_req *r, p2p__httpc_cb cb, void *udata, char **err);

/* Cancels a request in flight: its callback runs (E_CANCELLED) before this
 * returns. 0, or -ENOENT when it already ended (its callback has run). */
int p2p__httpc_cancel(p2p__httpc *c, uint64_t id);

void p2p__httpc_stats_get(const p2p__httpc *c, p2p__httpc_stats *out);

/* Name of an error, "ok", "timeout", "connect", "tls", ... */
const char *p2p__httpc_error_name(p2p__httpc_error e);

/* Cancels everything (callbacks run before this returns), closes connections
 * and handles; `done(arg)` runs from the loop once the last handle has closed
 * and the memory is gone. `done` may be NULL. Run the loop afterwards. */
void p2p__httpc_close(p2p__httpc *c, void (*done)(void *arg), void *arg);

/* p2p__httpc_close(c, NULL, NULL); NULL is fine. */
void p2p__httpc_free(p2p__httpc *c);

/* Fuzzing: makes an idle client believe it holds a connection to node-a that
 * has finished its handshake, starts three requests on it (a GET and two POSTs:
 * streams 1, 3, 5), feeds `data` as the server's bytes after TLS (frames,
 * preface SETTINGS first), then cancels what is left. Aborts when a request
 * does not get exactly one callback. The caller runs the loop afterwards (the
 * connection's handle closes there). Returns how many requests were waiting
 * for a retry on another connection when they were cancelled (refused or above
 * a GOAWAY's last-stream-id), or -EINVAL when the client is not idle. */
int p2p__httpc_fuzz_response(p2p__httpc *c, const uint8_t *data, size_t len);

#endif
