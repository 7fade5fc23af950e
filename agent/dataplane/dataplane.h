/*
 * The data plane: the BPF programs on the uplink (XDP node-port DNAT) and on
 * each workload's veth (TC reverse NAT, counters, isolation, rate limit), and
 * the maps they share with userspace, pinned under a directory of bpffs so
 * that programs and maps outlive the agent: a restarted agent re-opens them
 * and traffic never stops.
 *
 * Two levels:
 *  - struct hc_dpmaps: the pinned maps alone. The CLI (`hypercore routes`),
 *    benchmarks and the agent's sync use it; it loads no program.
 *  - struct hc_dataplane: the loader. Loads (or re-opens) programs and maps,
 *    attaches XDP to the uplink through a pinned bpf_link, TC to workload
 *    veths, and keeps hc_host_addrs in step with the node's addresses.
 *
 * All calls block briefly on bpf(2) and netlink; call them from the loop
 * thread or a CLI. Errors: 0 or -errno, with one readable line in a
 * struct hc_err (base.h) where the caller gives one.
 */
#ifndef HC_DATAPLANE_H
#define HC_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hypercore/dataplane.h>

#include "base/base.h"

/* ---- the pinned maps ---- */

struct hc_dpmaps;

/* Opens the maps pinned under pin_dir. NULL + errno (ENOENT: nothing pinned
 * there) with err filled. The caller frees with hc_dpmaps_close(). */
struct hc_dpmaps *hc_dpmaps_open(const char *pin_dir, struct hc_err *err);
void hc_dpmaps_close(struct hc_dpmaps *m);

/* One desired entry of each kind. */
struct hc_dp_route {
	struct hc_route_key key;
	struct hc_route_val val;
};

struct hc_dp_service {
	struct hc_service_key key;
	struct hc_service_val val;
};

/* The whole set the cluster wants, as computed from state broadcasts. */
struct hc_dp_desired {
	const struct hc_dp_route *routes;
	size_t n_routes;
	const struct hc_dp_service *services;
	size_t n_services;
};

struct hc_dp_change_count {
	size_t added, updated, deleted, unchanged;
	size_t static_kept; /* desired entries a static entry holds the key of */
};

struct hc_dp_sync_report {
	struct hc_dp_change_count routes;
	struct hc_dp_change_count services;
};

/* Makes hc_routes and hc_services hold exactly the desired entries plus the
 * static ones: reads what the maps hold, then adds, updates and deletes only
 * what differs (batch operations). Static entries are never changed or
 * removed, and win over a desired entry with the same key. Desired flags
 * must not carry the static bit. Returns 0 or -errno; report may be NULL. */
int hc_dpmaps_sync(struct hc_dpmaps *m, const struct hc_dp_desired *want,
		   struct hc_dp_sync_report *report);

/* The cluster's routes hc_routes holds now (static ones left out), into a
 * malloc'ed array the caller frees. 0 or -errno. */
int hc_dpmaps_cluster_routes(struct hc_dpmaps *m, struct hc_dp_route **out, size_t *n);

/* Static entries (operators' routes to backends outside the cluster).
 * flags: HC_ROUTE_F_H2C or 0 (the static bit is set here). */
int hc_dpmaps_route_add_static(struct hc_dpmaps *m, const char *host, uint16_t port,
			       const struct hc_ipaddr *backend, uint16_t backend_port,
			       uint16_t flags, struct hc_err *err);
/* -ENOENT when absent, -EPERM when the entry is the cluster's, not static. */
int hc_dpmaps_route_del_static(struct hc_dpmaps *m, const char *host, uint16_t port,
			       struct hc_err *err);
/* Adds a backend to a static node-port service (creating it). */
int hc_dpmaps_service_add_static(struct hc_dpmaps *m, uint8_t proto, uint16_t node_port,
				 const struct hc_ipaddr *backend, uint16_t backend_port,
				 struct hc_err *err);
/* Removes one backend (backend != NULL) or the whole static service. */
int hc_dpmaps_service_del_static(struct hc_dpmaps *m, uint8_t proto, uint16_t node_port,
				 const struct hc_ipaddr *backend, uint16_t backend_port,
				 struct hc_err *err);

/* ---- the workload egress policy (docs/dataplane.md, "Isolation") ---- */

/* One --workload-allow-egress rule: a prefix, and the ports opened there. */
struct hc_dp_egress_rule {
	struct hc_ipaddr net;
	uint8_t prefix;
	bool any; /* no port given: every port and protocol */
	struct hc_port_range ports; /* when !any; proto 0: TCP and UDP */
};

/* "CIDR[:PORT[-PORT][/tcp|/udp]]": "10.0.0.0/8", "10.0.0.5:5432",
 * "192.0.2.0/24:8000-8100/tcp", "2001:db8::/32", "[2001:db8::1]:443/tcp"
 * (IPv6 takes a port only in brackets). An address without /N is one host;
 * host bits must be zero. 0 or -EINVAL. */
int hc_dp_egress_rule_parse(const char *text, struct hc_dp_egress_rule *out);

/* An hc_egress_allow entry as text, in the syntax above (several port
 * ranges joined by ','). */
void hc_dp_egress_format(const struct hc_egress_key *key, const struct hc_egress_val *val,
			 char *buf, size_t len);

/* Makes hc_egress_allow hold exactly rules[0..n), each prefix's value
 * folding in the rules of the shorter prefixes that cover it (the trie
 * answers with the longest match alone). 0 or -errno with err filled
 * (-E2BIG: more than HC_EGRESS_PORTS_MAX ranges on one prefix). */
int hc_dpmaps_set_egress_allow(struct hc_dpmaps *m, const struct hc_dp_egress_rule *rules,
			       size_t n, struct hc_err *err);

/* Makes the cluster members' addresses in hc_members exactly addrs[0..n)
 * (this node's own, which the loader keeps, are not touched). 0 or -errno. */
int hc_dpmaps_set_members(struct hc_dpmaps *m, const struct hc_ipaddr *addrs, size_t n);

/* Recomputes hc_proxy_ports from the ports hc_routes names. Route syncs and
 * static route changes call it; 0 or -errno. */
int hc_dpmaps_sync_proxy_ports(struct hc_dpmaps *m);

/* Builds a route key from a host name (lower-cased; -EINVAL if empty, too
 * long or not a valid host name). */
int hc_dp_route_key_init(struct hc_route_key *key, const char *host, uint16_t port);

/* An IPv4 or IPv6 address in text form as the maps hold it. 0 or -EINVAL. */
int hc_dp_ipaddr_parse(const char *text, struct hc_ipaddr *out);

/* A snapshot of every map, decoded, for `hypercore routes` and metrics. */
struct hc_dp_workload_row {
	uint32_t ifindex;
	struct hc_wl_info wl; /* zeroed id when only counters exist */
	struct hc_wl_stats stats; /* summed over CPUs */
};

/* An entry of hc_egress_allow. */
struct hc_dp_allow {
	struct hc_egress_key key;
	struct hc_egress_val val;
};

struct hc_dp_snapshot {
	struct hc_dp_route *routes;
	size_t n_routes;
	struct hc_dp_service *services;
	size_t n_services;
	struct hc_dp_workload_row *workloads;
	size_t n_workloads;
	uint64_t drops[HC_DROP_REASONS];
	size_t conntrack_entries;
	struct hc_config config; /* the uplink and its mode among the rest */
	/* the egress policy */
	size_t member_addrs, local_addrs; /* hc_members, by flag */
	size_t wl_flows; /* hc_wl_flows */
	struct hc_dp_allow *allow;
	size_t n_allow;
	uint16_t *proxy_ports; /* hc_proxy_ports, ascending */
	size_t n_proxy_ports;
};

/* Fills snap (caller-owned, release with hc_dp_snapshot_fini). Entries are
 * sorted (routes by host and port, services by port and protocol). */
int hc_dpmaps_snapshot(struct hc_dpmaps *m, struct hc_dp_snapshot *snap);
void hc_dp_snapshot_fini(struct hc_dp_snapshot *snap);

/* The workload rows alone (hc_workloads and hc_wl_stats summed over CPUs,
 * sorted as in a snapshot): what execution proofs read each period, without
 * dumping the other maps. *rows is the caller's (free()). Any thread: only
 * the maps' fds are used. 0 or -errno. */
int hc_dpmaps_workload_rows(struct hc_dpmaps *m, struct hc_dp_workload_row **rows, size_t *n);

/* Name of a drop reason code ("no_backend", ...). */
const char *hc_dp_drop_reason_name(unsigned int reason);

/* ---- the loader ---- */

/* How node ports are served on the uplink. */
enum hc_dp_mode {
	/* XDP where the driver runs it natively and delivers whole checksums
	 * (NICs); TC where frames may carry partial ones (veth, tun/tap) or
	 * the driver has no native XDP. */
	HC_DP_MODE_AUTO = 0,
	HC_DP_MODE_XDP, /* XDP: native when the driver has it, else generic */
	HC_DP_MODE_TC,	/* TC ingress: skb-aware, right with any checksums */
};

/* "auto", "xdp", "tc" <-> the mode. Parse returns 0 or -EINVAL. */
int hc_dp_mode_parse(const char *text, enum hc_dp_mode *out);
const char *hc_dp_mode_name(enum hc_dp_mode mode);

struct hc_dataplane_config {
	const char *pin_dir; /* NULL: HC_DEFAULT_BPF_PIN_DIR */
	const char *iface; /* uplink; NULL: the default route's interface */
	enum hc_dp_mode mode;
	struct hc_ipaddr workload_net; /* family 0: the default HC_WORKLOAD_SUBNET */
	uint8_t workload_prefix;
	/* Ports workloads may reach on members' addresses (besides DNS, node
	 * ports and the proxy's). */
	const struct hc_port_rule *host_allowed;
	size_t n_host_allowed;
	/* The IPv6 workload subnet; family 0: none. */
	struct hc_ipaddr workload_net6;
	uint8_t workload_prefix6;
	/* Destinations opened to workloads (--workload-allow-egress). */
	const struct hc_dp_egress_rule *egress_allow;
	size_t n_egress_allow;
};

struct hc_dataplane;

/* Mounts bpffs at /sys/fs/bpf when the pin directory lies there and nothing
 * is mounted, loads the programs with maps re-used from (or pinned to)
 * pin_dir, and attaches node-port translation to the uplink as cfg->mode
 * says: XDP through a pinned link (an existing one is moved to the new
 * program in place, no gap for traffic), or a TC ingress filter (replaced
 * in place); the other is detached. NULL + errno with err filled. */
struct hc_dataplane *hc_dataplane_open(const struct hc_dataplane_config *cfg,
				       struct hc_err *err);

/* The part of a running (or stopped) agent's data plane a workload needs,
 * from its pins alone: the maps and the workload veths' TC programs the
 * agent pinned, nothing loaded or attached. For processes other than the
 * agent (the CLI's local spawn): with it, hc_dataplane_workload_attach()
 * attaches the agent's own programs. NULL + errno (ENOENT: no data plane
 * pinned in pin_dir) with err filled; free with hc_dataplane_close(). */
struct hc_dataplane *hc_dataplane_open_pinned(const char *pin_dir, struct hc_err *err);

/* Releases the agent's handles; programs, links and maps stay attached and
 * pinned. Accepts NULL. */
void hc_dataplane_close(struct hc_dataplane *dp);

/* The maps the loader opened (owned by dp). */
struct hc_dpmaps *hc_dataplane_maps(struct hc_dataplane *dp);

/* How node ports are served, as resolved: HC_DP_MODE_XDP or HC_DP_MODE_TC. */
enum hc_dp_mode hc_dataplane_mode(const struct hc_dataplane *dp);
/* "native" or "generic" in XDP mode, "none" in TC mode; the uplink's name. */
const char *hc_dataplane_xdp_mode(const struct hc_dataplane *dp);
const char *hc_dataplane_iface(const struct hc_dataplane *dp);

/* Attaches TC to the host-side veth that routes to addr and records the
 * workload (id, address, isolation, egress limit in bytes/s, 0 = none) in
 * hc_workloads; turns on GRO on the veth's peer, which XDP redirects need.
 * Idempotent. -ENODEV when no veth routes to addr. */
int hc_dataplane_workload_attach(struct hc_dataplane *dp, const char *id,
				 const struct hc_ipaddr *addr, bool isolate, uint64_t rate_bytes_per_sec,
				 struct hc_err *err);

/* Joins a microVM's tap to the CNI veth's end inside its sandbox (network
 * namespace at netns): everything the veth receives goes to the tap, what
 * the tap receives (the VM sends) leaves by the veth, so the host side of
 * the veth, with its TC programs, sees the VM as the workload. Loads a copy
 * of bpf/hc_tap.bpf.c's programs for these ifindexes; the filters keep them
 * and go with the namespace. Needs no pinned data plane. 0 or -errno. */
int hc_dataplane_tap_join(const char *netns, const char *veth, const char *tap,
			  struct hc_err *err);

/* Detaches from the veth of the workload at addr, or of every recorded
 * workload whose veth is gone when addr is NULL. */
int hc_dataplane_workload_detach(struct hc_dataplane *dp, const struct hc_ipaddr *addr);

/* Re-reads the node's addresses into hc_host_addrs (and hc_members), the
 * proxy's ports into hc_proxy_ports, and attaches TC to the veths behind
 * static services' backends. Cheap; the agent calls it every
 * few seconds. */
int hc_dataplane_refresh(struct hc_dataplane *dp);

/* Detaches XDP from iface (or from wherever the pinned link is when iface is
 * NULL), the TC uplink filter from iface (NULL: the uplink hc_config names)
 * and TC from every recorded workload veth, then removes the pins and
 * pin_dir. Needs no running agent. */
int hc_dataplane_cleanup(const char *pin_dir, const char *iface, struct hc_err *err);

#endif /* HC_DATAPLANE_H */
