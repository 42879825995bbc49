/*
 * jointoken.c — the join token table; the model is described in jointoken.h.
 *
 * The table is a small array in creation order (at most JOINTOKEN_MAX_ENTRIES,
 * and in practice a handful): a linear scan is what constant-time matching needs
 * anyway, and it keeps listing in a stable order for free.
 */
#include "pki/jointoken.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "pki/pki.h"

#define HASH_LEN 32
#define RANDOM_LEN 32
#define MAX_PRESENTED 256 /* longer input is refused without hashing */

typedef struct entry {
    uint8_t hash[HASH_LEN];
    int64_t created_at;
    int64_t expires_at;
    unsigned uses_left;
    char replace[PKI_MAX_NODE_ID + 1]; /* a replacement token's node id, "" for an ordinary one */
} entry;

struct jointoken_table {
    entry *v;
    size_t n;
    size_t cap;
};


static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int unhex_lower(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return s[2 * n] == '\0' ? 0 : -1;
}

static int sha256(const void *data, size_t len, uint8_t out[HASH_LEN])
{
    unsigned int olen = 0;
    ERR_set_mark();
    int ok = EVP_Digest(data, len, out, &olen, EVP_sha256(), NULL) == 1 && olen == HASH_LEN;
    ERR_pop_to_mark();
    return ok ? 0 : -1;
}

static void entry_id(const entry *e, char id[JOINTOKEN_ID_LEN + 1])
{
    hex(e->hash, JOINTOKEN_ID_LEN / 2, id);
}

/* Index of the entry whose id is the first bytes of `hash`, or -1. */
static long find_id(const jointoken_table *t, const uint8_t *hash)
{
    for (size_t i = 0; i < t->n; i++)
        if (!memcmp(t->v[i].hash, hash, JOINTOKEN_ID_LEN / 2))
            return (long)i;
    return -1;
}

static void push(jointoken_table *t, const entry *e)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 8;
        t->v = p2p__xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    t->v[t->n++] = *e;
}

static void remove_at(jointoken_table *t, size_t i)
{
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
    t->n--;
}

jointoken_table *jointoken_table_new(void)
{
    return p2p__xcalloc(1, sizeof(jointoken_table));
}

void jointoken_table_free(jointoken_table *t)
{
    if (!t)
        return;
    if (t->v)
        OPENSSL_cleanse(t->v, t->cap * sizeof(*t->v));
    free(t->v);
    free(t);
}

size_t jointoken_count(const jointoken_table *t)
{
    return t ? t->n : 0;
}

size_t jointoken_purge(jointoken_table *t, int64_t now)
{
    if (!t)
        return 0;
    size_t kept = 0, n = t->n;
    for (size_t i = 0; i < n; i++)
        if (now < t->v[i].expires_at)
            t->v[kept++] = t->v[i];
    t->n = kept;
    return n - kept;
}

static int create(jointoken_table *t, int64_t now, int64_t ttl_s, unsigned max_uses, const char *replace,
                  char **token_out)
{
    if (!t || !token_out || now < 0 || ttl_s < 1 || ttl_s > JOINTOKEN_MAX_TTL_S || now > JOINTOKEN_MAX_TIME - ttl_s ||
        max_uses < 1 || max_uses > JOINTOKEN_MAX_USES || (replace && !pki_node_id_valid(replace)))
        return -EINVAL;
    jointoken_purge(t, now);
    if (t->n >= JOINTOKEN_MAX_ENTRIES)
        return -ENOSPC;
    char *tok = p2p__xmalloc(JOINTOKEN_LEN + 1);
    uint8_t rnd[RANDOM_LEN];
    entry e = {.created_at = now, .expires_at = now + ttl_s, .uses_left = max_uses};
    if (replace)
        snprintf(e.replace, sizeof e.replace, "%s", replace);
    int rc = -EIO;
    /* An id collision (32 bits) is vanishingly rare; draw again so ids stay unique. */
    for (int attempt = 0; attempt < 8; attempt++) {
        ERR_set_mark();
        int ok = RAND_bytes(rnd, sizeof(rnd)) == 1;
        ERR_pop_to_mark();
        if (!ok)
            break;
        memcpy(tok, JOINTOKEN_PREFIX, sizeof(JOINTOKEN_PREFIX) - 1);
        p2p__b64url_encode(rnd, sizeof(rnd), tok + sizeof(JOINTOKEN_PREFIX) - 1);
        if (sha256(tok, strlen(tok), e.hash) != 0)
            break;
        if (find_id(t, e.hash) < 0) {
            rc = 0;
            break;
        }
    }
    OPENSSL_cleanse(rnd, sizeof(rnd));
    if (rc != 0) {
        jointoken_secret_free(tok);
        return rc;
    }
    push(t, &e);
    *token_out = tok;
    return 0;
}

int jointoken_create(jointoken_table *t, int64_t now, int64_t ttl_s, unsigned max_uses, char **token_out)
{
    return create(t, now, ttl_s, max_uses, NULL, token_out);
}

int jointoken_create_replacement(jointoken_table *t, int64_t now, int64_t ttl_s, const char *node_id,
                                 char **token_out)
{
    if (!node_id)
        return -EINVAL;
    return create(t, now, ttl_s, 1, node_id, token_out);
}

int jointoken_token_id(const char *token, char id_out[JOINTOKEN_ID_LEN + 1])
{
    uint8_t h[HASH_LEN];
    if (!token || !id_out || sha256(token, strlen(token), h) != 0)
        return -EINVAL;
    hex(h, JOINTOKEN_ID_LEN / 2, id_out);
    return 0;
}

/* The index of the valid entry matching `token`, or -1. Scans the whole table
 * and compares every hash with CRYPTO_memcmp. */
static long match(const jointoken_table *t, const char *token, int64_t now)
{
    uint8_t h[HASH_LEN];
    if (!t || !token)
        return -1;
    size_t len = strnlen(token, MAX_PRESENTED + 1);
    if (len > MAX_PRESENTED || sha256(token, len, h) != 0)
        return -1;
    long found = -1;
    for (size_t i = 0; i < t->n; i++) {
        int eq = CRYPTO_memcmp(t->v[i].hash, h, HASH_LEN) == 0;
        found = eq ? (long)i : found;
    }
    if (found < 0 || now >= t->v[found].expires_at || t->v[found].uses_left == 0)
        return -1;
    return found;
}

int jointoken_check(const jointoken_table *t, const char *token, int64_t now)
{
    return match(t, token, now) >= 0 ? 0 : -EACCES;
}

const char *jointoken_replaces(const jointoken_table *t, const char *token, int64_t now)
{
    long i = match(t, token, now);
    return i >= 0 && t->v[i].replace[0] ? t->v[i].replace : NULL;
}

int jointoken_consume(jointoken_table *t, const char *token, int64_t now)
{
    long i = match(t, token, now);
    if (i < 0) {
        jointoken_purge(t, now);
        return -EACCES;
    }
    t->v[i].uses_left--;
    jointoken_purge(t, now);
    return 0;
}

int jointoken_revoke(jointoken_table *t, const char *id)
{
    uint8_t want[JOINTOKEN_ID_LEN / 2];
    if (!t || !id || strlen(id) != JOINTOKEN_ID_LEN || unhex_lower(id, want, sizeof(want)) != 0)
        return -ENOENT;
    long i = find_id(t, want);
    if (i < 0)
        return -ENOENT;
    remove_at(t, (size_t)i);
    return 0;
}

json_t *jointoken_list(const jointoken_table *t, int64_t now)
{
    json_t *a = json_array();
    for (size_t i = 0; a && t && i < t->n; i++) {
        const entry *e = &t->v[i];
        if (now >= e->expires_at)
            continue;
        char id[JOINTOKEN_ID_LEN + 1];
        entry_id(e, id);
        json_t *o = json_pack("{s:s, s:I, s:I, s:I}", "id", id, "created_at", (json_int_t)e->created_at, "expires_at",
                              (json_int_t)e->expires_at, "uses_left", (json_int_t)e->uses_left);
        if (o && e->replace[0] && json_object_set_new(o, "replaces", json_string(e->replace)) != 0) {
            json_decref(o);
            o = NULL;
        }
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *jointoken_table_to_json(const jointoken_table *t)
{
    json_t *a = json_array();
    for (size_t i = 0; a && t && i < t->n; i++) {
        const entry *e = &t->v[i];
        char h[2 * HASH_LEN + 1];
        hex(e->hash, HASH_LEN, h);
        json_t *o = json_pack("{s:s, s:I, s:I, s:I}", "hash", h, "created_at", (json_int_t)e->created_at, "expires_at",
                              (json_int_t)e->expires_at, "uses_left", (json_int_t)e->uses_left);
        if (o && e->replace[0] && json_object_set_new(o, "replace", json_string(e->replace)) != 0) {
            json_decref(o);
            o = NULL;
        }
        if (!o || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a ? json_pack("{s:i, s:o}", "version", 1, "tokens", a) : NULL;
}

static int int_member(const json_t *o, const char *name, size_t idx, json_int_t lo, json_int_t hi, json_int_t *out,
                      char **err)
{
    json_t *v = json_object_get(o, name);
    if (!v)
        return p2p__fail(err, -EINVAL, "tokens[%zu].%s: missing", idx, name);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return p2p__fail(err, -EINVAL, "tokens[%zu].%s: must be an integer %lld..%lld", idx, name, (long long)lo,
                    (long long)hi);
    *out = json_integer_value(v);
    return 0;
}

static int parse_entry(const json_t *o, size_t idx, entry *e, char **err)
{
    if (!json_is_object(o))
        return p2p__fail(err, -EINVAL, "tokens[%zu]: must be an object", idx);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        if (strcmp(key, "hash") && strcmp(key, "created_at") && strcmp(key, "expires_at") && strcmp(key, "uses_left") &&
            strcmp(key, "replace"))
            return p2p__fail(err, -EINVAL, "tokens[%zu]: unknown member", idx);
    }
    json_t *h = json_object_get(o, "hash");
    if (!h)
        return p2p__fail(err, -EINVAL, "tokens[%zu].hash: missing", idx);
    if (!json_is_string(h) || json_string_length(h) != 2 * HASH_LEN ||
        unhex_lower(json_string_value(h), e->hash, HASH_LEN) != 0)
        return p2p__fail(err, -EINVAL, "tokens[%zu].hash: must be 64 lowercase hex digits", idx);
    json_int_t created, expires, uses;
    int rc;
    if ((rc = int_member(o, "created_at", idx, 0, JOINTOKEN_MAX_TIME - 1, &created, err)) != 0 ||
        (rc = int_member(o, "expires_at", idx, created + 1, JOINTOKEN_MAX_TIME, &expires, err)) != 0 ||
        (rc = int_member(o, "uses_left", idx, 0, JOINTOKEN_MAX_USES, &uses, err)) != 0)
        return rc;
    if (expires - created > JOINTOKEN_MAX_TTL_S)
        return p2p__fail(err, -EINVAL, "tokens[%zu].expires_at: more than %d s after created_at", idx, JOINTOKEN_MAX_TTL_S);
    e->created_at = created;
    e->expires_at = expires;
    e->uses_left = (unsigned)uses;
    e->replace[0] = '\0';
    json_t *rp = json_object_get(o, "replace");
    if (rp) {
        const char *id = json_string_value(rp);
        if (!id || strlen(id) != json_string_length(rp) || !pki_node_id_valid(id))
            return p2p__fail(err, -EINVAL, "tokens[%zu].replace: must be a node id", idx);
        snprintf(e->replace, sizeof e->replace, "%s", id);
    }
    return 0;
}

int jointoken_table_from_json(const json_t *doc, jointoken_table **out, char **err)
{
    if (!out)
        return p2p__fail(err, -EINVAL, "jointoken_table_from_json: NULL argument");
    if (!json_is_object(doc))
        return p2p__fail(err, -EINVAL, "join tokens: not a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)doc, key, v)
    {
        if (strcmp(key, "version") && strcmp(key, "tokens"))
            return p2p__fail(err, -EINVAL, "join tokens: unknown member");
    }
    json_t *ver = json_object_get(doc, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return p2p__fail(err, -EINVAL, "join tokens: version must be 1");
    json_t *tokens = json_object_get(doc, "tokens");
    if (!json_is_array(tokens))
        return p2p__fail(err, -EINVAL, "join tokens: 'tokens' must be an array");
    size_t n = json_array_size(tokens);
    if (n > JOINTOKEN_MAX_ENTRIES)
        return p2p__fail(err, -EINVAL, "join tokens: %zu entries, at most %d", n, JOINTOKEN_MAX_ENTRIES);
    jointoken_table *t = jointoken_table_new();
    for (size_t i = 0; i < n; i++) {
        entry e;
        int rc = parse_entry(json_array_get(tokens, i), i, &e, err);
        if (rc == 0 && find_id(t, e.hash) >= 0)
            rc = p2p__fail(err, -EINVAL, "tokens[%zu]: id already used by another entry", i);
        if (rc != 0) {
            jointoken_table_free(t);
            return rc;
        }
        push(t, &e);
    }
    *out = t;
    return 0;
}

void jointoken_secret_free(char *token)
{
    if (!token)
        return;
    OPENSSL_cleanse(token, strlen(token));
    free(token);
}
