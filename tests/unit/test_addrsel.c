/*
 * test_addrsel.c — unit tests for src/membership/addrsel.c: the ranking table
 * (multi-homed hosts, loopback-only hosts and clusters on 127.0.0.1, APIPA and
 * link-local filtered, coordinator subnet preference for IPv4 and IPv6, /32,
 * /31, longest prefix, family and private-address order, tie-breaks,
 * duplicates), target parsing, the prober against listeners on 127.0.0.1 (a
 * listening port wins, a refused port or an unbindable source falls back with a
 * reason, a silent port hits the deadline, cancel), the config overrides of
 * select(), and the watcher with an injected interface list.
 *
 * Every loop run has a deadline (run_until); callbacks count their calls so
 * "exactly once" is checked, and each loop test ends with the loop closing
 * clean (every handle closed, so ASan sees no leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "membership/addrsel.h"

/* ---- ranking ------------------------------------------------------------------- */

/* clang-format off */
#define IF(n, a, p) {.ip = a, .name = n, .prefix = p, .internal = 0}
#define LO(a, p) {.ip = a, .name = "lo", .prefix = p, .internal = 1}
/* clang-format on */

typedef struct rank_case {
    const char *title;
    p2p_addrsel_iface ifs[8];
    size_t n_ifs;
    const char *coords[4];
    size_t n_coords;
    int rc;
    const char *expect[8]; /* the ranked IPs, in order */
    size_t n_expect;
} rank_case;

static const rank_case rank_cases[] = {
    {"guide example, coordinator on the VPN",
     {LO("127.0.0.1", 8), IF("eth0", "192.168.1.100", 24), IF("tun0", "10.8.0.5", 24)},
     3,
     {"10.8.0.1"},
     1,
     0,
     {"10.8.0.5", "192.168.1.100"},
     2},
    {"guide example, coordinator on the LAN (with a port)",
     {LO("127.0.0.1", 8), IF("eth0", "192.168.1.100", 24), IF("tun0", "10.8.0.5", 24)},
     3,
     {"192.168.1.50:8001"},
     1,
     0,
     {"192.168.1.100", "10.8.0.5"},
     2},
    {"second coordinator's subnet counts too",
     {IF("eth0", "192.168.1.100", 24), IF("eth1", "10.8.0.5", 24)},
     2,
     {"172.20.0.1:8001", "10.8.0.1:8001"},
     2,
     0,
     {"10.8.0.5", "192.168.1.100"},
     2},
    {"only loopback: loopback is the answer, IPv4 first",
     {LO("::1", 128), LO("127.0.0.1", 8)},
     2,
     {"10.0.0.1"},
     1,
     0,
     {"127.0.0.1", "::1"},
     2},
    {"loopback plus only link-local and APIPA: loopback",
     {LO("127.0.0.1", 8), IF("eth0", "169.254.3.4", 16), IF("eth0", "fe80::1%eth0", 64)},
     3,
     {0},
     0,
     0,
     {"127.0.0.1"},
     1},
    {"APIPA, link-local, unspecified and multicast skipped",
     {IF("eth0", "169.254.1.1", 16), IF("eth0", "fe80::1", 64), IF("eth0", "febf::1", 64), IF("eth1", "0.0.0.0", 0),
      IF("eth1", "::", 0), IF("eth1", "10.0.0.5", 24), IF("eth2", "224.0.0.1", 4), IF("eth3", "not-an-ip", 24)},
     8,
     {"169.254.1.2"},
     1,
     0,
     {"10.0.0.5"},
     1},
    {"nothing usable", {IF("eth0", "169.254.1.1", 16), IF("eth0", "fe80::1", 64)}, 2, {0}, 0, -ENOENT, {0}, 0},
    {"IPv6 coordinator subnet",
     {IF("eth0", "2001:db8:1::5", 64), IF("eth1", "fd00:2::5", 64), IF("eth2", "10.0.0.5", 24)},
     3,
     {"[fd00:2::1]:8001"},
     1,
     0,
     {"fd00:2::5", "2001:db8:1::5", "10.0.0.5"},
     3},
    {"IPv6 public subnet beats IPv6 ULA when the coordinator is there",
     {IF("eth0", "2001:db8:1::5", 64), IF("eth1", "fd00:2::5", 64)},
     2,
     {"2001:db8:1::99"},
     1,
     0,
     {"2001:db8:1::5", "fd00:2::5"},
     2},
    {"IPv6-only coordinator, no subnet match: IPv6 first",
     {IF("eth0", "10.0.0.5", 24), IF("eth0", "fd00::5", 64)},
     2,
     {"2001:db8::1"},
     1,
     0,
     {"fd00::5", "10.0.0.5"},
     2},
    {"IPv4 and IPv6 coordinators: IPv4 first",
     {IF("eth0", "fd00::5", 64), IF("eth0", "10.0.0.5", 24)},
     2,
     {"2001:db8::1", "192.0.2.1"},
     2,
     0,
     {"10.0.0.5", "fd00::5"},
     2},
    {"/32 contains only itself",
     {IF("eth0", "10.0.0.5", 32), IF("eth1", "192.168.7.7", 24)},
     2,
     {"10.0.0.6"},
     1,
     0,
     {"10.0.0.5", "192.168.7.7"}, /* no match either way: private, then name */
     2},
    {"/32 matches a coordinator on the same address",
     {IF("eth0", "192.168.7.7", 24), IF("eth1", "10.0.0.5", 32)},
     2,
     {"10.0.0.5:8001"},
     1,
     0,
     {"10.0.0.5", "192.168.7.7"},
     2},
    {"/31 point-to-point: the other end matches",
     {IF("eth0", "192.168.7.7", 24), IF("p2p0", "10.1.0.0", 31)},
     2,
     {"10.1.0.1"},
     1,
     0,
     {"10.1.0.0", "192.168.7.7"},
     2},
    {"/31: the next address does not match",
     {IF("eth0", "192.168.7.7", 24), IF("p2p0", "10.1.0.0", 31)},
     2,
     {"10.1.0.2"},
     1,
     0,
     {"192.168.7.7", "10.1.0.0"}, /* no match: name order */
     2},
    {"unknown prefix is a host prefix",
     {IF("a0", "192.168.7.7", 24), IF("b0", "10.1.0.5", -1)},
     2,
     {"10.1.0.6"},
     1,
     0,
     {"192.168.7.7", "10.1.0.5"},
     2},
    {"longest matching prefix wins",
     {IF("eth0", "10.0.0.5", 8), IF("eth1", "10.1.2.5", 24)},
     2,
     {"10.1.2.1"},
     1,
     0,
     {"10.1.2.5", "10.0.0.5"},
     2},
    {"no coordinator: IPv4 first, private first, then interface name",
     {IF("eth2", "8.8.4.4", 24), IF("eth1", "10.0.0.5", 24), IF("eth0", "fd00::1", 64), IF("eth0", "10.0.0.9", 24),
      IF("eth9", "100.64.1.1", 10), IF("eth3", "172.16.0.1", 12), IF("eth3", "172.32.0.1", 12)},
     7,
     {0},
     0,
     0,
     {"10.0.0.9", "10.0.0.5", "172.16.0.1", "100.64.1.1", "8.8.4.4", "172.32.0.1", "fd00::1"},
     7},
    {"a cluster on this host: loopback first",
     {IF("eth0", "10.0.0.5", 24), LO("127.0.0.1", 8), LO("::1", 128)},
     3,
     {"127.0.0.1:8001"},
     1,
     0,
     {"127.0.0.1", "10.0.0.5", "::1"},
     3},
    {"internal flag counts as loopback",
     {{.ip = "10.9.9.9", .name = "lo", .prefix = 32, .internal = 1}, IF("eth0", "192.0.2.5", 24)},
     2,
     {0},
     0,
     0,
     {"192.0.2.5"},
     1},
    {"duplicate address: the better-ranked entry is kept",
     {IF("eth1", "10.0.0.5", 24), IF("eth0", "10.0.0.5", 24), IF("eth0", "10.0.0.6", 16)},
     3,
     {"10.0.0.1"},
     1,
     0,
     {"10.0.0.5", "10.0.0.6"},
     2},
    {"IPv4-mapped coordinator counts as IPv4",
     {IF("eth0", "192.168.1.100", 24), IF("tun0", "10.8.0.5", 24)},
     2,
     {"::ffff:192.168.1.9"},
     1,
     0,
     {"192.168.1.100", "10.8.0.5"},
     2},
    {"non-canonical IPv6 is canonicalised", {IF("eth0", "FD00:0:0:0:0:0:0:5", 64)}, 1, {0}, 0, 0, {"fd00::5"}, 1},
};

static void test_rank_table(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof rank_cases / sizeof rank_cases[0]; t++) {
        const rank_case *c = &rank_cases[t];
        p2p_addrsel_cand out[16];
        size_t n = 99;
        char *err = NULL;
        int rc = p2p__addrsel_rank(c->ifs, c->n_ifs, c->coords, c->n_coords, out, 16, &n, &err);
        if (rc != c->rc || n != c->n_expect) {
            fprintf(stderr, "case '%s': rc %d (want %d), %zu candidates (want %zu)%s%s\n", c->title, rc, c->rc, n,
                    c->n_expect, err ? ": " : "", err ? err : "");
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, "  %s\n", out[i].ip);
            fail();
        }
        assert_true(rc == 0 ? err == NULL : err != NULL);
        free(err);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(out[i].ip, c->expect[i]) != 0) {
                fprintf(stderr, "case '%s': position %zu is %s, want %s\n", c->title, i, out[i].ip, c->expect[i]);
                fail();
            }
        }
    }
}

static void test_rank_details(void **state)
{
    (void)state;
    p2p_addrsel_iface ifs[] = {IF("eth0", "192.168.1.100", 24), IF("tun0", "10.8.0.5", 24), LO("127.0.0.1", 8),
                               IF("eth1", "8.8.8.8", 24)};
    const char *coords[] = {"10.8.0.1"};
    p2p_addrsel_cand out[8];
    size_t n = 0;
    assert_int_equal(p2p__addrsel_rank(ifs, 4, coords, 1, out, 8, &n, NULL), 0);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].ifname, "tun0");
    assert_int_equal(out[0].family, AF_INET);
    assert_int_equal(out[0].prefix, 24);
    assert_int_equal(out[0].match_prefix, 24);
    assert_int_equal(out[0].why, P2P_ADDRSEL_SAME_SUBNET | P2P_ADDRSEL_PRIVATE);
    assert_int_equal(out[1].why, P2P_ADDRSEL_PRIVATE);
    assert_int_equal(out[1].match_prefix, -1);
    assert_int_equal(out[2].why, 0);
    char buf[128];
    assert_string_equal(p2p__addrsel_describe(&out[0], buf, sizeof buf),
                        "10.8.0.5 (tun0, in a coordinator's subnet /24, private)");
    assert_string_equal(p2p__addrsel_describe(&out[2], buf, sizeof buf), "8.8.8.8 (eth1)");

    /* cap keeps the best ones */
    assert_int_equal(p2p__addrsel_rank(ifs, 4, coords, 1, out, 1, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].ip, "10.8.0.5");

    /* the order of the input does not matter */
    p2p_addrsel_iface rev[] = {ifs[3], ifs[2], ifs[1], ifs[0]};
    p2p_addrsel_cand out2[8];
    size_t n2 = 0;
    assert_int_equal(p2p__addrsel_rank(rev, 4, coords, 1, out2, 8, &n2, NULL), 0);
    assert_int_equal(p2p__addrsel_rank(ifs, 4, coords, 1, out, 8, &n, NULL), 0);
    assert_int_equal(n, n2);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(out[i].ip, out2[i].ip);

    /* bad coordinators are named */
    const char *bad[][1] = {
        {"coordinator.example"}, {"10.0.0.1:"}, {"10.0.0.1:99999"}, {"[fd00::1"}, {"[fd00::1]x"}, {""}, {NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = NULL;
        n = 7;
        assert_int_equal(p2p__addrsel_rank(ifs, 4, bad[i], 1, out, 8, &n, &err), -EINVAL);
        assert_non_null(err);
        if (bad[i][0] && bad[i][0][0])
            assert_non_null(strstr(err, bad[i][0]));
        free(err);
        assert_int_equal(n, 7); /* untouched on failure */
    }
    assert_int_equal(p2p__addrsel_rank(NULL, 1, NULL, 0, out, 8, &n, NULL), -EINVAL);
    assert_int_equal(p2p__addrsel_rank(ifs, 4, NULL, 0, out, 8, NULL, NULL), -EINVAL);
    /* no interfaces at all */
    assert_int_equal(p2p__addrsel_rank(NULL, 0, NULL, 0, out, 8, &n, NULL), -ENOENT);
    assert_int_equal(n, 0);
}

static void test_parse_target(void **state)
{
    (void)state;
    struct sockaddr_storage sa;
    assert_int_equal(p2p__addrsel_parse_target("10.1.2.3:8001", &sa), 0);
    assert_int_equal(sa.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 8001);
    assert_int_equal(p2p__addrsel_parse_target("[fd00::1]:443", &sa), 0);
    assert_int_equal(sa.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 443);
    assert_int_equal(p2p__addrsel_parse_target("fd00::1", &sa), 0);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 0);
    assert_int_equal(p2p__addrsel_parse_target("10.1.2.3", &sa), 0);
    assert_int_equal(p2p__addrsel_parse_target("[::ffff:10.1.2.3]:5", &sa), 0);
    assert_int_equal(sa.ss_family, AF_INET);
    const char *bad[] = {
        "host:80", "10.1.2.3:0", "10.1.2.3:-1", "10.1.2.3:80x", "[fd00::1]:", "fd00::1:80:", "1.2.3.4:5:6", "", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(p2p__addrsel_parse_target(bad[i], &sa), -EINVAL);
}

/* ---- loop helpers ----------------------------------------------------------------- */

typedef struct probe_result {
    int calls;
    int status;
    p2p_addrsel_cand chosen;
    char reason[1024];
} probe_result;

static void on_probe_done(void *arg, int status, const p2p_addrsel_cand *chosen, const char *reason)
{
    probe_result *r = arg;
    r->calls++;
    r->status = status;
    r->chosen = *chosen;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
}

static void on_deadline(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop until *flag is set or `ms` pass; returns *flag. */
static int run_until(uv_loop_t *loop, const int *flag, uint64_t ms)
{
    uv_timer_t t;
    int expired = 0;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, on_deadline, ms, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Lets pending close callbacks run, then checks that nothing was left open. */
static void loop_finish(uv_loop_t *loop)
{
    for (int i = 0; i < 20 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT);
    int leftover = uv_loop_close(loop);
    if (leftover == UV_EBUSY) {
        uv_walk(loop, walk_close, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
    }
    assert_int_equal(leftover, 0);
}

/* A listener on 127.0.0.1 that accepts and closes. */
typedef struct listener {
    uv_tcp_t tcp;
    int port;
    int accepted;
} listener;

static void on_accepted_closed(uv_handle_t *h)
{
    free(h);
}

static void on_listen_conn(uv_stream_t *s, int status)
{
    listener *l = s->data;
    if (status != 0)
        return;
    uv_tcp_t *c = malloc(sizeof *c);
    uv_tcp_init(s->loop, c);
    if (uv_accept(s, (uv_stream_t *)c) == 0)
        l->accepted++;
    uv_close((uv_handle_t *)c, on_accepted_closed);
}

static void listener_start(uv_loop_t *loop, listener *l)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_init(loop, &l->tcp), 0);
    l->tcp.data = l;
    assert_int_equal(uv_tcp_bind(&l->tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&l->tcp, 16, on_listen_conn), 0);
    struct sockaddr_storage got;
    int len = sizeof got;
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&got, &len);
    l->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

/* A port on 127.0.0.1 with nothing listening (bound, then closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static p2p_addrsel_cand cand(const char *ip, const char *ifname)
{
    p2p_addrsel_cand c;
    memset(&c, 0, sizeof c);
    snprintf(c.ip, sizeof c.ip, "%s", ip);
    snprintf(c.ifname, sizeof c.ifname, "%s", ifname);
    c.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    c.prefix = c.match_prefix = -1;
    return c;
}

static struct sockaddr_storage target(const char *s)
{
    struct sockaddr_storage sa;
    assert_int_equal(p2p__addrsel_parse_target(s, &sa), 0);
    return sa;
}

/* ---- probing ---------------------------------------------------------------------- */

static void test_probe_listening_port_wins(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    listener l = {0};
    listener_start(&loop, &l);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", l.port);
    /* best-ranked cannot even bind (not an address of this host): the next one wins */
    p2p_addrsel_cand c[] = {cand("192.0.2.231", "eth9"), cand("127.0.0.2", "lo"), cand("127.0.0.1", "lo")};
    struct sockaddr_storage tg[] = {target(t)};
    probe_result r = {0};
    p2p_addrsel_probe *p = NULL;
    assert_int_equal(p2p__addrsel_probe(&loop, c, 3, tg, 1, 1000, on_probe_done, &r, &p, NULL), 0);
    assert_non_null(p);
    assert_int_equal(r.calls, 0); /* never from inside the call */
    assert_true(run_until(&loop, &r.calls, 3000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.chosen.ip, "127.0.0.2");
    assert_non_null(strstr(r.reason, "127.0.0.2 (lo) connected to 127.0.0.1:"));
    assert_non_null(strstr(r.reason, "better-ranked: 192.0.2.231: "));
    uv_close((uv_handle_t *)&l.tcp, NULL);
    loop_finish(&loop);
    assert_int_equal(r.calls, 1);
}

static void test_probe_first_ranked_wins(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    listener l = {0};
    listener_start(&loop, &l);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", l.port);
    p2p_addrsel_cand c[] = {cand("127.0.0.1", "lo"), cand("127.0.0.3", "lo")};
    /* an IPv6 target too: only same-family pairs are tried */
    struct sockaddr_storage tg[] = {target("[::1]:1"), target(t)};
    probe_result r = {0};
    assert_int_equal(p2p__addrsel_probe(&loop, c, 2, tg, 2, 0, on_probe_done, &r, NULL, NULL), 0);
    assert_true(run_until(&loop, &r.calls, 3000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.chosen.ip, "127.0.0.1");
    assert_null(strstr(r.reason, "better-ranked"));
    uv_close((uv_handle_t *)&l.tcp, NULL);
    loop_finish(&loop);
    assert_int_equal(r.calls, 1);
}

static void test_probe_nothing_listening_falls_back(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", closed_port());
    p2p_addrsel_cand c[] = {cand("127.0.0.1", "lo"), cand("127.0.0.2", "lo")};
    struct sockaddr_storage tg[] = {target(t)};
    probe_result r = {0};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(p2p__addrsel_probe(&loop, c, 2, tg, 1, 1000, on_probe_done, &r, NULL, NULL), 0);
    assert_true(run_until(&loop, &r.calls, 3000));
    assert_true(uv_hrtime() - t0 < 900000000ull); /* refused: no need to wait for the deadline */
    assert_int_equal(r.status, UV_ECONNREFUSED);
    assert_string_equal(r.chosen.ip, "127.0.0.1");
    assert_non_null(strstr(r.reason, "no candidate reached a coordinator (127.0.0.1: connection refused, "
                                     "127.0.0.2: connection refused); advertising the best-ranked 127.0.0.1 (lo)"));
    loop_finish(&loop);
    assert_int_equal(r.calls, 1);
}

static void test_probe_unbindable_and_no_targets(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_addrsel_cand c[] = {cand("192.0.2.231", "eth9")};
    struct sockaddr_storage tg[] = {target("127.0.0.1:9")};
    probe_result r = {0};
    /* every attempt fails inside the call: the result still comes later */
    assert_int_equal(p2p__addrsel_probe(&loop, c, 1, tg, 1, 1000, on_probe_done, &r, NULL, NULL), 0);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&loop, &r.calls, 2000));
    assert_int_equal(r.status, UV_EADDRNOTAVAIL);
    assert_string_equal(r.chosen.ip, "192.0.2.231");

    /* no coordinator to probe */
    probe_result r2 = {0};
    assert_int_equal(p2p__addrsel_probe(&loop, c, 1, NULL, 0, 1000, on_probe_done, &r2, NULL, NULL), 0);
    assert_true(run_until(&loop, &r2.calls, 2000));
    assert_int_equal(r2.status, -EHOSTUNREACH);
    assert_non_null(strstr(r2.reason, "no coordinator address to probe"));

    /* coordinators only of the other family */
    probe_result r3 = {0};
    struct sockaddr_storage v6[] = {target("[::1]:9")};
    assert_int_equal(p2p__addrsel_probe(&loop, c, 1, v6, 1, 1000, on_probe_done, &r3, NULL, NULL), 0);
    assert_true(run_until(&loop, &r3.calls, 2000));
    assert_int_equal(r3.status, -EHOSTUNREACH);
    assert_non_null(strstr(r3.reason, "of its family"));

    /* bad arguments */
    char *err = NULL;
    assert_int_equal(p2p__addrsel_probe(&loop, c, 0, tg, 1, 0, on_probe_done, &r, NULL, &err), -EINVAL);
    free(err);
    p2p_addrsel_cand bad = cand("nope", "x");
    assert_int_equal(p2p__addrsel_probe(&loop, &bad, 1, tg, 1, 0, on_probe_done, &r, NULL, NULL), -EINVAL);
    loop_finish(&loop);
    assert_int_equal(r.calls + r2.calls + r3.calls, 3);
}

/* A listener whose accept queue is full: further SYNs are dropped, so a connect
 * neither succeeds nor fails before the deadline. */
static void test_probe_deadline(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    int fill[2];
    for (int i = 0; i < 2; i++) { /* backlog 0 queues one; make sure the queue is full */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
    }
    usleep(50000);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", ntohs(sa.sin_port));

    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_addrsel_cand c[] = {cand("127.0.0.1", "lo")};
    struct sockaddr_storage tg[] = {target(t)};
    probe_result r = {0};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(p2p__addrsel_probe(&loop, c, 1, tg, 1, 200, on_probe_done, &r, NULL, NULL), 0);
    assert_true(run_until(&loop, &r.calls, 3000));
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_true(ms >= 190 && ms < 1500);
    assert_int_equal(r.status, UV_ETIMEDOUT);
    assert_string_equal(r.chosen.ip, "127.0.0.1");
    assert_non_null(strstr(r.reason, "127.0.0.1: no answer in time"));
    loop_finish(&loop);
    assert_int_equal(r.calls, 1);
    close(fill[0]);
    close(fill[1]);
    close(lfd);
}

static void test_probe_cancel(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    listener l = {0};
    listener_start(&loop, &l);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", l.port);
    p2p_addrsel_cand c[] = {cand("127.0.0.1", "lo"), cand("127.0.0.2", "lo")};
    struct sockaddr_storage tg[] = {target(t)};
    probe_result r = {0};
    p2p_addrsel_probe *p = NULL;
    assert_int_equal(p2p__addrsel_probe(&loop, c, 2, tg, 1, 1000, on_probe_done, &r, &p, NULL), 0);
    p2p__addrsel_probe_cancel(p);
    p2p__addrsel_probe_cancel(p); /* twice is harmless while the handles close */
    int never = 0;
    run_until(&loop, &never, 100);
    assert_int_equal(r.calls, 0);
    uv_close((uv_handle_t *)&l.tcp, NULL);
    loop_finish(&loop);
    assert_int_equal(r.calls, 0);
}

/* ---- select: overrides and the full path -------------------------------------------- */

typedef struct fake_list {
    p2p_addrsel_iface ifs[8];
    size_t n;
    int fail; /* return this error instead */
    int calls;
} fake_list;

static int fake_list_fn(void *arg, p2p_addrsel_iface **out, size_t *n)
{
    fake_list *f = arg;
    f->calls++;
    if (f->fail)
        return f->fail;
    *out = malloc((f->n ? f->n : 1) * sizeof **out);
    memcpy(*out, f->ifs, f->n * sizeof **out);
    *n = f->n;
    return 0;
}

static void test_select_overrides(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *coords[] = {"10.0.0.1:8001"};
    fake_list f = {.ifs = {IF("eth0", "10.0.0.5", 24)}, .n = 1};
    p2p_addrsel_opts o = {.advertise_address = "node7.example.net",
                          .bind_address = "10.0.0.5",
                          .coordinators = coords,
                          .n_coordinators = 1,
                          .list = fake_list_fn,
                          .list_arg = &f};
    probe_result r = {0};
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r, NULL, NULL), 0);
    assert_int_equal(r.calls, 0);
    assert_true(run_until(&loop, &r.calls, 1000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.chosen.ip, "node7.example.net");
    assert_string_equal(r.reason, "advertise_address is set: advertising node7.example.net (not probed)");
    assert_int_equal(f.calls, 0);

    /* a specific bind address is advertised, canonicalised */
    o.advertise_address = "";
    o.bind_address = "FD00::0:5";
    probe_result r2 = {0};
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r2, NULL, NULL), 0);
    assert_true(run_until(&loop, &r2.calls, 1000));
    assert_int_equal(r2.status, 0);
    assert_string_equal(r2.chosen.ip, "fd00::5");
    assert_int_equal(r2.chosen.family, AF_INET6);
    assert_non_null(strstr(r2.reason, "bind_address is set"));
    assert_int_equal(f.calls, 0);

    /* errors from the call itself */
    char *err = NULL;
    o.bind_address = "eth0";
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r2, NULL, &err), -EINVAL);
    assert_non_null(strstr(err, "eth0"));
    free(err);
    err = NULL;
    o.bind_address = "0.0.0.0";
    const char *host[] = {"coordinator:8001"};
    o.coordinators = host;
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r2, NULL, &err), -EINVAL);
    assert_non_null(strstr(err, "coordinator:8001"));
    free(err);
    err = NULL;
    o.coordinators = coords;
    fake_list only_ll = {.ifs = {IF("eth0", "fe80::1", 64)}, .n = 1};
    o.list_arg = &only_ll;
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r2, NULL, &err), -ENOENT);
    free(err);
    err = NULL;
    fake_list broken = {.fail = UV_ENOMEM};
    o.list_arg = &broken;
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r2, NULL, &err), UV_ENOMEM);
    free(err);
    loop_finish(&loop);
    assert_int_equal(r.calls + r2.calls, 2);
}

static void test_select_probes(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    listener l = {0};
    listener_start(&loop, &l);
    char t[64];
    snprintf(t, sizeof t, "127.0.0.1:%d", l.port);
    const char *coords[] = {t};
    /* a cluster on this host: loopback ranks first and connects */
    fake_list f = {.ifs = {IF("eth0", "192.0.2.231", 24), LO("127.0.0.1", 8)}, .n = 2};
    p2p_addrsel_opts o = {
        .bind_address = "::", .coordinators = coords, .n_coordinators = 1, .list = fake_list_fn, .list_arg = &f};
    probe_result r = {0};
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r, NULL, NULL), 0);
    assert_true(run_until(&loop, &r.calls, 3000));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.chosen.ip, "127.0.0.1");
    assert_true(r.chosen.why & P2P_ADDRSEL_SAME_SUBNET);

    /* the coordinator elsewhere: loopback is out, the only candidate cannot bind */
    const char *far[] = {"192.0.2.1:8001"};
    o.coordinators = far;
    o.bind_address = NULL;
    probe_result r2 = {0};
    assert_int_equal(p2p__addrsel_select(&loop, &o, on_probe_done, &r2, NULL, NULL), 0);
    assert_true(run_until(&loop, &r2.calls, 3000));
    assert_int_equal(r2.status, UV_EADDRNOTAVAIL);
    assert_string_equal(r2.chosen.ip, "192.0.2.231");
    assert_non_null(strstr(r2.reason, "advertising the best-ranked 192.0.2.231 (eth0, in a coordinator's subnet /24)"));

    uv_close((uv_handle_t *)&l.tcp, NULL);
    loop_finish(&loop);
}

/* The system's list: whatever this host has, it parses and has a sane shape. */
static void test_system_interfaces(void **state)
{
    (void)state;
    p2p_addrsel_iface *ifs = NULL;
    size_t n = 0;
    assert_int_equal(p2p__addrsel_interfaces(NULL, &ifs, &n), 0);
    int lo = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(ifs[i].name[0] != '\0');
        assert_true(ifs[i].prefix >= 0 && ifs[i].prefix <= 128);
        if (strcmp(ifs[i].ip, "127.0.0.1") == 0) {
            lo = 1;
            assert_int_equal(ifs[i].prefix, 8);
            assert_true(ifs[i].internal);
        }
    }
    assert_true(lo);
    p2p_addrsel_cand out[P2P_ADDRSEL_MAX_CANDIDATES];
    size_t m = 0;
    assert_int_equal(p2p__addrsel_rank(ifs, n, NULL, 0, out, P2P_ADDRSEL_MAX_CANDIDATES, &m, NULL), 0);
    assert_true(m >= 1);
    free(ifs);
}

/* ---- watching ------------------------------------------------------------------------ */

typedef struct watch_seen {
    int calls;
    int changed; /* set by each callback, reset by the test */
    size_t n;
    char first_ip[P2P_ADDRSEL_IP_MAX];
    p2p_addrsel_watch *stop_in_cb;
} watch_seen;

static void on_change(void *arg, const p2p_addrsel_iface *ifs, size_t n)
{
    watch_seen *s = arg;
    s->calls++;
    s->changed = 1;
    s->n = n;
    snprintf(s->first_ip, sizeof s->first_ip, "%s", n ? ifs[0].ip : "");
    if (s->stop_in_cb)
        p2p__addrsel_watch_stop(s->stop_in_cb);
}

static void test_watch_detects_change(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    fake_list f = {.ifs = {IF("eth0", "10.0.0.5", 24), IF("eth1", "10.1.0.5", 24)}, .n = 2};
    watch_seen s = {0};
    p2p_addrsel_watch *w = NULL;
    assert_int_equal(p2p__addrsel_watch(&loop, 20, fake_list_fn, &f, on_change, &s, &w, NULL), 0);
    assert_int_equal(f.calls, 1); /* the baseline, no callback */
    /* an unref'd timer alone does not keep the loop running */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    int never = 0;
    run_until(&loop, &never, 100);
    assert_true(f.calls >= 3);
    assert_int_equal(s.calls, 0);

    /* the same set in another order is no change */
    p2p_addrsel_iface tmp = f.ifs[0];
    f.ifs[0] = f.ifs[1];
    f.ifs[1] = tmp;
    run_until(&loop, &never, 60);
    assert_int_equal(s.calls, 0);

    /* a failed reading is skipped */
    f.fail = UV_EIO;
    run_until(&loop, &never, 60);
    assert_int_equal(s.calls, 0);
    f.fail = 0;

    /* link down on eth1: its address goes */
    f.n = 1;
    f.ifs[0] = (p2p_addrsel_iface)IF("eth0", "10.0.0.5", 24);
    assert_true(run_until(&loop, &s.calls, 1000));
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.first_ip, "10.0.0.5");
    run_until(&loop, &never, 60);
    assert_int_equal(s.calls, 1); /* reported once */

    /* a prefix change is a change; stop from inside the callback */
    f.ifs[0].prefix = 16;
    s.stop_in_cb = w;
    s.changed = 0;
    assert_true(run_until(&loop, &s.changed, 1000));
    assert_int_equal(s.calls, 2);
    int calls = f.calls;
    run_until(&loop, &never, 60);
    assert_int_equal(f.calls, calls);
    assert_int_equal(s.calls, 2);
    loop_finish(&loop);

    /* errors */
    uv_loop_init(&loop);
    char *err = NULL;
    f.fail = UV_EPERM;
    assert_int_equal(p2p__addrsel_watch(&loop, 0, fake_list_fn, &f, on_change, &s, &w, &err), UV_EPERM);
    assert_non_null(err);
    free(err);
    assert_int_equal(p2p__addrsel_watch(&loop, 0, NULL, NULL, NULL, &s, &w, NULL), -EINVAL);
    /* the system list with the default period */
    assert_int_equal(p2p__addrsel_watch(&loop, 0, NULL, NULL, on_change, &s, &w, NULL), 0);
    p2p__addrsel_watch_stop(w);
    loop_finish(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_table),
        cmocka_unit_test(test_rank_details),
        cmocka_unit_test(test_parse_target),
        cmocka_unit_test(test_probe_listening_port_wins),
        cmocka_unit_test(test_probe_first_ranked_wins),
        cmocka_unit_test(test_probe_nothing_listening_falls_back),
        cmocka_unit_test(test_probe_unbindable_and_no_targets),
        cmocka_unit_test(test_probe_deadline),
        cmocka_unit_test(test_probe_cancel),
        cmocka_unit_test(test_select_overrides),
        cmocka_unit_test(test_select_probes),
        cmocka_unit_test(test_system_interfaces),
        cmocka_unit_test(test_watch_detects_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
