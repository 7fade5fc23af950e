/* This node's workloads as the cluster announces them: learnt from spawns
 * and stops done here at once, and re-read from the runtime whenever its
 * watch sees the running set change. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "log/log.h"

#define STOPPED_MEMORY_MS 30000 /* a stopped id is not re-adopted from a stale list */
#define RESTART_BACKOFF_MIN_MS 1000
#define RESTART_BACKOFF_MAX_MS 60000

static void local_wl_fini(struct local_wl *l)
{
	hc_cluster_pb_free(l->state);
	hc_cluster_proof_chain_free(l->chain);
	memset(l, 0, sizeof(*l));
}

/* c->local is kept sorted by id. */
struct local_wl *hc_cluster_local_find(struct hc_cluster *c, const char *id)
{
	size_t lo = 0, hi = c->nlocal;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(c->local[mid].state->id, id);

		if (cmp == 0)
			return &c->local[mid];
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int local_cmp(const void *a, const void *b)
{
	return strcmp(((const struct local_wl *)a)->state->id,
		      ((const struct local_wl *)b)->state->id);
}

/* Replaces l's state (l: the entry of state->id) or, l NULL, adds one;
 * takes state. A new entry
 * goes at the end, and the list is sorted again unless `defer` (the caller
 * adding many then sorts once: adopting 10,000 workloads must not sort
 * 10,000 times). */
static int local_put_one(struct hc_cluster *c, struct local_wl *l, hc_pb_workload *state,
			 const struct hc_workload *w, bool pending, bool defer)
{
	if (l) {
		hc_cluster_pb_free(l->state);
	} else {
		if (c->nlocal == c->local_cap) { /* doubling: adopting 10,000 adds as many */
			size_t cap = c->local_cap ? 2 * c->local_cap : 16;
			struct local_wl *grown = realloc(c->local, cap * sizeof(*grown));

			if (!grown) {
				hc_cluster_pb_free(state);
				return -ENOMEM;
			}
			c->local = grown;
			c->local_cap = cap;
		}
		l = &c->local[c->nlocal++];
		memset(l, 0, sizeof(*l));
		l->added_ms = hc_loop_now_ms(c->loop);
	}
	l->state = state;
	snprintf(l->ip, sizeof(l->ip), "%s", w->ip);
	l->egress_bytes_per_sec = hc_workload_spec_egress_bytes(&w->spec);
	l->pending = pending;
	l->started_ns = w->started_ns;
	snprintf(l->handler, sizeof(l->handler), "%s", w->runtime_handler);
	if (!defer)
		qsort(c->local, c->nlocal, sizeof(*c->local), local_cmp);
	c->local_gen++;
	return 0;
}

static int local_put(struct hc_cluster *c, hc_pb_workload *state, const struct hc_workload *w,
		     bool pending)
{
	return local_put_one(c, hc_cluster_local_find(c, state->id), state, w, pending, false);
}

static int by_id(const void *a, const void *b)
{
	return strcmp((*(const struct hc_workload *const *)a)->id,
		      (*(const struct hc_workload *const *)b)->id);
}

static int id_key(const void *key, const void *elem)
{
	return strcmp(key, (*(const struct hc_workload *const *)elem)->id);
}

enum hc_restart_policy hc_cluster_restart_policy(const struct hc_cluster *c,
						 const hc_pb_spawn *req)
{
	enum hc_restart_policy p = hc_restart_policy_parse(req ? req->restart : NULL);

	if (p == HC_RESTART_UNSET)
		p = (enum hc_restart_policy)c->cfg.default_restart;
	return p == HC_RESTART_UNSET ? HC_RESTART_ALWAYS : p;
}

/* A local workload's state as announced: its restart policy always named
 * (the default filled in), so lists show what this node will do. */
static hc_pb_workload *local_state_of(const struct hc_cluster *c, const struct hc_workload *w)
{
	hc_pb_workload *st = hc_cluster_pb_workload_of(w);
	hc_pb_spawn *req = st ? st->source_request : NULL;
	char *name;

	if (!req || (req->restart && *req->restart))
		return st;
	name = strdup(hc_restart_policy_name(hc_cluster_restart_policy(c, req)));
	if (!name) {
		hc_cluster_pb_free(st);
		return NULL;
	}
	/* the empty string was protobuf-c's shared one: not freed */
	req->restart = name;
	return st;
}

int hc_cluster_local_add(struct hc_cluster *c, const struct hc_workload *w, bool pending)
{
	hc_pb_workload *st = local_state_of(c, w);

	if (!st)
		return -ENOMEM;
	return local_put(c, st, w, pending);
}

void hc_cluster_local_remove(struct hc_cluster *c, const char *id)
{
	struct local_wl *l = hc_cluster_local_find(c, id);
	size_t i;

	if (!l)
		return;
	i = (size_t)(l - c->local);
	local_wl_fini(l);
	memmove(&c->local[i], &c->local[i + 1], (c->nlocal - i - 1) * sizeof(*c->local));
	c->nlocal--;
	c->local_gen++;
}

static void remember_stopped(struct hc_cluster *c, const char *id)
{
	void *ids = realloc(c->stopped, (c->nstopped + 1) * sizeof(*c->stopped));
	uint64_t *ts;

	if (!ids)
		return;
	c->stopped = ids;
	ts = realloc(c->stopped_ms, (c->nstopped + 1) * sizeof(*ts));
	if (!ts)
		return;
	c->stopped_ms = ts;
	snprintf(c->stopped[c->nstopped], sizeof(c->stopped[0]), "%s", id);
	c->stopped_ms[c->nstopped++] = hc_loop_now_ms(c->loop);
}

bool hc_cluster_local_recently_stopped(struct hc_cluster *c, const char *id)
{
	uint64_t now = hc_loop_now_ms(c->loop);

	for (size_t i = 0; i < c->nstopped; i++)
		if (strcmp(c->stopped[i], id) == 0 && now - c->stopped_ms[i] < STOPPED_MEMORY_MS)
			return true;
	return false;
}

bool hc_cluster_local_node_port_used(const struct hc_cluster *c, uint32_t port)
{
	for (size_t i = 0; i < c->nlocal; i++) {
		const hc_pb_workload *w = c->local[i].state;

		for (size_t b = 0; b < w->n_bindings; b++)
			if (w->bindings[b]->node_port == port)
				return true;
		for (size_t p = 0; w->source_request && p < w->source_request->n_ports; p++)
			if (w->source_request->ports[p]->key == port)
				return true;
	}
	return false;
}

/* ---- re-reading the runtime ---- */

struct refresh_job {
	struct job job;
	uint64_t gen;
	struct hc_workload *list;
	size_t n;
	int rc;
	struct hc_err err;
};

static void refresh_run(struct job *j)
{
	struct refresh_job *rj = (struct refresh_job *)j;

	rj->rc = j->c->cfg.runtime->list(j->c->cfg.runtime_ctx, &rj->list, &rj->n, &rj->err);
}

static bool same_state(const struct local_wl *l, const struct hc_workload *w,
		       const hc_pb_workload *st)
{
	size_t a, b;
	uint8_t *pa, *pb;
	bool same;

	if (strcmp(l->ip, w->ip) != 0 || l->pending ||
	    l->egress_bytes_per_sec != hc_workload_spec_egress_bytes(&w->spec))
		return false;
	pa = hc_cluster_pb_pack(&l->state->base, &a);
	pb = hc_cluster_pb_pack(&st->base, &b);
	same = pa && pb && a == b && memcmp(pa, pb, a) == 0;
	free(pa);
	free(pb);
	return same;
}

/* Whether policy p brings back a workload that exited with exit_code. */
static bool policy_restarts(enum hc_restart_policy p, int exit_code)
{
	return p == HC_RESTART_ALWAYS || (p == HC_RESTART_ON_FAILURE && exit_code != 0);
}

/* A workload found exited that this agent never saw run: it exited while no
 * agent watched (the agent was down, the node rebooted), or a local spawn's
 * exited before the first look. Its policy decides, as for one seen exiting.
 * Whether it joined c->local (which is then sorted whole). */
static bool adopt_exited(struct hc_cluster *c, const struct hc_workload *w)
{
	hc_pb_workload *st = hc_uuid_valid(w->id) ? local_state_of(c, w) : NULL;
	enum hc_restart_policy p;

	if (!st)
		return false; /* not ours, or out of memory: the next look tries again */
	p = hc_cluster_restart_policy(c, st->source_request);
	if (!policy_restarts(p, w->exit_code)) {
		hc_cluster_pb_free(st);
		return false;
	}
	if (local_put(c, st, w, false) < 0)
		return false;
	hc_log(HC_LOG_INFO, "workload %s found exited (code %d): restarting it (--restart %s)",
	       w->id, w->exit_code, hc_restart_policy_name(p));
	hc_cluster_local_on_exit(c, w->id);
	return true;
}

/* A workload whose stop failed before this agent started (its mark is
 * kept): it joins as being stopped, its stop due now, not as running, and
 * its policy does not restart it. Whether it joined c->local. */
static bool adopt_owed_stop(struct hc_cluster *c, struct local_wl *l, const struct hc_workload *w)
{
	bool joined = false;

	if (!l) {
		hc_pb_workload *st = hc_uuid_valid(w->id) ? local_state_of(c, w) : NULL;

		if (!st || local_put(c, st, w, false) < 0)
			return false; /* not ours, or out of memory */
		l = hc_cluster_local_find(c, w->id);
		joined = true;
	}
	hc_log(HC_LOG_INFO, "workload %s: its stop failed before this start; stopping it again",
	       w->id);
	l->stopping = true;
	l->restart_at_ms = 0;
	l->stop_failures = 1; /* its mark goes when it is gone */
	l->stop_retry_at_ms = hc_loop_now_ms(c->loop);
	return joined;
}

/* Adopts the runtime's list: running workloads stay or join, the rest go
 * (pending spawns and restarts in progress are kept); exited ones are
 * restarted as their policy says. O(n log n): the list is looked up by id,
 * and new workloads are sorted in once. */
static bool adopt(struct hc_cluster *c, const struct hc_workload *list, size_t n)
{
	const struct hc_workload **by = calloc(n + 1, sizeof(*by));
	size_t nlocal_before;
	bool changed = false, added = false;

	if (!by)
		return false; /* the next refresh tries again */
	for (size_t k = 0; k < n; k++)
		by[k] = &list[k];
	qsort(by, n, sizeof(*by), by_id);
	for (size_t i = 0; i < c->nlocal;) {
		struct local_wl *l = &c->local[i];
		const struct hc_workload **hit = n ? bsearch(l->state->id, by, n, sizeof(*by), id_key)
						   : NULL;
		const struct hc_workload *w = hit ? *hit : NULL;

		if (w && w->state == HC_WORKLOAD_EXITED)
			/* its exit may not have been reported yet */
			hc_cluster_local_exited(c, w->id, w->exit_code);
		if ((w && w->state == HC_WORKLOAD_RUNNING && w->ip[0]) || l->pending ||
		    l->restarting || l->restart_at_ms || l->stopping) {
			i++;
			continue;
		}
		hc_log(HC_LOG_INFO, "workload %s no longer runs here", l->state->id);
		hc_cluster_proofs_forget(c, l->state->id);
		local_wl_fini(l);
		memmove(l, l + 1, (c->nlocal - i - 1) * sizeof(*l));
		c->nlocal--;
		changed = true;
	}
	/* c->local[0..nlocal_before) stays sorted while new ones are appended */
	nlocal_before = c->nlocal;
	for (size_t k = 0; k < n; k++) {
		const struct hc_workload *w = &list[k];
		struct local_wl *l;
		hc_pb_workload *st;
		size_t all = c->nlocal;

		if (hc_cluster_local_recently_stopped(c, w->id))
			continue;
		c->nlocal = nlocal_before; /* the sorted part */
		l = hc_cluster_local_find(c, w->id);
		c->nlocal = all;
		if (c->nstop_marks && hc_cluster_stop_marked(c, w->id)) {
			if (adopt_owed_stop(c, l, w)) {
				nlocal_before = c->nlocal; /* local_put sorted them all */
				changed = true;
			}
			continue;
		}
		if (w->state == HC_WORKLOAD_EXITED && !l) {
			if (adopt_exited(c, w))
				nlocal_before = c->nlocal; /* local_put sorted them all */
			continue;
		}
		if (w->state != HC_WORKLOAD_RUNNING || !w->ip[0])
			continue;
		st = local_state_of(c, w);
		if (!st)
			continue;
		if (l && same_state(l, w, st)) {
			hc_cluster_pb_free(st);
			continue;
		}
		if (local_put_one(c, l, st, w, false, true) == 0) {
			l = l ? l : &c->local[c->nlocal - 1];
			l->restarting = false;
			l->restart_at_ms = 0;
			added |= c->nlocal > all;
		}
		changed = true;
	}
	if (added)
		qsort(c->local, c->nlocal, sizeof(*c->local), local_cmp);
	free(by);
	return changed;
}

static void refresh_done(struct job *j)
{
	struct refresh_job *rj = (struct refresh_job *)j;
	struct hc_cluster *c = j->c;
	bool again;

	c->refresh_running = false;
	again = c->refresh_again;
	c->refresh_again = false;
	if (!c->closing) {
		if (rj->rc < 0) {
			hc_log(HC_LOG_WARN, "cannot list workloads: %s", rj->err.msg);
		} else if (rj->gen != c->local_gen) {
			again = true; /* listed before our own change: stale */
		} else {
			if (adopt(c, rj->list, rj->n)) {
				c->local_gen++;
				hc_cluster_state_changed(c);
			}
			hc_cluster_stop_marks_settle(c); /* the first listing is in */
			hc_cluster_routes_release(c, true); /* the first listing is in */
		}
	}
	hc_workload_list_free(rj->list, rj->n);
	free(rj);
	if (again && !c->closing)
		hc_cluster_local_refresh(c);
}

void hc_cluster_local_refresh(struct hc_cluster *c)
{
	struct refresh_job *rj;

	if (!c->cfg.runtime || c->closing)
		return;
	if (c->refresh_running) {
		c->refresh_again = true;
		return;
	}
	rj = calloc(1, sizeof(*rj));
	if (!rj)
		return;
	rj->gen = c->local_gen;
	if (hc_cluster_job_start(c, &rj->job, refresh_run, refresh_done) < 0) {
		free(rj);
		return;
	}
	c->refresh_running = true;
}

void hc_cluster_on_running(void *cluster, const struct hc_runtime_running *list, size_t n)
{
	(void)list;
	(void)n;
	hc_cluster_local_refresh(cluster);
}

/* ---- exits and restarts ---- */

void hc_cluster_local_on_exit(struct hc_cluster *c, const char *id)
{
	struct local_wl *l = hc_cluster_local_find(c, id);
	unsigned shift;
	uint64_t delay;

	if (!l || l->pending || l->stopping || l->restarting || l->restart_at_ms)
		return;
	/* Exponential backoff, so a workload that always fails does not spin. */
	shift = l->restarts < 6 ? l->restarts : 6;
	delay = (uint64_t)RESTART_BACKOFF_MIN_MS << shift;
	if (delay > RESTART_BACKOFF_MAX_MS)
		delay = RESTART_BACKOFF_MAX_MS;
	l->restart_at_ms = hc_loop_now_ms(c->loop) + delay;
	hc_log(HC_LOG_INFO, "workload %s exited: restarting in %llu ms", id,
	       (unsigned long long)delay);
}

void hc_cluster_local_exited(struct hc_cluster *c, const char *id, int exit_code)
{
	struct local_wl *l = hc_cluster_local_find(c, id);
	enum hc_restart_policy p;

	if (!l || l->pending || l->stopping || l->restarting || l->restart_at_ms)
		return;
	p = hc_cluster_restart_policy(c, l->state->source_request);
	if (policy_restarts(p, exit_code)) {
		hc_cluster_local_on_exit(c, id);
		return;
	}
	if (!l->exit_final) /* once, not at every look */
		hc_log(HC_LOG_INFO, "workload %s exited with code %d: not restarted (--restart %s)",
		       id, exit_code, hc_restart_policy_name(p));
	l->exit_final = true;
	hc_cluster_local_refresh(c);
}

void hc_cluster_on_exit(void *cluster, const struct hc_runtime_exit *ev)
{
	struct hc_cluster *c = cluster;

	hc_log(HC_LOG_WARN, "workload %s exited: code %d (%s)", ev->id, ev->exit_code,
	       ev->reason[0] ? ev->reason : "no reason given");
	hc_cluster_local_exited(c, ev->id, ev->exit_code);
}

void hc_cluster_local_housekeeping(struct hc_cluster *c)
{
	uint64_t now = hc_loop_now_ms(c->loop);
	size_t k = 0;

	for (size_t i = 0; i < c->nstopped; i++) {
		if (now - c->stopped_ms[i] >= STOPPED_MEMORY_MS)
			continue;
		memmove(c->stopped[k], c->stopped[i], sizeof(c->stopped[0]));
		c->stopped_ms[k++] = c->stopped_ms[i];
	}
	c->nstopped = k;
	for (size_t i = 0; i < c->nlocal; i++) {
		struct local_wl *l = &c->local[i];

		if (l->stop_retry_at_ms && now >= l->stop_retry_at_ms) {
			l->stop_retry_at_ms = 0;
			c->report(c, &(struct hc_cluster_report){ .kind = HC_CLUSTER_REPORT_STOP_DUE,
								  .local = l });
		}
		if (l->restart_at_ms && !l->restarting && !l->stopping && now >= l->restart_at_ms) {
			l->restart_at_ms = 0;
			l->restarting = true;
			l->restarts++;
			c->restarts++;
			c->report(c, &(struct hc_cluster_report){
					     .kind = HC_CLUSTER_REPORT_RESTART_DUE, .local = l });
		}
	}
}

void hc_cluster_local_fini(struct hc_cluster *c)
{
	for (size_t i = 0; i < c->nlocal; i++)
		local_wl_fini(&c->local[i]);
	free(c->local);
	free(c->stopped);
	free(c->stopped_ms);
	free(c->stop_marks); /* never listed: the files stay for the next start */
	c->stop_marks = NULL;
	c->nstop_marks = 0;
	c->local = NULL;
	c->nlocal = c->local_cap = c->nstopped = 0;
}

void hc_cluster_local_stopped(struct hc_cluster *c, const char *id)
{
	struct local_wl *l = hc_cluster_local_find(c, id);

	if (l && l->stop_failures)
		hc_cluster_stop_mark_clear(c, id);
	remember_stopped(c, id);
	hc_cluster_proofs_forget(c, id);
	hc_cluster_local_remove(c, id);
}

void hc_cluster_local_notify(struct hc_cluster *c)
{
	struct hc_runtime_running *list;
	size_t n = 0;

	if (!c->cfg.on_local || c->closing)
		return;
	list = calloc(c->nlocal + 1, sizeof(*list));
	if (!list)
		return; /* the next change tells again */
	for (size_t i = 0; i < c->nlocal; i++) {
		const struct local_wl *l = &c->local[i];
		const hc_pb_spawn *req = l->state->source_request;
		struct hc_runtime_running *r = &list[n];

		if (l->pending || l->restarting || !l->ip[0])
			continue;
		snprintf(r->id, sizeof(r->id), "%s", l->state->id);
		snprintf(r->ip, sizeof(r->ip), "%s", l->ip);
		for (size_t p = 0; req && p < req->n_ports && r->nports < HC_RUNTIME_MAX_PORTS; p++) {
			r->ports[r->nports].host = (uint16_t)req->ports[p]->key;
			r->ports[r->nports].container = (uint16_t)req->ports[p]->value;
			r->nports++;
		}
		r->egress_bytes_per_sec = l->egress_bytes_per_sec;
		n++;
	}
	c->cfg.on_local(c->cfg.notify_arg, list, n);
	free(list);
}
