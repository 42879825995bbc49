/*
 * hub.h — the dashboard hub of the coordinator: the WebSocket /ws/dashboard
 * (docs/dashboard.md, "WebSocket /ws/dashboard"), registered as the
 * "dashboard_ws" component. It authenticates each socket by its first message,
 * sends an `initial` picture, then pushes numbered deltas as things change:
 * membership events, service state changes, log lines (filtered per socket)
 * and whatever other components publish (metrics). Recent deltas are kept in a
 * bounded ring so a page that reconnects resumes without a new `initial`.
 *
 * The API below is for the components above it (the metrics dashboard); all of
 * it is loop-thread only and a no-op when the hub is not running.
 */
#ifndef P2P_WEB_HUB_H
#define P2P_WEB_HUB_H

#include <jansson.h>

#include "core/ctx.h"

/* Adds the "dashboard_ws" component (coordinator only: it needs the log collector). */
int p2p__hub_register(p2p_ctx *ctx);

/* Pushes a delta {"type": type, "seq": <next>, <fields>...} to every
 * authenticated socket and keeps it for resume. `fields` is borrowed (an
 * object; "type" and "seq" in it are ignored). E.g. type "metrics" with
 * {"node_id": id, "samples": [...]}. */
void p2p__hub_publish(p2p_ctx *ctx, const char *type, json_t *fields);

/* The builder of the `initial` message's "metrics" part (the body of GET
 * /api/dashboard/metrics; a new reference). Without one (fn NULL) the hub
 * builds it from the member list: nodes with their states, services from
 * gossip, no samples. */
void p2p__hub_set_snapshot(p2p_ctx *ctx, json_t *(*fn)(p2p_ctx *ctx, void *arg), void *arg);

/* The snapshot the hub builds itself from the member list (no samples; services
 * as gossiped, this node's from its manager): a new reference, NULL when the hub
 * does not run. For a snapshot builder that fills in what it lacks. */
json_t *p2p__hub_membership_snapshot(p2p_ctx *ctx);

/* Authenticated sockets open now (a reporter may sample faster while > 0). */
int p2p__hub_watchers(p2p_ctx *ctx);

#endif
