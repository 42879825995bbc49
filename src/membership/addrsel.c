/*
 * addrsel.c — choosing the address a multi-homed node advertises: a pure
 * ranking of the interface addresses against the coordinators' addresses, a
 * parallel TCP-connect probe from each candidate on the libuv loop, the config
 * overrides in front of it, and a polling watcher for interface changes. The
 * rules are written in addrsel.h; this file follows them in that order.
 *
 * The probe opens one connection per (candidate, coordinator of its family)
 * pair, all at once, under one deadline timer. Every handle it opens is counted;
 * the probe's memory goes when the count drops to zero in a close callback, so
 * a cancel from anywhere (even from inside another callback of the same loop
 * iteration) is safe.
 */
#include "membership/addrsel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* ---- addresses ------------------------------------------------------------------ */

typedef struct ipaddr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t b[16];
} ipaddr;

static size_t addr_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

static size_t addr_bits(int family)
{
    return family == AF_INET ? 32 : 128;
}

/* Parses a bare IP literal (an IPv6 "%zone" suffix is ignored; an IPv4-mapped
 * IPv6 address becomes IPv4). 0 or -EINVAL. */
static int parse_ip(const char *s, ipaddr *a)
{
    char buf[INET6_ADDRSTRLEN + 1];
    size_t n = strcspn(s, "%");
    if (n == 0 || n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, buf, a->b) == 1) {
        a->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, a->b) != 1)
        return -EINVAL;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a->b, mapped, 12) == 0) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->family = AF_INET;
    } else {
        a->family = AF_INET6;
    }
    return 0;
}

/* "ip", "ip:port" (IPv4) or "[v6]:port" into an address and a port (0 when none). */
static int parse_hostport(const char *s, ipaddr *a, int *port)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *p = NULL;
    *port = 0;
    if (s == NULL)
        return -EINVAL;
    const char *colon = strchr(s, ':');
    if (s[0] != '[' && (colon == NULL || strchr(colon + 1, ':') != NULL))
        return parse_ip(s, a); /* a bare IPv4 or IPv6 literal */
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || (size_t)(close - s - 1) >= sizeof host)
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        if (close[1] == ':')
            p = close + 2;
        else if (close[1] != '\0')
            return -EINVAL;
    } else { /* exactly one colon: IPv4:port */
        if ((size_t)(colon - s) >= sizeof host)
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        p = colon + 1;
    }
    if (parse_ip(host, a) != 0)
        return -EINVAL;
    if (p != NULL) {
        char *end = NULL;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        long v = strtol(p, &end, 10);
        if (*end != '\0' || v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    return 0;
}

int p2p__addrsel_parse_target(const char *s, struct sockaddr_storage *sa)
{
    ipaddr a;
    int port;
    if (sa == NULL || parse_hostport(s, &a, &port) != 0)
        return -EINVAL;
    memset(sa, 0, sizeof *sa);
    if (a.family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        memcpy(&v4->sin_addr, a.b, 4);
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        memcpy(&v6->sin6_addr, a.b, 16);
    }
    return 0;
}

static int sa_to_ipaddr(const struct sockaddr_storage *sa, ipaddr *a, int *port)
{
    memset(a, 0, sizeof *a);
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        a->family = AF_INET;
        memcpy(a->b, &v4->sin_addr, 4);
        *port = ntohs(v4->sin_port);
        return 0;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        a->family = AF_INET6;
        memcpy(a->b, &v6->sin6_addr, 16);
        *port = ntohs(v6->sin6_port);
        return 0;
    }
    return -EINVAL;
}

static void ip_name(const ipaddr *a, char *buf, size_t len)
{
    if (inet_ntop(a->family, a->b, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "?");
}

/* "1.2.3.4:80" or "[::1]:80". */
static void sa_name(const struct sockaddr_storage *sa, char *buf, size_t len)
{
    ipaddr a;
    int port = 0;
    char ip[INET6_ADDRSTRLEN];
    if (sa_to_ipaddr(sa, &a, &port) != 0) {
        snprintf(buf, len, "?");
        return;
    }
    ip_name(&a, ip, sizeof ip);
    snprintf(buf, len, a.family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

/* 1 if the first `bits` bits of a and b are equal (same family). */
static int prefix_equal(const ipaddr *a, const ipaddr *b, size_t bits)
{
    size_t full = bits / 8, rest = bits % 8;
    if (memcmp(a->b, b->b, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a->b[full] & mask) == (b->b[full] & mask);
}

static int in_net(const ipaddr *a, const uint8_t *net, size_t bits)
{
    ipaddr n = {.family = a->family};
    memcpy(n.b, net, addr_len(a->family));
    return prefix_equal(a, &n, bits);
}

static int is_unspecified(const ipaddr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->b, zero, addr_len(a->family)) == 0;
}

static int is_loopback(const ipaddr *a)
{
    static const uint8_t v4[4] = {127}, v6[16] = {[15] = 1};
    return a->family == AF_INET ? in_net(a, v4, 8) : memcmp(a->b, v6, 16) == 0;
}

/* Never advertised: APIPA, link-local, multicast, broadcast. */
static int is_unusable(const ipaddr *a)
{
    if (is_unspecified(a))
        return 1;
    if (a->family == AF_INET) {
        static const uint8_t apipa[4] = {169, 254}, mcast[4] = {224}, bcast[4] = {255, 255, 255, 255};
        return in_net(a, apipa, 16) || in_net(a, mcast, 4) || in_net(a, bcast, 32);
    }
    static const uint8_t ll[16] = {0xfe, 0x80}, mc[16] = {0xff};
    return in_net(a, ll, 10) || in_net(a, mc, 8);
}

static int is_private(const ipaddr *a)
{
    if (a->family == AF_INET) {
        static const uint8_t n10[4] = {10}, n172[4] = {172, 16}, n192[4] = {192, 168}, n100[4] = {100, 64};
        return in_net(a, n10, 8) || in_net(a, n172, 12) || in_net(a, n192, 16) || in_net(a, n100, 10);
    }
    static const uint8_t ula[16] = {0xfc};
    return in_net(a, ula, 7);
}

/* ---- ranking --------------------------------------------------------------------- */

typedef struct ranked {
    p2p_addrsel_cand c;
    ipaddr a;
    int v6_first; /* copied into every entry so the comparator needs no context */
} ranked;

static int cmp_ranked(const void *x, const void *y)
{
    const ranked *p = x, *q = y;
    int ps = (p->c.why & P2P_ADDRSEL_SAME_SUBNET) != 0, qs = (q->c.why & P2P_ADDRSEL_SAME_SUBNET) != 0;
    if (ps != qs)
        return qs - ps;
    if (ps && p->c.match_prefix != q->c.match_prefix)
        return q->c.match_prefix - p->c.match_prefix;
    if (p->a.family != q->a.family) {
        int p_pref = (p->a.family == AF_INET6) == (p->v6_first != 0);
        return p_pref ? -1 : 1;
    }
    int pp = (p->c.why & P2P_ADDRSEL_PRIVATE) != 0, qp = (q->c.why & P2P_ADDRSEL_PRIVATE) != 0;
    if (pp != qp)
        return qp - pp;
    int pl = (p->c.why & P2P_ADDRSEL_LOOPBACK) != 0, ql = (q->c.why & P2P_ADDRSEL_LOOPBACK) != 0;
    if (pl != ql)
        return pl - ql;
    int r = strcmp(p->c.ifname, q->c.ifname);
    if (r != 0)
        return r;
    return memcmp(p->a.b, q->a.b, 16);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

int p2p__addrsel_rank(const p2p_addrsel_iface *ifs, size_t n, const char *const *coords, size_t n_coords,
                      p2p_addrsel_cand *out, size_t cap, size_t *n_out, char **err)
{
    ipaddr *co = NULL;
    ranked *r = NULL;
    int rc = 0;
    if ((ifs == NULL && n > 0) || (coords == NULL && n_coords > 0) || (out == NULL && cap > 0) || n_out == NULL)
        return p2p__fail(err, -EINVAL, "addrsel: NULL argument");
    co = p2p__xcalloc(n_coords ? n_coords : 1, sizeof *co);
    int all_v6 = n_coords > 0, all_loop = n_coords > 0;
    for (size_t i = 0; i < n_coords; i++) {
        int port;
        if (parse_hostport(coords[i], &co[i], &port) != 0) {
            rc = p2p__fail(err, -EINVAL, "addrsel: coordinator address '%s' is not an IP literal",
                           coords[i] ? coords[i] : "(null)");
            goto out;
        }
        all_v6 &= co[i].family == AF_INET6;
        all_loop &= is_loopback(&co[i]);
    }

    r = p2p__xcalloc(n ? n : 1, sizeof *r);
    size_t m = 0, non_loop = 0;
    for (size_t i = 0; i < n; i++) {
        ranked *e = &r[m];
        if (parse_ip(ifs[i].ip, &e->a) != 0 || is_unusable(&e->a))
            continue;
        int loop = is_loopback(&e->a) || ifs[i].internal;
        ip_name(&e->a, e->c.ip, sizeof e->c.ip);
        copy_str(e->c.ifname, sizeof e->c.ifname, ifs[i].name);
        e->c.family = e->a.family;
        e->c.prefix = ifs[i].prefix;
        e->c.match_prefix = -1;
        e->c.why = (loop ? P2P_ADDRSEL_LOOPBACK : 0) | (is_private(&e->a) ? P2P_ADDRSEL_PRIVATE : 0);
        e->v6_first = all_v6;
        size_t bits = addr_bits(e->a.family);
        size_t pfx = ifs[i].prefix < 0 || (size_t)ifs[i].prefix > bits ? bits : (size_t)ifs[i].prefix;
        for (size_t k = 0; k < n_coords; k++)
            if (co[k].family == e->a.family && prefix_equal(&e->a, &co[k], pfx)) {
                e->c.why |= P2P_ADDRSEL_SAME_SUBNET;
                e->c.match_prefix = (int)pfx;
            }
        non_loop += !loop;
        m++;
    }
    /* Loopback stays only for a host with nothing else or a cluster on this host. */
    if (non_loop > 0 && !all_loop) {
        size_t k = 0;
        for (size_t i = 0; i < m; i++)
            if (!(r[i].c.why & P2P_ADDRSEL_LOOPBACK))
                r[k++] = r[i];
        m = k;
    }
    qsort(r, m, sizeof *r, cmp_ranked);
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        int dup = 0;
        for (size_t j = 0; j < k && !dup; j++)
            dup = r[j].a.family == r[i].a.family && memcmp(r[j].a.b, r[i].a.b, 16) == 0;
        if (!dup)
            r[k++] = r[i];
    }
    m = k;
    *n_out = m < cap ? m : cap;
    for (size_t i = 0; i < *n_out; i++)
        out[i] = r[i].c;
    if (m == 0)
        rc = p2p__fail(err, -ENOENT, "addrsel: no usable interface address (only link-local, APIPA or none)");
out:
    free(co);
    free(r);
    return rc;
}

const char *p2p__addrsel_describe(const p2p_addrsel_cand *c, char *buf, size_t len)
{
    char extra[96] = "";
    size_t o = 0;
    if (c->why & P2P_ADDRSEL_SAME_SUBNET)
        o += (size_t)snprintf(extra + o, sizeof extra - o, ", in a coordinator's subnet /%d", c->match_prefix);
    if (o < sizeof extra && (c->why & P2P_ADDRSEL_PRIVATE))
        o += (size_t)snprintf(extra + o, sizeof extra - o, ", private");
    if (o < sizeof extra && (c->why & P2P_ADDRSEL_LOOPBACK))
        snprintf(extra + o, sizeof extra - o, ", loopback");
    snprintf(buf, len, "%s (%s%s)", c->ip, c->ifname[0] ? c->ifname : "-", extra);
    return buf;
}

/* ---- interface lists --------------------------------------------------------------- */

static int mask_bits(const uint8_t *m, size_t len)
{
    int bits = 0;
    for (size_t i = 0; i < len; i++)
        bits += __builtin_popcount(m[i]);
    return bits;
}

int p2p__addrsel_interfaces(void *arg, p2p_addrsel_iface **out, size_t *n)
{
    uv_interface_address_t *ifs = NULL;
    int cnt = 0;
    int r = uv_interface_addresses(&ifs, &cnt);
    if (r != 0)
        return r;
    p2p_addrsel_iface *v = p2p__xcalloc(cnt > 0 ? (size_t)cnt : 1, sizeof *v);
    size_t m = 0;
    for (int i = 0; i < cnt; i++) {
        p2p_addrsel_iface *e = &v[m];
        if (ifs[i].address.address4.sin_family == AF_INET) {
            uv_ip4_name(&ifs[i].address.address4, e->ip, sizeof e->ip);
            e->prefix = mask_bits((const uint8_t *)&ifs[i].netmask.netmask4.sin_addr, 4);
        } else if (ifs[i].address.address6.sin6_family == AF_INET6) {
            uv_ip6_name(&ifs[i].address.address6, e->ip, sizeof e->ip);
            e->prefix = mask_bits((const uint8_t *)&ifs[i].netmask.netmask6.sin6_addr, 16);
        } else {
            continue;
        }
        copy_str(e->name, sizeof e->name, ifs[i].name);
        e->internal = ifs[i].is_internal;
        m++;
    }
    uv_free_interface_addresses(ifs, cnt);
    *out = v;
    *n = m;
    return 0;
}

/* ---- probing ----------------------------------------------------------------------- */

enum { C_PENDING, C_OK, C_FAILED, C_UNTESTED };

typedef struct attempt {
    uv_tcp_t tcp;
    uv_connect_t req;
    p2p_addrsel_probe *p;
    size_t cand, target;
    int open; /* tcp initialised (counted in p->handles) */
} attempt;

struct p2p_addrsel_probe {
    uv_loop_t *loop;
    uv_timer_t timer;
    p2p_addrsel_done_cb cb;
    void *arg;
    p2p_addrsel_cand cands[P2P_ADDRSEL_MAX_CANDIDATES];
    size_t n;
    struct sockaddr_storage targets[P2P_ADDRSEL_MAX_TARGETS];
    size_t n_targets;
    int state[P2P_ADDRSEL_MAX_CANDIDATES];
    int error[P2P_ADDRSEL_MAX_CANDIDATES];   /* first error of a candidate's attempts */
    int pending[P2P_ADDRSEL_MAX_CANDIDATES]; /* attempts still connecting */
    size_t won_target[P2P_ADDRSEL_MAX_CANDIDATES];
    uint64_t won_ms[P2P_ADDRSEL_MAX_CANDIDATES];
    attempt *att;
    size_t n_att;
    uint64_t started;
    int handles;  /* open handles; the probe is freed when this drops to 0 */
    int starting; /* inside p2p__addrsel_probe: results are delivered later */
    int finished; /* the callback ran, or the probe was cancelled */
    int override; /* deliver cands[0] with status 0 and `note` */
    char note[P2P_ADDRSEL_IP_MAX + 64];
};

static void probe_release(p2p_addrsel_probe *p)
{
    if (--p->handles == 0) {
        free(p->att);
        free(p);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    probe_release(h->data);
}

static void on_attempt_closed(uv_handle_t *h)
{
    attempt *a = h->data;
    probe_release(a->p);
}

/* Closes every handle; the memory goes with the last close callback. */
static void probe_shutdown(p2p_addrsel_probe *p)
{
    p->finished = 1;
    for (size_t i = 0; i < p->n_att; i++)
        if (p->att[i].open && !uv_is_closing((uv_handle_t *)&p->att[i].tcp))
            uv_close((uv_handle_t *)&p->att[i].tcp, on_attempt_closed);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, on_handle_closed);
}

static void deliver(p2p_addrsel_probe *p, int status, size_t idx, const char *reason)
{
    p2p_addrsel_done_cb cb = p->cb;
    void *arg = p->arg;
    p2p_addrsel_cand chosen = p->cands[idx];
    probe_shutdown(p); /* before the callback, which may run the loop or free its own state */
    cb(arg, status, &chosen, reason);
}

/* Appends "ip: error" for failed candidates (at most 4) to buf. */
static void list_failures(const p2p_addrsel_probe *p, size_t upto, char *buf, size_t len)
{
    size_t o = strlen(buf);
    int shown = 0;
    for (size_t i = 0; i < upto && o < len; i++) {
        if (p->state[i] != C_FAILED && p->state[i] != C_PENDING)
            continue;
        if (shown == 4) {
            snprintf(buf + o, len - o, ", ...");
            return;
        }
        const char *e = p->state[i] == C_PENDING ? "no answer in time" : uv_strerror(p->error[i]);
        o += (size_t)snprintf(buf + o, len - o, "%s%s: %s", shown ? ", " : "", p->cands[i].ip, e);
        shown++;
    }
}

/* Decides when the outcome is known: the best-ranked candidate still in the race
 * has connected, or nothing is pending, or (at_deadline) time is up. */
static void probe_check(p2p_addrsel_probe *p, int at_deadline)
{
    char reason[768], who[384], tgt[80];
    if (p->finished || p->starting)
        return;
    if (p->override) {
        deliver(p, 0, 0, p->note);
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->state[i] == C_PENDING && !at_deadline)
            return; /* a better-ranked candidate may still connect */
        if (p->state[i] != C_OK)
            continue;
        p2p__addrsel_describe(&p->cands[i], who, sizeof who);
        sa_name(&p->targets[p->won_target[i]], tgt, sizeof tgt);
        snprintf(reason, sizeof reason, "%s connected to %s in %llu ms", who, tgt, (unsigned long long)p->won_ms[i]);
        if (i > 0) {
            strncat(reason, "; better-ranked: ", sizeof reason - strlen(reason) - 1);
            list_failures(p, i, reason, sizeof reason);
        }
        deliver(p, 0, i, reason);
        return;
    }
    int status = -EHOSTUNREACH, pending = 0;
    for (size_t i = 0; i < p->n; i++) {
        pending |= p->state[i] == C_PENDING;
        if (status == -EHOSTUNREACH && p->state[i] == C_FAILED)
            status = p->error[i];
    }
    if (pending)
        status = -ETIMEDOUT;
    p2p__addrsel_describe(&p->cands[0], who, sizeof who);
    if (p->n_targets == 0)
        snprintf(reason, sizeof reason, "no coordinator address to probe; advertising the best-ranked %s", who);
    else if (status == -EHOSTUNREACH)
        snprintf(reason, sizeof reason,
                 "no candidate has a coordinator address of its family to probe; advertising the best-ranked %s", who);
    else {
        snprintf(reason, sizeof reason, "no candidate reached a coordinator (");
        list_failures(p, p->n, reason, sizeof reason);
        size_t o = strlen(reason);
        snprintf(reason + o, sizeof reason - o, "); advertising the best-ranked %s", who);
    }
    deliver(p, status, 0, reason);
}

static void on_deadline(uv_timer_t *t)
{
    probe_check(t->data, 1);
}

static void attempt_done(attempt *a, int status)
{
    p2p_addrsel_probe *p = a->p;
    size_t c = a->cand;
    if (p->finished)
        return;
    p->pending[c]--;
    if (status == 0 && p->state[c] != C_OK) {
        p->state[c] = C_OK;
        p->won_target[c] = a->target;
        p->won_ms[c] = uv_now(p->loop) - p->started;
    } else if (status != 0 && p->error[c] == 0) {
        p->error[c] = status;
    }
    if (p->state[c] == C_PENDING && p->pending[c] == 0)
        p->state[c] = C_FAILED;
    /* the connection has done its job; close it now rather than at the end */
    if (a->open && !uv_is_closing((uv_handle_t *)&a->tcp))
        uv_close((uv_handle_t *)&a->tcp, on_attempt_closed);
    probe_check(p, 0);
}

static void on_connect(uv_connect_t *req, int status)
{
    attempt *a = req->data;
    if (status == UV_ECANCELED) /* closed by us */
        return;
    attempt_done(a, status);
}

static int sockaddr_for_cand(const p2p_addrsel_cand *c, struct sockaddr_storage *sa)
{
    return p2p__addrsel_parse_target(c->ip, sa);
}

static void start_attempt(p2p_addrsel_probe *p, attempt *a)
{
    struct sockaddr_storage src;
    int r;
    a->p = p;
    if ((r = uv_tcp_init(p->loop, &a->tcp)) != 0)
        goto fail;
    a->open = 1;
    a->tcp.data = a;
    a->req.data = a;
    p->handles++;
    if ((r = sockaddr_for_cand(&p->cands[a->cand], &src)) != 0 ||
        (r = uv_tcp_bind(&a->tcp, (const struct sockaddr *)&src, 0)) != 0 ||
        (r = uv_tcp_connect(&a->req, &a->tcp, (const struct sockaddr *)&p->targets[a->target], on_connect)) != 0)
        goto fail;
    return;
fail:
    attempt_done(a, r);
}

static p2p_addrsel_probe *probe_new(uv_loop_t *loop, p2p_addrsel_done_cb cb, void *arg)
{
    p2p_addrsel_probe *p = p2p__xcalloc(1, sizeof *p);
    p->loop = loop;
    p->cb = cb;
    p->arg = arg;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->handles = 1;
    p->started = uv_now(loop);
    return p;
}

int p2p__addrsel_probe(uv_loop_t *loop, const p2p_addrsel_cand *cands, size_t n, const struct sockaddr_storage *targets,
                       size_t n_targets, uint64_t timeout_ms, p2p_addrsel_done_cb cb, void *arg,
                       p2p_addrsel_probe **out, char **err)
{
    if (loop == NULL || cands == NULL || cb == NULL || (targets == NULL && n_targets > 0))
        return p2p__fail(err, -EINVAL, "addrsel: NULL argument");
    if (n == 0 || n > P2P_ADDRSEL_MAX_CANDIDATES)
        return p2p__fail(err, -EINVAL, "addrsel: %zu candidates (1..%d)", n, P2P_ADDRSEL_MAX_CANDIDATES);
    if (n_targets > P2P_ADDRSEL_MAX_TARGETS)
        return p2p__fail(err, -EINVAL, "addrsel: %zu coordinator addresses (at most %d)", n_targets,
                         P2P_ADDRSEL_MAX_TARGETS);
    for (size_t i = 0; i < n_targets; i++)
        if (targets[i].ss_family != AF_INET && targets[i].ss_family != AF_INET6)
            return p2p__fail(err, -EINVAL, "addrsel: coordinator address %zu is not IPv4 or IPv6", i);
    for (size_t i = 0; i < n; i++) {
        ipaddr a;
        if (parse_ip(cands[i].ip, &a) != 0)
            return p2p__fail(err, -EINVAL, "addrsel: candidate '%s' is not an IP literal", cands[i].ip);
    }

    p2p_addrsel_probe *p = probe_new(loop, cb, arg);
    memcpy(p->cands, cands, n * sizeof *cands);
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        ipaddr a;
        parse_ip(cands[i].ip, &a); /* checked above */
        p->cands[i].family = a.family;
    }
    if (n_targets)
        memcpy(p->targets, targets, n_targets * sizeof *targets);
    p->n_targets = n_targets;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < n_targets; t++)
            count += targets[t].ss_family == p->cands[i].family;
    p->att = p2p__xcalloc(count ? count : 1, sizeof *p->att);
    for (size_t i = 0; i < n; i++) {
        p->state[i] = C_UNTESTED;
        for (size_t t = 0; t < n_targets; t++)
            if (targets[t].ss_family == p->cands[i].family) {
                p->att[p->n_att++] = (attempt){.cand = i, .target = t};
                p->state[i] = C_PENDING;
                p->pending[i]++;
            }
    }
    p->starting = 1;
    for (size_t i = 0; i < p->n_att; i++)
        start_attempt(p, &p->att[i]);
    p->starting = 0;
    int any_pending = 0;
    for (size_t i = 0; i < n; i++)
        any_pending |= p->state[i] == C_PENDING;
    /* Nothing in flight (every bind failed, or nothing to probe): decide on the
     * next loop iteration, never inside this call. */
    uv_timer_start(&p->timer, on_deadline, any_pending ? (timeout_ms ? timeout_ms : P2P_ADDRSEL_DEFAULT_TIMEOUT_MS) : 0,
                   0);
    if (out)
        *out = p;
    return 0;
}

void p2p__addrsel_probe_cancel(p2p_addrsel_probe *p)
{
    if (p != NULL && !p->finished)
        probe_shutdown(p);
}

/* ---- select: overrides, then rank and probe ------------------------------------------ */

static int is_any(const char *s)
{
    ipaddr a;
    return s == NULL || s[0] == '\0' || (parse_ip(s, &a) == 0 && is_unspecified(&a));
}

static int start_override(uv_loop_t *loop, const char *addr, const char *why, p2p_addrsel_done_cb cb, void *arg,
                          p2p_addrsel_probe **out)
{
    p2p_addrsel_probe *p = probe_new(loop, cb, arg);
    ipaddr a;
    p2p_addrsel_cand *c = &p->cands[0];
    copy_str(c->ip, sizeof c->ip, addr);
    if (parse_ip(addr, &a) == 0) {
        ip_name(&a, c->ip, sizeof c->ip);
        c->family = a.family;
        c->why = (is_private(&a) ? P2P_ADDRSEL_PRIVATE : 0) | (is_loopback(&a) ? P2P_ADDRSEL_LOOPBACK : 0);
    }
    c->prefix = c->match_prefix = -1;
    p->n = 1;
    p->override = 1;
    snprintf(p->note, sizeof p->note, "%s is set: advertising %s (not probed)", why, c->ip);
    uv_timer_start(&p->timer, on_deadline, 0, 0);
    if (out)
        *out = p;
    return 0;
}

int p2p__addrsel_select(uv_loop_t *loop, const p2p_addrsel_opts *o, p2p_addrsel_done_cb cb, void *arg,
                        p2p_addrsel_probe **out, char **err)
{
    if (loop == NULL || o == NULL || cb == NULL || (o->coordinators == NULL && o->n_coordinators > 0))
        return p2p__fail(err, -EINVAL, "addrsel: NULL argument");
    if (o->advertise_address != NULL && o->advertise_address[0] != '\0') {
        if (strlen(o->advertise_address) >= P2P_ADDRSEL_IP_MAX)
            return p2p__fail(err, -EINVAL, "addrsel: advertise_address is longer than %d bytes",
                             P2P_ADDRSEL_IP_MAX - 1);
        return start_override(loop, o->advertise_address, "advertise_address", cb, arg, out);
    }
    if (!is_any(o->bind_address)) {
        ipaddr a;
        if (parse_ip(o->bind_address, &a) != 0)
            return p2p__fail(err, -EINVAL, "addrsel: bind_address '%s' is not an IP literal", o->bind_address);
        return start_override(loop, o->bind_address, "bind_address", cb, arg, out);
    }
    if (o->n_coordinators > P2P_ADDRSEL_MAX_TARGETS)
        return p2p__fail(err, -EINVAL, "addrsel: %zu coordinator addresses (at most %d)", o->n_coordinators,
                         P2P_ADDRSEL_MAX_TARGETS);
    struct sockaddr_storage targets[P2P_ADDRSEL_MAX_TARGETS];
    size_t nt = 0;
    for (size_t i = 0; i < o->n_coordinators; i++) {
        if (p2p__addrsel_parse_target(o->coordinators[i], &targets[nt]) != 0)
            return p2p__fail(err, -EINVAL, "addrsel: coordinator address '%s' is not an IP literal with a port",
                             o->coordinators[i] ? o->coordinators[i] : "(null)");
        ipaddr a;
        int port = 0;
        sa_to_ipaddr(&targets[nt], &a, &port);
        if (port != 0) /* without a port it still counts for ranking, but cannot be probed */
            nt++;
    }
    p2p_addrsel_iface *ifs = NULL;
    size_t n_ifs = 0;
    int r = (o->list ? o->list : p2p__addrsel_interfaces)(o->list_arg, &ifs, &n_ifs);
    if (r != 0)
        return p2p__fail(err, r, "addrsel: cannot list interface addresses: %s", uv_strerror(r));
    p2p_addrsel_cand *cands = p2p__xcalloc(P2P_ADDRSEL_MAX_CANDIDATES, sizeof *cands);
    size_t nc = 0;
    r = p2p__addrsel_rank(ifs, n_ifs, o->coordinators, o->n_coordinators, cands, P2P_ADDRSEL_MAX_CANDIDATES, &nc, err);
    if (r == 0)
        r = p2p__addrsel_probe(loop, cands, nc, targets, nt, o->timeout_ms, cb, arg, out, err);
    free(ifs);
    free(cands);
    return r;
}

/* ---- watching ---------------------------------------------------------------------------- */

struct p2p_addrsel_watch {
    uv_timer_t timer;
    p2p_addrsel_list_fn list;
    void *list_arg;
    p2p_addrsel_change_cb cb;
    void *arg;
    p2p_addrsel_iface *last; /* sorted */
    size_t n_last;
    int stopped;
};

static int cmp_iface(const void *x, const void *y)
{
    const p2p_addrsel_iface *a = x, *b = y;
    int r = strcmp(a->ip, b->ip);
    if (r == 0)
        r = (a->prefix > b->prefix) - (a->prefix < b->prefix);
    if (r == 0)
        r = strcmp(a->name, b->name);
    return r;
}

/* Reads and sorts the list; 1 if it differs from the last reading (and takes it
 * as the new one), 0 if the same, negative on a failed reading. */
static int watch_read(p2p_addrsel_watch *w)
{
    p2p_addrsel_iface *v = NULL;
    size_t n = 0;
    int r = w->list(w->list_arg, &v, &n);
    if (r != 0)
        return r < 0 ? r : -EIO;
    if (n > 1)
        qsort(v, n, sizeof *v, cmp_iface);
    int same = n == w->n_last;
    for (size_t i = 0; same && i < n; i++)
        same = cmp_iface(&v[i], &w->last[i]) == 0;
    if (same) {
        free(v);
        return 0;
    }
    free(w->last);
    w->last = v;
    w->n_last = n;
    return 1;
}

static void on_watch_tick(uv_timer_t *t)
{
    p2p_addrsel_watch *w = t->data;
    if (w->stopped)
        return;
    if (watch_read(w) == 1)
        w->cb(w->arg, w->last, w->n_last);
}

int p2p__addrsel_watch(uv_loop_t *loop, uint64_t interval_ms, p2p_addrsel_list_fn list, void *list_arg,
                       p2p_addrsel_change_cb cb, void *arg, p2p_addrsel_watch **out, char **err)
{
    if (loop == NULL || cb == NULL || out == NULL)
        return p2p__fail(err, -EINVAL, "addrsel: NULL argument");
    p2p_addrsel_watch *w = p2p__xcalloc(1, sizeof *w);
    w->list = list ? list : p2p__addrsel_interfaces;
    w->list_arg = list_arg;
    w->cb = cb;
    w->arg = arg;
    int r = watch_read(w);
    if (r < 0) {
        free(w);
        return p2p__fail(err, r, "addrsel: cannot list interface addresses: %s", uv_strerror(r));
    }
    if (interval_ms == 0)
        interval_ms = P2P_ADDRSEL_DEFAULT_WATCH_MS;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_watch_tick, interval_ms, interval_ms);
    uv_unref((uv_handle_t *)&w->timer);
    *out = w;
    return 0;
}

static void on_watch_closed(uv_handle_t *h)
{
    p2p_addrsel_watch *w = h->data;
    free(w->last);
    free(w);
}

void p2p__addrsel_watch_stop(p2p_addrsel_watch *w)
{
    if (w == NULL || w->stopped)
        return;
    w->stopped = 1;
    uv_close((uv_handle_t *)&w->timer, on_watch_closed);
}
