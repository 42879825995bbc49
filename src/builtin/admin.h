/*
 * admin.h — the built-in `admin` service: processes, config, files under
 * <state_directory>/files/ and allow-listed commands, for admin tokens only
 * (see admin.c).
 */
#ifndef P2P_BUILTIN_ADMIN_H
#define P2P_BUILTIN_ADMIN_H

#include "core/ctx.h"

/* Adds the "admin" component, which loads admin_commands_file and registers
 * the service and its methods. */
int p2p__admin_register(p2p_ctx *ctx);

/* Parses an admin_commands_file document as the component does at start:
 * 0 with *n_out commands, or -EINVAL with *err (heap, names the command and
 * what is wrong). For tests and the fuzz target. */
int p2p__admin_check_commands(const char *text, size_t len, size_t *n_out, char **err);

/* Checks a path for admin/read_file and write_file (relative, no empty, "." or
 * ".." component, at most 1024 bytes and 32 components): the number of
 * components, or -1 with *why (a static string). Symlinks are refused later,
 * when the path is opened. */
int p2p__admin_path_check(const char *path, const char **why);

#endif
