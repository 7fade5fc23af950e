/* Workload egress policy for hc_tc_from_wl: deny by default towards the
 * cluster, allow the internet. Every frame a workload sends gets a verdict:
 * 0 (pass) or the HC_DROP_WL_* reason to count it under. The rules, in the
 * order they apply:
 *
 *  1. IPv4, IPv6 and ARP only, untagged; IP that parses (fail closed).
 *  2. The source is the workload's own address (ARP: its sender address).
 *     IPv6 neighbour discovery and MLD may also come from a link-local or
 *     the unspecified address, and go to any destination.
 *  3. The destination's class: local scope (link-local, loopback,
 *     multicast, broadcast, unspecified), a cloud metadata address, a
 *     cluster member's or this node's address (hc_members), another
 *     workload (the workload subnets); anything else is the internet and
 *     passes.
 *  4. Towards those classes only: ICMP errors and echo replies (not to
 *     local scope), replies of flows the other side opened (hc_conntrack
 *     for node ports, hc_wl_flows for the rest), on members the open ports
 *     (hc_config.host_allowed: DNS and the operator's; node ports; the
 *     proxy's ports in hc_proxy_ports), and what the operator allowed
 *     (hc_egress_allow). */
#ifndef HC_BPF_EGRESS_H
#define HC_BPF_EGRESS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include <hypercore/dataplane.h>
#include <hypercore/defaults.h>

#include "maps.h"
#include "parse.h"

/* linux/icmp.h drags in libc's socket headers, which do not build for BPF. */
#define HC_ICMP_ECHOREPLY 0
#define HC_ICMP_DEST_UNREACH 3
#define HC_ICMP_ECHO 8
#define HC_ICMP_TIME_EXCEEDED 11
#define HC_ICMP_PARAMETERPROB 12
#define HC_ICMPV6_PARAMPROB 4 /* 1-4: the ICMPv6 errors */
#define HC_ICMPV6_ECHO_REQUEST 128
#define HC_ICMPV6_ECHO_REPLY 129
#define HC_ICMPV6_MLD_QUERY 130 /* 130-132: MLDv1 */
#define HC_ICMPV6_MLD_DONE 132
#define HC_ICMPV6_ROUTER_SOLICIT 133 /* 133-137: neighbour discovery */
#define HC_ICMPV6_REDIRECT 137
#define HC_ICMPV6_MLD2_REPORT 143

#define HC_DNS_PORT 53

/* Where a packet goes, as far as the policy cares. */
enum hc_dst_class {
	HC_DST_INTERNET = 0,
	HC_DST_LOCAL_SCOPE,
	HC_DST_METADATA,
	HC_DST_MEMBER,
	HC_DST_WORKLOAD,
};

/* The ICMP type, or -1 when the packet is not ICMP of its family or the
 * type cannot be read (a fragment: l4_off 0). */
static __always_inline int hc_icmp_type(void *data, void *data_end, const struct hc_pkt *p)
{
	__u8 *type = data + (p->l4_off & 0x7ff);

	if (p->l4_off == 0 || (void *)(type + 1) > data_end)
		return -1;
	if (p->l4_proto != (p->l3_proto == ETH_P_IP ? IPPROTO_ICMP : IPPROTO_ICMPV6))
		return -1;
	return *type;
}

/* Neighbour discovery and MLD: link-scoped, needed to reach the gateway. */
static __always_inline int hc_icmp6_link_control(int type)
{
	return (type >= HC_ICMPV6_MLD_QUERY && type <= HC_ICMPV6_REDIRECT) ||
	       type == HC_ICMPV6_MLD2_REPORT;
}

/* Errors and echo replies open nothing. */
static __always_inline int hc_icmp_harmless(const struct hc_pkt *p, int type)
{
	if (p->l3_proto == ETH_P_IP)
		return type == HC_ICMP_ECHOREPLY || type == HC_ICMP_DEST_UNREACH ||
		       type == HC_ICMP_TIME_EXCEEDED || type == HC_ICMP_PARAMETERPROB;
	return (type >= 1 && type <= HC_ICMPV6_PARAMPROB) || type == HC_ICMPV6_ECHO_REPLY;
}

static __always_inline int hc_own_addr(const struct hc_wl_info *wl, const struct hc_ipaddr *a)
{
	return hc_addr_eq(a, &wl->addr) || hc_addr_eq(a, &wl->addr2);
}

/* fe80::/10 or :: — where IPv6 link control may come from. */
static __always_inline int hc_ip6_link_source(const struct hc_ipaddr *a)
{
	const __u32 *w = (const __u32 *)a->ip6;

	if ((w[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return 1;
	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

static __always_inline int hc_in_prefix4(__be32 a, __be32 net, __u8 prefix)
{
	__be32 mask;

	if (prefix == 0 || prefix > 32)
		return prefix == 0;
	mask = bpf_htonl(~0u << (32 - prefix));
	return (a & mask) == (net & mask);
}

static __always_inline int hc_in_prefix6(const __u8 *a, const __u8 *net, __u8 prefix)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)net;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 bits = prefix > 32 * i ? prefix - 32 * i : 0;
		__be32 mask;

		if (bits == 0)
			break;
		mask = bits >= 32 ? 0xffffffff : bpf_htonl(~0u << (32 - bits));
		if ((x[i] & mask) != (y[i] & mask))
			return 0;
	}
	return 1;
}

/* Local scope and metadata, by address alone. */
static __always_inline enum hc_dst_class hc_scope4(__be32 a)
{
	__u32 h = bpf_ntohl(a);

	if (h == 0xa9fea9fe || h == 0x646464c8) /* 169.254.169.254, 100.100.100.200 */
		return HC_DST_METADATA;
	if ((h >> 16) == 0xa9fe || (h >> 24) == 127 || (h >> 24) == 0 || (h >> 28) >= 0xe)
		return HC_DST_LOCAL_SCOPE; /* link-local, loopback, "this", 224/4 and 240/4 */
	return HC_DST_INTERNET;
}

static __always_inline enum hc_dst_class hc_scope6(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	__u32 w0 = bpf_ntohl(w[0]);

	/* fd00:ec2::254, the metadata service's IPv6 address */
	if (w0 == 0xfd000ec2 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(0x254))
		return HC_DST_METADATA;
	if ((w0 >> 22) == (0xfe80 >> 6) || (w0 >> 24) == 0xff)
		return HC_DST_LOCAL_SCOPE; /* fe80::/10, ff00::/8 */
	/* ::, ::1 and ::ffff:a.b.c.d (IPv4 through the back door) */
	if (w0 == 0 && w[1] == 0 && (w[2] == 0 || w[2] == bpf_htonl(0xffff)))
		return HC_DST_LOCAL_SCOPE;
	return HC_DST_INTERNET;
}

static __always_inline enum hc_dst_class hc_dst_class(const struct hc_config *cfg,
						      const struct hc_pkt *p,
						      const struct hc_wl_info *wl)
{
	const struct hc_ipaddr *d = &p->daddr;
	enum hc_dst_class c;

	c = d->family == HC_AF_INET ? hc_scope4(d->ip4) : hc_scope6(d->ip6);
	if (c != HC_DST_INTERNET)
		return c;
	if (bpf_map_lookup_elem(&hc_members, d))
		return HC_DST_MEMBER;
	if (hc_own_addr(wl, d))
		return HC_DST_INTERNET; /* itself, through the node */
	if (d->family == HC_AF_INET) {
		if (cfg->workload_net.family == HC_AF_INET &&
		    hc_in_prefix4(d->ip4, cfg->workload_net.ip4, cfg->workload_prefix))
			return HC_DST_WORKLOAD;
	} else if (cfg->workload_net6.family == HC_AF_INET6 &&
		   hc_in_prefix6(d->ip6, cfg->workload_net6.ip6, cfg->workload_prefix6)) {
		return HC_DST_WORKLOAD;
	}
	return HC_DST_INTERNET;
}

static __always_inline int hc_member_port_open(const struct hc_config *cfg,
					       const struct hc_pkt *p)
{
	__u16 port = bpf_ntohs(p->dport);
	struct hc_port_bitmap *proxy;
	__u32 zero = 0;

	if (port >= HC_NODE_PORT_MIN && port <= HC_NODE_PORT_MAX)
		return 1;
#pragma unroll
	for (int i = 0; i < HC_ALLOWED_PORTS_MAX; i++) {
		if (cfg->host_allowed[i].port == port && cfg->host_allowed[i].proto == p->l4_proto)
			return 1;
	}
	if (p->l4_proto != IPPROTO_TCP)
		return 0;
	proxy = bpf_map_lookup_elem(&hc_proxy_ports, &zero);
	return proxy && (proxy->bits[(port >> 6) & 1023] >> (port & 63)) & 1;
}

/* The reply direction of a flow the other side opened (hc_tc_to_wl wrote
 * it). Only TCP and UDP have flows. */
static __always_inline int hc_flow_known(const struct hc_pkt *p)
{
	struct hc_ct_key k = {};

	k.saddr = p->saddr;
	k.daddr = p->daddr;
	k.sport = p->sport;
	k.dport = p->dport;
	k.proto = p->l4_proto;
	return bpf_map_lookup_elem(&hc_wl_flows, &k) != NULL;
}

/* The operator's allow list. l4: ports are known (TCP or UDP). */
static __always_inline int hc_egress_allowed(const struct hc_pkt *p, int l4)
{
	struct hc_egress_key k = {};
	struct hc_egress_val *v;
	__u16 port = bpf_ntohs(p->dport);

	k.family = p->daddr.family;
	if (k.family == HC_AF_INET) {
		k.prefixlen = 32 + 32;
		__builtin_memcpy(k.addr, &p->daddr.ip4, 4);
	} else {
		k.prefixlen = 32 + 128;
		__builtin_memcpy(k.addr, p->daddr.ip6, 16);
	}
	v = bpf_map_lookup_elem(&hc_egress_allow, &k);
	if (!v)
		return 0;
	if (v->any)
		return 1;
	if (!l4)
		return 0;
#pragma unroll
	for (int i = 0; i < HC_EGRESS_PORTS_MAX; i++) {
		const struct hc_port_range *r = &v->ports[i];

		if (i < v->count && port >= r->lo && port <= r->hi &&
		    (r->proto == 0 || r->proto == p->l4_proto))
			return 1;
	}
	return 0;
}

/* ARP: only for the workload's own address (or a probe from 0.0.0.0). */
static __always_inline __u32 hc_egress_arp(void *data, void *data_end, const struct hc_pkt *p,
					   const struct hc_wl_info *wl)
{
	/* htype, ptype, hlen, plen, oper, sha[6], then spa */
	__u8 *arp = data + (p->l3_off & 0xff);
	__be32 spa;

	if ((void *)(arp + 28) > data_end)
		return HC_DROP_WL_MALFORMED;
	if (arp[4] != ETH_ALEN || arp[5] != 4)
		return HC_DROP_WL_MALFORMED;
	__builtin_memcpy(&spa, arp + 14, 4);
	if (spa == 0)
		return 0;
	if ((wl->addr.family == HC_AF_INET && spa == wl->addr.ip4) ||
	    (wl->addr2.family == HC_AF_INET && spa == wl->addr2.ip4))
		return 0;
	return HC_DROP_WL_SPOOFED;
}

static __always_inline __u32 hc_class_reason(enum hc_dst_class c)
{
	switch (c) {
	case HC_DST_LOCAL_SCOPE:
		return HC_DROP_WL_LINK_LOCAL;
	case HC_DST_METADATA:
		return HC_DROP_WL_METADATA;
	case HC_DST_MEMBER:
		return HC_DROP_WL_MEMBER;
	default:
		return HC_DROP_WL_WORKLOAD;
	}
}

/* The verdict on a frame the workload wl sent: 0 or a HC_DROP_WL_* reason.
 * rc is hc_parse's result for it; ct_reply: hc_conntrack knows its tuple as
 * the reply of a node-port flow. */
static __always_inline __u32 hc_egress_verdict(void *data, void *data_end, int rc,
					       const struct hc_pkt *p,
					       const struct hc_wl_info *wl, int ct_reply)
{
	const struct hc_config *cfg;
	enum hc_dst_class c;
	__u32 zero = 0;
	int l4 = rc == HC_PARSE_L4, type;

	if (rc == HC_PARSE_BAD)
		return HC_DROP_WL_MALFORMED;
	if (p->vlans)
		return HC_DROP_WL_NOT_IP;
	if (p->l3_proto == ETH_P_ARP)
		return hc_egress_arp(data, data_end, p, wl);
	if (p->l3_proto != ETH_P_IP && p->l3_proto != ETH_P_IPV6)
		return HC_DROP_WL_NOT_IP;
	if (!l4 && !p->frag && p->l4_off == 0)
		return HC_DROP_WL_MALFORMED; /* IPv6 headers past what we follow */
	type = l4 ? -1 : hc_icmp_type(data, data_end, p);
	if (p->l3_proto == ETH_P_IPV6 && hc_icmp6_link_control(type) &&
	    (hc_own_addr(wl, &p->saddr) || hc_ip6_link_source(&p->saddr)))
		return 0;
	if (!hc_own_addr(wl, &p->saddr))
		return HC_DROP_WL_SPOOFED;
	cfg = bpf_map_lookup_elem(&hc_config, &zero);
	if (!cfg)
		return HC_DROP_WL_MEMBER; /* no settings yet: nothing is known safe */
	c = hc_dst_class(cfg, p, wl);
	if (c == HC_DST_INTERNET)
		return 0;
	if (type >= 0 && c >= HC_DST_MEMBER && hc_icmp_harmless(p, type))
		return 0;
	/* Cheapest first: the open ports need no map but an array. */
	if (l4 && c == HC_DST_MEMBER && hc_member_port_open(cfg, p))
		return 0;
	if (l4 && (ct_reply || hc_flow_known(p)))
		return 0;
	if (hc_egress_allowed(p, l4))
		return 0;
	return hc_class_reason(c);
}

/* hc_tc_to_wl's half: remembers a flow a member or this node opens to the
 * workload (a TCP SYN, a UDP datagram), keyed as its replies travel. */
static __always_inline void hc_flow_note(void *data, void *data_end, const struct hc_pkt *p)
{
	struct hc_ct_key k = {};
	__u64 now;

	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = data + (p->l4_off & 0x7ff);

		if ((void *)(th + 1) > data_end || !th->syn || th->ack)
			return;
	} else if (p->l4_proto != IPPROTO_UDP) {
		return;
	}
	if (!bpf_map_lookup_elem(&hc_members, &p->saddr))
		return;
	k.saddr = p->daddr;
	k.daddr = p->saddr;
	k.sport = p->dport;
	k.dport = p->sport;
	k.proto = p->l4_proto;
	/* A UDP exchange refreshes nothing it already has: no write per
	 * datagram. */
	if (p->l4_proto == IPPROTO_UDP && bpf_map_lookup_elem(&hc_wl_flows, &k))
		return;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&hc_wl_flows, &k, &now, BPF_ANY);
}

#endif /* HC_BPF_EGRESS_H */
