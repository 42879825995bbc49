#!/usr/bin/python3
"""run.py — membership benchmark: N HashiCorp serf agents (gossip encryption on)
beside N p2p nodes, one process each on 127.0.0.1, in the same run.

For each N and each system, one after the other (never two systems at once):

  cold start   all N started at once -> every node sees the N-1 others as members
               (serf: clock from the launch of the last agent; p2p: from the last
               node's first 200 on GET /health, so the vault's key derivation is not
               counted); false "failed"/"dead" events and suspicions on the way
  steady state bytes on `lo` over a full anti-entropy period / N, RSS and PSS per node,
               CPU of all nodes (% of one core) over the same window
  join         one more node -> 99 % and 100 % of the N nodes log it alive
  kill -9      SIGKILL one node -> first suspicion, 99 % and 100 % of the others
               log it failed/dead
  p2p only     N first-boot enrollments at once (join token with N uses), timed on
               a line of their own; the measured cluster is then restarted already
               enrolled.

Membership is observed from the nodes' own logs, read through one pipe per process
and timestamped on arrival (time.monotonic()):
  serf  "serf: EventMemberJoin|Failed|Leave|Reap: NAME ADDR", "memberlist: Suspect NAME ..."
  p2p   "[membership] NODE alive|suspect|dead|left (incarnation N)"
`serf members` and p2p's GET /cluster/nodes are used only for spot checks.

The whole run happens in a network namespace of its own (unshare --net, as root), so
`lo` carries nothing but the benchmark's traffic and fixed ports cannot collide with
anything else on the machine; --no-netns runs on the host's lo instead.

Standard library only; runs under /usr/bin/python3. See bench/README.md, "Membership".
"""

import argparse
import base64
import bisect
import http.client
import json
import math
import os
import random
import re
import resource
import select
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NETNS_ENV = "P2P_BM_IN_NETNS"

# The original framework's figures, from its guide.
ORIGINAL = {
    "cold": "5-30 s gossip rounds",
    "false": "-",
    "join": "next round: 5-30 s",
    "kill": "suspect 30 s, dead 60 s",
    "traffic": "full node list / 5-30 s",
    "rss": "-",
    "cpu": "-",
}
# memberlist's LAN profile (serf's default): push-pull every 30 s, scaled with N.
SERF_PUSH_PULL_S = 30
P2P_ANTI_ENTROPY_MAX_S = 30          # p2p: adaptive 5-30 s (gossip_interval_max), x push-pull scale
P2P_ANTI_ENTROPY_RAMP_S = 5 + 10 + 20  # p2p: quiet rounds before the interval reaches its maximum

GOOD = ("alive", "suspect")          # still a member (serf members shows a suspect as alive)


def log(msg):
    print(f"membership: {msg}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


def _on_term(signum, frame):
    raise Interrupted(f"signal {signum}")


# ---------------------------------------------------------------- /proc readers

def read_lo():
    """(rx_bytes, rx_packets, tx_bytes, tx_packets) of lo in this network namespace."""
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                v = rest.split()
                return int(v[0]), int(v[1]), int(v[8]), int(v[9])
    raise RuntimeError("no lo in /proc/net/dev")


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        v = s[s.rindex(")") + 2:].split()
        return int(v[11]) + int(v[12])       # utime + stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None


def status_kb(pid, fields=("VmRSS", "RssAnon", "RssFile")):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in fields:
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_busy(seconds=1.0):
    """% of all CPUs busy over `seconds` (machine-wide)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


# ---------------------------------------------------------------- processes

class Proc:
    def __init__(self, name, argv, env, system):
        self.name = name
        self.argv = argv
        self.env = env
        self.system = system
        self.popen = None
        self.t_launch = None
        self.t_ready = None
        self.tail = []                       # last lines of its log

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None


class Runner:
    """Starts, watches and stops the processes of one run; reads their logs."""

    def __init__(self, rawlog_path):
        self.procs = []                      # every Proc ever started (for cleanup)
        self.reader = None
        # Every line of every node, only with --keep-tmp (a flapping N=500 serf logs millions).
        self.rawlog = open(rawlog_path, "a", buffering=1 << 16) if rawlog_path else None

    def spawn(self, proc, tracker):
        env = dict(os.environ)
        for k, v in proc.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        # setpriv --pdeathsig: the child is SIGKILLed if this script dies (even by
        # SIGKILL), so nothing outlives the run. Own session: Ctrl-C reaches only us.
        argv = ["setpriv", "--pdeathsig", "KILL", "--"] + proc.argv
        tracker.reset_observer(proc.name)
        proc.popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True, close_fds=True)
        proc.t_launch = time.monotonic()
        proc.t_ready = None
        self.procs.append(proc)
        self.reader.add(proc)
        return proc

    def send(self, proc, sig):
        if proc.alive():
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, procs, sig=signal.SIGTERM, grace=15.0):
        """Signal all, wait up to `grace` s in all, SIGKILL the rest, reap. -> exit codes."""
        procs = [p for p in procs if p.popen is not None]
        for p in procs:
            self.send(p, sig)
        deadline = time.monotonic() + grace
        for p in procs:
            while p.popen.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        killed = 0
        for p in procs:
            if p.popen.poll() is None:
                killed += 1
                self.send(p, signal.SIGKILL)
        codes = {}
        for p in procs:
            try:
                codes[p.name] = p.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                codes[p.name] = None
        return codes, killed

    def cleanup(self):
        live = [p for p in self.procs if p.alive()]
        if live:
            log(f"stopping {len(live)} process(es) still running ...")
            self.stop(live, grace=10.0)
        if self.rawlog:
            try:
                self.rawlog.close()
            except OSError:
                pass


class Tracker:
    """Membership views of every observer, fed by the Reader, plus the incremental
    check "every observer sees every expected member as a member"."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []                     # (t, observer, member, state)
        self.views = {}                      # observer -> {member: state}
        self.expected = set()
        self.good = {}                       # observer -> members of expected-{self} in GOOD
        self.full = set()
        self.converged_at = None
        self.warn = {}                       # normalized WARN/ERROR line -> count
        self.lines = 0

    def reset_observer(self, name):
        with self.lock:
            self.views[name] = {}
            self.good[name] = 0
            self.full.discard(name)

    def set_expected(self, names):
        with self.lock:
            self.expected = set(names)
            self.converged_at = None
            self.full = set()
            for obs in self.expected:
                view = self.views.get(obs, {})
                g = sum(1 for m in self.expected if m != obs and view.get(m) in GOOD)
                self.good[obs] = g
                if g == len(self.expected) - 1:
                    self.full.add(obs)
            if self.expected and len(self.full) == len(self.expected):
                self.converged_at = time.monotonic()

    def event(self, t, obs, member, state):
        with self.lock:
            self.events.append((t, obs, member, state))
            view = self.views.setdefault(obs, {})
            old = view.get(member)
            if state == "reaped":
                view.pop(member, None)
            else:
                view[member] = state
            if obs in self.expected and member in self.expected and member != obs:
                was, now = old in GOOD, state in GOOD
                if was != now:
                    self.good[obs] = self.good.get(obs, 0) + (1 if now else -1)
                    if self.good[obs] == len(self.expected) - 1:
                        self.full.add(obs)
                    else:
                        self.full.discard(obs)
                    if len(self.full) == len(self.expected) and self.converged_at is None:
                        self.converged_at = t

    def warning(self, text):
        key = re.sub(r"\d+", "#", text)[:160]
        with self.lock:
            self.warn[key] = self.warn.get(key, 0) + 1

    def snapshot_events(self, since_t):
        # The reader appends in arrival order, so the list is sorted by time.
        with self.lock:
            i = bisect.bisect_left(self.events, since_t, key=lambda e: e[0])
            return self.events[i:]

    def clear_events(self):
        with self.lock:
            self.events = []

    def has_events_since(self, t):
        with self.lock:
            return bool(self.events) and self.events[-1][0] >= t

    def view_sizes(self, observers):
        with self.lock:
            return {o: self.good.get(o, 0) for o in observers}

    def take_warnings(self):
        with self.lock:
            w, self.warn = self.warn, {}
        return w


# serf:  "    2026/11/21 02:30:59 [INFO] serf: EventMemberJoin: s1 127.0.0.1"
SERF_EV = re.compile(rb"serf: EventMember(Join|Failed|Leave|Reap|Update): (\S+)")
SERF_SUSPECT = re.compile(rb"memberlist: Suspect (\S+) has failed")
SERF_STATE = {b"Join": "alive", b"Failed": "dead", b"Leave": "left", b"Reap": "reaped"}
SERF_WARN = re.compile(rb"\[(WARN|ERR)\] (.*)")
# p2p:   "2026-11-21T02:24:03.232Z INFO  [membership] worker-7 alive (incarnation 1)"
P2P_EV = re.compile(rb"\[membership\] (\S+) (alive|suspect|dead|left) \(incarnation (\d+)\)")
P2P_WARN = re.compile(rb"^\S+ (WARN|ERROR) +(.*)")


def parse_serf(line):
    m = SERF_EV.search(line)
    if m:
        st = SERF_STATE.get(m.group(1))
        return (m.group(2).decode(errors="replace"), st) if st else None
    m = SERF_SUSPECT.search(line)
    if m:
        return m.group(1).decode(errors="replace"), "suspect-local"
    return None


def parse_p2p(line):
    m = P2P_EV.search(line)
    if m:
        return m.group(1).decode(errors="replace"), m.group(2).decode()
    return None


class Reader(threading.Thread):
    """One thread, one epoll over every child's stdout+stderr pipe."""

    def __init__(self, tracker, rawlog):
        super().__init__(daemon=True)
        self.tracker = tracker
        self.rawlog = rawlog
        self.ep = select.epoll()
        self.lock = threading.Lock()
        self.fds = {}
        self.stopping = False

    def add(self, proc):
        fd = proc.popen.stdout.fileno()
        os.set_blocking(fd, False)
        with self.lock:
            self.fds[fd] = (proc, bytearray())
        self.ep.register(fd, select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR)

    def run(self):
        while not self.stopping:
            try:
                evs = self.ep.poll(0.1)
            except InterruptedError:
                continue
            t = time.monotonic()
            for fd, _ in evs:
                with self.lock:
                    ent = self.fds.get(fd)
                if ent is None:
                    continue
                proc, buf = ent
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    try:
                        self.ep.unregister(fd)
                    except (OSError, ValueError):
                        pass
                    with self.lock:
                        self.fds.pop(fd, None)
                    if buf:
                        self.line(proc, t, bytes(buf))
                    proc.popen.stdout.close()
                    continue
                buf += data
                while True:
                    i = buf.find(b"\n")
                    if i < 0:
                        break
                    line = bytes(buf[:i])
                    del buf[:i + 1]
                    self.line(proc, t, line)

    def line(self, proc, t, line):
        tr = self.tracker
        tr.lines += 1
        if self.rawlog:
            try:
                self.rawlog.write(f"{t:.3f} {proc.name}: {line.decode(errors='replace')}\n")
            except (OSError, ValueError):
                pass
        proc.tail.append(line)
        if len(proc.tail) > 12:
            del proc.tail[0]
        if proc.system == "serf":
            ev = parse_serf(line)
            w = SERF_WARN.search(line)
        else:
            ev = parse_p2p(line)
            w = P2P_WARN.search(line)
        if ev:
            tr.event(t, proc.name, ev[0], ev[1])
        elif w and b"new cluster:" not in line:     # p2p's first-boot notices are expected
            tr.warning(w.group(1).decode() + " " + w.group(2).decode(errors="replace").strip())


# ---------------------------------------------------------------- helpers

def sleep_until(cond, timeout, step=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def pct_time(times, n, frac):
    """Time by which ceil(frac*n) of n observers had it (None if not reached)."""
    need = max(1, math.ceil(frac * n - 1e-9))
    ts = sorted(times)
    return ts[need - 1] if len(ts) >= need else None


def push_pull_scale(interval, n):
    """memberlist's pushPullScale: the push-pull interval grows with log2(N) above 32."""
    if n <= 32:
        return interval
    return interval * (math.ceil(math.log2(n) - math.log2(32)) + 1)


def r2(x):
    return None if x is None else round(x, 3)


def ssl_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def https_get(port, path, ctx, token=None, timeout=2.0):
    """(status, body bytes) or (None, error text)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=hdrs)
        r = conn.getresponse()
        return r.status, r.read()
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)
    finally:
        conn.close()


class SystemRun:
    """Common flow of one system at one N; the subclasses know how to start nodes."""

    system = "?"

    def __init__(self, args, n, tmp, runner, tracker):
        self.args = args
        self.n = n
        self.tmp = tmp
        self.runner = runner
        self.tracker = tracker
        self.res = {"system": self.system, "n": n, "notes": []}
        self.rng = random.Random(args.seed * 1000 + n)
        self.nodes = []                      # the N cluster members (Proc), [0] = seed
        self.joiner = None

    def note(self, text):
        self.res["notes"].append(text)
        log(f"{self.system} N={self.n}: note: {text}")

    def names(self):
        return [p.name for p in self.nodes]

    # -- the phases
    def run(self):
        busy = cpu_busy(1.0)
        self.res["cpu_busy_before_pct"] = round(busy, 1)
        if busy > 10:
            self.note(f"machine {busy:.0f}% busy (all CPUs, 1 s) before this run: "
                      f"times are noisy")
        ok = self.setup()
        if ok is False:
            return self.res
        self.cold_start()
        if self.res.get("membership") is False:
            self.steady()
            return self.res
        self.spot_check()
        self.steady()
        self.join()
        self.kill()
        return self.res

    def wait_converged(self, t0, timeout):
        tr = self.tracker
        sleep_until(lambda: tr.converged_at is not None, timeout, step=0.02)
        return tr.converged_at

    def cold_start(self):
        a, tr, n = self.args, self.tracker, self.n
        t_clock = self.start_cluster()
        if t_clock is None:
            return
        cs = self.res["cold_start"]
        if self.res.get("membership") is False:
            return
        conv = self.wait_converged(t_clock, a.converge_timeout)
        t_end = conv if conv is not None else time.monotonic()
        evs = tr.snapshot_events(self.t_first_launch)
        names = set(self.names())
        dead = [e for e in evs if e[0] <= t_end and e[3] == "dead" and e[2] in names]
        susp = [e for e in evs if e[0] <= t_end and e[3] in ("suspect", "suspect-local")
                and e[2] in names]
        cs.update({
            "converged": conv is not None,
            "seconds": r2(max(0.0, conv - t_clock)) if conv is not None else None,
            "raw_seconds": r2(conv - t_clock) if conv is not None else None,
            "from_first_launch_s": r2(conv - self.t_first_launch) if conv is not None else None,
            "timeout_s": a.converge_timeout,
            "false_dead_events": len(dead),
            "false_dead_members": len({e[2] for e in dead}),
            "suspect_events": len(susp),
        })
        if conv is not None and conv < t_clock:
            self.note(f"converged {t_clock - conv:.3f} s before the clock started (reported as 0)")
        if conv is None:
            sizes = tr.view_sizes(self.names())
            vals = sorted(sizes.values())
            cs["nodes_seeing_all"] = sum(1 for v in vals if v == n - 1)
            cs["view_min"] = vals[0] + 1 if vals else None
            cs["view_median"] = statistics.median(vals) + 1 if vals else None
            self.note(f"cold start did not converge in {a.converge_timeout} s: "
                      f"{cs['nodes_seeing_all']}/{n} nodes saw all {n}; smallest view "
                      f"{cs['view_min']}, median {cs['view_median']}")
        log(f"{self.system} N={n}: cold start: {cs}")
        dead_procs = [p.name for p in self.nodes if not p.alive()]
        if dead_procs:
            self.note(f"{len(dead_procs)} node(s) exited during the cold start: "
                      f"{', '.join(dead_procs[:5])}; last log line of {dead_procs[0]}: "
                      f"{self.tail(dead_procs[0])}")

    def tail(self, name):
        for p in reversed(self.runner.procs):
            if p.name == name and p.tail:
                return p.tail[-1].decode(errors="replace").strip()[:200]
        return "(no output)"

    def steady(self):
        a, n = self.args, self.n
        settle = a.settle + self.ramp()
        log(f"{self.system} N={n}: settling {settle:.0f} s ...")
        self.tracker.clear_events()          # the cold start is analysed; views stay
        time.sleep(settle)
        window = a.traffic_window or self.default_window()
        procs = [p for p in self.nodes if p.alive()]
        if not procs:
            return
        log(f"{self.system} N={n}: steady state: {window:.0f} s window (lo bytes, CPU) ...")
        t_ev0 = time.monotonic()
        lo0 = read_lo()
        c0 = {p.name: cpu_ticks(p.pid) for p in procs}
        t0 = time.monotonic()
        time.sleep(window)
        t1 = time.monotonic()
        lo1 = read_lo()
        c1 = {p.name: cpu_ticks(p.pid) for p in procs}
        dt = t1 - t0
        procs = [p for p in procs if p.alive()]
        ticks = sum(c1[p.name] - c0[p.name] for p in procs
                    if c1.get(p.name) is not None and c0.get(p.name) is not None)
        rss, anon, pss = [], [], []
        for p in procs:
            st = status_kb(p.pid)
            if "VmRSS" in st:
                rss.append(st["VmRSS"])
                anon.append(st.get("RssAnon", 0))
            ps = pss_kb(p.pid)
            if ps is not None:
                pss.append(ps)
        k = len(procs)
        tx_b, tx_p = lo1[2] - lo0[2], lo1[3] - lo0[3]
        evs = self.tracker.snapshot_events(t_ev0)
        names = set(self.names())
        dead = [e for e in evs if e[3] == "dead" and e[2] in names]
        s = {
            "window_s": round(dt, 2),
            "nodes": k,
            "lo_tx_bytes": tx_b,
            "lo_tx_packets": tx_p,
            "kbit_s_per_node": round(tx_b * 8 / 1000 / dt / max(1, k), 3),
            "packets_s_per_node": round(tx_p / dt / max(1, k), 2),
            "rss_mib_per_node": round(sum(rss) / 1024 / max(1, len(rss)), 2) if rss else None,
            "rss_anon_mib_per_node": round(sum(anon) / 1024 / max(1, len(anon)), 2) if anon else None,
            "pss_mib_per_node": round(sum(pss) / 1024 / max(1, len(pss)), 2) if pss else None,
            "rss_mib_total": round(sum(rss) / 1024, 1),
            "cpu_pct_one_core": round(100.0 * ticks / CLK_TCK / dt, 2),
            "false_dead_events": len(dead),
        }
        if k != n:
            self.note(f"steady state measured over {k} running nodes, not {n}")
        self.res["steady"] = s
        log(f"{self.system} N={n}: steady: {s}")

    def join(self):
        a, n, tr = self.args, self.n, self.tracker
        log(f"{self.system} N={n}: join of one more node ...")
        t_launch = time.monotonic()
        t0 = self.start_joiner()
        if t0 is None:
            return
        jn = self.joiner.name
        observers = [p.name for p in self.nodes if p.alive()]

        def reached():
            evs = tr.snapshot_events(t_launch)
            first = {}
            for t, obs, m, st in evs:
                if m == jn and st == "alive" and obs in observers and obs not in first:
                    first[obs] = t
            return first
        sleep_until(lambda: len(reached()) >= len(observers), a.join_timeout, step=0.05)
        first = reached()
        times = [t - t0 for t in first.values()]
        # the joiner's own view: all N others?
        evs = tr.snapshot_events(t_launch)
        seen = {}
        for t, obs, m, st in evs:
            if obs == jn and st == "alive" and m in observers and m not in seen:
                seen[m] = t
        j = {
            "observers": len(observers),
            "reached": len(first),
            "p99_s": r2(pct_time(times, len(observers), 0.99)),
            "p100_s": r2(max(times)) if len(first) == len(observers) else None,
            "first_s": r2(min(times)) if times else None,
            "joiner_sees_all_s": r2(max(seen.values()) - t0) if len(seen) == len(observers) else None,
            "clock": self.join_clock,
        }
        if times and min(times) < 0:
            self.note(f"join: first node logged the joiner {-min(times):.3f} s before the clock started")
        if len(first) < len(observers):
            self.note(f"join: only {len(first)}/{len(observers)} nodes logged the joiner alive "
                      f"within {a.join_timeout} s")
        self.res["join"] = j
        log(f"{self.system} N={n}: join: {j}")

    def kill(self):
        a, n, tr = self.args, self.n, self.tracker
        cands = [p for p in self.nodes[1:] if p.alive()]
        if not cands:
            return
        victim = self.rng.choice(cands)
        observers = [p.name for p in self.nodes + [self.joiner]
                     if p is not None and p is not victim and p.alive()]
        log(f"{self.system} N={n}: kill -9 {victim.name} ...")
        t0 = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)

        def marked():
            evs = tr.snapshot_events(t0)
            first = {}
            for t, obs, m, st in evs:
                if m == victim.name and st == "dead" and obs in observers and obs not in first:
                    first[obs] = t
            return first
        sleep_until(lambda: len(marked()) >= len(observers), a.kill_timeout, step=0.05)
        first = marked()
        evs = tr.snapshot_events(t0)
        susp = [t for t, obs, m, st in evs if m == victim.name and st in ("suspect", "suspect-local")]
        others = set(self.names()) | {self.joiner.name if self.joiner else ""}
        false = [e for e in evs if e[3] == "dead" and e[2] != victim.name and e[2] in others]
        times = [t - t0 for t in first.values()]
        k = {
            "victim": victim.name,
            "observers": len(observers),
            "reached": len(first),
            "first_suspect_s": r2(min(susp) - t0) if susp else None,
            "first_dead_s": r2(min(times)) if times else None,
            "p99_s": r2(pct_time(times, len(observers), 0.99)),
            "p100_s": r2(max(times)) if len(first) == len(observers) else None,
            "false_dead_events": len(false),
        }
        if len(first) < len(observers):
            self.note(f"kill -9: only {len(first)}/{len(observers)} nodes marked {victim.name} "
                      f"dead within {a.kill_timeout} s")
        self.res["kill"] = k
        victim.popen.wait(timeout=10)
        log(f"{self.system} N={n}: kill: {k}")

    def finish(self):
        w = self.tracker.take_warnings()     # before the stop: its own warnings are noise
        live = [p for p in self.runner.procs if p.system == self.system and p.alive()]
        if live:
            log(f"{self.system} N={self.n}: stopping {len(live)} node(s) ...")
            self.runner.stop(live, grace=20.0)
        self.tracker.take_warnings()
        if w:
            top = sorted(w.items(), key=lambda kv: -kv[1])[:4]
            self.res["log_warnings"] = {k: v for k, v in top}
            self.res["log_warnings_total"] = sum(w.values())


# ---------------------------------------------------------------- serf

class SerfRun(SystemRun):
    system = "serf"
    join_clock = "launch of the joining agent"

    def __init__(self, *a):
        super().__init__(*a)
        self.key = base64.b64encode(os.urandom(self.args.serf_key_bytes)).decode()
        pb = self.args.port_base
        self.port = lambda i: pb + i
        self.rpc = lambda i: pb + 3000 + i

    def default_window(self):
        return push_pull_scale(SERF_PUSH_PULL_S, self.n)

    def ramp(self):
        return 0

    def make(self, i):
        argv = [self.args.serf_bin, "agent", f"-node=s{i}", f"-bind=127.0.0.1:{self.port(i)}",
                f"-rpc-addr=127.0.0.1:{self.rpc(i)}", f"-encrypt={self.key}", "-log-level=info"]
        if i > 0:
            argv += [f"-retry-join=127.0.0.1:{self.port(0)}",
                     f"-retry-interval={self.args.serf_retry_interval}"]
        return Proc(f"s{i}", argv, {}, "serf")

    def setup(self):
        self.res["cold_start"] = {"clock": "launch of the last agent"}
        self.res["encryption"] = f"AES-{self.args.serf_key_bytes * 8} (-encrypt, {self.args.serf_key_bytes}-byte key)"
        return True

    def start_cluster(self):
        n, tr = self.n, self.tracker
        tr.set_expected([f"s{i}" for i in range(n)])
        seed = self.runner.spawn(self.make(0), tr)
        self.nodes = [seed]
        self.t_first_launch = seed.t_launch
        # The seed first (the others -retry-join it), as an operator would.
        if not sleep_until(lambda: "s0" in tr.views.get("s0", {}) or not seed.alive(), 15, 0.01) \
                or not seed.alive():
            self.note(f"seed agent did not start: {self.tail('s0')}")
            return None
        for i in range(1, n):
            self.nodes.append(self.runner.spawn(self.make(i), tr))
        t_last = time.monotonic()
        self.res["cold_start"]["launch_spread_s"] = r2(t_last - self.t_first_launch)
        return t_last

    def start_joiner(self):
        self.joiner = self.runner.spawn(self.make(self.n), self.tracker)
        self.join_clock = "launch of the joining agent"
        return self.joiner.t_launch

    def spot_check(self):
        picks = [self.nodes[0]] + self.rng.sample(self.nodes[1:], min(2, self.n - 1))
        out = []
        for p in picks:
            i = int(p.name[1:])
            try:
                r = subprocess.run([self.args.serf_bin, "members", f"-rpc-addr=127.0.0.1:{self.rpc(i)}",
                                    "-status=alive"], capture_output=True, text=True, timeout=10)
                cnt = len([l for l in r.stdout.splitlines() if l.strip()])
            except (subprocess.TimeoutExpired, OSError) as e:
                cnt = f"error: {e}"
            out.append((p.name, cnt))
            if cnt != self.n:
                self.note(f"spot check: `serf members -status=alive` on {p.name} lists {cnt}, not {self.n}")
        self.res["spot_check"] = {k: v for k, v in out}


# ---------------------------------------------------------------- p2p

class P2PRun(SystemRun):
    system = "p2p"
    join_clock = "first 200 from the joining node's /health"

    def __init__(self, *a):
        super().__init__(*a)
        pb = self.args.port_base
        self.port = lambda i: pb + 6000 + i
        self.dir = os.path.join(self.tmp, f"p2p-{self.n}")
        self.keyfile = os.path.join(self.dir, "admin.key")
        self.cdir = os.path.join(self.dir, "c0")
        self.ca = os.path.join(self.cdir, "certs", "ca.crt")
        self.password = base64.b64encode(os.urandom(12)).decode()
        self.token = None
        self.ctx = None

    def default_window(self):
        return push_pull_scale(P2P_ANTI_ENTROPY_MAX_S, self.n)

    def ramp(self):
        """After a change the push-pull interval restarts at 5 s and doubles each quiet
        round: the window starts once it is back at its maximum."""
        return push_pull_scale(P2P_ANTI_ENTROPY_RAMP_S, self.n)

    def make(self, i, join_token=None):
        base = [self.args.p2p_bin, "agent"]
        if i == 0:
            name = "c0"
            argv = base + ["--coordinator", "--node-id", name, "--port", str(self.port(0)),
                           "--bind-address", "127.0.0.1", "--data-dir", self.cdir,
                           "--admin-api-key-file", self.keyfile]
        else:
            name = f"w{i}"
            argv = base + ["--worker", "--node-id", name, "--port", str(self.port(i)),
                           "--bind-address", "127.0.0.1",
                           "--data-dir", os.path.join(self.dir, name),
                           "--coordinator-addresses", f"127.0.0.1:{self.port(0)}",
                           "--enroll-challenge-port", "0"]
        argv += self.args.p2p_flags.split()
        # P2P_JOIN_TOKEN only on a first boot (None = removed from the environment).
        env = {"P2P_VAULT_PASSWORD": self.password, "P2P_JOIN_TOKEN": join_token}
        return Proc(name, argv, env, "p2p")

    def wait_health(self, procs, deadline_s):
        """Poll GET /health of every proc until 200 (sets proc.t_ready). -> failed list."""
        pending = {p.name: p for p in procs}
        failed = []
        deadline = time.monotonic() + deadline_s

        def once(p):
            st, _ = https_get(self.port(self.index(p)), "/health", self.ctx, timeout=2.0)
            return time.monotonic() if st == 200 else None
        with ThreadPoolExecutor(max_workers=16) as ex:
            while pending and time.monotonic() < deadline:
                for name, p in list(pending.items()):
                    if not p.alive():
                        failed.append(p)
                        del pending[name]
                if self.ctx is None:
                    if os.path.exists(self.ca):
                        self.ctx = ssl_ctx(self.ca)
                    else:
                        time.sleep(0.02)
                        continue
                ps = list(pending.values())
                for p, t in zip(ps, ex.map(once, ps)):
                    if t is not None:
                        p.t_ready = t
                        del pending[p.name]
                if pending:
                    time.sleep(0.02)
        return failed + list(pending.values())

    @staticmethod
    def index(p):
        return 0 if p.name == "c0" else int(p.name[1:])

    def cli(self, *argv, timeout=30):
        env = dict(os.environ, P2P_VAULT_PASSWORD=self.password)
        r = subprocess.run([self.args.p2p_bin] + list(argv), capture_output=True, text=True,
                           timeout=timeout, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"p2p {' '.join(argv[:3])} failed ({r.returncode}): "
                               f"{(r.stderr or r.stdout).strip()[:300]}")
        return r.stdout.strip().splitlines()[-1].strip()

    def setup(self):
        """First boot: coordinator, a join token with N uses, N workers enrolling at once
        (N-1 cluster members + the node that joins later), then all stopped."""
        a, n, tr = self.args, self.n, self.tracker
        os.makedirs(self.dir, exist_ok=True)
        fb = self.res["first_boot"] = {}
        log(f"p2p N={n}: first boot of the coordinator ...")
        c = self.runner.spawn(self.make(0), tr)
        bad = self.wait_health([c], 60)
        if bad:
            self.note(f"coordinator did not start: {self.tail('c0')}")
            self.res["error"] = "coordinator did not start"
            return False
        try:
            jt = self.cli("token", "create", "--join", "--uses", str(n), "--ttl", "3600",
                          "--addr", f"127.0.0.1:{self.port(0)}", "--ca", self.ca,
                          "--api-key-file", self.keyfile)
            self.token = self.cli("token", "--addr", f"127.0.0.1:{self.port(0)}", "--ca", self.ca,
                                  "--api-key-file", self.keyfile)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            self.note(str(e))
            self.res["error"] = "token creation failed"
            return False
        log(f"p2p N={n}: {n} workers enroll at once (first boot, join token with {n} uses) ...")
        workers = [self.make(i, jt) for i in range(1, n + 1)]
        for w in workers:
            self.runner.spawn(w, tr)
        t_first, t_last = workers[0].t_launch, workers[-1].t_launch
        bad = self.wait_health(workers, a.health_deadline or (60 + 0.5 * n))
        ready = [w.t_ready for w in workers if w.t_ready is not None]
        fb.update({
            "workers": n,
            "enrolled": len(ready),
            "failed": len(bad),
            "last_health_after_last_launch_s": r2(max(ready) - t_last) if ready else None,
            "last_health_after_first_launch_s": r2(max(ready) - t_first) if ready else None,
            "median_health_after_launch_s": r2(statistics.median(w.t_ready - w.t_launch for w in workers
                                                                 if w.t_ready)) if ready else None,
        })
        if bad:
            self.note(f"first boot: {len(bad)} of {n} workers did not answer /health "
                      f"(e.g. {bad[0].name}: {self.tail(bad[0].name)})")
        log(f"p2p N={n}: first boot: {fb}")
        # Does this build have membership at all?
        st, body = https_get(self.port(0), "/cluster/nodes", self.ctx, self.token)
        self.res["cluster_nodes_status"] = st
        if st == 404:
            self.res["membership"] = False
            self.note("p2p: /cluster/nodes not available (membership not built)")
        codes, killed = self.runner.stop([c] + workers, grace=20.0)
        nz = {k: v for k, v in codes.items() if v not in (0,)}
        if nz or killed:
            self.note(f"first boot: on SIGTERM {killed} node(s) had to be killed, "
                      f"{len(nz)} exited non-zero (e.g. {list(nz.items())[:3]})")
        self.enrolled = [w for w in workers if w.t_ready is not None]
        if len(self.enrolled) < n:
            self.res["error"] = "not all workers enrolled"
            return False
        return True

    def start_cluster(self):
        a, n, tr = self.args, self.n, self.tracker
        tr.set_expected(["c0"] + [f"w{i}" for i in range(1, n)])
        log(f"p2p N={n}: cold start (already enrolled): coordinator, then {n - 1} workers at once ...")
        c = self.runner.spawn(self.make(0), tr)
        self.t_first_launch = c.t_launch
        if self.wait_health([c], 60):
            self.note(f"coordinator did not restart: {self.tail('c0')}")
            return None
        self.nodes = [c]
        for i in range(1, n):
            self.nodes.append(self.runner.spawn(self.make(i), tr))
        t_last_launch = time.monotonic()
        bad = self.wait_health(self.nodes[1:], a.health_deadline or (60 + 0.5 * n))
        ready = [p.t_ready for p in self.nodes if p.t_ready is not None]
        cs = self.res["cold_start"] = {"clock": "last node's first 200 from /health"}
        t_clock = max(ready)
        cs["last_health_after_last_launch_s"] = r2(t_clock - t_last_launch)
        cs["launch_spread_s"] = r2(t_last_launch - self.t_first_launch)
        if bad:
            self.note(f"cold start: {len(bad)} node(s) did not answer /health "
                      f"(e.g. {bad[0].name}: {self.tail(bad[0].name)})")
        if self.res.get("membership") is False:
            # Nothing to converge; give the log a moment in case it is there after all.
            time.sleep(2)
            if any(e[3] in GOOD for e in tr.snapshot_events(self.t_first_launch)):
                self.note("p2p: /cluster/nodes answers 404 but [membership] lines are logged")
                self.res["membership"] = None
            else:
                cs["converged"] = None
                return t_clock
        return t_clock

    def wait_converged(self, t0, timeout):
        # Degrade clearly when the nodes log no membership at all.
        tr = self.tracker
        first = min(timeout, self.args.no_membership_after)
        sleep_until(lambda: tr.converged_at is not None or tr.has_events_since(self.t_first_launch),
                    first, step=0.05)
        if tr.converged_at is None and not tr.has_events_since(self.t_first_launch):
            self.note(f"p2p: no [membership] line logged within {first} s of the cold start "
                      f"(membership not built?)")
            self.res["membership"] = False
            return None
        return super().wait_converged(t0, max(0.0, timeout - (time.monotonic() - t0)))

    def start_joiner(self):
        # w{N}: enrolled at the first boot, not started since.
        self.joiner = self.runner.spawn(self.make(self.n), self.tracker)
        if self.wait_health([self.joiner], 60):
            self.note(f"joiner did not start: {self.tail(self.joiner.name)}")
            return None
        return self.joiner.t_ready

    def spot_check(self):
        picks = [self.nodes[0]] + self.rng.sample(self.nodes[1:], min(2, self.n - 1))
        out = {}
        for p in picks:
            st, body = https_get(self.port(self.index(p)), "/cluster/nodes", self.ctx, self.token, 5.0)
            if st != 200:
                out[p.name] = f"HTTP {st}: {body[:100] if isinstance(body, (bytes, str)) else ''}"
                self.note(f"spot check: GET /cluster/nodes on {p.name}: {out[p.name]}")
                continue
            try:
                doc = json.loads(body)
                alive = [x for x in doc.get("nodes", [])
                         if x.get("status") == "alive" and x.get("node_id") != doc.get("self")]
                out[p.name] = len(alive) + 1
            except (ValueError, AttributeError) as e:
                out[p.name] = f"bad JSON: {e}"
            if out[p.name] != self.n:
                self.note(f"spot check: /cluster/nodes on {p.name} lists {out[p.name]} alive "
                          f"(self included), not {self.n}")
        self.res["spot_check"] = out


# ---------------------------------------------------------------- report

TARGETS = {
    "cold": "N=200: <= 5 s, 0 false deaths; N=500: converges",
    "join": "100 % <= 1 s",
    "kill": "100 % <= 6 s (half of serf's)",
    "traffic": "<= serf's (encrypted)",
    "rss": "<= 8 MiB (half of serf's)",
}


def g(d, *path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fs(x, unit=" s"):
    return "-" if x is None else f"{x:.2f}{unit}"


def verdicts(n, p, s):
    """Per target: 'MET' / 'NOT MET' / 'n/a ...', for p2p against the targets."""
    v = {}
    if not p or p.get("membership") is False or p.get("error"):
        why = "not measured" if not p else ("membership not built" if p.get("membership") is False
                                            else p.get("error"))
        for k in ("cold", "join", "kill", "traffic"):
            v[k] = f"n/a ({why})"
    else:
        cs = p.get("cold_start", {})
        if n == 200:
            ok = cs.get("converged") and cs.get("seconds") is not None and cs["seconds"] <= 5 \
                and cs.get("false_dead_events") == 0
            v["cold"] = "MET" if ok else "NOT MET"
        elif n == 500:
            v["cold"] = "MET" if cs.get("converged") else "NOT MET"
        else:
            v["cold"] = "(targets at N=200/500)"
        j = g(p, "join", "p100_s")
        v["join"] = "MET" if j is not None and j <= 1.0 else "NOT MET"
        k = g(p, "kill", "p100_s")
        ks = g(s, "kill", "p100_s") if s else None
        ok = k is not None and k <= 6.0
        v["kill"] = ("MET" if ok else "NOT MET") + (f" ({k / ks:.2f}x serf)" if k and ks else "")
        tp, ts = g(p, "steady", "kbit_s_per_node"), g(s, "steady", "kbit_s_per_node") if s else None
        if tp is None or ts is None:
            v["traffic"] = "n/a (serf not measured)" if ts is None else "NOT MET"
        else:
            ratio = f" ({tp / ts:.2f}x serf)" if ts else ""
            v["traffic"] = ("MET" if tp <= ts else "NOT MET") + ratio
    rp = g(p, "steady", "rss_mib_per_node") if p else None
    rs = g(s, "steady", "rss_mib_per_node") if s else None
    if rp is None:
        v["rss"] = "n/a (not measured)"
    else:
        v["rss"] = ("MET" if rp <= 8.0 else "NOT MET") + (f" ({rp / rs:.2f}x serf)" if rs else "")
    return v


def table(n, s, p):
    def cold(r):
        if not r:
            return "not run"
        if r.get("membership") is False:
            return "n/a: no membership"
        cs = r.get("cold_start", {})
        if r.get("error"):
            return f"error: {r['error']}"
        if cs.get("converged"):
            return fs(cs.get("seconds"))
        return f"NO (>{cs.get('timeout_s')} s, {cs.get('nodes_seeing_all')}/{n} saw all)"

    def cell(r, *path, unit=" s", nd=2):
        if not r:
            return "not run"
        if r.get("membership") is False and path[0] in ("join", "kill", "cold_start"):
            return "n/a"
        x = g(r, *path)
        if x is None:
            return "-"
        return f"{x:.{nd}f}{unit}" if isinstance(x, float) else f"{x}{unit}"

    def pair(r, sect, a, b):
        if not r:
            return "not run"
        if r.get("membership") is False:
            return "n/a"
        return f"{fs(g(r, sect, a))} / {fs(g(r, sect, b))}"

    v = verdicts(n, p, s)
    rows = [
        ("cold start -> all see N", cold(s), cold(p), ORIGINAL["cold"], f"{TARGETS['cold']}: {v['cold']}"),
        ("  false failed/dead events", cell(s, "cold_start", "false_dead_events", unit=""),
         cell(p, "cold_start", "false_dead_events", unit=""), ORIGINAL["false"], "0 at N=200"),
        ("  suspicions raised (serf: own)", cell(s, "cold_start", "suspect_events", unit=""),
         cell(p, "cold_start", "suspect_events", unit=""), "-", ""),
        ("join -> 99% / 100% of nodes", pair(s, "join", "p99_s", "p100_s"),
         pair(p, "join", "p99_s", "p100_s"), ORIGINAL["join"], f"{TARGETS['join']}: {v['join']}"),
        ("kill -9 -> suspect / all dead", pair(s, "kill", "first_suspect_s", "p100_s"),
         pair(p, "kill", "first_suspect_s", "p100_s"), ORIGINAL["kill"], f"{TARGETS['kill']}: {v['kill']}"),
        ("traffic per node (tx on lo)", cell(s, "steady", "kbit_s_per_node", unit=" kbit/s"),
         cell(p, "steady", "kbit_s_per_node", unit=" kbit/s"), ORIGINAL["traffic"],
         f"{TARGETS['traffic']}: {v['traffic']}"),
        ("  measured over", cell(s, "steady", "window_s", unit=" s", nd=0),
         cell(p, "steady", "window_s", unit=" s", nd=0), "", ""),
        ("RSS per node (PSS)", rss_cell(s), rss_cell(p), ORIGINAL["rss"], f"{TARGETS['rss']}: {v['rss']}"),
        ("idle CPU, all N nodes", cell(s, "steady", "cpu_pct_one_core", unit=" % of 1 core"),
         cell(p, "steady", "cpu_pct_one_core", unit=" % of 1 core"), ORIGINAL["cpu"], ""),
    ]
    if p and p.get("first_boot"):
        fb = p["first_boot"]
        rows.append(("p2p: N first-boot enrollments", "-",
                     f"{fs(fb.get('last_health_after_last_launch_s'))} ({fb.get('enrolled')}/{n} ok)",
                     "", "clock: last launch -> last /health"))
    if p and g(p, "cold_start", "last_health_after_last_launch_s") is not None:
        rows.append(("p2p: N restarts, last /health", "-",
                     fs(g(p, "cold_start", "last_health_after_last_launch_s")), "",
                     "vault key derivation, not counted above"))
    hdr = ("N = %d" % n, "serf (encrypted)", "p2p", "original (guide)", "target for p2p: verdict")
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(5)]
    line = lambda r: "  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)).rstrip()
    out = [line(hdr), "  ".join("-" * x for x in w)] + [line(r) for r in rows]
    for sysname, r in (("serf", s), ("p2p", p)):
        for nt in (r or {}).get("notes", []):
            out.append(f"  note ({sysname}): {nt}")
        lw = (r or {}).get("log_warnings")
        if lw:
            out.append(f"  note ({sysname}): {r.get('log_warnings_total')} WARN/ERROR log lines, most "
                       f"frequent: " + "; ".join(f"{c}x {k[:90]}" for k, c in list(lw.items())[:2]))
    return "\n".join(out)


def rss_cell(r):
    if not r:
        return "not run"
    x, y = g(r, "steady", "rss_mib_per_node"), g(r, "steady", "pss_mib_per_node")
    if x is None:
        return "-"
    return f"{x:.2f} MiB ({y:.2f})" if y is not None else f"{x:.2f} MiB"


# ---------------------------------------------------------------- main

def parse_args():
    ap = argparse.ArgumentParser(
        description="Membership benchmark: N serf agents (gossip encryption on) beside N p2p "
                    "nodes on 127.0.0.1, one system at a time, in one run. See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--sizes", default="50,200,500", help="cluster sizes N, comma-separated")
    ap.add_argument("--systems", default="serf,p2p", help="serf, p2p or both")
    ap.add_argument("--p2p-bin", default=os.path.join(ROOT, "build", "p2p"), help="the p2p binary")
    ap.add_argument("--serf-bin", default=shutil.which("serf") or "/usr/bin/serf")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"),
                    help="JSON results (the table goes beside it, .txt)")
    ap.add_argument("--p2p-flags", default="--access-log false --rate-limit-enabled false",
                    help="extra `p2p agent` flags for every node; the rate limiter is off by "
                         "default because all N nodes share the client address 127.0.0.1 here "
                         "(with it on, N enrollments at once get 429s and back off)")
    ap.add_argument("--converge-timeout", type=float, default=120.0,
                    help="give up on the cold start after this many seconds")
    ap.add_argument("--join-timeout", type=float, default=30.0)
    ap.add_argument("--kill-timeout", type=float, default=90.0)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds between convergence and the steady-state window")
    ap.add_argument("--traffic-window", type=float, default=0,
                    help="steady-state window in s; 0 = a full anti-entropy period: "
                         "30 s x memberlist's push-pull scale for N (both systems); p2p also "
                         "settles (5+10+20 s) x scale first, the ramp of its adaptive interval")
    ap.add_argument("--health-deadline", type=float, default=0,
                    help="p2p: seconds for N nodes to answer /health; 0 = 60 + 0.5 N")
    ap.add_argument("--no-membership-after", type=float, default=15.0,
                    help="p2p: no [membership] line this long after the cold start = not built")
    ap.add_argument("--serf-retry-interval", default="1s",
                    help="serf -retry-interval (agents -retry-join the first one)")
    ap.add_argument("--serf-key-bytes", type=int, default=32, choices=(16, 24, 32),
                    help="serf -encrypt key size (AES-128/192/256)")
    ap.add_argument("--port-base", type=int, default=20000,
                    help="serf gossip base+i, serf RPC base+3000+i, p2p base+6000+i")
    ap.add_argument("--seed", type=int, default=1, help="random seed (which node is killed)")
    ap.add_argument("--no-netns", action="store_true",
                    help="run on the host's lo (traffic then includes everything else on lo)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (all node logs)")
    args = ap.parse_args()
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        ap.error("--sizes: comma-separated integers")
    if not args.sizes or min(args.sizes) < 3 or max(args.sizes) > 2900:
        ap.error("--sizes: each N in 3..2900")
    args.systems = [x.strip() for x in args.systems.split(",") if x.strip()]
    if not set(args.systems) <= {"serf", "p2p"} or not args.systems:
        ap.error("--systems: serf, p2p or serf,p2p")
    return args


def enter_netns(args):
    """Re-exec this script in a new network namespace (lo only, up)."""
    if args.no_netns or os.environ.get(NETNS_ENV) == "1":
        return
    if os.geteuid() != 0:
        sys.exit("membership: a network namespace needs root (unshare --net); "
                 "run as root or pass --no-netns")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        sys.exit("membership: `unshare --net` failed; pass --no-netns to run on the host's lo")
    env = dict(os.environ, **{NETNS_ENV: "1"})
    os.execvpe("unshare", ["unshare", "--net", "--", PY, os.path.abspath(__file__)] + sys.argv[1:], env)


def netns_setup():
    if os.environ.get(NETNS_ENV) != "1":
        return "host network namespace (lo shared with everything else on the machine)"
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # Ephemeral ports above the fixed ones the nodes listen on.
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("40000 60999")
    return "own network namespace (unshare --net): lo carries only this benchmark"


def main():
    args = parse_args()
    enter_netns(args)
    # SIGINT too: a shell starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_term)
    if "p2p" in args.systems and not os.access(args.p2p_bin, os.X_OK):
        sys.exit(f"membership: p2p binary not found ({args.p2p_bin}), build first or --systems serf")
    if "serf" in args.systems and not (args.serf_bin and os.access(args.serf_bin, os.X_OK)):
        sys.exit("membership: serf not found (apt-get install serf) or --systems p2p")
    for t in ("setpriv", "unshare", "ip"):
        if not shutil.which(t) and not (t != "setpriv" and args.no_netns):
            sys.exit(f"membership: {t} not found (util-linux / iproute2)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * max(args.sizes) + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    where = netns_setup() if not args.no_netns else "host network namespace (--no-netns)"
    tmp = tempfile.mkdtemp(prefix="p2p-bench-membership.")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "host": f"{os.uname().sysname} {os.uname().release} {os.uname().machine}, {os.cpu_count()} CPU(s)",
        "network": where,
        "sizes": args.sizes,
        "systems": args.systems,
        "converge_timeout_s": args.converge_timeout,
        "original_guide": ORIGINAL,
        "targets": TARGETS,
    }
    if "serf" in args.systems:
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "serf"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        except OSError:
            v = ""
        meta["serf"] = f"serf {v or '?'} (Debian), LAN profile, -encrypt {args.serf_key_bytes}-byte key, " \
                       f"-retry-join the first agent every {args.serf_retry_interval}, -log-level=info"
    if "p2p" in args.systems:
        try:
            meta["p2p"] = subprocess.run([args.p2p_bin, "version"], capture_output=True, text=True,
                                         timeout=10).stdout.strip() + f", flags: {args.p2p_flags}"
        except OSError:
            meta["p2p"] = "?"
    busy = cpu_busy(1.0)
    meta["cpu_busy_before_pct"] = round(busy, 1)
    results = {}
    texts = []
    tracker = Tracker()
    runner = Runner(os.path.join(tmp, "nodes.log") if args.keep_tmp else None)
    reader = Reader(tracker, runner.rawlog)
    runner.reader = reader
    reader.start()
    rc = 0
    out_json = os.path.abspath(args.out)
    out_txt = os.path.splitext(out_json)[0] + ".txt"
    try:
        log(f"{where}; temp dir {tmp}")
        if busy > 10:
            log(f"note: machine {busy:.0f}% busy before the run: figures will be noisy")
        for n in args.sizes:
            results[n] = {}
            for sysname in args.systems:
                log(f"===== {sysname}, N = {n} =====")
                with tracker.lock:
                    tracker.events.clear()
                    tracker.views.clear()
                    tracker.good.clear()
                cls = SerfRun if sysname == "serf" else P2PRun
                r = cls(args, n, tmp, runner, tracker)
                results[n][sysname] = r.res      # partial results survive an interrupt
                try:
                    r.run()
                finally:
                    r.finish()
            txt = table(n, results[n].get("serf"), results[n].get("p2p"))
            texts.append(txt)
            print("\n" + txt + "\n", flush=True)
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({e or 'Ctrl-C'}): cleaning up")
        meta["interrupted"] = True
        rc = 130
        if results and len(texts) < len(results):
            n = list(results)[-1]
            texts.append("(interrupted)\n" + table(n, results[n].get("serf"), results[n].get("p2p")))
    finally:
        runner.cleanup()
        reader.stopping = True
        reader.join(timeout=2)
        if args.keep_tmp:
            log(f"temp dir kept: {tmp} (all node output in nodes.log)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    meta["cpu_busy_after_pct"] = round(cpu_busy(1.0), 1)
    if results:
        os.makedirs(os.path.dirname(out_json), exist_ok=True)
        with open(out_json, "w") as f:
            json.dump({"meta": meta, "results": {str(k): v for k, v in results.items()}}, f, indent=1)
        head = (f"membership benchmark, {meta['date']}, {meta['host']}\n"
                f"{meta.get('serf', '')}\n{meta.get('p2p', '')}\n{meta['network']}; "
                f"CPU busy before/after: {meta['cpu_busy_before_pct']}% / {meta['cpu_busy_after_pct']}%\n")
        with open(out_txt, "w") as f:
            f.write(head + "\n" + "\n\n".join(texts) + "\n")
        log(f"saved {out_json} and {out_txt}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
