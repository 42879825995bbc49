/*
 * test_sysinfo.c — checks sysinfo's JSON against what the test itself reads
 * from the same sources (gethostname, uname, sysconf, /proc/self/status), and
 * that the CPU sampler reports null until it has two samples.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "builtin/sysinfo.h"

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Spins for ms milliseconds of wall time, so /proc/stat moves by a few jiffies. */
static void busy_work(double ms)
{
    struct timespec t0;
    volatile uint64_t x = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (elapsed_ms(&t0) < ms)
        for (int i = 0; i < 10000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
}

/* VmRSS of /proc/self/status in bytes, 0 if unavailable. */
static uint64_t status_vmrss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

static void assert_percent(json_t *v)
{
    assert_non_null(v);
    assert_true(json_is_number(v));
    double d = json_number_value(v);
    assert_true(d >= 0.0 && d <= 100.0);
}

static void test_info_host(void **state)
{
    (void)state;
    json_t *info = sysinfo_collect_info();
    assert_non_null(info);

    char host[256] = {0};
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    assert_string_equal(json_string_value(json_object_get(info, "hostname")), host);

    struct utsname u;
    assert_int_equal(uname(&u), 0);
    assert_string_equal(json_string_value(json_object_get(info, "kernel")), u.release);
    assert_string_equal(json_string_value(json_object_get(info, "arch")), u.machine);

    json_t *cpus = json_object_get(info, "cpu_count");
    assert_true(json_is_integer(cpus));
    assert_true(json_integer_value(cpus) >= 1);
    assert_int_equal(json_integer_value(cpus), sysconf(_SC_NPROCESSORS_ONLN));

    json_t *mem = json_object_get(info, "memory_total_bytes");
    assert_true(json_is_integer(mem));
    assert_true(json_integer_value(mem) > 0);

    json_t *up = json_object_get(info, "uptime_seconds");
    assert_true(json_is_integer(up));
    assert_true(json_integer_value(up) >= 0);

    json_t *os = json_object_get(info, "os");
    if (os) /* absent only without /etc/os-release */
        assert_true(json_is_string(os) && json_string_length(os) > 0);
    json_decref(info);
}

static void test_info_interfaces(void **state)
{
    (void)state;
    json_t *info = sysinfo_collect_info();
    assert_non_null(info);
    json_t *ifs = json_object_get(info, "interfaces");
    assert_true(json_is_array(ifs));
    assert_true(json_array_size(ifs) >= 1);

    size_t i, j;
    json_t *itf, *addr;
    json_array_foreach(ifs, i, itf) {
        assert_true(json_is_string(json_object_get(itf, "name")));
        assert_true(json_is_boolean(json_object_get(itf, "up")));
        assert_true(json_is_boolean(json_object_get(itf, "loopback")));
        json_t *mac = json_object_get(itf, "mac");
        if (mac)
            assert_true(json_is_string(mac) && json_string_length(mac) >= 2);
        json_t *addrs = json_object_get(itf, "addresses");
        assert_true(json_is_array(addrs));
        json_array_foreach(addrs, j, addr) {
            const char *fam = json_string_value(json_object_get(addr, "family"));
            assert_non_null(fam);
            int v4 = strcmp(fam, "ipv4") == 0;
            assert_true(v4 || strcmp(fam, "ipv6") == 0);
            assert_true(json_is_string(json_object_get(addr, "address")));
            json_t *plen = json_object_get(addr, "prefix_len");
            if (plen) {
                assert_true(json_is_integer(plen));
                assert_true(json_integer_value(plen) >= 0 && json_integer_value(plen) <= (v4 ? 32 : 128));
            }
        }
    }
    json_decref(info);
}

static void check_disks(json_t *disks)
{
    assert_true(json_is_array(disks));
    size_t i;
    json_t *d;
    json_array_foreach(disks, i, d) {
        assert_true(json_is_string(json_object_get(d, "mount_point")));
        assert_true(json_is_string(json_object_get(d, "fs_type")));
        json_int_t total = json_integer_value(json_object_get(d, "total_bytes"));
        json_int_t used = json_integer_value(json_object_get(d, "used_bytes"));
        json_int_t avail = json_integer_value(json_object_get(d, "free_bytes"));
        assert_true(total > 0 && used >= 0 && avail >= 0);
        assert_true(used + avail <= total);
        assert_percent(json_object_get(d, "used_percent"));
        const char *t = json_string_value(json_object_get(d, "fs_type"));
        assert_true(strcmp(t, "proc") != 0 && strcmp(t, "tmpfs") != 0 && strncmp(t, "cgroup", 6) != 0);
    }
}

static void test_info_disks(void **state)
{
    (void)state;
    json_t *info = sysinfo_collect_info();
    assert_non_null(info);
    check_disks(json_object_get(info, "disks"));
    json_decref(info);
}

static void test_cpu_percent_needs_two_samples(void **state)
{
    (void)state;
    sysinfo_cpu_sampler s;
    memset(&s, 0, sizeof s);

    json_t *m = sysinfo_collect_metrics(&s);
    assert_non_null(m);
    assert_true(json_is_null(json_object_get(m, "cpu_percent")));
    assert_true(json_is_null(json_object_get(m, "process_cpu_percent")));
    json_decref(m);

    sysinfo_cpu_sample(&s);
    assert_int_equal(s.have_sample, 0);
    m = sysinfo_collect_metrics(&s);
    assert_true(json_is_null(json_object_get(m, "cpu_percent")));
    json_decref(m);

    /* a few jiffies must pass; retry in case the clock tick is coarse */
    for (int tries = 0; tries < 10 && !s.have_sample; tries++) {
        busy_work(50);
        sysinfo_cpu_sample(&s);
    }
    assert_int_equal(s.have_sample, 1);

    m = sysinfo_collect_metrics(&s);
    assert_percent(json_object_get(m, "cpu_percent"));
    json_t *pc = json_object_get(m, "process_cpu_percent");
    assert_true(json_is_number(pc));
    assert_true(json_number_value(pc) >= 0.0);
    assert_true(json_number_value(pc) <= 100.0 * (double)sysconf(_SC_NPROCESSORS_ONLN));
    json_decref(m);
}

static void test_metrics_null_sampler(void **state)
{
    (void)state;
    json_t *m = sysinfo_collect_metrics(NULL);
    assert_non_null(m);
    assert_true(json_is_null(json_object_get(m, "cpu_percent")));
    json_decref(m);
    sysinfo_cpu_sample(NULL); /* must not crash */
}

static void test_metrics_values(void **state)
{
    (void)state;
    sysinfo_cpu_sampler s;
    memset(&s, 0, sizeof s);
    json_t *m = sysinfo_collect_metrics(&s);
    assert_non_null(m);

    json_t *rss = json_object_get(m, "rss_bytes");
    assert_true(json_is_integer(rss));
    double r = (double)json_integer_value(rss);
    assert_true(r > 0);
    uint64_t vmrss = status_vmrss();
    if (vmrss > 0) { /* same order of magnitude; both move a little between reads */
        assert_true(r >= (double)vmrss / 10.0);
        assert_true(r <= (double)vmrss * 10.0);
    }
    assert_true(sysinfo_process_rss() > 0);

    static const char *const loads[] = {"load_1m", "load_5m", "load_15m"};
    for (size_t i = 0; i < 3; i++) {
        json_t *l = json_object_get(m, loads[i]);
        assert_true(json_is_number(l));
        assert_true(json_number_value(l) >= 0.0);
    }

    json_int_t total = json_integer_value(json_object_get(m, "memory_total_bytes"));
    json_int_t avail = json_integer_value(json_object_get(m, "memory_available_bytes"));
    json_int_t used = json_integer_value(json_object_get(m, "memory_used_bytes"));
    assert_true(total > 0);
    assert_true(avail >= 0 && avail <= total);
    assert_true(used == total - avail);
    assert_percent(json_object_get(m, "memory_percent"));
    json_t *swap = json_object_get(m, "swap_percent");
    if (swap)
        assert_percent(swap);

    assert_true(json_integer_value(json_object_get(m, "open_fds")) >= 3);
    assert_true(json_integer_value(json_object_get(m, "threads")) >= 1);
    check_disks(json_object_get(m, "disks"));
    json_decref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_host),
        cmocka_unit_test(test_info_interfaces),
        cmocka_unit_test(test_info_disks),
        cmocka_unit_test(test_cpu_percent_needs_two_samples),
        cmocka_unit_test(test_metrics_null_sampler),
        cmocka_unit_test(test_metrics_values),
    };
    if (getenv("SYSINFO_DUMP")) { /* SYSINFO_DUMP=1 prints the JSON for a look */
        sysinfo_cpu_sampler s = {0};
        sysinfo_cpu_sample(&s);
        busy_work(100);
        sysinfo_cpu_sample(&s);
        json_t *a = sysinfo_collect_info(), *b = sysinfo_collect_metrics(&s);
        json_dumpf(a, stdout, JSON_INDENT(2));
        printf("\n");
        json_dumpf(b, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(a);
        json_decref(b);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
