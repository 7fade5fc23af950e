/* Clusters on the simulated network with byte counts and pulls; see simcluster.h. */
#include "simcluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster_int.h"
#include "fakert.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "ibrl/ibrl.h"
#include "loop/loop.h"
#include "simnet.h"
#include "tmpdir.h"

#define HUGE_ANSWER ((17u << 20))
#define LINK_BYTES_PER_MS 125000 /* 1 Gbit/s */

/* A pull answer on its way to the puller. */
struct sim_transfer {
	struct sim_transfer *next;
	struct hc_simcluster *sc;
	int to;
	uint64_t id, timer;
	int rc;
	uint8_t *buf;
	size_t len;
};

static void die(const char *what, int r)
{
	fprintf(stderr, "simcluster: %s: %s\n", what, strerror(r < 0 ? -r : r));
	abort();
}

/* ---- byte counting around simnet ---- */

const char *const hc_simcluster_rx_kind_names[HC_SIMCLUSTER_RX_KINDS] = {
	"probes (ping, ack)",
	"membership (alive, suspect, dead)",
	"digests with a change",
	"digests re-sent (no change)",
	"other user events",
	"other serf messages",
	"datagram framing",
	"push/pull streams",
	"pull answers",
};

/* The kind of a serf message (a memberlist user message's payload). */
static enum hc_simcluster_rx_kind serf_kind(const uint8_t *buf, size_t len)
{
	static const size_t digest_len = sizeof(HC_DIGEST_EVENT) - 1;
	struct hc_gossip_serf_msg m;
	enum hc_simcluster_rx_kind kind = HC_SIMCLUSTER_RX_SERF_OTHER;
	Cluster__Services__Api__StateDigest *dg;

	if (hc_gossip_serf_decode(buf, len, &m) < 0)
		return kind;
	if (m.type == HC_GOSSIP_SERF_USER_EVENT) {
		kind = HC_SIMCLUSTER_RX_EVENT_OTHER;
		if (m.u.event.name.len == digest_len &&
		    memcmp(m.u.event.name.ptr, HC_DIGEST_EVENT, digest_len) == 0 &&
		    (dg = cluster__services__api__state_digest__unpack(
			     NULL, m.u.event.payload.len, m.u.event.payload.ptr))) {
			kind = dg->n_workloads || dg->n_removed ? HC_SIMCLUSTER_RX_DIGEST_DELTA
								: HC_SIMCLUSTER_RX_DIGEST_RESEND;
			hc_cluster_pb_free(dg);
		}
	}
	hc_gossip_serf_msg_fini(&m);
	return kind;
}

/* Adds a datagram's (or a part's) len bytes to by[] by what they carry:
 * each message's own bytes to its kind, the wrappers' to framing. A
 * compressed part's kinds are scaled to its size on the wire. */
static void classify(uint64_t *by, const uint8_t *buf, size_t len, unsigned depth)
{
	struct hc_gossip_bytes parts[HC_GOSSIP_COMPOUND_MAX], inner;
	struct hc_gossip_msg m;
	size_t n = 0, sum = 0;
	uint8_t *plain;

	if (!len || depth > HC_GOSSIP_MAX_WRAP_DEPTH) {
		by[HC_SIMCLUSTER_RX_FRAMING] += len;
		return;
	}
	switch (buf[0]) {
	case HC_GOSSIP_MSG_HAS_CRC:
		if (hc_gossip_crc_unwrap(buf, len, &inner) < 0)
			break;
		by[HC_SIMCLUSTER_RX_FRAMING] += len - inner.len;
		classify(by, inner.ptr, inner.len, depth + 1);
		return;
	case HC_GOSSIP_MSG_COMPOUND:
		/* a truncated one: its parts before the cut */
		(void)hc_gossip_compound_split(buf, len, parts, &n);
		for (size_t i = 0; i < n; i++) {
			classify(by, parts[i].ptr, parts[i].len, depth + 1);
			sum += parts[i].len;
		}
		by[HC_SIMCLUSTER_RX_FRAMING] += len - sum;
		return;
	case HC_GOSSIP_MSG_COMPRESS: {
		uint64_t sub[HC_SIMCLUSTER_RX_KINDS] = { 0 };
		size_t plain_len, left = len;

		if (hc_gossip_compress_unwrap(buf, len, HC_GOSSIP_UDP_MAX, &plain, &plain_len) < 0)
			break;
		classify(sub, plain, plain_len, depth + 1);
		free(plain);
		for (int k = 0; k < HC_SIMCLUSTER_RX_KINDS && plain_len; k++) {
			uint64_t share = sub[k] * len / plain_len;

			by[k] += share;
			left -= share;
		}
		by[HC_SIMCLUSTER_RX_FRAMING] += left;
		return;
	}
	default:
		if (hc_gossip_msg_decode(buf, len, &m) < 0)
			break;
		switch (m.type) {
		case HC_GOSSIP_MSG_ALIVE:
		case HC_GOSSIP_MSG_SUSPECT:
		case HC_GOSSIP_MSG_DEAD:
			by[HC_SIMCLUSTER_RX_MEMBERSHIP] += len;
			return;
		case HC_GOSSIP_MSG_USER:
			by[serf_kind(m.u.user.ptr, m.u.user.len)] += len;
			return;
		default:
			by[HC_SIMCLUSTER_RX_PROBE] += len;
			return;
		}
	}
	by[HC_SIMCLUSTER_RX_SERF_OTHER] += len; /* undecodable: not ours to judge here */
}

struct counted_stream {
	struct hc_simcluster_node *nd;
	hc_gossip_stream_complete_fn *complete;
	hc_gossip_stream_done_fn *done;
	void *arg;
};

/* The bytes of the digests in a push/pull's serf part (serf's event ring). */
static uint64_t ring_digest_bytes(const struct hc_gossip_push_pull *pp)
{
	static const size_t digest_len = sizeof(HC_DIGEST_EVENT) - 1;
	struct hc_gossip_serf_push_pull spp;
	uint64_t n = 0;

	if (hc_gossip_serf_push_pull_decode(pp->user_state.ptr, pp->user_state.len, &spp) < 0)
		return 0;
	for (size_t i = 0; i < spp.nslots; i++) {
		for (size_t k = 0; spp.slots[i].used && k < spp.slots[i].nevents; k++) {
			const struct hc_gossip_serf_event *e = &spp.slots[i].events[k];

			if (e->name.len == digest_len &&
			    memcmp(e->name.ptr, HC_DIGEST_EVENT, digest_len) == 0)
				n += e->payload.len;
		}
	}
	hc_gossip_serf_push_pull_fini(&spp);
	return n;
}

/* A push/pull stream taken in: its bytes, and what it holds unpacked. */
static void count_push_pull(struct hc_simcluster_node *nd, const uint8_t *buf, size_t len)
{
	struct hc_gossip_push_pull pp;
	uint8_t *msg;
	size_t mlen;

	nd->rx_bytes += len;
	nd->rx_stream_bytes += len;
	nd->rx_kind[HC_SIMCLUSTER_RX_PUSH_PULL] += len;
	nd->rx_streams += len > 0;
	if (hc_gossip_stream_open(NULL, buf, len, &msg, &mlen) < 0)
		return;
	nd->rx_pp_plain += mlen;
	if (mlen && msg[0] == HC_GOSSIP_MSG_PUSH_PULL &&
	    hc_gossip_push_pull_decode(msg, mlen, &pp) == 0) {
		nd->rx_pp_plain_digests += ring_digest_bytes(&pp);
		hc_gossip_push_pull_fini(&pp);
	}
	free(msg);
}

static int count_send_packet(void *ctx, const struct hc_gossip_addr *to, const uint8_t *buf,
			     size_t len)
{
	struct hc_simcluster_node *nd = ctx;

	nd->tx_bytes += len;
	return hc_simnet_ops.send_packet(hc_simnet_ctx(nd->sc->net, nd->idx), to, buf, len);
}

static int count_stream_complete(void *arg, const uint8_t *buf, size_t len)
{
	struct counted_stream *cs = arg;

	return cs->complete(cs->arg, buf, len);
}

static void count_stream_done(void *arg, int err, const uint8_t *buf, size_t len)
{
	struct counted_stream *cs = arg;

	count_push_pull(cs->nd, buf, len);
	cs->done(cs->arg, err, buf, len);
	free(cs);
}

static int count_stream_exchange(void *ctx, const struct hc_gossip_addr *to, const uint8_t *req,
				 size_t len, uint32_t timeout_ms,
				 hc_gossip_stream_complete_fn *complete,
				 hc_gossip_stream_done_fn *done, void *arg)
{
	struct hc_simcluster_node *nd = ctx;
	struct counted_stream *cs = malloc(sizeof(*cs));
	int r;

	if (!cs)
		return -ENOMEM;
	*cs = (struct counted_stream){ nd, complete, done, arg };
	nd->tx_bytes += len;
	r = hc_simnet_ops.stream_exchange(hc_simnet_ctx(nd->sc->net, nd->idx), to, req, len,
					  timeout_ms, count_stream_complete, count_stream_done, cs);
	if (r < 0)
		free(cs);
	return r;
}

static const struct hc_gossip_transport_ops count_ops = { count_send_packet,
							  count_stream_exchange };

static void count_on_packet(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf,
			    size_t len)
{
	struct hc_simcluster_node *nd = arg;

	nd->rx_bytes += len;
	classify(nd->rx_kind, buf, len, 0);
	nd->inner.on_packet(nd->inner.arg, from, buf, len);
}

static int count_on_stream(void *arg, const struct hc_gossip_addr *from,
			   struct hc_gossip_stream_scan *scan, const uint8_t *buf, size_t len,
			   struct hc_gossip_mp_writer *reply)
{
	struct hc_simcluster_node *nd = arg;
	int r = nd->inner.on_stream(nd->inner.arg, from, scan, buf, len, reply);

	if (r != -ENODATA) /* the whole request is in (buf holds all read so far) */
		count_push_pull(nd, buf, len);
	return r;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Digests lost on their way to a node that should miss them. */
static void tap_event(const struct hc_gossip_event *ev, void *arg)
{
	struct hc_simcluster_node *nd = arg;

	if (nd->drop_digests && ev->type == HC_GOSSIP_EV_USER &&
	    strcmp(ev->name, HC_DIGEST_EVENT) == 0)
		return;
	if (ev->type == HC_GOSSIP_EV_USER) {
		uint64_t t0 = cpu_ns();

		nd->on_event(ev, nd->event_arg);
		nd->state_cpu_ns += cpu_ns() - t0;
		return;
	}
	nd->on_event(ev, nd->event_arg);
}

static struct hc_gossip *sim_gossip_new(void *arg, struct hc_loop *loop,
					const struct hc_gossip_config *cfg, struct hc_err *err)
{
	struct hc_simcluster_node *nd = arg;
	struct hc_gossip_config gc = *cfg;
	struct hc_gossip *g;

	nd->on_event = gc.on_event;
	nd->event_arg = gc.event_arg;
	gc.on_event = tap_event;
	gc.event_arg = nd;
	if (nd->whole_ring)
		gc.event_version = NULL;
	g = hc_gossip_new_with_transport(loop, &gc, hc_simnet_addr(nd->sc->net, nd->idx),
					 &count_ops, nd, err);
	if (!g)
		return NULL;
	nd->inner = (struct hc_gossip_receiver){ hc_ml_on_packet, hc_ml_on_stream,
						 hc_gossip_memberlist(g) };
	nd->recv = (struct hc_gossip_receiver){ count_on_packet, count_on_stream, nd };
	hc_simnet_attach(nd->sc->net, nd->idx, &nd->recv);
	return g;
}

/* ---- pulls ---- */

static int64_t deliver(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct sim_transfer *t = arg, **pp;
	struct hc_simcluster_node *nd = &t->sc->nodes[t->to];

	(void)loop;
	(void)id;
	for (pp = &t->sc->transfers; *pp != t; pp = &(*pp)->next)
		;
	*pp = t->next;
	nd->rx_bytes += t->len + HC_SIMCLUSTER_PULL_OVERHEAD;
	nd->rx_pull_bytes += t->len + HC_SIMCLUSTER_PULL_OVERHEAD;
	nd->rx_kind[HC_SIMCLUSTER_RX_PULL] += t->len + HC_SIMCLUSTER_PULL_OVERHEAD;
	if (nd->c) {
		uint64_t t0 = cpu_ns();

		hc_cluster_delta_pulled(nd->c, t->id, t->rc, t->buf, t->len);
		nd->state_cpu_ns += cpu_ns() - t0;
	} else
		free(t->buf);
	free(t);
	return HC_LOOP_TIMER_DONE;
}

/* The owner's whole state with one more workload, count and hash made to
 * match: only the signature can tell. */
static int tampered(struct hc_simcluster_node *owner, uint8_t **buf, size_t *len)
{
	Cluster__Services__Api__StateDigest *dg;
	Cluster__Services__Api__WorkloadState extra = CLUSTER__SERVICES__API__WORKLOAD_STATE__INIT;
	Cluster__Services__Api__WorkloadState **w;
	size_t n;
	int r = hc_cluster_state_since(owner->c, 0, buf, len);

	if (r < 0)
		return -EPROTO;
	dg = cluster__services__api__state_digest__unpack(NULL, *len, *buf);
	free(*buf);
	if (!dg)
		return -ENOMEM;
	n = dg->n_workloads;
	w = calloc(n + 1, sizeof(*w));
	if (!w) {
		hc_cluster_pb_free(dg);
		return -ENOMEM;
	}
	extra.id = (char *)HC_SIMCLUSTER_TAMPERED_ID; /* sorts after the preloaded ones */
	if (n)
		memcpy(w, dg->workloads, n * sizeof(*w));
	w[n] = &extra;
	dg->workload_count = (uint32_t)(n + 1);
	dg->workloads_hash = hc_cluster_workloads_hash(w, n + 1);
	if (dg->workloads_sum.len == HC_IBRL_DIGEST_LEN) {
		struct hc_ibrl_set_hash set;

		if (hc_ibrl_set_hash_of(&set, w, n + 1) < 0 ||
		    hc_ibrl_set_hash_sum(&set, dg->workloads_sum.data) < 0) {
			free(w);
			hc_cluster_pb_free(dg);
			return -ENOMEM;
		}
	}
	free(dg->workloads);
	dg->workloads = w;
	dg->n_workloads = n + 1;
	*buf = hc_cluster_pb_pack(&dg->base, len);
	dg->n_workloads = n; /* extra is ours */
	hc_cluster_pb_free(dg);
	return *buf ? 0 : -ENOMEM;
}

/* What owner answers a pull since `since`, as its HTTP API would. */
static int answer(struct hc_simcluster_node *owner, uint64_t since, uint8_t **buf, size_t *len)
{
	switch (owner->serve) {
	case HC_SIMCLUSTER_SERVE_HUGE:
		*len = HUGE_ANSWER;
		*buf = calloc(1, *len);
		return *buf ? 0 : -ENOMEM;
	case HC_SIMCLUSTER_SERVE_GARBAGE:
		*len = 64;
		*buf = malloc(*len);
		if (!*buf)
			return -ENOMEM;
		memset(*buf, 0xff, *len);
		return 0;
	case HC_SIMCLUSTER_SERVE_REFUSE:
		return -EPROTO;
	case HC_SIMCLUSTER_SERVE_TAMPER:
		return tampered(owner, buf, len);
	default:
		return hc_cluster_state_since(owner->c, since, buf, len) < 0 ? -EPROTO : 0;
	}
}

static int sim_pull(struct hc_cluster *c, const char *node, uint64_t since, uint64_t id)
{
	struct hc_simcluster *sc = NULL;
	struct hc_simcluster_node *owner = NULL;
	struct sim_transfer *t;
	int to = -1;

	/* the cluster's node and the owner's, by name */
	sc = ((struct hc_simcluster_node *)c->cfg.gossip_arg)->sc;
	for (int i = 0; i < sc->n; i++) {
		if (sc->nodes[i].c == c)
			to = i;
		if (sc->nodes[i].c && strcmp(sc->nodes[i].name, node) == 0)
			owner = &sc->nodes[i];
	}
	if (!owner || to < 0 || hc_simnet_is_down(sc->net, owner->idx))
		return -EHOSTUNREACH;
	sc->nodes[to].tx_bytes += HC_SIMCLUSTER_PULL_OVERHEAD / 2;
	if (owner->serve == HC_SIMCLUSTER_SERVE_STALL)
		return 0; /* the answer never comes */
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->sc = sc;
	t->to = to;
	t->id = id;
	t->rc = answer(owner, since, &t->buf, &t->len);
	owner->tx_bytes += t->len + HC_SIMCLUSTER_PULL_OVERHEAD / 2;
	/* connect and ask (2 ms), then the answer at link speed */
	t->timer = hc_loop_add_timer(hc_simnet_loop(sc->net), 2 + t->len / LINK_BYTES_PER_MS,
				     deliver, t);
	if (!t->timer) {
		free(t->buf);
		free(t);
		return -ENOMEM;
	}
	t->next = sc->transfers;
	sc->transfers = t;
	return 0;
}

/* ---- the cluster ---- */

struct hc_simcluster *hc_simcluster_new(int n, uint64_t seed)
{
	struct hc_simcluster *sc = calloc(1, sizeof(*sc));

	if (!sc || !(sc->nodes = calloc((size_t)n, sizeof(*sc->nodes))))
		die("out of memory", ENOMEM);
	sc->net = hc_simnet_new(n, seed);
	if (!sc->net)
		die("simnet", ENOMEM);
	sc->n = n;
	sc->period_ms = 1000;
	for (int i = 0; i < n; i++) {
		struct hc_simcluster_node *nd = &sc->nodes[i];
		char prefix[32];

		nd->sc = sc;
		nd->idx = i;
		snprintf(nd->name, sizeof(nd->name), "n%d", i);
		if (hc_tmpdir_new(nd->dir, sizeof(nd->dir), "hc-simcl") < 0)
			die("tmpdir", errno);
		snprintf(prefix, sizeof(prefix), "10.%d.%d.", 100 + i / 200, i % 200 + 1);
		nd->rt = hc_fakert_new(hc_simnet_loop(sc->net), prefix);
		if (!nd->rt)
			die("fakert", errno);
	}
	return sc;
}

void hc_simcluster_gossip_config(struct hc_gossip_config *g, const char *name, uint64_t seed)
{
	*g = (struct hc_gossip_config){
		.name = name,
		.gossip_interval_ms = 200,
		.probe_interval_ms = 1000,
		.suspicion_mult = 4,
		.gossip_nodes = 3,
		.reconnect_interval_ms = 2000,
		.reconnect_timeout_ms = 600000,
		.reap_interval_ms = 1000,
		.seed = seed,
	};
}

void hc_simcluster_start(struct hc_simcluster *sc, int i)
{
	struct hc_simcluster_node *nd = &sc->nodes[i];
	static const char *const seed[] = { "10.0.0.1:7946" };
	struct hc_cluster_config cfg = {
		.state_dir = nd->dir,
		.base_url = "example.test",
		.join = seed,
		.njoin = i ? 1 : 0,
		.runtime = &hc_fakert_ops,
		.runtime_ctx = nd->rt,
		.state_period_ms = sc->period_ms,
		.gossip_new = sim_gossip_new,
		.gossip_arg = nd,
		.ibrl_mode = HC_CLUSTER_IBRL_ENFORCE,
		.no_proofs = true,
		.beacon_price = 0.01,
		.state_mode = nd->mode,
	};
	struct hc_err err;
	int r;

	hc_simcluster_gossip_config(&cfg.gossip, nd->name, 1000 + (uint64_t)i);
	if (!nd->key && (r = hc_ibrl_identity_open(nd->dir, &nd->key, &err)) < 0)
		die(err.msg, r);
	cfg.identity = nd->key;
	nd->c = hc_cluster_new(hc_simnet_loop(sc->net), &cfg, &err);
	if (!nd->c)
		die(err.msg, err.code);
	hc_cluster_set_http_port(nd->c, 8001); /* "serves" its state: sim_pull */
	nd->c->state_pull_hook = sim_pull;
	if ((r = hc_cluster_start(nd->c, &err)) < 0)
		die(err.msg, r);
}

bool hc_simcluster_all_alive(const void *ctx)
{
	const struct hc_simcluster *sc = ctx;
	size_t up = 0;

	for (int j = 0; j < sc->n; j++)
		up += sc->nodes[j].c && !hc_simnet_is_down(sc->net, j);
	for (int v = 0; v < sc->n; v++) {
		struct hc_gossip_member *ms;
		size_t n = 0, alive = 0;

		if (!sc->nodes[v].c || hc_simnet_is_down(sc->net, v))
			continue;
		ms = hc_cluster_members(sc->nodes[v].c, &n);
		for (size_t k = 0; k < n; k++)
			alive += ms[k].status == HC_GOSSIP_ALIVE;
		hc_gossip_members_free(ms, n);
		if (alive != up)
			return false;
	}
	return true;
}

bool hc_simcluster_all_states_known(const void *ctx)
{
	const struct hc_simcluster *sc = ctx;

	for (int v = 0; v < sc->n; v++)
		for (int j = 0; sc->nodes[v].c && j < sc->n; j++)
			if (j != v && sc->nodes[j].c &&
			    !hc_cluster_state_peer(sc->nodes[v].c, sc->nodes[j].name))
				return false;
	return true;
}

static bool runtimes_idle(const void *ctx)
{
	const struct hc_simcluster *sc = ctx;

	for (int i = 0; i < sc->n; i++)
		if (sc->nodes[i].c && hc_fakert_pending(sc->nodes[i].rt))
			return false;
	return true;
}

void hc_simcluster_free(struct hc_simcluster *sc)
{
	struct hc_loop *loop = hc_simnet_loop(sc->net);

	hc_simnet_run_until(sc->net, runtimes_idle, sc, 120000);
	while (sc->transfers) {
		struct sim_transfer *t = sc->transfers;

		sc->transfers = t->next;
		hc_loop_del_timer(loop, t->timer);
		free(t->buf);
		free(t);
	}
	for (int i = 0; i < sc->n; i++) {
		struct hc_simcluster_node *nd = &sc->nodes[i];

		if (nd->c) {
			hc_fakert_flush(nd->rt);
			hc_cluster_free(nd->c);
		}
		hc_simnet_attach(sc->net, i, NULL);
		hc_fakert_free(nd->rt);
		hc_ibrl_identity_free(nd->key);
		if (hc_tmpdir_remove(nd->dir) < 0)
			die("tmpdir remove", errno);
	}
	hc_simnet_free(sc->net);
	free(sc->nodes);
	free(sc);
}

void hc_simcluster_wl_id(int i, int k, char id[HC_WORKLOAD_ID_LEN + 1])
{
	snprintf(id, HC_WORKLOAD_ID_LEN + 1, "5e0c0a7d-%04d-4000-8000-%012d", i, k);
}

void hc_simcluster_preload(struct hc_simcluster *sc, int i, int first, int count)
{
	struct hc_port_map port = { .host = 443, .container = 8080 };
	char ports[32];
	struct hc_label label = { (char *)HC_LABEL_NODE_PORTS, ports };
	struct hc_workload_spec spec = { .image_ref = (char *)"registry.test/app:1", .cores = 1,
					 .memory_mb = 64, .ports = &port, .nports = 1,
					 .labels = &label, .nlabels = 1 };
	char id[HC_WORKLOAD_ID_LEN + 1];
	int r;

	for (int k = first; k < first + count; k++) {
		hc_simcluster_wl_id(i, k, id);
		snprintf(ports, sizeof(ports), "443:%d", 30000 + k % 2768);
		if ((r = hc_fakert_add(sc->nodes[i].rt, id, &spec)) < 0)
			die("preload", r);
	}
}
