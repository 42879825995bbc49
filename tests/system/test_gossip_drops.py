"""Gossip drops are visible (issue 9, finding 9): datagrams that do not open are
counted by reason in /metrics (JSON and Prometheus) and told in a rate-limited
log line, so an operator sees a wrong key, garbage or replays instead of silence."""
import os
import re
import socket
import time

from conftest import wait_until
from test_metrics import parse_prometheus, value_of


def send_udp(node, payloads):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", node.port))
    finally:
        s.close()


def gossip_dropped(node):
    return node.metrics()["gossip"]["dropped"]


def test_drops_are_counted_by_reason_in_both_formats(node):
    before = gossip_dropped(node)
    assert set(before) == {"auth", "replay", "stale", "malformed", "oversize"}
    # shorter than the seal overhead, then an unknown version: malformed
    send_udp(node, [b"x" * 10] * 3 + [bytes([9, 0]) + os.urandom(100)] * 2)
    # the right version (2, src/membership/seal.h) with a key id nobody holds: auth
    # (a node of another cluster, or a stale key after a rotation)
    send_udp(node, [bytes([2, 0]) + os.urandom(4) + os.urandom(120)] * 4)
    wait_until(lambda: gossip_dropped(node)["malformed"] >= before["malformed"] + 5
               and gossip_dropped(node)["auth"] >= before["auth"] + 4, 5, "drops counted")
    after = gossip_dropped(node)
    assert after["malformed"] - before["malformed"] == 5
    assert after["auth"] - before["auth"] == 4
    assert after["replay"] == before["replay"]
    samples, types = parse_prometheus(node.get("/metrics?format=prometheus").text)
    assert types["p2p_gossip_dropped_total"] == "counter"
    assert value_of(samples, "p2p_gossip_dropped_total", reason="auth") == after["auth"]
    assert value_of(samples, "p2p_gossip_dropped_total", reason="malformed") == after["malformed"]
    assert value_of(samples, "p2p_gossip_received_total") >= 0
    # the node is unharmed: it still answers
    assert node.result("system/ping")


def test_a_flood_of_garbage_costs_the_log_one_line_per_interval(node):
    pattern = (r"dropped (\d+) gossip datagram\(s\) in the last \d+ s, the last from "
               r"127\.0\.0\.1:\d+ \((\w+)\); totals: auth (\d+)")
    lines = lambda: re.findall(pattern, node.stderr())
    first = len(lines())
    for _ in range(20):
        send_udp(node, [b"\x02\x00" + os.urandom(98)] * 100)
        time.sleep(0.05)
    # the drops are summed up within the 10 s interval (plus the 1 s housekeeping tick)
    wait_until(lambda: sum(int(n) for n, _, _ in lines()[first:]) >= 1900, 15, "the flood is logged")
    new = lines()[first:]
    # 2,000 datagrams in about a second: one or two lines, never one per datagram
    assert 1 <= len(new) <= 2, new
    assert new[-1][1] == "auth"
    assert int(new[-1][2]) >= 1900
