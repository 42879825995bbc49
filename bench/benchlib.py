#!/usr/bin/python3
"""benchlib.py — the small measuring and reporting steps of bench/run.sh.

run.sh does the process plumbing in bash; everything that needs a clock, a
parser or arithmetic is here, as sub-commands:

  freeports N                      N ports free on 127.0.0.1 for TCP and UDP (p2p gossips
                                   on UDP with the same port number)
  wait URL --deadline S [--pid P] [--cacert F]
                                   poll GET URL until it answers 200 (bounded; fails early
                                   if process P exits)
  startup --runs N --port P --data-dir D --bin B [--cpu C] [--json OUT] [-- AGENT-FLAGS]
                                   exec `p2p agent` N times; each time measure exec -> first
                                   200 from /health (poll every 2 ms, time.monotonic),
                                   then SIGTERM -> exit; median/min/max
  h2stats OUT LOG                  parse an h2load run: req/s (2xx only), p50/p99 from
                                   its --log-file per-request times, failures
  wrkstats OUT                     parse a wrk run (the WRKSTATS line post.lua prints)
  busy [SECONDS]                   % of all CPUs busy (is something else running?)
  checkrpc FILE|- [--error CODE]   validate a JSON-RPC 2.0 response to id 1
  report TSV META                  print the table, ratios and targets

Only the standard library is used, and it runs under /usr/bin/python3.
"""

import http.client
import json
import math
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

# ---------------------------------------------------------------- helpers


def die(msg):
    print(f"benchlib: {msg}", file=sys.stderr)
    sys.exit(1)


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            die(f"{name} needs a value")
        return args[i + 1]
    return default


def ssl_ctx(cacert=None):
    """A client context: verify against cacert when given (chain only: the
    hostname check is separate, run.sh reports it), else no verification."""
    if cacert and os.path.exists(cacert):
        ctx = ssl.create_default_context(cafile=cacert)
        ctx.check_hostname = False
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def auth_headers():
    tok = os.environ.get("P2P_BENCH_TOKEN")
    return {"Authorization": f"Bearer {tok}"} if tok else {}


def get_status(host, port, path, ctx, timeout=1.0):
    """One GET over a fresh TLS connection; the status, or None if it failed."""
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path, headers=auth_headers())
        r = conn.getresponse()
        r.read()
        return r.status
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def pct(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


# ---------------------------------------------------------------- freeports


def cmd_freeports(args):
    n = int(args[0]) if args else 1
    held, ports = [], []
    tries = 0
    while len(ports) < n:
        tries += 1
        if tries > 200:
            die("could not find free ports")
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            u.close()
            continue
        held += [t, u]
        ports.append(port)
    for s in held:
        s.close()
    print(" ".join(map(str, ports)))


# ---------------------------------------------------------------- wait


def cmd_wait(args):
    url = args[0]
    deadline = float(opt(args, "--deadline", "20"))
    pid = opt(args, "--pid")
    ctx = ssl_ctx(opt(args, "--cacert"))
    if not url.startswith("https://"):
        die("wait: https URL expected")
    hostport, _, path = url[len("https://"):].partition("/")
    host, _, port = hostport.rpartition(":")
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        last = get_status(host, int(port), "/" + path, ctx)
        if last == 200:
            return
        if pid:
            try:
                os.kill(int(pid), 0)
                # a zombie still answers kill(0): look at its state
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        die(f"process {pid} exited before {url} answered")
            except (ProcessLookupError, FileNotFoundError):
                die(f"process {pid} exited before {url} answered")
        time.sleep(0.05)
    die(f"{url} not ready after {deadline:g} s (last status: {last})")


# ---------------------------------------------------------------- startup


def cmd_startup(args):
    extra = []
    if "--" in args:  # everything after -- goes to `p2p agent` as is
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    runs = int(opt(args, "--runs", "5"))
    port = int(opt(args, "--port"))
    data_dir = opt(args, "--data-dir")
    binary = opt(args, "--bin")
    cpu = opt(args, "--cpu")
    log = opt(args, "--log", os.devnull)
    out_json = opt(args, "--json")
    deadline = float(opt(args, "--deadline", "10"))
    cmd = [binary, "agent", "--coordinator", "--node-id", "bench-node", "--port", str(port),
           "--bind-address", "127.0.0.1", "--data-dir", data_dir] + extra
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    ca = os.path.join(data_dir, "certs", "ca.crt")
    starts, stops, codes = [], [], []
    with open(log, "ab") as logf:
        for i in range(runs):
            ctx = ssl_ctx(ca)  # before exec: not part of the measured time
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
            ok = False
            try:
                while time.monotonic() - t0 < deadline:
                    if get_status("127.0.0.1", port, "/health", ctx, timeout=1.0) == 200:
                        ok = True
                        break
                    if proc.poll() is not None:
                        break
                    time.sleep(0.002)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            t1 = time.monotonic()
            if not ok:
                rc = proc.poll()
                if rc is None:
                    proc.kill()
                    proc.wait()
                die(f"startup run {i + 1}: no 200 from /health "
                    + (f"(process exited with {rc})" if rc is not None else f"within {deadline:g} s"))
            starts.append((t1 - t0) * 1000.0)
            s0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "killed after 10 s"
                proc.wait()
            stops.append((time.monotonic() - s0) * 1000.0)
            codes.append(rc)
    res = {
        "runs": runs,
        "startup_ms": starts,
        "startup_median_ms": statistics.median(starts),
        "startup_min_ms": min(starts),
        "startup_max_ms": max(starts),
        "stop_ms": stops,
        "stop_median_ms": statistics.median(stops),
        "exit_codes": codes,
    }
    if out_json:
        with open(out_json, "w") as f:
            json.dump(res, f)
    print(f"startup ms: {', '.join(f'{x:.1f}' for x in starts)} (median {res['startup_median_ms']:.1f}); "
          f"SIGTERM->exit ms: {', '.join(f'{x:.1f}' for x in stops)}; exit codes: {codes}")


# ---------------------------------------------------------------- h2load / wrk parsing


def cmd_h2stats(args):
    out_path, log_path = args[0], args[1]
    text = open(out_path).read()
    res = {"tool": "h2load", "rps": None, "p50_ms": None, "p99_ms": None, "ok": 0, "errors": 0,
           "note": ""}
    reported_rps = None
    done = None
    proto = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("finished in"):
            # "finished in 4.00s, 12345.60 req/s, 1.23MB/s": with --warm-up-time the elapsed
            # time includes the warm-up, but req/s is over the measured (-D) phase only.
            reported_rps = float(line.split(",")[1].split()[0])
        elif line.startswith("requests:"):
            # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
            parts = line[len("requests:"):].split(",")
            fields = {p.split()[1]: int(p.split()[0]) for p in parts}
            done = fields.get("done", 0)
            res["errors"] += fields.get("failed", 0) + fields.get("errored", 0) + fields.get("timeout", 0)
        elif line.startswith("status codes:"):
            parts = line[len("status codes:"):].split(",")
            codes = {p.split()[1]: int(p.split()[0]) for p in parts}
            res["ok"] = codes.get("2xx", 0)
            res["errors"] += codes.get("3xx", 0) + codes.get("4xx", 0) + codes.get("5xx", 0)
        elif line.startswith("Application protocol:"):
            proto = line.split(":", 1)[1].strip()
    if reported_rps is None or not done:
        res["note"] = "h2load produced no summary" if reported_rps is None else "no request completed"
        print(json.dumps(res))
        return
    if proto != "h2":
        res["note"] = f"negotiated {proto!r}, not h2"
    # h2load's status-code tally can run one ahead of "done"; count 2xx among done only.
    res["ok"] = min(res["ok"], done)
    res["rps"] = reported_rps * res["ok"] / done
    durs = []
    try:
        with open(log_path) as f:
            for line in f:
                p = line.split("\t")
                if len(p) >= 3 and p[1].startswith("2"):
                    durs.append(int(p[2]))
    except FileNotFoundError:
        pass
    if durs:
        durs.sort()
        res["p50_ms"] = pct(durs, 50) / 1000.0
        res["p99_ms"] = pct(durs, 99) / 1000.0
        res["logged"] = len(durs)
    print(json.dumps(res))


def cmd_wrkstats(args):
    text = open(args[0]).read()
    res = {"tool": "wrk", "rps": None, "p50_ms": None, "p99_ms": None, "ok": 0, "errors": 0,
           "note": ""}
    for line in text.splitlines():
        if line.startswith("WRKSTATS "):
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            reqs = int(kv["requests"])
            dur_s = int(kv["duration_us"]) / 1e6
            status_err = int(kv["err_status"])
            sock_err = sum(int(kv[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
            res["ok"] = reqs - status_err
            res["errors"] = status_err + sock_err
            res["rps"] = res["ok"] / dur_s if dur_s > 0 else None
            res["p50_ms"] = int(kv["p50_us"]) / 1000.0
            res["p99_ms"] = int(kv["p99_us"]) / 1000.0
    if res["rps"] is None:
        res["note"] = "wrk produced no WRKSTATS line"
    print(json.dumps(res))


# ---------------------------------------------------------------- busy


def cmd_busy(args):
    """Percent of all CPUs busy over SECONDS (default 1), from /proc/stat, then the
    three processes that used the most CPU in that interval (from /proc/PID/stat)."""
    secs = float(args[0]) if args else 1.0

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]), idle, (v[7] if len(v) > 7 else 0)

    def procs():
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    raw = f.read()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2:].split()
            out[pid] = (comm, int(rest[11]) + int(rest[12]))  # utime + stime, in ticks
        return out

    t0, i0, s0 = sample()
    p0 = procs()
    time.sleep(secs)
    t1, i1, s1 = sample()
    p1 = procs()
    total = max(1, t1 - t0)
    busy = 100.0 * (1 - (i1 - i0) / total)
    steal = 100.0 * (s1 - s0) / total
    hz = os.sysconf("SC_CLK_TCK")
    used = sorted(((p1[p][1] - p0[p][1], p1[p][0], p) for p in p1 if p in p0), reverse=True)
    seen = sum(t for t, _, _ in used)
    top = ", ".join(f"{comm}[{pid}] {100.0 * ticks / hz / secs:.0f}% of a CPU"
                    for ticks, comm, pid in used[:3] if ticks > 0)
    # processes that started and ended inside the interval (a build's compilers) are invisible here
    ncpu = os.cpu_count() or 1
    unseen = busy - steal - 100.0 * seen / hz / secs / ncpu
    extra = []
    if unseen > 10:
        extra.append(f"~{unseen:.0f}% by short-lived processes (a build?)")
    if steal > 5:
        extra.append(f"{steal:.0f}% stolen by the hypervisor")
    print(f"{busy:.0f}\t{'; '.join(filter(None, [top] + extra)) or '-'}")


# ---------------------------------------------------------------- checkrpc


def cmd_checkrpc(args):
    """Validate one JSON-RPC 2.0 response (file, or - for stdin) to id 1: print the
    result's keys, or say what is wrong and exit 1. --error CODE expects that error."""
    path = args[0]
    want_err = opt(args, "--error")
    raw = sys.stdin.read() if path == "-" else open(path).read()
    try:
        doc = json.loads(raw)
    except ValueError:
        print(f"not JSON: {raw[:200]!r}")
        sys.exit(1)
    probs = []
    if not isinstance(doc, dict):
        print(f"not a JSON object: {raw[:200]!r}")
        sys.exit(1)
    if doc.get("jsonrpc") != "2.0":
        probs.append(f"jsonrpc member is {doc.get('jsonrpc')!r}")
    if doc.get("id") != 1:
        probs.append(f"id is {doc.get('id')!r}, sent 1")
    if want_err is not None:
        err = doc.get("error")
        if not isinstance(err, dict) or err.get("code") != int(want_err):
            probs.append(f"expected error {want_err}, got {raw[:200]!r}")
        if "result" in doc:
            probs.append("has both result and error")
        if probs:
            print("; ".join(probs))
            sys.exit(1)
        print(f"error {want_err} ok")
        return
    if "error" in doc:
        probs.append(f"error: {doc['error']!r}")
    if "result" not in doc:
        probs.append("no result member")
    if probs:
        print("; ".join(probs))
        sys.exit(1)
    res = doc["result"]
    keys = sorted(res.keys()) if isinstance(res, dict) else type(res).__name__
    print(f"ok, {len(raw)} bytes, result keys: {keys}")


# ---------------------------------------------------------------- report

ORIGINAL = {"system/ping": 2363.0, "system/get_system_info": 1348.0}
TARGETS = {
    "fastapi": 20.0,
    "nginx_h1": 0.8,
    "nginx_h2": 1.0,
    "rss_kb": 8 * 1024,
    "startup_ms": 100.0,
}


def fmt_num(x, nd=0):
    if x is None:
        return "n/a"
    return f"{x:,.{nd}f}"


def cmd_report(args):
    tsv, meta_path = args[0], args[1]
    meta = {}
    if os.path.exists(meta_path):
        for line in open(meta_path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    rows = []  # (server, proto, method, stats)
    if os.path.exists(tsv):
        for line in open(tsv):
            if not line.strip():
                continue
            server, proto, method, js = line.rstrip("\n").split("\t", 3)
            rows.append((server, proto, method, json.loads(js)))

    def get(server, proto, method):
        for s, p, m, st in rows:
            if s == server and p == proto and m == method:
                return st
        return None

    out = []
    w = out.append
    secs = meta.get("seconds", "?")
    w(f"p2p HTTP/RPC benchmark — {meta.get('date', '')}")
    w(f"host: {meta.get('host', '')}")
    w(f"load: h2load -t1 -c16 -m10 (HTTP/2, 160 streams in flight), "
      f"wrk -t1 -c32 (HTTP/1.1 keep-alive); {secs} s per run after a 1 s warm-up; TLS everywhere")
    w(f"cpu:  {meta.get('pinning', '')}")
    w(f"nginx: {meta.get('nginx_workers', '1')} worker process; uvicorn: 1 worker, "
      f"{meta.get('uvicorn_stack', '')}, no HTTP/2 support (its HTTP/2 cells are n/a)")
    if meta.get("p2p_flags"):
        w(f"p2p:  p2p agent --coordinator ... {meta['p2p_flags']}"
          + (f" ({meta['p2p_key']})" if meta.get("p2p_key") else ""))
    if meta.get("auth"):
        w(f"auth: {meta['auth']}")
    w("")
    hdr = f"{'server':<22} {'protocol':<9} {'method':<24} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    w(hdr)
    w("-" * len(hdr))
    order = []
    for s, p, m, st in rows:
        if s not in order:
            order.append(s)
    for s in order:
        for s2, p, m, st in rows:
            if s2 != s:
                continue
            if st.get("na"):
                w(f"{s:<22} {p:<9} {m:<24} {'n/a':>10} {'n/a':>8} {'n/a':>8} {'':>7}  ({st['na']})")
                continue
            note = f"  ({st['note']})" if st.get("note") else ""
            w(f"{s:<22} {p:<9} {m:<24} {fmt_num(st.get('rps')):>10} {fmt_num(st.get('p50_ms'), 2):>8} "
              f"{fmt_num(st.get('p99_ms'), 2):>8} {st.get('errors', 0):>7}{note}")
    w("")

    verdicts = []

    def ratio_line(label, num, den, target):
        if num is None or den is None or not num.get("rps") or not den.get("rps"):
            w(f"{label:<58} {'n/a':>9}   target >= {target:g}x   SKIPPED")
            return
        r = num["rps"] / den["rps"]
        ok = r >= target
        tainted = (num.get("errors", 0) or den.get("errors", 0))
        verdict = ("MET" if ok else "NOT MET") + (" (runs had errors)" if tainted else "")
        verdicts.append(ok)
        w(f"{label:<58} {r:>8.2f}x   target >= {target:g}x   {verdict}")

    P2P, NGX, FA = "p2p", meta.get("nginx_label", "nginx (1 worker)"), "FastAPI/uvicorn"
    w("targets")
    w("-------")
    ratio_line("p2p / FastAPI   system/ping             HTTP/1.1",
               get(P2P, "HTTP/1.1", "system/ping"), get(FA, "HTTP/1.1", "system/ping"), TARGETS["fastapi"])
    ratio_line("p2p / FastAPI   system/get_system_info  HTTP/1.1",
               get(P2P, "HTTP/1.1", "system/get_system_info"), get(FA, "HTTP/1.1", "system/get_system_info"),
               TARGETS["fastapi"])
    ratio_line("p2p / nginx     HTTP/1.1 (ping vs fixed reply)",
               get(P2P, "HTTP/1.1", "system/ping"), get(NGX, "HTTP/1.1", "fixed reply"), TARGETS["nginx_h1"])
    ratio_line("p2p / nginx     HTTP/2   (ping vs fixed reply)",
               get(P2P, "HTTP/2", "system/ping"), get(NGX, "HTTP/2", "fixed reply"), TARGETS["nginx_h2"])

    rss = meta.get("p2p_idle_rss_kb")
    if rss:
        rss = int(rss)
        ok = rss <= TARGETS["rss_kb"]
        verdicts.append(ok)
        w(f"{'p2p idle RSS (VmRSS, up and idle 2 s)':<58} {rss / 1024:>6.2f} MiB  target <= 8 MiB   "
          f"{'MET' if ok else 'NOT MET'}")
    else:
        w(f"{'p2p idle RSS':<58} {'n/a':>9}   target <= 8 MiB   SKIPPED")
    st_path = meta.get("startup_json")
    if st_path and os.path.exists(st_path):
        st = json.load(open(st_path))
        med = st["startup_median_ms"]
        ok = med <= TARGETS["startup_ms"]
        verdicts.append(ok)
        w(f"{'p2p startup, exec -> first 200 /health (median of ' + str(st['runs']) + ')':<58} "
          f"{med:>6.1f} ms   target <= 100 ms  {'MET' if ok else 'NOT MET'}")
    else:
        w(f"{'p2p startup':<58} {'n/a':>9}   target <= 100 ms  SKIPPED")
    w("")

    w("more figures (information, no target)")
    w("--------------------------------------")
    for m in ("system/ping", "system/get_system_info"):
        a, b = get(P2P, "HTTP/2", m), get(FA, "HTTP/1.1", m)
        if a and b and a.get("rps") and b.get("rps"):
            w(f"  p2p HTTP/2 / FastAPI HTTP/1.1 ({m}, each at its best): {a['rps'] / b['rps']:.1f}x")
    auto = meta.get("nginx_auto_label")
    if auto:
        for proto in ("HTTP/1.1", "HTTP/2"):
            a, b = get(P2P, proto, "system/ping"), get(auto, proto, "fixed reply")
            if a and b and a.get("rps") and b.get("rps"):
                w(f"  p2p / {auto} {proto}: {a['rps'] / b['rps']:.2f}x")
    if st_path and os.path.exists(st_path):
        st = json.load(open(st_path))
        w(f"  startup runs (ms): {', '.join(f'{x:.1f}' for x in st['startup_ms'])}; "
          f"SIGTERM -> exit (ms): {', '.join(f'{x:.1f}' for x in st['stop_ms'])}; exit codes: {st['exit_codes']}")
    if meta.get("first_start_ms"):
        w(f"  first start on an empty data dir (creates CA + node key/cert): {float(meta['first_start_ms']):.1f} ms")
    if meta.get("p2p_idle_rss_anon_kb"):
        w(f"  p2p idle RSS split: anonymous {int(meta['p2p_idle_rss_anon_kb']) / 1024:.2f} MiB, "
          f"file-backed (binary, libssl/libcrypto, ...) {int(meta.get('p2p_idle_rss_file_kb', 0)) / 1024:.2f} MiB")
    if meta.get("p2p_threads"):
        w(f"  p2p threads when idle: {meta['p2p_threads']}")
    if meta.get("p2p_after_rss_kb"):
        w(f"  p2p after the load runs: VmRSS {int(meta['p2p_after_rss_kb']) / 1024:.2f} MiB, "
          f"VmHWM {int(meta.get('p2p_after_hwm_kb', 0)) / 1024:.2f} MiB")
    if meta.get("p2p_stop_after_load_ms"):
        w(f"  p2p SIGTERM -> exit after the load runs: {int(meta['p2p_stop_after_load_ms'])} ms "
          f"(exit status {meta.get('p2p_stop_after_load_rc', '?')})")
    if meta.get("fastapi_idle_rss_kb"):
        w(f"  FastAPI/uvicorn idle RSS: {int(meta['fastapi_idle_rss_kb']) / 1024:.1f} MiB; "
          f"nginx worker idle RSS: {int(meta.get('nginx_idle_rss_kb', 0)) / 1024:.1f} MiB")
    w("")
    w("FastAPI reference here vs the original framework's published figures (same machine)")
    for m in ("system/ping", "system/get_system_info"):
        b = get(FA, "HTTP/1.1", m)
        orig = ORIGINAL[m]
        label = "cheapest method" if m == "system/ping" else m
        if b and b.get("rps"):
            p = get(P2P, "HTTP/1.1", m)
            extra = f"; p2p HTTP/1.1 / original = {p['rps'] / orig:.1f}x" if p and p.get("rps") else ""
            w(f"  {m:<24} reference {b['rps']:>9,.0f} req/s   original {orig:>7,.0f} req/s ({label})   "
              f"reference/original = {b['rps'] / orig:.2f}{extra}")
        else:
            w(f"  {m:<24} reference n/a   original {orig:,.0f} req/s ({label})")
    notes = [v for k, v in sorted(meta.items()) if k.startswith("note")]
    if notes:
        w("")
        w("notes")
        w("-----")
        for n in notes:
            w(f"  - {n}")
    if verdicts:
        w("")
        w(f"summary: {sum(verdicts)}/{len(verdicts)} targets met")
    print("\n".join(out))
    if os.environ.get("BENCH_STRICT") == "1" and not all(verdicts):
        sys.exit(3)


def main():
    if len(sys.argv) < 2:
        die("usage: benchlib.py freeports|wait|startup|h2stats|wrkstats|report ...")
    cmds = {
        "freeports": cmd_freeports,
        "wait": cmd_wait,
        "startup": cmd_startup,
        "h2stats": cmd_h2stats,
        "wrkstats": cmd_wrkstats,
        "report": cmd_report,
        "checkrpc": cmd_checkrpc,
        "busy": cmd_busy,
    }
    fn = cmds.get(sys.argv[1])
    if fn is None:
        die(f"unknown command {sys.argv[1]}")
    fn(sys.argv[2:])


if __name__ == "__main__":
    main()
