/*
 * native.c — the driver for native services: C modules (include/p2p/service.h).
 *
 * Loading runs in two halves. On the thread pool: the module file is copied to
 * a private name under <state_directory>/services-run and dlopen()ed from
 * there with RTLD_NOW | RTLD_LOCAL, then the copy is unlinked. The copy is
 * what makes reload work at all: glibc hands back the already-loaded object
 * when the same path is opened twice, so a new version at the same path would
 * silently be the old code; and a module rewritten in place while mapped
 * crashes the process. RTLD_NOW makes a missing symbol fail here, named, and
 * not at the first call. On the loop: the descriptor is checked (ABI major
 * equal, minor not newer than ours, name and version equal to the manifest's,
 * init present) and init runs.
 *
 * Unloading: never. After init ran, module code may be referenced from
 * thread-local destructors, atexit handlers or libraries it loaded, and
 * dlclose() would leave those pointing at unmapped pages; a module refused
 * before init is closed. A reload leaves the old code mapped (its stop and
 * cleanup hooks ran); the cost is its text pages, bounded by the number of
 * reloads, and a node restart returns them.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "services/internal.h"

typedef struct load_job {
    uv_work_t w;
    p2p_svc *inst;
    svc_done_fn done;
    char *src, *dst;
    void *dl;
    const p2p_svc_module *mod;
    char *err;
} load_job;

static int copy_file(const char *src, const char *dst, char **err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return p2p__fail(err, -errno, "cannot open %s: %s", src, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return p2p__fail(err, -EINVAL, "%s is not a regular file", src);
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0500);
    if (out < 0) {
        int e = errno;
        close(in);
        return p2p__fail(err, -e, "cannot create %s: %s", dst, strerror(e));
    }
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = p2p__fail(err, -errno, "cannot read %s: %s", src, strerror(errno));
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = p2p__fail(err, -errno, "cannot write %s: %s", dst, strerror(errno));
                break;
            }
            off += w;
        }
        if (rc)
            break;
    }
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = p2p__fail(err, -errno, "cannot write %s: %s", dst, strerror(errno));
    return rc;
}

static void load_work(uv_work_t *w)
{
    load_job *j = w->data;
    if (copy_file(j->src, j->dst, &j->err) != 0) {
        unlink(j->dst);
        return;
    }
}

/* dlopen on the loop thread: a few hundred microseconds for a small module
 * already in the page cache (the copy above took the disk I/O off the loop),
 * and the dynamic linker's thread bookkeeping stays with the thread that owns
 * the node. */
static void load_open(load_job *j)
{
    dlerror();
    j->dl = dlopen(j->dst, RTLD_NOW | RTLD_LOCAL);
    unlink(j->dst);
    if (!j->dl) {
        const char *e = dlerror();
        j->err = p2p__xasprintf("cannot load %s: %s", j->src, e ? e : "dlopen failed");
        return;
    }
    j->mod = dlsym(j->dl, "p2p_service_module");
    if (!j->mod)
        j->err = p2p__xasprintf("%s exports no p2p_service_module descriptor (define it with P2P_SERVICE_MODULE(...) "
                                "from <p2p/service.h>)",
                                j->src);
}

static void load_after(uv_work_t *w, int status)
{
    load_job *j = w->data;
    if (status == 0 && !j->err)
        load_open(j);
    else
        unlink(j->dst);
    p2p_svc *inst = j->inst;
    svc_done_fn done = j->done;
    char *err = j->err;
    const p2p_svc_module *mod = j->mod;
    void *dl = j->dl;
    if (status == UV_ECANCELED && !err)
        err = p2p__xstrdup("the node is stopping");
    if (!err) {
        if (mod->abi_major != P2P_SERVICE_ABI_MAJOR)
            err = p2p__xasprintf("%s was built for service ABI %u.%u; this node speaks %d.%d (rebuild it against this "
                                 "node's include/p2p)",
                                 j->src, mod->abi_major, mod->abi_minor, P2P_SERVICE_ABI_MAJOR, P2P_SERVICE_ABI_MINOR);
        else if (mod->abi_minor > P2P_SERVICE_ABI_MINOR)
            err = p2p__xasprintf("%s needs service ABI %u.%u; this node has %d.%d (upgrade the node)", j->src,
                                 mod->abi_major, mod->abi_minor, P2P_SERVICE_ABI_MAJOR, P2P_SERVICE_ABI_MINOR);
        else if (mod->name && strcmp(mod->name, inst->man.name) != 0)
            err = p2p__xasprintf("%s calls itself '%s' but its manifest says '%s'", j->src, mod->name,
                                 inst->man.name);
        else if (!mod->init)
            err = p2p__xasprintf("%s has no init hook", j->src);
    }
    free(j->src);
    free(j->dst);
    free(j);
    if (err) {
        if (dl)
            dlclose(dl); /* no code of it ran but its constructors */
        done(inst, -EINVAL, err);
        free(err);
        return;
    }
    /* the manifest's version is the service's version (a settings change is a
     * new version of the same module); a module that says otherwise is worth a line */
    if (mod->version && strcmp(mod->version, inst->man.version) != 0)
        p2p_log(inst->ctx, P2P_LOG_INFO, "services", "%s %s: its module calls itself version %s", inst->man.name,
                inst->man.version, mod->version);
    inst->dl = dl;
    inst->mod = mod;
    inst->in_init = 1;
    int r = mod->init(inst, &inst->mod_state);
    inst->in_init = 0;
    if (r != 0) {
        char *why = p2p__xasprintf("init returned %d (%s)", r, p2p_strerror(r));
        done(inst, r < 0 ? r : -EINVAL, why);
        free(why);
        return;
    }
    inst->init_ok = 1;
    done(inst, 0, NULL);
}

static void native_load(p2p_svc *inst, svc_done_fn done)
{
    svc_manager *m = inst->entry->mgr;
    load_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->inst = inst;
    j->done = done;
    j->src = p2p__xasprintf("%s/%s", inst->entry->dir, inst->man.entry);
    j->dst = p2p__xasprintf("%s/%s-%s-%u-%d.so", m->run_dir, inst->man.name, inst->man.version, inst->generation,
                            (int)getpid());
    int r = uv_queue_work(inst->ctx->loop, &j->w, load_work, load_after);
    if (r != 0) {
        char *why = p2p__xasprintf("cannot queue the load: %s", uv_strerror(r));
        free(j->src);
        free(j->dst);
        free(j);
        done(inst, -EIO, why);
        free(why);
    }
}

static void native_start(p2p_svc *inst, svc_done_fn done)
{
    int r = inst->mod->start ? inst->mod->start(inst, inst->mod_state) : 0;
    if (r != 0) {
        char *why = p2p__xasprintf("start returned %d (%s)", r, p2p_strerror(r));
        done(inst, r < 0 ? r : -EINVAL, why);
        free(why);
        return;
    }
    done(inst, 0, NULL);
}

static void native_call(p2p_svc *inst, p2p_call *call, const char *method, json_t *params)
{
    for (size_t i = 0; i < inst->n_handlers; i++) {
        if (strcmp(inst->handlers[i].name, method) == 0) {
            inst->handlers[i].fn(call, params, inst->handlers[i].udata);
            return;
        }
    }
    char *msg = p2p__xasprintf("Method not found: %s/%s is listed in the manifest but %s %s does not serve it",
                               inst->man.name, method, inst->man.name, inst->man.version);
    p2p_call_error(call, P2P_RPC_METHOD_NOT_FOUND, msg, NULL);
    free(msg);
}

static void native_stop(p2p_svc *inst, svc_done_fn done)
{
    /* a failed start never reached RUNNING: its stop hook is not owed */
    if (inst->init_ok && !inst->start_failed && inst->mod->stop)
        inst->mod->stop(inst, inst->mod_state);
    done(inst, 0, NULL);
}

static void native_destroy(p2p_svc *inst)
{
    if (inst->init_ok && inst->mod->cleanup)
        inst->mod->cleanup(inst, inst->mod_state);
    inst->init_ok = 0;
    for (size_t i = 0; i < inst->n_handlers; i++)
        free(inst->handlers[i].name);
    free(inst->handlers);
    inst->handlers = NULL;
    inst->n_handlers = 0;
    /* inst->dl stays open: see the comment at the top */
}

const svc_driver p2p__svc_native_driver = {
    .name = "native",
    .load = native_load,
    .start = native_start,
    .call = native_call,
    .stop = native_stop,
    .destroy = native_destroy,
};
