/*
 * metrics.h — metric sources: how a component puts its own counters and
 * gauges into GET /metrics without the HTTP layer knowing the component.
 *
 * A component registers a source (a group name and a callback) when it starts
 * and removes it when it stops. At each scrape the HTTP layer asks every source
 * to emit its samples into a collector, then renders the collector in both of
 * the endpoint's formats:
 *   - Prometheus text: one "# HELP" / "# TYPE" pair per metric name (samples
 *     of one name must be emitted one after the other), then
 *     `name{label="value"} number` lines;
 *   - JSON: {"<group>": {"<key>": number, "<key>": {"<label value>": number}}}
 *     where <key> is the metric name without its "p2p_<group>_" prefix (and
 *     without a "_total" suffix), so a labelled metric becomes an object keyed
 *     by its label value.
 * Names are static strings owned by the caller; label values are copied. Only
 * one optional label per sample: enough for "by reason" / "by state" counters,
 * and it keeps the JSON shape obvious.
 * Loop thread only.
 */
#ifndef P2P_CORE_METRICS_H
#define P2P_CORE_METRICS_H

#include <jansson.h>
#include <stddef.h>

#include "core/ctx.h"

typedef enum { P2P_METRIC_COUNTER, P2P_METRIC_GAUGE } p2p_metric_type;

typedef struct p2p_metrics_out p2p_metrics_out;

/* Emits the source's samples into `out`. */
typedef void (*p2p_metrics_fn)(p2p_ctx *ctx, p2p_metrics_out *out, void *arg);

/* Adds a source named `group` ([a-z0-9_]+, unique). Returns 0, -EEXIST or -EINVAL. */
int p2p__metrics_source_add(p2p_ctx *ctx, const char *group, p2p_metrics_fn fn, void *arg);
/* Removes the source named `group`, if any. */
void p2p__metrics_source_remove(p2p_ctx *ctx, const char *group);
/* Frees the source table (the context does this when it is freed). */
void p2p__metrics_sources_free(p2p_ctx *ctx);

/* One sample. `name` is the full Prometheus name ("p2p_gossip_dropped_total"),
 * `help` one line; `label_key` NULL for an unlabelled sample. */
void p2p__metrics_emit(p2p_metrics_out *out, const char *name, const char *help, p2p_metric_type type,
                       const char *label_key, const char *label_value, double value);

/* Collects every source and renders it. The JSON form is a new reference to an
 * object {group: {...}}; the text form a heap string (free()) of *len bytes. */
json_t *p2p__metrics_sources_json(p2p_ctx *ctx);
char *p2p__metrics_sources_prometheus(p2p_ctx *ctx, size_t *len);

#endif
