/*
 * Any node reads and verifies any workload's proof chain: its own from the
 * state dir, another node's from that node's HTTP API (/proofs?id=&local=1,
 * with this node's API token, as logs.c fetches logs). The chain is checked
 * here, never by the owner: against the owner's key and the head its state
 * announced over gossip.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "httpc/httpc.h"
#include "log/log.h"

struct proofs_job {
	struct job job;
	struct hc_cluster_op *op; /* whether cancelled */
	hc_cluster_proofs_done *done;
	void *arg;
	bool owns_arg; /* arg is freed if done never runs (cancelled) */
	bool verify;
	char id[HC_WORKLOAD_ID_LEN + 1];
	char node[256];
	/* remote: where the owner serves its HTTP API */
	char host[64];
	uint16_t port;
	char token[HC_AUTH_TOKEN_MAX + 1];
	/* the answer */
	enum hc_rpc_code code;
	char err[512];
	char *log;
	size_t len;
	bool has_key;
	bool key_pinned; /* key is the one this node verifies the owner's states with */
	uint8_t key[HC_IBRL_PUBLIC_LEN];
	char head[2 * HC_IBRL_HASH_LEN + 1];
	struct hc_ibrl_chain_report rep;
};

static const char *const reason_words[HC_IBRL_REASONS] = {
	[HC_IBRL_OK] = "",
	[HC_IBRL_MALFORMED] = "a line that is not a proof entry",
	[HC_IBRL_WRONG_WORKLOAD] = "an entry of another workload",
	[HC_IBRL_WRONG_KEY] = "signed by another key than the node's",
	[HC_IBRL_HASH_MISMATCH] = "its fields do not match its hash (edited)",
	[HC_IBRL_BAD_SIGNATURE] = "its signature does not verify",
	[HC_IBRL_BROKEN_CHAIN] = "it does not follow the entry before (entries reordered or removed)",
	[HC_IBRL_REPLAYED] = "an older entry again, out of its place",
	[HC_IBRL_TIMESTAMP] = "its time is not after the entry before's",
	[HC_IBRL_COUNTER] = "a counter went down",
	[HC_IBRL_TRUNCATED] = "entries missing: the chain's start, or the head its node announced",
	[HC_IBRL_NO_PROOFS] = "no proofs yet",
	[HC_IBRL_NO_KEY] = "no key known for the node",
};

/* ---- reading the chain ---- */

static void local_read(struct proofs_job *pj)
{
	int r = hc_ibrl_proof_log_read(pj->job.c->cfg.state_dir, pj->id, &pj->log, &pj->len);

	if (r == -ENOENT)
		r = 0; /* no proof yet: an empty chain */
	if (r < 0) {
		pj->code = r == -ENOMEM ? HC_RPC_RESOURCE_EXHAUSTED : HC_RPC_INTERNAL;
		snprintf(pj->err, sizeof(pj->err), "cannot read the proof log of %s: %s", pj->id,
			 strerror(-r));
	}
}

/* {"response": {"log": "...", "node_key": "<base64>"}} or {"error": "..."}. */
static void read_answer(struct proofs_job *pj, const struct hc_httpc_response *resp)
{
	json_t *doc = json_loadb(resp->body, resp->body_len, 0, NULL);
	json_t *r = json_object_get(doc, "response"), *log = json_object_get(r, "log");
	json_t *key = json_object_get(r, "node_key"), *e;
	size_t klen = 0;

	if (resp->status == 200 && json_is_string(log)) {
		pj->len = json_string_length(log);
		pj->log = malloc(pj->len + 1);
		if (pj->log)
			memcpy(pj->log, json_string_value(log), pj->len + 1);
		else
			pj->code = HC_RPC_RESOURCE_EXHAUSTED;
		/* the owner's word for its key only when none is pinned for it */
		if (!pj->key_pinned)
			pj->has_key = json_is_string(key) &&
				      hc_ibrl_b64_decode(json_string_value(key), pj->key,
							 sizeof(pj->key), &klen) == 0 &&
				      klen == HC_IBRL_PUBLIC_LEN;
	} else {
		e = json_object_get(doc, "error");
		pj->code = hc_cluster_owner_refused(resp->status, json_string_value(e), pj->err,
						    sizeof(pj->err));
	}
	json_decref(doc);
}

static void remote_read(struct proofs_job *pj)
{
	struct hc_httpc_response resp;
	char path[128];

	snprintf(path, sizeof(path), "/proofs?id=%s&local=1", pj->id);
	pj->code = hc_cluster_owner_get(pj->host, pj->port, pj->token, path, NULL, "proofs", &resp,
					pj->err, sizeof(pj->err));
	if (pj->code != HC_RPC_OK)
		return;
	read_answer(pj, &resp);
	free(resp.body);
}

static void check(struct proofs_job *pj)
{
	uint8_t head[HC_IBRL_HASH_LEN];
	bool has_head = pj->head[0] && hc_ibrl_hash_parse(pj->head, head) == 0;

	if (pj->verify && pj->code == HC_RPC_OK)
		hc_ibrl_chain_verify(pj->log ? pj->log : "", pj->len, pj->id,
				     pj->has_key ? pj->key : NULL, has_head ? head : NULL, &pj->rep);
}

static void local_run(struct job *j)
{
	struct proofs_job *pj = (struct proofs_job *)j;

	local_read(pj);
	check(pj);
}

static void remote_run(struct job *j)
{
	struct proofs_job *pj = (struct proofs_job *)j;
	struct hc_cluster *c = j->c;
	uint8_t said[HC_IBRL_PUBLIC_LEN];
	int r;

	if (!c->proofs_fetch_hook) {
		remote_read(pj);
	} else if ((r = c->proofs_fetch_hook(c, pj->node, pj->id, &pj->log, &pj->len, said)) < 0) {
		pj->code = HC_RPC_UNAVAILABLE;
		snprintf(pj->err, sizeof(pj->err), "cannot fetch proofs from %s: %s", pj->node,
			 strerror(-r));
	} else if (!pj->key_pinned) {
		memcpy(pj->key, said, sizeof(said));
		pj->has_key = true;
	}
	check(pj);
}

/* ---- the operation ---- */

static void count(struct hc_cluster *c, const struct hc_ibrl_chain_report *rep)
{
	if (rep->verdict == HC_IBRL_VALID)
		c->proofs_verified++;
	else if (rep->verdict == HC_IBRL_INVALID && rep->reason < HC_IBRL_REASONS)
		c->proofs_invalid[rep->reason]++;
	else
		c->proofs_unknown++;
}

static void fill_answer(struct proofs_job *pj, struct hc_cluster_proofs *a)
{
	memset(a, 0, sizeof(*a));
	a->id = pj->id;
	a->node = pj->node;
	a->log = pj->log ? pj->log : "";
	a->len = pj->len;
	a->has_key = pj->has_key;
	memcpy(a->node_key, pj->key, sizeof(a->node_key));
	snprintf(a->head, sizeof(a->head), "%s", pj->head);
	if (!pj->verify)
		return;
	if (pj->code != HC_RPC_OK) { /* could not read it: no verdict */
		a->verdict = HC_IBRL_UNKNOWN;
		snprintf(a->detail, sizeof(a->detail), "%.500s", pj->err);
		return;
	}
	a->verdict = (int)pj->rep.verdict;
	a->reason = (int)pj->rep.reason;
	a->entries = pj->rep.entries;
	a->line = pj->rep.line;
	if (pj->rep.verdict == HC_IBRL_INVALID && pj->rep.line)
		snprintf(a->detail, sizeof(a->detail), "entry %zu: %s", pj->rep.line,
			 reason_words[pj->rep.reason]);
	else
		snprintf(a->detail, sizeof(a->detail), "%s", reason_words[pj->rep.reason]);
}

static void proofs_done(struct job *j)
{
	struct proofs_job *pj = (struct proofs_job *)j;
	struct hc_cluster_op *op = pj->op;
	struct hc_cluster_proofs a;

	if (!op->cancelled && !j->c->closing) {
		fill_answer(pj, &a);
		if (pj->verify) {
			if (pj->code != HC_RPC_OK)
				j->c->proofs_unknown++;
			else
				count(j->c, &pj->rep);
			pj->done(pj->arg, HC_RPC_OK, NULL, &a);
		} else {
			pj->done(pj->arg, pj->code, pj->code == HC_RPC_OK ? NULL : pj->err,
				 pj->code == HC_RPC_OK ? &a : NULL);
		}
	} else if (pj->owns_arg) {
		free(pj->arg);
	}
	op->finished = true;
	hc_cluster_op_release_if_idle(op);
	free(pj->log);
	explicit_bzero(pj->token, sizeof(pj->token));
	free(pj);
}

/* The head the owner's state announces for id; "" if none. */
static void announced_head(const struct peer *p, const char *id, char *out, size_t size)
{
	out[0] = '\0';
	for (size_t i = 0; p && i < p->nworkloads; i++)
		if (strcmp(p->workloads[i]->id, id) == 0 && p->workloads[i]->proof &&
		    p->workloads[i]->proof->proof_hash)
			snprintf(out, size, "%s", p->workloads[i]->proof->proof_hash);
}

/* The chain must be signed by the key the owner's states verified with
 * (pinned on first use or from --trusted-keys), not by whatever key the
 * owner names when asked. */
static void pin_owner_key(const struct peer *p, struct proofs_job *pj)
{
	const uint8_t *pub = p->verified && p->beacon ? hc_ibrl_beacon_public(p->beacon) : NULL;

	if (!pub)
		return;
	memcpy(pj->key, pub, HC_IBRL_PUBLIC_LEN);
	pj->has_key = pj->key_pinned = true;
}

/* Where id's chain is: here (0), at peer *p (0), or nowhere (-errno and
 * done told why). */
static int locate(struct hc_cluster *c, const char *id, bool local_only, struct peer **p,
		  struct proofs_job *pj)
{
	struct local_wl *l = hc_cluster_local_find(c, id);
	const char *owner;

	*p = NULL;
	if (l || local_only) {
		snprintf(pj->node, sizeof(pj->node), "%s",
			 c->gossip ? hc_gossip_name(c->gossip) : c->node_id);
		if (c->cfg.identity) {
			memcpy(pj->key, hc_ibrl_identity_public(c->cfg.identity), HC_IBRL_PUBLIC_LEN);
			pj->has_key = true;
		}
		if (l)
			hc_cluster_proofs_head(l, pj->head);
		return 0;
	}
	owner = hc_cluster_state_owner(c, id);
	*p = owner ? hc_cluster_state_peer(c, owner) : NULL;
	if (!*p) {
		snprintf(pj->err, sizeof(pj->err), "no workload %s in the cluster", id);
		return -ENOENT;
	}
	snprintf(pj->node, sizeof(pj->node), "%s", owner);
	if (!c->proofs_fetch_hook && (!(*p)->node_addr || !*(*p)->node_addr || !(*p)->http_port)) {
		snprintf(pj->err, sizeof(pj->err), "the node running %s does not serve its proofs",
			 id);
		return -EHOSTUNREACH;
	}
	snprintf(pj->host, sizeof(pj->host), "%s", (*p)->node_addr);
	pj->port = (uint16_t)(*p)->http_port;
	snprintf(pj->token, sizeof(pj->token), "%s", c->api_token);
	announced_head(*p, id, pj->head, sizeof(pj->head));
	pin_owner_key(*p, pj);
	return 0;
}

static struct hc_cluster_op *proofs_start(struct hc_cluster *c, const char *id, bool local_only,
					  bool verify, hc_cluster_proofs_done *done, void *arg,
					  bool owns_arg)
{
	struct proofs_job *pj;
	struct hc_cluster_op *op;
	struct peer *p;
	int r;

	if (!id || !hc_uuid_valid(id)) {
		done(arg, HC_RPC_INVALID_ARGUMENT, "invalid workload id (want a UUID)", NULL);
		return NULL;
	}
	pj = calloc(1, sizeof(*pj));
	op = pj ? hc_cluster_op_new(c, OP_PROOFS, arg) : NULL;
	if (!op) {
		free(pj);
		done(arg, HC_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL);
		return NULL;
	}
	pj->op = op;
	pj->done = done;
	pj->arg = arg;
	pj->owns_arg = owns_arg;
	pj->verify = verify;
	snprintf(pj->id, sizeof(pj->id), "%s", id);
	r = locate(c, id, local_only, &p, pj);
	if (r == 0)
		r = p && !c->proofs_fetch_hook
			    ? hc_cluster_job_start_thread(c, &pj->job, remote_run, proofs_done)
			    : hc_cluster_job_start(c, &pj->job, p ? remote_run : local_run,
						   proofs_done);
	else
		pj->code = r == -ENOENT ? HC_RPC_NOT_FOUND : HC_RPC_UNAVAILABLE;
	if (r < 0) {
		struct hc_cluster_proofs a;

		if (pj->code == HC_RPC_OK) {
			pj->code = HC_RPC_RESOURCE_EXHAUSTED;
			snprintf(pj->err, sizeof(pj->err), "%s",
				 r == -EBUSY ? "this node is busy (too many jobs waiting)"
					     : "cannot start a worker");
		}
		fill_answer(pj, &a);
		if (verify && pj->code != HC_RPC_RESOURCE_EXHAUSTED) {
			c->proofs_unknown++;
			done(arg, HC_RPC_OK, NULL, &a);
		} else {
			done(arg, pj->code, pj->err, NULL);
		}
		op->finished = true;
		hc_cluster_op_release_if_idle(op);
		free(pj);
		return NULL;
	}
	return op;
}

struct hc_cluster_op *hc_cluster_proofs(struct hc_cluster *c, const char *id, bool local_only,
					bool verify, hc_cluster_proofs_done *done, void *arg)
{
	return proofs_start(c, id, local_only, verify, done, arg, false);
}

/* ---- PROOF_VERIFY queries ---- */

struct serve_arg {
	struct hc_cluster *c;
	uint64_t query_id;
};

static void served(void *arg, enum hc_rpc_code code, const char *err,
		   const struct hc_cluster_proofs *a)
{
	Cluster__Services__Api__ProofVerification pv = CLUSTER__SERVICES__API__PROOF_VERIFICATION__INIT;
	Cluster__Services__Api__ErrorResponse er = CLUSTER__SERVICES__API__ERROR_RESPONSE__INIT;
	struct serve_arg *sa = arg;
	char result[300];

	if (code != HC_RPC_OK || !a) {
		er.error = (char *)(err ? err : "failed");
		hc_cluster_respond(sa->c, sa->query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__ERROR,
			     &er.base);
		free(sa);
		return;
	}
	if (a->verdict == HC_IBRL_VALID)
		snprintf(result, sizeof(result), "VALID");
	else
		snprintf(result, sizeof(result), "%s: %.250s",
			 hc_ibrl_verdict_name((enum hc_ibrl_verdict)a->verdict),
			 a->reason ? hc_ibrl_reason_names[a->reason] : a->detail);
	pv.workload_id = (char *)a->id;
	pv.proof_hash = (char *)a->head;
	pv.verification_result = result;
	hc_cluster_respond(sa->c, sa->query_id, CLUSTER__SERVICES__API__CLUSTER_EVENT__PROOF_VERIFY,
		     &pv.base);
	free(sa);
}

void hc_cluster_proofs_serve(struct hc_cluster *c, uint64_t query_id,
			     const Cluster__Services__Api__ProofVerification *req)
{
	struct serve_arg *sa = malloc(sizeof(*sa));

	if (!sa)
		return; /* unanswered: the asker's time runs out */
	sa->c = c;
	sa->query_id = query_id;
	proofs_start(c, req->workload_id, false, true, served, sa, true);
}
