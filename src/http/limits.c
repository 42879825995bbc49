/*
 * limits.c — what one client may cost the node, where h2o 2.2.5 has no hook:
 * strict HTTP/1.1 framing, HTTP/2 stream and reset caps, caps on response bytes
 * waiting for a client to read, and a write timeout.
 *
 * Reading. h2o decrypts with SSL_read() into the connection's input buffer and
 * hands that buffer to its HTTP/1 or HTTP/2 parser; nothing in between is
 * exposed. The binary interposes SSL_read (it exports the symbol; libh2o's call
 * resolves here, as uv_write does in server.c), calls OpenSSL's, and feeds what
 * a client connection of ours sent through the scanner of wirecheck.h before
 * h2o sees it. Connections are recognised by their BIO (h2o names its BIO
 * method "h2o_socket") and the server record in the SSL_CTX's app data; the outbound
 * client's connections (memory BIOs), the fetches' and anything else pass straight through. On a verdict we do not
 * answer ourselves (h2o owns the socket's writes); we make h2o refuse:
 *   HTTP/1.1: the offending byte and the next become "\r\x01", and the rest of
 *     the chunk is dropped. picohttpparser fails on a CR not followed by LF
 *     wherever it stands in a head, so h2o answers its own 400 with
 *     "Connection: close" and closes. Every byte of the head before it is
 *     unchanged and the head had not ended, so h2o cannot have acted on it, and
 *     nothing after it (a smuggled request) ever reaches h2o. SSL_read is asked
 *     for one byte less than h2o's buffer so the two bytes always fit.
 *   HTTP/2: the length of the offending frame header becomes 0xFFFFFF, above
 *     any SETTINGS_MAX_FRAME_SIZE; h2o answers GOAWAY (FRAME_SIZE_ERROR) and
 *     closes after it is written. A header that began in an earlier chunk is
 *     still in h2o's input buffer (h2o consumes whole frames only), directly
 *     before the chunk.
 * From then on everything the connection sends is read and dropped.
 *
 * Writing. Our handlers make every response (p2p__http_send*), so the bytes of
 * a response body are counted when handed to h2o and released when h2o frees
 * the request (after the last byte was written, or the stream was reset); the
 * count lives in an object linked to the request's memory pool. A response that
 * would take a connection over http_max_pending_bytes_per_conn, or the node over
 * http_max_pending_bytes_total, is refused with 503. HTTP/2 connections may hold
 * at most HTTP2_MAX_OPEN_STREAMS streams (h2o 2.2.5 advertises 100 concurrent
 * streams but queues any number beyond; each queued stream keeps its request).
 *
 * Write timeout. Once a second a sweep looks at every connection with an
 * unfinished response or bytes queued in libuv. Progress is DATA leaving h2o
 * (req->bytes_sent of the unfinished responses), a response finishing, or
 * libuv's write queue shrinking. A connection without progress for
 * http_write_timeout seconds is closed: HTTP/2 gets a GOAWAY first, then, a
 * second later, the socket is shut down both ways; h2o sees the end of the
 * stream or a failed write and frees the connection through its own path.
 */
#include <dlfcn.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <string.h>
#include <sys/socket.h>

#include "core/util.h"
#include "http/internal.h" /* h2o.h first: h2o's http2 headers need its types */
#include "h2o/http2.h"
#include "h2o/http2_internal.h"

#define HTTP2_MAX_OPEN_STREAMS 128u /* h2o advertises 100 concurrent streams */
#define SWEEP_INTERVAL_MS 1000
#define GOAWAY_GRACE_MS 1000
#define LIMIT_LOG_INTERVAL_MS 10000 /* at most one warning per kind of cap every 10 s */

/* A response body counted against the caps; lives in the request's pool. */
typedef struct http_out {
    http_server *srv;
    http_conn *conn; /* NULL once the connection is gone */
    struct http_out *next, **pprev;
    h2o_req_t *req;
    size_t len;
} http_out;

static void limit_log(http_server *srv, const char *fmt, const char *what)
{
    uint64_t now = uv_now(srv->ctx->loop);
    if (srv->last_limit_log_ms && now - srv->last_limit_log_ms < LIMIT_LOG_INTERVAL_MS)
        return;
    srv->last_limit_log_ms = now;
    p2p_log(srv->ctx, P2P_LOG_WARN, "http", fmt, what);
}

/* ---- reading: SSL_read interposition ----------------------------------------- */

typedef int (*ssl_read_fn)(SSL *ssl, void *buf, int num);

static ssl_read_fn openssl_read(void)
{
    static const char name[] = "SSL_read";
    void *f = dlsym(RTLD_NEXT, name);
    ssl_read_fn fn;
    memcpy(&fn, &f, sizeof(fn)); /* object pointer to function pointer, as POSIX allows */
    return fn;
}

/* Our server connection behind `ssl`, or NULL. */
static http_conn *conn_of_ssl(SSL *ssl)
{
    BIO *rb = SSL_get_rbio(ssl);
    const char *name = rb ? BIO_method_name(rb) : NULL;
    if (!name || strcmp(name, "h2o_socket") != 0)
        return NULL;
    http_server *srv = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    h2o_socket_t *sock = BIO_get_data(rb);
    if (!srv || srv->magic != HTTP_SERVER_MAGIC || !sock)
        return NULL;
    int fd = h2o_socket_get_fd(sock);
    if (fd < 0 || (size_t)fd >= srv->n_by_fd || !srv->by_fd[fd])
        return NULL;
    http_conn *c = srv->by_fd[fd];
    return c->sock == sock ? c : NULL;
}

static void count_refusal(http_conn *c, p2p_wire_verdict v)
{
    http_server *srv = c->srv;
    if (v == P2P_WIRE_BAD_FRAMING)
        srv->stats.framing_rejected++;
    else if (v == P2P_WIRE_RAPID_RESET)
        srv->stats.rapid_resets++;
    else
        srv->stats.stream_limit++;
    limit_log(srv, "refusing a client connection: %s", p2p__wire_verdict_name(v));
}

static int wire_read(http_conn *c, ssl_read_fn real, SSL *ssl, uint8_t *buf, int num)
{
    http_server *srv = c->srv;
    int n;
    if (c->upgraded)
        return real(ssl, buf, num); /* a WebSocket now: its own codec checks what it reads */
    if (c->wire_refused) {
        /* h2o is answering 400 or GOAWAY and closing; it gets nothing more */
        while ((n = real(ssl, buf, num)) > 0)
            ;
        return n;
    }
    n = real(ssl, buf, num - 1); /* room for the second poison byte (see above) */
    if (n <= 0)
        return n;
    uint64_t now = uv_now(srv->ctx->loop);
    if (!c->wire_started) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &alen);
        int h2 = alen == 2 && memcmp(alpn, "h2", 2) == 0;
        p2p__wire_init(&c->wire, h2, (uint32_t)srv->ctx->cfg.http2_max_resets_per_second, now);
        c->wire_started = 1;
    }
    uint32_t budget = UINT32_MAX;
    if (c->wire.h2) {
        uint32_t open = c->h2 ? c->h2->num_streams.pull.open + c->h2->num_streams.priority.open : 0;
        budget = open < HTTP2_MAX_OPEN_STREAMS ? HTTP2_MAX_OPEN_STREAMS - open : 0;
    }
    int64_t at = 0;
    p2p_wire_verdict v = p2p__wire_feed(&c->wire, buf, (size_t)n, now, budget, &at);
    if (v == P2P_WIRE_OK)
        return n;
    c->wire_refused = 1;
    count_refusal(c, v);
    if (!c->wire.h2) {
        buf[at] = '\r';
        buf[at + 1] = 0x01;
        return (int)at + 2;
    }
    h2o_buffer_t *in = c->sock->input;
    if (at < 0 && !(in && (uint8_t *)in->bytes + in->size == buf && (uint64_t)-at <= in->size)) {
        /* not where h2o's buffer should be: close without GOAWAY */
        shutdown(c->fd, SHUT_RDWR);
        return 0;
    }
    buf[at] = buf[at + 1] = buf[at + 2] = 0xff;
    return (int)(at + 9);
}

/* Interposes OpenSSL's SSL_read for the whole process: see the top of the file. */
P2P_EXTERN int SSL_read(SSL *ssl, void *buf, int num)
{
    ssl_read_fn real = openssl_read();
    if (!real)
        return -1;
    http_conn *c = num >= 2 ? conn_of_ssl(ssl) : NULL;
    if (!c)
        return real(ssl, buf, num);
    return wire_read(c, real, ssl, buf, num);
}

/* ---- writing: pending response bytes ------------------------------------------ */

http_conn *p2p__http_conn_of(http_server *srv, h2o_req_t *req)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (!sock)
        return NULL;
    int fd = h2o_socket_get_fd(sock);
    if (fd < 0 || (size_t)fd >= srv->n_by_fd || !srv->by_fd[fd] || srv->by_fd[fd]->sock != sock)
        return NULL;
    http_conn *c = srv->by_fd[fd];
    if (req->version >= 0x200 && !c->h2)
        c->h2 = (h2o_http2_conn_t *)req->conn; /* h2o_http2_conn_t begins with its h2o_conn_t */
    return c;
}

static void out_unlink(http_out *o)
{
    if (!o->conn)
        return;
    o->conn->pending_bytes -= o->len;
    *o->pprev = o->next;
    if (o->next)
        o->next->pprev = o->pprev;
    o->conn = NULL;
}

static void out_release(void *p)
{
    http_out *o = p;
    o->srv->stats.pending_bytes -= o->len;
    if (o->conn) {
        o->conn->outs_done++;
        out_unlink(o);
    }
}

int p2p__http_out_admit(h2o_req_t *req, size_t len)
{
    http_server *srv = H2O_STRUCT_FROM_MEMBER(http_server, h2o, req->conn->ctx);
    http_conn *c = p2p__http_conn_of(srv, req);
    const p2p_config *cfg = &srv->ctx->cfg;
    if ((c && c->pending_bytes + len > (uint64_t)cfg->http_max_pending_bytes_per_conn) ||
        srv->stats.pending_bytes + len > (uint64_t)cfg->http_max_pending_bytes_total) {
        srv->stats.pending_refused++;
        limit_log(srv, "refusing responses: %s", "too many response bytes wait for clients to read them");
        return 0;
    }
    http_out *o = h2o_mem_alloc_shared(&req->pool, sizeof(*o), out_release);
    memset(o, 0, sizeof(*o));
    o->srv = srv;
    o->req = req;
    o->len = len;
    srv->stats.pending_bytes += len;
    if (c) {
        o->conn = c;
        o->next = c->outs;
        if (c->outs)
            c->outs->pprev = &o->next;
        o->pprev = &c->outs;
        c->outs = o;
        c->pending_bytes += len;
    }
    return 1;
}

void p2p__http_conn_closed(http_conn *c)
{
    while (c->outs)
        out_unlink(c->outs);
}

/* ---- write timeout ----------------------------------------------------------- */

static void begin_close(http_server *srv, http_conn *c, uint64_t now)
{
    srv->stats.write_timeouts++;
    limit_log(srv, "closing a connection: %s", "the client left a response unread past http_write_timeout");
    c->closing_since_ms = now;
    h2o_http2_conn_t *h2 = c->h2;
    if (h2 && h2->state != H2O_HTTP2_CONN_STATE_IS_CLOSING) {
        h2o_http2_encode_goaway_frame(&h2->_write.buf, h2->pull_stream_ids.max_open, H2O_HTTP2_ERROR_NONE,
                                      h2o_iovec_init(H2O_STRLIT("write timeout")));
        h2o_http2_conn_request_write(h2);
        return; /* shut down at the next sweep */
    }
    shutdown(c->fd, SHUT_RDWR);
}

static void sweep_conn(http_server *srv, http_conn *c, uint64_t now)
{
    if (c->closing_since_ms) {
        if (now - c->closing_since_ms >= GOAWAY_GRACE_MS)
            shutdown(c->fd, SHUT_RDWR); /* again if need be: harmless */
        return;
    }
    size_t wqs = c->tcp.write_queue_size;
    if (!c->outs && wqs == 0) {
        c->stalled_since_ms = 0;
        return;
    }
    uint64_t mark = c->outs_done;
    for (http_out *o = c->outs; o; o = o->next)
        mark += o->req->bytes_sent;
    int progress = c->stalled_since_ms == 0 || mark != c->stall_mark || wqs < c->stall_wqs;
    c->stall_mark = mark;
    c->stall_wqs = wqs;
    if (progress) {
        c->stalled_since_ms = now;
        return;
    }
    if (now - c->stalled_since_ms >= (uint64_t)srv->ctx->cfg.http_write_timeout * 1000)
        begin_close(srv, c, now);
}

static void on_sweep(uv_timer_t *t)
{
    http_server *srv = t->data;
    uint64_t now = uv_now(srv->ctx->loop);
    for (size_t fd = 0; fd < srv->n_by_fd; fd++)
        if (srv->by_fd[fd])
            sweep_conn(srv, srv->by_fd[fd], now);
}

void p2p__http_limits_start(http_server *srv)
{
    uv_timer_init(srv->ctx->loop, &srv->sweep_timer);
    srv->sweep_timer.data = srv;
    uv_timer_start(&srv->sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_unref((uv_handle_t *)&srv->sweep_timer);
    srv->sweep_open = 1;
}

void p2p__http_limits_stop(http_server *srv)
{
    if (srv->sweep_open) {
        uv_close((uv_handle_t *)&srv->sweep_timer, NULL);
        srv->sweep_open = 0;
    }
}
