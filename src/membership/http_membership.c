/*
 * http_membership.c — the membership component's routes: GET /cluster/nodes
 * (the member list, for operators and nodes) and the push-pull exchange
 * POST /internal/gossip/exchange and /internal/gossip/join (node certificates
 * only: the peer's node id comes from its certificate, never from the body).
 */
#include "auth/ratelimit.h"
#include "http/routes.h"
#include "membership/node.h"

static void cluster_nodes(p2p_http_req *hr)
{
    json_t *out = p2p__membership_nodes_json(hr->ctx);
    p2p__http_send_json(hr->req, 200, "OK", out);
    json_decref(out);
}

static void gossip_exchange(p2p_http_req *hr)
{
    h2o_req_t *req = hr->req;
    const char *why = NULL;
    json_t *out = p2p__membership_exchange(hr->ctx, req->entity.base ? req->entity.base : "", req->entity.len,
                                           p2p__http_peer_node(hr->ctx, req), &why);
    if (!out) {
        p2p__http_send_error(req, 400, "Bad Request", why);
        return;
    }
    p2p__http_send_json(req, 200, "OK", out);
    json_decref(out);
}

int p2p__membership_http_start(p2p_ctx *ctx)
{
    static const p2p_http_route_desc routes[] = {
        {"GET", "/cluster/nodes", P2P_HTTP_EXACT, P2P_HTTP_ANY, P2P_RL_OTHER, "membership", cluster_nodes, NULL},
        {"POST", "/internal/gossip/exchange", P2P_HTTP_EXACT, P2P_HTTP_NODE, P2P_RL_OTHER, "membership",
         gossip_exchange, NULL},
        {"POST", "/internal/gossip/join", P2P_HTTP_EXACT, P2P_HTTP_NODE, P2P_RL_OTHER, "membership",
         gossip_exchange, NULL},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r = p2p__http_route_add(ctx, &routes[i]);
        if (r != 0) {
            p2p__http_routes_remove_owner(ctx, "membership");
            return r;
        }
    }
    return 0;
}

void p2p__membership_http_stop(p2p_ctx *ctx)
{
    p2p__http_routes_remove_owner(ctx, "membership");
}
