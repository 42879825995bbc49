/*
 * orchestrator.h — rollouts of a package across nodes, on the coordinator
 * (deploy/rollout_*; see orchestrator.c).
 */
#ifndef P2P_DEPLOY_ORCHESTRATOR_H
#define P2P_DEPLOY_ORCHESTRATOR_H

#include "core/ctx.h"

/* Adds the "orchestrator" component (active on the coordinator only). */
int p2p__orchestrator_register(p2p_ctx *ctx);

/* Reads a rollouts.json document as the coordinator does at start (tests,
 * fuzz_rollouts): the number of rollouts read back, or -1 when it is not a
 * JSON object. Aborts if one read back does not write and read again the same. */
int p2p__orch_state_check(const char *data, size_t len);

#endif
