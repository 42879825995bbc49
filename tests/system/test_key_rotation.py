"""Rotating the token signing key (issue 9 follow-up): `p2p token rotate-key` on the
coordinator makes a new ES256 key; tokens signed before keep working on every node until
they expire, tokens of the new key work on every worker within seconds (the coordinator
publishes its key set's tag; workers fetch the set), and once every old token has expired
(jwt_ttl + the 30 s leeway) every node drops the old public key. With --drop-old the old
key goes at once and its tokens are refused everywhere."""
import base64
import json
import time

import pytest

from conftest import run_p2p, wait_until
from test_auth import SigningKey, clean_env, jwt_secret, vault_get
from test_cluster import all_alive
from test_tokens import accepted, rpc_with, why_refused

JWT_TTL = 60
LEEWAY = 30


def kid_of(token):
    h = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["kid"]


def key_set(node):
    return {k["kid"]: k.get("retire_at") for k in json.loads(vault_get(node, "data/jwt_public_keys"))["keys"]}


@pytest.fixture
def trio(node_factory):
    c = node_factory.create("coord", extra_args=["--jwt-ttl", JWT_TTL])
    jt = c.create_join_token(uses=2)
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=jt)
    w2 = node_factory.create("w2", coordinator=False, join=c, join_token=jt)
    nodes = [c, w1, w2]
    wait_until(all_alive(nodes, [n.name for n in nodes]), 15, "3 nodes alive everywhere")
    return c, w1, w2


def rotate(c, *extra):
    cp = run_p2p("token", "rotate-key", "--addr", c.addr, "--ca", c.ca, "--api-key-file", c.admin_key_path,
                 *extra, env=clean_env())
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip(), cp.stderr


@pytest.mark.timing
def test_rotation_keeps_old_tokens_spreads_the_new_key_and_prunes_the_old(trio):
    c, w1, w2 = trio
    old = c.new_token(ttl=JWT_TTL)
    old_kid = kid_of(old)
    assert all(accepted(n, old) for n in trio)
    t_rot = time.time()
    new_kid, err = rotate(c)
    assert len(new_kid) == 32 and new_kid != old_kid, (new_kid, err)
    assert f"old key {old_kid}" in err, err
    # the coordinator signs with the new key, keeps the old public key with a retire time
    assert SigningKey(jwt_secret(c)).kid == new_kid
    ks = key_set(c)
    assert set(ks) == {old_kid, new_kid} and ks[new_kid] is None, ks
    assert t_rot + JWT_TTL + LEEWAY - 2 <= ks[old_kid] <= time.time() + JWT_TTL + LEEWAY + 2, ks
    # the workers have the new key within seconds, before anyone shows them a token of it
    for n in (w1, w2):
        wait_until(lambda: new_kid in key_set(n), 5, f"new key on {n.name}")
    new = c.new_token()
    assert kid_of(new) == new_kid
    for n in trio:
        assert accepted(n, new), n.name
        assert accepted(n, old), n.name  # signed before: still good until it expires
    # the coordinator keeps both across a restart
    assert c.stop(timeout=15) == 0
    c.fixed_port = c.port
    c.start()
    assert accepted(c, old) and accepted(c, new)
    assert set(key_set(c)) == {old_kid, new_kid}
    wait_until(all_alive(list(trio), [n.name for n in trio]), 15, "3 nodes alive again")
    # once every token of the old key has expired (jwt_ttl + leeway), every node drops it
    retire_at = key_set(c)[old_kid]
    time.sleep(max(0, retire_at - time.time()))
    new = c.new_token()  # the first one has expired too (jwt_ttl)
    for n in trio:
        wait_until(lambda: old_kid not in key_set(n), 10, f"old key pruned on {n.name}")
        assert set(key_set(n)) == {new_kid}, n.name
        r = rpc_with(n, old)
        assert r.status == 401, (n.name, r)
        assert accepted(n, new), n.name
    assert "dropped 1 retired token key(s)" in c.stderr()


def test_drop_old_refuses_the_old_tokens_everywhere_at_once(trio):
    c, w1, w2 = trio
    old = c.new_token()
    assert all(accepted(n, old) for n in trio)  # remembered by each node's token cache too
    new_kid, err = rotate(c, "--drop-old")
    assert "dropped" in err, err
    t0 = time.monotonic()
    assert set(key_set(c)) == {new_kid}
    r = rpc_with(c, old)
    assert r.status == 401 and "unknown key id" in why_refused(r), r
    for n in (w1, w2):
        wait_until(lambda: rpc_with(n, old).status == 401, 5 - (time.monotonic() - t0), f"old token refused on {n.name}")
    new = c.new_token()
    assert all(accepted(n, new) for n in trio)


def test_rotate_key_cli_usage_and_refusals(trio, tmp_path):
    c, w1, _ = trio
    cp = run_p2p("token", "rotate-key", "--addr", c.addr, "--ca", c.ca, "--uses", "2", env=clean_env())
    assert cp.returncode == 2, cp.stderr
    cp = run_p2p("token", "--help", env=clean_env())
    assert "rotate-key" in cp.stdout and "--drop-old" in cp.stdout
    # a viewer cannot rotate
    f = tmp_path / "viewer.tok"
    f.write_text(c.new_token(role="viewer"))
    f.chmod(0o600)
    cp = run_p2p("token", "rotate-key", "--addr", c.addr, "--ca", c.ca, "--token-file", f, env=clean_env())
    assert cp.returncode == 1 and "viewer" in cp.stderr, cp.stderr
    # bad params are refused and change nothing
    before = set(key_set(c))
    r = rpc_with(c, c.token, "auth/rotate_signing_key", {"drop_old": "yes"})
    assert r.json()["error"]["code"] == -32602, r.json()
    r = rpc_with(c, c.token, "auth/rotate_signing_key", {"other": 1})
    assert r.json()["error"]["code"] == -32602, r.json()
    assert set(key_set(c)) == before
    # workers do not sign, so they have nothing to rotate
    r = rpc_with(w1, c.token, "auth/rotate_signing_key", {})
    assert r.json()["error"]["code"] == -32601, r.json()
