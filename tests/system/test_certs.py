"""`p2p certs list|show|renew|export-ca` and the pki service behind it (issue 13):
every node's certificate from the coordinator's registry and from the node itself,
renewal on demand, the CA. Renewing is for an admin token only; viewers and other
nodes may read.
"""
import json
import os
import subprocess

import pytest

from conftest import run_p2p, wait_until
from test_cluster import all_alive
from test_enroll import export_identity, mtls_request
from test_tokens import rpc_with


def env_for(node, token=None):
    env = dict(os.environ)
    env.update(P2P_ADDR=node.addr, P2P_DATA_DIR=str(node.data_dir), P2P_TOKEN=token or node.token)
    env.pop("P2P_CA", None)
    return env


def openssl(pem, *args):
    return subprocess.run(["openssl", "x509", "-noout", *args], input=pem, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def cluster(node_factory):
    c = node_factory.create("coord")
    jt = c.create_join_token(uses=2)
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=jt)
    w2 = node_factory.create("w2", coordinator=False, join=c, join_token=jt)
    wait_until(all_alive([c, w1, w2], ["coord", "w1", "w2"]), 15, "3 nodes alive")
    return c, w1, w2


def rows(stdout):
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "ROLE", "SERIAL"], lines
    return {l.split()[0]: l.split() for l in lines[1:] if l.strip() and not l[0].isdigit()}


def test_list_shows_every_node_with_serial_fingerprint_expiry_and_addresses(cluster):
    c, w1, w2 = cluster
    cp = run_p2p("certs", "list", env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    r = rows(cp.stdout)
    assert set(r) == {"coord", "w1", "w2"}, cp.stdout
    assert r["coord"][1] == "coordinator" and r["w1"][1] == "worker"
    for name, node in (("coord", c), ("w1", w1), ("w2", w2)):
        live = node.result("pki/certificate")
        pem = live["certificate_pem"]
        # the serial and fingerprint are the certificate's own, as openssl reads them
        serial = openssl(pem, "-serial").strip().split("=")[1].lower().lstrip("0")
        assert live["serial"].lstrip("0") == serial, (live["serial"], serial)
        fp = openssl(pem, "-fingerprint", "-sha256").strip().split("=")[1].replace(":", "").lower()
        assert live["fingerprint_sha256"] == fp
        row = r[name]
        assert row[2] == live["serial"] and fp.startswith(row[6]), row
        assert "ok" in row and "127.0.0.1" in row[-1] and name in row[-1], row
        assert 360 <= int(row[5]) <= 365, row
    # --json gives registry and live views joined
    cp = run_p2p("certs", "list", "--json", "--node", "w1", env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    data = json.loads(cp.stdout)
    assert [d["id"] for d in data] == ["w1"]
    assert data[0]["fingerprint"] == data[0]["live"]["fingerprint_sha256"] and data[0]["role"] == "worker"
    assert "certificate_pem" not in data[0]["live"] and "127.0.0.1" in data[0]["live"]["ip_addresses"]
    assert data[0]["status"] == "ok"


def test_a_node_that_is_down_is_listed_unreachable(cluster):
    c, w1, w2 = cluster
    w2.stop()

    def w2_silent():
        res = c.result("cluster/call", {"target": "all", "method": "system/ping", "timeout_ms": 2000})
        return not any(x.get("node_id") == "w2" and "result" in x for x in res)
    wait_until(w2_silent, 20, "w2 not answering")
    cp = run_p2p("certs", "list", env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    r = rows(cp.stdout)
    assert "unreachable" in r["w2"] and "ok" in r["w1"], cp.stdout


def test_show_and_export_ca(cluster, tmp_path):
    c, w1, _ = cluster
    cp = run_p2p("certs", "show", "--node", "w1", env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    assert "node:          w1" in cp.stdout and "role (OU):     worker" in cp.stdout
    assert "-----BEGIN CERTIFICATE-----" in cp.stdout
    cp = run_p2p("certs", "export-ca", env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == (c.data_dir / "certs" / "ca.crt").read_text()
    out = tmp_path / "ca.pem"
    cp = run_p2p("certs", "export-ca", "--node", "w1", "-o", out, env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    assert out.read_text() == (c.data_dir / "certs" / "ca.crt").read_text()
    # the exported CA verifies the worker's certificate
    live = w1.result("pki/certificate")
    crt = tmp_path / "w1.crt"
    crt.write_text(live["certificate_pem"])
    v = subprocess.run(["openssl", "verify", "-CAfile", str(out), str(crt)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_renew_a_worker_now(cluster):
    c, w1, w2 = cluster
    before = w1.result("pki/certificate")
    cp = run_p2p("certs", "renew", "--node", "w1", env=env_for(c), timeout=30)
    assert cp.returncode == 0, cp.stderr
    after = w1.result("pki/certificate")
    assert after["serial"] != before["serial"] and after["fingerprint_sha256"] != before["fingerprint_sha256"]
    assert after["serial"] in cp.stdout and after["renewals"] == before["renewals"] + 1
    # the coordinator's registry follows
    reg = {n["id"]: n for n in c.result("pki/list_certificates")["nodes"]}
    assert reg["w1"]["fingerprint"] == after["fingerprint_sha256"]
    # the new certificate is what the node presents to new connections, and the cluster keeps working
    assert c.result("cluster/call", {"target": "w1", "method": "system/ping"})["result"]["pong"]
    cp = run_p2p("certs", "list", "--node", "w1", env=env_for(c))
    assert cp.returncode == 0 and "ok" in rows(cp.stdout)["w1"], cp.stdout
    # the coordinator renews its own (signs it itself)
    cb = c.result("pki/certificate")
    cp = run_p2p("certs", "renew", "--node", "coord", env=env_for(c), timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert c.result("pki/certificate")["serial"] != cb["serial"]
    wait_until(lambda: "renewed" in c.stderr(), 5, "renewal logged")


def test_renew_needs_an_admin_token_and_reads_do_not(cluster, tmp_path):
    c, w1, w2 = cluster
    before = w1.result("pki/certificate")["serial"]
    viewer = c.new_token(role="viewer")
    cp = run_p2p("certs", "renew", "--node", "w1", env=env_for(c, viewer))
    assert cp.returncode == 1 and "403" in cp.stderr and "admin" in cp.stderr, cp.stderr
    r = rpc_with(w1, viewer, "pki/renew", {})
    assert r.status == 403, r
    # a worker's own certificate cannot make another node (or itself) renew
    crt, key = export_identity(w2, tmp_path)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "pki/renew", "params": {}}).encode()
    st, out = mtls_request(w1, "POST", "/rpc", crt, key, body=body)
    assert st == 403, (st, out)
    assert w1.result("pki/certificate")["serial"] == before
    # viewers may read
    cp = run_p2p("certs", "list", env=env_for(c, viewer))
    assert cp.returncode == 0, cp.stderr
    cp = run_p2p("certs", "export-ca", env=env_for(c, viewer))
    assert cp.returncode == 0 and "BEGIN CERTIFICATE" in cp.stdout


def test_usage_errors(cluster):
    c, _, _ = cluster
    for args in (["certs"], ["certs", "frobnicate"], ["certs", "renew"], ["certs", "list", "--bogus"],
                 ["certs", "show", "-o", "x"]):
        cp = run_p2p(*args, env=env_for(c))
        assert cp.returncode == 2, (args, cp.stdout, cp.stderr)
    cp = run_p2p("certs", "--help")
    assert cp.returncode == 0 and "export-ca" in cp.stdout and "renew --node ID" in cp.stdout
    cp = run_p2p("certs", "list", "--node", "nosuch", env=env_for(c))
    assert cp.returncode == 1
    # list on a worker: only the coordinator keeps the registry
    _, w1, _ = cluster
    cp = run_p2p("certs", "list", env=env_for(w1, c.token))
    assert cp.returncode == 1 and "coordinator" in cp.stderr, cp.stderr
