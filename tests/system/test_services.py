"""Pluggable native services (issue 10): loading from services_directory, calls,
hot reload under load with no failed call, stop/start/restart, removal, refused
modules and manifests (the node and its other services keep working), persisted
state across reloads, restarts and kill -9, metrics and health in /metrics."""
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import P2P_BIN, wait_until

BUILD = Path(P2P_BIN).resolve().parent
HELLO = BUILD / "services" / "hello"
TEST_SERVICES = BUILD / "test-services"
ANY = TEST_SERVICES / "hello-any" / "service.so"  # hello built with no name: installs under any


def install(services_dir, name="hello", so=None, manifest=None, version=None):
    """Installs a service folder the way an operator or a deploy would: files
    written beside, then the folder renamed into place (one inotify event)."""
    tmp = services_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(so or HELLO / "service.so", tmp / "service.so")
    m = manifest if manifest is not None else json.loads((HELLO / "manifest.json").read_text())
    if isinstance(m, dict):
        m = dict(m)
        m["name"] = m.get("name", name) if manifest is not None else name
        if version:
            m["version"] = version
        m = json.dumps(m)
    (tmp / "manifest.json").write_text(m)
    dest = services_dir / name
    if dest.exists():
        old = services_dir / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old)
    else:
        tmp.rename(dest)


def variant_manifest(name):
    return {"name": name, "version": "1.0.0", "type": "native",
            "methods": [{"name": "ok", "read_only": True}]}


def services(node):
    return {s["name"]: s for s in node.result("services/list")["services"]}


def state_of(node, name):
    s = services(node).get(name)
    return s and s["state"]


@pytest.fixture
def svc_node(node_factory, tmp_path):
    sdir = tmp_path / "services"
    sdir.mkdir()
    install(sdir)
    n = node_factory.create("svc", extra_args=["--services-directory", sdir, "--services-rescan-interval", "1"])
    n.sdir = sdir
    wait_until(lambda: state_of(n, "hello") == "running", 10, "hello running")
    return n


def test_a_native_service_loads_and_answers(svc_node):
    r = svc_node.result("hello/greet", {"name": "ops"})
    assert r == {"message": "Hello, ops!", "version": "1.0.0"}
    s = services(svc_node)["hello"]
    assert s["type"] == "native" and s["version"] == "1.0.0" and s["state"] == "running"
    assert set(s["methods"]) == {"greet", "count", "info", "slow", "ping_node", "lookup"}
    # /services shows it with the node's other services, with the new fields
    body = svc_node.get("/services/hello").json()
    assert body["state"] == "running" and body["type"] == "native"
    assert body["health"]["status"] == "ok"
    # a manifest's read_only methods are open to viewers, the others are not
    viewer = svc_node.new_token(role="viewer")
    h = {"Authorization": f"Bearer {viewer}", "Content-Type": "application/json"}
    r = svc_node.post_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "hello/greet"}), headers=h)
    assert r.json()["result"]["message"] == "Hello, world!"
    r = svc_node.post_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "hello/count"}), headers=h)
    assert r.status == 403 or "error" in r.json()


def test_custom_metrics_and_timer(svc_node):
    for _ in range(3):
        svc_node.result("hello/greet")
    wait_until(lambda: svc_node.result("hello/info")["ticks"] >= 2, 5, "the timer ticks")
    m = svc_node.metrics()
    assert m["services"]["up"]["hello"] == 1
    text = svc_node.get("/metrics?format=prometheus").text
    assert "p2p_service_hello_greetings_total 3" in text
    assert 'p2p_services_up{service="hello"} 1' in text
    assert "p2p_service_hello_ticks " in text


def test_a_new_folder_starts_within_2_s_and_removal_stops(svc_node):
    install(svc_node.sdir, "hello-b", so=ANY)
    t0 = time.monotonic()
    wait_until(lambda: state_of(svc_node, "hello-b") == "running", 5, "hello-b running")
    assert time.monotonic() - t0 < 2.0
    assert svc_node.result("hello-b/greet")["message"] == "Hello, world!"
    shutil.rmtree(svc_node.sdir / "hello-b")
    wait_until(lambda: "hello-b" not in services(svc_node), 5, "hello-b gone")
    r = svc_node.rpc("hello-b/greet")
    assert r["error"]["code"] == -32601
    assert svc_node.result("hello/greet")["version"] == "1.0.0"  # the other one is untouched


def test_reload_under_load_fails_no_call(svc_node):
    failures, answers, stop = [], [], threading.Event()
    per_thread = [[] for _ in range(3)]

    def caller(mine):
        while not stop.is_set():
            try:
                r = svc_node.rpc("hello/greet")
                if "result" in r:
                    answers.append(r["result"]["version"])
                    mine.append(r["result"]["version"])
                else:
                    failures.append(r)
            except Exception as e:  # a transport failure is a failed call too
                failures.append(repr(e))

    threads = [threading.Thread(target=caller, args=(per_thread[i],)) for i in range(3)]
    # calls in flight across the switch: slow ones started on 1.0.0 must finish there
    slow_results = []
    slow = threading.Thread(target=lambda: slow_results.append(svc_node.result("hello/slow", {"ms": 1500})))
    for t in threads:
        t.start()
    time.sleep(0.5)
    slow.start()
    time.sleep(0.2)
    install(svc_node.sdir, so=TEST_SERVICES / "hello-2.0.0" / "service.so", version="2.0.0")
    wait_until(lambda: answers and answers[-1] == "2.0.0", 10, "calls answered by 2.0.0")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(10)
    slow.join(10)
    assert failures == []
    assert slow_results == [{"version": "1.0.0"}]  # finished on the version that took it
    for mine in per_thread:  # each caller, once answered by 2.0.0, is only ever answered by it
        first_new = mine.index("2.0.0")
        assert all(v == "2.0.0" for v in mine[first_new:])
    assert len(answers) > 50
    s = services(svc_node)["hello"]
    assert s["version"] == "2.0.0" and s["reloads"] == 1


def test_a_reload_that_fails_keeps_the_old_version(svc_node):
    install(svc_node.sdir, so=TEST_SERVICES / "initfail" / "service.so", version="1.1.0")
    wait_until(lambda: services(svc_node)["hello"].get("reload_failures") == 1, 10, "the reload failed")
    s = services(svc_node)["hello"]
    assert s["state"] == "running" and s["version"] == "1.0.0"
    assert "initfail" in s["last_error"]["message"] or "calls itself" in s["last_error"]["message"]
    assert svc_node.result("hello/greet")["version"] == "1.0.0"


def test_stop_start_restart(svc_node):
    r = svc_node.result("services/stop", {"name": "hello"})
    assert r["state"] == "stopped"
    err = svc_node.rpc("hello/greet")["error"]
    assert err["code"] == -32005 and "stopped" in err["message"]
    time.sleep(1.5)  # a rescan does not start what an operator stopped
    assert state_of(svc_node, "hello") == "stopped"
    assert svc_node.result("services/start", {"name": "hello"})["state"] == "running"
    assert svc_node.result("hello/greet")["version"] == "1.0.0"
    r = svc_node.result("services/restart", {"name": "hello"})
    assert r["state"] == "running" and r["restarts"] == 1
    # built-ins cannot be stopped
    assert "error" in svc_node.rpc("services/stop", {"name": "system"})


@pytest.mark.parametrize("variant,needle", [
    ("abi2", "built for service ABI 2.0"),
    ("nodesc", "exports no p2p_service_module"),
    ("missing", "p2p_svc_no_such_function"),
    ("initfail", "init returned"),
    ("startfail", "start returned"),
    ("wrongname", "calls itself 'somebody-else'"),
])
def test_refused_modules_leave_the_node_and_others_working(svc_node, variant, needle):
    install(svc_node.sdir, variant, so=TEST_SERVICES / variant / "service.so", manifest=variant_manifest(variant))
    wait_until(lambda: state_of(svc_node, variant) == "failed", 10, f"{variant} refused")
    s = services(svc_node)[variant]
    assert needle in s["reason"], s
    assert svc_node.rpc(f"{variant}/ok")["error"]["code"] in (-32601, -32005)
    assert svc_node.result("hello/greet")["version"] == "1.0.0"
    assert svc_node.get("/health").status == 200


@pytest.mark.parametrize("manifest,needle", [
    ("{not json", "not valid JSON"),
    ({"name": "bad", "version": "1.0", "type": "native"}, "key 'version'"),
    ({"name": "bad", "version": "1.0.0", "type": "native", "colour": "red"}, "key 'colour': unknown key"),
    ({"name": "other", "version": "1.0.0", "type": "native"}, "differs from its folder"),
    ({"name": "bad", "version": "1.0.0", "type": "native", "methods": "greet"}, "key 'methods'"),
])
def test_refused_manifests_name_the_file_and_key(svc_node, manifest, needle):
    install(svc_node.sdir, "bad", manifest=manifest if isinstance(manifest, str) else dict(manifest))
    wait_until(lambda: state_of(svc_node, "bad") == "failed", 10, "bad refused")
    s = services(svc_node)["bad"]
    assert needle in s["reason"] and "bad/manifest.json" in s["reason"], s
    assert svc_node.result("hello/greet")["version"] == "1.0.0"


def test_dependencies_start_in_order_and_a_cycle_is_named(svc_node):
    m = json.loads((HELLO / "manifest.json").read_text())
    install(svc_node.sdir, "dep-b", so=ANY, manifest=dict(m, name="dep-b", dependencies=["dep-a"]))
    wait_until(lambda: state_of(svc_node, "dep-b") == "failed", 10, "dep-b waits")
    assert "dependency dep-a is not installed" in services(svc_node)["dep-b"]["reason"]
    install(svc_node.sdir, "dep-a", so=ANY, manifest=dict(m, name="dep-a"))
    wait_until(lambda: state_of(svc_node, "dep-a") == "running", 10, "dep-a running")
    svc_node.result("services/start", {"name": "dep-b"})
    assert state_of(svc_node, "dep-b") == "running"
    install(svc_node.sdir, "cyc-x", so=ANY, manifest=dict(m, name="cyc-x", dependencies=["cyc-y"]))
    install(svc_node.sdir, "cyc-y", so=ANY, manifest=dict(m, name="cyc-y", dependencies=["cyc-x"]))
    wait_until(lambda: state_of(svc_node, "cyc-x") == "failed" and state_of(svc_node, "cyc-y") == "failed",
               10, "the cycle refused")
    assert "cycle" in services(svc_node)["cyc-x"]["reason"]


def test_state_survives_reload_restart_and_kill_9(svc_node):
    assert svc_node.result("hello/count", {"by": 5})["count"] == 5
    install(svc_node.sdir, so=TEST_SERVICES / "hello-2.0.0" / "service.so", version="2.0.0")
    wait_until(lambda: services(svc_node)["hello"]["version"] == "2.0.0", 10, "reloaded")
    assert svc_node.result("hello/count")["count"] == 6
    svc_node.stop()
    svc_node.start()
    wait_until(lambda: state_of(svc_node, "hello") == "running", 10, "hello running again")
    assert svc_node.result("hello/count")["count"] == 7
    # writes in a burst, then kill -9: the file holds a whole document, never a torn one
    for _ in range(50):
        svc_node.result("hello/count")
    svc_node.kill()
    path = svc_node.data_dir / "services-state" / "hello.json"
    doc = json.loads(path.read_text())
    assert 7 <= doc["count"] <= 57
    svc_node.start()
    wait_until(lambda: state_of(svc_node, "hello") == "running", 10, "hello running after kill -9")
    assert svc_node.result("hello/count")["count"] == doc["count"] + 1


def test_cache_one_load_per_missing_key(svc_node):
    # many callers ask for a key nobody has: the loader runs once, all get its value
    from concurrent.futures import ThreadPoolExecutor
    m = json.loads((HELLO / "manifest.json").read_text())
    m["settings"]["lookup_work_ms"] = 500  # the computation takes long enough for callers to overlap
    m["version"] = "1.0.1"
    install(svc_node.sdir, manifest=m)
    wait_until(lambda: services(svc_node)["hello"]["version"] == "1.0.1", 10, "settings reloaded")
    loads0 = svc_node.result("hello/info")["loads"]
    with ThreadPoolExecutor(12) as pool:
        values = list(pool.map(lambda _: svc_node.result("hello/lookup", {"key": "k1"})["value"], range(24)))
    assert len(set(values)) == 1 and values[0].startswith("computed k1: ")
    assert svc_node.result("hello/info")["loads"] - loads0 == 1
    # then it is served from the cache
    assert svc_node.result("hello/lookup", {"key": "k1"})["value"] == values[0]
    assert svc_node.result("hello/info")["loads"] - loads0 == 1
    assert svc_node.metrics()["cache"]["coalesced"] >= 1  # the other callers joined the one load
