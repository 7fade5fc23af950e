/* hc_tc_from_wl and hc_tc_to_wl under BPF_PROG_TEST_RUN, as on a workload's
 * host-side veth: reverse NAT of replies, guest -> host isolation, the
 * egress rate limit and the counters, from a fixture table and a few
 * sequences; then a request through hc_xdp_ingress and its reply through
 * hc_tc_from_wl over the same maps. Runs as root in a network namespace of
 * its own (tests/lib/bpfnet.h) so that bpf_fib_lookup finds the client. */
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

#define NODE_PORT 30080 /* the node port a reply goes back out as */
#define NODE_PORT6 30081
#define CLIENT_PORT 40000
#define ALLOWED_TCP 8443 /* hc_config.host_allowed */
#define ALLOWED_UDP 53
#define WORKLOAD4 HC_BPFNET_BACKEND4 /* the workload behind hc-wl0 */
#define WORKLOAD6 HC_BPFNET_BACKEND6
#define OTHER_WORKLOAD4 "10.244.0.3"
#define ELSEWHERE4 "192.0.2.10" /* outside the node and the workload net */
#define UNROUTED_CLIENT4 "192.0.2.50"

static struct {
	struct hc_bpfnet net;
	struct hc_xdp *xdp; /* the maps' owner; also runs the round trip */
	struct hc_tc *tc;
	char skip[256];
	char broken[512];
	int from_wl, to_wl, xdp_prog;
	int services, conntrack, wl_stats, drops, hosts, workloads, wl_rate, config;
} env;

#define REQUIRE_ENV() REQUIRE_SETUP(env.skip, env.broken)

/* ---- maps ---- */

static void set_workload(uint32_t flags, uint64_t rate, uint64_t burst)
{
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;
	struct hc_wl_info wl = { .id = "wl-test", .flags = flags, .rate_bytes_per_sec = rate,
				  .burst_bytes = burst };

	assert_int_equal(hc_bpfnet_addr(WORKLOAD4, &wl.addr), 0);
	assert_int_equal(bpf_map_update_elem(env.workloads, &ifindex, &wl, BPF_ANY), 0);
}

static void reset_maps(void)
{
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;

	assert_int_equal(hc_bpfnet_map_clear(env.conntrack, sizeof(struct hc_ct_key)), 0);
	reset_drops(env.drops);
	assert_int_equal(hc_bpfnet_percpu_zero(env.wl_stats, &ifindex, 6), 0);
	assert_int_equal(hc_bpfnet_map_clear(env.wl_rate, sizeof(uint32_t)), 0);
	set_workload(HC_WL_F_ISOLATE, 0, 0);
}

static struct hc_wl_stats wl_stats(void)
{
	return wl_stats_of(env.wl_stats, (uint32_t)env.net.wl_ifindex);
}

static void expect_stats(uint64_t tx, uint64_t tx_bytes, uint64_t dropped,
			 uint64_t dropped_bytes)
{
	struct hc_wl_stats st = wl_stats();

	assert_int_equal(st.tx_packets, tx);
	assert_int_equal(st.tx_bytes, tx_bytes);
	assert_int_equal(st.dropped_packets, dropped);
	assert_int_equal(st.dropped_bytes, dropped_bytes);
	assert_int_equal(st.rx_packets + st.rx_bytes, 0);
}

/* Installs a conntrack entry under the tuple of the frame `in` describes, as
 * XDP would have written it for the reply direction of a flow. */
static void put_conntrack(const struct hc_pktspec *in, const char *node, uint16_t node_port,
			  uint8_t dir)
{
	struct hc_ct_key key = { .proto = in->proto };
	struct hc_ct_val val = { .dir = dir, .port = htons(node_port) };

	assert_int_equal(hc_bpfnet_addr(in->src, &key.saddr), 0);
	assert_int_equal(hc_bpfnet_addr(in->dst, &key.daddr), 0);
	key.sport = htons(in->sport);
	key.dport = htons(in->dport);
	assert_int_equal(hc_bpfnet_addr(node, &val.addr), 0);
	assert_int_equal(bpf_map_update_elem(env.conntrack, &key, &val, BPF_ANY), 0);
}

/* ---- running the programs ---- */

/* Runs a TC program once on frame as sent by the workload behind hc-wl0 (or
 * delivered to it); out gets the frame as left (HC_PKT_MAX bytes at most).
 * Returns 0 with the verdict, or -errno from the kernel. */
static int tc_try(int prog, const uint8_t *frame, size_t len, uint8_t *out, size_t *out_len,
		  int *verdict)
{
	struct __sk_buff ctx = { .ifindex = (uint32_t)env.net.wl_ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (uint32_t)len,
		    .data_out = out, .data_size_out = HC_PKT_MAX, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = 1);

	if (bpf_prog_test_run_opts(prog, &opts))
		return -errno;
	*out_len = opts.data_size_out;
	*verdict = (int)opts.retval;
	return 0;
}

static int tc_run(int prog, const uint8_t *frame, size_t len, uint8_t *out, size_t *out_len)
{
	int verdict, err = tc_try(prog, frame, len, out, out_len, &verdict);

	if (err)
		fail_msg("BPF_PROG_TEST_RUN on %zu bytes: %s", len, strerror(-err));
	return verdict;
}

static const char *verdict_name(int v)
{
	switch (v) {
	case TC_ACT_OK:
		return "TC_ACT_OK";
	case TC_ACT_SHOT:
		return "TC_ACT_SHOT";
	case TC_ACT_REDIRECT:
		return "TC_ACT_REDIRECT";
	default:
		return "?";
	}
}

static void expect_verdict(int got, int want)
{
	if (got != want)
		fail_msg("verdict %s (%d), want %s", verdict_name(got), got, verdict_name(want));
}

/* The reply `in` with its source translated back to node:port. The MACs stay:
 * bpf_redirect_neigh fills them in when the frame leaves. */
static size_t build_snat(const struct hc_pktspec *in, const char *node, uint16_t port,
			 uint8_t *out)
{
	struct hc_pktspec want = *in;
	int n;

	want.src = node;
	want.sport = port;
	n = hc_pkt_build(&want, out, HC_PKT_MAX, NULL);
	assert_true(n > 0);
	return (size_t)n;
}

/* ---- the fixture table ---- */

enum out_kind {
	OUT_SAME, /* the frame comes out as it went in */
	OUT_SNAT, /* source -> node address and port of the conntrack entry */
	OUT_ANY, /* dropped after rewriting began: the bytes do not matter */
};

struct tc_case {
	const char *desc;
	struct hc_pktspec in;
	/* A conntrack entry under the frame's own tuple, if node is set. */
	struct {
		const char *node;
		uint16_t port;
		uint8_t dir;
	} ct;
	uint32_t wl_flags_clear; /* HC_WL_F_* the workload does not have here */
	int verdict;
	enum out_kind out;
	enum hc_drop_reason drop; /* counted once; all other reasons stay 0 */
};

#define WIRE .eth_dst = HC_BPFNET_WL_MAC, .eth_src = "02:00:00:00:02:02"
#define V4(d) WIRE, .src = WORKLOAD4, .dst = (d)
#define V6(d) WIRE, .src = WORKLOAD6, .dst = (d)
#define TCP(sp, dp) .proto = IPPROTO_TCP, .sport = (sp), .dport = (dp)
#define UDP(sp, dp) .proto = IPPROTO_UDP, .sport = (sp), .dport = (dp)
#define ICMP(t) .proto = IPPROTO_ICMP, .icmp_type = (t), .payload_len = 56
#define ICMP6(t) .proto = IPPROTO_ICMPV6, .icmp_type = (t), .payload_len = 24
#define REPLY4 .ct = { HC_BPFNET_NODE4, NODE_PORT, HC_CT_REPLY }
#define REPLY6 .ct = { HC_BPFNET_NODE6, NODE_PORT6, HC_CT_REPLY }
#define SNATTED .verdict = TC_ACT_REDIRECT, .out = OUT_SNAT
#define PASSED .verdict = TC_ACT_OK, .out = OUT_SAME
#define REFUSED .verdict = TC_ACT_SHOT, .out = OUT_SAME, .drop = HC_DROP_ISOLATION

static void tot_len_cuts_l4(uint8_t *f, const struct hc_pktinfo *i)
{
	f[i->l3_off + 2] = 0;
	f[i->l3_off + 3] = (uint8_t)(i->l4_off - i->l3_off + 10);
}

static const struct tc_case cases[] = {
	/* Reverse NAT of replies to node-port clients. */
	{ "tcp4 reply: source back to node address and port, redirected",
	  { V4(HC_BPFNET_CLIENT4), TCP(8080, CLIENT_PORT), .tcp_flags = TH_SYN | TH_ACK }, REPLY4,
	  0, SNATTED },
	{ "tcp4 reply with options and payload", { V4(HC_BPFNET_CLIENT4), TCP(8080, CLIENT_PORT),
	  .tcp_flags = TH_ACK | TH_PUSH, .tcp_optlen = 12, .payload_len = 777 }, REPLY4, 0,
	  SNATTED },
	{ "udp4 reply", { V4(HC_BPFNET_CLIENT4), UDP(5353, CLIENT_PORT), .payload_len = 48 },
	  REPLY4, 0, SNATTED },
	{ "udp4 reply without checksum keeps it zero", { V4(HC_BPFNET_CLIENT4),
	  UDP(5353, CLIENT_PORT), .payload_len = 48, .udp_nocsum = true }, REPLY4, 0, SNATTED },
	{ "tcp6 reply", { V6(HC_BPFNET_CLIENT6), TCP(8080, CLIENT_PORT),
	  .tcp_flags = TH_SYN | TH_ACK }, REPLY6, 0, SNATTED },
	{ "udp6 reply", { V6(HC_BPFNET_CLIENT6), UDP(5353, CLIENT_PORT), .payload_len = 99 },
	  REPLY6, 0, SNATTED },
	{ "tcp4 reply without conntrack entry passes untouched", { V4(HC_BPFNET_CLIENT4),
	  TCP(8080, CLIENT_PORT), .tcp_flags = TH_ACK }, { 0 }, 0, PASSED },
	{ "forward entry under the reply tuple is not a reply entry", { V4(HC_BPFNET_CLIENT4),
	  TCP(8080, CLIENT_PORT), .tcp_flags = TH_ACK },
	  { HC_BPFNET_NODE4, NODE_PORT, HC_CT_FORWARD }, 0, PASSED },
	{ "reply to a client without route: dropped, FIB counted", { V4(UNROUTED_CLIENT4),
	  TCP(8080, CLIENT_PORT), .tcp_flags = TH_ACK }, REPLY4, 0, .verdict = TC_ACT_SHOT,
	  .out = OUT_ANY, .drop = HC_DROP_FIB },

	/* Isolation: what the workload may reach. */
	{ "tcp syn to the node: dropped", { V4(HC_BPFNET_NODE4), TCP(33000, 22),
	  .tcp_flags = TH_SYN }, { 0 }, 0, REFUSED },
	{ "tcp syn to the node's address on the workload veth: dropped", { V4(HC_BPFNET_WL_GW4),
	  TCP(33000, 22), .tcp_flags = TH_SYN }, { 0 }, 0, REFUSED },
	{ "tcp6 syn to the node: dropped", { V6(HC_BPFNET_NODE6), TCP(33000, 22),
	  .tcp_flags = TH_SYN }, { 0 }, 0, REFUSED },
	{ "tcp syn to an allowed node port passes", { V4(HC_BPFNET_NODE4),
	  TCP(33000, ALLOWED_TCP), .tcp_flags = TH_SYN }, { 0 }, 0, PASSED },
	{ "udp to an allowed node port passes", { V4(HC_BPFNET_WL_GW4), UDP(33000, ALLOWED_UDP),
	  .payload_len = 30 }, { 0 }, 0, PASSED },
	{ "tcp ack to the node passes (host-opened connection)", { V4(HC_BPFNET_NODE4),
	  TCP(33000, 22), .tcp_flags = TH_ACK }, { 0 }, 0, PASSED },
	{ "tcp syn-ack to the node passes", { V4(HC_BPFNET_NODE4), TCP(8080, 51000),
	  .tcp_flags = TH_SYN | TH_ACK }, { 0 }, 0, PASSED },
	{ "udp to the node: dropped", { V4(HC_BPFNET_NODE4), UDP(33000, 9999),
	  .payload_len = 10 }, { 0 }, 0, REFUSED },
	{ "udp to the allowed tcp port: dropped", { V4(HC_BPFNET_NODE4), UDP(33000, ALLOWED_TCP),
	  .payload_len = 10 }, { 0 }, 0, REFUSED },
	{ "icmp echo request to the node: dropped", { V4(HC_BPFNET_NODE4), ICMP(8) }, { 0 }, 0,
	  REFUSED },
	{ "icmp echo reply to the node passes", { V4(HC_BPFNET_NODE4), ICMP(0) }, { 0 }, 0,
	  PASSED },
	{ "icmp port unreachable to the node passes", { V4(HC_BPFNET_NODE4), ICMP(3),
	  .icmp_code = 3 }, { 0 }, 0, PASSED },
	{ "icmpv6 echo request to the node: dropped", { V6(HC_BPFNET_WL_GW6), ICMP6(128) },
	  { 0 }, 0, REFUSED },
	{ "icmpv6 neighbour solicitation to the node passes", { V6(HC_BPFNET_WL_GW6),
	  ICMP6(135) }, { 0 }, 0, PASSED },
	{ "icmpv6 neighbour solicitation to its multicast group passes", { V6("ff02::1:ff00:1"),
	  ICMP6(135) }, { 0 }, 0, PASSED },
	{ "ipv4 fragment to the node: dropped", { V4(HC_BPFNET_NODE4), UDP(33000, 9999),
	  .frag = 0x2000, .payload_len = 64 }, { 0 }, 0, REFUSED },
	{ "tcp syn to another workload: dropped", { V4(OTHER_WORKLOAD4), TCP(33000, 80),
	  .tcp_flags = TH_SYN }, { 0 }, 0, REFUSED },
	{ "udp to another workload: dropped", { V4(OTHER_WORKLOAD4), UDP(33000, 53),
	  .payload_len = 10 }, { 0 }, 0, REFUSED },
	{ "tcp syn to its own address passes", { V4(WORKLOAD4), TCP(33000, 80),
	  .tcp_flags = TH_SYN }, { 0 }, 0, PASSED },
	{ "tcp syn elsewhere passes", { V4(ELSEWHERE4), TCP(33000, 443), .tcp_flags = TH_SYN },
	  { 0 }, 0, PASSED },
	{ "udp elsewhere passes", { V4(ELSEWHERE4), UDP(33000, 53), .payload_len = 40 }, { 0 },
	  0, PASSED },
	{ "tcp6 syn elsewhere passes", { V6("2001:db8:999::1"), TCP(33000, 443),
	  .tcp_flags = TH_SYN }, { 0 }, 0, PASSED },
	{ "arp request for the node passes", { WIRE, .eth_proto = ETH_P_ARP, .arp_spa = WORKLOAD4,
	  .arp_tpa = HC_BPFNET_WL_GW4 }, { 0 }, 0, PASSED },
	{ "tcp syn to the node from a workload without isolation passes", { V4(HC_BPFNET_NODE4),
	  TCP(33000, 22), .tcp_flags = TH_SYN }, { 0 }, HC_WL_F_ISOLATE, PASSED },
};

/* Cases whose frame is broken after building: the same table shape. */
struct tc_mangled_case {
	struct tc_case c;
	void (*mangle)(uint8_t *f, const struct hc_pktinfo *info);
};

static const struct tc_mangled_case mangled[] = {
	/* The stack drops it (the TCP header is not in the packet): isolation
	 * has nothing to refuse. */
	{ { "malformed tcp syn to the node goes to the stack", { V4(HC_BPFNET_NODE4),
	    TCP(33000, 22), .tcp_flags = TH_SYN, .pad_to = 80 }, { 0 }, 0, PASSED },
	  tot_len_cuts_l4 },
	{ { "malformed reply is not translated", { V4(HC_BPFNET_CLIENT4), TCP(8080, CLIENT_PORT),
	    .tcp_flags = TH_ACK, .pad_to = 80 }, REPLY4, 0, PASSED }, tot_len_cuts_l4 },
};

static void run_case(const struct tc_case *c, void (*mangle)(uint8_t *, const struct hc_pktinfo *))
{
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX], want[HC_PKT_MAX];
	struct hc_pktinfo info;
	size_t out_len, want_len;
	int n, verdict;

	reset_maps();
	if (c->wl_flags_clear)
		set_workload(HC_WL_F_ISOLATE & ~c->wl_flags_clear, 0, 0);
	if (c->ct.node)
		put_conntrack(&c->in, c->ct.node, c->ct.port, c->ct.dir);
	n = hc_pkt_build(&c->in, in, sizeof(in), &info);
	assert_true(n > 0);
	if (mangle)
		mangle(in, &info);
	else
		expect_csums("input", in, (size_t)n);

	verdict = tc_run(env.from_wl, in, (size_t)n, out, &out_len);
	expect_verdict(verdict, c->verdict);
	if (c->out == OUT_SAME) {
		expect_frame("output", out, out_len, in, (size_t)n);
	} else if (c->out == OUT_SNAT) {
		want_len = build_snat(&c->in, c->ct.node, c->ct.port, want);
		expect_frame("output", out, out_len, want, want_len);
		expect_csums("output", out, out_len);
	}
	expect_drops(env.drops, c->drop, 1);
	if (c->verdict == TC_ACT_SHOT && c->drop != HC_DROP_FIB)
		expect_stats(0, 0, 1, (uint64_t)n);
	else
		expect_stats(1, (uint64_t)n, 0, 0);
	/* The programs never write conntrack from this side. */
	assert_int_equal(hc_bpfnet_map_count(env.conntrack, sizeof(struct hc_ct_key)),
			 c->ct.node ? 1 : 0);
}

static void test_case(void **state)
{
	REQUIRE_ENV();
	run_case(*state, NULL);
}

static void test_mangled_case(void **state)
{
	const struct tc_mangled_case *m = *state;

	REQUIRE_ENV();
	run_case(&m->c, m->mangle);
}

/* ---- beyond the table ---- */

/* Every prefix of a reply the conntrack knows passes untranslated (and
 * every prefix of a SYN to the node too: the stack drops broken frames).
 * The kernel refuses to test-run an skb shorter than an Ethernet header, or
 * an untagged IPv4/IPv6 one shorter than its IP header (it reads that for
 * the test socket): those lengths must be refused, not run. Behind a VLAN
 * tag the kernel does not look, so the tagged frame covers truncated IP
 * headers. */
static void test_every_prefix_passes(void **state)
{
	static const struct hc_pktspec frames[] = {
		{ V4(HC_BPFNET_CLIENT4), TCP(8080, CLIENT_PORT), .tcp_flags = TH_ACK,
		  .tcp_optlen = 8, .payload_len = 3 },
		{ V6(HC_BPFNET_CLIENT6), UDP(5353, CLIENT_PORT), .ext = "h", .payload_len = 3 },
		{ V4(HC_BPFNET_NODE4), TCP(33000, 22), .tcp_flags = TH_SYN },
		{ V4(HC_BPFNET_CLIENT4), UDP(5353, CLIENT_PORT), .vlan = { { ETH_P_8021Q, 7 } },
		  .payload_len = 3 },
		{ V6(HC_BPFNET_CLIENT6), TCP(8080, CLIENT_PORT), .vlan = { { ETH_P_8021Q, 7 } },
		  .tcp_flags = TH_ACK, .ext = "r" },
	};
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	size_t out_len;

	(void)state;
	REQUIRE_ENV();
	for (size_t f = 0; f < sizeof(frames) / sizeof(frames[0]); f++) {
		int len = hc_pkt_build(&frames[f], in, sizeof(in), NULL), refused = 0;
		int min_run = frames[f].vlan[0].tpid ? ETH_HLEN :
			      strchr(frames[f].src, ':') ? ETH_HLEN + 40 : ETH_HLEN + 20;
		struct hc_wl_stats st;

		assert_true(len > 0);
		reset_maps();
		put_conntrack(&frames[f], strchr(frames[f].src, ':') ? HC_BPFNET_NODE6 :
				HC_BPFNET_NODE4, NODE_PORT, HC_CT_REPLY);
		for (int cut = 0; cut < len; cut++) {
			int verdict, err = tc_try(env.from_wl, in, (size_t)cut, out, &out_len,
						  &verdict);

			if (cut < min_run && err == -EINVAL) {
				refused++;
				continue;
			}
			if (err)
				fail_msg("frame %zu cut to %d bytes: test run: %s", f, cut,
					 strerror(-err));
			if (verdict != TC_ACT_OK)
				fail_msg("frame %zu cut to %d of %d bytes: %s", f, cut, len,
					 verdict_name(verdict));
			expect_frame("prefix", out, out_len, in, (size_t)cut);
		}
		print_message("# frame %zu: %d prefixes run, %d shorter than %d bytes refused "
			      "by the kernel\n", f, len - refused, refused, min_run);
		expect_drops(env.drops, HC_DROP_NONE, 0);
		st = wl_stats();
		assert_int_equal(st.tx_packets, (uint64_t)(len - refused));
		assert_int_equal(st.dropped_packets, 0);
	}
}

/* A translated UDP checksum that comes to zero must leave as 0xffff (zero
 * means "no checksum"): the payload is chosen so that the reply's checksum
 * is exactly zero before that rule. */
static void test_udp_reply_checksum_computing_to_zero(void **state)
{
	uint8_t payload[16] = { 0 }, in[HC_PKT_MAX], out[HC_PKT_MAX], want[HC_PKT_MAX];
	struct hc_pktspec spec = { V4(HC_BPFNET_CLIENT4), UDP(5353, CLIENT_PORT),
				   .payload = payload, .payload_len = sizeof(payload) };
	struct hc_pktinfo info;
	size_t out_len, want_len;
	int n;

	(void)state;
	REQUIRE_ENV();
	reset_maps();
	put_conntrack(&spec, HC_BPFNET_NODE4, NODE_PORT, HC_CT_REPLY);
	assert_true(hc_pkt_build(&spec, in, sizeof(in), &info) > 0);
	build_snat(&spec, HC_BPFNET_NODE4, NODE_PORT, want);
	/* Adding the checksum to the sum it complements makes the sum 0xffff;
	 * the payload starts at an even offset of the UDP header. */
	memcpy(payload, want + info.csum_off, 2);
	want_len = build_snat(&spec, HC_BPFNET_NODE4, NODE_PORT, want);
	assert_int_equal(want[info.csum_off], 0xff);
	assert_int_equal(want[info.csum_off + 1], 0xff);
	n = hc_pkt_build(&spec, in, sizeof(in), NULL);
	assert_true(n > 0);
	expect_verdict(tc_run(env.from_wl, in, (size_t)n, out, &out_len), TC_ACT_REDIRECT);
	expect_frame("output", out, out_len, want, want_len);
	expect_csums("output", out, out_len);
}

/* The egress token bucket: a burst of three frames passes, the rest of a
 * quick run is dropped and counted; a second of (simulated) quiet refills
 * exactly one second's worth, since the refill is capped there. */
static void test_rate_limit(void **state)
{
	struct hc_pktspec spec = { V4(ELSEWHERE4), UDP(33000, 9000), .payload_len = 72 };
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	struct hc_wl_rate bucket = { 0 };
	size_t out_len;
	uint64_t len;
	int n;

	(void)state;
	REQUIRE_ENV();
	reset_maps();
	n = hc_pkt_build(&spec, in, sizeof(in), NULL);
	assert_true(n > 0);
	len = (uint64_t)n;

	/* 1 byte/s: nothing refills within the test's milliseconds. */
	set_workload(HC_WL_F_ISOLATE, 1, 3 * len);
	bucket.tokens = 3 * len;
	bucket.last_ns = now_ns();
	assert_int_equal(bpf_map_update_elem(env.wl_rate, &ifindex, &bucket, BPF_ANY), 0);
	for (int i = 0; i < 5; i++)
		expect_verdict(tc_run(env.from_wl, in, len, out, &out_len),
			       i < 3 ? TC_ACT_OK : TC_ACT_SHOT);
	expect_drops(env.drops, HC_DROP_RATE, 2);
	expect_stats(3, 3 * len, 2, 2 * len);

	/* Two frames' worth per second, the last refill "two seconds" ago. */
	set_workload(HC_WL_F_ISOLATE, 2 * len, 3 * len);
	assert_int_equal(bpf_map_lookup_elem(env.wl_rate, &ifindex, &bucket), 0);
	assert_true(bucket.tokens < len);
	bucket.last_ns = now_ns() - 2000000000ull;
	assert_int_equal(bpf_map_update_elem(env.wl_rate, &ifindex, &bucket, BPF_ANY), 0);
	for (int i = 0; i < 3; i++)
		expect_verdict(tc_run(env.from_wl, in, len, out, &out_len),
			       i < 2 ? TC_ACT_OK : TC_ACT_SHOT);
	expect_drops(env.drops, HC_DROP_RATE, 3);
	expect_stats(5, 5 * len, 3, 3 * len);

	/* Without a bucket entry the limit is not enforced. */
	assert_int_equal(bpf_map_delete_elem(env.wl_rate, &ifindex), 0);
	expect_verdict(tc_run(env.from_wl, in, len, out, &out_len), TC_ACT_OK);
}

/* What the stack delivers to the workload is counted as its rx, untouched;
 * a veth without counters is passed without creating any. */
static void test_to_workload_counts(void **state)
{
	struct hc_pktspec spec = { .eth_dst = "02:00:00:00:02:02", .eth_src = HC_BPFNET_WL_MAC,
				   .src = HC_BPFNET_CLIENT4, .dst = WORKLOAD4,
				   UDP(CLIENT_PORT, 5353), .payload_len = 100 };
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	struct hc_wl_stats st;
	size_t out_len;
	int n;

	(void)state;
	REQUIRE_ENV();
	reset_maps();
	n = hc_pkt_build(&spec, in, sizeof(in), NULL);
	assert_true(n > 0);
	for (int i = 0; i < 2; i++) {
		expect_verdict(tc_run(env.to_wl, in, (size_t)n, out, &out_len), TC_ACT_OK);
		expect_frame("output", out, out_len, in, (size_t)n);
	}
	st = wl_stats();
	assert_int_equal(st.rx_packets, 2);
	assert_int_equal(st.rx_bytes, 2 * (uint64_t)n);
	assert_int_equal(st.tx_packets + st.dropped_packets, 0);

	assert_int_equal(bpf_map_delete_elem(env.wl_stats, &ifindex), 0);
	expect_verdict(tc_run(env.to_wl, in, (size_t)n, out, &out_len), TC_ACT_OK);
	assert_int_equal(hc_bpfnet_map_count(env.wl_stats, sizeof(uint32_t)), 0);
}

/* A client's request through hc_xdp_ingress, then the backend's reply
 * through hc_tc_from_wl, over the same maps: the reply leaves as if the node
 * had answered, which checks that XDP's reply key is the one TC looks up. */
static void round_trip(const char *client, const char *node, uint16_t node_port,
		       const char *backend, uint8_t proto)
{
	struct hc_pktspec req = { .eth_dst = HC_BPFNET_UPLINK_MAC, .eth_src = HC_BPFNET_GW_MAC,
				  .src = client, .dst = node, .proto = proto,
				  .sport = CLIENT_PORT, .dport = node_port,
				  .tcp_flags = TH_SYN, .payload_len = 20 };
	struct hc_pktspec reply = { .eth_dst = HC_BPFNET_WL_MAC, .eth_src = "02:00:00:00:02:02",
				    .src = backend, .dst = client, .proto = proto,
				    .sport = 8080, .dport = CLIENT_PORT,
				    .tcp_flags = TH_SYN | TH_ACK, .payload_len = 20 };
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX], want[HC_PKT_MAX];
	struct xdp_md xctx = { .ingress_ifindex = (uint32_t)env.net.uplink_ifindex };
	size_t out_len, want_len;
	int n;

	reset_maps();
	n = hc_pkt_build(&req, in, sizeof(in), NULL);
	assert_true(n > 0);
	xctx.data_end = (uint32_t)n;
	{
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = (uint32_t)n,
			    .data_out = out, .data_size_out = sizeof(out), .ctx_in = &xctx,
			    .ctx_size_in = sizeof(xctx), .repeat = 1);

		assert_int_equal(bpf_prog_test_run_opts(env.xdp_prog, &opts), 0);
		assert_int_equal(opts.retval, XDP_REDIRECT);
	}
	assert_int_equal(hc_bpfnet_map_count(env.conntrack, sizeof(struct hc_ct_key)), 2);

	n = hc_pkt_build(&reply, in, sizeof(in), NULL);
	assert_true(n > 0);
	expect_verdict(tc_run(env.from_wl, in, (size_t)n, out, &out_len), TC_ACT_REDIRECT);
	want_len = build_snat(&reply, node, node_port, want);
	expect_frame("reply", out, out_len, want, want_len);
	expect_csums("reply", out, out_len);
	expect_drops(env.drops, HC_DROP_NONE, 0);
}

static void test_round_trip_through_xdp_and_tc(void **state)
{
	(void)state;
	REQUIRE_ENV();
	round_trip(HC_BPFNET_CLIENT4, HC_BPFNET_NODE4, NODE_PORT, HC_BPFNET_BACKEND4, IPPROTO_TCP);
	round_trip(HC_BPFNET_CLIENT4, HC_BPFNET_NODE4, NODE_PORT, HC_BPFNET_BACKEND4, IPPROTO_UDP);
	round_trip(HC_BPFNET_CLIENT6, HC_BPFNET_NODE6, NODE_PORT6, HC_BPFNET_BACKEND6, IPPROTO_TCP);
	round_trip(HC_BPFNET_CLIENT6, HC_BPFNET_NODE6, NODE_PORT6, HC_BPFNET_BACKEND6, IPPROTO_UDP);
}

/* ---- setup ---- */

static void set_service(uint16_t port, uint8_t proto, const char *backend)
{
	struct hc_service_key key = { .port = port, .proto = proto };
	struct hc_service_val val = { .count = 1 };

	hc_bpfnet_addr(backend, &val.backends[0].addr);
	val.backends[0].port = 8080;
	bpf_map_update_elem(env.services, &key, &val, BPF_ANY);
}

/* Loads hc_xdp, then hc_tc over hc_xdp's maps, as the agent shares them
 * through pins; nothing is pinned here. Returns 0 or sets env.broken. */
static int load_programs(void)
{
	int err;

	env.xdp = hc_xdp__open();
	env.tc = hc_tc__open();
	if (!env.xdp || !env.tc) {
		snprintf(env.broken, sizeof(env.broken), "opening the skeletons: %s",
			 strerror(errno));
		return -1;
	}
	hc_bpfnet_unpin(env.xdp->obj);
	hc_bpfnet_unpin(env.tc->obj);
	err = hc_xdp__load(env.xdp);
	if (err) {
		snprintf(env.broken, sizeof(env.broken), "hc_xdp__load: %s", strerror(-err));
		return -1;
	}
	err = hc_bpfnet_share_maps(env.xdp->obj, env.tc->obj);
	if (err) {
		snprintf(env.broken, sizeof(env.broken), "sharing the maps: %s", strerror(-err));
		return -1;
	}
	err = hc_tc__load(env.tc);
	if (err) {
		/* The verifier's log went to stderr through libbpf. */
		snprintf(env.broken, sizeof(env.broken), "hc_tc__load: %s", strerror(-err));
		return -1;
	}
	return 0;
}

static int group_setup(void **state)
{
	struct hc_config cfg = { .workload_prefix = HC_BPFNET_WL_PREFIX4 };
	static const char *const hosts[] = { HC_BPFNET_NODE4, HC_BPFNET_NODE6, HC_BPFNET_WL_GW4,
					     HC_BPFNET_WL_GW6 };
	uint32_t zero = 0;
	uint8_t one = 1;

	(void)state;
	if (hc_bpfnet_enter(&env.net, env.skip, sizeof(env.skip)) || load_programs())
		return 0;
	env.from_wl = bpf_program__fd(env.tc->progs.hc_tc_from_wl);
	env.to_wl = bpf_program__fd(env.tc->progs.hc_tc_to_wl);
	env.xdp_prog = bpf_program__fd(env.xdp->progs.hc_xdp_ingress);
	env.services = bpf_map__fd(env.xdp->maps.hc_services);
	env.conntrack = bpf_map__fd(env.xdp->maps.hc_conntrack);
	env.wl_stats = bpf_map__fd(env.xdp->maps.hc_wl_stats);
	env.drops = bpf_map__fd(env.xdp->maps.hc_drops);
	env.hosts = bpf_map__fd(env.xdp->maps.hc_host_addrs);
	env.workloads = bpf_map__fd(env.xdp->maps.hc_workloads);
	env.wl_rate = bpf_map__fd(env.xdp->maps.hc_wl_rate);
	env.config = bpf_map__fd(env.xdp->maps.hc_config);

	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct hc_ipaddr a;

		hc_bpfnet_addr(hosts[i], &a);
		bpf_map_update_elem(env.hosts, &a, &one, BPF_ANY);
	}
	hc_bpfnet_addr(HC_BPFNET_WL_NET4, &cfg.workload_net);
	cfg.host_allowed[0].port = ALLOWED_TCP;
	cfg.host_allowed[0].proto = IPPROTO_TCP;
	cfg.host_allowed[1].port = ALLOWED_UDP;
	cfg.host_allowed[1].proto = IPPROTO_UDP;
	bpf_map_update_elem(env.config, &zero, &cfg, BPF_ANY);
	set_service(NODE_PORT, IPPROTO_TCP, HC_BPFNET_BACKEND4);
	set_service(NODE_PORT, IPPROTO_UDP, HC_BPFNET_BACKEND4);
	set_service(NODE_PORT6, IPPROTO_TCP, HC_BPFNET_BACKEND6);
	set_service(NODE_PORT6, IPPROTO_UDP, HC_BPFNET_BACKEND6);

	/* SCHED_CLS test runs with an ifindex in the context (5.10+). */
	{
		uint8_t f[64] = { 0 }, out[HC_PKT_MAX];
		size_t out_len;
		int verdict, err = tc_try(env.to_wl, f, sizeof(f), out, &out_len, &verdict);

		if (err)
			snprintf(env.skip, sizeof(env.skip),
				 "this kernel cannot test-run TC programs on a device: %s",
				 strerror(-err));
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hc_tc__destroy(env.tc);
	hc_xdp__destroy(env.xdp); /* the namespace goes with the process */
	return 0;
}

int main(void)
{
	enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
	enum { NMANGLED = sizeof(mangled) / sizeof(mangled[0]) };
	enum { NFIXED = 5 };
	struct CMUnitTest tests[NFIXED + NCASES + NMANGLED] = {
		cmocka_unit_test(test_every_prefix_passes),
		cmocka_unit_test(test_udp_reply_checksum_computing_to_zero),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_to_workload_counts),
		cmocka_unit_test(test_round_trip_through_xdp_and_tc),
	};
	size_t n = NFIXED;

	/* One TAP line per fixture, named by its description. */
	for (size_t i = 0; i < NCASES; i++, n++) {
		tests[n].name = cases[i].desc;
		tests[n].test_func = test_case;
		tests[n].initial_state = (void *)&cases[i];
	}
	for (size_t i = 0; i < NMANGLED; i++, n++) {
		tests[n].name = mangled[i].c.desc;
		tests[n].test_func = test_mangled_case;
		tests[n].initial_state = (void *)&mangled[i];
	}
	return _cmocka_run_group_tests("test_tc", tests, n, group_setup, group_teardown);
}
