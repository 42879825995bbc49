"""The dashboard page served from the binary (issue 12, src/web/static.c): open routes
that hold no secret, a strict Content-Security-Policy and the other security headers,
content-hashed assets cached a year, the page revalidated, gzip copies made at build
time, conditional requests, and nothing served from outside the embedded table."""
import gzip
import re



def anon(node, method, path, headers=None):
    return node.request(method, path, headers=headers or {}, auth=False)


def assets(node):
    r = anon(node, "GET", "/dashboard")
    assert r.status == 200, r
    names = re.findall(r'"(/dashboard/static/[^"]+)"', r.text)
    assert names, r.text[:400]
    return r, names


def security_headers_ok(r, node):
    csp = r.headers.get("Content-Security-Policy", "")
    for d in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
              "object-src 'none'", f"connect-src 'self' wss://{node.addr}"):
        assert d in csp, (d, csp)
    assert "unsafe" not in csp
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert r.headers.get("Referrer-Policy") == "no-referrer"
    assert r.headers.get("X-Frame-Options") == "DENY"


def test_page_is_open_with_security_headers_and_revalidated(node):
    r, _ = assets(node)
    assert r.headers.get("WWW-Authenticate") is None
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["Vary"] == "Accept-Encoding"
    assert r.headers["ETag"].startswith('"')
    security_headers_ok(r, node)
    # no inline script or style for the CSP to refuse
    assert "<script>" not in r.text and "<style" not in r.text and " style=" not in r.text


def test_assets_are_hashed_immutable_and_typed(node):
    _, names = assets(node)
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for n in names:
        assert re.search(r"\.[0-9a-f]{12}\.(js|css|svg)$", n), n
        r = anon(node, "GET", n)
        assert r.status == 200, (n, r)
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", n
        assert r.headers["Content-Type"] == types[n[n.rindex("."):]], n
        security_headers_ok(r, node)
    # one script (uPlot and the page's modules folded together), one stylesheet: a first
    # visit costs a handful of requests, well under the per-client rate limit
    assert len(names) <= 4, names
    js = anon(node, "GET", next(n for n in names if n.endswith(".js"))).text
    assert "uPlot" in js and "from './" not in js


def test_gzip_copy_when_accepted_identity_otherwise(node):
    _, names = assets(node)
    for path in ["/dashboard"] + names:
        plain = anon(node, "GET", path)
        z = anon(node, "GET", path, {"Accept-Encoding": "gzip, deflate"})
        assert plain.headers.get("Content-Encoding") is None, path
        assert z.headers.get("Content-Encoding") == "gzip", path
        assert gzip.decompress(z.body) == plain.body, path
        assert len(z.body) < len(plain.body) or len(plain.body) < 400, path
        refused = anon(node, "GET", path, {"Accept-Encoding": "gzip;q=0, identity"})
        assert refused.headers.get("Content-Encoding") is None and refused.body == plain.body, path


def test_conditional_get_and_head(node):
    r, names = assets(node)
    etag = r.headers["ETag"]
    again = anon(node, "GET", "/dashboard", {"If-None-Match": etag})
    assert again.status == 304 and again.body == b"", again
    assert anon(node, "GET", "/dashboard", {"If-None-Match": '"something-else"'}).status == 200
    h = anon(node, "HEAD", names[0])
    assert h.status == 200 and h.body == b""


def test_nothing_outside_the_table(node):
    for path in ("/dashboard/static/app.js", "/dashboard/static/", "/dashboard/static/../../etc/passwd",
                 "/dashboard/static/%2e%2e/%2e%2e/etc/passwd", "/dashboard/static/" + "a" * 3000,
                 "/dashboard/index.html", "/dashboardx"):
        r = anon(node, "GET", path)
        assert r.status in (404, 400), (path, r)
        assert b"root:" not in r.body
    assert anon(node, "POST", "/dashboard").status == 405
    r = anon(node, "GET", "/dashboard/")
    assert r.status == 301 and r.headers["Location"] == "/dashboard"


def test_the_page_holds_no_secret(node):
    _, names = assets(node)
    key = node.admin_key
    token = node.token
    for path in ["/dashboard"] + names:
        body = anon(node, "GET", path).body
        assert key.encode() not in body and token.encode() not in body, path
    # and what it fetches is not open
    for path in ("/api/dashboard/metrics", "/api/logs", "/api/dashboard/certificates"):
        assert anon(node, "GET", path).status == 401, path


def test_only_on_a_coordinator_with_the_dashboard(node_factory):
    c = node_factory.create("c")
    w = node_factory.create("w", coordinator=False, join=c)
    assert anon(w, "GET", "/dashboard").status == 404
    off = node_factory.create("off", extra_args=["--dashboard-enabled", "false"])
    assert anon(off, "GET", "/dashboard").status == 404
    assert anon(c, "GET", "/dashboard").status == 200


def test_reloads_fit_the_default_rate_limit(node_factory):
    """With the node's default limits (open routes: 200/min, burst 30 per client), a
    browser without a cache may load the whole page several times in a row."""
    n = node_factory.create("rl", extra_args=["--rate-limit-enabled", "true"])
    for i in range(5):
        r, names = assets(n)
        for a in names:
            got = anon(n, "GET", a)
            assert got.status == 200, (i, a, got)
