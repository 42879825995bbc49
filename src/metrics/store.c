/*
 * store.c — the dashboard's node table and its snapshot file (see store.h).
 */
#define _GNU_SOURCE
#include "metrics/store.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

#define RAW_MAGIC "P2PMH001"
#define FILE_MAGIC "P2PMHZ02"
#define MAX_RAW ((size_t)1 << 31)
#define MAX_NODE_JSON (4u << 20)

/* ---- table ---------------------------------------------------------------------------- */

dnode *dstore_find(const dstore *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->nodes[i]->id, id) == 0)
            return s->nodes[i];
    return NULL;
}

static dnode *node_new(const char *id)
{
    dnode *d = p2p__xcalloc(1, sizeof(*d));
    snprintf(d->id, sizeof d->id, "%s", id);
    mt_series_init(&d->series);
    return d;
}

static void node_free(dnode *d)
{
    mt_series_free(&d->series);
    json_decref(d->latest);
    json_decref(d->services);
    free(d);
}

static void push(dstore *s, dnode *d)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->nodes = p2p__xrealloc(s->nodes, s->cap * sizeof(*s->nodes));
    }
    s->nodes[s->n++] = d;
}

dnode *dstore_get_or_add(dstore *s, const char *id, size_t max)
{
    dnode *d = dstore_find(s, id);
    if (d || s->n >= max)
        return d;
    d = node_new(id);
    push(s, d);
    return d;
}

void dstore_remove(dstore *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->nodes[i]->id, id) == 0) {
            node_free(s->nodes[i]);
            memmove(&s->nodes[i], &s->nodes[i + 1], (s->n - i - 1) * sizeof(*s->nodes));
            s->n--;
            return;
        }
}

void dstore_free(dstore *s)
{
    for (size_t i = 0; i < s->n; i++)
        node_free(s->nodes[i]);
    free(s->nodes);
    memset(s, 0, sizeof(*s));
}

/* ---- raw form ------------------------------------------------------------------------- */

static uint8_t *put_bytes(uint8_t *o, const void *src, size_t n)
{
    memcpy(o, src, n);
    return o + n;
}

static void add_chunk(dsnap *s, uint8_t *p, size_t n)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->chunks = p2p__xrealloc(s->chunks, s->cap * sizeof(*s->chunks));
    }
    s->chunks[s->n++] = (dchunk){p, n};
}

void dsnap_begin(dsnap *s)
{
    memset(s, 0, sizeof(*s));
    add_chunk(s, NULL, 0); /* the header, once the count is known */
}

void dsnap_add_node(dsnap *s, const dnode *d)
{
    uint16_t il = (uint16_t)strlen(d->id), vl = (uint16_t)strlen(d->version);
    json_t *j = json_pack("{s:O?, s:O?}", "latest", d->latest, "services", d->services);
    char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(j);
    uint32_t jl = text ? (uint32_t)strlen(text) : 0;
    size_t sb = mt_series_bytes();
    size_t n = 2 + il + 2 + vl + 8 + 4 + jl + sb;
    uint8_t *p = p2p__xmalloc(n), *o = p; /* exactly its size: no growing copies */
    o = put_bytes(o, &il, 2);
    o = put_bytes(o, d->id, il);
    o = put_bytes(o, &vl, 2);
    o = put_bytes(o, d->version, vl);
    o = put_bytes(o, &d->last_report, 8);
    o = put_bytes(o, &jl, 4);
    o = put_bytes(o, text ? text : "", jl);
    free(text);
    mt_series_save(&d->series, o);
    add_chunk(s, p, n);
    s->count++;
}

void dsnap_finish(dsnap *s)
{
    uint8_t *h = p2p__xmalloc(24), *o = h;
    uint32_t order = 0x01020304u, nm = MT_NMETRICS, sb = (uint32_t)mt_series_bytes();
    o = put_bytes(o, RAW_MAGIC, 8);
    o = put_bytes(o, &order, 4);
    o = put_bytes(o, &nm, 4);
    o = put_bytes(o, &sb, 4);
    put_bytes(o, &s->count, 4);
    free(s->chunks[0].p);
    s->chunks[0] = (dchunk){h, 24};
}

/* The checksum: FNV-1a over 64-bit words (8 times fewer steps than bytes:
 * a 35 MB snapshot hashes in a few ms), the same for any split of the stream
 * into pieces, so the writer hashes the pieces and the reader the whole. */
typedef struct whash {
    uint64_t h;
    uint8_t carry[8];
    size_t nc;
} whash;

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static void wh_init(whash *w)
{
    w->h = FNV_OFFSET;
    w->nc = 0;
}

static void wh_word(whash *w, const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    w->h = (w->h ^ x) * FNV_PRIME;
}

static void wh_update(whash *w, const uint8_t *p, size_t n)
{
    while (w->nc && n) {
        w->carry[w->nc++] = *p++;
        n--;
        if (w->nc == 8) {
            wh_word(w, w->carry);
            w->nc = 0;
        }
    }
    for (; n >= 8; p += 8, n -= 8)
        wh_word(w, p);
    while (n--)
        w->carry[w->nc++] = *p++;
}

static uint64_t wh_final(whash *w)
{
    for (size_t i = 0; i < w->nc; i++)
        w->h = (w->h ^ w->carry[i]) * FNV_PRIME;
    w->h = (w->h ^ (uint64_t)w->nc) * FNV_PRIME;
    return w->h;
}

void dsnap_seal(dsnap *s)
{
    whash w;
    wh_init(&w);
    for (size_t i = 0; i < s->n; i++)
        wh_update(&w, s->chunks[i].p, s->chunks[i].n);
    uint64_t h = wh_final(&w);
    uint8_t *t = p2p__xmalloc(8);
    memcpy(t, &h, 8);
    add_chunk(s, t, 8);
}

size_t dsnap_bytes(const dsnap *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->chunks[i].n;
    return n;
}

void dsnap_free(dsnap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->chunks[i].p);
    free(s->chunks);
    memset(s, 0, sizeof(*s));
}

uint8_t *dstore_serialize(const dstore *s, size_t *len)
{
    dsnap sn;
    dsnap_begin(&sn);
    for (size_t i = 0; i < s->n; i++)
        dsnap_add_node(&sn, s->nodes[i]);
    dsnap_finish(&sn);
    dsnap_seal(&sn);
    size_t n = dsnap_bytes(&sn);
    uint8_t *out = p2p__xmalloc(n ? n : 1), *o = out;
    for (size_t i = 0; i < sn.n; i++)
        o = put_bytes(o, sn.chunks[i].p, sn.chunks[i].n);
    dsnap_free(&sn);
    *len = n;
    return out;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
} rbuf;

static int get(rbuf *r, void *dst, size_t n)
{
    if (r->n - r->off < n)
        return -1;
    memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 0;
}

static int id_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

int dstore_deserialize(dstore *s, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    rbuf r = {buf, len, 0};
    dstore out = {0};
    uint32_t order, nm, sb, count;
    char magic[8];
    const char *why = "truncated";
    if (len < 8 + 16 + 8 || get(&r, magic, 8) || memcmp(magic, RAW_MAGIC, 8) != 0) {
        why = "not a metrics snapshot";
        goto bad;
    }
    uint64_t h;
    memcpy(&h, buf + len - 8, 8);
    whash w;
    wh_init(&w);
    wh_update(&w, buf, len - 8);
    if (wh_final(&w) != h) {
        why = "checksum mismatch";
        goto bad;
    }
    r.n = len - 8;
    if (get(&r, &order, 4) || get(&r, &nm, 4) || get(&r, &sb, 4) || get(&r, &count, 4))
        goto bad;
    if (order != 0x01020304u || nm != MT_NMETRICS || sb != mt_series_bytes()) {
        why = "written by another architecture or version (byte order, metric set or tier sizes differ)";
        goto bad;
    }
    if (count > 1000000) {
        why = "node count out of range";
        goto bad;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint16_t il, vl;
        char id[64], ver[33];
        int64_t last;
        uint32_t jl;
        if (get(&r, &il, 2) || il == 0 || il >= sizeof id || get(&r, id, il))
            goto bad;
        id[il] = '\0';
        if (get(&r, &vl, 2) || vl >= sizeof ver || get(&r, ver, vl))
            goto bad;
        ver[vl] = '\0';
        if (get(&r, &last, 8) || get(&r, &jl, 4) || jl > MAX_NODE_JSON || r.n - r.off < jl)
            goto bad;
        if (!id_ok(id) || memchr(ver, '\0', vl) || dstore_find(&out, id)) {
            why = "bad or repeated node id";
            goto bad;
        }
        json_t *j = jl ? json_loadb((const char *)r.p + r.off, jl, 0, NULL) : NULL;
        r.off += jl;
        if (jl && !json_is_object(j)) {
            json_decref(j);
            why = "bad node JSON";
            goto bad;
        }
        if (r.n - r.off < sb) {
            json_decref(j);
            goto bad;
        }
        dnode *d = node_new(id);
        snprintf(d->version, sizeof d->version, "%s", ver);
        d->last_report = last;
        json_t *lt = json_object_get(j, "latest"), *sv = json_object_get(j, "services");
        d->latest = json_is_object(lt) ? json_incref(lt) : NULL;
        d->services = json_is_array(sv) ? json_incref(sv) : NULL;
        json_decref(j);
        push(&out, d);
        if (mt_series_load(&d->series, r.p + r.off, sb) != 0) {
            why = "inconsistent series";
            goto bad;
        }
        r.off += sb;
    }
    if (r.off != r.n) {
        why = "trailing bytes";
        goto bad;
    }
    dstore_free(s);
    *s = out;
    return 0;
bad:
    snprintf(err, errlen, "%s", why);
    dstore_free(&out);
    return -EINVAL;
}

/* ---- file ----------------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int dstore_write_file(const char *path, const dsnap *snap, size_t *file_bytes, char *err, size_t errlen)
{
    char *tmp = p2p__xasprintf("%s.tmp", path);
    uint8_t *z = NULL;
    size_t zcap = 0, total = 8;
    int r = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    r = write_all(fd, (const uint8_t *)FILE_MAGIC, 8);
    for (size_t i = 0; r == 0 && i < snap->n; i++) {
        const dchunk *c = &snap->chunks[i];
        if (c->n > (size_t)LZ4_MAX_INPUT_SIZE) {
            r = -EFBIG;
            break;
        }
        size_t cap = (size_t)LZ4_compressBound((int)c->n) + 8;
        if (cap > zcap) {
            zcap = cap;
            z = p2p__xrealloc(z, zcap);
        }
        int zn = LZ4_compress_default((const char *)c->p, (char *)z + 8, (int)c->n, (int)(cap - 8));
        if (zn <= 0) {
            r = -EIO;
            break;
        }
        uint32_t rl = (uint32_t)c->n, zl = (uint32_t)zn;
        memcpy(z, &rl, 4);
        memcpy(z + 4, &zl, 4);
        r = write_all(fd, z, (size_t)zn + 8);
        total += (size_t)zn + 8;
    }
    if (r == 0) {
        uint8_t end[8] = {0};
        r = write_all(fd, end, 8);
        total += 8;
    }
    if (r == 0 && fdatasync(fd) != 0)
        r = -errno;
    if (close(fd) != 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) != 0)
        r = -errno;
    if (r == 0) {
        char *dcopy = p2p__xstrdup(path);
        int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(dcopy);
        if (dfd >= 0) {
            if (fsync(dfd) != 0)
                r = -errno;
            close(dfd);
        }
    } else {
        unlink(tmp);
    }
out:
    if (r != 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(-r));
    else if (file_bytes)
        *file_bytes = total;
    free(z);
    free(tmp);
    return r;
}

int dstore_read_file(const char *path, uint8_t **raw, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 16 || (uint64_t)st.st_size > (uint64_t)MAX_RAW) {
        close(fd);
        snprintf(err, errlen, "%s: not a metrics snapshot (size)", path);
        return -EINVAL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *z = p2p__xmalloc(n);
    while (got < n) {
        ssize_t r = read(fd, z + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    /* first pass: the blocks' framing and the raw size */
    size_t off = 8, total = 0;
    int ok = got == n && memcmp(z, FILE_MAGIC, 8) == 0;
    while (ok) {
        uint32_t rl, zl;
        if (n - off < 8) {
            ok = 0;
            break;
        }
        memcpy(&rl, z + off, 4);
        memcpy(&zl, z + off + 4, 4);
        off += 8;
        if (!rl && !zl)
            break;
        if (!rl || !zl || zl > n - off || rl > MAX_RAW - total || rl > (uint32_t)LZ4_MAX_INPUT_SIZE) {
            ok = 0;
            break;
        }
        total += rl;
        off += zl;
    }
    if (!ok || off != n || total == 0) {
        free(z);
        snprintf(err, errlen, "%s: not a metrics snapshot (framing)", path);
        return -EINVAL;
    }
    uint8_t *out = p2p__xmalloc(total);
    size_t o = 0;
    off = 8;
    for (;;) {
        uint32_t rl, zl;
        memcpy(&rl, z + off, 4);
        memcpy(&zl, z + off + 4, 4);
        off += 8;
        if (!rl && !zl)
            break;
        int dn = LZ4_decompress_safe((const char *)z + off, (char *)out + o, (int)zl, (int)rl);
        if (dn < 0 || (uint32_t)dn != rl) {
            free(z);
            free(out);
            snprintf(err, errlen, "%s: damaged (a block does not inflate)", path);
            return -EINVAL;
        }
        o += rl;
        off += zl;
    }
    free(z);
    *raw = out;
    *len = total;
    return 0;
}
