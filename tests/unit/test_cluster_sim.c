/*
 * Whole clusters in one process: several nodes running the real
 * agent/cluster code and real serf engines over tests/lib simnet (simulated
 * network and clock), each with a fake runtime (tests/lib fakert) that runs
 * the cluster's jobs on the loop thread, so every run is the same run. No
 * sockets, no containerd, no wall-clock waits.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cluster/cluster_int.h"
#include "dataplane/dataplane.h"
#include "fakert.h"
#include "gossip/gossip.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "ibrl/ibrl.h"
#include "log/log.h"
#include "loop/loop.h"
#include "pushpull.h"
#include "simcluster.h"
#include "simnet.h"
#include "tmpdir.h"

#define MAX_NODES 5
#define MAX_CAPTURED 64
#define BASE_URL "example.test"

/* Workload ids: fixed, so every run places and hashes the same. */
#define WL_A "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a01"

struct tnode {
	struct tcluster *tc;
	int idx;
	char name[16];
	char dir[64];
	struct hc_cluster *c;
	struct hc_fakert *rt;
	struct hc_ibrl_identity *key; /* its node key, in dir */
	bool restarted; /* started again after hc_cluster_free */
	struct hc_gossip_receiver recv;
	/* the cluster's own event handler, behind our tap */
	hc_gossip_event_fn *on_event;
	void *event_arg;
	/* state chunks this node received, as sent (payload copies) */
	uint8_t *captured[MAX_CAPTURED];
	size_t captured_len[MAX_CAPTURED];
	size_t ncaptured;
};

struct tcluster {
	struct hc_simnet *net;
	struct tnode nodes[MAX_NODES];
	int n;
	bool proofs; /* nodes get a key and make execution proofs */
};

static struct tcluster *proof_tc; /* the cluster proofs_fetch() serves */

/* What an operation's done callback said. */
struct answer {
	bool done;
	enum hc_rpc_code code;
	char err[512];
	char id[HC_WORKLOAD_ID_LEN + 1];
	char url[256];
	char node[64];
};

/* ---- the harness ---- */

static void tap_event(const struct hc_gossip_event *ev, void *arg)
{
	struct tnode *nd = arg;

	if (ev->type == HC_GOSSIP_EV_USER && strcmp(ev->name, HC_STATE_EVENT) == 0 &&
	    nd->ncaptured < MAX_CAPTURED) {
		nd->captured[nd->ncaptured] = malloc(ev->len ? ev->len : 1);
		assert_non_null(nd->captured[nd->ncaptured]);
		memcpy(nd->captured[nd->ncaptured], ev->payload, ev->len);
		nd->captured_len[nd->ncaptured++] = ev->len;
	}
	nd->on_event(ev, nd->event_arg);
}

/* The cluster's gossip engine, on the simulated network. */
static struct hc_gossip *sim_gossip_new(void *arg, struct hc_loop *loop,
					const struct hc_gossip_config *cfg, struct hc_err *err)
{
	struct tnode *nd = arg;
	struct hc_simnet *net = nd->tc->net;
	struct hc_gossip_config gc = *cfg;
	struct hc_gossip *g;

	nd->on_event = gc.on_event;
	nd->event_arg = gc.event_arg;
	gc.on_event = tap_event;
	gc.event_arg = nd;
	g = hc_gossip_new_with_transport(loop, &gc, hc_simnet_addr(net, nd->idx), &hc_simnet_ops,
					 hc_simnet_ctx(net, nd->idx), err);
	if (!g)
		return NULL;
	nd->recv = (struct hc_gossip_receiver){ hc_ml_on_packet, hc_ml_on_stream,
						hc_gossip_memberlist(g) };
	hc_simnet_attach(net, nd->idx, &nd->recv);
	return g;
}

/* What a node's /proofs?id=&local=1 answers, without HTTP: its log and key. */
static int lying_node = -1; /* its /proofs answer names another node's key */

static int proofs_fetch(struct hc_cluster *c, const char *node, const char *id, char **log,
			size_t *len, uint8_t key[HC_IBRL_PUBLIC_LEN])
{
	(void)c;
	for (int i = 0; i < proof_tc->n; i++) {
		struct tnode *nd = &proof_tc->nodes[i];
		int r;

		if (strcmp(nd->name, node) != 0)
			continue;
		r = hc_ibrl_proof_log_read(nd->dir, id, log, len);
		if (r == -ENOENT) {
			*log = strdup("");
			*len = 0;
			r = *log ? 0 : -ENOMEM;
		}
		memcpy(key, hc_ibrl_identity_public(proof_tc->nodes[i == lying_node ? (i + 1) %
								  proof_tc->n : i].key),
		       HC_IBRL_PUBLIC_LEN);
		return r;
	}
	return -EHOSTUNREACH;
}

static void node_start(struct tcluster *tc, int i, bool respawn)
{
	struct tnode *nd = &tc->nodes[i];
	/* a restarted n0 rejoins through n1 */
	static const char *const seed[] = { "10.0.0.1:7946" }, *const seed1[] = { "10.0.0.2:7946" };
	struct hc_cluster_config cfg = {
		.state_dir = nd->dir,
		.base_url = BASE_URL,
		.join = i || !nd->restarted ? seed : seed1,
		.njoin = i || nd->restarted ? 1 : 0,
		.runtime = &hc_fakert_ops,
		.runtime_ctx = nd->rt,
		.respawn = respawn,
		.state_period_ms = 1000,
		.gossip_new = sim_gossip_new,
		.gossip_arg = nd,
		/* as the agent runs with encrypted gossip: signed states only */
		.ibrl_mode = HC_CLUSTER_IBRL_ENFORCE,
		.beacon_price = 0.01,
	};
	struct hc_err err;

	hc_simcluster_gossip_config(&cfg.gossip, nd->name, 77 + (uint64_t)i);
	if (!nd->key)
		assert_int_equal(hc_ibrl_identity_open(nd->dir, &nd->key, &err), 0);
	cfg.identity = nd->key;
	cfg.no_proofs = !tc->proofs;
	nd->c = hc_cluster_new(hc_simnet_loop(tc->net), &cfg, &err);
	assert_non_null(nd->c);
	if (tc->proofs)
		nd->c->proofs_fetch_hook = proofs_fetch;
	assert_int_equal(hc_cluster_start(nd->c, &err), 0);
}

/* n nodes n0..n<n-1>, each with a fake runtime, not started. */
static struct tcluster *tcluster_new(int n)
{
	struct tcluster *tc = calloc(1, sizeof(*tc));

	assert_non_null(tc);
	tc->net = hc_simnet_new(n, 99);
	assert_non_null(tc->net);
	tc->n = n;
	for (int i = 0; i < n; i++) {
		struct tnode *nd = &tc->nodes[i];
		char prefix[32];

		nd->tc = tc;
		nd->idx = i;
		snprintf(nd->name, sizeof(nd->name), "n%d", i);
		assert_int_equal(hc_tmpdir_new(nd->dir, sizeof(nd->dir), "hc-clsim"), 0);
		snprintf(prefix, sizeof(prefix), "10.88.%d.", i + 1);
		nd->rt = hc_fakert_new(hc_simnet_loop(tc->net), prefix);
		assert_non_null(nd->rt);
	}
	return tc;
}

static bool all_alive(const void *ctx)
{
	const struct tcluster *tc = ctx;

	for (int v = 0; v < tc->n; v++) {
		struct hc_gossip_member *ms;
		size_t n = 0, alive = 0, up = 0;

		if (hc_simnet_is_down(tc->net, v))
			continue;
		for (int j = 0; j < tc->n; j++)
			up += !hc_simnet_is_down(tc->net, j);
		ms = hc_cluster_members(tc->nodes[v].c, &n);
		for (size_t k = 0; k < n; k++)
			alive += ms[k].status == HC_GOSSIP_ALIVE;
		hc_gossip_members_free(ms, n);
		if (alive != up)
			return false;
	}
	return true;
}

/* Every node also holds every other node's state. */
static bool all_states_known(const void *ctx)
{
	const struct tcluster *tc = ctx;

	for (int v = 0; v < tc->n; v++)
		for (int j = 0; j < tc->n; j++)
			if (j != v && !hc_cluster_state_peer(tc->nodes[v].c, tc->nodes[j].name))
				return false;
	return true;
}

static struct tcluster *joined_cluster(int n, bool respawn)
{
	struct tcluster *tc = tcluster_new(n);

	for (int i = 0; i < n; i++)
		node_start(tc, i, respawn);
	assert_true(hc_simnet_run_until(tc->net, all_alive, tc, 30000) >= 0);
	assert_true(hc_simnet_run_until(tc->net, all_states_known, tc, 30000) >= 0);
	return tc;
}

static bool runtimes_idle(const void *ctx)
{
	const struct tcluster *tc = ctx;

	for (int i = 0; i < tc->n; i++)
		if (tc->nodes[i].c && hc_fakert_pending(tc->nodes[i].rt))
			return false;
	return true;
}

static void tcluster_free(struct tcluster *tc)
{
	/* jobs end before their clusters go (the clock stands still in free) */
	assert_true(hc_simnet_run_until(tc->net, runtimes_idle, tc, 120000) >= 0);
	for (int i = 0; i < tc->n; i++) {
		struct tnode *nd = &tc->nodes[i];

		if (nd->c) {
			hc_fakert_flush(nd->rt);
			hc_cluster_free(nd->c);
		}
		hc_simnet_attach(tc->net, i, NULL);
		hc_fakert_free(nd->rt);
		hc_ibrl_identity_free(nd->key);
		for (size_t k = 0; k < nd->ncaptured; k++)
			free(nd->captured[k]);
		assert_int_equal(hc_tmpdir_remove(nd->dir), 0);
	}
	hc_simnet_free(tc->net);
	free(tc);
}

static void on_spawned(void *arg, enum hc_rpc_code code, const char *err,
		       const ProtobufCMessage *answer)
{
	const Cluster__Services__Api__VmSpawnResponse *resp = (const void *)answer;
	struct answer *a = arg;

	assert_false(a->done); /* once */
	a->done = true;
	a->code = code;
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
	if (resp) {
		snprintf(a->id, sizeof(a->id), "%s", resp->id);
		snprintf(a->url, sizeof(a->url), "%s", resp->url);
	}
}

static void on_stopped(void *arg, enum hc_rpc_code code, const char *err,
		       const ProtobufCMessage *answer)
{
	const Cluster__Services__Api__Node *node = (const void *)answer;
	struct answer *a = arg;

	assert_false(a->done);
	a->done = true;
	a->code = code;
	snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
	if (node)
		snprintf(a->node, sizeof(a->node), "%s", node->id);
}

static bool answered(const void *ctx)
{
	return ((const struct answer *)ctx)->done;
}

/* The request the spawn tests make: registry.test/app:1, 1 core, 64 MB. */
static void app_request(Cluster__Services__Api__VmSpawnRequest *req, const char *id)
{
	req->image_ref = (char *)"registry.test/app:1";
	req->cores = 1;
	req->memory = 64;
	req->id = (char *)id;
}

/* Asks node `from` to spawn workload id with a restart policy (NULL: none
 * named) and runs until the answer. */
static void spawn_restart(struct tcluster *tc, int from, const char *id, const char *restart,
			  struct answer *a)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;

	memset(a, 0, sizeof(*a));
	app_request(&req, id);
	if (restart)
		req.restart = (char *)restart;
	hc_cluster_spawn(tc->nodes[from].c, &req, on_spawned, a);
	assert_true(hc_simnet_run_until(tc->net, answered, a, 120000) >= 0);
}

/* Asks node `from` to spawn workload id and runs until the answer. */
static void spawn_from(struct tcluster *tc, int from, const char *id, struct answer *a)
{
	spawn_restart(tc, from, id, NULL, a);
}

/* How many of the up nodes' runtimes hold workload id. */
static int copies(const struct tcluster *tc, const char *id)
{
	int n = 0;

	for (int i = 0; i < tc->n; i++)
		n += hc_fakert_has(tc->nodes[i].rt, id);
	return n;
}

struct owner_check {
	const struct tcluster *tc;
	const char *id, *owner; /* owner NULL: nobody */
};

/* Every up node says the same node runs id. */
static bool owner_agreed(const void *ctx)
{
	const struct owner_check *oc = ctx;

	for (int i = 0; i < oc->tc->n; i++) {
		const char *o;

		if (hc_simnet_is_down(oc->tc->net, i))
			continue;
		o = hc_cluster_state_owner(oc->tc->nodes[i].c, oc->id);
		if (oc->owner ? !o || strcmp(o, oc->owner) != 0 : o != NULL)
			return false;
	}
	return true;
}

static void assert_owner_agreed(struct tcluster *tc, const char *id, const char *owner)
{
	struct owner_check oc = { tc, id, owner };

	assert_true(hc_simnet_run_until(tc->net, owner_agreed, &oc, 20000) >= 0);
}

/* ---- placement ---- */

/* The first candidate (n0, by name) fails the spawn: the next one takes it,
 * and the failed one keeps nothing (no pending entry holding node ports). */
static void test_placement_tries_next_node_after_failure(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	struct answer a;

	(void)state;
	hc_fakert_fail_spawns(tc->nodes[0].rt, 1, EIO);
	spawn_from(tc, 2, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_string_equal(a.id, WL_A);
	assert_string_equal(a.url, WL_A "." BASE_URL);
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[0].rt, WL_A), 1);
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[1].rt, WL_A), 1);
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[2].rt, WL_A), 0);
	assert_false(hc_fakert_has(tc->nodes[0].rt, WL_A));
	assert_true(hc_fakert_has(tc->nodes[1].rt, WL_A));
	assert_null(hc_cluster_local_find(tc->nodes[0].c, WL_A));
	assert_int_equal(hc_cluster_local_workloads(tc->nodes[1].c), 1);
	assert_owner_agreed(tc, WL_A, "n1");
	assert_int_equal(tc->nodes[2].c->spawns_ok, 1);
	tcluster_free(tc);
}

static bool n0_runtime_busy(const void *ctx)
{
	const struct tcluster *tc = ctx;

	return hc_fakert_pending(tc->nodes[0].rt) > 0;
}

/* The first candidate (n0) dies while it spawns: the asker moves on to the
 * next as soon as gossip finds n0 failed, not when the spawn query times
 * out 90 s later (what a client saw as a 90 s spawn). */
static void test_spawn_moves_on_when_its_node_fails(void **state)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	struct tcluster *tc = joined_cluster(3, false);
	struct answer a;

	(void)state;
	memset(&a, 0, sizeof(a));
	app_request(&req, WL_A);
	hc_fakert_set_latency(tc->nodes[0].rt, HC_FAKERT_SPAWN, 600000);
	hc_cluster_spawn(tc->nodes[2].c, &req, on_spawned, &a);
	assert_true(hc_simnet_run_until(tc->net, n0_runtime_busy, tc, 20000) >= 0);
	hc_simnet_set_down(tc->net, 0, true);
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 30000) >= 0);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_true(hc_fakert_has(tc->nodes[1].rt, WL_A));
	hc_fakert_flush(tc->nodes[0].rt);
	tcluster_free(tc);
}

/* A slow spawn (30 s) on a live node is waited for: the node acknowledged
 * the query, so it is not taken for lost (no second copy elsewhere). */
static void test_slow_spawn_is_not_taken_for_lost(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	struct answer a;

	(void)state;
	hc_fakert_set_latency(tc->nodes[0].rt, HC_FAKERT_SPAWN, 30000);
	spawn_from(tc, 2, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_true(hc_fakert_has(tc->nodes[0].rt, WL_A));
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[1].rt, WL_A), 0);
	tcluster_free(tc);
}

static uint64_t queries_sent(struct tcluster *tc, int i)
{
	return tc->nodes[i].c->gossip->st.queries_sent;
}

/* The spawn query to the first candidate (n0) is lost, and so is every
 * packet between the asker and n0 from then on (n0 stays alive through the
 * others' indirect probes): with no ack, the asker moves on to the next
 * candidate in seconds, not at the query's 90 s timeout. (n0 still gets
 * the query by gossip and runs it: the duplicate settling leaves one.) */
static void test_unacknowledged_spawn_moves_on(void **state)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	struct tcluster *tc = joined_cluster(3, false);
	uint64_t before = queries_sent(tc, 2), start;
	struct answer a;

	(void)state;
	memset(&a, 0, sizeof(a));
	app_request(&req, WL_A);
	hc_cluster_spawn(tc->nodes[2].c, &req, on_spawned, &a);
	/* the dry run to all is answered; the real query leaves in the same
	 * ms as the last answer arrives, and reaches n0 a ms later: cut then */
	while (queries_sent(tc, 2) < before + 2 && !a.done)
		hc_simnet_run_ms(tc->net, 1);
	assert_false(a.done);
	assert_int_equal(hc_simnet_block(tc->net, 2, 0, true), 0);
	assert_int_equal(hc_simnet_block(tc->net, 0, 2, true), 0);
	start = hc_loop_now_ms(hc_simnet_loop(tc->net));
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 60000) >= 0);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_true(hc_loop_now_ms(hc_simnet_loop(tc->net)) - start < 20000);
	/* n0 got the gossiped copy and ran it too: one of the two stops */
	hc_simnet_run_ms(tc->net, 10000);
	assert_int_equal(copies(tc, WL_A), 1);
	hc_simnet_block(tc->net, 2, 0, false);
	hc_simnet_block(tc->net, 0, 2, false);
	tcluster_free(tc);
}

/* Every candidate fails: the caller hears each one's reason. */
static void test_placement_fails_when_every_node_fails(void **state)
{
	struct tcluster *tc = joined_cluster(2, false);
	struct answer a;

	(void)state;
	hc_fakert_fail_spawns(tc->nodes[0].rt, 1, EIO);
	hc_fakert_fail_spawns(tc->nodes[1].rt, 1, ENOSPC);
	spawn_from(tc, 1, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(a.err, "n0: fake runtime: spawn failed as told"));
	assert_non_null(strstr(a.err, "n1: fake runtime: spawn failed as told"));
	assert_int_equal(copies(tc, WL_A), 0);
	assert_null(hc_cluster_local_find(tc->nodes[0].c, WL_A));
	assert_null(hc_cluster_local_find(tc->nodes[1].c, WL_A));
	tcluster_free(tc);
}


/* ---- placement by policy ---- */

#define WL_BIG "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a0b"
#define WL_B "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a02"

/* A workload already on node i taking cores vCPUs. */
static void occupy(struct tcluster *tc, int i, const char *id, uint32_t cores)
{
	struct hc_workload_spec spec = { .image_ref = (char *)"registry.test/big:1",
					 .cores = cores, .memory_mb = 64 };

	assert_int_equal(hc_fakert_add(tc->nodes[i].rt, id, &spec), 0);
}

struct explained {
	bool done;
	enum hc_rpc_code code;
	char err[512];
	json_t *doc;
};

static void on_explained(void *arg, enum hc_rpc_code code, const char *err, const char *json)
{
	struct explained *e = arg;

	assert_false(e->done);
	e->done = true;
	e->code = code;
	snprintf(e->err, sizeof(e->err), "%s", err ? err : "");
	if (json)
		e->doc = json_loads(json, 0, NULL);
}

static bool explained_done(const void *ctx)
{
	return ((const struct explained *)ctx)->done;
}

static void request(Cluster__Services__Api__VmSpawnRequest *req, const char *id, const char *policy)
{
	cluster__services__api__vm_spawn_request__init(req);
	req->image_ref = (char *)"registry.test/app:1";
	req->cores = 1;
	req->memory = 64;
	req->id = (char *)(id ? id : "");
	req->policy = (char *)(policy ? policy : "");
}

/* Which node's runtime holds id (-1: none). */
static int holder(const struct tcluster *tc, const char *id)
{
	for (int i = 0; i < tc->n; i++)
		if (hc_fakert_has(tc->nodes[i].rt, id))
			return i;
	return -1;
}

/* The explain's first choice is where the spawn then goes: binpack puts
 * the workload on the fullest node that still has room (n1 here), not on
 * the first by name. */
static void test_policy_explain_matches_spawn(void **state)
{
	static const char policy[] = "{\"name\": \"pack\", \"mode\": \"permissive\", "
				     "\"strategy\": \"binpack\"}";
	struct tcluster *tc = joined_cluster(3, false);
	Cluster__Services__Api__VmSpawnRequest req;
	struct explained e = { 0 };
	struct answer a;
	json_t *order, *nodes;

	(void)state;
	occupy(tc, 1, WL_BIG, 60);
	request(&req, WL_A, policy);
	hc_cluster_policy_explain(tc->nodes[2].c, &req, on_explained, &e);
	assert_true(hc_simnet_run_until(tc->net, explained_done, &e, 60000) >= 0);
	assert_int_equal(e.code, HC_RPC_OK);
	assert_non_null(e.doc);
	order = json_object_get(e.doc, "order");
	nodes = json_object_get(e.doc, "nodes");
	assert_int_equal(json_array_size(order), 3);
	assert_int_equal(json_array_size(nodes), 3);
	assert_string_equal(json_string_value(json_array_get(order, 0)), "n1");
	assert_string_equal(json_string_value(json_object_get(json_array_get(nodes, 0), "name")),
			    "n1");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(nodes, 0), "free_cores")),
			 3);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_array_get(nodes, 0), "rules"), "capacity")),
			    "pass");
	assert_int_equal(copies(tc, WL_A), 0); /* explaining spawns nothing */

	memset(&a, 0, sizeof(a));
	hc_cluster_spawn(tc->nodes[2].c, &req, on_spawned, &a);
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 120000) >= 0);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_int_equal(holder(tc, WL_A), 1);
	json_decref(e.doc);
	tcluster_free(tc);
}

/* An enforce policy nobody satisfies fails the spawn with each node's
 * reasons, and nothing starts anywhere: no fallback. */
static void test_policy_enforce_fails_with_reasons(void **state)
{
	static const char policy[] = "{\"name\": \"strict\", \"mode\": \"enforce\", "
				     "\"node_selector\": {\"zone\": \"eu\"}}";
	struct tcluster *tc = joined_cluster(3, false);
	Cluster__Services__Api__VmSpawnRequest req;
	struct answer a = { 0 };
	struct hc_ibrl_policy *bad;
	struct hc_err err;

	(void)state;
	occupy(tc, 0, WL_BIG, 64);
	request(&req, WL_A, policy);
	hc_cluster_spawn(tc->nodes[2].c, &req, on_spawned, &a);
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 120000) >= 0);
	assert_int_equal(a.code, HC_RPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(a.err, "no node satisfies policy strict (enforce): n0: capacity: "
				      "not enough CPU: 1 vCPUs requested, 64 of 64 in use"));
	assert_non_null(strstr(a.err, "n1: node_selector: zone=eu (no such tag)"));
	assert_non_null(strstr(a.err, "n2: node_selector: zone=eu (no such tag)"));
	assert_int_equal(copies(tc, WL_A), 0);
	assert_int_equal(tc->nodes[2].c->nplacements, 1);
	assert_string_equal(tc->nodes[2].c->placements[0].policy, "strict");
	assert_int_equal(tc->nodes[2].c->placements[0].n[PLACEMENT_NO_MATCH], 1);

	/* the same from the cluster's policy; a bad per-spawn policy is INVALID_ARGUMENT */
	assert_int_equal(hc_ibrl_policy_parse(policy, strlen(policy), "t", &bad, &err), 0);
	hc_cluster_set_policy(tc->nodes[1].c, bad);
	spawn_from(tc, 1, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(a.err, "no node satisfies policy strict"));
	request(&req, WL_A, "{\"name\": \"x\", \"mode\": \"strict\"}");
	memset(&a, 0, sizeof(a));
	hc_cluster_spawn(tc->nodes[2].c, &req, on_spawned, &a);
	assert_true(a.done);
	assert_int_equal(a.code, HC_RPC_INVALID_ARGUMENT);
	assert_non_null(strstr(a.err, "the spawn's policy: mode: must be"));
	assert_int_equal(copies(tc, WL_A), 0);
	tcluster_free(tc);
}

struct replicas_answer {
	struct answer a;
	size_t n;
	char ids[4][HC_WORKLOAD_ID_LEN + 1];
};

static void on_replicas(void *arg, enum hc_rpc_code code, const char *err,
			const ProtobufCMessage *answer)
{
	const Cluster__Services__Api__VmSpawnResponse *resp = (const void *)answer;
	struct replicas_answer *r = arg;

	on_spawned(&r->a, code, err, answer);
	for (size_t i = 0; resp && i < resp->n_replicas && i < 4; i++)
		snprintf(r->ids[r->n++], sizeof(r->ids[0]), "%s", resp->replicas[i]->id);
}

static bool label_known(const void *ctx)
{
	const struct tcluster *tc = ctx;
	int n = 0;

	for (size_t i = 0; i < tc->nodes[0].c->npeers; i++) {
		const struct peer *p = &tc->nodes[0].c->peers[i];

		for (size_t k = 0; k < p->nworkloads; k++)
			n += p->workloads[k]->source_request &&
			     p->workloads[k]->source_request->anti_affinity &&
			     strcmp(p->workloads[k]->source_request->anti_affinity, "web") == 0;
	}
	return n == 2;
}

/* replicas 3 with anti_affinity: three ids on three distinct nodes; a
 * fourth under the same label then finds no node, and says why. */
static void test_policy_replicas_anti_affinity(void **state)
{
	static const char policy[] = "{\"name\": \"web\", \"mode\": \"permissive\", \"replicas\": "
				     "3, \"anti_affinity\": \"web\"}";
	struct tcluster *tc = joined_cluster(3, false);
	Cluster__Services__Api__VmSpawnRequest req;
	struct replicas_answer r = { 0 };
	struct answer a = { 0 };

	(void)state;
	request(&req, NULL, policy);
	hc_cluster_spawn(tc->nodes[0].c, &req, on_replicas, &r);
	assert_true(hc_simnet_run_until(tc->net, answered, &r.a, 200000) >= 0);
	assert_int_equal(r.a.code, HC_RPC_OK);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.a.id, r.ids[0]);
	for (int i = 0; i < 3; i++)
		assert_int_equal(hc_fakert_count(tc->nodes[i].rt), 1);
	assert_int_not_equal(holder(tc, r.ids[0]), holder(tc, r.ids[1]));
	assert_int_not_equal(holder(tc, r.ids[1]), holder(tc, r.ids[2]));
	assert_int_not_equal(holder(tc, r.ids[0]), holder(tc, r.ids[2]));
	/* a preset id cannot name several workloads */
	request(&req, WL_B, policy);
	hc_cluster_spawn(tc->nodes[0].c, &req, on_spawned, &a);
	assert_int_equal(a.code, HC_RPC_INVALID_ARGUMENT);
	/* the labels travel in states: every node is taken */
	assert_true(hc_simnet_run_until(tc->net, label_known, tc, 20000) >= 0);
	request(&req, WL_B, "{\"name\": \"web\", \"mode\": \"permissive\", \"anti_affinity\": "
			    "\"web\"}");
	memset(&a, 0, sizeof(a));
	hc_cluster_spawn(tc->nodes[0].c, &req, on_spawned, &a);
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 120000) >= 0);
	assert_int_equal(a.code, HC_RPC_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(a.err, "n0: anti_affinity: runs a workload labelled web"));
	assert_non_null(strstr(a.err, "n2: anti_affinity: runs a workload labelled web"));
	assert_int_equal(copies(tc, WL_B), 0);
	tcluster_free(tc);
}


struct policy_answers {
	bool done;
	int n;
	char names[MAX_NODES][64];
};

static void on_policy_answer(void *arg, const char *from, const uint8_t *payload, size_t len,
			     bool is_ack)
{
	struct policy_answers *pa = arg;
	ProtobufCMessage *inner = NULL;
	Cluster__Services__Api__ClusterMessage *cm;
	const Cluster__Services__Api__PolicyQuery *q;

	(void)from;
	if (is_ack)
		return;
	cm = hc_cluster_pb_unwrap(payload, len, &cluster__services__api__policy_query__descriptor,
				  &inner);
	assert_non_null(cm);
	assert_int_equal(cm->event, CLUSTER__SERVICES__API__CLUSTER_EVENT__POLICY_QUERY);
	q = (const void *)inner;
	assert_non_null(q);
	assert_string_equal(q->workload_id, WL_A);
	assert_string_equal(q->policy_type, "placement");
	for (size_t i = 0; i < q->n_context; i++)
		if (strcmp(q->context[i]->key, "name") == 0 && pa->n < MAX_NODES)
			snprintf(pa->names[pa->n++], sizeof(pa->names[0]), "%s", q->context[i]->value);
	hc_cluster_pb_free(inner);
	hc_cluster_pb_free(cm);
}

static void policy_query_done(void *arg)
{
	((struct policy_answers *)arg)->done = true;
}

static bool policy_answers_done(const void *ctx)
{
	return ((const struct policy_answers *)ctx)->done;
}

/* POLICY_QUERY (upstream's event, never answered there): every node says
 * which policy it places by. */
static void test_policy_query_answered(void **state)
{
	static const char policy[] = "{\"name\": \"strict\", \"mode\": \"enforce\"}";
	struct tcluster *tc = joined_cluster(3, false);
	Cluster__Services__Api__PolicyQuery q = CLUSTER__SERVICES__API__POLICY_QUERY__INIT;
	struct hc_gossip_query_params params = { .timeout_ms = 3000 };
	struct policy_answers pa = { 0 };
	struct hc_ibrl_policy *p;
	struct hc_err err;
	uint8_t *payload;
	size_t len;
	int strict = 0, dflt = 0;

	(void)state;
	assert_int_equal(hc_ibrl_policy_parse(policy, strlen(policy), "t", &p, &err), 0);
	hc_cluster_set_policy(tc->nodes[1].c, p);
	q.workload_id = (char *)WL_A;
	payload = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__POLICY_QUERY, &q.base, &len);
	assert_non_null(payload);
	assert_int_equal(hc_cluster_query(tc->nodes[0].c, HC_QUERY_NAME, payload, len, &params,
					  on_policy_answer, policy_query_done, &pa), 0);
	free(payload);
	assert_true(hc_simnet_run_until(tc->net, policy_answers_done, &pa, 10000) >= 0);
	assert_int_equal(pa.n, 3);
	for (int i = 0; i < pa.n; i++) {
		strict += strcmp(pa.names[i], "strict") == 0;
		dflt += strcmp(pa.names[i], "default") == 0;
	}
	assert_int_equal(strict, 1);
	assert_int_equal(dflt, 2);
	tcluster_free(tc);
}


/* What the beacon would have stored from n's state. */
static void give_beacon(struct tcluster *tc, int at, const char *n, double price, const char *rep)
{
	Cluster__Services__Api__BeaconMetadata b = CLUSTER__SERVICES__API__BEACON_METADATA__INIT;
	static char *caps[] = { (char *)"container" };
	struct peer *p = hc_cluster_state_peer(tc->nodes[at].c, n);

	assert_non_null(p);
	b.price_per_gb = price;
	b.reputation_score = (char *)rep;
	b.latency_ms = 999; /* its own claim: placement uses our probes instead */
	b.node_capabilities = caps;
	b.n_node_capabilities = 1;
	hc_cluster_pb_free(p->beacon);
	p->beacon = hc_cluster_pb_clone(&b.base);
	assert_non_null(p->beacon);
}

/* n2 has probed every other member: it has its own link metrics. */
static bool probed(const void *ctx)
{
	const struct tcluster *tc = ctx;
	size_t n = 0, measured = 0;
	struct hc_gossip_member *ms = hc_cluster_members(tc->nodes[2].c, &n);

	for (size_t i = 0; i < n; i++)
		measured += strcmp(ms[i].name, "n2") != 0 && ms[i].rtt_mean_us >= 0;
	hc_gossip_members_free(ms, n);
	return measured == 2;
}

/* Until the beacon broadcasts BeaconMetadata, each peer's next state
 * would replace what a test gave it: n2 takes no more states meanwhile. */
static bool no_sender_alive(struct hc_cluster *c, const char *name)
{
	(void)c, (void)name;
	return false;
}

/* With beacon data: the placing node's own probe metrics and the peers'
 * BeaconMetadata decide; enforce keeps only the node that passes. */
static void test_policy_uses_beacons_and_probes(void **state)
{
	static const char policy[] = "{\"name\": \"balanced\", \"mode\": \"enforce\", \"rules\": "
				     "{\"max_latency_ms\": 200, \"max_price_per_gb\": 0.02, "
				     "\"min_reputation_score\": 0.7, \"required_capabilities\": "
				     "[\"container\"]}}";
	struct tcluster *tc = joined_cluster(3, false);
	Cluster__Services__Api__VmSpawnRequest req;
	struct explained e = { 0 };
	json_t *nodes, *first;

	(void)state;
	assert_true(hc_simnet_run_until(tc->net, probed, tc, 30000) >= 0);
	tc->nodes[2].c->sender_alive = no_sender_alive;
	give_beacon(tc, 2, "n0", 0.5, "0.9"); /* too dear */
	give_beacon(tc, 2, "n1", 0.01, "0.8");
	request(&req, WL_A, policy);
	hc_cluster_policy_explain(tc->nodes[2].c, &req, on_explained, &e);
	assert_true(hc_simnet_run_until(tc->net, explained_done, &e, 60000) >= 0);
	assert_int_equal(e.code, HC_RPC_OK);
	assert_non_null(e.doc);
	if (json_array_size(json_object_get(e.doc, "order")) != 1)
		fail_msg("%s", json_dumps(e.doc, JSON_INDENT(1)));
	nodes = json_object_get(e.doc, "nodes");
	first = json_array_get(nodes, 0);
	assert_string_equal(json_string_value(json_object_get(first, "name")), "n1");
	assert_string_equal(json_string_value(json_object_get(first, "link")), "measured");
	assert_true(json_real_value(json_object_get(first, "latency_ms")) < 200);
	assert_string_equal(json_string_value(json_object_get(json_object_get(first, "rules"),
							      "max_latency_ms")), "pass");
	for (size_t i = 1; i < json_array_size(nodes); i++) {
		json_t *n = json_array_get(nodes, i);
		const char *name = json_string_value(json_object_get(n, "name"));
		const char *why = json_string_value(json_object_get(n, "reasons"));

		if (strcmp(name, "n0") == 0)
			assert_string_equal(why, "max_price_per_gb: 0.5 > 0.02");
		else /* n2 itself: its own beacon, and no runtime told it "container" */
			assert_string_equal(why, "required_capabilities: lacks container");
	}
	json_decref(e.doc);
	tcluster_free(tc);
}

/* ---- respawn and duplicates ---- */

static int total_respawns(const struct tcluster *tc)
{
	int n = 0;

	for (int i = 0; i < tc->n; i++)
		n += (int)tc->nodes[i].c->respawns;
	return n;
}

struct copies_check {
	const struct tcluster *tc;
	const char *id;
	int from, want; /* copies on nodes from.. */
};

static bool copies_are(const void *ctx)
{
	const struct copies_check *cc = ctx;
	int n = 0;

	for (int i = cc->from; i < cc->tc->n; i++)
		n += hc_fakert_has(cc->tc->nodes[i].rt, cc->id);
	return n == cc->want;
}

/* The first survivor (by name) that runs id, or -1. */
static int runner_of(const struct tcluster *tc, const char *id, int from)
{
	for (int i = from; i < tc->n; i++)
		if (hc_fakert_has(tc->nodes[i].rt, id))
			return i;
	return -1;
}

/* Four respawning nodes; WL_A on n0, which then fails: the survivors
 * respawn it once between them. Returns the cluster, n0 still down. */
static struct tcluster *respawned_after_failure(int *runner)
{
	struct tcluster *tc = joined_cluster(4, true);
	struct copies_check one = { tc, WL_A, 1, 1 };
	struct answer a;

	spawn_from(tc, 3, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_true(hc_fakert_has(tc->nodes[0].rt, WL_A));
	assert_owner_agreed(tc, WL_A, "n0");

	hc_simnet_set_down(tc->net, 0, true);
	assert_true(hc_simnet_run_until(tc->net, copies_are, &one, 60000) >= 0);
	/* long after every survivor saw n0 fail: still one copy */
	hc_simnet_run_ms(tc->net, 30000);
	assert_true(copies_are(&one));
	*runner = runner_of(tc, WL_A, 1);
	assert_true(*runner >= 1);
	assert_int_equal(total_respawns(tc), 1);
	for (int i = 1; i < tc->n; i++)
		assert_int_equal(hc_fakert_spawns_of(tc->nodes[i].rt, WL_A), i == *runner ? 1 : 0);
	assert_owner_agreed(tc, WL_A, tc->nodes[*runner].name);
	return tc;
}

static void test_respawn_happens_once_cluster_wide(void **state)
{
	int runner;
	struct tcluster *tc = respawned_after_failure(&runner);

	(void)state;
	/* the failed node's runtime still holds its copy: it only lost its network */
	assert_true(hc_fakert_has(tc->nodes[0].rt, WL_A));
	tcluster_free(tc);
}

/* Node n0, running WL_A (with restart policy `restart`), fails: nothing
 * is started elsewhere, with respawn on or off. */
static void assert_not_respawned(bool respawn, const char *restart)
{
	struct tcluster *tc = joined_cluster(3, respawn);
	struct answer a;

	spawn_restart(tc, 2, WL_A, restart, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	hc_simnet_set_down(tc->net, 0, true);
	hc_simnet_run_ms(tc->net, 40000);
	assert_int_equal(copies(tc, WL_A) - hc_fakert_has(tc->nodes[0].rt, WL_A), 0);
	assert_int_equal(total_respawns(tc), 0);
	if (!respawn)
		assert_owner_agreed(tc, WL_A, NULL);
	tcluster_free(tc);
}

/* Without --respawn-on-node-failure a failed node's workloads stay lost. */
static void test_no_respawn_when_disabled(void **state)
{
	(void)state;
	assert_not_respawned(false, NULL);
}

/* A workload whose restart policy is never is not started again when its
 * node fails, even with --respawn-on-node-failure: it must not run twice. */
static void test_no_respawn_of_restart_never(void **state)
{
	(void)state;
	assert_not_respawned(true, "never");
}

/* ---- restarts of exited workloads ---- */

static const char *announced_restart(struct tcluster *tc, const char *id)
{
	struct local_wl *l = hc_cluster_local_find(tc->nodes[0].c, id);

	assert_non_null(l);
	assert_non_null(l->state->source_request);
	return l->state->source_request->restart;
}

/* Workload id on the one node exits with code; returns how many times the
 * runtime was asked to spawn it, 10 s later (the backoff's first step is 1 s). */
static unsigned spawns_after_exit(struct tcluster *tc, const char *id, int code)
{
	struct hc_runtime_exit ev;

	assert_int_equal(hc_fakert_exit(tc->nodes[0].rt, id, code, &ev), 0);
	hc_cluster_on_exit(tc->nodes[0].c, &ev);
	hc_simnet_run_ms(tc->net, 10000);
	return hc_fakert_spawns_of(tc->nodes[0].rt, id);
}

/* --restart always (the default, as upstream), on-failure and never, with
 * the same id; and the cluster's --default-restart for spawns naming none. */
static void test_restart_policies(void **state)
{
	static const char *const ids[] = {
		"0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a11", "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a12",
		"0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a13", "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a14",
		"0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a15",
	};
	static const char *const policy[] = { NULL, "on-failure", "on-failure", "never", NULL };
	struct tcluster *tc = joined_cluster(1, false);
	struct answer a;

	(void)state;
	for (int i = 0; i < 4; i++) {
		spawn_restart(tc, 0, ids[i], policy[i], &a);
		assert_int_equal(a.code, HC_RPC_OK);
	}
	/* the default is named in the state, so lists show it */
	assert_string_equal(announced_restart(tc, ids[0]), "always");
	assert_string_equal(announced_restart(tc, ids[1]), "on-failure");
	assert_int_equal(spawns_after_exit(tc, ids[0], 0), 2);	/* always: even on success */
	assert_string_equal(announced_restart(tc, ids[0]), "always");
	assert_int_equal(spawns_after_exit(tc, ids[1], 0), 1);	/* on-failure, succeeded */
	assert_int_equal(spawns_after_exit(tc, ids[2], 137), 2); /* on-failure, failed */
	assert_int_equal(spawns_after_exit(tc, ids[3], 1), 1);	/* never */
	assert_null(hc_cluster_local_find(tc->nodes[0].c, ids[3]));
	/* the cluster-wide default, for a spawn naming none */
	tc->nodes[0].c->cfg.default_restart = HC_RESTART_NEVER;
	spawn_restart(tc, 0, ids[4], policy[4], &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_string_equal(announced_restart(tc, ids[4]), "never");
	assert_int_equal(spawns_after_exit(tc, ids[4], 1), 1);
	/* exited while no agent watched (never seen running): restarted if
	 * its policy says so, the label of the local verb's --restart too */
	{
		static const char *const found[] = { "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a16",
						     "0b8e1f52-6f0e-4c55-9d3a-1d2f0c9e7a17" };
		struct hc_label always = { (char *)HC_LABEL_RESTART, (char *)"always" };
		struct hc_workload_spec spec = { .image_ref = (char *)"registry.test/app:1",
						 .cores = 1, .memory_mb = 64 };
		struct hc_runtime_exit ev;

		for (int i = 0; i < 2; i++) {
			/* the first with --restart always, the second with the default (never) */
			spec.labels = i == 0 ? &always : NULL;
			spec.nlabels = i == 0;
			assert_int_equal(hc_fakert_add(tc->nodes[0].rt, found[i], &spec), 0);
			assert_int_equal(hc_fakert_exit(tc->nodes[0].rt, found[i], 0, &ev), 0);
		}
		hc_cluster_local_refresh(tc->nodes[0].c);
		hc_simnet_run_ms(tc->net, 10000);
		assert_int_equal(hc_fakert_spawns_of(tc->nodes[0].rt, found[0]), 1);
		assert_int_equal(hc_fakert_spawns_of(tc->nodes[0].rt, found[1]), 0);
	}
	/* a bad name is refused before anything runs */
	spawn_restart(tc, 0, WL_A, "sometimes", &a);
	assert_int_equal(a.code, HC_RPC_INVALID_ARGUMENT);
	assert_non_null(strstr(a.err, "always, on-failure or never"));
	tcluster_free(tc);
}

/* n0 fails together with the nodes that could be chosen to respawn its
 * workload, found failed one after another: a choice made while the chosen
 * node still seemed alive is made again when it fails too, so survivor, the
 * one node left, respawns the workload. It was lost: the failed node's
 * state, and the workload with it, was forgotten once the choice was made. */
static void respawn_by_last_survivor(int survivor)
{
	struct tcluster *tc = joined_cluster(4, true);
	struct copies_check one = { tc, WL_A, 1, 1 };
	struct answer a;

	spawn_from(tc, survivor, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	/* n0 first, the others just after, before anyone can find n0 failed:
	 * the survivor finds n0 failed while they still seem alive */
	hc_simnet_set_down(tc->net, 0, true);
	hc_simnet_run_ms(tc->net, 200);
	for (int i = 1; i < 4; i++)
		if (i != survivor)
			hc_simnet_set_down(tc->net, i, true);
	assert_true(hc_simnet_run_until(tc->net, copies_are, &one, 300000) >= 0);
	assert_true(hc_fakert_has(tc->nodes[survivor].rt, WL_A));
	hc_simnet_run_ms(tc->net, 30000);
	assert_true(copies_are(&one));
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[survivor].rt, WL_A), 1);
	tcluster_free(tc);
}

/* Each node in turn is the survivor: whichever node the workload's
 * rendezvous picks, at least two runs have it fail. */
static void test_respawn_chosen_node_fails_too(void **state)
{
	(void)state;
	for (int survivor = 1; survivor < 4; survivor++)
		respawn_by_last_survivor(survivor);
}

/* n0 comes back with the copy that was respawned elsewhere meanwhile: both
 * owners make the same choice and exactly one copy is left. */
static void test_duplicate_settles_to_one_copy(void **state)
{
	int runner;
	struct tcluster *tc = respawned_after_failure(&runner);
	struct copies_check one = { tc, WL_A, 0, 1 };
	int survivor;
	uint64_t stopped = 0;

	(void)state;
	hc_simnet_set_down(tc->net, 0, false);
	assert_true(hc_simnet_run_until(tc->net, all_alive, tc, 60000) >= 0);
	assert_true(hc_simnet_run_until(tc->net, copies_are, &one, 60000) >= 0);
	hc_simnet_run_ms(tc->net, 20000); /* and it stays so */
	assert_true(copies_are(&one));
	survivor = runner_of(tc, WL_A, 0);
	assert_true(survivor == 0 || survivor == runner);
	for (int i = 0; i < tc->n; i++)
		stopped += tc->nodes[i].c->duplicates_stopped;
	assert_int_equal(stopped, 1);
	assert_int_equal(total_respawns(tc), 1); /* no respawn of the stopped copy */
	assert_owner_agreed(tc, WL_A, tc->nodes[survivor].name);
	tcluster_free(tc);
}

/* ---- state chunks ---- */

/* Spec of the i-th preloaded workload; its id into id. */
static void preload(struct hc_fakert *rt, int i, char *id)
{
	struct hc_workload_spec spec = { .image_ref = (char *)"registry.test/app:1", .cores = 1,
					 .memory_mb = 64 };

	snprintf(id, HC_WORKLOAD_ID_LEN + 1, "5e0c0a7d-0000-4000-8000-%012d", i);
	assert_int_equal(hc_fakert_add(rt, id, &spec), 0);
}

/* The chunks of one complete broadcast of `sender` that node nd captured,
 * by index; returns their count. */
static uint32_t one_broadcast(struct tnode *nd, const char *sender, const uint8_t **chunks,
			      size_t *lens, uint32_t max)
{
	char uuid[64] = "";
	uint32_t count = 0, have = 0;

	for (size_t k = 0; k < nd->ncaptured && (!count || have < count); k++) {
		hc_pb_state *st = cluster__services__api__node_state_response__unpack(
			NULL, nd->captured_len[k], nd->captured[k]);
		const char *marker = st && st->node ? st->node->ip : NULL;

		if (marker && strcmp(st->node->id, sender) == 0 && st->chunk_count > 2 &&
		    st->chunk_count <= max && (!count || strncmp(marker, uuid, 36) == 0)) {
			if (!count) {
				snprintf(uuid, sizeof(uuid), "%.36s", marker);
				count = st->chunk_count;
				memset(chunks, 0, max * sizeof(*chunks));
			}
			if (!chunks[st->chunk_index]) {
				chunks[st->chunk_index] = nd->captured[k];
				lens[st->chunk_index] = nd->captured_len[k];
				have++;
			}
		}
		hc_cluster_pb_free(st);
	}
	return have == count ? count : 0;
}

static bool any_sender(struct hc_cluster *c, const char *name)
{
	(void)c;
	(void)name;
	return true;
}

/* The member list of the node the chunks are fed to: n0 at its simnet
 * address, which its states must name (agent/cluster checks it). */
static struct hc_gossip_member *n0_only(struct hc_cluster *c, size_t *n)
{
	struct hc_gossip_member *ms = calloc(1, sizeof(*ms));

	(void)c;
	assert_non_null(ms);
	ms->name = strdup("n0");
	assert_non_null(ms->name);
	snprintf(ms->addr, sizeof(ms->addr), "10.0.0.1:7946");
	ms->status = HC_GOSSIP_ALIVE;
	*n = 1;
	return ms;
}

/* Feeds the chunks to a new cluster in the given order; checks that the
 * state shows up whole with the last chunk and not before. */
static void assemble_in_order(const char *dir, const uint8_t *const *chunks, const size_t *lens,
			      const uint32_t *order, uint32_t count, char ids[][HC_WORKLOAD_ID_LEN + 1],
			      size_t nids)
{
	struct hc_cluster_config cfg = { .state_dir = dir, .base_url = BASE_URL };
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct hc_cluster *c;
	struct peer *p;
	struct hc_err err;

	assert_non_null(loop);
	c = hc_cluster_new(loop, &cfg, &err);
	assert_non_null(c);
	c->sender_alive = any_sender;
	c->members_hook = n0_only;
	for (uint32_t k = 0; k < count; k++) {
		assert_null(hc_cluster_state_peer(c, "n0"));
		hc_cluster_state_on_event(c, HC_STATE_EVENT, chunks[order[k]], lens[order[k]]);
		if (k == 0) { /* a chunk seen twice is dropped, not counted twice */
			hc_cluster_state_on_event(c, HC_STATE_EVENT, chunks[order[k]],
						  lens[order[k]]);
			assert_int_equal(c->chunks_dropped, 1);
		}
	}
	p = hc_cluster_state_peer(c, "n0");
	assert_non_null(p);
	assert_int_equal(p->nworkloads, nids);
	for (size_t i = 0; i < nids; i++) /* sorted by id, as the sender sent them */
		assert_string_equal(p->workloads[i]->id, ids[i]);
	assert_string_equal(p->node_addr, "10.0.0.1");
	assert_true(p->verified); /* signed over all chunks, any order */
	assert_int_equal(c->states_received, 1);
	assert_int_equal(c->nassemblies, 0);
	hc_cluster_free(c);
	hc_loop_free(loop);
}

static bool next_permutation(uint32_t *a, uint32_t n)
{
	uint32_t i = n - 1, j = n - 1, t;

	while (i > 0 && a[i - 1] >= a[i])
		i--;
	if (i == 0)
		return false;
	while (a[j] <= a[i - 1])
		j--;
	t = a[i - 1], a[i - 1] = a[j], a[j] = t;
	for (j = n - 1; i < j; i++, j--)
		t = a[i], a[i] = a[j], a[j] = t;
	return true;
}

#define NPRELOAD 35 /* 4 chunks of at most 10 */
#define MAX_TEST_CHUNKS 8

static void test_state_chunks_reassemble_in_any_order(void **state)
{
	struct tcluster *tc = tcluster_new(2);
	char ids[NPRELOAD][HC_WORKLOAD_ID_LEN + 1];
	const uint8_t *chunks[MAX_TEST_CHUNKS];
	size_t lens[MAX_TEST_CHUNKS];
	uint32_t count, order[MAX_TEST_CHUNKS];
	char dir[64];
	unsigned orders = 0;

	(void)state;
	for (int i = 0; i < NPRELOAD; i++)
		preload(tc->nodes[0].rt, i, ids[i]);
	for (int i = 0; i < tc->n; i++)
		node_start(tc, i, false);
	assert_true(hc_simnet_run_until(tc->net, all_alive, tc, 30000) >= 0);
	hc_simnet_run_ms(tc->net, 3000);
	/* over the simulated network, too, n1 has all of n0's workloads */
	assert_int_equal(hc_cluster_local_workloads(tc->nodes[0].c), NPRELOAD);
	assert_non_null(hc_cluster_state_peer(tc->nodes[1].c, "n0"));
	assert_int_equal(hc_cluster_state_peer(tc->nodes[1].c, "n0")->nworkloads, NPRELOAD);

	count = one_broadcast(&tc->nodes[1], "n0", chunks, lens, MAX_TEST_CHUNKS);
	assert_int_equal(count, (NPRELOAD + WORKLOADS_PER_CHUNK - 1) / WORKLOADS_PER_CHUNK);
	assert_int_equal(hc_tmpdir_new(dir, sizeof(dir), "hc-clsim"), 0);
	for (uint32_t k = 0; k < count; k++)
		order[k] = k;
	do { /* every order, in order and reversed among them */
		assemble_in_order(dir, chunks, lens, order, count, ids, NPRELOAD);
		orders++;
	} while (next_permutation(order, count));
	assert_int_equal(orders, 24);
	assert_int_equal(hc_tmpdir_remove(dir), 0);
	tcluster_free(tc);
}

/* ---- stop ---- */

/* A stop asked of any node reaches the owner; the workload is gone
 * everywhere and the other nodes' routes forget it. */
static void test_stop_running_workload(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	struct answer a, st = { 0 };

	(void)state;
	spawn_from(tc, 2, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	hc_cluster_stop(tc->nodes[2].c, WL_A, on_stopped, &st);
	assert_true(hc_simnet_run_until(tc->net, answered, &st, 60000) >= 0);
	assert_int_equal(st.code, HC_RPC_OK);
	assert_string_equal(st.node, "n0");
	assert_int_equal(hc_fakert_calls(tc->nodes[0].rt, HC_FAKERT_STOP), 1);
	assert_int_equal(copies(tc, WL_A), 0);
	assert_owner_agreed(tc, WL_A, NULL);
	/* a second stop finds nothing */
	memset(&st, 0, sizeof(st));
	hc_cluster_stop(tc->nodes[1].c, WL_A, on_stopped, &st);
	assert_true(hc_simnet_run_until(tc->net, answered, &st, 60000) >= 0);
	assert_int_equal(st.code, HC_RPC_NOT_FOUND);
	tcluster_free(tc);
}

/* The owner (n0) dies in the middle of a stop: the stop fails UNAVAILABLE,
 * naming it, as soon as gossip finds it failed, not at the stop query's
 * 30 s timeout. */
static void test_stop_fails_when_its_owner_fails(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	struct answer a, st = { 0 };
	uint64_t start;

	(void)state;
	spawn_from(tc, 2, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	hc_fakert_set_latency(tc->nodes[0].rt, HC_FAKERT_STOP, 600000);
	hc_cluster_stop(tc->nodes[2].c, WL_A, on_stopped, &st);
	assert_true(hc_simnet_run_until(tc->net, n0_runtime_busy, tc, 20000) >= 0);
	start = hc_loop_now_ms(hc_simnet_loop(tc->net));
	hc_simnet_set_down(tc->net, 0, true);
	assert_true(hc_simnet_run_until(tc->net, answered, &st, 60000) >= 0);
	assert_int_equal(st.code, HC_RPC_UNAVAILABLE);
	assert_non_null(strstr(st.err, "n0"));
	assert_true(hc_loop_now_ms(hc_simnet_loop(tc->net)) - start < 25000);
	hc_fakert_flush(tc->nodes[0].rt);
	tcluster_free(tc);
}

/* A stop that fails half way (its process killed, the call failed) is
 * answered with the error and tried again until the workload is gone; its
 * restart policy (always) does not bring back what was asked to stop. */
static void test_failed_stop_is_retried_not_restarted(void **state)
{
	struct tcluster *tc = joined_cluster(1, false);
	struct answer a, st = { 0 };
	struct hc_runtime_exit ev;

	(void)state;
	spawn_restart(tc, 0, WL_A, "always", &a);
	assert_int_equal(a.code, HC_RPC_OK);
	hc_fakert_fail_stops(tc->nodes[0].rt, 2, EIO);
	hc_cluster_stop(tc->nodes[0].c, WL_A, on_stopped, &st);
	assert_true(hc_simnet_run_until(tc->net, answered, &st, 60000) >= 0);
	assert_int_not_equal(st.code, HC_RPC_OK);
	assert_non_null(strstr(st.err, "stop failed half way"));
	assert_non_null(strstr(st.err, "keeps trying"));
	/* the runtime's watch reports the killed process */
	assert_int_equal(hc_fakert_exit(tc->nodes[0].rt, WL_A, 137, &ev), 0);
	hc_cluster_on_exit(tc->nodes[0].c, &ev);
	hc_simnet_run_ms(tc->net, 20000);
	assert_int_equal(hc_fakert_calls(tc->nodes[0].rt, HC_FAKERT_STOP), 3);
	assert_int_equal(tc->nodes[0].c->stops_failed, 2);
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[0].rt, WL_A), 1);
	assert_false(hc_fakert_has(tc->nodes[0].rt, WL_A));
	assert_null(hc_cluster_local_find(tc->nodes[0].c, WL_A));
	assert_int_equal(tc->nodes[0].c->restarts, 0);
	assert_owner_agreed(tc, WL_A, NULL);
	tcluster_free(tc);
}

static bool stop_mark_exists(const struct tnode *nd, const char *id)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/stopping/%s", nd->dir, id);
	return access(path, F_OK) == 0;
}

/* The owner's agent restarts while it owes a stop (every try failed so
 * far): it stops the workload again once back, rather than adopting it or
 * restarting it by its policy; the mark it kept goes once it is gone. */
static void test_owed_stop_survives_agent_restart(void **state)
{
	struct tcluster *tc = joined_cluster(2, false);
	struct answer a, st = { 0 };
	struct hc_runtime_exit ev;
	struct tnode *nd;
	int o;

	(void)state;
	spawn_restart(tc, 1, WL_A, "always", &a);
	assert_int_equal(a.code, HC_RPC_OK);
	o = hc_cluster_local_find(tc->nodes[0].c, WL_A) ? 0 : 1;
	assert_non_null(hc_cluster_local_find(tc->nodes[o].c, WL_A));
	nd = &tc->nodes[o];
	hc_fakert_fail_stops(nd->rt, 1000, EIO);
	hc_cluster_stop(tc->nodes[1].c, WL_A, on_stopped, &st);
	assert_true(hc_simnet_run_until(tc->net, answered, &st, 60000) >= 0);
	assert_int_equal(st.code, HC_RPC_UNAVAILABLE);
	assert_int_equal(hc_fakert_exit(nd->rt, WL_A, 137, &ev), 0);
	hc_cluster_on_exit(nd->c, &ev);
	hc_simnet_run_ms(tc->net, 4000);
	assert_true(hc_fakert_calls(nd->rt, HC_FAKERT_STOP) >= 2);
	assert_true(stop_mark_exists(nd, WL_A));

	/* the agent is killed and started again; the runtime now stops */
	hc_fakert_flush(nd->rt);
	hc_cluster_free(nd->c);
	nd->c = NULL;
	hc_simnet_attach(tc->net, o, NULL);
	hc_fakert_fail_stops(nd->rt, 0, 0);
	nd->restarted = true;
	node_start(tc, o, false);
	hc_cluster_local_refresh(nd->c); /* the runtime watch's first report */
	hc_simnet_run_ms(tc->net, 10000);
	assert_int_equal(hc_fakert_spawns_of(nd->rt, WL_A), 1);
	assert_false(hc_fakert_has(nd->rt, WL_A));
	assert_null(hc_cluster_local_find(nd->c, WL_A));
	assert_false(stop_mark_exists(nd, WL_A));
	assert_owner_agreed(tc, WL_A, NULL);
	tcluster_free(tc);
}

/* ---- logs ---- */

struct logs_answer {
	bool done;
	enum hc_rpc_code code;
	char text[512];
	uint64_t next_line;
};

static void on_logs(void *arg, enum hc_rpc_code code, const char *err,
		    const ProtobufCMessage *answer)
{
	const Cluster__Services__Api__VmLogsResponse *resp = (const void *)answer;
	struct logs_answer *a = arg;

	(void)err;
	a->done = true;
	a->code = code;
	if (resp) {
		snprintf(a->text, sizeof(a->text), "%s", resp->logs);
		a->next_line = resp->next_line;
	}
}

static bool answered_logs(const void *ctx)
{
	return ((const struct logs_answer *)ctx)->done;
}

/* The owner reads a workload's log from its runtime (a job, like every
 * runtime call), keeping the last `tail` lines. */
static void test_logs_from_the_owners_runtime(void **state)
{
	Cluster__Services__Api__VmLogsRequest req = CLUSTER__SERVICES__API__VM_LOGS_REQUEST__INIT;
	struct tcluster *tc = joined_cluster(2, false);
	struct logs_answer la = { 0 };
	struct answer a;

	(void)state;
	spawn_from(tc, 1, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	req.id = (char *)WL_A;
	req.tail = 2;
	hc_cluster_logs(tc->nodes[0].c, &req, false, on_logs, &la);
	assert_false(la.done); /* the runtime is read on a job */
	assert_true(hc_simnet_run_until(tc->net, answered_logs, &la, 1000) >= 0);
	assert_int_equal(la.code, HC_RPC_OK);
	assert_string_equal(la.text, "line 1 of " WL_A "\nline 2 of " WL_A "\n");
	assert_int_equal(la.next_line, 3);
	assert_int_equal(hc_fakert_calls(tc->nodes[0].rt, HC_FAKERT_LOGS), 1);
	tcluster_free(tc);
}

/* Logs of a workload on another node come from that node's HTTP API: where
 * it announced it, or, from an upstream node (no address or port in its
 * state), its member address and upstream's port 8001, without our token. */
static void test_logs_endpoint_of_upstream_nodes(void **state)
{
	struct tcluster *tc = joined_cluster(2, false);
	struct peer *p = hc_cluster_state_peer(tc->nodes[1].c, "n0");
	struct owner_endpoint ep;

	(void)state;
	assert_non_null(p);
	free(p->node_addr);
	p->node_addr = strdup("");
	p->http_port = 0; /* as upstream's states say */
	assert_int_equal(hc_cluster_owner_endpoint(tc->nodes[1].c, p, &ep), 0);
	assert_string_equal(ep.host, "10.0.0.1");
	assert_int_equal(ep.port, 8001);
	assert_false(ep.send_token);
	free(p->node_addr);
	p->node_addr = strdup("10.0.0.1");
	p->http_port = 18001; /* ours announce both */
	assert_int_equal(hc_cluster_owner_endpoint(tc->nodes[1].c, p, &ep), 0);
	assert_int_equal(ep.port, 18001);
	assert_true(ep.send_token);
	tcluster_free(tc);
}

/* ---- stop during a spawn ---- */

struct stop_spawn {
	struct tcluster *tc;
	struct answer spawn, stop;
};

static bool both_answered(const void *ctx)
{
	const struct stop_spawn *s = ctx;

	return s->spawn.done && s->stop.done;
}

/* No operation left on any node: their queries ended too (a spawn query
 * lives until its 90 s timeout, answered or not). */
static bool no_ops(const void *ctx)
{
	const struct tcluster *tc = ctx;

	for (int i = 0; i < tc->n; i++)
		if (!hc_list_empty(&tc->nodes[i].c->ops) || !hc_list_empty(&tc->nodes[i].c->queries))
			return false;
	return true;
}

static bool pending_on_n0(const void *ctx)
{
	const struct tcluster *tc = ctx;
	struct local_wl *l = hc_cluster_local_find(tc->nodes[0].c, WL_A);

	return l && l->pending;
}

/* The route flags node c builds for workload id on port, or -1 without
 * such a route. */
static int route_flags(struct hc_cluster *c, const char *id, uint16_t port)
{
	struct hc_cluster_desired d;
	int flags = -1;

	assert_int_equal(hc_cluster_routes_build(c, &d), 0);
	for (size_t i = 0; i < d.nroutes; i++)
		if (strcmp(d.routes[i].key.host, id) == 0 && d.routes[i].key.port == port)
			flags = d.routes[i].val.flags;
	hc_cluster_desired_fini(&d);
	return flags;
}

static bool routed_everywhere(const void *ctx)
{
	const struct tcluster *tc = ctx;

	for (int i = 0; i < tc->n; i++)
		if (route_flags(tc->nodes[i].c, WL_A, 443) < 0 || route_flags(tc->nodes[i].c, WL_A, 80) < 0)
			return false;
	return true;
}

/* A port spawned 443:8080/h2c (VmSpawnRequest.h2c_ports): the owner's route
 * and, through the state's PortBinding.h2c, every other node's say h2c;
 * the other port of the same workload does not. */
static void test_h2c_port_routed_as_h2c_everywhere(void **state)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry pe[2], *pp[2] = {&pe[0], &pe[1]};
	struct tcluster *tc = joined_cluster(3, false);
	uint32_t h2c[] = {443};
	struct answer a = {0};

	(void)state;
	for (int i = 0; i < 2; i++)
		cluster__services__api__vm_spawn_request__ports_entry__init(&pe[i]);
	pe[0].key = 443, pe[0].value = 8080;
	pe[1].key = 80, pe[1].value = 8081;
	req.image_ref = (char *)"registry.test/app:1";
	req.id = (char *)WL_A;
	req.ports = pp;
	req.n_ports = 2;
	req.h2c_ports = h2c;
	req.n_h2c_ports = 1;
	hc_cluster_spawn(tc->nodes[1].c, &req, on_spawned, &a);
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 120000) >= 0);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_true(hc_simnet_run_until(tc->net, routed_everywhere, tc, 120000) >= 0);
	for (int i = 0; i < tc->n; i++) {
		assert_int_equal(route_flags(tc->nodes[i].c, WL_A, 443), HC_ROUTE_F_H2C);
		assert_int_equal(route_flags(tc->nodes[i].c, WL_A, 80), 0);
	}
	tcluster_free(tc);
}

static struct hc_dp_route carried_route(const char *id, const char *node)
{
	struct hc_dp_route r;

	memset(&r, 0, sizeof(r));
	assert_int_equal(hc_dp_route_key_init(&r.key, id, 80), 0);
	r.val.port = 30080;
	snprintf(r.val.node, sizeof(r.val.node), "%s", node);
	return r;
}

static bool carried_of(const struct hc_cluster *c, const char *node)
{
	for (size_t i = 0; i < c->ncarried; i++)
		if (strcmp(c->carried[i].val.node, node) == 0)
			return true;
	return false;
}

/* A restarted agent's maps still hold its last run's routes: its own are
 * not carried (its listing decides), another node's go once that node's
 * state is in, and one of a node gossip does not know yet is routed until
 * the bound passes. */
static void test_last_runs_routes_carried_until_states_come(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	struct hc_cluster *c = tc->nodes[0].c;
	struct hc_dp_route *r = calloc(3, sizeof(*r));
	struct hc_cluster_desired d;
	int ghost_routed = 0;

	(void)state;
	assert_non_null(r);
	r[0] = carried_route(WL_A, "n1");   /* its state is in */
	r[1] = carried_route(WL_B, "n9");   /* no such member yet */
	r[2] = carried_route(WL_BIG, "n0"); /* ours */
	hc_cluster_routes_carry_take(c, r, 3);
	assert_int_equal(c->ncarried, 2);
	assert_false(carried_of(c, "n0"));
	assert_int_equal(hc_cluster_routes_build(c, &d), 0);
	for (size_t i = 0; i < d.nroutes; i++)
		ghost_routed += strcmp(d.routes[i].key.host, WL_B) == 0 &&
				strcmp(d.routes[i].val.node, "n9") == 0;
	hc_cluster_desired_fini(&d);
	assert_int_equal(ghost_routed, 1);
	hc_cluster_routes_carry_prune(c);
	assert_false(carried_of(c, "n1"));
	assert_true(carried_of(c, "n9"));
	assert_int_equal(c->ncarried, 1);
	/* the bound ends it: housekeeping drops what is left */
	hc_simnet_run_ms(tc->net, 11000);
	assert_int_equal(c->ncarried, 0);
	assert_null(c->carried);
	tcluster_free(tc);
}

/* The owner takes its time to spawn; a stop asked meanwhile wins: the
 * workload ends stopped, and nothing is left of it anywhere. */
static void test_stop_while_spawning(void **state)
{
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	struct stop_spawn s = { .tc = joined_cluster(2, false) };
	struct tcluster *tc = s.tc;

	(void)state;
	hc_fakert_set_latency(tc->nodes[0].rt, HC_FAKERT_SPAWN, 5000);
	req.image_ref = (char *)"registry.test/app:1";
	req.id = (char *)WL_A;
	hc_cluster_spawn(tc->nodes[1].c, &req, on_spawned, &s.spawn);
	assert_true(hc_simnet_run_until(tc->net, pending_on_n0, tc, 10000) >= 0);
	hc_cluster_stop(tc->nodes[1].c, WL_A, on_stopped, &s.stop);
	assert_true(hc_simnet_run_until(tc->net, both_answered, &s, 120000) >= 0);
	assert_true(hc_simnet_run_until(tc->net, runtimes_idle, tc, 60000) >= 0);
	assert_true(hc_simnet_run_until(tc->net, no_ops, tc, 120000) >= 0);

	assert_int_equal(s.spawn.code, HC_RPC_OK);
	assert_int_equal(s.stop.code, HC_RPC_OK);
	assert_string_equal(s.stop.node, "n0");
	/* spawned once, then stopped once: the stop waited for the spawn */
	assert_int_equal(hc_fakert_spawns_of(tc->nodes[0].rt, WL_A), 1);
	assert_int_equal(hc_fakert_calls(tc->nodes[0].rt, HC_FAKERT_STOP), 1);
	assert_int_equal(hc_fakert_calls(tc->nodes[1].rt, HC_FAKERT_SPAWN), 0);
	assert_int_equal(copies(tc, WL_A), 0);
	for (int i = 0; i < tc->n; i++) {
		assert_null(hc_cluster_local_find(tc->nodes[i].c, WL_A));
		assert_int_equal(tc->nodes[i].c->njobs, 0);
		assert_int_equal(tc->nodes[i].c->nlocal, 0); /* no placeholder either */
	}
	assert_owner_agreed(tc, WL_A, NULL);
	tcluster_free(tc);
}

/* ---- rogue members (IBRL: signed states) ---- */

#define WL_FORGED "f0f0f0f0-0000-4000-8000-00000000f0f0"

/* What a rogue member sends: a one-chunk state in `name`'s name. */
struct forgery {
	const char *name, *addr;
	const char *const *ids; /* workloads claimed, each with a proxy port */
	size_t nids;
	const struct hc_ibrl_identity *signer; /* NULL: unsigned */
	const uint8_t *claimed_pub; /* in the beacon; NULL: the signer's */
	const char *reputation;
};

static uint64_t wall_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static void send_forgery(struct tnode *from, const struct forgery *f)
{
	Cluster__Services__Api__VmSpawnRequest__PortsEntry port =
		CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__PORTS_ENTRY__INIT, *ports[1] = { &port };
	Cluster__Services__Api__VmSpawnRequest req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT;
	Cluster__Services__Api__BeaconMetadata beacon =
		CLUSTER__SERVICES__API__BEACON_METADATA__INIT;
	Cluster__Services__Api__Node node = CLUSTER__SERVICES__API__NODE__INIT;
	hc_pb_state st = CLUSTER__SERVICES__API__NODE_STATE_RESPONSE__INIT;
	hc_pb_workload w[4], *wp[4];
	char sig[HC_IBRL_STATE_SIG_B64_LEN + 1] = "";
	char marker[] = "6d1e2c3b-0000-4000-8000-000000000001_complete";
	uint8_t *buf;
	size_t len;

	assert_true(f->nids <= 4);
	port.key = 80;
	port.value = 8080;
	req.image_ref = (char *)"registry.test/evil:1";
	req.cores = 1;
	req.memory = 64;
	req.ports = ports;
	req.n_ports = 1;
	for (size_t i = 0; i < f->nids; i++) {
		cluster__services__api__workload_state__init(&w[i]);
		w[i].id = (char *)f->ids[i];
		w[i].source_request = &req;
		wp[i] = &w[i];
	}
	beacon.beacon_node_id = (char *)"0000000000000000";
	beacon.reputation_score = (char *)f->reputation;
	beacon.price_per_gb = 0.0001;
	if (f->claimed_pub || f->signer) {
		beacon.node_signature.data = (uint8_t *)(f->claimed_pub ? f->claimed_pub
						       : hc_ibrl_identity_public(f->signer));
		beacon.node_signature.len = HC_IBRL_PUBLIC_LEN;
	}
	node.id = (char *)f->name;
	node.ip = marker;
	st.node = &node;
	st.node_addr = (char *)f->addr;
	st.http_port = 8001;
	st.workloads = wp;
	st.n_workloads = f->nids;
	st.chunk_index = 0;
	st.chunk_count = 1;
	st.state_version = wall_ms() + 1000;
	st.beacon = &beacon;
	if (f->signer)
		assert_int_equal(hc_ibrl_state_sign(f->signer, &(struct hc_ibrl_state_view){
			.node = f->name, .node_addr = f->addr, .http_port = 8001,
			.version = st.state_version, .beacon = &beacon, .workloads = wp,
			.nworkloads = f->nids }, sig), 0);
	st.state_signature = sig;
	buf = hc_cluster_pb_pack(&st.base, &len);
	assert_non_null(buf);
	assert_int_equal(hc_cluster_user_event(from->c, HC_STATE_EVENT, buf, len, false), 0);
	free(buf);
}

static size_t routes_of(struct hc_cluster *c)
{
	struct hc_cluster_desired d;
	size_t n;

	assert_int_equal(hc_cluster_routes_build(c, &d), 0);
	n = d.nroutes;
	hc_cluster_desired_fini(&d);
	return n;
}

static uint64_t rejected(const struct tcluster *tc, int skip, enum ibrl_reject why)
{
	uint64_t n = 0;

	for (int i = 0; i < tc->n; i++)
		n += i == skip ? 0 : tc->nodes[i].c->ibrl_rejected[why];
	return n;
}

static void left_done(void *arg)
{
	*(bool *)arg = true;
}

static bool flag_set(const void *ctx)
{
	return *(const bool *)ctx;
}

/* n0 leaves gracefully (SIGTERM) and its agent is gone; its workload runs
 * on (its runtime keeps it). */
static void leave_and_exit(struct tcluster *tc, int o)
{
	bool left = false;

	hc_cluster_leave(tc->nodes[o].c, left_done, &left);
	assert_true(hc_simnet_run_until(tc->net, flag_set, &left, 30000) >= 0);
	hc_cluster_free(tc->nodes[o].c);
	tc->nodes[o].c = NULL;
	hc_simnet_attach(tc->net, o, NULL);
}

/* The owner restarts (leaves, is back 10 s later, as an upgrade replaces
 * an agent): the others route its workload all along. Then it leaves for
 * good: after the grace its workload is routed nowhere, and not respawned. */
static void test_left_node_keeps_routes_for_a_restart(void **state)
{
	struct tcluster *tc = joined_cluster(3, true);
	struct answer a;

	(void)state;
	spawn_from(tc, 1, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	leave_and_exit(tc, 0);
	for (int t = 0; t < 20; t++) {
		hc_simnet_run_ms(tc->net, 500);
		/* who runs it, as the routes follow it (a stale peer has none) */
		assert_string_equal(hc_cluster_state_owner(tc->nodes[1].c, WL_A), "n0");
		assert_string_equal(hc_cluster_state_owner(tc->nodes[2].c, WL_A), "n0");
	}
	tc->nodes[0].restarted = true;
	node_start(tc, 0, true);
	hc_cluster_local_refresh(tc->nodes[0].c); /* the runtime watch's first report */
	assert_true(hc_simnet_run_until(tc->net, all_alive, tc, 30000) >= 0);
	hc_simnet_run_ms(tc->net, 5000);
	assert_owner_agreed(tc, WL_A, "n0");

	leave_and_exit(tc, 0);
	hc_simnet_run_ms(tc->net, LEFT_GRACE_MS + 5000);
	assert_null(hc_cluster_state_owner(tc->nodes[1].c, WL_A));
	assert_null(hc_cluster_state_owner(tc->nodes[2].c, WL_A));
	assert_int_equal(copies(tc, WL_A), 1); /* n0's runtime only: not respawned */
	tcluster_free(tc);
}

/* n2 claims to be n0 with its own key: every node has n0's key pinned from
 * its real states, so the forgery is dropped everywhere (counted), and
 * n0's workloads, routes and beacon stay as n0 said. */
static void test_rogue_key_for_existing_name(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	static const char *const ids[] = { WL_FORGED };
	struct answer a;
	size_t routes1;

	(void)state;
	spawn_from(tc, 1, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	routes1 = routes_of(tc->nodes[1].c);
	assert_true(hc_cluster_state_peer(tc->nodes[1].c, "n0")->verified);
	for (int k = 0; k < 3; k++) {
		send_forgery(&tc->nodes[2], &(struct forgery){
			.name = "n0", .addr = "10.0.0.1", .ids = ids, .nids = 1,
			.signer = tc->nodes[2].key, .reputation = "9.9" });
		hc_simnet_run_ms(tc->net, 2000);
	}
	assert_true(rejected(tc, 0, IBRL_REJECT_KEY_MISMATCH) >= 1);
	for (int i = 1; i < tc->n; i++) {
		struct peer *p = hc_cluster_state_peer(tc->nodes[i].c, "n0");

		assert_non_null(p);
		assert_true(p->verified);
		assert_int_equal(p->nworkloads, 1);
		assert_string_equal(p->workloads[0]->id, WL_A);
		/* the forged beacon reaches no placement either */
		assert_non_null(p->beacon);
		assert_string_equal(p->beacon->reputation_score, "1.0");
		assert_null(hc_cluster_state_owner(tc->nodes[i].c, WL_FORGED));
	}
	assert_int_equal(routes_of(tc->nodes[1].c), routes1);
	assert_owner_agreed(tc, WL_A, "n0");
	tcluster_free(tc);
}

/* n3 sends states in n1's name claiming n0's workload: unsigned, then with
 * n1's real key in the beacon but its own signature. Accepted, they would
 * make n0 stop its copy (duplicate settling) or keep the others from
 * respawning it when n0 fails (it would seem to run on n1). Neither
 * happens: both are dropped and counted, and the respawn goes ahead. */
static void test_forged_states_for_another_nodes_workloads(void **state)
{
	struct tcluster *tc = joined_cluster(4, true);
	static const char *const ids[] = { WL_A };
	struct copies_check one = { tc, WL_A, 1, 1 };
	uint8_t n1_pub[HC_IBRL_PUBLIC_LEN];
	struct answer a;

	(void)state;
	memcpy(n1_pub, hc_ibrl_identity_public(tc->nodes[1].key), sizeof(n1_pub));
	spawn_from(tc, 3, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_owner_agreed(tc, WL_A, "n0");
	for (int k = 0; k < 3; k++) {
		send_forgery(&tc->nodes[3], &(struct forgery){
			.name = "n1", .addr = "10.0.0.2", .ids = ids, .nids = 1,
			.reputation = "9.9" });
		send_forgery(&tc->nodes[3], &(struct forgery){
			.name = "n1", .addr = "10.0.0.2", .ids = ids, .nids = 1,
			.signer = tc->nodes[3].key, .claimed_pub = n1_pub, .reputation = "9.9" });
		hc_simnet_run_ms(tc->net, 2000);
	}
	assert_true(rejected(tc, 1, IBRL_REJECT_UNSIGNED) >= 1);
	assert_true(rejected(tc, 1, IBRL_REJECT_BAD_SIGNATURE) >= 1);
	assert_true(hc_fakert_has(tc->nodes[0].rt, WL_A));
	assert_int_equal(tc->nodes[0].c->duplicates_stopped, 0);
	for (int i = 0; i < tc->n; i++) {
		struct peer *p = i == 1 ? NULL : hc_cluster_state_peer(tc->nodes[i].c, "n1");

		if (i == 1)
			continue;
		assert_non_null(p);
		assert_int_equal(p->nworkloads, 0);
		assert_string_equal(p->beacon->reputation_score, "1.0");
	}
	assert_owner_agreed(tc, WL_A, "n0");
	/* n0 fails: WL_A is respawned once, as without the forgery */
	hc_simnet_set_down(tc->net, 0, true);
	assert_true(hc_simnet_run_until(tc->net, copies_are, &one, 60000) >= 0);
	assert_int_equal(total_respawns(tc), 1);
	tcluster_free(tc);
}

/* BEACON_ATTEST: n1 asks n0 for a fresh attestation and verifies it
 * against n0's pinned key; an answer replayed for the same nonce, or one
 * for another nonce, is refused. */
struct attest_answer {
	bool done;
	int result;
	char why[256];
};

static void on_attest(void *arg, int result, const char *why)
{
	struct attest_answer *aa = arg;

	aa->done = true;
	aa->result = result;
	snprintf(aa->why, sizeof(aa->why), "%s", why);
}

static bool attest_answered(const void *ctx)
{
	return ((const struct attest_answer *)ctx)->done;
}

static void test_beacon_attest_fresh_and_not_replayed(void **state)
{
	struct tcluster *tc = joined_cluster(3, false);
	struct hc_cluster *c1 = tc->nodes[1].c;
	uint8_t nonce[HC_IBRL_NONCE_LEN], data[HC_IBRL_ATTEST_DATA_LEN];
	Cluster__Services__Api__BeaconAttestation ans;
	struct attest_answer aa = { 0 };
	char why[256];
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(hc_cluster_attest(c1, "n0", on_attest, &aa), 0);
	assert_true(hc_simnet_run_until(tc->net, attest_answered, &aa, 30000) >= 0);
	assert_int_equal(aa.result, 0);
	assert_string_equal(aa.why, "verified");
	assert_int_equal(c1->attests_verified, 1);
	assert_int_equal(tc->nodes[0].c->attests_answered, 1);

	/* an answer as n0 would give it, judged twice: the second is a replay */
	assert_int_equal(hc_ibrl_nonce_new(&c1->nonces, nonce), 0);
	assert_int_equal(hc_ibrl_attest_make(tc->nodes[0].key, "n0", nonce, sizeof(nonce),
					     (uint64_t)time(NULL), data), 0);
	cluster__services__api__beacon_attestation__init(&ans);
	ans.node_id = (char *)"n0";
	ans.attestation_type = (char *)HC_IBRL_ATTEST_TYPE;
	ans.attestation_data.data = data;
	ans.attestation_data.len = sizeof(data);
	buf = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__BEACON_ATTEST, &ans.base,
				 &len);
	assert_non_null(buf);
	assert_int_equal(hc_cluster_attest_judge(c1, "n0", "n2", nonce, buf, len, why,
						 sizeof(why)), -EBADMSG); /* not from n0 */
	assert_int_equal(hc_cluster_attest_judge(c1, "n0", "n0", nonce, buf, len, why,
						 sizeof(why)), 0);
	assert_int_equal(hc_cluster_attest_judge(c1, "n0", "n0", nonce, buf, len, why,
						 sizeof(why)), -EALREADY);
	/* the same answer offered for a fresh nonce */
	assert_int_equal(hc_ibrl_nonce_new(&c1->nonces, nonce), 0);
	assert_int_equal(hc_cluster_attest_judge(c1, "n0", "n0", nonce, buf, len, why,
						 sizeof(why)), -EBADMSG);
	free(buf);
	/* signed by n2's key in n0's name: not the key pinned for n0 */
	assert_int_equal(hc_ibrl_attest_make(tc->nodes[2].key, "n0", nonce, sizeof(nonce),
					     (uint64_t)time(NULL), data), 0);
	buf = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__BEACON_ATTEST, &ans.base,
				 &len);
	assert_int_equal(hc_cluster_attest_judge(c1, "n0", "n0", nonce, buf, len, why,
						 sizeof(why)), -EKEYREJECTED);
	free(buf);
	tcluster_free(tc);
}

/* ---- execution proofs ---- */

struct proofs_answer {
	bool done;
	enum hc_rpc_code code;
	int verdict, reason;
	size_t entries;
	char node[64], head[65];
};

static void on_proofs(void *arg, enum hc_rpc_code code, const char *err,
		      const struct hc_cluster_proofs *a)
{
	struct proofs_answer *pa = arg;

	(void)err;
	assert_false(pa->done);
	pa->done = true;
	pa->code = code;
	if (a) {
		pa->verdict = a->verdict;
		pa->reason = a->reason;
		pa->entries = a->entries;
		snprintf(pa->node, sizeof(pa->node), "%s", a->node);
		snprintf(pa->head, sizeof(pa->head), "%s", a->head);
	}
}

static bool proofs_answered(const void *ctx)
{
	return ((const struct proofs_answer *)ctx)->done;
}

static void verify_on(struct tcluster *tc, int i, const char *id, struct proofs_answer *pa)
{
	memset(pa, 0, sizeof(*pa));
	hc_cluster_proofs(tc->nodes[i].c, id, false, true, on_proofs, pa);
	assert_true(hc_simnet_run_until(tc->net, proofs_answered, pa, 20000) >= 0);
	assert_int_equal(pa->code, HC_RPC_OK);
}

/* Every node's state of the owner carries a proof of id. */
static bool proof_announced(const void *ctx)
{
	const struct owner_check *oc = ctx;

	for (int i = 0; i < oc->tc->n; i++) {
		struct peer *p;
		bool seen = false;

		if (strcmp(oc->tc->nodes[i].name, oc->owner) == 0)
			continue;
		p = hc_cluster_state_peer(oc->tc->nodes[i].c, oc->owner);
		for (size_t k = 0; p && k < p->nworkloads; k++)
			seen |= strcmp(p->workloads[k]->id, oc->id) == 0 && p->workloads[k]->proof &&
				p->workloads[k]->proof->n_metrics == HC_IBRL_METRICS;
		if (!seen)
			return false;
	}
	return true;
}

static int owner_index(struct tcluster *tc, const char *id)
{
	for (int i = 0; i < tc->n; i++)
		if (hc_cluster_local_find(tc->nodes[i].c, id))
			return i;
	fail_msg("nobody runs %s", id);
	return -1;
}

/* Edits the first digit of entry `line`'s cpu_ns in node o's log of id. */
static void tamper(struct tcluster *tc, int o, const char *id, int line)
{
	char path[256], *text, *p;
	size_t len;
	FILE *f;

	assert_int_equal(hc_ibrl_proof_log_read(tc->nodes[o].dir, id, &text, &len), 0);
	for (p = text; line > 1; line--)
		p = strchr(p, '\n') + 1;
	p = strstr(p, " runc ") + 6;
	*p = *p == '9' ? '1' : (char)(*p + 1);
	assert_int_equal(hc_ibrl_proof_log_path(tc->nodes[o].dir, id, path, sizeof(path)), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
	free(text);
}

/* What PROOF_VERIFY answers said. */
struct pv_answers {
	bool done;
	int valid, other;
};

static void on_pv_response(void *arg, const char *from, const uint8_t *payload, size_t len,
			   bool is_ack)
{
	struct pv_answers *pa = arg;
	ProtobufCMessage *inner = NULL;
	Cluster__Services__Api__ClusterMessage *cm =
		hc_cluster_pb_unwrap(payload, len,
				     &cluster__services__api__proof_verification__descriptor, &inner);
	const Cluster__Services__Api__ProofVerification *pv = (const void *)inner;

	(void)from;
	if (is_ack)
		return;
	if (pv && cm->event == CLUSTER__SERVICES__API__CLUSTER_EVENT__PROOF_VERIFY &&
	    strcmp(pv->verification_result, "VALID") == 0 && strcmp(pv->workload_id, WL_A) == 0 &&
	    strlen(pv->proof_hash) == 64)
		pa->valid++;
	else
		pa->other++;
	hc_cluster_pb_free(inner);
	hc_cluster_pb_free(cm);
}

static void on_pv_done(void *arg)
{
	((struct pv_answers *)arg)->done = true;
}

static bool pv_done(const void *ctx)
{
	return ((const struct pv_answers *)ctx)->done;
}

/* PROOF_VERIFY asked of the cluster: every node verifies and answers. */
static void query_proof_verify(struct tcluster *tc, int from, struct pv_answers *pa)
{
	Cluster__Services__Api__ProofVerification pv = CLUSTER__SERVICES__API__PROOF_VERIFICATION__INIT;
	struct hc_gossip_query_params params = { .timeout_ms = 5000 };
	size_t len;
	uint8_t *payload;

	memset(pa, 0, sizeof(*pa));
	pv.workload_id = (char *)WL_A;
	payload = hc_cluster_pb_wrap(CLUSTER__SERVICES__API__CLUSTER_EVENT__PROOF_VERIFY, &pv.base,
				     &len);
	assert_non_null(payload);
	assert_int_equal(hc_cluster_query(tc->nodes[from].c, HC_QUERY_NAME, payload, len, &params,
					  on_pv_response, on_pv_done, pa),
			 0);
	free(payload);
	assert_true(hc_simnet_run_until(tc->net, pv_done, pa, 20000) >= 0);
}

/* A running workload's proofs reach every node's state each period and
 * verify VALID on every node; an agent restart continues the chain; an
 * edited log is INVALID everywhere; the log goes with the workload. */
static void test_proofs_verify_on_every_node(void **state)
{
	struct tcluster *tc = tcluster_new(3);
	struct proofs_answer pa;
	struct owner_check oc = { tc, WL_A, NULL };
	struct pv_answers pva;
	struct answer a;
	char owner[16], path[256];
	size_t before;
	int o;

	(void)state;
	tc->proofs = true;
	proof_tc = tc;
	for (int i = 0; i < tc->n; i++)
		node_start(tc, i, false);
	assert_true(hc_simnet_run_until(tc->net, all_alive, tc, 30000) >= 0);
	assert_true(hc_simnet_run_until(tc->net, all_states_known, tc, 30000) >= 0);
	spawn_from(tc, 1, WL_A, &a);
	assert_int_equal(a.code, HC_RPC_OK);
	o = owner_index(tc, WL_A);
	snprintf(owner, sizeof(owner), "%s", tc->nodes[o].name);
	oc.owner = owner;
	assert_true(hc_simnet_run_until(tc->net, proof_announced, &oc, 20000) >= 0);
	hc_simnet_run_ms(tc->net, 3000);
	assert_true(tc->nodes[o].c->proofs_generated >= 3);
	assert_true(hc_fakert_usage_calls(tc->nodes[o].rt) >= 3);
	for (int i = 0; i < tc->n; i++) {
		verify_on(tc, i, WL_A, &pa);
		assert_int_equal(pa.verdict, HC_IBRL_VALID);
		assert_string_equal(pa.node, owner);
		assert_true(pa.entries >= 3);
		assert_int_equal(strlen(pa.head), 64); /* checked against the announced head */
		assert_int_equal(tc->nodes[i].c->proofs_verified, 1);
	}
	/* the owner naming another key when asked changes nothing: peers check
	 * the chain against the key its states verified with */
	lying_node = o;
	verify_on(tc, (o + 1) % tc->n, WL_A, &pa);
	assert_int_equal(pa.verdict, HC_IBRL_VALID);
	lying_node = -1;
	tc->nodes[(o + 1) % tc->n].c->proofs_verified--; /* the counts below stay as they were */

	query_proof_verify(tc, 2, &pva);
	assert_int_equal(pva.valid, tc->n);
	assert_int_equal(pva.other, 0);

	/* the owner's agent restarts: the chain goes on from its log */
	before = pa.entries;
	hc_fakert_flush(tc->nodes[o].rt);
	hc_cluster_free(tc->nodes[o].c);
	tc->nodes[o].c = NULL;
	hc_simnet_attach(tc->net, o, NULL);
	tc->nodes[o].restarted = true;
	node_start(tc, o, false);
	hc_cluster_local_refresh(tc->nodes[o].c); /* the runtime watch's first report */
	hc_simnet_run_ms(tc->net, 5000);
	assert_true(hc_simnet_run_until(tc->net, all_alive, tc, 30000) >= 0);
	assert_owner_agreed(tc, WL_A, owner);
	/* the workload's counters start again from zero (a new container):
	 * the chain's stay cumulative */
	assert_int_equal(hc_fakert_set_usage(tc->nodes[o].rt, WL_A, &(struct hc_cluster_usage){ 0 }),
			 0);
	hc_simnet_run_ms(tc->net, 3000);
	for (int i = 0; i < tc->n; i++) {
		verify_on(tc, i, WL_A, &pa);
		assert_int_equal(pa.verdict, HC_IBRL_VALID);
		assert_true(pa.entries > before + 3);
	}

	/* an edited entry: INVALID on every node, counted */
	tamper(tc, o, WL_A, 2);
	for (int i = 0; i < tc->n; i++) {
		verify_on(tc, i, WL_A, &pa);
		assert_int_equal(pa.verdict, HC_IBRL_INVALID);
		assert_int_equal(pa.reason, HC_IBRL_HASH_MISMATCH);
		assert_int_equal(tc->nodes[i].c->proofs_invalid[HC_IBRL_HASH_MISMATCH], 1);
	}

	/* stopped: its log is gone; asked again, nobody knows it */
	memset(&a, 0, sizeof(a));
	hc_cluster_stop(tc->nodes[0].c, WL_A, on_stopped, &a);
	assert_true(hc_simnet_run_until(tc->net, answered, &a, 60000) >= 0);
	assert_int_equal(a.code, HC_RPC_OK);
	assert_true(hc_simnet_run_until(tc->net, runtimes_idle, tc, 60000) >= 0);
	assert_int_equal(hc_ibrl_proof_log_path(tc->nodes[o].dir, WL_A, path, sizeof(path)), 0);
	assert_int_equal(hc_ibrl_proof_log_last(tc->nodes[o].dir, WL_A, &(struct hc_ibrl_proof){ 0 }),
			 -ENOENT);
	tcluster_free(tc);
	proof_tc = NULL;
}


/* ---- state by digest and delta ---- */

/* Adds workload k to node i's runtime, as a spawn there would, and has the
 * cluster see it. */
static void add_workload(struct hc_simcluster *sc, int i, int k, char *id)
{
	hc_simcluster_preload(sc, i, k, 1);
	hc_simcluster_wl_id(i, k, id);
	hc_cluster_local_refresh(sc->nodes[i].c);
}

struct known_check {
	const struct hc_simcluster *sc;
	const char *id, *owner;
	int only; /* -1: every started node; else that one */
};

/* Every started node (but the owner) routes id to owner. */
static bool known_everywhere(const void *ctx)
{
	const struct known_check *k = ctx;

	for (int i = 0; i < k->sc->n; i++) {
		const char *o;

		if (!k->sc->nodes[i].c || (k->only >= 0 && i != k->only))
			continue;
		o = hc_cluster_state_owner(k->sc->nodes[i].c, k->id);
		if (!o || strcmp(o, k->owner) != 0)
			return false;
	}
	return true;
}

static struct hc_simcluster *digest_cluster(int n, int started)
{
	struct hc_simcluster *sc = hc_simcluster_new(n, 7);

	for (int i = 0; i < started; i++)
		hc_simcluster_start(sc, i);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_alive, sc, 30000) >= 0);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_states_known, sc, 30000) >= 0);
	return sc;
}

/* The versions of owner's digests among g's events: in its ring (ring)
 * or in its push/pull (!ring), up to max. */
static size_t digest_versions(struct hc_gossip *g, const char *owner, bool ring, uint64_t *v,
			      size_t max)
{
	struct hc_test_push_pull t;
	size_t n = 0;

	assert_int_equal(hc_test_push_pull(g, &t), 0);
	for (size_t i = 0; i < RING; i++) {
		const struct event_slot *rs = &g->events[i];
		const struct hc_gossip_serf_event_slot *ps = &t.pp.slots[i];
		size_t nev = ring ? (rs->used ? rs->n : 0) : (ps->used ? ps->nevents : 0);

		for (size_t k = 0; k < nev; k++) {
			const char *name = ring ? (const char *)rs->events[k].name
						: (const char *)ps->events[k].name.ptr;
			size_t name_len = ring ? rs->events[k].name_len : ps->events[k].name.len;
			const uint8_t *pl = ring ? rs->events[k].payload : ps->events[k].payload.ptr;
			size_t len = ring ? rs->events[k].payload_len : ps->events[k].payload.len;
			Cluster__Services__Api__StateDigest *dg;

			if (name_len != strlen(HC_DIGEST_EVENT) ||
			    memcmp(name, HC_DIGEST_EVENT, name_len) != 0)
				continue;
			dg = cluster__services__api__state_digest__unpack(NULL, len, pl);
			assert_non_null(dg);
			if (strcmp(dg->node, owner) == 0 && n < max)
				v[n++] = dg->state_version;
			cluster__services__api__state_digest__free_unpacked(dg, NULL);
		}
	}
	hc_test_push_pull_fini(&t);
	return n;
}

/* A push/pull carries an owner's newest digest and leaves out the older
 * ones the ring still holds (a receiver needs only the newest), on the
 * owner and on the others alike; a digest newer than any verified one (a
 * forger's, or one whose state is not in yet) counts for nothing. */
static void test_push_pull_newest_digest_per_owner(void **state)
{
	struct hc_simcluster *sc = digest_cluster(3, 3);
	char id[HC_WORKLOAD_ID_LEN + 1];
	struct known_check k = { sc, id, "n0", -1 };
	uint64_t v[64];
	Cluster__Services__Api__StateDigest forged = CLUSTER__SERVICES__API__STATE_DIGEST__INIT;
	const uint8_t *key;
	size_t key_len, len;
	uint64_t version, held;
	uint8_t *buf;

	(void)state;
	for (int i = 0; i < 3; i++) {
		add_workload(sc, 0, i, id);
		assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 5000) >= 0);
	}
	for (int i = 0; i < 2; i++) {
		struct hc_gossip *g = sc->nodes[i].c->gossip;

		held = i ? hc_cluster_state_peer(sc->nodes[i].c, "n0")->version
			 : hc_cluster_delta_recorded_version(sc->nodes[0].c);
		assert_true(digest_versions(g, "n0", true, v, 64) >= 3);
		assert_int_equal(digest_versions(g, "n0", false, v, 64), 1);
		assert_true(v[0] == held);
		/* the others' digests: one each too */
		assert_int_equal(digest_versions(g, "n2", false, v, 64), 1);
	}

	/* n0's name, a version far ahead: not vouched for */
	forged.node = "n0";
	forged.state_version = held + 1000;
	buf = hc_cluster_pb_pack(&forged.base, &len);
	assert_non_null(buf);
	assert_false(hc_cluster_digest_version(HC_DIGEST_EVENT, buf, len, &key, &key_len, &version,
					       sc->nodes[1].c));
	free(buf);
	forged.state_version = held - 1;
	buf = hc_cluster_pb_pack(&forged.base, &len);
	assert_non_null(buf);
	assert_true(hc_cluster_digest_version(HC_DIGEST_EVENT, buf, len, &key, &key_len, &version,
					      sc->nodes[1].c));
	assert_int_equal(key_len, 2);
	assert_memory_equal(key, "n0", 2);
	assert_true(version == held - 1);
	/* not a digest; a truncated one */
	assert_false(hc_cluster_digest_version(HC_STATE_EVENT, buf, len, &key, &key_len, &version,
					       sc->nodes[1].c));
	assert_false(hc_cluster_digest_version(HC_DIGEST_EVENT, buf, len - 1, &key, &key_len,
					       &version, sc->nodes[1].c));
	free(buf);
	hc_simcluster_free(sc);
}

#define BIG_NODE_WORKLOADS 10000
#define SCALE_NODES 20

/* One workload more on a node that runs 10,000 reaches the 19 others as a
 * delta inside the digest: no pull, no chunk, under 10 KiB on the wire per
 * receiver (all of its gossip in that time included), well under a second. */
static void test_state_delta_at_scale(void **state)
{
	struct hc_simcluster *sc = hc_simcluster_new(SCALE_NODES, 7);
	uint64_t rx[SCALE_NODES], pulls = 0, applied = 0, pulls_after = 0, applied_after = 0;
	char id[HC_WORKLOAD_ID_LEN + 1];
	struct known_check k = { sc, id, "n0", -1 };
	int64_t took;

	(void)state;
	sc->period_ms = 5000; /* the agent's: the others' digests are part of the bytes */
	hc_simcluster_preload(sc, 0, 0, BIG_NODE_WORKLOADS);
	for (int i = 0; i < SCALE_NODES; i++)
		hc_simcluster_start(sc, i);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_alive, sc, 30000) >= 0);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_states_known, sc, 30000) >= 0);
	hc_simcluster_wl_id(0, BIG_NODE_WORKLOADS - 1, id);
	assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 30000) >= 0);
	/* past the join's traffic (member lists, the first pulls) */
	hc_simnet_run_ms(sc->net, 12000);
	for (int i = 1; i < SCALE_NODES; i++) {
		struct hc_cluster *c = sc->nodes[i].c;

		assert_int_equal(hc_cluster_state_peer(c, "n0")->nworkloads, BIG_NODE_WORKLOADS);
		assert_int_equal(c->state_bytes_received[STATE_BYTES_CHUNKED], 0);
		rx[i] = sc->nodes[i].rx_bytes;
		pulls += c->pulls;
		applied += c->deltas_applied;
	}
	add_workload(sc, 0, BIG_NODE_WORKLOADS, id);
	took = hc_simnet_run_until(sc->net, known_everywhere, &k, 10000);
	assert_true(took >= 0 && took < 1000);
	for (int i = 1; i < SCALE_NODES; i++) {
		struct hc_cluster *c = sc->nodes[i].c;

		assert_true(sc->nodes[i].rx_bytes - rx[i] < 10 * 1024);
		assert_int_equal(hc_cluster_state_peer(c, "n0")->nworkloads,
				 BIG_NODE_WORKLOADS + 1);
		/* checked by the set hash kept from the state before */
		assert_non_null(hc_cluster_state_peer(c, "n0")->set);
		pulls_after += c->pulls;
		applied_after += c->deltas_applied;
	}
	assert_int_equal(pulls_after, pulls); /* nobody pulled */
	assert_true(applied_after - applied >= SCALE_NODES - 1);
	hc_simcluster_free(sc);
}

/* Digests as a previous release sends them (no set hash's sum): the delta
 * is still applied, checked by workloads_hash and the signature over the
 * whole state; once the owner sends sums, receivers keep its set hash. */
static void test_state_previous_release_digests(void **state)
{
	struct hc_simcluster *sc = digest_cluster(3, 3);
	char id[HC_WORKLOAD_ID_LEN + 1];
	struct known_check k = { sc, id, "n0", -1 };
	uint64_t applied[3];

	(void)state;
	sc->nodes[0].c->digests_unsummarized = true;
	for (int i = 1; i < 3; i++)
		applied[i] = sc->nodes[i].c->deltas_applied;
	add_workload(sc, 0, 0, id);
	assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 5000) >= 0);
	for (int i = 1; i < 3; i++) {
		struct peer *p = hc_cluster_state_peer(sc->nodes[i].c, "n0");

		assert_true(sc->nodes[i].c->deltas_applied > applied[i]);
		assert_null(p->set);
		assert_true(p->verified);
	}
	sc->nodes[0].c->digests_unsummarized = false;
	add_workload(sc, 0, 1, id);
	assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 5000) >= 0);
	for (int i = 1; i < 3; i++) {
		struct peer *p = hc_cluster_state_peer(sc->nodes[i].c, "n0");

		assert_non_null(p->set);
		assert_true(p->verified);
		assert_int_equal(p->nworkloads, 2);
	}
	hc_simcluster_free(sc);
}

struct digest_sent_check {
	const struct hc_cluster *c;
	uint64_t before;
};

static bool digest_sent(const void *ctx)
{
	const struct digest_sent_check *d = ctx;

	return d->c->digests_sent > d->before;
}

/* The bytes of the digest node i sends for one workload more. */
static uint64_t change_digest_len(struct hc_simcluster *sc, int i)
{
	struct hc_cluster *c = sc->nodes[i].c;
	struct digest_sent_check d = { c, c->digests_sent };
	uint64_t bytes = c->state_bytes_sent[STATE_BYTES_DIGEST];
	char id[HC_WORKLOAD_ID_LEN + 1];

	add_workload(sc, i, 0, id);
	assert_true(hc_simnet_run_until(sc->net, digest_sent, &d, 5000) >= 0);
	assert_int_equal(c->digests_sent, d.before + 1);
	return c->state_bytes_sent[STATE_BYTES_DIGEST] - bytes;
}

/* The whole state's signature (field 7, about 90 bytes) goes in a
 * broadcast digest only while a member may be of a previous release. */
static void test_state_whole_signature_only_for_previous_release(void **state)
{
	struct hc_simcluster *sc = digest_cluster(3, 3);
	uint64_t all_new, mixed;

	(void)state;
	all_new = change_digest_len(sc, 1);
	hc_simcluster_free(sc);

	/* n0 sends digests as the previous release did, from its start */
	sc = hc_simcluster_new(3, 7);
	hc_simcluster_start(sc, 0);
	sc->nodes[0].c->digests_unsummarized = true;
	hc_simcluster_start(sc, 1);
	hc_simcluster_start(sc, 2);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_alive, sc, 30000) >= 0);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_states_known, sc, 30000) >= 0);
	assert_false(hc_cluster_state_peer(sc->nodes[1].c, "n0")->summarizes);
	assert_true(hc_cluster_state_peer(sc->nodes[1].c, "n2")->summarizes);
	mixed = change_digest_len(sc, 1);
	assert_true(mixed >= all_new + HC_IBRL_STATE_SIG_B64_LEN);
	hc_simcluster_free(sc);
}

/* n2 misses n0's digests: once they reach it again, the next one does not
 * fit its copy and it pulls what changed since its version (a few changes:
 * the delta from n0's change log) or, when it missed more versions than
 * the log keeps, the whole state. */
static void test_state_missed_deltas_pulled(void **state)
{
	struct hc_simcluster *sc = digest_cluster(3, 3);
	struct hc_cluster *c2 = sc->nodes[2].c;
	char id[HC_WORKLOAD_ID_LEN + 1];
	struct known_check k = { sc, id, "n0", 2 };
	uint64_t pulls = c2->pulls, full = c2->full_states_pulled;

	(void)state;
	sc->nodes[2].drop_digests = true;
	add_workload(sc, 0, 0, id);
	hc_simnet_run_ms(sc->net, 300);
	add_workload(sc, 0, 1, id);
	hc_simnet_run_ms(sc->net, 500);
	assert_null(hc_cluster_state_owner(c2, id));
	sc->nodes[2].drop_digests = false;
	assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 5000) >= 0);
	assert_true(c2->pulls > pulls);
	assert_int_equal(c2->full_states_pulled, full); /* a delta was enough */
	assert_int_equal(hc_cluster_state_peer(c2, "n0")->nworkloads, 2);

	/* more changes missed than the log holds: the whole state */
	sc->nodes[2].drop_digests = true;
	for (int i = 2; i < 2 + 70; i++) {
		add_workload(sc, 0, i, id);
		hc_simnet_run_ms(sc->net, 20);
	}
	hc_simnet_run_ms(sc->net, 300);
	sc->nodes[2].drop_digests = false;
	assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 5000) >= 0);
	assert_true(c2->full_states_pulled > full);
	assert_int_equal(hc_cluster_state_peer(c2, "n0")->nworkloads, 72);
	assert_true(hc_cluster_state_peer(c2, "n0")->verified);
	hc_simcluster_free(sc);
}

static bool n4_knows_all(const void *ctx)
{
	const struct hc_simcluster *sc = ctx;
	struct hc_cluster *c = sc->nodes[4].c;
	char id[HC_WORKLOAD_ID_LEN + 1];

	for (int i = 0; i < 4; i++) {
		struct peer *p = hc_cluster_state_peer(c, sc->nodes[i].name);

		hc_simcluster_wl_id(i, 99, id);
		if (!p || p->nworkloads != 100 || !hc_cluster_state_owner(c, id))
			return false;
	}
	return true;
}

/* A node joining a cluster pulls every member's state (the members send
 * their digests when it joins): all routes, not one chunk. */
static void test_state_join_pulls_every_member(void **state)
{
	struct hc_simcluster *sc = hc_simcluster_new(5, 7);
	struct hc_cluster *c4;
	int64_t took;

	(void)state;
	for (int i = 0; i < 4; i++)
		hc_simcluster_preload(sc, i, 0, 100);
	for (int i = 0; i < 4; i++)
		hc_simcluster_start(sc, i);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_states_known, sc, 30000) >= 0);
	hc_simnet_run_ms(sc->net, 2000);
	hc_simcluster_start(sc, 4);
	c4 = sc->nodes[4].c;
	took = hc_simnet_run_until(sc->net, n4_knows_all, sc, 10000);
	assert_true(took >= 0 && took < 3000);
	assert_true(c4->pulls >= 4);
	assert_true(c4->full_states_pulled >= 4);
	assert_int_equal(c4->state_bytes_received[STATE_BYTES_CHUNKED], 0);
	for (int i = 0; i < 4; i++)
		assert_true(hc_cluster_state_peer(c4, sc->nodes[i].name)->verified);
	hc_simcluster_free(sc);
}

/* How a forged digest in n0's name is made. */
struct forged_digest {
	const struct hc_ibrl_identity *signer; /* NULL: unsigned */
	bool summary;	  /* with a set hash's sum and a v2 signature (this release's) */
	bool delta;	  /* carries the added workload as a delta on the copy held */
	uint64_t ahead;	  /* its version: the one held plus this */
};

/* A digest in n0's name adding a workload, count and hashes made to match
 * (with the delta inline, or none: a receiver must pull to see it),
 * signed as f says. */
static void forge_digest(struct hc_simcluster *sc, int to, const struct forged_digest *f)
{
	struct hc_cluster *c = sc->nodes[to].c;
	struct peer *p = hc_cluster_state_peer(c, "n0");
	Cluster__Services__Api__StateDigest dg = CLUSTER__SERVICES__API__STATE_DIGEST__INIT;
	hc_pb_workload extra = CLUSTER__SERVICES__API__WORKLOAD_STATE__INIT, *up = &extra;
	hc_pb_workload **all = calloc(p->nworkloads + 1, sizeof(*all));
	char sig[HC_IBRL_STATE_SIG_B64_LEN + 1] = "";
	uint8_t sum[HC_IBRL_DIGEST_LEN];
	struct hc_ibrl_set_hash set;
	struct hc_ibrl_state_view v;
	uint8_t *buf;
	size_t len;

	assert_non_null(all);
	extra.id = (char *)HC_SIMCLUSTER_TAMPERED_ID;
	if (p->nworkloads)
		memcpy(all, p->workloads, p->nworkloads * sizeof(*all));
	all[p->nworkloads] = &extra;
	dg.node = (char *)"n0";
	dg.node_addr = p->node_addr;
	dg.http_port = p->http_port;
	dg.state_version = p->version + f->ahead;
	dg.beacon = p->beacon; /* n0's key */
	dg.workload_count = (uint32_t)p->nworkloads + 1;
	dg.workloads_hash = hc_cluster_workloads_hash(all, p->nworkloads + 1);
	if (f->delta) {
		dg.base_version = p->version;
		dg.workloads = &up;
		dg.n_workloads = 1;
	}
	v = (struct hc_ibrl_state_view){ .node = "n0", .node_addr = p->node_addr,
					 .http_port = p->http_port, .version = dg.state_version,
					 .beacon = p->beacon, .workloads = all,
					 .nworkloads = p->nworkloads + 1 };
	if (f->summary) {
		assert_int_equal(hc_ibrl_set_hash_of(&set, all, p->nworkloads + 1), 0);
		assert_int_equal(hc_ibrl_set_hash_sum(&set, sum), 0);
		dg.workloads_sum = (ProtobufCBinaryData){ sizeof(sum), sum };
		v.workloads_sum = sum;
	}
	if (f->signer)
		assert_int_equal(hc_ibrl_state_sign(f->signer, &v, sig), 0);
	if (f->summary)
		dg.state_signature_v2 = sig;
	else
		dg.state_signature = sig;
	buf = hc_cluster_pb_pack(&dg.base, &len);
	assert_non_null(buf);
	hc_cluster_state_on_event(c, HC_DIGEST_EVENT, buf, len);
	free(buf);
	free(all);
}

/* Forged digests and a pulled state that does not verify are refused and
 * counted; the workload they add is routed nowhere. A forged digest that
 * carries its sum is judged before any pull, so it makes no node pull. */
static void test_state_forged_digest_and_pull_refused(void **state)
{
	struct hc_simcluster *sc = digest_cluster(4, 3);
	struct hc_cluster *c1 = sc->nodes[1].c, *c2 = sc->nodes[2].c, *c3;
	uint64_t version = hc_cluster_state_peer(c1, "n0")->version, pulls = c1->pulls;
	uint64_t pulls2;
	const struct hc_ibrl_identity *other = sc->nodes[2].key;

	(void)state;
	forge_digest(sc, 1, &(struct forged_digest){ NULL, false, true, 1 });
	assert_int_equal(c1->ibrl_rejected[IBRL_REJECT_UNSIGNED], 1);
	forge_digest(sc, 1, &(struct forged_digest){ other, false, true, 1 });
	assert_int_equal(c1->ibrl_rejected[IBRL_REJECT_BAD_SIGNATURE], 1);
	forge_digest(sc, 1, &(struct forged_digest){ other, true, true, 1 });
	assert_int_equal(c1->ibrl_rejected[IBRL_REJECT_BAD_SIGNATURE], 2);
	forge_digest(sc, 1, &(struct forged_digest){ NULL, true, true, 1 });
	assert_int_equal(c1->ibrl_rejected[IBRL_REJECT_UNSIGNED], 2);
	assert_null(hc_cluster_state_owner(c1, HC_SIMCLUSTER_TAMPERED_ID));
	assert_int_equal(hc_cluster_state_peer(c1, "n0")->version, version);
	assert_int_equal(c1->pulls, pulls); /* its copy was right: nothing to pull */
	assert_int_equal(c1->pulls_refused, 0);

	/* without the delta, a receiver would have to pull to see it: the
	 * summary's signature is checked first, and nothing is pulled */
	pulls2 = c2->pulls;
	forge_digest(sc, 1, &(struct forged_digest){ other, true, false, 1 });
	forge_digest(sc, 1, &(struct forged_digest){ NULL, true, false, 2 });
	assert_int_equal(c1->pulls_refused, 2);
	assert_int_equal(c1->ibrl_rejected[IBRL_REJECT_BAD_SIGNATURE], 3);
	assert_int_equal(c1->ibrl_rejected[IBRL_REJECT_UNSIGNED], 3);
	assert_int_equal(c1->pulls, pulls);
	/* n1 pulls no more than n2, which saw no forgery (n0's own digests
	 * may make both pull meanwhile) */
	hc_simnet_run_ms(sc->net, 2000);
	assert_int_equal(c1->pulls - pulls, c2->pulls - pulls2);
	assert_null(hc_cluster_state_owner(c1, HC_SIMCLUSTER_TAMPERED_ID));

	/* n3 joins and pulls n0's state, which n0 serves with a workload more */
	sc->nodes[0].serve = HC_SIMCLUSTER_SERVE_TAMPER;
	hc_simcluster_start(sc, 3);
	c3 = sc->nodes[3].c;
	hc_simnet_run_ms(sc->net, 3000);
	assert_true(c3->pull_failures[PULL_FAIL_REJECTED] >= 1);
	assert_true(c3->ibrl_rejected[IBRL_REJECT_BAD_SIGNATURE] >= 1);
	assert_null(hc_cluster_state_peer(c3, "n0"));
	assert_null(hc_cluster_state_owner(c3, HC_SIMCLUSTER_TAMPERED_ID));
	assert_non_null(hc_cluster_state_peer(c3, "n1")); /* honest owners' states came */
	hc_simcluster_free(sc);
}

/* Digests of a previous release (no sum: not checkable before a pull)
 * naming ever newer versions, one every 100 ms for 3 s: each may ask for
 * a pull (the old bound, one pull in flight per owner, let n1 pull after
 * every one), but n1 pulls n0 at most once per PULL_MIN_INTERVAL_MS (1 s),
 * and keeps n0's real state. */
static void test_state_pulls_rate_limited_per_owner(void **state)
{
	struct hc_simcluster *sc = digest_cluster(3, 3);
	struct hc_cluster *c1 = sc->nodes[1].c;
	uint64_t pulls;

	(void)state;
	hc_simnet_run_ms(sc->net, 2000); /* past the join's pulls */
	pulls = c1->pulls;
	for (uint64_t k = 1; k <= 30; k++) {
		forge_digest(sc, 1, &(struct forged_digest){ NULL, false, false, 1000 * k });
		hc_simnet_run_ms(sc->net, 100);
	}
	assert_true(c1->pulls - pulls >= 2);  /* they could not be told from real ones */
	assert_true(c1->pulls - pulls <= 4);  /* at 0, 1, 2, 3 s at most */
	assert_true(hc_cluster_state_peer(c1, "n0")->verified);
	assert_null(hc_cluster_state_owner(c1, HC_SIMCLUSTER_TAMPERED_ID));
	hc_simcluster_free(sc);
}

/* Owners that stall, answer 17 MiB or garbage, or refuse: every pull ends
 * (the stalled one at its deadline), each counted by reason, and the
 * honest owner's state still comes. */
static void test_state_bad_owners_bounded(void **state)
{
	struct hc_simcluster *sc = digest_cluster(5, 4);
	struct hc_cluster *c4;

	(void)state;
	sc->nodes[0].serve = HC_SIMCLUSTER_SERVE_STALL;
	sc->nodes[1].serve = HC_SIMCLUSTER_SERVE_HUGE;
	sc->nodes[2].serve = HC_SIMCLUSTER_SERVE_GARBAGE;
	hc_simcluster_start(sc, 4);
	c4 = sc->nodes[4].c;
	hc_simnet_run_ms(sc->net, 12000);
	assert_true(c4->pull_failures[PULL_FAIL_TIMEOUT] >= 1);
	assert_true(c4->pull_failures[PULL_FAIL_TOO_LARGE] >= 1);
	assert_true(c4->pull_failures[PULL_FAIL_MALFORMED] >= 1);
	assert_null(hc_cluster_state_peer(c4, "n0"));
	assert_null(hc_cluster_state_peer(c4, "n1"));
	assert_null(hc_cluster_state_peer(c4, "n2"));
	assert_non_null(hc_cluster_state_peer(c4, "n3"));
	/* the stalled owner blocked nobody else's pulls */
	assert_true(hc_cluster_state_peer(sc->nodes[3].c, "n4") != NULL);
	sc->nodes[1].serve = HC_SIMCLUSTER_SERVE_REFUSE;
	hc_simnet_run_ms(sc->net, 3000);
	assert_true(c4->pull_failures[PULL_FAIL_REFUSED] >= 1);
	hc_simcluster_free(sc);
}

/* n2 knows no digests (chunked mode, digests lost on the way to it, as an
 * upstream node ignores them): once it has sent none for the grace
 * periods, the others send upstream's chunks too, and understand its own. */
static void test_state_mixed_with_chunked_node(void **state)
{
	struct hc_simcluster *sc = hc_simcluster_new(3, 7);
	char id[HC_WORKLOAD_ID_LEN + 1];
	struct known_check k = { sc, id, "n0", -1 };

	(void)state;
	sc->nodes[2].mode = HC_CLUSTER_STATE_CHUNKED;
	sc->nodes[2].drop_digests = true;
	for (int i = 0; i < 3; i++)
		hc_simcluster_start(sc, i);
	assert_true(hc_simnet_run_until(sc->net, hc_simcluster_all_states_known, sc, 30000) >= 0);
	assert_int_equal(sc->nodes[2].c->digests_sent, 0);
	add_workload(sc, 0, 0, id);
	assert_true(hc_simnet_run_until(sc->net, known_everywhere, &k, 5000) >= 0);
	assert_true(sc->nodes[0].c->state_bytes_sent[STATE_BYTES_CHUNKED] > 0);
	assert_true(sc->nodes[2].c->state_bytes_received[STATE_BYTES_CHUNKED] > 0);
	assert_true(hc_cluster_state_peer(sc->nodes[0].c, "n2")->verified);
	assert_true(sc->nodes[1].c->digests_sent > 0);
	hc_simcluster_free(sc);
}

static bool n0_sent_chunks(const void *arg)
{
	const struct hc_simcluster *sc = arg;

	return sc->nodes[0].c->state_bytes_sent[STATE_BYTES_CHUNKED] > 0;
}

/* A node of a previous release (chunks only) joining nodes that send only
 * digests routes nothing of theirs until their chunks come: they send them
 * a period after its first state, not at their next refresh after the
 * grace a silent member gets (a previous release forgets a node that
 * leaves, and takes its workloads back only from chunks). */
static void test_state_chunks_soon_for_a_previous_release(void **state)
{
	struct hc_simcluster *sc = hc_simcluster_new(3, 11);
	int64_t took;

	(void)state;
	sc->nodes[2].mode = HC_CLUSTER_STATE_CHUNKED;
	sc->nodes[2].drop_digests = true;
	hc_simcluster_start(sc, 0);
	hc_simcluster_start(sc, 1);
	hc_simnet_run_ms(sc->net, 20 * sc->period_ms);
	assert_int_equal(sc->nodes[0].c->state_bytes_sent[STATE_BYTES_CHUNKED], 0);
	hc_simcluster_start(sc, 2);
	took = hc_simnet_run_until(sc->net, n0_sent_chunks, sc, 30000);
	/* its first state within a few hops; then one period and a tick */
	assert_true(took >= 0 && took <= 3 * (int64_t)sc->period_ms);
	hc_simcluster_free(sc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_placement_tries_next_node_after_failure),
		cmocka_unit_test(test_placement_fails_when_every_node_fails),
		cmocka_unit_test(test_spawn_moves_on_when_its_node_fails),
		cmocka_unit_test(test_slow_spawn_is_not_taken_for_lost),
		cmocka_unit_test(test_unacknowledged_spawn_moves_on),
		cmocka_unit_test(test_policy_explain_matches_spawn),
		cmocka_unit_test(test_policy_enforce_fails_with_reasons),
		cmocka_unit_test(test_policy_replicas_anti_affinity),
		cmocka_unit_test(test_policy_query_answered),
		cmocka_unit_test(test_policy_uses_beacons_and_probes),
		cmocka_unit_test(test_respawn_happens_once_cluster_wide),
		cmocka_unit_test(test_respawn_chosen_node_fails_too),
		cmocka_unit_test(test_no_respawn_when_disabled),
		cmocka_unit_test(test_no_respawn_of_restart_never),
		cmocka_unit_test(test_restart_policies),
		cmocka_unit_test(test_duplicate_settles_to_one_copy),
		cmocka_unit_test(test_state_chunks_reassemble_in_any_order),
		cmocka_unit_test(test_stop_running_workload),
		cmocka_unit_test(test_stop_fails_when_its_owner_fails),
		cmocka_unit_test(test_failed_stop_is_retried_not_restarted),
		cmocka_unit_test(test_owed_stop_survives_agent_restart),
		cmocka_unit_test(test_left_node_keeps_routes_for_a_restart),
		cmocka_unit_test(test_stop_while_spawning),
		cmocka_unit_test(test_h2c_port_routed_as_h2c_everywhere),
		cmocka_unit_test(test_last_runs_routes_carried_until_states_come),
		cmocka_unit_test(test_logs_from_the_owners_runtime),
		cmocka_unit_test(test_logs_endpoint_of_upstream_nodes),
		cmocka_unit_test(test_rogue_key_for_existing_name),
		cmocka_unit_test(test_forged_states_for_another_nodes_workloads),
		cmocka_unit_test(test_beacon_attest_fresh_and_not_replayed),
		cmocka_unit_test(test_proofs_verify_on_every_node),
		cmocka_unit_test(test_state_delta_at_scale),
		cmocka_unit_test(test_state_previous_release_digests),
		cmocka_unit_test(test_state_whole_signature_only_for_previous_release),
		cmocka_unit_test(test_state_missed_deltas_pulled),
		cmocka_unit_test(test_push_pull_newest_digest_per_owner),
		cmocka_unit_test(test_state_join_pulls_every_member),
		cmocka_unit_test(test_state_forged_digest_and_pull_refused),
		cmocka_unit_test(test_state_pulls_rate_limited_per_owner),
		cmocka_unit_test(test_state_bad_owners_bounded),
		cmocka_unit_test(test_state_mixed_with_chunked_node),
		cmocka_unit_test(test_state_chunks_soon_for_a_previous_release),
	};

	hc_log_set_level(getenv("HC_TEST_VERBOSE") ? (enum hc_log_level)atoi(getenv("HC_TEST_VERBOSE")) : HC_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
