/*
 * srclimit.h — per-source rate limit of shipped log lines (journald's
 * RateLimitIntervalSec/RateLimitBurst: by default 10,000 lines per 30 s per
 * source). A source over its burst has the rest of its window suppressed;
 * when the window ends the caller gets one report "N lines suppressed" with
 * the times of the first and last suppressed line.
 *
 * Bounded: at most P2P_SRCLIMIT_MAX_SOURCES sources are tracked; past that,
 * idle entries are reused and, when none is idle, new sources share one
 * entry named "*". Not thread-safe: the shipper calls it under its lock.
 */
#ifndef P2P_LOGS_SRCLIMIT_H
#define P2P_LOGS_SRCLIMIT_H

#include <stddef.h>
#include <stdint.h>

#define P2P_SRCLIMIT_MAX_SOURCES 256

typedef struct p2p_srclimit p2p_srclimit;

/* A finished window that suppressed lines. */
typedef struct p2p_srclimit_report {
    char source[65];
    uint64_t suppressed;
    int64_t first_us, last_us;
} p2p_srclimit_report;

/* `burst` lines per `window_us`; burst 0 = no limit. */
p2p_srclimit *p2p__srclimit_new(uint32_t burst, int64_t window_us);
void p2p__srclimit_free(p2p_srclimit *l);

/* Counts one line of `source` at `now_us`. Returns 1 to ship it, 0 when it is
 * suppressed. When this line starts a new window after one that suppressed
 * lines, *rep is filled and *have_rep set to 1 (report it before the line). */
int p2p__srclimit_check(p2p_srclimit *l, const char *source, int64_t now_us, p2p_srclimit_report *rep,
                        int *have_rep);

/* Reports windows that ended by `now_us` with suppressed lines (a flood that
 * stopped): fn once per source. Returns how many. */
size_t p2p__srclimit_sweep(p2p_srclimit *l, int64_t now_us, void (*fn)(void *arg, const p2p_srclimit_report *r),
                           void *arg);

#endif
