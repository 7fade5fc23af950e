/* hc_tc_from_wl and hc_tc_to_wl under BPF_PROG_TEST_RUN, as on a workload's
 * host-side veth: reverse NAT of replies, the egress policy (bpf/lib/
 * egress.h: every rule for IPv4 and IPv6, what still passes, what is
 * dropped under which reason), the egress rate limit and the counters,
 * from a fixture table and a few sequences (flows the node opens, hairpin
 * through the proxy); then a request through hc_xdp_ingress and its reply
 * through hc_tc_from_wl over the same maps. Runs as root in a network namespace of
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
#define ALLOWED_TCP 8443 /* hc_config.host_allowed, besides DNS */
#define DNS 53
#define PROXY_PORT 443 /* in hc_proxy_ports */
#define PROXY_PORT2 8080
#define OP_PORT 9100 /* --workload-allow-egress MEMBER4/32:9100/tcp */
#define WORKLOAD4 HC_BPFNET_BACKEND4 /* the workload behind hc-wl0 */
#define WORKLOAD6 HC_BPFNET_BACKEND6
#define OTHER_WORKLOAD4 "10.244.0.3"
#define OTHER_WORKLOAD6 "fd00:244::4"
#define OP_WORKLOAD6 "fd00:244::3" /* --workload-allow-egress fd00:244::3/128 */
#define WL_NET6 "fd00:244::"
#define MEMBER4 "198.51.100.2" /* another node of the cluster */
#define MEMBER6 "2001:db8:100::2"
#define ELSEWHERE4 "192.0.2.10" /* outside the node and the workload net */
#define ELSEWHERE6 "2001:db8:999::1"
#define UNROUTED_CLIENT4 "192.0.2.50"
#define CLOUD_DNS4 "169.254.169.253" /* --workload-allow-egress 169.254.169.253/32:53 */
#define EPHEMERAL 45000

static struct {
	struct hc_bpfnet net;
	struct hc_xdp *xdp; /* the maps' owner; also runs the round trip */
	struct hc_tc *tc;
	char skip[256];
	char broken[512];
	int from_wl, to_wl, xdp_prog;
	int services, conntrack, wl_stats, drops, hosts, workloads, wl_rate, config;
	int members, allow, proxy_ports, flows;
} env;

#define REQUIRE_ENV() REQUIRE_SETUP(env.skip, env.broken)

/* ---- maps ---- */

static void set_workload(uint32_t flags, uint64_t rate, uint64_t burst)
{
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;
	struct hc_wl_info wl = { .id = "wl-test", .flags = flags, .rate_bytes_per_sec = rate,
				  .burst_bytes = burst };

	assert_int_equal(hc_bpfnet_addr(WORKLOAD4, &wl.addr), 0);
	assert_int_equal(hc_bpfnet_addr(WORKLOAD6, &wl.addr2), 0);
	assert_int_equal(bpf_map_update_elem(env.workloads, &ifindex, &wl, BPF_ANY), 0);
}

static void reset_maps(void)
{
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;

	assert_int_equal(hc_bpfnet_map_clear(env.conntrack, sizeof(struct hc_ct_key)), 0);
	reset_drops(env.drops);
	assert_int_equal(hc_bpfnet_percpu_zero(env.wl_stats, &ifindex, 6), 0);
	assert_int_equal(hc_bpfnet_map_clear(env.wl_rate, sizeof(uint32_t)), 0);
	assert_int_equal(hc_bpfnet_map_clear(env.flows, sizeof(struct hc_ct_key)), 0);
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
#define DROPPED(r) .verdict = TC_ACT_SHOT, .out = OUT_SAME, .drop = (r)
#define TO_MEMBER DROPPED(HC_DROP_WL_MEMBER)
#define TO_WORKLOAD DROPPED(HC_DROP_WL_WORKLOAD)
#define TO_LINK_LOCAL DROPPED(HC_DROP_WL_LINK_LOCAL)
#define TO_METADATA DROPPED(HC_DROP_WL_METADATA)
#define SPOOFED DROPPED(HC_DROP_WL_SPOOFED)
#define MALFORMED DROPPED(HC_DROP_WL_MALFORMED)
#define NOT_IP DROPPED(HC_DROP_WL_NOT_IP)
#define FROM(s) WIRE, .src = (s)
#define SYN .tcp_flags = TH_SYN
#define ACK .tcp_flags = TH_ACK

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

	{ "node-port reply to a client that is a member passes (conntrack), translated",
	  { V4(MEMBER4), TCP(8080, CLIENT_PORT), ACK }, REPLY4, 0, SNATTED },

	/* The internet: open, both families, any protocol. */
	{ "tcp syn to the internet passes", { V4(ELSEWHERE4), TCP(33000, 443), SYN }, { 0 }, 0,
	  PASSED },
	{ "tcp ack to the internet passes", { V4(ELSEWHERE4), TCP(33000, 443), ACK }, { 0 }, 0,
	  PASSED },
	{ "udp to the internet passes", { V4(ELSEWHERE4), UDP(33000, 4500), .payload_len = 40 },
	  { 0 }, 0, PASSED },
	{ "dns to an internet resolver passes", { V4(ELSEWHERE4), UDP(33000, DNS),
	  .payload_len = 40 }, { 0 }, 0, PASSED },
	{ "icmp echo request to the internet passes", { V4(ELSEWHERE4), ICMP(8) }, { 0 }, 0,
	  PASSED },
	{ "ipv4 fragment to the internet passes", { V4(ELSEWHERE4), UDP(33000, 4500),
	  .frag = 0x2000, .payload_len = 64 }, { 0 }, 0, PASSED },
	{ "tcp6 syn to the internet passes", { V6(ELSEWHERE6), TCP(33000, 443), SYN }, { 0 }, 0,
	  PASSED },
	{ "tcp6 ack to the internet passes", { V6(ELSEWHERE6), TCP(33000, 443), ACK }, { 0 }, 0,
	  PASSED },
	{ "udp6 to the internet passes", { V6(ELSEWHERE6), UDP(33000, DNS), .payload_len = 40 },
	  { 0 }, 0, PASSED },
	{ "icmpv6 echo request to the internet passes", { V6(ELSEWHERE6), ICMP6(128) }, { 0 }, 0,
	  PASSED },
	{ "ipv6 fragment to the internet passes", { V6(ELSEWHERE6), UDP(33000, 4500), .ext = "f",
	  .frag = 1, .payload_len = 64 }, { 0 }, 0, PASSED },
	{ "tcp syn to its own address passes", { V4(WORKLOAD4), TCP(33000, 80), SYN }, { 0 }, 0,
	  PASSED },
	{ "tcp6 syn to its own address passes", { V6(WORKLOAD6), TCP(33000, 80), SYN }, { 0 }, 0,
	  PASSED },

	/* This node and the other members: the proxy's ports, node ports, DNS and
	 * the operator's ports only. */
	{ "tcp syn to this node's :22: dropped", { V4(HC_BPFNET_NODE4), TCP(33000, 22), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "tcp syn to this node's gateway address :8000: dropped", { V4(HC_BPFNET_WL_GW4),
	  TCP(33000, 8000), SYN }, { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member's :8000 (gRPC): dropped", { V4(MEMBER4), TCP(33000, 8000), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member's :8001 (HTTP API): dropped", { V4(MEMBER4), TCP(33000, 8001), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member's :7946 (gossip): dropped", { V4(MEMBER4), TCP(33000, 7946), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "udp to a member's :7946 (gossip): dropped", { V4(MEMBER4), UDP(7946, 7946),
	  .payload_len = 30 }, { 0 }, 0, TO_MEMBER },
	{ "tcp ack to a member's :8000 (a connection older than the filter): dropped",
	  { V4(MEMBER4), TCP(33000, 8000), ACK }, { 0 }, 0, TO_MEMBER },
	{ "tcp ack to this node's :22: dropped", { V4(HC_BPFNET_NODE4), TCP(33000, 22), ACK },
	  { 0 }, 0, TO_MEMBER },
	{ "tcp syn-ack to this node without a flow it opened: dropped", { V4(HC_BPFNET_NODE4),
	  TCP(8080, 51000), .tcp_flags = TH_SYN | TH_ACK }, { 0 }, 0, TO_MEMBER },
	{ "tcp6 syn to a member's :8000: dropped", { V6(MEMBER6), TCP(33000, 8000), SYN }, { 0 },
	  0, TO_MEMBER },
	{ "tcp6 ack to a member's :7946: dropped", { V6(MEMBER6), TCP(33000, 7946), ACK }, { 0 },
	  0, TO_MEMBER },
	{ "tcp6 syn to this node's :8001: dropped", { V6(HC_BPFNET_NODE6), TCP(33000, 8001), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "udp6 to this node's gateway address: dropped", { V6(HC_BPFNET_WL_GW6),
	  UDP(33000, 9999), .payload_len = 10 }, { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member's proxy port passes", { V4(MEMBER4), TCP(33000, PROXY_PORT), SYN },
	  { 0 }, 0, PASSED },
	{ "tcp ack to this node's proxy port passes", { V4(HC_BPFNET_NODE4),
	  TCP(33000, PROXY_PORT2), ACK }, { 0 }, 0, PASSED },
	{ "tcp6 syn to a member's proxy port passes", { V6(MEMBER6), TCP(33000, PROXY_PORT), SYN },
	  { 0 }, 0, PASSED },
	{ "udp to a proxy port (the proxy is TCP): dropped", { V4(MEMBER4), UDP(33000, PROXY_PORT),
	  .payload_len = 10 }, { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member's node port passes", { V4(MEMBER4), TCP(33000, 30080), SYN },
	  { 0 }, 0, PASSED },
	{ "udp to a member's node port passes", { V4(MEMBER4), UDP(33000, 32767),
	  .payload_len = 10 }, { 0 }, 0, PASSED },
	{ "tcp6 syn to this node's node port passes", { V6(HC_BPFNET_NODE6), TCP(33000, 30000),
	  SYN }, { 0 }, 0, PASSED },
	{ "tcp syn below the node-port range: dropped", { V4(MEMBER4), TCP(33000, 29999), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "tcp syn above the node-port range: dropped", { V4(MEMBER4), TCP(33000, 32768), SYN },
	  { 0 }, 0, TO_MEMBER },
	{ "dns over udp to this node passes", { V4(HC_BPFNET_WL_GW4), UDP(33000, DNS),
	  .payload_len = 30 }, { 0 }, 0, PASSED },
	{ "dns over tcp to a member passes", { V4(MEMBER4), TCP(33000, DNS), SYN }, { 0 }, 0,
	  PASSED },
	{ "dns6 over udp to this node passes", { V6(HC_BPFNET_WL_GW6), UDP(33000, DNS),
	  .payload_len = 30 }, { 0 }, 0, PASSED },
	{ "tcp syn to an allowed host port passes", { V4(HC_BPFNET_NODE4),
	  TCP(33000, ALLOWED_TCP), SYN }, { 0 }, 0, PASSED },
	{ "udp to the allowed tcp port: dropped", { V4(HC_BPFNET_NODE4), UDP(33000, ALLOWED_TCP),
	  .payload_len = 10 }, { 0 }, 0, TO_MEMBER },
	{ "icmp echo request to a member: dropped", { V4(MEMBER4), ICMP(8) }, { 0 }, 0,
	  TO_MEMBER },
	{ "icmp echo reply to this node passes", { V4(HC_BPFNET_NODE4), ICMP(0) }, { 0 }, 0,
	  PASSED },
	{ "icmp port unreachable to this node passes", { V4(HC_BPFNET_NODE4), ICMP(3),
	  .icmp_code = 3 }, { 0 }, 0, PASSED },
	{ "icmpv6 echo request to this node: dropped", { V6(HC_BPFNET_WL_GW6), ICMP6(128) },
	  { 0 }, 0, TO_MEMBER },
	{ "icmpv6 echo reply to a member passes", { V6(MEMBER6), ICMP6(129) }, { 0 }, 0, PASSED },
	{ "icmpv6 packet too big to a member passes", { V6(MEMBER6), ICMP6(2) }, { 0 }, 0,
	  PASSED },
	{ "ipv4 fragment to this node: dropped", { V4(HC_BPFNET_NODE4), UDP(33000, DNS),
	  .frag = 0x2000, .payload_len = 64 }, { 0 }, 0, TO_MEMBER },
	{ "ipv6 fragment to a member: dropped", { V6(MEMBER6), UDP(33000, DNS), .ext = "f",
	  .frag = 1, .payload_len = 64 }, { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member's operator-allowed port passes", { V4(MEMBER4), TCP(33000, OP_PORT),
	  SYN }, { 0 }, 0, PASSED },
	{ "udp to the operator-allowed tcp port: dropped", { V4(MEMBER4), UDP(33000, OP_PORT),
	  .payload_len = 10 }, { 0 }, 0, TO_MEMBER },
	{ "tcp syn to a member without isolation passes", { V4(MEMBER4), TCP(33000, 8000), SYN },
	  { 0 }, HC_WL_F_ISOLATE, PASSED },

	/* Link-local, local scope and metadata. */
	{ "tcp syn to 169.254.169.254 (metadata): dropped", { V4("169.254.169.254"),
	  TCP(33000, 80), SYN }, { 0 }, 0, TO_METADATA },
	{ "tcp ack to 169.254.169.254: dropped", { V4("169.254.169.254"), TCP(33000, 80), ACK },
	  { 0 }, 0, TO_METADATA },
	{ "udp dns to 169.254.169.254: dropped", { V4("169.254.169.254"), UDP(33000, DNS),
	  .payload_len = 20 }, { 0 }, 0, TO_METADATA },
	{ "tcp syn to 100.100.100.200 (metadata): dropped", { V4("100.100.100.200"),
	  TCP(33000, 80), SYN }, { 0 }, 0, TO_METADATA },
	{ "tcp6 syn to fd00:ec2::254 (metadata): dropped", { V6("fd00:ec2::254"), TCP(33000, 80),
	  SYN }, { 0 }, 0, TO_METADATA },
	{ "tcp syn to 169.254.1.1: dropped", { V4("169.254.1.1"), TCP(33000, 80), SYN }, { 0 }, 0,
	  TO_LINK_LOCAL },
	{ "udp to 169.254.255.255: dropped", { V4("169.254.255.255"), UDP(33000, 80),
	  .payload_len = 8 }, { 0 }, 0, TO_LINK_LOCAL },
	{ "tcp syn to 127.0.0.1: dropped", { V4("127.0.0.1"), TCP(33000, 8000), SYN }, { 0 }, 0,
	  TO_LINK_LOCAL },
	{ "udp to 224.0.0.251 (mdns): dropped", { V4("224.0.0.251"), UDP(5353, 5353),
	  .payload_len = 20 }, { 0 }, 0, TO_LINK_LOCAL },
	{ "udp to 255.255.255.255: dropped", { V4("255.255.255.255"), UDP(68, 67),
	  .payload_len = 20 }, { 0 }, 0, TO_LINK_LOCAL },
	{ "icmp echo reply to 169.254.1.1: dropped", { V4("169.254.1.1"), ICMP(0) }, { 0 }, 0,
	  TO_LINK_LOCAL },
	{ "tcp6 syn to fe80::1: dropped", { V6("fe80::1"), TCP(33000, 8000), SYN }, { 0 }, 0,
	  TO_LINK_LOCAL },
	{ "tcp6 ack to fe80::1: dropped", { V6("fe80::1"), TCP(33000, 8000), ACK }, { 0 }, 0,
	  TO_LINK_LOCAL },
	{ "udp6 to febf::1 (the end of fe80::/10): dropped", { V6("febf::1"), UDP(33000, 53),
	  .payload_len = 8 }, { 0 }, 0, TO_LINK_LOCAL },
	{ "udp6 to ff02::fb (mdns): dropped", { V6("ff02::fb"), UDP(5353, 5353),
	  .payload_len = 8 }, { 0 }, 0, TO_LINK_LOCAL },
	{ "tcp6 syn to ::1: dropped", { V6("::1"), TCP(33000, 8000), SYN }, { 0 }, 0,
	  TO_LINK_LOCAL },
	{ "tcp6 syn to ::ffff:169.254.169.254: dropped", { V6("::ffff:169.254.169.254"),
	  TCP(33000, 80), SYN }, { 0 }, 0, TO_LINK_LOCAL },
	{ "udp dns to the operator-allowed 169.254.169.253:53 passes", { V4(CLOUD_DNS4),
	  UDP(33000, DNS), .payload_len = 20 }, { 0 }, 0, PASSED },
	{ "tcp syn to 169.254.169.253:80 (not allowed): dropped", { V4(CLOUD_DNS4),
	  TCP(33000, 80), SYN }, { 0 }, 0, TO_LINK_LOCAL },

	/* IPv6 link control, which the gateway needs. */
	{ "icmpv6 neighbour solicitation to the gateway passes", { V6(HC_BPFNET_WL_GW6),
	  ICMP6(135) }, { 0 }, 0, PASSED },
	{ "icmpv6 neighbour solicitation from fe80:: to its multicast group passes",
	  { FROM("fe80::2"), .dst = "ff02::1:ff00:1", ICMP6(135) }, { 0 }, 0, PASSED },
	{ "icmpv6 router solicitation from fe80:: passes", { FROM("fe80::2"), .dst = "ff02::2",
	  ICMP6(133) }, { 0 }, 0, PASSED },
	{ "mldv2 report from :: passes", { FROM("::"), .dst = "ff02::16", ICMP6(143) }, { 0 }, 0,
	  PASSED },

	/* Other workloads: only through the proxy. */
	{ "tcp syn to another workload: dropped", { V4(OTHER_WORKLOAD4), TCP(33000, 80), SYN },
	  { 0 }, 0, TO_WORKLOAD },
	{ "tcp ack to another workload: dropped", { V4(OTHER_WORKLOAD4), TCP(33000, 80), ACK },
	  { 0 }, 0, TO_WORKLOAD },
	{ "udp dns to another workload: dropped", { V4(OTHER_WORKLOAD4), UDP(33000, DNS),
	  .payload_len = 10 }, { 0 }, 0, TO_WORKLOAD },
	{ "tcp syn to another workload's node-port number: dropped", { V4(OTHER_WORKLOAD4),
	  TCP(33000, 30080), SYN }, { 0 }, 0, TO_WORKLOAD },
	{ "icmp echo request to another workload: dropped", { V4(OTHER_WORKLOAD4), ICMP(8) },
	  { 0 }, 0, TO_WORKLOAD },
	{ "udp to the workload subnet's broadcast: dropped", { V4("10.244.0.255"), UDP(33000, 9),
	  .payload_len = 10 }, { 0 }, 0, TO_WORKLOAD },
	{ "tcp6 syn to another workload: dropped", { V6(OTHER_WORKLOAD6), TCP(33000, 80), SYN },
	  { 0 }, 0, TO_WORKLOAD },
	{ "tcp6 ack to another workload: dropped", { V6(OTHER_WORKLOAD6), TCP(33000, 80), ACK },
	  { 0 }, 0, TO_WORKLOAD },
	{ "udp6 to an operator-allowed workload passes", { V6(OP_WORKLOAD6), UDP(33000, 7000),
	  .payload_len = 10 }, { 0 }, 0, PASSED },
	{ "icmpv6 echo request to an operator-allowed workload passes", { V6(OP_WORKLOAD6),
	  ICMP6(128) }, { 0 }, 0, PASSED },

	/* Source addresses. */
	{ "tcp syn from another workload's address: dropped", { FROM(OTHER_WORKLOAD4),
	  .dst = ELSEWHERE4, TCP(33000, 443), SYN }, { 0 }, 0, SPOOFED },
	{ "udp from an internet address: dropped", { FROM(ELSEWHERE4), .dst = ELSEWHERE4,
	  UDP(33000, 53), .payload_len = 10 }, { 0 }, 0, SPOOFED },
	{ "tcp from the node's address to the node: dropped as spoofed", { FROM(HC_BPFNET_NODE4),
	  .dst = HC_BPFNET_NODE4, TCP(8000, 33000), ACK }, { 0 }, 0, SPOOFED },
	{ "icmp echo reply from another address: dropped", { FROM(OTHER_WORKLOAD4),
	  .dst = ELSEWHERE4, ICMP(0) }, { 0 }, 0, SPOOFED },
	{ "tcp6 syn from another workload's address: dropped", { FROM(OTHER_WORKLOAD6),
	  .dst = ELSEWHERE6, TCP(33000, 443), SYN }, { 0 }, 0, SPOOFED },
	{ "tcp6 from its link-local address (not link control): dropped", { FROM("fe80::2"),
	  .dst = ELSEWHERE6, TCP(33000, 443), SYN }, { 0 }, 0, SPOOFED },
	{ "icmpv6 neighbour advertisement from another global address: dropped",
	  { FROM(OTHER_WORKLOAD6), .dst = "ff02::1", ICMP6(136) }, { 0 }, 0, SPOOFED },
	{ "arp request for the node passes", { WIRE, .eth_proto = ETH_P_ARP, .arp_spa = WORKLOAD4,
	  .arp_tpa = HC_BPFNET_WL_GW4 }, { 0 }, 0, PASSED },
	{ "arp probe from 0.0.0.0 passes", { WIRE, .eth_proto = ETH_P_ARP, .arp_spa = "0.0.0.0",
	  .arp_tpa = WORKLOAD4 }, { 0 }, 0, PASSED },
	{ "arp claiming another workload's address: dropped", { WIRE, .eth_proto = ETH_P_ARP,
	  .arp_spa = OTHER_WORKLOAD4, .arp_tpa = HC_BPFNET_WL_GW4 }, { 0 }, 0, SPOOFED },

	/* Frames that are not IP, or not as we expect it. */
	{ "a frame of another ethertype: dropped", { WIRE, .eth_proto = 0x88b5,
	  .payload_len = 46 }, { 0 }, 0, NOT_IP },
	{ "a vlan-tagged ipv4 frame: dropped", { V4(ELSEWHERE4), .vlan = { { ETH_P_8021Q, 7 } },
	  TCP(33000, 443), SYN }, { 0 }, 0, NOT_IP },
	{ "ipv6 behind more extension headers than followed: dropped", { V6(ELSEWHERE6),
	  TCP(33000, 443), SYN, .ext = "ddddddd" }, { 0 }, 0, MALFORMED },
};

/* Cases whose frame is broken after building: the same table shape. */
struct tc_mangled_case {
	struct tc_case c;
	void (*mangle)(uint8_t *f, const struct hc_pktinfo *info);
};

static void tcp_doff_short(uint8_t *f, const struct hc_pktinfo *i)
{
	f[i->l4_off + 12] = 4 << 4;
}

static void udp_len_short(uint8_t *f, const struct hc_pktinfo *i)
{
	f[i->l4_off + 4] = 0;
	f[i->l4_off + 5] = 4;
}

static void ihl_short(uint8_t *f, const struct hc_pktinfo *i)
{
	f[i->l3_off] = 0x44;
}

static void ip6_payload_past_frame(uint8_t *f, const struct hc_pktinfo *i)
{
	f[i->l3_off + 4] = 0x05;
	f[i->l3_off + 5] = 0xdc;
}

static void ip_version_wrong(uint8_t *f, const struct hc_pktinfo *i)
{
	f[i->l3_off] = (uint8_t)((f[i->l3_off] & 0x0f) | 0x50);
}

/* Fail closed: whatever the destination, a packet the parser cannot make
 * sense of is dropped and counted; without isolation it passes, untranslated. */
static const struct tc_mangled_case mangled[] = {
	{ { "ipv4 total length cutting the tcp header, to the internet: dropped",
	    { V4(ELSEWHERE4), TCP(33000, 443), SYN, .pad_to = 80 }, { 0 }, 0, MALFORMED },
	  tot_len_cuts_l4 },
	{ { "ipv4 total length cutting the tcp header, to this node: dropped",
	    { V4(HC_BPFNET_NODE4), TCP(33000, 22), SYN, .pad_to = 80 }, { 0 }, 0, MALFORMED },
	  tot_len_cuts_l4 },
	{ { "malformed node-port reply: dropped, not translated", { V4(HC_BPFNET_CLIENT4),
	    TCP(8080, CLIENT_PORT), ACK, .pad_to = 80 }, REPLY4, 0, MALFORMED },
	  tot_len_cuts_l4 },
	{ { "malformed reply without isolation passes untranslated", { V4(HC_BPFNET_CLIENT4),
	    TCP(8080, CLIENT_PORT), ACK, .pad_to = 80 }, REPLY4, HC_WL_F_ISOLATE, PASSED },
	  tot_len_cuts_l4 },
	{ { "tcp data offset under 5: dropped", { V4(ELSEWHERE4), TCP(33000, 443), SYN }, { 0 },
	    0, MALFORMED }, tcp_doff_short },
	{ { "udp length under its header: dropped", { V4(ELSEWHERE4), UDP(33000, 53),
	    .payload_len = 20 }, { 0 }, 0, MALFORMED }, udp_len_short },
	{ { "ipv4 header length under 5 words: dropped", { V4(ELSEWHERE4), UDP(33000, 53),
	    .payload_len = 20 }, { 0 }, 0, MALFORMED }, ihl_short },
	{ { "ipv4 ethertype with version 5: dropped", { V4(ELSEWHERE4), UDP(33000, 53),
	    .payload_len = 20 }, { 0 }, 0, MALFORMED }, ip_version_wrong },
	{ { "ipv6 payload length past the frame: dropped", { V6(ELSEWHERE6), TCP(33000, 443),
	    SYN }, { 0 }, 0, MALFORMED }, ip6_payload_past_frame },
	{ { "tcp6 data offset under 5: dropped", { V6(MEMBER6), TCP(33000, PROXY_PORT), SYN },
	    { 0 }, 0, MALFORMED }, tcp_doff_short },
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

/* Every prefix of a frame (a reply the conntrack knows, a SYN to the node)
 * is a packet whose lengths do not add up: from an isolated workload it is
 * dropped and counted as malformed, never translated; from one without
 * isolation it passes untouched (the stack drops it). The kernel refuses to
 * test-run an skb shorter than an Ethernet header, or an untagged IPv4/IPv6
 * one shorter than its IP header (it reads that for the test socket): those
 * lengths must be refused, not run. Behind a VLAN tag the kernel does not
 * look, so the tagged frame covers truncated IP headers. */
static void every_prefix(const struct hc_pktspec *spec, size_t f, bool isolate)
{
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	int len = hc_pkt_build(spec, in, sizeof(in), NULL), refused = 0, runs;
	int min_run = spec->vlan[0].tpid ? ETH_HLEN :
		      strchr(spec->src, ':') ? ETH_HLEN + 40 : ETH_HLEN + 20;
	struct hc_wl_stats st;
	size_t out_len;

	assert_true(len > 0);
	reset_maps();
	if (!isolate)
		set_workload(0, 0, 0);
	put_conntrack(spec, strchr(spec->src, ':') ? HC_BPFNET_NODE6 : HC_BPFNET_NODE4,
		      NODE_PORT, HC_CT_REPLY);
	for (int cut = 0; cut < len; cut++) {
		int verdict, err = tc_try(env.from_wl, in, (size_t)cut, out, &out_len, &verdict);

		if (cut < min_run && err == -EINVAL) {
			refused++;
			continue;
		}
		if (err)
			fail_msg("frame %zu cut to %d bytes: test run: %s", f, cut, strerror(-err));
		if (verdict != (isolate ? TC_ACT_SHOT : TC_ACT_OK))
			fail_msg("frame %zu cut to %d of %d bytes: %s", f, cut, len,
				 verdict_name(verdict));
		expect_frame("prefix", out, out_len, in, (size_t)cut);
	}
	runs = len - refused;
	print_message("# frame %zu%s: %d prefixes run, %d shorter than %d bytes refused by the "
		      "kernel\n", f, isolate ? "" : " (no isolation)", runs, refused, min_run);
	expect_drops(env.drops, isolate ? HC_DROP_WL_MALFORMED : HC_DROP_NONE,
		     isolate ? (uint64_t)runs : 0);
	st = wl_stats();
	assert_int_equal(st.tx_packets, isolate ? 0 : (uint64_t)runs);
	assert_int_equal(st.dropped_packets, isolate ? (uint64_t)runs : 0);
}

static void test_every_prefix_is_malformed(void **state)
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

	(void)state;
	REQUIRE_ENV();
	for (size_t f = 0; f < sizeof(frames) / sizeof(frames[0]); f++) {
		every_prefix(&frames[f], f, true);
		every_prefix(&frames[f], f, false);
	}
}

/* Runs frame (built from spec) through prog, expecting verdict. */
static void send_one(int prog, const struct hc_pktspec *spec, int verdict)
{
	uint8_t in[HC_PKT_MAX], out[HC_PKT_MAX];
	size_t out_len;
	int n = hc_pkt_build(spec, in, sizeof(in), NULL);

	assert_true(n > 0);
	expect_verdict(tc_run(prog, in, (size_t)n, out, &out_len), verdict);
}

/* A connection this node opens to the workload (the proxy's, say): its
 * SYN through hc_tc_to_wl notes the flow, and the workload's answers pass;
 * the same answers without that SYN, or to another port, are dropped. A
 * member's UDP datagram is noted the same way; one from the internet is not
 * (its replies pass anyway). */
static void flows_opened_by(const char *node, const char *wl)
{
	struct hc_pktspec syn = { .eth_dst = "02:00:00:00:02:02", .eth_src = HC_BPFNET_WL_MAC,
				  .src = node, .dst = wl, TCP(EPHEMERAL, 8080), SYN };
	struct hc_pktspec synack = { WIRE, .src = wl, .dst = node, TCP(8080, EPHEMERAL),
				     .tcp_flags = TH_SYN | TH_ACK };
	struct hc_pktspec data = synack, other = synack;
	struct hc_pktspec udp_in = syn, udp_out = synack;

	data.tcp_flags = TH_ACK | TH_PUSH;
	data.payload_len = 100;
	other.dport = EPHEMERAL + 1;
	udp_in.proto = udp_out.proto = IPPROTO_UDP;
	udp_in.payload_len = udp_out.payload_len = 20;

	reset_maps();
	send_one(env.from_wl, &synack, TC_ACT_SHOT);
	send_one(env.to_wl, &syn, TC_ACT_OK);
	assert_int_equal(hc_bpfnet_map_count(env.flows, sizeof(struct hc_ct_key)), 1);
	send_one(env.from_wl, &synack, TC_ACT_OK);
	send_one(env.from_wl, &data, TC_ACT_OK);
	send_one(env.from_wl, &other, TC_ACT_SHOT);
	/* A later ACK into the workload notes nothing more. */
	syn.tcp_flags = TH_ACK;
	send_one(env.to_wl, &syn, TC_ACT_OK);
	assert_int_equal(hc_bpfnet_map_count(env.flows, sizeof(struct hc_ct_key)), 1);
	expect_drops(env.drops, HC_DROP_WL_MEMBER, 2);

	send_one(env.from_wl, &udp_out, TC_ACT_SHOT);
	send_one(env.to_wl, &udp_in, TC_ACT_OK);
	send_one(env.to_wl, &udp_in, TC_ACT_OK);
	assert_int_equal(hc_bpfnet_map_count(env.flows, sizeof(struct hc_ct_key)), 2);
	send_one(env.from_wl, &udp_out, TC_ACT_OK);
	expect_drops(env.drops, HC_DROP_WL_MEMBER, 3);
}

static void test_flows_the_node_opens(void **state)
{
	struct hc_pktspec from_net = { .eth_dst = "02:00:00:00:02:02", .eth_src = HC_BPFNET_WL_MAC,
				       .src = ELSEWHERE4, .dst = WORKLOAD4, TCP(EPHEMERAL, 8080),
				       SYN };

	(void)state;
	REQUIRE_ENV();
	flows_opened_by(HC_BPFNET_WL_GW4, WORKLOAD4);
	flows_opened_by(HC_BPFNET_NODE6, WORKLOAD6);
	flows_opened_by(MEMBER4, WORKLOAD4);
	reset_maps();
	send_one(env.to_wl, &from_net, TC_ACT_OK);
	assert_int_equal(hc_bpfnet_map_count(env.flows, sizeof(struct hc_ct_key)), 0);
}

/* Hairpin: workload A calls workload B's public URL. A's SYN goes to the
 * node's proxy port (passes); the proxy connects to B (B's veth notes the
 * flow on its way in) and B's answers to the proxy pass; B calling A
 * directly is dropped. One veth plays both, with A's and B's addresses in
 * turn. */
static void test_hairpin_through_the_proxy(void **state)
{
	struct hc_pktspec a_to_proxy = { V4(HC_BPFNET_NODE4), TCP(41000, PROXY_PORT), SYN };
	struct hc_pktspec a_data = a_to_proxy;
	struct hc_pktspec proxy_to_b = { .eth_dst = "02:00:00:00:02:02",
					 .eth_src = HC_BPFNET_WL_MAC, .src = HC_BPFNET_WL_GW4,
					 .dst = OTHER_WORKLOAD4, TCP(EPHEMERAL, 8080), SYN };
	struct hc_pktspec b_to_proxy = { WIRE, .src = OTHER_WORKLOAD4, .dst = HC_BPFNET_WL_GW4,
					 TCP(8080, EPHEMERAL), .tcp_flags = TH_SYN | TH_ACK };
	struct hc_pktspec b_to_a = { WIRE, .src = OTHER_WORKLOAD4, .dst = WORKLOAD4,
				     TCP(8080, 41000), SYN };
	uint32_t ifindex = (uint32_t)env.net.wl_ifindex;
	struct hc_wl_info wl;

	(void)state;
	REQUIRE_ENV();
	reset_maps();
	a_data.tcp_flags = TH_ACK | TH_PUSH;
	a_data.payload_len = 300;
	send_one(env.from_wl, &a_to_proxy, TC_ACT_OK);
	send_one(env.from_wl, &a_data, TC_ACT_OK);
	/* Now the veth is B's. */
	assert_int_equal(bpf_map_lookup_elem(env.workloads, &ifindex, &wl), 0);
	assert_int_equal(hc_bpfnet_addr(OTHER_WORKLOAD4, &wl.addr), 0);
	assert_int_equal(bpf_map_update_elem(env.workloads, &ifindex, &wl, BPF_ANY), 0);
	send_one(env.from_wl, &b_to_proxy, TC_ACT_SHOT);
	expect_drops(env.drops, HC_DROP_WL_MEMBER, 1);
	send_one(env.to_wl, &proxy_to_b, TC_ACT_OK);
	send_one(env.from_wl, &b_to_proxy, TC_ACT_OK);
	reset_drops(env.drops);
	send_one(env.from_wl, &b_to_a, TC_ACT_SHOT);
	expect_drops(env.drops, HC_DROP_WL_WORKLOAD, 1);
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

/* An entry of hc_egress_allow: every port and protocol when ports is NULL. */
static void allow_egress(const char *addr, uint32_t prefix, const struct hc_port_range *ports)
{
	struct hc_egress_key key = { .prefixlen = 32 + prefix };
	struct hc_egress_val val = { .any = ports == NULL };
	struct hc_ipaddr a;

	hc_bpfnet_addr(addr, &a);
	key.family = a.family;
	memcpy(key.addr, a.ip6, 16);
	if (ports) {
		val.count = 1;
		val.ports[0] = *ports;
	}
	bpf_map_update_elem(env.allow, &key, &val, BPF_ANY);
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
	static const char *const peers[] = { MEMBER4, MEMBER6 };
	static struct hc_port_bitmap proxy;
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
	env.members = bpf_map__fd(env.xdp->maps.hc_members);
	env.allow = bpf_map__fd(env.xdp->maps.hc_egress_allow);
	env.proxy_ports = bpf_map__fd(env.xdp->maps.hc_proxy_ports);
	env.flows = bpf_map__fd(env.xdp->maps.hc_wl_flows);

	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct hc_ipaddr a;
		uint8_t local = HC_MEMBER_F_LOCAL;

		hc_bpfnet_addr(hosts[i], &a);
		bpf_map_update_elem(env.hosts, &a, &one, BPF_ANY);
		bpf_map_update_elem(env.members, &a, &local, BPF_ANY);
	}
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		struct hc_ipaddr a;
		uint8_t peer = HC_MEMBER_F_PEER;

		hc_bpfnet_addr(peers[i], &a);
		bpf_map_update_elem(env.members, &a, &peer, BPF_ANY);
	}
	hc_bpfnet_addr(HC_BPFNET_WL_NET4, &cfg.workload_net);
	hc_bpfnet_addr(WL_NET6, &cfg.workload_net6);
	cfg.workload_prefix6 = 64;
	cfg.host_allowed[0] = (struct hc_port_rule){ .port = DNS, .proto = IPPROTO_UDP };
	cfg.host_allowed[1] = (struct hc_port_rule){ .port = DNS, .proto = IPPROTO_TCP };
	cfg.host_allowed[2] = (struct hc_port_rule){ .port = ALLOWED_TCP, .proto = IPPROTO_TCP };
	bpf_map_update_elem(env.config, &zero, &cfg, BPF_ANY);
	proxy.bits[PROXY_PORT / 64] |= 1ull << (PROXY_PORT % 64);
	proxy.bits[PROXY_PORT2 / 64] |= 1ull << (PROXY_PORT2 % 64);
	bpf_map_update_elem(env.proxy_ports, &zero, &proxy, BPF_ANY);
	allow_egress(MEMBER4, 32, &(struct hc_port_range){ .lo = OP_PORT, .hi = OP_PORT, .proto = IPPROTO_TCP });
	allow_egress(CLOUD_DNS4, 32, &(struct hc_port_range){ .lo = DNS, .hi = DNS });
	allow_egress(OP_WORKLOAD6, 128, NULL);
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
	enum { NFIXED = 7 };
	struct CMUnitTest tests[NFIXED + NCASES + NMANGLED] = {
		cmocka_unit_test(test_every_prefix_is_malformed),
		cmocka_unit_test(test_flows_the_node_opens),
		cmocka_unit_test(test_hairpin_through_the_proxy),
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
