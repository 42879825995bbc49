/*
 * main.c — the `p2p` command: dispatches to its sub-commands.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/vault_cmd.h"
#include "p2p/p2p.h"
#include "services/exec.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: p2p <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  agent     run a node (coordinator or worker)\n"
                 "  certs     the cluster's node certificates (list, show, renew) and its CA (export-ca)\n"
                 "  call      call a JSON-RPC method on a node (or, with --node, on any node) and print the result\n"
                 "  deploy    upload a signed package and install it on a node (health-gated, reverts by itself)\n"
                 "            or roll it out across nodes (--target all|all:ROLE|NODE,NODE...)\n"
                 "  rollout   status, promote or revert a rollout\n"
                 "  logs      the cluster's log lines from the coordinator, in time order; -f follows\n"
                 "  members   list the cluster's nodes: address, role, status, services, last seen\n"
                 "  package   build, inspect and sign service packages (signed .tar.zst files)\n"
                 "  services  list a node's (or the cluster's) pluggable services; start, stop, restart, reload\n"
                 "  token     get a bearer token (JWT) from a node, or revoke one\n"
                 "  vault     read and change the node's encrypted vault\n"
                 "  version   print the version\n"
                 "  help      show this help\n"
                 "\n"
                 "Run 'p2p <command> --help' for the options of a command. Client commands take the\n"
                 "node, its CA and a token from $P2P_ADDR, $P2P_CA (or $P2P_DATA_DIR) and $P2P_TOKEN.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    /* not a command: how a node starts an exec service's process (exec.h) */
    if (strcmp(cmd, P2P_EXEC_TRAMPOLINE_ARG) == 0)
        return p2p__exec_trampoline_main(argc, argv);
    if (strcmp(cmd, "agent") == 0)
        return p2p__cmd_agent(argc - 1, argv + 1);
    if (strcmp(cmd, "call") == 0)
        return p2p__cmd_call(argc - 1, argv + 1);
    if (strcmp(cmd, "certs") == 0)
        return p2p__cmd_certs(argc - 1, argv + 1);
    if (strcmp(cmd, "services") == 0)
        return p2p__cmd_services(argc - 1, argv + 1);
    if (strcmp(cmd, "logs") == 0)
        return p2p__cmd_logs(argc - 1, argv + 1);
    if (strcmp(cmd, "deploy") == 0)
        return p2p__cmd_deploy(argc - 1, argv + 1);
    if (strcmp(cmd, "rollout") == 0)
        return p2p__cmd_rollout(argc - 1, argv + 1);
    if (strcmp(cmd, "package") == 0)
        return p2p__cmd_package(argc - 1, argv + 1);
    if (strcmp(cmd, "members") == 0)
        return p2p__cmd_members(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return p2p__cmd_token(argc - 1, argv + 1);
    if (strcmp(cmd, "vault") == 0)
        return p2p__cmd_vault(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("p2p %s (plugin API %d.%d)\n", P2P_VERSION, P2P_API_VERSION_MAJOR, P2P_API_VERSION_MINOR);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "p2p: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
