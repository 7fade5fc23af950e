/* Signed states benchmark: what signing and verifying a 1,000-workload
 * state costs per broadcast (the canonical digest over every workload
 * packed and sorted, then one Ed25519 signature or check), both sides, and
 * beside them the plain packing of the same workloads that a broadcast
 * does anyway. Medians of 21 runs. No root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchstat.h"
#include "ibrl/ibrl.h"
#include "tmpdir.h"

#define RUNS 21
#define NWL 1000

typedef Cluster__Services__Api__WorkloadState wl_t;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void)
{
	static wl_t wl[NWL];
	static wl_t *w[NWL];
	static char ids[NWL][40];
	static Cluster__Services__Api__VmSpawnRequest req;
	static Cluster__Services__Api__VmSpawnRequest__PortsEntry port, *ports[1] = { &port };
	Cluster__Services__Api__BeaconMetadata beacon = CLUSTER__SERVICES__API__BEACON_METADATA__INIT;
	double sign[RUNS], verify[RUNS], pack[RUNS];
	char sig[HC_IBRL_STATE_SIG_B64_LEN + 1], dir[64];
	struct hc_ibrl_identity *id;
	struct hc_ibrl_state_view v;
	struct hc_err err;
	size_t bytes = 0;

	if (hc_tmpdir_new(dir, sizeof(dir), "hc-bench-ibrl") < 0 ||
	    hc_ibrl_identity_open(dir, &id, &err) < 0) {
		fprintf(stderr, "cannot make a node key\n");
		return 1;
	}
	cluster__services__api__vm_spawn_request__init(&req);
	cluster__services__api__vm_spawn_request__ports_entry__init(&port);
	port.key = 443;
	port.value = 8080;
	req.image_ref = (char *)"registry.example.com/team/app:1.2.3";
	req.cores = 1;
	req.memory = 256;
	req.ports = ports;
	req.n_ports = 1;
	for (int i = 0; i < NWL; i++) {
		cluster__services__api__workload_state__init(&wl[i]);
		/* ids in no order: the digest sorts them */
		snprintf(ids[i], sizeof(ids[i]), "5e0c0a7d-0000-4000-8000-%012d",
			 (i * 7919) % NWL);
		wl[i].id = ids[i];
		wl[i].source_request = &req;
		w[i] = &wl[i];
	}
	beacon.node_signature.data = (uint8_t *)hc_ibrl_identity_public(id);
	beacon.node_signature.len = HC_IBRL_PUBLIC_LEN;
	beacon.reputation_score = (char *)"1.0";
	v = (struct hc_ibrl_state_view){ .node = "node-a", .node_addr = "10.0.0.1",
					 .http_port = 8001, .version = 1700000000000ull,
					 .beacon = &beacon, .workloads = w, .nworkloads = NWL };
	for (int r = 0; r < RUNS; r++) {
		double t0 = now_ms(), t1, t2, t3;

		for (int i = 0; i < NWL; i++) {
			size_t len = protobuf_c_message_get_packed_size(&w[i]->base);
			uint8_t *buf = malloc(len);

			protobuf_c_message_pack(&w[i]->base, buf);
			bytes += r == 0 ? len : 0;
			free(buf);
		}
		t1 = now_ms();
		if (hc_ibrl_state_sign(id, &v, sig) < 0)
			return 1;
		t2 = now_ms();
		if (hc_ibrl_state_verify(hc_ibrl_identity_public(id), &v, sig) < 0)
			return 1;
		t3 = now_ms();
		pack[r] = t1 - t0;
		sign[r] = t2 - t1;
		verify[r] = t3 - t2;
	}
	printf("state of %d workloads (%zu bytes packed), median of %d runs:\n", NWL, bytes, RUNS);
	printf("  sender:   sign   %.3f ms per broadcast\n", hc_bench_median(sign, RUNS));
	printf("  receiver: verify %.3f ms per state\n", hc_bench_median(verify, RUNS));
	printf("  (packing the workloads alone: %.3f ms)\n", hc_bench_median(pack, RUNS));
	hc_ibrl_identity_free(id);
	hc_tmpdir_remove(dir);
	return 0;
}
