"""Multi-host topologies for system tests, built from Linux network namespaces.

Every node lives in its own network namespace; namespaces are wired with veth pairs
to Linux bridges (one bridge = one subnet) that live in a private "switch" namespace.
The test process itself (the root namespace) gets one veth into every bridge with a
test-only address on that subnet, so it reaches every node's namespace address
directly (HTTP, TLS, health checks) without entering a namespace.

Faults are made with nftables *inside the node namespaces* (this kernel has no tc
netem): partitions are drop rules per peer address, packet loss is
`numgen random mod 100 < N drop`. Nothing is ever written to the host's nft ruleset.

Isolation and cleanup:
  - Every name carries the owner's PID and a random tag (`p2pt-<pid>-<tag>-<name>`), so
    parallel runs never collide; interface names inside namespaces are private to them.
  - Subnets are picked at random from 10.200.0.0/13 (10.200.x.0/24 .. 10.207.x.0/24) and
    checked against every address and route of the host (all tables) under a lock file,
    so they never overlap anything the host or a parallel run uses.
  - The only objects in the root namespace are the test's veths (`p2p<tag><n>`, alias
    `p2p-netns-test <pid>`) and the connected routes of their addresses; IPv6 is turned
    off on them so the host sends nothing unasked on them.
  - teardown() kills what runs inside the namespaces (processes of this run only),
    deletes the namespaces (which destroys their veths, bridges and nft tables) and any
    root-side veth still left. It runs from fixture finalizers, so a failed test
    cleans up too. Leftovers of a run whose PID is gone (a killed pytest) are removed
    the next time a Topology is created.

Usage:
    topo = Topology()
    topo.add_namespace("A"); topo.add_namespace("B")
    topo.add_subnet("lan")                      # or add_subnet("lan", "10.201.7.0/24")
    topo.connect("A", "lan")                    # -> "eth0"; A gets 10.x.y.1
    topo.connect("B", "lan")                    # B gets 10.x.y.2
    coord = node_in_namespace(node_factory, topo, "A", "coord")
    worker = node_in_namespace(node_factory, topo, "B", "w1", coordinator=False, join=coord)
    topo.partition([["A"], ["B"]]); ...; topo.heal()
    topo.loss("B", 30); ...; topo.clear_loss("B")
    topo.teardown()

Or use the `topology` fixture below (import it into a test module:
`from netns import topology`), which skips when namespaces are not available.
"""
import fcntl
import ipaddress
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

PREFIX = "p2pt"
ALIAS = "p2p-netns-test"
LOCK_PATH = "/run/lock/p2p-netns-test.lock"
POOL = ipaddress.ip_network("10.200.0.0/13")
HOST = "host"  # the test process's namespace, as a member of partition() groups

NFT_TABLE = "p2ptest"
NFT_SETUP = f"""
table inet {NFT_TABLE} {{
    chain partition_in {{ }}
    chain partition_out {{ }}
    chain loss_in {{ }}
    chain loss_out {{ }}
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "lo" accept
        jump partition_in
        jump loss_in
    }}
    chain output {{
        type filter hook output priority -10; policy accept;
        oifname "lo" accept
        jump partition_out
        jump loss_out
    }}
}}
"""


class NetnsError(Exception):
    pass


# ICMP echo with a raw socket: argv = ip count interval wait; prints "<n>% packet loss".
_PING = r"""
import os, select, socket, struct, sys, time
ip, count, interval, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
got = set()
def receive(until):
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return
        data, src = s.recvfrom(2048)
        hl = (data[0] & 0x0f) * 4
        typ, _, _, rid, seq = struct.unpack("!BBHHH", data[hl:hl + 8])
        if typ == 0 and rid == ident and src[0] == ip:
            got.add(seq)
for seq in range(count):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"p2p-netns-test"
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
    try:
        s.sendto(pkt, (ip, 0))
    except OSError:
        pass
    receive(time.monotonic() + interval)
receive(time.monotonic() + wait)
print("%d packets transmitted, %d received, %g%% packet loss" % (count, len(got), 100.0 * (count - len(got)) / count))
"""


def _cmd(argv, timeout=10, check=True, input=None):
    """Runs a command (bounded); raises NetnsError with its output when check fails."""
    try:
        cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                            input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"{' '.join(map(str, argv))}: no exit within {timeout}s") from e
    if check and cp.returncode != 0:
        raise NetnsError(f"{' '.join(map(str, argv))}: exit {cp.returncode}: {cp.stderr.strip() or cp.stdout.strip()}")
    return cp


def available():
    """(True, "") when this process can create network namespaces, veths and bridges and
    run nft in them; else (False, reason)."""
    if os.geteuid() != 0:
        return False, "network namespace tests need root"
    for tool in ("ip", "nft"):
        if _cmd(["sh", "-c", f"command -v {tool}"], check=False).returncode != 0:
            return False, f"'{tool}' is not installed"
    name = f"{PREFIX}-{os.getpid()}-probe{random.randrange(1 << 16):04x}"
    try:
        _cmd(["ip", "netns", "add", name])
    except NetnsError as e:
        return False, f"'ip netns add' does not work here: {e}"
    try:
        _cmd(["ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        _cmd(["ip", "-n", name, "link", "add", "b0", "type", "bridge"])
        _cmd(["ip", "netns", "exec", name, "nft", "-f", "-"], input=NFT_SETUP)
    except NetnsError as e:
        return False, f"veth, bridge or nft does not work in a network namespace: {e}"
    finally:
        _cmd(["ip", "netns", "del", name], check=False)
    return True, ""


def _pid_alive(pid):
    """True while `pid` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _kill_pids(pids, grace=3.0):
    """SIGTERM, then SIGKILL after `grace` seconds, for the given PIDs (bounded)."""
    pids = [p for p in pids if p != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _netns_pids(ns):
    cp = _cmd(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in cp.stdout.split()] if cp.returncode == 0 else []


def cleanup_stale():
    """Removes namespaces and root-side veths of earlier runs whose process is gone."""
    pat = re.compile(rf"^{PREFIX}-(\d+)-")
    cp = _cmd(["ip", "-j", "netns", "list"], check=False)
    try:
        names = [e["name"] for e in json.loads(cp.stdout or "[]")]
    except ValueError:
        names = []
    for ns in names:
        m = pat.match(ns)
        if m and not _pid_alive(int(m.group(1))):
            _kill_pids(_netns_pids(ns), grace=1.0)
            _cmd(["ip", "netns", "del", ns], check=False)
    cp = _cmd(["ip", "-j", "link", "show"], check=False)
    try:
        links = json.loads(cp.stdout or "[]")
    except ValueError:
        links = []
    for link in links:
        alias = link.get("ifalias", "")
        if alias.startswith(ALIAS + " "):
            try:
                pid = int(alias.split()[1])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(pid):
                _cmd(["ip", "link", "del", link["ifname"]], check=False)


def _host_networks():
    """Every network the host knows of: interface addresses and routes of all tables."""
    nets = []
    cp = _cmd(["ip", "-j", "addr", "show"], check=False)
    for link in json.loads(cp.stdout or "[]"):
        for a in link.get("addr_info", []):
            try:
                nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
            except (KeyError, ValueError):
                pass
    for fam in ("-4", "-6"):
        cp = _cmd(["ip", "-j", fam, "route", "show", "table", "all"], check=False)
        for r in json.loads(cp.stdout or "[]"):
            dst = r.get("dst", "default")
            if dst == "default":
                continue
            try:
                nets.append(ipaddress.ip_network(dst, strict=False))
            except ValueError:
                pass
    return nets


class _Lock:
    """An exclusive flock (bounded wait) around subnet choice and address setup."""

    def __enter__(self):
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        self.f = open(LOCK_PATH, "a")
        deadline = time.monotonic() + 30
        while True:
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.f.close()
                    raise NetnsError(f"{LOCK_PATH}: lock not free within 30 s")
                time.sleep(0.05)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


class Topology:
    """Namespaces, subnets (bridges), links and faults for one test; see the module doc."""

    HOST = HOST

    def __init__(self):
        cleanup_stale()
        self.tag = f"{random.randrange(1 << 24):06x}"
        self.base = f"{PREFIX}-{os.getpid()}-{self.tag}"
        self.namespaces = {}   # name -> real netns name
        self.ifaces = {}       # name -> [ {ifname, bridge, ip (interface), ...} ]
        self.bridges = {}      # name -> {"net", "br", "host_if", "host_ip", "next"}
        self.procs = []
        self.nft = set()       # namespaces with our nft table
        self.torn_down = False
        self.switch = f"{self.base}-sw"
        _cmd(["ip", "netns", "add", self.switch])
        self._ns_ready(self.switch)

    # -- building -----------------------------------------------------------------------------
    def _ns_ready(self, ns):
        _cmd(["ip", "-n", ns, "link", "set", "lo", "up"])

    def netns(self, name):
        """The real namespace name of `name` (for `ip netns exec`, Node(netns=...))."""
        try:
            return self.namespaces[name]
        except KeyError:
            raise NetnsError(f"no namespace '{name}' in this topology") from None

    def add_namespace(self, name):
        """A new empty namespace (loopback up); returns its real name."""
        if name in self.namespaces or name == HOST:
            raise NetnsError(f"namespace '{name}' exists already")
        if not re.fullmatch(r"[A-Za-z0-9_.]{1,24}", name):
            raise NetnsError(f"namespace name '{name}': 1..24 of [A-Za-z0-9_.]")
        real = f"{self.base}-{name}"
        _cmd(["ip", "netns", "add", real])
        self.namespaces[name] = real
        self.ifaces[name] = []
        self._ns_ready(real)
        return real

    def add_subnet(self, name, cidr=None):
        """A bridge for subnet `cidr` (an unused 10.200.0.0/13 /24 when None), with the
        test process attached at the subnet's last host address. Returns the network."""
        if name in self.bridges:
            raise NetnsError(f"subnet '{name}' exists already")
        idx = len(self.bridges)
        br = f"br{idx}"
        host_if = f"p2p{self.tag}{idx}"
        with _Lock():
            used = _host_networks()
            if cidr is None:
                net = self._pick_subnet(used)
            else:
                net = ipaddress.ip_network(cidr, strict=False)
                clash = [u for u in used if u.version == net.version and u.overlaps(net)]
                if clash:
                    raise NetnsError(f"subnet {net} overlaps {clash[0]} of the host")
            hosts = list(net.hosts()) if net.num_addresses <= 65536 else None
            if not hosts or len(hosts) < 3:
                raise NetnsError(f"subnet {net}: too small")
            host_ip = hosts[-1]
            sw = self.switch
            _cmd(["ip", "-n", sw, "link", "add", br, "type", "bridge"])
            _cmd(["ip", "-n", sw, "link", "set", br, "up"])
            _cmd(["ip", "link", "add", host_if, "type", "veth", "peer", "name", f"h{idx}", "netns", sw])
            self.bridges[name] = {"net": net, "br": br, "host_if": host_if, "host_ip": str(host_ip),
                                  "next": 0, "ports": 0}
            _cmd(["ip", "link", "set", host_if, "alias", f"{ALIAS} {os.getpid()}"])
            _cmd(["sysctl", "-q", "-w", f"net.ipv6.conf.{host_if}.disable_ipv6=1"], check=False)
            _cmd(["ip", "-n", sw, "link", "set", f"h{idx}", "master", br, "up"])
            _cmd(["ip", "addr", "add", f"{host_ip}/{net.prefixlen}", "dev", host_if])
            _cmd(["ip", "link", "set", host_if, "up"])
        return net

    add_bridge = add_subnet

    @staticmethod
    def _pick_subnet(used):
        for _ in range(200):
            net = ipaddress.ip_network((int(POOL.network_address) + (random.randrange(POOL.num_addresses >> 8) << 8),
                                        24))
            if not any(u.version == 4 and u.overlaps(net) for u in used):
                return net
        raise NetnsError(f"no free /24 found in {POOL}")

    def connect(self, ns, bridge, ip=None):
        """Plugs namespace `ns` into subnet `bridge` with a new veth; `ip` ("10.1.2.3" or
        "10.1.2.3/24") or the next free address (.1, .2, ...). Returns the interface
        name inside the namespace (eth0, eth1, ...)."""
        real = self.netns(ns)
        try:
            b = self.bridges[bridge]
        except KeyError:
            raise NetnsError(f"no subnet '{bridge}' in this topology") from None
        net = b["net"]
        taken = {i["ip"] for lst in self.ifaces.values() for i in lst} | {b["host_ip"]}
        if ip is None:
            hosts = net.hosts()
            addr = next((str(h) for h in hosts if str(h) not in taken), None)
            if addr is None:
                raise NetnsError(f"subnet {net} is full")
        else:
            iface = ipaddress.ip_interface(ip if "/" in str(ip) else f"{ip}/{net.prefixlen}")
            if iface.ip not in net:
                raise NetnsError(f"{ip} is not in subnet {bridge} ({net})")
            addr = str(iface.ip)
            if addr in taken:
                raise NetnsError(f"{addr} is taken")
        ifname = f"eth{len(self.ifaces[ns])}"
        port = f"{b['br']}p{b['ports']}"  # switch-side names are unique per switch namespace
        b["ports"] += 1
        sw = self.switch
        _cmd(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", real])
        _cmd(["ip", "-n", sw, "link", "set", port, "master", b["br"], "up"])
        _cmd(["ip", "-n", real, "addr", "add", f"{addr}/{net.prefixlen}", "dev", ifname])
        _cmd(["ip", "-n", real, "link", "set", ifname, "up"])
        self.ifaces[ns].append({"ifname": ifname, "bridge": bridge, "ip": addr})
        return ifname

    def route(self, ns, dst, via):
        """Adds a route in `ns` (e.g. to reach another subnet through a router namespace)."""
        _cmd(["ip", "-n", self.netns(ns), "route", "add", str(dst), "via", str(via)])

    # -- queries ------------------------------------------------------------------------------
    def addr(self, ns, bridge=None):
        """`ns`'s address on `bridge` (its first address when None)."""
        for i in self.ifaces.get(ns, []):
            if bridge is None or i["bridge"] == bridge:
                return i["ip"]
        raise NetnsError(f"namespace '{ns}' has no address" + (f" on '{bridge}'" if bridge else ""))

    def addrs(self, ns):
        if ns == HOST:
            return [b["host_ip"] for b in self.bridges.values()]
        return [i["ip"] for i in self.ifaces.get(ns, [])]

    def host_addr(self, bridge):
        """The test process's address on `bridge`."""
        return self.bridges[bridge]["host_ip"]

    def subnet(self, bridge):
        return self.bridges[bridge]["net"]

    # -- running ------------------------------------------------------------------------------
    def exec_prefix(self, ns):
        return ["ip", "netns", "exec", self.netns(ns)]

    def run(self, ns, argv, timeout=10, check=False, input=None):
        """Runs argv inside `ns` to completion (bounded); returns the CompletedProcess."""
        return _cmd(self.exec_prefix(ns) + list(argv), timeout=timeout, check=check, input=input)

    def popen(self, ns, argv, **kw):
        """Starts argv inside `ns`; the process is killed at teardown if still running.
        `ip netns exec` execs argv, so the Popen's pid is the program's own."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.exec_prefix(ns) + [str(a) for a in argv], **kw)
        self.procs.append(p)
        return p

    def tcp_connect(self, ns, ip, port, timeout=1.0):
        """True when a TCP connection from inside `ns` to ip:port is established within
        `timeout` seconds."""
        code = ("import socket,sys\n"
                "try:\n"
                f"    socket.create_connection(({str(ip)!r}, {int(port)}), timeout={float(timeout)}).close()\n"
                "except OSError as e:\n"
                "    print(e); sys.exit(1)\n")
        return self.run(ns, [sys.executable, "-c", code], timeout=timeout + 10).returncode == 0

    def ping(self, ns, ip, count=40, interval=0.05, wait=1.0):
        """ICMP echo from inside `ns` to IPv4 `ip`: `count` requests `interval` s apart,
        replies awaited `wait` s after the last; returns the loss in percent (float).
        A raw socket in Python (the `ping` binary is not installed everywhere)."""
        cp = self.run(ns, [sys.executable, "-c", _PING, str(ip), str(int(count)), str(float(interval)),
                           str(float(wait))], timeout=count * interval + wait + 10)
        m = re.search(r"([\d.]+)% packet loss", cp.stdout)
        if cp.returncode != 0 or not m:
            raise NetnsError(f"ping from {ns} to {ip} failed: {cp.stdout} {cp.stderr}")
        return float(m.group(1))

    # -- faults -------------------------------------------------------------------------------
    def link_down(self, ns, ifname):
        _cmd(["ip", "-n", self.netns(ns), "link", "set", ifname, "down"])

    def link_up(self, ns, ifname):
        _cmd(["ip", "-n", self.netns(ns), "link", "set", ifname, "up"])

    def _nft(self, ns, script):
        real = self.netns(ns)
        if ns not in self.nft:
            _cmd(["ip", "netns", "exec", real, "nft", "-f", "-"], input=NFT_SETUP)
            self.nft.add(ns)
        _cmd(["ip", "netns", "exec", real, "nft", "-f", "-"], input=script)

    @staticmethod
    def _addr_rules(direction, addrs):
        key = "saddr" if direction == "in" else "daddr"
        rules = []
        for fam, sel in ((4, "ip"), (6, "ip6")):
            group = [a for a in addrs if ipaddress.ip_address(a).version == fam]
            if group:
                rules.append(f"{sel} {key} {{ {', '.join(group)} }} drop")
        return rules

    def partition(self, groups):
        """Cuts every namespace in one group off from every namespace in the others (both
        directions, all protocols), by drop rules inside the namespaces. HOST may be a
        member: the test process is then cut off too (by rules in the other namespaces;
        the host's own ruleset is never touched). Namespaces in no group are not
        affected. Replaces any earlier partition."""
        groups = [list(g) for g in groups]
        members = [m for g in groups for m in g]
        for m in members:
            if m != HOST:
                self.netns(m)
        if len(set(members)) != len(members):
            raise NetnsError("a namespace appears in two groups")
        self.heal()
        for gi, g in enumerate(groups):
            others = [a for gj, h in enumerate(groups) if gj != gi for m in h for a in self.addrs(m)]
            if not others:
                continue
            for ns in g:
                if ns == HOST:
                    continue
                rules = [f"add rule inet {NFT_TABLE} partition_in {r}" for r in self._addr_rules("in", others)]
                rules += [f"add rule inet {NFT_TABLE} partition_out {r}" for r in self._addr_rules("out", others)]
                self._nft(ns, "\n".join(rules) + "\n")

    def heal(self):
        """Removes every partition."""
        for ns in sorted(self.nft):
            self._nft(ns, f"flush chain inet {NFT_TABLE} partition_in\nflush chain inet {NFT_TABLE} partition_out\n")

    def loss(self, ns, percent, direction="in"):
        """Drops `percent` % of the packets entering `ns` (direction "in"), leaving it
        ("out"), or both, chosen at random per packet; loopback traffic is spared.
        Replaces an earlier loss setting of `ns`."""
        if not 0 <= percent <= 100:
            raise NetnsError(f"loss {percent}%: not in 0..100")
        if direction not in ("in", "out", "both"):
            raise NetnsError(f"loss direction '{direction}': in, out or both")
        self.clear_loss(ns)
        script = ""
        for d in ("in", "out"):
            if direction in (d, "both") and percent > 0:
                cond = "" if percent >= 100 else f"numgen random mod 100 < {int(percent)} "
                script += f"add rule inet {NFT_TABLE} loss_{d} {cond}drop\n"
        if script:
            self._nft(ns, script)

    def clear_loss(self, ns):
        if ns in self.nft:
            self._nft(ns, f"flush chain inet {NFT_TABLE} loss_in\nflush chain inet {NFT_TABLE} loss_out\n")

    def ruleset(self, ns):
        """The nft ruleset of `ns`, for failure messages."""
        return self.run(ns, ["nft", "list", "ruleset"]).stdout

    # -- teardown -----------------------------------------------------------------------------
    def teardown(self):
        """Removes everything this topology made; safe to call twice. Processes still
        running inside its namespaces are stopped (SIGTERM, then SIGKILL)."""
        if self.torn_down:
            return
        self.torn_down = True
        errors = []
        for p in self.procs:
            if p.poll() is None:
                _kill_pids([p.pid], grace=2.0)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                errors.append(f"pid {p.pid} did not exit")
        for real in list(self.namespaces.values()) + [self.switch]:
            _kill_pids(_netns_pids(real), grace=3.0)
            cp = _cmd(["ip", "netns", "del", real], check=False)
            if cp.returncode != 0 and "No such file" not in cp.stderr:
                errors.append(f"ip netns del {real}: {cp.stderr.strip()}")
        for b in self.bridges.values():
            if _cmd(["ip", "link", "show", b["host_if"]], check=False).returncode == 0:
                _cmd(["ip", "link", "del", b["host_if"]], check=False)
        # a namespace goes when its last process has gone; wait until its links are gone
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = [b["host_if"] for b in self.bridges.values()
                    if _cmd(["ip", "link", "show", b["host_if"]], check=False).returncode == 0]
            if not left:
                break
            time.sleep(0.05)
        else:
            errors.append(f"root-side links still present: {left}")
        if errors:
            raise NetnsError("; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()


# ---- nodes in namespaces -----------------------------------------------------------------------


def node_in_namespace(factory, topo, ns, name, bridge=None, bind_address=None, **kw):
    """Creates (and by default starts) a Node from `factory` (conftest's NodeFactory)
    running inside namespace `ns`, reached by the test process at `ns`'s address on
    `bridge` (its first address when None). `bind_address` defaults to that address;
    pass "0.0.0.0" to listen on every interface of the namespace."""
    host = topo.addr(ns, bridge)
    return factory.create(name, netns=topo.netns(ns), host=host, bind_address=bind_address or host, **kw)


@pytest.fixture
def topology():
    """A fresh Topology, torn down after the test (also when it fails); skips when
    network namespaces cannot be used here."""
    ok, why = available()
    if not ok:
        pytest.skip(why)
    topo = Topology()
    try:
        yield topo
    finally:
        topo.teardown()
