"""The admin service (src/builtin/admin.c): processes, config, files under
<state_directory>/files/ and allow-listed commands, for admin tokens only (issue 13).

Attacked as an intruder with an admin token would (path traversal, absolute paths,
symlinks planted under files/ or a symlinked files/ itself, commands outside the
allow-list, shell metacharacters, runaway commands and floods of output) and as a
viewer or a compromised worker would (refused).
"""
import base64
import json
import os
import time

import pytest

from conftest import T, wait_until
from test_cluster import all_alive
from test_enroll import export_identity, mtls_request
from test_exec_services import script_service
from test_services import state_of
from test_tokens import rpc_with

INVALID = -32602


def commands_file(tmp_path):
    f = tmp_path / "admin-commands.json"
    f.write_text(json.dumps({
        "echo": {"argv": ["/bin/echo"], "allow_args": True},
        "hello": {"argv": ["/bin/echo", "hello"]},
        "sleep": ["/bin/sleep", "30"],
        # a child that leaves a grandchild behind holding the pipes
        "spawner": {"argv": ["/bin/sh", "-c", "sleep 60 & echo $! > " + str(tmp_path / "grandchild.pid") + "; sleep 60"]},
        "flood": {"argv": ["/usr/bin/seq", "1", "100000"]},
        "stderr": {"argv": ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]},
        "missing": {"argv": ["/nonexistent/program"]},
        # leaves a process outside its group (own session) holding the pipes for 4 s
        "escaper": {"argv": ["/usr/bin/setsid", "-f", "/bin/sleep", "4"]},
    }))
    return f


@pytest.fixture
def node(node_factory, tmp_path):
    sdir = tmp_path / "services"
    sdir.mkdir()
    n = node_factory.create("adm", extra_args=["--services-directory", sdir, "--services-rescan-interval", "1",
                                               "--admin-commands-file", commands_file(tmp_path),
                                               "--admin-command-timeout", "2",
                                               "--admin-command-output-max", "1024",
                                               "--admin-file-max-bytes", "65536"])
    n.sdir = sdir
    return n


def err_of(node, method, params):
    resp = node.rpc(method, params, timeout=T(20))
    assert "error" in resp, resp
    return resp["error"]


def files_dir(node):
    return node.data_dir / "files"


# ---- processes and config ----

def test_list_processes_shows_the_node_and_its_exec_services(node):
    script_service(node.sdir, "sleeper", '''
        for req in requests():
            if req.get("method") == "initialize":
                send({"id": req["id"], "result": {}})
            else:
                send({"id": req["id"], "result": {"pid": os.getpid()}})
    ''')
    wait_until(lambda: state_of(node, "sleeper") == "running", 15, "sleeper running")
    child = node.result("sleeper/work", {})["pid"]
    procs = node.result("admin/list_processes")["processes"]
    me = [p for p in procs if p["node"]]
    assert len(me) == 1 and me[0]["pid"] == node.pid, procs
    assert me[0]["rss_bytes"] > 1 << 20 and me[0]["cpu_seconds"] >= 0 and me[0]["state"] in "RSD", me
    svc = [p for p in procs if p["pid"] == child]
    assert svc and svc[0]["ppid"] == node.pid and svc[0]["name"].startswith("python"), procs
    # nothing that is not the node's: only the node and its descendants
    pids = {p["pid"] for p in procs}
    assert all(p["ppid"] in pids for p in procs if not p["node"]), procs
    assert os.getpid() not in pids


def test_get_config_masks_secrets_and_logs_the_caller(node_factory, tmp_path):
    n = node_factory.create("cfg", extra_args=["--redis-url", "redis://app:hunter2@127.0.0.1:1/0",
                                               "--join-token", "p2pj_secret_value"])
    cfg = n.result("admin/get_config")["config"]
    assert cfg["node_id"] == "cfg" and cfg["port"] == n.port
    text = json.dumps(cfg)
    assert "hunter2" not in text and "p2pj_secret_value" not in text, text
    assert cfg["join_token"] == "(set)"
    wait_until(lambda: "admin/get_config by" in n.stderr(), 5, "the call logged with its caller")
    line = next(l for l in n.stderr().splitlines() if "admin/get_config by" in l)
    assert "by local" not in line and "by (unknown)" not in line, line


# ---- files ----

def test_write_then_read_files(node):
    r = node.result("admin/write_file", {"path": "conf/app.ini", "content": "a = 1\n"})
    assert r == {"path": "conf/app.ini", "size": 6}
    f = files_dir(node) / "conf" / "app.ini"
    assert f.read_text() == "a = 1\n"
    assert oct(f.stat().st_mode & 0o777) == oct(0o640)
    assert node.result("admin/read_file", {"path": "conf/app.ini"}) == {
        "path": "conf/app.ini", "size": 6, "encoding": "utf-8", "content": "a = 1\n"}
    # binary content goes as base64 both ways
    blob = bytes(range(256)) * 4
    node.result("admin/write_file", {"path": "bin/blob", "content_base64": base64.b64encode(blob).decode(),
                                     "mode": 0o600})
    assert (files_dir(node) / "bin" / "blob").read_bytes() == blob
    assert (files_dir(node) / "bin" / "blob").stat().st_mode & 0o777 == 0o600
    r = node.result("admin/read_file", {"path": "bin/blob"})
    assert r["encoding"] == "base64" and base64.b64decode(r["content"]) == blob
    # overwrite is atomic: no temporary file is left, the inode is replaced
    ino = f.stat().st_ino
    node.result("admin/write_file", {"path": "conf/app.ini", "content": "a = 2\n"})
    assert f.read_text() == "a = 2\n" and f.stat().st_ino != ino
    assert sorted(p.name for p in (files_dir(node) / "conf").iterdir()) == ["app.ini"]
    # the caller is logged
    wait_until(lambda: "admin/write_file 'conf/app.ini' (6 bytes) by" in node.stderr(), 5, "write logged")


def test_file_size_caps_and_bad_params(node):
    e = err_of(node, "admin/write_file", {"path": "big", "content": "x" * 65537})
    assert e["code"] == INVALID and "admin_file_max_bytes" in e["message"], e
    assert not (files_dir(node) / "big").exists()
    (files_dir(node)).mkdir(exist_ok=True)
    (files_dir(node) / "planted-big").write_bytes(b"y" * 65537)
    e = err_of(node, "admin/read_file", {"path": "planted-big"})
    assert "admin_file_max_bytes" in e["message"], e
    for params in ({}, {"path": 1}, {"path": "a", "content": "x", "content_base64": "eA=="},
                   {"path": "a"}, {"path": "a", "content_base64": "not base64!"},
                   {"path": "a", "content": "x", "mode": 0o666}, {"path": "a", "content": "x", "extra": 1}):
        e = err_of(node, "admin/write_file", params)
        assert e["code"] == INVALID, (params, e)
    assert not (files_dir(node) / "a").exists()
    e = err_of(node, "admin/read_file", {"path": "nope"})
    assert "no such file" in e["message"], e


def test_path_traversal_is_refused(node, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("top secret")
    node.result("admin/write_file", {"path": "ok", "content": "fine"})
    fd = files_dir(node)
    # a symlink planted under files/ pointing out, and a symlinked directory
    (fd / "link").symlink_to(secret)
    (fd / "dirlink").symlink_to(outside)
    (fd / "sub").mkdir()
    (fd / "sub" / "up").symlink_to("../..")
    bad = ["../ok", "sub/../../x", "../../../../etc/passwd", "/etc/passwd", str(secret), "", ".", "./ok",
           "sub//ok", "sub/", "link", "dirlink/secret", "sub/up/vault.p2p", "dirlink/new", "a\u0000b"]
    for p in bad:
        e = err_of(node, "admin/read_file", {"path": p})
        assert e["code"] in (INVALID, -32700) or "no such file" in e["message"], (p, e)
        assert "top secret" not in json.dumps(e)
        e = err_of(node, "admin/write_file", {"path": p, "content": "pwned"})
    assert secret.read_text() == "top secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert os.readlink(fd / "link") == str(secret)
    assert not (tmp_path / "x").exists()
    # the vault next to files/ was not touched through sub/up
    assert (node.data_dir / "vault.p2p").exists()
    # files/ itself a symlink to somewhere else: refused both ways
    node.stop()
    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "ok").write_text("elsewhere")
    import shutil
    shutil.rmtree(fd)
    fd.symlink_to(real)
    node.start()
    e = err_of(node, "admin/read_file", {"path": "ok"})
    assert "symlink" in e["message"], e
    e = err_of(node, "admin/write_file", {"path": "new", "content": "x"})
    assert "symlink" in e["message"], e
    assert sorted(p.name for p in real.iterdir()) == ["ok"] and (real / "ok").read_text() == "elsewhere"


# ---- commands ----

def test_allow_listed_commands_run_without_a_shell(node, tmp_path):
    names = [c["name"] for c in node.result("admin/list_commands")["commands"]]
    assert "echo" in names and "hello" in names
    r = node.result("admin/run_command", {"name": "hello"})
    assert r["exit_code"] == 0 and r["stdout"] == "hello\n" and not r["truncated"] and not r["timed_out"], r
    r = node.result("admin/run_command", {"name": "stderr"})
    assert (r["exit_code"], r["stdout"], r["stderr"]) == (3, "out\n", "err\n"), r
    # shell metacharacters are plain bytes in argv
    marker = tmp_path / "pwned"
    args = [f"$(touch {marker})", f"; touch {marker}", f"`touch {marker}`", "|", "&&", "*", "$HOME"]
    r = node.result("admin/run_command", {"name": "echo", "args": args})
    assert r["stdout"] == " ".join(args) + "\n", r
    assert not marker.exists()
    wait_until(lambda: "admin/run_command 'echo' by" in node.stderr(), 5, "the run logged with its caller")


def test_commands_outside_the_allow_list_or_with_args_are_refused(node):
    for params in ({"name": "rm"}, {"name": "/bin/echo"}, {"name": "echo; id"},
                   {"name": "hello", "args": ["extra"]}, {"name": "echo", "args": [1]},
                   {"name": "echo", "args": "x"}, {}, {"name": "echo", "shell": True}):
        e = err_of(node, "admin/run_command", params)
        assert e["code"] == INVALID, (params, e)
    e = err_of(node, "admin/run_command", {"name": "missing"})
    assert "cannot start" in e["message"], e


def test_no_commands_by_default(node_factory):
    n = node_factory.create("plain")
    assert n.result("admin/list_commands")["commands"] == []
    e = err_of(n, "admin/run_command", {"name": "hello"})
    assert "not set" in e["message"], e


def test_a_command_past_its_timeout_is_killed_with_its_children(node, tmp_path):
    t0 = time.monotonic()
    r = node.result("admin/run_command", {"name": "sleep"})
    assert r["timed_out"] and r["signal"] == 9, r
    assert time.monotonic() - t0 < T(8)
    r = node.result("admin/run_command", {"name": "spawner"})
    assert r["timed_out"], r
    gpid = int((tmp_path / "grandchild.pid").read_text())
    wait_until(lambda: not os.path.exists(f"/proc/{gpid}") or
               open(f"/proc/{gpid}/stat").read().split(")")[1].split()[0] == "Z", 5, "grandchild killed")


def test_a_descendant_holding_the_pipes_does_not_hold_the_answer(node):
    t0 = time.monotonic()
    r = node.result("admin/run_command", {"name": "escaper"})
    took = time.monotonic() - t0
    assert r["exit_code"] == 0 and not r["timed_out"], r
    assert took < T(3.5), took  # the program exited at once; its escaped child lives 4 s


def test_output_over_the_cap_is_truncated_and_said_so(node):
    r = node.result("admin/run_command", {"name": "flood"})
    total = sum(len(str(i)) + 1 for i in range(1, 100001))
    assert r["exit_code"] == 0 and r["truncated"], {k: v for k, v in r.items() if k != "stdout"}
    assert len(r["stdout"]) == 1024 and r["stdout"].startswith("1\n2\n3\n")
    assert r["stdout_dropped_bytes"] == total - 1024


def test_a_bad_allow_list_stops_the_node(node_factory, tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps({"x": {"argv": ["relative/prog"]}}))
    n = node_factory.create("bad", start=False, extra_args=["--admin-commands-file", f])
    with pytest.raises(Exception):
        n.start(timeout=5)
    assert "argv[0] must be an absolute path" in n.stderr()


# ---- who may call ----

ADMIN_METHODS = [
    ("admin/list_processes", {}),
    ("admin/get_config", {}),
    ("admin/read_file", {"path": "probe"}),
    ("admin/write_file", {"path": "probe", "content": "pwned"}),
    ("admin/list_commands", {}),
    ("admin/run_command", {"name": "hello"}),
]


def test_viewers_and_node_identities_are_refused(node_factory, tmp_path):
    c = node_factory.create("coord", extra_args=["--admin-commands-file", commands_file(tmp_path)])
    w = node_factory.create("w1", coordinator=False, join=c)
    wait_until(all_alive([c, w], ["coord", "w1"]), 15, "2 nodes alive")
    c.result("admin/write_file", {"path": "probe", "content": "original"})
    viewer = c.new_token(role="viewer")
    crt, key = export_identity(w, tmp_path)
    for method, params in ADMIN_METHODS:
        r = rpc_with(c, viewer, method, params)
        assert r.status == 403, (method, r)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        st, out = mtls_request(c, "POST", "/rpc", crt, key, body=body)
        assert st == 403 and "node identity" in json.loads(out)["error"], (method, st, out)
        # relayed by the worker's own cluster/call
        st, out = mtls_request(w, "POST", "/rpc", crt, key, body=json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "cluster/call",
             "params": {"target": "coord", "method": method, "params": params}}).encode())
        assert st == 200 and "error" in json.loads(out)["result"], (method, out)
    assert (files_dir(c) / "probe").read_text() == "original"
    # an operator's admin token works through the worker
    r = rpc_with(w, c.new_token(), "admin/read_file", {"path": "probe"}, headers={"X-P2P-Node": "coord"})
    assert r.status == 200 and r.json()["result"]["content"] == "original", r
