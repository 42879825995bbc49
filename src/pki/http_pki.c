/*
 * http_pki.c — the PKI component's routes: GET /internal/ca-cert (open: a new
 * node fetches the CA to pin before it enrolls), POST /internal/cert-request
 * (a join token in the body is the credential) and POST /internal/cert-renew
 * (a node renews with its current certificate). The work is in pki/cluster.c;
 * this file only carries bodies and answers between it and the server.
 * Rate limits: the CA certificate has one bucket for all clients (a static
 * public document, served from memory); enrollment is metered by cluster.c per
 * join token, and per address only for refused attempts (auth/ratelimit.h).
 */
#include <string.h>

#include "auth/guard.h"
#include "auth/ratelimit.h"
#include "http/routes.h"
#include "pki/cluster.h"
#include "pki/pki.h"

static void ca_cert(p2p_http_req *hr)
{
    p2p_tls_material m;
    if (p2p__pki_material(hr->ctx, &m) != 0 || !m.ca) {
        p2p__http_send_error(hr->req, 404, "Not Found", "this node has no CA certificate");
        return;
    }
    p2p__http_send(hr->req, 200, "OK", "application/x-pem-file", m.ca, strlen(m.ca));
}

static void on_pki_reply(int status, json_t *body, void *arg)
{
    h2o_req_t *req = p2p__http_later_take(arg);
    json_t *ra = status == 429 ? json_object_get(body, "retry_after") : NULL;
    if (req && json_is_integer(ra)) {
        char buf[24];
        int n = snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(ra));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                       h2o_strdup(&req->pool, buf, (size_t)n).base, (size_t)n);
    }
    if (req)
        p2p__http_send_json(req, status, p2p__http_reason(status), body);
    json_decref(body);
}

static void cert_request(p2p_http_req *hr)
{
    const p2p_identity *id = hr->caller;
    h2o_req_t *req = hr->req;
    p2p__pki_cert_request(hr->ctx, req->entity.base ? req->entity.base : "", req->entity.len, id->client_ip,
                          on_pki_reply, p2p__http_later(req));
}

static void cert_renew(p2p_http_req *hr)
{
    const p2p_identity *id = hr->caller;
    h2o_req_t *req = hr->req;
    p2p__pki_cert_renew(hr->ctx, req->entity.base ? req->entity.base : "", req->entity.len,
                        id->via_cert ? id->subject : NULL, id->client_ip, on_pki_reply, p2p__http_later(req));
}

int p2p__pki_http_start(p2p_ctx *ctx)
{
    static const p2p_http_route_desc routes[] = {
        {"GET", "/internal/ca-cert", P2P_HTTP_EXACT, P2P_HTTP_OPEN, P2P_RL_CA_CERT, "pki", ca_cert, NULL},
        {"POST", "/internal/cert-request", P2P_HTTP_EXACT, P2P_HTTP_SELF, P2P_RL_ENROLL_TOKEN, "pki", cert_request, NULL},
        {"POST", "/internal/cert-renew", P2P_HTTP_EXACT, P2P_HTTP_NODE, P2P_RL_OTHER, "pki", cert_renew, NULL},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int r = p2p__http_route_add(ctx, &routes[i]);
        if (r != 0) {
            p2p__http_routes_remove_owner(ctx, "pki");
            return r;
        }
    }
    return 0;
}

void p2p__pki_http_stop(p2p_ctx *ctx)
{
    p2p__http_routes_remove_owner(ctx, "pki");
}
