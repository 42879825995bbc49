/*
 * test_codec.c — unit tests for src/membership/codec.c: round trip of every
 * message type (IPv4 and IPv6, the largest record), the encoder's refusals,
 * the decoder's totality (every truncation of a valid packet, trailing bytes,
 * each malformed field, random garbage, mutations), skipping of unknown frame
 * types, the writer's budget, and the broadcast queue's ordering, budget,
 * replacement, transmit limit and oversize rule.
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

#include "membership/codec.h"

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static p2p_gossip_node sample_node(void)
{
    p2p_gossip_node n;
    memset(&n, 0, sizeof(n));
    strcpy(n.id, "worker-1.example_A");
    n.incarnation = 0xdeadbeef;
    n.port = 8443;
    n.naddrs = 3;
    strcpy(n.addrs[0], "10.1.2.3");
    strcpy(n.addrs[1], "fd00::1");
    strcpy(n.addrs[2], "2001:db8::ff:1");
    strcpy(n.role, "worker");
    n.meta = "{\"services\":[{\"name\":\"system\",\"version\":\"1.0\"}]}";
    n.meta_len = strlen(n.meta);
    return n;
}

static void msgs_equal(const p2p_gossip_msg *a, const p2p_gossip_msg *b)
{
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case P2P_GOSSIP_PING:
        assert_int_equal(a->seq, b->seq);
        assert_string_equal(a->id, b->id);
        assert_string_equal(a->from, b->from);
        assert_int_equal(a->live, b->live);
        assert_int_equal(a->digest, b->digest);
        break;
    case P2P_GOSSIP_ACK:
        assert_int_equal(a->seq, b->seq);
        assert_int_equal(a->live, b->live);
        assert_int_equal(a->digest, b->digest);
        break;
    case P2P_GOSSIP_NACK:
    case P2P_GOSSIP_SYNC_REQ:
    case P2P_GOSSIP_SYNC:
        assert_int_equal(a->seq, b->seq);
        break;
    case P2P_GOSSIP_PING_REQ:
        assert_int_equal(a->seq, b->seq);
        assert_string_equal(a->id, b->id);
        assert_string_equal(a->addr, b->addr);
        assert_int_equal(a->port, b->port);
        break;
    case P2P_GOSSIP_ALIVE:
        assert_string_equal(a->node.id, b->node.id);
        assert_int_equal(a->node.incarnation, b->node.incarnation);
        assert_int_equal(a->node.port, b->node.port);
        assert_int_equal(a->node.naddrs, b->node.naddrs);
        for (unsigned i = 0; i < a->node.naddrs; i++)
            assert_string_equal(a->node.addrs[i], b->node.addrs[i]);
        assert_string_equal(a->node.role, b->node.role);
        assert_int_equal(a->node.meta_len, b->node.meta_len);
        assert_memory_equal(a->node.meta, b->node.meta, a->node.meta_len);
        assert_memory_equal(&a->node.sig, &b->node.sig, 9 + a->node.sig.len);
        break;
    case P2P_GOSSIP_SUSPECT:
    case P2P_GOSSIP_DEAD:
        assert_int_equal(a->incarnation, b->incarnation);
        assert_string_equal(a->id, b->id);
        assert_string_equal(a->from, b->from);
        if (a->type == P2P_GOSSIP_DEAD)
            assert_memory_equal(&a->sig, &b->sig, 9 + a->sig.len);
        break;
    case P2P_GOSSIP_CERT_REQ:
        assert_memory_equal(a->sig.cert_id, b->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
        assert_string_equal(a->id, b->id);
        break;
    case P2P_GOSSIP_CERT:
        assert_memory_equal(a->sig.cert_id, b->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
        assert_int_equal(a->der_len, b->der_len);
        assert_memory_equal(a->der, b->der, a->der_len);
        break;
    }
}

/* One of each message type, and a few variants. */
static size_t sample_msgs(p2p_gossip_msg *m)
{
    size_t n = 0;
    memset(m, 0, 16 * sizeof(*m));
    m[n].type = P2P_GOSSIP_PING, m[n].seq = 1, strcpy(m[n].id, "b"), strcpy(m[n].from, "a");
    m[n].live = 200, m[n].digest = 0x89abcdef, n++;
    m[n].type = P2P_GOSSIP_PING, m[n].seq = 0xffffffff, strcpy(m[n].from, "joiner"), m[n].live = 1, n++;
    m[n].type = P2P_GOSSIP_ACK, m[n].seq = 77, m[n].live = 0xffffffff, m[n].digest = 1, n++;
    m[n].type = P2P_GOSSIP_PING_REQ, m[n].seq = 9, strcpy(m[n].id, "c"), strcpy(m[n].addr, "192.168.0.7"),
    m[n].port = 1, n++;
    m[n].type = P2P_GOSSIP_PING_REQ, m[n].seq = 10, strcpy(m[n].id, "c6"), strcpy(m[n].addr, "::1"), m[n].port = 65535,
    n++;
    m[n].type = P2P_GOSSIP_NACK, m[n].seq = 9, n++;
    m[n].type = P2P_GOSSIP_ALIVE, m[n].node = sample_node(), n++;
    m[n].type = P2P_GOSSIP_SUSPECT, m[n].incarnation = 3, strcpy(m[n].id, "x"), strcpy(m[n].from, "y"), n++;
    m[n].type = P2P_GOSSIP_DEAD, m[n].incarnation = 4, strcpy(m[n].id, "x"), strcpy(m[n].from, "x"), n++;
    m[n].type = P2P_GOSSIP_SYNC_REQ, m[n].seq = 5, n++;
    m[n].type = P2P_GOSSIP_SYNC, m[n].seq = 5, n++;
    /* signed: an ALIVE, a leave; certificates */
    m[n].type = P2P_GOSSIP_ALIVE, m[n].node = sample_node(), m[n].node.sig.len = P2P_GOSSIP_SIG_MAX;
    memset(m[n].node.sig.cert_id, 0xc1, P2P_GOSSIP_CERT_ID_LEN), memset(m[n].node.sig.sig, 0x5a, P2P_GOSSIP_SIG_MAX), n++;
    m[n].type = P2P_GOSSIP_DEAD, m[n].incarnation = 5, strcpy(m[n].id, "x"), strcpy(m[n].from, "x"), m[n].sig.len = 70;
    memset(m[n].sig.cert_id, 0xc2, P2P_GOSSIP_CERT_ID_LEN), memset(m[n].sig.sig, 0x6b, 70), n++;
    m[n].type = P2P_GOSSIP_CERT_REQ, strcpy(m[n].id, "x"), memset(m[n].sig.cert_id, 0xc3, P2P_GOSSIP_CERT_ID_LEN), n++;
    static const uint8_t der[600] = {0x30, 0x82};
    m[n].type = P2P_GOSSIP_CERT, m[n].der = der, m[n].der_len = sizeof der;
    memset(m[n].sig.cert_id, 0xc4, P2P_GOSSIP_CERT_ID_LEN), n++;
    return n;
}

static size_t build(uint8_t *buf, size_t cap, const p2p_gossip_msg *m, size_t n)
{
    p2p_gossip_writer w;
    p2p_gossip_writer_init(&w, buf, cap);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(p2p_gossip_writer_add(&w, &m[i], cap), 0);
    assert_int_equal(w.count, n);
    return w.len;
}

static void test_round_trip_each(void **state)
{
    (void)state;
    p2p_gossip_msg m[16], out;
    size_t n = sample_msgs(m);
    for (size_t i = 0; i < n; i++) {
        uint8_t buf[2048];
        size_t len = build(buf, sizeof(buf), &m[i], 1);
        assert_int_equal(buf[0], P2P_GOSSIP_VERSION);
        assert_int_equal(buf[1], 1);
        p2p_gossip_reader r;
        assert_int_equal(p2p_gossip_reader_init(&r, buf, len, NULL), 0);
        assert_int_equal(p2p_gossip_reader_next(&r, &out, NULL), 1);
        msgs_equal(&m[i], &out);
        assert_int_equal(p2p_gossip_reader_next(&r, &out, NULL), 0);
    }
}

static void test_round_trip_compound(void **state)
{
    (void)state;
    p2p_gossip_msg m[16], out;
    size_t n = sample_msgs(m);
    uint8_t buf[4096];
    size_t len = build(buf, sizeof(buf), m, n);
    size_t count = 0;
    assert_int_equal(p2p_gossip_validate(buf, len, &count, NULL), 0);
    assert_int_equal(count, n);
    p2p_gossip_reader r;
    assert_int_equal(p2p_gossip_reader_init(&r, buf, len, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p2p_gossip_reader_next(&r, &out, NULL), 1);
        msgs_equal(&m[i], &out);
    }
    assert_int_equal(p2p_gossip_reader_next(&r, &out, NULL), 0);
}

static void test_largest_alive(void **state)
{
    (void)state;
    static char meta[P2P_GOSSIP_META_MAX];
    memset(meta, 'm', sizeof(meta));
    p2p_gossip_msg m, out;
    memset(&m, 0, sizeof(m));
    m.type = P2P_GOSSIP_ALIVE;
    memset(m.node.id, 'i', P2P_GOSSIP_ID_MAX);
    memset(m.node.role, 'r', P2P_GOSSIP_ROLE_MAX);
    m.node.port = 1;
    m.node.naddrs = P2P_GOSSIP_MAX_ADDRS;
    for (int i = 0; i < P2P_GOSSIP_MAX_ADDRS; i++)
        snprintf(m.node.addrs[i], sizeof(m.node.addrs[i]), "fd00::%x:%x", i + 1, i * 7 + 1);
    m.node.meta = meta;
    m.node.meta_len = sizeof(meta);
    m.node.sig.len = P2P_GOSSIP_SIG_MAX;
    static uint8_t frame[P2P_GOSSIP_MAX_FRAME];
    int n = p2p_gossip_encode_frame(&m, frame, sizeof(frame));
    assert_int_equal(n, P2P_GOSSIP_MAX_FRAME); /* the bound is exact */
    assert_int_equal(p2p_gossip_encode_frame(&m, frame, sizeof(frame) - 1), -ENOSPC);
    static uint8_t buf[P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME];
    size_t len = build(buf, sizeof(buf), &m, 1);
    p2p_gossip_reader r;
    assert_int_equal(p2p_gossip_reader_init(&r, buf, len, NULL), 0);
    assert_int_equal(p2p_gossip_reader_next(&r, &out, NULL), 1);
    msgs_equal(&m, &out);
    /* meta one byte over the limit is refused by the encoder */
    static char big[P2P_GOSSIP_META_MAX + 1];
    memset(big, 'm', sizeof(big));
    m.node.meta = big;
    m.node.meta_len = sizeof(big);
    assert_int_equal(p2p_gossip_encode_frame(&m, frame, sizeof(frame)), -EINVAL);
}

static void test_encoder_refuses(void **state)
{
    (void)state;
    uint8_t buf[1024];
    p2p_gossip_msg m;
    const char *why = NULL;

    p2p_gossip_node n = sample_node();
    assert_int_equal(p2p_gossip_node_check(&n, &why), 0);
    p2p_gossip_node b = n;
    strcpy(b.id, "bad id");
    assert_int_equal(p2p_gossip_node_check(&b, &why), -EINVAL);
    assert_string_equal(why, "invalid node id");
    b = n, b.id[0] = '\0';
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, b.port = 0;
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, b.naddrs = 0;
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, b.naddrs = 9;
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, strcpy(b.addrs[1], "10.0.0.256");
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, strcpy(b.addrs[0], "fe80::1%eth0"); /* zones are not carried */
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, strcpy(b.role, "wor ker");
    assert_int_equal(p2p_gossip_node_check(&b, NULL), -EINVAL);
    b = n, b.meta = "a\0b", b.meta_len = 3;
    assert_int_equal(p2p_gossip_node_check(&b, &why), -EINVAL);
    assert_string_equal(why, "NUL in meta");

    memset(&m, 0, sizeof(m));
    m.type = P2P_GOSSIP_PING;
    strcpy(m.id, "ok");
    assert_int_equal(p2p_gossip_encode_frame(&m, buf, sizeof(buf)), -EINVAL); /* no sender */
    strcpy(m.from, "me");
    assert_true(p2p_gossip_encode_frame(&m, buf, sizeof(buf)) > 0);
    m.type = P2P_GOSSIP_PING_REQ;
    strcpy(m.addr, "1.2.3.4");
    m.port = 0;
    assert_int_equal(p2p_gossip_encode_frame(&m, buf, sizeof(buf)), -EINVAL);
    m.port = 5;
    strcpy(m.addr, "host.example");
    assert_int_equal(p2p_gossip_encode_frame(&m, buf, sizeof(buf)), -EINVAL);
    m.type = P2P_GOSSIP_SUSPECT;
    m.from[0] = '\0';
    assert_int_equal(p2p_gossip_encode_frame(&m, buf, sizeof(buf)), -EINVAL);
    m.type = (p2p_gossip_type)99;
    assert_int_equal(p2p_gossip_encode_frame(&m, buf, sizeof(buf)), -EINVAL);

    assert_true(p2p_gossip_id_valid("a"));
    assert_true(p2p_gossip_id_valid("node-01.dc_2"));
    assert_false(p2p_gossip_id_valid(""));
    assert_false(p2p_gossip_id_valid("n/1"));
    char id64[65];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    assert_false(p2p_gossip_id_valid(id64));
    id64[63] = '\0';
    assert_true(p2p_gossip_id_valid(id64));
    assert_true(p2p_gossip_role_valid(""));

    char canon[P2P_GOSSIP_ADDRSTRLEN];
    assert_int_equal(p2p_gossip_addr_canon("FD00:0:0::01", canon), 0);
    assert_string_equal(canon, "fd00::1");
    assert_int_equal(p2p_gossip_addr_canon("01.2.3.4", canon), -EINVAL);
}

static void test_every_truncation_rejected(void **state)
{
    (void)state;
    p2p_gossip_msg m[16];
    size_t n = sample_msgs(m);
    uint8_t buf[4096];
    size_t len = build(buf, sizeof(buf), m, n);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, buf, cut);
        assert_true(p2p_gossip_validate(copy, cut, NULL, NULL) < 0);
        free(copy);
    }
    /* and every single-frame packet's truncations too */
    for (size_t i = 0; i < n; i++) {
        size_t l1 = build(buf, sizeof(buf), &m[i], 1);
        for (size_t cut = 0; cut < l1; cut++)
            assert_true(p2p_gossip_validate(buf, cut, NULL, NULL) < 0);
    }
}

static void test_malformed_rejected(void **state)
{
    (void)state;
    uint8_t buf[4096];
    p2p_gossip_msg m[16];
    size_t n = sample_msgs(m);
    size_t len = build(buf, sizeof(buf), m, n);
    const char *why = NULL;

    /* trailing garbage */
    buf[len] = 0;
    assert_int_equal(p2p_gossip_validate(buf, len + 1, NULL, &why), -EBADMSG);
    assert_string_equal(why, "trailing bytes");
    /* count larger / smaller than the frames present */
    buf[1] = (uint8_t)(n + 1);
    assert_int_equal(p2p_gossip_validate(buf, len, NULL, NULL), -EBADMSG);
    buf[1] = (uint8_t)(n - 1);
    assert_int_equal(p2p_gossip_validate(buf, len, NULL, NULL), -EBADMSG);
    buf[1] = 0;
    assert_int_equal(p2p_gossip_validate(buf, len, NULL, &why), -EBADMSG);
    assert_string_equal(why, "no frames");
    buf[1] = (uint8_t)n;
    buf[0] = 1; /* version 1: unsigned records, refused */
    assert_int_equal(p2p_gossip_validate(buf, len, NULL, NULL), -EPROTONOSUPPORT);
    buf[0] = P2P_GOSSIP_VERSION;
    assert_int_equal(p2p_gossip_validate(buf, len, NULL, NULL), 0);
    assert_int_equal(p2p_gossip_validate(NULL, 0, NULL, NULL), -EBADMSG);
    static uint8_t huge[P2P_GOSSIP_MAX_PACKET + 1];
    memcpy(huge, buf, len);
    assert_int_equal(p2p_gossip_validate(huge, sizeof(huge), NULL, NULL), -EBADMSG);

    /* Hand-made frames, each with one defect. */
    struct {
        const char *name;
        uint8_t bytes[64];
        size_t len;
    } bad[] = {
        {"type 0", {2, 1, 0, 0, 4, 0, 0, 0, 1}, 9},
        {"ack body too long", {2, 1, 2, 0, 13, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9}, 18},
        {"ack body too short", {2, 1, 2, 0, 11, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}, 16},
        {"nack body too long", {2, 1, 4, 0, 5, 0, 0, 0, 1, 9}, 10},
        {"ping empty sender", {2, 1, 1, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1}, 19},
        {"ping no view", {2, 1, 1, 0, 7, 0, 0, 0, 1, 0, 1, 'a'}, 12},
        {"ping id with space", {2, 1, 1, 0, 17, 0, 0, 0, 1, 1, ' ', 2, 'a', 'b', 0, 0, 0, 1, 0, 0, 0, 1}, 22},
        {"ping id len 64", {2, 1, 1, 0, 6, 0, 0, 0, 1, 64, 0}, 11},
        {"ping_req port 0", {2, 1, 3, 0, 13, 0, 0, 0, 1, 1, 'c', 4, 1, 2, 3, 4, 0, 0}, 18},
        {"ping_req family 5", {2, 1, 3, 0, 13, 0, 0, 0, 1, 1, 'c', 5, 1, 2, 3, 4, 0, 1}, 18},
        {"ping_req empty target", {2, 1, 3, 0, 12, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4, 0, 1}, 17},
        {"alive 0 addrs", {2, 1, 5, 0, 13, 0, 0, 0, 1, 1, 'a', 0, 1, 0, 0, 0, 0, 0}, 18},
        {"alive 9 addrs", {2, 1, 5, 0, 13, 0, 0, 0, 1, 1, 'a', 0, 1, 9, 0, 0, 0, 0}, 18},
        {"alive port 0", {2, 1, 5, 0, 17, 0, 0, 0, 1, 1, 'a', 0, 0, 1, 4, 1, 2, 3, 4, 0, 0, 0}, 22},
        {"alive meta NUL", {2, 1, 5, 0, 18, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 0, 0, 1, 0}, 23},
        {"alive meta len 8193", {2, 1, 5, 0, 17, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 0, 0x20, 1}, 22},
        {"alive bad role", {2, 1, 5, 0, 18, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 1, '/', 0, 0}, 23},
        {"suspect no from", {2, 1, 6, 0, 7, 0, 0, 0, 1, 1, 'a', 0}, 12},
        {"dead from len beyond body", {2, 1, 7, 0, 8, 0, 0, 0, 1, 1, 'a', 2, 'b'}, 13},
        {"frame body beyond packet", {2, 1, 2, 0, 40, 0, 0, 0, 1}, 9},
        {"unknown frame truncated", {2, 1, 200, 0, 5, 1, 2}, 7},
        {"alive sig_len 73", {2, 1, 5, 0, 27, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                              0, 0, 73}, 30},
        {"alive sig beyond body", {2, 1, 5, 0, 28, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                   0, 0, 0, 2, 9}, 31},
        {"alive without sig", {2, 1, 5, 0, 17, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 0, 0, 0}, 22},
        {"signed dead from another", {2, 1, 7, 0, 19, 0, 0, 0, 1, 1, 'a', 1, 'b', 0, 0, 0, 0, 0, 0, 0, 0, 1, 7}, 22},
        {"cert_req empty id", {2, 1, 10, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 14},
        {"cert der_len 0", {2, 1, 11, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 15},
        {"cert der_len 2049", {2, 1, 11, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x01, 0x30}, 16},
        {"cert der beyond body", {2, 1, 11, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x30}, 16},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = p2p_gossip_validate(bad[i].bytes, bad[i].len, NULL, NULL);
        if (rc != -EBADMSG)
            fail_msg("%s: accepted (rc %d)", bad[i].name, rc);
    }
    /* Sanity: the fixed versions of a few of them are fine. */
 uint8_t ok_alive[] = {2, 1, 5, 0, 27, 0, 0, 0, 1, 1, 'a', 0, 1, 1, 4, 1, 2, 3, 4, 0, 0, 1, '{',
                          0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(p2p_gossip_validate(ok_alive, sizeof(ok_alive), NULL, NULL), 0);
    uint8_t ok_ack[] = {2, 1, 2, 0, 12, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    assert_int_equal(p2p_gossip_validate(ok_ack, sizeof(ok_ack), NULL, NULL), 0);
}

static void test_unknown_types_skipped(void **state)
{
    (void)state;
    /* SYNC_REQ, unknown type 0x42 with a 3-byte body, unknown empty 0xff, NACK */
    uint8_t buf[] = {2, 4, 8, 0, 4, 0, 0, 0, 7, 0x42, 0, 3, 'a', 'b', 'c', 0xff, 0, 0, 4, 0, 4, 0, 0, 0, 8};
    size_t n = 99;
    assert_int_equal(p2p_gossip_validate(buf, sizeof(buf), &n, NULL), 0);
    assert_int_equal(n, 2);
    p2p_gossip_reader r;
    p2p_gossip_msg m;
    assert_int_equal(p2p_gossip_reader_init(&r, buf, sizeof(buf), NULL), 0);
    assert_int_equal(p2p_gossip_reader_next(&r, &m, NULL), 1);
    assert_int_equal(m.type, P2P_GOSSIP_SYNC_REQ);
    assert_int_equal(m.seq, 7);
    assert_int_equal(p2p_gossip_reader_next(&r, &m, NULL), 1);
    assert_int_equal(m.type, P2P_GOSSIP_NACK);
    assert_int_equal(m.seq, 8);
    assert_int_equal(p2p_gossip_reader_next(&r, &m, NULL), 0);
    /* only unknown frames: valid, nothing to apply */
    uint8_t only[] = {2, 1, 12, 0, 0}; /* the first unknown type */
    assert_int_equal(p2p_gossip_validate(only, sizeof(only), &n, NULL), 0);
    assert_int_equal(n, 0);
}

static void test_garbage_and_mutations(void **state)
{
    (void)state;
    uint8_t buf[4096];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = rnd() % 64;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rnd();
        if (len >= 2 && (iter & 1)) { /* make it through the header half the time */
            p[0] = P2P_GOSSIP_VERSION;
            p[1] = (uint8_t)(1 + rnd() % 3);
        }
        size_t n;
        int rc = p2p_gossip_validate(p, len, &n, NULL);
        assert_true(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT);
        free(p);
    }
    /* Mutations of a valid compound packet: every outcome is total, and an
     * accepted mutant re-encodes to a packet that decodes to the same thing. */
    p2p_gossip_msg m[16];
    size_t n = sample_msgs(m);
    size_t len = build(buf, sizeof(buf), m, n);
    for (int iter = 0; iter < 50000; iter++) {
        uint8_t mut[4096];
        memcpy(mut, buf, len);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++)
            mut[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        if (p2p_gossip_validate(mut, len, NULL, NULL) != 0)
            continue;
        p2p_gossip_reader r;
        p2p_gossip_msg out[P2P_GOSSIP_MAX_FRAMES];
        size_t k = 0;
        assert_int_equal(p2p_gossip_reader_init(&r, mut, len, NULL), 0);
        while (p2p_gossip_reader_next(&r, &out[k], NULL) == 1)
            k++;
        uint8_t again[8192];
        size_t l2 = build(again, sizeof(again), out, k);
        assert_int_equal(p2p_gossip_reader_init(&r, again, l2, NULL), 0);
        for (size_t i = 0; i < k; i++) {
            p2p_gossip_msg x;
            assert_int_equal(p2p_gossip_reader_next(&r, &x, NULL), 1);
            msgs_equal(&out[i], &x);
        }
    }
}

static void test_writer_budget(void **state)
{
    (void)state;
    uint8_t buf[300];
    p2p_gossip_writer w;
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    p2p_gossip_msg m;
    memset(&m, 0, sizeof(m));
    m.type = P2P_GOSSIP_NACK;
    /* each NACK frame is 7 bytes; budget 100 => (100 - 2) / 7 = 14 frames */
    int added = 0;
    while (p2p_gossip_writer_add(&w, &m, 100) == 0)
        added++;
    assert_int_equal(added, 14);
    assert_int_equal(w.len, 2 + 14 * 7);
    size_t before = w.len;
    assert_int_equal(p2p_gossip_writer_add(&w, &m, 100), -ENOSPC);
    assert_int_equal(w.len, before);
    assert_int_equal(buf[1], 14);
    assert_int_equal(p2p_gossip_validate(buf, w.len, NULL, NULL), 0);
    /* 255 frames at most */
    static uint8_t big[4096];
    p2p_gossip_writer_init(&w, big, sizeof(big));
    added = 0;
    while (p2p_gossip_writer_add(&w, &m, sizeof(big)) == 0)
        added++;
    assert_int_equal(added, P2P_GOSSIP_MAX_FRAMES);
    assert_int_equal(p2p_gossip_validate(big, w.len, NULL, NULL), 0);
}

/* ---- queue ---- */

/* A DEAD frame about `id`, padded via the from id to reach a given size. */
static size_t dead_frame(uint8_t *out, const char *id, uint32_t inc, size_t from_len)
{
    p2p_gossip_msg m;
    memset(&m, 0, sizeof(m));
    m.type = P2P_GOSSIP_DEAD;
    m.incarnation = inc;
    strcpy(m.id, id);
    memset(m.from, 'f', from_len);
    int n = p2p_gossip_encode_frame(&m, out, 512);
    assert_true(n > 0);
    return (size_t)n;
}

/* Decodes w's frames and returns the subject ids, space separated. */
static void ids_of(const p2p_gossip_writer *w, char *out, size_t cap)
{
    p2p_gossip_reader r;
    p2p_gossip_msg m;
    out[0] = '\0';
    assert_int_equal(p2p_gossip_reader_init(&r, w->buf, w->len, NULL), 0);
    while (p2p_gossip_reader_next(&r, &m, NULL) == 1) {
        if (out[0])
            strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, m.type == P2P_GOSSIP_ALIVE ? m.node.id : m.id, cap - strlen(out) - 1);
    }
}

static void test_queue_order_and_limit(void **state)
{
    (void)state;
    p2p_gossip_queue *q = p2p_gossip_queue_new();
    uint8_t f[512], buf[2048];
    char ids[256];
    p2p_gossip_writer w;
    /* a, b, c equal size: newest first */
    p2p_gossip_queue_push(q, "a", f, dead_frame(f, "a", 1, 10));
    p2p_gossip_queue_push(q, "b", f, dead_frame(f, "b", 1, 10));
    p2p_gossip_queue_push(q, "c", f, dead_frame(f, "c", 1, 10));
    assert_int_equal(p2p_gossip_queue_len(q), 3);
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 3, false), 3);
    ids_of(&w, ids, sizeof(ids));
    assert_string_equal(ids, "c b a");
    /* d is new (0 transmits): it goes first, then the others */
    p2p_gossip_queue_push(q, "d", f, dead_frame(f, "d", 1, 10));
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 3, false), 4);
    ids_of(&w, ids, sizeof(ids));
    assert_string_equal(ids, "d c b a");
    assert_int_equal(p2p_gossip_queue_transmits(q, "a"), 2);
    assert_int_equal(p2p_gossip_queue_transmits(q, "d"), 1);
    /* third transmit reaches the limit of 3: a, b, c are dropped */
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 3, false), 4);
    assert_int_equal(p2p_gossip_queue_len(q), 1);
    assert_int_equal(p2p_gossip_queue_transmits(q, "a"), -1);
    assert_int_equal(p2p_gossip_queue_transmits(q, "d"), 2);
    /* larger first within a tier */
    p2p_gossip_queue_push(q, "small", f, dead_frame(f, "small", 1, 1));
    p2p_gossip_queue_push(q, "large", f, dead_frame(f, "large", 1, 40));
    p2p_gossip_queue_push(q, "mid", f, dead_frame(f, "mid", 1, 20));
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    p2p_gossip_queue_fill(q, &w, 1400, 3, false);
    ids_of(&w, ids, sizeof(ids));
    assert_string_equal(ids, "large mid small d");
    assert_int_equal(p2p_gossip_queue_len(q), 3); /* d reached 3 */
    p2p_gossip_queue_remove(q, "mid");
    assert_int_equal(p2p_gossip_queue_transmits(q, "mid"), -1);
    p2p_gossip_queue_clear(q);
    assert_int_equal(p2p_gossip_queue_len(q), 0);
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 3, false), 0);
    p2p_gossip_queue_free(q);
}

static void test_queue_replacement(void **state)
{
    (void)state;
    p2p_gossip_queue *q = p2p_gossip_queue_new();
    uint8_t f[512], buf[2048];
    p2p_gossip_writer w;
    p2p_gossip_queue_push(q, "x", f, dead_frame(f, "x", 1, 5));
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    p2p_gossip_queue_fill(q, &w, 1400, 10, false);
    assert_int_equal(p2p_gossip_queue_transmits(q, "x"), 1);
    /* a newer message about x replaces the old one and restarts its count */
    p2p_gossip_queue_push(q, "x", f, dead_frame(f, "x", 2, 5));
    assert_int_equal(p2p_gossip_queue_len(q), 1);
    assert_int_equal(p2p_gossip_queue_transmits(q, "x"), 0);
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 10, false), 1);
    p2p_gossip_reader r;
    p2p_gossip_msg m;
    assert_int_equal(p2p_gossip_reader_init(&r, buf, w.len, NULL), 0);
    assert_int_equal(p2p_gossip_reader_next(&r, &m, NULL), 1);
    assert_int_equal(m.incarnation, 2);
    p2p_gossip_queue_free(q);
}

static void test_queue_budget(void **state)
{
    (void)state;
    p2p_gossip_queue *q = p2p_gossip_queue_new();
    uint8_t f[512], buf[4096];
    p2p_gossip_writer w;
    char key[16];
    size_t flen = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "n%03d", i);
        flen = dead_frame(f, key, 1, 30);
        p2p_gossip_queue_push(q, key, f, flen);
    }
    /* a budget of 500 bytes holds floor((500 - 2) / flen) frames */
    size_t fit = (500 - P2P_GOSSIP_HEADER_LEN) / flen;
    size_t total = 0, packets = 0;
    while (p2p_gossip_queue_len(q)) {
        p2p_gossip_writer_init(&w, buf, sizeof(buf));
        size_t got = p2p_gossip_queue_fill(q, &w, 500, 2, false);
        assert_true(got >= 1 && got <= fit);
        assert_true(w.len <= 500);
        assert_int_equal(p2p_gossip_validate(buf, w.len, NULL, NULL), 0);
        total += got;
        packets++;
    }
    assert_int_equal(total, 200); /* 100 entries x limit 2 */
    assert_int_equal(packets, (200 + fit - 1) / fit);
    /* a packet already holding a probe keeps its room for it */
    flen = dead_frame(f, "k", 1, 30);
    p2p_gossip_queue_push(q, "k", f, flen);
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    p2p_gossip_msg ping;
    memset(&ping, 0, sizeof(ping));
    ping.type = P2P_GOSSIP_PING;
    strcpy(ping.from, "me");
    assert_int_equal(p2p_gossip_writer_add(&w, &ping, 500), 0);
    size_t room = 500 - w.len;
    assert_int_equal(p2p_gossip_queue_fill(q, &w, w.len + flen - 1, 2, false), 0); /* one byte short */
    assert_int_equal(p2p_gossip_queue_transmits(q, "k"), 0);
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 500, 2, false), room >= flen ? 1 : 0);
    p2p_gossip_queue_free(q);
}

static void test_queue_oversize(void **state)
{
    (void)state;
    p2p_gossip_queue *q = p2p_gossip_queue_new();
    static char meta[3000];
    memset(meta, 'z', sizeof(meta));
    p2p_gossip_msg m;
    memset(&m, 0, sizeof(m));
    m.type = P2P_GOSSIP_ALIVE;
    m.node = sample_node();
    m.node.meta = meta;
    m.node.meta_len = sizeof(meta);
    static uint8_t f[P2P_GOSSIP_MAX_FRAME], buf[P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_MAX_FRAME];
    int flen = p2p_gossip_encode_frame(&m, f, sizeof(f));
    assert_true(flen > 1400);
    p2p_gossip_queue_push(q, m.node.id, f, (size_t)flen);
    uint8_t small[512];
    p2p_gossip_queue_push(q, "s", small, dead_frame(small, "s", 1, 3));
    p2p_gossip_writer w;
    /* piggyback mode: the big one is skipped, never sent */
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 5, false), 1);
    assert_int_equal(p2p_gossip_queue_transmits(q, m.node.id), 0);
    /* gossip mode: it is first in order (fewest transmits) and goes alone */
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 5, true), 1);
    assert_int_equal(w.len, P2P_GOSSIP_HEADER_LEN + (size_t)flen);
    assert_int_equal(p2p_gossip_validate(buf, w.len, NULL, NULL), 0);
    assert_int_equal(p2p_gossip_queue_transmits(q, m.node.id), 1);
    assert_int_equal(p2p_gossip_queue_transmits(q, "s"), 1);
    /* both at 1 now; the big one is first (larger) and goes alone again */
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 5, true), 1);
    assert_int_equal(p2p_gossip_queue_transmits(q, m.node.id), 2);
    /* then the small one, which is behind */
    p2p_gossip_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(p2p_gossip_queue_fill(q, &w, 1400, 5, true), 1);
    assert_int_equal(p2p_gossip_queue_transmits(q, "s"), 2);
    assert_int_equal(w.len, P2P_GOSSIP_HEADER_LEN + dead_frame(small, "s", 1, 3));
    p2p_gossip_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_each),
        cmocka_unit_test(test_round_trip_compound),
        cmocka_unit_test(test_largest_alive),
        cmocka_unit_test(test_encoder_refuses),
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_malformed_rejected),
        cmocka_unit_test(test_unknown_types_skipped),
        cmocka_unit_test(test_garbage_and_mutations),
        cmocka_unit_test(test_writer_budget),
        cmocka_unit_test(test_queue_order_and_limit),
        cmocka_unit_test(test_queue_replacement),
        cmocka_unit_test(test_queue_budget),
        cmocka_unit_test(test_queue_oversize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
