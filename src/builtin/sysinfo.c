/*
 * sysinfo.c — host and process facts for the built-in `system` service.
 *
 * Almost everything comes from small pseudo-files under /proc, each read whole
 * into a stack buffer with open/read (no stdio), plus uname(), gethostname(),
 * sysconf(), statvfs() and getifaddrs(). Nothing sleeps or spawns processes:
 * CPU % is the difference between two sysinfo_cpu_sample() calls that the
 * caller makes at different moments. A source that is missing or unparsable
 * leaves its field out (cpu_percent is null instead). Numbers are parsed by
 * hand rather than with strtod/sscanf, so a setlocale() elsewhere can't break
 * the parsing.
 *
 * Disks are /proc/mounts filtered to real, local filesystems. Pseudo
 * filesystems (proc, tmpfs, cgroup, squashfs, ...) are skipped, and so are
 * network and FUSE filesystems, whose statvfs() can hang when the server is
 * gone. overlay/aufs is kept only as the root ("/" of a container), so a
 * container host doesn't list one entry per running container. Bind mounts of
 * one filesystem are folded together by st_dev, and mounts on files (Docker's
 * /etc/hosts) are skipped.
 */
#include "builtin/sysinfo.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <mntent.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_DISKS 64

/* ---- small parsing helpers ---- */

/* Reads up to cap-1 bytes of a (pseudo-)file into buf and NUL-terminates it.
 * Returns the length, or -1 if the file can't be opened or read. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    if (cap == 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Parses a decimal unsigned integer after optional blanks (saturating).
 * Advances *pp and returns 1, or returns 0 if there is no digit. */
static int parse_u64(const char **pp, uint64_t *out)
{
    const char *p = skip_ws(*pp);
    if (*p < '0' || *p > '9')
        return 0;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *pp = p;
    *out = v;
    return 1;
}

/* Parses "123.45" (locale-independent). */
static int parse_udouble(const char **pp, double *out)
{
    const char *p = *pp;
    uint64_t ip;
    if (!parse_u64(&p, &ip))
        return 0;
    double v = (double)ip, scale = 0.1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            v += (*p - '0') * scale;
    *pp = p;
    *out = v;
    return 1;
}

/* Finds a line "key<blanks><sep>value" and returns a pointer to value (leading
 * blanks skipped), or NULL. Lines where key is only a prefix are passed over. */
static const char *find_key(const char *buf, const char *key, char sep)
{
    size_t klen = strlen(key);
    for (const char *line = buf; line && *line;) {
        if (strncmp(line, key, klen) == 0) {
            const char *p = skip_ws(line + klen);
            if (*p == sep)
                return skip_ws(p + 1);
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

/* Copies the rest of the line at p into out, dropping trailing blanks and, if
 * unquote, shell-style quotes and backslash escapes (os-release syntax). */
static void copy_value(const char *p, char *out, size_t cap, int unquote)
{
    char q = 0;
    size_t n = 0;
    if (unquote && (*p == '"' || *p == '\''))
        q = *p++;
    for (; *p && *p != '\n'; p++) {
        if (q && *p == q)
            break;
        if (q == '"' && *p == '\\' && p[1] && p[1] != '\n')
            p++;
        if (n + 1 < cap)
            out[n++] = *p;
    }
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t' || out[n - 1] == '\r'))
        n--;
    out[n] = '\0';
}

/* Percentage rounded to two decimals; NaN and negatives become 0. */
static double round2(double v)
{
    if (!(v >= 0.0))
        return 0.0;
    if (v > 1e12)
        return v;
    return (double)(uint64_t)(v * 100.0 + 0.5) / 100.0;
}

static json_int_t ji(uint64_t v)
{
    return v > (uint64_t)LLONG_MAX ? (json_int_t)LLONG_MAX : (json_int_t)v;
}

/* json_object_set_new that quietly drops a NULL value (failed allocation or
 * invalid UTF-8), so the field is just omitted. */
static void put(json_t *o, const char *key, json_t *v)
{
    if (v)
        json_object_set_new(o, key, v);
}

static long online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n;
}

/* ---- CPU sampling ---- */

/* Aggregate "cpu" line of /proc/stat: total and idle (idle + iowait) jiffies.
 * guest/guest_nice are already counted in user/nice, so they're left out. */
static int read_cpu_times(uint64_t *total, uint64_t *idle)
{
    char buf[512]; /* only the first line is needed */
    if (read_small("/proc/stat", buf, sizeof buf) < 0 || strncmp(buf, "cpu ", 4) != 0)
        return -1;
    const char *p = buf + 4;
    uint64_t f[8] = {0};
    int n = 0;
    while (n < 8 && parse_u64(&p, &f[n]))
        n++;
    if (n < 4)
        return -1;
    uint64_t t = 0;
    for (int i = 0; i < n; i++)
        t += f[i];
    *total = t;
    *idle = f[3] + f[4];
    return 0;
}

/* utime + stime (fields 14 and 15) of /proc/self/stat, in clock ticks. */
static int read_proc_ticks(uint64_t *ticks)
{
    char buf[1024];
    if (read_small("/proc/self/stat", buf, sizeof buf) < 0)
        return -1;
    const char *p = strrchr(buf, ')'); /* comm may contain spaces and parens */
    if (!p)
        return -1;
    p++;
    uint64_t sum = 0, v;
    for (int field = 3; field <= 15; field++) {
        p = skip_ws(p);
        if (!*p)
            return -1;
        if (field >= 14) {
            if (!parse_u64(&p, &v))
                return -1;
            sum += v;
        } else {
            while (*p && *p != ' ')
                p++;
        }
    }
    *ticks = sum;
    return 0;
}

void sysinfo_cpu_sample(sysinfo_cpu_sampler *s)
{
    uint64_t total, idle, ticks = 0;
    if (!s || read_cpu_times(&total, &idle) != 0)
        return;
    int have_ticks = read_proc_ticks(&ticks) == 0;
    if (s->prev_total != 0 && total == s->prev_total)
        return; /* same jiffy: keep the baseline so the next sample spans a real interval */
    if (s->prev_total != 0 && total > s->prev_total) {
        uint64_t dt = total - s->prev_total;
        uint64_t di = idle >= s->prev_idle ? idle - s->prev_idle : 0; /* iowait may go backwards */
        if (di > dt)
            di = dt;
        s->cpu_percent = round2(100.0 * (double)(dt - di) / (double)dt);
        /* dt covers every online CPU; one CPU's worth of time is dt / ncpu. */
        double ncpu = (double)online_cpus();
        uint64_t dp = have_ticks && ticks >= s->proc_prev_ticks ? ticks - s->proc_prev_ticks : 0;
        double pct = 100.0 * (double)dp * ncpu / (double)dt;
        s->process_cpu_percent = round2(pct > 100.0 * ncpu ? 100.0 * ncpu : pct);
        s->have_sample = 1;
    }
    /* first sample, or the counters went backwards (hotplug): (re)start the baseline */
    s->prev_total = total;
    s->prev_idle = idle;
    if (have_ticks)
        s->proc_prev_ticks = ticks;
}

/* ---- memory, load, uptime ---- */

struct meminfo {
    uint64_t total, available, swap_total, swap_free;
    int have_total, have_swap;
};

/* A "Key:   123 kB" value of /proc/meminfo or /proc/self/status, in bytes. */
static int kb_value(const char *buf, const char *key, uint64_t *out)
{
    const char *p = find_key(buf, key, ':');
    uint64_t v;
    if (!p || !parse_u64(&p, &v))
        return 0;
    p = skip_ws(p);
    *out = strncmp(p, "kB", 2) == 0 ? v * 1024 : v;
    return 1;
}

static void read_meminfo(struct meminfo *m)
{
    char buf[8192];
    memset(m, 0, sizeof *m);
    if (read_small("/proc/meminfo", buf, sizeof buf) < 0)
        return;
    m->have_total = kb_value(buf, "MemTotal", &m->total) && m->total > 0;
    if (!kb_value(buf, "MemAvailable", &m->available)) { /* kernels before 3.14 */
        uint64_t f = 0, b = 0, c = 0;
        kb_value(buf, "MemFree", &f);
        kb_value(buf, "Buffers", &b);
        kb_value(buf, "Cached", &c);
        m->available = f + b + c;
    }
    if (m->available > m->total)
        m->available = m->total;
    m->have_swap = kb_value(buf, "SwapTotal", &m->swap_total) && kb_value(buf, "SwapFree", &m->swap_free);
    if (m->swap_free > m->swap_total)
        m->swap_free = m->swap_total;
}

static int read_uptime(double *up)
{
    char buf[128];
    const char *p = buf;
    if (read_small("/proc/uptime", buf, sizeof buf) >= 0 && parse_udouble(&p, up))
        return 0;
    struct timespec ts; /* same clock, without /proc */
    if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0) {
        *up = (double)ts.tv_sec;
        return 0;
    }
    return -1;
}

/* ---- disks ---- */

/* Whether a mount entry is a real, local filesystem worth a statvfs(). */
static int fs_wanted(const struct mntent *m)
{
    static const char *const skip[] = {
        /* pseudo and in-memory */
        "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "ramfs", "rootfs", "securityfs", "pstore",
        "debugfs", "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs", "bpf", "binfmt_misc",
        "autofs", "rpc_pipefs", "nsfs", "efivarfs", "selinuxfs", "squashfs", "cramfs", "none",
        /* network and cluster: statvfs can block on a dead server */
        "nfs", "nfs4", "nfsd", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "ceph", "glusterfs",
        "lustre", "gfs2", "ocfs2", "sshfs", "davfs", "fuse", NULL};
    const char *t = m->mnt_type;
    for (size_t i = 0; skip[i]; i++)
        if (strcmp(t, skip[i]) == 0)
            return 0;
    if (strncmp(t, "cgroup", 6) == 0 || strncmp(t, "fuse.", 5) == 0) /* fuseblk (ntfs-3g) stays */
        return 0;
    if (strcmp(t, "overlay") == 0 || strcmp(t, "aufs") == 0)
        return strcmp(m->mnt_dir, "/") == 0;
    if (strcmp(t, "9p") == 0) /* virtio/fd transports are local; tcp/rdma are not */
        return !strstr(m->mnt_opts, "trans=tcp") && !strstr(m->mnt_opts, "trans=rdma");
    return 1;
}

json_t *sysinfo_collect_disks(void)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    FILE *f = setmntent("/proc/mounts", "re");
    if (!f)
        return arr;
    struct mntent ent;
    char strbuf[4096];
    dev_t seen[MAX_DISKS];
    size_t nseen = 0;
    while (nseen < MAX_DISKS && getmntent_r(f, &ent, strbuf, sizeof strbuf)) {
        if (!fs_wanted(&ent))
            continue;
        struct stat st;
        if (stat(ent.mnt_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        size_t i = 0;
        while (i < nseen && seen[i] != st.st_dev)
            i++;
        if (i < nseen)
            continue; /* bind mount of a filesystem already listed */
        struct statvfs vfs;
        if (statvfs(ent.mnt_dir, &vfs) != 0 || vfs.f_blocks == 0)
            continue;
        seen[nseen++] = st.st_dev;
        uint64_t bs = vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize;
        uint64_t total = (uint64_t)vfs.f_blocks * bs;
        uint64_t bfree = vfs.f_bfree > vfs.f_blocks ? vfs.f_blocks : vfs.f_bfree;
        uint64_t used = ((uint64_t)vfs.f_blocks - bfree) * bs;
        uint64_t avail = (uint64_t)(vfs.f_bavail > bfree ? bfree : vfs.f_bavail) * bs;
        /* like df: the share of what non-root users can use */
        double pct = used + avail ? 100.0 * (double)used / (double)(used + avail) : 0.0;
        json_t *d = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:f}", "mount_point", ent.mnt_dir, "device",
                              ent.mnt_fsname, "fs_type", ent.mnt_type, "total_bytes", ji(total),
                              "used_bytes", ji(used), "free_bytes", ji(avail), "used_percent", round2(pct));
        if (d) /* NULL on allocation failure or a path that isn't UTF-8 */
            json_array_append_new(arr, d);
    }
    endmntent(f);
    return arr;
}

/* ---- network interfaces ---- */

static int prefix_len(const struct sockaddr *mask)
{
    const unsigned char *b;
    size_t n;
    if (!mask)
        return -1;
    if (mask->sa_family == AF_INET) {
        b = (const unsigned char *)&((const struct sockaddr_in *)(const void *)mask)->sin_addr;
        n = 4;
    } else if (mask->sa_family == AF_INET6) {
        b = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)mask)->sin6_addr;
        n = 16;
    } else {
        return -1;
    }
    int bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += __builtin_popcount(b[i]);
    return bits;
}

/* The interface object for ifa, created (in getifaddrs order) on first sight. */
static json_t *iface_entry(json_t *arr, const struct ifaddrs *ifa)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, ifa->ifa_name) == 0)
            return v;
    }
    v = json_pack("{s:s, s:b, s:b, s:b, s:[]}", "name", ifa->ifa_name, "up", (ifa->ifa_flags & IFF_UP) != 0,
                  "running", (ifa->ifa_flags & IFF_RUNNING) != 0, "loopback",
                  (ifa->ifa_flags & IFF_LOOPBACK) != 0, "addresses");
    if (v && json_array_append_new(arr, v) != 0)
        return NULL;
    return v;
}

static void iface_add_addr(json_t *entry, const struct ifaddrs *ifa)
{
    const struct sockaddr *sa = ifa->ifa_addr;
    char text[INET6_ADDRSTRLEN];
    const void *src;
    const char *family;
    if (sa->sa_family == AF_INET) {
        src = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        family = "ipv4";
    } else {
        src = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        family = "ipv6";
    }
    if (!inet_ntop(sa->sa_family, src, text, sizeof text))
        return;
    json_t *a = json_pack("{s:s, s:s}", "family", family, "address", text);
    if (!a)
        return;
    int plen = prefix_len(ifa->ifa_netmask);
    if (plen >= 0)
        put(a, "prefix_len", json_integer(plen));
    json_array_append_new(json_object_get(entry, "addresses"), a);
}

static json_t *collect_interfaces(void)
{
    struct ifaddrs *list;
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    if (getifaddrs(&list) != 0)
        return arr;
    for (const struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_name)
            continue;
        json_t *e = iface_entry(arr, ifa);
        if (!e || !ifa->ifa_addr)
            continue;
        int fam = ifa->ifa_addr->sa_family;
        if (fam == AF_PACKET) {
            const struct sockaddr_ll *ll = (const struct sockaddr_ll *)(const void *)ifa->ifa_addr;
            size_t len = ll->sll_halen;
            if (len == 0 || len > sizeof ll->sll_addr)
                continue;
            char mac[3 * sizeof ll->sll_addr];
            for (size_t i = 0; i < len; i++)
                snprintf(mac + 3 * i, 4, i + 1 < len ? "%02x:" : "%02x", ll->sll_addr[i]);
            put(e, "mac", json_string(mac));
        } else if (fam == AF_INET || fam == AF_INET6) {
            iface_add_addr(e, ifa);
        }
    }
    freeifaddrs(list);
    return arr;
}

/* ---- process ---- */

uint64_t sysinfo_process_rss(void)
{
    char buf[256];
    const char *p = buf;
    uint64_t size, resident;
    if (read_small("/proc/self/statm", buf, sizeof buf) < 0 || !parse_u64(&p, &size) ||
        !parse_u64(&p, &resident))
        return 0;
    long page = sysconf(_SC_PAGESIZE);
    return resident * (uint64_t)(page > 0 ? page : 4096);
}

/* Entries of /proc/self/fd, not counting the one opendir() itself holds. */
static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    char own[16];
    snprintf(own, sizeof own, "%d", dirfd(d));
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strcmp(e->d_name, own) != 0)
            n++;
    closedir(d);
    return n;
}

/* ---- public ---- */

json_t *sysinfo_collect_info(void)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    char buf[4096], val[256];

    char host[256];
    if (gethostname(host, sizeof host) == 0) {
        host[sizeof host - 1] = '\0';
        put(o, "hostname", json_string(host));
    }

    const char *p;
    if ((read_small("/etc/os-release", buf, sizeof buf) >= 0 ||
         read_small("/usr/lib/os-release", buf, sizeof buf) >= 0) &&
        (p = find_key(buf, "PRETTY_NAME", '=')) != NULL) {
        copy_value(p, val, sizeof val, 1);
        if (val[0])
            put(o, "os", json_string(val));
    }

    struct utsname u;
    if (uname(&u) == 0) {
        put(o, "kernel", json_string(u.release));
        put(o, "arch", json_string(u.machine));
    }

    put(o, "cpu_count", json_integer(online_cpus()));

    /* x86 and recent arm64 say "model name"; older ARM, MIPS and POWER differ */
    if (read_small("/proc/cpuinfo", buf, sizeof buf) >= 0) {
        static const char *const keys[] = {"model name", "Processor", "cpu model", "cpu", NULL};
        for (size_t i = 0; keys[i]; i++) {
            if ((p = find_key(buf, keys[i], ':')) != NULL) {
                copy_value(p, val, sizeof val, 0);
                if (val[0]) {
                    put(o, "cpu_model", json_string(val));
                    break;
                }
            }
        }
    }

    struct meminfo m;
    read_meminfo(&m);
    if (m.have_total)
        put(o, "memory_total_bytes", json_integer(ji(m.total)));
    if (m.have_swap)
        put(o, "swap_total_bytes", json_integer(ji(m.swap_total)));

    double up;
    if (read_uptime(&up) == 0)
        put(o, "uptime_seconds", json_integer((json_int_t)up));

    put(o, "disks", sysinfo_collect_disks());
    put(o, "interfaces", collect_interfaces());
    return o;
}

json_t *sysinfo_collect_metrics(const sysinfo_cpu_sampler *s)
{
    json_t *o = sysinfo_collect_metrics_host(s);
    if (o)
        put(o, "disks", sysinfo_collect_disks());
    return o;
}

json_t *sysinfo_collect_metrics_host(const sysinfo_cpu_sampler *s)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int have = s && s->have_sample;
    put(o, "cpu_percent", have ? json_real(s->cpu_percent) : json_null());
    put(o, "process_cpu_percent", have ? json_real(s->process_cpu_percent) : json_null());

    struct meminfo m;
    read_meminfo(&m);
    if (m.have_total) {
        uint64_t used = m.total - m.available;
        put(o, "memory_total_bytes", json_integer(ji(m.total)));
        put(o, "memory_available_bytes", json_integer(ji(m.available)));
        put(o, "memory_used_bytes", json_integer(ji(used)));
        put(o, "memory_percent", json_real(round2(100.0 * (double)used / (double)m.total)));
    }
    if (m.have_swap) {
        uint64_t used = m.swap_total - m.swap_free;
        put(o, "swap_total_bytes", json_integer(ji(m.swap_total)));
        put(o, "swap_used_bytes", json_integer(ji(used)));
        put(o, "swap_free_bytes", json_integer(ji(m.swap_free)));
        put(o, "swap_percent",
            json_real(m.swap_total ? round2(100.0 * (double)used / (double)m.swap_total) : 0.0));
    }

    char buf[4096];
    const char *p = buf;
    double l1, l5, l15;
    if (read_small("/proc/loadavg", buf, sizeof buf) >= 0 && parse_udouble(&p, &l1) &&
        parse_udouble(&p, &l5) && parse_udouble(&p, &l15)) {
        put(o, "load_1m", json_real(l1));
        put(o, "load_5m", json_real(l5));
        put(o, "load_15m", json_real(l15));
    }

    uint64_t rss = sysinfo_process_rss();
    if (rss)
        put(o, "rss_bytes", json_integer(ji(rss)));
    long fds = count_fds();
    if (fds >= 0)
        put(o, "open_fds", json_integer(fds));
    uint64_t threads;
    if (read_small("/proc/self/status", buf, sizeof buf) >= 0 && kb_value(buf, "Threads", &threads))
        put(o, "threads", json_integer(ji(threads)));
    return o;
}
