/*
 * Placement: after a spawn's dry run, its candidates are ordered by the
 * policy (agent/ibrl: rules, scores, order) from what this node knows of
 * each: the dry run's answer (room, free capacity), the link metrics this
 * node's gossip probes measured to it, the BeaconMetadata of its last state
 * (price, reputation, capabilities, queue depth), its gossip tags, and the
 * workloads it runs (anti_affinity). Explain is the same computation,
 * answered instead of spawned.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "ibrl/ibrl.h"
#include "log/log.h"

/* Placements are counted per policy name; names beyond this many share
 * "other", so per-spawn policies cannot grow the metrics without bound. */
#define MAX_COUNTED_POLICIES 32

static const char *const result_names[PLACEMENT_RESULTS] = {
	[PLACEMENT_PLACED] = "placed",
	[PLACEMENT_NO_MATCH] = "no_match",
	[PLACEMENT_FAILED] = "failed",
};

void hc_cluster_set_policy(struct hc_cluster *c, struct hc_ibrl_policy *p)
{
	hc_ibrl_policy_free(c->policy);
	c->policy = p;
}

int hc_cluster_placement_policy(struct hc_cluster_op *op, struct hc_err *err)
{
	hc_pb_spawn *req = op->req;
	const struct hc_ibrl_policy *cp = op->c->policy;

	if (req->policy && *req->policy) {
		int r = hc_ibrl_policy_parse(req->policy, strlen(req->policy), "the spawn's policy",
					     &op->policy, err);

		free(req->policy);
		req->policy = NULL;
		return r;
	}
	if (req->policy) /* protobuf-c's shared empty string */
		req->policy = NULL;
	if (cp) /* a copy: a SIGHUP may replace the cluster's meanwhile */
		return hc_ibrl_policy_parse(cp->json, strlen(cp->json), "--cluster-policy",
					    &op->policy, err);
	op->policy = hc_ibrl_policy_default();
	op->policy_implicit = true;
	return op->policy ? 0 : hc_err_set(err, -ENOMEM, "out of memory");
}

void hc_cluster_placement_op_fini(struct hc_cluster_op *op)
{
	for (size_t i = 0; op->refusal && i < op->ncandidates; i++)
		free(op->refusal[i]);
	free(op->refusal);
	free(op->free_cores);
	free(op->free_mem_mb);
	for (size_t i = 0; i < op->navoid; i++)
		free(op->avoid[i]);
	free(op->avoid);
	for (size_t i = 0; i < op->nplaced; i++)
		hc_cluster_pb_free(op->placed[i]);
	free(op->placed);
	hc_ibrl_policy_free(op->policy);
}

/* ---- what this node knows of each candidate ---- */

struct view {
	struct hc_ibrl_node *nodes;
	struct hc_ibrl_kv **tags;
	struct hc_ibrl_policy_verdict *v;
	size_t *order, n, norder;
	struct hc_gossip_member *ms;
	size_t nms;
	bool *measured; /* link metrics from our probes, not the node's claim */
};

static const struct hc_gossip_member *member(const struct view *vw, const char *name)
{
	for (size_t i = 0; i < vw->nms; i++)
		if (strcmp(vw->ms[i].name, name) == 0)
			return &vw->ms[i];
	return NULL;
}

static bool labelled(hc_pb_workload *const *w, size_t n, const char *label)
{
	for (size_t i = 0; i < n; i++)
		if (w[i]->source_request && w[i]->source_request->anti_affinity &&
		    strcmp(w[i]->source_request->anti_affinity, label) == 0)
			return true;
	return false;
}

static bool runs_label(struct hc_cluster_op *op, const char *node, bool self)
{
	const char *label = op->policy->anti_affinity;
	struct peer *p;

	if (!label)
		return false;
	for (size_t i = 0; i < op->navoid; i++)
		if (strcmp(op->avoid[i], node) == 0)
			return true;
	if (self) {
		for (size_t i = 0; i < op->c->nlocal; i++)
			if (labelled(&op->c->local[i].state, 1, label))
				return true;
		return false;
	}
	p = hc_cluster_state_peer(op->c, node);
	return p && labelled(p->workloads, p->nworkloads, label);
}

/* This node's own BeaconMetadata, once the beacon builds one (the node's
 * own state carries none yet): until then it counts as "no data" here as
 * any other node without one. */
/* What this node announces of itself (the last broadcast's beacon); NULL
 * before the first. */
static const hc_pb_beacon *self_beacon(struct hc_cluster *c)
{
	return c->beacon_out;
}

static void fill_link(struct view *vw, size_t i, const struct hc_gossip_member *m,
		      const hc_pb_beacon *b, bool self)
{
	struct hc_ibrl_node *nd = &vw->nodes[i];

	if (self) { /* no link to measure */
		vw->measured[i] = true;
		return;
	}
	if (m && m->rtt_mean_us >= 0) {
		nd->latency_ms = (double)m->rtt_mean_us / 1000.0;
		nd->jitter_ms = m->jitter_us >= 0 ? (double)m->jitter_us / 1000.0 : 0;
		nd->packet_loss = m->loss >= 0 ? m->loss * 100.0 : 0;
		vw->measured[i] = true;
	} else if (b) { /* not probed yet: what the node says of itself */
		nd->latency_ms = b->latency_ms;
		nd->jitter_ms = b->jitter_ms;
		nd->packet_loss = b->packet_loss;
	}
}

static int fill_node(struct hc_cluster_op *op, struct view *vw, size_t i)
{
	struct hc_cluster *c = op->c;
	struct hc_ibrl_node *nd = &vw->nodes[i];
	const char *name = op->candidates[i];
	bool self = strcmp(name, c->gossip ? hc_gossip_name(c->gossip) : c->node_id) == 0;
	const struct hc_gossip_member *m = member(vw, name);
	struct peer *p = self ? NULL : hc_cluster_state_peer(c, name);
	const hc_pb_beacon *b = self ? self_beacon(c) : p ? p->beacon : NULL;

	nd->name = name;
	nd->capable = op->capable[i];
	nd->capacity_why = op->refusal[i] ? op->refusal[i] : "no answer to the dry run";
	nd->free_cores = op->free_cores[i];
	nd->free_mem_mb = op->free_mem_mb[i];
	nd->workloads = self ? c->nlocal : p ? p->nworkloads : 0;
	nd->anti_affinity_hit = runs_label(op, name, self);
	if (m && m->ntags) {
		vw->tags[i] = calloc(m->ntags, sizeof(**vw->tags));
		if (!vw->tags[i])
			return -ENOMEM;
		for (size_t k = 0; k < m->ntags; k++)
			vw->tags[i][k] = (struct hc_ibrl_kv){ (char *)m->tags[k].key,
							      (char *)m->tags[k].value };
		nd->tags = vw->tags[i];
		nd->ntags = m->ntags;
	}
	fill_link(vw, i, m, b, self);
	if (!b)
		return 0;
	nd->has_beacon = true;
	nd->queue_depth = b->queue_depth;
	nd->price_per_gb = b->price_per_gb;
	nd->reputation = b->reputation_score;
	nd->capabilities = (const char *const *)b->node_capabilities;
	nd->ncapabilities = b->n_node_capabilities;
	return 0;
}

static void view_fini(struct view *vw)
{
	for (size_t i = 0; vw->tags && i < vw->n; i++)
		free(vw->tags[i]);
	free(vw->tags);
	free(vw->nodes);
	free(vw->v);
	free(vw->order);
	free(vw->measured);
	hc_gossip_members_free(vw->ms, vw->nms);
}

static int view_build(struct hc_cluster_op *op, struct view *vw)
{
	size_t n = op->ncandidates;

	memset(vw, 0, sizeof(*vw));
	vw->n = n;
	vw->ms = hc_cluster_members(op->c, &vw->nms);
	vw->nodes = calloc(n + 1, sizeof(*vw->nodes));
	vw->tags = calloc(n + 1, sizeof(*vw->tags));
	vw->v = calloc(n + 1, sizeof(*vw->v));
	vw->order = calloc(n + 1, sizeof(*vw->order));
	vw->measured = calloc(n + 1, sizeof(*vw->measured));
	if (!vw->nodes || !vw->tags || !vw->v || !vw->order || !vw->measured)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (fill_node(op, vw, i) < 0)
			return -ENOMEM;
	return hc_ibrl_place(op->policy, vw->nodes, n, vw->v, vw->order, &vw->norder);
}

/* "no node satisfies policy P (enforce): n0: reasons; n1: reasons" */
static void no_match(const struct hc_cluster_op *op, const struct view *vw, char *why, size_t len)
{
	const struct hc_ibrl_policy *p = op->policy;
	size_t off = (size_t)snprintf(why, len, "no node satisfies policy %s (%s)", p->name,
				      p->mode == HC_IBRL_MODE_ENFORCE ? "enforce" : "permissive");

	for (size_t i = 0; i < vw->n && off < len; i++) {
		char r[400];

		hc_ibrl_policy_reasons(p, &vw->nodes[i], &vw->v[i], r, sizeof(r));
		off += (size_t)snprintf(why + off, len - off, "%s %s: %s", i ? ";" : ":",
					vw->nodes[i].name, r);
	}
	if (!vw->n)
		snprintf(why + off, off < len ? len - off : 0, ": no alive member");
}

/* ---- explain ---- */

static json_t *node_json(const struct hc_cluster_op *op, const struct view *vw, size_t i)
{
	const struct hc_ibrl_node *nd = &vw->nodes[i];
	const struct hc_ibrl_policy_verdict *v = &vw->v[i];
	json_t *o = json_object(), *rules = json_object(), *caps = json_array();
	char r[1024];

	for (int k = 0; k < HC_IBRL_RULES; k++)
		if (v->applied & (1u << k))
			json_object_set_new(rules, hc_ibrl_rule_names[k],
					    json_string(v->failed & (1u << k) ? "fail" : "pass"));
	for (size_t k = 0; k < nd->ncapabilities; k++)
		json_array_append_new(caps, json_string(nd->capabilities[k]));
	hc_ibrl_policy_reasons(op->policy, nd, v, r, sizeof(r));
	json_object_set_new(o, "name", json_string(nd->name));
	json_object_set_new(o, "eligible", json_boolean(v->eligible));
	json_object_set_new(o, "passes_all_rules", json_boolean(v->preferred));
	json_object_set_new(o, "score", json_real(v->score));
	json_object_set_new(o, "rules", rules);
	json_object_set_new(o, "reasons", json_string(r));
	json_object_set_new(o, "capacity_ok", json_boolean(nd->capable));
	json_object_set_new(o, "free_cores", json_integer(nd->free_cores));
	json_object_set_new(o, "free_memory_mb", json_integer((json_int_t)nd->free_mem_mb));
	json_object_set_new(o, "workloads", json_integer((json_int_t)nd->workloads));
	json_object_set_new(o, "beacon", json_boolean(nd->has_beacon));
	json_object_set_new(o, "link", json_string(vw->measured[i] ? "measured" : "claimed"));
	json_object_set_new(o, "latency_ms", json_real(nd->latency_ms));
	json_object_set_new(o, "jitter_ms", json_real(nd->jitter_ms));
	json_object_set_new(o, "packet_loss", json_real(nd->packet_loss));
	json_object_set_new(o, "queue_depth", json_integer(nd->queue_depth));
	json_object_set_new(o, "price_per_gb", json_real(nd->price_per_gb));
	json_object_set_new(o, "reputation", json_string(nd->reputation ? nd->reputation : ""));
	json_object_set_new(o, "capabilities", caps);
	return o;
}

static char *explain_json(const struct hc_cluster_op *op, const struct view *vw, const char *err)
{
	static const char *const strategies[] = { "score", "spread", "binpack" };
	const struct hc_ibrl_policy *p = op->policy;
	json_t *root = json_object(), *nodes = json_array(), *order = json_array(), *pol;
	bool *listed = calloc(vw->n + 1, sizeof(bool));
	char *text;

	pol = json_pack("{s:s, s:s, s:s, s:i}", "name", p->name, "mode",
			p->mode == HC_IBRL_MODE_ENFORCE ? "enforce" : "permissive", "strategy",
			strategies[p->strategy], "replicas", (int)p->replicas);
	for (size_t k = 0; k < vw->norder; k++)
		json_array_append_new(order, json_string(vw->nodes[vw->order[k]].name));
	/* the nodes in the final order, then the others as the dry run listed them */
	for (size_t k = 0; listed && k < vw->norder; k++) {
		json_array_append_new(nodes, node_json(op, vw, vw->order[k]));
		listed[vw->order[k]] = true;
	}
	for (size_t i = 0; listed && i < vw->n; i++)
		if (!listed[i])
			json_array_append_new(nodes, node_json(op, vw, i));
	json_object_set_new(root, "policy", pol);
	json_object_set_new(root, "image_ref", json_string(op->req->image_ref));
	json_object_set_new(root, "cores", json_integer(op->req->cores));
	json_object_set_new(root, "memory", json_integer(op->req->memory));
	json_object_set_new(root, "nodes", nodes);
	json_object_set_new(root, "order", order);
	if (err)
		json_object_set_new(root, "error", json_string(err));
	text = listed ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	free(listed);
	return text;
}

/* ---- ordering ---- */

/* Keeps only the candidates in vw's order, in that order, all to try. */
static void reorder(struct hc_cluster_op *op, const struct view *vw)
{
	char **names = calloc(vw->n + 1, sizeof(char *));

	if (!names)
		return; /* the dry run's order stands */
	for (size_t k = 0; k < vw->norder; k++) {
		names[k] = op->candidates[vw->order[k]];
		op->candidates[vw->order[k]] = NULL;
	}
	for (size_t i = 0; i < vw->n; i++) {
		free(op->candidates[i]);
		free(op->refusal[i]);
		op->refusal[i] = NULL;
		op->capable[i] = i < vw->norder;
	}
	free(op->candidates);
	op->candidates = names;
	op->ncandidates = vw->norder;
}

static int index_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

int hc_cluster_placement_order(struct hc_cluster_op *op, char *why, size_t len)
{
	struct view vw;
	int r = view_build(op, &vw);

	/* No policy given anywhere: the nodes the default lets through, in
	 * the dry run's order (by name), as placement went before policies:
	 * scores ask for a policy. */
	if (r == 0 && op->policy_implicit && vw.norder > 1)
		qsort(vw.order, vw.norder, sizeof(*vw.order), index_cmp);

	why[0] = '\0';
	if (r == 0 && !vw.norder)
		no_match(op, &vw, why, len);
	if (r == 0 && op->explain_done) {
		char *text = explain_json(op, &vw, why[0] ? why : NULL);

		op->finished = true;
		if (!op->cancelled)
			op->explain_done(op->arg, text ? HC_RPC_OK : HC_RPC_RESOURCE_EXHAUSTED,
					 text ? NULL : "out of memory", text);
		free(text);
		view_fini(&vw);
		return 0;
	}
	if (r == 0 && vw.norder) {
		hc_log(HC_LOG_DEBUG, "policy %s places %s on %s first (score %.3f)", op->policy->name,
		       op->id, vw.nodes[vw.order[0]].name, vw.v[vw.order[0]].score);
		reorder(op, &vw);
	} else if (r == 0) {
		r = -ENOENT;
	}
	view_fini(&vw);
	return r;
}

/* ---- POLICY_QUERY ---- */

Cluster__Services__Api__PolicyQuery *hc_cluster_placement_describe(
	struct hc_cluster *c, const Cluster__Services__Api__PolicyQuery *q)
{
	static const char *const strategies[] = { "score", "spread", "binpack" };
	Cluster__Services__Api__PolicyQuery out = CLUSTER__SERVICES__API__POLICY_QUERY__INIT;
	Cluster__Services__Api__PolicyQuery__ContextEntry e[8], *ep[8];
	struct hc_ibrl_policy *dflt = c->policy ? NULL : hc_ibrl_policy_default();
	const struct hc_ibrl_policy *p = c->policy ? c->policy : dflt;
	Cluster__Services__Api__PolicyQuery *ans;
	char replicas[16], selector[256] = "";
	size_t n = 0, off = 0;

	if (!p)
		return NULL;
	for (size_t i = 0; i < p->nselector && off < sizeof(selector); i++)
		off += (size_t)snprintf(selector + off, sizeof(selector) - off, "%s%s=%s",
					i ? "," : "", p->node_selector[i].key,
					p->node_selector[i].value);
	snprintf(replicas, sizeof(replicas), "%u", p->replicas);
#define ENTRY(k, v)                                                                       \
	do {                                                                              \
		cluster__services__api__policy_query__context_entry__init(&e[n]);         \
		e[n].key = (char *)(k);                                                   \
		e[n].value = (char *)(v);                                                 \
		ep[n] = &e[n];                                                            \
		n++;                                                                      \
	} while (0)
	ENTRY("name", p->name);
	ENTRY("mode", p->mode == HC_IBRL_MODE_ENFORCE ? "enforce" : "permissive");
	ENTRY("strategy", strategies[p->strategy]);
	ENTRY("replicas", replicas);
	if (p->anti_affinity)
		ENTRY("anti_affinity", p->anti_affinity);
	if (selector[0])
		ENTRY("node_selector", selector);
	if (strlen(p->json) < 600) /* the whole answer stays under 1024 bytes */
		ENTRY("policy", p->json);
#undef ENTRY
	out.workload_id = q->workload_id;
	out.policy_type = (char *)"placement";
	out.context = ep;
	out.n_context = n;
	ans = hc_cluster_pb_clone(&out.base);
	hc_ibrl_policy_free(dflt);
	return ans;
}

/* ---- metrics ---- */

void hc_cluster_placement_count(struct hc_cluster_op *op, enum hc_placement_result res)
{
	struct hc_cluster *c = op->c;
	const char *name = op->policy ? op->policy->name : "invalid";
	struct hc_placement_count *pc = NULL;

	for (size_t i = 0; i < c->nplacements && !pc; i++)
		if (strcmp(c->placements[i].policy, name) == 0)
			pc = &c->placements[i];
	if (!pc && c->nplacements >= MAX_COUNTED_POLICIES) {
		name = "other";
		pc = &c->placements[c->nplacements - 1];
	}
	if (!pc) {
		struct hc_placement_count *grown =
			realloc(c->placements, (c->nplacements + 1) * sizeof(*grown));

		if (!grown)
			return;
		c->placements = grown;
		pc = &c->placements[c->nplacements++];
		memset(pc, 0, sizeof(*pc));
		/* the last slot is "other" once the table is full */
		snprintf(pc->policy, sizeof(pc->policy), "%s",
			 c->nplacements == MAX_COUNTED_POLICIES ? "other" : name);
	}
	pc->n[res]++;
}

void hc_cluster_placement_collect(struct hc_cluster *c, struct hc_metrics_writer *w)
{
	hc_metrics_family(w, "hypercore_ibrl_placements_total", "counter",
			  "Spawn placements by policy name and result (placed; no_match: no "
			  "node satisfies the policy; failed: every matching node failed)");
	for (size_t i = 0; i < c->nplacements; i++)
		for (int r = 0; r < PLACEMENT_RESULTS; r++) {
			const char *labels[] = { "policy", c->placements[i].policy, "result",
						 result_names[r], NULL };

			hc_metrics_sample(w, "hypercore_ibrl_placements_total", labels,
					  (double)c->placements[i].n[r]);
		}
}

void hc_cluster_placement_fini(struct hc_cluster *c)
{
	hc_ibrl_policy_free(c->policy);
	c->policy = NULL;
	free(c->placements);
	c->placements = NULL;
	c->nplacements = 0;
}
