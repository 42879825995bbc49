/*
 * client.c — outbound HTTP/2 over mutual TLS: libnghttp2 + OpenSSL (memory
 * BIOs) on a uv_tcp_t of the node's libuv loop.
 *
 * Data path of a connection:
 *   socket --uv_read--> rbio --SSL_read--> nghttp2_session_mem_recv (callbacks
 *   fill the requests' responses)
 *   nghttp2_session_mem_send --SSL_write--> wbio --uv_write--> socket
 * Nothing blocks: memory BIOs never wait, libuv does the I/O.
 *
 * Pooling: one connection per peer key (node id, address, port, TLS material
 * generation). A connection carries at most min(opts.max_streams, the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS) streams; further requests wait in its queue
 * (in order) and start as streams close. A connection that received GOAWAY, or
 * is closing, takes no new requests: the next request opens a new one.
 *
 * Failures and retries: a request that never reached the server — queued on a
 * connection that died before its HEADERS were sent, above a GOAWAY's
 * last-stream-id, or refused with REFUSED_STREAM — is moved once to a new
 * connection (only when the dead connection had worked, so a peer that refuses
 * us is not hammered). Anything that may have reached the server fails with
 * E_PROTOCOL.
 *
 * Timers: one uv_timer_t per client, armed for the earliest deadline among
 * requests (whole-request timeouts) and connections (connect/TLS timeout,
 * idle close, keep-alive PING, PING answer). A sweep handles what is due.
 *
 * Re-entrancy: user callbacks may call back into the client. `depth` counts
 * the frames that call user code; a close requested inside one cancels what is
 * left at once and defers the handle closes until the outermost frame unwinds.
 * A connection's memory (SSL, nghttp2 session) is freed only from its handle's
 * close callback, never inside our own stack.
 */
#include "rpc/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "pki/pki.h"

#define DEF_CONNECT_TIMEOUT_MS 5000u
#define DEF_TIMEOUT_MS 30000u
#define DEF_STREAMS 100u
#define DEF_MAX_RESPONSE ((size_t)16 << 20)
#define DEF_IDLE_SECONDS 50u /* below the node's default http_idle_timeout (60 s) */
#define PING_AFTER_MS 15000u  /* silence on a connection before we PING */
#define PING_WAIT_MS 10000u   /* how long the PING may stay unanswered */
#define STREAM_WINDOW (256u << 10)
#define CONN_WINDOW (1u << 20)
#define MAX_HEADER_BYTES (64u << 10)
#define READ_CHUNK 65536u

/* ---- types ---------------------------------------------------------------- */

typedef struct tls_gen {
    unsigned refs;
    SSL_CTX *ctx;
} tls_gen;

typedef struct conn conn;

typedef struct xfer {
    struct xfer *prev, *next;
    p2p__httpc *c;
    uint64_t id;
    conn *cn;
    int32_t stream_id; /* 0: queued, not sent */
    bool sent;         /* HEADERS went to the wire (may have reached the server) */
    bool waiting;      /* to be put on a connection at the next settle */
    unsigned retries;
    char *node_id, *address;
    uint16_t port;
    tls_gen *tls;
    nghttp2_nv *nva;
    size_t nnv;
    char *hdrbuf; /* storage for the nva strings */
    uint8_t *req_body;
    size_t req_len, req_off;
    bool post;
    p2p__httpc_cb cb;
    void *udata;
    int status;
    size_t hdr_bytes;
    uint8_t *body;
    size_t len, cap, max;
    uint64_t start_ns, deadline; /* deadline in uv_now ms */
    char message[320];
} xfer;

enum conn_state { C_CONNECTING, C_HANDSHAKE, C_READY, C_DEAD };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    conn *prev, *next;
    p2p__httpc *c;
    enum conn_state state;
    char *node_id, *address;
    uint16_t port;
    tls_gen *tls;
    SSL *ssl;
    BIO *rbio, *wbio;
    nghttp2_session *h2;
    unsigned streams;    /* open streams */
    bool goaway;         /* no new streams */
    bool got_frames;     /* the peer has spoken HTTP/2 to us */
    bool worked;         /* a response came back on it */
    bool fuzz;           /* p2p__httpc_fuzz_response: no socket, no TLS */
    uint64_t connect_deadline, idle_since, last_rx, ping_sent;
};

struct p2p__httpc {
    uv_loop_t *loop;
    uv_timer_t timer;
    p2p__httpc_opts o;
    tls_gen *tls;
    xfer *xfers; /* in flight, newest first */
    conn *conns; /* not dead */
    uint64_t next_id;
    p2p__httpc_stats st;
    unsigned depth;
    unsigned handles;
    bool closing, torn_down;
    void (*done)(void *);
    void *done_arg;
    char rbuf[READ_CHUNK]; /* socket reads; consumed before the next one */
};

/* ---- process set-up ------------------------------------------------------- */

int p2p__httpc_global_init(void)
{
    return OPENSSL_init_ssl(0, NULL) == 1 ? 0 : -EIO;
}

/* ---- TLS material ----------------------------------------------------------- */

static void tls_unref(tls_gen *t)
{
    if (!t || --t->refs > 0)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

static int tls_make(const char *ca, const char *cert, const char *key, bool insecure, tls_gen **out, char **err)
{
    if ((!ca && !insecure) || !cert != !key)
        return p2p__fail(err, -EINVAL, "TLS material: the CA is required, the certificate and key go together");
    int match = cert ? pki_key_matches_cert(key, cert) : 1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int n = 0, rc = 0;
    const char *why = NULL;
    if (!ctx) {
        rc = -ENOMEM;
        why = "TLS material: cannot create a TLS context";
        goto out;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *b = ca ? BIO_new_mem_buf(ca, -1) : NULL;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_cert(store, x);
        X509_free(x);
        n++;
    }
    BIO_free(b);
    if (n == 0 && !insecure) {
        rc = -EINVAL;
        why = "TLS material: no certificate in the CA bundle";
        goto out;
    }
    if (match < 0) {
        rc = -EINVAL;
        why = "TLS material: the certificate or key does not parse";
        goto out;
    }
    if (match == 0) {
        rc = -EINVAL;
        why = "TLS material: the key does not belong to the certificate";
        goto out;
    }
    int ok = 1;
    if (cert) { /* without one: server authentication only (the CLI) */
        b = BIO_new_mem_buf(cert, -1);
        x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
        X509_free(x);
        while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) /* intermediates */
            ok = SSL_CTX_add0_chain_cert(ctx, x) == 1;
        BIO_free(b);
        b = BIO_new_mem_buf(key, -1);
        EVP_PKEY *pk = b && ok ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        ok = ok && pk && SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
        EVP_PKEY_free(pk);
    }
    if (!ok) {
        rc = -EINVAL;
        why = "TLS material: the certificate or key does not load";
        goto out;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
out:
    /* PEM parsing leaves entries on OpenSSL's per-thread queue; our TLS reads
     * on this thread must not see them. */
    ERR_clear_error();
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return p2p__fail(err, rc, "%s", why);
    }
    tls_gen *t = p2p__xcalloc(1, sizeof(*t));
    t->refs = 1;
    t->ctx = ctx;
    *out = t;
    return 0;
}

int p2p__httpc_set_tls(p2p__httpc *c, const char *ca_pem, const char *cert_pem, const char *key_pem, char **err)
{
    if (c->closing)
        return p2p__fail(err, -ESHUTDOWN, "the HTTP client is closing");
    tls_gen *t;
    int r = tls_make(ca_pem, cert_pem, key_pem, c->o.insecure != 0, &t, err);
    if (r != 0)
        return r;
    tls_unref(c->tls);
    c->tls = t;
    c->st.tls_updates++;
    return 0;
}

/* ---- bookkeeping ------------------------------------------------------------ */

static void teardown(p2p__httpc *c);
static void rearm(p2p__httpc *c);
static void conn_flush(conn *cn);
static void conn_kill(conn *cn, p2p__httpc_error e, const char *msg);
static void conn_pump(conn *cn);
static void attach(p2p__httpc *c, xfer *x);

static void maybe_release(p2p__httpc *c)
{
    if (!c->torn_down || c->handles > 0)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    free(c);
    if (done)
        done(arg);
}

static void enter(p2p__httpc *c)
{
    c->depth++;
}

static void settle(p2p__httpc *c);

/* The outermost frame settles: waiting requests go onto connections, freed
 * stream slots are filled, pending frames (resets, pings) are flushed, and the
 * timer is re-armed. Teardown, when requested, happens here too. */
static void leave(p2p__httpc *c)
{
    if (c->depth > 1) {
        c->depth--;
        return;
    }
    if (!c->closing)
        settle(c);
    c->depth--;
    if (c->closing && !c->torn_down)
        teardown(c);
    else if (!c->closing)
        rearm(c);
}

static void xfer_unlink(p2p__httpc *c, xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    c->st.active--;
}

static void xfer_free(xfer *x)
{
    tls_unref(x->tls);
    free(x->node_id);
    free(x->address);
    free(x->nva);
    free(x->hdrbuf);
    free(x->req_body);
    free(x->body);
    free(x);
}

/* Detaches `x` from its connection (resetting its stream when it has one). */
static void xfer_detach(xfer *x)
{
    conn *cn = x->cn;
    if (!cn)
        return;
    if (x->stream_id > 0) {
        if (cn->h2 && cn->state == C_READY) {
            nghttp2_session_set_stream_user_data(cn->h2, x->stream_id, NULL);
            nghttp2_submit_rst_stream(cn->h2, NGHTTP2_FLAG_NONE, x->stream_id, NGHTTP2_CANCEL);
        }
        /* the stream slot frees when nghttp2 closes the stream */
    }
    x->cn = NULL;
    x->stream_id = 0;
}

/* Moves `x` back to the waiting set (a retry or a connection that takes no
 * more streams); it is attached again when the outermost frame settles. */
static void requeue(xfer *x, bool retry)
{
    x->cn = NULL;
    x->stream_id = 0;
    x->waiting = true;
    if (retry) {
        x->retries++;
        x->sent = false;
    }
}

/* Ends `x`: out of every list, callback, freed. */
static void finish(p2p__httpc *c, xfer *x, p2p__httpc_error e, const char *msg)
{
    xfer_detach(x);
    xfer_unlink(c, x);
    p2p__httpc_res res = {.id = x->id, .total_ms = (double)(uv_hrtime() - x->start_ns) / 1e6};
    res.error = e;
    if (e == P2P_HTTPC_E_CANCELLED) {
        res.message = "cancelled";
        c->st.cancelled++;
    } else if (e == P2P_HTTPC_OK) {
        res.status = x->status;
        res.message = "";
        c->st.responses++;
    } else {
        snprintf(x->message, sizeof x->message, "%s", msg ? msg : p2p__httpc_error_name(e));
        res.message = x->message;
        c->st.failures++;
    }
    if (e == P2P_HTTPC_OK && x->body) {
        res.body = x->body;
        res.body_len = x->len;
    } else {
        res.body = (const uint8_t *)"";
    }
    enter(c);
    x->cb(x->udata, &res);
    xfer_free(x);
    leave(c);
}

/* ---- nghttp2 callbacks -------------------------------------------------------- */

static ssize_t h2_send_noop(nghttp2_session *s, const uint8_t *d, size_t n, int f, void *u)
{
    (void)s, (void)d, (void)f, (void)u;
    return (ssize_t)n; /* we use mem_send */
}

static int on_h2_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags, void *u)
{
    (void)flags, (void)u;
    if (fr->hd.type != NGHTTP2_HEADERS)
        return 0;
    xfer *x = nghttp2_session_get_stream_user_data(s, fr->hd.stream_id);
    if (!x)
        return 0;
    x->hdr_bytes += namelen + valuelen + 32;
    if (x->hdr_bytes > MAX_HEADER_BYTES)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        x->status = st;
    }
    return 0;
}

static int on_h2_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *u)
{
    (void)flags;
    conn *cn = u;
    xfer *x = nghttp2_session_get_stream_user_data(s, sid);
    if (!x)
        return 0;
    if (len > x->max - x->len) {
        char msg[96];
        snprintf(msg, sizeof msg, "response larger than %zu bytes", x->max);
        finish(cn->c, x, P2P_HTTPC_E_PROTOCOL, msg); /* resets the stream */
        return 0;
    }
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 1024;
        while (cap < x->len + len + 1)
            cap *= 2;
        x->body = p2p__xrealloc(x->body, cap);
        x->cap = cap;
    }
    memcpy(x->body + x->len, data, len);
    x->len += len;
    x->body[x->len] = '\0';
    return 0;
}

static int on_h2_frame(nghttp2_session *s, const nghttp2_frame *fr, void *u)
{
    (void)s;
    conn *cn = u;
    cn->got_frames = true;
    if (fr->hd.type == NGHTTP2_GOAWAY)
        cn->goaway = true; /* streams above last_stream_id close with REFUSED_STREAM */
    return 0;
}

static int on_h2_close(nghttp2_session *s, int32_t sid, uint32_t code, void *u)
{
    conn *cn = u;
    if (cn->streams > 0)
        cn->streams--;
    xfer *x = nghttp2_session_get_stream_user_data(s, sid);
    if (!x)
        return 0;
    p2p__httpc *c = cn->c;
    x->stream_id = 0; /* closed: nothing to reset */
    if (code == NGHTTP2_NO_ERROR && x->status > 0) {
        cn->worked = true;
        finish(c, x, P2P_HTTPC_OK, NULL);
        return 0;
    }
    if (code == NGHTTP2_REFUSED_STREAM && x->retries == 0 && !c->closing) {
        /* never processed (RFC 9113 §8.7): once more on another connection */
        requeue(x, true);
        return 0;
    }
    char msg[160];
    if (code != NGHTTP2_NO_ERROR)
        snprintf(msg, sizeof msg, "stream reset: HTTP/2 error %s (%u)", nghttp2_http2_strerror(code), code);
    else
        snprintf(msg, sizeof msg, "stream closed without a response");
    finish(c, x, P2P_HTTPC_E_PROTOCOL, msg);
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *u)
{
    (void)src, (void)u;
    xfer *x = nghttp2_session_get_stream_user_data(s, sid);
    if (!x)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = x->req_len - x->req_off;
    if (n > len)
        n = len;
    if (n)
        memcpy(buf, x->req_body + x->req_off, n);
    x->req_off += n;
    if (x->req_off == x->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_session_callbacks *h2_callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cb, h2_send_noop);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_h2_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_h2_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_h2_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_h2_close);
    return cb;
}

/* A client session with our SETTINGS queued. 0 or -1. */
static int h2_session_new(conn *cn, uint32_t max_streams)
{
    nghttp2_session_callbacks *cb = h2_callbacks();
    nghttp2_option *opt = NULL;
    if (!cb || nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return -1;
    }
    nghttp2_option_set_peer_max_concurrent_streams(opt, max_streams);
    nghttp2_option_set_max_outbound_ack(opt, 64);
    nghttp2_option_set_max_settings(opt, 32);
    int r = nghttp2_session_client_new2(&cn->h2, cb, cn, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (r != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 0}, /* the server opens none */
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES},
    };
    if (nghttp2_submit_settings(cn->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(cn->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        return -1;
    return 0;
}

/* ---- connections ---------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    conn *cn = h->data;
    p2p__httpc *c = cn->c;
    if (cn->h2)
        nghttp2_session_del(cn->h2);
    SSL_free(cn->ssl); /* frees the BIOs */
    tls_unref(cn->tls);
    free(cn->node_id);
    free(cn->address);
    free(cn);
    c->handles--;
    maybe_release(c);
}

static void conn_unlink(p2p__httpc *c, conn *cn)
{
    if (cn->prev)
        cn->prev->next = cn->next;
    else
        c->conns = cn->next;
    if (cn->next)
        cn->next->prev = cn->prev;
    cn->prev = cn->next = NULL;
}

static uint32_t conn_max_streams(conn *cn)
{
    uint32_t m = cn->c->o.max_streams;
    if (cn->h2) {
        uint32_t peer = nghttp2_session_get_remote_settings(cn->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (peer < m)
            m = peer;
    }
    return m;
}

static xfer *first_on(p2p__httpc *c, conn *cn, bool queued_only)
{
    xfer *best = NULL;
    for (xfer *x = c->xfers; x; x = x->next)
        if (x->cn == cn && (!queued_only || x->stream_id == 0) && (!best || x->id < best->id))
            best = x;
    return best;
}

/* Ends the connection: its requests fail with `e` (those that never reached
 * the server move to a new connection when this one had worked). */
static void conn_kill(conn *cn, p2p__httpc_error e, const char *msg)
{
    if (cn->state == C_DEAD)
        return;
    p2p__httpc *c = cn->c;
    bool retry_ok = cn->worked && !c->closing;
    enum conn_state was = cn->state;
    cn->state = C_DEAD;
    conn_unlink(c, cn);
    enter(c);
    xfer *x;
    while ((x = first_on(c, cn, false)) != NULL) {
        x->stream_id = 0; /* the session is gone: no reset to send */
        if (!x->sent && retry_ok && x->retries == 0) {
            requeue(x, true);
            continue;
        }
        char m[300];
        if (x->sent && e == P2P_HTTPC_E_PROTOCOL && was == C_READY && !cn->got_frames)
            snprintf(m, sizeof m,
                     "%s (the peer closed a new connection without answering: did it reject our client "
                     "certificate?)",
                     msg);
        else
            snprintf(m, sizeof m, "%s", msg);
        finish(c, x, x->sent || e != P2P_HTTPC_E_PROTOCOL ? e : P2P_HTTPC_E_CONNECT, m);
    }
    uv_read_stop((uv_stream_t *)&cn->tcp);
    uv_close((uv_handle_t *)&cn->tcp, on_conn_closed);
    leave(c);
}

typedef struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
} wreq;

static void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *cn = req->handle->data;
    free(w);
    if (status < 0 && status != UV_ECANCELED && cn->state != C_DEAD) {
        char m[96];
        snprintf(m, sizeof m, "write failed: %s", uv_strerror(status));
        p2p__httpc *c = cn->c;
        enter(c);
        conn_kill(cn, P2P_HTTPC_E_PROTOCOL, m);
        leave(c);
    }
}

/* Moves what TLS has produced to the socket. */
static void wbio_drain(conn *cn)
{
    size_t pending;
    if (!cn->wbio)
        return;
    while ((pending = BIO_ctrl_pending(cn->wbio)) > 0) {
        wreq *w = p2p__xmalloc(sizeof(*w) + pending);
        int n = BIO_read(cn->wbio, w->data, (int)pending);
        if (n <= 0) {
            free(w);
            return;
        }
        w->len = (size_t)n;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
        if (uv_write(&w->req, (uv_stream_t *)&cn->tcp, &b, 1, on_written) != 0) {
            free(w);
            conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "write failed");
            return;
        }
    }
}

/* nghttp2 -> TLS -> socket. */
static void conn_flush(conn *cn)
{
    if (cn->state != C_READY)
        return;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(cn->h2, &data);
        if (n < 0) {
            conn_kill(cn, P2P_HTTPC_E_PROTOCOL, nghttp2_strerror((int)n));
            return;
        }
        if (n == 0)
            break;
        if (cn->fuzz)
            continue;
        if (SSL_write(cn->ssl, data, (int)n) != (int)n) {
            ERR_clear_error();
            conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "TLS write failed");
            return;
        }
    }
    wbio_drain(cn);
}

/* Starts queued requests while stream slots are free. */
static void conn_pump(conn *cn)
{
    p2p__httpc *c = cn->c;
    if (cn->state != C_READY)
        return;
    while (!cn->goaway && cn->streams < conn_max_streams(cn)) {
        xfer *x = first_on(c, cn, true);
        if (!x)
            break;
        nghttp2_data_provider prd = {.read_callback = read_body};
        int32_t sid = nghttp2_submit_request(cn->h2, NULL, x->nva, x->nnv, x->post ? &prd : NULL, x);
        if (sid < 0) {
            if (sid == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
                cn->goaway = true; /* ids exhausted: let a new connection take over */
                break;
            }
            finish(c, x, P2P_HTTPC_E_INTERNAL, nghttp2_strerror(sid));
            continue;
        }
        x->stream_id = sid;
        x->sent = true;
        cn->streams++;
    }
    if (cn->goaway) {
        /* requests still queued here go to a connection that takes them */
        xfer *x;
        while ((x = first_on(c, cn, true)) != NULL)
            requeue(x, false);
    }
    conn_flush(cn);
}

static void tls_fail(conn *cn, const char *what)
{
    char m[300];
    long v = SSL_get_verify_result(cn->ssl);
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK)
        snprintf(m, sizeof m, "TLS: the peer's certificate for '%s' is refused: %s", cn->node_id,
                 X509_verify_cert_error_string(v));
    else if (e)
        snprintf(m, sizeof m, "TLS %s: %s", what, ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error");
    else
        snprintf(m, sizeof m, "TLS %s failed", what);
    ERR_clear_error();
    conn_kill(cn, P2P_HTTPC_E_TLS, m);
}

static void handshake(conn *cn)
{
    int r = SSL_do_handshake(cn->ssl);
    if (r != 1) {
        int e = SSL_get_error(cn->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            wbio_drain(cn);
            return;
        }
        wbio_drain(cn); /* our alert, if any */
        tls_fail(cn, "handshake");
        return;
    }
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(cn->ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
        conn_kill(cn, P2P_HTTPC_E_TLS, "the peer did not negotiate HTTP/2 (ALPN h2)");
        return;
    }
    if (h2_session_new(cn, cn->c->o.max_streams) != 0) {
        conn_kill(cn, P2P_HTTPC_E_INTERNAL, "cannot set up the HTTP/2 session");
        return;
    }
    cn->state = C_READY;
    cn->connect_deadline = 0;
    cn->last_rx = uv_now(cn->c->loop);
    conn_pump(cn);
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    (void)sz;
    conn *cn = h->data;
    *buf = uv_buf_init(cn->c->rbuf, sizeof cn->c->rbuf);
}

/* The server's bytes (decrypted) into nghttp2: 0, or -1 when the connection
 * died of them. */
static int h2_input(conn *cn, const uint8_t *buf, size_t n)
{
    ssize_t used = nghttp2_session_mem_recv(cn->h2, buf, n);
    if (used < 0) {
        char m[160];
        snprintf(m, sizeof m, "HTTP/2: %s", nghttp2_strerror((int)used));
        conn_kill(cn, P2P_HTTPC_E_PROTOCOL, m);
        return -1;
    }
    return cn->state == C_READY ? 0 : -1;
}

static void h2_after_input(conn *cn)
{
    if (cn->state != C_READY)
        return;
    conn_pump(cn);
    if (cn->state == C_READY && !nghttp2_session_want_read(cn->h2) && !nghttp2_session_want_write(cn->h2))
        conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "the HTTP/2 session ended");
}

/* Feeds decrypted bytes to nghttp2. */
static void conn_recv(conn *cn)
{
    uint8_t buf[16384];
    for (;;) {
        if (cn->state != C_READY)
            return;
        int n = SSL_read(cn->ssl, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(cn->ssl, n);
            if (e == SSL_ERROR_WANT_READ)
                break;
            if (e == SSL_ERROR_ZERO_RETURN) {
                conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "the peer closed the connection");
                return;
            }
            unsigned long le = ERR_peek_last_error();
            const char *reason = le ? ERR_reason_error_string(le) : NULL;
            char m[200];
            snprintf(m, sizeof m, "TLS read: %s", reason ? reason : "error");
            bool alert = reason && strstr(reason, "alert") != NULL;
            ERR_clear_error();
            /* an alert before any HTTP/2 frame: our certificate was rejected
             * (TLS 1.3 finishes our handshake before the server judges it) */
            conn_kill(cn, alert && !cn->got_frames ? P2P_HTTPC_E_TLS : P2P_HTTPC_E_PROTOCOL, m);
            return;
        }
        if (h2_input(cn, buf, (size_t)n) != 0)
            return;
    }
    h2_after_input(cn);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn *cn = s->data;
    p2p__httpc *c = cn->c;
    if (cn->state == C_DEAD || n == 0)
        return;
    enter(c);
    if (n < 0) {
        char m[120];
        snprintf(m, sizeof m, "%s", n == UV_EOF ? "the peer closed the connection" : uv_strerror((int)n));
        if (n != UV_EOF)
            snprintf(m, sizeof m, "connection lost: %s", uv_strerror((int)n));
        if (cn->state == C_HANDSHAKE)
            conn_kill(cn, P2P_HTTPC_E_TLS, "the peer closed the connection during the TLS handshake");
        else
            conn_kill(cn, P2P_HTTPC_E_PROTOCOL, m);
        leave(c);
        return;
    }
    cn->last_rx = uv_now(c->loop);
    cn->ping_sent = 0;
    BIO_write(cn->rbio, buf->base, (int)n);
    if (cn->state == C_HANDSHAKE)
        handshake(cn);
    if (cn->state == C_READY)
        conn_recv(cn);
    leave(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *cn = req->data;
    p2p__httpc *c = cn->c;
    if (cn->state == C_DEAD)
        return;
    enter(c);
    if (status < 0) {
        char m[160];
        snprintf(m, sizeof m, "cannot connect to %s port %u: %s", cn->address, (unsigned)cn->port,
                 uv_strerror(status));
        conn_kill(cn, status == UV_ETIMEDOUT ? P2P_HTTPC_E_TIMEOUT : P2P_HTTPC_E_CONNECT, m);
        leave(c);
        return;
    }
    uv_tcp_nodelay(&cn->tcp, 1);
    uv_tcp_keepalive(&cn->tcp, 1, 30);
    cn->state = C_HANDSHAKE;
    if (uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0)
        conn_kill(cn, P2P_HTTPC_E_CONNECT, "cannot read from the socket");
    else
        handshake(cn);
    leave(c);
}

static conn *conn_new(p2p__httpc *c, const xfer *x)
{
    conn *cn = p2p__xcalloc(1, sizeof(*cn));
    cn->c = c;
    cn->node_id = p2p__xstrdup(x->node_id);
    cn->address = p2p__xstrdup(x->address);
    cn->port = x->port;
    cn->tls = x->tls;
    cn->tls->refs++;
    cn->state = C_CONNECTING;
    uv_update_time(c->loop);
    cn->connect_deadline = uv_now(c->loop) + c->o.connect_timeout_ms;
    cn->ssl = SSL_new(x->tls->ctx);
    cn->rbio = BIO_new(BIO_s_mem());
    cn->wbio = BIO_new(BIO_s_mem());
    uv_tcp_init(c->loop, &cn->tcp);
    cn->tcp.data = cn;
    c->handles++;
    cn->next = c->conns;
    if (cn->next)
        cn->next->prev = cn;
    c->conns = cn;
    c->st.connections++;
    if (!cn->ssl || !cn->rbio || !cn->wbio) {
        BIO_free(cn->rbio);
        BIO_free(cn->wbio);
        cn->rbio = cn->wbio = NULL;
        return cn; /* attach sees the missing BIOs and kills it */
    }
    SSL_set_bio(cn->ssl, cn->rbio, cn->wbio);
    SSL_set_connect_state(cn->ssl);
    unsigned char ipb[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, cn->node_id, ipb) == 1 || inet_pton(AF_INET6, cn->node_id, ipb) == 1) {
        /* tls_name given as an IP (the CLI): the certificate must list it as an IP SAN */
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(cn->ssl), cn->node_id);
    } else {
        SSL_set_tlsext_host_name(cn->ssl, cn->node_id);
        SSL_set_hostflags(cn->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(cn->ssl, cn->node_id); /* the certificate must name the node id */
    }
    cn->creq.data = cn;
    return cn;
}

static bool conn_takes(const conn *cn, const xfer *x)
{
    return cn->state != C_DEAD && !cn->goaway && cn->tls == x->tls && cn->port == x->port &&
           strcmp(cn->address, x->address) == 0 && strcmp(cn->node_id, x->node_id) == 0;
}

/* Puts `x` on a connection to its peer, opening one when none takes it. */
static void attach(p2p__httpc *c, xfer *x)
{
    conn *cn;
    for (cn = c->conns; cn; cn = cn->next)
        if (conn_takes(cn, x))
            break;
    bool fresh = false;
    if (!cn) {
        cn = conn_new(c, x);
        fresh = true;
    }
    x->cn = cn;
    x->stream_id = 0;
    x->waiting = false;
    cn->idle_since = 0;
    if (fresh) {
        if (!cn->ssl || !cn->rbio) {
            conn_kill(cn, P2P_HTTPC_E_INTERNAL, "cannot set up TLS");
            return;
        }
        struct sockaddr_storage ss;
        if (strchr(cn->address, ':'))
            uv_ip6_addr(cn->address, cn->port, (struct sockaddr_in6 *)&ss);
        else
            uv_ip4_addr(cn->address, cn->port, (struct sockaddr_in *)&ss);
        int r = uv_tcp_connect(&cn->creq, &cn->tcp, (struct sockaddr *)&ss, on_connect);
        if (r != 0) {
            char m[160];
            snprintf(m, sizeof m, "cannot connect to %s port %u: %s", cn->address, (unsigned)cn->port,
                     uv_strerror(r));
            conn_kill(cn, P2P_HTTPC_E_CONNECT, m);
        }
        return;
    }
    if (cn->state == C_READY && cn->streams < conn_max_streams(cn))
        conn_pump(cn);
}

static void settle(p2p__httpc *c)
{
    xfer *x;
again:
    for (x = c->xfers; x; x = x->next) {
        if (x->waiting) {
            attach(c, x); /* may fail it (and call back): the list may change */
            if (c->closing)
                return;
            goto again;
        }
    }
    uint64_t now = uv_now(c->loop);
    conn *cn, *next;
    for (cn = c->conns; cn; cn = next) {
        next = cn->next;
        if (cn->state != C_READY)
            continue;
        conn_pump(cn); /* fills free slots and flushes */
        if (c->closing)
            return;
        if (cn->state != C_READY)
            continue;
        if (cn->streams == 0 && !first_on(c, cn, false)) {
            if (!cn->idle_since)
                cn->idle_since = now;
        } else {
            cn->idle_since = 0;
        }
    }
}

/* ---- timers ------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void sweep(p2p__httpc *c)
{
    uint64_t now = uv_now(c->loop);
    xfer *x;
again:
    for (x = c->xfers; x; x = x->next) {
        if (x->deadline <= now) {
            char m[96];
            snprintf(m, sizeof m, "timed out after %llu ms",
                     (unsigned long long)((uv_hrtime() - x->start_ns) / 1000000u));
            finish(c, x, P2P_HTTPC_E_TIMEOUT, m);
            if (c->closing)
                return;
            goto again; /* the list may have changed under the callback */
        }
    }
    conn *cn, *next;
    for (cn = c->conns; cn; cn = next) {
        next = cn->next;
        if (cn->connect_deadline && cn->connect_deadline <= now) {
            char m[120];
            snprintf(m, sizeof m, "connect/TLS timeout (%u ms) to %s port %u", c->o.connect_timeout_ms, cn->address,
                     (unsigned)cn->port);
            conn_kill(cn, P2P_HTTPC_E_TIMEOUT, m);
            goto again_conns;
        }
        if (cn->state != C_READY)
            continue;
        if (cn->idle_since && now - cn->idle_since >= (uint64_t)c->o.idle_seconds * 1000u) {
            nghttp2_session_terminate_session(cn->h2, NGHTTP2_NO_ERROR);
            conn_flush(cn);
            conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "idle");
            goto again_conns;
        }
        if (cn->ping_sent && now - cn->ping_sent >= PING_WAIT_MS) {
            conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "the peer stopped answering (keep-alive PING unanswered)");
            goto again_conns;
        }
        if (!cn->ping_sent && now - cn->last_rx >= PING_AFTER_MS) {
            nghttp2_submit_ping(cn->h2, NGHTTP2_FLAG_NONE, NULL);
            cn->ping_sent = now;
            conn_flush(cn);
        }
        continue;
    again_conns:
        if (c->closing)
            return;
        next = c->conns;
    }
}

static void rearm(p2p__httpc *c)
{
    if (c->torn_down)
        return;
    uint64_t now = uv_now(c->loop), due = UINT64_MAX;
    for (xfer *x = c->xfers; x; x = x->next)
        if (x->deadline < due || x->waiting)
            due = x->waiting ? now : x->deadline;
    for (conn *cn = c->conns; cn; cn = cn->next) {
        if (cn->connect_deadline && cn->connect_deadline < due)
            due = cn->connect_deadline;
        if (cn->state != C_READY)
            continue;
        uint64_t d = cn->ping_sent ? cn->ping_sent + PING_WAIT_MS : cn->last_rx + PING_AFTER_MS;
        if (d < due)
            due = d;
        d = cn->idle_since + (uint64_t)c->o.idle_seconds * 1000u;
        if (cn->idle_since && d < due)
            due = d;
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    p2p__httpc *c = t->data;
    enter(c);
    sweep(c);
    leave(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    p2p__httpc *c = h->data;
    c->handles--;
    maybe_release(c);
}

/* ---- client ------------------------------------------------------------------- */

static uint32_t or_default(uint32_t v, uint32_t d)
{
    return v ? v : d;
}

p2p__httpc *p2p__httpc_new(uv_loop_t *loop, const p2p__httpc_opts *o, char **err)
{
    if (!loop || !o) {
        p2p__fail(err, -EINVAL, "p2p__httpc_new: no loop or options");
        return NULL;
    }
    if (p2p__httpc_global_init() != 0) {
        p2p__fail(err, -EIO, "OpenSSL initialisation failed");
        return NULL;
    }
    tls_gen *t;
    if (tls_make(o->ca_pem, o->cert_pem, o->key_pem, o->insecure != 0, &t, err) != 0)
        return NULL;
    p2p__httpc *c = p2p__xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->tls = t;
    c->o = *o;
    c->o.ca_pem = c->o.cert_pem = c->o.key_pem = NULL;
    c->o.connect_timeout_ms = or_default(o->connect_timeout_ms, DEF_CONNECT_TIMEOUT_MS);
    c->o.default_timeout_ms = or_default(o->default_timeout_ms, DEF_TIMEOUT_MS);
    c->o.max_streams = or_default(o->max_streams, DEF_STREAMS);
    c->o.max_response_bytes = o->max_response_bytes ? o->max_response_bytes : DEF_MAX_RESPONSE;
    c->o.idle_seconds = or_default(o->idle_seconds, DEF_IDLE_SECONDS);
    c->next_id = 1;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    return c;
}

void p2p__httpc_stats_get(const p2p__httpc *c, p2p__httpc_stats *out)
{
    *out = c->st;
    out->sockets = 0;
    for (const conn *cn = c->conns; cn; cn = cn->next)
        out->sockets++;
}

const char *p2p__httpc_error_name(p2p__httpc_error e)
{
    switch (e) {
    case P2P_HTTPC_OK:
        return "ok";
    case P2P_HTTPC_E_TIMEOUT:
        return "timeout";
    case P2P_HTTPC_E_CONNECT:
        return "connect";
    case P2P_HTTPC_E_TLS:
        return "tls";
    case P2P_HTTPC_E_PROTOCOL:
        return "protocol";
    case P2P_HTTPC_E_CANCELLED:
        return "cancelled";
    case P2P_HTTPC_E_INTERNAL:
        return "internal";
    }
    return "unknown";
}

/* ---- requests ----------------------------------------------------------------- */

/* Hosts such as "10", "0x0a" or "10.1" read as IPv4 numbers; certificate
 * checks would treat them as IP addresses instead of the node id. */
static bool looks_numeric_host(const char *s)
{
    const char *p = s;
    while (*p) {
        const char *start = p;
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
            p += 2;
            while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))
                p++;
        } else {
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (p == start)
            return false;
        if (*p == '.')
            p++;
        else if (*p)
            return false;
    }
    return true;
}

static bool path_ok(const char *p)
{
    if (!p || p[0] != '/')
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
            return false;
    return true;
}

static bool header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h)
        return false;
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    for (const char *p = h; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr(tchar, *p)))
            return false;
    size_t n = (size_t)(colon - h);
    static const char *const reserved[] = {"host",       "content-length", "transfer-encoding", "connection",
                                           "content-type", "expect",       "keep-alive",        "upgrade",
                                           "te",           "proxy-connection"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == n && strncasecmp(h, reserved[i], n) == 0)
            return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '\0')
            return false;
    return true;
}

static int validate(const p2p__httpc_req *r, bool *post, char **err)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (!r->node_id && r->tls_name) {
        size_t n = strlen(r->tls_name);
        bool ip = inet_pton(AF_INET, r->tls_name, buf) == 1 || inet_pton(AF_INET6, r->tls_name, buf) == 1;
        if (n == 0 || n > 253)
            return p2p__fail(err, -EINVAL, "invalid TLS name");
        for (const char *p = r->tls_name; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                  *p == '.' || (ip && *p == ':')))
                return p2p__fail(err, -EINVAL, "invalid TLS name '%s'", r->tls_name);
        if (!ip && looks_numeric_host(r->tls_name))
            return p2p__fail(err, -EINVAL, "TLS name '%s' reads as an IP address", r->tls_name);
    } else {
        if (!r->node_id || !pki_node_id_valid(r->node_id))
            return p2p__fail(err, -EINVAL, "invalid node id '%s'", r->node_id ? r->node_id : "(null)");
        if (looks_numeric_host(r->node_id))
            return p2p__fail(err, -EINVAL, "node id '%s' reads as an IP address; it cannot name a TLS peer",
                             r->node_id);
    }
    if (!r->address || (inet_pton(AF_INET, r->address, buf) != 1 && inet_pton(AF_INET6, r->address, buf) != 1))
        return p2p__fail(err, -EINVAL, "'%s' is not an IPv4 or IPv6 address", r->address ? r->address : "(null)");
    if (r->port == 0)
        return p2p__fail(err, -EINVAL, "port 0");
    if (!path_ok(r->path))
        return p2p__fail(err, -EINVAL, "invalid path '%s'", r->path ? r->path : "(null)");
    if (r->body_len && !r->body)
        return p2p__fail(err, -EINVAL, "body_len without a body");
    if (!r->method)
        *post = r->body != NULL;
    else if (strcmp(r->method, "GET") == 0)
        *post = false;
    else if (strcmp(r->method, "POST") == 0)
        *post = true;
    else
        return p2p__fail(err, -EINVAL, "method '%s' is not GET or POST", r->method);
    if (!*post && r->body_len)
        return p2p__fail(err, -EINVAL, "a GET request has no body");
    if (r->content_type && (strchr(r->content_type, '\r') || strchr(r->content_type, '\n')))
        return p2p__fail(err, -EINVAL, "invalid content type");
    for (size_t i = 0; i < r->n_headers; i++)
        if (!r->headers || !r->headers[i] || !header_ok(r->headers[i]))
            return p2p__fail(err, -EINVAL, "invalid or reserved header '%s'",
                             r->headers && r->headers[i] ? r->headers[i] : "(null)");
    return 0;
}

/* Builds the HEADERS of `x`: pseudo-headers, then the caller's (names
 * lower-cased, values trimmed). */
static void build_headers(xfer *x, const p2p__httpc_req *r)
{
    char authority[300], clen[32];
    const char *name = r->node_id ? r->node_id : r->tls_name;
    bool v6 = strchr(name, ':') != NULL;
    snprintf(authority, sizeof authority, "%s%s%s:%u", v6 ? "[" : "", name, v6 ? "]" : "", (unsigned)r->port);
    snprintf(clen, sizeof clen, "%zu", r->body_len);
    const char *ct = r->content_type ? r->content_type : "application/json";
    size_t nmax = 8 + r->n_headers;
    size_t bytes = strlen(authority) + strlen(r->path) + strlen(ct) + 128;
    for (size_t i = 0; i < r->n_headers; i++)
        bytes += strlen(r->headers[i]) + 2;
    x->nva = p2p__xcalloc(nmax, sizeof(nghttp2_nv));
    x->hdrbuf = p2p__xmalloc(bytes);
    char *p = x->hdrbuf;
    size_t n = 0;
#define ADD(nm, nl, vl_, vlen)                                                                                         \
    do {                                                                                                               \
        x->nva[n] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(vl_), (nl), (vlen), NGHTTP2_NV_FLAG_NONE};               \
        n++;                                                                                                           \
    } while (0)
#define COPY(s, len)                                                                                                   \
    ({                                                                                                                 \
        char *d_ = p;                                                                                                  \
        memcpy(p, (s), (len));                                                                                         \
        p += (len);                                                                                                    \
        *p++ = '\0';                                                                                                   \
        d_;                                                                                                            \
    })
    const char *m = x->post ? "POST" : "GET";
    ADD(":method", 7, m, strlen(m));
    ADD(":scheme", 7, "https", 5);
    char *a = COPY(authority, strlen(authority));
    ADD(":authority", 10, a, strlen(a));
    char *pa = COPY(r->path, strlen(r->path));
    ADD(":path", 5, pa, strlen(pa));
    ADD("user-agent", 10, "p2pcore/" P2P_VERSION, strlen("p2pcore/" P2P_VERSION));
    if (x->post) {
        char *c = COPY(ct, strlen(ct));
        ADD("content-type", 12, c, strlen(c));
        char *l = COPY(clen, strlen(clen));
        ADD("content-length", 14, l, strlen(l));
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *h = r->headers[i];
        const char *colon = strchr(h, ':');
        size_t nl = (size_t)(colon - h);
        char *nm = COPY(h, nl);
        for (size_t k = 0; k < nl; k++)
            if (nm[k] >= 'A' && nm[k] <= 'Z')
                nm[k] = (char)(nm[k] - 'A' + 'a');
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        char *vv = COPY(v, vl);
        ADD(nm, nl, vv, vl);
    }
#undef ADD
#undef COPY
    x->nnv = n;
}

uint64_t p2p__httpc_request(p2p__httpc *c, const p2p__httpc_req *r, p2p__httpc_cb cb, void *udata, char **err)
{
    bool post = false;
    if (!c || !r || !cb) {
        p2p__fail(err, -EINVAL, "p2p__httpc_request: missing client, request or callback");
        return 0;
    }
    if (c->closing) {
        p2p__fail(err, -ESHUTDOWN, "the HTTP client is closing");
        return 0;
    }
    if (validate(r, &post, err) != 0)
        return 0;
    xfer *x = p2p__xcalloc(1, sizeof(*x));
    x->c = c;
    x->cb = cb;
    x->udata = udata;
    x->post = post;
    x->max = c->o.max_response_bytes;
    x->tls = c->tls;
    x->tls->refs++;
    x->node_id = p2p__xstrdup(r->node_id ? r->node_id : r->tls_name); /* the name the certificate must carry */
    x->address = p2p__xstrdup(r->address);
    x->port = r->port;
    if (post && r->body_len) {
        x->req_body = p2p__xmalloc(r->body_len);
        memcpy(x->req_body, r->body, r->body_len);
        x->req_len = r->body_len;
    }
    build_headers(x, r);
    x->start_ns = uv_hrtime();
    uv_update_time(c->loop); /* the loop's cached time may be stale: deadlines count from now */
    x->deadline = uv_now(c->loop) + (r->timeout_ms ? r->timeout_ms : c->o.default_timeout_ms);
    x->id = c->next_id++;
    x->next = c->xfers;
    if (x->next)
        x->next->prev = x;
    c->xfers = x;
    c->st.active++;
    c->st.requests++;
    /* Callbacks never run inside this call: the request is put on a
     * connection when the current frame settles or, called from outside the
     * client, on the loop's next turn (zero-delay timer). */
    x->waiting = true;
    if (c->depth == 0)
        uv_timer_start(&c->timer, on_timer, 0, 0);
    return x->id;
}

int p2p__httpc_cancel(p2p__httpc *c, uint64_t id)
{
    for (xfer *x = c->xfers; x; x = x->next) {
        if (x->id == id) {
            enter(c);
            finish(c, x, P2P_HTTPC_E_CANCELLED, NULL);
            leave(c);
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- teardown ----------------------------------------------------------------- */

static void teardown(p2p__httpc *c)
{
    c->torn_down = true;
    while (c->conns) {
        conn *cn = c->conns;
        if (cn->state == C_READY) {
            nghttp2_session_terminate_session(cn->h2, NGHTTP2_NO_ERROR);
            conn_flush(cn);
        }
        if (cn->state != C_DEAD) {
            cn->state = C_DEAD;
            conn_unlink(c, cn);
            uv_read_stop((uv_stream_t *)&cn->tcp);
            uv_close((uv_handle_t *)&cn->tcp, on_conn_closed);
        }
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    tls_unref(c->tls);
    c->tls = NULL;
}

void p2p__httpc_close(p2p__httpc *c, void (*done)(void *arg), void *arg)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    enter(c);
    while (c->xfers) /* a callback may cancel others: take the head each time */
        finish(c, c->xfers, P2P_HTTPC_E_CANCELLED, NULL);
    leave(c);
}

void p2p__httpc_free(p2p__httpc *c)
{
    p2p__httpc_close(c, NULL, NULL);
}

/* ---- fuzzing hook ---------------------------------------------------------------- */

static void fuzz_cb(void *udata, const p2p__httpc_res *res)
{
    unsigned *n = udata;
    (*n)++;
    if (res->error == P2P_HTTPC_OK && res->body[res->body_len] != '\0')
        abort(); /* the body is NUL-terminated for callers */
}

int p2p__httpc_fuzz_response(p2p__httpc *c, const uint8_t *data, size_t len)
{
    if (c->closing || c->xfers || c->conns)
        return -EINVAL;
    /* A connection as it is after the handshake, minus the socket and TLS. */
    conn *cn = p2p__xcalloc(1, sizeof(*cn));
    cn->c = c;
    cn->fuzz = true;
    cn->node_id = p2p__xstrdup("node-a");
    cn->address = p2p__xstrdup("127.0.0.1");
    cn->port = 1;
    cn->tls = c->tls;
    cn->tls->refs++;
    uv_tcp_init(c->loop, &cn->tcp);
    cn->tcp.data = cn;
    c->handles++;
    c->conns = cn;
    if (h2_session_new(cn, c->o.max_streams) != 0)
        abort();
    cn->state = C_READY;
    unsigned calls = 0;
    static const char *const hdrs[] = {"Authorization: Bearer x"};
    p2p__httpc_req g = {.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/hello"};
    p2p__httpc_req p = {.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/rpc",
                        .body = "{\"jsonrpc\":\"2.0\"}", .body_len = 17, .headers = hdrs, .n_headers = 1};
    uint64_t ids[3];
    ids[0] = p2p__httpc_request(c, &g, fuzz_cb, &calls, NULL);
    ids[1] = p2p__httpc_request(c, &p, fuzz_cb, &calls, NULL);
    ids[2] = p2p__httpc_request(c, &p, fuzz_cb, &calls, NULL);
    enter(c);
    for (xfer *x = c->xfers; x; x = x->next) /* attach now: streams 1, 3, 5 */
        if (x->waiting)
            attach(c, x);
    conn_pump(cn);
    /* in pieces, as TLS records would hand them over */
    size_t off = 0;
    while (off < len && cn->state == C_READY) {
        size_t n = len - off;
        if (n > 1000)
            n = 1000;
        if (h2_input(cn, data + off, n) != 0)
            break;
        h2_after_input(cn);
        off += n;
    }
    /* what is left is cancelled (also retries: they would connect for real) */
    int retried = 0;
    for (xfer *x = c->xfers; x; x = x->next)
        if (x->waiting && x->retries > 0)
            retried++;
    for (int i = 0; i < 3; i++)
        p2p__httpc_cancel(c, ids[i]);
    if (cn->state != C_DEAD)
        conn_kill(cn, P2P_HTTPC_E_PROTOCOL, "end of input");
    leave(c);
    if (calls != 3 || c->xfers || c->st.active != 0)
        abort(); /* exactly one callback per request */
    return retried;
}
