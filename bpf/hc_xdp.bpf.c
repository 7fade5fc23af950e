/* xdp_ingress, on the node's uplink: node-port DNAT. A TCP or UDP packet to
 * one of the node's addresses on a port in hc_services is given a backend
 * (sticky through hc_conntrack), rewritten to it and redirected to the
 * workload's veth; every other frame passes untouched. Frames must carry
 * whole checksums (as NICs deliver them); where the uplink passes on partial
 * ones (a veth, a tap), hc_tc_uplink does the same work on the skb. */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"

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
	struct hc_nodeport_flow f;
	struct hc_ingress in;
	struct ethhdr *eth;
	struct hc_pkt p;
	int rc;

	rc = hc_parse(data, data_end, data_end - data, &p);
	if (rc != HC_PARSE_L4) {
		if (rc == HC_PARSE_BAD)
			hc_count_drop(HC_DROP_MALFORMED);
		return XDP_PASS;
	}
	if (!hc_nodeport_match(&p, &f))
		return XDP_PASS;
	in.ctx = ctx;
	in.ifindex = ctx->ingress_ifindex;
	in.tot_len = p.l3_len;
	in.tagged = p.vlans != 0;
	if (hc_nodeport_route(&in, &p, &f))
		return XDP_PASS;
	if (hc_nat_dst(data, data_end, &p, f.b))
		return XDP_PASS;
	/* Without a neighbour entry the stack forwards the rewritten packet
	 * and resolves the backend's MAC; the next packets take the fast way. */
	if (!f.neigh)
		return XDP_PASS;

	if (hc_pop_vlans(ctx, p.vlans))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, f.hop.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, f.hop.smac, ETH_ALEN);
	/* A redirect into the veth skips its TC programs: count here. */
	hc_count_rx(f.hop.ifindex, data_end - data);
	return bpf_redirect(f.hop.ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
