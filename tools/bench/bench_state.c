/*
 * State by digest and delta against the full chunked state, at scale
 * (docs/cluster.md, "State by digest and delta"). 20 nodes run the real
 * agent/cluster code and real gossip engines on the simulated network and
 * clock (tests/lib simcluster: 1 ms per hop, pulls at 1 Gbit/s) with fake
 * runtimes, in one process:
 *
 *  - change: one workload more on a node that runs 10,000; the time until
 *    each other node routes it (p50/p99 over the receivers and changes,
 *    simulated ms), the bytes each receiver took off the wire meanwhile
 *    (all of its gossip, pulls included; push/pull streams and pull answers
 *    apart; and the bytes until it routed the change itself), with digests
 *    as now and with push/pull carrying serf's whole event ring (as before
 *    it left out superseded digests), and the CPU each receiver spent
 *    on it (real: thread CPU time around the cluster's handling of the
 *    received states, digests and pull answers);
 *    and what filled each receiver's window, by kind (probes, the change's
 *    own digests, other nodes' re-sent digests, push/pull, pulls...), beside
 *    a quiet cluster's gossip per node and second;
 *  - join: a 21st node joins 20 nodes holding 10,000 workloads in all (500
 *    each); the time until it routes every one, and its bytes;
 *  - receiver CPU per change as the owner grows (1,000, 10,000, 50,000
 *    workloads): digests checked by the signature over the whole state
 *    (the previous release's, field 7) against the set hash's (fields 14
 *    and 15), which costs the change, not the owner's size.
 *
 * Usage: bench_state [cpu | N]: every table; the CPU table alone; the
 * table of an owner of N alone.
 *
 * Both ways in one run: "chunked" is the old full-state broadcast
 * (--state-broadcast chunked), "digest" the new one. The clock and the
 * network are simulated, the CPU figures are measured.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchstat.h"
#include "cluster/cluster_int.h"
#include "log/log.h"
#include "simcluster.h"
#include "simnet.h"

#define NODES 20
#define CHANGES 5	       /* the CPU table's */
#define TABLE_CHANGES 20 /* the size tables': push/pulls fall in a few windows of as many */
#define LIMIT_MS 60000
#define QUIET_MS 60000 /* the background gossip is measured over as long */
#define KINDS HC_SIMCLUSTER_RX_KINDS
#define WINDOWS (TABLE_CHANGES * NODES)

/* What filled the receivers' windows, kind by kind (simcluster's rx_kind). */
struct breakdown {
	double kind_p50[KINDS], kind_p99[KINDS]; /* each kind's own, over the windows */
	/* the windows whose total is at the p50, the p99 and the largest:
	 * their kinds, then their total */
	double at[3][KINDS + 1];
	/* the change's own bytes per receiver: every copy of its digests and
	 * the pulls it set off, in its window and until the next change */
	double cost_p50, cost_p99, cost_all_p50, cost_all_p99;
	/* per node per second on the quiet cluster after the changes */
	double bg[KINDS], bg_total;
	double pp_digests; /* the digests' share of the push/pulls' unpacked bytes */
	int windows;	   /* how many */
};

struct result {
	double p50_ms, p99_ms, rx_p50, rx_p99, cpu_ms; /* change */
	double st_p50, st_p99; /* change: state bytes (chunks, digests, pulls) per receiver */
	/* change: per receiver, the push/pull streams and pull answers among
	 * the bytes on the wire (the rest is UDP gossip) */
	double pp_p50, pp_p99, pl_p50, pl_p99;
	/* change: per receiver, the bytes until it routed the change itself
	 * (the window above runs until the last receiver does) */
	double own_p50, own_p99;
	double pp_mean; /* change: one push/pull message as received, over the whole run */
	double join_ms, join_rx;
	bool change_timeout, join_timeout;
	struct breakdown bd;
};

static double pct(double *v, int n, double p)
{
	int i = (int)(p * (n - 1) + 0.5);

	qsort(v, (size_t)n, sizeof(*v), hc_bench_cmp_double);
	return v[i];
}

static void p50_p99(double *v, int n, double *p50, double *p99)
{
	*p50 = pct(v, n, 0.5);
	*p99 = pct(v, n, 0.99);
}

struct waiting {
	struct hc_simcluster *sc;
	const char *id, *owner;
	int64_t *at; /* per node: when it first routed id (-1: not yet) */
	int64_t now;
	uint64_t *rx_at; /* per node: its rx_bytes then (NULL: not kept) */
};

static bool all_route(const void *ctx)
{
	const struct waiting *w = ctx;
	bool all = true;

	for (int i = 0; i < w->sc->n; i++) {
		const char *o;

		if (!w->sc->nodes[i].c || strcmp(w->sc->nodes[i].name, w->owner) == 0)
			continue;
		if (w->at[i] < 0) {
			o = hc_cluster_state_owner(w->sc->nodes[i].c, w->id);
			if (o && strcmp(o, w->owner) == 0) {
				((struct waiting *)w)->at[i] = w->now;
				if (w->rx_at)
					w->rx_at[i] = w->sc->nodes[i].rx_bytes;
			}
		}
		all &= w->at[i] >= 0;
	}
	((struct waiting *)w)->now += 10; /* run_until checks every 10 ms */
	return all;
}

static bool settled(struct hc_simcluster *sc, const char *id)
{
	int64_t at[NODES + 1];
	struct waiting w = { sc, id, "n0", at, 0, NULL };

	for (int i = 0; i <= NODES; i++)
		at[i] = -1;
	return hc_simnet_run_until(sc->net, all_route, &w, LIMIT_MS) >= 0;
}

/* What c took off the wire as states: chunks, digests, pull answers. */
static uint64_t state_bytes(const struct hc_cluster *c)
{
	uint64_t n = 0;

	for (int k = 0; k < STATE_BYTES_KINDS; k++)
		n += c->state_bytes_received[k];
	return n;
}

/* The change's own bytes among kinds: its digests and the pulls they set off. */
static double change_cost(const double *kind)
{
	return kind[HC_SIMCLUSTER_RX_DIGEST_DELTA] + kind[HC_SIMCLUSTER_RX_PULL];
}

static double window_total(const double *kind)
{
	double t = 0;

	for (int k = 0; k < KINDS; k++)
		t += kind[k];
	return t;
}

static int by_total(const void *a, const void *b)
{
	double x = window_total(a), y = window_total(b);

	return x < y ? -1 : x > y;
}

/* The breakdown of nw windows' kinds (win, sorted here) and the change's
 * cost until the next change (all). */
static void breakdown_of(double (*win)[KINDS], double *all, int nw, struct breakdown *bd)
{
	double v[WINDOWS];
	int rank[3] = { (int)(0.5 * (nw - 1) + 0.5), (int)(0.99 * (nw - 1) + 0.5), nw - 1 };

	bd->windows = nw;

	for (int k = 0; k < KINDS; k++) {
		for (int i = 0; i < nw; i++)
			v[i] = win[i][k];
		p50_p99(v, nw, &bd->kind_p50[k], &bd->kind_p99[k]);
	}
	for (int i = 0; i < nw; i++)
		v[i] = change_cost(win[i]);
	p50_p99(v, nw, &bd->cost_p50, &bd->cost_p99);
	p50_p99(all, nw, &bd->cost_all_p50, &bd->cost_all_p99);
	qsort(win, (size_t)nw, sizeof(*win), by_total);
	for (int r = 0; r < 3; r++) {
		memcpy(bd->at[r], win[rank[r]], sizeof(win[0]));
		bd->at[r][KINDS] = window_total(win[rank[r]]);
	}
}

/* Every node's gossip over QUIET_MS with nothing changing: per node and
 * second, by kind; and what the push/pulls were made of. */
static void background(struct hc_simcluster *sc, struct breakdown *bd)
{
	uint64_t before[NODES][KINDS], plain = 0, digests = 0;

	for (int i = 0; i < NODES; i++) {
		memcpy(before[i], sc->nodes[i].rx_kind, sizeof(before[i]));
		plain -= sc->nodes[i].rx_pp_plain;
		digests -= sc->nodes[i].rx_pp_plain_digests;
	}
	hc_simnet_run_ms(sc->net, QUIET_MS);
	bd->bg_total = 0;
	for (int k = 0; k < KINDS; k++) {
		uint64_t sum = 0;

		for (int i = 0; i < NODES; i++)
			sum += sc->nodes[i].rx_kind[k] - before[i][k];
		bd->bg[k] = (double)sum / NODES / (QUIET_MS / 1000.0);
		bd->bg_total += bd->bg[k];
	}
	for (int i = 0; i < NODES; i++) {
		plain += sc->nodes[i].rx_pp_plain;
		digests += sc->nodes[i].rx_pp_plain_digests;
	}
	bd->pp_digests = plain ? (double)digests / (double)plain : 0;
}

/* One workload more on n0, which holds big, CHANGES times; n0 sends the
 * previous release's digests (no set hash) when whole_sig; every node's
 * push/pull sends serf's whole event ring (superseded digests too, as
 * before) when whole_ring. */
static void change(enum hc_cluster_state_mode mode, int big, int changes, bool whole_sig,
		   bool whole_ring, struct result *r)
{
	struct hc_simcluster *sc = hc_simcluster_new(NODES, 11);
	double lat[TABLE_CHANGES * NODES], rx[TABLE_CHANGES * NODES], st[TABLE_CHANGES * NODES];
	double pp[TABLE_CHANGES * NODES], pl[TABLE_CHANGES * NODES], own[TABLE_CHANGES * NODES];
	static double win[WINDOWS][KINDS]; /* each receiver's window by kind */
	double all[WINDOWS]; /* the change's own bytes until the next change */
	double cpu = 0;
	uint64_t streams = 0, stream_bytes = 0;
	int nlat = 0, nrx = 0;
	char id[HC_WORKLOAD_ID_LEN + 1];

	sc->period_ms = 5000; /* the agent's default */
	for (int i = 0; i < NODES; i++) {
		sc->nodes[i].mode = mode;
		sc->nodes[i].whole_ring = whole_ring;
	}
	hc_simcluster_preload(sc, 0, 0, big);
	for (int i = 0; i < NODES; i++)
		hc_simcluster_start(sc, i);
	sc->nodes[0].c->digests_unsummarized = whole_sig;
	hc_simcluster_wl_id(0, big - 1, id);
	if (!settled(sc, id)) {
		r->change_timeout = true;
		hc_simcluster_free(sc);
		return;
	}
	hc_simnet_run_ms(sc->net, 15000); /* past the join's traffic */
	for (int i = 0; i < NODES; i++) {
		streams -= sc->nodes[i].rx_streams;
		stream_bytes -= sc->nodes[i].rx_stream_bytes;
	}
	for (int k = 0; k < changes && k < TABLE_CHANGES; k++) {
		int64_t at[NODES];
		uint64_t rx0[NODES], cpu0[NODES], st0[NODES], pp0[NODES], pl0[NODES], rx_at[NODES];
		uint64_t kind0[NODES][KINDS];
		struct waiting w = { sc, id, "n0", at, 0, rx_at };
		int first = nrx;

		for (int i = 0; i < NODES; i++) {
			at[i] = -1;
			memcpy(kind0[i], sc->nodes[i].rx_kind, sizeof(kind0[i]));
			rx0[i] = sc->nodes[i].rx_bytes;
			pp0[i] = sc->nodes[i].rx_stream_bytes;
			pl0[i] = sc->nodes[i].rx_pull_bytes;
			st0[i] = state_bytes(sc->nodes[i].c);
			cpu0[i] = sc->nodes[i].state_cpu_ns;
		}
		hc_simcluster_preload(sc, 0, big + k, 1);
		hc_simcluster_wl_id(0, big + k, id);
		hc_cluster_local_refresh(sc->nodes[0].c);
		if (hc_simnet_run_until(sc->net, all_route, &w, LIMIT_MS) < 0) {
			r->change_timeout = true;
			break;
		}
		for (int i = 1; i < NODES; i++) {
			lat[nlat++] = (double)at[i];
			st[nrx] = (double)(state_bytes(sc->nodes[i].c) - st0[i]);
			pp[nrx] = (double)(sc->nodes[i].rx_stream_bytes - pp0[i]);
			pl[nrx] = (double)(sc->nodes[i].rx_pull_bytes - pl0[i]);
			own[nrx] = (double)(rx_at[i] - rx0[i]);
			for (int j = 0; j < KINDS; j++)
				win[nrx][j] = (double)(sc->nodes[i].rx_kind[j] - kind0[i][j]);
			rx[nrx++] = (double)(sc->nodes[i].rx_bytes - rx0[i]);
			cpu += (double)(sc->nodes[i].state_cpu_ns - cpu0[i]) / 1e6;
		}
		hc_simnet_run_ms(sc->net, 3000); /* the next change on a quiet cluster */
		for (int i = 1; i < NODES; i++) {
			double d[KINDS];

			for (int j = 0; j < KINDS; j++)
				d[j] = (double)(sc->nodes[i].rx_kind[j] - kind0[i][j]);
			all[first + i - 1] = change_cost(d);
		}
	}
	for (int i = 0; i < NODES; i++) {
		streams += sc->nodes[i].rx_streams;
		stream_bytes += sc->nodes[i].rx_stream_bytes;
	}
	r->pp_mean = streams ? (double)stream_bytes / (double)streams : 0;
	if (!r->change_timeout && changes == TABLE_CHANGES)
		background(sc, &r->bd);
	if (nlat) {
		breakdown_of(win, all, nrx, &r->bd);
		p50_p99(lat, nlat, &r->p50_ms, &r->p99_ms);
		p50_p99(rx, nrx, &r->rx_p50, &r->rx_p99);
		p50_p99(st, nrx, &r->st_p50, &r->st_p99);
		p50_p99(own, nrx, &r->own_p50, &r->own_p99);
		p50_p99(pp, nrx, &r->pp_p50, &r->pp_p99);
		p50_p99(pl, nrx, &r->pl_p50, &r->pl_p99);
		r->cpu_ms = cpu / nlat;
	}
	hc_simcluster_free(sc);
}

static int join_total; /* what joiner_routes_all waits for */

static bool joiner_routes_all(const void *ctx)
{
	const struct hc_simcluster *sc = ctx;
	struct hc_cluster *c = sc->nodes[NODES].c;
	size_t n = 0;

	for (int i = 0; i < NODES; i++) {
		struct peer *p = hc_cluster_state_peer(c, sc->nodes[i].name);

		if (!p || p->stale)
			return false;
		n += p->nworkloads;
	}
	return n == (size_t)join_total;
}

static void join(enum hc_cluster_state_mode mode, int total, bool whole_ring, struct result *r)
{
	struct hc_simcluster *sc = hc_simcluster_new(NODES + 1, 13);
	int64_t took;

	sc->period_ms = 5000;
	for (int i = 0; i <= NODES; i++) {
		sc->nodes[i].mode = mode;
		sc->nodes[i].whole_ring = whole_ring;
	}
	for (int i = 0; i < NODES; i++)
		hc_simcluster_preload(sc, i, 0, total / NODES);
	for (int i = 0; i < NODES; i++)
		hc_simcluster_start(sc, i);
	if (hc_simnet_run_until(sc->net, hc_simcluster_all_states_known, sc, LIMIT_MS) < 0) {
		r->join_timeout = true;
		hc_simcluster_free(sc);
		return;
	}
	hc_simnet_run_ms(sc->net, 15000);
	hc_simcluster_start(sc, NODES);
	join_total = total;
	took = hc_simnet_run_until(sc->net, joiner_routes_all, sc, LIMIT_MS);
	r->join_timeout = took < 0;
	r->join_ms = (double)took;
	r->join_rx = (double)sc->nodes[NODES].rx_bytes;
	hc_simcluster_free(sc);
}

/* One figure in each of n columns (2 or 3), "> LIMIT" where the run timed
 * out; the ratio is the first column's over the last. */
static void row(const char *what, int n, const double *v, const bool *to, const char *unit)
{
	char c[3][32] = { "", "", "" }, ratio[32] = "-";

	for (int k = 0; k < n; k++)
		snprintf(c[k], sizeof(c[k]), to[k] ? "> %.0f" : "%.1f", to[k] ? LIMIT_MS : v[k]);
	if (!to[0] && !to[n - 1] && v[n - 1] > 0)
		snprintf(ratio, sizeof(ratio), "x%.1f", v[0] / v[n - 1]);
	if (n == 3)
		printf("%-44s %14s %14s %14s %8s  %s\n", what, c[0], c[1], c[2], ratio, unit);
	else
		printf("%-44s %14s %14s %8s  %s\n", what, c[0], c[1], ratio, unit);
}

/* A row of the double at off in each of n results, timed out as the
 * change (join false) or the join says. */
static void result_row(const char *what, int n, const struct result *r, size_t off, bool join,
		       const char *unit)
{
	double v[3];
	bool to[3];

	for (int k = 0; k < n; k++) {
		memcpy(&v[k], (const char *)&r[k] + off, sizeof(v[k]));
		to[k] = join ? r[k].join_timeout : r[k].change_timeout;
	}
	row(what, n, v, to, unit);
}

#define F(field) offsetof(struct result, field)

/* What filled the receivers' windows (digests as now), kind by kind. */
static void breakdown_table(const struct breakdown *bd)
{
	printf("what each receiver took in while the change spread (digest, now), by kind, in\n"
	       "bytes: each kind's own p50 and p99 over the %d windows; the windows whose\n"
	       "total is the p50, the p99 and the largest; and, per node and second, a quiet\n"
	       "cluster's (%d s after the changes):\n", bd->windows, QUIET_MS / 1000);
	printf("  %-36s %8s %8s %8s %8s %8s %10s\n", "", "p50", "p99", "win@p50", "win@p99",
	       "win@max", "quiet, /s");
	for (int k = 0; k < KINDS; k++)
		printf("  %-36s %8.0f %8.0f %8.0f %8.0f %8.0f %10.0f\n",
		       hc_simcluster_rx_kind_names[k], bd->kind_p50[k], bd->kind_p99[k],
		       bd->at[0][k], bd->at[1][k], bd->at[2][k], bd->bg[k]);
	printf("  %-36s %8s %8s %8.0f %8.0f %8.0f %10.0f\n", "total", "", "", bd->at[0][KINDS],
	       bd->at[1][KINDS], bd->at[2][KINDS], bd->bg_total);
	printf("  the change itself per receiver (its digests' copies, its pulls): p50 %.0f,\n"
	       "  p99 %.0f bytes in the window; p50 %.0f, p99 %.0f until the next change; the\n"
	       "  background gossip beside it: %.0f bytes per node per second. Push/pulls carry\n"
	       "  %.0f%% digests (of their unpacked bytes).\n",
	       bd->cost_p50, bd->cost_p99, bd->cost_all_p50, bd->cost_all_p99, bd->bg_total,
	       100 * bd->pp_digests);
}

static const char *verdict(bool timeout, double value, double limit)
{
	return !timeout && value < limit ? "PASS" : "MISS";
}

/* The scale targets, judged on the digests as now. The bytes are
 * what a receiver took in until the change reached it (it routes it): the
 * window until the last node has it also holds every node's periodic
 * re-sends and probes, which flow whether or not anything changed, so it is
 * printed beside, with that background, not judged. */
static void targets(int big, const struct result *r)
{
	printf("the targets (issue 19) for an owner of %d, digests as now:\n", big);
	printf("  %-58s %9.0f  < 1000   %s\n", "time to every node, p99 (ms)", r->p99_ms,
	       verdict(r->change_timeout, r->p99_ms, 1000));
	printf("  %-58s %9.0f  < 10240  %s\n",
	       "bytes a receiver took in until the change reached it, p99", r->own_p99,
	       verdict(r->change_timeout, r->own_p99, 10240));
	printf("  %-58s %9.0f  < 3000   %s\n", "a joining node routes every workload (ms)",
	       r->join_ms, verdict(r->join_timeout, r->join_ms, 3000));
	if (!r->change_timeout)
		printf("  beside: the change's own bytes per receiver p99 %.0f; all gossip in the\n"
		       "  window until the last node had it p99 %.0f, with a background of %.0f\n"
		       "  bytes per node per second that flows with or without the change\n",
		       r->bd.cost_p99, r->rx_p99, r->bd.bg_total);
}

static void table(int big)
{
	struct result r[3] = { 0 }; /* chunked, digest with the whole ring, digest */

	change(HC_CLUSTER_STATE_CHUNKED, big, TABLE_CHANGES, false, true, &r[0]);
	change(HC_CLUSTER_STATE_AUTO, big, TABLE_CHANGES, false, true, &r[1]);
	change(HC_CLUSTER_STATE_AUTO, big, TABLE_CHANGES, false, false, &r[2]);
	join(HC_CLUSTER_STATE_CHUNKED, big, true, &r[0]);
	join(HC_CLUSTER_STATE_AUTO, big, true, &r[1]);
	join(HC_CLUSTER_STATE_AUTO, big, false, &r[2]);
	printf("\n%-44s %14s %14s %14s %8s\n", "", "chunked (old)", "digest+ring", "digest (new)",
	       "old/new");
	printf("one workload more on a node of %d, reaching the other %d (%d changes):\n", big,
	       NODES - 1, TABLE_CHANGES);
	result_row("  time to every node, p50", 3, r, F(p50_ms), false,
		   "ms (target p99 < 1000)");
	result_row("  time to every node, p99", 3, r, F(p99_ms), false, "ms");
	result_row("  bytes on the wire per receiver, p50", 3, r, F(rx_p50), false, "bytes");
	result_row("  bytes on the wire per receiver, p99", 3, r, F(rx_p99), false, "bytes");
	result_row("  until it routed it itself, p50", 3, r, F(own_p50), false,
		   "bytes (target p99 < 10240)");
	result_row("  until it routed it itself, p99", 3, r, F(own_p99), false, "bytes");
	result_row("  of which push/pull streams, p50", 3, r, F(pp_p50), false, "bytes");
	result_row("  of which push/pull streams, p99", 3, r, F(pp_p99), false, "bytes");
	result_row("  one push/pull message (mean, whole run)", 3, r, F(pp_mean), false, "bytes");
	result_row("  of which pull answers, p50", 3, r, F(pl_p50), false, "bytes");
	result_row("  of which pull answers, p99", 3, r, F(pl_p99), false, "bytes");
	result_row("  states (chunks, digests, pulls), p50", 3, r, F(st_p50), false, "bytes");
	result_row("  states, p99", 3, r, F(st_p99), false, "bytes");
	result_row("  receiver CPU per change (mean)", 3, r, F(cpu_ms), false, "ms");
	printf("a node joining %d nodes holding %d workloads in all (%d each):\n", NODES, big,
	       big / NODES);
	result_row("  time until it routes every workload", 3, r, F(join_ms), true,
		   "ms (target < 3000)");
	result_row("  bytes it received meanwhile", 3, r, F(join_rx), true, "bytes");
	if (!r[2].change_timeout)
		breakdown_table(&r[2].bd);
	targets(big, &r[2]);
}

/* Receiver CPU per change as the owner grows: digests checked over the
 * whole state (the previous release's) against by the set hash. */
static void cpu_table(void)
{
	static const int sizes[] = { 1000, 10000, 50000 };

	printf("\nreceiver CPU per change (mean over %d receivers x %d changes) as the owner grows:\n",
	       NODES - 1, CHANGES);
	printf("%-44s %14s %14s %8s\n", "", "whole (old)", "set hash (new)", "old/new");
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct result r[2] = { 0 }; /* whole, set hash */
		char what[64];

		change(HC_CLUSTER_STATE_AUTO, sizes[k], CHANGES, true, false, &r[0]);
		change(HC_CLUSTER_STATE_AUTO, sizes[k], CHANGES, false, false, &r[1]);
		snprintf(what, sizeof(what), "  owner of %d: CPU per change", sizes[k]);
		result_row(what, 2, r, F(cpu_ms), false, "ms");
		snprintf(what, sizeof(what), "  owner of %d: time to every node, p99", sizes[k]);
		result_row(what, 2, r, F(p99_ms), false, "ms");
		snprintf(what, sizeof(what), "  owner of %d: bytes per receiver, p50", sizes[k]);
		result_row(what, 2, r, F(rx_p50), false, "bytes");
		snprintf(what, sizeof(what), "  owner of %d: state bytes per receiver, p99", sizes[k]);
		result_row(what, 2, r, F(st_p99), false, "bytes");
	}
}

int main(int argc, char **argv)
{
	hc_log_set_level(HC_LOG_ERROR);
	printf("state by digest and delta: %d nodes, real cluster code and gossip on the simulated\n"
	       "network and clock (1 ms a hop, pulls at 1 Gbit/s, state period 5 s); times are\n"
	       "simulated, CPU is measured (thread CPU time of the receivers' state handling).\n"
	       "\"> %d\": not done in %d simulated seconds (the old way never drains at that size).\n"
	       "A joiner learns the members' last digests in its join's push/pull (serf's recent\n"
	       "events) and pulls each state, %d at a time. \"bytes on the wire\" is all a receiver\n"
	       "took in while the change spread (others' periodic digests, probes, push/pull\n"
	       "included: its p99 is whichever window a push/pull fell in); \"states\" the chunks,\n"
	       "digests and pull answers among them. \"digest+ring\": digests, with push/pull\n"
	       "carrying serf's whole ring of recent events (every older digest too), as before\n"
	       "push/pull left out the digests a newer one of their owner supersedes.\n",
	       NODES, LIMIT_MS, LIMIT_MS / 1000, 4);
	/* "cpu": the CPU table alone; a number: the table of that size alone */
	if (argc > 1 && atoi(argv[1]) > 0) {
		table(atoi(argv[1]));
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "cpu") != 0) {
		table(100);
		table(1000);
		table(10000);
	}
	cpu_table();
	return 0;
}
