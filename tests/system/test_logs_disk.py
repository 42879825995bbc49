"""get_logs beyond the in-memory window (issue 11): a coordinator that keeps only 50 lines per
node in memory, with 3000 known lines of one worker on disk in several segment files. Queries
that reach older lines (tail with offset, since/until, cursor paging from the start) read them
from the segments with the same filters and cursor semantics, and still do after a restart.

The batches are made by hand (the contract in docs/logs.md) and sent with the real certificate
of an enrolled worker, stopped after enrolment so only this file speaks for it.
"""
import time

import pytest

from conftest import T
from test_enroll import export_identity
from test_logs_collector import add, get_logs, rec, rpc_as

N = 3000
RING = 50
T0 = int(time.time()) - 3600  # whole seconds: the lines' times are exact in microseconds


def ts_of(seq):
    return T0 + seq * 0.01


def msg_of(seq):
    # every 100th line is a "mark"; padding makes the 3000 lines span several 64 KiB segments
    return (f"mark {seq}" if seq % 100 == 0 else f"line {seq}") + " " + "p" * 120


@pytest.fixture(scope="module")
def disk(module_node_factory, tmp_path_factory):
    c = module_node_factory.create("coord", extra_args=["--max-log-entries", str(RING),
                                                        "--log-segment-bytes", "65536"])
    w = module_node_factory.create("worker-1", coordinator=False, join=c,
                                   extra_args=["--log-ship-level", "critical"])
    ident = {"worker-1": export_identity(w, tmp_path_factory.mktemp("idents"))}
    w.stop()
    for first in range(1, N + 1, 500):
        batch = [rec(s, ts=ts_of(s), level="WARNING" if s % 10 == 0 else "INFO", message=msg_of(s))
                 for s in range(first, first + 500)]
        assert add(c, ident, "worker-1", batch)["result"] == {"acked": first + 499}
    return c, ident


def seqs(r):
    return [l["seq"] for l in r["logs"]]


def check_queries(c):
    st = c.result("log_collector/get_stats")["nodes"]["worker-1"]
    assert st["in_memory"] == RING and st["segments"] >= 5, st
    # tail, newest first pages: the newest 100 after skipping the 2000 newest are 901..1000
    r = get_logs(c, node_id="worker-1", limit=100, offset=2000)
    assert seqs(r) == list(range(901, 1001)), seqs(r)[:5]
    assert r["total"] >= 2100 and not r.get("partial"), {k: v for k, v in r.items() if k != "logs"}
    # every field of a line read back from disk
    line = r["logs"][0]
    assert line["message"] == msg_of(901) and line["level"] == "INFO" and line["node_id"] == "worker-1", line
    assert line["ts_us"] == round(ts_of(901) * 1e6), line
    # since/until far older than memory
    r = get_logs(c, node_id="worker-1", since=ts_of(101) - 0.001, until=ts_of(200) + 0.001, limit=1000)
    assert seqs(r) == list(range(101, 201)), seqs(r)[:5]
    # filters apply to lines from disk: level minimum, search, regex, logger
    r = get_logs(c, node_id="worker-1", level="WARNING", search="mark", limit=1000)
    assert seqs(r) == list(range(100, N + 1, 100)), seqs(r)
    r = get_logs(c, search="^mark 1[0-9]00 ", regex=True, limit=1000)
    assert seqs(r) == list(range(1000, 2000, 100)), seqs(r)
    assert get_logs(c, node_id="worker-1", logger_name="nobody", limit=100, offset=500)["logs"] == []
    # cursor paging from the very start: every line exactly once, in order, none skipped
    got, cur = [], ""
    for _ in range(20):
        r = get_logs(c, node_id="worker-1", cursor=cur, limit=700)
        assert r["skipped"] == 0, r["skipped"]
        got += seqs(r)
        cur = r["cursor"]
        if not r["logs"]:
            break
    assert got == list(range(1, N + 1)), (len(got), got[:3], got[-3:])
    # a cursor in the middle of the disk part resumes exactly after it, filtered too
    r = get_logs(c, node_id="worker-1", cursor="worker-1=1234", limit=5)
    assert seqs(r) == [1235, 1236, 1237, 1238, 1239], seqs(r)
    r = get_logs(c, node_id="worker-1", cursor=r["cursor"], search="mark", limit=3)
    assert seqs(r) == [1300, 1400, 1500], seqs(r)
    r = get_logs(c, node_id="worker-1", cursor=r["cursor"], limit=2)
    assert seqs(r) == [1501, 1502], seqs(r)


def test_old_lines_come_from_the_segment_files(disk):
    c, _ = disk
    check_queries(c)


def test_old_lines_after_a_restart(disk):
    c, _ = disk
    c.stop()
    c.start()
    check_queries(c)
    c.kill()
    c.start()
    check_queries(c)


def test_too_deep_offset_gets_a_clear_error(disk):
    c, _ = disk
    r = c.rpc("log_collector/get_logs", {"node_id": "worker-1", "offset": 200000, "limit": 10}, timeout=T(30))
    assert r["error"]["code"] == -32602 and "since/until" in r["error"]["message"], r


def test_queries_reading_files_do_not_stall_the_node(disk):
    """Several deep queries at once run on the thread pool: the node answers other calls meanwhile."""
    import threading
    c, _ = disk
    errors = []

    def deep():
        try:
            r = get_logs(c, node_id="worker-1", limit=10000, offset=0, since=T0)
            assert len(r["logs"]) == N, len(r["logs"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=deep) for _ in range(6)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    c.result("log_collector/get_stats")
    assert time.monotonic() - t0 < T(2)
    for t in threads:
        t.join(T(60))
    assert not errors, errors


def test_retention_deleted_lines_are_skipped_not_missing(disk):
    """Lines whose segments were deleted are reported as skipped to a cursor that points before them."""
    c, _ = disk
    segdir = c.data_dir / "logs" / "worker-1"
    oldest = sorted(segdir.glob("*.seg"))[0]
    c.stop()
    oldest.unlink()
    c.start()
    r = get_logs(c, node_id="worker-1", cursor="", limit=5)
    first = r["logs"][0]["seq"]
    assert first > 1 and r["skipped"] == first - 1, (first, r["skipped"])
    assert seqs(r) == list(range(first, first + 5))
