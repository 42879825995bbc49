/*
 * pushpull.h — the documents of push-pull anti-entropy (POST /internal/gossip/exchange)
 * and of the membership snapshot: parsing and checking only, no state.
 *
 *   request  {"version": 2, "from": id, "digest": {id: [incarnation, "state"], ...},
 *             "nodes": [record, ...]}         ("nodes": the records being pushed)
 *   answer   {"version": 2, "from": id, "nodes": [record, ...], "want": [id, ...]}
 *   record   {"id", "incarnation", "port", "addrs": [ip, ...], "role", "meta", "state",
 *             "sig", "leave_sig", "cert"}
 *   state    "alive" | "suspect" | "dead" | "left"
 *   sig      base64url of cert_id[8] || ECDSA signature (1..72 bytes): the node's own
 *            signature of its ALIVE record (records.h); optional for the parser, required
 *            by the node for an alive record to be merged
 *   leave_sig  the same for its leave (a "left" record is merged only with it)
 *   cert     base64url of the DER certificate named by sig (1..2048 bytes), so the
 *            receiver can check a record whose certificate it has not seen yet
 *
 * The node checks that "from" is the node id of the mTLS client certificate.
 *
 * A request without a digest (the first protocol version, and the snapshot file) is
 * answered with the whole view.
 */
#ifndef P2P_MEMBERSHIP_PUSHPULL_H
#define P2P_MEMBERSHIP_PUSHPULL_H

#include <jansson.h>
#include <stdint.h>

#include "membership/swim.h"

#define P2P_PP_MAX_ENTRIES 100000 /* records, digest entries or wanted ids in one document */

/* One record; 0 or -EINVAL. n->meta points into `o` (valid while `o` lives).
 * Checks the JSON shape and the limits of the gossip codec (p2p_gossip_node_check). */
int p2p__pp_parse_record(json_t *o, p2p_gossip_node *n, p2p_swim_state *st);

/* The same with the signatures and certificate (each may be NULL): `leave` is
 * zeroed when absent, *cert points into `o` and *cert_len is 0 when absent
 * (decode it with p2p__pp_cert). */
int p2p__pp_parse_record_ex(json_t *o, p2p_gossip_node *n, p2p_swim_state *st, p2p_gossip_sig *leave,
                            const char **cert, size_t *cert_len);
/* Decodes a "cert" value into der[P2P_GOSSIP_CERT_MAX]. 0 or -EINVAL. */
int p2p__pp_cert(const char *b64, size_t len, uint8_t *der, size_t *der_len);
/* Encodes a signature as the "sig" value (out: P2P_PP_SIG_B64 bytes). */
#define P2P_PP_SIG_B64 (4 * ((P2P_GOSSIP_CERT_ID_LEN + P2P_GOSSIP_SIG_MAX + 2) / 3) + 1)
void p2p__pp_sig_encode(const p2p_gossip_sig *sig, char *out);

/* One digest entry, [incarnation, "state"]; 0 or -EINVAL. */
int p2p__pp_parse_digest_entry(json_t *e, uint32_t *inc, p2p_swim_state *st);

/* A whole document: an object whose "digest" (optional) and "nodes" (required
 * unless there is a digest) and "want" (optional) are all valid. All or nothing:
 * 0, or -EINVAL with *why set to a static message. */
int p2p__pp_check(json_t *doc, const char **why);

/* (inc_a, st_a) is newer than (inc_b, st_b): memberlist's order, where at the same
 * incarnation suspect overrides alive, dead overrides suspect, left overrides dead. */
int p2p__pp_newer(uint32_t inc_a, p2p_swim_state st_a, uint32_t inc_b, p2p_swim_state st_b);

#endif
