/* Map keys and values shared by the BPF programs (bpf/) and the agent.
 *
 * One definition for both sides: fixed-width kernel types, explicit padding,
 * sizes pinned by _Static_assert. Values are append-only: a retired field
 * becomes reserved, never reused. Byte order is stated per field: what the
 * operator reads (routes, services) is host order; what is copied from packets
 * (conntrack) stays in network order. */
#ifndef HYPERCORE_DATAPLANE_H
#define HYPERCORE_DATAPLANE_H

#include <linux/bpf.h> /* struct bpf_spin_lock */
#include <linux/types.h>

/* Map names: pins under the pin directory carry these names, and userspace
 * looks maps up by them, so they are written once, here. The kernel keeps 15
 * characters of a map name. */
#define HC_MAP_ROUTES "hc_routes"
#define HC_MAP_SERVICES "hc_services"
#define HC_MAP_CONNTRACK "hc_conntrack"
#define HC_MAP_WL_STATS "hc_wl_stats"
#define HC_MAP_WORKLOADS "hc_workloads"
#define HC_MAP_WL_RATE "hc_wl_rate"
#define HC_MAP_HOST_ADDRS "hc_host_addrs"
#define HC_MAP_CONFIG "hc_config"
#define HC_MAP_DROPS "hc_drops"
#define HC_MAP_SPLICE "hc_splice"
#define HC_MAP_SPLICE_PEER "hc_splice_peer"
#define HC_MAP_MEMBERS "hc_members"
#define HC_MAP_EGRESS_ALLOW "hc_egress_allow"
#define HC_MAP_PROXY_PORTS "hc_proxy_ports"
#define HC_MAP_WL_FLOWS "hc_wl_flows"

#define HC_DEFAULT_BPF_PIN_DIR "/sys/fs/bpf/hypercore"

/* Capacities; the BPF side takes them as map sizes. */
#ifndef HC_ROUTES_MAX
#define HC_ROUTES_MAX 65536
#endif
#ifndef HC_SERVICES_MAX
#define HC_SERVICES_MAX 32768
#endif
#ifndef HC_CONNTRACK_MAX
#define HC_CONNTRACK_MAX 262144
#endif
#ifndef HC_WORKLOADS_MAX
#define HC_WORKLOADS_MAX 4096
#endif
#ifndef HC_HOST_ADDRS_MAX
#define HC_HOST_ADDRS_MAX 256
#endif
#ifndef HC_SPLICE_MAX
#define HC_SPLICE_MAX 65536
#endif
#ifndef HC_MEMBER_ADDRS_MAX
#define HC_MEMBER_ADDRS_MAX 16384
#endif
#ifndef HC_EGRESS_ALLOW_MAX
#define HC_EGRESS_ALLOW_MAX 1024
#endif
#ifndef HC_WL_FLOWS_MAX
#define HC_WL_FLOWS_MAX 65536
#endif

#define HC_AF_INET 2   /* AF_INET, without pulling libc into BPF */
#define HC_AF_INET6 10 /* AF_INET6 */

/* An IPv4 or IPv6 address, network byte order; family 0 means "none". */
struct hc_ipaddr {
	union {
		__be32 ip4;
		__u8 ip6[16];
	};
	__u8 family;
	__u8 pad[3];
};
_Static_assert(sizeof(struct hc_ipaddr) == 20, "hc_ipaddr layout");

/* hc_routes: (host key, host port) -> backend, read by the L7 proxy.
 * The host key is a workload id or an exact host name, lower case,
 * NUL-padded. */
#define HC_ROUTE_HOST_MAX 128
#define HC_NODE_NAME_MAX 64

struct hc_route_key {
	char host[HC_ROUTE_HOST_MAX];
	__u16 port; /* host order; 0 = any port the proxy serves */
	__u16 pad;
};
_Static_assert(sizeof(struct hc_route_key) == 132, "hc_route_key layout");

#define HC_ROUTE_F_STATIC 0x1 /* written by `routes add`; state syncs never touch it */
#define HC_ROUTE_F_H2C 0x2 /* the backend speaks HTTP/2 without TLS (h2c): the proxy's HTTP/2
			    * streams go to it as HTTP/2 (gRPC), not translated to HTTP/1.1 */

struct hc_route_val {
	struct hc_ipaddr backend;
	__u16 port; /* host order */
	__u16 flags; /* HC_ROUTE_F_* */
	char node[HC_NODE_NAME_MAX]; /* owning node's id; empty for static routes */
};
_Static_assert(sizeof(struct hc_route_val) == 88, "hc_route_val layout");

/* hc_services: (protocol, node port) -> the workload backends behind it, read
 * by XDP on the uplink. Several backends are spread by rendezvous hashing, so
 * adding or removing one moves only the flows that hash to it. */
#define HC_SERVICE_MAX_BACKENDS 16

struct hc_service_key {
	__u16 port; /* node port, host order */
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};
_Static_assert(sizeof(struct hc_service_key) == 4, "hc_service_key layout");

struct hc_backend {
	struct hc_ipaddr addr;
	__u16 port; /* host order */
	__u16 pad;
};
_Static_assert(sizeof(struct hc_backend) == 24, "hc_backend layout");

#define HC_SERVICE_F_STATIC 0x1

struct hc_service_val {
	__u32 count; /* backends in use, <= HC_SERVICE_MAX_BACKENDS */
	__u16 flags; /* HC_SERVICE_F_* */
	__u16 pad;
	struct hc_backend backends[HC_SERVICE_MAX_BACKENDS];
};
_Static_assert(sizeof(struct hc_service_val) == 8 + 24 * HC_SERVICE_MAX_BACKENDS,
	       "hc_service_val layout");

/* hc_conntrack (LRU): NAT state of node-port flows. XDP writes both
 * directions on a flow's first packet: the forward key (client -> node:port)
 * maps to the chosen backend, the reply key (backend -> client) to the node
 * address and port that TC writes back as the reply's source. */
struct hc_ct_key {
	struct hc_ipaddr saddr;
	struct hc_ipaddr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct hc_ct_key) == 48, "hc_ct_key layout");

#define HC_CT_FORWARD 1
#define HC_CT_REPLY 2

struct hc_ct_val {
	struct hc_ipaddr addr; /* forward: backend; reply: node address */
	__be16 port; /* forward: backend port; reply: node port */
	__u8 dir; /* HC_CT_FORWARD or HC_CT_REPLY */
	__u8 backend_idx; /* forward: index into the service's backends */
	__u64 created_ns; /* bpf_ktime_get_ns() of the first packet */
	/* forward: the FIB's answer for the backend, kept so that a flow's
	 * later packets skip the lookup; 0 = none. Used only while the
	 * workload recorded at that ifindex still has the backend's address. */
	__u32 hop_ifindex;
	__u8 hop_dmac[6];
	__u8 hop_smac[6];
};
_Static_assert(sizeof(struct hc_ct_val) == 48, "hc_ct_val layout");

/* hc_wl_stats (per-CPU): key is the ifindex of a workload's host-side veth.
 * "rx" is traffic into the workload, "tx" traffic it sends. */
struct hc_wl_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 dropped_packets; /* isolation and rate limit drops */
	__u64 dropped_bytes;
};
_Static_assert(sizeof(struct hc_wl_stats) == 48, "hc_wl_stats layout");

/* hc_workloads: host-side veth ifindex -> the workload behind it (written by
 * the agent when it attaches TC to that veth). */
#define HC_WORKLOAD_ID_MAX 64
#define HC_WL_F_ISOLATE 0x1 /* enforce guest -> host isolation */

struct hc_wl_info {
	char id[HC_WORKLOAD_ID_MAX];
	struct hc_ipaddr addr; /* the address it may send from (IPv4 or IPv6) */
	__u32 flags; /* HC_WL_F_* */
	__u64 rate_bytes_per_sec; /* egress limit; 0 = none */
	__u64 burst_bytes;
	/* A second address of the other family (dual stack); family 0: none.
	 * The runtime gives workloads IPv4 only today. */
	struct hc_ipaddr addr2;
	__u32 pad;
};
_Static_assert(sizeof(struct hc_wl_info) == 128, "hc_wl_info layout");

/* hc_wl_rate: token bucket of a workload's egress limit, kept apart from
 * hc_workloads so that rewriting a workload entry does not refill it. */
struct hc_wl_rate {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens; /* bytes */
	__u64 last_ns;
};

/* hc_host_addrs: the node's own addresses -> 1. XDP translates only packets
 * addressed to one of them. */

/* hc_members: an address of a cluster member or of this node -> who put it
 * there (HC_MEMBER_F_*, a __u8). TC refuses workloads these addresses but
 * for the ports open there (the proxy's, node ports, DNS). */
#define HC_MEMBER_F_PEER 0x1 /* a member's gossip or advertised address (member list) */
#define HC_MEMBER_F_LOCAL 0x2 /* one of this node's own addresses (netlink) */

/* hc_egress_allow (LPM trie): destinations the operator opened to workloads
 * (--workload-allow-egress), beyond what the rules allow. The key is
 * (family, address) matched on its first prefixlen bits: 32 for the family
 * word, then the address prefix. */
struct hc_egress_key {
	__u32 prefixlen; /* 32 + the address prefix length */
	__u8 family; /* HC_AF_INET or HC_AF_INET6 */
	__u8 pad[3];
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct hc_egress_key) == 24, "hc_egress_key layout");

#define HC_EGRESS_PORTS_MAX 8

struct hc_port_range {
	__u16 lo, hi; /* host order, inclusive */
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP; 0: both */
	__u8 pad[3];
};
_Static_assert(sizeof(struct hc_port_range) == 8, "hc_port_range layout");

/* The longest matching prefix decides alone, so the agent folds the rules
 * of every shorter prefix covering it into its value. */
struct hc_egress_val {
	__u8 any; /* 1: every port and protocol (ICMP, fragments too) */
	__u8 count; /* port ranges in use */
	__u8 pad[6];
	struct hc_port_range ports[HC_EGRESS_PORTS_MAX];
};
_Static_assert(sizeof(struct hc_egress_val) == 8 + 8 * HC_EGRESS_PORTS_MAX,
	       "hc_egress_val layout");

/* hc_proxy_ports (array of one): the TCP ports the proxy serves (those
 * hc_routes names), one bit each, open to workloads on members' addresses
 * (hairpin: a workload calls another's public URL through the proxy). */
struct hc_port_bitmap {
	__u64 bits[65536 / 64]; /* bit p % 64 of bits[p / 64]: port p, host order */
};
_Static_assert(sizeof(struct hc_port_bitmap) == 8192, "hc_port_bitmap layout");

/* hc_wl_flows (LRU): flows a cluster member or this node opened to a
 * workload, keyed as the workload's replies travel (saddr = the workload),
 * -> bpf_ktime_get_ns() of the opening packet. hc_tc_to_wl writes them
 * (TCP SYN, UDP) so that hc_tc_from_wl lets the replies through. */

/* hc_config (array of one): settings the agent writes once at start. */
#define HC_ALLOWED_PORTS_MAX 8

struct hc_port_rule {
	__u16 port; /* host order; 0 = unused slot */
	__u8 proto;
	__u8 pad;
};

/* Where node ports are translated (hc_config.uplink_mode). XDP needs frames
 * with whole checksums, as NICs deliver them; a veth or tap passes on the
 * sender's partial ones, which only skb-aware TC can rewrite correctly. */
#define HC_UPLINK_NONE 0
#define HC_UPLINK_XDP 1 /* hc_xdp_ingress on the uplink */
#define HC_UPLINK_TC 2 /* hc_tc_uplink at the uplink's TC ingress */

struct hc_config {
	struct hc_ipaddr workload_net; /* the workload subnet ... */
	__u8 workload_prefix; /* ... and its prefix length */
	__u8 pad[3];
	/* What a workload may reach on the node's own addresses. */
	struct hc_port_rule host_allowed[HC_ALLOWED_PORTS_MAX];
	/* The uplink and how node ports are served there; for `hypercore
	 * routes` and cleanup (no program reads them). The name too: an
	 * ifindex means nothing in another network namespace. */
	__u32 uplink_ifindex;
	__u8 uplink_mode; /* HC_UPLINK_* */
	__u8 uplink_xdp_native; /* with HC_UPLINK_XDP: 1 native, 0 generic */
	__u8 pad2[2];
	char uplink_iface[16]; /* IFNAMSIZ, NUL-terminated */
	struct hc_ipaddr workload_net6; /* the IPv6 workload subnet; family 0: none */
	__u8 workload_prefix6;
	__u8 pad3[3];
};
_Static_assert(sizeof(struct hc_config) == 104, "hc_config layout");

/* hc_drops (per-CPU array): packets dropped or left untranslated, by reason.
 * Codes are never reused; a retired code stays reserved. */
enum hc_drop_reason {
	HC_DROP_NONE = 0,
	HC_DROP_NO_BACKEND = 1, /* node port with no backend: passed to the stack */
	HC_DROP_FIB = 2, /* no route to the backend: passed untranslated */
	HC_DROP_ISOLATION = 3, /* retired: TC counts the HC_DROP_WL_* reasons now */
	HC_DROP_RATE = 4, /* over the workload's egress rate */
	HC_DROP_CT_FULL = 5, /* conntrack insert failed: passed untranslated */
	HC_DROP_MALFORMED = 6, /* header lengths that do not add up */
	HC_DROP_TOO_BIG = 7, /* a translated reply larger than the way out's MTU */
	/* What a workload sends (hc_tc_from_wl), refused: */
	HC_DROP_WL_MALFORMED = 8, /* an IP packet that does not parse */
	HC_DROP_WL_SPOOFED = 9, /* a source address not the workload's own */
	HC_DROP_WL_NOT_IP = 10, /* neither IPv4, IPv6 nor ARP, or VLAN-tagged */
	HC_DROP_WL_MEMBER = 11, /* a member's (or this node's) address, port not open */
	HC_DROP_WL_WORKLOAD = 12, /* another workload, directly */
	HC_DROP_WL_LINK_LOCAL = 13, /* link-local, loopback, multicast, broadcast */
	HC_DROP_WL_METADATA = 14, /* a cloud metadata address */
	HC_DROP_REASONS
};

/* hc_drops has room for reasons yet to come, so that adding one does not
 * change the pinned map's size and strand an upgraded agent. */
#define HC_DROP_REASONS_MAX 64
_Static_assert(HC_DROP_REASONS <= HC_DROP_REASONS_MAX, "hc_drops is too small");

/* hc_splice_peer: socket cookie -> the cookie of the socket its bytes go to.
 * hc_splice (sockhash) holds the sockets, keyed by cookie. */

#endif /* HYPERCORE_DATAPLANE_H */
