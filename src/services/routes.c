/*
 * routes.c — HTTP routes of native services (include/p2p/service.h,
 * p2p_svc_route): /services/<name>/<subpath> on the node's server.
 *
 * Like methods, a route belongs to a version (an instance) but is reached
 * through its entry, so that a reload loses no request:
 *   - each instance lists the routes its init registered;
 *   - the entry keeps one slot per route on the HTTP server, the server's
 *     udata; route_dispatch() hands the request to the entry's *active*
 *     instance and counts it in flight there until p2p_svc_respond(), exactly
 *     as dispatch() does for calls in manager.c, so a retired version finishes
 *     what it was given before it is stopped;
 *   - p2p__svc_routes_sync() runs on every state change of the entry and makes
 *     the server's routes those of the running version: a reload adds the new
 *     version's routes and removes the ones it dropped, a stop removes them all
 *     (the path then falls to GET /services/{name}: 404).
 * Admission is the server's: a token or a node certificate (P2P_HTTP_ANY), or
 * nothing for a P2P_ROUTE_PUBLIC route; the viewer role is refused here on a
 * route not marked P2P_ROUTE_READONLY.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "http/routes.h"
#include "services/internal.h"

#define SUBPATH_MAX 200

/* ---- registration (from init) ---------------------------------------------------------- */

static int method_ok(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0)
            return 1;
    return 0;
}

/* Segments of [A-Za-z0-9._~-] separated by single '/', none "." or "..", no
 * leading '/'; a trailing '/' makes it a prefix. */
static int subpath_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > SUBPATH_MAX || p[0] == '/')
        return 0;
    const char *seg = p;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            size_t len = (size_t)(p + i - seg);
            if (len == 0 && i != n)
                return 0; /* "//" */
            if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            seg = p + i + 1;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '~' && c != '-')
            return 0;
    }
    return 1;
}

P2P_EXTERN int p2p_svc_route(p2p_svc *svc, const char *method, const char *subpath, unsigned flags,
                             p2p_svc_route_fn fn, void *udata)
{
    if (!svc || !method || !subpath || !fn || !svc->in_init || !method_ok(method) || !subpath_ok(subpath) ||
        (flags & ~(P2P_ROUTE_READONLY | P2P_ROUTE_PUBLIC)))
        return -EINVAL;
    for (size_t i = 0; i < svc->n_routes; i++)
        if (strcmp(svc->routes[i].method, method) == 0 && strcmp(svc->routes[i].subpath, subpath) == 0)
            return -EEXIST;
    svc->routes = p2p__xrealloc(svc->routes, (svc->n_routes + 1) * sizeof(*svc->routes));
    svc->routes[svc->n_routes++] = (svc_route){p2p__xstrdup(method), p2p__xstrdup(subpath), flags, fn, udata};
    return 0;
}

void p2p__svc_routes_free(p2p_svc *inst)
{
    for (size_t i = 0; i < inst->n_routes; i++) {
        free(inst->routes[i].method);
        free(inst->routes[i].subpath);
    }
    free(inst->routes);
    inst->routes = NULL;
    inst->n_routes = 0;
}

static char *dup_n(const char *p, size_t n)
{
    char *s = p2p__xmalloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* ---- requests ----------------------------------------------------------------------------- */

typedef struct req_header {
    struct req_header *next;
    char value[];
} req_header;

struct p2p_svc_request {
    p2p_http_later *later;
    p2p_svc *inst;
    char *method, *path, *query, *body;
    size_t body_len;
    char caller[128];
    const char *role;
    req_header *headers; /* copies handed out by p2p_svc_req_header */
};

static const svc_route *instance_route(const p2p_svc *inst, const svc_route_slot *slot)
{
    for (size_t i = 0; inst && i < inst->n_routes; i++)
        if (strcmp(inst->routes[i].method, slot->method) == 0 && strcmp(inst->routes[i].subpath, slot->subpath) == 0)
            return &inst->routes[i];
    return NULL;
}

static void route_dispatch(p2p_http_req *hr)
{
    svc_route_slot *slot = hr->udata;
    svc_entry *e = slot->entry;
    p2p_svc *inst = e->active;
    h2o_req_t *req = hr->req;
    const svc_route *rt = e->state == SVC_RUNNING ? instance_route(inst, slot) : NULL;
    if (!rt) {
        char *msg = p2p__xasprintf("service %s is %s", e->name, p2p__svc_state_name(e->state));
        p2p__http_send_error(req, 503, "Service Unavailable", msg);
        free(msg);
        return;
    }
    const p2p_identity *id = hr->caller;
    if (id && id->role == P2P_ROLE_VIEWER && !(rt->flags & (P2P_ROUTE_READONLY | P2P_ROUTE_PUBLIC))) {
        char *msg = p2p__xasprintf("the viewer role may not call %s %s (it changes state)", rt->method, slot->path);
        p2p__http_send_error(req, 403, "Forbidden", msg);
        free(msg);
        return;
    }
    p2p_svc_request *r = p2p__xcalloc(1, sizeof(*r));
    r->inst = inst;
    r->method = dup_n(req->method.base, req->method.len);
    r->path = dup_n(req->path_normalized.base, req->path_normalized.len);
    r->query = req->query_at != SIZE_MAX
                   ? dup_n(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)
                   : p2p__xstrdup("");
    if (req->entity.base && req->entity.len) {
        r->body = p2p__xmalloc(req->entity.len);
        memcpy(r->body, req->entity.base, req->entity.len);
        r->body_len = req->entity.len;
    }
    snprintf(r->caller, sizeof r->caller, "%s", id ? id->subject : "");
    r->role = id && id->role != P2P_ROLE_NONE ? p2p__role_name(id->role) : "";
    r->later = p2p__http_later(req);
    inst->inflight++;
    rt->fn(inst, r, rt->udata);
}

P2P_EXTERN const char *p2p_svc_req_method(const p2p_svc_request *req)
{
    return req ? req->method : NULL;
}

P2P_EXTERN const char *p2p_svc_req_path(const p2p_svc_request *req)
{
    return req ? req->path : NULL;
}

P2P_EXTERN const char *p2p_svc_req_query(const p2p_svc_request *req)
{
    return req ? req->query : NULL;
}

P2P_EXTERN const char *p2p_svc_req_body(const p2p_svc_request *req, size_t *len)
{
    if (len)
        *len = req ? req->body_len : 0;
    return req ? req->body : NULL;
}

P2P_EXTERN const char *p2p_svc_req_header(p2p_svc_request *req, const char *name)
{
    h2o_req_t *hreq = req && name ? p2p__http_later_peek(req->later) : NULL;
    size_t n = hreq ? strlen(name) : 0;
    if (!hreq || n == 0 || n > 256)
        return NULL;
    char low[257];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    ssize_t i = h2o_find_header_by_str(&hreq->headers, low, n, -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = hreq->headers.entries[i].value;
    req_header *h = p2p__xmalloc(sizeof(*h) + v.len + 1);
    memcpy(h->value, v.base, v.len);
    h->value[v.len] = '\0';
    h->next = req->headers;
    req->headers = h;
    return h->value;
}

P2P_EXTERN const char *p2p_svc_req_caller(const p2p_svc_request *req)
{
    return req ? req->caller : NULL;
}

P2P_EXTERN const char *p2p_svc_req_role(const p2p_svc_request *req)
{
    return req ? req->role : NULL;
}

P2P_EXTERN int p2p_svc_respond(p2p_svc_request *req, int status, const char *content_type, const char *body,
                               size_t len)
{
    if (!req)
        return -EINVAL;
    int r = 0;
    h2o_req_t *hreq = p2p__http_later_take(req->later);
    if (hreq) {
        if (status < 200 || status > 599 || (len && !body)) {
            p2p_svc_log(req->inst, P2P_LOG_ERROR, "p2p_svc_respond: status %d out of 200..599 (or no body); sent 500",
                        status);
            p2p__http_send_error(hreq, 500, "Internal Server Error", "the service gave an invalid answer");
            r = -EINVAL;
        } else {
            p2p__http_send(hreq, status, p2p__http_reason(status),
                           content_type && *content_type ? content_type : "application/octet-stream", body ? body : "",
                           len);
        }
    } else if (status < 200 || status > 599) {
        r = -EINVAL;
    }
    p2p_svc *inst = req->inst;
    while (req->headers) {
        req_header *h = req->headers;
        req->headers = h->next;
        free(h);
    }
    free(req->method);
    free(req->path);
    free(req->query);
    free(req->body);
    free(req);
    p2p__svc_inflight_done(inst);
    return r;
}

/* ---- the server's routes follow the running version ------------------------------------------ */

static p2p_http_route_desc slot_desc(const svc_route_slot *s)
{
    return (p2p_http_route_desc){.method = s->method,
                                 .path = s->path,
                                 .match = s->prefix ? P2P_HTTP_PREFIX : P2P_HTTP_EXACT,
                                 .auth = (s->flags & P2P_ROUTE_PUBLIC) ? P2P_HTTP_OPEN : P2P_HTTP_ANY,
                                 .rl_class = P2P_RL_OTHER,
                                 .owner = "services",
                                 .fn = route_dispatch,
                                 .udata = (void *)s};
}

static void slot_drop(svc_entry *e, size_t i)
{
    svc_route_slot *s = e->rslots[i];
    p2p__http_route_remove(e->mgr->ctx, s->method, s->path, s->prefix ? P2P_HTTP_PREFIX : P2P_HTTP_EXACT);
    free(s->method);
    free(s->subpath);
    free(s->path);
    free(s);
    memmove(&e->rslots[i], &e->rslots[i + 1], (e->n_rslots - i - 1) * sizeof(*e->rslots));
    e->n_rslots--;
}

void p2p__svc_routes_sync(svc_entry *e)
{
    p2p_ctx *ctx = e->mgr->ctx;
    const p2p_svc *inst = e->state == SVC_RUNNING && e->mgr->running ? e->active : NULL;
    for (size_t i = 0; i < e->n_rslots; i++)
        e->rslots[i]->seen = 0;
    for (size_t i = 0; inst && i < inst->n_routes; i++) {
        const svc_route *rt = &inst->routes[i];
        svc_route_slot *s = NULL;
        for (size_t j = 0; j < e->n_rslots && !s; j++)
            if (strcmp(e->rslots[j]->method, rt->method) == 0 && strcmp(e->rslots[j]->subpath, rt->subpath) == 0)
                s = e->rslots[j];
        if (s && (s->flags & P2P_ROUTE_PUBLIC) != (rt->flags & P2P_ROUTE_PUBLIC)) {
            /* the new version changed who may call it: the auth class is the server's */
            p2p__http_route_remove(ctx, s->method, s->path, s->prefix ? P2P_HTTP_PREFIX : P2P_HTTP_EXACT);
            s->flags = rt->flags;
            p2p_http_route_desc d = slot_desc(s);
            p2p__http_route_add(ctx, &d);
        }
        if (s) {
            s->flags = rt->flags;
            s->seen = 1;
            continue;
        }
        s = p2p__xcalloc(1, sizeof(*s));
        s->entry = e;
        s->method = p2p__xstrdup(rt->method);
        s->subpath = p2p__xstrdup(rt->subpath);
        s->path = p2p__xasprintf("/services/%s/%s", e->name, rt->subpath);
        s->prefix = rt->subpath[strlen(rt->subpath) - 1] == '/';
        s->flags = rt->flags;
        s->seen = 1;
        p2p_http_route_desc d = slot_desc(s);
        int r = p2p__http_route_add(ctx, &d);
        if (r != 0) {
            p2p_log(ctx, P2P_LOG_ERROR, "services", "%s: cannot serve %s %s: %s", e->name, s->method, s->path,
                    p2p_strerror(r));
            free(s->method);
            free(s->subpath);
            free(s->path);
            free(s);
            continue;
        }
        e->rslots = p2p__xrealloc(e->rslots, (e->n_rslots + 1) * sizeof(*e->rslots));
        e->rslots[e->n_rslots++] = s;
    }
    for (size_t i = 0; i < e->n_rslots;) {
        if (e->rslots[i]->seen)
            i++;
        else
            slot_drop(e, i);
    }
}
