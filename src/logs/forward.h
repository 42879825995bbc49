/*
 * forward.h — forwarding every collected line out of the cluster (coordinator):
 * to a syslog server (RFC 5424 over UDP, or over TCP with octet-counting framing
 * as RFC 6587 describes) and/or to the local journald (native protocol
 * datagrams on its socket).
 *
 * Never blocks ingestion: the collector hands over record references, each
 * destination keeps at most `queue` of them (when full the oldest is dropped and
 * counted), and everything is sent on the loop with non-blocking I/O, a bounded
 * amount per loop turn. A destination that is away (TCP refused or cut,
 * journald socket missing, UDP send errors) costs counted drops, never a stall;
 * TCP reconnects with a capped backoff. Its own trouble is logged under the
 * source "logs.shipper", which is never shipped (so never forwarded): no loop.
 */
#ifndef P2P_LOGS_FORWARD_H
#define P2P_LOGS_FORWARD_H

#include <jansson.h>
#include <stddef.h>

#include "core/ctx.h"
#include "logs/record.h"

typedef struct logfwd logfwd;

typedef struct logfwd_opts {
    const char *syslog;         /* "" / NULL = off; else udp://IP:PORT or tcp://IP:PORT */
    int journald;               /* forward to journald */
    const char *journald_socket; /* its socket (default /run/systemd/journal/socket) */
    size_t queue;               /* records waiting per destination */
} logfwd_opts;

/* Returns NULL (and *err NULL) when nothing is configured, NULL with *err set
 * (heap) on a bad option, else the forwarder (sending starts at once). */
logfwd *logfwd_new(p2p_ctx *ctx, const logfwd_opts *o, char **err);
/* Queues the records (references taken) for every destination. */
void logfwd_publish(logfwd *f, logrec *const *recs, size_t n);
/* {syslog: {target, sent, dropped, queued, connected?}, journald: {...}} */
json_t *logfwd_stats(logfwd *f);
/* Emits p2p_logs_forward_{sent,dropped}_total and _queued, labelled by destination. */
struct p2p_metrics_out;
void logfwd_metrics(logfwd *f, struct p2p_metrics_out *out);
/* Closes the sockets and frees everything once they are closed (on the loop). */
void logfwd_close(logfwd *f);

#endif
