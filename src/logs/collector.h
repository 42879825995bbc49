/*
 * collector.h — the built-in `log_collector` service of the coordinator:
 * add_logs, get_logs (with long-poll follow), get_log_sources, clear_logs,
 * get_stats, over the segment store. docs/logs.md describes the API.
 */
#ifndef P2P_LOGS_COLLECTOR_H
#define P2P_LOGS_COLLECTOR_H

#include "core/ctx.h"
#include <jansson.h>

#include "logs/follow.h"
#include "logs/store.h"

typedef struct logcol logcol;

/* Adds the "log_collector" component (coordinator only). Its object is shared
 * as "log_collector" once it runs. */
int p2p__logcol_register(p2p_ctx *ctx);

/* The live-follow subscribers, for in-process consumers (the dashboard). */
logfollow *p2p__logcol_follow(logcol *col);
/* The store, for in-process queries (logquery_run; loop thread only). */
logstore *p2p__logcol_store(logcol *col);
/* get_log_sources' answer: {"nodes", "loggers", "log_levels"} (new reference). */
json_t *p2p__logcol_sources_json(logcol *col);

#endif
