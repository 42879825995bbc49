"""Just enough of the gossip wire to forge datagrams in tests, as a member holding the
cluster gossip key would (a compromised worker, an old identity). Independent of the C
code on purpose, so the tests also check the documented formats:

  - the seal, version 2: src/membership/seal.h ("Wire format"), seal.c (p2p__seal,
    KEY_ID_LABEL, SENDER_LABEL);
  - the gossip packet, version 2: src/membership/codec.h (packet, frame, ALIVE, DEAD,
    NACK, CERT, sig), codec.c (put_alive_fields, ALIVE_TBS_LABEL, LEAVE_TBS_LABEL);
  - certificate ids: src/membership/records.h (first 8 bytes of SHA-256 of the DER).

No compression: a body is always sent as is (flag 0), which a node accepts at any size.
"""
import hashlib
import ipaddress
import os
import socket
import struct
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography import x509

SEAL_VERSION = 2                   # P2P_SEAL_VERSION
GOSSIP_VERSION = 2                 # P2P_GOSSIP_VERSION
ALIVE, DEAD, NACK, CERT = 5, 7, 4, 11   # p2p_gossip_type


def _h(label, data):
    return hashlib.sha256(label + data).digest()


def key_id(key):
    """The 4-byte key id of the clear header (p2p__seal_key_id)."""
    return _h(b"p2p-seal-key-id-v1", key)[:4]


def sender_id(node_id):
    """The 64-bit sender id of the inner header (p2p__seal_sender_id)."""
    return struct.unpack(">Q", _h(b"p2p-seal-sender-v1", node_id.encode())[:8])[0]


def cert_id(der):
    """A certificate's id (p2p__records_cert_id)."""
    return hashlib.sha256(der).digest()[:8]


def cert_der(pem):
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def seal(key, payload, sender, epoch, seq, cert=b"\0" * 8, now_ms=None):
    """A sealed datagram (seal.h): clear header (the AAD), then AES-256-GCM of the
    inner header and the payload, then the tag (AESGCM appends it)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    header = bytes([SEAL_VERSION, 0]) + key_id(key) + os.urandom(12)
    inner = struct.pack(">QQQQ", sender, epoch, seq, now_ms) + cert + struct.pack(">I", len(payload))
    return header + AESGCM(key).encrypt(header[6:18], inner + payload, header)


# ---- the gossip packet (codec.h) ---------------------------------------------------

def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def _addr(a):
    ip = ipaddress.ip_address(a)
    return bytes([ip.version]) + ip.packed


def _sig(cert, sig=b""):
    return cert + bytes([len(sig)]) + sig


def packet(*frames):
    """packet := version count frame{count}; frame := type u16-length body."""
    return bytes([GOSSIP_VERSION, len(frames)]) + b"".join(
        bytes([t]) + struct.pack(">H", len(body)) + body for t, body in frames)


def alive_fields(id, incarnation, port, addrs, role, meta=b"{}"):
    """The ALIVE body up to the signature (put_alive_fields)."""
    return (struct.pack(">I", incarnation) + _str(id) + struct.pack(">H", port) + bytes([len(addrs)]) +
            b"".join(_addr(a) for a in addrs) + _str(role) + struct.pack(">H", len(meta)) + meta)


def alive(id, incarnation, port, addrs, role, cert, key=None, meta=b"{}"):
    """An ALIVE frame naming certificate `cert`; signed with `key` (an EC private key)
    over p2p_gossip_alive_tbs, or unsigned (sig_len 0) when key is None."""
    fields = alive_fields(id, incarnation, port, addrs, role, meta)
    sig = b""
    if key is not None:
        sig = key.sign(b"p2p-alive-v2\0" + fields + cert, ec.ECDSA(hashes.SHA256()))
    return ALIVE, fields + _sig(cert, sig)


def leave(id, incarnation, cert=b"\0" * 8, key=None):
    """A DEAD with from == id (a leave), signed over p2p_gossip_leave_tbs or unsigned."""
    sig = b""
    if key is not None:
        tbs = b"p2p-leave-v2\0" + struct.pack(">I", incarnation) + _str(id) + cert
        sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return DEAD, struct.pack(">I", incarnation) + _str(id) + _str(id) + _sig(cert, sig)


def nack(seq):
    return NACK, struct.pack(">I", seq)


def cert_frame(der, cid=None):
    return CERT, (cid or cert_id(der)) + struct.pack(">H", len(der)) + der


def send(port, datagrams, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for d in datagrams:
            s.sendto(d, (host, port))
    finally:
        s.close()
