/*
 * Whole gossip clusters (agent/gossip's serf layer over its memberlist
 * engine, the product code unchanged) on the simulated network and clock,
 * for the scale test and benchmark: form a cluster, watch one member join
 * or fail and record when each node learns of it, count failure verdicts
 * about members that were never down. Deterministic for a seed.
 */
#ifndef HC_TEST_GOSSIPSIM_H
#define HC_TEST_GOSSIPSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip.h"
#include "simnet.h"

/* Timing, as struct hc_gossip_config names it. */
struct hc_gossipsim_timing {
	const char *name; /* for printing: "memberlist LAN", ... */
	uint32_t gossip_interval_ms, probe_interval_ms, probe_timeout_ms;
	unsigned suspicion_mult, gossip_nodes;
	uint32_t push_pull_interval_ms;
};

/* memberlist's DefaultLANConfig (what serf uses): gossip 200 ms to 3,
 * probe 1 s (timeout 500 ms), suspicion x4, push/pull 30 s. */
extern const struct hc_gossipsim_timing hc_gossipsim_lan;
/* hypercore's defaults (upstream hypercore's serf settings): gossip 2 s to
 * 2, probe 5 s, suspicion x6. */
extern const struct hc_gossipsim_timing hc_gossipsim_hypercore;

struct hc_gossipsim;

/* Room for `capacity` nodes (none started). NULL on failure. */
struct hc_gossipsim *hc_gossipsim_new(int capacity, const struct hc_gossipsim_timing *t,
				      uint64_t seed);
void hc_gossipsim_free(struct hc_gossipsim *s);
struct hc_simnet *hc_gossipsim_net(struct hc_gossipsim *s);
struct hc_gossip *hc_gossipsim_node(struct hc_gossipsim *s, int i);
/* Node i's name: a 36-character id, as hypercore names nodes. */
const char *hc_gossipsim_name(const struct hc_gossipsim *s, int i);

/* Starts node i (a cluster of one). 0 or -errno. */
int hc_gossipsim_start(struct hc_gossipsim *s, int i);
/*
 * Node i crashes: its engine is gone at once (no leave, nothing more sent)
 * and the network drops what is sent to it until it starts again. Started
 * again with hc_gossipsim_start, it is a new process under the same name
 * and address, at incarnation 1, as an agent restarted after SIGKILL.
 */
void hc_gossipsim_crash(struct hc_gossipsim *s, int i);
/* Node i joins through node seed (one attempt). 0 or -errno. */
int hc_gossipsim_join(struct hc_gossipsim *s, int i, int seed);

/*
 * Starts nodes 0..n-1, node i joining node 0 at i x stagger_ms, and runs
 * until every node lists all n alive. Returns the simulated ms from the
 * first join until then, or -1 after limit_ms.
 */
int64_t hc_gossipsim_form(struct hc_gossipsim *s, int n, uint32_t stagger_ms,
			  uint64_t limit_ms);

/* Broadcasts still queued (hc_gossip_queue_depth), summed over started,
 * up nodes: 0 once a change has been gossiped out everywhere. */
size_t hc_gossipsim_queued(struct hc_gossipsim *s);

/* True when every started, up node lists `alive` members alive. O(n). */
bool hc_gossipsim_all_see(struct hc_gossipsim *s, size_t alive);

/*
 * Watches node `subject` from now on: for every other started node, the
 * simulated ms (since this call) at which its serf layer reported the
 * subject joined, or failed. -1 until then.
 */
void hc_gossipsim_watch(struct hc_gossipsim *s, int subject);
int64_t hc_gossipsim_join_ms(const struct hc_gossipsim *s, int observer);
int64_t hc_gossipsim_fail_ms(const struct hc_gossipsim *s, int observer);
/* Runs until every started, up node other than the subject has seen it
 * join (or fail); returns the ms since the watch began, or -1 at limit. */
int64_t hc_gossipsim_run_until_joined(struct hc_gossipsim *s, uint64_t limit_ms);
int64_t hc_gossipsim_run_until_failed(struct hc_gossipsim *s, uint64_t limit_ms);

/*
 * Failure verdicts about members that were up (not hc_simnet_set_down)
 * when they were given: member-failed events, and the distinct members
 * they were about, since the last reset.
 */
struct hc_gossipsim_false {
	uint64_t events;   /* (observer, member) verdicts */
	uint64_t members;  /* distinct members wrongly declared failed */
};
void hc_gossipsim_false_reset(struct hc_gossipsim *s);
void hc_gossipsim_false_get(const struct hc_gossipsim *s, struct hc_gossipsim_false *out);

/* Verdicts of failed about member i while it was up, since the last reset. */
uint64_t hc_gossipsim_wrong_verdicts(const struct hc_gossipsim *s, int i);

/*
 * Switches Lifeguard's timing mechanisms on every started node: off is
 * SWIM's fixed timeouts (no local health multiplier: awareness range 1;
 * suspicion timeout fixed at its minimum, so confirmations change
 * nothing). Nacks are still sent but feed only the (now fixed) health
 * score; a suspect is still told it is suspected (the buddy system has no
 * switch). For the benchmark's with/without comparison.
 */
void hc_gossipsim_set_lifeguard(struct hc_gossipsim *s, bool on);

/* Suspicions that reached their subject and were refuted (memberlist's
 * refutation counter), summed over started nodes. */
uint64_t hc_gossipsim_refutations(struct hc_gossipsim *s);

#endif /* HC_TEST_GOSSIPSIM_H */
