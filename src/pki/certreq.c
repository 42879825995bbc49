/*
 * certreq.c — strict parser and builders for the cert-request exchange; the
 * format is documented in certreq.h.
 *
 * Validation happens on the jansson tree in a fixed order (unknown members
 * first, then the fields as listed in the header), so the same bad body always
 * gets the same message. Values are copied out only once the whole body has
 * passed, so a failure leaves nothing to free.
 */
#include "pki/certreq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "pki/pki.h"

#define CSR_BEGIN "-----BEGIN CERTIFICATE REQUEST-----"
#define CERT_BEGIN "-----BEGIN CERTIFICATE-----"


/* A member name from the wire, made safe for a message: printable ASCII, the
 * rest as \xNN, cut after 40 bytes. */
#define SHOW_CAP (40 * 4 + 4)
static const char *show(const char *s, char *buf)
{
    size_t o = 0, len = strlen(s);
    for (size_t i = 0; i < len && i < 40; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
    }
    if (len > 40) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* Loads a JSON object; jansson's " near '...'" excerpt is dropped (it could quote a secret). */
static int load_object(const char *body, size_t len, size_t max, json_t **out, char **err)
{
    if (!body)
        return p2p__fail(err, -EINVAL, "no body");
    if (len > max)
        return p2p__fail(err, -E2BIG, "body of %zu bytes: at most %zu", len, max);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char *near = strstr(je.text, " near ");
        if (near)
            *near = '\0';
        return p2p__fail(err, -EINVAL, "body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return p2p__fail(err, -EINVAL, "body is not a JSON object");
    }
    *out = root;
    return 0;
}

static int is_b64url(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static int is_visible_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Canonical text of an IP literal into out; -1 if `s` is not one. */
static int ip_canon(const char *s, char out[INET6_ADDRSTRLEN])
{
    unsigned char b[16];
    if (inet_pton(AF_INET, s, b) == 1)
        return inet_ntop(AF_INET, b, out, INET6_ADDRSTRLEN) ? 0 : -1;
    if (inet_pton(AF_INET6, s, b) == 1)
        return inet_ntop(AF_INET6, b, out, INET6_ADDRSTRLEN) ? 0 : -1;
    return -1;
}

/* A required string member: present, a string, no NUL (jansson refuses \u0000
 * without JSON_ALLOW_NUL, checked again here), 1..max bytes. */
static int get_string(json_t *root, const char *field, size_t max, const char **out, size_t *len, char **err)
{
    json_t *v = json_object_get(root, field);
    if (!v)
        return p2p__fail(err, -EINVAL, "field '%s': missing", field);
    if (!json_is_string(v))
        return p2p__fail(err, -EINVAL, "field '%s': must be a string", field);
    *out = json_string_value(v);
    *len = json_string_length(v);
    if (strlen(*out) != *len)
        return p2p__fail(err, -EINVAL, "field '%s': contains a NUL character", field);
    if (*len == 0 || *len > max)
        return p2p__fail(err, -EINVAL, "field '%s': must be 1..%zu bytes long, not %zu", field, max, *len);
    return 0;
}

static const char *const request_fields[] = {"node_id",    "csr",       "challenge", "challenge_port",
                                             "join_token", "addresses", "role"};

int certreq_parse(const char *body, size_t len, certreq *out, char **err)
{
    char b1[SHOW_CAP];
    json_t *root = NULL;
    int rc;
    if (!out)
        return p2p__fail(err, -EINVAL, "certreq_parse: NULL argument");
    if ((rc = load_object(body, len, CERTREQ_MAX_BODY, &root, err)) != 0)
        return rc;

    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        size_t i = 0;
        while (i < sizeof(request_fields) / sizeof(*request_fields) && strcmp(key, request_fields[i]) != 0)
            i++;
        if (i == sizeof(request_fields) / sizeof(*request_fields)) {
            rc = p2p__fail(err, -EINVAL, "field '%s': unknown", show(key, b1));
            goto out;
        }
    }

    const char *node_id, *csr, *challenge, *token;
    size_t node_id_len, csr_len, challenge_len, token_len;
    if ((rc = get_string(root, "node_id", PKI_MAX_NODE_ID, &node_id, &node_id_len, err)) != 0)
        goto out;
    if (!pki_node_id_valid(node_id)) {
        rc = p2p__fail(err, -EINVAL, "field 'node_id': '%s' is not a node id (1..%d characters of A-Z a-z 0-9 . _ -)",
                  show(node_id, b1), PKI_MAX_NODE_ID);
        goto out;
    }
    if ((rc = get_string(root, "csr", CERTREQ_MAX_CSR, &csr, &csr_len, err)) != 0)
        goto out;
    if (!strstr(csr, CSR_BEGIN)) {
        rc = p2p__fail(err, -EINVAL, "field 'csr': not a PEM certificate request");
        goto out;
    }
    if ((rc = get_string(root, "challenge", CERTREQ_MAX_CHALLENGE, &challenge, &challenge_len, err)) != 0)
        goto out;
    if (challenge_len < CERTREQ_MIN_CHALLENGE || !is_b64url(challenge, challenge_len)) {
        rc = p2p__fail(err, -EINVAL, "field 'challenge': must be %d..%d base64url characters", CERTREQ_MIN_CHALLENGE,
                  CERTREQ_MAX_CHALLENGE);
        goto out;
    }
    json_t *port = json_object_get(root, "challenge_port");
    if (!port) {
        rc = p2p__fail(err, -EINVAL, "field 'challenge_port': missing");
        goto out;
    }
    if (!json_is_integer(port) || json_integer_value(port) < 1 || json_integer_value(port) > 65535) {
        rc = p2p__fail(err, -EINVAL, "field 'challenge_port': must be an integer 1..65535");
        goto out;
    }
    /* The join token's value never appears in a message. */
    if ((rc = get_string(root, "join_token", CERTREQ_MAX_JOIN_TOKEN, &token, &token_len, err)) != 0)
        goto out;
    if (!is_visible_ascii(token, token_len)) {
        rc = p2p__fail(err, -EINVAL, "field 'join_token': must be printable ASCII without spaces");
        goto out;
    }
    json_t *addrs = json_object_get(root, "addresses");
    size_t n_addrs = 0;
    char canon[CERTREQ_MAX_ADDRESSES][INET6_ADDRSTRLEN];
    if (addrs) {
        if (!json_is_array(addrs)) {
            rc = p2p__fail(err, -EINVAL, "field 'addresses': must be an array of IP addresses");
            goto out;
        }
        n_addrs = json_array_size(addrs);
        if (n_addrs > CERTREQ_MAX_ADDRESSES) {
            rc = p2p__fail(err, -EINVAL, "field 'addresses': %zu entries, at most %d", n_addrs, CERTREQ_MAX_ADDRESSES);
            goto out;
        }
        for (size_t i = 0; i < n_addrs; i++) {
            json_t *a = json_array_get(addrs, i);
            if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a) ||
                ip_canon(json_string_value(a), canon[i]) != 0) {
                rc = p2p__fail(err, -EINVAL, "field 'addresses[%zu]': %s", i,
                          json_is_string(a) ? "not an IP address" : "must be a string");
                goto out;
            }
            for (size_t k = 0; k < i; k++)
                if (!strcmp(canon[k], canon[i])) {
                    rc = p2p__fail(err, -EINVAL, "field 'addresses[%zu]': %s is listed twice", i, canon[i]);
                    goto out;
                }
        }
    }

    const char *role = NULL;
    size_t role_len = 0;
    if (json_object_get(root, "role")) {
        if ((rc = get_string(root, "role", PKI_MAX_ROLE, &role, &role_len, err)) != 0)
            goto out;
        if (!pki_role_valid(role)) {
            rc = p2p__fail(err, -EINVAL, "field 'role': '%s' is not a role name (1..%d characters of A-Z a-z 0-9 . _ -)",
                           show(role, b1), PKI_MAX_ROLE);
            goto out;
        }
    }

    memset(out, 0, sizeof(*out));
    out->role = role ? p2p__xstrdup(role) : NULL;
    out->node_id = p2p__xstrdup(node_id);
    out->csr = p2p__xstrdup(csr);
    out->challenge = p2p__xstrdup(challenge);
    out->challenge_port = (int)json_integer_value(port);
    out->join_token = p2p__xstrdup(token);
    if (n_addrs) {
        out->addresses = p2p__xcalloc(n_addrs, sizeof(char *));
        for (size_t i = 0; i < n_addrs; i++)
            out->addresses[i] = p2p__xstrdup(canon[i]);
        out->n_addresses = n_addrs;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static void secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void certreq_free(certreq *r)
{
    if (!r)
        return;
    free(r->node_id);
    free(r->role);
    free(r->csr);
    free(r->challenge);
    secret_free(r->join_token);
    for (size_t i = 0; i < r->n_addresses; i++)
        free(r->addresses[i]);
    free(r->addresses);
    memset(r, 0, sizeof(*r));
}

json_t *certreq_request_json(const certreq *r)
{
    if (!r || !r->node_id || !r->csr || !r->challenge || !r->join_token)
        return NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "node_id", json_string(r->node_id)) ||
              json_object_set_new(o, "csr", json_string(r->csr)) ||
              json_object_set_new(o, "challenge", json_string(r->challenge)) ||
              json_object_set_new(o, "challenge_port", json_integer(r->challenge_port)) ||
              json_object_set_new(o, "join_token", json_string(r->join_token)) ||
              (r->role && json_object_set_new(o, "role", json_string(r->role)));
    if (!bad && r->n_addresses) {
        json_t *a = json_array();
        bad = !a || json_object_set_new(o, "addresses", a);
        for (size_t i = 0; !bad && i < r->n_addresses; i++)
            bad = !r->addresses[i] || json_array_append_new(a, json_string(r->addresses[i]));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *certreq_response_json(const char *cert_pem, const char *ca_pem, const char *gossip_key_b64)
{
    if (!cert_pem || !ca_pem)
        return NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "certificate", json_string(cert_pem)) ||
              json_object_set_new(o, "ca_certificate", json_string(ca_pem)) ||
              (gossip_key_b64 && json_object_set_new(o, "gossip_key", json_string(gossip_key_b64)));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int is_b64_any(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] != '=') {
        char c = s[i++];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '+' || c == '/'))
            return 0;
    }
    size_t pad = len - i;
    for (; i < len; i++)
        if (s[i] != '=')
            return 0;
    return pad <= 2 && len > pad;
}

int certreq_response_parse(const char *body, size_t len, certreq_response *out, char **err)
{
    json_t *root = NULL;
    int rc;
    if (!out)
        return p2p__fail(err, -EINVAL, "certreq_response_parse: NULL argument");
    if ((rc = load_object(body, len, 2 * CERTREQ_MAX_BODY, &root, err)) != 0)
        return rc;
    const char *cert, *ca, *gossip = NULL;
    size_t cert_len, ca_len, gossip_len = 0;
    if ((rc = get_string(root, "certificate", CERTREQ_MAX_CERT, &cert, &cert_len, err)) != 0)
        goto out;
    if (!strstr(cert, CERT_BEGIN)) {
        rc = p2p__fail(err, -EINVAL, "field 'certificate': not a PEM certificate");
        goto out;
    }
    if ((rc = get_string(root, "ca_certificate", CERTREQ_MAX_CERT, &ca, &ca_len, err)) != 0)
        goto out;
    if (!strstr(ca, CERT_BEGIN)) {
        rc = p2p__fail(err, -EINVAL, "field 'ca_certificate': not a PEM certificate");
        goto out;
    }
    if (json_object_get(root, "gossip_key")) {
        if ((rc = get_string(root, "gossip_key", CERTREQ_MAX_GOSSIP_KEY, &gossip, &gossip_len, err)) != 0)
            goto out;
        if (!is_b64_any(gossip, gossip_len)) {
            rc = p2p__fail(err, -EINVAL, "field 'gossip_key': must be base64");
            goto out;
        }
    }
    memset(out, 0, sizeof(*out));
    out->certificate = p2p__xstrdup(cert);
    out->ca_certificate = p2p__xstrdup(ca);
    out->gossip_key = gossip ? p2p__xstrdup(gossip) : NULL;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void certreq_response_free(certreq_response *r)
{
    if (!r)
        return;
    free(r->certificate);
    free(r->ca_certificate);
    secret_free(r->gossip_key);
    memset(r, 0, sizeof(*r));
}
