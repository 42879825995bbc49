"""The dashboard's WebSocket /ws/dashboard on the coordinator (issue 12): auth by
the first message, the initial picture, live deltas (member, logs, service), the
per-socket log filter, resume after a reconnect, and the bounds an intruder or a
stuck browser runs into (no auth, bad token, foreign Origin, a socket that never
reads)."""
import json
import socket
import time

import pytest

from conftest import wait_until
from test_services import install, state_of
from wsclient import WS, Closed


@pytest.fixture
def cluster(node_factory, tmp_path):
    sdir = tmp_path / "services"
    sdir.mkdir()
    install(sdir)
    c = node_factory.create("coord", extra_args=["--services-directory", sdir, "--services-rescan-interval", "1",
                                                 "--dashboard-ws-max-unsent-bytes", "65536"])
    wdir = tmp_path / "wservices"
    wdir.mkdir()
    install(wdir)
    w = node_factory.create("w1", coordinator=False, join=c, join_token=c.create_join_token(),
                            extra_args=["--services-directory", wdir, "--services-rescan-interval", "1"])
    wait_until(lambda: state_of(c, "hello") == "running", 10, "hello running")
    wait_until(lambda: {n["node_id"]: n["status"] for n in c.get("/cluster/nodes").json()["nodes"]}.get("w1")
               == "alive", 15, "w1 alive at the coordinator")
    return c, w


def connect(c, role="viewer", **kw):
    ws = WS(c)
    assert ws.status == 101, (ws.status, ws.body)
    ws.auth(c.new_token(role=role), **kw)
    return ws


def test_auth_is_required_and_checked(cluster):
    c, _ = cluster
    # nothing sent: closed with 4401 after the 5 s deadline
    ws = WS(c)
    assert ws.status == 101
    t0 = time.monotonic()
    code, _, msgs = ws.expect_close(timeout=8)
    assert code == 4401 and 4 <= time.monotonic() - t0 <= 7.5
    assert msgs and msgs[-1]["type"] == "error"
    ws.close()
    # a bad token
    ws = WS(c)
    ws.auth("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    code, _, msgs = ws.expect_close()
    assert code == 4401 and msgs[0]["type"] == "error" and "authentication failed" in msgs[0]["error"]
    ws.close()
    # anything but auth first
    ws = WS(c)
    ws.send({"type": "ping"})
    code, _, msgs = ws.expect_close()
    assert code == 4401 and not any(m.get("type") == "pong" for m in msgs)
    ws.close()
    # a node's certificate is no operator: the socket still wants a token
    # (the admin API key works, as a token would)
    ws = WS(c)
    ws.auth(c.admin_key)
    m = ws.recv()
    assert m["type"] == "initial" and m["data"]["me"] == {"subject": "admin", "role": "admin"}
    ws.close()


def test_viewer_gets_initial_with_the_nodes_and_pong(cluster):
    c, _ = cluster
    ws = connect(c, "viewer")
    m = ws.recv()
    assert m["type"] == "initial" and isinstance(m["seq"], int)
    d = m["data"]
    assert d["me"]["role"] == "viewer"
    assert d["metrics"]["coordinator"]["node_id"] == "coord"
    assert d["metrics"]["workers"]["w1"]["state"] == "alive"
    assert d["metrics"]["cluster_stats"]["nodes_total"] == 2
    assert any(s["name"] == "hello" and s["node_id"] == "coord" and s["state"] == "running"
               for s in d["metrics"]["services"])
    assert isinstance(d["logs"], list) and "nodes" in d["log_sources"]
    ws.send({"type": "ping"})
    assert ws.wait_for(lambda x: x["type"] == "pong", 3, "pong")
    ws.send({"type": "log_filter", "filter": {"level": "LOUD"}})  # a bad filter: an error, the socket stays
    e, _ = ws.wait_for(lambda x: x["type"] == "error", 3, "error")
    assert "level" in e["error"]
    ws.send({"type": "ping"})
    assert ws.wait_for(lambda x: x["type"] == "pong", 3, "pong after the error")
    ws.close()


def test_plain_get_is_refused(cluster):
    c, _ = cluster
    r = c.get("/ws/dashboard", auth=False)
    assert r.status == 426


def test_wrong_origin_is_refused(cluster):
    c, _ = cluster
    ws = WS(c, origin="https://evil.example")
    assert ws.status == 403
    ws.close()
    ws = WS(c, origin=f"https://127.0.0.1:{c.port + 1}")  # same host, another port: another origin
    assert ws.status == 403
    ws.close()
    ws = WS(c, origin=c.url.upper().replace("HTTPS", "https"))
    assert ws.status == 101
    ws.close()


def test_killed_worker_becomes_a_member_delta(cluster):
    c, w = cluster
    ws = connect(c)
    first = ws.recv()
    assert first["type"] == "initial"
    w.kill()
    m, seen = ws.wait_for(lambda x: x["type"] == "member" and x["node_id"] == "w1" and
                          x["event"] in ("suspect", "dead"), 30, "w1 suspect/dead")
    assert m["node"]["node_id"] == "w1" and m["node"]["state"] in ("suspect", "dead")
    seqs = [x["seq"] for x in seen if "seq" in x]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > first["seq"]
    ws.close()


def test_a_workers_line_arrives_filtered(cluster):
    c, w = cluster
    a = connect(c, log_filter={"node_id": "w1"})
    b = connect(c, log_filter={"node_id": "coord"})
    assert a.recv()["type"] == "initial" and b.recv()["type"] == "initial"
    marker = f"wsmarker-{time.monotonic_ns()}"
    t0 = time.monotonic()
    w.get(f"/no/such/{marker}")  # an access line on the worker
    m, _ = a.wait_for(lambda x: x["type"] == "logs" and any(marker in r["message"] for r in x["logs"]), 10,
                      "the worker's line")
    elapsed = time.monotonic() - t0
    assert all(r["node_id"] == "w1" for r in m["logs"])
    print(f"worker line to the page: {elapsed * 1000:.0f} ms")
    assert elapsed < 3, elapsed  # shipper batching included; the hub itself adds nothing
    # the other socket's filter excludes it: it never sees the line
    got = None
    try:
        got, _ = b.wait_for(lambda x: x["type"] == "logs" and any(marker in r["message"] for r in x["logs"]), 2, "x")
    except AssertionError as e:
        assert "no x" in str(e)
    assert got is None, f"the coord-filtered socket got the worker's line: {got}"
    # the filter can change while connected
    b.send({"type": "log_filter", "filter": {"node_id": "w1", "search": marker}})
    time.sleep(0.2)
    w.get(f"/no/such/{marker}/again")
    m, _ = b.wait_for(lambda x: x["type"] == "logs" and any(marker in r["message"] for r in x["logs"]), 10,
                      "the line after the filter change")
    assert all(marker in r["message"] for r in m["logs"])
    a.close()
    b.close()


def test_service_restart_is_a_service_delta(cluster):
    c, _ = cluster
    ws = connect(c)
    assert ws.recv()["type"] == "initial"
    c.result("services/restart", {"name": "hello"})
    states = []

    def running_again(x):
        if x["type"] == "service" and x["service"]["name"] == "hello":
            states.append(x["service"]["state"])
            return x["service"]["state"] == "running"
        return False

    m, _ = ws.wait_for(running_again, 10, "hello running again")
    assert m["node_id"] == "coord" and m["service"]["kind"] == "native"
    assert states[0] in ("stopping", "stopped", "loading", "starting"), states
    ws.close()


def test_a_workers_service_change_arrives_through_gossip(cluster):
    c, w = cluster
    wait_until(lambda: state_of(w, "hello") == "running", 10, "hello running on w1")

    def hello_at_coord():
        nodes = {n["node_id"]: n for n in c.get("/cluster/nodes").json()["nodes"]}
        return any(s["name"] == "hello" and s.get("status") == "running" for s in nodes["w1"]["services"])

    wait_until(hello_at_coord, 15, "w1's hello in its gossiped record at the coordinator")
    ws = connect(c)
    init = ws.recv()
    assert any(s["node_id"] == "w1" and s["name"] == "hello" for s in init["data"]["metrics"]["services"])
    w.result("services/stop", {"name": "hello"})
    m, _ = ws.wait_for(lambda x: x["type"] == "service" and x["node_id"] == "w1" and
                       x["service"]["name"] == "hello" and x["service"]["state"] == "stopped", 15,
                       "w1's hello stopped")
    assert m["service"]["node_id"] == "w1"
    ws.close()


def test_resume_after_reconnect_gets_the_missed_deltas(cluster):
    c, _ = cluster
    ws = connect(c)
    init = ws.recv()
    seq = init["seq"]
    ws.close()
    c.result("services/restart", {"name": "hello"})
    wait_until(lambda: state_of(c, "hello") == "running", 10, "hello running")
    ws = connect(c, resume=seq)
    r = ws.recv()
    assert r["type"] == "resumed" and r["seq"] > seq
    m, seen = ws.wait_for(lambda x: x["type"] == "service" and x["service"]["state"] == "running", 5,
                          "the missed service deltas")
    assert all(x["seq"] > seq for x in seen)
    ws.close()
    # a seq this node never issued (another run): a fresh initial instead
    ws = connect(c, resume=1)
    assert ws.recv()["type"] == "initial"
    ws.close()


def test_a_socket_that_never_reads_is_cut_off_and_others_go_on(cluster):
    c, _ = cluster
    slow = WS(c)  # (a tiny SO_RCVBUF here stalls the test client's own TCP, not the node)
    slow.auth(c.new_token(role="viewer"))
    good = connect(c)
    assert good.recv()["type"] == "initial"
    # the slow one floods pings and never reads a pong: its unsent bytes reach the cap
    ping = json.dumps({"type": "ping"}).encode()
    t0 = time.monotonic()
    cut = False
    try:
        while time.monotonic() - t0 < 40:
            for _ in range(500):
                slow.send_frame(1, ping)
            r = c.get("/health", auth=False)
            assert r.status == 200
    except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError) as e:
        cut = True
        print(f"cut off after {time.monotonic() - t0:.1f} s: {e!r}")
    assert cut, "the socket that never reads was not closed"
    assert c.wait_for_log("[dashboard] closing the dashboard socket", 5), \
        [l for l in c.stderr().splitlines() if "WARN" in l][-5:]
    # the other socket still works and gets deltas
    good.send({"type": "ping"})
    assert good.wait_for(lambda x: x["type"] == "pong", 5, "pong on the good socket")
    c.result("services/restart", {"name": "hello"})
    good.wait_for(lambda x: x["type"] == "service", 10, "a service delta on the good socket")
    slow.close()
    good.close()


def test_oversized_message_closes_with_1009(cluster):
    c, _ = cluster
    ws = connect(c)
    assert ws.recv()["type"] == "initial"
    ws.send_frame(1, b"x" * (70 * 1024))
    code, _, _ = ws.expect_close()
    assert code == 1009
    ws.close()


def test_a_revoked_token_ends_its_socket(cluster):
    c, _ = cluster
    victim = c.new_token(role="viewer")
    ws = WS(c)
    ws.auth(victim)
    assert ws.recv()["type"] == "initial"
    other = connect(c)
    assert other.recv()["type"] == "initial"
    r = c.request("POST", "/auth/revoke", body=json.dumps({"token": victim}).encode(),
                  headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    code, _, msgs = ws.expect_close(timeout=15)  # credentials are checked again every 10 s
    assert code == 4401 and any("revoked" in m.get("error", "") for m in msgs), msgs
    other.send({"type": "ping"})
    assert other.wait_for(lambda x: x["type"] == "pong", 5, "pong on the socket with a valid token")
    ws.close()
    other.close()
