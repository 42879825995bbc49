/*
 * hello.c — an example native service (docs/services.md walks through it).
 *
 * It shows each part of the host API once:
 *   greet      settings ("greeting"), a custom counter metric;
 *   count      persisted state (survives reloads and restarts);
 *   info       a timer's ticks (a gauge), the version that answers;
 *   slow       an answer given later from a timer (calls in flight finish on
 *              the version that took them, even across a reload);
 *   ping_node  a remote call to another node, answered from its callback.
 * Build: `make` builds it to build/services/hello/ (service.so + manifest.json).
 * HELLO_VERSION and HELLO_NAME may be defined at build time to make other versions
 * for tests (HELLO_NAME=NULL: a module that may be installed under any name).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <p2p/service.h>

#ifndef HELLO_NAME
#define HELLO_NAME "hello"
#endif
#ifndef HELLO_VERSION
#define HELLO_VERSION "1.0.0"
#endif

typedef struct hello {
    p2p_svc *svc;
    int64_t ticks;
    int64_t timer;
} hello;

static void greet(p2p_call *call, json_t *params, void *udata)
{
    hello *h = udata;
    const char *who = json_string_value(json_object_get(params, "name"));
    const char *greeting = json_string_value(json_object_get(p2p_svc_settings(h->svc), "greeting"));
    p2p_svc_counter_add(h->svc, "greetings", 1);
    json_t *msg = json_sprintf("%s, %s!", greeting ? greeting : "Hello", who ? who : "world");
    p2p_call_reply(call, json_pack("{s:o, s:s}", "message", msg, "version", HELLO_VERSION));
}

static void count(p2p_call *call, json_t *params, void *udata)
{
    hello *h = udata;
    json_t *by = json_object_get(params, "by");
    if (by && !json_is_integer(by)) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "by must be an integer", NULL);
        return;
    }
    json_t *state = json_deep_copy(p2p_svc_state(h->svc));
    json_int_t n = json_integer_value(json_object_get(state, "count")) + (by ? json_integer_value(by) : 1);
    json_object_set_new(state, "count", json_integer(n));
    int r = p2p_svc_state_save(h->svc, state);
    json_decref(state);
    if (r != 0) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "cannot save the state", NULL);
        return;
    }
    p2p_call_reply(call, json_pack("{s:I, s:s}", "count", n, "version", HELLO_VERSION));
}

static void info(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    hello *h = udata;
    p2p_call_reply(call, json_pack("{s:s, s:I, s:O}", "version", HELLO_VERSION, "ticks", (json_int_t)h->ticks, "state",
                                   p2p_svc_state(h->svc)));
}

typedef struct later {
    p2p_call *call;
} later;

static void answer_later(p2p_svc *svc, void *udata)
{
    (void)svc;
    later *l = udata;
    p2p_call_reply(l->call, json_pack("{s:s}", "version", HELLO_VERSION));
    free(l);
}

static void slow(p2p_call *call, json_t *params, void *udata)
{
    hello *h = udata;
    json_int_t ms = json_integer_value(json_object_get(params, "ms"));
    if (ms < 0 || ms > 60000) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "ms must be 0..60000", NULL);
        return;
    }
    later *l = malloc(sizeof(*l));
    l->call = call;
    if (p2p_svc_timer(h->svc, (uint64_t)ms, 0, answer_later, l) < 0) {
        free(l);
        p2p_call_error(call, P2P_RPC_E_SERVICE_DOWN, "stopping", NULL);
    }
}

static void pinged(p2p_ctx *ctx, json_t *results, void *udata)
{
    (void)ctx;
    p2p_call *call = udata;
    json_t *err = json_object_get(results, "error");
    if (err) {
        p2p_call_error(call, (int)json_integer_value(json_object_get(err, "code")),
                       json_string_value(json_object_get(err, "message")), NULL);
        return;
    }
    p2p_call_reply(call, json_pack("{s:O, s:O}", "node_id", json_object_get(results, "node_id"), "result",
                                   json_object_get(results, "result")));
}

static void ping_node(p2p_call *call, json_t *params, void *udata)
{
    hello *h = udata;
    const char *target = json_string_value(json_object_get(params, "target"));
    if (!target) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "target (a node id or role:NAME) is required", NULL);
        return;
    }
    json_t *p = json_pack("{s:s}", "message", "hello from a service");
    int r = p2p_call_remote(p2p_svc_ctx(h->svc), target, "system/ping", p, 5000, pinged, call);
    json_decref(p);
    if (r != 0)
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "bad target", NULL);
}

static void tick(p2p_svc *svc, void *udata)
{
    hello *h = udata;
    h->ticks++;
    p2p_svc_gauge_set(svc, "ticks", (double)h->ticks);
}

static int init(p2p_svc *svc, void **state)
{
    hello *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->svc = svc;
    *state = h;
    p2p_svc_method(svc, "greet", greet, h);
    p2p_svc_method(svc, "count", count, h);
    p2p_svc_method(svc, "info", info, h);
    p2p_svc_method(svc, "slow", slow, h);
    p2p_svc_method(svc, "ping_node", ping_node, h);
    return 0;
}

static int start(p2p_svc *svc, void *state)
{
    hello *h = state;
    h->timer = p2p_svc_timer(svc, 1000, 1000, tick, h);
    p2p_svc_log(svc, P2P_LOG_INFO, "hello %s started; count is %lld", HELLO_VERSION,
                (long long)json_integer_value(json_object_get(p2p_svc_state(svc), "count")));
    return h->timer > 0 ? 0 : (int)h->timer;
}

static void stop(p2p_svc *svc, void *state)
{
    hello *h = state;
    p2p_svc_timer_stop(svc, h->timer);
}

static void cleanup(p2p_svc *svc, void *state)
{
    (void)svc;
    free(state);
}

P2P_SERVICE_MODULE(.name = HELLO_NAME, .version = HELLO_VERSION, .init = init, .start = start, .stop = stop,
                   .cleanup = cleanup);
