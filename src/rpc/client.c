/*
 * client.c — outbound HTTP/2 over mutual TLS: libcurl's multi-socket API on the
 * node's libuv loop.
 *
 * How curl and libuv meet:
 *   - curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION). Each gets
 *     its own heap uv_poll_t, remembered with curl_multi_assign. On
 *     CURL_POLL_REMOVE the poll is uv_close()d at once: curl calls REMOVE before
 *     it closes the descriptor, so libuv drops the fd from epoll while it is still
 *     valid. A closing poll is never reused: if the kernel hands the same fd
 *     number to the next socket, that socket gets a new uv_poll_t.
 *   - curl tells us when to call it back (CURLMOPT_TIMERFUNCTION): -1 stops our
 *     uv_timer_t, 0 arms it with zero delay, which runs on the loop's next
 *     iteration and never re-enters curl from inside curl.
 *   - After every curl_multi_socket_action we read finished transfers
 *     (curl_multi_info_read) and call their callbacks.
 *
 * Pooling: connections live in the multi handle's cache. CURLMOPT_PIPELINING =
 * CURLPIPE_MULTIPLEX plus CURLOPT_PIPEWAIT make concurrent requests to one peer
 * wait for the first connection and share it as HTTP/2 streams, instead of each
 * opening a connection of its own. A share handle keeps TLS sessions across
 * easy handles (one easy handle per request), so a reconnect resumes.
 *
 * TLS material is a reference-counted generation handed to curl as
 * CURL_BLOB_NOCOPY blobs: a request holds the generation it started with until
 * its easy handle is cleaned up, so p2p__httpc_set_tls never pulls material from
 * under a handshake, and the private key exists once in our memory and is wiped
 * when the last user lets go. curl compares the CA and certificate blobs before
 * reusing a connection, so new material means new connections.
 *
 * Re-entrancy: user callbacks may call back into the client. `depth` counts the
 * frames that call user code; a close requested inside one cancels what is left
 * at once but defers curl_multi_cleanup and the handle closes until the outermost
 * frame unwinds (we may be inside a curl_multi_info_read loop then).
 */
#include "rpc/client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"
#include "pki/pki.h"

#define DEF_CONNECT_TIMEOUT_MS 5000u
#define DEF_TIMEOUT_MS 30000u
#define DEF_HOST_CONNECTIONS 4u
#define DEF_STREAMS 100u
#define DEF_IDLE_CONNECTIONS 64u
#define DEF_MAX_RESPONSE ((size_t)16 << 20)
#define DEF_IDLE_SECONDS 50u /* below the node's default http_idle_timeout (60 s) */

/* ---- types ---------------------------------------------------------------- */

typedef struct tls_gen {
    unsigned refs;
    char *ca, *cert, *key;
    struct curl_blob ca_blob, cert_blob, key_blob;
} tls_gen;

typedef struct xfer {
    struct xfer *prev, *next;
    p2p__httpc *c;
    uint64_t id;
    CURL *easy;
    struct curl_slist *headers, *connect_to;
    tls_gen *tls;
    p2p__httpc_cb cb;
    void *udata;
    uint8_t *body;
    size_t len, cap, max;
    bool too_large;
    char errbuf[CURL_ERROR_SIZE];
    char message[CURL_ERROR_SIZE + 160];
} xfer;

typedef struct sock {
    uv_poll_t poll;
    struct sock *prev, *next;
    p2p__httpc *c;
    curl_socket_t fd;
    int events; /* what curl asked for, in UV_* bits */
    bool closing;
} sock;

struct p2p__httpc {
    uv_loop_t *loop;
    CURLM *multi;
    CURLSH *share;
    uv_timer_t timer;
    p2p__httpc_opts o; /* PEM pointers cleared: the material lives in `tls` */
    tls_gen *tls;
    xfer *xfers; /* in flight, newest first */
    sock *socks; /* polls that are open (not closing) */
    uint64_t next_id;
    p2p__httpc_stats st;
    unsigned depth;   /* frames calling user code */
    unsigned handles; /* libuv handles not yet through their close callback */
    bool closing;     /* close requested: no new requests */
    bool torn_down;   /* curl released, handles closing */
    void (*done)(void *);
    void *done_arg;
};

/* ---- process set-up ------------------------------------------------------- */

/* Process-wide by nature (curl's own global state); the one static here. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int p2p__httpc_global_init(void)
{
    pthread_once(&global_once, global_init_once);
    return global_rc == CURLE_OK ? 0 : -EIO;
}

/* ---- TLS material ----------------------------------------------------------- */

static void tls_unref(tls_gen *t)
{
    if (!t || --t->refs > 0)
        return;
    free(t->ca);
    free(t->cert);
    pki_secret_free(t->key);
    free(t);
}

static int ca_count(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        n++;
    }
    BIO_free(b);
    return n;
}

static void blob_set(struct curl_blob *b, char *pem)
{
    b->data = pem;
    b->len = strlen(pem);
    b->flags = CURL_BLOB_NOCOPY;
}

static int tls_make(const char *ca, const char *cert, const char *key, tls_gen **out, char **err)
{
    if (!ca || !cert || !key)
        return p2p__fail(err, -EINVAL, "TLS material: the CA, certificate and key are all required");
    int n = ca_count(ca);
    int match = pki_key_matches_cert(key, cert);
    /* PEM parsing leaves entries on OpenSSL's per-thread queue; curl's TLS code
     * on this thread must not see them. */
    ERR_clear_error();
    if (n == 0)
        return p2p__fail(err, -EINVAL, "TLS material: no certificate in the CA bundle");
    if (match < 0)
        return p2p__fail(err, -EINVAL, "TLS material: the certificate or key does not parse");
    if (match == 0)
        return p2p__fail(err, -EINVAL, "TLS material: the key does not belong to the certificate");
    tls_gen *t = p2p__xcalloc(1, sizeof(*t));
    t->refs = 1;
    t->ca = p2p__xstrdup(ca);
    t->cert = p2p__xstrdup(cert);
    t->key = p2p__xstrdup(key);
    blob_set(&t->ca_blob, t->ca);
    blob_set(&t->cert_blob, t->cert);
    blob_set(&t->key_blob, t->key);
    *out = t;
    return 0;
}

int p2p__httpc_set_tls(p2p__httpc *c, const char *ca_pem, const char *cert_pem, const char *key_pem, char **err)
{
    if (c->closing)
        return p2p__fail(err, -ESHUTDOWN, "the HTTP client is closing");
    tls_gen *t;
    int r = tls_make(ca_pem, cert_pem, key_pem, &t, err);
    if (r != 0)
        return r;
    tls_unref(c->tls);
    c->tls = t;
    c->st.tls_updates++;
    return 0;
}

/* ---- handles: open/close bookkeeping ------------------------------------------ */

static void teardown(p2p__httpc *c);

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

static void leave(p2p__httpc *c)
{
    if (--c->depth == 0 && c->closing && !c->torn_down)
        teardown(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    sock *s = h->data;
    p2p__httpc *c = s->c;
    free(s);
    c->handles--;
    maybe_release(c);
}

static void sock_close(p2p__httpc *c, sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->st.sockets--;
    s->closing = true;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_timer_closed(uv_handle_t *h)
{
    p2p__httpc *c = h->data;
    c->handles--;
    maybe_release(c);
}

/* ---- finishing transfers ---------------------------------------------------- */

static p2p__httpc_error map_error(CURLcode rc, const xfer *x)
{
    switch (rc) {
    case CURLE_OK:
        return P2P_HTTPC_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return P2P_HTTPC_E_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return P2P_HTTPC_E_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
        return P2P_HTTPC_E_TLS;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        /* With TLS 1.3 the client finishes its handshake before the server has
         * checked the client certificate; a rejection arrives as an alert on the
         * first read ("tlsv13 alert certificate required", "tlsv1 alert unknown
         * ca"). curl reports that as a receive error; it is a TLS failure, and
         * the server never processed the request. */
        return strstr(x->errbuf, " alert ") ? P2P_HTTPC_E_TLS : P2P_HTTPC_E_PROTOCOL;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_NOT_BUILT_IN:
        return P2P_HTTPC_E_INTERNAL;
    default:
        return P2P_HTTPC_E_PROTOCOL;
    }
}

/* The connection ended before any response. */
static bool closed_early(CURLcode rc)
{
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_GOT_NOTHING || rc == CURLE_HTTP2 || rc == CURLE_HTTP2_STREAM ||
           rc == CURLE_RECV_ERROR;
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
    if (x->easy)
        curl_easy_cleanup(x->easy); /* before the material it points at */
    curl_slist_free_all(x->headers);
    curl_slist_free_all(x->connect_to);
    tls_unref(x->tls);
    free(x->body);
    free(x);
}

/* Ends `x` (already out of the list and the multi handle) and calls back. */
static void complete(p2p__httpc *c, xfer *x, CURLcode rc, bool cancelled)
{
    long status = 0, nconn = 0;
    double total = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &total);
    c->st.connections += (uint64_t)(nconn > 0 ? nconn : 0);
    curl_easy_cleanup(x->easy);
    x->easy = NULL;

    p2p__httpc_res res = {.id = x->id, .total_ms = total * 1000.0};
    if (cancelled) {
        res.error = P2P_HTTPC_E_CANCELLED;
        res.message = "cancelled";
        c->st.cancelled++;
    } else {
        res.error = map_error(rc, x);
        res.curl_code = (int)rc;
        if (res.error == P2P_HTTPC_OK) {
            res.status = (int)status;
            res.message = "";
            c->st.responses++;
        } else {
            const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
            if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
                res.error = P2P_HTTPC_E_PROTOCOL;
                snprintf(x->message, sizeof x->message, "response larger than %zu bytes", x->max);
            } else if (res.error == P2P_HTTPC_E_PROTOCOL && nconn > 0 && closed_early(rc)) {
                /* TLS 1.3 finishes the client's handshake before the server has
                 * judged our certificate; a server that then rejects it and
                 * closes without an alert (h2o 2.2 does) looks like this. We
                 * cannot tell it from a crash after reading the request, so it
                 * stays PROTOCOL (maybe processed), with a hint. */
                snprintf(x->message, sizeof x->message,
                         "%s (the peer closed a new connection without answering: did it reject our client "
                         "certificate?)",
                         detail);
            } else {
                snprintf(x->message, sizeof x->message, "%s", detail);
            }
            res.message = x->message;
            c->st.failures++;
        }
    }
    if (res.error == P2P_HTTPC_OK) {
        res.body = x->body ? x->body : (const uint8_t *)"";
        res.body_len = x->len;
    } else {
        res.body = (const uint8_t *)"";
    }
    enter(c);
    x->cb(x->udata, &res);
    xfer_free(x);
    leave(c);
}

static void drain_finished(p2p__httpc *c)
{
    CURLMsg *m;
    int left;
    while (!c->closing && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result; /* m is invalid once the handle is removed */
        xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(c->multi, e);
        xfer_unlink(c, x);
        complete(c, x, rc, false);
    }
}

/* ---- curl <-> libuv ----------------------------------------------------------- */

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock *s = p->data; /* stays allocated until its close callback, even if closed below */
    p2p__httpc *c = s->c;
    int flags = 0, running = 0;
    if (status < 0) {
        /* libuv turns EPOLLERR (say, a reset after a TLS alert) into UV_EBADF
         * and stops the handle. CURL_CSELECT_ERR would make curl fail with
         * "select/poll returned error" without reading what the peer sent, so
         * let curl read and write: it then reports the real cause. */
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    enter(c);
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    /* curl still wants the socket and will not tell us again: re-arm */
    if (status < 0 && !s->closing && s->events)
        uv_poll_start(&s->poll, s->events, on_poll);
    drain_finished(c);
    leave(c);
}

static void on_timer(uv_timer_t *t)
{
    p2p__httpc *c = t->data;
    int running = 0;
    enter(c);
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_finished(c);
    leave(c);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    p2p__httpc *c = userp;
    sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        /* curl forgets fd (and our pointer) after this; it has not closed it yet */
        if (s)
            sock_close(c, s);
        return 0;
    }
    if (!s) {
        s = p2p__xcalloc(1, sizeof(*s));
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1; /* curl fails the transfers on this socket */
        }
        s->poll.data = s;
        s->c = c;
        s->fd = fd;
        s->next = c->socks;
        if (s->next)
            s->next->prev = s;
        c->socks = s;
        c->handles++;
        c->st.sockets++;
        curl_multi_assign(c->multi, fd, s);
    }
    int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    s->events = ev;
    if (ev)
        uv_poll_start(&s->poll, ev, on_poll);
    else
        uv_poll_stop(&s->poll);
    return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    p2p__httpc *c = userp;
    if (c->torn_down)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
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
        p2p__fail(err, -EIO, "curl_global_init failed");
        return NULL;
    }
    tls_gen *t;
    if (tls_make(o->ca_pem, o->cert_pem, o->key_pem, &t, err) != 0)
        return NULL;
    p2p__httpc *c = p2p__xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->tls = t;
    c->o = *o;
    c->o.ca_pem = c->o.cert_pem = c->o.key_pem = NULL;
    c->o.connect_timeout_ms = or_default(o->connect_timeout_ms, DEF_CONNECT_TIMEOUT_MS);
    c->o.default_timeout_ms = or_default(o->default_timeout_ms, DEF_TIMEOUT_MS);
    c->o.max_host_connections = or_default(o->max_host_connections, DEF_HOST_CONNECTIONS);
    c->o.max_streams = or_default(o->max_streams, DEF_STREAMS);
    c->o.max_idle_connections = or_default(o->max_idle_connections, DEF_IDLE_CONNECTIONS);
    c->o.max_response_bytes = o->max_response_bytes ? o->max_response_bytes : DEF_MAX_RESPONSE;
    c->o.idle_seconds = or_default(o->idle_seconds, DEF_IDLE_SECONDS);
    c->next_id = 1;

    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (!c->multi || !c->share)
        goto fail;
    /* Single thread: the share needs no lock callbacks. */
    if (curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        goto fail;
    CURLMcode mc = CURLM_OK;
    mc |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)c->o.max_host_connections);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)c->o.max_total_connections);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)c->o.max_streams);
    mc |= curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)c->o.max_idle_connections);
    if (mc != CURLM_OK)
        goto fail;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    return c;
fail:
    p2p__fail(err, -EIO, "cannot set up the curl multi handle");
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->share)
        curl_share_cleanup(c->share);
    tls_unref(c->tls);
    free(c);
    return NULL;
}

void p2p__httpc_stats_get(const p2p__httpc *c, p2p__httpc_stats *out)
{
    *out = c->st;
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

/* curl's URL parser turns hosts such as "10", "0x0a" or "10.1" into IPv4
 * addresses; TLS would then check IP SANs instead of the node id. */
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
    static const char *const reserved[] = {"host",       "content-length", "transfer-encoding",
                                           "connection", "content-type",   "expect"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == n && strncasecmp(h, reserved[i], n) == 0)
            return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p == '\r' || *p == '\n')
            return false;
    return true;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    if (len > x->max - x->len) {
        x->too_large = true;
        return 0; /* CURLE_WRITE_ERROR */
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
    return len;
}

static int validate(const p2p__httpc_req *r, bool *post, char **err)
{
    if (!r->node_id || !pki_node_id_valid(r->node_id))
        return p2p__fail(err, -EINVAL, "invalid node id '%s'", r->node_id ? r->node_id : "(null)");
    if (looks_numeric_host(r->node_id))
        return p2p__fail(err, -EINVAL, "node id '%s' reads as an IP address; it cannot name a TLS peer", r->node_id);
    unsigned char buf[sizeof(struct in6_addr)];
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

static struct curl_slist *slist_add(struct curl_slist *l, const char *s, bool *ok)
{
    struct curl_slist *n = curl_slist_append(l, s);
    if (!n) {
        *ok = false;
        return l;
    }
    return n;
}

/* Builds the easy handle. 0 or -ENOMEM/-EIO. */
static int xfer_setup(p2p__httpc *c, xfer *x, const p2p__httpc_req *r, bool post)
{
    bool ok = true;
    bool v6 = strchr(r->address, ':') != NULL;
    char *url = p2p__xasprintf("https://%s:%u%s", r->node_id, (unsigned)r->port, r->path);
    char *cto = p2p__xasprintf("%s:%u:%s%s%s:%u", r->node_id, (unsigned)r->port, v6 ? "[" : "", r->address,
                               v6 ? "]" : "", (unsigned)r->port);
    x->connect_to = slist_add(NULL, cto, &ok);
    free(cto);
    for (size_t i = 0; i < r->n_headers; i++)
        x->headers = slist_add(x->headers, r->headers[i], &ok);
    if (post) {
        char *ct = p2p__xasprintf("Content-Type: %s", r->content_type ? r->content_type : "application/json");
        x->headers = slist_add(x->headers, ct, &ok);
        free(ct);
    }
    x->headers = slist_add(x->headers, "Expect:", &ok); /* no 100-continue round trip over HTTP/1.1 */

    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                                  \
    do {                                                                                                               \
        if (rc == CURLE_OK)                                                                                            \
            rc = curl_easy_setopt(e, opt, val);                                                                        \
    } while (0)
    SET(CURLOPT_PRIVATE, (void *)x);
    SET(CURLOPT_URL, url);
    SET(CURLOPT_CONNECT_TO, x->connect_to);
    SET(CURLOPT_PROTOCOLS_STR, "https");
    SET(CURLOPT_PROXY, ""); /* never the environment's http(s)_proxy */
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    SET(CURLOPT_PIPEWAIT, 1L);
    SET(CURLOPT_SHARE, c->share);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SET(CURLOPT_CAPATH, NULL); /* only the cluster CA: not the system store */
    SET(CURLOPT_CAINFO_BLOB, &x->tls->ca_blob);
    SET(CURLOPT_SSLCERTTYPE, "PEM");
    SET(CURLOPT_SSLCERT_BLOB, &x->tls->cert_blob);
    SET(CURLOPT_SSLKEYTYPE, "PEM");
    SET(CURLOPT_SSLKEY_BLOB, &x->tls->key_blob);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->o.connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)(r->timeout_ms ? r->timeout_ms : c->o.default_timeout_ms));
    SET(CURLOPT_MAXAGE_CONN, (long)c->o.idle_seconds);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 10L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_USERAGENT, "p2pcore/" P2P_VERSION);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)x);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max);
    SET(CURLOPT_HTTPHEADER, x->headers);
    if (post) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, r->body_len ? (const char *)r->body : "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    free(url);
    if (!ok)
        return -ENOMEM;
    return rc == CURLE_OK ? 0 : -EIO;
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
    x->max = c->o.max_response_bytes;
    x->tls = c->tls;
    x->tls->refs++;
    x->easy = curl_easy_init();
    int rc = x->easy ? xfer_setup(c, x, r, post) : -ENOMEM;
    if (rc != 0) {
        p2p__fail(err, rc, "cannot set up the transfer: %s", x->errbuf[0] ? x->errbuf : "curl refused an option");
        xfer_free(x);
        return 0;
    }
    /* Adding arms curl's timer with 0: the transfer starts on the next loop
     * iteration, so the callback never runs inside this call. */
    CURLMcode mc = curl_multi_add_handle(c->multi, x->easy);
    if (mc != CURLM_OK) {
        p2p__fail(err, -EIO, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        xfer_free(x);
        return 0;
    }
    x->id = c->next_id++;
    x->next = c->xfers;
    if (x->next)
        x->next->prev = x;
    c->xfers = x;
    c->st.active++;
    c->st.requests++;
    return x->id;
}

static void cancel_xfer(p2p__httpc *c, xfer *x)
{
    curl_multi_remove_handle(c->multi, x->easy);
    xfer_unlink(c, x);
    complete(c, x, CURLE_OK, true);
}

int p2p__httpc_cancel(p2p__httpc *c, uint64_t id)
{
    for (xfer *x = c->xfers; x; x = x->next) {
        if (x->id == id) {
            enter(c);
            cancel_xfer(c, x);
            leave(c);
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- teardown ----------------------------------------------------------------- */

/* Releases curl and starts closing the libuv handles. Runs once, outside any
 * frame that calls user code. */
static void teardown(p2p__httpc *c)
{
    c->torn_down = true;
    /* Closes cached connections; curl reports their sockets with CURL_POLL_REMOVE. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    curl_share_cleanup(c->share);
    c->share = NULL;
    while (c->socks) /* any curl did not report */
        sock_close(c, c->socks);
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
        cancel_xfer(c, c->xfers);
    leave(c); /* tears down now unless a callback frame is still below us */
}

void p2p__httpc_free(p2p__httpc *c)
{
    p2p__httpc_close(c, NULL, NULL);
}
