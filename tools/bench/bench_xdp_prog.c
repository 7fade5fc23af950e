/* XDP program cost: ns per packet of hc_xdp_ingress under BPF_PROG_TEST_RUN,
 * for the pass-through path (a TCP segment to a node port without a
 * service: parsed, one service lookup, XDP_PASS) and for the DNAT path of an
 * established flow (service and host lookups, conntrack hit, FIB lookup,
 * address and port rewrite with checksums, MAC rewrite, counters,
 * bpf_redirect), each timed by the kernel over 1,000,000 repeats; prints
 * both, and their ratio.
 *
 * Trap: BPF_PROG_TEST_RUN's repeat does not restore the packet between
 * iterations, so after the first DNAT the frame is addressed to the backend
 * and a naive setup times the pass-through path 999,999 times. Here the
 * backend's own address is also a host address and its port a service
 * whose backend is itself: every later iteration takes exactly the DNAT
 * path again (same lookups, conntrack hit from the third iteration on, FIB
 * lookup, the same checksum arithmetic; only the values written equal the
 * ones already there). The run must show rx_packets of the target veth
 * growing by exactly the repeat count, proof that every iteration was
 * redirected, or the benchmark fails. As a cross-check, both paths are also
 * run 100,000 times with repeat 1 on a fresh copy of the frame (a real node
 * -> backend translation each time); those figures include the kernel
 * timer's own cost per call, so they are higher and their ratio smaller.
 *
 * Needs root; runs in a network namespace of its own (tests/lib/bpfnet.h),
 * pins nothing. Exit 0, 1 on a failure, 77 when it cannot run here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "benchstat.h"
#include "bpfnet.h"
#include "hc_xdp.skel.h"
#include "pktbuild.h"

#define REPEAT 1000000
/* Runs of REPEAT per path, alternating between the paths so that both see
 * the same machine (a shared VM drifts by tens of percent over seconds);
 * medians are reported, and the median of the per-pair ratios. */
#define RUNS 9
#define SINGLE_CALLS 100000
#define NODE_PORT 30080
#define BACKEND_PORT 8080
#define EXIT_SKIP 77

struct bench {
	struct hc_bpfnet net;
	struct hc_xdp *skel;
	int prog, stats;
};

static uint64_t rx_packets(struct bench *b)
{
	uint32_t ifindex = (uint32_t)b->net.wl_ifindex;
	uint64_t st[6] = { 0 };

	hc_bpfnet_percpu_sum(b->stats, &ifindex, 6, st);
	return st[0]; /* hc_wl_stats.rx_packets */
}

/* One test run of `repeat` iterations; returns the kernel's mean ns per
 * iteration, or -1. out (HC_PKT_MAX bytes) gets the frame as finally left. */
static int run(struct bench *b, const uint8_t *frame, size_t len, uint32_t repeat,
	       uint32_t want_verdict, uint8_t *out, uint32_t *duration)
{
	struct xdp_md ctx = { .data_end = (uint32_t)len,
			      .ingress_ifindex = (uint32_t)b->net.uplink_ifindex };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (uint32_t)len,
		    .data_out = out, .data_size_out = HC_PKT_MAX, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = repeat);

	if (bpf_prog_test_run_opts(b->prog, &opts)) {
		fprintf(stderr, "bench_xdp_prog: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
		return -1;
	}
	if (opts.retval != want_verdict) {
		fprintf(stderr, "bench_xdp_prog: verdict %u, expected %u\n", opts.retval,
			want_verdict);
		return -1;
	}
	*duration = opts.duration;
	return 0;
}

/* One run of REPEAT on frame, checking what it did: the verdict, the frame
 * left at the end and, for the DNAT path, that every iteration was
 * redirected (rx_packets of the workload veth grows by exactly REPEAT). */
static int measure_repeat(struct bench *b, const uint8_t *frame, size_t len, uint32_t verdict,
			  const uint8_t *want, size_t want_len, uint32_t *ns)
{
	uint64_t rx0 = rx_packets(b), rx;
	uint8_t out[HC_PKT_MAX];

	if (run(b, frame, len, REPEAT, verdict, out, ns))
		return -1;
	rx = rx_packets(b) - rx0;
	if (rx != (verdict == XDP_REDIRECT ? REPEAT : 0)) {
		fprintf(stderr, "bench_xdp_prog: %llu of %d iterations redirected\n",
			(unsigned long long)rx, REPEAT);
		return -1;
	}
	if (memcmp(out, want, want_len)) {
		fprintf(stderr, "bench_xdp_prog: the frame left is not the expected one\n");
		return -1;
	}
	return 0;
}

/* Mean of the kernel's per-call duration over SINGLE_CALLS calls of repeat 1
 * on the pristine frame. */
static int measure_single(struct bench *b, const uint8_t *frame, size_t len, uint32_t verdict,
			  double *mean)
{
	uint8_t out[HC_PKT_MAX];
	uint64_t sum = 0;

	for (int i = 0; i < SINGLE_CALLS; i++) {
		uint32_t ns;

		if (run(b, frame, len, 1, verdict, out, &ns))
			return -1;
		sum += ns;
	}
	*mean = (double)sum / SINGLE_CALLS;
	return 0;
}

static int setup_maps(struct bench *b)
{
	static const char *const hosts[] = { HC_BPFNET_NODE4, HC_BPFNET_BACKEND4 };
	struct hc_service_val svc = { .count = 1 };
	struct hc_service_key key = { .proto = IPPROTO_TCP };
	struct hc_wl_info wl = { 0 };
	uint32_t ifindex = (uint32_t)b->net.wl_ifindex;
	int hosts_fd = bpf_map__fd(b->skel->maps.hc_host_addrs);
	int svc_fd = bpf_map__fd(b->skel->maps.hc_services);
	uint8_t one = 1;

	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct hc_ipaddr a;

		hc_bpfnet_addr(hosts[i], &a);
		if (bpf_map_update_elem(hosts_fd, &a, &one, BPF_ANY))
			return -errno;
	}
	hc_bpfnet_addr(HC_BPFNET_BACKEND4, &svc.backends[0].addr);
	svc.backends[0].port = BACKEND_PORT;
	/* The node port, and the backend's own port mapping to itself (see
	 * the comment at the top). */
	key.port = NODE_PORT;
	if (bpf_map_update_elem(svc_fd, &key, &svc, BPF_ANY))
		return -errno;
	key.port = BACKEND_PORT;
	if (bpf_map_update_elem(svc_fd, &key, &svc, BPF_ANY))
		return -errno;
	/* The workload behind the veth, as the agent records it when it
	 * attaches TC there: established flows then reuse their next hop. */
	wl.addr = svc.backends[0].addr;
	snprintf(wl.id, sizeof(wl.id), "bench");
	if (bpf_map_update_elem(bpf_map__fd(b->skel->maps.hc_workloads), &ifindex, &wl, BPF_ANY))
		return -errno;
	return hc_bpfnet_percpu_zero(b->stats, &ifindex, 6);
}

int main(void)
{
	struct hc_pktspec pass_spec = {
		.eth_dst = HC_BPFNET_UPLINK_MAC, .eth_src = HC_BPFNET_GW_MAC,
		.src = HC_BPFNET_CLIENT4, .dst = HC_BPFNET_NODE4, .proto = IPPROTO_TCP,
		.sport = 40000, .dport = NODE_PORT + 1, .tcp_flags = TH_ACK, .payload_len = 6,
	};
	struct hc_pktspec dnat_spec = pass_spec, want_spec;
	uint8_t pass[HC_PKT_MAX], dnat[HC_PKT_MAX], want[HC_PKT_MAX];
	double pass_ns[RUNS], dnat_ns[RUNS], ratio[RUNS], pass_single, dnat_single;
	double pass_med, dnat_med;
	struct bench b = { 0 };
	char why[256];
	int pass_len, dnat_len, want_len, err, rc = 1;

	dnat_spec.dport = NODE_PORT;
	want_spec = dnat_spec;
	want_spec.dst = HC_BPFNET_BACKEND4;
	want_spec.dport = BACKEND_PORT;
	want_spec.eth_src = HC_BPFNET_WL_MAC;
	want_spec.eth_dst = "02:00:00:00:02:02";
	pass_len = hc_pkt_build(&pass_spec, pass, sizeof(pass), NULL);
	dnat_len = hc_pkt_build(&dnat_spec, dnat, sizeof(dnat), NULL);
	want_len = hc_pkt_build(&want_spec, want, sizeof(want), NULL);
	if (pass_len < 0 || dnat_len < 0 || want_len < 0) {
		fprintf(stderr, "bench_xdp_prog: building the frames failed\n");
		return 1;
	}

	if (hc_bpfnet_enter(&b.net, why, sizeof(why))) {
		printf("bench_xdp_prog: skipped: %s\n", why);
		return EXIT_SKIP;
	}
	b.skel = hc_xdp__open();
	if (!b.skel) {
		fprintf(stderr, "bench_xdp_prog: hc_xdp__open: %s\n", strerror(errno));
		return 1;
	}
	hc_bpfnet_unpin(b.skel->obj);
	err = hc_xdp__load(b.skel);
	if (err) {
		fprintf(stderr, "bench_xdp_prog: hc_xdp__load: %s\n", strerror(-err));
		goto out;
	}
	b.prog = bpf_program__fd(b.skel->progs.hc_xdp_ingress);
	b.stats = bpf_map__fd(b.skel->maps.hc_wl_stats);
	err = setup_maps(&b);
	if (err) {
		fprintf(stderr, "bench_xdp_prog: filling the maps: %s\n", strerror(-err));
		goto out;
	}

	for (int r = 0; r < RUNS; r++) {
		uint32_t p_ns, d_ns;

		if (measure_repeat(&b, pass, (size_t)pass_len, XDP_PASS, pass, (size_t)pass_len,
				   &p_ns) ||
		    measure_repeat(&b, dnat, (size_t)dnat_len, XDP_REDIRECT, want,
				   (size_t)want_len, &d_ns))
			goto out;
		pass_ns[r] = p_ns;
		dnat_ns[r] = d_ns;
		ratio[r] = p_ns ? (double)d_ns / p_ns : 0.0;
	}
	if (measure_single(&b, pass, (size_t)pass_len, XDP_PASS, &pass_single) ||
	    measure_single(&b, dnat, (size_t)dnat_len, XDP_REDIRECT, &dnat_single))
		goto out;

	pass_med = hc_bench_median(pass_ns, RUNS);
	dnat_med = hc_bench_median(dnat_ns, RUNS);
	printf("hc_xdp_ingress, %d-byte TCP frames, BPF_PROG_TEST_RUN repeat %d, "
	       "%d alternating runs per path (median, min-max):\n", pass_len, REPEAT, RUNS);
	printf("  pass-through (no service)      %5.0f ns/packet  (%.0f-%.0f)\n", pass_med,
	       pass_ns[0], pass_ns[RUNS - 1]);
	printf("  DNAT + redirect (established)  %5.0f ns/packet  (%.0f-%.0f)\n", dnat_med,
	       dnat_ns[0], dnat_ns[RUNS - 1]);
	printf("  ratio DNAT / pass-through      %5.2f  (median of the per-run ratios %.2f)\n",
	       pass_med > 0 ? dnat_med / pass_med : 0.0, hc_bench_median(ratio, RUNS));
	printf("cross-check, repeat 1 on a fresh frame, mean of %d calls (includes the "
	       "timer's own cost per call):\n", SINGLE_CALLS);
	printf("  pass-through %.1f ns, DNAT %.1f ns, ratio %.2f\n", pass_single, dnat_single,
	       pass_single > 0 ? dnat_single / pass_single : 0.0);
	rc = 0;
out:
	hc_xdp__destroy(b.skel); /* the namespace goes with the process */
	return rc;
}
