/*
 * test_rpcclient.c — the outbound HTTP client (src/rpc/client.c) against real
 * servers on 127.0.0.1, all on one libuv loop in this process.
 *
 * The server is a small h2o (libuv) HTTPS server built here: HTTP/2 by ALPN,
 * client certificates required and verified against the cluster CA, counting
 * accepted connections. Routes: POST /echo answers the body, GET /hello answers
 * "hello", /park holds the request until the test releases it (or the client
 * resets the stream). A second kind of server accepts TCP and never says a word.
 * Certificates come from the project's PKI module: a cluster CA, a foreign CA, a
 * server certificate for "node-a" (SAN DNS node-a, IP 127.0.0.1, ::1), client
 * certificates for "node-c".
 *
 * Every wait has a deadline (run_until); every callback counts its calls so
 * "exactly once" is checked, and the fixture checks that the loop closes clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <openssl/pem.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "h2o.h"
#include "http/tls.h"
#include "pki/pki.h"
#include "rpc/client.h"

/* ---- certificates -------------------------------------------------------------- */

typedef struct certs {
    char *ca, *ca_key, *ca2, *ca2_key;
    char *srv_cert, *srv_key;   /* node-a from the cluster CA */
    char *srv2_cert, *srv2_key; /* node-a from the foreign CA */
    char *cli_cert, *cli_key;   /* node-c */
    char *cli2_cert, *cli2_key; /* node-c, renewed (new key) */
    char *cli3_cert, *cli3_key; /* node-c from the foreign CA */
} certs;

static certs G; /* made once for the whole run: read-only afterwards */

static int mint(const char *ca, const char *ca_key, const char *id, const char *const *names, size_t n, char **cert,
                char **key)
{
    char *err = NULL, *csr = NULL;
    int r = pki_key_create(key, &err);
    if (r == 0)
        r = pki_csr_create(*key, id, names, n, &csr, &err);
    if (r == 0)
        r = pki_sign_csr(ca, ca_key, csr, 3600, cert, &err);
    if (r != 0)
        fprintf(stderr, "mint %s: %s\n", id, err ? err : "?");
    free(err);
    free(csr);
    return r;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (p2p__httpc_global_init() != 0 || p2p__httpc_global_init() != 0)
        return -1;
    char *err = NULL;
    static const char *const srv_names[] = {"127.0.0.1", "::1"};
    if (pki_ca_create("test-cluster", 30, &G.ca, &G.ca_key, &err) != 0 ||
        pki_ca_create("other-cluster", 30, &G.ca2, &G.ca2_key, &err) != 0) {
        fprintf(stderr, "CA: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
    if (mint(G.ca, G.ca_key, "node-a", srv_names, 2, &G.srv_cert, &G.srv_key) != 0 ||
        mint(G.ca2, G.ca2_key, "node-a", srv_names, 2, &G.srv2_cert, &G.srv2_key) != 0 ||
        mint(G.ca, G.ca_key, "node-c", NULL, 0, &G.cli_cert, &G.cli_key) != 0 ||
        mint(G.ca, G.ca_key, "node-c", NULL, 0, &G.cli2_cert, &G.cli2_key) != 0 ||
        mint(G.ca2, G.ca2_key, "node-c", NULL, 0, &G.cli3_cert, &G.cli3_key) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(G.ca);
    free(G.ca2);
    free(G.srv_cert);
    free(G.srv2_cert);
    free(G.cli_cert);
    free(G.cli2_cert);
    free(G.cli3_cert);
    pki_secret_free(G.ca_key);
    pki_secret_free(G.ca2_key);
    pki_secret_free(G.srv_key);
    pki_secret_free(G.srv2_key);
    pki_secret_free(G.cli_key);
    pki_secret_free(G.cli2_key);
    pki_secret_free(G.cli3_key);
    return 0;
}

/* ---- the h2o test server ----------------------------------------------------------- */

typedef struct tsrv tsrv;

typedef struct parked {
    h2o_req_t *req;
    tsrv *s;
    struct parked *prev, *next;
    int linked;
} parked;

struct tsrv {
    uv_loop_t *loop;
    h2o_globalconf_t config;
    h2o_context_t h2o;
    h2o_accept_ctx_t accept;
    SSL_CTX *ssl;
    uv_tcp_t listener;
    int listening;
    int port;
    int accepted; /* connections accepted */
    int open;     /* connections not yet closed */
    int requests; /* requests seen */
    parked *parked;
    int n_parked;
    struct srv_conn *last; /* the newest open connection */
    int half_sent;         /* /half responses started */
};

static void park_unlink(parked *p)
{
    if (!p->linked)
        return;
    p->linked = 0;
    if (p->prev)
        p->prev->next = p->next;
    else
        p->s->parked = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->s->n_parked--;
}

static void on_park_dispose(void *arg)
{
    park_unlink(arg); /* the request is gone (answered, or the stream was reset) */
}

static void half_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    (void)g, (void)req;
}

static void half_stop(h2o_generator_t *g, h2o_req_t *req)
{
    (void)g, (void)req;
}

static int srv_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    tsrv *s = *(tsrv **)(self + 1);
    s->requests++;
    h2o_iovec_t path = req->path_normalized;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/echo")) &&
        h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
        h2o_send_inline(req, req->entity.base ? req->entity.base : "", req->entity.len);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/hello"))) {
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_send_inline(req, H2O_STRLIT("hello"));
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/park"))) {
        parked *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), on_park_dispose);
        memset(p, 0, sizeof(*p));
        p->req = req;
        p->s = s;
        p->linked = 1;
        p->next = s->parked;
        if (p->next)
            p->next->prev = p;
        s->parked = p;
        s->n_parked++;
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/half"))) {
        /* headers and part of the body, then nothing: the test cuts the connection */
        h2o_generator_t *g = h2o_mem_alloc_pool(&req->pool, sizeof(*g));
        g->proceed = half_proceed;
        g->stop = half_stop;
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_start_response(req, g);
        h2o_iovec_t part = h2o_iovec_init(H2O_STRLIT("partial"));
        h2o_send(req, &part, 1, H2O_SEND_STATE_IN_PROGRESS);
        s->half_sent++;
        return 0;
    }
    req->res.status = 404;
    req->res.reason = "Not Found";
    h2o_send_inline(req, H2O_STRLIT("not found"));
    return 0;
}

/* Answers every parked request with "released". */
static void srv_release(tsrv *s)
{
    while (s->parked) {
        parked *p = s->parked;
        park_unlink(p);
        p->req->res.status = 200;
        p->req->res.reason = "OK";
        h2o_send_inline(p->req, H2O_STRLIT("released"));
    }
}

/* h2o takes over the handle's data pointer: find our server from a wrapper. */
typedef struct srv_conn {
    uv_tcp_t tcp; /* first: h2o's close callback hands us this handle */
    tsrv *s;
} srv_conn;

static void srv_on_conn_closed(uv_handle_t *h)
{
    srv_conn *sc = (srv_conn *)h;
    sc->s->open--;
    if (sc->s->last == sc)
        sc->s->last = NULL;
    free(sc);
}

static void on_free_handle(uv_handle_t *h)
{
    free(h);
}

static void srv_on_accept(uv_stream_t *listener, int status)
{
    tsrv *s = listener->data;
    if (status != 0)
        return;
    srv_conn *sc = malloc(sizeof(*sc));
    sc->s = s;
    uv_tcp_init(s->loop, &sc->tcp);
    if (uv_accept(listener, (uv_stream_t *)&sc->tcp) != 0) {
        uv_close((uv_handle_t *)&sc->tcp, on_free_handle);
        return;
    }
    s->accepted++;
    s->open++;
    s->last = sc;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&sc->tcp, srv_on_conn_closed);
    h2o_accept(&s->accept, sock);
}

static int listen_on(uv_loop_t *loop, uv_tcp_t *t, const char *ip, uv_connection_cb cb, void *data, int *port)
{
    struct sockaddr_storage ss;
    if (strchr(ip, ':'))
        uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss);
    else
        uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss);
    uv_tcp_init(loop, t);
    t->data = data;
    int r = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)t, 128, cb);
    if (r != 0)
        return r;
    struct sockaddr_storage b;
    int blen = sizeof(b);
    uv_tcp_getsockname(t, (struct sockaddr *)&b, &blen);
    *port =
        ntohs(b.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&b)->sin6_port : ((struct sockaddr_in *)&b)->sin_port);
    return 0;
}

/* An HTTPS server on `ip` with `cert`/`key`, requiring client certificates from
 * `client_ca`. NULL when `ip` cannot be bound (no IPv6 here). */
static tsrv *srv_start(uv_loop_t *loop, const char *ip, const char *cert, const char *key, const char *client_ca)
{
    tsrv *s = calloc(1, sizeof(*s));
    s->loop = loop;
    char *err = NULL;
    s->ssl = p2p__tls_server_ctx(NULL, NULL, cert, key, &err);
    assert_non_null(s->ssl);
    BIO *b = BIO_new_mem_buf(client_ca, -1);
    X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
    assert_non_null(ca);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(s->ssl), ca);
    X509_free(ca);
    BIO_free(b);
    SSL_CTX_set_verify(s->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);

    h2o_config_init(&s->config);
    h2o_hostconf_t *host = h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h) + sizeof(tsrv *));
    h->on_req = srv_on_req;
    *(tsrv **)(h + 1) = s;
    h2o_context_init(&s->h2o, loop, &s->config);
    s->accept.ctx = &s->h2o;
    s->accept.hosts = s->config.hosts;
    s->accept.ssl_ctx = s->ssl;
    if (listen_on(loop, &s->listener, ip, srv_on_accept, s, &s->port) != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        h2o_context_dispose(&s->h2o);
        h2o_config_dispose(&s->config);
        SSL_CTX_free(s->ssl);
        free(s);
        return NULL;
    }
    s->listening = 1;
    return s;
}

/* ---- the silent server: accepts TCP, never reads or writes ------------------------- */

typedef struct silent {
    uv_tcp_t listener;
    int port;
    uv_tcp_t *held[64];
    int n_held;
} silent;

static void silent_on_accept(uv_stream_t *listener, int status)
{
    silent *s = listener->data;
    if (status != 0 || s->n_held == 64)
        return;
    uv_tcp_t *t = malloc(sizeof(*t));
    uv_tcp_init(listener->loop, t);
    if (uv_accept(listener, (uv_stream_t *)t) != 0) {
        uv_close((uv_handle_t *)t, on_free_handle);
        return;
    }
    s->held[s->n_held++] = t;
}

static void silent_stop(silent *s)
{
    for (int i = 0; i < s->n_held; i++)
        uv_close((uv_handle_t *)s->held[i], on_free_handle);
    uv_close((uv_handle_t *)&s->listener, on_free_handle); /* listener first: frees s */
}

/* ---- fixture and helpers ------------------------------------------------------------ */

typedef struct result {
    int calls;
    p2p__httpc_error error;
    int status;
    int curl_code;
    char message[256];
    char *body;
    size_t body_len;
    uint64_t id;
    uint64_t done_ns;
} result;

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* wakes the loop while we wait on a condition */
    tsrv *srv;
    p2p__httpc *c;
} fixture;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *counter >= want or `ms` pass. Returns 1 when reached. */
static int run_until(fixture *f, const int *counter, int want, unsigned ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)ms * 1000000u;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    while (*counter < want && uv_hrtime() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    return *counter >= want;
}

static p2p__httpc *client_new(fixture *f, const char *cert, const char *key, size_t max_response)
{
    p2p__httpc_opts o = {.ca_pem = G.ca,
                         .cert_pem = cert,
                         .key_pem = key,
                         .connect_timeout_ms = 3000,
                         .default_timeout_ms = 5000,
                         .max_response_bytes = max_response};
    char *err = NULL;
    p2p__httpc *c = p2p__httpc_new(&f->loop, &o, &err);
    if (!c)
        fprintf(stderr, "p2p__httpc_new: %s\n", err);
    free(err);
    return c;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->tick);
    f->srv = srv_start(&f->loop, "127.0.0.1", G.srv_cert, G.srv_key, G.ca);
    f->c = client_new(f, G.cli_cert, G.cli_key, 0);
    if (!f->srv || !f->c)
        return -1;
    *state = f;
    return 0;
}

/* Closes a server once its connections are gone (the client closed them). */
static void srv_stop(fixture *f, tsrv *s)
{
    if (!s)
        return;
    if (s->listening)
        uv_close((uv_handle_t *)&s->listener, NULL);
    srv_release(s);
    int zero_open = 0;
    uint64_t deadline = uv_hrtime() + 3000000000u;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    while (s->open > 0 && uv_hrtime() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    zero_open = s->open == 0;
    assert_true(zero_open);
    if (h2o_timeout_is_linked(&s->h2o.http2._graceful_shutdown_timeout)) /* test_goaway_graceful */
        h2o_timeout_unlink(&s->h2o.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&s->h2o);
    h2o_config_dispose(&s->config);
    SSL_CTX_free(s->ssl);
    free(s);
}

static int teardown(void **state)
{
    fixture *f = *state;
    p2p__httpc_free(f->c); /* NULL when a test freed it already */
    f->c = NULL;
    srv_stop(f, f->srv);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int r = uv_loop_close(&f->loop);
    if (r != 0)
        fprintf(stderr, "loop not clean: %s\n", uv_strerror(r));
    free(f);
    return r == 0 ? 0 : -1;
}

static void on_result(void *udata, const p2p__httpc_res *res)
{
    result *r = udata;
    r->calls++;
    r->error = res->error;
    r->status = res->status;
    r->curl_code = res->curl_code;
    r->id = res->id;
    snprintf(r->message, sizeof r->message, "%s", res->message);
    free(r->body);
    r->body = malloc(res->body_len + 1);
    memcpy(r->body, res->body, res->body_len);
    r->body[res->body_len] = '\0';
    r->body_len = res->body_len;
    r->done_ns = uv_hrtime();
    assert_int_equal(res->body[res->body_len], '\0');
}

/* Counts completions into an int, for fan-outs. */
typedef struct fan {
    result r[100];
    int done;
} fan;

typedef struct fan_slot {
    fan *fan;
    int i;
} fan_slot;

static void on_fan(void *udata, const p2p__httpc_res *res)
{
    fan_slot *s = udata;
    on_result(&s->fan->r[s->i], res);
    s->fan->done++;
}

static uint64_t post(p2p__httpc *c, const char *node, const char *addr, int port, const char *path, const char *body,
                     uint32_t timeout_ms, p2p__httpc_cb cb, void *udata)
{
    static const char *const hdrs[] = {"Authorization: Bearer test-token", "X-Trace: 1"};
    p2p__httpc_req rq = {.method = "POST",
                         .node_id = node,
                         .address = addr,
                         .port = (uint16_t)port,
                         .path = path,
                         .body = body,
                         .body_len = body ? strlen(body) : 0,
                         .content_type = "text/plain",
                         .headers = hdrs,
                         .n_headers = 2,
                         .timeout_ms = timeout_ms};
    char *err = NULL;
    uint64_t id = p2p__httpc_request(c, &rq, cb, udata, &err);
    if (!id)
        fprintf(stderr, "request: %s\n", err);
    free(err);
    return id;
}

static void result_clear(result *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    fixture *f = *state;
    result r = {0};
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "ping", 0, on_result, &r) > 0);
    assert_int_equal(r.calls, 0); /* never inside the call */
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_int_equal(r.error, P2P_HTTPC_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ping");
    assert_string_equal(r.message, "");

    result g = {0};
    p2p__httpc_req rq = {.node_id = "node-a", .address = "127.0.0.1", .port = (uint16_t)f->srv->port, .path = "/hello"};
    assert_true(p2p__httpc_request(f->c, &rq, on_result, &g, NULL) > 0);
    assert_true(run_until(f, &g.calls, 1, 5000));
    assert_int_equal(g.status, 200);
    assert_string_equal(g.body, "hello");

    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.responses, 2);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.connections, 1); /* the second reused the first's connection */
    assert_int_equal(st.active, 0);
    assert_int_equal(f->srv->accepted, 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(g.calls, 1);
    result_clear(&r);
    result_clear(&g);
}

static void test_multiplex_100(void **state)
{
    fixture *f = *state;
    fan *fn = calloc(1, sizeof(*fn));
    fan_slot slots[100];
    char bodies[100][16];
    for (int i = 0; i < 100; i++) {
        slots[i] = (fan_slot){fn, i};
        snprintf(bodies[i], sizeof bodies[i], "body-%d", i);
        assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", bodies[i], 0, on_fan, &slots[i]) > 0);
    }
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.active, 100);
    assert_true(run_until(f, &fn->done, 100, 10000));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(fn->r[i].calls, 1);
        assert_int_equal(fn->r[i].error, P2P_HTTPC_OK);
        assert_int_equal(fn->r[i].status, 200);
        assert_string_equal(fn->r[i].body, bodies[i]);
        result_clear(&fn->r[i]);
    }
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(f->srv->accepted, 1); /* one TCP connection for all 100 */
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.responses, 100);
    assert_int_equal(st.active, 0);
    free(fn);
}

static void test_wrong_node_id(void **state)
{
    fixture *f = *state;
    result r = {0};
    /* node-b's address, but node-a answers: its certificate does not name node-b */
    assert_true(post(f->c, "node-b", "127.0.0.1", f->srv->port, "/echo", "x", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_int_equal(r.error, P2P_HTTPC_E_TLS);
    assert_int_equal(r.status, 0);
    assert_true(strlen(r.message) > 0);
    assert_int_equal(f->srv->requests, 0);
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.failures, 1);
    result_clear(&r);
}

static void test_foreign_ca_server(void **state)
{
    fixture *f = *state;
    tsrv *other = srv_start(&f->loop, "127.0.0.1", G.srv2_cert, G.srv2_key, G.ca);
    assert_non_null(other);
    result r = {0};
    assert_true(post(f->c, "node-a", "127.0.0.1", other->port, "/echo", "x", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_int_equal(r.error, P2P_HTTPC_E_TLS);
    assert_int_equal(other->requests, 0);
    result_clear(&r);
    p2p__httpc_free(f->c);
    f->c = NULL;
    srv_stop(f, other);
}

static void test_client_cert_rejected(void **state)
{
    fixture *f = *state;
    /* our certificate comes from a CA the server does not trust */
    p2p__httpc *c = client_new(f, G.cli3_cert, G.cli3_key, 0);
    assert_non_null(c);
    result r = {0};
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", "x", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    /* TLS 1.3: our handshake is done before the server judges our certificate,
     * and h2o closes without sending its alert, so all we see is the connection
     * closing before any answer. */
    assert_int_equal(r.error, P2P_HTTPC_E_PROTOCOL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.message, "reject our client certificate"));
    assert_int_equal(f->srv->requests, 0);
    result_clear(&r);
    p2p__httpc_free(c);
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void test_connection_refused(void **state)
{
    fixture *f = *state;
    uv_tcp_t t;
    int port = 0;
    assert_int_equal(listen_on(&f->loop, &t, "127.0.0.1", NULL, NULL, &port), 0);
    uv_close((uv_handle_t *)&t, on_closed); /* nothing listens there any more */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    result r = {0};
    uint64_t t0 = uv_hrtime();
    assert_true(post(f->c, "node-a", "127.0.0.1", port, "/echo", "x", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_int_equal(r.error, P2P_HTTPC_E_CONNECT);
    assert_true(r.done_ns - t0 < 1000000000u); /* fast, not a timeout */
    result_clear(&r);
}

static void test_timeout_silent_server(void **state)
{
    fixture *f = *state;
    silent *s = calloc(1, sizeof(*s));
    assert_int_equal(listen_on(&f->loop, &s->listener, "127.0.0.1", silent_on_accept, s, &s->port), 0);
    result r = {0};
    uint64_t t0 = uv_hrtime();
    assert_true(post(f->c, "node-a", "127.0.0.1", s->port, "/echo", "x", 300, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    double ms = (double)(r.done_ns - t0) / 1e6;
    assert_int_equal(r.error, P2P_HTTPC_E_TIMEOUT);
    assert_true(ms >= 290 && ms < 300 + 700);
    assert_int_equal(s->n_held, 1);
    result_clear(&r);
    silent_stop(s);
}

static void test_stream_timeout_keeps_connection(void **state)
{
    fixture *f = *state;
    result slow = {0}, fast = {0}, after = {0};
    uint64_t t0 = uv_hrtime();
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", NULL, 400, on_result, &slow) > 0);
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "fast", 0, on_result, &fast) > 0);
    assert_true(run_until(f, &fast.calls, 1, 5000));
    assert_int_equal(fast.status, 200);
    assert_true(run_until(f, &slow.calls, 1, 5000));
    double ms = (double)(slow.done_ns - t0) / 1e6;
    assert_int_equal(slow.error, P2P_HTTPC_E_TIMEOUT);
    assert_true(ms >= 390 && ms < 400 + 700);
    /* the timed-out stream was reset; the connection carries on */
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "after", 0, on_result, &after) > 0);
    assert_true(run_until(f, &after.calls, 1, 5000));
    assert_string_equal(after.body, "after");
    assert_int_equal(f->srv->accepted, 1);
    result_clear(&slow);
    result_clear(&fast);
    result_clear(&after);
}

static void test_cancel_and_free_in_flight(void **state)
{
    fixture *f = *state;
    fan *fn = calloc(1, sizeof(*fn));
    fan_slot slots[10];
    uint64_t ids[10];
    for (int i = 0; i < 10; i++) {
        slots[i] = (fan_slot){fn, i};
        ids[i] = post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", "x", 0, on_fan, &slots[i]);
        assert_true(ids[i] > 0);
    }
    /* cancel one before it even started */
    assert_int_equal(p2p__httpc_cancel(f->c, ids[0]), 0);
    assert_int_equal(fn->r[0].calls, 1);
    assert_int_equal(fn->r[0].error, P2P_HTTPC_E_CANCELLED);
    assert_int_equal(fn->r[0].id, ids[0]);
    /* wait until the server holds the others: they are really in flight */
    assert_true(run_until(f, &f->srv->n_parked, 9, 5000));
    assert_int_equal(p2p__httpc_cancel(f->c, ids[1]), 0);
    assert_int_equal(fn->r[1].calls, 1);
    assert_int_equal(fn->r[1].error, P2P_HTTPC_E_CANCELLED);
    assert_int_equal(p2p__httpc_cancel(f->c, ids[1]), -ENOENT);
    assert_int_equal(p2p__httpc_cancel(f->c, 999999), -ENOENT);
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.active, 8);
    assert_int_equal(st.cancelled, 2);

    p2p__httpc_free(f->c); /* the remaining eight are called back before free returns */
    f->c = NULL;
    assert_int_equal(fn->done, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(fn->r[i].calls, 1);
        assert_int_equal(fn->r[i].error, P2P_HTTPC_E_CANCELLED);
        assert_string_equal(fn->r[i].message, "cancelled");
    }
    /* and never again, whatever the loop still does */
    uv_timer_start(&f->tick, on_tick, 5, 5);
    for (int i = 0; i < 20; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(fn->r[i].calls, 1);
        result_clear(&fn->r[i]);
    }
    free(fn);
}

/* A callback that frees the client while others are in flight. */
typedef struct reentrant {
    fixture *f;
    result first;
    result others[5];
    uint64_t late_id;
} reentrant;

static void on_other_slot(void *udata, const p2p__httpc_res *res)
{
    result *r = udata;
    on_result(r, res);
}

static void on_first_then_free(void *udata, const p2p__httpc_res *res)
{
    reentrant *re = udata;
    on_result(&re->first, res);
    p2p__httpc_free(re->f->c);
    /* closing: new requests are refused, without a callback */
    char *err = NULL;
    p2p__httpc_req rq = {.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/hello"};
    re->late_id = p2p__httpc_request(re->f->c, &rq, on_other_slot, &re->others[0], &err);
    assert_non_null(err);
    free(err);
    p2p__httpc_free(re->f->c); /* twice is harmless */
    re->f->c = NULL;
}

static void test_free_inside_callback(void **state)
{
    fixture *f = *state;
    reentrant *re = calloc(1, sizeof(*re));
    re->f = f;
    for (int i = 0; i < 5; i++)
        assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", NULL, 0, on_other_slot, &re->others[i]) >
                    0);
    assert_true(run_until(f, &f->srv->n_parked, 5, 5000));
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "one", 0, on_first_then_free, re) > 0);
    assert_true(run_until(f, &re->first.calls, 1, 5000));
    assert_null(f->c);
    assert_int_equal(re->first.error, P2P_HTTPC_OK);
    assert_int_equal(re->late_id, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(re->others[i].calls, 1);
        assert_int_equal(re->others[i].error, P2P_HTTPC_E_CANCELLED);
        result_clear(&re->others[i]);
    }
    result_clear(&re->first);
    free(re);
}

static void on_done(void *arg)
{
    (*(int *)arg)++;
}

static void test_close_with_done(void **state)
{
    fixture *f = *state;
    result r = {0};
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "x", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    int done = 0;
    p2p__httpc_close(f->c, on_done, &done);
    f->c = NULL;
    assert_int_equal(done, 0); /* handles close on the loop */
    assert_true(run_until(f, &done, 1, 2000));
    result_clear(&r);
}

static void test_set_tls_mid_stream(void **state)
{
    fixture *f = *state;
    fan *fn = calloc(1, sizeof(*fn));
    fan_slot slots[10];
    for (int i = 0; i < 5; i++) {
        slots[i] = (fan_slot){fn, i};
        assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", NULL, 0, on_fan, &slots[i]) > 0);
    }
    assert_true(run_until(f, &f->srv->n_parked, 5, 5000));
    assert_int_equal(f->srv->accepted, 1);

    char *err = NULL;
    /* a key that does not belong to the certificate is refused; the old material stays */
    assert_int_equal(p2p__httpc_set_tls(f->c, G.ca, G.cli2_cert, G.cli_key, &err), -EINVAL);
    assert_non_null(err);
    free(err);
    err = NULL;
    assert_int_equal(p2p__httpc_set_tls(f->c, G.ca, G.cli2_cert, G.cli2_key, &err), 0);

    /* new requests: new material, so a new connection (one, for the whole
     * burst); the parked ones are untouched */
    for (int i = 5; i < 10; i++) {
        slots[i] = (fan_slot){fn, i};
        assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "new", 0, on_fan, &slots[i]) > 0);
    }
    assert_true(run_until(f, &fn->done, 5, 5000));
    for (int i = 5; i < 10; i++) {
        assert_int_equal(fn->r[i].status, 200);
        assert_string_equal(fn->r[i].body, "new");
    }
    assert_int_equal(f->srv->accepted, 2);
    for (int i = 0; i < 5; i++)
        assert_int_equal(fn->r[i].calls, 0);
    srv_release(f->srv);
    assert_true(run_until(f, &fn->done, 10, 5000));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fn->r[i].status, 200);
        assert_string_equal(fn->r[i].body, "released");
    }
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.tls_updates, 1);
    assert_int_equal(st.connections, 2);
    assert_int_equal(st.responses, 10);
    for (int i = 0; i < 10; i++)
        result_clear(&fn->r[i]);
    free(fn);
}

static void test_ipv6(void **state)
{
    fixture *f = *state;
    tsrv *s6 = srv_start(&f->loop, "::1", G.srv_cert, G.srv_key, G.ca);
    if (!s6) {
        skip();
        return;
    }
    result r = {0};
    assert_true(post(f->c, "node-a", "::1", s6->port, "/echo", "six", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_int_equal(r.error, P2P_HTTPC_OK);
    assert_string_equal(r.body, "six");
    assert_int_equal(s6->accepted, 1);
    result_clear(&r);
    p2p__httpc_free(f->c);
    f->c = NULL;
    srv_stop(f, s6);
}

static void test_response_too_large(void **state)
{
    fixture *f = *state;
    p2p__httpc *c = client_new(f, G.cli_cert, G.cli_key, 16);
    assert_non_null(c);
    result r = {0}, ok = {0};
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", "0123456789abcdefXYZ", 0, on_result, &r) > 0);
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", "0123456789abcdef", 0, on_result, &ok) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_true(run_until(f, &ok.calls, 1, 5000));
    assert_int_equal(r.error, P2P_HTTPC_E_PROTOCOL);
    assert_non_null(strstr(r.message, "larger than 16"));
    assert_int_equal(ok.error, P2P_HTTPC_OK);
    assert_string_equal(ok.body, "0123456789abcdef");
    result_clear(&r);
    result_clear(&ok);
    p2p__httpc_free(c);
}

/* The server goes away in the middle of answering: every call on the
 * connection fails at once (not at its timeout), as "may have been processed";
 * the next call gets a new connection. */
static void test_server_closes_mid_stream(void **state)
{
    fixture *f = *state;
    result half = {0}, parked1 = {0}, parked2 = {0}, after = {0};
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", NULL, 0, on_result, &parked1) > 0);
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", NULL, 0, on_result, &parked2) > 0);
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/half", "x", 0, on_result, &half) > 0);
    assert_true(run_until(f, &f->srv->n_parked, 2, 5000));
    assert_true(run_until(f, &f->srv->half_sent, 1, 5000));
    /* let the partial answer reach the client */
    uint64_t t_end = uv_hrtime() + 100000000u;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    while (uv_hrtime() < t_end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    assert_int_equal(half.calls, 0);
    assert_non_null(f->srv->last);
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)&f->srv->last->tcp, &fd), 0);
    uint64_t t0 = uv_hrtime();
    shutdown(fd, SHUT_RDWR);
    assert_true(run_until(f, &parked2.calls, 1, 5000));
    assert_true(run_until(f, &half.calls, 1, 5000));
    assert_true(run_until(f, &parked1.calls, 1, 5000));
    assert_true(uv_hrtime() - t0 < 1000000000u); /* at once, not at a timeout */
    const result *all[] = {&half, &parked1, &parked2};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(all[i]->calls, 1);
        assert_int_equal(all[i]->error, P2P_HTTPC_E_PROTOCOL);
        assert_int_equal(all[i]->status, 0);
        assert_int_equal(all[i]->body_len, 0);
        assert_true(strlen(all[i]->message) > 0);
    }
    assert_int_equal(f->srv->accepted, 1); /* nothing retried: they had reached the server */
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "after", 0, on_result, &after) > 0);
    assert_true(run_until(f, &after.calls, 1, 5000));
    assert_int_equal(after.error, P2P_HTTPC_OK);
    assert_string_equal(after.body, "after");
    assert_int_equal(f->srv->accepted, 2);
    result_clear(&half);
    result_clear(&parked1);
    result_clear(&parked2);
    result_clear(&after);
}

/* The server shuts down gracefully (GOAWAY): calls in flight finish on the old
 * connection; new calls go to a new one; nothing fails. */
static void test_goaway_graceful(void **state)
{
    fixture *f = *state;
    result p[3] = {{0}}, warm = {0}, after = {0};
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "warm", 0, on_result, &warm) > 0);
    assert_true(run_until(f, &warm.calls, 1, 5000));
    for (int i = 0; i < 3; i++)
        assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/park", NULL, 0, on_result, &p[i]) > 0);
    assert_true(run_until(f, &f->srv->n_parked, 3, 5000));
    h2o_context_request_shutdown(&f->srv->h2o); /* h2o sends GOAWAY */
    uint64_t t_end = uv_hrtime() + 200000000u;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    while (uv_hrtime() < t_end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    assert_true(post(f->c, "node-a", "127.0.0.1", f->srv->port, "/echo", "after", 0, on_result, &after) > 0);
    assert_true(run_until(f, &after.calls, 1, 5000));
    assert_int_equal(after.error, P2P_HTTPC_OK);
    assert_string_equal(after.body, "after");
    assert_int_equal(f->srv->accepted, 2); /* not on the connection that said GOAWAY */
    srv_release(f->srv);
    for (int i = 0; i < 3; i++) {
        assert_true(run_until(f, &p[i].calls, 1, 5000));
        assert_int_equal(p[i].error, P2P_HTTPC_OK);
        assert_string_equal(p[i].body, "released");
        result_clear(&p[i]);
    }
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.failures, 0);
    result_clear(&warm);
    result_clear(&after);
}

/* A 1 MiB body each way fits the windows (flow control keeps up). */
static void test_one_mib_body(void **state)
{
    fixture *f = *state;
    p2p__httpc *c = client_new(f, G.cli_cert, G.cli_key, 1u << 20);
    assert_non_null(c);
    size_t n = 1u << 20;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    result r = {0}, over = {0};
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", big, 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 10000));
    assert_int_equal(r.error, P2P_HTTPC_OK);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, big, n);
    big[n - 1] = '\0'; /* keep strlen happy for the next one: 1 MiB + 1 below */
    char *bigger = malloc(n + 2);
    memset(bigger, 'z', n + 1);
    bigger[n + 1] = '\0';
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", bigger, 0, on_result, &over) > 0);
    assert_true(run_until(f, &over.calls, 1, 10000));
    assert_int_equal(over.error, P2P_HTTPC_E_PROTOCOL);
    assert_non_null(strstr(over.message, "larger than 1048576"));
    assert_int_equal(f->srv->accepted, 1);
    free(big);
    free(bigger);
    result_clear(&r);
    result_clear(&over);
    p2p__httpc_free(c);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    result r = {0};
    static const char *const crlf[] = {"X-Evil: a\r\nHost: b"};
    static const char *const host[] = {"Host: other"};
    static const char *const noname[] = {": x"};
    const struct {
        p2p__httpc_req rq;
        const char *why;
    } bad[] = {
        {{.node_id = "bad id", .address = "127.0.0.1", .port = 1, .path = "/"}, "node id"},
        {{.node_id = "10.0.0.1", .address = "127.0.0.1", .port = 1, .path = "/"}, "IP"},
        {{.node_id = "0x7f", .address = "127.0.0.1", .port = 1, .path = "/"}, "IP"},
        {{.node_id = NULL, .address = "127.0.0.1", .port = 1, .path = "/"}, "node id"},
        {{.node_id = "node-a", .address = "localhost", .port = 1, .path = "/"}, "address"},
        {{.node_id = "node-a", .address = "[::1]", .port = 1, .path = "/"}, "address"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 0, .path = "/"}, "port"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "rpc"}, "path"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/a b"}, "path"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/", .method = "PUT"}, "method"},
        {{.node_id = "node-a",
          .address = "127.0.0.1",
          .port = 1,
          .path = "/",
          .method = "GET",
          .body = "x",
          .body_len = 1},
         "GET"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/", .headers = crlf, .n_headers = 1},
         "header"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/", .headers = host, .n_headers = 1},
         "header"},
        {{.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/", .headers = noname, .n_headers = 1},
         "header"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        assert_int_equal(p2p__httpc_request(f->c, &bad[i].rq, on_result, &r, &err), 0);
        assert_non_null(err);
        if (!strstr(err, bad[i].why))
            fail_msg("case %zu: '%s' does not mention '%s'", i, err, bad[i].why);
        free(err);
    }
    p2p__httpc_req ok = {.node_id = "node-a", .address = "127.0.0.1", .port = 1, .path = "/"};
    assert_int_equal(p2p__httpc_request(f->c, &ok, NULL, &r, NULL), 0); /* no callback */

    /* the client refuses TLS material that does not fit together */
    char *err = NULL;
    p2p__httpc_opts o = {.ca_pem = G.ca, .cert_pem = G.cli_cert, .key_pem = G.cli2_key};
    assert_null(p2p__httpc_new(&f->loop, &o, &err));
    assert_non_null(strstr(err, "key"));
    free(err);
    err = NULL;
    o = (p2p__httpc_opts){.ca_pem = "not a certificate", .cert_pem = G.cli_cert, .key_pem = G.cli_key};
    assert_null(p2p__httpc_new(&f->loop, &o, &err));
    assert_non_null(strstr(err, "CA"));
    free(err);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.calls, 0);
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.requests, 0);
    assert_string_equal(p2p__httpc_error_name(P2P_HTTPC_E_TLS), "tls");
}

/* ---- frames fed straight into the response path (p2p__httpc_fuzz_response) ---- */

static size_t frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t sid, const void *payload, size_t n)
{
    out[0] = (uint8_t)(n >> 16);
    out[1] = (uint8_t)(n >> 8);
    out[2] = (uint8_t)n;
    out[3] = type;
    out[4] = flags;
    out[5] = (uint8_t)(sid >> 24);
    out[6] = (uint8_t)(sid >> 16);
    out[7] = (uint8_t)(sid >> 8);
    out[8] = (uint8_t)sid;
    memcpy(out + 9, payload, n);
    return 9 + n;
}

/* Three calls in flight (streams 1, 3, 5). The server answers stream 1, then
 * says GOAWAY with last-stream-id 1: streams 3 and 5 never reached it, so they
 * are kept for a retry on another connection (here cancelled by the hook before
 * the retry can run) and not failed. With a RST_STREAM instead (the server saw
 * the stream), the call fails. */
static void test_goaway_above_last_stream_not_failed(void **state)
{
    fixture *f = *state;
    uint8_t buf[256];
    size_t n = 0;
    n += frame(buf + n, 4, 0, 0, "", 0);                            /* SETTINGS */
    n += frame(buf + n, 1, 4, 1, "\x88", 1);                        /* HEADERS :status 200 */
    n += frame(buf + n, 0, 1, 1, "hello", 5);                       /* DATA, END_STREAM */
    n += frame(buf + n, 7, 0, 0, "\x00\x00\x00\x01\x00\x00\x00\x00", 8); /* GOAWAY last=1 NO_ERROR */
    assert_int_equal(p2p__httpc_fuzz_response(f->c, buf, n), 2); /* 3 and 5 were moved for a retry */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    p2p__httpc_stats st;
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.responses, 1);
    assert_int_equal(st.failures, 0);  /* 3 and 5: not failed ... */
    assert_int_equal(st.cancelled, 2); /* ... but waiting for a retry when the hook ended them */
    /* REFUSED_STREAM on stream 3: never processed either, so retried */
    n = 0;
    n += frame(buf + n, 4, 0, 0, "", 0);
    n += frame(buf + n, 3, 0, 3, "\x00\x00\x00\x07", 4); /* RST_STREAM 3 REFUSED_STREAM */
    assert_int_equal(p2p__httpc_fuzz_response(f->c, buf, n), 1);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.cancelled, 5);

    n = 0;
    n += frame(buf + n, 4, 0, 0, "", 0);
    n += frame(buf + n, 1, 4, 1, "\x88", 1);
    n += frame(buf + n, 0, 1, 1, "hello", 5);
    n += frame(buf + n, 3, 0, 3, "\x00\x00\x00\x02", 4); /* RST_STREAM 3 INTERNAL_ERROR */
    assert_int_equal(p2p__httpc_fuzz_response(f->c, buf, n), 0); /* nothing to retry */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    p2p__httpc_stats_get(f->c, &st);
    assert_int_equal(st.responses, 2);
    assert_int_equal(st.failures, 1);  /* stream 3: the server had it */
    assert_int_equal(st.cancelled, 6); /* stream 5: still in flight at the end */
}

/* The CLI's way in: tls_name instead of a node id (an IP must be an IP SAN of
 * the server's certificate, a name a DNS SAN), and --insecure (no CA, no check). */
static void test_tls_name_and_insecure(void **state)
{
    fixture *f = *state;
    result ip = {0}, name = {0}, wrong = {0}, ins = {0};
    p2p__httpc_req rq = {.tls_name = "127.0.0.1", .address = "127.0.0.1", .port = (uint16_t)f->srv->port,
                         .path = "/hello"};
    assert_true(p2p__httpc_request(f->c, &rq, on_result, &ip, NULL) > 0);
    rq.tls_name = "node-a";
    assert_true(p2p__httpc_request(f->c, &rq, on_result, &name, NULL) > 0);
    rq.tls_name = "10.9.9.9"; /* not in the certificate */
    assert_true(p2p__httpc_request(f->c, &rq, on_result, &wrong, NULL) > 0);
    assert_true(run_until(f, &ip.calls, 1, 5000) && run_until(f, &name.calls, 1, 5000) &&
                run_until(f, &wrong.calls, 1, 5000));
    assert_int_equal(ip.status, 200);
    assert_int_equal(name.status, 200);
    assert_int_equal(wrong.error, P2P_HTTPC_E_TLS);
    char *err = NULL;
    rq.tls_name = "bad name";
    assert_int_equal(p2p__httpc_request(f->c, &rq, on_result, &wrong, &err), 0);
    free(err);

    /* insecure: a server from a CA we do not have is accepted */
    tsrv *other = srv_start(&f->loop, "127.0.0.1", G.srv2_cert, G.srv2_key, G.ca);
    assert_non_null(other);
    p2p__httpc_opts o = {.cert_pem = G.cli_cert, .key_pem = G.cli_key, .insecure = 1};
    p2p__httpc *c = p2p__httpc_new(&f->loop, &o, &err);
    assert_non_null(c);
    rq.tls_name = "127.0.0.1";
    rq.port = (uint16_t)other->port;
    assert_true(p2p__httpc_request(c, &rq, on_result, &ins, NULL) > 0);
    assert_true(run_until(f, &ins.calls, 1, 5000));
    assert_int_equal(ins.status, 200);
    /* without insecure, no CA is an error */
    o.insecure = 0;
    assert_null(p2p__httpc_new(&f->loop, &o, &err));
    assert_non_null(strstr(err, "CA"));
    free(err);
    p2p__httpc_free(c);
    result_clear(&ip);
    result_clear(&name);
    result_clear(&wrong);
    result_clear(&ins);
    p2p__httpc_free(f->c);
    f->c = NULL;
    srv_stop(f, other);
}

/* An idle connection is closed by the client after idle_seconds; the next call
 * opens a new one. */
static void test_idle_connection_closed(void **state)
{
    fixture *f = *state;
    p2p__httpc_opts o = {.ca_pem = G.ca, .cert_pem = G.cli_cert, .key_pem = G.cli_key, .idle_seconds = 1};
    p2p__httpc *c = p2p__httpc_new(&f->loop, &o, NULL);
    assert_non_null(c);
    result r = {0}, again = {0};
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", "x", 0, on_result, &r) > 0);
    assert_true(run_until(f, &r.calls, 1, 5000));
    assert_int_equal(f->srv->open, 1);
    p2p__httpc_stats st;
    p2p__httpc_stats_get(c, &st);
    assert_int_equal(st.sockets, 1);
    int zero = 0;
    /* closed by us within idle_seconds + a little; the server sees it go */
    uint64_t deadline = uv_hrtime() + 3000000000u;
    uv_timer_start(&f->tick, on_tick, 5, 5);
    while (f->srv->open > 0 && uv_hrtime() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    assert_int_equal(f->srv->open, zero);
    p2p__httpc_stats_get(c, &st);
    assert_int_equal(st.sockets, 0);
    assert_int_equal(st.failures, 0);
    assert_true(post(c, "node-a", "127.0.0.1", f->srv->port, "/echo", "y", 0, on_result, &again) > 0);
    assert_true(run_until(f, &again.calls, 1, 5000));
    assert_string_equal(again.body, "y");
    assert_int_equal(f->srv->accepted, 2);
    result_clear(&r);
    result_clear(&again);
    p2p__httpc_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multiplex_100, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_node_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_ca_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_silent_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_timeout_keeps_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_tls_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_graceful, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_mib_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_above_last_stream_not_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_name_and_insecure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_closed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
