/*
 * addrsel.h — which of a multi-homed node's addresses to advertise (guide:
 * "Multi-Homed Node Support", "VPN and Complex Network Support"). Three parts:
 *
 *  1. Ranking (p2p__addrsel_rank): pure, no I/O. The node's interface addresses
 *     and the coordinators' addresses in, an ordered candidate list out.
 *  2. Probing (p2p__addrsel_probe, p2p__addrsel_select): on a libuv loop, a TCP
 *     connect from each candidate (bound to ip:0) to the coordinators, all in
 *     parallel under one deadline; the best-ranked candidate that connected
 *     wins, else the best-ranked one ("fallback"). select() adds the config
 *     overrides and the interface listing in front of the probe.
 *  3. Watching (p2p__addrsel_watch): re-reads the interface list on an unref'd
 *     timer and reports when the set of addresses changed, so the node probes
 *     again and may switch the address it advertises. Polling (default 5 s)
 *     instead of netlink: portable, and an address change is rare enough that
 *     a few seconds of delay cost nothing.
 *
 * Ranking rules (lexicographic; the first rule that differs decides):
 *   Filtered out: unspecified (0.0.0.0, ::), IPv4 link-local/APIPA
 *   169.254.0.0/16, IPv6 link-local fe80::/10, multicast, IPv4-mapped IPv6,
 *   unparsable addresses, and duplicates (the same IP on two interfaces: the
 *   better-ranked entry is kept).
 *   Loopback (127.0.0.0/8, ::1, or flagged internal) is filtered out too, except
 *   (a) when nothing else is left (a host with only lo, a test cluster on
 *   127.0.0.1), or (b) when every coordinator address is loopback: the cluster
 *   lives on this host, and a loopback address then matches the coordinator's
 *   subnet and ranks first.
 *   1. In a coordinator's subnet: the candidate's network (its IP masked with
 *      its interface's prefix) contains a coordinator address. Among several
 *      such, the longest prefix wins (the most specific route, as a router
 *      would choose). A /32 (/128) contains only itself; a /31 (RFC 3021
 *      point-to-point) contains both ends. Unknown prefix (-1) = host prefix.
 *   2. Family: IPv4 before IPv6, unless the coordinators are all IPv6 (IPv6
 *      only), then IPv6 first. No coordinator: IPv4 first.
 *   3. Private before public: RFC 1918 (10/8, 172.16/12, 192.168/16), RFC 6598
 *      shared space 100.64/10 (carrier NAT and VPN overlays such as Tailscale)
 *      and IPv6 ULA fc00::/7. Cluster traffic is internal; Consul and Serf
 *      default to the first private IPv4 for the same reason. When the
 *      coordinator is only reachable over a public address the probe (below)
 *      overrides this rule, since a private address that cannot connect loses
 *      to a public one that can.
 *   4. Not loopback before loopback (only matters in case (a)/(b) above).
 *   5. Tie-break, for a stable order: interface name (strcmp), then the
 *      address bytes.
 *
 * Probe semantics: a candidate "reached" the cluster when a TCP connection from
 * it (bound to candidate:0) to one of the coordinator addresses of the same
 * family was established. Binding fixes the source address, not the outgoing
 * interface: success means the coordinator could answer that address, which is
 * exactly what advertising it requires. The connection is closed at once (the
 * coordinator sees a connection without a TLS hello). The probe ends as soon as
 * the best-ranked candidate still in the race has connected, or at the
 * deadline; candidates without a coordinator of their family are not probed.
 *
 * Errors: 0 or a negative errno (libuv's codes are the same numbers on Linux);
 * `err` (optional, may be NULL; point it at NULL) receives a heap message on
 * failure, which the caller frees. -EINVAL bad argument (a coordinator that is
 * not an IP literal: hostnames are resolved by the caller), -ENOENT no usable
 * address. Out-parameters are set only on success.
 *
 * Threads: everything runs on the caller's loop thread; nothing is global.
 * Ownership: handles are freed in their close callbacks; a cancelled probe or a
 * stopped watcher frees itself once its handles have closed (the loop must run
 * for that), and its callback is never called after cancel/stop.
 */
#ifndef P2P_MEMBERSHIP_ADDRSEL_H
#define P2P_MEMBERSHIP_ADDRSEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define P2P_ADDRSEL_IP_MAX 256              /* bytes, an address (or DNS name) and its NUL */
#define P2P_ADDRSEL_IFNAME_MAX 64           /* bytes, an interface name and its NUL */
#define P2P_ADDRSEL_MAX_CANDIDATES 64       /* ranked and probed at most */
#define P2P_ADDRSEL_MAX_TARGETS 16          /* coordinator addresses used */
#define P2P_ADDRSEL_DEFAULT_TIMEOUT_MS 1000 /* probe deadline */
#define P2P_ADDRSEL_DEFAULT_WATCH_MS 5000   /* interface polling period */

/* One address of one interface, as uv_interface_addresses reports it. */
typedef struct p2p_addrsel_iface {
    char ip[P2P_ADDRSEL_IP_MAX];       /* IP literal (a "%zone" suffix is ignored) */
    char name[P2P_ADDRSEL_IFNAME_MAX]; /* interface name ("eth0") */
    int prefix;                        /* prefix length from the netmask; -1 unknown */
    int internal;                      /* libuv's is_internal (loopback) */
} p2p_addrsel_iface;

/* Why a candidate ranks where it does (bits of p2p_addrsel_cand.why). */
enum {
    P2P_ADDRSEL_SAME_SUBNET = 1 << 0, /* rule 1: a coordinator is in its subnet */
    P2P_ADDRSEL_PRIVATE = 1 << 1,     /* rule 3 */
    P2P_ADDRSEL_LOOPBACK = 1 << 2,
};

/* A ranked candidate. */
typedef struct p2p_addrsel_cand {
    char ip[P2P_ADDRSEL_IP_MAX]; /* canonical text form (inet_ntop); for the advertise_address
                                    override, the configured value as is (may be a DNS name) */
    char ifname[P2P_ADDRSEL_IFNAME_MAX];
    int family;       /* AF_INET or AF_INET6 */
    int prefix;       /* as given, -1 unknown */
    int match_prefix; /* the prefix that matched a coordinator, else -1 */
    unsigned why;     /* P2P_ADDRSEL_* bits */
} p2p_addrsel_cand;

/* Ranks `n` interface addresses against `n_coords` coordinator IP literals
 * (may be 0; a literal may carry a port, "ip:port" or "[v6]:port", which is
 * ignored) into `out` (room for `cap` entries), best first; *n_out = how many.
 * Extra candidates beyond `cap` are dropped (the worst ones). Returns 0,
 * -EINVAL (a coordinator is not an IP literal, or NULL arguments) or -ENOENT
 * (no usable address: *n_out is then 0 and still set). */
int p2p__addrsel_rank(const p2p_addrsel_iface *ifs, size_t n, const char *const *coords, size_t n_coords,
                      p2p_addrsel_cand *out, size_t cap, size_t *n_out, char **err);

/* Parses "ip:port", "[v6]:port" or "ip" (port 0) into *sa. 0 or -EINVAL. */
int p2p__addrsel_parse_target(const char *s, struct sockaddr_storage *sa);

/* A short human description of a candidate's rank ("10.8.0.5 (tun0, in a
 * coordinator's subnet /24, private)"), into buf; returns buf. */
const char *p2p__addrsel_describe(const p2p_addrsel_cand *c, char *buf, size_t len);

/* ---- interface lists ------------------------------------------------------------ */

/* Produces the current interface addresses as a heap array (*out, freed by the
 * caller with free()) of *n entries. 0 or a negative errno. */
typedef int (*p2p_addrsel_list_fn)(void *arg, p2p_addrsel_iface **out, size_t *n);

/* The system's list (uv_interface_addresses: interfaces that are up and
 * running). Matches p2p_addrsel_list_fn; `arg` is ignored. */
int p2p__addrsel_interfaces(void *arg, p2p_addrsel_iface **out, size_t *n);

/* ---- probing --------------------------------------------------------------------- */

typedef struct p2p_addrsel_probe p2p_addrsel_probe;

/* The result, called once on the loop (never from inside the call that started
 * the probe). status: 0 = `chosen` connected to a coordinator (or an override
 * applied); negative = none connected and `chosen` is the best-ranked fallback
 * (-ETIMEDOUT when some attempt was still pending at the deadline, else the
 * best-ranked candidate's error, or -EHOSTUNREACH when nothing could be
 * probed). `chosen` and `reason` (one line for the log) are valid during the
 * call only. The probe frees itself after the callback returns. */
typedef void (*p2p_addrsel_done_cb)(void *arg, int status, const p2p_addrsel_cand *chosen, const char *reason);

/* Probes `n` ranked candidates (1..P2P_ADDRSEL_MAX_CANDIDATES) against `n_targets`
 * coordinator addresses (0..P2P_ADDRSEL_MAX_TARGETS, with ports) in parallel,
 * ending at the latest after `timeout_ms` (0 = default). The candidates and
 * targets are copied. *out (may be NULL) receives a handle for
 * p2p__addrsel_probe_cancel, valid until the callback has run. */
int p2p__addrsel_probe(uv_loop_t *loop, const p2p_addrsel_cand *cands, size_t n, const struct sockaddr_storage *targets,
                       size_t n_targets, uint64_t timeout_ms, p2p_addrsel_done_cb cb, void *arg,
                       p2p_addrsel_probe **out, char **err);

/* Stops a probe whose callback has not run yet: the callback will not run; the
 * memory goes once the handles have closed. */
void p2p__addrsel_probe_cancel(p2p_addrsel_probe *p);

/* What select() needs: the node's configuration and where to read interfaces. */
typedef struct p2p_addrsel_opts {
    const char *advertise_address;   /* config; NULL or "" = detect */
    const char *bind_address;        /* config; NULL, "", 0.0.0.0 or :: = any */
    const char *const *coordinators; /* "ip:port" / "[v6]:port" literals */
    size_t n_coordinators;
    uint64_t timeout_ms;      /* 0 = P2P_ADDRSEL_DEFAULT_TIMEOUT_MS */
    p2p_addrsel_list_fn list; /* NULL = p2p__addrsel_interfaces */
    void *list_arg;
} p2p_addrsel_opts;

/* The address a node advertises, with the overrides first:
 *   advertise_address set          -> used as is (not probed, not checked for
 *                                     reachability; it may be a NAT's address);
 *   bind_address a specific IP     -> that IP (a node bound to one address can
 *                                     only be reached there);
 *   otherwise                      -> list interfaces, rank, probe.
 * The callback runs on the loop in every case (status 0 for overrides). Errors
 * from the call itself: -EINVAL (bad coordinator or bind address), -ENOENT (no
 * usable interface address); the callback then never runs. */
int p2p__addrsel_select(uv_loop_t *loop, const p2p_addrsel_opts *o, p2p_addrsel_done_cb cb, void *arg,
                        p2p_addrsel_probe **out, char **err);

/* ---- watching -------------------------------------------------------------------- */

typedef struct p2p_addrsel_watch p2p_addrsel_watch;

/* Called on the loop when the set of (ip, prefix, interface) entries differs
 * from the previous reading; order does not matter. `ifs` is valid during the
 * call only. A failed reading is skipped (no callback, the previous set stays). */
typedef void (*p2p_addrsel_change_cb)(void *arg, const p2p_addrsel_iface *ifs, size_t n);

/* Reads the list now (the baseline: no callback for it) and then every
 * `interval_ms` (0 = P2P_ADDRSEL_DEFAULT_WATCH_MS) on an unref'd timer, so a
 * watcher alone does not keep the loop alive. `list` NULL = the system's.
 * -EINVAL, or the list function's error for the baseline reading. */
int p2p__addrsel_watch(uv_loop_t *loop, uint64_t interval_ms, p2p_addrsel_list_fn list, void *list_arg,
                       p2p_addrsel_change_cb cb, void *arg, p2p_addrsel_watch **out, char **err);

/* Stops the watcher: no callback after this; freed in the timer's close callback. */
void p2p__addrsel_watch_stop(p2p_addrsel_watch *w);

#endif
