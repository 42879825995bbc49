"""Service packages (issue 13, first part): `p2p package build`, `inspect`, `sign`
and `key` against a running coordinator.

The coordinator makes the cluster release key on the first signature and keeps it in
its vault (it survives a restart); the CLI sends only package.json and writes the
signature it gets back. Only an admin signs: a viewer token and a node certificate
(a compromised worker's) are refused, and the package stays unsigned. A worker
pinned to the release key (release_public_key_file) announces it; a pin that is not
a key stops the worker at start. A tampered or downgraded package is refused by
inspect, as a node would refuse it.
"""
import json
import os
import shutil

import pytest

from conftest import run_p2p, wait_until
from test_auth import vault_get
from test_cluster import all_alive
from test_enroll import export_identity, mtls_request
from test_exec_services import PYHELLO
from test_services import HELLO


@pytest.fixture(scope="module")
def cluster(module_node_factory):
    c = module_node_factory.create("pc1")
    w = module_node_factory.create("pw1", coordinator=False, join=c)
    wait_until(all_alive([c, w], ["pc1", "pw1"]), 20, "both alive")
    return c, w


def env_for(node, token=None):
    env = dict(os.environ)
    env.update(P2P_ADDR=node.addr, P2P_DATA_DIR=str(node.data_dir), P2P_TOKEN=token or node.token)
    env.pop("P2P_CA", None)
    return env


def service_copy(tmp_path, src, name):
    d = tmp_path / name
    shutil.copytree(src, d)
    return d


def test_build_sign_inspect(cluster, tmp_path):
    c, _ = cluster
    src = service_copy(tmp_path, PYHELLO, "pyhello")
    cp = run_p2p("package", "build", str(src), cwd=str(tmp_path))
    assert cp.returncode == 0, cp.stderr
    pkg = tmp_path / "pyhello-1.0.0.tar.zst"
    assert pkg.exists() and "unsigned" in cp.stdout, cp.stdout

    cp = run_p2p("package", "inspect", str(pkg))
    assert cp.returncode == 0, cp.stderr
    assert "pyhello 1.0.0 (service)" in cp.stdout and "signature:   none" in cp.stdout, cp.stdout
    assert "main.py" in cp.stdout and "manifest.json" in cp.stdout

    # no release key before the first signature
    assert c.result("deploy/release_key")["public_key"] is None
    cp = run_p2p("package", "sign", str(pkg), env=env_for(c), timeout=30)
    assert cp.returncode == 0, cp.stderr
    key = c.result("deploy/release_key")
    assert key["alg"] == "ed25519" and key["public_key"].startswith("-----BEGIN PUBLIC KEY-----"), key
    assert f"signed with release key {key['key_id']}" in cp.stdout, cp.stdout
    assert vault_get(c, "keys/release_signing_key").startswith(b"-----BEGIN PRIVATE KEY-----")

    # inspect checks it against the cluster's key, fetched or pinned in a file
    cp = run_p2p("package", "inspect", str(pkg), "--fetch-key", env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    assert f"signature:   valid, key {key['key_id']}" in cp.stdout, cp.stdout
    pem = tmp_path / "release.pem"
    cp = run_p2p("package", "key", "-o", str(pem), env=env_for(c))
    assert cp.returncode == 0, cp.stderr
    assert pem.read_text() == key["public_key"]
    cp = run_p2p("package", "inspect", str(pkg), "--key", str(pem), "--json")
    assert cp.returncode == 0, cp.stderr
    doc = json.loads(cp.stdout)
    assert doc["signature"] == "valid" and doc["key_id"] == key["key_id"], doc
    assert sorted(f["path"] for f in doc["files"]) == ["main.py", "manifest.json"]

    # a second package (gzip, native service) is signed with the same key
    src2 = service_copy(tmp_path, HELLO, "hello")
    pkg2 = tmp_path / "hello.tar.gz"
    cp = run_p2p("package", "build", str(src2), "-o", str(pkg2), "--gzip")
    assert cp.returncode == 0, cp.stderr
    cp = run_p2p("package", "sign", str(pkg2), "--key", str(pem), env=env_for(c), timeout=30)
    assert cp.returncode == 0, cp.stderr
    cp = run_p2p("package", "inspect", str(pkg2), "--key", str(pem), "--json")
    assert cp.returncode == 0 and json.loads(cp.stdout)["compression"] == "gzip", cp.stdout + cp.stderr

    # refused as a node would refuse them: below a version floor, a byte changed, another key
    cp = run_p2p("package", "inspect", str(pkg), "--key", str(pem), "--min-version", "1.0.1")
    assert cp.returncode == 1 and "downgrade" in cp.stderr, cp.stderr
    bad = tmp_path / "tampered.tar.zst"
    data = bytearray(pkg.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    cp = run_p2p("package", "inspect", str(bad), "--key", str(pem))
    assert cp.returncode == 1 and "refused" in cp.stderr, cp.stderr
    unsigned = tmp_path / "unsigned.tar.zst"
    assert run_p2p("package", "build", str(src), "-o", str(unsigned)).returncode == 0
    cp = run_p2p("package", "inspect", str(unsigned), "--key", str(pem))
    assert cp.returncode == 1 and "unsigned" in cp.stderr, cp.stderr


def test_only_an_admin_signs(cluster, tmp_path):
    c, w = cluster
    src = service_copy(tmp_path, PYHELLO, "pyhello")
    pkg = tmp_path / "p.tar.zst"
    assert run_p2p("package", "build", str(src), "-o", str(pkg)).returncode == 0
    before = pkg.read_bytes()
    key_before = vault_get(c, "keys/release_signing_key", check=False)

    viewer = c.new_token(role="viewer")
    cp = run_p2p("package", "sign", str(pkg), env=env_for(c, viewer), timeout=30)
    assert cp.returncode == 1 and "viewer" in cp.stderr, cp.stdout + cp.stderr
    assert pkg.read_bytes() == before
    # a viewer may read the key
    has_key = c.result("deploy/release_key")["public_key"] is not None
    cp = run_p2p("package", "key", env=env_for(c, viewer))
    assert cp.returncode == (0 if has_key else 1), cp.stderr
    if has_key:
        assert cp.stdout.startswith("-----BEGIN PUBLIC KEY-----"), cp.stdout

    # a worker's certificate, straight to the coordinator and through the worker
    crt, key = export_identity(w, tmp_path)
    listing = json.loads(run_p2p("package", "inspect", str(pkg), "--json").stdout)
    manifest = {"format": 1, "name": listing["name"], "version": listing["version"], "type": "service",
                "files": [{k: f[k] for k in ("path", "size", "sha256", "executable")} for f in listing["files"]]}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "deploy/sign",
                       "params": {"package": json.dumps(manifest)}}).encode()
    st, out = mtls_request(c, "POST", "/rpc", crt, key, body=body)
    assert st == 403 and "node identity" in json.loads(out)["error"], (st, out)
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "cluster/call",
                       "params": {"target": c.name, "method": "deploy/sign",
                                  "params": {"package": json.dumps(manifest)}}}).encode()
    st, out = mtls_request(w, "POST", "/rpc", crt, key, body=call)
    assert st == 200 and "error" in json.loads(out)["result"], out
    assert vault_get(c, "keys/release_signing_key", check=False) == key_before
    # an admin's deploy/sign on a worker does not exist: only the coordinator signs
    r = w.rpc("deploy/sign", {"package": json.dumps(manifest)})
    assert r["error"]["code"] == -32601, r


def test_sign_refuses_a_malformed_listing(cluster):
    c, _ = cluster
    good = {"format": 1, "name": "x", "version": "1.0.0", "type": "node",
            "files": [{"path": "p2p", "size": 0, "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                       "executable": True}]}
    assert "signature" in c.result("deploy/sign", {"package": json.dumps(good)})
    for bad in (dict(good, files=[dict(good["files"][0], path="../p2p")]),
                dict(good, files=[dict(good["files"][0], path="/usr/bin/p2p")]),
                dict(good, version="1.0"), dict(good, extra=1), dict(good, type="other")):
        r = c.rpc("deploy/sign", {"package": json.dumps(bad)})
        assert r["error"]["code"] == -32602, (bad, r)
    for params in ({}, {"package": 5}, {"package": "{}", "more": 1}, [1]):
        r = c.rpc("deploy/sign", params)
        assert r["error"]["code"] == -32602, (params, r)


def test_key_survives_a_restart_and_workers_pin_it(cluster, node_factory, tmp_path):
    c, _ = cluster
    if c.result("deploy/release_key")["public_key"] is None:
        c.result("deploy/sign", {"package": json.dumps(
            {"format": 1, "name": "x", "version": "1.0.0", "type": "node",
             "files": [{"path": "p2p", "size": 0, "executable": True,
                        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]})})
    kid = c.result("deploy/release_key")["key_id"]
    c.stop()
    c.start()
    assert c.result("deploy/release_key")["key_id"] == kid
    pem = tmp_path / "release.pem"
    pem.write_text(c.result("deploy/release_key")["public_key"])
    w = node_factory.create("pinned", coordinator=False, join=c,
                            extra_args=["--release-public-key-file", pem])
    assert w.result("deploy/release_key")["key_id"] == kid
    # a pin that is not a key: the worker refuses to start
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a key\n")
    with pytest.raises(Exception):
        node_factory.create("badpin", coordinator=False, join=c, extra_args=["--release-public-key-file", bogus])
