/* NAT rewrites on an skb, for the TC programs. They go through the kernel's
 * checksum helpers, which keep both kinds of checksum right: whole ones, and
 * the partial ones (only the pseudo-header sum, the rest left to the NIC)
 * that local sockets send and veths and taps pass on as they are. */
#ifndef HC_BPF_SKB_NAT_H
#define HC_BPF_SKB_NAT_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"

/* Replaces one address and one port of p, the source pair (src) or the
 * destination pair, fixing the IPv4 header checksum and the TCP/UDP
 * checksum (pseudo header included; a zero UDP checksum over IPv4 means
 * "none" and stays zero). Returns 0 or a negative errno from the helpers. */
static __always_inline int hc_skb_rewrite(struct __sk_buff *skb, const struct hc_pkt *p, int src,
					  const struct hc_ipaddr *to, __be16 to_port)
{
	const struct hc_ipaddr *from = src ? &p->saddr : &p->daddr;
	__be16 from_port = src ? p->sport : p->dport;
	__u32 port_off = p->l4_off + (src ? 0 : 2);
	__u32 l4_flags = p->l4_proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	int err;

	if (p->l3_proto == ETH_P_IP) {
		__u32 addr_off = p->l3_off + (src ? offsetof(struct iphdr, saddr)
						  : offsetof(struct iphdr, daddr));
		__u32 check_off = p->l3_off + offsetof(struct iphdr, check);

		err = bpf_l4_csum_replace(skb, p->csum_off, from->ip4, to->ip4,
					  l4_flags | BPF_F_PSEUDO_HDR | 4);
		if (!err)
			err = bpf_l3_csum_replace(skb, check_off, from->ip4, to->ip4, 4);
		if (!err)
			err = bpf_skb_store_bytes(skb, addr_off, &to->ip4, 4, 0);
	} else {
		__u32 addr_off = p->l3_off + (src ? offsetof(struct ipv6hdr, saddr)
						  : offsetof(struct ipv6hdr, daddr));
		__s64 diff = bpf_csum_diff((__be32 *)from->ip6, 16, (__be32 *)to->ip6, 16, 0);

		err = bpf_l4_csum_replace(skb, p->csum_off, 0, diff, l4_flags | BPF_F_PSEUDO_HDR);
		if (!err)
			err = bpf_skb_store_bytes(skb, addr_off, to->ip6, 16, 0);
	}
	if (!err)
		err = bpf_l4_csum_replace(skb, p->csum_off, from_port, to_port, l4_flags | 2);
	if (!err)
		err = bpf_skb_store_bytes(skb, port_off, &to_port, 2, 0);
	return err;
}

#endif /* HC_BPF_SKB_NAT_H */
