/*
 * component.h — the "cache" component: builds the node's cache (cache.h) from
 * the config keys redis_enabled, redis_url, cache_l1_max_bytes,
 * cache_default_ttl and cache_redis_timeout_ms, shares it as the object
 * "cache" (p2p_shared_get(ctx, "cache") -> p2p_cache *, owned by the component,
 * NULL once it stopped) and reports its figures in GET /metrics under the
 * group "cache". Components that use the cache list "cache" in their deps.
 */
#ifndef P2P_CACHE_COMPONENT_H
#define P2P_CACHE_COMPONENT_H

#include "core/ctx.h"

/* Registers the component. Returns 0 or -EEXIST. */
int p2p__cache_register(p2p_ctx *ctx);

#endif
