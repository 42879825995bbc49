"""system/get_config and system/update_config: read the effective config, change
whitelisted keys at run time, all or nothing, persisted in the vault."""
import json

from conftest import T


def rpc(node, method, params=None, token=None):
    body = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    r = node.request("POST", "/rpc", body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json",
                              "Authorization": "Bearer " + (token or node.token)}, auth=False)
    return r


def test_get_config_shows_the_effective_config(node_factory):
    n = node_factory.create("cfg", extra_args=["--join-token", "p2pj_secret-value"])
    res = n.result("system/get_config")
    cfg = res["config"]
    assert cfg["node_id"] == "cfg" and cfg["port"] == n.port and cfg["coordinator_mode"] is True
    assert cfg["join_token"] == "(set)", "a secret was shown"
    assert "p2pj_secret-value" not in json.dumps(res)
    assert "log_level" in res["updatable"] and "port" not in res["updatable"]
    assert res["overrides"] == {}


def test_update_config_applies_and_persists(node_factory):
    n = node_factory.create("upd")
    res = n.result("system/update_config", {"log_level": "debug", "jwt_ttl": 3600})
    assert res == {"updated": {"log_level": "debug", "jwt_ttl": 3600}, "persisted": True}
    cfg = n.result("system/get_config")["config"]
    assert cfg["log_level"] == "debug" and cfg["jwt_ttl"] == 3600
    # debug lines appear now, and new tokens get the new lifetime
    tok = n.new_token()
    assert n.stop() == 0
    n.start()
    got = n.result("system/get_config")
    assert got["config"]["log_level"] == "debug", "the change did not survive a restart"
    assert got["overrides"] == {"jwt_ttl": 3600, "log_level": "debug"}
    assert "log_level = debug (set by system/update_config" in n.stderr()
    assert tok


def test_update_config_refuses_and_changes_nothing(node_factory):
    n = node_factory.create("bad")
    before = n.result("system/get_config")["config"]
    for params, needle in [
        ({"port": 9999}, "'port' cannot be changed at run time"),
        ({"log_level": "debug", "rate_limit_rpc_burst": -3}, "rate_limit_rpc_burst"),
        ({"gossip_interval_min": 40}, "gossip_interval"),     # above gossip_interval_max (30)
        ({"log_level": ["debug"]}, "string, a number or a boolean"),
        ({}, "expected"),
        (["log_level", "debug"], "expected"),
    ]:
        resp = rpc(n, "system/update_config", params).json()
        assert resp["error"]["code"] == -32602, (params, resp)
        assert needle in resp["error"]["message"], (params, resp)
    assert n.result("system/get_config")["config"] == before
    assert n.result("system/get_config")["overrides"] == {}


def test_update_config_changes_the_rate_limiter(node_factory):
    n = node_factory.create("rl")
    n.result("system/update_config", {"rate_limit_enabled": True, "rate_limit_rpc_requests": 60,
                                      "rate_limit_rpc_burst": 2})
    statuses = [rpc(n, "system/ping").status for _ in range(5)]
    assert statuses[:2] == [200, 200] and 429 in statuses, statuses


def test_viewer_cannot_update_config(node_factory):
    n = node_factory.create("view")
    viewer = n.new_token(role="viewer")
    assert rpc(n, "system/get_config", token=viewer).status == 200
    r = rpc(n, "system/update_config", {"log_level": "debug"}, token=viewer)
    assert r.status == 403, r
    assert n.result("system/get_config")["config"]["log_level"] == "info"
