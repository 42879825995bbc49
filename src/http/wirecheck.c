/*
 * wirecheck.c — the connection scanner of wirecheck.h.
 *
 * HTTP/1.1 framing (RFC 9112 section 6) leaves exactly one way to find the end
 * of a request body: Transfer-Encoding: chunked, else Content-Length, else no
 * body. Two front ends that pick differently (the first of two Content-Length
 * values, or Content-Length over chunked) see different requests in the same
 * bytes: request smuggling. h2o 2.2.5 takes the first Content-Length and lets
 * Transfer-Encoding win over it, and picohttpparser joins folded lines; we
 * refuse all of these instead of choosing. The scanner follows the same framing
 * h2o does (picohttpparser's tolerance of bare LF and of chunk extensions
 * included), so it stays in step with h2o request after request on a
 * keep-alive connection and sees every head, pipelined or not.
 *
 * Memory is fixed: a header line is never buffered, only the first bytes of its
 * name and, for the two headers that matter, of its value.
 *
 * HTTP/2 (RFC 9113): a frame is a 9-byte header (24-bit length, type, flags,
 * 31-bit stream id) and its payload; only the headers are read. The reset
 * budget is a token bucket: `resets_per_second` tokens, refilled continuously,
 * one per RST_STREAM (CVE-2023-44487 costs the server a full request per
 * HEADERS + RST_STREAM pair while the client pays two frames).
 */
#include "http/wirecheck.h"

#include <string.h>

enum {
    /* HTTP/1 */
    S_IDLE,         /* between requests: empty lines are skipped */
    S_REQLINE,      /* request line, up to LF */
    S_LINE_START,   /* first byte of a header line, or the end of the head */
    S_HEAD_END_CR,  /* a CR that must end the head */
    S_HEADER,       /* inside a header line */
    S_BODY,         /* Content-Length body */
    S_CHUNK_SIZE,   /* hex digits of a chunk size */
    S_CHUNK_EXT,    /* rest of the chunk-size line */
    S_CHUNK_DATA,   /* chunk bytes */
    S_CHUNK_CRLF,   /* the line end after chunk bytes */
    S_TRAILER_START,
    S_TRAILER_LINE,
    /* HTTP/2 */
    S2_PREFACE,
    S2_HEADER,
    S2_PAYLOAD,
};

#define H2_PREFACE_LEN 24
#define H2_RST_STREAM 0x3
#define H2_HEADERS 0x1
#define MAX_CHUNK_HEX 15 /* picohttpparser refuses a 16th digit */

void p2p__wire_init(p2p_wirecheck *w, int h2, uint32_t resets_per_second, uint64_t now_ms)
{
    memset(w, 0, sizeof(*w));
    w->h2 = h2 ? 1 : 0;
    w->state = h2 ? S2_PREFACE : S_IDLE;
    w->remaining = h2 ? H2_PREFACE_LEN : 0;
    w->resets_per_second = resets_per_second ? resets_per_second : 1;
    w->reset_tokens = w->resets_per_second;
    w->reset_refill_ms = now_ms;
}

const char *p2p__wire_verdict_name(p2p_wire_verdict v)
{
    switch (v) {
    case P2P_WIRE_OK:
        return "ok";
    case P2P_WIRE_BAD_FRAMING:
        return "ambiguous or malformed HTTP/1.1 request framing";
    case P2P_WIRE_RAPID_RESET:
        return "too many HTTP/2 stream resets per second";
    case P2P_WIRE_TOO_MANY_STREAMS:
        return "too many open HTTP/2 streams";
    }
    return "?";
}

static int is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* ---- HTTP/1.1 ---------------------------------------------------------------- */

static void begin_request(p2p_wirecheck *w)
{
    w->has_cl = w->has_te = 0;
    w->cl = 0;
    w->remaining = 0;
    w->line_cr = 0;
}

static void begin_header_line(p2p_wirecheck *w, uint8_t c)
{
    w->name[0] = (char)lower(c);
    w->name_len = 1;
    w->in_value = 0;
    w->hdr_kind = 0;
    w->value_len = 0;
    w->line_cr = 0;
}

/* The colon of a header line: is it one of the two framing headers? A name
 * longer than the buffer is neither. */
static void classify_name(p2p_wirecheck *w)
{
    w->in_value = 1;
    if (w->name_len == 14 && memcmp(w->name, "content-length", 14) == 0)
        w->hdr_kind = 1;
    else if (w->name_len == 17 && memcmp(w->name, "transfer-encoding", 17) == 0)
        w->hdr_kind = 2;
}

/* End of a header line: checks a framing header. 0 or -1 (bad). */
static int end_header_line(p2p_wirecheck *w)
{
    if (!w->hdr_kind)
        return 0;
    if (w->value_len > sizeof(w->value))
        return -1;
    const char *v = w->value;
    size_t n = w->value_len;
    while (n && is_ows((uint8_t)v[0]))
        v++, n--;
    while (n && is_ows((uint8_t)v[n - 1]))
        n--;
    if (w->hdr_kind == 1) {
        if (n == 0 || n > 18)
            return -1; /* empty, or more than 10^18 bytes: nobody means that */
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i] < '0' || v[i] > '9')
                return -1; /* "5, 5", "+5", "0x5": all refused */
            x = x * 10 + (uint64_t)(v[i] - '0');
        }
        if (w->has_cl && x != w->cl)
            return -1;
        w->cl = x;
        w->has_cl = 1;
        return 0;
    }
    if (w->has_te || n != 7)
        return -1;
    for (size_t i = 0; i < 7; i++)
        if (lower((uint8_t)v[i]) != (uint8_t)"chunked"[i])
            return -1;
    w->has_te = 1;
    return 0;
}

/* End of the head: what follows is the body, or the next request. */
static int end_head(p2p_wirecheck *w)
{
    if (w->has_cl && w->has_te)
        return -1;
    if (w->has_te) {
        w->state = S_CHUNK_SIZE;
        w->hex_digits = 0;
        w->remaining = 0;
    } else if (w->has_cl && w->cl > 0) {
        w->state = S_BODY;
        w->remaining = w->cl;
    } else {
        w->state = S_IDLE;
    }
    return 0;
}

/* Scans HTTP/1 bytes; returns the index of the first bad byte, or len. */
static size_t feed_h1(p2p_wirecheck *w, const uint8_t *buf, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = buf[i];
        switch (w->state) {
        case S_IDLE:
            if (c != '\r' && c != '\n') {
                begin_request(w);
                w->state = S_REQLINE;
                continue; /* the byte belongs to the request line */
            }
            break;
        case S_REQLINE:
            if (w->line_cr && c != '\n')
                return i;
            w->line_cr = c == '\r';
            if (c == '\n')
                w->state = S_LINE_START;
            break;
        case S_LINE_START:
            if (c == '\r') {
                w->state = S_HEAD_END_CR;
            } else if (c == '\n') {
                if (end_head(w) != 0)
                    return i;
            } else if (is_ows(c)) {
                return i; /* obs-fold */
            } else {
                begin_header_line(w, c);
                w->state = S_HEADER;
            }
            break;
        case S_HEAD_END_CR:
            if (c != '\n' || end_head(w) != 0)
                return i;
            break;
        case S_HEADER:
            if (w->line_cr && c != '\n')
                return i;
            if (c == '\r') {
                w->line_cr = 1;
            } else if (c == '\n') {
                w->line_cr = 0;
                if (end_header_line(w) != 0)
                    return i;
                w->state = S_LINE_START;
            } else if (!w->in_value) {
                if (c == ':')
                    classify_name(w);
                else if (w->name_len < sizeof(w->name))
                    w->name[w->name_len++] = (char)lower(c);
                else
                    w->name_len = (uint8_t)(sizeof(w->name) + 1); /* too long to be checked */
            } else if (w->hdr_kind) {
                if (w->value_len < sizeof(w->value))
                    w->value[w->value_len++] = (char)c;
                else
                    w->value_len = (uint8_t)(sizeof(w->value) + 1);
            }
            break;
        case S_BODY: {
            size_t n = len - i < w->remaining ? len - i : (size_t)w->remaining;
            w->remaining -= n;
            i += n;
            if (w->remaining == 0)
                w->state = S_IDLE;
            continue;
        }
        case S_CHUNK_SIZE: {
            int h = hex_value(c);
            if (h >= 0) {
                if (++w->hex_digits > MAX_CHUNK_HEX)
                    return i;
                w->remaining = w->remaining * 16 + (uint64_t)h;
                break;
            }
            if (w->hex_digits == 0)
                return i;
            w->state = S_CHUNK_EXT;
            continue; /* this byte may be the LF */
        }
        case S_CHUNK_EXT:
            if (c == '\n')
                w->state = w->remaining ? S_CHUNK_DATA : S_TRAILER_START;
            break;
        case S_CHUNK_DATA: {
            size_t n = len - i < w->remaining ? len - i : (size_t)w->remaining;
            w->remaining -= n;
            i += n;
            if (w->remaining == 0)
                w->state = S_CHUNK_CRLF;
            continue;
        }
        case S_CHUNK_CRLF:
            if (c == '\n') {
                w->state = S_CHUNK_SIZE;
                w->hex_digits = 0;
                w->remaining = 0;
            } else if (c != '\r') {
                return i;
            }
            break;
        case S_TRAILER_START:
            if (c == '\n')
                w->state = S_IDLE;
            else if (c != '\r')
                w->state = S_TRAILER_LINE;
            break;
        case S_TRAILER_LINE:
            if (c == '\n')
                w->state = S_TRAILER_START;
            break;
        default:
            return i;
        }
        i++;
    }
    return len;
}

/* ---- HTTP/2 ------------------------------------------------------------------ */

static p2p_wire_verdict h2_frame(p2p_wirecheck *w, uint64_t now_ms, uint32_t budget, uint32_t *opened)
{
    uint32_t length = (uint32_t)w->hdr[0] << 16 | (uint32_t)w->hdr[1] << 8 | w->hdr[2];
    uint8_t type = w->hdr[3];
    uint32_t sid = ((uint32_t)w->hdr[5] << 24 | (uint32_t)w->hdr[6] << 16 | (uint32_t)w->hdr[7] << 8 | w->hdr[8]) &
                   0x7fffffffu;
    if (type == H2_RST_STREAM) {
        if (now_ms > w->reset_refill_ms) {
            w->reset_tokens += (double)(now_ms - w->reset_refill_ms) * w->resets_per_second / 1000.0;
            if (w->reset_tokens > w->resets_per_second)
                w->reset_tokens = w->resets_per_second;
            w->reset_refill_ms = now_ms;
        }
        if (w->reset_tokens < 1.0)
            return P2P_WIRE_RAPID_RESET;
        w->reset_tokens -= 1.0;
    } else if (type == H2_HEADERS && sid > w->max_stream_id) {
        w->max_stream_id = sid; /* a new stream (trailers reuse an open one) */
        if (*opened >= budget)
            return P2P_WIRE_TOO_MANY_STREAMS;
        (*opened)++;
    }
    w->remaining = length;
    w->state = length ? S2_PAYLOAD : S2_HEADER;
    w->hdr_len = 0;
    return P2P_WIRE_OK;
}

static p2p_wire_verdict feed_h2(p2p_wirecheck *w, const uint8_t *buf, size_t len, uint64_t now_ms, uint32_t budget,
                                int64_t *at)
{
    uint32_t opened = 0;
    size_t i = 0;
    while (i < len) {
        switch (w->state) {
        case S2_PREFACE:
        case S2_PAYLOAD: {
            size_t n = len - i < w->remaining ? len - i : (size_t)w->remaining;
            w->remaining -= n;
            i += n;
            if (w->remaining == 0) {
                w->state = S2_HEADER;
                w->hdr_len = 0;
            }
            break;
        }
        case S2_HEADER: {
            w->hdr[w->hdr_len++] = buf[i++];
            if (w->hdr_len == sizeof(w->hdr)) {
                p2p_wire_verdict v = h2_frame(w, now_ms, budget, &opened);
                if (v != P2P_WIRE_OK) {
                    *at = (int64_t)i - (int64_t)sizeof(w->hdr);
                    return v;
                }
            }
            break;
        }
        default:
            *at = (int64_t)i;
            return P2P_WIRE_BAD_FRAMING;
        }
    }
    return P2P_WIRE_OK;
}

p2p_wire_verdict p2p__wire_feed(p2p_wirecheck *w, const uint8_t *buf, size_t len, uint64_t now_ms,
                                uint32_t new_stream_budget, int64_t *at)
{
    if (w->verdict != P2P_WIRE_OK) {
        *at = 0;
        return (p2p_wire_verdict)w->verdict;
    }
    p2p_wire_verdict v = P2P_WIRE_OK;
    if (w->h2) {
        v = feed_h2(w, buf, len, now_ms, new_stream_budget, at);
    } else {
        size_t bad = feed_h1(w, buf, len);
        if (bad < len) {
            *at = (int64_t)bad;
            v = P2P_WIRE_BAD_FRAMING;
        }
    }
    w->fed += len;
    w->verdict = (uint8_t)v;
    return v;
}
