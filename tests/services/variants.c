/*
 * variants.c — broken native modules for the refusal tests, one per define:
 *   VARIANT_ABI2       a descriptor for service ABI 2.0
 *   VARIANT_NODESC     no descriptor at all
 *   VARIANT_MISSING    uses a host function that does not exist
 *   VARIANT_INITFAIL   init returns -EIO
 *   VARIANT_STARTFAIL  start returns -EIO
 *   VARIANT_WRONGNAME  a descriptor whose name differs from the manifest's
 * SVC_NAME is the manifest's name. Each serves "ok" when it loads at all.
 */
#include <errno.h>

#include <p2p/service.h>

static void ok(p2p_call *call, json_t *params, void *udata)
{
    (void)params;
    (void)udata;
    p2p_call_reply(call, json_string("ok"));
}

#ifdef VARIANT_MISSING
extern int p2p_svc_no_such_function(p2p_svc *svc);
#endif

static int init(p2p_svc *svc, void **state)
{
    (void)state;
#ifdef VARIANT_MISSING
    if (p2p_svc_no_such_function(svc))
        return -EIO;
#endif
#ifdef VARIANT_INITFAIL
    return -EIO;
#endif
    return p2p_svc_method(svc, "ok", ok, NULL);
}

static int start(p2p_svc *svc, void *state)
{
    (void)svc;
    (void)state;
#ifdef VARIANT_STARTFAIL
    return -EIO;
#endif
    return 0;
}

#if defined(VARIANT_ABI2)
P2P_EXTERN const p2p_svc_module p2p_service_module = {
    .abi_major = 2, .abi_minor = 0, .name = SVC_NAME, .version = "1.0.0", .init = init, .start = start};
#elif defined(VARIANT_WRONGNAME)
P2P_SERVICE_MODULE(.name = "somebody-else", .version = "1.0.0", .init = init, .start = start);
#elif !defined(VARIANT_NODESC)
P2P_SERVICE_MODULE(.name = SVC_NAME, .version = "1.0.0", .init = init, .start = start);
#else
/* the hooks exist, exported under another name: only the descriptor is missing */
P2P_EXTERN int (*const p2p_not_a_descriptor_init)(p2p_svc *, void **) = init;
P2P_EXTERN int (*const p2p_not_a_descriptor_start)(p2p_svc *, void *) = start;
#endif
