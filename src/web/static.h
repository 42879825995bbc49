/*
 * static.h — the dashboard page and its assets over HTTP (coordinator).
 *
 * GET /dashboard and GET /dashboard/static/<hashed name> are OPEN routes: the
 * page and its scripts hold no secrets, and everything they fetch (the
 * /api/... routes, the WebSocket) asks for a token. Every answer carries a
 * strict Content-Security-Policy (no inline script or style, same-origin
 * connections only, no framing), nosniff and no-referrer.
 */
#ifndef P2P_WEB_STATIC_H
#define P2P_WEB_STATIC_H

#include <stddef.h>

#include "core/ctx.h"
#include "web/assets.h"

/* Adds the "webui" component (its routes come and go with it). */
int p2p__webui_register(p2p_ctx *ctx);

/* The asset served at `path` (len bytes, not NUL-terminated), or NULL. */
const p2p_web_asset *p2p__web_asset_find(const char *path, size_t len);

/* 1 when an Accept-Encoding value (len bytes) accepts gzip (a "gzip" or "*" token
 * whose q is not 0), else 0. */
int p2p__web_accepts_gzip(const char *v, size_t len);

/* Writes the Content-Security-Policy for a request whose Host header is `host`
 * (NULL or unsafe: no extra wss origin) into buf (size n); returns buf. */
char *p2p__web_csp(const char *host, size_t host_len, char *buf, size_t n);

#endif
