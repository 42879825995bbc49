/*
 * sampler.h — one Sample of this node per second (the dashboard contract's
 * shape), and the node's services as ServiceReports, for the reporter.
 *
 * Everything read on the loop is a small pseudo-file (/proc/stat, meminfo,
 * loadavg, net/dev, self/stat, self/status, self/fd) or a counter in memory
 * (HTTP connections, the method registry's per-method histograms, the gossip
 * layer's counters). Disk usage needs statvfs of each mount, which can block on
 * a sick disk, so it is refreshed on the thread pool every MS_DISK_EVERY_MS and
 * the last answer is used meanwhile. Rates (network bytes/s, RPC calls/s,
 * per-method p50/p99) are differences against the previous sample.
 */
#ifndef P2P_METRICS_SAMPLER_H
#define P2P_METRICS_SAMPLER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

#define MS_DISK_EVERY_MS 10000

typedef struct p2p_msampler p2p_msampler;

p2p_msampler *p2p__msampler_new(p2p_ctx *ctx);
/* A Sample for unix second `t` (new reference). */
json_t *p2p__msampler_take(p2p_msampler *s, int64_t t);
/* The node's services now: [{name, version, kind, state, health, restarts?,
 * methods: {m: {calls, errors, p50_ms, p99_ms}} (since start), metrics}]. */
json_t *p2p__msampler_services(p2p_msampler *s);
/* Frees now, or once a disk job on the pool has come back. */
void p2p__msampler_free(p2p_msampler *s);

/* /proc/net/dev: calls fn for each interface with its received and sent byte
 * counters. Returns the number of interfaces, or -1 when the text is not that
 * file's format. Pure (for tests and the fuzzer). */
int p2p__parse_net_dev(const char *text, void (*fn)(void *arg, const char *name, uint64_t rx, uint64_t tx),
                       void *arg);

#endif
