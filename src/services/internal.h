/*
 * internal.h — the services manager's own structures, shared by manager.c
 * (entries, scanning, lifecycle, dispatch, operator methods), native.c (the
 * driver for C modules), exec_driver.c (the driver for external programs)
 * and hostapi.c (the p2p_svc_* functions of include/p2p/service.h).
 *
 * Words. An *entry* is a service by name: it outlives versions and holds what
 * must survive a reload (registry methods, metrics, health, persisted state,
 * restart counts). An *instance* (struct p2p_svc) is one loaded version of it:
 * a module or a process, its handlers, timers and background work. An entry
 * has at most one active instance (new calls go there), at most one loading
 * instance (a start or a reload in progress) and any number of retired ones
 * (draining their calls in flight, then stopped and freed).
 *
 * Ownership. The manager owns entries (freed at shutdown only, because the
 * registry's methods point at their slots) and instances (freed once stopped,
 * with no call in flight, no timer and no work left).
 */
#ifndef P2P_SERVICES_INTERNAL_H
#define P2P_SERVICES_INTERNAL_H

#include <uv.h>

#include "core/ctx.h"
#include "p2p/service.h"
#include "rpc/registry.h"
#include "services/manifest.h"

typedef enum svc_state {
    SVC_LOADING,  /* reading, checking, initialising */
    SVC_STARTING, /* start hook / process handshake running */
    SVC_RUNNING,
    SVC_STOPPING,
    SVC_STOPPED,  /* by an operator, or not yet started */
    SVC_FAILED,   /* with a reason; stays down until an operator starts it */
    SVC_DISABLED, /* not for this node's role */
} svc_state;

const char *p2p__svc_state_name(svc_state s);

#include "services/manager.h"

typedef struct svc_manager svc_manager;
typedef struct svc_entry svc_entry;
typedef struct svc_driver svc_driver;

typedef struct svc_handler {
    char *name;
    p2p_method_fn fn;
    void *udata;
} svc_handler;

/* A route an instance serves (p2p_svc_route). */
typedef struct svc_route {
    char *method;
    char *subpath;
    unsigned flags; /* P2P_ROUTE_* */
    p2p_svc_route_fn fn;
    void *udata;
} svc_route;

/* A route on the HTTP server for an entry: the server's udata. Made when the
 * running version serves it, freed when no running version does. */
typedef struct svc_route_slot {
    svc_entry *entry;
    char *method;
    char *subpath;
    char *path; /* /services/<name>/<subpath> */
    int prefix;
    unsigned flags; /* as registered (the auth class follows P2P_ROUTE_PUBLIC) */
    int seen;       /* sync's mark */
} svc_route_slot;

typedef struct svc_timer {
    struct svc_timer *next;
    p2p_svc *inst;
    uv_timer_t t;
    int64_t id;
    p2p_svc_timer_fn fn;
    void *udata;
} svc_timer;

struct p2p_svc {
    svc_entry *entry;
    p2p_ctx *ctx;
    p2p_manifest man; /* this version's manifest (owned) */
    const svc_driver *driver;
    svc_state state;
    unsigned generation; /* per entry, 1, 2, ... (for names of copies, logs) */
    size_t inflight;     /* calls handed to this instance, not yet completed */
    int retiring;        /* stop once inflight drops to 0 */
    int stop_started;
    int in_init;
    int start_failed; /* load or start failed: no stop hook owed */
    /* native */
    void *dl;
    const p2p_svc_module *mod;
    void *mod_state;
    int init_ok;
    svc_handler *handlers;
    size_t n_handlers;
    svc_route *routes;
    size_t n_routes;
    char *load_error; /* from the thread pool */
    /* exec */
    void *exec;
    /* host resources */
    svc_timer *timers;
    int64_t next_timer_id;
    size_t timers_closing;
    size_t works; /* p2p_svc_work() in flight */
    int destroying;
    int reaping; /* its free is scheduled (p2p__svc_instance_maybe_free) */
    /* health this version reported (p2p_svc_health); the entry shows the active
     * version's: a version starting beside the running one, or one retired, does not
     * change what the entry reports until it is the active one */
    p2p_health health;
    char *health_msg;
};

/* The driver of one service type. Every callback runs on the loop thread. */
typedef void (*svc_done_fn)(p2p_svc *inst, int status, const char *reason);
struct svc_driver {
    const char *name;
    /* Gets the instance ready for start (native: copy, dlopen, checks, init).
     * `done` runs exactly once, maybe before load returns. */
    void (*load)(p2p_svc *inst, svc_done_fn done);
    /* Starts serving; `done` once. */
    void (*start)(p2p_svc *inst, svc_done_fn done);
    /* Hands one call to the instance, which completes it exactly once. */
    void (*call)(p2p_svc *inst, p2p_call *call, const char *method, json_t *params);
    /* Stops: no new calls; `done` once everything the driver holds is quiet. */
    void (*stop)(p2p_svc *inst, svc_done_fn done);
    /* Frees the driver's part of the instance (after stop, or a failed load). */
    void (*destroy)(p2p_svc *inst);
};

extern const svc_driver p2p__svc_native_driver;
extern const svc_driver p2p__svc_exec_driver;

/* A service's own metric (p2p_svc_counter_add, gauge_set, observe). */
#define SVC_HIST_BUCKETS 12
typedef struct svc_metric {
    char *name;      /* as the service named it */
    char *prom;      /* p2p_service_<service>_<name>[_total] */
    int type;        /* 0 counter, 1 gauge, 2 histogram */
    double value;    /* counter, gauge */
    double sum;      /* histogram */
    uint64_t count;  /* histogram */
    uint64_t buckets[SVC_HIST_BUCKETS + 1];
    char *name_count, *name_sum, *name_le; /* histogram sample names of the last scrape */
} svc_metric;

/* A registry method's udata: which entry and method a call is for. */
typedef struct svc_slot {
    svc_entry *entry;
    char *name;
} svc_slot;

struct svc_entry {
    svc_manager *mgr;
    char *name;
    char *dir; /* <services_directory>/<name> */
    svc_state state;
    char *reason; /* why FAILED / DISABLED / STOPPED, or NULL */
    p2p_svc *active, *loading;
    p2p_svc **retired;
    size_t n_retired;
    unsigned generations;
    unsigned restarts, reloads, reload_failures;
    uint64_t state_since_ms;
    p2p_service *reg; /* in the registry while present */
    svc_slot **slots;
    size_t n_slots;
    svc_route_slot **rslots; /* routes on the HTTP server (routes.c) */
    size_t n_rslots;
    /* what is on disk */
    int present;          /* folder seen by the last scan */
    int removed;          /* folder gone: stopped and unregistered */
    char *disk_version;   /* version of the manifest on disk (NULL when unreadable) */
    p2p_service_type disk_type;
    char *disk_error;     /* why the manifest on disk is refused, or NULL */
    char *fingerprint;    /* manifest + entry file stat, to notice changes */
    int stop_requested;   /* an operator stopped it: no automatic start */
    int reload_requested; /* reload once the current load settles */
    uv_fs_event_t watch;
    int watching;
    /* operator calls waiting for the outcome of start/stop/restart/reload */
    p2p_call **waiters;
    size_t n_waiters;
    /* survives reloads */
    p2p_health health;
    char *health_msg;
    svc_metric *metrics;
    size_t n_metrics;
    json_t *state_doc;    /* persisted state, loaded with the first instance */
    json_t *state_next;   /* a save waiting for the write in progress */
    int state_writing;
    char *state_path;
    char *last_error;
    uint64_t last_error_ms;
};

struct svc_manager {
    p2p_ctx *ctx;
    char *dir;     /* services directory */
    char *run_dir; /* <state_directory>/services-run: copies of loaded modules */
    char *state_dir;
    svc_entry **entries;
    size_t n_entries;
    uv_timer_t rescan_timer, debounce_timer;
    uv_fs_event_t dir_watch;
    int handles_open, dir_watching;
    int running;
    int scanning;
    uint64_t scans;
    /* p2p__services_listen: told of every state change */
    struct svc_listener {
        p2p_services_listener fn;
        void *arg;
    } *listeners;
    size_t n_listeners;
};

/* manager.c: an instance's load/start/stop outcome and its removal. */
void p2p__svc_instance_maybe_free(p2p_svc *inst);
/* The entry reports the health `inst` reported (it just became the active version). */
void p2p__svc_health_adopt(svc_entry *e, p2p_svc *inst);
/* manager.c: an exec instance's process changed state on its own (crash,
 * restart, failed). `reason` may be NULL. */
void p2p__svc_instance_event(p2p_svc *inst, svc_state state, const char *reason, int restarted);
/* manager.c: the entry's last error, for `p2p services`. */
void p2p__svc_note_error(svc_entry *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* manager.c: a call or request handed to `inst` completed (retires it when it was the last). */
void p2p__svc_inflight_done(p2p_svc *inst);

/* routes.c: the HTTP routes of the entry's running version on the server
 * (added, changed, removed to match; none unless the entry is running). */
void p2p__svc_routes_sync(svc_entry *e);
/* routes.c: frees an instance's route list. */
void p2p__svc_routes_free(p2p_svc *inst);

/* hostapi.c */
void p2p__svc_host_stop(p2p_svc *inst); /* stops the instance's timers */
int p2p__svc_host_quiet(const p2p_svc *inst); /* no timer closing, no work in flight */
struct p2p_metrics_out;
void p2p__svc_metrics_source(p2p_ctx *ctx, struct p2p_metrics_out *out, void *arg);
void p2p__svc_entry_free_host(svc_entry *e);
int p2p__svc_state_load(svc_entry *e, char **err);

#endif
