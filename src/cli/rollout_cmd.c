/*
 * rollout_cmd.c — `p2p rollout status [ID] [-w] | promote ID | revert ID`, and
 * the follower `p2p deploy --target all|all:ROLE|NODE,NODE...` uses
 * (deploy/rollout_* on the coordinator at --addr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/util.h"
#include "p2p/p2p.h"

static const char *js(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static int over(const char *state)
{
    return !strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "reverted");
}

static void print_rollout(json_t *r)
{
    printf("rollout %s: %s %s, %s", js(r, "id"), js(r, "name"), js(r, "version"), js(r, "state"));
    if (*js(r, "reason"))
        printf(" (%s)", js(r, "reason"));
    printf("\n");
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(r, "nodes"), i, n)
    {
        printf("  %-24s %-11s", js(n, "node"), js(n, "state"));
        if (*js(n, "reason"))
            printf(" %s", js(n, "reason"));
        else if (*js(n, "detail") && strcmp(js(n, "detail"), js(n, "state")))
            printf(" (%s)", js(n, "detail"));
        printf("\n");
    }
}

/* Follows rollout `id` until it is over, printing each node's changes. 0 when
 * done, 1 when failed or reverted (or the call failed). */
int p2p__cli_rollout_follow(const p2p_cli_conn *c, const char *id, int raw)
{
    json_t *seen = json_object();
    json_t *res = NULL;
    int rc = 0;
    size_t events_seen = 0;
    for (;;) {
        json_t *q = json_pack("{s:s}", "id", id);
        json_decref(res);
        res = NULL;
        rc = p2p__cli_rpc(c, NULL, "deploy/rollout_status", q, &res);
        json_decref(q);
        if (rc != 0)
            break;
        if (!raw) {
            size_t i;
            json_t *n;
            json_array_foreach(json_object_get(res, "nodes"), i, n)
            {
                char line[600];
                snprintf(line, sizeof line, "%s%s%s", js(n, "state"), *js(n, "reason") ? ": " : "", js(n, "reason"));
                if (strcmp(js(seen, js(n, "node")), line)) {
                    printf("%s: %s\n", js(n, "node"), line);
                    json_object_set_new(seen, js(n, "node"), json_string(line));
                }
            }
            json_t *ev = json_object_get(res, "events");
            /* state changes of the rollout itself: the last events */
            for (; events_seen < json_array_size(ev); events_seen++) {
                const char *m = js(json_array_get(ev, events_seen), "message");
                if (!strncmp(m, "canary", 6) || !strncmp(m, "stopped", 7) || !strncmp(m, "promoted", 8) ||
                    !strncmp(m, "resumed", 7))
                    printf("rollout: %s\n", m);
            }
            fflush(stdout);
        }
        if (over(js(res, "state")))
            break;
        struct timespec pause = {0, 400 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (rc == 0) {
        if (raw) {
            char *s = json_dumps(res, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
        } else {
            printf("rollout %s: %s%s%s\n", id, js(res, "state"), *js(res, "reason") ? ": " : "", js(res, "reason"));
        }
        rc = !strcmp(js(res, "state"), "done") ? 0 : 1;
    }
    json_decref(res);
    json_decref(seen);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: p2p rollout status [ID] [-w] [--json] | promote ID | revert ID\n"
                 "                  [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--token JWT] [--token-file F]\n"
                 "\n"
                 "Rollouts run by the coordinator at --addr (p2p deploy --target all|all:ROLE|NODE,...).\n"
                 "  status [ID]   every rollout (with the committed versions and the nodes converging), or one\n"
                 "  -w            follow rollout ID until it is over (exit 0 when done, 1 when failed/reverted)\n"
                 "  promote ID    a canary rollout waiting for approval goes on to the other nodes\n"
                 "  revert ID     stop the rollout and take the nodes it did back to the version before\n");
}

int p2p__cmd_rollout(int argc, char **argv)
{
    p2p_cli_conn c;
    p2p__cli_conn_init(&c, "p2p rollout", 30);
    const char *sub = NULL, *id = NULL;
    int watch = 0, raw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-w") || !strcmp(a, "--watch")) {
            watch = 1;
        } else if (!strcmp(a, "--json")) {
            raw = 1;
        } else if (!strcmp(a, "--insecure")) {
            c.insecure = 1;
        } else if ((dst = p2p__cli_conn_option(&c, a)) != NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "p2p rollout: %s needs a value\n", a);
                return 2;
            }
            *dst = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "p2p rollout: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!sub) {
            sub = a;
        } else if (!id) {
            id = a;
        } else {
            fprintf(stderr, "p2p rollout: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!sub || (strcmp(sub, "status") && strcmp(sub, "promote") && strcmp(sub, "revert")) ||
        (strcmp(sub, "status") && !id) || (watch && !id)) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(sub, "status") && watch)
        return p2p__cli_rollout_follow(&c, id, raw);
    json_t *params = id ? json_pack("{s:s}", "id", id) : NULL;
    json_t *res = NULL;
    const char *method = !strcmp(sub, "status")    ? "deploy/rollout_status"
                         : !strcmp(sub, "promote") ? "deploy/rollout_promote"
                                                   : "deploy/rollout_revert";
    int rc = p2p__cli_rpc(&c, NULL, method, params, &res);
    json_decref(params);
    if (rc != 0)
        return rc;
    if (raw) {
        char *s = json_dumps(res, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else if (id) {
        print_rollout(res);
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(res, "rollouts"), i, r) print_rollout(r);
        const char *name;
        json_t *v;
        if (json_object_size(json_object_get(res, "committed")))
            printf("committed:\n");
        json_object_foreach(json_object_get(res, "committed"), name, v)
            printf("  %-24s %s (%.16s...)\n", name, js(v, "version"), js(v, "sha256"));
        json_array_foreach(json_object_get(res, "convergence"), i, r)
            printf("converging: %s %s -> %s: %s%s%s\n", js(r, "node"), js(r, "name"), js(r, "version"),
                   js(r, "state"), *js(r, "reason") ? ": " : "", js(r, "reason"));
    }
    json_decref(res);
    return 0;
}
