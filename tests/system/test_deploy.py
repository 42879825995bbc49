"""`p2p deploy FILE --target NODE` (issue 13): the coordinator's update_server stores a
signed package, the node's update_manager fetches it over mutual TLS, verifies it,
stages it, switches with the platform's hot reload, watches it for min_healthy_time and
commits it, or puts the last good version back by itself and says why.

- v1.1.0 of pyhello on a worker: committed; calls made all along are all answered;
  the previous version is kept as the last good one.
- a version that cannot start (the platform keeps the old instance) and one that
  starts and then keeps crashing: each is reverted, the answer names the reason, the
  worker runs the last good version, and no staging folder is left.
- refused before anything changes: unsigned, below the node's version floor, a
  tampered upload; a viewer cannot upload and a node identity cannot install.
"""
import json
import os
import shutil
import threading
import time

import pytest

from conftest import run_p2p, wait_until
from test_cluster import all_alive
from test_enroll import export_identity, mtls_request
from test_exec_services import PYHELLO
from test_services import HELLO, TEST_SERVICES, services, state_of
from test_tokens import rpc_with


@pytest.fixture(scope="module")
def cluster(module_node_factory, tmp_path_factory):
    base = tmp_path_factory.mktemp("deploy")
    c = module_node_factory.create("dc1")
    wdir = base / "w-services"
    wdir.mkdir()
    shutil.copytree(PYHELLO, wdir / "pyhello")
    w = module_node_factory.create("dw1", coordinator=False, join=c,
                                   extra_args=["--services-directory", wdir,
                                               "--package-version-floors", "pyhello=1.0.5"])
    w.sdir = wdir
    wait_until(all_alive([c, w], ["dc1", "dw1"]), 20, "both alive")
    wait_until(lambda: state_of(w, "pyhello") == "running", 20, "pyhello running")
    return c, w, base


def env_for(node, token=None):
    env = dict(os.environ)
    env.update(P2P_ADDR=node.addr, P2P_DATA_DIR=str(node.data_dir), P2P_TOKEN=token or node.token)
    env.pop("P2P_CA", None)
    return env


def make_package(c, base, version, command=None, sign=True, name="pyhello"):
    """pyhello at `version` (optionally another command), built and signed."""
    src = base / f"src-{version}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(PYHELLO, src)
    m = json.loads((src / "manifest.json").read_text())
    m["version"] = version
    if command:
        m["command"] = command
    (src / "manifest.json").write_text(json.dumps(m))
    pkg = base / f"{name}-{version}.tar.zst"
    cp = run_p2p("package", "build", str(src), "-o", str(pkg))
    assert cp.returncode == 0, cp.stderr
    if sign:
        cp = run_p2p("package", "sign", str(pkg), env=env_for(c), timeout=30)
        assert cp.returncode == 0, cp.stderr
    return pkg


def deploy(c, pkg, target, *extra, token=None, timeout=90):
    return run_p2p("deploy", str(pkg), "--target", target, *extra, env=env_for(c, token), timeout=timeout)


def disk_version(w, name="pyhello"):
    return json.loads((w.sdir / name / "manifest.json").read_text())["version"]


def leftovers(w):
    return sorted(p.name for p in w.sdir.iterdir() if p.name.startswith(".p2p-staging")
                  or p.name.startswith(".p2p-incoming") or ".unpack-" in p.name)


def test_deploy_commits_with_no_failed_call(cluster):
    c, w, base = cluster
    pkg = make_package(c, base, "1.1.0")
    failures, answered, stop = [], [], threading.Event()

    def caller():
        while not stop.is_set():
            r = w.rpc("pyhello/echo", {"n": len(answered)})
            if "result" in r:
                answered.append(r["result"]["version"])
            else:
                failures.append(r)
            time.sleep(0.02)

    t = threading.Thread(target=caller)
    t.start()
    try:
        cp = deploy(c, pkg, "dw1", "--min-healthy-time", "1", "--healthy-deadline", "20")
    finally:
        time.sleep(0.3)
        stop.set()
        t.join(10)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "dw1: pyhello 1.1.0 committed (previous 1.0.0)" in cp.stdout, cp.stdout
    assert not failures, failures[:3]
    assert answered[0] == "1.0.0" and answered[-1] == "1.1.0", (answered[:2], answered[-2:])
    assert services(w)["pyhello"]["version"] == "1.1.0"
    assert disk_version(w) == "1.1.0"
    prev = w.sdir / ".p2p-previous" / "pyhello" / "manifest.json"
    assert json.loads(prev.read_text())["version"] == "1.0.0"
    assert leftovers(w) == []
    # the coordinator stored it once, by content
    pk = c.result("deploy/packages")["packages"]
    assert any(p["name"] == "pyhello" and p["version"] == "1.1.0" for p in pk), pk
    # the worker learned the release key from the coordinator and kept it
    assert w.result("deploy/release_key")["key_id"] == c.result("deploy/release_key")["key_id"]


def test_a_version_that_cannot_start_is_reverted(cluster):
    c, w, base = cluster
    before = disk_version(w)
    pkg = make_package(c, base, "1.2.0", command=["python3", "-c", "import sys; sys.exit(3)"])
    cp = deploy(c, pkg, "dw1", "--min-healthy-time", "1", "--healthy-deadline", "15")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    print(cp.stdout)
    assert "reverted" in cp.stdout and "failed to start" in cp.stdout, cp.stdout
    assert services(w)["pyhello"]["version"] == before
    assert state_of(w, "pyhello") == "running"
    assert disk_version(w) == before
    assert w.result("pyhello/echo", {})["version"] == before
    assert leftovers(w) == []


def test_a_version_that_keeps_crashing_is_reverted_at_the_deadline(cluster):
    c, w, base = cluster
    before = disk_version(w)
    crash = ("import json,sys,time\n"
             "for line in sys.stdin:\n"
             "    m = json.loads(line)\n"
             "    if m.get('method') == 'initialize':\n"
             "        print(json.dumps({'jsonrpc': '2.0', 'id': m['id'], 'result': {}}), flush=True)\n"
             "        time.sleep(0.3)\n"
             "        sys.exit(1)\n")
    pkg = make_package(c, base, "1.3.0", command=["python3", "-c", crash])
    t0 = time.monotonic()
    cp = deploy(c, pkg, "dw1", "--min-healthy-time", "3", "--healthy-deadline", "6")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    print(cp.stdout)
    # it started, so it was switched to; it never stayed up for min_healthy_time
    assert "reverted" in cp.stdout and ("healthy_deadline" in cp.stdout or "1.3.0 failed" in cp.stdout), cp.stdout
    assert time.monotonic() - t0 < 40
    wait_until(lambda: services(w)["pyhello"]["version"] == before and state_of(w, "pyhello") == "running",
               20, "the last good version running again")
    assert disk_version(w) == before
    assert leftovers(w) == []


def test_refused_before_anything_changes(cluster, tmp_path):
    c, w, base = cluster
    before = disk_version(w)
    # unsigned: the CLI refuses to send it
    pkg = make_package(c, base, "1.4.0", sign=False)
    cp = deploy(c, pkg, "dw1")
    assert cp.returncode == 1 and "unsigned" in cp.stderr, cp.stderr
    # below the worker's floor (pyhello=1.0.5): the node refuses it
    low = make_package(c, base, "1.0.1")
    cp = deploy(c, low, "dw1", "--min-healthy-time", "0")
    assert cp.returncode == 1 and "refused" in cp.stdout and "below the version floor 1.0.5" in cp.stdout, \
        cp.stdout + cp.stderr
    # tampered after signing: the coordinator refuses the upload
    good = make_package(c, base, "1.5.0")
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    cp = deploy(c, bad, "dw1")
    assert cp.returncode == 1 and "refused" in cp.stderr, cp.stdout + cp.stderr
    # the coordinator checks uploads itself, whatever the client did
    r = c.request("POST", "/deploy/packages", body=bytes(data), headers={"Content-Type": "application/octet-stream"})
    assert r.status == 422, r
    r = c.request("POST", "/deploy/packages", body=pkg.read_bytes(),
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status == 403 and "unsigned" in r.json()["error"], r
    # a viewer cannot upload
    viewer = c.new_token(role="viewer")
    cp = deploy(c, good, "dw1", token=viewer)
    assert cp.returncode == 1 and "403" in cp.stderr, cp.stderr
    # a node identity cannot install (admin only), nor upload
    crt, key = export_identity(w, tmp_path)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "deploy/install",
                       "params": {"sha256": "0" * 64}}).encode()
    st, out = mtls_request(w, "POST", "/rpc", crt, key, body=body)
    assert st == 403 and "node identity" in json.loads(out)["error"], (st, out)
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=str(c.ca))
    ctx.load_cert_chain(str(crt), str(key))
    conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=ctx, timeout=10)
    conn.request("POST", "/deploy/packages", body=good.read_bytes(),
                 headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    assert r.status == 403, (r.status, r.read())
    conn.close()
    # ... and an operator token cannot download (packages go to nodes, over mutual TLS)
    r = c.get("/deploy/packages/" + "0" * 64)
    assert r.status in (401, 403), r
    assert disk_version(w) == before and services(w)["pyhello"]["version"] == before
    assert leftovers(w) == []


def hello_package(c, base, version, so):
    src = base / f"hello-src-{version}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    shutil.copy(so, src / "service.so")
    m = json.loads((HELLO / "manifest.json").read_text())
    m["version"] = version
    (src / "manifest.json").write_text(json.dumps(m))
    pkg = base / f"hello-{version}.tar.gz"
    assert run_p2p("package", "build", str(src), "-o", str(pkg), "--gzip").returncode == 0
    cp = run_p2p("package", "sign", str(pkg), env=env_for(c), timeout=30)
    assert cp.returncode == 0, cp.stderr
    return pkg


def test_native_first_install_then_a_critical_version_is_reverted(cluster):
    c, w, base = cluster
    assert "hello" not in services(w)
    v2 = hello_package(c, base, "2.0.0", TEST_SERVICES / "hello-2.0.0" / "service.so")
    cp = deploy(c, v2, "dw1", "--min-healthy-time", "1")
    assert cp.returncode == 0 and "dw1: hello 2.0.0 committed" in cp.stdout, cp.stdout + cp.stderr
    assert w.result("hello/info", {})["version"] == "2.0.0"
    # 3.0.0 starts, then says it is critical: never healthy, reverted at the deadline
    v3 = hello_package(c, base, "3.0.0", TEST_SERVICES / "hello-critical" / "service.so")
    cp = deploy(c, v3, "dw1", "--min-healthy-time", "1", "--healthy-deadline", "4")
    print(cp.stdout)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "reverted" in cp.stdout and "healthy_deadline" in cp.stdout and "critical" in cp.stdout, cp.stdout
    wait_until(lambda: services(w)["hello"]["version"] == "2.0.0" and state_of(w, "hello") == "running", 20,
               "hello 2.0.0 back")
    assert w.result("hello/info", {})["version"] == "2.0.0"
    assert disk_version(w, "hello") == "2.0.0"
    assert leftovers(w) == []
    # the health 3.0.0 reported went with it: 2.0.0 reports ok again, so the next install's
    # watch does not see a critical service
    assert services(w)["hello"]["health"]["status"] == "ok", services(w)["hello"]
    # a first install that fails leaves no folder behind
    bad = hello_package(c, base, "1.0.0", TEST_SERVICES / "startfail" / "service.so")
    cp = deploy(c, bad, "dc1", "--min-healthy-time", "1", "--healthy-deadline", "5")
    print(cp.stdout)
    assert cp.returncode == 1 and "reverted" in cp.stdout, cp.stdout + cp.stderr
    assert not (c.data_dir / "services" / "hello").exists()
    wait_until(lambda: "hello" not in services(c), 10, "the failed first install gone from the list")


def test_first_install_on_the_coordinator(cluster):
    c, _, base = cluster
    pkg = make_package(c, base, "2.0.0")
    cp = deploy(c, pkg, "dc1", "--min-healthy-time", "1")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "committed" in cp.stdout and "previous" not in cp.stdout, cp.stdout
    assert c.result("pyhello/echo", {})["version"] == "2.0.0"


def test_an_install_longer_than_a_forwarded_call(cluster):
    """deploy/install answers at once and the client follows deploy/install_status, so a
    min_healthy_time above the 30 s a forwarded call may take still ends in a commit."""
    c, w, base = cluster
    pkg = make_package(c, base, "1.6.0")
    t0 = time.monotonic()
    cp = deploy(c, pkg, "dw1", "--min-healthy-time", "32", "--healthy-deadline", "50", "--json", timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert time.monotonic() - t0 >= 32
    out = json.loads(cp.stdout)
    assert out["status"] == "committed" and out["version"] == "1.6.0", out
    # the outcome stays readable by id, for viewers too
    r = rpc_with(w, c.new_token(role="viewer"), "deploy/install_status", {"id": out["id"]})
    assert r.status == 200 and r.json()["result"]["status"] == "committed", r.json()
    r = w.rpc("deploy/install_status", {"id": "no-such"})
    assert r["error"]["code"] == -32602, r


def test_a_node_pinned_to_another_key_refuses_the_cluster_s_packages(cluster, node_factory, tmp_path):
    """A worker pinned (release_public_key_file) to a key that is not the coordinator's
    refuses what the coordinator signed: the pin, not the coordinator, decides."""
    import subprocess
    c, _, base = cluster
    priv, pub = tmp_path / "other.key", tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(priv)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(priv), "-pubout", "-out", str(pub)], check=True)
    sdir = tmp_path / "pinned-services"
    sdir.mkdir()
    w = node_factory.create("dpin", coordinator=False, join=c,
                            extra_args=["--services-directory", sdir, "--release-public-key-file", pub])
    wait_until(all_alive([c, w], ["dc1", "dpin"]), 20, "pinned worker alive")
    assert w.result("deploy/release_key")["key_id"] != c.result("deploy/release_key")["key_id"]
    pkg = make_package(c, base, "1.7.0")
    cp = deploy(c, pkg, "dpin", "--min-healthy-time", "0")
    assert cp.returncode == 1 and "refused" in cp.stdout and "untrusted key" in cp.stdout, cp.stdout + cp.stderr
    assert not (sdir / "pyhello").exists()
    assert [p.name for p in sdir.iterdir() if not p.name.startswith(".p2p-previous")] == []


def test_deploy_a_folder(cluster):
    """p2p deploy DIR builds the package, has the coordinator sign it, then installs it."""
    c, w, base = cluster
    src = base / "src-folder"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(PYHELLO, src)
    m = json.loads((src / "manifest.json").read_text())
    m["version"] = "1.8.0"
    (src / "manifest.json").write_text(json.dumps(m))
    import glob
    temps_before = set(glob.glob("/tmp/p2p-deploy-*"))
    cp = deploy(c, src, "dw1", "--min-healthy-time", "1")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "signed with release key" in cp.stdout and "dw1: pyhello 1.8.0 committed" in cp.stdout, cp.stdout
    assert w.result("pyhello/echo", {})["version"] == "1.8.0"
    assert set(glob.glob("/tmp/p2p-deploy-*")) <= temps_before  # its temporary package is gone
