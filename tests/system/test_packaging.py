"""`make install` and `make deb` (issue 13, "Packaging the node for operators").

The .deb is built by the real target, read back with dpkg-deb -I/-c, installed into a
throwaway root with `dpkg --root` (then upgraded with a changed conffile, removed and
purged), and its systemd unit is checked by `systemd-analyze verify` and scored by
`systemd-analyze security --offline`. `make install` into a DESTDIR lays the unit out
for its PREFIX. No test touches this machine's systemd or /etc.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "StateDirectory": "p2p/%i", "CapabilityBoundingSet": "", "SystemCallFilter": "@system-service",
    "Restart": "on-failure", "DynamicUser": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "LoadCredential": "vault-password:/etc/p2p/%i.vault-password",
}


def run(*cmd, **kw):
    kw.setdefault("timeout", 60)
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert cp.returncode == 0, f"{cmd}: {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp.stdout


def project_version():
    m = re.search(r"project\(p2pcore VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())
    return m.group(1)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if not shutil.which("dpkg-deb") or not shutil.which("dpkg-shlibdeps"):
        pytest.skip("dpkg-deb/dpkg-shlibdeps missing (scripts/install-deps.sh installs dpkg-dev)")
    out = tmp_path_factory.mktemp("dist")
    # the Makefile's target, built into a throwaway folder (the script is what `make deb` runs)
    text = run("make", "-s", "-C", REPO, "deb", timeout=300)
    made = Path(text.strip().splitlines()[-1])
    assert made.parent == REPO / "dist" and made.exists(), text
    target = out / made.name
    shutil.copy(made, target)
    return target


def unit_settings(text):
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def test_deb_metadata_and_contents(deb):
    arch = run("dpkg", "--print-architecture").strip()
    assert deb.name == f"p2pcore_{project_version()}_{arch}.deb"
    info = run("dpkg-deb", "-f", deb)
    fields = dict(l.split(": ", 1) for l in info.splitlines() if ": " in l and not l.startswith(" "))
    assert fields["Package"] == "p2pcore" and fields["Version"] == project_version()
    # dependencies come from the binary's libraries
    deps = fields["Depends"]
    for lib in ("libc6", "libssl3", "libuv1", "libjansson4", "libh2o", "libyaml-0-2", "libnghttp2-14"):
        assert lib in deps, deps
    assert "libcurl" not in deps and "gnutls" not in deps, deps
    files = run("dpkg-deb", "-c", deb)
    listed = {l.split()[-1].lstrip(".") for l in files.splitlines()}
    for f in ("/usr/bin/p2p", "/lib/systemd/system/p2p@.service", "/etc/p2p/worker.yaml",
              "/etc/p2p/coordinator.yaml", "/usr/share/doc/p2pcore/deploy.md",
              "/usr/share/doc/p2pcore/copyright", "/usr/share/doc/p2pcore/configuration.md"):
        assert f in listed, (f, files)
    # owned by root, the binary executable, nothing setuid
    for l in files.splitlines():
        perms, owner = l.split()[:2]
        assert owner == "root/root", l
        assert "s" not in perms, l
    assert any(l.startswith("-rwxr-xr-x") and l.endswith("./usr/bin/p2p") for l in files.splitlines())
    # control files: the conffiles, maintainer scripts that create nothing
    ctl = Path(str(deb) + ".control")
    run("dpkg-deb", "-e", deb, ctl)
    assert (ctl / "conffiles").read_text().split() == ["/etc/p2p/coordinator.yaml", "/etc/p2p/worker.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        text = (ctl / script).read_text()
        for bad in ("useradd", "adduser", "mkdir", "chown", "chmod", "install ", "> /"):
            assert bad not in text, (script, bad)


def test_the_unit_verifies_and_is_hardened(deb, tmp_path):
    root = tmp_path / "x"
    run("dpkg-deb", "-x", deb, root)
    text = (root / "lib/systemd/system/p2p@.service").read_text()
    s = unit_settings(text)
    for k, v in HARDENING.items():
        assert s.get(k) == v, (k, s.get(k))
    assert s["ExecStart"] == ("/usr/bin/p2p agent --config /etc/p2p/%i.yaml --data-dir %S/p2p/%i "
                              "--password-file %d/vault-password")
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian 12's systemd package has it: "
                    "scripts/install-deps.sh)")
    # verify the instance p2p@worker; ExecStart must exist here, so point it at the extracted binary
    udir = tmp_path / "units"
    udir.mkdir()
    (udir / "p2p@.service").write_text(text.replace("/usr/bin/p2p", str(root / "usr/bin/p2p")))
    cp = subprocess.run(["systemd-analyze", "verify", str(udir / "p2p@worker.service")],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and "p2p@" not in cp.stderr, cp.stderr
    cp = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(udir / "p2p@worker.service")],
                        capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for p2p@worker.service: ([0-9.]+)", cp.stdout)
    assert m, cp.stdout + cp.stderr
    assert float(m.group(1)) <= 2.5, cp.stdout
    # and verify does catch a broken unit (so the check above means something)
    (udir / "p2p@.service").write_text(text.replace("/usr/bin/p2p", str(root / "usr/bin/nope")))
    cp = subprocess.run(["systemd-analyze", "verify", str(udir / "p2p@worker.service")],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0 and "nope" in cp.stderr, cp.stderr


def dpkg_root(root, *args):
    return run("dpkg", "--root", root, "--force-depends", "--force-script-chrootless", "--force-not-root",
               "--force-confold", "--log", root / "dpkg.log", *args, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def test_install_upgrade_remove_purge_in_a_throwaway_root(deb, tmp_path):
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    dpkg_root(root, "-i", deb)
    p2p = root / "usr/bin/p2p"
    assert os.access(p2p, os.X_OK)
    assert project_version() in run(p2p, "version")
    # the example configs are valid configs for the installed binary
    for name in ("worker", "coordinator"):
        run(p2p, "agent", "--config", root / f"etc/p2p/{name}.yaml", "--print-config")
    status = run("dpkg-query", "--admindir", root / "var/lib/dpkg", "-s", "p2pcore")
    assert "install ok installed" in status and "/etc/p2p/worker.yaml" in status, status
    assert "/lib/systemd/system/p2p@.service" in run("dpkg-query", "--admindir", root / "var/lib/dpkg", "-L", "p2pcore")
    # the package made nothing else: every file in the root is the package's or dpkg's
    owned = set(run("dpkg-query", "--admindir", root / "var/lib/dpkg", "-L", "p2pcore").split())
    for f in root.rglob("*"):
        rel = "/" + str(f.relative_to(root))
        if f.is_file() and not rel.startswith("/var/lib/dpkg") and rel != "/dpkg.log":
            assert rel in owned, rel
    # an operator's change to a conffile survives a reinstall (upgrade path)
    conf = root / "etc/p2p/worker.yaml"
    conf.write_text(conf.read_text().replace('node_id: "worker-1"', 'node_id: "edited"'))
    dpkg_root(root, "-i", deb)
    assert 'node_id: "edited"' in conf.read_text()
    # remove keeps the conffiles, purge takes them
    dpkg_root(root, "-r", "p2pcore")
    assert not p2p.exists() and not (root / "lib/systemd/system/p2p@.service").exists()
    assert conf.exists()
    dpkg_root(root, "-P", "p2pcore")
    assert not conf.exists()


def test_make_install_lays_out_the_unit_for_its_prefix(tmp_path):
    dest = tmp_path / "dest"
    run("make", "-s", "-C", REPO, "install", f"DESTDIR={dest}", "PREFIX=/opt/p2p", timeout=300)
    unit = dest / "opt/p2p/lib/systemd/system/p2p@.service"
    s = unit_settings(unit.read_text())
    assert s["ExecStart"].startswith("/opt/p2p/bin/p2p agent --config /etc/p2p/%i.yaml")
    assert "@" not in s["ExecStart"].replace("p2p@", "")
    assert os.access(dest / "opt/p2p/bin/p2p", os.X_OK)
    assert (dest / "opt/p2p/share/p2pcore/examples/worker.yaml").exists()
    assert (dest / "opt/p2p/share/doc/p2pcore/deploy.md").exists()
    # nothing outside the prefix (no /etc written by make install)
    assert sorted(p.name for p in dest.iterdir()) == ["opt"]


def test_the_unit_command_line_starts_a_coordinator_and_a_worker(deb, tmp_path, node_factory):
    """What systemd runs: ExecStart's arguments with the packaged example configs, the
    vault password from a credential file (0400, as systemd makes it), the join token
    from the environment file. Ports, addresses and the admin key file are changed to
    fit this machine; the rest is the example as shipped."""
    from conftest import wait_until
    root = tmp_path / "x"
    run("dpkg-deb", "-x", deb, root)
    creds = tmp_path / "creds"
    creds.mkdir()
    pw = creds / "vault-password"
    pw.write_text("a long vault password\n")
    pw.chmod(0o400)

    def unit_argv(name, data, *flags):
        # ExecStart's arguments, then flags that fit this machine (flags win over the file)
        return [str(a) for a in ["agent", "--config", root / f"etc/p2p/{name}.yaml", "--data-dir", data,
                                 "--password-file", pw, "--bind-address", "127.0.0.1", *flags]]

    from conftest import free_port
    cport, wport = free_port(), free_port()
    c = node_factory.create("coordinator", start=False, port=cport, data_dir=tmp_path / "cdata")
    c.argv = unit_argv("coordinator", c.data_dir, "--port", cport, "--admin-api-key-file", c.admin_key_path,
                       "--rate-limit-enabled", "false")
    c.start()
    assert c.result("system/ping")["node_id"] == "coord-1"
    w = node_factory.create("worker", start=False, port=wport, data_dir=tmp_path / "wdata", join=c)
    w.argv = unit_argv("worker", w.data_dir, "--port", wport, "--coordinator-addresses", c.addr)
    w.start()  # P2P_JOIN_TOKEN in the environment, as EnvironmentFile= gives it
    wait_until(lambda: {m["node_id"]: m["status"] for m in c.result("system/get_cluster_nodes")["nodes"]}
               .get("worker-1") == "alive", 15, "the worker joined")
    assert w.result("system/ping")["node_id"] == "worker-1"
