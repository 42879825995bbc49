"""JSON-RPC 2.0 at POST /rpc: the built-in methods and the protocol edge cases."""
import json

import pytest

PING = {"jsonrpc": "2.0", "method": "system/ping"}


def req(method="system/ping", id=1, **kw):
    d = {"jsonrpc": "2.0", "method": method, "id": id}
    d.update(kw)
    return d


def assert_error(resp, code, id=None):
    assert "error" in resp, resp
    assert "result" not in resp, resp
    assert resp["jsonrpc"] == "2.0"
    assert resp["error"]["code"] == code, resp
    assert isinstance(resp["error"]["message"], str) and resp["error"]["message"]
    assert resp["id"] == id, resp


# ---- methods ------------------------------------------------------------------------------


def test_ping(node):
    resp = node.rpc("system/ping", id=1)
    assert resp["jsonrpc"] == "2.0"
    assert resp["id"] == 1
    res = resp["result"]
    assert res["pong"] is True
    assert res["node_id"] == node.name
    assert isinstance(res["time"], (int, float)) and res["time"] > 1.6e9
    assert "message" not in res


def test_ping_echoes_message(node):
    res = node.result("system/ping", {"message": "héllo \"world\"\n"})
    assert res["message"] == "héllo \"world\"\n"


def test_ping_empty_params(node):
    assert node.result("system/ping", {})["pong"] is True


@pytest.mark.parametrize("bad", [1, True, None, ["x"], {"a": 1}])
def test_ping_non_string_message_invalid_params(node, bad):
    resp = node.rpc("system/ping", {"message": bad}, id=9)
    assert_error(resp, -32602, id=9)


def test_get_system_info(node):
    info = node.result("system/get_system_info")
    for key in ("hostname", "os", "kernel", "cpu_count", "memory_total_bytes", "disks",
                "interfaces", "node_id", "role", "version"):
        assert key in info, key
    assert info["node_id"] == node.name
    assert info["role"] == "coordinator"
    assert isinstance(info["cpu_count"], int) and info["cpu_count"] >= 1
    assert isinstance(info["memory_total_bytes"], int) and info["memory_total_bytes"] > 0
    assert isinstance(info["disks"], list)
    assert isinstance(info["interfaces"], list)
    assert info["version"] == node.get("/health").json()["version"]
    assert info["port"] == node.port


def test_get_system_info_rejects_params(node):
    resp = node.rpc("system/get_system_info", {"unexpected": 1}, id="x")
    assert_error(resp, -32602, id="x")


def test_get_system_metrics(node):
    m = node.result("system/get_system_metrics")
    for key in ("cpu_percent", "memory_percent", "load_1m", "rss_bytes", "disks"):
        assert key in m, key
    # null until the node has taken its second CPU sample (a few seconds after start)
    assert m["cpu_percent"] is None or 0 <= m["cpu_percent"] <= 100
    assert 0 <= m["memory_percent"] <= 100
    assert m["rss_bytes"] > 0
    assert isinstance(m["disks"], list)


def test_list_services(node):
    res = node.result("system/list_services")
    # {name: {description, status, methods, ...}}
    assert isinstance(res, dict), res
    assert res["system"]["status"] == "running"
    assert "ping" in res["system"]["methods"]


def test_list_methods(node):
    res = node.result("system/list_methods")
    text = json.dumps(res)
    for m in ("system/ping", "system/get_system_info", "system/get_system_metrics",
              "system/list_services", "system/list_methods"):
        assert m in text, m


def test_list_methods_shape(node):
    res = node.result("system/list_methods")
    assert isinstance(res, list)
    by_name = {m["method"]: m for m in res}
    ping = by_name["system/ping"]
    assert ping["service"] == "system"
    for key in ("description", "params", "readonly", "public"):
        assert key in ping, key


def test_list_methods_for_service(node):
    res = node.result("system/list_methods", {"service": "system"})
    assert "system/ping" in [m["method"] for m in res]
    assert all(m["service"] == "system" for m in res)


def test_list_methods_for_unknown_service_is_empty(node):
    assert node.result("system/list_methods", {"service": "no-such-service"}) == []


def test_list_methods_bad_service_type(node):
    assert_error(node.rpc("system/list_methods", {"service": 3}, id=4), -32602, id=4)


def test_unknown_method(node):
    assert_error(node.rpc("nope/nothing", id=5), -32601, id=5)
    assert_error(node.rpc("system/no_such_method", id=6), -32601, id=6)


# ---- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("id", ["abc", "", 0, 7, -3, 12345678901, 1.5, None])
def test_id_echoed(node, id):
    r = node.rpc_raw(req(id=id))
    assert r.status == 200
    resp = r.json()
    assert resp["id"] == id and type(resp["id"]) is type(id), resp
    assert resp["result"]["pong"] is True


@pytest.mark.parametrize("bad_id", [{"a": 1}, [1], True])
def test_invalid_id_type(node, bad_id):
    r = node.rpc_raw(req(id=bad_id))
    assert r.status == 200
    assert_error(r.json(), -32600, id=None)


# ---- request validity -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{bad", b'{"jsonrpc":"2.0","method":', b"", b"\xff\xfe", b"nul"])
def test_parse_error(node, body):
    r = node.post_raw(body)
    assert r.status == 200, r
    assert_error(r.json(), -32700, id=None)


def test_jsonrpc_1_0_rejected(node):
    r = node.rpc_raw({"jsonrpc": "1.0", "method": "system/ping", "id": 1})
    resp = r.json()
    assert resp["error"]["code"] == -32600
    assert resp["id"] in (1, None)


def test_legacy_shape_without_jsonrpc_accepted(node):
    r = node.rpc_raw({"method": "system/ping", "params": {"message": "old"}, "id": 77})
    assert r.status == 200
    resp = r.json()
    assert resp["id"] == 77
    assert resp["result"]["pong"] is True
    assert resp["result"]["message"] == "old"


def test_legacy_shape_with_null_params_accepted(node):
    r = node.rpc_raw({"method": "system/ping", "params": None, "id": "legacy"})
    resp = r.json()
    assert resp["id"] == "legacy"
    assert resp["result"]["pong"] is True


@pytest.mark.parametrize("body", [
    {"jsonrpc": "2.0", "id": 1},                      # no method
    {"jsonrpc": "2.0", "method": 5, "id": 1},          # method not a string
    {"jsonrpc": "2.0", "method": "system/ping", "params": "x", "id": 1},  # params not structured
])
def test_invalid_request(node, body):
    resp = node.rpc_raw(body).json()
    assert resp["error"]["code"] == -32600, resp


@pytest.mark.parametrize("body", [b"1", b'"x"', b"null", b"true"])
def test_non_object_request(node, body):
    resp = node.post_raw(body).json()
    assert_error(resp, -32600, id=None)


# ---- notifications and batches ----------------------------------------------------------------


def test_notification_204_empty(node):
    r = node.rpc_raw(dict(PING))
    assert r.status == 204
    assert r.body == b""


def test_notification_of_unknown_method_204(node):
    r = node.rpc_raw({"jsonrpc": "2.0", "method": "nope/nothing"})
    assert r.status == 204
    assert r.body == b""


def test_batch_in_order_without_notifications(node):
    batch = [
        req(id="first", params={"message": "a"}),
        dict(PING, params={"message": "notify"}),          # notification: no response
        req("system/get_system_info", id=2),
        req("nope/nothing", id=3),
        req(id=4, params={"message": 1}),
        req(id=5, params={"message": "e"}),
    ]
    r = node.rpc_raw(batch)
    assert r.status == 200
    out = r.json()
    assert isinstance(out, list)
    assert [o["id"] for o in out] == ["first", 2, 3, 4, 5]
    assert out[0]["result"]["message"] == "a"
    assert out[1]["result"]["node_id"] == node.name
    assert out[2]["error"]["code"] == -32601
    assert out[3]["error"]["code"] == -32602
    assert out[4]["result"]["message"] == "e"


def test_batch_of_one(node):
    out = node.rpc_raw([req(id=11)]).json()
    assert isinstance(out, list) and len(out) == 1
    assert out[0]["id"] == 11


def test_all_notification_batch_204(node):
    r = node.rpc_raw([dict(PING), dict(PING, params={"message": "x"})])
    assert r.status == 204
    assert r.body == b""


def test_empty_batch(node):
    r = node.post_raw(b"[]")
    assert r.status == 200
    resp = r.json()
    assert isinstance(resp, dict), resp       # a single error, not an array
    assert_error(resp, -32600, id=None)


def test_batch_of_non_objects(node):
    out = node.post_raw(b"[1,2]").json()
    assert isinstance(out, list) and len(out) == 2
    for o in out:
        assert_error(o, -32600, id=None)


def test_batch_mixed_valid_and_invalid(node):
    out = node.post_raw(b'[{"jsonrpc":"2.0","method":"system/ping","id":1}, 7, {"jsonrpc":"1.0","method":"x","id":2}]').json()
    assert len(out) == 3
    assert out[0]["result"]["pong"] is True and out[0]["id"] == 1
    assert out[1]["error"]["code"] == -32600
    assert out[2]["error"]["code"] == -32600


def test_batch_parse_error(node):
    r = node.post_raw(b'[{"jsonrpc":"2.0","method":"system/ping","id":1}, {"jsonrpc"')
    assert_error(r.json(), -32700, id=None)


def test_batch_of_1000_accepted(node):
    batch = [req(id=i) for i in range(1000)]
    r = node.rpc_raw(batch, timeout=30)
    assert r.status == 200
    out = r.json()
    assert [o["id"] for o in out] == list(range(1000))
    assert all(o["result"]["pong"] is True for o in out)


def test_batch_over_1000_rejected(node):
    batch = [req(id=i) for i in range(1001)]
    r = node.rpc_raw(batch, timeout=30)
    assert r.status == 200
    resp = r.json()
    assert isinstance(resp, dict), str(resp)[:300]
    assert_error(resp, -32600, id=None)


def test_node_still_healthy_after_protocol_abuse(node):
    assert node.get("/health").json()["status"] == "healthy"
