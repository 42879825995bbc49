"""Admin-only methods: what changes the cluster's security state or operates a node is
for an operator's admin token only (issue 9 follow-up).

A node certificate (a compromised worker's, say) and a viewer token are refused every
method flagged P2P_METHOD_ADMIN: making and revoking join tokens, rotating the token
signing key, changing the config, starting, stopping, restarting and reloading
services, signing a package with the cluster release key, the admin service's methods
(processes, config, files, commands). Refused directly on /rpc,
through cluster/call on the node itself or on another node, through X-P2P-Node
forwarding, and when an exec service of the node asks for one (a service's own calls
go as the node's identity). What nodes need of each other (reads, services' ordinary
methods, cluster/call of those) keeps working.
"""
import json

import pytest

from conftest import wait_until
from test_cluster import all_alive
from test_enroll import export_identity, mtls_request
from test_exec_services import script_service
from test_services import install, state_of
from test_tokens import rpc_with
from test_auth import vault_get

FORBIDDEN = -32005


def admin_calls(c):
    """(method, params) of every admin-only method, with params that would act."""
    return [
        ("auth/create_join_token", {"ttl": 600, "uses": 1}),
        ("auth/revoke_join_token", {"id": c.probe_join_id}),
        ("auth/rotate_signing_key", {}),
        ("system/update_config", {"log_level": "debug"}),
        ("services/stop", {"name": "hello"}),
        ("services/start", {"name": "hello"}),
        ("services/restart", {"name": "hello"}),
        ("services/reload", {"name": "hello"}),
        ("deploy/sign", {"package": SIGNABLE}),
        # the admin service (src/builtin/admin.c; attacks in test_admin_ops.py)
        ("admin/write_file", {"path": "probe", "content": "written"}),
        ("admin/read_file", {"path": "probe"}),
        ("admin/list_processes", {}),
        ("admin/get_config", {}),
        ("admin/list_commands", {}),
        ("pki/renew", {}),
    ]


# a well-formed package.json: deploy/sign would sign it (and make the release key)
SIGNABLE = json.dumps({"format": 1, "name": "x", "version": "1.0.0", "type": "node",
                       "files": [{"path": "p2p", "size": 0, "executable": True,
                                  "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]})


@pytest.fixture
def cluster(node_factory, tmp_path):
    sdir = tmp_path / "services"
    sdir.mkdir()
    install(sdir)
    c = node_factory.create("coord", extra_args=["--services-directory", sdir, "--services-rescan-interval", "1"])
    c.sdir = sdir
    jt = c.create_join_token(uses=2)
    w1 = node_factory.create("w1", coordinator=False, join=c, join_token=jt)
    w2 = node_factory.create("w2", coordinator=False, join=c, join_token=jt)
    nodes = [c, w1, w2]
    wait_until(all_alive(nodes, [n.name for n in nodes]), 15, "3 nodes alive everywhere")
    wait_until(lambda: state_of(c, "hello") == "running", 10, "hello running")
    # a live join token a thief would like to revoke
    c.create_join_token(ttl=600, uses=1)
    c.probe_join_id = c.result("auth/list_join_tokens")[-1]["id"]
    return c, w1, w2


def state_of_coordinator(c):
    """What the refused calls would have changed."""
    return {
        "join_tokens": sorted(t["id"] for t in c.result("auth/list_join_tokens")),
        "kids": sorted(k["kid"] for k in json.loads(vault_get(c, "data/jwt_public_keys"))["keys"]),
        "signing_key": vault_get(c, "keys/jwt_signing_key"),
        "release_key": vault_get(c, "keys/release_signing_key", check=False),
        "log_level": c.result("system/get_config")["config"]["log_level"],
        "probe_file": (c.data_dir / "files" / "probe").exists(),
        "cert_serial": c.result("pki/certificate")["serial"],
        "hello": (state_of(c, "hello"), next(s for s in c.result("services/list")["services"]
                                             if s["name"] == "hello").get("restarts")),
    }


def test_a_node_identity_cannot_run_admin_methods_anywhere(cluster, tmp_path):
    c, w1, w2 = cluster
    crt, key = export_identity(w1, tmp_path)
    before = state_of_coordinator(c)

    def mtls(node, method, params, headers=None):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        return mtls_request(node, "POST", "/rpc", crt, key, body=body)

    for method, params in admin_calls(c):
        # straight to the coordinator's /rpc
        st, body = mtls(c, method, params)
        assert st == 403 and "node identity" in json.loads(body)["error"], (method, st, body)
        # through cluster/call on the coordinator, aimed at itself
        st, body = mtls(c, "cluster/call", {"target": "local", "method": method, "params": params})
        assert st == 200, (method, body)
        res = json.loads(body)["result"]
        assert res["error"]["code"] == FORBIDDEN, (method, res)
        # through cluster/call on another worker, aimed at the coordinator (w2's identity then)
        st, body = mtls(w2, "cluster/call", {"target": c.name, "method": method, "params": params})
        assert st == 200, (method, body)
        res = json.loads(body)["result"]
        assert "error" in res and "403" in res["error"]["message"], (method, res)
        # a batch with one admin call in it is refused whole
        batch = json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "system/ping"},
                            {"jsonrpc": "2.0", "id": 2, "method": method, "params": params}]).encode()
        st, body = mtls_request(c, "POST", "/rpc", crt, key, body=batch)
        assert st == 403, (method, st, body)
    # nothing changed
    assert state_of_coordinator(c) == before
    # what nodes need of each other still works: reads, the services' own methods, cluster/call
    st, body = mtls(c, "services/list", {})
    assert st == 200 and "result" in json.loads(body), body
    st, body = mtls(c, "auth/list_join_tokens", {})
    assert st == 200 and "result" in json.loads(body), body
    st, body = mtls(w2, "cluster/call", {"target": c.name, "method": "hello/greet", "params": {"name": "w1"}})
    assert st == 200 and "result" in json.loads(body)["result"], body


def test_x_p2p_node_forwarding_by_a_node_is_refused_too(cluster, tmp_path):
    c, w1, w2 = cluster
    crt, key = export_identity(w1, tmp_path)
    before = len(c.result("auth/list_join_tokens"))
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=str(w2.ca))
    ctx.load_cert_chain(str(crt), str(key))
    for method, params in admin_calls(c):
        conn = http.client.HTTPSConnection("127.0.0.1", w2.port, context=ctx, timeout=10)
        try:
            conn.request("POST", "/rpc", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                         "params": params}).encode(),
                         headers={"Content-Type": "application/json", "X-P2P-Node": c.name})
            r = conn.getresponse()
            st, body = r.status, r.read()
        finally:
            conn.close()
        assert st == 403, (method, st, body)
    assert len(c.result("auth/list_join_tokens")) == before


def test_viewer_refused_and_admin_allowed(cluster):
    c, w1, w2 = cluster
    viewer = c.new_token(role="viewer")
    for method, params in admin_calls(c):
        r = rpc_with(c, viewer, method, params)
        assert r.status == 403 and "viewer" in r.json()["error"], (method, r)
        # through a worker too
        r = rpc_with(w1, viewer, method, params, headers={"X-P2P-Node": c.name})
        assert r.status == 403, (method, r)
    admin = c.new_token()
    for method, params in admin_calls(c):
        if method == "services/start":
            c.result("services/stop", {"name": "hello"})
        r = rpc_with(c, admin, method, params)
        assert r.status == 200 and "result" in r.json(), (method, r.json())
    # an operator's token forwarded by a worker is the operator's
    r = rpc_with(w1, admin, "auth/create_join_token", {"ttl": 600}, headers={"X-P2P-Node": c.name})
    assert r.status == 200 and r.json()["result"]["token"].startswith("p2pj_"), r.json()


def test_an_exec_service_cannot_call_admin_methods_of_its_node(cluster):
    c, _, _ = cluster
    script_service(c.sdir, "thief", '''
        pending = {}
        for req in requests():
            if req.get("method") == "initialize":
                send({"id": req["id"], "result": {}})
            elif req.get("method") == "work":
                p = req.get("params") or {}
                send({"id": 900000 + req["id"], "method": "call",
                      "params": {"method": p["method"], "params": p.get("params") or {}}})
                pending[900000 + req["id"]] = req["id"]
            elif "id" in req and req["id"] in pending:
                send({"id": pending.pop(req["id"]), "result": req})
    ''')
    wait_until(lambda: state_of(c, "thief") == "running", 15, "thief running")
    before = len(c.result("auth/list_join_tokens"))
    ans = c.result("thief/work", {"method": "auth/create_join_token", "params": {"ttl": 600}})
    assert "error" in ans and ans["error"]["code"] == FORBIDDEN, ans
    ans = c.result("thief/work", {"method": "services/stop", "params": {"name": "hello"}})
    assert "error" in ans and ans["error"]["code"] == FORBIDDEN, ans
    assert len(c.result("auth/list_join_tokens")) == before
    assert state_of(c, "hello") == "running"
    # its ordinary calls still work
    ans = c.result("thief/work", {"method": "system/ping", "params": {}})
    assert ans["result"]["pong"] is True, ans
