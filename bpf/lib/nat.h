/* Node-port NAT for XDP: backend choice by rendezvous hashing, the conntrack
 * entries of a new flow, and the destination rewrite with incremental
 * checksums. */
#ifndef HC_BPF_NAT_H
#define HC_BPF_NAT_H

#include "csum.h"
#include "maps.h"
#include "parse.h"

static __always_inline __u32 hc_hash32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 hc_addr_hash(const struct hc_ipaddr *a)
{
	const __u32 *w = (const __u32 *)a->ip6;

	return w[0] ^ w[1] ^ w[2] ^ w[3];
}

static __always_inline int hc_addr_eq(const struct hc_ipaddr *a, const struct hc_ipaddr *b)
{
	const __u32 *x = (const __u32 *)a->ip6, *y = (const __u32 *)b->ip6;

	return a->family == b->family && x[0] == y[0] && x[1] == y[1] && x[2] == y[2] &&
	       x[3] == y[3];
}

/* Rendezvous (highest random weight) choice among a service's backends: a
 * flow keeps its backend when others come or go, and only flows of a removed
 * backend move. Returns HC_SERVICE_MAX_BACKENDS when there is none. */
static __always_inline __u32 hc_pick_backend(const struct hc_service_val *svc,
					     const struct hc_pkt *p)
{
	__u32 flow = hc_hash32(hc_addr_hash(&p->saddr) ^
			       hc_hash32(((__u32)p->sport << 16 | p->dport) ^ p->l4_proto));
	__u32 best = HC_SERVICE_MAX_BACKENDS, best_score = 0;

#pragma unroll
	for (__u32 i = 0; i < HC_SERVICE_MAX_BACKENDS; i++) {
		const struct hc_backend *b = &svc->backends[i];
		__u32 score;

		if (i >= svc->count)
			break;
		score = hc_hash32(flow ^ hc_hash32(hc_addr_hash(&b->addr) ^ b->port));
		if (best == HC_SERVICE_MAX_BACKENDS || score > best_score) {
			best = i;
			best_score = score;
		}
	}
	return best;
}

/* The backend a known flow was given, if the service still has it there. */
static __always_inline const struct hc_backend *
hc_ct_backend(const struct hc_service_val *svc, const struct hc_ct_val *ct, __u32 *idx)
{
	const struct hc_backend *b;
	__u32 i = ct->backend_idx;

	if (ct->dir != HC_CT_FORWARD || i >= HC_SERVICE_MAX_BACKENDS || i >= svc->count)
		return NULL;
	b = &svc->backends[i];
	if (!hc_addr_eq(&b->addr, &ct->addr) || bpf_htons(b->port) != ct->port)
		return NULL;
	*idx = i;
	return b;
}

/* The way to a backend: egress ifindex and the MACs to write. */
struct hc_hop {
	__u32 ifindex;
	__u8 dmac[6];
	__u8 smac[6];
};

/* The next hop a flow's forward entry remembers, if it still leads to this
 * backend: the workload TC knows at that ifindex must have its address. A
 * veth gone or given to another workload makes the FIB decide again. */
static __always_inline int hc_ct_hop(const struct hc_ct_val *ct, const struct hc_backend *b,
				     struct hc_hop *hop)
{
	const struct hc_wl_info *wl;
	__u32 ifindex = ct->hop_ifindex;

	if (!ifindex)
		return 0;
	wl = bpf_map_lookup_elem(&hc_workloads, &ifindex);
	if (!wl || !hc_addr_eq(&wl->addr, &b->addr))
		return 0;
	hop->ifindex = ifindex;
	__builtin_memcpy(hop->dmac, ct->hop_dmac, 6);
	__builtin_memcpy(hop->smac, ct->hop_smac, 6);
	return 1;
}

static __always_inline void hc_ct_set_hop(struct hc_ct_val *ct, const struct hc_hop *hop)
{
	ct->hop_ifindex = hop ? hop->ifindex : 0;
	if (hop) {
		__builtin_memcpy(ct->hop_dmac, hop->dmac, 6);
		__builtin_memcpy(ct->hop_smac, hop->smac, 6);
	}
}

/* Writes both directions of a new flow (hop: the FIB's answer to keep, or
 * NULL). Returns 0 or a negative errno. */
static __always_inline int hc_ct_insert(const struct hc_pkt *p, const struct hc_ct_key *fwd,
					const struct hc_backend *b, __u32 idx,
					const struct hc_hop *hop)
{
	struct hc_ct_key rkey = {};
	struct hc_ct_val val = {};
	__u64 now = bpf_ktime_get_ns();
	int err;

	val.addr = b->addr;
	val.port = bpf_htons(b->port);
	val.dir = HC_CT_FORWARD;
	val.backend_idx = idx;
	val.created_ns = now;
	hc_ct_set_hop(&val, hop);
	err = bpf_map_update_elem(&hc_conntrack, fwd, &val, BPF_ANY);
	if (err)
		return err;

	rkey.saddr = b->addr;
	rkey.daddr = p->saddr;
	rkey.sport = bpf_htons(b->port);
	rkey.dport = p->sport;
	rkey.proto = p->l4_proto;
	__builtin_memset(&val, 0, sizeof(val));
	val.addr = p->daddr;
	val.port = p->dport;
	val.dir = HC_CT_REPLY;
	val.created_ns = now;
	return bpf_map_update_elem(&hc_conntrack, &rkey, &val, BPF_ANY);
}

/* Rewrites the destination address and port to the backend's, keeping the
 * IPv4 header checksum and the TCP/UDP checksum right. Returns 0, or -1 if
 * the headers moved out of reach (they cannot: parse checked them). */
static __always_inline int hc_nat_dst(void *data, void *data_end, const struct hc_pkt *p,
				      const struct hc_backend *b)
{
	__u16 *l4sum = data + (p->csum_off & 0x7ff);
	__be16 *dport = data + ((p->l4_off + 2) & 0x7ff);
	__be16 new_port = bpf_htons(b->port);
	int udp = p->l4_proto == IPPROTO_UDP;
	int fix_l4;

	if ((void *)(l4sum + 1) > data_end || (void *)(dport + 1) > data_end)
		return -1;
	/* A zero UDP checksum over IPv4 means "none" and stays zero. */
	fix_l4 = !(udp && p->l3_proto == ETH_P_IP && *l4sum == 0);

	if (p->l3_proto == ETH_P_IP) {
		struct iphdr *iph = data + (p->l3_off & 0x3f);

		if ((void *)(iph + 1) > data_end)
			return -1;
		hc_csum_replace4(&iph->check, iph->daddr, b->addr.ip4);
		if (fix_l4)
			hc_csum_replace4(l4sum, iph->daddr, b->addr.ip4);
		iph->daddr = b->addr.ip4;
	} else {
		struct ipv6hdr *ip6h = data + (p->l3_off & 0x3f);

		if ((void *)(ip6h + 1) > data_end)
			return -1;
		hc_csum_replace16(l4sum, (const __u8 *)&ip6h->daddr, b->addr.ip6);
		__builtin_memcpy(&ip6h->daddr, b->addr.ip6, 16);
	}
	if (fix_l4) {
		hc_csum_replace2(l4sum, *dport, new_port);
		if (udp && *l4sum == 0)
			*l4sum = 0xffff; /* a computed zero is sent as all ones */
	}
	*dport = new_port;
	return 0;
}

#endif /* HC_BPF_NAT_H */
