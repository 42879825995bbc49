/*
 * routes.c — the route table the components fill (see routes.h), its lookup,
 * the admission hook and the hold of a request answered later.
 *
 * The table is a small array searched linearly: a node has a few dozen routes,
 * and a lookup compares path bytes only. Entries are heap records so that the
 * server can copy the one it found before calling its handler: a handler may
 * add or remove routes (the services manager does, on a reload) without pulling
 * the entry it runs from under itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "http/internal.h"
#include "http/routes.h"

#define ROUTES_SHARED "http.routes"

struct http_route_table {
    http_route **v;
    size_t n;
    p2p_http_admit_fn admit;
    void *admit_arg;
    size_t caller_size;
    size_t (*busy)(const p2p_ctx *ctx);
};

static void free_route(http_route *r)
{
    if (!r)
        return;
    free(r->method);
    free(r->path);
    free(r->owner);
    free(r);
}

static void free_table(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    http_route_table *t = arg;
    for (size_t i = 0; i < t->n; i++)
        free_route(t->v[i]);
    free(t->v);
    free(t);
}

http_route_table *p2p__http_routes(p2p_ctx *ctx)
{
    http_route_table *t = p2p_shared_get(ctx, ROUTES_SHARED);
    if (!t) {
        t = p2p__xcalloc(1, sizeof(*t));
        p2p_shared_set(ctx, ROUTES_SHARED, t);
        p2p__ctx_on_shutdown(ctx, free_table, t);
    }
    return t;
}

static int method_valid(const char *m)
{
    size_t n = m ? strlen(m) : 0;
    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return 0;
    return 1;
}

static int path_valid(const char *p, p2p_http_match match)
{
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > 1024 || p[0] != '/')
        return 0;
    if (match == P2P_HTTP_PREFIX && p[n - 1] != '/')
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f || p[i] == '?' || p[i] == '#')
            return 0;
    return 1;
}

static ssize_t index_of(const http_route_table *t, const char *method, const char *path, p2p_http_match match)
{
    for (size_t i = 0; i < t->n; i++) {
        const http_route *r = t->v[i];
        if (r->match == match && strcmp(r->method, method) == 0 && strcmp(r->path, path) == 0)
            return (ssize_t)i;
    }
    return -1;
}

int p2p__http_route_add(p2p_ctx *ctx, const p2p_http_route_desc *d)
{
    if (!d || !d->fn || !method_valid(d->method) || !path_valid(d->path, d->match) ||
        (d->match != P2P_HTTP_EXACT && d->match != P2P_HTTP_PREFIX) || d->auth < P2P_HTTP_OPEN ||
        d->auth > P2P_HTTP_ADMIN)
        return -EINVAL;
    http_route_table *t = p2p__http_routes(ctx);
    if (index_of(t, d->method, d->path, d->match) >= 0)
        return -EEXIST;
    http_route *r = p2p__xcalloc(1, sizeof(*r));
    r->method = p2p__xstrdup(d->method);
    r->path = p2p__xstrdup(d->path);
    r->path_len = strlen(d->path);
    r->owner = p2p__xstrdup(d->owner ? d->owner : "");
    r->match = d->match;
    r->auth = d->auth;
    r->rl_class = d->rl_class;
    r->fn = d->fn;
    r->udata = d->udata;
    t->v = p2p__xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->v[t->n++] = r;
    return 0;
}

static void remove_at(http_route_table *t, size_t i)
{
    free_route(t->v[i]);
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
    t->n--;
}

int p2p__http_route_remove(p2p_ctx *ctx, const char *method, const char *path, p2p_http_match match)
{
    http_route_table *t = p2p_shared_get(ctx, ROUTES_SHARED);
    ssize_t i = t && method && path ? index_of(t, method, path, match) : -1;
    if (i < 0)
        return -ENOENT;
    remove_at(t, (size_t)i);
    return 0;
}

void p2p__http_routes_remove_owner(p2p_ctx *ctx, const char *owner)
{
    http_route_table *t = p2p_shared_get(ctx, ROUTES_SHARED);
    for (size_t i = 0; t && owner && i < t->n;) {
        if (strcmp(t->v[i]->owner, owner) == 0)
            remove_at(t, i);
        else
            i++;
    }
}

static const char *const auth_names[] = {"open", "self", "node", "any", "admin"};

const char *p2p__http_auth_name(p2p_http_auth a)
{
    return a >= P2P_HTTP_OPEN && a <= P2P_HTTP_ADMIN ? auth_names[a] : "?";
}

json_t *p2p__http_routes_json(p2p_ctx *ctx)
{
    http_route_table *t = p2p__http_routes(ctx);
    json_t *out = json_array();
    for (size_t i = 0; i < t->n; i++) {
        const http_route *r = t->v[i];
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:s}", "method", r->method, "path", r->path,
                                             "match", r->match == P2P_HTTP_EXACT ? "exact" : "prefix", "auth",
                                             p2p__http_auth_name(r->auth), "owner", r->owner));
    }
    return out;
}

/* How specific a route's path is for a request path of `plen` bytes: exact
 * beats every prefix, a longer prefix beats a shorter one; 0 when it does not match. */
static size_t specificity(const http_route *r, const char *path, size_t plen)
{
    if (r->match == P2P_HTTP_EXACT)
        return plen == r->path_len && memcmp(path, r->path, plen) == 0 ? SIZE_MAX : 0;
    return plen > r->path_len && memcmp(path, r->path, r->path_len) == 0 ? r->path_len : 0;
}

static int method_is(const char *want, size_t wlen, const char *m)
{
    size_t n = strlen(m);
    return wlen == n && memcmp(want, m, n) == 0;
}

int p2p__http_route_lookup(http_route_table *t, const char *method, size_t mlen, const char *path, size_t plen,
                           http_route *out, char *allow, size_t allow_size)
{
    size_t best = 0;
    const http_route *best_r = NULL;
    for (size_t i = 0; i < t->n; i++) {
        size_t s = specificity(t->v[i], path, plen);
        if (s > best) {
            best = s;
            best_r = t->v[i];
        }
    }
    if (!best_r)
        return -ENOENT;
    /* the routes on that very path: the method picks one */
    const http_route *get = NULL;
    size_t used = 0;
    if (allow_size)
        allow[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
        const http_route *r = t->v[i];
        if (r->match != best_r->match || strcmp(r->path, best_r->path) != 0)
            continue;
        if (method_is(method, mlen, r->method)) {
            *out = *r;
            return 0;
        }
        if (strcmp(r->method, "GET") == 0)
            get = r;
        size_t n = strlen(r->method);
        if (used + n + 3 <= allow_size) {
            if (used) {
                memcpy(allow + used, ", ", 2);
                used += 2;
            }
            memcpy(allow + used, r->method, n + 1);
            used += n;
        }
    }
    if (get && method_is(method, mlen, "HEAD")) {
        *out = *get;
        return 0;
    }
    return -EPERM;
}

/* ---- admission and the drain's busy probe ----------------------------------------- */

void p2p__http_set_admission(p2p_ctx *ctx, p2p_http_admit_fn fn, void *arg, size_t caller_size)
{
    http_route_table *t = p2p__http_routes(ctx);
    t->admit = fn;
    t->admit_arg = arg;
    t->caller_size = fn ? caller_size : 0;
}

int p2p__http_admit(http_route_table *t, h2o_req_t *req, const char *peer_node, const http_route *r,
                    const void **caller)
{
    if (!t->admit) {
        *caller = NULL;
        if (r->auth == P2P_HTTP_OPEN)
            return 1;
        p2p__http_send_error(req, 503, "Service Unavailable", "the node cannot authenticate requests yet");
        return 0;
    }
    void *c = h2o_mem_alloc_pool(&req->pool, t->caller_size ? t->caller_size : 1);
    memset(c, 0, t->caller_size ? t->caller_size : 1);
    *caller = c;
    return t->admit(t->admit_arg, req, peer_node, r->auth, r->rl_class, c);
}

void p2p__http_set_busy_probe(p2p_ctx *ctx, size_t (*busy)(const p2p_ctx *ctx))
{
    p2p__http_routes(ctx)->busy = busy;
}

size_t p2p__http_busy(p2p_ctx *ctx)
{
    http_route_table *t = p2p_shared_get(ctx, ROUTES_SHARED);
    return t && t->busy ? t->busy(ctx) : 0;
}

/* ---- answering later ------------------------------------------------------------ */

struct p2p_http_later {
    h2o_req_t *req;               /* NULL once h2o disposed the request */
    struct p2p_http_later **guard; /* pool-owned slot pointing back at us */
};

static void on_guard_dispose(void *p)
{
    p2p_http_later **slot = p;
    if (*slot)
        (*slot)->req = NULL;
}

p2p_http_later *p2p__http_later(h2o_req_t *req)
{
    p2p_http_later *l = p2p__xcalloc(1, sizeof(*l));
    l->req = req;
    l->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*l->guard), on_guard_dispose);
    *l->guard = l;
    return l;
}

h2o_req_t *p2p__http_later_take(p2p_http_later *l)
{
    h2o_req_t *req = l->req;
    if (req)
        *l->guard = NULL;
    free(l);
    return req;
}

h2o_req_t *p2p__http_later_peek(const p2p_http_later *l)
{
    return l->req;
}

const char *p2p__http_reason(int status)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {{200, "OK"},
                   {201, "Created"},
                   {202, "Accepted"},
                   {204, "No Content"},
                   {400, "Bad Request"},
                   {401, "Unauthorized"},
                   {403, "Forbidden"},
                   {404, "Not Found"},
                   {405, "Method Not Allowed"},
                   {409, "Conflict"},
                   {413, "Payload Too Large"},
                   {415, "Unsupported Media Type"},
                   {422, "Unprocessable Entity"},
                   {429, "Too Many Requests"},
                   {500, "Internal Server Error"},
                   {502, "Bad Gateway"},
                   {503, "Service Unavailable"},
                   {504, "Gateway Timeout"}};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Error";
}
