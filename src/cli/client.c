/*
 * client.c — `p2p call`: one JSON-RPC request to a node over HTTPS, the result
 * printed as JSON. Blocking I/O is right here: this is a short-lived command,
 * not the node's loop.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/https.h"
#include "cli/password.h"
#include "core/util.h"

static void call_usage(FILE *out)
{
    fprintf(out,
            "usage: p2p call [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--insecure]\n"
            "                [--timeout SECONDS] [--node ID] METHOD [PARAMS_JSON]\n"
            "       p2p members [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--json]\n"
            "\n"
            "Calls METHOD (service/method, e.g. system/get_system_info) on a node and prints\n"
            "the result as JSON. PARAMS_JSON is an object or an array, e.g. '{\"message\":\"hi\"}'.\n"
            "\n"
            "  --addr HOST:PORT   the node (default 127.0.0.1:8001, or $P2P_ADDR)\n"
            "  --ca FILE          CA certificate that signed the node's certificate (or $P2P_CA)\n"
            "  --data-dir DIR     find the CA in DIR/certs/ca.crt (a node's state directory)\n"
            "                     default: ./data/coordinator, then ./data/worker\n"
            "  --insecure         do not verify the node's certificate (warns; for debugging only)\n"
            "  --token JWT        bearer token (from 'p2p token'); else $P2P_TOKEN\n"
            "  --token-file F     read the token from F (mode 0600)\n"
            "  --timeout SECONDS  give up after this long (default 30)\n"
            "  --node ID          run the method on node ID, through the node at --addr (which\n"
            "                     forwards it over mutual TLS; needs an admin token)\n"
            "  -h, --help         show this help\n"
            "\n"
            "'p2p members' lists the cluster as the node at --addr sees it: node, address, role,\n"
            "status, services, last seen (--json: the raw answer of system/get_cluster_nodes).\n"
            "\n"
            "Exit status: 0 on a result, 1 on an RPC error or a failed connection, 2 on usage errors.\n");
}

char *p2p__cli_find_ca(const char *ca, const char *data_dir)
{
    if (ca)
        return p2p__xstrdup(ca);
    const char *env = getenv("P2P_CA");
    if (env && *env)
        return p2p__xstrdup(env);
    if (!data_dir && getenv("P2P_DATA_DIR") && *getenv("P2P_DATA_DIR"))
        data_dir = getenv("P2P_DATA_DIR");
    if (data_dir)
        return p2p__xasprintf("%s/certs/ca.crt", data_dir);
    static const char *const guesses[] = {"data/coordinator/certs/ca.crt", "data/worker/certs/ca.crt"};
    for (size_t i = 0; i < 2; i++)
        if (access(guesses[i], R_OK) == 0)
            return p2p__xstrdup(guesses[i]);
    return NULL;
}

/* The member table of `p2p members`. */
static void print_members(json_t *res)
{
    json_t *nodes = json_object_get(res, "nodes");
    printf("%-24s %-22s %-12s %-8s %-28s %s\n", "NODE", "ADDRESS", "ROLE", "STATUS", "SERVICES", "LAST SEEN");
    size_t i;
    json_t *n;
    double now = (double)p2p__wall_ms() / 1000.0;
    json_array_foreach(nodes, i, n)
    {
        char addr[80], svcs[256] = "", seen[32];
        snprintf(addr, sizeof addr, "%s:%lld", json_string_value(json_array_get(json_object_get(n, "addresses"), 0)) ?: "-",
                 (long long)json_integer_value(json_object_get(n, "port")));
        size_t j;
        json_t *s;
        json_array_foreach(json_object_get(n, "services"), j, s)
        {
            size_t l = strlen(svcs);
            snprintf(svcs + l, sizeof svcs - l, "%s%s", l ? "," : "", json_string_value(json_object_get(s, "name")) ?: "?");
        }
        json_t *ls = json_object_get(n, "last_seen");
        if (json_is_true(json_object_get(n, "self")))
            snprintf(seen, sizeof seen, "(this node)");
        else if (json_is_number(ls))
            snprintf(seen, sizeof seen, "%.1fs ago", now - json_number_value(ls) < 0 ? 0 : now - json_number_value(ls));
        else
            snprintf(seen, sizeof seen, "never");
        printf("%-24s %-22s %-12s %-8s %-28s %s\n", json_string_value(json_object_get(n, "node_id")), addr,
               json_string_value(json_object_get(n, "role")), json_string_value(json_object_get(n, "status")),
               *svcs ? svcs : "-", seen);
    }
}

static int run_call(int argc, char **argv, int members)
{
    const char *prog = members ? "p2p members" : "p2p call";
    const char *addr = getenv("P2P_ADDR"), *ca = NULL, *data_dir = NULL, *method = NULL, *params_text = NULL;
    const char *token_arg = NULL, *token_file = NULL, *node = NULL;
    long timeout = 30;
    int insecure = 0, raw_json = 0;
    if (members)
        method = "system/get_cluster_nodes";
    if (!addr || !*addr)
        addr = "127.0.0.1:8001";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            call_usage(stdout);
            return 0;
        } else if (strcmp(a, "--insecure") == 0) {
            insecure = 1;
            continue;
        } else if (members && strcmp(a, "--json") == 0) {
            raw_json = 1;
            continue;
        } else if (!members && strcmp(a, "--node") == 0) {
            target = &node;
        } else if (strcmp(a, "--addr") == 0) {
            target = &addr;
        } else if (strcmp(a, "--ca") == 0) {
            target = &ca;
        } else if (strcmp(a, "--data-dir") == 0) {
            target = &data_dir;
        } else if (strcmp(a, "--token") == 0) {
            target = &token_arg;
        } else if (strcmp(a, "--token-file") == 0) {
            target = &token_file;
        } else if (strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc || (timeout = strtol(argv[++i], NULL, 10)) <= 0) {
                fprintf(stderr, "%s: --timeout needs a positive number of seconds\n", prog);
                return 2;
            }
            continue;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        } else if (!method) {
            method = a;
            continue;
        } else if (!members && !params_text) {
            params_text = a;
            continue;
        } else {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", prog, a);
            return 2;
        }
        *target = argv[++i];
    }
    if (!method) {
        call_usage(stderr);
        return 2;
    }
    json_t *params = NULL;
    if (params_text) {
        json_error_t jerr;
        params = json_loads(params_text, 0, &jerr);
        if (!params || !(json_is_object(params) || json_is_array(params))) {
            fprintf(stderr, "%s: PARAMS_JSON must be a JSON object or array%s%s\n", prog, params ? "" : ": ",
                    params ? "" : jerr.text);
            json_decref(params);
            return 2;
        }
    }
    p2p_cli_conn c = {prog, addr, ca, data_dir, token_arg, token_file, timeout, insecure};
    json_t *result = NULL;
    int rc = p2p__cli_rpc(&c, node, method, params, &result);
    json_decref(params);
    if (rc != 0)
        return rc;
    if (members && !raw_json) {
        print_members(result);
    } else {
        char *out = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        printf("%s\n", out ? out : "null");
        free(out);
    }
    json_decref(result);
    return 0;
}

void p2p__cli_conn_init(p2p_cli_conn *c, const char *prog, long timeout_s)
{
    memset(c, 0, sizeof(*c));
    c->prog = prog;
    c->timeout = timeout_s;
    c->addr = getenv("P2P_ADDR");
    if (!c->addr || !*c->addr)
        c->addr = "127.0.0.1:8001";
}

const char **p2p__cli_conn_option(p2p_cli_conn *c, const char *opt)
{
    return !strcmp(opt, "--addr")         ? &c->addr
           : !strcmp(opt, "--ca")         ? &c->ca
           : !strcmp(opt, "--data-dir")   ? &c->data_dir
           : !strcmp(opt, "--token")      ? &c->token
           : !strcmp(opt, "--token-file") ? &c->token_file
                                          : NULL;
}

int p2p__cli_rpc(const p2p_cli_conn *c, const char *node, const char *method, json_t *params, json_t **result)
{
    const char *prog = c->prog;
    char *ca_file = NULL;
    *result = NULL;
    if (c->insecure) {
        fprintf(stderr, "%s: WARNING: --insecure: the node's certificate is not verified\n", prog);
    } else if (!(ca_file = p2p__cli_find_ca(c->ca, c->data_dir))) {
        fprintf(stderr, "%s: no CA certificate found; pass --ca FILE or --data-dir DIR "
                        "(the node's state directory, which holds certs/ca.crt), or set P2P_CA or P2P_DATA_DIR\n",
                prog);
        return 2;
    } else if (access(ca_file, R_OK) != 0) {
        fprintf(stderr, "%s: cannot read CA certificate %s: %s\n", prog, ca_file, strerror(errno));
        free(ca_file);
        return 2;
    }

    json_t *req = json_pack("{s:s, s:s, s:i}", "jsonrpc", "2.0", "method", method, "id", 1);
    if (params)
        json_object_set(req, "params", params);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);

    int rc = 1;
    char *token = NULL;
    if (c->token_file) {
        int st = p2p__password_get(prog, c->token_file, "--token-file", "P2P_TOKEN", "token", 0, &token);
        if (st != 0) {
            free(body);
            free(ca_file);
            return st;
        }
    } else if (c->token) {
        token = p2p__xstrdup(c->token);
    } else if (getenv("P2P_TOKEN") && *getenv("P2P_TOKEN")) {
        token = p2p__xstrdup(getenv("P2P_TOKEN"));
    }
    char *auth = token ? p2p__xasprintf("Authorization: Bearer %s", token) : NULL;
    p2p__password_free(token);
    char *node_hdr = node ? p2p__xasprintf("X-P2P-Node: %s", node) : NULL;
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json",
                             auth ? auth : node_hdr, auth ? node_hdr : NULL, NULL};
    https_request hreq = {.addr = c->addr,
                          .method = "POST",
                          .path = "/rpc",
                          .ca_file = ca_file,
                          .insecure = c->insecure,
                          .headers = headers,
                          .body = body,
                          .body_len = strlen(body),
                          .timeout_s = (int)c->timeout};
    https_response resp = {0};
    char *herr = NULL;
    if (https_do(&hreq, &resp, &herr) != 0) {
        fprintf(stderr, "%s: %s\n", prog, herr);
        free(herr);
        goto out;
    }
    if (resp.status == 204) {
        *result = json_null();
        rc = 0;
        goto out;
    }
    json_error_t jerr;
    json_t *doc = json_loads(resp.body, 0, &jerr);
    if (resp.status != 200 || !json_is_object(doc)) {
        json_t *e = json_is_object(doc) ? json_object_get(doc, "error") : NULL;
        fprintf(stderr, "%s: HTTP %d from %s%s%s\n", prog, resp.status, c->addr, json_is_string(e) ? ": " : "",
                json_is_string(e) ? json_string_value(e) : "");
        json_decref(doc);
        goto out;
    }
    json_t *err = json_object_get(doc, "error");
    if (err) {
        json_t *data = json_object_get(err, "data");
        const char *m = json_string_value(json_object_get(err, "message"));
        fprintf(stderr, "error %lld: %s\n", (long long)json_integer_value(json_object_get(err, "code")),
                m ? m : "(no message)");
        if (data) {
            char *d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
            fprintf(stderr, "data: %s\n", d);
            free(d);
        }
    } else {
        *result = json_incref(json_object_get(doc, "result"));
        if (!*result)
            *result = json_null();
        rc = 0;
    }
    json_decref(doc);
out:
    https_response_free(&resp);
    free(node_hdr);
    free(auth);
    free(body);
    free(ca_file);
    return rc;
}

int p2p__cli_post(const p2p_cli_conn *c, const char *path, const char *ctype, const void *body, size_t len,
                  json_t **result)
{
    const char *prog = c->prog;
    char *ca_file = NULL;
    *result = NULL;
    if (c->insecure) {
        fprintf(stderr, "%s: WARNING: --insecure: the node's certificate is not verified\n", prog);
    } else if (!(ca_file = p2p__cli_find_ca(c->ca, c->data_dir))) {
        fprintf(stderr, "%s: no CA certificate found; pass --ca FILE or --data-dir DIR, or set P2P_CA or "
                        "P2P_DATA_DIR\n",
                prog);
        return 2;
    }
    char *token = NULL;
    if (c->token_file) {
        int st = p2p__password_get(prog, c->token_file, "--token-file", "P2P_TOKEN", "token", 0, &token);
        if (st != 0) {
            free(ca_file);
            return st;
        }
    } else if (c->token) {
        token = p2p__xstrdup(c->token);
    } else if (getenv("P2P_TOKEN") && *getenv("P2P_TOKEN")) {
        token = p2p__xstrdup(getenv("P2P_TOKEN"));
    }
    char *auth = token ? p2p__xasprintf("Authorization: Bearer %s", token) : NULL;
    p2p__password_free(token);
    char *ct = p2p__xasprintf("Content-Type: %s", ctype);
    const char *headers[] = {ct, "Accept: application/json", auth, NULL};
    https_request hreq = {.addr = c->addr, .method = "POST", .path = path, .ca_file = ca_file,
                          .insecure = c->insecure, .headers = headers, .body = body, .body_len = len,
                          .timeout_s = (int)c->timeout};
    https_response resp = {0};
    char *herr = NULL;
    int rc = 1;
    if (https_do(&hreq, &resp, &herr) != 0) {
        fprintf(stderr, "%s: %s\n", prog, herr);
        free(herr);
    } else {
        json_t *doc = json_loads(resp.body, 0, NULL);
        if (resp.status != 200 || !json_is_object(doc)) {
            json_t *e = json_is_object(doc) ? json_object_get(doc, "error") : NULL;
            fprintf(stderr, "%s: HTTP %d from %s%s%s\n", prog, resp.status, c->addr, json_is_string(e) ? ": " : "",
                    json_is_string(e) ? json_string_value(e) : "");
            json_decref(doc);
        } else {
            *result = doc;
            rc = 0;
        }
    }
    https_response_free(&resp);
    free(ct);
    free(auth);
    free(ca_file);
    return rc;
}

int p2p__cmd_call(int argc, char **argv)
{
    return run_call(argc, argv, 0);
}

int p2p__cmd_members(int argc, char **argv)
{
    return run_call(argc, argv, 1);
}
