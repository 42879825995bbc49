/*
 * orchestrator.h — rollouts of a package across nodes, on the coordinator
 * (deploy/rollout_*; see orchestrator.c).
 */
#ifndef P2P_DEPLOY_ORCHESTRATOR_H
#define P2P_DEPLOY_ORCHESTRATOR_H

#include "core/ctx.h"

/* Adds the "orchestrator" component (active on the coordinator only). */
int p2p__orchestrator_register(p2p_ctx *ctx);

#endif
