/*
 * updater.c — update_manager: installs a package on this node, watches it, and
 * commits it or puts the last good version back by itself.
 *
 *   deploy/install  admin only: {sha256, min_healthy_time?, healthy_deadline?}
 *                   (seconds; defaults 5 and 30). Answers {id} at once: an
 *                   install outlives one forwarded call (30 s).
 *   deploy/install_status  read-only: {id} -> {status: "installing" (phase) |
 *                   "committed" | "reverted" | "refused" (nothing changed) |
 *                   "failed" | "interrupted", name, version, previous, reason}.
 *                   The last 32 outcomes are kept (in memory).
 *
 * Steps (Mender's stage -> switch -> verify -> commit, one node):
 *   1. key: the release key this node trusts (pinned, the coordinator's own, or
 *      learned once from the coordinator and kept in the vault: a coordinator
 *      that later announces another key is refused until an operator pins it);
 *   2. fetch: GET /deploy/packages/<sha256> from the coordinator over mutual
 *      TLS (the coordinator reads its own store); the bytes must hash to the
 *      sha256 asked for;
 *   3. stage (thread pool): verify everything (signature, hashes, caps, floor)
 *      and unpack into <services_directory>/.p2p-staging-<id> (dot folders are
 *      ignored by the services manager): nothing visible changes before this
 *      has succeeded;
 *   4. switch (thread pool): renameat2(RENAME_EXCHANGE) swaps the staged folder
 *      with the service's folder in one step (no moment without a service
 *      folder); the old folder is kept as .p2p-previous/<name>, the last good
 *      version. The services manager sees the new version and hot-reloads it
 *      beside the old one (src/services/manager.c): calls keep being answered;
 *   5. watch: the new version must be running, not critical, for
 *      min_healthy_time in a row, before healthy_deadline; a failed start
 *      (the manager keeps the old instance then), a crash or critical health
 *      past the deadline reverts: the previous folder is swapped back the same
 *      way (and the bad one deleted), or a first install is removed. The
 *      answer says why.
 * One install at a time per node. Disk work runs on the thread pool.
 */
#define _GNU_SOURCE /* renameat2 */
#include "deploy/updater.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/util.h"
#include "deploy/package.h"
#include "deploy/release.h"
#include "deploy/store.h"
#include "membership/node.h"
#include "p2p/p2p.h"
#include "rpc/client.h"
#include "services/manager.h"
#include "services/manifest.h"

#define TICK_MS 200
#define REVERT_WAIT_MS 15000

typedef struct updater updater;

typedef enum { PH_KEY, PH_FETCH, PH_STAGE, PH_SWITCH, PH_WATCH, PH_REVERT, PH_REVERT_WAIT } phase;

typedef struct install {
    updater *u;
    char id[24];
    char sha[65];
    uint64_t min_healthy_ms, deadline_ms;
    phase ph;
    uint8_t key[32];
    char *floors;
    char *pkg_path; /* the package file on disk */
    int pkg_owned;  /* delete it at the end */
    uint8_t *fetched;
    size_t fetched_len;
    char *sdir, *staging, *target, *prev_dir, *prev;
    p2p_pkg_info info;
    char *old_version; /* running before (NULL: a first install) */
    int had_previous;
    int64_t reload_failures_before;
    uint64_t switched_ms, healthy_since_ms, revert_started_ms;
    char *reason; /* why it reverts */
    int manual;   /* deploy/revert: put the last good version back on request */
    int rc;
    char *err;
    uv_work_t w;
    uv_timer_t timer;
    int timer_open;
} install;

#define HISTORY 32

struct updater {
    p2p_ctx *ctx;
    install *busy;
    int registered, running;
    uint64_t next_id;
    json_t *done[HISTORY]; /* outcomes of the last installs, oldest overwritten */
    size_t n_done;
};

static const char *const phase_names[] = {"key", "fetch", "stage", "switch", "watch", "revert", "revert"};

static void finish_error(install *in, int code, const char *msg);
static void start_stage(install *in);

/* ---- the end ------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    install *in = h->data;
    if (in->pkg_owned && in->pkg_path)
        unlink(in->pkg_path);
    free(in->pkg_path);
    free(in->fetched);
    free(in->floors);
    free(in->sdir);
    free(in->staging);
    free(in->target);
    free(in->prev_dir);
    free(in->prev);
    free(in->old_version);
    free(in->reason);
    free(in->err);
    p2p__pkg_info_free(&in->info);
    free(in);
}

static void release_install(install *in)
{
    if (in->u->busy == in)
        in->u->busy = NULL;
    if (in->timer_open) {
        uv_timer_stop(&in->timer);
        uv_close((uv_handle_t *)&in->timer, on_timer_closed);
    } else {
        in->timer.data = in;
        on_timer_closed((uv_handle_t *)&in->timer);
    }
}

static void remember(updater *u, json_t *outcome)
{
    size_t slot = u->n_done++ % HISTORY;
    json_decref(u->done[slot]);
    u->done[slot] = outcome;
}

/* Refused before anything on disk changed. */
static void finish_error(install *in, int code, const char *msg)
{
    (void)code;
    p2p_log(in->u->ctx, P2P_LOG_WARN, "deploy", "install of %s refused: %s", in->sha, msg);
    remember(in->u, json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s}", "id", in->id, "status", "refused", "sha256",
                              in->sha, "name", in->info.name, "version", in->info.version, "reason", msg));
    release_install(in);
}

static void finish_result(install *in, const char *status)
{
    p2p_log(in->u->ctx, !strcmp(status, "committed") ? P2P_LOG_INFO : P2P_LOG_WARN, "deploy", "%s %s %s%s%s",
            in->info.name, in->info.version, status, in->reason ? ": " : "", in->reason ? in->reason : "");
    remember(in->u, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?}", "id", in->id, "status", status, "sha256",
                              in->sha, "name", in->info.name, "version", in->info.version, "previous",
                              in->old_version, "reason", in->reason));
    release_install(in);
}

/* ---- 5. watch, commit or revert ------------------------------------------------------- */

static void start_revert(install *in, const char *why);

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void on_tick(uv_timer_t *t)
{
    install *in = t->data;
    p2p_ctx *ctx = in->u->ctx;
    uint64_t now = uv_now(ctx->loop); /* monotonic: a wall clock step must not commit or revert */
    json_t *d = p2p__services_describe(ctx, in->info.name);
    const char *state = jstr(d, "state"), *version = jstr(d, "version");
    const char *health = jstr(json_object_get(d, "health"), "status");
    if (in->ph == PH_REVERT_WAIT) {
        int back = !in->old_version || (d && !strcmp(version, in->old_version) && !strcmp(state, "running"));
        if (back || now - in->revert_started_ms > REVERT_WAIT_MS) {
            json_decref(d);
            uv_timer_stop(t);
            finish_result(in, "reverted");
            return;
        }
        json_decref(d);
        return;
    }
    int is_new = d && !strcmp(version, in->info.version);
    if (is_new && !strcmp(state, "running") && strcmp(health, "critical")) {
        if (!in->healthy_since_ms)
            in->healthy_since_ms = now;
        if (now - in->healthy_since_ms >= in->min_healthy_ms) {
            json_decref(d);
            uv_timer_stop(t);
            finish_result(in, "committed");
            return;
        }
    } else {
        in->healthy_since_ms = 0;
    }
    char why[1024];
    json_t *le = json_object_get(d, "last_error");
    int64_t failures = json_integer_value(json_object_get(d, "reload_failures"));
    if (d && !is_new && failures > in->reload_failures_before) {
        snprintf(why, sizeof why, "version %s failed to start: %s", in->info.version,
                 le ? jstr(le, "message") : jstr(d, "reason"));
        json_decref(d);
        start_revert(in, why);
        return;
    }
    if (d && is_new && !strcmp(state, "failed")) {
        snprintf(why, sizeof why, "version %s failed: %s", in->info.version,
                 *jstr(d, "reason") ? jstr(d, "reason") : le ? jstr(le, "message") : "");
        json_decref(d);
        start_revert(in, why);
        return;
    }
    if (now - in->switched_ms >= in->deadline_ms) {
        snprintf(why, sizeof why,
                 "version %s not healthy for %llu ms within healthy_deadline (%llu ms): running %s, state %s, "
                 "health %s%s%s",
                 in->info.version, (unsigned long long)in->min_healthy_ms, (unsigned long long)in->deadline_ms,
                 d ? version : "nothing", d ? state : "absent", d ? health : "-",
                 *jstr(json_object_get(d, "health"), "message") ? ": " : "",
                 jstr(json_object_get(d, "health"), "message"));
        json_decref(d);
        start_revert(in, why);
        return;
    }
    json_decref(d);
}

static void revert_work(uv_work_t *w)
{
    install *in = w->data;
    in->rc = 0;
    if (in->manual) {
        /* deploy/revert: what is there to go back to (the pool: disk reads) */
        struct stat st;
        if (lstat(in->target, &st) != 0) {
            in->rc = -ENOENT;
            return;
        }
        in->had_previous = lstat(in->prev, &st) == 0;
        if (in->had_previous) {
            char *mp = p2p__xasprintf("%s/manifest.json", in->prev), *data = NULL;
            size_t len = 0;
            if (p2p__read_file(mp, 1 << 20, &data, &len) == 0) {
                json_t *m = json_loadb(data, len, 0, NULL);
                const char *v = json_string_value(json_object_get(m, "version"));
                if (v)
                    in->old_version = p2p__xstrdup(v);
                json_decref(m);
            }
            free(data);
            free(mp);
            if (!in->old_version) {
                in->rc = -EBADMSG;
                return;
            }
        }
    }
    if (in->had_previous) {
        /* the last good folder back in one step; the bad one goes */
        if (renameat2(AT_FDCWD, in->prev, AT_FDCWD, in->target, RENAME_EXCHANGE) != 0) {
            in->rc = -errno;
            return;
        }
        p2p__pkg_remove_tree(in->prev);
    } else {
        /* a first install: out of sight first (a hidden name), then deleted */
        if (rename(in->target, in->staging) != 0) {
            in->rc = -errno;
            return;
        }
        p2p__pkg_remove_tree(in->staging);
    }
}

static void revert_done(uv_work_t *w, int status)
{
    install *in = w->data;
    if (in->manual && (in->rc == -ENOENT || in->rc == -EBADMSG) && status == 0) {
        char *msg = p2p__xasprintf("%s: %s", in->info.name,
                                   in->rc == -ENOENT ? "not installed on this node"
                                                     : "the previous version has no readable manifest");
        finish_error(in, P2P_RPC_INVALID_REQUEST, msg);
        free(msg);
        return;
    }
    if (status != 0 || in->rc != 0) {
        char *why = p2p__xasprintf("%s; and the revert failed: %s", in->reason,
                                   strerror(in->rc ? -in->rc : ECANCELED));
        free(in->reason);
        in->reason = why;
        finish_result(in, "failed");
        return;
    }
    in->ph = PH_REVERT_WAIT;
    in->revert_started_ms = uv_now(in->u->ctx->loop);
    uv_timer_start(&in->timer, on_tick, TICK_MS, TICK_MS);
}

static void start_revert(install *in, const char *why)
{
    uv_timer_stop(&in->timer);
    free(in->reason);
    in->reason = p2p__xstrdup(why);
    p2p_log(in->u->ctx, P2P_LOG_WARN, "deploy", "%s: reverting to %s: %s", in->info.name,
            in->manual ? "the last good version" : in->old_version ? in->old_version : "nothing (first install)",
            why);
    in->ph = PH_REVERT;
    in->w.data = in;
    if (uv_queue_work(in->u->ctx->loop, &in->w, revert_work, revert_done) != 0) {
        in->rc = -EAGAIN;
        revert_done(&in->w, 0);
    }
}

/* ---- 4. switch ------------------------------------------------------------------------ */

static void switch_work(uv_work_t *w)
{
    install *in = w->data;
    struct stat st;
    in->rc = 0;
    if (lstat(in->target, &st) == 0) {
        in->had_previous = 1;
        if (mkdir(in->prev_dir, 0700) != 0 && errno != EEXIST) {
            in->rc = -errno;
            return;
        }
        p2p__pkg_remove_tree(in->prev); /* the version before the last good one */
        if (renameat2(AT_FDCWD, in->staging, AT_FDCWD, in->target, RENAME_EXCHANGE) != 0) {
            in->rc = -errno;
            return;
        }
        if (rename(in->staging, in->prev) != 0) /* staging now holds the old version */
            in->rc = -errno;
    } else if (rename(in->staging, in->target) != 0) {
        in->rc = -errno;
    }
}

static void switch_done(uv_work_t *w, int status)
{
    install *in = w->data;
    if (status != 0 || in->rc != 0) {
        char *msg = p2p__xasprintf("cannot switch to the new version: %s", strerror(in->rc ? -in->rc : ECANCELED));
        p2p__pkg_remove_tree(in->staging);
        finish_error(in, P2P_RPC_INTERNAL_ERROR, msg);
        free(msg);
        return;
    }
    in->ph = PH_WATCH;
    in->switched_ms = uv_now(in->u->ctx->loop);
    uv_timer_start(&in->timer, on_tick, TICK_MS, TICK_MS);
}

/* ---- 3. stage --------------------------------------------------------------------------- */

static void stage_work(uv_work_t *w)
{
    install *in = w->data;
    in->rc = 0;
    if (in->fetched) {
        uint8_t h[32];
        unsigned hl = 0;
        char hex[65];
        EVP_Digest(in->fetched, in->fetched_len, h, &hl, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", h[i]);
        if (strcmp(hex, in->sha) != 0) {
            in->rc = p2p__fail(&in->err, -EBADMSG, "the coordinator sent a file whose sha256 is %s", hex);
            goto out;
        }
        if ((in->rc = p2p__write_file_atomic(in->pkg_path, in->fetched, in->fetched_len, 0600)) != 0) {
            p2p__fail(&in->err, in->rc, "cannot keep the package: %s", strerror(-in->rc));
            goto out;
        }
        in->pkg_owned = 1;
    }
    p2p_pkg_policy pol = {.keys = (const uint8_t(*)[32])in->key, .n_keys = 1, .require_signature = 1,
                          .type = "service", .floors = in->floors};
    in->rc = p2p__pkg_extract(in->pkg_path, &pol, in->staging, &in->info, &in->err);
out:
    OPENSSL_thread_stop();
}

static void stage_done(uv_work_t *w, int status)
{
    install *in = w->data;
    free(in->fetched);
    in->fetched = NULL;
    if (status != 0 || in->rc != 0) {
        char *msg = p2p__xasprintf("package refused: %s", in->err ? in->err : "cancelled");
        finish_error(in, in->rc == -EPERM || in->rc == -EBADMSG ? P2P_RPC_INVALID_REQUEST : P2P_RPC_INTERNAL_ERROR,
                     msg);
        free(msg);
        return;
    }
    json_t *d = p2p__services_describe(in->u->ctx, in->info.name);
    const char *running = json_string_value(json_object_get(d, "version"));
    in->old_version = running ? p2p__xstrdup(running) : NULL;
    in->reload_failures_before = json_integer_value(json_object_get(d, "reload_failures"));
    int same = running && !strcmp(running, in->info.version) &&
               !strcmp(json_string_value(json_object_get(d, "state")) ?: "", "running");
    json_decref(d);
    if (same) {
        p2p__pkg_remove_tree(in->staging);
        char *msg = p2p__xasprintf("%s %s is already running on this node", in->info.name, in->info.version);
        finish_error(in, P2P_RPC_INVALID_REQUEST, msg);
        free(msg);
        return;
    }
    in->target = p2p__xasprintf("%s/%s", in->sdir, in->info.name);
    in->prev = p2p__xasprintf("%s/%s", in->prev_dir, in->info.name);
    in->ph = PH_SWITCH;
    if (uv_queue_work(in->u->ctx->loop, &in->w, switch_work, switch_done) != 0) {
        in->rc = -EAGAIN;
        switch_done(&in->w, 0);
    }
}

static void start_stage(install *in)
{
    in->ph = PH_STAGE;
    in->w.data = in;
    if (uv_queue_work(in->u->ctx->loop, &in->w, stage_work, stage_done) != 0) {
        in->rc = -EAGAIN;
        stage_done(&in->w, 0);
    }
}

/* ---- 2. fetch -------------------------------------------------------------------------- */

static void on_fetched(void *udata, const p2p__httpc_res *res)
{
    install *in = udata;
    if (res->error != P2P_HTTPC_OK || res->status != 200) {
        char *msg = res->status == 404
                        ? p2p__xasprintf("package %s is not in the coordinator's store (upload it first)", in->sha)
                        : p2p__xasprintf("cannot fetch package %s from the coordinator: %s (HTTP %d)", in->sha,
                                         res->message && *res->message ? res->message : "error", res->status);
        finish_error(in, P2P_RPC_INVALID_REQUEST, msg);
        free(msg);
        return;
    }
    in->fetched = p2p__xmalloc(res->body_len ? res->body_len : 1);
    memcpy(in->fetched, res->body, res->body_len);
    in->fetched_len = res->body_len;
    in->pkg_path = p2p__xasprintf("%s/.p2p-incoming-%s.pkg", in->sdir, in->sha);
    start_stage(in);
}

static void start_fetch(install *in)
{
    p2p_ctx *ctx = in->u->ctx;
    in->ph = PH_FETCH;
    if (ctx->cfg.coordinator_mode) {
        in->pkg_path = p2p__store_path(ctx, in->sha);
        struct stat st;
        if (!in->pkg_path || stat(in->pkg_path, &st) != 0) {
            finish_error(in, P2P_RPC_INVALID_REQUEST, "no such package in the store (upload it first)");
            return;
        }
        start_stage(in);
        return;
    }
    json_t *ids = p2p__membership_live_ids(ctx, "coordinator");
    char id[64] = "", addr[64];
    uint16_t port = 0;
    const char *first = json_string_value(json_array_get(ids, 0));
    if (first)
        snprintf(id, sizeof id, "%s", first);
    json_decref(ids);
    p2p__httpc *http = p2p__membership_client(ctx);
    if (!id[0] || !http || p2p__membership_lookup(ctx, id, addr, sizeof addr, &port) != 0) {
        finish_error(in, P2P_RPC_INTERNAL_ERROR, "no live coordinator to fetch the package from");
        return;
    }
    char path[128];
    snprintf(path, sizeof path, "/deploy/packages/%s", in->sha);
    p2p__httpc_req hr = {.method = "GET", .node_id = id, .address = addr, .port = port, .path = path,
                         .timeout_ms = 60000};
    char *err = NULL;
    if (p2p__httpc_request(http, &hr, on_fetched, in, &err) == 0) {
        char *msg = p2p__xasprintf("cannot fetch the package: %s", err ? err : "?");
        free(err);
        finish_error(in, P2P_RPC_INTERNAL_ERROR, msg);
        free(msg);
    }
}

/* ---- 1. key ---------------------------------------------------------------------------- */

static void on_key(p2p_ctx *ctx, json_t *results, void *udata)
{
    install *in = udata;
    const char *pem = json_string_value(json_object_get(json_object_get(results, "result"), "public_key"));
    char *err = NULL;
    if (!pem) {
        finish_error(in, P2P_RPC_INTERNAL_ERROR, "the coordinator has no release key (no package was signed)");
        return;
    }
    if (p2p__release_learn_key(ctx, pem, &err) != 0 || p2p__release_trusted_key(ctx, in->key) != 0) {
        finish_error(in, P2P_RPC_INVALID_REQUEST, err ? err : "the coordinator's release key is not usable");
        free(err);
        return;
    }
    start_fetch(in);
}

/* ---- deploy/install ------------------------------------------------------------------------ */

static int seconds_param(json_t *params, const char *k, double dflt, uint64_t *out_ms)
{
    json_t *v = json_object_get(params, k);
    double s = v ? json_number_value(v) : dflt;
    if (v && !json_is_number(v))
        return -1;
    if (s < 0 || s > 3600)
        return -1;
    *out_ms = (uint64_t)(s * 1000.0);
    return 0;
}

static void m_install(p2p_call *call, json_t *params, void *udata)
{
    updater *u = udata;
    const char *sha = json_string_value(json_object_get(params, "sha256"));
    uint64_t min_ms = 0, dl_ms = 0;
    const char *k;
    json_t *v;
    int unknown = 0;
    json_object_foreach(params, k, v) unknown |= strcmp(k, "sha256") && strcmp(k, "min_healthy_time") &&
                                                 strcmp(k, "healthy_deadline");
    if (!json_is_object(params) || unknown || !sha || strlen(sha) != 64 || !p2p__store_sha_ok(sha) ||
        seconds_param(params, "min_healthy_time", 5, &min_ms) != 0 ||
        seconds_param(params, "healthy_deadline", 30, &dl_ms) != 0 || dl_ms < min_ms) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "Invalid params: expected {sha256: 64 hex, min_healthy_time?: seconds (default 5), "
                       "healthy_deadline?: seconds >= min_healthy_time (default 30)}",
                       NULL);
        return;
    }
    const char *sdir = p2p__services_dir(u->ctx);
    if (!u->running || !sdir) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "the services platform is not running", NULL);
        return;
    }
    if (u->busy) {
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, "another install is in progress on this node", NULL);
        return;
    }
    install *in = p2p__xcalloc(1, sizeof(*in));
    in->u = u;
    snprintf(in->id, sizeof in->id, "%llu-%llu", (unsigned long long)(p2p__wall_ms() / 1000),
             (unsigned long long)++u->next_id);
    snprintf(in->sha, sizeof in->sha, "%s", sha);
    in->min_healthy_ms = min_ms;
    in->deadline_ms = dl_ms;
    in->sdir = p2p__xstrdup(sdir);
    in->staging = p2p__xasprintf("%s/.p2p-staging-%.16s", sdir, sha);
    in->prev_dir = p2p__xasprintf("%s/.p2p-previous", sdir);
    in->floors = p2p__xstrdup(u->ctx->cfg.package_version_floors ? u->ctx->cfg.package_version_floors : "");
    uv_timer_init(u->ctx->loop, &in->timer);
    in->timer.data = in;
    in->timer_open = 1;
    u->busy = in;
    p2p_call_reply(call, json_pack("{s:s, s:s, s:s}", "id", in->id, "status", "installing", "sha256", in->sha));
    p2p__pkg_remove_tree(in->staging); /* left by a crash */
    if (p2p__release_trusted_key(u->ctx, in->key) == 0) {
        start_fetch(in);
        return;
    }
    in->ph = PH_KEY;
    if (p2p_call_remote(u->ctx, "role:coordinator", "deploy/release_key", NULL, 10000, on_key, in) != 0)
        finish_error(in, P2P_RPC_INTERNAL_ERROR, "cannot ask the coordinator for the release key");
}

static void m_install_status(p2p_call *call, json_t *params, void *udata)
{
    updater *u = udata;
    const char *id = json_string_value(json_object_get(params, "id"));
    if (!json_is_object(params) || !id || json_object_size(params) != 1) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {id: string}", NULL);
        return;
    }
    install *in = u->busy;
    if (in && !strcmp(in->id, id)) {
        p2p_call_reply(call, json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?}", "id", in->id, "status", "installing",
                                       "phase", phase_names[in->ph], "sha256", in->sha, "name", in->info.name,
                                       "version", in->info.version));
        return;
    }
    for (size_t i = 0; i < HISTORY; i++)
        if (u->done[i] && !strcmp(json_string_value(json_object_get(u->done[i], "id")), id)) {
            p2p_call_reply(call, json_incref(u->done[i]));
            return;
        }
    p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no such install on this node", NULL);
}

/* deploy/revert {name, reason?}: the rollout orchestrator takes a committed
 * version back (auto_revert, p2p rollout revert): the last good folder
 * (.p2p-previous/<name>) is swapped back in one step, or a first install is
 * removed; answers {id} at once, the outcome comes by deploy/install_status. */
static void m_revert(p2p_call *call, json_t *params, void *udata)
{
    updater *u = udata;
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *why = json_object_get(params, "reason");
    const char *k;
    json_t *v;
    int unknown = 0;
    json_t *want = json_object_get(params, "version");
    json_object_foreach(params, k, v) unknown |= strcmp(k, "name") && strcmp(k, "reason") && strcmp(k, "version");
    if (!json_is_object(params) || unknown || !name || !p2p__service_name_valid(name) ||
        (why && (!json_is_string(why) || strlen(json_string_value(why)) > 512)) || (want && !json_is_string(want))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "Invalid params: expected {name: service name, version?: string, reason?: string}", NULL);
        return;
    }
    const char *sdir = p2p__services_dir(u->ctx);
    if (!u->running || !sdir) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "the services platform is not running", NULL);
        return;
    }
    if (u->busy) {
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, "another install is in progress on this node", NULL);
        return;
    }
    install *in = p2p__xcalloc(1, sizeof(*in));
    in->u = u;
    in->manual = 1;
    snprintf(in->id, sizeof in->id, "%llu-%llu", (unsigned long long)(p2p__wall_ms() / 1000),
             (unsigned long long)++u->next_id);
    snprintf(in->sha, sizeof in->sha, "revert");
    json_t *d = p2p__services_describe(u->ctx, name);
    const char *running = json_string_value(json_object_get(d, "version"));
    if (want && (!running || strcmp(running, json_string_value(want)))) {
        /* conditional: a revert asked again (after a restart) changes nothing */
        char *m = p2p__xasprintf("%s %s is not the running version (%s runs)", name, json_string_value(want),
                                 running ? running : "nothing");
        json_decref(d);
        free(in);
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, m, NULL);
        free(m);
        return;
    }
    in->info.name = p2p__xstrdup(name);
    in->info.version = p2p__xstrdup(running ? running : "?");
    json_decref(d);
    in->sdir = p2p__xstrdup(sdir);
    in->staging = p2p__xasprintf("%s/.p2p-staging-revert-%s", sdir, name);
    in->prev_dir = p2p__xasprintf("%s/.p2p-previous", sdir);
    in->target = p2p__xasprintf("%s/%s", sdir, name);
    in->prev = p2p__xasprintf("%s/%s", in->prev_dir, name);
    uv_timer_init(u->ctx->loop, &in->timer);
    in->timer.data = in;
    in->timer_open = 1;
    u->busy = in;
    p2p_call_reply(call, json_pack("{s:s, s:s, s:s}", "id", in->id, "status", "installing", "name", name));
    start_revert(in, why ? json_string_value(why) : "reverted on request");
}

static const p2p_method_desc revert_method = {
    "revert",
    "Puts the last good version of a service back (the one before the last install), or removes a first install. "
    "Answers {id} at once; deploy/install_status {id} tells the outcome. Used by rollouts (auto_revert, p2p "
    "rollout revert).",
    "{name: string, version?: string (only if that version runs), reason?: string}",
    P2P_METHOD_ADMIN | P2P_METHOD_COORDINATOR,
    m_revert,
    NULL,
};

static const p2p_method_desc install_method = {
    "install",
    "Starts installing a package from the coordinator's store on this node: verify, stage, switch (hot reload), "
    "watch health for min_healthy_time, then commit, or revert to the last good version by itself. Answers "
    "{id} at once; deploy/install_status {id} tells the outcome and why.",
    "{sha256: string, min_healthy_time?: seconds, healthy_deadline?: seconds}",
    P2P_METHOD_ADMIN | P2P_METHOD_COORDINATOR,
    m_install,
    NULL,
};

static const p2p_method_desc status_method = {
    "install_status",
    "The progress or outcome of deploy/install {id}: {status: installing (with phase) | committed | reverted | "
    "refused | failed | interrupted, name, version, previous, reason}.",
    "{id: string}",
    P2P_METHOD_READONLY,
    m_install_status,
    NULL,
};

/* ---- component ------------------------------------------------------------------------------ */

static int updater_start(p2p_component *c, char **err)
{
    updater *u = c->self;
    u->running = 1;
    if (u->registered)
        return 0;
    p2p_method_desc d = install_method;
    d.udata = u;
    int r = p2p_method_register(c->ctx, "deploy", &d);
    if (r == 0) {
        d = status_method;
        d.udata = u;
        r = p2p_method_register(c->ctx, "deploy", &d);
    }
    if (r == 0) {
        d = revert_method;
        d.udata = u;
        r = p2p_method_register(c->ctx, "deploy", &d);
    }
    if (r != 0)
        return p2p__fail(err, r, "cannot register deploy/install: %s", p2p_strerror(r));
    u->registered = 1;
    return 0;
}

static void updater_stop(p2p_component *c)
{
    updater *u = c->self;
    u->running = 0;
    install *in = u->busy;
    if (in && (in->ph == PH_WATCH || in->ph == PH_REVERT_WAIT)) {
        /* nothing runs on the pool: answer now; the switched folder stays as it is */
        free(in->reason);
        in->reason = p2p__xstrdup("the node stopped before the new version was committed");
        uv_timer_stop(&in->timer);
        finish_result(in, in->ph == PH_WATCH ? "interrupted" : "reverted");
    }
}

static const p2p_component_ops updater_ops = {
    .name = "update_manager",
    .deps = (const char *const[]){"deploy", "services", "membership", NULL},
    .start = updater_start,
    .stop = updater_stop,
};

static void free_updater(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    updater *u = arg;
    if (u->busy)
        return; /* a pool job of an install still points at it: leave it to the process exit */
    for (size_t i = 0; i < HISTORY; i++)
        json_decref(u->done[i]);
    free(u);
}

int p2p__updater_register(p2p_ctx *ctx)
{
    updater *u = p2p__xcalloc(1, sizeof(*u));
    u->ctx = ctx;
    if (!p2p__component_add(ctx, &updater_ops, u)) {
        free(u);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_updater, u);
    return 0;
}
