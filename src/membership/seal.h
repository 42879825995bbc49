/*
 * seal.h — sealing of gossip UDP datagrams: AES-256-GCM under the cluster gossip
 * key, LZ4 above a size threshold, and replay protection. Only holders of the
 * gossip key can produce a datagram that opens; everything else is dropped and
 * counted, never trusted.
 *
 * Wire format, version 2 (integers big-endian; 2 added the certificate id):
 *
 *   offset  size  field                                   (clear; the AAD)
 *        0     1  version (2)
 *        1     1  flags: bit 0 = body is an LZ4 block; other bits must be 0
 *        2     4  key id = first 4 bytes of SHA-256("p2p-seal-key-id-v1" || key)
 *        6    12  AES-256-GCM nonce
 *       18     n  ciphertext of the inner plaintext below
 *     18+n    16  GCM tag
 *
 *   inner plaintext (encrypted, authenticated)
 *        0     8  sender id = first 8 bytes of SHA-256("p2p-seal-sender-v1" || node id)
 *        8     8  sender boot epoch (ms; larger on every restart)
 *       16     8  sequence number (1, 2, 3, ... per epoch)
 *       24     8  sender wall clock when sealed (ms since the epoch)
 *       32     8  sender certificate id (the first 8 bytes of SHA-256 of its
 *                 certificate's DER, records.h; 0 without one)
 *       40     4  payload length (uncompressed; at most P2P_SEAL_MAX_PAYLOAD)
 *       44     m  body: the payload, or its LZ4 block when flag bit 0 is set
 *
 * Overhead: 18 + 44 + 16 = 78 bytes (P2P_SEAL_OVERHEAD), so a 1400-byte MTU
 * budget carries 1322 payload bytes uncompressed. The largest datagram is 65507
 * bytes (the largest UDP payload over IPv4).
 *
 * Nonces. A GCM nonce must never repeat under one key, and every node of the
 * cluster seals under the same key. Each context draws 96 random bits
 * (RAND_bytes) when a sealing key is installed and then adds one to the low 64
 * bits per packet: one sender never repeats, and two senders collide only when
 * their 32-bit prefixes match *and* their counter ranges (a few billion wide at
 * most, out of 2^64) overlap — far less likely than 96-bit random nonces per
 * packet, whose birthday bound the whole cluster would share. A context must not
 * be duplicated by fork().
 *
 * Key ring. One primary key seals; up to P2P_SEAL_MAX_KEYS keys open, chosen by
 * the key id in the header (no trial decryption). Rotation: add the new key on
 * every node, make it primary everywhere, then remove the old one.
 *
 * Replay protection, checked only after the tag (so only key holders reach it):
 *  - timestamp: a datagram whose sender clock differs from ours by more than
 *    max_skew_ms (default 120 s, either direction) is stale. This is what stops a
 *    replay after the receiver restarted and forgot its windows: an old capture
 *    is refused, a recent one (< skew) can be accepted once more. Clocks of the
 *    cluster must agree within the skew (dropped_stale shows when they do not);
 *  - per (sender id, certificate id), the latest epoch seen and a sliding window of
 *    P2P_SEAL_REPLAY_WINDOW sequence numbers (a bitmap, RFC 6479 style): an older
 *    epoch, a sequence number already seen, or one older than the window is a
 *    replay; a newer epoch (the sender restarted) resets the window;
 *  - a datagram carrying our own sender id is a reflection and is dropped;
 *  - the sender table holds at most max_senders entries (default 4096, about
 *    180 bytes each, grown on demand); a new sender beyond that evicts the least
 *    recently accepted one, whose window is forgotten (its old datagrams are then
 *    refused only by the timestamp check).
 * Windows are per certificate so that another identity using the same node id
 * (an old or revoked certificate, an impostor enrolled with it) cannot push the
 * real node's window ahead and get its datagrams dropped as replays: each
 * certificate has its own sequence. A holder of the gossip key can still write
 * any certificate id into the header; what it cannot do is forge a node's
 * record, which is signed (records.h).
 * The window is committed only when the whole datagram is good, so a datagram
 * that fails later (bad LZ4) does not burn its sequence number.
 *
 * Epochs. The default epoch is the wall clock (ms) at p2p__seal_new(); a node
 * that persists state can pass max(previous epoch + 1, now) in the options so a
 * clock stepped back between restarts does not make its new datagrams look old.
 *
 * Errors (negative errno values, each its own counter, see p2p__seal_strerror):
 *   P2P_SEAL_EOVERSIZE   -EMSGSIZE         datagram > 65507 bytes     dropped_oversize
 *   P2P_SEAL_ESHORT      -ENODATA          shorter than 78 bytes      dropped_malformed
 *   P2P_SEAL_EVERSION    -EPROTONOSUPPORT  unknown version            dropped_malformed
 *   P2P_SEAL_EFLAGS      -EPROTO           unknown flag bits          dropped_malformed
 *   P2P_SEAL_EKEYID      -ENOKEY           no key with this id        dropped_auth
 *   P2P_SEAL_EAUTH       -EBADMSG          tag check failed           dropped_auth
 *   P2P_SEAL_EBODY       -EILSEQ           bad inner header or LZ4    dropped_malformed
 *   P2P_SEAL_EREPLAY     -EALREADY         seen / too old / old epoch dropped_replay
 *   P2P_SEAL_EREFLECT    -ELOOP            our own sender id          dropped_replay
 *   P2P_SEAL_ESTALE      -ETIME            timestamp outside the skew dropped_stale
 * and, not counted (the caller's fault): -EINVAL bad arguments, -ENOBUFS output
 * buffer too small (pass P2P_SEAL_MAX_PAYLOAD to open, P2P_SEAL_MAX_PACKET to
 * seal, and it never happens), -EMSGSIZE from p2p__seal() for a payload that
 * does not fit in one datagram, -EIO from OpenSSL.
 *
 * Performance: one pre-keyed EVP_CIPHER_CTX per key (the AES key schedule is
 * computed once), scratch buffers and the LZ4 state allocated at creation; the
 * only allocation after that is the sender table doubling when new senders
 * appear. Threads: a context is used from one thread (the loop thread).
 * Out-parameters (*out_len, *sender) are set only on success; the bytes of `out`
 * are unspecified after a failure.
 */
#ifndef P2P_MEMBERSHIP_SEAL_H
#define P2P_MEMBERSHIP_SEAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_SEAL_VERSION 2
#define P2P_SEAL_FLAG_LZ4 0x01
#define P2P_SEAL_KEY_LEN 32
#define P2P_SEAL_KEY_ID_LEN 4
#define P2P_SEAL_NONCE_LEN 12
#define P2P_SEAL_TAG_LEN 16
/* version, flags, key id, nonce: the AAD */
#define P2P_SEAL_HEADER_LEN 18
/* sender id, epoch, seq, timestamp, certificate id, payload length */
#define P2P_SEAL_INNER_LEN 44
/* 78 bytes per datagram */
#define P2P_SEAL_OVERHEAD (P2P_SEAL_HEADER_LEN + P2P_SEAL_INNER_LEN + P2P_SEAL_TAG_LEN)
/* the largest datagram: the largest UDP payload over IPv4 */
#define P2P_SEAL_MAX_PACKET 65507u
/* the largest payload, after decompression */
#define P2P_SEAL_MAX_PAYLOAD 65536u
/* the largest payload sent uncompressed: 65437 */
#define P2P_SEAL_MAX_RAW_PAYLOAD (P2P_SEAL_MAX_PACKET - P2P_SEAL_OVERHEAD)
#define P2P_SEAL_MAX_KEYS 4
#define P2P_SEAL_REPLAY_WINDOW 1024 /* sequence numbers, a multiple of 64 */

#define P2P_SEAL_DEFAULT_COMPRESS_THRESHOLD 512
#define P2P_SEAL_DEFAULT_MAX_SKEW_MS 120000u
#define P2P_SEAL_DEFAULT_MAX_SENDERS 4096u
#define P2P_SEAL_MAX_MAX_SENDERS (1u << 20)

#define P2P_SEAL_EOVERSIZE (-EMSGSIZE)
#define P2P_SEAL_ESHORT (-ENODATA)
#define P2P_SEAL_EVERSION (-EPROTONOSUPPORT)
#define P2P_SEAL_EFLAGS (-EPROTO)
#define P2P_SEAL_EKEYID (-ENOKEY)
#define P2P_SEAL_EAUTH (-EBADMSG)
#define P2P_SEAL_EBODY (-EILSEQ)
#define P2P_SEAL_EREPLAY (-EALREADY)
#define P2P_SEAL_EREFLECT (-ELOOP)
#define P2P_SEAL_ESTALE (-ETIME)

typedef struct p2p__seal_ctx p2p__seal_ctx;

/* Options; a zero field means the default. */
typedef struct p2p__seal_opts {
    size_t compress_threshold; /* compress payloads longer than this (default 512; SIZE_MAX: never) */
    uint64_t max_skew_ms;      /* allowed |our clock - sender clock| (default 120000; UINT64_MAX: unchecked) */
    uint32_t max_senders;      /* sender table bound (default 4096, at most P2P_SEAL_MAX_MAX_SENDERS) */
    uint64_t epoch;            /* our boot epoch (default: wall clock ms at creation) */
} p2p__seal_opts;

/* Counters, exposed by the node as metrics. */
typedef struct p2p__seal_stats {
    uint64_t sealed;            /* datagrams sealed */
    uint64_t compressed;        /* ... of which LZ4-compressed */
    uint64_t opened;            /* datagrams accepted */
    uint64_t dropped_malformed; /* short, unknown version or flags, bad inner header or LZ4 */
    uint64_t dropped_auth;      /* unknown key id or bad tag */
    uint64_t dropped_replay;    /* seen before, older than the window, older epoch, reflected */
    uint64_t dropped_stale;     /* timestamp outside the allowed skew */
    uint64_t dropped_oversize;  /* longer than P2P_SEAL_MAX_PACKET */
    uint64_t senders_evicted;   /* sender table entries evicted to make room */
    uint64_t senders;           /* sender table entries now (a gauge) */
} p2p__seal_stats;

/* What the authenticated inner header said about a datagram. */
typedef struct p2p__seal_sender {
    uint64_t id;      /* p2p__seal_sender_id() of the sender's node id */
    uint64_t epoch;   /* its boot epoch */
    uint64_t seq;     /* its sequence number */
    uint64_t sent_ms; /* its wall clock when it sealed */
    uint64_t cert;    /* its certificate id (0: none) */
} p2p__seal_sender;

/* A context sealing under `key` (the first primary and only ring key) as the
 * node `self_id`. `opts` may be NULL. Returns NULL on bad arguments (NULL key or
 * id, max_senders too large) or when OpenSSL fails; aborts on out-of-memory. */
p2p__seal_ctx *p2p__seal_new(const uint8_t key[P2P_SEAL_KEY_LEN], const char *self_id, const p2p__seal_opts *opts);

/* Wipes the keys (OPENSSL_cleanse) and frees everything. NULL is fine. */
void p2p__seal_free(p2p__seal_ctx *ctx);

/* Key ring. add: 0 (also when already present), -ENOSPC when full, -EEXIST when a
 * different key has the same id (draw a new key). remove: -ENOENT, -EBUSY for the
 * primary. set_primary: the key must be in the ring (-ENOENT); new nonce prefix. */
int p2p__seal_add_key(p2p__seal_ctx *ctx, const uint8_t key[P2P_SEAL_KEY_LEN]);
int p2p__seal_remove_key(p2p__seal_ctx *ctx, const uint8_t key[P2P_SEAL_KEY_LEN]);
int p2p__seal_set_primary(p2p__seal_ctx *ctx, const uint8_t key[P2P_SEAL_KEY_LEN]);
size_t p2p__seal_key_count(const p2p__seal_ctx *ctx);

/* Seals `len` payload bytes (at most P2P_SEAL_MAX_PAYLOAD, and at most
 * P2P_SEAL_MAX_RAW_PAYLOAD unless they compress) into out[0..cap), stamped with
 * now_ms (wall clock). The result is at most len + P2P_SEAL_OVERHEAD bytes.
 * `out` must not overlap `payload`. */
int p2p__seal(p2p__seal_ctx *ctx, uint64_t now_ms, const void *payload, size_t len, uint8_t *out, size_t cap,
              size_t *out_len);

/* Opens a received datagram into out[0..cap); now_ms is our wall clock. On
 * success *out_len is the payload length and *sender (may be NULL) its header.
 * Every failure is counted; see the error table above. `out` may overlap `pkt`
 * (the plaintext goes through the context's own buffer first). */
int p2p__seal_open(p2p__seal_ctx *ctx, uint64_t now_ms, const uint8_t *pkt, size_t len, uint8_t *out, size_t cap,
                   size_t *out_len, p2p__seal_sender *sender);

/* Our certificate id, written into every datagram sealed from now on (after
 * a renewal: the new certificate starts its own window at the receivers). */
void p2p__seal_set_cert(p2p__seal_ctx *ctx, uint64_t cert_id);

/* A copy of the counters. */
void p2p__seal_get_stats(const p2p__seal_ctx *ctx, p2p__seal_stats *out);

/* Bytes held by the sender table (for the memory bound; grows to at most
 * max_senders entries). */
size_t p2p__seal_table_bytes(const p2p__seal_ctx *ctx);

/* The 64-bit sender id of a node id, as carried in the inner header. */
uint64_t p2p__seal_sender_id(const char *node_id);

/* The key id of a key, as carried in the clear header. */
uint32_t p2p__seal_key_id(const uint8_t key[P2P_SEAL_KEY_LEN]);

/* A name for a seal error code (falls back to p2p_strerror()). */
const char *p2p__seal_strerror(int code);

#endif
