#!/usr/bin/env python3
"""bench/enroll.py — first-boot enrollment at scale with the DEFAULT config (issue 14).

Starts a coordinator on 127.0.0.1 with its shipped rate limits (the system tests turn
them off; this turns them back on), makes one join token with N uses, then starts N
first-boot workers at once, all from 127.0.0.1 (one address, as behind a NAT), and
measures the time from the first spawn until every worker logged "enrolled with the
coordinator". Prints one line per N: enrolled, seconds, 429s seen by workers, and the
coordinator's CPU seconds. Every process it starts is stopped by PID at the end.

Run: P2P_BIN=build/p2p /usr/bin/python3 bench/enroll.py [N ...]     (default: 50 100 200)
     BENCH_ENROLL_DEADLINE=120 (seconds per run)
"""
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "system"))
from conftest import Node  # noqa: E402

DEADLINE = float(os.environ.get("BENCH_ENROLL_DEADLINE", "120"))


def cpu_s(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def port_below_ephemeral(i, used):
    """A free TCP+UDP port under the ephemeral range: a port picked from that range and
    released can be taken by any outgoing connection before the worker binds it (at
    N = 400 that happened to ~15 workers)."""
    import socket
    p = 20000 + i
    while True:
        p += 1
        if p in used:
            continue
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        used.add(p)
        return p


def run(n, base):
    c = Node(base / "coord", name="coord", extra_args=["--rate-limit-enabled", "true"])
    ws = []
    try:
        c.start()
        token = c.create_join_token(ttl=3600, uses=n)
        used = set()
        for i in range(n):
            w = Node(base / f"w{i}", name=f"w{i:04d}", coordinator=False, join=c, join_token=token,
                     extra_args=["--gossip-interval-min", "5", "--gossip-interval-max", "30"])
            w.port = port_below_ephemeral(i, used)
            ws.append(w)
        cpu0 = cpu_s(c.pid)
        t0 = time.monotonic()
        for w in ws:
            w._spawn()
        spawned = time.monotonic() - t0
        pending = set(range(n))
        while pending and time.monotonic() - t0 < DEADLINE:
            for i in list(pending):
                if "enrolled with the coordinator" in ws[i].stderr():
                    pending.discard(i)
            time.sleep(0.25)
        took = time.monotonic() - t0
        limited = sum(1 for w in ws if "(429)" in w.stderr() or "answered 429" in w.stderr())
        died = sum(1 for w in ws if not w.running())
        print(f"N={n:5d}  enrolled={n - len(pending):5d}/{n}  all_enrolled_s={took:7.1f}"
              f"{'' if not pending else ' (deadline)'}  spawn_s={spawned:5.1f}  workers_429={limited}"
              f"  workers_exited={died}  coordinator_cpu_s={cpu_s(c.pid) - cpu0:5.1f}", flush=True)
        for w in [w for w in ws if not w.running()][:3]:
            last = [l for l in w.stderr().splitlines() if l.strip()][-2:]
            print(f"    {w.name} exited ({w.proc.returncode}): {' | '.join(last)[:300]}", flush=True)
        return not pending
    finally:
        for w in ws:
            try:
                w.kill()
            except Exception:
                pass
        c.teardown()


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # two log files per worker
    ns = [int(a) for a in sys.argv[1:]] or [50, 100, 200]
    for n in ns:
        with tempfile.TemporaryDirectory(prefix="p2p-bench-enroll-") as d:
            if not run(n, Path(d)):
                print(f"stopping: N={n} did not all enroll within {DEADLINE:.0f} s", flush=True)
                break


if __name__ == "__main__":
    main()
