"""fastapi_ref.py — the reference JSON-RPC server for the benchmark.

The original P2P Core framework served its API with FastAPI on Uvicorn, one
worker process, over TLS. This file rebuilds the part the benchmark drives in
that stack, so that `bench/run.sh` can measure p2p against it on the same
machine, with the same load tools and the same requests:

  POST /rpc    JSON-RPC 2.0: system/ping, system/get_system_info, pyhello/echo;
               -32700 / -32600 / -32601 for bad JSON, bad requests, unknown methods.
               The original's request shape (no "jsonrpc" member, string id) is accepted.
  GET  /health 200 {"status": "ok", ...}

The handlers do honest, cheap work: get_system_info gathers the same kind of
facts as the node's built-in `system` service (hostname, OS, kernel, CPU,
memory, disks, interfaces, uptime) from the standard library and /proc, /sys,
on every call, as the original did; nothing sleeps. pyhello/echo is the example
exec service's method (services/pyhello/main.py) as the original would have
served it: a method of a service in the server's own process, answering the
same result (bench/services.py compares the two). Endpoints are `async def`
and read the body with `await request.json()` — the cheapest FastAPI path, so
the reference is measured at its best.

If P2P_BENCH_TOKEN is set, /rpc requires `Authorization: Bearer <token>` (a
constant-time compare), so an authenticated benchmark pays the same check on
both sides.

Run (bench/run.sh does this):
  /usr/bin/python3 -m uvicorn --app-dir bench fastapi_ref:app --host 127.0.0.1 \
      --port PORT --ssl-keyfile KEY --ssl-certfile CERT --log-level warning --no-access-log
Uvicorn speaks HTTP/1.1 only (no HTTP/2).
"""

import array
import fcntl
import hmac
import os
import platform
import socket
import struct
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

NODE_ID = os.environ.get("P2P_BENCH_NODE_ID", "bench-ref")
TOKEN = os.environ.get("P2P_BENCH_TOKEN", "")
STARTED = time.time()

app = FastAPI(title="p2p bench reference", docs_url=None, redoc_url=None, openapi_url=None)

# Filesystems that are not "real disks" (same idea as psutil.disk_partitions(all=False)).
_PSEUDO_FS = {
    "proc", "sysfs", "devtmpfs", "devpts", "tmpfs", "cgroup", "cgroup2", "pstore", "bpf",
    "securityfs", "debugfs", "tracefs", "configfs", "fusectl", "mqueue", "hugetlbfs",
    "autofs", "binfmt_misc", "rpc_pipefs", "nsfs", "ramfs", "efivarfs", "selinuxfs",
    "fuse.gvfsd-fuse", "fuse.portal", "squashfs", "overlay", "shm",
}

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B


def _read(path, default=""):
    try:
        with open(path, "r") as f:
            return f.read()
    except OSError:
        return default


def _os_pretty_name():
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _cpu_model():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _meminfo_total():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _disks():
    out = []
    seen = set()
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        dev, mnt, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
        if fstype in _PSEUDO_FS or mnt in seen:
            continue
        seen.add(mnt)
        try:
            st = os.statvfs(mnt)
        except OSError:
            continue
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        out.append({"device": dev, "mountpoint": mnt, "fstype": fstype,
                    "total_bytes": total, "used_bytes": used, "free_bytes": free})
    return out


def _ipv4(sock, name):
    req = struct.pack("256s", name.encode()[:15])
    try:
        addr = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), SIOCGIFADDR, req)[20:24])
        mask = fcntl.ioctl(sock.fileno(), SIOCGIFNETMASK, req)[20:24]
    except OSError:
        return None
    prefix = bin(struct.unpack("!I", mask)[0]).count("1")
    return {"family": "ipv4", "address": addr, "prefix_len": prefix}


def _ipv6_by_ifname():
    res = {}
    for line in _read("/proc/net/if_inet6").splitlines():
        p = line.split()
        if len(p) < 6:
            continue
        raw = bytes.fromhex(p[0])
        res.setdefault(p[5], []).append({
            "family": "ipv6",
            "address": socket.inet_ntop(socket.AF_INET6, raw),
            "prefix_len": int(p[2], 16),
        })
    return res


def _interfaces():
    v6 = _ipv6_by_ifname()
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            flags = int(_read(f"/sys/class/net/{name}/flags", "0x0").strip() or "0", 16)
            addrs = []
            a4 = _ipv4(s, name)
            if a4:
                addrs.append(a4)
            addrs.extend(v6.get(name, []))
            out.append({
                "name": name,
                "mac": _read(f"/sys/class/net/{name}/address").strip() or None,
                "up": bool(flags & 0x1),
                "loopback": bool(flags & 0x8),
                "addresses": addrs,
            })
    return out


def _uptime():
    try:
        return float(_read("/proc/uptime", "0").split()[0])
    except (ValueError, IndexError):
        return None


def system_ping(params):
    return {"pong": True, "node_id": NODE_ID, "time": time.time()}


def system_get_system_info(params):
    u = platform.uname()
    return {
        "node_id": NODE_ID,
        "hostname": socket.gethostname(),
        "os": _os_pretty_name(),
        "platform": u.system,
        "kernel": u.release,
        "arch": u.machine,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_total_bytes": _meminfo_total(),
        "disks": _disks(),
        "network": {"interfaces": _interfaces()},
        "uptime_seconds": _uptime(),
        "process_uptime_seconds": time.time() - STARTED,
    }


# The answer of services/pyhello's echo, field for field; "greeting" and
# "version" are that service's manifest settings and version.
def pyhello_echo(params):
    return {"echo": params, "greeting": "Hi", "version": "1.0.0", "node_id": NODE_ID}


METHODS = {
    "system/ping": system_ping,
    "system/get_system_info": system_get_system_info,
    "pyhello/echo": pyhello_echo,
}


def _error(code, message, rid=None, status=200):
    return JSONResponse({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid},
                        status_code=status)


def _authorized(request):
    if not TOKEN:
        return True
    got = request.headers.get("authorization", "")
    return hmac.compare_digest(got.encode(), ("Bearer " + TOKEN).encode())


@app.get("/health")
async def health():
    return {"status": "healthy", "node_id": NODE_ID, "uptime_seconds": time.time() - STARTED}


@app.post("/rpc")
async def rpc(request: Request):
    if not _authorized(request):
        return _error(-32001, "unauthorized", status=401)
    try:
        req = await request.json()
    except Exception:
        return _error(-32700, "Parse error")
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return _error(-32600, "Invalid Request", req.get("id") if isinstance(req, dict) else None)
    rid = req.get("id")
    fn = METHODS.get(req["method"])
    if fn is None:
        return _error(-32601, "Method not found", rid)
    try:
        result = fn(req.get("params") or {})
    except Exception as e:  # the reference reports, it doesn't crash
        return _error(-32603, f"Internal error: {e}", rid)
    return JSONResponse({"jsonrpc": "2.0", "result": result, "id": rid})
