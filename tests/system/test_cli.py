"""The command line: help/version, `p2p call`, configuration errors and --print-config."""
import json
import re
import signal

import pytest

from conftest import free_port, run_p2p


# ---- help and version -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["version"], ["--help"], ["help"], ["agent", "--help"],
                                  ["call", "--help"]])
def test_help_and_version_exit_0(args):
    cp = run_p2p(*args)
    assert cp.returncode == 0, cp
    assert cp.stdout.strip()


def test_version_output():
    cp = run_p2p("version")
    assert re.search(r"\d+\.\d+\.\d+", cp.stdout), cp.stdout


def test_unknown_command_exits_2():
    cp = run_p2p("frobnicate")
    assert cp.returncode == 2
    assert "frobnicate" in cp.stderr


# ---- p2p call ------------------------------------------------------------------------------------


def call(node, *args, **kw):
    return run_p2p("call", "--addr", node.addr, "--data-dir", node.data_dir, "--token", node.token, *args, **kw)


def test_call_success(node):
    cp = call(node, "system/ping", '{"message":"from cli"}')
    assert cp.returncode == 0, cp.stderr
    res = json.loads(cp.stdout)
    assert res["pong"] is True
    assert res["node_id"] == node.name
    assert res["message"] == "from cli"


def test_call_without_params(node):
    cp = call(node, "system/get_system_info")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["node_id"] == node.name


def test_call_with_ca_flag(node):
    cp = run_p2p("call", "--addr", node.addr, "--ca", node.ca, "--token", node.token, "system/ping")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["pong"] is True


def test_call_rpc_error_exits_1(node):
    cp = call(node, "system/ping", '{"message":5}')
    assert cp.returncode == 1
    assert "error -32602" in cp.stderr, cp.stderr
    assert cp.stdout.strip() == ""


def test_call_unknown_method_exits_1(node):
    cp = call(node, "nope/nothing")
    assert cp.returncode == 1
    assert "error -32601" in cp.stderr, cp.stderr


@pytest.mark.parametrize("params", ["{bad", "3", '"str"'])
def test_call_bad_params_json_exits_2(node, params):
    cp = call(node, "system/ping", params)
    assert cp.returncode == 2, cp
    assert "PARAMS_JSON" in cp.stderr


def test_call_unreachable_exits_1(node):
    port = free_port()
    cp = run_p2p("call", "--addr", f"127.0.0.1:{port}", "--data-dir", node.data_dir,
                 "--timeout", "5", "system/ping", timeout=20)
    assert cp.returncode == 1, cp
    assert cp.stderr.strip()


def test_call_insecure_warns(node):
    cp = run_p2p("call", "--addr", node.addr, "--insecure", "--token", node.token, "system/ping")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["pong"] is True
    assert "insecure" in cp.stderr.lower() and "warn" in cp.stderr.lower(), cp.stderr


def test_call_missing_ca_exits_2(node, tmp_path):
    cp = run_p2p("call", "--addr", node.addr, "--ca", tmp_path / "nope.crt", "system/ping")
    assert cp.returncode == 2, cp
    assert "nope.crt" in cp.stderr


def test_call_data_dir_without_ca_exits_2(node, tmp_path):
    cp = run_p2p("call", "--addr", node.addr, "--data-dir", tmp_path / "empty", "system/ping")
    assert cp.returncode == 2, cp


def test_call_wrong_ca_fails(node, node_factory):
    other = node_factory.create("other-ca")
    cp = run_p2p("call", "--addr", node.addr, "--ca", other.ca, "system/ping")
    assert cp.returncode == 1, cp
    assert cp.stdout.strip() == ""


# ---- configuration errors ---------------------------------------------------------------------


def agent_with_config(tmp_path, text, *extra):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    return cfg, run_p2p("agent", "--config", cfg, "--data-dir", tmp_path / "data", *extra, timeout=15)


@pytest.mark.parametrize("text,line,key", [
    ("node_id: a\nno_such_key: 1\n", 2, "no_such_key"),
    ("node_id: a\nport: abc\n", 2, "port"),
    ("port: 70000\n", 1, "port"),
    ("port: 0\n", 1, "port"),
    ("node_id: a\n\nhttp_max_connections: -5\n", 3, "http_max_connections"),
    ("https_enabled: maybe\n", 1, "https_enabled"),
    ("log_level: loud\n", 1, "log_level"),
])
def test_invalid_config_exits_2_with_file_line_key(tmp_path, text, line, key):
    cfg, cp = agent_with_config(tmp_path, text)
    assert cp.returncode == 2, cp
    assert f"{cfg.name}:{line}: key '{key}'" in cp.stderr, cp.stderr


def test_yaml_syntax_error_exits_2_with_file_line(tmp_path):
    cfg, cp = agent_with_config(tmp_path, "node_id: a\nport: [1\n  x: : \n")
    assert cp.returncode == 2, cp
    assert re.search(re.escape(cfg.name) + r":\d+:", cp.stderr), cp.stderr


def test_missing_config_file_exits_2(tmp_path):
    cp = run_p2p("agent", "--config", tmp_path / "missing.yaml", timeout=15)
    assert cp.returncode == 2, cp
    assert "missing.yaml" in cp.stderr


@pytest.mark.parametrize("args,key", [
    (["--port", "0"], "port"),
    (["--port", "x"], "port"),
    (["--http-max-body-size", "1"], "http"),
    (["--no-such-flag", "1"], "no-such-flag"),
])
def test_invalid_flag_exits_2(tmp_path, args, key):
    cp = run_p2p("agent", "--data-dir", tmp_path / "d", *args, timeout=15)
    assert cp.returncode == 2, cp
    assert key in cp.stderr, cp.stderr


def test_flag_missing_value_exits_2(tmp_path):
    cp = run_p2p("agent", "--port", timeout=15)
    assert cp.returncode == 2, cp


# ---- --print-config ------------------------------------------------------------------------------


def test_print_config(tmp_path):
    cp = run_p2p("agent", "--coordinator", "--node-id", "printed-node", "--port", "18123",
                 "--data-dir", tmp_path / "d", "--http-max-body-size", "4096", "--print-config")
    assert cp.returncode == 0, cp
    out = cp.stdout
    assert re.search(r'^node_id: "?printed-node"?$', out, re.M), out
    assert re.search(r"^port: 18123$", out, re.M), out
    assert re.search(r"^http_max_body_size: 4096$", out, re.M), out
    assert re.search(r"^coordinator_mode: true$", out, re.M), out
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())


def test_print_config_round_trip_and_start(node_factory, tmp_path):
    port = free_port()
    data = tmp_path / "rt-data"
    cp1 = run_p2p("agent", "--coordinator", "--node-id", "roundtrip", "--port", port,
                  "--bind-address", "127.0.0.1", "--data-dir", data, "--http-max-header-size", "4096",
                  "--shutdown-grace-period", "3", "--rate-limit-enabled", "false", "--print-config")
    assert cp1.returncode == 0, cp1
    cfg = tmp_path / "effective.yaml"
    cfg.write_text(cp1.stdout)
    cp2 = run_p2p("agent", "--config", cfg, "--print-config")
    assert cp2.returncode == 0, cp2
    assert cp2.stdout == cp1.stdout
    # the file alone is enough to run the node
    n = node_factory.create("roundtrip", data_dir=data, port=port, argv=["agent", "--config", cfg])
    h = n.get("/health").json()
    assert h["node_id"] == "roundtrip"
    assert h["role"] == "coordinator"
    assert n.get("/health", headers={"X-Pad": "a" * 3000}).status == 200
    assert n.get("/health", headers={"X-Pad": "a" * 5000}).status == 431
    assert n.stop(signal.SIGTERM, timeout=10) == 0


def test_flags_override_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("node_id: from-file\nport: 18001\nlog_level: warn\n")
    cp = run_p2p("agent", "--config", cfg, "--port", "18002", "--print-config")
    assert cp.returncode == 0, cp
    assert re.search(r"^port: 18002$", cp.stdout, re.M)
    assert re.search(r'^node_id: "?from-file"?$', cp.stdout, re.M)
    assert re.search(r'^log_level: "?warn"?$', cp.stdout, re.M)
