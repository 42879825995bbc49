/*
 * config.h — the node's effective configuration.
 *
 * Sources, lowest to highest precedence: built-in defaults (which depend on the
 * role: coordinator port 8001, worker 8002), the YAML file given with
 * `--config`, then command-line flags. Every key is described once in a static
 * table in config.c (name, type, bounds, offset into p2p_config), which drives
 * parsing, validation, `--print-config` and docs/configuration.md, so the three
 * can't drift apart.
 *
 * Errors name the file, the line and the key; the caller exits with status 2.
 */
#ifndef P2P_CORE_CONFIG_H
#define P2P_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define P2P_CONFIG_MAX_ADDRS 16

typedef struct p2p_config {
    /* identity and network */
    char *node_id;           /* default: "<role>-<hostname>" */
    int port;                /* 1..65535; default 8001 coordinator, 8002 worker */
    char *bind_address;      /* default "0.0.0.0" */
    char *advertise_address; /* default "" (auto) */
    int coordinator_mode;    /* bool, default false */
    char *coordinator_addresses[P2P_CONFIG_MAX_ADDRS]; /* "host:port"; worker default {"127.0.0.1:8001"} */
    size_t n_coordinator_addresses;
    char *state_directory; /* default "data/coordinator" or "data/worker" */

    /* TLS */
    int https_enabled;      /* default true */
    char *ssl_cert_file;    /* default "" = the node's own certificate, kept in the vault */
    char *ssl_key_file;     /* default "" = the node's own key, kept in the vault */
    char *ssl_ca_cert_file; /* default "" = <state_directory>/certs/ca.crt (written by the node) */
    int ssl_verify;         /* default true */

    /* HTTP server limits */
    int64_t http_max_body_size;       /* bytes, default 1 MiB, 1 KiB..1 GiB */
    int http_max_header_size;         /* bytes, default 16384, 1024..262144 */
    int http_max_connections;         /* default 1024, 1..1000000 */
    int http_idle_timeout;            /* seconds, default 60, 1..3600 */
    int http_request_timeout;         /* seconds (slow request head/body), default 10, 1..3600 */
    int64_t http_max_pending_bytes_per_conn; /* unread response bytes per connection, default 8 MiB */
    int64_t http_max_pending_bytes_total;    /* unread response bytes, all connections, default 64 MiB */
    int http_write_timeout;           /* seconds a client may leave a response unread, default 30, 1..3600 */
    int http2_max_resets_per_second;  /* RST_STREAM per connection per second, default 100, 1..100000 */
    int shutdown_grace_period;        /* seconds in-flight requests get on SIGTERM, default 10, 0..600 */
    int access_log;                   /* bool, default true */
    char *log_level;                  /* debug|info|warn|error, default "info" */
    char *log_format;                 /* text|json (stderr), default "text" */
    char *log_ship_level;             /* least level shipped to the collector, default "info" */
    int64_t log_spool_memory_bytes;   /* unacked records kept in memory, default 8 MiB */
    int64_t log_spool_file_bytes;     /* then in <state_directory>/log-spool, default 64 MiB, 0 = none */

    /* security */
    char *vault_password_file;  /* default "" */
    char *admin_api_key_file;   /* default "" */
    char *join_token;           /* default "" */
    int enroll_challenge_port;  /* default 8802, 0 = any */
    int cert_lifetime;          /* seconds, default 1 year */
    int cert_renew_before;      /* seconds, default 30 days */
    int jwt_ttl;                /* seconds, default 24 h */
    char *trusted_proxies;      /* comma-separated IPs/CIDRs, default "" */

    /* rate limiting (guide defaults) */
    int rate_limit_enabled;           /* default true */
    int rate_limit_rpc_requests;      /* per minute, default 100 */
    int rate_limit_rpc_burst;         /* default 20 */
    int rate_limit_health_requests;   /* default 300 */
    int rate_limit_health_burst;      /* default 50 */
    int rate_limit_default_requests;  /* default 200 */
    int rate_limit_default_burst;     /* default 30 */
    int rate_limit_node_rpc_requests;     /* node certificates on /rpc, per minute, default 6000 */
    int rate_limit_node_rpc_burst;        /* default 1000 */
    int rate_limit_node_default_requests; /* node certificates elsewhere, per minute, default 1200 */
    int rate_limit_node_default_burst;    /* default 200 */
    int rate_limit_enroll_token_requests; /* enrollments per minute per join token, default 6000 */
    int rate_limit_enroll_token_burst;    /* default 1000 */
    int rate_limit_enroll_failures;       /* refused enrollment attempts per minute per address, default 30 */
    int rate_limit_enroll_failures_burst; /* default 10 */
    int rate_limit_ca_cert_requests;      /* GET /internal/ca-cert per minute, all clients together, default 60000 */
    int rate_limit_ca_cert_burst;         /* default 5000 */

    /* gossip */
    int gossip_interval_min;          /* seconds, default 5 */
    int gossip_interval_max;          /* seconds, default 30, >= gossip_interval_min */
    int gossip_compression_enabled;   /* default true */
    int gossip_compression_threshold; /* bytes, default 1024 */

    /* logs */
    int max_log_entries;              /* default 1000, 1..10000000 */
    int64_t log_segment_bytes;        /* coordinator: default 16 MiB, 64 KiB..1 GiB */
    int64_t log_retention_bytes;      /* coordinator: default 1 GiB, 1 MiB..16 TiB */
    int log_retention_days;           /* coordinator: default 7, 0 (no age limit)..3650 */
    char *log_forward_syslog;         /* coordinator: "" or udp://IP:PORT / tcp://IP:PORT */
    int log_forward_journald;         /* coordinator: bool, default false */
    char *log_forward_journald_socket; /* default /run/systemd/journal/socket */
    int log_forward_queue;            /* records waiting per destination, default 10000 */

    /* dashboard WebSocket (coordinator) */
    int dashboard_ws_max_sockets;       /* default 64, 1..10000 */
    int dashboard_ws_max_unsent_bytes;  /* default 4 MiB, 65536..268435456 */
    int dashboard_ws_max_message_bytes; /* default 65536, 1024..1048576 */
    int dashboard_ws_idle_timeout;      /* seconds, default 60, 5..86400 */

    /* cache */
    char *services_directory;         /* default "" = <state_directory>/services */
    int services_rescan_interval;     /* seconds, default 5 */
    int redis_enabled;                /* default true; false = L1 only */
    char *redis_url;                  /* default "" = L1 only; redis://... or unix:/path */
    int64_t cache_l1_max_bytes;       /* default 64 MiB, 64 KiB..64 GiB */
    int cache_default_ttl;            /* seconds, default 300, 1..2592000 */
    int cache_redis_timeout_ms;       /* default 500, 10..60000 */

    /* dashboard (coordinator) and reporter (worker) */
    int dashboard_enabled;            /* default true */
    int metrics_retention_count;      /* default 100 */
    int metrics_cleanup_interval;     /* seconds, default 300 */
    int reporter_enabled;             /* default true */
    int reporter_interval_min;        /* seconds, default 30 */
    int reporter_interval_max;        /* seconds, default 300, >= reporter_interval_min */
    int metrics_report_interval;      /* seconds between reports, default 5, 1..300 */
    int metrics_stale_after;          /* coordinator: seconds without a report before stale, default 20 */
    int metrics_cleanup_after;        /* coordinator: seconds without a report before the history goes, 7 days */
    int metrics_snapshot_interval;    /* coordinator: seconds between history snapshots, default 60 */

    /* packages (src/deploy) */
    char *release_public_key_file;    /* default "" = the key the coordinator announces */
    char *package_version_floors;     /* "name=1.2.0,other=2.0.0", "*=..." for every package; default "" */

    /* admin methods (src/builtin/admin.c) */
    char *admin_commands_file;        /* JSON allow-list of commands, default "" = none */
    int admin_command_timeout;        /* seconds, default 10 */
    int admin_command_output_max;     /* bytes per stream, default 65536 */
    int admin_file_max_bytes;         /* default 1 MiB */

    /* private to config.c: 1 for each key (by table index) set by a file or a flag,
     * so role-dependent defaults are applied only to keys nobody set */
    unsigned char explicit_[128];
} p2p_config;

/* Fills `cfg` with the defaults for a role. Strings are heap copies. */
void p2p_config_defaults(p2p_config *cfg, int coordinator_mode);

/* Releases the strings of `cfg` (not `cfg` itself). */
void p2p_config_free(p2p_config *cfg);

/* Loads a YAML file over `cfg` (which holds defaults or earlier values). The file is a
 * mapping of known keys to scalars (or a sequence for coordinator_addresses).
 * Returns 0, or -EINVAL / -ENOENT / ... with `*err` set to a heap message of the form
 * "FILE:LINE: key 'KEY': what is wrong" (caller frees). On error `cfg` is unchanged. */
int p2p_config_load_file(p2p_config *cfg, const char *path, char **err);

/* Same as p2p_config_load_file for YAML text in memory; `name` stands for the file
 * name in messages. */
int p2p_config_load_buffer(p2p_config *cfg, const char *name, const char *buf, size_t len,
                           char **err);

/* Sets one key from a string, as a command-line flag does ("port", "8005").
 * Same validation as the file; `*err` names the key. On error `cfg` is unchanged. */
int p2p_config_set(p2p_config *cfg, const char *key, const char *value, char **err);

/* Cross-key checks after all sources are applied (interval_min <= interval_max, ...)
 * and derived defaults (node_id, state_directory by role when still unset). */
int p2p_config_finalize(p2p_config *cfg, char **err);

/* The effective config as YAML text (heap; caller frees), suitable as a config file. */
char *p2p_config_to_yaml(const p2p_config *cfg);

/* The effective config as a JSON object (a new reference), one member per key;
 * secrets (join_token) are shown as "(set)" or "". */
json_t *p2p_config_to_json(const p2p_config *cfg);

/* Iterates the key table: returns the name/type/default/description of key i, or
 * NULL past the end. Used by the docs generator and `--help`. */
typedef struct p2p_config_keyinfo {
    const char *name;
    const char *type;   /* "string", "int", "bool", "list of host:port" */
    const char *deflt;  /* default as text */
    const char *doc;
} p2p_config_keyinfo;
const p2p_config_keyinfo *p2p_config_key(size_t i);

#endif
