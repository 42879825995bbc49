/*
 * pushpull.h — the documents of push-pull anti-entropy (POST /internal/gossip/exchange)
 * and of the membership snapshot: parsing and checking only, no state.
 *
 *   request  {"version": 1, "from": id, "digest": {id: [incarnation, "state"], ...},
 *             "nodes": [record, ...]}         ("nodes": the records being pushed)
 *   answer   {"version": 1, "from": id, "nodes": [record, ...], "want": [id, ...]}
 *   record   {"id", "incarnation", "port", "addrs": [ip, ...], "role", "meta", "state"}
 *   state    "alive" | "suspect" | "dead" | "left"
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
