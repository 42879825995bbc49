/*
 * swim.h — the SWIM membership state machine with Lifeguard suspicion, after
 * HashiCorp memberlist (state.go, suspicion.go, awareness.go, queue.go).
 * Pure: no I/O, no sockets, no clock, no global state. The caller injects time
 * (monotonic milliseconds `now`), a PRNG seed, and two callbacks: `send` for
 * datagrams (plaintext; the caller seals them) and `event` for membership
 * changes. One loop thread; not thread-safe.
 *
 * Protocol period (p2p_swim_tick):
 *  - Probe: every probe_interval (scaled by local health, see below) one member
 *    is pinged, chosen by randomized round robin (the list is shuffled after
 *    each full pass, new members go in at a random position; self, DEAD and
 *    LEFT are skipped; SUSPECT members are probed and the ping carries a
 *    SUSPECT about them so they can refute at once). No ack within
 *    probe_timeout: PING_REQ through `indirect_checks` random ALIVE members,
 *    which ping the target and relay its ACK, or answer NACK after
 *    4/5 of probe_timeout (so the NACK is back before our deadline). No ack by
 *    the end of the (scaled) interval: the target is suspected (from = self).
 *  - Gossip: every gossip_interval, when broadcasts are queued, datagrams of
 *    queued broadcasts go to `gossip_nodes` random members (ALIVE or SUSPECT,
 *    or DEAD for gossip_to_dead_ms after their death so a wrongly-dead node
 *    hears it and refutes). Broadcasts are also piggybacked on every ping, ack,
 *    ping-req and nack up to `packet_budget` bytes.
 *  - Retransmits: each broadcast goes out retransmit_mult * ceil(log10(N+1))
 *    times; a newer one about the same node replaces the older; fewest
 *    transmits first. An ALIVE larger than the budget (big meta) is only sent
 *    alone in gossip datagrams, never piggybacked.
 *
 * Merge rules (memberlist's):
 *  - ALIVE(i) about m: accepted if m is unknown (JOIN), or i > m.incarnation
 *    (so it overrides SUSPECT/DEAD/LEFT only with a strictly greater
 *    incarnation). A change of addresses with a greater incarnation is
 *    accepted (ids are unique by the cluster PKI; memberlist refuses this).
 *  - SUSPECT(i, from) about m: ignored if unknown or i < m.incarnation; if a
 *    suspicion of m is running it counts as a confirmation from `from`;
 *    otherwise applies only if m is ALIVE.
 *  - DEAD(i, from): ignored if unknown, i < m.incarnation, or m already
 *    DEAD/LEFT; else m becomes DEAD, or LEFT when from == m (a leave).
 *  - About self: only the node raises its own incarnation. SUSPECT or DEAD
 *    about self, or an ALIVE about self with a greater incarnation (or the same
 *    one with a different record), is refuted: incarnation =
 *    max(own + 1, accused + 1), broadcast ALIVE, local health worsens.
 *    After p2p_swim_leave nothing about self is refuted.
 *  - Every accepted change is re-broadcast.
 *  - Restart hint: an ALIVE that comes from the node itself (source address
 *    and port match its record) and is stale for us (lower incarnation, or the
 *    same one while we hold it SUSPECT/DEAD/LEFT) is answered with our view
 *    of it, so a restarted node refutes at once. A PING from a member we hold
 *    SUSPECT/DEAD/LEFT gets the same in the ACK.
 *  - Stale accusation: a SUSPECT/DEAD about self older than our incarnation
 *    means its sender missed our refutation: we answer it with our ALIVE
 *    (at most once per datagram).
 *
 * Lifeguard suspicion (suspicion.go): with N = live members (ALIVE + SUSPECT,
 * self included), min = suspicion_mult * max(1, log10(N)) * probe_interval
 * (memberlist's integer arithmetic), raised to suspicion_min_floor_ms,
 * max = suspicion_max_timeout_mult * min, expected confirmations
 * k = suspicion_confirmations, or N - 2 when fewer others exist (memberlist
 * ties k to suspicion_mult - 2 and drops it to 0 in small clusters; keeping k
 * separate lets min be short while a lone accuser still waits max). After c
 * independent confirmations (distinct members other than the originator) the
 * timeout, counted from the start of the suspicion, is
 *     max(min, floor(max - (max - min) * ln(c + 1) / ln(k + 1)))
 * (k == 0: min). When it expires the member is declared DEAD (from = self).
 *
 * Local health (awareness.go): a score 0..awareness_max-1; +1 per refutation,
 * per failed probe without nack peers, or per missing NACK; -1 per successful
 * probe. The probe interval is multiplied by (score + 1). Stall guard: if the
 * caller did not tick for more than stall_ms (the process was stopped or
 * starved), a pending probe is dropped without blame, running suspicions are
 * extended to at least one probe interval from now (so input that queued up
 * meanwhile, e.g. refutations, is read before anyone is declared dead), and
 * we refute pre-emptively (new incarnation, ALIVE broadcast): the others
 * have probably suspected us meanwhile.
 *
 * Join: p2p_swim_join sends our ALIVE, a join PING (empty target: "who are
 * you?") and a SYNC_REQ to a seed, and retries every probe interval until the
 * seed ACKs (at most join_attempts times). Any node answers an empty-target
 * PING with the ACK and its own ALIVE. Our ALIVE reaches everyone else by
 * gossip (fanout 3 every 200 ms: about log3(N) rounds). A PING from a sender
 * we do not know is answered with the ACK plus an empty-target PING, so the
 * sender introduces itself (repairs a missed ALIVE).
 *
 * UDP anti-entropy (beyond memberlist): every PING and ACK carries the
 * sender's view: its number of live members and a digest (sum over live
 * members of FNV-1a-32(id) xor incarnation * 0x9e3779b1). A SYNC_REQ is
 * answered with our live members as ALIVE records (SUSPECT ones followed by
 * a SUSPECT), then DEAD ones as SUSPECT and LEFT ones as leaves, in datagrams
 * opening with SYNC, at most 64 of them. The receiver applies a SYNC datagram
 * WITHOUT re-broadcasting: it is a view, not news, and re-gossiping N records
 * from each of N simultaneous joiners crowds every queue. A joiner asks its
 * seed. Any node asks a peer whose view differs and has at least as many
 * live members: at once when the peer has max(2, N/16) more; otherwise once
 * differing peers have been seen for pull_delay_ms (half that when they know
 * more members) with no peer agreeing meanwhile; at most once per
 * pull_delay_ms. One join, death or refutation is spread by gossip well
 * within that delay, so in steady state nobody pulls; what gossip misses
 * (a rumor that runs out of retransmits before reaching everyone, mostly when
 * many nodes start at once) is repaired within seconds. Measured in the
 * simulation (test_swim.c): 200 nodes started within 1 s converge about
 * 3.5 s after the last join, 500 nodes in about 5 s, no false suspicion.
 *
 * Push-pull (the caller's HTTPS anti-entropy) and snapshots: push
 * p2p_swim_member_at over everything; apply each received record with
 * p2p_swim_merge_remote, which follows memberlist's mergeState: ALIVE as an
 * ALIVE message, LEFT as a leave, SUSPECT and DEAD as a SUSPECT from self (a
 * remote death is only a reason to suspect). A persisted snapshot is restored
 * the same way; its record of self raises our incarnation above the persisted
 * one (by refutation).
 *
 * Leave: p2p_swim_leave marks self LEFT, queues DEAD(self, from = self) and
 * sends it at once to gossip_nodes members; after that no probes are started
 * (pings are still answered). p2p_swim_leave_done is true once the leave has
 * been transmitted its full retransmit count, or there is nobody to tell.
 *
 * Reaping: DEAD and LEFT members are removed reap_ms after their state change
 * (P2P_SWIM_EV_REAPED); until then they are listed, kept out of probing, and
 * gossiped to during gossip_to_dead_ms.
 *
 * Records owned by their node (records.h; the callbacks sign, verify,
 * cert_get and cert_put, all or none): our own ALIVE is signed whenever it
 * changes (start, refutation, meta, addresses, certificate) and our leave
 * when we leave; a record of another node is verified only when it would
 * change our view (a new member, a higher incarnation, a leave), so relays
 * and repeats cost nothing. An ALIVE that fails is dropped (records_refused),
 * also one about self (no refutation for a forgery). An ALIVE naming a
 * certificate we do not have is parked (at most 32, for 5 s) and a CERT_REQ
 * goes to the datagram's sender, which relayed it and so has the certificate;
 * a CERT answering a parked record is handed to cert_put (which checks it
 * against the CA) and the parked records are applied. A DEAD with from == id
 * (a leave) is accepted only with the node's own signature, which is kept
 * (p2p_swim_member.leave) and relayed with it; SUSPECT and other DEADs stay
 * unsigned, as SWIM needs, and carry no record.
 *
 * Callbacks run synchronously inside p2p_swim_* calls; they must not call
 * mutating p2p_swim_* functions (lookups are fine). `send`'s buffer is valid
 * only during the call. `event`'s member pointer is valid only during the call.
 */
#ifndef P2P_MEMBERSHIP_SWIM_H
#define P2P_MEMBERSHIP_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "membership/codec.h"

typedef enum p2p_swim_state {
    P2P_SWIM_ALIVE = 0,
    P2P_SWIM_SUSPECT = 1,
    P2P_SWIM_DEAD = 2,
    P2P_SWIM_LEFT = 3,
} p2p_swim_state;

typedef enum p2p_swim_event {
    P2P_SWIM_EV_JOIN = 0,        /* a member we did not know (or had reaped) */
    P2P_SWIM_EV_UPDATE = 1,      /* an ALIVE member's record changed (new incarnation) */
    P2P_SWIM_EV_SUSPECT = 2,     /* ALIVE -> SUSPECT */
    P2P_SWIM_EV_DEAD = 3,        /* -> DEAD */
    P2P_SWIM_EV_LEAVE = 4,       /* -> LEFT */
    P2P_SWIM_EV_ALIVE_AGAIN = 5, /* SUSPECT/DEAD/LEFT -> ALIVE */
    P2P_SWIM_EV_REAPED = 6,      /* a DEAD/LEFT member forgotten after reap_ms */
} p2p_swim_event;

typedef struct p2p_swim_config {
    uint32_t probe_interval_ms;          /* 1000 */
    uint32_t probe_timeout_ms;           /* 500; < probe_interval_ms */
    uint32_t indirect_checks;            /* 3 */
    uint32_t suspicion_mult;             /* 1 (memberlist: 4) */
    uint32_t suspicion_max_timeout_mult; /* 6 */
    uint32_t suspicion_confirmations;    /* 3: Lifeguard's K */
    uint32_t suspicion_min_floor_ms;     /* 3000: min is never shorter */
    uint32_t retransmit_mult;            /* 4 */
    uint32_t gossip_interval_ms;         /* 200 */
    uint32_t gossip_nodes;               /* 3 */
    uint32_t gossip_to_dead_ms;          /* 30 000 */
    uint32_t reap_ms;                    /* 300 000; >= gossip_to_dead_ms */
    uint32_t awareness_max;              /* 8 (1 disables local health scaling) */
    uint32_t stall_ms;                   /* 2000; 0 disables the stall guard */
    uint32_t join_attempts;              /* 30 */
    uint32_t packet_budget;              /* 1400 bytes of plaintext, 512..65000 */
    uint32_t max_members;                /* 10 000; ALIVEs for new members beyond are dropped */
    uint32_t pull_delay_ms;              /* 2000; 0 disables view-mismatch pulls */
    uint64_t seed;                       /* PRNG seed: pass random bytes */
} p2p_swim_config;

/* A member as seen by this node. The record's strings and meta are owned by
 * the swim instance; meta is NUL-terminated. */
typedef struct p2p_swim_member {
    p2p_gossip_node node;
    p2p_swim_state state;
    uint64_t state_change_ms; /* `now` of the last state change */
    uint64_t last_seen_ms;    /* last evidence it was alive: ack, ping, accepted ALIVE; 0 = never */
    bool is_self;
    p2p_gossip_sig leave; /* LEFT: the node's signature of its leave (len 0: none) */
} p2p_swim_member;

typedef struct p2p_swim_callbacks {
    void *udata;
    /* Sends one datagram of plaintext to addr:port. */
    void (*send)(void *udata, const char *addr, uint16_t port, const uint8_t *buf, size_t len);
    /* A membership change (never about self). May be NULL. */
    void (*event)(void *udata, p2p_swim_event ev, const p2p_swim_member *m);
    /* Record ownership (see above). All NULL: records are neither signed nor checked. */
    /* Signs tbs with our certificate's key (sig->cert_id must be the id given
     * in the self record / p2p_swim_set_cert_id). 0 or negative (unsigned). */
    int (*sign)(void *udata, const uint8_t *tbs, size_t len, p2p_gossip_sig *sig);
    /* 0 when sig over tbs is by id's certificate (and role matches, unless
     * NULL); -ENOKEY when that certificate is unknown; else negative. */
    int (*verify)(void *udata, const char *id, const char *role, const uint8_t *tbs, size_t len,
                  const p2p_gossip_sig *sig);
    /* A cached certificate's DER (borrowed during the call), or negative. */
    int (*cert_get)(void *udata, const uint8_t *cert_id, const uint8_t **der, size_t *len);
    /* Checks and caches a certificate whose id must be cert_id. 0 or negative. */
    int (*cert_put)(void *udata, const uint8_t *der, size_t len, const uint8_t *cert_id);
} p2p_swim_callbacks;

typedef struct p2p_swim_stats {
    uint64_t packets_received, packets_sent, bytes_received, bytes_sent;
    uint64_t decode_errors; /* malformed datagrams given to p2p_swim_receive */
    uint64_t probes_sent, acks_received, probe_failures;
    uint64_t indirect_probes; /* PING_REQs sent */
    uint64_t relays;          /* PING_REQs served for others */
    uint64_t nacks_received;
    uint64_t suspicions_raised; /* by our own failed probes */
    uint64_t refutations;
    uint64_t deaths_declared; /* by our own suspicion timers */
    uint64_t stalls;
    uint64_t members_dropped; /* ALIVEs refused by max_members */
    uint64_t syncs_sent;      /* SYNC_REQs answered */
    uint64_t syncs_requested; /* view-mismatch pulls (joins not counted) */
    uint64_t records_refused; /* ALIVEs and leaves with a bad or missing signature, wrong id or role */
    uint64_t records_unvouched; /* ... of which: no usable certificate came for them (a parked record
                                 * expired or was pushed out, or an unknown certificate off gossip) */
    uint64_t records_parked;  /* ALIVEs held until their certificate arrived */
    uint32_t records_held;    /* ALIVEs held now (a gauge, at most 32) */
    uint64_t certs_requested, certs_sent, certs_accepted;
    uint32_t awareness;       /* current local health score */
    uint32_t incarnation;     /* own */
} p2p_swim_stats;

typedef struct p2p_swim p2p_swim;

void p2p_swim_config_default(p2p_swim_config *c);

/* Creates an instance for `self` (id, incarnation, addrs, port, role, meta;
 * the state is ALIVE, meta is copied) at time `now`. The own ALIVE is queued
 * for gossip. Returns 0 or -EINVAL with *why (may be NULL). */
int p2p_swim_new(const p2p_swim_config *cfg, const p2p_gossip_node *self, const p2p_swim_callbacks *cb, uint64_t now,
                 p2p_swim **out, const char **why);
void p2p_swim_free(p2p_swim *s);

/* Runs everything due at `now`; returns the ms until it should be called next
 * (>= 1, <= gossip_interval_ms). */
uint64_t p2p_swim_tick(p2p_swim *s, uint64_t now);
/* The same bound without running anything (e.g. after p2p_swim_receive). */
uint64_t p2p_swim_next_timeout(const p2p_swim *s, uint64_t now);

/* Handles one unsealed datagram from from_addr:from_port. The packet is
 * validated as a whole first: 0 when it was applied, -EBADMSG /
 * -EPROTONOSUPPORT (counted in decode_errors, nothing applied), -EINVAL
 * (from_addr not an IP literal or port 0). */
int p2p_swim_receive(p2p_swim *s, uint64_t now, const char *from_addr, uint16_t from_port, const uint8_t *buf,
                     size_t len);

/* Starts joining through a seed (see above). Returns 0, -EINVAL (bad address
 * or port) or -ENOSPC (16 joins pending). */
int p2p_swim_join(p2p_swim *s, uint64_t now, const char *addr, uint16_t port);
/* Applies a record from push-pull or a snapshot (rules above). Returns 0 or
 * -EINVAL (record not encodable). */
int p2p_swim_merge_remote(p2p_swim *s, uint64_t now, const p2p_gossip_node *node, p2p_swim_state state);
/* Changes own meta (NULL = empty): bumps the incarnation, broadcasts ALIVE.
 * Returns 0, -EINVAL (too long, NUL inside) or -EALREADY (after leave). */
int p2p_swim_set_meta(p2p_swim *s, uint64_t now, const char *meta);
/* Changes own addresses (n = 1..P2P_GOSSIP_MAX_ADDRS IP literals, the first is
 * advertised): bumps the incarnation, broadcasts ALIVE. Returns 0, -EINVAL (bad
 * count or address) or -EALREADY (after leave). */
int p2p_swim_set_addrs(p2p_swim *s, uint64_t now, const char addrs[][P2P_GOSSIP_ADDRSTRLEN], uint8_t n);
/* Applies a leave from push-pull: accepted only with the node's signature
 * (when records are checked). Returns 0 or -EINVAL. */
int p2p_swim_merge_leave(p2p_swim *s, uint64_t now, const char *id, uint32_t incarnation, const p2p_gossip_sig *sig);
/* Our certificate changed (renewal): the self record names the new one,
 * is signed again with a new incarnation and broadcast. 0 or -EALREADY. */
int p2p_swim_set_cert_id(p2p_swim *s, uint64_t now, const uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN]);
/* Graceful leave (see above). Returns 0 or -EALREADY. */
int p2p_swim_leave(p2p_swim *s, uint64_t now);
bool p2p_swim_leave_done(const p2p_swim *s);

/* Members, self included, in an unspecified order. Pointers and indexes are
 * valid until the next mutating call (tick, receive, join, merge, set_meta,
 * set_addrs, leave). */
size_t p2p_swim_member_count(const p2p_swim *s);
const p2p_swim_member *p2p_swim_member_at(const p2p_swim *s, size_t i);
const p2p_swim_member *p2p_swim_find(const p2p_swim *s, const char *id);
const p2p_swim_member *p2p_swim_self(const p2p_swim *s);
/* Members ALIVE or SUSPECT, self included (the N of the formulas above). */
size_t p2p_swim_live_count(const p2p_swim *s);
void p2p_swim_get_stats(const p2p_swim *s, p2p_swim_stats *out);
/* Broadcasts waiting to be piggybacked. */
size_t p2p_swim_pending_broadcasts(const p2p_swim *s);
const char *p2p_swim_state_name(p2p_swim_state st);

/* The arithmetic, exposed for tests and documentation. */
uint64_t p2p_swim_suspicion_min_ms(uint32_t suspicion_mult, size_t n, uint32_t probe_interval_ms);
/* Timeout (from the start of the suspicion) after c of k confirmations. */
uint64_t p2p_swim_suspicion_timeout_ms(uint32_t c, uint32_t k, uint64_t min_ms, uint64_t max_ms);
unsigned p2p_swim_retransmit_limit(uint32_t retransmit_mult, size_t n);

#endif
