/* Node identity, state and the cluster membership it runs; see cluster.h. */
#include "cluster/cluster_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "log/log.h"
#include "metrics/metrics.h"

static const double spawn_buckets[] = { 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120 };

#define JOIN_ATTEMPTS 5

struct leave_state {
	struct hc_cluster *c;
	void (*done)(void *arg);
	void *arg;
};

static int read_id(const char *path, char *id, struct hc_err *err)
{
	/* Room for the id, its newline, one byte to detect longer files, NUL. */
	char buf[HC_NODE_ID_LEN + 3];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		hc_err_set(err, -EIO, "cannot read %s: %s", path, strerror(errno));
		return -EIO;
	}
	if (n == HC_NODE_ID_LEN + 1 && buf[HC_NODE_ID_LEN] == '\n')
		n--;
	buf[n] = '\0';
	if (n != HC_NODE_ID_LEN || !hc_uuid_valid(buf)) {
		return hc_err_set(err, -EINVAL,
				  "%s does not hold a node id (a lowercase UUID); fix or remove it",
				  path);
	}
	memcpy(id, buf, HC_NODE_ID_LEN + 1);
	return 0;
}

static int write_id(const char *path, const char *id, struct hc_err *err)
{
	char line[HC_NODE_ID_LEN + 2];
	int r;

	snprintf(line, sizeof(line), "%s\n", id);
	r = hc_file_write_atomic(path, line, HC_NODE_ID_LEN + 1, 0644);
	if (r < 0)
		hc_err_set(err, r, "cannot write %s: %s", path, strerror(-r));
	return r;
}

int hc_node_id_read(const char *path, char *id, struct hc_err *err)
{
	int r = read_id(path, id, err);

	if (r < 0 && r != -EINVAL && r != -EIO)
		hc_err_set(err, r, "cannot open %s: %s", path, strerror(-r));
	return r;
}

int hc_node_id_load(const char *path, char *id, struct hc_err *err)
{
	int r = read_id(path, id, err);

	if (r != -ENOENT) {
		if (r < 0 && r != -EINVAL && r != -EIO)
			hc_err_set(err, r, "cannot open %s: %s", path, strerror(-r));
		return r;
	}
	r = hc_uuid_new(id);
	if (r < 0) {
		hc_err_set(err, r, "cannot make a node id: %s", strerror(-r));
		return r;
	}
	return write_id(path, id, err);
}

struct hc_cluster *hc_cluster_new(struct hc_loop *loop, const struct hc_cluster_config *cfg,
				  struct hc_err *err)
{
	struct hc_cluster *c = calloc(1, sizeof(*c));
	char path[4096];

	if (c) { /* before anything can fail: hc_cluster_free walks them */
		hc_list_init(&c->ops);
		hc_list_init(&c->op_pool);
		hc_list_init(&c->queries);
		hc_list_init(&c->jobs);
	}
	if (!c || !(c->base_url = strdup(cfg->base_url))) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	c->loop = loop;
	hc_cluster_orch_init(c);
	if (snprintf(path, sizeof(path), "%s/node-id", cfg->state_dir) >= (int)sizeof(path)) {
		hc_err_set(err, -ENAMETOOLONG, "state dir path too long");
		goto fail;
	}
	if (hc_node_id_load(path, c->node_id, err) < 0)
		goto fail;
	c->cfg = *cfg; /* a copy: the caller may reuse its own */
	if (hc_cluster_beacon_init(c, cfg, err) < 0)
		goto fail;
	if (hc_cluster_delta_init(c) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	hc_metrics_histogram_init(&c->spawn_hist, spawn_buckets,
				  sizeof(spawn_buckets) / sizeof(spawn_buckets[0]));
	return c;
fail:
	hc_cluster_free(c);
	return NULL;
}

static void collect(struct hc_metrics_writer *w, void *arg);

void hc_cluster_free(struct hc_cluster *c)
{
	if (!c)
		return;
	/* Jobs finish (their runtime calls cannot be interrupted) but change
	 * nothing any more; operations in flight are dropped unanswered. */
	c->closing = true;
	if (c->state_timer)
		hc_loop_del_timer(c->loop, c->state_timer);
	if (c->announce_timer)
		hc_loop_del_timer(c->loop, c->announce_timer);
	if (c->housekeeping_timer)
		hc_loop_del_timer(c->loop, c->housekeeping_timer);
	hc_cluster_ops_cancel_all(c);
	hc_cluster_jobs_drain(c);
	if (c->metrics) {
		hc_metrics_unregister(c->metrics, hc_gossip_collect, c->gossip);
		hc_metrics_unregister(c->metrics, collect, c);
	}
	/* Queries in flight end with gossip, unanswered. */
	hc_gossip_free(c->gossip);
	hc_cluster_queries_free_all(c);
	while (!hc_list_empty(&c->ops)) {
		struct hc_cluster_op *op = hc_list_first(&c->ops, struct hc_cluster_op, link);

		op->finished = true;
		op->inflight = 0;
		hc_cluster_op_release_if_idle(op);
	}
	hc_cluster_op_pool_free(c);
	hc_cluster_local_fini(c);
	hc_cluster_state_fini(c);
	hc_cluster_delta_fini(c);
	hc_cluster_beacon_fini(c);
	hc_cluster_placement_fini(c);
	hc_cluster_routes_carry_fini(c);
	free(c->leaving); /* the agent stopped before the leave finished */
	free(c->base_url);
	free(c);
}

static void answer_info(struct hc_cluster *c, uint64_t query_id)
{
	char info[512];
	int n = snprintf(info, sizeof(info),
			 "{\"name\":\"%s\",\"node_id\":\"%s\",\"version\":\"%s\"}",
			 hc_gossip_name(c->gossip), c->node_id, HC_VERSION);

	if (hc_gossip_respond(c->gossip, query_id, (const uint8_t *)info, (size_t)n) < 0)
		hc_log(HC_LOG_WARN, "cannot answer %s", HC_CLUSTER_INFO_QUERY);
}

static void on_gossip_event(const struct hc_gossip_event *ev, void *arg)
{
	struct hc_cluster *c = arg;

	if (c->closing)
		return;
	switch (ev->type) {
	case HC_GOSSIP_EV_USER:
		hc_cluster_state_on_event(c, ev->name, ev->payload, ev->len);
		break;
	case HC_GOSSIP_EV_QUERY:
		if (strcmp(ev->name, HC_QUERY_NAME) == 0) {
			hc_cluster_orch_on_query(c, ev->query_id, ev->query_source ? ev->query_source : "?",
				      ev->payload, ev->len);
		} else if (strcmp(ev->name, HC_CLUSTER_INFO_QUERY) == 0) {
			answer_info(c, ev->query_id);
		} else {
			c->queries_ignored++;
			hc_log(HC_LOG_DEBUG, "query %s from %s ignored (%zu bytes)", ev->name,
			       ev->query_source ? ev->query_source : "?", ev->len);
		}
		break;
	case HC_GOSSIP_EV_MEMBER_JOIN:
		hc_cluster_members_sync(c);
		/* a newcomer learns our state now, not at the next refresh;
		 * off the periodic tick, which keeps its phase: re-armed at
		 * each join, every node's ticks would fall together */
		if (!c->announce_timer)
			c->announce_timer = hc_loop_add_timer(c->loop, 0, hc_cluster_state_announce,
							      c);
		break;
	case HC_GOSSIP_EV_MEMBER_FAILED:
		hc_cluster_state_forget_node(c, ev->member->name, true);
		hc_cluster_ops_member_gone(c, ev->member->name);
		break;
	case HC_GOSSIP_EV_MEMBER_LEAVE:
		hc_cluster_members_sync(c);
		hc_cluster_state_node_left(c, ev->member->name);
		hc_cluster_ops_member_gone(c, ev->member->name);
		break;
	case HC_GOSSIP_EV_MEMBER_REAP:
		hc_cluster_members_sync(c);
		hc_cluster_state_forget_node(c, ev->member->name, false);
		hc_cluster_ops_member_gone(c, ev->member->name);
		break;
	case HC_GOSSIP_EV_MEMBER_UPDATE:
		hc_cluster_members_sync(c);
		break;
	default:
		break;
	}
}

int hc_cluster_user_event(struct hc_cluster *c, const char *name, const uint8_t *payload,
			  size_t len, bool coalesce)
{
	return hc_gossip_user_event(c->gossip, name, payload, len, coalesce);
}

int hc_cluster_query(struct hc_cluster *c, const char *name, const uint8_t *payload, size_t len,
		     const struct hc_gossip_query_params *params,
		     hc_gossip_response_fn *on_response, void (*done)(void *arg), void *arg)
{
	if (c->query_hook)
		return c->query_hook(c, name, payload, len, params, on_response, done, arg);
	return hc_gossip_query(c->gossip, name, payload, len, params, on_response, done, arg);
}

int hc_cluster_key_op(struct hc_cluster *c, enum hc_gossip_key_op op, const char *key_b64,
		      void (*done)(void *arg, unsigned ok, unsigned failed), void *arg)
{
	uint8_t key[32];
	size_t len;
	int r = hc_gossip_key_decode(key_b64, key, &len);

	if (r == 0)
		r = hc_gossip_key_op(c->gossip, op, key, len, done, arg);
	explicit_bzero(key, sizeof(key));
	return r;
}

static void on_joined(void *arg, unsigned joined)
{
	struct hc_cluster *c = arg;

	if (!joined)
		hc_log(HC_LOG_ERROR, "could not join any seed; running as a cluster of one "
				     "until a peer joins us");
	(void)c;
}

#define HOUSEKEEPING_MS 1000

static int64_t housekeeping(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_cluster *c = arg;

	(void)loop;
	(void)id;
	hc_cluster_state_housekeeping(c);
	hc_cluster_delta_housekeeping(c);
	hc_cluster_local_housekeeping(c);
	hc_cluster_routes_hold_check(c);
	hc_cluster_ops_check_acks(c);
	if (c->members_sync_due)
		hc_cluster_members_sync(c);
	return HOUSEKEEPING_MS;
}

/* Our address as peers reach us: the IP of our gossip address. */
static void our_addr(struct hc_cluster *c)
{
	char addr[64], *end;

	hc_cluster_gossip_addr(c, addr, sizeof(addr));
	end = strrchr(addr, ':');
	if (end)
		*end = '\0';
	if (addr[0] == '[') {
		end = strchr(addr, ']');
		if (end)
			*end = '\0';
		memmove(addr, addr + 1, strlen(addr));
	}
	snprintf(c->node_addr, sizeof(c->node_addr), "%s", addr);
}

void hc_cluster_set_http_port(struct hc_cluster *c, uint16_t port)
{
	c->http_port = port;
}

void hc_cluster_set_api_token(struct hc_cluster *c, const char *token)
{
	snprintf(c->api_token, sizeof(c->api_token), "%s", token ? token : "");
}

void hc_cluster_set_maps(struct hc_cluster *c, struct hc_dpmaps *maps)
{
	c->cfg.maps = maps;
	hc_cluster_members_sync(c);
}

int hc_cluster_start(struct hc_cluster *c, struct hc_err *err)
{
	const struct hc_cluster_config *cfg = &c->cfg;
	struct hc_gossip_config gc = cfg->gossip;
	struct timespec now;
	int r;

	if (!gc.name)
		gc.name = c->node_id;
	gc.on_event = on_gossip_event;
	gc.event_arg = c;
	gc.event_version = hc_cluster_digest_version;
	gc.event_version_arg = c;
	c->gossip = cfg->gossip_new ? cfg->gossip_new(cfg->gossip_arg, c->loop, &gc, err)
				    : hc_gossip_new(c->loop, &gc, err);
	if (!c->gossip)
		return err && err->code < 0 ? err->code : -EIO;
	our_addr(c);
	hc_cluster_members_sync(c); /* ourselves: no event says we joined */
	/* Versions only grow, across restarts too: they start at the clock,
	 * or above the last run's when the clock stepped back (version.c). */
	clock_gettime(CLOCK_REALTIME, &now);
	c->state_version = hc_cluster_version_first(
		c, (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000);
	/* our state at once (gossip's event of our own join may have asked
	 * already: once), then the periodic tick at our phase */
	if (!c->announce_timer)
		c->announce_timer = hc_loop_add_timer(c->loop, 0, hc_cluster_state_announce, c);
	c->state_timer = hc_loop_add_timer(c->loop, hc_cluster_state_phase_ms(c),
					   hc_cluster_state_tick, c);
	c->housekeeping_timer = hc_loop_add_timer(c->loop, HOUSEKEEPING_MS, housekeeping, c);
	if (!c->announce_timer || !c->state_timer || !c->housekeeping_timer ||
	    hc_cluster_beacon_start(c) < 0)
		return hc_err_set(err, -ENOMEM, "out of memory");
	hc_cluster_routes_carry(c); /* until the other nodes' states are in */
	if (cfg->runtime)
		hc_cluster_routes_hold(c); /* until the refresh below lists our workloads */
	hc_cluster_stop_marks_load(c); /* before the first listing */
	hc_cluster_local_refresh(c);
	if (cfg->njoin) {
		r = hc_gossip_join(c->gossip, cfg->join, cfg->njoin, JOIN_ATTEMPTS, false,
				   on_joined, c);
		if (r < 0)
			return hc_err_set(err, r, "invalid join address");
	}
	return 0;
}

void hc_cluster_gossip_addr(const struct hc_cluster *c, char *buf, size_t len)
{
	struct hc_gossip_member *ms;
	size_t n = 0;

	snprintf(buf, len, "-");
	ms = hc_gossip_members(c->gossip, &n);
	for (size_t i = 0; ms && i < n; i++)
		if (strcmp(ms[i].name, hc_gossip_name(c->gossip)) == 0)
			snprintf(buf, len, "%s", ms[i].addr);
	hc_gossip_members_free(ms, n);
}

struct hc_gossip_member *hc_cluster_members(struct hc_cluster *c, size_t *n)
{
	if (c->members_hook)
		return c->members_hook(c, n);
	if (!c->gossip) {
		*n = 0;
		return calloc(1, sizeof(struct hc_gossip_member));
	}
	return hc_gossip_members(c->gossip, n);
}

static void left(void *arg)
{
	struct leave_state *ls = arg;

	ls->c->leaving = NULL;
	ls->done(ls->arg);
	free(ls);
}

void hc_cluster_leave(struct hc_cluster *c, void (*done)(void *arg), void *arg)
{
	struct leave_state *ls = malloc(sizeof(*ls));

	if (!ls || !c->gossip) {
		free(ls);
		done(arg);
		return;
	}
	/* Filled first: alone in the cluster, the leave completes at once. */
	ls->c = c;
	ls->done = done;
	ls->arg = arg;
	c->leaving = ls;
	if (hc_gossip_leave(c->gossip, left, ls) < 0) {
		c->leaving = NULL;
		free(ls);
		done(arg);
	}
}

int hc_cluster_register_metrics(struct hc_cluster *c, struct hc_metrics *m)
{
	int r = hc_metrics_register(m, hc_gossip_collect, c->gossip);

	if (r == 0 && (r = hc_metrics_register(m, collect, c)) < 0)
		hc_metrics_unregister(m, hc_gossip_collect, c->gossip);
	if (r == 0)
		c->metrics = m;
	return r;
}

const char *hc_cluster_node_id(const struct hc_cluster *c)
{
	return c->node_id;
}

size_t hc_cluster_local_workloads(const struct hc_cluster *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nlocal; i++)
		n += !c->local[i].pending;
	return n;
}

void hc_cluster_metric_counter(struct hc_metrics_writer *w, const char *name, const char *help,
			       uint64_t value)
{
	hc_metrics_family(w, name, "counter", help);
	hc_metrics_sample(w, name, NULL, (double)value);
}

void hc_cluster_metric_counters(struct hc_metrics_writer *w, const char *name, const char *help,
				const char *label, const char *const *values,
				const uint64_t *counts, size_t n)
{
	hc_metrics_family(w, name, "counter", help);
	for (size_t i = 0; i < n; i++) {
		const char *labels[] = { label, values[i], NULL };

		hc_metrics_sample(w, name, labels, (double)counts[i]);
	}
}

const char *const hc_cluster_state_reject_names[STATE_REJECT_REASONS] = {
	[STATE_REJECT_ADDR_MISMATCH] = "addr_mismatch",
	[STATE_REJECT_VERSION_AHEAD] = "version_ahead",
	[STATE_REJECT_VERSION_JUMP] = "version_jump",
	[STATE_REJECT_VERSION_MISSING] = "version_missing",
};

const char *const hc_cluster_answer_reject_names[ANSWER_REJECT_KINDS] = {
	[ANSWER_REJECT_DRY_RUN] = "dry_run",
	[ANSWER_REJECT_SPAWN] = "spawn",
	[ANSWER_REJECT_STOP] = "stop",
};

void hc_cluster_note_rejected(struct hc_cluster *c, uint64_t *counter, const char *what,
			      const char *sender, const char *why)
{
	uint64_t now = hc_loop_now_ms(c->loop);

	(*counter)++;
	if (now < c->reject_warn_next_ms) {
		c->rejects_unlogged++;
		hc_log(HC_LOG_DEBUG, "%s from %s rejected: %s", what, sender, why);
		return;
	}
	if (c->rejects_unlogged)
		hc_log(HC_LOG_WARN, "%s from %s rejected: %s; %llu more rejected since the last "
				    "warning (debug shows them)",
		       what, sender, why, (unsigned long long)c->rejects_unlogged);
	else
		hc_log(HC_LOG_WARN, "%s from %s rejected: %s", what, sender, why);
	c->reject_warn_next_ms = now + REJECT_WARN_EVERY_MS;
	c->rejects_unlogged = 0;
}

static void collect(struct hc_metrics_writer *w, void *arg)
{
	struct hc_cluster *c = arg;
	static const char *const states[] = { "alive", "leaving", "left", "failed" };
	size_t n = 0, by_state[5] = { 0 }, queued, stops_owed = 0;
	struct hc_gossip_member *ms = hc_cluster_members(c, &n);
	unsigned threads;

	for (size_t i = 0; ms && i < n; i++)
		if (ms[i].status < 5)
			by_state[ms[i].status]++;
	hc_gossip_members_free(ms, n);
	hc_metrics_family(w, "hypercore_cluster_members", "gauge",
			  "Cluster members as gossip sees them, by state");
	for (int s = 0; s < 4; s++) {
		const char *labels[] = { "state", states[s], NULL };

		hc_metrics_sample(w, "hypercore_cluster_members", labels,
				  (double)by_state[s + 1]);
	}
	hc_metrics_family(w, "hypercore_serf_queue_depth", "gauge",
			  "Messages waiting in the gossip broadcast queues");
	hc_metrics_sample(w, "hypercore_serf_queue_depth", NULL,
			  c->gossip ? (double)hc_gossip_queue_depth(c->gossip) : 0);
	hc_metrics_family(w, "hypercore_workload_count", "gauge", "Workloads running on this node");
	hc_metrics_sample(w, "hypercore_workload_count", NULL,
			  (double)hc_cluster_local_workloads(c));
	hc_metrics_family(w, "hypercore_cluster_known_nodes", "gauge",
			  "Other nodes whose state this node holds");
	hc_metrics_sample(w, "hypercore_cluster_known_nodes", NULL, (double)c->npeers);
	hc_cluster_metric_counter(w, "hypercore_broadcast_skipped_total",
		"State broadcasts skipped because the gossip queue was over 10000",
		c->broadcast_skipped);
	hc_cluster_metric_counter(w, "hypercore_state_changes_total", "Changes of this node's announced state",
		c->state_changes);
	hc_cluster_metric_counter(w, "hypercore_state_broadcasts_total", "State broadcasts sent", c->broadcasts);
	hc_cluster_metric_counter(w, "hypercore_states_received_total", "Complete states received from other nodes",
		c->states_received);
	hc_cluster_metric_counter(w, "hypercore_states_outdated_total",
		"States dropped because a newer one of their node was already held",
		c->states_outdated);
	hc_cluster_metric_counters(w, "hypercore_states_rejected_total",
			  "States from other nodes not used: node_addr not the sender's member "
			  "address, or a version too far ahead or missing",
			  "reason", hc_cluster_state_reject_names, c->states_rejected,
			  STATE_REJECT_REASONS);
	hc_cluster_metric_counters(w, "hypercore_answers_rejected_total",
			  "Query answers ignored: not from a node the query was sent to",
			  "query", hc_cluster_answer_reject_names, c->answers_rejected,
			  ANSWER_REJECT_KINDS);
	hc_cluster_metric_counter(w, "hypercore_state_chunks_dropped_total",
		"State chunks dropped (malformed, unknown sender, missed beginning)",
		c->chunks_dropped);
	hc_cluster_metric_counter(w, "hypercore_state_assemblies_evicted_total",
		"Multi-chunk states in flight dropped to make room (per-sender or overall limit)",
		c->assemblies_evicted);
	hc_cluster_metric_counter(w, "hypercore_foreign_events_total", "User events and queries not ours, ignored",
		c->events_ignored + c->queries_ignored);
	hc_cluster_metric_counter(w, "hypercore_respawns_total", "Workloads of failed nodes this node respawned",
		c->respawns);
	hc_metrics_family(w, "hypercore_respawn_pending", "gauge",
			  "Workloads of failed nodes not yet seen running again");
	hc_metrics_sample(w, "hypercore_respawn_pending", NULL,
			  (double)hc_cluster_orphans_count(c));
	hc_cluster_metric_counter(w, "hypercore_restarts_total", "Exited local workloads restarted", c->restarts);
	hc_metrics_family(w, "hypercore_workload_restarts_total", "counter",
			  "Times each local workload was restarted after it exited (since this "
			  "agent started)");
	for (size_t i = 0; i < c->nlocal; i++) {
		const char *labels[] = { "workload", c->local[i].state->id, NULL };

		hc_metrics_sample(w, "hypercore_workload_restarts_total", labels,
				  (double)c->local[i].restarts);
		stops_owed += c->local[i].stop_failures > 0;
	}
	hc_cluster_metric_counter(w, "hypercore_stops_failed_total",
		"Stops of local workloads that failed (each try; the node tries again)",
		c->stops_failed);
	hc_metrics_family(w, "hypercore_stops_owed", "gauge",
			  "Local workloads whose stop failed and is being tried again");
	hc_metrics_sample(w, "hypercore_stops_owed", NULL, (double)stops_owed);
	hc_cluster_metric_counter(w, "hypercore_duplicates_stopped_total",
		"Local copies stopped because another node runs the same workload", c->duplicates_stopped);
	hc_cluster_metric_counter(w, "hypercore_dataplane_syncs_total",
		"Map syncs from the cluster's state (every node's workloads)", c->map_syncs);
	hc_cluster_metric_counter(w, "hypercore_dataplane_sync_errors_total", "Map syncs that failed",
		c->map_sync_errors);
	hc_cluster_placement_collect(c, w);
	hc_cluster_delta_collect(c, w);
	hc_cluster_metric_counter(w, "hypercore_jobs_refused_total",
		"Runtime jobs refused because the worker pool's queue was full", c->jobs_refused);
	hc_cluster_metric_counter(w, "hypercore_logs_refused_total",
		"Logs calls refused because too many reads of that workload's log, or of all "
		"logs, were in flight", c->logs_refused);
	hc_cluster_jobs_threads(c, &threads, &queued);
	hc_metrics_family(w, "hypercore_job_threads", "gauge", "Worker threads of the job pool.");
	hc_metrics_sample(w, "hypercore_job_threads", NULL, threads);
	hc_metrics_family(w, "hypercore_jobs_queued", "gauge", "Runtime jobs waiting for a thread.");
	hc_metrics_sample(w, "hypercore_jobs_queued", NULL, (double)queued);
	hc_cluster_metric_counter(w, "hypercore_spawns_total", "Spawns asked of this node that succeeded",
		c->spawns_ok);
	hc_cluster_metric_counter(w, "hypercore_spawn_failures_total", "Spawns asked of this node that failed",
		c->spawns_failed);
	hc_metrics_histogram_write(w, "hypercore_spawn_duration_seconds",
				   "From a spawn request to the owner's answer",
				   &c->spawn_hist);
	hc_cluster_beacon_collect(c, w);
	hc_cluster_metric_counter(w, "hypercore_ibrl_proofs_generated_total",
		"Execution proofs this node sealed and logged for its workloads", c->proofs_generated);
	hc_cluster_metric_counter(w, "hypercore_ibrl_proof_errors_total",
		"Proofs not made (log unreadable or unwritable)", c->proof_errors);
	hc_cluster_metric_counter(w, "hypercore_ibrl_proofs_verified_total", "Proof chains this node verified VALID",
		c->proofs_verified);
	hc_cluster_metric_counter(w, "hypercore_ibrl_proofs_unknown_total",
		"Proof verifications that could not decide (no log, no key, owner unreachable)",
		c->proofs_unknown);
	/* the reasons of INVALID: from malformed to truncated */
	hc_cluster_metric_counters(w, "hypercore_ibrl_proofs_invalid_total",
			  "Proof chains this node found INVALID, by reason", "reason",
			  &hc_ibrl_reason_names[HC_IBRL_MALFORMED],
			  &c->proofs_invalid[HC_IBRL_MALFORMED],
			  HC_IBRL_TRUNCATED - HC_IBRL_MALFORMED + 1);
}

/* A node's state for List: strings and workloads borrowed; the message's
 * own allocations are freed by hc_cluster_list_free(). */
static hc_pb_state *state_msg(const char *name, const char *addr, uint32_t http_port,
			      bool respawn, hc_pb_workload **w, size_t n, hc_pb_beacon *beacon,
			      bool verified)
{
	hc_pb_state *st = malloc(sizeof(*st));
	Cluster__Services__Api__Node *node = malloc(sizeof(*node));

	if (!st || !node) {
		free(st);
		free(node);
		return NULL;
	}
	cluster__services__api__node_state_response__init(st);
	cluster__services__api__node__init(node);
	node->id = (char *)name;
	node->ip = (char *)(addr ? addr : "");
	st->node = node;
	st->node_addr = (char *)(addr ? addr : "");
	st->http_port = http_port;
	st->respawn = respawn;
	st->workloads = w;
	st->n_workloads = n;
	st->beacon = beacon;
	st->trust = (char *)(verified ? "verified" : "unverified");
	return st;
}

Cluster__Services__Api__NodesStateResponse *hc_cluster_list(struct hc_cluster *c)
{
	Cluster__Services__Api__NodesStateResponse *list = calloc(1, sizeof(*list));
	hc_pb_workload **mine;
	size_t n = 0;

	if (!list)
		goto oom;
	cluster__services__api__nodes_state_response__init(list);
	list->states = calloc(c->npeers + 1, sizeof(*list->states));
	mine = calloc(c->nlocal + 1, sizeof(*mine));
	if (!list->states || !mine) {
		free(mine);
		goto oom;
	}
	for (size_t i = 0; i < c->nlocal; i++)
		if (!c->local[i].pending)
			mine[n++] = c->local[i].state;
	list->states[0] = state_msg(c->gossip ? hc_gossip_name(c->gossip) : c->node_id,
				    c->node_addr, c->http_port, c->cfg.respawn, mine, n,
				    c->beacon_out, c->identity != NULL);
	if (!list->states[0]) {
		free(mine);
		goto oom;
	}
	list->n_states = 1;
	for (size_t i = 0; i < c->npeers; i++) {
		const struct peer *p = &c->peers[i];
		hc_pb_state *st;

		if (p->stale)
			continue; /* silent: what it said may no longer hold */
		st = state_msg(p->name, p->node_addr, p->http_port, p->respawn, NULL, 0, p->beacon,
			       p->verified);

		if (!st)
			goto oom;
		if (p->nworkloads && !(st->workloads = malloc(p->nworkloads * sizeof(*st->workloads)))) {
			free(st->node);
			free(st);
			goto oom;
		}
		for (size_t k = 0; k < p->nworkloads; k++)
			st->workloads[k] = p->workloads[k];
		st->n_workloads = p->nworkloads;
		st->beacon = p->beacon; /* borrowed, as the workloads */
		list->states[list->n_states++] = st;
	}
	return list;
oom:
	hc_cluster_list_free(list);
	errno = ENOMEM;
	return NULL;
}

void hc_cluster_list_free(Cluster__Services__Api__NodesStateResponse *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n_states; i++) {
		if (list->states[i]) {
			free(list->states[i]->node);
			free(list->states[i]->workloads);
		}
		free(list->states[i]);
	}
	free(list->states);
	free(list);
}
