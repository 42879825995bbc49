/*
 * registry.c — services, methods and their metrics.
 *
 * Lookup is on the hot path of every RPC, so methods live in an open-addressing
 * table (FNV-1a, linear probing, load factor at most 1/2) keyed by the full path;
 * the request's method string is hashed in place without copying.
 */
#include "rpc/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "core/util.h"

const uint64_t p2p__lat_bounds_us[P2P_LAT_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

p2p_registry *p2p__registry_new(void)
{
    p2p_registry *reg = p2p__xcalloc(1, sizeof(*reg));
    reg->cap = 64;
    reg->table = p2p__xcalloc(reg->cap, sizeof(*reg->table));
    return reg;
}

static void method_free(p2p_method *m)
{
    free(m->path);
    free(m->name);
    free(m->description);
    free(m->params);
    free(m);
}

static void service_free(p2p_service *s)
{
    for (size_t j = 0; j < s->n_methods; j++)
        method_free(s->methods[j]);
    free(s->methods);
    free(s->name);
    free(s->version);
    free(s->description);
    free(s);
}

void p2p__registry_free(p2p_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n_services; i++)
        service_free(reg->services[i]);
    for (size_t i = 0; i < reg->n_removed; i++)
        service_free(reg->removed[i]);
    free(reg->removed);
    free(reg->services);
    free(reg->table);
    free(reg);
}

static void table_insert(p2p_method **table, size_t cap, p2p_method *m)
{
    size_t i = fnv1a(m->path, strlen(m->path)) & (cap - 1);
    while (table[i])
        i = (i + 1) & (cap - 1);
    table[i] = m;
}

p2p_method *p2p__registry_find(p2p_registry *reg, const char *path, size_t len)
{
    size_t i = fnv1a(path, len) & (reg->cap - 1);
    for (p2p_method *m; (m = reg->table[i]) != NULL; i = (i + 1) & (reg->cap - 1))
        if (strncmp(m->path, path, len) == 0 && m->path[len] == '\0')
            return m;
    return NULL;
}

int p2p__registry_remove_service(p2p_registry *reg, const char *name)
{
    size_t idx = reg->n_services;
    for (size_t i = 0; i < reg->n_services; i++)
        if (strcmp(reg->services[i]->name, name) == 0)
            idx = i;
    if (idx == reg->n_services)
        return -ENOENT;
    p2p_service *s = reg->services[idx];
    memmove(&reg->services[idx], &reg->services[idx + 1], (reg->n_services - idx - 1) * sizeof(*reg->services));
    reg->n_services--;
    /* rebuild the lookup table without its methods (open addressing has no
     * cheap delete; removals are rare operator actions) */
    p2p_method **nt = p2p__xcalloc(reg->cap, sizeof(*nt));
    size_t count = 0;
    for (size_t i = 0; i < reg->cap; i++) {
        p2p_method *m = reg->table[i];
        if (m && m->service != s) {
            table_insert(nt, reg->cap, m);
            count++;
        }
    }
    free(reg->table);
    reg->table = nt;
    reg->count = count;
    s->status = "removed";
    reg->removed = p2p__xrealloc(reg->removed, (reg->n_removed + 1) * sizeof(*reg->removed));
    reg->removed[reg->n_removed++] = s;
    return 0;
}

p2p_service *p2p__registry_service(p2p_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->n_services; i++)
        if (strcmp(reg->services[i]->name, name) == 0)
            return reg->services[i];
    return NULL;
}

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return 0;
    return 1;
}

P2P_EXTERN int p2p_service_register(p2p_ctx *ctx, const p2p_service_desc *desc)
{
    p2p_registry *reg = ctx->registry;
    if (!desc || !valid_name(desc->name))
        return -EINVAL;
    if (p2p__registry_service(reg, desc->name))
        return -EEXIST;
    p2p_service *s = p2p__xcalloc(1, sizeof(*s));
    s->name = p2p__xstrdup(desc->name);
    s->version = p2p__xstrdup(desc->version ? desc->version : "0.0.0");
    s->description = p2p__xstrdup(desc->description ? desc->description : "");
    s->builtin = desc->builtin;
    s->status = "running";
    s->started_at_ms = p2p__wall_ms();
    reg->services = p2p__xrealloc(reg->services, (reg->n_services + 1) * sizeof(*reg->services));
    reg->services[reg->n_services++] = s;
    return 0;
}

P2P_EXTERN int p2p_method_register(p2p_ctx *ctx, const char *service, const p2p_method_desc *desc)
{
    p2p_registry *reg = ctx->registry;
    if (!desc || !desc->fn || !valid_name(desc->name))
        return -EINVAL;
    p2p_service *s = p2p__registry_service(reg, service);
    if (!s)
        return -ENOENT;
    char *path = p2p__xasprintf("%s/%s", service, desc->name);
    if (p2p__registry_find(reg, path, strlen(path))) {
        free(path);
        return -EEXIST;
    }
    if ((reg->count + 1) * 2 > reg->cap) {
        size_t ncap = reg->cap * 2;
        p2p_method **nt = p2p__xcalloc(ncap, sizeof(*nt));
        for (size_t i = 0; i < reg->cap; i++)
            if (reg->table[i])
                table_insert(nt, ncap, reg->table[i]);
        free(reg->table);
        reg->table = nt;
        reg->cap = ncap;
    }
    p2p_method *m = p2p__xcalloc(1, sizeof(*m));
    m->path = path;
    m->name = p2p__xstrdup(desc->name);
    m->description = p2p__xstrdup(desc->description ? desc->description : "");
    m->params = p2p__xstrdup(desc->params ? desc->params : "");
    m->flags = desc->flags;
    m->fn = desc->fn;
    m->udata = desc->udata;
    m->service = s;
    table_insert(reg->table, reg->cap, m);
    reg->count++;
    s->methods = p2p__xrealloc(s->methods, (s->n_methods + 1) * sizeof(*s->methods));
    s->methods[s->n_methods++] = m;
    return 0;
}

void p2p__method_stats_record(p2p_method_stats *st, uint64_t dur_us, int is_error)
{
    st->calls++;
    if (is_error)
        st->errors++;
    st->sum_us += dur_us;
    if (dur_us > st->max_us)
        st->max_us = dur_us;
    size_t b = 0;
    while (b < P2P_LAT_BUCKETS && dur_us > p2p__lat_bounds_us[b])
        b++;
    st->buckets[b]++;
}

double p2p__method_stats_quantile(const p2p_method_stats *st, double q)
{
    if (st->calls == 0)
        return 0;
    double rank = q * (double)st->calls;
    uint64_t seen = 0;
    for (size_t b = 0; b <= P2P_LAT_BUCKETS; b++) {
        if (st->buckets[b] == 0)
            continue;
        if ((double)(seen + st->buckets[b]) >= rank) {
            /* Interpolate linearly inside the bucket, capped by the observed max. */
            double lo = b == 0 ? 0 : (double)p2p__lat_bounds_us[b - 1];
            double hi = b < P2P_LAT_BUCKETS ? (double)p2p__lat_bounds_us[b] : (double)st->max_us;
            if (hi > (double)st->max_us)
                hi = (double)st->max_us;
            if (hi < lo)
                hi = lo;
            double frac = (rank - (double)seen) / (double)st->buckets[b];
            return lo + (hi - lo) * frac;
        }
        seen += st->buckets[b];
    }
    return (double)st->max_us;
}
