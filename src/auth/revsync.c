/*
 * revsync.c — cluster-wide revocation and key distribution (see revsync.h).
 *
 * One timer (P2P_REVSYNC_TICK_MS) drives everything, on the loop thread:
 *   coordinator: publish the deny-list version in the membership record when it
 *                changed; answer the revoke calls waiting for confirmations;
 *   worker:      compare the coordinator's published version with ours and
 *                fetch what is missing; send pending revocations; fetch the key
 *                set when a token named an unknown key id.
 * At most one request of each kind is in flight per node, so the work per tick
 * is bounded whatever the cluster does.
 */
#include "auth/revsync.h"
#include "auth/http_auth.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/keyrot.h"
#include "core/util.h"
#include "membership/node.h"
#include "rpc/client.h"

typedef struct confirm {
    char node[64];
    uint64_t version;
} confirm;

typedef struct revsync revsync;

/* A revoke answer waiting for the nodes to have the entry. */
typedef struct waiter {
    revsync *rs;
    uint64_t seq;
    uint64_t deadline_ms;
    p2p_revsync_cb cb;
    void *arg;
    struct waiter *next;
} waiter;

/* A worker's revoke, once stored here: forwarded to the coordinator. */
typedef struct forward {
    revsync *rs;
    char *token;
    p2p_revsync_cb cb; /* NULL for a background retry */
    void *arg;
} forward;

struct revsync {
    p2p_ctx *ctx;
    p2p_guard *g;
    int running;
    uv_timer_t timer;
    int timer_open;
    /* coordinator */
    int published_set;
    uint64_t published;
    char published_tag[P2P_JWT_TAG_LEN + 1]; /* "" = not yet */
    confirm *confirms;
    size_t n_confirms;
    waiter *waiters;
    /* worker */
    int fetch_inflight, keys_inflight, retry_inflight;
    int fetched_once;
    uint64_t next_fetch_ms, next_keys_ms, next_retry_ms, next_tag_keys_ms;
};

static void wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static size_t live_count(p2p_ctx *ctx)
{
    json_t *ids = p2p__membership_live_ids(ctx, NULL);
    size_t n = json_array_size(ids);
    json_decref(ids);
    return n ? n : 1;
}

static revsync *get(p2p_ctx *ctx)
{
    return p2p_shared_get(ctx, "revsync");
}

static uint64_t now_ms(revsync *rs)
{
    return uv_now(rs->ctx->loop);
}

static int is_coordinator(revsync *rs)
{
    return p2p__guard_can_sign(rs->g);
}

/* ---- coordinator: confirmations ------------------------------------------------ */

static void confirm_node(revsync *rs, const char *node, uint64_t version)
{
    for (size_t i = 0; i < rs->n_confirms; i++) {
        if (!strcmp(rs->confirms[i].node, node)) {
            if (version > rs->confirms[i].version)
                rs->confirms[i].version = version;
            return;
        }
    }
    if (rs->n_confirms >= P2P_REVSYNC_MAX_CONFIRMS)
        rs->n_confirms = 0; /* forget everyone: they confirm again with their next fetch */
    if (rs->n_confirms % 64 == 0)
        rs->confirms = p2p__xrealloc(rs->confirms, (rs->n_confirms + 64) * sizeof(confirm));
    confirm *c = &rs->confirms[rs->n_confirms++];
    snprintf(c->node, sizeof c->node, "%s", node);
    c->version = version;
}

/* Live nodes (self included) and how many of them hold version `seq`. */
static void count_confirmed(revsync *rs, uint64_t seq, size_t *total, size_t *confirmed)
{
    json_t *ids = p2p__membership_live_ids(rs->ctx, NULL);
    size_t i, n = 0, ok = 0;
    json_t *v;
    int self_seen = 0;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        n++;
        if (!strcmp(id, rs->ctx->cfg.node_id)) {
            self_seen = 1;
            ok++;
            continue;
        }
        for (size_t k = 0; k < rs->n_confirms; k++)
            if (!strcmp(rs->confirms[k].node, id) && rs->confirms[k].version >= seq) {
                ok++;
                break;
            }
    }
    json_decref(ids);
    if (!self_seen) { /* membership not running: we alone */
        n++;
        ok++;
    }
    *total = n;
    *confirmed = ok;
}

static void answer_waiter(waiter *w, size_t total, size_t confirmed)
{
    json_t *body = json_pack("{s:b, s:I, s:I, s:I}", "revoked", 1, "version", (json_int_t)w->seq, "nodes_total",
                             (json_int_t)total, "nodes_confirmed", (json_int_t)confirmed);
    w->cb(200, body, w->arg);
    free(w);
}

static void run_waiters(revsync *rs, int all)
{
    uint64_t now = now_ms(rs);
    for (waiter **p = &rs->waiters; *p;) {
        waiter *w = *p;
        size_t total, confirmed;
        count_confirmed(rs, w->seq, &total, &confirmed);
        if (all || confirmed >= total || now >= w->deadline_ms) {
            *p = w->next;
            answer_waiter(w, total, confirmed);
        } else {
            p = &w->next;
        }
    }
}

json_t *p2p__revsync_serve(p2p_ctx *ctx, uint64_t since, const char *node_id)
{
    revsync *rs = get(ctx);
    p2p_guard *g = p2p__guard(ctx);
    json_t *doc = p2p__guard_revocations_json(g, since);
    if (rs && node_id && *node_id)
        confirm_node(rs, node_id, p2p__guard_revocation_version(g));
    return doc;
}

/* ---- worker: talking to the coordinator ------------------------------------------ */

/* Finds the live coordinator: its id, address and port. 0 or -ENOENT. */
static int coordinator(revsync *rs, char id[64], char addr[64], uint16_t *port)
{
    json_t *ids = p2p__membership_live_ids(rs->ctx, "coordinator");
    int r = -ENOENT;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        if (!strcmp(json_string_value(v), rs->ctx->cfg.node_id))
            continue;
        snprintf(id, 64, "%s", json_string_value(v));
        if (p2p__membership_lookup(rs->ctx, id, addr, 64, port) == 0) {
            r = 0;
            break;
        }
    }
    json_decref(ids);
    return r;
}

static uint64_t send_to_coordinator(revsync *rs, const char *method, const char *path, const char *body,
                                    p2p__httpc_cb cb, void *udata)
{
    char id[64], addr[64];
    uint16_t port = 0;
    p2p__httpc *http = p2p__membership_client(rs->ctx);
    if (!http || coordinator(rs, id, addr, &port) != 0)
        return 0;
    p2p__httpc_req hr = {.method = method, .node_id = id, .address = addr, .port = port, .path = path,
                         .body = body, .body_len = body ? strlen(body) : 0, .timeout_ms = 10000};
    char *err = NULL;
    uint64_t rid = p2p__httpc_request(http, &hr, cb, udata, &err);
    free(err);
    return rid;
}

static json_t *response_json(const p2p__httpc_res *res)
{
    if (res->error != P2P_HTTPC_OK || res->status != 200)
        return NULL;
    json_t *doc = json_loadb((const char *)res->body, res->body_len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static void on_fetched(void *udata, const p2p__httpc_res *res)
{
    revsync *rs = udata;
    rs->fetch_inflight = 0;
    if (!rs->running)
        return;
    json_t *doc = response_json(res);
    int r = doc ? p2p__guard_apply_revocations(rs->g, doc) : -EIO;
    if (r == 0) {
        if (!rs->fetched_once)
            p2p_log(rs->ctx, P2P_LOG_INFO, "security", "deny list in step with the coordinator (version %" PRIu64 ")",
                    p2p__guard_revocation_version(rs->g));
        rs->fetched_once = 1;
        rs->next_fetch_ms = 0;
    } else {
        p2p_log(rs->ctx, P2P_LOG_WARN, "security", "fetching revocations from the coordinator failed: %s",
                doc ? "unusable answer" : res->error != P2P_HTTPC_OK ? res->message : "HTTP error");
        rs->next_fetch_ms = now_ms(rs) + 1000;
    }
    json_decref(doc);
}

static void on_keys(void *udata, const p2p__httpc_res *res)
{
    revsync *rs = udata;
    rs->keys_inflight = 0;
    if (!rs->running)
        return;
    json_t *doc = response_json(res);
    if (!doc || p2p__guard_set_keys_json(rs->g, doc) != 0)
        p2p_log(rs->ctx, P2P_LOG_WARN, "security", "fetching the token keys from the coordinator failed");
    json_decref(doc);
}

static void on_forwarded(void *udata, const p2p__httpc_res *res)
{
    forward *f = udata;
    revsync *rs = f->rs;
    json_t *doc = response_json(res);
    if (!f->cb) {
        rs->retry_inflight = 0;
    }
    if (doc) {
        rs->next_fetch_ms = 0; /* the coordinator has it: pick up the confirmation */
        if (f->cb)
            f->cb(200, json_incref(doc), f->arg);
    } else {
        if (!f->cb && rs->running)
            p2p_log(rs->ctx, P2P_LOG_WARN, "security",
                    "the coordinator did not take a revocation made here (%s); trying again",
                    res->error != P2P_HTTPC_OK ? res->message : "HTTP error");
        if (f->cb) {
            /* stored here and pending: the background retry delivers it */
            json_t *body = json_pack("{s:b, s:I, s:I, s:I, s:s}", "revoked", 1, "version", (json_int_t)0,
                                     "nodes_total", (json_int_t)live_count(rs->ctx),
                                     "nodes_confirmed", (json_int_t)1, "coordinator",
                                     "not reached; this node keeps sending the revocation until it is");
            f->cb(200, body, f->arg);
        }
    }
    json_decref(doc);
    wipe_free(f->token);
    free(f);
}

static int forward_token(revsync *rs, const char *token, p2p_revsync_cb cb, void *arg)
{
    forward *f = p2p__xcalloc(1, sizeof(*f));
    f->rs = rs;
    f->token = p2p__xstrdup(token);
    f->cb = cb;
    f->arg = arg;
    json_t *b = json_pack("{s:s}", "token", token);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    uint64_t id = send_to_coordinator(rs, "POST", "/internal/revoke", body, on_forwarded, f);
    wipe_free(body);
    if (!id) {
        wipe_free(f->token);
        free(f);
        return -ENOTCONN;
    }
    return 0;
}

/* ---- the timer ------------------------------------------------------------------ */

static void worker_tick(revsync *rs)
{
    uint64_t now = now_ms(rs);
    char id[64], addr[64];
    uint16_t port;
    if (coordinator(rs, id, addr, &port) != 0)
        return;
    json_t *md = p2p__membership_metadata(rs->ctx, id);
    /* keys first: tokens are refused until we have them. Fetched when a token
     * named an unknown key id (at most every KEYS_EVERY_MS: tokens come from
     * anyone), or when the coordinator's published key set differs from ours
     * (a rotation or a prune; its own record, so at most every TAG_KEYS_MS) */
    json_t *tag = json_object_get(md, "jwt_keys");
    char my_tag[P2P_JWT_TAG_LEN + 1];
    p2p__guard_keys_tag(rs->g, my_tag);
    int tag_differs = json_is_string(tag) && strcmp(json_string_value(tag), my_tag) != 0;
    if (!rs->keys_inflight && tag_differs && now >= rs->next_tag_keys_ms) {
        rs->next_tag_keys_ms = now + P2P_REVSYNC_TAG_KEYS_MS;
        rs->keys_inflight = send_to_coordinator(rs, "GET", "/internal/jwt-keys", NULL, on_keys, rs) != 0;
    }
    if (!rs->keys_inflight && now >= rs->next_keys_ms && p2p__guard_keys_wanted(rs->g)) {
        rs->next_keys_ms = now + P2P_REVSYNC_KEYS_EVERY_MS;
        rs->keys_inflight = send_to_coordinator(rs, "GET", "/internal/jwt-keys", NULL, on_keys, rs) != 0;
    }
    /* the deny list */
    json_t *pv = json_object_get(md, "revocations");
    uint64_t mine = p2p__guard_revocation_version(rs->g);
    int behind = json_is_integer(pv) && (uint64_t)json_integer_value(pv) != mine;
    if (!rs->fetch_inflight && now >= rs->next_fetch_ms && (behind || !rs->fetched_once)) {
        /* a coordinator below us was rebuilt: take its whole list */
        uint64_t since = json_is_integer(pv) && (uint64_t)json_integer_value(pv) < mine ? 0 : mine;
        char path[64];
        snprintf(path, sizeof path, "/internal/revocations?since=%" PRIu64, since);
        rs->fetch_inflight = send_to_coordinator(rs, "GET", path, NULL, on_fetched, rs) != 0;
        if (!rs->fetch_inflight)
            rs->next_fetch_ms = now + 1000;
    }
    json_decref(md);
    /* revocations made here that the coordinator has not confirmed */
    const json_t *pending = p2p__guard_pending(rs->g);
    if (json_array_size(pending) && !rs->retry_inflight && now >= rs->next_retry_ms) {
        rs->next_retry_ms = now + P2P_REVSYNC_RETRY_MS;
        rs->retry_inflight = forward_token(rs, json_string_value(json_array_get(pending, 0)), NULL, NULL) == 0;
    }
}

static void on_tick(uv_timer_t *t)
{
    revsync *rs = t->data;
    if (!rs->running)
        return;
    p2p__guard_prune_keys(rs->g); /* retired keys whose tokens have all expired */
    if (is_coordinator(rs)) {
        char tag[P2P_JWT_TAG_LEN + 1];
        p2p__guard_keys_tag(rs->g, tag);
        if (strcmp(tag, rs->published_tag) != 0) {
            json_t *jt = json_string(tag);
            if (p2p__membership_set_metadata(rs->ctx, "jwt_keys", jt) == 0)
                memcpy(rs->published_tag, tag, sizeof tag);
            json_decref(jt);
        }
        uint64_t v = p2p__guard_revocation_version(rs->g);
        if (!rs->published_set || v != rs->published) {
            json_t *jv = json_integer((json_int_t)v);
            if (p2p__membership_set_metadata(rs->ctx, "revocations", jv) == 0) {
                rs->published = v;
                rs->published_set = 1;
            }
            json_decref(jv);
        }
        run_waiters(rs, 0);
    } else {
        worker_tick(rs);
    }
}

/* ---- revoking ------------------------------------------------------------------- */

typedef struct revoke_job {
    revsync *rs;
    char *token;
    uint64_t seq;
    p2p_revsync_cb cb;
    void *arg;
} revoke_job;

static void on_revoke_saved(int status, void *arg)
{
    revoke_job *j = arg;
    revsync *rs = j->rs;
    if (status != 0) {
        j->cb(500, json_pack("{s:s, s:i}", "error", "the revocation could not be saved", "status", 500), j->arg);
    } else if (!rs->running) {
        json_t *body = json_pack("{s:b, s:I, s:I, s:I}", "revoked", 1, "version", (json_int_t)j->seq, "nodes_total",
                                 (json_int_t)1, "nodes_confirmed", (json_int_t)1);
        j->cb(200, body, j->arg);
    } else if (is_coordinator(rs)) {
        waiter *w = p2p__xcalloc(1, sizeof(*w));
        *w = (waiter){rs, j->seq, now_ms(rs) + P2P_REVSYNC_CONFIRM_MS, j->cb, j->arg, rs->waiters};
        rs->waiters = w;
        on_tick(&rs->timer); /* publish the new version now */
    } else if (forward_token(rs, j->token, j->cb, j->arg) != 0) {
        json_t *body = json_pack("{s:b, s:I, s:I, s:I, s:s}", "revoked", 1, "version", (json_int_t)0, "nodes_total",
                                 (json_int_t)live_count(rs->ctx), "nodes_confirmed", (json_int_t)1, "coordinator",
                                 "not reached; this node keeps sending the revocation until it is");
        j->cb(200, body, j->arg);
    }
    wipe_free(j->token);
    free(j);
}

int p2p__revsync_revoke(p2p_ctx *ctx, const char *token, size_t len, const char **why, p2p_revsync_cb cb,
                        void *arg)
{
    revsync *rs = get(ctx);
    p2p_guard *g = p2p__guard(ctx);
    if (!rs || !g) {
        *why = "the node is not ready";
        return -EAGAIN;
    }
    revoke_job *j = p2p__xcalloc(1, sizeof(*j));
    j->rs = rs;
    j->token = p2p__xmalloc(len + 1);
    memcpy(j->token, token, len);
    j->token[len] = '\0';
    j->cb = cb;
    j->arg = arg;
    int r = p2p__guard_revoke(g, token, len, why, &j->seq, on_revoke_saved, j);
    if (r != 0) {
        wipe_free(j->token);
        free(j);
    }
    return r;
}

/* ---- component ------------------------------------------------------------------ */

static int revsync_start(p2p_component *c, char **err)
{
    revsync *rs = c->self;
    int r = p2p__revsync_http_start(c->ctx);
    if (r != 0) {
        *err = p2p__xasprintf("cannot add the revocation routes: %s", p2p_strerror(r));
        return r;
    }
    rs->g = p2p__guard(c->ctx);
    r = p2p__keyrot_register_method(c->ctx);
    if (r != 0) {
        *err = p2p__xasprintf("cannot register auth/rotate_signing_key: %s", p2p_strerror(r));
        return r;
    }
    rs->running = 1;
    rs->published_set = 0;
    rs->fetched_once = 0;
    rs->next_fetch_ms = rs->next_keys_ms = rs->next_retry_ms = rs->next_tag_keys_ms = 0;
    rs->published_tag[0] = '\0';
    uv_timer_init(c->ctx->loop, &rs->timer);
    rs->timer.data = rs;
    rs->timer_open = 1;
    uv_timer_start(&rs->timer, on_tick, 0, P2P_REVSYNC_TICK_MS);
    return 0;
}

static void revsync_stop(p2p_component *c)
{
    revsync *rs = c->self;
    p2p__revsync_http_stop(c->ctx);
    run_waiters(rs, 1);
    rs->running = 0;
    if (rs->timer_open) {
        uv_timer_stop(&rs->timer);
        uv_close((uv_handle_t *)&rs->timer, NULL); /* rs lives until the context is freed */
        rs->timer_open = 0;
    }
    free(rs->confirms);
    rs->confirms = NULL;
    rs->n_confirms = 0;
}

static const p2p_component_ops revsync_ops = {
    .name = "revsync",
    .deps = (const char *const[]){"security", "membership", NULL},
    .start = revsync_start,
    .stop = revsync_stop,
};

static void free_revsync(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    free(arg);
}

int p2p__revsync_register(p2p_ctx *ctx)
{
    revsync *rs = p2p__xcalloc(1, sizeof(*rs));
    rs->ctx = ctx;
    if (!p2p__component_add(ctx, &revsync_ops, rs)) {
        free(rs);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "revsync", rs);
    p2p__ctx_on_shutdown(ctx, free_revsync, rs);
    return 0;
}
