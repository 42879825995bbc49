/*
 * vault_cmd.h — `p2p vault`: the operator's command for a node's encrypted vault
 * (init, list, get, put, rm, passwd, export). Exit status: 0 success, 1 runtime
 * failure, 2 usage error, wrong password or a corrupted/foreign vault file.
 */
#ifndef P2P_CLI_VAULT_CMD_H
#define P2P_CLI_VAULT_CMD_H

int p2p__cmd_vault(int argc, char **argv);

#endif
