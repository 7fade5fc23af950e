/*
 * The serf layer over the memberlist engine, following hashicorp/serf 0.9.4:
 * Lamport clocks, join/leave intents, member status, user events with the
 * de-duplication ring, queries with filters, acks, responses and relays, the
 * internal _serf_* queries, and reaping and reconnecting. See gossip.h.
 * This file holds the lifecycle, joining and leaving, broadcasting, reaping
 * and reconnecting, and the public API; members and intents are in
 * serf_members.c, events and coalescing in serf_events.c, queries in
 * serf_query.c, memberlist's delegate in serf_delegate.c, and what they
 * share (struct hc_gossip first) in serf_int.h.
 */
#include "gossip/gossip.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "gossip"
#include "gossip/keyring_int.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

#define MAX_QUEUE_DEPTH 4096   /* serf's MaxQueueDepth per queue */
#define RECENT_INTENT_MS (5 * 60 * 1000)
#define BROADCAST_TIMEOUT_MS 5000
#define LEAVE_PROPAGATE_MS 1000

/* ---- small helpers ---- */

uint64_t hc_serf_rnd(struct hc_gossip *g)
{
	return hc_gossip_rand(&g->rng);
}

uint64_t hc_serf_now_ms(const struct hc_gossip *g)
{
	return hc_loop_now_ms(g->loop);
}

/* Lamport witness: a time at or past ours moves us just beyond it. */
void hc_serf_witness(uint64_t *clock, uint64_t v)
{
	if (v >= *clock)
		*clock = v + 1;
}

bool hc_serf_bytes_eq_str(struct hc_gossip_bytes b, const char *s)
{
	return b.len == strlen(s) && (b.len == 0 || memcmp(b.ptr, s, b.len) == 0);
}

char *hc_serf_bytes_dup(struct hc_gossip_bytes b)
{
	return strndup(b.ptr ? (const char *)b.ptr : "", b.len);
}

const char *hc_gossip_status_name(enum hc_gossip_status s)
{
	static const char *const names[] = { "none", "alive", "leaving", "left", "failed" };

	return (unsigned)s < 5 ? names[s] : "unknown";
}

void hc_serf_format_addr(const struct hc_gossip_addr *a, char *buf, size_t len)
{
	struct hc_addr tmp = { 0 };

	if (hc_gossip_addr_to_sockaddr(a, &tmp) == 0)
		hc_addr_format(&tmp, buf, len);
	else
		snprintf(buf, len, "?");
}

/* ---- broadcasting serf messages ---- */

unsigned hc_serf_retransmit_limit(const struct hc_gossip *g)
{
	/* serf sizes its queues by its own member count (failed ones too). */
	return hc_gossip_retransmit_limit(4, g->nmembers);
}

int hc_serf_encode(const struct hc_gossip_serf_msg *m, struct hc_gossip_mp_writer *w)
{
	int r = hc_gossip_serf_encode(m, w);

	return r ? r : hc_gossip_mp_writer_error(w);
}

int hc_serf_queue_raw(struct hc_gossip *g, struct hc_gossip_bcast_queue *q, const uint8_t *msg,
		      size_t len, hc_gossip_bcast_done_fn *done, void *arg)
{
	int r = hc_gossip_bcast_queue_push(q, NULL, msg, len, done, arg);

	if (r < 0)
		hc_log(HC_LOG_WARN, "cannot queue a broadcast: %s", strerror(-r));
	else
		hc_ml_busy(g->ml);
	return r;
}

int hc_serf_queue_msg(struct hc_gossip *g, struct hc_gossip_bcast_queue *q,
		      const struct hc_gossip_serf_msg *m, hc_gossip_bcast_done_fn *done, void *arg)
{
	struct hc_gossip_mp_writer w;
	int r;

	hc_gossip_mp_writer_init(&w, 0);
	r = hc_serf_encode(m, &w);
	if (r == 0)
		r = hc_serf_queue_raw(g, q, w.buf, w.len, done, arg);
	hc_gossip_mp_writer_fini(&w);
	return r;
}

/* memberlist SendTo: one user message straight to an address. */
int hc_serf_send_to(struct hc_gossip *g, const struct hc_gossip_addr *to, const uint8_t *msg,
		    size_t len)
{
	return hc_ml_send_user(g->ml, to, msg, len);
}

/* ---- periodic work: reaping, reconnecting, queue depth ---- */

static void reap_list(struct hc_gossip *g, enum hc_gossip_status status, uint32_t timeout_ms)
{
	uint64_t now = hc_serf_now_ms(g);

	for (size_t i = 0; i < g->nmembers;) {
		struct member *m = g->members[i];

		if (m->status == status && now - m->leave_ms > timeout_ms) {
			hc_serf_emit_member(g, HC_GOSSIP_EV_MEMBER_REAP, m);
			hc_serf_member_remove(g, m);
			continue;
		}
		i++;
	}
}

static int64_t reap_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;
	uint64_t now = hc_serf_now_ms(g);

	(void)loop;
	(void)id;
	reap_list(g, HC_GOSSIP_FAILED, g->cfg.reconnect_timeout_ms);
	reap_list(g, HC_GOSSIP_LEFT, g->cfg.tombstone_timeout_ms);
	for (size_t i = 0; i < g->nintents;) {
		if (now - g->intents[i].when_ms > RECENT_INTENT_MS)
			hc_serf_drop_intent(g, i);
		else
			i++;
	}
	return g->cfg.reap_interval_ms;
}

static void reconnect_done(void *arg, unsigned joined)
{
	(void)arg;
	(void)joined;
}

static int64_t reconnect_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;
	size_t failed = 0, alive = 0;

	(void)loop;
	(void)id;
	for (size_t i = 0; i < g->nmembers; i++) {
		failed += g->members[i]->status == HC_GOSSIP_FAILED;
		alive += g->members[i]->status == HC_GOSSIP_ALIVE;
	}
	/* serf reconnects with probability failed/alive, so a big healthy
	 * cluster does not hammer one dead node. */
	if (failed && alive &&
	    (double)(hc_serf_rnd(g) % 1000) / 1000.0 <= (double)failed / (double)alive) {
		size_t pick = hc_serf_rnd(g) % failed;

		for (size_t i = 0; i < g->nmembers; i++) {
			struct member *m = g->members[i];

			if (m->status == HC_GOSSIP_FAILED && pick-- == 0) {
				hc_log(HC_LOG_DEBUG, "trying to reconnect to %s", m->name);
				hc_ml_join(g->ml, &m->addr, 1, reconnect_done, NULL);
				break;
			}
		}
	}
	return g->cfg.reconnect_interval_ms;
}

static int64_t queue_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;
	struct hc_gossip_bcast_queue *qs[] = { g->intent_q, g->event_q, g->query_q };

	(void)loop;
	(void)id;
	for (size_t i = 0; i < 3; i++) {
		size_t n = hc_gossip_bcast_queue_len(qs[i]);

		if (n > MAX_QUEUE_DEPTH) {
			hc_log(HC_LOG_WARN, "broadcast queue over %d (%zu): pruning the oldest",
			       MAX_QUEUE_DEPTH, n);
			hc_gossip_bcast_queue_prune(qs[i], MAX_QUEUE_DEPTH);
		}
	}
	return 30000;
}

/* ---- lifecycle ---- */

static int encode_meta(struct hc_gossip *g)
{
	struct hc_gossip_tag tags[64];
	struct hc_gossip_tags t = { .tags = tags, .n = g->ntags };
	struct hc_gossip_mp_writer w;
	int r;

	if (g->ntags > 64)
		return -E2BIG;
	for (size_t i = 0; i < g->ntags; i++) {
		tags[i].key = hc_gossip_bytes_str(g->tags[i].key);
		tags[i].value = hc_gossip_bytes_str(g->tags[i].value);
	}
	hc_gossip_mp_writer_init(&w, sizeof(g->meta));
	r = hc_gossip_meta_encode(&t, &w);
	if (r == 0)
		r = hc_gossip_mp_writer_error(&w);
	if (r == 0) {
		memcpy(g->meta, w.buf, w.len);
		g->meta_len = w.len;
	}
	hc_gossip_mp_writer_fini(&w);
	return r == -EMSGSIZE ? -E2BIG : r;
}

static int copy_tags(struct hc_gossip *g, const struct hc_gossip_kv *tags, size_t n)
{
	struct hc_gossip_kv *copy = calloc(n ? n : 1, sizeof(*copy));

	if (!copy)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		copy[i].key = strdup(tags[i].key);
		copy[i].value = strdup(tags[i].value);
		if (!copy[i].key || !copy[i].value) {
			hc_serf_tags_free(copy, i + 1);
			return -ENOMEM;
		}
	}
	hc_serf_tags_free(g->tags, g->ntags);
	g->tags = copy;
	g->ntags = n;
	return 0;
}

static void apply_defaults(struct hc_gossip_config *c)
{
#define DEFAULT(field, value) \
	if (!c->field)        \
	c->field = (value)
	DEFAULT(gossip_interval_ms, 2000);
	DEFAULT(probe_interval_ms, 5000);
	DEFAULT(probe_timeout_ms, 500);
	DEFAULT(suspicion_mult, 6);
	DEFAULT(gossip_nodes, 2);
	DEFAULT(push_pull_interval_ms, 30000);
	DEFAULT(reap_interval_ms, 15000);
	DEFAULT(reconnect_interval_ms, 30000);
	DEFAULT(reconnect_timeout_ms, 24u * 3600 * 1000);
	DEFAULT(tombstone_timeout_ms, 24u * 3600 * 1000);
	DEFAULT(user_event_size_limit, 2048);
#undef DEFAULT
}

static int open_keyring(struct hc_gossip *g, const struct hc_gossip_config *cfg, struct hc_err *err)
{
	int r;

	if (!cfg->nkeys && !cfg->keyring_file)
		return 0;
	g->keyring = hc_gossip_keyring_new();
	if (!g->keyring) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	if (cfg->keyring_file) {
		g->keyring_file = strdup(cfg->keyring_file);
		r = g->keyring_file ? hc_gossip_keyring_load(g->keyring, cfg->keyring_file)
				    : -ENOMEM;
		if (r < 0 && r != -ENOENT) {
			hc_err_set(err, r, "cannot load keyring %s: %s", cfg->keyring_file,
				   strerror(-r));
			return r;
		}
	}
	/* Keys given directly come first: the first is primary. */
	for (size_t i = cfg->nkeys; i-- > 0;) {
		uint8_t key[HC_GOSSIP_KEY_MAX];
		size_t len;

		r = hc_gossip_key_from_base64(cfg->keys[i], key, &len);
		if (r == 0)
			r = hc_gossip_keyring_install(g->keyring, key, len);
		if (r == 0)
			r = hc_gossip_keyring_use(g->keyring, key, len);
		if (r < 0) {
			hc_err_set(err, r, "invalid encryption key: want base64 of 16, 24 or 32 "
				   "bytes (as `serf keygen` makes)");
			return r;
		}
	}
	if (hc_gossip_keyring_count(g->keyring) == 0) {
		hc_err_set(err, -EINVAL, "keyring %s holds no keys", cfg->keyring_file);
		return -EINVAL;
	}
	if (g->keyring_file && (r = hc_gossip_keyring_save(g->keyring, g->keyring_file)) < 0) {
		hc_err_set(err, r, "cannot write keyring %s: %s", g->keyring_file, strerror(-r));
		return r;
	}
	return 0;
}

struct hc_gossip *hc_gossip_new_with_transport(struct hc_loop *loop,
					       const struct hc_gossip_config *cfg,
					       const struct hc_gossip_addr *advertise,
					       const struct hc_gossip_transport_ops *ops,
					       void *ops_ctx, struct hc_err *err)
{
	struct hc_gossip *g = calloc(1, sizeof(*g));
	struct hc_ml_delegate d;
	struct hc_ml_config mc;

	if (!g) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	g->loop = loop;
	g->cfg = *cfg;
	apply_defaults(&g->cfg);
	g->name = strdup(cfg->name);
	g->cfg.name = g->name;
	g->clock = g->event_clock = g->query_clock = 1; /* serf increments once at start */
	hc_gossip_rand_init(&g->rng, cfg->seed);
	hc_gossip_index_init(&g->member_ix, hc_serf_member_key);
	g->intent_q = hc_gossip_bcast_queue_new();
	g->event_q = hc_gossip_bcast_queue_new();
	g->query_q = hc_gossip_bcast_queue_new();
	if (!g->name || !g->intent_q || !g->event_q || !g->query_q ||
	    copy_tags(g, cfg->tags, cfg->ntags) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	g->cfg.tags = g->tags;
	if (encode_meta(g) < 0) {
		hc_err_set(err, -EINVAL, "tags take more than 512 bytes");
		goto fail;
	}
	if (open_keyring(g, cfg, err) < 0)
		goto fail;

	hc_ml_config_lan(&mc);
	mc.name = g->name;
	mc.addr = *advertise;
	mc.meta = g->meta;
	mc.meta_len = g->meta_len;
	mc.probe_interval_ms = g->cfg.probe_interval_ms;
	mc.probe_timeout_ms = g->cfg.probe_timeout_ms;
	mc.suspicion_mult = g->cfg.suspicion_mult;
	mc.gossip_interval_ms = g->cfg.gossip_interval_ms;
	mc.gossip_nodes = g->cfg.gossip_nodes;
	mc.push_pull_interval_ms = g->cfg.push_pull_interval_ms;
	mc.keyring = g->keyring;
	mc.seed = hc_serf_rnd(g);
	d = hc_serf_delegate(g);
	g->ml = hc_ml_new(loop, &mc, ops, ops_ctx, &d);
	if (!g->ml) {
		hc_err_set(err, errno ? -errno : -ENOMEM, "cannot start the membership engine");
		goto fail;
	}
	g->reap_timer = hc_loop_add_timer(loop, g->cfg.reap_interval_ms, reap_tick, g);
	g->reconnect_timer = hc_loop_add_timer(loop, g->cfg.reconnect_interval_ms, reconnect_tick,
					       g);
	g->queue_timer = hc_loop_add_timer(loop, 30000, queue_tick, g);
	return g;
fail:
	hc_gossip_free(g);
	return NULL;
}

void hc_gossip_free(struct hc_gossip *g)
{
	if (!g)
		return;
	/* Cancel the network first: its pending exchanges complete into ml. */
	hc_gossip_net_free(g->net);
	free(g->bridge);
	hc_ml_free(g->ml);
	while (g->out_queries) {
		struct out_query *q = g->out_queries;

		hc_loop_del_timer(g->loop, q->timer);
		q->done = NULL;
		hc_serf_out_query_expired(g->loop, 0, q);
	}
	while (g->in_queries)
		hc_serf_in_query_free(g, &g->in_queries);
	if (g->reap_timer)
		hc_loop_del_timer(g->loop, g->reap_timer);
	if (g->reconnect_timer)
		hc_loop_del_timer(g->loop, g->reconnect_timer);
	if (g->queue_timer)
		hc_loop_del_timer(g->loop, g->queue_timer);
	if (g->leave_timer)
		hc_loop_del_timer(g->loop, g->leave_timer);
	g->cfg.on_event = NULL; /* held-back events die with us */
	hc_serf_coalesce_flush(g);
	hc_gossip_bcast_queue_free(g->intent_q);
	hc_gossip_bcast_queue_free(g->event_q);
	hc_gossip_bcast_queue_free(g->query_q);
	for (size_t i = 0; i < RING; i++) {
		hc_serf_event_slot_clear(&g->events[i]);
		free(g->queries[i].ids);
	}
	for (size_t i = 0; i < g->nmembers; i++)
		hc_serf_member_free(g->members[i]);
	free(g->members);
	hc_gossip_index_fini(&g->member_ix);
	while (g->nintents)
		hc_serf_drop_intent(g, 0);
	free(g->intents);
	hc_gossip_keyring_free(g->keyring);
	free(g->keyring_file);
	hc_serf_tags_free(g->tags, g->ntags);
	free(g->name);
	free(g);
}

static void bridge_packet(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf,
			  size_t len)
{
	struct net_bridge *b = arg;

	if (b->ml)
		hc_ml_on_packet(b->ml, from, buf, len);
}

static int bridge_stream(void *arg, const struct hc_gossip_addr *from,
			 struct hc_gossip_stream_scan *scan, const uint8_t *buf, size_t len,
			 struct hc_gossip_mp_writer *reply)
{
	struct net_bridge *b = arg;

	return b->ml ? hc_ml_on_stream(b->ml, from, scan, buf, len, reply) : -ECONNREFUSED;
}

struct hc_gossip *hc_gossip_new(struct hc_loop *loop, const struct hc_gossip_config *cfg,
				struct hc_err *err)
{
	struct hc_gossip_net_config nc = { .tcp_timeout_ms = 10000, .max_streams = 128 };
	const struct hc_addr *adv = cfg->advertise ? cfg->advertise : &cfg->bind;
	struct hc_gossip_addr advertise;
	struct net_bridge *bridge;
	struct hc_gossip_net *net;
	struct hc_gossip *g;
	struct hc_addr bound;

	if (hc_addr_is_any(adv)) {
		hc_err_set(err, -EINVAL, "cannot advertise a wildcard address: give a specific "
			   "bind or advertise address");
		return NULL;
	}
	bridge = calloc(1, sizeof(*bridge));
	if (!bridge) {
		hc_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	bridge->recv = (struct hc_gossip_receiver){ bridge_packet, bridge_stream, bridge };
	net = hc_gossip_net_new(loop, &cfg->bind, &nc, &bridge->recv, err);
	if (!net) {
		free(bridge);
		return NULL;
	}
	bound = *adv;
	if (!cfg->advertise || hc_addr_port(adv) == 0)
		hc_gossip_addr_set_port(&bound, hc_gossip_net_port(net));
	hc_gossip_addr_from_sockaddr(&bound, &advertise);
	g = hc_gossip_new_with_transport(loop, cfg, &advertise, &hc_gossip_net_ops, net, err);
	if (!g) {
		hc_gossip_net_free(net);
		free(bridge);
		return NULL;
	}
	g->net = net;
	g->bridge = bridge;
	bridge->ml = g->ml;
	return g;
}

/* ---- joining and leaving ---- */

struct join_state {
	struct hc_gossip *g;
	struct hc_gossip_addr *addrs;
	size_t n;
	unsigned attempts_left;
	bool ignore_old;
	hc_gossip_join_done_fn *done;
	void *arg;
	uint64_t timer;
};

static void join_attempt(struct join_state *js);

static int64_t join_retry(struct hc_loop *loop, uint64_t id, void *arg)
{
	(void)loop;
	(void)id;
	((struct join_state *)arg)->timer = 0;
	join_attempt(arg);
	return HC_LOOP_TIMER_DONE;
}

static void join_finished(void *arg, unsigned joined)
{
	struct join_state *js = arg;
	struct hc_gossip *g = js->g;

	if (joined == 0 && js->attempts_left > 0) {
		js->timer = hc_loop_add_timer(g->loop, 1000, join_retry, js);
		if (js->timer)
			return;
	}
	g->join_ignore_old = false;
	if (joined > 0)
		hc_serf_broadcast_join(g, g->clock);
	hc_log(joined ? HC_LOG_INFO : HC_LOG_WARN, "join: %u of %zu seeds answered", joined,
	       js->n);
	if (js->done)
		js->done(js->arg, joined);
	free(js->addrs);
	free(js);
}

static void join_attempt(struct join_state *js)
{
	js->attempts_left--;
	if (hc_ml_join(js->g->ml, js->addrs, js->n, join_finished, js) < 0)
		join_finished(js, 0);
}

int hc_gossip_join(struct hc_gossip *g, const char *const *seeds, size_t n, unsigned attempts,
		   bool ignore_old_events, hc_gossip_join_done_fn *done, void *arg)
{
	struct join_state *js;
	struct hc_err why;

	if (n == 0)
		return -EINVAL;
	js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	js->addrs = calloc(n, sizeof(*js->addrs));
	if (!js->addrs) {
		free(js);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct hc_addr a;

		if (hc_addr_parse(seeds[i], false, &a, &why) < 0 ||
		    hc_gossip_addr_from_sockaddr(&a, &js->addrs[i]) < 0) {
			hc_log(HC_LOG_ERROR, "invalid join address %s: %s", seeds[i], why.msg);
			free(js->addrs);
			free(js);
			return -EINVAL;
		}
	}
	js->g = g;
	js->n = n;
	js->attempts_left = attempts ? attempts : 1;
	js->ignore_old = ignore_old_events;
	js->done = done;
	js->arg = arg;
	g->join_ignore_old = ignore_old_events;
	join_attempt(js);
	return 0;
}

static void leave_finish(struct hc_gossip *g)
{
	void (*done)(void *) = g->leave_done;

	g->state = SERF_LEFT;
	g->leave_done = NULL;
	if (done)
		done(g->leave_arg);
}

static int64_t leave_propagated(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;

	(void)loop;
	(void)id;
	g->leave_timer = 0;
	leave_finish(g);
	return HC_LOOP_TIMER_DONE;
}

static void memberlist_left(void *arg)
{
	struct hc_gossip *g = arg;

	/* Stay up a moment to answer probes from nodes that have not heard. */
	g->leave_timer = hc_loop_add_timer(g->loop, LEAVE_PROPAGATE_MS, leave_propagated, g);
	if (!g->leave_timer)
		leave_finish(g);
}

static void leave_intent_sent(void *arg, bool sent)
{
	struct hc_gossip *g = arg;

	(void)sent;
	if (g->leave_timer) {
		hc_loop_del_timer(g->loop, g->leave_timer);
		g->leave_timer = 0;
	}
	if (hc_ml_leave(g->ml, BROADCAST_TIMEOUT_MS, memberlist_left, g) < 0)
		leave_finish(g);
}

static int64_t leave_intent_timeout(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;

	(void)loop;
	(void)id;
	g->leave_timer = 0;
	hc_log(HC_LOG_WARN, "leave: timeout waiting for the leave intent to go out");
	if (hc_ml_leave(g->ml, BROADCAST_TIMEOUT_MS, memberlist_left, g) < 0)
		leave_finish(g);
	return HC_LOOP_TIMER_DONE;
}

int hc_gossip_leave(struct hc_gossip *g, void (*done)(void *arg), void *arg)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_LEAVE };

	if (g->state != SERF_ALIVE)
		return -EALREADY;
	g->state = SERF_LEAVING;
	g->leave_done = done;
	g->leave_arg = arg;
	hc_ml_hurry(g->ml);
	m.u.intent.ltime = g->clock;
	m.u.intent.node = hc_gossip_bytes_str(g->name);
	g->clock++;
	hc_serf_handle_leave_intent(g, &m.u.intent);
	if (hc_ml_alive_count(g->ml) <= 1) {
		/* Alone: nobody to tell, nothing to wait for. */
		hc_ml_leave(g->ml, BROADCAST_TIMEOUT_MS, NULL, NULL);
		leave_finish(g);
		return 0;
	}
	g->leave_timer = hc_loop_add_timer(g->loop, BROADCAST_TIMEOUT_MS, leave_intent_timeout, g);
	if (hc_serf_queue_msg(g, g->intent_q, &m, leave_intent_sent, g) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- the rest of the public API ---- */

int hc_gossip_set_tags(struct hc_gossip *g, const struct hc_gossip_kv *tags, size_t n)
{
	int r = copy_tags(g, tags, n);

	if (r < 0)
		return r;
	r = encode_meta(g);
	if (r < 0)
		return r;
	return hc_ml_update_meta(g->ml, g->meta, g->meta_len);
}

static int cmp_member(const void *a, const void *b)
{
	return strcmp(((const struct hc_gossip_member *)a)->name,
		      ((const struct hc_gossip_member *)b)->name);
}

struct hc_gossip_member *hc_gossip_members(struct hc_gossip *g, size_t *n)
{
	struct hc_gossip_member *out = calloc(g->nmembers ? g->nmembers : 1, sizeof(*out));

	if (!out)
		return NULL;
	for (size_t i = 0; i < g->nmembers; i++) {
		const struct member *m = g->members[i];
		struct hc_gossip_kv *tags = calloc(m->ntags ? m->ntags : 1, sizeof(*tags));

		hc_serf_member_view(m, &out[i]);
		out[i].name = strdup(m->name);
		out[i].tags = tags;
		for (size_t k = 0; tags && k < m->ntags; k++) {
			tags[k].key = strdup(m->tags[k].key);
			tags[k].value = strdup(m->tags[k].value);
		}
		if (!out[i].name || !tags) {
			hc_gossip_members_free(out, i + 1);
			return NULL;
		}
	}
	qsort(out, g->nmembers, sizeof(*out), cmp_member);
	*n = g->nmembers;
	return out;
}

void hc_gossip_members_free(struct hc_gossip_member *members, size_t n)
{
	if (!members)
		return;
	for (size_t i = 0; i < n; i++) {
		free((char *)members[i].name);
		hc_serf_tags_free((struct hc_gossip_kv *)members[i].tags, members[i].ntags);
	}
	free(members);
}

const char *hc_gossip_name(const struct hc_gossip *g)
{
	return g->name;
}

uint16_t hc_gossip_port(const struct hc_gossip *g)
{
	return hc_ml_self(g->ml)->addr.port;
}

size_t hc_gossip_queue_depth(const struct hc_gossip *g)
{
	struct hc_ml_stats st;

	hc_ml_stats(g->ml, &st);
	return st.broadcast_queue + hc_gossip_bcast_queue_len(g->intent_q) +
	       hc_gossip_bcast_queue_len(g->event_q) + hc_gossip_bcast_queue_len(g->query_q);
}

struct key_op_state {
	unsigned ok, failed;
	void (*done)(void *arg, unsigned ok, unsigned failed);
	void *arg;
};

static void key_op_response(void *arg, const char *from, const uint8_t *payload, size_t len,
			    bool is_ack)
{
	struct key_op_state *ks = arg;
	struct hc_gossip_serf_key_response kr;

	(void)from;
	if (is_ack)
		return;
	if (hc_gossip_serf_key_response_decode(payload, len, &kr) == 0) {
		if (kr.result)
			ks->ok++;
		else
			ks->failed++;
		hc_gossip_serf_key_response_fini(&kr);
	} else {
		ks->failed++;
	}
}

static void key_op_done(void *arg)
{
	struct key_op_state *ks = arg;

	if (ks->done)
		ks->done(ks->arg, ks->ok, ks->failed);
	free(ks);
}

int hc_gossip_key_op(struct hc_gossip *g, enum hc_gossip_key_op op, const uint8_t *key,
		     size_t len, void (*done)(void *arg, unsigned ok, unsigned failed),
		     void *arg)
{
	static const char *const names[] = { "_serf_install-key", "_serf_use-key",
					     "_serf_remove-key" };
	struct hc_gossip_serf_key_request req = { .key = { key, len } };
	struct key_op_state *ks;
	struct hc_gossip_mp_writer w;
	int r;

	if ((unsigned)op > HC_GOSSIP_KEY_REMOVE)
		return -EINVAL;
	ks = calloc(1, sizeof(*ks));
	if (!ks)
		return -ENOMEM;
	ks->done = done;
	ks->arg = arg;
	hc_gossip_mp_writer_init(&w, 0);
	r = hc_gossip_serf_key_request_encode(&req, &w);
	if (r == 0)
		r = hc_gossip_query(g, names[op], w.buf, w.len, NULL, key_op_response, key_op_done,
				    ks);
	hc_gossip_mp_writer_fini(&w);
	if (r < 0)
		free(ks);
	return r;
}

void hc_gossip_stats(const struct hc_gossip *g, struct hc_serf_stats *st)
{
	*st = g->st;
	st->open_queries = g->nin_queries;
	st->recent_intents = g->nintents;
}

struct hc_ml *hc_gossip_memberlist(struct hc_gossip *g)
{
	return g->ml;
}

void hc_gossip_collect(struct hc_metrics_writer *w, void *arg)
{
	struct hc_gossip *g = arg;
	static const char *const ml_types[] = { "ping", "indirect_ping", "ack", "suspect",
						"alive", "dead", "push_pull", "compound",
						"user", "compress", "encrypt", "nack",
						"has_crc", "err" };
	size_t counts[5] = { 0 };
	struct hc_ml_stats ms;
	struct hc_gossip_net_stats ns = { 0 };
	char depth[32];

	hc_ml_stats(g->ml, &ms);
	if (g->net)
		hc_gossip_net_stats(g->net, &ns);
	ms.dropped[HC_GOSSIP_DROP_OVER_BUDGET] += ns.over_budget; /* the transport's */
	hc_metrics_family(w, "hypercore_gossip_members", "gauge", "Cluster members by status.");
	for (size_t i = 0; i < g->nmembers; i++)
		counts[g->members[i]->status < 5 ? g->members[i]->status : 0]++;
	for (int s = 1; s < 5; s++) {
		const char *labels[] = { "status", hc_gossip_status_name(s), NULL };

		hc_metrics_sample(w, "hypercore_gossip_members", labels, (double)counts[s]);
	}
	hc_metrics_family(w, "hypercore_gossip_messages_total", "counter",
			  "Memberlist messages by direction and type.");
	for (size_t t = 0; t < sizeof(ml_types) / sizeof(ml_types[0]); t++) {
		const char *in[] = { "direction", "in", "type", ml_types[t], NULL };
		const char *out[] = { "direction", "out", "type", ml_types[t], NULL };

		if (ms.msgs_in[t])
			hc_metrics_sample(w, "hypercore_gossip_messages_total", in,
					  (double)ms.msgs_in[t]);
		if (ms.msgs_out[t])
			hc_metrics_sample(w, "hypercore_gossip_messages_total", out,
					  (double)ms.msgs_out[t]);
	}
	hc_metrics_family(w, "hypercore_gossip_dropped_total", "counter",
			  "Received packets, streams and serf messages dropped, by reason.");
	for (int r = 1; r < HC_GOSSIP_DROP_COUNT; r++) {
		const char *labels[] = { "reason", hc_gossip_drop_name(r), NULL };

		hc_metrics_sample(w, "hypercore_gossip_dropped_total", labels,
				  (double)(ms.dropped[r] + g->st.dropped[r]));
	}
	hc_metrics_family(w, "hypercore_gossip_queue_depth", "gauge",
			  "Broadcasts waiting to be gossiped, by queue.");
	{
		const struct {
			const char *name;
			size_t n;
		} qs[] = {
			{ "memberlist", ms.broadcast_queue },
			{ "intents", hc_gossip_bcast_queue_len(g->intent_q) },
			{ "events", hc_gossip_bcast_queue_len(g->event_q) },
			{ "queries", hc_gossip_bcast_queue_len(g->query_q) },
		};

		for (size_t i = 0; i < 4; i++) {
			const char *labels[] = { "queue", qs[i].name, NULL };

			hc_metrics_sample(w, "hypercore_gossip_queue_depth", labels,
					  (double)qs[i].n);
		}
	}
	snprintf(depth, sizeof(depth), "%u", ms.awareness);
	hc_metrics_family(w, "hypercore_gossip_health_score", "gauge",
			  "Lifeguard awareness: 0 is healthy, higher means this node is slow.");
	hc_metrics_sample(w, "hypercore_gossip_health_score", NULL, ms.awareness);
	hc_metrics_family(w, "hypercore_gossip_probes_total", "counter", "Probes by outcome.");
	{
		const char *ok[] = { "result", "ok", NULL }, *bad[] = { "result", "failed", NULL };

		hc_metrics_sample(w, "hypercore_gossip_probes_total", ok,
				  (double)(ms.probes - ms.probe_failures));
		hc_metrics_sample(w, "hypercore_gossip_probes_total", bad,
				  (double)ms.probe_failures);
	}
	hc_metrics_family(w, "hypercore_gossip_user_events_total", "counter",
			  "User events delivered here (duplicates and stale ones not counted).");
	hc_metrics_sample(w, "hypercore_gossip_user_events_total", NULL,
			  (double)g->st.events_delivered);
	hc_metrics_family(w, "hypercore_gossip_queries_total", "counter",
			  "Queries sent from here and received here.");
	{
		const char *s[] = { "direction", "out", NULL }, *r[] = { "direction", "in", NULL };

		hc_metrics_sample(w, "hypercore_gossip_queries_total", s, (double)g->st.queries_sent);
		hc_metrics_sample(w, "hypercore_gossip_queries_total", r,
				  (double)g->st.queries_delivered);
	}
	(void)depth;
}
