"""Records owned by their node (issue 9, finding 4): a node's addresses, role, services and
metadata are accepted only when signed by that node's own certificate key, whoever relays them;
others may only suspect it or declare it dead; `left` only from the node itself; replay windows
are per certificate, so another identity's sequence numbers cannot get a node's datagrams dropped."""
import json
import time

import pytest

from conftest import T, wait_until
from test_cluster import all_alive, log_has, members
from test_enroll import export_identity, mtls_request


@pytest.fixture
def trio(node_factory, tmp_path):
    c = node_factory.create("coord")
    token = c.create_join_token(uses=2)
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=token)
    w2 = node_factory.create("w2", coordinator=False, join=c, join_token=token)
    nodes = [c, w1, w2]
    wait_until(all_alive(nodes, ["coord", "w1", "w2"]), 15, "all 3 alive")
    return nodes


def view_of(nodes, who):
    out = {}
    for n in nodes:
        r = members(n)[who]
        out[n.name] = (r["status"], r["incarnation"], r["addresses"], r["port"], r["role"])
    return out


def test_a_node_cannot_rewrite_another_nodes_record_over_pushpull(trio, tmp_path):
    c, w1, w2 = trio
    crt, key = export_identity(w2, tmp_path)   # the compromised worker's own identity
    before = view_of(trio, "w1")
    rec = members(c)["w1"]

    def push(body):
        st, out = mtls_request(c, "POST", "/internal/gossip/exchange", crt, key, body=json.dumps(body).encode())
        return st, out

    left = {"id": "w1", "incarnation": 1000, "port": rec["port"], "addrs": ["127.0.0.1"], "role": "worker",
            "meta": "", "state": "left"}
    moved = dict(left, incarnation=1001, state="alive", addrs=["127.0.0.66"], role="coordinator")
    push({"version": 2, "from": "w2", "nodes": [left]})
    push({"version": 2, "from": "w2", "nodes": [moved]})
    # claiming to be somebody else on the push-pull route is refused outright
    st, out = push({"version": 2, "from": "w1", "nodes": []})
    assert st == 400 and b"identity" in out, (st, out)
    time.sleep(T(2))
    for n in trio:
        assert not log_has(n, "w1", "left"), n.name
    assert view_of(trio, "w1") == before
    # the exchange still works for honest records (the cluster stays whole)
    wait_until(all_alive(trio, ["coord", "w1", "w2"]), 5, "all alive")
