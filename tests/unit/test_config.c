/*
 * test_config.c — unit tests for src/core/config.c: defaults by role, YAML
 * loading, every kind of validation error (with file, line and key in the
 * message), command-line flags, cross-key checks and the --print-config round
 * trip. Temporary YAML files are created with mkstemp in /tmp and removed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/ratelimit.h"
#include "core/config.h"
#include "membership/addrsel.h"
#include "pki/pki.h"

/* Writes text to a new temporary file; returns its heap path. */
static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/p2p_test_config_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void drop_tmp(char *path)
{
    unlink(path);
    free(path);
}

/* Loads text over cfg; returns rc, *err and the temp path (caller drops) through out-params. */
static int load_text(p2p_config *cfg, const char *text, char **err, char **path)
{
    *path = write_tmp(text);
    return p2p_config_load_file(cfg, *path, err);
}

static int load_ok(p2p_config *cfg, const char *text)
{
    char *err = NULL, *path;
    int rc = load_text(cfg, text, &err, &path);
    if (rc) print_error("unexpected error: %s\n", err ? err : "(none)");
    free(err);
    drop_tmp(path);
    return rc;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

/* Loads text into worker defaults; expects -EINVAL and a message naming file:line, the
 * key (when given) and `what`; and checks that the config did not change. */
static void expect_error(const char *text, unsigned line, const char *key, const char *what)
{
    p2p_config cfg;
    char *err = NULL, *path, where[128];
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(p2p_config_set(&cfg, "node_id", "before", NULL), 0);
    char *before = p2p_config_to_yaml(&cfg);
    assert_non_null(before);
    assert_int_equal(load_text(&cfg, text, &err, &path), -EINVAL);
    snprintf(where, sizeof where, "%s:%u: ", path, line);
    assert_contains(err, where);
    if (key) {
        char k[80];
        snprintf(k, sizeof k, "key '%s'", key);
        assert_contains(err, k);
    }
    if (what) assert_contains(err, what);
    char *after = p2p_config_to_yaml(&cfg);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(err);
    drop_tmp(path);
    p2p_config_free(&cfg);
}

static const char full_yaml[] =
    "# a complete file\n"
    "node_id: node-1.test_A\n"
    "port: 9001\n"
    "bind_address: 127.0.0.1\n"
    "advertise_address: \"10.0.0.5\"\n"
    "coordinator_mode: yes\n"
    "coordinator_addresses:\n"
    "  - 10.0.0.1:8001\n"
    "  - \"[::1]:8003\"\n"
    "  - coord.example.com:65535\n"
    "state_directory: /var/lib/p2p\n"
    "https_enabled: off\n"
    "ssl_cert_file: /etc/p2p/node.crt\n"
    "ssl_key_file: '/etc/p2p/node.key'\n"
    "ssl_ca_cert_file: /etc/p2p/ca.crt\n"
    "ssl_verify: False\n"
    "http_max_body_size: 2097152\n"
    "http_max_header_size: 8192\n"
    "http_max_connections: 50\n"
    "http_idle_timeout: 30\n"
    "http_request_timeout: 5\n"
    "shutdown_grace_period: 0\n"
    "access_log: no\n"
    "log_level: debug\n"
    "rate_limit_enabled: false\n"
    "rate_limit_rpc_requests: 10\n"
    "rate_limit_rpc_burst: 2\n"
    "rate_limit_health_requests: 30\n"
    "rate_limit_health_burst: 5\n"
    "rate_limit_default_requests: 20\n"
    "rate_limit_default_burst: 3\n"
    "gossip_interval_min: 2\n"
    "gossip_interval_max: 4\n"
    "gossip_compression_enabled: false\n"
    "gossip_compression_threshold: 0\n"
    "max_log_entries: 7\n"
    "redis_enabled: false\n"
    "redis_url: redis://cache:6380/1\n"
    "dashboard_enabled: false\n"
    "metrics_retention_count: 9\n"
    "metrics_cleanup_interval: 60\n"
    "reporter_enabled: false\n"
    "reporter_interval_min: 10\n"
    "reporter_interval_max: 20\n";

static void check_full(const p2p_config *c)
{
    assert_string_equal(c->node_id, "node-1.test_A");
    assert_int_equal(c->port, 9001);
    assert_string_equal(c->bind_address, "127.0.0.1");
    assert_string_equal(c->advertise_address, "10.0.0.5");
    assert_int_equal(c->coordinator_mode, 1);
    assert_int_equal(c->n_coordinator_addresses, 3);
    assert_string_equal(c->coordinator_addresses[0], "10.0.0.1:8001");
    assert_string_equal(c->coordinator_addresses[1], "[::1]:8003");
    assert_string_equal(c->coordinator_addresses[2], "coord.example.com:65535");
    assert_null(c->coordinator_addresses[3]);
    assert_string_equal(c->state_directory, "/var/lib/p2p");
    assert_int_equal(c->https_enabled, 0);
    assert_string_equal(c->ssl_cert_file, "/etc/p2p/node.crt");
    assert_string_equal(c->ssl_key_file, "/etc/p2p/node.key");
    assert_string_equal(c->ssl_ca_cert_file, "/etc/p2p/ca.crt");
    assert_int_equal(c->ssl_verify, 0);
    assert_int_equal(c->http_max_body_size, 2097152);
    assert_int_equal(c->http_max_header_size, 8192);
    assert_int_equal(c->http_max_connections, 50);
    assert_int_equal(c->http_idle_timeout, 30);
    assert_int_equal(c->http_request_timeout, 5);
    assert_int_equal(c->shutdown_grace_period, 0);
    assert_int_equal(c->access_log, 0);
    assert_string_equal(c->log_level, "debug");
    assert_int_equal(c->rate_limit_enabled, 0);
    assert_int_equal(c->rate_limit_rpc_requests, 10);
    assert_int_equal(c->rate_limit_rpc_burst, 2);
    assert_int_equal(c->rate_limit_health_requests, 30);
    assert_int_equal(c->rate_limit_health_burst, 5);
    assert_int_equal(c->rate_limit_default_requests, 20);
    assert_int_equal(c->rate_limit_default_burst, 3);
    assert_int_equal(c->gossip_interval_min, 2);
    assert_int_equal(c->gossip_interval_max, 4);
    assert_int_equal(c->gossip_compression_enabled, 0);
    assert_int_equal(c->gossip_compression_threshold, 0);
    assert_int_equal(c->max_log_entries, 7);
    assert_int_equal(c->redis_enabled, 0);
    assert_string_equal(c->redis_url, "redis://cache:6380/1");
    assert_int_equal(c->dashboard_enabled, 0);
    assert_int_equal(c->metrics_retention_count, 9);
    assert_int_equal(c->metrics_cleanup_interval, 60);
    assert_int_equal(c->reporter_enabled, 0);
    assert_int_equal(c->reporter_interval_min, 10);
    assert_int_equal(c->reporter_interval_max, 20);
}

static void test_full_file(void **state)
{
    (void)state;
    p2p_config cfg;
    char *err = NULL;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, full_yaml), 0);
    check_full(&cfg);
    assert_int_equal(p2p_config_finalize(&cfg, &err), 0);
    assert_null(err);
    check_full(&cfg);
    p2p_config_free(&cfg);
}

static void check_worker_defaults(const p2p_config *c)
{
    assert_int_equal(c->port, 8002);
    assert_int_equal(c->coordinator_mode, 0);
    assert_string_equal(c->bind_address, "0.0.0.0");
    assert_string_equal(c->advertise_address, "");
    assert_string_equal(c->state_directory, "data/worker");
    assert_int_equal(c->n_coordinator_addresses, 1);
    assert_string_equal(c->coordinator_addresses[0], "127.0.0.1:8001");
    assert_int_equal(c->https_enabled, 1);
    assert_int_equal(c->ssl_verify, 1);
    assert_string_equal(c->ssl_cert_file, "");
    assert_int_equal(c->http_max_body_size, 1048576);
    assert_int_equal(c->http_max_header_size, 16384);
    assert_int_equal(c->http_max_connections, 1024);
    assert_int_equal(c->http_idle_timeout, 60);
    assert_int_equal(c->http_request_timeout, 10);
    assert_int_equal(c->shutdown_grace_period, 10);
    assert_int_equal(c->access_log, 1);
    assert_string_equal(c->log_level, "info");
    assert_int_equal(c->rate_limit_rpc_requests, 100);
    assert_int_equal(c->rate_limit_rpc_burst, 20);
    assert_int_equal(c->rate_limit_health_requests, 300);
    assert_int_equal(c->rate_limit_health_burst, 50);
    assert_int_equal(c->rate_limit_default_requests, 200);
    assert_int_equal(c->rate_limit_default_burst, 30);
    assert_int_equal(c->gossip_interval_min, 5);
    assert_int_equal(c->gossip_interval_max, 30);
    assert_int_equal(c->gossip_compression_threshold, 1024);
    assert_int_equal(c->max_log_entries, 1000);
    assert_string_equal(c->redis_url, "");
    assert_int_equal(c->cache_l1_max_bytes, 67108864);
    assert_int_equal(c->cache_default_ttl, 300);
    assert_int_equal(c->cache_redis_timeout_ms, 500);
    assert_int_equal(c->metrics_retention_count, 100);
    assert_int_equal(c->metrics_cleanup_interval, 300);
    assert_int_equal(c->reporter_interval_min, 30);
    assert_int_equal(c->reporter_interval_max, 300);
}

static void test_empty_file(void **state)
{
    (void)state;
    static const char *const empties[] = {"", "\n\n", "# only a comment\n", "---\n", "~\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        p2p_config cfg;
        p2p_config_defaults(&cfg, 0);
        assert_int_equal(load_ok(&cfg, empties[i]), 0);
        check_worker_defaults(&cfg);
        assert_null(cfg.node_id);
        assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
        assert_non_null(strstr(cfg.node_id, "worker-") == cfg.node_id ? cfg.node_id : NULL);
        assert_true(strlen(cfg.node_id) <= 63);
        p2p_config_free(&cfg);
    }
}

static void test_role_defaults(void **state)
{
    (void)state;
    p2p_config cfg;

    /* worker defaults, the file turns on coordinator mode without a port */
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, "coordinator_mode: true\n"), 0);
    assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
    assert_int_equal(cfg.port, 8001);
    assert_string_equal(cfg.state_directory, "data/coordinator");
    assert_int_equal(cfg.n_coordinator_addresses, 0);
    assert_null(cfg.coordinator_addresses[0]);
    assert_true(strncmp(cfg.node_id, "coordinator-", 12) == 0);
    p2p_config_free(&cfg);

    /* worker with nothing set */
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, "ssl_verify: on\n"), 0);
    assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
    check_worker_defaults(&cfg);
    p2p_config_free(&cfg);

    /* explicit port and state_directory are kept */
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, "coordinator_mode: true\nport: 9000\nstate_directory: st\n"), 0);
    assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
    assert_int_equal(cfg.port, 9000);
    assert_string_equal(cfg.state_directory, "st");
    p2p_config_free(&cfg);

    /* coordinator defaults, the file says worker */
    p2p_config_defaults(&cfg, 1);
    assert_int_equal(cfg.port, 8001);
    assert_int_equal(load_ok(&cfg, "coordinator_mode: false\n"), 0);
    assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
    check_worker_defaults(&cfg);
    p2p_config_free(&cfg);

    /* the flag decides after the file, and an explicit node_id survives */
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, "node_id: mine\n"), 0);
    assert_int_equal(p2p_config_set(&cfg, "coordinator", NULL, NULL), 0);
    assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
    assert_int_equal(cfg.coordinator_mode, 1);
    assert_int_equal(cfg.port, 8001);
    assert_string_equal(cfg.node_id, "mine");
    p2p_config_free(&cfg);
}

static void test_load_over_values(void **state)
{
    (void)state;
    p2p_config cfg;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, full_yaml), 0);
    assert_int_equal(load_ok(&cfg, "port: 7000\ncoordinator_addresses: []\nadvertise_address:\n"), 0);
    assert_int_equal(cfg.port, 7000);
    assert_int_equal(cfg.n_coordinator_addresses, 0);
    assert_string_equal(cfg.advertise_address, "");
    assert_string_equal(cfg.node_id, "node-1.test_A");
    assert_string_equal(cfg.log_level, "debug");
    /* comma-separated string and flow sequence forms in a file */
    assert_int_equal(load_ok(&cfg, "coordinator_addresses: \"a:1, b:2\"\n"), 0);
    assert_int_equal(cfg.n_coordinator_addresses, 2);
    assert_string_equal(cfg.coordinator_addresses[1], "b:2");
    assert_int_equal(load_ok(&cfg, "coordinator_addresses: [\"[fe80::1]:9\"]\n"), 0);
    assert_int_equal(cfg.n_coordinator_addresses, 1);
    assert_string_equal(cfg.coordinator_addresses[0], "[fe80::1]:9");
    assert_null(cfg.coordinator_addresses[1]);
    p2p_config_free(&cfg);
}

static void test_unknown_key(void **state)
{
    (void)state;
    expect_error("port: 8001\nprot: 8001\n", 2, "prot", "unknown key");
    expect_error("port: 8001\nnode-id: x\n", 2, "node-id", "did you mean 'node_id'");
    expect_error("\n\ncompletely_unrelated: 1\n", 3, "completely_unrelated", "unknown key");
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_error("node_id: a\nport: abc\n", 2, "port", "expected an integer in 1..65535");
    expect_error("port: 80.5\n", 1, "port", "expected an integer");
    expect_error("port: 0x50\n", 1, "port", "expected an integer");
    expect_error("port: ' 80'\n", 1, "port", "expected an integer");
    expect_error("port:\n", 1, "port", "missing value");
    expect_error("http_max_body_size: 1e6\n", 1, "http_max_body_size", "expected an integer");
}

static void test_out_of_range(void **state)
{
    (void)state;
    expect_error("port: 0\n", 1, "port", "out of range 1..65535");
    expect_error("\nport: 65536\n", 2, "port", "out of range 1..65535");
    expect_error("port: -1\n", 1, "port", "out of range");
    expect_error("port: 99999999999999999999999\n", 1, "port", "out of range");
    expect_error("http_max_body_size: 1023\n", 1, "http_max_body_size", "1024..1073741824");
    expect_error("http_max_body_size: 1073741825\n", 1, "http_max_body_size", "out of range");
    expect_error("shutdown_grace_period: 601\n", 1, "shutdown_grace_period", "0..600");
    expect_error("rate_limit_rpc_burst: 0\n", 1, "rate_limit_rpc_burst", "out of range");
}

/* A key's range is the range of the component using it (issue 9, finding 5): every
 * value the validator accepts, the component builds with. */
static void test_ranges_are_the_components(void **state)
{
    (void)state;
    const char *const rl_keys[] = {"rate_limit_rpc", "rate_limit_health", "rate_limit_default", "rate_limit_node_rpc",
                                   "rate_limit_node_default"};
    char text[128], range[64];
    for (size_t i = 0; i < sizeof rl_keys / sizeof rl_keys[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s_burst", rl_keys[i]);
        snprintf(text, sizeof text, "%s: %d\n", key, P2P_RL_MAX_BURST + 1);
        snprintf(range, sizeof range, "out of range %d..%d", P2P_RL_MIN_BURST, P2P_RL_MAX_BURST);
        expect_error(text, 1, key, range);
        snprintf(key, sizeof key, "%s_requests", rl_keys[i]);
        snprintf(text, sizeof text, "%s: %d\n", key, P2P_RL_MAX_RATE + 1);
        expect_error(text, 1, key, "out of range");
    }
    expect_error("rate_limit_rpc_burst: 1000000\n", 1, "rate_limit_rpc_burst", "out of range 1..10000");
    /* the extremes the validator accepts build a limiter */
    p2p_config cfg;
    p2p_config_defaults(&cfg, 1);
    assert_int_equal(load_ok(&cfg, "rate_limit_rpc_burst: 10000\nrate_limit_rpc_requests: 1000000\n"
                                   "rate_limit_node_rpc_burst: 1\nrate_limit_node_default_requests: 1\n"),
                     0);
    p2p_ratelimit_opts o;
    p2p_ratelimit_opts_default(&o);
    o.rates[P2P_RL_RPC] = (p2p_ratelimit_rate){(uint32_t)cfg.rate_limit_rpc_requests, (uint32_t)cfg.rate_limit_rpc_burst};
    p2p_ratelimit *rl = NULL;
    assert_int_equal(p2p_ratelimit_new(&o, &rl), 0);
    p2p_ratelimit_free(rl);
    p2p_config_free(&cfg);
    /* the certificate lifetime is the PKI's */
    snprintf(text, sizeof text, "cert_lifetime: %ld\n", PKI_MAX_CERT_LIFETIME_S + 1);
    expect_error(text, 1, "cert_lifetime", "out of range 60..315360000");
    /* what the HTTP server, gossip socket and rate limiter would refuse at start */
    expect_error("bind_address: localhost\n", 1, "bind_address", "not an IP address");
    expect_error("bind_address: \"10.0.0.1 \"\n", 1, "bind_address", "not an IP address");
    expect_error("bind_address: \"fe80::1%\"\n", 1, "bind_address", "not an IP address");
    p2p_config_defaults(&cfg, 1);
    assert_int_equal(load_ok(&cfg, "bind_address: \"::\"\n"), 0);
    assert_int_equal(load_ok(&cfg, "bind_address: \"fe80::1%eth0\"\n"), 0);
    assert_int_equal(load_ok(&cfg, "bind_address: 127.0.0.1\ntrusted_proxies: \"10.0.0.0/8, ::1,192.168.1.1\"\n"),
                     0);
    p2p_config_free(&cfg);
    expect_error("trusted_proxies: \"10.0.0.0/8, proxy.local\"\n", 1, "trusted_proxies",
                 "'proxy.local' is not an IP address or CIDR block");
    expect_error("trusted_proxies: 10.0.0.0/33\n", 1, "trusted_proxies", "is not an IP address or CIDR block");
    char big[400];
    memset(big, 'a', sizeof big);
    snprintf(big, sizeof big, "advertise_address: %0*d\n", P2P_ADDRSEL_IP_MAX, 1);
    expect_error(big, 1, "advertise_address", "shorter than 256 bytes");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    expect_error("port: 8001\nlog_level: info\nport: 8002\n", 3, "port", "duplicate key (first set on line 1)");
}

static void test_bad_bool(void **state)
{
    (void)state;
    expect_error("https_enabled: maybe\n", 1, "https_enabled", "expected true or false");
    expect_error("https_enabled: 1\n", 1, "https_enabled", "expected true or false");
    expect_error("https_enabled:\n", 1, "https_enabled", "expected true or false");
}

static void test_bad_strings(void **state)
{
    (void)state;
    expect_error("node_id: \"has space\"\n", 1, "node_id", "may only contain");
    expect_error("node_id: \"\"\n", 1, "node_id", "1..63");
    expect_error("node_id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 1, "node_id", "1..63");
    expect_error("log_level: verbose\n", 1, "log_level", "not one of debug, info, warn, error");
    expect_error("bind_address: ''\n", 1, "bind_address", "must not be empty");
    expect_error("redis_url: \"a\\nb\"\n", 1, "redis_url", "control characters");
    expect_error("redis_url: \"a\\0b\"\n", 1, "redis_url", "NUL");
    expect_error("redis_url: http://cache:6379\n", 1, "redis_url", "must start with redis:// or unix:");
    expect_error("redis_url: redis://cache:99999\n", 1, "redis_url", "port must be 1..65535");
    expect_error("redis_url: unix:relative.sock\n", 1, "redis_url", "absolute socket path");
    expect_error("redis_url: rediss://cache\n", 1, "redis_url", "TLS");
    expect_error("cache_l1_max_bytes: 1000\n", 1, "cache_l1_max_bytes", "out of range");
    expect_error("cache_default_ttl: 0\n", 1, "cache_default_ttl", "out of range");
    expect_error("cache_redis_timeout_ms: 5\n", 1, "cache_redis_timeout_ms", "out of range");
    expect_error("cache_redis_timeout_ms: 60001\n", 1, "cache_redis_timeout_ms", "out of range");
}

static void test_bad_list(void **state)
{
    (void)state;
    expect_error("coordinator_addresses:\n  - a:1\n  - nohost\n", 3, "coordinator_addresses", "'nohost'");
    expect_error("coordinator_addresses:\n  - a:0\n", 2, "coordinator_addresses", "out of range 1..65535");
    expect_error("coordinator_addresses:\n  - a:65536\n", 2, "coordinator_addresses", "out of range");
    expect_error("coordinator_addresses: [\"::1:8001\"]\n", 1, "coordinator_addresses", "brackets");
    expect_error("coordinator_addresses: [\"[zz]:8001\"]\n", 1, "coordinator_addresses", "not an IPv6");
    expect_error("coordinator_addresses: [\"a:b\"]\n", 1, "coordinator_addresses", "host:port");
    expect_error("coordinator_addresses: \"a:1,,b:2\"\n", 1, "coordinator_addresses", "entry 2 of the list is empty");
    expect_error("coordinator_addresses:\n  - a:1\n  - {x: 1}\n", 3, "coordinator_addresses", "got a mapping");
    expect_error("coordinator_addresses:\n  x: 1\n", 2, "coordinator_addresses", "got a mapping");
}

static void test_too_many_addresses(void **state)
{
    (void)state;
    char text[1024] = "coordinator_addresses:\n";
    for (int i = 0; i < P2P_CONFIG_MAX_ADDRS + 1; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "  - h%d:1\n", i);
    /* the 17th entry is on line 18 */
    expect_error(text, P2P_CONFIG_MAX_ADDRS + 2, "coordinator_addresses", "at most 16");

    p2p_config cfg;
    char *err = NULL;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(p2p_config_set(&cfg, "coordinator-addresses",
                                    "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16", NULL),
                     0);
    assert_int_equal(cfg.n_coordinator_addresses, 16);
    assert_int_equal(p2p_config_set(&cfg, "coordinator-addresses",
                                    "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,a:14,a:15,a:16,a:17", &err),
                     -EINVAL);
    assert_contains(err, "flag --coordinator-addresses: at most 16");
    assert_int_equal(cfg.n_coordinator_addresses, 16);
    free(err);
    p2p_config_free(&cfg);
}

static void test_yaml_syntax_error(void **state)
{
    (void)state;
    expect_error("port: 8001\nnode_id: a\n  log_level: info\n", 3, NULL, "YAML syntax error: mapping values are not allowed");
    expect_error("port: 8001\nnode_id: [a, b\n", 3, NULL, "YAML syntax error");
    expect_error("port: 8001\nnode_id: \"abc\n", 3, NULL, "YAML syntax error");
    expect_error("port: *nothing\n", 1, NULL, "YAML syntax error");
    expect_error("port: 1\nnode_id: \xff\n", 2, NULL, "YAML syntax error: invalid leading UTF-8 octet");
    expect_error("port: 8001\n---\nport: 8002\n", 3, NULL, "only one YAML document");
}

static void test_not_a_mapping(void **state)
{
    (void)state;
    expect_error("- port\n- 8001\n", 1, NULL, "must be a mapping");
    expect_error("\njust a string\n", 2, NULL, "must be a mapping");
    expect_error("port: 8001\nlog_level:\n  level: info\n", 3, "log_level", "got a mapping");
    expect_error("port: [1, 2]\n", 1, "port", "got a sequence");
    expect_error("node_id:\n  - a\n", 2, "node_id", "got a sequence");
    expect_error("[a, b]: 1\n", 1, NULL, "keys must be names");
}

static void test_missing_file(void **state)
{
    (void)state;
    p2p_config cfg;
    char *err = NULL;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(p2p_config_load_file(&cfg, "/nonexistent/p2p.yaml", &err), -ENOENT);
    assert_contains(err, "/nonexistent/p2p.yaml");
    free(err);
    check_worker_defaults(&cfg);
    p2p_config_free(&cfg);
}

static void test_unchanged_after_error(void **state)
{
    (void)state;
    p2p_config cfg;
    char *err = NULL, *path;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, full_yaml), 0);
    char *before = p2p_config_to_yaml(&cfg);
    /* valid keys before the bad one must not leak into cfg */
    assert_int_equal(load_text(&cfg, "node_id: other\ncoordinator_addresses: [x:1]\nport: 0\n", &err, &path), -EINVAL);
    assert_contains(err, ":3: key 'port'");
    check_full(&cfg);
    char *after = p2p_config_to_yaml(&cfg);
    assert_string_equal(before, after);
    free(err);
    free(after);
    drop_tmp(path);
    assert_int_equal(p2p_config_set(&cfg, "log-level", "loud", &err), -EINVAL);
    after = p2p_config_to_yaml(&cfg);
    assert_string_equal(before, after);
    free(err);
    free(after);
    free(before);
    p2p_config_free(&cfg);
}

static void test_set_flags(void **state)
{
    (void)state;
    p2p_config cfg;
    char *err = NULL;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(p2p_config_set(&cfg, "port", "8005", &err), 0);
    assert_null(err);
    assert_int_equal(cfg.port, 8005);
    assert_int_equal(p2p_config_set(&cfg, "node-id", "flagged", NULL), 0);
    assert_string_equal(cfg.node_id, "flagged");
    assert_int_equal(p2p_config_set(&cfg, "bind-address", "::", NULL), 0);
    assert_string_equal(cfg.bind_address, "::");
    assert_int_equal(p2p_config_set(&cfg, "data-dir", "/srv/p2p", NULL), 0);
    assert_string_equal(cfg.state_directory, "/srv/p2p");
    assert_int_equal(p2p_config_set(&cfg, "https-enabled", "off", NULL), 0);
    assert_int_equal(cfg.https_enabled, 0);
    assert_int_equal(p2p_config_set(&cfg, "http_max_body_size", "1073741824", NULL), 0);
    assert_int_equal(cfg.http_max_body_size, 1073741824);
    assert_int_equal(p2p_config_set(&cfg, "coordinator-addresses", " a.example:1, [::1]:2 ,10.1.1.1:3", NULL), 0);
    assert_int_equal(cfg.n_coordinator_addresses, 3);
    assert_string_equal(cfg.coordinator_addresses[0], "a.example:1");
    assert_string_equal(cfg.coordinator_addresses[1], "[::1]:2");
    assert_string_equal(cfg.coordinator_addresses[2], "10.1.1.1:3");
    assert_int_equal(p2p_config_set(&cfg, "coordinator-addresses", "", NULL), 0);
    assert_int_equal(cfg.n_coordinator_addresses, 0);
    assert_int_equal(p2p_config_set(&cfg, "coordinator", "true", NULL), 0);
    assert_int_equal(cfg.coordinator_mode, 1);
    assert_int_equal(cfg.port, 8005); /* explicit */

    assert_int_equal(p2p_config_set(&cfg, "port", "80x", &err), -EINVAL);
    assert_contains(err, "flag --port: expected an integer in 1..65535, got '80x'");
    free(err);
    assert_int_equal(p2p_config_set(&cfg, "max_log_entries", "0", &err), -EINVAL);
    assert_contains(err, "flag --max-log-entries: 0 is out of range 1..10000000");
    free(err);
    assert_int_equal(p2p_config_set(&cfg, "prot", "1", &err), -EINVAL);
    assert_contains(err, "flag --prot: unknown option (did you mean --port?)");
    free(err);
    assert_int_equal(p2p_config_set(&cfg, "coordinator-addresses", "a:1,bad", &err), -EINVAL);
    assert_contains(err, "flag --coordinator-addresses: entry 'bad'");
    free(err);
    assert_int_equal(p2p_config_set(&cfg, "port", NULL, &err), -EINVAL);
    assert_contains(err, "missing value");
    free(err);
    assert_int_equal(cfg.port, 8005);
    assert_int_equal(cfg.n_coordinator_addresses, 0);
    p2p_config_free(&cfg);
}

static void test_finalize_cross_keys(void **state)
{
    (void)state;
    p2p_config cfg;
    char *err = NULL;

    p2p_config_defaults(&cfg, 0);
    assert_int_equal(load_ok(&cfg, "gossip_interval_min: 40\ngossip_interval_max: 30\n"), 0);
    assert_int_equal(p2p_config_finalize(&cfg, &err), -EINVAL);
    assert_contains(err, "key 'gossip_interval_min'");
    assert_contains(err, "gossip_interval_max");
    free(err);
    assert_null(cfg.node_id); /* unchanged: not derived on error */
    p2p_config_free(&cfg);

    p2p_config_defaults(&cfg, 1);
    assert_int_equal(p2p_config_set(&cfg, "reporter-interval-min", "301", NULL), 0);
    assert_int_equal(p2p_config_finalize(&cfg, &err), -EINVAL);
    assert_contains(err, "key 'reporter_interval_min'");
    free(err);
    assert_int_equal(p2p_config_set(&cfg, "reporter-interval-max", "301", NULL), 0);
    assert_int_equal(p2p_config_finalize(&cfg, &err), 0);
    p2p_config_free(&cfg);

    p2p_config_defaults(&cfg, 0);
    assert_int_equal(p2p_config_set(&cfg, "ssl-cert-file", "/x.crt", NULL), 0);
    assert_int_equal(p2p_config_finalize(&cfg, &err), -EINVAL);
    assert_contains(err, "ssl_key_file");
    free(err);
    p2p_config_free(&cfg);

    p2p_config_defaults(&cfg, 0);
    cfg.rate_limit_health_burst = 0; /* only reachable by direct assignment */
    assert_int_equal(p2p_config_finalize(&cfg, &err), -EINVAL);
    assert_contains(err, "burst");
    free(err);
    p2p_config_free(&cfg);
}

static void test_yaml_round_trip(void **state)
{
    (void)state;
    p2p_config a, b;
    p2p_config_defaults(&a, 0);
    assert_int_equal(load_ok(&a, full_yaml), 0);
    /* strings that need quoting in YAML */
    assert_int_equal(p2p_config_set(&a, "ssl-ca-cert-file", "/a dir/\"q\" \\ #x: y, 'z' é ✓", NULL), 0);
    assert_int_equal(p2p_config_set(&a, "advertise-address", "yes", NULL), 0);
    assert_int_equal(p2p_config_set(&a, "ssl-key-file", "null", NULL), 0);
    assert_int_equal(p2p_config_set(&a, "ssl-cert-file", "- [x] {y} &a *b !c %d @e `f", NULL), 0);
    assert_int_equal(p2p_config_finalize(&a, NULL), 0);
    char *text = p2p_config_to_yaml(&a);
    assert_non_null(text);

    p2p_config_defaults(&b, 0);
    assert_int_equal(load_ok(&b, text), 0);
    assert_int_equal(p2p_config_finalize(&b, NULL), 0);
    assert_string_equal(b.ssl_ca_cert_file, "/a dir/\"q\" \\ #x: y, 'z' é ✓");
    assert_string_equal(b.advertise_address, "yes");
    assert_string_equal(b.ssl_key_file, "null");
    assert_string_equal(b.ssl_cert_file, "- [x] {y} &a *b !c %d @e `f");
    assert_string_equal(b.node_id, a.node_id);
    assert_int_equal(b.port, a.port);
    assert_int_equal(b.n_coordinator_addresses, 3);
    assert_string_equal(b.coordinator_addresses[1], "[::1]:8003");
    assert_int_equal(b.http_max_body_size, a.http_max_body_size);
    char *again = p2p_config_to_yaml(&b);
    assert_string_equal(text, again);
    free(again);
    free(text);
    p2p_config_free(&a);
    p2p_config_free(&b);

    /* defaults of both roles, with an empty address list */
    for (int role = 0; role < 2; role++) {
        p2p_config_defaults(&a, role);
        assert_int_equal(p2p_config_finalize(&a, NULL), 0);
        text = p2p_config_to_yaml(&a);
        p2p_config_defaults(&b, !role);
        assert_int_equal(load_ok(&b, text), 0);
        assert_int_equal(p2p_config_finalize(&b, NULL), 0);
        again = p2p_config_to_yaml(&b);
        assert_string_equal(text, again);
        assert_int_equal(b.coordinator_mode, role);
        assert_int_equal(b.n_coordinator_addresses, role ? 0 : 1);
        free(text);
        free(again);
        p2p_config_free(&a);
        p2p_config_free(&b);
    }
}

static void test_redis_password_not_shown(void **state)
{
    (void)state;
    p2p_config c;
    p2p_config_defaults(&c, 0);
    assert_int_equal(p2p_config_set(&c, "redis-url", "redis://app:hunter2@cache:6380/1", NULL), 0);
    json_t *j = p2p_config_to_json(&c);
    assert_string_equal(json_string_value(json_object_get(j, "redis_url")), "redis://app:(set)@cache:6380/1");
    json_decref(j);
    p2p_config_free(&c);
}

static void test_key_table(void **state)
{
    (void)state;
    size_t n = 0;
    const p2p_config_keyinfo *k;
    while ((k = p2p_config_key(n))) {
        assert_non_null(k->name);
        assert_non_null(k->type);
        assert_non_null(k->deflt);
        assert_true(k->doc && k->doc[0]);
        for (size_t j = 0; j < n; j++) assert_string_not_equal(p2p_config_key(j)->name, k->name);
        n++;
    }
    assert_int_equal(n, 92); /* + log_forward_* (4), dashboard_ws_* (4), metrics (4), admin_* (4), release_public_key_file, package_version_floors, rate_limit_enroll_* / ca_cert_* (6) */
    assert_null(p2p_config_key(1000));
    /* every key appears in --print-config */
    p2p_config cfg;
    p2p_config_defaults(&cfg, 0);
    assert_int_equal(p2p_config_finalize(&cfg, NULL), 0);
    char *text = p2p_config_to_yaml(&cfg);
    for (size_t i = 0; i < n; i++) {
        char line[80];
        snprintf(line, sizeof line, "\n%s:", p2p_config_key(i)->name);
        assert_contains(text, line);
    }
    free(text);
    p2p_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_role_defaults),
        cmocka_unit_test(test_load_over_values),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_ranges_are_the_components),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_bad_bool),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_bad_list),
        cmocka_unit_test(test_too_many_addresses),
        cmocka_unit_test(test_yaml_syntax_error),
        cmocka_unit_test(test_not_a_mapping),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_unchanged_after_error),
        cmocka_unit_test(test_set_flags),
        cmocka_unit_test(test_finalize_cross_keys),
        cmocka_unit_test(test_yaml_round_trip),
        cmocka_unit_test(test_key_table),
        cmocka_unit_test(test_redis_password_not_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
