/*
 * pushpull.c — parsing and checking of push-pull documents (see pushpull.h).
 */
#include "membership/pushpull.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

static int state_rank(p2p_swim_state st)
{
    switch (st) {
    case P2P_SWIM_ALIVE: return 0;
    case P2P_SWIM_SUSPECT: return 1;
    case P2P_SWIM_DEAD: return 2;
    case P2P_SWIM_LEFT: return 3;
    }
    return 0;
}

static int state_parse(const char *s, p2p_swim_state *st)
{
    static const p2p_swim_state all[] = {P2P_SWIM_ALIVE, P2P_SWIM_SUSPECT, P2P_SWIM_DEAD, P2P_SWIM_LEFT};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, p2p_swim_state_name(all[i]))) {
            *st = all[i];
            return 0;
        }
    return -EINVAL;
}

int p2p__pp_newer(uint32_t inc_a, p2p_swim_state st_a, uint32_t inc_b, p2p_swim_state st_b)
{
    return inc_a > inc_b || (inc_a == inc_b && state_rank(st_a) > state_rank(st_b));
}

static int uint32_value(json_t *v, uint32_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int sig_parse(json_t *v, p2p_gossip_sig *sig)
{
    memset(sig, 0, sizeof *sig);
    if (!v)
        return 0;
    uint8_t raw[P2P_GOSSIP_CERT_ID_LEN + P2P_GOSSIP_SIG_MAX + 3];
    size_t n = 0, len = json_string_length(v);
    if (!json_is_string(v) || len > 4 * sizeof raw / 3 ||
        p2p__b64url_decode(json_string_value(v), len, raw, &n) != 0 || n <= P2P_GOSSIP_CERT_ID_LEN ||
        n > P2P_GOSSIP_CERT_ID_LEN + P2P_GOSSIP_SIG_MAX)
        return -EINVAL;
    memcpy(sig->cert_id, raw, P2P_GOSSIP_CERT_ID_LEN);
    sig->len = (uint8_t)(n - P2P_GOSSIP_CERT_ID_LEN);
    memcpy(sig->sig, raw + P2P_GOSSIP_CERT_ID_LEN, sig->len);
    return 0;
}

void p2p__pp_sig_encode(const p2p_gossip_sig *sig, char *out)
{
    uint8_t raw[P2P_GOSSIP_CERT_ID_LEN + P2P_GOSSIP_SIG_MAX];
    memcpy(raw, sig->cert_id, P2P_GOSSIP_CERT_ID_LEN);
    memcpy(raw + P2P_GOSSIP_CERT_ID_LEN, sig->sig, sig->len);
    p2p__b64url_encode(raw, P2P_GOSSIP_CERT_ID_LEN + sig->len, out);
}

int p2p__pp_cert(const char *b64, size_t len, uint8_t *der, size_t *der_len)
{
    if (!b64 || len == 0 || len > 4 * ((P2P_GOSSIP_CERT_MAX + 2) / 3) ||
        p2p__b64url_decode(b64, len, der, der_len) != 0 || *der_len < 1 || *der_len > P2P_GOSSIP_CERT_MAX)
        return -EINVAL;
    return 0;
}

int p2p__pp_parse_record(json_t *o, p2p_gossip_node *n, p2p_swim_state *st)
{
    return p2p__pp_parse_record_ex(o, n, st, NULL, NULL, NULL);
}

int p2p__pp_parse_record_ex(json_t *o, p2p_gossip_node *n, p2p_swim_state *st, p2p_gossip_sig *leave,
                            const char **cert, size_t *cert_len)
{
    memset(n, 0, sizeof(*n));
    p2p_gossip_sig lsig;
    if (!leave)
        leave = &lsig;
    if (cert) {
        *cert = NULL;
        *cert_len = 0;
    }
    if (!json_is_object(o))
        return -EINVAL;
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *role = json_string_value(json_object_get(o, "role"));
    json_t *port = json_object_get(o, "port"), *addrs = json_object_get(o, "addrs"), *meta = json_object_get(o, "meta");
    uint32_t inc;
    if (!id || !role || uint32_value(json_object_get(o, "incarnation"), &inc) != 0 || !json_is_integer(port) ||
        !json_is_array(addrs) || !json_is_string(meta) || strlen(id) > P2P_GOSSIP_ID_MAX ||
        strlen(role) > P2P_GOSSIP_ROLE_MAX || json_integer_value(port) < 1 || json_integer_value(port) > 65535 ||
        json_array_size(addrs) > P2P_GOSSIP_MAX_ADDRS || json_string_length(meta) > P2P_GOSSIP_META_MAX ||
        state_parse(json_string_value(json_object_get(o, "state")), st) != 0)
        return -EINVAL;
    snprintf(n->id, sizeof n->id, "%s", id);
    snprintf(n->role, sizeof n->role, "%s", role);
    n->incarnation = inc;
    n->port = (uint16_t)json_integer_value(port);
    size_t i;
    json_t *a;
    json_array_foreach(addrs, i, a)
    {
        const char *s = json_string_value(a);
        if (!s || strlen(s) >= P2P_GOSSIP_ADDRSTRLEN)
            return -EINVAL;
        snprintf(n->addrs[n->naddrs++], P2P_GOSSIP_ADDRSTRLEN, "%s", s);
    }
    n->meta = json_string_value(meta);
    n->meta_len = json_string_length(meta);
    if (sig_parse(json_object_get(o, "sig"), &n->sig) != 0 || sig_parse(json_object_get(o, "leave_sig"), leave) != 0)
        return -EINVAL;
    json_t *c = json_object_get(o, "cert");
    if (c) {
        uint8_t der[P2P_GOSSIP_CERT_MAX + 3];
        size_t dl = 0;
        if (!json_is_string(c) || p2p__pp_cert(json_string_value(c), json_string_length(c), der, &dl) != 0)
            return -EINVAL;
        if (cert) {
            *cert = json_string_value(c);
            *cert_len = json_string_length(c);
        }
    }
    return p2p_gossip_node_check(n, NULL) < 0 ? -EINVAL : 0;
}

int p2p__pp_parse_digest_entry(json_t *e, uint32_t *inc, p2p_swim_state *st)
{
    if (!json_is_array(e) || json_array_size(e) != 2 || uint32_value(json_array_get(e, 0), inc) != 0 ||
        state_parse(json_string_value(json_array_get(e, 1)), st) != 0)
        return -EINVAL;
    return 0;
}

static int fail(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return -EINVAL;
}

int p2p__pp_check(json_t *doc, const char **why)
{
    if (!json_is_object(doc))
        return fail(why, "expected a JSON object {\"digest\": {...}, \"nodes\": [...]}");
    json_t *digest = json_object_get(doc, "digest"), *nodes = json_object_get(doc, "nodes");
    json_t *want = json_object_get(doc, "want"), *e;
    const char *id;
    size_t i;
    if (digest) {
        if (!json_is_object(digest) || json_object_size(digest) > P2P_PP_MAX_ENTRIES)
            return fail(why, "\"digest\" must be an object {id: [incarnation, state]}");
        json_object_foreach(digest, id, e)
        {
            uint32_t inc;
            p2p_swim_state st;
            if (!p2p_gossip_id_valid(id) || p2p__pp_parse_digest_entry(e, &inc, &st) != 0)
                return fail(why, "a digest entry is not id: [incarnation, \"alive|suspect|dead|left\"]");
        }
    }
    if (!nodes && !digest)
        return fail(why, "expected \"nodes\": [records] or a \"digest\"");
    if (nodes && (!json_is_array(nodes) || json_array_size(nodes) > P2P_PP_MAX_ENTRIES))
        return fail(why, "\"nodes\" must be an array of records");
    json_array_foreach(nodes, i, e)
    {
        p2p_gossip_node n;
        p2p_swim_state st;
        if (p2p__pp_parse_record(e, &n, &st) != 0)
            return fail(why, "a record is malformed (id, incarnation, port, addrs, role, meta, state, sig, leave_sig, cert)");
    }
    if (want && (!json_is_array(want) || json_array_size(want) > P2P_PP_MAX_ENTRIES))
        return fail(why, "\"want\" must be an array of node ids");
    json_array_foreach(want, i, e)
    {
        if (!json_is_string(e) || !p2p_gossip_id_valid(json_string_value(e)))
            return fail(why, "\"want\" must be an array of node ids");
    }
    return 0;
}
