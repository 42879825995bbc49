/*
 * tarstream.c — compressed ustar streams for packages (see tarstream.h).
 *
 * Why our own: a package reader must refuse everything unusual, and the
 * smallest reader that does only ustar regular files is easier to audit than
 * a general archive library configured to refuse things. Writing is the
 * mirror image: fixed metadata (owner 0, mtime 0), so the same folder always
 * gives the same archive bytes before compression.
 */
#include "deploy/tarstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "core/util.h"

#define IN_CAP (64 * 1024)
#define OUT_CAP (128 * 1024)

struct p2p_ts_reader {
    int fd;
    const uint8_t *mem;
    size_t mem_len, mem_pos;
    int use_mem;
    int comp; /* 0 unknown, 1 zstd, 2 gzip */
    ZSTD_DStream *zd;
    z_stream zs;
    int zs_init;
    int frame_done, in_eof;
    uint8_t in_buf[IN_CAP];
    const uint8_t *in;
    size_t in_len, in_pos;
    uint8_t out[OUT_CAP];
    size_t out_len, out_pos;
    uint64_t total_in, total_out, max_out, grace;
    uint32_t ratio;
    /* tar */
    uint64_t data_left;
    size_t pad_left;
    int ended;
};

/* ---- input ---------------------------------------------------------------- */

/* Moves more compressed bytes into view; sets in_eof at the end of the source. */
static int fill_input(p2p_ts_reader *r, char **err)
{
    if (r->in_pos < r->in_len || r->in_eof)
        return 0;
    if (r->use_mem) {
        size_t n = r->mem_len - r->mem_pos;
        if (n > IN_CAP)
            n = IN_CAP;
        r->in = r->mem + r->mem_pos;
        r->mem_pos += n;
        r->in_len = n;
        r->in_pos = 0;
        if (n == 0)
            r->in_eof = 1;
        return 0;
    }
    size_t got = 0;
    while (got < IN_CAP) {
        ssize_t n = read(r->fd, r->in_buf + got, IN_CAP - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return p2p__fail(err, -errno, "cannot read the package: %s", strerror(errno));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    r->in = r->in_buf;
    r->in_len = got;
    r->in_pos = 0;
    if (got == 0)
        r->in_eof = 1;
    return 0;
}

static int detect(p2p_ts_reader *r, char **err)
{
    int rc = fill_input(r, err);
    if (rc != 0)
        return rc;
    const uint8_t *p = r->in + r->in_pos;
    size_t n = r->in_len - r->in_pos;
    if (n >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd) {
        r->zd = ZSTD_createDStream();
        if (!r->zd || ZSTD_isError(ZSTD_DCtx_setParameter(r->zd, ZSTD_d_windowLogMax, P2P_TS_ZSTD_WINDOW_LOG)))
            return p2p__fail(err, -ENOMEM, "cannot start the zstd decompressor");
        r->comp = 1;
        return 0;
    }
    if (n >= 3 && p[0] == 0x1f && p[1] == 0x8b && p[2] == 0x08) {
        if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK)
            return p2p__fail(err, -ENOMEM, "cannot start the gzip decompressor");
        r->zs_init = 1;
        r->comp = 2;
        return 0;
    }
    return p2p__fail(err, -EINVAL, "not a package: neither a zstd nor a gzip stream");
}

/* After the one frame: nothing may follow. */
static int check_trailing(p2p_ts_reader *r, char **err)
{
    for (;;) {
        if (r->in_pos < r->in_len)
            return p2p__fail(err, -EINVAL, "data after the end of the compressed stream");
        if (r->in_eof)
            return 0;
        int rc = fill_input(r, err);
        if (rc != 0)
            return rc;
    }
}

/* Decompresses the next chunk into r->out. >0: bytes ready; 0: the stream is
 * complete; <0: error. */
static long produce(p2p_ts_reader *r, char **err)
{
    r->out_pos = r->out_len = 0;
    if (r->frame_done)
        return 0;
    if (!r->comp) {
        int rc = detect(r, err);
        if (rc != 0)
            return rc;
    }
    for (int idle = 0;; ) {
        int rc = fill_input(r, err);
        if (rc != 0)
            return rc;
        size_t before = r->in_pos;
        if (r->comp == 1) {
            ZSTD_inBuffer ib = {r->in, r->in_len, r->in_pos};
            ZSTD_outBuffer ob = {r->out, OUT_CAP, 0};
            size_t zr = ZSTD_decompressStream(r->zd, &ob, &ib);
            if (ZSTD_isError(zr))
                return p2p__fail(err, -EBADMSG, "corrupt zstd stream: %s", ZSTD_getErrorName(zr));
            r->in_pos = ib.pos;
            r->out_len = ob.pos;
            if (zr == 0)
                r->frame_done = 1;
        } else {
            r->zs.next_in = (Bytef *)(uintptr_t)(r->in + r->in_pos);
            r->zs.avail_in = (uInt)(r->in_len - r->in_pos);
            r->zs.next_out = r->out;
            r->zs.avail_out = OUT_CAP;
            int zr = inflate(&r->zs, Z_NO_FLUSH);
            if (zr == Z_STREAM_END)
                r->frame_done = 1;
            else if (zr != Z_OK && zr != Z_BUF_ERROR)
                return p2p__fail(err, -EBADMSG, "corrupt gzip stream: %s", r->zs.msg ? r->zs.msg : "inflate failed");
            r->in_pos = r->in_len - r->zs.avail_in;
            r->out_len = OUT_CAP - r->zs.avail_out;
        }
        r->total_in += r->in_pos - before;
        r->total_out += r->out_len;
        if (r->total_out > r->max_out)
            return p2p__fail(err, -EFBIG, "the package expands to more than %llu bytes",
                             (unsigned long long)r->max_out);
        if (r->ratio && r->total_out > r->grace && r->total_out / (r->total_in ? r->total_in : 1) > r->ratio)
            return p2p__fail(err, -EFBIG,
                             "compression ratio above %u:1 (%llu bytes from %llu): refused as a decompression bomb",
                             r->ratio, (unsigned long long)r->total_out, (unsigned long long)r->total_in);
        if (r->frame_done && (rc = check_trailing(r, err)) != 0)
            return rc;
        if (r->out_len > 0)
            return (long)r->out_len;
        if (r->frame_done)
            return 0;
        if (r->in_pos == r->in_len && r->in_eof)
            return p2p__fail(err, -EBADMSG, "truncated package: the compressed stream ends early");
        if (r->in_pos == before && ++idle > 4)
            return p2p__fail(err, -EBADMSG, "corrupt compressed stream (no progress)");
    }
}

static int read_exact(p2p_ts_reader *r, uint8_t *dst, size_t n, char **err)
{
    while (n > 0) {
        if (r->out_pos == r->out_len) {
            long got = produce(r, err);
            if (got < 0)
                return (int)got;
            if (got == 0)
                return p2p__fail(err, -EBADMSG, "truncated package: the archive ends early");
        }
        size_t k = r->out_len - r->out_pos;
        if (k > n)
            k = n;
        if (dst) {
            memcpy(dst, r->out + r->out_pos, k);
            dst += k;
        }
        r->out_pos += k;
        n -= k;
    }
    return 0;
}

static p2p_ts_reader *reader_new(uint64_t max_out, uint32_t max_ratio, uint64_t grace)
{
    p2p_ts_reader *r = p2p__xcalloc(1, sizeof(*r));
    r->fd = -1;
    r->max_out = max_out;
    r->ratio = max_ratio;
    r->grace = grace;
    return r;
}

p2p_ts_reader *p2p__ts_reader_fd(int fd, uint64_t max_out, uint32_t max_ratio, uint64_t ratio_grace)
{
    p2p_ts_reader *r = reader_new(max_out, max_ratio, ratio_grace);
    r->fd = fd;
    return r;
}

p2p_ts_reader *p2p__ts_reader_mem(const uint8_t *buf, size_t len, uint64_t max_out, uint32_t max_ratio,
                                  uint64_t ratio_grace)
{
    p2p_ts_reader *r = reader_new(max_out, max_ratio, ratio_grace);
    r->use_mem = 1;
    r->mem = buf;
    r->mem_len = len;
    return r;
}

void p2p__ts_reader_free(p2p_ts_reader *r)
{
    if (!r)
        return;
    if (r->zd)
        ZSTD_freeDStream(r->zd);
    if (r->zs_init)
        inflateEnd(&r->zs);
    free(r);
}

int p2p__ts_compression(const p2p_ts_reader *r) { return r->comp; }
uint64_t p2p__ts_in_bytes(const p2p_ts_reader *r) { return r->total_in; }
uint64_t p2p__ts_out_bytes(const p2p_ts_reader *r) { return r->total_out; }

/* ---- ustar headers ----------------------------------------------------------- */

int p2p__ts_path_ok(const char *path)
{
    size_t len = strlen(path);
    if (len == 0 || len > P2P_TS_MAX_NAME || path[0] == '/')
        return 0;
    const char *comp = path;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '/' || c == '\0') {
            size_t cl = (size_t)(path + i - comp);
            if (cl == 0 || (cl == 1 && comp[0] == '.') || (cl == 2 && comp[0] == '.' && comp[1] == '.'))
                return 0;
            comp = path + i + 1;
            continue;
        }
        if (c < 0x20 || c > 0x7e || c == '\\')
            return 0;
    }
    return 1;
}

/* A numeric field: optional leading spaces, octal digits, then NUL or spaces
 * to its end. Base-256 (high bit set) is refused. */
static int parse_octal(const uint8_t *f, size_t n, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    int digits = 0;
    while (i < n && f[i] == ' ')
        i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++, digits++) {
        if (v > (UINT64_MAX >> 3))
            return -1;
        v = (v << 3) | (uint64_t)(f[i] - '0');
    }
    if (!digits)
        return -1;
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    *out = v;
    return 0;
}

/* A string field: text, then only NULs (nothing hidden after the terminator). */
static int field_str(const uint8_t *f, size_t n, char *out)
{
    size_t len = 0;
    while (len < n && f[len])
        len++;
    for (size_t i = len; i < n; i++)
        if (f[i])
            return -1;
    memcpy(out, f, len);
    out[len] = '\0';
    return (int)len;
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static const char *type_name(uint8_t t)
{
    switch (t) {
    case '1': return "a hard link";
    case '2': return "a symbolic link";
    case '3': return "a character device";
    case '4': return "a block device";
    case '5': return "a directory entry";
    case '6': return "a fifo";
    case '7': return "a contiguous file";
    case 'x': case 'g': return "a pax extended header";
    case 'L': case 'K': return "a GNU long name";
    default: return "an unknown entry type";
    }
}

/* The end: the second zero block, then zeros to the end of a complete stream. */
static int read_end(p2p_ts_reader *r, char **err)
{
    uint8_t blk[P2P_TS_BLOCK];
    int rc = read_exact(r, blk, sizeof blk, err);
    if (rc != 0)
        return rc;
    if (!all_zero(blk, sizeof blk))
        return p2p__fail(err, -EINVAL, "malformed archive: a single zero block before more entries");
    for (;;) {
        if (r->out_pos < r->out_len) {
            if (!all_zero(r->out + r->out_pos, r->out_len - r->out_pos))
                return p2p__fail(err, -EINVAL, "data after the end of the archive");
            r->out_pos = r->out_len;
        }
        long got = produce(r, err);
        if (got < 0)
            return (int)got;
        if (got == 0)
            break;
    }
    r->ended = 1;
    return 0;
}

int p2p__ts_next(p2p_ts_reader *r, p2p_ts_entry *e, char **err)
{
    if (r->ended)
        return 0;
    while (r->data_left > 0) { /* the caller did not read everything: skip it */
        uint8_t tmp[4096];
        long n = p2p__ts_read_data(r, tmp, sizeof tmp, err);
        if (n < 0)
            return (int)n;
    }
    uint8_t h[P2P_TS_BLOCK];
    int rc = read_exact(r, h, sizeof h, err);
    if (rc != 0)
        return rc;
    if (all_zero(h, sizeof h))
        return read_end(r, err);

    uint64_t sum_field, size, mode;
    if (parse_octal(h + 148, 8, &sum_field) != 0)
        return p2p__fail(err, -EINVAL, "malformed archive: bad header checksum field");
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof h; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    if (sum != sum_field)
        return p2p__fail(err, -EBADMSG, "malformed archive: header checksum mismatch");
    if (memcmp(h + 257, "ustar\0", 6) != 0 || memcmp(h + 263, "00", 2) != 0)
        return p2p__fail(err, -EINVAL, "malformed archive: not a POSIX ustar header");

    char name[101], prefix[156], link[101];
    if (field_str(h, 100, name) < 0 || field_str(h + 345, 155, prefix) < 0 || field_str(h + 157, 100, link) < 0)
        return p2p__fail(err, -EINVAL, "malformed archive: bytes after the end of a name");
    if (prefix[0])
        snprintf(e->name, sizeof e->name, "%s/%s", prefix, name);
    else
        snprintf(e->name, sizeof e->name, "%s", name);

    uint8_t type = h[156];
    if (type != '0' && type != '\0')
        return p2p__fail(err, -EINVAL, "refused entry '%.*s': %s (only regular files are allowed)", 100, e->name,
                         type_name(type));
    if (link[0])
        return p2p__fail(err, -EINVAL, "refused entry '%.*s': a regular file with a link name", 100, e->name);
    if (!p2p__ts_path_ok(e->name)) {
        char shown[64];
        size_t k = 0;
        for (size_t i = 0; e->name[i] && k + 1 < sizeof shown; i++)
            shown[k++] = (e->name[i] >= 0x20 && e->name[i] < 0x7f) ? e->name[i] : '?';
        shown[k] = '\0';
        return p2p__fail(err, -EINVAL,
                         "refused entry '%s': the path is absolute, empty, has '.' or '..', a backslash or a "
                         "non-printable byte",
                         shown);
    }
    if (h[124] & 0x80)
        return p2p__fail(err, -EINVAL, "refused entry '%s': base-256 size", e->name);
    if (parse_octal(h + 124, 12, &size) != 0)
        return p2p__fail(err, -EINVAL, "refused entry '%s': bad size field", e->name);
    if (parse_octal(h + 100, 8, &mode) != 0 || (mode & ~(uint64_t)0777) != 0)
        return p2p__fail(err, -EINVAL, "refused entry '%s': bad mode (setuid, setgid, sticky or not octal)",
                         e->name);
    e->size = size;
    e->mode = (unsigned)mode;
    r->data_left = size;
    r->pad_left = (size_t)((P2P_TS_BLOCK - size % P2P_TS_BLOCK) % P2P_TS_BLOCK);
    return 1;
}

long p2p__ts_read_data(p2p_ts_reader *r, uint8_t *buf, size_t n, char **err)
{
    if (r->data_left == 0)
        return 0;
    if (n > r->data_left)
        n = (size_t)r->data_left;
    int rc = read_exact(r, buf, n, err);
    if (rc != 0)
        return rc;
    r->data_left -= n;
    if (r->data_left == 0 && r->pad_left) {
        rc = read_exact(r, NULL, r->pad_left, err);
        r->pad_left = 0;
        if (rc != 0)
            return rc;
    }
    return (long)n;
}

/* ---- writing ----------------------------------------------------------------------- */

struct p2p_ts_writer {
    int fd, comp;
    ZSTD_CStream *zc;
    z_stream zs;
    int zs_init;
    uint64_t data_left;
    size_t pad;
    uint8_t out[OUT_CAP];
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Compresses `n` bytes (finish: and ends the stream) and writes the output. */
static int emit(p2p_ts_writer *w, const void *buf, size_t n, int finish)
{
    if (w->comp == 1) {
        ZSTD_inBuffer ib = {buf, n, 0};
        for (;;) {
            ZSTD_outBuffer ob = {w->out, OUT_CAP, 0};
            size_t zr = ZSTD_compressStream2(w->zc, &ob, &ib, finish ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(zr))
                return -EIO;
            int rc = write_all(w->fd, w->out, ob.pos);
            if (rc != 0)
                return rc;
            if (finish ? zr == 0 : ib.pos == ib.size)
                return 0;
        }
    }
    w->zs.next_in = (Bytef *)(uintptr_t)buf;
    w->zs.avail_in = (uInt)n;
    for (;;) {
        w->zs.next_out = w->out;
        w->zs.avail_out = OUT_CAP;
        int zr = deflate(&w->zs, finish ? Z_FINISH : Z_NO_FLUSH);
        if (zr == Z_STREAM_ERROR)
            return -EIO;
        int rc = write_all(w->fd, w->out, OUT_CAP - w->zs.avail_out);
        if (rc != 0)
            return rc;
        if (finish ? zr == Z_STREAM_END : (w->zs.avail_in == 0 && w->zs.avail_out != 0))
            return 0;
    }
}

p2p_ts_writer *p2p__ts_writer_new(int fd, int compression)
{
    p2p_ts_writer *w = p2p__xcalloc(1, sizeof(*w));
    w->fd = fd;
    w->comp = compression == 2 ? 2 : 1;
    if (w->comp == 1) {
        w->zc = ZSTD_createCStream();
        if (!w->zc || ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, 9)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_windowLog, P2P_TS_ZSTD_WINDOW_LOG)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1))) {
            p2p__ts_writer_abort(w);
            return NULL;
        }
    } else {
        if (deflateInit2(&w->zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(w);
            return NULL;
        }
        w->zs_init = 1;
    }
    return w;
}

int p2p__ts_write_header(p2p_ts_writer *w, const char *name, uint64_t size, unsigned mode)
{
    if (w->data_left || !p2p__ts_path_ok(name) || (mode & ~0777u))
        return -EINVAL;
    if (size > 077777777777ull)
        return -EFBIG;
    uint8_t h[P2P_TS_BLOCK] = {0};
    size_t len = strlen(name);
    if (len <= 100) {
        memcpy(h, name, len);
    } else {
        size_t cut = 0; /* the last '/' that leaves <= 155 before and 1..100 after */
        for (size_t i = 1; i < len && i <= 155; i++)
            if (name[i] == '/' && len - i - 1 <= 100 && len - i - 1 > 0)
                cut = i;
        if (!cut)
            return -ENAMETOOLONG;
        memcpy(h + 345, name, cut);
        memcpy(h, name + cut + 1, len - cut - 1);
    }
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%07o", mode & 0777u);
    memcpy(h + 100, tmp, 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf(tmp, sizeof tmp, "%011llo", (unsigned long long)size);
    memcpy(h + 124, tmp, 12);
    memcpy(h + 136, "00000000000", 12);
    h[156] = '0';
    memcpy(h + 257, "ustar\0", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof h; i++)
        sum += h[i];
    snprintf(tmp, sizeof tmp, "%06o", sum);
    memcpy(h + 148, tmp, 7); /* six digits, NUL, then the space already there */
    w->data_left = size;
    w->pad = (size_t)((P2P_TS_BLOCK - size % P2P_TS_BLOCK) % P2P_TS_BLOCK);
    return emit(w, h, sizeof h, 0);
}

int p2p__ts_write_data(p2p_ts_writer *w, const void *buf, size_t n)
{
    if (n > w->data_left)
        return -EINVAL;
    int rc = emit(w, buf, n, 0);
    if (rc != 0)
        return rc;
    w->data_left -= n;
    if (w->data_left == 0 && w->pad) {
        static const uint8_t zeros[P2P_TS_BLOCK];
        rc = emit(w, zeros, w->pad, 0);
        w->pad = 0;
    }
    return rc;
}

int p2p__ts_writer_finish(p2p_ts_writer *w)
{
    static const uint8_t zeros[2 * P2P_TS_BLOCK];
    int rc = w->data_left ? -EINVAL : emit(w, zeros, sizeof zeros, 0);
    if (rc == 0)
        rc = emit(w, NULL, 0, 1);
    p2p__ts_writer_abort(w);
    return rc;
}

void p2p__ts_writer_abort(p2p_ts_writer *w)
{
    if (!w)
        return;
    if (w->zc)
        ZSTD_freeCStream(w->zc);
    if (w->zs_init)
        deflateEnd(&w->zs);
    free(w);
}
