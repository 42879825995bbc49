/*
 * deploy_cmd.c — `p2p deploy FILE --target NODE`: upload a signed package to
 * the coordinator's store, then have NODE install it (deploy/install through
 * the coordinator, X-P2P-Node), and report the outcome: committed, or
 * reverted to the last good version and why.
 *
 * The package is checked here first (the same reader the nodes use, without
 * the key), so an unsigned or malformed file is refused before it is sent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/util.h"
#include "deploy/package.h"
#include "p2p/p2p.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p2p deploy FILE|DIR --target all|all:ROLE|NODE[,NODE...] [--max-parallel N] [--canary N]\n"
            "                  [--promote-after S] [--no-auto-revert] [--min-healthy-time S] [--healthy-deadline S] [--json]\n"
            "                  [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--token JWT] [--token-file F]\n"
            "\n"
            "Uploads a signed service package (p2p package build, then p2p package sign) to the\n"
            "coordinator at --addr, which checks it and stores it, then has NODE install it: NODE\n"
            "fetches it over mutual TLS, verifies the signature and every hash, unpacks it beside\n"
            "the running version, switches (hot reload: calls keep being answered), and watches\n"
            "it. The new version must be running and not critical for --min-healthy-time seconds\n"
            "(default 5) within --healthy-deadline seconds (default 30); otherwise NODE puts the\n"
            "last good version back by itself. Needs an admin token.\n"
            "A service folder (DIR) is built into a package and signed by the coordinator first.\n"
            "\n"
            "  --target NODE          the node to install on (a node id; the coordinator's own id too)\n"
            "  --target all|all:ROLE|NODE,NODE...  a rollout: the coordinator installs on the nodes,\n"
            "                         --max-parallel at a time (default 1); this follows it node by node\n"
            "  --max-parallel N       nodes installing at once in a rollout\n"
            "  --canary N             the first N nodes, then wait for p2p rollout promote ID\n"
            "  --promote-after S      with --canary: promote by itself after S seconds\n"
            "  --no-auto-revert       a failed node stops the rollout, the nodes done keep the new version\n"
            "  --min-healthy-time S   seconds the new version must stay healthy before it is committed\n"
            "  --healthy-deadline S   seconds it has to get there, else it is reverted\n"
            "  --json                 the raw answer\n"
            "  --addr, --ca, --data-dir, --token, --token-file   as for every client command\n"
            "\n"
            "Exit status: 0 when the new version is committed (everywhere), 1 when it was refused,\n"
            "reverted or the rollout failed\n"
            "(the reason is printed), 2 on usage errors.\n");
}

typedef struct rollout_opts {
    int rollout;
    const char *max_parallel, *canary, *promote_after;
    int no_auto_revert;
} rollout_opts;

static int deploy_file(p2p_cli_conn *cp, const char *file, const char *target, double min_h, double dl, int raw,
                       const rollout_opts *ro);

int p2p__cmd_deploy(int argc, char **argv)
{
    p2p_cli_conn c;
    p2p__cli_conn_init(&c, "p2p deploy", 60);
    const char *file = NULL, *target = NULL, *min_s = NULL, *dl_s = NULL;
    int raw = 0;
    rollout_opts ro = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            raw = 1;
            continue;
        } else if (!strcmp(a, "--insecure")) {
            c.insecure = 1;
            continue;
        } else if (!strcmp(a, "--no-auto-revert")) {
            ro.no_auto_revert = 1;
            continue;
        } else if (!strcmp(a, "--max-parallel")) {
            dst = &ro.max_parallel;
        } else if (!strcmp(a, "--canary")) {
            dst = &ro.canary;
        } else if (!strcmp(a, "--promote-after")) {
            dst = &ro.promote_after;
        } else if (!strcmp(a, "--target")) {
            dst = &target;
        } else if (!strcmp(a, "--min-healthy-time")) {
            dst = &min_s;
        } else if (!strcmp(a, "--healthy-deadline")) {
            dst = &dl_s;
        } else if ((dst = p2p__cli_conn_option(&c, a)) != NULL) {
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "p2p deploy: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!file) {
            file = a;
            continue;
        } else {
            fprintf(stderr, "p2p deploy: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p deploy: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!file || !target) {
        fprintf(stderr, "p2p deploy: a package FILE (or a service DIR) and --target NODE are needed (see --help)\n");
        return 2;
    }
    ro.rollout = !strncmp(target, "all", 3) || strchr(target, ',') || ro.max_parallel || ro.canary ||
                 ro.promote_after || ro.no_auto_revert;
    double min_h = 5, dl = 30;
    char *end;
    if (min_s && ((min_h = strtod(min_s, &end)) < 0 || *end || min_h > 3600)) {
        fprintf(stderr, "p2p deploy: --min-healthy-time takes seconds (0..3600)\n");
        return 2;
    }
    if (dl_s && ((dl = strtod(dl_s, &end)) < 0 || *end || dl > 3600 || dl < min_h)) {
        fprintf(stderr, "p2p deploy: --healthy-deadline takes seconds (at least --min-healthy-time, at most 3600)\n");
        return 2;
    }
    /* A folder: built into a temporary package and signed by the coordinator first. */
    char *tmpdir = NULL, *built = NULL;
    struct stat st;
    if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
        tmpdir = p2p__xstrdup("/tmp/p2p-deploy-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "p2p deploy: cannot make a temporary folder: %s\n", strerror(errno));
            free(tmpdir);
            return 1;
        }
        built = p2p__xasprintf("%s/package.tar.zst", tmpdir);
        char *berr = NULL;
        p2p_pkg_build_opts bo = {.compression = P2P_PKG_ZSTD};
        int br = p2p__pkg_build(file, built, &bo, NULL, &berr);
        if (br != 0) {
            fprintf(stderr, "p2p deploy: %s: %s\n", file, berr ? berr : p2p_strerror(br));
            free(berr);
            rmdir(tmpdir);
            free(built);
            free(tmpdir);
            return 1;
        }
        br = p2p__cli_package_sign(&c, built, NULL, NULL);
        if (br != 0) {
            unlink(built);
            rmdir(tmpdir);
            free(built);
            free(tmpdir);
            return br;
        }
        file = built;
    }
    int rc = deploy_file(&c, file, target, min_h, dl, raw, &ro);
    if (tmpdir) {
        unlink(built);
        rmdir(tmpdir);
        free(built);
        free(tmpdir);
    }
    return rc;
}

/* Uploads `file` and follows its install on `target`. */
static int start_rollout(const p2p_cli_conn *c, const char *sha, const char *target, double min_h, double dl, int raw,
                         const rollout_opts *ro)
{
    json_t *p = json_pack("{s:s, s:f, s:f, s:b}", "sha256", sha, "min_healthy_time", min_h, "healthy_deadline", dl,
                          "auto_revert", !ro->no_auto_revert);
    if (!strncmp(target, "all", 3) && (!target[3] || target[3] == ':')) {
        json_object_set_new(p, "target", json_string(target));
    } else {
        json_t *ids = json_array();
        char *t = p2p__xstrdup(target), *save = NULL;
        for (char *tok = strtok_r(t, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            json_array_append_new(ids, json_string(tok));
        free(t);
        json_object_set_new(p, "target", ids);
    }
    const char *nums[] = {"max_parallel", ro->max_parallel, "canary", ro->canary, "promote_after", ro->promote_after};
    for (int i = 0; i < 6; i += 2) {
        if (!nums[i + 1])
            continue;
        char *end;
        double v = strtod(nums[i + 1], &end);
        if (*end || v < 0) {
            fprintf(stderr, "p2p deploy: --%s takes a number\n", nums[i]);
            json_decref(p);
            return 2;
        }
        json_object_set_new(p, nums[i], json_integer((json_int_t)v));
    }
    json_t *res = NULL;
    int rc = p2p__cli_rpc(c, NULL, "deploy/rollout_start", p, &res);
    json_decref(p);
    if (rc != 0)
        return rc;
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(res, "id")) ?: "");
    if (!raw)
        printf("rollout %s: %zu node(s)%s\n", id, json_array_size(json_object_get(res, "nodes")),
               ro->canary ? " (canary: p2p rollout promote ID goes on)" : "");
    json_decref(res);
    fflush(stdout);
    return p2p__cli_rollout_follow(c, id, raw);
}

static int deploy_file(p2p_cli_conn *cp, const char *file, const char *target, double min_h, double dl, int raw,
                       const rollout_opts *ro)
{
    p2p_cli_conn c = *cp;
    p2p_pkg_info info = {0};
    char *err = NULL;
    if (p2p__pkg_verify_file(file, NULL, &info, &err) != 0) {
        fprintf(stderr, "p2p deploy: %s: refused: %s\n", file, err ? err : "?");
        free(err);
        return 1;
    }
    if (info.sig == P2P_PKG_SIG_NONE) {
        fprintf(stderr, "p2p deploy: %s is unsigned: nodes refuse it (p2p package sign %s)\n", file, file);
        p2p__pkg_info_free(&info);
        return 1;
    }
    char *data = NULL;
    size_t len = 0;
    int rc, r = p2p__read_file(file, (size_t)P2P_PKG_DEFAULT_MAX_TOTAL_BYTES + (64u << 20), &data, &len);
    if (r != 0) {
        fprintf(stderr, "p2p deploy: %s: %s\n", file, p2p_strerror(r));
        p2p__pkg_info_free(&info);
        return 1;
    }
    json_t *up = NULL;
    rc = p2p__cli_post(&c, "/deploy/packages", "application/octet-stream", data, len, &up);
    free(data);
    if (rc != 0) {
        p2p__pkg_info_free(&info);
        return rc;
    }
    const char *sha = json_string_value(json_object_get(up, "sha256"));
    if (!raw)
        printf("uploaded %s %s as %.16s...\n", info.name, info.version, sha ? sha : "?");
    if (ro->rollout) {
        fflush(stdout);
        rc = sha ? start_rollout(&c, sha, target, min_h, dl, raw, ro) : 1;
        json_decref(up);
        p2p__pkg_info_free(&info);
        return rc;
    }
    json_t *params = json_pack("{s:s, s:f, s:f}", "sha256", sha ? sha : "", "min_healthy_time", min_h,
                               "healthy_deadline", dl);
    json_t *res = NULL;
    rc = p2p__cli_rpc(&c, target, "deploy/install", params, &res);
    json_decref(params);
    json_decref(up);
    /* The install outlives one call: ask how it goes until it is over. The node
     * bounds it (fetch, staging, healthy_deadline, the revert); this bounds us. */
    const char *id = json_string_value(json_object_get(res, "id"));
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *idc = id ? p2p__xstrdup(id) : NULL;
    const char *last_phase = "";
    char phase_buf[32] = "";
    while (rc == 0 && idc) {
        const char *status = json_string_value(json_object_get(res, "status"));
        if (!status || strcmp(status, "installing"))
            break;
        const char *ph = json_string_value(json_object_get(res, "phase"));
        if (!raw && ph && strcmp(ph, last_phase)) {
            fprintf(stderr, "%s: %s\n", target, ph);
            snprintf(phase_buf, sizeof phase_buf, "%s", ph);
            last_phase = phase_buf;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > (long)dl + 300) {
            fprintf(stderr, "p2p deploy: no outcome from %s after %ld s (install %s)\n", target,
                    (long)(now.tv_sec - t0.tv_sec), idc);
            rc = 1;
            break;
        }
        struct timespec pause = {0, 300 * 1000 * 1000};
        nanosleep(&pause, NULL);
        json_decref(res);
        res = NULL;
        json_t *q = json_pack("{s:s}", "id", idc);
        rc = p2p__cli_rpc(&c, target, "deploy/install_status", q, &res);
        json_decref(q);
    }
    free(idc);
    if (rc == 0) {
        const char *status = json_string_value(json_object_get(res, "status"));
        if (raw) {
            char *s = json_dumps(res, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
        } else {
            const char *prev = json_string_value(json_object_get(res, "previous"));
            const char *why = json_string_value(json_object_get(res, "reason"));
            printf("%s: %s %s %s%s%s%s%s\n", target, info.name, info.version, status ? status : "?",
                   prev ? " (previous " : "", prev ? prev : "", prev ? ")" : "", "");
            if (why)
                printf("reason: %s\n", why);
        }
        rc = status && !strcmp(status, "committed") ? 0 : 1;
    }
    json_decref(res);
    p2p__pkg_info_free(&info);
    return rc;
}
