/*
 * store.c — update_server: the coordinator's store of uploaded packages.
 *
 *   POST /deploy/packages        admin token; the body is a package file. It is
 *                                verified (signed by the cluster release key,
 *                                every hash, every cap) and stored as
 *                                <state_directory>/packages/<sha256>.pkg, named
 *                                by the sha256 of its bytes: content-addressed,
 *                                so one upload of the same file is one file.
 *                                Answers {sha256, name, version, type, key_id, size}.
 *   GET /deploy/packages/<sha256> node certificate (mutual TLS) only: the file,
 *                                for a node's update manager.
 *   deploy/packages              read-only RPC: the stored packages.
 *
 * Verification and disk I/O run on the thread pool; the loop only copies the
 * request body (bounded by http_max_body_size) and answers. An unsigned
 * package, one signed by another key, or one the reader refuses is never
 * stored, so nodes are only ever offered packages the coordinator would
 * install itself.
 */
#include "deploy/store.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth/ratelimit.h"
#include "core/util.h"
#include "deploy/package.h"
#include "deploy/release.h"
#include "http/routes.h"
#include "p2p/p2p.h"

#define OWNER "update_server"

typedef struct store {
    p2p_ctx *ctx;
    char *dir;
    json_t *index; /* sha256 -> {name, version, type, size, key_id, uploaded_at} */
    int registered;
} store;

typedef struct upload_job {
    uv_work_t w;
    store *st;
    p2p_http_later *later;
    uint8_t *body;
    size_t len;
    uint8_t key[32];
    char *dir;
    /* results */
    int rc, status;
    char *err;
    char sha[65];
    p2p_pkg_info info;
} upload_job;

typedef struct fetch_job {
    uv_work_t w;
    p2p_http_later *later;
    char *path;
    char *data;
    size_t len;
    int rc;
} fetch_job;

static store *get(p2p_ctx *ctx) { return p2p_shared_get(ctx, OWNER); }

static int sha_hex_ok(const char *s, size_t len);

int p2p__store_sha_ok(const char *s) { return sha_hex_ok(s, strlen(s)); }

static int sha_hex_ok(const char *s, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

char *p2p__store_path(p2p_ctx *ctx, const char *sha256)
{
    store *st = get(ctx);
    if (!st || !sha_hex_ok(sha256, strlen(sha256)))
        return NULL;
    return p2p__xasprintf("%s/%s.pkg", st->dir, sha256);
}

json_t *p2p__store_package(p2p_ctx *ctx, const char *sha256)
{
    store *st = get(ctx);
    json_t *m = st && st->index ? json_object_get(st->index, sha256) : NULL;
    return m ? json_deep_copy(m) : NULL;
}

/* ---- upload ------------------------------------------------------------------------ */

static void upload_work(uv_work_t *w)
{
    upload_job *j = w->data;
    uint8_t h[32];
    unsigned hl = 0;
    EVP_Digest(j->body, j->len, h, &hl, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(j->sha + 2 * i, 3, "%02x", h[i]);
    p2p_pkg_policy pol = {.keys = (const uint8_t(*)[32])j->key, .n_keys = 1, .require_signature = 1};
    j->rc = p2p__pkg_verify_buffer(j->body, j->len, &pol, &j->info, &j->err);
    if (j->rc != 0) {
        j->status = j->rc == -EPERM ? 403 : 422;
        goto out;
    }
    char *path = p2p__xasprintf("%s/%s.pkg", j->dir, j->sha);
    j->rc = p2p__mkdir_p(j->dir, 0700);
    if (j->rc == 0)
        j->rc = p2p__write_file_atomic(path, j->body, j->len, 0600);
    if (j->rc != 0) {
        j->status = 500;
        j->err = p2p__xasprintf("cannot store the package: %s", strerror(-j->rc));
    }
    free(path);
out:
    OPENSSL_thread_stop(); /* this pool thread's OpenSSL state (see vault.c open_work) */
}

static void upload_done(uv_work_t *w, int status)
{
    upload_job *j = w->data;
    store *st = j->st;
    h2o_req_t *req = p2p__http_later_take(j->later);
    if (status != 0 && j->rc == 0) {
        j->rc = -ECANCELED;
        j->status = 503;
    }
    if (j->rc == 0) {
        json_t *meta = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:f}", "sha256", j->sha, "name", j->info.name,
                                 "version", j->info.version, "type", j->info.type, "size", (json_int_t)j->len,
                                 "key_id", j->info.key_id, "uploaded_at", (double)p2p__wall_ms() / 1000.0);
        json_object_set(st->index, j->sha, meta);
        p2p_log(st->ctx, P2P_LOG_INFO, "deploy", "stored package %s %s (%s, %zu bytes) as %s", j->info.name,
                j->info.version, j->info.type, j->len, j->sha);
        if (req)
            p2p__http_send_json(req, 200, "OK", meta);
        json_decref(meta);
    } else {
        p2p_log(st->ctx, P2P_LOG_WARN, "deploy", "refused an uploaded package: %s", j->err ? j->err : "?");
        if (req)
            p2p__http_send_error(req, j->status, p2p__http_reason(j->status), j->err ? j->err : "refused");
    }
    p2p__pkg_info_free(&j->info);
    free(j->err);
    free(j->body);
    free(j->dir);
    free(j);
}

static void h_upload(p2p_http_req *hr)
{
    store *st = hr->udata;
    h2o_req_t *req = hr->req;
    upload_job *j = p2p__xcalloc(1, sizeof(*j));
    if (p2p__release_trusted_key(hr->ctx, j->key) != 0) {
        free(j);
        p2p__http_send_error(req, 409, "Conflict",
                             "the cluster has no release key yet: sign a package first (p2p package sign)");
        return;
    }
    if (!req->entity.base || req->entity.len == 0) {
        free(j);
        p2p__http_send_error(req, 400, "Bad Request", "the body must be a package file");
        return;
    }
    j->w.data = j;
    j->st = st;
    j->len = req->entity.len;
    j->body = p2p__xmalloc(j->len);
    memcpy(j->body, req->entity.base, j->len);
    j->dir = p2p__xstrdup(st->dir);
    j->later = p2p__http_later(req);
    if (uv_queue_work(hr->ctx->loop, &j->w, upload_work, upload_done) != 0) {
        req = p2p__http_later_take(j->later);
        if (req)
            p2p__http_send_error(req, 503, "Service Unavailable", "cannot queue the verification");
        free(j->body);
        free(j->dir);
        free(j);
    }
}

/* ---- download ------------------------------------------------------------------------ */

static void fetch_work(uv_work_t *w)
{
    fetch_job *j = w->data;
    j->rc = p2p__read_file(j->path, (size_t)P2P_PKG_DEFAULT_MAX_TOTAL_BYTES + (64u << 20), &j->data, &j->len);
}

static void fetch_done(uv_work_t *w, int status)
{
    fetch_job *j = w->data;
    h2o_req_t *req = p2p__http_later_take(j->later);
    if (req) {
        if (status == 0 && j->rc == 0)
            p2p__http_send(req, 200, "OK", "application/octet-stream", j->data, j->len);
        else if (j->rc == -ENOENT)
            p2p__http_send_error(req, 404, "Not Found", "no such package");
        else
            p2p__http_send_error(req, 500, "Internal Server Error", "cannot read the package");
    }
    free(j->data);
    free(j->path);
    free(j);
}

static void h_fetch(p2p_http_req *hr)
{
    store *st = hr->udata;
    if (!sha_hex_ok(hr->rest, hr->rest_len)) {
        p2p__http_send_error(hr->req, 404, "Not Found", "no such package (expected /deploy/packages/<sha256>)");
        return;
    }
    fetch_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->path = p2p__xasprintf("%s/%.64s.pkg", st->dir, hr->rest);
    j->later = p2p__http_later(hr->req);
    if (uv_queue_work(hr->ctx->loop, &j->w, fetch_work, fetch_done) != 0) {
        h2o_req_t *req = p2p__http_later_take(j->later);
        if (req)
            p2p__http_send_error(req, 503, "Service Unavailable", "cannot queue the read");
        free(j->path);
        free(j);
    }
}

/* ---- deploy/packages ------------------------------------------------------------------- */

static void m_packages(p2p_call *call, json_t *params, void *udata)
{
    store *st = udata;
    (void)params;
    json_t *list = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(st->index, k, v) json_array_append(list, v);
    p2p_call_reply(call, json_pack("{s:o}", "packages", list));
}

static const p2p_method_desc packages_method = {
    "packages", "Packages stored on the coordinator (uploaded with p2p deploy): {packages: [{sha256, name, "
    "version, type, size, key_id, uploaded_at}]}.",
    "none", P2P_METHOD_READONLY, m_packages, NULL,
};

/* ---- component ------------------------------------------------------------------------- */

static int load_index(store *st)
{
    /* The index is rebuilt from the files at start (before the loop runs):
     * each stored package is checked again as at upload, so a file changed on
     * disk drops out. */
    st->index = json_object();
    DIR *d = opendir(st->dir);
    if (!d)
        return 0;
    uint8_t key[32];
    int have_key = p2p__release_trusted_key(st->ctx, key) == 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n != 68 || strcmp(de->d_name + 64, ".pkg") || !sha_hex_ok(de->d_name, 64) || !have_key)
            continue;
        char *path = p2p__xasprintf("%s/%s", st->dir, de->d_name), *err = NULL;
        p2p_pkg_policy pol = {.keys = (const uint8_t(*)[32])key, .n_keys = 1, .require_signature = 1};
        p2p_pkg_info info = {0};
        char sha[65];
        memcpy(sha, de->d_name, 64);
        sha[64] = '\0';
        if (p2p__pkg_verify_file(path, &pol, &info, &err) == 0) {
            json_object_set_new(st->index, sha,
                                json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "sha256", sha, "name", info.name,
                                          "version", info.version, "type", info.type, "size",
                                          (json_int_t)info.compressed_bytes, "key_id", info.key_id));
        } else {
            p2p_log(st->ctx, P2P_LOG_WARN, "deploy", "stored package %s no longer verifies: %s", sha,
                    err ? err : "?");
        }
        p2p__pkg_info_free(&info);
        free(err);
        free(path);
    }
    closedir(d);
    return 0;
}

static int store_start(p2p_component *c, char **err)
{
    store *st = c->self;
    if (!c->ctx->cfg.coordinator_mode)
        return 0; /* the store lives on the coordinator */
    free(st->dir);
    st->dir = p2p__xasprintf("%s/packages", c->ctx->cfg.state_directory);
    json_decref(st->index);
    load_index(st);
    p2p_http_route_desc up = {"POST", "/deploy/packages", P2P_HTTP_EXACT, P2P_HTTP_ADMIN, P2P_RL_OTHER,
                              OWNER, h_upload, st};
    p2p_http_route_desc down = {"GET", "/deploy/packages/", P2P_HTTP_PREFIX, P2P_HTTP_NODE, P2P_RL_OTHER,
                                OWNER, h_fetch, st};
    int r = p2p__http_route_add(c->ctx, &up);
    if (r == 0)
        r = p2p__http_route_add(c->ctx, &down);
    if (r == 0 && !st->registered) {
        p2p_method_desc d = packages_method;
        d.udata = st;
        r = p2p_method_register(c->ctx, "deploy", &d);
        st->registered = r == 0;
    }
    if (r != 0) {
        p2p__http_routes_remove_owner(c->ctx, OWNER);
        return p2p__fail(err, r, "cannot add the update server's routes: %s", p2p_strerror(r));
    }
    return 0;
}

static void store_stop(p2p_component *c) { p2p__http_routes_remove_owner(c->ctx, OWNER); }

static const p2p_component_ops store_ops = {
    .name = OWNER,
    .deps = (const char *const[]){"deploy", NULL},
    .start = store_start,
    .stop = store_stop,
};

static void free_store(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    store *st = arg;
    json_decref(st->index);
    free(st->dir);
    free(st);
}

int p2p__store_register(p2p_ctx *ctx)
{
    store *st = p2p__xcalloc(1, sizeof(*st));
    st->ctx = ctx;
    if (!p2p__component_add(ctx, &store_ops, st)) {
        free(st);
        return -EEXIST;
    }
    p2p_shared_set(ctx, OWNER, st);
    p2p__ctx_on_shutdown(ctx, free_store, st);
    return 0;
}
