/*
 * spool.c — the log spool file: framing, scanning, and the blocking file
 * operations the shipper runs on the thread pool (format in spool.h).
 *
 * Why CRC32C per record and not one checksum per file: the file grows by
 * appends and loses its head by rewrites; a per-record check lets a reader
 * keep every record written before a crash and stop exactly at the first one
 * the crash damaged. The nibble-table CRC (16 entries, two lookups per byte)
 * is fast enough for a file that is written only while the coordinator is
 * unreachable, and needs no table built at run time.
 */
#include "logs/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

static const uint32_t crc_nibble[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

uint32_t p2p__crc32c(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
    }
    return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static const char magic[8] = {'P', '2', 'P', 'L', 'S', 'P', 'L', '1'};

void p2p__spool_header_encode(const p2p_spool_header *h, uint8_t out[P2P_SPOOL_HDR])
{
    memset(out, 0, P2P_SPOOL_HDR);
    memcpy(out, magic, 8);
    put32(out + 8, 1);
    put64(out + 16, h->reserved_seq);
    put64(out + 24, h->acked_seq);
    put32(out + 32, p2p__crc32c(0, out, 32));
}

int p2p__spool_header_decode(const uint8_t *buf, size_t len, p2p_spool_header *h)
{
    if (len < P2P_SPOOL_HDR || memcmp(buf, magic, 8) != 0 || get32(buf + 8) != 1 || get32(buf + 12) != 0 ||
        get32(buf + 32) != p2p__crc32c(0, buf, 32) || get32(buf + 36) != 0)
        return -EINVAL;
    p2p_spool_header v = {get64(buf + 16), get64(buf + 24)};
    if (v.acked_seq > v.reserved_seq)
        return -EINVAL;
    *h = v;
    return 0;
}

size_t p2p__spool_frame(uint64_t seq, const void *payload, size_t len, uint8_t *out)
{
    put32(out, (uint32_t)len);
    put64(out + 8, seq);
    memcpy(out + P2P_SPOOL_FRAME, payload, len);
    put32(out + 4, p2p__crc32c(0, out + 8, 8 + len));
    return P2P_SPOOL_FRAME + len;
}

size_t p2p__spool_scan(const uint8_t *buf, size_t len, uint64_t *last_seq, p2p_spool_scan_fn fn, void *arg,
                       int *stop)
{
    size_t off = 0;
    *stop = 0;
    while (off < len) {
        if (len - off < P2P_SPOOL_FRAME) {
            *stop = 1;
            break;
        }
        const uint8_t *f = buf + off;
        uint32_t n = get32(f);
        if (n == 0 || n > P2P_SPOOL_MAX_PAYLOAD) {
            *stop = -1;
            break;
        }
        if (len - off - P2P_SPOOL_FRAME < n) {
            *stop = 1;
            break;
        }
        uint64_t seq = get64(f + 8);
        if (get32(f + 4) != p2p__crc32c(0, f + 8, 8 + (size_t)n) || seq <= *last_seq) {
            *stop = -1;
            break;
        }
        if (fn)
            fn(arg, seq, f + P2P_SPOOL_FRAME, n, off);
        *last_seq = seq;
        off += P2P_SPOOL_FRAME + n;
    }
    return off;
}

/* ---- the file ------------------------------------------------------------------- */

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO; /* shorter than the index says */
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int sync_dir_of(const char *path)
{
    char *dir = p2p__xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return r;
}

typedef struct scan_state {
    p2p_spool_scan_fn fn;
    void *arg;
    uint64_t base; /* file offset of the scanned buffer */
    uint64_t max_seq;
} scan_state;

static void on_scanned(void *arg, uint64_t seq, const uint8_t *payload, size_t len, size_t off)
{
    scan_state *s = arg;
    s->max_seq = seq;
    if (s->fn)
        s->fn(s->arg, seq, payload, len, (size_t)(s->base + off));
}

/* Scans the records from P2P_SPOOL_HDR on, reading in pieces so memory stays
 * bounded whatever the file's size. Returns the end of the last good record. */
static int scan_file(int fd, uint64_t size, scan_state *s, uint64_t *good_end)
{
    size_t cap = 1u << 20;
    if (cap < P2P_SPOOL_FRAME + P2P_SPOOL_MAX_PAYLOAD)
        cap = P2P_SPOOL_FRAME + P2P_SPOOL_MAX_PAYLOAD;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    uint64_t off = P2P_SPOOL_HDR, last = 0;
    int r = 0;
    while (off < size) {
        size_t want = size - off < cap ? (size_t)(size - off) : cap;
        if ((r = pread_all(fd, buf, want, off)) != 0)
            break;
        int stop;
        s->base = off;
        size_t used = p2p__spool_scan(buf, want, &last, on_scanned, s, &stop);
        off += used;
        if (stop == -1 || used == 0 || (stop == 1 && off + (want - used) >= size))
            break; /* damaged, or a partial record at the very end; else read on from `off` */
    }
    free(buf);
    *good_end = off < size ? off : size;
    return r;
}

int p2p__spool_open(p2p_spool_file *f, const char *path, p2p_spool_scan_fn fn, void *arg, p2p_spool_loaded *out,
                    char **err)
{
    memset(out, 0, sizeof *out);
    f->fd = -1;
    f->path = p2p__xstrdup(path);
    char *dir = p2p__xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        int r = p2p__mkdir_p(dir, 0700);
        if (r != 0) {
            r = p2p__fail(err, r, "cannot create %s: %s", dir, strerror(-r));
            free(dir);
            return r;
        }
    }
    free(dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return p2p__fail(err, -errno, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return p2p__fail(err, e, "cannot stat %s: %s", path, strerror(-e));
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t hb[P2P_SPOOL_HDR];
    int have_hdr = size >= P2P_SPOOL_HDR && pread_all(fd, hb, sizeof hb, 0) == 0 &&
                   p2p__spool_header_decode(hb, sizeof hb, &out->hdr) == 0;
    if (!have_hdr && size >= 8 && memcmp(hb, magic, 8) != 0) {
        /* not ours: keep it for a human, start a new one */
        close(fd);
        char *bad = p2p__xasprintf("%s.bad", path);
        int rr = rename(path, bad);
        free(bad);
        if (rr != 0)
            return p2p__fail(err, -errno, "%s is not a log spool and cannot be moved aside: %s", path,
                             strerror(errno));
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return p2p__fail(err, -errno, "cannot open %s: %s", path, strerror(errno));
        size = 0;
    }
    scan_state s = {fn, arg, 0, 0};
    uint64_t end = P2P_SPOOL_HDR;
    if (size > P2P_SPOOL_HDR) {
        int r = scan_file(fd, size, &s, &end);
        if (r != 0) {
            close(fd);
            return p2p__fail(err, r, "cannot read %s: %s", path, strerror(-r));
        }
    }
    if (!have_hdr) {
        /* new, or the header was damaged: the records tell the highest seq used */
        out->fresh = size <= P2P_SPOOL_HDR;
        out->hdr.reserved_seq = s.max_seq;
        out->hdr.acked_seq = 0;
    } else if (s.max_seq > out->hdr.reserved_seq) {
        out->hdr.reserved_seq = s.max_seq;
    }
    if (size < P2P_SPOOL_HDR)
        size = P2P_SPOOL_HDR;
    out->cut_bytes = size > end ? size - end : 0;
    f->fd = fd;
    int r = 0;
    if (out->cut_bytes && ftruncate(fd, (off_t)end) != 0)
        r = -errno;
    if (r == 0 && (!have_hdr || out->cut_bytes))
        r = p2p__spool_write_header(f, &out->hdr, 1);
    if (r != 0) {
        p2p__spool_close(f);
        return p2p__fail(err, r, "cannot repair %s: %s", path, strerror(-r));
    }
    out->end = end;
    return 0;
}

void p2p__spool_close(p2p_spool_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    free(f->path);
    f->path = NULL;
}

int p2p__spool_write_header(p2p_spool_file *f, const p2p_spool_header *h, int sync)
{
    uint8_t hb[P2P_SPOOL_HDR];
    p2p__spool_header_encode(h, hb);
    int r = pwrite_all(f->fd, hb, sizeof hb, 0);
    if (r == 0 && sync && fdatasync(f->fd) != 0)
        r = -errno;
    return r;
}

int p2p__spool_append(p2p_spool_file *f, uint64_t off, const void *data, size_t len)
{
    int r = pwrite_all(f->fd, data, len, off);
    if (r == 0 && fdatasync(f->fd) != 0)
        r = -errno;
    if (r != 0)
        (void)!ftruncate(f->fd, (off_t)off); /* if this fails too, the reader stops at the partial record */
    return r;
}

int p2p__spool_read(p2p_spool_file *f, uint64_t off, void *buf, size_t len)
{
    return pread_all(f->fd, buf, len, off);
}

int p2p__spool_rewrite(p2p_spool_file *f, const p2p_spool_header *h, const p2p_spool_range *keep, size_t n)
{
    char *tmp = p2p__xasprintf("%s.tmp", f->path);
    uint8_t *buf = NULL;
    int r = 0;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    uint8_t hb[P2P_SPOOL_HDR];
    p2p__spool_header_encode(h, hb);
    if ((r = pwrite_all(fd, hb, sizeof hb, 0)) != 0)
        goto out;
    uint64_t woff = P2P_SPOOL_HDR;
    size_t cap = 1u << 20;
    buf = p2p__xmalloc(cap);
    for (size_t i = 0; i < n; i++) {
        for (uint64_t done = 0; done < keep[i].len;) {
            size_t piece = keep[i].len - done < cap ? (size_t)(keep[i].len - done) : cap;
            if ((r = pread_all(f->fd, buf, piece, keep[i].off + done)) != 0 ||
                (r = pwrite_all(fd, buf, piece, woff)) != 0)
                goto out;
            done += piece;
            woff += piece;
        }
    }
    if (fdatasync(fd) != 0 || rename(tmp, f->path) != 0) {
        r = -errno;
        goto out;
    }
    close(f->fd);
    f->fd = fd;
    fd = -1;
    sync_dir_of(f->path);
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(buf);
    free(tmp);
    return r;
}
