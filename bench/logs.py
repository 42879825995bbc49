#!/usr/bin/python3
"""logs.py — benchmark of cluster log collection (issue 11), p2p and rsyslog in one run.

p2p: a coordinator and 10 workers on this machine (the coordinator pinned to CPU 1, the
workers and this script to CPU 0 when BENCH_PIN=1 and there are 2+ CPUs).

  1. latency: each worker logs BENCH_LOGS_RATE lines/s (default 50; its access line for a
     GET /no/such/lat-<w>-<i> that this script sends it) for BENCH_LOGS_SECONDS (10);
     a follower at the coordinator (get_logs long poll with a cursor, as `p2p logs -f`)
     notes when each line becomes visible. Latency = visible - the line's own timestamp
     (the worker's log call; one clock). p50 / p99 / max; lines missing at the end.
     Target p99 <= 100 ms.
  2. ingest: the workers are stopped; then 10 threads, each with one worker's own
     certificate (exported from its vault), send BENCH_LOGS_INGEST (1,000,000) lines in
     add_logs batches of 5000 (one batch in flight per node, as a shipper does), lines of
     the size of the access lines. Lines/s over the wall time, and lines per CPU-second
     of the coordinator (/proc/PID/stat); every add_logs answer's `acked` checked and
     get_stats compared afterwards: 0 lines lost. Target >= 100,000 lines/s on one core.

rsyslog (Debian's rsyslogd, each with its own config, pid file and work dir in the temp
dir; the system's rsyslog is not touched): a central rsyslogd (imtcp -> one file) and 10
forwarding rsyslogds (imuxsock on a socket of their own -> omfwd over TCP with
octet-counted RFC 5424 frames to the central one).

  1. latency: the same rates and duration; each line is logged as an application does
     with syslog(3) (a datagram to its forwarder's socket); visible = the line is in the
     central file (polled every 1 ms). Latency = visible - the send time.
  2. ingest: the same number of lines, same sizes, over 10 TCP connections straight to the
     central rsyslogd (RFC 5424, octet-counted), until all are in its file; lines/s wall
     and per CPU-second of the central rsyslogd; lines missing in the file.

Not the same guarantees: rsyslog's TCP forwarding has no acknowledgement and writes
without fsync; p2p answers add_logs only after fsync. The table says so.

Output: table on stdout and bench/results/logs.txt, figures as JSON in logs.json.
Environment: P2P_BIN, BENCH_LOGS_SECONDS, BENCH_LOGS_RATE, BENCH_LOGS_INGEST, BENCH_PIN,
BENCH_STRICT (1: exit 3 when a target is not met), BENCH_KEEP_TMP. Standard library only.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
P2P_BIN = os.environ.get("P2P_BIN") or os.path.join(ROOT, "build", "p2p")
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
N_WORKERS = 10
SECS = int(os.environ.get("BENCH_LOGS_SECONDS", "10"))
RATE = int(os.environ.get("BENCH_LOGS_RATE", "50"))
INGEST = int(os.environ.get("BENCH_LOGS_INGEST", "1000000"))
BATCH = 5000
PIN = os.environ.get("BENCH_PIN", "1") == "1" and (os.cpu_count() or 1) >= 2
SRV = ["taskset", "-c", "1"] if PIN else []
CLI = ["taskset", "-c", "0"] if PIN else []
RESULTS = os.path.join(HERE, "results")
TARGET_P99_MS = 100.0
TARGET_INGEST = 100000.0
VAULT_PW = "bench-logs-" + os.urandom(6).hex()
CLK = os.sysconf("SC_CLK_TCK")

procs = []
notes = []


def log(msg):
    print(f"bench/logs: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    cleanup()
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, logpath, env=None):
    f = open(logpath, "w")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    procs.append(p)
    return p


def stop(p, secs=10):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(secs)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cleanup():
    for p in procs:
        try:
            stop(p, 5)
        except Exception:  # noqa: BLE001
            pass


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def pct(v, q):
    v = sorted(v)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))
    return v[k]


def tls_ctx(cert=None, key=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class Rpc:
    def __init__(self, port, token=None, cert=None, key=None, timeout=60):
        self.port, self.token, self.timeout = port, token, timeout
        self.ctx = tls_ctx(cert, key)
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx, timeout=timeout)

    def raw(self, body):
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        try:
            self.conn.request("POST", "/rpc", body, h)
            r = self.conn.getresponse()
        except (OSError, http.client.HTTPException):
            # an idle keep-alive connection the node closed (http_idle_timeout): once more on a new one
            self.conn.close()
            self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=self.timeout)
            self.conn.request("POST", "/rpc", body, h)
            r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
        return json.loads(data)

    def call(self, method, params=None):
        out = self.raw(json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": 1}))
        if "error" in out:
            raise RuntimeError(f"{method}: {out['error']}")
        return out["result"]


def wait_health(port, pid, deadline=40):
    t = time.monotonic() + deadline
    while time.monotonic() < t:
        if pid.poll() is not None:
            die(f"a node exited during start (see the temp dir's logs)")
        try:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=tls_ctx(), timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    die(f"no /health on port {port} within {deadline} s")


# ---------------------------------------------------------------------------- p2p

def p2p_cluster(tmp):
    env = dict(os.environ, P2P_VAULT_PASSWORD=VAULT_PW)
    cport = free_port()
    admin = os.path.join(tmp, "admin.key")
    coord = start(SRV + [P2P_BIN, "agent", "--coordinator", "--node-id", "bench-coord", "--port", str(cport),
                         "--bind-address", "127.0.0.1", "--data-dir", os.path.join(tmp, "coord"),
                         "--admin-api-key-file", admin, "--rate-limit-enabled", "false"],
                  os.path.join(tmp, "coord.log"), env=env)
    wait_health(cport, coord)
    key = open(admin).readline().strip()
    c = http.client.HTTPSConnection("127.0.0.1", cport, context=tls_ctx(), timeout=10)
    c.request("POST", "/auth/token", json.dumps({"api_key": key}), {"Content-Type": "application/json"})
    token = json.loads(c.getresponse().read())["token"]
    rpc = Rpc(cport, token)
    join = rpc.call("auth/create_join_token", {"ttl": 600, "uses": N_WORKERS})["token"]
    workers = []
    for i in range(N_WORKERS):
        port = free_port()
        p = start(CLI + [P2P_BIN, "agent", "--node-id", f"bw{i}", "--port", str(port), "--bind-address", "127.0.0.1",
                         "--data-dir", os.path.join(tmp, f"w{i}"), "--coordinator-addresses", f"127.0.0.1:{cport}",
                         "--rate-limit-enabled", "false"],
                  os.path.join(tmp, f"w{i}.log"), env=dict(env, P2P_JOIN_TOKEN=join))
        workers.append((f"bw{i}", port, p))
    for name, port, p in workers:
        wait_health(port, p)
    # every worker ships: its start lines are at the collector
    t = time.monotonic() + 60
    while time.monotonic() < t:
        nodes = rpc.call("log_collector/get_stats")["nodes"]
        if all(f"bw{i}" in nodes for i in range(N_WORKERS)):
            break
        time.sleep(0.2)
    else:
        die("not every worker's lines reached the collector within 60 s")
    return coord, cport, token, workers


def p2p_latency(cport, token, workers):
    seen, lock, stop_ev = {}, threading.Lock(), threading.Event()
    fol = Rpc(cport, token)
    cur = fol.call("log_collector/get_logs", {"limit": 1})["cursor"]

    def follow():
        nonlocal cur
        f = Rpc(cport, token)
        while not stop_ev.is_set():
            r = f.call("log_collector/get_logs", {"search": "lat-", "logger_name": "access", "cursor": cur,
                                                  "wait_ms": 2000, "limit": 10000})
            now = time.time()
            with lock:
                for l in r["logs"]:
                    m = l["message"]
                    i = m.find("lat-")
                    if i >= 0:
                        mark = m[i:].split(" ", 1)[0]
                        seen.setdefault(mark, (now - l["ts_us"] / 1e6) * 1000.0)
            cur = r["cursor"]

    sent = []

    def gen(name, port):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=tls_ctx(), timeout=10)
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < SECS:
            c.request("GET", f"/no/such/lat-{name}-{i}")
            c.getresponse().read()
            sent.append(f"lat-{name}-{i}")
            i += 1
            nxt = t0 + i / RATE
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)

    ft = threading.Thread(target=follow, daemon=True)
    ft.start()
    gs = [threading.Thread(target=gen, args=(n, p)) for n, p, _ in workers]
    for g in gs:
        g.start()
    for g in gs:
        g.join()
    t = time.monotonic() + 10
    while time.monotonic() < t:
        with lock:
            if all(s in seen for s in sent):
                break
        time.sleep(0.05)
    stop_ev.set()
    ft.join(5)
    with lock:
        lats = [seen[s] for s in sent if s in seen]
        missing = sum(1 for s in sent if s not in seen)
    return {"lines": len(sent), "missing": missing, "p50_ms": pct(lats, 0.5), "p99_ms": pct(lats, 0.99),
            "max_ms": max(lats) if lats else float("nan")}


def export_identity(tmp, name):
    env = dict(os.environ, P2P_VAULT_PASSWORD=VAULT_PW)
    out = []
    for entry, fn in (("certificates/node.crt", f"{name}.crt"), ("keys/node.key", f"{name}.key")):
        cp = subprocess.run([P2P_BIN, "vault", "get", "--data-dir", os.path.join(tmp, f"w{name[2:]}"), entry],
                            capture_output=True, env=env, timeout=60)
        if cp.returncode:
            die(f"cannot export {name}'s {entry}: {cp.stderr.decode()[:200]}")
        path = os.path.join(tmp, fn)
        with open(path, "wb") as f:
            f.write(cp.stdout)
        os.chmod(path, 0o600)
        out.append(path)
    return out


PAD = "x" * 60  # lines of about the access lines' size (~100 bytes of message)


def p2p_ingest(tmp, coord, cport, token, workers):
    idents = {n: export_identity(tmp, n) for n, _, _ in workers}
    for _, _, p in workers:
        stop(p)
    rpc = Rpc(cport, token)
    base = {n: s["acked_seq"] for n, s in rpc.call("log_collector/get_stats")["nodes"].items()}
    per = INGEST // N_WORKERS
    ts0 = time.time()
    log(f"p2p ingest: building {per * N_WORKERS} lines in batches of {BATCH} ...")
    bodies = {}
    for n, _, _ in workers:
        b0 = base.get(n, 0)
        lst = []
        for k in range(0, per, BATCH):
            recs = ",".join('{"seq":%d,"ts":%.6f,"level":"INFO","logger":"bench","message":"ingest %s %d %s"}'
                            % (b0 + k + j + 1, ts0 + (k + j) * 1e-6, n, k + j, PAD) for j in range(min(BATCH, per - k)))
            body = ('{"jsonrpc":"2.0","method":"log_collector/add_logs","params":{"node_id":"%s","records":[%s]},'
                    '"id":1}' % (n, recs)).encode()
            lst.append((body, b0 + min(k + BATCH, per)))
        bodies[n] = lst
    errors = []

    def send(n):
        try:
            c = Rpc(cport, cert=idents[n][0], key=idents[n][1])
            for body, last in bodies[n]:
                r = c.raw(body)
                if r.get("result", {}).get("acked") != last:
                    errors.append(f"{n}: {str(r)[:200]}")
                    return
        except Exception as e:  # noqa: BLE001
            errors.append(f"{n}: {e}")

    threads = [threading.Thread(target=send, args=(n,)) for n, _, _ in workers]
    c0, t0 = cpu_s(coord.pid), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1, c1 = time.monotonic(), cpu_s(coord.pid)
    if errors:
        notes.append("p2p ingest errors: " + "; ".join(errors[:3]))
    st = rpc.call("log_collector/get_stats")["nodes"]
    stored = sum(st[n]["acked_seq"] - base.get(n, 0) for n, _, _ in workers)
    total = per * N_WORKERS
    return {"lines": total, "stored": stored, "lost": total - stored, "wall_s": t1 - t0,
            "lines_per_s": total / (t1 - t0), "cpu_s": c1 - c0,
            "lines_per_cpu_s": total / (c1 - c0) if c1 > c0 else float("nan")}


# ---------------------------------------------------------------------------- rsyslog

CENTRAL_CONF = """
global(workDirectory="{wd}" maxMessageSize="8k")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="line" type="string" string="%msg%\\n")
action(type="omfile" file="{out}" template="line")
"""

FWD_CONF = """
global(workDirectory="{wd}" maxMessageSize="8k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}" CreatePath="on")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format")
"""


def rsyslog_start(tmp, name, conf, pin):
    wd = os.path.join(tmp, name)
    os.makedirs(wd, exist_ok=True)
    path = os.path.join(wd, "rsyslog.conf")
    with open(path, "w") as f:
        f.write(conf.replace("{wd}", wd))
    return start(pin + [RSYSLOGD, "-n", "-f", path, "-i", os.path.join(wd, "rsyslogd.pid")],
                 os.path.join(wd, "stderr.log"))


class Tail:
    """Counts lines of the central file and notes when each marker first appears."""

    def __init__(self, path):
        self.path, self.pos, self.lines, self.seen, self.buf = path, 0, 0, {}, b""

    def poll(self, watch=None):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                d = f.read()
        except FileNotFoundError:
            return
        if not d:
            return
        now = time.time()
        self.pos += len(d)
        d = self.buf + d
        parts = d.split(b"\n")
        self.buf = parts.pop()
        self.lines += len(parts)
        if watch is not None:
            for p in parts:
                i = p.find(b"lat-")
                if i >= 0:
                    self.seen.setdefault(p[i:].split(b" ", 1)[0].decode(), now)


def rsyslog_run(tmp):
    port = free_port()
    out = os.path.join(tmp, "central.out")
    central = rsyslog_start(tmp, "central", CENTRAL_CONF.replace("{port}", str(port)).replace("{out}", out), SRV)
    t = time.monotonic() + 10
    while time.monotonic() < t:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        die("the central rsyslogd does not listen")
    socks = []
    for i in range(N_WORKERS):
        sock = os.path.join(tmp, f"fwd{i}.sock")
        rsyslog_start(tmp, f"fwd{i}", FWD_CONF.replace("{port}", str(port)).replace("{sock}", sock), CLI)
        socks.append(sock)
    for s in socks:
        t = time.monotonic() + 10
        while not os.path.exists(s) and time.monotonic() < t:
            time.sleep(0.05)
    tail = Tail(out)
    # latency: as syslog(3) does, a datagram per line to the local forwarder
    sent, stop_ev = {}, threading.Event()

    def gen(i):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < SECS:
            mark = f"lat-rs{i}-{k}"
            sent[mark] = time.time()
            s.sendto(f"<14>bench: {mark} \"GET /no/such/{mark} HTTP/1.1\" 404 41".encode(), socks[i])
            k += 1
            d = t0 + k / RATE - time.monotonic()
            if d > 0:
                time.sleep(d)
        s.close()

    gs = [threading.Thread(target=gen, args=(i,)) for i in range(N_WORKERS)]
    for g in gs:
        g.start()
    while any(g.is_alive() for g in gs):
        tail.poll(watch=True)
        time.sleep(0.001)
    t = time.monotonic() + 10
    while time.monotonic() < t and not all(m in tail.seen for m in sent):
        tail.poll(watch=True)
        time.sleep(0.001)
    lats = [(tail.seen[m] - sent[m]) * 1000.0 for m in sent if m in tail.seen]
    lat = {"lines": len(sent), "missing": sum(1 for m in sent if m not in tail.seen), "p50_ms": pct(lats, 0.5),
           "p99_ms": pct(lats, 0.99), "max_ms": max(lats) if lats else float("nan")}
    # ingest: the same number of lines over 10 TCP connections straight to the central one
    base_lines = tail.lines
    per = INGEST // N_WORKERS
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    frames = {}
    for i in range(N_WORKERS):
        chunks = []
        for k in range(0, per, BATCH):
            parts = []
            for j in range(k, min(k + BATCH, per)):
                m = (f'<30>1 {ts} bw{i} bench - - [p2p@32473 seq="{j + 1}" level="INFO"] ingest bw{i} {j} {PAD}'
                     ).encode()
                parts.append(b"%d %s" % (len(m), m))
            chunks.append(b"".join(parts))
        frames[i] = chunks
    c0, t0 = cpu_s(central.pid), time.monotonic()

    def send(i):
        s = socket.create_connection(("127.0.0.1", port))
        for ch in frames[i]:
            s.sendall(ch)
        s.close()

    ts_ = [threading.Thread(target=send, args=(i,)) for i in range(N_WORKERS)]
    for t_ in ts_:
        t_.start()
    for t_ in ts_:
        t_.join()
    want = base_lines + per * N_WORKERS
    deadline = time.monotonic() + 120
    last_change, last_lines = time.monotonic(), -1
    while time.monotonic() < deadline and tail.lines < want:
        tail.poll()
        if tail.lines != last_lines:
            last_lines, last_change = tail.lines, time.monotonic()
        elif time.monotonic() - last_change > 5:
            break
        time.sleep(0.005)
    t1 = last_change if tail.lines < want else time.monotonic()
    c1 = cpu_s(central.pid)
    got = tail.lines - base_lines
    total = per * N_WORKERS
    ing = {"lines": total, "stored": got, "lost": total - got, "wall_s": t1 - t0, "lines_per_s": got / (t1 - t0),
           "cpu_s": c1 - c0, "lines_per_cpu_s": got / (c1 - c0) if c1 > c0 else float("nan")}
    return lat, ing


# ---------------------------------------------------------------------------- report

def report(res):
    p, r = res["p2p"], res["rsyslog"]

    def f(v, d=1):
        return "n/a" if v is None or v != v else f"{v:,.{d}f}"

    def ratio(a, b):
        return "n/a" if not a or not b or a != a or b != b else f"{a / b:.2f}"

    lines = [f"# logs benchmark ({res['date']}; {N_WORKERS} workers, {SECS} s at {RATE} lines/s each for latency, "
             f"{INGEST:,} lines for ingest; {res['pinning']})", "",
             f"| {'':28} | {'p2p':>12} | {'rsyslog TCP':>12} | {'p2p / rsyslog':>13} | target (p2p) |",
             f"|{'-' * 30}|{'-' * 14}:|{'-' * 14}:|{'-' * 15}:|--------------|"]
    rows = [
        ("latency p50 (ms)", p["latency"]["p50_ms"], r["latency"]["p50_ms"], 1, ""),
        ("latency p99 (ms)", p["latency"]["p99_ms"], r["latency"]["p99_ms"], 1,
         "<= 100 " + ("met" if p["latency"]["p99_ms"] <= TARGET_P99_MS else "NOT met")),
        ("latency max (ms)", p["latency"]["max_ms"], r["latency"]["max_ms"], 1, ""),
        ("latency lines / missing", None, None, 0, ""),
        ("ingest lines/s (wall)", p["ingest"]["lines_per_s"], r["ingest"]["lines_per_s"], 0, ""),
        ("ingest lines per CPU-second", p["ingest"]["lines_per_cpu_s"], r["ingest"]["lines_per_cpu_s"], 0,
         ">= 100,000 " + ("met" if p["ingest"]["lines_per_cpu_s"] >= TARGET_INGEST else "NOT met")),
        ("ingest lines lost", p["ingest"]["lost"], r["ingest"]["lost"], 0,
         "0 " + ("met" if p["ingest"]["lost"] == 0 else "NOT met")),
    ]
    for name, a, b, d, t in rows:
        if name == "latency lines / missing":
            a_s = f"{p['latency']['lines']} / {p['latency']['missing']}"
            b_s = f"{r['latency']['lines']} / {r['latency']['missing']}"
            lines.append(f"| {name:28} | {a_s:>12} | {b_s:>12} | {'':>13} | {'':12} |")
            continue
        rt = ratio(a, b) if "lost" not in name else ""
        lines.append(f"| {name:28} | {f(a, d):>12} | {f(b, d):>12} | {rt:>13} | {t:12} |")
    lines += ["", "Not the same guarantees: p2p acknowledges a batch only after fsync, and a lost or duplicate "
              "line would show; rsyslog's TCP forwarding has no acknowledgement and writes without fsync.",
              f"Ingest wall time: p2p {p['ingest']['wall_s']:.2f} s ({p['ingest']['cpu_s']:.2f} CPU-s of the "
              f"coordinator), rsyslog {r['ingest']['wall_s']:.2f} s ({r['ingest']['cpu_s']:.2f} CPU-s of the central "
              f"rsyslogd)."]
    for n in res["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines) + "\n"


def main():
    if not os.access(P2P_BIN, os.X_OK):
        die(f"{P2P_BIN} not found, build first")
    have_rs = os.access(RSYSLOGD, os.X_OK)
    if PIN:
        os.sched_setaffinity(0, {0})
    tmp = tempfile.mkdtemp(prefix="p2p-bench-logs.")
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "notes": notes,
           "pinning": "coordinator / central rsyslogd on CPU 1, workers, forwarders and load on CPU 0" if PIN
           else "not pinned"}
    try:
        log("p2p: starting a coordinator and 10 workers ...")
        coord, cport, token, workers = p2p_cluster(tmp)
        log(f"p2p latency: {SECS} s, {RATE} lines/s per worker ...")
        lat = p2p_latency(cport, token, workers)
        log(f"p2p latency: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, {lat['missing']} missing")
        ing = p2p_ingest(tmp, coord, cport, token, workers)
        log(f"p2p ingest: {ing['lines_per_s']:,.0f} lines/s, {ing['lines_per_cpu_s']:,.0f} per CPU-s, lost {ing['lost']}")
        res["p2p"] = {"latency": lat, "ingest": ing}
        cleanup()
        procs.clear()
        if have_rs:
            log("rsyslog: central + 10 forwarders ...")
            rl, ri = rsyslog_run(tmp)
            log(f"rsyslog: latency p50 {rl['p50_ms']:.1f} ms p99 {rl['p99_ms']:.1f} ms; ingest "
                f"{ri['lines_per_s']:,.0f} lines/s, lost {ri['lost']}")
        else:
            notes.append("rsyslogd not installed (scripts/install-deps.sh bench): its column is empty")
            nan = float("nan")
            rl = {"lines": 0, "missing": 0, "p50_ms": nan, "p99_ms": nan, "max_ms": nan}
            ri = {"lines": 0, "stored": 0, "lost": 0, "wall_s": nan, "lines_per_s": nan, "cpu_s": nan,
                  "lines_per_cpu_s": nan}
        res["rsyslog"] = {"latency": rl, "ingest": ri}
    finally:
        cleanup()
        if os.environ.get("BENCH_KEEP_TMP") == "1":
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(res)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "logs.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "logs.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(text)
    met = (res["p2p"]["latency"]["p99_ms"] <= TARGET_P99_MS and res["p2p"]["ingest"]["lines_per_cpu_s"] >= TARGET_INGEST
           and res["p2p"]["ingest"]["lost"] == 0 and res["p2p"]["latency"]["missing"] == 0)
    if os.environ.get("BENCH_STRICT") == "1" and not met:
        sys.exit(3)


if __name__ == "__main__":
    main()
