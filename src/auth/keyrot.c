/*
 * keyrot.c — auth/rotate_signing_key: the coordinator replaces its token
 * signing key on an operator's request (`p2p token rotate-key`).
 *
 * The new ECDSA P-256 key is made on the thread pool (key generation never runs
 * on the loop thread), then auth/guard.c saves it to the vault as the signing
 * key with the new public key set, and only then signs with it. The old public
 * key stays in the set, retired at the latest expiry of a token it signed (plus
 * the verifier's leeway), so those tokens keep working until they expire; every
 * node then prunes it. With {"drop_old": true} the old key goes at once and
 * every token it signed is refused (a key that leaked). Workers learn the new
 * set from the tag the coordinator publishes in its membership record
 * (auth/revsync.c), from renewal answers, and on an unknown key id.
 *
 * Admin-only (P2P_METHOD_ADMIN): a node identity, a service's own call or a
 * viewer cannot rotate. Registered on the coordinator only (it alone signs).
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth/keyrot.h"

#include "auth/guard.h"
#include "auth/jwt.h"
#include "core/util.h"
#include "p2p/p2p.h"

typedef struct keygen_job {
    uv_work_t w;
    p2p_ctx *ctx;
    p2p_call *call;
    int drop_old;
    char *pem; /* the new private key */
    int rc;
} keygen_job;

static void keygen_work(uv_work_t *w)
{
    keygen_job *j = w->data;
    j->rc = p2p_jwt_keygen(&j->pem);
    OPENSSL_thread_stop(); /* this pool thread's OpenSSL state (see vault.c open_work) */
}

static void on_rotated(int status, json_t *info, const char *err, void *arg)
{
    p2p_call *call = arg;
    if (status == 0)
        p2p_call_reply(call, json_incref(info));
    else
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, err ? err : "the rotation failed", NULL);
}

static void keygen_done(uv_work_t *w, int status)
{
    keygen_job *j = w->data;
    p2p_guard *g = p2p__guard(j->ctx);
    if (status != 0 || j->rc != 0 || !j->pem || !g) {
        p2p_jwt_pem_free(j->pem);
        p2p_call_error(j->call, P2P_RPC_INTERNAL_ERROR, "cannot make a new signing key", NULL);
        free(j);
        return;
    }
    const char *why = NULL;
    int r = p2p__guard_rotate(g, j->pem, j->drop_old, on_rotated, j->call, &why); /* takes the key */
    if (r != 0)
        p2p_call_error(j->call, r == -EBUSY || r == -ENOSPC ? P2P_RPC_INVALID_REQUEST : P2P_RPC_INTERNAL_ERROR,
                       why ? why : p2p_strerror(r), NULL);
    free(j);
}

static void m_rotate(p2p_call *call, json_t *params, void *udata)
{
    p2p_ctx *ctx = udata;
    json_t *drop = json_object_get(params, "drop_old");
    if ((params && !json_is_object(params) && !(json_is_array(params) && json_array_size(params) == 0)) ||
        (drop && !json_is_boolean(drop)) || (json_is_object(params) && json_object_size(params) > (drop ? 1u : 0u))) {
        p2p_call_error(call, P2P_RPC_INVALID_PARAMS, "Invalid params: expected {drop_old?: boolean}", NULL);
        return;
    }
    keygen_job *j = p2p__xcalloc(1, sizeof(*j));
    j->w.data = j;
    j->ctx = ctx;
    j->call = call;
    j->drop_old = json_is_true(drop);
    int r = uv_queue_work(ctx->loop, &j->w, keygen_work, keygen_done);
    if (r != 0) {
        free(j);
        p2p_call_error(call, P2P_RPC_INTERNAL_ERROR, "cannot queue the key generation", NULL);
    }
}

static const p2p_method_desc rotate_method = {
    "rotate_signing_key",
    "Replaces the token signing key (coordinator). The old public key keeps verifying the tokens it signed until "
    "they expire, then every node drops it; with drop_old it goes at once and its tokens are refused.",
    "{drop_old?: boolean}",
    P2P_METHOD_ADMIN,
    m_rotate,
    NULL,
};

int p2p__keyrot_register_method(p2p_ctx *ctx)
{
    p2p_guard *g = p2p__guard(ctx);
    if (!g || !p2p__guard_can_sign(g))
        return 0; /* workers cannot sign, so there is nothing to rotate */
    static const p2p_service_desc desc = {"auth", P2P_VERSION, "Cluster membership credentials (coordinator)", 1};
    int r = p2p_service_register(ctx, &desc);
    if (r == -EEXIST)
        r = 0;
    p2p_method_desc d = rotate_method;
    d.udata = ctx;
    if (r == 0)
        r = p2p_method_register(ctx, "auth", &d);
    return r == -EEXIST ? 0 : r;
}
