/*
 * ws.h — a server WebSocket on a connection the HTTP server handed over
 * (p2p__http_upgrade): wslay decodes what the client sends (masking,
 * fragments, control frames, the message size cap) and answers its pings and
 * close; what the server sends are shared, already framed buffers
 * (web/wsproto.h) written straight to the socket, so one message encoded once
 * goes to every socket without a copy.
 *
 * Bounded: a message from the client above max_msg closes the socket (1009);
 * p2p__ws_send refuses a buffer that would take the bytes not yet written
 * (queued + being written) over max_unsent, and the caller then closes the
 * socket: nothing ever waits for a slow client. Loop thread only.
 */
#ifndef P2P_WEB_WS_H
#define P2P_WEB_WS_H

#include <stddef.h>
#include <stdint.h>

#include "h2o.h"
#include "web/wsproto.h"

typedef struct p2p_ws p2p_ws;

typedef struct p2p_ws_handler {
    /* A complete text message (valid during the call). May send or close. */
    void (*on_text)(p2p_ws *ws, const char *data, size_t len, void *arg);
    /* The socket is gone (peer closed, error, close done): called once; `ws`
     * must not be used after it returns. */
    void (*on_closed)(p2p_ws *ws, void *arg);
} p2p_ws_handler;

/* Takes over an upgraded connection (see p2p_http_upgrade_cb). */
p2p_ws *p2p__ws_start(h2o_socket_t *sock, size_t reqsize, size_t max_msg, size_t max_unsent, const p2p_ws_handler *h,
                      void *arg);
/* Queues a frame (takes a reference). 0; -ENOBUFS when it would exceed
 * max_unsent (nothing queued); -EPIPE once the socket is closing. */
int p2p__ws_send(p2p_ws *ws, p2p_wsbuf *b);
/* Bytes queued or being written. */
size_t p2p__ws_unsent(const p2p_ws *ws);
/* Closes with a status code and reason (<= 123 bytes): frames not yet being
 * written are dropped, a close frame follows, and the connection is closed
 * once the client answers it or after 2 s. */
void p2p__ws_close(p2p_ws *ws, uint16_t code, const char *reason);
/* Sends a ping frame (browsers answer with a pong by themselves). */
void p2p__ws_ping(p2p_ws *ws);
/* Loop time (uv_now) of the last bytes received from the client. */
uint64_t p2p__ws_last_rx(const p2p_ws *ws);
/* The client's address ("-" when unknown). */
void p2p__ws_peer(p2p_ws *ws, char *out, size_t n);

#endif
