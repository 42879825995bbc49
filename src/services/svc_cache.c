/*
 * svc_cache.c — the cache as services see it (include/p2p/service.h): the
 * node's cache (src/cache/cache.h) with the service's name as its namespace.
 *
 * A read or a load in progress counts as work of the instance that asked
 * (inst->works), so a retired version is not freed while the cache still owes
 * it an answer; its callback then still runs, with the instance it asked from.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "core/util.h"
#include "services/internal.h"

static p2p_cache *cache_of(p2p_svc *svc)
{
    return svc ? p2p_shared_get(svc->ctx, "cache") : NULL;
}

typedef struct get_req {
    p2p_svc *svc;
    p2p_svc_cache_cb cb;
    void *udata;
    p2p_svc_cache_loader loader;
    void *loader_udata;
} get_req;

static void got(int status, const void *value, size_t len, void *udata)
{
    get_req *g = udata;
    p2p_svc *svc = g->svc;
    g->cb(svc, status, value, len, g->udata);
    free(g);
    svc->works--;
    p2p__svc_instance_maybe_free(svc);
}

P2P_EXTERN int p2p_svc_cache_get(p2p_svc *svc, const char *key, p2p_svc_cache_cb cb, void *udata)
{
    p2p_cache *c = cache_of(svc);
    if (!c)
        return -ENOTSUP;
    if (!cb)
        return -EINVAL;
    get_req *g = p2p__xcalloc(1, sizeof(*g));
    g->svc = svc;
    g->cb = cb;
    g->udata = udata;
    svc->works++;
    int r = p2p__cache_get(c, svc->man.name, key, got, g);
    if (r != 0) {
        svc->works--;
        free(g);
    }
    return r;
}

P2P_EXTERN int p2p_svc_cache_set(p2p_svc *svc, const char *key, const void *value, size_t len, uint64_t ttl_ms)
{
    p2p_cache *c = cache_of(svc);
    return c ? p2p__cache_set(c, svc->man.name, key, value, len, ttl_ms, NULL, NULL) : -ENOTSUP;
}

P2P_EXTERN int p2p_svc_cache_del(p2p_svc *svc, const char *key)
{
    p2p_cache *c = cache_of(svc);
    return c ? p2p__cache_del(c, svc->man.name, key, NULL, NULL) : -ENOTSUP;
}

struct p2p_svc_cache_fill {
    p2p_cache_fill *fill;
};

static void run_loader(p2p_cache_fill *fill, const char *ns, const char *key, void *udata)
{
    (void)ns;
    get_req *g = udata;
    p2p_svc_cache_fill *f = p2p__xcalloc(1, sizeof(*f));
    f->fill = fill;
    g->loader(g->svc, key, f, g->loader_udata);
}

P2P_EXTERN int p2p_svc_cache_get_or_load(p2p_svc *svc, const char *key, p2p_svc_cache_loader loader,
                                         void *loader_udata, p2p_svc_cache_cb cb, void *udata)
{
    p2p_cache *c = cache_of(svc);
    if (!c)
        return -ENOTSUP;
    if (!cb || !loader)
        return -EINVAL;
    get_req *g = p2p__xcalloc(1, sizeof(*g));
    g->svc = svc;
    g->cb = cb;
    g->udata = udata;
    g->loader = loader;
    g->loader_udata = loader_udata;
    svc->works++;
    /* the loader's udata is this request: it lives until `got` runs, which is
     * after the loader completed or timed out */
    int r = p2p__cache_get_or_load(c, svc->man.name, key, run_loader, g, got, g);
    if (r != 0) {
        svc->works--;
        free(g);
    }
    return r;
}

P2P_EXTERN void p2p_svc_cache_fill_done(p2p_svc_cache_fill *fill, const void *value, size_t len, uint64_t ttl_ms)
{
    if (!fill)
        return;
    p2p__cache_fill_done(fill->fill, value, len, ttl_ms);
    free(fill);
}

P2P_EXTERN void p2p_svc_cache_fill_fail(p2p_svc_cache_fill *fill, int err)
{
    if (!fill)
        return;
    p2p__cache_fill_fail(fill->fill, err < 0 ? err : -EIO);
    free(fill);
}
