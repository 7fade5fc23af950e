/* Placement benchmark: how long hc_ibrl_place takes to check, score and
 * order 100 candidate nodes (and 1,000, to see it grow as n log n) under
 * the balanced example policy plus a node_selector, with beacon data,
 * tags and capabilities on every node. This is the whole of the work a
 * spawn adds once its dry run is in; the dry run itself is a gossip round
 * trip (milliseconds). Median of 2,001 runs. No root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchstat.h"
#include "ibrl/ibrl.h"

#define RUNS 2001

static const char policy_text[] =
	"{\"name\": \"balanced\", \"mode\": \"enforce\", \"rules\": {\"max_latency_ms\": 200, "
	"\"max_price_per_gb\": 0.02, \"min_reputation_score\": 0.7, \"max_queue_depth\": 100, "
	"\"max_packet_loss\": 2.0, \"max_jitter_ms\": 30, \"required_capabilities\": "
	"[\"container\"]}, \"scoring\": {\"latency_weight\": 0.25, \"price_weight\": 0.25, "
	"\"reputation_weight\": 0.25, \"queue_weight\": 0.25}, \"node_selector\": {\"zone\": "
	"\"eu\"}}";

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Median microseconds for n nodes; -1 on failure. */
static double measure(const struct hc_ibrl_policy *p, size_t n)
{
	static const struct hc_ibrl_kv tags[2][1] = { { { (char *)"zone", (char *)"eu" } },
						      { { (char *)"zone", (char *)"us" } } };
	static const char *const caps[] = { "container", "tls", "xdp-native" };
	static const char *const reps[] = { "0.65", "0.8", "0.95", "1.0" };
	struct hc_ibrl_node *nodes = calloc(n, sizeof(*nodes));
	struct hc_ibrl_policy_verdict *v = calloc(n, sizeof(*v));
	size_t *order = calloc(n, sizeof(*order)), k = 0;
	char (*names)[40] = calloc(n, sizeof(*names));
	double *t = calloc(RUNS, sizeof(*t)), med = -1;

	if (!nodes || !v || !order || !names || !t)
		goto out;
	srand(7);
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "node-%04zu", (i * 7919) % n);
		nodes[i] = (struct hc_ibrl_node){
			.name = names[i], .capable = i % 10 != 0,
			.free_cores = (uint32_t)(rand() % 64), .free_mem_mb = (uint64_t)(rand() % 65536),
			.tags = tags[i % 4 == 0], .ntags = 1, .has_beacon = i % 20 != 0,
			.latency_ms = rand() % 250, .jitter_ms = rand() % 40,
			.packet_loss = (rand() % 30) / 10.0, .queue_depth = (uint32_t)(rand() % 120),
			.price_per_gb = (rand() % 25) / 1000.0, .reputation = reps[i % 4],
			.capabilities = caps, .ncapabilities = 3,
		};
	}
	for (int r = 0; r < RUNS; r++) {
		double t0 = now_us();

		if (hc_ibrl_place(p, nodes, n, v, order, &k) < 0)
			goto out;
		t[r] = now_us() - t0;
	}
	med = hc_bench_median(t, RUNS);
	printf("   %5zu nodes: %8.1f us per placement (%zu eligible)\n", n, med, k);
out:
	free(nodes), free(v), free(order), free(names), free(t);
	return med;
}

int main(void)
{
	struct hc_ibrl_policy *p;
	struct hc_err err;
	double a, b;

	if (hc_ibrl_policy_parse(policy_text, strlen(policy_text), "bench", &p, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	printf("placement: check, score and order candidates (median of %d)\n", RUNS);
	a = measure(p, 100);
	b = measure(p, 1000);
	hc_ibrl_policy_free(p);
	if (a < 0 || b < 0)
		return 1;
	printf("   x%.1f for 10x the nodes\n", b / a);
	return 0;
}
