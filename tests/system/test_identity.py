"""Node identities that cannot be taken over (issue 9, finding 2) and certificates that
say the node's role.

The coordinator keeps a registry of enrolled node ids: a join token cannot get a
certificate for an id that is already enrolled (alive or not), for the coordinator's
own id, or for the `coordinator` role. Only a replacement join token bound to the id
(`p2p token create --join --replace ID`) enrolls it again, and that revokes the old
certificate: the coordinator then refuses it in the TLS handshake and for renewal.

The impostor is played by this file (a hand-made key, CSR and challenge server, see
test_enroll.py), so the refusals can be checked without a second real process.
"""
import json
import ssl
import subprocess

import pytest

from conftest import Node, free_port, run_p2p, wait_until
from test_enroll import (ChallengeServer, cert_info, cert_request, export_identity, key_auth, make_challenge,
                         make_csr, mtls_request, request_body, served_cert)


@pytest.fixture
def chal():
    s = ChallengeServer()
    yield s
    s.close()


@pytest.fixture
def pair(node_factory):
    """A coordinator and a real enrolled worker-2."""
    c = node_factory.create("coord")
    w = node_factory.create("worker-2", coordinator=False, join=c)
    return c, w


def enroll_by_hand(coord, chal, tmp_path, node_id, token, role=None, tag=""):
    """One hand-made enrollment as `node_id`; returns the HTTP response."""
    csr, key = make_csr_as(tmp_path, node_id, tag or "first")
    ch = make_challenge()
    chal.answers[ch] = key_auth(ch, csr)
    body = request_body(node_id, csr, ch, chal.port, token)
    if role is not None:
        body["role"] = role
    r = cert_request(coord, body)
    r.key = key
    return r


def make_csr_as(tmp_path, node_id, tag):
    d = tmp_path / f"{node_id}-{tag}"
    d.mkdir(exist_ok=True)
    return make_csr(d, node_id)


def call_via(coord, target, method="system/get_system_info"):
    r = coord.request("POST", "/rpc", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "cluster/call",
                                                      "params": {"target": target, "method": method}}).encode(),
                      headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    return r.json()


def create_replacement(coord, node_id, uses=None):
    params = {"replace": node_id}
    if uses is not None:
        params["uses"] = uses
    return coord.rpc("auth/create_join_token", params)


def test_enrolling_a_live_workers_id_is_refused(pair, chal, tmp_path):
    c, w = pair
    r = enroll_by_hand(c, chal, tmp_path, "worker-2", c.create_join_token())
    assert r.status == 403, r
    msg = r.json()["error"]
    assert "node id 'worker-2' is already enrolled" in msg, msg
    assert "p2p token create --join --replace worker-2" in msg, msg
    assert chal.fetches == [], "the coordinator did work for a request it refuses"
    # the real worker-2 keeps working, and calls for worker-2 still reach it
    assert w.get("/health").status == 200
    wait_until(lambda: "result" in call_via(c, "worker-2"), 15, "a call to worker-2 through the coordinator")
    res = call_via(c, "worker-2")["result"]
    assert res["node_id"] == "worker-2", res
    cp = run_p2p("call", "--addr", c.addr, "--ca", str(c.ca), "--token", c.token, "--node", "worker-2",
                 "system/get_system_info", timeout=20)
    assert cp.returncode == 0 and "worker-2" in cp.stdout, cp


def test_a_real_node_with_a_taken_id_exits_with_the_remedy(pair):
    c, w = pair
    imp = Node(w.workdir.parent / "twin", name="worker-2", coordinator=False, join=c)
    imp.port = free_port()
    imp._spawn()
    try:
        assert imp.wait(timeout=20) == 2, imp.stderr()
        assert "already enrolled" in imp.stderr() and "--replace worker-2" in imp.stderr()
    finally:
        imp.teardown()
    assert c.wait_for_log("enrollment of 'worker-2'")
    assert w.get("/health").status == 200


def test_the_coordinators_id_is_refused(node, chal, tmp_path):
    r = enroll_by_hand(node, chal, tmp_path, node.name, node.create_join_token())
    assert r.status == 403, r
    assert "coordinator" in r.json()["error"], r
    assert chal.fetches == []
    # not even with a replacement token: the coordinator's identity is never issued
    resp = create_replacement(node, node.name)
    assert "error" in resp and "coordinator" in resp["error"]["message"], resp


def test_the_coordinator_role_is_refused(node, chal, tmp_path):
    r = enroll_by_hand(node, chal, tmp_path, "wannabe", node.create_join_token(), role="coordinator")
    assert r.status == 403, r
    assert "role 'coordinator'" in r.json()["error"], r
    assert chal.fetches == []
    # a malformed role is a bad request
    r = enroll_by_hand(node, chal, tmp_path, "oddrole", node.create_join_token(), role="no spaces")
    assert r.status == 400, r


def test_an_id_is_enrolled_once_even_when_its_node_is_gone(node, chal, tmp_path):
    token = node.create_join_token(uses=2)
    assert enroll_by_hand(node, chal, tmp_path, "one-shot", token).status == 200
    r = enroll_by_hand(node, chal, tmp_path, "one-shot", token, tag="again")
    assert r.status == 403 and "already enrolled" in r.json()["error"], r


def test_replacement_token_enrolls_a_new_worker_and_revokes_the_old_certificate(pair, chal, tmp_path):
    c, w = pair
    old_crt, old_key = export_identity(w, tmp_path)
    # the old certificate works before the replacement
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system/ping"}).encode()
    st, _ = mtls_request(c, "POST", "/rpc", old_crt, old_key, body=rpc)
    assert st == 200
    resp = create_replacement(c, "worker-2")
    assert "result" in resp, resp
    token = resp["result"]["token"]
    assert resp["result"]["replaces"] == "worker-2"
    # bound to worker-2: it cannot enroll anyone else (and is not used up by trying)
    r = enroll_by_hand(c, chal, tmp_path, "worker-3", token)
    assert r.status == 403 and "only 'worker-2'" in r.json()["error"], r
    r = enroll_by_hand(c, chal, tmp_path, "worker-2", token, tag="new")
    assert r.status == 200, r
    new_crt = tmp_path / "new-worker-2.crt"
    new_crt.write_text(r.json()["certificate"])
    assert c.wait_for_log("replaced node 'worker-2'")
    # the old certificate is refused by the coordinator: in the handshake ...
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        mtls_request(c, "POST", "/rpc", old_crt, old_key, body=rpc)
    # ... and the new one works
    st, body = mtls_request(c, "POST", "/rpc", new_crt, r.key, body=rpc)
    assert st == 200, body
    listed = c.result("auth/list_revoked_certificates")
    assert any(e["node_id"] == "worker-2" for e in listed), listed
    # the replacement token was for one enrollment
    r = enroll_by_hand(c, chal, tmp_path, "worker-2", token, tag="third")
    assert r.status == 403, r


def test_renewal_with_a_revoked_certificate_is_refused(pair, chal, tmp_path):
    c, w = pair
    old_crt, old_key = export_identity(w, tmp_path)
    token = create_replacement(c, "worker-2")["result"]["token"]
    assert enroll_by_hand(c, chal, tmp_path, "worker-2", token, tag="new").status == 200
    csr, _ = make_csr_as(tmp_path, "worker-2", "renew")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        mtls_request(c, "POST", "/internal/cert-renew", old_crt, old_key, body=json.dumps({"csr": csr}).encode())


def test_renewal_keeps_working_for_the_rightful_holder(pair, tmp_path):
    c, w = pair
    crt, key = export_identity(w, tmp_path)
    for i in range(2):
        csr, _ = make_csr_as(tmp_path, "worker-2", f"r{i}")
        st, body = mtls_request(c, "POST", "/internal/cert-renew", crt, key, body=json.dumps({"csr": csr}).encode())
        assert st == 200, body
    # the renewed certificate keeps the role
    new = tmp_path / "renewed.crt"
    new.write_text(json.loads(body)["certificate"])
    assert "OU = worker" in cert_info(new) or "OU=worker" in cert_info(new)


def test_certificates_carry_the_role(pair, tmp_path):
    c, w = pair
    crt, _ = export_identity(w, tmp_path)
    info = cert_info(crt)
    assert "OU = worker" in info or "OU=worker" in info, info
    coord_crt = tmp_path / "coord.crt"
    coord_crt.write_bytes(ssl.DER_cert_to_PEM_cert(served_cert(c)).encode())
    info = cert_info(coord_crt)
    assert "OU = coordinator" in info or "OU=coordinator" in info, info


def test_join_token_cli_replace(node_factory):
    c = node_factory.create("coord")
    w = node_factory.create("worker-9", coordinator=False, join=c)
    common = ["--addr", c.addr, "--ca", str(c.ca), "--api-key-file", str(c.admin_key_path)]
    cp = run_p2p("token", "create", "--join", "--replace", "worker-9", *common, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert "replaces worker-9" in cp.stderr, cp.stderr
    token = cp.stdout.strip()
    cp = run_p2p("token", "list", "--join", *common, timeout=20)
    assert cp.returncode == 0 and "worker-9" in cp.stdout, cp
    cp = run_p2p("token", "create", "--join", "--replace", "bad id", *common, timeout=20)
    assert cp.returncode == 2, cp
    cp = run_p2p("token", "create", "--replace", "worker-9", *common, timeout=20)
    assert cp.returncode == 2 and "--join" in cp.stderr, cp
    # a real node replaces worker-9: stop the old one, wipe its state, enroll again
    assert w.stop() == 0
    subprocess.run(["rm", "-rf", str(w.data_dir)], check=True)
    w.join_token = token
    w.start()
    assert c.wait_for_log("replaced node 'worker-9'")


def test_a_replaced_certificate_is_refused_by_every_node(node_factory, chal, tmp_path):
    """The replacement revokes the old certificate cluster-wide: the revocation list
    (tokens and certificates) reaches the other workers, whose handshakes then refuse
    the old identity too (not only the coordinator's)."""
    c = node_factory.create("coord")
    w2 = node_factory.create("worker-2", coordinator=False, join=c)
    w3 = node_factory.create("worker-3", coordinator=False, join=c)
    old_crt, old_key = export_identity(w2, tmp_path)
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system/ping"}).encode()
    st, _ = mtls_request(w3, "POST", "/rpc", old_crt, old_key, body=rpc)
    assert st == 200  # worker-3 takes worker-2's certificate before the replacement
    token = create_replacement(c, "worker-2")["result"]["token"]
    assert enroll_by_hand(c, chal, tmp_path, "worker-2", token, tag="new").status == 200

    def refused_by_w3():
        try:
            mtls_request(w3, "POST", "/rpc", old_crt, old_key, body=rpc)
            return False
        except (ssl.SSLError, ConnectionError, OSError):
            return True
    wait_until(refused_by_w3, 5, "worker-3 refuses the replaced certificate")
