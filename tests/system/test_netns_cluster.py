"""The cluster across network namespaces (netns.py): a partition that heals, 10 %
packet loss on every node without a false death, and a multi-homed worker that moves
its advertised address to its other subnet when its first link goes down.

Needs root, `ip netns`, veth, bridge and nft (skipped with the reason otherwise). Each
test builds its own namespaces (the `topology` fixture tears them down, also on
failure); every wait is bounded.
"""
import re
import time

import pytest

from conftest import wait_until
from netns import available, node_in_namespace
from netns import topology  # noqa: F401  (the fixture)

_ok, _why = available()
pytestmark = [pytest.mark.skipif(not _ok, reason=_why or "network namespaces unavailable"), pytest.mark.timing]

DEAD_RE = re.compile(r"\[membership\] (\S+) dead \(incarnation")


def members(node, timeout=5):
    """node's view: {node_id: record}, or None when it does not answer in time."""
    try:
        r = node.get("/cluster/nodes", timeout=timeout)
    except OSError:
        return None
    if r.status != 200:
        return None
    return {n["node_id"]: n for n in r.json()["nodes"]}


def statuses(nodes):
    """{observer: {member: status}} for every node that answers."""
    out = {}
    for n in nodes:
        m = members(n)
        out[n.name] = {k: v["status"] for k, v in m.items()} if m is not None else None
    return out


def all_alive(nodes):
    names = {n.name for n in nodes}

    def check():
        view = statuses(nodes)
        ok = all(v is not None and all(v.get(x) == "alive" for x in names) for v in view.values())
        return ok or None
    return check


def deaths(nodes):
    """Every '<id> dead' line in the nodes' stderr, as (observer, id)."""
    return [(n.name, m.group(1)) for n in nodes for m in DEAD_RE.finditer(n.stderr())]


def four_nodes(topo, factory):
    """A coordinator in A and workers in B, C, D, all on one subnet; the workers listen on
    every address (0.0.0.0), so they advertise what address selection picks."""
    for ns in "ABCD":
        topo.add_namespace(ns)
    topo.add_subnet("lan")
    for ns in "ABCD":
        topo.connect(ns, "lan")
    coord = node_in_namespace(factory, topo, "A", "coord")
    ws = [node_in_namespace(factory, topo, ns, f"w{i}", coordinator=False, join=coord, bind_address="0.0.0.0")
          for i, ns in enumerate("BCD", 1)]
    nodes = [coord] + ws
    wait_until(all_alive(nodes), 30, "all 4 nodes alive everywhere")
    # each advertises its namespace address (the coordinator's subnet), not loopback
    view = members(coord)
    for n, ns in zip(nodes, "ABCD"):
        assert view[n.name]["addresses"] == [topo.addr(ns)], view[n.name]
    return nodes


# Both halves declare each other dead; the heal is made after gossip_to_dead_ms (30 s)
# so nothing queued crosses it any more: only the periodic push-pull with a random
# DEAD member (every 15 s) can bring the halves back together.
def test_partition_and_heal(topology, node_factory):
    topo = topology
    nodes = four_nodes(topo, node_factory)
    a, b, c, d = nodes
    topo.partition([["A", "B"], ["C", "D"]])
    side = {a.name: (c, d), b.name: (c, d), c.name: (a, b), d.name: (a, b)}

    def split():
        view = statuses(nodes)
        for obs, others in side.items():
            v = view[obs]
            if v is None or any(v.get(o.name) not in ("suspect", "dead") for o in others):
                return None
            if any(v.get(x.name) != "alive" for x in nodes if x not in side[obs] and x.name != obs):
                return None  # its own side must stay alive
        return view
    wait_until(split, 30, "each side seeing the other suspect or dead")
    # let the suspicions run out, so the heal has to bring dead members back
    wait_until(lambda: all(all(v.get(o.name) == "dead" for o in side[obs])
                           for obs, v in statuses(nodes).items() if v is not None) or None,
               40, "each side declaring the other dead")
    # past gossip_to_dead_ms (30 s) after the deaths: nothing is sent to dead members now
    time.sleep(31)
    before = members(a)
    topo.heal()
    t0 = time.monotonic()
    wait_until(all_alive(nodes), 30, "all 4 alive everywhere after the heal")
    healed = time.monotonic() - t0
    print(f"healed in {healed:.1f} s")
    # back by refutation: higher incarnations than the ones declared dead
    view = members(a)
    assert all(view[n.name]["incarnation"] > before[n.name]["incarnation"] for n in (c, d)), (before, view)


def test_ten_percent_loss_no_false_death(topology, node_factory):
    topo = topology
    nodes = four_nodes(topo, node_factory)
    for ns in "ABCD":
        topo.loss(ns, 10)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            found = deaths(nodes)
            assert not found, f"false deaths under 10% loss: {found}"
            time.sleep(1)
    finally:
        for ns in "ABCD":
            topo.clear_loss(ns)
    assert not deaths(nodes)
    wait_until(all_alive(nodes), 20, "all 4 alive everywhere after the loss")


def test_multihomed_worker_moves_its_address(topology, node_factory):
    """W is on net1 (with the coordinator) and net2. The coordinator C is on both too but
    listens on its net1 address only; W reaches C's net1 address through C's net2 address
    when its own net1 link is down (a route with a higher metric)."""
    topo = topology
    for ns in ("C", "W"):
        topo.add_namespace(ns)
    topo.add_subnet("net1")
    topo.add_subnet("net2")
    topo.connect("C", "net1")
    topo.connect("C", "net2")
    w1 = topo.connect("W", "net1")
    topo.connect("W", "net2")
    c2 = topo.addr("C", "net2")
    a1, a2 = topo.addr("W", "net1"), topo.addr("W", "net2")
    topo.run("W", ["ip", "route", "add", str(topo.subnet("net1")), "via", c2, "metric", "100"], check=True)

    coord = node_in_namespace(node_factory, topo, "C", "coord", bridge="net1")
    worker = node_in_namespace(node_factory, topo, "W", "mh", bridge="net1", coordinator=False, join=coord,
                               bind_address="0.0.0.0")

    def advertised(addr):
        def check():
            m = members(coord)
            rec = m.get("mh") if m else None
            return rec if rec and rec["addresses"] == [addr] and rec["status"] == "alive" else None
        return check
    wait_until(advertised(a1), 15, f"the coordinator seeing mh alive at its net1 address {a1}")
    assert worker.wait_for_log(f"advertising {a1}", timeout=1)

    topo.link_down("W", w1)
    worker.host = a2  # the test process reaches W on net2 now
    t0 = time.monotonic()
    rec = wait_until(advertised(a2), 20, f"the coordinator seeing mh alive at its net2 address {a2}")
    print(f"switched in {time.monotonic() - t0:.1f} s")
    assert rec["incarnation"] > 1
    assert worker.wait_for_log(f"advertising {a2}", timeout=1)
    # and the worker sees the coordinator alive
    wait_until(lambda: (members(worker) or {}).get("coord", {}).get("status") == "alive", 10,
               "mh seeing the coordinator alive")
