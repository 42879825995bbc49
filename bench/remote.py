#!/usr/bin/env python3
"""bench/remote.py — node→node remote calls and idle memory of a coordinator and a worker.

Starts a coordinator and one enrolled worker on 127.0.0.1 (the system tests' Node
class, rate limits off), lets both sit idle 10 s and prints VmRSS (ps -o rss) and
PSS (/proc/PID/smaps_rollup) of each. Then measures remote calls the coordinator
makes to the worker with its outbound client: POST /rpc with `X-P2P-Node: <worker>`
(system/ping) sent to the coordinator, which forwards each call over its HTTP/2
client to the worker.
  - latency: BENCH_CALLS (500) calls one after another on one HTTP/1.1 keep-alive
    connection to the coordinator; p50/p99 of the whole round trip
    (client → coordinator → worker → coordinator → client);
  - throughput: h2load, 4 connections × 16 streams, BENCH_SECONDS (10) s.
Run: P2P_BIN=build/p2p /usr/bin/python3 bench/remote.py
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "system"))
from conftest import Node  # noqa: E402

BODY = json.dumps({"jsonrpc": "2.0", "method": "system/ping", "id": 1})


def mem(pid):
    rss = int(subprocess.check_output(["ps", "-o", "rss=", "-p", str(pid)]).decode())
    pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def main():
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    calls = int(os.environ.get("BENCH_CALLS", "500"))
    with tempfile.TemporaryDirectory(prefix="p2p-remote-") as tmp:
        c = Node(tmp, "bc1", coordinator=True)
        c.start()
        w = Node(tmp, "bw1", coordinator=False, join=c)
        try:
            w.start(timeout=60)
            tok = c.token
            hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {tok}", "X-P2P-Node": w.name}
            # wait until the coordinator can reach the worker
            deadline = time.time() + 30
            while True:
                try:
                    st, body = post(c, hdrs)
                    if st == 200 and '"result"' in body:
                        break
                except Exception:
                    pass
                if time.time() > deadline:
                    raise SystemExit("the coordinator never reached the worker")
                time.sleep(0.2)
            time.sleep(10)
            for n in (c, w):
                rss, pss = mem(n.pid)
                print(f"idle {'coordinator' if n is c else 'worker':<11} VmRSS {rss/1024:6.2f} MiB   PSS {pss/1024:6.2f} MiB")
            # latency, one call after another
            import http.client
            conn = http.client.HTTPSConnection(c.host, c.port, context=c.ssl_context(), timeout=10)
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                conn.request("POST", "/rpc", body=BODY, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
                lat.append((time.perf_counter() - t0) * 1000)
                if r.status != 200 or b'"result"' not in data:
                    raise SystemExit(f"bad answer {r.status} {data[:200]!r}")
            conn.close()
            lat.sort()
            print(f"remote call latency (sequential, {calls} calls): p50 {lat[len(lat)//2]:.3f} ms   "
                  f"p99 {lat[int(len(lat)*0.99)-1]:.3f} ms")
            # throughput
            bodyf = Path(tmp) / "body.json"
            bodyf.write_text(BODY)
            out = subprocess.run(["h2load", "-c4", "-m16", "-t1", "-D", str(seconds), "-d", str(bodyf),
                                  "-H", "content-type: application/json", "-H", f"authorization: Bearer {tok}",
                                  "-H", f"x-p2p-node: {w.name}", f"{c.url}/rpc"],
                                 capture_output=True, text=True, timeout=seconds + 60).stdout
            m = re.search(r"finished in .*?, ([\d.]+) req/s", out)
            st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
            mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
            print(f"remote call throughput (h2load c4 m16, {seconds} s): {m.group(1) if m else '?'} req/s   "
                  f"mean {mean.group(1) if mean else '?'}   2xx/4xx/5xx {st.group(1)}/{st.group(3)}/{st.group(4)}"
                  if st else out[-800:])
            rss, pss = mem(c.pid)
            print(f"coordinator after load: VmRSS {rss/1024:.2f} MiB  PSS {pss/1024:.2f} MiB")
        finally:
            w.stop()
            c.stop()


def post(node, hdrs):
    import http.client
    conn = http.client.HTTPSConnection(node.host, node.port, context=node.ssl_context(), timeout=5)
    conn.request("POST", "/rpc", body=BODY, headers=hdrs)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    return r.status, body


if __name__ == "__main__":
    main()
