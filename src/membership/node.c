/*
 * node.c — the "membership" component (see node.h): wires the pure SWIM state
 * machine to a libuv UDP socket, seals every datagram, drives the protocol
 * timer, runs push-pull anti-entropy over HTTPS, keeps the snapshot, and
 * answers lookups for the API and remote calls.
 *
 * Timers: one for SWIM (re-armed to p2p_swim_next_timeout after every event),
 * one for push-pull (adaptive: gossip_interval_min .. gossip_interval_max
 * seconds, longer as the cluster grows), one for housekeeping (meta changes,
 * rejoin with backoff while alone, snapshot every 10 s when changed).
 *
 * Advertised address (addrsel.h): advertise_address, else a specific
 * bind_address, else detected. Detection never blocks the start: the node
 * starts with the best-ranked interface address (p2p__addrsel_rank against the
 * coordinator_addresses that are IP literals), then a probe
 * (p2p__addrsel_select) checks which candidate reaches a coordinator; if that
 * is another address the self record changes (p2p_swim_set_addrs: new
 * incarnation, ALIVE gossiped). A watcher re-reads the interfaces every 5 s and
 * probes again when they changed. Every change is logged "advertising A (why)".
 *
 * Records owned by their node (records.h): the node's certificate and key are
 * loaded once into a p2p__records (again after renewal: the self record then
 * names the new certificate, p2p_swim_set_cert_id), which signs our record
 * and checks the others' for the swim instance through its callbacks. Push-pull
 * carries the same signed records with their certificates, and the peer's
 * "from" must be the node id of its client certificate. Refused records are
 * counted (records_refused in the swim stats, the reasons in the records
 * stats) and logged at most once per 10 s.
 */
#include "membership/node.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "core/util.h"
#include "membership/addrsel.h"
#include "membership/pushpull.h"
#include "membership/records.h"
#include "membership/seal.h"
#include "membership/swim.h"
#include "pki/cluster.h"
#include "pki/enroll.h"
#include "rpc/client.h"
#include "rpc/registry.h"

#define RECV_BUF 65536
#define SEND_BUF (65507)
#define HOUSEKEEP_MS 1000
#define SNAPSHOT_EVERY_MS 10000
#define MAX_LISTENERS 8

typedef struct listener {
    p2p_membership_listener fn;
    void *arg;
} listener;

typedef struct membership {
    p2p_ctx *ctx;
    int running;
    p2p_swim *swim;
    p2p__seal_ctx *seal;
    p2p__records *rec; /* NULL when TLS is off: records are then neither signed nor checked */
    uint64_t refused_logged, refused_log_ms;
    p2p__httpc *http;
    uv_udp_t udp;
    int udp_open;
    uv_timer_t timer, pp_timer, hk_timer;
    int timers_open;
    uint8_t recv_buf[RECV_BUF];
    uint8_t send_buf[SEND_BUF];
    uint8_t open_buf[RECV_BUF];
    char *meta;
    json_t *metadata; /* the record's "metadata" object, set by other components */
    char self_addr[INET6_ADDRSTRLEN];
    /* address selection (detect mode only) */
    int detect;                                    /* no advertise/bind override */
    char *coord_ips[P2P_ADDRSEL_MAX_TARGETS];      /* coordinator IP literals ("ip:port") */
    size_t n_coord_ips;
    p2p_addrsel_probe *probe;                      /* in flight, or NULL */
    p2p_addrsel_watch *watch;
    int reprobe;                                   /* interfaces changed while probing */
    listener listeners[MAX_LISTENERS];
    size_t n_listeners;
    /* joining */
    uint64_t next_join_ms;
    unsigned join_backoff;
    /* snapshot */
    int dirty;
    uint64_t last_snapshot_ms;
    int snapshot_writing;
    /* push-pull */
    int pp_inflight, rc_inflight;
    unsigned pp_level;          /* quiet rounds in a row: the interval doubles with each */
    int pp_changed;             /* a membership change since the last round */
    uint64_t next_reconnect_ms; /* next push-pull to a dead member */
    /* counters (exported by gossip_metrics) */
    uint64_t send_errors, pushpulls, pushpull_failures;
    /* rate-limited drop log: what was dropped since the last line */
    uint64_t drop_log_ms;      /* when the last drop line was written (0: never) */
    uint64_t drops_unlogged;   /* datagrams dropped since then */
    char drop_last_from[INET6_ADDRSTRLEN + 8];
    const char *drop_last_why;
} membership;

static membership *get(p2p_ctx *ctx)
{
    return p2p_shared_get(ctx, "membership");
}

static uint64_t now_ms(membership *m)
{
    return uv_now(m->ctx->loop);
}

/* ---- datagrams -------------------------------------------------------------- */

static void on_swim_send(void *udata, const char *addr, uint16_t port, const uint8_t *buf, size_t len)
{
    membership *m = udata;
    if (!m->udp_open)
        return;
    size_t out_len = 0;
    if (p2p__seal(m->seal, p2p__wall_ms(), buf, len, m->send_buf, sizeof m->send_buf, &out_len) != 0) {
        m->send_errors++;
        return;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss) != 0) {
        m->send_errors++;
        return;
    }
    uv_buf_t b = uv_buf_init((char *)m->send_buf, (unsigned)out_len);
    if (uv_udp_try_send(&m->udp, &b, 1, (const struct sockaddr *)&ss) < 0)
        m->send_errors++; /* a full socket buffer drops the datagram, as the network would */
}

/* ---- record signatures (records.h) ------------------------------------------ */

/* A certificate id as the seal layer's 64-bit window key. */
static uint64_t cert_id64(const uint8_t *id)
{
    uint64_t v = 0;
    for (int i = 0; i < P2P_GOSSIP_CERT_ID_LEN; i++)
        v = v << 8 | id[i];
    return v;
}

static int on_swim_sign(void *udata, const uint8_t *tbs, size_t len, p2p_gossip_sig *sig)
{
    membership *m = udata;
    return p2p__records_sign(m->rec, tbs, len, sig);
}

static int on_swim_verify(void *udata, const char *id, const char *role, const uint8_t *tbs, size_t len,
                          const p2p_gossip_sig *sig)
{
    membership *m = udata;
    return p2p__records_verify(m->rec, id, role, tbs, len, sig);
}

static int on_swim_cert_get(void *udata, const uint8_t *cert_id, const uint8_t **der, size_t *len)
{
    membership *m = udata;
    return p2p__records_cert_der(m->rec, cert_id, der, len);
}

static int on_swim_cert_put(void *udata, const uint8_t *der, size_t len, const uint8_t *cert_id)
{
    membership *m = udata;
    return p2p__records_add_cert(m->rec, der, len, cert_id);
}

/* A line now and then when records are refused (a forger, or a node whose
 * certificate does not say what it claims). */
static void log_refused(membership *m)
{
    p2p_swim_stats st;
    p2p_swim_get_stats(m->swim, &st);
    uint64_t now = now_ms(m);
    if (st.records_refused == m->refused_logged || now - m->refused_log_ms < 10000)
        return;
    p2p__records_stats rs = {0};
    if (m->rec)
        p2p__records_get_stats(m->rec, &rs);
    p2p_log(m->ctx, P2P_LOG_WARN, "membership",
            "refused %llu node record(s) not signed by their node; totals: unsigned %llu, bad signature %llu, "
            "wrong id %llu, wrong role %llu, no certificate %llu; certificates refused %llu",
            (unsigned long long)(st.records_refused - m->refused_logged), (unsigned long long)rs.refused_unsigned,
            (unsigned long long)rs.refused_sig, (unsigned long long)rs.refused_id,
            (unsigned long long)rs.refused_role, (unsigned long long)st.records_unvouched,
            (unsigned long long)rs.certs_refused);
    m->refused_logged = st.records_refused;
    m->refused_log_ms = now;
}

static const char *event_name(p2p_swim_event ev)
{
    switch (ev) {
    case P2P_SWIM_EV_JOIN: return "join";
    case P2P_SWIM_EV_UPDATE: return "update";
    case P2P_SWIM_EV_SUSPECT: return "suspect";
    case P2P_SWIM_EV_DEAD: return "dead";
    case P2P_SWIM_EV_LEAVE: return "leave";
    case P2P_SWIM_EV_ALIVE_AGAIN: return "alive";
    case P2P_SWIM_EV_REAPED: return "reaped";
    }
    return "?";
}

static void on_swim_event(void *udata, p2p_swim_event ev, const p2p_swim_member *mem)
{
    membership *m = udata;
    m->dirty = 1;
    if (ev != P2P_SWIM_EV_REAPED)
        m->pp_changed = 1;
    if (ev != P2P_SWIM_EV_UPDATE && ev != P2P_SWIM_EV_REAPED)
        p2p_log(m->ctx, P2P_LOG_INFO, "membership", "%s %s (incarnation %u)", mem->node.id,
                p2p_swim_state_name(mem->state), mem->node.incarnation);
    else if (ev == P2P_SWIM_EV_REAPED)
        p2p_log(m->ctx, P2P_LOG_DEBUG, "membership", "%s forgotten", mem->node.id);
    for (size_t i = 0; i < m->n_listeners; i++)
        m->listeners[i].fn(m->ctx, event_name(ev), mem->node.id, m->listeners[i].arg);
}

static void on_swim_timer(uv_timer_t *t)
{
    membership *m = t->data;
    if (!m->running)
        return;
    uint64_t wait = p2p_swim_tick(m->swim, now_ms(m));
    uv_timer_start(&m->timer, on_swim_timer, wait ? wait : 1, 0);
}

/* After input (a datagram, a merge, a join): the next deadline may be sooner. */
static void arm_timer(membership *m)
{
    if (!m->running)
        return;
    uint64_t wait = p2p_swim_next_timeout(m->swim, now_ms(m));
    uv_timer_start(&m->timer, on_swim_timer, wait ? wait : 1, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    membership *m = h->data;
    b->base = (char *)m->recv_buf;
    b->len = sizeof m->recv_buf;
}

/* ---- drops: counted by the seal layer, told in the log at most every 10 s --- */

#define DROP_LOG_INTERVAL_MS 10000

static const char *drop_reason(int r)
{
    switch (r) {
    case P2P_SEAL_EKEYID:
    case P2P_SEAL_EAUTH: return "auth";
    case P2P_SEAL_EREPLAY:
    case P2P_SEAL_EREFLECT: return "replay";
    case P2P_SEAL_ESTALE: return "stale";
    case P2P_SEAL_EOVERSIZE: return "oversize";
    default: return "malformed";
    }
}

/* One WARN line for the first drop, then at most one per DROP_LOG_INTERVAL_MS
 * summing up the drops since: a flood of garbage costs the log a line per 10 s. */
static void flush_drop_log(membership *m, uint64_t now)
{
    if (m->drops_unlogged == 0)
        return;
    p2p__seal_stats st;
    p2p__seal_get_stats(m->seal, &st);
    p2p_log(m->ctx, P2P_LOG_WARN, "membership",
            "dropped %llu gossip datagram(s) in the last %llu s, the last from %s (%s); totals: auth %llu, "
            "replay %llu, stale %llu, malformed %llu, oversize %llu",
            (unsigned long long)m->drops_unlogged,
            (unsigned long long)(m->drop_log_ms ? (now - m->drop_log_ms + 999) / 1000 : 0), m->drop_last_from,
            m->drop_last_why, (unsigned long long)st.dropped_auth, (unsigned long long)st.dropped_replay,
            (unsigned long long)st.dropped_stale, (unsigned long long)st.dropped_malformed,
            (unsigned long long)st.dropped_oversize);
    m->drops_unlogged = 0;
    m->drop_log_ms = now;
}

static void note_drop(membership *m, int r, const char *addr, uint16_t port)
{
    uint64_t now = now_ms(m);
    m->drops_unlogged++;
    m->drop_last_why = drop_reason(r);
    snprintf(m->drop_last_from, sizeof m->drop_last_from, "%s:%u", addr, (unsigned)port);
    if (m->drop_log_ms == 0 || now - m->drop_log_ms >= DROP_LOG_INTERVAL_MS)
        flush_drop_log(m, now);
}

/* Node records (records.h): refusals by reason, certificates, held records.
 * Zero when records are not checked (no node certificate). */
static void records_metrics(membership *m, p2p_metrics_out *out, const p2p_swim_stats *sw)
{
    p2p__records_stats rs = {0};
    if (m->rec)
        p2p__records_get_stats(m->rec, &rs);
    static const char ref_help[] =
        "Node records (ALIVE, leave) refused, by reason (unsigned; signature: does not verify; id: the "
        "certificate is another node's; role: the certificate's OU is another role; no_certificate: no "
        "certificate that chains to the cluster CA came for it).";
    const struct {
        const char *reason;
        uint64_t n;
    } reasons[] = {
        {"unsigned", rs.refused_unsigned}, {"signature", rs.refused_sig},
        {"id", rs.refused_id},             {"role", rs.refused_role},
        {"no_certificate", sw->records_unvouched},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        p2p__metrics_emit(out, "p2p_gossip_records_refused_total", ref_help, P2P_METRIC_COUNTER, "reason",
                          reasons[i].reason, (double)reasons[i].n);
    p2p__metrics_emit(out, "p2p_gossip_records_verified_total",
                      "Node records of others whose signature was checked and accepted.", P2P_METRIC_COUNTER, NULL,
                      NULL, (double)rs.verified);
    p2p__metrics_emit(out, "p2p_gossip_records_signed_total", "Own records and leaves signed.", P2P_METRIC_COUNTER,
                      NULL, NULL, (double)rs.signed_records);
    p2p__metrics_emit(out, "p2p_gossip_records_held_total",
                      "Records held until the certificate they name arrived (at most 32 at once, for 5 s).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)sw->records_parked);
    p2p__metrics_emit(out, "p2p_gossip_records_pending", "Records held now, waiting for their certificate.",
                      P2P_METRIC_GAUGE, NULL, NULL, (double)sw->records_held);
    p2p__metrics_emit(out, "p2p_gossip_certs_requested_total", "Certificates asked for (CERT_REQ sent).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)sw->certs_requested);
    p2p__metrics_emit(out, "p2p_gossip_certs_sent_total", "Certificates sent in answer to CERT_REQ.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)sw->certs_sent);
    p2p__metrics_emit(out, "p2p_gossip_certs_fetched_total",
                      "Certificates received by gossip for a held record and accepted.", P2P_METRIC_COUNTER, NULL,
                      NULL, (double)sw->certs_accepted);
    p2p__metrics_emit(out, "p2p_gossip_certs_added_total",
                      "Certificates checked against the cluster CA and cached (gossip, push-pull, own).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)rs.certs_added);
    p2p__metrics_emit(out, "p2p_gossip_certs_refused_total",
                      "Certificates refused: do not parse, wrong id, do not chain to the cluster CA, no valid CN.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)rs.certs_refused);
    p2p__metrics_emit(out, "p2p_gossip_certs_evicted_total", "Cached certificates evicted (least recently used).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)rs.certs_evicted);
    p2p__metrics_emit(out, "p2p_gossip_certs_without_role_total",
                      "Certificates cached that carry no role (OU): issued before roles, renewed at their first check.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)rs.legacy_certs);
    p2p__metrics_emit(out, "p2p_gossip_certs_cached", "Certificates in the cache.", P2P_METRIC_GAUGE, NULL, NULL,
                      (double)(m->rec ? p2p__records_cached(m->rec) : 0));
}

static void gossip_metrics(p2p_ctx *ctx, p2p_metrics_out *out, void *arg)
{
    membership *m = arg;
    if (!m->seal || !m->swim)
        return;
    p2p__seal_stats st;
    p2p__seal_get_stats(m->seal, &st);
    p2p_swim_stats sw;
    p2p_swim_get_stats(m->swim, &sw);
    static const char drop_help[] = "Gossip datagrams dropped, by reason (auth: wrong key or tag; replay: seen "
                                    "before or reflected; stale: clock outside the skew; malformed; oversize).";
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", drop_help, P2P_METRIC_COUNTER, "reason", "auth",
                      (double)st.dropped_auth);
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", drop_help, P2P_METRIC_COUNTER, "reason", "replay",
                      (double)st.dropped_replay);
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", drop_help, P2P_METRIC_COUNTER, "reason", "stale",
                      (double)st.dropped_stale);
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", drop_help, P2P_METRIC_COUNTER, "reason", "malformed",
                      (double)(st.dropped_malformed + sw.decode_errors));
    p2p__metrics_emit(out, "p2p_gossip_dropped_total", drop_help, P2P_METRIC_COUNTER, "reason", "oversize",
                      (double)st.dropped_oversize);
    records_metrics(m, out, &sw);
    p2p__metrics_emit(out, "p2p_gossip_received_total", "Gossip datagrams that opened (authentic and fresh).",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)st.opened);
    p2p__metrics_emit(out, "p2p_gossip_sent_total", "Gossip datagrams sealed and sent.", P2P_METRIC_COUNTER, NULL,
                      NULL, (double)st.sealed);
    p2p__metrics_emit(out, "p2p_gossip_send_errors_total", "Gossip datagrams that could not be sent.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)m->send_errors);
    p2p__metrics_emit(out, "p2p_gossip_senders", "Senders in the replay-window table.", P2P_METRIC_GAUGE, NULL, NULL,
                      (double)st.senders);
    p2p__metrics_emit(out, "p2p_gossip_pushpull_total", "Push-pull exchanges completed.", P2P_METRIC_COUNTER, NULL,
                      NULL, (double)m->pushpulls);
    p2p__metrics_emit(out, "p2p_gossip_pushpull_failures_total", "Push-pull exchanges that failed.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)m->pushpull_failures);
    p2p__metrics_emit(out, "p2p_gossip_refutations_total", "Times this node refuted a suspicion of itself.",
                      P2P_METRIC_COUNTER, NULL, NULL, (double)sw.refutations);
    p2p__metrics_emit(out, "p2p_gossip_incarnation", "This node's incarnation number.", P2P_METRIC_GAUGE, NULL, NULL,
                      (double)sw.incarnation);
    p2p__metrics_emit(out, "p2p_gossip_health_score", "Lifeguard local health score (0 is healthy).",
                      P2P_METRIC_GAUGE, NULL, NULL, (double)sw.awareness);
}

static void on_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *b, const struct sockaddr *from, unsigned flags)
{
    membership *m = u->data;
    if (n <= 0 || !from || !m->running)
        return;
    size_t len = 0;
    int r = p2p__seal_open(m->seal, p2p__wall_ms(), (const uint8_t *)b->base, (size_t)n, m->open_buf,
                           sizeof m->open_buf, &len, NULL);
    char addr[INET6_ADDRSTRLEN];
    uint16_t port;
    if (from->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)from, addr, sizeof addr);
        port = ntohs(((const struct sockaddr_in *)from)->sin_port);
    } else {
        uv_ip6_name((const struct sockaddr_in6 *)from, addr, sizeof addr);
        port = ntohs(((const struct sockaddr_in6 *)from)->sin6_port);
    }
    if (r != 0) {
        note_drop(m, r, addr, port); /* counted by the seal layer, never trusted */
        return;
    }
    p2p_swim_receive(m->swim, now_ms(m), addr, port, m->open_buf, len);
    log_refused(m);
    arm_timer(m);
}

/* ---- node records ------------------------------------------------------------ */

/* The meta a node gossips: its services with their methods, and the metadata
 * other components publish (p2p__membership_set_metadata). */
static char *build_meta(p2p_ctx *ctx)
{
    membership *m = p2p_shared_get(ctx, "membership");
    json_t *md = m && m->metadata ? json_incref(m->metadata) : json_object();
    json_t *svcs = json_array();
    p2p_registry *reg = ctx->registry;
    for (size_t i = 0; i < reg->n_services; i++) {
        p2p_service *s = reg->services[i];
        json_t *methods = json_array();
        for (size_t j = 0; j < s->n_methods; j++)
            json_array_append_new(methods, json_string(s->methods[j]->name));
        json_array_append_new(svcs, json_pack("{s:s, s:s, s:s, s:o}", "name", s->name, "version",
                                              s->version ? s->version : "", "status", s->status ? s->status : "",
                                              "methods", methods));
    }
    json_t *meta = json_pack("{s:o, s:[], s:O}", "services", svcs, "capabilities", "metadata", md);
    char *text = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    if (text && strlen(text) > P2P_GOSSIP_META_MAX) { /* too many services: names only */
        free(text);
        json_t *names = json_array();
        for (size_t i = 0; i < reg->n_services; i++)
            json_array_append_new(names, json_pack("{s:s}", "name", reg->services[i]->name));
        meta = json_pack("{s:o, s:b, s:O}", "services", names, "truncated", 1, "metadata", md);
        text = json_dumps(meta, JSON_COMPACT);
        json_decref(meta);
    }
    json_decref(md);
    return text;
}

static const char *state_label(p2p_swim_state st)
{
    return p2p_swim_state_name(st);
}

static json_t *member_json(membership *m, const p2p_swim_member *mem)
{
    json_t *addrs = json_array();
    for (unsigned i = 0; i < mem->node.naddrs; i++)
        json_array_append_new(addrs, json_string(mem->node.addrs[i]));
    json_t *o = json_pack("{s:s, s:s, s:I, s:o, s:i, s:s, s:b}", "node_id", mem->node.id, "status",
                          state_label(mem->state), "incarnation", (json_int_t)mem->node.incarnation, "addresses",
                          addrs, "port", mem->node.port, "role", mem->node.role, "self", mem->is_self);
    uint64_t now = now_ms(m), wall = p2p__wall_ms();
    uint64_t seen = mem->is_self ? now : mem->last_seen_ms;
    json_object_set_new(o, "last_seen", seen ? json_real((double)(wall - (now - seen)) / 1000.0) : json_null());
    json_t *meta = mem->node.meta_len ? json_loadb(mem->node.meta, mem->node.meta_len, 0, NULL) : NULL;
    json_t *svcs = json_object_get(meta, "services"), *caps = json_object_get(meta, "capabilities");
    json_t *md = json_object_get(meta, "metadata");
    json_object_set_new(o, "services", json_is_array(svcs) ? json_incref(svcs) : json_array());
    json_object_set_new(o, "capabilities", json_is_array(caps) ? json_incref(caps) : json_array());
    json_object_set_new(o, "metadata", json_is_object(md) ? json_incref(md) : json_object());
    json_decref(meta);
    return o;
}

json_t *p2p__membership_nodes_json(p2p_ctx *ctx)
{
    membership *m = get(ctx);
    json_t *arr = json_array();
    if (m && m->running)
        for (size_t i = 0; i < p2p_swim_member_count(m->swim); i++)
            json_array_append_new(arr, member_json(m, p2p_swim_member_at(m->swim, i)));
    return json_pack("{s:s, s:o}", "self", ctx->cfg.node_id, "nodes", arr);
}

int p2p__membership_lookup(p2p_ctx *ctx, const char *node_id, char *addr, size_t addr_len, uint16_t *port)
{
    membership *m = get(ctx);
    const p2p_swim_member *mem = m && m->running ? p2p_swim_find(m->swim, node_id) : NULL;
    if (!mem)
        return -ENOENT;
    if (mem->state == P2P_SWIM_DEAD || mem->state == P2P_SWIM_LEFT)
        return -ENODEV;
    snprintf(addr, addr_len, "%s", mem->node.naddrs ? mem->node.addrs[0] : "");
    *port = mem->node.port;
    return 0;
}

json_t *p2p__membership_live_ids(p2p_ctx *ctx, const char *role)
{
    membership *m = get(ctx);
    json_t *arr = json_array();
    if (!m || !m->running)
        return arr;
    for (size_t i = 0; i < p2p_swim_member_count(m->swim); i++) {
        const p2p_swim_member *mem = p2p_swim_member_at(m->swim, i);
        if ((mem->state == P2P_SWIM_ALIVE || mem->state == P2P_SWIM_SUSPECT) &&
            (!role || strcmp(role, mem->node.role) == 0))
            json_array_append_new(arr, json_string(mem->node.id));
    }
    return arr;
}

static void refresh_meta(membership *m);

int p2p__membership_set_metadata(p2p_ctx *ctx, const char *key, json_t *value)
{
    membership *m = get(ctx);
    if (!m || !key || !value)
        return -EINVAL;
    if (!m->metadata)
        m->metadata = json_object();
    json_t *old = json_object_get(m->metadata, key);
    if (old && json_equal(old, value))
        return 0;
    json_object_set(m->metadata, key, value);
    if (m->running)
        refresh_meta(m); /* gossip it now, not at the next housekeeping round */
    return 0;
}

json_t *p2p__membership_metadata(p2p_ctx *ctx, const char *node_id)
{
    membership *m = get(ctx);
    const p2p_swim_member *mem = m && m->running ? p2p_swim_find(m->swim, node_id) : NULL;
    if (!mem || !mem->node.meta_len)
        return NULL;
    json_t *meta = json_loadb(mem->node.meta, mem->node.meta_len, 0, NULL);
    json_t *md = json_object_get(meta, "metadata");
    json_t *out = json_is_object(md) ? json_incref(md) : NULL;
    json_decref(meta);
    return out;
}

p2p__httpc *p2p__membership_client(p2p_ctx *ctx)
{
    membership *m = get(ctx);
    return m && m->running ? m->http : NULL;
}

int p2p__membership_listen(p2p_ctx *ctx, p2p_membership_listener fn, void *arg)
{
    membership *m = get(ctx);
    if (!m || m->n_listeners >= MAX_LISTENERS)
        return -ENOSPC;
    m->listeners[m->n_listeners++] = (listener){fn, arg};
    return 0;
}

/* ---- records as JSON (push-pull and snapshot) ----------------------------------- */

static json_t *record_json(membership *m, const p2p_swim_member *mem)
{
    json_t *addrs = json_array();
    for (unsigned i = 0; i < mem->node.naddrs; i++)
        json_array_append_new(addrs, json_string(mem->node.addrs[i]));
    json_t *o = json_pack("{s:s, s:I, s:i, s:o, s:s, s:s%, s:s}", "id", mem->node.id, "incarnation",
                          (json_int_t)mem->node.incarnation, "port", mem->node.port, "addrs", addrs, "role",
                          mem->node.role, "meta", mem->node.meta ? mem->node.meta : "", mem->node.meta_len, "state",
                          p2p_swim_state_name(mem->state));
    char b64[P2P_PP_SIG_B64];
    if (mem->node.sig.len) {
        p2p__pp_sig_encode(&mem->node.sig, b64);
        json_object_set_new(o, "sig", json_string(b64));
        const uint8_t *der = NULL;
        size_t len = 0;
        if (m->rec && p2p__records_cert_der(m->rec, mem->node.sig.cert_id, &der, &len) == 0) {
            char *c = p2p__xmalloc(4 * ((len + 2) / 3) + 1);
            p2p__b64url_encode(der, len, c);
            json_object_set_new(o, "cert", json_string(c));
            free(c);
        }
    }
    if (mem->state == P2P_SWIM_LEFT && mem->leave.len) {
        p2p__pp_sig_encode(&mem->leave, b64);
        json_object_set_new(o, "leave_sig", json_string(b64));
    }
    return o;
}

/* Push-pull carries a digest and full records only where the other side is behind
 * (membership/pushpull.h), so a steady cluster exchanges ~40 bytes per member
 * instead of whole records with their services. */
static json_t *digest_json(membership *m)
{
    json_t *d = json_object();
    for (size_t i = 0; i < p2p_swim_member_count(m->swim); i++) {
        const p2p_swim_member *mem = p2p_swim_member_at(m->swim, i);
        json_object_set_new(d, mem->node.id,
                            json_pack("[I, s]", (json_int_t)mem->node.incarnation, p2p_swim_state_name(mem->state)));
    }
    return d;
}

/* The whole view: the snapshot, and the answer to a peer that sent no digest. */
static json_t *state_json(membership *m)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < p2p_swim_member_count(m->swim); i++)
        json_array_append_new(arr, record_json(m, p2p_swim_member_at(m->swim, i)));
    return json_pack("{s:i, s:s, s:o}", "version", 2, "from", m->ctx->cfg.node_id, "nodes", arr);
}

/* A push-pull request: our digest, and full records for the ids in `push` (may be NULL). */
static char *request_body(membership *m, json_t *push)
{
    json_t *nodes = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(push, i, id)
    {
        const p2p_swim_member *mem = p2p_swim_find(m->swim, json_string_value(id));
        if (mem)
            json_array_append_new(nodes, record_json(m, mem));
    }
    json_t *doc = json_pack("{s:i, s:s, s:o, s:o}", "version", 2, "from", m->ctx->cfg.node_id, "digest",
                            digest_json(m), "nodes", nodes);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return body;
}

/* Merges the records of a push-pull document already checked by p2p__pp_check(). */
static void merge_state(membership *m, json_t *doc)
{
    json_t *nodes = json_object_get(doc, "nodes");
    size_t i;
    json_t *o;
    p2p_gossip_node n;
    p2p_swim_state st;
    uint64_t now = now_ms(m);
    json_array_foreach(nodes, i, o)
    {
        p2p_gossip_sig leave;
        const char *cert = NULL;
        size_t cert_len = 0;
        if (p2p__pp_parse_record_ex(o, &n, &st, &leave, &cert, &cert_len) != 0)
            continue;
        if (cert && m->rec) { /* checked against the CA before it vouches for anything */
            uint8_t der[P2P_GOSSIP_CERT_MAX + 3];
            size_t dl = 0;
            if (p2p__pp_cert(cert, cert_len, der, &dl) == 0)
                p2p__records_add_cert(m->rec, der, dl, n.sig.cert_id);
        }
        if (st == P2P_SWIM_LEFT)
            p2p_swim_merge_leave(m->swim, now, n.id, n.incarnation, &leave);
        else
            p2p_swim_merge_remote(m->swim, now, &n, st);
    }
    log_refused(m);
    arm_timer(m);
}

/* The answer to a digest: our records the sender is behind on, and the ids it is
 * ahead on ("want"). A digest that says we are suspect or dead makes us refute
 * first, so the answer already carries our higher incarnation. */
static json_t *digest_answer(membership *m, json_t *digest)
{
    const p2p_swim_member *self = p2p_swim_self(m->swim);
    json_t *e = json_object_get(digest, self->node.id);
    uint32_t inc;
    p2p_swim_state st;
    if (e && p2p__pp_parse_digest_entry(e, &inc, &st) == 0 && st != P2P_SWIM_ALIVE && inc >= self->node.incarnation) {
        p2p_gossip_node me = self->node;
        me.incarnation = inc;
        p2p_swim_merge_remote(m->swim, now_ms(m), &me, P2P_SWIM_SUSPECT);
        arm_timer(m);
    }
    json_t *nodes = json_array(), *want = json_array();
    for (size_t i = 0; i < p2p_swim_member_count(m->swim); i++) {
        const p2p_swim_member *mem = p2p_swim_member_at(m->swim, i);
        e = json_object_get(digest, mem->node.id);
        if (!e || p2p__pp_parse_digest_entry(e, &inc, &st) != 0 || p2p__pp_newer(mem->node.incarnation, mem->state, inc, st))
            json_array_append_new(nodes, record_json(m, mem));
    }
    const char *id;
    json_object_foreach(digest, id, e)
    {
        const p2p_swim_member *mem = p2p_swim_find(m->swim, id);
        if (p2p__pp_parse_digest_entry(e, &inc, &st) == 0 &&
            (!mem ? st != P2P_SWIM_DEAD && st != P2P_SWIM_LEFT : p2p__pp_newer(inc, st, mem->node.incarnation, mem->state)))
            json_array_append_new(want, json_string(id));
    }
    return json_pack("{s:i, s:s, s:o, s:o}", "version", 2, "from", m->ctx->cfg.node_id, "nodes", nodes, "want",
                     want);
}

json_t *p2p__membership_exchange(p2p_ctx *ctx, const char *body, size_t len, const char *peer_node, const char **why)
{
    membership *m = get(ctx);
    if (!m || !m->running) {
        *why = "membership is not running on this node";
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (p2p__pp_check(doc, why) != 0) {
        json_decref(doc);
        return NULL;
    }
    const char *from = json_string_value(json_object_get(doc, "from"));
    if (!peer_node || (from && strcmp(from, peer_node))) {
        *why = "\"from\" is not the node identity of the client certificate";
        json_decref(doc);
        return NULL;
    }
    merge_state(m, doc);
    json_t *digest = json_object_get(doc, "digest");
    json_t *out = digest ? digest_answer(m, digest) : state_json(m);
    json_decref(doc);
    return out;
}

/* ---- push-pull -------------------------------------------------------------------- */

/* One push-pull in flight: round 1 sends our digest; when the answer names ids we
 * are ahead on, round 2 sends those records (once). */
typedef struct pp_call {
    membership *m;
    int *inflight;
    int round;
    char node_id[P2P_GOSSIP_ID_MAX + 1];
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    uint16_t port;
} pp_call;

static int pp_send(pp_call *c, json_t *push);

static void on_pushpull(void *udata, const p2p__httpc_res *res)
{
    pp_call *c = udata;
    membership *m = c->m;
    *c->inflight = 0;
    if (!m->running || res->error == P2P_HTTPC_E_CANCELLED) {
        free(c);
        return;
    }
    if (res->error != P2P_HTTPC_OK || res->status != 200) {
        m->pushpull_failures++;
        p2p_log(m->ctx, P2P_LOG_DEBUG, "membership", "push-pull with %s failed: %s (HTTP %d)", c->node_id,
                res->error != P2P_HTTPC_OK ? res->message : "refused", res->status);
        free(c);
        return;
    }
    json_t *doc = json_loadb((const char *)res->body, res->body_len, JSON_REJECT_DUPLICATES, NULL);
    const char *why = NULL;
    if (p2p__pp_check(doc, &why) != 0) {
        m->pushpull_failures++;
        p2p_log(m->ctx, P2P_LOG_WARN, "membership", "push-pull answer from %s refused: %s", c->node_id, why);
    } else {
        merge_state(m, doc);
        m->pushpulls++;
        json_t *want = json_object_get(doc, "want");
        if (c->round == 1 && json_is_array(want) && json_array_size(want) > 0 &&
            json_array_size(want) <= p2p_swim_member_count(m->swim)) {
            c->round = 2;
            if (pp_send(c, want) == 0)
                c = NULL; /* owned by the next request */
        }
    }
    json_decref(doc);
    free(c);
}

static int pp_send(pp_call *c, json_t *push)
{
    membership *m = c->m;
    char *body = request_body(m, push);
    p2p__httpc_req req = {.method = "POST", .node_id = c->node_id, .address = c->addr, .port = c->port,
                          .path = "/internal/gossip/exchange", .body = body, .body_len = strlen(body),
                          .timeout_ms = 10000};
    char *err = NULL;
    int ok = p2p__httpc_request(m->http, &req, on_pushpull, c, &err) != 0;
    if (ok)
        *c->inflight = 1;
    free(err);
    free(body);
    return ok ? 0 : -EIO;
}

static void pushpull_with(membership *m, const p2p_swim_member *mem, int *inflight)
{
    pp_call *c = p2p__xcalloc(1, sizeof(*c));
    c->m = m;
    c->inflight = inflight;
    c->round = 1;
    snprintf(c->node_id, sizeof c->node_id, "%s", mem->node.id);
    snprintf(c->addr, sizeof c->addr, "%s", mem->node.addrs[0]);
    c->port = mem->node.port;
    if (pp_send(c, NULL) != 0)
        free(c);
}

/* A random member other than self in one of the states of `mask` (1 << state). */
static const p2p_swim_member *random_member(membership *m, unsigned mask)
{
    size_t n = p2p_swim_member_count(m->swim), count = 0;
    for (size_t i = 0; i < n; i++) {
        const p2p_swim_member *mem = p2p_swim_member_at(m->swim, i);
        count += !mem->is_self && (mask & (1u << mem->state)) && mem->node.naddrs > 0;
    }
    if (!count)
        return NULL;
    uint32_t pick;
    RAND_bytes((unsigned char *)&pick, sizeof pick);
    pick %= (uint32_t)count;
    for (size_t i = 0; i < n; i++) {
        const p2p_swim_member *mem = p2p_swim_member_at(m->swim, i);
        if (!mem->is_self && (mask & (1u << mem->state)) && mem->node.naddrs > 0 && !pick--)
            return mem;
    }
    return NULL;
}

/* memberlist's pushPullScale: x1 up to 32 members, +1 each time the cluster doubles. */
static double cluster_scale(membership *m)
{
    size_t n = p2p_swim_live_count(m->swim);
    return n > 32 ? ceil(log2((double)n) - log2(32.0)) + 1 : 1;
}

/* The adaptive interval: gossip_interval_min after a membership change, doubling with
 * each quiet round up to gossip_interval_max, then scaled with the cluster's size. */
static uint64_t pushpull_interval_ms(membership *m)
{
    p2p_config *cfg = &m->ctx->cfg;
    double s = cfg->gossip_interval_min;
    for (unsigned i = 0; i < m->pp_level && s < cfg->gossip_interval_max; i++)
        s *= 2;
    if (s > cfg->gossip_interval_max)
        s = cfg->gossip_interval_max;
    return (uint64_t)(s * cluster_scale(m) * 1000);
}

static void on_pp_timer(uv_timer_t *t)
{
    membership *m = t->data;
    if (m->pp_changed)
        m->pp_level = 0;
    else if (m->pp_level < 16)
        m->pp_level++;
    m->pp_changed = 0;
    uv_timer_start(&m->pp_timer, on_pp_timer, pushpull_interval_ms(m), 0);
    if (!m->running || !m->http || m->pp_inflight)
        return;
    const p2p_swim_member *mem = random_member(m, 1u << P2P_SWIM_ALIVE);
    if (mem)
        pushpull_with(m, mem, &m->pp_inflight);
}

/* Serf's reconnect: now and then a push-pull with a random dead member, so the
 * halves of a healed partition find each other again (the exchange tells each
 * side it was declared dead, and each refutes). Every 15 s, times the push-pull
 * scale: in a big cluster many members try, so one of them soon succeeds, and a
 * member that is really gone is not hammered by all of them. */
#define RECONNECT_MS 15000
static void maybe_reconnect(membership *m, uint64_t now)
{
    if (now < m->next_reconnect_ms || !m->http || m->rc_inflight)
        return;
    m->next_reconnect_ms = now + (uint64_t)(RECONNECT_MS * cluster_scale(m));
    const p2p_swim_member *mem = random_member(m, 1u << P2P_SWIM_DEAD);
    if (mem)
        pushpull_with(m, mem, &m->rc_inflight);
}

static void on_tls_change(p2p_ctx *ctx, void *arg)
{
    membership *m = arg;
    p2p_tls_material t;
    if (p2p__pki_material(ctx, &t) != 0 || !t.cert)
        return;
    if (m->http)
        p2p__httpc_set_tls(m->http, t.ca, t.cert, t.key, NULL);
    if (m->rec && t.key) { /* renewal: sign with the new key, name the new certificate */
        char *err = NULL;
        uint8_t old[P2P_GOSSIP_CERT_ID_LEN];
        memcpy(old, p2p__records_own_cert_id(m->rec), sizeof old);
        if (p2p__records_set_identity(m->rec, t.cert, t.key, NULL, &err) != 0) {
            p2p_log(ctx, P2P_LOG_WARN, "membership", "keeping the previous record signing key: %s", err ? err : "?");
        } else if (memcmp(old, p2p__records_own_cert_id(m->rec), sizeof old) && m->running) {
            p2p_swim_set_cert_id(m->swim, now_ms(m), p2p__records_own_cert_id(m->rec));
            p2p__seal_set_cert(m->seal, cert_id64(p2p__records_own_cert_id(m->rec)));
            arm_timer(m);
        }
        free(err);
    }
}

/* ---- snapshot ------------------------------------------------------------------ */

typedef struct snap_job {
    uv_work_t w;
    membership *m;
    char *path, *text;
} snap_job;

static void snap_work(uv_work_t *w)
{
    snap_job *j = w->data;
    p2p__write_file_atomic(j->path, j->text, strlen(j->text), 0600);
}

static void snap_done(uv_work_t *w, int status)
{
    snap_job *j = w->data;
    j->m->snapshot_writing = 0;
    free(j->path);
    free(j->text);
    free(j);
}

static char *snapshot_path(membership *m)
{
    return p2p__xasprintf("%s/members.json", m->ctx->cfg.state_directory);
}

static void save_snapshot(membership *m, int sync)
{
    json_t *st = state_json(m);
    char *text = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    if (sync) {
        char *path = snapshot_path(m);
        p2p__write_file_atomic(path, text, strlen(text), 0600);
        free(path);
        free(text);
        return;
    }
    snap_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->m = m;
    j->path = snapshot_path(m);
    j->text = text;
    m->snapshot_writing = 1;
    uv_queue_work(m->ctx->loop, &j->w, snap_work, snap_done);
}

/* Rejoins the peers a previous run knew (the coordinator may be down). */
static void load_snapshot(membership *m)
{
    char *path = snapshot_path(m), *text = NULL;
    size_t len = 0;
    if (p2p__read_file(path, 16 << 20, &text, &len) == 0) {
        json_t *doc = json_loadb(text, len, 0, NULL);
        json_t *nodes = json_object_get(doc, "nodes");
        size_t i, joined = 0;
        json_t *o;
        json_array_foreach(nodes, i, o)
        {
            p2p_gossip_node n;
            p2p_swim_state st;
            if (p2p__pp_parse_record(o, &n, &st) != 0 || !strcmp(n.id, m->ctx->cfg.node_id) || st == P2P_SWIM_LEFT ||
                !n.naddrs)
                continue;
            if (p2p_swim_join(m->swim, now_ms(m), n.addrs[0], n.port) == 0)
                joined++;
        }
        if (joined)
            p2p_log(m->ctx, P2P_LOG_INFO, "membership", "rejoining %zu peer(s) from %s", joined, path);
        json_decref(doc);
        free(text);
    }
    free(path);
}

/* ---- joining and housekeeping ------------------------------------------------- */

static void join_seeds(membership *m)
{
    p2p_config *cfg = &m->ctx->cfg;
    for (size_t i = 0; i < cfg->n_coordinator_addresses; i++) {
        const char *a = cfg->coordinator_addresses[i];
        const char *colon = strrchr(a, ':');
        if (!colon)
            continue;
        char host[INET6_ADDRSTRLEN + 2];
        size_t hl = (size_t)(colon - a);
        if (hl >= sizeof host)
            continue;
        memcpy(host, a, hl);
        host[hl] = '\0';
        char *h = host;
        if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
            h[hl - 1] = '\0';
            h++;
        }
        int port = atoi(colon + 1);
        if (port == m->ctx->cfg.port && (!strcmp(h, m->self_addr) || !strcmp(h, "127.0.0.1")) &&
            cfg->coordinator_mode)
            continue; /* ourselves */
        p2p_swim_join(m->swim, now_ms(m), h, (uint16_t)port);
    }
    arm_timer(m);
}

/* Gossips the record's meta when it changed (services, metadata). */
static void refresh_meta(membership *m)
{
    uint64_t now = now_ms(m);
    char *meta = build_meta(m->ctx);
    if (meta && (!m->meta || strcmp(meta, m->meta) != 0)) {
        if (p2p_swim_set_meta(m->swim, now, meta) == 0) {
            free(m->meta);
            m->meta = meta;
            meta = NULL;
            arm_timer(m);
        }
    }
    free(meta);
}

static void on_hk_timer(uv_timer_t *t)
{
    membership *m = t->data;
    if (!m->running)
        return;
    uint64_t now = now_ms(m);
    if (m->drops_unlogged && now - m->drop_log_ms >= DROP_LOG_INTERVAL_MS)
        flush_drop_log(m, now);
    refresh_meta(m); /* services changed: gossip the new meta */
    /* alone: keep trying the seeds, with backoff (1, 2, 4 ... 30 s) */
    if (p2p_swim_live_count(m->swim) <= 1 && now >= m->next_join_ms) {
        join_seeds(m);
        m->join_backoff = m->join_backoff ? (m->join_backoff * 2 > 30000 ? 30000 : m->join_backoff * 2) : 1000;
        m->next_join_ms = now + m->join_backoff;
    } else if (p2p_swim_live_count(m->swim) > 1) {
        m->join_backoff = 0;
    }
    maybe_reconnect(m, now);
    if (m->dirty && !m->snapshot_writing && now - m->last_snapshot_ms >= SNAPSHOT_EVERY_MS) {
        m->dirty = 0;
        m->last_snapshot_ms = now;
        save_snapshot(m, 0);
    }
}

/* ---- start / stop ----------------------------------------------------------------- */

/* The coordinator addresses usable by address selection: IP literals with a
 * port ("ip:port", "[v6]:port"); host names are skipped. */
static void collect_coord_ips(membership *m)
{
    p2p_config *cfg = &m->ctx->cfg;
    for (size_t i = 0; i < cfg->n_coordinator_addresses && m->n_coord_ips < P2P_ADDRSEL_MAX_TARGETS; i++) {
        struct sockaddr_storage sa;
        if (p2p__addrsel_parse_target(cfg->coordinator_addresses[i], &sa) == 0)
            m->coord_ips[m->n_coord_ips++] = p2p__xstrdup(cfg->coordinator_addresses[i]);
    }
}

/* Copies an address (truncated to fit: advertise_address may be a long name). */
static void copy_addr(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void set_self_addr(membership *m, const char *ip, const char *reason)
{
    copy_addr(m->self_addr, sizeof m->self_addr, ip);
    p2p_log(m->ctx, P2P_LOG_INFO, "membership", "advertising %s (%s)", m->self_addr, reason);
}

/* The address to start with, without blocking: the overrides, else the
 * best-ranked interface address, else 127.0.0.1. */
static void pick_self_addr(membership *m)
{
    p2p_config *cfg = &m->ctx->cfg;
    m->detect = 0;
    if (*cfg->advertise_address) {
        set_self_addr(m, cfg->advertise_address, "advertise_address");
        return;
    }
    if (*cfg->bind_address && strcmp(cfg->bind_address, "0.0.0.0") != 0 && strcmp(cfg->bind_address, "::") != 0) {
        set_self_addr(m, cfg->bind_address, "bind_address");
        return;
    }
    m->detect = 1;
    p2p_addrsel_iface *ifs = NULL;
    size_t n = 0;
    p2p_addrsel_cand best[1];
    size_t nbest = 0;
    char *err = NULL;
    if (p2p__addrsel_interfaces(NULL, &ifs, &n) == 0 &&
        p2p__addrsel_rank(ifs, n, (const char *const *)m->coord_ips, m->n_coord_ips, best, 1, &nbest, &err) == 0 &&
        nbest == 1) {
        char why[P2P_ADDRSEL_IP_MAX + 128];
        p2p__addrsel_describe(&best[0], why, sizeof why);
        char reason[sizeof why + 32];
        snprintf(reason, sizeof reason, "best ranked, not probed yet: %s", why);
        set_self_addr(m, best[0].ip, reason);
    } else {
        set_self_addr(m, "127.0.0.1", err ? err : "no usable interface address");
    }
    free(err);
    free(ifs);
}

/* True when `ip` is one of the current interface addresses. */
static int have_interface_addr(const char *ip)
{
    p2p_addrsel_iface *ifs = NULL;
    size_t n = 0;
    int found = 0;
    if (p2p__addrsel_interfaces(NULL, &ifs, &n) != 0)
        return 1; /* cannot tell: keep what we have */
    for (size_t i = 0; i < n && !found; i++)
        found = !strcmp(ifs[i].ip, ip);
    free(ifs);
    return found;
}

static void start_probe(membership *m);

static void on_addr_selected(void *arg, int status, const p2p_addrsel_cand *chosen, const char *reason)
{
    membership *m = arg;
    m->probe = NULL;
    if (!m->running)
        return;
    if (chosen && strcmp(chosen->ip, m->self_addr) != 0 &&
        (status == 0 || !have_interface_addr(m->self_addr))) {
        /* a failed probe (coordinators unreachable) only moves us off an address we no longer have */
        char addrs[1][P2P_GOSSIP_ADDRSTRLEN];
        copy_addr(addrs[0], sizeof addrs[0], chosen->ip);
        int r = p2p_swim_set_addrs(m->swim, now_ms(m), (const char (*)[P2P_GOSSIP_ADDRSTRLEN])addrs, 1);
        if (r == 0) {
            char line[P2P_ADDRSEL_IP_MAX + 512];
            snprintf(line, sizeof line, "%s%s", status == 0 ? "" : "fallback, ", reason ? reason : "probe");
            set_self_addr(m, chosen->ip, line);
            m->dirty = 1;
            arm_timer(m);
        } else {
            p2p_log(m->ctx, P2P_LOG_WARN, "membership", "cannot advertise %s: %s", chosen->ip, strerror(-r));
        }
    } else {
        p2p_log(m->ctx, P2P_LOG_DEBUG, "membership", "address probe: keeping %s (%s)", m->self_addr,
                reason ? reason : "?");
    }
    if (m->reprobe) {
        m->reprobe = 0;
        start_probe(m);
    }
}

static void start_probe(membership *m)
{
    if (!m->running || !m->detect)
        return;
    if (m->probe) {
        m->reprobe = 1; /* after this one: the interfaces changed meanwhile */
        return;
    }
    p2p_addrsel_opts o = {.coordinators = (const char *const *)m->coord_ips, .n_coordinators = m->n_coord_ips};
    char *err = NULL;
    int r = p2p__addrsel_select(m->ctx->loop, &o, on_addr_selected, m, &m->probe, &err);
    if (r != 0) {
        m->probe = NULL;
        p2p_log(m->ctx, P2P_LOG_DEBUG, "membership", "address probe not started: %s", err ? err : strerror(-r));
    }
    free(err);
}

static void on_ifaces_changed(void *arg, const p2p_addrsel_iface *ifs, size_t n)
{
    membership *m = arg;
    (void)ifs;
    p2p_log(m->ctx, P2P_LOG_DEBUG, "membership", "interface addresses changed (%zu now): probing again", n);
    start_probe(m);
}

static void start_addr_selection(membership *m)
{
    if (!m->detect)
        return;
    start_probe(m);
    char *err = NULL;
    if (p2p__addrsel_watch(m->ctx->loop, P2P_ADDRSEL_DEFAULT_WATCH_MS, NULL, NULL, on_ifaces_changed, m, &m->watch,
                           &err) != 0) {
        m->watch = NULL;
        p2p_log(m->ctx, P2P_LOG_WARN, "membership", "not watching interface addresses: %s", err ? err : "?");
    }
    free(err);
}

static void stop_addr_selection(membership *m)
{
    if (m->probe) {
        p2p__addrsel_probe_cancel(m->probe);
        m->probe = NULL;
    }
    if (m->watch) {
        p2p__addrsel_watch_stop(m->watch);
        m->watch = NULL;
    }
    for (size_t i = 0; i < m->n_coord_ips; i++)
        free(m->coord_ips[i]);
    m->n_coord_ips = 0;
    m->reprobe = 0;
}

static void membership_stop(p2p_component *c);

static int membership_start_gossip(p2p_component *c, char **err)
{
    membership *m = c->self;
    p2p_ctx *ctx = c->ctx;
    p2p_config *cfg = &ctx->cfg;
    const uint8_t *key = p2p__pki_gossip_key(ctx);
    if (!key) {
        p2p_log(ctx, P2P_LOG_WARN, "membership", "no cluster gossip key in the vault: membership is off");
        return 0;
    }
    collect_coord_ips(m);
    pick_self_addr(m);
    m->seal = p2p__seal_new(key, cfg->node_id, NULL);
    if (!m->seal) {
        stop_addr_selection(m);
        return p2p__fail(err, -EIO, "cannot set up gossip sealing");
    }
    p2p_tls_material tm;
    if (p2p__pki_material(ctx, &tm) == 0 && tm.cert && tm.key && tm.ca) {
        char *rerr = NULL;
        m->rec = p2p__records_new(tm.ca, 0, &rerr);
        if (!m->rec || p2p__records_set_identity(m->rec, tm.cert, tm.key, NULL, &rerr) != 0) {
            p2p__records_free(m->rec);
            m->rec = NULL;
            p2p__seal_free(m->seal);
            m->seal = NULL;
            stop_addr_selection(m);
            /* a node that cannot sign its record would only be refused by every
             * peer (and must not gossip unchecked): it serves without membership,
             * and says why and what to do */
            p2p_log(ctx, P2P_LOG_ERROR, "membership",
                    "membership is off: %s (re-enroll this node with a join token from the coordinator, or give "
                    "the coordinator its cluster CA back)",
                    rerr ? rerr : "cannot load the node identity");
            free(rerr);
            return 0;
        }
    } else {
        p2p_log(ctx, P2P_LOG_WARN, "membership", "no node certificate: records are neither signed nor checked");
    }
    m->meta = build_meta(ctx);
    p2p_gossip_node self = {0};
    snprintf(self.id, sizeof self.id, "%s", cfg->node_id);
    snprintf(self.role, sizeof self.role, "%s", p2p_node_role(ctx));
    self.port = (uint16_t)cfg->port;
    self.naddrs = 1;
    snprintf(self.addrs[0], sizeof self.addrs[0], "%s", m->self_addr);
    self.meta = m->meta;
    self.meta_len = strlen(m->meta);
    if (m->rec) {
        memcpy(self.sig.cert_id, p2p__records_own_cert_id(m->rec), P2P_GOSSIP_CERT_ID_LEN);
        p2p__seal_set_cert(m->seal, cert_id64(p2p__records_own_cert_id(m->rec)));
    }
    p2p_swim_config sc;
    p2p_swim_config_default(&sc);
    RAND_bytes((unsigned char *)&sc.seed, sizeof sc.seed);
    sc.packet_budget = 1400 - P2P_SEAL_OVERHEAD;
    p2p_swim_callbacks cb = {.udata = m, .send = on_swim_send, .event = on_swim_event};
    if (m->rec) {
        cb.sign = on_swim_sign;
        cb.verify = on_swim_verify;
        cb.cert_get = on_swim_cert_get;
        cb.cert_put = on_swim_cert_put;
    }
    const char *why = NULL;
    if (p2p_swim_new(&sc, &self, &cb, uv_now(ctx->loop), &m->swim, &why) != 0) {
        p2p__seal_free(m->seal);
        m->seal = NULL;
        p2p__records_free(m->rec);
        m->rec = NULL;
        stop_addr_selection(m);
        return p2p__fail(err, -EINVAL, "membership: %s", why ? why : "bad self record");
    }
    /* UDP on the HTTPS port number */
    struct sockaddr_storage ss;
    if (uv_ip4_addr(cfg->bind_address, cfg->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(cfg->bind_address, cfg->port, (struct sockaddr_in6 *)&ss) != 0) {
        membership_stop(c);
        return p2p__fail(err, -EINVAL, "bind_address '%s' is not an IP address", cfg->bind_address);
    }
    uv_udp_init(ctx->loop, &m->udp);
    m->udp.data = m;
    m->udp_open = 1;
    int r = uv_udp_bind(&m->udp, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_udp_recv_start(&m->udp, on_alloc, on_recv);
    if (r != 0) {
        membership_stop(c);
        return p2p__fail(err, r, "cannot bind UDP %s:%d for gossip: %s", cfg->bind_address, cfg->port,
                         uv_strerror(r));
    }
    int size = 4 << 20;
    uv_recv_buffer_size((uv_handle_t *)&m->udp, &size);
    /* HTTPS client for push-pull */
    p2p_tls_material t;
    if (p2p__pki_material(ctx, &t) == 0 && t.cert && t.ca) {
        p2p__httpc_global_init();
        p2p__httpc_opts o = {.ca_pem = t.ca, .cert_pem = t.cert, .key_pem = t.key};
        char *herr = NULL;
        m->http = p2p__httpc_new(ctx->loop, &o, &herr);
        if (!m->http)
            p2p_log(ctx, P2P_LOG_WARN, "membership", "no push-pull: %s", herr ? herr : "?");
        free(herr);
    }
    uv_timer_init(ctx->loop, &m->timer);
    uv_timer_init(ctx->loop, &m->pp_timer);
    uv_timer_init(ctx->loop, &m->hk_timer);
    m->timer.data = m->pp_timer.data = m->hk_timer.data = m;
    m->timers_open = 1;
    m->running = 1;
    p2p__metrics_source_add(ctx, "gossip", gossip_metrics, m);
    load_snapshot(m);
    join_seeds(m);
    m->join_backoff = 1000;
    m->next_join_ms = uv_now(ctx->loop) + 1000;
    m->next_reconnect_ms = uv_now(ctx->loop) + RECONNECT_MS;
    m->pp_changed = 1;
    uv_timer_start(&m->hk_timer, on_hk_timer, HOUSEKEEP_MS, HOUSEKEEP_MS);
    uv_timer_start(&m->pp_timer, on_pp_timer, pushpull_interval_ms(m), 0);
    arm_timer(m);
    p2p__pki_on_change(ctx, on_tls_change, m);
    start_addr_selection(m);
    p2p_log(ctx, P2P_LOG_INFO, "membership", "gossip on udp://%s:%d as %s (advertising %s)", cfg->bind_address,
            cfg->port, cfg->node_id, m->self_addr);
    return 0;
}

static p2p_ctx *ctx_of(membership *m)
{
    return m->ctx;
}

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

/* The routes first: GET /cluster/nodes answers even with gossip off. */
static int membership_start(p2p_component *c, char **err)
{
    int r = p2p__membership_http_start(c->ctx);
    if (r != 0) {
        *err = p2p__xasprintf("cannot add the membership routes: %s", p2p_strerror(r));
        return r;
    }
    if ((r = membership_start_gossip(c, err)) != 0)
        p2p__membership_http_stop(c->ctx);
    return r;
}

static void membership_stop(p2p_component *c)
{
    membership *m = c->self;
    p2p__membership_http_stop(c->ctx);
    if (m->running && m->swim) {
        /* graceful leave: tell others at once, so they mark us left, not dead */
        uint64_t now = now_ms(m);
        if (p2p_swim_leave(m->swim, now) == 0)
            for (int i = 0; i < 4 && !p2p_swim_leave_done(m->swim); i++)
                p2p_swim_tick(m->swim, now + (uint64_t)i * 250);
        save_snapshot(m, 1);
    }
    if (m->running) {
        flush_drop_log(m, now_ms(m));
        p2p__metrics_source_remove(ctx_of(m), "gossip");
    }
    m->running = 0;
    stop_addr_selection(m);
    p2p__pki_off_change(ctx_of(m), on_tls_change, m);
    if (m->timers_open) {
        uv_close((uv_handle_t *)&m->timer, on_closed);
        uv_close((uv_handle_t *)&m->pp_timer, on_closed);
        uv_close((uv_handle_t *)&m->hk_timer, on_closed);
        m->timers_open = 0;
    }
    if (m->udp_open) {
        uv_close((uv_handle_t *)&m->udp, on_closed);
        m->udp_open = 0;
    }
    if (m->http) {
        p2p__httpc_free(m->http);
        m->http = NULL;
    }
    p2p_swim_free(m->swim);
    m->swim = NULL;
    p2p__seal_free(m->seal);
    m->seal = NULL;
    p2p__records_free(m->rec);
    m->rec = NULL;
    free(m->meta);
    m->meta = NULL;
}

static const p2p_component_ops membership_ops = {
    .name = "membership",
    .deps = (const char *const[]){"pki", "system", NULL}, /* system: its services are in our first record */
    .start = membership_start,
    .stop = membership_stop,
};

static void free_membership(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    json_decref(((membership *)arg)->metadata);
    free(arg);
}

int p2p__membership_register(p2p_ctx *ctx)
{
    membership *m = p2p__xcalloc(1, sizeof(*m));
    m->ctx = ctx;
    if (!p2p__component_add(ctx, &membership_ops, m)) {
        free(m);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "membership", m);
    p2p__ctx_on_shutdown(ctx, free_membership, m);
    return 0;
}
