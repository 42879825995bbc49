/*
 * shipper.h — the log shipper every node runs: each log line becomes a
 * sequenced record, shipped in batches to the coordinator's log collector
 * (log_collector/add_logs), acknowledged, spooled while unacknowledged.
 * How and why: shipper.c and docs/logs.md; the wire shape: the contract in
 * docs/logs.md ("Record").
 *
 * The transport is a function so tests can play the collector: it gets the
 * add_logs params as JSON text and must call p2p__shipper_result() exactly
 * once, later or before it returns, on the loop thread.
 */
#ifndef P2P_LOGS_SHIPPER_H
#define P2P_LOGS_SHIPPER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

typedef struct p2p_shipper p2p_shipper;

typedef void (*p2p_ship_transport)(p2p_shipper *sh, const char *params, size_t len, void *arg);

typedef struct p2p_shipper_opts {
    const char *spool_path;      /* the spool file; NULL = none (seqs then start at 1 each time: tests only) */
    uint64_t mem_bytes;          /* unacked records in memory before they spill to the file */
    uint64_t file_bytes;         /* largest spool file; 0 = memory only (the file then keeps just the header) */
    int ship_level;              /* P2P_LOG5_*: lines below are not shipped */
    uint32_t batch_delay_ms;     /* wait this long after a line for more before sending (default 2) */
    uint32_t batch_max_records;  /* default 5000 (the collector's limit) */
    size_t batch_max_bytes;      /* of record JSON per batch, default 1 MiB */
    uint32_t rate_burst;         /* lines per source per window, default 10000; 0 = no limit */
    uint32_t rate_window_ms;     /* default 30000 */
    uint32_t backoff_min_ms;     /* retry delay after a failure, doubled up to backoff_max_ms (100, 5000) */
    uint32_t backoff_max_ms;
    uint32_t call_timeout_ms;    /* default 10000 */
    p2p_ship_transport transport; /* NULL = p2p_call_remote to role:coordinator */
    void *transport_arg;
} p2p_shipper_opts;

/* Counters, for /metrics and tests. */
typedef struct p2p_shipper_stats {
    uint64_t shipped;       /* records sent (each attempt of a record counts once per batch sent) */
    uint64_t acked;         /* records the collector acknowledged */
    uint64_t batches;       /* add_logs calls made */
    uint64_t failures;      /* add_logs calls that failed */
    uint64_t lost;          /* records dropped: spool full, or refused by the collector */
    uint64_t suppressed;    /* lines the per-source rate limit held back */
    uint64_t mem_bytes;     /* bytes of records in memory (spool and intake) */
    uint64_t mem_records;
    uint64_t file_bytes;    /* size of the spool file */
    uint64_t file_records;  /* unacked records in the file */
    uint64_t last_seq;      /* highest seq handed out */
    uint64_t acked_seq;     /* highest seq the collector acknowledged */
} p2p_shipper_stats;

/* Creates a shipper and attaches it as a log sink at once, so lines logged
 * before it starts are kept (in memory, bounded) and shipped once it runs. */
p2p_shipper *p2p__shipper_new(p2p_ctx *ctx, const p2p_shipper_opts *opts);
/* Opens the spool (on the thread pool) and starts shipping. Loop thread. */
int p2p__shipper_start(p2p_shipper *sh);
/* Stops shipping: what is unacknowledged goes to the spool file, the header
 * gets the exact last seq, handles close. The loop must run on for the queued
 * file work and the close callbacks. Idempotent. */
void p2p__shipper_stop(p2p_shipper *sh);
/* Detaches the sink and frees. After stop and after the loop ran its close callbacks. */
void p2p__shipper_free(p2p_shipper *sh);

/* The outcome of one transport call: code 0 with the add_logs result
 * ({"acked": N}, borrowed), or a JSON-RPC error code and message. */
void p2p__shipper_result(p2p_shipper *sh, int code, const char *message, json_t *result);

void p2p__shipper_stats(p2p_shipper *sh, p2p_shipper_stats *out);
/* 1 once the spool is open and seqs are being handed out. */
int p2p__shipper_ready(const p2p_shipper *sh);

/* The node's shipper as a component ("logs"), configured from the node's
 * config: spool in <state_directory>/log-spool. Call right after the context
 * is made, so start-up lines are shipped too. */
void p2p__logs_register(p2p_ctx *ctx);

#endif
