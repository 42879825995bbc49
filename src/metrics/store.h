/*
 * store.h — the dashboard's table of nodes (their tiers, last sample and
 * services) and its snapshot file.
 *
 * Snapshot: the whole table, written atomically (temporary file, fdatasync,
 * rename, fsync of the folder) by a thread-pool job every
 * metrics_snapshot_interval seconds and when the node stops; read back at
 * start. A crash loses at most the samples since the last snapshot, never
 * the file: a reader sees the old one or the new one whole.
 *
 * File: "P2PMHZ02", then LZ4 blocks of the raw form, each as u32 raw length,
 * u32 compressed length and the block (one block per node record, so a
 * snapshot is built a few nodes per loop turn and never holds the loop long),
 * ended by two zero u32. The raw form:
 *   "P2PMH001", u32 0x01020304 (byte order), u32 MT_NMETRICS, u32 series bytes,
 *   u32 node count, then per node: u16 id length, id, u16 version length,
 *   version, i64 last_report, u32 JSON length, {"latest", "services"} JSON,
 *   the series (tiers.h mt_series_save); then u64 FNV-1a of all that.
 * Native byte order: a file from another architecture (or another metric set)
 * is refused and set aside, and history starts empty.
 */
#ifndef P2P_METRICS_STORE_H
#define P2P_METRICS_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics/tiers.h"

typedef struct dnode {
    char id[64];
    char version[33];
    mt_series series;
    json_t *latest;      /* last Sample, or NULL */
    json_t *services;    /* ServiceReports (array), or NULL */
    int64_t last_report; /* coordinator's unix seconds, 0 = never */
    uint64_t reports, samples, duplicates;
    int stale;
} dnode;

typedef struct dstore {
    dnode **nodes;
    size_t n, cap;
} dstore;

dnode *dstore_find(const dstore *s, const char *id);
/* The node, added when new; NULL when the table holds `max` nodes already. */
dnode *dstore_get_or_add(dstore *s, const char *id, size_t max);
void dstore_remove(dstore *s, const char *id);
void dstore_free(dstore *s);

/* A snapshot being built, as pieces of the raw form: the header (made by
 * dsnap_finish), one piece per node, and the checksum (dsnap_seal, which hashes
 * everything: run it on the pool). */
typedef struct dchunk {
    uint8_t *p;
    size_t n;
} dchunk;
typedef struct dsnap {
    dchunk *chunks; /* [0]: the header, filled by dsnap_finish */
    size_t n, cap;
    uint32_t count;
} dsnap;
void dsnap_begin(dsnap *s);
void dsnap_add_node(dsnap *s, const dnode *d);
void dsnap_finish(dsnap *s);
void dsnap_seal(dsnap *s);
size_t dsnap_bytes(const dsnap *s);
void dsnap_free(dsnap *s);

/* The raw form of the whole table in one buffer (heap, *len bytes). */
uint8_t *dstore_serialize(const dstore *s, size_t *len);
/* Replaces the table with the raw form's nodes. 0, or -EINVAL with a message
 * (the table unchanged). Pure. */
int dstore_deserialize(dstore *s, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* File I/O, blocking (the pool, or start-up). write: compresses a sealed
 * snapshot and replaces the file atomically; read: the raw form back, -ENOENT
 * when there is no file. 0 or a negative errno, with
 * a message. */
int dstore_write_file(const char *path, const dsnap *snap, size_t *file_bytes, char *err, size_t errlen);
int dstore_read_file(const char *path, uint8_t **raw, size_t *len, char *err, size_t errlen);

#endif
