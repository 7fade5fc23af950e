/* Private interfaces between the files of agent/dataplane. */
#ifndef HC_DATAPLANE_INT_H
#define HC_DATAPLANE_INT_H

#include <bpf/libbpf.h>
#include <net/if.h>

#include "dataplane/dataplane.h"

/* ---- loader.c, for every file that opens pins ---- */

/* Sets err for a pin that is not there: name missing under pin_dir. Where
 * /sys/fs/bpf is no bpf filesystem (`ip netns exec` gives each command a
 * fresh /sys), says so: the agent's pins cannot be seen from here. -ENOENT. */
int hc_dp_not_pinned(struct hc_err *err, const char *pin_dir, const char *name);

/* ---- maps.c, maps_sync.c (the mirror), maps_snapshot.c ---- */

/* What a kind of map held after the last sync: entries (key, then value,
 * stride bytes each) and an open-addressing index on the key. A sync
 * compares the desired set with it instead of reading the whole map. */
struct hc_dp_mirror {
	bool valid; /* false: read the map before the next sync */
	char *entries;
	unsigned char *live; /* per entry: 0 once deleted (until a rebuild) */
	size_t n, cap, ndead, ksize, stride;
	size_t *slots; /* entry + 1; 0 = empty */
	size_t mask;
};

void hc_dp_mirror_fini(struct hc_dp_mirror *m);

/* Entries read or written per batch call. */
#define HC_DP_BATCH 4096

/* Every key and value of a (non per-CPU) hash map, into malloc'ed arrays. */
struct hc_dp_map_dump {
	void *keys;
	void *vals;
	size_t n;
};

/* Fills d (vsize: the value size as userspace sees it; per-CPU maps: times
 * CPUs). 0 or -errno. */
int hc_dp_map_dump_all(int fd, size_t ksize, size_t vsize, struct hc_dp_map_dump *d);
void hc_dp_map_dump_fini(struct hc_dp_map_dump *d);

struct hc_dpmaps {
	int routes, services, conntrack, wl_stats, workloads, wl_rate;
	int host_addrs, config, drops;
	int members, egress_allow, proxy_ports, wl_flows; /* the egress policy's */
	struct hc_dp_mirror routes_mirror, services_mirror;
};

struct hc_xdp;
struct hc_tc;
struct hc_sockmap;

/* The loader's state (loader.c), shared with uplink.c. */
struct hc_dataplane {
	char pin_dir[256];
	char iface[IF_NAMESIZE];
	int ifindex;
	enum hc_dp_mode mode; /* as resolved: HC_DP_MODE_XDP or HC_DP_MODE_TC */
	const char *xdp_mode; /* "native", "generic"; "none" in TC mode */
	struct hc_config config; /* as last written to hc_config */
	struct hc_xdp *xdp;
	struct hc_tc *tc;
	struct hc_sockmap *sockmap;
	struct hc_dpmaps maps;
	/* The workload veths' programs: the tc skeleton's, or (opened from
	 * their pins by hc_dataplane_open_pinned) owned here. */
	int tc_from_wl_fd, tc_to_wl_fd;
	bool own_prog_fds;
	/* hc_workloads entries of an older layout, until the new map takes them */
	struct {
		__u32 ifindex;
		struct hc_wl_info wl;
	} *carried;
	size_t n_carried;
};

/* Pins of the workload veths' TC programs, so that a process that loads
 * nothing (the CLI's local spawn) attaches the agent's own programs. */
#define HC_PIN_TC_FROM_WL "hc_prog_tc_from_wl"
#define HC_PIN_TC_TO_WL "hc_prog_tc_to_wl"

/* Opens from pins (fds owned by m); or adopts fds the loader got (dup'ed). */
int hc_dpmaps_init_from_pins(struct hc_dpmaps *m, const char *pin_dir, struct hc_err *err);
void hc_dpmaps_fini(struct hc_dpmaps *m);

/* Makes hc_host_addrs hold addrs[0..n) (each once; IPv6 link-local ones
 * only as room allows, after the rest), and the entries of hc_members
 * flagged HC_MEMBER_F_LOCAL exactly addrs[0..n). */
int hc_dpmaps_set_host_addrs(struct hc_dpmaps *m, const struct hc_ipaddr *addrs, size_t n);

/* ---- egress.c ---- */

/* Makes exactly addrs[0..n) carry flag in hc_members, leaving the other
 * flags alone (an entry without any is deleted). 0 or -errno. */
int hc_dp_members_set_flag(struct hc_dpmaps *m, __u8 flag, const struct hc_ipaddr *addrs,
			   size_t n);

/* ---- loader.c: TC ---- */

/* Our filters' handle and priority, on workload veths and the uplink. */
#define HC_DP_TC_HANDLE 0x4843 /* "HC" */
#define HC_DP_TC_PRIORITY 1

/* Attaches prog_fd at ifindex's clsact hook `where` (creating the qdisc
 * unless has_qdisc says it is there), replacing our earlier filter. 0 or
 * -errno. */
int hc_dp_tc_attach_one(int ifindex, int prog_fd, enum bpf_tc_attach_point where, bool has_qdisc);

/* ---- uplink.c: how node ports are served on the uplink ---- */

/* Attaches XDP or TC to dp's uplink as want says (auto: see uplink.c),
 * detaching the other, and records the outcome in dp->mode and
 * dp->xdp_mode. 0 or -errno with err filled. */
int hc_dp_uplink_attach(struct hc_dataplane *dp, enum hc_dp_mode want, struct hc_err *err);

/* Detaches the pinned XDP link, and (ifindex > 0) any XDP program or TC
 * uplink filter of ours on ifindex. 0 or -errno with err filled. */
int hc_dp_uplink_cleanup(const char *pin_dir, int ifindex, struct hc_err *err);

/* ---- netlink.c: rtnetlink queries ---- */

struct hc_dp_link {
	int ifindex;
	char name[IF_NAMESIZE];
	bool is_veth;
	int peer_ifindex; /* IFLA_LINK: the peer's index in its namespace */
	int peer_netnsid; /* IFLA_LINK_NETNSID, -1 when the peer is local */
};

/* The interface the main table routes addr through (a /32 or /128 host
 * route for a workload). 0 and *ifindex, or -errno (-ENETUNREACH). */
int hc_nl_route_oif(const struct hc_ipaddr *addr, int *ifindex);
/* The interface of the IPv4 default route (IPv6 when there is none). */
int hc_nl_default_oif(int *ifindex);
int hc_nl_link_get(int ifindex, struct hc_dp_link *link);
/* The netns id this namespace has for the namespace behind fd, or -errno. */
int hc_nl_netnsid_of_fd(int nsfd);
/* Every IPv4 and IPv6 address of this namespace, each once, link-local
 * ones left out. Caller frees *addrs. */
int hc_nl_local_addrs(struct hc_ipaddr **addrs, size_t *n);

/* Turns on GRO for the peer of a local veth (in whichever namespace it
 * lives). XDP redirects into a veth drop every frame unless its peer has
 * NAPI, which GRO (or an XDP program) gives it. */
int hc_dp_veth_peer_enable_gro(const struct hc_dp_link *link);

#endif /* HC_DATAPLANE_INT_H */
