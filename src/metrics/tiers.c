/*
 * tiers.c — the rings of tiers.h: bucket arithmetic, the open buckets of the
 * coarse tiers, and the snapshot form of a series.
 */
#include "metrics/tiers.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

const char *const mt_metric_names[MT_NMETRICS] = {
    "cpu", "mem_percent", "mem_used", "disk_percent", "net_rx_bps", "net_tx_bps", "load1",
    "rss", "proc_cpu",    "fds",      "threads",      "conns",      "rpc_calls",  "rpc_errors",
};

const mt_tier_def mt_tiers[MT_NTIERS] = {{1, 900}, {60, 1440}, {3600, 720}};

_Static_assert(MT_TOTAL_SLOTS == 900u + 1440u + 720u, "MT_TOTAL_SLOTS matches mt_tiers");

int mt_metric_index(const char *name)
{
    for (int i = 0; i < MT_NMETRICS; i++)
        if (strcmp(mt_metric_names[i], name) == 0)
            return i;
    return -1;
}

static size_t tier_first_slot(int tier)
{
    size_t off = 0;
    for (int i = 0; i < tier; i++)
        off += mt_tiers[i].slots;
    return off;
}

static uint32_t *stamps(const mt_series *s, int tier)
{
    return (uint32_t *)(void *)s->block + tier_first_slot(tier);
}

static float *values(const mt_series *s, int tier)
{
    float *v = (float *)(void *)(s->block + MT_TOTAL_SLOTS * sizeof(uint32_t));
    return v + tier_first_slot(tier) * MT_NMETRICS;
}

void mt_series_init(mt_series *s)
{
    memset(s, 0, sizeof(*s));
    s->block = p2p__xcalloc(1, MT_SERIES_BYTES);
    /* stamps 0 = empty; values NaN */
    float *v = values(s, 0);
    for (size_t i = 0; i < (size_t)MT_TOTAL_SLOTS * MT_NMETRICS; i++)
        v[i] = NAN;
}

void mt_series_free(mt_series *s)
{
    free(s->block);
    s->block = NULL;
}

static void flush_open(mt_series *s, int tier)
{
    mt_open *o = &s->open[tier];
    if (!o->bucket)
        return;
    uint32_t slot = o->bucket % mt_tiers[tier].slots;
    stamps(s, tier)[slot] = o->bucket;
    float *row = values(s, tier) + (size_t)slot * MT_NMETRICS;
    for (int m = 0; m < MT_NMETRICS; m++)
        row[m] = o->n[m] ? (float)(o->sum[m] / o->n[m]) : NAN;
    memset(o, 0, sizeof(*o));
}

int mt_add(mt_series *s, uint32_t t, const double v[MT_NMETRICS])
{
    if (t == 0)
        return -EINVAL;
    if (t <= s->last_t)
        return -EALREADY;
    s->last_t = t;
    uint32_t slot = t % mt_tiers[0].slots;
    stamps(s, 0)[slot] = t;
    float *row = values(s, 0) + (size_t)slot * MT_NMETRICS;
    for (int m = 0; m < MT_NMETRICS; m++)
        row[m] = isfinite(v[m]) ? (float)v[m] : NAN;
    for (int tier = 1; tier < MT_NTIERS; tier++) {
        uint32_t b = t / mt_tiers[tier].res_s;
        mt_open *o = &s->open[tier];
        if (o->bucket != b) {
            flush_open(s, tier);
            o->bucket = b;
        }
        for (int m = 0; m < MT_NMETRICS; m++)
            if (isfinite(v[m])) {
                o->sum[m] += v[m];
                o->n[m]++;
            }
    }
    return 0;
}

double mt_get(const mt_series *s, int tier, uint32_t bucket, int metric)
{
    if (tier < 0 || tier >= MT_NTIERS || metric < 0 || metric >= MT_NMETRICS || bucket == 0)
        return NAN;
    if (tier > 0 && s->open[tier].bucket == bucket) {
        const mt_open *o = &s->open[tier];
        return o->n[metric] ? o->sum[metric] / o->n[metric] : NAN;
    }
    /* only the ring's window behind the newest sample: an older bucket whose
     * slot was not reused yet (a gap came after it) is out of the ring too */
    uint32_t newest = s->last_t / mt_tiers[tier].res_s;
    if (bucket > newest || (uint64_t)bucket + mt_tiers[tier].slots <= newest)
        return NAN;
    uint32_t slot = bucket % mt_tiers[tier].slots;
    if (stamps(s, tier)[slot] != bucket)
        return NAN;
    return values(s, tier)[(size_t)slot * MT_NMETRICS + (size_t)metric];
}

int mt_tier_for_span(uint32_t span_s)
{
    for (int tier = 0; tier < MT_NTIERS; tier++)
        if ((uint64_t)mt_tiers[tier].res_s * mt_tiers[tier].slots >= span_s)
            return tier;
    return -1;
}

/* ---- snapshot form ---------------------------------------------------------------- */

#define HDR_BYTES (sizeof(uint32_t) + sizeof(mt_open) * MT_NTIERS)

size_t mt_series_bytes(void)
{
    return HDR_BYTES + MT_SERIES_BYTES;
}

void mt_series_save(const mt_series *s, uint8_t *out)
{
    memcpy(out, &s->last_t, sizeof(uint32_t));
    memcpy(out + sizeof(uint32_t), s->open, sizeof(mt_open) * MT_NTIERS);
    memcpy(out + HDR_BYTES, s->block, MT_SERIES_BYTES);
}

int mt_series_load(mt_series *s, const uint8_t *in, size_t len)
{
    if (len != mt_series_bytes())
        return -EINVAL;
    uint32_t last_t;
    mt_open open[MT_NTIERS];
    memcpy(&last_t, in, sizeof last_t);
    memcpy(open, in + sizeof(uint32_t), sizeof open);
    for (int tier = 1; tier < MT_NTIERS; tier++) {
        if (open[tier].bucket && (uint64_t)open[tier].bucket * mt_tiers[tier].res_s > (uint64_t)last_t + 1)
            return -EINVAL;
        for (int m = 0; m < MT_NMETRICS; m++)
            if (!isfinite(open[tier].sum[m]) || open[tier].n[m] > mt_tiers[tier].res_s)
                return -EINVAL;
    }
    memset(&open[0], 0, sizeof open[0]);
    s->last_t = last_t;
    memcpy(s->open, open, sizeof open);
    memcpy(s->block, in + HDR_BYTES, MT_SERIES_BYTES);
    return 0;
}
