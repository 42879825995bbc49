/*
 * forward.c — forwarding collected lines to syslog and journald (see forward.h).
 *
 * Each destination has a ring of record references (bounded: the oldest is
 * dropped and counted when it is full). A zero-delay timer drains the rings on
 * the loop, at most DRAIN_MAX records per destination per turn so a backlog
 * never starves the loop:
 *  - UDP: one datagram per record with uv_udp_try_send; EAGAIN (socket buffer
 *    full) leaves the record queued and retries 10 ms later.
 *  - TCP: octet-counted frames ("LEN SP MSG", RFC 6587 3.4.1), up to 256 KiB per
 *    write, one write in flight. A peer that does not read leaves that write
 *    pending: the ring fills and drops, ingestion goes on. A failed connection
 *    or write closes the socket (the records of a failed write are counted as
 *    dropped: they may or may not have arrived) and reconnects after 100 ms,
 *    doubling up to 5 s.
 *  - journald: one native-protocol datagram per record, sendto() with
 *    MSG_DONTWAIT on a non-blocking AF_UNIX socket; EAGAIN retries like UDP.
 */
#include "logs/forward.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "core/metrics.h"
#include "core/util.h"
#include "logs/fwdfmt.h"

#define DRAIN_MAX 2000
#define TCP_WRITE_MAX (256 * 1024)
#define RETRY_MS 10
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define WARN_EVERY_MS 60000
#define SELF_SOURCE "logs.shipper" /* never shipped, so never forwarded back here */

enum { D_UDP, D_TCP, D_JOURNAL };
enum { S_CLOSED, S_CONNECTING, S_CONNECTED, S_CLOSING };

typedef struct dest {
    logfwd *f;
    int kind;
    const char *name;
    char target[160];
    logrec **q;
    size_t cap, head, n;
    uint64_t sent, dropped;
    /* syslog */
    struct sockaddr_storage addr;
    uv_udp_t udp;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_timer_t retry;
    int state, writing, blocked;
    size_t wr_n;
    char *wr_buf;
    int backoff_ms;
    /* journald */
    int fd;
    struct sockaddr_un sun;
    socklen_t sunlen;
    uint64_t last_warn_ms;
} dest;

struct logfwd {
    p2p_ctx *ctx;
    dest *d[2];
    size_t nd;
    uv_timer_t drain;
    int closing;
    int open_handles;
    char *fmt; /* LOGFWD_SYSLOG_MAX bytes */
};

static void drain_dest(dest *d);
static void tcp_connect(dest *d);

static void maybe_free(logfwd *f)
{
    if (!f->closing || f->open_handles)
        return;
    for (size_t i = 0; i < f->nd; i++)
        free(f->d[i]);
    free(f->fmt);
    free(f);
}

static void on_handle_closed(uv_handle_t *h)
{
    logfwd *f = h->data;
    f->open_handles--;
    maybe_free(f);
}

static void warn(dest *d, const char *what, const char *why)
{
    uint64_t now = p2p__wall_ms();
    if (d->last_warn_ms && now - d->last_warn_ms < WARN_EVERY_MS)
        return;
    d->last_warn_ms = now;
    p2p_log(d->f->ctx, P2P_LOG_WARN, SELF_SOURCE, "log forwarding to %s %s: %s (%llu lines dropped so far)",
            d->name, what, why, (unsigned long long)d->dropped);
}

/* ---- the ring ---------------------------------------------------------------------------- */

static void q_push(dest *d, logrec *r)
{
    if (d->n == d->cap) {
        logrec_unref(d->q[d->head]);
        d->q[d->head] = logrec_ref(r);
        d->head = (d->head + 1) % d->cap;
        d->dropped++;
        return;
    }
    d->q[(d->head + d->n) % d->cap] = logrec_ref(r);
    d->n++;
}

static logrec *q_front(dest *d)
{
    return d->q[d->head];
}

static void q_pop(dest *d)
{
    logrec_unref(d->q[d->head]);
    d->head = (d->head + 1) % d->cap;
    d->n--;
}

/* ---- draining ------------------------------------------------------------------------------ */

static void on_drain(uv_timer_t *t)
{
    logfwd *f = t->data;
    int more = 0, blocked = 0;
    for (size_t i = 0; i < f->nd; i++) {
        dest *d = f->d[i];
        d->blocked = 0;
        drain_dest(d);
        if (d->blocked)
            blocked = 1;
        else if (d->n && d->kind != D_TCP)
            more = 1;
    }
    if (more)
        uv_timer_start(&f->drain, on_drain, 0, 0);
    else if (blocked)
        uv_timer_start(&f->drain, on_drain, RETRY_MS, 0);
}

static void arm(logfwd *f)
{
    if (f->closing || uv_is_active((uv_handle_t *)&f->drain))
        return;
    uv_timer_start(&f->drain, on_drain, 0, 0);
}

static void drain_udp(dest *d)
{
    char *buf = d->f->fmt;
    for (int k = 0; k < DRAIN_MAX && d->n; k++) {
        size_t len = logfwd_rfc5424(q_front(d), buf, LOGFWD_SYSLOG_MAX);
        uv_buf_t ub = uv_buf_init(buf, (unsigned)len);
        int e = uv_udp_try_send(&d->udp, &ub, 1, (const struct sockaddr *)&d->addr);
        if (e == UV_EAGAIN) {
            d->blocked = 1;
            return;
        }
        if (e < 0) {
            d->dropped++;
            warn(d, "failed", uv_strerror(e));
        } else {
            d->sent++;
        }
        q_pop(d);
    }
}

static void drain_journal(dest *d)
{
    for (int k = 0; k < DRAIN_MAX && d->n; k++) {
        size_t len;
        char *buf = logfwd_journal(q_front(d), &len);
        ssize_t s = sendto(d->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&d->sun, d->sunlen);
        int e = errno;
        free(buf);
        if (s < 0 && (e == EAGAIN || e == EWOULDBLOCK)) {
            d->blocked = 1;
            return;
        }
        if (s < 0) {
            d->dropped++;
            warn(d, "failed", strerror(e));
        } else {
            d->sent++;
        }
        q_pop(d);
    }
}

/* ---- TCP --------------------------------------------------------------------------------- */

static void on_retry(uv_timer_t *t)
{
    tcp_connect(t->data);
}

static void on_tcp_closed(uv_handle_t *h)
{
    dest *d = h->data;
    logfwd *f = d->f;
    f->open_handles--;
    if (f->closing) {
        maybe_free(f);
        return;
    }
    d->state = S_CLOSED;
    uv_timer_start(&d->retry, on_retry, (uint64_t)d->backoff_ms, 0);
    d->backoff_ms = d->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d->backoff_ms * 2;
}

static void tcp_fail(dest *d, const char *what, int status)
{
    if (d->state == S_CLOSING || d->state == S_CLOSED)
        return;
    warn(d, what, uv_strerror(status));
    d->state = S_CLOSING;
    uv_close((uv_handle_t *)&d->tcp, on_tcp_closed);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    static char sink[256];
    (void)h;
    (void)want;
    *buf = uv_buf_init(sink, sizeof sink);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0)
        tcp_fail(s->data, "closed the connection", (int)n); /* what a syslog server says is ignored */
}

static void on_connect(uv_connect_t *c, int status)
{
    dest *d = c->data;
    if (d->f->closing)
        return;
    if (status < 0) {
        tcp_fail(d, "cannot connect", status);
        return;
    }
    d->state = S_CONNECTED;
    d->backoff_ms = BACKOFF_MIN_MS;
    uv_read_start((uv_stream_t *)&d->tcp, on_alloc, on_read);
    arm(d->f);
}

static void tcp_connect(dest *d)
{
    if (d->f->closing || d->state != S_CLOSED)
        return;
    uv_tcp_init(d->f->ctx->loop, &d->tcp);
    d->tcp.data = d;
    d->f->open_handles++;
    uv_tcp_nodelay(&d->tcp, 1);
    d->conn.data = d;
    d->state = S_CONNECTING;
    int e = uv_tcp_connect(&d->conn, &d->tcp, (const struct sockaddr *)&d->addr, on_connect);
    if (e < 0) {
        d->state = S_CONNECTED; /* so tcp_fail closes it */
        tcp_fail(d, "cannot connect", e);
    }
}

static void on_write(uv_write_t *w, int status)
{
    dest *d = w->data;
    free(d->wr_buf);
    d->wr_buf = NULL;
    d->writing = 0;
    if (status < 0) {
        d->dropped += d->wr_n; /* may or may not have arrived */
        d->wr_n = 0;
        if (!d->f->closing)
            tcp_fail(d, "write failed", status);
        return;
    }
    d->sent += d->wr_n;
    d->wr_n = 0;
    arm(d->f);
}

static void drain_tcp(dest *d)
{
    if (d->state == S_CLOSED && !uv_is_active((uv_handle_t *)&d->retry))
        tcp_connect(d);
    if (d->state != S_CONNECTED || d->writing || !d->n)
        return;
    size_t cap = TCP_WRITE_MAX + LOGFWD_SYSLOG_MAX + 16, len = 0, n = 0;
    char *buf = p2p__xmalloc(cap);
    while (d->n && len < TCP_WRITE_MAX && n < DRAIN_MAX) {
        size_t m = logfwd_rfc5424(q_front(d), d->f->fmt, LOGFWD_SYSLOG_MAX);
        len += (size_t)snprintf(buf + len, cap - len, "%zu ", m);
        memcpy(buf + len, d->f->fmt, m);
        len += m;
        n++;
        q_pop(d);
    }
    d->wr_buf = buf;
    d->wr_n = n;
    d->writing = 1;
    d->wr.data = d;
    uv_buf_t ub = uv_buf_init(buf, (unsigned)len);
    int e = uv_write(&d->wr, (uv_stream_t *)&d->tcp, &ub, 1, on_write);
    if (e < 0) {
        free(buf);
        d->wr_buf = NULL;
        d->writing = 0;
        d->dropped += n;
        d->wr_n = 0;
        tcp_fail(d, "write failed", e);
    }
}

static void drain_dest(dest *d)
{
    switch (d->kind) {
    case D_UDP: drain_udp(d); break;
    case D_TCP: drain_tcp(d); break;
    default: drain_journal(d); break;
    }
}

/* ---- life ------------------------------------------------------------------------------------ */

static dest *dest_new(logfwd *f, int kind, const char *name, size_t queue)
{
    dest *d = p2p__xcalloc(1, sizeof(*d));
    d->f = f;
    d->kind = kind;
    d->name = name;
    d->cap = queue ? queue : 1;
    d->q = p2p__xcalloc(d->cap, sizeof(logrec *));
    d->fd = -1;
    d->backoff_ms = BACKOFF_MIN_MS;
    f->d[f->nd++] = d;
    return d;
}

logfwd *logfwd_new(p2p_ctx *ctx, const logfwd_opts *o, char **err)
{
    *err = NULL;
    int syslog = o->syslog && *o->syslog;
    if (!syslog && !o->journald)
        return NULL;
    logfwd_target t;
    char why[200];
    if (syslog && logfwd_parse_target(o->syslog, &t, why, sizeof why) != 0) {
        *err = p2p__xasprintf("log_forward_syslog: %s", why);
        return NULL;
    }
    if (o->journald) {
        const char *p = o->journald_socket && *o->journald_socket ? o->journald_socket : "/run/systemd/journal/socket";
        if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            *err = p2p__xasprintf("log_forward_journald_socket: longer than %zu bytes",
                                  sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return NULL;
        }
    }
    logfwd *f = p2p__xcalloc(1, sizeof(*f));
    f->ctx = ctx;
    f->fmt = p2p__xmalloc(LOGFWD_SYSLOG_MAX);
    uv_timer_init(ctx->loop, &f->drain);
    f->drain.data = f;
    f->open_handles++;
    if (syslog) {
        dest *d = dest_new(f, t.proto == LOGFWD_TCP ? D_TCP : D_UDP, "syslog", o->queue);
        snprintf(d->target, sizeof d->target, "%s", o->syslog);
        if (strchr(t.host, ':'))
            uv_ip6_addr(t.host, t.port, (struct sockaddr_in6 *)&d->addr);
        else
            uv_ip4_addr(t.host, t.port, (struct sockaddr_in *)&d->addr);
        uv_timer_init(ctx->loop, &d->retry);
        d->retry.data = d;
        uv_handle_set_data((uv_handle_t *)&d->retry, d);
        f->open_handles++;
        if (d->kind == D_UDP) {
            uv_udp_init(ctx->loop, &d->udp);
            d->udp.data = f;
            f->open_handles++;
        } else {
            tcp_connect(d);
        }
    }
    if (o->journald) {
        dest *d = dest_new(f, D_JOURNAL, "journald", o->queue);
        const char *p = o->journald_socket && *o->journald_socket ? o->journald_socket : "/run/systemd/journal/socket";
        snprintf(d->target, sizeof d->target, "%s", p);
        d->sun.sun_family = AF_UNIX;
        memcpy(d->sun.sun_path, p, strlen(p) + 1);
        d->sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p) + 1);
        d->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (d->fd < 0)
            p2p_log(ctx, P2P_LOG_WARN, SELF_SOURCE, "log forwarding to journald: no socket: %s", strerror(errno));
    }
    return f;
}

void logfwd_publish(logfwd *f, logrec *const *recs, size_t n)
{
    if (!f || f->closing || !n)
        return;
    for (size_t i = 0; i < f->nd; i++)
        for (size_t k = 0; k < n; k++)
            q_push(f->d[i], recs[k]);
    arm(f);
}

json_t *logfwd_stats(logfwd *f)
{
    json_t *o = json_object();
    for (size_t i = 0; f && i < f->nd; i++) {
        dest *d = f->d[i];
        json_t *x = json_pack("{s:s, s:I, s:I, s:I}", "target", d->target, "sent", (json_int_t)d->sent, "dropped",
                              (json_int_t)d->dropped, "queued", (json_int_t)(d->n + d->wr_n));
        if (d->kind == D_TCP)
            json_object_set_new(x, "connected", json_boolean(d->state == S_CONNECTED));
        json_object_set_new(o, d->name, x);
    }
    return o;
}

void logfwd_metrics(logfwd *f, struct p2p_metrics_out *out)
{
    for (size_t i = 0; f && i < f->nd; i++) {
        dest *d = f->d[i];
        p2p__metrics_emit(out, "p2p_logs_forward_sent_total", "Collected log lines forwarded out.",
                          P2P_METRIC_COUNTER, "dest", d->name, (double)d->sent);
        p2p__metrics_emit(out, "p2p_logs_forward_dropped_total",
                          "Collected log lines not forwarded (queue full, or the destination failed).",
                          P2P_METRIC_COUNTER, "dest", d->name, (double)d->dropped);
        p2p__metrics_emit(out, "p2p_logs_forward_queued", "Collected log lines waiting to be forwarded.",
                          P2P_METRIC_GAUGE, "dest", d->name, (double)(d->n + d->wr_n));
    }
}

void logfwd_close(logfwd *f)
{
    if (!f || f->closing)
        return;
    f->closing = 1;
    uv_close((uv_handle_t *)&f->drain, on_handle_closed);
    for (size_t i = 0; i < f->nd; i++) {
        dest *d = f->d[i];
        while (d->n)
            q_pop(d);
        free(d->q);
        d->q = NULL;
        if (d->kind == D_UDP) {
            uv_close((uv_handle_t *)&d->udp, on_handle_closed);
        } else if (d->kind == D_TCP) {
            if (d->state != S_CLOSED && d->state != S_CLOSING) {
                d->tcp.data = d;
                uv_close((uv_handle_t *)&d->tcp, on_tcp_closed);
            }
        } else if (d->fd >= 0) {
            close(d->fd);
            d->fd = -1;
        }
        if (d->kind != D_JOURNAL) {
            d->retry.data = f;
            uv_close((uv_handle_t *)&d->retry, on_handle_closed);
        }
    }
    maybe_free(f);
}
