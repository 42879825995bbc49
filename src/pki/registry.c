/*
 * registry.c — enrolled node identities and revoked certificates; the model is
 * described in registry.h.
 *
 * Two growable arrays in insertion order. Parsing validates the whole document
 * into a fresh registry and hands it over only when every member passed, so a
 * bad vault entry changes nothing.
 */
#include "pki/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct revoked {
    char fingerprint[PKI_FINGERPRINT_LEN + 1];
    char node_id[PKI_MAX_NODE_ID + 1];
    int64_t revoked_at, expires_at;
} revoked;

struct registry {
    registry_node *nodes;
    size_t n_nodes, cap_nodes;
    revoked *rev;
    size_t n_rev, cap_rev;
};

static int is_hex(const char *s, size_t min, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int cert_valid(const registry_cert *c)
{
    return c && is_hex(c->fingerprint, PKI_FINGERPRINT_LEN, PKI_FINGERPRINT_LEN) &&
           is_hex(c->serial, 1, REGISTRY_MAX_SERIAL) && c->not_after >= 0 && c->not_after <= REGISTRY_MAX_TIME;
}

registry *registry_new(void)
{
    return p2p__xcalloc(1, sizeof(registry));
}

void registry_free(registry *r)
{
    if (!r)
        return;
    free(r->nodes);
    free(r->rev);
    free(r);
}

size_t registry_count(const registry *r)
{
    return r ? r->n_nodes : 0;
}

static registry_node *find(const registry *r, const char *id)
{
    for (size_t i = 0; r && id && i < r->n_nodes; i++)
        if (strcmp(r->nodes[i].id, id) == 0)
            return &r->nodes[i];
    return NULL;
}

const registry_node *registry_find(const registry *r, const char *id)
{
    return find(r, id);
}

static registry_node *add_node(registry *r, const char *id, const char *role)
{
    if (r->n_nodes >= REGISTRY_MAX_NODES)
        return NULL;
    if (r->n_nodes == r->cap_nodes) {
        r->cap_nodes = r->cap_nodes ? 2 * r->cap_nodes : 16;
        r->nodes = p2p__xrealloc(r->nodes, r->cap_nodes * sizeof(*r->nodes));
    }
    registry_node *n = &r->nodes[r->n_nodes++];
    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof n->id, "%s", id);
    snprintf(n->role, sizeof n->role, "%s", role);
    return n;
}

static int args_ok(const char *id, const char *role, const registry_cert *c, int64_t now)
{
    return pki_node_id_valid(id) && pki_role_valid(role) && cert_valid(c) && now >= 0 && now <= REGISTRY_MAX_TIME;
}

int registry_enroll(registry *r, const char *id, const char *role, const registry_cert *c, int64_t now)
{
    if (!r || !args_ok(id, role, c, now))
        return -EINVAL;
    if (find(r, id))
        return -EEXIST;
    registry_node *n = add_node(r, id, role);
    if (!n)
        return -ENOSPC;
    n->cert = *c;
    n->issued_at = n->renewed_at = now;
    return 0;
}

int registry_renew(registry *r, const char *id, const char *role, const registry_cert *c, int64_t now)
{
    if (!r || !args_ok(id, role, c, now))
        return -EINVAL;
    registry_node *n = find(r, id);
    if (!n) {
        if (!(n = add_node(r, id, role)))
            return -ENOSPC;
        n->issued_at = now;
    } else if (strcmp(n->cert.fingerprint, c->fingerprint) != 0) {
        /* remember the superseded certificate, so a replacement can revoke it */
        size_t slot = n->n_previous;
        if (slot == REGISTRY_MAX_PREVIOUS) { /* full: push out the one closest to expiry */
            slot = 0;
            for (size_t i = 1; i < REGISTRY_MAX_PREVIOUS; i++)
                if (n->previous[i].expires_at < n->previous[slot].expires_at)
                    slot = i;
        } else {
            n->n_previous++;
        }
        memcpy(n->previous[slot].fingerprint, n->cert.fingerprint, sizeof n->previous[slot].fingerprint);
        n->previous[slot].expires_at = n->cert.not_after;
    }
    n->cert = *c;
    n->renewed_at = now;
    return 0;
}

int registry_is_revoked(const registry *r, const char *fingerprint)
{
    for (size_t i = 0; r && fingerprint && i < r->n_rev; i++)
        if (strcmp(r->rev[i].fingerprint, fingerprint) == 0)
            return 1;
    return 0;
}

static void push_revoked(registry *r, const char *fp, const char *id, int64_t now, int64_t expires)
{
    if (registry_is_revoked(r, fp))
        return;
    if (r->n_rev == r->cap_rev) {
        r->cap_rev = r->cap_rev ? 2 * r->cap_rev : 16;
        r->rev = p2p__xrealloc(r->rev, r->cap_rev * sizeof(*r->rev));
    }
    revoked *v = &r->rev[r->n_rev++];
    memset(v, 0, sizeof(*v));
    snprintf(v->fingerprint, sizeof v->fingerprint, "%s", fp);
    snprintf(v->node_id, sizeof v->node_id, "%s", id);
    v->revoked_at = now;
    v->expires_at = expires;
}

size_t registry_prune(registry *r, int64_t now)
{
    if (!r)
        return 0;
    size_t gone = 0, kept = 0;
    for (size_t i = 0; i < r->n_rev; i++)
        if (now < r->rev[i].expires_at)
            r->rev[kept++] = r->rev[i];
    gone += r->n_rev - kept;
    r->n_rev = kept;
    for (size_t i = 0; i < r->n_nodes; i++) {
        registry_node *n = &r->nodes[i];
        kept = 0;
        for (size_t k = 0; k < n->n_previous; k++)
            if (now < n->previous[k].expires_at)
                n->previous[kept++] = n->previous[k];
        gone += n->n_previous - kept;
        n->n_previous = kept;
    }
    return gone;
}

int registry_replace(registry *r, const char *id, const char *role, const registry_cert *c, int64_t now,
                     size_t *n_revoked)
{
    if (!r || !args_ok(id, role, c, now))
        return -EINVAL;
    registry_prune(r, now);
    registry_node *n = find(r, id);
    size_t want = 0;
    if (n)
        want = (now < n->cert.not_after ? 1 : 0) + n->n_previous;
    if (r->n_rev + want > REGISTRY_MAX_REVOKED)
        return -ENOSPC;
    if (!n) {
        if (!(n = add_node(r, id, role)))
            return -ENOSPC;
    } else {
        if (now < n->cert.not_after)
            push_revoked(r, n->cert.fingerprint, id, now, n->cert.not_after);
        for (size_t k = 0; k < n->n_previous; k++)
            push_revoked(r, n->previous[k].fingerprint, id, now, n->previous[k].expires_at);
        n->n_previous = 0;
        n->replaced = 1;
        snprintf(n->role, sizeof n->role, "%s", role);
    }
    n->cert = *c;
    n->issued_at = n->renewed_at = now;
    if (n_revoked)
        *n_revoked = want;
    return 0;
}

json_t *registry_revoked_json(const registry *r)
{
    json_t *a = json_array();
    for (size_t i = 0; a && r && i < r->n_rev; i++) {
        const revoked *v = &r->rev[i];
        if (json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:I}", "fingerprint", v->fingerprint, "node_id",
                                               v->node_id, "revoked_at", (json_int_t)v->revoked_at, "expires_at",
                                               (json_int_t)v->expires_at)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *registry_to_json(const registry *r)
{
    json_t *nodes = json_array();
    for (size_t i = 0; nodes && r && i < r->n_nodes; i++) {
        const registry_node *n = &r->nodes[i];
        json_t *prev = json_array();
        for (size_t k = 0; prev && k < n->n_previous; k++)
            if (json_array_append_new(prev, json_pack("{s:s, s:I}", "fingerprint", n->previous[k].fingerprint,
                                                      "expires_at", (json_int_t)n->previous[k].expires_at)) != 0) {
                json_decref(prev);
                prev = NULL;
            }
        json_t *o = prev ? json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:b, s:o}", "id", n->id, "role", n->role,
                                     "fingerprint", n->cert.fingerprint, "serial", n->cert.serial, "not_after",
                                     (json_int_t)n->cert.not_after, "issued_at", (json_int_t)n->issued_at,
                                     "renewed_at", (json_int_t)n->renewed_at, "replaced", n->replaced, "previous",
                                     prev)
                         : NULL;
        if (!o || json_array_append_new(nodes, o) != 0) {
            json_decref(nodes);
            nodes = NULL;
        }
    }
    json_t *rev = registry_revoked_json(r);
    if (!nodes || !rev) {
        json_decref(nodes);
        json_decref(rev);
        return NULL;
    }
    return json_pack("{s:i, s:o, s:o}", "version", 1, "nodes", nodes, "revoked", rev);
}

/* ---- parsing ---------------------------------------------------------------------- */

static int only_members(const json_t *o, const char *const *names, size_t n)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        size_t i = 0;
        while (i < n && strcmp(key, names[i]) != 0)
            i++;
        if (i == n)
            return 0;
    }
    return 1;
}

static int time_member(const json_t *o, const char *name, int64_t *out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > REGISTRY_MAX_TIME)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* A string member that passes `ok` and fits `cap` bytes, copied into out. */
static int str_member(const json_t *o, const char *name, int (*ok)(const char *), char *out, size_t cap)
{
    json_t *v = json_object_get(o, name);
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v) || strlen(s) >= cap || !ok(s))
        return -1;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int fp_ok(const char *s)
{
    return is_hex(s, PKI_FINGERPRINT_LEN, PKI_FINGERPRINT_LEN);
}

static int serial_ok(const char *s)
{
    return is_hex(s, 1, REGISTRY_MAX_SERIAL);
}

static int parse_node(const json_t *o, size_t idx, registry *r, char **err)
{
    static const char *const names[] = {"id",        "role",       "fingerprint", "serial",  "not_after",
                                        "issued_at", "renewed_at", "replaced",    "previous"};
    registry_node n = {0};
    if (!json_is_object(o) || !only_members(o, names, sizeof names / sizeof *names))
        return p2p__fail(err, -EINVAL, "nodes[%zu]: must be an object with only the registry's members", idx);
    if (str_member(o, "id", pki_node_id_valid, n.id, sizeof n.id) != 0)
        return p2p__fail(err, -EINVAL, "nodes[%zu].id: must be a node id", idx);
    if (find(r, n.id))
        return p2p__fail(err, -EINVAL, "nodes[%zu].id: '%s' is listed twice", idx, n.id);
    if (str_member(o, "role", pki_role_valid, n.role, sizeof n.role) != 0)
        return p2p__fail(err, -EINVAL, "nodes[%zu].role: must be a role name", idx);
    if (str_member(o, "fingerprint", fp_ok, n.cert.fingerprint, sizeof n.cert.fingerprint) != 0)
        return p2p__fail(err, -EINVAL, "nodes[%zu].fingerprint: must be 64 lowercase hex digits", idx);
    if (str_member(o, "serial", serial_ok, n.cert.serial, sizeof n.cert.serial) != 0)
        return p2p__fail(err, -EINVAL, "nodes[%zu].serial: must be 1..%d lowercase hex digits", idx,
                         REGISTRY_MAX_SERIAL);
    if (time_member(o, "not_after", &n.cert.not_after) != 0 || time_member(o, "issued_at", &n.issued_at) != 0 ||
        time_member(o, "renewed_at", &n.renewed_at) != 0)
        return p2p__fail(err, -EINVAL, "nodes[%zu]: not_after, issued_at and renewed_at must be times (0..%lld)",
                         idx, (long long)REGISTRY_MAX_TIME);
    json_t *rep = json_object_get(o, "replaced");
    if (!json_is_boolean(rep))
        return p2p__fail(err, -EINVAL, "nodes[%zu].replaced: must be true or false", idx);
    n.replaced = json_is_true(rep);
    json_t *prev = json_object_get(o, "previous");
    if (!json_is_array(prev) || json_array_size(prev) > REGISTRY_MAX_PREVIOUS)
        return p2p__fail(err, -EINVAL, "nodes[%zu].previous: must be an array of at most %d", idx,
                         REGISTRY_MAX_PREVIOUS);
    static const char *const pnames[] = {"fingerprint", "expires_at"};
    for (size_t k = 0; k < json_array_size(prev); k++) {
        json_t *p = json_array_get(prev, k);
        if (!json_is_object(p) || !only_members(p, pnames, 2) ||
            str_member(p, "fingerprint", fp_ok, n.previous[k].fingerprint, sizeof n.previous[k].fingerprint) != 0 ||
            time_member(p, "expires_at", &n.previous[k].expires_at) != 0)
            return p2p__fail(err, -EINVAL, "nodes[%zu].previous[%zu]: expected {fingerprint, expires_at}", idx, k);
    }
    n.n_previous = json_array_size(prev);
    registry_node *slot = add_node(r, n.id, n.role);
    *slot = n;
    return 0;
}

static int parse_revoked(const json_t *o, size_t idx, registry *r, char **err)
{
    static const char *const names[] = {"fingerprint", "node_id", "revoked_at", "expires_at"};
    revoked v = {0};
    if (!json_is_object(o) || !only_members(o, names, 4) ||
        str_member(o, "fingerprint", fp_ok, v.fingerprint, sizeof v.fingerprint) != 0 ||
        str_member(o, "node_id", pki_node_id_valid, v.node_id, sizeof v.node_id) != 0 ||
        time_member(o, "revoked_at", &v.revoked_at) != 0 || time_member(o, "expires_at", &v.expires_at) != 0)
        return p2p__fail(err, -EINVAL, "revoked[%zu]: expected {fingerprint, node_id, revoked_at, expires_at}", idx);
    if (registry_is_revoked(r, v.fingerprint))
        return p2p__fail(err, -EINVAL, "revoked[%zu]: the fingerprint is listed twice", idx);
    push_revoked(r, v.fingerprint, v.node_id, v.revoked_at, v.expires_at);
    return 0;
}

int registry_from_json(const json_t *doc, registry **out, char **err)
{
    static const char *const names[] = {"version", "nodes", "revoked"};
    if (!out)
        return p2p__fail(err, -EINVAL, "registry_from_json: NULL argument");
    if (!json_is_object(doc) || !only_members(doc, names, 3))
        return p2p__fail(err, -EINVAL, "node registry: expected {version, nodes, revoked}");
    json_t *ver = json_object_get(doc, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return p2p__fail(err, -EINVAL, "node registry: version must be 1");
    json_t *nodes = json_object_get(doc, "nodes"), *rev = json_object_get(doc, "revoked");
    if (!json_is_array(nodes) || json_array_size(nodes) > REGISTRY_MAX_NODES)
        return p2p__fail(err, -EINVAL, "node registry: nodes must be an array of at most %d", REGISTRY_MAX_NODES);
    if (!json_is_array(rev) || json_array_size(rev) > REGISTRY_MAX_REVOKED)
        return p2p__fail(err, -EINVAL, "node registry: revoked must be an array of at most %d", REGISTRY_MAX_REVOKED);
    registry *r = registry_new();
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(nodes); i++)
        rc = parse_node(json_array_get(nodes, i), i, r, err);
    for (size_t i = 0; rc == 0 && i < json_array_size(rev); i++)
        rc = parse_revoked(json_array_get(rev, i), i, r, err);
    if (rc != 0) {
        registry_free(r);
        return rc;
    }
    *out = r;
    return 0;
}
