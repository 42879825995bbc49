"""Records owned by their node (issue 9, finding 4): a node's addresses, role, services and
metadata are accepted only when signed by that node's own certificate key, whoever relays them;
others may only suspect it or declare it dead; `left` only from the node itself; replay windows
are per certificate, so another identity's sequence numbers cannot get a node's datagrams dropped."""
import datetime
import ipaddress
import json
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import gossipwire as gw
from conftest import T, run_p2p, wait_until
from test_auth import vault_get
from test_cluster import all_alive, log_has, members
from test_enroll import export_identity, mtls_request
from test_metrics import parse_prometheus, value_of
from test_tokens import _vault_env


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
    after = view_of(trio, "w1")
    # status, addresses, port and role unchanged everywhere; the incarnation only what w1
    # itself may have raised (a refutation on a loaded machine), never the forged 1000+
    assert {k: (v[0],) + v[2:] for k, v in after.items()} == {k: (v[0],) + v[2:] for k, v in before.items()}
    assert all(v[1] < 1000 for v in after.values()), after
    # the exchange still works for honest records (the cluster stays whole)
    wait_until(all_alive(trio, ["coord", "w1", "w2"]), 5, "all alive")


# ---- forged datagrams over real UDP, from a holder of the gossip key ---------------------
# The forger holds what every member holds (the cluster gossip key) and, where said, a
# compromised worker's (w2's) certificate and key. Datagrams are built by gossipwire.py.


class Forger:
    """Seals datagrams as the node `as_id` (its sender id in the seal's inner header)."""

    def __init__(self, trio, as_id="intruder"):
        c, w1, w2 = trio
        self.nodes = trio
        self.key = vault_get(c, "keys/gossip_key")
        assert len(self.key) == 32, len(self.key)
        self.sender = gw.sender_id(as_id)
        self.epoch = int(time.time() * 1000)
        self.seq = 0
        self.w1_cert = gw.cert_der(vault_get(w1, "certificates/node.crt"))
        self.w2_cert = gw.cert_der(vault_get(w2, "certificates/node.crt"))
        self.w2_key = serialization.load_pem_private_key(vault_get(w2, "keys/node.key"), None)

    def datagram(self, *frames, cert=b"\0" * 8):
        self.seq += 1
        return gw.seal(self.key, gw.packet(*frames), self.sender, self.epoch, self.seq, cert)

    def send_all(self, *frames, to=None):
        for n in to or self.nodes:
            gw.send(n.port, [self.datagram(*frames)])


def gossip(node):
    return node.metrics()["gossip"]


def rogue_cert(cn, ou, key):
    """A certificate that says the right names but does not chain to the cluster CA."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)])
    now = datetime.datetime.utcnow()
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.DER)


def deltas(before, node, key):
    now = gossip(node)
    if isinstance(before[node.name][key], dict):
        return {k: v - before[node.name][key][k] for k, v in now[key].items()}
    return now[key] - before[node.name][key]


def test_forged_alive_for_another_node_is_refused_everywhere_and_counted(trio):
    c, w1, w2 = trio
    f = Forger(trio)
    before_view = {who: view_of(trio, who) for who in ("w1", "w2")}
    before = {n.name: gossip(n) for n in trio}
    assert set(before["coord"]["records_refused"]) == {"unsigned", "signature", "id", "role", "no_certificate"}
    assert before["coord"]["certs_cached"] >= 3      # every node's certificate, checked against the CA
    rec, rec2 = members(c)["w1"], members(c)["w2"]
    inc, port = rec["incarnation"] + 100, rec["port"]
    w1_id, w2_id = gw.cert_id(f.w1_cert), gw.cert_id(f.w2_cert)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    moved = dict(id="w1", port=port, addrs=["127.0.0.66"], role="worker")
    # unsigned, naming w1's real certificate
    f.send_all(gw.alive(incarnation=inc, cert=w1_id, **moved))
    # signed with a key that is not w1's (the signature does not verify)
    f.send_all(gw.alive(incarnation=inc + 1, cert=w1_id, key=rogue_key, **moved))
    # signed by the compromised worker w2 with its own certificate: CN w2 is not w1
    f.send_all(gw.alive(incarnation=inc + 2, cert=w2_id, key=f.w2_key, **moved))
    # w2 re-roling itself: its certificate's OU says worker
    f.send_all(gw.alive("w2", rec2["incarnation"] + 100, rec2["port"], ["127.0.0.1"], "coordinator", w2_id,
                        key=f.w2_key))
    # a certificate for w1 from another CA, sent along: refused; the record it vouched
    # for is held until it expires (5 s) on the nodes that could ask for a certificate
    der = rogue_cert("w1", "worker", rogue_key)
    f.send_all(gw.alive(incarnation=inc + 3, cert=gw.cert_id(der), key=rogue_key, **moved), gw.cert_frame(der))
    others = (c, w2)   # a forgery about w1 sent to w1 is refused at once, never held

    def counted():
        return all(deltas(before, n, "records_refused") == {"unsigned": 1, "signature": 1, "id": 1, "role": 1,
                                                             "no_certificate": 1} for n in trio)
    wait_until(counted, T(10), "every forgery refused and counted on every node")
    for n in others:
        assert deltas(before, n, "certs_refused") == 1, n.name
        assert deltas(before, n, "records_held") == 1, n.name
        assert gossip(n)["records_pending"] == 0, n.name
    assert deltas(before, w1, "certs_refused") == 0
    for n in trio:
        assert deltas(before, n, "received") >= 5, n.name   # the forgeries opened: the seal was right
        # (records_verified may grow: the nodes' own legitimate updates go on meanwhile)
    # nothing moved: w1 keeps its address, port, role and incarnation on every node
    time.sleep(T(1))
    for who in ("w1", "w2"):   # the incarnation only as the node itself may raise it, never to the forged one
        now_view = view_of(trio, who)
        assert {k: (v[0],) + v[2:] for k, v in now_view.items()} == \
            {k: (v[0],) + v[2:] for k, v in before_view[who].items()}
        assert all(v[1] < inc + 3 for v in now_view.values()), now_view
    for n in trio:
        assert not log_has(n, "w1", "suspect") and not log_has(n, "w2", "suspect"), n.name
    # the same counters in the Prometheus format, and the refusal log line
    samples, types = parse_prometheus(c.get("/metrics?format=prometheus").text)
    assert types["p2p_gossip_records_refused_total"] == "counter"
    now = gossip(c)
    for reason, v in now["records_refused"].items():
        assert value_of(samples, "p2p_gossip_records_refused_total", reason=reason) == v
    assert value_of(samples, "p2p_gossip_certs_cached") == now["certs_cached"]
    assert types["p2p_gossip_records_pending"] == "gauge"
    wait_until(lambda: "refused" in c.stderr() and "wrong role 1" in c.stderr(), T(12), "refusals logged")


def test_unsigned_or_foreign_leave_of_another_node_is_ignored(trio):
    c, w1, w2 = trio
    f = Forger(trio)
    before = {n.name: gossip(n) for n in trio}
    inc = members(c)["w1"]["incarnation"] + 50
    f.send_all(gw.leave("w1", inc), to=(c, w2))                               # unsigned
    f.send_all(gw.leave("w1", inc, gw.cert_id(f.w2_cert), f.w2_key), to=(c, w2))  # signed by w2
    wait_until(lambda: all(deltas(before, n, "records_refused")["unsigned"] == 1 and
                           deltas(before, n, "records_refused")["id"] == 1 for n in (c, w2)),
               T(10), "both leaves refused and counted")
    time.sleep(T(2))
    for n in trio:
        assert not log_has(n, "w1", "left"), n.name
        assert members(n)["w1"]["status"] == "alive", n.name


def test_datagrams_under_other_certificate_ids_do_not_block_the_real_node(trio):
    """A key holder sealing as w1 with certificates ids of its own, far-ahead epochs and
    sequence numbers: the real w1's windows are its own, so its datagrams keep opening
    and it never goes suspect (before per-certificate windows it flapped)."""
    c, w1, w2 = trio
    f = Forger(trio, as_id="w1")
    before = {n.name: gossip(n) for n in trio}
    far = int(time.time() * 1000) + 10 ** 9
    sent = 0
    for rnd in range(3):
        for i in range(4):
            cert = os.urandom(8)
            for seq in (2 ** 40, 2 ** 62 + i, 2 ** 63 + 7):
                dg = gw.seal(f.key, gw.packet(gw.nack(seq % 2 ** 32)), f.sender, far + rnd, seq, cert)
                gw.send(c.port, [dg])
                gw.send(w2.port, [dg])
                sent += 1
        time.sleep(T(1.5))
    for n in (c, w2):
        # the forged datagrams opened (the seal is right) and each certificate got a window
        assert deltas(before, n, "received") >= sent, n.name
        assert deltas(before, n, "senders") >= 4, n.name
        # w1's own datagrams were not taken for replays
        assert deltas(before, n, "dropped")["replay"] <= 2, (n.name, gossip(n)["dropped"])
    time.sleep(T(2))
    for n in trio:
        assert not log_has(n, "w1", "suspect"), n.name
        assert members(n)["w1"]["status"] == "alive", n.name


# ---- certificates without a role (issued before roles went into certificates) ------------


def legacy_cert(node, ca_node, tmp_path):
    """node's certificate as enrollment made it before roles: CN and SANs, no OU, same key,
    signed by the cluster CA (read from the coordinator's vault)."""
    ca = x509.load_pem_x509_certificate(vault_get(ca_node, "certificates/ca.crt"))
    ca_key = serialization.load_pem_private_key(vault_get(ca_node, "keys/ca.key"), None)
    key = serialization.load_pem_private_key(vault_get(node, "keys/node.key"), None)
    now = datetime.datetime.utcnow()
    c = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node.name)]))
         .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
         .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                               x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(node.name), x509.DNSName("localhost"),
                                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                        critical=False)
         .sign(ca_key, hashes.SHA256()))
    f = tmp_path / f"{node.name}-legacy.crt"
    f.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return f


def cert_ou(node):
    c = x509.load_pem_x509_certificate(vault_get(node, "certificates/node.crt"))
    return [a.value for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]


def test_certificates_without_role_are_renewed_at_start_and_the_cluster_reforms(node_factory, tmp_path):
    """A cluster upgraded in place: the coordinator's and a worker's certificates have no
    OU. Gossip would take them for workers only (the coordinator would not be accepted),
    so each node renews such a certificate at start; the cluster reforms with its roles."""
    c = node_factory.create("coord")
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=c.create_join_token())
    wait_until(all_alive([c, w1], ["coord", "w1"]), 15, "both alive")
    files = {n.name: legacy_cert(n, c, tmp_path) for n in (c, w1)}
    for n in (w1, c):
        assert n.stop(timeout=15) == 0
    for n in (c, w1):
        run_p2p("vault", "put", "certificates/node.crt", "--from-file", str(files[n.name]),
                "--data-dir", str(n.data_dir), env=_vault_env())
        assert cert_ou(n) == []
    offsets = {n.name: len(n.stderr_path.read_bytes()) for n in (c, w1)}
    for n in (c, w1):   # the worker renews through the coordinator: one after the other
        n.start()
        wait_until(lambda: "carries no role" in n.stderr_path.read_bytes()[offsets[n.name]:].decode(), T(15),
                   f"{n.name} renews its certificate without OU")
        wait_until(lambda: cert_ou(n) == [("coordinator" if n is c else "worker")], T(15), f"{n.name} has its OU")
    wait_until(all_alive([c, w1], ["coord", "w1"]), T(20), "both alive again")
    assert members(w1)["coord"]["role"] == "coordinator"
    assert members(c)["w1"]["role"] == "worker"
