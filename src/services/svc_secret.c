/*
 * svc_secret.c — a service's secrets in the node's vault
 * (include/p2p/service.h): entries "keys/service/<service>/<name>", so they
 * are encrypted at rest with the node's other keys and a service can only name
 * its own. A set is saved asynchronously (vault_save_async coalesces saves).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "services/internal.h"
#include "vault/vault.h"

#define SECRET_NAME_MAX 200

static int entry_name(p2p_svc *svc, const char *name, char *out, size_t n)
{
    if (!svc || !name || !*name || strlen(name) > SECRET_NAME_MAX)
        return -EINVAL;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return -EINVAL;
    int w = snprintf(out, n, "service/%s/%s", svc->man.name, name);
    return w > 0 && (size_t)w < n ? 0 : -EINVAL;
}

P2P_EXTERN int p2p_svc_secret_get(p2p_svc *svc, const char *name, char **value, size_t *len)
{
    char full[SECRET_NAME_MAX + 96];
    int r = entry_name(svc, name, full, sizeof full);
    if (r != 0 || !value || !len)
        return r ? r : -EINVAL;
    vault *v = p2p_shared_get(svc->ctx, "vault");
    if (!v)
        return -ENOTSUP;
    uint8_t *buf = NULL;
    size_t l = 0;
    r = vault_get(v, "keys", full, &buf, &l);
    if (r != 0)
        return r;
    *value = (char *)buf;
    *len = l;
    return 0;
}

static void saved(int status, const char *err, void *arg)
{
    p2p_ctx *ctx = arg;
    if (status != 0)
        p2p_log(ctx, P2P_LOG_ERROR, "services", "cannot save a service secret to the vault: %s", err ? err : "?");
}

P2P_EXTERN int p2p_svc_secret_set(p2p_svc *svc, const char *name, const void *value, size_t len)
{
    char full[SECRET_NAME_MAX + 96];
    int r = entry_name(svc, name, full, sizeof full);
    if (r != 0)
        return r;
    vault *v = p2p_shared_get(svc->ctx, "vault");
    if (!v)
        return -ENOTSUP;
    if ((r = vault_put(v, "keys", full, value, len)) != 0)
        return r;
    return vault_save_async(v, svc->ctx->loop, saved, svc->ctx);
}

P2P_EXTERN void p2p_svc_secret_free(char *value, size_t len)
{
    if (value)
        vault_secret_free(value, len + 1);
}
