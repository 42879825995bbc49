"""`p2p services` across a cluster (issue 10): a coordinator and a worker running
the example services; the client takes its node, CA and token from the
environment, lists one node, another node through it, and the whole cluster, and
acts on a service of the worker."""
import os
import shutil

import pytest

from conftest import run_p2p, wait_until
from test_exec_services import PYHELLO
from test_services import HELLO, services, state_of


@pytest.fixture(scope="module")
def cluster(module_node_factory, tmp_path_factory):
    base = tmp_path_factory.mktemp("svc-cli")
    nodes = []
    for name in ("c1", "w1"):
        sdir = base / f"{name}-services"
        sdir.mkdir()
        shutil.copytree(HELLO, sdir / "hello")
        shutil.copytree(PYHELLO, sdir / "pyhello")
        kw = {} if name == "c1" else {"coordinator": False, "join": nodes[0]}
        n = module_node_factory.create(name, extra_args=["--services-directory", sdir], **kw)
        nodes.append(n)
    for n in nodes:
        wait_until(lambda: state_of(n, "hello") == "running" and state_of(n, "pyhello") == "running", 20,
                   f"services on {n.name}")
    c1, w1 = nodes
    wait_until(lambda: len([m for m in c1.result("system/get_cluster_nodes")["nodes"]
                            if m["status"] == "alive"]) == 2, 20, "both alive")
    return c1, w1


def env_for(node):
    env = dict(os.environ)
    env.update(P2P_ADDR=node.addr, P2P_DATA_DIR=str(node.data_dir), P2P_TOKEN=node.token)
    env.pop("P2P_CA", None)
    return env


def test_list_one_node_from_the_environment(cluster):
    c1, _ = cluster
    cp = run_p2p("services", env=env_for(c1))
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0].split()[:5] == ["NODE", "SERVICE", "VERSION", "TYPE", "STATE"]
    rows = {l.split()[1]: l.split() for l in lines[1:]}
    assert rows["hello"][:5] == ["c1", "hello", "1.0.0", "native", "running"]
    assert rows["pyhello"][:5] == ["c1", "pyhello", "1.0.0", "exec", "running"]


def test_list_the_whole_cluster_and_another_node(cluster):
    c1, w1 = cluster
    cp = run_p2p("services", "--all", env=env_for(c1))
    assert cp.returncode == 0, cp.stderr
    seen = {(l.split()[0], l.split()[1]) for l in cp.stdout.splitlines()[1:]}
    assert {("c1", "hello"), ("c1", "pyhello"), ("w1", "hello"), ("w1", "pyhello")} <= seen
    cp = run_p2p("services", "list", "--node", "w1", env=env_for(c1))
    assert cp.returncode == 0, cp.stderr
    assert all(l.split()[0] == "w1" for l in cp.stdout.splitlines()[1:])


def test_act_on_a_worker_s_service_through_the_coordinator(cluster):
    c1, w1 = cluster
    cp = run_p2p("services", "stop", "pyhello", "--node", "w1", env=env_for(c1))
    assert cp.returncode == 0, cp.stderr
    assert "pyhello 1.0.0: stopped" in cp.stdout
    assert state_of(w1, "pyhello") == "stopped"
    assert state_of(c1, "pyhello") == "running"  # only the worker's
    cp = run_p2p("services", "start", "pyhello", "--node", "w1", env=env_for(c1))
    assert cp.returncode == 0 and "running" in cp.stdout, cp.stderr
    cp = run_p2p("services", "restart", "hello", "--node", "w1", env=env_for(c1))
    assert cp.returncode == 0 and "running" in cp.stdout, cp.stderr
    assert services(w1)["hello"]["restarts"] == 1
    # a native service calls another node; an exec service too
    assert c1.result("hello/ping_node", {"target": "w1"})["node_id"] == "w1"
    assert c1.result("pyhello/ping_node", {"target": "w1"})["answer"]["node_id"] == "w1"


def test_usage_errors_and_a_viewer_cannot_act(cluster):
    c1, _ = cluster
    assert run_p2p("services", "frobnicate", env=env_for(c1)).returncode == 2
    assert run_p2p("services", "stop", env=env_for(c1)).returncode == 2
    assert run_p2p("services", "stop", "hello", "--all", env=env_for(c1)).returncode == 2
    env = env_for(c1)
    env["P2P_TOKEN"] = c1.new_token(role="viewer")
    cp = run_p2p("services", "stop", "hello", env=env)
    assert cp.returncode == 1
    assert state_of(c1, "hello") == "running"
    assert run_p2p("services", env=env).returncode == 0  # a viewer may list
