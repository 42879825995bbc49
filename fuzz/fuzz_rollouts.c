/*
 * fuzz_rollouts.c — libFuzzer target for the orchestrator's state file
 * (<state_directory>/rollouts.json, read back at a coordinator's start).
 *
 * Any bytes must either be refused (not a JSON object) or read into rollouts
 * that write and read again the same (p2p__orch_state_check aborts otherwise);
 * nothing may crash or leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "deploy/orchestrator.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = p2p__orch_state_check((const char *)data, size);
    (void)n;
    return 0;
}
