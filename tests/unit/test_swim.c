/*
 * test_swim.c — unit tests for src/membership/swim.c.
 *
 * Part 1 drives one instance by hand (messages injected as encoded datagrams,
 * sent datagrams captured and decoded): configuration, the Lifeguard and
 * retransmit arithmetic, the merge-rule table, refutation, suspicion timers
 * with independent confirmations, one probe cycle with local health, the
 * restart hint, set_meta, set_addrs and leave.
 *
 * Part 2 is a simulated network: N instances on one simulated clock (1 ms
 * steps), datagrams delivered by the test after 1-4 ms, optionally lost.
 * Nodes can be killed (silent), paused (not run, input dropped, then resumed
 * with a clock jump), restarted. Scenarios: join, convergence of 20 and of
 * 200 nodes started at once, detection of a dead node, a pause shorter than
 * the suspicion timeout, 10% loss for 60 s, graceful leave, a late joiner,
 * a restart with a lower incarnation, a meta update.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "membership/swim.h"

/* ================================================================== */
/* part 1: one instance by hand                                        */
/* ================================================================== */

typedef struct captured {
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    uint16_t port;
    uint8_t *buf;
    size_t len;
} captured;

typedef struct harness {
    p2p_swim *s;
    uint64_t now;
    captured *pkts;
    size_t npkts, cap;
    int events[7];
    p2p_swim_event last_ev;
    char last_ev_id[P2P_GOSSIP_ID_MAX + 1];
} harness;

static void h_send(void *udata, const char *addr, uint16_t port, const uint8_t *buf, size_t len)
{
    harness *h = udata;
    assert_true(len >= P2P_GOSSIP_HEADER_LEN && len <= P2P_GOSSIP_MAX_PACKET);
    assert_int_equal(p2p_gossip_validate(buf, len, NULL, NULL), 0); /* we only ever send valid packets */
    if (h->npkts == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->pkts = realloc(h->pkts, h->cap * sizeof(*h->pkts));
    }
    captured *c = &h->pkts[h->npkts++];
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->port = port;
    c->buf = malloc(len);
    memcpy(c->buf, buf, len);
    c->len = len;
}

static void h_event(void *udata, p2p_swim_event ev, const p2p_swim_member *m)
{
    harness *h = udata;
    assert_false(m->is_self);
    h->events[ev]++;
    h->last_ev = ev;
    snprintf(h->last_ev_id, sizeof(h->last_ev_id), "%s", m->node.id);
}

static void h_clear(harness *h)
{
    for (size_t i = 0; i < h->npkts; i++)
        free(h->pkts[i].buf);
    h->npkts = 0;
    memset(h->events, 0, sizeof(h->events));
    h->last_ev_id[0] = '\0';
}

static p2p_gossip_node make_node(const char *id, const char *addr, uint16_t port, uint32_t inc, const char *meta)
{
    p2p_gossip_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.id, sizeof(n.id), "%s", id);
    n.incarnation = inc;
    n.port = port;
    n.naddrs = 1;
    snprintf(n.addrs[0], sizeof(n.addrs[0]), "%s", addr);
    strcpy(n.role, "worker");
    n.meta = meta ? meta : "";
    n.meta_len = strlen(n.meta);
    return n;
}

static void h_new_cfg(harness *h, const p2p_swim_config *cfg)
{
    memset(h, 0, sizeof(*h));
    p2p_gossip_node me = make_node("me", "10.0.0.1", 7946, 1, "{}");
    p2p_swim_callbacks cb = {h, h_send, h_event};
    const char *why = NULL;
    assert_int_equal(p2p_swim_new(cfg, &me, &cb, 0, &h->s, &why), 0);
}

static void h_new(harness *h)
{
    p2p_swim_config cfg;
    p2p_swim_config_default(&cfg);
    cfg.seed = 42;
    cfg.stall_ms = 0; /* these tests jump the clock */
    /* the step tests check memberlist's figures: mult 4, k = mult - 2, no floor */
    cfg.suspicion_mult = 4;
    cfg.suspicion_confirmations = 2;
    cfg.suspicion_min_floor_ms = 0;
    h_new_cfg(h, &cfg);
}

static void h_free(harness *h)
{
    h_clear(h);
    free(h->pkts);
    p2p_swim_free(h->s);
}

/* Encodes msgs into one datagram and hands it to the instance. */
static int inject_from(harness *h, const char *addr, uint16_t port, const p2p_gossip_msg *msgs, size_t n)
{
    uint8_t buf[P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_writer w;
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(p2p_gossip_writer_add(&w, &msgs[i], sizeof(buf)), 0);
    return p2p_swim_receive(h->s, h->now, addr, port, buf, w.len);
}

static int inject(harness *h, const p2p_gossip_msg *m)
{
    return inject_from(h, "10.9.9.9", 7000, m, 1); /* a third party relaying gossip */
}

static p2p_gossip_msg alive_msg(const p2p_gossip_node *n)
{
    p2p_gossip_msg m;
    memset(&m, 0, sizeof(m));
    m.type = P2P_GOSSIP_ALIVE;
    m.node = *n;
    return m;
}

static p2p_gossip_msg accuse_msg(p2p_gossip_type t, const char *id, uint32_t inc, const char *from)
{
    p2p_gossip_msg m;
    memset(&m, 0, sizeof(m));
    m.type = t;
    m.incarnation = inc;
    snprintf(m.id, sizeof(m.id), "%s", id);
    snprintf(m.from, sizeof(m.from), "%s", from);
    return m;
}

static p2p_gossip_msg seq_msg(p2p_gossip_type t, uint32_t seq)
{
    p2p_gossip_msg m;
    memset(&m, 0, sizeof(m));
    m.type = t;
    m.seq = seq;
    return m;
}

/* Searches the captured datagrams (optionally only those to `port`) for a
 * message of `type` about `id` (any id when NULL); copies it to *out. */
static bool h_find_msg(const harness *h, uint16_t port, p2p_gossip_type type, const char *id, p2p_gossip_msg *out)
{
    for (size_t i = 0; i < h->npkts; i++) {
        if (port && h->pkts[i].port != port)
            continue;
        p2p_gossip_reader r;
        p2p_gossip_msg m;
        assert_int_equal(p2p_gossip_reader_init(&r, h->pkts[i].buf, h->pkts[i].len, NULL), 0);
        while (p2p_gossip_reader_next(&r, &m, NULL) == 1) {
            const char *about = m.type == P2P_GOSSIP_ALIVE ? m.node.id : m.id;
            if (m.type == type && (!id || !strcmp(about, id))) {
                if (out)
                    *out = m; /* meta, if any, points into the captured buffer */
                return true;
            }
        }
    }
    return false;
}

/* Runs ticks at the deadlines the instance asks for, up to `to`. */
static void h_advance(harness *h, uint64_t to)
{
    while (h->now < to) {
        uint64_t next = p2p_swim_tick(h->s, h->now);
        assert_true(next >= 1);
        h->now = h->now + next < to ? h->now + next : to;
    }
    p2p_swim_tick(h->s, h->now);
}

/* Ticks at the requested deadlines until a tick sends `type` about `id` to
 * `port`; h->now is left at that tick. */
static void h_tick_until(harness *h, uint16_t port, p2p_gossip_type type, const char *id, p2p_gossip_msg *out,
                         uint64_t limit)
{
    for (;;) {
        uint64_t next = p2p_swim_tick(h->s, h->now);
        if (h_find_msg(h, port, type, id, out))
            return;
        h->now += next;
        assert_true(h->now <= limit);
    }
}

static const p2p_swim_member *h_member(harness *h, const char *id)
{
    return p2p_swim_find(h->s, id);
}

static void test_config(void **state)
{
    (void)state;
    p2p_swim_config c;
    p2p_swim_config_default(&c);
    assert_int_equal(c.probe_interval_ms, 1000);
    assert_int_equal(c.probe_timeout_ms, 500);
    assert_int_equal(c.indirect_checks, 3);
    assert_int_equal(c.suspicion_mult, 1);
    assert_int_equal(c.suspicion_confirmations, 3);
    assert_int_equal(c.suspicion_min_floor_ms, 3000);
    assert_int_equal(c.suspicion_max_timeout_mult, 6);
    assert_int_equal(c.retransmit_mult, 4);
    assert_int_equal(c.gossip_interval_ms, 200);
    assert_int_equal(c.gossip_nodes, 3);
    assert_int_equal(c.packet_budget, 1400);

    p2p_gossip_node me = make_node("me", "10.0.0.1", 7946, 0, NULL);
    harness h;
    memset(&h, 0, sizeof(h));
    p2p_swim_callbacks cb = {&h, h_send, h_event};
    p2p_swim *s = NULL;
    const char *why = NULL;
    p2p_swim_config b = c;
    b.probe_timeout_ms = 1000;
    assert_int_equal(p2p_swim_new(&b, &me, &cb, 0, &s, &why), -EINVAL);
    assert_non_null(why);
    b = c, b.packet_budget = 100;
    assert_int_equal(p2p_swim_new(&b, &me, &cb, 0, &s, NULL), -EINVAL);
    b = c, b.reap_ms = 10;
    assert_int_equal(p2p_swim_new(&b, &me, &cb, 0, &s, NULL), -EINVAL);
    p2p_gossip_node bad = me;
    strcpy(bad.id, "no spaces");
    assert_int_equal(p2p_swim_new(&c, &bad, &cb, 0, &s, &why), -EINVAL);
    assert_string_equal(why, "invalid node id");
    p2p_swim_callbacks nocb = {&h, NULL, NULL};
    assert_int_equal(p2p_swim_new(&c, &me, &nocb, 0, &s, NULL), -EINVAL);
    assert_null(s);

    /* A fresh instance: only itself, alive, its own ALIVE queued. */
    me = make_node("me", "FD00:0::1", 7946, 3, "{\"a\":1}");
    assert_int_equal(p2p_swim_new(&c, &me, &cb, 0, &s, NULL), 0);
    assert_int_equal(p2p_swim_member_count(s), 1);
    assert_int_equal(p2p_swim_live_count(s), 1);
    const p2p_swim_member *self = p2p_swim_self(s);
    assert_true(self->is_self);
    assert_string_equal(self->node.addrs[0], "fd00::1"); /* canonical */
    assert_string_equal(self->node.meta, "{\"a\":1}");
    assert_int_equal(self->node.incarnation, 3);
    assert_ptr_equal(p2p_swim_find(s, "me"), self);
    assert_ptr_equal(p2p_swim_member_at(s, 0), self);
    assert_null(p2p_swim_member_at(s, 1));
    assert_null(p2p_swim_find(s, "other"));
    assert_int_equal(p2p_swim_pending_broadcasts(s), 1);
    uint64_t t = p2p_swim_next_timeout(s, 0);
    assert_true(t >= 1 && t <= c.gossip_interval_ms);
    assert_string_equal(p2p_swim_state_name(P2P_SWIM_SUSPECT), "suspect");
    /* garbage is counted and refused */
    uint8_t junk[] = {9, 1, 2, 0, 0};
    assert_int_equal(p2p_swim_receive(s, 0, "10.0.0.9", 1, junk, sizeof(junk)), -EPROTONOSUPPORT);
    p2p_swim_stats st;
    p2p_swim_get_stats(s, &st);
    assert_int_equal(st.decode_errors, 1);
    assert_int_equal(st.packets_received, 1);
    assert_int_equal(st.incarnation, 3);
    p2p_swim_free(s);
    free(h.pkts);
}

static void test_arithmetic(void **state)
{
    (void)state;
    /* min = mult * max(1, log10 n) * interval, the scale kept to 1/1000 */
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 0, 1000), 4000);
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 1, 1000), 4000);
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 10, 1000), 4000);
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 20, 1000), 5204); /* log10 20 = 1.30103 */
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 100, 1000), 8000);
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 200, 1000), 9204);  /* 2.30103 */
    assert_int_equal(p2p_swim_suspicion_min_ms(4, 500, 1000), 10792); /* 2.69897 -> 2698 */
    assert_int_equal(p2p_swim_suspicion_min_ms(5, 1000, 200), 3000);
    /* timeout after c of k confirmations: max - (max-min) ln(c+1)/ln(k+1) */
    assert_int_equal(p2p_swim_suspicion_timeout_ms(0, 2, 5000, 30000), 30000);
    assert_int_equal(p2p_swim_suspicion_timeout_ms(1, 2, 5000, 30000), 14226); /* 30000 - 25000*0.63093 */
    assert_int_equal(p2p_swim_suspicion_timeout_ms(2, 2, 5000, 30000), 5000);
    assert_int_equal(p2p_swim_suspicion_timeout_ms(3, 2, 5000, 30000), 5000);  /* never below min */
    assert_int_equal(p2p_swim_suspicion_timeout_ms(0, 0, 5000, 30000), 5000);  /* k = 0: min at once */
    assert_int_equal(p2p_swim_suspicion_timeout_ms(1, 3, 4000, 24000), 14000); /* ln2/ln4 = 1/2 */
    assert_int_equal(p2p_swim_suspicion_timeout_ms(2, 3, 4000, 24000), 8150);  /* ln3/ln4 = 0.79248 */
    /* retransmits: mult * ceil(log10(n + 1)) */
    assert_int_equal(p2p_swim_retransmit_limit(4, 1), 4);
    assert_int_equal(p2p_swim_retransmit_limit(4, 9), 4);
    assert_int_equal(p2p_swim_retransmit_limit(4, 10), 8);
    assert_int_equal(p2p_swim_retransmit_limit(4, 99), 8);
    assert_int_equal(p2p_swim_retransmit_limit(4, 100), 12);
    assert_int_equal(p2p_swim_retransmit_limit(4, 200), 12);
    assert_int_equal(p2p_swim_retransmit_limit(3, 1000), 12);
}

/* ---- merge rules ---- */

enum { UNKNOWN = -1, NONE = -1 };

typedef struct merge_case {
    int init;             /* state of X before (UNKNOWN: not known) at incarnation 5 */
    p2p_gossip_type type; /* incoming message about X */
    uint32_t inc;
    const char *from; /* SUSPECT/DEAD accuser ("x" = X itself: a leave) */
    bool new_meta;    /* ALIVE with a different record */
    int want_state;   /* UNKNOWN: still not known */
    uint32_t want_inc;
    int want_event;   /* NONE or P2P_SWIM_EV_* */
    bool rebroadcast; /* the message is queued for gossip */
} merge_case;

static const merge_case merge_cases[] = {
    /* ALIVE */
    {UNKNOWN, P2P_GOSSIP_ALIVE, 5, NULL, false, P2P_SWIM_ALIVE, 5, P2P_SWIM_EV_JOIN, true},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_ALIVE, 4, NULL, true, P2P_SWIM_ALIVE, 5, NONE, false},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_ALIVE, 5, NULL, true, P2P_SWIM_ALIVE, 5, NONE, false},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_ALIVE, 6, NULL, false, P2P_SWIM_ALIVE, 6, NONE, true},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_ALIVE, 6, NULL, true, P2P_SWIM_ALIVE, 6, P2P_SWIM_EV_UPDATE, true},
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_ALIVE, 5, NULL, false, P2P_SWIM_SUSPECT, 5, NONE, false},
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_ALIVE, 6, NULL, false, P2P_SWIM_ALIVE, 6, P2P_SWIM_EV_ALIVE_AGAIN, true},
    {P2P_SWIM_DEAD, P2P_GOSSIP_ALIVE, 5, NULL, true, P2P_SWIM_DEAD, 5, NONE, false},
    {P2P_SWIM_DEAD, P2P_GOSSIP_ALIVE, 6, NULL, false, P2P_SWIM_ALIVE, 6, P2P_SWIM_EV_ALIVE_AGAIN, true},
    {P2P_SWIM_LEFT, P2P_GOSSIP_ALIVE, 5, NULL, false, P2P_SWIM_LEFT, 5, NONE, false},
    {P2P_SWIM_LEFT, P2P_GOSSIP_ALIVE, 9, NULL, false, P2P_SWIM_ALIVE, 9, P2P_SWIM_EV_ALIVE_AGAIN, true},
    /* SUSPECT */
    {UNKNOWN, P2P_GOSSIP_SUSPECT, 5, "p", false, UNKNOWN, 0, NONE, false},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_SUSPECT, 4, "p", false, P2P_SWIM_ALIVE, 5, NONE, false},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_SUSPECT, 5, "p", false, P2P_SWIM_SUSPECT, 5, P2P_SWIM_EV_SUSPECT, true},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_SUSPECT, 7, "p", false, P2P_SWIM_SUSPECT, 7, P2P_SWIM_EV_SUSPECT, true},
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_SUSPECT, 5, "q", false, P2P_SWIM_SUSPECT, 5, NONE, true},  /* confirmation */
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_SUSPECT, 5, "p", false, P2P_SWIM_SUSPECT, 5, NONE, false}, /* originator */
    {P2P_SWIM_DEAD, P2P_GOSSIP_SUSPECT, 6, "p", false, P2P_SWIM_DEAD, 5, NONE, false},
    {P2P_SWIM_LEFT, P2P_GOSSIP_SUSPECT, 6, "p", false, P2P_SWIM_LEFT, 5, NONE, false},
    /* DEAD */
    {UNKNOWN, P2P_GOSSIP_DEAD, 5, "p", false, UNKNOWN, 0, NONE, false},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_DEAD, 4, "p", false, P2P_SWIM_ALIVE, 5, NONE, false},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_DEAD, 5, "p", false, P2P_SWIM_DEAD, 5, P2P_SWIM_EV_DEAD, true},
    {P2P_SWIM_ALIVE, P2P_GOSSIP_DEAD, 8, "p", false, P2P_SWIM_DEAD, 8, P2P_SWIM_EV_DEAD, true},
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_DEAD, 5, "q", false, P2P_SWIM_DEAD, 5, P2P_SWIM_EV_DEAD, true},
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_DEAD, 4, "q", false, P2P_SWIM_SUSPECT, 5, NONE, false},
    {P2P_SWIM_DEAD, P2P_GOSSIP_DEAD, 6, "x", false, P2P_SWIM_DEAD, 5, NONE, false}, /* dead stays dead */
    /* LEAVE = DEAD from the node itself */
    {P2P_SWIM_ALIVE, P2P_GOSSIP_DEAD, 5, "x", false, P2P_SWIM_LEFT, 5, P2P_SWIM_EV_LEAVE, true},
    {P2P_SWIM_SUSPECT, P2P_GOSSIP_DEAD, 5, "x", false, P2P_SWIM_LEFT, 5, P2P_SWIM_EV_LEAVE, true},
    {P2P_SWIM_LEFT, P2P_GOSSIP_DEAD, 6, "p", false, P2P_SWIM_LEFT, 5, NONE, false},
};

static void test_merge_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(merge_cases) / sizeof(merge_cases[0]); i++) {
        const merge_case *c = &merge_cases[i];
        harness h;
        h_new(&h);
        /* a few peers so suspicion has confirmations to expect */
        const char *peers[] = {"p", "q", "r", "s"};
        for (int k = 0; k < 4; k++) {
            char addr[32];
            snprintf(addr, sizeof(addr), "10.0.1.%d", k + 1);
            p2p_gossip_node pn = make_node(peers[k], addr, 7946, 1, NULL);
            assert_int_equal(p2p_swim_merge_remote(h.s, 0, &pn, P2P_SWIM_ALIVE), 0);
        }
        p2p_gossip_node x = make_node("x", "10.0.0.2", 7946, 5, "{\"v\":1}");
        if (c->init != UNKNOWN) {
            p2p_gossip_msg m = alive_msg(&x);
            assert_int_equal(inject(&h, &m), 0);
        }
        if (c->init == P2P_SWIM_SUSPECT || c->init == P2P_SWIM_DEAD || c->init == P2P_SWIM_LEFT) {
            p2p_gossip_msg m = c->init == P2P_SWIM_SUSPECT
                                   ? accuse_msg(P2P_GOSSIP_SUSPECT, "x", 5, "p")
                                   : accuse_msg(P2P_GOSSIP_DEAD, "x", 5, c->init == P2P_SWIM_DEAD ? "p" : "x");
            assert_int_equal(inject(&h, &m), 0);
        }
        if (c->init != UNKNOWN)
            assert_int_equal(h_member(&h, "x")->state, c->init);
        /* let the setup's broadcasts run out (limit 4 at N = 6, 3 per round) */
        h_advance(&h, 600);
        assert_int_equal(p2p_swim_pending_broadcasts(h.s), 0);
        h_clear(&h);

        p2p_gossip_msg m;
        if (c->type == P2P_GOSSIP_ALIVE) {
            p2p_gossip_node y = make_node("x", "10.0.0.2", 7946, c->inc, c->new_meta ? "{\"v\":2}" : "{\"v\":1}");
            m = alive_msg(&y);
        } else {
            m = accuse_msg(c->type, "x", c->inc, c->from);
        }
        assert_int_equal(inject(&h, &m), 0);
        const p2p_swim_member *xm = h_member(&h, "x");
        if (c->want_state == UNKNOWN) {
            if (xm)
                fail_msg("case %zu: x should be unknown", i);
        } else {
            if (!xm || (int)xm->state != c->want_state || xm->node.incarnation != c->want_inc)
                fail_msg("case %zu: got %s/%u, want %s/%u", i, xm ? p2p_swim_state_name(xm->state) : "unknown",
                         xm ? xm->node.incarnation : 0, p2p_swim_state_name(c->want_state), c->want_inc);
        }
        int nev = 0;
        for (int e = 0; e < 7; e++)
            nev += h.events[e];
        if (c->want_event == NONE ? nev != 0 : (nev != 1 || h.events[c->want_event] != 1))
            fail_msg("case %zu: %d events, last %d, want %d", i, nev, (int)h.last_ev, c->want_event);
        if (c->want_event == P2P_SWIM_EV_UPDATE || c->want_event == P2P_SWIM_EV_ALIVE_AGAIN)
            assert_string_equal(xm->node.meta, c->new_meta ? "{\"v\":2}" : "{\"v\":1}");
        /* re-broadcast: the next gossip round carries it (before any probe
         * of the silent peers can fail, at >= 1000 ms) */
        h_advance(&h, 900);
        bool sent = h_find_msg(&h, 0, c->type, "x", NULL);
        if (sent != c->rebroadcast)
            fail_msg("case %zu: rebroadcast %d, want %d", i, sent, c->rebroadcast);
        h_free(&h);
    }
}

static void test_refutation(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node p = make_node("p", "10.0.0.2", 7946, 1, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &p, P2P_SWIM_ALIVE), 0);
    p2p_swim_stats st;

    /* SUSPECT about me at my incarnation: +1 and an ALIVE goes out */
    p2p_gossip_msg m = accuse_msg(P2P_GOSSIP_SUSPECT, "me", 1, "p");
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 2);
    assert_int_equal(p2p_swim_self(h.s)->state, P2P_SWIM_ALIVE);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.refutations, 1);
    assert_int_equal(st.awareness, 1); /* being accused costs local health */
    h_advance(&h, 400);
    p2p_gossip_msg out;
    assert_true(h_find_msg(&h, 7946, P2P_GOSSIP_ALIVE, "me", &out));
    assert_int_equal(out.node.incarnation, 2);
    assert_int_equal(out.node.meta_len, 2);

    /* DEAD about me with a higher incarnation: max + 1 */
    m = accuse_msg(P2P_GOSSIP_DEAD, "me", 7, "p");
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 8);
    /* an older accusation is ignored */
    m = accuse_msg(P2P_GOSSIP_SUSPECT, "me", 3, "p");
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 8);
    /* an ALIVE about me from the future (a previous life): refuted above it */
    p2p_gossip_node me = p2p_swim_self(h.s)->node;
    me.incarnation = 20;
    m = alive_msg(&me);
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 21);
    /* the same incarnation with another record: refuted */
    me.incarnation = 21;
    me.meta = "{\"old\":true}";
    me.meta_len = strlen(me.meta);
    m = alive_msg(&me);
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 22);
    /* my own record echoed back: nothing */
    m = alive_msg(&p2p_swim_self(h.s)->node);
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 22);
    /* a remote push-pull view of me as dead: refuted too */
    p2p_gossip_node pv = p2p_swim_self(h.s)->node;
    assert_int_equal(p2p_swim_merge_remote(h.s, h.now, &pv, P2P_SWIM_DEAD), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 23);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.refutations, 5);
    assert_int_equal(h.events[P2P_SWIM_EV_SUSPECT] + h.events[P2P_SWIM_EV_DEAD], 0);

    /* after leaving, nothing about me is refuted */
    assert_int_equal(p2p_swim_leave(h.s, h.now), 0);
    assert_int_equal(p2p_swim_self(h.s)->state, P2P_SWIM_LEFT);
    m = accuse_msg(P2P_GOSSIP_SUSPECT, "me", 30, "p");
    assert_int_equal(inject(&h, &m), 0);
    m = accuse_msg(P2P_GOSSIP_DEAD, "me", 30, "p");
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 23);
    assert_int_equal(p2p_swim_self(h.s)->state, P2P_SWIM_LEFT);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.refutations, 5);
    h_free(&h);
}

/* Adds n ALIVE members p0..p(n-1) at 10.0.1.1.. (incarnation 1, no meta). */
static void add_peers(harness *h, int n)
{
    for (int k = 0; k < n; k++) {
        char id[16], addr[32];
        snprintf(id, sizeof(id), "p%d", k);
        snprintf(addr, sizeof(addr), "10.0.1.%d", k + 1);
        p2p_gossip_node pn = make_node(id, addr, 7946, 1, NULL);
        assert_int_equal(p2p_swim_merge_remote(h->s, 0, &pn, P2P_SWIM_ALIVE), 0);
    }
}

/* N = 10 live members: min 4000, max 24000, k = 2. */
static void setup_ten(harness *h)
{
    h_new(h);
    add_peers(h, 9);
    assert_int_equal(p2p_swim_live_count(h->s), 10);
}

static void test_suspicion_timers(void **state)
{
    (void)state;
    harness h;
    p2p_gossip_msg m;
    p2p_swim_stats st;

    /* Exact deadlines after 0..3 independent confirmations (k = 2). */
    for (int confirmations = 0; confirmations <= 3; confirmations++) {
        setup_ten(&h);
        m = accuse_msg(P2P_GOSSIP_SUSPECT, "p0", 1, "p1");
        assert_int_equal(inject(&h, &m), 0);
        assert_int_equal(h_member(&h, "p0")->state, P2P_SWIM_SUSPECT);
        /* the originator again is not a confirmation */
        m = accuse_msg(P2P_GOSSIP_SUSPECT, "p0", 1, "p1");
        assert_int_equal(inject(&h, &m), 0);
        const char *confirmers[] = {"p2", "p3", "p4"};
        for (int c = 0; c < confirmations; c++) {
            m = accuse_msg(P2P_GOSSIP_SUSPECT, "p0", 1, confirmers[c]);
            assert_int_equal(inject(&h, &m), 0);
        }
        uint64_t want = confirmations == 0 ? 24000 : confirmations == 1 ? 11381 : 4000;
        /* Answer every probe so that our own probes add no confirmation
         * (a probe of p0 is answered too: an ack does not end a suspicion). */
        while (h.now < want - 1) {
            uint64_t next = p2p_swim_tick(h.s, h.now);
            for (size_t i = 0; i < h.npkts; i++) {
                p2p_gossip_reader r;
                p2p_gossip_msg pm;
                p2p_gossip_reader_init(&r, h.pkts[i].buf, h.pkts[i].len, NULL);
                while (p2p_gossip_reader_next(&r, &pm, NULL) == 1)
                    if (pm.type == P2P_GOSSIP_PING) {
                        p2p_gossip_msg ack = seq_msg(P2P_GOSSIP_ACK, pm.seq);
                        inject_from(&h, h.pkts[i].addr, h.pkts[i].port, &ack, 1);
                    }
            }
            h_clear(&h);
            h.now = h.now + next < want - 1 ? h.now + next : want - 1;
        }
        p2p_swim_tick(h.s, want - 1);
        if (h_member(&h, "p0")->state != P2P_SWIM_SUSPECT)
            fail_msg("%d confirmations: dead before %llu", confirmations, (unsigned long long)want);
        assert_true(p2p_swim_next_timeout(h.s, want - 1) == 1);
        p2p_swim_tick(h.s, want);
        if (h_member(&h, "p0")->state != P2P_SWIM_DEAD)
            fail_msg("%d confirmations: not dead at %llu", confirmations, (unsigned long long)want);
        assert_int_equal(h.events[P2P_SWIM_EV_DEAD], 1);
        assert_true(h_find_msg(&h, 0, P2P_GOSSIP_DEAD, "p0", NULL) || p2p_swim_pending_broadcasts(h.s) > 0);
        p2p_swim_get_stats(h.s, &st);
        assert_int_equal(st.deaths_declared, 1);
        h_free(&h);
    }

    /* few members: nobody else can confirm, k = 0, the minimum from the start
     * (N = 2: min 4000; the accuser b is not a member we know) */
    h_new(&h);
    p2p_gossip_node a = make_node("a", "10.0.1.1", 7946, 1, NULL);
    p2p_swim_merge_remote(h.s, 0, &a, P2P_SWIM_ALIVE);
    m = accuse_msg(P2P_GOSSIP_SUSPECT, "a", 1, "b");
    assert_int_equal(inject(&h, &m), 0);
    p2p_swim_tick(h.s, 3999);
    assert_int_equal(h_member(&h, "a")->state, P2P_SWIM_SUSPECT);
    p2p_swim_tick(h.s, 4000);
    assert_int_equal(h_member(&h, "a")->state, P2P_SWIM_DEAD);
    h_free(&h);
}

/* p2p's defaults: min = max(3000, 1 * log10 N * 1000), max = 6 * min, k = 3, or
 * N - 2 when fewer others could confirm. */
static void test_suspicion_defaults(void **state)
{
    (void)state;
    for (int confirmations = 2; confirmations <= 3; confirmations++) {
        harness h;
        p2p_swim_config cfg;
        p2p_swim_config_default(&cfg);
        cfg.seed = 42;
        cfg.stall_ms = 0;
        h_new_cfg(&h, &cfg);
        add_peers(&h, 9);
        p2p_gossip_msg m = accuse_msg(P2P_GOSSIP_SUSPECT, "p0", 1, "p1");
        assert_int_equal(inject(&h, &m), 0);
        const char *confirmers[] = {"p2", "p3", "p4"};
        for (int c = 0; c < confirmations; c++) {
            m = accuse_msg(P2P_GOSSIP_SUSPECT, "p0", 1, confirmers[c]);
            assert_int_equal(inject(&h, &m), 0);
        }
        /* 3 of 3: the 3 s floor; 2 of 3: 18000 - 15000 * ln 3 / ln 4 */
        uint64_t want = confirmations == 3 ? 3000 : 6112;
        assert_int_equal(p2p_swim_suspicion_timeout_ms(2, 3, 3000, 18000), 6112);
        p2p_swim_tick(h.s, want - 1);
        assert_int_equal(h_member(&h, "p0")->state, P2P_SWIM_SUSPECT);
        p2p_swim_tick(h.s, want);
        assert_int_equal(h_member(&h, "p0")->state, P2P_SWIM_DEAD);
        h_free(&h);
    }
}

static void test_probe_cycle(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node x = make_node("x", "10.0.0.2", 7000, 1, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &x, P2P_SWIM_ALIVE), 0);
    h_clear(&h);

    /* the first probe comes within one interval */
    p2p_gossip_msg ping;
    h_tick_until(&h, 7000, P2P_GOSSIP_PING, "x", &ping, 1000);
    assert_string_equal(ping.from, "me");
    assert_string_equal(h.pkts[h.npkts - 1].addr, "10.0.0.2");
    uint64_t t1 = h.now;
    p2p_gossip_msg ack = seq_msg(P2P_GOSSIP_ACK, ping.seq);
    h.now = t1 + 10;
    assert_int_equal(inject_from(&h, "10.0.0.2", 7000, &ack, 1), 0);
    p2p_swim_stats st;
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.probes_sent, 1);
    assert_int_equal(st.acks_received, 1);
    assert_int_equal(h_member(&h, "x")->last_seen_ms, t1 + 10);
    h_clear(&h);

    /* the next probe gets no answer: no peers for indirect probes, so after
     * the interval x is suspected and our health score goes up */
    h_tick_until(&h, 7000, P2P_GOSSIP_PING, "x", &ping, t1 + 2000);
    uint64_t t2 = h.now;
    assert_int_equal(t2, t1 + 1000);
    h_advance(&h, t2 + 999);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_ALIVE);
    h_clear(&h);
    h_advance(&h, t2 + 1000);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_SUSPECT);
    assert_int_equal(h.events[P2P_SWIM_EV_SUSPECT], 1);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.probe_failures, 1);
    assert_int_equal(st.suspicions_raised, 1);
    assert_int_equal(st.indirect_probes, 0);
    assert_int_equal(st.awareness, 1);
    /* a new probe started at once; it tells x it is suspected */
    p2p_gossip_msg sus;
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_PING, "x", &ping));
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_SUSPECT, "x", &sus));
    assert_string_equal(sus.from, "me");
    /* with awareness 1 the probe interval doubles */
    h_clear(&h);
    h_advance(&h, t2 + 1000 + 1999);
    assert_false(h_find_msg(&h, 7000, P2P_GOSSIP_PING, "x", NULL));
    /* an ack restores health but not x: only x's refutation does */
    ack = seq_msg(P2P_GOSSIP_ACK, ping.seq);
    assert_int_equal(inject_from(&h, "10.0.0.2", 7000, &ack, 1), 0);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.awareness, 0);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_SUSPECT);
    /* N = 2: no confirmations expected, dead 4000 ms after the suspicion */
    h_advance(&h, t2 + 1000 + 3999);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_SUSPECT);
    h_advance(&h, t2 + 1000 + 4000);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_DEAD);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.deaths_declared, 1);
    /* dead members are not probed, but gossip still goes to them for a while */
    h_clear(&h);
    h_advance(&h, h.now + 5000);
    assert_false(h_find_msg(&h, 7000, P2P_GOSSIP_PING, NULL, NULL));
    /* and they are forgotten after reap_ms */
    uint64_t died = h_member(&h, "x")->state_change_ms;
    h_advance(&h, died + 300000 + 1000);
    assert_null(h_member(&h, "x"));
    assert_int_equal(h.events[P2P_SWIM_EV_REAPED], 1);
    assert_int_equal(p2p_swim_member_count(h.s), 1);
    h_free(&h);
}

static void test_ping_handling(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    /* a ping for me: ACK with the same seq to the sender's address */
    p2p_gossip_msg m = seq_msg(P2P_GOSSIP_PING, 4242);
    strcpy(m.id, "me");
    strcpy(m.from, "stranger");
    assert_int_equal(inject_from(&h, "192.0.2.1", 5555, &m, 1), 0);
    p2p_gossip_msg ack;
    assert_true(h_find_msg(&h, 5555, P2P_GOSSIP_ACK, NULL, &ack));
    assert_int_equal(ack.seq, 4242);
    assert_true(h_find_msg(&h, 5555, P2P_GOSSIP_ALIVE, "me", NULL)); /* piggybacked: queued at creation */
    h_clear(&h);
    /* a ping for someone else (stale address): ignored */
    strcpy(m.id, "other");
    assert_int_equal(inject_from(&h, "192.0.2.1", 5555, &m, 1), 0);
    assert_int_equal(h.npkts, 0);
    /* a join ping (no target): ACK plus our ALIVE */
    m.id[0] = '\0';
    assert_int_equal(inject_from(&h, "192.0.2.1", 5555, &m, 1), 0);
    assert_true(h_find_msg(&h, 5555, P2P_GOSSIP_ACK, NULL, NULL));
    assert_true(h_find_msg(&h, 5555, P2P_GOSSIP_ALIVE, "me", NULL));
    h_clear(&h);
    /* PING_REQ: we ping the target with our own seq and relay its ACK */
    p2p_gossip_msg req = seq_msg(P2P_GOSSIP_PING_REQ, 777);
    strcpy(req.id, "t");
    strcpy(req.addr, "10.0.0.7");
    req.port = 7001;
    assert_int_equal(inject_from(&h, "10.0.0.5", 7002, &req, 1), 0);
    p2p_gossip_msg ping;
    assert_true(h_find_msg(&h, 7001, P2P_GOSSIP_PING, "t", &ping));
    assert_string_equal(ping.from, "me");
    p2p_gossip_msg tack = seq_msg(P2P_GOSSIP_ACK, ping.seq);
    h_clear(&h);
    assert_int_equal(inject_from(&h, "10.0.0.7", 7001, &tack, 1), 0);
    assert_true(h_find_msg(&h, 7002, P2P_GOSSIP_ACK, NULL, &ack));
    assert_int_equal(ack.seq, 777);
    assert_string_equal(h.pkts[0].addr, "10.0.0.5");
    h_clear(&h);
    /* PING_REQ without an answer: NACK after 4/5 of the probe timeout */
    h.now = 1000;
    assert_int_equal(inject_from(&h, "10.0.0.5", 7002, &req, 1), 0);
    h_clear(&h);
    p2p_swim_tick(h.s, 1399);
    assert_false(h_find_msg(&h, 7002, P2P_GOSSIP_NACK, NULL, NULL));
    p2p_swim_tick(h.s, 1400);
    p2p_gossip_msg nack;
    assert_true(h_find_msg(&h, 7002, P2P_GOSSIP_NACK, NULL, &nack));
    assert_int_equal(nack.seq, 777);
    p2p_swim_stats st;
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.relays, 2);
    h_free(&h);
}

static void test_restart_hint(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node x = make_node("x", "10.0.0.2", 7000, 5, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &x, P2P_SWIM_ALIVE), 0);
    p2p_gossip_msg m = accuse_msg(P2P_GOSSIP_DEAD, "x", 5, "p");
    assert_int_equal(inject(&h, &m), 0);
    h_clear(&h);
    /* x restarted without its state: ALIVE at incarnation 0, relayed by a
     * third party: ignored, no answer */
    p2p_gossip_node x0 = make_node("x", "10.0.0.2", 7000, 0, NULL);
    m = alive_msg(&x0);
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_DEAD);
    assert_false(h_find_msg(&h, 7000, P2P_GOSSIP_DEAD, "x", NULL));
    /* straight from x: it is told it is dead, so it refutes */
    assert_int_equal(inject_from(&h, "10.0.0.2", 7000, &m, 1), 0);
    p2p_gossip_msg d;
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_DEAD, "x", &d));
    assert_int_equal(d.incarnation, 5);
    assert_string_equal(d.from, "me");
    h_clear(&h);
    /* a PING from a member we hold dead gets the same news in the ACK */
    p2p_gossip_msg ping = seq_msg(P2P_GOSSIP_PING, 1);
    strcpy(ping.id, "me");
    strcpy(ping.from, "x");
    assert_int_equal(inject_from(&h, "10.0.0.2", 7000, &ping, 1), 0);
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_ACK, NULL, NULL));
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_DEAD, "x", NULL));
    /* its refutation brings it back */
    p2p_gossip_node x6 = make_node("x", "10.0.0.2", 7000, 6, NULL);
    m = alive_msg(&x6);
    assert_int_equal(inject_from(&h, "10.0.0.2", 7000, &m, 1), 0);
    assert_int_equal(h_member(&h, "x")->state, P2P_SWIM_ALIVE);
    assert_int_equal(h.events[P2P_SWIM_EV_ALIVE_AGAIN], 1);
    assert_int_equal(h_member(&h, "x")->last_seen_ms, h.now);
    h_free(&h);
}

static void test_meta_and_leave(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node x = make_node("x", "10.0.0.2", 7000, 1, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &x, P2P_SWIM_ALIVE), 0);
    assert_int_equal(p2p_swim_set_meta(h.s, 0, "{\"services\":[\"a\"]}"), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 2);
    assert_string_equal(p2p_swim_self(h.s)->node.meta, "{\"services\":[\"a\"]}");
    static char big[P2P_GOSSIP_META_MAX + 2];
    memset(big, 'b', sizeof(big) - 1);
    assert_int_equal(p2p_swim_set_meta(h.s, 0, big), -EINVAL);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 2);
    h_advance(&h, 400);
    p2p_gossip_msg a;
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_ALIVE, "me", &a));
    assert_int_equal(a.node.incarnation, 2);

    /* a meta bigger than the budget still goes out, alone */
    big[4000] = '\0';
    assert_int_equal(p2p_swim_set_meta(h.s, h.now, big), 0);
    h_clear(&h);
    h_advance(&h, h.now + 400);
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_ALIVE, "me", &a));
    assert_int_equal(a.node.meta_len, 4000);

    h_clear(&h);
    assert_false(p2p_swim_leave_done(h.s));
    assert_int_equal(p2p_swim_leave(h.s, h.now), 0);
    assert_int_equal(p2p_swim_leave(h.s, h.now), -EALREADY);
    assert_int_equal(p2p_swim_set_meta(h.s, h.now, "{}"), -EALREADY);
    /* sent at once, not at the next tick */
    p2p_gossip_msg d;
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_DEAD, "me", &d));
    assert_string_equal(d.from, "me");
    assert_false(p2p_swim_leave_done(h.s));
    /* N = 1 live (x): 4 transmits, one per gossip round */
    h_advance(&h, h.now + 1000);
    assert_true(p2p_swim_leave_done(h.s));
    /* no probes after leaving, but pings are still answered */
    h_clear(&h);
    h_advance(&h, h.now + 3000);
    assert_false(h_find_msg(&h, 7000, P2P_GOSSIP_PING, NULL, NULL));
    p2p_gossip_msg ping = seq_msg(P2P_GOSSIP_PING, 5);
    strcpy(ping.id, "me");
    strcpy(ping.from, "x");
    assert_int_equal(inject_from(&h, "10.0.0.2", 7000, &ping, 1), 0);
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_ACK, NULL, NULL));
    h_free(&h);
}

static void test_set_addrs(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node x = make_node("x", "10.0.0.2", 7000, 1, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &x, P2P_SWIM_ALIVE), 0);
    h_advance(&h, 400);
    h_clear(&h);
    const char two[2][P2P_GOSSIP_ADDRSTRLEN] = {"192.168.7.9", "::1"};
    assert_int_equal(p2p_swim_set_addrs(h.s, h.now, two, 2), 0);
    const p2p_swim_member *me = p2p_swim_self(h.s);
    assert_int_equal(me->node.incarnation, 2);
    assert_int_equal(me->node.naddrs, 2);
    assert_string_equal(me->node.addrs[0], "192.168.7.9");
    assert_string_equal(me->node.addrs[1], "::1");
    h_advance(&h, h.now + 400);
    p2p_gossip_msg a;
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_ALIVE, "me", &a));
    assert_int_equal(a.node.incarnation, 2);
    assert_int_equal(a.node.naddrs, 2);
    assert_string_equal(a.node.addrs[0], "192.168.7.9");
    /* canonical form */
    const char v6[1][P2P_GOSSIP_ADDRSTRLEN] = {"fd00:0:0::5"};
    assert_int_equal(p2p_swim_set_addrs(h.s, h.now, v6, 1), 0);
    assert_string_equal(p2p_swim_self(h.s)->node.addrs[0], "fd00::5");
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 3);
    /* bad input changes nothing */
    const char bad[1][P2P_GOSSIP_ADDRSTRLEN] = {"not-an-ip"};
    assert_int_equal(p2p_swim_set_addrs(h.s, h.now, bad, 1), -EINVAL);
    assert_int_equal(p2p_swim_set_addrs(h.s, h.now, two, 0), -EINVAL);
    assert_int_equal(p2p_swim_set_addrs(h.s, h.now, two, P2P_GOSSIP_MAX_ADDRS + 1), -EINVAL);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 3);
    assert_string_equal(p2p_swim_self(h.s)->node.addrs[0], "fd00::5");
    assert_int_equal(p2p_swim_leave(h.s, h.now), 0);
    assert_int_equal(p2p_swim_set_addrs(h.s, h.now, two, 1), -EALREADY);
    h_free(&h);
}

static void test_join_retries(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    assert_int_equal(p2p_swim_join(h.s, 0, "10.0.0.9", 0), -EINVAL);
    assert_int_equal(p2p_swim_join(h.s, 0, "seed.example", 7000), -EINVAL);
    assert_int_equal(p2p_swim_join(h.s, 0, "10.0.0.9", 7000), 0);
    p2p_gossip_msg ping;
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_PING, "", &ping));
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_ALIVE, "me", NULL));
    /* nobody answers: retried once per probe interval, join_attempts in all */
    h_advance(&h, 60000);
    size_t joins = 0;
    for (size_t i = 0; i < h.npkts; i++)
        joins += h.pkts[i].port == 7000;
    assert_int_equal(joins, 30);
    h_clear(&h);
    /* an answered join stops at once */
    assert_int_equal(p2p_swim_join(h.s, h.now, "10.0.0.9", 7000), 0);
    assert_true(h_find_msg(&h, 7000, P2P_GOSSIP_PING, "", &ping));
    p2p_gossip_msg ack = seq_msg(P2P_GOSSIP_ACK, ping.seq);
    assert_int_equal(inject_from(&h, "10.0.0.9", 7000, &ack, 1), 0);
    h_clear(&h);
    h_advance(&h, h.now + 5000);
    assert_int_equal(h.npkts, 0);
    for (int i = 0; i < 16; i++)
        assert_int_equal(p2p_swim_join(h.s, h.now, "10.0.0.9", 7000), 0);
    assert_int_equal(p2p_swim_join(h.s, h.now, "10.0.0.9", 7000), -ENOSPC);
    h_free(&h);
}

static void test_stall_guard(void **state)
{
    (void)state;
    harness h;
    p2p_swim_config cfg;
    p2p_swim_config_default(&cfg);
    cfg.seed = 3;
    h_new_cfg(&h, &cfg);
    add_peers(&h, 3);
    /* a suspicion runs, then the process is stopped for 60 s */
    p2p_gossip_msg m = accuse_msg(P2P_GOSSIP_SUSPECT, "p0", 1, "p1");
    assert_int_equal(inject(&h, &m), 0);
    while (h.now < 400)
        h.now += p2p_swim_tick(h.s, h.now);
    h.now = 60400;
    p2p_swim_tick(h.s, h.now);
    p2p_swim_stats st;
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.stalls, 1);
    /* nobody was declared dead on the spot: the backlog gets one interval */
    assert_int_equal(h_member(&h, "p0")->state, P2P_SWIM_SUSPECT);
    assert_int_equal(st.suspicions_raised, 0);
    /* and we announced ourselves alive again, with a new incarnation */
    assert_int_equal(st.refutations, 1);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 2);
    assert_true(p2p_swim_next_timeout(h.s, h.now) <= 200);
    /* the refutation that was waiting in the socket arrives */
    p2p_gossip_node p0 = make_node("p0", "10.0.1.1", 7946, 2, NULL);
    m = alive_msg(&p0);
    assert_int_equal(inject(&h, &m), 0);
    assert_int_equal(h_member(&h, "p0")->state, P2P_SWIM_ALIVE);
    h_free(&h);
}

/* Collects the frames of every captured datagram that opens with SYNC. */
static size_t sync_frames(const harness *h, uint16_t port, p2p_gossip_msg *out, size_t max, uint32_t *seq)
{
    size_t n = 0;
    for (size_t i = 0; i < h->npkts; i++) {
        if (h->pkts[i].port != port)
            continue;
        p2p_gossip_reader r;
        p2p_gossip_msg m;
        assert_int_equal(p2p_gossip_reader_init(&r, h->pkts[i].buf, h->pkts[i].len, NULL), 0);
        assert_int_equal(p2p_gossip_reader_next(&r, &m, NULL), 1);
        if (m.type != P2P_GOSSIP_SYNC)
            continue;
        *seq = m.seq;
        while (p2p_gossip_reader_next(&r, &m, NULL) == 1 && n < max)
            out[n++] = m;
    }
    return n;
}

static void test_sync_answer(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    char id[8], addr[32];
    for (int k = 0; k < 60; k++) { /* enough for several datagrams */
        snprintf(id, sizeof(id), "p%d", k);
        snprintf(addr, sizeof(addr), "10.0.1.%d", k + 1);
        p2p_gossip_node pn = make_node(id, addr, 7946, 3, "{\"services\":[\"a\",\"b\",\"c\"]}");
        assert_int_equal(p2p_swim_merge_remote(h.s, 0, &pn, P2P_SWIM_ALIVE), 0);
    }
    p2p_gossip_msg m = accuse_msg(P2P_GOSSIP_SUSPECT, "p1", 3, "p2");
    assert_int_equal(inject(&h, &m), 0);
    m = accuse_msg(P2P_GOSSIP_DEAD, "p2", 3, "p3");
    assert_int_equal(inject(&h, &m), 0);
    m = accuse_msg(P2P_GOSSIP_DEAD, "p3", 3, "p3");
    assert_int_equal(inject(&h, &m), 0);
    h_clear(&h);
    m = seq_msg(P2P_GOSSIP_SYNC_REQ, 99);
    assert_int_equal(inject_from(&h, "10.0.2.1", 7100, &m, 1), 0);
    assert_true(h.npkts >= 3);
    for (size_t i = 0; i < h.npkts; i++)
        assert_true(h.pkts[i].len <= 1400);
    p2p_gossip_msg f[128];
    uint32_t seq = 0;
    size_t n = sync_frames(&h, 7100, f, 128, &seq);
    assert_int_equal(seq, 99);
    /* self first; 58 live others as ALIVE (p1 with its SUSPECT); p2 dead as
     * SUSPECT; p3 left as a leave */
    assert_int_equal(n, 1 + 58 + 1 + 1 + 1);
    assert_int_equal(f[0].type, P2P_GOSSIP_ALIVE);
    assert_string_equal(f[0].node.id, "me");
    int alive = 0, suspect_p1 = 0, suspect_p2 = 0, leave_p3 = 0;
    for (size_t i = 0; i < n; i++) {
        if (f[i].type == P2P_GOSSIP_ALIVE)
            alive++;
        if (f[i].type == P2P_GOSSIP_SUSPECT && !strcmp(f[i].id, "p1"))
            suspect_p1++, assert_true(i > 0 && f[i - 1].type == P2P_GOSSIP_ALIVE && !strcmp(f[i - 1].node.id, "p1"));
        if (f[i].type == P2P_GOSSIP_SUSPECT && !strcmp(f[i].id, "p2"))
            suspect_p2++, assert_string_equal(f[i].from, "me");
        if (f[i].type == P2P_GOSSIP_DEAD && !strcmp(f[i].id, "p3"))
            leave_p3++, assert_string_equal(f[i].from, "p3");
    }
    assert_int_equal(alive, 59);
    assert_int_equal(suspect_p1 + suspect_p2 + leave_p3, 3);
    p2p_swim_stats st;
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.syncs_sent, 1);
    h_free(&h);
}

static void test_sync_applied_quietly(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node p = make_node("p", "10.0.0.2", 7946, 1, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &p, P2P_SWIM_ALIVE), 0);
    h_advance(&h, 990); /* drain: 4 transmits, one peer per round (before a probe can fail) */
    assert_int_equal(p2p_swim_pending_broadcasts(h.s), 0);
    h_clear(&h);
    /* a sync datagram: new members are learned, and not re-gossiped */
    p2p_gossip_node a = make_node("a", "10.0.0.3", 7946, 4, NULL);
    p2p_gossip_node b = make_node("b", "10.0.0.4", 7946, 2, NULL);
    p2p_gossip_msg msgs[4] = {seq_msg(P2P_GOSSIP_SYNC, 5), alive_msg(&a), alive_msg(&b),
                              accuse_msg(P2P_GOSSIP_SUSPECT, "b", 2, "p")};
    assert_int_equal(inject_from(&h, "10.0.0.2", 7946, msgs, 4), 0);
    assert_int_equal(h_member(&h, "a")->state, P2P_SWIM_ALIVE);
    assert_int_equal(h_member(&h, "b")->state, P2P_SWIM_SUSPECT);
    assert_int_equal(h.events[P2P_SWIM_EV_JOIN], 2);
    assert_int_equal(h.events[P2P_SWIM_EV_SUSPECT], 1);
    assert_int_equal(p2p_swim_pending_broadcasts(h.s), 0);
    /* the same records outside a sync are news, and are passed on */
    p2p_gossip_node c = make_node("c", "10.0.0.5", 7946, 1, NULL);
    p2p_gossip_msg mc = alive_msg(&c);
    assert_int_equal(inject_from(&h, "10.0.0.2", 7946, &mc, 1), 0);
    assert_int_equal(p2p_swim_pending_broadcasts(h.s), 1);
    /* a sync that accuses us is still refuted, and that is gossiped */
    p2p_gossip_msg acc[2] = {seq_msg(P2P_GOSSIP_SYNC, 6), accuse_msg(P2P_GOSSIP_SUSPECT, "me", 1, "p")};
    assert_int_equal(inject_from(&h, "10.0.0.2", 7946, acc, 2), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 2);
    assert_int_equal(p2p_swim_pending_broadcasts(h.s), 2);
    h_free(&h);
}

/* A PING from `from` showing view (live, digest); returns whether our ACK
 * asks for its member list. */
static bool ping_with_view(harness *h, const char *from, const char *addr, uint32_t live, uint32_t digest)
{
    h_clear(h);
    p2p_gossip_msg m = seq_msg(P2P_GOSSIP_PING, 1);
    strcpy(m.id, "me");
    snprintf(m.from, sizeof(m.from), "%s", from);
    m.live = live;
    m.digest = digest;
    assert_int_equal(inject_from(h, addr, 7946, &m, 1), 0);
    assert_true(h_find_msg(h, 7946, P2P_GOSSIP_ACK, NULL, NULL));
    return h_find_msg(h, 7946, P2P_GOSSIP_SYNC_REQ, NULL, NULL);
}

static void test_view_pull(void **state)
{
    (void)state;
    harness h;
    h_new(&h); /* pull_delay_ms 2000 */
    add_peers(&h, 9);
    /* our own view, as our pings carry it */
    p2p_gossip_msg ping;
    h_tick_until(&h, 7946, P2P_GOSSIP_PING, NULL, &ping, 1000);
    assert_int_equal(ping.live, 10);
    uint32_t mine = ping.digest;
    uint64_t t0 = h.now;

    /* a peer with the same view: nothing */
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 10, mine));
    /* a peer that knows less: never pull from it */
    h.now = t0 + 10000;
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 9, mine + 1));
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 9, mine + 1));
    /* same count, other digest (an incarnation we missed): after 2 s */
    h.now = t0 + 20000;
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 10, mine + 1));
    h.now += 1999;
    assert_false(ping_with_view(&h, "p1", "10.0.1.2", 10, mine + 1));
    h.now += 1;
    assert_true(ping_with_view(&h, "p1", "10.0.1.2", 10, mine + 1));
    /* ... an agreeing peer in between resets the wait */
    h.now += 5000;
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 10, mine + 1));
    h.now += 1500;
    assert_false(ping_with_view(&h, "p2", "10.0.1.3", 10, mine));
    h.now += 1500;
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 10, mine + 1));
    /* one member more: after 1 s (from a fresh start: somebody agreed) */
    h.now += 5000;
    assert_false(ping_with_view(&h, "p2", "10.0.1.3", 10, mine));
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 11, mine + 7));
    h.now += 1000;
    assert_true(ping_with_view(&h, "p0", "10.0.1.1", 11, mine + 7));
    /* many more: at once (but not twice within 1 s) */
    h.now += 5000;
    assert_true(ping_with_view(&h, "p3", "10.0.1.4", 40, 1));
    h.now += 999;
    assert_false(ping_with_view(&h, "p3", "10.0.1.4", 40, 1));
    h.now += 1;
    assert_true(ping_with_view(&h, "p3", "10.0.1.4", 40, 1));
    /* an ACK carries a view too; the pull goes to its sender */
    h.now += 5000;
    h_clear(&h);
    p2p_gossip_msg ack = seq_msg(P2P_GOSSIP_ACK, 12345);
    ack.live = 50;
    ack.digest = 3;
    assert_int_equal(inject_from(&h, "10.0.1.5", 7946, &ack, 1), 0);
    assert_true(h_find_msg(&h, 7946, P2P_GOSSIP_SYNC_REQ, NULL, NULL));
    assert_string_equal(h.pkts[0].addr, "10.0.1.5");
    p2p_swim_stats st;
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.syncs_requested, 5);
    h_free(&h);

    /* pull_delay_ms = 0 disables pulls */
    p2p_swim_config cfg;
    p2p_swim_config_default(&cfg);
    cfg.pull_delay_ms = 0;
    h_new_cfg(&h, &cfg);
    assert_false(ping_with_view(&h, "p0", "10.0.1.1", 400, 1));
    h_free(&h);
}

static void test_stale_accusation_answered(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_node p = make_node("p", "10.0.0.2", 7946, 1, NULL);
    assert_int_equal(p2p_swim_merge_remote(h.s, 0, &p, P2P_SWIM_ALIVE), 0);
    p2p_gossip_msg m = accuse_msg(P2P_GOSSIP_SUSPECT, "me", 1, "p");
    assert_int_equal(inject(&h, &m), 0); /* refuted: incarnation 2 */
    h_clear(&h);
    /* the old accusation again, from someone who missed the refutation:
     * it gets our ALIVE back, once per datagram */
    p2p_gossip_msg two[2] = {accuse_msg(P2P_GOSSIP_SUSPECT, "me", 1, "q"), accuse_msg(P2P_GOSSIP_DEAD, "me", 1, "q")};
    assert_int_equal(inject_from(&h, "10.0.0.9", 7001, two, 2), 0);
    size_t to_sender = 0;
    for (size_t i = 0; i < h.npkts; i++)
        to_sender += h.pkts[i].port == 7001;
    assert_int_equal(to_sender, 1);
    p2p_gossip_msg a;
    assert_true(h_find_msg(&h, 7001, P2P_GOSSIP_ALIVE, "me", &a));
    assert_int_equal(a.node.incarnation, 2);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 2); /* no new refutation */
    h_free(&h);
}

static void test_unknown_pinger_introduced(void **state)
{
    (void)state;
    harness h;
    h_new(&h);
    p2p_gossip_msg m = seq_msg(P2P_GOSSIP_PING, 8);
    strcpy(m.id, "me");
    strcpy(m.from, "ghost");
    assert_int_equal(inject_from(&h, "10.0.0.8", 7946, &m, 1), 0);
    p2p_gossip_msg ping;
    assert_true(h_find_msg(&h, 7946, P2P_GOSSIP_ACK, NULL, NULL));
    assert_true(h_find_msg(&h, 7946, P2P_GOSSIP_PING, "", &ping)); /* "who are you?" */
    /* its answer (ACK + ALIVE) makes it a member */
    h_clear(&h);
    p2p_gossip_node g = make_node("ghost", "10.0.0.8", 7946, 1, NULL);
    p2p_gossip_msg reply[2] = {seq_msg(P2P_GOSSIP_ACK, ping.seq), alive_msg(&g)};
    assert_int_equal(inject_from(&h, "10.0.0.8", 7946, reply, 2), 0);
    assert_non_null(h_member(&h, "ghost"));
    assert_int_equal(h.events[P2P_SWIM_EV_JOIN], 1);
    /* a known pinger is not asked */
    h_clear(&h);
    assert_int_equal(inject_from(&h, "10.0.0.8", 7946, &m, 1), 0);
    assert_false(h_find_msg(&h, 7946, P2P_GOSSIP_PING, NULL, NULL));
    h_free(&h);
}

/* ================================================================== */
/* part 2: simulated network                                           */
/* ================================================================== */

#ifndef SIM_MAX
#define SIM_MAX 256
#endif
#define SIM_PORT 7946

typedef struct sim sim;

typedef struct simnode {
    sim *S;
    int idx;
    p2p_swim *s;
    uint64_t next_tick;
    bool down, paused;
    char id[16], addr[32];
} simnode;

typedef struct inflight {
    uint64_t at;
    int to;
    char from_addr[32];
    uint8_t *buf;
    size_t len;
} inflight;

typedef struct about_stats {
    int ev[7];               /* events about this node, seen by anybody */
    uint64_t first_ev_ms[7]; /* first time of each */
} about_stats;

struct sim {
    simnode nodes[SIM_MAX];
    int n;
    inflight *q;
    size_t nq, capq;
    uint64_t now, rng;
    unsigned loss_pct;
    uint64_t packets, bytes, dropped;
    about_stats ab[SIM_MAX];
    const char *meta;
};

static uint64_t sim_rnd(sim *S)
{
    uint64_t z = (S->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int addr_index(const char *addr)
{
    int a, b;
    if (sscanf(addr, "10.0.%d.%d", &a, &b) != 2)
        return -1;
    return a * 200 + b - 1;
}

static int id_index(const char *id)
{
    int i;
    return sscanf(id, "n%d", &i) == 1 ? i : -1;
}

static void sim_send(void *udata, const char *addr, uint16_t port, const uint8_t *buf, size_t len)
{
    simnode *me = udata;
    sim *S = me->S;
    assert_int_equal(port, SIM_PORT);
    int to = addr_index(addr);
    assert_true(to >= 0 && to < S->n);
    S->packets++;
    S->bytes += len;
    if (S->loss_pct && sim_rnd(S) % 100 < S->loss_pct) {
        S->dropped++;
        return;
    }
    if (S->nq == S->capq) {
        S->capq = S->capq ? 2 * S->capq : 1024;
        S->q = realloc(S->q, S->capq * sizeof(*S->q));
    }
    inflight *f = &S->q[S->nq++];
    f->at = S->now + 1 + sim_rnd(S) % 4;
    f->to = to;
    snprintf(f->from_addr, sizeof(f->from_addr), "%s", me->addr);
    f->buf = malloc(len);
    memcpy(f->buf, buf, len);
    f->len = len;
}

static void sim_event(void *udata, p2p_swim_event ev, const p2p_swim_member *m)
{
    simnode *me = udata;
    int i = id_index(m->node.id);
    assert_true(i >= 0 && i < SIM_MAX);
    about_stats *a = &me->S->ab[i];
    if (a->ev[ev]++ == 0)
        a->first_ev_ms[ev] = me->S->now;
}

static void sim_start_node(sim *S, int i, uint32_t inc)
{
    simnode *nd = &S->nodes[i];
    nd->S = S;
    nd->idx = i;
    snprintf(nd->id, sizeof(nd->id), "n%03d", i);
    snprintf(nd->addr, sizeof(nd->addr), "10.0.%d.%d", i / 200, i % 200 + 1);
    p2p_gossip_node rec = make_node(nd->id, nd->addr, SIM_PORT, inc, S->meta);
    strcpy(rec.role, i == 0 ? "coordinator" : "worker");
    p2p_swim_config cfg;
    p2p_swim_config_default(&cfg);
    cfg.seed = sim_rnd(S);
    p2p_swim_callbacks cb = {nd, sim_send, sim_event};
    assert_int_equal(p2p_swim_new(&cfg, &rec, &cb, S->now, &nd->s, NULL), 0);
    nd->next_tick = S->now;
    nd->down = nd->paused = false;
}

static void sim_init(sim *S, int n, uint64_t seed)
{
    memset(S, 0, sizeof(*S));
    S->n = n;
    S->rng = seed;
    S->meta = "{\"services\":[{\"name\":\"system\",\"version\":\"1.0\",\"status\":\"running\"}]}";
    for (int i = 0; i < n; i++)
        sim_start_node(S, i, 1);
}

static void sim_free(sim *S)
{
    for (int i = 0; i < S->n; i++)
        p2p_swim_free(S->nodes[i].s);
    for (size_t i = 0; i < S->nq; i++)
        free(S->q[i].buf);
    free(S->q);
}

static bool running(const simnode *nd)
{
    return !nd->down && !nd->paused;
}

static void sim_step(sim *S)
{
    S->now++;
    /* take out what is due (sends during delivery land later) */
    size_t due = 0, keep = 0;
    inflight *batch = NULL;
    for (size_t i = 0; i < S->nq; i++)
        if (S->q[i].at <= S->now)
            due++;
    if (due) {
        batch = malloc(due * sizeof(*batch));
        due = 0;
        for (size_t i = 0; i < S->nq; i++) {
            if (S->q[i].at <= S->now)
                batch[due++] = S->q[i];
            else
                S->q[keep++] = S->q[i];
        }
        S->nq = keep;
    }
    for (size_t i = 0; i < due; i++) {
        simnode *nd = &S->nodes[batch[i].to];
        if (running(nd)) {
            int rc = p2p_swim_receive(nd->s, S->now, batch[i].from_addr, SIM_PORT, batch[i].buf, batch[i].len);
            assert_int_equal(rc, 0);
            uint64_t t = S->now + p2p_swim_next_timeout(nd->s, S->now);
            if (t < nd->next_tick)
                nd->next_tick = t;
        }
        free(batch[i].buf);
    }
    free(batch);
    for (int i = 0; i < S->n; i++) {
        simnode *nd = &S->nodes[i];
        if (running(nd) && S->now >= nd->next_tick)
            nd->next_tick = S->now + p2p_swim_tick(nd->s, S->now);
    }
}

/* Runs until cond(S, arg) holds or `limit` ms passed; returns the time
 * taken, or UINT64_MAX on timeout. */
typedef bool (*sim_cond)(sim *S, int arg);

static uint64_t sim_until(sim *S, sim_cond cond, int arg, uint64_t limit)
{
    uint64_t start = S->now;
    while (S->now - start < limit) {
        if (cond && (S->now % 10 == 0) && cond(S, arg))
            return S->now - start;
        sim_step(S);
    }
    return cond && cond(S, arg) ? S->now - start : UINT64_MAX;
}

static void sim_run(sim *S, uint64_t ms)
{
    sim_until(S, NULL, 0, ms);
}

/* Every running node sees every other running node ALIVE, and nothing else
 * live. */
static bool sim_converged(sim *S, int unused)
{
    (void)unused;
    int nrun = 0;
    for (int i = 0; i < S->n; i++)
        nrun += running(&S->nodes[i]);
    for (int i = 0; i < S->n; i++) {
        if (!running(&S->nodes[i]))
            continue;
        if ((int)p2p_swim_live_count(S->nodes[i].s) != nrun)
            return false;
        for (int j = 0; j < S->n; j++) {
            if (!running(&S->nodes[j]))
                continue;
            const p2p_swim_member *m = p2p_swim_find(S->nodes[i].s, S->nodes[j].id);
            if (!m || m->state != P2P_SWIM_ALIVE)
                return false;
        }
    }
    return true;
}

/* Every running node other than `about` holds it in state `st`. */
static int want_state;
static bool sim_all_see(sim *S, int about)
{
    for (int i = 0; i < S->n; i++) {
        if (i == about || !running(&S->nodes[i]))
            continue;
        const p2p_swim_member *m = p2p_swim_find(S->nodes[i].s, S->nodes[about].id);
        if (!m || (int)m->state != want_state)
            return false;
    }
    return true;
}

static int total_events(const sim *S, p2p_swim_event ev)
{
    int n = 0;
    for (int i = 0; i < S->n; i++)
        n += S->ab[i].ev[ev];
    return n;
}

/* All nodes join node 0 at a random moment in [0, spread). */
static void sim_join_all(sim *S, uint64_t spread)
{
    uint64_t at[SIM_MAX];
    for (int i = 1; i < S->n; i++)
        at[i] = S->nodes[i].down ? UINT64_MAX : S->now + sim_rnd(S) % spread;
    uint64_t end = S->now + spread;
    while (S->now < end) {
        for (int i = 1; i < S->n; i++)
            if (at[i] == S->now)
                assert_int_equal(p2p_swim_join(S->nodes[i].s, S->now, S->nodes[0].addr, SIM_PORT), 0);
        sim_step(S);
    }
}

static void sim_stats_sum(const sim *S, p2p_swim_stats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < S->n; i++) {
        p2p_swim_stats st;
        p2p_swim_get_stats(S->nodes[i].s, &st);
        sum->probes_sent += st.probes_sent;
        sum->indirect_probes += st.indirect_probes;
        sum->nacks_received += st.nacks_received;
        sum->suspicions_raised += st.suspicions_raised;
        sum->refutations += st.refutations;
        sum->deaths_declared += st.deaths_declared;
        sum->relays += st.relays;
        sum->stalls += st.stalls;
    }
}

static void sim_converge(sim *S, uint64_t limit)
{
    sim_join_all(S, 100);
    uint64_t t = sim_until(S, sim_converged, 0, limit);
    if (t == UINT64_MAX)
        fail_msg("%d nodes did not converge within %llu ms", S->n, (unsigned long long)limit);
}

static void test_sim_join(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 2, 1);
    assert_int_equal(p2p_swim_join(S.nodes[1].s, 0, "10.0.0.1", SIM_PORT), 0);
    assert_int_equal(p2p_swim_join(S.nodes[1].s, 0, "not-an-ip", SIM_PORT), -EINVAL);
    sim_run(&S, 20);
    assert_true(sim_converged(&S, 0));
    const p2p_swim_member *m = p2p_swim_find(S.nodes[1].s, "n000");
    assert_non_null(m);
    assert_string_equal(m->node.role, "coordinator");
    assert_string_equal(m->node.meta, S.meta);
    assert_int_equal(S.ab[1].ev[P2P_SWIM_EV_JOIN], 1);
    assert_int_equal(S.ab[0].ev[P2P_SWIM_EV_JOIN], 1);
    /* the join was acknowledged (no retries); then only probes, acks and the
     * last retransmits of the two ALIVEs */
    sim_run(&S, 1000);
    uint64_t before = S.packets;
    sim_run(&S, 10000);
    assert_true(S.packets - before <= 2 * 10 * 2 + 4);
    assert_true(sim_converged(&S, 0));
    sim_free(&S);
}

static void test_sim_converge_20(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 20, 11);
    sim_join_all(&S, 100);
    uint64_t t = sim_until(&S, sim_converged, 0, 10000);
    if (getenv("SIM_DEBUG"))
        for (int i = 0; i < S.n; i++) {
            fprintf(stderr, "node %d live %zu members %zu:", i, p2p_swim_live_count(S.nodes[i].s),
                    p2p_swim_member_count(S.nodes[i].s));
            for (size_t k = 0; k < p2p_swim_member_count(S.nodes[i].s); k++) {
                const p2p_swim_member *m = p2p_swim_member_at(S.nodes[i].s, k);
                fprintf(stderr, " %s/%s/%u", m->node.id, p2p_swim_state_name(m->state), m->node.incarnation);
            }
            fprintf(stderr, "\n");
        }
    print_message("    20 nodes converged %llu ms after the last join; %llu packets\n", (unsigned long long)t,
                  (unsigned long long)S.packets);
    assert_true(t <= 3000);
    sim_run(&S, 20000);
    assert_true(sim_converged(&S, 0));
    assert_int_equal(total_events(&S, P2P_SWIM_EV_SUSPECT), 0);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_DEAD), 0);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_JOIN), 20 * 19);
    /* steady state: about one probe + ack per node per second */
    uint64_t before = S.packets;
    sim_run(&S, 10000);
    print_message("    steady state: %.1f packets/node/s\n", (double)(S.packets - before) / 20 / 10);
    assert_true(S.packets - before <= 20 * 10 * 3);
    sim_free(&S);
}

static void test_sim_kill(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 20, 22);
    sim_converge(&S, 10000);
    sim_run(&S, 5000);
    uint64_t t0 = S.now;
    S.nodes[7].down = true;
    want_state = P2P_SWIM_DEAD;
    uint64_t t = sim_until(&S, sim_all_see, 7, 60000);
    uint64_t first_suspect = S.ab[7].first_ev_ms[P2P_SWIM_EV_SUSPECT] - t0;
    uint64_t first_dead = S.ab[7].first_ev_ms[P2P_SWIM_EV_DEAD] - t0;
    print_message("    killed node: first suspect %llu ms, first dead %llu ms, dead everywhere %llu ms\n",
                  (unsigned long long)first_suspect, (unsigned long long)first_dead, (unsigned long long)t);
    /* N = 20: min 3000 ms (the floor), max 18000 ms; with confirmations near the min */
    assert_true(S.ab[7].ev[P2P_SWIM_EV_SUSPECT] >= 1);
    assert_true(first_dead - first_suspect >= 3000);
    assert_true(t <= 20000);
    /* nobody else died, nobody else was even suspected */
    for (int i = 0; i < S.n; i++)
        if (i != 7) {
            assert_int_equal(S.ab[i].ev[P2P_SWIM_EV_DEAD], 0);
        }
    assert_int_equal(S.ab[7].ev[P2P_SWIM_EV_DEAD], 19);
    p2p_swim_stats sum;
    sim_stats_sum(&S, &sum);
    assert_true(sum.indirect_probes > 0);
    assert_true(sum.nacks_received > 0); /* relays reported the target silent */
    /* the dead one is reaped after reap_ms */
    sim_run(&S, 300000 + 2000);
    for (int i = 0; i < S.n; i++)
        if (i != 7)
            assert_null(p2p_swim_find(S.nodes[i].s, "n007"));
    assert_true(sim_converged(&S, 0));
    sim_free(&S);
}

static void test_sim_pause(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 20, 40); /* a seed where node 5 is probed during the pause (frame sizes shift the path) */
    sim_converge(&S, 10000);
    sim_run(&S, 3000);
    S.nodes[5].paused = true;
    sim_run(&S, 1800); /* suspected within ~1 s, dead 3 s after the suspicion at the soonest */
    S.nodes[5].paused = false;
    uint64_t t = sim_until(&S, sim_converged, 0, 20000);
    print_message("    paused 1.8 s: suspected by %d, refuted, all alive again %llu ms after resuming\n",
                  S.ab[5].ev[P2P_SWIM_EV_SUSPECT], (unsigned long long)t);
    assert_true(t != UINT64_MAX);
    sim_run(&S, 20000);
    assert_true(S.ab[5].ev[P2P_SWIM_EV_SUSPECT] >= 1);       /* it was suspected... */
    assert_int_equal(total_events(&S, P2P_SWIM_EV_DEAD), 0); /* ...and never declared dead */
    p2p_swim_stats st;
    p2p_swim_get_stats(S.nodes[5].s, &st);
    assert_true(st.refutations >= 1);
    assert_int_equal(st.stalls, 0); /* 1.8 s is shorter than stall_ms */
    assert_true(sim_converged(&S, 0));
    sim_free(&S);
}

static void test_sim_loss(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 20, 44);
    sim_converge(&S, 10000);
    S.loss_pct = 10;
    sim_run(&S, 60000);
    p2p_swim_stats sum;
    sim_stats_sum(&S, &sum);
    print_message("    10%% loss, 60 s: %llu of %llu packets lost, %d suspicions, %llu refutations, 0 deaths\n",
                  (unsigned long long)S.dropped, (unsigned long long)S.packets, total_events(&S, P2P_SWIM_EV_SUSPECT),
                  (unsigned long long)sum.refutations);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_DEAD), 0);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_LEAVE), 0);
    S.loss_pct = 0;
    assert_true(sim_until(&S, sim_converged, 0, 10000) != UINT64_MAX);
    sim_free(&S);
}

static void test_sim_leave(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 20, 55);
    sim_converge(&S, 10000);
    sim_run(&S, 2000);
    assert_int_equal(p2p_swim_leave(S.nodes[3].s, S.now), 0);
    want_state = P2P_SWIM_LEFT;
    uint64_t t = sim_until(&S, sim_all_see, 3, 10000);
    print_message("    graceful leave: LEFT everywhere after %llu ms\n", (unsigned long long)t);
    assert_true(t <= 1500);
    for (int k = 0; k < 3000 && !p2p_swim_leave_done(S.nodes[3].s); k++)
        sim_step(&S);
    assert_true(p2p_swim_leave_done(S.nodes[3].s));
    S.nodes[3].down = true; /* the process exits */
    sim_run(&S, 40000);
    assert_int_equal(S.ab[3].ev[P2P_SWIM_EV_LEAVE], 19);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_DEAD), 0);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_SUSPECT), 0);
    sim_free(&S);
}

static void test_sim_late_join_and_restart(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 21, 66);
    S.nodes[20].down = true; /* not started yet */
    sim_converge(&S, 10000);
    sim_run(&S, 2000);

    /* a late joiner is known by everybody within about a second */
    S.nodes[20].down = false;
    assert_int_equal(p2p_swim_join(S.nodes[20].s, S.now, S.nodes[0].addr, SIM_PORT), 0);
    want_state = P2P_SWIM_ALIVE;
    uint64_t t = sim_until(&S, sim_all_see, 20, 10000);
    print_message("    late joiner known by all 20 after %llu ms\n", (unsigned long long)t);
    assert_true(t <= 1200);
    /* it learns the others through the push-pull the node does over HTTPS:
     * merge the seed's member list */
    for (size_t i = 0; i < p2p_swim_member_count(S.nodes[0].s); i++) {
        const p2p_swim_member *m = p2p_swim_member_at(S.nodes[0].s, i);
        assert_int_equal(p2p_swim_merge_remote(S.nodes[20].s, S.now, &m->node, m->state), 0);
    }
    assert_true(sim_until(&S, sim_converged, 0, 1000) != UINT64_MAX);

    /* kill n004, wait until it is dead everywhere, restart it from scratch
     * (incarnation 0): it must come back, above its old incarnation */
    S.nodes[4].down = true;
    want_state = P2P_SWIM_DEAD;
    assert_true(sim_until(&S, sim_all_see, 4, 60000) != UINT64_MAX);
    uint32_t old_inc = p2p_swim_find(S.nodes[0].s, "n004")->node.incarnation;
    p2p_swim_free(S.nodes[4].s);
    sim_start_node(&S, 4, 0);
    assert_int_equal(p2p_swim_join(S.nodes[4].s, S.now, S.nodes[0].addr, SIM_PORT), 0);
    want_state = P2P_SWIM_ALIVE;
    t = sim_until(&S, sim_all_see, 4, 10000);
    print_message("    restarted node (incarnation 0, was %u) alive everywhere after %llu ms\n", old_inc,
                  (unsigned long long)t);
    assert_true(t <= 2000);
    assert_true(p2p_swim_self(S.nodes[4].s)->node.incarnation > old_inc);
    assert_int_equal(S.ab[4].ev[P2P_SWIM_EV_ALIVE_AGAIN], 20);

    /* a meta change reaches everyone as an UPDATE */
    assert_int_equal(p2p_swim_set_meta(S.nodes[9].s, S.now, "{\"services\":[]}"), 0);
    sim_run(&S, 3000);
    assert_int_equal(S.ab[9].ev[P2P_SWIM_EV_UPDATE], 20);
    for (int i = 0; i < S.n; i++)
        assert_string_equal(p2p_swim_find(S.nodes[i].s, "n009")->node.meta, "{\"services\":[]}");
    sim_free(&S);
}

static void test_sim_200(void **state)
{
    (void)state;
    sim S;
    sim_init(&S, 200, 77);
    /* all 200 start within one second and join the same seed */
    sim_join_all(&S, 1000);
    uint64_t t = sim_until(&S, sim_converged, 0, 20000);
    double kb = (double)S.bytes / 1024.0 / 200;
    print_message("    200 nodes converged %llu ms after the last join; %.1f KiB sent per node\n",
                  (unsigned long long)t, kb);
    assert_true(t <= 5000);
    sim_run(&S, 10000);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_SUSPECT), 0);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_DEAD), 0);
    /* a failure in a 200-node cluster: min 9204 ms, max 55224 ms */
    uint64_t t0 = S.now;
    S.nodes[123].down = true;
    want_state = P2P_SWIM_DEAD;
    t = sim_until(&S, sim_all_see, 123, 90000);
    print_message("    killed node: first suspect %llu ms, dead everywhere %llu ms\n",
                  (unsigned long long)(S.ab[123].first_ev_ms[P2P_SWIM_EV_SUSPECT] - t0), (unsigned long long)t);
    assert_true(t <= 30000);
    assert_int_equal(total_events(&S, P2P_SWIM_EV_DEAD), 199);
    sim_free(&S);
}


/* ================================================================== */
/* records owned by their node: a simulated forger                     */
/* ================================================================== */
/* A toy signature scheme stands in for ECDSA (records.c has its own tests with
 * real keys): certificate i belongs to node fake_owner[i] and "signs" with
 * FNV-1a-64 keyed by its secret. The forger ("evil", certificate 3) holds the
 * gossip key in real life, so here it can put any datagram in front of "me". */
static const char *fake_owner[] = {"me", "n1", "n2", "evil"};
static const char *fake_role[] = {"worker", "worker", "worker", "worker"};
static bool fake_known[4] = {true, true, false, true}; /* n2's certificate: only via CERT */
static int fake_cert_puts;

static uint64_t fake_mac(int cert, const uint8_t *tbs, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(cert * 7919 + 13);
    for (size_t i = 0; i < len; i++)
        h = (h ^ tbs[i]) * 1099511628211ULL;
    return h;
}

static void fake_sign_as(int cert, const uint8_t *tbs, size_t len, p2p_gossip_sig *sig)
{
    memset(sig->cert_id, 0, sizeof sig->cert_id);
    sig->cert_id[7] = (uint8_t)cert;
    uint64_t h = fake_mac(cert, tbs, len);
    memcpy(sig->sig, &h, 8);
    sig->len = 8;
}

static int fake_sign(void *udata, const uint8_t *tbs, size_t len, p2p_gossip_sig *sig)
{
    (void)udata;
    fake_sign_as(0, tbs, len, sig);
    return 0;
}

static int fake_verify(void *udata, const char *id, const char *role, const uint8_t *tbs, size_t len,
                       const p2p_gossip_sig *sig)
{
    (void)udata;
    int cert = sig->cert_id[7];
    if (sig->len != 8 || cert > 3)
        return -EBADMSG;
    if (!fake_known[cert])
        return -ENOKEY;
    if (strcmp(fake_owner[cert], id) || (role && strcmp(fake_role[cert], role)))
        return -EACCES;
    uint64_t h = fake_mac(cert, tbs, len);
    return memcmp(sig->sig, &h, 8) ? -EBADMSG : 0;
}

static const uint8_t fake_der[] = {0x30, 0x03, 0x02, 0x01, 0x02};

static int fake_cert_get(void *udata, const uint8_t *cert_id, const uint8_t **der, size_t *len)
{
    (void)udata;
    if (cert_id[7] > 3 || !fake_known[cert_id[7]])
        return -ENOENT;
    *der = fake_der;
    *len = sizeof fake_der;
    return 0;
}

static int fake_cert_put(void *udata, const uint8_t *der, size_t len, const uint8_t *cert_id)
{
    (void)udata;
    fake_cert_puts++;
    if (len != sizeof fake_der || memcmp(der, fake_der, len) || cert_id[7] != 2)
        return -EACCES;
    fake_known[2] = true;
    return 0;
}

/* An ALIVE of `n` signed with certificate `cert` (whoever owns it). */
static void signed_alive(p2p_gossip_msg *m, p2p_gossip_node n, int cert)
{
    memset(m, 0, sizeof *m);
    m->type = P2P_GOSSIP_ALIVE;
    n.sig.cert_id[7] = (uint8_t)cert;
    m->node = n;
    uint8_t tbs[P2P_GOSSIP_MAX_FRAME + 32];
    int len = p2p_gossip_alive_tbs(&m->node, tbs, sizeof tbs);
    assert_true(len > 0);
    fake_sign_as(cert, tbs, (size_t)len, &m->node.sig);
}

static void deliver(harness *h, const char *from, const p2p_gossip_msg *m)
{
    uint8_t buf[P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_writer w;
    p2p_gossip_writer_init(&w, buf, sizeof buf);
    assert_int_equal(p2p_gossip_writer_add(&w, m, sizeof buf), 0);
    assert_int_equal(p2p_swim_receive(h->s, h->now, from, 7946, buf, w.len), 0);
}

static void test_records_owned_by_their_node(void **state)
{
    (void)state;
    harness h;
    memset(&h, 0, sizeof h);
    fake_known[2] = false;
    fake_cert_puts = 0;
    p2p_swim_config cfg;
    p2p_swim_config_default(&cfg);
    cfg.seed = 7;
    cfg.stall_ms = 0;
    p2p_gossip_node me = make_node("me", "10.0.0.1", 7946, 1, "{}");
    me.sig.cert_id[7] = 0;
    p2p_swim_callbacks cb = {&h, h_send, h_event, fake_sign, fake_verify, fake_cert_get, fake_cert_put};
    assert_int_equal(p2p_swim_new(&cfg, &me, &cb, 0, &h.s, NULL), 0);
    assert_int_equal(p2p_swim_self(h.s)->node.sig.len, 8); /* our own record is signed */

    /* n1 joins with its own signed record; evil is a member too */
    p2p_gossip_msg m;
    p2p_gossip_node n1 = make_node("n1", "10.0.0.2", 7946, 1, "{\"services\":[]}");
    signed_alive(&m, n1, 1);
    deliver(&h, "10.0.0.2", &m);
    signed_alive(&m, make_node("evil", "10.0.0.9", 7946, 1, ""), 3);
    deliver(&h, "10.0.0.9", &m);
    assert_int_equal(p2p_swim_find(h.s, "n1")->state, P2P_SWIM_ALIVE);
    p2p_swim_stats st;
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.records_refused, 0);

    /* 1. evil signs a record for n1 with its own certificate: another id */
    p2p_gossip_node moved = make_node("n1", "10.6.6.6", 7946, 1000, "");
    strcpy(moved.role, "coordinator");
    signed_alive(&m, moved, 3);
    deliver(&h, "10.0.0.9", &m);
    /* 2. names n1's certificate, but cannot make n1's signature */
    signed_alive(&m, moved, 3);
    m.node.sig.cert_id[7] = 1;
    deliver(&h, "10.0.0.9", &m);
    /* 3. unsigned */
    signed_alive(&m, moved, 1);
    m.node.sig.len = 0;
    deliver(&h, "10.0.0.9", &m);
    /* 4. a real record of n1, changed after signing (relays must not change it) */
    signed_alive(&m, make_node("n1", "10.0.0.2", 7946, 2, "{\"services\":[]}"), 1);
    snprintf(m.node.addrs[0], sizeof m.node.addrs[0], "10.6.6.6");
    deliver(&h, "10.0.0.9", &m);
    /* 5. a leave of n1 from evil: unsigned, or signed by evil */
    memset(&m, 0, sizeof m);
    m.type = P2P_GOSSIP_DEAD;
    m.incarnation = 1000;
    strcpy(m.id, "n1");
    strcpy(m.from, "n1");
    deliver(&h, "10.0.0.9", &m);
    uint8_t tbs[256];
    m.sig.cert_id[7] = 3;
    int tl = p2p_gossip_leave_tbs("n1", 1000, m.sig.cert_id, tbs, sizeof tbs);
    fake_sign_as(3, tbs, (size_t)tl, &m.sig);
    deliver(&h, "10.0.0.9", &m);
    /* 6. a forged ALIVE about ourselves is not even worth a refutation */
    p2p_gossip_node fake_me = make_node("me", "10.6.6.6", 7946, 50, "");
    signed_alive(&m, fake_me, 3);
    deliver(&h, "10.0.0.9", &m);

    const p2p_swim_member *x = p2p_swim_find(h.s, "n1");
    assert_int_equal(x->state, P2P_SWIM_ALIVE);
    assert_int_equal(x->node.incarnation, 1);
    assert_string_equal(x->node.addrs[0], "10.0.0.2");
    assert_string_equal(x->node.role, "worker");
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.records_refused, 7);
    assert_int_equal(st.refutations, 0);
    assert_int_equal(p2p_swim_self(h.s)->node.incarnation, 1);

    /* SWIM accusations stay unsigned: evil may suspect n1, never move it */
    memset(&m, 0, sizeof m);
    m.type = P2P_GOSSIP_SUSPECT;
    m.incarnation = 1;
    strcpy(m.id, "n1");
    strcpy(m.from, "evil");
    deliver(&h, "10.0.0.9", &m);
    assert_int_equal(p2p_swim_find(h.s, "n1")->state, P2P_SWIM_SUSPECT);
    assert_string_equal(p2p_swim_find(h.s, "n1")->node.addrs[0], "10.0.0.2");

    /* n1 itself refutes, and leaves: both signed by n1, accepted, the leave kept for relaying */
    signed_alive(&m, make_node("n1", "10.0.0.2", 7946, 2, "{\"services\":[]}"), 1);
    deliver(&h, "10.0.0.2", &m);
    assert_int_equal(p2p_swim_find(h.s, "n1")->state, P2P_SWIM_ALIVE);
    memset(&m, 0, sizeof m);
    m.type = P2P_GOSSIP_DEAD;
    m.incarnation = 2;
    strcpy(m.id, "n1");
    strcpy(m.from, "n1");
    m.sig.cert_id[7] = 1;
    tl = p2p_gossip_leave_tbs("n1", 2, m.sig.cert_id, tbs, sizeof tbs);
    fake_sign_as(1, tbs, (size_t)tl, &m.sig);
    deliver(&h, "10.0.0.2", &m);
    assert_int_equal(p2p_swim_find(h.s, "n1")->state, P2P_SWIM_LEFT);
    assert_int_equal(p2p_swim_find(h.s, "n1")->leave.len, 8);
    /* a push-pull leave without n1's signature is refused too */
    assert_int_equal(p2p_swim_merge_leave(h.s, 0, "evil", 1, NULL), 0);
    assert_int_equal(p2p_swim_find(h.s, "evil")->state, P2P_SWIM_ALIVE);

    /* a record whose certificate we lack is parked, its certificate asked from
     * the sender, and applied when the certificate arrives */
    h_clear(&h);
    signed_alive(&m, make_node("n2", "10.0.0.3", 7946, 1, ""), 2);
    deliver(&h, "10.0.0.5", &m);
    assert_null(p2p_swim_find(h.s, "n2"));
    bool asked = false;
    for (size_t i = 0; i < h.npkts; i++) {
        p2p_gossip_reader r;
        p2p_gossip_msg o;
        assert_int_equal(p2p_gossip_reader_init(&r, h.pkts[i].buf, h.pkts[i].len, NULL), 0);
        while (p2p_gossip_reader_next(&r, &o, NULL) == 1)
            asked |= o.type == P2P_GOSSIP_CERT_REQ && o.sig.cert_id[7] == 2 && !strcmp(o.id, "n2") &&
                     !strcmp(h.pkts[i].addr, "10.0.0.5");
    }
    assert_true(asked);
    memset(&m, 0, sizeof m);
    m.type = P2P_GOSSIP_CERT;
    m.sig.cert_id[7] = 2;
    m.der = fake_der;
    m.der_len = sizeof fake_der;
    deliver(&h, "10.0.0.5", &m);
    assert_int_equal(fake_cert_puts, 1);
    assert_non_null(p2p_swim_find(h.s, "n2"));
    /* an unasked-for certificate is not even looked at */
    m.sig.cert_id[7] = 3;
    deliver(&h, "10.0.0.5", &m);
    assert_int_equal(fake_cert_puts, 1);
    /* and we answer a CERT_REQ from the cache */
    h_clear(&h);
    memset(&m, 0, sizeof m);
    m.type = P2P_GOSSIP_CERT_REQ;
    m.sig.cert_id[7] = 1;
    strcpy(m.id, "n1");
    deliver(&h, "10.0.0.5", &m);
    assert_true(h.npkts >= 1);
    p2p_swim_get_stats(h.s, &st);
    assert_int_equal(st.certs_sent, 1);
    h_clear(&h);
    free(h.pkts);
    p2p_swim_free(h.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_merge_rules),
        cmocka_unit_test(test_refutation),
        cmocka_unit_test(test_suspicion_timers),
        cmocka_unit_test(test_suspicion_defaults),
        cmocka_unit_test(test_probe_cycle),
        cmocka_unit_test(test_ping_handling),
        cmocka_unit_test(test_restart_hint),
        cmocka_unit_test(test_meta_and_leave),
        cmocka_unit_test(test_set_addrs),
        cmocka_unit_test(test_join_retries),
        cmocka_unit_test(test_stall_guard),
        cmocka_unit_test(test_sync_answer),
        cmocka_unit_test(test_sync_applied_quietly),
        cmocka_unit_test(test_view_pull),
        cmocka_unit_test(test_stale_accusation_answered),
        cmocka_unit_test(test_unknown_pinger_introduced),
        cmocka_unit_test(test_sim_join),
        cmocka_unit_test(test_sim_converge_20),
        cmocka_unit_test(test_sim_kill),
        cmocka_unit_test(test_sim_pause),
        cmocka_unit_test(test_sim_loss),
        cmocka_unit_test(test_sim_leave),
        cmocka_unit_test(test_sim_late_join_and_restart),
        cmocka_unit_test(test_sim_200),
        cmocka_unit_test(test_records_owned_by_their_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
