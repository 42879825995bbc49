"""The dashboard in a real browser (issue 12): Debian's chromium, headless, driven by
playwright-core (web/node_modules) through tests/browser/dashboard.mjs, against a real
coordinator and two workers started here (the system tests' harness), each with the
example `hello` service. One browser run covers every step; each test below asserts
one step of it. Screenshots go to build/browser-artifacts/.

Run: P2P_BIN=$PWD/build/p2p /usr/bin/python3 -m pytest -q tests/browser
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "system"))
from conftest import NodeFactory, P2P_BIN, T, run_p2p  # noqa: E402

ARTIFACTS = REPO / "build" / "browser-artifacts"
CHROMIUM = os.environ.get("P2P_CHROMIUM", "/usr/bin/chromium")
HELLO = Path(P2P_BIN).resolve().parent / "services" / "hello"
PLAYWRIGHT = REPO / "web" / "node_modules" / "playwright-core"


def install_hello(services_dir):
    dest = services_dir / "hello"
    dest.mkdir(parents=True)
    shutil.copy(HELLO / "service.so", dest / "service.so")
    shutil.copy(HELLO / "manifest.json", dest / "manifest.json")


def roll_hello_out(c, base):
    """hello 1.1.0 rolled out to both workers (p2p deploy DIR --target all:worker), for the
    Services tab's Rollouts panel: {id, version}."""
    src = base / "hello-1.1.0"
    src.mkdir()
    shutil.copy(HELLO / "service.so", src / "service.so")
    m = json.loads((HELLO / "manifest.json").read_text())
    m["version"] = "1.1.0"
    (src / "manifest.json").write_text(json.dumps(m))
    env = dict(os.environ, P2P_ADDR=c.addr, P2P_DATA_DIR=str(c.data_dir), P2P_TOKEN=c.token)
    env.pop("P2P_CA", None)
    cp = run_p2p("deploy", str(src), "--target", "all:worker", "--max-parallel", "2", "--min-healthy-time", "1",
                 env=env, timeout=T(90))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    rid = re.search(r"rollout (\S+): done", cp.stdout)
    assert rid, cp.stdout
    return {"id": rid.group(1), "version": "1.1.0"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Starts the cluster, runs the browser once, returns its results."""
    missing = [str(p) for p in (Path(CHROMIUM), PLAYWRIGHT, HELLO / "service.so") if not p.exists()]
    if missing:
        pytest.fail(f"missing {missing}: run `make deps` and `make build`")
    base = tmp_path_factory.mktemp("browser")
    f = NodeFactory(base)
    try:
        dirs = {}
        for n in ("coord", "w1", "w2"):
            dirs[n] = base / f"{n}-services"
            install_hello(dirs[n])
        c = f.create("coord", extra_args=["--services-directory", dirs["coord"]])
        jt = c.create_join_token(uses=2)
        ws = [f.create(n, coordinator=False, join=c, join_token=jt,
                       extra_args=["--services-directory", dirs[n]]) for n in ("w1", "w2")]
        viewer = c.new_token(role="viewer")
        rollout = roll_hello_out(c, base)
        cfg = {
            "url": c.url, "ca": str(c.ca), "adminKey": c.admin_key, "adminToken": c.token,
            "viewerToken": viewer, "coordinator": c.name,
            "workers": [{"name": w.name, "pid": w.pid, "url": w.url} for w in ws],
            "logWorker": "w1", "killWorker": "w2", "service": {"node": "w1", "name": "hello"},
            "rollout": rollout,
            "artifacts": str(ARTIFACTS), "chromium": CHROMIUM,
            "stepTimeout": int(T(30) * 1000),
        }
        cfg_path = base / "browser.json"
        cfg_path.write_text(json.dumps(cfg))
        try:
            cp = subprocess.run(["node", str(REPO / "tests" / "browser" / "dashboard.mjs"), str(cfg_path)],
                                capture_output=True, text=True, timeout=T(300), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"the browser run did not finish in {T(300)} s; stderr:\n{e.stderr}")
        line = next((x for x in cp.stdout.splitlines() if x.startswith("RESULTS ")), None)
        if line is None:
            pytest.fail(f"the browser run printed no results (exit {cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        res = json.loads(line[len("RESULTS "):])
        res["log"] = cp.stderr
        (ARTIFACTS / "results.json").write_text(json.dumps(res, indent=1))
        res["viewer"] = viewer
        res["coord"] = c
        yield res
    finally:
        f.teardown()


def check(run, name):
    s = run["steps"].get(name)
    assert s is not None, f"step {name!r} did not run:\n{run['log']}"
    assert s["ok"], f"{name}: {s.get('error')}"


def test_page_loads_with_security_headers(run):
    check(run, "page loads with its security headers")


def test_login_and_every_node_on_the_overview(run):
    check(run, "log in with the admin API key and see every node on the Overview")


def test_workers_tab(run):
    check(run, "Workers tab: a node with fields and history charts")


def test_services_tab(run):
    check(run, "Services tab: every node's services with state and health")


def test_rollouts_panel(run):
    check(run, "Services tab: the Rollouts panel shows a rollout with each node's state")
    row = run["figures"]["rollout_row"]
    assert "w1: committed" in row and "w2: committed" in row, row


def test_service_control_from_the_page(run):
    check(run, "restart, stop and start a service from the page and see its state change")


def test_log_line_within_one_second(run):
    check(run, "Logs tab: a line logged on a worker appears within 1 s")


def test_older_log_lines_on_scroll(run):
    check(run, "Logs tab: older lines load when scrolled to the top")


def test_log_filter_pause_resume(run):
    check(run, "Logs tab: filter, pause and resume")


def test_socket_drop_and_resume(run):
    check(run, "the socket drops and resumes: lines logged meanwhile arrive")


def test_certificates_tab(run):
    check(run, "Certificates tab: the CA and every node")


def test_sigkill_turns_dead_on_the_open_page(run):
    check(run, "SIGKILL a worker: it turns dead on the open page")


def test_phone_viewport(run):
    check(run, "phone-sized viewport: the Overview fits")


def test_viewer_sees_no_controls(run):
    check(run, "a viewer sees no control buttons")


def test_viewer_is_refused_by_the_api(run):
    c = run["coord"]
    body = json.dumps({"worker_id": "w1", "service_name": "hello", "action": "stop"}).encode()
    r = c.request("POST", "/api/dashboard/control-service", body=body,
                  headers={"Content-Type": "application/json", "Authorization": "Bearer " + run["viewer"]})
    assert r.status == 403, r


def test_wrong_token_refused(run):
    check(run, "a wrong token is refused at login")


def test_no_console_errors(run):
    check(run, "no console errors")


def test_screenshots_saved(run):
    for n in ("overview", "workers", "services", "logs", "certificates"):
        p = ARTIFACTS / f"{n}.png"
        assert p.exists() and p.stat().st_size > 5000, p
