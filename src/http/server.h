/*
 * server.h — the node's HTTPS server (h2o on the node's libuv loop).
 *
 * Registered as the "http" component. Serves the routes the other components
 * register (http/routes.h) over TLS (HTTP/1.1 and HTTP/2 by ALPN) with limits
 * on body size, header size, connections and slow clients, and one access-log
 * line per request. It names no component but the PKI, for its TLS material.
 */
#ifndef P2P_HTTP_SERVER_H
#define P2P_HTTP_SERVER_H

#include "core/ctx.h"

/* Adds the "http" component to ctx. */
int p2p__http_register(p2p_ctx *ctx);

/* Graceful stop, step one: stop accepting, ask open connections to finish,
 * and call `done` once none is left or `grace_ms` has passed. */
void p2p__http_drain(p2p_ctx *ctx, uint64_t grace_ms, void (*done)(p2p_ctx *ctx, int timed_out));

#endif
