/*
 * certs_cmd.c — `p2p certs`: the cluster's node certificates and its CA.
 *
 *   list       the coordinator's registry of enrolled ids joined with what every
 *              live node says of its own certificate (pki/list_certificates:
 *              the coordinator asks them): addresses, serial, fingerprint,
 *              expiry, and whether the live certificate is the one the
 *              registry knows
 *   show       one node's certificate in detail (pki/certificate, --node ID)
 *   renew      makes a node renew its certificate now (pki/renew, admin token)
 *   export-ca  the CA certificate PEM (pki/ca_certificate)
 *
 * Everything goes through the node at --addr (the coordinator for `list`);
 * `--node ID` forwards the call there (X-P2P-Node, with the operator's token).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p2p certs list [--node ID] [--json]\n"
            "       p2p certs show [--node ID] [--json]\n"
            "       p2p certs renew --node ID [--json]\n"
            "       p2p certs export-ca [--node ID] [-o FILE]\n"
            "                 [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--token JWT] [--token-file F]\n"
            "\n"
            "  list       every node id the coordinator's CA issued a certificate for, with what the\n"
            "             live node presents: role, serial, expiry (days left), SHA-256 fingerprint,\n"
            "             addresses (IP and DNS subjectAltNames) and a status: ok, expires soon\n"
            "             (within the node's cert_renew_before), expired, unreachable (not answering\n"
            "             now), differs (the node presents a certificate the registry does not\n"
            "             list as current), replaced. --addr must be the coordinator. --node ID:\n"
            "             that node only.\n"
            "  show       one node's certificate in full, with its PEM (default: the node at --addr)\n"
            "  renew      the node makes a new key and has the coordinator sign a new certificate\n"
            "             now; prints the new serial and expiry (admin token)\n"
            "  export-ca  prints the cluster CA certificate (PEM) a node trusts, or writes it to FILE\n"
            "\n"
            "  --node ID          the node to ask, through the node at --addr\n"
            "  --json             the raw answer\n"
            "  -o, --output FILE  export-ca: write the PEM to FILE (mode 0644) instead of stdout\n"
            "  --addr HOST:PORT   the node to talk to (default $P2P_ADDR, else 127.0.0.1:8001)\n"
            "  --ca FILE          its CA certificate (default $P2P_CA)\n"
            "  --data-dir DIR     find the CA in DIR/certs/ca.crt (default $P2P_DATA_DIR)\n"
            "  --token JWT        bearer token (default $P2P_TOKEN); --token-file F reads it from F\n"
            "\n"
            "Reading needs a viewer token, renew an admin token; --node (forwarding through the node at\n"
            "--addr) needs an admin token: a viewer asks the node itself with --addr.\n"
            "Exit status: 0 on success, 1 on an error from a node, 2 on usage errors.\n");
}

static void fmt_time(json_int_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M", &tm))
        snprintf(out, n, "-");
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* "10.0.0.1,node-a" from a certificate's ip_addresses and dns_names. */
static void addresses(json_t *cert, char *out, size_t n)
{
    out[0] = 0;
    size_t used = 0;
    const char *keys[] = {"ip_addresses", "dns_names"};
    for (int k = 0; k < 2; k++) {
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(cert, keys[k]), i, a)
        {
            int w = snprintf(out + used, n - used, "%s%s", used ? "," : "", json_string_value(a));
            if (w < 0 || (size_t)w >= n - used)
                return;
            used += (size_t)w;
        }
    }
}

static void print_json(json_t *v)
{
    char *out = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    printf("%s\n", out ? out : "null");
    free(out);
}

static int cmd_list(p2p_cli_conn *c, const char *only, int raw)
{
    json_t *reg = NULL;
    int rc = p2p__cli_rpc(c, NULL, "pki/list_certificates", NULL, &reg);
    if (rc != 0)
        return rc;
    json_t *rows = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(reg, "nodes"), i, r)
    {
        if (!only || !strcmp(str(r, "id"), only))
            json_array_append(rows, r);
    }
    if (only && json_array_size(rows) == 0) {
        fprintf(stderr, "p2p certs list: no certificate for node '%s'\n", only);
        json_decref(rows);
        json_decref(reg);
        return 1;
    }
    int64_t now = (int64_t)time(NULL);
    int bad = 0;
    if (raw) {
        print_json(rows);
    } else {
        printf("%-18s %-12s %-34s %-16s %-6s %-17s %-13s %s\n", "NODE", "ROLE", "SERIAL", "EXPIRES (UTC)", "DAYS",
               "FINGERPRINT", "STATUS", "ADDRESSES");
    }
    json_array_foreach(rows, i, r)
    {
        json_t *l = json_object_get(r, "live");
        if (!json_is_object(l))
            l = NULL;
        const char *status = str(r, "status");
        if (!strcmp(status, "expired"))
            bad = 1;
        if (raw)
            continue;
        json_int_t exp = l ? json_integer_value(json_object_get(l, "not_after"))
                           : json_integer_value(json_object_get(r, "not_after"));
        char when[32], addrs[512], days[24], fp[18];
        fmt_time(exp, when, sizeof when);
        snprintf(days, sizeof days, "%lld", exp ? (long long)((exp - now) / 86400) : 0LL);
        const char *f = l ? str(l, "fingerprint_sha256") : str(r, "fingerprint");
        snprintf(fp, sizeof fp, "%.16s", *f ? f : "-");
        addresses(l, addrs, sizeof addrs);
        const char *role = l && json_is_string(json_object_get(l, "role")) ? str(l, "role") : str(r, "role");
        const char *serial = l ? str(l, "serial") : str(r, "serial");
        json_t *err = json_object_get(r, "error");
        printf("%-18s %-12s %-34s %-16s %-6s %-17s %-13s %s\n", str(r, "id"), *role ? role : "-",
               *serial ? serial : "-", when, exp ? days : "-", fp, status,
               l ? addrs : err ? str(err, "message") : "");
    }
    size_t nrev = json_array_size(json_object_get(reg, "revoked"));
    if (!raw && nrev)
        printf("\n%zu revoked certificate(s) not yet expired (p2p call auth/list_revoked_certificates)\n", nrev);
    json_decref(rows);
    json_decref(reg);
    return bad ? 1 : 0;
}

static void print_cert(json_t *r)
{
    char nb[32], na[32], addrs[1024];
    fmt_time(json_integer_value(json_object_get(r, "not_before")), nb, sizeof nb);
    fmt_time(json_integer_value(json_object_get(r, "not_after")), na, sizeof na);
    addresses(r, addrs, sizeof addrs);
    json_int_t left = json_integer_value(json_object_get(r, "expires_in_seconds"));
    printf("node:          %s\n", str(r, "node_id"));
    printf("subject CN:    %s\n", str(r, "subject_cn"));
    printf("role (OU):     %s\n", json_is_string(json_object_get(r, "role")) ? str(r, "role") : "(none)");
    printf("addresses:     %s\n", addrs);
    printf("serial:        %s\n", str(r, "serial"));
    printf("fingerprint:   SHA256 %s\n", str(r, "fingerprint_sha256"));
    printf("valid from:    %s UTC\n", nb);
    printf("valid until:   %s UTC (%lld days left)\n", na, (long long)(left / 86400));
    printf("issued by:     %s\n", str(r, "source"));
    printf("renewals:      %lld (failures %lld)%s%s\n", (long long)json_integer_value(json_object_get(r, "renewals")),
           (long long)json_integer_value(json_object_get(r, "renewal_failures")),
           json_is_string(json_object_get(r, "last_renewal_error")) ? "; last error: " : "",
           str(r, "last_renewal_error"));
    printf("\n%s", str(r, "certificate_pem"));
}

int p2p__cmd_certs(int argc, char **argv)
{
    p2p_cli_conn c;
    p2p__cli_conn_init(&c, "p2p certs", 60);
    const char *action = NULL, *node = NULL, *output = NULL;
    int raw = 0;
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
        } else if (!strcmp(a, "--node")) {
            dst = &node;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            dst = &output;
        } else if ((dst = p2p__cli_conn_option(&c, a)) != NULL) {
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "p2p certs: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!action) {
            action = a;
            continue;
        } else {
            fprintf(stderr, "p2p certs: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p certs: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!action) {
        usage(stderr);
        return 2;
    }
    if (output && strcmp(action, "export-ca")) {
        fprintf(stderr, "p2p certs: -o goes with export-ca\n");
        return 2;
    }
    if (!strcmp(action, "list"))
        return cmd_list(&c, node, raw);
    json_t *result = NULL;
    int rc;
    if (!strcmp(action, "show")) {
        if ((rc = p2p__cli_rpc(&c, node, "pki/certificate", NULL, &result)) != 0)
            return rc;
        if (raw)
            print_json(result);
        else
            print_cert(result);
    } else if (!strcmp(action, "renew")) {
        if (!node) {
            fprintf(stderr, "p2p certs renew: which node? (p2p certs renew --node ID)\n");
            return 2;
        }
        if ((rc = p2p__cli_rpc(&c, node, "pki/renew", NULL, &result)) != 0)
            return rc;
        if (raw) {
            print_json(result);
        } else {
            char na[32];
            fmt_time(json_integer_value(json_object_get(result, "not_after")), na, sizeof na);
            printf("%s: certificate renewed: serial %s, fingerprint %.16s..., valid until %s UTC\n", node,
                   str(result, "serial"), str(result, "fingerprint_sha256"), na);
        }
    } else if (!strcmp(action, "export-ca")) {
        if ((rc = p2p__cli_rpc(&c, node, "pki/ca_certificate", NULL, &result)) != 0)
            return rc;
        const char *pem = str(result, "pem");
        if (output) {
            FILE *f = fopen(output, "w");
            if (!f || fputs(pem, f) == EOF || fclose(f) != 0) {
                fprintf(stderr, "p2p certs export-ca: cannot write %s\n", output);
                json_decref(result);
                return 1;
            }
            fprintf(stderr, "wrote the CA certificate (SHA256 %.16s...) to %s\n", str(result, "fingerprint_sha256"),
                    output);
        } else {
            fputs(pem, stdout);
        }
    } else {
        fprintf(stderr, "p2p certs: unknown action '%s': list, show, renew or export-ca\n", action);
        return 2;
    }
    json_decref(result);
    return 0;
}
