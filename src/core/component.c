/*
 * component.c — dependency ordering and lifecycle of a node's components.
 *
 * Ordering is Kahn's algorithm over the declared dependencies, picking among
 * ready components the earliest registered, so the start order is deterministic
 * and matches registration order whenever the dependencies allow. A component
 * left over when no component is ready sits on a cycle (or depends on one); we
 * name the cycle by walking unresolved dependencies from it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/util.h"

static const char *const state_names[] = {
    [P2P_COMP_NOT_INITIALIZED] = "NOT_INITIALIZED", [P2P_COMP_INITIALIZING] = "INITIALIZING",
    [P2P_COMP_RUNNING] = "RUNNING",                 [P2P_COMP_STOPPING] = "STOPPING",
    [P2P_COMP_STOPPED] = "STOPPED",                 [P2P_COMP_ERROR] = "ERROR",
};

const char *p2p__component_state_name(p2p_component_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "UNKNOWN";
}

p2p_component *p2p__component_find(p2p_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->n_components; i++)
        if (strcmp(ctx->components[i]->ops->name, name) == 0)
            return ctx->components[i];
    return NULL;
}

p2p_component *p2p__component_add(p2p_ctx *ctx, const p2p_component_ops *ops, void *self)
{
    if (p2p__component_find(ctx, ops->name))
        return NULL;
    p2p_component *c = p2p__xcalloc(1, sizeof(*c));
    c->ops = ops;
    c->ctx = ctx;
    c->self = self;
    c->state = P2P_COMP_NOT_INITIALIZED;
    ctx->components = p2p__xrealloc(ctx->components, (ctx->n_components + 1) * sizeof(*ctx->components));
    ctx->components[ctx->n_components++] = c;
    return c;
}

static size_t index_of(p2p_ctx *ctx, const char *name)
{
    for (size_t i = 0; i < ctx->n_components; i++)
        if (strcmp(ctx->components[i]->ops->name, name) == 0)
            return i;
    return (size_t)-1;
}

static char *describe_cycle(p2p_ctx *ctx, const unsigned char *placed, size_t start)
{
    /* Follow unplaced dependencies until a component repeats: that loop is a cycle. */
    size_t n = ctx->n_components;
    size_t *path = p2p__xcalloc(n + 1, sizeof(*path));
    size_t len = 0, cur = start, loop_at = 0;
    for (;;) {
        for (size_t i = 0; i < len; i++)
            if (path[i] == cur) {
                loop_at = i;
                goto found;
            }
        path[len++] = cur;
        const char *const *d = ctx->components[cur]->ops->deps;
        size_t next = (size_t)-1;
        for (; d && *d; d++) {
            size_t j = index_of(ctx, *d);
            if (j != (size_t)-1 && !placed[j]) {
                next = j;
                break;
            }
        }
        if (next == (size_t)-1 || len > n) { /* cannot happen for a real cycle */
            loop_at = 0;
            goto found;
        }
        cur = next;
    }
found:;
    size_t cap = 64;
    for (size_t i = loop_at; i < len; i++)
        cap += strlen(ctx->components[path[i]]->ops->name) + 4;
    char *msg = p2p__xmalloc(cap);
    strcpy(msg, "dependency cycle: ");
    for (size_t i = loop_at; i < len; i++) {
        strcat(msg, ctx->components[path[i]]->ops->name);
        strcat(msg, " -> ");
    }
    strcat(msg, ctx->components[path[loop_at]]->ops->name);
    free(path);
    return msg;
}

int p2p__components_order(p2p_ctx *ctx, p2p_component **order, char **err)
{
    size_t n = ctx->n_components;
    for (size_t i = 0; i < n; i++) {
        const char *const *d = ctx->components[i]->ops->deps;
        for (; d && *d; d++) {
            if (index_of(ctx, *d) == (size_t)-1) {
                *err = p2p__xasprintf("component '%s' depends on '%s', which is not registered",
                                      ctx->components[i]->ops->name, *d);
                return -ENOENT;
            }
        }
    }
    unsigned char *placed = p2p__xcalloc(n ? n : 1, 1);
    size_t count = 0;
    while (count < n) {
        size_t pick = (size_t)-1;
        for (size_t i = 0; i < n && pick == (size_t)-1; i++) {
            if (placed[i])
                continue;
            int ready = 1;
            for (const char *const *d = ctx->components[i]->ops->deps; d && *d; d++)
                if (!placed[index_of(ctx, *d)])
                    ready = 0;
            if (ready)
                pick = i;
        }
        if (pick == (size_t)-1) {
            size_t first = 0;
            while (placed[first])
                first++;
            *err = describe_cycle(ctx, placed, first);
            free(placed);
            return -ELOOP;
        }
        placed[pick] = 1;
        order[count++] = ctx->components[pick];
    }
    free(placed);
    return 0;
}

int p2p__components_start(p2p_ctx *ctx, char **err)
{
    size_t n = ctx->n_components;
    p2p_component **order = p2p__xcalloc(n ? n : 1, sizeof(*order));
    int r = p2p__components_order(ctx, order, err);
    if (r != 0) {
        free(order);
        return r;
    }
    free(ctx->started);
    ctx->started = p2p__xcalloc(n ? n : 1, sizeof(*ctx->started));
    ctx->n_started = 0;
    for (size_t i = 0; i < n; i++) {
        p2p_component *c = order[i];
        char *cerr = NULL;
        c->state = P2P_COMP_INITIALIZING;
        p2p_log(ctx, P2P_LOG_DEBUG, "core", "starting component %s", c->ops->name);
        r = c->ops->start ? c->ops->start(c, &cerr) : 0;
        if (r != 0) {
            c->state = P2P_COMP_ERROR;
            c->error_count++;
            free(c->last_error);
            c->last_error = cerr ? cerr : p2p__xstrdup(p2p_strerror(r));
            *err = p2p__xasprintf("component '%s' failed to start: %s", c->ops->name, c->last_error);
            free(order);
            p2p__components_stop(ctx);
            return r;
        }
        c->state = P2P_COMP_RUNNING;
        c->started_at_ms = p2p__wall_ms();
        ctx->started[ctx->n_started++] = c;
    }
    free(order);
    return 0;
}

void p2p__components_stop(p2p_ctx *ctx)
{
    while (ctx->n_started > 0) {
        p2p_component *c = ctx->started[--ctx->n_started];
        c->state = P2P_COMP_STOPPING;
        p2p_log(ctx, P2P_LOG_DEBUG, "core", "stopping component %s", c->ops->name);
        if (c->ops->stop)
            c->ops->stop(c);
        c->state = P2P_COMP_STOPPED;
    }
}
