/*
 * guard.c — the "security" component: secrets from the vault, request
 * identities, token issue and revocation, rate limits.
 *
 * Bootstrap (first start): the coordinator creates the token signing key (ECDSA
 * P-256) and the admin API key, stores both in the vault and shows the API key
 * once (log, and the admin_api_key_file when configured). A coordinator whose
 * vault still holds the old HS256 secret gets a signing key on start (logged)
 * and the secret is deleted: tokens signed with it are refused from then on.
 * Workers hold only the public key set. Every node keeps its deny list in the
 * vault (data/revoked_tokens), so a revoked token stays revoked after a restart;
 * auth/revsync.c keeps it in step with the coordinator's.
 */
#include "auth/guard.h"
#include "auth/http_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "vault/vault.h"


/* Verifying a JWT (an ECDSA verification, base64 and JSON twice) costs more than answering a cheap
 * RPC, and a client sends the same token on every request. Tokens that verified
 * are remembered (direct-mapped by hash, whole token compared on lookup) with their
 * claims; a hit still checks expiry and the revocation list, so caching never
 * extends what a token may do. */
#define TOKEN_CACHE_SLOTS 256
#define TOKEN_CACHE_MAX_LEN 1024

typedef struct token_cache_entry {
    char *token; /* NULL = empty */
    size_t len;
    p2p_role role;
    char subject[128];
    char jti[P2P_JWT_MAX_JTI + 1];
    char name[P2P_JWT_MAX_NAME + 1]; /* "" = none */
    int64_t exp;
} token_cache_entry;

struct p2p_guard {
    p2p_ctx *ctx;
    vault *v;
    char *signing_pem;    /* private key, coordinator only; NULL elsewhere */
    p2p_jwt_keyset *keys; /* public keys tokens may be signed with */
    int keys_wanted;      /* a token named an unknown kid */
    int64_t max_exp;      /* latest exp signed with signing_pem since start (for its retirement) */
    int rotating;         /* a rotation is being saved */
    char *admin_key; /* NULL on nodes without one (workers) */
    p2p_revoked *revoked;       /* jtis */
    p2p_revoked *revoked_certs; /* certificate fingerprints */
    uint64_t rev_version;
    json_t *pending; /* array of token strings revoked here, unconfirmed */
    p2p_ratelimit *rl;
    char **trusted; /* NULL-terminated */
    token_cache_entry cache[TOKEN_CACHE_SLOTS];
};

static size_t token_slot(const char *tok, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)tok[i]) * 1099511628211ull;
    return (size_t)(h % TOKEN_CACHE_SLOTS);
}

static void cache_clear(p2p_guard *g)
{
    for (size_t i = 0; i < TOKEN_CACHE_SLOTS; i++) {
        if (g->cache[i].token) {
            OPENSSL_cleanse(g->cache[i].token, g->cache[i].len);
            free(g->cache[i].token);
        }
        memset(&g->cache[i], 0, sizeof g->cache[i]);
    }
}

const char *p2p__role_name(p2p_role r)
{
    static const char *const names[] = {"none", "viewer", "admin", "node"};
    return (unsigned)r < 4 ? names[r] : "none";
}

static p2p_role role_from(const char *s)
{
    if (!s)
        return P2P_ROLE_NONE;
    if (strcmp(s, "admin") == 0)
        return P2P_ROLE_ADMIN;
    if (strcmp(s, "viewer") == 0)
        return P2P_ROLE_VIEWER;
    if (strcmp(s, "node") == 0)
        return P2P_ROLE_NODE;
    return P2P_ROLE_NONE;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* Writes the admin key to the configured file (0600, atomically) for scripts. */
static void write_admin_key_file(p2p_guard *g)
{
    const char *path = g->ctx->cfg.admin_api_key_file;
    if (!path || !*path)
        return;
    char *line = p2p__xasprintf("%s\n", g->admin_key);
    int r = p2p__write_file_atomic(path, line, strlen(line), 0600);
    OPENSSL_cleanse(line, strlen(line));
    free(line);
    if (r != 0)
        p2p_log(g->ctx, P2P_LOG_ERROR, "security", "cannot write admin_api_key_file %s: %s", path, p2p_strerror(r));
    else
        p2p_log(g->ctx, P2P_LOG_INFO, "security", "admin API key written to %s (mode 0600)", path);
}

/* The coordinator's signing key: from the vault, or made now. Making one is a
 * fraction of a millisecond for P-256 and happens once per cluster, before the
 * loop runs, so it stays on this thread. */
static int load_signing_key(p2p_guard *g, int *dirty, char **err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    char kid[P2P_JWT_KID_LEN + 1];
    if (vault_get(g->v, "keys", "jwt_signing_key", &buf, &len) == 0) {
        g->signing_pem = p2p__xmalloc(len + 1);
        memcpy(g->signing_pem, buf, len);
        g->signing_pem[len] = '\0';
        vault_secret_free(buf, len + 1);
        if (p2p_jwt_key_info(g->signing_pem, NULL, kid) != 0) {
            *err = p2p__xstrdup("the token signing key in the vault (keys/jwt_signing_key) is unreadable");
            return -EINVAL;
        }
    } else {
        int r = p2p_jwt_keygen(&g->signing_pem);
        if (r != 0) {
            *err = p2p__xasprintf("cannot make the token signing key: %s", p2p_strerror(r));
            return r;
        }
        p2p_jwt_key_info(g->signing_pem, NULL, kid);
        vault_put(g->v, "keys", "jwt_signing_key", g->signing_pem, strlen(g->signing_pem));
        *dirty = 1;
        int had_secret = vault_get(g->v, "keys", "jwt_secret", &buf, &len) == 0;
        if (had_secret) {
            vault_secret_free(buf, len + 1);
            vault_remove(g->v, "keys", "jwt_secret");
        }
        p2p_log(g->ctx, P2P_LOG_WARN, "security",
                "%s: new ES256 token signing key (kid %s) in the vault as keys/jwt_signing_key%s",
                had_secret ? "upgraded vault" : "new cluster", kid,
                had_secret ? "; the old HS256 secret is deleted and tokens signed with it are no longer accepted: "
                             "get new ones from POST /auth/token"
                           : "");
    }
    int r = p2p_jwt_keyset_add_pem(g->keys, g->signing_pem, NULL);
    if (r == -ENOSPC) { /* the stored set is full of old keys: the signing key's must be in it */
        p2p_jwt_keyset_free(g->keys);
        g->keys = p2p_jwt_keyset_new();
        r = p2p_jwt_keyset_add_pem(g->keys, g->signing_pem, NULL);
    }
    if (r != 0)
        *err = p2p__xstrdup("the token signing key does not load");
    return r;
}

static void save_keys(p2p_guard *g)
{
    json_t *doc = p2p_jwt_keyset_to_json(g->keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text)
        vault_put(g->v, "data", "jwt_public_keys", text, strlen(text));
    free(text);
}

static void load_revocations(p2p_guard *g)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    g->revoked = p2p_revoked_new(0, -1);
    g->revoked_certs = p2p_revoked_new(0, -1);
    g->pending = json_array();
    if (vault_get(g->v, "data", "revoked_tokens", &buf, &len) != 0)
        return;
    json_t *doc = json_loadb((const char *)buf, len, 0, NULL);
    vault_secret_free(buf, len + 1);
    json_t *ver = json_object_get(doc, "version"), *pend = json_object_get(doc, "pending");
    int ok;
    if (json_is_integer(json_object_get(doc, "format"))) {
        ok = json_integer_value(json_object_get(doc, "format")) == 2 && json_is_integer(ver) &&
             json_integer_value(ver) >= 0 && p2p_revoked_merge_json(g->revoked, json_object_get(doc, "jtis")) == 0 &&
             p2p_revoked_merge_json(g->revoked_certs, json_object_get(doc, "certs")) == 0;
        if (ok) {
            g->rev_version = (uint64_t)json_integer_value(ver);
            size_t i;
            json_t *t;
            json_array_foreach(pend, i, t)
            {
                if (json_is_string(t) && json_array_size(g->pending) < P2P_REVOKED_DEFAULT_MAX)
                    json_array_append(g->pending, t);
            }
        }
    } else {
        ok = p2p_revoked_from_json_v1(g->revoked, doc) == 0; /* before cluster-wide revocation */
    }
    if (!ok)
        p2p_log(g->ctx, P2P_LOG_ERROR, "security", "the revoked-token list in the vault is unreadable; ignored");
    json_decref(doc);
    p2p_revoked_purge(g->revoked, now_s());
    p2p_revoked_purge(g->revoked_certs, now_s());
}

static int load_secrets(p2p_guard *g, char **err)
{
    int dirty = 0, r;
    uint8_t *buf = NULL;
    size_t len = 0;

    g->keys = p2p_jwt_keyset_new();
    if (vault_get(g->v, "data", "jwt_public_keys", &buf, &len) == 0) {
        json_t *doc = json_loadb((const char *)buf, len, 0, NULL);
        vault_secret_free(buf, len + 1);
        buf = NULL;
        if (!doc || p2p_jwt_keyset_from_json(g->keys, doc) != 0)
            p2p_log(g->ctx, P2P_LOG_ERROR, "security", "the public token keys in the vault are unreadable; ignored");
        json_decref(doc);
    }
    if (g->ctx->cfg.coordinator_mode) {
        if ((r = load_signing_key(g, &dirty, err)) != 0)
            return r;
        save_keys(g);
    } else if (vault_get(g->v, "keys", "jwt_secret", &buf, &len) == 0) {
        /* a worker enrolled before tokens were ES256: the secret is of no use any more */
        vault_secret_free(buf, len + 1);
        buf = NULL;
        vault_remove(g->v, "keys", "jwt_secret");
        dirty = 1;
        p2p_log(g->ctx, P2P_LOG_INFO, "security", "deleted the old HS256 token secret from the vault");
    }
    if (p2p_jwt_keyset_prune(g->keys, now_s()) > 0) {
        save_keys(g);
        dirty = 1;
    }
    if (!g->ctx->cfg.coordinator_mode && p2p_jwt_keyset_count(g->keys) == 0)
        p2p_log(g->ctx, P2P_LOG_WARN, "security",
                "no public token keys yet: tokens are refused until they are fetched from the coordinator");

    if (g->ctx->cfg.coordinator_mode) {
        r = vault_get(g->v, "keys", "admin_api_key", &buf, &len);
        if (r == 0) {
            g->admin_key = p2p__xstrdup((char *)buf);
            vault_secret_free(buf, len + 1);
        } else {
            uint8_t raw[32];
            if (RAND_bytes(raw, sizeof raw) != 1) {
                *err = p2p__xstrdup("no randomness for the admin API key");
                return -EIO;
            }
            char enc[4 * ((sizeof raw + 2) / 3) + 1];
            p2p__b64url_encode(raw, sizeof raw, enc);
            OPENSSL_cleanse(raw, sizeof raw);
            g->admin_key = p2p__xasprintf("p2pa_%s", enc);
            OPENSSL_cleanse(enc, sizeof enc);
            vault_put(g->v, "keys", "admin_api_key", g->admin_key, strlen(g->admin_key));
            dirty = 1;
            p2p__log_local(g->ctx, P2P_LOG_WARN, "security",
                           "new cluster: admin API key (shown once; it is also in the vault as keys/admin_api_key): %s",
                    g->admin_key);
            write_admin_key_file(g);
        }
    }

    load_revocations(g);
    if (dirty && (r = vault_save(g->v, err)) != 0)
        return r;
    return 0;
}

static int parse_trusted(p2p_guard *g, char **err)
{
    const char *spec = g->ctx->cfg.trusted_proxies;
    size_t n = 0;
    g->trusted = p2p__xcalloc(1, sizeof(char *));
    if (!spec || !*spec)
        return 0;
    char *copy = p2p__xstrdup(spec), *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (p2p_ratelimit_proxy_valid(tok) != 0) { /* the config check refuses these already */
            *err = p2p__xasprintf("trusted_proxies: '%s' is not an IP address or CIDR", tok);
            free(copy);
            return -EINVAL;
        }
        g->trusted = p2p__xrealloc(g->trusted, (n + 2) * sizeof(char *));
        g->trusted[n++] = p2p__xstrdup(tok);
        g->trusted[n] = NULL;
    }
    free(copy);
    return 0;
}

static void guard_stop(p2p_component *c)
{
    p2p_guard *g = c->self;
    p2p__auth_http_stop(c->ctx);
    cache_clear(g);
    if (g->admin_key) {
        OPENSSL_cleanse(g->admin_key, strlen(g->admin_key));
        free(g->admin_key);
        g->admin_key = NULL;
    }
    p2p_jwt_pem_free(g->signing_pem);
    g->signing_pem = NULL;
    p2p_jwt_keyset_free(g->keys);
    g->keys = NULL;
    p2p_revoked_free(g->revoked);
    g->revoked = NULL;
    p2p_revoked_free(g->revoked_certs);
    g->revoked_certs = NULL;
    json_decref(g->pending);
    g->pending = NULL;
    p2p_ratelimit_free(g->rl);
    g->rl = NULL;
    for (size_t i = 0; g->trusted && g->trusted[i]; i++)
        free(g->trusted[i]);
    free(g->trusted);
    g->trusted = NULL;
}

int p2p__guard_limiter_new(const p2p_config *cfg, p2p_ratelimit **out, char **err)
{
    p2p_ratelimit_opts o;
    p2p_ratelimit_opts_default(&o);
    o.rates[P2P_RL_RPC] = (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_rpc_requests, (uint32_t)cfg->rate_limit_rpc_burst};
    o.rates[P2P_RL_HEALTH] =
        (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_health_requests, (uint32_t)cfg->rate_limit_health_burst};
    o.rates[P2P_RL_OTHER] =
        (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_default_requests, (uint32_t)cfg->rate_limit_default_burst};
    o.rates[P2P_RL_NODE_RPC] =
        (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_node_rpc_requests, (uint32_t)cfg->rate_limit_node_rpc_burst};
    o.rates[P2P_RL_NODE_OTHER] = (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_node_default_requests,
                                                      (uint32_t)cfg->rate_limit_node_default_burst};
    o.rates[P2P_RL_ENROLL_TOKEN] = (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_enroll_token_requests,
                                                        (uint32_t)cfg->rate_limit_enroll_token_burst};
    o.rates[P2P_RL_ENROLL_FAIL] = (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_enroll_failures,
                                                       (uint32_t)cfg->rate_limit_enroll_failures_burst};
    o.rates[P2P_RL_CA_CERT] =
        (p2p_ratelimit_rate){(uint32_t)cfg->rate_limit_ca_cert_requests, (uint32_t)cfg->rate_limit_ca_cert_burst};
    int r = p2p_ratelimit_new(&o, out);
    if (r != 0 && err)
        *err = p2p__xasprintf("rate limiter: %s%s", p2p_strerror(r),
                              r == -EINVAL ? " (a rate_limit_* value is out of range)" : "");
    return r;
}

void p2p__guard_limiter_swap(p2p_guard *g, p2p_ratelimit *rl)
{
    p2p_ratelimit_free(g->rl);
    g->rl = rl; /* buckets start full again: a new rate is a fresh start */
}

static int guard_start(p2p_component *c, char **err)
{
    p2p_guard *g = c->self;
    p2p_config *cfg = &c->ctx->cfg;
    g->v = p2p_shared_get(c->ctx, "vault");
    if (!g->v) {
        *err = p2p__xstrdup("the vault is not open");
        return -EINVAL;
    }
    int r = load_secrets(g, err);
    if (r == 0)
        r = parse_trusted(g, err);
    if (r == 0)
        r = p2p__guard_limiter_new(cfg, &g->rl, err);
    if (r == 0 && (r = p2p__auth_http_start(c->ctx, g)) != 0)
        *err = p2p__xasprintf("cannot add the security routes: %s", p2p_strerror(r));
    if (r != 0)
        guard_stop(c);
    return r;
}

static const p2p_component_ops guard_ops = {
    .name = "security",
    .deps = NULL,
    .start = guard_start,
    .stop = guard_stop,
};

static void free_guard(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    free(arg);
}

int p2p__guard_register(p2p_ctx *ctx)
{
    p2p_guard *g = p2p__xcalloc(1, sizeof(*g));
    g->ctx = ctx;
    if (!p2p__component_add(ctx, &guard_ops, g)) {
        free(g);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "security", g);
    p2p__ctx_on_shutdown(ctx, free_guard, g);
    return 0;
}

p2p_guard *p2p__guard(p2p_ctx *ctx)
{
    return p2p_shared_get(ctx, "security");
}

/* The bucket of a token: its name when it has one, else its jti; with the role,
 * so tokens of different roles never share a bucket. */
static void set_token_key(p2p_identity *id, const char *name, const char *jti)
{
    const char *role = p2p__role_name(id->role);
    if (name && *name)
        snprintf(id->rl_key, sizeof id->rl_key, "tok:%s:name:%s", role, name);
    else
        snprintf(id->rl_key, sizeof id->rl_key, "tok:%s:jti:%s", role, jti);
}

void p2p__guard_identify(p2p_guard *g, const char *peer_node, const char *authz, size_t authz_len,
                         const char *peer_ip, const char *xff, p2p_identity *id)
{
    memset(id, 0, sizeof(*id));
    if (!peer_ip || p2p_ratelimit_client_ip(peer_ip, xff, (const char *const *)g->trusted, id->client_ip,
                                            sizeof id->client_ip) != 0)
        snprintf(id->client_ip, sizeof id->client_ip, "%s", peer_ip ? peer_ip : "-");
    if (peer_node && *peer_node) {
        id->via_cert = 1;
        snprintf(id->peer_node, sizeof id->peer_node, "%s", peer_node);
        if (!authz) { /* the node itself */
            id->role = P2P_ROLE_NODE;
            snprintf(id->subject, sizeof id->subject, "%s", peer_node);
            snprintf(id->rl_key, sizeof id->rl_key, "node:%s", peer_node);
            return;
        }
        /* a node forwarding an operator's call: the operator's token decides
         * (and keys the bucket) */
    }
    if (!authz)
        return;
    const char *tok;
    size_t tlen;
    if (p2p_auth_parse_bearer(authz, authz_len, &tok, &tlen) != 0) {
        id->why = "Authorization is not a Bearer token";
        return;
    }
    int64_t now = now_s();
    token_cache_entry *e = &g->cache[token_slot(tok, tlen)];
    if (e->token && e->len == tlen && CRYPTO_memcmp(e->token, tok, tlen) == 0) {
        if (now >= e->exp + P2P_JWT_DEFAULT_LEEWAY_S) {
            id->why = "expired";
        } else if (p2p_revoked_contains(g->revoked, e->jti)) {
            id->why = "revoked";
        } else {
            id->role = e->role;
            memcpy(id->subject, e->subject, sizeof id->subject);
            set_token_key(id, e->name, e->jti);
        }
        return;
    }
    p2p_jwt_opts opts = {P2P_JWT_DEFAULT_LEEWAY_S, g->revoked};
    p2p_jwt_claims cl;
    const char *why = NULL;
    if (p2p_jwt_verify(g->keys, tok, tlen, now, &opts, &cl, &why) != 0) {
        if (why && !strcmp(why, "unknown key id"))
            g->keys_wanted = 1;
        id->why = why ? why : "invalid token";
        return;
    }
    id->role = role_from(cl.role);
    if (id->role == P2P_ROLE_NODE) { /* never issued any more; a node is its certificate */
        p2p_jwt_claims_free(&cl);
        id->role = P2P_ROLE_NONE;
        id->why = "invalid claim: role";
        return;
    }
    snprintf(id->subject, sizeof id->subject, "%s", cl.sub);
    set_token_key(id, cl.name, cl.jti);
    /* Only tokens without nbf are cached: their validity is a pure function of now <= exp. */
    if (tlen <= TOKEN_CACHE_MAX_LEN && !cl.has_nbf && strlen(cl.jti) <= P2P_JWT_MAX_JTI) {
        if (e->token) {
            OPENSSL_cleanse(e->token, e->len);
            free(e->token);
        }
        e->token = p2p__xmalloc(tlen);
        memcpy(e->token, tok, tlen);
        e->len = tlen;
        e->role = id->role;
        memcpy(e->subject, id->subject, sizeof e->subject);
        snprintf(e->jti, sizeof e->jti, "%s", cl.jti);
        snprintf(e->name, sizeof e->name, "%s", cl.name ? cl.name : "");
        e->exp = cl.exp;
    }
    p2p_jwt_claims_free(&cl);
}

/* The bucket of an identity: node certificates have their own classes (nodes call
 * each other's /rpc and push-pull); everyone else is keyed by token (role + name
 * or jti) or, without a valid token, by address. */
static int bucket_of(const p2p_identity *id, int cls, char *key, size_t n)
{
    if (cls == P2P_RL_CA_CERT) {
        snprintf(key, n, "*"); /* one bucket for everyone */
        return cls;
    }
    if (id->rl_key[0])
        snprintf(key, n, "%s", id->rl_key);
    else
        snprintf(key, n, "ip:%s", id->client_ip);
    if (id->via_cert)
        return cls == P2P_RL_RPC ? P2P_RL_NODE_RPC : P2P_RL_NODE_OTHER;
    return cls;
}

int p2p__guard_rate(p2p_guard *g, const p2p_identity *id, int cls, uint32_t *retry_after_s)
{
    if (retry_after_s)
        *retry_after_s = 0;
    if (!g->ctx->cfg.rate_limit_enabled || !g->rl)
        return 1;
    if (cls == P2P_RL_ENROLL_TOKEN || cls == P2P_RL_ENROLL_FAIL)
        return 1; /* the route meters it itself (p2p__guard_rate_key), once it knows the token and the outcome */
    char key[sizeof id->rl_key + 8];
    cls = bucket_of(id, cls, key, sizeof key);
    int r = p2p_ratelimit_take(g->rl, key, cls, 1, uv_now(g->ctx->loop), retry_after_s);
    return r != 0; /* errors fail open: a limiter fault must not lock everyone out */
}

int p2p__guard_rate_key(p2p_guard *g, const char *key, int cls, int peek, uint32_t *retry_after_s)
{
    if (retry_after_s)
        *retry_after_s = 0;
    if (!g || !g->ctx->cfg.rate_limit_enabled || !g->rl || !key || !*key)
        return 1;
    uint64_t now = uv_now(g->ctx->loop);
    int r = peek ? p2p_ratelimit_peek(g->rl, key, cls, 1, now, retry_after_s)
                 : p2p_ratelimit_take(g->rl, key, cls, 1, now, retry_after_s);
    return r != 0; /* errors fail open, as p2p__guard_rate */
}

int p2p__guard_rate_batch(p2p_guard *g, const p2p_identity *id, int cls, uint32_t calls, uint32_t *retry_after_s,
                          uint32_t *burst)
{
    if (retry_after_s)
        *retry_after_s = 0;
    if (!g->ctx->cfg.rate_limit_enabled || !g->rl || calls <= 1)
        return 1;
    char key[sizeof id->rl_key + 8];
    cls = bucket_of(id, cls, key, sizeof key);
    uint32_t b = p2p_ratelimit_burst(g->rl, cls);
    if (calls > b) {
        if (burst)
            *burst = b;
        return -E2BIG;
    }
    uint64_t now = uv_now(g->ctx->loop);
    int r = p2p_ratelimit_take(g->rl, key, cls, calls - 1, now, retry_after_s);
    if (r == 0) /* the retry pays its admission token again: wait for all `calls` (refused too, takes nothing) */
        p2p_ratelimit_take(g->rl, key, cls, calls, now, retry_after_s);
    return r != 0;
}

int p2p__guard_admin_key_ok(p2p_guard *g, const char *key, size_t len)
{
    if (!g->admin_key || !key)
        return 0;
    size_t n = strlen(g->admin_key);
    return len == n && CRYPTO_memcmp(key, g->admin_key, n) == 0;
}

int p2p__guard_can_sign(p2p_guard *g)
{
    return g->signing_pem != NULL;
}

int p2p__guard_issue(p2p_guard *g, const char *sub, const char *role, const char *name, int64_t ttl_s, char **token,
                     int64_t *exp)
{
    if (!g->signing_pem)
        return -EPERM;
    if (!role || (strcmp(role, "admin") != 0 && strcmp(role, "viewer") != 0))
        return -EINVAL;
    if (ttl_s <= 0)
        ttl_s = g->ctx->cfg.jwt_ttl;
    int64_t now = now_s();
    char *jti = NULL;
    int r = p2p_jwt_issue(g->signing_pem, sub, role, name, now, ttl_s, token, &jti);
    free(jti);
    if (r == 0 && now + ttl_s > g->max_exp)
        g->max_exp = now + ttl_s;
    if (r == 0 && exp)
        *exp = now + ttl_s;
    return r;
}

/* ---- public keys ---------------------------------------------------------- */

json_t *p2p__guard_keys_json(p2p_guard *g)
{
    return p2p_jwt_keyset_to_json(g->keys);
}

int p2p__guard_keys_wanted(p2p_guard *g)
{
    int w = g->keys_wanted;
    g->keys_wanted = 0;
    return w;
}

void p2p__guard_keys_tag(p2p_guard *g, char out[P2P_JWT_TAG_LEN + 1])
{
    p2p_jwt_keyset_tag(g->keys, out);
}

static void on_keys_saved(int status, const char *err, void *arg)
{
    p2p_guard *g = arg;
    if (status != 0)
        p2p_log(g->ctx, P2P_LOG_ERROR, "security", "saving the token keys to the vault failed: %s", err ? err : "?");
}

/* Stores the key set and saves the vault in the background. */
static void persist_keys(p2p_guard *g)
{
    save_keys(g);
    vault_save_async(g->v, g->ctx->loop, on_keys_saved, g);
}

/* 1 when some key of `a` is not in `b`. */
static int keys_dropped(const p2p_jwt_keyset *a, const p2p_jwt_keyset *b)
{
    json_t *doc = p2p_jwt_keyset_to_json(a), *k;
    size_t i;
    int gone = 0;
    json_array_foreach(json_object_get(doc, "keys"), i, k)
    {
        if (!p2p_jwt_keyset_has(b, json_string_value(json_object_get(k, "kid"))))
            gone = 1;
    }
    json_decref(doc);
    return gone;
}

int p2p__guard_set_keys_json(p2p_guard *g, const json_t *doc)
{
    if (!g->keys)
        return -EAGAIN;
    p2p_jwt_keyset *fresh = p2p_jwt_keyset_new();
    int r = p2p_jwt_keyset_from_json(fresh, doc);
    p2p_jwt_keyset_prune(fresh, now_s());
    if (r == 0 && p2p_jwt_keyset_count(fresh) == 0)
        r = -EINVAL; /* the coordinator always has its signing key in the set */
    char mine[P2P_JWT_TAG_LEN + 1], theirs[P2P_JWT_TAG_LEN + 1];
    p2p_jwt_keyset_tag(g->keys, mine);
    p2p_jwt_keyset_tag(fresh, theirs);
    if (r != 0 || strcmp(mine, theirs) == 0) {
        p2p_jwt_keyset_free(fresh);
        return r;
    }
    int dropped = keys_dropped(g->keys, fresh);
    p2p_jwt_keyset_free(g->keys);
    g->keys = fresh;
    if (dropped)
        cache_clear(g); /* remembered tokens of a dropped key must verify again (and fail) */
    persist_keys(g);
    p2p_log(g->ctx, P2P_LOG_INFO, "security", "token keys from the coordinator: %zu public key(s) (set %s)",
            p2p_jwt_keyset_count(g->keys), theirs);
    return 0;
}

size_t p2p__guard_prune_keys(p2p_guard *g)
{
    if (!g->keys)
        return 0;
    size_t n = p2p_jwt_keyset_prune(g->keys, now_s());
    if (n) {
        cache_clear(g);
        persist_keys(g);
        p2p_log(g->ctx, P2P_LOG_INFO, "security",
                "dropped %zu retired token key(s): every token they signed has expired; %zu key(s) left", n,
                p2p_jwt_keyset_count(g->keys));
    }
    return n;
}

/* ---- rotating the signing key (coordinator) ---------------------------------- */

typedef struct rotation {
    p2p_guard *g;
    char *new_pem, *old_pem; /* private keys */
    char *old_keys;          /* the public key set document before, to restore */
    p2p_jwt_keyset *fresh;   /* the set after */
    char new_kid[P2P_JWT_KID_LEN + 1], old_kid[P2P_JWT_KID_LEN + 1];
    int drop_old;
    int64_t retire_at;
    p2p_guard_rotate_cb cb;
    void *arg;
} rotation;

static void rotation_free(rotation *rot)
{
    p2p_jwt_pem_free(rot->new_pem);
    p2p_jwt_pem_free(rot->old_pem);
    free(rot->old_keys);
    p2p_jwt_keyset_free(rot->fresh);
    free(rot);
}

/* When the old key may go: once every token it signed has expired, with the
 * verifier's leeway. Tokens get at most jwt_ttl (the current value; a longer one
 * issued in this run is remembered in max_exp). */
static int64_t retire_time(p2p_guard *g)
{
    int64_t until = now_s() + g->ctx->cfg.jwt_ttl;
    if (g->max_exp > until)
        until = g->max_exp;
    until += P2P_JWT_DEFAULT_LEEWAY_S;
    return until > P2P_JWT_MAX_TIME ? P2P_JWT_MAX_TIME : until;
}

static void on_rotation_saved(int status, const char *err, void *arg)
{
    rotation *rot = arg;
    p2p_guard *g = rot->g;
    g->rotating = 0;
    if (status != 0 || !g->keys) {
        /* nothing changes: the vault gets the old key and set back (saved with the next save) */
        if (g->v && g->keys) {
            vault_put(g->v, "keys", "jwt_signing_key", rot->old_pem, strlen(rot->old_pem));
            vault_put(g->v, "data", "jwt_public_keys", rot->old_keys, strlen(rot->old_keys));
        }
        char *msg = p2p__xasprintf("the new signing key could not be saved: %s; nothing changed",
                                   err ? err : p2p_strerror(status ? status : -EAGAIN));
        p2p_log(g->ctx, P2P_LOG_ERROR, "security", "token key rotation failed: %s", msg);
        rot->cb(status ? status : -EAGAIN, NULL, msg, rot->arg);
        free(msg);
        rotation_free(rot);
        return;
    }
    /* tokens the old key signed while the vault was written may live a little longer */
    if (!rot->drop_old) {
        int64_t later = retire_time(g);
        if (later > rot->retire_at) {
            rot->retire_at = later;
            p2p_jwt_keyset_set_retire(rot->fresh, rot->old_kid, later);
        }
    }
    p2p_jwt_keyset_free(g->keys);
    g->keys = rot->fresh;
    rot->fresh = NULL;
    p2p_jwt_pem_free(g->signing_pem);
    g->signing_pem = rot->new_pem;
    rot->new_pem = NULL;
    g->max_exp = 0;
    cache_clear(g);
    save_keys(g); /* with the final retire_at; saved with the next save */
    vault_save_async(g->v, g->ctx->loop, on_keys_saved, g);
    if (rot->drop_old)
        p2p_log(g->ctx, P2P_LOG_WARN, "security",
                "token signing key rotated: new kid %s; the old key %s is dropped and every token it signed is refused "
                "from now on",
                rot->new_kid, rot->old_kid);
    else
        p2p_log(g->ctx, P2P_LOG_WARN, "security",
                "token signing key rotated: new kid %s; the old key %s verifies the tokens it signed until %lld "
                "(Unix time), then it is dropped",
                rot->new_kid, rot->old_kid, (long long)rot->retire_at);
    json_t *info = json_pack("{s:s, s:s, s:b, s:I}", "kid", rot->new_kid, "previous_kid", rot->old_kid, "dropped",
                             rot->drop_old, "keys", (json_int_t)p2p_jwt_keyset_count(g->keys));
    json_object_set_new(info, "previous_retire_at",
                        rot->drop_old ? json_null() : json_integer((json_int_t)rot->retire_at));
    rot->cb(0, info, NULL, rot->arg);
    json_decref(info);
    rotation_free(rot);
}

int p2p__guard_rotate(p2p_guard *g, char *new_pem, int drop_old, p2p_guard_rotate_cb cb, void *arg, const char **why)
{
    int r = 0;
    rotation *rot = p2p__xcalloc(1, sizeof(*rot));
    rot->g = g;
    rot->new_pem = new_pem;
    rot->drop_old = drop_old;
    rot->cb = cb;
    rot->arg = arg;
    if (!g->signing_pem || !g->keys) {
        *why = "only the coordinator holds the signing key";
        r = -EPERM;
        goto fail;
    }
    if (g->rotating) {
        *why = "a rotation is being saved: try again in a moment";
        r = -EBUSY;
        goto fail;
    }
    if (p2p_jwt_key_info(new_pem, NULL, rot->new_kid) != 0 || p2p_jwt_key_info(g->signing_pem, NULL, rot->old_kid)) {
        *why = "the new key is not a P-256 key";
        r = -EINVAL;
        goto fail;
    }
    /* the set after, built aside: a failure changes nothing */
    json_t *doc = p2p_jwt_keyset_to_json(g->keys);
    rot->old_keys = json_dumps(doc, JSON_COMPACT);
    rot->fresh = p2p_jwt_keyset_new();
    r = rot->old_keys ? p2p_jwt_keyset_from_json(rot->fresh, doc) : -ENOMEM;
    json_decref(doc);
    if (r != 0) {
        *why = "the current key set does not copy";
        goto fail;
    }
    p2p_jwt_keyset_prune(rot->fresh, now_s());
    rot->retire_at = retire_time(g);
    if (drop_old)
        p2p_jwt_keyset_remove(rot->fresh, rot->old_kid);
    else
        p2p_jwt_keyset_set_retire(rot->fresh, rot->old_kid, rot->retire_at);
    if ((r = p2p_jwt_keyset_add_pem(rot->fresh, new_pem, NULL)) != 0) {
        *why = r == -ENOSPC ? "the key set is full (16 keys): wait until a retired key's retire_at has passed, or "
                              "rotate with drop_old"
                            : "the new key does not load";
        goto fail;
    }
    rot->old_pem = p2p__xstrdup(g->signing_pem);
    json_t *after = p2p_jwt_keyset_to_json(rot->fresh);
    char *text = json_dumps(after, JSON_COMPACT);
    json_decref(after);
    vault_put(g->v, "keys", "jwt_signing_key", new_pem, strlen(new_pem));
    vault_put(g->v, "data", "jwt_public_keys", text, strlen(text));
    free(text);
    g->rotating = 1;
    if ((r = vault_save_async(g->v, g->ctx->loop, on_rotation_saved, rot)) != 0) {
        g->rotating = 0;
        vault_put(g->v, "keys", "jwt_signing_key", rot->old_pem, strlen(rot->old_pem));
        vault_put(g->v, "data", "jwt_public_keys", rot->old_keys, strlen(rot->old_keys));
        *why = "the vault cannot be saved";
        goto fail;
    }
    return 0;
fail:
    rotation_free(rot);
    return r;
}

/* ---- revocation ------------------------------------------------------------- */

typedef struct revoke_wait {
    p2p_guard *g;
    p2p_guard_done_cb done;
    void *arg;
} revoke_wait;

static void on_revoked_saved(int status, const char *err, void *arg)
{
    revoke_wait *w = arg;
    if (status != 0)
        p2p_log(w->g->ctx, P2P_LOG_ERROR, "security", "saving the revoked-token list failed: %s", err ? err : "?");
    if (w->done)
        w->done(status, w->arg);
    free(w);
}

static json_t *revocations_doc(p2p_guard *g, int64_t since, int with_pending)
{
    json_t *doc = json_pack("{s:i, s:I, s:o, s:o}", "format", 2, "version", (json_int_t)g->rev_version, "jtis",
                            p2p_revoked_to_json(g->revoked, since), "certs",
                            p2p_revoked_to_json(g->revoked_certs, since));
    if (doc && with_pending)
        json_object_set(doc, "pending", g->pending);
    return doc;
}

/* Puts the list in the vault and saves it in the background; `done` (may be
 * NULL) runs once it is on disk. */
static void save_revocations(p2p_guard *g, p2p_guard_done_cb done, void *arg)
{
    p2p_revoked_purge(g->revoked, now_s());
    p2p_revoked_purge(g->revoked_certs, now_s());
    json_t *doc = revocations_doc(g, -1, 1);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    vault_put(g->v, "data", "revoked_tokens", text, strlen(text));
    free(text);
    revoke_wait *w = p2p__xcalloc(1, sizeof(*w));
    *w = (revoke_wait){g, done, arg};
    int r = vault_save_async(g->v, g->ctx->loop, on_revoked_saved, w);
    if (r != 0) {
        free(w);
        if (done)
            done(r, arg);
    }
}

int p2p__guard_check_token(p2p_guard *g, const char *token, size_t len, char jti[P2P_GUARD_JTI_MAX + 1],
                           int64_t *exp, const char **why)
{
    p2p_jwt_claims cl;
    *why = NULL;
    p2p_jwt_opts opts = {P2P_JWT_DEFAULT_LEEWAY_S, NULL};
    if (p2p_jwt_verify(g->keys, token, len, now_s(), &opts, &cl, why) != 0) {
        if (*why && !strcmp(*why, "unknown key id"))
            g->keys_wanted = 1;
        return -EACCES;
    }
    snprintf(jti, P2P_GUARD_JTI_MAX + 1, "%s", cl.jti);
    /* the list keeps an entry until exp: one far in the future is kept "forever" */
    *exp = cl.exp > P2P_JWT_MAX_TIME ? P2P_JWT_MAX_TIME : cl.exp;
    p2p_jwt_claims_free(&cl);
    return 0;
}

int p2p__guard_revoke(p2p_guard *g, const char *token, size_t len, const char **why, uint64_t *seq_out,
                      p2p_guard_done_cb done, void *arg)
{
    char jti[P2P_GUARD_JTI_MAX + 1];
    int64_t exp = 0;
    if (p2p__guard_check_token(g, token, len, jti, &exp, why) != 0)
        return -EACCES;
    int64_t have = p2p_revoked_seq(g->revoked, jti);
    uint64_t seq = 0;
    int r = 0;
    if (g->signing_pem) { /* the coordinator: the authoritative list */
        seq = have > 0 ? (uint64_t)have : g->rev_version + 1;
        r = p2p_revoked_add(g->revoked, jti, exp, seq);
        if (r == 0 && seq > g->rev_version)
            g->rev_version = seq;
    } else {
        r = p2p_revoked_add(g->revoked, jti, exp, 0);
        if (r == 0 && have <= 0) { /* not confirmed yet: the coordinator must hear of it */
            int listed = 0;
            size_t i;
            json_t *t;
            json_array_foreach(g->pending, i, t)
            {
                if (json_string_length(t) == len && memcmp(json_string_value(t), token, len) == 0)
                    listed = 1;
            }
            if (!listed)
                json_array_append_new(g->pending, json_stringn(token, len));
        }
        seq = have > 0 ? (uint64_t)have : 0;
    }
    if (r != 0) {
        *why = r == -ENOSPC ? "revocation list full" : "cannot revoke";
        return r;
    }
    if (seq_out)
        *seq_out = seq;
    /* Answer only once the list is on disk: a crash after the answer must not bring
     * the token back. */
    save_revocations(g, done, arg);
    return 0;
}

static int fingerprint_valid(const char *fp)
{
    if (!fp || strlen(fp) != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((fp[i] >= '0' && fp[i] <= '9') || (fp[i] >= 'a' && fp[i] <= 'f')))
            return 0;
    return 1;
}

int p2p__guard_revoke_cert(p2p_guard *g, const char *fingerprint, int64_t exp, p2p_guard_done_cb done, void *arg)
{
    if (!fingerprint_valid(fingerprint) || exp < 0)
        return -EINVAL;
    if (exp > P2P_JWT_MAX_TIME)
        exp = P2P_JWT_MAX_TIME;
    int64_t have = p2p_revoked_seq(g->revoked_certs, fingerprint);
    uint64_t seq = g->signing_pem ? (have > 0 ? (uint64_t)have : g->rev_version + 1) : 0;
    int r = p2p_revoked_add(g->revoked_certs, fingerprint, exp, seq);
    if (r != 0)
        return r;
    if (seq > g->rev_version)
        g->rev_version = seq;
    save_revocations(g, done, arg);
    return 0;
}

int p2p__guard_cert_revoked(p2p_guard *g, const char *fingerprint)
{
    return g && g->revoked_certs && p2p_revoked_contains(g->revoked_certs, fingerprint);
}

uint64_t p2p__guard_revocation_version(p2p_guard *g)
{
    return g->rev_version;
}

json_t *p2p__guard_revocations_json(p2p_guard *g, uint64_t since)
{
    return revocations_doc(g, since > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)since, 0);
}

int p2p__guard_apply_revocations(p2p_guard *g, const json_t *doc)
{
    json_t *ver = json_object_get(doc, "version"), *jtis = json_object_get(doc, "jtis"),
           *certs = json_object_get(doc, "certs"), *fmt = json_object_get(doc, "format");
    if (!json_is_object(doc) || !json_is_integer(fmt) || json_integer_value(fmt) != 2 || !json_is_integer(ver) ||
        json_integer_value(ver) < 0 || !json_is_object(jtis) || !json_is_object(certs))
        return -EINVAL;
    /* validate both maps before changing either */
    p2p_revoked *probe = p2p_revoked_new(0, -1);
    int r = p2p_revoked_merge_json(probe, jtis);
    if (r == 0)
        r = p2p_revoked_merge_json(probe, certs);
    p2p_revoked_free(probe);
    if (r != 0)
        return r;
    if ((r = p2p_revoked_merge_json(g->revoked, jtis)) != 0 || (r = p2p_revoked_merge_json(g->revoked_certs, certs)))
        return r;
    g->rev_version = (uint64_t)json_integer_value(ver);
    /* pending tokens the coordinator now lists are confirmed */
    for (size_t i = json_array_size(g->pending); i-- > 0;) {
        json_t *t = json_array_get(g->pending, i);
        char jti[P2P_GUARD_JTI_MAX + 1];
        int64_t exp;
        const char *why;
        if (p2p__guard_check_token(g, json_string_value(t), json_string_length(t), jti, &exp, &why) != 0 ||
            p2p_revoked_seq(g->revoked, jti) > 0)
            json_array_remove(g->pending, i); /* confirmed, or expired: nothing left to tell */
    }
    cache_clear(g); /* not needed for correctness (hits check the list); frees memory of revoked tokens */
    save_revocations(g, NULL, NULL);
    return 0;
}

const json_t *p2p__guard_pending(p2p_guard *g)
{
    return g->pending;
}
