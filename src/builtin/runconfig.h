/*
 * runconfig.h — system/get_config and system/update_config (see runconfig.c).
 */
#ifndef P2P_BUILTIN_RUNCONFIG_H
#define P2P_BUILTIN_RUNCONFIG_H
#include <jansson.h>

#include "core/ctx.h"

/* Method handlers of the system service. */
void p2p__runconfig_get(p2p_call *call, json_t *params, void *udata);
void p2p__runconfig_update(p2p_call *call, json_t *params, void *udata);

/* At start, after the vault is open: applies the overrides stored by
 * update_config over the file and flags (logging each). Returns 0, or an error
 * with *err naming the key and the remedy when one cannot apply (nothing is
 * applied then; the agent exits with status 2). */
int p2p__runconfig_apply_stored(p2p_ctx *ctx, char **err);
#endif
