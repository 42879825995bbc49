/*
 * runconfig.c — system/get_config and system/update_config: the node's effective
 * config, and changes to a whitelist of keys at run time, persisted in the vault
 * (config/overrides, a JSON object of key -> value text) and applied again at
 * the next start over the YAML file and the flags.
 *
 * An update is all-or-nothing: the whole effective config plus the changes is
 * rebuilt and validated (types, ranges, cross-key rules such as interval_min <=
 * interval_max) on a scratch copy first; then the component settings that
 * cache the config are built from the scratch copy (the new rate limiter).
 * Any failure so far answers an error and changes nothing. Only then are the
 * live config and the new settings swapped in, and only then is the change
 * stored; the answer comes once the vault is on disk. So nothing is ever
 * persisted that the running node could not apply.
 *
 * At start the stored overrides go through the same steps. One that cannot
 * apply (an unreadable document, a value out of range, a component refusing
 * it) stops the node with exit status 2 and a message naming the key and the
 * remedy (`p2p vault rm config/overrides`), never a component that fails to
 * start later.
 */
#include "builtin/runconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/config.h"
#include "core/util.h"
#include "vault/vault.h"

/* Keys that make sense to change while the node runs. Listening addresses, TLS,
 * identity and paths need a restart and are refused. */
static const char *const whitelist[] = {
    "log_level",
    "access_log",
    "jwt_ttl",
    "cert_renew_before",
    "shutdown_grace_period",
    "rate_limit_enabled",
    "rate_limit_rpc_requests",
    "rate_limit_rpc_burst",
    "rate_limit_health_requests",
    "rate_limit_health_burst",
    "rate_limit_default_requests",
    "rate_limit_default_burst",
    "rate_limit_node_rpc_requests",
    "rate_limit_node_rpc_burst",
    "rate_limit_node_default_requests",
    "rate_limit_node_default_burst",
    "rate_limit_enroll_token_requests",
    "rate_limit_enroll_token_burst",
    "rate_limit_enroll_failures",
    "rate_limit_enroll_failures_burst",
    "rate_limit_ca_cert_requests",
    "rate_limit_ca_cert_burst",
    "gossip_interval_min",
    "gossip_interval_max",
    "gossip_compression_enabled",
    "gossip_compression_threshold",
    "max_log_entries",
    "metrics_retention_count",
    "metrics_cleanup_interval",
    "reporter_enabled",
    "reporter_interval_min",
    "reporter_interval_max",
};

static int allowed(const char *key)
{
    for (size_t i = 0; i < sizeof whitelist / sizeof whitelist[0]; i++)
        if (strcmp(whitelist[i], key) == 0)
            return 1;
    return 0;
}

/* A JSON scalar as config text: "debug", 100, true. NULL for other types. */
static char *value_text(json_t *v)
{
    if (json_is_string(v))
        return p2p__xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return p2p__xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_boolean(v))
        return p2p__xstrdup(json_is_true(v) ? "true" : "false");
    return NULL;
}

/* `changes` as config text: JSON is YAML, so the config file's own loader checks
 * it, with its messages ("update_config:1: key 'K': ..."). */
static char *changes_text(json_t *changes)
{
    return json_dumps(changes, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Validates `changes` against the live config: on success *scratch holds the
 * whole config as it would be (the caller frees it). Returns 0, or -EINVAL
 * with *err. */
static int validate(p2p_ctx *ctx, json_t *changes, p2p_config *scratch, char **err)
{
    const char *key;
    json_t *v;
    p2p_config_defaults(scratch, ctx->cfg.coordinator_mode);
    json_object_foreach(changes, key, v)
    {
        if (!json_is_string(v) && !json_is_integer(v) && !json_is_boolean(v)) {
            p2p_config_free(scratch);
            return p2p__fail(err, -EINVAL, "key '%s': the value must be a string, a number or a boolean", key);
        }
    }
    char *yaml = p2p_config_to_yaml(&ctx->cfg), *text = changes_text(changes);
    int r = yaml ? p2p_config_load_buffer(scratch, "effective config", yaml, strlen(yaml), err) : -ENOMEM;
    if (r == 0)
        r = p2p_config_load_buffer(scratch, "update_config", text, strlen(text), err);
    if (r == 0)
        r = p2p_config_finalize(scratch, err);
    if (r != 0)
        p2p_config_free(scratch);
    free(yaml);
    free(text);
    return r;
}

static int touches_limits(json_t *changes)
{
    const char *key;
    json_t *v;
    json_object_foreach(changes, key, v)
    {
        if (strncmp(key, "rate_limit_", 11) == 0)
            return 1;
    }
    return 0;
}

/* Builds what the running components need for `scratch` (today: the rate
 * limiter, when a rate_limit_* key changes). Returns 0 with *rl (or NULL when
 * nothing changes), or an error with *err; nothing live is touched. */
static int prepare(json_t *changes, const p2p_config *scratch, p2p_ratelimit **rl, char **err)
{
    *rl = NULL;
    if (!touches_limits(changes))
        return 0;
    return p2p__guard_limiter_new(scratch, rl, err);
}

/* Swaps validated and prepared changes into the live config and components.
 * Cannot fail: everything that could was done by validate() and prepare(). */
static void apply(p2p_ctx *ctx, json_t *changes, p2p_ratelimit *rl)
{
    char *text = changes_text(changes), *err = NULL;
    if (p2p_config_load_buffer(&ctx->cfg, "update_config", text, strlen(text), &err) != 0) /* validated */
        p2p_log(ctx, P2P_LOG_ERROR, "config", "%s", err);
    free(err);
    free(text);
    p2p__log_level_parse(ctx->cfg.log_level, &ctx->log_level);
    p2p_guard *g = p2p__guard(ctx);
    if (rl && g)
        p2p__guard_limiter_swap(g, rl);
    else
        p2p_ratelimit_free(rl); /* at start: the security component builds its own from the config */
}

/* The stored overrides: 0 with a new object (empty when none are stored), or
 * -EINVAL when the entry is there but is not a JSON object. */
static int read_overrides(vault *v, json_t **out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    if (!v || vault_get(v, "config", "overrides", &buf, &len) != 0) {
        *out = json_object();
        return 0;
    }
    doc = json_loadb((const char *)buf, len, 0, NULL);
    vault_secret_free(buf, len + 1);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return -EINVAL;
    }
    *out = doc;
    return 0;
}

static json_t *load_overrides(vault *v)
{
    json_t *doc = NULL;
    if (read_overrides(v, &doc) != 0)
        doc = json_object();
    return doc;
}

#define OVERRIDES_REMEDY                                                                                              \
    "remove the stored overrides with `p2p vault rm config/overrides --data-dir %s` (or fix the entry with "       \
    "`p2p vault put config/overrides`) and start again"

int p2p__runconfig_apply_stored(p2p_ctx *ctx, char **err)
{
    json_t *doc = NULL;
    if (read_overrides(p2p_shared_get(ctx, "vault"), &doc) != 0)
        return p2p__fail(err, -EINVAL,
                         "the config overrides stored in the vault (config/overrides) are not a JSON object; " OVERRIDES_REMEDY,
                         ctx->cfg.state_directory);
    const char *key;
    json_t *v;
    json_t *ok = json_object();
    json_object_foreach(doc, key, v)
    {
        if (allowed(key))
            json_object_set(ok, key, v);
        else
            p2p_log(ctx, P2P_LOG_WARN, "config", "ignoring stored override of '%s' (not changeable at run time)", key);
    }
    char *why = NULL;
    int r = 0;
    p2p_config scratch;
    p2p_ratelimit *rl = NULL;
    if (json_object_size(ok) == 0)
        goto out;
    if ((r = validate(ctx, ok, &scratch, &why)) == 0) {
        r = prepare(ok, &scratch, &rl, &why);
        p2p_config_free(&scratch);
    }
    if (r != 0) {
        p2p__fail(err, r, "a config override stored in the vault by system/update_config cannot apply: %s; " OVERRIDES_REMEDY,
                  why ? why : p2p_strerror(r), ctx->cfg.state_directory);
        goto out;
    }
    apply(ctx, ok, rl);
    json_object_foreach(ok, key, v)
    {
        char *text = value_text(v);
        p2p_log(ctx, P2P_LOG_INFO, "config", "%s = %s (set by system/update_config, stored in the vault)", key, text);
        free(text);
    }
out:
    free(why);
    json_decref(ok);
    json_decref(doc);
    return r;
}

void p2p__runconfig_get(p2p_call *call, json_t *params, void *udata)
{
    p2p_ctx *ctx = p2p_call_ctx(call);
    json_t *out = json_object();
    json_object_set_new(out, "config", p2p_config_to_json(&ctx->cfg));
    json_t *keys = json_array();
    for (size_t i = 0; i < sizeof whitelist / sizeof whitelist[0]; i++)
        json_array_append_new(keys, json_string(whitelist[i]));
    json_object_set_new(out, "updatable", keys);
    json_object_set_new(out, "overrides", load_overrides(p2p_shared_get(ctx, "vault")));
    p2p_call_reply(call, out);
}

typedef struct update_wait {
    p2p_call *call;
    json_t *result;
} update_wait;

static void on_saved(int status, const char *err, void *arg)
{
    update_wait *w = arg;
    if (status != 0) {
        json_decref(w->result);
        p2p_call_error(w->call, P2P_RPC_INTERNAL_ERROR, "applied, but the vault could not be saved", NULL);
    } else {
        p2p_call_reply(w->call, w->result);
    }
    free(w);
}

void p2p__runconfig_update(p2p_call *call, json_t *params, void *udata)
{
    p2p_ctx *ctx = p2p_call_ctx(call);
    json_t *changes = json_is_object(params) ? json_object_get(params, "config") : NULL;
    if (!changes && json_is_object(params))
        changes = params; /* {"log_level": "debug"} as well as {"config": {...}} */
    if (!json_is_object(changes) || json_object_size(changes) == 0) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {key: value, ...}", NULL);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(changes, key, v)
    {
        if (!allowed(key)) {
            char *msg = p2p__xasprintf("Invalid params: '%s' cannot be changed at run time (see system/get_config "
                                       "\"updatable\")",
                                       key);
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
            free(msg);
            return;
        }
    }
    char *err = NULL;
    p2p_config scratch;
    p2p_ratelimit *rl = NULL;
    int r = validate(ctx, changes, &scratch, &err);
    if (r == 0) {
        r = prepare(changes, &scratch, &rl, &err);
        p2p_config_free(&scratch);
    }
    if (r != 0) {
        char *msg = p2p__xasprintf("Invalid params: %s; nothing was changed", err ? err : p2p_strerror(r));
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
        free(msg);
        free(err);
        return;
    }
    apply(ctx, changes, rl);
    vault *vt = p2p_shared_get(ctx, "vault");
    json_t *stored = load_overrides(vt);
    json_object_update(stored, changes);
    char *text = json_dumps(stored, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(stored);
    json_object_foreach(changes, key, v)
    {
        char *t = value_text(v);
        p2p_log(ctx, P2P_LOG_INFO, "config", "%s set to %s by system/update_config", key, t);
        free(t);
    }
    update_wait *w = p2p__xcalloc(1, sizeof(*w));
    w->call = call;
    w->result = json_pack("{s:O, s:b}", "updated", changes, "persisted", 1);
    if (!vt || vault_put(vt, "config", "overrides", text, strlen(text)) != 0 ||
        vault_save_async(vt, ctx->loop, on_saved, w) != 0)
        on_saved(-EIO, NULL, w);
    free(text);
}
