/*
 * fuzz_jsonrpc.c — libFuzzer target for the JSON-RPC request decoder and
 * executor: arbitrary bytes must produce either a well-formed response or none,
 * never a crash, a leak or undefined behaviour.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "rpc/jsonrpc.h"

static void m_echo(p2p_call *call, json_t *params, void *udata)
{
    (void)udata;
    p2p_call_reply(call, params ? json_incref(params) : NULL);
}

static void m_fail(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    (void)udata;
    p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "no", NULL);
}

static void on_done(json_t *response, void *arg)
{
    int *answered = arg;
    *answered = 1;
    if (response) {
        assert(json_is_object(response) || json_is_array(response));
        char *s = json_dumps(response, JSON_COMPACT);
        assert(s);
        free(s);
    }
    json_decref(response);
}

static p2p_ctx *fuzz_ctx(void)
{
    /* The harness keeps one context for the whole run (the node has no globals;
     * this is the fuzzer's own). */
    static p2p_ctx *ctx;
    static uv_loop_t loop;
    if (ctx)
        return ctx;
    p2p_config cfg;
    p2p_config_defaults(&cfg, 1);
    char *err = NULL;
    if (p2p_config_finalize(&cfg, &err) != 0)
        abort();
    uv_loop_init(&loop);
    ctx = p2p__ctx_new(&cfg, &loop);
    ctx->log_level = P2P_LOG_ERROR;
    p2p_service_desc sd = {"t", "1", "", 0};
    p2p_service_register(ctx, &sd);
    p2p_method_desc a = {"echo", "", "", 0, m_echo, NULL}, b = {"fail", "", "", 0, m_fail, NULL};
    p2p_method_register(ctx, "t", &a);
    p2p_method_register(ctx, "t", &b);
    return ctx;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    p2p_ctx *ctx = fuzz_ctx();
    jsonrpc_msg msg;
    jsonrpc_decode((const char *)data, size, &msg);
    int answered = 0;
    jsonrpc_execute(ctx, &msg, on_done, &answered);
    assert(answered); /* every method here completes synchronously */
    return 0;
}
