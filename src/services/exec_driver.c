/*
 * exec_driver.c — the driver for exec services (programs in any language
 * speaking newline-delimited JSON-RPC over stdin/stdout). Until the process
 * supervisor lands, an exec manifest is refused at load with that reason.
 */
#include <errno.h>

#include "services/internal.h"

static void exec_load(p2p_svc *inst, svc_done_fn done)
{
    done(inst, -ENOSYS, "exec services are not supported by this build yet");
}

static void exec_start(p2p_svc *inst, svc_done_fn done)
{
    done(inst, -ENOSYS, "not supported");
}

static void exec_call(p2p_svc *inst, p2p_call *call, const char *method, json_t *params)
{
    (void)inst;
    (void)method;
    (void)params;
    p2p_call_error(call, P2P_RPC_E_SERVICE_DOWN, "exec services are not supported by this build yet", NULL);
}

static void exec_stop(p2p_svc *inst, svc_done_fn done)
{
    done(inst, 0, NULL);
}

static void exec_destroy(p2p_svc *inst)
{
    (void)inst;
}

const svc_driver p2p__svc_exec_driver = {
    .name = "exec",
    .load = exec_load,
    .start = exec_start,
    .call = exec_call,
    .stop = exec_stop,
    .destroy = exec_destroy,
};
