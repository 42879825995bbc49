/*
 * l2.c — the Redis client of the cache (see l2.h for the contract and the
 * hiredis sharp edge it works around).
 *
 * States: DOWN (the connect timer waits out the backoff) -> CONNECTING (the
 * same timer is the deadline for resolve + connect + handshake) -> READY.
 * Any failure goes back to DOWN with the next, doubled, delay; READY resets
 * the delay.
 *
 * Requests. Every command sent carries a `req` as hiredis privdata. hiredis
 * calls each callback exactly once: with a reply, or with NULL when the
 * context is torn down (by us or because the link died). A request is freed
 * when hiredis is done with it AND its caller has been answered, in whichever
 * order those happen: a command that times out is answered -ETIMEDOUT first,
 * then the link is dropped, which hands the request back. Requests in flight
 * sit in a list in the order they were sent; all share one command timeout, so
 * the list is also in deadline order and one timer armed for its head is
 * enough.
 *
 * Who frees hiredis contexts: hiredis frees a context itself after a failed
 * connect or a lost link (we then just forget it); we free it (redisAsyncFree)
 * when we drop the link or close. We never free it inside the connect
 * callback, where hiredis still uses it afterwards. `l2->ac` is cleared before
 * any free, so callbacks of a context being torn down recognise it as stale.
 */
#include "cache/l2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/util.h"
#include "p2p/p2p.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <hiredis/adapters/libuv.h>
#pragma GCC diagnostic pop

#define SCAN_COUNT "512"
#define PROBE_CONNECTING_MS 50
#define PROBE_READY_MS 1000

/* ------------------------------------------------------------------------ */
/* URL                                                                       */
/* ------------------------------------------------------------------------ */

static int parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
           ch == '_';
}

int p2p__l2_parse_url(const char *url, p2p_l2_target *out, char **err)
{
    p2p_l2_target t;
    memset(&t, 0, sizeof t);
    t.port = 6379;
    long v;
    if (!url || !*url)
        return p2p__fail(err, -EINVAL, "empty Redis URL");
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return p2p__fail(err, -EINVAL, "Redis URL contains a space or control character");
    if (strncmp(url, "rediss://", 9) == 0)
        return p2p__fail(err, -EINVAL, "rediss:// (TLS) is not supported; use redis:// on a trusted network or unix:");
    if (strncmp(url, "unix:", 5) == 0) {
        t.is_unix = 1;
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (*p != '/')
            return p2p__fail(err, -EINVAL, "unix: needs an absolute socket path (unix:/path/to/redis.sock)");
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n > P2P_L2_MAX_PATH)
            return p2p__fail(err, -EINVAL, "socket path longer than %d bytes", P2P_L2_MAX_PATH);
        memcpy(t.path, p, n);
        if (q) {
            if (strncmp(q, "?db=", 4) != 0 || parse_uint(q + 4, strlen(q + 4), 1000000, &v) != 0)
                return p2p__fail(err, -EINVAL, "after the socket path only ?db=N (0..1000000) is allowed");
            t.db = (int)v;
        }
        *out = t;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return p2p__fail(err, -EINVAL, "Redis URL must start with redis:// or unix:");
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/"); /* end of the authority */
    const char *at = NULL;
    for (const char *s = p; s < end; s++)
        if (*s == '@')
            at = s;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return p2p__fail(err, -EINVAL, "credentials must be written [user]:password@");
        size_t ul = (size_t)(colon - p), pl = (size_t)(at - colon - 1);
        if (ul > P2P_L2_MAX_SECRET || pl > P2P_L2_MAX_SECRET || pl == 0)
            return p2p__fail(err, -EINVAL, "user or password empty or longer than %d bytes", P2P_L2_MAX_SECRET);
        memcpy(t.user, p, ul);
        memcpy(t.password, colon + 1, pl);
        p = at + 1;
    }
    const char *hs, *he, *rest;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return p2p__fail(err, -EINVAL, "IPv6 address without its closing ']'");
        hs = p + 1;
        he = close;
        rest = close + 1;
        char tmp[64];
        struct in6_addr a6;
        if ((size_t)(he - hs) >= sizeof tmp)
            return p2p__fail(err, -EINVAL, "bad IPv6 address");
        memcpy(tmp, hs, (size_t)(he - hs));
        tmp[he - hs] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return p2p__fail(err, -EINVAL, "bad IPv6 address");
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hs = p;
        he = colon ? colon : end;
        rest = he;
        for (const char *s = hs; s < he; s++)
            if (!host_char_ok(*s))
                return p2p__fail(err, -EINVAL, "bad character in the host name");
    }
    if (he == hs)
        return p2p__fail(err, -EINVAL, "no host in the Redis URL");
    if ((size_t)(he - hs) > P2P_L2_MAX_HOST)
        return p2p__fail(err, -EINVAL, "host name longer than %d bytes", P2P_L2_MAX_HOST);
    memcpy(t.host, hs, (size_t)(he - hs));
    if (rest < end) {
        if (*rest != ':' || parse_uint(rest + 1, (size_t)(end - rest - 1), 65535, &v) != 0 || v == 0)
            return p2p__fail(err, -EINVAL, "port must be 1..65535");
        t.port = (int)v;
    }
    if (*end == '/' && end[1]) {
        if (parse_uint(end + 1, strlen(end + 1), 1000000, &v) != 0)
            return p2p__fail(err, -EINVAL, "the path must be a database number 0..1000000");
        t.db = (int)v;
    }
    *out = t;
    return 0;
}

int p2p__l2_ns_valid(const char *ns)
{
    size_t n = ns ? strlen(ns) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!host_char_ok(ns[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef enum { K_GET, K_SET, K_DEL, K_CLEAR } req_kind;

typedef struct req {
    struct req *prev, *next; /* in-flight list while `linked` */
    p2p_l2 *l2;
    req_kind kind;
    unsigned linked : 1;
    unsigned owned : 1;    /* hiredis holds it as privdata */
    unsigned answered : 1; /* the caller got its callback */
    unsigned expired : 1;  /* missed its deadline; answer after the link drops */
    uint64_t sent_at, deadline;
    p2p_l2_get_cb get_cb;
    p2p_l2_done_cb done_cb;
    void *udata;
    /* clear */
    char *pattern;
    char cursor[32];
    uint64_t removed;
    unsigned steps;
    int unlinking;
} req;

struct p2p_l2 {
    uv_loop_t *loop;
    p2p_l2_target target;
    char *prefix;
    char *where; /* "host:port" or the socket path, for log lines (no secrets) */
    uint64_t connect_timeout, command_timeout, backoff_min, backoff_max;
    unsigned max_inflight;
    void (*log)(void *arg, int level, const char *msg);
    void *log_arg;

    p2p_l2_state state;
    redisAsyncContext *ac;
    uv_timer_t conn_timer, cmd_timer, probe_timer;
    int handles_open;
    unsigned resolving; /* getaddrinfo requests outstanding (0 or 1) */
    struct resolve_req *pending_resolve;
    uint64_t attempt; /* id of the current connect attempt */
    uint64_t backoff;
    uint64_t rng;
    int complained; /* logged that Redis is away; quiet until it is back */
    int closing;

    req *head, *tail;
    p2p_l2_stats st;
};

typedef struct resolve_req {
    uv_getaddrinfo_t req;
    p2p_l2 *l2;
    uint64_t attempt;
} resolve_req;

static void logf_(p2p_l2 *l2, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(p2p_l2 *l2, int level, const char *fmt, ...)
{
    if (!l2->log)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    l2->log(l2->log_arg, level, buf);
}

static uint64_t next_rand(p2p_l2 *l2)
{
    /* xorshift64*: jitter only, no secrecy needed */
    uint64_t x = l2->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l2->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void start_attempt(p2p_l2 *l2);
static void maybe_free(p2p_l2 *l2);

static void on_probe(uv_timer_t *t);

static void on_retry_timer(uv_timer_t *t)
{
    start_attempt(t->data);
}

/* ---- requests ---- */

static void req_release(req *q)
{
    if (q->owned || !q->answered || q->linked)
        return;
    free(q->pattern);
    free(q);
}

static void list_unlink(p2p_l2 *l2, req *q)
{
    if (!q->linked)
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        l2->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l2->tail = q->prev;
    q->prev = q->next = NULL;
    q->linked = 0;
}

static void list_append(p2p_l2 *l2, req *q)
{
    q->prev = l2->tail;
    q->next = NULL;
    if (l2->tail)
        l2->tail->next = q;
    else
        l2->head = q;
    l2->tail = q;
    q->linked = 1;
}

static void answer(req *q, int status, const void *value, size_t len, uint64_t ttl)
{
    if (q->answered)
        return;
    q->answered = 1;
    if (q->kind == K_GET) {
        q->get_cb(status, value, len, ttl, q->udata);
    } else if (q->done_cb) {
        q->done_cb(status, q->removed, q->udata);
    }
}

/* ---- link state ---- */

static void schedule_retry(p2p_l2 *l2)
{
    if (l2->closing)
        return;
    l2->state = P2P_L2_DOWN;
    uv_timer_stop(&l2->probe_timer);
    uint64_t d = l2->backoff;
    /* jitter: a delay in [d/2, d], so nodes that lost Redis together do not
     * come back in lockstep */
    uint64_t wait = d / 2 + (d / 2 ? next_rand(l2) % (d / 2 + 1) : 0);
    l2->st.backoff_ms = wait;
    l2->backoff = d * 2 > l2->backoff_max ? l2->backoff_max : d * 2;
    uv_timer_start(&l2->conn_timer, on_retry_timer, wait ? wait : 1, 0);
}

static void complain(p2p_l2 *l2, const char *what, const char *why)
{
    if (l2->complained)
        return;
    l2->complained = 1;
    logf_(l2, P2P_LOG_WARN, "redis at %s %s (%s): the cache answers from L1 and reconnects with backoff", l2->where,
          what, why && *why ? why : "?");
}

/* A connect attempt failed before the link became ready. Never frees l2->ac. */
static void attempt_failed(p2p_l2 *l2, const char *why)
{
    l2->st.connect_failures++;
    complain(l2, "unreachable", why);
    schedule_retry(l2);
}

/* The link (ready or in its handshake) is gone: hiredis is freeing it. */
static void link_lost(p2p_l2 *l2, const char *why)
{
    if (l2->state == P2P_L2_READY) {
        l2->st.disconnects++;
        complain(l2, "lost", why);
        schedule_retry(l2);
    } else if (l2->state == P2P_L2_CONNECTING) {
        attempt_failed(l2, why);
    }
}

/* We give up on the current context: forget it, schedule the retry, then free
 * it (which answers its pending requests). Not from the connect callback. */
static void drop_link(p2p_l2 *l2, const char *why)
{
    redisAsyncContext *ac = l2->ac;
    l2->ac = NULL;
    if (l2->state == P2P_L2_READY) {
        l2->st.disconnects++;
        complain(l2, "dropped", why);
        schedule_retry(l2);
    } else if (l2->state == P2P_L2_CONNECTING) {
        attempt_failed(l2, why);
    }
    if (ac)
        redisAsyncFree(ac);
}

static void became_ready(p2p_l2 *l2)
{
    uv_timer_stop(&l2->conn_timer);
    l2->state = P2P_L2_READY;
    l2->st.connects++;
    l2->backoff = l2->backoff_min;
    l2->st.backoff_ms = 0;
    uv_timer_start(&l2->probe_timer, on_probe, PROBE_READY_MS, PROBE_READY_MS);
    logf_(l2, P2P_LOG_INFO, "redis at %s connected%s", l2->where, l2->st.connects > 1 ? " again" : "");
    l2->complained = 0;
}

/* ---- handshake ---- */

static void on_handshake_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    p2p_l2 *l2 = privdata;
    redisReply *reply = r;
    if (ac != l2->ac || !reply) /* stale context, or being torn down (on_disconnect handles it) */
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof why, "handshake refused: %.120s", reply->str);
        l2->st.errors++;
        drop_link(l2, why);
        return;
    }
    if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0)
        became_ready(l2);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    p2p_l2 *l2 = ac->data;
    if (ac != l2->ac)
        return;
    if (status != REDIS_OK) {
        l2->ac = NULL; /* hiredis frees it after this callback */
        attempt_failed(l2, ac->errstr);
        return;
    }
    /* Pipelined; any error reply aborts the attempt. If a command cannot even be
     * queued (out of memory), the connect deadline ends the attempt: the context
     * may not be freed inside this callback. */
    const p2p_l2_target *t = &l2->target;
    if (t->password[0]) {
        if (t->user[0])
            redisAsyncCommand(ac, on_handshake_reply, l2, "AUTH %s %s", t->user, t->password);
        else
            redisAsyncCommand(ac, on_handshake_reply, l2, "AUTH %s", t->password);
    }
    if (t->db)
        redisAsyncCommand(ac, on_handshake_reply, l2, "SELECT %d", t->db);
    redisAsyncCommand(ac, on_handshake_reply, l2, "PING");
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    p2p_l2 *l2 = ac->data;
    if (ac != l2->ac)
        return;
    l2->ac = NULL;
    link_lost(l2, status == REDIS_OK ? "closed" : ac->errstr);
}

static void connect_to(p2p_l2 *l2, const char *ip)
{
    redisAsyncContext *ac =
        l2->target.is_unix ? redisAsyncConnectUnix(l2->target.path) : redisAsyncConnect(ip, l2->target.port);
    if (!ac) {
        attempt_failed(l2, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        attempt_failed(l2, why);
        return;
    }
    ac->data = l2;
    if (redisLibuvAttach(ac, l2->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        attempt_failed(l2, "cannot attach to the loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    l2->ac = ac;
    uv_timer_start(&l2->probe_timer, on_probe, PROBE_CONNECTING_MS, PROBE_CONNECTING_MS);
}

static void on_resolved(uv_getaddrinfo_t *gr, int status, struct addrinfo *res)
{
    resolve_req *rr = (resolve_req *)gr;
    p2p_l2 *l2 = rr->l2;
    l2->resolving--;
    l2->pending_resolve = NULL;
    /* an answer that comes after its attempt timed out still serves a later
     * attempt that is waiting for it */
    int current = l2->state == P2P_L2_CONNECTING && !l2->closing && !l2->ac && status != UV_ECANCELED;
    free(rr);
    if (!current) {
        uv_freeaddrinfo(res);
        maybe_free(l2);
        return;
    }
    char ip[INET6_ADDRSTRLEN] = "";
    if (status == 0 && res) {
        if (res->ai_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
        else if (res->ai_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    }
    uv_freeaddrinfo(res);
    if (!ip[0]) {
        char why[384];
        snprintf(why, sizeof why, "cannot resolve %s: %s", l2->target.host,
                 status ? uv_strerror(status) : "no address");
        attempt_failed(l2, why);
        return;
    }
    connect_to(l2, ip);
}

/* The socket's pending error, read without disturbing hiredis. The libuv
 * adapter drops poll errors (see the top of l2.h), so a refused connect or a
 * reset link would otherwise only show when a deadline passes: this probe
 * finds them within PROBE_CONNECTING_MS while connecting and PROBE_READY_MS
 * while ready (an idle link has no command deadline to notice it). */
static void on_probe(uv_timer_t *t)
{
    p2p_l2 *l2 = t->data;
    if (!l2->ac || l2->closing)
        return;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(l2->ac->c.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    if (soerr)
        drop_link(l2, strerror(soerr));
}

static void on_connect_deadline(uv_timer_t *t)
{
    p2p_l2 *l2 = t->data;
    drop_link(l2, "connect timed out");
}

static void start_attempt(p2p_l2 *l2)
{
    if (l2->closing)
        return;
    l2->state = P2P_L2_CONNECTING;
    l2->attempt++;
    uv_timer_start(&l2->conn_timer, on_connect_deadline, l2->connect_timeout, 0);
    struct in_addr a4;
    struct in6_addr a6;
    if (l2->target.is_unix || inet_pton(AF_INET, l2->target.host, &a4) == 1 ||
        inet_pton(AF_INET6, l2->target.host, &a6) == 1) {
        connect_to(l2, l2->target.host);
        return;
    }
    if (l2->resolving) /* a resolver call from an earlier attempt still hangs: wait for it */
        return;
    resolve_req *rr = p2p__xcalloc(1, sizeof *rr);
    rr->l2 = l2;
    rr->attempt = l2->attempt;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    snprintf(port, sizeof port, "%d", l2->target.port);
    int r = uv_getaddrinfo(l2->loop, &rr->req, on_resolved, l2->target.host, port, &hints);
    if (r != 0) {
        free(rr);
        attempt_failed(l2, uv_strerror(r));
        return;
    }
    l2->resolving++;
    l2->pending_resolve = rr;
}

/* ---- commands ---- */

static void on_cmd_timer(uv_timer_t *t);

static void arm_cmd_timer(p2p_l2 *l2)
{
    if (!l2->head || l2->closing)
        return;
    uint64_t now = uv_now(l2->loop);
    uv_timer_start(&l2->cmd_timer, on_cmd_timer, l2->head->deadline > now ? l2->head->deadline - now : 1, 0);
}

static int can_send(p2p_l2 *l2)
{
    if (l2->state != P2P_L2_READY || !l2->ac) {
        l2->st.skipped++;
        return -ENOTCONN;
    }
    if (l2->st.inflight >= l2->max_inflight) {
        l2->st.skipped++;
        return -EBUSY;
    }
    return 0;
}

/* Records that `q` was handed to hiredis. */
static void track(p2p_l2 *l2, req *q)
{
    q->owned = 1;
    q->sent_at = uv_now(l2->loop);
    q->deadline = q->sent_at + l2->command_timeout;
    int was_empty = l2->head == NULL;
    list_append(l2, q);
    l2->st.inflight++;
    l2->st.commands++;
    if (was_empty)
        arm_cmd_timer(l2);
}

static req *req_new(p2p_l2 *l2, req_kind kind, void *udata)
{
    req *q = p2p__xcalloc(1, sizeof *q);
    q->l2 = l2;
    q->kind = kind;
    q->udata = udata;
    return q;
}

static char *full_key(p2p_l2 *l2, const char *ns, const char *key, size_t *len)
{
    char *k = p2p__xasprintf("%s:%s:%s", l2->prefix, ns, key);
    *len = strlen(k);
    return k;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static int send_clear_step(p2p_l2 *l2, req *q, redisReply *keys)
{
    int rc;
    if (keys) {
        size_t n = keys->elements + 1;
        const char **argv = p2p__xcalloc(n, sizeof *argv);
        size_t *lens = p2p__xcalloc(n, sizeof *lens);
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < keys->elements; i++) {
            argv[i + 1] = keys->element[i]->str;
            lens[i + 1] = keys->element[i]->len;
        }
        rc = redisAsyncCommandArgv(l2->ac, on_reply, q, (int)n, argv, lens);
        free(argv);
        free(lens);
        q->unlinking = 1;
    } else {
        rc = redisAsyncCommand(l2->ac, on_reply, q, "SCAN %s MATCH %s COUNT " SCAN_COUNT, q->cursor, q->pattern);
        q->unlinking = 0;
    }
    if (rc != REDIS_OK)
        return -ECONNRESET;
    q->steps++;
    track(l2, q);
    return 0;
}

/* The next step of a clear after a reply; answers the request when done. */
static void clear_continue(p2p_l2 *l2, req *q, redisReply *reply)
{
    redisReply *keys = NULL;
    if (q->unlinking) {
        if (reply->type != REDIS_REPLY_INTEGER)
            goto proto;
        q->removed += (uint64_t)reply->integer;
    } else {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[0]->len >= sizeof q->cursor || reply->element[1]->type != REDIS_REPLY_ARRAY)
            goto proto;
        memcpy(q->cursor, reply->element[0]->str, reply->element[0]->len);
        q->cursor[reply->element[0]->len] = '\0';
        keys = reply->element[1];
        for (size_t i = 0; i < keys->elements; i++)
            if (keys->element[i]->type != REDIS_REPLY_STRING)
                goto proto;
        if (keys->elements == 0)
            keys = NULL;
    }
    if (!keys && strcmp(q->cursor, "0") == 0) {
        answer(q, 0, NULL, 0, 0);
        return;
    }
    if (q->steps >= P2P_L2_MAX_CLEAR_STEPS) {
        answer(q, -EOVERFLOW, NULL, 0, 0);
        return;
    }
    if (l2->state != P2P_L2_READY || !l2->ac) {
        answer(q, -ECONNRESET, NULL, 0, 0);
        return;
    }
    if (send_clear_step(l2, q, keys) != 0)
        answer(q, -ECONNRESET, NULL, 0, 0);
    return;
proto:
    l2->st.errors++;
    answer(q, -EPROTO, NULL, 0, 0);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    req *q = privdata;
    p2p_l2 *l2 = q->l2;
    redisReply *reply = r;
    q->owned = 0;
    l2->st.inflight--;
    list_unlink(l2, q);
    if (q->expired || q->answered) {
        req_release(q);
        return;
    }
    if (!reply) {
        /* the context is being torn down; if by hiredis, the link is lost */
        if (ac == l2->ac) {
            l2->ac = NULL;
            link_lost(l2, ac->errstr[0] ? ac->errstr : "connection lost");
        }
        answer(q, l2->closing ? -ECANCELED : -ECONNRESET, NULL, 0, 0);
        req_release(q);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        l2->st.errors++;
        answer(q, -EPROTO, NULL, 0, 0);
        req_release(q);
        return;
    }
    switch (q->kind) {
    case K_GET: {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[1]->type != REDIS_REPLY_INTEGER) {
            l2->st.errors++;
            answer(q, -EPROTO, NULL, 0, 0);
            break;
        }
        redisReply *val = reply->element[0];
        long long pttl = reply->element[1]->integer;
        if (val->type != REDIS_REPLY_STRING || pttl == -2) {
            answer(q, 0, NULL, 0, 0);
            break;
        }
        uint64_t ttl = 0; /* -1: no TTL */
        if (pttl >= 0) {
            /* the reply took up to a round trip to arrive: count it as spent */
            uint64_t rtt = uv_now(l2->loop) - q->sent_at;
            ttl = (uint64_t)pttl > rtt ? (uint64_t)pttl - rtt : 1;
        }
        answer(q, 1, val->str, val->len, ttl);
        break;
    }
    case K_SET:
        answer(q, 0, NULL, 0, 0);
        break;
    case K_DEL:
        q->removed = reply->type == REDIS_REPLY_INTEGER && reply->integer > 0 ? (uint64_t)reply->integer : 0;
        answer(q, 0, NULL, 0, 0);
        break;
    case K_CLEAR:
        clear_continue(l2, q, reply);
        break;
    }
    req_release(q);
}

static void on_cmd_timer(uv_timer_t *t)
{
    p2p_l2 *l2 = t->data;
    uint64_t now = uv_now(l2->loop);
    req *expired = NULL, **tail = &expired;
    while (l2->head && l2->head->deadline <= now) {
        req *q = l2->head;
        list_unlink(l2, q);
        q->expired = 1;
        *tail = q;
        tail = &q->next;
    }
    if (!expired) {
        arm_cmd_timer(l2);
        return;
    }
    /* Drop the link first, so callers answered below see it down, and the
     * expired requests come back from hiredis (freeing the context hands every
     * pending privdata back with a NULL reply). */
    drop_link(l2, "command timed out");
    for (req *q = expired, *next; q; q = next) {
        next = q->next;
        q->next = NULL;
        l2->st.timeouts++;
        answer(q, -ETIMEDOUT, NULL, 0, 0);
        req_release(q);
    }
    arm_cmd_timer(l2);
}

int p2p__l2_get(p2p_l2 *l2, const char *ns, const char *key, p2p_l2_get_cb cb, void *udata)
{
    if (!l2 || !cb || !p2p__l2_ns_valid(ns) || !key || !*key)
        return -EINVAL;
    int rc = can_send(l2);
    if (rc)
        return rc;
    size_t kl;
    char *k = full_key(l2, ns, key, &kl);
    req *q = req_new(l2, K_GET, udata);
    q->get_cb = cb;
    redisAsyncContext *ac = l2->ac;
    /* MULTI/EXEC makes the value and its TTL one snapshot; only EXEC has a callback */
    int ok = redisAsyncCommand(ac, NULL, NULL, "MULTI") == REDIS_OK &&
             redisAsyncCommand(ac, NULL, NULL, "GET %b", k, kl) == REDIS_OK &&
             redisAsyncCommand(ac, NULL, NULL, "PTTL %b", k, kl) == REDIS_OK &&
             redisAsyncCommand(ac, on_reply, q, "EXEC") == REDIS_OK;
    free(k);
    if (!ok) {
        free(q);
        l2->st.errors++;
        drop_link(l2, "cannot queue a command"); /* a half-sent MULTI would poison the link */
        return -ECONNRESET;
    }
    track(l2, q);
    return 0;
}

static int send_simple(p2p_l2 *l2, req_kind kind, const char *ns, const char *key, const void *value, size_t len,
                       uint64_t ttl_ms, p2p_l2_done_cb cb, void *udata)
{
    if (!l2 || !p2p__l2_ns_valid(ns) || !key || !*key || (kind == K_SET && (ttl_ms == 0 || (len && !value))))
        return -EINVAL;
    int rc = can_send(l2);
    if (rc)
        return rc;
    size_t kl;
    char *k = full_key(l2, ns, key, &kl);
    req *q = req_new(l2, kind, udata);
    q->done_cb = cb;
    int r = kind == K_SET ? redisAsyncCommand(l2->ac, on_reply, q, "SET %b %b PX %llu", k, kl, value ? value : "", len,
                                              (unsigned long long)ttl_ms)
                          : redisAsyncCommand(l2->ac, on_reply, q, "DEL %b", k, kl);
    free(k);
    if (r != REDIS_OK) {
        free(q);
        l2->st.errors++;
        return -ECONNRESET;
    }
    track(l2, q);
    return 0;
}

int p2p__l2_set(p2p_l2 *l2, const char *ns, const char *key, const void *value, size_t len, uint64_t ttl_ms,
                p2p_l2_done_cb cb, void *udata)
{
    return send_simple(l2, K_SET, ns, key, value, len, ttl_ms, cb, udata);
}

int p2p__l2_del(p2p_l2 *l2, const char *ns, const char *key, p2p_l2_done_cb cb, void *udata)
{
    return send_simple(l2, K_DEL, ns, key, NULL, 0, 0, cb, udata);
}

int p2p__l2_clear_ns(p2p_l2 *l2, const char *ns, p2p_l2_done_cb cb, void *udata)
{
    if (!l2 || !p2p__l2_ns_valid(ns))
        return -EINVAL;
    int rc = can_send(l2);
    if (rc)
        return rc;
    req *q = req_new(l2, K_CLEAR, udata);
    q->done_cb = cb;
    q->pattern = p2p__xasprintf("%s:%s:*", l2->prefix, ns); /* ns and prefix hold no glob characters */
    strcpy(q->cursor, "0");
    if (send_clear_step(l2, q, NULL) != 0) {
        free(q->pattern);
        free(q);
        l2->st.errors++;
        return -ECONNRESET;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

p2p_l2 *p2p__l2_new(uv_loop_t *loop, const p2p_l2_config *cfg, char **err)
{
    p2p_l2_target t;
    if (p2p__l2_parse_url(cfg->url, &t, err) != 0)
        return NULL;
    const char *prefix = cfg->prefix ? cfg->prefix : "p2p";
    if (!p2p__l2_ns_valid(prefix)) {
        p2p__fail(err, -EINVAL, "bad key prefix");
        return NULL;
    }
    p2p_l2 *l2 = p2p__xcalloc(1, sizeof *l2);
    l2->loop = loop;
    l2->target = t;
    l2->prefix = p2p__xstrdup(prefix);
    l2->where =
        t.is_unix ? p2p__xstrdup(t.path) : p2p__xasprintf(strchr(t.host, ':') ? "[%s]:%d" : "%s:%d", t.host, t.port);
    l2->connect_timeout = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 2000;
    l2->command_timeout = cfg->command_timeout_ms ? cfg->command_timeout_ms : 500;
    l2->backoff_min = cfg->backoff_min_ms ? cfg->backoff_min_ms : 100;
    l2->backoff_max = cfg->backoff_max_ms ? cfg->backoff_max_ms : 10000;
    if (l2->backoff_max < l2->backoff_min)
        l2->backoff_max = l2->backoff_min;
    l2->backoff = l2->backoff_min;
    l2->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1024;
    l2->log = cfg->log;
    l2->log_arg = cfg->log_arg;
    if (RAND_bytes((unsigned char *)&l2->rng, sizeof l2->rng) != 1 || l2->rng == 0)
        l2->rng = (uint64_t)(uintptr_t)l2 ^ uv_hrtime() ^ 0x9E3779B97F4A7C15ULL;
    uv_timer_init(loop, &l2->conn_timer);
    uv_timer_init(loop, &l2->cmd_timer);
    uv_timer_init(loop, &l2->probe_timer);
    l2->conn_timer.data = l2->cmd_timer.data = l2->probe_timer.data = l2;
    l2->handles_open = 3;
    start_attempt(l2);
    return l2;
}

static void maybe_free(p2p_l2 *l2)
{
    if (!l2->closing || l2->handles_open > 0 || l2->resolving > 0 || l2->st.inflight > 0)
        return;
    free(l2->prefix);
    free(l2->where);
    free(l2);
}

static void on_handle_closed(uv_handle_t *h)
{
    p2p_l2 *l2 = h->data;
    l2->handles_open--;
    maybe_free(l2);
}

void p2p__l2_close(p2p_l2 *l2)
{
    if (!l2 || l2->closing)
        return;
    l2->closing = 1;
    l2->state = P2P_L2_CLOSED;
    uv_timer_stop(&l2->conn_timer);
    uv_timer_stop(&l2->cmd_timer);
    uv_timer_stop(&l2->probe_timer);
    redisAsyncContext *ac = l2->ac;
    l2->ac = NULL;
    /* Answer every caller now, even when this runs inside a hiredis callback
     * (where freeing the context is deferred until it returns): callers may
     * free what their udata points at as soon as close returns. */
    for (req *q = l2->head; q; q = q->next)
        answer(q, -ECANCELED, NULL, 0, 0);
    if (ac)
        redisAsyncFree(ac); /* hands the requests back (now, or when the callback returns) */
    /* a resolve in the thread pool cannot be interrupted; cancel it if it has not
     * started, else its callback frees it and then us */
    if (l2->pending_resolve)
        uv_cancel((uv_req_t *)&l2->pending_resolve->req);
    uv_close((uv_handle_t *)&l2->conn_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l2->cmd_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l2->probe_timer, on_handle_closed);
}

int p2p__l2_ready(const p2p_l2 *l2)
{
    return l2 && l2->state == P2P_L2_READY && l2->ac != NULL;
}

void p2p__l2_stats(const p2p_l2 *l2, p2p_l2_stats *out)
{
    *out = l2->st;
    out->state = l2->state;
}
