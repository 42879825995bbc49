"""Limits that mean what they say (issue 9, findings 5, 7 and 8).

5. One source of truth for limits: a value the config validator accepts is one the
   component builds with. system/update_config builds the new rate limiter before it
   changes or stores anything; the same value as a flag exits 2 with a message; an
   override stored in the vault that cannot apply stops the node with exit 2, naming the
   key and the remedy, never a dead component with exit 1.
7. A JSON-RPC batch of N calls costs N rate-limit tokens; a batch larger than the burst
   is refused whole (413), one the bucket cannot pay now is refused whole (429 with
   Retry-After); nothing of a refused batch runs.
8. Buckets per token (its jti, or the name it was given: `p2p token --name`), never
   shared between roles; node certificates have their own, higher limits.
"""
import json
import os
import subprocess

import pytest

from conftest import P2P_BIN, T, VAULT_PASSWORD, run_p2p
from test_enroll import export_identity, mtls_request

JSON = {"Content-Type": "application/json"}
LIMITED = ["--rate-limit-enabled", "true", "--rate-limit-rpc-requests", "60", "--rate-limit-rpc-burst", "5"]


def rpc(node, token, body):
    return node.request("POST", "/rpc", body=json.dumps(body).encode(),
                        headers=dict(JSON, Authorization="Bearer " + token), auth=False)


def ping(node, token):
    return rpc(node, token, {"jsonrpc": "2.0", "id": 1, "method": "system/ping"})


def batch(n, start=0):
    return [{"jsonrpc": "2.0", "id": start + i, "method": "system/ping"} for i in range(n)]


def token(node, role=None, name=None):
    body = {"api_key": node.admin_key}
    if role:
        body["role"] = role
    if name is not None:
        body["name"] = name
    r = node.request("POST", "/auth/token", body=json.dumps(body).encode(), headers=JSON, auth=False)
    assert r.status == 200, r
    return r.json()


def until_limited(node, tok, limit=40):
    """Pings with `tok` until a 429; returns how many passed before it."""
    for i in range(limit):
        r = ping(node, tok)
        if r.status == 429:
            return i
        assert r.status == 200, r
    pytest.fail(f"no 429 after {limit} calls")


def vault(*args):
    env = dict(os.environ, P2P_VAULT_PASSWORD=VAULT_PASSWORD)
    return subprocess.run([P2P_BIN, "vault", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=T(30), stdin=subprocess.DEVNULL)


# ---- 5. one source of truth for limits ----------------------------------------------------------


def test_update_config_refuses_a_burst_the_limiter_cannot_build(node_factory):
    n = node_factory.create("burst")
    before = n.result("system/get_config")
    r = rpc(n, n.token, {"jsonrpc": "2.0", "id": 1, "method": "system/update_config",
                         "params": {"rate_limit_rpc_burst": 100000, "log_level": "debug"}}).json()
    assert r["error"]["code"] == -32602, r
    msg = r["error"]["message"]
    assert "rate_limit_rpc_burst" in msg and "1..10000" in msg, msg
    after = n.result("system/get_config")
    assert after["config"] == before["config"] and after["overrides"] == {}, "a refused update changed something"
    # the largest value the validator accepts is one the limiter builds: applied, stored, and
    # the node starts again with it
    res = n.result("system/update_config", {"rate_limit_rpc_burst": 10000, "rate_limit_node_rpc_burst": 10000})
    assert res["persisted"] is True, res
    assert n.stop() == 0
    n.start()
    got = n.result("system/get_config")
    assert got["config"]["rate_limit_rpc_burst"] == 10000, got
    assert got["overrides"] == {"rate_limit_node_rpc_burst": 10000, "rate_limit_rpc_burst": 10000}, got
    assert n.get("/health").json()["components"]["security"]["state"].lower() == "running"


@pytest.mark.parametrize("flag,value,needle", [
    ("--rate-limit-rpc-burst", "100000", "out of range 1..10000"),
    ("--rate-limit-node-default-requests", "1000001", "out of range 1..1000000"),
    ("--trusted-proxies", "10.0.0.0/8,proxy.example", "'proxy.example' is not an IP address or CIDR block"),
    ("--cert-lifetime", "315360001", "out of range 60..315360000"),
])
def test_a_flag_the_component_would_refuse_exits_2(tmp_path, flag, value, needle):
    cp = run_p2p("agent", "--coordinator", "--node-id", "x", "--port", "1", "--bind-address", "127.0.0.1",
                 "--data-dir", tmp_path / "d", flag, value, timeout=15)
    assert cp.returncode == 2, cp
    assert flag in cp.stderr and needle in cp.stderr, cp.stderr
    assert not (tmp_path / "d").exists(), "the node got as far as creating its state"


def test_trusted_proxies_that_validate_start_the_node(node_factory):
    """The security component accepts what the validator accepts (it refused every valid
    entry before: a node with trusted_proxies set could not start)."""
    n = node_factory.create("proxies", extra_args=["--trusted-proxies", "10.0.0.0/8, ::1"])
    assert n.get("/health").status == 200


def test_stored_override_that_cannot_apply_exits_2_with_the_remedy(node_factory):
    n = node_factory.create("stored")
    assert n.stop() == 0
    cp = vault("put", "config/overrides", "--value", json.dumps({"rate_limit_rpc_burst": 100000}),
               "--data-dir", n.data_dir)
    assert cp.returncode == 0, cp.stderr
    n._spawn()
    assert n.wait(timeout=20) == 2, n.stderr()
    err = n.stderr()
    assert "rate_limit_rpc_burst" in err and "out of range 1..10000" in err, err
    assert f"p2p vault rm config/overrides --data-dir {n.data_dir}" in err, err
    assert "failed to start" not in err, err
    # a stored document that is not an object is named too
    cp = vault("put", "config/overrides", "--value", "[1, 2", "--data-dir", n.data_dir)
    assert cp.returncode == 0, cp.stderr
    n._spawn()
    assert n.wait(timeout=20) == 2, n.stderr()
    assert "config/overrides" in n.stderr().split("rate_limit_rpc_burst")[-1]
    # the remedy works
    cp = vault("rm", "config/overrides", "--data-dir", n.data_dir)
    assert cp.returncode == 0, cp.stderr
    n.start()
    assert n.result("system/get_config")["overrides"] == {}


# ---- 7. a batch of N calls costs N ---------------------------------------------------------------


def test_batches_cannot_multiply_the_rate_limit(node_factory):
    n = node_factory.create("batch", extra_args=["--rate-limit-enabled", "true", "--rate-limit-rpc-requests", "60",
                                                 "--rate-limit-rpc-burst", "20"])
    tok = token(n)["token"]
    ran = 0
    statuses = []
    for i in range(25):
        r = rpc(n, tok, batch(1000, 1000 * i))
        statuses.append(r.status)
        if r.status == 200:
            ran += len(r.json())
    assert ran <= 20, f"{ran} calls ran against a burst of 20 ({statuses})"
    assert set(statuses) <= {413, 429}, statuses
    assert statuses[0] == 413, statuses
    big = rpc(n, token(n)["token"], batch(21))
    assert big.status == 413 and "at most 20 calls per batch" in big.json()["error"], big

    # within the burst: a batch runs whole, the next one that the bucket cannot pay is
    # refused whole with the wait for all of it
    tok = token(n)["token"]
    r = rpc(n, tok, batch(15))
    assert r.status == 200 and len(r.json()) == 15, r
    r = rpc(n, tok, batch(15, 100))
    assert r.status == 429, r
    assert int(r.headers.get("Retry-After")) >= 9, r.headers   # ~15 - 4 tokens at 1/s
    assert "batch of 15 calls" in r.json()["error"], r
    r = ping(n, tok)   # what was not spent is still there
    assert r.status == 200, r


# ---- 8. buckets per token, per role, and for node identities --------------------------------------


def test_viewer_calls_do_not_limit_the_admin(node_factory):
    n = node_factory.create("roles", extra_args=LIMITED)
    admin, viewer = token(n)["token"], token(n, role="viewer")["token"]
    assert until_limited(n, viewer) >= 5
    for _ in range(20):
        ping(n, viewer)
    assert ping(n, admin).status == 200, "the viewer's calls limited the admin"


def test_named_tokens_share_a_bucket_per_name_and_role(node_factory, tmp_path):
    n = node_factory.create("names", extra_args=LIMITED)
    ci = token(n, role="viewer", name="ci-bot")
    assert ci["name"] == "ci-bot"
    ci2 = token(n, role="viewer", name="ci-bot")["token"]
    other = token(n, role="viewer", name="nightly")["token"]
    admin_ci = token(n, name="ci-bot")["token"]
    unnamed1, unnamed2 = token(n, role="viewer")["token"], token(n, role="viewer")["token"]
    assert until_limited(n, ci["token"]) >= 5
    assert ping(n, ci2).status == 429, "another token of the same name has its own bucket"
    assert ping(n, other).status == 200, "two names share a bucket"
    assert ping(n, admin_ci).status == 200, "the same name in another role shares a bucket"
    assert until_limited(n, unnamed1) >= 5
    assert ping(n, unnamed2).status == 200, "two unnamed tokens share a bucket"
    # names are checked like subjects
    for bad in ["", "a\nb", 7, "x" * 65]:
        r = n.request("POST", "/auth/token", body=json.dumps({"api_key": n.admin_key, "name": bad}).encode(),
                      headers=JSON, auth=False)
        assert r.status == 400 and "name" in r.json()["error"], (bad, r)
    # the command line sets it
    cp = run_p2p("token", "--addr", n.addr, "--data-dir", n.data_dir, "--api-key-file", n.admin_key_path,
                 "--role", "viewer", "--name", "ci-bot")
    assert cp.returncode == 0, cp.stderr
    assert ping(n, cp.stdout.strip()).status == 429, "p2p token --name did not name the token"
    cp = run_p2p("token", "--addr", n.addr, "--data-dir", n.data_dir, "--api-key-file", n.admin_key_path,
                 "--name", "")
    assert cp.returncode == 2 and "--name" in cp.stderr, cp


def test_node_certificates_have_their_own_limits(node_factory, tmp_path):
    n = node_factory.create("nodes", extra_args=LIMITED + ["--rate-limit-node-rpc-requests", "60",
                                                          "--rate-limit-node-rpc-burst", "8"])
    crt, key = export_identity(n, tmp_path)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system/ping"}).encode()
    admin = token(n)["token"]
    assert until_limited(n, admin) >= 5
    # a node's batch is charged to the node's bucket: 8 calls fit its burst, 9 never do
    # (the refused request still paid its admission token)
    st, resp = mtls_request(n, "POST", "/rpc", crt, key, body=json.dumps(batch(9)).encode())
    assert st == 413 and "burst of 8" in json.loads(resp)["error"], (st, resp)
    # the operator is limited; the node identity is not, and has its own burst (8, not 5)
    statuses = [mtls_request(n, "POST", "/rpc", crt, key, body=body)[0] for _ in range(10)]
    assert statuses[:7] == [200] * 7 and 429 in statuses[7:], statuses
    assert ping(n, admin).status == 429, "the node's calls refilled the operator's bucket?"
    # the default limits of nodes are higher than the operators'
    m = node_factory.create("nodes-default", extra_args=["--rate-limit-enabled", "true"])
    crt2, key2 = export_identity(m, tmp_path)
    st, resp = mtls_request(m, "POST", "/rpc", crt2, key2, body=json.dumps(batch(1000)).encode())
    assert st == 200 and len(json.loads(resp)) == 1000, (st, resp[:200])
