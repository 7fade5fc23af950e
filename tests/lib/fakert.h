/*
 * A fake runtime for the cluster's unit tests (struct hc_cluster_runtime_ops):
 * workloads kept in memory, calls that never block, and jobs run on the loop
 * thread. A job's calls take effect at once; the cluster hears the job's end
 * after the calls' simulated latency (0: at the loop's next turn), so a
 * cluster over tests/lib simnet is deterministic. Calls can be told to fail
 * or be slow, and a workload to exit. Loop thread only.
 */
#ifndef HC_TEST_FAKERT_H
#define HC_TEST_FAKERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "runtime/runtime.h"

struct hc_loop;
struct hc_fakert;

enum hc_fakert_call { HC_FAKERT_SPAWN, HC_FAKERT_STOP, HC_FAKERT_LIST, HC_FAKERT_LOGS,
		      HC_FAKERT_CAPACITY, HC_FAKERT_NCALLS };

/* Workload addresses are <ip_prefix><n> ("10.88.1." gives 10.88.1.2, ...).
 * NULL + errno on allocation failure. */
struct hc_fakert *hc_fakert_new(struct hc_loop *loop, const char *ip_prefix);
/* Jobs not finished yet are dropped (hc_fakert_flush() first). NULL is fine. */
void hc_fakert_free(struct hc_fakert *fr);

/* The ops to put in hc_cluster_config.runtime, with the fake as runtime_ctx. */
extern const struct hc_cluster_runtime_ops hc_fakert_ops;

/* The next n spawns fail with -err (and a message naming the fake). */
void hc_fakert_fail_spawns(struct hc_fakert *fr, unsigned n, int err);
/* The next n stops fail half way with -err: the workload's process is
 * killed (it stays listed, EXITED with 137) but the call fails. */
void hc_fakert_fail_stops(struct hc_fakert *fr, unsigned n, int err);
/* Every call of this kind takes ms of simulated time from now on. */
void hc_fakert_set_latency(struct hc_fakert *fr, enum hc_fakert_call call, uint32_t ms);
/* A running workload, as if an earlier agent had spawned it (a copy of
 * spec is kept). 0 or -errno (-EEXIST). */
int hc_fakert_add(struct hc_fakert *fr, const char *id, const struct hc_workload_spec *spec);
/* Workload id's process ended: it stays listed, as EXITED. Fills *ev for
 * hc_cluster_on_exit() (what the agent's runtime watch would report).
 * 0 or -ENOENT. */
int hc_fakert_exit(struct hc_fakert *fr, const char *id, int code, struct hc_runtime_exit *ev);

/* What workload id reports used from now on (each usage call then adds to
 * it, as a running workload would); a lower value is a reset of its
 * counters (a restarted container). 0 or -ENOENT. */
int hc_fakert_set_usage(struct hc_fakert *fr, const char *id, const struct hc_cluster_usage *u);
unsigned hc_fakert_usage_calls(const struct hc_fakert *fr);

/* Whether workload id is held (running or exited), and how many are. */
bool hc_fakert_has(const struct hc_fakert *fr, const char *id);
size_t hc_fakert_count(const struct hc_fakert *fr);
/* Calls made of a kind (failed ones included); spawn calls for one id. */
unsigned hc_fakert_calls(const struct hc_fakert *fr, enum hc_fakert_call call);
unsigned hc_fakert_spawns_of(const struct hc_fakert *fr, const char *id);
/* Jobs whose end the cluster has not heard yet. */
size_t hc_fakert_pending(const struct hc_fakert *fr);
/* Ends every pending job now, whatever its latency (before the cluster
 * that runs them is freed: it runs the loop until they end, and a
 * simulated clock does not advance there). */
void hc_fakert_flush(struct hc_fakert *fr);

#endif /* HC_TEST_FAKERT_H */
