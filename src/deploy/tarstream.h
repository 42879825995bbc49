/*
 * tarstream.h — the byte layers under a package (package.h): a compressed
 * stream (zstd or gzip) read or written in bounded chunks, and the strict
 * ustar entries on top of it.
 *
 * Reading pulls: the tar layer asks for exact byte counts, the decompressor
 * produces them from a file descriptor or a memory buffer, counting what it
 * consumed and produced so that the caller's caps (total output, compression
 * ratio) are enforced during decompression, before a byte is used. Exactly
 * one compressed frame (zstd) or member (gzip) is accepted; trailing bytes
 * after it, a frame that ends early or a stream that stops mid-frame are
 * errors. The zstd window is limited to 2^P2P_TS_ZSTD_WINDOW_LOG bytes, so a
 * crafted frame cannot make the reader allocate more.
 */
#ifndef P2P_DEPLOY_TARSTREAM_H
#define P2P_DEPLOY_TARSTREAM_H

#include <stddef.h>
#include <stdint.h>

#define P2P_TS_BLOCK 512
#define P2P_TS_ZSTD_WINDOW_LOG 23 /* 8 MiB */
#define P2P_TS_MAX_NAME 255       /* prefix "/" name */

typedef struct p2p_ts_reader p2p_ts_reader;

/* A reader over `fd` (not closed by the reader) or over `buf`/`len`.
 * `max_out`: refuse producing more bytes than this; `max_ratio`: refuse when
 * output > max_ratio * input once output exceeds `ratio_grace`. */
p2p_ts_reader *p2p__ts_reader_fd(int fd, uint64_t max_out, uint32_t max_ratio, uint64_t ratio_grace);
p2p_ts_reader *p2p__ts_reader_mem(const uint8_t *buf, size_t len, uint64_t max_out, uint32_t max_ratio,
                                  uint64_t ratio_grace);
void p2p__ts_reader_free(p2p_ts_reader *r);

/* 1 = zstd, 2 = gzip (the values of p2p_pkg_compression), known after the
 * first read; 0 before. */
int p2p__ts_compression(const p2p_ts_reader *r);
uint64_t p2p__ts_in_bytes(const p2p_ts_reader *r);
uint64_t p2p__ts_out_bytes(const p2p_ts_reader *r);

/* One tar entry header, checked. */
typedef struct p2p_ts_entry {
    char name[P2P_TS_MAX_NAME + 2]; /* prefix (155) "/" name (100) NUL; longer than the max is refused */
    uint64_t size;
    unsigned mode; /* permission bits */
} p2p_ts_entry;

/* Reads the next header. 1 with *e filled, 0 at the end of the archive (two
 * zero blocks, then only zeros to the end of a complete stream), or a
 * negative errno with *err: -EINVAL for anything but a plain ustar regular
 * file with a checked name, -EFBIG for a cap, -EBADMSG for a truncated or
 * corrupt stream. The entry's data must be read with p2p__ts_read_data (all
 * of it) before the next header. */
int p2p__ts_next(p2p_ts_reader *r, p2p_ts_entry *e, char **err);
/* Reads up to `n` bytes of the current entry's data; returns the count (0 at
 * its end; the block padding is skipped) or a negative errno with *err. */
long p2p__ts_read_data(p2p_ts_reader *r, uint8_t *buf, size_t n, char **err);

/* 1 when `path` is an acceptable relative path: 1..P2P_TS_MAX_NAME bytes of
 * printable ASCII other than backslash, '/'-separated components never empty,
 * "." or "..", not starting with '/'. */
int p2p__ts_path_ok(const char *path);

/* ---- writing ---- */

typedef struct p2p_ts_writer p2p_ts_writer;

/* A writer compressing with `compression` (1 zstd, 2 gzip) into `fd`. */
p2p_ts_writer *p2p__ts_writer_new(int fd, int compression);
/* Writes a header for a regular file (name checked with p2p__ts_path_ok).
 * Then exactly `size` bytes with p2p__ts_write_data. 0 or a negative errno. */
int p2p__ts_write_header(p2p_ts_writer *w, const char *name, uint64_t size, unsigned mode);
int p2p__ts_write_data(p2p_ts_writer *w, const void *buf, size_t n);
/* Ends the archive (zero blocks) and the compressed stream, then frees the
 * writer. 0 or a negative errno (the writer is freed either way). */
int p2p__ts_writer_finish(p2p_ts_writer *w);
void p2p__ts_writer_abort(p2p_ts_writer *w);

#endif
