/*
 * tiers.h — a node's metric history on the coordinator: fixed-size rings of
 * time buckets at three resolutions (tiers), filled from per-second samples.
 *
 *   tier 0: 1 s buckets,    900 of them  (15 minutes)
 *   tier 1: 60 s buckets,  1440 of them  (24 hours)
 *   tier 2: 3600 s buckets, 720 of them  (30 days)
 *
 * Each bucket holds one float per metric: the value itself in tier 0, the
 * AVERAGE of the samples that fell into the bucket in tiers 1 and 2 (computed
 * from the raw per-second values, not from averages of averages). No min/max is
 * kept: that is what keeps a node's history at a fixed
 *   (900 + 1440 + 720) x 4 = 12,240 bytes per metric,
 * plus 12,240 bytes of bucket stamps per node shared by its metrics
 * (MT_SERIES_BYTES in all, 183,600 bytes for the 14 metrics).
 *
 * A slot remembers which bucket it holds (its stamp: the bucket number, time /
 * resolution), so a slot left over from an earlier lap of the ring reads as a
 * gap (NaN) instead of old data. Tiers 1 and 2 have one open bucket each: the
 * running sum and count of the bucket being filled, written to its slot when a
 * sample of a later bucket arrives (and readable meanwhile as a partial
 * average). A missing value (NaN) is not counted.
 *
 * Samples must come in time order: one at or before the last accepted time is
 * refused (-EALREADY), so a batch sent again after a lost answer is not counted
 * twice. Pure: no I/O, no clock; loop thread only.
 */
#ifndef P2P_METRICS_TIERS_H
#define P2P_METRICS_TIERS_H

#include <stddef.h>
#include <stdint.h>

enum {
    MT_CPU,
    MT_MEM_PERCENT,
    MT_MEM_USED,
    MT_DISK_PERCENT,
    MT_NET_RX,
    MT_NET_TX,
    MT_LOAD1,
    MT_RSS,
    MT_PROC_CPU,
    MT_FDS,
    MT_THREADS,
    MT_CONNS,
    MT_RPC_CALLS,
    MT_RPC_ERRORS,
    MT_NMETRICS
};

/* The Sample member each metric comes from ("cpu", "mem_percent", ...). */
extern const char *const mt_metric_names[MT_NMETRICS];
/* Index of a metric by name, or -1. */
int mt_metric_index(const char *name);

#define MT_NTIERS 3
typedef struct mt_tier_def {
    uint32_t res_s; /* seconds per bucket */
    uint32_t slots; /* buckets kept */
} mt_tier_def;
extern const mt_tier_def mt_tiers[MT_NTIERS];

#define MT_TOTAL_SLOTS (900u + 1440u + 720u)
#define MT_BYTES_PER_METRIC (MT_TOTAL_SLOTS * 4u)
#define MT_SERIES_BYTES (MT_TOTAL_SLOTS * 4u * (MT_NMETRICS + 1u))

typedef struct mt_open {
    uint32_t bucket; /* 0 = none */
    uint32_t n[MT_NMETRICS];
    double sum[MT_NMETRICS];
} mt_open;

typedef struct mt_series {
    uint32_t last_t;           /* time of the last accepted sample, 0 = none */
    mt_open open[MT_NTIERS];   /* [0] unused */
    /* one block: stamps of every tier, then values [slot][metric] of every tier */
    uint8_t *block;
} mt_series;

/* Allocates the rings (all gaps). Aborts on out-of-memory like the core's wrappers. */
void mt_series_init(mt_series *s);
void mt_series_free(mt_series *s);

/* Adds one sample taken at unix time `t` (seconds); v[i] NaN = unknown.
 * 0, -EALREADY (t not after the last sample), -EINVAL (t == 0). */
int mt_add(mt_series *s, uint32_t t, const double v[MT_NMETRICS]);

/* The value of `metric` in bucket `bucket` of `tier` (bucket = time / res_s):
 * NaN for a gap, a bucket out of the ring, or an empty one. The open bucket
 * of tiers 1 and 2 reads as its partial average. */
double mt_get(const mt_series *s, int tier, uint32_t bucket, int metric);

/* The tier a history request uses: the finest whose ring covers `span_s`
 * seconds, or -1 when none does. */
int mt_tier_for_span(uint32_t span_s);

/* Serialized form for snapshots: the fixed header then the block, native byte
 * order. mt_series_bytes() bytes. */
size_t mt_series_bytes(void);
void mt_series_save(const mt_series *s, uint8_t *out);
/* Loads what mt_series_save wrote (exactly mt_series_bytes() bytes) into an
 * initialized series. -EINVAL when the header is inconsistent (nothing changed). */
int mt_series_load(mt_series *s, const uint8_t *in, size_t len);

#endif
