/*
 * manager.c — pluggable services: the "services" component.
 *
 * It finds services in services_directory (one folder each, with a
 * manifest.json), starts them in dependency order, keeps watching the folder
 * (inotify through uv_fs_event, plus a periodic rescan as a fallback, because
 * inotify misses changes inside sub-folders and on some file systems), and
 * answers the operator's list/start/stop/restart/reload.
 *
 * Calls. Each method listed in a manifest is registered once in the node's
 * method registry with dispatch() as its handler and a slot (entry + method
 * name) as its udata. dispatch() hands the call to the entry's *active*
 * instance and counts it in flight there until it completes (the call's
 * completion hook). That indirection is what makes hot reload lose nothing:
 *   1. the new version is loaded and started beside the old one, which keeps
 *      serving; if it fails, it is dropped and the old one goes on;
 *   2. once its start succeeded, `active` points at it: the very next call
 *      goes there;
 *   3. the old instance is *retired*: calls already handed to it finish there;
 *      when its last one completes it is stopped and freed.
 * No call is ever refused or failed because of a reload.
 *
 * Dependencies. A service starts only when every service it depends on is
 * running; one whose dependency is missing, failed or stopped fails with that
 * reason, and a cycle fails every service in it, naming the cycle. Starting
 * one service re-examines the others that waited for it.
 */
#include "services/internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/util.h"
#include "rpc/jsonrpc.h"
#include "services/manager.h"

#define DEBOUNCE_MS 150

static const char *const state_names[] = {"loading", "starting", "running", "stopping",
                                          "stopped", "failed",   "disabled"};

const char *p2p__svc_state_name(svc_state s)
{
    return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "?";
}

static svc_manager *get_mgr(p2p_ctx *ctx)
{
    return p2p_shared_get(ctx, "services");
}

static uint64_t now_ms(void)
{
    return p2p__wall_ms();
}

static void set_reason(svc_entry *e, const char *reason)
{
    char *r = reason ? p2p__xstrdup(reason) : NULL; /* `reason` may be e->reason itself */
    free(e->reason);
    e->reason = r;
}

void p2p__svc_note_error(svc_entry *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(e->last_error);
    e->last_error = p2p__xstrdup(buf);
    e->last_error_ms = now_ms();
}

static void answer_waiters(svc_entry *e);
static json_t *entry_json(svc_entry *e);

static void tell_listeners(svc_entry *e)
{
    svc_manager *m = e->mgr;
    if (!m || m->n_listeners == 0)
        return;
    json_t *d = entry_json(e);
    for (size_t i = 0; i < m->n_listeners; i++)
        m->listeners[i].fn(m->ctx, e->name, d, m->listeners[i].arg);
    json_decref(d);
}

static void set_state(svc_entry *e, svc_state s, const char *reason)
{
    int changed = e->state != s;
    if (e->state != s)
        e->state_since_ms = now_ms();
    e->state = s;
    set_reason(e, reason);
    if (e->reg)
        e->reg->status = p2p__svc_state_name(s);
    p2p__svc_routes_sync(e);
    if (s == SVC_RUNNING || s == SVC_FAILED || s == SVC_STOPPED || s == SVC_DISABLED)
        answer_waiters(e);
    if (changed)
        tell_listeners(e);
}

/* ---- entries --------------------------------------------------------------------- */

static svc_entry *find_entry(svc_manager *m, const char *name)
{
    for (size_t i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i]->name, name) == 0)
            return m->entries[i];
    return NULL;
}

static svc_entry *new_entry(svc_manager *m, const char *name)
{
    svc_entry *e = p2p__xcalloc(1, sizeof(*e));
    e->mgr = m;
    e->name = p2p__xstrdup(name);
    e->dir = p2p__xasprintf("%s/%s", m->dir, name);
    e->state = SVC_STOPPED;
    e->state_since_ms = now_ms();
    e->state_path = p2p__xasprintf("%s/%s.json", m->state_dir, name);
    m->entries = p2p__xrealloc(m->entries, (m->n_entries + 1) * sizeof(*m->entries));
    m->entries[m->n_entries++] = e;
    return e;
}

static svc_slot *slot_for(svc_entry *e, const char *method)
{
    for (size_t i = 0; i < e->n_slots; i++)
        if (strcmp(e->slots[i]->name, method) == 0)
            return e->slots[i];
    svc_slot *s = p2p__xcalloc(1, sizeof(*s));
    s->entry = e;
    s->name = p2p__xstrdup(method);
    e->slots = p2p__xrealloc(e->slots, (e->n_slots + 1) * sizeof(*e->slots));
    e->slots[e->n_slots++] = s;
    return s;
}

/* ---- calls ------------------------------------------------------------------------- */

static const p2p_manifest_method *manifest_method(const p2p_manifest *man, const char *name)
{
    for (size_t i = 0; i < man->n_methods; i++)
        if (strcmp(man->methods[i].name, name) == 0)
            return &man->methods[i];
    return NULL;
}

static void stop_instance(p2p_svc *inst);

static void call_done(void *arg)
{
    p2p_svc *inst = arg;
    inst->inflight--;
    if (inst->retiring && inst->inflight == 0)
        stop_instance(inst);
}

void p2p__svc_inflight_done(p2p_svc *inst)
{
    call_done(inst);
}

static void dispatch(p2p_call *call, json_t *params, void *udata)
{
    svc_slot *slot = udata;
    svc_entry *e = slot->entry;
    p2p_svc *inst = e->active;
    if (!inst || e->state != SVC_RUNNING) {
        char *msg = p2p__xasprintf("service %s is %s%s%s", e->name, p2p__svc_state_name(e->state),
                                   e->reason ? ": " : "", e->reason ? e->reason : "");
        p2p_call_error(call, P2P_RPC_E_SERVICE_DOWN, msg, NULL);
        free(msg);
        return;
    }
    if (!manifest_method(&inst->man, slot->name)) {
        char *msg = p2p__xasprintf("Method not found: %s/%s (not in %s %s)", e->name, slot->name, e->name,
                                   inst->man.version);
        p2p_call_error(call, P2P_RPC_METHOD_NOT_FOUND, msg, NULL);
        free(msg);
        return;
    }
    inst->inflight++;
    p2p__call_on_done(call, call_done, inst);
    inst->driver->call(inst, call, slot->name, params);
}

/* ---- registry -------------------------------------------------------------------- */

static json_t *describe(const p2p_service *s, void *arg);

/* Registers the entry's service and the methods of `man` (new ones added,
 * existing ones' descriptions and flags brought up to date). */
static void publish(svc_entry *e, const p2p_manifest *man)
{
    p2p_ctx *ctx = e->mgr->ctx;
    p2p_registry *reg = ctx->registry;
    if (!e->reg) {
        p2p_service_desc d = {.name = e->name, .version = man->version, .description = man->description};
        int r = p2p_service_register(ctx, &d);
        if (r != 0) {
            p2p_log(ctx, P2P_LOG_ERROR, "services", "%s: cannot register: %s", e->name, p2p_strerror(r));
            return;
        }
        e->reg = p2p__registry_service(reg, e->name);
        e->reg->describe = describe;
        e->reg->describe_arg = e;
    } else {
        free(e->reg->version);
        e->reg->version = p2p__xstrdup(man->version);
        free(e->reg->description);
        e->reg->description = p2p__xstrdup(man->description);
    }
    for (size_t i = 0; i < man->n_methods; i++) {
        const p2p_manifest_method *mm = &man->methods[i];
        unsigned flags = (mm->read_only ? P2P_METHOD_READONLY : 0) | (mm->is_public ? P2P_METHOD_PUBLIC : 0);
        char *path = p2p__xasprintf("%s/%s", e->name, mm->name);
        p2p_method *m = p2p__registry_find(reg, path, strlen(path));
        free(path);
        if (m) {
            m->flags = flags;
            free(m->description);
            m->description = p2p__xstrdup(mm->description);
            free(m->params);
            m->params = p2p__xstrdup(mm->params);
            continue;
        }
        p2p_method_desc d = {.name = mm->name,
                             .description = mm->description,
                             .params = mm->params,
                             .flags = flags,
                             .fn = dispatch,
                             .udata = slot_for(e, mm->name)};
        int r = p2p_method_register(ctx, e->name, &d);
        if (r != 0)
            p2p_log(ctx, P2P_LOG_ERROR, "services", "%s: cannot register method %s: %s", e->name, mm->name,
                    p2p_strerror(r));
    }
    e->reg->started_at_ms = now_ms();
}

static void unpublish(svc_entry *e)
{
    if (!e->reg)
        return;
    p2p__registry_remove_service(e->mgr->ctx->registry, e->name);
    e->reg = NULL;
}

/* ---- instances --------------------------------------------------------------------- */

static void kick(svc_manager *m);
static void start_entry(svc_entry *e, int is_reload);

static void instance_free(p2p_svc *inst)
{
    if (inst->driver && inst->driver->destroy)
        inst->driver->destroy(inst);
    p2p__svc_routes_free(inst);
    p2p__manifest_free(&inst->man);
    free(inst->load_error);
    free(inst->health_msg);
    free(inst);
}

static void reap(p2p_svc *inst)
{
    svc_entry *e = inst->entry;
    for (size_t i = 0; i < e->n_retired; i++) {
        if (e->retired[i] == inst) {
            memmove(&e->retired[i], &e->retired[i + 1], (e->n_retired - i - 1) * sizeof(*e->retired));
            e->n_retired--;
            break;
        }
    }
    instance_free(inst);
}

static void on_reap_closed(uv_handle_t *h)
{
    free(h);
}

static void on_reap(uv_timer_t *t)
{
    p2p_svc *inst = t->data;
    uv_close((uv_handle_t *)t, on_reap_closed);
    reap(inst);
}

/* Frees a stopped (or never started) instance once nothing of it is left — on
 * the next turn of the loop, never from inside the call that made it quiet: a
 * driver's callback (a process that failed, a stop that completed at once) may
 * still be running on the instance when it reports the last event. The
 * one-shot timer is its own handle, closed as it fires, so nothing is left
 * open at shutdown. */
void p2p__svc_instance_maybe_free(p2p_svc *inst)
{
    if (!inst->destroying || inst->inflight || !p2p__svc_host_quiet(inst) || inst->reaping)
        return;
    inst->reaping = 1;
    uv_timer_t *t = p2p__xmalloc(sizeof(*t));
    uv_timer_init(inst->ctx->loop, t);
    t->data = inst;
    uv_timer_start(t, on_reap, 0, 0);
}

static void discard(p2p_svc *inst)
{
    inst->destroying = 1;
    p2p__svc_host_stop(inst);
    svc_entry *e = inst->entry;
    e->retired = p2p__xrealloc(e->retired, (e->n_retired + 1) * sizeof(*e->retired));
    e->retired[e->n_retired++] = inst;
    p2p__svc_instance_maybe_free(inst);
}

static void on_stopped(p2p_svc *inst, int status, const char *reason)
{
    svc_entry *e = inst->entry;
    inst->state = SVC_STOPPED;
    if (status != 0)
        p2p_log(e->mgr->ctx, P2P_LOG_WARN, "services", "%s %s stopped uncleanly: %s", e->name, inst->man.version,
                reason ? reason : p2p_strerror(status));
    else
        p2p_log(e->mgr->ctx, P2P_LOG_DEBUG, "services", "%s %s (instance %u) stopped", e->name, inst->man.version,
                inst->generation);
    if (e->active == inst)
        e->active = NULL;
    discard(inst);
    if (e->reload_requested && !e->loading && !e->removed && e->mgr->running) {
        /* a restart, or a start asked for while stopping */
        e->reload_requested = 0;
        start_entry(e, e->active != NULL);
    } else if (!e->active && !e->loading && e->state == SVC_STOPPING) {
        set_state(e, SVC_STOPPED, e->removed ? "folder removed" : e->reason);
    }
}

static void stop_instance(p2p_svc *inst)
{
    if (inst->stop_started)
        return;
    inst->stop_started = 1;
    inst->state = SVC_STOPPING;
    inst->driver->stop(inst, on_stopped);
}

/* No new calls for `inst`; stopped once its calls in flight completed. */
static void retire(p2p_svc *inst)
{
    inst->retiring = 1;
    if (inst->entry->active == inst)
        inst->entry->active = NULL;
    if (inst->inflight == 0)
        stop_instance(inst);
}

static void on_started(p2p_svc *inst, int status, const char *reason)
{
    svc_entry *e = inst->entry;
    svc_manager *m = e->mgr;
    e->loading = NULL;
    if (status != 0) {
        p2p__svc_note_error(e, "start of %s failed: %s", inst->man.version, reason ? reason : p2p_strerror(status));
        if (e->active) {
            e->reload_failures++;
            p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s: reload to %s failed: %s; %s keeps serving", e->name,
                    inst->man.version, reason ? reason : p2p_strerror(status), e->active->man.version);
            answer_waiters(e);
        } else {
            p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s %s failed to start: %s", e->name, inst->man.version,
                    reason ? reason : p2p_strerror(status));
            set_state(e, SVC_FAILED, reason ? reason : p2p_strerror(status));
        }
        inst->state = SVC_FAILED;
        inst->start_failed = 1;
        /* through the driver's stop all the same: a process must be gone (a
         * module's stop hook is not owed) before the instance is freed */
        stop_instance(inst);
        kick(m);
        return;
    }
    inst->state = SVC_RUNNING;
    if (e->removed || e->stop_requested || !m->running) {
        /* stopped, removed or shutting down while it loaded: its start ran, so
         * it is stopped properly (stop hook, or shutdown for exec) and dropped */
        if (!e->active)
            set_state(e, SVC_STOPPING, e->removed ? "folder removed" : e->reason);
        stop_instance(inst);
        return;
    }
    publish(e, &inst->man);
    p2p_svc *old = e->active;
    e->active = inst;
    p2p__svc_health_adopt(e, inst);
    if (old) {
        e->reloads++;
        p2p_log(m->ctx, P2P_LOG_INFO, "services", "%s reloaded: %s -> %s (%zu call(s) finishing on the old one)",
                e->name, old->man.version, inst->man.version, old->inflight);
        retire(old);
    } else {
        p2p_log(m->ctx, P2P_LOG_INFO, "services", "%s %s running (%s)", e->name, inst->man.version,
                inst->driver->name);
    }
    set_state(e, SVC_RUNNING, NULL);
    if (e->reload_requested) {
        e->reload_requested = 0;
        start_entry(e, 1);
    }
    kick(m);
}

static void on_loaded(p2p_svc *inst, int status, const char *reason)
{
    svc_entry *e = inst->entry;
    if (status == 0 && (e->removed || e->stop_requested || !e->mgr->running)) {
        /* no start for a version nobody wants any more; its init ran, so it
         * goes through stop (no stop hook owed) and cleanup */
        e->loading = NULL;
        inst->start_failed = 1;
        if (!e->active && e->state != SVC_STOPPED)
            set_state(e, e->mgr->running ? SVC_STOPPED : e->state, e->removed ? "folder removed" : e->reason);
        stop_instance(inst);
        return;
    }
    if (status != 0) {
        on_started(inst, status, reason);
        return;
    }
    if (!inst->entry->active)
        set_state(inst->entry, SVC_STARTING, NULL);
    inst->state = SVC_STARTING;
    inst->driver->start(inst, on_started);
}

/* ---- reading the folder -------------------------------------------------------------- */

/* The manifest of `e` as it is on disk, or NULL with e->disk_error set. */
static p2p_manifest *read_manifest(svc_entry *e)
{
    char *path = p2p__xasprintf("%s/manifest.json", e->dir);
    char *text = NULL;
    size_t len = 0;
    int r = p2p__read_file(path, P2P_MANIFEST_MAX_BYTES + 1, &text, &len);
    p2p_manifest *man = NULL;
    free(e->disk_error);
    e->disk_error = NULL;
    if (r != 0) {
        e->disk_error = p2p__xasprintf("%s: cannot read: %s", path, strerror(-r));
    } else {
        man = p2p__xcalloc(1, sizeof(*man));
        char *err = NULL;
        if (p2p__manifest_parse(text, len, e->name, path, man, &err) != 0) {
            e->disk_error = err;
            free(man);
            man = NULL;
        }
    }
    free(text);
    free(path);
    free(e->disk_version);
    e->disk_version = man ? p2p__xstrdup(man->version) : NULL;
    if (man)
        e->disk_type = man->type;
    return man;
}

static int role_allowed(const p2p_manifest *man, const char *role)
{
    if (man->n_roles == 0)
        return 1;
    for (size_t i = 0; i < man->n_roles; i++)
        if (strcmp(man->roles[i], role) == 0)
            return 1;
    return 0;
}

/* 0 when every dependency runs; else 1 (some are on their way: wait) or -1
 * (one is missing, failed, stopped or disabled: fail) with `why`. */
static int deps_ready(svc_entry *e, const p2p_manifest *man, char *why, size_t n)
{
    int wait = 0;
    for (size_t i = 0; i < man->n_dependencies; i++) {
        svc_entry *d = find_entry(e->mgr, man->dependencies[i]);
        if (!d || !d->present || d->removed) {
            snprintf(why, n, "dependency %s is not installed", man->dependencies[i]);
            return -1;
        }
        if (d->state == SVC_RUNNING)
            continue;
        if (d->state == SVC_LOADING || d->state == SVC_STARTING || (d->state == SVC_STOPPED && !d->stop_requested &&
                                                                      !d->disk_error && !d->reason)) {
            wait = 1;
            snprintf(why, n, "waiting for %s", man->dependencies[i]);
            continue;
        }
        snprintf(why, n, "dependency %s is %s", man->dependencies[i], p2p__svc_state_name(d->state));
        return -1;
    }
    return wait;
}

/* Follows dependencies from `e`; 1 with the cycle written to `path` if `e`
 * is on one. Depth is bounded by the number of entries. */
static int on_cycle(svc_manager *m, svc_entry *start, const char *name, char *path, size_t n, size_t depth)
{
    if (depth > m->n_entries)
        return 0;
    svc_entry *e = find_entry(m, name);
    if (!e || !e->present || e->removed)
        return 0;
    p2p_manifest *man = read_manifest(e);
    if (!man)
        return 0;
    int found = 0;
    for (size_t i = 0; i < man->n_dependencies && !found; i++) {
        if (strcmp(man->dependencies[i], start->name) == 0 ||
            on_cycle(m, start, man->dependencies[i], path, n, depth + 1)) {
            size_t l = strlen(path);
            snprintf(path + l, n - l, "%s%s", l ? " <- " : "", name);
            found = 1;
        }
    }
    p2p__manifest_free(man);
    free(man);
    return found;
}

/* Loads the version on disk: a first start, a restart, or a reload beside the
 * running version. */
static void start_entry(svc_entry *e, int is_reload)
{
    svc_manager *m = e->mgr;
    if (!m->running)
        return;
    if (e->loading) {
        e->reload_requested = 1;
        return;
    }
    p2p_manifest *man = read_manifest(e);
    if (!man) {
        p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s refused: %s", e->name, e->disk_error);
        p2p__svc_note_error(e, "%s", e->disk_error);
        if (e->active)
            answer_waiters(e); /* the running version stays */
        else
            set_state(e, SVC_FAILED, e->disk_error);
        return;
    }
    if (!role_allowed(man, p2p_node_role(m->ctx))) {
        char why[128];
        snprintf(why, sizeof why, "not for this node's role (%s)", p2p_node_role(m->ctx));
        if (e->active)
            retire(e->active);
        set_state(e, e->active ? SVC_STOPPING : SVC_DISABLED, why);
        p2p__manifest_free(man);
        free(man);
        return;
    }
    char why[256] = "";
    if (man->n_dependencies && on_cycle(m, e, e->name, why, sizeof why, 0)) {
        char msg[320];
        snprintf(msg, sizeof msg, "dependency cycle: %s", why);
        p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s refused: %s", e->name, msg);
        set_state(e, SVC_FAILED, msg);
        p2p__manifest_free(man);
        free(man);
        return;
    }
    int d = deps_ready(e, man, why, sizeof why);
    if (d != 0 && !is_reload) {
        if (d < 0)
            p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s not started: %s", e->name, why);
        set_state(e, d < 0 ? SVC_FAILED : SVC_LOADING, why);
        p2p__manifest_free(man);
        free(man);
        return;
    }
    if (e->state_doc == NULL) {
        char *err = NULL;
        if (p2p__svc_state_load(e, &err) != 0) {
            p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s: %s", e->name, err);
            set_state(e, SVC_FAILED, err);
            free(err);
            p2p__manifest_free(man);
            free(man);
            return;
        }
    }
    p2p_svc *inst = p2p__xcalloc(1, sizeof(*inst));
    inst->entry = e;
    inst->ctx = m->ctx;
    inst->man = *man;
    free(man);
    inst->driver = inst->man.type == P2P_SVC_NATIVE ? &p2p__svc_native_driver : &p2p__svc_exec_driver;
    inst->generation = ++e->generations;
    inst->state = SVC_LOADING;
    e->loading = inst;
    /* a first start publishes the methods at once: a call meanwhile gets
     * "service X is loading/starting/failed: why" rather than "method not found" */
    if (!e->reg)
        publish(e, &inst->man);
    if (!e->active)
        set_state(e, SVC_LOADING, NULL);
    p2p_log(m->ctx, P2P_LOG_INFO, "services", "%s %s: loading %s (%s)", e->name, inst->man.version,
            is_reload ? "beside the running version" : "", inst->driver->name);
    inst->driver->load(inst, on_loaded);
}

/* Starts the entries that wait (for a dependency, or for their first start). */
static void kick(svc_manager *m)
{
    if (!m->running)
        return;
    for (size_t i = 0; i < m->n_entries; i++) {
        svc_entry *e = m->entries[i];
        if (!e->present || e->removed || e->loading || e->active || e->stop_requested)
            continue;
        if (e->state == SVC_LOADING && e->reason) /* waiting for a dependency */
            start_entry(e, 0);
    }
}

static void stop_entry(svc_entry *e, const char *why)
{
    if (e->loading)
        e->reload_requested = 0;
    if (e->active) {
        set_state(e, SVC_STOPPING, why);
        retire(e->active);
    } else if (!e->loading) {
        set_state(e, SVC_STOPPED, why);
    }
}

/* ---- scanning --------------------------------------------------------------------------- */

static char *fingerprint(svc_entry *e)
{
    char *mpath = p2p__xasprintf("%s/manifest.json", e->dir);
    struct stat a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int ra = stat(mpath, &a);
    free(mpath);
    /* the module or program beside it: native's entry; exec's files are its own */
    char *spath = p2p__xasprintf("%s/service.so", e->dir);
    int rb = stat(spath, &b);
    free(spath);
    return p2p__xasprintf("%d:%lld:%lld:%lld.%09ld|%d:%lld:%lld:%lld.%09ld", ra, (long long)a.st_ino,
                          (long long)a.st_size, (long long)a.st_mtim.tv_sec, a.st_mtim.tv_nsec, rb,
                          (long long)b.st_ino, (long long)b.st_size, (long long)b.st_mtim.tv_sec, b.st_mtim.tv_nsec);
}

static void watch_entry(svc_entry *e);
static void unwatch_entry(svc_entry *e);

static void scan(svc_manager *m)
{
    if (!m->running || m->scanning)
        return;
    m->scanning = 1;
    m->scans++;
    for (size_t i = 0; i < m->n_entries; i++)
        m->entries[i]->present = 0;
    DIR *d = opendir(m->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            char *p = p2p__xasprintf("%s/%s", m->dir, de->d_name);
            struct stat st;
            int isdir = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
            free(p);
            if (!isdir)
                continue;
            svc_entry *e = find_entry(m, de->d_name);
            if (!e) {
                if (!p2p__service_name_valid(de->d_name)) {
                    p2p_log(m->ctx, P2P_LOG_DEBUG, "services", "ignoring folder '%s': not a service name",
                            de->d_name);
                    continue;
                }
                e = new_entry(m, de->d_name);
            }
            e->present = 1;
        }
        closedir(d);
    }
    /* what changed */
    for (size_t i = 0; i < m->n_entries; i++) {
        svc_entry *e = m->entries[i];
        if (!e->present) {
            if (!e->removed && (e->fingerprint || e->active || e->loading)) {
                p2p_log(m->ctx, P2P_LOG_INFO, "services", "%s: folder removed; stopping", e->name);
                e->removed = 1;
                free(e->fingerprint);
                e->fingerprint = NULL;
                unwatch_entry(e);
                stop_entry(e, "folder removed");
                unpublish(e);
            }
            continue;
        }
        char *fp = fingerprint(e);
        int changed = !e->fingerprint || strcmp(fp, e->fingerprint) != 0;
        int first = !e->fingerprint;
        free(e->fingerprint);
        e->fingerprint = fp;
        if (e->removed) { /* came back */
            e->removed = 0;
            first = 1;
            set_reason(e, NULL);
        }
        watch_entry(e);
        if (!changed || e->stop_requested)
            continue;
        if (first || (!e->active && !e->loading)) {
            if (first || e->state == SVC_FAILED || e->state == SVC_STOPPED || e->state == SVC_DISABLED) {
                /* a failed service is retried when its files change */
                start_entry(e, 0);
            }
            continue;
        }
        /* running: reload when the version on disk differs */
        const char *running = e->active ? e->active->man.version : e->loading->man.version;
        p2p_manifest *man = read_manifest(e);
        if (!man) {
            p2p_log(m->ctx, P2P_LOG_ERROR, "services", "%s: new manifest refused (%s); %s keeps running", e->name,
                    e->disk_error, running);
            p2p__svc_note_error(e, "%s", e->disk_error);
            continue;
        }
        if (strcmp(man->version, running) != 0)
            start_entry(e, 1);
        else
            p2p_log(m->ctx, P2P_LOG_WARN, "services",
                    "%s: files changed but the version is still %s: not reloaded (bump the version, or "
                    "p2p services reload %s)",
                    e->name, running, e->name);
        p2p__manifest_free(man);
        free(man);
    }
    m->scanning = 0;
}

static void on_debounce(uv_timer_t *t)
{
    scan(t->data);
}

static void schedule_scan(svc_manager *m)
{
    if (m->handles_open && m->running)
        uv_timer_start(&m->debounce_timer, on_debounce, DEBOUNCE_MS, 0);
}

static void on_rescan(uv_timer_t *t)
{
    scan(t->data);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)filename;
    (void)events;
    (void)status;
    schedule_scan(h->data);
}

static void on_entry_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)filename;
    (void)events;
    (void)status;
    svc_entry *e = h->data;
    schedule_scan(e->mgr);
}

static void watch_entry(svc_entry *e)
{
    if (e->watching)
        return;
    uv_fs_event_init(e->mgr->ctx->loop, &e->watch);
    e->watch.data = e;
    if (uv_fs_event_start(&e->watch, on_entry_fs_event, e->dir, 0) == 0) {
        e->watching = 1;
    } else {
        uv_close((uv_handle_t *)&e->watch, NULL);
    }
}

static void on_watch_closed(uv_handle_t *h)
{
    svc_entry *e = h->data;
    e->watching = 0;
}

static void unwatch_entry(svc_entry *e)
{
    if (e->watching == 1) {
        e->watching = 2; /* closing */
        uv_close((uv_handle_t *)&e->watch, on_watch_closed);
    }
}

/* ---- operator surface ------------------------------------------------------------------- */

static json_t *describe(const p2p_service *s, void *arg)
{
    (void)s;
    svc_entry *e = arg;
    p2p_svc *inst = e->active ? e->active : e->loading;
    static const char *const health_names[] = {"ok", "warning", "critical"};
    json_error_t je;
    json_t *o = json_pack_ex(&je, 0, "{s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:f, s:{s:s, s:s?}}", "type",
                          p2p__service_type_name(inst ? inst->man.type : e->disk_type), "state",
                          p2p__svc_state_name(e->state), "reason", e->reason, "restarts", (json_int_t)e->restarts,
                          "reloads", (json_int_t)e->reloads, "reload_failures", (json_int_t)e->reload_failures,
                          "inflight", (json_int_t)(e->active ? e->active->inflight : 0), "state_since",
                          (double)e->state_since_ms / 1000.0, "health", "status",
                          health_names[e->health <= P2P_HEALTH_CRITICAL ? e->health : 0], "message", e->health_msg);
    if (!o)
        p2p_log(e->mgr->ctx, P2P_LOG_ERROR, "services", "describe: %s", je.text);
    if (e->last_error)
        json_object_set_new(o, "last_error", json_pack("{s:s, s:f}", "message", e->last_error, "at",
                                                       (double)e->last_error_ms / 1000.0));
    if (e->disk_version && (!e->active || strcmp(e->disk_version, e->active->man.version) != 0))
        json_object_set_new(o, "version_on_disk", json_string(e->disk_version));
    json_object_set_new(o, "pluggable", json_true());
    return o;
}

static json_t *entry_json(svc_entry *e)
{
    json_t *o = describe(NULL, e);
    json_object_set_new(o, "name", json_string(e->name));
    json_object_set_new(o, "version",
                        e->active ? json_string(e->active->man.version)
                                  : e->disk_version ? json_string(e->disk_version) : json_null());
    if (e->disk_error)
        json_object_set_new(o, "manifest_error", json_string(e->disk_error));
    json_t *methods = json_array();
    p2p_svc *inst = e->active ? e->active : e->loading;
    for (size_t i = 0; inst && i < inst->man.n_methods; i++)
        json_array_append_new(methods, json_string(inst->man.methods[i].name));
    json_object_set_new(o, "methods", methods);
    return o;
}

json_t *p2p__services_describe(p2p_ctx *ctx, const char *name)
{
    svc_manager *m = get_mgr(ctx);
    svc_entry *e = m ? find_entry(m, name) : NULL;
    return e && (e->present || e->active) ? entry_json(e) : NULL;
}

const char *p2p__services_dir(p2p_ctx *ctx)
{
    svc_manager *m = get_mgr(ctx);
    return m ? m->dir : NULL;
}

static void answer_one(svc_entry *e, p2p_call *call)
{
    json_t *o = entry_json(e);
    p2p_call_reply(call, o);
}

static void answer_waiters(svc_entry *e)
{
    /* a reload keeps the old version active meanwhile: wait for the new one */
    if (e->loading)
        return;
    size_t n = e->n_waiters;
    p2p_call **w = e->waiters;
    e->waiters = NULL;
    e->n_waiters = 0;
    for (size_t i = 0; i < n; i++)
        answer_one(e, w[i]);
    free(w);
}

static void add_waiter(svc_entry *e, p2p_call *call)
{
    e->waiters = p2p__xrealloc(e->waiters, (e->n_waiters + 1) * sizeof(*e->waiters));
    e->waiters[e->n_waiters++] = call;
}

static svc_entry *entry_param(p2p_call *call, json_t *params, svc_manager *m)
{
    json_t *n = json_is_object(params) ? json_object_get(params, "name")
                                       : json_is_array(params) ? json_array_get(params, 0) : NULL;
    if (!json_is_string(n)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: name (the service) is required", NULL);
        return NULL;
    }
    svc_entry *e = find_entry(m, json_string_value(n));
    if (!e || (!e->present && !e->active)) {
        char *msg = p2p__xasprintf("no pluggable service named '%s' on this node", json_string_value(n));
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
        free(msg);
        return NULL;
    }
    return e;
}

static void m_list(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    svc_manager *m = udata;
    json_t *list = json_array();
    for (size_t i = 0; i < m->n_entries; i++) {
        svc_entry *e = m->entries[i];
        if (e->present || e->active)
            json_array_append_new(list, entry_json(e));
    }
    p2p_call_reply(call, json_pack("{s:s, s:s, s:o}", "node_id", p2p_node_id(m->ctx), "directory", m->dir,
                                   "services", list));
}

static void m_get(p2p_call *call, json_t *params, void *udata)
{
    svc_entry *e = entry_param(call, params, udata);
    if (e)
        answer_one(e, call);
}

static void m_start(p2p_call *call, json_t *params, void *udata)
{
    svc_entry *e = entry_param(call, params, udata);
    if (!e)
        return;
    e->stop_requested = 0;
    if (e->state == SVC_RUNNING || e->loading) {
        if (e->loading)
            add_waiter(e, call);
        else
            answer_one(e, call);
        return;
    }
    add_waiter(e, call);
    if (e->active) /* stopping: start again once stopped */
        e->reload_requested = 1;
    else
        start_entry(e, 0);
}

static void m_stop(p2p_call *call, json_t *params, void *udata)
{
    svc_entry *e = entry_param(call, params, udata);
    if (!e)
        return;
    e->stop_requested = 1;
    e->reload_requested = 0;
    if (!e->active && !e->loading) {
        if (e->state != SVC_STOPPED)
            set_state(e, SVC_STOPPED, "stopped by an operator");
        answer_one(e, call);
        return;
    }
    add_waiter(e, call);
    stop_entry(e, "stopped by an operator");
}

static void m_reload(p2p_call *call, json_t *params, void *udata)
{
    svc_entry *e = entry_param(call, params, udata);
    if (!e)
        return;
    e->stop_requested = 0;
    add_waiter(e, call);
    start_entry(e, e->active != NULL);
}

static void m_restart(p2p_call *call, json_t *params, void *udata)
{
    svc_entry *e = entry_param(call, params, udata);
    if (!e)
        return;
    e->stop_requested = 0;
    add_waiter(e, call);
    if (e->active) {
        e->restarts++;
        e->reload_requested = 1; /* start again once stopped */
        set_state(e, SVC_STOPPING, "restarting");
        retire(e->active);
    } else {
        start_entry(e, 0);
    }
}

/* Reading is open to viewers and nodes; operating a service is an operator's act
 * (P2P_METHOD_ADMIN): another node's certificate, and a service's own calls,
 * may not start, stop, restart or reload anything. */
static const p2p_method_desc operator_methods[] = {
    {"list", "Pluggable services on this node: version, type, state, methods, health, restarts.", "none",
     P2P_METHOD_READONLY, m_list, NULL},
    {"get", "One pluggable service.", "{name}", P2P_METHOD_READONLY, m_get, NULL},
    {"start", "Starts a stopped or failed service; answers once it runs or failed.", "{name}", P2P_METHOD_ADMIN,
     m_start, NULL},
    {"stop", "Stops a service after its calls in flight; it stays stopped until started.", "{name}", P2P_METHOD_ADMIN,
     m_stop, NULL},
    {"restart", "Stops and starts a service.", "{name}", P2P_METHOD_ADMIN, m_restart, NULL},
    {"reload", "Loads the version on disk beside the running one and switches to it with no failed call.", "{name}",
     P2P_METHOD_ADMIN, m_reload, NULL},
};

/* An exec instance's process changed state by itself. */
void p2p__svc_instance_event(p2p_svc *inst, svc_state state, const char *reason, int restarted)
{
    svc_entry *e = inst->entry;
    if (restarted)
        e->restarts += (unsigned)restarted;
    if (e->active != inst)
        return;
    if (state == SVC_FAILED) {
        p2p__svc_note_error(e, "%s", reason ? reason : "failed");
        e->active = NULL;
        set_state(e, SVC_FAILED, reason);
        inst->retiring = 1;
        if (inst->inflight == 0)
            stop_instance(inst);
    } else if (state == SVC_STARTING) {
        /* the process crashed and waits out its backoff */
        char why[300];
        snprintf(why, sizeof why, "restarting%s%s", reason && *reason ? " after: " : "", reason ? reason : "");
        if (reason && *reason)
            p2p__svc_note_error(e, "%s", reason);
        set_state(e, SVC_STARTING, why);
    } else if (state == SVC_RUNNING && e->state == SVC_STARTING) {
        set_state(e, SVC_RUNNING, NULL);
    }
}

/* ---- component ------------------------------------------------------------------------- */

static void free_entry(svc_entry *e)
{
    for (size_t i = 0; i < e->n_slots; i++) {
        free(e->slots[i]->name);
        free(e->slots[i]);
    }
    free(e->slots);
    for (size_t i = 0; i < e->n_rslots; i++) {
        free(e->rslots[i]->method);
        free(e->rslots[i]->subpath);
        free(e->rslots[i]->path);
        free(e->rslots[i]);
    }
    free(e->rslots);
    free(e->retired);
    free(e->waiters);
    p2p__svc_entry_free_host(e);
    free(e->name);
    free(e->dir);
    free(e->reason);
    free(e->disk_version);
    free(e->disk_error);
    free(e->fingerprint);
    free(e->state_path);
    free(e->last_error);
    free(e);
}

static int services_start(p2p_component *c, char **err)
{
    svc_manager *m = c->self;
    p2p_ctx *ctx = c->ctx;
    const p2p_config *cfg = &ctx->cfg;
    m->dir = cfg->services_directory && *cfg->services_directory
                 ? p2p__xstrdup(cfg->services_directory)
                 : p2p__xasprintf("%s/services", cfg->state_directory);
    m->run_dir = p2p__xasprintf("%s/services-run", cfg->state_directory);
    m->state_dir = p2p__xasprintf("%s/services-state", cfg->state_directory);
    int r;
    if ((r = p2p__mkdir_p(m->dir, 0755)) != 0 || (r = p2p__mkdir_p(m->run_dir, 0700)) != 0 ||
        (r = p2p__mkdir_p(m->state_dir, 0700)) != 0)
        return p2p__fail(err, r, "cannot create the services folders under %s: %s", m->dir, strerror(-r));
    p2p_service_desc d = {.name = "services",
                          .version = P2P_VERSION,
                          .description = "Pluggable services: list, start, stop, restart, reload.",
                          .builtin = 1};
    if ((r = p2p_service_register(ctx, &d)) != 0 && r != -EEXIST)
        return p2p__fail(err, r, "cannot register the services service: %s", p2p_strerror(r));
    for (size_t i = 0; r == 0 && i < sizeof operator_methods / sizeof operator_methods[0]; i++) {
        p2p_method_desc md = operator_methods[i];
        md.udata = m;
        r = p2p_method_register(ctx, "services", &md);
    }
    if (r != 0 && r != -EEXIST)
        return p2p__fail(err, r, "cannot register the services methods: %s", p2p_strerror(r));
    uv_timer_init(ctx->loop, &m->rescan_timer);
    uv_timer_init(ctx->loop, &m->debounce_timer);
    m->rescan_timer.data = m->debounce_timer.data = m;
    uv_fs_event_init(ctx->loop, &m->dir_watch);
    m->dir_watch.data = m;
    m->handles_open = 1;
    if (uv_fs_event_start(&m->dir_watch, on_fs_event, m->dir, 0) == 0)
        m->dir_watching = 1;
    else
        p2p_log(ctx, P2P_LOG_WARN, "services", "not watching %s (inotify); rescanning every %d s", m->dir,
                cfg->services_rescan_interval);
    uint64_t every = (uint64_t)cfg->services_rescan_interval * 1000;
    uv_timer_start(&m->rescan_timer, on_rescan, every, every);
    m->running = 1;
    p2p__metrics_source_add(ctx, "services", p2p__svc_metrics_source, m);
    p2p_log(ctx, P2P_LOG_INFO, "services", "services from %s", m->dir);
    scan(m);
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void services_stop(p2p_component *c)
{
    svc_manager *m = c->self;
    if (!m->running)
        return;
    m->running = 0;
    p2p__metrics_source_remove(c->ctx, "services");
    /* shutdown: every instance stops now (calls in flight were given the
     * grace period by the HTTP server before components stop) */
    for (size_t i = 0; i < m->n_entries; i++) {
        svc_entry *e = m->entries[i];
        unwatch_entry(e);
        /* a version still loading is stopped by on_loaded / on_started once its
         * load or start completes (it may be running on the thread pool now) */
        if (e->active)
            retire(e->active);
        p2p__svc_routes_sync(e); /* no running version: its routes leave the server */
        for (size_t j = 0; j < e->n_retired; j++)
            if (!e->retired[j]->stop_started)
                stop_instance(e->retired[j]);
    }
    if (m->handles_open) {
        uv_close((uv_handle_t *)&m->rescan_timer, on_handle_closed);
        uv_close((uv_handle_t *)&m->debounce_timer, on_handle_closed);
        uv_close((uv_handle_t *)&m->dir_watch, on_handle_closed);
        m->handles_open = 0;
    }
}

static const p2p_component_ops services_ops = {
    .name = "services",
    .deps = (const char *const[]){"system", "cache", NULL},
    .start = services_start,
    .stop = services_stop,
};

static void free_manager(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    svc_manager *m = arg;
    for (size_t i = 0; i < m->n_entries; i++) {
        svc_entry *e = m->entries[i];
        /* anything still around (a process that would not die) is abandoned
         * without its driver's cleanup, which needs the loop */
        for (size_t j = 0; j < e->n_retired; j++) {
            p2p__svc_routes_free(e->retired[j]);
            p2p__manifest_free(&e->retired[j]->man);
            free(e->retired[j]->load_error);
            free(e->retired[j]);
        }
        free_entry(e);
    }
    free(m->entries);
    free(m->listeners);
    free(m->dir);
    free(m->run_dir);
    free(m->state_dir);
    free(m);
}

int p2p__services_register(p2p_ctx *ctx)
{
    svc_manager *m = p2p__xcalloc(1, sizeof(*m));
    m->ctx = ctx;
    if (!p2p__component_add(ctx, &services_ops, m)) {
        free(m);
        return -EEXIST;
    }
    p2p_shared_set(ctx, "services", m);
    p2p__ctx_on_shutdown(ctx, free_manager, m);
    return 0;
}

int p2p__services_quiet(p2p_ctx *ctx)
{
    svc_manager *m = get_mgr(ctx);
    if (!m)
        return 1;
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i]->n_retired || m->entries[i]->active || m->entries[i]->loading ||
            m->entries[i]->watching == 2)
            return 0;
    return 1;
}

int p2p__services_listen(p2p_ctx *ctx, p2p_services_listener fn, void *arg)
{
    svc_manager *m = get_mgr(ctx);
    if (!m || !fn)
        return -EINVAL;
    m->listeners = p2p__xrealloc(m->listeners, (m->n_listeners + 1) * sizeof(*m->listeners));
    m->listeners[m->n_listeners].fn = fn;
    m->listeners[m->n_listeners].arg = arg;
    m->n_listeners++;
    return 0;
}

json_t *p2p__services_list_json(p2p_ctx *ctx)
{
    svc_manager *m = get_mgr(ctx);
    json_t *out = json_array();
    for (size_t i = 0; m && i < m->n_entries; i++)
        json_array_append_new(out, entry_json(m->entries[i]));
    return out;
}
