/* The packet builder of tests/lib/pktbuild.h. Fields are written byte by byte
 * in network order rather than through the kernel's header structs, so the
 * expected frames of a test do not share a layout mistake with the BPF code
 * under test. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pktbuild.h"

#define ETH_TYPE_IP 0x0800
#define ETH_TYPE_ARP 0x0806
#define ETH_TYPE_IPV6 0x86dd
#define ETH_TYPE_8021Q 0x8100
#define ETH_TYPE_8021AD 0x88a8

#define PROTO_HOPOPTS 0
#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ROUTING 43
#define PROTO_FRAGMENT 44
#define PROTO_AH 51
#define PROTO_ICMPV6 58
#define PROTO_DSTOPTS 60

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (; len > 1; p += 2, len -= 2)
		sum += get16(p);
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

uint16_t hc_pkt_csum(const void *data, size_t len, uint32_t sum)
{
	sum = csum_add(sum, data, len);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int hc_pkt_parse_mac(const char *text, uint8_t mac[6])
{
	unsigned int m[6];
	char end;

	if (!text) {
		memset(mac, 0, 6);
		return 0;
	}
	if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5],
		   &end) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)m[i];
	return 0;
}

/* Returns 4 or 6 with the address in out (4 or 16 bytes), or -EINVAL. */
static int parse_ip(const char *text, uint8_t out[16])
{
	if (!text)
		return -EINVAL;
	if (strchr(text, ':'))
		return inet_pton(AF_INET6, text, out) == 1 ? 6 : -EINVAL;
	return inet_pton(AF_INET, text, out) == 1 ? 4 : -EINVAL;
}

static size_t ext_len(char kind)
{
	return kind == 'r' ? 24 : 8;
}

static int ext_proto(char kind)
{
	switch (kind) {
	case 'h':
		return PROTO_HOPOPTS;
	case 'd':
		return PROTO_DSTOPTS;
	case 'r':
		return PROTO_ROUTING;
	case 'f':
		return PROTO_FRAGMENT;
	default:
		return -EINVAL;
	}
}

/* Writes the L4 header and payload at p; returns their length. */
static size_t build_l4(const struct hc_pktspec *s, uint8_t *p, struct hc_pktinfo *inf,
		       size_t l4_off)
{
	size_t hlen;

	switch (s->proto) {
	case PROTO_TCP:
		hlen = 20 + s->tcp_optlen;
		put16(p, s->sport);
		put16(p + 2, s->dport);
		put32(p + 4, 1000);
		put32(p + 8, (s->tcp_flags & 0x10) ? 2000 : 0); /* ACK: an ack number */
		p[12] = (uint8_t)(hlen / 4) << 4;
		p[13] = s->tcp_flags;
		put16(p + 14, 64240);
		if (s->tcp_optlen) {
			memset(p + 20, 1, s->tcp_optlen); /* NOPs after an MSS option */
			p[20] = 2;
			p[21] = 4;
			put16(p + 22, 1460);
		}
		inf->csum_off = l4_off + 16;
		break;
	case PROTO_UDP:
		hlen = 8;
		put16(p, s->sport);
		put16(p + 2, s->dport);
		put16(p + 4, (uint16_t)(8 + s->payload_len));
		inf->csum_off = l4_off + 6;
		break;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		hlen = 8;
		p[0] = s->icmp_type;
		p[1] = s->icmp_code;
		put16(p + 4, 0x4843); /* identifier ("HC") */
		put16(p + 6, 1); /* sequence */
		inf->csum_off = l4_off + 2;
		break;
	default:
		hlen = 0;
		break;
	}
	inf->payload_off = l4_off + hlen;
	for (size_t i = 0; i < s->payload_len; i++)
		p[hlen + i] = s->payload ? s->payload[i] : (uint8_t)(i * 7 + 1);
	return hlen + s->payload_len;
}

int hc_pkt_build(const struct hc_pktspec *s, uint8_t *buf, size_t cap, struct hc_pktinfo *info)
{
	uint8_t f[HC_PKT_MAX] = { 0 };
	uint8_t saddr[16], daddr[16], segment[16], smac[6];
	struct hc_pktinfo inf = { 0 };
	size_t off, l4_len, nexts = 0;
	int family = 0;

	if (hc_pkt_parse_mac(s->eth_dst, f) || hc_pkt_parse_mac(s->eth_src, smac))
		return -EINVAL;
	memcpy(f + 6, smac, 6);
	off = 12;
	for (int i = 0; i < HC_PKT_VLAN_MAX && s->vlan[i].tpid; i++) {
		put16(f + off, s->vlan[i].tpid);
		put16(f + off + 2, s->vlan[i].tci);
		off += 4;
	}
	if (s->src || s->dst) {
		family = parse_ip(s->src, saddr);
		if (family < 0 || parse_ip(s->dst, daddr) != family ||
		    parse_ip(s->rh_segment ? s->rh_segment : s->dst, segment) != family)
			return -EINVAL;
	}
	put16(f + off, family == 4 ? ETH_TYPE_IP : family == 6 ? ETH_TYPE_IPV6 : s->eth_proto);
	off += 2;

	if (!family) {
		if (s->eth_proto == ETH_TYPE_ARP) {
			uint8_t spa[16], tpa[16];

			if (parse_ip(s->arp_spa, spa) != 4 || parse_ip(s->arp_tpa, tpa) != 4)
				return -EINVAL;
			put16(f + off, 1); /* Ethernet */
			put16(f + off + 2, ETH_TYPE_IP);
			f[off + 4] = 6;
			f[off + 5] = 4;
			put16(f + off + 6, 1); /* request */
			memcpy(f + off + 8, smac, 6);
			memcpy(f + off + 14, spa, 4);
			memcpy(f + off + 24, tpa, 4); /* target MAC stays zero */
			off += 28;
		} else {
			for (size_t i = 0; i < s->payload_len; i++)
				f[off + i] = s->payload ? s->payload[i] : (uint8_t)(i * 7 + 1);
			off += s->payload_len;
		}
		inf.l3_end = (uint16_t)off;
		goto pad;
	}

	inf.l3_off = (uint16_t)off;
	if (family == 4) {
		size_t hlen = 20 + s->ip_optlen;

		if (s->ip_optlen % 4 || s->ip_optlen > 40 || (s->ext && *s->ext))
			return -EINVAL;
		inf.l4_off = (uint16_t)(off + hlen);
	} else {
		size_t l4 = off + 40;

		if (s->ip_optlen)
			return -EINVAL;
		for (const char *e = s->ext; e && *e; e++, nexts++) {
			if (ext_proto(*e) < 0 || nexts == HC_PKT_EXT_MAX)
				return -EINVAL;
			l4 += ext_len(*e);
		}
		inf.l4_off = (uint16_t)l4;
	}
	if (s->tcp_optlen % 4 || s->tcp_optlen > 40 ||
	    inf.l4_off + 60u + s->payload_len > sizeof(f))
		return -ENOSPC;
	l4_len = build_l4(s, f + inf.l4_off, &inf, inf.l4_off);
	inf.l3_end = (uint16_t)(inf.l4_off + l4_len);

	if (family == 4) {
		uint8_t *ip = f + off;
		size_t hlen = inf.l4_off - off;

		ip[0] = 0x40 | (uint8_t)(hlen / 4);
		ip[1] = s->tos;
		put16(ip + 2, (uint16_t)(hlen + l4_len));
		put16(ip + 4, s->ip_id);
		put16(ip + 6, s->frag);
		ip[8] = s->ttl ? s->ttl : 64;
		ip[9] = s->proto;
		memcpy(ip + 12, saddr, 4);
		memcpy(ip + 16, daddr, 4);
		if (s->ip_optlen) {
			memset(ip + 20, 1, s->ip_optlen); /* NOPs after a Router Alert */
			ip[20] = 0x94;
			ip[21] = 4;
		}
		put16(ip + 10, hc_pkt_csum(ip, hlen, 0));
	} else {
		uint8_t *ip = f + off, *e = ip + 40;
		uint8_t first = nexts ? (uint8_t)ext_proto(s->ext[0]) : s->proto;

		put32(ip, 6u << 28 | (uint32_t)s->tos << 20);
		put16(ip + 4, (uint16_t)(inf.l3_end - off - 40));
		ip[6] = first;
		ip[7] = s->ttl ? s->ttl : 64;
		memcpy(ip + 8, saddr, 16);
		memcpy(ip + 24, daddr, 16);
		for (size_t i = 0; i < nexts; i++) {
			char kind = s->ext[i];

			e[0] = i + 1 < nexts ? (uint8_t)ext_proto(s->ext[i + 1]) : s->proto;
			if (kind == 'r') {
				e[1] = 2; /* 8-byte units after the first 8 */
				e[2] = 4; /* segment routing header */
				e[3] = 0; /* segments left: this node is the last */
				memcpy(e + 8, segment, 16);
			} else if (kind == 'f') {
				put16(e + 2, s->frag);
				put32(e + 4, 0x48430000u | s->ip_id);
			} else {
				e[2] = 1; /* PadN over the 6 option bytes */
				e[3] = 4;
			}
			e += ext_len(kind);
		}
	}

	if (inf.csum_off) {
		uint32_t pseudo = 0;
		uint16_t sum;

		if (s->proto != PROTO_ICMP) {
			size_t alen = family == 4 ? 4 : 16;

			pseudo = csum_add(0, saddr, alen);
			pseudo = csum_add(pseudo, daddr, alen);
			pseudo += s->proto + (uint32_t)l4_len;
		}
		sum = hc_pkt_csum(f + inf.l4_off, l4_len, pseudo);
		if (s->proto == PROTO_UDP && sum == 0)
			sum = 0xffff; /* zero means "no checksum" */
		if (s->proto == PROTO_UDP && s->udp_nocsum && family == 4)
			sum = 0;
		put16(f + inf.csum_off, sum);
	}

pad:
	off = inf.l3_end;
	if (s->pad_to > off) {
		if (s->pad_to > sizeof(f))
			return -ENOSPC;
		off = s->pad_to; /* f is zeroed */
	}
	if (off > cap)
		return -ENOSPC;
	memcpy(buf, f, off);
	inf.len = (uint16_t)off;
	if (info)
		*info = inf;
	return (int)off;
}

/* Verifies the L4 checksum of [l4, l4 + l4_len) with the pseudo header sum
 * of its addresses. */
static int verify_l4(const uint8_t *l4, size_t l4_len, uint8_t proto, int family,
		     uint32_t pseudo_addrs, char *why, size_t why_len)
{
	uint32_t pseudo = proto == PROTO_ICMP ? 0 : pseudo_addrs;
	const char *name;
	size_t min;

	switch (proto) {
	case PROTO_TCP:
		name = "tcp";
		min = 20;
		break;
	case PROTO_UDP:
		name = "udp";
		min = 8;
		break;
	case PROTO_ICMP:
		name = "icmp";
		min = 4;
		break;
	case PROTO_ICMPV6:
		name = "icmpv6";
		min = 4;
		break;
	default:
		return 0; /* nothing we know how to check */
	}
	if (l4_len < min) {
		snprintf(why, why_len, "%s header truncated (%zu bytes)", name, l4_len);
		return -EBADMSG;
	}
	if (proto == PROTO_UDP) {
		size_t ulen = get16(l4 + 4);

		if (get16(l4 + 6) == 0) {
			if (family == 4)
				return 0;
			snprintf(why, why_len, "udp checksum 0 over IPv6");
			return -EBADMSG;
		}
		if (ulen < 8 || ulen > l4_len) {
			snprintf(why, why_len, "udp length %zu in %zu bytes", ulen, l4_len);
			return -EBADMSG;
		}
		l4_len = ulen;
	}
	if (proto != PROTO_ICMP)
		pseudo += proto + (uint32_t)l4_len;
	if (hc_pkt_csum(l4, l4_len, pseudo) != 0) {
		snprintf(why, why_len, "%s checksum 0x%04x does not verify", name,
			 get16(l4 + (proto == PROTO_TCP ? 16 : proto == PROTO_UDP ? 6 : 2)));
		return -EBADMSG;
	}
	return 0;
}

int hc_pkt_verify_csums(const uint8_t *f, size_t len, char *why, size_t why_len)
{
	size_t off = 12;
	uint16_t type;

	if (len < 14) {
		snprintf(why, why_len, "frame of %zu bytes", len);
		return -EBADMSG;
	}
	type = get16(f + off);
	off += 2;
	while (type == ETH_TYPE_8021Q || type == ETH_TYPE_8021AD) {
		if (off + 4 > len) {
			snprintf(why, why_len, "truncated VLAN tag");
			return -EBADMSG;
		}
		type = get16(f + off + 2);
		off += 4;
	}
	if (type == ETH_TYPE_IP) {
		const uint8_t *ip = f + off;
		size_t hlen, tot;
		uint32_t pseudo;

		if (off + 20 > len || (ip[0] >> 4) != 4 || (ip[0] & 15) < 5) {
			snprintf(why, why_len, "no IPv4 header");
			return -EBADMSG;
		}
		hlen = (ip[0] & 15) * 4u;
		tot = get16(ip + 2);
		if (off + hlen > len || tot < hlen || off + tot > len) {
			snprintf(why, why_len, "IPv4 lengths: header %zu, total %zu, frame %zu", hlen,
				 tot, len);
			return -EBADMSG;
		}
		if (hc_pkt_csum(ip, hlen, 0) != 0) {
			snprintf(why, why_len, "IPv4 header checksum 0x%04x does not verify",
				 get16(ip + 10));
			return -EBADMSG;
		}
		if (get16(ip + 6) & 0x3fff)
			return 0; /* a fragment: the L4 checksum spans the datagram */
		pseudo = csum_add(0, ip + 12, 8);
		return verify_l4(ip + hlen, tot - hlen, ip[9], 4, pseudo, why, why_len);
	}
	if (type == ETH_TYPE_IPV6) {
		const uint8_t *ip = f + off;
		size_t plen, l4;
		uint8_t next;

		if (off + 40 > len || (ip[0] >> 4) != 6) {
			snprintf(why, why_len, "no IPv6 header");
			return -EBADMSG;
		}
		plen = get16(ip + 4);
		if (off + 40 + plen > len) {
			snprintf(why, why_len, "IPv6 payload length %zu in a %zu-byte frame", plen, len);
			return -EBADMSG;
		}
		next = ip[6];
		l4 = 40;
		while (next == PROTO_HOPOPTS || next == PROTO_ROUTING || next == PROTO_DSTOPTS ||
		       next == PROTO_FRAGMENT || next == PROTO_AH) {
			size_t hl;

			if (l4 + 8 > 40 + plen) {
				snprintf(why, why_len, "truncated IPv6 extension header");
				return -EBADMSG;
			}
			if (next == PROTO_FRAGMENT)
				return 0; /* as for IPv4 */
			hl = next == PROTO_AH ? (ip[l4 + 1] + 2u) * 4 : (ip[l4 + 1] + 1u) * 8;
			next = ip[l4];
			l4 += hl;
		}
		if (l4 > 40 + plen) {
			snprintf(why, why_len, "IPv6 extension headers past the payload");
			return -EBADMSG;
		}
		/* The builder's routing headers have no segments left, so the
		 * destination field is the final one the pseudo header takes
		 * (whatever the segment says, as after a DNAT). */
		return verify_l4(ip + l4, 40 + plen - l4, next, 6, csum_add(0, ip + 8, 32), why,
				 why_len);
	}
	return 0;
}

/* Names the header a frame offset falls in, judged from the frame `want`. */
static void describe_offset(const uint8_t *f, size_t len, size_t at, char *out, size_t out_len)
{
	size_t off = 14, l3_len = 0;
	uint16_t type = len >= 14 ? get16(f + 12) : 0;

	if (at < 12) {
		snprintf(out, out_len, "%s MAC", at < 6 ? "destination" : "source");
		return;
	}
	while ((type == ETH_TYPE_8021Q || type == ETH_TYPE_8021AD) && off + 4 <= len) {
		type = get16(f + off + 2);
		off += 4;
	}
	if (at < off) {
		snprintf(out, out_len, "Ethernet/VLAN header +%zu", at);
		return;
	}
	if (type == ETH_TYPE_IP && off + 20 <= len)
		l3_len = (f[off] & 15) * 4u;
	else if (type == ETH_TYPE_IPV6)
		l3_len = 40;
	if (at < off + l3_len)
		snprintf(out, out_len, "%s header +%zu", type == ETH_TYPE_IP ? "IPv4" : "IPv6",
			 at - off);
	else
		snprintf(out, out_len, "L3 payload +%zu", at - off - l3_len);
}

const char *hc_pkt_diff(const uint8_t *got, size_t got_len, const uint8_t *want,
			size_t want_len, char *out, size_t out_len)
{
	size_t n = got_len < want_len ? got_len : want_len, at;
	char where[64];
	int w;

	for (at = 0; at < n && got[at] == want[at]; at++)
		;
	if (at == n && got_len == want_len) {
		snprintf(out, out_len, "identical");
		return out;
	}
	if (at == n) {
		snprintf(out, out_len, "length %zu, want %zu (equal up to there)", got_len, want_len);
		return out;
	}
	describe_offset(want, want_len, at, where, sizeof(where));
	w = snprintf(out, out_len, "length %zu/%zu, first difference at byte %zu (%s): got", got_len,
		     want_len, at, where);
	for (size_t i = at; i < at + 8 && i < got_len && w > 0 && (size_t)w < out_len; i++)
		w += snprintf(out + w, out_len - w, " %02x", got[i]);
	if (w > 0 && (size_t)w < out_len)
		w += snprintf(out + w, out_len - w, ", want");
	for (size_t i = at; i < at + 8 && i < want_len && w > 0 && (size_t)w < out_len; i++)
		w += snprintf(out + w, out_len - w, " %02x", want[i]);
	return out;
}
