"""Authentication, authorization and rate limiting: the security promises a user relies on.

  - every route of the node's table refuses anonymous callers (401 + WWW-Authenticate),
    except the open ones (GET /health, GET /internal/ca-cert) and those that check their own
    credential (POST /auth/token, POST /internal/cert-request); the table is the one the
    components registered, read from the node (GET /routes, admin only), so a route added
    later is walked without editing this file, and the literal below must match it;
  - bearer tokens: only ES256 tokens signed with the coordinator's key (and naming its key
    id), with valid claims, unexpired and not revoked, are accepted; HS256 and the other
    algorithms (alg confusion with the public key as an HMAC secret, none) are refused;
  - roles: admin may do everything, viewer only reads;
  - POST /auth/token and POST /auth/revoke, revocation surviving a restart;
  - per-identity rate limits with Retry-After;
  - the `p2p token` / `p2p call` command line;
  - the admin API key is shown once and never stored in clear text in the data directory.

Some tests sign tokens with the coordinator's own signing key, read from its vault with
`p2p vault get keys/jwt_signing_key` (the operator's tool, with the vault password): that is the
only way to build an expired, not-yet-valid or oddly-claimed token that is otherwise valid,
and it proves that the tokens this file crafts are well formed (a control token signed the
same way is accepted), so the refusals are refusals of the property under test.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import time

import pytest

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import P2P_BIN, REPO, T, VAULT_PASSWORD, run_p2p, sanitizer_report

# ---- the node's routes ------------------------------------------------------------------------

# (method, path, match, auth class): what the node's components register (GET /routes lists
# them); the specific expectations below are written per route of this list.
ROUTES = [
    ("GET", "/health", "exact", "open"),
    ("POST", "/rpc", "exact", "any"),
    ("GET", "/services", "exact", "any"),
    ("GET", "/services/", "prefix", "any"),
    ("GET", "/metrics", "exact", "any"),
    ("GET", "/metrics/", "prefix", "any"),
    ("GET", "/routes", "exact", "admin"),
    ("POST", "/auth/token", "exact", "self"),
    ("POST", "/auth/revoke", "exact", "admin"),
    ("GET", "/internal/ca-cert", "exact", "open"),
    ("POST", "/internal/cert-request", "exact", "self"),
    ("POST", "/internal/cert-renew", "exact", "node"),
    ("GET", "/cluster/nodes", "exact", "any"),
    ("POST", "/internal/gossip/exchange", "exact", "node"),
    ("POST", "/internal/gossip/join", "exact", "node"),
    ("POST", "/internal/revoke", "exact", "node"),
    ("GET", "/internal/revocations", "exact", "node"),
    ("GET", "/internal/jwt-keys", "exact", "node"),
    ("GET", "/api/logs", "exact", "any"),
    ("DELETE", "/api/logs", "exact", "admin"),
    ("GET", "/api/logs/sources", "exact", "any"),
    ("GET", "/api/dashboard/metrics", "exact", "any"),
    ("GET", "/api/dashboard/history/", "prefix", "any"),
    ("GET", "/api/dashboard/stats", "exact", "any"),
    ("GET", "/api/dashboard/services", "exact", "any"),
    ("GET", "/api/dashboard/certificates", "exact", "any"),
    ("GET", "/api/dashboard/rollouts", "exact", "any"),
    ("POST", "/api/dashboard/control-service", "exact", "admin"),
    ("GET", "/ws/dashboard", "exact", "self"),
    ("POST", "/deploy/packages", "exact", "admin"),
    ("GET", "/deploy/packages/", "prefix", "node"),
    ("GET", "/dashboard", "exact", "open"),
    ("GET", "/dashboard/", "exact", "open"),
    ("GET", "/dashboard/static/", "prefix", "open"),
]
# the suffix used to call a prefix route
PREFIX_SAMPLE = "system"
PROTECTED = ("any", "admin", "node")


def registered_routes(node):
    """(method, path, match, auth) of every route in the node's table (GET /routes)."""
    r = node.request("GET", "/routes", headers=bearer(node.token), auth=False)
    assert r.status == 200, r
    return [(e["method"], e["path"], e["match"], e["auth"]) for e in r.json()["routes"]]


def route_path(path, match):
    return path + PREFIX_SAMPLE if match == "prefix" else path


def route_id(r):
    return f"{r[0]} {r[1]}"


# ---- JWT helpers -------------------------------------------------------------------------------


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(seg):
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))


def jwt_parts(token):
    h, p, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), s


def sign(header, payload, secret, digest=hashlib.sha256):
    """A compact JWT with an HMAC signature (`secret` bytes) over header.payload."""
    h = header if isinstance(header, str) else b64u(json.dumps(header, separators=(",", ":")))
    p = payload if isinstance(payload, str) else b64u(json.dumps(payload, separators=(",", ":")))
    mac = hmac.new(secret, f"{h}.{p}".encode(), digest).digest()
    return f"{h}.{p}.{b64u(mac)}"


HS256 = {"alg": "HS256", "typ": "JWT"}


def es256(header, payload, key):
    """A compact JWT signed with an EC P-256 private key (JWS form: r || s)."""
    h = header if isinstance(header, str) else b64u(json.dumps(header, separators=(",", ":")))
    p = payload if isinstance(payload, str) else b64u(json.dumps(payload, separators=(",", ":")))
    r, s_ = decode_dss_signature(key.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{h}.{p}.{b64u(r.to_bytes(32, 'big') + s_.to_bytes(32, 'big'))}"


class SigningKey:
    """The coordinator's signing key and its key id, to sign tokens with."""

    def __init__(self, pem):
        self.pem = pem
        self.key = serialization.load_pem_private_key(pem, None)
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(der).hexdigest()[:32]
        self.public_pem = self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def header(self):
        return {"alg": "ES256", "kid": self.kid, "typ": "JWT"}

    def sign(self, payload, header=None):
        return es256(header or self.header, payload, self.key)


def claims(**over):
    now = int(time.time())
    c = {"sub": "admin", "role": "admin", "iat": now, "exp": now + 3600, "jti": secrets.token_hex(16)}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def bearer(token):
    return {"Authorization": "Bearer " + token}


def clean_env(**extra):
    """The environment for a CLI run, without credentials inherited from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("P2P_TOKEN", "P2P_API_KEY", "P2P_ADDR", "P2P_VAULT_PASSWORD")}
    env.update(extra)
    return env


def vault_password():
    return os.environ.get("P2P_VAULT_PASSWORD") or VAULT_PASSWORD


def vault_get(node, name, check=True):
    """An entry of the node's vault, read with the operator's CLI (None when absent)."""
    try:
        cp = subprocess.run([P2P_BIN, "vault", "get", name, "--data-dir", str(node.data_dir)],
                            capture_output=True, timeout=T(20), stdin=subprocess.DEVNULL,
                            env=clean_env(P2P_VAULT_PASSWORD=vault_password()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"p2p vault get {name} did not finish in time")
    err = cp.stderr.decode("utf-8", "replace")
    assert not sanitizer_report(err), err
    if not check and cp.returncode != 0:
        return None
    assert cp.returncode == 0, err
    return cp.stdout


def jwt_secret(node):
    """The coordinator's token signing key (PEM), read from its vault with the operator's CLI."""
    pem = vault_get(node, "keys/jwt_signing_key")
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----"), pem[:40]
    return pem


def rpc_body(method="system/ping", id=1, params=None):
    req = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        req["params"] = params
    return json.dumps(req).encode()


JSON = {"Content-Type": "application/json"}


def post(node, path, body, token=None, auth=False, headers=None):
    h = dict(JSON)
    if token:
        h.update(bearer(token))
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return node.request("POST", path, body=body, headers=h, auth=auth)


def rpc_as(node, token, method="system/ping", params=None):
    return post(node, "/rpc", rpc_body(method, params=params), token=token)


def assert_unauthorized(r, why=None):
    """401 with a Bearer challenge and a JSON error body; `why` is the expected
    error_description (None: the challenge carries no error, i.e. no credentials sent;
    a tuple: any of them)."""
    assert r.status == 401, r
    www = r.headers.get("WWW-Authenticate")
    assert www and www.startswith('Bearer realm="p2p"'), (www, r)
    body = r.json()
    assert isinstance(body.get("error"), str) and "authentication required" in body["error"], body
    assert body.get("status") == 401, body
    if why is None:
        assert "error=" not in www, www
        return
    assert 'error="invalid_token"' in www, www
    m = re.search(r'error_description="([^"]*)"', www)
    assert m, www
    whys = why if isinstance(why, tuple) else (why,)
    assert m.group(1) in whys, (m.group(1), whys)
    assert m.group(1) in body["error"], body


def assert_json_error(r, status):
    assert r.status == status, r
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


# ---- 1. route walk -----------------------------------------------------------------------------


def test_route_list_matches_registered_table(node):
    """The literal above is the node's table as its components registered it: a route added
    (or its auth class changed) without writing its expectations here fails."""
    table = registered_routes(node)
    assert ("GET", "/health", "exact", "open") in table, table
    missing = sorted(set(table) - set(ROUTES))
    stale = sorted(set(ROUTES) - set(table))
    assert not missing, f"registered routes with no expectations in test_auth.py: {missing}"
    assert not stale, f"routes in test_auth.py the node no longer registers (or with another class): {stale}"
    assert len(table) == len(set(table)), "duplicate entries in the route table"


def test_registered_table_refuses_anonymous(node):
    """Walks the live table: every route answers 401 with a Bearer challenge to a caller
    without credentials, unless it is open or checks its own credential."""
    failures = []
    for method, path, match, auth in registered_routes(node):
        url = route_path(path, match)
        body = rpc_body() if path == "/rpc" else b"{}" if method == "POST" else None
        r = anonymous_request(node, method, url, body=body)
        if auth == "open":
            ok = r.status != 401 and r.headers.get("WWW-Authenticate") is None
        elif auth == "self" and path == "/ws/dashboard":
            ok = r.status == 426  # not a WebSocket handshake; the socket's first message is the credential
        elif auth == "self":
            ok = r.status in (400, 401, 403)  # the handler refuses the empty credential
        else:
            ok = r.status == 401 and r.headers.get("WWW-Authenticate", "").startswith('Bearer realm="p2p"')
        if not ok:
            failures.append(f"{method} {url} ({auth}): {r.status}")
    assert not failures, failures


def test_routes_table_is_admin_only(node):
    r = anonymous_request(node, "GET", "/routes")
    assert_unauthorized(r)
    r = node.request("GET", "/routes", headers=bearer(node.new_token(role="viewer")), auth=False)
    assert r.status == 403, r


def anonymous_request(node, method, path, body=None, headers=None):
    h = dict(headers or {})
    if method == "POST":
        h.setdefault("Content-Type", "application/json")
    return node.request(method, path, body=body, headers=h, auth=False)


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_route_refuses_anonymous(node, route):
    method, path, match, auth = route
    url = route_path(path, match)
    if auth == "open" and path.startswith("/dashboard/"):
        # the dashboard's page names its assets by content hash: ask for a real one
        page = anonymous_request(node, "GET", "/dashboard")
        assert page.status == 200 and page.headers.get("WWW-Authenticate") is None, page
        if path == "/dashboard/":
            r = anonymous_request(node, method, url)
            assert r.status == 301 and r.headers.get("Location") == "/dashboard", r
            return
        m = re.search(r'"(/dashboard/static/[^"]+)"', page.text)
        assert m, page.text[:500]
        url = m.group(1)
    if auth == "open":
        r = anonymous_request(node, method, url)
        assert r.status == 200, r
        assert r.headers.get("WWW-Authenticate") is None
        return
    if auth == "self" and path == "/internal/cert-request":
        # the join token in the body is the credential: nothing is signed without one
        r = anonymous_request(node, method, url, body=b"this is not json")
        assert_json_error(r, 400)
        r = anonymous_request(node, method, url, body=b"{}")
        assert_json_error(r, 400)
        forged = {"node_id": "intruder", "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                  "-----END CERTIFICATE REQUEST-----\n", "challenge": "A" * 43, "challenge_port": 8802,
                  "join_token": "p2pj_" + "x" * 43}
        r = anonymous_request(node, method, url, body=json.dumps(forged).encode())
        assert "join token refused" in assert_json_error(r, 403)
        assert "certificate" not in r.json()
        return
    if auth == "self" and path == "/ws/dashboard":
        # the WebSocket's first message carries the token (test_dashboard_ws.py); a plain
        # request is not a handshake and gets nothing
        r = anonymous_request(node, method, url)
        assert_json_error(r, 426)
        return
    if auth == "self":
        assert path == "/auth/token", f"no expectations written for the self-checking route {path}"
        r = anonymous_request(node, method, url, body=b"this is not json")
        assert_json_error(r, 400)
        r = anonymous_request(node, method, url, body=b"")
        assert r.status in (400, 401), r
        assert "api_key" in assert_json_error(r, r.status)
        r = anonymous_request(node, method, url, body=json.dumps({"api_key": "p2pa_" + "x" * 43}).encode())
        assert assert_json_error(r, 401) == "wrong API key"
        assert "token" not in r.json()
        return
    assert auth in PROTECTED, f"unknown auth class {auth} for {path}"
    body = rpc_body() if path == "/rpc" else b"{}" if method == "POST" else None
    # no credentials at all
    r = anonymous_request(node, method, url, body=body)
    assert_unauthorized(r)
    # credentials that are not a valid token
    r = anonymous_request(node, method, url, body=body, headers={"Authorization": "Bearer not-a-token"})
    assert_unauthorized(r, "malformed token")
    # HEAD on a GET route is answered like GET
    if method == "GET":
        r = anonymous_request(node, "HEAD", url)
        assert r.status == 401, r
        assert r.headers.get("WWW-Authenticate", "").startswith('Bearer realm="p2p"'), r.headers


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_admin_token_may_call_every_route(node, route):
    method, path, match, auth = route
    url = route_path(path, match)
    if path == "/rpc":
        r = post(node, url, rpc_body(), token=node.token)
        assert r.status == 200, r
        assert r.json()["result"]["pong"] is True
    elif path == "/auth/token":
        r = post(node, url, {"api_key": node.admin_key}, token=node.token)
        assert r.status == 200, r
    elif path == "/auth/revoke":
        victim = node.new_token()
        r = post(node, url, {"token": victim}, token=node.token)
        assert r.status == 200, r
        assert r.json()["revoked"] is True
        assert r.json()["nodes_confirmed"] == r.json()["nodes_total"] == 1, r.json()
    elif path == "/internal/cert-request":
        # a token is not a join token: the body decides, and an empty one is refused
        r = post(node, url, {}, token=node.token)
        assert_json_error(r, 400)
    elif auth == "node":
        # only a node certificate opens these (tests/system/test_enroll.py); a token does not
        if method == "POST":
            r = post(node, url, {}, token=node.token)
        else:
            r = node.request(method, url, headers=bearer(node.token), auth=False)
        assert_unauthorized(r, "a node certificate is required")
    elif path == "/ws/dashboard":
        # a token in a header opens nothing here: the socket authenticates by its first message
        r = node.request(method, url, headers=bearer(node.token), auth=False)
        assert_json_error(r, 426)
    elif (method, path) == ("DELETE", "/api/logs"):
        r = node.request(method, url, headers=bearer(node.token), auth=False)
        assert r.status == 200 and r.json()["cleared"] is True, r
    elif (method, path) == ("POST", "/deploy/packages"):
        # admitted; an upload that is not a package is refused by the store (tests/system/test_deploy.py)
        r = node.request(method, url, body=b"not a package", headers=bearer(node.token), auth=False)
        assert r.status in (409, 422), r
    elif path.startswith("/dashboard"):
        # open: a token changes nothing (the page with its real hashed asset names)
        page = node.request("GET", "/dashboard", headers=bearer(node.token), auth=False)
        assert page.status == 200, page
        if path == "/dashboard/":
            r = node.request(method, url, headers=bearer(node.token), auth=False)
            assert r.status == 301, r
        elif path == "/dashboard/static/":
            asset = re.search(r'"(/dashboard/static/[^"]+)"', page.text).group(1)
            r = node.request(method, asset, headers=bearer(node.token), auth=False)
            assert r.status == 200, r
    elif path == "/api/dashboard/history/":
        # a node's history: this node is a member
        r = node.request(method, path + node.name, headers=bearer(node.token), auth=False)
        assert r.status == 200 and r.json()["node_id"] == node.name, r
    elif path == "/api/dashboard/control-service":
        # admitted: the dashboard itself answers (no such service on this node)
        r = post(node, url, {"worker_id": node.name, "service_name": "nope", "action": "restart"}, token=node.token)
        assert_json_error(r, 404)
    else:
        assert method == "GET", f"no sample request written for {method} {path}"
        r = node.request(method, url, headers=bearer(node.token), auth=False)
        assert r.status == 200, r
        if path == "/internal/ca-cert":
            assert r.body.startswith(b"-----BEGIN CERTIFICATE-----"), r
        else:
            r.json()


def test_unknown_path_and_method(node):
    """Unknown paths are 404 and wrong methods 405 (with Allow), for anonymous callers too."""
    r = node.get("/no/such/endpoint", auth=False)
    assert_json_error(r, 404)
    r = node.request("GET", "/auth/token", auth=False)
    assert_json_error(r, 405)
    assert r.headers.get("Allow") == "POST"


# ---- 2. token verification over HTTP ------------------------------------------------------------


def forged_cases(node):
    """name -> (Authorization header value, expected error_description(s)).
    Built from real node tokens where that makes the attack realistic."""
    real = node.new_token()
    viewer = node.new_token(role="viewer")
    h, p, s = real.split(".")
    _, payload, _ = jwt_parts(real)
    other = secrets.token_bytes(32)
    other_key = ec.generate_private_key(ec.SECP256R1())
    kid = jwt_parts(real)[0]["kid"]
    es_h = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    public_pem = node_public_pem(node)
    vh, vp, vs = viewer.split(".")
    vpayload = jwt_parts(viewer)[1]
    escalated = dict(vpayload, role="admin")
    jti = payload["jti"]
    one_char_jti = jti[:-1] + ("0" if jti[-1] != "0" else "1")
    flipped_sig = ("B" if s[0] != "B" else "C") + s[1:]
    # change one base64url character in the middle of the payload segment
    i = len(p) // 2
    one_char_seg = p[:i] + ("A" if p[i] != "A" else "B") + p[i + 1:]
    return {
        "garbage": ("Bearer garbage", "malformed token"),
        "two segments": ("Bearer " + h + "." + p, "malformed token"),
        "four segments": ("Bearer " + real + ".x", "malformed token"),
        "other key": ("Bearer " + es256(es_h, claims(), other_key), "bad signature"),
        "other key, real payload": ("Bearer " + es256(h, p, other_key), "bad signature"),
        "other key, unknown kid": ("Bearer " + es256(dict(es_h, kid="ab" * 16), claims(), other_key),
                                   "unknown key id"),
        "no kid": ("Bearer " + es256({"alg": "ES256", "typ": "JWT"}, claims(), other_key), "missing key id"),
        "HS256 with a random secret": ("Bearer " + sign(HS256, claims(), other), "algorithm not allowed"),
        "HS256 keyed with the public key": ("Bearer " + sign(dict(HS256, kid=kid), payload, public_pem),
                                            "algorithm not allowed"),
        "alg none, empty signature": ("Bearer " + b64u('{"alg":"none","typ":"JWT"}') + "." + p + ".",
                                      "algorithm not allowed"),
        "alg none, no typ": ("Bearer " + b64u('{"alg":"none"}') + "." + p + ".", "algorithm not allowed"),
        "alg none, real signature": ("Bearer " + b64u('{"alg":"none"}') + "." + p + "." + s,
                                     "algorithm not allowed"),
        "alg HS512": ("Bearer " + sign({"alg": "HS512", "typ": "JWT"}, payload, other, hashlib.sha512),
                      "algorithm not allowed"),
        "alg HS384": ("Bearer " + sign({"alg": "HS384", "typ": "JWT"}, payload, other, hashlib.sha384),
                      "algorithm not allowed"),
        "alg RS256": ("Bearer " + b64u('{"alg":"RS256","typ":"JWT"}') + "." + p + "." + b64u(secrets.token_bytes(256)),
                      "algorithm not allowed"),
        "alg hs256 lower case": ("Bearer " + sign({"alg": "hs256", "typ": "JWT"}, payload, other),
                                 "algorithm not allowed"),
        "extra header member": ("Bearer " + es256(dict(es_h, x="y"), payload, other_key),
                                "unsupported header"),
        "signature altered": ("Bearer " + h + "." + p + "." + flipped_sig, "bad signature"),
        "signature truncated": ("Bearer " + h + "." + p + "." + s[:-2], "bad signature"),
        "signature removed": ("Bearer " + h + "." + p + ".", "bad signature"),
        "signature of another token": ("Bearer " + h + "." + p + "." + vs, "bad signature"),
        "payload: one character of jti changed": (
            "Bearer " + h + "." + b64u(json.dumps(dict(payload, jti=one_char_jti), separators=(",", ":"))) + "." + s,
            "bad signature"),
        "payload: one base64 character changed": ("Bearer " + h + "." + one_char_seg + "." + s,
                                                  ("bad signature", "malformed token")),
        "payload: viewer escalated to admin": (
            "Bearer " + vh + "." + b64u(json.dumps(escalated, separators=(",", ":"))) + "." + vs, "bad signature"),
        "payload: exp extended": (
            "Bearer " + h + "." + b64u(json.dumps(dict(payload, exp=payload["exp"] + 10 ** 6),
                                                  separators=(",", ":"))) + "." + s, "bad signature"),
        "too large": ("Bearer " + "a" * 8193, "token too large"),
        "Basic scheme": ("Basic xyz", "Authorization is not a Bearer token"),
        "Basic scheme with a real token": ("Basic " + real, "Authorization is not a Bearer token"),
        "Bearer without token": ("Bearer", "Authorization is not a Bearer token"),
        "token without scheme": (real, "Authorization is not a Bearer token"),
    }


FORGED = ["garbage", "two segments", "four segments", "other key", "other key, real payload",
          "other key, unknown kid", "no kid", "HS256 with a random secret", "HS256 keyed with the public key",
          "alg none, empty signature", "alg none, no typ", "alg none, real signature", "alg HS512", "alg HS384",
          "alg RS256", "alg hs256 lower case", "extra header member", "signature altered",
          "signature truncated", "signature removed", "signature of another token",
          "payload: one character of jti changed", "payload: one base64 character changed",
          "payload: viewer escalated to admin", "payload: exp extended", "too large", "Basic scheme",
          "Basic scheme with a real token", "Bearer without token", "token without scheme"]


def node_public_pem(node):
    """The public key as workers receive it (PEM text): the HMAC secret of the alg-confusion attack."""
    return SigningKey(jwt_secret(node)).public_pem


@pytest.fixture(scope="module")
def forged(node):
    cases = forged_cases(node)
    assert sorted(cases) == sorted(FORGED)
    return cases


@pytest.mark.parametrize("case", FORGED)
def test_bad_token_refused(node, forged, case):
    value, why = forged[case]
    r = post(node, "/rpc", rpc_body(), headers={"Authorization": value})
    assert_unauthorized(r, why)
    # the same on a GET route and on the admin-only route
    r = node.get("/metrics", headers={"Authorization": value}, auth=False)
    assert_unauthorized(r, why)
    r = post(node, "/auth/revoke", {"token": node.new_token()}, headers={"Authorization": value})
    assert_unauthorized(r, why)


def test_no_token_challenge_has_no_error_code(node):
    """RFC 6750 §3.1: without credentials the challenge carries no error code."""
    r = post(node, "/rpc", rpc_body())
    assert_unauthorized(r)
    assert r.headers.get("WWW-Authenticate") == 'Bearer realm="p2p"'


def test_real_token_accepted(node):
    """The control for the refusals: the node's own token, with its own Authorization
    header variants that RFC 6750 allows (scheme in any case, extra spaces)."""
    tok = node.new_token()
    for value in ("Bearer " + tok, "bearer " + tok, "BEARER  " + tok, " Bearer " + tok + " "):
        r = post(node, "/rpc", rpc_body(), headers={"Authorization": value})
        assert r.status == 200, (value, r)


@pytest.fixture(scope="module")
def secret(node):
    return SigningKey(jwt_secret(node))


def test_token_signed_here_is_accepted(node, secret):
    """Tokens signed by this file with the coordinator's key are accepted, so the refusals of
    the next test are refusals of the claim under test, not of the way we sign."""
    r = rpc_as(node, secret.sign(claims()))
    assert r.status == 200, r
    r = rpc_as(node, secret.sign(claims(), {"alg": "ES256", "kid": secret.kid}))  # typ is optional
    assert r.status == 200, r
    # expired less than the leeway (30 s) ago: still accepted
    now = int(time.time())
    r = rpc_as(node, secret.sign(claims(iat=now - 3600, exp=now - 5)))
    assert r.status == 200, r


def _node_signed_cases(now):
    return {
        "expired": (claims(iat=now - 7200, exp=now - 3600), "expired"),
        "expired beyond the leeway": (claims(iat=now - 7200, exp=now - 40), "expired"),
        "not yet valid": (claims(nbf=now + 3600), "not yet valid"),
        "issued in the future": (claims(iat=now + 3600, exp=now + 7200), "issued in the future"),
        "exp before iat": (claims(iat=now, exp=now - 1), ("invalid claim: exp", "expired")),
        "role root": (claims(role="root"), "invalid claim: role"),
        "role missing": (claims(role=None), "missing claim: role"),
        "sub missing": (claims(sub=None), "missing claim: sub"),
        "jti missing": (claims(jti=None), "missing claim: jti"),
        "exp missing": (claims(exp=None), "missing claim: exp"),
        "exp a string": (claims(exp=str(now + 3600)), "invalid claim: exp"),
    }


@pytest.mark.parametrize("case", sorted(_node_signed_cases(0)))
def test_validly_signed_bad_claims_refused(node, secret, case):
    payload, why = _node_signed_cases(int(time.time()))[case]
    r = rpc_as(node, secret.sign(payload))
    assert_unauthorized(r, why)


def test_token_claims(node):
    """exp = iat + ttl; a token's payload holds exactly sub, role, iat, exp, jti."""
    before = int(time.time())
    r = post(node, "/auth/token", {"api_key": node.admin_key, "ttl": 600})
    after = int(time.time())
    assert r.status == 200, r
    body = r.json()
    header, payload, sig = jwt_parts(body["token"])
    assert header["alg"] == "ES256" and header["typ"] == "JWT" and re.fullmatch(r"[0-9a-f]{32}", header["kid"])
    assert set(header) == {"alg", "kid", "typ"}, header
    assert set(payload) == {"sub", "role", "iat", "exp", "jti"}, payload
    assert payload["sub"] == "admin" and payload["role"] == "admin"
    assert before - 1 <= payload["iat"] <= after + 1, payload
    assert payload["exp"] - payload["iat"] == 600, payload
    assert re.fullmatch(r"[0-9a-f]{32}", payload["jti"]), payload
    assert len(b64u_decode(sig)) == 64  # r || s, not DER
    assert body["token_type"] == "Bearer" and body["role"] == "admin" and body["subject"] == "admin", body
    assert body["expires_at"] == payload["exp"], body


# ---- 3. roles ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(node):
    return node.new_token(role="viewer")


@pytest.mark.parametrize("path", ["/metrics", "/services", "/services/system", "/metrics/system"])
def test_viewer_may_read(node, viewer, path):
    r = node.get(path, headers=bearer(viewer), auth=False)
    assert r.status == 200, r


def test_viewer_read_only_methods(node, viewer):
    r = rpc_as(node, viewer, "system/ping")
    assert r.status == 200, r
    assert r.json()["result"]["pong"] is True
    r = rpc_as(node, viewer, "system/get_system_info")
    assert r.status == 200, r
    assert r.json()["result"]["node_id"] == node.name
    batch = [json.loads(rpc_body("system/ping", id=1)), json.loads(rpc_body("system/list_methods", id=2))]
    r = post(node, "/rpc", batch, token=viewer)
    assert r.status == 200, r
    assert sorted(x["id"] for x in r.json()) == [1, 2]
    assert all("result" in x for x in r.json()), r.json()


def test_viewer_write_method_forbidden(node, viewer):
    methods = node.result("system/list_methods")
    assert methods, "no methods listed"
    writes = [m["method"] for m in methods if m["readonly"] is False]
    if not writes:
        assert all(m["readonly"] is True for m in methods), methods
        pytest.skip("no write method registered yet")
    w = writes[0]
    # alone, and hidden in a batch of read-only calls: the whole batch is refused
    for body in (json.loads(rpc_body(w)),
                 [json.loads(rpc_body("system/ping", id=1)), json.loads(rpc_body(w, id=2))]):
        r = post(node, "/rpc", body, token=viewer)
        msg = assert_json_error(r, 403)
        assert w in msg, msg


def test_viewer_may_not_revoke(node, viewer):
    victim = node.new_token()
    r = post(node, "/auth/revoke", {"token": victim}, token=viewer)
    assert_json_error(r, 403)
    assert rpc_as(node, victim).status == 200  # not revoked
    # not even itself
    r = post(node, "/auth/revoke", {"token": viewer}, token=viewer)
    assert_json_error(r, 403)
    assert rpc_as(node, viewer).status == 200


def test_viewer_token_does_not_buy_a_token(node, viewer):
    """/auth/token wants the API key: a viewer token does not get an admin token."""
    for body in ({}, {"role": "admin"}):
        r = post(node, "/auth/token", body, token=viewer)
        assert_json_error(r, 401)
        assert "token" not in r.json()


def test_admin_batch(node):
    batch = [json.loads(rpc_body("system/ping", id=1)), json.loads(rpc_body("system/get_system_info", id=2))]
    r = post(node, "/rpc", batch, token=node.token)
    assert r.status == 200, r
    assert all("result" in x for x in r.json()), r.json()


# ---- 4. POST /auth/token -------------------------------------------------------------------------


def test_token_wrong_api_key(node):
    for key in ("p2pa_wrong", node.admin_key + "x", node.admin_key[:-1], "", node.admin_key.upper()):
        r = post(node, "/auth/token", {"api_key": key})
        assert assert_json_error(r, 401) == "wrong API key", key
        assert "token" not in r.json()


@pytest.mark.parametrize("body", [b"", b"{}", b"null", b"[]", b"\"api_key\"", b"{bad json", b"{\"role\":\"admin\"}"],
                         ids=["empty", "empty object", "null", "array", "string", "bad json", "no api_key"])
def test_token_missing_or_bad_body(node, body):
    r = post(node, "/auth/token", body)
    assert r.status in (400, 401), r
    msg = assert_json_error(r, r.status)
    assert "api_key" in msg or "JSON" in msg, msg
    assert "token" not in r.json()


@pytest.mark.parametrize("role", ["root", "node", "Admin", "", 1, None],
                         ids=["root", "node", "Admin", "empty", "number", "null"])
def test_token_bad_role(node, role):
    r = post(node, "/auth/token", {"api_key": node.admin_key, "role": role})
    msg = assert_json_error(r, 400)
    assert "role" in msg, msg


@pytest.mark.parametrize("ttl", [59, 0, -1, 86401, 10 ** 12, "3600", 3600.5, None],
                         ids=["59", "0", "-1", "86401", "huge", "string", "float", "null"])
def test_token_bad_ttl(node, ttl):
    r = post(node, "/auth/token", {"api_key": node.admin_key, "ttl": ttl})
    msg = assert_json_error(r, 400)
    assert "ttl" in msg, msg


@pytest.mark.parametrize("ttl", [60, 3600, 86400, None])
def test_token_ttl_bounds_and_default(node, ttl):
    body = {"api_key": node.admin_key}
    if ttl is not None:
        body["ttl"] = ttl
    r = post(node, "/auth/token", body)
    assert r.status == 200, r
    _, payload, _ = jwt_parts(r.json()["token"])
    assert payload["exp"] - payload["iat"] == (ttl or 86400), payload  # default: jwt_ttl, 24 h
    assert rpc_as(node, r.json()["token"]).status == 200


def test_token_viewer_payload(node):
    r = post(node, "/auth/token", {"api_key": node.admin_key, "role": "viewer", "ttl": 120})
    assert r.status == 200, r
    _, payload, _ = jwt_parts(r.json()["token"])
    assert set(payload) == {"sub", "role", "iat", "exp", "jti"}, payload
    assert payload["role"] == "viewer" and r.json()["role"] == "viewer"
    assert payload["exp"] - payload["iat"] == 120


def test_tokens_are_distinct(node):
    a, b = node.new_token(), node.new_token()
    assert a != b
    assert jwt_parts(a)[1]["jti"] != jwt_parts(b)[1]["jti"]


# ---- 5. revocation ----------------------------------------------------------------------------------


def test_revoke_bad_requests(node):
    admin = node.token
    for body in (b"", b"{}", b"[]", b"{bad", json.dumps({"token": 5}).encode()):
        r = post(node, "/auth/revoke", body, token=admin)
        assert_json_error(r, 400)
    # a token the node did not sign cannot be put on (and fill) the deny list
    for bad in ("garbage", sign(HS256, claims(), secrets.token_bytes(32)),
                es256({"alg": "ES256", "kid": "ab" * 16}, claims(), ec.generate_private_key(ec.SECP256R1()))):
        r = post(node, "/auth/revoke", {"token": bad}, token=admin)
        msg = assert_json_error(r, 400)
        assert msg.startswith("cannot revoke"), msg


def test_revocation_survives_restart(node_factory):
    n = node_factory("revoker")
    t1, t2, v = n.new_token(), n.new_token(), n.new_token(role="viewer")
    r = post(n, "/auth/revoke", {"token": t1}, token=t2)
    assert r.status == 200, r
    assert r.json()["revoked"] is True
    r = rpc_as(n, t1)
    assert_unauthorized(r, "revoked")
    # a revoked admin token cannot act as admin any more either
    r = post(n, "/auth/revoke", {"token": t2}, token=t1)
    assert_unauthorized(r, "revoked")
    r = n.get("/metrics", headers=bearer(t1), auth=False)
    assert_unauthorized(r, "revoked")
    # the others still work
    assert rpc_as(n, t2).status == 200
    assert rpc_as(n, v).status == 200
    # stop at once: the revocation must have been persisted (or be on shutdown)
    assert n.stop(timeout=15) == 0, n.stderr()
    n.start()
    r = rpc_as(n, t1)
    assert_unauthorized(r, "revoked")
    assert rpc_as(n, t2).status == 200, "a non-revoked token stopped working after a restart"
    assert rpc_as(n, v).status == 200
    # and the API key is the same after the restart
    assert rpc_as(n, n.new_token()).status == 200


def test_revocation_is_durable_once_answered(node_factory):
    """A 200 from /auth/revoke means the token stays revoked, even if the node dies right
    after answering (kill -9, power loss): the deny list must be saved before the answer.
    The window is short, so the test tries a few times."""
    n = node_factory("revoker-crash")
    for attempt in range(4):
        admin = n.new_token()
        victim = n.new_token()
        r = post(n, "/auth/revoke", {"token": victim}, token=admin)
        assert r.status == 200, r
        n.stop(signal.SIGKILL, timeout=10)
        n.start()
        r = rpc_as(n, victim)
        assert r.status == 401, (f"attempt {attempt + 1}: a token whose revocation was answered 200 is "
                                 f"accepted again after the node was killed right after the answer: {r}")
        assert_unauthorized(r, "revoked")


def test_accepted_token_can_be_revoked(node, secret):
    """Every token the node accepts can be revoked. A validly signed token whose exp lies
    beyond P2P_JWT_MAX_TIME (9999-12-31) must be refused, or be revocable."""
    max_time = 253402300799
    for exp in (max_time + 1, 2 ** 62):
        tok = secret.sign(claims(exp=exp))
        if rpc_as(node, tok).status == 401:
            continue
        r = post(node, "/auth/revoke", {"token": tok}, token=node.token)
        assert r.status == 200, f"exp={exp}: accepted by every route but cannot be revoked: {r}"
        assert_unauthorized(rpc_as(node, tok), "revoked")


# ---- 6. rate limiting ---------------------------------------------------------------------------


def test_rate_limit(node_factory):
    n = node_factory("limited", extra_args=["--rate-limit-enabled", "true",
                                            "--rate-limit-rpc-requests", "60", "--rate-limit-rpc-burst", "5",
                                            "--rate-limit-default-requests", "60",
                                            "--rate-limit-default-burst", "5"])
    admin = n.new_token()
    viewer = n.new_token(role="viewer")  # same subject ("admin"), but its own bucket (role + jti)
    ok, limited, elapsed = burst(n, "/rpc", rpc_body(), dict(JSON, **bearer(admin)), 200)
    # the burst of 5, plus at most the tokens refilled (1/s) while we were sending
    assert 5 <= ok <= 5 + int(elapsed) + 1, (ok, elapsed)
    status, retry, body = limited
    assert retry and re.fullmatch(r"[1-9][0-9]*", retry), retry
    assert int(retry) == 1, f"60/min: one token is back within 1 s, got Retry-After: {retry}"
    assert "rate limit" in json.loads(body)["error"]
    # /health is another class: still fine
    assert n.get("/health").status == 200
    # limits are per identity: an anonymous caller (keyed by address) is not limited by
    # the admin's use, and gets the usual 401
    assert_unauthorized(post(n, "/rpc", rpc_body()))
    # ... nor is another token of the same subject: buckets are per token and role
    r = rpc_as(n, viewer)
    assert r.status == 200, r
    # after Retry-After seconds, a call goes through again
    time.sleep(int(retry) + 0.05)
    r = rpc_as(n, admin)
    assert r.status == 200, r


def test_rate_limit_anonymous(node_factory):
    """Anonymous callers are limited by address: guessing API keys on /auth/token runs into
    429, and X-Forwarded-For from an untrusted peer does not make new identities."""
    n = node_factory("limited-anon", extra_args=["--rate-limit-enabled", "true",
                                                 "--rate-limit-rpc-requests", "60", "--rate-limit-rpc-burst", "5",
                                                 "--rate-limit-default-requests", "60",
                                                 "--rate-limit-default-burst", "5"])
    wrong = json.dumps({"api_key": "p2pa_" + "A" * 43}).encode()
    ok, limited, elapsed = burst(n, "/auth/token", wrong, dict(JSON), 401)
    assert 5 <= ok <= 5 + int(elapsed) + 1, (ok, elapsed)
    assert limited[1] and int(limited[1]) >= 1, limited
    # the right key from the same address is now limited too (429, not a token)
    r = post(n, "/auth/token", {"api_key": n.admin_key})
    assert r.status == 429, r
    assert r.headers.get("Retry-After"), r.headers
    # RPC without credentials, each request claiming another client address
    counter = iter(range(1, 1000))
    ok, limited, elapsed = burst(n, "/rpc", rpc_body(), dict(JSON), 401,
                                 vary=lambda h: dict(h, **{"X-Forwarded-For": f"10.0.0.{next(counter)}"}))
    assert 5 <= ok <= 5 + int(elapsed) + 1, (ok, elapsed)
    assert n.get("/health").status == 200


def burst(node, path, body, headers, expect, vary=None, limit=40):
    """POSTs on one keep-alive connection until a 429; every earlier answer must be
    `expect`. Returns (count before the 429, (status, Retry-After, body), seconds)."""
    conn = node.connection()
    ok = 0
    start = time.monotonic()
    try:
        for _ in range(limit):
            conn.request("POST", path, body=body, headers=vary(headers) if vary else headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status == 429:
                return ok, (resp.status, resp.getheader("Retry-After"), data), time.monotonic() - start
            assert resp.status == expect, (resp.status, data)
            ok += 1
    finally:
        conn.close()
    pytest.fail(f"no 429 after {ok} requests to {path} in {time.monotonic() - start:.2f}s")


# ---- 7. the command line --------------------------------------------------------------------------


def write_secret_file(path, text, mode=0o600):
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_cli_token_and_call(node, tmp_path):
    env = clean_env()
    cp = run_p2p("token", "--addr", node.addr, "--data-dir", node.data_dir, "--api-key-file", node.admin_key_path,
                 env=env)
    assert cp.returncode == 0, cp.stderr
    tok = cp.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", tok), cp.stdout
    assert jwt_parts(tok)[1]["role"] == "admin"
    f = write_secret_file(tmp_path / "token", tok)
    cp = run_p2p("call", "--addr", node.addr, "--data-dir", node.data_dir, "--token-file", f, "system/ping", env=env)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["pong"] is True
    # a token file others can read is refused
    f.chmod(0o644)
    cp = run_p2p("call", "--addr", node.addr, "--data-dir", node.data_dir, "--token-file", f, "system/ping", env=env)
    assert cp.returncode == 2, cp
    assert "chmod 600" in cp.stderr, cp.stderr
    assert not cp.stdout


def test_cli_token_role_and_ttl(node):
    cp = run_p2p("token", "--addr", node.addr, "--data-dir", node.data_dir, "--api-key-file", node.admin_key_path,
                 "--role", "viewer", "--ttl", "120", env=clean_env())
    assert cp.returncode == 0, cp.stderr
    _, payload, _ = jwt_parts(cp.stdout.strip())
    assert payload["role"] == "viewer" and payload["exp"] - payload["iat"] == 120, payload


def test_cli_token_from_vault(node):
    cp = run_p2p("token", "--addr", node.addr, "--data-dir", node.data_dir,
                 env=clean_env(P2P_VAULT_PASSWORD=vault_password()), timeout=20)
    assert cp.returncode == 0, cp.stderr
    tok = cp.stdout.strip()
    assert rpc_as(node, tok).status == 200


def test_cli_token_refusals(node, tmp_path):
    wrong = write_secret_file(tmp_path / "wrong-key", "p2pa_" + "A" * 43)
    cp = run_p2p("token", "--addr", node.addr, "--data-dir", node.data_dir, "--api-key-file", wrong, env=clean_env())
    assert cp.returncode == 1, cp
    assert "401" in cp.stderr and "wrong API key" in cp.stderr, cp.stderr
    assert not cp.stdout.strip()
    cp = run_p2p("token", "--addr", node.addr, "--data-dir", node.data_dir, "--api-key-file", node.admin_key_path,
                 "--role", "root", env=clean_env())
    assert cp.returncode == 2, cp
    cp = run_p2p("token", "--addr", node.addr, "--data-dir", node.data_dir,
                 env=clean_env(P2P_VAULT_PASSWORD="not the password"), timeout=20)
    assert cp.returncode == 2, cp
    assert not cp.stdout.strip()


def test_cli_revoke(node):
    victim = node.new_token()
    assert rpc_as(node, victim).status == 200
    # without an admin token
    cp = run_p2p("token", "revoke", "--addr", node.addr, "--data-dir", node.data_dir, victim, env=clean_env())
    assert cp.returncode == 2, cp
    # with a viewer token
    viewer = node.new_token(role="viewer")
    cp = run_p2p("token", "revoke", "--addr", node.addr, "--data-dir", node.data_dir, victim,
                 env=clean_env(P2P_TOKEN=viewer))
    assert cp.returncode == 1, cp
    assert "403" in cp.stderr, cp.stderr
    assert rpc_as(node, victim).status == 200
    # with an admin token in $P2P_TOKEN
    cp = run_p2p("token", "revoke", "--addr", node.addr, "--data-dir", node.data_dir, victim,
                 env=clean_env(P2P_TOKEN=node.new_token()))
    assert cp.returncode == 0, cp.stderr
    assert "revoked" in cp.stderr
    assert_unauthorized(rpc_as(node, victim), "revoked")
    cp = run_p2p("call", "--addr", node.addr, "--data-dir", node.data_dir, "system/ping",
                 env=clean_env(P2P_TOKEN=victim))
    assert cp.returncode == 1, cp
    assert "revoked" in cp.stderr, cp.stderr


def test_cli_call_without_token(node):
    cp = run_p2p("call", "--addr", node.addr, "--data-dir", node.data_dir, "system/ping", env=clean_env())
    assert cp.returncode == 1, cp
    assert "authentication required" in cp.stderr, cp.stderr
    assert not cp.stdout.strip()


# ---- 8. the admin API key is shown once ------------------------------------------------------------


def files_under(root):
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            yield os.path.join(dirpath, f)


def test_admin_key_shown_once_and_not_stored_in_clear(node_factory):
    n = node_factory("keyholder")
    key = n.admin_key
    assert re.fullmatch(r"p2pa_[A-Za-z0-9_-]{43}", key), key
    # the requested key file: outside the data dir, owner-only
    assert not str(n.admin_key_path.resolve()).startswith(str(n.data_dir.resolve()) + os.sep)
    assert stat.S_IMODE(n.admin_key_path.stat().st_mode) == 0o600, oct(n.admin_key_path.stat().st_mode)
    first = n.stderr()
    assert key in first, "the first start does not show the admin API key"
    assert first.count(key) == 1, "the admin API key is logged more than once"
    secret = jwt_secret(n)
    offset = len(n.stderr_path.read_bytes())
    assert n.stop(timeout=15) == 0, n.stderr()
    n.start()
    assert rpc_as(n, n.new_token()).status == 200  # the same key works after the restart
    assert n.admin_key == key, "the admin key file changed on restart"
    later = n.stderr_path.read_bytes()[offset:].decode("utf-8", "replace")
    assert "starting" in later or "ready" in later, later  # we are looking at the restart's log
    assert key not in later, "a restart shows the admin API key again"
    assert (n.data_dir / "vault.p2p").is_file()
    # neither the API key nor the signing key is in clear text in any file of the data dir
    key_raw = key.encode()
    key_body = key[len("p2pa_"):].encode()
    for path in files_under(n.data_dir):
        data = open(path, "rb").read()
        assert key_raw not in data and key_body not in data, f"the admin API key is in clear text in {path}"
        assert secret not in data, f"the token signing key is in clear text in {path}"
