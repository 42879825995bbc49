"""Rollouts (issue 13): the coordinator's orchestrator installs a stored package on many
nodes, max_parallel at a time, with a canary, auto_revert, persisted state (a coordinator
killed mid-rollout resumes it) and convergence of a node that was down.

Cluster: coordinator rc1 + workers rw1, rw2, rw3, each with an empty services folder.
The tests run in order (module-scoped cluster): each builds on the versions before.
"""
import json
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
import http.client

import pytest

from conftest import P2P_BIN, T, run_p2p, wait_until
from test_cluster import all_alive, members
from test_deploy import env_for, hello_package, make_package
from test_enroll import export_identity
from test_exec_services import PYHELLO
from test_services import HELLO, TEST_SERVICES, services, state_of

WORKERS = ["rw1", "rw2", "rw3"]


@pytest.fixture(scope="module")
def cluster(module_node_factory, tmp_path_factory):
    base = tmp_path_factory.mktemp("rollout")
    c = module_node_factory.create("rc1")
    c.fixed_port = c.port  # restarted on the same address
    ws = []
    for name in WORKERS:
        sdir = base / f"{name}-services"
        sdir.mkdir()
        w = module_node_factory.create(name, coordinator=False, join=c, extra_args=["--services-directory", sdir])
        w.sdir = sdir
        w.fixed_port = w.port
        ws.append(w)
    wait_until(all_alive([c] + ws, ["rc1"] + WORKERS), 30, "all alive")
    return c, ws, base


def rollout_cmd(c, pkg, target, *extra, timeout=120):
    return run_p2p("deploy", str(pkg), "--target", target, *extra, env=env_for(c), timeout=timeout)


def popen_p2p(c, *args):
    return subprocess.Popen([P2P_BIN, *[str(a) for a in args]], env=env_for(c), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def version_of(w, name="pyhello"):
    s = services(w).get(name)
    return s and s["version"]


def echo_version(w):
    r = w.rpc("pyhello/echo", {})
    return r.get("result", {}).get("version")


def leftovers(w):
    return sorted(p.name for p in w.sdir.iterdir() if p.name.startswith(".p2p-staging")
                  or p.name.startswith(".p2p-incoming") or ".unpack-" in p.name)


def rollouts(c):
    return c.result("deploy/rollout_status")["rollouts"]


def last_rollout(c):
    r = rollouts(c)
    return r[0] if r else None


def by_node(r):
    return {n["node"]: n for n in r["nodes"]}


def node_pkg(c, base, version, fail_on=None, critical=False):
    """pyhello at `version`; fail_on: the node id on which it exits at start."""
    if not fail_on:
        return make_package(c, base, version)
    code = ("import os, runpy, sys\n"
            f"if os.environ.get('P2P_NODE_ID') == {fail_on!r}:\n"
            "    sys.exit(3)\n"
            "sys.argv = ['main.py']\n"
            "runpy.run_path('main.py', run_name='__main__')\n")
    return make_package(c, base, version, command=["python3", "-u", "-c", code])


def test_first_rollout_of_the_example_services_to_all_workers(cluster):
    c, ws, base = cluster
    py = make_package(c, base, "1.0.0")
    cp = rollout_cmd(c, py, "all:worker", "--max-parallel", "3", "--min-healthy-time", "1")
    print(cp.stdout, cp.stderr)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for w in WORKERS:
        assert f"{w}: committed" in cp.stdout, cp.stdout
    assert "rc1:" not in cp.stdout  # all:worker only
    hello = hello_package(c, base, "1.0.0", HELLO / "service.so")
    cp = rollout_cmd(c, hello, "all:worker", "--max-parallel", "2", "--min-healthy-time", "1")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for w in ws:
        assert echo_version(w) == "1.0.0"
        assert w.result("hello/info", {})["version"] == "1.0.0"
        assert leftovers(w) == []
    st = c.result("deploy/rollout_status")
    assert st["committed"]["pyhello"]["version"] == "1.0.0" and st["committed"]["hello"]["version"] == "1.0.0"
    # p2p rollout status shows them
    cp = run_p2p("rollout", "status", env=env_for(c))
    assert cp.returncode == 0 and "hello 1.0.0, done" in cp.stdout and "pyhello" in cp.stdout, cp.stdout


def test_v2_one_node_at_a_time_never_unavailable(cluster):
    c, ws, base = cluster
    pkg = make_package(c, base, "2.0.0")
    failures, seen, stop = [], {w.name: [] for w in ws}, threading.Event()
    rounds = []

    def caller():
        while not stop.is_set():
            ok = 0
            for w in ws:
                r = w.rpc("pyhello/echo", {})
                if "result" in r:
                    ok += 1
                    seen[w.name].append((time.monotonic(), r["result"]["version"]))
                else:
                    failures.append((w.name, r))
            rounds.append(ok)
            time.sleep(0.02)

    t = threading.Thread(target=caller)
    t.start()
    try:
        cp = rollout_cmd(c, pkg, "all:worker", "--max-parallel", "1", "--min-healthy-time", "1")
    finally:
        time.sleep(0.3)
        stop.set()
        t.join(10)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert rounds and min(rounds) >= 1, "a moment with no node answering"
    assert not failures, failures[:3]
    for w in ws:
        vs = [v for _, v in seen[w.name]]
        assert vs[0] == "1.0.0" and vs[-1] == "2.0.0", (w.name, vs[:2], vs[-2:])
        # once switched, it answers from v2 only
        first = vs.index("2.0.0")
        assert all(v == "2.0.0" for v in vs[first:]), w.name
    # one at a time: each install starts after the previous node committed
    r = last_rollout(c)
    msgs = [e["message"] for e in r["events"]]
    order = [m for m in msgs if "install" in m and "started" in m or "committed" in m]
    started = [i for i, m in enumerate(order) if "started" in m]
    committed = [i for i, m in enumerate(order) if "committed" in m]
    assert len(started) == 3 and len(committed) == 3, msgs
    for k in range(1, 3):
        assert committed[k - 1] < started[k], order


def test_v3_that_fails_to_start_stops_the_rollout_and_reverts_the_nodes_done(cluster):
    c, ws, base = cluster
    pkg = node_pkg(c, base, "3.0.0", fail_on="rw3")
    cp = rollout_cmd(c, pkg, "rw1,rw2,rw3", "--min-healthy-time", "1", "--healthy-deadline", "15")
    print(cp.stdout)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "rw3: failed" in cp.stdout and "failed to start" in cp.stdout, cp.stdout
    assert "reverted" in cp.stdout.splitlines()[-1], cp.stdout
    r = last_rollout(c)
    assert r["state"] == "reverted" and "rw3" in r["reason"] and "failed to start" in r["reason"], r
    n = by_node(r)
    assert n["rw1"]["state"] == "reverted" and n["rw2"]["state"] == "reverted", n
    for w in ws:
        wait_until(lambda: version_of(w) == "2.0.0" and state_of(w, "pyhello") == "running", 20,
                   f"{w.name} back on 2.0.0")
        assert echo_version(w) == "2.0.0"
        assert json.loads((w.sdir / "pyhello" / "manifest.json").read_text())["version"] == "2.0.0"
        assert leftovers(w) == []
    assert c.result("deploy/rollout_status")["committed"]["pyhello"]["version"] == "2.0.0"


def test_a_version_reporting_critical_health_stops_the_rollout(cluster):
    c, ws, base = cluster
    pkg = hello_package(c, base, "3.0.0", TEST_SERVICES / "hello-critical" / "service.so")
    cp = rollout_cmd(c, pkg, "all:worker", "--min-healthy-time", "1", "--healthy-deadline", "4")
    print(cp.stdout)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    r = last_rollout(c)
    assert r["state"] == "reverted" and "critical" in r["reason"], r
    failed = [n for n in r["nodes"] if n["state"] == "failed"]
    assert len(failed) == 1 and "critical" in failed[0]["reason"], r["nodes"]
    # the rollout stopped at the first node: the others were never touched
    assert sum(1 for n in r["nodes"] if n["state"] == "reverted" and n.get("detail") == "not started") == 2
    for w in ws:
        wait_until(lambda: version_of(w, "hello") == "1.0.0" and state_of(w, "hello") == "running", 20,
                   f"{w.name} hello 1.0.0")
        assert w.result("hello/info", {})["version"] == "1.0.0"
        assert leftovers(w) == []


def test_canary_waits_for_promote(cluster):
    c, ws, base = cluster
    pkg = make_package(c, base, "4.0.0")
    p = popen_p2p(c, "deploy", pkg, "--target", "all:worker", "--canary", "1", "--min-healthy-time", "1")
    try:
        wait_until(lambda: (last_rollout(c) or {}).get("version") == "4.0.0"
                   and last_rollout(c)["state"] == "canary_wait", 40, "canary done")
        time.sleep(1.5)  # it stays waiting
        r = last_rollout(c)
        assert r["state"] == "canary_wait", r
        versions = sorted(version_of(w) for w in ws)
        assert versions == ["2.0.0", "2.0.0", "4.0.0"], versions
        assert p.poll() is None  # the CLI still follows it
        # the versions compared across nodes: p2p services --all shows the drift
        cp = run_p2p("services", "--all", env=env_for(c))
        assert cp.returncode == 0 and "drift: pyhello runs in 2 versions" in cp.stdout, cp.stdout
        assert "4.0.0 on" in cp.stdout and "drift: hello" not in cp.stdout, cp.stdout
        cp = run_p2p("rollout", "promote", r["id"], env=env_for(c))
        assert cp.returncode == 0, cp.stderr
        out, err = p.communicate(timeout=T(60))
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, out + err
    assert "waiting for promote" in out and "promoted by an operator" in out, out
    for w in ws:
        assert echo_version(w) == "4.0.0"


def test_coordinator_killed_mid_rollout_resumes(cluster):
    c, ws, base = cluster
    pkg = make_package(c, base, "5.0.0")
    p = popen_p2p(c, "deploy", pkg, "--target", "all:worker", "--max-parallel", "1", "--min-healthy-time", "3")
    try:
        wait_until(lambda: (last_rollout(c) or {}).get("version") == "5.0.0"
                   and any(n["state"] == "installing" for n in last_rollout(c)["nodes"]), 30, "installing")
        rid = last_rollout(c)["id"]
        c.kill()  # SIGKILL, mid-rollout
        p.communicate(timeout=T(30))
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode != 0
    c.start()
    try:
        wait_until(lambda: c.result("deploy/rollout_status", {"id": rid})["state"] == "done", 60, "rollout resumed")
    finally:
        print(json.dumps(c.result("deploy/rollout_status", {"id": rid}), indent=1))
    r = c.result("deploy/rollout_status", {"id": rid})
    assert any("resumed after a coordinator restart" in e["message"] for e in r["events"]), r["events"]
    assert all(n["state"] == "committed" for n in r["nodes"]), r["nodes"]
    wait_until(all_alive([c] + ws, ["rc1"] + WORKERS), 30, "all alive again")
    for w in ws:
        assert echo_version(w) == "5.0.0"
        assert leftovers(w) == []
    cp = run_p2p("rollout", "status", rid, env=env_for(c))
    assert cp.returncode == 0 and "done" in cp.stdout, cp.stdout


def test_a_node_down_during_the_rollout_converges_when_it_returns(cluster):
    c, ws, base = cluster
    w3 = ws[2]
    w3.stop()
    wait_until(lambda: members(c)["rw3"]["status"] != "alive", 30, "rw3 seen down")
    pkg = make_package(c, base, "6.0.0")
    cp = rollout_cmd(c, pkg, "all:worker", "--max-parallel", "2", "--min-healthy-time", "1")
    print(cp.stdout)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    r = last_rollout(c)
    n = by_node(r)
    assert n["rw3"]["state"] == "down" and "converge" in r.get("reason", ""), r
    assert echo_version(ws[0]) == "6.0.0" and echo_version(ws[1]) == "6.0.0"
    w3.start()
    wait_until(lambda: version_of(w3) == "6.0.0" and state_of(w3, "pyhello") == "running", 60,
               "rw3 converged to 6.0.0")
    assert echo_version(w3) == "6.0.0"
    conv = c.result("deploy/rollout_status")["convergence"]
    wait_until(lambda: any(x["node"] == "rw3" and x["name"] == "pyhello" and x["state"] == "committed"
                           for x in c.result("deploy/rollout_status")["convergence"]), 20, "convergence reported")
    assert leftovers(w3) == []


def test_operator_revert_of_a_done_rollout(cluster):
    c, ws, base = cluster
    r = last_rollout(c)
    assert r["version"] == "6.0.0" and r["state"] == "done"
    cp = run_p2p("rollout", "revert", r["id"], env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    wait_until(lambda: c.result("deploy/rollout_status", {"id": r["id"]})["state"] == "reverted", 60, "reverted")
    for w in ws:
        wait_until(lambda: version_of(w) == "5.0.0" and state_of(w, "pyhello") == "running", 20,
                   f"{w.name} back on 5.0.0")


def test_deploy_revert_params_are_checked(cluster):
    """deploy/revert on a node: malformed params refused, a version that does not run
    changes nothing, a service that is not installed is refused by id."""
    c, ws, base = cluster
    w = ws[0]
    before = version_of(w)
    for p in [None, {}, {"name": "../x"}, {"name": "pyhello", "bogus": 1}, {"name": "pyhello", "version": 5},
              {"name": "pyhello", "reason": "x" * 600}, [1]]:
        r = w.rpc("deploy/revert", p)
        assert r["error"]["code"] == -32602, (p, r)
    r = w.rpc("deploy/revert", {"name": "pyhello", "version": "0.0.1"})
    assert "not the running version" in r["error"]["message"], r
    r = w.result("deploy/revert", {"name": "nosuch"})
    wait_until(lambda: w.result("deploy/install_status", {"id": r["id"]})["status"] != "installing", 10, "over")
    out = w.result("deploy/install_status", {"id": r["id"]})
    assert out["status"] == "refused" and "not installed" in out["reason"], out
    assert version_of(w) == before and leftovers(w) == []


def _mtls(node, crt, key, method, params, headers=None):
    ctx = ssl.create_default_context(cafile=str(node.ca))
    ctx.load_cert_chain(str(crt), str(key))
    conn = http.client.HTTPSConnection("127.0.0.1", node.port, context=ctx, timeout=T(10))
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request("POST", "/rpc", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                      "params": params}).encode(), headers=h)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def test_a_worker_identity_cannot_start_a_rollout_nor_order_an_install(cluster, tmp_path):
    c, ws, base = cluster
    w1, w2 = ws[0], ws[1]
    crt, key = export_identity(w1, tmp_path)
    sha = last_rollout(c)["sha256"]
    before = version_of(w2)
    # on the coordinator: rollout methods are an operator's
    for m, p in [("deploy/rollout_start", {"sha256": sha, "target": "all"}),
                 ("deploy/rollout_revert", {"id": last_rollout(c)["id"]}),
                 ("deploy/rollout_promote", {"id": last_rollout(c)["id"]})]:
        st, out = _mtls(c, crt, key, m, p, {"X-P2P-Coordinator-Call": "1"})
        assert st == 403 and "node identity" in out, (m, st, out)
    # on another worker: install and revert, even claiming to be the coordinator's call
    for hdr in ({}, {"X-P2P-Coordinator-Call": "1"}):
        for m, p in [("deploy/install", {"sha256": sha}), ("deploy/revert", {"name": "pyhello"})]:
            st, out = _mtls(w2, crt, key, m, p, hdr)
            assert st == 403 and "node identity" in out, (m, hdr, st, out)
    # relayed through the coordinator (X-P2P-Node): the coordinator's certificate carries
    # the worker's call, marked as relayed: refused on the target
    st, out = _mtls(c, crt, key, "deploy/install", {"sha256": sha},
                    {"X-P2P-Node": "rw2", "X-P2P-Coordinator-Call": "1"})
    body = json.loads(out) if out.startswith("{") else {}
    assert st == 403 or "error" in body, (st, out)
    assert "result" not in body, out
    # and through cluster/call on the coordinator
    st, out = _mtls(c, crt, key, "cluster/call", {"target": "rw2", "method": "deploy/install",
                                                  "params": {"sha256": sha}})
    assert "result" not in json.loads(out) or "error" in json.dumps(json.loads(out)["result"]), out
    time.sleep(0.5)
    assert version_of(w2) == before
    # a viewer reads rollouts but cannot start one
    viewer = c.new_token(role="viewer")
    from test_tokens import rpc_with
    r = rpc_with(c, viewer, "deploy/rollout_status", {})
    assert r.status == 200 and "rollouts" in r.json()["result"], r.json()
    r = rpc_with(c, viewer, "deploy/rollout_start", {"sha256": sha})
    assert r.status == 403, r


def test_rollout_params_are_checked(cluster):
    c, ws, base = cluster
    for p in [{}, {"sha256": "x"}, {"sha256": "0" * 64, "max_parallel": 0}, {"sha256": "0" * 64, "target": 3},
              {"sha256": "0" * 64, "target": []}, {"sha256": "0" * 64, "bogus": 1},
              {"sha256": "0" * 64, "min_healthy_time": 10, "healthy_deadline": 5}]:
        r = c.rpc("deploy/rollout_start", p)
        assert r["error"]["code"] == -32602, (p, r)
    r = c.rpc("deploy/rollout_start", {"sha256": "0" * 64})
    assert "no such service package" in r["error"]["message"], r
    r = c.rpc("deploy/rollout_status", {"id": "nope"})
    assert r["error"]["code"] == -32602
    r = c.rpc("deploy/rollout_start", {"sha256": last_rollout(c)["sha256"], "target": ["no-such-node"]})
    assert "no such node" in r["error"]["message"], r


def test_a_rollout_to_the_coordinator_itself(cluster):
    """The coordinator's own node is a target too: the orchestrator's call runs in
    process with the coordinator's authority (no token)."""
    c, ws, base = cluster
    sha = [r for r in rollouts(c) if r["version"] == "5.0.0"][0]["sha256"]
    r = c.result("deploy/rollout_start", {"sha256": sha, "target": ["rc1"], "min_healthy_time": 1})
    wait_until(lambda: c.result("deploy/rollout_status", {"id": r["id"]})["state"] in ("done", "failed", "reverted"),
               40, "rollout on rc1 over")
    st = c.result("deploy/rollout_status", {"id": r["id"]})
    assert st["state"] == "done", st
    assert c.result("pyhello/echo", {})["version"] == "5.0.0"


def test_the_dashboard_route_shows_the_rollouts_to_a_viewer(cluster):
    """GET /api/dashboard/rollouts (the dashboard's Rollouts panel) answers what
    deploy/rollout_status answers, to a viewer too; it is the coordinator's only."""
    c, ws, _ = cluster
    viewer = c.new_token(role="viewer")
    r = c.get("/api/dashboard/rollouts", headers={"Authorization": "Bearer " + viewer})
    assert r.status == 200, r
    got = r.json()
    want = c.result("deploy/rollout_status")
    assert [x["id"] for x in got["rollouts"]] == [x["id"] for x in want["rollouts"]] and got["rollouts"], got
    assert got["committed"] == want["committed"]
    for a, b in zip(got["rollouts"], want["rollouts"]):
        assert a["state"] == b["state"] and [(n["node"], n["state"]) for n in a["nodes"]] == \
            [(n["node"], n["state"]) for n in b["nodes"]]
    assert c.get("/api/dashboard/rollouts", auth=False).status == 401
    assert ws[0].get("/api/dashboard/rollouts").status == 404


def test_a_corrupt_state_file_starts_empty_and_says_so(cluster):
    """Last (it drops the state): a rollouts.json that is not JSON does not stop the
    coordinator; it starts with no rollouts and logs why."""
    c, ws, base = cluster
    files = list(c.data_dir.rglob("rollouts.json"))
    assert len(files) == 1, files
    assert json.loads(files[0].read_text())["rollouts"]  # written by the rollouts above
    c.stop()
    files[0].write_bytes(b'{"rollouts": [{"id": 1, "nodes": "x"}, ' + os.urandom(64))
    c.start()
    st = c.result("deploy/rollout_status")
    assert st["rollouts"] == [] and st["committed"] == {}, st
    assert "is not readable JSON" in c.stderr()
    # malformed entries in valid JSON are skipped, not fatal
    c.stop()
    files[0].write_text(json.dumps({"format": 1, "committed": [], "rollouts": [
        {"id": 3, "sha256": "zz"}, {"id": "ok", "sha256": "a" * 64, "nodes": [{"node": "rw1", "state": "??"}],
                                    "state": "done"}, "x"]}))
    c.start()
    st = c.result("deploy/rollout_status")
    assert [r["id"] for r in st["rollouts"]] == ["ok"], st
