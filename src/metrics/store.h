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
 * File: "P2PMHZ01", u64 raw length, an LZ4 block of the raw form:
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

/* The raw form (heap, *len bytes). */
uint8_t *dstore_serialize(const dstore *s, size_t *len);
/* Replaces the table with the raw form's nodes. 0, or -EINVAL with a message
 * (the table unchanged). Pure. */
int dstore_deserialize(dstore *s, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* File I/O, blocking (the pool, or start-up). write: compresses and replaces
 * atomically; read: -ENOENT when there is no file. 0 or a negative errno, with
 * a message. */
int dstore_write_file(const char *path, const uint8_t *raw, size_t len, size_t *file_bytes, char *err,
                      size_t errlen);
int dstore_read_file(const char *path, uint8_t **raw, size_t *len, char *err, size_t errlen);

#endif
