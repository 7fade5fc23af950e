/*
 * Spawn and stop across the cluster, through upstream's hypercore_query:
 *   spawn: dry-run query to all alive members -> the candidates with
 *          capacity ordered by the policy (placement.c; enforce: none
 *          matching is an error naming why, never a fallback) -> the real
 *          spawn query to the first (node filter, 90 s) -> on an ERROR
 *          answer or none, the next candidate -> {id, url}; a policy with
 *          replicas N does that N times, each time avoiding the nodes taken;
 *   stop:  a STOP query to all; the owner stops it and answers Node{id},
 *          the others ERROR; all ERROR (or none) -> NOT_FOUND.
 * The other side, answering those queries with runtime work on jobs, is
 * serve.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hypercore/defaults.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "ibrl/ibrl.h"
#include "log/log.h"

#define MAX_CANDIDATES 1024
/*
 * A spawn query goes straight to its target (and by gossip) and asks for an
 * ack, which the target sends as it receives the query, before any work:
 * one not acknowledged in this time was lost on the way (UDP), or its
 * target cannot take it, and the next candidate is tried rather than
 * waiting for the answer's 90 s timeout. Generous against a loaded machine:
 * a late ack means a second copy, which the duplicate settling then stops.
 */
#define SPAWN_ACK_TIMEOUT_MS 10000

/* One gossip query of an operation. Listed in the cluster: gossip drops
 * queries unanswered when it stops, and then they are freed from here. */
struct op_query {
	struct hc_cluster_op *op;
	int attempt;
	bool answered;
	bool acked;       /* the target got it (spawn queries ask for acks) */
	uint64_t sent_ms; /* loop time */
	bool dry; /* the dry run to all */
	const char *target; /* the one node asked (op's candidate), or NULL: all */
	struct hc_list link; /* c->queries */
};

void hc_cluster_queries_free_all(struct hc_cluster *c)
{
	while (!hc_list_empty(&c->queries)) {
		struct op_query *q = hc_list_first(&c->queries, struct op_query, link);

		hc_list_remove(&q->link);
		q->op->inflight--;
		free(q);
	}
}

/* ---- op lifecycle ---- */

/*
 * Ops are many (one a spawn or stop) and outlive their answer: a finished op
 * waits for its queries' deadlines (up to 90 s) before it is freed. Over
 * hours of churn, hundreds of such middle-aged objects a minute, allocated
 * among short-lived ones, pinned malloc's pages as they went
 * (docs/operations.md). So a finished op gives back what it held for its
 * work at once, and freed ops are kept for the next ones, up to
 * OP_POOL_MAX (an op is under 1 KB).
 */
#define OP_POOL_MAX 64

struct hc_cluster_op *hc_cluster_op_new(struct hc_cluster *c, enum op_kind kind, void *arg)
{
	struct hc_cluster_op *op;

	if (!hc_list_empty(&c->op_pool)) {
		op = hc_list_first(&c->op_pool, struct hc_cluster_op, link);
		hc_list_remove(&op->link);
		c->op_pool_n--;
		memset(op, 0, sizeof(*op));
	} else if (!(op = calloc(1, sizeof(*op)))) {
		return NULL;
	}
	op->c = c;
	op->kind = kind;
	op->arg = arg;
	op->started_ns = hc_loop_now_ns(c->loop);
	hc_list_insert(&c->ops, &op->link);
	return op;
}

void hc_cluster_op_pool_free(struct hc_cluster *c)
{
	while (!hc_list_empty(&c->op_pool)) {
		struct hc_cluster_op *op = hc_list_first(&c->op_pool, struct hc_cluster_op, link);

		hc_list_remove(&op->link);
		free(op);
	}
	c->op_pool_n = 0;
}

/* Frees what op held for its work (placement, candidates, the request);
 * what is left answers late queries: they see it finished. */
static void op_shed(struct hc_cluster_op *op)
{
	hc_cluster_placement_op_fini(op);
	op->refusal = NULL, op->free_cores = NULL, op->free_mem_mb = NULL;
	op->avoid = NULL, op->navoid = 0;
	op->placed = NULL, op->nplaced = 0;
	op->policy = NULL;
	for (size_t i = 0; i < op->ncandidates; i++)
		free(op->candidates[i]);
	free(op->candidates), free(op->capable), free(op->exclude);
	op->candidates = NULL, op->capable = NULL, op->exclude = NULL;
	op->ncandidates = op->cand = 0;
	hc_cluster_pb_free(op->req);
	op->req = NULL;
}

static void op_free(struct hc_cluster_op *op)
{
	struct hc_cluster *c = op->c;

	hc_list_remove(&op->link);
	if (op->shed_timer)
		hc_loop_del_timer(c->loop, op->shed_timer);
	op_shed(op);
	if (c->op_pool_n >= OP_POOL_MAX) {
		free(op);
		return;
	}
	hc_list_insert(&c->op_pool, &op->link);
	c->op_pool_n++;
}

static int64_t shed_due(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_cluster_op *op = arg;

	(void)loop, (void)id;
	op->shed_timer = 0;
	op_shed(op);
	return HC_LOOP_TIMER_DONE;
}

void hc_cluster_op_release_if_idle(struct hc_cluster_op *op)
{
	if (!op->finished)
		return;
	if (!op->inflight) {
		op_free(op);
		return;
	}
	/* on the loop's next turn: whoever finished it may still read it */
	if (!op->shed_timer && (op->req || op->candidates || op->policy))
		op->shed_timer = hc_loop_add_timer(op->c->loop, 0, shed_due, op);
}

static void note_error(struct hc_cluster_op *op, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note_error(struct hc_cluster_op *op, const char *fmt, ...)
{
	size_t used = strlen(op->errors);
	va_list ap;

	if (used + 4 >= sizeof(op->errors))
		return;
	if (used)
		used += (size_t)snprintf(op->errors + used, sizeof(op->errors) - used, "; ");
	va_start(ap, fmt);
	vsnprintf(op->errors + used, sizeof(op->errors) - used, fmt, ap);
	va_end(ap);
}

static double op_seconds(const struct hc_cluster_op *op)
{
	return (double)(hc_loop_now_ns(op->c->loop) - op->started_ns) / 1e9;
}

static void ignore_answer(void *arg, enum hc_rpc_code code, const char *err,
			  const ProtobufCMessage *answer)
{
	(void)arg, (void)answer;
	if (code != HC_RPC_OK)
		hc_log(HC_LOG_WARN, "stopping a replica: %s", err);
}

static void spawn_finish(struct hc_cluster_op *op, enum hc_rpc_code code, const char *err,
			 const Cluster__Services__Api__VmSpawnResponse *resp)
{
	struct hc_cluster *c = op->c;

	char msg[900];

	if (op->finished)
		return;
	op->finished = true;
	if (op->explain_done) {
		if (!op->cancelled)
			op->explain_done(op->arg, code, err, NULL);
		hc_cluster_op_release_if_idle(op);
		return;
	}
	if (op->policy)
		hc_cluster_placement_count(op, code == HC_RPC_OK ? PLACEMENT_PLACED
					       : op->no_match	 ? PLACEMENT_NO_MATCH
								 : PLACEMENT_FAILED);
	if (code != HC_RPC_OK && op->nplaced) {
		/* all replicas or none: the ones placed go again */
		for (size_t i = 0; i < op->nplaced; i++)
			hc_cluster_stop(c, op->placed[i]->id, ignore_answer, NULL);
		snprintf(msg, sizeof(msg), "replica %zu of %u: %s (the %zu placed before are being "
			 "stopped)", op->nplaced + 1, op->policy->replicas, err, op->nplaced);
		err = msg;
	}
	if (code == HC_RPC_OK) {
		c->spawns_ok++;
		hc_metrics_histogram_observe(&c->spawn_hist, op_seconds(op));
		hc_log(HC_LOG_INFO, "workload %s spawned in %.3f s", resp->id, op_seconds(op));
	} else {
		c->spawns_failed++;
		hc_log(HC_LOG_WARN, "spawn of %s failed: %s", op->id, err);
	}
	if (!op->cancelled && op->done)
		op->done(op->arg, code, err, resp ? &resp->base : NULL);
	hc_cluster_op_release_if_idle(op);
}

static void stop_finish(struct hc_cluster_op *op, enum hc_rpc_code code, const char *err,
			const Cluster__Services__Api__Node *node)
{
	if (op->finished)
		return;
	op->finished = true;
	if (!op->cancelled && op->done)
		op->done(op->arg, code, err, node ? &node->base : NULL);
	hc_cluster_op_release_if_idle(op);
}

void hc_cluster_op_cancel(struct hc_cluster_op *op)
{
	if (op)
		op->cancelled = true;
}

void hc_cluster_ops_cancel_all(struct hc_cluster *c)
{
	struct hc_cluster_op *op;

	hc_list_for_each(op, &c->ops, link)
		op->cancelled = true;
}

/* ---- queries ---- */

static void query_done(void *arg);
static void stop_not_done(struct hc_cluster_op *op);

static int send_query(struct hc_cluster_op *op, const uint8_t *payload, size_t len,
		      const char *only_node, uint32_t timeout_ms,
		      hc_gossip_response_fn *on_response)
{
	struct op_query *q = calloc(1, sizeof(*q));
	const char *nodes[1] = { only_node };
	struct hc_gossip_query_params params = { .timeout_ms = timeout_ms };
	int r;

	if (!q)
		return -ENOMEM;
	q->op = op;
	q->attempt = op->attempt;
	q->dry = !only_node && op->kind == OP_SPAWN;
	q->target = only_node;
	q->sent_ms = hc_loop_now_ms(op->c->loop);
	hc_list_insert(&op->c->queries, &q->link);
	if (only_node) {
		params.nodes = params.direct = nodes;
		params.nnodes = params.ndirect = 1;
		params.ack = true; /* a query lost on the way shows in seconds, not at 90 s */
	} else if (op->kind == OP_STOP && op->stop_owner[0]) {
		/* to all (a workload may run twice), and straight to its owner */
		nodes[0] = op->stop_owner;
		params.direct = nodes;
		params.ndirect = 1;
	}
	op->inflight++;
	r = hc_cluster_query(op->c, HC_QUERY_NAME, payload, len, &params, on_response, query_done,
			     q);
	if (r < 0) { /* not sent: done() will not run */
		hc_list_remove(&q->link);
		op->inflight--;
		free(q);
	}
	return r;
}

/* How many hypercore nodes should answer a query to all: us and every
 * alive member that announced a state. Foreign members never answer. */
static size_t hypercore_nodes(struct hc_cluster *c)
{
	size_t n = 0, count = 1;
	struct hc_gossip_member *ms = hc_cluster_members(c, &n);

	for (size_t i = 0; ms && i < n; i++)
		if (ms[i].status == HC_GOSSIP_ALIVE && hc_cluster_state_peer(c, ms[i].name))
			count++;
	hc_gossip_members_free(ms, n);
	return count;
}

/* ---- spawn: the asking side ---- */

static void try_next_candidate(struct hc_cluster_op *op);
static void most_memory_free(const struct hc_cluster_op *op, char *buf, size_t len);
static void spawn_placed(struct hc_cluster_op *op,
			 const Cluster__Services__Api__VmSpawnResponse *resp, const char *node);

static bool any_capable(const struct hc_cluster_op *op)
{
	for (size_t i = 0; i < op->ncandidates; i++)
		if (op->capable[i])
			return true;
	return false;
}

/* The dry run is over: the policy orders the candidates, then the first
 * is asked. */
static void dry_run_over(struct hc_cluster_op *op)
{
	char why[1500];
	int r;

	if (op->dry_done || op->finished)
		return;
	op->dry_done = true;
	op->cand = 0;
	if (!op->explain_done && !any_capable(op) && !op->errors[0]) {
		try_next_candidate(op); /* nobody answered: UNAVAILABLE */
		return;
	}
	r = hc_cluster_placement_order(op, why, sizeof(why));
	if (op->finished) { /* explained */
		hc_cluster_op_release_if_idle(op);
		return;
	}
	if (r == -ENOENT) {
		char best[160], msg[sizeof(why) + sizeof(best)];

		most_memory_free(op, best, sizeof(best));
		snprintf(msg, sizeof(msg), "%s%s", why, best);
		op->no_match = true;
		spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, msg, NULL);
		return;
	}
	if (r < 0)
		hc_log(HC_LOG_WARN, "placement of %s: %s; trying the nodes as the dry run found them",
		       op->id, strerror(-r));
	try_next_candidate(op);
}

static ssize_t candidate_index(const struct hc_cluster_op *op, const char *name)
{
	for (size_t i = 0; i < op->ncandidates; i++)
		if (strcmp(op->candidates[i], name) == 0)
			return (ssize_t)i;
	return -1;
}

/* The answer's error text, or NULL if it is a SPAWN answer (*resp set). */
static const char *read_spawn_answer(const uint8_t *payload, size_t len,
				     Cluster__Services__Api__VmSpawnResponse **resp,
				     Cluster__Services__Api__ErrorResponse **eresp, int *event)
{
	ProtobufCMessage *inner;
	Cluster__Services__Api__ClusterMessage *cm;

	*resp = NULL;
	*eresp = NULL;
	cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__vm_spawn_response__descriptor,
		       &inner);
	*event = cm ? (int)cm->event : -1;
	if (cm && cm->event == CLUSTER__SERVICES__API__CLUSTER_EVENT__SPAWN && inner) {
		*resp = (void *)inner;
		hc_cluster_pb_free(cm);
		return NULL;
	}
	hc_cluster_pb_free(inner);
	if (cm && cm->event == CLUSTER__SERVICES__API__CLUSTER_EVENT__ERROR) {
		hc_cluster_pb_free(cm);
		cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__error_response__descriptor,
			       &inner);
		*eresp = (void *)inner;
		hc_cluster_pb_free(cm);
		return *eresp && (*eresp)->error ? (*eresp)->error : "error";
	}
	hc_cluster_pb_free(cm);
	return "an answer that is not a spawn response";
}

static void on_dry_run_answer(void *arg, const char *from, const uint8_t *payload, size_t len,
			      bool is_ack)
{
	struct op_query *q = arg;
	struct hc_cluster_op *op = q->op;
	Cluster__Services__Api__VmSpawnResponse *resp;
	Cluster__Services__Api__ErrorResponse *eresp;
	ssize_t idx = candidate_index(op, from);
	const char *err;
	int event;

	if (is_ack || op->dry_done || op->finished || q->attempt != op->attempt)
		return;
	/* answers count from the nodes asked: the candidates, and a node the
	 * spawn may not go to (respawn: the failed one, back meanwhile) */
	if (idx < 0 && !(op->exclude && strcmp(from, op->exclude) == 0)) {
		hc_cluster_note_rejected(op->c, &op->c->answers_rejected[ANSWER_REJECT_DRY_RUN],
					 "dry-run answer", from, "not an alive member when asked");
		return;
	}
	err = read_spawn_answer(payload, len, &resp, &eresp, &event);
	if (idx >= 0) {
		if (!err) {
			op->capable[idx] = true;
			op->free_cores[idx] = resp->free_cores;
			op->free_mem_mb[idx] = resp->free_memory;
		} else {
			note_error(op, "%s: %s", from, err);
			free(op->refusal[idx]);
			op->refusal[idx] = strdup(err);
		}
	}
	hc_cluster_pb_free(resp);
	hc_cluster_pb_free(eresp);
	if (++op->answered >= op->expected)
		dry_run_over(op);
}

static void on_spawn_answer(void *arg, const char *from, const uint8_t *payload, size_t len,
			    bool is_ack)
{
	struct op_query *q = arg;
	struct hc_cluster_op *op = q->op;
	Cluster__Services__Api__VmSpawnResponse *resp;
	Cluster__Services__Api__ErrorResponse *eresp;
	const char *err;
	int event;

	/* a query of an earlier attempt or round: its target (a candidate of
	 * that round) may be freed */
	if (q->attempt != op->attempt || op->finished || q->answered)
		return;
	if (is_ack) {
		if (q->target && strcmp(from, q->target) == 0)
			q->acked = true;
		return;
	}
	if (!q->target || strcmp(from, q->target) != 0) {
		char why[160];

		snprintf(why, sizeof(why), "the spawn went to %s", q->target ? q->target : "?");
		hc_cluster_note_rejected(op->c, &op->c->answers_rejected[ANSWER_REJECT_SPAWN],
					 "spawn answer", from, why);
		return;
	}
	q->answered = true;
	err = read_spawn_answer(payload, len, &resp, &eresp, &event);
	if (!err && resp->id && *resp->id) {
		Cluster__Services__Api__VmSpawnResponse out = *resp;
		char url[512];

		/* An upstream node makes its own id; the URL follows the id. */
		if (!resp->url || !*resp->url) {
			snprintf(url, sizeof(url), "%s.%s", resp->id, op->c->base_url);
			out.url = url;
		}
		spawn_placed(op, &out, from);
	} else {
		note_error(op, "%s: %s", from, err ? err : "answered without an id");
		try_next_candidate(op);
	}
	hc_cluster_pb_free(resp);
	hc_cluster_pb_free(eresp);
}

/* Not "no such workload": the node running it (it may have died mid-stop)
 * said nothing, so it may still run, or be respawned from its last state. */
static void stop_owner_silent(struct hc_cluster_op *op, const char *what)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "%s, which runs %s, %s: it may not be stopped; ask again",
		 op->stop_owner, op->id, what);
	stop_finish(op, HC_RPC_UNAVAILABLE, msg, NULL);
}

static void query_done(void *arg)
{
	struct op_query *q = arg;
	struct hc_cluster_op *op = q->op;

	/* this query still counts while its end is handled: a spawn it ends
	 * releases op when idle, which must wait for the release below */
	hc_list_remove(&q->link);
	if (!op->finished && !op->c->closing && q->attempt == op->attempt) {
		if (op->kind == OP_STOP && op->stop_owner[0]) {
			stop_owner_silent(op, "did not answer");
		} else if (op->kind == OP_STOP) {
			stop_not_done(op);
		} else if (q->dry) {
			dry_run_over(op);
		} else if (!q->answered) {
			note_error(op, "%s: no answer in time", op->candidates[op->cand - 1]);
			try_next_candidate(op);
		}
	}
	free(q);
	op->inflight--;
	hc_cluster_op_release_if_idle(op);
}

/* Spawn queries still waiting for their target: those to name, or (name
 * NULL) those the target has not acknowledged in SPAWN_ACK_TIMEOUT_MS;
 * each moves on to its next candidate. */
static void give_up_waiting(struct hc_cluster *c, const char *name)
{
	uint64_t now = hc_loop_now_ms(c->loop);
	struct op_query *q, *waiting[64];
	size_t n = 0;

	/* collected first: moving on sends queries, which join the list */
	hc_list_for_each(q, &c->queries, link)
		if (n < sizeof(waiting) / sizeof(waiting[0]) && q->target && !q->answered &&
		    !q->dry && q->op->kind == OP_SPAWN && q->attempt == q->op->attempt &&
		    !q->op->finished &&
		    (name ? strcmp(q->target, name) == 0
			  : !q->acked && now - q->sent_ms > SPAWN_ACK_TIMEOUT_MS))
			waiting[n++] = q;
	for (size_t i = 0; i < n; i++) {
		struct hc_cluster_op *op = waiting[i]->op;
		const char *target = waiting[i]->target;

		/* its done() still comes, at the timeout: answered keeps it from
		 * moving on a second time, the op lives until then */
		waiting[i]->answered = true;
		hc_log(HC_LOG_WARN, "spawn of %s: %s %s; trying the next node", op->id, target,
		       name ? "failed while spawning it" : "did not acknowledge it");
		note_error(op, "%s: %s", target,
			   name ? "failed while spawning" : "no acknowledgement in time");
		try_next_candidate(op);
	}
}

/* Stops waiting for name, the owner of what they stop, to answer: it failed
 * or left, so no answer comes (the client hears it now, not after 30 s). */
static void fail_stops_of(struct hc_cluster *c, const char *name)
{
	struct op_query *q;
	struct hc_cluster_op *ops[64];
	size_t n = 0;

	/* collected first: finishing may release an op and its queries */
	hc_list_for_each(q, &c->queries, link) {
		struct hc_cluster_op *op = q->op;
		bool seen = false;

		for (size_t i = 0; i < n; i++)
			seen |= ops[i] == op;
		if (!seen && n < sizeof(ops) / sizeof(ops[0]) && op->kind == OP_STOP &&
		    !op->finished && strcmp(op->stop_owner, name) == 0)
			ops[n++] = op;
	}
	for (size_t i = 0; i < n; i++)
		stop_owner_silent(ops[i], "failed or left while stopping it");
}

void hc_cluster_ops_member_gone(struct hc_cluster *c, const char *name)
{
	give_up_waiting(c, name);
	fail_stops_of(c, name);
}

void hc_cluster_ops_check_acks(struct hc_cluster *c)
{
	give_up_waiting(c, NULL);
}

/* When nodes refused for memory: which one has the most free, so the
 * caller knows what fits ("" when none said). */
static void most_memory_free(const struct hc_cluster_op *op, char *buf, size_t len)
{
	uint64_t most = 0, mb;
	ssize_t at = -1;

	buf[0] = '\0';
	for (size_t i = 0; op->refusal && i < op->ncandidates; i++)
		if (hc_runtime_refusal_free_mb(op->refusal[i], &mb) == 0 && (at < 0 || mb > most)) {
			most = mb;
			at = (ssize_t)i;
		}
	if (at >= 0)
		snprintf(buf, len, " (the most memory free: %llu MB, on %s)",
			 (unsigned long long)most, op->candidates[at]);
}

static void try_next_candidate(struct hc_cluster_op *op)
{
	uint8_t *payload;
	size_t len;
	int r;

	if (op->c->closing) {
		spawn_finish(op, HC_RPC_UNAVAILABLE, "agent shutting down", NULL);
		return;
	}
	while (op->cand < op->ncandidates && !op->capable[op->cand])
		op->cand++;
	if (op->cand >= op->ncandidates) {
		char msg[900], best[160];

		most_memory_free(op, best, sizeof(best));
		snprintf(msg, sizeof(msg), "no node could take the workload%s%s%s",
			 op->errors[0] ? ": " : " (no node answered)", op->errors, best);
		spawn_finish(op, op->errors[0] ? HC_RPC_RESOURCE_EXHAUSTED : HC_RPC_UNAVAILABLE,
			     msg, NULL);
		return;
	}
	op->req->dry_run = false;
	payload = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__SPAWN, &op->req->base, &len);
	if (!payload) {
		spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return;
	}
	op->attempt++;
	hc_log(HC_LOG_INFO, "spawning %s on %s", op->id, op->candidates[op->cand]);
	r = send_query(op, payload, len, op->candidates[op->cand++], SPAWN_TIMEOUT_MS,
		       on_spawn_answer);
	free(payload);
	if (r < 0 && !op->finished) {
		note_error(op, "cannot query: %s", strerror(-r));
		try_next_candidate(op);
	}
}

/* The candidates: every alive member, as gossip lists them (by name); the
 * policy orders them once the dry run is over. */
static int pick_candidates(struct hc_cluster_op *op)
{
	size_t n = 0;
	struct hc_gossip_member *ms = hc_cluster_members(op->c, &n);

	op->candidates = calloc(n + 1, sizeof(char *));
	op->capable = calloc(n + 1, sizeof(bool));
	op->free_cores = calloc(n + 1, sizeof(*op->free_cores));
	op->free_mem_mb = calloc(n + 1, sizeof(*op->free_mem_mb));
	op->refusal = calloc(n + 1, sizeof(*op->refusal));
	if (!ms || !op->candidates || !op->capable || !op->free_cores || !op->free_mem_mb ||
	    !op->refusal) {
		hc_gossip_members_free(ms, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && op->ncandidates < MAX_CANDIDATES; i++) {
		if (ms[i].status != HC_GOSSIP_ALIVE ||
		    (op->exclude && strcmp(ms[i].name, op->exclude) == 0))
			continue;
		op->candidates[op->ncandidates] = strdup(ms[i].name);
		if (!op->candidates[op->ncandidates])
			break;
		op->ncandidates++;
	}
	hc_gossip_members_free(ms, n);
	return 0;
}

/* Checks a request as the runtime would, so a bad one fails here with
 * INVALID_ARGUMENT instead of as every node's ERROR. */
int hc_cluster_check_spawn_request(const hc_pb_spawn *req, struct hc_err *err)
{
	struct hc_workload_spec spec;
	struct hc_err rerr;
	int r;

	if (!req->image_ref || !*req->image_ref) {
		hc_err_set(err, -EINVAL, "missing image_ref");
		return -EINVAL;
	}
	for (size_t i = 0; i < req->n_ports; i++) {
		uint32_t h = req->ports[i]->key, ctr = req->ports[i]->value;

		if (h < 1 || h > 65535 || ctr < 1 || ctr > 65535) {
			hc_err_set(err, -EINVAL, "invalid port mapping %u:%u (ports are 1..65535)",
				   h, ctr);
			return -EINVAL;
		}
	}
	if (req->id && *req->id && !hc_uuid_valid(req->id)) {
		hc_err_set(err, -EINVAL, "invalid workload id %s (want a UUID)", req->id);
		return -EINVAL;
	}
	if (hc_cluster_pb_to_spec(req, &spec) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	r = hc_workload_spec_validate(&spec, &rerr);
	hc_workload_spec_fini(&spec);
	if (r < 0)
		hc_err_set(err, r, "%s", rerr.msg);
	return r;
}

/* A round: a new id unless preset, the candidates, the dry run to all.
 * 0, or the op is finished (with the reason) and -1. */
static int start_round(struct hc_cluster_op *op, const char *exclude)
{
	struct hc_cluster *c = op->c;
	const char *owner;
	char err[512];
	uint8_t *payload;
	size_t len;
	int r;

	if (pick_candidates(op) < 0) {
		spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return -1;
	}
	if (op->req->id && *op->req->id) {
		snprintf(op->id, sizeof(op->id), "%s", op->req->id);
	} else {
		char *id = malloc(HC_WORKLOAD_ID_LEN + 1);

		if (!id || hc_uuid_new(id) < 0) {
			free(id);
			spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, "cannot make an id", NULL);
			return -1;
		}
		op->req->id = id; /* hc_cluster_pb_free frees it with the message */
		snprintf(op->id, sizeof(op->id), "%s", id);
	}
	owner = hc_cluster_state_owner(c, op->id);
	if (owner && !(exclude && strcmp(owner, exclude) == 0)) {
		snprintf(err, sizeof(err), "workload %s already runs on %s", op->id, owner);
		spawn_finish(op, HC_RPC_ALREADY_EXISTS, err, NULL);
		return -1;
	}
	op->req->dry_run = true;
	payload = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__SPAWN, &op->req->base, &len);
	if (!payload) {
		spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return -1;
	}
	op->expected = hypercore_nodes(c);
	r = send_query(op, payload, len, NULL, DRY_RUN_TIMEOUT_MS, on_dry_run_answer);
	free(payload);
	if (r == -EMSGSIZE) {
		spawn_finish(op, HC_RPC_INVALID_ARGUMENT,
			     "request too large for a gossip query (1024 bytes encoded): fewer "
			     "or shorter env variables",
			     NULL);
		return -1;
	}
	if (r < 0) {
		snprintf(err, sizeof(err), "cannot query the cluster: %s", strerror(-r));
		spawn_finish(op, HC_RPC_UNAVAILABLE, err, NULL);
		return -1;
	}
	return 0;
}

/* Back to a fresh round: what the last one collected goes. */
static void reset_round(struct hc_cluster_op *op)
{
	for (size_t i = 0; i < op->ncandidates; i++) {
		free(op->candidates[i]);
		free(op->refusal[i]);
	}
	free(op->candidates), free(op->capable), free(op->refusal);
	free(op->free_cores), free(op->free_mem_mb);
	op->candidates = NULL, op->capable = NULL, op->refusal = NULL;
	op->free_cores = NULL, op->free_mem_mb = NULL;
	op->ncandidates = op->cand = op->expected = op->answered = 0;
	op->dry_done = false;
	op->errors[0] = '\0';
	op->attempt++; /* answers to the last round's queries are stale */
	free(op->req->id);
	op->req->id = NULL;
}

/* A replica is placed on node: the next round, or the answer with all. */
static void spawn_placed(struct hc_cluster_op *op, const Cluster__Services__Api__VmSpawnResponse *resp,
			 const char *node)
{
	Cluster__Services__Api__VmSpawnResponse **grown, *copy, out;
	char **avoid;

	if (op->nplaced + 1 >= op->policy->replicas) {
		if (!op->nplaced) {
			spawn_finish(op, HC_RPC_OK, NULL, resp);
			return;
		}
		out = *op->placed[0];
		grown = realloc(op->placed, (op->nplaced + 1) * sizeof(*grown));
		if (!grown || !(grown[op->nplaced] = hc_cluster_pb_clone(&resp->base))) {
			if (grown)
				op->placed = grown;
			spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
			return;
		}
		op->placed = grown;
		out.replicas = op->placed;
		out.n_replicas = ++op->nplaced;
		op->nplaced = 0; /* none to stop: the spawn succeeded */
		spawn_finish(op, HC_RPC_OK, NULL, &out);
		op->nplaced = out.n_replicas;
		return;
	}
	grown = realloc(op->placed, (op->nplaced + 1) * sizeof(*grown));
	if (grown)
		op->placed = grown;
	avoid = realloc(op->avoid, (op->navoid + 1) * sizeof(*avoid));
	if (avoid)
		op->avoid = avoid;
	copy = grown ? hc_cluster_pb_clone(&resp->base) : NULL;
	if (!copy || !avoid || !(op->avoid[op->navoid] = strdup(node))) {
		hc_cluster_pb_free(copy);
		spawn_finish(op, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return;
	}
	op->navoid++;
	op->placed[op->nplaced++] = copy;
	hc_log(HC_LOG_INFO, "replica %zu of %u: %s on %s", op->nplaced, op->policy->replicas,
	       resp->id, node);
	reset_round(op);
	start_round(op, NULL);
}

static void fail_early(hc_cluster_op_done *done, hc_cluster_explain_done *explain_done, void *arg,
		       enum hc_rpc_code code, const char *msg)
{
	if (explain_done)
		explain_done(arg, code, msg, NULL);
	else if (done)
		done(arg, code, msg, NULL);
}

static struct hc_cluster_op *spawn_start(struct hc_cluster *c, const hc_pb_spawn *req,
					 const char *exclude, hc_cluster_op_done *done,
					 hc_cluster_explain_done *explain_done, void *arg)
{
	struct hc_cluster_op *op;
	struct hc_err bad;

	if (hc_cluster_check_spawn_request(req, &bad) < 0) {
		fail_early(done, explain_done, arg, HC_RPC_INVALID_ARGUMENT, bad.msg);
		return NULL;
	}
	op = hc_cluster_op_new(c, OP_SPAWN, arg);
	if (!op || !(op->req = hc_cluster_pb_clone(&req->base)) ||
	    (exclude && !(op->exclude = strdup(exclude)))) {
		if (op)
			op_free(op);
		fail_early(done, explain_done, arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	if (hc_cluster_placement_policy(op, &bad) < 0) {
		op_free(op);
		fail_early(done, explain_done, arg,
			   bad.code == -ENOMEM ? HC_RPC_RESOURCE_EXHAUSTED : HC_RPC_INVALID_ARGUMENT,
			   bad.msg);
		return NULL;
	}
	if (exclude) /* a respawn replaces one workload */
		op->policy->replicas = 1;
	if (op->policy->replicas > 1 && op->req->id && *op->req->id) {
		op_free(op);
		fail_early(done, explain_done, arg, HC_RPC_INVALID_ARGUMENT,
			   "a preset id and a policy with replicas > 1 exclude each other");
		return NULL;
	}
	/* the cluster's default, decided here, travels with the request: its
	 * node restarts it as the node asked said */
	if (!op->req->restart || !*op->req->restart) {
		op->req->restart = strdup(hc_restart_policy_name(hc_cluster_restart_policy(c, op->req)));
		if (!op->req->restart) {
			op_free(op);
			fail_early(done, explain_done, arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
			return NULL;
		}
	}
	if (op->req->anti_affinity && *op->req->anti_affinity)
		free(op->req->anti_affinity);
	op->req->anti_affinity = NULL;
	if (op->policy->anti_affinity && !(op->req->anti_affinity = strdup(op->policy->anti_affinity))) {
		op_free(op);
		fail_early(done, explain_done, arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	op->done = done;
	op->explain_done = explain_done;
	if (start_round(op, exclude) < 0)
		return NULL;
	return op->finished ? NULL : op;
}

struct hc_cluster_op *hc_cluster_spawn(struct hc_cluster *c, const hc_pb_spawn *req,
				       hc_cluster_op_done *done, void *arg)
{
	return spawn_start(c, req, NULL, done, NULL, arg);
}

struct hc_cluster_op *hc_cluster_policy_explain(struct hc_cluster *c, const hc_pb_spawn *req,
						hc_cluster_explain_done *done, void *arg)
{
	return spawn_start(c, req, NULL, NULL, done, arg);
}

/* Respawns a workload whose node failed: the whole spawn flow, with its id. */
static void respawn(struct hc_cluster *c, const hc_pb_workload *w, const char *dead_node)
{
	hc_pb_spawn *req;

	if (!w->source_request)
		return;
	/* "never": it must not run twice (a job with side effects), so a node
	 * failure does not start it again either */
	if (hc_cluster_restart_policy(c, w->source_request) == HC_RESTART_NEVER) {
		hc_log(HC_LOG_INFO, "not respawning %s of failed node %s: its restart policy is never",
		       w->id, dead_node);
		return;
	}
	req = hc_cluster_pb_clone(&w->source_request->base);
	if (!req)
		return;
	/* an empty string field points at protobuf-c's shared empty string */
	if (req->id && *req->id)
		free(req->id);
	req->id = strdup(w->id);
	req->dry_run = false;
	if (req->id) {
		hc_log(HC_LOG_INFO, "respawning %s of failed node %s", w->id, dead_node);
		c->respawns++;
		spawn_start(c, req, dead_node, NULL, NULL, NULL);
	}
	hc_cluster_pb_free(req);
}

/* ---- acting on what state.c and local.c report ---- */

static void on_report(struct hc_cluster *c, const struct hc_cluster_report *r)
{
	switch (r->kind) {
	case HC_CLUSTER_REPORT_ORPHANED:
		respawn(c, r->w, r->node);
		break;
	case HC_CLUSTER_REPORT_DUPLICATE:
		hc_cluster_orch_stop_local(c, r->id);
		break;
	case HC_CLUSTER_REPORT_RESTART_DUE:
		hc_cluster_orch_restart_local(c, r->local);
		break;
	case HC_CLUSTER_REPORT_STOP_DUE:
		hc_cluster_orch_stop_local(c, r->local->state->id);
		break;
	}
}

void hc_cluster_orch_init(struct hc_cluster *c)
{
	c->report = on_report;
}

/* ---- stop: the asking side ---- */

/* What an ERROR answer to a stop says, when it is not "not here" (the
 * workload runs on that node and its stop failed there, or the node could
 * not look); NULL otherwise. Copied into buf. */
static const char *stop_error_of(const uint8_t *payload, size_t len, char *buf, size_t size)
{
	ProtobufCMessage *inner;
	Cluster__Services__Api__ClusterMessage *cm;
	const Cluster__Services__Api__ErrorResponse *er;
	const char *why = NULL;

	cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__error_response__descriptor,
				  &inner);
	er = (const void *)inner;
	if (cm && cm->event == CLUSTER__SERVICES__API__CLUSTER_EVENT__ERROR && er && er->error &&
	    strcmp(er->error, HC_STOP_NOT_HERE) != 0) {
		snprintf(buf, size, "%s", er->error);
		why = buf;
	}
	hc_cluster_pb_free(inner);
	hc_cluster_pb_free(cm);
	return why;
}

/* Every node asked answered, none with the stop done: NOT_FOUND, unless
 * some said why they could not stop it (then their words). */
static void stop_not_done(struct hc_cluster_op *op)
{
	char msg[700];

	if (op->errors[0]) {
		snprintf(msg, sizeof(msg), "stop of %s failed: %s", op->id, op->errors);
		stop_finish(op, HC_RPC_UNAVAILABLE, msg, NULL);
		return;
	}
	snprintf(msg, sizeof(msg), "no workload %s in the cluster", op->id);
	stop_finish(op, HC_RPC_NOT_FOUND, msg, NULL);
}

static void on_stop_answer(void *arg, const char *from, const uint8_t *payload, size_t len,
			   bool is_ack)
{
	struct op_query *q = arg;
	struct hc_cluster_op *op = q->op;
	ProtobufCMessage *inner;
	Cluster__Services__Api__ClusterMessage *cm;
	char why[700];

	if (is_ack || op->finished)
		return;
	/* a stop goes to all, so no one node is its target; but each answer
	 * counts towards NOT_FOUND, so it must come from a member */
	if (!hc_cluster_member_alive(op->c, from)) {
		hc_cluster_note_rejected(op->c, &op->c->answers_rejected[ANSWER_REJECT_STOP],
					 "stop answer", from, "not an alive member");
		return;
	}
	cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__node__descriptor, &inner);
	if (cm && cm->event == CLUSTER__SERVICES__API__CLUSTER_EVENT__STOP && inner) {
		stop_finish(op, HC_RPC_OK, NULL, (void *)inner);
	} else if (stop_error_of(payload, len, why, sizeof(why))) {
		/* the owner's failure ends it (the owner keeps trying); another
		 * node's waits, as the owner (maybe not known yet) may still
		 * answer that it stopped it */
		if (strcmp(from, op->stop_owner) == 0) {
			char msg[900];

			snprintf(msg, sizeof(msg), "stop of %s on %s failed: %s", op->id, from, why);
			stop_finish(op, HC_RPC_UNAVAILABLE, msg, NULL);
		} else {
			note_error(op, "%s: %s", from, why);
			if (++op->stop_errors >= op->expected)
				stop_not_done(op);
		}
	} else if (++op->stop_errors >= op->expected) {
		stop_not_done(op);
	}
	hc_cluster_pb_free(inner);
	hc_cluster_pb_free(cm);
}

struct hc_cluster_op *hc_cluster_stop(struct hc_cluster *c, const char *id,
				      hc_cluster_op_done *done, void *arg)
{
	Cluster__Services__Api__VmStopRequest req = CLUSTER__SERVICES__API__VM_STOP_REQUEST__INIT;
	struct hc_cluster_op *op;
	uint8_t *payload;
	size_t len;
	int r;

	if (!id || !hc_uuid_valid(id)) {
		done(arg, HC_RPC_INVALID_ARGUMENT, "invalid workload id (want a UUID)", NULL);
		return NULL;
	}
	op = hc_cluster_op_new(c, OP_STOP, arg);
	req.id = (char *)id;
	payload = op ? hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__STOP, &req.base,
					  &len)
		     : NULL;
	if (!payload) {
		if (op)
			op_free(op);
		done(arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return NULL;
	}
	op->done = done;
	snprintf(op->id, sizeof(op->id), "%s", id);
	snprintf(op->stop_owner, sizeof(op->stop_owner), "%s", hc_cluster_state_owner(c, id) ?: "");
	op->expected = hypercore_nodes(c);
	r = send_query(op, payload, len, NULL, STOP_TIMEOUT_MS, on_stop_answer);
	free(payload);
	if (r < 0) {
		char msg[160];

		snprintf(msg, sizeof(msg), "cannot query the cluster: %s", strerror(-r));
		stop_finish(op, HC_RPC_UNAVAILABLE, msg, NULL);
		return NULL;
	}
	return op->finished ? NULL : op;
}
