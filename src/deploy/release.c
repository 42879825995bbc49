/*
 * release.c — the cluster release key and deploy/sign, deploy/release_key
 * (see release.h).
 *
 * Signing is an RPC so that the private key stays in the coordinator's vault:
 * the client sends package.json, which lists the sha256 of every file, and
 * the coordinator signs that listing after parsing it with the same strict
 * parser the nodes use (a malformed listing is never signed). Only admins may
 * sign (P2P_METHOD_ADMIN: viewers and node certificates are refused by the
 * RPC layer before the handler runs), and every signature is logged.
 *
 * The first sign request makes the key on the thread pool; requests that
 * arrive meanwhile wait in a queue and are answered once the key is saved in
 * the vault, so a key that could be lost in a crash never signs anything.
 */
#include "deploy/release.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/util.h"
#include "deploy/package.h"
#include "p2p/p2p.h"
#include "vault/vault.h"

#define PRIV_NAME "release_signing_key"
#define PUB_NAME "release_public_key"
#define MAX_QUEUED 64

typedef struct waiting {
    p2p_call *call;
    json_t *params;
    struct waiting *next;
} waiting;

typedef struct release {
    p2p_ctx *ctx;
    vault *v;
    int coordinator;
    char *priv_pem; /* coordinator, once made */
    char *pub_pem;  /* the trusted public key (own or pinned) */
    uint8_t pub[32];
    char key_id[P2P_PKG_KEY_ID_LEN + 1];
    int generating;
    waiting *queue;
    size_t queued;
    int registered;
} release;

typedef struct keygen_job {
    uv_work_t w;
    release *rel;
    char *pem;
    int rc;
} keygen_job;

static release *get(p2p_ctx *ctx) { return p2p_shared_get(ctx, "deploy"); }

static int set_public(release *rel, char *pub_pem)
{
    uint8_t raw[32];
    if (p2p__pkg_pubkey_raw(pub_pem, raw) != 0) {
        free(pub_pem);
        return -EINVAL;
    }
    free(rel->pub_pem);
    rel->pub_pem = pub_pem;
    memcpy(rel->pub, raw, 32);
    p2p__pkg_key_id(raw, rel->key_id);
    return 0;
}

int p2p__release_trusted_key(p2p_ctx *ctx, uint8_t out[32])
{
    release *rel = get(ctx);
    if (!rel || !rel->pub_pem)
        return -ENOENT;
    memcpy(out, rel->pub, 32);
    return 0;
}

int p2p__release_learn_key(p2p_ctx *ctx, const char *pub_pem, char **err)
{
    release *rel = get(ctx);
    uint8_t raw[32];
    if (!rel || p2p__pkg_pubkey_raw(pub_pem, raw) != 0)
        return p2p__fail(err, -EINVAL, "not an Ed25519 public key");
    if (rel->pub_pem) {
        if (memcmp(raw, rel->pub, 32) == 0)
            return 0;
        char kid[P2P_PKG_KEY_ID_LEN + 1];
        p2p__pkg_key_id(raw, kid);
        return p2p__fail(err, -EPERM,
                         "the coordinator announces release key %s but this node trusts %s (pin the new key "
                         "with release_public_key_file to change it)",
                         kid, rel->key_id);
    }
    if (set_public(rel, p2p__xstrdup(pub_pem)) != 0)
        return p2p__fail(err, -EINVAL, "not an Ed25519 public key");
    vault_put(rel->v, "data", PUB_NAME, rel->pub_pem, strlen(rel->pub_pem));
    vault_save_async(rel->v, ctx->loop, NULL, NULL);
    p2p_log(ctx, P2P_LOG_INFO, "deploy", "learned the cluster release key %s from the coordinator", rel->key_id);
    return 0;
}

/* ---- deploy/sign ------------------------------------------------------------------ */

/* Signs the package.json in `params` (borrowed) and completes `call`. */
static void sign_now(release *rel, p2p_call *call, json_t *params)
{
    const char *text = json_string_value(json_object_get(params, "package"));
    size_t len = json_string_length(json_object_get(params, "package"));
    p2p_pkg_info info = {0};
    char *err = NULL, *sig = NULL;
    if (p2p__pkg_manifest_parse(text, len, &info, &err) != 0) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, err ? err : "invalid package.json", NULL);
    } else if (p2p__pkg_sign_manifest(rel->priv_pem, text, len, &sig, &err) != 0) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, err ? err : "signing failed", NULL);
    } else {
        p2p_log(rel->ctx, P2P_LOG_INFO, "deploy", "signed package %s %s (%s, %zu files) with release key %s",
                info.name, info.version, info.type, info.n_files, rel->key_id);
        p2p_call_reply(call, json_pack("{s:s, s:s, s:s, s:s, s:s}", "signature", sig, "key_id", rel->key_id,
                                       "public_key", rel->pub_pem, "name", info.name, "version", info.version));
    }
    free(sig);
    free(err);
    p2p__pkg_info_free(&info);
}

static void drain(release *rel, const char *fail)
{
    waiting *w = rel->queue;
    rel->queue = NULL;
    rel->queued = 0;
    while (w) {
        waiting *next = w->next;
        if (fail)
            p2p_call_error(w->call, P2P_RPC_INTERNAL_ERROR, fail, NULL);
        else
            sign_now(rel, w->call, w->params);
        json_decref(w->params);
        free(w);
        w = next;
    }
}

static void on_key_saved(int status, const char *err, void *arg)
{
    release *rel = arg;
    rel->generating = 0;
    if (status != 0) {
        p2p_log(rel->ctx, P2P_LOG_ERROR, "deploy", "cannot save the new release key: %s", err ? err : "?");
        vault_remove(rel->v, "keys", PRIV_NAME);
        vault_remove(rel->v, "data", PUB_NAME);
        p2p__pkg_secret_free(rel->priv_pem);
        rel->priv_pem = NULL;
        drain(rel, "cannot save the release key to the vault");
        return;
    }
    p2p_log(rel->ctx, P2P_LOG_INFO, "deploy", "made the cluster release key %s", rel->key_id);
    drain(rel, NULL);
}

static void keygen_work(uv_work_t *w)
{
    keygen_job *j = w->data;
    j->rc = p2p__pkg_keygen(&j->pem);
    OPENSSL_thread_stop(); /* this pool thread's OpenSSL state (see vault.c open_work) */
}

static void keygen_done(uv_work_t *w, int status)
{
    keygen_job *j = w->data;
    release *rel = j->rel;
    char *pub = NULL;
    if (status != 0 || j->rc != 0 || p2p__pkg_public_pem(j->pem, &pub) != 0 || set_public(rel, pub) != 0) {
        p2p__pkg_secret_free(j->pem);
        free(j);
        rel->generating = 0;
        drain(rel, "cannot make the release key");
        return;
    }
    rel->priv_pem = j->pem;
    free(j);
    vault_put(rel->v, "keys", PRIV_NAME, rel->priv_pem, strlen(rel->priv_pem));
    vault_put(rel->v, "data", PUB_NAME, rel->pub_pem, strlen(rel->pub_pem));
    if (vault_save_async(rel->v, rel->ctx->loop, on_key_saved, rel) != 0)
        on_key_saved(-EIO, "the vault cannot be saved now", rel);
}

static void m_sign(p2p_call *call, json_t *params, void *udata)
{
    release *rel = udata;
    json_t *pkg = json_object_get(params, "package");
    if (!json_is_object(params) || json_object_size(params) != 1 || !json_is_string(pkg)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {package: string (package.json)}",
                       NULL);
        return;
    }
    if (json_string_length(pkg) > P2P_PKG_MAX_MANIFEST) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "package.json is too large", NULL);
        return;
    }
    if (rel->priv_pem) {
        sign_now(rel, call, params);
        return;
    }
    if (rel->queued >= MAX_QUEUED) {
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, "too many signing requests while the key is being made", NULL);
        return;
    }
    waiting *w = p2p__xcalloc(1, sizeof(*w));
    w->call = call;
    w->params = json_incref(params);
    w->next = rel->queue;
    rel->queue = w;
    rel->queued++;
    if (rel->generating)
        return;
    keygen_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->rel = rel;
    rel->generating = 1;
    if (uv_queue_work(rel->ctx->loop, &j->w, keygen_work, keygen_done) != 0) {
        free(j);
        rel->generating = 0;
        drain(rel, "cannot queue the key generation");
    }
}

/* ---- deploy/release_key ----------------------------------------------------------------- */

static void m_release_key(p2p_call *call, json_t *params, void *udata)
{
    release *rel = udata;
    if (params && !(json_is_object(params) && json_object_size(params) == 0) &&
        !(json_is_array(params) && json_array_size(params) == 0)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected none", NULL);
        return;
    }
    if (!rel->pub_pem) {
        p2p_call_reply(call, json_pack("{s:s, s:n, s:n}", "alg", "ed25519", "key_id", "public_key"));
        return;
    }
    p2p_call_reply(call, json_pack("{s:s, s:s, s:s}", "alg", "ed25519", "key_id", rel->key_id, "public_key",
                                   rel->pub_pem));
}

static const p2p_method_desc sign_method = {
    "sign",
    "Signs a package's package.json (which lists the sha256 of every file) with the cluster release key "
    "(coordinator; the key is made on first use and never leaves the vault).",
    "{package: string}",
    P2P_METHOD_ADMIN,
    m_sign,
    NULL,
};

static const p2p_method_desc key_method = {
    "release_key",
    "The Ed25519 public key this node trusts for packages: {alg, key_id, public_key} (null before the first "
    "signature).",
    "none",
    P2P_METHOD_READONLY,
    m_release_key,
    NULL,
};

/* ---- component ------------------------------------------------------------------------- */

static int load_keys(release *rel, char **err)
{
    const p2p_config *cfg = &rel->ctx->cfg;
    if (rel->coordinator) {
        char *priv = vault_get_text(rel->v, "keys", PRIV_NAME), *pub = NULL;
        if (priv) {
            if (p2p__pkg_public_pem(priv, &pub) != 0 || set_public(rel, pub) != 0) {
                p2p__pkg_secret_free(priv);
                return p2p__fail(err, -EINVAL, "the vault's release key (keys/%s) is not an Ed25519 key",
                                 PRIV_NAME);
            }
            rel->priv_pem = priv;
        }
    }
    if (cfg->release_public_key_file && cfg->release_public_key_file[0]) {
        char *pem = NULL;
        size_t len = 0;
        int r = p2p__read_file(cfg->release_public_key_file, 64 * 1024, &pem, &len);
        if (r != 0)
            return p2p__fail(err, r, "release_public_key_file %s: %s", cfg->release_public_key_file, p2p_strerror(r));
        uint8_t raw[32];
        if (p2p__pkg_pubkey_raw(pem, raw) != 0) {
            free(pem);
            return p2p__fail(err, -EINVAL, "release_public_key_file %s: not an Ed25519 public key in PEM",
                             cfg->release_public_key_file);
        }
        if (rel->priv_pem && memcmp(raw, rel->pub, 32) != 0) {
            free(pem);
            return p2p__fail(err, -EINVAL,
                             "release_public_key_file %s is not the public half of this coordinator's release key",
                             cfg->release_public_key_file);
        }
        set_public(rel, pem);
    } else if (!rel->coordinator) {
        char *pem = vault_get_text(rel->v, "data", PUB_NAME); /* learned earlier */
        if (pem)
            set_public(rel, pem);
    }
    return 0;
}

static int release_start(p2p_component *c, char **err)
{
    release *rel = c->self;
    rel->v = p2p_shared_get(c->ctx, "vault");
    if (!rel->v)
        return p2p__fail(err, -EINVAL, "the vault is not open");
    rel->coordinator = c->ctx->cfg.coordinator_mode;
    int r = load_keys(rel, err);
    if (r != 0)
        return r;
    if (rel->registered)
        return 0;
    static const p2p_service_desc desc = {"deploy", P2P_VERSION, "Signed packages: the cluster release key", 1};
    r = p2p_service_register(c->ctx, &desc);
    p2p_method_desc d = key_method;
    d.udata = rel;
    if (r == 0)
        r = p2p_method_register(c->ctx, "deploy", &d);
    if (r == 0 && rel->coordinator) {
        d = sign_method;
        d.udata = rel;
        r = p2p_method_register(c->ctx, "deploy", &d);
    }
    if (r != 0)
        return p2p__fail(err, r, "cannot register the deploy service: %s", p2p_strerror(r));
    rel->registered = 1;
    return 0;
}

static void release_stop(p2p_component *c)
{
    release *rel = c->self;
    if (!rel->generating)
        drain(rel, "the node is stopping");
}

static const p2p_component_ops release_ops = {
    .name = "deploy",
    .deps = (const char *const[]){"security", NULL},
    .start = release_start,
    .stop = release_stop,
};

static void free_release(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    release *rel = arg;
    p2p__pkg_secret_free(rel->priv_pem);
    free(rel->pub_pem);
    free(rel);
}

int p2p__release_register(p2p_ctx *ctx)
{
    release *rel = p2p__xcalloc(1, sizeof(*rel));
    rel->ctx = ctx;
    if (!p2p__component_add(ctx, &release_ops, rel)) {
        free(rel);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "deploy", rel);
    p2p__ctx_on_shutdown(ctx, free_release, rel);
    return 0;
}
