/*
 * codec.h — the membership gossip wire format, and the transmit-limited queue
 * that packs piggybacked broadcasts into datagrams. Pure: bytes in, structs out,
 * no I/O, no global state. Encryption is not done here: a datagram described
 * below is the plaintext that src/membership/seal.c seals.
 *
 * Datagram (all integers big-endian):
 *
 *     packet := version:u8 (= P2P_GOSSIP_VERSION) count:u8 (1..255) frame{count}
 *     frame  := type:u8 body_len:u16 body[body_len]
 *
 *     str    := len:u8 bytes[len]                       (no NUL inside)
 *     id     := str, 1..63 bytes of [A-Za-z0-9._-]
 *     addr   := family:u8 (4 | 6) bytes[4 | 16]         (binary IPv4 / IPv6)
 *
 *     PING     (1) seq:u32 target:str(id or empty) sender:id view
 *     ACK      (2) seq:u32 view
 *     PING_REQ (3) seq:u32 target:id addr port:u16
 *     NACK     (4) seq:u32
 *     ALIVE    (5) incarnation:u32 id port:u16 naddrs:u8(1..8) addr{naddrs}
 *                  role:str(0..31 of [A-Za-z0-9._-]) meta_len:u16(<= 8192) meta[meta_len]
 *                  sig
 *     SUSPECT  (6) incarnation:u32 id from:id
 *     DEAD     (7) incarnation:u32 id from:id sig  (a LEAVE is a DEAD with from == id;
 *                  only a leave may carry a signature: sig_len is 0 when from != id)
 *     SYNC_REQ (8) seq:u32   "send me your member list"
 *     SYNC     (9) seq:u32   opens a datagram of the sender's member list
 *                  (the ALIVE / SUSPECT frames after it), answering SYNC_REQ seq
 *     CERT_REQ (10) cert_id[8] id   "send me this certificate of node id"
 *     CERT     (11) cert_id[8] der_len:u16(1..P2P_GOSSIP_CERT_MAX) der[der_len]
 *
 *     sig    := cert_id[8] sig_len:u8(0..72) sig[sig_len]
 *               an ECDSA P-256 signature (DER) by the key of the certificate
 *               whose id is cert_id (the first 8 bytes of SHA-256 of its DER),
 *               over p2p_gossip_alive_tbs() / p2p_gossip_leave_tbs() (see
 *               records.h for who signs and who checks). sig_len 0: unsigned.
 *
 *     view   := live:u32 digest:u32   the sender's number of live members and
 *               the sum mod 2^32 of FNV-1a-32 of their ids (see swim.h)
 *
 * A PING with an empty target is a join ping: "answer me, whoever you are".
 * Ports are never 0. Meta is opaque to the codec (the node puts compact JSON
 * there: services, capabilities, metadata) but may not contain NUL bytes so it
 * can be held as a C string.
 *
 * Decoding is total: a byte string is either a well-formed packet, every frame
 * of which is valid, or an error; nothing is read outside [buf, buf+len) and
 * nothing is allocated. Errors: wrong version byte (-EPROTONOSUPPORT), a
 * count of 0, fewer frames than counted (so every truncation of a valid packet
 * is an error, even one at a frame boundary), bytes after the last counted
 * frame, a packet longer than P2P_GOSSIP_MAX_PACKET, frame type 0, a known
 * frame whose body is not consumed exactly, an invalid id/role/address/port,
 * counts or lengths over their limits (-EBADMSG). Frames of an unknown type
 * (12..255) are skipped by their length (they are part of the count), so a
 * later protocol revision can add message types without breaking older nodes;
 * they are not returned.
 *
 * Budget. Datagrams are built by a writer with a byte budget (default 1400 of
 * plaintext, leaving room for the seal's nonce and tag under a 1500-byte MTU).
 * Only one kind of frame can exceed it: an ALIVE with a large meta (up to
 * 8192 bytes, so a frame of at most P2P_GOSSIP_MAX_FRAME bytes). Such a frame
 * is never piggybacked; the queue hands it out alone, as its own datagram
 * (p2p_gossip_queue_fill with allow_oversize), which IP may fragment.
 */
#ifndef P2P_MEMBERSHIP_CODEC_H
#define P2P_MEMBERSHIP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_GOSSIP_VERSION 2      /* 2: signed ALIVE and leave, CERT_REQ/CERT */
#define P2P_GOSSIP_CERT_ID_LEN 8  /* bytes of a certificate id */
#define P2P_GOSSIP_SIG_MAX 72     /* bytes of an ECDSA P-256 signature in DER */
#define P2P_GOSSIP_CERT_MAX 2048  /* bytes of a certificate in DER */
#define P2P_GOSSIP_ID_MAX 63      /* bytes of a node id */
#define P2P_GOSSIP_ROLE_MAX 31    /* bytes of a role */
#define P2P_GOSSIP_MAX_ADDRS 8    /* addresses per node; the first is advertised */
#define P2P_GOSSIP_ADDRSTRLEN 46  /* INET6_ADDRSTRLEN */
#define P2P_GOSSIP_META_MAX 8192  /* bytes of meta */
#define P2P_GOSSIP_MAX_FRAMES 255 /* frames per packet */
#define P2P_GOSSIP_MAX_PACKET 65507
#define P2P_GOSSIP_HEADER_LEN 2
#define P2P_GOSSIP_FRAME_HDR 3
#define P2P_GOSSIP_SIG_FIELD (P2P_GOSSIP_CERT_ID_LEN + 1 + P2P_GOSSIP_SIG_MAX)
/* Largest frame: an ALIVE with every field at its maximum (a CERT is smaller). */
#define P2P_GOSSIP_MAX_FRAME                                                                                           \
    (P2P_GOSSIP_FRAME_HDR + 4 + 1 + P2P_GOSSIP_ID_MAX + 2 + 1 + P2P_GOSSIP_MAX_ADDRS * 17 + 1 + P2P_GOSSIP_ROLE_MAX +  \
     2 + P2P_GOSSIP_META_MAX + P2P_GOSSIP_SIG_FIELD)
#define P2P_GOSSIP_DEFAULT_BUDGET 1400

typedef enum p2p_gossip_type {
    P2P_GOSSIP_PING = 1,
    P2P_GOSSIP_ACK = 2,
    P2P_GOSSIP_PING_REQ = 3,
    P2P_GOSSIP_NACK = 4,
    P2P_GOSSIP_ALIVE = 5,
    P2P_GOSSIP_SUSPECT = 6,
    P2P_GOSSIP_DEAD = 7,
    P2P_GOSSIP_SYNC_REQ = 8,
    P2P_GOSSIP_SYNC = 9,
    P2P_GOSSIP_CERT_REQ = 10,
    P2P_GOSSIP_CERT = 11,
} p2p_gossip_type;

/* A signature and the id of the certificate whose key made it (len 0: none). */
typedef struct p2p_gossip_sig {
    uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN];
    uint8_t len;
    uint8_t sig[P2P_GOSSIP_SIG_MAX];
} p2p_gossip_sig;

/* A node record as gossiped in ALIVE. Strings are NUL-terminated. `meta` is
 * NOT necessarily NUL-terminated: a decoded record points into the packet
 * buffer (valid while that buffer is), a record built by a caller points
 * wherever the caller wants; meta_len is authoritative. */
typedef struct p2p_gossip_node {
    char id[P2P_GOSSIP_ID_MAX + 1];
    uint32_t incarnation;
    uint16_t port; /* UDP gossip and HTTPS */
    uint8_t naddrs;
    char addrs[P2P_GOSSIP_MAX_ADDRS][P2P_GOSSIP_ADDRSTRLEN]; /* canonical inet_ntop text */
    char role[P2P_GOSSIP_ROLE_MAX + 1];
    const char *meta;
    size_t meta_len;
    p2p_gossip_sig sig; /* the node's own signature of this record (not part of record equality) */
} p2p_gossip_node;

/* One decoded message; which fields are meaningful depends on `type`:
 *   PING      seq, id (target, may be ""), from (sender), live, digest
 *   ACK       seq, live, digest
 *   NACK/SYNC_REQ/SYNC  seq
 *   PING_REQ  seq, id (target), addr, port
 *   ALIVE     node
 *   SUSPECT/DEAD  incarnation, id (subject), from (accuser; == id for a leave),
 *             sig (DEAD: the leave's signature, len 0 when unsigned)
 *   CERT_REQ  sig.cert_id, id (whose certificate)
 *   CERT      sig.cert_id, der/der_len (point into the packet) */
typedef struct p2p_gossip_msg {
    p2p_gossip_type type;
    uint32_t seq;
    uint32_t incarnation;
    uint32_t live, digest; /* the sender's view, in PING and ACK */
    char id[P2P_GOSSIP_ID_MAX + 1];
    char from[P2P_GOSSIP_ID_MAX + 1];
    char addr[P2P_GOSSIP_ADDRSTRLEN];
    uint16_t port;
    p2p_gossip_node node;
    p2p_gossip_sig sig;
    const uint8_t *der;
    size_t der_len;
} p2p_gossip_msg;

/* True for 1..63 bytes of [A-Za-z0-9._-]. */
bool p2p_gossip_id_valid(const char *id);
/* True for 0..31 bytes of [A-Za-z0-9._-]. */
bool p2p_gossip_role_valid(const char *role);
/* Rewrites an IPv4/IPv6 literal into canonical text (out has
 * P2P_GOSSIP_ADDRSTRLEN bytes). Returns 0 or -EINVAL. */
int p2p_gossip_addr_canon(const char *addr, char *out);
/* 0 when `n` can be encoded (ids, role, addresses, port, meta bounds), else
 * -EINVAL with *why set (why may be NULL). */
int p2p_gossip_node_check(const p2p_gossip_node *n, const char **why);

/* The bytes a node signs for its ALIVE record: a label, then the ALIVE body
 * without the signature but with n->sig.cert_id (so the record names the
 * certificate that vouches for it). Returns the length, or -EINVAL / -ENOSPC.
 * A buffer of P2P_GOSSIP_MAX_FRAME bytes always suffices. */
int p2p_gossip_alive_tbs(const p2p_gossip_node *n, uint8_t *buf, size_t cap);
/* The bytes a node signs to leave: a label, incarnation, id, cert_id. */
int p2p_gossip_leave_tbs(const char *id, uint32_t incarnation, const uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN],
                         uint8_t *buf, size_t cap);

/* ---- encoding ---------------------------------------------------------- */

/* Encodes one message as a frame into buf[cap]. Returns the frame length,
 * -EINVAL (a field the decoder would reject) or -ENOSPC. */
int p2p_gossip_encode_frame(const p2p_gossip_msg *m, uint8_t *buf, size_t cap);

/* Builds one datagram. buf must outlive the writer. */
typedef struct p2p_gossip_writer {
    uint8_t *buf;
    size_t cap;     /* hard capacity of buf */
    size_t len;     /* bytes used, header included */
    unsigned count; /* frames */
} p2p_gossip_writer;

/* Starts a packet (writes the header). cap >= P2P_GOSSIP_HEADER_LEN. */
void p2p_gossip_writer_init(p2p_gossip_writer *w, uint8_t *buf, size_t cap);
/* Appends a message / a pre-encoded frame if it fits in min(budget, cap) bytes
 * of packet; on -ENOSPC (or -EINVAL) the writer is unchanged. */
int p2p_gossip_writer_add(p2p_gossip_writer *w, const p2p_gossip_msg *m, size_t budget);
int p2p_gossip_writer_add_frame(p2p_gossip_writer *w, const uint8_t *frame, size_t len, size_t budget);

/* ---- decoding ---------------------------------------------------------- */

typedef struct p2p_gossip_reader {
    const uint8_t *buf;
    size_t len;
    size_t off;
    unsigned count;  /* frames announced */
    unsigned frames; /* frames read */
} p2p_gossip_reader;

/* Checks the header. Returns 0, -EBADMSG or -EPROTONOSUPPORT. */
int p2p_gossip_reader_init(p2p_gossip_reader *r, const uint8_t *buf, size_t len, const char **why);
/* Decodes the next known message into *out: 1 = a message, 0 = end of packet,
 * negative = malformed (stop; *out is unspecified). Unknown frames are skipped.
 * Reading message by message does not by itself reject a packet whose later
 * frames are bad: call p2p_gossip_validate first to apply a packet all or
 * nothing. */
int p2p_gossip_reader_next(p2p_gossip_reader *r, p2p_gossip_msg *out, const char **why);
/* Decodes the whole packet, discarding the messages. Returns 0 with *nmsgs (may
 * be NULL) set to the number of known messages, or the first error. */
int p2p_gossip_validate(const uint8_t *buf, size_t len, size_t *nmsgs, const char **why);

/* ---- transmit-limited broadcast queue ------------------------------------
 * Updates to piggyback (memberlist's TransmitLimitedQueue). Each entry is an
 * encoded frame keyed by the node it is about: pushing a frame for a key
 * replaces the queued one (a newer alive/suspect/dead supersedes an older one).
 * Filling a packet takes entries ordered by fewest transmits, then largest,
 * then newest, greedily adding every one that still fits the budget; each one
 * taken counts a transmit and is dropped once it reaches `limit` transmits. */
typedef struct p2p_gossip_queue p2p_gossip_queue;

p2p_gossip_queue *p2p_gossip_queue_new(void);
void p2p_gossip_queue_free(p2p_gossip_queue *q);
/* Copies frame[len]; replaces an entry with the same key (transmits restart). */
void p2p_gossip_queue_push(p2p_gossip_queue *q, const char *key, const uint8_t *frame, size_t len);
size_t p2p_gossip_queue_len(const p2p_gossip_queue *q);
/* Transmits so far of the entry for `key`, or -1 when there is none. */
int p2p_gossip_queue_transmits(const p2p_gossip_queue *q, const char *key);
void p2p_gossip_queue_remove(p2p_gossip_queue *q, const char *key);
void p2p_gossip_queue_clear(p2p_gossip_queue *q);
/* Adds queued frames to `w` within `budget` bytes of packet (see above).
 * With allow_oversize, when `w` holds no frame yet and the first entry in
 * order is larger than the budget, that entry alone is added (w->cap must
 * allow it) and nothing else. Returns the number of frames added. */
size_t p2p_gossip_queue_fill(p2p_gossip_queue *q, p2p_gossip_writer *w, size_t budget, unsigned limit,
                             bool allow_oversize);

#endif
