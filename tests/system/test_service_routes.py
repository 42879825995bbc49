"""HTTP routes of native services (issue 10, ABI 1.1): a service serves
/services/<name>/<subpath> with the node's authentication; viewers only on
read-only routes; the route follows hot reload like methods (new requests go to
the new version, a request in flight finishes on the old one) and leaves the
server when the service stops or its folder is removed. The route table the
auth walk reads (GET /routes) lists them."""
import json
import shutil
import threading
import time

from conftest import wait_until
from test_services import TEST_SERVICES, install, services, state_of, svc_node  # noqa: F401 (fixture)

GREETING = "/services/hello/greeting"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_service_route_answers_with_the_nodes_authentication(svc_node):
    # no credentials: 401 with the Bearer challenge, like every protected route
    r = svc_node.request("GET", GREETING, auth=False)
    assert r.status == 401, r
    assert r.headers.get("WWW-Authenticate", "").startswith('Bearer realm="p2p"')
    r = svc_node.request("GET", GREETING, headers=bearer("not-a-token"), auth=False)
    assert r.status == 401, r
    # admin: the service's text, from the running version
    r = svc_node.get(GREETING + "?name=ops")
    assert r.status == 200, r
    assert r.text == "Hello, ops! (hello 1.0.0)\n"
    assert r.headers.get("Content-Type", "").startswith("text/plain")
    # HEAD on the GET route
    r = svc_node.request("HEAD", GREETING)
    assert r.status == 200, r
    # a viewer may GET a read-only route, not POST the other one
    viewer = svc_node.new_token(role="viewer")
    r = svc_node.request("GET", GREETING, headers=bearer(viewer), auth=False)
    assert r.status == 200 and r.text.startswith("Hello, world!"), r
    r = svc_node.request("POST", "/services/hello/echo", body=b'{"a":1}',
                         headers={**bearer(viewer), "Content-Type": "application/json"}, auth=False)
    assert r.status == 403, r
    assert "viewer" in r.json()["error"]
    # the admin may: the body comes back with its content type
    r = svc_node.request("POST", "/services/hello/echo", body=b'{"a":1}',
                         headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.json() == {"a": 1}, r
    # a wrong method on the service's path: 405 naming the one it serves
    r = svc_node.request("DELETE", GREETING)
    assert r.status == 405 and r.headers.get("Allow") == "GET", r
    # the service detail route still answers for the service itself
    assert svc_node.get("/services/hello").json()["name"] == "hello"
    # the table lists the routes with their owner and auth class
    table = svc_node.get("/routes").json()["routes"]
    mine = {(e["method"], e["path"], e["auth"], e["owner"]) for e in table}
    assert ("GET", GREETING, "any", "services") in mine
    assert ("POST", "/services/hello/echo", "any", "services") in mine


def test_a_route_follows_reload_and_leaves_with_the_service(svc_node):
    # a request in flight across the reload
    assert svc_node.get(GREETING).text.endswith("(hello 1.0.0)\n")
    answers, failures, stop = [], [], threading.Event()
    per_thread = [[], []]

    def caller(mine):
        while not stop.is_set():
            try:
                r = svc_node.get(GREETING)
                if r.status == 200:
                    v = r.text.strip().rsplit(" ", 1)[-1].rstrip(")")
                    answers.append(v)
                    mine.append(v)
                else:
                    failures.append(r)
            except Exception as e:  # a transport failure is a failed request too
                failures.append(repr(e))

    threads = [threading.Thread(target=caller, args=(per_thread[i],)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    install(svc_node.sdir, so=TEST_SERVICES / "hello-2.0.0" / "service.so", version="2.0.0")
    wait_until(lambda: answers and answers[-1] == "2.0.0", 10, "requests answered by 2.0.0")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(10)
    assert failures == []
    # each client, once answered by 2.0.0, is only ever answered by it (two clients'
    # answers interleave in `answers`: one may still append a 1.0.0 answer it got first)
    for mine in per_thread:
        if "2.0.0" in mine:
            first_new = mine.index("2.0.0")
            assert set(mine[:first_new]) <= {"1.0.0"} and all(v == "2.0.0" for v in mine[first_new:])
    assert "2.0.0" in answers
    # stopped: the route is gone from the table and the path answers 404 (no such service route)
    assert svc_node.result("services/stop", {"name": "hello"})["state"] == "stopped"
    r = svc_node.get(GREETING)
    assert r.status in (404, 503), r
    assert GREETING not in {e["path"] for e in svc_node.get("/routes").json()["routes"]}
    # started again: served again
    assert svc_node.result("services/start", {"name": "hello"})["state"] == "running"
    assert svc_node.get(GREETING).text.endswith("(hello 2.0.0)\n")
    # folder removed: gone
    shutil.rmtree(svc_node.sdir / "hello")
    wait_until(lambda: "hello" not in services(svc_node), 5, "hello gone")
    r = svc_node.get(GREETING)
    assert r.status in (404, 503), r
    assert svc_node.get("/health").status == 200
