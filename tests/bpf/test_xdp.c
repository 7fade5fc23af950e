/* The uplink's node-port programs under BPF_PROG_TEST_RUN, both of them:
 * hc_xdp_ingress and hc_tc_uplink (TC mode) must do the same to every frame.
 * A fixture table of frames (what goes in, the verdict, the exact bytes that
 * come out, what the maps show afterwards), every prefix of valid frames,
 * and the backend choice across many flows, each run against both; verdicts
 * are compared in XDP's terms (TC_ACT_OK is XDP_PASS, TC_ACT_REDIRECT is
 * XDP_REDIRECT). Runs as root in a network namespace of its own (tests/lib/
 * bpfnet.h) so that bpf_fib_lookup finds known routes and neighbours. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpfnet.h"
#include "hc_tc.skel.h"
#include "hc_xdp.skel.h"
#include "pktbuild.h"
#include "bpfexpect.h"

/* Node ports of the services the fixtures use; hc_services is written once
 * in the group setup (the spread test owns SVC_SPREAD). */
#define SVC_TCP4 30080 /* -> 10.244.0.2:8080 */
#define SVC_TCP6 30081 /* -> [fd00:244::2]:8080 */
#define SVC_UDP4 30053 /* -> 10.244.0.2:5353 */
#define SVC_UDP6 30054 /* -> [fd00:244::2]:5353 */
#define SVC_EMPTY 30090 /* no backends */
#define SVC_NO_NEIGH4 30091 /* -> 10.244.0.9:8080, no neighbour entry */
#define SVC_NO_NEIGH6 30092 /* -> [fd00:244::9]:8080, no neighbour entry */
#define SVC_UNROUTED 30093 /* -> 192.0.2.99:8080, no route */
#define SVC_SPREAD 30100
#define NOT_A_SERVICE 30999
#define CLIENT_PORT 40000
#define NOT_THE_NODE4 "198.51.100.77"

/* A program that serves node ports on the uplink. */
struct prog_under_test {
	const char *name;
	bool tc; /* an skb program: test-run with an __sk_buff context */
	int fd;
};

static struct prog_under_test progs[] = {
	{ "xdp", false, -1 },
	{ "tc", true, -1 },
};

static struct {
	struct hc_bpfnet net;
	struct hc_xdp *skel;
	struct hc_tc *tc;
	const struct prog_under_test *cur; /* the one the running test runs */
	char skip[256]; /* why every test is skipped, if set */
	char broken[512]; /* why every test fails, if set */
	int services, conntrack, wl_stats, drops, hosts;
} env;

enum out_kind {
	OUT_SAME, /* the frame comes out as it went in */
	OUT_DNAT, /* destination -> backend, MACs from the FIB, tags popped */
	OUT_DNAT_L3, /* destination -> backend, L2 as it was (no neighbour) */
};

struct xdp_case {
	const char *desc;
	struct hc_pktspec in;
	/* Breaks the built frame (lengths, versions) before it is sent. */
	void (*mangle)(uint8_t *f, size_t *len, const struct hc_pktinfo *info);
	int verdict;
	enum out_kind out;
	const char *backend; /* the destination after DNAT ... */
	uint16_t backend_port; /* ... and its port */
	enum hc_drop_reason drop; /* counted once; all other reasons stay 0 */
};

#define REQUIRE_ENV() REQUIRE_SETUP(env.skip, env.broken)

/* ---- maps ---- */

static void set_service(uint16_t port, uint8_t proto, const char *const *addrs,
			const uint16_t *ports, unsigned int n)
{
	struct hc_service_key key = { .port = port, .proto = proto };
	struct hc_service_val val = { .count = n };

	for (unsigned int i = 0; i < n; i++) {
		assert_int_equal(hc_bpfnet_addr(addrs[i], &val.backends[i].addr), 0);
		val.backends[i].port = ports[i];
	}
	assert_int_equal(bpf_map_update_elem(env.services, &key, &val, BPF_ANY), 0);
}

static void set_service1(uint16_t port, uint8_t proto, const char *addr, uint16_t bport)
{
	set_service(port, proto, &addr, &bport, addr ? 1 : 0);
}

static void reset_maps(void)
{
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;

	assert_int_equal(hc_bpfnet_map_clear(env.conntrack, sizeof(struct hc_ct_key)), 0);
	reset_drops(env.drops);
	/* The agent creates a workload's counters; the programs only add. */
	assert_int_equal(hc_bpfnet_percpu_zero(env.wl_stats, &ifindex, 6), 0);
}

static struct hc_wl_stats wl_stats(void)
{
	return wl_stats_of(env.wl_stats, (uint32_t)env.net.wl_ifindex);
}

/* Checks the two conntrack entries of a translated flow, as the node-port
 * NAT defines them (include/hypercore/dataplane.h), built here from the
 * fixture's own addresses rather than from the program's view. */
static void expect_conntrack(const struct hc_pktspec *in, const char *backend, uint16_t bport,
			     uint8_t backend_idx, uint64_t t0, uint64_t t1)
{
	struct hc_ct_key fwd = { .proto = in->proto }, rev = { .proto = in->proto };
	struct hc_ipaddr backend_addr;
	struct hc_ct_val val;

	assert_int_equal(hc_bpfnet_addr(backend, &backend_addr), 0);
	assert_int_equal(hc_bpfnet_addr(in->src, &fwd.saddr), 0);
	assert_int_equal(hc_bpfnet_addr(in->dst, &fwd.daddr), 0);
	fwd.sport = htons(in->sport);
	fwd.dport = htons(in->dport);
	assert_int_equal(bpf_map_lookup_elem(env.conntrack, &fwd, &val), 0);
	assert_memory_equal(&val.addr, &backend_addr, sizeof(backend_addr));
	assert_int_equal(val.port, htons(bport));
	assert_int_equal(val.dir, HC_CT_FORWARD);
	assert_int_equal(val.backend_idx, backend_idx);
	assert_in_range(val.created_ns, t0, t1);

	rev.saddr = backend_addr;
	rev.daddr = fwd.saddr;
	rev.sport = htons(bport);
	rev.dport = fwd.sport;
	assert_int_equal(bpf_map_lookup_elem(env.conntrack, &rev, &val), 0);
	assert_memory_equal(&val.addr, &fwd.daddr, sizeof(fwd.daddr));
	assert_int_equal(val.port, fwd.dport);
	assert_int_equal(val.dir, HC_CT_REPLY);
	assert_in_range(val.created_ns, t0, t1);

	assert_int_equal(hc_bpfnet_map_count(env.conntrack, sizeof(struct hc_ct_key)), 2);
}

/* ---- running the program ---- */

/* A TC verdict in XDP's terms; anything else comes out as 100 + v. */
static int tc_verdict_as_xdp(int v)
{
	switch (v) {
	case TC_ACT_OK:
		return XDP_PASS;
	case TC_ACT_REDIRECT:
		return XDP_REDIRECT;
	case TC_ACT_SHOT:
		return XDP_DROP;
	default:
		return 100 + v;
	}
}

/* Runs the program under test once on frame as received on the uplink; out
 * gets the frame as the program left it (HC_PKT_MAX bytes at most).
 * Returns 0 with the verdict, or -errno from the kernel. */
static int xdp_try(const uint8_t *frame, size_t len, uint8_t *out, size_t *out_len,
		   int *verdict)
{
	struct xdp_md xdp = {
		.data_end = (uint32_t)len,
		.ingress_ifindex = (uint32_t)env.net.uplink_ifindex,
	};
	struct __sk_buff skb = { .ifindex = (uint32_t)env.net.uplink_ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (uint32_t)len,
		    .data_out = out, .data_size_out = HC_PKT_MAX, .repeat = 1);

	opts.ctx_in = env.cur->tc ? (void *)&skb : (void *)&xdp;
	opts.ctx_size_in = env.cur->tc ? sizeof(skb) : sizeof(xdp);
	if (bpf_prog_test_run_opts(env.cur->fd, &opts))
		return -errno;
	*out_len = opts.data_size_out;
	*verdict = env.cur->tc ? tc_verdict_as_xdp((int)opts.retval) : (int)opts.retval;
	return 0;
}

static int xdp_run(const uint8_t *frame, size_t len, uint8_t *out, size_t *out_len)
{
	int verdict, err = xdp_try(frame, len, out, out_len, &verdict);

	if (err)
		fail_msg("BPF_PROG_TEST_RUN on %zu bytes: %s", len, strerror(-err));
	return verdict;
}

static const char *verdict_name(int v)
{
	static const char *const names[] = { "XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX",
					     "XDP_REDIRECT" };

	return v >= 0 && v < 5 ? names[v] : v >= 100 ? "an unexpected TC verdict" : "?";
}

static void expect_verdict(int got, int want)
{
	if (got != want)
		fail_msg("%s: verdict %s (%d), want %s", env.cur->name, verdict_name(got), got,
			 verdict_name(want));
}

/* The frame a DNAT of `in` to backend:port must give. */
static size_t build_dnat(const struct hc_pktspec *in, enum out_kind kind, const char *backend,
			 uint16_t port, uint8_t *out)
{
	struct hc_pktspec want = *in;
	char mac[18];
	int n;

	want.dst = backend;
	want.dport = port;
	want.rh_segment = in->rh_segment ? in->rh_segment : in->dst; /* not rewritten */
	if (kind == OUT_DNAT) {
		hc_bpfnet_backend_mac(backend, mac);
		want.eth_dst = mac;
		want.eth_src = HC_BPFNET_WL_MAC;
		memset(want.vlan, 0, sizeof(want.vlan));
	}
	n = hc_pkt_build(&want, out, HC_PKT_MAX, NULL);
	assert_true(n > 0);
	return (size_t)n;
}

/* ---- the fixture table ---- */

#define WIRE .eth_dst = HC_BPFNET_UPLINK_MAC, .eth_src = HC_BPFNET_GW_MAC
#define V4(d) WIRE, .src = HC_BPFNET_CLIENT4, .dst = (d)
#define V6(d) WIRE, .src = HC_BPFNET_CLIENT6, .dst = (d)
#define TCP(port) .proto = IPPROTO_TCP, .sport = CLIENT_PORT, .dport = (port)
#define UDP(port) .proto = IPPROTO_UDP, .sport = CLIENT_PORT, .dport = (port)
#define TAG1 .vlan = { { ETH_P_8021Q, 100 } }
#define QINQ .vlan = { { ETH_P_8021AD, 200 }, { ETH_P_8021Q, 100 } }
#define TAG3 .vlan = { { ETH_P_8021AD, 300 }, { ETH_P_8021AD, 200 }, { ETH_P_8021Q, 100 } }
#define PASSED .verdict = XDP_PASS, .out = OUT_SAME
#define MALFORMED PASSED, .drop = HC_DROP_MALFORMED
#define DNAT4(port) .verdict = XDP_REDIRECT, .out = OUT_DNAT, .backend = HC_BPFNET_BACKEND4, \
		    .backend_port = (port)
#define DNAT6(port) .verdict = XDP_REDIRECT, .out = OUT_DNAT, .backend = HC_BPFNET_BACKEND6, \
		    .backend_port = (port)

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

static void ihl_4(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l3_off] = 0x44;
}

static void ihl_15(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l3_off] = 0x4f; /* 60 bytes of header in a 40-byte packet */
}

static void ihl_6(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l3_off] = 0x46; /* the TCP header now ends past the packet */
}

static void ip_version_6(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l3_off] = 0x65;
}

static void tot_len_past_frame(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l3_off + 2, (uint16_t)(*len - i->l3_off + 1));
}

static void tot_len_below_header(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l3_off + 2, 19);
}

static void tot_len_cuts_l4(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	/* The whole TCP header is in the frame, but not in the IP packet. */
	put16(f + i->l3_off + 2, (uint16_t)(i->l4_off - i->l3_off + 10));
}

static void tcp_doff_4(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l4_off + 12] = 0x40;
}

static void tcp_doff_15(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l4_off + 12] = 0xf0;
}

static void udp_len_7(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l4_off + 4, 7);
}

static void udp_len_past_packet(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l4_off + 4, (uint16_t)(i->l3_end - i->l4_off + 4));
}

static void plen_past_frame(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l3_off + 4, (uint16_t)(*len - i->l3_off - 40 + 1));
}

static void plen_cuts_ext(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l3_off + 4, 4);
}

static void plen_cuts_l4(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	put16(f + i->l3_off + 4, (uint16_t)(i->l4_off - i->l3_off - 40 + 10));
}

static void ip6_version_4(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	f[i->l3_off] = 0x45;
}

/* Makes the hop-by-hop header claim 2 KiB, with its bytes arranged so that
 * reading it as a TCP header (a service port, data offset 5) would look
 * valid: a parser that loses track of a long header must not translate.
 * In a short packet the header runs past its end (malformed); in a jumbo
 * frame it ends past byte 2047, beyond the headers the parser follows. */
static void hbh_2k(uint8_t *f, size_t *len, const struct hc_pktinfo *i)
{
	uint8_t *hbh = f + i->l4_off - 8;

	hbh[1] = 255;
	put16(hbh + 2, SVC_TCP6);
	f[i->l4_off + 4] = 0x50; /* byte 12 counted from the hop-by-hop header */
}

static const struct xdp_case cases[] = {
	/* Translated. */
	{ "tcp4 syn to a service: DNAT, redirect", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN }, NULL, DNAT4(8080) },
	{ "tcp4 with tcp options and payload", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_ACK | TH_PUSH, .tcp_optlen = 12, .payload_len = 301 }, NULL,
	  DNAT4(8080) },
	{ "udp4 to a service", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4), .payload_len = 64 }, NULL,
	  DNAT4(5353) },
	{ "udp4 with zero checksum keeps it zero", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4),
	  .payload_len = 64, .udp_nocsum = true }, NULL, DNAT4(5353) },
	{ "udp4 padded to 60 bytes keeps its padding", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4),
	  .payload_len = 3, .pad_to = 60 }, NULL, DNAT4(5353) },
	{ "tcp6 syn to a service", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6), .tcp_flags = TH_SYN },
	  NULL, DNAT6(8080) },
	{ "udp6 to a service", { V6(HC_BPFNET_NODE6), UDP(SVC_UDP6), .payload_len = 100 }, NULL,
	  DNAT6(5353) },
	{ "tcp4 in one 802.1Q tag: tag popped", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4), TAG1,
	  .tcp_flags = TH_SYN }, NULL, DNAT4(8080) },
	{ "udp4 in 802.1ad + 802.1Q tags: both popped", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4),
	  QINQ, .payload_len = 20 }, NULL, DNAT4(5353) },
	{ "tcp6 in one 802.1Q tag: tag popped", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6), TAG1,
	  .tcp_flags = TH_SYN }, NULL, DNAT6(8080) },
	{ "tcp4 with 4 bytes of IP options", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN, .ip_optlen = 4 }, NULL, DNAT4(8080) },
	{ "udp4 with 40 bytes of IP options (ihl 15)", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4),
	  .ip_optlen = 40, .payload_len = 10 }, NULL, DNAT4(5353) },
	{ "tcp4 with DF set is not a fragment", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN, .frag = 0x4000 }, NULL, DNAT4(8080) },
	{ "tcp6 after a hop-by-hop header", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6),
	  .tcp_flags = TH_SYN, .ext = "h" }, NULL, DNAT6(8080) },
	{ "udp6 after a routing header", { V6(HC_BPFNET_NODE6), UDP(SVC_UDP6), .ext = "r",
	  .payload_len = 16 }, NULL, DNAT6(5353) },
	{ "tcp6 after destination options", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6),
	  .tcp_flags = TH_SYN, .ext = "d" }, NULL, DNAT6(8080) },
	{ "tcp6 after 6 extension headers (the most followed)", { V6(HC_BPFNET_NODE6),
	  TCP(SVC_TCP6), .tcp_flags = TH_SYN, .ext = "hdrddd" }, NULL, DNAT6(8080) },
	{ "tcp6 in a tag after hop-by-hop and routing headers", { V6(HC_BPFNET_NODE6),
	  TCP(SVC_TCP6), TAG1, .tcp_flags = TH_ACK, .ext = "hr", .payload_len = 40 }, NULL,
	  DNAT6(8080) },
	{ "tcp4 to a backend without neighbour: rewritten, passed", { V4(HC_BPFNET_NODE4),
	  TCP(SVC_NO_NEIGH4), .tcp_flags = TH_SYN }, NULL, .verdict = XDP_PASS,
	  .out = OUT_DNAT_L3, .backend = HC_BPFNET_NO_NEIGH4, .backend_port = 8080 },
	{ "udp6 to a backend without neighbour: rewritten, passed", { V6(HC_BPFNET_NODE6),
	  UDP(SVC_NO_NEIGH6), .payload_len = 8 }, NULL, .verdict = XDP_PASS, .out = OUT_DNAT_L3,
	  .backend = HC_BPFNET_NO_NEIGH6, .backend_port = 8080 },

	/* Left alone. */
	{ "tagged tcp4 to a backend without neighbour: FIB counted", { V4(HC_BPFNET_NODE4),
	  TCP(SVC_NO_NEIGH4), TAG1, .tcp_flags = TH_SYN }, NULL, PASSED, .drop = HC_DROP_FIB },
	{ "tcp4 to an unrouted backend: FIB counted", { V4(HC_BPFNET_NODE4), TCP(SVC_UNROUTED),
	  .tcp_flags = TH_SYN }, NULL, PASSED, .drop = HC_DROP_FIB },
	{ "tcp4 to a service without backends: NO_BACKEND counted", { V4(HC_BPFNET_NODE4),
	  TCP(SVC_EMPTY), .tcp_flags = TH_SYN }, NULL, PASSED, .drop = HC_DROP_NO_BACKEND },
	{ "tcp4 to a service with only IPv6 backends: NO_BACKEND", { V4(HC_BPFNET_NODE4),
	  TCP(SVC_TCP6), .tcp_flags = TH_SYN }, NULL, PASSED, .drop = HC_DROP_NO_BACKEND },
	{ "tcp4 to a port without service", { V4(HC_BPFNET_NODE4), TCP(NOT_A_SERVICE),
	  .tcp_flags = TH_SYN }, NULL, PASSED },
	{ "udp4 to a tcp-only service port", { V4(HC_BPFNET_NODE4), UDP(SVC_TCP4),
	  .payload_len = 4 }, NULL, PASSED },
	{ "tcp4 to a service port of an address not the node's", { V4(NOT_THE_NODE4),
	  TCP(SVC_TCP4), .tcp_flags = TH_SYN }, NULL, PASSED },
	{ "tcp6 to a service port of an address not the node's", { V6("2001:db8:100::77"),
	  TCP(SVC_TCP6), .tcp_flags = TH_SYN }, NULL, PASSED },
	{ "tcp4 in three tags (more than followed)", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4), TAG3,
	  .tcp_flags = TH_SYN }, NULL, PASSED },
	{ "tcp6 after 7 extension headers (more than followed)", { V6(HC_BPFNET_NODE6),
	  TCP(SVC_TCP6), .tcp_flags = TH_SYN, .ext = "hdrdddd" }, NULL, PASSED },
	{ "tcp6 jumbo frame with a hop-by-hop header past 2 KiB", { V6(HC_BPFNET_NODE6),
	  TCP(SVC_TCP6), .tcp_flags = TH_ACK, .ext = "h", .payload_len = 2100 }, hbh_2k,
	  PASSED },
	{ "ipv4 first fragment (MF)", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4), .frag = 0x2000,
	  .payload_len = 64 }, NULL, PASSED },
	{ "ipv4 later fragment (offset 8)", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4), .frag = 8,
	  .payload_len = 64 }, NULL, PASSED },
	{ "ipv6 first fragment", { V6(HC_BPFNET_NODE6), UDP(SVC_UDP6), .ext = "f", .frag = 1,
	  .payload_len = 64 }, NULL, PASSED },
	{ "ipv6 later fragment behind a hop-by-hop header", { V6(HC_BPFNET_NODE6),
	  UDP(SVC_UDP6), .ext = "hf", .frag = 8 << 3, .payload_len = 64 }, NULL, PASSED },
	{ "ipv6 atomic fragment", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6), .tcp_flags = TH_SYN,
	  .ext = "f" }, NULL, PASSED },
	{ "icmp echo request to the node", { V4(HC_BPFNET_NODE4), .proto = IPPROTO_ICMP,
	  .icmp_type = 8, .payload_len = 56 }, NULL, PASSED },
	{ "icmpv6 echo request to the node", { V6(HC_BPFNET_NODE6), .proto = IPPROTO_ICMPV6,
	  .icmp_type = 128, .payload_len = 56 }, NULL, PASSED },
	{ "sctp to the node", { V4(HC_BPFNET_NODE4), .proto = IPPROTO_SCTP, .payload_len = 32 },
	  NULL, PASSED },
	{ "arp request for the node", { WIRE, .eth_proto = ETH_P_ARP, .arp_spa = "198.51.100.254",
	  .arp_tpa = HC_BPFNET_NODE4 }, NULL, PASSED },
	{ "lldp (not IP)", { .eth_dst = "01:80:c2:00:00:0e", .eth_src = HC_BPFNET_GW_MAC,
	  .eth_proto = ETH_P_LLDP, .payload_len = 46 }, NULL, PASSED },

	/* Malformed: left alone and counted. */
	{ "ipv4 ihl 4", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4), .tcp_flags = TH_SYN }, ihl_4,
	  MALFORMED },
	{ "ipv4 ihl 15 past the frame", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN }, ihl_15, MALFORMED },
	{ "ipv4 ihl 6 moving the tcp header past the frame", { V4(HC_BPFNET_NODE4),
	  TCP(SVC_TCP4), .tcp_flags = TH_SYN }, ihl_6, MALFORMED },
	{ "ipv4 ethertype with ip version 6", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN }, ip_version_6, MALFORMED },
	{ "ipv4 total length past the frame", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN, .payload_len = 10 }, tot_len_past_frame, MALFORMED },
	{ "ipv4 total length below the header", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN }, tot_len_below_header, MALFORMED },
	{ "ipv4 total length ending inside the tcp header", { V4(HC_BPFNET_NODE4),
	  TCP(SVC_TCP4), .tcp_flags = TH_SYN, .pad_to = 80 }, tot_len_cuts_l4, MALFORMED },
	{ "tcp data offset 4", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4), .tcp_flags = TH_SYN },
	  tcp_doff_4, MALFORMED },
	{ "tcp data offset 15 past the frame", { V4(HC_BPFNET_NODE4), TCP(SVC_TCP4),
	  .tcp_flags = TH_SYN }, tcp_doff_15, MALFORMED },
	{ "udp length 7", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4), .payload_len = 8 }, udp_len_7,
	  MALFORMED },
	{ "udp length past the ip packet", { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4),
	  .payload_len = 8, .pad_to = 80 }, udp_len_past_packet, MALFORMED },
	{ "ipv6 payload length past the frame", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6),
	  .tcp_flags = TH_SYN }, plen_past_frame, MALFORMED },
	{ "ipv6 payload length ending inside an extension header", { V6(HC_BPFNET_NODE6),
	  TCP(SVC_TCP6), .tcp_flags = TH_SYN, .ext = "h" }, plen_cuts_ext, MALFORMED },
	{ "ipv6 payload length ending inside the tcp header", { V6(HC_BPFNET_NODE6),
	  TCP(SVC_TCP6), .tcp_flags = TH_SYN, .pad_to = 100 }, plen_cuts_l4, MALFORMED },
	{ "ipv6 hop-by-hop length past the packet", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6),
	  .tcp_flags = TH_SYN, .ext = "h" }, hbh_2k, MALFORMED },
	{ "ipv6 ethertype with ip version 4", { V6(HC_BPFNET_NODE6), TCP(SVC_TCP6),
	  .tcp_flags = TH_SYN }, ip6_version_4, MALFORMED },
};

/* A table case run against one program. */
struct case_run {
	const struct xdp_case *c;
	const struct prog_under_test *prog;
};

static void test_case(void **state)
{
	const struct case_run *run = *state;
	const struct xdp_case *c = run->c;
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX], want[HC_PKT_MAX];
	struct hc_pktinfo info;
	size_t len, out_len, want_len;
	struct hc_wl_stats st;
	uint64_t t0, t1;
	int n, verdict;

	REQUIRE_ENV();
	env.cur = run->prog;
	reset_maps();
	n = hc_pkt_build(&c->in, in, sizeof(in), &info);
	assert_true(n > 0);
	len = (size_t)n;
	if (c->mangle)
		c->mangle(in, &len, &info);
	else
		expect_csums("input", in, len);

	t0 = now_ns();
	verdict = xdp_run(in, len, out, &out_len);
	t1 = now_ns();
	expect_verdict(verdict, c->verdict);

	if (c->out == OUT_SAME) {
		expect_frame("output", out, out_len, in, len);
		assert_int_equal(hc_bpfnet_map_count(env.conntrack, sizeof(struct hc_ct_key)), 0);
	} else {
		want_len = build_dnat(&c->in, c->out, c->backend, c->backend_port, want);
		expect_frame("output", out, out_len, want, want_len);
		expect_csums("output", out, out_len);
		expect_conntrack(&c->in, c->backend, c->backend_port, 0, t0, t1);
	}
	expect_drops(env.drops, c->drop, 1);
	/* XDP counts what it redirects into a veth, which skips the veth's TC;
	 * after a TC redirect the veth's own egress program counts. */
	st = wl_stats();
	assert_int_equal(st.rx_packets, c->out == OUT_DNAT && !env.cur->tc);
	assert_int_equal(st.rx_bytes, c->out == OUT_DNAT && !env.cur->tc ? out_len : 0);
	assert_int_equal(st.tx_packets + st.tx_bytes + st.dropped_packets + st.dropped_bytes, 0);
}

/* ---- beyond the table ---- */

/* A translated UDP checksum that comes to zero must go out as 0xffff, since
 * zero means "no checksum". The payload is chosen so that the output's
 * checksum is exactly zero before that rule. */
static void test_udp_checksum_computing_to_zero(void **state)
{
	uint8_t payload[16] = { 0 }, in[HC_PKT_MAX], out[HC_PKT_MAX], want[HC_PKT_MAX];
	struct hc_pktspec spec = { V4(HC_BPFNET_NODE4), UDP(SVC_UDP4), .payload = payload,
				   .payload_len = sizeof(payload) };
	struct hc_pktinfo info;
	size_t want_len, out_len;
	int len;

	REQUIRE_ENV();
	env.cur = *state;
	reset_maps();
	assert_true(hc_pkt_build(&spec, in, sizeof(in), &info) > 0);
	build_dnat(&spec, OUT_DNAT, HC_BPFNET_BACKEND4, 5353, want);
	/* Adding the checksum to the sum it complements makes the sum 0xffff;
	 * the payload starts at an even offset of the UDP header. */
	memcpy(payload, want + info.csum_off, 2);
	want_len = build_dnat(&spec, OUT_DNAT, HC_BPFNET_BACKEND4, 5353, want);
	assert_int_equal(want[info.csum_off], 0xff);
	assert_int_equal(want[info.csum_off + 1], 0xff);
	len = hc_pkt_build(&spec, in, sizeof(in), NULL);
	assert_true(len > 0);
	expect_verdict(xdp_run(in, (size_t)len, out, &out_len), XDP_REDIRECT);
	expect_frame("output", out, out_len, want, want_len);
	expect_csums("output", out, out_len);
}

/* The shortest frame the kernel test-runs: an Ethernet header; for an skb
 * whose EtherType is IPv4 or IPv6 (untagged), also the fixed IP header. */
static int shortest_run(const struct hc_pktspec *spec, const struct hc_pktinfo *info)
{
	if (!env.cur->tc || spec->vlan[0].tpid)
		return ETH_HLEN;
	return info->l3_off + (strchr(spec->dst, ':') ? 40 : 20);
}

/* Every prefix of a valid frame (every header boundary and every byte in
 * between) passes untouched and is counted malformed; the whole frame is
 * translated, so the prefixes fail only for being short. The kernel refuses
 * to test-run frames shorter than an Ethernet header (no driver hands XDP
 * one either), and IP skbs without their fixed IP header: those lengths
 * must be refused, not run. */
static void test_every_prefix_passes(void **state)
{
	static const struct hc_pktspec frames[] = {
		{ V4(HC_BPFNET_NODE4), TCP(SVC_TCP4), .tcp_flags = TH_SYN, .ip_optlen = 8,
		  .tcp_optlen = 8, .payload_len = 5 },
		{ V4(HC_BPFNET_NODE4), UDP(SVC_UDP4), QINQ, .payload_len = 3 },
		{ V6(HC_BPFNET_NODE6), UDP(SVC_UDP6), .ext = "hd", .payload_len = 3 },
		{ V6(HC_BPFNET_NODE6), TCP(SVC_TCP6), TAG1, .ext = "r", .tcp_flags = TH_SYN,
		  .tcp_optlen = 4 },
	};
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	struct hc_pktinfo info;
	size_t out_len;

	REQUIRE_ENV();
	env.cur = *state;
	for (size_t f = 0; f < sizeof(frames) / sizeof(frames[0]); f++) {
		int len = hc_pkt_build(&frames[f], in, sizeof(in), &info), refused = 0, min_len;
		struct hc_wl_stats st;

		assert_true(len > 0);
		min_len = shortest_run(&frames[f], &info);
		reset_maps();
		for (int cut = 0; cut < len; cut++) {
			int verdict, err = xdp_try(in, (size_t)cut, out, &out_len, &verdict);

			if (cut < min_len && err == -EINVAL) {
				refused++;
				continue;
			}
			if (err)
				fail_msg("frame %zu cut to %d bytes: test run: %s", f, cut,
					 strerror(-err));
			if (verdict != XDP_PASS)
				fail_msg("frame %zu cut to %d of %d bytes: %s", f, cut, len,
					 verdict_name(verdict));
			expect_frame("prefix", out, out_len, in, (size_t)cut);
		}
		print_message("# %s: frame %zu: %d prefixes run, %d shorter than %d bytes "
			      "refused by the kernel\n", env.cur->name, f, len - refused, refused,
			      min_len);
		expect_drops(env.drops, HC_DROP_MALFORMED, (uint64_t)(len - refused));
		assert_int_equal(hc_bpfnet_map_count(env.conntrack, sizeof(struct hc_ct_key)), 0);
		st = wl_stats();
		assert_int_equal(st.rx_packets, 0);
		expect_verdict(xdp_run(in, (size_t)len, out, &out_len), XDP_REDIRECT);
	}
}

/* Runs flow `sport` to SVC_SPREAD; returns the last byte of the backend
 * address it was sent to (after checking the frame is a proper DNAT). */
static int spread_flow(uint16_t sport)
{
	struct hc_pktspec spec = { V4(HC_BPFNET_NODE4), .proto = IPPROTO_TCP, .sport = sport,
				   .dport = SVC_SPREAD, .tcp_flags = TH_ACK };
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX], want[HC_PKT_MAX];
	struct hc_pktinfo info;
	size_t out_len, want_len;
	char backend[16];
	int len;

	len = hc_pkt_build(&spec, in, sizeof(in), &info);
	assert_true(len > 0);
	expect_verdict(xdp_run(in, (size_t)len, out, &out_len), XDP_REDIRECT);
	assert_true(out_len == (size_t)len);
	snprintf(backend, sizeof(backend), "10.244.0.%u", out[info.l3_off + 19]);
	want_len = build_dnat(&spec, OUT_DNAT, backend, 8080, want);
	expect_frame("output", out, out_len, want, want_len);
	return out[info.l3_off + 19];
}

/* The forward conntrack entry of a spread flow: its backend index. */
static int spread_ct_idx(uint16_t sport)
{
	struct hc_ct_key key = { .proto = IPPROTO_TCP };
	struct hc_ct_val val;

	hc_bpfnet_addr(HC_BPFNET_CLIENT4, &key.saddr);
	hc_bpfnet_addr(HC_BPFNET_NODE4, &key.daddr);
	key.sport = htons(sport);
	key.dport = htons(SVC_SPREAD);
	if (bpf_map_lookup_elem(env.conntrack, &key, &val))
		return -1;
	return val.backend_idx;
}

#define FLOWS 120

/* Rendezvous hashing spreads flows over all backends; removing a backend
 * moves only its own flows; adding one moves none of the flows conntrack
 * knows, and without conntrack moves flows only onto the new backend. */
static void test_backend_spread_and_stickiness(void **state)
{
	static const uint16_t ports[] = { 8080, 8080, 8080 };
	const char *const b234[] = { "10.244.0.2", "10.244.0.3", "10.244.0.4" };
	const char *const b24[] = { "10.244.0.2", "10.244.0.4" };
	const char *const b245[] = { "10.244.0.2", "10.244.0.4", "10.244.0.5" };
	int first[FLOWS], second[FLOWS], per[8] = { 0 }, moved_to[8] = { 0 }, to5 = 0;

	REQUIRE_ENV();
	env.cur = *state;
	reset_maps();

	set_service(SVC_SPREAD, IPPROTO_TCP, b234, ports, 3);
	for (int i = 0; i < FLOWS; i++) {
		first[i] = spread_flow((uint16_t)(20000 + i));
		assert_in_range(first[i], 2, 4);
		per[first[i]]++;
	}
	print_message("# spread over .2 .3 .4: %d %d %d\n", per[2], per[3], per[4]);
	for (int b = 2; b <= 4; b++)
		assert_true(per[b] >= FLOWS / 3 / 2); /* each gets its share, roughly */
	assert_int_equal(hc_bpfnet_map_count(env.conntrack, sizeof(struct hc_ct_key)), 2 * FLOWS);
	/* The same flows again: same backends. */
	for (int i = 0; i < FLOWS; i++)
		assert_int_equal(spread_flow((uint16_t)(20000 + i)), first[i]);

	/* .3 goes away; .4 moves from index 2 to 1. */
	set_service(SVC_SPREAD, IPPROTO_TCP, b24, ports, 2);
	for (int i = 0; i < FLOWS; i++) {
		second[i] = spread_flow((uint16_t)(20000 + i));
		if (first[i] != 3)
			assert_int_equal(second[i], first[i]);
		else
			moved_to[second[i]]++;
		assert_int_equal(spread_ct_idx((uint16_t)(20000 + i)), second[i] == 2 ? 0 : 1);
	}
	print_message("# flows of .3 moved to .2 .4: %d %d\n", moved_to[2], moved_to[4]);
	assert_int_equal(moved_to[2] + moved_to[4], per[3]);
	assert_true(moved_to[2] > 0 && moved_to[4] > 0);
	/* Rendezvous alone gives the same answer: conntrack is not what kept
	 * the other flows in place. */
	assert_int_equal(hc_bpfnet_map_clear(env.conntrack, sizeof(struct hc_ct_key)), 0);
	for (int i = 0; i < FLOWS; i++)
		assert_int_equal(spread_flow((uint16_t)(20000 + i)), second[i]);

	/* .5 arrives: flows conntrack knows stay where they are ... */
	set_service(SVC_SPREAD, IPPROTO_TCP, b245, ports, 3);
	for (int i = 0; i < FLOWS; i++)
		assert_int_equal(spread_flow((uint16_t)(20000 + i)), second[i]);
	/* ... while new flows (the same tuples, forgotten) move only to .5. */
	assert_int_equal(hc_bpfnet_map_clear(env.conntrack, sizeof(struct hc_ct_key)), 0);
	for (int i = 0; i < FLOWS; i++) {
		int b = spread_flow((uint16_t)(20000 + i));

		if (b == 5)
			to5++;
		else
			assert_int_equal(b, second[i]);
	}
	print_message("# flows moved to the new .5: %d of %d\n", to5, FLOWS);
	assert_true(to5 >= FLOWS / 3 / 2 && to5 <= FLOWS / 2);
	expect_drops(env.drops, HC_DROP_NONE, 0);
}

/* A conntrack entry naming a backend the hash would not choose is obeyed:
 * what keeps flows sticky is conntrack, checked directly. */
/* An established flow reuses the next hop its forward entry remembers while
 * the workload recorded at that veth still has the backend's address: a
 * changed neighbour entry is not seen until the record goes. */
static void test_established_flow_keeps_its_next_hop(void **state)
{
	struct hc_pktspec spec = { V4(HC_BPFNET_NODE4), .proto = IPPROTO_TCP, .sport = 34567,
				   .dport = SVC_SPREAD, .tcp_flags = TH_ACK };
	static const uint8_t old_mac[6] = { 2, 0, 0, 0, 2, 2 }, new_mac[6] = { 2, 0, 0, 0, 2, 0x99 };
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;
	int wl_fd = bpf_map__fd(env.skel->maps.hc_workloads);
	struct hc_wl_info wl = { .id = "w" };
	struct hc_ct_key key = { .proto = IPPROTO_TCP };
	struct hc_ct_val val;
	struct hc_pktinfo info;
	size_t out_len;
	int len;

	REQUIRE_ENV();
	env.cur = *state;
	reset_maps();
	set_service1(SVC_SPREAD, IPPROTO_TCP, HC_BPFNET_BACKEND4, 8080);
	assert_int_equal(hc_bpfnet_addr(HC_BPFNET_BACKEND4, &wl.addr), 0);
	assert_int_equal(bpf_map_update_elem(wl_fd, &ifindex, &wl, BPF_ANY), 0);
	len = hc_pkt_build(&spec, in, sizeof(in), &info);
	assert_true(len > 0);

	expect_verdict(xdp_run(in, (size_t)len, out, &out_len), XDP_REDIRECT);
	assert_memory_equal(out, old_mac, 6);
	hc_bpfnet_addr(HC_BPFNET_CLIENT4, &key.saddr);
	hc_bpfnet_addr(HC_BPFNET_NODE4, &key.daddr);
	key.sport = htons(34567);
	key.dport = htons(SVC_SPREAD);
	assert_int_equal(bpf_map_lookup_elem(env.conntrack, &key, &val), 0);
	assert_int_equal(val.hop_ifindex, ifindex);
	assert_memory_equal(val.hop_dmac, old_mac, 6);

	assert_int_equal(system("ip neigh replace " HC_BPFNET_BACKEND4 " lladdr 02:00:00:00:02:99 "
				"dev " HC_BPFNET_WL " nud permanent"), 0);
	expect_verdict(xdp_run(in, (size_t)len, out, &out_len), XDP_REDIRECT);
	assert_memory_equal(out, old_mac, 6); /* remembered */

	assert_int_equal(bpf_map_delete_elem(wl_fd, &ifindex), 0);
	expect_verdict(xdp_run(in, (size_t)len, out, &out_len), XDP_REDIRECT);
	assert_memory_equal(out, new_mac, 6); /* asked the FIB again */
	assert_int_equal(bpf_map_lookup_elem(env.conntrack, &key, &val), 0);
	assert_memory_equal(val.hop_dmac, new_mac, 6);

	assert_int_equal(system("ip neigh replace " HC_BPFNET_BACKEND4 " lladdr 02:00:00:00:02:02 "
				"dev " HC_BPFNET_WL " nud permanent"), 0);
}

static void test_conntrack_entry_decides(void **state)
{
	static const uint16_t ports[] = { 8080, 8080, 8080 };
	const char *const b234[] = { "10.244.0.2", "10.244.0.3", "10.244.0.4" };
	struct hc_ct_key key = { .proto = IPPROTO_TCP };
	struct hc_ct_val val = { .dir = HC_CT_FORWARD, .port = htons(8080) };
	int chosen, other;

	REQUIRE_ENV();
	env.cur = *state;
	reset_maps();
	set_service(SVC_SPREAD, IPPROTO_TCP, b234, ports, 3);
	chosen = spread_flow(33333);
	other = chosen == 2 ? 3 : 2;

	hc_bpfnet_addr(HC_BPFNET_CLIENT4, &key.saddr);
	hc_bpfnet_addr(HC_BPFNET_NODE4, &key.daddr);
	key.sport = htons(33333);
	key.dport = htons(SVC_SPREAD);
	hc_bpfnet_addr(b234[other - 2], &val.addr);
	val.backend_idx = (uint8_t)(other - 2);
	assert_int_equal(bpf_map_update_elem(env.conntrack, &key, &val, BPF_ANY), 0);
	assert_int_equal(spread_flow(33333), other);

	/* An entry whose index no longer holds its backend is not trusted. */
	val.backend_idx = (uint8_t)(chosen - 2);
	assert_int_equal(bpf_map_update_elem(env.conntrack, &key, &val, BPF_ANY), 0);
	assert_int_equal(spread_flow(33333), chosen);
	assert_int_equal(spread_ct_idx(33333), chosen - 2);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	struct hc_ipaddr a;
	uint8_t one = 1;
	int err;

	(void)state;
	if (hc_bpfnet_enter(&env.net, env.skip, sizeof(env.skip)))
		return 0;
	env.skel = hc_xdp__open();
	env.tc = hc_tc__open();
	if (!env.skel || !env.tc) {
		snprintf(env.broken, sizeof(env.broken), "opening the skeletons: %s",
			 strerror(errno));
		return 0;
	}
	hc_bpfnet_unpin(env.skel->obj);
	hc_bpfnet_unpin(env.tc->obj);
	err = hc_xdp__load(env.skel);
	if (err) {
		/* The verifier's log went to stderr through libbpf. */
		snprintf(env.broken, sizeof(env.broken), "hc_xdp__load: %s", strerror(-err));
		return 0;
	}
	err = hc_bpfnet_share_maps(env.skel->obj, env.tc->obj);
	if (err) {
		snprintf(env.broken, sizeof(env.broken), "sharing the maps: %s", strerror(-err));
		return 0;
	}
	err = hc_tc__load(env.tc);
	if (err) {
		snprintf(env.broken, sizeof(env.broken), "hc_tc__load: %s", strerror(-err));
		return 0;
	}
	progs[0].fd = bpf_program__fd(env.skel->progs.hc_xdp_ingress);
	progs[1].fd = bpf_program__fd(env.tc->progs.hc_tc_uplink);
	env.services = bpf_map__fd(env.skel->maps.hc_services);
	env.conntrack = bpf_map__fd(env.skel->maps.hc_conntrack);
	env.wl_stats = bpf_map__fd(env.skel->maps.hc_wl_stats);
	env.drops = bpf_map__fd(env.skel->maps.hc_drops);
	env.hosts = bpf_map__fd(env.skel->maps.hc_host_addrs);

	hc_bpfnet_addr(HC_BPFNET_NODE4, &a);
	bpf_map_update_elem(env.hosts, &a, &one, BPF_ANY);
	hc_bpfnet_addr(HC_BPFNET_NODE6, &a);
	bpf_map_update_elem(env.hosts, &a, &one, BPF_ANY);
	set_service1(SVC_TCP4, IPPROTO_TCP, HC_BPFNET_BACKEND4, 8080);
	set_service1(SVC_TCP6, IPPROTO_TCP, HC_BPFNET_BACKEND6, 8080);
	set_service1(SVC_UDP4, IPPROTO_UDP, HC_BPFNET_BACKEND4, 5353);
	set_service1(SVC_UDP6, IPPROTO_UDP, HC_BPFNET_BACKEND6, 5353);
	set_service1(SVC_EMPTY, IPPROTO_TCP, NULL, 0);
	set_service1(SVC_NO_NEIGH4, IPPROTO_TCP, HC_BPFNET_NO_NEIGH4, 8080);
	set_service1(SVC_NO_NEIGH6, IPPROTO_UDP, HC_BPFNET_NO_NEIGH6, 8080);
	set_service1(SVC_UNROUTED, IPPROTO_TCP, HC_BPFNET_UNROUTED4, 8080);

	/* Test runs with an ingress ifindex in the context arrived in 5.16;
	 * a kernel without them cannot run this suite. */
	{
		uint8_t f[64] = { 0 }, out[128];
		struct xdp_md ctx = { .data_end = sizeof(f),
				      .ingress_ifindex = (uint32_t)env.net.uplink_ifindex };
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f, .data_size_in = sizeof(f),
			    .data_out = out, .data_size_out = sizeof(out), .ctx_in = &ctx,
			    .ctx_size_in = sizeof(ctx), .repeat = 1);

		if (bpf_prog_test_run_opts(progs[0].fd, &opts))
			snprintf(env.skip, sizeof(env.skip),
				 "this kernel cannot test-run XDP with an ingress ifindex: %s",
				 strerror(errno));
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hc_tc__destroy(env.tc);
	hc_xdp__destroy(env.skel); /* the namespace goes with the process */
	return 0;
}

#define NPROGS (sizeof(progs) / sizeof(progs[0]))
#define NCASES (sizeof(cases) / sizeof(cases[0]))

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_udp_checksum_computing_to_zero),
		cmocka_unit_test(test_every_prefix_passes),
		cmocka_unit_test(test_backend_spread_and_stickiness),
		cmocka_unit_test(test_conntrack_entry_decides),
		cmocka_unit_test(test_established_flow_keeps_its_next_hop),
	};
	enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]), NTESTS = NPROGS * (NFIXED + NCASES) };
	static struct CMUnitTest tests[NTESTS];
	static struct case_run runs[NPROGS * NCASES];
	static char names[NTESTS][192];
	size_t n = 0;

	/* One TAP line per program and test, fixtures named by their
	 * description: "xdp: <desc>", "tc: <desc>". */
	for (size_t p = 0; p < NPROGS; p++) {
		for (size_t i = 0; i < NFIXED; i++, n++) {
			tests[n] = fixed[i];
			tests[n].initial_state = &progs[p];
			snprintf(names[n], sizeof(names[n]), "%s: %s", progs[p].name, fixed[i].name);
			tests[n].name = names[n];
		}
		for (size_t i = 0; i < NCASES; i++, n++) {
			struct case_run *run = &runs[p * NCASES + i];

			run->c = &cases[i];
			run->prog = &progs[p];
			snprintf(names[n], sizeof(names[n]), "%s: %s", progs[p].name, cases[i].desc);
			tests[n].name = names[n];
			tests[n].test_func = test_case;
			tests[n].initial_state = run;
		}
	}
	return _cmocka_run_group_tests("test_xdp", tests, n, group_setup, group_teardown);
}
