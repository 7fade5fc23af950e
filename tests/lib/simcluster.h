/*
 * Whole clusters on the simulated network and clock (simnet.h), each node
 * the real agent/cluster code with a fake runtime (fakert.h) and its own
 * node key, for the state-by-digest tests and benchmark. Beyond simnet it
 * counts every node's bytes on the wire (gossip packets and streams, and
 * state pulls) and carries pulls (GET /cluster/state?since=) to the owner's
 * hc_cluster_state_since() with a simulated transfer time (1 ms each way,
 * then 1 Gbit/s), or lets an owner misbehave. Loop thread; deterministic.
 */
#ifndef HC_TEST_SIMCLUSTER_H
#define HC_TEST_SIMCLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "gossip/transport_int.h"
#include "runtime/runtime.h"

struct hc_simnet;
struct hc_fakert;
struct hc_ibrl_identity;

/* How a node answers pulls of its state. */
enum hc_simcluster_serve {
	HC_SIMCLUSTER_SERVE_OK = 0,
	HC_SIMCLUSTER_SERVE_STALL,   /* never answers */
	HC_SIMCLUSTER_SERVE_HUGE,    /* 17 MiB of zeros */
	HC_SIMCLUSTER_SERVE_GARBAGE, /* bytes that are no StateDigest */
	HC_SIMCLUSTER_SERVE_REFUSE,  /* an HTTP error status (an upstream node) */
	HC_SIMCLUSTER_SERVE_TAMPER,  /* its whole state plus a workload it does not run */
};

/* The workload SERVE_TAMPER adds. */
#define HC_SIMCLUSTER_TAMPERED_ID "7a3e0000-0000-4000-8000-00000000f00d"

/* HTTP request and answer heads a pull costs on the wire beyond its body. */
#define HC_SIMCLUSTER_PULL_OVERHEAD 400

/* What a node's received bytes were (rx_kind): every datagram's messages
 * by type, the datagram's own framing apart, then streams and pulls. */
enum hc_simcluster_rx_kind {
	HC_SIMCLUSTER_RX_PROBE,		/* ping, indirect ping, ack, nack */
	HC_SIMCLUSTER_RX_MEMBERSHIP,	/* alive, suspect, dead */
	HC_SIMCLUSTER_RX_DIGEST_DELTA,	/* digests carrying a change (workloads or removals) */
	HC_SIMCLUSTER_RX_DIGEST_RESEND, /* digests carrying none: re-sends of a state */
	HC_SIMCLUSTER_RX_EVENT_OTHER,	/* other user events (chunked states...) */
	HC_SIMCLUSTER_RX_SERF_OTHER,	/* serf joins, leaves, queries, anything else */
	HC_SIMCLUSTER_RX_FRAMING,	/* checksum and compound headers, each part's length */
	HC_SIMCLUSTER_RX_PUSH_PULL,	/* push/pull streams, both ways */
	HC_SIMCLUSTER_RX_PULL,		/* state pull answers, their HTTP heads included */
	HC_SIMCLUSTER_RX_KINDS
};

extern const char *const hc_simcluster_rx_kind_names[HC_SIMCLUSTER_RX_KINDS];

struct hc_simcluster_node {
	struct hc_simcluster *sc;
	int idx;
	char name[16];
	char dir[64];
	struct hc_cluster *c; /* NULL until started */
	struct hc_fakert *rt;
	struct hc_ibrl_identity *key;
	enum hc_cluster_state_mode mode; /* set before starting */
	enum hc_simcluster_serve serve;
	bool drop_digests; /* digests reaching it are lost (a missed broadcast) */
	bool whole_ring; /* its push/pull sends serf's whole ring, superseded digests too */
	uint64_t rx_bytes, tx_bytes;
	/* of rx_bytes: push/pull streams (both ways: what it was sent and
	 * the answers to its own) and pull answers; the rest is UDP gossip */
	uint64_t rx_stream_bytes, rx_pull_bytes;
	uint64_t rx_streams; /* push/pull messages it took in (requests and answers) */
	uint64_t rx_kind[HC_SIMCLUSTER_RX_KINDS]; /* rx_bytes by kind: they sum to it */
	/* of the push/pull streams taken in, unpacked (they travel
	 * compressed): all their bytes, and their ring's digests' */
	uint64_t rx_pp_plain, rx_pp_plain_digests;
	/* CPU time (this thread's, clock_gettime) the node's cluster spent on
	 * received user events (states, digests) and pull answers */
	uint64_t state_cpu_ns;
	/* internal */
	struct hc_gossip_receiver recv, inner;
	hc_gossip_event_fn *on_event;
	void *event_arg;
};

struct hc_simcluster {
	struct hc_simnet *net;
	int n;
	uint32_t period_ms; /* state period of nodes started from now (1000) */
	struct hc_simcluster_node *nodes;
	struct sim_transfer *transfers; /* pull answers in flight */
};

/* The gossip timing of simulated clusters (LAN-like, as the gossip tests
 * use), for node `name` with its random seed. */
void hc_simcluster_gossip_config(struct hc_gossip_config *g, const char *name, uint64_t seed);
/* n nodes n0..n<n-1>, not started. Fails the test on any error. */
struct hc_simcluster *hc_simcluster_new(int n, uint64_t seed);
/* Starts node i (joining n0 unless it is n0). */
void hc_simcluster_start(struct hc_simcluster *sc, int i);
/* Every started node sees every started node alive / holds every other
 * started node's state. */
bool hc_simcluster_all_alive(const void *sc);
bool hc_simcluster_all_states_known(const void *sc);
/* Runs until every started node's runtime jobs ended, then frees all. */
void hc_simcluster_free(struct hc_simcluster *sc);
/* Preloads `count` workloads on node i's runtime, ids from `first` on
 * ("5e0c0a7d-<i:4>-4000-8000-<k:12>"), each with a proxy port and its
 * node port, as spawned ones have. */
void hc_simcluster_preload(struct hc_simcluster *sc, int i, int first, int count);
/* The id hc_simcluster_preload gave workload k of node i. */
void hc_simcluster_wl_id(int i, int k, char id[HC_WORKLOAD_ID_LEN + 1]);

#endif /* HC_TEST_SIMCLUSTER_H */
