/*
 * States by digest and delta (docs/cluster.md, "State by digest and
 * delta"). A change costs bytes in proportion to the change: each broadcast
 * is a small signed StateDigest (user event hypercore_state_digest) that
 * carries the change itself when it fits one gossip packet; a receiver
 * rebuilds the sender's full state from its copy and the delta and checks
 * the full state's signature, exactly as for a chunked state. A receiver
 * whose copy does not match pulls the delta since its version, or the
 * whole state, from the owner's HTTP API (GET /cluster/state?since=V), the
 * way memberlist's push/pull and Consul's anti-entropy repair what gossip
 * missed. The owner keeps its last announced state and a bounded log of
 * which workloads each recent version changed.
 *
 * Upstream's chunked broadcasts are still sent (state.c) while a member
 * looks like a node that knows no digests, and understood from anyone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "httpc/httpc.h"
#include "log/log.h"

/* Pulls in flight at once: a node joining a cluster of hundreds pulls
 * them all, a few at a time, never hundreds of connections at once. */
#define PULLS_INFLIGHT 4
#define PULLS_QUEUED_MAX 1024
/* A pull has this long to answer (httpc's own deadline is the same), then
 * it counts as failed; its answer, should it still come, is dropped. */
#define PULL_TIMEOUT_MS 10000
/* An answer holds at most the most workloads a state may (state.c's
 * MAX_PEER_WORKLOADS, about 300 bytes each with a proof): httpc reads at
 * most 16 MiB. */
#define PULL_MAX_BYTES (16u << 20)
/* A pull of one owner starts at most this often, however many digests ask
 * for one: a member holding the gossip key cannot make every node pull
 * from an owner in a loop (each pull's answer is then what the owner has
 * at that moment, so nothing is lost by waiting). */
#define PULL_MIN_INTERVAL_MS 1000
#define MAX_PEER_WORKLOADS 100000
/* The owner's change log: the last versions' changed ids, at most this
 * many versions and ids in all; a pull from an older version gets the
 * whole state. */
#define CHANGE_LOG_VERSIONS 64
#define CHANGE_LOG_IDS 20000
/* A member that sent no digest for this many periods after we first saw
 * it (hypercore nodes send one at least every REFRESH_PERIODS, and at
 * once when a member joins) is taken for a node that knows none. */
#define DIGEST_GRACE_PERIODS 3
/* The same for a member whose chunked state we hold: a node that sends
 * chunks sends its digest in the same broadcast, so one missing a period
 * later is a previous release's. Sooner than a silent member's, because
 * such a node routes nothing of ours until our chunks come: a previous
 * release forgets a node that leaves (an agent being upgraded), and takes
 * its workloads back only from chunks. */
#define DIGEST_GRACE_HELD_PERIODS 1

const char *const hc_cluster_pull_failure_names[PULL_FAIL_REASONS] = {
	"unavailable", "refused", "timeout", "too_large", "malformed", "mismatch", "rejected",
	"gone",
};

typedef char wl_id[HC_WORKLOAD_ID_LEN + 1];
typedef Cluster__Services__Api__StateDigest hc_pb_digest;

/* What one version changed against the one before (base). */
struct change {
	uint64_t version, base;
	wl_id *ids;
	size_t n;
};

/* A pull of one owner's state: queued, running (id), or neither: done,
 * kept until PULL_MIN_INTERVAL_MS after its start so the next waits. */
struct pull {
	char *name;
	uint64_t id;		/* 0: not running */
	bool queued;		/* to start once the interval since the last start is over */
	uint64_t started_ms;	/* of the last start; 0: never */
	char host[64];		/* where its owner serves (its digest said so) */
	uint16_t port;
	bool full;		/* ask for the whole state (a delta did not fit our copy) */
	bool again;		/* a newer digest came meanwhile: pull once more */
};

/* A member with no state held yet, since when (want_chunks). */
struct stranger {
	char *name;
	uint64_t since_ms;
};

struct delta_state {
	/* owner: the last state announced, as signed (proofs in) */
	bool recorded;
	hc_pb_workload **w; /* id order, owned */
	uint64_t *h;	    /* hc_cluster_workload_hash of each */
	size_t n;
	uint64_t version, whash;
	hc_pb_beacon *beacon;
	char sig[HC_IBRL_STATE_SIG_B64_LEN + 1];
	/* the set hash of w, kept as w changes, its sum and the signature of
	 * encoding v2 over it ("" unsigned) */
	struct hc_ibrl_set_hash set;
	uint8_t sum[HC_IBRL_DIGEST_LEN];
	char sig2[HC_IBRL_STATE_SIG_B64_LEN + 1];
	bool summarized; /* sum and sig2 are the recorded state's */
	char addr[64];
	uint32_t http_port;
	bool respawn;
	struct change log[CHANGE_LOG_VERSIONS]; /* oldest first */
	size_t nlog, log_ids;

	/* receiver */
	struct pull *pulls;
	size_t npulls;
	uint64_t next_id;
	struct stranger *strangers;
	size_t nstrangers;
};

static uint32_t period_ms(const struct hc_cluster *c)
{
	return c->cfg.state_period_ms ? c->cfg.state_period_ms : STATE_PERIOD_MS;
}

int hc_cluster_delta_init(struct hc_cluster *c)
{
	c->delta = calloc(1, sizeof(*c->delta));
	return c->delta ? 0 : -ENOMEM;
}

static void change_fini(struct change *ch)
{
	free(ch->ids);
	ch->ids = NULL;
	ch->n = 0;
}

void hc_cluster_delta_fini(struct hc_cluster *c)
{
	struct delta_state *d = c->delta;

	if (!d)
		return;
	hc_cluster_workloads_free(d->w, d->n);
	free(d->h);
	hc_cluster_pb_free(d->beacon);
	for (size_t i = 0; i < d->nlog; i++)
		change_fini(&d->log[i]);
	for (size_t i = 0; i < d->npulls; i++)
		free(d->pulls[i].name);
	free(d->pulls);
	for (size_t i = 0; i < d->nstrangers; i++)
		free(d->strangers[i].name);
	free(d->strangers);
	free(d);
	c->delta = NULL;
}

/* ---- the owner: recording what each broadcast changed ---- */

static void log_drop_oldest(struct delta_state *d)
{
	d->log_ids -= d->log[0].n;
	change_fini(&d->log[0]);
	memmove(&d->log[0], &d->log[1], (d->nlog - 1) * sizeof(d->log[0]));
	d->nlog--;
}

/* Appends ch (taken) to the log, dropping the oldest versions beyond its
 * bounds. A change too large for the log empties it: pulls from before it
 * then get the whole state. */
static void log_append(struct delta_state *d, struct change *ch)
{
	if (ch->n > CHANGE_LOG_IDS) {
		while (d->nlog)
			log_drop_oldest(d);
		change_fini(ch);
		return;
	}
	while (d->nlog && (d->nlog == CHANGE_LOG_VERSIONS || d->log_ids + ch->n > CHANGE_LOG_IDS))
		log_drop_oldest(d);
	d->log[d->nlog++] = *ch;
	d->log_ids += ch->n;
}

/* The id-order merge of the last recorded state with w: the new snapshot
 * nw (changed entries cloned; unchanged ones moved over from d only once
 * all clones were made, so a failure leaves d as it was), the changed ids,
 * and *set, d's set hash with the change applied. */
static int diff_record(struct delta_state *d, hc_pb_workload *const *w, const uint64_t *h,
		       size_t n, hc_pb_workload **nw, struct change *ch,
		       struct hc_ibrl_set_hash *set)
{
	size_t *src = calloc(n + 1, sizeof(*src));
	size_t i = 0, k = 0;
	int r = 0;

	ch->ids = calloc(n + d->n + 1, sizeof(*ch->ids));
	if (!src || !ch->ids) {
		free(src);
		return -ENOMEM;
	}
	while (r == 0 && (i < d->n || k < n)) {
		int cmp = i == d->n ? 1 : k == n ? -1 : strcmp(d->w[i]->id, w[k]->id);

		if (cmp < 0) { /* gone */
			snprintf(ch->ids[ch->n++], sizeof(wl_id), "%s", d->w[i]->id);
			r = hc_ibrl_set_hash_remove(set, d->w[i]);
			i++;
		} else if (cmp == 0 && d->h[i] == h[k]) { /* unchanged */
			src[k++] = i++ + 1;
		} else if (!(nw[k] = hc_cluster_pb_clone(&w[k]->base))) {
			r = -ENOMEM;
		} else {
			snprintf(ch->ids[ch->n++], sizeof(wl_id), "%s", w[k]->id);
			if (cmp == 0)
				r = hc_ibrl_set_hash_remove(set, d->w[i++]);
			if (r == 0)
				r = hc_ibrl_set_hash_add(set, w[k]);
			k++;
		}
	}
	for (k = 0; r == 0 && k < n; k++) {
		if (src[k]) {
			nw[k] = d->w[src[k] - 1];
			d->w[src[k] - 1] = NULL;
		}
	}
	free(src);
	return r;
}

/* Signs encoding v2 of the state recorded, its set hash's sum in d->sum,
 * into d->sig2 ("" when this node signs nothing). */
static int sign_summary(struct hc_cluster *c)
{
	struct delta_state *d = c->delta;

	d->sig2[0] = '\0';
	if (!c->identity)
		return 0;
	return hc_ibrl_state_sign(c->identity, &(struct hc_ibrl_state_view){
		.node = hc_cluster_self(c), .node_addr = d->addr, .http_port = d->http_port,
		.respawn = d->respawn, .version = d->version, .beacon = d->beacon,
		.nworkloads = d->n, .workloads_sum = d->sum }, d->sig2);
}

int hc_cluster_delta_record(struct hc_cluster *c, hc_pb_workload *const *w, size_t n)
{
	struct delta_state *d = c->delta;
	hc_pb_workload **nw;
	uint64_t *h;
	struct change ch;
	hc_pb_beacon *beacon = NULL;
	uint64_t whash = 1469598103934665603ull;
	struct hc_ibrl_set_hash *set = malloc(sizeof(*set));
	int r;

	if (!d || c->cfg.state_mode == HC_CLUSTER_STATE_CHUNKED || !set) {
		free(set);
		return !set ? -ENOMEM : -EOPNOTSUPP;
	}
	*set = d->set;
	ch = (struct change){ .version = c->state_version, .base = d->recorded ? d->version : 0 };
	nw = calloc(n + 1, sizeof(*nw));
	h = calloc(n + 1, sizeof(*h));
	r = nw && h ? 0 : -ENOMEM;
	for (size_t k = 0; r == 0 && k < n; k++)
		h[k] = hc_cluster_workload_hash(w[k], &whash);
	if (r == 0 && c->beacon_out && !(beacon = hc_cluster_pb_clone(&c->beacon_out->base)))
		r = -ENOMEM;
	if (r == 0)
		r = diff_record(d, w, h, n, nw, &ch, set);
	if (r < 0) {
		hc_cluster_workloads_free(nw, nw ? n : 0); /* clones only: nothing moved */
		free(h);
		hc_cluster_pb_free(beacon);
		change_fini(&ch);
		free(set);
		return r;
	}
	hc_cluster_workloads_free(d->w, d->n); /* what was not moved over */
	free(d->h);
	d->w = nw;
	d->h = h;
	d->n = n;
	if (d->recorded)
		log_append(d, &ch);
	else
		change_fini(&ch);
	d->recorded = true;
	d->version = c->state_version;
	d->whash = whash;
	hc_cluster_pb_free(d->beacon);
	d->beacon = beacon;
	snprintf(d->sig, sizeof(d->sig), "%s", c->state_sig);
	snprintf(d->addr, sizeof(d->addr), "%s", c->node_addr);
	d->http_port = c->http_port;
	d->respawn = c->cfg.respawn;
	d->set = *set;
	free(set);
	r = hc_ibrl_set_hash_sum(&d->set, d->sum);
	if (r == 0)
		r = sign_summary(c);
	d->summarized = r == 0;
	if (r < 0) /* the digest goes without its v2 fields: checked as before */
		hc_log(HC_LOG_WARN, "state summary not signed: %s", strerror(-r));
	return 0;
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int wl_cmp(const void *a, const void *b)
{
	return strcmp((*(hc_pb_workload *const *)a)->id, (*(hc_pb_workload *const *)b)->id);
}

static int wl_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, (*(hc_pb_workload *const *)elem)->id);
}

/* The ids changed since version `since` (the log's entries after it, in
 * order), sorted and each once; -ENOENT when the log does not reach back
 * to it. */
static int changed_since(const struct delta_state *d, uint64_t since, const char ***ids,
			 size_t *n)
{
	size_t first = d->nlog, total = 0, k = 0;

	for (size_t i = d->nlog; i-- > 0;) {
		if (i + 1 < d->nlog && d->log[i].version != d->log[i + 1].base)
			break; /* a gap: the log was emptied in between */
		total += d->log[i].n;
		if (d->log[i].base == since) {
			first = i;
			break;
		}
	}
	if (first == d->nlog)
		return -ENOENT;
	*ids = calloc(total + 1, sizeof(**ids));
	if (!*ids)
		return -ENOMEM;
	for (size_t i = first; i < d->nlog; i++)
		for (size_t j = 0; j < d->log[i].n; j++)
			(*ids)[k++] = d->log[i].ids[j];
	qsort(*ids, k, sizeof(**ids), id_cmp);
	*n = 0;
	for (size_t j = 0; j < k; j++)
		if (*n == 0 || strcmp((*ids)[*n - 1], (*ids)[j]) != 0)
			(*ids)[(*n)++] = (*ids)[j];
	return 0;
}

/* The recorded state as a StateDigest against version `since`: the delta
 * when the log has it (and `delta`), the whole state when `full`,
 * otherwise none; the whole state's signature (field 7) only when
 * `whole_sig` (with the sum, a receiver of this release needs none).
 * Packed into *buf. */
static int pack_digest(struct hc_cluster *c, uint64_t since, bool delta, bool full,
		       bool whole_sig, uint8_t **buf, size_t *len)
{
	struct delta_state *d = c->delta;
	hc_pb_digest m = CLUSTER__SERVICES__API__STATE_DIGEST__INIT;
	const char **ids = NULL;
	hc_pb_workload **up = NULL;
	char **removed = NULL;
	size_t nids = 0;
	int r = 0;

	m.node = (char *)hc_cluster_self(c);
	m.node_addr = d->addr;
	m.http_port = d->http_port;
	m.respawn = d->respawn;
	m.state_version = d->version;
	m.beacon = d->beacon;
	m.workload_count = (uint32_t)d->n;
	m.workloads_hash = d->whash;
	if (d->summarized && !c->digests_unsummarized) {
		m.state_signature_v2 = d->sig2;
		m.workloads_sum = (ProtobufCBinaryData){ sizeof(d->sum), d->sum };
	} else {
		whole_sig = true;
	}
	if (whole_sig)
		m.state_signature = d->sig;
	if (delta && !full && since == d->version) {
		m.base_version = since; /* nothing changed since */
	} else if (delta && !full) {
		r = changed_since(d, since, &ids, &nids);
		if (r == -ENOENT)
			full = true; /* too old, or not ours: the whole state */
		else if (r < 0)
			return r;
	}
	if (ids && !full) {
		up = calloc(nids + 1, sizeof(*up));
		removed = calloc(nids + 1, sizeof(*removed));
		if (!up || !removed) {
			r = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < nids; i++) {
			hc_pb_workload **hit = bsearch(ids[i], d->w, d->n, sizeof(*d->w), wl_key_cmp);

			if (hit)
				up[m.n_workloads++] = *hit;
			else
				removed[m.n_removed++] = (char *)ids[i];
		}
		m.base_version = since;
		m.workloads = up;
		m.removed = removed;
	} else if (full) {
		m.full = true;
		m.workloads = d->w;
		m.n_workloads = d->n;
	}
	*buf = hc_cluster_pb_pack(&m.base, len);
	r = *buf ? 0 : -ENOMEM;
out:
	free(ids);
	free(up);
	free(removed);
	return r;
}

uint64_t hc_cluster_delta_recorded_version(const struct hc_cluster *c)
{
	return c->delta && c->delta->recorded ? c->delta->version : 0;
}

int hc_cluster_state_since(struct hc_cluster *c, uint64_t since, uint8_t **buf, size_t *len)
{
	int r;

	if (!c->delta || !c->delta->recorded)
		return -ENOENT;
	/* the asker may be of a previous release: both signatures */
	r = pack_digest(c, since, since != 0, since == 0, true, buf, len);
	if (r == 0) {
		c->pulls_served++;
		c->state_bytes_sent[STATE_BYTES_PULL] += *len;
	}
	return r;
}

/* Whether an alive member may be of a previous release, which checks
 * digests by the whole state's signature (field 7) only: one not yet seen
 * sending a state with a sum that held (peer.summarizes). Every gossip
 * copy of a digest costs each receiver its bytes several times over, so
 * the 90 bytes of field 7 go only where they may be needed. */
static bool whole_sig_wanted(struct hc_cluster *c)
{
	struct hc_gossip_member *ms;
	size_t n = 0;
	bool want = false;

	ms = hc_cluster_members(c, &n);
	if (!ms)
		return true;
	for (size_t i = 0; i < n && !want; i++) {
		const struct peer *p;

		if (ms[i].status != HC_GOSSIP_ALIVE || strcmp(ms[i].name, hc_cluster_self(c)) == 0)
			continue;
		p = hc_cluster_state_peer(c, ms[i].name);
		want = !p || !p->summarizes;
	}
	hc_gossip_members_free(ms, n);
	return want;
}

int hc_cluster_delta_send(struct hc_cluster *c)
{
	struct delta_state *d = c->delta;
	const struct change *last = d->nlog ? &d->log[d->nlog - 1] : NULL;
	bool whole_sig = whole_sig_wanted(c);
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = -ENOENT;

	/* the change inline when it fits one gossip packet; otherwise the
	 * digest alone, and receivers pull */
	if (last && last->version == d->version)
		r = pack_digest(c, last->base, true, false, whole_sig, &buf, &len);
	if (r == 0 && len > CHUNK_MAX_BYTES) {
		free(buf);
		r = -E2BIG;
	}
	if (r < 0 && (r = pack_digest(c, 0, false, false, whole_sig, &buf, &len)) < 0)
		return r;
	r = hc_gossip_user_event(c->gossip, HC_DIGEST_EVENT, buf, len, false);
	if (r == 0) {
		c->digests_sent++;
		c->state_bytes_sent[STATE_BYTES_DIGEST] += len;
	}
	free(buf);
	return r;
}

/* ---- who needs upstream's chunks ---- */

static uint64_t stranger_since(struct hc_cluster *c, const char *name, uint64_t now)
{
	struct delta_state *d = c->delta;
	struct stranger *grown;

	for (size_t i = 0; i < d->nstrangers; i++)
		if (strcmp(d->strangers[i].name, name) == 0)
			return d->strangers[i].since_ms;
	if (d->nstrangers >= PULLS_QUEUED_MAX)
		return now;
	grown = realloc(d->strangers, (d->nstrangers + 1) * sizeof(*grown));
	if (!grown)
		return now;
	d->strangers = grown;
	grown[d->nstrangers].name = strdup(name);
	grown[d->nstrangers].since_ms = now;
	if (grown[d->nstrangers].name)
		d->nstrangers++;
	return now;
}

bool hc_cluster_delta_want_chunks(struct hc_cluster *c)
{
	uint64_t now = hc_loop_now_ms(c->loop), grace, held_grace;
	struct hc_gossip_member *ms;
	size_t n = 0;
	bool want = false;

	if (c->cfg.state_mode != HC_CLUSTER_STATE_AUTO)
		return c->cfg.state_mode == HC_CLUSTER_STATE_CHUNKED;
	/* nobody could pull from us */
	if (!c->http_port || !c->delta->recorded)
		return true;
	grace = (uint64_t)DIGEST_GRACE_PERIODS * period_ms(c);
	held_grace = (uint64_t)DIGEST_GRACE_HELD_PERIODS * period_ms(c);
	ms = hc_cluster_members(c, &n);
	for (size_t i = 0; ms && i < n && !want; i++) {
		const struct peer *p;

		if (ms[i].status != HC_GOSSIP_ALIVE || strcmp(ms[i].name, hc_cluster_self(c)) == 0)
			continue;
		p = hc_cluster_state_peer(c, ms[i].name);
		if (p) /* an unversioned state is upstream's; a silent one an older node's */
			want = !p->digests && (!p->version || now - p->first_ms > held_grace);
		else
			want = now - stranger_since(c, ms[i].name, now) > grace;
	}
	hc_gossip_members_free(ms, n);
	return want;
}

/* ---- the receiver: digests, deltas, pulls ---- */

enum take_result { TAKEN, MATCHED, IGNORED, NEED_PULL, NEED_FULL, REJECTED };

/* Steals d's upserts, each valid id once (the last wins), sorted. */
static hc_pb_workload **take_upserts(hc_pb_digest *dg, size_t *n)
{
	hc_pb_workload **up = calloc(dg->n_workloads + 1, sizeof(*up));
	size_t k = 0;

	if (!up)
		return NULL;
	for (size_t i = 0; i < dg->n_workloads; i++) {
		hc_pb_workload *wl = dg->workloads[i];

		if (wl->id && hc_uuid_valid(wl->id))
			up[k++] = wl;
		else
			hc_cluster_pb_free(wl);
	}
	dg->n_workloads = 0;
	qsort(up, k, sizeof(*up), wl_cmp);
	*n = 0;
	for (size_t i = 0; i < k; i++) {
		if (*n && strcmp(up[*n - 1]->id, up[i]->id) == 0)
			hc_cluster_pb_free(up[--(*n)]);
		up[(*n)++] = up[i];
	}
	return up;
}

/* Where id is, or would go, in w[lo..n) (id order). */
static size_t lower_bound(hc_pb_workload *const *w, size_t lo, size_t n, const char *id)
{
	while (lo < n) {
		size_t mid = lo + (n - lo) / 2;

		if (strcmp(w[mid]->id, id) < 0)
			lo = mid + 1;
		else
			n = mid;
	}
	return lo;
}

/* The held state p->workloads with the delta applied: out (id order)
 * shares p's kept entries; dropped[0..*ndropped) are the indexes of p's
 * entries it replaces or removes. The held entries between two changes
 * are copied as runs and each change is found by binary search, so the
 * cost is the change's times log n, plus copying n pointers. An id both
 * upserted and removed is upserted. */
static int merge(const struct peer *p, hc_pb_workload **up, size_t nup, char **removed,
		 size_t nremoved, hc_pb_workload ***out, size_t *nout, size_t **dropped,
		 size_t *ndropped)
{
	size_t i = 0, a = 0, b = 0, n = 0, nd = 0;

	*out = calloc(p->nworkloads + nup + 1, sizeof(**out));
	*dropped = calloc(nup + nremoved + 1, sizeof(**dropped));
	if (!*out || !*dropped)
		return -ENOMEM;
	if (nremoved)
		qsort(removed, nremoved, sizeof(*removed), id_cmp);
	while (a < nup || b < nremoved) {
		int cmp = a == nup ? 1 : b == nremoved ? -1 : strcmp(up[a]->id, removed[b]);
		const char *id = cmp <= 0 ? up[a]->id : removed[b];
		size_t at = lower_bound(p->workloads, i, p->nworkloads, id);

		memcpy(*out + n, p->workloads + i, (at - i) * sizeof(**out));
		n += at - i;
		i = at;
		if (i < p->nworkloads && strcmp(p->workloads[i]->id, id) == 0)
			(*dropped)[nd++] = i++;
		if (cmp <= 0)
			(*out)[n++] = up[a++];
		b += cmp >= 0;
	}
	memcpy(*out + n, p->workloads + i, (p->nworkloads - i) * sizeof(**out));
	*nout = n + p->nworkloads - i;
	*ndropped = nd;
	return 0;
}

/* The set hash of w[0..n) and its sum into *set and sum: p's own with the
 * change applied (p's dropped entries out, up in) when p keeps one and the
 * change is a delta on it and smaller than w (cost: the change), else
 * worked out over all of w (a whole state, the first digest with a sum
 * from p, or a change of most of it). NULL on failure. */
static struct hc_ibrl_set_hash *rebuilt_set(const struct peer *p, hc_pb_workload *const *w,
					    size_t n, hc_pb_workload *const *up, size_t nup,
					    const size_t *dropped, size_t ndropped,
					    uint8_t sum[HC_IBRL_DIGEST_LEN])
{
	struct hc_ibrl_set_hash *set = malloc(sizeof(*set));
	int r = set ? 0 : -ENOMEM;

	/* by the change while that is cheaper than the whole: a change of
	 * every workload (their proofs, each period) costs n, not 2n */
	if (r == 0 && p && p->set && dropped && ndropped + nup < n) {
		*set = *p->set;
		for (size_t i = 0; r == 0 && i < ndropped; i++)
			r = hc_ibrl_set_hash_remove(set, p->workloads[dropped[i]]);
		for (size_t i = 0; r == 0 && i < nup; i++)
			r = hc_ibrl_set_hash_add(set, up[i]);
	} else if (r == 0) {
		r = hc_ibrl_set_hash_of(set, w, n);
	}
	if (r == 0)
		r = hc_ibrl_set_hash_sum(set, sum);
	if (r < 0) {
		free(set);
		return NULL;
	}
	return set;
}

/* Whether a digest carries encoding v2's sum (a sender of this release). */
static bool summarized(const hc_pb_digest *dg)
{
	return dg->workloads_sum.len == HC_IBRL_DIGEST_LEN;
}

/* hc_cluster_state_hash of the rebuilt state, worked out from p's and the
 * change when the address stays (cost: the change). */
static bool route_hash_of_change(const struct peer *p, const hc_pb_digest *dg,
				 hc_pb_workload *const *up, size_t nup, const size_t *dropped,
				 size_t ndropped, uint64_t *hash)
{
	if (!p || !dropped || strcmp(p->node_addr, dg->node_addr ? dg->node_addr : "") != 0)
		return false;
	*hash = p->hash;
	for (size_t i = 0; i < ndropped; i++)
		*hash -= hc_cluster_route_hash(p->workloads[dropped[i]]);
	for (size_t i = 0; i < nup; i++)
		*hash += hc_cluster_route_hash(up[i]);
	return true;
}

/* Judges and installs w[0..n) (id order) as sender's state; w's entries
 * are up's (owned) or p's kept ones (dropped[] lists p's others; NULL: w
 * is up, a whole state). With a sum (this release's senders) the rebuilt
 * state is checked by its set hash and encoding v2's signature, at the
 * change's cost; without (a previous release's), by workloads_hash and the
 * signature over the whole state. */
static enum take_result take_rebuilt(struct hc_cluster *c, const char *sender,
				     const hc_pb_digest *dg, hc_pb_workload **w, size_t n,
				     hc_pb_workload **up, size_t nup, const size_t *dropped,
				     size_t ndropped)
{
	struct state_meta m = { dg->node_addr, dg->http_port, dg->respawn, dg->state_version,
				dg->beacon, dg->state_signature, NULL };
	struct peer *p = hc_cluster_state_peer(c, sender);
	struct state_hints hints = { .whash = dg->workloads_hash };
	uint8_t sum[HC_IBRL_DIGEST_LEN];
	bool verified, pin;
	enum take_result res = TAKEN;

	if (n != dg->workload_count) {
		res = NEED_FULL;
	} else if (summarized(dg)) {
		hints.set = rebuilt_set(p, w, n, up, nup, dropped, ndropped, sum);
		if (!hints.set)
			res = IGNORED;
		else if (memcmp(sum, dg->workloads_sum.data, sizeof(sum)) != 0)
			res = NEED_FULL;
		hints.sum = sum;
		m.workloads_sum = sum;
		m.signature = dg->state_signature_v2;
	} else if (hc_cluster_workloads_hash(w, n) != dg->workloads_hash) {
		res = NEED_FULL;
	}
	if (res == TAKEN && hc_cluster_state_judge(c, sender, w, n, &m, &verified, &pin) < 0)
		res = REJECTED;
	if (res != TAKEN) { /* p keeps all it held */
		if (w != up)
			free(w);
		hc_cluster_workloads_free(up, nup);
		free(hints.set);
		return res;
	}
	hints.route_hash_known =
		route_hash_of_change(p, dg, up, nup, dropped, ndropped, &hints.route_hash);
	/* w owns what it holds now: p's entries not in it go */
	for (size_t i = 0; p && dropped && i < ndropped; i++)
		hc_cluster_pb_free(p->workloads[dropped[i]]);
	if (p && (dropped || w != up)) {
		free(p->workloads); /* its kept entries live on in w */
		p->workloads = NULL;
		p->nworkloads = 0;
	}
	if (w != up)
		free(up);
	hc_cluster_state_install(c, sender, w, n, &m, verified, pin, &hints);
	if (summarized(dg) && (p = hc_cluster_state_peer(c, sender)))
		p->summarizes = true; /* checked by its sum: of this release */
	return TAKEN;
}

/* Whether dg names the workloads p holds: by the set hash's sum when both
 * have one (workloads_hash, unchecked then, is only as the sender said),
 * else by count and workloads_hash. */
static bool same_workloads(const struct peer *p, const hc_pb_digest *dg)
{
	if (dg->workload_count != p->nworkloads)
		return false;
	if (summarized(dg) && p->set)
		return memcmp(dg->workloads_sum.data, p->sum, sizeof(p->sum)) == 0;
	return dg->workloads_hash == p->whash;
}

/* Whether dg's delta rebuilds its state from p's copy. A delta lists
 * every workload changed since its base, so it does so from any copy at
 * or after the base and before its own version: a pull's answer, a delta
 * since the version held when it started, still fits once a digest
 * applied meanwhile moved the copy on. The sum and the signature judge
 * what it rebuilds. */
static bool delta_fits(const struct peer *p, const hc_pb_digest *dg)
{
	if (dg->base_version && dg->base_version <= p->version &&
	    (p->version < dg->state_version || dg->base_version == p->version))
		return true;
	return same_workloads(p, dg) && !dg->n_workloads && !dg->n_removed;
}

/* A digest or pull answer of sender: applied, matched, or why not. */
static enum take_result take_digest(struct hc_cluster *c, const char *sender, hc_pb_digest *dg)
{
	struct peer *p = hc_cluster_state_peer(c, sender);
	hc_pb_workload **up, **w = NULL;
	size_t *dropped = NULL;
	size_t nup = 0, n = 0, ndropped = 0;
	enum take_result res;

	if (p && dg->state_version && dg->state_version < p->version) {
		c->states_outdated++;
		return IGNORED;
	}
	if (p && dg->state_version == p->version && same_workloads(p, dg)) {
		c->digests_matched++;
		if (p->version) /* a hypercore node, seen again */
			p->digests = true;
		return MATCHED;
	}
	if (!dg->full && !(p && delta_fits(p, dg)))
		return NEED_PULL;
	if (!(up = take_upserts(dg, &nup)))
		return IGNORED;
	if (dg->full) {
		res = take_rebuilt(c, sender, dg, up, nup, up, nup, NULL, 0);
		c->full_states_pulled += res == TAKEN;
		return res;
	}
	/* the held workloads, with the delta (perhaps none) applied */
	if (merge(p, up, nup, dg->removed, dg->n_removed, &w, &n, &dropped, &ndropped) < 0) {
		free(w);
		free(dropped);
		hc_cluster_workloads_free(up, nup);
		return IGNORED;
	}
	res = take_rebuilt(c, sender, dg, w, n, up, nup, dropped, ndropped);
	free(dropped);
	if (res == TAKEN)
		c->deltas_applied++;
	return res;
}

static struct pull *find_pull(struct delta_state *d, const char *name)
{
	for (size_t i = 0; i < d->npulls; i++)
		if (strcmp(d->pulls[i].name, name) == 0)
			return &d->pulls[i];
	return NULL;
}

static void drop_pull(struct delta_state *d, struct pull *pl)
{
	free(pl->name);
	memmove(pl, pl + 1, (size_t)(&d->pulls[d->npulls] - pl - 1) * sizeof(*pl));
	d->npulls--;
}

struct pull_job {
	struct job job;
	uint64_t id;
	char host[64];
	uint16_t port;
	uint64_t since;
	char token[HC_AUTH_TOKEN_MAX + 1];
	int rc;
	struct hc_httpc_response resp;
};

static void pull_job_run(struct job *j)
{
	struct pull_job *pj = (struct pull_job *)j;
	char path[96], err[256];

	snprintf(path, sizeof(path), "/cluster/state?since=%llu", (unsigned long long)pj->since);
	if (hc_cluster_owner_get(pj->host, pj->port, pj->token, path, NULL, "state", &pj->resp,
				 err, sizeof(err)) != HC_RPC_OK) {
		hc_log(HC_LOG_DEBUG, "state pull: %s", err);
		pj->rc = -EHOSTUNREACH;
	} else if (pj->resp.status != 200) {
		pj->rc = -EPROTO;
	}
}

static void pull_job_done(struct job *j)
{
	struct pull_job *pj = (struct pull_job *)j;

	if (!j->c->closing && pj->rc == 0) {
		hc_cluster_delta_pulled(j->c, pj->id, 0, (uint8_t *)pj->resp.body,
					pj->resp.body_len);
		pj->resp.body = NULL;
	} else if (!j->c->closing) {
		hc_cluster_delta_pulled(j->c, pj->id, pj->rc, NULL, 0);
	}
	free(pj->resp.body);
	free(pj);
}

static int pull_start(struct hc_cluster *c, struct pull *pl)
{
	const struct peer *p = hc_cluster_state_peer(c, pl->name);
	uint64_t since = p && !pl->full ? p->version : 0;
	struct pull_job *pj;
	int r;

	pl->id = ++c->delta->next_id;
	pl->queued = false;
	pl->started_ms = hc_loop_now_ms(c->loop);
	pl->again = false;
	c->pulls++;
	if (c->state_pull_hook)
		return c->state_pull_hook(c, pl->name, since, pl->id);
	if (!pl->host[0] || !pl->port)
		return -EHOSTUNREACH;
	pj = calloc(1, sizeof(*pj));
	if (!pj)
		return -ENOMEM;
	pj->id = pl->id;
	pj->since = since;
	pj->port = pl->port;
	snprintf(pj->host, sizeof(pj->host), "%s", pl->host);
	snprintf(pj->token, sizeof(pj->token), "%s", c->api_token);
	r = hc_cluster_job_start_thread(c, &pj->job, pull_job_run, pull_job_done);
	if (r < 0)
		free(pj);
	return r;
}

/* Whether pl may start now: queued, and its owner's last pull started
 * PULL_MIN_INTERVAL_MS ago or more. */
static bool pull_due(const struct pull *pl, uint64_t now)
{
	return pl->queued && (!pl->started_ms || now - pl->started_ms >= PULL_MIN_INTERVAL_MS);
}

/* Starts due pulls while fewer than PULLS_INFLIGHT run. */
static void pump(struct hc_cluster *c)
{
	struct delta_state *d = c->delta;
	uint64_t now = hc_loop_now_ms(c->loop);
	size_t running = 0;

	for (size_t i = 0; i < d->npulls; i++)
		running += d->pulls[i].id != 0;
	for (size_t i = 0; i < d->npulls && running < PULLS_INFLIGHT;) {
		struct pull *pl = &d->pulls[i];
		int r;

		if (!pull_due(pl, now)) {
			i++;
			continue;
		}
		r = pull_start(c, pl);
		if (r == 0) {
			running++;
			i++;
			continue;
		}
		c->pull_failures[PULL_FAIL_UNAVAILABLE]++;
		hc_log(HC_LOG_DEBUG, "cannot pull the state of %s: %s", pl->name, strerror(-r));
		drop_pull(d, pl);
	}
}

/* Queues a pull of name's state from host:port (its digest's). */
static void want(struct hc_cluster *c, const char *name, const char *host, uint32_t port,
		 bool full)
{
	struct delta_state *d = c->delta;
	struct pull *pl = find_pull(d, name), *grown;

	if (pl) {
		pl->again |= pl->id != 0;
		pl->queued |= pl->id == 0;
		pl->full |= full && !pl->id;
	} else if (d->npulls < PULLS_QUEUED_MAX &&
		   (grown = realloc(d->pulls, (d->npulls + 1) * sizeof(*grown)))) {
		d->pulls = grown;
		pl = &d->pulls[d->npulls];
		memset(pl, 0, sizeof(*pl));
		pl->name = strdup(name);
		pl->full = full;
		pl->queued = true;
		if (!pl->name)
			return;
		d->npulls++;
	}
	if (pl && host && *host && port <= 65535) {
		snprintf(pl->host, sizeof(pl->host), "%s", host);
		pl->port = (uint16_t)port;
	}
	pump(c);
}

void hc_cluster_delta_want(struct hc_cluster *c, const char *name)
{
	const struct peer *p = hc_cluster_state_peer(c, name);

	want(c, name, p ? p->node_addr : NULL, p ? p->http_port : 0, false);
}

/* Where a digest's sender may be pulled from: the address it names only
 * when it is that member's (state.c's rule), and the HTTP port of its
 * verified state when we hold one (a digest is not checked before its
 * pull, so it does not get to pick where our token goes). */
static void pull_target(struct hc_cluster *c, const char *sender, const hc_pb_digest *dg,
			const char **host, uint32_t *port)
{
	const struct peer *p = hc_cluster_state_peer(c, sender);

	*host = dg->node_addr && hc_cluster_addr_plausible(c, sender, dg->node_addr)
			? dg->node_addr
			: NULL;
	*port = p && p->verified && p->http_port ? p->http_port : dg->http_port;
}

static bool digest_sane(struct hc_cluster *c, const hc_pb_digest *dg)
{
	return dg->node && *dg->node && strcmp(dg->node, hc_cluster_self(c)) != 0 &&
	       dg->workload_count <= MAX_PEER_WORKLOADS && dg->n_workloads <= MAX_PEER_WORKLOADS &&
	       dg->n_removed <= MAX_PEER_WORKLOADS && hc_cluster_member_alive(c, dg->node);
}

/* Whether a digest that asks for a pull may have one: a digest carrying
 * its sum is judged before (its encoding v2 signature covers all but the
 * workloads, so it is checked without them): one that is not its named
 * node's, or implausible, or older than what is held, makes no node pull
 * (counted as a state rejected). A previous release's digest cannot be
 * checked before: its pull is only rate-limited. */
static bool summary_judged(struct hc_cluster *c, const hc_pb_digest *dg)
{
	struct state_meta m = { dg->node_addr, dg->http_port, dg->respawn, dg->state_version,
				dg->beacon, dg->state_signature_v2, dg->workloads_sum.data };
	bool verified, pin;

	if (!summarized(dg))
		return true;
	if (hc_cluster_state_judge(c, dg->node, NULL, dg->workload_count, &m, &verified,
				   &pin) < 0) {
		c->pulls_refused++;
		return false;
	}
	return true;
}

void hc_cluster_delta_on_digest(struct hc_cluster *c, const uint8_t *payload, size_t len)
{
	hc_pb_digest *dg = cluster__services__api__state_digest__unpack(NULL, len, payload);
	const char *host;
	uint32_t port;
	enum take_result res;

	if (dg && dg->node && strcmp(dg->node, hc_cluster_self(c)) == 0) {
		hc_cluster_pb_free(dg); /* our own, delivered back */
		return;
	}
	c->state_bytes_received[STATE_BYTES_DIGEST] += len;
	if (!dg || !digest_sane(c, dg)) {
		c->chunks_dropped++;
		hc_log(HC_LOG_DEBUG, "state digest from %s dropped",
		       dg && dg->node ? dg->node : "?");
		hc_cluster_pb_free(dg);
		return;
	}
	res = take_digest(c, dg->node, dg);
	if ((res == NEED_PULL || res == NEED_FULL) && summary_judged(c, dg)) {
		pull_target(c, dg->node, dg, &host, &port);
		want(c, dg->node, host, port, res == NEED_FULL);
	}
	hc_cluster_pb_free(dg);
}

static void pull_failed(struct hc_cluster *c, struct pull *pl, enum pull_failure why)
{
	c->pull_failures[why]++;
	hc_log(HC_LOG_DEBUG, "pull of the state of %s failed: %s", pl->name,
	       hc_cluster_pull_failure_names[why]);
}

void hc_cluster_delta_pulled(struct hc_cluster *c, uint64_t id, int rc, uint8_t *buf,
			     size_t len)
{
	struct delta_state *d = c->delta;
	struct pull *pl = NULL;
	hc_pb_digest *dg = NULL;
	enum take_result res = IGNORED;
	bool again;

	for (size_t i = 0; d && id && i < d->npulls && !pl; i++)
		if (d->pulls[i].id == id)
			pl = &d->pulls[i];
	if (!pl) { /* timed out already, or the node went */
		free(buf);
		return;
	}
	c->state_bytes_received[STATE_BYTES_PULL] += len;
	if (rc < 0) {
		pull_failed(c, pl, rc == -EPROTO ? PULL_FAIL_REFUSED : PULL_FAIL_UNAVAILABLE);
	} else if (len > PULL_MAX_BYTES) {
		pull_failed(c, pl, PULL_FAIL_TOO_LARGE);
	} else if (!(dg = cluster__services__api__state_digest__unpack(NULL, len, buf)) ||
		   !dg->node || strcmp(dg->node, pl->name) != 0) {
		pull_failed(c, pl, PULL_FAIL_MALFORMED);
	} else if (!hc_cluster_member_alive(c, dg->node)) {
		pull_failed(c, pl, PULL_FAIL_GONE);
	} else if (!digest_sane(c, dg)) {
		pull_failed(c, pl, dg->workload_count > MAX_PEER_WORKLOADS ? PULL_FAIL_TOO_LARGE
									    : PULL_FAIL_MALFORMED);
	} else {
		res = take_digest(c, pl->name, dg);
		if (res == REJECTED)
			pull_failed(c, pl, PULL_FAIL_REJECTED);
		else if (res == NEED_PULL || res == NEED_FULL)
			pull_failed(c, pl, PULL_FAIL_MISMATCH);
	}
	free(buf);
	hc_cluster_pb_free(dg);
	/* a delta that did not fit our copy: once more, for the whole state */
	again = pl->again || ((res == NEED_PULL || res == NEED_FULL) && !pl->full);
	pl->id = 0; /* kept until the interval is over: the next pull waits */
	pl->queued = again;
	pl->full = again && (res == NEED_PULL || res == NEED_FULL);
	pl->again = false;
	pump(c);
}

void hc_cluster_delta_housekeeping(struct hc_cluster *c)
{
	struct delta_state *d = c->delta;
	uint64_t now = hc_loop_now_ms(c->loop);

	for (size_t i = 0; i < d->npulls;) {
		struct pull *pl = &d->pulls[i];

		if (pl->id && now - pl->started_ms > PULL_TIMEOUT_MS) {
			/* a stalled owner: its answer, if it ever comes, is dropped */
			pull_failed(c, pl, PULL_FAIL_TIMEOUT);
			pl->id = 0;
		}
		if (pl->id || pl->queued || now - pl->started_ms < PULL_MIN_INTERVAL_MS) {
			i++;
			continue;
		}
		drop_pull(d, pl);
	}
	/* strangers that are known now, or gone */
	for (size_t i = 0; i < d->nstrangers;) {
		const char *name = d->strangers[i].name;

		if (!hc_cluster_state_peer(c, name) && hc_cluster_member_alive(c, name)) {
			i++;
			continue;
		}
		free(d->strangers[i].name);
		d->strangers[i] = d->strangers[--d->nstrangers];
	}
	pump(c);
}

void hc_cluster_delta_collect(struct hc_cluster *c, struct hc_metrics_writer *w)
{
	static const char *const kinds[STATE_BYTES_KINDS] = { "chunked", "digest", "pull" };

	hc_cluster_metric_counters(w, "hypercore_state_bytes_sent_total",
				   "State bytes sent: chunks, digests, pull answers served", "kind",
				   kinds, c->state_bytes_sent, STATE_BYTES_KINDS);
	hc_cluster_metric_counters(w, "hypercore_state_bytes_received_total",
				   "State bytes received: chunks, digests, pull answers", "kind",
				   kinds, c->state_bytes_received, STATE_BYTES_KINDS);
	hc_cluster_metric_counter(w, "hypercore_state_digests_sent_total",
				  "State digests broadcast", c->digests_sent);
	hc_cluster_metric_counter(w, "hypercore_state_digests_matched_total",
				  "Digests that matched the state held: nothing to apply",
				  c->digests_matched);
	hc_cluster_metric_counter(w, "hypercore_state_deltas_applied_total",
				  "States rebuilt from the copy held and a delta, and used",
				  c->deltas_applied);
	hc_cluster_metric_counter(w, "hypercore_state_pulls_total",
				  "Pulls of another node's state started", c->pulls);
	hc_cluster_metric_counter(w, "hypercore_state_full_pulls_total",
				  "Pulls answered with the whole state (none held, or too old for "
				  "the owner's change log), and used",
				  c->full_states_pulled);
	hc_cluster_metric_counter(w, "hypercore_state_pulls_refused_total",
				  "Digests asking for a pull whose signature or plausibility failed: "
				  "nothing pulled",
				  c->pulls_refused);
	hc_cluster_metric_counter(w, "hypercore_state_pulls_served_total",
				  "GET /cluster/state answered", c->pulls_served);
	hc_cluster_metric_counters(w, "hypercore_state_pull_failures_total",
				   "Pulls that failed, by reason", "reason",
				   hc_cluster_pull_failure_names, c->pull_failures, PULL_FAIL_REASONS);
}
