"""Exec services (issue 10): programs in any language speaking newline-delimited
JSON-RPC over stdin/stdout, supervised by the node. The example service
pyhello (Python, standard library only) and small hostile scripts."""
import json
import os
import shutil
import signal
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import P2P_BIN, wait_until
from test_services import services, state_of

BUILD = Path(P2P_BIN).resolve().parent
PYHELLO = BUILD / "services" / "pyhello"


def install_dir(sdir, name, src=PYHELLO, manifest_patch=None):
    tmp = sdir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    m = json.loads((tmp / "manifest.json").read_text())
    m["name"] = name
    if manifest_patch:
        m.update(manifest_patch)
    (tmp / "manifest.json").write_text(json.dumps(m))
    dest = sdir / name
    if dest.exists():
        old = sdir / f".{name}.old"
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        tmp.rename(dest)


def script_service(sdir, name, body, methods=("work",), timeouts=None):
    """An exec service whose main.py is `body` (after a small protocol prelude)."""
    d = sdir / f".{name}.src"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    prelude = textwrap.dedent('''
        import json, sys, time, os
        def send(m):
            m["jsonrpc"] = "2.0"; sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
        def requests():
            for line in sys.stdin:
                if line.strip():
                    yield json.loads(line)
    ''')
    (d / "main.py").write_text(prelude + textwrap.dedent(body))
    m = {"name": name, "version": "1.0.0", "type": "exec", "command": ["python3", "-u", "main.py"],
         "methods": [{"name": x} for x in methods]}
    if timeouts:
        m["timeouts"] = timeouts
    (d / "manifest.json").write_text(json.dumps(m))
    install_dir(sdir, name, src=d)
    shutil.rmtree(d)


@pytest.fixture
def exec_node(node_factory, tmp_path):
    sdir = tmp_path / "services"
    sdir.mkdir()
    install_dir(sdir, "pyhello")
    n = node_factory.create("ex", extra_args=["--services-directory", sdir, "--services-rescan-interval", "1"])
    n.sdir = sdir
    wait_until(lambda: state_of(n, "pyhello") == "running", 15, "pyhello running")
    return n


def children_of(pid):
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def test_calls_state_metrics_and_a_call_to_another_node(exec_node):
    n = exec_node
    r = n.result("pyhello/echo", {"x": [1, 2]})
    assert r == {"echo": {"x": [1, 2]}, "greeting": "Hi", "version": "1.0.0", "node_id": "ex"}
    assert n.result("pyhello/add", {"numbers": [1, 2, 3.5]})["sum"] == 6.5
    assert n.result("pyhello/ping_node", {"target": "ex"})["answer"]["pong"] is True
    bad = n.rpc("pyhello/add", {"numbers": "x"})
    assert bad["error"]["code"] == -32602
    text = n.get("/metrics?format=prometheus").text
    assert "p2p_service_pyhello_additions_total 1" in text
    # the service's log notifications are in the node's log under its name
    assert "[pyhello] pyhello 1.0.0 ready on ex" in n.stderr()


def test_many_concurrent_calls(exec_node):
    n = exec_node
    # slow ones and quick ones at once: the quick ones are not held up
    def call(i):
        if i % 10 == 0:
            return n.result("pyhello/sleep", {"ms": 300})
        return n.result("pyhello/echo", {"i": i})
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(200)))
    assert [r["echo"]["i"] for i, r in enumerate(results) if i % 10] == [i for i in range(200) if i % 10]
    assert time.monotonic() - t0 < 15


def test_a_crash_restarts_with_backoff_then_fails(exec_node):
    n = exec_node
    r = n.rpc("pyhello/crash")
    assert r["error"]["code"] == -32005  # the process ended before answering
    wait_until(lambda: services(n)["pyhello"]["restarts"] >= 1 and state_of(n, "pyhello") == "running", 10,
               "restarted")
    assert n.result("pyhello/echo")["version"] == "1.0.0"
    # crash it until the supervisor gives up (5 failures within 60 s)
    for _ in range(8):
        if state_of(n, "pyhello") == "failed":
            break
        wait_until(lambda: state_of(n, "pyhello") in ("running", "failed") and
                   ("error" not in n.rpc("pyhello/echo") or state_of(n, "pyhello") == "failed"), 40, "up again")
        n.rpc("pyhello/crash")
    wait_until(lambda: state_of(n, "pyhello") == "failed", 40, "failed after too many crashes")
    s = services(n)["pyhello"]
    assert "status 3" in s["reason"] or "exited" in s["reason"], s
    err = n.rpc("pyhello/echo")["error"]
    assert err["code"] == -32005 and "failed" in err["message"]
    # an operator starts it again
    assert n.result("services/start", {"name": "pyhello"})["state"] == "running"
    assert n.result("pyhello/echo")["version"] == "1.0.0"


def test_a_hung_call_times_out_and_garbage_restarts(exec_node):
    n = exec_node
    script_service(n.sdir, "hang", '''
        for req in requests():
            if req.get("method") == "initialize":
                send({"id": req["id"], "result": {}})
            elif req.get("method") == "work":
                pass  # never answers
    ''', timeouts={"call": 1})
    wait_until(lambda: state_of(n, "hang") == "running", 15, "hang running")
    t0 = time.monotonic()
    err = n.rpc("hang/work")["error"]
    assert err["code"] == -32003 and 0.8 < time.monotonic() - t0 < 5
    script_service(n.sdir, "garbage", '''
        for req in requests():
            if req.get("method") == "initialize":
                send({"id": req["id"], "result": {}})
            elif req.get("method") == "work":
                sys.stdout.write("this is not json\\n"); sys.stdout.flush()
    ''')
    wait_until(lambda: state_of(n, "garbage") == "running", 15, "garbage running")
    err = n.rpc("garbage/work")["error"]
    assert "invalid message" in err["message"]
    wait_until(lambda: services(n)["garbage"]["restarts"] >= 1, 10, "restarted after garbage")
    assert n.result("pyhello/echo")["version"] == "1.0.0"  # the others go on


def test_a_stderr_flood_is_bounded_in_the_log(exec_node):
    n = exec_node
    script_service(n.sdir, "noisy", '''
        for req in requests():
            if req.get("method") == "initialize":
                send({"id": req["id"], "result": {}})
            elif req.get("method") == "work":
                for i in range(20000):
                    sys.stderr.write("noise %d\\n" % i)
                sys.stderr.flush()
                send({"id": req["id"], "result": "done"})
    ''')
    wait_until(lambda: state_of(n, "noisy") == "running", 15, "noisy running")
    before = n.stderr().count("noise ")
    assert n.result("noisy/work") == "done"
    wait_until(lambda: "suppressed" in n.stderr(), 5, "suppression reported")
    logged = n.stderr().count("noise ") - before
    assert logged < 2000, logged  # bounded per second, not 20,000 lines
    assert n.result("pyhello/echo")["version"] == "1.0.0"


def test_reload_under_load_fails_no_call(exec_node):
    n = exec_node
    failures, versions, stop = [], [], threading.Event()

    def caller():
        while not stop.is_set():
            r = n.rpc("pyhello/echo")
            if "result" in r:
                versions.append(r["result"]["version"])
            else:
                failures.append(r)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    install_dir(n.sdir, "pyhello", manifest_patch={"version": "1.1.0"})
    wait_until(lambda: versions and versions[-1] == "1.1.0", 15, "answered by 1.1.0")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(10)
    assert failures == []
    assert "1.0.0" in versions and len(versions) > 30


def test_kill_9_of_the_node_leaves_no_orphan(exec_node):
    n = exec_node
    kids = children_of(n.pid)
    assert kids, "the service process is a child of the node"
    n.kill()
    def gone():
        return all(not Path(f"/proc/{k}").exists() or
                   (Path(f"/proc/{k}/stat").read_text().split(") ")[1][0] == "Z") for k in kids)
    wait_until(gone, 5, "the service processes died with the node")


def test_cache_with_redis_killed_and_restarted(node_factory, tmp_path):
    from test_cache import start_redis
    from conftest import free_port
    port = free_port()
    redis = start_redis(port)
    try:
        sdir = tmp_path / "services"
        sdir.mkdir()
        install_dir(sdir, "pyhello")
        n = node_factory.create("rc", extra_args=["--services-directory", sdir, "--redis-url",
                                                   f"redis://127.0.0.1:{port}/2", "--cache-redis-timeout-ms", "200"])
        wait_until(lambda: state_of(n, "pyhello") == "running", 15, "pyhello running")
        wait_until(lambda: n.metrics()["cache"].get("l2_connected") == 1, 10, "L2 connected")
        assert n.result("pyhello/remember", {"key": "a", "value": {"x": 1}}) is True
        assert n.result("pyhello/recall", {"key": "a"}) == {"found": True, "value": {"x": 1}}
        # the value is in Redis under the service's namespace
        import subprocess
        out = subprocess.run(["redis-cli", "-p", str(port), "-n", "2", "GET", "p2p:pyhello:a"],
                             capture_output=True, text=True).stdout.strip()
        assert json.loads(out) == {"x": 1}
        redis.kill()
        redis.wait(5)
        # calls keep answering, from L1
        t0 = time.monotonic()
        for i in range(20):
            assert n.result("pyhello/remember", {"key": f"b{i}", "value": i}) is True
            assert n.result("pyhello/recall", {"key": f"b{i}"}) == {"found": True, "value": i}
        assert time.monotonic() - t0 < 10
        redis = start_redis(port)
        wait_until(lambda: n.metrics()["cache"].get("l2_connected") == 1, 15, "L2 connected again")
        assert n.result("pyhello/remember", {"key": "c", "value": "back"}) is True
        out = subprocess.run(["redis-cli", "-p", str(port), "-n", "2", "GET", "p2p:pyhello:c"],
                             capture_output=True, text=True).stdout.strip()
        assert json.loads(out) == "back"
    finally:
        redis.kill()
        redis.wait(5)


def test_secrets_go_to_the_vault_not_the_state(exec_node):
    n = exec_node
    assert n.result("pyhello/set_password", {"password": "s3cret-Value"}) is True
    assert n.result("pyhello/check_password", {"password": "s3cret-Value"}) is True
    assert n.result("pyhello/check_password", {"password": "wrong"}) is False
    # encrypted at rest: not in the state file, not in clear in the vault file
    state_dir = n.data_dir / "services-state"
    for f in state_dir.glob("*.json"):
        assert "s3cret-Value" not in f.read_text()
    wait_until(lambda: b"s3cret-Value" not in (n.data_dir / "vault.p2p").read_bytes(), 5, "vault written")
    # and it survives a restart of the node
    n.stop()
    n.start()
    wait_until(lambda: state_of(n, "pyhello") == "running", 15, "pyhello running again")
    assert n.result("pyhello/check_password", {"password": "s3cret-Value"}) is True
    # the operator finds it in the vault, under the service's own name
    from conftest import VAULT_PASSWORD, run_p2p
    n.stop()
    cp = run_p2p("vault", "get", "keys/service/pyhello/password", "--data-dir", n.data_dir,
                 env=dict(os.environ, P2P_VAULT_PASSWORD=VAULT_PASSWORD))
    assert cp.returncode == 0 and cp.stdout == "s3cret-Value", cp


def test_removed_or_stopped_while_starting(exec_node):
    n = exec_node
    # a service whose start takes a while (its initialize answer comes after 1 s)
    script_service(n.sdir, "slowstart", '''
        for req in requests():
            if req.get("method") == "initialize":
                time.sleep(1)
                send({"id": req["id"], "result": {}})
            elif req.get("method") == "work":
                send({"id": req["id"], "result": "ok"})
    ''')
    wait_until(lambda: state_of(n, "slowstart") in ("loading", "starting"), 10, "slowstart starting")
    r = n.result("services/stop", {"name": "slowstart"})  # answers once it is really stopped
    assert r["state"] == "stopped", r
    assert n.rpc("slowstart/work")["error"]["code"] == -32005
    kids = lambda: [k for k in children_of(n.pid)
                    if "main.py" in Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")]
    wait_until(lambda: len(kids()) == 1, 10, "only pyhello's process left")  # slowstart's went
    assert n.result("services/start", {"name": "slowstart"})["state"] == "running"
    # removed while starting: stopped, unregistered, its process gone
    shutil.rmtree(n.sdir / "slowstart")
    wait_until(lambda: "slowstart" not in services(n), 10, "removed")
    wait_until(lambda: len(kids()) == 1, 10, "its process gone")
    assert n.result("pyhello/echo")["version"] == "1.0.0"
