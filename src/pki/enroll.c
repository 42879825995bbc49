/*
 * enroll.c — challenges, join strings, blocking fetches for the thread pool and
 * the worker's first enrollment (see enroll.h for the protocol).
 */
#include "pki/enroll.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/jwt.h"
#include "core/util.h"
#include "membership/addrsel.h"
#include "pki/certreq.h"
#include "pki/pki.h"
#include "vault/vault.h"

/* ---- challenges, pins, join strings --------------------------------------- */

int p2p__enroll_challenge_new(uint64_t now_ms, char out[ENROLL_CHALLENGE_LEN + 1])
{
    uint8_t raw[32];
    for (int i = 0; i < 8; i++)
        raw[i] = (uint8_t)(now_ms >> (56 - 8 * i));
    if (RAND_bytes(raw + 8, 24) != 1)
        return -EIO;
    p2p__b64url_encode(raw, sizeof raw, out);
    return 0;
}

int p2p__enroll_challenge_time(const char *challenge, uint64_t *made_ms)
{
    uint8_t raw[33];
    size_t n = 0;
    if (!challenge || strlen(challenge) != ENROLL_CHALLENGE_LEN ||
        p2p__b64url_decode(challenge, ENROLL_CHALLENGE_LEN, raw, &n) != 0 || n != 32)
        return -EINVAL;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = t << 8 | raw[i];
    *made_ms = t;
    return 0;
}

static void sha256_b64(const void *data, size_t len, char out[44])
{
    uint8_t md[32];
    unsigned mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    p2p__b64url_encode(md, 32, out);
}

void p2p__enroll_key_auth(const char *challenge, const char *csr_pem, char out[ENROLL_KEYAUTH_LEN + 1])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t h[32];
    unsigned hl = 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, challenge, strlen(challenge));
    EVP_DigestUpdate(md, ".", 1);
    EVP_DigestUpdate(md, csr_pem, strlen(csr_pem));
    EVP_DigestFinal_ex(md, h, &hl);
    EVP_MD_CTX_free(md);
    p2p__b64url_encode(h, 32, out);
}

int p2p__enroll_ca_pin(const char *ca_pem, char out[ENROLL_PIN_LEN + 1])
{
    BIO *b = BIO_new_mem_buf(ca_pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x)
        return -EINVAL;
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    X509_free(x);
    if (n <= 0)
        return -EINVAL;
    sha256_b64(der, (size_t)n, out);
    OPENSSL_free(der);
    return 0;
}

int p2p__enroll_join_split(const char *join, char *token, size_t token_cap, char pin[ENROLL_PIN_LEN + 1])
{
    pin[0] = '\0';
    if (!join)
        return -EINVAL;
    const char *dot = strchr(join, '.');
    size_t tl = dot ? (size_t)(dot - join) : strlen(join);
    if (tl == 0 || tl >= token_cap || tl > CERTREQ_MAX_JOIN_TOKEN)
        return -EINVAL;
    for (size_t i = 0; i < tl; i++)
        if (join[i] <= ' ' || join[i] > '~')
            return -EINVAL;
    if (dot) {
        const char *p = dot + 1;
        if (strlen(p) != ENROLL_PIN_LEN)
            return -EINVAL;
        for (size_t i = 0; i < ENROLL_PIN_LEN; i++)
            if (p2p__b64url_value((unsigned char)p[i]) < 0)
                return -EINVAL;
        memcpy(pin, p, ENROLL_PIN_LEN + 1);
    }
    memcpy(token, join, tl);
    token[tl] = '\0';
    return 0;
}

int p2p__enroll_have_valid_cert(vault *v)
{
    char *crt = vault_get_text(v, "certificates", "node.crt");
    char *key = vault_get_text(v, "keys", "node.key");
    char *ca = vault_get_text(v, "certificates", "ca.crt");
    int ok = crt && key && ca && pki_key_matches_cert(key, crt) == 1 && pki_cert_verify(crt, ca, NULL) == 0;
    free(crt);
    pki_secret_free(key);
    free(ca);
    return ok;
}

/* ---- blocking fetch: p2p__fetch_run is in fetch.c ----------------------- */

void p2p__fetch_clear(p2p_fetch *f)
{
    if (f->answer) {
        OPENSSL_cleanse(f->answer, f->answer_len);
        free(f->answer);
    }
    f->answer = NULL;
    f->answer_len = 0;
}

/* ---- the worker's challenge server ---------------------------------------- */

typedef struct enroll enroll;

typedef struct chal_conn {
    uv_tcp_t tcp;
    enroll *e;
    struct chal_conn *next, **pprev; /* open connections, so the end can close them */
    char buf[2048];
    size_t len;
    uv_write_t wr;
    char *out;
} chal_conn;

struct enroll {
    p2p_ctx *ctx;
    vault *v;
    char token[CERTREQ_MAX_JOIN_TOKEN + 1];
    char pin[ENROLL_PIN_LEN + 1];
    char *key, *csr;
    char **names;
    size_t n_names;
    /* challenge server */
    uv_tcp_t srv;
    int srv_open, port;
    char challenge[ENROLL_CHALLENGE_LEN + 1];
    char keyauth[ENROLL_KEYAUTH_LEN + 1];
    uint64_t challenge_at;
    int challenge_used;
    chal_conn *conns;
    int handles; /* open handles in this struct and conns, waited for at the end */
    /* attempts */
    uv_work_t work;
    uv_timer_t retry;
    int retry_open;
    unsigned attempt;
    int done, result;
    char *err;
    /* work results */
    int w_fatal;
    long w_retry_after; /* the coordinator's Retry-After of the last answer, seconds */
    char *w_msg, *w_cert, *w_ca, *w_gossip, *w_jwt, *w_from;
};

static void on_chal_closed(uv_handle_t *h)
{
    chal_conn *c = h->data;
    if ((*c->pprev = c->next))
        c->next->pprev = c->pprev;
    c->e->handles--;
    free(c->out);
    free(c);
}

static void on_chal_written(uv_write_t *w, int status)
{
    chal_conn *c = w->data;
    uv_close((uv_handle_t *)&c->tcp, on_chal_closed);
}

static void chal_answer(chal_conn *c, int status, const char *reason, const char *body)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->out = p2p__xasprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                            "Connection: close\r\n\r\n%s",
                            status, reason, strlen(body), body);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)strlen(c->out));
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_chal_written) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_chal_closed);
}

static void chal_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    chal_conn *c = h->data;
    b->base = c->buf + c->len;
    b->len = sizeof(c->buf) - 1 - c->len;
}

static void chal_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    chal_conn *c = s->data;
    enroll *e = c->e;
    if (n < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_chal_closed);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n")) {
        if (c->len >= sizeof(c->buf) - 1)
            chal_answer(c, 431, "Request Header Fields Too Large", "too large\n");
        return;
    }
    static const char prefix[] = "GET /internal/cert-challenge/";
    char *sp = NULL;
    if (strncmp(c->buf, prefix, sizeof prefix - 1) != 0 || !(sp = strchr(c->buf + sizeof prefix - 1, ' '))) {
        chal_answer(c, 404, "Not Found", "not found\n");
        return;
    }
    *sp = '\0';
    const char *ch = c->buf + sizeof prefix - 1;
    uint64_t now = p2p__wall_ms();
    int fresh = e->challenge[0] && !e->challenge_used && now - e->challenge_at <= ENROLL_CHALLENGE_TTL_MS;
    if (fresh && strlen(ch) == ENROLL_CHALLENGE_LEN && CRYPTO_memcmp(ch, e->challenge, ENROLL_CHALLENGE_LEN) == 0) {
        e->challenge_used = 1; /* one use */
        chal_answer(c, 200, "OK", e->keyauth);
        p2p_log(e->ctx, P2P_LOG_INFO, "enroll", "challenge fetched by the coordinator");
    } else {
        chal_answer(c, 404, "Not Found", "no such challenge\n");
    }
}

static void on_chal_accept(uv_stream_t *srv, int status)
{
    enroll *e = srv->data;
    if (status != 0)
        return;
    chal_conn *c = p2p__xcalloc(1, sizeof(*c));
    c->e = e;
    if ((c->next = e->conns))
        c->next->pprev = &c->next;
    c->pprev = &e->conns;
    e->conns = c;
    e->handles++;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 || uv_read_start((uv_stream_t *)&c->tcp, chal_alloc, chal_read) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_chal_closed);
}

static void on_enroll_handle_closed(uv_handle_t *h)
{
    enroll *e = h->data;
    e->handles--;
}

static int chal_listen(enroll *e, int port, char **err)
{
    const char *bind = e->ctx->cfg.bind_address;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(bind, port, (struct sockaddr_in *)&ss) != 0 && uv_ip6_addr(bind, port, (struct sockaddr_in6 *)&ss) != 0)
        return p2p__fail(err, -EINVAL, "bind_address '%s' is not an IP address", bind);
    uv_tcp_init(e->ctx->loop, &e->srv);
    e->srv.data = e;
    e->srv_open = 1;
    e->handles++;
    int r = uv_tcp_bind(&e->srv, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&e->srv, 16, on_chal_accept);
    if (r != 0) {
        uv_close((uv_handle_t *)&e->srv, on_enroll_handle_closed);
        e->srv_open = 0;
        while (e->handles > 0)
            uv_run(e->ctx->loop, UV_RUN_ONCE);
        return p2p__fail(err, r, "cannot listen on %s:%d for the enrollment challenge: %s", bind, port, uv_strerror(r));
    }
    struct sockaddr_storage b;
    int bl = sizeof b;
    uv_tcp_getsockname(&e->srv, (struct sockaddr *)&b, &bl);
    e->port = ntohs(b.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&b)->sin6_port : ((struct sockaddr_in *)&b)->sin_port);
    return 0;
}

/* ---- one attempt, on the thread pool ----------------------------------------- */

char *p2p__enroll_url(const char *hostport, const char *path)
{
    /* "host:port", "[v6]:port" or a bare IPv6 literal with a port after the last ':' */
    const char *colon = strrchr(hostport, ':');
    if (hostport[0] != '[' && colon && strchr(hostport, ':') != colon)
        return p2p__xasprintf("https://[%.*s]%s%s", (int)(colon - hostport), hostport, colon, path);
    return p2p__xasprintf("https://%s%s", hostport, path);
}

static void attempt_work_body(uv_work_t *w)
{
    enroll *e = w->data;
    p2p_config *cfg = &e->ctx->cfg;
    certreq rq = {.node_id = cfg->node_id, .csr = e->csr, .challenge = e->challenge, .challenge_port = e->port,
                  .join_token = e->token, .role = (char *)p2p_node_role(e->ctx)};
    json_t *doc = certreq_request_json(&rq);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    for (size_t i = 0; i < cfg->n_coordinator_addresses && !e->w_cert && !e->w_fatal; i++) {
        const char *addr = cfg->coordinator_addresses[i];
        free(e->w_msg);
        e->w_msg = NULL;
        char *url = p2p__enroll_url(addr, "/internal/ca-cert");
        p2p_fetch f = {.url = url, .timeout_ms = 5000, .max_body = PKI_MAX_CERT_PEM};
        int r = p2p__fetch_run(&f);
        free(url);
        if (r == 0 && f.retry_after > e->w_retry_after)
            e->w_retry_after = f.retry_after;
        if (r != 0 || f.status != 200) {
            e->w_msg = r ? p2p__xasprintf("%s: %s", addr, f.error)
                         : p2p__xasprintf("%s: GET /internal/ca-cert answered %ld", addr, f.status);
            p2p__fetch_clear(&f);
            continue;
        }
        char pin[ENROLL_PIN_LEN + 1];
        if (p2p__enroll_ca_pin(f.answer, pin) != 0) {
            e->w_msg = p2p__xasprintf("%s: the CA certificate it serves does not parse", addr);
            p2p__fetch_clear(&f);
            continue;
        }
        if (e->pin[0] && strcmp(pin, e->pin) != 0) {
            e->w_fatal = 1;
            e->w_msg = p2p__xasprintf("%s serves a CA (pin %s) that is not the one pinned in the join token (%s): "
                                      "refusing to enroll",
                                      addr, pin, e->pin);
            p2p__fetch_clear(&f);
            break;
        }
        char *ca = p2p__xstrdup(f.answer);
        p2p__fetch_clear(&f);
        url = p2p__enroll_url(addr, "/internal/cert-request");
        p2p_fetch q = {.url = url, .body = body, .body_len = strlen(body), .ca_pem = ca, .timeout_ms = 20000,
                       .max_body = 2 * CERTREQ_MAX_BODY};
        r = p2p__fetch_run(&q);
        free(url);
        if (r == 0 && q.retry_after > e->w_retry_after)
            e->w_retry_after = q.retry_after;
        if (r != 0) {
            e->w_msg = p2p__xasprintf("%s: %s", addr, q.error);
        } else if (q.status == 200) {
            certreq_response resp = {0};
            char *perr = NULL;
            json_t *j = json_loadb(q.answer, q.answer_len, 0, NULL);
            json_t *keys = j ? json_object_get(j, "jwt_keys") : NULL;
            p2p_jwt_keyset *ks = p2p_jwt_keyset_new();
            int keys_ok = keys && p2p_jwt_keyset_from_json(ks, keys) == 0 && p2p_jwt_keyset_count(ks) > 0;
            p2p_jwt_keyset_free(ks);
            if (certreq_response_parse(q.answer, q.answer_len, &resp, &perr) != 0 || !resp.gossip_key || !keys_ok) {
                e->w_msg = p2p__xasprintf("%s: unusable answer: %s", addr,
                                          perr ? perr : "gossip key or token keys missing or malformed");
            } else if (pki_cert_verify(resp.certificate, resp.ca_certificate, &perr) != 0 ||
                       pki_key_matches_cert(e->key, resp.certificate) != 1) {
                e->w_msg = p2p__xasprintf("%s: the certificate it issued does not verify: %s", addr,
                                          perr ? perr : "not for our key");
            } else {
                e->w_cert = resp.certificate;
                e->w_ca = resp.ca_certificate;
                e->w_gossip = resp.gossip_key;
                e->w_jwt = json_dumps(keys, JSON_COMPACT);
                e->w_from = p2p__xstrdup(addr);
                resp.certificate = resp.ca_certificate = resp.gossip_key = NULL;
            }
            free(perr);
            json_decref(j);
            certreq_response_free(&resp);
        } else {
            json_t *j = json_loadb(q.answer, q.answer_len, 0, NULL);
            const char *why = j ? json_string_value(json_object_get(j, "error")) : NULL;
            e->w_msg = p2p__xasprintf("%s refused the certificate request (%ld): %s", addr, q.status,
                                      why ? why : "no reason given");
            json_decref(j);
            if (q.status >= 400 && q.status < 500 && q.status != 429 && q.status != 408)
                e->w_fatal = 1;
        }
        p2p__fetch_clear(&q);
        free(ca);
    }
    OPENSSL_cleanse(body, strlen(body));
    free(body);
}

/* On the thread pool; OpenSSL's per-thread state of this pool thread is freed
 * after each job (pool threads outlive OPENSSL_cleanup at exit). */
static void attempt_work(uv_work_t *w)
{
    attempt_work_body(w);
    OPENSSL_thread_stop();
}

static void start_attempt(enroll *e);

unsigned p2p__enroll_backoff_ms(unsigned attempt, long retry_after_s, uint32_t rnd)
{
    unsigned base = attempt < 5 ? 1000u << attempt : 30000u; /* 1, 2, 4, 8, 16, then 30 s */
    unsigned delay = base / 2 + rnd % (base / 2 + 1);         /* [base/2, base]: workers started together spread out */
    if (retry_after_s > 300)
        retry_after_s = 300;
    if (retry_after_s > 0) {
        unsigned ra = (unsigned)retry_after_s * 1000u + (rnd >> 16) % 1000u;
        if (ra > delay)
            delay = ra;
    }
    return delay;
}

static void on_retry(uv_timer_t *t)
{
    start_attempt(t->data);
}

static int store_result(enroll *e, char **err)
{
    uint8_t gk[48];
    size_t gl = 0;
    if (p2p__b64url_decode(e->w_gossip, strlen(e->w_gossip), gk, &gl) != 0 || gl != 32 || !e->w_jwt)
        return p2p__fail(err, -EINVAL, "the coordinator sent a malformed gossip key");
    vault_put(e->v, "certificates", "node.crt", e->w_cert, strlen(e->w_cert));
    vault_put(e->v, "keys", "node.key", e->key, strlen(e->key));
    vault_put(e->v, "certificates", "ca.crt", e->w_ca, strlen(e->w_ca));
    vault_put(e->v, "keys", "gossip_key", gk, 32);
    /* the public keys tokens are signed with: this node verifies, it never signs */
    vault_put(e->v, "data", "jwt_public_keys", e->w_jwt, strlen(e->w_jwt));
    vault_remove(e->v, "keys", "jwt_secret"); /* a re-enrolling node of an older version */
    OPENSSL_cleanse(gk, sizeof gk);
    return vault_save(e->v, err);
}

static void attempt_done(uv_work_t *w, int status)
{
    enroll *e = w->data;
    if (e->w_cert) {
        char *err = NULL;
        int r = store_result(e, &err);
        if (r == 0) {
            p2p_log(e->ctx, P2P_LOG_INFO, "enroll", "enrolled with the coordinator at %s; certificate and keys are in the vault",
                    e->w_from);
        } else {
            e->err = p2p__xasprintf("cannot store the certificate: %s", err ? err : p2p_strerror(r));
        }
        free(err);
        e->result = r;
        e->done = 1;
        return;
    }
    if (e->w_fatal) {
        e->err = e->w_msg;
        e->w_msg = NULL;
        e->result = -EACCES;
        e->done = 1;
        return;
    }
    uint32_t rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof rnd); /* jitter only: a failure leaves rnd 0, still bounded */
    unsigned delay = p2p__enroll_backoff_ms(e->attempt, e->w_retry_after, rnd);
    p2p_log(e->ctx, P2P_LOG_WARN, "enroll", "enrollment attempt %u failed (%s); retrying in %.1f s", e->attempt + 1,
            e->w_msg ? e->w_msg : "no coordinator address", delay / 1000.0);
    e->attempt++;
    uv_timer_start(&e->retry, on_retry, delay, 0);
}

static void start_attempt(enroll *e)
{
    e->challenge_at = p2p__wall_ms();
    e->challenge_used = 0;
    if (p2p__enroll_challenge_new(e->challenge_at, e->challenge) != 0) {
        e->err = p2p__xstrdup("no randomness for the challenge");
        e->result = -EIO;
        e->done = 1;
        return;
    }
    p2p__enroll_key_auth(e->challenge, e->csr, e->keyauth);
    free(e->w_msg);
    e->w_msg = NULL;
    e->w_retry_after = 0;
    e->work.data = e;
    uv_queue_work(e->ctx->loop, &e->work, attempt_work, attempt_done);
}

int p2p__enroll_worker(p2p_ctx *ctx, vault *v, const char *join, char **err)
{
    if (!join || !*join)
        return p2p__fail(err, -EINVAL,
                         "this worker has no certificate yet and no join token: create one on the coordinator "
                         "('p2p token create --join') and pass it with --join-token, $P2P_JOIN_TOKEN or the "
                         "config key join_token");
    if (ctx->cfg.n_coordinator_addresses == 0)
        return p2p__fail(err, -EINVAL, "no coordinator_addresses to enroll with");
    enroll *e = p2p__xcalloc(1, sizeof(*e));
    e->ctx = ctx;
    e->v = v;
    int r = 0;
    if (p2p__enroll_join_split(join, e->token, sizeof e->token, e->pin) != 0) {
        r = p2p__fail(err, -EINVAL, "the join token is malformed (expected p2pj_… or p2pj_….<CA pin>)");
        goto out;
    }
    if (!e->pin[0])
        p2p_log(ctx, P2P_LOG_WARN, "enroll",
                "the join token carries no CA pin: trusting the CA the coordinator serves on first use");
    p2p__node_names(ctx, &e->names, &e->n_names);
    if ((r = pki_key_create(&e->key, err)) != 0 ||
        (r = pki_csr_create(e->key, ctx->cfg.node_id, (const char *const *)e->names, e->n_names, &e->csr, err)) != 0)
        goto out;
    int port = ctx->cfg.enroll_challenge_port;
    if ((r = chal_listen(e, port, err)) == UV_EADDRINUSE && port != 0) {
        p2p_log(ctx, P2P_LOG_INFO, "enroll", "challenge port %d is in use (another worker enrolling?); using a free port",
                port);
        free(*err);
        *err = NULL;
        r = chal_listen(e, 0, err);
    }
    if (r != 0)
        goto out;
    p2p_log(ctx, P2P_LOG_INFO, "enroll", "no certificate yet: enrolling with %s (challenge port %d)",
            ctx->cfg.coordinator_addresses[0], e->port);
    uv_timer_init(ctx->loop, &e->retry);
    e->retry.data = e;
    e->retry_open = 1;
    e->handles++;
    start_attempt(e);
    while (!e->done)
        uv_run(ctx->loop, UV_RUN_ONCE);
    r = e->result;
    if (r != 0) {
        *err = e->err;
        e->err = NULL;
    }
out:
    if (e->srv_open)
        uv_close((uv_handle_t *)&e->srv, on_enroll_handle_closed);
    if (e->retry_open)
        uv_close((uv_handle_t *)&e->retry, on_enroll_handle_closed);
    for (chal_conn *c = e->conns; c; c = c->next)
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, on_chal_closed);
    while (e->handles > 0) /* they live in `e` */
        uv_run(ctx->loop, UV_RUN_ONCE);
    pki_secret_free(e->key);
    free(e->csr);
    for (size_t i = 0; i < e->n_names; i++)
        free(e->names[i]);
    free(e->names);
    free(e->w_msg);
    free(e->w_cert);
    free(e->w_ca);
    if (e->w_gossip)
        pki_secret_free(e->w_gossip);
    if (e->w_jwt)
        pki_secret_free(e->w_jwt);
    free(e->w_from);
    free(e->err);
    OPENSSL_cleanse(e->token, sizeof e->token);
    free(e);
    return r;
}

/* ---- the names a node puts in its CSR ---------------------------------------- */

static int usable_ip(const char *ip)
{
    if (!*ip || !strcmp(ip, "0.0.0.0") || !strcmp(ip, "::"))
        return 0;
    if (!strncmp(ip, "169.254.", 8) || !strncasecmp(ip, "fe80:", 5))
        return 0; /* link-local, APIPA */
    return 1;
}

static int is_loopback(const char *s)
{
    unsigned char b[16];
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (inet_pton(AF_INET, s, b) == 1)
        return b[0] == 127;
    return inet_pton(AF_INET6, s, b) == 1 && memcmp(b, one, 16) == 0;
}

static void add_name(char ***names, size_t *n, const char *s)
{
    if (!usable_ip(s) || *n >= PKI_MAX_SANS - 1)
        return;
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*names)[i], s))
            return;
    *names = p2p__xrealloc(*names, (*n + 1) * sizeof(char *));
    (*names)[(*n)++] = p2p__xstrdup(s);
}

/* A node bound to every address: its interfaces' addresses as the address
 * selection ranks them (addrsel.h), which drops loopback unless the cluster
 * lives on this host (every coordinator address is loopback) or nothing else is
 * up. Coordinator addresses that are not IP literals do not take part. */
static void add_interfaces(p2p_ctx *ctx, char ***names, size_t *n)
{
    p2p_config *cfg = &ctx->cfg;
    p2p_addrsel_iface *ifs = NULL;
    size_t nifs = 0;
    if (p2p__addrsel_interfaces(NULL, &ifs, &nifs) != 0)
        return;
    const char *coords[P2P_ADDRSEL_MAX_TARGETS];
    size_t nc = 0;
    for (size_t i = 0; i < cfg->n_coordinator_addresses && nc < P2P_ADDRSEL_MAX_TARGETS; i++) {
        struct sockaddr_storage sa;
        if (p2p__addrsel_parse_target(cfg->coordinator_addresses[i], &sa) == 0)
            coords[nc++] = cfg->coordinator_addresses[i];
    }
    p2p_addrsel_cand *cands = p2p__xcalloc(PKI_MAX_SANS, sizeof(*cands));
    size_t nk = 0;
    if (p2p__addrsel_rank(ifs, nifs, coords, nc, cands, PKI_MAX_SANS, &nk, NULL) == 0)
        for (size_t i = 0; i < nk; i++)
            add_name(names, n, cands[i].ip);
    free(cands);
    free(ifs);
}

void p2p__node_names(p2p_ctx *ctx, char ***names, size_t *n)
{
    p2p_config *cfg = &ctx->cfg;
    *names = NULL;
    *n = 0;
    add_name(names, n, cfg->advertise_address);
    add_name(names, n, cfg->bind_address);
    if (!usable_ip(cfg->bind_address))
        add_interfaces(ctx, names, n);
    /* "localhost" goes with a loopback address, never alone */
    for (size_t i = 0; i < *n; i++)
        if (is_loopback((*names)[i])) {
            add_name(names, n, "localhost");
            break;
        }
}
