/*
 * http_auth.h — the security component's part of the HTTP server: the
 * admission hook and its routes (auth/http_auth.c).
 */
#ifndef P2P_AUTH_HTTP_AUTH_H
#define P2P_AUTH_HTTP_AUTH_H

#include "auth/guard.h"

/* From the "security" component's start: installs the admission hook and adds
 * POST /auth/token and GET /internal/jwt-keys. Returns 0 or a negative code. */
int p2p__auth_http_start(p2p_ctx *ctx, p2p_guard *g);
void p2p__auth_http_stop(p2p_ctx *ctx);

/* From the "revsync" component's start: POST /auth/revoke, POST
 * /internal/revoke, GET /internal/revocations. */
int p2p__revsync_http_start(p2p_ctx *ctx);
void p2p__revsync_http_stop(p2p_ctx *ctx);

#endif
