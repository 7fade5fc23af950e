/*
 * Gossip at 1,000 nodes on the simulated network and clock: hypercore's own
 * gossip engine (agent/gossip: serf over memberlist, the product code) for
 * every node, on tests/lib/simnet (1 ms links, deterministic for a seed).
 * Prints convergence after a join and after a failure, false failure
 * verdicts under 0, 1 and 5 % packet loss (and with Lifeguard's mechanisms
 * switched off, for its published reduction), bytes per node per second,
 * and the engine's memory per member, each beside what memberlist, serf
 * and Lifeguard publish, with the ratio where the figures compare.
 *
 * Usage: bench_gossip_sim [--quick] [--nodes N] [--seed S] [--hypercore]
 * No root, no sockets; single-threaded.
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip/gossip.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "gossipsim.h"
#include "log/log.h"
#include "simnet.h"

struct opts {
	int nodes;
	uint64_t seed;
	bool quick;
	const struct hc_gossipsim_timing *timing;
	uint32_t steady_s, fp_s, stagger_ms;
};

static double wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static int64_t pct(const int64_t *v, size_t n, double p)
{
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);

	return n ? v[rank ? rank - 1 : 0] : -1;
}

/* ---- what serf and memberlist publish ---- */

/*
 * Serf's convergence simulator (serf.io/docs/internals/simulator.html, the
 * page's simulator.js): after x gossip rounds a fraction
 *   1 / (1 + (n + 1) e^(-c n x)),  c = fanout / n x (1 - loss) x (1 - failed) x 0.5
 * of the nodes has a message, sampled at whole rounds; its graph stops at
 * 99.99 %. Returns the seconds until that fraction reaches p.
 */
static double serf_sim_seconds(int n, unsigned fanout, double interval_s, double loss,
			       double p)
{
	double cn = fanout * (1.0 - loss) * 0.5;

	for (int round = 0; round < 1000; round++) {
		double frac = 1.0 / (1.0 + (n + 1) * exp(-cn * round));

		if (frac >= p)
			return round * interval_s;
	}
	return -1;
}

/* The simulator's "estimated max bandwidth": a full 1,400-byte packet to
 * each of fanout nodes every round, times two (in and out), in bytes/s. */
static double serf_sim_bytes_per_s(unsigned fanout, double interval_s)
{
	return 1400.0 * fanout / interval_s * 2.0;
}

/* memberlist's suspicion timeout: SuspicionMult x max(1, log10(n)) x
 * ProbeInterval, and Lifeguard's upper bound SuspicionMaxTimeoutMult (6)
 * times that, brought down towards the minimum by confirmations. */
static double ml_suspicion_s(const struct hc_gossipsim_timing *t, int n)
{
	double scale = log10((double)n) > 1.0 ? log10((double)n) : 1.0;

	return t->suspicion_mult * scale * t->probe_interval_ms / 1000.0;
}

/* ---- measurements ---- */

struct spread {
	int64_t p50, p99, max;
	size_t n;
};

/* Times at which each observer learned; all must have. */
static int spread_of(struct hc_gossipsim *s, int nodes, int subject, bool fail,
		     struct spread *out)
{
	int64_t *v = calloc((size_t)nodes, sizeof(*v));
	size_t k = 0;

	if (!v)
		return -ENOMEM;
	for (int i = 0; i < nodes; i++) {
		int64_t t = fail ? hc_gossipsim_fail_ms(s, i) : hc_gossipsim_join_ms(s, i);

		if (i == subject || hc_simnet_is_down(hc_gossipsim_net(s), i))
			continue;
		if (t < 0) {
			free(v);
			return -ETIMEDOUT;
		}
		v[k++] = t;
	}
	qsort(v, k, sizeof(*v), cmp_i64);
	*out = (struct spread){ pct(v, k, 50), pct(v, k, 99), pct(v, k, 100), k };
	free(v);
	return 0;
}

struct traffic {
	double out_p50, out_max, in_p50, in_max, out_mean, in_mean, stream_mean;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Bytes per node per second over the next `seconds`, datagrams apart from
 * streams (push/pull). */
static int measure_traffic(struct hc_gossipsim *s, int nodes, uint32_t seconds,
			   struct traffic *out)
{
	struct hc_simnet *net = hc_gossipsim_net(s);
	struct hc_simnet_traffic *before = calloc((size_t)nodes, sizeof(*before));
	double *o = calloc((size_t)nodes, sizeof(*o)), *in = calloc((size_t)nodes, sizeof(*in));
	double so = 0;

	if (!before || !o || !in) {
		free(before), free(o), free(in);
		return -ENOMEM;
	}
	for (int i = 0; i < nodes; i++)
		before[i] = *hc_simnet_traffic(net, i);
	hc_simnet_run_ms(net, seconds * 1000u);
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < nodes; i++) {
		const struct hc_simnet_traffic *t = hc_simnet_traffic(net, i);

		o[i] = (double)(t->bytes_out - before[i].bytes_out) / seconds;
		in[i] = (double)(t->bytes_in - before[i].bytes_in) / seconds;
		so += (double)(t->stream_bytes_out - before[i].stream_bytes_out) / seconds;
		out->out_mean += o[i] / nodes;
		out->in_mean += in[i] / nodes;
	}
	out->stream_mean = so / nodes;
	qsort(o, (size_t)nodes, sizeof(*o), cmp_double);
	qsort(in, (size_t)nodes, sizeof(*in), cmp_double);
	out->out_p50 = o[nodes / 2];
	out->out_max = o[nodes - 1];
	out->in_p50 = in[nodes / 2];
	out->in_max = in[nodes - 1];
	free(before), free(o), free(in);
	return 0;
}

/* ---- memory per member ---- */

/*
 * One engine (serf + memberlist) learns `members` members from a single
 * push/pull, as a joining node does; the broadcast queue that learning
 * fills (memberlist re-gossips each new alive) is drained by gossip to
 * nowhere; then the heap in use (mallinfo2 uordblks: what malloc handed
 * out, chunk headers included) is compared with before. Member names are
 * 36-character node ids and carry no tags, as hypercore's by default.
 */
static int memory_per_member(int members, double *bytes)
{
	struct hc_gossipsim_timing t = hc_gossipsim_lan;
	struct hc_gossipsim *s;
	struct hc_gossip_push_node *pn = NULL;
	struct hc_gossip_push_pull pp = { .join = true };
	struct hc_gossip_mp_writer w, reply;
	struct hc_gossip_stream_scan scan = { 0 };
	char (*names)[40] = NULL;
	uint8_t (*ips)[4] = NULL;
	static const uint8_t vsn[6] = { 1, 5, 2, 2, 5, 5 }, meta[1] = { 0xff };
	size_t before, after;
	int r = -ENOMEM;

	/* Probes and push/pull never come due; gossip drains the queue fast. */
	t.probe_interval_ms = 3600000;
	t.push_pull_interval_ms = 3600000;
	t.gossip_interval_ms = 1;
	t.gossip_nodes = 16;
	hc_gossip_mp_writer_init(&w, 0);
	hc_gossip_mp_writer_init(&reply, 0);
	s = hc_gossipsim_new(1, &t, 1);
	pn = calloc((size_t)members, sizeof(*pn));
	names = calloc((size_t)members, sizeof(*names));
	ips = calloc((size_t)members, sizeof(*ips));
	if (!s || !pn || !names || !ips || hc_gossipsim_start(s, 0) < 0)
		goto out;
	for (int i = 0; i < members; i++) {
		/* addresses no simulated node has: what is sent there is lost */
		snprintf(names[i], sizeof(names[i]), "7d2e4f10-0b1c-4a5d-8e6f-%012d", i);
		ips[i][0] = 10, ips[i][1] = 200, ips[i][2] = (uint8_t)(i >> 8),
		ips[i][3] = (uint8_t)i;
		pn[i] = (struct hc_gossip_push_node){
			.addr = { ips[i], 4 }, .incarnation = 1, .meta = { meta, 1 },
			.name = hc_gossip_bytes_str(names[i]), .port = 7946,
			.state = HC_GOSSIP_STATE_ALIVE, .vsn = { vsn, 6 },
		};
	}
	pp.nodes = pn;
	pp.nnodes = (size_t)members;
	r = hc_gossip_push_pull_encode(&pp, &w);
	if (r < 0)
		goto out;
	hc_simnet_run_ms(hc_gossipsim_net(s), 10);
	before = mallinfo2().uordblks;
	r = hc_ml_on_stream(hc_gossip_memberlist(hc_gossipsim_node(s, 0)),
			    hc_simnet_addr(hc_gossipsim_net(s), 0), &scan, w.buf, w.len, &reply);
	if (r < 0)
		goto out;
	hc_gossip_mp_writer_fini(&reply); /* the answer is not the member's cost */
	hc_simnet_run_ms(hc_gossipsim_net(s), 2000);
	after = mallinfo2().uordblks;
	if (hc_gossip_queue_depth(hc_gossipsim_node(s, 0)) != 0 ||
	    hc_ml_member_count(hc_gossip_memberlist(hc_gossipsim_node(s, 0))) !=
		    (size_t)members + 1) {
		r = -EAGAIN;
		goto out;
	}
	*bytes = ((double)after - (double)before) / members;
	r = 0;
out:
	hc_gossip_mp_writer_fini(&w);
	hc_gossip_mp_writer_fini(&reply);
	hc_gossipsim_free(s);
	free(pn), free(names), free(ips);
	return r;
}

/* ---- the run ---- */

static int parse(int argc, char **argv, struct opts *o)
{
	bool nodes_given = false;

	*o = (struct opts){ .nodes = 1000, .seed = 1, .timing = &hc_gossipsim_lan,
			    .steady_s = 20, .fp_s = 30, .stagger_ms = 20 };
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			o->quick = true;
			o->steady_s = 10;
			o->fp_s = 15;
		} else if (strcmp(argv[i], "--hypercore") == 0) {
			o->timing = &hc_gossipsim_hypercore;
		} else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
			o->nodes = atoi(argv[++i]);
			nodes_given = true;
		} else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			o->seed = strtoull(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: %s [--quick] [--nodes N] [--seed S] [--hypercore]\n",
				argv[0]);
			return -EINVAL;
		}
	}
	if (o->quick && !nodes_given)
		o->nodes = 200;
	if (o->nodes < 10 || o->nodes > 5000) {
		fprintf(stderr, "--nodes: 10 to 5000\n");
		return -EINVAL;
	}
	return 0;
}

static void print_header(const struct opts *o)
{
	const struct hc_gossipsim_timing *t = o->timing;

	printf("gossip on the simulated network: %d nodes, seed %llu%s\n", o->nodes,
	       (unsigned long long)o->seed, o->quick ? " (--quick)" : "");
	printf("   engine: agent/gossip (serf over memberlist, the agent's code); "
	       "links 1 ms, deterministic\n");
	printf("   timing: %s: gossip %u ms to %u nodes, probe %u ms (timeout %u ms), "
	       "suspicion x%u, push/pull %u s\n",
	       t->name, t->gossip_interval_ms, t->gossip_nodes, t->probe_interval_ms,
	       t->probe_timeout_ms, t->suspicion_mult, t->push_pull_interval_ms / 1000);
}

static void print_spread(const char *what, const struct spread *sp)
{
	printf("   %-28s p50 %6.2f s   p99 %6.2f s   max %6.2f s   (%zu nodes)\n", what,
	       sp->p50 / 1000.0, sp->p99 / 1000.0, sp->max / 1000.0, sp->n);
}

static int run_join(struct hc_gossipsim *s, const struct opts *o)
{
	const struct hc_gossipsim_timing *t = o->timing;
	int n = o->nodes, joiner = n - 1;
	double iv = t->gossip_interval_ms / 1000.0;
	double s50 = serf_sim_seconds(n, t->gossip_nodes, iv, 0, 0.50);
	double s99 = serf_sim_seconds(n, t->gossip_nodes, iv, 0, 0.99);
	double s9999 = serf_sim_seconds(n, t->gossip_nodes, iv, 0, 0.9999);
	struct spread sp;
	int r;

	if (hc_gossipsim_start(s, joiner) < 0)
		return -1;
	hc_gossipsim_watch(s, joiner);
	if (hc_gossipsim_join(s, joiner, 0) < 0 || hc_gossipsim_run_until_joined(s, 120000) < 0)
		return -1;
	r = spread_of(s, n, joiner, false, &sp);
	if (r < 0)
		return r;
	printf("\njoin: node %d joins through node 0; time until each node lists it alive\n",
	       joiner);
	print_spread("hypercore (simulated)", &sp);
	printf("   %-28s 50%% %6.2f s   99%% %6.2f s   99.99%% %4.2f s   (model, %d nodes)\n",
	       "serf convergence simulator", s50, s99, s9999, n);
	printf("   ratio hypercore/serf sim     p50 x%.2f      p99 x%.2f      max/99.99%% x%.2f\n",
	       sp.p50 / 1000.0 / s50, sp.p99 / 1000.0 / s99, sp.max / 1000.0 / s9999);
	return 0;
}

static int run_failure(struct hc_gossipsim *s, const struct opts *o, int victim)
{
	const struct hc_gossipsim_timing *t = o->timing;
	int n = o->nodes;
	double smin = ml_suspicion_s(t, n);
	struct spread sp;
	int r;

	hc_gossipsim_watch(s, victim);
	hc_simnet_set_down(hc_gossipsim_net(s), victim, true);
	if (hc_gossipsim_run_until_failed(s, 300000) < 0)
		return -1;
	r = spread_of(s, n, victim, true, &sp);
	if (r < 0)
		return r;
	printf("\nfailure: node %d stops answering; time until each node marks it failed\n",
	       victim);
	print_spread("hypercore (simulated)", &sp);
	printf("   %-28s detection <= %.1f s (probe round) + suspicion %.1f s .. %.1f s\n",
	       "memberlist (documented)", t->probe_interval_ms / 1000.0, smin, 6 * smin);
	printf("   (suspicion = SuspicionMult x log10(n) x ProbeInterval, Lifeguard's "
	       "confirmations pull it from 6x to 1x)\n");
	printf("   ratio p50 / (probe + min suspicion) x%.2f\n",
	       sp.p50 / 1000.0 / (t->probe_interval_ms / 1000.0 + smin));
	printf("   serf's convergence simulator does not model failure detection: "
	       "no published figure\n");
	return 0;
}

static int run_false_positives(struct hc_gossipsim *s, const struct opts *o)
{
	static const unsigned losses[] = { 0, 1, 5 };
	struct hc_simnet *net = hc_gossipsim_net(s);

	printf("\nfalse failure verdicts over %u simulated s (members that never stopped, "
	       "declared failed)\n", o->fp_s);
	printf("   %-6s %-18s %-18s %-14s\n", "loss", "verdicts", "distinct members",
	       "refutations");
	for (size_t i = 0; i < sizeof(losses) / sizeof(losses[0]); i++) {
		struct hc_gossipsim_false f;
		uint64_t ref0 = hc_gossipsim_refutations(s);

		hc_simnet_set_loss(net, losses[i]);
		hc_gossipsim_false_reset(s);
		hc_simnet_run_ms(net, o->fp_s * 1000u);
		hc_gossipsim_false_get(s, &f);
		printf("   %3u %%  %-18llu %-18llu %-14llu\n", losses[i],
		       (unsigned long long)f.events, (unsigned long long)f.members,
		       (unsigned long long)(hc_gossipsim_refutations(s) - ref0));
	}
	hc_simnet_set_loss(net, 0);
	printf("   Lifeguard as the engine has it: local health (awareness, x%u timeouts at "
	       "most), suspicion confirmations (k = mult-2, 6x to 1x), nacks, "
	       "buddy (a suspect is told)\n", 8u);
	return 0;
}

/* Lifeguard's claim is about SWIM without it, under slow message
 * processing. Both runs here share the scenario: 5 % loss everywhere and
 * 1 % of the nodes slow (what is sent to them waits before they see it,
 * as on a CPU-starved node: 1.25 x the minimum suspicion timeout, long
 * enough for a fixed timeout to expire before the slow node hears a
 * refutation), the same cluster, one after the other. Counted: verdicts of failed about members that stayed up, split
 * into the healthy ones and the slow ones (the paper's "false positives at
 * healthy members" are the first). */

struct lg_result {
	uint64_t healthy_events, healthy, slow_events, slow;
};

static uint32_t slow_ms(const struct opts *o, int nodes)
{
	return (uint32_t)(1.25 * ml_suspicion_s(o->timing, nodes) * 1000.0);
}

static void run_lifeguard_case(struct hc_gossipsim *s, const struct opts *o, int nodes,
			       bool on, struct lg_result *r)
{
	struct hc_simnet *net = hc_gossipsim_net(s);
	int nslow = nodes / 100 ? nodes / 100 : 1;

	hc_gossipsim_set_lifeguard(s, on);
	hc_simnet_set_loss(net, 5);
	for (int i = 0; i < nslow; i++)
		hc_simnet_set_delay(net, 1 + i * (nodes / nslow), slow_ms(o, nodes));
	hc_gossipsim_false_reset(s);
	hc_simnet_run_ms(net, o->fp_s * 1000u);
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < nodes; i++) {
		uint64_t v = hc_gossipsim_wrong_verdicts(s, i);
		bool slow = false;

		for (int k = 0; k < nslow; k++)
			slow |= i == 1 + k * (nodes / nslow);
		if (slow) {
			r->slow_events += v;
			r->slow += v > 0;
		} else {
			r->healthy_events += v;
			r->healthy += v > 0;
		}
	}
	for (int i = 0; i < nslow; i++)
		hc_simnet_set_delay(net, 1 + i * (nodes / nslow), 0);
	hc_simnet_set_loss(net, 0);
	/* let refutations settle before the next case */
	hc_simnet_run_ms(net, slow_ms(o, nodes));
	hc_gossipsim_set_lifeguard(s, true);
}

static void print_ratio(const char *what, uint64_t off, uint64_t on)
{
	if (on)
		printf("   %-40s x%.1f\n", what, (double)off / (double)on);
	else if (off)
		printf("   %-40s > x%llu (none with Lifeguard)\n", what, (unsigned long long)off);
	else
		printf("   %-40s n/a (none either way)\n", what);
}

static void print_lg_row(const char *what, const struct lg_result *r)
{
	char a[40], b[40];

	snprintf(a, sizeof(a), "%llu verdicts (%llu members)",
		 (unsigned long long)r->healthy_events, (unsigned long long)r->healthy);
	snprintf(b, sizeof(b), "%llu verdicts (%llu members)",
		 (unsigned long long)r->slow_events, (unsigned long long)r->slow);
	printf("   %-22s %-28s %s\n", what, a, b);
}

static int run_lifeguard(struct hc_gossipsim *s, const struct opts *o, int nodes)
{
	struct lg_result off, on;
	int nslow = nodes / 100 ? nodes / 100 : 1;

	run_lifeguard_case(s, o, nodes, false, &off);
	run_lifeguard_case(s, o, nodes, true, &on);
	printf("\nLifeguard on and off: 5 %% loss and %d slow node%s (+%d ms before they see "
	       "a packet), %u simulated s each\n",
	       nslow, nslow > 1 ? "s" : "", slow_ms(o, nodes), o->fp_s);
	printf("   %-22s %-28s %s\n", "", "about healthy members", "about the slow ones");
	print_lg_row("SWIM (Lifeguard off)", &off);
	print_lg_row("with Lifeguard", &on);
	print_ratio("reduction at healthy members, ours:", off.healthy_events,
		    on.healthy_events);
	printf("   %-40s > x50 (arXiv:1707.00788; HashiCorp blog \"Making Gossip More Robust "
	       "with Lifeguard\", 2017)\n", "reduction published by Lifeguard:");
	printf("   comparable in kind, not in size: the paper's synthetic benchmarks vary "
	       "message-processing\n   delays at chosen members in a controlled testbed; here "
	       "the slow nodes are a fixed inbound\n   delay on top of random loss, in one "
	       "simulated run per case\n");
	printf("   off = awareness range 1 and suspicion fixed at its minimum; nacks and the "
	       "buddy system stay on in both\n");
	printf("   a slow member that cannot answer for longer than the suspicion timeout is "
	       "failed either way:\n   that is failure detection working, not a false "
	       "positive at a healthy member\n");
	return 0;
}

/* Mean and busiest node's bytes per second, sent and received, since the
 * start (the counters start at zero), over `ms` of simulated time. */
static void print_busy(struct hc_gossipsim *s, const struct opts *o, int nodes, int64_t ms)
{
	const struct hc_gossipsim_timing *t = o->timing;
	double model = serf_sim_bytes_per_s(t->gossip_nodes, t->gossip_interval_ms / 1000.0);
	double sec = ms / 1000.0, out = 0, in = 0, peak = 0;

	for (int i = 0; i < nodes; i++) {
		const struct hc_simnet_traffic *tr = hc_simnet_traffic(hc_gossipsim_net(s), i);
		double both = (double)(tr->bytes_out + tr->bytes_in) / sec;

		out += (double)tr->bytes_out / sec / nodes;
		in += (double)tr->bytes_in / sec / nodes;
		peak = both > peak ? both : peak;
	}
	printf("   while forming (the busiest the cluster gets): bytes per node per second "
	       "sent %.0f, received %.0f;\n   busiest node %.0f in+out = x%.2f the serf "
	       "simulator's estimated max (%.0f)\n",
	       out, in, peak, peak / model, model);
}

static int run_traffic(struct hc_gossipsim *s, const struct opts *o, int nodes)
{
	const struct hc_gossipsim_timing *t = o->timing;
	double model = serf_sim_bytes_per_s(t->gossip_nodes, t->gossip_interval_ms / 1000.0);
	struct traffic tr;

	if (measure_traffic(s, nodes, o->steady_s, &tr) < 0)
		return -1;
	printf("\nsteady state (idle: nothing to gossip, probes only), no loss, %u simulated "
	       "s: bytes per node per second\n", o->steady_s);
	printf("   %-28s sent %7.0f (p50 %.0f, max %.0f)   received %7.0f (p50 %.0f, max %.0f)\n",
	       "hypercore datagrams", tr.out_mean, tr.out_p50, tr.out_max, tr.in_mean, tr.in_p50,
	       tr.in_max);
	printf("   %-28s sent %7.0f (push/pull, each way)\n", "hypercore streams",
	       tr.stream_mean);
	printf("   %-28s %.0f in+out (%.1f kbit/s): full 1,400-byte packets to %u nodes "
	       "every %u ms\n",
	       "serf simulator upper bound", model, model * 8 / 1024, t->gossip_nodes,
	       t->gossip_interval_ms);
	printf("   ratio (sent+received+streams) / upper bound x%.3f (not comparable: the "
	       "model's figure is a ceiling\n   for saturated gossip, an idle cluster sends "
	       "only probes; see \"while forming\" above)\n",
	       (tr.out_mean + tr.in_mean + 2 * tr.stream_mean) / model);
	return 0;
}

static bool drained_pred(const void *s)
{
	return hc_gossipsim_queued((struct hc_gossipsim *)s) == 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct hc_gossipsim *s = NULL;
	double t0 = wall_s(), per_member = 0;
	int64_t formed, drained;
	int rc = 1;

	if (parse(argc, argv, &o) < 0)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows as it comes */
	hc_log_set_level(HC_LOG_ERROR);
	print_header(&o);

	if (memory_per_member(o.nodes, &per_member) < 0) {
		fprintf(stderr, "memory measurement failed\n");
		return 1;
	}
	printf("\nmemory: %.0f bytes per member (engine + serf member, after learning %d by "
	       "push/pull;\n   mallinfo2 uordblks delta, queues drained, malloc headers "
	       "included; no tags, 36-byte names)\n",
	       per_member, o.nodes);
	printf("   memberlist/serf publish no per-member memory figure\n");

	s = hc_gossipsim_new(o.nodes, o.timing, o.seed);
	if (!s)
		goto out;
	formed = hc_gossipsim_form(s, o.nodes - 1, o.stagger_ms, 600000);
	if (formed < 0) {
		fprintf(stderr, "the cluster did not form\n");
		goto out;
	}
	printf("\nformation: %d nodes joined node 0, one every %u ms; all list all alive "
	       "after %.1f simulated s (wall %.1f s so far)\n",
	       o.nodes - 1, o.stagger_ms, formed / 1000.0, wall_s() - t0);
	drained = hc_simnet_run_until(hc_gossipsim_net(s), drained_pred, s, 300000);
	if (drained < 0) {
		fprintf(stderr, "broadcast queues did not drain\n");
		goto out;
	}
	printf("   broadcast queues empty everywhere %.1f simulated s later\n", drained / 1000.0);
	print_busy(s, &o, o.nodes - 1, formed + drained);
	if (run_traffic(s, &o, o.nodes - 1) < 0 || run_join(s, &o) < 0 ||
	    run_failure(s, &o, o.nodes / 2) < 0 || run_false_positives(s, &o) < 0 ||
	    run_lifeguard(s, &o, o.nodes) < 0) {
		fprintf(stderr, "a measurement did not complete\n");
		goto out;
	}
	rc = 0;
out:
	hc_gossipsim_free(s);
	printf("\nwall time %.1f s, CPU %.1f s (one thread; the gap is other load on the "
	       "machine)\n", wall_s() - t0, cpu_s());
	return rc;
}
