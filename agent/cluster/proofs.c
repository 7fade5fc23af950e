/*
 * Execution proofs of this node's workloads (docs/cluster.md#execution-proofs):
 * every period a worker reads what each running workload used (its cgroup,
 * the data plane's BPF counters), seals the next entry of its hash chain
 * with the node key and appends it to <state-dir>/proofs/<id>.log; the next
 * state broadcast carries each chain's head in WorkloadState.proof.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "dataplane/dataplane.h"
#include "log/log.h"

/* Logs are flushed to disk (one syncfs for all) every this many rounds,
 * not after every append: an fsync per workload per period would cost
 * more than the proofs themselves. A crash loses at most these rounds. */
#define SYNC_EVERY_ROUNDS 12

/* The counters a proof carries cumulatively over its chain, whatever
 * resets their sources (a restarted container's new cgroup, a new veth). */
enum { ACC_CPU, ACC_RX, ACC_TX, ACC_N };

struct proof_chain {
	bool loaded;			  /* the log's last entry was looked for */
	bool have_last;			  /* last holds the chain's head */
	struct hc_ibrl_proof last;
	bool have_raw;			  /* raw holds the previous readings */
	uint64_t raw[ACC_N], base[ACC_N]; /* value = base + raw */
	int64_t started_ns;		  /* the start the last proof saw */
	Cluster__Services__Api__WorkloadProof *pb; /* the head, as states carry it */
};

void hc_cluster_proof_chain_free(struct proof_chain *chain)
{
	if (!chain)
		return;
	hc_cluster_pb_free(chain->pb);
	free(chain);
}

static uint64_t wall_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* ---- a round: one job for all running workloads ---- */

struct proof_item {
	char id[HC_WORKLOAD_ID_LEN + 1];
	char handler[16];
	int64_t started_ns;
	struct proof_chain chain; /* a copy (pb NULL), advanced by the worker */
	bool made;
	int rc;
	char err[160];
};

struct proof_job {
	struct job job;
	bool sync;
	size_t n;
	struct proof_item items[];
};

static const struct hc_dp_workload_row *row_of(const struct hc_dp_workload_row *rows, size_t n,
					       const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(rows[i].wl.id, id, sizeof(rows[i].wl.id)) == 0)
			return &rows[i];
	return NULL;
}

/* Makes the chain's counters cumulative: a reading below the last one
 * means its source started again from zero. After an agent restart the
 * first reading continues from the logged head, never below it. */
static uint64_t accumulate(struct proof_chain *ch, int k, uint64_t raw, uint64_t logged)
{
	if (!ch->have_raw)
		ch->base[k] = ch->have_last && logged > raw ? logged - raw : 0;
	else if (raw < ch->raw[k])
		ch->base[k] += ch->raw[k];
	ch->raw[k] = raw;
	return ch->base[k] + raw;
}

static void fill_metrics(struct proof_item *it, const struct hc_cluster_usage *u,
			 struct hc_ibrl_proof *p, uint64_t now_ms)
{
	struct proof_chain *ch = &it->chain;
	const uint64_t *last = ch->last.metrics;
	uint64_t uptime = 0;
	bool restarted;

	if (it->started_ns > 0 && (uint64_t)it->started_ns / 1000000 <= now_ms)
		uptime = (now_ms - (uint64_t)it->started_ns / 1000000) / 1000;
	restarted = ch->have_last &&
		    (uptime < last[HC_IBRL_UPTIME_S] ||
		     (ch->started_ns && it->started_ns && it->started_ns != ch->started_ns));
	p->metrics[HC_IBRL_CPU_NS] = accumulate(ch, ACC_CPU, u->cpu_ns, last[HC_IBRL_CPU_NS]);
	p->metrics[HC_IBRL_RX_BYTES] = accumulate(ch, ACC_RX, u->rx_bytes, last[HC_IBRL_RX_BYTES]);
	p->metrics[HC_IBRL_TX_BYTES] = accumulate(ch, ACC_TX, u->tx_bytes, last[HC_IBRL_TX_BYTES]);
	ch->have_raw = true;
	p->metrics[HC_IBRL_MEMORY_BYTES] = u->memory_bytes;
	p->metrics[HC_IBRL_UPTIME_S] = uptime;
	p->metrics[HC_IBRL_RESTARTS] = (ch->have_last ? last[HC_IBRL_RESTARTS] : 0) + restarted;
	ch->started_ns = it->started_ns;
}

static void make_one(struct hc_cluster *c, struct proof_item *it,
		     const struct hc_dp_workload_row *rows, size_t nrows)
{
	const char *dir = c->cfg.state_dir;
	struct proof_chain *ch = &it->chain;
	struct hc_cluster_usage u = { 0 };
	const struct hc_dp_workload_row *row;
	struct hc_ibrl_proof p;
	uint64_t now = wall_ms();
	struct hc_err err;

	if (!ch->loaded) {
		it->rc = hc_ibrl_proof_log_last(dir, it->id, &ch->last);
		if (it->rc < 0 && it->rc != -ENOENT) {
			snprintf(it->err, sizeof(it->err), "cannot read its proof log: %s",
				 it->rc == -EINVAL ? "the last line does not parse" : strerror(-it->rc));
			return;
		}
		ch->have_last = it->rc == 0;
		ch->loaded = true;
	}
	if (c->cfg.runtime->usage &&
	    c->cfg.runtime->usage(c->cfg.runtime_ctx, it->id, &u, &err) < 0 && ch->have_raw) {
		u.cpu_ns = ch->raw[ACC_CPU]; /* unreadable for now: nothing new */
		u.rx_bytes = ch->raw[ACC_RX];
		u.tx_bytes = ch->raw[ACC_TX];
	}
	if ((row = row_of(rows, nrows, it->id))) {
		u.rx_bytes = row->stats.rx_bytes;
		u.tx_bytes = row->stats.tx_bytes;
	}
	memset(&p, 0, sizeof(p));
	snprintf(p.workload_id, sizeof(p.workload_id), "%s", it->id);
	snprintf(p.hypervisor, sizeof(p.hypervisor), "%s", it->handler[0] ? it->handler : "runc");
	p.timestamp_ms = (int64_t)now;
	if (ch->have_last && p.timestamp_ms <= ch->last.timestamp_ms)
		p.timestamp_ms = ch->last.timestamp_ms + 1; /* the clock stepped back */
	if (ch->have_last)
		memcpy(p.prev_hash, ch->last.hash, HC_IBRL_HASH_LEN);
	fill_metrics(it, &u, &p, now);
	it->rc = hc_ibrl_proof_seal(c->cfg.identity, &p);
	if (it->rc == 0)
		it->rc = hc_ibrl_proof_log_append(dir, it->id, &p, false);
	if (it->rc < 0) {
		snprintf(it->err, sizeof(it->err), "cannot seal or log a proof: %s", strerror(-it->rc));
		return;
	}
	ch->last = p;
	ch->have_last = true;
	it->made = true;
}

static void round_run(struct job *j)
{
	struct proof_job *pj = (struct proof_job *)j;
	struct hc_cluster *c = j->c;
	struct hc_dp_workload_row *rows = NULL;
	size_t nrows = 0;

	if (c->cfg.maps && hc_dpmaps_workload_rows(c->cfg.maps, &rows, &nrows) < 0)
		nrows = 0; /* counted as zeros, or what was read before */
	for (size_t i = 0; i < pj->n; i++)
		make_one(c, &pj->items[i], rows, nrows);
	free(rows);
	if (pj->sync)
		hc_ibrl_proof_log_sync(c->cfg.state_dir);
}

/* The head as WorkloadState.proof carries it. NULL on ENOMEM. */
static Cluster__Services__Api__WorkloadProof *proof_pb(const struct hc_ibrl_proof *p)
{
	Cluster__Services__Api__WorkloadProof pb = CLUSTER__SERVICES__API__WORKLOAD_PROOF__INIT;
	Cluster__Services__Api__WorkloadProof__MetricsEntry e[HC_IBRL_METRICS], *ep[HC_IBRL_METRICS];
	char hash[2 * HC_IBRL_HASH_LEN + 1], values[HC_IBRL_METRICS][24];

	hc_ibrl_hash_hex(p->hash, hash);
	pb.proof_hash = hash;
	pb.proof_signature.data = (uint8_t *)p->sig;
	pb.proof_signature.len = HC_IBRL_SIGNATURE_LEN;
	pb.proof_timestamp = p->timestamp_ms;
	pb.hypervisor_type = (char *)p->hypervisor;
	for (int i = 0; i < HC_IBRL_METRICS; i++) {
		cluster__services__api__workload_proof__metrics_entry__init(&e[i]);
		snprintf(values[i], sizeof(values[i]), "%" PRIu64, p->metrics[i]);
		e[i].key = (char *)hc_ibrl_metric_names[i];
		e[i].value = values[i];
		ep[i] = &e[i];
	}
	pb.metrics = ep;
	pb.n_metrics = HC_IBRL_METRICS;
	return hc_cluster_pb_clone(&pb.base);
}

static void round_done(struct job *j)
{
	struct proof_job *pj = (struct proof_job *)j;
	struct hc_cluster *c = j->c;

	c->proof_running = false;
	for (size_t i = 0; i < pj->n; i++) {
		struct proof_item *it = &pj->items[i];
		struct local_wl *l = c->closing ? NULL : hc_cluster_local_find(c, it->id);

		if (it->rc < 0) {
			c->proof_errors++;
			hc_log(HC_LOG_WARN, "no proof for workload %s: %s", it->id, it->err);
		}
		if (!it->made)
			continue;
		c->proofs_generated++;
		if (!l) { /* gone meanwhile: so is its log, appended to after its removal */
			if (!c->closing)
				hc_ibrl_proof_log_remove(c->cfg.state_dir, it->id);
			continue;
		}
		if (!l->chain && !(l->chain = calloc(1, sizeof(*l->chain))))
			continue;
		hc_cluster_pb_free(l->chain->pb);
		*l->chain = it->chain;
		l->chain->pb = proof_pb(&it->chain.last);
		c->broadcast_due = true;
	}
	free(pj);
}

void hc_cluster_proofs_tick(struct hc_cluster *c)
{
	struct proof_job *pj;
	size_t n = 0;

	if (!c->cfg.identity || c->cfg.no_proofs || !c->cfg.runtime || c->proof_running ||
	    c->closing || !c->nlocal)
		return;
	pj = calloc(1, sizeof(*pj) + c->nlocal * sizeof(pj->items[0]));
	if (!pj)
		return;
	for (size_t i = 0; i < c->nlocal; i++) {
		const struct local_wl *l = &c->local[i];
		struct proof_item *it = &pj->items[n];

		if (l->pending || l->restarting || l->restart_at_ms || l->stopping || !l->ip[0])
			continue;
		snprintf(it->id, sizeof(it->id), "%s", l->state->id);
		snprintf(it->handler, sizeof(it->handler), "%s", l->handler);
		it->started_ns = l->started_ns;
		if (l->chain) {
			it->chain = *l->chain;
			it->chain.pb = NULL;
		}
		n++;
	}
	pj->n = n;
	pj->sync = ++c->proof_rounds % SYNC_EVERY_ROUNDS == 0;
	if (!n || hc_cluster_job_start(c, &pj->job, round_run, round_done) < 0) {
		free(pj);
		return;
	}
	c->proof_running = true;
}

void hc_cluster_proofs_attach(struct hc_cluster *c, bool on)
{
	for (size_t i = 0; i < c->nlocal; i++) {
		struct local_wl *l = &c->local[i];

		l->state->proof = on && l->chain ? l->chain->pb : NULL;
	}
}

void hc_cluster_proofs_head(const struct local_wl *l, char out[2 * HC_IBRL_HASH_LEN + 1])
{
	out[0] = '\0';
	if (l->chain && l->chain->have_last)
		hc_ibrl_hash_hex(l->chain->last.hash, out);
}

void hc_cluster_proofs_forget(struct hc_cluster *c, const char *id)
{
	int r;

	if (!c->cfg.identity)
		return;
	r = hc_ibrl_proof_log_remove(c->cfg.state_dir, id);
	if (r < 0)
		hc_log(HC_LOG_WARN, "cannot remove the proof log of %s: %s", id, strerror(-r));
}
