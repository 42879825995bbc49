/*
 * orchestrator.c — rollouts: one stored package installed on many nodes, on
 * the coordinator.
 *
 *   deploy/rollout_start   admin: {sha256, target?: "all" | "all:ROLE" | [node ids],
 *                          max_parallel? (1), canary? (0), promote_after? (s, 0 =
 *                          wait for deploy/rollout_promote), min_healthy_time? (5),
 *                          healthy_deadline? (30), auto_revert? (true)} -> the rollout
 *   deploy/rollout_status  read-only: {id?} -> one rollout, or {rollouts: [...]}
 *   deploy/rollout_promote admin: {id}: a canary rollout goes on to the other nodes
 *   deploy/rollout_revert  admin: {id}: stops it and takes back every node it did
 *
 * A tick (500 ms) drives the active rollout: at most max_parallel nodes are
 * installing (deploy/install on the node, as the coordinator: P2P_METHOD_
 * COORDINATOR, see rpc/remote.c), each is followed with deploy/install_status;
 * after `canary` nodes the rollout waits for promote (or promote_after). A
 * node that fails (its update manager reverted it by itself) stops the
 * rollout; with auto_revert the nodes already committed are taken back with
 * deploy/revert {name, version} (conditional on the version running, so a
 * repeated revert after a restart changes nothing). Nodes down are skipped
 * ("down") and converge when they come back (membership join/alive).
 *
 * State (every rollout and the committed version of each service) is kept in
 * <state_directory>/rollouts.json, written atomically (temp, fsync, rename) on
 * the thread pool after each change. A coordinator restart reloads it: a
 * running rollout resumes ("resumed after a coordinator restart" in its
 * events); an install whose id the node no longer knows is asked again
 * (installs of what already runs count as done).
 */
#include "deploy/orchestrator.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/util.h"
#include "auth/ratelimit.h"
#include "deploy/store.h"
#include "http/routes.h"
#include "membership/node.h"
#include "p2p/p2p.h"
#include "rpc/remote.h"

#define TICK_MS 500
#define KEEP_ROLLOUTS 20
#define MAX_NODES 1024
#define MAX_EVENTS 50
#define CALL_TIMEOUT_MS 15000
#define CONVERGE_DELAY_MS 2000
#define CONVERGE_TRIES 10

typedef enum { N_PENDING, N_INSTALLING, N_COMMITTED, N_FAILED, N_REVERTING, N_REVERTED, N_DOWN } nstate;
static const char *const nstate_names[] = {"pending", "installing", "committed", "failed",
                                           "reverting", "reverted", "down"};

typedef struct rnode {
    char id[64];
    nstate st;
    char install_id[32];
    char *reason;
    char *status_detail; /* the node's phase or outcome */
    int in_flight;       /* one call at a time per node */
    int done_ok;         /* the node ran the new version (to revert it later) */
} rnode;

typedef struct rollout {
    char id[40];
    char sha[65];
    char *name, *version;
    json_t *target;
    int max_parallel, canary, auto_revert, promoted;
    double promote_after, min_healthy, deadline;
    char state[16]; /* running | canary_wait | reverting | done | failed | reverted */
    char *reason;
    double created, updated, wait_since;
    json_t *events; /* [{at, message}] */
    char *prev_committed; /* the service's committed sha before (for a revert) */
    char *prev_version;   /* and its version */
    size_t n;
    rnode *nodes;
} rollout;

typedef struct converge {
    char node[64];
    char name[128];
    char sha[65];
    char version[64];
    char state[16]; /* check | installing | committed | failed */
    char install_id[32];
    char *reason;
    double min_healthy, deadline; /* the committing rollout's */
    uint64_t next_ms;
    int tries, in_flight;
    struct converge *next;
} converge;

typedef struct orch {
    p2p_ctx *ctx;
    char *path;
    rollout **ro;
    size_t n_ro;
    json_t *committed; /* name -> {sha256, version, target, rollout} */
    converge *conv;
    uv_timer_t timer;
    int timer_open, registered, running, listening;
    int dirty, writing;
    unsigned pending_calls;
    uint64_t next_id;
} orch;

typedef struct call_ctx {
    orch *o;
    char rid[40];
    size_t idx;
    converge *cv;
    int kind;
} call_ctx;

enum { K_INSTALL, K_STATUS, K_REVERT, K_CV_GET, K_CV_INSTALL, K_CV_STATUS };

static double now_s(void) { return (double)p2p__wall_ms() / 1000.0; }

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? p2p__xstrdup(v) : NULL;
}

static void event(orch *o, rollout *r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void event(orch *o, rollout *r, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(r->events, json_pack("{s:f, s:s}", "at", now_s(), "message", buf));
    while (json_array_size(r->events) > MAX_EVENTS)
        json_array_remove(r->events, 0);
    p2p_log(o->ctx, P2P_LOG_INFO, "deploy", "rollout %s: %s", r->id, buf);
    r->updated = now_s();
    o->dirty = 1;
}

/* ---- persistence ---------------------------------------------------------------------- */

static json_t *rollout_json(const rollout *r)
{
    json_t *nodes = json_array();
    size_t counts[7] = {0};
    for (size_t i = 0; i < r->n; i++) {
        const rnode *nd = &r->nodes[i];
        counts[nd->st]++;
        json_t *j = json_pack("{s:s, s:s, s:b}", "node", nd->id, "state", nstate_names[nd->st], "done_ok",
                              nd->done_ok);
        if (nd->install_id[0])
            json_object_set_new(j, "install_id", json_string(nd->install_id));
        if (nd->reason)
            json_object_set_new(j, "reason", json_string(nd->reason));
        if (nd->status_detail)
            json_object_set_new(j, "detail", json_string(nd->status_detail));
        json_array_append_new(nodes, j);
    }
    json_t *c = json_object();
    for (int i = 0; i < 7; i++)
        if (counts[i])
            json_object_set_new(c, nstate_names[i], json_integer((json_int_t)counts[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:O, s:i, s:i, s:f, s:b, s:b, s:f, s:f, s:s, s:f, s:f, s:o, "
                          "s:o, s:O}",
                          "id", r->id, "sha256", r->sha, "name", r->name, "version", r->version, "target", r->target,
                          "max_parallel", r->max_parallel, "canary", r->canary, "promote_after", r->promote_after,
                          "promoted", r->promoted, "auto_revert", r->auto_revert, "min_healthy_time", r->min_healthy,
                          "healthy_deadline", r->deadline, "state", r->state, "created", r->created, "updated",
                          r->updated, "nodes", nodes, "counts", c, "events", r->events);
    if (r->reason)
        json_object_set_new(o, "reason", json_string(r->reason));
    if (r->prev_committed)
        json_object_set_new(o, "previous_sha256", json_string(r->prev_committed));
    if (r->prev_version)
        json_object_set_new(o, "previous_version", json_string(r->prev_version));
    if (!strcmp(r->state, "canary_wait"))
        json_object_set_new(o, "waiting_since", json_real(r->wait_since));
    return o;
}

static void rollout_free(rollout *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->nodes[i].reason);
        free(r->nodes[i].status_detail);
    }
    free(r->nodes);
    free(r->name);
    free(r->version);
    free(r->reason);
    free(r->prev_committed);
    free(r->prev_version);
    json_decref(r->target);
    json_decref(r->events);
    free(r);
}

static const char *js(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static rollout *rollout_from_json(json_t *j)
{
    json_t *nodes = json_object_get(j, "nodes");
    if (!json_is_object(j) || !json_is_array(nodes) || strlen(js(j, "id")) >= 40 || !p2p__store_sha_ok(js(j, "sha256")))
        return NULL;
    rollout *r = p2p__xcalloc(1, sizeof(*r));
    snprintf(r->id, sizeof r->id, "%s", js(j, "id"));
    snprintf(r->sha, sizeof r->sha, "%s", js(j, "sha256"));
    r->name = p2p__xstrdup(js(j, "name"));
    r->version = p2p__xstrdup(js(j, "version"));
    r->target = json_incref(json_object_get(j, "target") ? json_object_get(j, "target") : json_null());
    r->max_parallel = (int)json_integer_value(json_object_get(j, "max_parallel"));
    if (r->max_parallel < 1 || r->max_parallel > 64)
        r->max_parallel = 1;
    if (r->canary < 0 || r->canary > MAX_NODES)
        r->canary = 0;
    r->canary = (int)json_integer_value(json_object_get(j, "canary"));
    r->promote_after = json_number_value(json_object_get(j, "promote_after"));
    r->promoted = json_is_true(json_object_get(j, "promoted"));
    r->auto_revert = json_is_true(json_object_get(j, "auto_revert"));
    r->min_healthy = json_number_value(json_object_get(j, "min_healthy_time"));
    r->deadline = json_number_value(json_object_get(j, "healthy_deadline"));
    snprintf(r->state, sizeof r->state, "%s", js(j, "state"));
    static const char *const states[] = {"running", "canary_wait", "reverting", "done", "failed", "reverted", NULL};
    int known = 0;
    for (int i = 0; states[i]; i++)
        known |= !strcmp(r->state, states[i]);
    if (!known)
        snprintf(r->state, sizeof r->state, "failed"); /* never resumed: shown as is */
    if (json_object_get(j, "reason"))
        r->reason = p2p__xstrdup(js(j, "reason"));
    if (json_object_get(j, "previous_sha256"))
        r->prev_committed = p2p__xstrdup(js(j, "previous_sha256"));
    if (json_object_get(j, "previous_version"))
        r->prev_version = p2p__xstrdup(js(j, "previous_version"));
    r->created = json_number_value(json_object_get(j, "created"));
    r->updated = json_number_value(json_object_get(j, "updated"));
    r->wait_since = json_number_value(json_object_get(j, "waiting_since"));
    r->events = json_is_array(json_object_get(j, "events")) ? json_copy(json_object_get(j, "events")) : json_array();
    r->n = json_array_size(nodes);
    if (r->n > MAX_NODES)
        r->n = MAX_NODES;
    r->nodes = p2p__xcalloc(r->n ? r->n : 1, sizeof(rnode));
    for (size_t i = 0; i < r->n; i++) {
        json_t *nd = json_array_get(nodes, i);
        rnode *x = &r->nodes[i];
        snprintf(x->id, sizeof x->id, "%s", js(nd, "node"));
        snprintf(x->install_id, sizeof x->install_id, "%s", js(nd, "install_id"));
        x->st = N_PENDING;
        for (int s = 0; s < 7; s++)
            if (!strcmp(js(nd, "state"), nstate_names[s]))
                x->st = (nstate)s;
        x->done_ok = json_is_true(json_object_get(nd, "done_ok"));
        if (json_object_get(nd, "reason"))
            x->reason = p2p__xstrdup(js(nd, "reason"));
    }
    return r;
}

typedef struct write_job {
    uv_work_t w;
    orch *o;
    char *path, *data;
    int rc;
} write_job;

static void write_work(uv_work_t *w)
{
    write_job *j = w->data;
    j->rc = p2p__write_file_atomic(j->path, j->data, strlen(j->data), 0600);
}

static void write_done(uv_work_t *w, int status)
{
    write_job *j = w->data;
    orch *o = j->o;
    o->writing = 0;
    o->pending_calls--;
    if (status != 0 || j->rc != 0) {
        p2p_log(o->ctx, P2P_LOG_ERROR, "deploy", "cannot save the rollout state to %s: %s", j->path,
                strerror(j->rc ? -j->rc : ECANCELED));
        o->dirty = 1;
    }
    free(j->path);
    free(j->data);
    free(j);
}

static json_t *state_json(orch *o)
{
    json_t *list = json_array();
    for (size_t i = 0; i < o->n_ro; i++)
        json_array_append_new(list, rollout_json(o->ro[i]));
    return json_pack("{s:i, s:O, s:o}", "format", 1, "committed", o->committed, "rollouts", list);
}

static void save_if_dirty(orch *o)
{
    if (!o->dirty || o->writing || !o->path)
        return;
    json_t *doc = state_json(o);
    write_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->o = o;
    j->path = p2p__xstrdup(o->path);
    j->data = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    o->dirty = 0;
    o->writing = 1;
    o->pending_calls++;
    if (uv_queue_work(o->ctx->loop, &j->w, write_work, write_done) != 0) {
        j->rc = -EAGAIN;
        write_done(&j->w, 0);
    }
}

/* Parses the state file's bytes: the committed map (a new object) and the
 * rollouts that read back whole (malformed entries are skipped). -1 with
 * *why (static) when the document is not a JSON object. */
static int parse_state(const char *data, size_t len, json_t **committed, rollout ***ro, size_t *n_ro, char *why,
                       size_t why_len)
{
    json_error_t je;
    *committed = json_object();
    json_t *doc = json_loadb(data, len, 0, &je);
    if (!json_is_object(doc)) {
        snprintf(why, why_len, "%s", doc ? "not a JSON object" : je.text);
        json_decref(doc);
        return -1;
    }
    if (json_is_object(json_object_get(doc, "committed"))) {
        json_decref(*committed);
        *committed = json_deep_copy(json_object_get(doc, "committed"));
    }
    json_t *list = json_object_get(doc, "rollouts");
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (*n_ro >= KEEP_ROLLOUTS)
            break;
        rollout *r = rollout_from_json(v);
        if (!r)
            continue;
        *ro = realloc(*ro, (*n_ro + 1) * sizeof(**ro));
        (*ro)[(*n_ro)++] = r;
    }
    json_decref(doc);
    return 0;
}

int p2p__orch_state_check(const char *data, size_t len)
{
    json_t *committed = NULL;
    rollout **ro = NULL;
    size_t n = 0;
    char why[200];
    int rc = parse_state(data, len, &committed, &ro, &n, why, sizeof why);
    for (size_t i = 0; i < n; i++) {
        /* what is read back is written again the same way */
        json_t *j = rollout_json(ro[i]);
        rollout *again = j ? rollout_from_json(j) : NULL;
        if (!again || strcmp(again->id, ro[i]->id) || again->n != ro[i]->n)
            abort();
        rollout_free(again);
        json_decref(j);
        rollout_free(ro[i]);
    }
    free(ro);
    json_decref(committed);
    return rc == 0 ? (int)n : -1;
}

/* At start, before the loop runs (as the store's index): the file is small. */
static void load_state(orch *o)
{
    char *data = NULL;
    size_t len = 0;
    char why[200];
    if (p2p__read_file(o->path, 16u << 20, &data, &len) != 0) {
        o->committed = json_object();
        return;
    }
    int rc = parse_state(data, len, &o->committed, &o->ro, &o->n_ro, why, sizeof why);
    free(data);
    if (rc != 0) {
        p2p_log(o->ctx, P2P_LOG_ERROR, "deploy", "%s is not readable JSON (%s): rollout state starts empty", o->path,
                why);
        return;
    }
    for (size_t i = 0; i < o->n_ro; i++) {
        rollout *r = o->ro[i];
        if (!strcmp(r->state, "running") || !strcmp(r->state, "canary_wait") || !strcmp(r->state, "reverting")) {
            for (size_t k = 0; k < r->n; k++)
                if (r->nodes[k].st == N_INSTALLING || r->nodes[k].st == N_REVERTING) {
                    free(r->nodes[k].status_detail);
                    r->nodes[k].status_detail = p2p__xstrdup("asking the node after a coordinator restart");
                }
            event(o, r, "resumed after a coordinator restart (state %s)", r->state);
        }
    }
}

/* ---- lookups ------------------------------------------------------------------------------ */

static rollout *find(orch *o, const char *id)
{
    for (size_t i = 0; i < o->n_ro; i++)
        if (!strcmp(o->ro[i]->id, id))
            return o->ro[i];
    return NULL;
}

static rollout *active(orch *o)
{
    for (size_t i = 0; i < o->n_ro; i++) {
        const char *s = o->ro[i]->state;
        if (!strcmp(s, "running") || !strcmp(s, "canary_wait") || !strcmp(s, "reverting"))
            return o->ro[i];
    }
    return NULL;
}

static int node_alive(orch *o, const char *id)
{
    char addr[64];
    uint16_t port;
    return p2p__membership_lookup(o->ctx, id, addr, sizeof addr, &port) == 0;
}

static int target_has(orch *o, json_t *target, const char *node)
{
    if (json_is_array(target)) {
        size_t i;
        json_t *v;
        json_array_foreach(target, i, v) if (!strcmp(json_string_value(v) ?: "", node)) return 1;
        return 0;
    }
    const char *t = json_string_value(target);
    if (!t)
        return 0;
    if (!strcmp(t, "all"))
        return 1;
    json_t *nodes = p2p__membership_nodes_json(o->ctx);
    size_t i;
    json_t *v;
    int yes = 0;
    json_array_foreach(json_object_get(nodes, "nodes"), i, v) if (!strcmp(js(v, "node_id"), node) && !strcmp(js(v, "role"), t + 4)) yes = 1;
    json_decref(nodes);
    return yes;
}

/* ---- calls to nodes ------------------------------------------------------------------------ */

static void on_call(p2p_ctx *ctx, json_t *results, void *udata);

static int call_node(orch *o, rollout *r, size_t idx, converge *cv, int kind, const char *node, const char *method,
                     json_t *params)
{
    call_ctx *cc = p2p__xcalloc(1, sizeof(*cc));
    cc->o = o;
    if (r)
        snprintf(cc->rid, sizeof cc->rid, "%s", r->id);
    cc->idx = idx;
    cc->cv = cv;
    cc->kind = kind;
    if (r)
        r->nodes[idx].in_flight = 1;
    if (cv)
        cv->in_flight = 1;
    o->pending_calls++;
    int rc = p2p__call_remote_coordinator(o->ctx, node, method, params, CALL_TIMEOUT_MS, on_call, cc);
    json_decref(params);
    if (rc != 0) {
        json_t *e = json_pack("{s:s, s:{s:i, s:s}}", "node_id", node, "error", "code", rc, "message",
                              "cannot call the node");
        on_call(o->ctx, e, cc);
        json_decref(e);
    }
    return 0;
}

static void node_fail(orch *o, rollout *r, rnode *nd, const char *why)
{
    nd->st = N_FAILED;
    set_str(&nd->reason, why);
    event(o, r, "%s failed: %s", nd->id, why);
}

static void handle_rollout_result(orch *o, rollout *r, rnode *nd, int kind, json_t *res, json_t *err)
{
    const char *emsg = err ? js(err, "message") : NULL;
    if (kind == K_INSTALL) {
        if (err) {
            if (strstr(emsg, "another install is in progress")) {
                nd->st = N_PENDING; /* try again on a later tick */
                set_str(&nd->status_detail, emsg);
            } else if (!node_alive(o, nd->id)) {
                nd->st = N_DOWN;
                set_str(&nd->status_detail, "the node is down: it converges when it comes back");
                event(o, r, "%s is down: skipped, it converges when it comes back", nd->id);
            } else {
                node_fail(o, r, nd, emsg);
            }
            return;
        }
        snprintf(nd->install_id, sizeof nd->install_id, "%s", js(res, "id"));
        nd->st = N_INSTALLING;
        set_str(&nd->status_detail, "installing");
        event(o, r, "%s: install %s started", nd->id, nd->install_id);
        return;
    }
    /* K_STATUS for installing and reverting nodes */
    if (err) {
        if (strstr(emsg, "no such install")) {
            /* the node restarted (or forgot): ask again; an install of what already runs is done */
            if (nd->st == N_INSTALLING) {
                nd->st = N_PENDING;
                event(o, r, "%s no longer knows install %s: installing again", nd->id, nd->install_id);
            } else {
                nd->st = N_COMMITTED; /* the revert is sent again (conditional on the version) */
            }
            nd->install_id[0] = '\0';
        } else if (!node_alive(o, nd->id) && nd->st == N_INSTALLING) {
            nd->st = N_DOWN;
            set_str(&nd->status_detail, "the node went down while installing: it converges when it comes back");
            event(o, r, "%s went down while installing", nd->id);
        }
        if (!nd->status_detail || strcmp(nd->status_detail, emsg))
            p2p_log(o->ctx, P2P_LOG_WARN, "deploy", "rollout %s: asking %s: %s", r->id, nd->id, emsg);
        set_str(&nd->status_detail, emsg);
        return; /* a transport error: asked again on the next tick */
    }
    const char *status = js(res, "status");
    if (!strcmp(status, "installing")) {
        set_str(&nd->status_detail, js(res, "phase"));
        return;
    }
    const char *why = js(res, "reason");
    if (nd->st == N_INSTALLING) {
        if (!strcmp(status, "committed") ||
            (!strcmp(status, "refused") && strstr(why, "is already running on this node"))) {
            nd->st = N_COMMITTED;
            nd->done_ok = 1;
            set_str(&nd->status_detail, status);
            event(o, r, "%s: %s %s committed", nd->id, r->name, r->version);
        } else {
            set_str(&nd->status_detail, status);
            char *m = p2p__xasprintf("%s%s%s", status, *why ? ": " : "", why);
            node_fail(o, r, nd, m);
            free(m);
        }
        return;
    }
    /* reverting */
    if (!strcmp(status, "reverted") ||
        (!strcmp(status, "refused") && (strstr(why, "not the running version") || strstr(why, "not installed")))) {
        nd->st = N_REVERTED;
        set_str(&nd->status_detail, !strcmp(status, "refused") ? "already back" : "reverted");
        event(o, r, "%s: reverted", nd->id);
    } else {
        nd->st = N_FAILED;
        char *m = p2p__xasprintf("the revert did not succeed: %s%s%s", status, *why ? ": " : "", why);
        set_str(&nd->reason, m);
        event(o, r, "%s: %s", nd->id, m);
        free(m);
        nd->done_ok = 0;
    }
}

static void handle_converge_result(orch *o, converge *cv, int kind, json_t *res, json_t *err);

static void on_call(p2p_ctx *ctx, json_t *results, void *udata)
{
    (void)ctx;
    call_ctx *cc = udata;
    orch *o = cc->o;
    o->pending_calls--;
    json_t *res = json_object_get(results, "result");
    json_t *err = json_object_get(results, "error");
    if (!o->running) {
        free(cc);
        return;
    }
    if (cc->cv) {
        cc->cv->in_flight = 0;
        handle_converge_result(o, cc->cv, cc->kind, res, err);
    } else {
        rollout *r = find(o, cc->rid);
        if (r && cc->idx < r->n) {
            rnode *nd = &r->nodes[cc->idx];
            nd->in_flight = 0;
            if (cc->kind == K_REVERT) {
                if (err) {
                    const char *m = js(err, "message");
                    if (strstr(m, "not the running version") || strstr(m, "not installed")) {
                        nd->st = N_REVERTED;
                        set_str(&nd->status_detail, "already back");
                    } else if (!strstr(m, "another install")) {
                        set_str(&nd->status_detail, m);
                    }
                } else {
                    snprintf(nd->install_id, sizeof nd->install_id, "%s", js(res, "id"));
                    nd->st = N_REVERTING;
                }
            } else {
                handle_rollout_result(o, r, nd, cc->kind, res, err);
            }
            o->dirty = 1;
        }
    }
    free(cc);
}

/* ---- the tick ------------------------------------------------------------------------------- */

static void finish(orch *o, rollout *r, const char *state, const char *why)
{
    snprintf(r->state, sizeof r->state, "%s", state);
    if (why)
        set_str(&r->reason, why);
    event(o, r, "%s%s%s", state, why ? ": " : "", why ? why : "");
    if (!strcmp(state, "done")) {
        json_object_set_new(o->committed, r->name,
                            json_pack("{s:s, s:s, s:O, s:s, s:f, s:f}", "sha256", r->sha, "version", r->version,
                                      "target", r->target, "rollout", r->id, "min_healthy_time", r->min_healthy,
                                      "healthy_deadline", r->deadline));
    } else if (!strcmp(state, "reverted")) {
        json_t *c = json_object_get(o->committed, r->name);
        if (c && !strcmp(js(c, "sha256"), r->sha)) {
            if (r->prev_committed) {
                /* the version before is the committed one again */
                json_object_set_new(c, "sha256", json_string(r->prev_committed));
                json_object_set_new(c, "version", json_string(r->prev_version ? r->prev_version : "?"));
            } else {
                json_object_del(o->committed, r->name);
            }
        }
    }
}

static void drive(orch *o, rollout *r)
{
    size_t installing = 0, pending = 0, committed = 0, failed = 0, reverting = 0;
    for (size_t i = 0; i < r->n; i++) {
        rnode *nd = &r->nodes[i];
        if (nd->st == N_INSTALLING)
            installing++; /* (counted before the checks below) */
        if (nd->st == N_PENDING)
            pending++;
        if (nd->st == N_COMMITTED)
            committed++;
        if (nd->st == N_FAILED)
            failed++;
        if (nd->st == N_REVERTING)
            reverting++;
        /* follow what runs */
        if (!nd->in_flight && (nd->st == N_INSTALLING || nd->st == N_REVERTING) && nd->install_id[0])
            call_node(o, r, i, NULL, K_STATUS, nd->id, "deploy/install_status",
                      json_pack("{s:s}", "id", nd->install_id));
        else if (!nd->in_flight && nd->st == N_REVERTING && !nd->install_id[0]) {
            nd->st = N_COMMITTED; /* the revert is sent again (conditional on the version) */
            reverting--;
            committed++;
        }
        else if (!nd->in_flight && nd->st == N_INSTALLING && !nd->install_id[0]) {
            /* the answer with the install's id was lost (a restart before it was saved):
             * ask again; an install of what already runs counts as done */
            nd->st = N_PENDING;
            installing--;
            pending++;
        }
    }
    if (!strcmp(r->state, "running") || !strcmp(r->state, "canary_wait")) {
        if (failed) {
            if (installing)
                return; /* let those finish: then they are taken back too */
            const rnode *bad = NULL;
            for (size_t i = 0; i < r->n && !bad; i++)
                if (r->nodes[i].st == N_FAILED)
                    bad = &r->nodes[i];
            char *why = p2p__xasprintf("%s: %s", bad->id, bad->reason ? bad->reason : "failed");
            if (r->auto_revert) {
                snprintf(r->state, sizeof r->state, "reverting");
                set_str(&r->reason, why);
                event(o, r, "stopped (%s); auto_revert: taking back the nodes already done", why);
            } else {
                finish(o, r, "failed", why);
            }
            free(why);
            return;
        }
        if (!strcmp(r->state, "canary_wait")) {
            if (r->promote_after > 0 && now_s() - r->wait_since >= r->promote_after) {
                r->promoted = 1;
                snprintf(r->state, sizeof r->state, "running");
                event(o, r, "promoted automatically after %.0f s", r->promote_after);
            } else {
                return;
            }
        }
        if (pending == 0 && installing == 0) {
            size_t down = 0;
            for (size_t i = 0; i < r->n; i++)
                down += r->nodes[i].st == N_DOWN;
            char *why = down ? p2p__xasprintf("%zu node(s) down converge when they come back", down) : NULL;
            finish(o, r, "done", why);
            free(why);
            return;
        }
        if (r->canary > 0 && !r->promoted && committed + installing >= (size_t)r->canary) {
            if (installing == 0 && committed >= (size_t)r->canary) {
                snprintf(r->state, sizeof r->state, "canary_wait");
                r->wait_since = now_s();
                event(o, r, "canary done on %d node(s): waiting for promote%s", r->canary,
                      r->promote_after > 0 ? " (or the promote_after delay)" : "");
            }
            return;
        }
        for (size_t i = 0; i < r->n && installing < (size_t)r->max_parallel; i++) {
            rnode *nd = &r->nodes[i];
            if (nd->st != N_PENDING || nd->in_flight)
                continue;
            if (r->canary > 0 && !r->promoted && committed + installing >= (size_t)r->canary)
                break;
            if (!node_alive(o, nd->id)) {
                nd->st = N_DOWN;
                set_str(&nd->status_detail, "the node is down: it converges when it comes back");
                event(o, r, "%s is down: skipped, it converges when it comes back", nd->id);
                continue;
            }
            installing++;
            nd->st = N_INSTALLING;
            nd->install_id[0] = '\0';
            set_str(&nd->status_detail, "starting");
            call_node(o, r, i, NULL, K_INSTALL, nd->id, "deploy/install",
                      json_pack("{s:s, s:f, s:f}", "sha256", r->sha, "min_healthy_time", r->min_healthy,
                                "healthy_deadline", r->deadline));
        }
        return;
    }
    if (!strcmp(r->state, "reverting")) {
        if (installing)
            return;
        size_t busy = reverting;
        for (size_t i = 0; i < r->n; i++) {
            rnode *nd = &r->nodes[i];
            if (nd->in_flight || busy >= (size_t)r->max_parallel)
                continue;
            if (nd->st == N_DOWN && node_alive(o, nd->id)) {
                /* it may have converged to this version meanwhile: the revert is
                 * conditional on the version running, so it is safe to ask */
                busy++;
                call_node(o, r, i, NULL, K_REVERT, nd->id, "deploy/revert",
                          json_pack("{s:s, s:s, s:s}", "name", r->name, "version", r->version, "reason",
                                    r->reason ? r->reason : "rollout reverted"));
                continue;
            }
            if (nd->st == N_PENDING || nd->st == N_DOWN) {
                nd->st = N_REVERTED;
                set_str(&nd->status_detail, "not started");
                continue;
            }
            if (nd->st != N_COMMITTED)
                continue;
            if (!node_alive(o, nd->id))
                continue; /* taken back when it returns (convergence to the committed version) */
            busy++;
            call_node(o, r, i, NULL, K_REVERT, nd->id, "deploy/revert",
                      json_pack("{s:s, s:s, s:s}", "name", r->name, "version", r->version, "reason",
                                r->reason ? r->reason : "rollout reverted"));
        }
        int left = 0;
        for (size_t i = 0; i < r->n; i++)
            left |= r->nodes[i].st == N_COMMITTED || r->nodes[i].st == N_REVERTING || r->nodes[i].in_flight;
        if (!left)
            finish(o, r, "reverted", NULL);
    }
}

/* ---- convergence: a node back converges to the committed version --------------------------- */

static void converge_params(converge *cv, json_t *c)
{
    cv->min_healthy = json_is_number(json_object_get(c, "min_healthy_time"))
                          ? json_number_value(json_object_get(c, "min_healthy_time"))
                          : 5;
    cv->deadline = json_is_number(json_object_get(c, "healthy_deadline"))
                       ? json_number_value(json_object_get(c, "healthy_deadline"))
                       : 30;
    if (cv->min_healthy < 0 || cv->min_healthy > 3600)
        cv->min_healthy = 5;
    if (cv->deadline < cv->min_healthy || cv->deadline > 3600)
        cv->deadline = cv->min_healthy > 30 ? cv->min_healthy : 30;
}

static void converge_add(orch *o, const char *node, const char *name, json_t *c)
{
    for (converge *cv = o->conv; cv; cv = cv->next)
        if (!strcmp(cv->node, node) && !strcmp(cv->name, name)) {
            if (strcmp(cv->state, "installing") && !cv->in_flight) {
                snprintf(cv->state, sizeof cv->state, "check");
                snprintf(cv->sha, sizeof cv->sha, "%s", js(c, "sha256"));
                snprintf(cv->version, sizeof cv->version, "%s", js(c, "version"));
                cv->tries = 0;
                cv->next_ms = uv_now(o->ctx->loop) + CONVERGE_DELAY_MS;
                converge_params(cv, c);
            }
            return;
        }
    converge *cv = p2p__xcalloc(1, sizeof(*cv));
    snprintf(cv->node, sizeof cv->node, "%s", node);
    snprintf(cv->name, sizeof cv->name, "%s", name);
    snprintf(cv->sha, sizeof cv->sha, "%s", js(c, "sha256"));
    snprintf(cv->version, sizeof cv->version, "%s", js(c, "version"));
    snprintf(cv->state, sizeof cv->state, "check");
    cv->next_ms = uv_now(o->ctx->loop) + CONVERGE_DELAY_MS;
    cv->next = o->conv;
    converge_params(cv, c);
    o->conv = cv;
}

static void converge_retry(orch *o, converge *cv, const char *why)
{
    if (++cv->tries >= CONVERGE_TRIES) {
        snprintf(cv->state, sizeof cv->state, "failed");
        set_str(&cv->reason, why);
        p2p_log(o->ctx, P2P_LOG_WARN, "deploy", "%s: %s does not converge to %s: %s", cv->node, cv->name,
                cv->version, why);
        return;
    }
    snprintf(cv->state, sizeof cv->state, "check");
    set_str(&cv->reason, why);
    cv->next_ms = uv_now(o->ctx->loop) + CONVERGE_DELAY_MS;
}

static void handle_converge_result(orch *o, converge *cv, int kind, json_t *res, json_t *err)
{
    if (kind == K_CV_GET) {
        const char *v = res ? js(res, "version") : "";
        if (res && !strcmp(v, cv->version) && !strcmp(js(res, "state"), "running")) {
            snprintf(cv->state, sizeof cv->state, "committed");
            set_str(&cv->reason, NULL);
            return;
        }
        if (err && !strstr(js(err, "message"), "no such service") && !strstr(js(err, "message"), "not found") &&
            !strstr(js(err, "message"), "no pluggable service")) {
            converge_retry(o, cv, js(err, "message"));
            return;
        }
        p2p_log(o->ctx, P2P_LOG_INFO, "deploy", "%s runs %s %s, committed %s: installing it", cv->node, cv->name,
                *v ? v : "nothing", cv->version);
        snprintf(cv->state, sizeof cv->state, "installing");
        call_node(o, NULL, 0, cv, K_CV_INSTALL, cv->node, "deploy/install",
                  json_pack("{s:s, s:f, s:f}", "sha256", cv->sha, "min_healthy_time", cv->min_healthy,
                            "healthy_deadline", cv->deadline));
        return;
    }
    if (kind == K_CV_INSTALL) {
        if (err) {
            converge_retry(o, cv, js(err, "message"));
            return;
        }
        snprintf(cv->install_id, sizeof cv->install_id, "%s", js(res, "id"));
        return;
    }
    /* K_CV_STATUS */
    if (err) {
        converge_retry(o, cv, js(err, "message"));
        return;
    }
    const char *st = js(res, "status");
    if (!strcmp(st, "installing"))
        return;
    if (!strcmp(st, "committed") || strstr(js(res, "reason"), "already running")) {
        snprintf(cv->state, sizeof cv->state, "committed");
        set_str(&cv->reason, NULL);
        p2p_log(o->ctx, P2P_LOG_INFO, "deploy", "%s converged to %s %s", cv->node, cv->name, cv->version);
    } else {
        snprintf(cv->state, sizeof cv->state, "failed");
        char *m = p2p__xasprintf("%s: %s", st, js(res, "reason"));
        set_str(&cv->reason, m);
        free(m);
    }
}

static void converge_tick(orch *o)
{
    uint64_t now = uv_now(o->ctx->loop);
    for (converge *cv = o->conv; cv; cv = cv->next) {
        if (cv->in_flight)
            continue;
        if (!strcmp(cv->state, "check") && now >= cv->next_ms) {
            if (!node_alive(o, cv->node))
                continue;
            call_node(o, NULL, 0, cv, K_CV_GET, cv->node, "services/get", json_pack("{s:s}", "name", cv->name));
        } else if (!strcmp(cv->state, "installing") && cv->install_id[0]) {
            call_node(o, NULL, 0, cv, K_CV_STATUS, cv->node, "deploy/install_status",
                      json_pack("{s:s}", "id", cv->install_id));
        }
    }
}

static void on_member(p2p_ctx *ctx, const char *ev, const char *node_id, void *arg)
{
    orch *o = arg;
    (void)ctx;
    if (!o->running || (strcmp(ev, "join") && strcmp(ev, "alive")) || !strcmp(node_id, o->ctx->cfg.node_id))
        return;
    rollout *r = active(o);
    if (r) {
        for (size_t i = 0; i < r->n; i++)
            if (!strcmp(r->nodes[i].id, node_id) && r->nodes[i].st == N_DOWN &&
                (!strcmp(r->state, "running") || !strcmp(r->state, "canary_wait"))) {
                r->nodes[i].st = N_PENDING;
                event(o, r, "%s is back: installing", node_id);
            }
    }
    const char *name;
    json_t *c;
    json_object_foreach(o->committed, name, c)
    {
        if (r && !strcmp(r->name, name))
            continue; /* the active rollout handles it */
        if (target_has(o, json_object_get(c, "target"), node_id))
            converge_add(o, node_id, name, c);
    }
}

static void on_tick(uv_timer_t *t)
{
    orch *o = t->data;
    rollout *r = active(o);
    if (r)
        drive(o, r);
    converge_tick(o);
    save_if_dirty(o);
}

/* ---- methods --------------------------------------------------------------------------------- */

static int num_param(json_t *p, const char *k, double dflt, double lo, double hi, double *out)
{
    json_t *v = json_object_get(p, k);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return *out >= lo && *out <= hi ? 0 : -1;
}

static void m_start(p2p_call *call, json_t *params, void *udata)
{
    orch *o = udata;
    static const char *const keys[] = {"sha256", "target", "max_parallel", "canary", "promote_after",
                                       "min_healthy_time", "healthy_deadline", "auto_revert", NULL};
    const char *k;
    json_t *v;
    int unknown = 0;
    json_object_foreach(params, k, v)
    {
        int ok = 0;
        for (int i = 0; keys[i]; i++)
            ok |= !strcmp(k, keys[i]);
        unknown |= !ok;
    }
    const char *sha = json_string_value(json_object_get(params, "sha256"));
    json_t *target = json_object_get(params, "target");
    double mp = 1, can = 0, pa = 0, mh = 5, dl = 30;
    json_t *ar = json_object_get(params, "auto_revert");
    int bad = !json_is_object(params) || unknown || !sha || !p2p__store_sha_ok(sha) ||
              num_param(params, "max_parallel", 1, 1, 64, &mp) || num_param(params, "canary", 0, 0, MAX_NODES, &can) ||
              num_param(params, "promote_after", 0, 0, 86400, &pa) ||
              num_param(params, "min_healthy_time", 5, 0, 3600, &mh) ||
              num_param(params, "healthy_deadline", 30, 0, 3600, &dl) || dl < mh || (ar && !json_is_boolean(ar));
    if (target && !bad) {
        if (json_is_string(target)) {
            const char *t = json_string_value(target);
            bad = strcmp(t, "all") && (strncmp(t, "all:", 4) || !t[4] || strlen(t) > 68);
        } else if (json_is_array(target)) {
            size_t i;
            bad = json_array_size(target) == 0 || json_array_size(target) > MAX_NODES;
            json_array_foreach(target, i, v) bad |= !json_is_string(v) || !*json_string_value(v) ||
                                                    strlen(json_string_value(v)) >= 64;
        } else {
            bad = 1;
        }
    }
    if (bad) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       "Invalid params: expected {sha256: 64 hex, target?: \"all\" | \"all:ROLE\" | [node ids], "
                       "max_parallel?: 1..64, canary?: count, promote_after?: seconds, min_healthy_time?: seconds, "
                       "healthy_deadline?: seconds >= min_healthy_time, auto_revert?: bool}",
                       NULL);
        return;
    }
    if (active(o)) {
        char *m = p2p__xasprintf("rollout %s is not over (revert it or wait)", active(o)->id);
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, m, NULL);
        free(m);
        return;
    }
    json_t *meta = p2p__store_package(o->ctx, sha);
    if (!meta || strcmp(js(meta, "type"), "service")) {
        json_decref(meta);
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no such service package in the store (upload it first)", NULL);
        return;
    }
    /* the nodes: named, or every member (dead ones too: they converge) of the role */
    json_t *ids = json_array();
    if (json_is_array(target)) {
        size_t i;
        json_array_foreach(target, i, v)
        {
            char addr[64];
            uint16_t port;
            if (p2p__membership_lookup(o->ctx, json_string_value(v), addr, sizeof addr, &port) == -ENOENT) {
                char *m = p2p__xasprintf("no such node in the cluster: %s", json_string_value(v));
                p2p_call_error(call, P2P_RPC_INVALID_PARAMS, m, NULL);
                free(m);
                json_decref(ids);
                json_decref(meta);
                return;
            }
            json_array_append(ids, v);
        }
    } else {
        const char *t = target ? json_string_value(target) : "all";
        json_t *nodes = p2p__membership_nodes_json(o->ctx);
        size_t i;
        json_array_foreach(json_object_get(nodes, "nodes"), i, v)
        {
            if (strcmp(t, "all") && strcmp(js(v, "role"), t + 4))
                continue;
            if (json_array_size(ids) < MAX_NODES)
                json_array_append_new(ids, json_string(js(v, "node_id")));
        }
        json_decref(nodes);
    }
    if (json_array_size(ids) == 0) {
        json_decref(ids);
        json_decref(meta);
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "the target names no node", NULL);
        return;
    }
    rollout *r = p2p__xcalloc(1, sizeof(*r));
    snprintf(r->id, sizeof r->id, "r%llu-%llu", (unsigned long long)(p2p__wall_ms() / 1000),
             (unsigned long long)++o->next_id);
    snprintf(r->sha, sizeof r->sha, "%s", sha);
    r->name = p2p__xstrdup(js(meta, "name"));
    r->version = p2p__xstrdup(js(meta, "version"));
    json_decref(meta);
    r->target = target ? json_incref(target) : json_string("all");
    r->max_parallel = (int)mp;
    r->canary = (int)can;
    r->promote_after = pa;
    r->min_healthy = mh;
    r->deadline = dl;
    r->auto_revert = ar ? json_is_true(ar) : 1;
    snprintf(r->state, sizeof r->state, "running");
    r->created = r->updated = now_s();
    r->events = json_array();
    json_t *c = json_object_get(o->committed, r->name);
    if (c && strcmp(js(c, "sha256"), sha)) {
        r->prev_committed = p2p__xstrdup(js(c, "sha256"));
        r->prev_version = p2p__xstrdup(js(c, "version"));
    }
    r->n = json_array_size(ids);
    r->nodes = p2p__xcalloc(r->n, sizeof(rnode));
    for (size_t i = 0; i < r->n; i++)
        snprintf(r->nodes[i].id, sizeof r->nodes[i].id, "%s", json_string_value(json_array_get(ids, i)));
    json_decref(ids);
    /* keep the last KEEP_ROLLOUTS */
    if (o->n_ro >= KEEP_ROLLOUTS) {
        rollout_free(o->ro[0]);
        memmove(o->ro, o->ro + 1, (o->n_ro - 1) * sizeof(*o->ro));
        o->n_ro--;
    }
    o->ro = realloc(o->ro, (o->n_ro + 1) * sizeof(*o->ro));
    o->ro[o->n_ro++] = r;
    event(o, r, "started: %s %s on %zu node(s), max_parallel %d, canary %d", r->name, r->version, r->n,
          r->max_parallel, r->canary);
    drive(o, r);
    save_if_dirty(o);
    p2p_call_reply(call, rollout_json(r));
}

static json_t *converge_json(orch *o)
{
    json_t *a = json_array();
    for (converge *cv = o->conv; cv; cv = cv->next) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "node", cv->node, "name", cv->name, "version", cv->version,
                              "state", cv->state);
        if (cv->reason)
            json_object_set_new(j, "reason", json_string(cv->reason));
        json_array_append_new(a, j);
    }
    return a;
}

static const char *id_param(p2p_call *call, json_t *params, int optional)
{
    const char *id = json_string_value(json_object_get(params, "id"));
    if ((params && !json_is_object(params)) || (params && json_object_size(params) > (id ? 1u : 0u)) ||
        (!id && !optional)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, optional ? "Invalid params: expected {id?: string}"
                                                              : "Invalid params: expected {id: string}",
                       NULL);
        return (const char *)-1;
    }
    return id;
}

/* Every rollout (newest first), the committed versions and the convergence: what
 * deploy/rollout_status answers without an id. */
static json_t *status_json(orch *o)
{
    json_t *list = json_array();
    for (size_t i = o->n_ro; i-- > 0;)
        json_array_append_new(list, rollout_json(o->ro[i]));
    return json_pack("{s:o, s:O, s:o}", "rollouts", list, "committed", o->committed, "convergence", converge_json(o));
}

/* GET /api/dashboard/rollouts (the dashboard's Services tab; read-only, viewers too). */
static void http_rollouts(p2p_http_req *r)
{
    orch *o = r->udata;
    json_t *j = status_json(o);
    p2p__http_send_json(r->req, 200, "OK", j);
    json_decref(j);
}

static void m_status(p2p_call *call, json_t *params, void *udata)
{
    orch *o = udata;
    const char *id = id_param(call, params, 1);
    if (id == (const char *)-1)
        return;
    if (id) {
        rollout *r = find(o, id);
        if (!r)
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no such rollout", NULL);
        else
            p2p_call_reply(call, rollout_json(r));
        return;
    }
    p2p_call_reply(call, status_json(o));
}

static void m_promote(p2p_call *call, json_t *params, void *udata)
{
    orch *o = udata;
    const char *id = id_param(call, params, 0);
    if (id == (const char *)-1)
        return;
    rollout *r = find(o, id);
    if (!r) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no such rollout", NULL);
        return;
    }
    if (strcmp(r->state, "running") && strcmp(r->state, "canary_wait")) {
        char *m = p2p__xasprintf("rollout %s is %s: nothing to promote", r->id, r->state);
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, m, NULL);
        free(m);
        return;
    }
    r->promoted = 1;
    snprintf(r->state, sizeof r->state, "running");
    event(o, r, "promoted by an operator");
    drive(o, r);
    save_if_dirty(o);
    p2p_call_reply(call, rollout_json(r));
}

static void m_revert(p2p_call *call, json_t *params, void *udata)
{
    orch *o = udata;
    const char *id = id_param(call, params, 0);
    if (id == (const char *)-1)
        return;
    rollout *r = find(o, id);
    if (!r) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no such rollout", NULL);
        return;
    }
    if (!strcmp(r->state, "reverted") || !strcmp(r->state, "reverting")) {
        p2p_call_reply(call, rollout_json(r));
        return;
    }
    rollout *a = active(o);
    if (a && a != r) {
        char *m = p2p__xasprintf("rollout %s is running: revert that one first", a->id);
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST, m, NULL);
        free(m);
        return;
    }
    json_t *c = json_object_get(o->committed, r->name);
    if (!strcmp(r->state, "done") && c && strcmp(js(c, "sha256"), r->sha)) {
        p2p_call_error(call, P2P_RPC_INVALID_REQUEST,
                       "a later rollout of this service is committed: only the last one can be reverted", NULL);
        return;
    }
    snprintf(r->state, sizeof r->state, "reverting");
    set_str(&r->reason, "reverted by an operator");
    event(o, r, "reverting on an operator's request");
    drive(o, r);
    save_if_dirty(o);
    p2p_call_reply(call, rollout_json(r));
}

static const p2p_method_desc methods[] = {
    {"rollout_start",
     "Starts a rollout of a stored service package: {sha256, target?: all | all:ROLE | [node ids], max_parallel?, "
     "canary?, promote_after?, min_healthy_time?, healthy_deadline?, auto_revert?} -> the rollout.",
     "{sha256, target?, max_parallel?, canary?, promote_after?, min_healthy_time?, healthy_deadline?, auto_revert?}",
     P2P_METHOD_ADMIN, m_start, NULL},
    {"rollout_status", "One rollout {id}, or every rollout, the committed versions and the convergence of nodes "
                       "that came back.",
     "{id?}", P2P_METHOD_READONLY, m_status, NULL},
    {"rollout_promote", "A canary rollout waiting for approval goes on to the other nodes.", "{id}",
     P2P_METHOD_ADMIN, m_promote, NULL},
    {"rollout_revert", "Stops a rollout and takes every node it did back to the version before.", "{id}",
     P2P_METHOD_ADMIN, m_revert, NULL},
};

/* ---- component -------------------------------------------------------------------------------- */

static int orch_start(p2p_component *c, char **err)
{
    orch *o = c->self;
    if (!c->ctx->cfg.coordinator_mode)
        return 0;
    if (!o->path) {
        o->path = p2p__xasprintf("%s/rollouts.json", c->ctx->cfg.state_directory);
        load_state(o);
    }
    if (!o->registered) {
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
            p2p_method_desc d = methods[i];
            d.udata = o;
            int r = p2p_method_register(c->ctx, "deploy", &d);
            if (r != 0)
                return p2p__fail(err, r, "cannot register deploy/%s: %s", d.name, p2p_strerror(r));
        }
        o->registered = 1;
    }
    /* the dashboard's Rollouts panel; removed at stop (the handler points at o) */
    p2p_http_route_desc d = {"GET", "/api/dashboard/rollouts", P2P_HTTP_EXACT, P2P_HTTP_ANY, P2P_RL_OTHER,
                             "orchestrator", http_rollouts, o};
    int rr = p2p__http_route_add(c->ctx, &d);
    if (rr != 0 && rr != -EEXIST)
        return p2p__fail(err, rr, "cannot add GET /api/dashboard/rollouts: %s", p2p_strerror(rr));
    if (!o->listening) {
        p2p__membership_listen(c->ctx, on_member, o);
        o->listening = 1;
    }
    o->running = 1;
    if (!o->timer_open) {
        uv_timer_init(c->ctx->loop, &o->timer);
        o->timer.data = o;
        o->timer_open = 1;
    }
    uv_timer_start(&o->timer, on_tick, TICK_MS, TICK_MS);
    return 0;
}

static void orch_stop(p2p_component *c)
{
    orch *o = c->self;
    if (!o->running)
        return;
    save_if_dirty(o);
    p2p__http_routes_remove_owner(c->ctx, "orchestrator");
    o->running = 0;
    if (o->timer_open)
        uv_timer_stop(&o->timer);
}

static const p2p_component_ops orch_ops = {
    .name = "orchestrator",
    .deps = (const char *const[]){"update_server", "update_manager", "membership", NULL},
    .start = orch_start,
    .stop = orch_stop,
};

static void on_timer_closed(uv_handle_t *h) { (void)h; }

static void free_orch(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    orch *o = arg;
    if (o->timer_open) {
        uv_close((uv_handle_t *)&o->timer, on_timer_closed);
        o->timer_open = 0;
    }
    if (o->pending_calls)
        return; /* a callback still points at it: left to the process exit */
    for (size_t i = 0; i < o->n_ro; i++)
        rollout_free(o->ro[i]);
    free(o->ro);
    while (o->conv) {
        converge *n = o->conv->next;
        free(o->conv->reason);
        free(o->conv);
        o->conv = n;
    }
    json_decref(o->committed);
    free(o->path);
    free(o);
}

int p2p__orchestrator_register(p2p_ctx *ctx)
{
    orch *o = p2p__xcalloc(1, sizeof(*o));
    o->ctx = ctx;
    if (!p2p__component_add(ctx, &orch_ops, o)) {
        free(o);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_orch, o);
    return 0;
}
