"""Tokens that only the coordinator can sign, node identities that stay node identities,
and revocation that reaches every node (issue 9, findings 1 and 3).

  - the coordinator signs ES256 tokens; a worker's vault holds only the public key(s), so
    a worker cannot issue tokens (its /auth/token names the coordinator instead);
  - a node certificate never turns into a token, and may not run admin-only methods;
  - an operator's call forwarded by a node carries the operator's token: the target
    authorizes the operator;
  - a token revoked on any node is refused on every node within 2 s, after restarts, and
    on a node that was down while it was revoked once it rejoins; `p2p token revoke`
    reports how many nodes have it;
  - a coordinator with a vault from before ES256 makes a signing key on start: HS256 tokens
    of the old secret are refused.
"""
import json
import re
import secrets
import time

import pytest

from conftest import run_p2p, wait_until
from test_auth import (HS256, SigningKey, b64u, claims, clean_env, es256, jwt_secret, sign, vault_get,
                       vault_password)
from test_enroll import export_identity, mtls_request
from test_cluster import all_alive

from cryptography.hazmat.primitives.asymmetric import ec


def rpc_with(node, token, method="system/ping", params=None, headers=None):
    body = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    h = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    h.update(headers or {})
    return node.request("POST", "/rpc", body=json.dumps(body).encode(), headers=h, auth=False)


def accepted(node, token):
    return rpc_with(node, token).status == 200


def why_refused(r):
    return r.headers.get("WWW-Authenticate", "")


def revoke(node, token, admin):
    r = node.request("POST", "/auth/revoke", body=json.dumps({"token": token}).encode(),
                     headers={"Content-Type": "application/json", "Authorization": "Bearer " + admin},
                     auth=False, timeout=15)
    assert r.status == 200, r
    return r.json()


@pytest.fixture
def trio(node_factory):
    c = node_factory.create("coord")
    jt = c.create_join_token(uses=2)
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=jt)
    w2 = node_factory.create("w2", coordinator=False, join=c, join_token=jt)
    nodes = [c, w1, w2]
    wait_until(all_alive(nodes, [n.name for n in nodes]), 15, "3 nodes alive everywhere")
    return c, w1, w2


# ---- finding 3: only the coordinator signs ------------------------------------------------------


def test_worker_holds_no_signing_key_and_cannot_issue(trio, tmp_path):
    c, w1, _ = trio
    assert jwt_secret(c).startswith(b"-----BEGIN PRIVATE KEY-----")
    # the worker's vault: public keys only, neither the signing key nor an HMAC secret
    assert vault_get(w1, "keys/jwt_signing_key", check=False) is None
    assert vault_get(w1, "keys/jwt_secret", check=False) is None
    keys = json.loads(vault_get(w1, "data/jwt_public_keys"))
    assert [k["kid"] for k in keys["keys"]] == [SigningKey(jwt_secret(c)).kid], keys
    assert all("PRIVATE" not in k["pem"] for k in keys["keys"])
    # its /auth/token refuses, whatever the credentials, and says who signs
    for body in ({"api_key": c.admin_key}, {}):
        r = w1.request("POST", "/auth/token", body=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"}, auth=False)
        assert r.status == 403, r
        assert "coordinator" in r.json()["error"], r.json()
    # with the worker's own certificate too, on the worker and on the coordinator
    crt, key = export_identity(w1, tmp_path)
    for n in (w1, c):
        st, body = mtls_request(n, "POST", "/auth/token", crt, key, body=b'{"role":"viewer"}')
        assert st in (401, 403), body
        assert "token" not in json.loads(body), body
    # the coordinator's tokens work on the worker
    assert accepted(w1, c.new_token())


def test_node_identity_is_limited(trio, tmp_path):
    c, w1, w2 = trio
    crt, key = export_identity(w1, tmp_path)
    call = lambda n, m, p=None, token=None: mtls_request(
        n, "POST", "/rpc", crt, key, token=token,
        body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, **({"params": p} if p else {})}).encode())
    # reads and ordinary calls: yes
    st, body = call(c, "system/ping")
    assert st == 200 and json.loads(body)["result"]["pong"] is True, body
    # admin-only actions: no, directly or through cluster/call on the node itself
    st, body = call(c, "system/update_config", {"log_level": "debug"})
    assert st == 403, body
    st, body = call(c, "cluster/call", {"target": "local", "method": "system/update_config",
                                         "params": {"log_level": "debug"}})
    assert st == 200 and json.loads(body)["result"]["error"]["code"] == -32005, body
    # /auth/revoke needs an operator's admin token
    victim = c.new_token()
    st, body = mtls_request(c, "POST", "/auth/revoke", crt, key, body=json.dumps({"token": victim}).encode())
    assert st == 403, body
    assert accepted(c, victim)
    # a node presenting an operator's token is that operator (here: a viewer)
    viewer = c.new_token(role="viewer")
    st, body = call(c, "system/update_config", {"log_level": "debug"}, token=viewer)
    assert st == 403 and "viewer" in json.loads(body)["error"], body


def test_forwarded_calls_carry_the_operators_token(trio):
    c, w1, w2 = trio
    admin = c.new_token()
    # X-P2P-Node through w1 to the coordinator: an admin-only method works, so the coordinator
    # authorized the operator, not w1 (whose node identity may not call it)
    r = rpc_with(w1, admin, "system/update_config", {"log_level": "info"}, headers={"X-P2P-Node": c.name})
    assert r.status == 200 and "result" in r.json(), r.json()
    # cluster/call from w1 to w2, the same
    r = rpc_with(w1, admin, "cluster/call", {"target": w2.name, "method": "system/update_config",
                                             "params": {"log_level": "info"}})
    assert r.status == 200 and "result" in r.json()["result"], r.json()
    # and a revoked operator token is refused by the target even through a node
    victim = c.new_token()
    revoke(c, victim, admin)
    r = rpc_with(w1, victim, "system/ping", headers={"X-P2P-Node": w2.name})
    assert r.status == 401, r


def test_unknown_kid_and_alg_confusion_refused_on_workers(trio):
    c, w1, _ = trio
    key = SigningKey(jwt_secret(c))
    assert accepted(w1, key.sign(claims()))  # control: signed here, accepted there
    other = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "unknown key id": es256({"alg": "ES256", "kid": "cd" * 16, "typ": "JWT"}, claims(), other),
        "bad signature": es256(key.header, claims(), other),
        "algorithm not allowed": sign(dict(HS256, kid=key.kid), claims(), key.public_pem),
    }
    for why, tok in cases.items():
        for n in (c, w1):
            r = rpc_with(n, tok)
            assert r.status == 401 and why in why_refused(r), (n.name, why, r)
    tok = b64u('{"alg":"none","typ":"JWT"}') + "." + b64u(json.dumps(claims())) + "."
    assert rpc_with(w1, tok).status == 401


def test_old_hs256_vault_upgraded(node_factory):
    """A coordinator whose vault has the old HS256 secret and no signing key makes one on
    start, logs it, and refuses tokens signed with the old secret."""
    c = node_factory.create("old")
    assert c.stop(timeout=15) == 0
    secret = secrets.token_bytes(32)
    run_p2p("vault", "rm", "keys/jwt_signing_key", "--data-dir", str(c.data_dir), env=_vault_env())
    f = c.data_dir.parent / "old-secret.bin"
    f.write_bytes(secret)
    run_p2p("vault", "put", "keys/jwt_secret", "--from-file", str(f), "--data-dir", str(c.data_dir),
            env=_vault_env())
    offset = len(c.stderr_path.read_bytes())
    c.start()
    log = c.stderr_path.read_bytes()[offset:].decode()
    assert re.search(r"upgraded vault: new ES256 token signing key \(kid [0-9a-f]{32}\)", log), log
    assert vault_get(c, "keys/jwt_secret", check=False) is None
    old = sign(HS256, claims(), secret)
    r = rpc_with(c, old)
    assert r.status == 401 and "algorithm not allowed" in why_refused(r), r
    assert accepted(c, c.new_token())


def _vault_env():
    return clean_env(P2P_VAULT_PASSWORD=vault_password())


# ---- finding 1: revocation everywhere -----------------------------------------------------------


def test_revoked_on_coordinator_refused_everywhere_within_2s_and_after_restart(trio):
    c, w1, w2 = trio
    admin, victim = c.new_token(), c.new_token()
    assert all(accepted(n, victim) for n in trio)
    t0 = time.monotonic()
    ans = revoke(c, victim, admin)
    assert ans["revoked"] is True and ans["nodes_total"] == 3, ans
    assert ans["nodes_confirmed"] == 3, ans
    for n in (w1, w2):
        wait_until(lambda: not accepted(n, victim), 2.0 - (time.monotonic() - t0) + 0.3,
                   f"revoked token refused on {n.name}")
        r = rpc_with(n, victim)
        assert "revoked" in why_refused(r), r
    assert accepted(w1, admin)
    # durable on each worker: restart it while the coordinator is away, so it cannot re-fetch
    assert c.stop(timeout=15) == 0
    for n in (w1, w2):
        assert n.stop(timeout=15) == 0
        n.start()
        r = rpc_with(n, victim)
        assert r.status == 401 and "revoked" in why_refused(r), (n.name, r)
        assert accepted(n, admin)


def test_worker_down_during_revocation_learns_it_on_rejoin(trio):
    c, w1, w2 = trio
    admin, victim = c.new_token(), c.new_token()
    assert accepted(w2, victim)
    assert w2.stop(timeout=15) == 0
    ans = revoke(c, victim, admin)
    assert ans["nodes_confirmed"] == ans["nodes_total"], ans  # w2 is not live: not counted
    w2.start()
    wait_until(lambda: not accepted(w2, victim), 5, "the revocation reached the rejoined worker")
    assert "revoked" in why_refused(rpc_with(w2, victim))
    assert accepted(w2, admin)


def test_revocation_made_on_a_worker_reaches_every_node(trio):
    c, w1, w2 = trio
    admin, victim = c.new_token(), c.new_token()
    t0 = time.monotonic()
    ans = revoke(w1, victim, admin)
    assert ans["revoked"] is True and ans["nodes_total"] == 3 and ans["nodes_confirmed"] == 3, ans
    for n in (c, w2, w1):
        wait_until(lambda: not accepted(n, victim), 2.0 - (time.monotonic() - t0) + 0.3,
                   f"revoked token refused on {n.name}")
    # the coordinator now holds it durably
    assert c.stop(timeout=15) == 0
    c.start()
    assert "revoked" in why_refused(rpc_with(c, victim))


def test_revocation_on_a_worker_while_the_coordinator_is_down_is_delivered_later(trio):
    c, w1, w2 = trio
    admin, victim = c.new_token(), c.new_token()
    assert c.stop(timeout=15) == 0
    ans = revoke(w1, victim, admin)
    assert ans["revoked"] is True and "coordinator" in ans, ans
    assert "revoked" in why_refused(rpc_with(w1, victim))
    c.start()
    wait_until(lambda: not accepted(c, victim), 10, "the pending revocation reached the coordinator")
    wait_until(lambda: not accepted(w2, victim), 5, "and the other worker")


def test_cli_token_revoke_reports_the_nodes(trio, tmp_path):
    c, w1, w2 = trio
    admin, victim = c.new_token(), c.new_token()
    cp = run_p2p("token", "revoke", victim, "--addr", w1.addr, "--ca", str(c.ca), "--token", admin)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert re.search(r"3 of 3 nodes", out), out
