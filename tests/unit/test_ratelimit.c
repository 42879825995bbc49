/*
 * test_ratelimit.c — unit tests for src/auth/ratelimit.c: token bucket
 * arithmetic (burst, refill, exact retry-after values, idle cap, independence
 * of classes and identities, requests costing several tokens), the bounded table under a flood of identities
 * and its eviction choice, and client address resolution through trusted
 * proxies (X-Forwarded-For, CIDR v4/v6, IPv4-mapped addresses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/ratelimit.h"

static p2p_ratelimit *make(uint32_t rate, uint32_t burst, size_t capacity)
{
    p2p_ratelimit_opts o;
    p2p_ratelimit_opts_default(&o);
    for (int c = 0; c < P2P_RL_NCLASSES; c++)
        o.rates[c] = (p2p_ratelimit_rate){rate, burst};
    o.capacity = capacity;
    p2p_ratelimit *rl = NULL;
    assert_int_equal(p2p_ratelimit_new(&o, &rl), 0);
    return rl;
}

/* Calls `n` times at `now`; returns how many were allowed. */
static int calls(p2p_ratelimit *rl, const char *id, int cls, uint64_t now, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        uint32_t ra = 99;
        int rc = p2p_ratelimit_check(rl, id, cls, now, &ra);
        assert_true(rc == 0 || rc == 1);
        assert_true(rc == 1 ? ra == 0 : ra >= 1);
        ok += rc;
    }
    return ok;
}

static uint32_t retry_after(p2p_ratelimit *rl, const char *id, int cls, uint64_t now)
{
    uint32_t ra = 0;
    assert_int_equal(p2p_ratelimit_check(rl, id, cls, now, &ra), 0);
    return ra;
}

static void test_options(void **state)
{
    (void)state;
    p2p_ratelimit_opts o;
    p2p_ratelimit_opts_default(&o);
    assert_int_equal(o.rates[P2P_RL_RPC].per_minute, 100);
    assert_int_equal(o.rates[P2P_RL_RPC].burst, 20);
    assert_int_equal(o.rates[P2P_RL_HEALTH].per_minute, 300);
    assert_int_equal(o.rates[P2P_RL_HEALTH].burst, 50);
    assert_int_equal(o.rates[P2P_RL_OTHER].per_minute, 200);
    assert_int_equal(o.rates[P2P_RL_OTHER].burst, 30);
    assert_int_equal(o.rates[P2P_RL_NODE_RPC].per_minute, 6000);
    assert_int_equal(o.rates[P2P_RL_NODE_RPC].burst, 1000);
    assert_int_equal(o.rates[P2P_RL_NODE_OTHER].per_minute, 1200);
    assert_int_equal(o.rates[P2P_RL_NODE_OTHER].burst, 200);
    assert_int_equal(o.capacity, 65536);

    p2p_ratelimit *rl = NULL;
    assert_int_equal(p2p_ratelimit_new(&o, &rl), 0);
    assert_int_equal(p2p_ratelimit_capacity(rl), 65536);
    assert_int_equal(p2p_ratelimit_count(rl), 0);
    assert_true(p2p_ratelimit_memory(rl) <= 65536 * 24 + 256);
    p2p_ratelimit_free(rl);

    p2p_ratelimit_opts b = o;
    b.rates[P2P_RL_HEALTH].per_minute = 0;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), -EINVAL);
    b = o;
    b.rates[P2P_RL_OTHER].burst = 0;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), -EINVAL);
    b = o;
    b.rates[P2P_RL_RPC].burst = P2P_RL_MAX_BURST + 1;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), -EINVAL);
    b = o;
    b.rates[P2P_RL_RPC].per_minute = P2P_RL_MAX_RATE + 1;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), -EINVAL);
    b = o;
    b.capacity = P2P_RL_MIN_CAPACITY - 1;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), -EINVAL);
    b.capacity = (size_t)P2P_RL_MAX_CAPACITY + 1;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), -EINVAL);
    assert_int_equal(p2p_ratelimit_new(NULL, &rl), -EINVAL);
    b = o;
    b.capacity = 1000;
    assert_int_equal(p2p_ratelimit_new(&b, &rl), 0);
    assert_int_equal(p2p_ratelimit_capacity(rl), 1024);
    b.capacity = 0;
    p2p_ratelimit_free(rl);
    assert_int_equal(p2p_ratelimit_new(&b, &rl), 0);
    assert_int_equal(p2p_ratelimit_capacity(rl), P2P_RL_DEFAULT_CAPACITY);

    /* bad check arguments */
    assert_int_equal(p2p_ratelimit_check(rl, NULL, P2P_RL_RPC, 0, NULL), -EINVAL);
    assert_int_equal(p2p_ratelimit_check(rl, "", P2P_RL_RPC, 0, NULL), -EINVAL);
    assert_int_equal(p2p_ratelimit_check(rl, "a", -1, 0, NULL), -EINVAL);
    assert_int_equal(p2p_ratelimit_check(rl, "a", P2P_RL_NCLASSES, 0, NULL), -EINVAL);
    assert_int_equal(p2p_ratelimit_check(NULL, "a", P2P_RL_RPC, 0, NULL), -EINVAL);
    assert_int_equal(p2p_ratelimit_check(rl, "a", P2P_RL_RPC, 0, NULL), 1); /* retry_after may be NULL */
    p2p_ratelimit_free(rl);
    p2p_ratelimit_free(NULL);
}

static void test_burst_then_refill_defaults(void **state)
{
    (void)state;
    p2p_ratelimit_opts o;
    p2p_ratelimit_opts_default(&o);
    o.capacity = 1024;
    p2p_ratelimit *rl = NULL;
    assert_int_equal(p2p_ratelimit_new(&o, &rl), 0);
    uint64_t t = 5000000;

    /* rpc: 100/min = one token per 600 ms, burst 20 */
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_RPC, t, 25), 20);
    assert_int_equal(retry_after(rl, "10.0.0.1", P2P_RL_RPC, t), 1);
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_RPC, t + 599, 1), 0);
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_RPC, t + 600, 2), 1);
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_RPC, t + 6600, 20), 10); /* 6000 ms -> 10 tokens */
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_RPC, t + 6600 + 60000, 200), 20); /* a minute: capped at burst */

    /* health: 300/min burst 50; other: 200/min burst 30 */
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_HEALTH, t, 60), 50);
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_HEALTH, t + 1000, 60), 5);
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_OTHER, t, 40), 30);
    assert_int_equal(calls(rl, "10.0.0.1", P2P_RL_OTHER, t + 1500, 40), 5);
    p2p_ratelimit_free(rl);
}

static void test_retry_after_exact(void **state)
{
    (void)state;
    /* 1/min, burst 1: one token per 60 000 ms */
    p2p_ratelimit *rl = make(1, 1, 64);
    uint64_t t = 1000;
    assert_int_equal(calls(rl, "a", P2P_RL_RPC, t, 1), 1);
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t), 60);
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 1), 60);   /* 59 999 ms -> 60 s */
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 999), 60); /* 59 001 ms */
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 1000), 59);
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 30000), 30);
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 58999), 2); /* 1001 ms */
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 59000), 1); /* 1000 ms */
    assert_int_equal(retry_after(rl, "a", P2P_RL_RPC, t + 59999), 1); /* 1 ms */
    assert_int_equal(calls(rl, "a", P2P_RL_RPC, t + 60000, 1), 1);
    p2p_ratelimit_free(rl);

    /* 7/min: a token every 8571.43 ms -> 8572 ms -> 9 s */
    rl = make(7, 2, 64);
    assert_int_equal(calls(rl, "b", P2P_RL_OTHER, 0, 3), 2);
    assert_int_equal(retry_after(rl, "b", P2P_RL_OTHER, 0), 9);
    assert_int_equal(retry_after(rl, "b", P2P_RL_OTHER, 8571), 1); /* 1 ms short */
    assert_int_equal(calls(rl, "b", P2P_RL_OTHER, 8572, 2), 1);    /* one token, fractions kept */
    assert_int_equal(calls(rl, "b", P2P_RL_OTHER, 17143, 2), 1);  /* 2 tokens exactly at 17142.86 ms */
    p2p_ratelimit_free(rl);

    /* very high rate: a token every 0.06 ms; never less than 1 s */
    rl = make(P2P_RL_MAX_RATE, 1, 64);
    assert_int_equal(calls(rl, "c", P2P_RL_RPC, 0, 2), 1);
    assert_int_equal(retry_after(rl, "c", P2P_RL_RPC, 0), 1);
    assert_int_equal(calls(rl, "c", P2P_RL_RPC, 1, 100), 1); /* capped at burst 1 */
    p2p_ratelimit_free(rl);
}

/* A request of cost N (a JSON-RPC batch) takes N tokens or nothing. */
static void test_cost(void **state)
{
    (void)state;
    p2p_ratelimit *rl = make(60, 20, 64); /* one token per second */
    uint32_t ra = 99;
    uint64_t t = 5000;
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 0, t, &ra), -EINVAL);
    assert_int_equal(p2p_ratelimit_take(NULL, "a", P2P_RL_RPC, 1, t, &ra), -EINVAL);
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_NCLASSES, 1, t, &ra), -EINVAL);
    /* more than the burst can never be paid: E2BIG, nothing taken, nothing stored */
    ra = 99;
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 21, t, &ra), -E2BIG);
    assert_int_equal(ra, 0);
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 1000, t, NULL), -E2BIG);
    assert_int_equal(p2p_ratelimit_count(rl), 0);
    /* exactly the burst is paid once from a full bucket */
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 20, t, &ra), 1);
    assert_int_equal(ra, 0);
    assert_int_equal(p2p_ratelimit_count(rl), 1);
    assert_int_equal(calls(rl, "a", P2P_RL_RPC, t, 1), 0);
    /* refused whole: 5 tokens back after 5 s; cost 6 waits 1 s more and takes nothing */
    t += 5000;
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 6, t, &ra), 0);
    assert_int_equal(ra, 1);
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 20, t, &ra), 0);
    assert_int_equal(ra, 15);
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 5, t, &ra), 1); /* the 5 were still there */
    assert_int_equal(calls(rl, "a", P2P_RL_RPC, t, 1), 0);
    /* fractions count: 2.5 s later 2.5 tokens; cost 3 needs 500 ms more (rounded up to 1 s) */
    t += 2500;
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 3, t, &ra), 0);
    assert_int_equal(ra, 1);
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_RPC, 2, t, &ra), 1);
    t += 500; /* 0.5 + 0.5 = 1 token */
    assert_int_equal(calls(rl, "a", P2P_RL_RPC, t, 2), 1);
    /* cost is per class and identity: another identity and another class are untouched */
    assert_int_equal(p2p_ratelimit_take(rl, "b", P2P_RL_RPC, 20, t, &ra), 1);
    assert_int_equal(p2p_ratelimit_take(rl, "a", P2P_RL_NODE_RPC, 20, t, &ra), 1);
    assert_int_equal(p2p_ratelimit_burst(rl, P2P_RL_RPC), 20);
    assert_int_equal(p2p_ratelimit_burst(rl, P2P_RL_NCLASSES), 0);
    p2p_ratelimit_free(rl);

    /* the largest cost at the largest burst does not overflow the unit arithmetic */
    rl = make(1, P2P_RL_MAX_BURST, 64);
    assert_int_equal(p2p_ratelimit_take(rl, "big", P2P_RL_RPC, P2P_RL_MAX_BURST, 0, &ra), 1);
    assert_int_equal(p2p_ratelimit_take(rl, "big", P2P_RL_RPC, P2P_RL_MAX_BURST, 0, &ra), 0);
    assert_int_equal(ra, (uint32_t)P2P_RL_MAX_BURST * 60u); /* 1 token a minute */
    assert_int_equal(p2p_ratelimit_take(rl, "big", P2P_RL_RPC, P2P_RL_MAX_BURST + 1, 0, &ra), -E2BIG);
    p2p_ratelimit_free(rl);
}

static void test_idle_caps_and_clock(void **state)
{
    (void)state;
    p2p_ratelimit *rl = make(60, 10, 64);
    assert_int_equal(calls(rl, "x", P2P_RL_RPC, 1000, 10), 10);
    /* a day idle: exactly burst again */
    assert_int_equal(calls(rl, "x", P2P_RL_RPC, 1000 + 86400000ull, 50), 10);
    /* an absurd jump: no overflow, still burst */
    assert_int_equal(calls(rl, "x", P2P_RL_RPC, UINT64_MAX / 2, 50), 10);
    assert_int_equal(calls(rl, "x", P2P_RL_RPC, UINT64_MAX, 50), 10);
    p2p_ratelimit_free(rl);

    /* the clock going backwards counts as no time: no refill, and later time is measured from the latest seen */
    rl = make(60, 2, 64);
    assert_int_equal(calls(rl, "y", P2P_RL_RPC, 100000, 3), 2);
    assert_int_equal(calls(rl, "y", P2P_RL_RPC, 1000, 1), 0);
    assert_int_equal(retry_after(rl, "y", P2P_RL_RPC, 50000), 1);
    assert_int_equal(calls(rl, "y", P2P_RL_RPC, 100999, 1), 0);
    assert_int_equal(calls(rl, "y", P2P_RL_RPC, 101000, 2), 1);
    p2p_ratelimit_free(rl);
}

static void test_independent_buckets(void **state)
{
    (void)state;
    p2p_ratelimit *rl = make(60, 3, 256);
    assert_int_equal(calls(rl, "alice", P2P_RL_RPC, 0, 10), 3);
    /* same identity, other classes: untouched */
    assert_int_equal(calls(rl, "alice", P2P_RL_HEALTH, 0, 10), 3);
    assert_int_equal(calls(rl, "alice", P2P_RL_OTHER, 0, 10), 3);
    /* other identities: untouched, including near-identical strings */
    assert_int_equal(calls(rl, "bob", P2P_RL_RPC, 0, 10), 3);
    assert_int_equal(calls(rl, "alice ", P2P_RL_RPC, 0, 10), 3);
    assert_int_equal(calls(rl, "Alice", P2P_RL_RPC, 0, 10), 3);
    assert_int_equal(p2p_ratelimit_count(rl), 6);
    /* and alice/rpc is still limited */
    assert_int_equal(calls(rl, "alice", P2P_RL_RPC, 500, 1), 0);
    assert_int_equal(calls(rl, "alice", P2P_RL_RPC, 1000, 2), 1);
    p2p_ratelimit_free(rl);
}

static void test_table_bound_under_flood(void **state)
{
    (void)state;
    /* capacity 1024; 10x that many one-shot identities, one per ms, while "busy" calls every 5 ms */
    p2p_ratelimit *rl = make(60, 5, 1024);
    size_t mem = p2p_ratelimit_memory(rl);
    struct mallinfo2 before = mallinfo2();
    char id[32];
    int busy_allowed = 0;
    uint64_t t = 0, last_busy = 0;
    for (int i = 0; i < 10 * 1024; i++, t++) {
        snprintf(id, sizeof(id), "198.51.%d.%d", (i >> 8) & 255, i & 255);
        assert_int_equal(calls(rl, id, P2P_RL_RPC, t, 1), 1); /* a fresh identity always gets its burst */
        if (t % 5 == 0) {
            busy_allowed += calls(rl, "busy-client", P2P_RL_RPC, t, 1);
            last_busy = t;
        }
        assert_true(p2p_ratelimit_count(rl) <= 1024);
    }
    struct mallinfo2 after = mallinfo2();
    assert_int_equal(before.uordblks, after.uordblks); /* checks never allocate */
    assert_int_equal(p2p_ratelimit_memory(rl), mem);
    assert_int_equal(p2p_ratelimit_count(rl), 1024);
    /* the busy client was limited exactly as if it had the table to itself:
     * burst 5, then one token per 1000 ms */
    assert_int_equal(busy_allowed, 5 + (int)(last_busy / 1000));
    assert_int_equal(calls(rl, "busy-client", P2P_RL_RPC, t, 1), 0);
    p2p_ratelimit_free(rl);
}

static void test_eviction_choice(void **state)
{
    (void)state;
    /* capacity 16 = one probe window: every key competes with every other */
    p2p_ratelimit *rl = make(1, 1, 16);
    char id[32];
    /* 15 one-shot identities at t=0 and one depleted client */
    for (int i = 0; i < 15; i++) {
        snprintf(id, sizeof(id), "oneshot-%d", i);
        assert_int_equal(calls(rl, id, P2P_RL_RPC, 0, 1), 1);
    }
    assert_int_equal(calls(rl, "limited", P2P_RL_RPC, 30000, 2), 1);
    assert_int_equal(p2p_ratelimit_count(rl), 16);
    /* 60 s later the one-shots are full again (equivalent to absent), "limited" is not:
     * a flood of newcomers displaces one-shots only */
    for (int i = 0; i < 15; i++) {
        snprintf(id, sizeof(id), "newcomer-%d", i);
        assert_int_equal(calls(rl, id, P2P_RL_RPC, 60000, 1), 1);
    }
    assert_int_equal(retry_after(rl, "limited", P2P_RL_RPC, 60000), 30);
    p2p_ratelimit_free(rl);

    /* all depleted: the fullest (here: the one depleted longest ago) goes first */
    rl = make(1, 1, 16);
    for (int i = 0; i < 16; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        assert_int_equal(calls(rl, id, P2P_RL_RPC, (uint64_t)i * 100, 1), 1);
    }
    assert_int_equal(calls(rl, "newcomer", P2P_RL_RPC, 2000, 1), 1);
    assert_int_equal(calls(rl, "d1", P2P_RL_RPC, 2000, 1), 0);  /* kept */
    assert_int_equal(calls(rl, "d15", P2P_RL_RPC, 2000, 1), 0); /* kept */
    assert_int_equal(calls(rl, "d0", P2P_RL_RPC, 2000, 1), 1);  /* was evicted: fresh bucket */
    p2p_ratelimit_free(rl);
}

/* ---- client address -------------------------------------------------------- */

static const char *const TRUSTED[] = {"10.0.0.0/8", "192.168.1.1", "172.16.0.0/12", "fd00::/8", "::1", NULL};

static void expect_ip(const char *peer, const char *xff, const char *const *trusted, const char *want)
{
    char out[64];
    int rc = p2p_ratelimit_client_ip(peer, xff, trusted, out, sizeof(out));
    if (rc != 0 || strcmp(out, want) != 0)
        fail_msg("peer %s xff '%s': rc %d '%s', expected '%s'", peer, xff ? xff : "(null)", rc, rc ? "" : out, want);
}

/* Enrollment classes: defaults, peek never takes nor stores, and the
 * failure-per-address / success-per-token split the PKI component builds on. */
static void test_enroll_classes_and_peek(void **state)
{
    (void)state;
    p2p_ratelimit_opts o;
    p2p_ratelimit_opts_default(&o);
    assert_int_equal(o.rates[P2P_RL_ENROLL_TOKEN].per_minute, 6000);
    assert_int_equal(o.rates[P2P_RL_ENROLL_TOKEN].burst, 1000);
    assert_int_equal(o.rates[P2P_RL_ENROLL_FAIL].per_minute, 30);
    assert_int_equal(o.rates[P2P_RL_ENROLL_FAIL].burst, 10);
    assert_int_equal(o.rates[P2P_RL_CA_CERT].per_minute, 60000);
    assert_int_equal(o.rates[P2P_RL_CA_CERT].burst, 5000);
    o.capacity = 1024;
    p2p_ratelimit *rl = NULL;
    assert_int_equal(p2p_ratelimit_new(&o, &rl), 0);
    uint64_t t = 1000000;
    uint32_t ra = 77;

    /* peek on an unknown identity: allowed, nothing stored */
    assert_int_equal(p2p_ratelimit_peek(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_FAIL, 1, t, &ra), 1);
    assert_int_equal(ra, 0);
    assert_int_equal(p2p_ratelimit_count(rl), 0);
    assert_int_equal(p2p_ratelimit_peek(rl, "", P2P_RL_ENROLL_FAIL, 1, t, &ra), -EINVAL);
    assert_int_equal(p2p_ratelimit_peek(rl, "x", P2P_RL_NCLASSES, 1, t, &ra), -EINVAL);
    assert_int_equal(p2p_ratelimit_peek(rl, "x", P2P_RL_ENROLL_FAIL, 11, t, &ra), -E2BIG);

    /* ten failures empty the address's bucket; peeking many times takes nothing */
    assert_int_equal(calls(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_FAIL, t, 10), 10);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(p2p_ratelimit_peek(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_FAIL, 1, t, &ra), 0);
        assert_int_equal(ra, 2); /* 30/min: one token every 2 s */
    }
    /* after 2 s exactly one token is back: peek says yes, and still takes nothing */
    assert_int_equal(p2p_ratelimit_peek(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_FAIL, 1, t + 2000, &ra), 1);
    assert_int_equal(p2p_ratelimit_peek(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_FAIL, 1, t + 2000, &ra), 1);
    assert_int_equal(calls(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_FAIL, t + 2000, 2), 1);
    /* another address is not affected; nor is the same address's token bucket */
    assert_int_equal(p2p_ratelimit_peek(rl, "enroll-ip:10.0.0.10", P2P_RL_ENROLL_FAIL, 1, t, &ra), 1);
    assert_int_equal(calls(rl, "enroll-ip:10.0.0.9", P2P_RL_ENROLL_TOKEN, t, 1), 1);

    /* a join token: 1000 enrollments at once, then 100 per second */
    assert_int_equal(calls(rl, "p2pj_token", P2P_RL_ENROLL_TOKEN, t, 1200), 1000);
    assert_int_equal(calls(rl, "p2pj_token", P2P_RL_ENROLL_TOKEN, t + 1000, 200), 100);
    /* the CA bucket: 5000 at once, then 1000 per second */
    assert_int_equal(calls(rl, "*", P2P_RL_CA_CERT, t, 6000), 5000);
    assert_int_equal(calls(rl, "*", P2P_RL_CA_CERT, t + 500, 1000), 500);
    p2p_ratelimit_free(rl);
}

static void test_xff(void **state)
{
    (void)state;
    /* untrusted peer: XFF ignored */
    expect_ip("203.0.113.5", "1.2.3.4", TRUSTED, "203.0.113.5");
    expect_ip("203.0.113.5", "10.0.0.1", TRUSTED, "203.0.113.5");
    expect_ip("203.0.113.5", "1.2.3.4", NULL, "203.0.113.5");
    expect_ip("10.1.2.3", "1.2.3.4", NULL, "10.1.2.3"); /* no trusted list */
    /* trusted peer without XFF */
    expect_ip("10.1.2.3", NULL, TRUSTED, "10.1.2.3");
    /* trusted peer: right-most untrusted */
    expect_ip("10.1.2.3", "1.2.3.4", TRUSTED, "1.2.3.4");
    expect_ip("10.1.2.3", "6.6.6.6, 1.2.3.4, 10.9.9.9", TRUSTED, "1.2.3.4");
    expect_ip("10.1.2.3", "6.6.6.6,1.2.3.4,192.168.1.1,10.0.0.7", TRUSTED, "1.2.3.4");
    expect_ip("192.168.1.1", " 1.2.3.4 ,\t172.20.0.1 ", TRUSTED, "1.2.3.4");
    expect_ip("10.1.2.3", "spoofed-garbage, 1.2.3.4", TRUSTED, "1.2.3.4"); /* left of the client is never read */
    /* all trusted: the left-most */
    expect_ip("10.1.2.3", "10.0.0.1, 10.0.0.2", TRUSTED, "10.0.0.1");
    /* garbage read: fall back to the peer */
    expect_ip("10.1.2.3", "1.2.3.4, garbage", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "   ", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "1.2.3.4,", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "1.2.3.4,,10.0.0.1", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "1.2.3.4:8080", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "unknown", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "1.2.3.4 5.6.7.8", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "1.2.3", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "01.2.3.4", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "256.1.1.1", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "fe80::1%eth0", TRUSTED, "10.1.2.3");
    expect_ip("10.1.2.3", "[1.2.3.4]", TRUSTED, "10.1.2.3"); /* brackets are for IPv6 only */
    /* IPv6 */
    expect_ip("fd00::1", "2001:db8::1", TRUSTED, "2001:db8::1");
    expect_ip("fd12:3456::1", "[2001:db8::2]", TRUSTED, "2001:db8::2");
    expect_ip("::1", "2001:DB8:0:0::3, fd00::9", TRUSTED, "2001:db8::3"); /* normalized */
    expect_ip("::2", "2001:db8::1", TRUSTED, "::2");
    expect_ip("fe00::1", "2001:db8::1", TRUSTED, "fe00::1"); /* outside fd00::/8 */
    expect_ip("[fd00::1]", "1.2.3.4", TRUSTED, "1.2.3.4");
    /* IPv4-mapped IPv6 is the IPv4 address */
    expect_ip("::ffff:10.0.0.1", "1.2.3.4", TRUSTED, "1.2.3.4");
    expect_ip("::ffff:203.0.113.9", "1.2.3.4", TRUSTED, "203.0.113.9");
    expect_ip("10.0.0.1", "::ffff:1.2.3.4", TRUSTED, "1.2.3.4");
    expect_ip("10.0.0.1", "1.2.3.4, ::ffff:10.0.0.5", TRUSTED, "1.2.3.4");
}

static void test_cidr(void **state)
{
    (void)state;
    const char *const v4[] = {"172.16.0.0/12", NULL};
    expect_ip("172.16.0.0", "1.1.1.1", v4, "1.1.1.1");
    expect_ip("172.31.255.255", "1.1.1.1", v4, "1.1.1.1");
    expect_ip("172.32.0.0", "1.1.1.1", v4, "172.32.0.0");
    expect_ip("172.15.255.255", "1.1.1.1", v4, "172.15.255.255");
    const char *const host_bits[] = {"10.1.2.3/8", NULL};
    expect_ip("10.200.0.1", "1.1.1.1", host_bits, "1.1.1.1");
    const char *const all4[] = {"0.0.0.0/0", NULL};
    expect_ip("8.8.8.8", "1.1.1.1", all4, "1.1.1.1");
    expect_ip("2001:db8::1", "1.1.1.1", all4, "2001:db8::1"); /* IPv4 /0 is not all of IPv6 */
    const char *const all[] = {"::/0", NULL};
    expect_ip("2001:db8::1", "1.1.1.1", all, "1.1.1.1");
    const char *const v4_32[] = {"198.51.100.7/32", NULL};
    expect_ip("198.51.100.7", "1.1.1.1", v4_32, "1.1.1.1");
    expect_ip("198.51.100.6", "1.1.1.1", v4_32, "198.51.100.6");
    const char *const v6[] = {"2001:db8:8000::/33", NULL};
    expect_ip("2001:db8:8000::1", "1.1.1.1", v6, "1.1.1.1");
    expect_ip("2001:db8:ffff:ffff::1", "1.1.1.1", v6, "1.1.1.1");
    expect_ip("2001:db8:7fff::1", "1.1.1.1", v6, "2001:db8:7fff::1");
    const char *const v6_odd[] = {"2001:db8::/31", NULL};
    expect_ip("2001:db9::1", "1.1.1.1", v6_odd, "1.1.1.1");
    expect_ip("2001:dba::1", "1.1.1.1", v6_odd, "2001:dba::1");
    const char *const mapped[] = {"::ffff:10.0.0.0/104", NULL};
    expect_ip("10.9.9.9", "1.1.1.1", mapped, "1.1.1.1");
    expect_ip("11.0.0.1", "1.1.1.1", mapped, "11.0.0.1");

    /* malformed trusted entries */
    const char *bad[] = {"10.0.0.0/33", "10.0.0.0/", "1.2.3/8",   "abc",     "::/129",        "10.0.0.0/08",
                         "[::1]",       "10.0.0.0/8/8", "10.0.0.0/-1", " 10.0.0.1", "10.0.0.0/1000", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (p2p_ratelimit_proxy_valid(bad[i]) != -EINVAL)
            fail_msg("accepted trusted proxy '%s'", bad[i]);
        const char *const list[] = {"10.0.0.0/8", bad[i], NULL};
        char out[64];
        assert_int_equal(p2p_ratelimit_client_ip("203.0.113.1", NULL, list, out, sizeof(out)), -EINVAL);
    }
    assert_int_equal(p2p_ratelimit_proxy_valid(NULL), -EINVAL);
    const char *good[] = {"10.0.0.0/8", "10.0.0.1", "::1", "fd00::/8", "0.0.0.0/0", "::/0", "1.2.3.4/32", "::1/128"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(p2p_ratelimit_proxy_valid(good[i]), 0);

    /* bad peer, small buffer */
    char out[64];
    assert_int_equal(p2p_ratelimit_client_ip("not-an-ip", NULL, TRUSTED, out, sizeof(out)), -EINVAL);
    assert_int_equal(p2p_ratelimit_client_ip("", NULL, TRUSTED, out, sizeof(out)), -EINVAL);
    assert_int_equal(p2p_ratelimit_client_ip(NULL, NULL, TRUSTED, out, sizeof(out)), -EINVAL);
    assert_int_equal(p2p_ratelimit_client_ip("1.2.3.4", NULL, TRUSTED, out, 7), -ENOSPC);
    assert_int_equal(p2p_ratelimit_client_ip("1.2.3.4", NULL, TRUSTED, out, 8), 0);
    assert_string_equal(out, "1.2.3.4");
    char big[46];
    assert_int_equal(p2p_ratelimit_client_ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", NULL, TRUSTED, big,
                                             sizeof(big)),
                     0);
    assert_string_equal(big, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_burst_then_refill_defaults),
        cmocka_unit_test(test_retry_after_exact),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_idle_caps_and_clock),
        cmocka_unit_test(test_independent_buckets),
        cmocka_unit_test(test_table_bound_under_flood),
        cmocka_unit_test(test_eviction_choice),
        cmocka_unit_test(test_enroll_classes_and_peek),
        cmocka_unit_test(test_xff),
        cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
