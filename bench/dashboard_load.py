#!/usr/bin/python3
"""dashboard_load.py — the coordinator's cost of holding metric history for many nodes.

Starts a real coordinator (build/p2p) in a temp dir, mints N node certificates with its CA
(the CA key read from its vault with `p2p vault get`, the way an operator could), and runs
N simulated reporters: each holds its own mutual-TLS connection with its own node
certificate and calls metrics_dashboard/report_metrics every INTERVAL seconds with the
samples of those seconds, LZ4-compressed (liblz4 through ctypes) exactly as a node's
reporter sends them, shaped like a real node's samples (the coordinator's own last sample
as the template). Measures the coordinator process: CPU (utime+stime of all its threads,
snapshot jobs on the thread pool included) over the measured window, RSS before and after,
and the dashboard's own figures (bytes per node, snapshot size and time).

    bench/dashboard_load.py [--nodes 200] [--seconds 30] [--interval 5] [--p2p build/p2p]

Prints a table and writes it to bench/results/dashboard.txt. Stops what it started (by PID)
and removes its temp dir.
"""
import argparse
import base64
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-vault-password"
TICKS = os.sysconf("SC_CLK_TCK")

lz4 = ctypes.CDLL("liblz4.so.1")
lz4.LZ4_compressBound.argtypes = [ctypes.c_int]
lz4.LZ4_compress_default.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]


def lz4_block(data: bytes) -> bytes:
    cap = lz4.LZ4_compressBound(len(data))
    out = ctypes.create_string_buffer(cap)
    n = lz4.LZ4_compress_default(data, out, len(data), cap)
    assert n > 0
    return out.raw[:n]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def proc_rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Coordinator:
    def __init__(self, p2p, tmp):
        self.p2p, self.tmp = p2p, Path(tmp)
        self.port = free_port()
        self.data = self.tmp / "coord-data"
        self.keyfile = self.tmp / "admin.key"
        env = dict(os.environ, P2P_VAULT_PASSWORD=PASSWORD)
        self.log = open(self.tmp / "coord.log", "wb")
        self.proc = subprocess.Popen(
            [p2p, "agent", "--coordinator", "--node-id", "bench-coord", "--port", str(self.port), "--bind-address",
             "127.0.0.1", "--data-dir", str(self.data), "--admin-api-key-file", str(self.keyfile), "--access-log",
             "false", "--rate-limit-enabled", "false", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health", auth=False)[0] == 200:
                    break
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the coordinator did not come up: see " + str(self.tmp / "coord.log"))
        body = json.dumps({"api_key": self.keyfile.read_text().strip()}).encode()
        self.token = json.loads(self.request("POST", "/auth/token", body, auth=False)[1])["token"]

    def ctx(self, cert=None, key=None):
        c = ssl.create_default_context(cafile=str(self.data / "certs" / "ca.crt"))
        c.check_hostname = False
        if cert:
            c.load_cert_chain(cert, key)
        return c

    def request(self, method, path, body=None, auth=True):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx(), timeout=30)
        h = {"Content-Type": "application/json"}
        if auth:
            h["Authorization"] = "Bearer " + self.token
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def vault_get(self, entry):
        env = dict(os.environ, P2P_VAULT_PASSWORD=PASSWORD)
        return subprocess.run([self.p2p, "vault", "get", "--data-dir", str(self.data), entry], env=env,
                              capture_output=True, check=True, timeout=60).stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def mint(ca_cert_pem, ca_key_pem, names, outdir):
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    now = datetime.now(timezone.utc)
    out = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "worker")]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        c, k = outdir / f"{name}.crt", outdir / f"{name}.key"
        c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        out[name] = (str(c), str(k))
    return out


class Reporter(threading.Thread):
    def __init__(self, coord, name, ident, template, interval, stop, start_at, follow=False):
        super().__init__(daemon=True)
        self.follow = follow  # take next_interval_ms from the answers, as a node's reporter does
        self.coord, self.name, self.interval, self.stop, self.start_at = coord, name, interval, stop, start_at
        self.ctx = coord.ctx(*ident)
        self.template = template
        self.ok = self.fail = 0
        self.errors = []
        self.last_t = int(time.time()) - 1

    def samples(self, upto):
        out = []
        for t in range(self.last_t + 1, upto + 1):
            s = dict(self.template)
            s["t"] = t
            s["cpu"] = round(random.uniform(0, 100), 2)
            s["mem_percent"] = round(random.uniform(20, 80), 2)
            s["rpc_calls"] = random.randint(0, 50)
            out.append(s)
        self.last_t = upto
        return out

    def run(self):
        conn = None
        next_at = self.start_at
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            next_at += self.interval
            text = json.dumps(self.samples(int(time.time())), separators=(",", ":")).encode()
            params = {"node_id": self.name, "version": "0.1.0", "encoding": "lz4", "size": len(text),
                      "data": base64.b64encode(lz4_block(text)).decode()}
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "metrics_dashboard/report_metrics",
                               "params": params}).encode()
            try:
                for attempt in (0, 1):
                    fresh = conn is None
                    if fresh:
                        conn = http.client.HTTPSConnection("127.0.0.1", self.coord.port, context=self.ctx,
                                                           timeout=30)
                    try:
                        conn.request("POST", "/rpc", body=body, headers={"Content-Type": "application/json"})
                        r = conn.getresponse()
                        out = json.loads(r.read())
                        break
                    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
                        # the server closed an idle connection: a fresh one, as curl does
                        conn = None
                        if fresh or attempt:
                            raise
                if r.status == 200 and out.get("result", {}).get("ok"):
                    self.ok += 1
                    if self.follow:
                        self.interval = out["result"]["next_interval_ms"] / 1000.0
                        next_at = time.monotonic() + self.interval
                else:
                    self.fail += 1
                    self.errors.append(str(out)[:200])
            except Exception as e:  # noqa: BLE001 — counted and shown
                self.fail += 1
                self.errors.append(repr(e)[:200])
                conn = None


def measure(coord, reporters, seconds, warmup):
    pid = coord.proc.pid
    stop = threading.Event()
    for r in reporters:
        r.stop = stop
        r.start()
    time.sleep(warmup)  # every node has connected and reported once: its rings and connection exist
    perf = None
    if os.environ.get("DASH_PERF"):  # DASH_PERF=file: a perf profile of the coordinator over the window
        perf = subprocess.Popen(["perf", "record", "--call-graph", os.environ.get("DASH_PERF_CG", "fp"), "-o", os.environ["DASH_PERF"], "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c0, w0, rss0 = proc_cpu_s(pid), time.monotonic(), proc_rss_kb(pid)
    time.sleep(seconds)
    c1, w1, rss1 = proc_cpu_s(pid), time.monotonic(), proc_rss_kb(pid)
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(30)
        os.environ.pop("DASH_PERF")
    stop.set()
    for r in reporters:
        r.join(40)
    return 100.0 * (c1 - c0) / (w1 - w0), rss0, rss1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--p2p", default=str(ROOT / "build" / "p2p"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="p2p-dash-bench-")
    coord = None
    lines = []
    try:
        coord = Coordinator(a.p2p, tmp)
        pid = coord.proc.pid
        idents = mint((coord.data / "certs" / "ca.crt").read_bytes(),
                      coord.vault_get("keys/ca.key"), [f"sim-{i:03d}" for i in range(a.nodes)], Path(tmp))
        time.sleep(2)
        view = json.loads(coord.request("GET", "/api/dashboard/metrics")[1])
        template = view["coordinator"]["latest"]
        assert template, "the coordinator has no sample of its own yet"
        template_bytes = len(json.dumps(template, separators=(",", ":")))
        # idle baseline: the coordinator alone (its own sampler, gossip timers)
        c0, w0 = proc_cpu_s(pid), time.monotonic()
        rss_idle = proc_rss_kb(pid)
        time.sleep(min(10, a.seconds))
        idle_cpu = 100.0 * (proc_cpu_s(pid) - c0) / (time.monotonic() - w0)
        results = []
        # fixed 5 s (the default interval of a cluster up to 100 nodes), fixed 1 s (someone watches the
        # dashboard), then as the coordinator asks (for 200 idle nodes: reporter_interval_min = 30 s)
        for interval in (a.interval, 1.0, "asked"):
            follow = interval == "asked"
            spread = 30.0 if follow else interval
            window = max(a.seconds, 60.0) if follow else a.seconds
            t0 = time.monotonic() + 0.5
            reps = [Reporter(coord, n, idents[n], template, spread, None, t0 + spread * i / a.nodes, follow)
                    for i, n in enumerate(sorted(idents))]
            cpu, rss0, rss1 = measure(coord, reps, window, spread + 2)
            ok = sum(r.ok for r in reps)
            fail = sum(r.fail for r in reps)
            errs = [e for r in reps for e in r.errors][:3]
            results.append((interval, cpu, rss0, rss1, ok, fail, errs))
        stats = json.loads(coord.request("GET", "/api/dashboard/stats")[1])
        # a snapshot now, timed by the dashboard itself
        lines.append(f"dashboard load: {a.nodes} simulated nodes (own certificates, mTLS), {a.seconds:.0f} s per run, "
                     f"sample {template_bytes} bytes of JSON, LZ4-compressed reports")
        lines.append(f"  coordinator idle (no reporters): cpu {idle_cpu:.2f} % of a core, rss {rss_idle / 1024:.1f} MiB")
        for interval, cpu, rss0, rss1, ok, fail, errs in results:
            if interval == "asked":
                lines.append(f"  report as the coordinator asks ({stats['idle_interval_ms'] / 1000:g} s for "
                             f"{stats['nodes_stored']} idle nodes): cpu {cpu:.2f} % of a core (target <= 2 %), "
                             f"rss {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, reports ok {ok}, failed {fail} "
                             f"{errs if errs else ''}")
                continue
            rate = a.nodes / interval
            lines.append(f"  report every {interval:g} s ({rate:.0f} reports/s, {a.nodes} samples/s): cpu {cpu:.2f} % "
                         f"of a core (target <= 2 %), rss {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, "
                         f"reports ok {ok}, failed {fail} {errs if errs else ''}")
        snap = stats["snapshot"]
        lines.append(f"  history: {stats['nodes_stored']} nodes, {stats['bytes_per_node']} bytes of tiers per node "
                     f"({stats['bytes_per_metric_per_node']} per metric), bytes_used {stats['bytes_used'] / 1048576:.1f} MiB")
        lines.append(f"  snapshot: {snap['writes']} written, last {snap['file_bytes'] / 1048576:.1f} MiB on disk "
                     f"({snap['raw_bytes'] / 1048576:.1f} MiB raw), {snap['loop_ms']:.1f} ms on the loop in slices of at most "
                     f"{snap['loop_slice_max_ms']:.1f} ms, "
                     f"{snap['write_ms']:.1f} ms on the pool")
        lines.append("  (the machine is shared: other processes' load makes these figures noisy)")
    finally:
        if coord:
            coord.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "dashboard.txt").write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
