/*
 * hub.c — the dashboard hub (see hub.h; the protocol is in docs/dashboard.md).
 *
 * Sources of deltas, all on the loop thread:
 *   member   p2p__membership_listen: join/update/suspect/dead/left/alive/reaped;
 *   service  the services manager's listener (this node's pluggable services,
 *            at once) and, for other nodes, the difference between the
 *            services a node gossips before and after an "update" event;
 *   logs     one subscriber of the log collector's live follow (no filter,
 *            bounded queue): each ingested batch becomes one ring entry, sent
 *            to each socket through that socket's filter;
 *   others   p2p__hub_publish (metrics).
 * Every delta gets the next seq and goes into the ring (bounded by entries and
 * bytes). A broadcast delta is encoded once; a log batch once per distinct
 * filter among the sockets it goes to.
 *
 * Slow sockets: a socket over half of dashboard_ws_max_unsent_bytes gets no
 * log lines (they are counted and reported as `skipped` with the next batch it
 * gets); a delta that would take it over the cap closes it with 1008. Ingestion
 * never waits for a socket.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "core/util.h"
#include "http/routes.h"
#include "h2o/websocket.h"
#include "logs/collector.h"
#include "logs/follow.h"
#include "logs/query.h"
#include "membership/node.h"
#include "services/manager.h"
#include "web/hub.h"
#include "web/ws.h"
#include "web/wsproto.h"

#define HUB_SHARED "dashboard_hub"
#define HUB_OWNER "dashboard_ws"
#define HUB_PATH "/ws/dashboard"
#define HUB_AUTH_DEADLINE_MS 5000
#define HUB_PING_MS 20000
#define HUB_TICK_MS 1000
#define HUB_RING_ENTRIES 2048
#define HUB_RING_BYTES (8u << 20)
#define HUB_LOG_QUEUE 20000 /* lines the hub's follow subscriber may hold between two wake-ups */
#define HUB_LOG_CHUNK 500   /* lines per logs delta at most */
#define HUB_INITIAL_LOGS 100
#define HUB_RECHECK_MS 10000 /* a socket's credential is checked again this often (expiry, revocation) */
#define HUB_STALL_MS 10000 /* a socket behind (over half its cap) this long is closed */

typedef struct hub hub;

typedef struct hub_sock {
    struct hub_sock *next, **pprev;
    hub *hub;
    p2p_ws *ws; /* NULL until the upgrade completed */
    int authed;
    p2p_role role;
    char subject[128];
    char ip[64];
    uint64_t opened_ms, last_ping_ms;
    p2p_wsfilter wf;
    logfilter lf;
    uint64_t log_skipped; /* lines not sent to this socket since it fell behind */
    uint64_t behind_since_ms; /* 0: not behind */
    char *cred; /* the token or API key it authenticated with (heap, wiped when freed) */
    size_t cred_len;
    int cred_is_key;
    uint64_t checked_ms;
} hub_sock;

struct hub {
    p2p_ctx *ctx;
    int running;
    hub_sock *socks;
    size_t n_socks, n_authed;
    p2p_wsring ring;
    logcol *col;
    logsub *sub;
    uv_timer_t tick;
    int tick_open;
    json_t *(*snap_fn)(p2p_ctx *, void *);
    void *snap_arg;
    json_t *gossip_svcs; /* {node_id: {service: status}} as last seen */
    p2p_wsbuf *pong;
    /* figures */
    uint64_t slow_closed, auth_failed, deltas;
};

static hub *get_hub(p2p_ctx *ctx)
{
    hub *h = p2p_shared_get(ctx, HUB_SHARED);
    return h && h->running ? h : NULL;
}

static uint64_t now_ms(hub *h)
{
    return uv_now(h->ctx->loop);
}

/* ---- views ------------------------------------------------------------------------------ */

static const char *state_of(const char *status)
{
    return !strcmp(status, "leave") ? "left" : status;
}

/* A member (membership's JSON) as the contract's NodeView. */
static json_t *node_view(json_t *m)
{
    json_t *addrs = json_object_get(m, "addresses");
    const char *addr = json_string_value(json_array_get(addrs, 0));
    json_int_t port = json_integer_value(json_object_get(m, "port"));
    json_t *v = json_pack("{s:O, s:O, s:s, s:b, s:o, s:O, s:n, s:n, s:n, s:O, s:O}", "node_id",
                          json_object_get(m, "node_id"), "role", json_object_get(m, "role"), "state",
                          state_of(json_string_value(json_object_get(m, "status")) ?: "unknown"), "stale", 0, "addr",
                          addr ? json_string(addr) : json_null(), "addresses", addrs ? addrs : json_null(),
                          "version", "last_report", "latest", "last_seen", json_object_get(m, "last_seen") ?: json_null(),
                          "incarnation", json_object_get(m, "incarnation") ?: json_null());
    if (v && addr) {
        char *ha = strchr(addr, ':') ? p2p__xasprintf("[%s]:%lld", addr, (long long)port)
                                     : p2p__xasprintf("%s:%lld", addr, (long long)port);
        json_object_set_new(v, "http_addr", json_string(ha));
        free(ha);
    } else if (v) {
        json_object_set_new(v, "http_addr", json_null());
    }
    return v;
}

/* A service as the contract's ServiceView, from what a node gossips ({name,
 * version, status, methods}). */
static json_t *gossip_service_view(const char *node_id, json_t *s)
{
    const char *status = json_string_value(json_object_get(s, "status"));
    json_t *methods = json_object();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(s, "methods"), i, m) if (json_is_string(m))
        json_object_set_new(methods, json_string_value(m), json_object());
    return json_pack("{s:s, s:O, s:O, s:n, s:s, s:s, s:o, s:{}}", "node_id", node_id, "name",
                     json_object_get(s, "name"), "version", json_object_get(s, "version") ?: json_null(), "kind",
                     "state", status && *status ? status : "running", "health", "unknown", "methods", methods,
                     "metrics");
}

/* This node's pluggable service (the services manager's description) as a ServiceView. */
static json_t *local_service_view(p2p_ctx *ctx, json_t *d)
{
    const char *hs = json_string_value(json_object_get(json_object_get(d, "health"), "status"));
    const char *health = !hs ? "unknown" : !strcmp(hs, "ok") ? "healthy" : hs;
    json_t *methods = json_object();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(d, "methods"), i, m) if (json_is_string(m))
        json_object_set_new(methods, json_string_value(m), json_object());
    json_t *v = json_pack("{s:s, s:O, s:O, s:O, s:O, s:s, s:o, s:{}}", "node_id", ctx->cfg.node_id, "name",
                          json_object_get(d, "name"), "version", json_object_get(d, "version") ?: json_null(), "kind",
                          json_object_get(d, "type") ?: json_null(), "state", json_object_get(d, "state"), "health",
                          health, "methods", methods, "metrics");
    if (v && json_is_string(json_object_get(d, "reason")))
        json_object_set(v, "reason", json_object_get(d, "reason"));
    return v;
}

/* The member list's entry for `node_id` (borrowed from `all`), or NULL. */
static json_t *find_member(json_t *all, const char *node_id)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(all, "nodes"), i, m) if (!strcmp(json_string_value(json_object_get(m, "node_id")) ?: "", node_id)) return m;
    return NULL;
}

/* GET /api/dashboard/metrics's shape, from the member list (no samples). */
static json_t *membership_snapshot(hub *h)
{
    p2p_ctx *ctx = h->ctx;
    json_t *all = p2p__membership_nodes_json(ctx);
    json_t *workers = json_object(), *services = json_array(), *coord = json_null();
    int total = 0, alive = 0, suspect = 0, dead = 0, svc_total = 0, svc_running = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(all, "nodes"), i, m)
    {
        const char *id = json_string_value(json_object_get(m, "node_id"));
        const char *st = json_string_value(json_object_get(m, "status")) ?: "";
        if (!id)
            continue;
        total++;
        alive += !strcmp(st, "alive");
        suspect += !strcmp(st, "suspect");
        dead += !strcmp(st, "dead");
        json_t *v = node_view(m);
        if (json_is_true(json_object_get(m, "self"))) {
            json_decref(coord);
            coord = v;
        } else {
            json_object_set_new(workers, id, v);
        }
        if (json_is_true(json_object_get(m, "self")))
            continue; /* this node's services come from the manager below, and its built-ins from gossip */
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(m, "services"), k, s)
        {
            json_t *sv = gossip_service_view(id, s);
            svc_total++;
            svc_running += !strcmp(json_string_value(json_object_get(sv, "state")) ?: "", "running");
            json_array_append_new(services, sv);
        }
    }
    /* this node: pluggable services as the manager describes them, built-ins from its own record */
    json_t *local = p2p__services_list_json(ctx);
    json_t *self = find_member(all, ctx->cfg.node_id);
    size_t k;
    json_t *s;
    json_array_foreach(json_object_get(self, "services"), k, s)
    {
        const char *name = json_string_value(json_object_get(s, "name")) ?: "";
        int pluggable = 0;
        size_t j;
        json_t *d;
        json_array_foreach(local, j, d) pluggable |= !strcmp(json_string_value(json_object_get(d, "name")) ?: "", name);
        if (pluggable)
            continue;
        json_t *sv = gossip_service_view(ctx->cfg.node_id, s);
        json_object_set_new(sv, "kind", json_string("builtin"));
        svc_total++;
        svc_running += !strcmp(json_string_value(json_object_get(sv, "state")) ?: "", "running");
        json_array_append_new(services, sv);
    }
    json_array_foreach(local, k, s)
    {
        json_t *sv = local_service_view(ctx, s);
        svc_total++;
        svc_running += !strcmp(json_string_value(json_object_get(sv, "state")) ?: "", "running");
        json_array_append_new(services, sv);
    }
    json_decref(local);
    json_decref(all);
    p2p_component *me = p2p__component_find(ctx, "dashboard_ws");
    uint64_t since = me && me->started_at_ms ? me->started_at_ms : p2p__wall_ms();
    json_t *stats = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:n, s:n, s:I}", "nodes_total", total, "nodes_alive",
                              alive, "nodes_suspect", suspect, "nodes_dead", dead, "services_total", svc_total,
                              "services_running", svc_running, "cpu_avg", "mem_avg", "uptime_s",
                              (json_int_t)((p2p__wall_ms() - since) / 1000));
    return json_pack("{s:o, s:o, s:o, s:o, s:I, s:s}", "coordinator", coord, "workers", workers, "services", services,
                     "cluster_stats", stats, "generated_at", (json_int_t)(p2p__wall_ms() / 1000), "source",
                     "membership");
}

json_t *p2p__hub_membership_snapshot(p2p_ctx *ctx)
{
    hub *h = get_hub(ctx);
    return h ? membership_snapshot(h) : NULL;
}

/* ---- delivery ------------------------------------------------------------------------------ */

static void sock_close(hub_sock *s, uint16_t code, const char *why)
{
    if (s->ws)
        p2p__ws_close(s->ws, code, why);
}

static void send_error(hub_sock *s, const char *msg)
{
    json_t *o = json_pack("{s:s, s:s}", "type", "error", "error", msg);
    p2p_wsbuf *b = p2p__wsbuf_json(o);
    json_decref(o);
    p2p__ws_send(s->ws, b);
    p2p__wsbuf_unref(b);
}

static int send_or_cut(hub_sock *s, p2p_wsbuf *b)
{
    int r = p2p__ws_send(s->ws, b);
    if (r == -ENOBUFS) {
        hub *h = s->hub;
        h->slow_closed++;
        p2p_log(h->ctx, P2P_LOG_WARN, "dashboard", "closing the dashboard socket of %s (%s): %zu bytes unread",
                s->subject, s->ip, p2p__ws_unsent(s->ws));
        sock_close(s, 1008, "too slow: too many unsent bytes");
    }
    return r;
}

static size_t count_matching(logrec *const *recs, size_t n, const logfilter *f)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p2p__ws_log_match(f, recs[i]);
    return k;
}

/* Sends one ring entry to one socket. `cache` shares a log batch's encoding
 * between sockets with the same filter (in/out). */
static void deliver(hub_sock *s, const p2p_wsring_entry *e, const p2p_wsfilter **cache_f, p2p_wsbuf **cache_b)
{
    if (!s->authed || !s->ws)
        return;
    if (e->msg) {
        send_or_cut(s, e->msg);
        return;
    }
    size_t cap = (size_t)s->hub->ctx->cfg.dashboard_ws_max_unsent_bytes;
    if (p2p__ws_unsent(s->ws) > cap / 2) { /* behind: count instead of queueing more */
        s->log_skipped += count_matching(e->recs, e->n, &s->lf);
        if (!s->behind_since_ms)
            s->behind_since_ms = now_ms(s->hub);
        return;
    }
    s->behind_since_ms = 0;
    p2p_wsbuf *b;
    if (s->log_skipped == 0 && e->skipped == 0 && *cache_f && memcmp(*cache_f, &s->wf, sizeof s->wf) == 0) {
        b = *cache_b ? p2p__wsbuf_ref(*cache_b) : NULL;
    } else {
        b = p2p__ws_logs(e->seq, e->recs, e->n, &s->lf, s->log_skipped + e->skipped);
        if (s->log_skipped == 0 && e->skipped == 0) {
            p2p__wsbuf_unref(*cache_b);
            *cache_f = &s->wf;
            *cache_b = b ? p2p__wsbuf_ref(b) : NULL;
        }
    }
    if (!b)
        return;
    if (send_or_cut(s, b) == 0)
        s->log_skipped = 0;
    p2p__wsbuf_unref(b);
}

static void broadcast(hub *h, const p2p_wsring_entry *e)
{
    h->deltas++;
    const p2p_wsfilter *cf = NULL;
    p2p_wsbuf *cb = NULL;
    for (hub_sock *s = h->socks, *next; s; s = next) {
        next = s->next; /* a close may free `s` at once (a failed write) */
        deliver(s, e, &cf, &cb);
    }
    p2p__wsbuf_unref(cb);
}

void p2p__hub_publish(p2p_ctx *ctx, const char *type, json_t *fields)
{
    hub *h = get_hub(ctx);
    if (!h || !type)
        return;
    broadcast(h, p2p__wsring_push_msg(&h->ring, type, json_is_object(fields) ? fields : NULL));
}

void p2p__hub_set_snapshot(p2p_ctx *ctx, json_t *(*fn)(p2p_ctx *, void *), void *arg)
{
    hub *h = p2p_shared_get(ctx, HUB_SHARED);
    if (!h)
        return;
    h->snap_fn = fn;
    h->snap_arg = arg;
}

int p2p__hub_watchers(p2p_ctx *ctx)
{
    hub *h = get_hub(ctx);
    return h ? (int)h->n_authed : 0;
}

/* ---- sources ---------------------------------------------------------------------------- */

static json_t *services_status_map(json_t *member)
{
    json_t *map = json_object();
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(member, "services"), i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        if (name)
            json_object_set_new(map, name, json_string(json_string_value(json_object_get(s, "status")) ?: ""));
    }
    return map;
}

/* Service deltas for what changed in a node's gossiped services. */
static void diff_services(hub *h, const char *node_id, json_t *member)
{
    json_t *now = services_status_map(member);
    json_t *before = json_object_get(h->gossip_svcs, node_id);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(member, "services"), i, s)
    {
        const char *name = json_string_value(json_object_get(s, "name"));
        if (!name)
            continue;
        json_t *old = json_object_get(before, name);
        if (before && old && json_equal(old, json_object_get(now, name)))
            continue;
        if (!before)
            continue; /* first sight of the node: its services came with the join / initial */
        json_t *f = json_pack("{s:s, s:o}", "node_id", node_id, "service", gossip_service_view(node_id, s));
        broadcast(h, p2p__wsring_push_msg(&h->ring, "service", f));
        json_decref(f);
    }
    json_object_set_new(h->gossip_svcs, node_id, now);
}

static void on_member(p2p_ctx *ctx, const char *ev, const char *node_id, void *arg)
{
    hub *h = arg;
    if (!h->running || !node_id || !strcmp(node_id, ctx->cfg.node_id))
        return;
    json_t *all = p2p__membership_nodes_json(ctx);
    json_t *m = find_member(all, node_id);
    json_t *f = json_pack("{s:s, s:s, s:o}", "event", state_of(ev), "node_id", node_id, "node",
                          m ? node_view(m) : json_null());
    broadcast(h, p2p__wsring_push_msg(&h->ring, "member", f));
    json_decref(f);
    if (!strcmp(ev, "reaped"))
        json_object_del(h->gossip_svcs, node_id);
    else if (m)
        diff_services(h, node_id, m);
    json_decref(all);
}

static void on_local_service(p2p_ctx *ctx, const char *name, json_t *desc, void *arg)
{
    (void)name;
    hub *h = arg;
    if (!h->running)
        return;
    json_t *f = json_pack("{s:s, s:o}", "node_id", ctx->cfg.node_id, "service", local_service_view(ctx, desc));
    broadcast(h, p2p__wsring_push_msg(&h->ring, "service", f));
    json_decref(f);
}

static void on_logs(logsub *sub, void *arg)
{
    hub *h = arg;
    if (!h->running)
        return;
    logrec *recs[HUB_LOG_CHUNK];
    for (;;) {
        uint64_t skipped = 0;
        size_t n = logsub_take(sub, recs, HUB_LOG_CHUNK, &skipped);
        if (n == 0 && skipped == 0)
            break;
        broadcast(h, p2p__wsring_push_logs(&h->ring, recs, n, skipped));
        if (n < HUB_LOG_CHUNK)
            break;
    }
}

/* ---- one socket's protocol --------------------------------------------------------------- */

static void send_initial(hub_sock *s)
{
    hub *h = s->hub;
    json_t *metrics = h->snap_fn ? h->snap_fn(h->ctx, h->snap_arg) : NULL;
    if (!metrics)
        metrics = membership_snapshot(h);
    json_t *logs = json_array(), *sources = json_object();
    if (h->col) {
        logquery_result q;
        logquery_run(p2p__logcol_store(h->col), &s->lf, NULL, HUB_INITIAL_LOGS, 0, &q);
        for (size_t i = 0; i < q.n; i++)
            json_array_append_new(logs, logrec_to_json(q.recs[i]));
        logquery_result_free(&q);
        json_decref(sources);
        sources = p2p__logcol_sources_json(h->col);
    }
    json_t *o = json_pack("{s:s, s:I, s:{s:o, s:o, s:o, s:{s:s, s:s}}}", "type", "initial", "seq",
                          (json_int_t)h->ring.last_seq, "data", "metrics", metrics, "logs", logs, "log_sources",
                          sources, "me", "subject", s->subject, "role", p2p__role_name(s->role));
    p2p_wsbuf *b = p2p__wsbuf_json(o);
    json_decref(o);
    send_or_cut(s, b);
    p2p__wsbuf_unref(b);
}

static void set_filter(hub_sock *s, const p2p_wsfilter *f)
{
    s->wf = *f;
    p2p__wsfilter_logfilter(&s->wf, &s->lf);
}

static void refuse(hub_sock *s, const char *why)
{
    s->hub->auth_failed++;
    send_error(s, why);
    sock_close(s, 4401, "unauthorized");
}

/* Checks a credential as HTTP auth would: the admin API key, or a bearer token
 * of the viewer or admin role. 0 with role and subject, or -EACCES with *why. */
static int check_cred(hub *h, const char *ip, const char *cred, size_t len, int *is_key, p2p_role *role,
                      char *subject, size_t sn, const char **why)
{
    p2p_guard *g = p2p__guard(h->ctx);
    *why = "the node cannot authenticate yet";
    if (!g)
        return -EACCES;
    if (p2p__guard_admin_key_ok(g, cred, len)) {
        *is_key = 1;
        *role = P2P_ROLE_ADMIN;
        snprintf(subject, sn, "admin");
        return 0;
    }
    /* the same check as an Authorization: Bearer header on any route */
    char *authz = p2p__xasprintf("Bearer %s", cred);
    p2p_identity id;
    p2p__guard_identify(g, NULL, authz, strlen(authz), ip, NULL, &id);
    OPENSSL_cleanse(authz, strlen(authz));
    free(authz);
    if (id.role != P2P_ROLE_ADMIN && id.role != P2P_ROLE_VIEWER) {
        *why = id.why ? id.why : "not a viewer or admin token";
        return -EACCES;
    }
    *is_key = 0;
    *role = id.role;
    snprintf(subject, sn, "%s", id.subject);
    return 0;
}

static void do_auth(hub_sock *s, p2p_wsm *m)
{
    hub *h = s->hub;
    const char *why = NULL;
    if (check_cred(h, s->ip, m->token, m->token_len, &s->cred_is_key, &s->role, s->subject, sizeof s->subject,
                   &why) != 0) {
        p2p_log(h->ctx, P2P_LOG_WARN, "dashboard", "refused a dashboard socket from %s: %s", s->ip, why);
        char msg[160];
        snprintf(msg, sizeof msg, "authentication failed: %s", why);
        refuse(s, msg);
        return;
    }
    s->cred = m->token; /* kept to check it again: an expired or revoked token ends the socket */
    s->cred_len = m->token_len;
    m->token = NULL;
    m->token_len = 0;
    s->checked_ms = now_ms(h);
    if (m->has_filter)
        set_filter(s, &m->filter);
    s->authed = 1;
    h->n_authed++;
    size_t first = 0;
    if (m->has_resume && p2p__wsring_resume(&h->ring, m->resume, &first) == 0) {
        json_t *o = json_pack("{s:s, s:I}", "type", "resumed", "seq", (json_int_t)h->ring.last_seq);
        p2p_wsbuf *b = p2p__wsbuf_json(o);
        json_decref(o);
        int r = send_or_cut(s, b);
        p2p__wsbuf_unref(b);
        /* the encoding cache is for one entry across sockets: a fresh one per entry here,
         * else every log batch replayed would be the first one again */
        for (size_t i = first; r == 0 && i < h->ring.n; i++) {
            const p2p_wsfilter *cf = NULL;
            p2p_wsbuf *cb = NULL;
            deliver(s, p2p__wsring_at(&h->ring, i), &cf, &cb);
            p2p__wsbuf_unref(cb);
        }
        return;
    }
    send_initial(s);
}

static void on_text(p2p_ws *ws, const char *data, size_t len, void *arg)
{
    hub_sock *s = arg;
    p2p_wsm m;
    char err[200];
    if (p2p__wsm_decode(data, len, &m, err, sizeof err) != 0) {
        if (!s->authed)
            refuse(s, err);
        else
            send_error(s, err);
        return;
    }
    if (!s->authed) {
        if (m.type != P2P_WSM_AUTH)
            refuse(s, "authenticate first: {\"type\": \"auth\", \"token\": ...}");
        else
            do_auth(s, &m);
    } else if (m.type == P2P_WSM_AUTH) {
        send_error(s, "already authenticated");
    } else if (m.type == P2P_WSM_LOG_FILTER) {
        set_filter(s, &m.filter);
    } else if (m.type == P2P_WSM_PING) {
        send_or_cut(s, s->hub->pong);
    }
    p2p__wsm_free(&m);
}

static void unlink_sock(hub_sock *s)
{
    hub *h = s->hub;
    if (s->pprev) {
        *s->pprev = s->next;
        if (s->next)
            s->next->pprev = s->pprev;
        s->pprev = NULL;
    }
    h->n_socks--;
    if (s->authed)
        h->n_authed--;
    if (s->cred) {
        OPENSSL_cleanse(s->cred, s->cred_len);
        free(s->cred);
    }
    free(s);
}

static void on_closed(p2p_ws *ws, void *arg)
{
    (void)ws;
    unlink_sock(arg);
}

static const p2p_ws_handler sock_handler = {on_text, on_closed};

static void on_upgraded(void *arg, h2o_socket_t *sock, size_t reqsize)
{
    hub_sock *s = arg;
    hub *h = s->hub;
    if (!sock) {
        unlink_sock(s);
        return;
    }
    const p2p_config *cfg = &h->ctx->cfg;
    s->opened_ms = s->last_ping_ms = now_ms(h);
    s->ws = p2p__ws_start(sock, reqsize, (size_t)cfg->dashboard_ws_max_message_bytes,
                          (size_t)cfg->dashboard_ws_max_unsent_bytes, &sock_handler, s);
}

/* ---- GET /ws/dashboard --------------------------------------------------------------------- */

static h2o_iovec_t header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

/* A browser's Origin must be the page's: this server, as the browser reached it. */
static int origin_ok(p2p_ctx *ctx, h2o_req_t *req)
{
    h2o_iovec_t o = header(req, "origin");
    if (!o.base)
        return 1; /* not a browser: nothing ambient to hijack, and the token is still required */
    const char *scheme = ctx->cfg.https_enabled ? "https://" : "http://";
    size_t sl = strlen(scheme);
    return o.len == sl + req->authority.len && strncasecmp(o.base, scheme, sl) == 0 && req->authority.len > 0 &&
           strncasecmp(o.base + sl, req->authority.base, req->authority.len) == 0;
}

static void ws_route(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    hub *h = hr->udata;
    if (!h->running || p2p__http_draining(hr->ctx)) {
        p2p__http_send_error(req, 503, "Service Unavailable", "the dashboard is not running");
        return;
    }
    const char *key = NULL;
    if (req->version != 0x101 || h2o_is_websocket_handshake(req, &key) != 0 || !key) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
        p2p__http_send_error(req, 426, "Upgrade Required",
                             "this is the dashboard's WebSocket: connect with an HTTP/1.1 WebSocket handshake");
        return;
    }
    if (!origin_ok(hr->ctx, req)) {
        p2p_log(hr->ctx, P2P_LOG_WARN, "dashboard", "refused a dashboard socket from another origin");
        p2p__http_send_error(req, 403, "Forbidden", "cross-origin WebSocket refused: open the dashboard from this node");
        return;
    }
    h2o_iovec_t ver = header(req, "sec-websocket-version");
    if (!ver.base || ver.len != 2 || memcmp(ver.base, "13", 2) != 0) {
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-version"), 0, NULL,
                              H2O_STRLIT("13"));
        p2p__http_send_error(req, 426, "Upgrade Required", "WebSocket version 13 only");
        return;
    }
    if (h->n_socks >= (size_t)hr->ctx->cfg.dashboard_ws_max_sockets) {
        p2p__http_send_error(req, 503, "Service Unavailable", "too many dashboard sockets are open; retry later");
        return;
    }
    /* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) */
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char src[24 + sizeof guid - 1], sha[SHA_DIGEST_LENGTH];
    memcpy(src, key, 24);
    memcpy(src + 24, guid, sizeof guid - 1);
    SHA1(src, sizeof src, sha);
    char *accept = h2o_mem_alloc_pool(&req->pool, 32);
    int alen = EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, accept,
                          (size_t)alen);
    hub_sock *s = p2p__xcalloc(1, sizeof(*s));
    s->hub = h;
    const p2p_identity *id = hr->caller;
    snprintf(s->ip, sizeof s->ip, "%s", id && id->client_ip[0] ? id->client_ip : "-");
    snprintf(s->subject, sizeof s->subject, "-");
    s->next = h->socks;
    if (h->socks)
        h->socks->pprev = &s->next;
    s->pprev = &h->socks;
    h->socks = s;
    h->n_socks++;
    if (p2p__http_upgrade(hr->ctx, req, "websocket", on_upgraded, s) != 0) {
        unlink_sock(s);
        p2p__http_send_error(req, 426, "Upgrade Required", "WebSocket needs HTTP/1.1");
    }
}

/* ---- component ------------------------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    hub *h = t->data;
    uint64_t now = now_ms(h);
    int draining = p2p__http_draining(h->ctx);
    uint64_t idle = (uint64_t)h->ctx->cfg.dashboard_ws_idle_timeout * 1000;
    for (hub_sock *s = h->socks, *next; s; s = next) {
        next = s->next; /* a close may free `s` at once (a failed write) */
        if (!s->ws)
            continue;
        if (draining) {
            sock_close(s, 1001, "the node is shutting down");
        } else if (!s->authed && now - s->opened_ms >= HUB_AUTH_DEADLINE_MS) {
            refuse(s, "authentication timed out: send {\"type\": \"auth\", \"token\": ...} within 5 s");
        } else if (s->behind_since_ms && p2p__ws_unsent(s->ws) > (size_t)h->ctx->cfg.dashboard_ws_max_unsent_bytes / 2 &&
                   now - s->behind_since_ms >= HUB_STALL_MS) {
            h->slow_closed++;
            p2p_log(h->ctx, P2P_LOG_WARN, "dashboard", "closing the dashboard socket of %s (%s): not reading for %d s",
                    s->subject, s->ip, HUB_STALL_MS / 1000);
            sock_close(s, 1008, "too slow: not reading");
        } else if (s->authed && s->cred && now - s->checked_ms >= HUB_RECHECK_MS) {
            s->checked_ms = now;
            int is_key = 0;
            p2p_role role;
            char subject[128];
            const char *why = NULL;
            if (check_cred(h, s->ip, s->cred, s->cred_len, &is_key, &role, subject, sizeof subject, &why) != 0 ||
                role != s->role) {
                p2p_log(h->ctx, P2P_LOG_INFO, "dashboard", "closing the dashboard socket of %s (%s): %s", s->subject,
                        s->ip, why ? why : "its role changed");
                char msg[160];
                snprintf(msg, sizeof msg, "authentication no longer valid: %s", why ? why : "role changed");
                send_error(s, msg);
                sock_close(s, 4401, "unauthorized");
            }
        } else if (s->authed && now - p2p__ws_last_rx(s->ws) >= idle) {
            sock_close(s, 1001, "idle");
        } else if (s->authed && now - s->last_ping_ms >= HUB_PING_MS) {
            s->last_ping_ms = now;
            p2p__ws_ping(s->ws);
        }
    }
}

static int hub_start(p2p_component *c, char **err)
{
    hub *h = c->self;
    p2p_ctx *ctx = c->ctx;
    h->col = p2p_shared_get(ctx, "log_collector");
    if (h->col && !h->sub) {
        logfilter all = {0};
        char e[200];
        h->sub = logfollow_subscribe(p2p__logcol_follow(h->col), &all, 0, HUB_LOG_QUEUE, on_logs, h, e, sizeof e);
    }
    static const p2p_http_route_desc route = {"GET", HUB_PATH, P2P_HTTP_EXACT, P2P_HTTP_SELF, P2P_RL_OTHER, HUB_OWNER,
                                              ws_route, NULL};
    p2p_http_route_desc d = route;
    d.udata = h;
    int r = p2p__http_route_add(ctx, &d);
    if (r != 0) {
        *err = p2p__xasprintf("cannot add %s: %s", HUB_PATH, p2p_strerror(r));
        return r;
    }
    uv_timer_init(ctx->loop, &h->tick);
    h->tick.data = h;
    uv_timer_start(&h->tick, on_tick, HUB_TICK_MS, HUB_TICK_MS);
    uv_unref((uv_handle_t *)&h->tick);
    h->tick_open = 1;
    h->running = 1;
    return 0;
}

static void hub_stop(p2p_component *c)
{
    hub *h = c->self;
    for (hub_sock *s = h->socks, *next; s; s = next) {
        next = s->next;
        sock_close(s, 1001, "the node is shutting down");
    }
    h->running = 0;
    p2p__http_routes_remove_owner(c->ctx, HUB_OWNER);
    if (h->sub && h->col) {
        logsub_close(p2p__logcol_follow(h->col), h->sub);
        h->sub = NULL;
    }
    if (h->tick_open) {
        uv_close((uv_handle_t *)&h->tick, NULL);
        h->tick_open = 0;
    }
}

static const p2p_component_ops hub_ops = {
    .name = "dashboard_ws",
    .deps = (const char *const[]){"http", "membership", "services", "log_collector", NULL},
    .start = hub_start,
    .stop = hub_stop,
};

static void free_hub(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    hub *h = arg;
    p2p__wsring_free(&h->ring);
    json_decref(h->gossip_svcs);
    p2p__wsbuf_unref(h->pong);
    free(h);
}

int p2p__hub_register(p2p_ctx *ctx)
{
    hub *h = p2p__xcalloc(1, sizeof(*h));
    h->ctx = ctx;
    /* seqs start at the start time in microseconds: a page resuming against a
     * restarted node names a seq this run never issued, and gets an initial */
    p2p__wsring_init(&h->ring, HUB_RING_ENTRIES, HUB_RING_BYTES, p2p__wall_ms() * 1000);
    h->gossip_svcs = json_object();
    h->pong = p2p__wsbuf_new("{\"type\":\"pong\"}", 15);
    if (!p2p__component_add(ctx, &hub_ops, h)) {
        free_hub(ctx, h);
        return -EEXIST;
    }
    p2p_shared_set(ctx, HUB_SHARED, h);
    p2p__ctx_on_shutdown(ctx, free_hub, h);
    p2p__membership_listen(ctx, on_member, h);
    /* the services manager exists from its registration on (its listeners outlive its runs) */
    p2p__services_listen(ctx, on_local_service, h);
    return 0;
}
