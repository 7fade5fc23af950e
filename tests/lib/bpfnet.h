/* The private network namespace the BPF program tests and benchmarks run in,
 * and helpers for the maps they inspect. Entering it needs root; the
 * namespace, its veths, routes and neighbours disappear with the process, so
 * nothing is left behind when a test fails or crashes.
 *
 * Topology (documentation and private ranges only):
 *
 *   hc-up0  the node's uplink, where XDP runs. 198.51.100.1/24 and
 *           2001:db8:100::1/64; clients 203.0.113.0/24 and 2001:db8:203::/64
 *           live behind the gateway .254 / ::fe, whose MAC is permanent.
 *   hc-wl0  a workload's host-side veth. 10.244.0.1/24 and fd00:244::1/64;
 *           backends .2 .3 .4 .5 and ::2 ::3 have permanent neighbour
 *           entries with MACs 02:00:00:00:02:<last byte>, .9 and ::9 have
 *           none. Nothing routes 192.0.2.0/24.
 *
 * The veths' peers (hc-up1, hc-wl1) stay in the namespace without addresses,
 * so no backend address is local. Forwarding is on, as on a node, and the
 * MTU is 9000 (jumbo frames reach the FIB's MTU check intact). */
#ifndef HC_TEST_BPFNET_H
#define HC_TEST_BPFNET_H

#include <stddef.h>
#include <stdint.h>

#include <bpf/libbpf.h>

#include <hypercore/dataplane.h>

#define HC_BPFNET_UPLINK "hc-up0"
#define HC_BPFNET_UPLINK_MAC "02:00:00:00:00:01"
#define HC_BPFNET_NODE4 "198.51.100.1"
#define HC_BPFNET_NODE6 "2001:db8:100::1"
#define HC_BPFNET_GW_MAC "02:00:00:00:00:fe"
#define HC_BPFNET_CLIENT4 "203.0.113.7"
#define HC_BPFNET_CLIENT6 "2001:db8:203::7"

#define HC_BPFNET_WL "hc-wl0"
#define HC_BPFNET_WL_MAC "02:00:00:00:01:01"
#define HC_BPFNET_WL_GW4 "10.244.0.1"
#define HC_BPFNET_WL_GW6 "fd00:244::1"
#define HC_BPFNET_WL_NET4 "10.244.0.0"
#define HC_BPFNET_WL_PREFIX4 24
#define HC_BPFNET_BACKEND4 "10.244.0.2" /* MAC 02:00:00:00:02:02 */
#define HC_BPFNET_BACKEND6 "fd00:244::2" /* MAC 02:00:00:00:02:02 */
#define HC_BPFNET_NO_NEIGH4 "10.244.0.9"
#define HC_BPFNET_NO_NEIGH6 "fd00:244::9"
#define HC_BPFNET_UNROUTED4 "192.0.2.99"

struct hc_bpfnet {
	int uplink_ifindex; /* hc-up0 */
	int wl_ifindex; /* hc-wl0 */
};

/* Moves the calling process (which must be single-threaded) into a new
 * network namespace and builds the topology above with ip(8). Returns 0, or
 * -errno with the reason in why: -EPERM when not root, -EOPNOTSUPP when the
 * kernel or ip(8) lacks something. Blocks while ip(8) runs. */
int hc_bpfnet_enter(struct hc_bpfnet *net, char *why, size_t why_len);

/* The backend MAC the topology gives an address (by its last byte). */
void hc_bpfnet_backend_mac(const char *addr, char out[18]);

/* Text address -> hc_ipaddr as the maps hold it (network order, family set,
 * the rest zero). Returns 0 or -EINVAL. */
int hc_bpfnet_addr(const char *text, struct hc_ipaddr *out);

/* Keeps an object's maps from being pinned (the tests and benchmarks own
 * private maps): clears every map's pin path. Call between open and load. */
void hc_bpfnet_unpin(struct bpf_object *obj);

/* Makes every map of `to` that `from` (loaded) has by name use from's map,
 * as the agent's pins do: programs of both objects then share their maps.
 * Call between to's open and load. Returns 0 or -errno. */
int hc_bpfnet_share_maps(const struct bpf_object *from, struct bpf_object *to);

/* Sums a per-CPU value made of `words` u64 counters over all CPUs into out.
 * Returns 0 or -errno (-ENOENT: no such key). */
int hc_bpfnet_percpu_sum(int map_fd, const void *key, size_t words, uint64_t *out);

/* Writes zeros for key on every CPU. Returns 0 or -errno. */
int hc_bpfnet_percpu_zero(int map_fd, const void *key, size_t words);

/* Number of entries of a map, and deleting them all. */
int hc_bpfnet_map_count(int map_fd, size_t key_size);
int hc_bpfnet_map_clear(int map_fd, size_t key_size);

#endif /* HC_TEST_BPFNET_H */
