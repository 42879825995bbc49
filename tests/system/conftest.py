"""System-test harness for p2pcore: real `p2p agent` processes on 127.0.0.1.

Environment:
  P2P_BIN          the node binary (default: <repo>/build/p2p)
  P2P_SANITIZED=1  the binary is an ASan/UBSan build: every timeout is multiplied by 3 and
                   every node's stderr (and every CLI run's) is checked for sanitizer reports.

Every wait is bounded; every node started is stopped (SIGTERM, then SIGKILL by PID) and
reaped in teardown. A node's stderr goes to a file which is attached to the report of any
failing test that used the node.
"""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
P2P_BIN = os.environ.get("P2P_BIN") or str(REPO / "build" / "p2p")
SANITIZED = bool(os.environ.get("P2P_SANITIZED"))
SCALE = 3.0 if SANITIZED else 1.0

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

# Not under test here, and the suite makes far more requests per minute from one client
# than the default limits allow; keep the suite independent of rate limiting.
VAULT_PASSWORD = "system-test-vault-password"
DEFAULT_EXTRA = ["--rate-limit-enabled", "false",
                 # bounds teardown; tests that need another value pass the flag again (last wins)
                 "--shutdown-grace-period", "3"]


def T(seconds):
    """A timeout, scaled for sanitizer builds."""
    return seconds * SCALE


def wait_until(pred, timeout, what, step=0.1):
    """Polls pred() until it returns something true (returned), for T(timeout) seconds;
    then fails the test naming `what` and the last value seen."""
    deadline = time.monotonic() + T(timeout)
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {T(timeout)}s waiting for {what} (last: {last!r})")


def sanitizer_report(text):
    """`text` if it contains a sanitizer report, else ''."""
    if not any(m in text for m in SANITIZER_MARKERS):
        return ""
    return text


def close_with_reset(sock):
    """Closes a socket with a TCP RST instead of a FIN (SO_LINGER 0), as a client that
    crashes or closes with unread data does."""
    import struct
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _xdist_index():
    """0, 1, ... for pytest-xdist workers gw0, gw1, ...; None when not under xdist."""
    w = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(w[2:]) if w.startswith("gw") and w[2:].isdigit() else None


def free_port():
    """A port free for TCP and UDP on 127.0.0.1 (a node uses both). Under pytest-xdist
    each worker draws from its own range below the kernel's ephemeral range, so two
    workers never hand out the same port and no client connection's source port takes
    it in the meantime."""
    idx = _xdist_index()
    if idx is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    import random
    lo = 12000 + (idx % 8) * 2500
    for _ in range(200):
        port = random.randrange(lo, lo + 2500)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no free port in {lo}..{lo + 2500}")


def run_p2p(*args, timeout=10, check_sanitizer=True, cwd=None, env=None):
    """Runs the p2p binary to completion (bounded) and returns the CompletedProcess."""
    try:
        cp = subprocess.run([P2P_BIN, *map(str, args)], capture_output=True, text=True,
                            timeout=T(timeout), cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"p2p {' '.join(map(str, args))} did not finish within {T(timeout)}s; "
                    f"stderr so far:\n{e.stderr}")
    if check_sanitizer and sanitizer_report(cp.stderr):
        pytest.fail(f"sanitizer report from p2p {' '.join(map(str, args))}:\n{cp.stderr}")
    return cp


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive .get)
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class NodeStartError(Exception):
    pass


class Node:
    # nodes not yet torn down; their stderr is attached to failing test reports
    live = []

    def __init__(self, workdir, name="node", coordinator=True, extra_args=(), config=None,
                 data_dir=None, port=None, argv=None, join=None, join_token=None,
                 netns=None, host="127.0.0.1", bind_address=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.coordinator = coordinator
        self.extra_args = list(DEFAULT_EXTRA) + [str(a) for a in extra_args]
        self.config = config
        self.data_dir = Path(data_dir) if data_dir else self.workdir / f"{name}-data"
        self.fixed_port = port
        # argv: run exactly `p2p <argv>` (e.g. only --config FILE); needs `port` and `data_dir`
        self.argv = [str(a) for a in argv] if argv is not None else None
        # join: the coordinator Node a worker enrolls with (a fresh join token is made
        # for its first start unless join_token is given)
        self.join = join
        self.join_token = join_token
        # netns: run inside this network namespace (`ip netns exec`, see netns.py); host:
        # the address the test process uses to reach the node (URLs, TLS name, `addr`);
        # bind_address: --bind-address (default: host)
        self.netns = netns
        self.host = host
        self.bind_address = bind_address or host
        self.port = None
        self.proc = None
        self.returncode = None
        self.admin_key_path = self.workdir / f"{name}.admin-key"
        self._token = None
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.stdout_path = self.workdir / f"{name}.stdout.log"
        self._stderr_f = None
        self._stdout_f = None

    # -- process ----------------------------------------------------------------
    def command(self):
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        if self.argv is not None:
            return prefix + [P2P_BIN] + self.argv
        cmd = prefix + [P2P_BIN, "agent"]
        if self.config:
            cmd += ["--config", str(self.config)]
        if self.coordinator:
            cmd.append("--coordinator")
        cmd += ["--node-id", self.name, "--port", str(self.port), "--bind-address", self.bind_address,
                "--data-dir", str(self.data_dir), "--admin-api-key-file", str(self.admin_key_path)]
        if self.join is not None:
            cmd += ["--coordinator-addresses", self.join.addr]
        return cmd + self.extra_args

    def start(self, timeout=15):
        """Starts the node and waits until GET /health answers 200. Retries on another
        port if the chosen one was taken in the meantime."""
        attempts = 1 if self.fixed_port else 3
        for attempt in range(attempts):
            self.port = self.fixed_port or free_port()
            self._spawn()
            try:
                self.wait_healthy(timeout)
                if self not in Node.live:
                    Node.live.append(self)
                return self
            except NodeStartError:
                err = self.stderr()
                if self.proc.poll() is not None and "in use" in err and attempt + 1 < attempts:
                    continue
                self.kill()
                raise
        raise AssertionError("unreachable")

    def _spawn(self):
        self._close_files()
        self._stderr_f = open(self.stderr_path, "ab")
        self._stdout_f = open(self.stdout_path, "ab")
        self.returncode = None
        env = dict(os.environ)
        env.setdefault("P2P_VAULT_PASSWORD", VAULT_PASSWORD)
        if self.join is not None and not (self.data_dir / "vault.p2p").exists():
            env["P2P_JOIN_TOKEN"] = self.join_token or self.join.create_join_token()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._stdout_f, stderr=self._stderr_f,
                                     cwd=str(self.workdir), env=env)
        if self not in Node.live:
            Node.live.append(self)

    def wait_healthy(self, timeout=15):
        deadline = time.monotonic() + T(timeout)
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeStartError(f"node {self.name} exited with {self.proc.returncode} "
                                     f"during start-up; stderr:\n{self.stderr()}")
            if self.ca.exists():
                try:
                    r = self.get("/health", timeout=T(1))
                    if r.status == 200:
                        return
                    last = r
                except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                    last = e
            time.sleep(0.05)
        raise NodeStartError(f"node {self.name} not healthy within {T(timeout)}s (last: {last!r}); "
                             f"stderr:\n{self.stderr()}")

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Waits (bounded) for the process to exit; returns its status or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=T(timeout))
            return self.returncode
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Sends `sig` and returns the exit status, or None if it did not exit in time
        (the process is then left running; teardown kills it)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.wait(timeout)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def teardown(self, grace=15):
        """Stops the node gracefully (so LeakSanitizer gets to run), kills it if it
        does not exit in time, and fails if a sanitizer reported anything."""
        try:
            if self.running():
                self.stop(signal.SIGTERM, timeout=grace)
        finally:
            self.kill()
            if self in Node.live:
                Node.live.remove(self)
        report = sanitizer_report(self.stderr())
        if report:
            pytest.fail(f"sanitizer report in the stderr of node {self.name}:\n{report}",
                        pytrace=False)

    def _close_files(self):
        for f in (self._stderr_f, self._stdout_f):
            if f is not None:
                f.close()
        self._stderr_f = self._stdout_f = None

    def stderr(self):
        try:
            return self.stderr_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, needle, timeout=5):
        deadline = time.monotonic() + T(timeout)
        while time.monotonic() < deadline:
            if needle in self.stderr():
                return True
            time.sleep(0.05)
        return False

    # -- TLS / HTTP ---------------------------------------------------------------
    @property
    def ca(self):
        return self.data_dir / "certs" / "ca.crt"

    @property
    def _host_port(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self):
        return f"https://{self._host_port}"

    @property
    def addr(self):
        return self._host_port

    def ssl_context(self, alpn=None):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.check_hostname = True
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def tls_socket(self, timeout=5, alpn=None, ctx=None):
        """A raw TLS connection (handshake done) to the node."""
        ctx = ctx or self.ssl_context(alpn)
        raw = socket.create_connection((self.host, self.port), timeout=T(timeout))
        try:
            return ctx.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise

    def connection(self, timeout=10):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ssl_context(),
                                           timeout=T(timeout))

    # -- credentials ------------------------------------------------------------
    @property
    def admin_key(self):
        return self.admin_key_path.read_text().strip()

    def new_token(self, role=None, ttl=None):
        """A fresh JWT from POST /auth/token with the admin API key."""
        body = {"api_key": self.admin_key}
        if role:
            body["role"] = role
        if ttl:
            body["ttl"] = ttl
        r = self.request("POST", "/auth/token", body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"}, auth=False)
        assert r.status == 200, r
        return r.json()["token"]

    @property
    def token(self):
        """An admin token, obtained once per node (a worker's from its coordinator:
        enrolled nodes share the cluster's JWT secret)."""
        if self._token is None:
            self._token = self.join.new_token() if self.join is not None else self.new_token()
        return self._token

    def create_join_token(self, ttl=600, uses=1):
        """A join token (with its CA pin) from this coordinator."""
        resp = self.rpc("auth/create_join_token", {"ttl": ttl, "uses": uses})
        assert "result" in resp, resp
        return resp["result"]["token"]

    def auth_line(self):
        """The Authorization header line, for hand-written raw requests."""
        return b"Authorization: Bearer " + self.token.encode() + b"\r\n"

    def request(self, method, path, body=None, headers=None, timeout=10, auth=True):
        """One request on a new connection. With `auth`, an admin token is sent unless
        `headers` carries its own Authorization."""
        headers = dict(headers or {})
        if auth and path != "/health" and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = "Bearer " + self.token
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path, headers=None, timeout=10, auth=True):
        return self.request("GET", path, headers=headers, timeout=timeout, auth=auth)

    def post_raw(self, body, headers=None, path="/rpc", timeout=10, auth=True):
        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"}
        if headers is not None:
            h = headers
        return self.request("POST", path, body=body, headers=h, timeout=timeout, auth=auth)

    def rpc_raw(self, payload, timeout=10):
        """POSTs `payload` (JSON-serialised) to /rpc; returns the Response."""
        return self.post_raw(json.dumps(payload), timeout=timeout)

    def rpc(self, method, params=None, id=1, timeout=10):
        """Calls one method; returns the whole JSON-RPC response object."""
        req = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            req["params"] = params
        r = self.rpc_raw(req, timeout=timeout)
        assert r.status == 200, r
        return r.json()

    def result(self, method, params=None):
        """Calls one method and returns its result (asserting there is no error)."""
        resp = self.rpc(method, params)
        assert "error" not in resp, resp
        return resp["result"]

    def metrics(self):
        r = self.get("/metrics")
        assert r.status == 200, r
        return r.json()

    def __repr__(self):
        return f"<Node {self.name} port={self.port} pid={self.proc.pid if self.proc else None}>"


# ---- pytest plumbing ---------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for node in list(Node.live):
            text = node.stderr()
            lines = text.splitlines()
            if len(lines) > 200:
                text = "\n".join(["[... %d earlier lines ...]" % (len(lines) - 200)] + lines[-200:])
            rep.sections.append((f"stderr of node {node.name} (pid {node.proc.pid if node.proc else '-'}, "
                                 f"{node.stderr_path})", text))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "timing: a long test of timing behaviour (loss, partitions, key retirement); the sanitizer "
        "run (make test-sanitize) leaves these out: the normal run has them, and they exercise no code the "
        "others do not")


def pytest_sessionstart(session):
    if not os.access(P2P_BIN, os.X_OK):
        raise pytest.UsageError(f"P2P_BIN={P2P_BIN} is not an executable; build it with `make build`")


class NodeFactory:
    """Starts nodes for one test (or module) and tears all of them down afterwards."""

    def __init__(self, base):
        self.base = Path(base)
        self.nodes = []
        self.count = 0

    def create(self, name=None, start=True, **kw):
        self.count += 1
        name = name or f"n{self.count}"
        node = Node(self.base / name, name=name, **kw)
        self.nodes.append(node)
        if start:
            node.start()
        return node

    __call__ = create

    def teardown(self):
        errors = []
        for node in self.nodes:
            try:
                node.teardown()
            except BaseException as e:  # keep tearing the others down
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def node_factory(tmp_path):
    f = NodeFactory(tmp_path)
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def module_node_factory(tmp_path_factory, request):
    f = NodeFactory(tmp_path_factory.mktemp(request.module.__name__.split(".")[-1]))
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def node(module_node_factory):
    """One coordinator shared by the tests of a module (tests must not disturb it)."""
    return module_node_factory.create("shared")
