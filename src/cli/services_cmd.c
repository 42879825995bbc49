/*
 * services_cmd.c — `p2p services`: the pluggable services of one node, of a
 * node through it, or of the whole cluster; and start/stop/restart/reload.
 *
 * Everything goes through the node at --addr: `--node ID` forwards the call
 * (X-P2P-Node, with the operator's token), `--all` asks cluster/call to fan
 * services/list out to every live node at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p2p services [list] [--node ID | --all] [--json]\n"
            "       p2p services start|stop|restart|reload NAME [--node ID]\n"
            "                    [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--token JWT] [--token-file F]\n"
            "\n"
            "Lists the pluggable services of a node (version, type, state, restarts, health),\n"
            "or acts on one. start/stop/restart/reload answer once the service runs, stopped or\n"
            "failed; reload loads the version on disk beside the running one and switches with\n"
            "no failed call. Acting needs an admin token; listing, a viewer token.\n"
            "\n"
            "  --node ID          the node to ask, through the node at --addr\n"
            "  --all              every live node of the cluster (list only)\n"
            "  --json             the raw answer\n"
            "  --addr HOST:PORT   the node to talk to (default $P2P_ADDR, else 127.0.0.1:8001)\n"
            "  --ca FILE          its CA certificate (default $P2P_CA)\n"
            "  --data-dir DIR     find the CA in DIR/certs/ca.crt (default $P2P_DATA_DIR)\n"
            "  --token JWT        bearer token (default $P2P_TOKEN); --token-file F reads it from F\n"
            "\n"
            "Exit status: 0 on success, 1 on an error from the node, 2 on usage errors.\n");
}

static void print_table_header(void)
{
    printf("%-18s %-16s %-10s %-6s %-9s %-8s %-8s %s\n", "NODE", "SERVICE", "VERSION", "TYPE", "STATE", "RESTARTS",
           "HEALTH", "REASON");
}

static void print_rows(const char *node, json_t *list)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(list, "services"), i, s)
    {
        const char *reason = json_string_value(json_object_get(s, "reason"));
        const char *ver = json_string_value(json_object_get(s, "version"));
        printf("%-18s %-16s %-10s %-6s %-9s %-8lld %-8s %s\n", node, json_string_value(json_object_get(s, "name")),
               ver ? ver : "-", json_string_value(json_object_get(s, "type")),
               json_string_value(json_object_get(s, "state")),
               (long long)json_integer_value(json_object_get(s, "restarts")),
               json_string_value(json_object_get(json_object_get(s, "health"), "status")), reason ? reason : "");
    }
}

/* Versions compared across nodes: a service that runs in more than one
 * version in the cluster is listed with the nodes of each version. */
static void print_drift(json_t *results)
{
    json_t *by = json_object(); /* name -> {version -> [nodes]} */
    size_t i, j;
    json_t *r, *s;
    json_array_foreach(results, i, r)
    {
        const char *n = json_string_value(json_object_get(r, "node_id"));
        json_array_foreach(json_object_get(json_object_get(r, "result"), "services"), j, s)
        {
            const char *name = json_string_value(json_object_get(s, "name"));
            const char *ver = json_string_value(json_object_get(s, "version"));
            if (!name || !n)
                continue;
            json_t *vs = json_object_get(by, name);
            if (!vs)
                json_object_set_new(by, name, vs = json_object());
            json_t *nodes = json_object_get(vs, ver ? ver : "-");
            if (!nodes)
                json_object_set_new(vs, ver ? ver : "-", nodes = json_array());
            json_array_append_new(nodes, json_string(n));
        }
    }
    const char *name, *ver;
    json_t *vs, *nodes;
    json_object_foreach(by, name, vs)
    {
        if (json_object_size(vs) < 2)
            continue;
        printf("drift: %s runs in %zu versions:", name, json_object_size(vs));
        json_object_foreach(vs, ver, nodes)
        {
            printf(" %s on", ver);
            json_t *x;
            json_array_foreach(nodes, j, x) printf("%s%s", j ? "," : " ", json_string_value(x));
            printf(";");
        }
        printf("\n");
    }
    json_decref(by);
}

int p2p__cmd_services(int argc, char **argv)
{
    p2p_cli_conn c;
    p2p__cli_conn_init(&c, "p2p services", 60);
    const char *action = NULL, *name = NULL, *node = NULL;
    int all = 0, raw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--all")) {
            all = 1;
            continue;
        } else if (!strcmp(a, "--json")) {
            raw = 1;
            continue;
        } else if (!strcmp(a, "--insecure")) {
            c.insecure = 1;
            continue;
        } else if (!strcmp(a, "--node")) {
            dst = &node;
        } else if ((dst = p2p__cli_conn_option(&c, a)) != NULL) {
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "p2p services: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!action) {
            action = a;
            continue;
        } else if (!name) {
            name = a;
            continue;
        } else {
            fprintf(stderr, "p2p services: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p services: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!action)
        action = "list";
    int list = !strcmp(action, "list");
    if (!list && strcmp(action, "start") && strcmp(action, "stop") && strcmp(action, "restart") &&
        strcmp(action, "reload")) {
        fprintf(stderr, "p2p services: unknown action '%s': list, start, stop, restart or reload\n", action);
        return 2;
    }
    if (list && name) {
        fprintf(stderr, "p2p services list: takes no NAME (see --help)\n");
        return 2;
    }
    if (!list && !name) {
        fprintf(stderr, "p2p services %s: which service? (p2p services %s NAME)\n", action, action);
        return 2;
    }
    if (all && (node || !list)) {
        fprintf(stderr, "p2p services: --all goes with list, without --node\n");
        return 2;
    }
    json_t *result = NULL;
    int rc;
    if (all) {
        json_t *p = json_pack("{s:s, s:s}", "target", "all", "method", "services/list");
        rc = p2p__cli_rpc(&c, NULL, "cluster/call", p, &result);
        json_decref(p);
    } else if (list) {
        rc = p2p__cli_rpc(&c, node, "services/list", NULL, &result);
    } else {
        char method[32];
        snprintf(method, sizeof method, "services/%s", action);
        json_t *p = json_pack("{s:s}", "name", name);
        rc = p2p__cli_rpc(&c, node, method, p, &result);
        json_decref(p);
    }
    if (rc != 0)
        return rc;
    if (raw) {
        char *out = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
        printf("%s\n", out ? out : "null");
        free(out);
    } else if (all) {
        print_table_header();
        size_t i;
        json_t *r;
        json_array_foreach(result, i, r)
        {
            const char *n = json_string_value(json_object_get(r, "node_id"));
            json_t *err = json_object_get(r, "error");
            if (err)
                printf("%-18s (unreachable: %s)\n", n ? n : "?", json_string_value(json_object_get(err, "message")));
            else
                print_rows(n ? n : "?", json_object_get(r, "result"));
        }
        print_drift(result);
    } else if (list) {
        print_table_header();
        print_rows(json_string_value(json_object_get(result, "node_id")), result);
    } else {
        const char *state = json_string_value(json_object_get(result, "state"));
        const char *reason = json_string_value(json_object_get(result, "reason"));
        const char *ver = json_string_value(json_object_get(result, "version"));
        printf("%s %s: %s%s%s%s\n", name, ver ? ver : "", state ? state : "?", reason ? " (" : "",
               reason ? reason : "", reason ? ")" : "");
        int ok = state && ((!strcmp(action, "stop") && !strcmp(state, "stopped")) ||
                           (strcmp(action, "stop") && !strcmp(state, "running")));
        if (!ok)
            rc = 1;
    }
    json_decref(result);
    return rc;
}
