/*
 * fuzz_gossip.c — libFuzzer target for src/membership/codec.c and swim.c.
 * Each input is used two ways:
 *   1. as one datagram for the decoder: p2p_gossip_validate must agree with
 *      a message-by-message read, and an accepted packet must re-encode,
 *      message by message, to frames that decode to the same messages;
 *   2. as input to a small swim instance (self + 4 members, one suspected):
 *      either the whole input as one datagram, or, when it starts with 0xA5,
 *      a script of records  dt:u8 len:u16be bytes[len]  where each datagram
 *      is received after the clock moved dt * 50 ms and the instance ticked,
 *      so that timers (suspicion, reaping, relays, joins) fire between inputs.
 * Invariants, checked after every step: receive returns 0 or a decode error;
 * every datagram the instance sends is a valid packet within the size limit;
 * self is present, alive (or left) and flagged; every member record passes
 * p2p_gossip_node_check, has a NUL-terminated meta of meta_len bytes and is
 * found by its id; live <= members <= max; the next timeout is 1..200 ms.
 * A crash, leak, UB or failed invariant is a finding.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "membership/codec.h"
#include "membership/swim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

static void msgs_same(const p2p_gossip_msg *a, const p2p_gossip_msg *b)
{
    CHECK(a->type == b->type);
    switch (a->type) {
    case P2P_GOSSIP_PING:
        CHECK(a->seq == b->seq && !strcmp(a->id, b->id) && !strcmp(a->from, b->from));
        CHECK(a->live == b->live && a->digest == b->digest);
        break;
    case P2P_GOSSIP_ACK:
        CHECK(a->seq == b->seq && a->live == b->live && a->digest == b->digest);
        break;
    case P2P_GOSSIP_NACK:
    case P2P_GOSSIP_SYNC_REQ:
    case P2P_GOSSIP_SYNC:
        CHECK(a->seq == b->seq);
        break;
    case P2P_GOSSIP_PING_REQ:
        CHECK(a->seq == b->seq && !strcmp(a->id, b->id) && !strcmp(a->addr, b->addr) && a->port == b->port);
        break;
    case P2P_GOSSIP_ALIVE:
        CHECK(!strcmp(a->node.id, b->node.id) && a->node.incarnation == b->node.incarnation);
        CHECK(a->node.port == b->node.port && a->node.naddrs == b->node.naddrs);
        for (unsigned i = 0; i < a->node.naddrs; i++)
            CHECK(!strcmp(a->node.addrs[i], b->node.addrs[i]));
        CHECK(!strcmp(a->node.role, b->node.role) && a->node.meta_len == b->node.meta_len);
        CHECK(!a->node.meta_len || !memcmp(a->node.meta, b->node.meta, a->node.meta_len));
        CHECK(!memcmp(&a->node.sig, &b->node.sig, P2P_GOSSIP_CERT_ID_LEN + 1 + a->node.sig.len));
        break;
    case P2P_GOSSIP_SUSPECT:
    case P2P_GOSSIP_DEAD:
        CHECK(a->incarnation == b->incarnation && !strcmp(a->id, b->id) && !strcmp(a->from, b->from));
        CHECK(a->type != P2P_GOSSIP_DEAD || !memcmp(&a->sig, &b->sig, P2P_GOSSIP_CERT_ID_LEN + 1 + a->sig.len));
        break;
    case P2P_GOSSIP_CERT_REQ:
        CHECK(!memcmp(a->sig.cert_id, b->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN) && !strcmp(a->id, b->id));
        break;
    case P2P_GOSSIP_CERT:
        CHECK(!memcmp(a->sig.cert_id, b->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN) && a->der_len == b->der_len);
        CHECK(!memcmp(a->der, b->der, a->der_len));
        break;
    }
}

static void decode(const uint8_t *data, size_t size)
{
    size_t n = 0;
    const char *why = NULL;
    int rc = p2p_gossip_validate(data, size, &n, &why);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT);
    CHECK(rc == 0 || why != NULL);
    p2p_gossip_reader r;
    if (p2p_gossip_reader_init(&r, data, size, NULL) < 0) {
        CHECK(rc < 0);
        return;
    }
    static uint8_t frame[P2P_GOSSIP_MAX_FRAME];
    p2p_gossip_msg m, again;
    size_t k = 0;
    int got;
    while ((got = p2p_gossip_reader_next(&r, &m, NULL)) == 1) {
        k++;
        CHECK(m.type >= P2P_GOSSIP_PING && m.type <= P2P_GOSSIP_SYNC);
        int len = p2p_gossip_encode_frame(&m, frame, sizeof(frame));
        CHECK(len > 0);
        uint8_t pkt[2 + P2P_GOSSIP_MAX_FRAME];
        pkt[0] = P2P_GOSSIP_VERSION;
        pkt[1] = 1;
        memcpy(pkt + 2, frame, (size_t)len);
        p2p_gossip_reader r2;
        CHECK(p2p_gossip_reader_init(&r2, pkt, (size_t)len + 2, NULL) == 0);
        CHECK(p2p_gossip_reader_next(&r2, &again, NULL) == 1);
        msgs_same(&m, &again);
        CHECK(p2p_gossip_reader_next(&r2, &again, NULL) == 0);
    }
    CHECK((got == 0) == (rc == 0));
    if (rc == 0)
        CHECK(k == n);
}

/* ---- the instance ---- */

static void on_send(void *udata, const char *addr, uint16_t port, const uint8_t *buf, size_t len)
{
    (void)udata;
    CHECK(addr && port != 0);
    CHECK(len <= P2P_GOSSIP_HEADER_LEN + 7 + P2P_GOSSIP_MAX_FRAME);
    CHECK(p2p_gossip_validate(buf, len, NULL, NULL) == 0);
}

static void on_event(void *udata, p2p_swim_event ev, const p2p_swim_member *m)
{
    (void)udata;
    CHECK(ev >= P2P_SWIM_EV_JOIN && ev <= P2P_SWIM_EV_REAPED);
    CHECK(!m->is_self && p2p_gossip_id_valid(m->node.id));
}

static p2p_gossip_node node(const char *id, const char *addr, uint32_t inc)
{
    p2p_gossip_node n;
    memset(&n, 0, sizeof(n));
    strcpy(n.id, id);
    n.incarnation = inc;
    n.port = 7946;
    n.naddrs = 1;
    strcpy(n.addrs[0], addr);
    strcpy(n.role, "worker");
    n.meta = "{}";
    n.meta_len = 2;
    return n;
}

static void invariants(const p2p_swim *s, uint64_t now)
{
    size_t count = p2p_swim_member_count(s), live = 0;
    CHECK(count >= 1 && count <= 64);
    const p2p_swim_member *self = p2p_swim_self(s);
    CHECK(self && self->is_self && !strcmp(self->node.id, "me"));
    CHECK(self->state == P2P_SWIM_ALIVE || self->state == P2P_SWIM_LEFT);
    for (size_t i = 0; i < count; i++) {
        const p2p_swim_member *m = p2p_swim_member_at(s, i);
        CHECK(m && p2p_gossip_node_check(&m->node, NULL) == 0);
        CHECK(strlen(m->node.meta) == m->node.meta_len);
        CHECK(p2p_swim_find(s, m->node.id) == m);
        CHECK(m->is_self == (m == self));
        live += m->state == P2P_SWIM_ALIVE || m->state == P2P_SWIM_SUSPECT;
    }
    CHECK(live == p2p_swim_live_count(s));
    uint64_t t = p2p_swim_next_timeout(s, now);
    CHECK(t >= 1 && t <= 200);
}

static p2p_swim *instance(void)
{
    p2p_swim_config cfg;
    p2p_swim_config_default(&cfg);
    cfg.seed = 1;
    cfg.max_members = 64;
    cfg.gossip_to_dead_ms = 3000;
    cfg.reap_ms = 6000;
    p2p_gossip_node me = node("me", "10.0.0.1", 1);
    p2p_swim_callbacks cb = {NULL, on_send, on_event};
    p2p_swim *s = NULL;
    CHECK(p2p_swim_new(&cfg, &me, &cb, 0, &s, NULL) == 0);
    const char *ids[] = {"a", "b", "c", "d"};
    const char *addrs[] = {"10.0.0.2", "10.0.0.3", "fd00::4", "10.0.0.5"};
    for (int i = 0; i < 4; i++) {
        p2p_gossip_node n = node(ids[i], addrs[i], 5);
        CHECK(p2p_swim_merge_remote(s, 0, &n, P2P_SWIM_ALIVE) == 0);
    }
    p2p_gossip_node d = node("d", "10.0.0.5", 5);
    CHECK(p2p_swim_merge_remote(s, 0, &d, P2P_SWIM_SUSPECT) == 0);
    invariants(s, 0);
    return s;
}

static void feed(p2p_swim *s, uint64_t now, const uint8_t *buf, size_t len, unsigned k)
{
    static const char *from[] = {"10.0.0.2", "10.0.0.3", "fd00::4", "192.0.2.9"};
    int rc = p2p_swim_receive(s, now, from[k % 4], k % 5 == 4 ? 9999 : 7946, buf, len);
    CHECK(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT);
    invariants(s, now);
}

static void drive(const uint8_t *data, size_t size)
{
    p2p_swim *s = instance();
    uint64_t now = 0;
    if (size >= 1 && data[0] == 0xA5) {
        size_t off = 1;
        unsigned k = 0;
        while (size - off >= 3) {
            uint64_t dt = (uint64_t)data[off] * 50;
            size_t len = ((size_t)data[off + 1] << 8) | data[off + 2];
            off += 3;
            if (len > size - off)
                len = size - off;
            for (uint64_t end = now + dt; now < end;) { /* tick as a timer would */
                now += p2p_swim_tick(s, now);
                invariants(s, now);
            }
            if (k == 7)
                p2p_swim_set_meta(s, now, "{\"v\":2}");
            if (k == 11)
                p2p_swim_leave(s, now);
            feed(s, now, data + off, len, k++);
            off += len;
        }
        for (uint64_t end = now + 8000; now < end;) { /* past reap_ms */
            now += p2p_swim_tick(s, now);
            invariants(s, now);
        }
    } else {
        feed(s, now, data, size, 0);
        now += p2p_swim_tick(s, now);
        invariants(s, now);
    }
    p2p_swim_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode(data, size);
    drive(data, size);
    return 0;
}
