"""Enrollment, mutual TLS and renewal against real nodes on 127.0.0.1.

The worker side of the challenge protocol is also played by this file (an openssl
key + CSR and a Python HTTP server), so forged, replayed and expired challenges
can be sent on purpose.
"""
import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import P2P_BIN, T, VAULT_PASSWORD, free_port, run_p2p


# ---- helpers -------------------------------------------------------------------------------------

def vault_get(node, entry):
    env = dict(os.environ, P2P_VAULT_PASSWORD=VAULT_PASSWORD)
    cp = subprocess.run([P2P_BIN, "vault", "get", "--data-dir", str(node.data_dir), entry],
                        capture_output=True, env=env, timeout=T(30))
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def export_identity(node, tmp_path):
    """The node's certificate and key as files, for a Python TLS client."""
    crt, key = tmp_path / f"{node.name}.crt", tmp_path / f"{node.name}.key"
    crt.write_bytes(vault_get(node, "certificates/node.crt"))
    key.write_bytes(vault_get(node, "keys/node.key"))
    key.chmod(0o600)
    return crt, key


def cert_info(pem_path):
    out = subprocess.run(["openssl", "x509", "-in", str(pem_path), "-noout", "-subject", "-ext",
                          "subjectAltName", "-serial"], capture_output=True, text=True, check=True).stdout
    return out


def mtls_request(node, method, path, crt, key, body=None, token=None, ca=None):
    ctx = ssl.create_default_context(cafile=str(ca or node.ca))
    ctx.load_cert_chain(str(crt), str(key))
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", node.port, context=ctx, timeout=T(10))
    try:
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_challenge(age_s=0.0):
    ms = int((time.time() - age_s) * 1000)
    return b64url(struct.pack(">Q", ms) + os.urandom(24))


def key_auth(challenge, csr_pem):
    return b64url(hashlib.sha256(challenge.encode() + b"." + csr_pem.encode()).digest())


def make_csr(tmp_path, node_id, sans=("DNS:{id}", "IP:127.0.0.1")):
    key, csr = tmp_path / f"{node_id}.csr-key", tmp_path / f"{node_id}.csr"
    san = ",".join(s.format(id=node_id) for s in sans)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={node_id}",
                    "-addext", f"subjectAltName={san}"], check=True, capture_output=True)
    return csr.read_text(), key


class ChallengeServer:
    """A worker's challenge port played by the test: answers GET
    /internal/cert-challenge/<c> with whatever `answers[c]` says, and counts fetches."""

    def __init__(self):
        self.answers = {}
        self.fetches = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches.append(self.path)
                c = self.path.rsplit("/", 1)[-1]
                body = outer.answers.get(c)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chal():
    s = ChallengeServer()
    yield s
    s.close()


def cert_request(coord, body):
    return coord.request("POST", "/internal/cert-request", body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"}, auth=False)


def request_body(node_id, csr, challenge, port, token):
    return {"node_id": node_id, "csr": csr, "challenge": challenge, "challenge_port": port,
            "join_token": token.split(".")[0]}


# ---- a real worker enrolls ---------------------------------------------------------------------

def test_worker_enrolls_and_serves_mutual_tls(node_factory, tmp_path):
    c = node_factory.create("coord")
    w = node_factory.create("worker-a", coordinator=False, join=c)
    assert w.get("/health").json()["role"] == "worker"
    # the worker trusts the cluster CA, and its certificate comes from it
    assert w.ca.read_bytes() == c.ca.read_bytes()
    crt, key = export_identity(w, tmp_path)
    info = cert_info(crt)
    assert "CN = worker-a" in info or "CN=worker-a" in info, info
    assert "DNS:worker-a" in info and "IP Address:127.0.0.1" in info, info
    subprocess.run(["openssl", "verify", "-CAfile", str(c.ca), str(crt)], check=True, capture_output=True)
    # the private key never left the worker: the coordinator's vault has no copy
    entries = subprocess.run([P2P_BIN, "vault", "list", "--data-dir", str(c.data_dir)], capture_output=True,
                             text=True, env=dict(os.environ, P2P_VAULT_PASSWORD=VAULT_PASSWORD)).stdout
    assert "worker-a" not in entries
    # mutual TLS: the worker's certificate alone is a credential on the coordinator ...
    rpc = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system/ping"}).encode()
    st, body = mtls_request(c, "POST", "/rpc", crt, key, body=rpc)
    assert st == 200 and json.loads(body)["result"]["pong"] is True, body
    # ... but a node identity never turns into an operator token
    st, body = mtls_request(c, "POST", "/auth/token", crt, key, body=b"{}")
    assert st == 401, body
    assert "node certificate does not get a token" in json.loads(body)["error"], body
    # a token from the coordinator works on the worker (it holds the coordinator's public key)
    assert w.get("/services").status == 200
    # enrollment is logged on both sides
    assert c.wait_for_log("enrolled node 'worker-a'")
    assert "enrolled with the coordinator" in w.stderr()


def test_restart_keeps_the_certificate(node_factory):
    c = node_factory.create("coord")
    w = node_factory.create("worker-r", coordinator=False, join=c)
    first = vault_get(w, "certificates/node.crt")
    assert w.stop() == 0
    w.join_token = "p2pj_" + "0" * 43  # would be refused: it must not be needed
    w.start()
    assert vault_get(w, "certificates/node.crt") == first
    assert w.stderr().count("enrolling with") == 1


def test_worker_without_join_token_exits_2(node_factory):
    c = node_factory.create("coord")
    w = node_factory.create("worker-n", coordinator=False, start=False)
    w.extra_args += ["--coordinator-addresses", c.addr]
    w.port = free_port()
    w._spawn()
    assert w.wait(timeout=20) == 2, w.stderr()
    assert "no join token" in w.stderr() and "p2p token create --join" in w.stderr()


def test_unknown_join_token_is_refused(node_factory):
    c = node_factory.create("coord")
    w = node_factory.create("worker-u", coordinator=False, join=c, join_token="p2pj_" + "A" * 43,
                            start=False)
    w.port = free_port()
    w._spawn()
    assert w.wait(timeout=20) == 2, w.stderr()
    assert "join token refused" in w.stderr()
    assert c.wait_for_log("refused: join token refused")


def test_join_token_is_used_up(node_factory):
    c = node_factory.create("coord")
    token = c.create_join_token(uses=1)
    node_factory.create("worker-1", coordinator=False, join=c, join_token=token)
    w2 = node_factory.create("worker-2", coordinator=False, join=c, join_token=token, start=False)
    w2.port = free_port()
    w2._spawn()
    assert w2.wait(timeout=20) == 2, w2.stderr()
    assert "join token refused" in w2.stderr()


def test_ca_pin_mismatch_is_refused(node_factory):
    c = node_factory.create("coord")
    token = c.create_join_token().split(".")[0] + "." + b64url(hashlib.sha256(b"another CA").digest())
    w = node_factory.create("worker-p", coordinator=False, join=c, join_token=token, start=False)
    w.port = free_port()
    w._spawn()
    assert w.wait(timeout=20) == 2, w.stderr()
    assert "not the one pinned" in w.stderr()
    assert "POST /internal/cert-request" not in c.stderr(), "the join token was sent to an unpinned CA"


def test_workers_on_one_host_enroll_at_once(node_factory):
    """Several workers on one host enroll at the same moment. The configured challenge
    port is held by someone else (here: the test), so each takes a free port and names
    it in its request, instead of failing with "address already in use"."""
    c = node_factory.create("coord")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    try:
        token = c.create_join_token(uses=3)
        ws = [node_factory.create(f"worker-{i}", coordinator=False, join=c, join_token=token, start=False,
                                  extra_args=["--enroll-challenge-port", port]) for i in range(3)]
        for w in ws:
            w.port = free_port()
            w._spawn()
        for w in ws:
            w.wait_healthy(timeout=30)
    finally:
        squatter.close()
    assert c.stderr().count("enrolled node") == 3
    assert all("is in use" in w.stderr() for w in ws)


# ---- the challenge protocol, played by hand -------------------------------------------------------

def test_handmade_enrollment_succeeds(node, chal, tmp_path):
    token = node.create_join_token()
    csr, _ = make_csr(tmp_path, "py-worker")
    ch = make_challenge()
    chal.answers[ch] = key_auth(ch, csr)
    r = cert_request(node, request_body("py-worker", csr, ch, chal.port, token))
    assert r.status == 200, r
    doc = r.json()
    assert doc["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert doc["ca_certificate"] == node.ca.read_text()
    assert len(base64.urlsafe_b64decode(doc["gossip_key"] + "=")) == 32
    assert chal.fetches == [f"/internal/cert-challenge/{ch}"]


def test_forged_challenge_is_refused(node, chal, tmp_path):
    token = node.create_join_token()
    csr, _ = make_csr(tmp_path, "forger")
    ch = make_challenge()
    chal.answers[ch] = key_auth(make_challenge(), csr)  # not the answer to this challenge
    r = cert_request(node, request_body("forger", csr, ch, chal.port, token))
    assert r.status == 403, r
    assert "did not check out" in r.json()["error"]
    assert "certificate" not in r.json()
    # the refused attempt did not use the token up
    ch2 = make_challenge()
    chal.answers[ch2] = key_auth(ch2, csr)
    assert cert_request(node, request_body("forger", csr, ch2, chal.port, token)).status == 200


def test_challenge_for_another_csr_is_refused(node, chal, tmp_path):
    """The key authorization binds the challenge to the CSR: a captured answer is useless."""
    token = node.create_join_token()
    csr, _ = make_csr(tmp_path, "victim")
    other, _ = make_csr(tmp_path, "thief")
    ch = make_challenge()
    chal.answers[ch] = key_auth(ch, csr)
    r = cert_request(node, request_body("thief", other, ch, chal.port, token))
    assert r.status == 403, r


def test_replayed_challenge_is_refused(node, chal, tmp_path):
    token = node.create_join_token(uses=2)
    csr, _ = make_csr(tmp_path, "replayer")
    ch = make_challenge()
    chal.answers[ch] = key_auth(ch, csr)  # the test's server would answer again
    body = request_body("replayer", csr, ch, chal.port, token)
    assert cert_request(node, body).status == 200
    r = cert_request(node, body)
    assert r.status == 403, r
    assert "already used" in r.json()["error"]
    assert len(chal.fetches) == 1


def test_expired_challenge_is_refused(node, chal, tmp_path):
    token = node.create_join_token()
    csr, _ = make_csr(tmp_path, "late")
    ch = make_challenge(age_s=61)
    chal.answers[ch] = key_auth(ch, csr)
    r = cert_request(node, request_body("late", csr, ch, chal.port, token))
    assert r.status == 403, r
    assert "expired" in r.json()["error"]
    assert chal.fetches == []


def test_unreachable_challenge_is_refused(node, tmp_path):
    token = node.create_join_token()
    csr, _ = make_csr(tmp_path, "nobody")
    r = cert_request(node, request_body("nobody", csr, make_challenge(), free_port(), token))
    assert r.status == 403, r
    assert "cannot fetch the challenge" in r.json()["error"]


def test_csr_names_are_checked(node, chal, tmp_path):
    token = node.create_join_token()
    # a CSR for another node id than claimed, and one naming a host it may not
    csr, _ = make_csr(tmp_path, "claimed")
    ch = make_challenge()
    chal.answers[ch] = key_auth(ch, csr)
    r = cert_request(node, request_body("someone-else", csr, ch, chal.port, token))
    assert r.status == 403, r
    csr2, _ = make_csr(tmp_path, "greedy", sans=("DNS:{id}", "DNS:coordinator.example", "IP:127.0.0.1"))
    ch2 = make_challenge()
    chal.answers[ch2] = key_auth(ch2, csr2)
    r = cert_request(node, request_body("greedy", csr2, ch2, chal.port, token))
    assert r.status == 403, r
    assert "coordinator.example" in r.json()["error"]
    # a CSR that does not name the address the request came from
    csr3, _ = make_csr(tmp_path, "elsewhere", sans=("DNS:{id}", "IP:10.9.8.7"))
    ch3 = make_challenge()
    chal.answers[ch3] = key_auth(ch3, csr3)
    r = cert_request(node, request_body("elsewhere", csr3, ch3, chal.port, token))
    assert r.status == 403, r
    assert chal.fetches == []


# ---- mutual TLS --------------------------------------------------------------------------------

def test_client_certificate_from_a_foreign_ca_is_refused(node, tmp_path):
    key, crt = tmp_path / "f.key", tmp_path / "f.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=worker-1",
                    "-addext", "subjectAltName=DNS:worker-1,IP:127.0.0.1"], check=True, capture_output=True)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        mtls_request(node, "GET", "/health", crt, key)
    # without a certificate the same node answers
    assert node.get("/health").status == 200


def test_node_certificate_opens_internal_routes_only_with_a_node_identity(node_factory, tmp_path):
    c = node_factory.create("coord")
    w = node_factory.create("worker-m", coordinator=False, join=c)
    crt, key = export_identity(w, tmp_path)
    # a renewal request must be for the certificate's own node id
    csr, _ = make_csr(tmp_path, "not-worker-m")
    st, body = mtls_request(c, "POST", "/internal/cert-renew", crt, key, body=json.dumps({"csr": csr}).encode())
    assert st == 403, body
    csr, _ = make_csr(tmp_path, "worker-m")
    st, body = mtls_request(c, "POST", "/internal/cert-renew", crt, key, body=json.dumps({"csr": csr}).encode())
    assert st == 200, body
    assert "gossip_key" not in json.loads(body)


# ---- renewal -----------------------------------------------------------------------------------

def served_cert(node):
    ctx = ssl.create_default_context(cafile=str(node.ca))
    with socket.create_connection(("127.0.0.1", node.port), timeout=T(5)) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


def test_short_lived_certificates_are_renewed(node_factory):
    # certificates live 60 s and are renewed 55 s before they expire: within seconds
    short = ["--cert-lifetime", "60", "--cert-renew-before", "55"]
    c = node_factory.create("coord", extra_args=short)
    w = node_factory.create("worker-s", coordinator=False, join=c, extra_args=short)
    first = served_cert(w)
    keep = w.connection()
    keep.request("GET", "/services", headers={"Authorization": "Bearer " + w.token})
    r = keep.getresponse()
    r.read()
    assert r.status == 200
    assert w.wait_for_log("certificate renewed", timeout=20), w.stderr()
    assert c.wait_for_log("renewed the certificate of node 'worker-s'", timeout=5)
    deadline = time.monotonic() + T(10)
    while served_cert(w) == first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served_cert(w) != first, "new connections still get the old certificate"
    # the connection opened before the renewal still works
    keep.request("GET", "/services", headers={"Authorization": "Bearer " + w.token})
    r = keep.getresponse()
    r.read()
    assert r.status == 200
    keep.close()
    # and the renewed certificate is the one a restart serves
    renewed = vault_get(w, "certificates/node.crt")
    assert w.stop() == 0
    w.start()
    assert w.get("/health").status == 200
    assert b"BEGIN CERTIFICATE" in renewed


# ---- join tokens from the command line -----------------------------------------------------------

def test_join_token_cli(node_factory):
    c = node_factory.create("coord")
    common = ["--addr", c.addr, "--ca", str(c.ca), "--api-key-file", str(c.admin_key_path)]
    cp = run_p2p("token", "create", "--join", "--ttl", "600", "--uses", "2", *common, timeout=20)
    assert cp.returncode == 0, cp.stderr
    token = cp.stdout.strip()
    assert token.startswith("p2pj_") and "." in token, token
    assert "shown only once" in cp.stderr
    tid = cp.stderr.split("join token ")[1].split(",")[0]
    cp = run_p2p("token", "list", "--join", *common, timeout=20)
    assert cp.returncode == 0 and tid in cp.stdout, cp
    assert token.split(".")[0] not in cp.stdout  # only ids are listed
    cp = run_p2p("token", "revoke", "--join", tid, *common, timeout=20)
    assert cp.returncode == 0, cp.stderr
    cp = run_p2p("token", "list", "--join", *common, timeout=20)
    assert tid not in cp.stdout
    w = node_factory.create("worker-x", coordinator=False, join=c, join_token=token, start=False)
    w.port = free_port()
    w._spawn()
    assert w.wait(timeout=20) == 2, w.stderr()
    cp = run_p2p("token", "create", *common, timeout=20)
    assert cp.returncode == 2 and "--join" in cp.stderr


def test_bootstrap_join_token_is_printed_once(node_factory):
    c = node_factory.create("coord")
    lines = [l for l in c.stderr().splitlines() if "join token for workers" in l]
    assert len(lines) == 1, c.stderr()
    token = lines[0].rsplit(" ", 1)[-1]
    assert c.stop() == 0
    c.start()
    assert c.stderr().count("join token for workers") == 1
    w = node_factory.create("worker-b", coordinator=False, join=c, join_token=token)
    assert w.get("/health").status == 200
