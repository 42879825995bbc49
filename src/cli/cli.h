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

#endif
