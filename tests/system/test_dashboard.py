"""The metrics dashboard backend (issue 12, helper B): every node samples each second and
reports to the coordinator's metrics_dashboard, which keeps time tiers, survives a restart
and serves /api/dashboard/*. A coordinator and two workers running the example services:
the API answers with real data of each worker within seconds; history has points at 1 s
and 1 min; an admin restarts a worker's service through control-service, a viewer and a
node identity cannot; a node cannot report as another node; a coordinator restart keeps
history; a killed worker shows as dead or stale."""
import json
import shutil
import time

import pytest

from conftest import wait_until
from test_enroll import export_identity, mtls_request
from test_services import HELLO, services, state_of


@pytest.fixture(scope="module")
def cluster(module_node_factory, tmp_path_factory):
    base = tmp_path_factory.mktemp("dash")
    fast = ["--metrics-report-interval", "1", "--metrics-stale-after", "4",
            "--metrics-cleanup-after", "12", "--metrics-cleanup-interval", "1"]
    nodes = []
    for name in ("coord", "w1", "w2"):
        sdir = base / f"{name}-services"
        sdir.mkdir()
        shutil.copytree(HELLO, sdir / "hello")
        kw = {} if name == "coord" else {"coordinator": False, "join": nodes[0]}
        nodes.append(module_node_factory.create(name, extra_args=["--services-directory", sdir] + fast, **kw))
    for n in nodes:
        wait_until(lambda: state_of(n, "hello") == "running", 20, f"hello on {n.name}")
    c = nodes[0]
    idents = {w.name: export_identity(w, base) for w in nodes[1:]}
    return c, nodes[1], nodes[2], idents


def api(c, path, token=None):
    headers = {"Authorization": "Bearer " + token} if token else None
    r = c.get(path, headers=headers)
    return r.status, (r.json() if r.body else None)


def metrics_view(c):
    st, body = api(c, "/api/dashboard/metrics")
    assert st == 200, body
    return body


def worker_ready(view, wid):
    w = view["workers"].get(wid)
    return (w and w["latest"] and w["latest"].get("cpu") is not None and w["state"] == "alive"
            and any(s["node_id"] == wid and s["name"] == "hello" for s in view["services"]))


def test_the_api_answers_with_each_workers_real_data(cluster):
    c, w1, w2, _ = cluster
    t0 = time.monotonic()
    wait_until(lambda: all(worker_ready(metrics_view(c), w) for w in ("w1", "w2")), 20, "both workers' samples")
    assert time.monotonic() - t0 < 20
    v = metrics_view(c)
    assert v["coordinator"]["node_id"] == "coord" and v["coordinator"]["role"] == "coordinator"
    assert v["coordinator"]["latest"] and v["coordinator"]["latest"]["mem_total"] > 0
    for wid in ("w1", "w2"):
        w = v["workers"][wid]
        s = w["latest"]
        assert w["role"] == "worker" and w["stale"] is False and w["version"]
        assert w["http_addr"].startswith("https://127.0.0.1:")
        assert abs(s["t"] - time.time()) < 30
        assert 0 <= s["cpu"] <= 100 and 0 < s["mem_percent"] <= 100 and s["mem_used"] > 0
        assert s["rss"] > 1_000_000 and s["fds"] > 3 and s["threads"] >= 1
        assert s["disk_percent"] is None or 0 <= s["disk_percent"] <= 100
        assert isinstance(s["nets"], dict) and isinstance(s["rpc"], dict) and "load1" in s
        hello = next(x for x in v["services"] if x["node_id"] == wid and x["name"] == "hello")
        assert hello["kind"] == "native" and hello["state"] == "running" and hello["version"] == "1.0.0"
        assert hello["health"] in ("healthy", "warning", "critical", "unknown")
        assert isinstance(hello["methods"], dict) and isinstance(hello["metrics"], dict)
    cs = v["cluster_stats"]
    assert cs["nodes_total"] == 3 and cs["nodes_alive"] == 3 and cs["nodes_dead"] == 0
    assert cs["services_running"] >= 3 and cs["cpu_avg"] is not None and cs["uptime_s"] >= 0
    # a call on w1 shows up in its per-method RPC figures
    for _ in range(5):
        w1.rpc("system/ping")

    def pinged():
        hist = api(c, "/api/dashboard/history/w1?range=15m&metrics=rpc_calls")[1]
        return any(x for x in hist["series"]["rpc_calls"] if x)
    wait_until(pinged, 10, "w1's rpc_calls in its history")
    # the services endpoint lists the same services
    st, body = api(c, "/api/dashboard/services")
    assert st == 200 and {(s["node_id"], s["name"]) for s in body["services"]} >= {("w1", "hello"), ("w2", "hello")}


def test_history_has_points_at_each_resolution(cluster):
    c, *_ = cluster
    wait_until(lambda: sum(x is not None for x in
                           api(c, "/api/dashboard/history/w1?range=15m")[1]["series"]["cpu"]) >= 3, 15, "points")
    st, h = api(c, "/api/dashboard/history/w1?range=15m")
    assert st == 200 and h["node_id"] == "w1" and h["resolution"] == 1
    assert len(h["t"]) == 900 and h["t"][-1] - h["t"][0] == 899 and h["from"] == h["t"][0] and h["to"] == h["t"][-1]
    assert set(h["series"]) == {"cpu", "mem_percent", "disk_percent", "net_rx_bps", "net_tx_bps", "load1", "rss",
                                "rpc_calls"}
    assert all(len(col) == 900 for col in h["series"].values())
    assert sum(x is not None for x in h["series"]["mem_percent"]) >= 3
    st, h = api(c, "/api/dashboard/history/w1?range=24h&metrics=mem_percent,rss")
    assert st == 200 and h["resolution"] == 60 and len(h["t"]) == 1440 and set(h["series"]) == {"mem_percent", "rss"}
    assert h["series"]["rss"][-1] or h["series"]["rss"][-2], "the open minute reads as its partial average"
    st, h = api(c, "/api/dashboard/history/w1?range=30d&metrics=cpu")
    assert st == 200 and h["resolution"] == 3600 and len(h["t"]) == 720
    st, h = api(c, "/api/dashboard/history/w1?limit=10&metrics=cpu")
    assert st == 200 and h["resolution"] == 1 and len(h["t"]) == 10
    # the guide's RPC form
    r = c.result("metrics_dashboard/get_metrics_history", {"node_id": "w2", "limit": 5})
    assert len(r["t"]) == 5
    # errors
    assert api(c, "/api/dashboard/history/nope")[0] == 404
    assert api(c, "/api/dashboard/history/w1?range=2y")[0] == 400
    assert api(c, "/api/dashboard/history/w1?metrics=cpu,bogus")[0] == 400
    assert api(c, "/api/dashboard/history/w1?range=24h&resolution=1")[0] == 400
    assert api(c, "/api/dashboard/history/w1?limit=0")[0] == 400


def test_stats_and_certificates(cluster):
    c, *_ = cluster
    st, s = api(c, "/api/dashboard/stats")
    assert st == 200 and s["reports_received"] > 0 and s["nodes_reporting"] >= 3 and s["samples_stored"] > 0
    assert s["bytes_per_metric_per_node"] == 12240
    assert [t["resolution_s"] for t in s["tiers"]] == [1, 60, 3600]
    assert [t["points"] for t in s["tiers"]] == [900, 1440, 720]
    st, certs = api(c, "/api/dashboard/certificates")
    assert st == 200 and certs["ca"]["not_after"] > time.time() and len(certs["ca"]["fingerprint"]) == 64
    ids = {n["node_id"]: n for n in certs["nodes"]}
    assert {"coord", "w1", "w2"} <= set(ids)
    assert ids["w1"]["revoked"] is False and ids["w1"]["not_after"] > time.time() and ids["w1"]["addresses"]


def control(c, body, token=None):
    headers = {"Content-Type": "application/json"}
    headers["Authorization"] = "Bearer " + (token or c.token)
    r = c.request("POST", "/api/dashboard/control-service", body=json.dumps(body).encode(), headers=headers)
    return r.status, r.json()


def test_an_admin_restarts_stops_and_starts_a_workers_service(cluster):
    c, w1, w2, _ = cluster
    before = services(w1)["hello"]["restarts"]
    st, r = control(c, {"worker_id": "w1", "service_name": "hello", "action": "restart"})
    assert st == 200, r
    assert r == {**r, "ok": True, "node_id": "w1", "service": "hello", "action": "restart", "state": "running"}
    assert services(w1)["hello"]["restarts"] == before + 1
    assert services(w2)["hello"]["restarts"] == 0  # only the named worker's
    st, r = control(c, {"worker_id": "w1", "service_name": "hello", "action": "stop"})
    assert st == 200 and r["state"] == "stopped", r
    assert state_of(w1, "hello") == "stopped"
    # the dashboard shows it at once, and the worker's next report agrees
    svc = next(s for s in metrics_view(c)["services"] if s["node_id"] == "w1" and s["name"] == "hello")
    assert svc["state"] == "stopped"
    time.sleep(2.5)
    svc = next(s for s in metrics_view(c)["services"] if s["node_id"] == "w1" and s["name"] == "hello")
    assert svc["state"] == "stopped"
    st, r = control(c, {"worker_id": "w1", "service_name": "hello", "action": "start"})
    assert st == 200 and r["state"] == "running", r
    assert state_of(w1, "hello") == "running"


def test_control_errors(cluster):
    c, *_ = cluster
    assert control(c, {"worker_id": "nope", "service_name": "hello", "action": "restart"})[0] == 404
    assert control(c, {"worker_id": "w1", "service_name": "nope", "action": "restart"})[0] == 404
    assert control(c, {"worker_id": "w1", "service_name": "hello", "action": "explode"})[0] == 400
    assert control(c, {"worker_id": "w1", "service_name": "hello"})[0] == 400
    r = c.request("POST", "/api/dashboard/control-service", body=b"not json",
                  headers={"Content-Type": "application/json"})
    assert r.status == 400


def test_a_viewer_or_a_node_cannot_control(cluster):
    c, w1, _, idents = cluster
    viewer = c.new_token(role="viewer")
    body = {"worker_id": "w1", "service_name": "hello", "action": "stop"}
    st, r = control(c, body, token=viewer)
    assert st == 403, r
    # viewers read
    assert api(c, "/api/dashboard/metrics", token=viewer)[0] == 200
    assert api(c, "/api/dashboard/history/w1", token=viewer)[0] == 200
    # nor through /rpc
    r = c.request("POST", "/rpc", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "metrics_dashboard/control_service",
                                                   "params": body}).encode(),
                  headers={"Content-Type": "application/json", "Authorization": "Bearer " + viewer})
    assert r.status == 403, r
    # a node's certificate is not an operator
    crt, key = idents["w1"]
    st, out = mtls_request(c, "POST", "/api/dashboard/control-service", crt, key, body=json.dumps(body).encode())
    assert st in (401, 403), (st, out)
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "metrics_dashboard/control_service", "params": body}).encode())
    assert st == 403 or "error" in json.loads(out), out
    assert state_of(w1, "hello") == "running"


def report(t, node_id, **extra):
    return {"node_id": node_id, "samples": [{"t": t, "cpu": 7.777, "mem_percent": 7.777}], **extra}


def test_a_node_cannot_report_as_another(cluster):
    c, _, _, idents = cluster
    crt, key = idents["w1"]
    t = int(time.time()) + 200  # ahead of w2's own samples: would be stored if accepted
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "metrics_dashboard/report_metrics", "params": report(t, "w2")}).encode())
    r = json.loads(out)
    assert st == 200 and r["error"]["code"] == -32005 and "may not report metrics as node w2" in r["error"]["message"]
    # an operator's token is not a node
    r = c.rpc("metrics_dashboard/report_metrics", report(t, "w2"))
    assert "only a node" in r["error"]["message"], r
    # nor can w1 have the coordinator relay it
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "cluster/call",
         "params": {"target": "coord", "method": "metrics_dashboard/report_metrics",
                    "params": report(t, "coord")}}).encode())
    assert "only a node" in json.loads(out)["result"]["error"]["message"], out
    # malformed reports are refused whole
    for bad in ({"node_id": "w1", "samples": [{"t": t, "cpu": "hot"}]},
                {"node_id": "w1", "samples": [{"t": "now"}]},
                {"node_id": "w1", "encoding": "lz4", "size": 10, "data": "!!!"},
                {"node_id": "w1", "samples": [], "extra": 1}):
        st, out = mtls_request(c, "POST", "/rpc", crt, key, body=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "metrics_dashboard/report_metrics", "params": bad}).encode())
        assert json.loads(out)["error"]["code"] == -32602, out
    # nothing of it was stored: a forged sample, ahead of w2's own, would be w2's latest
    v = metrics_view(c)
    for node in ("w1", "w2"):
        assert v["workers"][node]["latest"]["t"] < t - 100 and v["workers"][node]["latest"]["cpu"] != 7.777
    assert v["coordinator"]["latest"]["t"] < t - 100


def test_a_coordinator_restart_keeps_history(cluster):
    c, *_ = cluster
    old = c.result("metrics_dashboard/get_metrics_history", {"node_id": "w1", "range": "15m", "metrics": "mem_percent"})
    had = [(t, v) for t, v in zip(old["t"], old["series"]["mem_percent"]) if v is not None]
    assert len(had) >= 5
    down_from = int(time.time())
    c.fixed_port = c.port  # back where the workers know it is
    c.stop()
    time.sleep(3)  # the workers keep sampling meanwhile (3 s: at least two whole seconds in between)
    down_to = int(time.time())
    c.start()
    new = c.result("metrics_dashboard/get_metrics_history", {"node_id": "w1", "range": "15m", "metrics": "mem_percent"})
    kept = dict(zip(new["t"], new["series"]["mem_percent"]))
    assert all(kept.get(t) == v for t, v in had), "points before the restart are back"
    assert c.result("metrics_dashboard/get_stats")["snapshot"]["loaded_nodes"] >= 3
    # and the workers report to it again
    wait_until(lambda: metrics_view(c)["workers"]["w1"]["latest"]["t"] > down_to + 2, 30, "w1 reports again")
    # what w1 sampled while the coordinator was away came from its ring: no hole
    h = c.result("metrics_dashboard/get_metrics_history", {"node_id": "w1", "range": "15m", "metrics": "mem_percent"})
    during = [v for t, v in zip(h["t"], h["series"]["mem_percent"]) if down_from < t < down_to]
    # at most one second missing (a worker busy past a whole second skips a sample): without
    # the ring, every second the coordinator was down (2 s at least) would be missing
    assert len(during) >= 2 and sum(v is None for v in during) <= 1, during


def test_a_killed_worker_shows_as_dead_or_stale(cluster):
    c, _, w2, _ = cluster
    w2.kill()

    def gone():
        w = metrics_view(c)["workers"]["w2"]
        return w["state"] in ("dead", "suspect") and w["stale"] is True
    wait_until(gone, 40, "w2 dead and stale")
    v = metrics_view(c)
    assert v["cluster_stats"]["nodes_alive"] == 2
    assert v["workers"]["w2"]["latest"] is not None  # its last sample stays visible
    # silent for metrics_cleanup_after (12 s here): its history goes, the member stays listed
    stored = c.result("metrics_dashboard/get_stats")["nodes_stored"]
    wait_until(lambda: c.result("metrics_dashboard/get_stats")["nodes_stored"] == stored - 1, 30, "w2 cleaned up")
    h = c.result("metrics_dashboard/get_metrics_history", {"node_id": "w2", "range": "15m", "metrics": "cpu"})
    assert all(x is None for x in h["series"]["cpu"])
    assert metrics_view(c)["workers"]["w2"]["latest"] is None
