"""Start-up, certificates, signals and graceful shutdown."""
import json
import signal
import socket
import ssl
import time

import pytest

import os

from conftest import T, close_with_reset, free_port, run_p2p


def read_response(sock, timeout=10):
    """Reads one HTTP/1.1 response (Content-Length framed) from a socket; returns
    (status, headers dict, body bytes). Bounded by `timeout`."""
    sock.settimeout(T(timeout))
    buf = b""
    deadline = time.monotonic() + T(timeout)
    while b"\r\n\r\n" not in buf:
        assert time.monotonic() < deadline, f"no response head within {T(timeout)}s: {buf!r}"
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {buf!r}"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        assert time.monotonic() < deadline, "response body incomplete"
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the response body"
        body += chunk
    return status, headers, body[:n]


# ---- start-up ----------------------------------------------------------------------------


def _served_cert(n):
    with socket.create_connection(("127.0.0.1", n.port), timeout=T(5)) as raw:
        with n.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.getpeercert(binary_form=True)


def test_first_start_creates_vault_and_ca_but_no_key_files(node_factory):
    n = node_factory.create("certs")
    vault = n.data_dir / "vault.p2p"
    assert vault.is_file() and vault.stat().st_size > 0
    assert vault.stat().st_mode & 0o077 == 0, "the vault is readable by group/others"
    assert (n.data_dir / "certs" / "ca.crt").is_file()
    # private keys live only in the vault: no file under the data dir holds one in clear
    for f in n.data_dir.rglob("*"):
        if f.is_file():
            assert b"PRIVATE KEY" not in f.read_bytes(), f"{f} holds a private key in clear text"
    assert b"PRIVATE KEY" not in vault.read_bytes()
    assert n.wait_for_log("[agent]")


def test_restart_reuses_certificates(node_factory):
    n = node_factory.create("restart")
    ca1 = n.ca.read_bytes()
    cert1 = _served_cert(n)
    ctx_before = n.ssl_context()
    assert n.stop(signal.SIGTERM, timeout=10) == 0
    n.start()
    assert n.ca.read_bytes() == ca1
    assert _served_cert(n) == cert1, "the node made a new certificate on restart"
    # a client that trusted the CA before the restart still connects
    with socket.create_connection(("127.0.0.1", n.port), timeout=T(5)) as raw:
        with ctx_before.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert s.version()
    assert n.get("/health").status == 200


def test_key_files_of_older_versions_move_into_the_vault(node_factory):
    """Nodes that kept certs/*.key on disk keep their identity after an upgrade, and the
    key files are gone afterwards."""
    n = node_factory.create("legacy")
    cert1 = _served_cert(n)
    assert n.stop(signal.SIGTERM, timeout=10) == 0
    # make a legacy layout: a fresh CA + node key/cert as files, and no vault yet
    import subprocess as sp
    certs = n.data_dir / "certs"
    (n.data_dir / "vault.p2p").unlink()
    sp.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(certs / "node.key"), "-out", str(certs / "node.crt"), "-days", "30",
            "-subj", "/CN=legacy", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    (certs / "ca.crt").write_bytes((certs / "node.crt").read_bytes())
    legacy_der = sp.run(["openssl", "x509", "-in", str(certs / "node.crt"), "-outform", "DER"],
                        check=True, capture_output=True).stdout
    n.start()
    assert _served_cert(n) == legacy_der != cert1
    assert not (certs / "node.key").exists(), "the legacy key file was left on disk"
    assert n.get("/health").status == 200


def test_port_in_use_exits_1(node_factory):
    a = node_factory.create("first")
    b = node_factory.create("second", start=False, port=a.port)
    b.port = a.port   # set by start(), which would wait for health
    b._spawn()
    rc = b.wait(timeout=10)
    assert rc == 1, f"exit status {rc}; stderr:\n{b.stderr()}"
    err = b.stderr()
    assert str(a.port) in err and "in use" in err, err
    assert a.get("/health").status == 200


def test_bind_address_must_be_ip(tmp_path):
    cp = run_p2p("agent", "--coordinator", "--node-id", "x", "--port", "1", "--bind-address",
                 "not-an-ip", "--data-dir", tmp_path / "d", timeout=15)
    assert cp.returncode in (1, 2), cp
    assert "bind_address" in cp.stderr or "bind-address" in cp.stderr, cp.stderr


# ---- signals -----------------------------------------------------------------------------------


def test_sigterm_idle_exits_0(node_factory):
    n = node_factory.create("term")
    t0 = time.monotonic()
    rc = n.stop(signal.SIGTERM, timeout=5)
    assert rc == 0, f"exit status {rc}"
    assert time.monotonic() - t0 < T(2)


def test_sigint_exits_0(node_factory):
    n = node_factory.create("int")
    n.get("/health")
    t0 = time.monotonic()
    rc = n.stop(signal.SIGINT, timeout=5)
    assert rc == 0, f"exit status {rc}"
    assert time.monotonic() - t0 < T(2)


def test_sigterm_with_idle_keepalive_connection_exits_promptly(node_factory):
    n = node_factory.create("keepalive")
    conn = n.connection()
    try:
        conn.request("GET", "/health")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        assert not r.will_close  # the connection stays open, idle
        t0 = time.monotonic()
        rc = n.stop(signal.SIGTERM, timeout=5)
        elapsed = time.monotonic() - t0
        assert rc == 0, f"exit status {rc}"
        assert elapsed < T(2), f"took {elapsed:.1f}s to exit with an idle keep-alive connection"
    finally:
        conn.close()


def test_sigterm_with_idle_h2_connection_exits_promptly(node_factory):
    n = node_factory.create("h2idle")
    s = n.tls_socket(alpn=["h2"])
    try:
        assert s.selected_alpn_protocol() == "h2"
        # HTTP/2 connection preface and an empty SETTINGS frame, then stay idle
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        time.sleep(0.2)
        t0 = time.monotonic()
        rc = n.stop(signal.SIGTERM, timeout=5)
        elapsed = time.monotonic() - t0
        assert rc == 0, f"exit status {rc}"
        assert elapsed < T(2), f"took {elapsed:.1f}s to exit with an idle HTTP/2 connection"
    finally:
        s.close()


def test_sigterm_after_clients_connected_and_left_exits_promptly(node_factory):
    """Connections the clients have already closed must not hold up shutdown."""
    n = node_factory.create("left", extra_args=["--shutdown-grace-period", "10"])
    for i in range(4):
        s = n.tls_socket()
        if i % 2:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
        close_with_reset(s)   # as a client that crashes or exits with unread data does
    time.sleep(0.3)
    t0 = time.monotonic()
    rc = n.stop(signal.SIGTERM, timeout=15)
    elapsed = time.monotonic() - t0
    assert rc == 0, f"exit status {rc}"
    assert elapsed < T(2), f"took {elapsed:.1f}s to exit although no client was connected"


def test_sigterm_lets_in_flight_request_finish(node_factory):
    n = node_factory.create("inflight", extra_args=["--shutdown-grace-period", "5"])
    body = json.dumps({"jsonrpc": "2.0", "method": "system/ping",
                       "params": {"message": "finish me"}, "id": "in-flight"}).encode()
    head = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + n.auth_line() + b"Content-Length: %d\r\n\r\n" % len(body))
    s = n.tls_socket()
    try:
        s.sendall(head + body[:10])
        time.sleep(0.2)  # let the node read the head and start the request
        n.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert n.running(), f"node exited with a request in flight; stderr:\n{n.stderr()}"
        s.sendall(body[10:])
        status, headers, resp_body = read_response(s, timeout=5)
        assert status == 200, (status, resp_body)
        resp = json.loads(resp_body)
        assert resp["id"] == "in-flight"
        assert resp["result"]["pong"] is True
        assert resp["result"]["message"] == "finish me"
    finally:
        s.close()
    rc = n.wait(timeout=5)
    assert rc == 0, f"exit status {rc} (None = still running)"


def test_sigterm_stops_accepting(node_factory):
    n = node_factory.create("noaccept", extra_args=["--shutdown-grace-period", "5"])
    body = b'{"jsonrpc":"2.0","method":"system/ping","id":3}'
    s = n.tls_socket()
    try:
        # keep the node busy with a request whose body is not complete yet
        s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + n.auth_line()
                  + b"Content-Length: %d\r\n\r\n" % len(body) + body[:1])
        time.sleep(0.2)
        n.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert n.running()
        # new connections are refused while the in-flight request is pending
        with pytest.raises((OSError, ssl.SSLError)):
            t = n.tls_socket(timeout=2)
            try:
                t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if not t.recv(100):
                    raise ConnectionResetError("closed")
            finally:
                t.close()
        # the pending request still completes
        s.sendall(body[1:])
        status, _, resp_body = read_response(s, timeout=5)
        assert status == 200
        assert json.loads(resp_body)["id"] == 3
    finally:
        s.close()
    assert n.wait(timeout=5) == 0


def test_grace_period_bounds_shutdown(node_factory):
    """A client that never finishes its request cannot keep the node up past the grace period."""
    n = node_factory.create("grace", extra_args=["--shutdown-grace-period", "1",
                                                 "--http-request-timeout", "60"])
    s = n.tls_socket()
    try:
        s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        t0 = time.monotonic()
        rc = n.stop(signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - t0
        assert rc == 0, f"exit status {rc}"
        assert elapsed < T(1) + 2, f"took {elapsed:.1f}s with a 1 s grace period"
    finally:
        s.close()


def test_second_signal_skips_the_wait(node_factory):
    n = node_factory.create("twice", extra_args=["--shutdown-grace-period", "30",
                                                 "--http-request-timeout", "60"])
    s = n.tls_socket()
    try:
        s.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{")   # never finished
        time.sleep(0.2)
        n.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert n.running(), "exited while a request was in flight"
        t0 = time.monotonic()
        rc = n.stop(signal.SIGTERM, timeout=5)
        elapsed = time.monotonic() - t0
        # a forced stop is not a clean one: 0 or 1 are both fine, hanging is not
        assert rc in (0, 1), f"exit status {rc} (None = still running)"
        assert elapsed < T(1.5), f"took {elapsed:.1f}s after the second signal"
    finally:
        s.close()


# ---- the vault at start-up ---------------------------------------------------------------------


def _agent_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "P2P_VAULT_PASSWORD"}
    env.update(extra)
    return env


def _agent_args(n):
    return ["agent", "--coordinator", "--node-id", n.name, "--port", str(free_port()),
            "--bind-address", "127.0.0.1", "--data-dir", str(n.data_dir)]


def test_wrong_vault_password_exits_2_and_leaves_the_vault(node_factory):
    n = node_factory.create("wrongpw")
    assert n.stop(signal.SIGTERM, timeout=10) == 0
    vault = n.data_dir / "vault.p2p"
    before = vault.read_bytes()
    cp = run_p2p(*_agent_args(n), timeout=20, env=_agent_env(P2P_VAULT_PASSWORD="not-the-password"))
    assert cp.returncode == 2, cp.stderr
    assert "password" in cp.stderr and "vault" in cp.stderr, cp.stderr
    assert vault.read_bytes() == before, "a failed open changed the vault"


def test_no_vault_password_exits_2_with_the_ways_to_give_one(node_factory, tmp_path):
    n = node_factory.create("nopw", start=False)
    cp = run_p2p(*_agent_args(n), timeout=20, env=_agent_env())
    assert cp.returncode == 2, cp.stderr
    assert "P2P_VAULT_PASSWORD" in cp.stderr and "--password-file" in cp.stderr, cp.stderr
    assert not (n.data_dir / "vault.p2p").exists()


def test_password_file_readable_by_others_is_refused(node_factory, tmp_path):
    n = node_factory.create("pwfile", start=False)
    pw = tmp_path / "pw"
    pw.write_text("a-password\n")
    pw.chmod(0o644)
    cp = run_p2p(*_agent_args(n), "--password-file", pw, timeout=20, env=_agent_env())
    assert cp.returncode == 2, cp.stderr
    assert "chmod 600" in cp.stderr, cp.stderr
    assert not (n.data_dir / "vault.p2p").exists()
    # the same file with mode 0600 is taken (it wins over P2P_VAULT_PASSWORD)
    pw.chmod(0o600)
    ok = node_factory.create("pwfile-ok", extra_args=["--password-file", pw])
    assert ok.stop(signal.SIGTERM, timeout=10) == 0
    cp = run_p2p("vault", "list", "--data-dir", ok.data_dir, "--password-file", pw, timeout=20, env=_agent_env())
    assert cp.returncode == 0, cp.stderr
