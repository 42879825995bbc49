/*
 * admin.c — the built-in `admin` service: operating a node from an admin
 * token, done safely (the guide's system admin methods).
 *
 *   admin/list_processes  the node's process and its descendants (exec
 *                         services and what they spawned): pid, ppid, name,
 *                         rss, cpu seconds, state
 *   admin/get_config      the effective config, secrets masked
 *   admin/read_file       a file under <state_directory>/files/
 *   admin/write_file      the same, written atomically (temp + fsync + rename)
 *   admin/list_commands   the allow-list (admin_commands_file)
 *   admin/run_command     one allow-listed command, by name
 *
 * Every method is P2P_METHOD_ADMIN: node identities (a compromised worker,
 * an exec service calling as its node) and viewers are refused before the
 * handler runs. Each call is logged with the token's subject.
 *
 * Files: the path is relative, its components are checked (no "", ".", "..",
 * no absolute path, no NUL), and it is opened one component at a time with
 * openat(O_NOFOLLOW) from a descriptor of files/ itself opened with
 * O_NOFOLLOW|O_DIRECTORY: a symlink anywhere — files/ itself, a directory on
 * the way, the file — is refused, so nothing outside files/ is ever read or
 * written. Only regular files are read. Sizes are capped by
 * admin_file_max_bytes. The file work runs on the thread pool.
 *
 * Commands: only names from the allow-list, each an argv whose program is an
 * absolute path; uv_spawn, never a shell, so metacharacters in arguments are
 * plain bytes. Arguments from the caller are appended only when the entry says
 * "allow_args": true. The child runs in its own session with stdin on
 * /dev/null and a fixed minimal environment; after admin_command_timeout
 * seconds its process group is killed (SIGKILL). stdout and stderr are kept up
 * to admin_command_output_max bytes each; the rest is read and dropped (the
 * child never blocks on a full pipe) and the answer says truncated. At most
 * MAX_RUNNING commands run at once.
 */
#include "builtin/admin.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "auth/guard.h"
#include "core/config.h"
#include "core/util.h"
#include "rpc/jsonrpc.h"
#include "rpc/registry.h"

#define MAX_RUNNING 4
#define MAX_PATH_LEN 1024
#define MAX_DEPTH 32
#define MAX_COMMANDS 256
#define MAX_ARGV 64
#define MAX_ARG_LEN 4096
#define MAX_COMMANDS_FILE (256 * 1024)
#define MAX_PROCS 4096

typedef struct admin_cmd {
    char *name;
    char **argv; /* NULL-terminated */
    size_t argc;
    int allow_args;
} admin_cmd;

typedef struct admin_svc {
    p2p_ctx *ctx;
    admin_cmd *cmds;
    size_t n_cmds;
    struct run_job *running; /* list */
    size_t n_running;
} admin_svc;

/* ---- helpers ---- */

/* Who made the call: the operator token's subject, "local" for in-process calls. */
static void caller_subject(p2p_call *call, char *out, size_t n)
{
    const char *authz = p2p__call_authz(call);
    p2p_ctx *ctx = p2p_call_ctx(call);
    if (!authz || !*authz) {
        const char *nid = p2p__call_node_id(call);
        snprintf(out, n, "%s", nid ? nid : "local");
        return;
    }
    p2p_identity id;
    memset(&id, 0, sizeof id);
    p2p_guard *g = p2p__guard(ctx);
    if (g)
        p2p__guard_identify(g, NULL, authz, strlen(authz), "", NULL, &id);
    snprintf(out, n, "%s", id.subject[0] ? id.subject : "(unknown)");
}

static int check_keys(p2p_call *call, json_t *params, const char *const *allowed)
{
    if (params && !json_is_object(params)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: an object is expected", NULL);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; a && *a; a++)
            if (!strcmp(*a, key))
                ok = 1;
        if (!ok) {
            char *msg = p2p__xasprintf("Invalid params: unexpected parameter '%s'", key);
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, msg, NULL);
            free(msg);
            return -1;
        }
    }
    return 0;
}

/* A JSON string of bytes that may not be UTF-8: as is when valid, else with
 * every byte >= 0x80 shown as '?'. */
static json_t *text_json(const char *buf, size_t n)
{
    json_t *s = json_stringn(buf, n);
    if (s)
        return s;
    char *copy = p2p__xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)buf[i] >= 0x80 || buf[i] == 0 ? '?' : buf[i];
    s = json_stringn(copy, n);
    free(copy);
    return s;
}

static char *b64_encode(const unsigned char *in, size_t n)
{
    char *out = p2p__xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return out;
}

/* Strict standard base64 with padding. Returns the length or -1. */
static long b64_decode(const char *in, size_t n, unsigned char **out)
{
    if (n % 4)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (!(isalnum((unsigned char)c) || c == '+' || c == '/' || (c == '=' && i >= n - 2)))
            return -1;
        if (c == '=' && i == n - 2 && in[n - 1] != '=')
            return -1;
    }
    *out = p2p__xmalloc(n / 4 * 3 + 1);
    int len = n ? EVP_DecodeBlock(*out, (const unsigned char *)in, (int)n) : 0;
    if (len < 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    if (n && in[n - 1] == '=')
        len--;
    if (n > 1 && in[n - 2] == '=')
        len--;
    return len;
}

/* ---- paths under files/ ---- */

/* Splits and checks a relative path. Returns the number of components (in
 * comps, pointing into buf) or -1 with *why. */
static int split_path(const char *path, char *buf, char **comps, const char **why)
{
    size_t len = strlen(path);
    if (len == 0) {
        *why = "the path is empty";
        return -1;
    }
    if (len > MAX_PATH_LEN) {
        *why = "the path is too long";
        return -1;
    }
    if (path[0] == '/') {
        *why = "absolute paths are refused: give a path relative to files/";
        return -1;
    }
    memcpy(buf, path, len + 1);
    int n = 0;
    char *save = NULL;
    /* no empty components ("a//b", trailing "/") either */
    if (strstr(path, "//") || path[len - 1] == '/') {
        *why = "empty path component";
        return -1;
    }
    for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "..") || !strcmp(c, ".")) {
            *why = "'.' and '..' are refused in paths";
            return -1;
        }
        if (n >= MAX_DEPTH) {
            *why = "the path is too deep";
            return -1;
        }
        comps[n++] = c;
    }
    return n;
}

/* Opens <state_directory>/files (refusing a symlink there), and walks the
 * directories of comps[0..n-2] with O_NOFOLLOW, creating them when `create`.
 * Returns a directory fd or -errno with *why. */
static int open_parent(const char *state_dir, char **comps, int n, int create, const char **why)
{
    int sfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        *why = "the state directory cannot be opened";
        return -errno;
    }
    if (create && mkdirat(sfd, "files", 0750) != 0 && errno != EEXIST) {
        int e = errno;
        close(sfd);
        *why = "files/ cannot be created";
        return -e;
    }
    int dfd = openat(sfd, "files", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(sfd);
    if (dfd < 0) {
        *why = e == ELOOP || e == ENOTDIR ? "files/ is a symlink or not a directory: refused" : "no such file";
        return -e;
    }
    for (int i = 0; i < n - 1; i++) {
        if (create && mkdirat(dfd, comps[i], 0750) != 0 && errno != EEXIST) {
            e = errno;
            close(dfd);
            *why = "a directory cannot be created";
            return -e;
        }
        int nfd = openat(dfd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        e = errno;
        close(dfd);
        if (nfd < 0) {
            *why = e == ELOOP || e == ENOTDIR ? "a symlink or a file on the way: refused" : "no such file";
            return -e;
        }
        dfd = nfd;
    }
    return dfd;
}

typedef struct file_job {
    uv_work_t req;
    p2p_call *call;
    admin_svc *svc;
    char *state_dir;
    char *path;
    size_t max;
    /* write */
    unsigned char *data;
    size_t len;
    int mode;
    /* results */
    int err;         /* 0 or -errno */
    const char *why; /* static */
    unsigned char *out;
    size_t out_len;
    char subject[128];
} file_job;

static void read_work(uv_work_t *req)
{
    file_job *j = req->data;
    char buf[MAX_PATH_LEN + 1], *comps[MAX_DEPTH];
    int n = split_path(j->path, buf, comps, &j->why);
    if (n < 0) {
        j->err = -EINVAL;
        return;
    }
    int dfd = open_parent(j->state_dir, comps, n, 0, &j->why);
    if (dfd < 0) {
        j->err = dfd;
        return;
    }
    int fd = openat(dfd, comps[n - 1], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    int e = errno;
    close(dfd);
    if (fd < 0) {
        j->err = -e;
        j->why = e == ELOOP ? "the file is a symlink: refused" : "no such file";
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        j->err = -EINVAL;
        j->why = "not a regular file";
        return;
    }
    if ((size_t)st.st_size > j->max) {
        close(fd);
        j->err = -EFBIG;
        j->why = "the file is larger than admin_file_max_bytes";
        return;
    }
    j->out = p2p__xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, j->out + got, (size_t)st.st_size + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            j->err = -errno;
            j->why = "read error";
            break;
        }
        if (r == 0)
            break;
        got += (size_t)r;
        if (got > (size_t)st.st_size) { /* grew while reading */
            j->err = -EFBIG;
            j->why = "the file changed while being read";
            break;
        }
    }
    close(fd);
    j->out_len = got;
}

static void write_work(uv_work_t *req)
{
    file_job *j = req->data;
    char buf[MAX_PATH_LEN + 1], *comps[MAX_DEPTH];
    int n = split_path(j->path, buf, comps, &j->why);
    if (n < 0) {
        j->err = -EINVAL;
        return;
    }
    const char *last = comps[n - 1];
    if (strlen(last) > 200) {
        j->err = -ENAMETOOLONG;
        j->why = "the file name is too long";
        return;
    }
    int dfd = open_parent(j->state_dir, comps, n, 1, &j->why);
    if (dfd < 0) {
        j->err = dfd;
        return;
    }
    struct stat st;
    if (fstatat(dfd, last, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        close(dfd);
        j->err = -EINVAL;
        j->why = S_ISLNK(st.st_mode) ? "the file is a symlink: refused" : "not a regular file";
        return;
    }
    char tmp[256];
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 16; tries++) {
        /* getrandom, not OpenSSL: a pool thread must not grow OpenSSL per-thread state */
        unsigned r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = (unsigned)tries ^ (unsigned)getpid();
        snprintf(tmp, sizeof tmp, ".%s.tmp-%08x", last, r);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)j->mode);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        j->err = -errno;
        j->why = "cannot create the temporary file";
        close(dfd);
        return;
    }
    size_t off = 0;
    while (off < j->len) {
        ssize_t w = write(fd, j->data + off, j->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            j->err = -errno;
            j->why = "write error";
            break;
        }
        off += (size_t)w;
    }
    if (!j->err && fchmod(fd, (mode_t)j->mode) != 0) {
        j->err = -errno;
        j->why = "chmod error";
    }
    if (!j->err && fsync(fd) != 0) {
        j->err = -errno;
        j->why = "fsync error";
    }
    close(fd);
    if (!j->err && renameat(dfd, tmp, dfd, last) != 0) {
        j->err = -errno;
        j->why = "rename error";
    }
    if (j->err)
        unlinkat(dfd, tmp, 0);
    else
        fsync(dfd);
    close(dfd);
}

static void file_done(uv_work_t *req, int status, int is_write)
{
    file_job *j = req->data;
    p2p_ctx *ctx = j->svc->ctx;
    if (status != 0 && !j->err) {
        j->err = status;
        j->why = "cancelled";
    }
    if (j->err) {
        p2p_log(ctx, P2P_LOG_WARN, "admin", "admin/%s '%s' by %s refused: %s", is_write ? "write_file" : "read_file",
                j->path, j->subject, j->why);
        char *msg = p2p__xasprintf("%s: %s", j->path, j->why ? j->why : p2p_strerror(j->err));
        int code = j->err == -EINVAL || j->err == -EFBIG || j->err == -ELOOP || j->err == -ENOTDIR ||
                           j->err == -ENAMETOOLONG
                       ? P2P_RPC_INVALID_PARAMS
                       : P2P_RPC_INTERNAL_ERROR;
        p2p_call_error(j->call, code, msg, NULL);
        free(msg);
    } else if (is_write) {
        p2p_log(ctx, P2P_LOG_INFO, "admin", "admin/write_file '%s' (%zu bytes) by %s", j->path, j->len, j->subject);
        p2p_call_reply(j->call, json_pack("{s:s, s:I}", "path", j->path, "size", (json_int_t)j->len));
    } else {
        p2p_log(ctx, P2P_LOG_INFO, "admin", "admin/read_file '%s' (%zu bytes) by %s", j->path, j->out_len,
                j->subject);
        json_t *res = json_pack("{s:s, s:I}", "path", j->path, "size", (json_int_t)j->out_len);
        json_t *text = memchr(j->out, 0, j->out_len) ? NULL : json_stringn((const char *)j->out, j->out_len);
        if (text) {
            json_object_set_new(res, "encoding", json_string("utf-8"));
            json_object_set_new(res, "content", text);
        } else {
            char *b = b64_encode(j->out, j->out_len);
            json_object_set_new(res, "encoding", json_string("base64"));
            json_object_set_new(res, "content", json_string(b));
            free(b);
        }
        p2p_call_reply(j->call, res);
    }
    free(j->state_dir);
    free(j->path);
    free(j->data);
    free(j->out);
    free(j);
}

static void read_done(uv_work_t *req, int status) { file_done(req, status, 0); }
static void write_done(uv_work_t *req, int status) { file_done(req, status, 1); }

static file_job *file_job_new(p2p_call *call, admin_svc *svc, json_t *params, char **why)
{
    json_t *path = json_object_get(params, "path");
    if (!json_is_string(path)) {
        *why = p2p__xstrdup("Invalid params: path (string) is required");
        return NULL;
    }
    if (strlen(json_string_value(path)) != json_string_length(path)) {
        *why = p2p__xstrdup("Invalid params: NUL in path");
        return NULL;
    }
    file_job *j = p2p__xcalloc(1, sizeof *j);
    j->req.data = j;
    j->call = call;
    j->svc = svc;
    j->state_dir = p2p__xstrdup(svc->ctx->cfg.state_directory);
    j->path = p2p__xstrdup(json_string_value(path));
    j->max = (size_t)svc->ctx->cfg.admin_file_max_bytes;
    caller_subject(call, j->subject, sizeof j->subject);
    return j;
}

static void m_read_file(p2p_call *call, json_t *params, void *udata)
{
    static const char *const allowed[] = {"path", NULL};
    if (check_keys(call, params, allowed))
        return;
    char *why = NULL;
    file_job *j = file_job_new(call, udata, params, &why);
    if (!j) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, why, NULL);
        free(why);
        return;
    }
    uv_queue_work(j->svc->ctx->loop, &j->req, read_work, read_done);
}

static void m_write_file(p2p_call *call, json_t *params, void *udata)
{
    admin_svc *svc = udata;
    static const char *const allowed[] = {"path", "content", "content_base64", "mode", NULL};
    if (check_keys(call, params, allowed))
        return;
    json_t *text = json_object_get(params, "content"), *b64 = json_object_get(params, "content_base64");
    json_t *mode = json_object_get(params, "mode");
    const char *bad = NULL;
    if (!text == !b64 || (text && !json_is_string(text)) || (b64 && !json_is_string(b64)))
        bad = "Invalid params: give content (string) or content_base64 (string), one of them";
    else if (mode && (!json_is_integer(mode) || json_integer_value(mode) < 0 || json_integer_value(mode) > 0777 ||
                      (json_integer_value(mode) & 0022)))
        bad = "Invalid params: mode is an integer permission without group/other write bits (e.g. 0640 = 416)";
    if (bad) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, bad, NULL);
        return;
    }
    unsigned char *data = NULL;
    size_t len = 0;
    if (text) {
        len = json_string_length(text);
        if (len > (size_t)svc->ctx->cfg.admin_file_max_bytes) {
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: content larger than admin_file_max_bytes",
                           NULL);
            return;
        }
        data = p2p__xmalloc(len + 1);
        memcpy(data, json_string_value(text), len);
    } else {
        size_t blen = json_string_length(b64);
        if (blen / 4 * 3 > (size_t)svc->ctx->cfg.admin_file_max_bytes + 3) {
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: content larger than admin_file_max_bytes",
                           NULL);
            return;
        }
        long l = b64_decode(json_string_value(b64), blen, &data);
        if (l < 0) {
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: content_base64 is not valid base64", NULL);
            return;
        }
        len = (size_t)l;
        if (len > (size_t)svc->ctx->cfg.admin_file_max_bytes) {
            free(data);
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: content larger than admin_file_max_bytes",
                           NULL);
            return;
        }
    }
    char *why = NULL;
    file_job *j = file_job_new(call, svc, params, &why);
    if (!j) {
        free(data);
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, why, NULL);
        free(why);
        return;
    }
    j->data = data;
    j->len = len;
    j->mode = mode ? (int)json_integer_value(mode) : 0640;
    uv_queue_work(svc->ctx->loop, &j->req, write_work, write_done);
}

/* ---- processes ---- */

typedef struct proc_job {
    uv_work_t req;
    p2p_call *call;
    admin_svc *svc;
    json_t *list;
    char subject[128];
} proc_job;

typedef struct pinfo {
    int pid, ppid;
    char name[64];
    char state;
    unsigned long long utime, stime;
    long rss_pages;
} pinfo;

static int read_stat(int pid, pinfo *p)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp || rp < lp)
        return -1;
    size_t nl = (size_t)(rp - lp - 1);
    if (nl >= sizeof p->name)
        nl = sizeof p->name - 1;
    memcpy(p->name, lp + 1, nl);
    p->name[nl] = 0;
    p->pid = pid;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     * cutime cstime priority nice threads itrealvalue starttime vsize rss */
    long long skip;
    if (sscanf(rp + 2, "%c %d %lld %lld %lld %lld %lld %lld %lld %lld %lld %llu %llu %lld %lld %lld %lld %lld %lld "
                       "%lld %lld %ld",
               &p->state, &p->ppid, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &p->utime,
               &p->stime, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &skip, &p->rss_pages) != 22)
        return -1;
    return 0;
}

static void proc_work(uv_work_t *req)
{
    proc_job *j = req->data;
    pinfo *all = p2p__xcalloc(MAX_PROCS, sizeof *all);
    size_t n = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) && n < MAX_PROCS) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        if (read_stat(atoi(de->d_name), &all[n]) == 0)
            n++;
    }
    if (d)
        closedir(d);
    /* the node, then its descendants, breadth first */
    int *keep = p2p__xcalloc(n + 1, sizeof *keep);
    size_t nk = 0;
    int self = getpid();
    for (size_t i = 0; i < n; i++)
        if (all[i].pid == self)
            keep[nk++] = (int)i;
    for (size_t k = 0; k < nk; k++)
        for (size_t i = 0; i < n && nk < n; i++)
            if (all[i].ppid == all[keep[k]].pid && all[i].pid != self)
                keep[nk++] = (int)i;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (tick <= 0)
        tick = 100;
    j->list = json_array();
    for (size_t k = 0; k < nk; k++) {
        pinfo *p = &all[keep[k]];
        char st[2] = {p->state, 0};
        json_array_append_new(j->list,
                              json_pack("{s:i, s:i, s:s, s:I, s:f, s:s, s:b}", "pid", p->pid, "ppid", p->ppid, "name",
                                        p->name, "rss_bytes", (json_int_t)p->rss_pages * page, "cpu_seconds",
                                        (double)(p->utime + p->stime) / (double)tick, "state", st, "node",
                                        p->pid == self));
    }
    free(keep);
    free(all);
}

static void proc_done(uv_work_t *req, int status)
{
    proc_job *j = req->data;
    if (status != 0 || !j->list) {
        json_decref(j->list);
        p2p_call_error(j->call, P2P_RPC_INTERNAL_ERROR, "cannot list processes", NULL);
    } else {
        p2p_log(j->svc->ctx, P2P_LOG_INFO, "admin", "admin/list_processes by %s", j->subject);
        p2p_call_reply(j->call, json_pack("{s:o}", "processes", j->list));
    }
    free(j);
}

static void m_list_processes(p2p_call *call, json_t *params, void *udata)
{
    if (check_keys(call, params, NULL))
        return;
    proc_job *j = p2p__xcalloc(1, sizeof *j);
    j->req.data = j;
    j->call = call;
    j->svc = udata;
    caller_subject(call, j->subject, sizeof j->subject);
    uv_queue_work(j->svc->ctx->loop, &j->req, proc_work, proc_done);
}

/* ---- config ---- */

static void m_get_config(p2p_call *call, json_t *params, void *udata)
{
    admin_svc *svc = udata;
    if (check_keys(call, params, NULL))
        return;
    char who[128];
    caller_subject(call, who, sizeof who);
    p2p_log(svc->ctx, P2P_LOG_INFO, "admin", "admin/get_config by %s", who);
    /* p2p_config_to_json masks join_token and redis_url's password */
    p2p_call_reply(call, json_pack("{s:o}", "config", p2p_config_to_json(&svc->ctx->cfg)));
}

/* ---- commands ---- */

static json_t *cmd_json(const admin_cmd *c)
{
    json_t *argv = json_array();
    for (size_t i = 0; i < c->argc; i++)
        json_array_append_new(argv, json_string(c->argv[i]));
    return json_pack("{s:s, s:o, s:b}", "name", c->name, "argv", argv, "allow_args", c->allow_args);
}

static void m_list_commands(p2p_call *call, json_t *params, void *udata)
{
    admin_svc *svc = udata;
    if (check_keys(call, params, NULL))
        return;
    json_t *out = json_array();
    for (size_t i = 0; i < svc->n_cmds; i++)
        json_array_append_new(out, cmd_json(&svc->cmds[i]));
    p2p_call_reply(call, json_pack("{s:o, s:i, s:i}", "commands", out, "timeout", svc->ctx->cfg.admin_command_timeout,
                                   "output_max", svc->ctx->cfg.admin_command_output_max));
}

typedef struct run_stream {
    uv_pipe_t pipe;
    char *buf;
    size_t len;
    uint64_t dropped;
    int open;
} run_stream;

typedef struct run_job {
    struct run_job *next;
    admin_svc *svc;
    p2p_call *call;
    char name[80];
    char subject[128];
    uv_process_t proc;
    uv_timer_t timer;
    run_stream out, err;
    size_t cap;
    int proc_open, timer_open, exited, timed_out, term_signal;
    int64_t exit_status;
    uint64_t started;
    char rbuf[65536];
} run_job;

static void run_maybe_finish(run_job *j);

static void on_closed(uv_handle_t *h)
{
    run_job *j = h->data;
    if (h == (uv_handle_t *)&j->out.pipe)
        j->out.open = 0;
    else if (h == (uv_handle_t *)&j->err.pipe)
        j->err.open = 0;
    else if (h == (uv_handle_t *)&j->timer)
        j->timer_open = 0;
    else if (h == (uv_handle_t *)&j->proc)
        j->proc_open = 0;
    /* exited and both pipes done: the drain timer has nothing left to wait for */
    if (j->exited && !j->out.open && !j->err.open && j->timer_open && !uv_is_closing((uv_handle_t *)&j->timer))
        uv_close((uv_handle_t *)&j->timer, on_closed);
    run_maybe_finish(j);
}

static void run_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    run_job *j = h->data;
    *b = uv_buf_init(j->rbuf, sizeof j->rbuf);
}

static void run_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    run_job *j = s->data;
    run_stream *rs = s == (uv_stream_t *)&j->out.pipe ? &j->out : &j->err;
    if (n > 0) {
        size_t room = j->cap - rs->len, take = (size_t)n < room ? (size_t)n : room;
        if (take) {
            if (!rs->buf)
                rs->buf = p2p__xmalloc(j->cap);
            memcpy(rs->buf + rs->len, b->base, take);
            rs->len += take;
        }
        rs->dropped += (size_t)n - take;
    } else if (n < 0) {
        uv_read_stop(s);
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_closed);
    }
}

static void run_kill(run_job *j)
{
    if (j->proc_open && !j->exited) {
        uv_kill(-j->proc.pid, SIGKILL); /* its process group: what it spawned too */
        uv_process_kill(&j->proc, SIGKILL);
    }
}

static void on_timeout(uv_timer_t *t)
{
    run_job *j = t->data;
    j->timed_out = 1;
    p2p_log(j->svc->ctx, P2P_LOG_WARN, "admin", "admin/run_command '%s': timed out, killed", j->name);
    run_kill(j);
}

/* After the program exited: what is left in the pipes has DRAIN_MS to arrive; a
 * descendant that left the process group (setsid) and keeps them open does not
 * hold the answer longer. */
#define DRAIN_MS 1000

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_closed);
}

static void on_drained(uv_timer_t *t)
{
    run_job *j = t->data;
    if (j->out.open)
        close_if_open((uv_handle_t *)&j->out.pipe);
    if (j->err.open)
        close_if_open((uv_handle_t *)&j->err.pipe);
    close_if_open((uv_handle_t *)&j->timer);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    run_job *j = p->data;
    j->exited = 1;
    j->exit_status = status;
    j->term_signal = sig;
    /* what it started in the background goes with it: kill the group */
    uv_kill(-p->pid, SIGKILL);
    if (j->timer_open && !uv_is_closing((uv_handle_t *)&j->timer)) {
        uv_timer_stop(&j->timer);
        if (j->out.open || j->err.open)
            uv_timer_start(&j->timer, on_drained, DRAIN_MS, 0);
        else
            uv_close((uv_handle_t *)&j->timer, on_closed);
    }
    close_if_open((uv_handle_t *)p);
}

static json_t *stream_json(run_stream *s) { return text_json(s->buf ? s->buf : "", s->len); }

static void run_maybe_finish(run_job *j)
{
    if (j->out.open || j->err.open || j->timer_open || j->proc_open)
        return;
    admin_svc *svc = j->svc;
    for (run_job **pp = &svc->running; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    svc->n_running--;
    if (j->call) {
        double dur = (double)(uv_now(svc->ctx->loop) - j->started) / 1000.0;
        int trunc = j->out.dropped || j->err.dropped;
        p2p_log(svc->ctx, P2P_LOG_INFO, "admin", "admin/run_command '%s' by %s: exit %lld signal %d%s%s", j->name,
                j->subject, (long long)j->exit_status, j->term_signal, j->timed_out ? " (timed out)" : "",
                trunc ? " (output truncated)" : "");
        json_t *res = json_pack("{s:s, s:I, s:o, s:o, s:o, s:b, s:I, s:I, s:b, s:f}", "name", j->name, "exit_code",
                                (json_int_t)j->exit_status, "signal",
                                j->term_signal ? json_integer(j->term_signal) : json_null(), "stdout",
                                stream_json(&j->out), "stderr", stream_json(&j->err), "truncated", trunc,
                                "stdout_dropped_bytes", (json_int_t)j->out.dropped, "stderr_dropped_bytes",
                                (json_int_t)j->err.dropped, "timed_out", j->timed_out, "duration", dur);
        p2p_call_reply(j->call, res);
    }
    free(j->out.buf);
    free(j->err.buf);
    free(j);
}

static const admin_cmd *find_cmd(admin_svc *svc, const char *name)
{
    for (size_t i = 0; i < svc->n_cmds; i++)
        if (!strcmp(svc->cmds[i].name, name))
            return &svc->cmds[i];
    return NULL;
}

static void m_run_command(p2p_call *call, json_t *params, void *udata)
{
    admin_svc *svc = udata;
    static const char *const allowed[] = {"name", "args", NULL};
    if (check_keys(call, params, allowed))
        return;
    char who[128];
    caller_subject(call, who, sizeof who);
    json_t *name = json_object_get(params, "name"), *args = json_object_get(params, "args");
    if (!json_is_string(name) || (args && !json_is_array(args))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: name (string) and args? (array of strings)",
                       NULL);
        return;
    }
    const admin_cmd *c = find_cmd(svc, json_string_value(name));
    if (!c) {
        p2p_log(svc->ctx, P2P_LOG_WARN, "admin", "admin/run_command '%.64s' by %s refused: not in the allow-list",
                json_string_value(name), who);
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS,
                       svc->n_cmds ? "no such command in the allow-list (admin_commands_file)"
                                   : "no commands are allowed on this node (admin_commands_file is not set)",
                       NULL);
        return;
    }
    size_t nargs = json_array_size(args);
    if (nargs && !c->allow_args) {
        p2p_log(svc->ctx, P2P_LOG_WARN, "admin", "admin/run_command '%s' by %s refused: arguments not allowed",
                c->name, who);
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "this command takes no arguments (allow_args is false)", NULL);
        return;
    }
    if (c->argc + nargs > MAX_ARGV) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: too many arguments", NULL);
        return;
    }
    for (size_t i = 0; i < nargs; i++) {
        json_t *a = json_array_get(args, i);
        if (!json_is_string(a) || json_string_length(a) > MAX_ARG_LEN ||
            strlen(json_string_value(a)) != json_string_length(a)) {
            p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: each argument is a string without NUL",
                           NULL);
            return;
        }
    }
    if (svc->n_running >= MAX_RUNNING) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "too many commands running on this node; try again", NULL);
        return;
    }
    char **argv = p2p__xcalloc(c->argc + nargs + 1, sizeof *argv);
    for (size_t i = 0; i < c->argc; i++)
        argv[i] = c->argv[i];
    for (size_t i = 0; i < nargs; i++)
        argv[c->argc + i] = (char *)json_string_value(json_array_get(args, i));
    char *env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", NULL};

    run_job *j = p2p__xcalloc(1, sizeof *j);
    j->svc = svc;
    j->call = call;
    j->cap = (size_t)svc->ctx->cfg.admin_command_output_max;
    snprintf(j->name, sizeof j->name, "%s", c->name);
    snprintf(j->subject, sizeof j->subject, "%s", who);
    j->started = uv_now(svc->ctx->loop);
    uv_loop_t *loop = svc->ctx->loop;
    uv_pipe_init(loop, &j->out.pipe, 0);
    uv_pipe_init(loop, &j->err.pipe, 0);
    j->out.pipe.data = j->err.pipe.data = j;
    j->out.open = j->err.open = 1;
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&j->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&j->err.pipe;
    uv_process_options_t o;
    memset(&o, 0, sizeof o);
    o.file = argv[0];
    o.args = argv;
    o.env = env;
    o.cwd = svc->ctx->cfg.state_directory;
    o.flags = UV_PROCESS_DETACHED; /* own session and process group */
    o.stdio_count = 3;
    o.stdio = stdio;
    o.exit_cb = on_exit_cb;
    j->proc.data = j;
    int r = uv_spawn(loop, &j->proc, &o);
    free(argv);
    j->next = svc->running;
    svc->running = j;
    svc->n_running++;
    if (r != 0) {
        p2p_log(svc->ctx, P2P_LOG_WARN, "admin", "admin/run_command '%s' by %s: cannot start: %s", c->name, who,
                uv_strerror(r));
        char *msg = p2p__xasprintf("cannot start %s: %s", c->argv[0], uv_strerror(r));
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, msg, NULL);
        free(msg);
        j->call = NULL;
        j->proc_open = 1;
        uv_close((uv_handle_t *)&j->proc, on_closed);
        uv_close((uv_handle_t *)&j->out.pipe, on_closed);
        uv_close((uv_handle_t *)&j->err.pipe, on_closed);
        return;
    }
    j->proc_open = 1;
    p2p_log(svc->ctx, P2P_LOG_INFO, "admin", "admin/run_command '%s' (%zu args) by %s: pid %d", c->name, nargs, who,
            j->proc.pid);
    uv_read_start((uv_stream_t *)&j->out.pipe, run_alloc, run_read);
    uv_read_start((uv_stream_t *)&j->err.pipe, run_alloc, run_read);
    uv_timer_init(loop, &j->timer);
    j->timer.data = j;
    j->timer_open = 1;
    uv_timer_start(&j->timer, on_timeout, (uint64_t)svc->ctx->cfg.admin_command_timeout * 1000, 0);
}

/* ---- the allow-list ---- */

static void free_cmds_array(admin_cmd *cmds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cmds[i].name);
        for (size_t k = 0; k < cmds[i].argc; k++)
            free(cmds[i].argv[k]);
        free(cmds[i].argv);
    }
    free(cmds);
}

static void free_cmds(admin_svc *svc)
{
    free_cmds_array(svc->cmds, svc->n_cmds);
    svc->cmds = NULL;
    svc->n_cmds = 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

/* Parses the allow-list document. Returns 0 or -EINVAL with *err; *out holds
 * what was parsed so far either way (free it with free_cmds_array). */
static int parse_commands(const char *text, size_t len, admin_cmd **out, size_t *n_out, char **err)
{
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    *out = NULL;
    *n_out = 0;
    if (!doc)
        return p2p__fail(err, -EINVAL, "line %d: %s", je.line, je.text);
    if (!json_is_object(doc) || json_object_size(doc) > MAX_COMMANDS) {
        json_decref(doc);
        return p2p__fail(err, -EINVAL, "an object of at most %d commands (NAME: {argv: [...]}) is expected",
                         MAX_COMMANDS);
    }
    admin_cmd *cmds = p2p__xcalloc(json_object_size(doc) + 1, sizeof *cmds);
    size_t n = 0;
    const char *name;
    json_t *v;
    int r = 0;
    json_object_foreach(doc, name, v)
    {
        json_t *argv = json_is_array(v) ? v : json_object_get(v, "argv");
        json_t *aa = json_is_object(v) ? json_object_get(v, "allow_args") : NULL;
        if (!valid_name(name)) {
            r = p2p__fail(err, -EINVAL, "command '%.64s': a name is 1..64 of A-Z a-z 0-9 _ - .", name);
            break;
        }
        if (json_is_object(v)) {
            const char *k;
            json_t *x;
            json_object_foreach(v, k, x) if (strcmp(k, "argv") && strcmp(k, "allow_args"))
            {
                r = p2p__fail(err, -EINVAL, "command '%s': unknown member '%.64s' (argv, allow_args)", name, k);
                break;
            }
            if (r)
                break;
        }
        if (!json_is_array(argv) || json_array_size(argv) == 0 || json_array_size(argv) > MAX_ARGV) {
            r = p2p__fail(err, -EINVAL, "command '%s': argv must be a non-empty array of strings", name);
            break;
        }
        if (aa && !json_is_boolean(aa)) {
            r = p2p__fail(err, -EINVAL, "command '%s': allow_args must be true or false", name);
            break;
        }
        admin_cmd *c = &cmds[n];
        c->argv = p2p__xcalloc(json_array_size(argv) + 1, sizeof *c->argv);
        c->name = p2p__xstrdup(name);
        c->allow_args = aa && json_is_true(aa);
        n++;
        for (size_t i = 0; i < json_array_size(argv); i++) {
            json_t *a = json_array_get(argv, i);
            if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a) ||
                json_string_length(a) > MAX_ARG_LEN || (i == 0 && json_string_value(a)[0] != '/')) {
                r = p2p__fail(err, -EINVAL,
                              i == 0 ? "command '%s': argv[0] must be an absolute path to the program"
                                     : "command '%s': every argv item is a string without NUL",
                              name);
                break;
            }
            c->argv[c->argc++] = p2p__xstrdup(json_string_value(a));
        }
        if (r)
            break;
    }
    json_decref(doc);
    *out = cmds;
    *n_out = n;
    return r;
}

int p2p__admin_check_commands(const char *text, size_t len, size_t *n_out, char **err)
{
    admin_cmd *cmds = NULL;
    size_t n = 0;
    int r = parse_commands(text, len, &cmds, &n, err);
    free_cmds_array(cmds, n);
    *n_out = r == 0 ? n : 0;
    return r;
}

int p2p__admin_path_check(const char *path, const char **why)
{
    char buf[MAX_PATH_LEN + 1], *comps[MAX_DEPTH];
    return split_path(path, buf, comps, why);
}

static int load_commands(admin_svc *svc, char **err)
{
    const char *path = svc->ctx->cfg.admin_commands_file;
    if (!path || !*path)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return p2p__fail(err, -errno, "admin_commands_file %s: %s", path, strerror(errno));
    char *buf = p2p__xmalloc(MAX_COMMANDS_FILE + 1);
    size_t n = fread(buf, 1, MAX_COMMANDS_FILE + 1, f);
    fclose(f);
    if (n > MAX_COMMANDS_FILE) {
        free(buf);
        return p2p__fail(err, -EFBIG, "admin_commands_file %s: larger than %d bytes", path, MAX_COMMANDS_FILE);
    }
    char *why = NULL;
    int r = parse_commands(buf, n, &svc->cmds, &svc->n_cmds, &why);
    free(buf);
    if (r != 0) {
        free_cmds(svc);
        p2p__fail(err, r, "admin_commands_file %s: %s", path, why);
        free(why);
        return r;
    }
    p2p_log(svc->ctx, P2P_LOG_INFO, "admin", "%zu admin command(s) allowed from %s", svc->n_cmds, path);
    return 0;
}

/* ---- component ---- */

static const p2p_method_desc methods[] = {
    {"list_processes", "The node's process and its descendants (exec services and their children): pid, ppid, name, "
                       "rss_bytes, cpu_seconds, state.",
     "none", P2P_METHOD_ADMIN, m_list_processes, NULL},
    {"get_config", "The node's effective config, secrets masked.", "none", P2P_METHOD_ADMIN, m_get_config, NULL},
    {"read_file", "Reads a file under <state_directory>/files/ (no symlinks, no '..'; up to admin_file_max_bytes).",
     "{path: string}", P2P_METHOD_ADMIN, m_read_file, NULL},
    {"write_file", "Writes a file under <state_directory>/files/ atomically (temp + rename); parent folders made.",
     "{path: string, content?: string, content_base64?: string, mode?: int}", P2P_METHOD_ADMIN, m_write_file, NULL},
    {"list_commands", "The commands run_command may run (admin_commands_file).", "none", P2P_METHOD_ADMIN,
     m_list_commands, NULL},
    {"run_command", "Runs an allow-listed command (no shell) with a timeout and an output cap.",
     "{name: string, args?: [string]}", P2P_METHOD_ADMIN, m_run_command, NULL},
};

static int admin_start(p2p_component *c, char **err)
{
    admin_svc *svc = c->self;
    p2p_ctx *ctx = c->ctx;
    free_cmds(svc);
    int r = load_commands(svc, err);
    if (r != 0)
        return r;
    static const p2p_service_desc desc = {"admin", P2P_VERSION, "Built-in node administration (admin role only)", 1};
    r = p2p_service_register(ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    for (size_t i = 0; r == 0 && i < sizeof methods / sizeof methods[0]; i++) {
        p2p_method_desc d = methods[i];
        d.udata = svc;
        r = p2p_method_register(ctx, "admin", &d);
        if (r == -EEXIST)
            r = 0;
    }
    if (r != 0) {
        *err = p2p__xasprintf("cannot register the admin service: %s", p2p_strerror(r));
        return r;
    }
    return 0;
}

static void admin_stop(p2p_component *c)
{
    admin_svc *svc = c->self;
    for (run_job *j = svc->running; j; j = j->next)
        run_kill(j);
}

static const p2p_component_ops admin_ops = {
    .name = "admin",
    .deps = NULL,
    .start = admin_start,
    .stop = admin_stop,
};

static void free_svc(p2p_ctx *ctx, void *arg)
{
    (void)ctx;
    admin_svc *svc = arg;
    free_cmds(svc);
    if (svc->n_running == 0) /* else a command still closing points at it: leave it */
        free(svc);
}

int p2p__admin_register(p2p_ctx *ctx)
{
    admin_svc *svc = p2p__xcalloc(1, sizeof *svc);
    svc->ctx = ctx;
    if (!p2p__component_add(ctx, &admin_ops, svc)) {
        free(svc);
        return -EEXIST;
    }
    p2p__ctx_on_shutdown(ctx, free_svc, svc);
    return 0;
}
