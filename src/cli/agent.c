/*
 * agent.c — `p2p agent`: load the config, build the context, start the
 * components, run the loop, and stop gracefully on SIGINT/SIGTERM.
 *
 * Shutdown: the first signal drains HTTP (no new connections; in-flight
 * requests get up to shutdown_grace_period seconds), then components stop in
 * reverse start order and the process exits 0. A second signal skips the wait.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "rpc/client.h"
#include "services/manager.h"
#include "auth/guard.h"
#include "auth/revsync.h"
#include "builtin/runconfig.h"
#include "builtin/system.h"
#include "builtin/admin.h"
#include "cache/component.h"
#include "deploy/release.h"
#include "deploy/store.h"
#include "deploy/updater.h"
#include "web/dashlink.h"
#include "web/static.h"
#include "deploy/orchestrator.h"
#include "cli/password.h"
#include "vault/vault.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/ctx.h"
#include "core/util.h"
#include "http/server.h"
#include "logs/collector.h"
#include "metrics/dashboard.h"
#include "metrics/reporter.h"
#include "web/hub.h"
#include "logs/shipper.h"
#include "membership/node.h"
#include "pki/cluster.h"
#include "pki/enroll.h"

typedef struct agent {
    p2p_ctx *ctx;
    uv_signal_t sigint, sigterm;
    int signals_open;
    int stopping;
    int drain_timed_out;
    int exit_code;
} agent;

static void agent_usage(FILE *out)
{
    fprintf(out,
            "usage: p2p agent [--config FILE] [--coordinator] [--node-id ID] [--port N]\n"
            "                 [--bind-address ADDR] [--data-dir DIR] [--KEY VALUE ...] [--print-config]\n"
            "\n"
            "Runs a node in the foreground until SIGINT or SIGTERM.\n"
            "\n"
            "  --config FILE       YAML config file (see docs/configuration.md)\n"
            "  --coordinator       run as the coordinator (coordinator_mode: true); default port 8001\n"
            "  --worker            run as a worker (the default); default port 8002\n"
            "  --node-id ID        this node's id (default: <role>-<hostname>)\n"
            "  --port N            HTTPS port (and UDP gossip port)\n"
            "  --bind-address A    address to listen on (default 0.0.0.0)\n"
            "  --data-dir DIR      state directory (default data/<role>); certificates live in DIR/certs\n"
            "  --log-level L       debug, info, warn or error\n"
            "  --password-file F   vault password (first line of F, mode 0600); else $P2P_VAULT_PASSWORD,\n"
            "                      else asked on the terminal. The vault is DIR/vault.p2p.\n"
            "  --join-token T      a worker's first start: the join token from the coordinator\n"
            "                      ('p2p token create --join'); else $P2P_JOIN_TOKEN or config join_token.\n"
            "                      A worker without a valid certificate enrolls with coordinator_addresses;\n"
            "                      later starts reuse the certificate in its vault.\n"
            "  --print-config      print the effective config as YAML and exit\n"
            "  -h, --help          show this help\n"
            "\n"
            "Every config key can be given as a flag: --KEY VALUE or --KEY=VALUE, with\n"
            "underscores written as dashes. Flags override the file. Keys:\n");
    for (size_t i = 0;; i++) {
        const p2p_config_keyinfo *k = p2p_config_key(i);
        if (!k)
            break;
        char flag[96];
        snprintf(flag, sizeof(flag), "%s", k->name);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        fprintf(out, "  --%-32s %s (default %s)\n", flag, k->type, *k->deflt ? k->deflt : "\"\"");
    }
    fprintf(out, "\nExit status: 0 after a clean stop, 1 when the node cannot start, 2 for a config error.\n");
}

/* ---- shutdown ------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish_stop(p2p_ctx *ctx, int timed_out)
{
    agent *a = p2p_shared_get(ctx, "agent");
    p2p__components_stop(ctx);
    if (a->signals_open) {
        uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
        uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
        a->signals_open = 0;
    }
    if (timed_out) {
        a->drain_timed_out = 1;
        uv_stop(ctx->loop); /* connections left open would keep the loop alive */
    }
    p2p_log(ctx, P2P_LOG_INFO, "agent", "stopped");
}

static void on_signal(uv_signal_t *s, int signum)
{
    agent *a = s->data;
    p2p_ctx *ctx = a->ctx;
    if (a->stopping) {
        p2p_log(ctx, P2P_LOG_WARN, "agent", "second %s: stopping without waiting for requests",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
        a->exit_code = 1;
        finish_stop(ctx, 1);
        return;
    }
    a->stopping = 1;
    ctx->shutting_down = 1;
    p2p_log(ctx, P2P_LOG_INFO, "agent", "%s received: finishing in-flight requests (up to %ds), then stopping",
            signum == SIGINT ? "SIGINT" : "SIGTERM", ctx->cfg.shutdown_grace_period);
    p2p__http_drain(ctx, (uint64_t)ctx->cfg.shutdown_grace_period * 1000, finish_stop);
}

/* ---- vault -------------------------------------------------------------- */

typedef struct vault_wait {
    int done, status;
    vault *v;
    char *err;
} vault_wait;

static void on_vault_open(vault *v, int status, const char *err, void *arg)
{
    vault_wait *w = arg;
    w->done = 1;
    w->status = status;
    w->v = v;
    if (err)
        w->err = p2p__xstrdup(err);
}

/* Opens the node's vault (creating it on first start). The key derivation runs
 * on the thread pool; the loop serves nothing yet, so it just waits for it.
 * Returns 0, or an exit status. */
static int open_node_vault(p2p_ctx *ctx)
{
    char *path = p2p__xasprintf("%s/vault.p2p", ctx->cfg.state_directory);
    int exists = access(path, F_OK) == 0;
    char *pw = NULL;
    const char *pwfile = *ctx->cfg.vault_password_file ? ctx->cfg.vault_password_file : NULL;
    int st = p2p__password_get("p2p agent", pwfile, "--password-file", "P2P_VAULT_PASSWORD",
                               exists ? "vault password" : "password for the new vault", !exists, &pw);
    if (st != 0) {
        free(path);
        return st;
    }
    vault_wait w = {0};
    uint64_t t0 = uv_hrtime();
    int r = exists ? vault_open_async(ctx->loop, path, pw, on_vault_open, &w)
                   : vault_create_async(ctx->loop, path, pw, 0, on_vault_open, &w);
    p2p__password_free(pw);
    while (r == 0 && !w.done)
        uv_run(ctx->loop, UV_RUN_ONCE);
    if (r != 0 || w.status != 0) {
        int code = r ? r : w.status;
        p2p_log(ctx, P2P_LOG_ERROR, "agent", "vault %s: %s", path, w.err ? w.err : p2p_strerror(code));
        if (code == -EBADMSG)
            p2p_log(ctx, P2P_LOG_ERROR, "agent", "check the vault password; the file was not changed");
        free(w.err);
        free(path);
        return code == -EBADMSG || code == -EINVAL ? 2 : 1;
    }
    p2p_log(ctx, P2P_LOG_INFO, "agent", "vault %s %s (key derivation %.0f ms)", path, exists ? "opened" : "created",
            (double)(uv_hrtime() - t0) / 1e6);
    p2p_shared_set(ctx, "vault", w.v);
    free(path);
    return 0;
}

/* ---- enrollment ------------------------------------------------------------ */

/* A worker without a valid certificate enrolls with the coordinator before
 * anything starts. Returns 0 or an exit status. */
static int enroll_if_needed(p2p_ctx *ctx)
{
    p2p_config *cfg = &ctx->cfg;
    vault *v = p2p_shared_get(ctx, "vault");
    if (cfg->coordinator_mode || !cfg->https_enabled || *cfg->ssl_cert_file || p2p__enroll_have_valid_cert(v))
        return 0;
    const char *join = *cfg->join_token ? cfg->join_token : getenv("P2P_JOIN_TOKEN");
    char *err = NULL;
    int r = p2p__enroll_worker(ctx, v, join, &err);
    if (r != 0) {
        p2p_log(ctx, P2P_LOG_ERROR, "enroll", "%s", err ? err : p2p_strerror(r));
        free(err);
        return r == -EACCES || r == -EINVAL ? 2 : 1;
    }
    return 0;
}

/* ---- arguments ------------------------------------------------------------ */

static int parse_args(int argc, char **argv, p2p_config *cfg, int *print_config)
{
    const char *config_file = NULL;
    char *err = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            agent_usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0) {
            config_file = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!config_file) {
                fprintf(stderr, "p2p agent: --config needs a file\n");
                return 2;
            }
        }
    }
    if (config_file && p2p_config_load_file(cfg, config_file, &err) != 0) {
        fprintf(stderr, "p2p agent: %s\n", err ? err : "out of memory");
        free(err);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        if (strcmp(a, "--print-config") == 0) {
            *print_config = 1;
            continue;
        }
        const char *key = NULL, *value = NULL;
        char keybuf[128];
        if (strcmp(a, "--password-file") == 0 || strncmp(a, "--password-file=", 16) == 0) {
            key = "vault_password_file";
            value = a[15] == '=' ? a + 16 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) {
                fprintf(stderr, "p2p agent: --password-file needs a file\n");
                return 2;
            }
        } else if (strcmp(a, "--coordinator") == 0) {
            key = "coordinator_mode";
            value = "true";
        } else if (strcmp(a, "--worker") == 0) {
            key = "coordinator_mode";
            value = "false";
        } else if (strncmp(a, "--", 2) == 0 && a[2]) {
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (n >= sizeof(keybuf)) {
                fprintf(stderr, "p2p agent: unknown option '%s' (see --help)\n", a);
                return 2;
            }
            memcpy(keybuf, a + 2, n);
            keybuf[n] = '\0';
            for (char *p = keybuf; *p; p++)
                if (*p == '-')
                    *p = '_';
            key = keybuf; /* config.c knows the data_dir alias and names the flag as typed */
            if (eq) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "p2p agent: option '%s' needs a value\n", a);
                return 2;
            }
        } else {
            fprintf(stderr, "p2p agent: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (p2p_config_set(cfg, key, value, &err) != 0) {
            fprintf(stderr, "p2p agent: %s\n", err ? err : "out of memory");
            free(err);
            return 2;
        }
    }
    if (p2p_config_finalize(cfg, &err) != 0) {
        fprintf(stderr, "p2p agent: %s%s%s\n", config_file ? config_file : "", config_file ? ": " : "", err);
        free(err);
        return 2;
    }
    return 0;
}

int p2p__cmd_agent(int argc, char **argv)
{
    uint64_t t0 = uv_hrtime();
    p2p_config cfg;
    p2p_config_defaults(&cfg, 0);
    int print_config = 0;
    int r = parse_args(argc, argv, &cfg, &print_config);
    if (r != 0) {
        p2p_config_free(&cfg);
        return r == 1 ? 0 : r;
    }
    if (print_config) {
        char *yaml = p2p_config_to_yaml(&cfg);
        fputs(yaml, stdout);
        free(yaml);
        p2p_config_free(&cfg);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);

    p2p__httpc_global_init(); /* OpenSSL, before any thread */
    uv_loop_t loop;
    uv_loop_init(&loop);
    agent a = {0};
    p2p_ctx *ctx = p2p__ctx_new(&cfg, &loop);
    a.ctx = ctx;
    p2p_shared_set(ctx, "agent", &a);
    p2p__logs_register(ctx); /* first: the lines below are shipped too */
    p2p_log(ctx, P2P_LOG_INFO, "agent", "starting p2p %s as %s '%s' (state directory %s)", P2P_VERSION,
            p2p_node_role(ctx), p2p_node_id(ctx), ctx->cfg.state_directory);

    int exit_code = 0;
    char *err = NULL;
    if ((r = p2p__mkdir_p(ctx->cfg.state_directory, 0700)) != 0) {
        p2p_log(ctx, P2P_LOG_ERROR, "agent", "cannot create state directory %s: %s", ctx->cfg.state_directory,
                p2p_strerror(r));
        exit_code = 1;
        goto out;
    }
    if ((r = open_node_vault(ctx)) != 0) {
        exit_code = r;
        goto out;
    }
    if ((r = p2p__runconfig_apply_stored(ctx, &err)) != 0) {
        /* a usage error, like a bad flag: the operator's stored setting, with the remedy */
        p2p_log(ctx, P2P_LOG_ERROR, "config", "%s", err);
        free(err);
        err = NULL;
        exit_code = 2;
        goto out;
    }
    if ((r = enroll_if_needed(ctx)) != 0) {
        exit_code = r;
        goto out;
    }
    p2p__guard_register(ctx);
    p2p__pki_register(ctx);
    p2p__membership_register(ctx);
    p2p__revsync_register(ctx);
    p2p__system_register(ctx);
    p2p__admin_register(ctx);  /* admin service: processes, config, files/, allow-listed commands */
    p2p__cache_register(ctx);
    p2p__services_register(ctx);
    p2p__release_register(ctx); /* deploy/sign (coordinator), deploy/release_key */
    p2p__store_register(ctx);   /* update_server: the coordinator's package store */
    p2p__updater_register(ctx); /* update_manager: deploy/install */
    p2p__orchestrator_register(ctx); /* orchestrator: rollouts (the coordinator) */
    if (ctx->cfg.coordinator_mode)
        p2p__logcol_register(ctx); /* the cluster's log collector */
    if (ctx->cfg.coordinator_mode && ctx->cfg.dashboard_enabled) {
        p2p__dash_register(ctx);  /* the cluster's metrics: tiers, /api/dashboard */
        p2p__webui_register(ctx); /* GET /dashboard: the page, embedded at build time */
        p2p__dashlink_register(ctx); /* the hub's initial snapshot and metrics deltas */
    }
    if (ctx->cfg.reporter_enabled)
        p2p__reporter_register(ctx); /* this node's samples, every second */
    if (ctx->cfg.coordinator_mode)
        p2p__hub_register(ctx); /* the dashboard's WebSocket */
    p2p__http_register(ctx);
    if ((r = p2p__components_start(ctx, &err)) != 0) {
        p2p_log(ctx, P2P_LOG_ERROR, "agent", "%s", err);
        free(err);
        exit_code = 1;
        goto out;
    }
    uv_signal_init(&loop, &a.sigint);
    uv_signal_init(&loop, &a.sigterm);
    a.sigint.data = a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    a.signals_open = 1;
    p2p_log(ctx, P2P_LOG_INFO, "agent", "node ready in %.1f ms", (double)(uv_hrtime() - t0) / 1e6);
    uv_run(&loop, UV_RUN_DEFAULT);
    exit_code = a.exit_code;
out:
    p2p__components_stop(ctx);
    vault *v = p2p_shared_get(ctx, "vault");
    if (v) {
        vault_close(v); /* queued saves still run: the loop below waits for them */
        p2p_shared_set(ctx, "vault", NULL);
    }
    if (a.signals_open) {
        uv_close((uv_handle_t *)&a.sigint, on_handle_closed);
        uv_close((uv_handle_t *)&a.sigterm, on_handle_closed);
        a.signals_open = 0;
    }
    /* Let close callbacks and queued vault saves finish. A drain that timed out left
     * sockets we cannot wait for: then only what is ready runs. */
    if (a.drain_timed_out) {
        for (int i = 0; i < 10 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++)
            ;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    int leftover = uv_loop_close(&loop) == UV_EBUSY;
    if (leftover) {
        /* Handles of connections that outlived the grace period: exit without freeing
         * what they still point at. */
        fflush(stdout);
        _exit(exit_code);
    }
    p2p__ctx_free(ctx);
    return exit_code;
}
