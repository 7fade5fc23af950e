/* Node-port NAT, shared by the uplink's XDP and TC programs: which packets
 * are for a node port, backend choice by rendezvous hashing, the way to the
 * backend, the conntrack entries of a new flow, and (for XDP, which sees
 * whole checksums) the destination rewrite with incremental checksums. */
#ifndef HC_BPF_NAT_H
#define HC_BPF_NAT_H

#include "csum.h"
#include "maps.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET HC_AF_INET
#define AF_INET6 HC_AF_INET6
#endif

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

/* A packet for one of the node's node ports, on its way to a backend. */
struct hc_nodeport_flow {
	struct hc_ct_key fkey; /* the forward conntrack key: the packet's 5-tuple */
	struct hc_ct_val *ct; /* its forward entry; NULL for a new flow */
	const struct hc_backend *b; /* the chosen backend, in hc_services */
	__u32 idx; /* b's index in the service */
	struct hc_hop hop; /* the way to b: egress ifindex and MACs */
	int neigh; /* 0: no neighbour entry yet, the stack must resolve it */
};

/* Decides whether p goes to a node port's backend. Returns 1 with f's
 * backend and conntrack entry filled, or 0 to leave the packet alone (a
 * drop reason counted where the node port exists but cannot be served). */
static __always_inline int hc_nodeport_match(const struct hc_pkt *p, struct hc_nodeport_flow *f)
{
	const struct hc_service_val *svc;
	struct hc_service_key skey = {};

	skey.port = bpf_ntohs(p->dport);
	skey.proto = p->l4_proto;
	svc = bpf_map_lookup_elem(&hc_services, &skey);
	if (!svc)
		return 0;
	if (!bpf_map_lookup_elem(&hc_host_addrs, &p->daddr))
		return 0;

	__builtin_memset(&f->fkey, 0, sizeof(f->fkey));
	f->fkey.saddr = p->saddr;
	f->fkey.daddr = p->daddr;
	f->fkey.sport = p->sport;
	f->fkey.dport = p->dport;
	f->fkey.proto = p->l4_proto;
	f->b = NULL;
	f->idx = 0;
	f->ct = bpf_map_lookup_elem(&hc_conntrack, &f->fkey);
	if (f->ct)
		f->b = hc_ct_backend(svc, f->ct, &f->idx);
	if (!f->b) {
		f->idx = hc_pick_backend(svc, p);
		if (f->idx >= HC_SERVICE_MAX_BACKENDS) {
			hc_count_drop(HC_DROP_NO_BACKEND);
			return 0;
		}
		f->b = &svc->backends[f->idx];
		f->ct = NULL;
	}
	if (f->b->addr.family != p->daddr.family) {
		hc_count_drop(HC_DROP_NO_BACKEND);
		return 0;
	}
	return 1;
}

/* Where a node-port packet came in, for the FIB. */
struct hc_ingress {
	void *ctx; /* the program's own: xdp_md or __sk_buff */
	__u32 ifindex;
	/* The length the FIB checks against the MTU: the IP packet's for XDP;
	 * 0 for an skb, whose own length the kernel then checks knowing GSO
	 * (a GRO'd skb is longer than the MTU, yet fits once segmented). */
	__u16 tot_len;
	__u8 tagged; /* VLAN tags, which only a redirect removes */
};

/* Asks the kernel's FIB for the way to the backend. Returns a
 * BPF_FIB_LKUP_RET_* code. */
static __always_inline int hc_fib_to_backend(const struct hc_ingress *in, const struct hc_pkt *p,
					     const struct hc_backend *b,
					     struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->l4_protocol = p->l4_proto;
	fib->sport = p->sport;
	fib->dport = bpf_htons(b->port);
	fib->tot_len = in->tot_len;
	fib->ifindex = in->ifindex;
	if (p->l3_proto == ETH_P_IP) {
		fib->family = AF_INET;
		fib->tos = p->tos;
		fib->ipv4_src = p->saddr.ip4;
		fib->ipv4_dst = b->addr.ip4;
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, p->saddr.ip6, 16);
		__builtin_memcpy(fib->ipv6_dst, b->addr.ip6, 16);
	}
	return bpf_fib_lookup(in->ctx, fib, sizeof(*fib), 0);
}

/* Finds the way to f's backend (the one an established flow remembers, else
 * the FIB's) and records a new flow in conntrack. A tagged frame without a
 * neighbour entry is not translated: only a redirect removes its tags, and
 * the stack could not forward it. Returns 0 to go on with the rewrite, or -1
 * to leave the packet untranslated (its drop reason counted). */
static __always_inline int hc_nodeport_route(const struct hc_ingress *in, const struct hc_pkt *p,
					     struct hc_nodeport_flow *f)
{
	struct bpf_fib_lookup fib;
	int rc;

	if (f->ct && hc_ct_hop(f->ct, f->b, &f->hop)) {
		f->neigh = 1; /* an established flow's way */
	} else {
		rc = hc_fib_to_backend(in, p, f->b, &fib);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS &&
		    !(rc == BPF_FIB_LKUP_RET_NO_NEIGH && !in->tagged)) {
			hc_count_drop(HC_DROP_FIB);
			return -1;
		}
		f->neigh = rc == BPF_FIB_LKUP_RET_SUCCESS;
		f->hop.ifindex = fib.ifindex;
		__builtin_memcpy(f->hop.dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(f->hop.smac, fib.smac, ETH_ALEN);
		if (f->ct)
			hc_ct_set_hop(f->ct, f->neigh ? &f->hop : NULL);
	}
	if (!f->ct && hc_ct_insert(p, &f->fkey, f->b, f->idx, f->neigh ? &f->hop : NULL)) {
		hc_count_drop(HC_DROP_CT_FULL);
		return -1;
	}
	return 0;
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
