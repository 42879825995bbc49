/*
 * vault.c — the encrypted vault (format and reasoning in vault.h).
 *
 * Layers, bottom up: the header codec (pure), PBKDF2 and AES-256-GCM over the
 * whole document, the JSON document codec, the in-memory entries (sorted arrays,
 * one per namespace, values in buffers we wipe), the atomic file write, and the
 * thread-pool jobs. An asynchronous save encrypts on the calling thread (fast,
 * and it snapshots the state without sharing it) and only the file write and
 * fsync run on the pool, so a worker never touches the vault itself.
 */
#include "vault/vault.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "p2p/p2p.h"

const char *const vault_namespaces[VAULT_NS_COUNT] = {"certificates", "keys", "config", "data"};

typedef struct entry {
    char *name;
    uint8_t *data; /* len bytes + a NUL, wiped before free */
    size_t len;
    uint64_t updated_at;
} entry;

typedef struct ns_table {
    entry *e; /* sorted by strcmp(name) */
    size_t n, cap;
} ns_table;

typedef struct save_waiter {
    vault_save_cb cb;
    void *arg;
} save_waiter;

typedef struct waiter_list {
    save_waiter *w;
    size_t n, cap;
} waiter_list;

typedef struct save_job save_job;

struct vault {
    char *path; /* NULL when opened from a buffer */
    uint32_t iterations;
    uint8_t salt[VAULT_SALT_LEN];
    uint8_t key[VAULT_KEY_LEN];
    ns_table ns[VAULT_NS_COUNT];
    unsigned saves_written;

    /* Asynchronous saves: at most one job runs; requests meanwhile collect in
     * `next` and become one more job when it finishes. */
    uv_loop_t *loop;
    save_job *running;
    int save_requested;
    waiter_list next;
    int in_callbacks; /* vault_close() from a save callback defers the free */
    int closing;
};

/* ---- errors -------------------------------------------------------------------------------- */


static void secret_free(void *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

void vault_secret_free(void *buf, size_t len)
{
    secret_free(buf, len);
}

/* ---- header codec (pure) ------------------------------------------------------------------- */

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void header_write(uint8_t *out, uint32_t iterations, const uint8_t *salt, const uint8_t *nonce)
{
    vault_wire_header h;
    memcpy(h.magic, VAULT_MAGIC, sizeof h.magic);
    put_be16(h.version, VAULT_FORMAT_VERSION);
    put_be16(h.kdf, VAULT_KDF_PBKDF2_SHA256);
    put_be32(h.iterations, iterations);
    memcpy(h.salt, salt, VAULT_SALT_LEN);
    memcpy(h.nonce, nonce, VAULT_NONCE_LEN);
    memcpy(out, &h, VAULT_HEADER_LEN);
}

/* The checks are ordered so that each message names the first thing wrong: a file
 * whose first bytes are not the magic is "not a vault" even when it is short; a
 * prefix of a real vault is "truncated". */
static int header_parse(const uint8_t *buf, size_t len, vault_header *out, char **err)
{
    const size_t magic_len = sizeof(((vault_wire_header *)0)->magic);
    size_t m = len < magic_len ? len : magic_len;
    if (m > 0 && memcmp(buf, VAULT_MAGIC, m) != 0)
        return p2p__fail(err, -EINVAL, "not a p2p vault (bad magic)");
    if (len < offsetof(vault_wire_header, kdf))
        return p2p__fail(err, -EBADMSG, "vault file is truncated (%zu bytes)", len);
    uint16_t version = get_be16(buf + offsetof(vault_wire_header, version));
    if (version != VAULT_FORMAT_VERSION)
        return p2p__fail(err, -EINVAL, "unsupported vault version %u (this build reads version %u)", version,
                    VAULT_FORMAT_VERSION);
    if (len < VAULT_MIN_FILE)
        return p2p__fail(err, -EBADMSG, "vault file is truncated (%zu bytes; a vault has at least %d)", len, VAULT_MIN_FILE);
    uint16_t kdf = get_be16(buf + offsetof(vault_wire_header, kdf));
    if (kdf != VAULT_KDF_PBKDF2_SHA256)
        return p2p__fail(err, -EINVAL, "unsupported key derivation id %u in the vault header", kdf);
    uint32_t iterations = get_be32(buf + offsetof(vault_wire_header, iterations));
    if (iterations < VAULT_FLOOR_ITERATIONS || iterations > VAULT_MAX_ITERATIONS)
        return p2p__fail(err, -EINVAL, "vault header claims %u key-derivation iterations (allowed %u..%u)", iterations,
                    VAULT_FLOOR_ITERATIONS, VAULT_MAX_ITERATIONS);
    out->version = version;
    out->kdf = kdf;
    out->iterations = iterations;
    memcpy(out->salt, buf + offsetof(vault_wire_header, salt), VAULT_SALT_LEN);
    memcpy(out->nonce, buf + offsetof(vault_wire_header, nonce), VAULT_NONCE_LEN);
    out->ciphertext_len = len - VAULT_MIN_FILE;
    return 0;
}

int vault_parse_header(const uint8_t *buf, size_t len, vault_header *out)
{
    if (!buf && len > 0)
        return -EINVAL;
    return header_parse(buf, len, out, NULL);
}

/* ---- crypto -------------------------------------------------------------------------------- */

static int derive_key(const char *password, const uint8_t *salt, uint32_t iterations, uint8_t *key)
{
    size_t pwlen = strlen(password);
    if (pwlen > INT_MAX || iterations > INT_MAX)
        return -EINVAL;
    if (PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, VAULT_SALT_LEN, (int)iterations, EVP_sha256(), VAULT_KEY_LEN,
                          key) != 1)
        return -EIO;
    return 0;
}

/* AES-256-GCM with the header as AAD. `out` has room for `len` bytes; `tag` is
 * written when encrypting and checked when decrypting. Lengths are bounded by
 * VAULT_MAX_FILE, far below INT_MAX. */
static int gcm(int encrypt, const uint8_t *key, const uint8_t *header, const uint8_t *in, size_t len, uint8_t *out,
               uint8_t *tag)
{
    if (len > INT_MAX)
        return -EFBIG;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c)
        return -ENOMEM;
    const uint8_t *nonce = header + offsetof(vault_wire_header, nonce);
    int n = 0, ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, encrypt) == 1 &&
                    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, VAULT_NONCE_LEN, NULL) == 1 &&
                    EVP_CipherInit_ex(c, NULL, NULL, key, nonce, encrypt) == 1 &&
                    EVP_CipherUpdate(c, NULL, &n, header, VAULT_HEADER_LEN) == 1;
    if (ok && len > 0)
        ok = EVP_CipherUpdate(c, out, &n, in, (int)len) == 1;
    if (ok && !encrypt)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, VAULT_TAG_LEN, tag) == 1;
    if (ok) /* GCM is a stream mode: Final writes nothing but checks (decrypt) or computes (encrypt) the tag */
        ok = EVP_CipherFinal_ex(c, out + len, &n) == 1;
    if (ok && encrypt)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VAULT_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : encrypt ? -EIO : -EBADMSG;
}

/* ---- names and entries --------------------------------------------------------------------- */

static int ns_index(const char *ns)
{
    if (!ns)
        return -EINVAL;
    for (int i = 0; i < VAULT_NS_COUNT; i++)
        if (strcmp(ns, vault_namespaces[i]) == 0)
            return i;
    return -EINVAL;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

static int name_valid(const char *name)
{
    if (!name)
        return 0;
    size_t len = strlen(name);
    if (len == 0 || len > VAULT_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return 0;
    return utf8_valid((const uint8_t *)name, len);
}

/* Index of `name` in t, or where it would go; *found says which. */
static size_t ns_find(const ns_table *t, const char *name, int *found)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->e[mid].name, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static void entry_clear(entry *e)
{
    secret_free(e->data, e->len + 1);
    free(e->name);
    memset(e, 0, sizeof *e);
}

/* Looks up ns/name after validating both. Returns the table, and the entry or NULL. */
static int lookup(const vault *v, const char *ns, const char *name, const ns_table **t, const entry **e)
{
    int i = ns_index(ns);
    if (i < 0 || !name_valid(name))
        return -EINVAL;
    int found;
    size_t at = ns_find(&v->ns[i], name, &found);
    *t = &v->ns[i];
    *e = found ? &v->ns[i].e[at] : NULL;
    return 0;
}

/* Inserts or replaces; takes ownership of `data` (len bytes + NUL). */
static void ns_set(ns_table *t, const char *name, uint8_t *data, size_t len, uint64_t updated_at)
{
    int found;
    size_t at = ns_find(t, name, &found);
    if (found) {
        entry *e = &t->e[at];
        secret_free(e->data, e->len + 1);
        e->data = data;
        e->len = len;
        e->updated_at = updated_at;
        return;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->e = p2p__xrealloc(t->e, t->cap * sizeof *t->e);
    }
    memmove(t->e + at + 1, t->e + at, (t->n - at) * sizeof *t->e);
    t->e[at] = (entry){.name = p2p__xstrdup(name), .data = data, .len = len, .updated_at = updated_at};
    t->n++;
}

static uint8_t *copy_value(const void *data, size_t len)
{
    uint8_t *p = p2p__xmalloc(len + 1);
    if (len)
        memcpy(p, data, len);
    p[len] = '\0';
    return p;
}

int vault_put(vault *v, const char *ns, const char *name, const void *data, size_t len)
{
    int i = ns_index(ns);
    if (!v || i < 0 || !name_valid(name) || (!data && len))
        return -EINVAL;
    if (len > VAULT_MAX_VALUE)
        return -EFBIG;
    ns_set(&v->ns[i], name, copy_value(data, len), len, p2p__wall_ms());
    return 0;
}

int vault_get(const vault *v, const char *ns, const char *name, uint8_t **buf, size_t *len)
{
    const ns_table *t;
    const entry *e;
    int r = v ? lookup(v, ns, name, &t, &e) : -EINVAL;
    if (r != 0)
        return r;
    if (!e)
        return -ENOENT;
    *buf = copy_value(e->data, e->len);
    *len = e->len;
    return 0;
}

char *vault_get_text(const vault *v, const char *ns, const char *name)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vault_get(v, ns, name, &buf, &len) != 0)
        return NULL;
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, buf, len + 1); /* vault_get NUL-terminates */
    }
    vault_secret_free(buf, len + 1);
    return s;
}

int vault_updated_at(const vault *v, const char *ns, const char *name, uint64_t *out_ms)
{
    const ns_table *t;
    const entry *e;
    int r = v ? lookup(v, ns, name, &t, &e) : -EINVAL;
    if (r != 0)
        return r;
    if (!e)
        return -ENOENT;
    *out_ms = e->updated_at;
    return 0;
}

int vault_remove(vault *v, const char *ns, const char *name)
{
    int i = ns_index(ns);
    if (!v || i < 0 || !name_valid(name))
        return -EINVAL;
    ns_table *t = &v->ns[i];
    int found;
    size_t at = ns_find(t, name, &found);
    if (!found)
        return -ENOENT;
    entry_clear(&t->e[at]);
    memmove(t->e + at, t->e + at + 1, (t->n - at - 1) * sizeof *t->e);
    t->n--;
    return 0;
}

int vault_list(const vault *v, const char *ns, char ***names)
{
    int i = ns_index(ns);
    if (!v || i < 0)
        return -EINVAL;
    const ns_table *t = &v->ns[i];
    char **out = p2p__xcalloc(t->n + 1, sizeof *out);
    for (size_t k = 0; k < t->n; k++)
        out[k] = p2p__xstrdup(t->e[k].name);
    *names = out;
    return 0;
}

void vault_names_free(char **names)
{
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}

const char *vault_path(const vault *v)
{
    return v->path;
}

uint32_t vault_iterations(const vault *v)
{
    return v->iterations;
}

unsigned vault_saves_written(const vault *v)
{
    return v->saves_written;
}

/* ---- the JSON document --------------------------------------------------------------------- */

static int b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 (padded, no whitespace) into a new buffer with a trailing NUL. */
static int b64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    if (len % 4 != 0)
        return -EINVAL;
    size_t pad = 0;
    if (len >= 1 && s[len - 1] == '=')
        pad++;
    if (len >= 2 && s[len - 2] == '=')
        pad++;
    size_t n = len / 4 * 3 - pad;
    if (n > VAULT_MAX_VALUE)
        return -EFBIG;
    uint8_t *buf = p2p__xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t acc = 0;
        for (size_t k = 0; k < 4; k++) {
            uint8_t c = (uint8_t)s[i + k];
            int d = b64_value(c);
            if (d < 0 && !(c == '=' && i + k >= len - pad)) {
                secret_free(buf, n + 1);
                return -EINVAL;
            }
            acc = acc << 6 | (uint32_t)(d < 0 ? 0 : d);
        }
        uint8_t tri[3] = {(uint8_t)(acc >> 16), (uint8_t)(acc >> 8), (uint8_t)acc};
        for (size_t k = 0; k < 3 && o < n; k++)
            buf[o++] = tri[k];
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

static json_t *value_to_json(const entry *e)
{
    json_t *obj = json_object();
    json_t *str = memchr(e->data, 0, e->len) ? NULL : json_stringn((const char *)e->data, e->len);
    if (!str) { /* not UTF-8 text: base64 */
        size_t cap = 4 * ((e->len + 2) / 3) + 1;
        uint8_t *b64 = p2p__xmalloc(cap);
        int n = EVP_EncodeBlock(b64, e->data, (int)e->len);
        str = json_stringn((const char *)b64, n > 0 ? (size_t)n : 0);
        secret_free(b64, cap);
        json_object_set_new(obj, "encoding", json_string("base64"));
    }
    json_object_set_new(obj, "value", str);
    json_object_set_new(obj, "updated_at", json_integer((json_int_t)e->updated_at));
    return obj;
}

static json_t *doc_build(const vault *v)
{
    json_t *entries = json_object();
    for (int i = 0; i < VAULT_NS_COUNT; i++) {
        json_t *nsobj = json_object();
        for (size_t k = 0; k < v->ns[i].n; k++)
            json_object_set_new(nsobj, v->ns[i].e[k].name, value_to_json(&v->ns[i].e[k]));
        json_object_set_new(entries, vault_namespaces[i], nsobj);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set_new(doc, "entries", entries);
    return doc;
}

/* Dumps into a buffer of our own (json_dumpb writes straight into it), so the
 * serialized plaintext is wiped when freed. */
static int doc_dump(const vault *v, size_t flags, char **out, size_t *out_len)
{
    json_t *doc = doc_build(v);
    size_t need = json_dumpb(doc, NULL, 0, flags);
    if (need == 0) {
        json_decref(doc);
        return -ENOMEM;
    }
    char *buf = p2p__xmalloc(need + 1);
    size_t got = json_dumpb(doc, buf, need, flags);
    json_decref(doc);
    if (got != need) {
        secret_free(buf, need + 1);
        return -EIO;
    }
    buf[need] = '\0';
    *out = buf;
    *out_len = need;
    return 0;
}

int vault_export(const vault *v, int pretty, char **json, size_t *len)
{
    if (!v)
        return -EINVAL;
    return doc_dump(v, pretty ? JSON_INDENT(2) : JSON_COMPACT, json, len);
}

static int decode_entry(vault *v, int nsi, const char *name, json_t *obj, char **err)
{
    const char *ns = vault_namespaces[nsi];
    if (!name_valid(name))
        return p2p__fail(err, -EBADMSG, "vault contents are malformed: bad entry name in %s", ns);
    json_t *value = json_object_get(obj, "value");
    json_t *enc = json_object_get(obj, "encoding");
    json_t *ts = json_object_get(obj, "updated_at");
    if (!json_is_object(obj) || !json_is_string(value) || (enc && !json_is_string(enc)) ||
        (ts && (!json_is_integer(ts) || json_integer_value(ts) < 0)))
        return p2p__fail(err, -EBADMSG, "vault contents are malformed: entry %s/%s", ns, name);
    const char *s = json_string_value(value);
    size_t slen = json_string_length(value);
    uint8_t *data;
    size_t len;
    if (!enc) {
        if (slen > VAULT_MAX_VALUE)
            return p2p__fail(err, -EBADMSG, "vault contents are malformed: entry %s/%s is too large", ns, name);
        data = copy_value(s, slen);
        len = slen;
    } else if (strcmp(json_string_value(enc), "base64") == 0) {
        if (b64_decode(s, slen, &data, &len) != 0)
            return p2p__fail(err, -EBADMSG, "vault contents are malformed: entry %s/%s: bad base64", ns, name);
    } else {
        return p2p__fail(err, -EBADMSG, "vault contents are malformed: entry %s/%s: unknown encoding", ns, name);
    }
    ns_set(&v->ns[nsi], name, data, len, ts ? (uint64_t)json_integer_value(ts) : 0);
    return 0;
}

static int doc_decode(vault *v, const uint8_t *text, size_t len, char **err)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) { /* jerr.text may quote the plaintext: keep it out of the message */
        json_decref(doc);
        return p2p__fail(err, -EBADMSG, "vault contents are malformed: not a JSON object");
    }
    int r = 0;
    json_t *ver = json_object_get(doc, "version");
    json_t *entries = json_object_get(doc, "entries");
    if (!json_is_integer(ver) || !json_is_object(entries)) {
        r = p2p__fail(err, -EBADMSG, "vault contents are malformed: no version or entries");
        goto out;
    }
    if (json_integer_value(ver) != 1) {
        r = p2p__fail(err, -EINVAL, "unsupported vault contents version %lld", (long long)json_integer_value(ver));
        goto out;
    }
    const char *ns;
    json_t *nsobj;
    json_object_foreach(entries, ns, nsobj)
    {
        int i = ns_index(ns);
        if (i < 0 || !json_is_object(nsobj)) {
            r = p2p__fail(err, -EBADMSG, "vault contents are malformed: unknown namespace");
            goto out;
        }
        const char *name;
        json_t *obj;
        json_object_foreach(nsobj, name, obj)
        {
            if ((r = decode_entry(v, i, name, obj, err)) != 0)
                goto out;
        }
    }
out:
    json_decref(doc);
    return r;
}

/* ---- the vault object ---------------------------------------------------------------------- */

static vault *vault_new(const char *path)
{
    vault *v = p2p__xcalloc(1, sizeof *v);
    v->path = path ? p2p__xstrdup(path) : NULL;
    return v;
}

static void vault_free(vault *v)
{
    for (int i = 0; i < VAULT_NS_COUNT; i++) {
        for (size_t k = 0; k < v->ns[i].n; k++)
            entry_clear(&v->ns[i].e[k]);
        free(v->ns[i].e);
    }
    free(v->next.w);
    free(v->path);
    OPENSSL_cleanse(v, sizeof *v);
    free(v);
}

void vault_close(vault *v)
{
    if (!v)
        return;
    if (v->running || v->in_callbacks) {
        v->closing = 1; /* freed when the last save job finishes */
        return;
    }
    vault_free(v);
}

/* The whole file image with a fresh nonce: header, ciphertext, tag. */
static int vault_encode(const vault *v, uint8_t **file, size_t *file_len, char **err)
{
    char *text;
    size_t len;
    int r = doc_dump(v, JSON_COMPACT, &text, &len);
    if (r != 0)
        return p2p__fail(err, r, "cannot serialize the vault: %s", p2p_strerror(r));
    if (len > VAULT_MAX_FILE - VAULT_MIN_FILE) {
        secret_free(text, len + 1);
        return p2p__fail(err, -EFBIG, "the vault would exceed %u bytes", VAULT_MAX_FILE);
    }
    uint8_t nonce[VAULT_NONCE_LEN];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        secret_free(text, len + 1);
        return p2p__fail(err, -EIO, "the random generator failed");
    }
    size_t total = VAULT_MIN_FILE + len;
    uint8_t *out = p2p__xmalloc(total);
    header_write(out, v->iterations, v->salt, nonce);
    r = gcm(1, v->key, out, (const uint8_t *)text, len, out + VAULT_HEADER_LEN, out + VAULT_HEADER_LEN + len);
    secret_free(text, len + 1);
    if (r != 0) {
        free(out);
        return p2p__fail(err, r, "encryption failed");
    }
    *file = out;
    *file_len = total;
    return 0;
}

static int open_image(const char *path, const uint8_t *buf, size_t len, const char *password, const vault_opts *opts,
                      vault **out, char **err)
{
    vault_header h;
    int r = header_parse(buf, len, &h, err);
    if (r != 0)
        return r;
    uint32_t min_it = opts && opts->min_iterations ? opts->min_iterations : VAULT_MIN_ITERATIONS;
    uint32_t max_it = opts && opts->max_iterations ? opts->max_iterations : VAULT_MAX_ITERATIONS;
    if (min_it < VAULT_FLOOR_ITERATIONS)
        min_it = VAULT_FLOOR_ITERATIONS;
    if (h.iterations < min_it)
        return p2p__fail(err, -EINVAL, "vault header claims %u key-derivation iterations, fewer than the minimum %u",
                    h.iterations, min_it);
    if (h.iterations > max_it)
        return p2p__fail(err, -EINVAL, "vault header claims %u key-derivation iterations, more than the maximum %u",
                    h.iterations, max_it);
    vault *v = vault_new(path);
    v->iterations = h.iterations;
    memcpy(v->salt, h.salt, VAULT_SALT_LEN);
    if ((r = derive_key(password, h.salt, h.iterations, v->key)) != 0) {
        vault_free(v);
        return p2p__fail(err, r, "key derivation failed");
    }
    size_t ct_len = h.ciphertext_len;
    uint8_t *plain = p2p__xmalloc(ct_len + 1);
    uint8_t tag[VAULT_TAG_LEN];
    memcpy(tag, buf + VAULT_HEADER_LEN + ct_len, VAULT_TAG_LEN);
    r = gcm(0, v->key, buf, buf + VAULT_HEADER_LEN, ct_len, plain, tag);
    if (r != 0) {
        r = p2p__fail(err, -EBADMSG, "wrong password or corrupted file (authentication failed; AES-GCM cannot tell which)");
    } else {
        plain[ct_len] = '\0';
        r = doc_decode(v, plain, ct_len, err);
    }
    secret_free(plain, ct_len + 1);
    if (r != 0) {
        vault_free(v);
        return r;
    }
    *out = v;
    return 0;
}

int vault_open_buffer(const uint8_t *buf, size_t len, const char *password, const vault_opts *opts, vault **out,
                      char **err)
{
    if ((!buf && len) || !password || !out)
        return p2p__fail(err, -EINVAL, "invalid arguments");
    return open_image(NULL, buf, len, password, opts, out, err);
}

int vault_open_ex(const char *path, const char *password, const vault_opts *opts, vault **out, char **err)
{
    if (!path || !password || !out)
        return p2p__fail(err, -EINVAL, "invalid arguments");
    char *buf;
    size_t len;
    int r = p2p__read_file(path, VAULT_MAX_FILE, &buf, &len);
    if (r == -ENOENT)
        return p2p__fail(err, r, "no vault at %s", path);
    if (r == -EFBIG)
        return p2p__fail(err, -EINVAL, "%s is larger than %u bytes: not a p2p vault", path, VAULT_MAX_FILE);
    if (r != 0)
        return p2p__fail(err, r, "cannot read %s: %s", path, p2p_strerror(r));
    r = open_image(path, (const uint8_t *)buf, len, password, opts, out, err);
    free(buf);
    return r;
}

int vault_open(const char *path, const char *password, vault **out, char **err)
{
    return vault_open_ex(path, password, NULL, out, err);
}

/* ---- atomic file write --------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

/* Writes `data` to a new temp file beside `path`, fsyncs it, then renames it over
 * `path` (or, when `exclusive`, links it to `path`, which fails if `path` exists),
 * and fsyncs the directory so the new name is durable too. The temp file is
 * O_EXCL with a random name: two writers never share one. */
static int write_atomic(const char *path, const uint8_t *data, size_t len, int exclusive, char **err)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? p2p__xasprintf("%.*s", (int)(slash == path ? 1 : slash - path), path) : p2p__xstrdup(".");
    const char *base = slash ? slash + 1 : path;
    uint8_t rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        free(dir);
        return p2p__fail(err, -EIO, "the random generator failed");
    }
    char *tmp = p2p__xasprintf("%s/.%s.tmp.%02x%02x%02x%02x%02x%02x%02x%02x", dir, base, rnd[0], rnd[1], rnd[2], rnd[3],
                               rnd[4], rnd[5], rnd[6], rnd[7]);
    int r = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = p2p__fail(err, -errno, "cannot create a temporary file in %s: %s", dir, strerror(errno));
        goto out;
    }
    if ((r = write_all(fd, data, len)) == 0 && fsync(fd) != 0)
        r = -errno;
    if (r != 0) {
        close(fd);
        r = p2p__fail(err, r, "cannot write %s: %s", tmp, p2p_strerror(r));
        goto unlink_tmp;
    }
    if (close(fd) != 0) {
        r = p2p__fail(err, -errno, "cannot write %s: %s", tmp, strerror(errno));
        goto unlink_tmp;
    }
    if (exclusive) {
        if (link(tmp, path) != 0) {
            r = errno == EEXIST ? p2p__fail(err, -EEXIST, "%s already exists", path)
                                : p2p__fail(err, -errno, "cannot create %s: %s", path, strerror(errno));
            goto unlink_tmp;
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        r = p2p__fail(err, -errno, "cannot replace %s: %s", path, strerror(errno));
        goto unlink_tmp;
    }
    if ((r = fsync_dir(dir)) != 0)
        r = p2p__fail(err, r, "cannot sync directory %s: %s", dir, p2p_strerror(r));
    goto out;
unlink_tmp:
    unlink(tmp);
out:
    free(tmp);
    free(dir);
    return r;
}

/* ---- create, save, change password --------------------------------------------------------- */

static int check_new_password(const char *password, char **err)
{
    if (!password || !*password)
        return p2p__fail(err, -EINVAL, "the password must not be empty");
    return 0;
}

int vault_create(const char *path, const char *password, uint32_t iterations, vault **out, char **err)
{
    if (!path || !out)
        return p2p__fail(err, -EINVAL, "invalid arguments");
    int r = check_new_password(password, err);
    if (r != 0)
        return r;
    if (iterations == 0)
        iterations = VAULT_DEFAULT_ITERATIONS;
    if (iterations < VAULT_FLOOR_ITERATIONS || iterations > VAULT_MAX_ITERATIONS)
        return p2p__fail(err, -EINVAL, "iterations must be within %u..%u", VAULT_FLOOR_ITERATIONS, VAULT_MAX_ITERATIONS);
    struct stat st;
    if (lstat(path, &st) == 0) /* early, before the slow derivation; link() checks again */
        return p2p__fail(err, -EEXIST, "%s already exists", path);
    vault *v = vault_new(path);
    v->iterations = iterations;
    if (RAND_bytes(v->salt, VAULT_SALT_LEN) != 1) {
        vault_free(v);
        return p2p__fail(err, -EIO, "the random generator failed");
    }
    if ((r = derive_key(password, v->salt, iterations, v->key)) != 0) {
        vault_free(v);
        return p2p__fail(err, r, "key derivation failed");
    }
    uint8_t *file;
    size_t len;
    if ((r = vault_encode(v, &file, &len, err)) == 0) {
        r = write_atomic(path, file, len, 1, err);
        free(file);
    }
    if (r != 0) {
        vault_free(v);
        return r;
    }
    v->saves_written++;
    *out = v;
    return 0;
}

int vault_save(vault *v, char **err)
{
    if (!v || !v->path)
        return p2p__fail(err, -EINVAL, "this vault has no file");
    if (v->running || v->closing)
        return p2p__fail(err, -EBUSY, "an asynchronous save is in progress");
    uint8_t *file;
    size_t len;
    int r = vault_encode(v, &file, &len, err);
    if (r != 0)
        return r;
    r = write_atomic(v->path, file, len, 0, err);
    free(file);
    if (r == 0)
        v->saves_written++;
    return r;
}

int vault_passwd(vault *v, const char *new_password, uint32_t iterations, char **err)
{
    if (!v)
        return p2p__fail(err, -EINVAL, "invalid arguments");
    int r = check_new_password(new_password, err);
    if (r != 0)
        return r;
    if (iterations == 0)
        iterations = v->iterations;
    if (iterations < VAULT_FLOOR_ITERATIONS || iterations > VAULT_MAX_ITERATIONS)
        return p2p__fail(err, -EINVAL, "iterations must be within %u..%u", VAULT_FLOOR_ITERATIONS, VAULT_MAX_ITERATIONS);
    if (v->running || v->closing)
        return p2p__fail(err, -EBUSY, "an asynchronous save is in progress");
    uint8_t old_salt[VAULT_SALT_LEN], old_key[VAULT_KEY_LEN];
    uint32_t old_iterations = v->iterations;
    memcpy(old_salt, v->salt, sizeof old_salt);
    memcpy(old_key, v->key, sizeof old_key);
    v->iterations = iterations;
    if (RAND_bytes(v->salt, VAULT_SALT_LEN) != 1) {
        r = p2p__fail(err, -EIO, "the random generator failed");
    } else if ((r = derive_key(new_password, v->salt, v->iterations, v->key)) != 0) {
        r = p2p__fail(err, r, "key derivation failed");
    } else {
        r = vault_save(v, err);
    }
    if (r != 0) {
        v->iterations = old_iterations;
        memcpy(v->salt, old_salt, sizeof old_salt);
        memcpy(v->key, old_key, sizeof old_key);
    }
    OPENSSL_cleanse(old_key, sizeof old_key);
    return r;
}

/* ---- asynchronous save --------------------------------------------------------------------- */

struct save_job {
    uv_work_t req;
    vault *v;
    uint8_t *file; /* ciphertext image: nothing secret */
    size_t len;
    int status;
    char *err;
    waiter_list waiters;
};

static void waiters_add(waiter_list *l, vault_save_cb cb, void *arg)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->w = p2p__xrealloc(l->w, l->cap * sizeof *l->w);
    }
    l->w[l->n++] = (save_waiter){cb, arg};
}

static void waiters_call(waiter_list *l, int status, const char *err)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->w[i].cb)
            l->w[i].cb(status, err, l->w[i].arg);
}

static void save_work(uv_work_t *req)
{
    save_job *job = req->data;
    job->status = write_atomic(job->v->path, job->file, job->len, 0, &job->err);
    OPENSSL_thread_stop(); /* the temp name drew randomness: see open_work */
}

static void save_after(uv_work_t *req, int status);

/* Encrypts the current state and queues its write; takes over `waiters`. On an
 * error the waiters stay with the caller. */
static int save_start(vault *v, waiter_list *waiters, char **err)
{
    save_job *job = p2p__xcalloc(1, sizeof *job);
    int r = vault_encode(v, &job->file, &job->len, err);
    if (r == 0) {
        job->v = v;
        job->req.data = job;
        if ((r = uv_queue_work(v->loop, &job->req, save_work, save_after)) != 0)
            r = p2p__fail(err, r, "cannot queue the save: %s", uv_strerror(r));
    }
    if (r != 0) {
        free(job->file);
        free(job);
        return r;
    }
    job->waiters = *waiters;
    *waiters = (waiter_list){0};
    v->running = job;
    return 0;
}

static void save_after(uv_work_t *req, int status)
{
    save_job *job = req->data;
    vault *v = job->v;
    if (status == UV_ECANCELED && job->status == 0)
        job->status = -ECANCELED;
    if (job->status == 0)
        v->saves_written++;
    v->running = NULL;
    /* Start the coalesced save before the callbacks run, so it carries every change
     * made up to now; requests from the callbacks then coalesce behind it. */
    if (v->save_requested) {
        waiter_list pending = v->next;
        char *err = NULL;
        v->next = (waiter_list){0};
        v->save_requested = 0;
        int r = save_start(v, &pending, &err);
        if (r != 0) {
            v->in_callbacks++;
            waiters_call(&pending, r, err);
            v->in_callbacks--;
            free(pending.w);
        }
        free(err);
    }
    v->in_callbacks++;
    waiters_call(&job->waiters, job->status, job->err);
    v->in_callbacks--;
    free(job->waiters.w);
    free(job->err);
    free(job->file);
    free(job);
    if (v->closing && !v->running && !v->in_callbacks)
        vault_free(v);
}

int vault_save_async(vault *v, uv_loop_t *loop, vault_save_cb cb, void *arg)
{
    if (!v || !loop || !v->path || (v->loop && v->loop != loop))
        return -EINVAL;
    if (v->closing)
        return -EBUSY;
    v->loop = loop;
    if (v->running) {
        waiters_add(&v->next, cb, arg);
        v->save_requested = 1;
        return 0;
    }
    waiter_list one = {0};
    waiters_add(&one, cb, arg);
    int r = save_start(v, &one, NULL);
    free(one.w);
    return r;
}

/* ---- asynchronous open and create ---------------------------------------------------------- */

typedef struct open_job {
    uv_work_t req;
    char *path;
    char *password; /* wiped as soon as the key is derived */
    size_t password_len;
    vault_opts opts;
    int has_opts;
    int create;
    uint32_t iterations;
    vault_open_cb cb;
    void *arg;
    vault *result;
    int status;
    char *err;
} open_job;

static void open_work(uv_work_t *req)
{
    open_job *job = req->data;
    if (job->create)
        job->status = vault_create(job->path, job->password, job->iterations, &job->result, &job->err);
    else
        job->status =
            vault_open_ex(job->path, job->password, job->has_opts ? &job->opts : NULL, &job->result, &job->err);
    OPENSSL_cleanse(job->password, job->password_len);
    /* This thread of the pool drew randomness (a per-thread DRBG and error
     * state in OpenSSL): free them now. Pool threads are never joined before
     * OPENSSL_cleanup runs at exit, which leaves their per-thread state behind
     * unreachable (LeakSanitizer reports it); the next use simply makes it again. */
    OPENSSL_thread_stop();
}

static void open_job_free(open_job *job)
{
    secret_free(job->password, job->password_len + 1);
    free(job->path);
    free(job->err);
    free(job);
}

static void open_after(uv_work_t *req, int status)
{
    open_job *job = req->data;
    if (status == UV_ECANCELED) {
        job->status = -ECANCELED;
        job->result = NULL;
    }
    job->cb(job->status == 0 ? job->result : NULL, job->status, job->status ? job->err : NULL, job->arg);
    open_job_free(job);
}

static int open_queue(uv_loop_t *loop, const char *path, const char *password, const vault_opts *opts, int create,
                      uint32_t iterations, vault_open_cb cb, void *arg)
{
    if (!loop || !path || !password || !cb)
        return -EINVAL;
    open_job *job = p2p__xcalloc(1, sizeof *job);
    job->req.data = job;
    job->path = p2p__xstrdup(path);
    job->password = p2p__xstrdup(password);
    job->password_len = strlen(password);
    if (opts) {
        job->opts = *opts;
        job->has_opts = 1;
    }
    job->create = create;
    job->iterations = iterations;
    job->cb = cb;
    job->arg = arg;
    int r = uv_queue_work(loop, &job->req, open_work, open_after);
    if (r != 0)
        open_job_free(job);
    return r;
}

int vault_open_async_ex(uv_loop_t *loop, const char *path, const char *password, const vault_opts *opts,
                        vault_open_cb cb, void *arg)
{
    return open_queue(loop, path, password, opts, 0, 0, cb, arg);
}

int vault_open_async(uv_loop_t *loop, const char *path, const char *password, vault_open_cb cb, void *arg)
{
    return open_queue(loop, path, password, NULL, 0, 0, cb, arg);
}

int vault_create_async(uv_loop_t *loop, const char *path, const char *password, uint32_t iterations, vault_open_cb cb,
                       void *arg)
{
    return open_queue(loop, path, password, NULL, 1, iterations, cb, arg);
}
