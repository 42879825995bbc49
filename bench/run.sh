#!/usr/bin/env bash
# run.sh — HTTP/RPC benchmark of the p2p node against two references:
#   * FastAPI on Uvicorn (bench/fastapi_ref.py): the stack of the original Python
#     framework, one worker, TLS, HTTP/1.1 only;
#   * nginx (bench/nginx.conf.in): a fixed JSON reply, TLS, HTTP/1.1 + HTTP/2, 1 worker.
# For each server: h2load over HTTP/2 and wrk over HTTP/1.1 keep-alive, BENCH_SECONDS
# each; then the table of req/s, p50, p99, the ratios against the targets, the node's
# idle RSS and its startup time (exec -> first 200 from /health, keys already on disk).
#
# Called by `make bench` after the build. Environment:
#   BENCH_SECONDS=10       seconds per load run (each run is preceded by a 1 s warm-up)
#   BENCH_STARTUP_RUNS=5   startup-time samples (median reported)
#   BENCH_PIN=1            pin servers to CPU 1 and the load tools to CPU 0 (needs >= 2 CPUs)
#   BENCH_NGINX_AUTO=0     1: also measure nginx with `worker_processes auto` (unpinned)
#   BENCH_STRICT=0         1: exit 3 when a target is not met
#   BENCH_KEEP_TMP=0       1: keep the temp dir (logs, configs, raw tool output)
#   BENCH_ALLOW_NO_P2P=0   1: measure only the references when build/p2p is missing
#                          (for working on the harness itself)
#   P2P_BIN=build/p2p      the node binary
#   BENCH_P2P_FLAGS="--access-log false --rate-limit-enabled false"
#                          extra `p2p agent` flags: like the references, no per-request
#                          access log and no rate limit (one client at 100 RPC/min would
#                          measure the limiter); set to "" to measure the defaults
#   P2P_BENCH_TOKEN        when set, every request carries "Authorization: Bearer <token>"
#                          (FastAPI and nginx check it too, so both sides pay for it)
#   BENCH_SERVICES=1       0: skip the services benchmark (bench/services.py: native and
#                          exec service methods vs system/ping and FastAPI, reloads under
#                          load; BENCH_SVC_SECONDS, BENCH_SVC_ROUNDS, BENCH_SVC_RELOADS)
#   BENCH_MEMBERSHIP=1     0: skip the membership benchmark (bench/membership/run.py)
#   BENCH_ROLLOUT=1        0: skip the rollout benchmark (bench/rollout.py: hello rolled out to
#                          BENCH_ROLLOUT_WORKERS (50) enrolled workers, max_parallel 10, and
#                          reverted, with calls running; times, failed calls, bytes per node)
#   BENCH_LOGS=1           0: skip the logs benchmark (bench/logs.py: 10 workers, log call ->
#                          visible at the coordinator p50/p99, coordinator ingest lines/s,
#                          beside rsyslog forwarding over TCP; BENCH_LOGS_SECONDS,
#                          BENCH_LOGS_RATE, BENCH_LOGS_INGEST)
# Output: the table on stdout and in bench/results/latest.txt (raw rows: latest.tsv).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY=/usr/bin/python3                 # Debian's python: it sees python3-fastapi/uvicorn
LIB="$HERE/benchlib.py"
P2P_BIN=${P2P_BIN:-$ROOT/build/p2p}
SECS=${BENCH_SECONDS:-10}
STARTUP_RUNS=${BENCH_STARTUP_RUNS:-5}
DEFAULT_P2P_FLAGS="--access-log false --rate-limit-enabled false"
read -r -a P2P_FLAGS <<<"${BENCH_P2P_FLAGS-$DEFAULT_P2P_FLAGS}"
RESULTS_DIR="$HERE/results"
export PATH="$PATH:/usr/sbin:/sbin"   # nginx lives in /usr/sbin

log() { echo "bench: $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

[[ $SECS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds >= 1 (got '$SECS')"
[[ $STARTUP_RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_STARTUP_RUNS must be >= 1 (got '$STARTUP_RUNS')"

# ------------------------------------------------------------------ tools
missing=()
for t in h2load wrk nginx openssl curl taskset timeout; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [[ ! -x $PY ]]; then
    missing+=("/usr/bin/python3")
elif ! "$PY" -c 'import fastapi, uvicorn' >/dev/null 2>&1; then
    missing+=("python3-fastapi/python3-uvicorn (for $PY)")
fi
if ((${#missing[@]})); then
    die "missing: ${missing[*]}
  install with: apt-get install nghttp2-client wrk nginx-light openssl curl util-linux coreutils python3 python3-fastapi python3-uvicorn"
fi

HAVE_P2P=1
if [[ ! -x $P2P_BIN ]]; then
    if [[ ${BENCH_ALLOW_NO_P2P:-0} == 1 ]]; then
        log "p2p binary not found ($P2P_BIN): BENCH_ALLOW_NO_P2P=1, measuring the references only"
        HAVE_P2P=0
    else
        echo "p2p binary not found ($P2P_BIN), build first" >&2
        exit 1
    fi
fi

# ------------------------------------------------------------------ temp dir, cleanup
TMP=$(mktemp -d /tmp/p2p-bench.XXXXXX)
PIDS=()

alive() { # PID: running (not gone, not a zombie)
    [[ -r /proc/$1/stat ]] || return 1
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $st && $st != Z ]]
}

STOP_RC=0
stop_pid() { # PID [SECONDS=5]: SIGTERM, wait up to SECONDS, then SIGKILL; reap it (status in STOP_RC)
    local pid=$1 secs=${2:-5} i
    STOP_RC=0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 20; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
        if alive "$pid"; then
            log "process $pid ignored SIGTERM for $secs s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    if [[ ${BENCH_DASHBOARD_PAGE:-1} == 1 ]] && ((HAVE_P2P)); then
    P2P_BIN="$P2P_BIN" "$PY" "$HERE/dashboard_page.py" || log "dashboard page benchmark exited with status $?"
fi
exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # PID: drop it from PIDS (after we stopped it ourselves)
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

META="$TMP/meta.env"
TSV="$TMP/results.tsv"
: >"$META"
: >"$TSV"
meta() { printf '%s=%s\n' "$1" "$2" >>"$META"; }
NOTE_N=0
note() {
    NOTE_N=$((NOTE_N + 1))
    meta "note$(printf %02d "$NOTE_N")" "$*"
    log "note: $*"
}
vm_kb() { # PID FIELD -> kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# ------------------------------------------------------------------ setup
read -r P2P_PORT NGINX_PORT FA_PORT NGINX_AUTO_PORT < <("$PY" "$LIB" freeports 4)

if [[ ${BENCH_PIN:-1} == 1 ]] && (($(nproc) >= 2)); then
    SRV=(taskset -c 1)
    CLI=(taskset -c 0)
    SRV_CPU_ARG=(--cpu 1)
    meta pinning "servers pinned to CPU 1, load generator to CPU 0 (BENCH_PIN=0 to disable)"
else
    SRV=()
    CLI=()
    SRV_CPU_ARG=()
    meta pinning "not pinned (servers and load generator share $(nproc) CPU(s))"
fi

# The node answers only authenticated requests (GET /health aside). Its first start
# creates the vault and the admin API key; a token from that key then goes on every
# request, to all three servers alike (FastAPI and nginx check it too).
export P2P_VAULT_PASSWORD=${P2P_VAULT_PASSWORD:-bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')}
P2P_FLAGS+=(--admin-api-key-file "$TMP/admin.key")
if ((HAVE_P2P)); then
    P2P_DATA="$TMP/p2p-data"
    mkdir -p "$P2P_DATA"
    log "p2p: first start on an empty data dir (creates its vault, CA, keys and admin API key) ..."
    "${CLI[@]}" "$PY" "$LIB" startup --runs 1 --port "$P2P_PORT" --data-dir "$P2P_DATA" \
        --bin "$P2P_BIN" "${SRV_CPU_ARG[@]}" --log "$TMP/p2p.log" --json "$TMP/first.json" \
        --deadline 30 -- "${P2P_FLAGS[@]}" >&2 || die "p2p first start failed; its log:
$(tail -20 "$TMP/p2p.log")"
    meta first_start_ms "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["startup_ms"][0])' "$TMP/first.json")"
    [[ -s $P2P_DATA/vault.p2p ]] || note "p2p's first start did not create its vault"
    [[ -s $P2P_DATA/certs/ca.crt ]] || note "p2p's first start did not publish certs/ca.crt"
    meta p2p_key "EC P-256 (kept in the vault)"

    if [[ -z ${P2P_BENCH_TOKEN:-} ]]; then
        "$P2P_BIN" agent --coordinator --node-id bench-node --port "$P2P_PORT" --bind-address 127.0.0.1 \
            --data-dir "$P2P_DATA" "${P2P_FLAGS[@]}" 2>>"$TMP/p2p.log" >&2 &
        boot_pid=$!
        "$PY" "$LIB" wait "https://127.0.0.1:$P2P_PORT/health" --cacert "$P2P_DATA/certs/ca.crt" \
            --deadline 30 --pid "$boot_pid" || die "p2p did not start; its log:
$(tail -20 "$TMP/p2p.log")"
        P2P_BENCH_TOKEN=$(curl -sf --cacert "$P2P_DATA/certs/ca.crt" -H 'Content-Type: application/json' \
            -d "{\"api_key\":\"$(head -n1 "$TMP/admin.key")\"}" "https://127.0.0.1:$P2P_PORT/auth/token" |
            "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])') || die "could not get a token from p2p"
        export P2P_BENCH_TOKEN # post.lua reads it from the environment
        kill -TERM "$boot_pid"
        wait "$boot_pid" || true
    fi
fi

TOKEN=${P2P_BENCH_TOKEN:-}
AUTH_CURL=()
AUTH_H2=()
NGINX_AUTH=""
if [[ -n $TOKEN ]]; then
    AUTH_CURL=(-H "Authorization: Bearer $TOKEN")
    AUTH_H2=(-H "authorization: Bearer $TOKEN")
    tok_sed=${TOKEN//\\/\\\\}
    tok_sed=${tok_sed//|/\\|}
    tok_sed=${tok_sed//&/\\&}
    NGINX_AUTH="if (\$http_authorization != \"Bearer $tok_sed\") { return 401 '{\"error\":\"unauthorized\"}'; }"
    meta auth "Authorization: Bearer \$P2P_BENCH_TOKEN on every request; FastAPI and nginx check it too"
fi

meta date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
meta host "$(uname -srm), $(nproc) CPU(s): $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta seconds "$SECS"
meta nginx_workers 1
meta p2p_flags "${P2P_FLAGS[*]:-(none)}"

uv_stack=$("$PY" - <<'EOF'
import importlib.util as u, uvicorn, fastapi
loop = "uvloop" if u.find_spec("uvloop") else "asyncio"
http = "httptools" if u.find_spec("httptools") else "h11"
print(f"uvicorn {uvicorn.__version__} + FastAPI {fastapi.__version__}, {http} parser, {loop} loop")
EOF
)
meta uvicorn_stack "$uv_stack"

# The references' certificate: self-signed P-256, valid for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$TMP/ref.key" -out "$TMP/ref.crt" >/dev/null 2>&1 ||
    die "openssl could not make the reference certificate"

PING_BODY='{"jsonrpc":"2.0","method":"system/ping","id":1}'
INFO_BODY='{"jsonrpc":"2.0","method":"system/get_system_info","id":1}'
BOGUS_BODY='{"jsonrpc":"2.0","method":"system/no_such_method","id":1}'
printf '%s' "$PING_BODY" >"$TMP/ping.json"
printf '%s' "$INFO_BODY" >"$TMP/info.json"

body_file() { case $1 in system/ping) echo "$TMP/ping.json" ;; *) echo "$TMP/info.json" ;; esac; }
body_of() { case $1 in system/ping) echo "$PING_BODY" ;; *) echo "$INFO_BODY" ;; esac; }

# ------------------------------------------------------------------ functional checks
# check_rpc LABEL URL CURLFLAGS... : POST ping, get_system_info and an unknown method
# over HTTP/1.1 and (unless --h1-only) HTTP/2; anything wrong becomes a note.
check_rpc() {
    local label=$1 url=$2 h1only=$3
    shift 3
    local protos=(--http1.1)
    [[ $h1only == 1 ]] || protos+=(--http2)
    local p m out code ver res
    for p in "${protos[@]}"; do
        for m in system/ping system/get_system_info; do
            out="$TMP/check.out"
            code=$(curl -sS -o "$out" -w '%{http_code} %{http_version}' --max-time 5 "$@" "$p" \
                -X POST -H 'Content-Type: application/json' "${AUTH_CURL[@]}" \
                --data-binary "$(body_of "$m")" "$url" 2>"$TMP/check.err") || code="curl-failed"
            if [[ $code == curl-failed ]]; then
                note "$label $p $m: curl failed: $(head -c 200 "$TMP/check.err")"
                continue
            fi
            ver=${code#* }
            code=${code%% *}
            [[ $code == 200 ]] || note "$label $p $m: HTTP status $code"
            if [[ $p == --http2 && $ver != 2 ]]; then note "$label: asked for HTTP/2, got HTTP/$ver"; fi
            if res=$("$PY" "$LIB" checkrpc "$out"); then
                log "check $label $p $m: $res"
                [[ $m == system/ping ]] && meta "ping_keys_$label" "${res#*result keys: }"
            else
                note "$label $p $m: bad JSON-RPC response: $res"
            fi
        done
    done
    out="$TMP/check.out"
    code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 5 "$@" --http1.1 -X POST \
        -H 'Content-Type: application/json' "${AUTH_CURL[@]}" --data-binary "$BOGUS_BODY" "$url" \
        2>/dev/null) || code="curl-failed"
    if res=$("$PY" "$LIB" checkrpc "$out" --error -32601); then
        log "check $label unknown method: HTTP $code, $res"
    else
        note "$label unknown method: HTTP $code, $res"
    fi
}

# ------------------------------------------------------------------ load runs
RUN_N=0
# bench_h2 SERVER METHOD URL
bench_h2() {
    local server=$1 method=$2 url=$3 tag stats
    RUN_N=$((RUN_N + 1))
    tag="$TMP/run$RUN_N"
    log "$server  HTTP/2    $method  (h2load, ${SECS} s) ..."
    timeout -k 5 $((SECS + 60)) "${CLI[@]}" h2load -t1 -c16 -m10 -D "$SECS" --warm-up-time=1 \
        -d "$(body_file "$method")" -H 'content-type: application/json' "${AUTH_H2[@]}" \
        --log-file "$tag.h2log" "$url" >"$tag.out" 2>&1 || log "h2load exited with $? (see $tag.out)"
    stats=$("$PY" "$LIB" h2stats "$tag.out" "$tag.h2log")
    rm -f "$tag.h2log"
    printf '%s\t%s\t%s\t%s\n' "$server" "HTTP/2" "$method" "$stats" >>"$TSV"
    log "    $stats"
}

# bench_h1 SERVER METHOD URL
bench_h1() {
    local server=$1 method=$2 url=$3 tag stats
    RUN_N=$((RUN_N + 1))
    tag="$TMP/run$RUN_N"
    log "$server  HTTP/1.1  $method  (wrk, ${SECS} s) ..."
    BENCH_BODY=$(body_of "$method") timeout -k 5 20 "${CLI[@]}" wrk -t1 -c32 -d1s \
        -s "$HERE/post.lua" "$url" >/dev/null 2>&1 || true # warm-up
    BENCH_BODY=$(body_of "$method") timeout -k 5 $((SECS + 60)) "${CLI[@]}" wrk -t1 -c32 -d"${SECS}s" \
        --latency -s "$HERE/post.lua" "$url" >"$tag.out" 2>&1 || log "wrk exited with $? (see $tag.out)"
    stats=$("$PY" "$LIB" wrkstats "$tag.out")
    printf '%s\t%s\t%s\t%s\n' "$server" "HTTP/1.1" "$method" "$stats" >>"$TSV"
    log "    $stats"
}

# ------------------------------------------------------------------ servers
start_nginx() { # WORKERS PORT PIN(1/0) -> NGINX_PID
    local workers=$1 port=$2 pin=$3 prefix="$TMP/nginx-$1"
    mkdir -p "$prefix/tmp"
    sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$prefix|g" -e "s|@CERT@|$TMP/ref.crt|g" \
        -e "s|@KEY@|$TMP/ref.key|g" -e "s|@WORKERS@|$workers|g" -e "s|@AUTH@|$NGINX_AUTH|g" \
        "$HERE/nginx.conf.in" >"$prefix/nginx.conf"
    nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" -t >"$prefix/test.log" 2>&1 ||
        die "nginx rejects the generated config: $(cat "$prefix/test.log")"
    if [[ $pin == 1 ]]; then
        "${SRV[@]}" nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' \
            >"$prefix/stdout.log" 2>&1 &
    else
        nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' \
            >"$prefix/stdout.log" 2>&1 &
    fi
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    "$PY" "$LIB" wait "https://127.0.0.1:$port/health" --cacert "$TMP/ref.crt" --deadline 15 \
        --pid "$NGINX_PID" || die "nginx did not start: $(tail -5 "$prefix/error.log" 2>/dev/null)"
}

start_p2p() { # -> P2P_PID
    "${SRV[@]}" "$P2P_BIN" agent --coordinator --node-id bench-node --port "$P2P_PORT" \
        --bind-address 127.0.0.1 --data-dir "$P2P_DATA" "${P2P_FLAGS[@]}" 2>>"$TMP/p2p.log" >&2 &
    P2P_PID=$!
    PIDS+=("$P2P_PID")
    "$PY" "$LIB" wait "https://127.0.0.1:$P2P_PORT/health" --cacert "$P2P_DATA/certs/ca.crt" \
        --deadline 15 --pid "$P2P_PID" || die "p2p did not start; its log:
$(tail -20 "$TMP/p2p.log")"
}

# ------------------------------------------------------------------ p2p: startup time, RSS
P2P_URL="https://127.0.0.1:$P2P_PORT"
if ((HAVE_P2P)); then
    log "p2p: startup time, $STARTUP_RUNS starts with the keys on disk ..."
    "${CLI[@]}" "$PY" "$LIB" startup --runs "$STARTUP_RUNS" --port "$P2P_PORT" --data-dir "$P2P_DATA" \
        --bin "$P2P_BIN" "${SRV_CPU_ARG[@]}" --log "$TMP/p2p.log" --json "$TMP/startup.json" \
        -- "${P2P_FLAGS[@]}" >&2 ||
        die "p2p startup measurement failed; its log:
$(tail -20 "$TMP/p2p.log")"
    meta startup_json "$TMP/startup.json"
    if ! "$PY" -c 'import json,sys; sys.exit(any(c != 0 for c in json.load(open(sys.argv[1]))["exit_codes"]))' \
        "$TMP/startup.json"; then
        note "p2p did not exit with status 0 on SIGTERM: $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["exit_codes"])' "$TMP/startup.json")"
    fi

    log "p2p: starting for the load runs ..."
    start_p2p
    # Does the node's certificate verify for 127.0.0.1 against its own CA (as curl --cacert does)?
    if ! curl -sS -o /dev/null --max-time 5 --cacert "$P2P_DATA/certs/ca.crt" "${AUTH_CURL[@]}" \
        "$P2P_URL/health" 2>"$TMP/verify.err"; then
        note "p2p's certificate does not verify for https://127.0.0.1 with certs/ca.crt: $(head -c 200 "$TMP/verify.err")"
    fi
    sleep 2
    meta p2p_idle_rss_kb "$(vm_kb "$P2P_PID" VmRSS)"
    meta p2p_idle_rss_anon_kb "$(vm_kb "$P2P_PID" RssAnon)"
    meta p2p_idle_rss_file_kb "$(vm_kb "$P2P_PID" RssFile)"
    meta p2p_threads "$(vm_kb "$P2P_PID" Threads)"
    log "p2p idle: VmRSS $(vm_kb "$P2P_PID" VmRSS) kB, threads $(vm_kb "$P2P_PID" Threads)"
    check_rpc p2p "$P2P_URL/rpc" 0 -k
fi

# ------------------------------------------------------------------ references
log "nginx: starting (1 worker) ..."
start_nginx 1 "$NGINX_PORT" 1
NGINX1_PID=$NGINX_PID
NGINX_URL="https://127.0.0.1:$NGINX_PORT"
meta nginx_label "nginx (1 worker)"
nginx_worker=$(pgrep -P "$NGINX1_PID" | head -1 || true)
[[ -n $nginx_worker ]] && meta nginx_idle_rss_kb "$(vm_kb "$nginx_worker" VmRSS)"

log "FastAPI/uvicorn: starting (1 worker) ..."
P2P_BENCH_NODE_ID=bench-ref "${SRV[@]}" "$PY" -m uvicorn --app-dir "$HERE" fastapi_ref:app \
    --host 127.0.0.1 --port "$FA_PORT" --ssl-keyfile "$TMP/ref.key" --ssl-certfile "$TMP/ref.crt" \
    --log-level warning --no-access-log >"$TMP/uvicorn.log" 2>&1 &
FA_PID=$!
PIDS+=("$FA_PID")
FA_URL="https://127.0.0.1:$FA_PORT"
"$PY" "$LIB" wait "$FA_URL/health" --cacert "$TMP/ref.crt" --deadline 30 --pid "$FA_PID" ||
    die "uvicorn did not start: $(tail -20 "$TMP/uvicorn.log")"
sleep 1
meta fastapi_idle_rss_kb "$(vm_kb "$FA_PID" VmRSS)"
check_rpc FastAPI "$FA_URL/rpc" 1 --cacert "$TMP/ref.crt"

if ((HAVE_P2P)); then
    pk=$(awk -F= '$1 == "ping_keys_p2p" { print $2; exit }' "$META")
    fk=$(awk -F= '$1 == "ping_keys_FastAPI" { print $2; exit }' "$META")
    [[ $pk == "$fk" ]] || note "system/ping result keys differ: p2p $pk, FastAPI reference $fk"
fi

# ------------------------------------------------------------------ load
# Anything else burning CPU (a build, a fuzzer) makes every figure below noisy: say so.
check_quiet() { # WHEN
    local busy top
    IFS=$'\t' read -r busy top < <("$PY" "$LIB" busy 1)
    meta "cpu_busy_$1" "$busy"
    if ((busy > 10)); then
        note "machine not idle $1 the load runs: ${busy}% of all CPUs busy in 1 s with the benchmark's servers idle (top: $top); figures are noisy"
    fi
}
check_quiet before
if ((HAVE_P2P)); then
    for m in system/ping system/get_system_info; do
        bench_h2 p2p "$m" "$P2P_URL/rpc"
        bench_h1 p2p "$m" "$P2P_URL/rpc"
    done
    if alive "$P2P_PID"; then
        meta p2p_after_rss_kb "$(vm_kb "$P2P_PID" VmRSS)"
        meta p2p_after_hwm_kb "$(vm_kb "$P2P_PID" VmHWM)"
    else
        note "p2p died during the load runs; last log lines: $(tail -5 "$TMP/p2p.log" | tr '\n' ' ')"
    fi
fi

bench_h2 "nginx (1 worker)" "fixed reply" "$NGINX_URL/rpc"
bench_h1 "nginx (1 worker)" "fixed reply" "$NGINX_URL/rpc"
stop_pid "$NGINX1_PID"
forget_pid "$NGINX1_PID"

if [[ ${BENCH_NGINX_AUTO:-0} == 1 ]]; then
    log "nginx: starting (worker_processes auto, not pinned) ..."
    start_nginx auto "$NGINX_AUTO_PORT" 0
    meta nginx_auto_label "nginx (auto workers)"
    bench_h2 "nginx (auto workers)" "fixed reply" "https://127.0.0.1:$NGINX_AUTO_PORT/rpc"
    bench_h1 "nginx (auto workers)" "fixed reply" "https://127.0.0.1:$NGINX_AUTO_PORT/rpc"
    stop_pid "$NGINX_PID"
    forget_pid "$NGINX_PID"
fi

printf '%s\t%s\t%s\t%s\n' "FastAPI/uvicorn" "HTTP/2" "*" '{"na": "uvicorn has no HTTP/2"}' >>"$TSV"
for m in system/ping system/get_system_info; do
    bench_h1 "FastAPI/uvicorn" "$m" "$FA_URL/rpc"
done

check_quiet after

# Stop the node as an operator would, and time it: after the load tools have gone, no
# request is in flight, so SIGTERM -> exit should be as quick as in the startup runs.
if ((HAVE_P2P)) && alive "$P2P_PID"; then
    t0=$(date +%s%N)
    stop_pid "$P2P_PID" 20
    t1=$(date +%s%N)
    forget_pid "$P2P_PID"
    stop_ms=$(((t1 - t0) / 1000000))
    meta p2p_stop_after_load_ms "$stop_ms"
    meta p2p_stop_after_load_rc "$STOP_RC"
    ((STOP_RC == 0)) || note "p2p exited with status $STOP_RC on SIGTERM after the load runs"
    if ((stop_ms > 1000)); then
        note "p2p took $stop_ms ms to exit on SIGTERM after the load runs although no request was in flight; its log: $(grep -E 'WARN|ERROR' "$TMP/p2p.log" | tail -2 | tr '\n' ' ')"
    fi
fi

# ------------------------------------------------------------------ report
mkdir -p "$RESULTS_DIR"
cp "$TSV" "$RESULTS_DIR/latest.tsv"
echo
rc=0
"$PY" "$LIB" report "$TSV" "$META" >"$TMP/report.txt" || rc=$?
cp "$TMP/report.txt" "$RESULTS_DIR/latest.txt"
cat "$TMP/report.txt"
log "saved to $RESULTS_DIR/latest.txt"
if [[ ${BENCH_SERVICES:-1} == 1 ]] && ((HAVE_P2P)); then
    svc_rc=0
    P2P_BIN="$P2P_BIN" "$PY" "$HERE/services.py" || svc_rc=$?
    if ((svc_rc == 3)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
        rc=3
    elif ((svc_rc)); then
        log "services benchmark exited with status $svc_rc"
    fi
fi
if [[ ${BENCH_LOGS:-1} == 1 ]] && ((HAVE_P2P)); then
    logs_rc=0
    P2P_BIN="$P2P_BIN" "$PY" "$HERE/logs.py" || logs_rc=$?
    if ((logs_rc == 3)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
        rc=3
    elif ((logs_rc)); then
        log "logs benchmark exited with status $logs_rc"
    fi
fi
if [[ ${BENCH_ROLLOUT:-1} == 1 ]] && ((HAVE_P2P)); then
    ro_rc=0
    P2P_BIN="$P2P_BIN" "$PY" "$HERE/rollout.py" || ro_rc=$?
    if ((ro_rc == 3)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then
        rc=3
    elif ((ro_rc)); then
        log "rollout benchmark exited with status $ro_rc"
    fi
fi
if [[ ${BENCH_MEMBERSHIP:-1} == 1 ]]; then "$PY" "$HERE/membership/run.py" --sizes "${BENCH_MEMBERSHIP_SIZES:-50,200,500}" --p2p-bin "$P2P_BIN" --systems "$( ((HAVE_P2P)) && echo serf,p2p || echo serf)" || log "membership benchmark exited with status $?"; fi
if [[ ${BENCH_DASHBOARD_PAGE:-1} == 1 ]] && ((HAVE_P2P)); then
    P2P_BIN="$P2P_BIN" "$PY" "$HERE/dashboard_page.py" || log "dashboard page benchmark exited with status $?"
fi
exit "$rc"
