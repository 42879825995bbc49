"""The log shipper on every node (docs/logs.md, "On every node: the shipper"), in the
parts that need no collector: stderr as JSON lines, and a node whose coordinator is
unreachable keeping its spool within its caps, counting what it had to drop (in
/metrics) and not logging its own failures into itself.

The end-to-end half (lines reaching the coordinator's log_collector, acks, resend after a
restart) is tested with the collector."""
import json
import signal
import time

from conftest import T, wait_until

RECORD_KEYS = {"ts", "node_id", "level", "logger", "message"}


def test_log_format_json_writes_one_record_per_line(node_factory):
    n = node_factory.create("c1", extra_args=["--log-format", "json"])
    n.get("/health")
    wait_until(lambda: '"logger":"access"' in n.stderr(), 5, "an access line")
    lines = [l for l in n.stderr().splitlines() if l.strip()]
    assert len(lines) >= 5
    for line in lines:
        if "AddressSanitizer" in line or line.startswith("==") or "LeakSanitizer" in line:
            continue
        rec = json.loads(line)  # every line is one JSON object
        assert RECORD_KEYS <= rec.keys(), rec
        assert rec["node_id"] == "c1"
        assert rec["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert isinstance(rec["ts"], float) and abs(rec["ts"] - time.time()) < 3600
        assert "\n" not in rec["message"]
    start = [json.loads(l) for l in lines if '"starting p2p' in l][0]
    assert start["logger"] == "agent" and start["level"] == "INFO"
    assert start["file"] == "src/cli/agent.c" and start["func"] and start["line"] > 0
    # secrets shown once at bootstrap stay on this node's stderr (never shipped)
    assert any("admin API key" in l for l in lines)


def test_unreachable_coordinator_spool_stays_bounded_and_loss_is_counted(node_factory):
    mem_cap, file_cap = 65536, 131072
    c = node_factory.create("c1")
    w = node_factory.create("w1", coordinator=False, join=c,
                            extra_args=["--log-spool-memory-bytes", mem_cap,
                                        "--log-spool-file-bytes", file_cap])
    token = w.token  # from the coordinator, while it is up; the worker checks it alone
    acked_before = w.metrics().get("logs", {}).get("acked", 0)  # what reached the collector before the kill
    c.stop(signal.SIGKILL)
    spool = w.data_dir / "log-spool"
    # every request is an access-log line on the worker: ~1 MB of records, 5x the caps
    conn = w.connection()
    try:
        for i in range(3000):
            conn.request("GET", f"/health?line={i}&pad={'x' * 100}")
            conn.getresponse().read()
            if i % 500 == 0:
                assert not spool.exists() or spool.stat().st_size <= file_cap
    finally:
        conn.close()

    def logs_metrics():
        m = w.metrics().get("logs", {})
        return m if m.get("lost", 0) > 0 and m.get("spooled_records", 0) > 0 else None

    m = wait_until(logs_metrics, 20, "lost records counted in /metrics")
    assert spool.stat().st_size <= file_cap
    assert m["spool_file_bytes"] <= file_cap
    assert m["spool_memory_bytes"] <= mem_cap
    assert m["acked"] <= acked_before + 20 and m["send_failures"] >= 1  # a batch in flight at the kill at most
    # lines kept + lines dropped cover what was logged (access lines + the node's own)
    assert m["spooled_records"] + m["lost"] >= 3000
    assert m["last_seq"] >= m["spooled_records"]
    # its own failures: on stderr, rate-limited (once per outage, then once a minute)
    err = w.stderr()
    assert 1 <= err.count("cannot ship logs") <= 3, err[-3000:]
    # a clean stop keeps the spool (and the exact last seq) for the next start
    assert w.stop() == 0
    assert 64 < spool.stat().st_size <= file_cap
    _ = token


def _big_lines(w, tag, n, pad):
    conn = w.connection()
    try:
        for i in range(n):
            conn.request("GET", f"/health?{tag}={i}&pad={'x' * pad}")
            conn.getresponse().read()
    finally:
        conn.close()


def _count_at(c, node, tag):
    r = c.result("log_collector/get_logs", {"node_id": node, "search": f"?{tag}=", "limit": 10000})
    return sorted(int(l["message"].split(f"?{tag}=")[1].split("&")[0]) for l in r["logs"])


def test_batches_stay_within_the_collectors_body_limit(node_factory):
    """Batches never exceed http_max_body_size: with the same (small) limit on both nodes the
    shipper sizes its batches below it (no send ever fails); with a coordinator limit below the
    worker's, a backlog of ~1 MB (logged while the coordinator was down) goes out in batches the
    coordinator refuses at first, then split until they fit. Every line arrives once, none lost."""
    limit = 65536
    c = node_factory.create("c1", extra_args=["--http-max-body-size", limit])
    same = node_factory.create("w-same", coordinator=False, join=c, extra_args=["--http-max-body-size", limit])
    bigger = node_factory.create("w-big", coordinator=False, join=c)  # 1 MiB default
    n = 300
    # once it ships (a first attempt may fail while the worker does not know the coordinator yet)
    m0 = wait_until(lambda: (lambda m: m if m.get("acked", 0) > 0 and m["spooled_records"] == 0 else None)(
        same.metrics()["logs"]), 20, "w-same shipping")
    _big_lines(same, "same", n, 3000)  # ~900 KB of access lines, as fast as they come
    got = wait_until(lambda: (lambda s: s if len(s) >= n else None)(_count_at(c, "w-same", "same")), 30,
                     "w-same's lines at the collector")
    assert got == list(range(n)), len(got)
    m = same.metrics()["logs"]
    assert m["lost"] == 0 and m["send_failures"] == m0["send_failures"], (m0, m)
    # a backlog on the worker with the bigger limit: its first batches are ~1 MiB
    c.stop()
    _big_lines(bigger, "big", n, 3000)
    c.start()
    got = wait_until(lambda: (lambda s: s if len(s) >= n else None)(_count_at(c, "w-big", "big")), 60,
                     "w-big's backlog at the collector")
    assert got == list(range(n)), len(got)
    m = bigger.metrics()["logs"]
    assert m["lost"] == 0 and m["spooled_records"] == 0, m
