/*
 * sysinfo.h — facts about the host, read from /proc, /sys, uname, statvfs and
 * getifaddrs, for the built-in `system` service.
 *
 * Nothing here sleeps: CPU % is the difference between two samples of
 * /proc/stat taken by the caller at different moments (a periodic timer on the
 * loop), never a blocking 1 s measurement. Every function is cheap (reads of
 * small pseudo-files) and returns a new jansson object owned by the caller.
 */
#ifndef P2P_BUILTIN_SYSINFO_H
#define P2P_BUILTIN_SYSINFO_H

#include <jansson.h>
#include <stdint.h>

typedef struct sysinfo_cpu_sampler {
    uint64_t prev_total, prev_idle;      /* jiffies from the previous /proc/stat sample */
    uint64_t proc_prev_ticks;            /* this process's utime+stime at the previous sample */
    double cpu_percent;                  /* whole-machine busy % between the last two samples */
    double process_cpu_percent;          /* this process's % of one CPU between the last two samples */
    int have_sample;                     /* 0 until two samples exist */
} sysinfo_cpu_sampler;

/* Takes a new sample and updates the percentages from the previous one. */
void sysinfo_cpu_sample(sysinfo_cpu_sampler *s);

/* Static-ish facts: hostname, os (pretty name from /etc/os-release), kernel, arch,
 * cpu_count, cpu_model, memory_total_bytes, disks (mount points of real filesystems
 * with total/used/free bytes), network interfaces (name, mac, addresses with family
 * and prefix length, up/loopback flags), boot-time based system uptime seconds. */
json_t *sysinfo_collect_info(void);

/* Moving figures: cpu_percent (from the sampler; null until two samples exist),
 * memory total/available/used bytes and percent, swap, load averages (1/5/15),
 * disk usage per mount, process rss_bytes, process cpu percent, open fds, threads. */
json_t *sysinfo_collect_metrics(const sysinfo_cpu_sampler *s);

/* sysinfo_collect_metrics without "disks": only pseudo-files under /proc, so
 * cheap enough for the loop thread every second (statvfs of a mount can block). */
json_t *sysinfo_collect_metrics_host(const sysinfo_cpu_sampler *s);

/* Usage of the real, local mounts (statvfs of each): the "disks" array of
 * sysinfo_collect_metrics. May block on a sick disk: call it off the loop. */
json_t *sysinfo_collect_disks(void);

/* Resident set size of this process in bytes (from /proc/self/statm), 0 on error. */
uint64_t sysinfo_process_rss(void);

#endif
