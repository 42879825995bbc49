/*
 * config.c — loading, validating and printing the node configuration.
 *
 * Every key is described exactly once, in `keys[]` below: name, type, offset into
 * p2p_config, bounds, default per role and a one-line description. Defaults,
 * YAML loading, command-line flags, --print-config and docs/configuration.md all
 * come from that table, so they cannot drift apart.
 *
 * The YAML file is read with libyaml's document API so every node carries its
 * line; each error names FILE:LINE and the key. Every change is made on a deep
 * copy that replaces the caller's struct only on success, so a failed load, set
 * or finalize leaves it untouched. Keys whose default depends on the role (port,
 * state_directory, coordinator_addresses, node_id) are tracked in `explicit_`:
 * the role defaults are re-applied to the ones nobody set, so a file saying only
 * `coordinator_mode: true` gets port 8001.
 *
 * One source of truth for limits: a key's range is the range the component
 * using it accepts, taken from that component's own constants (the rate
 * limiter's P2P_RL_MAX_*, the PKI's certificate lifetime, the address
 * selector's address length) and checked with its own validators (trusted
 * proxies, IP literals). A value the validator accepts therefore never makes a
 * component fail to start or to rebuild later. Those headers are included for
 * their constants and pure validators only: config.c calls nothing with state.
 */
#include "config.h"
#include "auth/ratelimit.h"
#include "cache/l2.h"
#include "core/util.h"
#include "logs/fwdfmt.h"
#include "deploy/package.h"
#include "membership/addrsel.h"
#include "pki/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_FILE_SIZE (1024 * 1024)

enum ktype { T_STR, T_INT, T_INT64, T_BOOL, T_ADDRS };

/* A per-key check of a string value: writes a complaint to why and returns -1. */
typedef int (*check_fn)(const char *s, char *why, size_t n);

typedef struct keydef {
    p2p_config_keyinfo info; /* what p2p_config_key() hands out */
    enum ktype type;
    size_t off;            /* offset of the field in p2p_config */
    long long min, max;    /* for integers */
    const char *def_coord; /* default as it would be given in the file; NULL = derived */
    const char *def_worker;
    check_fn check;
} keydef;

static int check_node_id(const char *s, char *why, size_t n);
static int check_log_level(const char *s, char *why, size_t n);
static int check_log_format(const char *s, char *why, size_t n);
static int check_log_ship_level(const char *s, char *why, size_t n);
static int check_nonempty(const char *s, char *why, size_t n);
static int check_ip_literal(const char *s, char *why, size_t n);
static int check_advertise(const char *s, char *why, size_t n);
static int check_proxies(const char *s, char *why, size_t n);
static int check_floors(const char *s, char *why, size_t n);
static int check_redis_url(const char *s, char *why, size_t n);
static int check_forward_syslog(const char *s, char *why, size_t n);
static int check_unix_socket_path(const char *s, char *why, size_t n);

#define OFF(f) offsetof(p2p_config, f)
#define STR(k, d, chk, doc) {{#k, "string", "\"" d "\"", doc}, T_STR, OFF(k), 0, 0, d, d, chk}
#define INT(k, d, lo, hi, doc) {{#k, "int", #d, doc " Range " #lo ".." #hi "."}, T_INT, OFF(k), lo, hi, #d, #d, NULL}
/* An integer key whose bounds are a component's constants: the doc shows their values. */
#define XS(x) #x
#define XINT(k, d, lo, hi, doc) {{#k, "int", #d, doc " Range " XS(lo) ".." XS(hi) "."}, T_INT, OFF(k), lo, hi, #d, #d, NULL}
#define BOOL(k, d, doc) {{#k, "bool", #d, doc}, T_BOOL, OFF(k), 0, 1, #d, #d, NULL}

static const keydef keys[] = {
    {{"node_id", "string", "<role>-<hostname>",
      "Name of this node: letters, digits, '.', '_', '-'; 1..63 characters."},
     T_STR, OFF(node_id), 0, 0, NULL, NULL, check_node_id},
    {{"port", "int", "8001 (coordinator), 8002 (worker)", "TCP port of the HTTP(S) server. Range 1..65535."},
     T_INT, OFF(port), 1, 65535, "8001", "8002", NULL},
    STR(bind_address, "0.0.0.0", check_ip_literal, "IP address the server listens on (0.0.0.0 or :: = all)."),
    STR(advertise_address, "", check_advertise, "Address other nodes use to reach this one; empty = detect."),
    BOOL(coordinator_mode, false, "Run as the coordinator (true) or as a worker (false)."),
    {{"coordinator_addresses", "list of host:port", "[] (coordinator), [\"127.0.0.1:8001\"] (worker)",
      "Coordinators to register with, as host:port or [IPv6]:port; at most 16."},
     T_ADDRS, OFF(coordinator_addresses), 0, 0, "", "127.0.0.1:8001", NULL},
    {{"state_directory", "string", "\"data/coordinator\" or \"data/worker\"",
      "Directory for persistent state (certificates, database)."},
     T_STR, OFF(state_directory), 0, 0, "data/coordinator", "data/worker", check_nonempty},
    BOOL(https_enabled, true, "Serve HTTPS (TLS) instead of plain HTTP."),
    STR(ssl_cert_file, "", NULL, "Your own certificate (PEM file); empty = the node's, made on first start and kept in the vault."),
    STR(ssl_key_file, "", NULL, "Key of ssl_cert_file (PEM file); empty = the node's, kept in the vault."),
    STR(ssl_ca_cert_file, "", NULL, "CA certificate (PEM); empty = <state_directory>/certs/ca.crt (written by the node)."),
    BOOL(ssl_verify, true, "Verify peer certificates on outgoing connections."),
    {{"http_max_body_size", "int", "1048576", "Largest request body in bytes. Range 1024..1073741824."},
     T_INT64, OFF(http_max_body_size), 1024, 1073741824LL, "1048576", "1048576", NULL},
    INT(http_max_header_size, 16384, 1024, 262144, "Largest request head in bytes."),
    INT(http_max_connections, 1024, 1, 1000000, "Most simultaneous client connections."),
    INT(http_idle_timeout, 60, 1, 3600, "Seconds an idle keep-alive connection stays open."),
    INT(http_request_timeout, 10, 1, 3600, "Seconds a client may take to send a request head and body."),
    {{"http_max_pending_bytes_per_conn", "int", "8388608",
      "Response bytes one connection may leave unread before its next requests get 503. Range 65536..1073741824."},
     T_INT64, OFF(http_max_pending_bytes_per_conn), 65536, 1073741824LL, "8388608", "8388608", NULL},
    {{"http_max_pending_bytes_total", "int", "67108864",
      "Response bytes all connections together may leave unread before requests get 503. Range 1048576..17179869184."},
     T_INT64, OFF(http_max_pending_bytes_total), 1048576, 17179869184LL, "67108864", "67108864", NULL},
    INT(http_write_timeout, 30, 1, 3600, "Seconds a client may leave a response unread before the connection is closed."),
    INT(http2_max_resets_per_second, 100, 1, 100000, "HTTP/2 stream resets a connection may send per second; more closes it."),
    INT(shutdown_grace_period, 10, 0, 600, "Seconds in-flight requests get to finish on SIGTERM."),
    BOOL(access_log, true, "Log one line per HTTP request."),
    STR(log_level, "info", check_log_level, "Least severe level logged: debug, info, warn or error."),
    STR(log_format, "text", check_log_format,
        "Format of the log lines on stderr: text, or json (one JSON object per line, the shipped record's fields)."),
    STR(log_ship_level, "info", check_log_ship_level,
        "Least severe level shipped to the coordinator's log collector: debug, info, warning, error or critical "
        "(apart from log_level, which is for stderr)."),
    {{"log_spool_memory_bytes", "int", "8388608",
      "Bytes of unacknowledged log records kept in memory; beyond, the oldest go to the spool file. "
      "Range 65536..1073741824."},
     T_INT64, OFF(log_spool_memory_bytes), 65536, 1073741824LL, "8388608", "8388608", NULL},
    {{"log_spool_file_bytes", "int", "67108864",
      "Largest size of the log spool file (<state_directory>/log-spool); when full the oldest records are dropped "
      "and counted. 0 = memory only. Range 0..68719476736."},
     T_INT64, OFF(log_spool_file_bytes), 0, 68719476736LL, "67108864", "67108864", NULL},
    STR(vault_password_file, "", NULL,
        "File holding the vault password (first line; mode 0600). Else P2P_VAULT_PASSWORD, else a prompt."),
    STR(admin_api_key_file, "", NULL,
        "Coordinator: at bootstrap, also write the new admin API key to this file (mode 0600)."),
    STR(join_token, "", NULL, "Worker: join token for enrollment (or --join-token, or P2P_JOIN_TOKEN)."),
    INT(enroll_challenge_port, 8802, 0, 65535, "Worker: plain-HTTP port serving the enrollment challenge; 0 = any."),
    {{"cert_lifetime", "int", "31536000",
      "Seconds a node certificate issued by the coordinator is valid. Range 60..315360000."},
     T_INT, OFF(cert_lifetime), 60, PKI_MAX_CERT_LIFETIME_S, "31536000", "31536000", NULL},
    INT(cert_renew_before, 2592000, 0, 315360000, "Renew a node certificate this many seconds before it expires."),
    INT(jwt_ttl, 86400, 60, 31536000, "Seconds a token from /auth/token is valid."),
    STR(trusted_proxies, "", check_proxies, "Comma-separated IPs or CIDRs whose X-Forwarded-For is believed."),
    BOOL(rate_limit_enabled, true, "Limit request rates per client."),
    XINT(rate_limit_rpc_requests, 100, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "RPC calls per minute per client (a batch of N calls counts N)."),
    XINT(rate_limit_rpc_burst, 20, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST,
         "RPC calls allowed in a burst; also the largest batch a client may send."),
    XINT(rate_limit_health_requests, 300, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "Health-check requests per minute per client."),
    XINT(rate_limit_health_burst, 50, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST, "Health-check requests allowed in a burst."),
    XINT(rate_limit_default_requests, 200, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE, "Other requests per minute per client."),
    XINT(rate_limit_default_burst, 30, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST, "Other requests allowed in a burst."),
    XINT(rate_limit_node_rpc_requests, 6000, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "RPC calls per minute per node certificate (remote calls between nodes)."),
    XINT(rate_limit_node_rpc_burst, 1000, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST,
         "RPC calls allowed in a burst per node certificate."),
    XINT(rate_limit_node_default_requests, 1200, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "Other requests (push-pull, renewal, health) per minute per node certificate."),
    XINT(rate_limit_node_default_burst, 200, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST,
         "Other requests allowed in a burst per node certificate."),
    XINT(rate_limit_enroll_token_requests, 6000, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "Enrollments per minute per join token (counted once the token checks out)."),
    XINT(rate_limit_enroll_token_burst, 1000, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST,
         "Enrollments allowed in a burst per join token."),
    XINT(rate_limit_enroll_failures, 30, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "Refused enrollment attempts per minute per client address before it is answered 429."),
    XINT(rate_limit_enroll_failures_burst, 10, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST,
         "Refused enrollment attempts allowed in a burst per client address."),
    XINT(rate_limit_ca_cert_requests, 60000, P2P_RL_MIN_RATE, P2P_RL_MAX_RATE,
         "GET /internal/ca-cert per minute, all clients together."),
    XINT(rate_limit_ca_cert_burst, 5000, P2P_RL_MIN_BURST, P2P_RL_MAX_BURST,
         "GET /internal/ca-cert allowed in a burst, all clients together."),
    INT(gossip_interval_min, 5, 1, 3600, "Shortest gossip interval in seconds."),
    INT(gossip_interval_max, 30, 1, 3600, "Longest gossip interval in seconds; >= gossip_interval_min."),
    BOOL(gossip_compression_enabled, true, "Compress large gossip messages."),
    INT(gossip_compression_threshold, 1024, 0, 16777216, "Gossip messages at least this many bytes are compressed."),
    INT(max_log_entries, 1000, 1, 10000000, "Log entries kept in memory for retrieval."),
    {{"log_segment_bytes", "int", "16777216",
      "Coordinator: the log collector starts a new segment file once one is this big. Range 65536..1073741824."},
     T_INT64, OFF(log_segment_bytes), 65536, 1073741824LL, "16777216", "16777216", NULL},
    {{"log_retention_bytes", "int", "1073741824",
      "Coordinator: bytes of log segments kept for all nodes together; the oldest segments go first. Range "
      "1048576..17592186044416."},
     T_INT64, OFF(log_retention_bytes), 1048576, 17592186044416LL, "1073741824", "1073741824", NULL},
    INT(log_retention_days, 7, 0, 3650,
        "Coordinator: log segments last written longer ago than this are deleted; 0 = no age limit."),
    STR(log_forward_syslog, "", check_forward_syslog,
        "Coordinator: also send every collected log line to this syslog server as RFC 5424: udp://IP:PORT, or "
        "tcp://IP:PORT (octet-counted frames); empty = off."),
    BOOL(log_forward_journald, false,
         "Coordinator: also send every collected log line to the local journald (native protocol)."),
    STR(log_forward_journald_socket, "/run/systemd/journal/socket", check_unix_socket_path,
        "Coordinator: journald's socket for log_forward_journald."),
    INT(log_forward_queue, 10000, 16, 1000000,
        "Coordinator: collected lines waiting to be forwarded, per destination; when full the oldest are dropped "
        "and counted."),
    INT(dashboard_ws_max_sockets, 64, 1, 10000,
        "Coordinator: dashboard WebSockets (/ws/dashboard) open at once, authenticated or not; more are refused with 503."),
    INT(dashboard_ws_max_unsent_bytes, 4194304, 65536, 268435456,
        "Coordinator: bytes a dashboard WebSocket may have waiting for the browser to read; over it the socket is closed (1008). Past half of it, log lines for that socket are skipped and counted."),
    INT(dashboard_ws_max_message_bytes, 65536, 1024, 1048576,
        "Coordinator: largest message a browser may send on the dashboard WebSocket; a larger one closes it (1009)."),
    INT(dashboard_ws_idle_timeout, 60, 5, 86400,
        "Coordinator: seconds a dashboard WebSocket may stay silent (no message, no pong to the server's pings every 20 s) before it is closed."),
    BOOL(redis_enabled, true, "Use Redis (redis_url) as the cache's second level; false = in-process cache only."),
    STR(redis_url, "", check_redis_url,
        "Redis for the cache's second level: redis://[[user]:password@]host[:port][/db] or unix:/path[?db=N]; "
        "empty = in-process cache only. While Redis is away the cache answers from the node."),
    {{"cache_l1_max_bytes", "int", "67108864",
      "Bytes the in-process cache (L1) may hold; one value at most 1/8 of it. Range 65536..68719476736."},
     T_INT64, OFF(cache_l1_max_bytes), 65536, 68719476736LL, "67108864", "67108864", NULL},
    INT(cache_default_ttl, 300, 1, 2592000, "Seconds a cache entry lives when its writer gives no TTL."),
    INT(cache_redis_timeout_ms, 500, 10, 60000,
        "Milliseconds a Redis command may take before the cache gives up on it and answers from L1 (the connect "
        "timeout is 4 times this, at least 1 s)."),
    STR(services_directory, "", NULL,
        "Folder of pluggable services, one sub-folder each with a manifest.json; empty = <state_directory>/services."),
    INT(services_rescan_interval, 5, 1, 3600,
        "Seconds between rescans of services_directory (changes are also seen at once through inotify)."),
    BOOL(dashboard_enabled, true,
         "Coordinator: run the metrics dashboard (metrics_dashboard service, /api/dashboard/*); workers' "
         "reports are refused when false."),
    INT(metrics_retention_count, 100, 1, 900,
        "Coordinator: points get_metrics_history returns when asked for neither a range nor a limit (the last N "
        "seconds)."),
    INT(metrics_cleanup_interval, 300, 1, 86400,
        "Coordinator: seconds between sweeps that delete the history of nodes silent for metrics_cleanup_after."),
    BOOL(reporter_enabled, true, "Every node: sample metrics each second and report them to the coordinator."),
    INT(reporter_interval_min, 30, 1, 86400,
        "Reporting interval in seconds when nobody watches the dashboard and the cluster is large (over 100 "
        "nodes: reporter_interval_min x nodes/200, at most reporter_interval_max)."),
    INT(reporter_interval_max, 300, 1, 86400, "Longest reporting interval in seconds; >= reporter_interval_min."),
    INT(metrics_report_interval, 5, 1, 300,
        "Seconds between metric reports while nobody watches the dashboard (1 s while someone does)."),
    INT(metrics_stale_after, 20, 2, 86400,
        "Coordinator: a node whose last report is older than this (or than 3 reporting intervals) is marked stale."),
    INT(metrics_cleanup_after, 604800, 5, 31536000,
        "Coordinator: the metric history of a node that has not reported for this many seconds is deleted."),
    INT(metrics_snapshot_interval, 60, 5, 3600,
        "Coordinator: seconds between snapshots of the metric history to <state_directory>/metrics/ (also "
        "written at stop)."),
    STR(release_public_key_file, "", NULL,
        "PEM file of the cluster's Ed25519 release public key (`p2p package key`), pinned: packages signed by "
        "another key are refused. Empty = the key the coordinator holds in its vault."),
    STR(package_version_floors, "", check_floors,
        "Lowest package versions this node accepts: comma-separated NAME=VERSION (semantic versions), '*' for "
        "every package; a package below its floor is refused as a downgrade. Empty = no floor."),
    STR(admin_commands_file, "", NULL,
        "JSON file of the commands admin/run_command may run: {\"NAME\": {\"argv\": [\"/abs/path\", ...], "
        "\"allow_args\": false}}. Empty = no commands (admin/run_command refuses every call)."),
    INT(admin_command_timeout, 10, 1, 3600,
        "Seconds an admin/run_command command may run before it (and its process group) is killed."),
    INT(admin_command_output_max, 65536, 1024, 16777216,
        "Bytes of stdout and of stderr kept from an admin/run_command command; the rest is dropped and the "
        "answer says truncated."),
    INT(admin_file_max_bytes, 1048576, 1, 67108864,
        "Largest file admin/read_file reads and admin/write_file writes under <state_directory>/files/."),
};
#define NKEYS (sizeof keys / sizeof keys[0])
_Static_assert(NKEYS <= sizeof(((p2p_config *)0)->explicit_), "explicit_ too small");
_Static_assert(PKI_MAX_NODE_ID == 63, "check_node_id and the node_id doc say 63 characters");
_Static_assert(PKI_MAX_CERT_LIFETIME_S == 315360000L, "the cert_lifetime doc says 315360000");

const p2p_config_keyinfo *p2p_config_key(size_t i) { return i < NKEYS ? &keys[i].info : NULL; }

#define FIELD(c, k, T) ((T *)(void *)((char *)(c) + (k)->off))

static int find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].info.name, name)) return (int)i;
    return -1;
}

/* ---- messages ---- */


/* A user-supplied value made safe to quote in a message: printable ASCII, truncated. */
static const char *show(const char *s, size_t len, char *buf, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (o + 4 >= n && i + 1 < len) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char ch = (unsigned char)s[i];
        buf[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    buf[o] = 0;
    return buf;
}

/* Levenshtein distance treating '-' like '_' and ignoring case; large for long names. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            char ca = a[i - 1] == '-' ? '_' : (char)(a[i - 1] | (a[i - 1] >= 'A' && a[i - 1] <= 'Z' ? 0x20 : 0));
            size_t cur = row[j], best = prev + (ca != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

/* " (did you mean 'key'?)", or " (did you mean --flag?)", for a near miss. */
static void suggest(const char *name, int as_flag, char *buf, size_t n)
{
    size_t best = 3;
    buf[0] = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        size_t d = distance(name, keys[i].info.name);
        if (d < best) {
            best = d;
            snprintf(buf, n, as_flag ? " (did you mean --%s?)" : " (did you mean '%s'?)", keys[i].info.name);
        }
    }
    for (char *p = buf; as_flag && *p; p++)
        if (*p == '_') *p = '-';
}

/* ---- value checks ---- */

static int id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == '-';
}

static int check_node_id(const char *s, char *why, size_t n)
{
    char v[48];
    size_t len = strlen(s);
    if (len < 1 || len > 63) {
        snprintf(why, n, "must be 1..63 characters long, '%s' has %zu", show(s, len, v, sizeof v), len);
        return -1;
    }
    for (const char *p = s; *p; p++)
        if (!id_char(*p)) {
            snprintf(why, n, "'%s' may only contain letters, digits, '.', '_' and '-'", show(s, len, v, sizeof v));
            return -1;
        }
    return 0;
}

static int check_log_level(const char *s, char *why, size_t n)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    char v[48];
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(s, levels[i])) return 0;
    snprintf(why, n, "'%s' is not one of debug, info, warn, error", show(s, strlen(s), v, sizeof v));
    return -1;
}

static int check_log_format(const char *s, char *why, size_t n)
{
    char v[48];
    if (!strcmp(s, "text") || !strcmp(s, "json")) return 0;
    snprintf(why, n, "'%s' is not one of text, json", show(s, strlen(s), v, sizeof v));
    return -1;
}

static int check_log_ship_level(const char *s, char *why, size_t n)
{
    static const char *const levels[] = {"debug", "info", "warning", "error", "critical"};
    char v[48];
    for (size_t i = 0; i < 5; i++)
        if (!strcmp(s, levels[i])) return 0;
    snprintf(why, n, "'%s' is not one of debug, info, warning, error, critical", show(s, strlen(s), v, sizeof v));
    return -1;
}

static int check_forward_syslog(const char *s, char *why, size_t n)
{
    if (!*s) return 0;
    logfwd_target t;
    return logfwd_parse_target(s, &t, why, n);
}

static int check_unix_socket_path(const char *s, char *why, size_t n)
{
    if (*s == '/' && strlen(s) < 108) return 0;
    snprintf(why, n, "must be an absolute path shorter than 108 bytes");
    return -1;
}

static int check_redis_url(const char *s, char *why, size_t n)
{
    if (!*s) return 0;
    char *err = NULL;
    p2p_l2_target t;
    if (p2p__l2_parse_url(s, &t, &err) == 0) return 0;
    snprintf(why, n, "%s", err ? err : "bad Redis URL");
    free(err);
    return -1;
}

/* "redis://user:secret@host:port/db" as "redis://user:(set)@host:port/db". */
static json_t *redis_url_redacted(const char *s)
{
    const char *at = strrchr(s, '@');
    const char *start = strstr(s, "://");
    start = start ? start + 3 : s;
    const char *colon = memchr(start, ':', (size_t)(at - start));
    if (!colon)
        colon = at;
    char *r = p2p__xasprintf("%.*s:(set)%s", (int)(colon - s), s, at);
    json_t *v = json_string(r);
    free(r);
    return v;
}

static int check_nonempty(const char *s, char *why, size_t n)
{
    if (*s) return 0;
    snprintf(why, n, "must not be empty");
    return -1;
}

/* An IPv4 or IPv6 literal (IPv6 optionally with a %zone), as the HTTP server,
 * the gossip socket and the address selector require of bind_address. */
static int check_ip_literal(const char *s, char *why, size_t n)
{
    char v[48], buf[INET6_ADDRSTRLEN + 1];
    unsigned char a[16];
    size_t len = strcspn(s, "%");
    if (!*s) {
        snprintf(why, n, "must not be empty");
        return -1;
    }
    if (inet_pton(AF_INET, s, a) == 1) return 0;
    if (len < sizeof buf) {
        memcpy(buf, s, len);
        buf[len] = 0;
        if (inet_pton(AF_INET6, buf, a) == 1 && (s[len] == 0 || s[len + 1] != 0)) return 0;
    }
    snprintf(why, n, "'%s' is not an IP address (0.0.0.0 or :: listens on all)", show(s, strlen(s), v, sizeof v));
    return -1;
}

/* The address selector keeps an advertised address in P2P_ADDRSEL_IP_MAX bytes. */
static int check_advertise(const char *s, char *why, size_t n)
{
    if (strlen(s) < P2P_ADDRSEL_IP_MAX) return 0;
    snprintf(why, n, "must be shorter than %d bytes", P2P_ADDRSEL_IP_MAX);
    return -1;
}

/* Each comma- or space-separated entry must be what the rate limiter's proxy
 * matcher accepts (an IP literal or a CIDR block). */
static int check_floors(const char *s, char *why, size_t n)
{
    char *err = NULL;
    if (p2p__pkg_floors_check(s, &err) == 0)
        return 0;
    snprintf(why, n, "%s", err ? err : "bad version floors");
    free(err);
    return -1;
}

static int check_proxies(const char *s, char *why, size_t n)
{
    char v[48], entry[INET6_ADDRSTRLEN + 8];
    for (const char *p = s; *p;) {
        p += strspn(p, ", ");
        size_t len = strcspn(p, ", ");
        if (len == 0) break;
        int ok = len < sizeof entry;
        if (ok) {
            memcpy(entry, p, len);
            entry[len] = 0;
            ok = p2p_ratelimit_proxy_valid(entry) == 0;
        }
        if (!ok) {
            snprintf(why, n, "'%s' is not an IP address or CIDR block", show(p, len, v, sizeof v));
            return -1;
        }
        p += len;
    }
    return 0;
}

/* "host:port" or "[IPv6]:port" with a port in 1..65535. */
static int check_addr(const char *s, char *why, size_t n)
{
    char v[48], host[64];
    const char *port;
    size_t hlen;
    show(s, strlen(s), v, sizeof v);
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') goto bad;
        hlen = (size_t)(rb - s - 1);
        if (hlen == 0 || hlen >= sizeof host) goto bad;
        memcpy(host, s + 1, hlen);
        host[hlen] = 0;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1) {
            snprintf(why, n, "entry '%s': '%s' is not an IPv6 address", v, show(host, hlen, host, sizeof host));
            return -1;
        }
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s) goto bad;
        if (memchr(s, ':', (size_t)(colon - s))) {
            snprintf(why, n, "entry '%s': write IPv6 addresses in brackets, as in [::1]:8001", v);
            return -1;
        }
        for (const char *p = s; p < colon; p++)
            if (!id_char(*p)) {
                snprintf(why, n, "entry '%s': host may only contain letters, digits, '.', '-' and '_'", v);
                return -1;
            }
        port = colon + 1;
    }
    long pv = 0;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || digits > 5 || port[digits]) goto bad;
    pv = strtol(port, NULL, 10);
    if (pv < 1 || pv > 65535) {
        snprintf(why, n, "entry '%s': port %ld is out of range 1..65535", v, pv);
        return -1;
    }
    return 0;
bad:
    snprintf(why, n, "entry '%s' is not host:port (IPv6 as [::1]:8001)", v);
    return -1;
}

/* Strings must be valid UTF-8 without control characters, line separators, BOMs or
 * noncharacters, so that --print-config can write them back in double quotes. */
static int check_text(const char *s, size_t len, char *why, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned cp, need;
        if (*p < 0x80) cp = *p, need = 0;
        else if ((*p & 0xe0) == 0xc0) cp = *p & 0x1f, need = 1;
        else if ((*p & 0xf0) == 0xe0) cp = *p & 0x0f, need = 2;
        else if ((*p & 0xf8) == 0xf0) cp = *p & 0x07, need = 3;
        else goto utf8;
        if ((size_t)(end - p) <= need) goto utf8;
        for (unsigned i = 1; i <= need; i++) {
            if ((p[i] & 0xc0) != 0x80) goto utf8;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        static const unsigned minimum[] = {0, 0x80, 0x800, 0x10000};
        if (cp < minimum[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto utf8;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff ||
            cp == 0xfffe || cp == 0xffff) {
            snprintf(why, n, "must not contain control characters or line breaks");
            return -1;
        }
        p += need + 1;
    }
    return 0;
utf8:
    snprintf(why, n, "is not valid UTF-8");
    return -1;
}

/* ---- setting values ---- */

static int parse_int(const keydef *k, const char *s, long long *out, char *why, size_t n)
{
    char v[48];
    char *end;
    long long x = 0;
    show(s, strlen(s), v, sizeof v);
    errno = 0;
    int starts_ok = *s == '-' || *s == '+' || (*s >= '0' && *s <= '9'); /* strtoll would skip spaces */
    if (starts_ok) x = strtoll(s, &end, 10);
    if (!starts_ok || end == s || *end) {
        snprintf(why, n, "expected an integer in %lld..%lld, got '%s'", k->min, k->max, v);
        return -1;
    }
    if (errno == ERANGE || x < k->min || x > k->max) {
        snprintf(why, n, "%s is out of range %lld..%lld", v, k->min, k->max);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off"};
    for (int i = 0; i < 6; i++)
        if (!strcasecmp(s, words[i])) return *out = !(i & 1), 0;
    return -1;
}

/* Replaces the address list with items[0..count); validates all first. On a bad item
 * sets *bad to its index. */
static int set_addrs(p2p_config *c, const keydef *k, char *const *items, size_t count, size_t *bad,
                     char *why, size_t n)
{
    char *dup[P2P_CONFIG_MAX_ADDRS];
    char **list = FIELD(c, k, char *);
    *bad = 0;
    if (count > P2P_CONFIG_MAX_ADDRS) {
        *bad = P2P_CONFIG_MAX_ADDRS;
        snprintf(why, n, "at most %d addresses are allowed", P2P_CONFIG_MAX_ADDRS);
        return -EINVAL;
    }
    for (size_t i = 0; i < count; i++)
        if (check_text(items[i], strlen(items[i]), why, n) || check_addr(items[i], why, n))
            return *bad = i, -EINVAL;
    for (size_t i = 0; i < count; i++)
        if (!(dup[i] = strdup(items[i]))) {
            while (i--) free(dup[i]);
            snprintf(why, n, "out of memory");
            return -ENOMEM;
        }
    for (size_t i = 0; i < P2P_CONFIG_MAX_ADDRS; i++) {
        free(list[i]);
        list[i] = i < count ? dup[i] : NULL;
    }
    c->n_coordinator_addresses = count;
    return 0;
}

/* Sets key k from text. `null` marks a YAML null (empty for strings and lists). */
static int set_text(p2p_config *c, const keydef *k, const char *s, size_t len, int null, char *why, size_t n)
{
    long long x;
    int b;
    if (memchr(s, 0, len)) {
        snprintf(why, n, "must not contain NUL bytes");
        return -EINVAL;
    }
    switch (k->type) {
    case T_STR: {
        if (null) s = "", len = 0;
        if (check_text(s, len, why, n) || (k->check && k->check(s, why, n))) return -EINVAL;
        char *d = strdup(s), **f = FIELD(c, k, char *);
        if (!d) return snprintf(why, n, "out of memory"), -ENOMEM;
        free(*f);
        *f = d;
        return 0;
    }
    case T_INT:
    case T_INT64:
        if (null) return snprintf(why, n, "missing value, expected an integer in %lld..%lld", k->min, k->max), -EINVAL;
        if (parse_int(k, s, &x, why, n)) return -EINVAL;
        if (k->type == T_INT) *FIELD(c, k, int) = (int)x;
        else *FIELD(c, k, int64_t) = x;
        return 0;
    case T_BOOL:
        if (null || parse_bool(s, &b)) {
            char v[48];
            snprintf(why, n, "expected true or false (or yes/no, on/off), got '%s'", show(s, len, v, sizeof v));
            return -EINVAL;
        }
        *FIELD(c, k, int) = b;
        return 0;
    case T_ADDRS: {
        /* a comma-separated string: "a:1, b:2" */
        char *copy = strdup(null ? "" : s), *items[P2P_CONFIG_MAX_ADDRS + 1];
        size_t count = 0, bad;
        int rc = 0;
        if (!copy) return snprintf(why, n, "out of memory"), -ENOMEM;
        if (copy[strspn(copy, " \t")]) {
            for (char *p = copy;;) {
                char *comma = strchr(p, ','), *e;
                if (comma) *comma = 0;
                p += strspn(p, " \t");
                for (e = p + strlen(p); e > p && (e[-1] == ' ' || e[-1] == '\t');) *--e = 0;
                if (!*p) {
                    snprintf(why, n, "entry %zu of the list is empty", count + 1);
                    rc = -EINVAL;
                    break;
                }
                if (count <= P2P_CONFIG_MAX_ADDRS) items[count] = p;
                count++;
                if (!comma) break;
                p = comma + 1;
            }
        }
        if (!rc) rc = set_addrs(c, k, items, count, &bad, why, n);
        free(copy);
        return rc;
    }
    }
    return -EINVAL;
}

static int set_default(p2p_config *c, const keydef *k, int coord)
{
    char why[160];
    const char *d = coord ? k->def_coord : k->def_worker;
    if (!d) return 0;
    return set_text(c, k, d, strlen(d), 0, why, sizeof why);
}

static int role_dependent(const keydef *k)
{
    return k->def_coord && strcmp(k->def_coord, k->def_worker);
}

/* Re-applies the role defaults to keys nobody set; fills strings still NULL. */
static int apply_role_defaults(p2p_config *c)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if ((role_dependent(k) && !c->explicit_[i]) || (k->type == T_STR && !*FIELD(c, k, char *)))
            if (set_default(c, k, c->coordinator_mode)) return -ENOMEM;
    }
    return 0;
}

/* ---- whole structs ---- */

void p2p_config_free(p2p_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == T_STR) free(*FIELD(cfg, &keys[i], char *));
        else if (keys[i].type == T_ADDRS)
            for (size_t j = 0; j < P2P_CONFIG_MAX_ADDRS; j++) free(FIELD(cfg, &keys[i], char *)[j]);
    }
    memset(cfg, 0, sizeof *cfg);
}

void p2p_config_defaults(p2p_config *cfg, int coordinator_mode)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->coordinator_mode = !!coordinator_mode;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].off != OFF(coordinator_mode))
            set_default(cfg, &keys[i], cfg->coordinator_mode); /* on ENOMEM, finalize retries */
}

/* A deep copy; on failure dst holds nothing. */
static int copy_config(p2p_config *dst, const p2p_config *src)
{
    *dst = *src;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == T_STR) *FIELD(dst, &keys[i], char *) = NULL;
        else if (keys[i].type == T_ADDRS) memset(FIELD(dst, &keys[i], char *), 0, sizeof src->coordinator_addresses);
    }
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (k->type == T_STR && *FIELD(src, k, char *)) {
            if (!(*FIELD(dst, k, char *) = strdup(*FIELD(src, k, char *)))) goto oom;
        } else if (k->type == T_ADDRS) {
            for (size_t j = 0; j < src->n_coordinator_addresses; j++)
                if (!(FIELD(dst, k, char *)[j] = strdup(FIELD(src, k, char *)[j]))) goto oom;
        }
    }
    return 0;
oom:
    p2p_config_free(dst);
    return -ENOMEM;
}

static void replace(p2p_config *cfg, p2p_config *t)
{
    p2p_config_free(cfg);
    *cfg = *t;
}

/* ---- YAML ---- */

static const char *node_kind(const yaml_node_t *nd)
{
    return nd->type == YAML_MAPPING_NODE ? "mapping" : nd->type == YAML_SEQUENCE_NODE ? "sequence" : "scalar";
}

static int is_null(const yaml_node_t *nd)
{
    const char *v = (const char *)nd->data.scalar.value;
    return nd->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (!nd->data.scalar.length || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
            !strcmp(v, "NULL"));
}

static unsigned long line_of(const yaml_node_t *nd) { return (unsigned long)nd->start_mark.line + 1; }

static int set_node(p2p_config *c, yaml_document_t *doc, const keydef *k, yaml_node_t *v, const char *file,
                    char **err)
{
    char why[256];
    int rc;
    const char *name = k->info.name;
    if (v->type == YAML_SCALAR_NODE) {
        rc = set_text(c, k, (const char *)v->data.scalar.value, v->data.scalar.length, is_null(v), why, sizeof why);
        return rc ? p2p__fail(err, rc, "%s:%lu: key '%s': %s", file, line_of(v), name, why) : 0;
    }
    if (v->type == YAML_MAPPING_NODE || k->type != T_ADDRS)
        return p2p__fail(err, -EINVAL, "%s:%lu: key '%s': expected %s, got a %s", file, line_of(v), name,
                    k->type == T_ADDRS ? "a list of host:port" : k->type == T_STR ? "a string"
                    : k->type == T_BOOL ? "true or false" : "an integer", node_kind(v));
    char *items[P2P_CONFIG_MAX_ADDRS + 1];
    yaml_node_t *at[P2P_CONFIG_MAX_ADDRS + 1];
    size_t count = 0, bad;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        yaml_node_t *e = yaml_document_get_node(doc, *it);
        if (!e) continue;
        if (e->type != YAML_SCALAR_NODE)
            return p2p__fail(err, -EINVAL, "%s:%lu: key '%s': list entries must be host:port strings, got a %s", file,
                        line_of(e), name, node_kind(e));
        if (strlen((const char *)e->data.scalar.value) != e->data.scalar.length)
            return p2p__fail(err, -EINVAL, "%s:%lu: key '%s': must not contain NUL bytes", file, line_of(e), name);
        if (count <= P2P_CONFIG_MAX_ADDRS) items[count] = (char *)e->data.scalar.value, at[count] = e;
        count++;
    }
    rc = set_addrs(c, k, items, count, &bad, why, sizeof why);
    return rc ? p2p__fail(err, rc, "%s:%lu: key '%s': %s", file, line_of(rc == -ENOMEM ? v : at[bad]), name, why) : 0;
}

static int load_root(p2p_config *c, yaml_document_t *doc, const char *file, char **err)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    unsigned long seen[NKEYS] = {0};
    if (!root || (root->type == YAML_SCALAR_NODE && is_null(root))) return 0; /* empty file */
    if (root->type != YAML_MAPPING_NODE)
        return p2p__fail(err, -EINVAL, "%s:%lu: the file must be a mapping of 'key: value' lines, not a %s", file,
                    line_of(root), node_kind(root));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        if (!kn || !vn) continue;
        if (kn->type != YAML_SCALAR_NODE)
            return p2p__fail(err, -EINVAL, "%s:%lu: keys must be names, not a %s", file, line_of(kn), node_kind(kn));
        const char *name = (const char *)kn->data.scalar.value;
        int i = strlen(name) == kn->data.scalar.length ? find_key(name) : -1;
        if (i < 0) {
            char v[64], hint[64];
            suggest(name, 0, hint, sizeof hint);
            return p2p__fail(err, -EINVAL, "%s:%lu: key '%s': unknown key%s", file, line_of(kn),
                        show(name, kn->data.scalar.length, v, sizeof v), hint);
        }
        if (seen[i])
            return p2p__fail(err, -EINVAL, "%s:%lu: key '%s': duplicate key (first set on line %lu)", file, line_of(kn),
                        name, seen[i]);
        seen[i] = line_of(kn);
        int rc = set_node(c, doc, &keys[i], vn, file, err);
        if (rc) return rc;
        c->explicit_[i] = 1;
    }
    return 0;
}

static int yaml_error(yaml_parser_t *p, const char *file, const char *buf, size_t len, char **err)
{
    unsigned long line = (unsigned long)p->problem_mark.line + 1;
    if (p->error == YAML_MEMORY_ERROR) return p2p__fail(err, -ENOMEM, "%s: out of memory", file);
    if (p->error == YAML_READER_ERROR) { /* no mark: count lines up to the offset */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) line += buf[i] == '\n';
    }
    return p2p__fail(err, -EINVAL, "%s:%lu: YAML syntax error: %s%s%s%s", file, line,
                p->problem ? p->problem : "unknown error", p->context ? " (" : "", p->context ? p->context : "",
                p->context ? ")" : "");
}

int p2p_config_load_buffer(p2p_config *cfg, const char *name, const char *buf, size_t len, char **err)
{
    yaml_parser_t parser;
    yaml_document_t doc, next;
    p2p_config t;
    int rc;
    if (err) *err = NULL;
    if (!yaml_parser_initialize(&parser)) return p2p__fail(err, -ENOMEM, "%s: out of memory", name);
    if (copy_config(&t, cfg)) {
        yaml_parser_delete(&parser);
        return p2p__fail(err, -ENOMEM, "%s: out of memory", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_error(&parser, name, buf, len, err);
    } else {
        rc = load_root(&t, &doc, name, err);
        if (!rc && yaml_document_get_root_node(&doc)) {
            if (!yaml_parser_load(&parser, &next)) {
                rc = yaml_error(&parser, name, buf, len, err);
            } else {
                yaml_node_t *r = yaml_document_get_root_node(&next);
                if (r) rc = p2p__fail(err, -EINVAL, "%s:%lu: only one YAML document is allowed", name, line_of(r));
                yaml_document_delete(&next);
            }
        }
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    if (!rc && apply_role_defaults(&t)) rc = p2p__fail(err, -ENOMEM, "%s: out of memory", name);
    if (rc) {
        p2p_config_free(&t);
        return rc;
    }
    replace(cfg, &t);
    return 0;
}

int p2p_config_load_file(p2p_config *cfg, const char *path, char **err)
{
    if (err) *err = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return p2p__fail(err, -e, "%s: cannot open: %s", path, strerror(e));
    }
    char *buf = malloc(MAX_FILE_SIZE + 1);
    if (!buf) {
        fclose(f);
        return p2p__fail(err, -ENOMEM, "%s: out of memory", path);
    }
    size_t len = fread(buf, 1, MAX_FILE_SIZE + 1, f);
    int rc = 0;
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        rc = p2p__fail(err, -e, "%s: cannot read: %s", path, strerror(e));
    } else if (len > MAX_FILE_SIZE) {
        rc = p2p__fail(err, -EFBIG, "%s: file is larger than %d bytes", path, MAX_FILE_SIZE);
    }
    fclose(f);
    if (!rc) rc = p2p_config_load_buffer(cfg, path, buf, len, err);
    free(buf);
    return rc;
}

/* ---- flags, finalize, printing ---- */

int p2p_config_set(p2p_config *cfg, const char *key, const char *value, char **err)
{
    static const struct { const char *alias, *key; } aliases[] = {
        {"data_dir", "state_directory"}, {"coordinator", "coordinator_mode"}};
    char name[64], flag[64], why[256];
    p2p_config t;
    size_t len = strlen(key);
    if (err) *err = NULL;
    if (len >= sizeof name) len = sizeof name - 1;
    for (size_t i = 0; i <= len; i++) {
        name[i] = i < len && key[i] == '-' ? '_' : (i < len ? key[i] : 0);
        flag[i] = name[i] == '_' ? '-' : name[i];
    }
    show(flag, len, flag, sizeof flag);
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(name, aliases[i].alias)) snprintf(name, sizeof name, "%s", aliases[i].key);
    int i = strlen(key) < sizeof name ? find_key(name) : -1;
    if (i < 0) {
        char hint[64];
        suggest(name, 1, hint, sizeof hint);
        return p2p__fail(err, -EINVAL, "flag --%s: unknown option%s", flag, hint);
    }
    if (!value && keys[i].type == T_BOOL) value = "true";
    if (!value) return p2p__fail(err, -EINVAL, "flag --%s: missing value", flag);
    if (copy_config(&t, cfg)) return p2p__fail(err, -ENOMEM, "flag --%s: out of memory", flag);
    int rc = set_text(&t, &keys[i], value, strlen(value), 0, why, sizeof why);
    if (!rc) {
        t.explicit_[i] = 1;
        if (apply_role_defaults(&t)) rc = -ENOMEM, snprintf(why, sizeof why, "out of memory");
    }
    if (rc) {
        p2p_config_free(&t);
        return p2p__fail(err, rc, "flag --%s: %s", flag, why);
    }
    replace(cfg, &t);
    return 0;
}

/* "<role>-<short hostname>", cut to 63 characters and reduced to the node_id charset. */
static char *derive_node_id(int coord)
{
    char host[256] = "", id[64];
    if (gethostname(host, sizeof host - 1) || !host[0]) strcpy(host, "localhost");
    host[strcspn(host, ".")] = 0;
    size_t n = 0;
    for (const char *p = coord ? "coordinator-" : "worker-"; *p; p++) id[n++] = *p;
    for (const char *p = host; *p && n < sizeof id - 1; p++) id[n++] = id_char(*p) ? *p : '-';
    id[n] = 0;
    return strdup(id);
}

int p2p_config_finalize(p2p_config *cfg, char **err)
{
    p2p_config t;
    if (err) *err = NULL;
    if (copy_config(&t, cfg) || apply_role_defaults(&t)) goto oom;
    int id = find_key("node_id");
    if (!t.explicit_[id] || !t.node_id || !t.node_id[0]) {
        free(t.node_id);
        if (!(t.node_id = derive_node_id(t.coordinator_mode))) goto oom;
    }
    int rc = 0;
    if (t.gossip_interval_min > t.gossip_interval_max)
        rc = p2p__fail(err, -EINVAL, "key 'gossip_interval_min': %d is greater than gossip_interval_max (%d)",
                  t.gossip_interval_min, t.gossip_interval_max);
    else if (t.reporter_interval_min > t.reporter_interval_max)
        rc = p2p__fail(err, -EINVAL, "key 'reporter_interval_min': %d is greater than reporter_interval_max (%d)",
                  t.reporter_interval_min, t.reporter_interval_max);
    else if (t.rate_limit_rpc_burst < 1 || t.rate_limit_health_burst < 1 || t.rate_limit_default_burst < 1)
        rc = p2p__fail(err, -EINVAL, "key 'rate_limit_*_burst': bursts must be at least 1");
    else if (!t.ssl_cert_file[0] != !t.ssl_key_file[0])
        rc = p2p__fail(err, -EINVAL, "key '%s': ssl_cert_file and ssl_key_file must be set together",
                  t.ssl_cert_file[0] ? "ssl_key_file" : "ssl_cert_file");
    if (rc) {
        p2p_config_free(&t);
        return rc;
    }
    replace(cfg, &t);
    return 0;
oom:
    p2p_config_free(&t);
    return p2p__fail(err, -ENOMEM, "configuration: out of memory");
}

typedef struct strbuf { char *p; size_t len, cap; int oom; } strbuf;

static void put(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->oom || n < 0) return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) return (void)(b->oom = 1);
        b->p = p, b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A YAML double-quoted scalar. Values are checked by check_text, so only '"' and '\'
 * need escaping. */
static void put_quoted(strbuf *b, const char *s)
{
    put(b, "\"");
    for (; *s; s++) put(b, *s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
    put(b, "\"");
}

char *p2p_config_to_yaml(const p2p_config *cfg)
{
    strbuf b = {0};
    put(&b, "# p2pcore configuration: effective values (see docs/configuration.md)\n");
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        put(&b, "\n# %s\n", k->info.doc);
        switch (k->type) {
        case T_STR: {
            const char *s = *FIELD(cfg, k, char *);
            if (!s && k->off == OFF(node_id)) {
                put(&b, "# %s: derived at startup\n", k->info.name);
                break;
            }
            put(&b, "%s: ", k->info.name);
            put_quoted(&b, s ? s : "");
            put(&b, "\n");
            break;
        }
        case T_INT: put(&b, "%s: %d\n", k->info.name, *FIELD(cfg, k, int)); break;
        case T_INT64: put(&b, "%s: %lld\n", k->info.name, (long long)*FIELD(cfg, k, int64_t)); break;
        case T_BOOL: put(&b, "%s: %s\n", k->info.name, *FIELD(cfg, k, int) ? "true" : "false"); break;
        case T_ADDRS:
            put(&b, "%s:%s\n", k->info.name, cfg->n_coordinator_addresses ? "" : " []");
            for (size_t j = 0; j < cfg->n_coordinator_addresses; j++) {
                put(&b, "  - ");
                put_quoted(&b, FIELD(cfg, k, char *)[j] ? FIELD(cfg, k, char *)[j] : "");
                put(&b, "\n");
            }
            break;
        }
    }
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

json_t *p2p_config_to_json(const p2p_config *cfg)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        json_t *v = NULL;
        switch (k->type) {
        case T_STR: {
            const char *s = *FIELD(cfg, k, char *);
            if (k->off == OFF(join_token))
                v = json_string(s && *s ? "(set)" : ""); /* a secret: never shown */
            else if (k->off == OFF(redis_url) && s && strchr(s, '@'))
                v = redis_url_redacted(s); /* its password neither */
            else
                v = s ? json_string(s) : json_null();
            break;
        }
        case T_INT: v = json_integer(*FIELD(cfg, k, int)); break;
        case T_INT64: v = json_integer((json_int_t)*FIELD(cfg, k, int64_t)); break;
        case T_BOOL: v = json_boolean(*FIELD(cfg, k, int)); break;
        case T_ADDRS:
            v = json_array();
            for (size_t j = 0; j < cfg->n_coordinator_addresses; j++)
                json_array_append_new(v, json_string(FIELD(cfg, k, char *)[j]));
            break;
        }
        json_object_set_new(o, k->info.name, v);
    }
    return o;
}
