"""The node's cache component: config keys reach it, its figures are in /metrics
(group "cache"), a bad redis_url is refused at start, and a node whose Redis is
killed keeps running, says so once in its log, and reconnects when Redis is back.
The cache's own behaviour against Redis is tested in
tests/integration/test_cache_redis.c."""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import free_port, run_p2p, wait_until, T

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def start_redis(port):
    p = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, T(5), "redis-server listening")
    return p


@pytest.fixture
def redis_port():
    if not os.access(REDIS, os.X_OK):
        pytest.skip("redis-server is not installed (scripts/install-deps.sh installs it)")
    port = free_port()
    procs = []
    yield port, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_cache_metrics_without_redis(node_factory):
    n = node_factory.create(extra_args=["--cache-l1-max-bytes", "1048576"])
    c = n.metrics()["cache"]
    assert c["l2_enabled"] == 0
    assert c["l1_max_bytes"] == 1048576
    assert c["hits"] == {"l1": 0, "l2": 0}
    assert "l2_connected" not in c


def test_bad_redis_url_refused(tmp_path):
    r = run_p2p("agent", "--coordinator", "--data-dir", str(tmp_path / "d"),
                "--redis-url", "http://cache:6379", timeout=T(10))
    assert r.returncode == 2, r
    assert "--redis-url" in r.stderr and "redis://" in r.stderr, r.stderr


def test_redis_killed_and_back(node_factory, redis_port):
    port, procs = redis_port
    procs.append(start_redis(port))
    n = node_factory.create(extra_args=["--redis-url", f"redis://127.0.0.1:{port}/1",
                                        "--cache-redis-timeout-ms", "200"])
    wait_until(lambda: n.metrics()["cache"].get("l2_connected") == 1, T(5), "cache connected to Redis")
    procs[0].kill()
    procs[0].wait()
    wait_until(lambda: n.metrics()["cache"]["l2_connected"] == 0, T(5), "cache noticed Redis is gone")
    n.wait_for_log("the cache answers from L1", timeout=T(5))
    assert n.get("/health", auth=False).status == 200
    time.sleep(0.5)
    procs.append(start_redis(port))
    wait_until(lambda: n.metrics()["cache"]["l2_connected"] == 1, T(15), "cache reconnected")
    c = n.metrics()["cache"]
    assert c["l2_connects"] == 2
    assert c["l2_disconnects"] >= 1
    n.wait_for_log("connected again", timeout=T(5))
