/*
 * updater.h — update_manager: deploy/install on every node (see updater.c).
 */
#ifndef P2P_DEPLOY_UPDATER_H
#define P2P_DEPLOY_UPDATER_H

#include "core/ctx.h"

/* Adds the "update_manager" component (after "deploy", "services", "membership"). */
int p2p__updater_register(p2p_ctx *ctx);

#endif
