"""GET /metrics (JSON and Prometheus text) and /metrics/<service>."""
import math
import re


SAMPLE_RE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
    r'(?:\{(?P<labels>[^{}]*)\})?'
    r' (?P<value>\S+)'
    r'(?: (?P<ts>-?\d+))?$')
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def parse_labels(text):
    labels = {}
    pos = 0
    text = text or ""
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        assert m, f"bad label set {text!r} at {pos}"
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def parse_prometheus(text):
    """Parses the text exposition format strictly; returns [(name, labels, value)] and
    {name: type}."""
    samples, types = [], {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] == "TYPE":
                assert len(parts) == 4, f"line {i}: {line!r}"
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"line {i} is not 'name{{labels}} value': {line!r}"
        value = float(m.group("value"))  # raises on a non-number ("+Inf", "NaN" are floats)
        samples.append((m.group("name"), parse_labels(m.group("labels")), value))
    return samples, types


def prom(node):
    r = node.get("/metrics?format=prometheus")
    assert r.status == 200, r
    return r


def value_of(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    assert len(vals) == 1, (name, labels, vals)
    return vals[0]


# ---- JSON ---------------------------------------------------------------------------------


def test_json_shape(node):
    m = node.metrics()
    assert m["node_id"] == node.name
    for key in ("http", "rpc", "process", "methods"):
        assert key in m, key
    assert "system/ping" in m["methods"]
    ping = m["methods"]["system/ping"]
    assert {"calls", "errors", "latency_ms"} <= set(ping)
    assert m["process"]["rss_bytes"] > 0


def test_json_counters_increase(node):
    before = node.metrics()["methods"]["system/ping"]
    for _ in range(3):
        node.result("system/ping")
    resp = node.rpc("system/ping", {"message": 123})
    assert resp["error"]["code"] == -32602
    after = node.metrics()["methods"]["system/ping"]
    assert after["calls"] - before["calls"] == 4
    assert after["errors"] - before["errors"] == 1
    lat = after["latency_ms"]
    assert lat["max"] >= lat["p50"] >= 0


def test_json_http_counters_increase(node):
    before = node.metrics()["http"]
    node.get("/no/such/path")
    after = node.metrics()["http"]
    assert after["requests_total"] > before["requests_total"]
    assert after["responses"]["4xx"] >= before["responses"]["4xx"] + 1
    assert after["responses"]["2xx"] >= before["responses"]["2xx"] + 1  # the first /metrics


def test_unknown_method_not_counted_as_a_method(node):
    node.rpc("nope/nothing")
    m = node.metrics()["methods"]
    assert "nope/nothing" not in m


def test_metrics_for_service(node):
    r = node.get("/metrics/system")
    assert r.status == 200
    d = r.json()
    assert "system/ping" in d["methods"]
    assert all(name.startswith("system/") for name in d["methods"]), list(d["methods"])


def test_metrics_for_unknown_service_404(node):
    r = node.get("/metrics/unknown")
    assert r.status == 404
    assert r.json()["status"] == 404


# ---- Prometheus -------------------------------------------------------------------------------


def test_prometheus_content_type(node):
    r = prom(node)
    assert r.headers.get("Content-Type", "").startswith("text/plain")


def test_prometheus_via_accept_header(node):
    r = node.get("/metrics", headers={"Accept": "text/plain"})
    assert r.status == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain")
    samples, _ = parse_prometheus(r.text)
    assert any(n == "p2p_rpc_calls_total" for n, _, _ in samples)


def test_json_when_accept_is_json(node):
    r = node.get("/metrics", headers={"Accept": "application/json"})
    assert r.status == 200
    assert r.json()["node_id"] == node.name


def test_prometheus_parses_and_histograms_are_consistent(node):
    node.result("system/ping")
    node.result("system/get_system_info")
    samples, types = parse_prometheus(prom(node).text)
    assert types.get("p2p_rpc_calls_total") == "counter"
    assert types.get("p2p_rpc_duration_seconds") == "histogram"
    # every sample belongs to a declared family
    for name, _, _ in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, name
    # every histogram series: cumulative non-decreasing buckets, +Inf == _count
    series = {}
    for name, labels, value in samples:
        if name == "p2p_rpc_duration_seconds_bucket":
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series.setdefault(key, []).append((float(labels["le"]), value))
    assert series, "no p2p_rpc_duration_seconds buckets"
    for key, buckets in series.items():
        les = [le for le, _ in buckets]
        assert les == sorted(les), (key, les)
        assert math.isinf(les[-1]), (key, les)
        counts = [c for _, c in buckets]
        assert all(a <= b for a, b in zip(counts, counts[1:])), (key, counts)
        labels = dict(key)
        count = value_of(samples, "p2p_rpc_duration_seconds_count", **labels)
        total = value_of(samples, "p2p_rpc_duration_seconds_sum", **labels)
        assert counts[-1] == count, (key, counts[-1], count)
        assert total >= 0
        if count:
            assert total > 0 or counts[0] == count


def test_prometheus_counters_increase(node):
    s0, _ = parse_prometheus(prom(node).text)
    node.result("system/ping")
    node.result("system/ping")
    node.rpc("system/ping", {"message": False})
    s1, _ = parse_prometheus(prom(node).text)
    lbl = dict(method="system/ping", service="system")
    assert value_of(s1, "p2p_rpc_calls_total", **lbl) - value_of(s0, "p2p_rpc_calls_total", **lbl) == 3
    assert value_of(s1, "p2p_rpc_errors_total", **lbl) - value_of(s0, "p2p_rpc_errors_total", **lbl) == 1
    assert (value_of(s1, "p2p_rpc_duration_seconds_count", **lbl)
            - value_of(s0, "p2p_rpc_duration_seconds_count", **lbl)) == 3
    assert value_of(s1, "p2p_http_responses_total", code="2xx") > value_of(s0, "p2p_http_responses_total", code="2xx")


def test_prometheus_and_json_agree(node):
    node.result("system/list_services")
    j = node.metrics()["methods"]["system/list_services"]
    s, _ = parse_prometheus(prom(node).text)
    lbl = dict(method="system/list_services", service="system")
    assert value_of(s, "p2p_rpc_calls_total", **lbl) == j["calls"]
    assert value_of(s, "p2p_rpc_errors_total", **lbl) == j["errors"]
