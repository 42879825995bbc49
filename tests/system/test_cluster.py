"""The cluster on 127.0.0.1: SWIM membership (alive, suspect, dead, refute, left,
restart), the snapshot rejoin, remote calls by node id, role and fan-out, and
`p2p members`."""
import json
import re
import signal
import time

import pytest

from conftest import T, run_p2p, wait_until
from test_enroll import export_identity, mtls_request


def members(node):
    r = node.get("/cluster/nodes")
    assert r.status == 200, r
    return {n["node_id"]: n for n in r.json()["nodes"]}


def all_alive(nodes, names):
    def check():
        for n in nodes:
            m = members(n)
            if any(m.get(x, {}).get("status") != "alive" for x in names):
                return False
        return True
    return check


def log_has(node, who, state):
    return re.search(rf"\[membership\] {re.escape(who)} {state} \(incarnation", node.stderr()) is not None


@pytest.fixture
def cluster(node_factory):
    c = node_factory.create("coord")
    token = c.create_join_token(uses=4)
    ws = [node_factory.create(f"w{i}", coordinator=False, join=c, join_token=token) for i in range(1, 5)]
    nodes = [c] + ws
    wait_until(all_alive(nodes, [n.name for n in nodes]), 15, "all 5 nodes alive everywhere")
    return nodes


def rpc(node, method, params=None, headers=None):
    body = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        body["params"] = params
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + node.token}
    h.update(headers or {})
    r = node.request("POST", "/rpc", body=json.dumps(body).encode(), headers=h, auth=False)
    assert r.status == 200, r
    return r.json()


def test_five_nodes_see_each_other_with_services(cluster):
    # services are announced with each node's record (and re-announced when they change)
    wait_until(lambda: all(any(s["name"] == "system" for s in members(n)["w3"]["services"]) for n in cluster),
               10, "w3's services known everywhere")
    for n in cluster:
        m = members(n)
        assert set(m) == {x.name for x in cluster}
        assert m[n.name]["self"] is True
        assert m["coord"]["role"] == "coordinator" and m["w1"]["role"] == "worker"
        assert any(s["name"] == "system" and "ping" in s["methods"] for s in m["w3"]["services"])
        assert m["w2"]["port"] == cluster[2].port and m["w2"]["addresses"] == ["127.0.0.1"]


def test_kill_9_is_suspected_then_dead_everywhere(cluster):
    victim = cluster[3]
    others = [n for n in cluster if n is not victim]
    victim.kill()
    wait_until(lambda: all(members(n)["w3"]["status"] == "dead" for n in others), 30, "w3 dead everywhere")
    for n in others:
        assert log_has(n, "w3", "suspect"), n.name
        assert log_has(n, "w3", "dead"), n.name
    # a restart with the same id comes back alive with a higher incarnation
    dead_inc = members(cluster[0])["w3"]["incarnation"]
    victim.start()
    wait_until(lambda: all(members(n)["w3"]["status"] == "alive" for n in others), 20, "w3 alive again")
    assert all(members(n)["w3"]["incarnation"] > dead_inc for n in others)


def test_a_short_pause_is_refuted_not_dead(cluster):
    victim = cluster[2]
    victim.send_signal(signal.SIGSTOP)
    time.sleep(2.0)  # shorter than the suspicion timeout (3 s minimum, counted from the suspicion)
    victim.send_signal(signal.SIGCONT)
    wait_until(all_alive(cluster, [n.name for n in cluster]), 15, "everyone alive after SIGCONT")
    time.sleep(2)
    for n in cluster:
        assert not log_has(n, "w2", "dead"), f"{n.name} declared w2 dead"


def test_graceful_stop_is_left_at_once(cluster):
    leaver = cluster[4]
    assert leaver.stop() == 0
    others = cluster[:4]
    wait_until(lambda: all(members(n)["w4"]["status"] == "left" for n in others), 5, "w4 left everywhere")
    for n in others:
        assert not log_has(n, "w4", "dead")


def test_restart_rejoins_from_snapshot_without_the_coordinator(cluster):
    coord, w1 = cluster[0], cluster[1]
    time.sleep(T(11))  # a snapshot is written every 10 s when membership changed
    assert coord.stop() == 0
    assert w1.stop() == 0
    w1.start()
    wait_until(lambda: members(w1).get("w2", {}).get("status") == "alive", 15, "w1 rejoined w2 via its snapshot")
    assert "rejoining" in w1.stderr()


def test_remote_calls_by_id_role_and_fan_out(cluster):
    w1 = cluster[1]
    res = rpc(w1, "cluster/call", {"target": "w3", "method": "system/ping", "params": {"message": "hi"}})
    r = res["result"]
    assert r["node_id"] == "w3" and r["result"]["node_id"] == "w3" and r["result"]["message"] == "hi"
    res = rpc(w1, "cluster/call", {"target": "role:coordinator", "method": "system/get_system_info"})
    assert res["result"]["result"]["role"] == "coordinator"
    res = rpc(w1, "cluster/call", {"target": "all", "method": "system/ping"})
    assert sorted(x["node_id"] for x in res["result"]) == sorted(n.name for n in cluster)
    assert all(x["result"]["pong"] is True for x in res["result"])
    res = rpc(w1, "cluster/call", {"target": "all:worker", "method": "system/ping"})
    assert sorted(x["node_id"] for x in res["result"]) == ["w1", "w2", "w3", "w4"]
    # a remote method's own error is passed through
    res = rpc(w1, "cluster/call", {"target": "w2", "method": "system/no_such_method"})
    assert res["result"]["error"]["code"] == -32601
    # unknown node
    res = rpc(w1, "cluster/call", {"target": "nobody", "method": "system/ping"})
    assert res["result"]["error"]["code"] == -32001


def test_call_to_a_dead_node_fails_fast(cluster):
    w1, victim = cluster[1], cluster[4]
    victim.kill()
    wait_until(lambda: members(w1)["w4"]["status"] == "dead", 30, "w4 dead")
    t0 = time.monotonic()
    res = rpc(w1, "cluster/call", {"target": "w4", "method": "system/ping"})
    assert time.monotonic() - t0 < 1.0
    assert res["result"]["error"]["code"] == -32002


def test_connections_are_reused(cluster):
    w1, target = cluster[1], cluster[2]
    before = target.metrics()["http"]["connections_total"]
    for _ in range(20):
        res = rpc(w1, "cluster/call", {"target": "w2", "method": "system/ping"})
        assert res["result"]["result"]["pong"] is True
    after = target.metrics()["http"]["connections_total"]
    # 20 calls from w1, plus our own 2 metrics requests; push-pull may add one
    assert after - before <= 4, (before, after)


def test_operator_calls_any_node_through_one(cluster):
    coord = cluster[0]
    common = ["--addr", coord.addr, "--ca", str(coord.ca), "--token", coord.token]
    cp = run_p2p("call", *common, "--node", "w2", "system/get_system_info", timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["node_id"] == "w2"
    cp = run_p2p("call", *common, "--node", "ghost", "system/ping", timeout=20)
    assert cp.returncode == 1 and "-32001" in cp.stderr, cp
    # a viewer may not go through
    viewer = coord.new_token(role="viewer")
    cp = run_p2p("call", "--addr", coord.addr, "--ca", str(coord.ca), "--token", viewer, "--node", "w2",
                 "system/ping", timeout=20)
    assert cp.returncode == 1 and "403" in cp.stderr, cp


def test_p2p_members_table(cluster):
    coord = cluster[0]
    cp = run_p2p("members", "--addr", coord.addr, "--ca", str(coord.ca), "--token", coord.token, timeout=20)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["NODE", "ADDRESS", "ROLE", "STATUS"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert set(rows) == {"coord", "w1", "w2", "w3", "w4"}
    assert all(r[3] == "alive" for r in rows.values())
    assert rows["coord"][2] == "coordinator" and "system" in rows["w1"][4]


# ---- push-pull with digests -----------------------------------------------------------------

@pytest.fixture
def pair(node_factory, tmp_path):
    """A coordinator and a worker that see each other, and the worker's certificate and
    key for a Python client speaking to the coordinator as that node."""
    c = node_factory.create("coord")
    w = node_factory.create("w1", coordinator=False, join=c)
    wait_until(all_alive([c, w], ["coord", "w1"]), 15, "both alive")
    crt, key = export_identity(w, tmp_path)

    def exchange(body):
        """POST /internal/gossip/exchange as w1 -> (status, JSON answer)."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        st, out = mtls_request(c, "POST", "/internal/gossip/exchange", crt, key, body=body)
        return st, json.loads(out)
    return c, w, exchange


def test_pushpull_digest_sends_only_what_the_other_side_lacks(pair):
    c, w, exchange = pair

    def digest():
        return {n: [v["incarnation"], v["status"]] for n, v in members(c).items()}

    # in step: nothing to send either way
    st, out = exchange({"version": 1, "from": "w1", "digest": digest()})
    assert st == 200, out
    assert out["nodes"] == [] and out["want"] == []
    # a member the sender does not know: its full record comes back, services included
    d = digest()
    del d["coord"]
    st, out = exchange({"version": 1, "from": "w1", "digest": d})
    assert [r["id"] for r in out["nodes"]] == ["coord"] and out["want"] == []
    assert "system" in out["nodes"][0]["meta"]
    # the sender is ahead on a member: the answer asks for it
    d = digest()
    d["w1"][0] += 5
    d["ghost"] = [3, "alive"]
    d["gone"] = [3, "dead"]
    st, out = exchange({"version": 1, "from": "w1", "digest": d})
    assert out["nodes"] == [] and sorted(out["want"]) == ["ghost", "w1"]
    # a digest that says the coordinator is dead: it refutes before answering
    d = digest()
    inc = d["coord"][0]
    d["coord"] = [inc, "dead"]
    st, out = exchange({"version": 1, "from": "w1", "digest": d})
    assert [r["id"] for r in out["nodes"]] == ["coord"]
    assert out["nodes"][0]["state"] == "alive" and out["nodes"][0]["incarnation"] > inc
    assert members(w)["coord"]["status"] == "alive"


MALFORMED_EXCHANGES = [
    (b"{", "JSON object"),
    (b"[]", "JSON object"),
    (b"{}", "nodes"),
    (b'{"digest": []}', "digest"),
    (b'{"digest": {"a": [1]}}', "digest entry"),
    (b'{"digest": {"a": [-1, "alive"]}}', "digest entry"),
    (b'{"digest": {"a": [4294967296, "alive"]}}', "digest entry"),
    (b'{"digest": {"a": [1, "zombie"]}}', "digest entry"),
    (b'{"digest": {"a": ["1", "alive"]}}', "digest entry"),
    (b'{"digest": {"a": [1, "alive"], "a": [2, "alive"]}}', "JSON object"),
    (('{"digest": {"' + "x" * 64 + '": [1, "alive"]}}').encode(), "digest entry"),
    (b'{"digest": {}, "nodes": [{"id": "x"}]}', "record"),
    (b'{"digest": {}, "want": [5]}', "want"),
    (b'{"nodes": 5}', "nodes"),
    # a good record before a bad one: nothing is merged (no "ghost" appears)
    (b'{"nodes": [{"id": "ghost", "incarnation": 1, "port": 9, "addrs": ["127.0.0.9"], "role": "worker", '
     b'"meta": "", "state": "alive"}, {"id": "bad", "incarnation": 1}]}', "record"),
]


def test_pushpull_rejects_malformed_bodies(pair):
    c, _, exchange = pair
    before = {n: (v["incarnation"], v["status"]) for n, v in members(c).items()}
    for body, reason in MALFORMED_EXCHANGES:
        st, out = exchange(body)
        assert st == 400 and reason in out["error"], (body, st, out)
    after = {n: (v["incarnation"], v["status"]) for n, v in members(c).items()}
    # nothing added, nothing's status changed; an incarnation may only have grown by the
    # node's own refutation (a loaded machine can make a node suspect itself), never
    # reached anything a refused body carried
    assert {n: st for n, (_, st) in after.items()} == {n: st for n, (_, st) in before.items()}
    assert all(before[n][0] <= inc < before[n][0] + 5 for n, (inc, _) in after.items())
    # and the node still answers a good one
    st, out = exchange({"digest": {}})
    assert st == 200 and {r["id"] for r in out["nodes"]} == {"coord", "w1"}
