/*
 * l2.h — Redis as the cache's second level (the guide's L2), through hiredis's
 * asynchronous API on the node's libuv loop. Nothing here ever blocks the loop:
 * host names are resolved on the thread pool, the connect is non-blocking, and
 * every command has a deadline.
 *
 * hiredis 0.14's libuv adapter has a sharp edge: when the socket reports an
 * error (a refused or failed connect, a reset), libuv stops the poll handle and
 * the adapter ignores the status, so hiredis never learns of it — the connect
 * callback is never called and commands are never answered. This module
 * therefore owns its own timers: a connect deadline (which also covers the
 * handshake: AUTH, SELECT and a PING whose answer is what makes the link
 * "ready"), and a deadline per command. A command that misses its deadline is
 * answered -ETIMEDOUT and the connection is dropped (a Redis that is stopped,
 * or a peer that accepts TCP and never answers, would only pile up more), then
 * re-established with exponential backoff and jitter (backoff_min doubling to
 * backoff_max) for as long as Redis is away.
 *
 * Commands are only sent while the link is ready and fewer than max_inflight
 * are outstanding; otherwise the call returns -ENOTCONN or -EBUSY at once and
 * the caller (the cache facade) answers from L1. Keys are "<prefix>:<ns>:<key>";
 * namespaces may not contain ':' so a key cannot alias another namespace's.
 *
 * Ownership: callbacks get their arguments for the duration of the call only
 * (copy what you keep). A call that returns 0 calls its callback exactly once,
 * never before it returns; one that returns an error never calls it.
 * p2p__l2_close answers whatever is pending with -ECANCELED, then the object
 * frees itself once its handles have closed (the loop must run on).
 * Loop thread only.
 */
#ifndef P2P_CACHE_L2_H
#define P2P_CACHE_L2_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define P2P_L2_MAX_HOST 255
#define P2P_L2_MAX_PATH 107 /* sun_path */
#define P2P_L2_MAX_SECRET 255

/* A parsed redis_url:
 *   redis://[[user]:password@]host[:port][/db]   host a name, IPv4 or [IPv6]; port 6379, db 0
 *   unix:/path/to/redis.sock[?db=N]
 * Pure; unit-tested. */
typedef struct p2p_l2_target {
    int is_unix;
    char host[P2P_L2_MAX_HOST + 1]; /* TCP: without brackets */
    int port;
    char path[P2P_L2_MAX_PATH + 1]; /* unix */
    int db;                         /* 0..1000000 */
    char user[P2P_L2_MAX_SECRET + 1];
    char password[P2P_L2_MAX_SECRET + 1]; /* "" = no AUTH */
} p2p_l2_target;

/* Parses `url` into *out. Returns 0, or -EINVAL with a heap message in *err
 * (may be NULL) saying what is wrong. *out is set only on success. */
int p2p__l2_parse_url(const char *url, p2p_l2_target *out, char **err);

typedef enum p2p_l2_state {
    P2P_L2_DOWN,       /* waiting for the next attempt (backoff) */
    P2P_L2_CONNECTING, /* resolving, connecting or in the handshake */
    P2P_L2_READY,      /* commands are sent */
    P2P_L2_CLOSED,
} p2p_l2_state;

typedef struct p2p_l2_config {
    const char *url;             /* required, see p2p__l2_parse_url */
    const char *prefix;          /* key prefix, default "p2p" */
    uint64_t connect_timeout_ms; /* resolve + connect + handshake, default 2000 */
    uint64_t command_timeout_ms; /* default 500 */
    uint64_t backoff_min_ms;     /* default 100 */
    uint64_t backoff_max_ms;     /* default 10000 */
    unsigned max_inflight;       /* default 1024 */
    /* Log lines (state changes only, never per command). May be NULL. */
    void (*log)(void *arg, int level /* p2p_log_level */, const char *msg);
    void *log_arg;
} p2p_l2_config;

typedef struct p2p_l2_stats {
    p2p_l2_state state;
    uint64_t connects;         /* handshakes that succeeded */
    uint64_t connect_failures; /* attempts that failed (refused, timed out, handshake error) */
    uint64_t disconnects;      /* ready links lost */
    uint64_t commands;         /* commands sent */
    uint64_t errors;           /* error replies and failed commands */
    uint64_t timeouts;         /* commands answered -ETIMEDOUT */
    uint64_t skipped;          /* calls refused because not ready or over max_inflight */
    unsigned inflight;
    uint64_t backoff_ms; /* current reconnect delay */
} p2p_l2_stats;

typedef struct p2p_l2 p2p_l2;

/* Creates the client and starts connecting. Returns NULL with a heap message in
 * *err when the config is invalid (bad URL). */
p2p_l2 *p2p__l2_new(uv_loop_t *loop, const p2p_l2_config *cfg, char **err);

/* Answers everything pending with -ECANCELED, drops the link, and frees the
 * object once its handles have closed. NULL is a no-op. */
void p2p__l2_close(p2p_l2 *l2);

int p2p__l2_ready(const p2p_l2 *l2);
void p2p__l2_stats(const p2p_l2 *l2, p2p_l2_stats *out);

/* 1 if `ns` can name a namespace in Redis: 1..64 of [A-Za-z0-9_.-]. */
int p2p__l2_ns_valid(const char *ns);

/* GET with the key's remaining time to live, atomically (MULTI/GET/PTTL/EXEC).
 * status: 1 found (value/len, ttl_ms = remaining TTL less the round trip, 0 when
 * the key has no TTL), 0 not found, or a negative error (-ETIMEDOUT, -ECONNRESET,
 * -EPROTO for an error reply, -ECANCELED on close). */
typedef void (*p2p_l2_get_cb)(int status, const void *value, size_t len, uint64_t ttl_ms, void *udata);
int p2p__l2_get(p2p_l2 *l2, const char *ns, const char *key, p2p_l2_get_cb cb, void *udata);

/* Completion of set / del / clear: status 0 or a negative error; n = keys
 * removed (del, clear). `cb` may be NULL (fire and forget). */
typedef void (*p2p_l2_done_cb)(int status, uint64_t n, void *udata);

/* SET key value PX ttl_ms (ttl_ms >= 1). */
int p2p__l2_set(p2p_l2 *l2, const char *ns, const char *key, const void *value, size_t len, uint64_t ttl_ms,
                p2p_l2_done_cb cb, void *udata);
int p2p__l2_del(p2p_l2 *l2, const char *ns, const char *key, p2p_l2_done_cb cb, void *udata);

/* Deletes every key of `ns`: SCAN MATCH "<prefix>:<ns>:*" COUNT 512 then UNLINK
 * of each batch, one command at a time (each with its deadline), at most
 * P2P_L2_MAX_CLEAR_STEPS steps. Keys written meanwhile may survive. */
#define P2P_L2_MAX_CLEAR_STEPS 100000
int p2p__l2_clear_ns(p2p_l2 *l2, const char *ns, p2p_l2_done_cb cb, void *udata);

#endif
