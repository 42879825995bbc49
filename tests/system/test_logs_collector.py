"""The coordinator's log collector (issue 11, the collector half): add_logs from a node's
certificate for itself only, all or nothing, idempotent by sequence number, durable across
kill -9; get_logs filters, search, since/until, paging and exact cursor resume; long-poll
follow; clear_logs for admins only.

The batches are made by hand (the contract in docs/logs.md) and sent with the real
certificates of two enrolled workers, which are stopped after enrolment so that only this
file speaks for them.
"""
import json
import os
import socket
import ssl
import threading
import time

import pytest

from conftest import Node, T, wait_until
from test_enroll import export_identity, mtls_request


@pytest.fixture(scope="module")
def cluster(module_node_factory, tmp_path_factory):
    # a large body limit so the 100k-record batch reaches the collector's own check
    c = module_node_factory.create("coord", extra_args=["--http-max-body-size", "16777216"])
    idents = {}
    tmp = tmp_path_factory.mktemp("idents")
    for name in ("worker-1", "worker-2"):
        # these tests send hand-made batches as the workers: their own shippers stay quiet
        w = module_node_factory.create(name, coordinator=False, join=c, extra_args=["--log-ship-level", "critical"])
        idents[name] = export_identity(w, tmp)
        w.stop()
    return c, idents


def rpc_as(c, ident, method, params, timeout=10):
    crt, key = ident
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=body)
    assert st == 200, (st, out)
    return json.loads(out)


def rec(seq, ts=None, level="INFO", logger="test", message=None, **kw):
    r = {"seq": seq, "ts": ts if ts is not None else time.time(), "level": level, "logger": logger,
         "message": message if message is not None else f"line {seq}"}
    r.update(kw)
    return r


def add(c, idents, node, records, as_node=None):
    return rpc_as(c, idents[as_node or node], "log_collector/add_logs", {"node_id": node, "records": records})


def get_logs(c, **params):
    r = c.rpc("log_collector/get_logs", params, timeout=T(70))
    assert "result" in r, r
    return r["result"]


def stats_node(c, node):
    return c.result("log_collector/get_stats")["nodes"].get(node, {})


# ---- storing --------------------------------------------------------------------------------

def test_a_record_is_stored_with_every_field(cluster):
    c, idents = cluster
    ts = 1796209961.123456 if time.time() > 1796209961.2 else time.time() - 1.5
    full = rec(1, ts=ts, level="WARNING", logger="membership", message="worker-1 alive \u00e9\u4e2d",
               file="src/x.c", func="f", line=12, service="hello", request_id="abc")
    r = add(c, idents, "worker-1", [full])
    assert r["result"] == {"acked": 1}, r
    got = get_logs(c, node_id="worker-1")["logs"]
    assert len(got) == 1, got
    g = got[0]
    for k in ("seq", "level", "logger", "message", "file", "func", "line", "service", "request_id"):
        assert g[k] == full[k], (k, g)
    assert g["node_id"] == "worker-1"
    assert g["ts_us"] == round(ts * 1e6) and abs(g["ts"] - ts) < 1e-4, g
    assert g["timestamp"].endswith("Z") and g["timestamp"][:4].isdigit()


def test_resend_is_idempotent_and_gaps_are_kept(cluster):
    c, idents = cluster
    node = "worker-2"
    assert add(c, idents, node, [rec(i) for i in range(1, 6)])["result"] == {"acked": 5}
    # a resend overlapping what is stored: only 6 and 7 are new
    assert add(c, idents, node, [rec(i) for i in range(3, 8)])["result"] == {"acked": 7}
    # everything again: nothing new, the same acknowledgement
    assert add(c, idents, node, [rec(i) for i in range(1, 8)])["result"] == {"acked": 7}
    # a gap (lost records on the node) is accepted
    loss = rec(10, level="WARNING", logger="p2p.logs", message="lost 2 records (spool full) between a and b", lost=2)
    assert add(c, idents, node, [loss])["result"] == {"acked": 10}
    seqs = [l["seq"] for l in get_logs(c, node_id=node, limit=100)["logs"]]
    assert seqs == [1, 2, 3, 4, 5, 6, 7, 10], seqs
    st = stats_node(c, node)
    assert st["lost"] == 2 and st["acked_seq"] == 10, st


def test_a_node_adds_only_its_own_lines(cluster):
    c, idents = cluster
    before = stats_node(c, "worker-1").get("acked_seq", 0)
    r = add(c, idents, "worker-1", [rec(before + 1)], as_node="worker-2")
    assert r["error"]["code"] == -32005 and "may not add lines as node worker-1" in r["error"]["message"], r
    # an operator's admin token is not a node
    r = c.rpc("log_collector/add_logs", {"node_id": "worker-1", "records": [rec(before + 1)]})
    assert "error" in r and "only a node" in r["error"]["message"], r
    # nor can worker-2 have the coordinator relay it (cluster/call runs it for worker-2, not as the coordinator)
    r = rpc_as(c, idents["worker-2"], "cluster/call",
               {"target": "coord", "method": "log_collector/add_logs",
                "params": {"node_id": "coord", "records": [rec(10 ** 9)]}})
    assert "error" in r["result"] and "only a node" in r["result"]["error"]["message"], r
    assert stats_node(c, "worker-1").get("acked_seq", 0) == before


BAD = [
    ("records must be an array", {"records": "x"}),
    ("records must hold 1..5000", {"records": []}),
    ("records[1].seq", {"records": [rec(101), rec("102")]}),
    ("records[0].ts", {"records": [rec(101, ts="now")]}),
    ("records[0].ts: more than 600 s in the future", {"records": [rec(101, ts=time.time() + 86400)]}),
    ("records[0].level", {"records": [rec(101, level="LOUD")]}),
    ("records[0].logger", {"records": [rec(101, logger="")]}),
    ("records[0].logger", {"records": [rec(101, logger="x" * 65)]}),
    ("records[0].message: must be 0..16448 bytes", {"records": [rec(101, message="y" * 20000)]}),
    ("records[0].line", {"records": [rec(101, line="12")]}),
    ("records[2].seq: must be greater", {"records": [rec(101), rec(102), rec(102)]}),
    ("records[1]", {"records": [rec(101), 5]}),
    ("unexpected parameter", {"records": [rec(101)], "extra": 1}),
]


@pytest.mark.parametrize("why,params", BAD, ids=[b[0][:30] for b in BAD])
def test_malformed_batches_are_refused_whole(cluster, why, params):
    c, idents = cluster
    before = stats_node(c, "worker-1")
    params = dict(params, node_id="worker-1")
    r = rpc_as(c, idents["worker-1"], "log_collector/add_logs", params)
    assert r.get("error", {}).get("code") == -32602 and why in r["error"]["message"], r
    after = stats_node(c, "worker-1")
    assert after.get("ingested") == before.get("ingested") and after.get("acked_seq") == before.get("acked_seq")


def test_invalid_utf8_and_huge_batches_store_nothing(cluster):
    c, idents = cluster
    before = stats_node(c, "worker-1")
    crt, key = idents["worker-1"]
    raw = (b'{"jsonrpc":"2.0","id":1,"method":"log_collector/add_logs","params":{"node_id":"worker-1",'
           b'"records":[{"seq":200,"ts":%f,"level":"INFO","logger":"t","message":"bad \xff\xfe"}]}}' % time.time())
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=raw)
    assert st == 200 and json.loads(out)["error"]["code"] == -32700, out
    nul = raw.replace(b"bad \xff\xfe", b"a\\u0000b")
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=nul)
    assert st == 200 and json.loads(out)["error"]["code"] == -32700, out
    # 100k records: refused by count, nothing stored
    t = time.time()
    many = [{"seq": 1000 + i, "ts": t, "level": "INFO", "logger": "t", "message": ""} for i in range(100000)]
    r = rpc_as(c, idents["worker-1"], "log_collector/add_logs", {"node_id": "worker-1", "records": many},
               timeout=60)
    assert r["error"]["code"] == -32602 and "1..5000 records (got 100000)" in r["error"]["message"], r
    after = stats_node(c, "worker-1")
    assert after["ingested"] == before["ingested"] and after["acked_seq"] == before["acked_seq"]


# ---- queries ----------------------------------------------------------------------------------

KNOWN_NODE = "worker-1"
T0 = 1_700_000_000.0  # known times: one line per second from here


@pytest.fixture(scope="module")
def known(cluster):
    """60 known lines on worker-1: levels cycle, loggers alternate, every 7th mentions 'Disk'."""
    c, idents = cluster
    base = stats_node(c, KNOWN_NODE).get("acked_seq", 0)
    lv = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    recs = []
    for i in range(60):
        msg = f"event {i}" + (" Disk full on /var" if i % 7 == 0 else "")
        recs.append(rec(base + 1 + i, ts=T0 + i, level=lv[i % 5], logger="alpha" if i % 2 else "beta", message=msg))
    assert add(c, idents, KNOWN_NODE, recs)["result"] == {"acked": base + 60}
    return c, recs


def q(c, **kw):
    kw.setdefault("node_id", KNOWN_NODE)
    kw.setdefault("since", T0)
    kw.setdefault("until", T0 + 59)
    return get_logs(c, **kw)


def test_filters_search_and_time_range(known):
    c, recs = known
    assert q(c, limit=1000)["total"] == 60
    errs = q(c, level="ERROR", limit=1000)["logs"]
    assert {l["level"] for l in errs} == {"ERROR", "CRITICAL"} and len(errs) == 24, errs
    alpha = q(c, logger_name="alpha", limit=1000)["logs"]
    assert len(alpha) == 30 and all(l["logger"] == "alpha" for l in alpha)
    disk = q(c, search="disk FULL", limit=1000)["logs"]
    assert [l["message"] for l in disk] == [r["message"] for r in recs if "Disk" in r["message"]]
    rx = q(c, search="^event (1|2)[0-9] Disk", regex=True, limit=1000)["logs"]
    assert [l["message"].split()[1] for l in rx] == ["14", "21", "28"], rx
    window = q(c, since=T0 + 10, until=T0 + 19, limit=1000)["logs"]
    assert [l["ts"] for l in window] == [T0 + i for i in range(10, 20)]
    iso = q(c, since="2023-11-14T22:13:30Z", until="2023-11-14T22:13:39.5Z", limit=1000)["logs"]
    assert [round(l["ts"] - T0) for l in iso] == list(range(10, 20)), iso


def test_bad_queries_get_clear_errors(known):
    c, _ = known
    for params, why in [({"level": "LOUD"}, "level must be"), ({"limit": 0}, "limit must be"),
                        ({"limit": 10001}, "limit must be"), ({"search": "x" * 300}, "search must be at most"),
                        ({"search": "(a)\\1", "regex": True}, "back-references"),
                        ({"search": "a{1000}", "regex": True}, "above 255"),
                        ({"search": "(", "regex": True}, "invalid regex"),
                        ({"since": "yesterday"}, "since must be"), ({"cursor": "worker-1"}, "cursor"),
                        ({"since": T0 + 5, "until": T0}, "since is after until"), ({"nope": 1}, "unexpected")]:
        r = c.rpc("log_collector/get_logs", params)
        assert r.get("error", {}).get("code") == -32602 and why in r["error"]["message"], (params, r)


def test_paging_newest_first_pages(known):
    c, recs = known
    p1 = q(c, limit=25)
    p2 = q(c, limit=25, offset=25)
    p3 = q(c, limit=25, offset=50)
    # each page in time order; pages go back in time
    assert [l["ts"] for l in p1["logs"]] == [T0 + i for i in range(35, 60)]
    assert [l["ts"] for l in p2["logs"]] == [T0 + i for i in range(10, 35)]
    assert [l["ts"] for l in p3["logs"]] == [T0 + i for i in range(0, 10)]


def test_cursor_resumes_exactly(known):
    c, recs = known
    first = q(c, limit=1)  # the newest line: its cursor is "now"
    # from an empty cursor forward, 7 at a time: every known line exactly once, in order
    cur, seen = "", []
    for _ in range(20):
        page = q(c, cursor=cur, limit=7)
        seen += [l["seq"] for l in page["logs"]]
        cur = page["cursor"]
        if not page["logs"]:
            break
    assert seen == [r["seq"] for r in recs], seen
    # nothing after the end; a cursor from a tail query is "now" too
    assert q(c, cursor=cur)["logs"] == []
    assert q(c, cursor=first["cursor"])["logs"] == []


# ---- follow -------------------------------------------------------------------------------------

def test_follow_sees_a_new_line_promptly(cluster):
    c, idents = cluster
    node = "worker-2"
    start = get_logs(c, node_id=node, limit=1)["cursor"]
    out = {}

    def follow():
        t0 = time.monotonic()
        out["r"] = get_logs(c, node_id=node, cursor=start, wait_ms=20000)
        out["t"] = time.monotonic()
    th = threading.Thread(target=follow)
    th.start()
    time.sleep(0.5)  # parked by now
    seq = stats_node(c, node).get("acked_seq", 0) + 1
    t_add = time.monotonic()
    assert add(c, idents, node, [rec(seq, message="followed line")])["result"] == {"acked": seq}
    th.join(T(20))
    assert "r" in out, "the follower got nothing"
    assert [l["message"] for l in out["r"]["logs"]] == ["followed line"], out
    delay = out["t"] - t_add
    assert delay < T(1.0), f"follow answered {delay * 1000:.0f} ms after the line was added"
    print(f"follow delivery: {delay * 1000:.1f} ms")


def test_follow_times_out_empty_with_a_usable_cursor(cluster):
    c, _ = cluster
    t0 = time.monotonic()
    r = get_logs(c, node_id="worker-2", search="never-matches-anything", wait_ms=300)
    assert r["logs"] == [] and r["skipped"] == 0 and 0.25 < time.monotonic() - t0 < T(5), r
    assert get_logs(c, node_id="worker-2", search="never-matches-anything", cursor=r["cursor"])["logs"] == []


def stalled_follower(c, cursor):
    """A follower that asks and never reads: a raw HTTP/1.1 long-poll on its own connection."""
    s = c.tls_socket()
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "log_collector/get_logs",
                       "params": {"node_id": "worker-2", "cursor": cursor, "wait_ms": 30000}}).encode()
    s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + c.auth_line() +
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return s


def test_slow_followers_do_not_stall_others_or_ingest(cluster):
    c, idents = cluster
    node = "worker-2"
    cur = get_logs(c, node_id=node, limit=1)["cursor"]
    stalled = [stalled_follower(c, cur) for _ in range(20)]
    try:
        time.sleep(0.5)
        seq = stats_node(c, node).get("acked_seq", 0)
        # a burst bigger than the ring: 1200 lines > max_log_entries (1000)
        t0 = time.monotonic()
        for k in range(6):
            batch = [rec(seq + 1 + k * 200 + i, message=f"burst {k * 200 + i}") for i in range(200)]
            assert add(c, idents, node, batch)["result"]["acked"] == seq + (k + 1) * 200
        burst_s = time.monotonic() - t0
        assert burst_s < T(5), burst_s
        # a prompt follower still gets a new line at once
        out = {}
        now_cur = get_logs(c, node_id=node, limit=1)["cursor"]
        th = threading.Thread(target=lambda: out.update(r=get_logs(c, node_id=node, cursor=now_cur, wait_ms=20000),
                                                        t=time.monotonic()))
        th.start()
        time.sleep(0.3)
        t_add = time.monotonic()
        add(c, idents, node, [rec(seq + 1201, message="after the burst")])
        th.join(T(20))
        assert out["r"]["logs"][0]["message"] == "after the burst" and out["t"] - t_add < T(1.0), out
        # a follower that fell behind the ring misses nothing: the older lines come from the segment files
        behind = get_logs(c, node_id=node, cursor=cur, limit=10)
        assert behind["skipped"] == 0, behind
        assert [l["message"] for l in behind["logs"]] == [f"burst {i}" for i in range(10)], behind
    finally:
        for s in stalled:
            s.close()


# ---- clearing, authorisation -------------------------------------------------------------------------

def test_viewer_reads_but_cannot_clear(cluster):
    c, idents = cluster
    seq = stats_node(c, "worker-2").get("acked_seq", 0) + 1
    assert add(c, idents, "worker-2", [rec(seq)])["result"] == {"acked": seq}
    viewer = c.new_token(role="viewer")
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + viewer}
    r = c.post_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "log_collector/get_logs",
                               "params": {"node_id": "worker-2", "limit": 1}}), headers=h)
    assert r.status == 200 and len(r.json()["result"]["logs"]) == 1, r
    r = c.post_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "log_collector/clear_logs",
                               "params": {"node_id": "worker-2"}}), headers=h)
    assert r.status == 403 and "viewer" in r.json()["error"], r
    # nor can a node's certificate
    crt, key = idents["worker-2"]
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "log_collector/clear_logs", "params": {"node_id": "worker-2"}}).encode())
    assert st == 403 and "node identity may not call" in json.loads(out)["error"], out
    assert stats_node(c, "worker-2")["in_memory"] > 0


def test_admin_clears_one_node_and_the_high_water_mark_stays(cluster, known):
    c, idents = cluster
    acked = stats_node(c, "worker-2")["acked_seq"]
    assert c.result("log_collector/clear_logs", {"node_id": "worker-2"}) == {"cleared": True, "node_id": "worker-2"}
    assert get_logs(c, node_id="worker-2")["logs"] == []
    assert get_logs(c, node_id="worker-1")["logs"], "worker-1's lines must stay"
    # a late resend of cleared lines is not stored again
    assert add(c, idents, "worker-2", [rec(acked)])["result"] == {"acked": acked}
    assert get_logs(c, node_id="worker-2")["logs"] == []
    srcs = c.result("log_collector/get_log_sources")
    assert "worker-1" in srcs["nodes"] and "alpha" in srcs["loggers"] and srcs["log_levels"][0] == "DEBUG", srcs


# ---- durability ------------------------------------------------------------------------------------

def test_kill_9_keeps_acknowledged_lines_and_a_torn_tail_is_cut(cluster, known):
    c, idents = cluster
    node = "worker-2"
    base = stats_node(c, node).get("acked_seq", 0)
    for k in range(5):
        assert add(c, idents, node, [rec(base + 1 + k * 10 + i, message=f"durable {k * 10 + i}")
                                     for i in range(10)])["result"] == {"acked": base + (k + 1) * 10}
    before = get_logs(c, node_id=node, limit=1000)["logs"]
    c.kill()
    # a crash mid-write: half a frame at the end of the newest segment
    segdir = c.data_dir / "logs" / node
    newest = sorted(segdir.glob("*.seg"))[-1]
    with open(newest, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34\x56\x78{\"seq\":")
    c.start()
    after = get_logs(c, node_id=node, limit=1000)["logs"]
    assert [l["seq"] for l in after] == [l["seq"] for l in before], after
    assert [l["seq"] for l in after[-50:]] == list(range(base + 1, base + 51)), after
    st = stats_node(c, node)
    assert st["acked_seq"] == base + 50 and st["damaged_bytes"] == 15, st
    # appends continue after the last whole record, and survive another restart
    assert add(c, idents, node, [rec(base + 51, message="after the tear")])["result"] == {"acked": base + 51}
    c.kill()
    c.start()
    last = get_logs(c, node_id=node, limit=2)["logs"]
    assert [l["message"] for l in last] == ["durable 49", "after the tear"], last
    # the known lines of worker-1 are still there too
    assert get_logs(c, node_id="worker-1", since=T0, until=T0 + 59, limit=1000)["total"] == 60


# ---- HTTP -------------------------------------------------------------------------------------------------

def test_http_api_logs(cluster):
    c, idents = cluster
    node = "worker-1"
    r = c.get(f"/api/logs?node_id={node}&since={T0}&until={T0 + 59}&level=ERROR&logger_name=alpha&limit=100")
    assert r.status == 200, r
    logs = r.json()["logs"]
    assert logs and all(l["level"] in ("ERROR", "CRITICAL") and l["logger"] == "alpha" for l in logs), logs
    r = c.get(f"/api/logs?node_id={node}&search=disk%20full&since=2023-11-14T22%3A13%3A20Z&until={T0 + 59}")
    assert r.status == 200 and len(r.json()["logs"]) == 9, r  # i = 0, 7, ..., 56
    r = c.get("/api/logs?limit=zero")
    assert r.status == 400 and "limit must be" in r.json()["error"], r
    r = c.get("/api/logs?search=%zz")
    assert r.status == 400, r
    r = c.get("/api/logs/sources")
    assert r.status == 200 and node in r.json()["nodes"], r
    viewer = c.new_token(role="viewer")
    r = c.get(f"/api/logs?node_id={node}&limit=1", headers={"Authorization": "Bearer " + viewer})
    assert r.status == 200 and len(r.json()["logs"]) == 1, r
    r = c.request("DELETE", f"/api/logs?node_id={node}", headers={"Authorization": "Bearer " + viewer})
    assert r.status == 403, r
    assert len(get_logs(c, node_id=node, limit=5)["logs"]) == 5
    r = c.request("DELETE", "/api/logs?node_id=nobody")
    assert r.status == 400 and "no logs from that node" in r.json()["error"], r
    r = c.request("DELETE", f"/api/logs?node_id={node}")
    assert r.status == 200 and r.json() == {"cleared": True, "node_id": node}, r
    assert get_logs(c, node_id=node)["logs"] == []


# ---- request ids ------------------------------------------------------------------------------------------

def test_lines_logged_while_handling_a_call_carry_its_request_id(cluster):
    """clear_logs logs "logs cleared: ..." while it handles the call: that line carries the call's
    request id (<node id>-<n>, a new one per call); lines logged outside any call carry none."""
    import re
    c, idents = cluster
    base = stats_node(c, "worker-2").get("acked_seq", 0)
    for k in range(2):
        assert add(c, idents, "worker-2", [rec(base + 1 + k, message="to clear")])["result"]
        assert c.result("log_collector/clear_logs", {"node_id": "worker-2"})["cleared"] is True
    lines = wait_until(lambda: (lambda l: l if len(l) >= 2 else None)(
        get_logs(c, node_id="coord", search="logs cleared: worker-2", limit=100)["logs"]), 10, "two cleared lines")
    ids = [l.get("request_id") for l in lines[-2:]]
    assert all(i and re.fullmatch(r"coord-\d+", i) for i in ids) and ids[0] != ids[1], ids
    ready = get_logs(c, node_id="coord", search="node ready", limit=10)["logs"]
    assert ready and "request_id" not in ready[0], ready
