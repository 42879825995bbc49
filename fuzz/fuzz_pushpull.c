/*
 * fuzz_pushpull.c — libFuzzer target for the push-pull documents
 * (POST /internal/gossip/exchange bodies and answers, and the membership snapshot).
 *
 * The input is parsed as JSON the way the node parses it (duplicates refused) and
 * checked with p2p__pp_check(). Invariants when it is accepted: every record and
 * digest entry parses again, ids are valid, a record's address count and meta length
 * are within the codec's limits, and p2p__pp_newer() is a strict order on the digest
 * entries (irreflexive, antisymmetric). A crash, a leak, a sanitizer report or a
 * broken invariant is a finding.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "membership/pushpull.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    const char *why = NULL;
    if (p2p__pp_check(doc, &why) != 0) {
        if (!why)
            abort(); /* a refusal always says why */
        json_decref(doc);
        return 0;
    }
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "nodes"), i, e)
    {
        p2p_gossip_node n;
        p2p_swim_state st;
        if (p2p__pp_parse_record(e, &n, &st) != 0 || !p2p_gossip_id_valid(n.id) || n.naddrs > P2P_GOSSIP_MAX_ADDRS ||
            n.meta_len > P2P_GOSSIP_META_MAX || n.port == 0)
            abort();
    }
    const char *id;
    uint32_t prev_inc = 0;
    p2p_swim_state prev_st = P2P_SWIM_ALIVE;
    int have_prev = 0;
    json_object_foreach(json_object_get(doc, "digest"), id, e)
    {
        uint32_t inc;
        p2p_swim_state st;
        if (!p2p_gossip_id_valid(id) || p2p__pp_parse_digest_entry(e, &inc, &st) != 0)
            abort();
        if (p2p__pp_newer(inc, st, inc, st))
            abort();
        if (have_prev && p2p__pp_newer(inc, st, prev_inc, prev_st) && p2p__pp_newer(prev_inc, prev_st, inc, st))
            abort();
        prev_inc = inc;
        prev_st = st;
        have_prev = 1;
    }
    json_decref(doc);
    return 0;
}
