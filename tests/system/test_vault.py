"""`p2p vault` end to end: init/put/get/list/rm/export/passwd, the clear failures (wrong
password, a flipped bit, truncation, a foreign file: exit 2, file untouched), password
sources (file mode, environment, a terminal prompt without echo), and `kill -9` during
repeated saves: the vault always opens and holds the old or the new value.

Every CLI call derives the key (PBKDF2, 600000 iterations, ~0.3 s), so the number of
calls is kept small; with P2P_SANITIZED set the kill loop is shorter. Helpers live in
this file (not in conftest.py). Where python3-cryptography is available the kill test
also decrypts each file state itself, which checks docs/vault.md's format independently.

Environment: P2P_BIN (default <repo>/build/p2p), P2P_SANITIZED=1 for ASan/UBSan builds.
"""
import hashlib
import json
import os
import pty
import random
import select
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
P2P_BIN = os.environ.get("P2P_BIN") or str(REPO / "build" / "p2p")
SANITIZED = bool(os.environ.get("P2P_SANITIZED"))
SCALE = 3.0 if SANITIZED else 1.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
PASSWORD = "correct horse battery staple"

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # the kill test then checks through the CLI only
    AESGCM = None


def base_env(password=PASSWORD, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2P_VAULT_")}
    if password is not None:
        env["P2P_VAULT_PASSWORD"] = password
    env.update(extra)
    return env


def vault(*args, password=PASSWORD, input=None, env=None, cwd=None, timeout=30):
    """Runs `p2p vault ARGS` to completion (bounded); returns the CompletedProcess (bytes)."""
    try:
        cp = subprocess.run([P2P_BIN, "vault", *map(str, args)], capture_output=True,
                            input=input, env=env or base_env(password), cwd=cwd,
                            timeout=timeout * SCALE,
                            stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"p2p vault {' '.join(map(str, args))} did not finish in {timeout * SCALE}s: {e.stderr}")
    err = cp.stderr.decode(errors="replace")
    if any(m in err for m in SANITIZER_MARKERS):
        pytest.fail(f"sanitizer report from p2p vault {' '.join(map(str, args))}:\n{err}")
    cp.err = err
    return cp


def ok(cp):
    assert cp.returncode == 0, f"exit {cp.returncode}: {cp.err}"
    return cp


@pytest.fixture
def vdir(tmp_path):
    """A data directory with an initialized vault; returns (dir, vault file)."""
    d = tmp_path / "node"
    ok(vault("init", "--data-dir", d))
    return d, d / "vault.p2p"


def parse_file(data):
    """Header fields of a vault file, per docs/vault.md."""
    magic, version, kdf, iterations = struct.unpack(">8sHHI", data[:16])
    return {"magic": magic, "version": version, "kdf": kdf, "iterations": iterations,
            "salt": data[16:32], "nonce": data[32:44], "header": data[:44], "sealed": data[44:]}


def decrypt(data, key):
    h = parse_file(data)
    return json.loads(AESGCM(key).decrypt(h["nonce"], h["sealed"], h["header"]))


def no_temp_files(d):
    return [p.name for p in d.iterdir() if p.name != "vault.p2p"]


# ---- help, usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["put", "--help"], ["passwd", "--help"],
                                  ["export", "-h"]])
def test_help_exits_0(args):
    cp = ok(vault(*args, password=None))
    assert b"usage: p2p vault" in cp.stdout


@pytest.mark.parametrize("args,needle", [
    ([], "usage"),
    (["frob"], "unknown command"),
    (["get", "--data-dir", "x"], "NS/NAME is missing"),
    (["get", "secrets/x", "--data-dir", "x"], "not NS/NAME"),
    (["list", "--bogus"], "unknown option"),
    (["list", "--data-dir", "a", "--file", "b"], "not both"),
    (["get", "data/x", "--value", "v", "--data-dir", "x"], "options of put"),
])
def test_usage_errors_exit_2(args, needle, tmp_path):
    cp = vault(*args, cwd=tmp_path)
    assert cp.returncode == 2, cp.err
    assert needle in cp.err


def test_no_location_exit_2(tmp_path):
    cp = vault("list", cwd=tmp_path)
    assert cp.returncode == 2
    assert "--data-dir" in cp.err


def test_default_data_dir(tmp_path):
    (tmp_path / "data" / "coordinator").mkdir(parents=True)
    ok(vault("init", cwd=tmp_path))
    assert (tmp_path / "data" / "coordinator" / "vault.p2p").is_file()


# ---- end to end ----------------------------------------------------------------------------


def test_end_to_end(vdir, tmp_path):
    d, f = vdir
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    h = parse_file(f.read_bytes())
    assert (h["magic"], h["version"], h["kdf"], h["iterations"]) == (b"P2PVAULT", 1, 1, 600000)

    binary = bytes(range(256)) * 3
    (tmp_path / "blob").write_bytes(binary)
    ok(vault("put", "config/greeting", "--value", "hello, wörld", "--data-dir", d))
    ok(vault("put", "keys/node.key", "--from-file", tmp_path / "blob", "--data-dir", d))
    ok(vault("put", "certificates/ca.crt", "--data-dir", d, input=b"-----BEGIN CERT-----\nSTDIN-MARKER\n"))
    ok(vault("put", "data/gone", "--value", "x", "--file", f))

    listing = ok(vault("list", "--data-dir", d)).stdout.decode().split()
    assert listing == ["certificates/ca.crt", "keys/node.key", "config/greeting", "data/gone"]
    assert ok(vault("list", "keys", "--data-dir", d)).stdout == b"keys/node.key\n"

    assert ok(vault("get", "config/greeting", "--data-dir", d)).stdout == "hello, wörld".encode()
    assert ok(vault("get", "keys/node.key", "--data-dir", d)).stdout == binary
    assert ok(vault("get", "certificates/ca.crt", "--data-dir", d)).stdout.endswith(b"STDIN-MARKER\n")

    ok(vault("rm", "data/gone", "--data-dir", d))
    cp = vault("rm", "data/gone", "--data-dir", d)
    assert cp.returncode == 1 and "no entry data/gone" in cp.err
    cp = vault("get", "data/gone", "--data-dir", d)
    assert cp.returncode == 1 and cp.stdout == b""

    cp = ok(vault("export", "--data-dir", d))
    assert "plaintext" in cp.err
    doc = json.loads(cp.stdout)
    assert doc["version"] == 1
    assert set(doc["entries"]) == {"certificates", "keys", "config", "data"}
    assert doc["entries"]["config"]["greeting"]["value"] == "hello, wörld"
    assert doc["entries"]["keys"]["node.key"]["encoding"] == "base64"
    assert doc["entries"]["data"] == {}
    assert doc["entries"]["config"]["greeting"]["updated_at"] > 1.6e12

    raw = f.read_bytes()
    for secret in (b"STDIN-MARKER", "wörld".encode(), b"entries", binary[:32]):
        assert secret not in raw
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert no_temp_files(d) == []


def test_init_refuses_to_overwrite(vdir):
    d, f = vdir
    before = f.read_bytes()
    cp = vault("init", "--data-dir", d)
    assert cp.returncode == 1 and "already exists" in cp.err
    assert f.read_bytes() == before


def test_passwd(vdir, tmp_path):
    d, f = vdir
    ok(vault("put", "data/k", "--value", "kept", "--data-dir", d))
    salt = parse_file(f.read_bytes())["salt"]
    ok(vault("passwd", "--data-dir", d, env=base_env(P2P_VAULT_NEW_PASSWORD="second")))
    assert parse_file(f.read_bytes())["salt"] != salt
    cp = vault("get", "data/k", "--data-dir", d)
    assert cp.returncode == 2 and "wrong password or corrupted file" in cp.err
    assert ok(vault("get", "data/k", "--data-dir", d, password="second")).stdout == b"kept"

    new = tmp_path / "newpw"
    new.write_text("third\n")
    new.chmod(0o600)
    ok(vault("passwd", "--data-dir", d, "--new-password-file", new, password="second"))
    assert ok(vault("get", "data/k", "--data-dir", d, password="third")).stdout == b"kept"


# ---- failures: exit 2, clear message, file untouched -----------------------------------------


def test_wrong_password(vdir):
    d, f = vdir
    before, mtime = f.read_bytes(), f.stat().st_mtime_ns
    cp = vault("put", "data/x", "--value", "y", "--data-dir", d, password="not it")
    assert cp.returncode == 2
    assert "wrong password or corrupted file" in cp.err
    assert f.read_bytes() == before and f.stat().st_mtime_ns == mtime
    assert no_temp_files(d) == []


@pytest.mark.parametrize("where", ["salt", "nonce", "ciphertext", "tag"])
def test_flipped_bit(vdir, where):
    d, f = vdir
    data = bytearray(f.read_bytes())
    off = {"salt": 20, "nonce": 40, "ciphertext": (44 + len(data) - 16) // 2, "tag": len(data) - 1}[where]
    data[off] ^= 0x04
    f.write_bytes(bytes(data))
    cp = vault("list", "--data-dir", d)
    assert cp.returncode == 2
    assert "wrong password or corrupted file" in cp.err
    assert f.read_bytes() == bytes(data)


@pytest.mark.parametrize("keep,needle", [(0, "truncated"), (30, "truncated"), (50, "truncated"),
                                         (-1, "wrong password or corrupted file")])
def test_truncated(vdir, keep, needle):
    d, f = vdir
    data = f.read_bytes()[:keep]
    f.write_bytes(data)
    cp = vault("list", "--data-dir", d)
    assert cp.returncode == 2, cp.err
    assert needle in cp.err
    assert f.read_bytes() == data


def test_foreign_and_future_files(vdir):
    d, f = vdir
    good = f.read_bytes()
    f.write_bytes(b"port: 8001\n")
    cp = vault("list", "--data-dir", d)
    assert cp.returncode == 2 and "not a p2p vault" in cp.err
    f.write_bytes(good[:8] + b"\x00\x02" + good[10:])
    cp = vault("list", "--data-dir", d)
    assert cp.returncode == 2 and "unsupported vault version 2" in cp.err
    f.write_bytes(good[:12] + struct.pack(">I", 50000) + good[16:])
    cp = vault("list", "--data-dir", d)
    assert cp.returncode == 2 and "fewer than the minimum" in cp.err


def test_missing_vault_exit_1(tmp_path):
    cp = vault("list", "--data-dir", tmp_path)
    assert cp.returncode == 1
    assert "no vault at" in cp.err and "p2p vault init" in cp.err


# ---- password sources ----------------------------------------------------------------------


def test_password_file_mode(vdir, tmp_path):
    d, _ = vdir
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\nsecond line ignored\n")
    for mode in (0o644, 0o640, 0o604):
        pw.chmod(mode)
        cp = vault("list", "--data-dir", d, "--password-file", pw, password=None)
        assert cp.returncode == 2
        assert "chmod 600" in cp.err and f"{mode:04o}" in cp.err
    pw.chmod(0o600)
    ok(vault("list", "--data-dir", d, "--password-file", pw, password="ignored: the file wins"))


def test_no_password_exit_2(vdir):
    d, _ = vdir
    cp = vault("list", "--data-dir", d, password=None)
    assert cp.returncode == 2
    assert "P2P_VAULT_PASSWORD" in cp.err and "--password-file" in cp.err


def run_on_terminal(args, lines, timeout=30):
    """Runs p2p with a pseudo-terminal as stdin/stdout, typing `lines` at each prompt.
    Returns (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        env = base_env(None)
        try:
            os.execve(P2P_BIN, [P2P_BIN, *map(str, args)], env)
        finally:
            os._exit(127)
    shown, pending, deadline = b"", list(lines), time.monotonic() + timeout * SCALE
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
                if pending and shown.rstrip().endswith(b":"):
                    os.write(fd, pending.pop(0).encode() + b"\n")
                    shown += b"<typed>"
        else:
            pytest.fail(f"p2p {args} on a terminal did not finish; it showed {shown!r}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown


def test_prompt_on_terminal(tmp_path):
    d = tmp_path / "node"
    code, shown = run_on_terminal(["vault", "init", "--data-dir", d], ["typed secret", "typed secret"])
    assert code == 0, shown
    assert b"Repeat" in shown
    assert b"typed secret" not in shown  # echo was off
    assert ok(vault("list", "--data-dir", d, password="typed secret")).stdout == b""

    code, shown = run_on_terminal(["vault", "init", "--data-dir", tmp_path / "other"], ["one", "two"])
    assert code == 2 and b"differ" in shown
    assert not (tmp_path / "other" / "vault.p2p").exists()


# ---- concurrency and crashes ---------------------------------------------------------------


def test_concurrent_puts_all_kept(vdir):
    d, _ = vdir
    procs = [subprocess.Popen([P2P_BIN, "vault", "put", f"data/n{i}", "--value", str(i), "--data-dir", str(d)],
                              env=base_env(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=30 * SCALE)
        assert p.returncode == 0, err
    listing = ok(vault("list", "data", "--data-dir", d)).stdout.decode().split()
    assert listing == [f"data/n{i}" for i in range(4)]


def test_kill_9_during_saves(vdir):
    """Puts killed with SIGKILL at random moments: the vault always opens and holds
    either the value before the put or the put's value, never anything else."""
    d, f = vdir
    seed = int(os.environ.get("P2P_VAULT_KILL_SEED", time.time_ns() % 100000))
    rng = random.Random(seed)
    print(f"kill seed {seed}")

    t0 = time.monotonic()
    ok(vault("put", "data/counter", "--value", "v0", "--data-dir", d))
    duration = time.monotonic() - t0  # one put: mostly the key derivation, then the save
    key = None
    if AESGCM is not None:
        h = parse_file(f.read_bytes())
        key = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), h["salt"], h["iterations"], 32)

    committed = "v0"
    iterations = 10 if SANITIZED else 40
    outcomes = {"old": 0, "new": 0}
    for i in range(1, iterations + 1):
        new = f"v{i}"
        p = subprocess.Popen([P2P_BIN, "vault", "put", "data/counter", "--value", new, "--data-dir", str(d)],
                             env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        # most kills near the end, where the temp file is written, synced and renamed
        time.sleep(rng.uniform(0.5, 1.15) * duration)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10 * SCALE)
        if key is not None:
            value = decrypt(f.read_bytes(), key)["entries"]["data"]["counter"]["value"]
        elif i % 8 == 0 or i == iterations:
            value = ok(vault("get", "data/counter", "--data-dir", d)).stdout.decode()
        else:
            continue
        assert value in (committed, new), f"after kill {i}: {value!r}, expected {committed!r} or {new!r}"
        outcomes["old" if value == committed else "new"] += 1
        committed = value
    stale = [p.name for p in d.iterdir() if p.name != "vault.p2p"]
    print(f"kill outcomes: {outcomes}; stale temp files: {len(stale)}")

    # the CLI agrees, stale temp files hold no plaintext, and the vault still takes writes
    assert ok(vault("get", "data/counter", "--data-dir", d)).stdout.decode() == committed
    for p in d.iterdir():
        assert b"counter" not in p.read_bytes()
    ok(vault("put", "data/after", "--value", "fine", "--data-dir", d))
    listing = ok(vault("list", "data", "--data-dir", d)).stdout.decode().split()
    assert listing == ["data/after", "data/counter"]
