#!/usr/bin/python3
"""services.py — benchmark of the services platform (issue 10), ratios in one run.

One p2p node with the example services (build/services/hello, C; build/services/pyhello,
Python over the exec protocol) and the FastAPI/Uvicorn reference (fastapi_ref.py, which
serves pyhello/echo as the original would have: a method in the server's own process)
run side by side; the load tools are those of bench/run.sh with the same settings
(h2load -t1 -c16 -m10 over HTTP/2, wrk -t1 -c32 over HTTP/1.1), every request with the
node's bearer token (the reference checks it too). Measured, BENCH_SVC_ROUNDS times,
each round's runs back to back so a ratio compares runs a few seconds apart:

  1. hello/greet (native) vs system/ping (built in), same node, HTTP/2     target >= 0.9
  2. pyhello/echo (exec, Python) on the node vs pyhello/echo on FastAPI    target >= 2
     (Uvicorn has no HTTP/2: p2p over HTTP/2 vs FastAPI over HTTP/1.1, "each at its
     best", and p2p vs FastAPI both over HTTP/1.1 with wrk)
  3. reloads under load, BENCH_SVC_RELOADS of hello (1.0.0 <-> 2.0.0, the test build
     build/test-services/hello-2.0.0) and as many of pyhello (its manifest version
     bumped): the reload time, from the new folder renamed into place to the first
     call answered by the new version, and the calls that failed meanwhile   target 0

Figures per ratio: min / median / max over the rounds (the verdict uses the median).
The table goes to stdout and bench/results/services.txt, everything as JSON to
bench/results/services.json. bench/run.sh runs this after the HTTP benchmark
(BENCH_SERVICES=0 skips it). Environment: P2P_BIN, BENCH_SVC_SECONDS (default
BENCH_SECONDS, else 10), BENCH_SVC_ROUNDS (3), BENCH_SVC_RELOADS (5), BENCH_PIN (1),
BENCH_STRICT (0; 1: exit 3 when a target is not met), BENCH_KEEP_TMP (0).
`services.py --report [FILE]` prints the table again from a saved services.json.
Only the standard library; runs under /usr/bin/python3.
"""

import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
LIB = os.path.join(HERE, "benchlib.py")


def env_int(name, default):
    v = os.environ.get(name, "")
    if v == "":
        return default
    if not v.isdigit() or int(v) < 1:
        die(f"{name} must be a whole number >= 1 (got {v!r})")
    return int(v)


def log(msg):
    print(f"bench/services: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


P2P_BIN = os.environ.get("P2P_BIN") or os.path.join(ROOT, "build", "p2p")
BUILD = os.path.dirname(os.path.abspath(P2P_BIN))
SECS = env_int("BENCH_SVC_SECONDS", env_int("BENCH_SECONDS", 10))
ROUNDS = env_int("BENCH_SVC_ROUNDS", 3)
RELOADS = env_int("BENCH_SVC_RELOADS", 5)
PIN = os.environ.get("BENCH_PIN", "1") == "1" and (os.cpu_count() or 1) >= 2
SRV = ["taskset", "-c", "1"] if PIN else []
CLI = ["taskset", "-c", "0"] if PIN else []
RESULTS = os.path.join(HERE, "results")
TARGET_GREET = 0.9
TARGET_EXEC = 2.0

procs = []  # every process we started, stopped by pid in cleanup()
notes = []


def note(msg):
    notes.append(msg)
    log(f"note: {msg}")


def start(argv, logfile, env=None):
    p = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def stop(p, secs=10):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(secs)
        except subprocess.TimeoutExpired:
            log(f"process {p.pid} ignored SIGTERM for {secs} s: SIGKILL")
            p.kill()
            p.wait()
    if p in procs:
        procs.remove(p)
    return p.returncode


def cleanup():
    for p in list(procs):
        stop(p, 5)


def lib(*args):
    """Runs a benchlib.py sub-command; its stdout (stripped)."""
    r = subprocess.run([PY, LIB, *args], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"benchlib {args[0]} failed: {r.stderr.strip()}")
    return r.stdout.strip()


# ---------------------------------------------------------------- HTTP client

class Client:
    """One keep-alive HTTPS connection (HTTP/1.1) that POSTs JSON-RPC to /rpc."""

    def __init__(self, port, cacert, token, timeout=10.0):
        self.port, self.token, self.timeout = port, token, timeout
        self.ctx = ssl.create_default_context(cafile=cacert) if cacert else ssl._create_unverified_context()
        self.ctx.check_hostname = False
        self.conn = None

    def call(self, method, params=None):
        """POSTs one call on the kept connection; (status, decoded body). Raises on a
        transport failure (the connection is then dropped, the next call opens one)."""
        body = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            body["params"] = params
        hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        if self.conn is None:
            self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                    timeout=self.timeout)
        try:
            self.conn.request("POST", "/rpc", json.dumps(body), hdrs)
            r = self.conn.getresponse()
            raw = r.read()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        return r.status, json.loads(raw) if raw else None

    def result(self, method, params=None):
        """One call on a fresh connection (the server may have closed an idle one);
        its result, or RuntimeError."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        status, body = self.call(method, params)
        if status != 200 or not isinstance(body, dict) or "result" not in body:
            raise RuntimeError(f"{method}: HTTP {status}: {json.dumps(body)[:300]}")
        return body["result"]


# ---------------------------------------------------------------- CPU accounting

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process so far (seconds), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def child_with(pid, needle):
    """The pid of a child of pid whose command line contains needle, or None."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for c in f.read().split():
                    with open(f"/proc/{c}/cmdline", "rb") as g:
                        if needle.encode() in g.read():
                            return int(c)
    except OSError:
        pass
    return None


def with_cpu(watch, fn, *args):
    """Runs fn(*args) (a load run: its figures as a dict) and adds "cpu_us_per_call",
    per watched process: the CPU time it used over the whole run (warm-up included)
    divided by the run's rate times that whole wall time — an estimate of the CPU one
    call costs each process, the same way for every server."""
    before = {k: cpu_seconds(p) for k, p in watch.items()}
    t0 = time.monotonic()
    res = fn(*args)
    wall = time.monotonic() - t0
    calls = (res.get("rps") or 0) * wall
    res["cpu_us_per_call"] = {}
    for k, p in watch.items():
        after = cpu_seconds(p)
        if before[k] is not None and after is not None and calls:
            res["cpu_us_per_call"][k] = round((after - before[k]) / calls * 1e6, 1)
    return res


# ---------------------------------------------------------------- load runs

def body_file(tmp, method, params):
    path = os.path.join(tmp, method.replace("/", "_") + ".json")
    doc = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        doc["params"] = params
    with open(path, "w") as f:
        f.write(json.dumps(doc, separators=(",", ":")))
    return path


def h2load_argv(url, body, token, secs, logfile=None):
    argv = CLI + ["h2load", "-t1", "-c16", "-m10", "-D", str(secs), "--warm-up-time=1", "-d", body,
                  "-H", "content-type: application/json", "-H", f"authorization: Bearer {token}"]
    if logfile:
        argv += ["--log-file", logfile]
    return argv + [url]


def run_h2(tmp, tag, url, body, token):
    out, hlog = os.path.join(tmp, tag + ".out"), os.path.join(tmp, tag + ".h2log")
    with open(out, "w") as f:
        subprocess.run(["timeout", "-k", "5", str(SECS + 60)] + h2load_argv(url, body, token, SECS, hlog),
                       stdout=f, stderr=subprocess.STDOUT)
    res = json.loads(lib("h2stats", out, hlog))
    os.unlink(hlog) if os.path.exists(hlog) else None
    return res


def run_h1(tmp, tag, url, body_text, token):
    out = os.path.join(tmp, tag + ".out")
    env = dict(os.environ, BENCH_BODY=body_text, P2P_BENCH_TOKEN=token)
    wrk = CLI + ["wrk", "-t1", "-c32", "--latency", "-s", os.path.join(HERE, "post.lua")]
    subprocess.run(["timeout", "-k", "5", "20"] + wrk + ["-d1s", url], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm-up
    with open(out, "w") as f:
        subprocess.run(["timeout", "-k", "5", str(SECS + 60)] + wrk + [f"-d{SECS}s", url], env=env,
                       stdout=f, stderr=subprocess.STDOUT)
    return json.loads(lib("wrkstats", out))


def fmt_run(r):
    if r.get("rps") is None:
        return f"no figure ({r.get('note')})"
    s = f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
    if r.get("cpu_us_per_call"):
        s += ", CPU/call " + ", ".join(f"{k} {v:.0f} µs" for k, v in r["cpu_us_per_call"].items())
    if r.get("errors"):
        s += f", {r['errors']} errors"
    if r.get("note"):
        s += f" ({r['note']})"
    return s


# ---------------------------------------------------------------- service folders

def install_folder(sdir, name, src_dir, so=None, version=None):
    """Installs a service folder as an operator or a deploy would (the same steps as
    tests/system/test_services.py install()): files written beside in a hidden folder,
    the old folder renamed away, the new one renamed into place. Returns the
    time.monotonic() right after the new folder is in place."""
    tmp = os.path.join(sdir, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src_dir, tmp)
    if so:
        shutil.copy(so, os.path.join(tmp, "service.so"))
    if version:
        mpath = os.path.join(tmp, "manifest.json")
        with open(mpath) as f:
            m = json.load(f)
        m["version"] = version
        with open(mpath, "w") as f:
            json.dump(m, f)
    dest = os.path.join(sdir, name)
    old = os.path.join(sdir, f".{name}.old")
    if os.path.exists(dest):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(tmp, dest)
        placed = time.monotonic()
        shutil.rmtree(old)
    else:
        os.rename(tmp, dest)
        placed = time.monotonic()
    return placed


def wait_services(cli, names, deadline=20):
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = {s["name"]: s for s in cli.result("services/list")["services"]}
            if all(last.get(n, {}).get("state") == "running" for n in names):
                return last
        except Exception as e:  # noqa: BLE001 - still starting
            last = repr(e)
        time.sleep(0.1)
    die(f"services {names} not running after {deadline} s: {json.dumps(last)[:600] if last else last}")


# ---------------------------------------------------------------- reloads under load

class Probe(threading.Thread):
    """Calls one method back to back on its own connection and keeps, per answer, the
    receive time and the version that answered (or the failure)."""

    def __init__(self, port, cacert, token, method, params):
        super().__init__(daemon=True)
        self.cli = Client(port, cacert, token)
        self.method, self.params = method, params
        self.stop_ev = threading.Event()
        self.answers = []  # (t_recv, version) ; version None = failed
        self.failures = []
        self.lock = threading.Lock()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                status, body = self.cli.call(self.method, self.params)
                ok = status == 200 and isinstance(body, dict) and "result" in body
                ver = body["result"].get("version") if ok else None
                if not ok:
                    self.failures.append(f"HTTP {status}: {json.dumps(body)[:200]}")
            except Exception as e:  # noqa: BLE001 - a transport failure is a failed call too
                ver = None
                self.failures.append(repr(e))
                time.sleep(0.01)
            with self.lock:
                self.answers.append((time.monotonic(), ver))

    def first_since(self, t0, version):
        with self.lock:
            for t, v in self.answers:
                if t >= t0 and v == version:
                    return t
        return None


def reload_phase(tmp, kind, port, cacert, token, sdir, cli):
    """RELOADS reloads of one service under load; returns the phase's figures."""
    if kind == "native":
        name, method, params = "hello", "hello/greet", None
        versions = [("2.0.0", os.path.join(BUILD, "test-services", "hello-2.0.0", "service.so")),
                    ("1.0.0", os.path.join(BUILD, "services", "hello", "service.so"))]
        src = os.path.join(BUILD, "services", "hello")
    else:
        name, method, params = "pyhello", "pyhello/echo", {"msg": "hello"}
        versions = [(f"1.0.{i}", None) for i in range(1, RELOADS + 1)]
        src = os.path.join(BUILD, "services", "pyhello")
    before = {s["name"]: s for s in cli.result("services/list")["services"]}[name]
    gap = 2.0          # load alone before the first reload and between reloads
    budget = 12.0      # the longest a reload may take before it counts as not done
    secs = int(gap + RELOADS * (gap + 1.5) + 3)
    url = f"https://127.0.0.1:{port}/rpc"
    bpath = body_file(tmp, method, params)
    with open(bpath) as f:
        btext = f.read()
    # the load: h2load as in the RPC benchmark (HTTP/2, status only) and wrk with
    # check.lua (HTTP/1.1, 8 connections, every answer's body checked)
    h2out = open(os.path.join(tmp, f"reload-{kind}-h2load.out"), "w")
    h2 = start(["timeout", "-k", "5", str(secs + 120)] + h2load_argv(url, bpath, token, secs), h2out)
    wout = open(os.path.join(tmp, f"reload-{kind}-wrk.out"), "w")
    wrk = start(["timeout", "-k", "5", str(secs + 120)] + CLI +
                ["wrk", "-t1", "-c8", f"-d{secs + 1}s", "-s", os.path.join(HERE, "check.lua"), url], wout,
                env=dict(os.environ, BENCH_BODY=btext, P2P_BENCH_TOKEN=token))
    probe = Probe(port, cacert, token, method, params)
    probe.start()
    t_load = time.monotonic()
    times, not_done = [], 0
    time.sleep(gap + 1)  # + h2load's warm-up second
    for i in range(RELOADS):
        ver, so = versions[i % len(versions)]
        if h2.poll() is not None:
            note(f"{kind} reload {i + 1}: h2load had already finished, the rest ran with less load")
        placed = install_folder(sdir, name, src, so=so, version=ver)
        t_new = None
        end = placed + budget
        while time.monotonic() < end:
            t_new = probe.first_since(placed, ver)
            if t_new:
                break
            time.sleep(0.002)
        if t_new is None:
            not_done += 1
            note(f"{kind} reload {i + 1} to {ver}: no call answered by {ver} within {budget:g} s")
        else:
            times.append((t_new - placed) * 1000.0)
            log(f"  {kind} reload {i + 1} -> {ver}: first call answered by it {times[-1]:.1f} ms after "
                f"the folder was in place")
        time.sleep(gap)
    probe.stop_ev.set()
    probe.join(15)
    for p in (h2, wrk):
        try:
            p.wait(secs + 130 - (time.monotonic() - t_load))
        except subprocess.TimeoutExpired:
            stop(p)
        if p in procs:
            procs.remove(p)
    h2out.close()
    wout.close()
    h2res = json.loads(lib("h2stats", h2out.name, "/nonexistent"))
    chk = {"requests": 0, "ok": 0, "failed": 0, "transport": 0, "samples": []}
    for line in open(wout.name):
        if line.startswith("CHECKSTATS "):
            kv = dict(x.split("=", 1) for x in line.split()[1:])
            chk.update(requests=int(kv["requests"]), ok=int(kv["ok"]), failed=int(kv["failed"]),
                       transport=sum(int(kv[k]) for k in ("err_connect", "err_read", "err_write",
                                                           "err_timeout")))
        elif line.startswith("CHECKFAIL "):
            chk["samples"].append(line.strip())
    if not chk["requests"]:
        note(f"{kind} reloads: wrk printed no CHECKSTATS line (see {wout.name})")
    after = {s["name"]: s for s in cli.result("services/list")["services"]}[name]
    reloads_done = after.get("reloads", 0) - before.get("reloads", 0)
    if reloads_done != RELOADS:
        note(f"{kind}: the node counted {reloads_done} reloads of {name}, {RELOADS} were installed")
    if after.get("reload_failures", 0) != before.get("reload_failures", 0):
        note(f"{kind}: the node reported {after['reload_failures'] - before.get('reload_failures', 0)} failed "
             f"reloads of {name} (last reason: {after.get('reason')})")
    failed = (h2res.get("errors") or 0) + chk["failed"] + chk["transport"] + len(probe.failures)
    for s in chk["samples"][:3] + probe.failures[:3]:
        note(f"{kind} reload: failed call: {s}")
    return {"service": name, "method": method, "reloads": RELOADS, "reloads_done": reloads_done,
            "not_done": not_done, "reload_ms": times, "seconds": secs,
            "h2load": h2res, "checked": chk, "probe_calls": len(probe.answers),
            "probe_failures": len(probe.failures), "failed_calls": failed}


# ---------------------------------------------------------------- report

def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def fmt_spread(s, unit="x", nd=2):
    if not s:
        return "n/a"
    return f"{s['median']:.{nd}f}{unit} (min {s['min']:.{nd}f}, max {s['max']:.{nd}f}, {s['n']} rounds)"


def ratio(a, b):
    if not a or not b or a.get("rps") is None or not b.get("rps"):
        return None
    return a["rps"] / b["rps"]


def report(res):
    L = []
    L.append(f"services benchmark — {res['date']}, {res['pinning']}, {SECS} s per run, {ROUNDS} rounds")
    L.append("")
    L.append(f"{'round':<6} {'server':<16} {'protocol':<9} {'method':<13} {'req/s':>9} {'p50 ms':>7} "
             f"{'p99 ms':>7}  errors")
    for i, rnd in enumerate(res["rounds"], 1):
        for key, server, proto, method in (("ping_h2", "p2p", "HTTP/2", "system/ping"),
                                           ("greet_h2", "p2p", "HTTP/2", "hello/greet"),
                                           ("echo_h2", "p2p", "HTTP/2", "pyhello/echo"),
                                           ("echo_h1", "p2p", "HTTP/1.1", "pyhello/echo"),
                                           ("fa_echo_h1", "FastAPI/uvicorn", "HTTP/1.1", "pyhello/echo")):
            r = rnd[key]
            rps = f"{r['rps']:,.0f}" if r.get("rps") is not None else "n/a"
            p50 = f"{r['p50_ms']:.2f}" if r.get("p50_ms") is not None else "n/a"
            p99 = f"{r['p99_ms']:.2f}" if r.get("p99_ms") is not None else "n/a"
            L.append(f"{i:<6} {server:<16} {proto:<9} {method:<13} {rps:>9} {p50:>7} {p99:>7}  "
                     f"{r.get('errors', 0)}{' ' + r['note'] if r.get('note') else ''}")
    L.append("")
    verdicts = []

    def verdict(label, s, target, errs):
        met = s is not None and s["median"] >= target
        verdicts.append(met)
        v = ("MET" if met else "NOT MET") + (" (runs had errors)" if errs else "")
        L.append(f"  {label:<64} {fmt_spread(s):<40} target >= {target:g}x  {v}")

    def errs(*keys):
        return any(rnd[k].get("errors") for rnd in res["rounds"] for k in keys)

    L.append("ratios (per round, then min / median / max over the rounds):")
    verdict("hello/greet (native) / system/ping, HTTP/2", res["ratios"]["greet_vs_ping_h2"], TARGET_GREET,
            errs("greet_h2", "ping_h2"))
    verdict("pyhello/echo: p2p HTTP/2 / FastAPI HTTP/1.1 (each at its best)",
            res["ratios"]["echo_h2_vs_fastapi_h1"], TARGET_EXEC, errs("echo_h2", "fa_echo_h1"))
    verdict("pyhello/echo: p2p / FastAPI, both HTTP/1.1 (wrk)", res["ratios"]["echo_h1_vs_fastapi_h1"],
            TARGET_EXEC, errs("echo_h1", "fa_echo_h1"))
    # CPU per call: less sensitive to other load on the machine than req/s (a busy
    # neighbour lowers the rate but hardly the CPU one call costs)
    def cpu_total(r):
        c = r.get("cpu_us_per_call") or {}
        return sum(c.values()) if c else None

    vals = []
    for rnd in res["rounds"]:
        g, pg = cpu_total(rnd["greet_h2"]), cpu_total(rnd["ping_h2"])
        vals.append(pg / g if g and pg else None)
    s = spread(vals)
    if s:
        L.append(f"  {'CPU per call: system/ping / hello/greet, HTTP/2':<64} {fmt_spread(s):<40} (for information)")
    for key, label in (("echo_h2", "HTTP/2"), ("echo_h1", "HTTP/1.1")):
        vals = []
        for rnd in res["rounds"]:
            ours, theirs = cpu_total(rnd[key]), cpu_total(rnd["fa_echo_h1"])
            vals.append(theirs / ours if ours and theirs else None)
        s = spread(vals)
        if s:
            L.append(f"  {'pyhello/echo CPU per call: FastAPI / (node + Python), p2p ' + label:<64} "
                     f"{fmt_spread(s):<40} (for information)")
    L.append("")
    L.append(f"reloads under load ({RELOADS} per service; load: h2load -c16 -m10 + wrk -c8 checking every "
             f"answer + one probe connection):")
    for ph in res["reloads"]:
        ms = spread(ph["reload_ms"])
        chk = ph["checked"]
        h2 = ph["h2load"]
        met = ph["failed_calls"] == 0 and ph["not_done"] == 0
        verdicts.append(met)
        L.append(f"  {ph['service']} ({ph['kind']}): reload time {fmt_spread(ms, ' ms', 1)}"
                 .replace("rounds)", "reloads)"))
        L.append(f"    calls during the {ph['seconds']} s phase: h2load {h2.get('ok', 0):,} answered 2xx "
                 f"({h2.get('errors', 0)} failed), wrk {chk['ok']:,} checked ok ({chk['failed']} failed, "
                 f"{chk['transport']} transport errors), probe {ph['probe_calls']:,} "
                 f"({ph['probe_failures']} failed)")
        L.append(f"    failed calls: {ph['failed_calls']}  target 0  {'MET' if met else 'NOT MET'}"
                 + (f"  ({ph['not_done']} reloads not seen)" if ph["not_done"] else ""))
    if res["notes"]:
        L.append("")
        L.append("notes:")
        L.extend(f"  - {n}" for n in res["notes"])
    return "\n".join(L) + "\n", all(verdicts)


# ---------------------------------------------------------------- main

def main():
    missing = [t for t in ("h2load", "wrk", "openssl", "taskset", "timeout") if not shutil.which(t)]
    if missing:
        die(f"missing: {' '.join(missing)} (scripts/install-deps.sh bench)")
    if subprocess.run([PY, "-c", "import fastapi, uvicorn"], capture_output=True).returncode:
        die("missing python3-fastapi/python3-uvicorn for /usr/bin/python3 (scripts/install-deps.sh bench)")
    need = [P2P_BIN, os.path.join(BUILD, "services", "hello", "service.so"),
            os.path.join(BUILD, "services", "pyhello", "main.py"),
            os.path.join(BUILD, "test-services", "hello-2.0.0", "service.so")]
    for f in need:
        if not os.path.exists(f):
            die(f"{f} not found, build first (make build)")

    tmp = tempfile.mkdtemp(prefix="p2p-bench-svc.")
    try:
        run(tmp)
    finally:
        cleanup()
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "seconds": SECS, "rounds": [], "reloads": [],
           "notes": notes,
           "pinning": ("servers on CPU 1 (the node and its Python child share it), load tools on CPU 0"
                       if PIN else "not pinned")}
    p2p_port, fa_port = (int(x) for x in lib("freeports", "2").split())
    data, sdir = os.path.join(tmp, "p2p-data"), os.path.join(tmp, "services")
    os.makedirs(sdir)
    install_folder(sdir, "hello", os.path.join(BUILD, "services", "hello"))
    install_folder(sdir, "pyhello", os.path.join(BUILD, "services", "pyhello"))
    key, cert = os.path.join(tmp, "ref.key"), os.path.join(tmp, "ref.crt")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
                       capture_output=True)
    if r.returncode:
        die("openssl could not make the reference certificate")

    env = dict(os.environ)
    env.setdefault("P2P_VAULT_PASSWORD", "bench-" + os.urandom(8).hex())
    admin = os.path.join(tmp, "admin.key")
    flags = os.environ.get("BENCH_P2P_FLAGS", "--access-log false --rate-limit-enabled false").split()
    log("p2p: starting with hello and pyhello in its services directory ...")
    nlog = open(os.path.join(tmp, "p2p.log"), "w")
    node = start(SRV + [P2P_BIN, "agent", "--coordinator", "--node-id", "bench-node", "--port", str(p2p_port),
                        "--bind-address", "127.0.0.1", "--data-dir", data, "--services-directory", sdir,
                        "--admin-api-key-file", admin] + flags, nlog, env=env)
    cacert = os.path.join(data, "certs", "ca.crt")
    lib("wait", f"https://127.0.0.1:{p2p_port}/health", "--cacert", cacert, "--deadline", "30",
        "--pid", str(node.pid))
    ctx = ssl.create_default_context(cafile=cacert)
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", p2p_port, context=ctx, timeout=10)
    with open(admin) as f:
        api_key = f.readline().strip()
    conn.request("POST", "/auth/token", json.dumps({"api_key": api_key}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        die(f"could not get a token from p2p: HTTP {resp.status}")
    token = json.loads(resp.read())["token"]
    conn.close()
    cli = Client(p2p_port, cacert, token)
    wait_services(cli, ["hello", "pyhello"])

    log("FastAPI/uvicorn: starting (1 worker) with pyhello/echo ...")
    falog = open(os.path.join(tmp, "uvicorn.log"), "w")
    fa = start(SRV + [PY, "-m", "uvicorn", "--app-dir", HERE, "fastapi_ref:app", "--host", "127.0.0.1",
                      "--port", str(fa_port), "--ssl-keyfile", key, "--ssl-certfile", cert,
                      "--log-level", "warning", "--no-access-log"], falog,
               env=dict(os.environ, P2P_BENCH_NODE_ID="bench-node", P2P_BENCH_TOKEN=token))
    lib("wait", f"https://127.0.0.1:{fa_port}/health", "--cacert", cert, "--deadline", "30", "--pid", str(fa.pid))

    # Functional check: both serve the same answer to the same request.
    params = {"msg": "hello"}
    got_p2p = cli.result("pyhello/echo", params)
    got_fa = Client(fa_port, cert, token).result("pyhello/echo", params)
    if got_p2p != got_fa:
        note(f"pyhello/echo answers differ: p2p {json.dumps(got_p2p)}, FastAPI {json.dumps(got_fa)}")
    greet = cli.result("hello/greet")
    if greet.get("version") != "1.0.0":
        note(f"hello/greet answered {greet}")
    log(f"check: pyhello/echo -> {json.dumps(got_p2p)} on both; hello/greet -> {json.dumps(greet)}")

    busy, _, top = lib("busy", "1").partition("\t")
    res["cpu_busy_before"] = int(busy)
    if int(busy) > 10:
        note(f"machine not idle before the load runs: {busy}% of all CPUs busy in 1 s with the servers idle "
             f"(top: {top}); figures are noisy")

    p2p_url, fa_url = f"https://127.0.0.1:{p2p_port}/rpc", f"https://127.0.0.1:{fa_port}/rpc"
    bodies = {m: body_file(tmp, m, p) for m, p in (("system/ping", None), ("hello/greet", None),
                                                   ("pyhello/echo", params))}
    with open(bodies["pyhello/echo"]) as f:
        echo_text = f.read()
    # the CPU each call costs the node and the Python process (the trampoline exec'd
    # python3 in its own pid, a child of the node)
    py_pid = child_with(node.pid, "main.py")
    if py_pid is None:
        note("pyhello's Python process not found among the node's children: no CPU figures for it")
    watch_p2p = {"node": node.pid, **({"pyhello": py_pid} if py_pid else {})}
    n = 0
    for rnd in range(ROUNDS):
        log(f"round {rnd + 1}/{ROUNDS} ...")
        out = {}
        # alternate the order in each pair from round to round, so a drift of the
        # machine's speed does not always favour the same side
        pair1 = [("ping_h2", "system/ping"), ("greet_h2", "hello/greet")]
        pair2 = ["p2p", "fa"]
        if rnd % 2:
            pair1.reverse()
            pair2.reverse()
        for key, m in pair1:
            n += 1
            out[key] = with_cpu({"node": node.pid}, run_h2, tmp, f"run{n}", p2p_url, bodies[m], token)
            log(f"  p2p HTTP/2 {m}: {fmt_run(out[key])}")
        for side in pair2:
            if side == "p2p":
                n += 1
                out["echo_h2"] = with_cpu(watch_p2p, run_h2, tmp, f"run{n}", p2p_url, bodies["pyhello/echo"],
                                          token)
                log(f"  p2p HTTP/2 pyhello/echo: {fmt_run(out['echo_h2'])}")
                n += 1
                out["echo_h1"] = with_cpu(watch_p2p, run_h1, tmp, f"run{n}", p2p_url, echo_text, token)
                log(f"  p2p HTTP/1.1 pyhello/echo: {fmt_run(out['echo_h1'])}")
            else:
                n += 1
                out["fa_echo_h1"] = with_cpu({"uvicorn": fa.pid}, run_h1, tmp, f"run{n}", fa_url, echo_text,
                                             token)
                log(f"  FastAPI HTTP/1.1 pyhello/echo: {fmt_run(out['fa_echo_h1'])}")
        out["greet_vs_ping_h2"] = ratio(out["greet_h2"], out["ping_h2"])
        out["echo_h2_vs_fastapi_h1"] = ratio(out["echo_h2"], out["fa_echo_h1"])
        out["echo_h1_vs_fastapi_h1"] = ratio(out["echo_h1"], out["fa_echo_h1"])
        res["rounds"].append(out)
        if node.poll() is not None:
            die(f"p2p exited during the load runs (status {node.returncode}); see its log")
    res["ratios"] = {k: spread([r[k] for r in res["rounds"]])
                     for k in ("greet_vs_ping_h2", "echo_h2_vs_fastapi_h1", "echo_h1_vs_fastapi_h1")}
    stop(fa)

    for kind in ("native", "exec"):
        log(f"{RELOADS} reloads of the {kind} service under load ...")
        ph = reload_phase(tmp, kind, p2p_port, cacert, token, sdir, cli)
        ph["kind"] = kind
        res["reloads"].append(ph)
        if node.poll() is not None:
            die(f"p2p exited during the reloads (status {node.returncode})")

    rc = stop(node, 20)
    if rc != 0:
        note(f"p2p exited with status {rc} on SIGTERM")
    text, all_met = report(res)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "services.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "services.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(text, end="")
    log(f"saved to {RESULTS}/services.txt and services.json")
    if os.environ.get("BENCH_STRICT") == "1" and not all_met:
        sys.exit(3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:  # print the table again from a saved services.json
        with open(sys.argv[2] if len(sys.argv) > 2 else os.path.join(RESULTS, "services.json")) as f:
            saved = json.load(f)
        SECS, ROUNDS, RELOADS = saved["seconds"], len(saved["rounds"]), saved["reloads"][0]["reloads"]
        notes[:] = saved["notes"]
        print(report(saved)[0], end="")
        sys.exit(0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        cleanup()
        sys.exit(130)
