/*
 * report.h — the params of metrics_dashboard/report_metrics: built by every
 * node's reporter, decoded and validated by the coordinator. Pure: bytes and
 * JSON in, JSON out, no I/O.
 *
 * Shape (docs/dashboard.md, "report_metrics"):
 *   {"node_id": ID, "version": "0.1.0",
 *    "samples": [Sample, ...]                              plain, or
 *    "encoding": "lz4", "size": N, "data": base64(LZ4 block of the samples' JSON array text, N bytes),
 *    "services": [ServiceReport, ...]   (optional: the node's services now)}
 *
 * Validation is strict and bounded: at most MREPORT_MAX_SAMPLES samples, a
 * compressed payload of at most MREPORT_MAX_DATA base64 bytes that inflates to
 * exactly `size` (<= MREPORT_MAX_SIZE) bytes, every member of a known type and
 * range, maps and strings of bounded size. A sample member that is not known is
 * dropped (a newer node may send more); a known one of the wrong type refuses
 * the whole report, so nothing of a bad report is stored. The decoded samples
 * are new objects holding only the known members, in the contract's shape.
 */
#ifndef P2P_METRICS_REPORT_H
#define P2P_METRICS_REPORT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics/tiers.h"

#define MREPORT_MAX_SAMPLES 900
#define MREPORT_MAX_DATA (2u << 20)   /* base64 characters */
#define MREPORT_MAX_SIZE (4u << 20)   /* inflated bytes: bounds what 1 MiB of body costs to parse */
#define MREPORT_MAX_DISKS 32
#define MREPORT_MAX_NETS 64
#define MREPORT_MAX_RPC 256
#define MREPORT_MAX_SERVICES 256
#define MREPORT_MAX_SVC_METHODS 128
#define MREPORT_MAX_SVC_METRICS 64
#define MREPORT_MAX_PAST_S (31 * 86400) /* samples older than this are refused */
#define MREPORT_MAX_FUTURE_S 300        /* clock skew tolerated ahead of the coordinator */

typedef struct mreport {
    char node_id[64];
    char version[33];
    json_t *samples;  /* array of validated samples, oldest first (new reference) */
    json_t *services; /* array of validated services, or NULL when the report had none */
} mreport;

/* Decodes and validates report params against the coordinator's clock `now_s`.
 * 0, or -EINVAL with a message in err (nothing allocated). */
int mreport_decode(json_t *params, int64_t now_s, mreport *out, char *err, size_t errlen);
void mreport_free(mreport *r);

/* The numbers of a validated sample for the tiers (NaN where unknown). */
void mreport_sample_values(const json_t *sample, double v[MT_NMETRICS]);
/* Its "t". */
int64_t mreport_sample_time(const json_t *sample);

/* Builds compressed report params for `samples` (borrowed array): a new object
 * {"node_id", "version", "encoding": "lz4", "size", "data"}. NULL on failure. */
json_t *mreport_encode(const char *node_id, const char *version, json_t *samples);

/* Base64 (standard alphabet, padded). decode: strict (no whitespace, correct
 * padding); returns the length, or -1. Output buffers: encode 4*ceil(n/3)+1,
 * decode 3*(n/4). */
size_t mreport_b64_encode(const uint8_t *in, size_t n, char *out);
long mreport_b64_decode(const char *in, size_t n, uint8_t *out);

#endif
