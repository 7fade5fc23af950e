/* Packet parsing for the XDP and TC programs: Ethernet, up to two 802.1Q/ad
 * tags, IPv4 (with options), IPv6 (with a bounded run of extension headers),
 * TCP and UDP, every read bounds-checked against data_end. Length fields
 * are checked against the whole frame's length, which for an skb may exceed
 * its linear part: headers must be readable, payloads need not be. */
#ifndef HC_BPF_PARSE_H
#define HC_BPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include <hypercore/dataplane.h>

#ifndef HC_VLAN_MAX
#define HC_VLAN_MAX 2
#endif
#ifndef HC_IPV6_EXT_MAX
#define HC_IPV6_EXT_MAX 6
#endif

/* What a parse found. Offsets are from the start of the frame. */
struct hc_pkt {
	__u16 l3_off;
	__u16 l4_off;
	__u16 l3_proto; /* ETH_P_IP or ETH_P_IPV6, host order */
	__u8 vlans; /* 802.1Q/802.1ad tags in front of L3 */
	__u8 l4_proto;
	__u16 l3_len; /* IPv4 total length or IPv6 header + payload */
	__u32 frame_len; /* the whole frame, readable or not */
	__u16 csum_off; /* L4 checksum field */
	__u8 tos; /* IPv4 TOS (0 for IPv6), for the FIB */
	__u8 frag; /* 1: a fragment (ports unknown unless the first) */
	struct hc_ipaddr saddr;
	struct hc_ipaddr daddr;
	__be16 sport;
	__be16 dport;
};

/* Parse results: HC_PARSE_L4 when a TCP or UDP header (ports included) was
 * found in an unfragmented IP packet; anything else is left alone. With
 * HC_PARSE_OTHER an IP packet has its addresses filled, and l4_off (with
 * l4_proto) when its L4 header was reached (ICMP, other protocols), 0 when
 * it was not: a fragment (frag), or IPv6 extension headers beyond what we
 * follow. */
enum hc_parse_result {
	HC_PARSE_L4 = 0,
	HC_PARSE_OTHER = 1, /* not IP, not TCP/UDP, a fragment, ICMP, ... */
	HC_PARSE_BAD = 2, /* lengths that do not add up */
};

/* Addresses as the parser fills them: the bytes past an IPv4 address are 0. */
static __always_inline int hc_addr_eq(const struct hc_ipaddr *a, const struct hc_ipaddr *b)
{
	const __u32 *x = (const __u32 *)a->ip6, *y = (const __u32 *)b->ip6;

	return a->family == b->family && x[0] == y[0] && x[1] == y[1] && x[2] == y[2] &&
	       x[3] == y[3];
}

struct hc_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* The L4 header must also end within the IP packet, not just the frame:
 * what follows the packet is link-layer padding, and a header reaching into
 * it means lengths that do not add up. */
static __always_inline int hc_parse_l4(void *data, void *data_end, struct hc_pkt *p)
{
	__u32 l3_end = p->l3_off + p->l3_len;

	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = data + p->l4_off;

		if ((void *)(th + 1) > data_end)
			return HC_PARSE_BAD;
		if (th->doff < 5 || (void *)th + th->doff * 4 > data_end ||
		    p->l4_off + th->doff * 4 > l3_end)
			return HC_PARSE_BAD;
		p->sport = th->source;
		p->dport = th->dest;
		p->csum_off = p->l4_off + offsetof(struct tcphdr, check);
		return HC_PARSE_L4;
	}
	if (p->l4_proto == IPPROTO_UDP) {
		struct udphdr *uh = data + p->l4_off;

		if ((void *)(uh + 1) > data_end)
			return HC_PARSE_BAD;
		if (bpf_ntohs(uh->len) < sizeof(*uh) || p->l4_off + bpf_ntohs(uh->len) > l3_end)
			return HC_PARSE_BAD;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->csum_off = p->l4_off + offsetof(struct udphdr, check);
		return HC_PARSE_L4;
	}
	return HC_PARSE_OTHER;
}

static __always_inline int hc_parse_ipv4(void *data, void *data_end, struct hc_pkt *p)
{
	struct iphdr *iph = data + p->l3_off;
	__u32 hlen;

	if ((void *)(iph + 1) > data_end)
		return HC_PARSE_BAD;
	if (iph->version != 4 || iph->ihl < 5)
		return HC_PARSE_BAD;
	hlen = iph->ihl * 4;
	if ((void *)iph + hlen > data_end)
		return HC_PARSE_BAD;
	p->l3_len = bpf_ntohs(iph->tot_len);
	if (p->l3_len < hlen || p->l3_off + p->l3_len > p->frame_len)
		return HC_PARSE_BAD;
	p->tos = iph->tos;
	p->saddr.ip4 = iph->saddr;
	p->saddr.family = HC_AF_INET;
	p->daddr.ip4 = iph->daddr;
	p->daddr.family = HC_AF_INET;
	p->l4_proto = iph->protocol;
	/* Only the first fragment has ports, and translating it alone would
	 * split the datagram: fragments go to the stack untouched. */
	if (iph->frag_off & bpf_htons(0x3fff)) {
		p->frag = 1;
		return HC_PARSE_OTHER;
	}
	p->l4_off = p->l3_off + hlen;
	return hc_parse_l4(data, data_end, p);
}

static __always_inline int hc_parse_ipv6(void *data, void *data_end, struct hc_pkt *p)
{
	struct ipv6hdr *ip6h = data + p->l3_off;
	__u32 off, too_deep;
	__u8 next;

	if ((void *)(ip6h + 1) > data_end)
		return HC_PARSE_BAD;
	if (ip6h->version != 6)
		return HC_PARSE_BAD;
	p->l3_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	if (p->l3_off + p->l3_len > p->frame_len)
		return HC_PARSE_BAD;
	__builtin_memcpy(p->saddr.ip6, &ip6h->saddr, 16);
	p->saddr.family = HC_AF_INET6;
	__builtin_memcpy(p->daddr.ip6, &ip6h->daddr, 16);
	p->daddr.family = HC_AF_INET6;

	next = ip6h->nexthdr;
	off = p->l3_off + sizeof(*ip6h);
#pragma unroll
	for (int i = 0; i < HC_IPV6_EXT_MAX; i++) {
		struct ipv6_opt_hdr *oh;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
		    next != IPPROTO_DSTOPTS && next != IPPROTO_AH &&
		    next != IPPROTO_FRAGMENT)
			break;
		/* Keeps the offset provably small for the verifier; a test,
		 * not a mask, so that headers reaching past 2 KiB (jumbo
		 * frames) are left alone rather than wrapped back into the
		 * packet, where their bytes would pass for the next header. */
		if (off > 0x7ff)
			return HC_PARSE_OTHER;
		oh = data + off;
		if ((void *)oh + 8 > data_end)
			return HC_PARSE_BAD;
		if (next == IPPROTO_FRAGMENT) {
			p->frag = 1;
			return HC_PARSE_OTHER;
		}
		if (next == IPPROTO_AH)
			off += (oh->hdrlen + 2) * 4; /* AH counts 4-byte words */
		else
			off += (oh->hdrlen + 1) * 8;
		/* A header running past the packet is malformed. (Testing
		 * off against 0x7ff here instead of at the top of the loop
		 * sends the verifier past its 1M instruction budget.) */
		if (off > p->l3_off + p->l3_len)
			return HC_PARSE_BAD;
		next = oh->nexthdr;
	}
	if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	    next == IPPROTO_AH || next == IPPROTO_FRAGMENT)
		return HC_PARSE_OTHER; /* more extension headers than we follow */
	/* The same, but the mask stays: a test of off itself here sends the
	 * verifier past its budget. */
	too_deep = off >> 11;
	off &= 0x7ff;
	if (too_deep)
		return HC_PARSE_OTHER;
	if (off > p->l3_off + p->l3_len)
		return HC_PARSE_BAD;
	p->l4_proto = next;
	p->l4_off = off;
	return hc_parse_l4(data, data_end, p);
}

/* Parses the frame of frame_len bytes whose first (data_end - data) bytes
 * are readable at data into p. */
static __always_inline int hc_parse(void *data, void *data_end, __u32 frame_len, struct hc_pkt *p)
{
	struct ethhdr *eth = data;
	__u16 proto;
	__u32 off;

	__builtin_memset(p, 0, sizeof(*p));
	p->frame_len = frame_len;
	if ((void *)(eth + 1) > data_end)
		return HC_PARSE_BAD;
	proto = bpf_ntohs(eth->h_proto);
	off = sizeof(*eth);
#pragma unroll
	for (int i = 0; i < HC_VLAN_MAX; i++) {
		struct hc_vlan_hdr *vh;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return HC_PARSE_BAD;
		proto = bpf_ntohs(vh->proto);
		off += sizeof(*vh);
		p->vlans++;
	}
	p->l3_off = off;
	p->l3_proto = proto;
	if (proto == ETH_P_IP)
		return hc_parse_ipv4(data, data_end, p);
	if (proto == ETH_P_IPV6)
		return hc_parse_ipv6(data, data_end, p);
	return HC_PARSE_OTHER;
}

#endif /* HC_BPF_PARSE_H */
