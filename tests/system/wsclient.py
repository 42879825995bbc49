"""A minimal WebSocket client on the standard library (RFC 6455: masked
frames from the client, handshake over TLS with ALPN http/1.1), enough to drive
/ws/dashboard as a browser would, and to misbehave as a browser never would
(never read, flood, wrong Origin)."""
import base64
import json
import os
import socket
import struct
import time


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class WS:
    def __init__(self, node, origin="same", path="/ws/dashboard", timeout=5, rcvbuf=None, extra_headers=""):
        raw = socket.create_connection((node.host, node.port), timeout=timeout)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock = node.ssl_context(alpn=["http/1.1"]).wrap_socket(raw, server_hostname=node.host)
        key = base64.b64encode(os.urandom(16)).decode()
        if origin == "same":
            origin = node.url
        head = (f"GET {path} HTTP/1.1\r\nHost: {node.addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if origin:
            head += f"Origin: {origin}\r\n"
        self.sock.sendall((head + extra_headers + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        headers, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = headers.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        self.headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        self.body = self.buf
        self.closed = None

    # -- sending --------------------------------------------------------------------
    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def send(self, obj):
        self.send_frame(1, (obj if isinstance(obj, str) else json.dumps(obj)).encode())

    def auth(self, token, **kw):
        self.send(dict({"type": "auth", "token": token}, **kw))

    # -- receiving ---------------------------------------------------------------------
    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(None, "connection closed without a close frame")
            self.buf += chunk

    def recv_frame(self, timeout=5):
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not (b1 & 0x80), "a server frame must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv(self, timeout=5):
        """The next text message as JSON; answers pings; raises Closed on a close frame."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == 9:
                self.send_frame(10, payload)
                continue
            if op == 8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                self.closed = (code, payload[2:].decode(errors="replace"))
                raise Closed(code, payload[2:].decode(errors="replace"))
            if op == 1:
                return json.loads(payload)

    def wait_for(self, pred, timeout, what="a message"):
        """Reads messages until pred(msg); returns (msg, every message read)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; got {[m.get('type') for m in seen]}")
            try:
                m = self.recv(left)
            except TimeoutError:
                continue
            seen.append(m)
            if pred(m):
                return m, seen

    def expect_close(self, timeout=7):
        """Reads until the server's close frame; returns (code, reason, messages before it)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                seen.append(self.recv(max(0.01, deadline - time.monotonic())))
            except Closed as c:
                return c.code, c.reason, seen
            if time.monotonic() > deadline:
                raise AssertionError(f"not closed within {timeout} s; got {seen}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
