/*
 * reporter.h — the "metrics" component every node runs: a Sample each
 * second (sampler.h), kept in a bounded ring and reported in batches to the
 * coordinator's metrics_dashboard (report_metrics over the pooled mTLS
 * connection); on the coordinator itself the samples go straight into the
 * dashboard. See reporter.c for the timing.
 */
#ifndef P2P_METRICS_REPORTER_H
#define P2P_METRICS_REPORTER_H

#include <stdint.h>

#include "core/ctx.h"

#define MREP_RING 900      /* samples kept while the coordinator is away: 15 min */
#define MREP_BATCH 300     /* samples per report at most */

/* Adds the component (when reporter_enabled). */
int p2p__reporter_register(p2p_ctx *ctx);

typedef struct p2p_reporter_stats {
    uint64_t samples;    /* taken */
    uint64_t reports;    /* report_metrics calls answered ok */
    uint64_t failures;   /* calls that failed (kept for a later report) */
    uint64_t dropped;    /* samples dropped: ring full, or refused by the coordinator */
    uint64_t buffered;   /* samples waiting */
    uint32_t interval_ms;
} p2p_reporter_stats;
/* -ENOENT when the component does not run. */
int p2p__reporter_stats(p2p_ctx *ctx, p2p_reporter_stats *out);

#endif
