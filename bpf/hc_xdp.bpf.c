/* xdp_ingress, on the node's uplink: node-port DNAT. A TCP or UDP packet to
 * one of the node's addresses on a port in hc_services is given a backend
 * (sticky through hc_conntrack), rewritten to it and redirected to the
 * workload's veth; every other frame passes untouched. */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"

#ifndef AF_INET
#define AF_INET HC_AF_INET
#define AF_INET6 HC_AF_INET6
#endif

/* Asks the kernel's FIB for the way to the backend: egress ifindex and
 * both MAC addresses. Returns a BPF_FIB_LKUP_RET_* code. */
static __always_inline int hc_fib_to_backend(struct xdp_md *ctx, void *data, void *data_end,
					     const struct hc_pkt *p, const struct hc_backend *b,
					     struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->l4_protocol = p->l4_proto;
	fib->sport = p->sport;
	fib->dport = bpf_htons(b->port);
	fib->tot_len = p->l3_len;
	fib->ifindex = ctx->ingress_ifindex;
	if (p->l3_proto == ETH_P_IP) {
		struct iphdr *iph = data + (p->l3_off & 0x3f);

		if ((void *)(iph + 1) > data_end)
			return -1;
		fib->family = AF_INET;
		fib->tos = iph->tos;
		fib->ipv4_src = p->saddr.ip4;
		fib->ipv4_dst = b->addr.ip4;
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, p->saddr.ip6, 16);
		__builtin_memcpy(fib->ipv6_dst, b->addr.ip6, 16);
	}
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* Removes the frame's VLAN tags: the workload's veth carries plain frames. */
static __always_inline int hc_pop_vlans(struct xdp_md *ctx, __u32 vlans)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 shift = vlans * 4;
	__u8 macs[12];

	if (vlans == 0)
		return 0;
	if (vlans > HC_VLAN_MAX || data + sizeof(struct ethhdr) + 8 > data_end)
		return -1;
	/* The MAC addresses move forward over the tags; the EtherType of the
	 * innermost tag already sits right before L3. */
	__builtin_memcpy(macs, data, sizeof(macs));
	if (shift == 4)
		__builtin_memcpy(data + 4, macs, sizeof(macs));
	else
		__builtin_memcpy(data + 8, macs, sizeof(macs));
	return bpf_xdp_adjust_head(ctx, (int)shift);
}

static __always_inline void hc_count_rx(__u32 ifindex, __u64 bytes)
{
	struct hc_wl_stats *st = bpf_map_lookup_elem(&hc_wl_stats, &ifindex);

	if (st) {
		st->rx_packets++;
		st->rx_bytes += bytes;
	}
}

SEC("xdp")
int hc_xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	const struct hc_service_val *svc;
	const struct hc_backend *b = NULL;
	struct hc_service_key skey = {};
	struct hc_ct_key fkey = {};
	struct bpf_fib_lookup fib;
	struct hc_hop hop = {};
	struct hc_ct_val *ct;
	struct ethhdr *eth;
	struct hc_pkt p;
	__u32 idx = 0;
	int rc;

	rc = hc_parse(data, data_end, data_end - data, &p);
	if (rc != HC_PARSE_L4) {
		if (rc == HC_PARSE_BAD)
			hc_count_drop(HC_DROP_MALFORMED);
		return XDP_PASS;
	}
	skey.port = bpf_ntohs(p.dport);
	skey.proto = p.l4_proto;
	svc = bpf_map_lookup_elem(&hc_services, &skey);
	if (!svc)
		return XDP_PASS;
	if (!bpf_map_lookup_elem(&hc_host_addrs, &p.daddr))
		return XDP_PASS;

	fkey.saddr = p.saddr;
	fkey.daddr = p.daddr;
	fkey.sport = p.sport;
	fkey.dport = p.dport;
	fkey.proto = p.l4_proto;
	ct = bpf_map_lookup_elem(&hc_conntrack, &fkey);
	if (ct)
		b = hc_ct_backend(svc, ct, &idx);
	if (!b) {
		idx = hc_pick_backend(svc, &p);
		if (idx >= HC_SERVICE_MAX_BACKENDS) {
			hc_count_drop(HC_DROP_NO_BACKEND);
			return XDP_PASS;
		}
		b = &svc->backends[idx];
		ct = NULL;
	}
	if (b->addr.family != p.daddr.family) {
		hc_count_drop(HC_DROP_NO_BACKEND);
		return XDP_PASS;
	}

	if (ct && hc_ct_hop(ct, b, &hop)) {
		rc = BPF_FIB_LKUP_RET_SUCCESS; /* an established flow's way */
	} else {
		rc = hc_fib_to_backend(ctx, data, data_end, &p, b, &fib);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS &&
		    !(rc == BPF_FIB_LKUP_RET_NO_NEIGH && p.vlans == 0)) {
			hc_count_drop(HC_DROP_FIB);
			return XDP_PASS;
		}
		hop.ifindex = fib.ifindex;
		__builtin_memcpy(hop.dmac, fib.dmac, ETH_ALEN);
		__builtin_memcpy(hop.smac, fib.smac, ETH_ALEN);
		if (ct)
			hc_ct_set_hop(ct, rc == BPF_FIB_LKUP_RET_SUCCESS ? &hop : NULL);
	}
	if (!ct && hc_ct_insert(&p, &fkey, b, idx, rc == BPF_FIB_LKUP_RET_SUCCESS ? &hop : NULL)) {
		hc_count_drop(HC_DROP_CT_FULL);
		return XDP_PASS;
	}
	if (hc_nat_dst(data, data_end, &p, b))
		return XDP_PASS;
	/* Without a neighbour entry the stack forwards the rewritten packet
	 * and resolves the backend's MAC; the next packets take the fast way. */
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return XDP_PASS;

	if (hc_pop_vlans(ctx, p.vlans))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, hop.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, hop.smac, ETH_ALEN);
	hc_count_rx(hop.ifindex, data_end - data);
	return bpf_redirect(hop.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
