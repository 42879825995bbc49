#!/usr/bin/env python3
"""pyhello: an example exec service for p2pcore (docs/services.md walks through it).

The node starts this program and speaks JSON-RPC 2.0 with it, one JSON message
per line: requests from the node arrive on stdin, answers go to stdout. Nothing
but the standard library. One thread, no blocking on the node: a call that needs
another node's answer ("ping_node") sends a request to the node and answers its
caller when the node's answer comes back, while other calls go on.
"""
import heapq
import json
import select
import sys
import time

SERVICE = {"name": "?", "version": "?", "node_id": "?", "settings": {}}
next_id = 0
waiting = {}   # our request id -> function(answer message) for requests we sent the node
timers = []    # (when, seq, function): "sleep" answers later without blocking others


def send(msg):
    msg["jsonrpc"] = "2.0"
    sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def reply(req_id, result):
    send({"id": req_id, "result": result})


def error(req_id, code, message):
    send({"id": req_id, "error": {"code": code, "message": message}})


def log(level, message):
    send({"method": "log", "params": {"level": level, "message": message}})


def ask_node(method, params, then):
    """Sends a request to the node ("call", "state.get", ...); `then(answer)` runs
    with the node's answer message."""
    global next_id
    next_id += 1
    waiting[next_id] = then
    send({"id": next_id, "method": method, "params": params})


state = {"calls": 0}


def handle(req):
    method, params, rid = req.get("method"), req.get("params") or {}, req.get("id")
    if method == "initialize":
        SERVICE.update(service=params.get("service"), version=params.get("version"),
                       node_id=params.get("node_id"), settings=params.get("settings") or {})
        # the persisted state (kept by the node, survives restarts and reloads)
        ask_node("state.get", {}, lambda a: state.update(a.get("result") or {}))
        log("info", f"pyhello {SERVICE['version']} ready on {SERVICE['node_id']}")
        reply(rid, {"ok": True})
    elif method == "shutdown":
        log("info", "shutting down")
        sys.exit(0)
    elif method == "echo":
        reply(rid, {"echo": params, "greeting": SERVICE["settings"].get("greeting", "Hello"),
                    "version": SERVICE["version"], "node_id": SERVICE["node_id"]})
    elif method == "add":
        numbers = params.get("numbers") if isinstance(params, dict) else None
        if not isinstance(numbers, list) or not all(isinstance(n, (int, float)) for n in numbers):
            error(rid, -32602, "numbers must be a list of numbers")
            return
        state["calls"] = state.get("calls", 0) + 1
        ask_node("state.save", {"state": state}, lambda a: None)
        send({"method": "metric", "params": {"type": "counter", "name": "additions", "value": 1}})
        reply(rid, {"sum": sum(numbers), "calls": state["calls"]})
    elif method == "ping_node":
        target = params.get("target") if isinstance(params, dict) else None
        if not isinstance(target, str):
            error(rid, -32602, "target (a node id, role:NAME or all) is required")
            return

        def answered(a):
            if "error" in a:
                error(rid, a["error"].get("code", -32000), a["error"].get("message", "failed"))
            else:
                reply(rid, {"asked": target, "answer": a["result"]})
        ask_node("call", {"method": "system/ping", "params": {"message": "from pyhello"}, "target": target},
                 answered)
    elif method == "remember":
        if not isinstance(params, dict) or not isinstance(params.get("key"), str):
            error(rid, -32602, "remember needs {key: string, value: any, ttl_ms?: integer}")
            return
        ask_node("cache.set", {"key": params["key"], "value": params.get("value"),
                               "ttl_ms": params.get("ttl_ms", 60000)},
                 lambda a: reply(rid, True) if "result" in a else error(rid, -32000, a["error"]["message"]))
    elif method == "recall":
        if not isinstance(params, dict) or not isinstance(params.get("key"), str):
            error(rid, -32602, "recall needs {key: string}")
            return
        ask_node("cache.get", {"key": params["key"]},
                 lambda a: reply(rid, a["result"]) if "result" in a else error(rid, -32000, a["error"]["message"]))
    elif method == "set_password":
        # secrets go to the node's vault (encrypted at rest), never into the state
        if not isinstance(params, dict) or not isinstance(params.get("password"), str):
            error(rid, -32602, "set_password needs {password: string}")
            return
        ask_node("secret.set", {"name": "password", "value": params["password"]},
                 lambda a: reply(rid, True) if "result" in a else error(rid, -32000, a["error"]["message"]))
    elif method == "check_password":
        given = params.get("password") if isinstance(params, dict) else None
        ask_node("secret.get", {"name": "password"},
                 lambda a: reply(rid, a.get("result", {}).get("found", False)
                                 and a["result"]["value"] == given))
    elif method == "sleep":
        ms = params.get("ms", 0) if isinstance(params, dict) else 0
        heapq.heappush(timers, (time.monotonic() + ms / 1000.0, rid, lambda: reply(rid, {"slept_ms": ms})))
    elif method == "crash":
        print("crashing on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    elif rid is not None:
        error(rid, -32601, f"no method {method}")


def main():
    buf = b""
    while True:
        timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else None
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        while timers and timers[0][0] <= time.monotonic():
            heapq.heappop(timers)[2]()
        if not ready:
            continue
        chunk = sys.stdin.buffer.read1(65536)
        if not chunk:
            return  # EOF: the node is gone or stopping us
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            msg = json.loads(line)
            if "method" in msg:
                handle(msg)
            elif msg.get("id") in waiting:
                waiting.pop(msg["id"])(msg)


if __name__ == "__main__":
    main()
