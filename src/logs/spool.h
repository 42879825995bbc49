/*
 * spool.h — the log shipper's spool file: format and blocking file operations.
 *
 * The file (<state_directory>/log-spool) holds log records the coordinator
 * has not acknowledged yet, oldest first, and in its header the highest
 * sequence number the node may have handed out, so a restart never reuses one.
 *
 *   header, 40 bytes, little-endian:
 *     0  magic "P2PLSPL1"           8 bytes
 *     8  version (1)                u32
 *     12 flags (0)                  u32
 *     16 reserved_seq               u64  no record ever had a seq above this
 *     24 acked_seq                  u64  the collector acknowledged up to this
 *     32 crc32c of bytes 0..31      u32
 *     36 zero                       u32
 *   then records, each framed:
 *     0  payload length n           u32  1..P2P_SPOOL_MAX_PAYLOAD
 *     4  crc32c of bytes 8..16+n    u32  (the seq and the payload)
 *     8  seq                        u64  strictly increasing along the file
 *     16 payload                    n bytes (the record's JSON text)
 *
 * A crash can leave a partial last record (or garbage after it): the reader
 * takes every whole, intact record up to the first one that is not (short,
 * bad CRC, impossible length, seq not increasing) and the opener truncates the
 * rest. Only whole records are ever appended, so nothing valid follows a bad
 * one unless the disk itself corrupted it.
 *
 * The functions here block (read, write, fsync, rename): the shipper calls
 * them from the libuv thread pool, one job at a time. spool_scan and the header
 * codec are pure (bytes in, result out) and fuzzed.
 */
#ifndef P2P_LOGS_SPOOL_H
#define P2P_LOGS_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define P2P_SPOOL_HDR 40
#define P2P_SPOOL_FRAME 16
#define P2P_SPOOL_MAX_PAYLOAD (1u << 20)

typedef struct p2p_spool_header {
    uint64_t reserved_seq;
    uint64_t acked_seq;
} p2p_spool_header;

uint32_t p2p__crc32c(uint32_t crc, const void *data, size_t len);

void p2p__spool_header_encode(const p2p_spool_header *h, uint8_t out[P2P_SPOOL_HDR]);
/* 0, or -EINVAL (not a spool header, or a damaged one). */
int p2p__spool_header_decode(const uint8_t *buf, size_t len, p2p_spool_header *h);

/* Frames one record into out (room for P2P_SPOOL_FRAME + len). Returns its size. */
size_t p2p__spool_frame(uint64_t seq, const void *payload, size_t len, uint8_t *out);

/* Called for each whole record found; `off` is its frame's offset in buf. */
typedef void (*p2p_spool_scan_fn)(void *arg, uint64_t seq, const uint8_t *payload, size_t len, size_t off);
/* Walks the frames of buf (what follows the header, or a chunk of it). Records
 * need seq > *last_seq (updated as it goes). Returns the bytes of whole, intact
 * records; *stop says why it stopped: 0 end of buf, 1 partial record at the end,
 * -1 a damaged record (bad length, CRC or order). */
size_t p2p__spool_scan(const uint8_t *buf, size_t len, uint64_t *last_seq, p2p_spool_scan_fn fn, void *arg,
                       int *stop);

/* ---- the file (blocking; thread pool) ------------------------------------------ */

typedef struct p2p_spool_file {
    int fd;
    char *path;
} p2p_spool_file;

/* What opening found. */
typedef struct p2p_spool_loaded {
    p2p_spool_header hdr;
    uint64_t end;       /* file size after cutting a damaged tail */
    uint64_t cut_bytes; /* bytes cut off the end (a crash mid-write, or damage) */
    int fresh;          /* 1: no usable file was there, a new one was made */
} p2p_spool_loaded;

/* Opens (creating, mode 0600, and its directory) the spool at `path`, checks
 * the header, scans every record (fn per record, offsets from the file start),
 * cuts a damaged tail. A damaged header is replaced, keeping the records and
 * taking reserved_seq from the highest seq found; a file that is not a spool
 * is moved aside to PATH.bad. Returns 0 or a negative errno (*err set). */
int p2p__spool_open(p2p_spool_file *f, const char *path, p2p_spool_scan_fn fn, void *arg, p2p_spool_loaded *out,
                    char **err);
void p2p__spool_close(p2p_spool_file *f);

int p2p__spool_write_header(p2p_spool_file *f, const p2p_spool_header *h, int sync);
/* Writes `len` framed bytes at `off` (the current end) and syncs them. */
int p2p__spool_append(p2p_spool_file *f, uint64_t off, const void *data, size_t len);
int p2p__spool_read(p2p_spool_file *f, uint64_t off, void *buf, size_t len);

/* A byte range of the file to keep. */
typedef struct p2p_spool_range {
    uint64_t off, len;
} p2p_spool_range;
/* Rewrites the file as header + the given ranges (in order) through a temp file
 * and a rename, so a crash leaves the old or the new file. n == 0 empties it. */
int p2p__spool_rewrite(p2p_spool_file *f, const p2p_spool_header *h, const p2p_spool_range *keep, size_t n);

#endif
