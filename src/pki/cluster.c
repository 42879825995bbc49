/*
 * cluster.c — the "pki" component (see cluster.h).
 *
 * Slow work (key generation, signing, the challenge fetch, the renewal request)
 * runs on the thread pool with copies of what it needs; the results come back
 * to the loop, which alone touches the component's state. A job that finishes
 * after the component stopped only frees its copies.
 */
#include "pki/cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "http/tls.h"
#include "pki/certreq.h"
#include "pki/enroll.h"
#include "pki/jointoken.h"
#include "pki/pki.h"
#include "pki/registry.h"
#include "vault/vault.h"


#define USED_CHALLENGES 1024
#define BOOTSTRAP_TOKEN_TTL_S 86400
#define BOOTSTRAP_TOKEN_USES 10
#define MAX_RENEW_WAITERS 16

#define ISSUED_SLOTS 1024 /* about 1 KiB each with the certificate: 1 MiB at most */
#define ISSUED_KEEP_MS 600000

typedef struct p2p_pki {
    p2p_ctx *ctx;
    vault *v;
    int running, from_files;
    char *cert, *key, *ca, *ca_key; /* ca_key: coordinator only */
    uint8_t gossip_key[32];
    int have_gossip_key;
    jointoken_table *tokens; /* coordinator only */
    registry *reg;           /* coordinator only: enrolled node ids, revoked certificates */
    struct {
        char c[ENROLL_CHALLENGE_LEN + 1];
        uint64_t at;
    } used[USED_CHALLENGES];
    size_t used_next;
    uv_timer_t timer;
    int timer_open, renewing, jobs;
    /* enrollment/renewal jobs: at most SIGN_INFLIGHT on the thread pool (a
     * challenge fetch can hold a pool thread up to its 5 s timeout, and the
     * pool also saves the vault and reads files); the others wait in a FIFO of
     * at most SIGN_QUEUE, beyond which requests are answered 503 + Retry-After */
    struct sign_job *q_head, *q_tail;
    size_t queued;
    /* the last enrollments' answers, so a worker whose answer was lost (its
     * request timed out while the job waited) gets the same certificate again
     * when it retries with the same CSR and join token, instead of "already
     * enrolled"; kept ISSUED_KEEP_MS */
    struct {
        char node_id[PKI_MAX_NODE_ID + 1];
        uint8_t csr_hash[32], token_hash[32];
        char fingerprint[PKI_FINGERPRINT_LEN + 1];
        char *cert;
        uint64_t at;
    } issued[ISSUED_SLOTS];
    size_t issued_next;
    struct {
        void (*fn)(p2p_ctx *ctx, void *arg);
        void *arg;
    } on_change[4];
    p2p_pki_stats stats;
    /* pki/renew calls waiting for the renewal in progress */
    p2p_call *renew_waiters[MAX_RENEW_WAITERS];
    size_t n_renew_waiters;
    char *last_renew_error; /* of the last failed renewal, NULL after a success */
} p2p_pki;

static void spread_revoked_certs(p2p_pki *p);

static p2p_pki *get(p2p_ctx *ctx)
{
    return p2p_shared_get(ctx, "pki");
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static void update_not_after(p2p_pki *p)
{
    pki_cert_info info = {0};
    if (p->cert && pki_cert_parse(p->cert, strlen(p->cert), &info, NULL) == 0)
        p->stats.cert_not_after = info.not_after;
    pki_cert_info_free(&info);
}

/* ---- join tokens (coordinator) ---------------------------------------------- */

static int save_tokens(p2p_pki *p)
{
    json_t *doc = jointoken_table_to_json(p->tokens);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    int r = vault_put(p->v, "data", "join_tokens", s, strlen(s));
    free(s);
    return r;
}

/* The join string an operator hands to a worker: token "." CA pin. */
static char *join_string(p2p_pki *p, const char *token)
{
    char pin[ENROLL_PIN_LEN + 1];
    if (p2p__enroll_ca_pin(p->ca, pin) != 0)
        return p2p__xstrdup(token);
    return p2p__xasprintf("%s.%s", token, pin);
}

static int load_tokens(p2p_pki *p, int *dirty, char **err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vault_get(p->v, "data", "join_tokens", &buf, &len) == 0) {
        json_error_t jerr;
        json_t *doc = json_loadb((const char *)buf, len, 0, &jerr);
        vault_secret_free(buf, len + 1);
        char *e = NULL;
        int r = doc ? jointoken_table_from_json(doc, &p->tokens, &e) : -EINVAL;
        json_decref(doc);
        if (r != 0) {
            p2p__fail(err, r, "the join tokens in the vault are unreadable: %s", e ? e : jerr.text);
            free(e);
            return r;
        }
        return 0;
    }
    /* first start: one bootstrap token for the operator */
    p->tokens = jointoken_table_new();
    char *tok = NULL;
    if (jointoken_create(p->tokens, now_s(), BOOTSTRAP_TOKEN_TTL_S, BOOTSTRAP_TOKEN_USES, &tok) != 0)
        return p2p__fail(err, -EIO, "cannot create the bootstrap join token");
    char *js = join_string(p, tok);
    p2p__log_local(p->ctx, P2P_LOG_WARN, "pki",
                   "new cluster: join token for workers (shown once; valid %d h, %d uses; make more with "
            "'p2p token create --join'): %s",
            BOOTSTRAP_TOKEN_TTL_S / 3600, BOOTSTRAP_TOKEN_USES, js);
    pki_secret_free(js);
    jointoken_secret_free(tok);
    *dirty = 1;
    return save_tokens(p);
}

/* ---- the registry of enrolled node ids (coordinator) ----------------------------- */

static int save_registry(p2p_pki *p)
{
    json_t *doc = registry_to_json(p->reg);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    int r = s ? vault_put(p->v, "data", "node_registry", s, strlen(s)) : -ENOMEM;
    free(s);
    return r;
}

/* What the registry keeps of a certificate; -EINVAL when it does not parse. */
static int cert_record(const char *pem, registry_cert *out)
{
    pki_cert_info info = {0};
    int r = pki_cert_fingerprint(pem, out->fingerprint, out->serial, sizeof out->serial);
    if (r == 0)
        r = pki_cert_parse(pem, strlen(pem), &info, NULL);
    out->not_after = info.not_after;
    pki_cert_info_free(&info);
    return r;
}

/* Loads the registry from the vault (or starts one) and makes sure it holds the
 * coordinator's own id with its current certificate: that id is never issued
 * through enrollment. */
static int load_registry(p2p_pki *p, int *dirty, char **err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vault_get(p->v, "data", "node_registry", &buf, &len) == 0) {
        json_error_t jerr;
        json_t *doc = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
        vault_secret_free(buf, len + 1);
        char *e = NULL;
        int r = doc ? registry_from_json(doc, &p->reg, &e) : -EINVAL;
        json_decref(doc);
        if (r != 0) {
            p2p__fail(err, r, "the node registry in the vault is unreadable: %s", e ? e : jerr.text);
            free(e);
            return r;
        }
    } else {
        p->reg = registry_new();
    }
    int64_t now = now_s();
    if (registry_prune(p->reg, now))
        *dirty = 1;
    registry_cert self;
    if (cert_record(p->cert, &self) != 0)
        return p2p__fail(err, -EINVAL, "the coordinator's own certificate does not parse");
    const registry_node *me = registry_find(p->reg, p->ctx->cfg.node_id);
    if (!me || strcmp(me->cert.fingerprint, self.fingerprint) != 0 || strcmp(me->role, "coordinator") != 0) {
        int r = me && strcmp(me->role, "coordinator") != 0
                    ? registry_replace(p->reg, p->ctx->cfg.node_id, "coordinator", &self, now, NULL)
                    : registry_renew(p->reg, p->ctx->cfg.node_id, "coordinator", &self, now);
        if (r != 0)
            return p2p__fail(err, r, "cannot enter the coordinator's id in the node registry: %s", p2p_strerror(r));
        *dirty = 1;
    }
    return *dirty ? save_registry(p) : 0;
}

/* ---- start / stop --------------------------------------------------------- */

static int load_files(p2p_pki *p, char **err)
{
    p2p_config *cfg = &p->ctx->cfg;
    size_t len;
    int r = p2p__read_file(cfg->ssl_cert_file, PKI_MAX_CERT_PEM, &p->cert, &len);
    if (r == 0)
        r = p2p__read_file(cfg->ssl_key_file, 1 << 20, &p->key, &len);
    if (r != 0)
        return p2p__fail(err, r, "cannot read ssl_cert_file/ssl_key_file: %s", p2p_strerror(r));
    if (*cfg->ssl_ca_cert_file && p2p__read_file(cfg->ssl_ca_cert_file, PKI_MAX_CERT_PEM, &p->ca, &len) != 0)
        return p2p__fail(err, -ENOENT, "cannot read ssl_ca_cert_file %s", cfg->ssl_ca_cert_file);
    p->from_files = 1;
    return 0;
}

static void write_public_ca(p2p_pki *p)
{
    int r = p2p__tls_write_public_ca(p->ctx->cfg.state_directory, p->ca);
    if (r != 0)
        p2p_log(p->ctx, P2P_LOG_WARN, "pki", "cannot write %s/certs/ca.crt for clients: %s",
                p->ctx->cfg.state_directory, p2p_strerror(r));
}

static void pki_stop(p2p_component *c);
static void sign_drain(p2p_pki *p);
static void issued_clear(p2p_pki *p);
static void on_timer(uv_timer_t *t);

static int pki_start(p2p_component *c, char **err)
{
    p2p_pki *p = c->self;
    p2p_ctx *ctx = c->ctx;
    p2p_config *cfg = &ctx->cfg;
    int r = 0, dirty = 0;
    p->v = p2p_shared_get(ctx, "vault");
    if (!p->v)
        return p2p__fail(err, -EINVAL, "the vault is not open");
    if (!cfg->https_enabled) {
        p->running = 1;
        return 0;
    }
    if (*cfg->ssl_cert_file) {
        if ((r = load_files(p, err)) != 0)
            goto fail;
    } else if (cfg->coordinator_mode) {
        char **names = NULL;
        size_t n = 0;
        p2p__node_names(ctx, &names, &n);
        r = p2p__tls_node_material(p->v, cfg->state_directory, cfg->node_id, (const char *const *)names, n,
                                   cfg->cert_lifetime, &p->cert, &p->key, err);
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        if (r != 0)
            goto fail;
        p->ca = vault_get_text(p->v, "certificates", "ca.crt");
        p->ca_key = vault_get_text(p->v, "keys", "ca.key");
        if (!p->ca) {
            r = p2p__fail(err, -EINVAL, "the vault has no CA certificate (certificates/ca.crt)");
            goto fail;
        }
        if (!p->ca_key)
            p2p_log(ctx, P2P_LOG_WARN, "pki",
                    "the vault has no CA key (keys/ca.key): this coordinator cannot enroll workers or renew certificates");
    } else {
        p->cert = vault_get_text(p->v, "certificates", "node.crt");
        p->key = vault_get_text(p->v, "keys", "node.key");
        p->ca = vault_get_text(p->v, "certificates", "ca.crt");
        if (!p->cert || !p->key || !p->ca) {
            r = p2p__fail(err, -EINVAL, "this worker is not enrolled (no certificate in the vault)");
            goto fail;
        }
        write_public_ca(p);
    }
    if (!p->from_files) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (vault_get(p->v, "keys", "gossip_key", &buf, &len) == 0 && len == 32) {
            memcpy(p->gossip_key, buf, 32);
            p->have_gossip_key = 1;
        }
        if (buf)
            vault_secret_free(buf, len + 1);
        if (!p->have_gossip_key && cfg->coordinator_mode) {
            if (RAND_bytes(p->gossip_key, 32) != 1) {
                r = p2p__fail(err, -EIO, "no randomness for the gossip key");
                goto fail;
            }
            p->have_gossip_key = 1;
            vault_put(p->v, "keys", "gossip_key", p->gossip_key, 32);
            dirty = 1;
        }
        if (cfg->coordinator_mode && p->ca_key &&
            ((r = load_tokens(p, &dirty, err)) != 0 || (r = load_registry(p, &dirty, err)) != 0))
            goto fail;
        if (dirty && (r = vault_save(p->v, err)) != 0)
            goto fail;
    }
    update_not_after(p);
    if (!p->from_files) {
        uv_timer_init(ctx->loop, &p->timer);
        p->timer.data = p;
        p->timer_open = 1;
        uint64_t every = (uint64_t)cfg->cert_lifetime * 1000 / 20;
        every = every < 1000 ? 1000 : every > 600000 ? 600000 : every;
        uv_timer_start(&p->timer, on_timer, 0, every);
        uv_unref((uv_handle_t *)&p->timer);
    }
    p->running = 1;
    return 0;
fail:
    pki_stop(c);
    return r;
}

static void pki_stop(p2p_component *c)
{
    p2p_pki *p = c->self;
    p2p__pki_http_stop(c->ctx);
    p->running = 0;
    sign_drain(p);
    issued_clear(p);
    if (p->timer_open) {
        uv_close((uv_handle_t *)&p->timer, NULL);
        p->timer_open = 0;
    }
    free(p->cert);
    pki_secret_free(p->key);
    free(p->ca);
    pki_secret_free(p->ca_key);
    p->cert = p->key = p->ca = p->ca_key = NULL;
    OPENSSL_cleanse(p->gossip_key, sizeof p->gossip_key);
    p->have_gossip_key = 0;
    jointoken_table_free(p->tokens);
    p->tokens = NULL;
    registry_free(p->reg);
    p->reg = NULL;
}

/* ---- renewal -------------------------------------------------------------- */

typedef struct renew_job {
    uv_work_t w;
    p2p_pki *p;
    int coordinator;
    char *node_id, **names;
    size_t n_names;
    char *cert, *key, *ca, *ca_key; /* copies of the current material */
    char *coord_addrs[16];
    size_t n_coord;
    long lifetime;
    /* results */
    char *new_cert, *new_key, *new_ca, *msg;
    json_t *jwt_keys; /* the coordinator's public token key set, when its answer had one */
} renew_job;

static void renew_work_body(uv_work_t *w)
{
    renew_job *j = w->data;
    char *csr = NULL, *err = NULL;
    if (pki_key_create(&j->new_key, &err) != 0 ||
        pki_csr_create(j->new_key, j->node_id, (const char *const *)j->names, j->n_names, &csr, &err) != 0) {
        j->msg = err;
        return;
    }
    if (j->coordinator) {
        if (pki_sign_node_csr(j->ca, j->ca_key, csr, j->lifetime, "coordinator", &j->new_cert, &err) != 0)
            j->msg = err;
        free(csr);
        return;
    }
    json_t *doc = json_pack("{s:s}", "csr", csr);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    for (size_t i = 0; i < j->n_coord && !j->new_cert; i++) {
        const char *addr = j->coord_addrs[i];
        char *url = p2p__enroll_url(addr, "/internal/cert-renew");
        p2p_fetch f = {.url = url, .body = body, .body_len = strlen(body), .ca_pem = j->ca, .cert_pem = j->cert,
                       .key_pem = j->key, .timeout_ms = 20000, .max_body = 2 * CERTREQ_MAX_BODY};
        int r = p2p__fetch_run(&f);
        free(url);
        free(j->msg);
        j->msg = NULL;
        if (r != 0) {
            j->msg = p2p__xasprintf("%s: %s", addr, f.error);
        } else if (f.status != 200) {
            json_t *e = json_loadb(f.answer, f.answer_len, 0, NULL);
            const char *why = e ? json_string_value(json_object_get(e, "error")) : NULL;
            j->msg = p2p__xasprintf("%s answered %ld: %s", addr, f.status, why ? why : "no reason given");
            json_decref(e);
        } else {
            certreq_response resp = {0};
            if (certreq_response_parse(f.answer, f.answer_len, &resp, &err) != 0 ||
                pki_cert_verify(resp.certificate, resp.ca_certificate, &err) != 0 ||
                pki_key_matches_cert(j->new_key, resp.certificate) != 1) {
                j->msg = p2p__xasprintf("%s: unusable answer: %s", addr, err ? err : "not for our key");
                free(err);
                err = NULL;
            } else {
                j->new_cert = resp.certificate;
                j->new_ca = resp.ca_certificate;
                resp.certificate = resp.ca_certificate = NULL;
                /* the key set rides along: a worker's set follows rotations and prunes */
                json_t *answer = json_loadb(f.answer, f.answer_len, 0, NULL);
                json_t *keys = json_object_get(answer, "jwt_keys");
                if (json_is_object(keys))
                    j->jwt_keys = json_incref(keys);
                json_decref(answer);
            }
            certreq_response_free(&resp);
        }
        p2p__fetch_clear(&f);
    }
    free(body);
    free(csr);
}

/* On the thread pool; OpenSSL's per-thread state of this pool thread is freed
 * after each job (pool threads outlive OPENSSL_cleanup at exit). */
static void renew_work(uv_work_t *w)
{
    renew_work_body(w);
    OPENSSL_thread_stop();
}

static void renew_job_free(renew_job *j)
{
    free(j->node_id);
    for (size_t i = 0; i < j->n_names; i++)
        free(j->names[i]);
    free(j->names);
    free(j->cert);
    pki_secret_free(j->key);
    free(j->ca);
    pki_secret_free(j->ca_key);
    for (size_t i = 0; i < j->n_coord; i++)
        free(j->coord_addrs[i]);
    free(j->new_cert);
    pki_secret_free(j->new_key);
    free(j->new_ca);
    free(j->msg);
    json_decref(j->jwt_keys);
    free(j);
}

static void on_renew_saved(int status, const char *err, void *arg)
{
    p2p_pki *p = arg;
    if (status != 0)
        p2p_log(p->ctx, P2P_LOG_ERROR, "pki", "saving the renewed certificate to the vault failed: %s",
                err ? err : p2p_strerror(status));
}

static json_t *own_certificate_json(p2p_pki *p);

/* Answers the pki/renew calls waiting for this renewal: the new certificate,
 * or the reason it failed. */
static void answer_renew_waiters(p2p_pki *p, const char *failure)
{
    size_t n = p->n_renew_waiters;
    p->n_renew_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        p2p_call *call = p->renew_waiters[i];
        if (failure) {
            char *msg = p2p__xasprintf("certificate renewal failed: %s", failure);
            p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, msg, NULL);
            free(msg);
        } else {
            json_t *res = own_certificate_json(p);
            json_object_set_new(res, "renewed", json_true());
            p2p_call_reply(call, res);
        }
    }
}

static void renew_done(uv_work_t *w, int status)
{
    renew_job *j = w->data;
    p2p_pki *p = j->p;
    p->jobs--;
    p->renewing = 0;
    if (!p->running) {
        answer_renew_waiters(p, "the node is stopping");
        renew_job_free(j);
        return;
    }
    if (!j->new_cert) {
        p->stats.renewal_failures++;
        p2p_log(p->ctx, P2P_LOG_ERROR, "pki", "certificate renewal failed: %s (retrying)", j->msg ? j->msg : "?");
        free(p->last_renew_error);
        p->last_renew_error = p2p__xstrdup(j->msg ? j->msg : "?");
        answer_renew_waiters(p, p->last_renew_error);
        renew_job_free(j);
        return;
    }
    vault_put(p->v, "certificates", "node.crt", j->new_cert, strlen(j->new_cert));
    vault_put(p->v, "keys", "node.key", j->new_key, strlen(j->new_key));
    if (j->new_ca)
        vault_put(p->v, "certificates", "ca.crt", j->new_ca, strlen(j->new_ca));
    registry_cert self; /* the coordinator's own entry follows its certificate */
    if (p->reg && cert_record(j->new_cert, &self) == 0 &&
        registry_renew(p->reg, p->ctx->cfg.node_id, "coordinator", &self, now_s()) == 0)
        save_registry(p);
    vault_save_async(p->v, p->ctx->loop, on_renew_saved, p);
    free(p->cert);
    pki_secret_free(p->key);
    p->cert = j->new_cert;
    p->key = j->new_key;
    j->new_cert = j->new_key = NULL;
    if (j->new_ca) {
        free(p->ca);
        p->ca = j->new_ca;
        j->new_ca = NULL;
        write_public_ca(p);
    }
    update_not_after(p);
    p2p_guard *g = p2p__guard(p->ctx);
    if (j->jwt_keys && g && p2p__guard_set_keys_json(g, j->jwt_keys) != 0)
        p2p_log(p->ctx, P2P_LOG_WARN, "pki", "the token key set in the renewal answer is unusable; ignored");
    p->stats.renewals++;
    free(p->last_renew_error);
    p->last_renew_error = NULL;
    p2p_log(p->ctx, P2P_LOG_INFO, "pki", "certificate renewed; valid until %lld (Unix time)",
            (long long)p->stats.cert_not_after);
    renew_job_free(j);
    for (size_t i = 0; i < 4; i++)
        if (p->on_change[i].fn)
            p->on_change[i].fn(p->ctx, p->on_change[i].arg);
    answer_renew_waiters(p, NULL);
}

static void start_renewal(p2p_pki *p, char **names, size_t n_names, const char *why)
{
    p2p_config *cfg = &p->ctx->cfg;
    renew_job *j = p2p__xcalloc(1, sizeof(*j));
    j->p = p;
    j->w.data = j;
    j->coordinator = cfg->coordinator_mode;
    j->node_id = p2p__xstrdup(cfg->node_id);
    j->names = names;
    j->n_names = n_names;
    j->cert = p2p__xstrdup(p->cert);
    j->key = p2p__xstrdup(p->key);
    j->ca = p2p__xstrdup(p->ca);
    j->ca_key = p->ca_key ? p2p__xstrdup(p->ca_key) : NULL;
    for (size_t i = 0; i < cfg->n_coordinator_addresses && i < 16; i++)
        j->coord_addrs[j->n_coord++] = p2p__xstrdup(cfg->coordinator_addresses[i]);
    j->lifetime = cfg->cert_lifetime;
    p->renewing = 1;
    p->jobs++;
    p2p_log(p->ctx, P2P_LOG_INFO, "pki", "renewing the node certificate: %s", why);
    uv_queue_work(p->ctx->loop, &j->w, renew_work, renew_done);
}

static void on_timer(uv_timer_t *t)
{
    p2p_pki *p = t->data;
    if (!p->running || p->renewing || !p->cert || (p->ctx->cfg.coordinator_mode && !p->ca_key))
        return;
    pki_cert_info info = {0};
    if (pki_cert_parse(p->cert, strlen(p->cert), &info, NULL) != 0)
        return;
    char **names = NULL;
    size_t n = 0;
    p2p__node_names(p->ctx, &names, &n);
    const char *ips[PKI_MAX_SANS];
    size_t ni = 0;
    for (size_t i = 0; i < n; i++) {
        struct in6_addr a6;
        if (inet_pton(AF_INET, names[i], &a6) == 1 || inet_pton(AF_INET6, names[i], &a6) == 1)
            ips[ni++] = names[i];
    }
    int64_t now = now_s();
    int need = pki_cert_needs_renewal(&info, now, p->ctx->cfg.cert_renew_before, ips, ni);
    const char *why = now >= info.not_after - p->ctx->cfg.cert_renew_before ? "it expires soon"
                                                                              : "the node's addresses changed";
    /* A certificate issued before roles went into certificates has no OU, and
     * vouches for no role but "worker" in gossip (membership/records.h): the
     * first check (at start) renews it, so an upgraded cluster gets its roles
     * back within one check. */
    if (need == 0 && !info.role) {
        need = 1;
        why = "it carries no role (subject OU): issued before roles went into certificates";
    }
    pki_cert_info_free(&info);
    if (need == 0) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return;
    }
    start_renewal(p, names, n, why);
}

/* ---- enrollment and renewal requests (coordinator) ---------------------------- */

typedef struct sign_job {
    uv_work_t w;
    p2p_pki *p;
    p2p_pki_reply cb;
    void *arg;
    int renew;
    certreq rq;
    char ip[INET6_ADDRSTRLEN];
    char keyauth[ENROLL_KEYAUTH_LEN + 1];
    char *ca, *ca_key;
    long lifetime;
    char role[PKI_MAX_ROLE + 1]; /* what the certificate will say */
    int replace;                 /* enrolling with a replacement token bound to rq.node_id */
    char *cert, *msg;
    registry_cert issued; /* of `cert`, computed on the thread pool */
    int status;
    struct sign_job *next; /* in the pki's queue */
} sign_job;

#define SIGN_INFLIGHT 2
#define SIGN_QUEUE 4096

static json_t *err_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *err_body(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return json_pack("{s:s}", "error", buf);
}

static int csr_ok(sign_job *j, const char *claimed, char **msg);

static void sign_work_body(uv_work_t *w)
{
    sign_job *j = w->data;
    /* the CSR's parse and signature check are key operations: here, not on the loop */
    if (!csr_ok(j, j->rq.node_id, &j->msg)) {
        j->status = 403;
        return;
    }
    if (!j->renew) {
        char *url = strchr(j->ip, ':') ? p2p__xasprintf("http://[%s]:%d/internal/cert-challenge/%s", j->ip,
                                                        j->rq.challenge_port, j->rq.challenge)
                                       : p2p__xasprintf("http://%s:%d/internal/cert-challenge/%s", j->ip,
                                                        j->rq.challenge_port, j->rq.challenge);
        p2p_fetch f = {.url = url, .timeout_ms = 5000, .max_body = 1024};
        int r = p2p__fetch_run(&f);
        free(url);
        int ok = r == 0 && f.status == 200 && f.answer_len == ENROLL_KEYAUTH_LEN &&
                 CRYPTO_memcmp(f.answer, j->keyauth, ENROLL_KEYAUTH_LEN) == 0;
        if (!ok) {
            j->status = 403;
            j->msg = r != 0 ? p2p__xasprintf("cannot fetch the challenge from %s:%d: %s", j->ip, j->rq.challenge_port,
                                             f.error)
                            : p2p__xasprintf("the challenge at %s:%d did not check out (HTTP %ld)", j->ip,
                                             j->rq.challenge_port, f.status);
            p2p__fetch_clear(&f);
            return;
        }
        p2p__fetch_clear(&f);
    }
    char *err = NULL;
    if (pki_sign_node_csr(j->ca, j->ca_key, j->rq.csr, j->lifetime, j->role, &j->cert, &err) != 0) {
        j->status = 403;
        j->msg = err;
        return;
    }
    if (cert_record(j->cert, &j->issued) != 0) {
        j->status = 500;
        j->msg = p2p__xstrdup("the certificate just issued does not parse");
        return;
    }
    j->status = 200;
}

/* On the thread pool; OpenSSL's per-thread state of this pool thread is freed
 * after each job (pool threads outlive OPENSSL_cleanup at exit). */
static void sign_work(uv_work_t *w)
{
    sign_work_body(w);
    OPENSSL_thread_stop();
}

static void sign_job_free(sign_job *j)
{
    certreq_free(&j->rq);
    free(j->ca);
    pki_secret_free(j->ca_key);
    free(j->cert);
    free(j->msg);
    free(j);
}

typedef struct save_wait {
    p2p_pki_reply cb;
    void *arg;
    json_t *body;
} save_wait;

static void on_issue_saved(int status, const char *err, void *arg)
{
    save_wait *s = arg;
    if (status != 0) {
        json_decref(s->body);
        s->cb(500, err_body("the coordinator could not save its vault: %s", err ? err : p2p_strerror(status)), s->arg);
    } else {
        s->cb(200, s->body, s->arg);
    }
    free(s);
}

static json_t *issue_body(p2p_pki *p, const char *cert, int with_secrets)
{
    char gk[44] = "";
    p2p__b64url_encode(p->gossip_key, 32, gk);
    json_t *body = certreq_response_json(cert, p->ca, with_secrets && p->have_gossip_key ? gk : NULL);
    OPENSSL_cleanse(gk, sizeof gk);
    /* the public token keys (never the private one: only the coordinator signs);
     * on renewal too, so a worker's key set follows rotations */
    json_t *keys = p2p__guard_keys_json(p2p__guard(p->ctx));
    if (keys)
        json_object_set_new(body, "jwt_keys", keys);
    return body;
}

/* Whether a join token may get a certificate for this request's node id and
 * role: 0, or an HTTP status with *why (heap). Checked before any work (the
 * challenge fetch) and again when the certificate is ready. */
static int identity_refusal(p2p_pki *p, const certreq *rq, int64_t now, char **why)
{
    const char *id = rq->node_id, *role = rq->role ? rq->role : "worker";
    const char *bound = jointoken_replaces(p->tokens, rq->join_token, now);
    if (strcmp(role, "coordinator") == 0) {
        *why = p2p__xstrdup("role 'coordinator' is never issued through enrollment: a worker asks for its own role");
        return 403;
    }
    if (strcmp(id, p->ctx->cfg.node_id) == 0) {
        *why = p2p__xasprintf("node id '%s' is the coordinator's own: it is never issued through enrollment", id);
        return 403;
    }
    const registry_node *known = registry_find(p->reg, id);
    if (known && strcmp(known->role, "coordinator") == 0) {
        *why = p2p__xasprintf("node id '%s' belongs to a coordinator: it is never issued through enrollment", id);
        return 403;
    }
    if (bound && strcmp(bound, id) != 0) {
        *why = p2p__xasprintf("this is a replacement join token for '%s': it enrolls only '%s', not '%s'", bound,
                              bound, id);
        return 403;
    }
    if (known && !bound) {
        *why = p2p__xasprintf("node id '%s' is already enrolled; to replace it make a replacement join token: "
                              "p2p token create --join --replace %s",
                              id, id);
        return 403;
    }
    return 0;
}

/* Rate limits of enrollment (auth/ratelimit.h P2P_RL_ENROLL_*): every refused
 * attempt costs its address a token of the failure bucket. A request whose
 * body or join token does not check out, from an address whose failure bucket
 * is empty, is answered 429 (+ Retry-After) instead of 400/403 — so guessing
 * tokens is throttled per address. A join token that checks out costs a token
 * of its own bucket and is never refused for its address's failures: honest
 * workers behind one address (NAT, containers) are limited only by their
 * token, even while someone at the same address guesses tokens. */
static void fail_key(const char *ip, char *key, size_t n)
{
    snprintf(key, n, "enroll-ip:%s", ip);
}

/* Charges a refused attempt to `ip`: 1 when it was paid, 0 when the address's
 * failure bucket was empty (*retry set when retry is not NULL). */
static int enroll_failed(p2p_pki *p, const char *ip, uint32_t *retry)
{
    char key[INET6_ADDRSTRLEN + 16];
    fail_key(ip, key, sizeof key);
    return p2p__guard_rate_key(p2p__guard(p->ctx), key, P2P_RL_ENROLL_FAIL, 0, retry);
}

static json_t *too_many(uint32_t retry, const char *what)
{
    return json_pack("{s:s,s:i}", "error", what, "retry_after", (int)(retry ? retry : 1));
}

static void sha256_of(const char *s, uint8_t out[32])
{
    unsigned n = 0;
    EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL);
}

static void issued_remember(p2p_pki *p, const sign_job *j)
{
    size_t i = p->issued_next;
    free(p->issued[i].cert);
    snprintf(p->issued[i].node_id, sizeof p->issued[i].node_id, "%s", j->rq.node_id);
    sha256_of(j->rq.csr, p->issued[i].csr_hash);
    sha256_of(j->rq.join_token, p->issued[i].token_hash);
    snprintf(p->issued[i].fingerprint, sizeof p->issued[i].fingerprint, "%s", j->issued.fingerprint);
    p->issued[i].cert = p2p__xstrdup(j->cert);
    p->issued[i].at = uv_now(p->ctx->loop);
    p->issued_next = (i + 1) % ISSUED_SLOTS;
}

/* The certificate issued moments ago for this very request (same node id, CSR
 * and join token), while it is still the node's current, unrevoked one; NULL. */
static const char *issued_find(p2p_pki *p, const certreq *rq)
{
    uint8_t ch[32], th[32];
    sha256_of(rq->csr, ch);
    sha256_of(rq->join_token, th);
    uint64_t now = uv_now(p->ctx->loop);
    for (size_t i = 0; i < ISSUED_SLOTS; i++) {
        if (!p->issued[i].cert || now - p->issued[i].at > ISSUED_KEEP_MS || strcmp(p->issued[i].node_id, rq->node_id) ||
            CRYPTO_memcmp(p->issued[i].csr_hash, ch, 32) || CRYPTO_memcmp(p->issued[i].token_hash, th, 32))
            continue;
        const registry_node *n = registry_find(p->reg, rq->node_id);
        if (!n || strcmp(n->cert.fingerprint, p->issued[i].fingerprint) != 0 ||
            registry_is_revoked(p->reg, p->issued[i].fingerprint))
            return NULL;
        return p->issued[i].cert;
    }
    return NULL;
}

static void issued_clear(p2p_pki *p)
{
    for (size_t i = 0; i < ISSUED_SLOTS; i++) {
        free(p->issued[i].cert);
        p->issued[i].cert = NULL;
    }
}

static void sign_done(uv_work_t *w, int status);

/* Puts a checked request on the pool, or in the queue behind the jobs in flight. */
static void sign_submit(p2p_pki *p, sign_job *j)
{
    if (p->jobs < SIGN_INFLIGHT) {
        p->jobs++;
        uv_queue_work(p->ctx->loop, &j->w, sign_work, sign_done);
        return;
    }
    if (p->queued >= SIGN_QUEUE) {
        p->stats.enroll_refused++;
        j->cb(503, too_many(2, "the certificate authority is busy; retry later"), j->arg);
        sign_job_free(j);
        return;
    }
    j->next = NULL;
    if (p->q_tail)
        p->q_tail->next = j;
    else
        p->q_head = j;
    p->q_tail = j;
    p->queued++;
}

static void sign_next(p2p_pki *p)
{
    while (p->q_head && p->jobs < SIGN_INFLIGHT) {
        sign_job *j = p->q_head;
        if (!(p->q_head = j->next))
            p->q_tail = NULL;
        p->queued--;
        if (!p->running) {
            j->cb(503, err_body("the node is stopping"), j->arg);
            sign_job_free(j);
            continue;
        }
        p->jobs++;
        uv_queue_work(p->ctx->loop, &j->w, sign_work, sign_done);
    }
}

static void sign_drain(p2p_pki *p)
{
    while (p->q_head) {
        sign_job *j = p->q_head;
        p->q_head = j->next;
        p->queued--;
        j->cb(503, err_body("the node is stopping"), j->arg);
        sign_job_free(j);
    }
    p->q_tail = NULL;
}

static void sign_done(uv_work_t *w, int status)
{
    sign_job *j = w->data;
    p2p_pki *p = j->p;
    p->jobs--;
    sign_next(p);
    if (!p->running) {
        j->cb(503, err_body("the node is stopping"), j->arg);
        sign_job_free(j);
        return;
    }
    if (j->status != 200) {
        p->stats.enroll_refused++;
        if (!j->renew)
            enroll_failed(p, j->ip, NULL);
        p2p_log(p->ctx, P2P_LOG_WARN, "pki", "%s for '%s' from %s refused: %s",
                j->renew ? "renewal" : "enrollment", j->rq.node_id, j->ip, j->msg);
        j->cb(j->status, err_body("%s", j->msg), j->arg);
        sign_job_free(j);
        return;
    }
    int64_t now = now_s();
    save_wait *s = p2p__xcalloc(1, sizeof(*s));
    s->cb = j->cb;
    s->arg = j->arg;
    if (!j->renew) {
        /* The registry and the token may have changed meanwhile (a concurrent
         * request for the same id, the token used up): check both again. */
        char *why = NULL;
        int r = identity_refusal(p, &j->rq, now, &why);
        size_t n_revoked = 0;
        if (r == 0 && jointoken_check(p->tokens, j->rq.join_token, now) != 0) {
            r = 403;
            why = p2p__xstrdup("join token refused (unknown, expired or used up)");
        }
        j->replace = r == 0 && jointoken_replaces(p->tokens, j->rq.join_token, now) != NULL;
        if (r == 0) {
            int e = j->replace ? registry_replace(p->reg, j->rq.node_id, j->role, &j->issued, now, &n_revoked)
                               : registry_enroll(p->reg, j->rq.node_id, j->role, &j->issued, now);
            if (e != 0) {
                r = 503;
                why = p2p__xasprintf("the node registry cannot take it: %s", e == -ENOSPC ? "full" : p2p_strerror(e));
            }
        }
        if (r != 0) {
            p->stats.enroll_refused++;
            if (r != 503)
                enroll_failed(p, j->ip, NULL);
            p2p_log(p->ctx, P2P_LOG_WARN, "pki", "enrollment of '%s' from %s refused: %s", j->rq.node_id, j->ip, why);
            j->cb(r, err_body("%s", why), j->arg);
            free(why);
            free(s);
            sign_job_free(j);
            return;
        }
        jointoken_consume(p->tokens, j->rq.join_token, now);
        save_tokens(p);
        save_registry(p);
        p->stats.enrolled++;
        if (j->replace)
            spread_revoked_certs(p);
        if (j->replace)
            p2p_log(p->ctx, P2P_LOG_WARN, "pki",
                    "replaced node '%s' (role %s) from %s with a replacement join token; %zu old certificate(s) "
                    "revoked",
                    j->rq.node_id, j->role, j->ip, n_revoked);
        else
            p2p_log(p->ctx, P2P_LOG_INFO, "pki", "enrolled node '%s' (role %s) from %s", j->rq.node_id, j->role,
                    j->ip);
        s->body = issue_body(p, j->cert, 1);
        issued_remember(p, j);
    } else {
        registry_renew(p->reg, j->rq.node_id, j->role, &j->issued, now);
        save_registry(p);
        p->stats.renewed_issued++;
        p2p_log(p->ctx, P2P_LOG_INFO, "pki", "renewed the certificate of node '%s' (%s)", j->rq.node_id, j->ip);
        s->body = issue_body(p, j->cert, 0);
    }
    sign_job_free(j);
    if (vault_save_async(p->v, p->ctx->loop, on_issue_saved, s) != 0)
        on_issue_saved(-EIO, "cannot queue the save", s);
}

static int challenge_seen(p2p_pki *p, const char *ch, uint64_t now)
{
    for (size_t i = 0; i < USED_CHALLENGES; i++)
        if (p->used[i].at && now - p->used[i].at <= 2 * ENROLL_CHALLENGE_TTL_MS &&
            strcmp(p->used[i].c, ch) == 0)
            return 1;
    return 0;
}

static void canonical_ip(const char *in, char *out, size_t n)
{
    snprintf(out, n, "%s", in);
    if (strncasecmp(in, "::ffff:", 7) == 0 && strchr(in + 7, '.'))
        snprintf(out, n, "%s", in + 7); /* IPv4-mapped: its IPv4 form */
}

static sign_job *job_new(p2p_pki *p, p2p_pki_reply cb, void *arg, const char *peer_ip)
{
    sign_job *j = p2p__xcalloc(1, sizeof(*j));
    j->p = p;
    j->w.data = j;
    j->cb = cb;
    j->arg = arg;
    canonical_ip(peer_ip ? peer_ip : "", j->ip, sizeof j->ip);
    j->ca = p2p__xstrdup(p->ca);
    j->ca_key = p2p__xstrdup(p->ca_key);
    j->lifetime = p->ctx->cfg.cert_lifetime;
    return j;
}

static int csr_ok(sign_job *j, const char *claimed, char **msg)
{
    pki_csr_info info = {0};
    char *err = NULL;
    int r = pki_csr_parse(j->rq.csr, strlen(j->rq.csr), &info, &err);
    if (r == 0)
        r = pki_csr_check(&info, claimed, j->ip, &err);
    pki_csr_info_free(&info);
    if (r != 0)
        *msg = err ? err : p2p__xstrdup("the CSR is refused");
    else
        free(err);
    return r == 0;
}

/* The challenge's shape, age and novelty: 0, or an HTTP status and *msg. */
static int check_challenge(p2p_pki *p, sign_job *j, uint64_t now, uint64_t *made, char **msg)
{
    if (p2p__enroll_challenge_time(j->rq.challenge, made) != 0) {
        *msg = p2p__xstrdup("challenge: not a p2p challenge");
        return 400;
    }
    if (*made + ENROLL_CHALLENGE_TTL_MS < now || *made > now + ENROLL_CHALLENGE_TTL_MS)
        *msg = p2p__xstrdup("challenge expired (older than 60 s, or the clocks differ by more than that)");
    else if (challenge_seen(p, j->rq.challenge, now))
        *msg = p2p__xstrdup("challenge already used");
    else
        return 0;
    return 403;
}

void p2p__pki_cert_request(p2p_ctx *ctx, const char *body, size_t len, const char *peer_ip, p2p_pki_reply cb,
                           void *arg)
{
    p2p_pki *p = get(ctx);
    if (!p || !p->running || !p->tokens || !p->reg || !p->ca_key) {
        cb(404, err_body("this node is not a certificate authority"), arg);
        return;
    }
    sign_job *j = job_new(p, cb, arg, peer_ip);
    uint32_t retry = 0;
    char *msg = NULL;
    if (certreq_parse(body, len, &j->rq, &msg) != 0) {
        p->stats.enroll_refused++;
        if (!enroll_failed(p, j->ip, &retry))
            cb(429, too_many(retry, "too many refused enrollment attempts from this address; retry later"), arg);
        else
            cb(400, err_body("%s", msg ? msg : "malformed request"), arg);
        free(msg);
        sign_job_free(j);
        return;
    }
    const char *again = issued_find(p, &j->rq);
    uint64_t made0 = 0;
    char *cmsg = NULL;
    if (again && check_challenge(p, j, p2p__wall_ms(), &made0, &cmsg) == 0) {
        /* a retry (new challenge, same CSR and join token) of a request that
         * succeeded but whose answer the worker did not get */
        snprintf(p->used[p->used_next].c, sizeof p->used[0].c, "%s", j->rq.challenge);
        p->used[p->used_next].at = p2p__wall_ms();
        p->used_next = (p->used_next + 1) % USED_CHALLENGES;
        p2p_log(ctx, P2P_LOG_INFO, "pki", "enrollment of '%s' from %s: answering its retry with the certificate just issued",
                j->rq.node_id, j->ip);
        cb(200, issue_body(p, again, 1), arg);
        sign_job_free(j);
        return;
    }
    free(cmsg);
    uint64_t now = p2p__wall_ms(), made = 0;
    int64_t t = now_s();
    int status = 403;
    registry_prune(p->reg, t);
    if (jointoken_check(p->tokens, j->rq.join_token, t) != 0) {
        p->stats.enroll_refused++;
        if (!enroll_failed(p, j->ip, &retry)) {
            cb(429, too_many(retry, "too many refused enrollment attempts from this address; retry later"), arg);
        } else {
            p2p_log(ctx, P2P_LOG_WARN, "pki", "enrollment of '%s' from %s refused: join token refused", j->rq.node_id,
                    j->ip);
            cb(403, err_body("join token refused (unknown, expired or used up)"), arg);
        }
        sign_job_free(j);
        return;
    }
    if (!p2p__guard_rate_key(p2p__guard(ctx), j->rq.join_token, P2P_RL_ENROLL_TOKEN, 0, &retry)) {
        /* a good token, used faster than its bucket allows: not a failure of the address */
        p->stats.enroll_refused++;
        cb(429, too_many(retry, "too many enrollments with this join token; retry later"), arg);
        sign_job_free(j);
        return;
    }
    if ((status = check_challenge(p, j, now, &made, &msg)) == 0)
        status = identity_refusal(p, &j->rq, t, &msg);
    if (status != 0) {
        p->stats.enroll_refused++;
        enroll_failed(p, j->ip, NULL);
        p2p_log(ctx, P2P_LOG_WARN, "pki", "enrollment of '%s' from %s refused: %s", j->rq.node_id, j->ip, msg);
        cb(status, err_body("%s", msg), arg);
        free(msg);
        sign_job_free(j);
        return;
    }
    snprintf(p->used[p->used_next].c, sizeof p->used[0].c, "%s", j->rq.challenge);
    p->used[p->used_next].at = now;
    p->used_next = (p->used_next + 1) % USED_CHALLENGES;
    p2p__enroll_key_auth(j->rq.challenge, j->rq.csr, j->keyauth);
    snprintf(j->role, sizeof j->role, "%s", j->rq.role ? j->rq.role : "worker");
    j->replace = jointoken_replaces(p->tokens, j->rq.join_token, now_s()) != NULL;
    sign_submit(p, j);
}

void p2p__pki_cert_renew(p2p_ctx *ctx, const char *body, size_t len, const char *peer_node, const char *peer_ip,
                         p2p_pki_reply cb, void *arg)
{
    p2p_pki *p = get(ctx);
    if (!p || !p->running || !p->ca_key) {
        cb(404, err_body("this node is not a certificate authority"), arg);
        return;
    }
    if (!peer_node) {
        cb(401, err_body("renewal needs the node's current certificate"), arg);
        return;
    }
    /* The coordinator renews its own certificate itself; and a certificate the
     * registry revoked was refused in the handshake already (p2p__pki_cert_revoked). */
    const registry_node *known = p->reg ? registry_find(p->reg, peer_node) : NULL;
    if (strcmp(peer_node, p->ctx->cfg.node_id) == 0 || (known && strcmp(known->role, "coordinator") == 0)) {
        p->stats.enroll_refused++;
        cb(403, err_body("node id '%s' belongs to a coordinator: it is never renewed through this route", peer_node),
           arg);
        return;
    }
    json_error_t jerr;
    json_t *doc = len <= CERTREQ_MAX_BODY ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    const char *csr = doc ? json_string_value(json_object_get(doc, "csr")) : NULL;
    if (!csr || json_object_size(doc) != 1 || strlen(csr) > CERTREQ_MAX_CSR) {
        json_decref(doc);
        cb(400, err_body("expected {\"csr\": PEM}"), arg);
        return;
    }
    sign_job *j = job_new(p, cb, arg, peer_ip);
    j->renew = 1;
    snprintf(j->role, sizeof j->role, "%s", known ? known->role : "worker"); /* the role stays what it was */
    j->rq.csr = p2p__xstrdup(csr);
    j->rq.node_id = p2p__xstrdup(peer_node);
    json_decref(doc);
    sign_submit(p, j); /* the CSR is checked on the pool (sign_work) */
}

/* ---- the "auth" RPC service (coordinator) ------------------------------------- */

typedef struct rpc_save {
    p2p_call *call;
    json_t *result;
} rpc_save;

static void on_rpc_saved(int status, const char *err, void *arg)
{
    rpc_save *s = arg;
    if (status != 0) {
        json_decref(s->result);
        p2p_call_error(s->call, P2P_RPC_INTERNAL_ERROR, "the vault could not be saved", NULL);
    } else {
        p2p_call_reply(s->call, s->result);
    }
    free(s);
}

static void reply_after_save(p2p_pki *p, p2p_call *call, json_t *result)
{
    save_tokens(p);
    rpc_save *s = p2p__xcalloc(1, sizeof(*s));
    s->call = call;
    s->result = result;
    if (vault_save_async(p->v, p->ctx->loop, on_rpc_saved, s) != 0)
        on_rpc_saved(-EIO, NULL, s);
}

static int int_param(json_t *params, const char *name, json_int_t def, json_int_t lo, json_int_t hi, json_int_t *out)
{
    json_t *v = json_is_object(params) ? json_object_get(params, name) : NULL;
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static void m_create_join_token(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    json_int_t ttl, uses;
    if (params && !json_is_object(params) && !json_is_null(params)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {ttl?, uses?, replace?}", NULL);
        return;
    }
    if (int_param(params, "ttl", 3600, 1, JOINTOKEN_MAX_TTL_S, &ttl) != 0 ||
        int_param(params, "uses", 1, 1, JOINTOKEN_MAX_USES, &uses) != 0) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "Invalid params: ttl is 1..31536000 seconds, uses is 1..1000000", NULL);
        return;
    }
    json_t *rv = json_is_object(params) ? json_object_get(params, "replace") : NULL;
    const char *replace = json_string_value(rv);
    if (rv && (!replace || !pki_node_id_valid(replace))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "Invalid params: replace is a node id (1..63 characters of A-Z a-z 0-9 . _ -)", NULL);
        return;
    }
    if (replace && uses != 1) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: a replacement join token has one use", NULL);
        return;
    }
    const registry_node *known = replace ? registry_find(p->reg, replace) : NULL;
    if (replace && (strcmp(replace, p->ctx->cfg.node_id) == 0 || (known && !strcmp(known->role, "coordinator")))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "a coordinator's identity cannot be replaced through enrollment", NULL);
        return;
    }
    char *tok = NULL;
    int64_t now = now_s();
    int r = replace ? jointoken_create_replacement(p->tokens, now, ttl, replace, &tok)
                    : jointoken_create(p->tokens, now, ttl, (unsigned)uses, &tok);
    if (r != 0) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR,
                       r == -ENOSPC ? "too many join tokens; revoke some" : "cannot create a join token", NULL);
        return;
    }
    char id[JOINTOKEN_ID_LEN + 1];
    jointoken_token_id(tok, id);
    char *js = join_string(p, tok);
    jointoken_secret_free(tok);
    json_t *res = json_pack("{s:s, s:s, s:I, s:I}", "token", js, "id", id, "expires_at", (json_int_t)(now + ttl),
                            "uses", uses);
    pki_secret_free(js);
    if (replace) {
        json_object_set_new(res, "replaces", json_string(replace));
        p2p_log(p->ctx, P2P_LOG_WARN, "pki",
                "replacement join token %s created for node '%s' (%lld s, 1 use)%s", id, replace, (long long)ttl,
                known ? "" : "; that id is not enrolled yet");
    } else {
        p2p_log(p->ctx, P2P_LOG_INFO, "pki", "join token %s created (%lld s, %lld uses)", id, (long long)ttl,
                (long long)uses);
    }
    reply_after_save(p, call, res);
}

static void m_list_join_tokens(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    p2p_call_reply(call, jointoken_list(p->tokens, now_s()));
}

static void m_revoke_join_token(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    const char *id = json_is_object(params) ? json_string_value(json_object_get(params, "id")) : NULL;
    if (!id) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {id: string}", NULL);
        return;
    }
    if (jointoken_revoke(p->tokens, id) != 0) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no join token with that id", NULL);
        return;
    }
    reply_after_save(p, call, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
}

static void m_list_revoked_certificates(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    registry_prune(p->reg, now_s());
    p2p_call_reply(call, registry_revoked_json(p->reg));
}

/* Join tokens make cluster members: creating and revoking them is for an
 * operator's admin token only (P2P_METHOD_ADMIN), never for a node identity or a
 * viewer. The lists hold no secrets (ids, times, node ids) and stay readable. */
static const p2p_method_desc auth_methods[] = {
    {"create_join_token",
     "Creates a join token for new workers (shown once) with its CA pin. With replace: a replacement token that "
     "enrolls that node id again (one use) and revokes its old certificate.",
     "{ttl?: seconds (default 3600), uses?: int (default 1), replace?: node id}", P2P_METHOD_ADMIN, m_create_join_token,
     NULL},
    {"list_join_tokens", "The join tokens not yet expired: id, created_at, expires_at, uses_left, replaces.", "none",
     P2P_METHOD_READONLY, m_list_join_tokens, NULL},
    {"list_revoked_certificates",
     "Node certificates revoked by replacements and not yet expired: fingerprint (SHA-256), node_id, revoked_at, "
     "expires_at.",
     "none", P2P_METHOD_READONLY, m_list_revoked_certificates, NULL},
    {"revoke_join_token", "Removes a join token by id.", "{id: string}", P2P_METHOD_ADMIN, m_revoke_join_token, NULL},
};

/* ---- the "pki" service (every node): its certificate, renewal, the CA --------- */

/* What a certificate says, for people: a new object (NULL when it does not parse). */
static json_t *cert_json(const char *pem)
{
    pki_cert_info info = {0};
    char fp[PKI_FINGERPRINT_LEN + 1], serial[2 * 20 + 2];
    if (!pem || pki_cert_parse(pem, strlen(pem), &info, NULL) != 0)
        return NULL;
    if (pki_cert_fingerprint(pem, fp, serial, sizeof serial) != 0) {
        pki_cert_info_free(&info);
        return NULL;
    }
    json_t *dns = json_array(), *ips = json_array();
    for (size_t i = 0; i < info.n_dns; i++)
        json_array_append_new(dns, json_string(info.dns[i]));
    for (size_t i = 0; i < info.n_ips; i++)
        json_array_append_new(ips, json_string(info.ips[i]));
    int64_t now = now_s();
    json_t *o = json_pack("{s:s, s:o, s:o, s:o, s:s, s:s, s:I, s:I, s:I}", "subject_cn", info.node_id, "role",
                          info.role ? json_string(info.role) : json_null(), "dns_names", dns, "ip_addresses", ips,
                          "serial", serial, "fingerprint_sha256", fp, "not_before", (json_int_t)info.not_before,
                          "not_after", (json_int_t)info.not_after, "expires_in_seconds",
                          (json_int_t)(info.not_after - now));
    pki_cert_info_free(&info);
    return o;
}

static json_t *own_certificate_json(p2p_pki *p)
{
    json_t *c = cert_json(p->cert);
    if (!c)
        c = json_object();
    const char *source = p->from_files ? "files" : p->ctx->cfg.coordinator_mode ? "own CA" : "coordinator";
    json_object_set_new(c, "node_id", json_string(p->ctx->cfg.node_id));
    json_object_set_new(c, "source", json_string(source));
    json_object_set_new(c, "renewing", json_boolean(p->renewing));
    json_object_set_new(c, "renewals", json_integer((json_int_t)p->stats.renewals));
    json_object_set_new(c, "renewal_failures", json_integer((json_int_t)p->stats.renewal_failures));
    json_object_set_new(c, "renew_before_seconds", json_integer(p->ctx->cfg.cert_renew_before));
    json_object_set_new(c, "last_renewal_error",
                        p->last_renew_error ? json_string(p->last_renew_error) : json_null());
    json_object_set_new(c, "certificate_pem", p->cert ? json_string(p->cert) : json_null());
    return c;
}

static void m_certificate(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    if (params && (!json_is_object(params) || json_object_size(params))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: none expected", NULL);
        return;
    }
    if (!p->cert) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "this node has no certificate (https_enabled is false)", NULL);
        return;
    }
    p2p_call_reply(call, own_certificate_json(p));
}

static void m_ca_certificate(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    if (params && (!json_is_object(params) || json_object_size(params))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: none expected", NULL);
        return;
    }
    if (!p->ca) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "this node has no CA certificate (https_enabled is false)", NULL);
        return;
    }
    json_t *c = cert_json(p->ca);
    if (!c)
        c = json_object();
    json_object_set_new(c, "pem", json_string(p->ca));
    p2p_call_reply(call, c);
}

/* The registry of enrolled node ids (coordinator), each with what the live node
 * presents (pki/certificate on every live node, as this node's own readonly
 * call: a viewer may list without being allowed cluster/call) and a status:
 * ok, expires soon (within that node's cert_renew_before), expired,
 * unreachable, differs (the node presents a certificate the registry does not
 * hold as current), replaced; live nodes the registry does not know come last
 * as "unregistered". Ids, serials, fingerprints, times and addresses: no
 * secrets. */
typedef struct list_job {
    p2p_pki *p;
    p2p_call *call;
} list_job;

static const char *cert_status(json_t *reg, json_t *live, int64_t now)
{
    json_int_t exp = live ? json_integer_value(json_object_get(live, "not_after"))
                          : json_integer_value(json_object_get(reg, "not_after"));
    json_int_t before = live ? json_integer_value(json_object_get(live, "renew_before_seconds"))
                             : PKI_DEFAULT_RENEW_BEFORE_S;
    const char *lfp = json_string_value(json_object_get(live, "fingerprint_sha256"));
    const char *rfp = json_string_value(json_object_get(reg, "fingerprint"));
    if (reg && !live && json_is_true(json_object_get(reg, "replaced")))
        return "replaced";
    if (exp && exp <= now)
        return "expired";
    if (!live)
        return "unreachable";
    if (!reg)
        return "unregistered";
    if (!lfp || !rfp || strcmp(lfp, rfp))
        return "differs";
    if (exp - now <= before)
        return "expires soon";
    return "ok";
}

static void on_list_live(p2p_ctx *ctx, json_t *results, void *udata)
{
    (void)ctx;
    list_job *j = udata;
    p2p_pki *p = j->p;
    if (!p->reg) {
        p2p_call_error(j->call, P2P_RPC_INTERNAL_ERROR, "the PKI stopped", NULL);
        free(j);
        return;
    }
    json_t *live = json_object(); /* node id -> pki/certificate answer or error */
    size_t i;
    json_t *r;
    if (json_is_object(results)) {
        json_t *arr = json_array();
        json_array_append(arr, results);
        results = arr;
    } else {
        json_incref(results);
    }
    json_array_foreach(results, i, r)
    {
        const char *id = json_string_value(json_object_get(r, "node_id"));
        if (id)
            json_object_set(live, id, r);
    }
    json_decref(results);
    registry_prune(p->reg, now_s());
    json_t *doc = registry_to_json(p->reg), *nodes = json_array();
    int64_t now = now_s();
    json_array_foreach(json_object_get(doc, "nodes"), i, r)
    {
        const char *id = json_string_value(json_object_get(r, "id"));
        json_t *row = json_deep_copy(r), *l = json_object_get(live, id);
        json_t *lc = l ? json_object_get(l, "result") : NULL;
        if (lc) {
            lc = json_deep_copy(lc);
            json_object_del(lc, "certificate_pem");
        }
        json_object_set_new(row, "live", lc ? lc : json_null());
        if (l && !lc)
            json_object_set(row, "error", json_object_get(l, "error"));
        json_object_set_new(row, "status", json_string(cert_status(r, lc, now)));
        json_array_append_new(nodes, row);
        json_object_del(live, id);
    }
    const char *id;
    json_t *l;
    json_object_foreach(live, id, l)
    {
        json_t *lc = json_object_get(l, "result");
        if (!lc)
            continue;
        lc = json_deep_copy(lc);
        json_object_del(lc, "certificate_pem");
        json_array_append_new(nodes, json_pack("{s:s, s:o, s:s}", "id", id, "live", lc, "status",
                                               cert_status(NULL, lc, now)));
    }
    json_t *res = json_pack("{s:o, s:O, s:s}", "nodes", nodes, "revoked", json_object_get(doc, "revoked"),
                            "coordinator", p->ctx->cfg.node_id);
    json_decref(doc);
    json_decref(live);
    p2p_call_reply(j->call, res);
    free(j);
}

static void m_list_certificates(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    if (params && (!json_is_object(params) || json_object_size(params))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: none expected", NULL);
        return;
    }
    if (!p->reg) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "only the coordinator keeps the registry of certificates: ask the coordinator", NULL);
        return;
    }
    list_job *j = p2p__xcalloc(1, sizeof *j);
    j->p = p;
    j->call = call;
    if (p2p_call_remote(p->ctx, "all", "pki/certificate", NULL, 10000, on_list_live, j) != 0) {
        free(j);
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "cannot ask the nodes", NULL);
    }
}

static void m_renew(p2p_call *call, json_t *params, void *udata)
{
    p2p_pki *p = udata;
    if (params && (!json_is_object(params) || json_object_size(params))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: none expected", NULL);
        return;
    }
    const char *why = NULL;
    if (!p->running || !p->cert)
        why = "this node has no certificate to renew (https_enabled is false)";
    else if (p->from_files)
        why = "this node's certificate comes from ssl_cert_file/ssl_key_file: renew those files yourself";
    else if (p->ctx->cfg.coordinator_mode && !p->ca_key)
        why = "this coordinator has no CA key (keys/ca.key) and cannot sign its own certificate";
    else if (p->n_renew_waiters >= MAX_RENEW_WAITERS)
        why = "too many renewal requests waiting; try again";
    if (why) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, why, NULL);
        return;
    }
    p->renew_waiters[p->n_renew_waiters++] = call;
    if (p->renewing) /* one renewal at a time: this call gets its outcome */
        return;
    char **names = NULL;
    size_t n = 0;
    p2p__node_names(p->ctx, &names, &n);
    start_renewal(p, names, n, "an operator asked for it (pki/renew)");
}

/* Reading certificates is for any caller (a viewer, another node): they are
 * public by nature. Renewing one is for an operator's admin token. */
static const p2p_method_desc pki_methods[] = {
    {"certificate",
     "This node's certificate: subject, role, DNS names and IP addresses, serial, SHA-256 fingerprint, validity, "
     "renewal counters, the PEM.",
     "none", P2P_METHOD_READONLY, m_certificate, NULL},
    {"ca_certificate", "The cluster CA certificate this node trusts: subject, serial, fingerprint, validity, PEM.",
     "none", P2P_METHOD_READONLY, m_ca_certificate, NULL},
    {"list_certificates",
     "Coordinator: every node id the CA issued a certificate for (role, fingerprint, serial, not_after, issued_at, "
     "renewed_at, replaced), what the live node presents (addresses, serial, expiry) and a status (ok, expires "
     "soon, expired, unreachable, differs, replaced, unregistered); the revoked certificates.",
     "none", P2P_METHOD_READONLY, m_list_certificates, NULL},
    {"renew", "Renews this node's certificate now (new key, signed by the coordinator); answers with the new one.",
     "none", P2P_METHOD_ADMIN, m_renew, NULL},
};

static int register_pki_service(p2p_pki *p, char **err)
{
    static const p2p_service_desc desc = {"pki", P2P_VERSION, "This node's certificate and the cluster CA", 1};
    int r = p2p_service_register(p->ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(pki_methods) / sizeof(pki_methods[0]); i++) {
        p2p_method_desc d = pki_methods[i];
        d.udata = p;
        r = p2p_method_register(p->ctx, "pki", &d);
        if (r == -EEXIST)
            r = 0;
    }
    if (r != 0)
        return p2p__fail(err, r, "cannot register the pki service: %s", p2p_strerror(r));
    return 0;
}

static int register_auth_service(p2p_pki *p, char **err)
{
    static const p2p_service_desc desc = {"auth", P2P_VERSION, "Cluster membership credentials (coordinator)", 1};
    int r = p2p_service_register(p->ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(auth_methods) / sizeof(auth_methods[0]); i++) {
        p2p_method_desc d = auth_methods[i];
        d.udata = p;
        r = p2p_method_register(p->ctx, "auth", &d);
        if (r == -EEXIST)
            r = 0;
    }
    if (r != 0)
        return p2p__fail(err, r, "cannot register the auth service: %s", p2p_strerror(r));
    return 0;
}

static int pki_start_all(p2p_component *c, char **err)
{
    int r = pki_start(c, err);
    p2p_pki *p = c->self;
    if (r == 0 && p->tokens && (r = register_auth_service(p, err)) != 0)
        pki_stop(c);
    if (r == 0 && (r = register_pki_service(p, err)) != 0)
        pki_stop(c);
    if (r == 0 && (r = p2p__pki_http_start(c->ctx)) != 0) {
        *err = p2p__xasprintf("cannot add the PKI routes: %s", p2p_strerror(r));
        pki_stop(c);
    }
    return r;
}

/* ---- registration and accessors --------------------------------------------- */

static const p2p_component_ops pki_ops = {
    .name = "pki",
    .deps = (const char *const[]){"security", NULL},
    .start = pki_start_all,
    .stop = pki_stop,
};

static void free_pki(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    p2p_pki *p = arg;
    free(p->last_renew_error);
    free(arg);
}

int p2p__pki_register(p2p_ctx *ctx)
{
    p2p_pki *p = p2p__xcalloc(1, sizeof(*p));
    p->ctx = ctx;
    if (!p2p__component_add(ctx, &pki_ops, p)) {
        free(p);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "pki", p);
    p2p__ctx_on_shutdown(ctx, free_pki, p);
    return 0;
}

int p2p__pki_material(p2p_ctx *ctx, p2p_tls_material *out)
{
    p2p_pki *p = get(ctx);
    memset(out, 0, sizeof(*out));
    if (!p || !p->running)
        return -ENOENT;
    out->cert = p->cert;
    out->key = p->key;
    out->ca = p->ca;
    return 0;
}

int p2p__pki_on_change(p2p_ctx *ctx, void (*cb)(p2p_ctx *ctx, void *arg), void *arg)
{
    p2p_pki *p = get(ctx);
    for (size_t i = 0; p && i < 4; i++)
        if (!p->on_change[i].fn) {
            p->on_change[i].fn = cb;
            p->on_change[i].arg = arg;
            return 0;
        }
    return -ENOSPC;
}

void p2p__pki_off_change(p2p_ctx *ctx, void (*cb)(p2p_ctx *ctx, void *arg), void *arg)
{
    p2p_pki *p = get(ctx);
    for (size_t i = 0; p && i < 4; i++)
        if (p->on_change[i].fn == cb && p->on_change[i].arg == arg)
            p->on_change[i].fn = NULL;
}

const uint8_t *p2p__pki_gossip_key(p2p_ctx *ctx)
{
    p2p_pki *p = get(ctx);
    return p && p->have_gossip_key ? p->gossip_key : NULL;
}

int p2p__pki_cert_revoked(p2p_ctx *ctx, const struct x509_st *cert)
{
    p2p_pki *p = get(ctx);
    char fp[PKI_FINGERPRINT_LEN + 1];
    if (!p || !cert)
        return 0;
    if (p2p__pki_cert_fingerprint(cert, fp) != 0)
        return 1; /* cannot name it: fail closed */
    /* the coordinator's registry, and on every node the cluster-wide list the
     * revocation sync brings (replaced identities) */
    return (p->reg && registry_is_revoked(p->reg, fp)) || p2p__guard_cert_revoked(p2p__guard(ctx), fp);
}

/* Puts the registry's revoked certificates on the cluster-wide revocation list,
 * which gossips its version and reaches every node in seconds (auth/revsync.c). */
static void spread_revoked_certs(p2p_pki *p)
{
    json_t *list = registry_revoked_json(p->reg);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *fp = json_string_value(json_object_get(c, "fingerprint"));
        int64_t exp = (int64_t)json_integer_value(json_object_get(c, "expires_at"));
        int r = p2p__guard_revoke_cert(p2p__guard(p->ctx), fp, exp, NULL, NULL);
        if (r != 0)
            p2p_log(p->ctx, P2P_LOG_ERROR, "pki", "cannot spread the revocation of certificate %s: %s",
                    fp ? fp : "?", p2p_strerror(r));
    }
    json_decref(list);
}

json_t *p2p__pki_revoked_certs(p2p_ctx *ctx)
{
    p2p_pki *p = get(ctx);
    if (p && p->reg)
        registry_prune(p->reg, now_s());
    return registry_revoked_json(p ? p->reg : NULL);
}

int p2p__pki_stats(p2p_ctx *ctx, p2p_pki_stats *out)
{
    p2p_pki *p = get(ctx);
    if (!p)
        return -ENOENT;
    *out = p->stats;
    return 0;
}

json_t *p2p__pki_certificates_json(p2p_ctx *ctx)
{
    p2p_pki *p = get(ctx);
    if (!p || !p->ca)
        return NULL;
    json_t *ca = json_object();
    pki_cert_info ci;
    char *err = NULL;
    if (pki_cert_parse(p->ca, strlen(p->ca), &ci, &err) == 0) {
        char *subject = p2p__xasprintf("CN=%s", ci.node_id);
        json_object_set_new(ca, "subject", json_string(subject));
        json_object_set_new(ca, "not_before", json_integer((json_int_t)ci.not_before));
        json_object_set_new(ca, "not_after", json_integer((json_int_t)ci.not_after));
        free(subject);
        pki_cert_info_free(&ci);
    }
    free(err);
    char fp[PKI_FINGERPRINT_LEN + 1], serial[64];
    if (pki_cert_fingerprint(p->ca, fp, serial, sizeof serial) == 0)
        json_object_set_new(ca, "fingerprint", json_string(fp));
    json_t *nodes = json_array();
    if (p->reg) {
        registry_prune(p->reg, now_s());
        json_t *doc = registry_to_json(p->reg), *revoked = registry_revoked_json(p->reg);
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(doc, "nodes"), i, n)
        {
            const char *nfp = json_string_value(json_object_get(n, "fingerprint"));
            int rev = 0;
            size_t k;
            json_t *r;
            json_array_foreach(revoked, k, r) rev |= nfp && json_is_string(json_object_get(r, "fingerprint")) &&
                                                     !strcmp(nfp, json_string_value(json_object_get(r, "fingerprint")));
            json_array_append_new(nodes, json_pack("{s:O, s:O, s:O, s:O, s:O, s:[], s:b}", "node_id",
                                                   json_object_get(n, "id"), "role", json_object_get(n, "role"),
                                                   "serial", json_object_get(n, "serial"), "not_after",
                                                   json_object_get(n, "not_after"), "fingerprint",
                                                   json_object_get(n, "fingerprint"), "addresses", "revoked", rev));
        }
        json_decref(doc);
        json_decref(revoked);
    }
    return json_pack("{s:o, s:o}", "ca", ca, "nodes", nodes);
}
