/*
 * segment.h — the framing of the collector's segment files (pure: bytes in,
 * records out, no I/O).
 *
 * A segment file is an 8-byte header "P2PLOG1\n" followed by frames:
 *
 *   u32 little-endian  payload length (1..LOGSEG_MAX_PAYLOAD)
 *   u32 little-endian  CRC-32 (IEEE, as zlib's crc32) of the payload
 *   payload            one record, compact JSON (logrec_encode)
 *
 * Frames are appended with one write(2) each batch; a crash can leave a
 * partial frame at the end. A reader takes frames up to the first one that is
 * incomplete, too long or fails its CRC, and reports where the valid prefix
 * ends so the collector truncates the file there before appending again.
 */
#ifndef P2P_LOGS_SEGMENT_H
#define P2P_LOGS_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define LOGSEG_MAGIC "P2PLOG1\n"
#define LOGSEG_MAGIC_LEN 8
#define LOGSEG_FRAME_HDR 8
/* Largest payload: a record's strings are at most ~17 KiB, JSON escaping can
 * make that x6; anything longer is damage, not a record. */
#define LOGSEG_MAX_PAYLOAD (256 * 1024)

_Static_assert(sizeof(LOGSEG_MAGIC) - 1 == LOGSEG_MAGIC_LEN, "segment magic is 8 bytes");

uint32_t logseg_crc32(const void *data, size_t n);

/* Writes the 8-byte frame header of a payload of n bytes into hdr. */
void logseg_frame_header(uint8_t hdr[LOGSEG_FRAME_HDR], const void *payload, size_t n);

/* Steps through the frames of buf[0..len) from *off (start at LOGSEG_MAGIC_LEN
 * after logseg_check_magic). Returns 1 with the payload (borrowed) and *off
 * advanced, 0 at a clean end, -1 at a damaged or partial frame (*off stays at
 * its start: the valid prefix ends there). */
int logseg_next(const uint8_t *buf, size_t len, size_t *off, const uint8_t **payload, size_t *plen);

/* 1 when buf starts with the segment header. */
int logseg_check_magic(const uint8_t *buf, size_t len);

#endif
