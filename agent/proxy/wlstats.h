/* Counters per route host (a workload id or a static route's host), over
 * every proxy worker: what hypercore_proxy_workload_*_total report. Private
 * to the proxy module (apart from proxy_int.h, so that its unit test needs
 * no OpenSSL or BPF).
 *
 * A host's counters live while a route names it or a connection counts into
 * them: workloads come and go by the thousand on a busy node, and a table
 * that kept every host it ever saw would grow the agent's memory and its
 * /metrics without end. */
#ifndef HC_PROXY_WLSTATS_H
#define HC_PROXY_WLSTATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <hypercore/dataplane.h> /* HC_ROUTE_HOST_MAX */

/* One host's counters. Holders add to them with relaxed atomics; the
 * table owns the rest. */
struct hc_proxy_wl_stats {
	char host[HC_ROUTE_HOST_MAX];
	atomic_uint_fast64_t accepted, to_backend, to_client;
	atomic_uint_fast64_t requests; /* request heads sent on (every mode but sockmap) */
	/* the table's: */
	atomic_uint users; /* references held by connections and streams */
	unsigned missed; /* sweeps in a row that found no route naming it */
	bool routed; /* a route named it since the last sweep */
	struct hc_proxy_wl_stats *next; /* in its bucket */
};

struct hc_proxy_wlstats;

/* A table for at most capacity hosts at once. NULL with errno on failure. */
struct hc_proxy_wlstats *hc_proxy_wlstats_new(size_t capacity);
void hc_proxy_wlstats_free(struct hc_proxy_wlstats *t);

/* host's counters with a reference the caller gives back with
 * hc_proxy_wl_put; NULL when capacity hosts are counted already (that
 * host goes uncounted) or out of memory. */
struct hc_proxy_wl_stats *hc_proxy_wlstats_get(struct hc_proxy_wlstats *t, const char *host);

/* Another reference to counters the caller holds one of. NULL is fine. */
void hc_proxy_wl_ref(struct hc_proxy_wl_stats *e);

/* Gives a reference back; never frees (the sweep does). NULL is fine. */
void hc_proxy_wl_put(struct hc_proxy_wl_stats *e);

/* A sweep in two steps: hc_proxy_wlstats_mark for every host a route names
 * now, then hc_proxy_wlstats_sweep, which drops the counters of hosts that
 * no route named in the last two sweeps and nobody holds (two: a route
 * added while the marking ran is not dropped for it). Returns how many it
 * dropped. */
void hc_proxy_wlstats_mark(struct hc_proxy_wlstats *t, const char *host);
size_t hc_proxy_wlstats_sweep(struct hc_proxy_wlstats *t);

/* Hosts counted now. */
size_t hc_proxy_wlstats_count(struct hc_proxy_wlstats *t);

/* Calls fn for every host's counters, under the table's lock (fn must not
 * call back into the table). */
void hc_proxy_wlstats_each(struct hc_proxy_wlstats *t,
			   void (*fn)(const struct hc_proxy_wl_stats *e, void *arg), void *arg);

#endif /* HC_PROXY_WLSTATS_H */
