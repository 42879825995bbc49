/*
 * server.c — HTTPS transport: listener, TLS, limits, routing, access log and
 * graceful drain, on h2o 2.2 over the node's libuv loop.
 *
 * Limits and where they are enforced:
 *   body size      h2o (max_request_entity_size) answers 413 itself;
 *   header size    h2o accepts heads up to ~400 KiB, so we sum the request's
 *                  path and header bytes and answer 431 above http_max_header_size;
 *   connections    counted at accept; over the limit the socket is closed at once;
 *   slow clients   h2o's http1 request timeout, http2 idle timeout, TLS handshake timeout.
 * Drain: the listener closes, h2o is asked to shut down (HTTP/1 connections close
 * after their current request, HTTP/2 ones get GOAWAY), and a timer waits until
 * no connection is left or the grace period ends.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "core/util.h"
#include "http/internal.h"
#include "h2o/http1.h"
#include "http/server.h"
#include "http/tls.h"
#include "pki/cluster.h"
#include "pki/pki.h"


/* ---- h2o 2.2 + libuv >= 1.x: writes that never complete -------------------
 *
 * h2o's libuv binding ignores uv_write()'s return value and waits for the write
 * callback. Once a peer resets a connection, libuv marks the stream unwritable and
 * uv_write() fails at once without ever calling back; h2o's TLS shutdown (which
 * writes close_notify) then waits forever, and the connection, its descriptor and
 * its slot under http_max_connections leak. Reproduced by any client that resets
 * an idle TLS connection.
 *
 * The fix interposes uv_write (the binary exports its symbols, so libh2o's call
 * resolves here): a refused write on one of our connections is completed with its
 * error from a check handle, i.e. later in the same loop iteration, before the
 * closing phase could free the connection, and never if the connection is already
 * closing. Only server connections made by on_accept carry HTTP_CONN_MAGIC; the
 * node writes to no other libuv stream through h2o. */
P2P_EXTERN int uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[], unsigned int nbufs,
                        uv_write_cb cb)
{
    int r = uv_write2(req, handle, bufs, nbufs, NULL, cb);
    if (r == 0 || cb == NULL || handle->type != UV_TCP)
        return r;
    http_conn *c = (http_conn *)handle;
    if (c->magic != HTTP_CONN_MAGIC || c->failed_req || !c->srv->write_fail_check_open)
        return r;
    c->failed_req = req;
    c->failed_cb = cb;
    c->failed_status = r;
    c->next_failed = c->srv->write_failed;
    c->srv->write_failed = c;
    return r;
}

static void on_write_fail_check(uv_check_t *h)
{
    http_server *srv = h->data;
    while (srv->write_failed) {
        http_conn *c = srv->write_failed;
        srv->write_failed = c->next_failed;
        uv_write_t *req = c->failed_req;
        uv_write_cb cb = c->failed_cb;
        c->failed_req = NULL;
        c->next_failed = NULL;
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
            req->handle = (uv_stream_t *)&c->tcp;
            cb(req, c->failed_status);
        }
    }
}

static void forget_failed_write(http_conn *c)
{
    for (http_conn **p = &c->srv->write_failed; *p; p = &(*p)->next_failed) {
        if (*p == c) {
            *p = c->next_failed;
            break;
        }
    }
    c->failed_req = NULL;
}

/* ---- h2o 2.2 + libuv: a read that found nothing is not an error ---------------
 *
 * libuv calls a stream's read callback with nread == 0 when read(2) says EAGAIN
 * (it reads in a loop and reports the empty read that ends it, e.g. after data
 * that exactly filled the buffers). h2o 2.2.5's TLS reader (on_read_ssl) counts
 * every nread <= 0 as "I/O error" and closes the connection. HTTP requests
 * rarely fill the buffer exactly; a WebSocket client that streams does, and
 * lost its connection within seconds. We interpose uv_read_start (as uv_write
 * above) for our connections and drop the empty reads before h2o sees them. */
static void on_conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    http_conn *c = (http_conn *)stream;
    if (nread == 0)
        return; /* EAGAIN: nothing now; libuv calls again when there is */
    c->h2o_read_cb(stream, nread, buf);
}

P2P_EXTERN int uv_read_start(uv_stream_t *stream, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    static int (*real)(uv_stream_t *, uv_alloc_cb, uv_read_cb);
    if (!real) {
        void *f = dlsym(RTLD_NEXT, "uv_read_start");
        memcpy(&real, &f, sizeof(real)); /* object pointer to function pointer, as POSIX allows */
        if (!real)
            return UV_ENOSYS;
    }
    /* only server connections made by on_accept are http_conn records (the node
     * reads no other TCP stream through libuv) */
    http_conn *c = (http_conn *)stream;
    if (stream->type == UV_TCP && read_cb && c->magic == HTTP_CONN_MAGIC) {
        c->h2o_read_cb = read_cb;
        return real(stream, alloc_cb, on_conn_read);
    }
    return real(stream, alloc_cb, read_cb);
}

/* ---- responses ------------------------------------------------------------ */

/* Answers 503 to a request whose response would exceed a pending-bytes cap
 * (limits.c). Its small body is not counted. */
static void send_over_cap(h2o_req_t *req)
{
    static const char body[] = "{\"error\":\"too many response bytes are waiting to be read; read them, or retry later\","
                               "\"status\":503}";
    req->res.status = 503;
    req->res.reason = "Service Unavailable";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    h2o_send_inline(req, body, sizeof(body) - 1);
}

void p2p__http_send(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body,
                    size_t len)
{
    if (!p2p__http_out_admit(req, len)) {
        send_over_cap(req);
        return;
    }
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

void p2p__http_send_static(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body,
                           size_t len)
{
    static h2o_generator_t gen = {NULL, NULL}; /* one final send: nothing to proceed or stop */
    if (!p2p__http_out_admit(req, len)) {
        send_over_cap(req);
        return;
    }
    req->res.status = status;
    req->res.reason = reason;
    if (ctype)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    req->res.content_length = len;
    h2o_iovec_t buf = h2o_iovec_init(body, len);
    h2o_start_response(req, &gen);
    h2o_send(req, &buf, len ? 1 : 0, H2O_SEND_STATE_FINAL);
}

void p2p__http_send_json(h2o_req_t *req, int status, const char *reason, json_t *body)
{
    size_t len = json_dumpb(body, NULL, 0, P2P_JSON_FLAGS);
    if (!p2p__http_out_admit(req, len)) {
        send_over_cap(req);
        return;
    }
    char *buf = h2o_mem_alloc_pool(&req->pool, len + 1);
    json_dumpb(body, buf, len, P2P_JSON_FLAGS);
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = len;
    static h2o_generator_t gen = {NULL, NULL};
    h2o_start_response(req, &gen);
    h2o_iovec_t v = h2o_iovec_init(buf, len);
    h2o_send(req, &v, 1, 1);
}

void p2p__http_send_error(h2o_req_t *req, int status, const char *reason, const char *message)
{
    json_t *j = json_pack("{s:s, s:i}", "error", message, "status", status);
    p2p__http_send_json(req, status, reason, j);
    json_decref(j);
}

/* ---- routing -------------------------------------------------------------- */

static size_t header_bytes(const h2o_req_t *req)
{
    size_t n = req->input.path.len + req->authority.len;
    for (size_t i = 0; i < req->headers.size; i++)
        n += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return n;
}

/* Finds the request's route in the table the components filled (routes.c),
 * has it admitted by the security component's hook, and calls its handler. */
static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    http_server *srv = *(http_server **)(self + 1);
    p2p__http_conn_of(srv, req); /* notes an HTTP/2 connection for the stream cap */
    if (srv->draining)
        req->http1_is_persistent = 0; /* finish this one, then close */
    if (header_bytes(req) > (size_t)srv->ctx->cfg.http_max_header_size) {
        p2p__http_send_error(req, 431, "Request Header Fields Too Large", "request headers are too large");
        return 0;
    }
    const char *path = req->path_normalized.base;
    size_t plen = req->path_normalized.len;
    http_route_table *table = p2p__http_routes(srv->ctx);
    http_route route;
    char allow[128];
    int r = p2p__http_route_lookup(table, req->method.base, req->method.len, path, plen, &route, allow, sizeof allow);
    if (r == -EPERM) {
        size_t n = strlen(allow);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, h2o_strdup(&req->pool, allow, n).base,
                       n);
        p2p__http_send_error(req, 405, "Method Not Allowed", "method not allowed on this path");
        return 0;
    }
    if (r != 0) {
        p2p__http_send_error(req, 404, "Not Found", "no such endpoint");
        return 0;
    }
    const void *caller = NULL;
    if (!p2p__http_admit(table, req, p2p__http_peer_node(srv->ctx, req), &route, &caller))
        return 0;
    p2p_http_req hr = {.ctx = srv->ctx,
                       .req = req,
                       .rest = route.match == P2P_HTTP_PREFIX ? path + route.path_len : "",
                       .rest_len = route.match == P2P_HTTP_PREFIX ? plen - route.path_len : 0,
                       .caller = caller,
                       .udata = route.udata};
    route.fn(&hr);
    return 0;
}

static http_server *server_of(p2p_ctx *ctx)
{
    http_server *srv = p2p_shared_get(ctx, "http");
    return srv && srv->magic == HTTP_SERVER_MAGIC ? srv : NULL;
}

const char *p2p__http_peer_node(p2p_ctx *ctx, h2o_req_t *req)
{
    http_server *srv = server_of(ctx);
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (!srv || !sock)
        return NULL;
    int fd = h2o_socket_get_fd(sock);
    if (fd < 0 || (size_t)fd >= srv->n_by_fd || !srv->by_fd[fd])
        return NULL;
    http_conn *c = srv->by_fd[fd];
    return c->peer_node[0] ? c->peer_node : NULL;
}

const char *p2p__http_peer_role(p2p_ctx *ctx, h2o_req_t *req)
{
    http_server *srv = server_of(ctx);
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (!srv || !sock)
        return NULL;
    int fd = h2o_socket_get_fd(sock);
    if (fd < 0 || (size_t)fd >= srv->n_by_fd || !srv->by_fd[fd])
        return NULL;
    http_conn *c = srv->by_fd[fd];
    return c->peer_node[0] && c->peer_role[0] ? c->peer_role : NULL;
}

int p2p__http_upgrade(p2p_ctx *ctx, h2o_req_t *req, const char *proto, p2p_http_upgrade_cb cb, void *arg)
{
    http_server *srv = server_of(ctx);
    if (!srv || req->version != 0x101 || !req->conn->callbacks->get_socket)
        return -EPROTO;
    http_conn *c = p2p__http_conn_of(srv, req);
    if (c)
        c->upgraded = 1;
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, proto, strlen(proto));
    h2o_http1_upgrade(req, NULL, 0, cb, arg);
    return 0;
}

int p2p__http_draining(p2p_ctx *ctx)
{
    http_server *srv = server_of(ctx);
    return srv && srv->draining;
}

const p2p_http_stats *p2p__http_stats(p2p_ctx *ctx)
{
    static const p2p_http_stats none; /* read-only: before the server is registered */
    http_server *srv = server_of(ctx);
    return srv ? &srv->stats : &none;
}

/* ---- access log ----------------------------------------------------------- */

static void on_log_access(h2o_logger_t *self, h2o_req_t *req)
{
    http_server *srv = *(http_server **)(self + 1);
    srv->stats.requests_total++;
    int st = req->res.status;
    srv->stats.responses[st >= 100 && st < 600 ? st / 100 : 0]++;
    if (!srv->ctx->cfg.access_log || srv->ctx->log_level > P2P_LOG_INFO)
        return;
    char addr[INET6_ADDRSTRLEN + 8] = "-";
    struct sockaddr_storage ss;
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl > 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof(addr));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof(addr));
    }
    struct timeval now;
    gettimeofday(&now, NULL);
    int64_t usec = h2o_timeval_is_null(&req->timestamps.request_begin_at)
                       ? 0
                       : h2o_timeval_subtract(&req->timestamps.request_begin_at, &now);
    int plen = req->input.path.len > 512 ? 512 : (int)req->input.path.len;
    p2p_log(srv->ctx, P2P_LOG_INFO, "access", "%s \"%.*s %.*s HTTP/%d%s\" %d %zu %.3fms", addr,
            (int)req->input.method.len, req->input.method.base, plen, req->input.path.base, req->version >> 8,
            (req->version & 0xff) ? ".1" : "", st, req->bytes_sent, (double)usec / 1000.0);
}

/* ---- accept and connection accounting ------------------------------------ */

static void on_conn_close(uv_handle_t *h)
{
    http_conn *c = (http_conn *)h;
    c->srv->stats.connections_active--;
    if (c->fd >= 0 && (size_t)c->fd < c->srv->n_by_fd && c->srv->by_fd[c->fd] == c)
        c->srv->by_fd[c->fd] = NULL;
    if (c->failed_req)
        forget_failed_write(c);
    p2p__http_conn_closed(c);
    c->magic = 0;
    free(c);
}

static void on_reject_close(uv_handle_t *h)
{
    free(h);
}

static void on_accept(uv_stream_t *listener, int status)
{
    http_server *srv = listener->data;
    if (status != 0)
        return;
    if (srv->stats.connections_active >= (size_t)srv->ctx->cfg.http_max_connections) {
        uv_tcp_t *t = p2p__xmalloc(sizeof(*t));
        uv_tcp_init(listener->loop, t);
        if (uv_accept(listener, (uv_stream_t *)t) == 0)
            srv->stats.connections_rejected++;
        uv_close((uv_handle_t *)t, on_reject_close);
        if (srv->stats.connections_rejected % 1000 == 1)
            p2p_log(srv->ctx, P2P_LOG_WARN, "http", "connection limit (%d) reached; refusing connections",
                    srv->ctx->cfg.http_max_connections);
        return;
    }
    http_conn *c = p2p__xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->magic = HTTP_CONN_MAGIC;
    uv_tcp_init(listener->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_reject_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_os_fd_t fd = -1;
    c->fd = uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 ? fd : -1;
    if (c->fd >= 0) {
        if ((size_t)c->fd >= srv->n_by_fd) {
            size_t n = (size_t)c->fd * 2 + 64;
            srv->by_fd = p2p__xrealloc(srv->by_fd, n * sizeof(*srv->by_fd));
            memset(srv->by_fd + srv->n_by_fd, 0, (n - srv->n_by_fd) * sizeof(*srv->by_fd));
            srv->n_by_fd = n;
        }
        srv->by_fd[c->fd] = c;
    }
    srv->stats.connections_active++;
    srv->stats.connections_total++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_close);
    c->sock = sock;
    h2o_accept(&srv->accept_ctx, sock);
}

/* ---- component ------------------------------------------------------------ */

static int start_listener(http_server *srv, char **err)
{
    p2p_config *cfg = &srv->ctx->cfg;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(cfg->bind_address, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(cfg->bind_address, cfg->port, (struct sockaddr_in6 *)&ss) != 0) {
        *err = p2p__xasprintf("bind_address '%s' is not an IP address", cfg->bind_address);
        return -EINVAL;
    }
    uv_tcp_init(srv->ctx->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = 1;
    int r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, 511, on_accept);
    if (r != 0) {
        *err = p2p__xasprintf("cannot listen on %s:%d: %s", cfg->bind_address, cfg->port, uv_strerror(r));
        return r;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

/* The verified client certificate of a TLS connection: remember its node id on
 * the connection record (h2o 2.2 offers no accessor for the peer certificate). */
static int on_verify(int ok, X509_STORE_CTX *xs)
{
    if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    http_server *srv = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
    h2o_socket_t *sock = ssl ? BIO_get_data(SSL_get_rbio(ssl)) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    if (!srv || !sock || !cert)
        return 0;
    char cn[PKI_MAX_NODE_ID + 2] = "";
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    if (n <= 0 || n > PKI_MAX_NODE_ID || !pki_node_id_valid(cn))
        return 0; /* not one of our node certificates */
    if (p2p__pki_cert_revoked(srv->ctx, cert))
        return 0; /* its node id was replaced (issue 9): the old certificate is no identity */
    int fd = h2o_socket_get_fd(sock);
    if (fd < 0 || (size_t)fd >= srv->n_by_fd || !srv->by_fd[fd])
        return 0;
    memcpy(srv->by_fd[fd]->peer_node, cn, (size_t)n + 1); /* n <= 63 (a valid node id) */
    if (p2p__pki_cert_role(cert, srv->by_fd[fd]->peer_role, sizeof srv->by_fd[fd]->peer_role) != 0)
        srv->by_fd[fd]->peer_role[0] = '\0';
    return 1;
}

static SSL_CTX *make_ssl(http_server *srv, char **err)
{
    p2p_config *cfg = &srv->ctx->cfg;
    p2p_tls_material m;
    if (p2p__pki_material(srv->ctx, &m) != 0 || !m.cert || !m.key) {
        *err = p2p__xstrdup("no TLS certificate (the pki component is not running)");
        return NULL;
    }
    SSL_CTX *ssl = p2p__tls_server_ctx(NULL, NULL, m.cert, m.key, err);
    if (ssl)
        SSL_CTX_set_app_data(ssl, srv); /* limits.c and on_verify find the server here */
    if (ssl && m.ca && cfg->ssl_verify && p2p__tls_client_auth(ssl, m.ca, on_verify, srv, err) != 0) {
        SSL_CTX_free(ssl);
        ssl = NULL;
    }
    return ssl;
}

/* Renewal: new connections get the new certificate; established ones keep the
 * context they started with (each SSL holds a reference to it). */
static void on_material_change(p2p_ctx *ctx, void *arg)
{
    http_server *srv = arg;
    char *err = NULL;
    SSL_CTX *ssl = make_ssl(srv, &err);
    if (!ssl) {
        p2p_log(ctx, P2P_LOG_ERROR, "http", "cannot use the renewed certificate: %s", err);
        free(err);
        return;
    }
    SSL_CTX_free(srv->ssl);
    srv->ssl = ssl;
    srv->accept_ctx.ssl_ctx = ssl;
    p2p_log(ctx, P2P_LOG_INFO, "http", "serving the renewed certificate to new connections");
}

static int setup_tls(http_server *srv, char **err)
{
    if (!(srv->ssl = make_ssl(srv, err)))
        return -EINVAL;
    srv->accept_ctx.ssl_ctx = srv->ssl;
    p2p__pki_on_change(srv->ctx, on_material_change, srv);
    return 0;
}

static void http_stop(p2p_component *c);

static int http_start(p2p_component *c, char **err)
{
    http_server *srv = c->self;
    p2p_config *cfg = &srv->ctx->cfg;
    h2o_config_init(&srv->config);
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT("p2p"));
    srv->config.max_request_entity_size = (size_t)cfg->http_max_body_size;
    srv->config.http1.req_timeout = (uint64_t)cfg->http_request_timeout * 1000;
    srv->config.http2.idle_timeout = (uint64_t)cfg->http_idle_timeout * 1000;
    srv->config.http2.graceful_shutdown_timeout = (uint64_t)cfg->shutdown_grace_period * 1000;
    srv->config.handshake_timeout = (uint64_t)cfg->http_request_timeout * 1000;
    srv->config.http2.max_concurrent_requests_per_connection = 100;
    /* No h2c upgrade and no HTTP/2 preface on an HTTP/1 connection: HTTP/2 comes
     * by ALPN only, so limits.c knows from the first byte which protocol it reads. */
    srv->config.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host = h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h) + sizeof(http_server *));
    h->on_req = on_req;
    *(http_server **)(h + 1) = srv;
    h2o_logger_t *lg = h2o_create_logger(pc, sizeof(*lg) + sizeof(http_server *));
    lg->log_access = on_log_access;
    *(http_server **)(lg + 1) = srv;
    h2o_context_init(&srv->h2o, srv->ctx->loop, &srv->config);
    srv->h2o_ready = 1;
    uv_check_init(srv->ctx->loop, &srv->write_fail_check);
    srv->write_fail_check.data = srv;
    uv_check_start(&srv->write_fail_check, on_write_fail_check);
    uv_unref((uv_handle_t *)&srv->write_fail_check);
    srv->write_fail_check_open = 1;
    p2p__http_limits_start(srv);
    srv->accept_ctx.ctx = &srv->h2o;
    srv->accept_ctx.hosts = srv->config.hosts;

    int r = 0;
    if (cfg->https_enabled)
        r = setup_tls(srv, err);
    else
        p2p_log(srv->ctx, P2P_LOG_WARN, "http", "https_enabled is false: serving plain HTTP (not for production)");
    if (r == 0)
        r = start_listener(srv, err);
    if (r != 0) {
        http_stop(c);
        return r;
    }
    p2p_log(srv->ctx, P2P_LOG_INFO, "http", "listening on %s://%s:%d (HTTP/1.1%s)", cfg->https_enabled ? "https" : "http",
            cfg->bind_address, srv->port, cfg->https_enabled ? ", HTTP/2" : "");
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_listener(http_server *srv)
{
    if (srv->listening) {
        srv->listening = 0;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    }
}

static void http_stop(p2p_component *c)
{
    http_server *srv = c->self;
    close_listener(srv);
    if (srv->draining) {
        uv_timer_stop(&srv->drain_timer);
        uv_close((uv_handle_t *)&srv->drain_timer, NULL);
        srv->draining = 0;
    }
    p2p__http_limits_stop(srv);
    if (srv->write_fail_check_open) {
        uv_close((uv_handle_t *)&srv->write_fail_check, NULL);
        srv->write_fail_check_open = 0;
    }
    if (srv->h2o_ready) {
        /* h2o can only dispose a context once its connections are gone; a drain that
         * timed out leaves some, and the process exits right after this anyway. */
        if (srv->stats.connections_active == 0) {
            /* h2o's HTTP/2 shutdown parks a GOAWAY re-send entry on the one-second
             * timeout even with no connection left; dispose asserts the timeouts
             * are empty, so take it off first. */
            if (h2o_timeout_is_linked(&srv->h2o.http2._graceful_shutdown_timeout))
                h2o_timeout_unlink(&srv->h2o.http2._graceful_shutdown_timeout);
            h2o_context_dispose(&srv->h2o);
            h2o_config_dispose(&srv->config);
        }
        srv->h2o_ready = 0;
    }
    p2p__pki_off_change(srv->ctx, on_material_change, srv);
    if (srv->ssl) {
        SSL_CTX_free(srv->ssl);
        srv->ssl = NULL;
    }
}

static const p2p_component_ops http_ops = {
    .name = "http",
    .deps = (const char *const[]){"system", "security", "pki", NULL},
    .start = http_start,
    .stop = http_stop,
};

static void free_server(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    http_server *srv = arg;
    free(srv->by_fd);
    free(srv);
}

int p2p__http_register(p2p_ctx *ctx)
{
    http_server *srv = p2p__xcalloc(1, sizeof(*srv));
    srv->magic = HTTP_SERVER_MAGIC;
    srv->ctx = ctx;
    if (!p2p__component_add(ctx, &http_ops, srv)) {
        free(srv);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "http", srv);
    p2p__ctx_on_shutdown(ctx, free_server, srv);
    return 0;
}

/* ---- graceful drain ------------------------------------------------------- */

/* h2o 2.2 does nothing for HTTP/1 on a shutdown request: connections idle in
 * keep-alive would hold the drain for the whole grace period. A connection whose
 * request slot has not begun a request and holds no unread input is idle; we shut
 * its socket down, and h2o sees end-of-stream and closes it through its own path. */
static int close_if_idle(h2o_req_t *req, void *arg)
{
    (void)arg;
    h2o_socket_t *sock = req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (!sock)
        return 0;
    if (h2o_timeval_is_null(&req->timestamps.request_begin_at) && (!sock->input || sock->input->size == 0))
        shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
    return 0;
}

static void on_drain_tick(uv_timer_t *t)
{
    http_server *srv = t->data;
    if (srv->config.http1.callbacks.foreach_request)
        srv->config.http1.callbacks.foreach_request(&srv->h2o, close_if_idle, NULL);
    int idle = srv->stats.connections_active == 0 && p2p__http_busy(srv->ctx) == 0;
    int late = uv_hrtime() >= srv->drain_deadline_ns;
    if (!idle && !late)
        return;
    uv_timer_stop(t);
    if (late && !idle)
        p2p_log(srv->ctx, P2P_LOG_WARN, "http", "grace period over with %zu connection(s) still open; closing",
                srv->stats.connections_active);
    void (*done)(p2p_ctx *, int) = srv->drain_done;
    srv->drain_done = NULL;
    if (done)
        done(srv->ctx, late && !idle);
}

void p2p__http_drain(p2p_ctx *ctx, uint64_t grace_ms, void (*done)(p2p_ctx *ctx, int timed_out))
{
    http_server *srv = p2p_shared_get(ctx, "http");
    if (!srv || !srv->h2o_ready || srv->draining) {
        if (done && !(srv && srv->draining))
            done(ctx, 0);
        return;
    }
    close_listener(srv);
    h2o_context_request_shutdown(&srv->h2o);
    srv->draining = 1;
    srv->drain_done = done;
    srv->drain_deadline_ns = uv_hrtime() + grace_ms * 1000000ull;
    uv_timer_init(ctx->loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    uv_timer_start(&srv->drain_timer, on_drain_tick, 0, 20);
}
