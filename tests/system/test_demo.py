"""`make demo` (scripts/demo.sh): a local cluster of three nodes that rolls hello 1.1.0 out
to both workers, then a broken 1.2.0 that is reverted by itself, and stops cleanly on
SIGTERM (the nodes drained, the temporary directory removed).

The demo runs the repository's build (build/p2p, build/services, build/test-services) on
three consecutive free ports (P2P_DEMO_PORT), in its own process group.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import REPO, T, wait_until

DEMO = REPO / "scripts" / "demo.sh"
BIN = REPO / "build" / "p2p"


def three_free_ports():
    """A port p with p, p+1, p+2 free on 127.0.0.1 (the demo's coordinator and workers)."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p > 65000:
            continue
        ok = True
        for q in (p, p + 1, p + 2):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return p
    pytest.fail("no three consecutive free ports")


def port_free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pids_using(path):
    """PIDs whose command line mentions `path` (the demo's nodes: --data-dir under it)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if path in cmd and st != "Z":
            out.append(int(d))
    return out


@pytest.mark.skipif(not BIN.exists(), reason="build/p2p not built")
def test_demo_deploys_rolls_back_and_stops_on_sigterm(tmp_path):
    port = three_free_ports()
    env = dict(os.environ, P2P_DEMO_PORT=str(port), NO_COLOR="1")
    env.pop("P2P_TOKEN", None)
    errf = open(tmp_path / "demo.stderr", "w")
    proc = subprocess.Popen(["bash", str(DEMO)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errf,
                            text=True, start_new_session=True)
    lines = []

    def reader():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    state_dir = None
    nodes = []
    try:
        text = lambda: "\n".join(lines)
        wait_until(lambda: "demo: deploy and rollback shown" in text() or proc.poll() is not None, T(150),
                   "the demo's deploy and rollback")
        out = text()
        assert proc.poll() is None, f"demo exited ({proc.returncode}):\n{out}\n{(tmp_path / 'demo.stderr').read_text()[-3000:]}"
        m = re.search(r"state in (/tmp/p2p-demo\.\w+)", out)
        assert m, out
        state_dir = m.group(1)
        nodes = pids_using(state_dir + "/")
        assert len(nodes) >= 3, nodes  # coordinator-1, worker-1, worker-2 (and their exec services)
        # the existing summary is still there
        assert "p2p members (on coordinator-1)" in out and "p2p services --all" in out, out
        # 1.1.0: a rollout to both workers, each committed, done
        first, rest = out.split("Deploy: a broken hello 1.2.0", 1)
        assert re.search(r"rollout r\S+: 2 node\(s\)", first), first
        assert "worker-1: committed" in first and "worker-2: committed" in first, first
        assert re.search(r"rollout r\S+: done", first) and "(exit status 0)" in first, first
        # 1.2.0: failed on the workers, reverted, p2p deploy exits 1
        broken, status = rest.split("p2p rollout status:", 1)
        assert re.search(r"worker-\d: failed: reverted: version 1\.2\.0", broken), broken
        assert re.search(r"rollout r\S+: reverted", broken) and "(exit status 1)" in broken, broken
        # rollout status: the reverted rollout and 1.1.0 still the committed version
        assert re.search(r"hello 1\.2\.0, reverted", status), status
        assert re.search(r"hello 1\.1\.0, done", status), status
        assert re.search(r"committed:\s*\n\s*hello\s+1\.1\.0", status), status
        # 1.1.0 runs on both workers, healthy
        svc = status.split("hello now", 1)[1]
        for w in ("worker-1", "worker-2"):
            row = [ln.split() for ln in svc.splitlines() if ln.split()[:2] == [w, "hello"]]
            assert row and row[0][2] == "1.1.0" and row[0][4] == "running" and row[0][6] == "ok", svc
        # SIGTERM to the script (as Ctrl-C would be): it stops every node and removes its directory
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=T(40))
        th.join(timeout=5)
        out = text()
        assert "demo: stopping nodes..." in out and f"demo: stopped, {state_dir} removed" in out, out[-2000:]
        assert not os.path.exists(state_dir)
        wait_until(lambda: not [p for p in nodes if os.path.exists(f"/proc/{p}") and p in pids_using(state_dir)],
                   T(10), "the demo's nodes gone")
        for q in (port, port + 1, port + 2):
            wait_until(lambda: port_free(q), T(10), f"port {q} free")
        err = (tmp_path / "demo.stderr").read_text()
        # each node drained and stopped by itself (no second signal, no kill)
        assert "Killed" not in err, err[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if state_dir:
            for p in pids_using(state_dir + "/"):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        errf.close()


@pytest.mark.skipif(not BIN.exists(), reason="build/p2p not built")
def test_ctrl_c_in_the_middle_of_the_deploy_stops_everything(tmp_path):
    """Ctrl-C (SIGINT to the demo's process group, as a terminal sends it) while `p2p
    deploy` runs: the demo stops there, stops the nodes and removes its directory (it does
    not go on with the rest of the demo, nor recreate files in the removed directory)."""
    port = three_free_ports()
    env = dict(os.environ, P2P_DEMO_PORT=str(port), NO_COLOR="1")
    env.pop("P2P_TOKEN", None)
    errf = open(tmp_path / "demo.stderr", "w")
    proc = subprocess.Popen(["bash", str(DEMO)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errf,
                            text=True, start_new_session=True)
    state_dir = None
    try:
        lines = []
        deadline = time.monotonic() + T(120)
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"state in (/tmp/p2p-demo\.\w+)", line)
            if m:
                state_dir = m.group(1)
            if "Deploy: hello 1.1.0" in line or time.monotonic() > deadline:
                break
        assert state_dir and "Deploy: hello 1.1.0" in lines[-1], "".join(lines)
        nodes = pids_using(state_dir + "/")
        time.sleep(0.5)  # p2p deploy is running now
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stdout.read()
        proc.wait(timeout=T(30))
        assert proc.returncode == 130, proc.returncode
        assert f"demo: stopped, {state_dir} removed" in rest, rest
        assert "Deploy: a broken" not in rest and "rollback shown" not in rest, rest
        assert not os.path.exists(state_dir)
        wait_until(lambda: not [p for p in nodes if p in pids_using(state_dir)], T(10), "the demo's nodes gone")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if state_dir:
            for p in pids_using(state_dir + "/"):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        errf.close()
