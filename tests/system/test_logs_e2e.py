"""Cluster logs end to end (issue 11): real workers ship their lines to the real
collector on the coordinator. A worker's line is found at the coordinator with
every field; the coordinator killed with SIGKILL and restarted while the workers
log loses nothing and stores nothing twice; `p2p logs -f` shows a new line."""
import os
import subprocess
import threading
import time

import pytest

from conftest import P2P_BIN, wait_until


@pytest.fixture
def trio(node_factory):
    c = node_factory.create("coord")
    token = c.create_join_token(uses=2)
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=token)
    w2 = node_factory.create("w2", coordinator=False, join=c, join_token=token)
    return c, w1, w2


def logs(c, **params):
    return c.result("log_collector/get_logs", dict(params, limit=10000))["logs"]


def test_a_workers_line_reaches_the_coordinator_with_every_field(trio):
    c, w1, _ = trio
    marker = f"marker-{time.monotonic_ns()}"
    t0 = time.monotonic()
    w1.rpc("system/ping", {"message": marker})  # the worker's access log line carries no params: log a line ourselves
    w1.get(f"/no/such/{marker}")               # a 404 access line with the marker in its path
    wait_until(lambda: any(marker in r["message"] for r in logs(c, node_id="w1")), 10, "the line at the coordinator")
    elapsed = time.monotonic() - t0
    rec = next(r for r in logs(c, node_id="w1") if marker in r["message"])
    assert rec["node_id"] == "w1" and rec["logger"] == "access" and rec["level"] == "INFO"
    assert isinstance(rec["seq"], int) and rec["seq"] >= 1
    assert abs(rec["ts"] - time.time()) < 60
    assert rec.get("file") and rec.get("line")
    assert elapsed < 5, elapsed  # measured against the 100 ms target in make bench, not here


def test_coordinator_kill_9_loses_nothing_and_stores_nothing_twice(trio):
    c, w1, w2 = trio
    stop = threading.Event()

    def chatter(n):
        i = 0
        while not stop.is_set():
            try:
                n.get(f"/chatter/{n.name}/{i}")
            except Exception:
                pass
            i += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=chatter, args=(w,)) for w in (w1, w2)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    c.kill()
    time.sleep(2)      # the workers spool meanwhile
    c.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(10)

    def caught_up():
        m1, m2 = w1.metrics()["logs"], w2.metrics()["logs"]
        return m1["acked_seq"] == m1["last_seq"] and m2["acked_seq"] == m2["last_seq"]
    wait_until(caught_up, 20, "every worker's spool acknowledged")
    for w in (w1, w2):
        seqs = [r["seq"] for r in logs(c, node_id=w.name)]
        assert seqs, w.name
        assert len(seqs) == len(set(seqs)), f"{w.name}: stored twice"
        assert seqs == sorted(seqs), f"{w.name}: out of order"
        # no gap inside what the collector holds (its window may start after seq 1)
        assert seqs[-1] - seqs[0] + 1 == len(seqs), f"{w.name}: lost lines"
        assert w.metrics()["logs"]["lost"] == 0


def test_p2p_logs_follow_shows_a_new_line(trio):
    c, w1, _ = trio
    env = dict(os.environ, P2P_ADDR=c.addr, P2P_DATA_DIR=str(c.data_dir), P2P_TOKEN=c.token, NO_COLOR="1")
    p = subprocess.Popen([P2P_BIN, "logs", "-f", "--node", "w1", "--grep", "follow-me"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        w1.get("/follow-me/please")
        out = []

        def reader():
            for line in p.stdout:
                out.append(line)
                if "follow-me" in line:
                    return
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(10)
        assert any("follow-me" in l and "w1" in l for l in out), (out, p.stderr.read() if p.poll() else "")
    finally:
        p.terminate()
        p.wait(5)
