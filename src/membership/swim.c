/*
 * swim.c — SWIM membership with Lifeguard suspicion and local health, as a
 * pure state machine (see swim.h for the protocol and its rules). The shape
 * follows memberlist: a member table (array in probe order + id hash), one
 * probe in flight, a relay table for PING_REQs served for others, per-member
 * suspicion timers, and the transmit-limited broadcast queue of codec.c.
 * Everything that waits is a deadline compared with the `now` the caller
 * passes in, so a test can drive hundreds of instances on a simulated clock.
 */
#include "membership/swim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define MAX_RELAYS 64
#define MAX_JOINS 16
#define MAX_SYNC_PACKETS 64 /* a sync lists ~13 members per datagram with small meta */
#define REAP_CHECK_MS 1000
#define MAX_PARKED 32       /* ALIVEs waiting for their certificate */
#define PARK_MS 5000
#define MAX_CERT_REQS 16    /* certificates asked for / answered per datagram */
#define MAX_CERTS_IN 8      /* CERT frames checked per datagram */

/* ================================================================== */
/* types                                                               */
/* ================================================================== */

typedef char node_id[P2P_GOSSIP_ID_MAX + 1];

typedef struct suspicion {
    uint64_t start_ms, deadline_ms, min_ms, max_ms;
    uint32_t k, n;       /* expected and received confirmations */
    node_id *confirmers; /* k + 1: [0] is the originator */
} suspicion;

typedef struct member {
    p2p_swim_member pub; /* first: a p2p_swim_member * is a member * */
    char *meta;          /* owned, NUL-terminated; pub.node.meta points here */
    struct member *hnext;
    suspicion *susp;
} member;

typedef struct relay {
    bool used;
    uint32_t local_seq, orig_seq;
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    uint16_t port;
    uint64_t expires_ms;
} relay;

typedef struct join {
    bool used;
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    uint16_t port;
    uint32_t seq, attempts;
    uint64_t next_ms;
} join;

/* An ALIVE whose certificate we asked for (records.h). */
typedef struct parked {
    bool used, quiet;
    p2p_gossip_node node;
    char *meta; /* owned; node.meta points here */
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    uint16_t port;
    uint64_t expires_ms;
} parked;

typedef struct probe {
    bool active, indirect_sent;
    node_id target;
    uint32_t target_inc, seq;
    uint64_t timeout_ms, deadline_ms;
    uint32_t expected_nacks, nacks;
} probe;

struct p2p_swim {
    p2p_swim_config cfg;
    p2p_swim_callbacks cb;
    uint64_t rng;
    uint64_t now, last_tick;
    member *self;
    member **members; /* probe order */
    member **scratch; /* random selection */
    size_t nmembers, cap, nlive, nsusp;
    member **htab;
    size_t hcap; /* power of two */
    size_t probe_index;
    probe probe;
    uint64_t next_probe, next_gossip, next_reap;
    uint32_t seq;
    uint32_t awareness;
    bool left;
    relay relays[MAX_RELAYS];
    join joins[MAX_JOINS];
    p2p_gossip_queue *bq;
    uint8_t *pkt;
    size_t pkt_cap;
    uint8_t frame[P2P_GOSSIP_MAX_FRAME];
    p2p_swim_stats st;
    /* View digest: sum of view_term() over the live members (with nlive). */
    uint32_t digest;
    bool mismatch;           /* peers with a different, not smaller, view were seen... */
    uint64_t mismatch_since; /* ...since this time, and none agreeing with us */
    uint64_t next_pull;
    /* The datagram being handled: a sync (apply, do not re-broadcast); its
     * source; whether a stale accusation / a SYNC_REQ in it was answered
     * already (one of each per datagram). */
    bool rx_quiet, rx_answered, rx_synced;
    const char *rx_addr;
    uint16_t rx_port;
    /* records: parked ALIVEs, certificate requests of the datagram being
     * handled, the to-be-signed scratch buffer */
    parked parked[MAX_PARKED];
    uint8_t rx_want[MAX_CERT_REQS][P2P_GOSSIP_CERT_ID_LEN];
    char rx_want_id[MAX_CERT_REQS][P2P_GOSSIP_ID_MAX + 1];
    unsigned rx_nwant, rx_ncerts, rx_nanswered;
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME + 32];
};

/* ================================================================== */
/* arithmetic                                                          */
/* ================================================================== */

uint64_t p2p_swim_suspicion_min_ms(uint32_t suspicion_mult, size_t n, uint32_t probe_interval_ms)
{
    /* memberlist util.go: scale = max(1, log10(max(1, n))), kept to 1/1000. */
    double scale = log10(n < 1 ? 1.0 : (double)n);
    if (scale < 1.0)
        scale = 1.0;
    uint64_t scale1000 = (uint64_t)(scale * 1000.0);
    return (uint64_t)suspicion_mult * scale1000 * probe_interval_ms / 1000;
}

uint64_t p2p_swim_suspicion_timeout_ms(uint32_t c, uint32_t k, uint64_t min_ms, uint64_t max_ms)
{
    if (k < 1)
        return min_ms;
    /* memberlist suspicion.go remainingSuspicionTime, before subtracting the
     * elapsed time: each confirmation moves the timeout from max towards min
     * by a logarithmically shrinking step; k confirmations reach min. */
    double frac = log((double)c + 1.0) / log((double)k + 1.0);
    double raw = (double)max_ms - frac * ((double)max_ms - (double)min_ms);
    double t = floor(raw);
    if (t < (double)min_ms)
        return min_ms;
    return (uint64_t)t;
}

unsigned p2p_swim_retransmit_limit(uint32_t retransmit_mult, size_t n)
{
    double scale = ceil(log10((double)n + 1.0));
    return retransmit_mult * (unsigned)scale;
}

/* ================================================================== */
/* small helpers                                                       */
/* ================================================================== */

static uint64_t rnd(p2p_swim *s)
{
    /* splitmix64: tiny, seedable, good enough to pick probe targets. */
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rnd_below(p2p_swim *s, size_t n)
{
    return n ? (size_t)(rnd(s) % n) : 0;
}

static bool live(p2p_swim_state st)
{
    return st == P2P_SWIM_ALIVE || st == P2P_SWIM_SUSPECT;
}

static const char *self_id(const p2p_swim *s)
{
    return s->self->pub.node.id;
}

static uint64_t scaled_interval(const p2p_swim *s)
{
    return (uint64_t)s->cfg.probe_interval_ms * (s->awareness + 1);
}

static void awareness_apply(p2p_swim *s, int delta)
{
    int64_t v = (int64_t)s->awareness + delta;
    if (v < 0)
        v = 0;
    if (v > (int64_t)s->cfg.awareness_max - 1)
        v = (int64_t)s->cfg.awareness_max - 1;
    s->awareness = (uint32_t)v;
}

static unsigned transmit_limit(const p2p_swim *s)
{
    return p2p_swim_retransmit_limit(s->cfg.retransmit_mult, s->nlive);
}

static void emit(p2p_swim *s, p2p_swim_event ev, member *m)
{
    if (s->cb.event && m != s->self)
        s->cb.event(s->cb.udata, ev, &m->pub);
}

static uint32_t id_hash32(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a-32 */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h;
}

/* A live member's share of the view digest: its id and incarnation, so that
 * a missed refutation shows as a difference too. */
static uint32_t view_term(const member *m)
{
    return id_hash32(m->pub.node.id) ^ (m->pub.node.incarnation * 0x9e3779b1u);
}

/* A member enters (+1) or leaves (-1) the live set: count and digest. */
static void view_change(p2p_swim *s, const member *m, int sign)
{
    s->nlive += sign > 0 ? 1 : (size_t)-1;
    s->digest += sign > 0 ? view_term(m) : (uint32_t)-view_term(m);
}

/* Every change of a member's incarnation goes through here (digest). */
static void set_incarnation(p2p_swim *s, member *m, uint32_t inc)
{
    bool in_view = live(m->pub.state);
    if (in_view)
        view_change(s, m, -1);
    m->pub.node.incarnation = inc;
    if (in_view)
        view_change(s, m, 1);
}

static void set_state(p2p_swim *s, member *m, p2p_swim_state st, uint64_t now)
{
    if (live(m->pub.state) != live(st))
        view_change(s, m, live(st) ? 1 : -1);
    m->pub.state = st;
    m->pub.state_change_ms = now;
}

/* ================================================================== */
/* member table                                                        */
/* ================================================================== */

static size_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return (size_t)h;
}

static member *find(const p2p_swim *s, const char *id)
{
    for (member *m = s->htab[hash_id(id) & (s->hcap - 1)]; m; m = m->hnext)
        if (!strcmp(m->pub.node.id, id))
            return m;
    return NULL;
}

static void hash_insert(p2p_swim *s, member *m)
{
    size_t b = hash_id(m->pub.node.id) & (s->hcap - 1);
    m->hnext = s->htab[b];
    s->htab[b] = m;
}

static void hash_grow(p2p_swim *s)
{
    size_t old = s->hcap;
    member **ot = s->htab;
    s->hcap = old * 2;
    s->htab = p2p__xcalloc(s->hcap, sizeof(*s->htab));
    for (size_t i = 0; i < old; i++)
        for (member *m = ot[i], *next; m; m = next) {
            next = m->hnext;
            hash_insert(s, m);
        }
    free(ot);
}

static void set_meta(member *m, const char *meta, size_t len)
{
    char *copy = p2p__xmalloc(len + 1);
    if (len)
        memcpy(copy, meta, len);
    copy[len] = '\0';
    free(m->meta);
    m->meta = copy;
    m->pub.node.meta = copy;
    m->pub.node.meta_len = len;
}

static void set_record(member *m, const p2p_gossip_node *n)
{
    const char *meta = n->meta; /* may be m's own buffer: set_meta copies before freeing */
    size_t len = n->meta_len;
    m->pub.node = *n;
    set_meta(m, meta, len);
}

static bool record_equal(const member *m, const p2p_gossip_node *n)
{
    const p2p_gossip_node *o = &m->pub.node;
    if (o->port != n->port || o->naddrs != n->naddrs || strcmp(o->role, n->role) || o->meta_len != n->meta_len)
        return false;
    for (unsigned i = 0; i < n->naddrs; i++)
        if (strcmp(o->addrs[i], n->addrs[i]))
            return false;
    return n->meta_len == 0 || !memcmp(o->meta, n->meta, n->meta_len);
}

static void suspicion_clear(p2p_swim *s, member *m)
{
    if (!m->susp)
        return;
    free(m->susp->confirmers);
    free(m->susp);
    m->susp = NULL;
    s->nsusp--;
}

/* Adds a new member at a random position in the probe order (memberlist: so
 * the failure detection bound stays low on average). */
static member *member_add(p2p_swim *s, const p2p_gossip_node *n, p2p_swim_state st, uint64_t now)
{
    if (s->nmembers == s->cap) {
        s->cap *= 2;
        s->members = p2p__xrealloc(s->members, s->cap * sizeof(*s->members));
        s->scratch = p2p__xrealloc(s->scratch, s->cap * sizeof(*s->scratch));
    }
    if (s->nmembers + 1 > s->hcap)
        hash_grow(s);
    member *m = p2p__xcalloc(1, sizeof(*m));
    set_record(m, n);
    m->pub.state = st;
    m->pub.state_change_ms = now;
    if (live(st))
        view_change(s, m, 1);
    size_t at = rnd_below(s, s->nmembers + 1);
    s->members[s->nmembers] = at < s->nmembers ? s->members[at] : m;
    s->members[at] = m;
    s->nmembers++;
    hash_insert(s, m);
    return m;
}

static void member_remove(p2p_swim *s, size_t i)
{
    member *m = s->members[i];
    member **pp = &s->htab[hash_id(m->pub.node.id) & (s->hcap - 1)];
    while (*pp != m)
        pp = &(*pp)->hnext;
    *pp = m->hnext;
    memmove(&s->members[i], &s->members[i + 1], (s->nmembers - i - 1) * sizeof(*s->members));
    s->nmembers--;
    if (i < s->probe_index)
        s->probe_index--;
    if (live(m->pub.state))
        view_change(s, m, -1);
    suspicion_clear(s, m);
    free(m->meta);
    free(m);
}

static void shuffle(p2p_swim *s)
{
    for (size_t i = s->nmembers; i > 1; i--) {
        size_t j = rnd_below(s, i);
        member *t = s->members[i - 1];
        s->members[i - 1] = s->members[j];
        s->members[j] = t;
    }
}

typedef bool (*member_filter)(const p2p_swim *s, const member *m, const member *exclude, uint64_t now);

/* Picks up to k distinct members passing `keep`, uniformly (partial
 * Fisher-Yates over the candidates). */
static size_t random_members(p2p_swim *s, member **out, size_t k, member_filter keep, const member *exclude,
                             uint64_t now)
{
    size_t nc = 0;
    for (size_t i = 0; i < s->nmembers; i++)
        if (keep(s, s->members[i], exclude, now))
            s->scratch[nc++] = s->members[i];
    size_t got = 0;
    for (; got < k && got < nc; got++) {
        size_t j = got + rnd_below(s, nc - got);
        member *t = s->scratch[got];
        s->scratch[got] = s->scratch[j];
        s->scratch[j] = t;
        out[got] = s->scratch[got];
    }
    return got;
}

static bool gossip_peer(const p2p_swim *s, const member *m, const member *exclude, uint64_t now)
{
    if (m == s->self || m == exclude)
        return false;
    if (live(m->pub.state))
        return true;
    return m->pub.state == P2P_SWIM_DEAD && now - m->pub.state_change_ms <= s->cfg.gossip_to_dead_ms;
}

static bool alive_peer(const p2p_swim *s, const member *m, const member *exclude, uint64_t now)
{
    return m != s->self && m != exclude && m->pub.state == P2P_SWIM_ALIVE;
}

/* ================================================================== */
/* output                                                              */
/* ================================================================== */

static void packet_start(p2p_swim *s, p2p_gossip_writer *w)
{
    p2p_gossip_writer_init(w, s->pkt, s->pkt_cap);
}

static void packet_send(p2p_swim *s, p2p_gossip_writer *w, const char *addr, uint16_t port)
{
    if (w->count == 0)
        return;
    s->st.packets_sent++;
    s->st.bytes_sent += w->len;
    s->cb.send(s->cb.udata, addr, port, w->buf, w->len);
}

/* Piggybacks queued broadcasts, then sends. */
static void packet_finish(p2p_swim *s, p2p_gossip_writer *w, const char *addr, uint16_t port)
{
    p2p_gossip_queue_fill(s->bq, w, s->cfg.packet_budget, transmit_limit(s), false);
    packet_send(s, w, addr, port);
}

/* Adds m to the packet; a message that does not fit the budget (an ALIVE
 * with a big meta) goes out alone right away instead. */
static void packet_add(p2p_swim *s, p2p_gossip_writer *w, const p2p_gossip_msg *m, const char *addr, uint16_t port)
{
    if (p2p_gossip_writer_add(w, m, s->cfg.packet_budget) == 0)
        return;
    uint8_t *alone = p2p__xmalloc(P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME);
    p2p_gossip_writer w2;
    p2p_gossip_writer_init(&w2, alone, P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME);
    if (p2p_gossip_writer_add(&w2, m, w2.cap) == 0)
        packet_send(s, &w2, addr, port);
    free(alone);
}

static void msg_alive(p2p_gossip_msg *m, const member *mb)
{
    memset(m, 0, sizeof(*m));
    m->type = P2P_GOSSIP_ALIVE;
    m->node = mb->pub.node;
}

static void msg_accuse(p2p_gossip_msg *m, p2p_gossip_type type, const char *id, uint32_t inc, const char *from)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->incarnation = inc;
    snprintf(m->id, sizeof(m->id), "%s", id);
    snprintf(m->from, sizeof(m->from), "%s", from);
}

/* A leave of mb, with its signature when we have it. */
static void msg_leave(p2p_gossip_msg *m, const member *mb)
{
    msg_accuse(m, P2P_GOSSIP_DEAD, mb->pub.node.id, mb->pub.node.incarnation, mb->pub.node.id);
    m->sig = mb->pub.leave;
}

static void msg_seq(p2p_gossip_msg *m, p2p_gossip_type type, uint32_t seq)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->seq = seq;
}

static void msg_ping(p2p_gossip_msg *m, const p2p_swim *s, uint32_t seq, const char *target)
{
    msg_seq(m, P2P_GOSSIP_PING, seq);
    snprintf(m->id, sizeof(m->id), "%s", target);
    snprintf(m->from, sizeof(m->from), "%s", s->self->pub.node.id);
    m->live = (uint32_t)s->nlive;
    m->digest = s->digest;
}

static void msg_ack(p2p_gossip_msg *m, const p2p_swim *s, uint32_t seq)
{
    msg_seq(m, P2P_GOSSIP_ACK, seq);
    m->live = (uint32_t)s->nlive;
    m->digest = s->digest;
}

/* Our view of m as the message that makes m refute if it is alive. */
static void msg_view(p2p_gossip_msg *out, const p2p_swim *s, const member *m)
{
    const char *id = m->pub.node.id;
    uint32_t inc = m->pub.node.incarnation;
    switch (m->pub.state) {
    case P2P_SWIM_ALIVE:
        msg_alive(out, m);
        break;
    case P2P_SWIM_SUSPECT:
        msg_accuse(out, P2P_GOSSIP_SUSPECT, id, inc, self_id(s));
        break;
    case P2P_SWIM_DEAD:
        msg_accuse(out, P2P_GOSSIP_DEAD, id, inc, self_id(s));
        break;
    case P2P_SWIM_LEFT:
        msg_leave(out, m);
        break;
    }
}

static void broadcast(p2p_swim *s, const p2p_gossip_msg *m)
{
    if (s->rx_quiet && !(m->type == P2P_GOSSIP_ALIVE && !strcmp(m->node.id, self_id(s))))
        return; /* old news from a join sync (a refutation still goes out) */
    int n = p2p_gossip_encode_frame(m, s->frame, sizeof(s->frame));
    if (n > 0)
        p2p_gossip_queue_push(s->bq, m->type == P2P_GOSSIP_ALIVE ? m->node.id : m->id, s->frame, (size_t)n);
}

static void broadcast_alive(p2p_swim *s, const member *mb)
{
    p2p_gossip_msg m;
    msg_alive(&m, mb);
    broadcast(s, &m);
}

static void broadcast_accuse(p2p_swim *s, p2p_gossip_type type, const char *id, uint32_t inc, const char *from)
{
    p2p_gossip_msg m;
    msg_accuse(&m, type, id, inc, from);
    broadcast(s, &m);
}

/* ================================================================== */
/* record ownership (records.h)                                        */
/* ================================================================== */

static bool signing(const p2p_swim *s)
{
    return s->cb.sign && s->cb.verify;
}

/* Signs our own record after every change of it (unsigned when it fails:
 * the others will refuse it and we retry with the next change). */
static void sign_self(p2p_swim *s)
{
    p2p_gossip_node *n = &s->self->pub.node;
    if (!signing(s))
        return;
    uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN];
    memcpy(cert_id, n->sig.cert_id, sizeof cert_id);
    int len = p2p_gossip_alive_tbs(n, s->tbs, sizeof s->tbs);
    p2p_gossip_sig sig = {0};
    if (len < 0 || s->cb.sign(s->cb.udata, s->tbs, (size_t)len, &sig) != 0 ||
        memcmp(sig.cert_id, cert_id, sizeof cert_id))
        memset(&sig, 0, sizeof sig);
    memcpy(sig.cert_id, cert_id, sizeof cert_id);
    n->sig = sig;
}

static void sign_leave(p2p_swim *s)
{
    member *me = s->self;
    memset(&me->pub.leave, 0, sizeof me->pub.leave);
    if (!signing(s))
        return;
    int len = p2p_gossip_leave_tbs(me->pub.node.id, me->pub.node.incarnation, me->pub.node.sig.cert_id, s->tbs,
                                   sizeof s->tbs);
    if (len < 0 || s->cb.sign(s->cb.udata, s->tbs, (size_t)len, &me->pub.leave) != 0)
        memset(&me->pub.leave, 0, sizeof me->pub.leave);
}

/* 0 when n is signed by its node (or records are not checked). */
static int verify_alive(p2p_swim *s, const p2p_gossip_node *n)
{
    if (!signing(s))
        return 0;
    int len = p2p_gossip_alive_tbs(n, s->tbs, sizeof s->tbs);
    if (len < 0)
        return -EINVAL;
    return s->cb.verify(s->cb.udata, n->id, n->role, s->tbs, (size_t)len, &n->sig);
}

static int verify_leave(p2p_swim *s, const char *id, uint32_t inc, const p2p_gossip_sig *sig)
{
    if (!signing(s))
        return 0;
    static const p2p_gossip_sig none; /* refused (and counted) by the verifier */
    if (!sig)
        sig = &none;
    int len = p2p_gossip_leave_tbs(id, inc, sig->cert_id, s->tbs, sizeof s->tbs);
    if (len < 0)
        return -EINVAL;
    return s->cb.verify(s->cb.udata, id, NULL, s->tbs, (size_t)len, sig);
}

static void parked_clear(parked *p)
{
    free(p->meta);
    memset(p, 0, sizeof *p);
}

/* Holds n until its certificate arrives, and asks the datagram's sender
 * for it (once per certificate per datagram, at the end of the datagram). */
static void park(p2p_swim *s, uint64_t now, const p2p_gossip_node *n, const char *addr, uint16_t port)
{
    parked *slot = NULL;
    for (size_t i = 0; i < MAX_PARKED && !slot; i++)
        if (s->parked[i].used && !strcmp(s->parked[i].node.id, n->id))
            slot = &s->parked[i];
    if (slot && slot->node.incarnation > n->incarnation)
        return;
    for (size_t i = 0; i < MAX_PARKED && !slot; i++)
        if (!s->parked[i].used)
            slot = &s->parked[i];
    bool evict = !slot;
    for (size_t i = 0; i < MAX_PARKED && !slot; i++) /* full: the oldest goes */
        if (!slot || s->parked[i].expires_ms < slot->expires_ms)
            slot = &s->parked[i];
    if (evict) { /* never vouched for */
        s->st.records_refused++;
        s->st.records_unvouched++;
    }
    parked_clear(slot);
    slot->used = true;
    slot->quiet = s->rx_quiet;
    slot->node = *n;
    slot->meta = p2p__xmalloc(n->meta_len + 1);
    if (n->meta_len)
        memcpy(slot->meta, n->meta, n->meta_len);
    slot->meta[n->meta_len] = '\0';
    slot->node.meta = slot->meta;
    snprintf(slot->addr, sizeof slot->addr, "%s", addr);
    slot->port = port;
    slot->expires_ms = now + PARK_MS;
    s->st.records_parked++;
    for (unsigned i = 0; i < s->rx_nwant; i++)
        if (!memcmp(s->rx_want[i], n->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN))
            return;
    if (s->rx_nwant < MAX_CERT_REQS) {
        memcpy(s->rx_want[s->rx_nwant], n->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
        snprintf(s->rx_want_id[s->rx_nwant], sizeof s->rx_want_id[0], "%s", n->id);
        s->rx_nwant++;
    }
}

/* Whether an ALIVE that would change our view may: verified, or parked
 * (when it names a certificate we lack and came in a datagram), or refused. */
static bool admit(p2p_swim *s, uint64_t now, const p2p_gossip_node *n, const char *from_addr, uint16_t from_port)
{
    int r = verify_alive(s, n);
    if (r == 0)
        return true;
    if (r == -ENOKEY && from_addr && s->cb.cert_get && s->cb.cert_put) {
        park(s, now, n, from_addr, from_port);
    } else {
        s->st.records_refused++;
        s->st.records_unvouched += r == -ENOKEY;
    }
    return false;
}

/* ================================================================== */
/* merge rules                                                         */
/* ================================================================== */

static void refute(p2p_swim *s, uint32_t accused)
{
    member *me = s->self;
    uint32_t inc = me->pub.node.incarnation + 1;
    if (accused >= inc)
        inc = accused + 1;
    set_incarnation(s, me, inc);
    sign_self(s);
    s->st.refutations++;
    awareness_apply(s, 1);
    broadcast_alive(s, me);
}

/* True when from_addr:from_port is one of n's addresses with its port: the
 * message came from the node itself. */
static bool from_node(const p2p_gossip_node *n, const char *from_addr, uint16_t from_port)
{
    if (!from_addr || from_port != n->port)
        return false;
    char canon[P2P_GOSSIP_ADDRSTRLEN];
    if (p2p_gossip_addr_canon(from_addr, canon) < 0)
        return false;
    for (unsigned i = 0; i < n->naddrs; i++)
        if (!strcmp(n->addrs[i], canon))
            return true;
    return false;
}

static void send_view(p2p_swim *s, const member *m, const char *addr, uint16_t port)
{
    p2p_gossip_writer w;
    p2p_gossip_msg v;
    packet_start(s, &w);
    msg_view(&v, s, m);
    packet_add(s, &w, &v, addr, port);
    packet_finish(s, &w, addr, port);
}

static void handle_alive(p2p_swim *s, uint64_t now, const p2p_gossip_node *n, const char *from_addr, uint16_t from_port)
{
    member *m = find(s, n->id);
    if (!m) {
        if (s->nmembers >= s->cfg.max_members) {
            s->st.members_dropped++;
            return;
        }
        if (!admit(s, now, n, from_addr, from_port))
            return;
        m = member_add(s, n, P2P_SWIM_ALIVE, now);
        m->pub.last_seen_ms = now;
        broadcast_alive(s, m);
        emit(s, P2P_SWIM_EV_JOIN, m);
        return;
    }
    if (m == s->self) {
        if (s->left || n->incarnation < m->pub.node.incarnation)
            return;
        if (n->incarnation == m->pub.node.incarnation && record_equal(m, n))
            return;
        if (!admit(s, now, n, NULL, 0)) /* a forgery about us is not worth a refutation */
            return;
        refute(s, n->incarnation);
        return;
    }
    uint32_t inc = m->pub.node.incarnation;
    if (n->incarnation <= inc) {
        bool stale = n->incarnation < inc || m->pub.state != P2P_SWIM_ALIVE;
        if (stale && (from_node(n, from_addr, from_port) || from_node(&m->pub.node, from_addr, from_port)))
            send_view(s, m, from_addr, from_port);
        return;
    }
    if (!admit(s, now, n, from_addr, from_port))
        return;
    p2p_swim_state old = m->pub.state;
    bool changed = !record_equal(m, n);
    suspicion_clear(s, m);
    if (live(old))
        view_change(s, m, -1);
    set_record(m, n);
    if (live(old))
        view_change(s, m, 1);
    m->pub.last_seen_ms = now;
    if (old != P2P_SWIM_ALIVE)
        set_state(s, m, P2P_SWIM_ALIVE, now);
    broadcast_alive(s, m);
    if (old != P2P_SWIM_ALIVE)
        emit(s, P2P_SWIM_EV_ALIVE_AGAIN, m);
    else if (changed)
        emit(s, P2P_SWIM_EV_UPDATE, m);
}

static void suspicion_start(p2p_swim *s, member *m, const char *from, uint64_t now)
{
    suspicion *sp = p2p__xcalloc(1, sizeof(*sp));
    size_t n = s->nlive;
    uint32_t k = s->cfg.suspicion_confirmations;
    if (n < (size_t)k + 2)
        k = n > 2 ? (uint32_t)(n - 2) : 0; /* only so many others can confirm */
    sp->k = k;
    sp->min_ms = p2p_swim_suspicion_min_ms(s->cfg.suspicion_mult, n, s->cfg.probe_interval_ms);
    if (sp->min_ms < s->cfg.suspicion_min_floor_ms)
        sp->min_ms = s->cfg.suspicion_min_floor_ms;
    sp->max_ms = sp->min_ms * s->cfg.suspicion_max_timeout_mult;
    sp->start_ms = now;
    sp->deadline_ms = now + p2p_swim_suspicion_timeout_ms(0, k, sp->min_ms, sp->max_ms);
    sp->confirmers = p2p__xcalloc((size_t)k + 1, sizeof(node_id));
    snprintf(sp->confirmers[0], sizeof(node_id), "%s", from);
    m->susp = sp;
    s->nsusp++;
}

/* Counts an independent confirmation; true when it was new. */
static bool suspicion_confirm(suspicion *sp, const char *from)
{
    if (sp->n >= sp->k)
        return false;
    for (uint32_t i = 0; i <= sp->n; i++)
        if (!strcmp(sp->confirmers[i], from))
            return false;
    sp->n++;
    snprintf(sp->confirmers[sp->n], sizeof(node_id), "%s", from);
    sp->deadline_ms = sp->start_ms + p2p_swim_suspicion_timeout_ms(sp->n, sp->k, sp->min_ms, sp->max_ms);
    return true;
}

/* An accusation about us older than our incarnation: whoever sent it is
 * behind on us (it missed our refutation); tell it, once per datagram. */
static void answer_stale(p2p_swim *s, const member *m, uint32_t inc)
{
    if (m != s->self || s->left || inc >= m->pub.node.incarnation || !s->rx_addr || s->rx_answered)
        return;
    s->rx_answered = true;
    send_view(s, m, s->rx_addr, s->rx_port);
}

static void handle_suspect(p2p_swim *s, uint64_t now, const char *id, uint32_t inc, const char *from)
{
    member *m = find(s, id);
    if (m)
        answer_stale(s, m, inc);
    if (!m || inc < m->pub.node.incarnation)
        return;
    if (m->susp) {
        if (suspicion_confirm(m->susp, from))
            broadcast_accuse(s, P2P_GOSSIP_SUSPECT, id, inc, from);
        return;
    }
    if (m->pub.state != P2P_SWIM_ALIVE)
        return;
    if (m == s->self) {
        refute(s, inc);
        return;
    }
    broadcast_accuse(s, P2P_GOSSIP_SUSPECT, id, inc, from);
    set_incarnation(s, m, inc);
    set_state(s, m, P2P_SWIM_SUSPECT, now);
    suspicion_start(s, m, from, now);
    emit(s, P2P_SWIM_EV_SUSPECT, m);
}

/* `sig`: a leave's signature (from == id), or NULL. */
static void handle_dead(p2p_swim *s, uint64_t now, const char *id, uint32_t inc, const char *from,
                        const p2p_gossip_sig *sig)
{
    member *m = find(s, id);
    if (m)
        answer_stale(s, m, inc);
    if (!m || inc < m->pub.node.incarnation)
        return;
    bool leave = !strcmp(id, from);
    if (m->pub.state == P2P_SWIM_DEAD || m->pub.state == P2P_SWIM_LEFT) {
        suspicion_clear(s, m);
        return;
    }
    if (m == s->self && !s->left) {
        refute(s, inc);
        return;
    }
    if (leave && m != s->self && verify_leave(s, id, inc, sig) != 0) {
        s->st.records_refused++; /* only the node itself may say it left */
        return;
    }
    suspicion_clear(s, m);
    set_incarnation(s, m, inc);
    if (leave && m == s->self)
        sign_leave(s);
    else if (leave && sig)
        m->pub.leave = *sig;
    p2p_gossip_msg out;
    if (leave)
        msg_leave(&out, m);
    else
        msg_accuse(&out, P2P_GOSSIP_DEAD, id, inc, from);
    broadcast(s, &out);
    set_state(s, m, leave ? P2P_SWIM_LEFT : P2P_SWIM_DEAD, now);
    emit(s, leave ? P2P_SWIM_EV_LEAVE : P2P_SWIM_EV_DEAD, m);
}

/* ================================================================== */
/* probing                                                             */
/* ================================================================== */

static member *next_probe_target(p2p_swim *s)
{
    for (size_t tries = 0; tries <= s->nmembers; tries++) {
        if (s->probe_index >= s->nmembers) {
            shuffle(s);
            s->probe_index = 0;
        }
        member *m = s->members[s->probe_index++];
        if (m != s->self && live(m->pub.state))
            return m;
    }
    return NULL;
}

static void probe_start(p2p_swim *s, uint64_t now)
{
    member *t = next_probe_target(s);
    if (!t)
        return;
    probe *p = &s->probe;
    memset(p, 0, sizeof(*p));
    p->active = true;
    snprintf(p->target, sizeof(p->target), "%s", t->pub.node.id);
    p->target_inc = t->pub.node.incarnation;
    p->seq = ++s->seq;
    p->timeout_ms = now + s->cfg.probe_timeout_ms;
    p->deadline_ms = now + scaled_interval(s);

    p2p_gossip_writer w;
    p2p_gossip_msg m;
    const char *addr = t->pub.node.addrs[0];
    uint16_t port = t->pub.node.port;
    packet_start(s, &w);
    msg_ping(&m, s, p->seq, t->pub.node.id);
    packet_add(s, &w, &m, addr, port);
    if (t->pub.state == P2P_SWIM_SUSPECT) {
        /* Tell it, so it can refute right away (memberlist does the same). */
        msg_accuse(&m, P2P_GOSSIP_SUSPECT, t->pub.node.id, t->pub.node.incarnation, self_id(s));
        packet_add(s, &w, &m, addr, port);
    }
    packet_finish(s, &w, addr, port);
    s->st.probes_sent++;
}

static void probe_indirect(p2p_swim *s, uint64_t now)
{
    probe *p = &s->probe;
    p->indirect_sent = true;
    member *t = find(s, p->target);
    if (!t)
        return;
    member *peers[64];
    size_t k = s->cfg.indirect_checks < 64 ? s->cfg.indirect_checks : 64;
    size_t n = random_members(s, peers, k, alive_peer, t, now);
    for (size_t i = 0; i < n; i++) {
        p2p_gossip_writer w;
        p2p_gossip_msg m;
        msg_seq(&m, P2P_GOSSIP_PING_REQ, p->seq);
        snprintf(m.id, sizeof(m.id), "%s", t->pub.node.id);
        snprintf(m.addr, sizeof(m.addr), "%s", t->pub.node.addrs[0]);
        m.port = t->pub.node.port;
        packet_start(s, &w);
        packet_add(s, &w, &m, peers[i]->pub.node.addrs[0], peers[i]->pub.node.port);
        packet_finish(s, &w, peers[i]->pub.node.addrs[0], peers[i]->pub.node.port);
        s->st.indirect_probes++;
    }
    p->expected_nacks = (uint32_t)n;
}

static void probe_failed(p2p_swim *s, uint64_t now)
{
    probe *p = &s->probe;
    p->active = false;
    s->st.probe_failures++;
    /* Lifeguard: with nack-capable peers, only missing nacks count against
     * our own health (they were reachable, so a missing nack means our
     * packets are not getting through); without peers, any failure does. */
    if (p->expected_nacks > 0)
        awareness_apply(s, p->nacks < p->expected_nacks ? (int)(p->expected_nacks - p->nacks) : 0);
    else
        awareness_apply(s, 1);
    member *t = find(s, p->target);
    if (!t || !live(t->pub.state))
        return;
    if (t->pub.state == P2P_SWIM_ALIVE && p->target_inc >= t->pub.node.incarnation)
        s->st.suspicions_raised++;
    handle_suspect(s, now, t->pub.node.id, p->target_inc, self_id(s));
}

/* ================================================================== */
/* input                                                               */
/* ================================================================== */

/* ---- anti-entropy over UDP ------------------------------------------
 * A SYNC_REQ is answered with our live members (self first) as ALIVE
 * records, SUSPECT ones followed by a SUSPECT, in datagrams that open with
 * SYNC(seq), at most MAX_SYNC_PACKETS of them; then what we know of the
 * others: DEAD members as SUSPECT (memberlist's mergeState: a remote death
 * is a reason to suspect, not to bury), LEFT as a leave. The receiver
 * applies them without re-broadcasting: they are a view, not news
 * (re-gossiping N records from each of N simultaneous joiners crowds every
 * queue). Joiners ask their seed. Any node asks a peer whose PING/ACK shows
 * a different view with at least as many live members, when such peers have
 * been seen for pull_delay_ms (half that if they know more members than we
 * do) and no peer agreed with us meanwhile (a single join, death or
 * refutation is spread by gossip well within that), or at once when the peer
 * knows clearly more (many nodes started together). */

static void sync_start(p2p_swim *s, p2p_gossip_writer *w, uint32_t seq)
{
    p2p_gossip_msg m;
    packet_start(s, w);
    msg_seq(&m, P2P_GOSSIP_SYNC, seq);
    p2p_gossip_writer_add(w, &m, s->cfg.packet_budget);
}

/* Adds m to a sync datagram, starting a new one when full. Returns false
 * when the datagram limit is reached. */
static bool sync_add(p2p_swim *s, p2p_gossip_writer *w, const p2p_gossip_msg *m, uint32_t seq, const char *addr,
                     uint16_t port, unsigned *packets)
{
    if (p2p_gossip_writer_add(w, m, s->cfg.packet_budget) == 0)
        return true;
    if (w->count > 1) { /* full: send, retry in a fresh datagram */
        packet_send(s, w, addr, port);
        if (++*packets >= MAX_SYNC_PACKETS)
            return false;
        sync_start(s, w, seq);
        if (p2p_gossip_writer_add(w, m, s->cfg.packet_budget) == 0)
            return true;
    }
    /* larger than the budget (big meta): alone behind its own SYNC */
    size_t cap = P2P_GOSSIP_HEADER_LEN + 7 + P2P_GOSSIP_MAX_FRAME;
    uint8_t *buf = p2p__xmalloc(cap);
    p2p_gossip_writer big;
    p2p_gossip_msg sm;
    p2p_gossip_writer_init(&big, buf, cap);
    msg_seq(&sm, P2P_GOSSIP_SYNC, seq);
    p2p_gossip_writer_add(&big, &sm, cap);
    if (p2p_gossip_writer_add(&big, m, cap) == 0) {
        packet_send(s, &big, addr, port);
        ++*packets;
    }
    free(buf);
    return *packets < MAX_SYNC_PACKETS;
}

static void send_sync(p2p_swim *s, const char *addr, uint16_t port, uint32_t seq)
{
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    unsigned packets = 0;
    bool room = true;
    sync_start(s, &w, seq);
    /* self first, then everyone else who is live */
    msg_alive(&m, s->self);
    room = sync_add(s, &w, &m, seq, addr, port, &packets);
    for (size_t i = 0; i < s->nmembers && room; i++) {
        member *mb = s->members[i];
        if (mb == s->self || !live(mb->pub.state))
            continue;
        msg_alive(&m, mb);
        room = sync_add(s, &w, &m, seq, addr, port, &packets);
        if (room && mb->pub.state == P2P_SWIM_SUSPECT) {
            msg_accuse(&m, P2P_GOSSIP_SUSPECT, mb->pub.node.id, mb->pub.node.incarnation, self_id(s));
            room = sync_add(s, &w, &m, seq, addr, port, &packets);
        }
    }
    for (size_t i = 0; i < s->nmembers && room; i++) {
        member *mb = s->members[i];
        if (mb == s->self || live(mb->pub.state))
            continue;
        const char *id = mb->pub.node.id;
        if (mb->pub.state == P2P_SWIM_LEFT)
            msg_leave(&m, mb);
        else
            msg_accuse(&m, P2P_GOSSIP_SUSPECT, id, mb->pub.node.incarnation, self_id(s));
        room = sync_add(s, &w, &m, seq, addr, port, &packets);
    }
    if (room && w.count > 1)
        packet_send(s, &w, addr, port);
    s->st.syncs_sent++;
}

/* Looks at a peer's view (from its PING or ACK); true when we should pull. */
static bool view_wants_pull(p2p_swim *s, uint64_t now, uint32_t peer_live, uint32_t peer_digest)
{
    if (!s->cfg.pull_delay_ms || s->left)
        return false;
    if (peer_digest == s->digest && peer_live == s->nlive) {
        s->mismatch = false; /* somebody agrees with us */
        return false;
    }
    if (peer_live < s->nlive)
        return false; /* it knows less; it will pull from us */
    size_t gap = peer_live - s->nlive, big = s->nlive / 16 > 2 ? s->nlive / 16 : 2;
    if (gap >= big && now >= s->next_pull) {
        /* far behind (many joined at once): a list is much cheaper than
         * waiting for ~gap rumors x retransmits of gossip */
        s->next_pull = now + s->cfg.pull_delay_ms / 2;
        s->st.syncs_requested++;
        return true;
    }
    if (!s->mismatch) {
        s->mismatch = true;
        s->mismatch_since = now;
        return false;
    }
    /* A peer that knows more members than we do is stronger evidence than a
     * digest difference at equal counts (a refutation in flight). */
    uint64_t wait = gap > 0 ? s->cfg.pull_delay_ms / 2 : s->cfg.pull_delay_ms;
    if (now - s->mismatch_since < wait || now < s->next_pull)
        return false;
    s->next_pull = now + s->cfg.pull_delay_ms;
    s->mismatch = false;
    s->st.syncs_requested++;
    return true;
}

static void handle_ping(p2p_swim *s, uint64_t now, const p2p_gossip_msg *in, const char *addr, uint16_t port)
{
    if (in->id[0] && strcmp(in->id, self_id(s)))
        return; /* meant for a node that used to be at this address */
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    packet_start(s, &w);
    msg_ack(&m, s, in->seq);
    packet_add(s, &w, &m, addr, port);
    if (!in->id[0]) { /* join ping: tell the joiner who we are */
        msg_alive(&m, s->self);
        packet_add(s, &w, &m, addr, port);
    }
    member *sender = find(s, in->from);
    if (sender && sender != s->self) {
        sender->pub.last_seen_ms = now;
        if (sender->pub.state != P2P_SWIM_ALIVE) {
            msg_view(&m, s, sender);
            packet_add(s, &w, &m, addr, port);
        }
    } else if (!sender) {
        /* Pinged by a member we do not know (its ALIVE missed us): ask it to
         * introduce itself, as a joiner asks its seed. */
        msg_ping(&m, s, ++s->seq, "");
        packet_add(s, &w, &m, addr, port);
    }
    if (view_wants_pull(s, now, in->live, in->digest)) {
        msg_seq(&m, P2P_GOSSIP_SYNC_REQ, ++s->seq);
        packet_add(s, &w, &m, addr, port);
    }
    packet_finish(s, &w, addr, port);
}

static void handle_ping_req(p2p_swim *s, uint64_t now, const p2p_gossip_msg *in, const char *addr, uint16_t port)
{
    if (!strcmp(in->id, self_id(s)))
        return;
    relay *r = NULL;
    for (size_t i = 0; i < MAX_RELAYS && !r; i++)
        if (!s->relays[i].used)
            r = &s->relays[i];
    if (!r)
        return; /* too many in flight: the requester treats us as a missing nack */
    r->used = true;
    r->local_seq = ++s->seq;
    r->orig_seq = in->seq;
    snprintf(r->addr, sizeof(r->addr), "%s", addr);
    r->port = port;
    /* Nack a little before the requester's own deadline (memberlist waits a
     * full probe timeout, so its nacks tend to arrive after the deadline). */
    uint64_t wait = (uint64_t)s->cfg.probe_timeout_ms * 4 / 5;
    r->expires_ms = now + (wait ? wait : 1);
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    packet_start(s, &w);
    msg_ping(&m, s, r->local_seq, in->id);
    packet_add(s, &w, &m, in->addr, in->port);
    packet_finish(s, &w, in->addr, in->port);
    s->st.relays++;
}

static void reply_seq(p2p_swim *s, p2p_gossip_type type, uint32_t seq, const char *addr, uint16_t port)
{
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    packet_start(s, &w);
    if (type == P2P_GOSSIP_ACK)
        msg_ack(&m, s, seq);
    else
        msg_seq(&m, type, seq);
    packet_add(s, &w, &m, addr, port);
    packet_finish(s, &w, addr, port);
}

static void handle_ack(p2p_swim *s, uint64_t now, const p2p_gossip_msg *in, const char *addr, uint16_t port)
{
    uint32_t seq = in->seq;
    if (view_wants_pull(s, now, in->live, in->digest))
        reply_seq(s, P2P_GOSSIP_SYNC_REQ, ++s->seq, addr, port);
    probe *p = &s->probe;
    if (p->active && seq == p->seq) {
        p->active = false;
        s->st.acks_received++;
        awareness_apply(s, -1);
        member *t = find(s, p->target);
        if (t)
            t->pub.last_seen_ms = now;
        return;
    }
    for (size_t i = 0; i < MAX_RELAYS; i++) {
        relay *r = &s->relays[i];
        if (r->used && r->local_seq == seq) {
            r->used = false;
            reply_seq(s, P2P_GOSSIP_ACK, r->orig_seq, r->addr, r->port);
            return;
        }
    }
    for (size_t i = 0; i < MAX_JOINS; i++)
        if (s->joins[i].used && s->joins[i].seq == seq)
            s->joins[i].used = false;
}

/* ---- certificates (records.h) -------------------------------------
 * A CERT_REQ is answered with the certificate from the cache (at most
 * MAX_CERT_REQS per datagram, each alone when it does not fit the budget:
 * packet_add). A CERT is looked at only when a parked ALIVE names it (so a
 * key holder cannot make us check certificates nobody asked for), at most
 * MAX_CERTS_IN per datagram; once cert_put accepted it, the parked records
 * are applied as if they had just arrived. */

static void handle_alive(p2p_swim *s, uint64_t now, const p2p_gossip_node *n, const char *from_addr,
                         uint16_t from_port);

static void handle_cert_req(p2p_swim *s, const p2p_gossip_msg *in, const char *addr, uint16_t port)
{
    const uint8_t *der = NULL;
    size_t len = 0;
    if (!s->cb.cert_get || s->rx_nanswered >= MAX_CERT_REQS ||
        s->cb.cert_get(s->cb.udata, in->sig.cert_id, &der, &len) != 0 || len < 1 || len > P2P_GOSSIP_CERT_MAX)
        return;
    s->rx_nanswered++;
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    memset(&m, 0, sizeof m);
    m.type = P2P_GOSSIP_CERT;
    memcpy(m.sig.cert_id, in->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
    m.der = der;
    m.der_len = len;
    packet_start(s, &w);
    packet_add(s, &w, &m, addr, port);
    packet_send(s, &w, addr, port);
    s->st.certs_sent++;
}

static void handle_cert(p2p_swim *s, uint64_t now, const p2p_gossip_msg *in)
{
    bool wanted = false;
    for (size_t i = 0; i < MAX_PARKED && !wanted; i++)
        wanted = s->parked[i].used && !memcmp(s->parked[i].node.sig.cert_id, in->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
    if (!wanted || !s->cb.cert_put || s->rx_ncerts >= MAX_CERTS_IN)
        return;
    s->rx_ncerts++;
    if (s->cb.cert_put(s->cb.udata, in->der, in->der_len, in->sig.cert_id) != 0)
        return;
    s->st.certs_accepted++;
    bool quiet = s->rx_quiet;
    for (size_t i = 0; i < MAX_PARKED; i++) {
        parked *p = &s->parked[i];
        if (!p->used || memcmp(p->node.sig.cert_id, in->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN))
            continue;
        parked copy = *p; /* handle_alive may park again (another certificate): keep ours apart */
        memset(p, 0, sizeof *p);
        s->rx_quiet = copy.quiet;
        handle_alive(s, now, &copy.node, copy.addr, copy.port);
        free(copy.meta);
    }
    s->rx_quiet = quiet;
}

/* After a datagram: ask its sender for the certificates of parked records. */
static void request_certs(p2p_swim *s, const char *addr, uint16_t port)
{
    if (!s->rx_nwant)
        return;
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    packet_start(s, &w);
    for (unsigned i = 0; i < s->rx_nwant; i++) {
        memset(&m, 0, sizeof m);
        m.type = P2P_GOSSIP_CERT_REQ;
        memcpy(m.sig.cert_id, s->rx_want[i], P2P_GOSSIP_CERT_ID_LEN);
        snprintf(m.id, sizeof m.id, "%s", s->rx_want_id[i]);
        if (p2p_gossip_writer_add(&w, &m, s->cfg.packet_budget) == 0)
            s->st.certs_requested++;
    }
    packet_send(s, &w, addr, port);
    s->rx_nwant = 0;
}

static void expire_parked(p2p_swim *s, uint64_t now)
{
    for (size_t i = 0; i < MAX_PARKED; i++)
        if (s->parked[i].used && now >= s->parked[i].expires_ms) {
            parked_clear(&s->parked[i]);
            s->st.records_refused++; /* never vouched for */
            s->st.records_unvouched++;
        }
}

static void handle_msg(p2p_swim *s, uint64_t now, const p2p_gossip_msg *m, const char *addr, uint16_t port)
{
    switch (m->type) {
    case P2P_GOSSIP_PING:
        handle_ping(s, now, m, addr, port);
        break;
    case P2P_GOSSIP_ACK:
        handle_ack(s, now, m, addr, port);
        break;
    case P2P_GOSSIP_PING_REQ:
        handle_ping_req(s, now, m, addr, port);
        break;
    case P2P_GOSSIP_SYNC_REQ:
        if (!s->rx_synced) {
            s->rx_synced = true;
            send_sync(s, addr, port, m->seq);
        }
        break;
    case P2P_GOSSIP_SYNC:
        break; /* seen before the datagram is applied (rx_quiet) */
    case P2P_GOSSIP_NACK:
        if (s->probe.active && m->seq == s->probe.seq) {
            s->probe.nacks++;
            s->st.nacks_received++;
        }
        break;
    case P2P_GOSSIP_ALIVE:
        handle_alive(s, now, &m->node, addr, port);
        break;
    case P2P_GOSSIP_SUSPECT:
        handle_suspect(s, now, m->id, m->incarnation, m->from);
        break;
    case P2P_GOSSIP_DEAD:
        handle_dead(s, now, m->id, m->incarnation, m->from, &m->sig);
        break;
    case P2P_GOSSIP_CERT_REQ:
        handle_cert_req(s, m, addr, port);
        break;
    case P2P_GOSSIP_CERT:
        handle_cert(s, now, m);
        break;
    }
}

static uint64_t clock_in(p2p_swim *s, uint64_t now)
{
    if (now > s->now)
        s->now = now;
    return s->now; /* a clock going backwards counts as no time passing */
}

int p2p_swim_receive(p2p_swim *s, uint64_t now, const char *from_addr, uint16_t from_port, const uint8_t *buf,
                     size_t len)
{
    now = clock_in(s, now);
    s->st.packets_received++;
    s->st.bytes_received += len;
    int rc = p2p_gossip_validate(buf, len, NULL, NULL);
    if (rc < 0) {
        s->st.decode_errors++;
        return rc;
    }
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    if (!from_addr || p2p_gossip_addr_canon(from_addr, addr) < 0 || from_port == 0)
        return -EINVAL;
    p2p_gossip_reader r;
    p2p_gossip_msg m;
    p2p_gossip_reader_init(&r, buf, len, NULL);
    s->rx_addr = addr;
    s->rx_port = from_port;
    s->rx_answered = s->rx_synced = false;
    s->rx_nwant = s->rx_ncerts = s->rx_nanswered = 0;
    bool first = true;
    while (p2p_gossip_reader_next(&r, &m, NULL) == 1) {
        if (first && m.type == P2P_GOSSIP_SYNC)
            s->rx_quiet = true;
        first = false;
        handle_msg(s, now, &m, addr, from_port);
    }
    s->rx_quiet = false;
    request_certs(s, addr, from_port);
    s->rx_addr = NULL;
    return 0;
}

/* ================================================================== */
/* the protocol period                                                 */
/* ================================================================== */

static void send_join(p2p_swim *s, join *j)
{
    p2p_gossip_writer w;
    p2p_gossip_msg m;
    packet_start(s, &w);
    msg_alive(&m, s->self);
    packet_add(s, &w, &m, j->addr, j->port);
    msg_ping(&m, s, j->seq, "");
    packet_add(s, &w, &m, j->addr, j->port);
    msg_seq(&m, P2P_GOSSIP_SYNC_REQ, j->seq);
    packet_add(s, &w, &m, j->addr, j->port);
    packet_finish(s, &w, j->addr, j->port);
    j->attempts++;
    /* the seed's ACK will show a much larger view: its sync is on the way */
    s->next_pull = s->now + s->cfg.pull_delay_ms / 2;
}

static void gossip_round(p2p_swim *s, uint64_t now)
{
    if (p2p_gossip_queue_len(s->bq) == 0)
        return;
    member *peers[64];
    size_t k = s->cfg.gossip_nodes < 64 ? s->cfg.gossip_nodes : 64;
    size_t n = random_members(s, peers, k, gossip_peer, NULL, now);
    for (size_t i = 0; i < n && p2p_gossip_queue_len(s->bq); i++) {
        p2p_gossip_writer w;
        packet_start(s, &w);
        p2p_gossip_queue_fill(s->bq, &w, s->cfg.packet_budget, transmit_limit(s), true);
        packet_send(s, &w, peers[i]->pub.node.addrs[0], peers[i]->pub.node.port);
    }
}

static void reap(p2p_swim *s, uint64_t now)
{
    for (size_t i = s->nmembers; i-- > 0;) {
        member *m = s->members[i];
        if (m == s->self || live(m->pub.state) || now - m->pub.state_change_ms < s->cfg.reap_ms)
            continue;
        emit(s, P2P_SWIM_EV_REAPED, m);
        member_remove(s, i);
    }
}

static void expire_suspicions(p2p_swim *s, uint64_t now)
{
    if (!s->nsusp)
        return;
    for (size_t i = 0; i < s->nmembers; i++) {
        member *m = s->members[i];
        if (!m->susp || now < m->susp->deadline_ms)
            continue;
        s->st.deaths_declared++;
        handle_dead(s, now, m->pub.node.id, m->pub.node.incarnation, self_id(s), NULL);
    }
}

/* We were not run for a long time: nothing we did not hear meanwhile is
 * anybody else's fault, and others probably suspect us by now: announce
 * ourselves alive with a new incarnation rather than wait to be told. */
static void stalled(p2p_swim *s, uint64_t now)
{
    s->st.stalls++;
    s->probe.active = false;
    awareness_apply(s, 1);
    if (!s->left)
        refute(s, s->self->pub.node.incarnation); /* others have likely suspected us */
    for (size_t i = 0; i < MAX_RELAYS; i++)
        s->relays[i].used = false;
    uint64_t grace = now + s->cfg.probe_interval_ms;
    for (size_t i = 0; i < s->nmembers; i++)
        if (s->members[i]->susp && s->members[i]->susp->deadline_ms < grace)
            s->members[i]->susp->deadline_ms = grace;
    s->next_probe = now + scaled_interval(s);
}

uint64_t p2p_swim_tick(p2p_swim *s, uint64_t now)
{
    now = clock_in(s, now);
    if (s->cfg.stall_ms && now - s->last_tick > s->cfg.stall_ms)
        stalled(s, now);
    s->last_tick = now;

    for (size_t i = 0; i < MAX_JOINS; i++) {
        join *j = &s->joins[i];
        if (!j->used || now < j->next_ms)
            continue;
        if (j->attempts >= s->cfg.join_attempts) {
            j->used = false;
            continue;
        }
        send_join(s, j);
        j->next_ms = now + s->cfg.probe_interval_ms;
    }

    probe *p = &s->probe;
    if (p->active && !p->indirect_sent && now >= p->timeout_ms)
        probe_indirect(s, now);
    if (p->active && now >= p->deadline_ms)
        probe_failed(s, now);
    if (!p->active && !s->left && now >= s->next_probe) {
        probe_start(s, now);
        s->next_probe = now + scaled_interval(s);
    }

    for (size_t i = 0; i < MAX_RELAYS; i++) {
        relay *r = &s->relays[i];
        if (r->used && now >= r->expires_ms) {
            r->used = false;
            reply_seq(s, P2P_GOSSIP_NACK, r->orig_seq, r->addr, r->port);
        }
    }

    expire_suspicions(s, now);
    expire_parked(s, now);

    if (now >= s->next_gossip) {
        gossip_round(s, now);
        s->next_gossip = now + s->cfg.gossip_interval_ms;
    }
    if (now >= s->next_reap) {
        reap(s, now);
        s->next_reap = now + REAP_CHECK_MS;
    }
    return p2p_swim_next_timeout(s, now);
}

static void earliest(uint64_t *best, uint64_t t)
{
    if (t < *best)
        *best = t;
}

uint64_t p2p_swim_next_timeout(const p2p_swim *s, uint64_t now)
{
    if (now < s->now)
        now = s->now;
    uint64_t best = now + s->cfg.gossip_interval_ms;
    earliest(&best, s->next_gossip);
    earliest(&best, s->next_reap);
    if (!s->left && !s->probe.active)
        earliest(&best, s->next_probe);
    if (s->probe.active) {
        if (!s->probe.indirect_sent)
            earliest(&best, s->probe.timeout_ms);
        earliest(&best, s->probe.deadline_ms);
    }
    for (size_t i = 0; i < MAX_RELAYS; i++)
        if (s->relays[i].used)
            earliest(&best, s->relays[i].expires_ms);
    for (size_t i = 0; i < MAX_JOINS; i++)
        if (s->joins[i].used)
            earliest(&best, s->joins[i].next_ms);
    for (size_t i = 0; s->nsusp && i < s->nmembers; i++)
        if (s->members[i]->susp)
            earliest(&best, s->members[i]->susp->deadline_ms);
    return best > now ? best - now : 1;
}

/* ================================================================== */
/* lifecycle and caller operations                                     */
/* ================================================================== */

void p2p_swim_config_default(p2p_swim_config *c)
{
    memset(c, 0, sizeof(*c));
    c->probe_interval_ms = 1000;
    c->probe_timeout_ms = 500;
    c->indirect_checks = 3;
    c->suspicion_mult = 1;
    c->suspicion_confirmations = 3;
    c->suspicion_min_floor_ms = 3000;
    c->suspicion_max_timeout_mult = 6;
    c->retransmit_mult = 4;
    c->gossip_interval_ms = 200;
    c->gossip_nodes = 3;
    c->gossip_to_dead_ms = 30000;
    c->reap_ms = 300000;
    c->awareness_max = 8;
    c->stall_ms = 2000;
    c->join_attempts = 30;
    c->packet_budget = P2P_GOSSIP_DEFAULT_BUDGET;
    c->max_members = 10000;
    c->pull_delay_ms = 2000;
    c->seed = 0;
}

static const char *config_check(const p2p_swim_config *c)
{
    if (c->probe_interval_ms < 1 || c->probe_timeout_ms < 1 || c->probe_timeout_ms >= c->probe_interval_ms)
        return "probe_timeout_ms must be in 1..probe_interval_ms-1";
    if (c->indirect_checks > 64 || c->gossip_nodes > 64)
        return "indirect_checks and gossip_nodes are at most 64";
    if (c->suspicion_confirmations > 64 || c->suspicion_min_floor_ms > 600000)
        return "suspicion_confirmations is at most 64, suspicion_min_floor_ms at most 600000";
    if (c->suspicion_mult < 1 || c->suspicion_mult > 64 || c->suspicion_max_timeout_mult < 1 ||
        c->suspicion_max_timeout_mult > 100)
        return "suspicion multipliers out of range";
    if (c->retransmit_mult < 1 || c->retransmit_mult > 100)
        return "retransmit_mult out of range";
    if (c->gossip_interval_ms < 1)
        return "gossip_interval_ms must be positive";
    if (c->reap_ms < c->gossip_to_dead_ms)
        return "reap_ms must be >= gossip_to_dead_ms";
    if (c->awareness_max < 1 || c->awareness_max > 64)
        return "awareness_max out of range";
    if (c->packet_budget < 512 || c->packet_budget > 65000)
        return "packet_budget must be 512..65000";
    if (c->max_members < 1 || c->join_attempts < 1)
        return "max_members and join_attempts must be positive";
    return NULL;
}

int p2p_swim_new(const p2p_swim_config *cfg, const p2p_gossip_node *self, const p2p_swim_callbacks *cb, uint64_t now,
                 p2p_swim **out, const char **why)
{
    const char *w = config_check(cfg);
    if (!w && (!cb || !cb->send))
        w = "a send callback is required";
    if (!w)
        p2p_gossip_node_check(self, &w);
    if (w) {
        if (why)
            *why = w;
        return -EINVAL;
    }
    p2p_swim *s = p2p__xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    s->cb = *cb;
    s->rng = cfg->seed;
    s->now = s->last_tick = now;
    s->cap = 16;
    s->members = p2p__xcalloc(s->cap, sizeof(*s->members));
    s->scratch = p2p__xcalloc(s->cap, sizeof(*s->scratch));
    s->hcap = 16;
    s->htab = p2p__xcalloc(s->hcap, sizeof(*s->htab));
    s->bq = p2p_gossip_queue_new();
    s->pkt_cap = P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME;
    if (s->pkt_cap < cfg->packet_budget)
        s->pkt_cap = cfg->packet_budget;
    s->pkt = p2p__xmalloc(s->pkt_cap);
    p2p_gossip_node rec = *self;
    for (unsigned i = 0; i < rec.naddrs; i++)
        p2p_gossip_addr_canon(self->addrs[i], rec.addrs[i]);
    s->self = member_add(s, &rec, P2P_SWIM_ALIVE, now);
    s->self->pub.is_self = true;
    s->self->pub.last_seen_ms = now;
    sign_self(s);
    s->seq = (uint32_t)rnd(s);
    /* Random phases, so nodes started together do not probe in lockstep. */
    s->next_probe = now + rnd_below(s, cfg->probe_interval_ms);
    s->next_gossip = now + rnd_below(s, cfg->gossip_interval_ms);
    s->next_reap = now + REAP_CHECK_MS;
    broadcast_alive(s, s->self);
    *out = s;
    return 0;
}

void p2p_swim_free(p2p_swim *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nmembers; i++) {
        member *m = s->members[i];
        if (m->susp) {
            free(m->susp->confirmers);
            free(m->susp);
        }
        free(m->meta);
        free(m);
    }
    for (size_t i = 0; i < MAX_PARKED; i++)
        parked_clear(&s->parked[i]);
    free(s->members);
    free(s->scratch);
    free(s->htab);
    free(s->pkt);
    p2p_gossip_queue_free(s->bq);
    free(s);
}

int p2p_swim_join(p2p_swim *s, uint64_t now, const char *addr, uint16_t port)
{
    now = clock_in(s, now);
    char canon[P2P_GOSSIP_ADDRSTRLEN];
    if (p2p_gossip_addr_canon(addr, canon) < 0 || port == 0)
        return -EINVAL;
    join *j = NULL;
    for (size_t i = 0; i < MAX_JOINS && !j; i++)
        if (!s->joins[i].used)
            j = &s->joins[i];
    if (!j)
        return -ENOSPC;
    memset(j, 0, sizeof(*j));
    j->used = true;
    snprintf(j->addr, sizeof(j->addr), "%s", canon);
    j->port = port;
    j->seq = ++s->seq;
    send_join(s, j);
    j->next_ms = now + s->cfg.probe_interval_ms;
    return 0;
}

int p2p_swim_merge_remote(p2p_swim *s, uint64_t now, const p2p_gossip_node *node, p2p_swim_state state)
{
    now = clock_in(s, now);
    if (p2p_gossip_node_check(node, NULL) < 0)
        return -EINVAL;
    p2p_gossip_node rec = *node;
    for (unsigned i = 0; i < rec.naddrs; i++)
        p2p_gossip_addr_canon(node->addrs[i], rec.addrs[i]);
    switch (state) {
    case P2P_SWIM_ALIVE:
        handle_alive(s, now, &rec, NULL, 0);
        return 0;
    case P2P_SWIM_LEFT:
        handle_dead(s, now, rec.id, rec.incarnation, rec.id, NULL); /* unsigned: refused when records are checked */
        return 0;
    case P2P_SWIM_SUSPECT:
    case P2P_SWIM_DEAD:
        handle_suspect(s, now, rec.id, rec.incarnation, self_id(s));
        return 0;
    }
    return -EINVAL;
}

int p2p_swim_set_meta(p2p_swim *s, uint64_t now, const char *meta)
{
    clock_in(s, now);
    if (s->left)
        return -EALREADY;
    size_t len = meta ? strnlen(meta, P2P_GOSSIP_META_MAX + 1) : 0;
    if (len > P2P_GOSSIP_META_MAX)
        return -EINVAL;
    set_meta(s->self, meta, len);
    set_incarnation(s, s->self, s->self->pub.node.incarnation + 1);
    sign_self(s);
    broadcast_alive(s, s->self);
    return 0;
}

int p2p_swim_set_addrs(p2p_swim *s, uint64_t now, const char addrs[][P2P_GOSSIP_ADDRSTRLEN], uint8_t n)
{
    clock_in(s, now);
    if (s->left)
        return -EALREADY;
    char canon[P2P_GOSSIP_MAX_ADDRS][P2P_GOSSIP_ADDRSTRLEN];
    if (!addrs || n == 0 || n > P2P_GOSSIP_MAX_ADDRS)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++)
        if (p2p_gossip_addr_canon(addrs[i], canon[i]) < 0)
            return -EINVAL;
    p2p_gossip_node *self = &s->self->pub.node;
    memcpy(self->addrs, canon, sizeof(canon[0]) * n);
    self->naddrs = n;
    set_incarnation(s, s->self, self->incarnation + 1);
    sign_self(s);
    broadcast_alive(s, s->self);
    return 0;
}

int p2p_swim_set_cert_id(p2p_swim *s, uint64_t now, const uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN])
{
    clock_in(s, now);
    if (s->left)
        return -EALREADY;
    p2p_gossip_node *self = &s->self->pub.node;
    memcpy(self->sig.cert_id, cert_id, P2P_GOSSIP_CERT_ID_LEN);
    set_incarnation(s, s->self, self->incarnation + 1);
    sign_self(s);
    broadcast_alive(s, s->self);
    return 0;
}

int p2p_swim_merge_leave(p2p_swim *s, uint64_t now, const char *id, uint32_t incarnation, const p2p_gossip_sig *sig)
{
    now = clock_in(s, now);
    if (!p2p_gossip_id_valid(id))
        return -EINVAL;
    handle_dead(s, now, id, incarnation, id, sig);
    return 0;
}

int p2p_swim_leave(p2p_swim *s, uint64_t now)
{
    now = clock_in(s, now);
    if (s->left)
        return -EALREADY;
    s->left = true;
    s->probe.active = false;
    handle_dead(s, now, self_id(s), s->self->pub.node.incarnation, self_id(s), NULL);
    gossip_round(s, now); /* tell gossip_nodes members now, not at the next tick */
    return 0;
}

bool p2p_swim_leave_done(const p2p_swim *s)
{
    return s->left && (s->nlive == 0 || p2p_gossip_queue_transmits(s->bq, self_id(s)) < 0);
}

/* ================================================================== */
/* lookups                                                             */
/* ================================================================== */

size_t p2p_swim_member_count(const p2p_swim *s)
{
    return s->nmembers;
}

const p2p_swim_member *p2p_swim_member_at(const p2p_swim *s, size_t i)
{
    return i < s->nmembers ? &s->members[i]->pub : NULL;
}

const p2p_swim_member *p2p_swim_find(const p2p_swim *s, const char *id)
{
    if (!id)
        return NULL;
    member *m = find(s, id);
    return m ? &m->pub : NULL;
}

const p2p_swim_member *p2p_swim_self(const p2p_swim *s)
{
    return &s->self->pub;
}

size_t p2p_swim_live_count(const p2p_swim *s)
{
    return s->nlive;
}

size_t p2p_swim_pending_broadcasts(const p2p_swim *s)
{
    return p2p_gossip_queue_len(s->bq);
}

void p2p_swim_get_stats(const p2p_swim *s, p2p_swim_stats *out)
{
    *out = s->st;
    out->awareness = s->awareness;
    out->incarnation = s->self->pub.node.incarnation;
    out->records_held = 0;
    for (size_t i = 0; i < MAX_PARKED; i++)
        out->records_held += s->parked[i].used;
}

const char *p2p_swim_state_name(p2p_swim_state st)
{
    switch (st) {
    case P2P_SWIM_ALIVE:
        return "alive";
    case P2P_SWIM_SUSPECT:
        return "suspect";
    case P2P_SWIM_DEAD:
        return "dead";
    case P2P_SWIM_LEFT:
        return "left";
    }
    return "unknown";
}
