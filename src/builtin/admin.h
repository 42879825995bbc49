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

#endif
