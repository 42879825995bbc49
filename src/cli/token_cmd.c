/*
 * token_cmd.c — `p2p token`: get a JWT from a node (with the admin API key, from
 * a file or from the coordinator's own vault), and revoke one.
 *
 *   p2p token [--addr A] [--api-key-file F | --data-dir DIR] [--role admin|viewer] [--ttl S] [--name N]
 *   p2p token revoke [--addr A] [--token JWT | --token-file F] TOKEN
 *   p2p token create --join [--ttl S] [--uses N | --replace NODE_ID]
 *   p2p token list --join; p2p token revoke --join ID
 *   p2p token rotate-key [--drop-old]
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
#include "p2p/p2p.h"
#include "pki/pki.h"
#include "vault/vault.h"

static void token_usage(FILE *out)
{
    fprintf(out,
            "usage: p2p token [--addr HOST:PORT] [--api-key-file F | --data-dir DIR] [--role admin|viewer]\n"
            "                 [--ttl SECONDS] [--name NAME] [--ca FILE] [--insecure]\n"
            "       p2p token revoke [--addr HOST:PORT] [--token JWT | --token-file F] TOKEN\n"
            "       p2p token create --join [--ttl SECONDS] [--uses N | --replace NODE_ID] [credentials]\n"
            "       p2p token list --join [credentials]\n"
            "       p2p token revoke --join ID [credentials]\n"
            "       p2p token rotate-key [--drop-old] [credentials]\n"
            "\n"
            "Prints a bearer token (JWT) from the node's POST /auth/token. The admin API key\n"
            "comes from --api-key-file (first line, mode 0600) or, on the coordinator's machine,\n"
            "from its vault in --data-dir DIR (vault password from --password-file,\n"
            "$P2P_VAULT_PASSWORD or a prompt). Use it with 'p2p call --token-file' or $P2P_TOKEN.\n"
            "\n"
            "'revoke' puts TOKEN on the cluster's deny list through any node (needs an admin token:\n"
            "--token, --token-file or $P2P_TOKEN) and says how many nodes have it.\n"
            "\n"
            "Join tokens (on the coordinator) let new workers enroll: 'create --join' prints one\n"
            "(shown once; it ends with the CA pin the worker checks), valid --ttl seconds (default\n"
            "3600) for --uses enrollments (default 1). Give it to the worker with --join-token or\n"
            "$P2P_JOIN_TOKEN. 'list --join' shows the live ones by id; 'revoke --join ID' removes one.\n"
            "A node id belongs to the node that enrolled with it first: the coordinator refuses\n"
            "another certificate for an enrolled id, and never issues its own id or the\n"
            "coordinator role. To replace a node (new machine, lost vault), make a replacement\n"
            "token with '--replace NODE_ID': it enrolls that id only, once, and revokes the old\n"
            "node's certificate (the coordinator refuses it from then on).\n"
            "'rotate-key' (on the coordinator) replaces the token signing key: it prints the new key\n"
            "id. Tokens signed before keep working until they expire (at most jwt_ttl); then every\n"
            "node drops the old public key. Workers pick the new key up within seconds. With\n"
            "--drop-old the old key goes at once and every token it signed is refused (a leaked key).\n"
            "\n"
            "Join tokens, key rotation and the other admin-only methods need an operator's admin\n"
            "token: a node certificate or a viewer token is refused.\n"
            "Credentials: an admin token (--token, --token-file, $P2P_TOKEN), else the admin API\n"
            "key as above, exchanged for a short-lived token.\n"
            "\n"
            "  --addr HOST:PORT   the node (default 127.0.0.1:8001, or $P2P_ADDR)\n"
            "  --role R           admin (default) or viewer (read-only methods)\n"
            "  --ttl SECONDS      lifetime (default: the node's jwt_ttl, 24 h)\n"
            "  --name NAME        a name for the token's user (e.g. ci-bot): all tokens of one name\n"
            "                     and role share one rate-limit bucket; without it each token has its own\n"
            "\n"
            "Exit status: 0 success, 1 refused or unreachable, 2 usage error.\n");
}

/* The admin API key from a file or the local vault. Returns 0 or an exit status. */
static int admin_key(const char *key_file, const char *data_dir, const char *pw_file, char **out)
{
    if (key_file)
        return p2p__password_get("p2p token", key_file, "--api-key-file", "P2P_API_KEY", "admin API key", 0, out);
    const char *env = getenv("P2P_API_KEY");
    if (!data_dir && env && *env) {
        *out = p2p__xstrdup(env);
        return 0;
    }
    if (!data_dir) {
        fprintf(stderr, "p2p token: give --api-key-file F, set P2P_API_KEY, or --data-dir DIR on the coordinator\n");
        return 2;
    }
    char *path = p2p__xasprintf("%s/vault.p2p", data_dir);
    char *pw = NULL;
    int st = p2p__password_get("p2p token", pw_file, "--password-file", "P2P_VAULT_PASSWORD", "vault password", 0, &pw);
    if (st != 0) {
        free(path);
        return st;
    }
    vault *v = NULL;
    char *err = NULL;
    int r = vault_open(path, pw, &v, &err);
    p2p__password_free(pw);
    if (r != 0) {
        fprintf(stderr, "p2p token: %s: %s\n", path, err ? err : p2p_strerror(r));
        free(err);
        free(path);
        return r == -EBADMSG || r == -EINVAL ? 2 : 1;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    r = vault_get(v, "keys", "admin_api_key", &buf, &len);
    if (r != 0) {
        fprintf(stderr, "p2p token: %s holds no admin API key (is it a coordinator's vault?)\n", path);
        vault_close(v);
        free(path);
        return 1;
    }
    *out = p2p__xasprintf("%.*s", (int)len, (char *)buf);
    vault_secret_free(buf, len + 1);
    vault_close(v);
    free(path);
    return 0;
}

static int post_json(const char *addr, const char *ca_file, int insecure, const char *path, json_t *body,
                     const char *bearer, json_t **out, int *status)
{
    char *text = json_dumps(body, JSON_COMPACT);
    char *auth = bearer ? p2p__xasprintf("Authorization: Bearer %s", bearer) : NULL;
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    https_request req = {.addr = addr, .method = "POST", .path = path, .ca_file = ca_file, .insecure = insecure,
                         .headers = headers, .body = text, .body_len = strlen(text), .timeout_s = 30};
    https_response resp = {0};
    char *err = NULL;
    int r = https_do(&req, &resp, &err);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    memset(text, 0, strlen(text));
    free(text);
    if (r != 0) {
        fprintf(stderr, "p2p token: %s\n", err);
        free(err);
        return 1;
    }
    json_error_t jerr;
    *status = resp.status;
    *out = json_loads(resp.body ? resp.body : "", 0, &jerr);
    https_response_free(&resp);
    return 0;
}

/* An admin bearer token: given, or obtained with the admin API key. Returns 0 or an exit status. */
static int bearer_for(const char *addr, const char *ca_file, int insecure, const char *token_arg, const char *token_file,
                      const char *key_file, const char *data_dir, const char *pw_file, char **out)
{
    if (token_file)
        return p2p__password_get("p2p token", token_file, "--token-file", "P2P_TOKEN", "token", 0, out);
    if (token_arg) {
        *out = p2p__xstrdup(token_arg);
        return 0;
    }
    if (getenv("P2P_TOKEN") && *getenv("P2P_TOKEN") && !key_file && !data_dir) {
        *out = p2p__xstrdup(getenv("P2P_TOKEN"));
        return 0;
    }
    char *key = NULL;
    int st = admin_key(key_file, data_dir, pw_file, &key);
    if (st != 0)
        return st;
    json_t *body = json_pack("{s:s, s:i}", "api_key", key, "ttl", 60), *resp = NULL;
    int status = 0, rc = 1;
    if (post_json(addr, ca_file, insecure, "/auth/token", body, NULL, &resp, &status) == 0) {
        json_t *t = json_object_get(resp, "token");
        if (status == 200 && json_is_string(t)) {
            *out = p2p__xstrdup(json_string_value(t));
            rc = 0;
        } else {
            json_t *e = json_object_get(resp, "error");
            fprintf(stderr, "p2p token: HTTP %d: %s\n", status, json_is_string(e) ? json_string_value(e) : "");
        }
    }
    json_string_set(json_object_get(body, "api_key"), "");
    json_decref(body);
    json_decref(resp);
    p2p__password_free(key);
    return rc;
}

/* Calls a method of the "auth" service on the coordinator; prints errors. Returns 0 and *result, or 1. */
static int rpc_call(const char *addr, const char *ca_file, int insecure, const char *bearer, const char *method,
                    json_t *params, json_t **result)
{
    json_t *body = json_pack("{s:s, s:i, s:s, s:O}", "jsonrpc", "2.0", "id", 1, "method", method, "params", params);
    json_t *resp = NULL;
    int status = 0, rc = 1;
    if (post_json(addr, ca_file, insecure, "/rpc", body, bearer, &resp, &status) == 0) {
        json_t *res = json_object_get(resp, "result");
        json_t *err = json_object_get(resp, "error");
        if (status == 200 && res) {
            *result = json_incref(res);
            rc = 0;
        } else if (json_is_object(err)) { /* a JSON-RPC error; a refusal at the HTTP layer has a string */
            fprintf(stderr, "p2p token: %s\n", json_string_value(json_object_get(err, "message")));
        } else {
            json_t *e = json_object_get(resp, "error");
            fprintf(stderr, "p2p token: HTTP %d%s%s\n", status, json_is_string(e) ? ": " : "",
                    json_is_string(e) ? json_string_value(e) : "");
        }
    }
    json_decref(body);
    json_decref(resp);
    return rc;
}

static int join_command(const char *sub, const char *addr, const char *ca_file, int insecure, const char *bearer,
                        long ttl, long uses, const char *replace, const char *id)
{
    json_t *params = json_object(), *res = NULL;
    int rc = 1;
    if (strcmp(sub, "create") == 0) {
        if (ttl)
            json_object_set_new(params, "ttl", json_integer(ttl));
        if (uses)
            json_object_set_new(params, "uses", json_integer(uses));
        if (replace)
            json_object_set_new(params, "replace", json_string(replace));
        if (rpc_call(addr, ca_file, insecure, bearer, "auth/create_join_token", params, &res) == 0) {
            const char *rp = json_string_value(json_object_get(res, "replaces"));
            printf("%s\n", json_string_value(json_object_get(res, "token")));
            fprintf(stderr,
                    "p2p token: join token %s, %s%s%s%lld use(s), expires at %lld (Unix time); it is shown only once\n",
                    json_string_value(json_object_get(res, "id")), rp ? "replaces " : "", rp ? rp : "", rp ? ", " : "",
                    (long long)json_integer_value(json_object_get(res, "uses")),
                    (long long)json_integer_value(json_object_get(res, "expires_at")));
            rc = 0;
        }
    } else if (strcmp(sub, "list") == 0) {
        if (rpc_call(addr, ca_file, insecure, bearer, "auth/list_join_tokens", params, &res) == 0) {
            printf("%-10s %-12s %-12s %-10s %s\n", "ID", "CREATED", "EXPIRES", "USES LEFT", "REPLACES");
            size_t i;
            json_t *t;
            json_array_foreach(res, i, t)
            {
                const char *rp = json_string_value(json_object_get(t, "replaces"));
                printf("%-10s %-12lld %-12lld %-10lld %s\n", json_string_value(json_object_get(t, "id")),
                       (long long)json_integer_value(json_object_get(t, "created_at")),
                       (long long)json_integer_value(json_object_get(t, "expires_at")),
                       (long long)json_integer_value(json_object_get(t, "uses_left")), rp ? rp : "-");
            }
            rc = 0;
        }
    } else {
        json_object_set_new(params, "id", json_string(id));
        if (rpc_call(addr, ca_file, insecure, bearer, "auth/revoke_join_token", params, &res) == 0) {
            fprintf(stderr, "p2p token: join token %s revoked\n", id);
            rc = 0;
        }
    }
    json_decref(params);
    json_decref(res);
    return rc;
}

/* auth/rotate_signing_key on the coordinator: prints the new key id. */
static int rotate_command(const char *addr, const char *ca_file, int insecure, const char *bearer, int drop_old)
{
    json_t *params = json_pack("{s:b}", "drop_old", drop_old), *res = NULL;
    int rc = rpc_call(addr, ca_file, insecure, bearer, "auth/rotate_signing_key", params, &res);
    if (rc == 0) {
        json_t *until = json_object_get(res, "previous_retire_at");
        printf("%s\n", json_string_value(json_object_get(res, "kid")));
        if (json_is_integer(until))
            fprintf(stderr,
                    "p2p token: signing key rotated; the old key %s verifies the tokens it signed until %lld (Unix "
                    "time), then every node drops it\n",
                    json_string_value(json_object_get(res, "previous_kid")), (long long)json_integer_value(until));
        else
            fprintf(stderr, "p2p token: signing key rotated; the old key %s is dropped: its tokens are refused\n",
                    json_string_value(json_object_get(res, "previous_kid")));
    }
    json_decref(params);
    json_decref(res);
    return rc;
}

int p2p__cmd_token(int argc, char **argv)
{
    const char *addr = getenv("P2P_ADDR"), *ca = NULL, *data_dir = NULL, *key_file = NULL, *pw_file = NULL;
    const char *role = NULL, *token_arg = NULL, *token_file = NULL, *target = NULL, *name = NULL, *replace = NULL;
    long ttl = 0, uses = 0;
    int insecure = 0, revoke = 0, join = 0;
    const char *sub = NULL;
    if (!addr || !*addr)
        addr = "127.0.0.1:8001";
    int i = 1;
    int rotate = 0, drop_old = 0;
    if (argc > 1 && strcmp(argv[1], "rotate-key") == 0) {
        rotate = 1;
        i = 2;
    }
    if (argc > 1 && (strcmp(argv[1], "revoke") == 0 || strcmp(argv[1], "create") == 0 || strcmp(argv[1], "list") == 0)) {
        sub = argv[1];
        revoke = strcmp(sub, "revoke") == 0;
        i = 2;
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            token_usage(stdout);
            return 0;
        } else if (strcmp(a, "--insecure") == 0) {
            insecure = 1;
            continue;
        } else if (strcmp(a, "--join") == 0) {
            join = 1;
            continue;
        } else if (rotate && strcmp(a, "--drop-old") == 0) {
            drop_old = 1;
            continue;
        } else if (strcmp(a, "--uses") == 0) {
            char *end;
            if (i + 1 >= argc || (uses = strtol(argv[++i], &end, 10)) <= 0 || *end) {
                fprintf(stderr, "p2p token: --uses needs a positive number\n");
                return 2;
            }
            continue;
        } else if (strcmp(a, "--addr") == 0) {
            dst = &addr;
        } else if (strcmp(a, "--ca") == 0) {
            dst = &ca;
        } else if (strcmp(a, "--data-dir") == 0) {
            dst = &data_dir;
        } else if (strcmp(a, "--api-key-file") == 0) {
            dst = &key_file;
        } else if (strcmp(a, "--password-file") == 0) {
            dst = &pw_file;
        } else if (strcmp(a, "--role") == 0) {
            dst = &role;
        } else if (strcmp(a, "--name") == 0) {
            dst = &name;
        } else if (strcmp(a, "--replace") == 0) {
            dst = &replace;
        } else if (strcmp(a, "--token") == 0) {
            dst = &token_arg;
        } else if (strcmp(a, "--token-file") == 0) {
            dst = &token_file;
        } else if (strcmp(a, "--ttl") == 0) {
            char *end;
            if (i + 1 >= argc || (ttl = strtol(argv[++i], &end, 10)) <= 0 || *end) {
                fprintf(stderr, "p2p token: --ttl needs a positive number of seconds\n");
                return 2;
            }
            continue;
        } else if (revoke && a[0] != '-' && !target) {
            target = a;
            continue;
        } else {
            fprintf(stderr, "p2p token: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p token: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    if (rotate && (join || role || name || replace || uses || ttl)) {
        fprintf(stderr, "p2p token rotate-key: takes only --drop-old and credentials (see --help)\n");
        return 2;
    }
    if (role && strcmp(role, "admin") != 0 && strcmp(role, "viewer") != 0) {
        fprintf(stderr, "p2p token: --role must be admin or viewer\n");
        return 2;
    }
    if (name && (sub || !*name || strlen(name) > 64 || strpbrk(name, "\t\r\n"))) {
        fprintf(stderr, sub ? "p2p token: --name goes with getting a token, not with %s\n"
                            : "p2p token: --name must be 1..64 bytes without control characters%s\n",
                sub ? sub : "");
        return 2;
    }
    if (replace && (!join || !sub || strcmp(sub, "create") != 0)) {
        fprintf(stderr, "p2p token: --replace goes with 'create --join' (see --help)\n");
        return 2;
    }
    if (replace && !pki_node_id_valid(replace)) {
        fprintf(stderr, "p2p token: --replace: '%s' is not a node id (1..%d characters of A-Z a-z 0-9 . _ -)\n", replace,
                PKI_MAX_NODE_ID);
        return 2;
    }
    if (replace && uses > 1) {
        fprintf(stderr, "p2p token: a replacement join token (--replace) has one use: drop --uses\n");
        return 2;
    }
    if (join && !sub) {
        fprintf(stderr, "p2p token: --join goes with create, list or revoke (see --help)\n");
        return 2;
    }
    if (sub && !revoke && !join) {
        fprintf(stderr, "p2p token %s: only join tokens: add --join (see --help)\n", sub);
        return 2;
    }
    if (revoke && !target) {
        fprintf(stderr, "p2p token revoke: which token? (see --help)\n");
        return 2;
    }
    char *ca_file = NULL;
    if (insecure)
        fprintf(stderr, "p2p token: WARNING: --insecure: the node's certificate is not verified\n");
    else if (!(ca_file = p2p__cli_find_ca(ca, data_dir))) {
        fprintf(stderr, "p2p token: no CA certificate found; pass --ca FILE or --data-dir DIR\n");
        return 2;
    }
    int rc = 1, status = 0;
    json_t *body = NULL, *resp = NULL;
    char *secret = NULL;
    if (rotate) {
        int st = bearer_for(addr, ca_file, insecure, token_arg, token_file, key_file, data_dir, pw_file, &secret);
        if (st == 0)
            rc = rotate_command(addr, ca_file, insecure, secret, drop_old);
        else
            rc = st;
        p2p__password_free(secret);
        free(ca_file);
        return rc;
    }
    if (join) {
        int st = bearer_for(addr, ca_file, insecure, token_arg, token_file, key_file, data_dir, pw_file, &secret);
        if (st == 0)
            rc = join_command(sub, addr, ca_file, insecure, secret, ttl, uses, replace, target);
        else
            rc = st;
        p2p__password_free(secret);
        free(ca_file);
        return rc;
    }
    if (revoke) {
        int st = 0;
        if (token_file)
            st = p2p__password_get("p2p token", token_file, "--token-file", "P2P_TOKEN", "token", 0, &secret);
        else if (token_arg)
            secret = p2p__xstrdup(token_arg);
        else if (getenv("P2P_TOKEN") && *getenv("P2P_TOKEN"))
            secret = p2p__xstrdup(getenv("P2P_TOKEN"));
        else {
            fprintf(stderr, "p2p token revoke: needs an admin token: --token, --token-file or $P2P_TOKEN\n");
            st = 2;
        }
        if (st != 0) {
            free(ca_file);
            return st;
        }
        body = json_pack("{s:s}", "token", target);
        if (post_json(addr, ca_file, insecure, "/auth/revoke", body, secret, &resp, &status) == 0) {
            if (status == 200) {
                json_t *tot = json_object_get(resp, "nodes_total"), *ok = json_object_get(resp, "nodes_confirmed");
                json_t *coord = json_object_get(resp, "coordinator");
                if (json_is_integer(tot) && json_is_integer(ok))
                    fprintf(stderr, "p2p token: revoked; %lld of %lld nodes have it%s\n",
                            (long long)json_integer_value(ok), (long long)json_integer_value(tot),
                            json_integer_value(ok) < json_integer_value(tot)
                                ? " (the others get it from the coordinator as soon as they reach it)"
                                : "");
                else
                    fprintf(stderr, "p2p token: revoked\n");
                if (json_is_string(coord))
                    fprintf(stderr, "p2p token: coordinator %s\n", json_string_value(coord));
                rc = 0;
            } else {
                json_t *e = json_object_get(resp, "error");
                fprintf(stderr, "p2p token: HTTP %d: %s\n", status, json_is_string(e) ? json_string_value(e) : "");
            }
        }
    } else {
        int st = admin_key(key_file, data_dir, pw_file, &secret);
        if (st != 0) {
            free(ca_file);
            return st;
        }
        body = json_pack("{s:s}", "api_key", secret);
        if (role)
            json_object_set_new(body, "role", json_string(role));
        if (ttl)
            json_object_set_new(body, "ttl", json_integer(ttl));
        if (name && json_object_set_new(body, "name", json_string(name)) != 0) {
            fprintf(stderr, "p2p token: --name must be valid UTF-8\n");
            json_decref(body);
            p2p__password_free(secret);
            free(ca_file);
            return 2;
        }
        if (post_json(addr, ca_file, insecure, "/auth/token", body, NULL, &resp, &status) == 0) {
            json_t *t = json_object_get(resp, "token");
            if (status == 200 && json_is_string(t)) {
                printf("%s\n", json_string_value(t));
                rc = 0;
            } else {
                json_t *e = json_object_get(resp, "error");
                fprintf(stderr, "p2p token: HTTP %d: %s\n", status, json_is_string(e) ? json_string_value(e) : "");
            }
        }
    }
    if (body) {
        json_t *k = json_object_get(body, "api_key");
        if (k)
            json_string_set(k, "");
    }
    json_decref(body);
    json_decref(resp);
    p2p__password_free(secret);
    free(ca_file);
    return rc;
}
