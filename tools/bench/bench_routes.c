/* Route building benchmark: how long hc_cluster_routes_build takes to turn
 * peers' states of 1,000, 10,000 and 100,000 workloads (every one claimed
 * twice, by two peers, so half the entries are duplicates to drop) into the
 * data plane's desired entries. Prints each time and the growth per 10x:
 * about 11-13x is n log n, 100x would be n^2 (the dedup by linear scan this
 * replaced took 0.2 s at 10,000 and about 25 s at 100,000). No maps, no root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster_int.h"
#include "dataplane/dataplane.h"
#include "loop/loop.h"
#include "tmpdir.h"

#define RUNS 3

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* n workloads, each with one proxy port bound to a node port. The
 * protobuf structs are ours: the peers are detached before the cluster
 * frees its states. */
struct fleet {
	hc_pb_workload *wl, **w;
	Cluster__Services__Api__PortBinding *pb, **pbs;
	char (*ids)[40];
};

static int fleet_init(struct fleet *f, size_t n)
{
	f->wl = calloc(n, sizeof(*f->wl));
	f->w = calloc(n, sizeof(*f->w));
	f->pb = calloc(n, sizeof(*f->pb));
	f->pbs = calloc(n, sizeof(*f->pbs));
	f->ids = calloc(n, sizeof(*f->ids));
	if (!f->wl || !f->w || !f->pb || !f->pbs || !f->ids)
		return -1;
	for (size_t i = 0; i < n; i++) {
		/* ids in no particular order: a multiplicative scramble of i */
		snprintf(f->ids[i], sizeof(f->ids[i]), "%08x-1111-4222-8333-444444444444",
			 (unsigned)(i * 2654435761u));
		cluster__services__api__workload_state__init(&f->wl[i]);
		cluster__services__api__port_binding__init(&f->pb[i]);
		f->pb[i].host_port = 443;
		f->pb[i].container_port = 8080;
		f->pb[i].node_port = 30000 + (uint32_t)(i % 2000);
		f->pbs[i] = &f->pb[i];
		f->wl[i].id = f->ids[i];
		f->wl[i].n_bindings = 1;
		f->wl[i].bindings = &f->pbs[i];
		f->w[i] = &f->wl[i];
	}
	return 0;
}

static void fleet_fini(struct fleet *f)
{
	free(f->wl), free(f->w), free(f->pb), free(f->pbs), free(f->ids);
}

/* Best of RUNS, in ms; -1 on failure. */
static double measure(struct hc_cluster *c, size_t n)
{
	struct fleet f = { 0 };
	struct peer peers[2] = {
		{ .name = "node-a", .node_addr = "10.0.0.2" },
		{ .name = "node-b", .node_addr = "10.0.0.3" },
	};
	double best = -1;

	if (fleet_init(&f, n) < 0)
		goto out;
	for (int p = 0; p < 2; p++) {
		peers[p].workloads = f.w;
		peers[p].nworkloads = n;
	}
	c->peers = peers;
	c->npeers = 2;
	for (int r = 0; r < RUNS; r++) {
		struct hc_cluster_desired d;
		double t0 = now_ms(), ms;
		int rc = hc_cluster_routes_build(c, &d);

		ms = now_ms() - t0;
		if (rc < 0 || d.nroutes != n) {
			fprintf(stderr, "bench_routes: %zu routes from %zu workloads\n", d.nroutes, n);
			hc_cluster_desired_fini(&d);
			best = -1;
			break;
		}
		hc_cluster_desired_fini(&d);
		if (best < 0 || ms < best)
			best = ms;
	}
	c->peers = NULL;
	c->npeers = 0;
out:
	fleet_fini(&f);
	return best;
}

int main(void)
{
	static const size_t sizes[] = { 1000, 10000, 100000 };
	struct hc_cluster_config cfg = { .base_url = "example.test" };
	char dir[64];
	struct hc_err err = { 0 };
	struct hc_loop *loop = NULL;
	struct hc_cluster *c = NULL;
	double prev = 0;
	int rc = 1;

	if (hc_tmpdir_new(dir, sizeof(dir), "bench_routes") < 0)
		return 1;
	cfg.state_dir = dir;
	loop = hc_loop_new(NULL, NULL);
	c = loop ? hc_cluster_new(loop, &cfg, &err) : NULL;
	if (!c) {
		fprintf(stderr, "bench_routes: %s\n", loop ? err.msg : "no loop");
		goto out;
	}
	printf("routes from two peers' states claiming the same n workloads (best of %d)\n",
	       RUNS);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		double ms = measure(c, sizes[i]);

		if (ms < 0)
			goto out;
		printf("  n = %6zu: %8.2f ms", sizes[i], ms);
		if (prev > 0)
			printf("   x%.1f for 10x the workloads (n log n: ~12, n^2: 100)", ms / prev);
		printf("\n");
		prev = ms;
	}
	rc = 0;
out:
	hc_cluster_free(c);
	hc_loop_free(loop);
	hc_tmpdir_remove(dir);
	return rc;
}
