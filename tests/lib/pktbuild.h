/* A packet builder for BPF program tests and benchmarks: Ethernet frames with
 * optional 802.1Q/802.1ad tags, IPv4 (with options) or IPv6 (with extension
 * headers), TCP, UDP, ICMP/ICMPv6, ARP or raw payloads, every checksum
 * computed in full from scratch. A frame is described by a hc_pktspec, so a
 * test states its expected output as the same description with the rewritten
 * fields changed, and compares bytes. */
#ifndef HC_TEST_PKTBUILD_H
#define HC_TEST_PKTBUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HC_PKT_MAX 3072 /* longest frame the builder writes (jumbo frames past 2 KiB) */
#define HC_PKT_VLAN_MAX 3 /* more than the programs follow, to test that limit */
#define HC_PKT_EXT_MAX 8 /* IPv6 extension headers */

/* Description of one frame. Zero fields take defaults (stated per field), so
 * fixture tables only name what matters to a case. */
struct hc_pktspec {
	const char *eth_dst, *eth_src; /* "02:00:00:00:00:01"; NULL: all zeros */
	/* Tags, outermost first; a tag with tpid 0 ends the list. */
	struct {
		uint16_t tpid; /* ETH_P_8021Q or ETH_P_8021AD */
		uint16_t tci;
	} vlan[HC_PKT_VLAN_MAX];
	/* Frames without IP (src == NULL): ETH_P_ARP builds an ARP request
	 * from arp_spa to arp_tpa; any other EtherType carries the payload. */
	uint16_t eth_proto;
	const char *arp_spa, *arp_tpa;

	/* IP: the family follows the address text (a ':' means IPv6). */
	const char *src, *dst;
	uint8_t ttl; /* 0: 64 */
	uint8_t tos; /* IPv4 TOS / IPv6 traffic class */
	uint16_t ip_id;
	/* IPv4: the flags and fragment offset field (IP_MF, IP_DF, offset in
	 * 8-byte units). IPv6: offset (8-byte units) << 3 | M, written in the
	 * fragment header, if ext has one. */
	uint16_t frag;
	uint8_t ip_optlen; /* IPv4 option bytes (multiple of 4, <= 40): Router Alert, then NOPs */
	/* IPv6 extension headers in order: 'h' hop-by-hop (8 bytes), 'd'
	 * destination options (8), 'r' routing (segment routing, one segment,
	 * segments left 0, 24 bytes), 'f' fragment (8). NULL or "": none. */
	const char *ext;
	const char *rh_segment; /* the routing header's segment; NULL: dst */

	uint8_t proto; /* IPPROTO_TCP, _UDP, _ICMP, _ICMPV6 or any other (raw payload) */
	uint16_t sport, dport; /* host order */
	uint8_t tcp_flags; /* TH_* bits as in the header; 0 is sent as is */
	uint8_t tcp_optlen; /* TCP option bytes (multiple of 4, <= 40): MSS, then NOPs */
	uint8_t icmp_type, icmp_code;
	bool udp_nocsum; /* IPv4 UDP sent without checksum (0) */

	const uint8_t *payload; /* NULL: a counting pattern */
	uint16_t payload_len;
	uint16_t pad_to; /* zero padding at the end up to this frame length */
};

/* Where the builder put things, as offsets from the start of the frame
 * (0 when the frame has no such part). */
struct hc_pktinfo {
	uint16_t len; /* frame length, padding included */
	uint16_t l3_off;
	uint16_t l4_off; /* after IPv4 options or IPv6 extension headers */
	uint16_t payload_off;
	uint16_t csum_off; /* the L4 checksum field */
	uint16_t l3_end; /* end of the IP packet (where padding starts) */
};

/* Writes the frame described by spec into buf (cap bytes). info may be NULL.
 * Returns the frame length, or -EINVAL for a description that cannot be
 * built (bad address or MAC text, odd option lengths) or -ENOSPC. */
int hc_pkt_build(const struct hc_pktspec *spec, uint8_t *buf, size_t cap,
		 struct hc_pktinfo *info);

/* Parses a frame on its own (not through the builder's notes) and checks
 * every checksum it carries from scratch: the IPv4 header checksum and the
 * TCP, UDP, ICMP or ICMPv6 checksum with its pseudo header (a zero UDP
 * checksum is accepted over IPv4 only). Fragments and truncated packets are
 * reported as such. Returns 0 if everything checks, else -EBADMSG with the
 * reason in why. */
int hc_pkt_verify_csums(const uint8_t *frame, size_t len, char *why, size_t why_len);

/* The Internet checksum (RFC 1071) of data, added to a partial sum. */
uint16_t hc_pkt_csum(const void *data, size_t len, uint32_t sum);

/* Describes how two frames differ (the first differing byte, with the
 * header it lies in), for assertion messages. Returns out. */
const char *hc_pkt_diff(const uint8_t *got, size_t got_len, const uint8_t *want,
			size_t want_len, char *out, size_t out_len);

/* "02:00:00:00:00:01" -> 6 bytes. Returns 0 or -EINVAL. */
int hc_pkt_parse_mac(const char *text, uint8_t mac[6]);

#endif /* HC_TEST_PKTBUILD_H */
