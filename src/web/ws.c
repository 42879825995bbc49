/*
 * ws.c — the WebSocket transport (see ws.h).
 *
 * Lifetime: a p2p_ws lives from p2p__ws_start until teardown, which closes the
 * h2o socket, drops every buffer, calls on_closed, and frees the record from
 * its timer's close callback (so a teardown from inside a callback of ours
 * never frees what the caller still walks). Once torn down (`dead`) nothing
 * reads, writes or calls back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "core/util.h"
#include "web/ws.h"

#define WS_CLOSE_WAIT_MS 2000
#define WS_MAX_IOV 32 /* frames handed to one socket write */

typedef struct ws_item {
    struct ws_item *next;
    p2p_wsbuf *b;
} ws_item;

struct p2p_ws {
    h2o_socket_t *sock;
    wslay_event_context_ptr wctx;
    const p2p_ws_handler *h;
    void *arg;
    size_t max_unsent;
    ws_item *q_head, **q_tail; /* not yet written */
    size_t q_bytes;
    p2p_wsbuf *inflight[WS_MAX_IOV]; /* being written */
    size_t n_inflight, inflight_bytes;
    int writing, closing, dead;
    uint64_t last_rx_ms; /* loop time of the last bytes received */
    uv_timer_t timer; /* close wait */
};

static void free_ws(uv_handle_t *h)
{
    p2p_ws *ws = h->data;
    wslay_event_context_free(ws->wctx);
    free(ws);
}

static void drop_queue(p2p_ws *ws)
{
    while (ws->q_head) {
        ws_item *it = ws->q_head;
        ws->q_head = it->next;
        ws->q_bytes -= p2p__wsbuf_wire(it->b);
        p2p__wsbuf_unref(it->b);
        free(it);
    }
    ws->q_tail = &ws->q_head;
}

static void teardown(p2p_ws *ws)
{
    if (ws->dead)
        return;
    ws->dead = 1;
    uv_timer_stop(&ws->timer);
    h2o_socket_read_stop(ws->sock);
    ws->sock->data = NULL;
    h2o_socket_close(ws->sock); /* a write in flight is abandoned: its callback never comes */
    ws->sock = NULL;
    drop_queue(ws);
    for (size_t i = 0; i < ws->n_inflight; i++)
        p2p__wsbuf_unref(ws->inflight[i]);
    ws->n_inflight = ws->inflight_bytes = 0;
    ws->h->on_closed(ws, ws->arg);
    uv_close((uv_handle_t *)&ws->timer, free_ws);
}

static void pump(p2p_ws *ws);
static void on_close_wait(uv_timer_t *t);

/* Done when both close frames went and everything is written. */
static void check_done(p2p_ws *ws)
{
    if (ws->dead || ws->writing || ws->q_head || wslay_event_want_write(ws->wctx))
        return;
    if (wslay_event_get_close_received(ws->wctx)) {
        teardown(ws); /* the client closed (and heard our answer) */
    } else if (wslay_event_get_close_sent(ws->wctx) && !uv_is_active((uv_handle_t *)&ws->timer)) {
        /* we closed (p2p__ws_close, or wslay on a protocol error / an oversized
         * message): wait for the client's close frame, reading and dropping what
         * it still sends, so that closing with unread input does not reset the
         * connection before our close frame is read */
        uv_timer_start(&ws->timer, on_close_wait, WS_CLOSE_WAIT_MS, 0);
    }
}

static void on_written(h2o_socket_t *sock, const char *err)
{
    p2p_ws *ws = sock->data;
    if (!ws)
        return;
    ws->writing = 0;
    for (size_t i = 0; i < ws->n_inflight; i++)
        p2p__wsbuf_unref(ws->inflight[i]);
    ws->n_inflight = ws->inflight_bytes = 0;
    if (err) {
        teardown(ws);
        return;
    }
    pump(ws);
    check_done(ws);
}

static void pump(p2p_ws *ws)
{
    if (ws->dead || ws->writing || !ws->q_head)
        return;
    h2o_iovec_t iov[WS_MAX_IOV * 2];
    size_t k = 0;
    while (ws->q_head && ws->n_inflight < WS_MAX_IOV) {
        ws_item *it = ws->q_head;
        ws->q_head = it->next;
        size_t wire = p2p__wsbuf_wire(it->b);
        ws->q_bytes -= wire;
        ws->inflight_bytes += wire;
        ws->inflight[ws->n_inflight++] = it->b;
        if (it->b->hdr_len)
            iov[k++] = h2o_iovec_init(it->b->hdr, it->b->hdr_len);
        if (it->b->len)
            iov[k++] = h2o_iovec_init(it->b->data, it->b->len);
        free(it);
    }
    if (!ws->q_head)
        ws->q_tail = &ws->q_head;
    ws->writing = 1;
    h2o_socket_write(ws->sock, iov, k, on_written);
}

static void enqueue(p2p_ws *ws, p2p_wsbuf *b)
{
    ws_item *it = p2p__xcalloc(1, sizeof(*it));
    it->b = b;
    *ws->q_tail = it;
    ws->q_tail = &it->next;
    ws->q_bytes += p2p__wsbuf_wire(b);
}

/* ---- wslay callbacks ----------------------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *arg)
{
    (void)flags;
    p2p_ws *ws = arg;
    if (ws->dead) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    h2o_buffer_t *in = ws->sock->input;
    if (in->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > in->size)
        len = in->size;
    memcpy(buf, in->bytes, len);
    h2o_buffer_consume(&ws->sock->input, len);
    return (ssize_t)len;
}

/* wslay writes only the control frames it makes itself (pong, close): they join
 * the queue as raw bytes, in order with our frames. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)flags;
    p2p_ws *ws = arg;
    if (ws->dead) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    p2p_wsbuf *b = p2p__xmalloc(sizeof(*b) + len + 1);
    b->refs = 1;
    b->len = len;
    b->hdr_len = 0;
    memcpy(b->data, data, len);
    enqueue(ws, b);
    return (ssize_t)len;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m, void *arg)
{
    (void)ctx;
    p2p_ws *ws = arg;
    if (ws->dead || ws->closing)
        return;
    if (m->opcode == WSLAY_TEXT_FRAME)
        ws->h->on_text(ws, (const char *)m->msg, m->msg_length, ws->arg);
    else if (m->opcode == WSLAY_BINARY_FRAME)
        p2p__ws_close(ws, 1003, "text frames only");
}

/* Hands what wslay wants to write to our queue, then writes. */
static void flush(p2p_ws *ws)
{
    while (!ws->dead && wslay_event_want_write(ws->wctx))
        if (wslay_event_send(ws->wctx) != 0) {
            teardown(ws);
            return;
        }
    pump(ws);
    if (!ws->dead)
        check_done(ws);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    p2p_ws *ws = sock->data;
    if (!ws)
        return;
    if (err) {
        teardown(ws);
        return;
    }
    ws->last_rx_ms = uv_now(h2o_socket_get_loop(sock));
    while (!ws->dead && ws->sock->input->size && wslay_event_want_read(ws->wctx))
        if (wslay_event_recv(ws->wctx) != 0) {
            teardown(ws);
            return;
        }
    if (ws->dead)
        return;
    if (!wslay_event_want_read(ws->wctx) && ws->sock->input->size)
        h2o_buffer_consume(&ws->sock->input, ws->sock->input->size); /* after its close frame: ignored */
    flush(ws);
}

static void on_close_wait(uv_timer_t *t)
{
    teardown(t->data);
}

/* ---- API -------------------------------------------------------------------------------- */

p2p_ws *p2p__ws_start(h2o_socket_t *sock, size_t reqsize, size_t max_msg, size_t max_unsent, const p2p_ws_handler *h,
                      void *arg)
{
    static const struct wslay_event_callbacks cbs = {recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg};
    p2p_ws *ws = p2p__xcalloc(1, sizeof(*ws));
    ws->sock = sock;
    ws->h = h;
    ws->arg = arg;
    ws->max_unsent = max_unsent;
    ws->q_tail = &ws->q_head;
    if (wslay_event_context_server_init(&ws->wctx, &cbs, ws) != 0)
        abort(); /* out of memory */
    wslay_event_config_set_max_recv_msg_length(ws->wctx, max_msg);
    uv_timer_init(h2o_socket_get_loop(sock), &ws->timer);
    ws->timer.data = ws;
    sock->data = ws;
    ws->last_rx_ms = uv_now(h2o_socket_get_loop(sock));
    h2o_buffer_consume(&sock->input, reqsize);
    h2o_socket_read_start(sock, on_read);
    if (sock->input->size) /* the client's first frame came with the handshake */
        on_read(sock, NULL);
    return ws;
}

int p2p__ws_send(p2p_ws *ws, p2p_wsbuf *b)
{
    if (ws->dead || ws->closing)
        return -EPIPE;
    if (ws->q_bytes + ws->inflight_bytes + p2p__wsbuf_wire(b) > ws->max_unsent)
        return -ENOBUFS;
    enqueue(ws, p2p__wsbuf_ref(b));
    pump(ws);
    return 0;
}

size_t p2p__ws_unsent(const p2p_ws *ws)
{
    return ws->q_bytes + ws->inflight_bytes;
}

void p2p__ws_close(p2p_ws *ws, uint16_t code, const char *reason)
{
    if (ws->dead || ws->closing)
        return;
    ws->closing = 1;
    drop_queue(ws);
    size_t rl = reason ? strlen(reason) : 0;
    wslay_event_queue_close(ws->wctx, code, (const uint8_t *)reason, rl > 123 ? 123 : rl);
    uv_timer_start(&ws->timer, on_close_wait, WS_CLOSE_WAIT_MS, 0);
    flush(ws);
}

void p2p__ws_peer(p2p_ws *ws, char *out, size_t n)
{
    struct sockaddr_storage ss;
    snprintf(out, n, "-");
    if (ws->dead || h2o_socket_getpeername(ws->sock, (struct sockaddr *)&ss) == 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)n);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)n);
}

void p2p__ws_ping(p2p_ws *ws)
{
    if (ws->dead || ws->closing)
        return;
    struct wslay_event_msg m = {WSLAY_PING, NULL, 0};
    if (wslay_event_queue_msg(ws->wctx, &m) == 0)
        flush(ws);
}

uint64_t p2p__ws_last_rx(const p2p_ws *ws)
{
    return ws->last_rx_ms;
}
