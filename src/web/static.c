/*
 * static.c — serves the embedded dashboard (see static.h and web/embed.mjs).
 *
 * The page ("/dashboard") is revalidated on every load (Cache-Control:
 * no-cache, with an ETag for 304s) so a new binary's page is seen at once; it
 * names its scripts and styles by content hash, so those are cached for a year
 * as immutable. A client that accepts gzip gets the copy compressed at build
 * time (Vary: Accept-Encoding); nothing is compressed at run time.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/ratelimit.h"
#include "p2p/p2p.h"
#include "core/util.h"
#include "http/routes.h"
#include "web/static.h"

#define OWNER "webui"

const p2p_web_asset *p2p__web_asset_find(const char *path, size_t len)
{
    for (size_t i = 0; i < p2p__web_assets_n; i++) {
        const p2p_web_asset *a = &p2p__web_assets[i];
        if (strlen(a->path) == len && memcmp(a->path, path, len) == 0)
            return a;
    }
    return NULL;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int p2p__web_accepts_gzip(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* one element: token [; q=value] [; other params] */
        size_t end = i;
        while (end < len && v[end] != ',')
            end++;
        size_t s = i, e = end;
        while (s < e && is_ows(v[s]))
            s++;
        size_t t = s;
        while (t < e && v[t] != ';' && !is_ows(v[t]))
            t++;
        int match = (t - s == 4 && strncasecmp(v + s, "gzip", 4) == 0) || (t - s == 1 && v[s] == '*');
        if (match) {
            int zero = 0;
            for (size_t p = t; p < e; p++) {
                if (v[p] != ';')
                    continue;
                size_t q = p + 1;
                while (q < e && is_ows(v[q]))
                    q++;
                if (q + 1 < e && (v[q] == 'q' || v[q] == 'Q') && v[q + 1] == '=') {
                    q += 2;
                    /* q=0, q=0., q=0.0, q=0.000 mean "not acceptable" */
                    zero = q < e && v[q] == '0';
                    for (size_t d = q + 1; zero && d < e && !is_ows(v[d]) && v[d] != ';'; d++)
                        if (v[d] != '.' && v[d] != '0')
                            zero = 0;
                }
            }
            if (!zero)
                return 1;
        }
        i = end + 1;
    }
    return 0;
}

static int host_safe(const char *h, size_t n)
{
    if (n == 0 || n > 255)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == ':' || c == '[' || c == ']'))
            return 0;
    }
    return 1;
}

char *p2p__web_csp(const char *host, size_t host_len, char *buf, size_t n)
{
    char wss[300] = "";
    if (host && host_safe(host, host_len))
        snprintf(wss, sizeof wss, " wss://%.*s", (int)host_len, host);
    snprintf(buf, n,
             "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
             "connect-src 'self'%s; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             wss);
    return buf;
}

static h2o_iovec_t req_header(h2o_req_t *req, const h2o_token_t *t)
{
    ssize_t i = h2o_find_header(&req->headers, t, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

/* 1 when an If-None-Match value names `etag` (or is "*"). */
static int etag_matches(h2o_iovec_t inm, const char *etag)
{
    size_t el = strlen(etag);
    if (inm.len == 1 && inm.base[0] == '*')
        return 1;
    for (size_t i = 0; i + el <= inm.len; i++) {
        if (memcmp(inm.base + i, etag, el) == 0)
            return 1;
    }
    return 0;
}

static void add_security_headers(h2o_req_t *req)
{
    char csp[512];
    h2o_iovec_t host = req->authority;
    p2p__web_csp(host.base, host.len, csp, sizeof csp);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                          h2o_strdup(&req->pool, csp, strlen(csp)).base, strlen(csp));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("no-referrer"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL, H2O_STRLIT("DENY"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("cross-origin-opener-policy"), 0, NULL,
                          H2O_STRLIT("same-origin"));
}

static void serve(p2p_http_req *hr, const p2p_web_asset *a)
{
    h2o_req_t *req = hr->req;
    add_security_headers(req);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, a->etag, strlen(a->etag));
    if (a->immutable)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                       H2O_STRLIT("public, max-age=31536000, immutable"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_iovec_t inm = req_header(req, H2O_TOKEN_IF_NONE_MATCH);
    if (inm.base && etag_matches(inm, a->etag)) {
        p2p__http_send_static(req, 304, "Not Modified", NULL, NULL, 0);
        return;
    }
    h2o_iovec_t ae = req_header(req, H2O_TOKEN_ACCEPT_ENCODING);
    if (ae.base && p2p__web_accepts_gzip(ae.base, ae.len)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
        p2p__http_send_static(req, 200, "OK", a->ctype, (const char *)a->gz, a->gz_len);
    } else {
        p2p__http_send_static(req, 200, "OK", a->ctype, (const char *)a->data, a->len);
    }
}

static void page(p2p_http_req *hr)
{
    serve(hr, p2p__web_asset_find(H2O_STRLIT("/dashboard")));
}

static void page_slash(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    add_security_headers(req);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, H2O_STRLIT("/dashboard"));
    p2p__http_send(req, 301, "Moved Permanently", "text/plain; charset=utf-8", H2O_STRLIT("/dashboard\n"));
}

static void asset(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    char path[256];
    int n = snprintf(path, sizeof path, "/dashboard/static/%.*s", (int)hr->rest_len, hr->rest);
    const p2p_web_asset *a = n > 0 && (size_t)n < sizeof path ? p2p__web_asset_find(path, (size_t)n) : NULL;
    if (!a || !a->immutable) {
        add_security_headers(req);
        p2p__http_send_error(req, 404, "Not Found", "no such dashboard asset (names change with each build: reload /dashboard)");
        return;
    }
    serve(hr, a);
}

static int webui_start(p2p_component *c, char **err)
{
    static const p2p_http_route_desc routes[] = {
        {"GET", "/dashboard", P2P_HTTP_EXACT, P2P_HTTP_OPEN, P2P_RL_OTHER, OWNER, page, NULL},
        {"GET", "/dashboard/", P2P_HTTP_EXACT, P2P_HTTP_OPEN, P2P_RL_OTHER, OWNER, page_slash, NULL},
        {"GET", "/dashboard/static/", P2P_HTTP_PREFIX, P2P_HTTP_OPEN, P2P_RL_OTHER, OWNER, asset, NULL},
    };
    if (!p2p__web_asset_find(H2O_STRLIT("/dashboard"))) {
        *err = p2p__xstrdup("webui: the build embedded no dashboard page");
        return -ENOENT;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r = p2p__http_route_add(c->ctx, &routes[i]);
        if (r != 0) {
            p2p__http_routes_remove_owner(c->ctx, OWNER);
            *err = p2p__xasprintf("webui: cannot add route %s: %s", routes[i].path, p2p_strerror(r));
            return r;
        }
    }
    return 0;
}

static void webui_stop(p2p_component *c)
{
    p2p__http_routes_remove_owner(c->ctx, OWNER);
}

static const p2p_component_ops webui_ops = {
    .name = "webui",
    .deps = NULL,
    .start = webui_start,
    .stop = webui_stop,
};

int p2p__webui_register(p2p_ctx *ctx)
{
    return p2p__component_add(ctx, &webui_ops, NULL) ? 0 : -EEXIST;
}
