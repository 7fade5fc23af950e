/* The answering side of spawn and stop: serving the queries, runtime jobs, node ports. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hypercore/defaults.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "log/log.h"

#define STOP_GRACE_S 10
#define STOP_RETRY_MIN_MS 1000
#define STOP_RETRY_MAX_MS 60000
/* Room for HC_LABEL_NODE_PORTS: "host:node" pairs, comma-separated. */
#define NODE_PORT_LABEL_LEN (HC_RUNTIME_MAX_PORTS * 12 + 1)

/* ---- answering queries ---- */

void hc_cluster_respond(struct hc_cluster *c, uint64_t query_id, int event,
			const ProtobufCMessage *msg)
{
	size_t len;
	uint8_t *payload = hc_cluster_pb_wrap(event, msg, &len);
	int r = payload ? hc_gossip_respond(c->gossip, query_id, payload, len) : -ENOMEM;

	if (r < 0)
		hc_log(HC_LOG_WARN, "cannot answer query %llu: %s", (unsigned long long)query_id,
		       r == -ENOENT ? "its time is up" : strerror(-r));
	free(payload);
}

static void respond_error(struct hc_cluster *c, uint64_t query_id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void respond_error(struct hc_cluster *c, uint64_t query_id, const char *fmt, ...)
{
	Cluster__Services__Api__ErrorResponse er = CLUSTER__SERVICES__API__ERROR_RESPONSE__INIT;
	char msg[700]; /* the answer must stay under 1024 bytes */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	er.error = msg;
	hc_cluster_respond(c, query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__ERROR, &er.base);
}

/* The STOP answer: the workload no longer runs on this node. */
static void respond_stopped(struct hc_cluster *c, uint64_t query_id)
{
	Cluster__Services__Api__Node node = CLUSTER__SERVICES__API__NODE__INIT;

	node.id = (char *)hc_gossip_name(c->gossip);
	hc_cluster_respond(c, query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__STOP, &node.base);
}

struct spawn_job {
	struct job job;
	uint64_t query_id; /* 0: a local restart, nobody to answer */
	bool dry_run, restart;
	struct hc_workload_spec spec;
	char id[HC_WORKLOAD_ID_LEN + 1];
	int rc;
	struct hc_err err;
	struct hc_workload out;
	struct hc_runtime_capacity cap;
};

static int stop_local(struct hc_cluster *c, uint64_t query_id, const char *id);

/* Why stop_local() could not start the stop: its -errno in words. */
static const char *stop_refusal(int r)
{
	return r == -EBUSY ? "this node is busy (too many runtime jobs waiting)" : "out of memory";
}

/*
 * A stop that failed (the runtime's call, or starting its job) is tried
 * again, 1 s later and doubling to 60 s while it fails, until the workload
 * is gone. Meanwhile the workload stays stopping: a stop that failed half
 * way has often killed its process, and its restart policy would otherwise
 * bring back what was asked to go. Returns the delay, 0 when id is not
 * ours (any more).
 */
static uint64_t stop_again_later(struct hc_cluster *c, const char *id)
{
	struct local_wl *l = hc_cluster_local_find(c, id);
	unsigned shift;
	uint64_t delay;

	if (!l)
		return 0;
	shift = l->stop_failures < 6 ? l->stop_failures : 6;
	delay = (uint64_t)STOP_RETRY_MIN_MS << shift;
	if (delay > STOP_RETRY_MAX_MS)
		delay = STOP_RETRY_MAX_MS;
	c->stops_failed++;
	if (l->stop_failures++ == 0)
		hc_cluster_stop_mark_set(c, id); /* a restart stops it again */
	l->stopping = true;
	l->restart_at_ms = 0;
	l->stop_retry_at_ms = hc_loop_now_ms(c->loop) + delay;
	return delay;
}

void hc_cluster_orch_stop_local(struct hc_cluster *c, const char *id)
{
	int r = stop_local(c, 0, id);
	uint64_t delay;

	if (r == 0)
		return;
	delay = stop_again_later(c, id);
	if (delay)
		hc_log(HC_LOG_WARN, "cannot stop %s now (%s): trying again in %llu ms", id,
		       stop_refusal(r), (unsigned long long)delay);
	else
		hc_log(HC_LOG_WARN, "cannot stop %s (%s)", id, stop_refusal(r));
}

static void spawn_job_run(struct job *j)
{
	struct spawn_job *sj = (struct spawn_job *)j;
	const struct hc_cluster_runtime_ops *rt = j->c->cfg.runtime;
	void *ctx = j->c->cfg.runtime_ctx;

	if (sj->dry_run) {
		sj->rc = rt->capacity(ctx, &sj->cap, &sj->err);
		/* the runtime's own words: what is free, and the flag that sets it */
		if (sj->rc == 0)
			sj->rc = hc_runtime_capacity_check(&sj->cap, &sj->spec, &sj->err);
	} else {
		if (sj->restart) {
			struct hc_err ignored;

			rt->stop(ctx, sj->id, 0, &ignored);
		}
		sj->rc = rt->spawn(ctx, &sj->spec, sj->id, &sj->out, &sj->err);
	}
}

/* A spawn or restart failed: a restart is tried again later, a new
 * workload's placeholder goes (and a stop asked meanwhile is done). */
static void spawn_failed(struct hc_cluster *c, struct spawn_job *sj)
{
	struct local_wl *l = hc_cluster_local_find(c, sj->id);

	hc_log(HC_LOG_WARN, "%s %s failed: %s", sj->restart ? "restart of" : "spawn of", sj->id,
	       sj->err.msg);
	if (sj->restart && l) {
		l->restarting = false;
		hc_cluster_local_on_exit(c, sj->id); /* try again, later */
	} else if (l && l->pending) {
		bool stop_asked = l->stop_asked;
		uint64_t stop_query = l->stop_query;

		hc_cluster_local_remove(c, sj->id);
		if (stop_asked) /* nothing runs: the stop is done */
			respond_stopped(c, stop_query);
	}
	if (sj->query_id)
		respond_error(c, sj->query_id, "%s", sj->err.msg);
}

static void respond_spawned(struct hc_cluster *c, uint64_t query_id, char *id)
{
	Cluster__Services__Api__VmSpawnResponse resp = CLUSTER__SERVICES__API__VM_SPAWN_RESPONSE__INIT;
	char url[512];

	snprintf(url, sizeof(url), "%s.%s", id, c->base_url);
	resp.id = id;
	resp.url = url;
	hc_cluster_respond(c, query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__SPAWN, &resp.base);
}

static void spawn_job_done(struct job *j)
{
	struct spawn_job *sj = (struct spawn_job *)j;
	struct hc_cluster *c = j->c;
	struct local_wl *l;
	bool stop_asked;
	uint64_t stop_query;

	if (c->closing)
		goto out;
	if (sj->dry_run) {
		Cluster__Services__Api__VmSpawnResponse resp =
			CLUSTER__SERVICES__API__VM_SPAWN_RESPONSE__INIT;

		if (sj->rc < 0) {
			respond_error(c, sj->query_id, "%s", sj->err.msg);
			goto out;
		}
		/* what is free once this workload runs: placement's spread/binpack */
		resp.free_cores = sj->cap.cpus_total - sj->cap.cpus_used - sj->spec.cores;
		resp.free_memory = sj->cap.mem_total_mb - sj->cap.mem_used_mb - sj->spec.memory_mb;
		hc_cluster_respond(c, sj->query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__SPAWN, &resp.base);
		goto out;
	}
	if (sj->rc < 0) {
		spawn_failed(c, sj);
		goto out;
	}
	l = hc_cluster_local_find(c, sj->id);
	if (sj->restart && (!l || l->stopping || hc_cluster_local_recently_stopped(c, sj->id))) {
		/* Stopped while it restarted: that stop may have run before
		 * this spawn, so stop what the restart started too. */
		hc_cluster_orch_stop_local(c, sj->id);
		goto out;
	}
	HC_FAULT("spawn:before_announce");
	stop_asked = l && l->stop_asked;
	stop_query = l ? l->stop_query : 0;
	if (hc_cluster_local_add(c, &sj->out, false) == 0) {
		l = hc_cluster_local_find(c, sj->id);
		l->restarting = false;
		l->restart_at_ms = 0;
		l->stop_asked = false;
	}
	if (sj->query_id)
		respond_spawned(c, sj->query_id, sj->id);
	if (stop_asked) {
		/* The spawn did succeed (an error would have the asker place it
		 * again elsewhere); the stop asked meanwhile follows, and
		 * answers when done. */
		int r = stop_local(c, stop_query, sj->id);

		if (r < 0) {
			stop_again_later(c, sj->id);
			respond_error(c, stop_query, "cannot stop it now: %s; the node keeps trying",
				      stop_refusal(r));
		}
		goto out;
	}
	hc_cluster_state_changed(c);
out:
	hc_workload_spec_fini(&sj->spec);
	hc_workload_fini(&sj->out);
	free(sj);
}

/* Appends host:node to the node-port label (pb.c reads it back) of which
 * used bytes are taken; returns the new length, len or more when full. */
static size_t node_port_label_add(char *label, size_t len, size_t used, uint32_t host,
				  uint32_t node)
{
	return used + (size_t)snprintf(label + used, len - used, "%s%u:%u", used ? "," : "", host,
				       node);
}

/* The node ports of a new workload: its own where a host port is in the
 * node-port range, otherwise one allocated per L7 port (random start, so
 * nodes rarely pick the same and a freed port is not reused at once). */
static int allocate_node_ports(struct hc_cluster *c, struct hc_workload_spec *spec, char *label,
			       size_t len)
{
	uint32_t span = HC_NODE_PORT_MAX - HC_NODE_PORT_MIN + 1, taken[HC_RUNTIME_MAX_PORTS];
	size_t used = 0, ntaken = 0;
	uint32_t start;

	label[0] = '\0';
	if (getrandom(&start, sizeof(start), 0) != (ssize_t)sizeof(start))
		return -EIO;
	for (size_t i = 0; i < spec->nports; i++) {
		uint32_t host = spec->ports[i].host, port = 0;

		if (hc_port_is_node_port(host)) {
			if (hc_cluster_local_node_port_used(c, host))
				return -EADDRINUSE;
			continue;
		}
		for (uint32_t k = 0; k < span && !port; k++) {
			uint32_t p = HC_NODE_PORT_MIN + (start + k) % span;
			bool mine = false;

			for (size_t t = 0; t < ntaken; t++)
				mine |= taken[t] == p;
			for (size_t q = 0; q < spec->nports; q++)
				mine |= spec->ports[q].host == p;
			if (!mine && !hc_cluster_local_node_port_used(c, p))
				port = p;
		}
		if (!port)
			return -ENOSPC;
		taken[ntaken++] = port;
		used = node_port_label_add(label, len, used, host, port);
		if (used >= len)
			return -E2BIG;
	}
	return 0;
}

static int add_label(struct hc_workload_spec *spec, const char *key, const char *value)
{
	struct hc_label *l = realloc(spec->labels, (spec->nlabels + 1) * sizeof(*l));

	if (!l)
		return -ENOMEM;
	spec->labels = l;
	l[spec->nlabels].key = strdup(key);
	l[spec->nlabels].value = strdup(value);
	spec->nlabels++;
	return l[spec->nlabels - 1].key && l[spec->nlabels - 1].value ? 0 : -ENOMEM;
}

/* A placeholder for a spawn in progress: it holds the node ports. */
static int add_pending(struct hc_cluster *c, const char *id, const struct hc_workload_spec *spec)
{
	struct hc_workload w;
	int r;

	memset(&w, 0, sizeof(w));
	snprintf(w.id, sizeof(w.id), "%s", id);
	w.spec = *spec; /* borrowed */
	r = hc_cluster_local_add(c, &w, true);
	return r;
}

static void serve_spawn(struct hc_cluster *c, uint64_t query_id, const hc_pb_spawn *req)
{
	struct spawn_job *sj;
	char label[NODE_PORT_LABEL_LEN];
	struct hc_err err;
	int r;

	if (!c->cfg.runtime) {
		respond_error(c, query_id, "node %s runs no workloads (--no-runtime)",
			      hc_gossip_name(c->gossip));
		return;
	}
	if (hc_cluster_check_spawn_request(req, &err) < 0) {
		respond_error(c, query_id, "%s", err.msg);
		return;
	}
	sj = calloc(1, sizeof(*sj));
	if (!sj || hc_cluster_pb_to_spec(req, &sj->spec) < 0) {
		free(sj);
		respond_error(c, query_id, "out of memory");
		return;
	}
	sj->query_id = query_id;
	sj->dry_run = req->dry_run;
	if (!sj->dry_run) {
		if (req->id && *req->id)
			snprintf(sj->id, sizeof(sj->id), "%s", req->id);
		else if (hc_uuid_new(sj->id) < 0)
			goto fail_msg;
		if (hc_cluster_local_find(c, sj->id)) {
			respond_error(c, query_id, "workload %s already runs here", sj->id);
			goto fail;
		}
		r = allocate_node_ports(c, &sj->spec, label, sizeof(label));
		if (r < 0) {
			respond_error(c, query_id, "%s",
				      r == -EADDRINUSE ? "a node port it asks for is in use here"
						       : "no free node port left here");
			goto fail;
		}
		if ((label[0] && add_label(&sj->spec, HC_LABEL_NODE_PORTS, label) < 0) ||
		    add_pending(c, sj->id, &sj->spec) < 0)
			goto fail_msg;
	}
	sj->job.slow = !sj->dry_run;
	r = hc_cluster_job_start(c, &sj->job, spawn_job_run, spawn_job_done);
	if (r < 0) {
		if (!sj->dry_run)
			hc_cluster_local_remove(c, sj->id);
		if (r != -EBUSY)
			goto fail_msg;
		respond_error(c, query_id, "this node is busy (too many runtime jobs waiting)");
		goto fail;
	}
	return;
fail_msg:
	respond_error(c, query_id, "out of memory");
fail:
	hc_workload_spec_fini(&sj->spec);
	free(sj);
}

void hc_cluster_orch_restart_local(struct hc_cluster *c, struct local_wl *l)
{
	struct spawn_job *sj = calloc(1, sizeof(*sj));
	const hc_pb_workload *w = l->state;
	char label[NODE_PORT_LABEL_LEN];
	size_t used = 0;

	if (!sj || !w->source_request || hc_cluster_pb_to_spec(w->source_request, &sj->spec) < 0)
		goto fail;
	label[0] = '\0';
	for (size_t b = 0; b < w->n_bindings && used < sizeof(label); b++)
		if (!hc_port_is_node_port(w->bindings[b]->host_port))
			used = node_port_label_add(label, sizeof(label), used,
						   w->bindings[b]->host_port,
						   w->bindings[b]->node_port);
	if (label[0] && add_label(&sj->spec, HC_LABEL_NODE_PORTS, label) < 0)
		goto fail;
	snprintf(sj->id, sizeof(sj->id), "%s", w->id);
	sj->restart = true;
	sj->job.slow = true;
	hc_log(HC_LOG_INFO, "restarting workload %s (restart %u)", sj->id, l->restarts);
	if (hc_cluster_job_start(c, &sj->job, spawn_job_run, spawn_job_done) == 0)
		return;
fail:
	if (sj)
		hc_workload_spec_fini(&sj->spec);
	free(sj);
	l->restarting = false;
	hc_cluster_local_on_exit(c, w->id);
}

struct stop_job {
	struct job job;
	uint64_t query_id; /* 0: nobody to answer */
	char id[HC_WORKLOAD_ID_LEN + 1];
	int rc;
	struct hc_err err;
};

static void stop_job_run(struct job *j)
{
	struct stop_job *sj = (struct stop_job *)j;

	sj->rc = j->c->cfg.runtime->stop(j->c->cfg.runtime_ctx, sj->id, STOP_GRACE_S, &sj->err);
}

static void stop_job_done(struct job *j)
{
	struct stop_job *sj = (struct stop_job *)j;
	struct hc_cluster *c = j->c;

	HC_FAULT("stop:before_announce");
	if (!c->closing) {
		if (sj->rc < 0 && sj->rc != -ENOENT) {
			uint64_t delay = stop_again_later(c, sj->id);

			if (delay)
				hc_log(HC_LOG_WARN, "stop of %s failed: %s; trying again in %llu ms",
				       sj->id, sj->err.msg, (unsigned long long)delay);
			else
				hc_log(HC_LOG_WARN, "stop of %s failed: %s", sj->id, sj->err.msg);
			if (sj->query_id)
				respond_error(c, sj->query_id, "%s%s", sj->err.msg,
					      delay ? " (the node keeps trying to stop it)" : "");
		} else {
			hc_cluster_local_stopped(c, sj->id);
			if (sj->query_id)
				respond_stopped(c, sj->query_id);
			hc_cluster_state_changed(c);
		}
	}
	free(sj);
}

/* Stops local workload id on a job; query_id 0 answers nobody. */
static int stop_local(struct hc_cluster *c, uint64_t query_id, const char *id)
{
	struct stop_job *sj = calloc(1, sizeof(*sj));
	struct local_wl *l;

	if (!sj)
		return -ENOMEM;
	sj->query_id = query_id;
	snprintf(sj->id, sizeof(sj->id), "%s", id);
	int r = hc_cluster_job_start(c, &sj->job, stop_job_run, stop_job_done);

	if (r < 0) {
		free(sj);
		return r;
	}
	l = hc_cluster_local_find(c, id);
	if (l) {
		l->stopping = true;
		l->stop_retry_at_ms = 0; /* this job is the next try */
	}
	return 0;
}

static void serve_stop(struct hc_cluster *c, uint64_t query_id,
		       const Cluster__Services__Api__VmStopRequest *req)
{
	struct local_wl *l = req->id ? hc_cluster_local_find(c, req->id) : NULL;
	int r;

	if (!l) {
		respond_error(c, query_id, HC_STOP_NOT_HERE);
		return;
	}
	if (l->pending) {
		/* Being spawned: stopped (and answered) once the spawn ends;
		 * stopping it now could race the spawn's own steps. */
		if (l->stop_asked) {
			respond_error(c, query_id, "workload %s is being stopped already", req->id);
			return;
		}
		l->stop_asked = true;
		l->stop_query = query_id;
		return;
	}
	r = stop_local(c, query_id, req->id);
	if (r < 0)
		respond_error(c, query_id, "%s", stop_refusal(r));
}

void hc_cluster_orch_on_query(struct hc_cluster *c, uint64_t query_id, const char *from,
		   const uint8_t *payload, size_t len)
{
	Cluster__Services__Api__ClusterMessage *cm;
	ProtobufCMessage *inner = NULL;

	cm = cluster__services__api__cluster_message__unpack(NULL, len, payload);
	if (!cm) {
		c->queries_ignored++;
		respond_error(c, query_id, "not a ClusterMessage");
		return;
	}
	switch (cm->event) {
	case CLUSTER__SERVICES__API__CLUSTER_EVENT__SPAWN:
		hc_cluster_pb_free(cm);
		cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__vm_spawn_request__descriptor,
			       &inner);
		if (!inner)
			respond_error(c, query_id, "SPAWN wants a VmSpawnRequest");
		else
			serve_spawn(c, query_id, (void *)inner);
		break;
	case CLUSTER__SERVICES__API__CLUSTER_EVENT__STOP:
		hc_cluster_pb_free(cm);
		cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__vm_stop_request__descriptor,
			       &inner);
		if (!inner)
			respond_error(c, query_id, "STOP wants a VmStopRequest");
		else
			serve_stop(c, query_id, (void *)inner);
		break;
	case CLUSTER__SERVICES__API__CLUSTER_EVENT__BEACON_ATTEST:
		hc_cluster_beacon_serve_attest(c, query_id, from, payload, len);
		break;
	case CLUSTER__SERVICES__API__CLUSTER_EVENT__PROOF_VERIFY:
		hc_cluster_pb_free(cm);
		cm = hc_cluster_pb_unwrap(payload, len,
					  &cluster__services__api__proof_verification__descriptor, &inner);
		if (!inner)
			respond_error(c, query_id, "PROOF_VERIFY wants a ProofVerification");
		else
			hc_cluster_proofs_serve(c, query_id, (void *)inner);
		break;
	case CLUSTER__SERVICES__API__CLUSTER_EVENT__POLICY_QUERY: {
		Cluster__Services__Api__PolicyQuery *ans;

		hc_cluster_pb_free(cm);
		cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__policy_query__descriptor,
					  &inner);
		ans = inner ? hc_cluster_placement_describe(c, (void *)inner) : NULL;
		if (ans)
			hc_cluster_respond(c, query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__POLICY_QUERY, &ans->base);
		else
			respond_error(c, query_id, "%s", inner ? "out of memory"
							     : "POLICY_QUERY wants a PolicyQuery");
		hc_cluster_pb_free(ans);
		break;
	}
	default:
		/* answers travel as responses, never as queries; the other
		 * IBRL events are the IBRL issue's */
		c->queries_ignored++;
		hc_log(HC_LOG_DEBUG, "query from %s with event %d ignored", from, (int)cm->event);
		break;
	}
	hc_cluster_pb_free(inner);
	hc_cluster_pb_free(cm);
}
