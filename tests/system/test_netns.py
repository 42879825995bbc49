"""The network-namespace test infrastructure (netns.py) against real nodes: enrollment
across namespaces, partitions, packet loss, and a worker with two interfaces on two
subnets losing one link.

Needs root, `ip netns`, veth, bridge and nft (skipped with the reason otherwise). Every
namespace, veth, bridge and nft table is made by the test and removed by the fixtures'
finalizers; every wait is bounded.
"""

import pytest

from conftest import wait_until
from netns import HOST, Topology, available, node_in_namespace
from netns import topology  # noqa: F401  (the fixture)

_ok, _why = available()
pytestmark = pytest.mark.skipif(not _ok, reason=_why or "network namespaces unavailable")


def healthy(node, timeout=2):
    try:
        return node.get("/health", timeout=timeout).status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def lan():
    """Namespaces A and B on one subnet; torn down after the module (even on failure)."""
    topo = Topology()
    try:
        topo.add_namespace("A")
        topo.add_namespace("B")
        topo.add_subnet("lan")
        topo.connect("A", "lan")
        topo.connect("B", "lan")
        yield topo
    finally:
        topo.teardown()


@pytest.fixture(scope="module")
def cluster(lan, module_node_factory):
    """A coordinator in A and a worker in B that enrolled across the namespaces.
    module_node_factory is set up after `lan`, so its nodes stop before the namespaces go."""
    coord = node_in_namespace(module_node_factory, lan, "A", "coord")
    worker = node_in_namespace(module_node_factory, lan, "B", "worker", coordinator=False, join=coord,
                               bind_address="0.0.0.0")
    return lan, coord, worker


def test_enroll_across_namespaces(cluster):
    topo, coord, worker = cluster
    assert coord.host == topo.addr("A") and worker.host == topo.addr("B")
    assert coord.host != worker.host
    # both answer the test process at their namespace address, TLS name checked
    assert coord.get("/health").status == 200
    assert worker.get("/health").status == 200
    # the worker's certificate came from the coordinator's CA, for its namespace address
    assert worker.wait_for_log("enroll", timeout=1)
    tls = worker.tls_socket(ctx=coord.ssl_context())
    try:
        cert = tls.getpeercert()
    finally:
        tls.close()
    sans = [v for k, v in cert["subjectAltName"] if k == "IP Address"]
    assert topo.addr("B") in sans, sans
    assert topo.addr("A") not in sans
    # only its real addresses: bound to every address with the coordinator elsewhere, no
    # loopback name (issue 9, finding 11), and the certificate says its role
    dns = [v for k, v in cert["subjectAltName"] if k == "DNS"]
    assert not [a for a in sans if a.startswith("127.") or a == "::1"], sans
    assert dns == ["worker"], dns
    assert ("organizationalUnitName", "worker") in [x for rdn in cert["subject"] for x in rdn], cert["subject"]
    # the nodes are where they should be: reachable from each other's namespace, not on
    # the namespace's loopback of the other
    assert topo.tcp_connect("A", worker.host, worker.port)
    assert topo.tcp_connect("B", coord.host, coord.port)
    assert not topo.tcp_connect("A", "127.0.0.1", worker.port, timeout=0.5)


def test_partition_and_heal(cluster):
    topo, coord, worker = cluster
    assert topo.tcp_connect("A", worker.host, worker.port)
    topo.partition([["A"], ["B"]])
    try:
        assert not topo.tcp_connect("A", worker.host, worker.port, timeout=1.0), topo.ruleset("A")
        assert not topo.tcp_connect("B", coord.host, coord.port, timeout=1.0)
        # the test process is in no group: it still reaches both sides
        assert healthy(coord) and healthy(worker)
        # with the host in A's group, B is cut off from the test process too
        topo.partition([["A", HOST], ["B"]])
        assert healthy(coord)
        assert not healthy(worker, timeout=1)
        assert not topo.tcp_connect("A", worker.host, worker.port, timeout=0.5)
    finally:
        topo.heal()
    assert topo.tcp_connect("A", worker.host, worker.port)
    assert topo.tcp_connect("B", coord.host, coord.port)
    wait_until(lambda: healthy(worker), 5, "the worker's /health")


def test_packet_loss(cluster):
    topo, coord, worker = cluster
    assert topo.ping("A", worker.host, count=10, interval=0.05, wait=0.5) == 0.0
    topo.loss("B", 50)
    try:
        lost = topo.ping("A", worker.host, count=40, interval=0.05)
        assert 20.0 <= lost <= 80.0, (lost, topo.ruleset("B"))
    finally:
        topo.clear_loss("B")
    assert topo.ping("A", worker.host, count=20, interval=0.05, wait=0.5) == 0.0
    # loss on every packet in both directions, then none
    topo.loss("A", 100, direction="both")
    try:
        assert topo.ping("A", worker.host, count=5, interval=0.05, wait=0.5) == 100.0
    finally:
        topo.clear_loss("A")
    assert topo.ping("A", worker.host, count=5, interval=0.05, wait=0.5) == 0.0


def test_multihomed_worker_survives_link_down(topology, node_factory):
    topo = topology
    for ns in ("C", "W"):
        topo.add_namespace(ns)
    topo.add_subnet("net1")
    topo.add_subnet("net2")
    topo.connect("C", "net1")
    w1 = topo.connect("W", "net1")
    w2 = topo.connect("W", "net2")
    assert (w1, w2) == ("eth0", "eth1")
    assert topo.subnet("net1") != topo.subnet("net2")
    a1, a2 = topo.addr("W", "net1"), topo.addr("W", "net2")

    coord = node_in_namespace(node_factory, topo, "C", "coord")
    worker = node_in_namespace(node_factory, topo, "W", "mh", bridge="net1", coordinator=False, join=coord,
                               bind_address="0.0.0.0")
    # reachable on both subnets; its certificate names both addresses
    assert healthy(worker)
    worker.host = a2
    assert healthy(worker)

    # net2's link goes down: net1 still works (from the coordinator and the test process)
    topo.link_down("W", w2)
    worker.host = a1
    assert healthy(worker)
    assert topo.tcp_connect("C", a1, worker.port)
    worker.host = a2
    assert not healthy(worker, timeout=1)
    topo.link_up("W", w2)
    wait_until(lambda: healthy(worker), 10, "the worker's /health")

    # and the other way round: net1 down, net2 still reachable
    topo.link_down("W", w1)
    assert healthy(worker)
    assert not topo.tcp_connect("C", a1, worker.port, timeout=0.5)
    topo.link_up("W", w1)
    worker.host = a1
    wait_until(lambda: healthy(worker), 10, "the worker's /health")
    assert topo.tcp_connect("C", a1, worker.port)
