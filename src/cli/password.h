/*
 * password.h — reading passwords and other operator secrets for the CLI.
 */
#ifndef P2P_CLI_PASSWORD_H
#define P2P_CLI_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

/* Reads at most `max` bytes of `fd` into a wiped-on-free buffer (vault_secret_free(buf, len + 1)). */
int p2p__read_all_secret(int fd, size_t max, uint8_t **out, size_t *out_len);

/* A secret from `file` (first line; refused when group/others can read it), else the
 * environment variable `env`, else the terminal (twice when `confirm`). `prog` prefixes
 * messages, `file_flag` names the option in them. Returns 0 or an exit status (2). */
int p2p__password_get(const char *prog, const char *file, const char *file_flag, const char *env, const char *what,
                      int confirm, char **out);

/* Wipes and frees a secret from p2p__password_get(). */
void p2p__password_free(char *pw);

#endif
