/*
 * store.c — the segment store (see store.h): per-node segment files, the
 * in-memory rings, read-back at start, retention and clearing.
 *
 * Read-back at start reads segments newest first and stops as soon as the ring
 * is full, so start-up time is bounded by max_log_entries, not by how much is
 * kept on disk; the oldest record's time comes from the first frame of the
 * oldest segment (one small read).
 */
#include "logs/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "logs/segment.h"
#include "pki/pki.h"

/* ---- the ring --------------------------------------------------------------- */

static void ring_push(logstream *st, logrec *r)
{
    if (st->count == st->cap) {
        logrec *old = st->ring[st->head];
        st->lines[old->level]--;
        logrec_unref(old);
        st->ring[st->head] = logrec_ref(r);
        st->head = (st->head + 1) % st->cap;
    } else {
        st->ring[(st->head + st->count) % st->cap] = logrec_ref(r);
        st->count++;
    }
    st->lines[r->level]++;
}

static void ring_clear(logstream *st)
{
    for (size_t i = 0; i < st->count; i++)
        logrec_unref(logstream_at(st, i));
    st->head = st->count = 0;
    memset(st->lines, 0, sizeof st->lines);
}

/* ---- segment files ------------------------------------------------------------ */

static char *seg_path(const logstream *st, uint64_t base)
{
    return p2p__xasprintf("%s/%020" PRIu64 ".seg", st->dir, base);
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Starts a new segment named hwm + 1 and makes it the one appended to. */
static int seg_create(logstore *s, logstream *st, int64_t now_s)
{
    uint64_t base = st->hwm + 1;
    if (st->n_segs && st->segs[st->n_segs - 1].base == base && st->fd >= 0)
        return 0; /* the newest is still empty */
    char *path = seg_path(st, base);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    free(path);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, LOGSEG_MAGIC, LOGSEG_MAGIC_LEN);
    if (r) {
        close(fd);
        return r;
    }
    if (st->fd >= 0)
        close(st->fd);
    st->fd = fd;
    st->dirty = st->dir_dirty = 1;
    if (st->n_segs && st->segs[st->n_segs - 1].base == base) {
        s->total_bytes -= st->segs[st->n_segs - 1].bytes; /* same name, recreated */
        st->n_segs--;
    }
    st->segs = p2p__xrealloc(st->segs, (st->n_segs + 1) * sizeof(*st->segs));
    st->segs[st->n_segs++] = (logseg_info){base, LOGSEG_MAGIC_LEN, now_s};
    s->total_bytes += LOGSEG_MAGIC_LEN;
    return 0;
}

/* Reads the first record of a segment (for the oldest time on disk). */
static int64_t seg_first_ts(const logstream *st, uint64_t base)
{
    char *path = seg_path(st, base);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return 0;
    size_t cap = LOGSEG_MAGIC_LEN + LOGSEG_FRAME_HDR + LOGSEG_MAX_PAYLOAD;
    uint8_t *buf = p2p__xmalloc(cap);
    ssize_t n = pread(fd, buf, cap, 0);
    close(fd);
    int64_t ts = 0;
    size_t off = LOGSEG_MAGIC_LEN;
    const uint8_t *p;
    size_t plen;
    if (n > 0 && logseg_check_magic(buf, (size_t)n) && logseg_next(buf, (size_t)n, &off, &p, &plen) == 1) {
        json_t *o = json_loadb((const char *)p, plen, 0, NULL);
        char why[100];
        logrec *r = logrec_from_json(o, st->node, 0, why, sizeof why);
        if (r)
            ts = r->ts_us;
        logrec_unref(r);
        json_decref(o);
    }
    free(buf);
    return ts;
}

static void seg_delete(logstore *s, logstream *st, size_t i)
{
    char *path = seg_path(st, st->segs[i].base);
    unlink(path);
    free(path);
    s->total_bytes -= st->segs[i].bytes;
    s->deleted_segments++;
    memmove(&st->segs[i], &st->segs[i + 1], (st->n_segs - i - 1) * sizeof(*st->segs));
    st->n_segs--;
    st->oldest_ts_us = st->n_segs ? seg_first_ts(st, st->segs[0].base) : 0;
}

/* ---- opening: read back ------------------------------------------------------------ */

static int cmp_seg(const void *a, const void *b)
{
    const logseg_info *x = a, *y = b;
    return x->base < y->base ? -1 : x->base > y->base;
}

static logstream *stream_new(logstore *s, const char *node)
{
    logstream *st = p2p__xcalloc(1, sizeof(*st));
    snprintf(st->node, sizeof st->node, "%s", node);
    st->dir = p2p__xasprintf("%s/%s", s->dir, node);
    st->fd = -1;
    st->cap = s->cfg.max_entries ? s->cfg.max_entries : 1;
    st->ring = p2p__xcalloc(st->cap, sizeof(logrec *));
    return st;
}

static void stream_free(logstream *st)
{
    ring_clear(st);
    if (st->fd >= 0)
        close(st->fd);
    free(st->ring);
    free(st->segs);
    free(st->dir);
    free(st);
}

/* Decodes the frames of one segment file into recs (appended). Returns the
 * length of the valid prefix. */
static size_t seg_read(const logstream *st, const uint8_t *buf, size_t len, logrec ***recs, size_t *n, size_t *cap)
{
    if (!logseg_check_magic(buf, len))
        return 0;
    size_t off = LOGSEG_MAGIC_LEN;
    const uint8_t *p;
    size_t plen;
    int r;
    while ((r = logseg_next(buf, len, &off, &p, &plen)) == 1) {
        json_t *o = json_loadb((const char *)p, plen, 0, NULL);
        char why[100];
        logrec *rec = logrec_from_json(o, st->node, 0, why, sizeof why);
        json_decref(o);
        if (!rec)
            continue; /* a frame with a good CRC but no record: written by another version; skip it */
        rec->disk_bytes = LOGSEG_FRAME_HDR + plen;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            *recs = p2p__xrealloc(*recs, *cap * sizeof(logrec *));
        }
        (*recs)[(*n)++] = rec;
    }
    return off;
}

static int stream_load(logstore *s, logstream *st, char **err)
{
    DIR *d = opendir(st->dir);
    if (!d)
        return p2p__fail(err, -errno, "cannot open %s: %s", st->dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl != 24 || strcmp(e->d_name + 20, ".seg") != 0 || strspn(e->d_name, "0123456789") != 20)
            continue;
        char *path = p2p__xasprintf("%s/%s", st->dir, e->d_name);
        struct stat sb;
        int ok = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
        free(path);
        if (!ok)
            continue;
        st->segs = p2p__xrealloc(st->segs, (st->n_segs + 1) * sizeof(*st->segs));
        st->segs[st->n_segs++] =
            (logseg_info){strtoull(e->d_name, NULL, 10), (uint64_t)sb.st_size, (int64_t)sb.st_mtime};
    }
    closedir(d);
    if (st->n_segs > 1)
        qsort(st->segs, st->n_segs, sizeof(*st->segs), cmp_seg);
    for (size_t i = 0; i < st->n_segs; i++)
        s->total_bytes += st->segs[i].bytes;
    if (st->n_segs)
        st->hwm = st->segs[st->n_segs - 1].base - 1;

    /* newest first, until the ring is full */
    logrec **all = NULL;
    size_t n_all = 0;
    for (size_t k = st->n_segs; k-- > 0 && n_all < st->cap;) {
        logseg_info *sg = &st->segs[k];
        char *path = seg_path(st, sg->base);
        char *buf = NULL;
        size_t len = 0;
        int r = p2p__read_file(path, (size_t)sg->bytes + 1, &buf, &len);
        if (r) {
            free(path);
            continue;
        }
        logrec **recs = NULL;
        size_t n = 0, cap = 0;
        size_t valid = seg_read(st, (const uint8_t *)buf, len, &recs, &n, &cap);
        free(buf);
        if (k == st->n_segs - 1 && (valid < len || valid < LOGSEG_MAGIC_LEN)) {
            /* a crash mid-write: cut the partial frame so appends follow whole records */
            if (valid < LOGSEG_MAGIC_LEN) {
                int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
                if (fd >= 0) {
                    (void)write_all(fd, LOGSEG_MAGIC, LOGSEG_MAGIC_LEN);
                    close(fd);
                }
                valid = LOGSEG_MAGIC_LEN;
            } else if (truncate(path, (off_t)valid) != 0) {
                valid = len;
            }
            if (len > valid)
                st->damaged_bytes += len - valid;
            s->total_bytes = s->total_bytes - sg->bytes + valid;
            sg->bytes = valid;
        }
        if (k == st->n_segs - 1) {
            for (size_t i = 0; i < n; i++)
                if (recs[i]->seq > st->hwm)
                    st->hwm = recs[i]->seq;
            if (n)
                st->newest_ts_us = recs[n - 1]->ts_us;
            st->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        }
        free(path);
        /* prepend this (older) segment's records */
        all = p2p__xrealloc(all, (n_all + n + 1) * sizeof(logrec *));
        if (n) {
            memmove(all + n, all, n_all * sizeof(logrec *));
            memcpy(all, recs, n * sizeof(logrec *));
        }
        n_all += n;
        free(recs);
        if (k < st->n_segs - 1 && !st->newest_ts_us && n)
            st->newest_ts_us = all[n_all - 1]->ts_us;
    }
    size_t from = n_all > st->cap ? n_all - st->cap : 0;
    for (size_t i = 0; i < n_all; i++) {
        if (i >= from) {
            ring_push(st, all[i]);
            if (all[i]->lost > 0)
                st->lost += (uint64_t)all[i]->lost;
            if (all[i]->suppressed > 0)
                st->suppressed += (uint64_t)all[i]->suppressed;
        }
        logrec_unref(all[i]);
    }
    free(all);
    st->oldest_ts_us = st->n_segs ? seg_first_ts(st, st->segs[0].base) : 0;
    return 0;
}

static int cmp_stream(const void *a, const void *b)
{
    return strcmp((*(logstream *const *)a)->node, (*(logstream *const *)b)->node);
}

int logstore_open(logstore **out, const logstore_cfg *cfg, char **err)
{
    int r = p2p__mkdir_p(cfg->dir, 0700);
    if (r)
        return p2p__fail(err, r, "cannot create %s: %s", cfg->dir, strerror(-r));
    logstore *s = p2p__xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    s->dir = p2p__xstrdup(cfg->dir);
    s->cfg.dir = s->dir;
    DIR *d = opendir(s->dir);
    if (!d) {
        r = p2p__fail(err, -errno, "cannot open %s: %s", s->dir, strerror(errno));
        logstore_close(s);
        return r;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!pki_node_id_valid(e->d_name) || e->d_name[0] == '.')
            continue;
        logstream *st = stream_new(s, e->d_name);
        s->streams = p2p__xrealloc(s->streams, (s->n + 1) * sizeof(*s->streams));
        s->streams[s->n++] = st;
    }
    closedir(d);
    if (s->n > 1)
        qsort(s->streams, s->n, sizeof(*s->streams), cmp_stream);
    for (size_t i = 0; i < s->n; i++) {
        r = stream_load(s, s->streams[i], err);
        if (r) {
            logstore_close(s);
            return r;
        }
    }
    *out = s;
    return 0;
}

void logstore_close(logstore *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        stream_free(s->streams[i]);
    free(s->streams);
    free(s->dir);
    free(s);
}

logstream *logstore_find(logstore *s, const char *node)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->streams[mid]->node, node);
        if (c == 0)
            return s->streams[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static logstream *stream_get(logstore *s, const char *node, int *err)
{
    logstream *st = logstore_find(s, node);
    if (st)
        return st;
    st = stream_new(s, node);
    int r = p2p__mkdir_p(st->dir, 0700);
    if (r) {
        *err = r;
        stream_free(st);
        return NULL;
    }
    size_t i = 0;
    while (i < s->n && strcmp(s->streams[i]->node, node) < 0)
        i++;
    s->streams = p2p__xrealloc(s->streams, (s->n + 1) * sizeof(*s->streams));
    memmove(&s->streams[i + 1], &s->streams[i], (s->n - i) * sizeof(*s->streams));
    s->streams[i] = st;
    s->n++;
    return st;
}

/* ---- appending ------------------------------------------------------------------ */

int logstore_append(logstore *s, const logbatch *b, logrec ***stored, size_t *n_stored, int64_t now_s)
{
    int r = 0;
    logstream *st = stream_get(s, b->node, &r);
    if (!st)
        return r;
    size_t first = 0;
    while (first < b->n && b->recs[first]->seq <= st->hwm)
        first++;
    *stored = b->recs + first;
    *n_stored = b->n - first;
    if (first == b->n)
        return 0; /* all resent: already stored */
    if (st->fd < 0 || st->segs[st->n_segs - 1].bytes >= s->cfg.segment_bytes) {
        r = seg_create(s, st, now_s);
        if (r)
            return r;
    }
    /* one buffer, one write: a batch lands whole or (after a cut-back) not at all */
    size_t cap = 0, len = 0;
    char *buf = NULL;
    char **payloads = p2p__xcalloc(b->n - first, sizeof(char *));
    size_t *plens = p2p__xcalloc(b->n - first, sizeof(size_t));
    for (size_t i = first; i < b->n; i++) {
        payloads[i - first] = logrec_encode(b->recs[i], &plens[i - first]);
        cap += LOGSEG_FRAME_HDR + plens[i - first];
    }
    buf = p2p__xmalloc(cap);
    for (size_t i = 0; i < b->n - first; i++) {
        logseg_frame_header((uint8_t *)buf + len, payloads[i], plens[i]);
        memcpy(buf + len + LOGSEG_FRAME_HDR, payloads[i], plens[i]);
        b->recs[first + i]->disk_bytes = LOGSEG_FRAME_HDR + plens[i];
        len += LOGSEG_FRAME_HDR + plens[i];
        free(payloads[i]);
    }
    free(payloads);
    free(plens);
    logseg_info *sg = &st->segs[st->n_segs - 1];
    r = write_all(st->fd, buf, len);
    free(buf);
    if (r) {
        if (ftruncate(st->fd, (off_t)sg->bytes) != 0) {
            /* cannot cut back: start a fresh segment; the reader stops at the damage */
            close(st->fd);
            st->fd = -1;
        }
        return r;
    }
    sg->bytes += len;
    sg->mtime_s = now_s;
    s->total_bytes += len;
    st->dirty = 1;
    for (size_t i = first; i < b->n; i++) {
        logrec *rec = b->recs[i];
        ring_push(st, rec);
        st->hwm = rec->seq;
        st->ingested++;
        if (rec->lost > 0)
            st->lost += (uint64_t)rec->lost;
        if (rec->suppressed > 0)
            st->suppressed += (uint64_t)rec->suppressed;
        if (!st->oldest_ts_us)
            st->oldest_ts_us = rec->ts_us;
        st->newest_ts_us = rec->ts_us;
    }
    return 0;
}

/* ---- clearing and retention -------------------------------------------------------- */

static int stream_clear(logstore *s, logstream *st, int64_t now_s)
{
    ring_clear(st);
    if (st->fd >= 0) {
        close(st->fd);
        st->fd = -1;
    }
    while (st->n_segs)
        seg_delete(s, st, st->n_segs - 1);
    st->lost = st->suppressed = 0;
    st->oldest_ts_us = st->newest_ts_us = 0;
    /* an empty segment named hwm + 1 keeps the high-water mark across a restart */
    return seg_create(s, st, now_s);
}

int logstore_clear(logstore *s, const char *node)
{
    int64_t now_s = (int64_t)(p2p__wall_ms() / 1000);
    if (node) {
        logstream *st = logstore_find(s, node);
        return st ? stream_clear(s, st, now_s) : -ENOENT;
    }
    int r = 0;
    for (size_t i = 0; i < s->n; i++) {
        int e = stream_clear(s, s->streams[i], now_s);
        if (e && !r)
            r = e;
    }
    return r;
}

size_t logstore_retention(logstore *s, int64_t now_s)
{
    size_t deleted = 0;
    int64_t cutoff = s->cfg.retention_days > 0 ? now_s - (int64_t)s->cfg.retention_days * 86400 : INT64_MIN;
    for (size_t i = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        /* an idle newest segment past the age limit: start a fresh one so it can go */
        if (st->n_segs && st->segs[st->n_segs - 1].mtime_s < cutoff &&
            st->segs[st->n_segs - 1].bytes > LOGSEG_MAGIC_LEN)
            (void)seg_create(s, st, now_s);
        while (st->n_segs > 1 && st->segs[0].mtime_s < cutoff) {
            seg_delete(s, st, 0);
            deleted++;
        }
    }
    while (s->total_bytes > s->cfg.retention_bytes) {
        /* the oldest segment of any node that is not a node's newest */
        logstream *victim = NULL;
        for (size_t i = 0; i < s->n; i++) {
            logstream *st = s->streams[i];
            if (st->n_segs > 1 && (!victim || st->segs[0].mtime_s < victim->segs[0].mtime_s ||
                                   (st->segs[0].mtime_s == victim->segs[0].mtime_s &&
                                    st->oldest_ts_us < victim->oldest_ts_us)))
                victim = st;
        }
        if (!victim)
            break;
        seg_delete(s, victim, 0);
        deleted++;
    }
    return deleted;
}

void logstore_take_dirty(logstore *s, int **fds, size_t *n_fds, char ***dirs, size_t *n_dirs)
{
    *fds = NULL;
    *dirs = NULL;
    *n_fds = *n_dirs = 0;
    for (size_t i = 0; i < s->n; i++) {
        logstream *st = s->streams[i];
        if (st->dirty && st->fd >= 0) {
            int fd = dup(st->fd);
            if (fd >= 0) {
                *fds = p2p__xrealloc(*fds, (*n_fds + 1) * sizeof(int));
                (*fds)[(*n_fds)++] = fd;
            }
        }
        if (st->dir_dirty) {
            *dirs = p2p__xrealloc(*dirs, (*n_dirs + 1) * sizeof(char *));
            (*dirs)[(*n_dirs)++] = p2p__xstrdup(st->dir);
        }
        st->dirty = st->dir_dirty = 0;
    }
}
