/*
 * logs_cmd.c — `p2p logs`: the cluster's log lines from the coordinator's log
 * collector (log_collector/get_logs), in time order, like journalctl.
 *
 * `-f` follows: it asks get_logs again with the cursor of the last answer and
 * "wait_ms", which the collector holds until new lines match (or the wait
 * ends, then the answer is empty and the command asks again). The filters,
 * the time arguments and the line format live in src/logs/view.c, which the
 * unit tests reach.
 */
#include <signal.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/util.h"
#include "logs/view.h"

#define FOLLOW_WAIT_MS 10000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p2p logs [-f] [--node ID] [--level L] [--logger NAME] [--grep TEXT]\n"
            "                [--since T] [--until T] [-n N] [--json]\n"
            "                [--addr HOST:PORT] [--ca FILE] [--data-dir DIR] [--token JWT] [--token-file F]\n"
            "\n"
            "Shows the log lines of the whole cluster, as the coordinator's log collector\n"
            "stored them, in time order. A viewer token is enough.\n"
            "\n"
            "  -f, --follow       keep running and show new lines as they arrive\n"
            "  --node ID          only this node's lines\n"
            "  --level L          at least this level: debug, info, warning, error, critical\n"
            "  --logger NAME      only this logger (component or service)\n"
            "  --grep TEXT        only lines whose message contains TEXT\n"
            "  --since T          lines at or after T; --until T: at or before T. T is\n"
            "                     2026-11-21T00:51:25Z, 2026-11-21, seconds since the epoch,\n"
            "                     -10m / 2h ago / 1d (before now), now, today, yesterday\n"
            "  -n, --lines N      at most N lines (default: the collector's limit)\n"
            "  --json             one JSON record per line (every field)\n"
            "  --addr HOST:PORT   the coordinator (default $P2P_ADDR, else 127.0.0.1:8001)\n"
            "  --ca FILE          its CA certificate (default $P2P_CA)\n"
            "  --data-dir DIR     find the CA in DIR/certs/ca.crt (default $P2P_DATA_DIR)\n"
            "  --token JWT        bearer token (default $P2P_TOKEN); --token-file F reads it from F\n"
            "\n"
            "Exit status: 0 on success, 1 on an error from the node, 2 on usage errors.\n");
}

static int print_records(json_t *recs, int raw, int color)
{
    size_t i;
    json_t *r;
    int n = 0;
    json_array_foreach(recs, i, r)
    {
        if (raw) {
            char *s = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(16));
            if (s)
                printf("%s\n", s);
            free(s);
        } else {
            char line[20000];
            p2p__logs_format(r, color, line, sizeof line);
            printf("%s\n", line);
        }
        n++;
    }
    fflush(stdout);
    return n;
}

int p2p__cmd_logs(int argc, char **argv)
{
    p2p_cli_conn c;
    p2p__cli_conn_init(&c, "p2p logs", 30);
    p2p_logs_filter f = {0};
    const char *since = NULL, *until = NULL, *lines = NULL;
    int follow = 0, raw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--follow")) {
            follow = 1;
            continue;
        } else if (!strcmp(a, "--json")) {
            raw = 1;
            continue;
        } else if (!strcmp(a, "--insecure")) {
            c.insecure = 1;
            continue;
        } else if (!strcmp(a, "--node")) {
            dst = &f.node;
        } else if (!strcmp(a, "--level")) {
            dst = &f.level;
        } else if (!strcmp(a, "--logger")) {
            dst = &f.logger;
        } else if (!strcmp(a, "--grep")) {
            dst = &f.grep;
        } else if (!strcmp(a, "--since")) {
            dst = &since;
        } else if (!strcmp(a, "--until")) {
            dst = &until;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--lines")) {
            dst = &lines;
        } else if ((dst = p2p__cli_conn_option(&c, a)) != NULL) {
        } else {
            fprintf(stderr, "p2p logs: %s '%s' (see --help)\n", a[0] == '-' ? "unknown option" : "unexpected argument",
                    a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p logs: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    double now = (double)p2p__wall_ms() / 1000.0;
    if (since && p2p__logs_parse_time(since, now, &f.since) != 0) {
        fprintf(stderr, "p2p logs: --since '%s': not a time (see --help)\n", since);
        return 2;
    }
    if (until && p2p__logs_parse_time(until, now, &f.until) != 0) {
        fprintf(stderr, "p2p logs: --until '%s': not a time (see --help)\n", until);
        return 2;
    }
    if (lines) {
        char *e;
        f.limit = strtol(lines, &e, 10);
        if (*e || f.limit < 1 || f.limit > 1000000) {
            fprintf(stderr, "p2p logs: -n '%s': a number of lines, 1..1000000\n", lines);
            return 2;
        }
    }
    if (f.level) {
        static const char *const ok[] = {"debug", "info", "warning", "warn", "error", "critical"};
        size_t i = 0;
        while (i < 6 && strcasecmp(f.level, ok[i]))
            i++;
        if (i == 6) {
            fprintf(stderr, "p2p logs: --level '%s': one of debug, info, warning, error, critical\n", f.level);
            return 2;
        }
        static const char *const canon[] = {"DEBUG", "INFO", "WARNING", "WARNING", "ERROR", "CRITICAL"};
        f.level = canon[i];
    }
    int color = !raw && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    char *cursor = NULL;
    int first = 1, rc = 0;
    signal(SIGPIPE, SIG_DFL);
    do {
        json_t *params = p2p__logs_params(&f, cursor, first ? 0 : FOLLOW_WAIT_MS);
        json_t *result = NULL;
        c.timeout = first ? 30 : FOLLOW_WAIT_MS / 1000 + 30;
        rc = p2p__cli_rpc(&c, NULL, "log_collector/get_logs", params, &result);
        json_decref(params);
        if (rc != 0)
            break;
        const char *next = NULL;
        char buf[32];
        json_t *recs = p2p__logs_answer(result, &next, buf, sizeof buf);
        if (!recs) {
            fprintf(stderr, "p2p logs: the collector's answer has no list of records\n");
            json_decref(result);
            rc = 1;
            break;
        }
        print_records(recs, raw, color);
        if (follow && !next) {
            fprintf(stderr, "p2p logs: the collector gives no cursor to follow from\n");
            json_decref(result);
            rc = 1;
            break;
        }
        if (next) {
            free(cursor);
            cursor = p2p__xstrdup(next);
        }
        json_decref(result);
        first = 0;
        if (follow)
            f.limit = 0; /* -n applies to the first answer only, as journalctl -n -f */
    } while (follow);
    free(cursor);
    return rc;
}
