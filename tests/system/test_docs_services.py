"""docs/services.md's step-by-step examples work as written: the C service is
built with the documented cc line and the Python one is used as printed, both
installed with a rename, called, and the C one reloaded by a version bump."""
import json
import re
import shutil
import subprocess
from pathlib import Path

from conftest import wait_until
from test_services import services, state_of

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "services.md").read_text()


def block(after, lang):
    """The first ```lang block after the heading/text `after`."""
    i = DOC.index(after)
    m = re.search(r"```" + lang + r"\n(.*?)```", DOC[i:], re.S)
    return re.sub(r"^   ", "", m.group(1), flags=re.M)  # the steps are indented list items


def test_the_c_and_python_examples_of_the_guide(node_factory, tmp_path):
    src = tmp_path / "greeter"
    src.mkdir()
    (src / "greeter.c").write_text(block("## A C service, step by step", "c"))
    manifest = json.loads(block("3. Write `manifest.json` beside it", "json"))
    cc = block("2. Build it against", "sh").strip()
    cc = cc.replace("-I include", f"-I {ROOT / 'include'}")
    subprocess.run(cc, shell=True, cwd=src, check=True)
    (src / "manifest.json").write_text(json.dumps(manifest))
    py = tmp_path / "pygreeter"
    py.mkdir()
    (py / "main.py").write_text(block("## A Python service, step by step", "python"))
    (py / "manifest.json").write_text(block("2. `manifest.json`:", "json"))

    sdir = tmp_path / "services"
    sdir.mkdir()
    shutil.copytree(src, tmp_path / "stage-greeter")
    (tmp_path / "stage-greeter").rename(sdir / "greeter")
    shutil.copytree(py, tmp_path / "stage-py")
    (tmp_path / "stage-py").rename(sdir / "pygreeter")
    n = node_factory.create("docs", extra_args=["--services-directory", sdir])
    wait_until(lambda: state_of(n, "greeter") == "running" and state_of(n, "pygreeter") == "running", 15,
               "the guide's services running")
    assert n.result("greeter/hello", {"name": "ops"}) == "Hello, ops!"
    assert n.result("pygreeter/hello", {"name": "ops"}) == "Hi, ops!"
    assert "p2p_service_greeter_hellos_total 1" in n.get("/metrics?format=prometheus").text
    # step 6: a new version, installed the same way, reloads
    manifest["version"] = "1.0.1"
    manifest["settings"]["greeting"] = "Howdy"
    stage = tmp_path / "stage2"
    shutil.copytree(src, stage)
    (stage / "manifest.json").write_text(json.dumps(manifest))
    (sdir / "greeter").rename(tmp_path / "old-greeter")
    stage.rename(sdir / "greeter")
    wait_until(lambda: services(n)["greeter"]["version"] == "1.0.1", 10, "reloaded")
    assert n.result("greeter/hello", {"name": "ops"}) == "Howdy, ops!"
    # step 7: removal stops it
    shutil.rmtree(sdir / "greeter")
    wait_until(lambda: "greeter" not in services(n), 10, "removed")
