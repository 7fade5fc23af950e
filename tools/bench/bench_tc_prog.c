/* Cost of the workload egress policy: ns per packet of hc_tc_from_wl (and
 * hc_tc_to_wl, which now notes flows) under BPF_PROG_TEST_RUN, the program
 * before the policy (built by `make bench` from git, TC_BASE_REV in the
 * Makefile, into $HC_BUILD/bench/base/hc_tc.bpf.o) beside the current one,
 * on the same frames, in one run: allowed traffic (data to the internet,
 * data to a member's proxy port, a DNS query to the node, a reply into the
 * workload) and denied traffic (a SYN to a member's :8000, which both
 * refuse; an ACK to it, which only the new one refuses). Each figure is the
 * kernel's mean over 1,000,000 repeats, median of 9 runs alternating
 * between the programs; no frame is rewritten, so every repeat takes the
 * same path (the verdict is checked).
 *
 * Needs root; runs in a network namespace of its own (tests/lib/bpfnet.h),
 * pins nothing. Exit 0, 1 on a failure, 77 when it cannot run here. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "benchstat.h"
#include "bpfnet.h"
#include "hc_tc.skel.h"
#include "pktbuild.h"

#define REPEAT 1000000
#define RUNS 9
#define EXIT_SKIP 77
#define WORKLOAD4 HC_BPFNET_BACKEND4
#define MEMBER4 "198.51.100.2"
#define INTERNET4 "192.0.2.10"
#define PROXY_PORT 443

struct prog_set {
	struct bpf_object *obj;
	int from_wl, to_wl;
};

struct frame {
	const char *what;
	struct hc_pktspec spec;
	bool to_wl; /* run hc_tc_to_wl instead */
	int old_verdict, new_verdict;
	uint8_t buf[HC_PKT_MAX];
	int len;
	double ns[2][RUNS]; /* [old, new][run] */
};

/* Writes value (our layout) into the map called name of obj, cut or padded
 * with zeros to the map's own value size: the baseline's maps have the
 * older, shorter layouts (values are append-only). */
static int put(struct bpf_object *obj, const char *name, const void *key, const void *value,
	       size_t size)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
	char buf[16384] = { 0 };
	size_t vsize;

	if (!m)
		return 0; /* the baseline has no such map */
	vsize = bpf_map__value_size(m);
	if (vsize > sizeof(buf))
		return -E2BIG;
	memcpy(buf, value, size < vsize ? size : vsize);
	return bpf_map_update_elem(bpf_map__fd(m), key, buf, BPF_ANY) ? -errno : 0;
}

static int fill_maps(struct bpf_object *obj, int wl_ifindex)
{
	static const char *const local[] = { HC_BPFNET_NODE4, HC_BPFNET_WL_GW4 };
	static struct hc_port_bitmap proxy;
	struct hc_config cfg = { .workload_prefix = HC_BPFNET_WL_PREFIX4 };
	struct hc_wl_info wl = { .id = "bench", .flags = HC_WL_F_ISOLATE };
	struct hc_wl_stats zero_stats[512] = { 0 };
	uint32_t zero = 0, ifindex = (uint32_t)wl_ifindex;
	uint8_t one = 1, peer = HC_MEMBER_F_PEER, mine = HC_MEMBER_F_LOCAL;
	struct hc_ipaddr a;
	int rc = 0;

	hc_bpfnet_addr(HC_BPFNET_WL_NET4, &cfg.workload_net);
	cfg.host_allowed[0] = (struct hc_port_rule){ .port = 53, .proto = IPPROTO_UDP };
	cfg.host_allowed[1] = (struct hc_port_rule){ .port = 53, .proto = IPPROTO_TCP };
	hc_bpfnet_addr(WORKLOAD4, &wl.addr);
	proxy.bits[PROXY_PORT / 64] |= 1ull << (PROXY_PORT % 64);
	rc = rc ? rc : put(obj, "hc_config", &zero, &cfg, sizeof(cfg));
	rc = rc ? rc : put(obj, "hc_workloads", &ifindex, &wl, sizeof(wl));
	rc = rc ? rc : put(obj, "hc_proxy_ports", &zero, &proxy, sizeof(proxy));
	if (!rc && bpf_map_update_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, "hc_wl_stats")),
				       &ifindex, zero_stats, BPF_ANY))
		rc = -errno;
	for (size_t i = 0; !rc && i < sizeof(local) / sizeof(local[0]); i++) {
		hc_bpfnet_addr(local[i], &a);
		rc = put(obj, "hc_host_addrs", &a, &one, 1);
		rc = rc ? rc : put(obj, "hc_members", &a, &mine, 1);
	}
	hc_bpfnet_addr(MEMBER4, &a);
	rc = rc ? rc : put(obj, "hc_members", &a, &peer, 1);
	/* The old program counted the old way: the member is a host address. */
	if (!rc && !bpf_object__find_map_by_name(obj, "hc_members"))
		rc = put(obj, "hc_host_addrs", &a, &one, 1);
	return rc;
}

static int load_set(struct prog_set *s, struct bpf_object *obj, int wl_ifindex)
{
	int err;

	s->obj = obj;
	hc_bpfnet_unpin(obj);
	err = bpf_object__load(obj);
	if (err)
		return err;
	s->from_wl = bpf_program__fd(bpf_object__find_program_by_name(obj, "hc_tc_from_wl"));
	s->to_wl = bpf_program__fd(bpf_object__find_program_by_name(obj, "hc_tc_to_wl"));
	return fill_maps(obj, wl_ifindex);
}

static int run(int prog, int ifindex, struct frame *f, int want, uint32_t *ns)
{
	struct __sk_buff ctx = { .ifindex = (uint32_t)ifindex };
	uint8_t out[HC_PKT_MAX];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->buf, .data_size_in = (uint32_t)f->len,
		    .data_out = out, .data_size_out = sizeof(out), .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = REPEAT);

	if (bpf_prog_test_run_opts(prog, &opts)) {
		fprintf(stderr, "bench_tc_prog: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
		return -1;
	}
	if ((int)opts.retval != want) {
		fprintf(stderr, "bench_tc_prog: %s: verdict %d, expected %d\n", f->what,
			(int)opts.retval, want);
		return -1;
	}
	*ns = opts.duration;
	return 0;
}

/* $HC_BUILD/bench/base/hc_tc.bpf.o, found beside this executable. */
static void baseline_path(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	self[n > 0 ? n : 0] = '\0';
	snprintf(out, len, "%s/base/hc_tc.bpf.o", dirname(self));
}

#define WIRE .eth_dst = HC_BPFNET_WL_MAC, .eth_src = "02:00:00:00:02:02", .src = WORKLOAD4
#define INTO .eth_dst = "02:00:00:00:02:02", .eth_src = HC_BPFNET_WL_MAC, .dst = WORKLOAD4

int main(void)
{
	struct frame frames[] = {
		{ .what = "allowed: tcp data to the internet",
		  .spec = { WIRE, .dst = INTERNET4, .proto = IPPROTO_TCP, .sport = 40000,
			    .dport = 443, .tcp_flags = TH_ACK, .payload_len = 100 },
		  .old_verdict = TC_ACT_OK, .new_verdict = TC_ACT_OK },
		{ .what = "allowed: tcp data to a member's proxy port",
		  .spec = { WIRE, .dst = MEMBER4, .proto = IPPROTO_TCP, .sport = 40000,
			    .dport = PROXY_PORT, .tcp_flags = TH_ACK, .payload_len = 100 },
		  .old_verdict = TC_ACT_OK, .new_verdict = TC_ACT_OK },
		{ .what = "allowed: udp dns query to the node",
		  .spec = { WIRE, .dst = HC_BPFNET_WL_GW4, .proto = IPPROTO_UDP, .sport = 40000,
			    .dport = 53, .payload_len = 40 },
		  .old_verdict = TC_ACT_OK, .new_verdict = TC_ACT_OK },
		{ .what = "allowed: tcp data into the workload (to_wl)", .to_wl = true,
		  .spec = { INTO, .src = INTERNET4, .proto = IPPROTO_TCP, .sport = 443,
			    .dport = 40000, .tcp_flags = TH_ACK, .payload_len = 100 },
		  .old_verdict = TC_ACT_OK, .new_verdict = TC_ACT_OK },
		{ .what = "denied: tcp syn to a member's :8000",
		  .spec = { WIRE, .dst = MEMBER4, .proto = IPPROTO_TCP, .sport = 40000,
			    .dport = 8000, .tcp_flags = TH_SYN },
		  .old_verdict = TC_ACT_SHOT, .new_verdict = TC_ACT_SHOT },
		{ .what = "denied: tcp ack to a member's :8000 (before: passed)",
		  .spec = { WIRE, .dst = MEMBER4, .proto = IPPROTO_TCP, .sport = 40000,
			    .dport = 8000, .tcp_flags = TH_ACK, .payload_len = 100 },
		  .old_verdict = TC_ACT_OK, .new_verdict = TC_ACT_SHOT },
	};
	enum { NF = sizeof(frames) / sizeof(frames[0]) };
	struct prog_set sets[2] = { 0 };
	struct hc_bpfnet net;
	struct hc_tc *skel = NULL;
	struct bpf_object *base = NULL;
	char why[256], path[PATH_MAX];
	int rc = 1, err;

	for (int i = 0; i < NF; i++) {
		frames[i].len = hc_pkt_build(&frames[i].spec, frames[i].buf, sizeof(frames[i].buf),
					     NULL);
		if (frames[i].len < 0) {
			fprintf(stderr, "bench_tc_prog: building %s failed\n", frames[i].what);
			return 1;
		}
	}
	baseline_path(path, sizeof(path));
	if (access(path, R_OK)) {
		printf("bench_tc_prog: skipped: no baseline program at %s (make bench builds it "
		       "from git)\n", path);
		return EXIT_SKIP;
	}
	if (hc_bpfnet_enter(&net, why, sizeof(why))) {
		printf("bench_tc_prog: skipped: %s\n", why);
		return EXIT_SKIP;
	}
	base = bpf_object__open_file(path, NULL);
	skel = hc_tc__open();
	if (!base || !skel) {
		fprintf(stderr, "bench_tc_prog: opening the programs: %s\n", strerror(errno));
		goto out;
	}
	err = load_set(&sets[0], base, net.wl_ifindex);
	if (!err)
		err = load_set(&sets[1], skel->obj, net.wl_ifindex);
	if (err) {
		fprintf(stderr, "bench_tc_prog: loading or filling the maps: %s\n", strerror(-err));
		goto out;
	}
	for (int r = 0; r < RUNS; r++) {
		for (int i = 0; i < NF; i++) {
			struct frame *f = &frames[i];

			for (int v = 0; v < 2; v++) {
				uint32_t ns;

				if (run(f->to_wl ? sets[v].to_wl : sets[v].from_wl, net.wl_ifindex,
					f, v ? f->new_verdict : f->old_verdict, &ns))
					goto out;
				f->ns[v][r] = ns;
			}
		}
	}
	printf("hc_tc_from_wl / hc_tc_to_wl per packet, BPF_PROG_TEST_RUN repeat %d, median of "
	       "%d alternating runs (ns):\n", REPEAT, RUNS);
	printf("  %-52s %8s %8s %6s\n", "", "before", "after", "ratio");
	for (int i = 0; i < NF; i++) {
		double old = hc_bench_median(frames[i].ns[0], RUNS), new = hc_bench_median(frames[i].ns[1], RUNS);

		printf("  %-52s %8.1f %8.1f %6.2f\n", frames[i].what, old, new,
		       old > 0 ? new / old : 0.0);
	}
	printf("  (before: %s)\n", path);
	rc = 0;
out:
	hc_tc__destroy(skel);
	bpf_object__close(base);
	return rc;
}
