/*
 * hello.c — an example native service (docs/services.md walks through it).
 *
 * It shows each part of the host API once:
 *   greet      settings ("greeting"), a custom counter metric;
 *   count      persisted state (survives reloads and restarts);
 *   info       a timer's ticks (a gauge), the version that answers;
 *   slow       an answer given later from a timer (calls in flight finish on
 *              the version that took them, even across a reload);
 *   ping_node  a remote call to another node, answered from its callback;
 *   lookup     the cache: a value computed on the thread pool the first time
 *              (one computation however many callers ask at once), then served
 *              from the cache (L1 in the node, Redis when the node has one).
 *   GET  /services/hello/greeting   an HTTP route (text; viewers may call it);
 *   POST /services/hello/echo       an HTTP route that changes nothing but is
 *              not marked read-only, so viewers get 403 (the body comes back).
 * Build: `make` builds it to build/services/hello/ (service.so + manifest.json).
 * HELLO_VERSION and HELLO_NAME may be defined at build time to make other versions
 * for tests (HELLO_NAME=NULL: a module that may be installed under any name;
 * HELLO_CRITICAL: one that reports critical health once started).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    int64_t loads; /* values computed by the lookup loader */
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
    p2p_call_reply(call, json_pack("{s:s, s:I, s:I, s:O}", "version", HELLO_VERSION, "ticks", (json_int_t)h->ticks,
                                   "loads", (json_int_t)h->loads, "state", p2p_svc_state(h->svc)));
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

/* lookup: the loader runs "expensive" work on the thread pool */
typedef struct load_job {
    hello *h;
    p2p_svc_cache_fill *fill;
    char key[128];
    char value[256];
    unsigned work_ms; /* how long the "expensive" computation takes */
} load_job;

static void compute(void *udata) /* thread pool: touches nothing of the node */
{
    load_job *j = udata;
    if (j->work_ms)
        usleep(j->work_ms * 1000u);
    unsigned long sum = 0;
    for (const char *p = j->key; *p; p++)
        sum = sum * 31 + (unsigned char)*p;
    snprintf(j->value, sizeof j->value, "\"computed %s: %lu\"", j->key, sum);
}

static void computed(p2p_svc *svc, void *udata, int status)
{
    (void)svc;
    load_job *j = udata;
    if (status == 0) {
        j->h->loads++;
        p2p_svc_cache_fill_done(j->fill, j->value, strlen(j->value), 30000);
    } else {
        p2p_svc_cache_fill_fail(j->fill, status);
    }
    free(j);
}

static void loader(p2p_svc *svc, const char *key, p2p_svc_cache_fill *fill, void *udata)
{
    load_job *j = calloc(1, sizeof(*j));
    if (!j) {
        p2p_svc_cache_fill_fail(fill, -ENOMEM);
        return;
    }
    j->h = udata;
    /* how long the "expensive" computation takes: a setting, to show that
     * concurrent callers share one computation */
    j->work_ms = (unsigned)json_integer_value(json_object_get(p2p_svc_settings(svc), "lookup_work_ms"));
    if (j->work_ms > 5000)
        j->work_ms = 5000;
    j->fill = fill;
    snprintf(j->key, sizeof j->key, "%s", key);
    if (p2p_svc_work(svc, compute, computed, j) != 0) {
        p2p_svc_cache_fill_fail(fill, -ECANCELED);
        free(j);
    }
}

static void looked_up(p2p_svc *svc, int status, const void *value, size_t len, void *udata)
{
    p2p_call *call = udata;
    (void)svc;
    if (status != 0) {
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "lookup failed", NULL);
        return;
    }
    json_t *v = json_loadb(value, len, JSON_DECODE_ANY, NULL);
    p2p_call_reply(call, json_pack("{s:o}", "value", v ? v : json_null()));
}

static void lookup(p2p_call *call, json_t *params, void *udata)
{
    hello *h = udata;
    const char *key = json_string_value(json_object_get(params, "key"));
    if (!key || !*key || strlen(key) > 100) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "key must be a string of 1..100 bytes", NULL);
        return;
    }
    int r = p2p_svc_cache_get_or_load(h->svc, key, loader, h, looked_up, call);
    if (r != 0)
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "the cache refused the lookup", NULL);
}

static void tick(p2p_svc *svc, void *udata)
{
    hello *h = udata;
    h->ticks++;
    p2p_svc_gauge_set(svc, "ticks", (double)h->ticks);
}

/* GET /services/hello/greeting[?name=NAME]: plain text, with the version that answers. */
static void greeting_route(p2p_svc *svc, p2p_svc_request *req, void *udata)
{
    hello *h = udata;
    const char *greeting = json_string_value(json_object_get(p2p_svc_settings(svc), "greeting"));
    const char *q = p2p_svc_req_query(req);
    char who[64] = "world";
    if (strncmp(q, "name=", 5) == 0) {
        size_t n = strcspn(q + 5, "&");
        if (n > 0 && n < sizeof who) {
            memcpy(who, q + 5, n);
            who[n] = '\0';
        }
    }
    p2p_svc_counter_add(h->svc, "greetings", 1);
    char text[160];
    int n = snprintf(text, sizeof text, "%s, %s! (hello %s)\n", greeting ? greeting : "Hello", who, HELLO_VERSION);
    p2p_svc_respond(req, 200, "text/plain; charset=utf-8", text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

/* POST /services/hello/echo: the body back, with its content type. */
static void echo_route(p2p_svc *svc, p2p_svc_request *req, void *udata)
{
    (void)svc;
    (void)udata;
    size_t len;
    const char *body = p2p_svc_req_body(req, &len);
    const char *ctype = p2p_svc_req_header(req, "Content-Type");
    p2p_svc_respond(req, 200, ctype ? ctype : "application/octet-stream", body, len);
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
    p2p_svc_method(svc, "lookup", lookup, h);
    p2p_svc_route(svc, "GET", "greeting", P2P_ROUTE_READONLY, greeting_route, h); /* ABI 1.1 */
    p2p_svc_route(svc, "POST", "echo", 0, echo_route, h);
    return 0;
}

static int start(p2p_svc *svc, void *state)
{
    hello *h = state;
    h->timer = p2p_svc_timer(svc, 1000, 1000, tick, h);
    p2p_svc_log(svc, P2P_LOG_INFO, "hello %s started; count is %lld", HELLO_VERSION,
                (long long)json_integer_value(json_object_get(p2p_svc_state(svc), "count")));
#ifdef HELLO_CRITICAL /* a test build: a version that starts but is not healthy (deploy reverts it) */
    p2p_svc_health(svc, P2P_HEALTH_CRITICAL, "built to report critical health");
#endif
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
