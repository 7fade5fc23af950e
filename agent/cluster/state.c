/*
 * State broadcasts, as upstream sends them: user event hypercore_state_broadcast
 * carrying NodeStateResponse chunks of at most 10 workloads, the chunk's kind
 * in Node.ip as "<uuid>_complete" (one chunk) or _begin, _part..., _finish.
 * Sent at once on every local change and on a timer; received, reassembled
 * per sender and kept as that node's last state until it goes silent or
 * gossip reports it gone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "dataplane/dataplane.h"
#include "log/log.h"

/* States in flight: a sender has at most MAX_SENDER_ASSEMBLIES (its newest
 * and the one before, which gossip's reordering may still complete), and
 * all senders together MAX_ASSEMBLIES. */
#define MAX_ASSEMBLIES 256
#define MAX_SENDER_ASSEMBLIES 2
#define MAX_CHUNKS (MAX_PEER_WORKLOADS / WORKLOADS_PER_CHUNK)
#define MAX_PEER_WORKLOADS 100000
#define ASSEMBLY_TIMEOUT_MS 60000

static uint32_t period_ms(const struct hc_cluster *c)
{
	return c->cfg.state_period_ms ? c->cfg.state_period_ms : STATE_PERIOD_MS;
}

/* Unix time in ms: state versions follow it, on both sides. */
static uint64_t wall_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* FNV-1a over the packed workloads (their proofs left out) and the
 * address: equal states, equal hashes, whatever order they were learnt in
 * (lists are sorted by id). */
/* FNV-1a of msg packed, folded into *h; a workload packs into the stack
 * buffer (hashing runs over every workload of every state received, so no
 * allocation each). Returns -ENOMEM when a large one cannot be packed. */
static int fnv_packed(const ProtobufCMessage *msg, uint64_t *h, uint64_t *also)
{
	uint8_t stack[2048], *buf = stack;
	size_t len = protobuf_c_message_get_packed_size(msg);

	if (len > sizeof(stack) && !(buf = malloc(len)))
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	for (size_t k = 0; k < len; k++) {
		*h = (*h ^ buf[k]) * 1099511628211ull;
		if (also)
			*also = (*also ^ buf[k]) * 1099511628211ull;
	}
	if (buf != stack)
		free(buf);
	return 0;
}

/* splitmix64's finalizer: spreads an FNV value over all 64 bits before
 * it is summed with others. */
static uint64_t mix(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

uint64_t hc_cluster_route_hash(const hc_pb_workload *w)
{
	/* without its proof, which changes every period and routes nothing */
	hc_pb_workload copy = *w;
	uint64_t h = 1469598103934665603ull;

	copy.proof = NULL;
	(void)fnv_packed(&copy.base, &h, NULL); /* unpackable: hashed as empty */
	return mix(h);
}

uint64_t hc_cluster_state_hash(hc_pb_workload *const *w, size_t n, const char *addr)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *p = addr ? addr : ""; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	for (size_t i = 0; i < n; i++)
		h += hc_cluster_route_hash(w[i]);
	return h;
}

uint64_t hc_cluster_workload_hash(const hc_pb_workload *w, uint64_t *whash)
{
	uint64_t h = 1469598103934665603ull;

	(void)fnv_packed(&w->base, &h, whash);
	if (whash)
		*whash = (*whash ^ 0xff) * 1099511628211ull;
	return h;
}

/* FNV-1a over each workload packed, proof included, then 0xff, in the
 * order given (id order): StateDigest.workloads_hash. */
uint64_t hc_cluster_workloads_hash(hc_pb_workload *const *w, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		hc_cluster_workload_hash(w[i], &h);
	return h;
}

/* ---- sending ---- */

static const char *self_name(const struct hc_cluster *c)
{
	return c->gossip ? hc_gossip_name(c->gossip) : c->node_id;
}

const char *hc_cluster_self(const struct hc_cluster *c)
{
	return self_name(c);
}

/* The workloads we announce: started ones, not those being spawned or
 * restarted (their address is not known yet or about to change). */
static size_t announced(const struct hc_cluster *c, hc_pb_workload **out)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nlocal; i++)
		if (!c->local[i].pending && !c->local[i].restarting && !c->local[i].restart_at_ms)
			out[n++] = c->local[i].state;
	return n;
}

static void chunk_init(const struct hc_cluster *c, hc_pb_state *st,
		       Cluster__Services__Api__Node *node, char *marker)
{
	cluster__services__api__node_state_response__init(st);
	cluster__services__api__node__init(node);
	node->id = (char *)self_name(c);
	node->ip = marker;
	st->node = node;
	st->node_addr = (char *)c->node_addr;
	st->http_port = c->http_port;
	st->respawn = c->cfg.respawn;
	/* every chunk carries the beacon and the whole state's signature, so
	 * any chunk tells upstream receivers (which keep the first or the
	 * last) the node's figures; ours use the last index's */
	st->beacon = c->beacon_out;
	st->state_signature = (char *)c->state_sig;
	/* sized as sent: the index fields are there in every chunk */
	st->chunk_index = st->chunk_count = UINT32_MAX;
	st->state_version = UINT64_MAX;
}

/* Splits w[0..n) into chunks: at most 10 workloads and CHUNK_MAX_BYTES each
 * (one oversized workload still goes alone). ends[k] is chunk k's end. */
static size_t plan_chunks(const struct hc_cluster *c, hc_pb_workload **w, size_t n,
			  size_t *ends)
{
	Cluster__Services__Api__Node node;
	char marker[] = "00000000-0000-0000-0000-000000000000_complete"; /* the longest */
	hc_pb_state st;
	size_t nchunks = 0, start = 0;

	chunk_init(c, &st, &node, marker);
	while (start < n) {
		size_t end = start + 1;

		while (end < n && end - start < WORKLOADS_PER_CHUNK) {
			st.workloads = &w[start];
			st.n_workloads = end + 1 - start;
			if (protobuf_c_message_get_packed_size(&st.base) > CHUNK_MAX_BYTES)
				break;
			end++;
		}
		ends[nchunks++] = end;
		start = end;
	}
	return nchunks;
}

static int send_chunk(struct hc_cluster *c, hc_pb_workload **w, size_t n, const char *uuid,
		      const char *kind, uint32_t index, uint32_t count)
{
	Cluster__Services__Api__Node node;
	char marker[64];
	hc_pb_state st;
	uint8_t *buf;
	size_t len;
	int r;

	snprintf(marker, sizeof(marker), "%s_%s", uuid, kind);
	chunk_init(c, &st, &node, marker);
	st.workloads = w;
	st.n_workloads = n;
	st.chunk_index = index;
	st.chunk_count = count;
	st.state_version = c->state_version;
	buf = hc_cluster_pb_pack(&st.base, &len);
	if (!buf)
		return -ENOMEM;
	r = hc_gossip_user_event(c->gossip, HC_STATE_EVENT, buf, len, true);
	if (r == 0)
		c->state_bytes_sent[STATE_BYTES_CHUNKED] += len;
	free(buf);
	return r;
}

static void broadcast_now(struct hc_cluster *c)
{
	hc_pb_workload **w = calloc(c->nlocal + 1, sizeof(*w));
	size_t *ends = calloc(c->nlocal + 1, sizeof(*ends));
	size_t n, nchunks, start = 0;
	char uuid[HC_WORKLOAD_ID_LEN + 1];
	uint64_t hash, clock;
	bool digest, chunks;
	int r = 0;

	if (!w || !ends || hc_uuid_new(uuid) < 0) {
		c->broadcast_due = true;
		goto out;
	}
	n = announced(c, w);
	hash = hc_cluster_state_hash(w, n, c->node_addr);
	if (hash != c->last_hash)
		c->state_changes++;
	if (hc_gossip_queue_depth(c->gossip) > QUEUE_SKIP_DEPTH) {
		c->broadcast_skipped++;
		c->broadcast_due = true;
		hc_log(HC_LOG_WARN, "gossip queue over %d: state broadcast skipped",
		       QUEUE_SKIP_DEPTH);
		goto out;
	}
	/* before signing: the proofs are part of the workloads signed */
	hc_cluster_proofs_attach(c, true); /* until out: sized and sent with them */
	/* The clock, so receivers can bound a version by theirs; and always
	 * more than the last, should the clock step back. */
	clock = wall_ms();
	c->state_version = clock > c->state_version ? clock : c->state_version + 1;
	hc_cluster_version_sent(c, c->state_version);
	r = hc_cluster_beacon_build(c);
	if (r == 0)
		r = hc_cluster_beacon_sign(c, &(struct hc_ibrl_state_view){
			.node = self_name(c), .node_addr = c->node_addr, .http_port = c->http_port,
			.respawn = c->cfg.respawn, .version = c->state_version,
			.beacon = c->beacon_out, .workloads = w, .nworkloads = n });
	if (r < 0) {
		hc_log(HC_LOG_WARN, "state not signed: %s", strerror(-r));
		c->broadcast_due = true;
		goto out;
	}
	/* the digest's delta is against what the last broadcast announced */
	digest = hc_cluster_delta_record(c, w, n) == 0;
	chunks = !digest || hc_cluster_delta_want_chunks(c); /* no digest: chunks, whatever the mode */
	nchunks = !chunks ? 0 : n ? plan_chunks(c, w, n, ends) : 1;
	for (size_t k = 0; k < nchunks && r == 0; k++) {
		size_t end = n ? ends[k] : 0;
		const char *kind = nchunks == 1	      ? "complete"
				   : k == 0	      ? "begin"
				   : k + 1 == nchunks ? "finish"
						      : "part";

		r = send_chunk(c, &w[start], end - start, uuid, kind, (uint32_t)k, (uint32_t)nchunks);
		start = end;
	}
	if (r == 0 && digest)
		r = hc_cluster_delta_send(c);
	if (r < 0) {
		hc_log(HC_LOG_WARN, "state broadcast failed: %s", strerror(-r));
		c->broadcast_due = true;
		goto out;
	}
	c->broadcasts++;
	c->broadcast_due = false;
	c->last_hash = hash;
	c->last_broadcast_ms = hc_loop_now_ms(c->loop);
	c->last_broadcast_chunked = chunks;
	hc_log(HC_LOG_DEBUG, "state broadcast: %zu workloads in %zu chunks%s", n, nchunks,
	       digest ? " and a digest" : "");
out:
	hc_cluster_proofs_attach(c, false);
	free(w);
	free(ends);
}

static void settle_duplicates(struct hc_cluster *c, const struct peer *p);

void hc_cluster_state_changed(struct hc_cluster *c)
{
	/* a workload adopted here may be one a peer runs already */
	for (size_t i = 0; i < c->npeers; i++)
		if (!c->peers[i].stale)
			settle_duplicates(c, &c->peers[i]);
	hc_cluster_local_notify(c);
	hc_cluster_routes_sync(c);
	if (c->gossip && !c->closing)
		broadcast_now(c);
}

static uint64_t rendezvous(const char *id, const char *node);

/*
 * An unchanged state goes again every REFRESH_PERIODS ticks. After a
 * broadcast off the tick (a change, a member's join) it goes at the first
 * tick half a period short of that or later, so the gap stays under
 * REFRESH_PERIODS + 1/2 periods, well inside SILENCE_PERIODS.
 */
static bool refresh_due(const struct hc_cluster *c, uint64_t now)
{
	return now - c->last_broadcast_ms + period_ms(c) / 2 >=
	       (uint64_t)REFRESH_PERIODS * period_ms(c);
}

int64_t hc_cluster_state_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_cluster *c = arg;
	hc_pb_workload **w = calloc(c->nlocal + 1, sizeof(*w));
	bool changed;

	(void)id;
	hc_cluster_proofs_tick(c); /* carried by the next broadcast */
	if (!w)
		return period_ms(c);
	changed = hc_cluster_state_hash(w, announced(c, w), c->node_addr) != c->last_hash;
	free(w);
	/* A member found to know no digests has none of our state: it gets
	 * the chunks now, not at the next refresh. */
	if (changed || c->broadcast_due || refresh_due(c, hc_loop_now_ms(loop)) ||
	    (!c->last_broadcast_chunked && hc_cluster_delta_want_chunks(c)))
		broadcast_now(c);
	return period_ms(c);
}

int64_t hc_cluster_state_announce(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_cluster *c = arg;

	(void)loop;
	(void)id;
	c->announce_timer = 0;
	broadcast_now(c);
	return HC_LOOP_TIMER_DONE;
}

uint32_t hc_cluster_state_phase_ms(const struct hc_cluster *c)
{
	return 1 + (uint32_t)(rendezvous("state tick", self_name(c)) % period_ms(c));
}

/* ---- receiving ---- */

/* The rendezvous weight of node for workload id: every node computes the
 * same, so choices made from it agree cluster-wide. */
static uint64_t rendezvous(const char *id, const char *node)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *s = id; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	for (const char *s = node; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return h;
}

/* Whether our copy of a workload that peer also runs is the one to keep. */
static bool keep_ours(struct hc_cluster *c, const char *id, const char *peer)
{
	uint64_t ours = rendezvous(id, self_name(c)), theirs = rendezvous(id, peer);

	return ours > theirs || (ours == theirs && strcmp(self_name(c), peer) < 0);
}

static int workload_key_cmp(const void *key, const void *elem);

/* Whether peer p (workloads in id order) claims id. */
static bool peer_claims(const struct peer *p, const char *id)
{
	return bsearch(id, p->workloads, p->nworkloads, sizeof(*p->workloads),
		       workload_key_cmp) != NULL;
}

/* Two nodes claim the same workload (a failed node came back with what was
 * respawned elsewhere meanwhile, its shims having outlived its agent): both
 * make the same choice and the other copy stops, so it runs once. The
 * claims are intersected from the smaller side, so a peer holding 10,000
 * costs this node what it runs itself; the ids are taken first, as a
 * report may change the local list. */
static void settle_duplicates(struct hc_cluster *c, const struct peer *p)
{
	bool from_local = c->nlocal < p->nworkloads;
	size_t n = from_local ? c->nlocal : p->nworkloads, nd = 0;
	char (*dup)[HC_WORKLOAD_ID_LEN + 1] = NULL;

	for (size_t i = 0; i < n; i++) {
		const char *id = from_local ? c->local[i].state->id : p->workloads[i]->id;
		struct local_wl *l = from_local ? &c->local[i] : hc_cluster_local_find(c, id);

		if (!l || l->pending || l->stopping || keep_ours(c, id, p->name) ||
		    (from_local && !peer_claims(p, id)))
			continue;
		if (!dup && !(dup = calloc(n, sizeof(*dup)))) {
			hc_log(HC_LOG_WARN, "duplicates of %s not settled: out of memory", p->name);
			return;
		}
		snprintf(dup[nd++], sizeof(*dup), "%s", id);
	}
	for (size_t i = 0; i < nd; i++) {
		hc_log(HC_LOG_WARN, "workload %s also runs on %s: stopping our copy", dup[i],
		       p->name);
		c->duplicates_stopped++;
		c->report(c, &(struct hc_cluster_report){ .kind = HC_CLUSTER_REPORT_DUPLICATE,
							  .node = p->name, .id = dup[i] });
	}
	free(dup);
}

void hc_cluster_workloads_free(hc_pb_workload **w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		hc_cluster_pb_free(w[i]);
	free(w);
}

struct peer *hc_cluster_state_peer(struct hc_cluster *c, const char *name)
{
	for (size_t i = 0; i < c->npeers; i++)
		if (strcmp(c->peers[i].name, name) == 0)
			return &c->peers[i];
	return NULL;
}

static void peer_fini(struct peer *p)
{
	free(p->name);
	free(p->node_addr);
	hc_cluster_workloads_free(p->workloads, p->nworkloads);
	hc_cluster_pb_free(p->beacon);
	free(p->set);
}

static void assembly_fini(struct assembly *a)
{
	for (uint32_t i = 0; a->chunks && i < a->count; i++)
		hc_cluster_pb_free(a->chunks[i]);
	free(a->chunks);
	free(a->sender);
	free(a->uuid);
	free(a->node_addr);
	hc_cluster_pb_free(a->beacon);
	free(a->signature);
	hc_cluster_workloads_free(a->workloads, a->nworkloads);
}

static void drop_assembly(struct hc_cluster *c, size_t i)
{
	assembly_fini(&c->assemblies[i]);
	memmove(&c->assemblies[i], &c->assemblies[i + 1],
		(c->nassemblies - i - 1) * sizeof(*c->assemblies));
	c->nassemblies--;
}

/* Moves the chunk's workloads onto *w (the chunk keeps none). */
static int take_workloads(hc_pb_state *chunk, hc_pb_workload ***w, size_t *n)
{
	hc_pb_workload **grown;

	if (*n + chunk->n_workloads > MAX_PEER_WORKLOADS)
		return -E2BIG;
	grown = realloc(*w, (*n + chunk->n_workloads + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	*w = grown;
	for (size_t i = 0; i < chunk->n_workloads; i++) {
		hc_pb_workload *wl = chunk->workloads[i];

		/* a workload without an id cannot be routed or stopped */
		if (wl->id && hc_uuid_valid(wl->id))
			grown[(*n)++] = wl;
		else
			hc_cluster_pb_free(wl);
	}
	chunk->n_workloads = 0;
	return 0;
}

static int workload_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, (*(hc_pb_workload *const *)elem)->id);
}

static int workload_cmp(const void *a, const void *b)
{
	return strcmp((*(hc_pb_workload *const *)a)->id, (*(hc_pb_workload *const *)b)->id);
}

static struct state_meta meta_of(const hc_pb_state *st)
{
	return (struct state_meta){ st->node_addr, st->http_port, st->respawn, st->state_version,
				    st->beacon, st->state_signature, NULL };
}

bool hc_cluster_member_alive(struct hc_cluster *c, const char *name)
{
	size_t n = 0;
	struct hc_gossip_member *ms;
	bool alive = false;

	if (c->sender_alive)
		return c->sender_alive(c, name);
	ms = hc_cluster_members(c, &n);
	for (size_t i = 0; ms && i < n && !alive; i++)
		alive = strcmp(ms[i].name, name) == 0 && ms[i].status == HC_GOSSIP_ALIVE;
	hc_gossip_members_free(ms, n);
	return alive;
}

int hc_cluster_member_ip(struct hc_cluster *c, const char *name, struct hc_ipaddr *out)
{
	size_t n = 0;
	struct hc_gossip_member *ms = hc_cluster_members(c, &n);
	int r = -ENOENT;

	for (size_t i = 0; ms && i < n && r; i++) {
		if (strcmp(ms[i].name, name) != 0)
			continue;
		r = hc_cluster_addr_ip(ms[i].addr, out);
		break;
	}
	hc_gossip_members_free(ms, n);
	return r;
}

/* Serf user events carry no sender: any member could name another node in
 * a state. Until states are signed, what needs no keys is checked: */

/* node_addr, where routes send the sender's traffic, must be the IP of the
 * gossip address of the member it names, which is what hypercore senders
 * announce. Empty (upstream senders have no such field) stands for that
 * same address: routes.c then uses the member's. No member tag carries
 * another address today, so no other one is accepted. */
bool hc_cluster_addr_plausible(struct hc_cluster *c, const char *sender, const char *addr)
{
	struct hc_ipaddr said, member;

	if (!addr || !*addr)
		return true;
	return hc_dp_ipaddr_parse(addr, &said) == 0 &&
	       hc_cluster_member_ip(c, sender, &member) == 0 &&
	       memcmp(&said, &member, sizeof(said)) == 0;
}

/* The version may not run ahead of our clock, nor of the version held
 * from the sender by more than the time since it came (both give the
 * bound's slack), and a node that versions its states does not drop them.
 * The last two only while that state is fresh: a node that was silent
 * (restarted, its clock stepped) starts again under the first rule alone.
 * A node restarting after an outage was forgotten meanwhile, or is
 * silent; its first version is then its clock at the start. */
static int version_reject(struct hc_cluster *c, const struct peer *p, uint64_t version)
{
	uint64_t now = hc_loop_now_ms(c->loop);
	uint64_t since = p ? now - p->recv_ms : 0;
	bool fresh = p && p->version && since <= (uint64_t)SILENCE_PERIODS * period_ms(c);

	if (!version)
		return fresh ? STATE_REJECT_VERSION_MISSING : -1;
	if (version > wall_ms() + STATE_VERSION_AHEAD_MAX_MS)
		return STATE_REJECT_VERSION_AHEAD;
	if (fresh && version > p->version &&
	    version - p->version > since + STATE_VERSION_AHEAD_MAX_MS)
		return STATE_REJECT_VERSION_JUMP;
	return -1;
}

/* Why a complete state from sender must not be used (STATE_REJECT_*), or
 * -1. A rejected state changes nothing: no route, no peer, no stop. */
static int state_reject(struct hc_cluster *c, const char *sender, const struct peer *p,
			const struct state_meta *m)
{
	if (!hc_cluster_addr_plausible(c, sender, m->addr))
		return STATE_REJECT_ADDR_MISMATCH;
	return version_reject(c, p, m->version);
}

/* Whether a complete state from sender may replace the one held: its
 * signature first (an unsigned or forged state touches no route, no
 * placement, no respawn), then plausibility, then the version order. 0
 * (with *verified and *pin for hc_cluster_state_install) or -1 when not
 * (counted and logged). Takes nothing. */
int hc_cluster_state_judge(struct hc_cluster *c, const char *sender, hc_pb_workload *const *w,
			   size_t n, const struct state_meta *m, bool *verified, bool *pin)
{
	struct peer *p = hc_cluster_state_peer(c, sender);
	struct hc_ibrl_state_view view = {
		.node = sender, .node_addr = m->addr, .http_port = m->http_port,
		.respawn = m->respawn, .version = m->version, .beacon = m->beacon,
		.workloads = w, .nworkloads = n, .workloads_sum = m->workloads_sum,
	};
	int reject = hc_cluster_beacon_check(c, &view, m->signature, verified, pin);
	char why[160];

	if (reject >= 0) {
		const uint8_t *pub = hc_ibrl_beacon_public(m->beacon);
		char id[HC_IBRL_BEACON_ID_LEN + 1] = "none";

		if (pub)
			hc_ibrl_beacon_node_id(pub, id);
		snprintf(why, sizeof(why), "%s (key %s, version %llu)",
			 hc_cluster_ibrl_reject_names[reject], id, (unsigned long long)m->version);
		hc_cluster_note_rejected(c, &c->ibrl_rejected[reject], "state", sender, why);
		return -1;
	}
	reject = state_reject(c, sender, p, m);
	if (reject >= 0) {
		snprintf(why, sizeof(why), "%s (node_addr \"%s\", version %llu)",
			 hc_cluster_state_reject_names[reject], m->addr ? m->addr : "",
			 (unsigned long long)m->version);
		hc_cluster_note_rejected(c, &c->states_rejected[reject], "state", sender, why);
		return -1;
	}
	if (p && m->version && m->version < p->version) {
		c->states_outdated++;
		hc_log(HC_LOG_DEBUG, "state %llu of %s is older than %llu: dropped",
		       (unsigned long long)m->version, sender, (unsigned long long)p->version);
		return -1;
	}
	return 0;
}

void hc_cluster_state_install(struct hc_cluster *c, const char *sender, hc_pb_workload **w,
			      size_t n, const struct state_meta *m, bool verified, bool pin,
			      const struct state_hints *hints)
{
	struct peer *p = hc_cluster_state_peer(c, sender);
	struct hc_ibrl_set_hash *set = hints ? hints->set : NULL;
	hc_pb_beacon *beacon = NULL;
	uint64_t hash;

	if (m->beacon && !(beacon = hc_cluster_pb_clone(&m->beacon->base))) {
		hc_cluster_workloads_free(w, n);
		free(set);
		return;
	}
	if (pin)
		hc_cluster_beacon_pin(c, sender, m->beacon);
	if (n && !hints)
		qsort(w, n, sizeof(*w), workload_cmp);
	hash = hints && hints->route_hash_known ? hints->route_hash
						: hc_cluster_state_hash(w, n, m->addr);
	if (!p) {
		struct peer *grown = realloc(c->peers, (c->npeers + 1) * sizeof(*grown));
		char *name = strdup(sender);

		if (grown)
			c->peers = grown;
		if (!grown || !name) {
			free(name);
			hc_cluster_pb_free(beacon);
			hc_cluster_workloads_free(w, n);
			free(set);
			return;
		}
		p = &c->peers[c->npeers++];
		memset(p, 0, sizeof(*p));
		p->name = name;
		p->hash = hash + 1; /* differs: routes get synced */
		p->first_ms = hc_loop_now_ms(c->loop);
	}
	hc_cluster_workloads_free(p->workloads, p->nworkloads);
	p->workloads = w;
	p->nworkloads = n;
	/* by digest: as sent (with a set hash, the sum was checked instead) */
	p->whash = hints ? hints->whash : hc_cluster_workloads_hash(w, n);
	p->digests |= hints != NULL;
	free(p->set);
	p->set = set;
	if (set)
		memcpy(p->sum, hints->sum, sizeof(p->sum));
	free(p->node_addr);
	p->node_addr = strdup(m->addr ? m->addr : "");
	p->http_port = m->http_port;
	p->respawn = m->respawn;
	p->version = m->version;
	p->recv_ms = hc_loop_now_ms(c->loop);
	p->left_ms = 0; /* back (or it never left) */
	hc_cluster_pb_free(p->beacon);
	p->beacon = beacon;
	p->verified = verified;
	if (verified)
		c->ibrl_verified++;
	else
		c->ibrl_unverified++;
	c->states_received++;
	if (p->stale) {
		p->stale = false;
		p->hash = hash + 1; /* routed again */
	}
	if (p->hash != hash) {
		p->hash = hash;
		hc_log(HC_LOG_DEBUG, "state of %s: %zu workloads", sender, n);
		settle_duplicates(c, p);
		hc_cluster_routes_sync(c);
	}
}

/* A complete state from sender: it replaces the last one unless it is
 * implausible or older (versions come from hypercore senders only).
 * Takes w. */
static void apply_state(struct hc_cluster *c, const char *sender, hc_pb_workload **w, size_t n,
			const struct state_meta *m)
{
	bool verified, pin;

	if (hc_cluster_state_judge(c, sender, w, n, m, &verified, &pin) < 0) {
		hc_cluster_workloads_free(w, n);
		return;
	}
	hc_cluster_state_install(c, sender, w, n, m, verified, pin, NULL);
}

static struct assembly *find_assembly(struct hc_cluster *c, const char *sender, const char *uuid)
{
	for (size_t i = 0; i < c->nassemblies; i++)
		if (strcmp(c->assemblies[i].sender, sender) == 0 &&
		    strcmp(c->assemblies[i].uuid, uuid) == 0)
			return &c->assemblies[i];
	return NULL;
}

static int by_sender(const void *a, const void *b, void *arg)
{
	const struct assembly *as = arg;
	uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
	int r = strcmp(as[x].sender, as[y].sender);

	return r ? r : (x > y) - (x < y);
}

/* The oldest assembly of the sender holding the most (all slots taken). */
static ssize_t busiest_oldest(const struct hc_cluster *c)
{
	uint16_t pos[MAX_ASSEMBLIES];
	size_t n = c->nassemblies, most = 0;
	ssize_t victim = -1;

	for (size_t i = 0; i < n; i++)
		pos[i] = (uint16_t)i;
	qsort_r(pos, n, sizeof(*pos), by_sender, c->assemblies);
	for (size_t i = 0, run = 0; i < n; i += run) {
		for (run = 1; i + run < n && strcmp(c->assemblies[pos[i]].sender,
						    c->assemblies[pos[i + run]].sender) == 0;)
			run++;
		if (run > most || (run == most && pos[i] < victim)) {
			most = run;
			victim = pos[i]; /* the first of a run is that sender's oldest */
		}
	}
	return victim;
}

/*
 * Which assembly makes room for a new one from sender, or -1 for none
 * needed. A sender at its limit replaces its own oldest; otherwise, when all
 * slots are taken, the oldest of whoever holds the most goes. A flood of
 * fake chunks under one member's name thus only ever evicts that member's
 * own states, and one under many names evicts none of a sender that keeps
 * fewer in flight than the flooders (MAX_ASSEMBLIES / MAX_SENDER_ASSEMBLIES
 * senders fit side by side).
 */
static ssize_t assembly_victim(const struct hc_cluster *c, const char *sender)
{
	size_t own = 0;
	ssize_t own_oldest = -1;

	for (size_t i = 0; i < c->nassemblies; i++)
		if (strcmp(c->assemblies[i].sender, sender) == 0 && own++ == 0)
			own_oldest = (ssize_t)i;
	if (own >= MAX_SENDER_ASSEMBLIES)
		return own_oldest;
	return c->nassemblies >= MAX_ASSEMBLIES ? busiest_oldest(c) : -1;
}

/* A new assembly; in marker order a sender has one in flight (a new
 * _begin ends its older one), indexed ones may overlap (versions decide). */
static struct assembly *new_assembly(struct hc_cluster *c, const char *sender, const char *uuid,
				     uint32_t count)
{
	struct assembly *a;
	ssize_t victim;

	for (size_t i = 0; !count && i < c->nassemblies; i++)
		if (strcmp(c->assemblies[i].sender, sender) == 0 && !c->assemblies[i].count) {
			drop_assembly(c, i);
			break;
		}
	victim = assembly_victim(c, sender);
	if (victim >= 0) {
		c->assemblies_evicted++;
		hc_log(HC_LOG_DEBUG, "state of %s in flight dropped for a newer one from %s",
		       c->assemblies[victim].sender, sender);
		drop_assembly(c, (size_t)victim);
	}
	a = realloc(c->assemblies, (c->nassemblies + 1) * sizeof(*a));
	if (!a)
		return NULL;
	c->assemblies = a;
	a = &c->assemblies[c->nassemblies];
	memset(a, 0, sizeof(*a));
	a->sender = strdup(sender);
	a->uuid = strdup(uuid);
	a->count = count;
	a->chunks = count ? calloc(count, sizeof(*a->chunks)) : NULL;
	a->started_ms = hc_loop_now_ms(c->loop);
	if (!a->sender || !a->uuid || (count && !a->chunks)) {
		assembly_fini(a);
		return NULL;
	}
	c->nassemblies++;
	return a;
}

/* Takes assembly a out of the list (the caller finis it). */
static struct assembly detach_assembly(struct hc_cluster *c, struct assembly *a)
{
	struct assembly done = *a;

	memmove(a, a + 1, (size_t)(&c->assemblies[c->nassemblies] - a - 1) * sizeof(*a));
	c->nassemblies--;
	return done;
}

static void drop_chunk(struct hc_cluster *c, const char *why, const char *sender)
{
	c->chunks_dropped++;
	hc_log(HC_LOG_DEBUG, "state chunk from %s dropped: %s", sender ? sender : "?", why);
}

/* A chunk of an indexed state: kept until every index is in, then the
 * workloads are joined in index order and applied. Takes chunk. */
static void on_indexed_chunk(struct hc_cluster *c, const char *sender, const char *uuid,
			     hc_pb_state *chunk)
{
	struct assembly *a = find_assembly(c, sender, uuid);
	struct assembly done;
	hc_pb_workload **w = NULL;
	struct state_meta m;
	size_t n = 0;
	int r = 0;

	if (!a && !(a = new_assembly(c, sender, uuid, chunk->chunk_count))) {
		hc_cluster_pb_free(chunk);
		return;
	}
	if (a->count != chunk->chunk_count || a->chunks[chunk->chunk_index]) {
		drop_chunk(c, a->count != chunk->chunk_count ? "chunk count changed"
							     : "chunk seen already",
			   sender);
		hc_cluster_pb_free(chunk);
		return;
	}
	a->chunks[chunk->chunk_index] = chunk;
	if (++a->received < a->count)
		return;
	done = detach_assembly(c, a);
	for (uint32_t i = 0; i < done.count && r == 0; i++)
		r = take_workloads(done.chunks[i], &w, &n);
	m = meta_of(done.chunks[0]);
	/* the beacon and the signature of the last chunk (all carry them) */
	m.beacon = done.chunks[done.count - 1]->beacon;
	m.signature = done.chunks[done.count - 1]->state_signature;
	if (r < 0) {
		hc_cluster_workloads_free(w, n);
		drop_chunk(c, "state too large", sender);
	} else {
		apply_state(c, sender, w, n, &m);
	}
	assembly_fini(&done);
}

/* A chunk in upstream's marker order: _begin, _part..., _finish. */
static void on_marked_chunk(struct hc_cluster *c, const char *sender, const char *uuid,
			    const char *kind, hc_pb_state *chunk)
{
	struct assembly *a;
	struct assembly done;
	struct state_meta m;

	if (strcmp(kind, "begin") == 0) {
		a = new_assembly(c, sender, uuid, 0);
		if (!a)
			return;
		a->node_addr = strdup(chunk->node_addr ? chunk->node_addr : "");
		a->http_port = chunk->http_port;
		a->respawn = chunk->respawn;
	} else if (strcmp(kind, "part") == 0 || strcmp(kind, "finish") == 0) {
		a = find_assembly(c, sender, uuid);
		if (!a || a->count) {
			drop_chunk(c, "part of a state whose beginning was missed", sender);
			return;
		}
	} else {
		drop_chunk(c, "unknown chunk kind", sender);
		return;
	}
	if (chunk->beacon) { /* upstream keeps the latest chunk's */
		hc_cluster_pb_free(a->beacon);
		a->beacon = hc_cluster_pb_clone(&chunk->beacon->base);
	}
	if (chunk->state_signature && *chunk->state_signature) {
		free(a->signature);
		a->signature = strdup(chunk->state_signature);
	}
	if (take_workloads(chunk, &a->workloads, &a->nworkloads) < 0) {
		drop_assembly(c, (size_t)(a - c->assemblies));
		drop_chunk(c, "state too large", sender);
		return;
	}
	if (strcmp(kind, "finish") != 0)
		return;
	done = detach_assembly(c, a);
	m = (struct state_meta){ done.node_addr, done.http_port, done.respawn, 0, done.beacon,
				 done.signature, NULL };
	apply_state(c, sender, done.workloads, done.nworkloads, &m);
	done.workloads = NULL;
	done.nworkloads = 0;
	assembly_fini(&done);
}

void hc_cluster_state_on_event(struct hc_cluster *c, const char *name, const uint8_t *payload,
			       size_t len)
{
	hc_pb_state *chunk;
	const char *sender, *marker, *kind;
	char uuid[64];
	size_t ulen;

	if (strcmp(name, HC_DIGEST_EVENT) == 0) {
		hc_cluster_delta_on_digest(c, payload, len);
		return;
	}
	if (strcmp(name, HC_STATE_EVENT) != 0) {
		c->events_ignored++;
		hc_log(HC_LOG_DEBUG, "user event %s ignored (%zu bytes)", name, len);
		return;
	}
	chunk = cluster__services__api__node_state_response__unpack(NULL, len, payload);
	if (!chunk) {
		drop_chunk(c, "not a NodeStateResponse", NULL);
		return;
	}
	sender = chunk->node ? chunk->node->id : NULL;
	marker = chunk->node ? chunk->node->ip : NULL;
	kind = marker ? strrchr(marker, '_') : NULL;
	if (!sender || !*sender || !kind || kind == marker ||
	    (ulen = (size_t)(kind - marker)) >= sizeof(uuid)) {
		drop_chunk(c, "no node id or chunk marker", sender);
		goto out;
	}
	if (strcmp(sender, self_name(c)) == 0)
		goto out; /* our own, delivered back */
	c->state_bytes_received[STATE_BYTES_CHUNKED] += len;
	if (!hc_cluster_member_alive(c, sender)) {
		drop_chunk(c, "sender is not an alive member", sender);
		goto out;
	}
	memcpy(uuid, marker, ulen);
	uuid[ulen] = '\0';
	kind++;
	if (chunk->chunk_count > MAX_CHUNKS || (chunk->chunk_count ? chunk->chunk_index >= chunk->chunk_count : chunk->chunk_index != 0)) {
		drop_chunk(c, "chunk index out of range", sender);
		goto out;
	}
	if (chunk->chunk_count > 1) {
		on_indexed_chunk(c, sender, uuid, chunk); /* takes it */
		return;
	}
	if (chunk->chunk_count == 1 || strcmp(kind, "complete") == 0) {
		hc_pb_workload **w = NULL;
		struct state_meta m = meta_of(chunk);
		size_t n = 0;

		if (take_workloads(chunk, &w, &n) < 0) {
			hc_cluster_workloads_free(w, n);
			drop_chunk(c, "too many workloads", sender);
			goto out;
		}
		apply_state(c, sender, w, n, &m);
		goto out;
	}
	on_marked_chunk(c, sender, uuid, kind, chunk);
out:
	hc_cluster_pb_free(chunk);
}

/* ---- forgetting ---- */

/* Deterministic choice of the node that respawns workload id: the highest
 * rendezvous hash of (id, node) over the alive respawn-enabled nodes, so
 * every node picks the same one from the same view. */
bool hc_cluster_we_respawn(struct hc_cluster *c, const char *id, const char *dead)
{
	const char *best = NULL;
	uint64_t best_h = 0;
	size_t n = 0;
	struct hc_gossip_member *ms = hc_cluster_members(c, &n);
	bool ours;

	for (size_t i = 0; ms && i < n; i++) {
		const char *name = ms[i].name;
		struct peer *p = hc_cluster_state_peer(c, name);
		bool self = strcmp(name, self_name(c)) == 0;
		uint64_t h;

		if (ms[i].status != HC_GOSSIP_ALIVE || strcmp(name, dead) == 0)
			continue;
		if (self ? !c->cfg.respawn : !(p && p->respawn))
			continue;
		h = rendezvous(id, name);
		if (!best || h > best_h || (h == best_h && strcmp(name, best) < 0)) {
			best = name;
			best_h = h;
		}
	}
	ours = best && strcmp(best, self_name(c)) == 0;
	hc_gossip_members_free(ms, n);
	return ours;
}

void hc_cluster_state_forget_node(struct hc_cluster *c, const char *name, bool failed)
{
	struct peer *p = hc_cluster_state_peer(c, name);
	size_t i;

	if (!p)
		return;
	hc_log(HC_LOG_INFO, "node %s %s: its %zu workloads lose their routes", name,
	       failed ? "failed" : "is gone", p->nworkloads);
	i = (size_t)(p - c->peers);
	/* every node keeps them, not only the one chosen to respawn them:
	 * that one may fail next (orphans.c) */
	for (size_t k = 0; failed && c->cfg.respawn && k < p->nworkloads; k++) {
		const char *owner = hc_cluster_state_owner(c, p->workloads[k]->id);

		if ((!owner || strcmp(owner, name) == 0) &&
		    !hc_cluster_orphans_add(c, p->workloads[k], name))
			hc_log(HC_LOG_WARN, "cannot keep %s of failed node %s: out of memory",
			       p->workloads[k]->id, name);
	}
	peer_fini(p);
	memmove(p, p + 1, (c->npeers - i - 1) * sizeof(*p));
	c->npeers--;
	hc_cluster_routes_sync(c);
	hc_cluster_orphans_check(c);
}

/*
 * A node that left gracefully is most often restarting (systemctl restart, a
 * package upgrade): its agent is gone for seconds, but KillMode=process keeps
 * its workloads running in their shims and its pinned node ports answering.
 * Withdrawing its routes at once made every other node stop serving them for
 * the restart (the rolling upgrade saw it); they stay until LEFT_GRACE_MS has
 * passed without the node coming back. A left node's workloads are never
 * respawned (a failed one's are).
 */
void hc_cluster_state_node_left(struct hc_cluster *c, const char *name)
{
	struct peer *p = hc_cluster_state_peer(c, name);

	if (!p || p->left_ms)
		return;
	p->left_ms = hc_loop_now_ms(c->loop) | 1; /* never 0 */
	hc_log(HC_LOG_INFO, "node %s left: its %zu workloads stay routed for %u s unless it "
	       "comes back", name, p->nworkloads, LEFT_GRACE_MS / 1000);
}

void hc_cluster_state_housekeeping(struct hc_cluster *c)
{
	uint64_t now = hc_loop_now_ms(c->loop);
	uint64_t silence = (uint64_t)SILENCE_PERIODS * period_ms(c);

	hc_cluster_orphans_check(c);
	/* Duplicates are settled on every change; this retries a stop that
	 * failed (a containerd still starting after the node came back). */
	for (size_t i = 0; c->nlocal && i < c->npeers; i++)
		if (!c->peers[i].stale)
			settle_duplicates(c, &c->peers[i]);

	for (size_t i = 0; i < c->nassemblies;) {
		if (now - c->assemblies[i].started_ms > ASSEMBLY_TIMEOUT_MS)
			drop_assembly(c, i);
		else
			i++;
	}
	for (size_t i = 0; i < c->npeers;) {
		struct peer *p = &c->peers[i];

		if (p->left_ms && !hc_cluster_member_alive(c, p->name)) {
			if (now - p->left_ms > LEFT_GRACE_MS)
				hc_cluster_state_forget_node(c, p->name, false);
			else
				i++;
			continue;
		}
		if (now - p->recv_ms <= silence) {
			i++;
			continue;
		}
		/* Silent: gone from the routes. Respawned only once gossip too
		 * finds it dead (a node that is merely slow would be duplicated);
		 * until then its last state is kept for that. */
		if (!hc_cluster_member_alive(c, p->name)) {
			hc_cluster_state_forget_node(c, p->name, true);
			continue;
		}
		if (!p->stale) {
			hc_log(HC_LOG_WARN, "node %s silent for %llu ms: its routes are withdrawn",
			       p->name, (unsigned long long)(now - p->recv_ms));
			p->stale = true;
			hc_cluster_routes_sync(c);
		}
		i++;
	}
}

const char *hc_cluster_state_owner(struct hc_cluster *c, const char *id)
{
	struct local_wl *l = hc_cluster_local_find(c, id);

	if (l)
		return self_name(c);
	/* each peer's workloads are in id order (hc_cluster_state_install) */
	for (size_t i = 0; i < c->npeers; i++)
		if (!c->peers[i].stale && c->peers[i].nworkloads &&
		    bsearch(id, c->peers[i].workloads, c->peers[i].nworkloads,
			    sizeof(*c->peers[i].workloads), workload_key_cmp))
			return c->peers[i].name;
	return NULL;
}

void hc_cluster_state_fini(struct hc_cluster *c)
{
	for (size_t i = 0; i < c->npeers; i++)
		peer_fini(&c->peers[i]);
	for (size_t i = 0; i < c->nassemblies; i++)
		assembly_fini(&c->assemblies[i]);
	hc_cluster_orphans_fini(c);
	free(c->peers);
	free(c->assemblies);
	c->peers = NULL;
	c->assemblies = NULL;
	c->npeers = c->nassemblies = 0;
}
