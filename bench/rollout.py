#!/usr/bin/python3
"""rollout.py — time to roll a service out to N workers and to revert it, with calls running.

Starts a coordinator and N workers (build/p2p, one process each, 127.0.0.1), the workers
enrolled at their first boot with one join token of N uses, each with the example service
hello 1.0.0 (build/services/hello) in its services folder. Then, while CALL_THREADS threads
call hello/greet on the workers round-robin (HTTPS keep-alive, admin token), it

  1. builds hello 1.1.0 (the same service.so, manifest version 1.1.0), has the coordinator
     sign it, and times `p2p deploy FILE --target all:worker --max-parallel P
     --min-healthy-time S` (upload + rollout, until the rollout is `done`);
  2. times `p2p rollout revert ID` until the rollout is `reverted` (every worker back on
     1.0.0, each waiting for the old version to run);
  3. counts failed calls (anything but a JSON-RPC result) during each phase, and the bytes
     the coordinator sent per node for the package (its access log: the GET
     /deploy/packages/SHA lines), checks the versions on every worker after each step.

    bench/rollout.py [--workers 50] [--max-parallel 10] [--min-healthy-time 1]

Prints a table and writes it to bench/results/rollout.txt. Stops what it started (by PID)
and removes its temp dir. Standard library only; runs under /usr/bin/python3.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-rollout-vault-password"


def log(msg):
    print(f"rollout-bench: {msg}", file=sys.stderr, flush=True)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Bench:
    def __init__(self, a):
        self.a = a
        self.bin = str(Path(a.p2p).resolve())
        self.tmp = tempfile.mkdtemp(prefix="p2p-bench-rollout.")
        self.procs = []
        self.ports = free_ports(a.workers + 1)
        self.keyfile = os.path.join(self.tmp, "admin.key")
        self.cdir = os.path.join(self.tmp, "c0")
        self.ca = os.path.join(self.cdir, "certs", "ca.crt")
        self.env = dict(os.environ, P2P_VAULT_PASSWORD=PASSWORD)
        self.env.pop("P2P_JOIN_TOKEN", None)
        self.ctx = None
        self.token = None

    # ---- processes
    def spawn(self, name, argv, env):
        out = open(os.path.join(self.tmp, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        p.name = name
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        killed = 0
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                killed += 1
        return killed

    def cleanup(self):
        self.stop_all()
        if self.a.keep_tmp:
            log(f"temp dir kept: {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def cli(self, *argv, timeout=60):
        r = subprocess.run([self.bin, *argv], capture_output=True, text=True, timeout=timeout, env=self.env)
        if r.returncode != 0:
            raise RuntimeError(f"p2p {' '.join(argv[:2])} failed ({r.returncode}): {(r.stderr or r.stdout)[-400:]}")
        return r.stdout

    def conn_args(self):
        return ["--addr", f"127.0.0.1:{self.ports[0]}", "--ca", self.ca]

    # ---- HTTPS
    def https(self, port, method, path, body=None, timeout=5, conn=None):
        c = conn or http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx, timeout=timeout)
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def rpc(self, port, method, params=None, timeout=10):
        st, data = self.https(port, "POST", "/rpc", json.dumps({"jsonrpc": "2.0", "method": method,
                                                                "params": params or {}, "id": 1}), timeout)
        if st != 200:
            raise RuntimeError(f"{method}: HTTP {st}")
        d = json.loads(data)
        if "result" not in d:
            raise RuntimeError(f"{method}: {d.get('error')}")
        return d["result"]

    def wait_health(self, port, proc, deadline):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if self.ctx is None and os.path.exists(self.ca):
                self.ctx = ssl.create_default_context(cafile=self.ca)
            if self.ctx is not None:
                try:
                    if self.https(port, "GET", "/health", timeout=2)[0] == 200:
                        return True
                except (OSError, http.client.HTTPException):
                    pass
            time.sleep(0.1)
        return False

    # ---- cluster
    def start(self):
        a = self.a
        flags = ["--bind-address", "127.0.0.1", "--rate-limit-enabled", "false"]
        os.makedirs(self.cdir)
        c = self.spawn("c0", [self.bin, "agent", "--coordinator", "--node-id", "c0", "--port", str(self.ports[0]),
                              "--data-dir", self.cdir, "--admin-api-key-file", self.keyfile,
                              "--access-log", "true", *flags], self.env)
        if not self.wait_health(self.ports[0], c, time.monotonic() + 60):
            raise RuntimeError("coordinator did not start: " + self.tail("c0"))
        self.coord = c
        jt = self.cli("token", "create", "--join", "--uses", str(a.workers), "--ttl", "3600",
                      *self.conn_args(), "--api-key-file", self.keyfile).strip().splitlines()[-1]
        self.token = self.cli("token", *self.conn_args(), "--api-key-file", self.keyfile).strip().splitlines()[-1]
        self.env["P2P_TOKEN"] = self.token
        log(f"{a.workers} workers enroll (first boot, join token with {a.workers} uses) ...")
        self.workers = []
        t0 = time.monotonic()
        for i in range(1, a.workers + 1):
            name = f"w{i}"
            d = os.path.join(self.tmp, name)
            os.makedirs(os.path.join(d, "services"))
            shutil.copytree(ROOT / "build" / "services" / "hello", os.path.join(d, "services", "hello"))
            p = self.spawn(name, [self.bin, "agent", "--worker", "--node-id", name, "--port", str(self.ports[i]),
                                  "--data-dir", d, "--services-directory", os.path.join(d, "services"),
                                  "--coordinator-addresses", f"127.0.0.1:{self.ports[0]}",
                                  "--enroll-challenge-port", "0", "--access-log", "false", *flags],
                           dict(self.env, P2P_JOIN_TOKEN=jt))
            p.port = self.ports[i]
            self.workers.append(p)
            time.sleep(a.launch_gap)
        deadline = time.monotonic() + 60 + 2 * a.workers
        bad = [w.name for w in self.workers if not self.wait_health(w.port, w, deadline)]
        if bad:
            raise RuntimeError(f"{len(bad)} worker(s) did not start, e.g. {bad[0]}: {self.tail(bad[0])}")
        self.res["enroll_s"] = round(time.monotonic() - t0, 1)
        log(f"all {a.workers} workers answer /health after {self.res['enroll_s']} s; waiting for membership ...")
        while time.monotonic() < deadline:
            try:
                st, data = self.https(self.ports[0], "GET", "/cluster/nodes")
                d = json.loads(data)
                items = d.get("nodes", d) if isinstance(d, dict) else d
                alive = sum(1 for n in items if isinstance(n, dict) and n.get("state", n.get("status")) == "alive")
                if alive >= a.workers + 1:
                    break
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the coordinator did not see every worker alive")
        for w in self.workers:
            v = self.version(w)
            if v != "1.0.0":
                raise RuntimeError(f"{w.name}: hello {v}, expected 1.0.0")

    def tail(self, name, n=5):
        try:
            with open(os.path.join(self.tmp, f"{name}.log"), errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return "?"

    def version(self, w):
        for s in self.rpc(w.port, "services/list")["services"]:
            if s["name"] == "hello":
                return s["version"] if s["state"] == "running" else f"{s['version']} ({s['state']})"
        return None

    # ---- calls running throughout
    def caller(self, k, stop):
        conns = {}
        body = json.dumps({"jsonrpc": "2.0", "method": "hello/greet", "params": {"name": "bench"}, "id": 1})
        i = k
        while not stop.is_set():
            w = self.workers[i % len(self.workers)]
            i += 1
            ok = False
            err = None
            try:
                c = conns.get(w.name)
                if c is None:
                    c = conns[w.name] = http.client.HTTPSConnection("127.0.0.1", w.port, context=self.ctx, timeout=10)
                st, data = self.https(w.port, "POST", "/rpc", body, conn=c)
                ok = st == 200 and "result" in json.loads(data)
                if not ok:
                    err = f"{w.name}: HTTP {st} {data[:200]!r}"
            except (OSError, ValueError, http.client.HTTPException) as e:
                err = f"{w.name}: {type(e).__name__}: {e}"
                conns.pop(w.name, None)
            with self.lock:
                self.calls[self.phase][0 if ok else 1] += 1
                if err and len(self.errors) < 10:
                    self.errors.append(f"{self.phase}: {err}")
            if self.a.call_gap:
                time.sleep(self.a.call_gap)
        for c in conns.values():
            c.close()

    def set_phase(self, name):
        with self.lock:
            self.phase = name
            self.calls.setdefault(name, [0, 0])

    def package_fetches(self, sha):
        """(count, total bytes) of GET /deploy/packages/SHA answered 200 in the coordinator's log."""
        n = total = 0
        pat = re.compile(r'"GET /deploy/packages/' + re.escape(sha) + r' HTTP/[\d.]+" 200 (\d+)')
        with open(os.path.join(self.tmp, "c0.log"), errors="replace") as f:
            for line in f:
                m = pat.search(line)
                if m:
                    n += 1
                    total += int(m.group(1))
        return n, total

    def run(self):
        a = self.a
        self.res = {"workers": a.workers, "max_parallel": a.max_parallel, "min_healthy_time": a.min_healthy_time,
                    "loadavg_before": open("/proc/loadavg").read().split()[:3]}
        self.start()
        self.res["rss_mb"] = {"coordinator": round(rss_kb(self.coord.pid) / 1024, 1),
                              "workers_total": round(sum(rss_kb(w.pid) for w in self.workers) / 1024, 1)}
        # the package: hello 1.1.0, signed by the coordinator
        src = os.path.join(self.tmp, "hello-1.1.0")
        shutil.copytree(ROOT / "build" / "services" / "hello", src)
        mp = os.path.join(src, "manifest.json")
        m = json.load(open(mp))
        m["version"] = "1.1.0"
        json.dump(m, open(mp, "w"))
        pkg = os.path.join(self.tmp, "hello-1.1.0.tar.zst")
        self.cli("package", "build", src, "-o", pkg)
        self.cli("package", "sign", pkg, *self.conn_args())
        self.res["package_bytes"] = os.path.getsize(pkg)
        # calls
        self.lock = threading.Lock()
        self.calls = {}
        self.errors = []
        self.set_phase("before")
        stop = threading.Event()
        threads = [threading.Thread(target=self.caller, args=(k, stop), daemon=True) for k in range(a.call_threads)]
        for t in threads:
            t.start()
        time.sleep(2)
        # 1. rollout
        self.set_phase("rollout")
        log(f"rollout of hello 1.1.0 to {a.workers} workers, max_parallel {a.max_parallel} ...")
        t0 = time.monotonic()
        r = subprocess.run([self.bin, "deploy", pkg, "--target", "all:worker", "--max-parallel", str(a.max_parallel),
                            "--min-healthy-time", str(a.min_healthy_time), "--healthy-deadline", "60",
                            *self.conn_args()], capture_output=True, text=True, timeout=600, env=self.env)
        self.res["rollout_s"] = round(time.monotonic() - t0, 2)
        mm = re.search(r"rollout (\S+): (\d+) node", r.stdout)
        self.res["rollout_exit"] = r.returncode
        self.res["rollout_end"] = (r.stdout.strip().splitlines() or ["?"])[-1]
        if r.returncode != 0 or not mm:
            raise RuntimeError(f"p2p deploy exited {r.returncode}: {r.stdout[-800:]} {r.stderr[-400:]}")
        rid = mm.group(1)
        sha = re.search(r"uploaded hello 1\.1\.0 as ([0-9a-f]+)", r.stdout)
        self.set_phase("between")
        vers = [self.version(w) for w in self.workers]
        self.res["after_rollout_on_1.1.0"] = sum(v == "1.1.0" for v in vers)
        time.sleep(1)
        # 2. revert
        self.set_phase("revert")
        log(f"revert of rollout {rid} ...")
        t0 = time.monotonic()
        self.cli("rollout", "revert", rid, *self.conn_args())
        state = None
        while time.monotonic() - t0 < 600:
            ro = self.rpc(self.ports[0], "deploy/rollout_status", {"id": rid})
            ro = ro.get("rollouts", [ro])[0] if "rollouts" in ro else ro
            state = ro.get("state")
            if state in ("reverted", "failed", "done"):
                break
            time.sleep(0.1)
        self.res["revert_s"] = round(time.monotonic() - t0, 2)
        self.res["revert_state"] = state
        self.set_phase("after")
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(15)
        vers = [self.version(w) for w in self.workers]
        self.res["after_revert_on_1.0.0"] = sum(v == "1.0.0" for v in vers)
        self.res["calls"] = self.calls
        self.res["call_errors"] = self.errors
        if sha:
            # the full sha256 is in the store: match the prefix the CLI printed
            prefix = sha.group(1)
            n = total = 0
            with open(os.path.join(self.tmp, "c0.log"), errors="replace") as f:
                for line in f:
                    mq = re.search(r'"GET /deploy/packages/(' + prefix + r'[0-9a-f]*) HTTP/[\d.]+" 200 (\d+)', line)
                    if mq:
                        n += 1
                        total += int(mq.group(2))
            self.res["package_fetches"] = n
            self.res["package_bytes_sent_total"] = total
        self.res["rss_mb_after"] = {"coordinator": round(rss_kb(self.coord.pid) / 1024, 1),
                                    "workers_total": round(sum(rss_kb(w.pid) for w in self.workers) / 1024, 1)}
        self.res["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
        return self.res


def report(res):
    c = res.get("calls", {})
    ok = lambda ph: c.get(ph, [0, 0])
    n = res["workers"]
    lines = [
        f"rollout benchmark: hello 1.0.0 -> 1.1.0 -> revert on {n} workers (+ coordinator), one machine,"
        f" {os.cpu_count()} CPU(s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"  max_parallel {res['max_parallel']}, min_healthy_time {res['min_healthy_time']} s;"
        f" load average before {' '.join(res['loadavg_before'])}, after {' '.join(res.get('loadavg_after', ['?']))}",
        f"  workers enrolled and answering /health in {res.get('enroll_s')} s;"
        f" RSS: coordinator {res['rss_mb']['coordinator']} MB, {n} workers {res['rss_mb']['workers_total']} MB in all",
        "",
        f"  {'step':<34} {'time':>8}  {'calls ok':>9} {'failed':>7}   target",
        f"  {'rollout (upload + all committed)':<34} {res.get('rollout_s', '-'):>7}s  {ok('rollout')[0]:>9} {ok('rollout')[1]:>7}   <= 10 s, 0 failed",
        f"  {'revert (all back on 1.0.0)':<34} {res.get('revert_s', '-'):>7}s  {ok('revert')[0]:>9} {ok('revert')[1]:>7}   <= 10 s, 0 failed",
        f"  calls before/between/after: ok {ok('before')[0]}/{ok('between')[0]}/{ok('after')[0]},"
        f" failed {ok('before')[1]}/{ok('between')[1]}/{ok('after')[1]}",
        f"  after the rollout {res.get('after_rollout_on_1.1.0')}/{n} workers ran 1.1.0; after the revert"
        f" {res.get('after_revert_on_1.0.0')}/{n} ran 1.0.0 (revert state: {res.get('revert_state')})",
    ]
    pb = res.get("package_bytes")
    nf = res.get("package_fetches")
    if nf:
        lines.append(f"  package {pb} bytes; the coordinator served it {nf} time(s), "
                     f"{res['package_bytes_sent_total']} bytes in all = {res['package_bytes_sent_total'] / n:.0f} bytes per worker"
                     " (the revert sends nothing: each node keeps its previous version)")
    for e in res.get("call_errors", []):
        lines.append(f"  call error: {e}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_ROLLOUT_WORKERS", 50)))
    ap.add_argument("--max-parallel", type=int, default=10)
    ap.add_argument("--min-healthy-time", type=int, default=1)
    ap.add_argument("--call-threads", type=int, default=2)
    ap.add_argument("--call-gap", type=float, default=0.005, help="seconds between one thread's calls")
    ap.add_argument("--launch-gap", type=float, default=0.05, help="seconds between worker launches")
    ap.add_argument("--p2p", default=os.environ.get("P2P_BIN", str(ROOT / "build" / "p2p")))
    ap.add_argument("--keep-tmp", action="store_true")
    a = ap.parse_args()
    b = Bench(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        res = b.run()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        log(f"failed: {e}")
        b.cleanup()
        return 1
    except BaseException:
        b.cleanup()
        raise
    b.cleanup()
    text = report(res)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "rollout.txt").write_text(text + "\n")
    (out / "rollout.json").write_text(json.dumps(res, indent=1) + "\n")
    fails = sum(v[1] for v in res.get("calls", {}).values())
    return 0 if res.get("rollout_s", 99) <= 10 and res.get("revert_s", 99) <= 10 and fails == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
