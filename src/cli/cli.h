/*
 * cli.h — sub-commands of the `p2p` binary.
 * Exit status: 0 success, 1 runtime failure (or an RPC error), 2 usage or config error.
 */
#ifndef P2P_CLI_H
#define P2P_CLI_H

int p2p__cmd_agent(int argc, char **argv);
int p2p__cmd_call(int argc, char **argv);
int p2p__cmd_members(int argc, char **argv);
int p2p__cmd_token(int argc, char **argv);

/* The CA file to trust: --ca, $P2P_CA, DIR/certs/ca.crt, or a local data directory's. */
char *p2p__cli_find_ca(const char *ca, const char *data_dir);

#include <jansson.h>

/* Where and how a client command reaches a node (flags, else $P2P_ADDR,
 * $P2P_CA / $P2P_DATA_DIR, $P2P_TOKEN). */
typedef struct p2p_cli_conn {
    const char *prog; /* for messages: "p2p call" */
    const char *addr, *ca, *data_dir, *token, *token_file;
    long timeout; /* seconds */
    int insecure;
} p2p_cli_conn;

/* A connection for `prog` with the environment's defaults: $P2P_ADDR, else
 * 127.0.0.1:8001 (the CA and token are looked up when the call is made). */
void p2p__cli_conn_init(p2p_cli_conn *c, const char *prog, long timeout_s);

/* The field a connection option fills (--addr, --ca, --data-dir, --token,
 * --token-file), or NULL when `opt` is not one: the commands share them. */
const char **p2p__cli_conn_option(p2p_cli_conn *c, const char *opt);

/* One JSON-RPC call (on `node` through the node at c->addr when node is not
 * NULL). 0 with *result (a new reference), 1 after an RPC or transport error,
 * 2 on a usage error; errors are printed to stderr. `params` is borrowed. */
int p2p__cli_rpc(const p2p_cli_conn *c, const char *node, const char *method, json_t *params, json_t **result);

/* POSTs `len` bytes of `body` to `path` on c->addr with the connection's token.
 * 0 with *result (the JSON object answered with 200), 1 on an HTTP or
 * transport error (printed), 2 on a usage error. */
int p2p__cli_post(const p2p_cli_conn *c, const char *path, const char *ctype, const void *body, size_t len,
                  json_t **result);

/* Has the coordinator at c->addr sign package `file` (deploy/sign) and writes
 * it to `out` (NULL: in place); with `pinned` (32 raw bytes) the signing key
 * must be that one. Prints the outcome. 0, 1 (refused or failed), 2 (usage). */
int p2p__cli_package_sign(const p2p_cli_conn *c, const char *file, const char *out, const unsigned char *pinned);

int p2p__cmd_services(int argc, char **argv);
int p2p__cmd_certs(int argc, char **argv);
int p2p__cmd_deploy(int argc, char **argv);
int p2p__cmd_rollout(int argc, char **argv);
/* Follows rollout `id` on the coordinator until it is over (rollout_cmd.c). */
int p2p__cli_rollout_follow(const p2p_cli_conn *c, const char *id, int raw);
int p2p__cmd_logs(int argc, char **argv);
int p2p__cmd_package(int argc, char **argv);

#endif
