/* TC programs (clsact): on each workload's host-side veth, and in TC mode
 * on the uplink.
 *
 * hc_tc_from_wl (ingress: what the workload sends): counts it, applies the
 * egress policy of lib/egress.h (deny by default towards the cluster), its
 * egress rate limit, and reverses the node-port NAT on replies, sending them
 * straight to the uplink.
 * hc_tc_to_wl (egress: what the stack delivers to the workload): counts it
 * and notes flows that members or this node open to the workload, whose
 * replies the policy then lets through.
 * Frames XDP redirects into the veth bypass TC; XDP counts those itself.
 * hc_tc_uplink (the uplink's ingress, --dataplane-mode tc): node-port DNAT
 * where XDP cannot do it right. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lib/egress.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/skb_nat.h"

/* Headers we need in the linear part of the skb: Ethernet, tags, IPv6 with
 * extension headers, TCP with options. */
#define HC_TC_PULL_LEN 256

/* Token bucket of the workload's egress limit. Returns 1 if len may pass. */
static __always_inline int hc_rate_allows(__u32 ifindex, const struct hc_wl_info *wl, __u64 len)
{
	struct hc_wl_rate *r;
	__u64 now, elapsed, tokens;
	int ok;

	if (!wl->rate_bytes_per_sec)
		return 1;
	r = bpf_map_lookup_elem(&hc_wl_rate, &ifindex);
	if (!r)
		return 1;
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&r->lock);
	elapsed = now - r->last_ns;
	if (elapsed > 1000000000ull)
		elapsed = 1000000000ull; /* one second refills any sane burst */
	tokens = r->tokens + elapsed * wl->rate_bytes_per_sec / 1000000000ull;
	if (tokens > wl->burst_bytes)
		tokens = wl->burst_bytes;
	ok = tokens >= len;
	if (ok)
		tokens -= len;
	r->tokens = tokens;
	r->last_ns = now;
	bpf_spin_unlock(&r->lock);
	return ok;
}

/* Rewrites a reply's source back to the node address and port the client
 * used. Returns 0 or a negative errno from the skb helpers. */
static __always_inline int hc_tc_snat(struct __sk_buff *skb, const struct hc_pkt *p,
				      const struct hc_ct_val *ct)
{
	return hc_skb_rewrite(skb, p, 1, &ct->addr, ct->port);
}

/* Sends a translated reply out of the interface the FIB names for its
 * client, with MACs from the neighbour table: the stack would drop it as a
 * martian, since its source is now one of the node's own addresses. */
static __always_inline int hc_tc_send_reply(struct __sk_buff *skb, const struct hc_pkt *p,
					    const struct hc_ct_val *ct)
{
	struct bpf_fib_lookup fib = {};
	int rc;

	fib.l4_protocol = p->l4_proto;
	fib.sport = ct->port;
	fib.dport = p->dport;
	/* tot_len 0: the kernel checks the MTU against the skb itself, which
	 * knows GSO; a GSO skb's length always exceeds the MTU. */
	fib.tot_len = 0;
	fib.ifindex = skb->ifindex;
	if (p->l3_proto == ETH_P_IP) {
		fib.family = AF_INET;
		fib.ipv4_src = ct->addr.ip4;
		fib.ipv4_dst = p->daddr.ip4;
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, ct->addr.ip6, 16);
		__builtin_memcpy(fib.ipv6_dst, p->daddr.ip6, 16);
	}
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		hc_count_drop(HC_DROP_TOO_BIG);
		return TC_ACT_SHOT;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		hc_count_drop(HC_DROP_FIB);
		return TC_ACT_SHOT;
	}
	return bpf_redirect_neigh(fib.ifindex, NULL, 0, 0);
}

static __always_inline void hc_count_tx(struct hc_wl_stats *st, __u64 len, int dropped)
{
	if (!st)
		return;
	if (dropped) {
		st->dropped_packets++;
		st->dropped_bytes += len;
	} else {
		st->tx_packets++;
		st->tx_bytes += len;
	}
}

/* The reply entry hc_conntrack holds for the frame's tuple, if it is the
 * reply of a node-port flow. */
static __always_inline struct hc_ct_val *hc_ct_reply(const struct hc_pkt *p)
{
	struct hc_ct_key rkey = {};
	struct hc_ct_val *found;

	rkey.saddr = p->saddr;
	rkey.daddr = p->daddr;
	rkey.sport = p->sport;
	rkey.dport = p->dport;
	rkey.proto = p->l4_proto;
	found = bpf_map_lookup_elem(&hc_conntrack, &rkey);
	if (!found || found->dir != HC_CT_REPLY || found->addr.family != p->saddr.family)
		return NULL;
	return found;
}

SEC("tc")
int hc_tc_from_wl(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct hc_wl_stats *st = bpf_map_lookup_elem(&hc_wl_stats, &ifindex);
	struct hc_wl_info *wl = bpf_map_lookup_elem(&hc_workloads, &ifindex);
	__u64 len = skb->len;
	struct hc_ct_val *found = NULL;
	struct hc_ct_val ct;
	void *data, *data_end;
	struct hc_pkt p;
	__u32 reason;
	int rc;

	/* The headers into the linear part (best effort: a short frame is
	 * parsed as is); payloads stay where they are. */
	bpf_skb_pull_data(skb, len < HC_TC_PULL_LEN ? len : HC_TC_PULL_LEN);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	rc = hc_parse(data, data_end, len, &p);
	if (rc == HC_PARSE_L4)
		found = hc_ct_reply(&p);

	if (wl && (wl->flags & HC_WL_F_ISOLATE)) {
		/* The kernel takes a VLAN tag out of the frame into the skb
		 * before TC sees it; a tag it is all the same (untagged frames
		 * only), and a reply redirected to the uplink would carry it
		 * onto the wire there. */
		reason = skb->vlan_present ? HC_DROP_WL_NOT_IP
					   : hc_egress_verdict(data, data_end, rc, &p, wl,
							       found != NULL);
		if (reason) {
			hc_count_drop(reason);
			hc_count_tx(st, len, 1);
			return TC_ACT_SHOT;
		}
	}
	if (wl && !hc_rate_allows(ifindex, wl, len)) {
		hc_count_drop(HC_DROP_RATE);
		hc_count_tx(st, len, 1);
		return TC_ACT_SHOT;
	}
	hc_count_tx(st, len, 0);
	if (!found)
		return TC_ACT_OK;
	ct = *found; /* the skb helpers below may not take map memory */
	if (hc_tc_snat(skb, &p, &ct))
		return TC_ACT_SHOT;
	return hc_tc_send_reply(skb, &p, &ct);
}

/* Parses an skb's frame, pulling the headers into its linear part first
 * only when they reach past it (a pull may copy the head of a cloned skb:
 * not worth doing for every frame on the uplink). */
static __always_inline int hc_tc_parse(struct __sk_buff *skb, struct hc_pkt *p)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	__u32 len = skb->len;
	int rc;

	rc = hc_parse(data, data_end, len, p);
	if (rc != HC_PARSE_BAD || data_end - data >= len)
		return rc;
	bpf_skb_pull_data(skb, len < HC_TC_PULL_LEN ? len : HC_TC_PULL_LEN);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	return hc_parse(data, data_end, len, p);
}

SEC("tc")
int hc_tc_to_wl(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct hc_wl_stats *st = bpf_map_lookup_elem(&hc_wl_stats, &ifindex);
	struct hc_pkt p;

	if (st) {
		st->rx_packets++;
		st->rx_bytes += skb->len;
	}
	if (hc_tc_parse(skb, &p) == HC_PARSE_L4)
		hc_flow_note((void *)(long)skb->data, (void *)(long)skb->data_end, &p);
	return TC_ACT_OK;
}

/* Sends a translated frame to the backend's veth without its VLAN tags (the
 * one the driver took into the skb and those still in the data) and with
 * the next hop's MACs. */
static __always_inline int hc_tc_redirect(struct __sk_buff *skb, const struct hc_hop *hop,
					  __u32 tags)
{
	/* A bounded loop (the verifier follows it); clang cannot unroll a
	 * loop around a helper that moves the packet. */
	for (__u32 i = 0; i < HC_VLAN_MAX + 1; i++) {
		if (i >= tags)
			break;
		if (bpf_skb_vlan_pop(skb))
			return TC_ACT_SHOT;
	}
	if (bpf_skb_store_bytes(skb, 0, hop->dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, hop->smac, ETH_ALEN, 0))
		return TC_ACT_SHOT;
	return bpf_redirect(hop->ifindex, 0);
}

/* hc_tc_uplink (the uplink's ingress): node-port DNAT, as hc_xdp_ingress
 * does it, for uplinks whose frames may carry partial checksums (a veth or
 * a tap: what the peer sent with transmit offload). XDP cannot see that a
 * checksum is partial and would fix it up as a whole one, breaking it; the
 * skb helpers know. The workload veth's own TC egress program counts what
 * this one redirects there. */
SEC("tc")
int hc_tc_uplink(struct __sk_buff *skb)
{
	struct hc_nodeport_flow f;
	struct hc_backend b;
	struct hc_ingress in;
	struct hc_pkt p;
	__u32 tags;
	int rc;

	rc = hc_tc_parse(skb, &p);
	if (rc != HC_PARSE_L4) {
		if (rc == HC_PARSE_BAD)
			hc_count_drop(HC_DROP_MALFORMED);
		return TC_ACT_OK;
	}
	if (!hc_nodeport_match(&p, &f))
		return TC_ACT_OK;
	tags = p.vlans + (skb->vlan_present ? 1 : 0);
	in.ctx = skb;
	in.ifindex = skb->ifindex;
	in.tot_len = 0;
	in.tagged = tags != 0;
	if (hc_nodeport_route(&in, &p, &f))
		return TC_ACT_OK;
	b = *f.b; /* the agent may rewrite the service while we use it */
	if (hc_skb_rewrite(skb, &p, 0, &b.addr, bpf_htons(b.port)))
		return TC_ACT_SHOT;
	/* Without a neighbour entry the stack forwards the rewritten packet
	 * and resolves the backend's MAC; the next packets take the fast way. */
	if (!f.neigh)
		return TC_ACT_OK;
	return hc_tc_redirect(skb, &f.hop, tags);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
