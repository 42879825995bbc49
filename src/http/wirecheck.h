/*
 * wirecheck.h — a pure scanner of what a client sends on one connection, after
 * TLS and before h2o parses it: bytes in, verdict out, no I/O.
 *
 * h2o 2.2.5 offers no hook between the socket and its protocol parsers, and it
 * keeps neither Content-Length nor Transfer-Encoding in req->headers, so a
 * handler cannot see request smuggling, and nothing of h2o counts RST_STREAM
 * frames. The server (limits.c) feeds every decrypted byte of a connection
 * through this scanner first; on a verdict it makes h2o itself refuse the
 * request or the connection (see limits.c for how).
 *
 * HTTP/1.1: follows the framing of each request (head, Content-Length body or
 *   chunked body, trailers) and refuses a head with two different
 *   Content-Length values, an unreadable Content-Length, Content-Length together
 *   with Transfer-Encoding, a Transfer-Encoding other than one "chunked", a
 *   folded header line (obs-fold), a CR not followed by LF, or a malformed chunk.
 * HTTP/2: skips the preface, reads frame headers, and refuses a connection whose
 *   RST_STREAM frames exceed `resets_per_second` (token bucket, burst of the
 *   same size) or whose HEADERS frames would open more streams than the caller
 *   allows for this chunk.
 */
#ifndef P2P_HTTP_WIRECHECK_H
#define P2P_HTTP_WIRECHECK_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    P2P_WIRE_OK = 0,
    P2P_WIRE_BAD_FRAMING,  /* HTTP/1.1: ambiguous or malformed request framing */
    P2P_WIRE_RAPID_RESET,  /* HTTP/2: too many RST_STREAM per second */
    P2P_WIRE_TOO_MANY_STREAMS, /* HTTP/2: more new streams than the budget */
} p2p_wire_verdict;

typedef struct p2p_wirecheck {
    uint8_t h2;        /* 0: HTTP/1.x, 1: HTTP/2 */
    uint8_t state;     /* per protocol, see wirecheck.c */
    uint8_t verdict;   /* sticky once not OK */
    uint8_t line_cr;   /* the previous byte was a CR inside a line */
    /* HTTP/1: the current header line and the request's framing */
    char name[24];     /* lower-cased header name, truncated */
    uint8_t name_len;  /* up to sizeof(name); larger means "not one we check" */
    uint8_t in_value;  /* past the colon */
    uint8_t hdr_kind;  /* 0 other, 1 content-length, 2 transfer-encoding */
    char value[40];    /* value of a content-length / transfer-encoding line */
    uint8_t value_len; /* > sizeof(value): too long */
    uint8_t has_cl, has_te;
    uint64_t cl;        /* Content-Length of the request */
    uint64_t remaining; /* body or chunk bytes still to skip */
    uint8_t hex_digits; /* chunk-size digits seen */
    /* HTTP/2 */
    uint8_t hdr[9];
    uint8_t hdr_len;
    uint32_t max_stream_id;
    uint32_t resets_per_second;
    double reset_tokens;
    uint64_t reset_refill_ms;
    /* bytes fed so far (diagnostics) */
    uint64_t fed;
} p2p_wirecheck;

/* Starts a scanner for HTTP/2 (`h2` = 1, from ALPN) or HTTP/1.x. */
void p2p__wire_init(p2p_wirecheck *w, int h2, uint32_t resets_per_second, uint64_t now_ms);

/* Scans the next `len` bytes of the connection. `new_stream_budget` is how many
 * HTTP/2 streams may still be opened (HEADERS frames counted in this call only).
 * Returns P2P_WIRE_OK, or a verdict with *at set to the offset (relative to
 * `buf`) to act on: for HTTP/1.1 the offending byte (0 <= *at < len), for
 * HTTP/2 the first byte of the offending frame header, which may lie up to 8
 * bytes before `buf` when the header began in an earlier chunk. Once a verdict
 * is given, every later call returns it again with *at = 0. */
p2p_wire_verdict p2p__wire_feed(p2p_wirecheck *w, const uint8_t *buf, size_t len, uint64_t now_ms,
                                uint32_t new_stream_budget, int64_t *at);

/* A name for a verdict, for logs. */
const char *p2p__wire_verdict_name(p2p_wire_verdict v);

#endif
