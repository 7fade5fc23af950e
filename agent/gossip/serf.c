/*
 * The serf layer over the memberlist engine, following hashicorp/serf 0.9.4:
 * Lamport clocks, join/leave intents, member status, user events with the
 * de-duplication ring, queries with filters, acks, responses and relays, the
 * internal _serf_* queries, and reaping and reconnecting. See gossip.h.
 */
#include "gossip/gossip.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "gossip"
#include "gossip/gossip_int.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

#define RING 512               /* EventBuffer and QueryBuffer, in Lamport slots */
#define QUERY_SIZE_LIMIT 1024  /* encoded query and response, type byte included */
#define MAX_QUEUE_DEPTH 4096   /* serf's MaxQueueDepth per queue */
#define RECENT_INTENT_MS (5 * 60 * 1000)
#define BROADCAST_TIMEOUT_MS 5000
#define LEAVE_PROPAGATE_MS 1000
#define QUERY_TIMEOUT_MULT 16
#define RTT_WINDOW 16
#define INTERNAL_PREFIX "_serf_"
/* Queries come with the sender's timeout: we keep what we need to answer
 * one for at most this long, and at most this many at once (the oldest
 * goes first), so a peer cannot make us hold state without bound. */
#define MAX_ANSWER_WINDOW_MS (10u * 60 * 1000)
#define MAX_OPEN_QUERIES 1024
/* Likewise for intents about nodes we do not know (kept 5 min), and for
 * events and query ids that share one Lamport time (legitimately a few). */
#define MAX_INTENTS 4096
#define MAX_PER_LTIME 256

struct rtt_window {
	int64_t samples[RTT_WINDOW];
	unsigned n, next;
	uint64_t probes, failures;
};

struct member {
	char *name;
	struct hc_gossip_addr addr;
	struct hc_gossip_kv *tags; /* owned strings */
	size_t ntags;
	enum hc_gossip_status status;
	uint64_t status_ltime;
	uint64_t leave_ms; /* when it became failed or left */
	uint8_t vsn[6];
	struct rtt_window rtt;
};

struct intent {
	char *node;
	uint64_t ltime;
	bool leave;
	uint64_t when_ms;
};

struct user_event {
	uint8_t *name, *payload;
	size_t name_len, payload_len;
};

struct event_slot {
	bool used;
	uint64_t ltime;
	struct user_event *events;
	size_t n;
};

struct query_slot {
	bool used;
	uint64_t ltime;
	uint32_t *ids;
	size_t n;
};

/* A query we sent: collects acks and responses until its deadline. */
struct out_query {
	struct out_query *next;
	struct hc_gossip *g;
	uint64_t ltime;
	uint32_t id;
	char **acked, **responded; /* names, to report each once */
	size_t nacked, nresponded;
	uint64_t timer;
	hc_gossip_response_fn *on_response;
	void (*done)(void *arg);
	void *arg;
};

/* A query delivered to us, answerable until its deadline. */
struct in_query {
	struct in_query *next;
	struct hc_gossip *g;
	uint64_t handle;
	uint64_t ltime;
	uint32_t id;
	struct hc_gossip_addr origin;
	uint8_t relay_factor;
	bool answered;
	uint64_t timer;
};

enum serf_state { SERF_ALIVE, SERF_LEAVING, SERF_LEFT };

/* The net is bound before the engine exists (we need its port to
 * advertise), so it delivers through this, which learns the engine later. */
struct net_bridge {
	struct hc_gossip_receiver recv;
	struct hc_ml *ml;
};

struct hc_gossip {
	struct hc_loop *loop;
	struct hc_gossip_config cfg;
	char *name;
	struct hc_gossip_kv *tags;
	size_t ntags;
	char *keyring_file;

	struct hc_gossip_net *net;
	struct net_bridge *bridge;
	struct hc_ml *ml;
	struct hc_gossip_keyring *keyring;
	uint8_t meta[512];
	size_t meta_len;

	uint64_t clock, event_clock, query_clock; /* Lamport, serf semantics */
	uint64_t event_min_time;
	bool join_ignore_old; /* while a join that ignores old events runs */

	struct member **members;
	size_t nmembers, capmembers;
	struct intent *intents;
	size_t nintents, capintents;
	struct event_slot events[RING];
	struct query_slot queries[RING];
	struct hc_gossip_bcast_queue *intent_q, *event_q, *query_q;
	struct out_query *out_queries;
	struct in_query *in_queries; /* newest first */
	size_t nin_queries;
	uint64_t next_handle;

	enum serf_state state;
	uint64_t reap_timer, reconnect_timer, queue_timer, leave_timer;

	/* Coalescing (cfg.coalesce_ms > 0): the latest member event per member
	 * and the newest coalescable user event per name, delivered together
	 * when the period ends or events stop for a third of it. */
	struct pending_member {
		char *name;
		enum hc_gossip_event_type type;
	} *pending_members;
	size_t npending_members;
	struct pending_event {
		char *name;
		uint8_t *payload;
		size_t len;
		uint64_t ltime;
	} *pending_events;
	size_t npending_events;
	uint64_t coalesce_timer, quiescent_timer;
	void (*leave_done)(void *arg);
	void *leave_arg;

	uint64_t rng;
	struct hc_serf_stats st;
};

/* ---- small helpers ---- */

static uint64_t rnd(struct hc_gossip *g)
{
	return hc_gossip_rand(&g->rng);
}

static uint64_t now_ms(const struct hc_gossip *g)
{
	return hc_loop_now_ms(g->loop);
}

/* Lamport witness: a time at or past ours moves us just beyond it. */
static void witness(uint64_t *clock, uint64_t v)
{
	if (v >= *clock)
		*clock = v + 1;
}

static bool bytes_eq_str(struct hc_gossip_bytes b, const char *s)
{
	return b.len == strlen(s) && (b.len == 0 || memcmp(b.ptr, s, b.len) == 0);
}

static char *bytes_dup(struct hc_gossip_bytes b)
{
	return strndup(b.ptr ? (const char *)b.ptr : "", b.len);
}

const char *hc_gossip_status_name(enum hc_gossip_status s)
{
	static const char *const names[] = { "none", "alive", "leaving", "left", "failed" };

	return (unsigned)s < 5 ? names[s] : "unknown";
}

static void format_addr(const struct hc_gossip_addr *a, char *buf, size_t len)
{
	struct hc_addr tmp = { 0 };

	if (hc_gossip_addr_to_sockaddr(a, &tmp) == 0)
		hc_addr_format(&tmp, buf, len);
	else
		snprintf(buf, len, "?");
}

/* ---- members ---- */

static struct member *find_member(const struct hc_gossip *g, const char *name, size_t len)
{
	for (size_t i = 0; i < g->nmembers; i++) {
		struct member *m = g->members[i];

		if (strlen(m->name) == len && memcmp(m->name, name, len) == 0)
			return m;
	}
	return NULL;
}

static void tags_free(struct hc_gossip_kv *tags, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)tags[i].key);
		free((char *)tags[i].value);
	}
	free(tags);
}

/* Decodes node meta into owned tags; legacy meta becomes role=<meta>. */
static int tags_from_meta(const uint8_t *meta, size_t len, struct hc_gossip_kv **out, size_t *n)
{
	struct hc_gossip_tags t = { 0 };
	struct hc_gossip_kv *kv;
	int r = hc_gossip_meta_decode((struct hc_gossip_bytes){ meta, len }, &t);

	if (r < 0)
		return r;
	kv = calloc(t.n ? t.n : 1, sizeof(*kv));
	if (!kv) {
		hc_gossip_tags_fini(&t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t.n; i++) {
		kv[i].key = bytes_dup(t.tags[i].key);
		kv[i].value = bytes_dup(t.tags[i].value);
		if (!kv[i].key || !kv[i].value) {
			tags_free(kv, i + 1);
			hc_gossip_tags_fini(&t);
			return -ENOMEM;
		}
	}
	*out = kv;
	*n = t.n;
	hc_gossip_tags_fini(&t);
	return 0;
}

static void member_set_from_node(struct member *m, const struct hc_ml_node *n)
{
	struct hc_gossip_kv *tags;
	size_t ntags;

	m->addr = n->addr;
	memcpy(m->vsn, n->vsn, 6);
	if (tags_from_meta(n->meta, n->meta_len, &tags, &ntags) == 0) {
		tags_free(m->tags, m->ntags);
		m->tags = tags;
		m->ntags = ntags;
	}
}

static struct member *member_add(struct hc_gossip *g, const char *name)
{
	struct member *m;

	if (g->nmembers == g->capmembers) {
		size_t cap = g->capmembers ? g->capmembers * 2 : 16;
		struct member **ms = realloc(g->members, cap * sizeof(*ms));

		if (!ms)
			return NULL;
		g->members = ms;
		g->capmembers = cap;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->name = strdup(name))) {
		free(m);
		return NULL;
	}
	g->members[g->nmembers++] = m;
	return m;
}

static void member_free(struct member *m)
{
	tags_free(m->tags, m->ntags);
	free(m->name);
	free(m);
}

static void member_remove(struct hc_gossip *g, struct member *m)
{
	for (size_t i = 0; i < g->nmembers; i++) {
		if (g->members[i] == m) {
			g->members[i] = g->members[--g->nmembers];
			member_free(m);
			return;
		}
	}
}

/* Fills a public view of m; strings borrowed from m. */
static void member_view(const struct member *m, struct hc_gossip_member *out)
{
	const struct rtt_window *w = &m->rtt;

	memset(out, 0, sizeof(*out));
	out->name = m->name;
	format_addr(&m->addr, out->addr, sizeof(out->addr));
	out->tags = m->tags;
	out->ntags = m->ntags;
	out->status = m->status;
	out->protocol_min = m->vsn[0];
	out->protocol_max = m->vsn[1];
	out->protocol_cur = m->vsn[2];
	out->delegate_min = m->vsn[3];
	out->delegate_max = m->vsn[4];
	out->delegate_cur = m->vsn[5];
	out->rtt_us = out->rtt_mean_us = out->jitter_us = -1;
	if (w->n) {
		int64_t sum = 0, dev = 0;
		unsigned last = (w->next + RTT_WINDOW - 1) % RTT_WINDOW;

		out->rtt_us = w->samples[last];
		for (unsigned i = 0; i < w->n; i++)
			sum += w->samples[i];
		out->rtt_mean_us = sum / w->n;
		for (unsigned i = 1; i < w->n; i++) {
			int64_t d = w->samples[i] - w->samples[i - 1];

			dev += d < 0 ? -d : d;
		}
		out->jitter_us = w->n > 1 ? dev / (w->n - 1) : 0;
	}
	out->loss = w->probes ? (double)w->failures / (double)w->probes : 0;
}

static void deliver_member(struct hc_gossip *g, enum hc_gossip_event_type type,
			   const struct member *m)
{
	struct hc_gossip_member view;
	struct hc_gossip_event ev = { .type = type, .member = &view };

	member_view(m, &view);
	/* Our own join at start is not news. */
	hc_log(strcmp(m->name, g->name) ? HC_LOG_INFO : HC_LOG_DEBUG, "member %s: %s %s",
	       type == HC_GOSSIP_EV_MEMBER_JOIN	    ? "join"
	       : type == HC_GOSSIP_EV_MEMBER_LEAVE  ? "leave"
	       : type == HC_GOSSIP_EV_MEMBER_FAILED ? "failed"
	       : type == HC_GOSSIP_EV_MEMBER_UPDATE ? "update"
						    : "reap",
	       m->name, view.addr);
	g->st.member_events++;
	if (g->cfg.on_event)
		g->cfg.on_event(&ev, g->cfg.event_arg);
}

static void deliver_user(struct hc_gossip *g, const char *name, const uint8_t *payload,
			 size_t len, uint64_t ltime, bool coalesce)
{
	struct hc_gossip_event ev = { .type = HC_GOSSIP_EV_USER, .name = name, .payload = payload,
				      .len = len, .ltime = ltime, .coalesce = coalesce };

	g->st.events_delivered++;
	if (g->cfg.on_event)
		g->cfg.on_event(&ev, g->cfg.event_arg);
}

static struct member *find_member(const struct hc_gossip *g, const char *name, size_t len);

static void coalesce_flush(struct hc_gossip *g)
{
	struct pending_member *pm = g->pending_members;
	struct pending_event *pe = g->pending_events;
	size_t npm = g->npending_members, npe = g->npending_events;

	/* Detach first: a callback may cause new events. */
	g->pending_members = NULL;
	g->pending_events = NULL;
	g->npending_members = g->npending_events = 0;
	for (int i = 0; i < 2; i++) {
		uint64_t *t = i ? &g->quiescent_timer : &g->coalesce_timer;

		if (*t)
			hc_loop_del_timer(g->loop, *t);
		*t = 0;
	}
	for (size_t i = 0; i < npm; i++) {
		struct member *m = find_member(g, pm[i].name, strlen(pm[i].name));

		if (m) /* gone (reaped) in between: nothing left to report */
			deliver_member(g, pm[i].type, m);
		free(pm[i].name);
	}
	for (size_t i = 0; i < npe; i++) {
		deliver_user(g, pe[i].name, pe[i].payload, pe[i].len, pe[i].ltime, true);
		free(pe[i].name);
		free(pe[i].payload);
	}
	free(pm);
	free(pe);
}

static int64_t coalesce_due(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;

	(void)loop;
	if (id == g->coalesce_timer)
		g->coalesce_timer = 0;
	else
		g->quiescent_timer = 0;
	coalesce_flush(g);
	return HC_LOOP_TIMER_DONE;
}

/* Something was held back: (re)arm the timers. */
static void coalesce_arm(struct hc_gossip *g)
{
	if (!g->coalesce_timer)
		g->coalesce_timer = hc_loop_add_timer(g->loop, g->cfg.coalesce_ms, coalesce_due, g);
	if (g->quiescent_timer)
		hc_loop_del_timer(g->loop, g->quiescent_timer);
	g->quiescent_timer = hc_loop_add_timer(g->loop, g->cfg.coalesce_ms / 3 + 1, coalesce_due,
					       g);
}

static void emit_member(struct hc_gossip *g, enum hc_gossip_event_type type,
			const struct member *m)
{
	struct pending_member *grown;

	/* Reaps remove the member: report them at once, with what is known. */
	if (!g->cfg.coalesce_ms || type == HC_GOSSIP_EV_MEMBER_REAP) {
		deliver_member(g, type, m);
		return;
	}
	for (size_t i = 0; i < g->npending_members; i++) {
		if (strcmp(g->pending_members[i].name, m->name) == 0) {
			g->pending_members[i].type = type; /* the latest change wins */
			coalesce_arm(g);
			return;
		}
	}
	grown = realloc(g->pending_members, (g->npending_members + 1) * sizeof(*grown));
	if (!grown || !(grown[g->npending_members].name = strdup(m->name))) {
		if (grown)
			g->pending_members = grown;
		deliver_member(g, type, m); /* out of memory: do not lose it */
		return;
	}
	grown[g->npending_members++].type = type;
	g->pending_members = grown;
	coalesce_arm(g);
}

/* Holds back a coalescable user event; false if it must go out now. */
static bool coalesce_user(struct hc_gossip *g, const struct hc_gossip_serf_user_event *e)
{
	struct pending_event *pe = NULL, *grown;

	for (size_t i = 0; i < g->npending_events; i++)
		if (bytes_eq_str(e->name, g->pending_events[i].name))
			pe = &g->pending_events[i];
	if (pe && pe->ltime > e->ltime)
		return true; /* an older one: the newer stays */
	if (!pe) {
		grown = realloc(g->pending_events, (g->npending_events + 1) * sizeof(*grown));
		if (!grown)
			return false;
		g->pending_events = grown;
		pe = &grown[g->npending_events];
		memset(pe, 0, sizeof(*pe));
		if (!(pe->name = bytes_dup(e->name)))
			return false;
		g->npending_events++;
	}
	free(pe->payload);
	pe->payload = malloc(e->payload.len + 1);
	if (!pe->payload) {
		pe->len = 0;
	} else {
		memcpy(pe->payload, e->payload.ptr ? e->payload.ptr : (const uint8_t *)"",
		       e->payload.len);
		pe->len = e->payload.len;
	}
	pe->ltime = e->ltime;
	coalesce_arm(g);
	return true;
}

/* ---- broadcasting serf messages ---- */

static unsigned retransmit_limit(const struct hc_gossip *g)
{
	/* serf sizes its queues by its own member count (failed ones too). */
	return hc_gossip_retransmit_limit(4, g->nmembers);
}

static int encode_serf(const struct hc_gossip_serf_msg *m, struct hc_gossip_mp_writer *w)
{
	int r = hc_gossip_serf_encode(m, w);

	return r ? r : hc_gossip_mp_writer_error(w);
}

static int queue_raw(struct hc_gossip *g, struct hc_gossip_bcast_queue *q, const uint8_t *msg,
		     size_t len, hc_gossip_bcast_done_fn *done, void *arg)
{
	int r = hc_gossip_bcast_queue_push(q, NULL, msg, len, done, arg);

	if (r < 0)
		hc_log(HC_LOG_WARN, "cannot queue a broadcast: %s", strerror(-r));
	else
		hc_ml_busy(g->ml);
	return r;
}

static int queue_msg(struct hc_gossip *g, struct hc_gossip_bcast_queue *q,
		     const struct hc_gossip_serf_msg *m, hc_gossip_bcast_done_fn *done, void *arg)
{
	struct hc_gossip_mp_writer w;
	int r;

	hc_gossip_mp_writer_init(&w, 0);
	r = encode_serf(m, &w);
	if (r == 0)
		r = queue_raw(g, q, w.buf, w.len, done, arg);
	hc_gossip_mp_writer_fini(&w);
	return r;
}

/* memberlist SendTo: one user message straight to an address. */
static int send_to(struct hc_gossip *g, const struct hc_gossip_addr *to, const uint8_t *msg,
		   size_t len)
{
	return hc_ml_send_user(g->ml, to, msg, len);
}

/* ---- intents ---- */

static struct intent *find_intent(struct hc_gossip *g, const char *node, size_t len)
{
	for (size_t i = 0; i < g->nintents; i++)
		if (strlen(g->intents[i].node) == len && memcmp(g->intents[i].node, node, len) == 0)
			return &g->intents[i];
	return NULL;
}

static void drop_intent(struct hc_gossip *g, size_t i)
{
	free(g->intents[i].node);
	g->intents[i] = g->intents[--g->nintents];
}

/* Remembers an intent for a node we do not know yet; true if it is news. */
static bool upsert_intent(struct hc_gossip *g, struct hc_gossip_bytes node, uint64_t ltime,
			  bool leave)
{
	struct intent *in = find_intent(g, (const char *)node.ptr, node.len);

	if (in) {
		if (in->ltime >= ltime)
			return false;
	} else {
		if (g->nintents >= MAX_INTENTS) {
			size_t oldest = 0;

			for (size_t i = 1; i < g->nintents; i++)
				if (g->intents[i].when_ms < g->intents[oldest].when_ms)
					oldest = i;
			drop_intent(g, oldest);
		}
		if (g->nintents == g->capintents) {
			size_t cap = g->capintents ? g->capintents * 2 : 16;
			struct intent *ins = realloc(g->intents, cap * sizeof(*ins));

			if (!ins)
				return false;
			g->intents = ins;
			g->capintents = cap;
		}
		in = &g->intents[g->nintents];
		in->node = bytes_dup(node);
		if (!in->node)
			return false;
		g->nintents++;
	}
	in->ltime = ltime;
	in->leave = leave;
	in->when_ms = now_ms(g);
	return true;
}

static void broadcast_join(struct hc_gossip *g, uint64_t ltime);

/* Returns true if the intent should be gossiped on. */
static bool handle_join_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in)
{
	struct member *m;

	witness(&g->clock, in->ltime);
	m = find_member(g, (const char *)in->node.ptr, in->node.len);
	if (!m)
		return upsert_intent(g, in->node, in->ltime, false);
	if (in->ltime <= m->status_ltime)
		return false;
	m->status_ltime = in->ltime;
	if (m->status == HC_GOSSIP_LEAVING)
		m->status = HC_GOSSIP_ALIVE;
	return true;
}

static bool handle_leave_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in)
{
	struct member *m;

	witness(&g->clock, in->ltime);
	m = find_member(g, (const char *)in->node.ptr, in->node.len);
	if (!m)
		return upsert_intent(g, in->node, in->ltime, true);
	if (in->ltime <= m->status_ltime)
		return false;
	if (bytes_eq_str(in->node, g->name) && g->state == SERF_ALIVE) {
		hc_log(HC_LOG_DEBUG, "refuting an older leave intent");
		broadcast_join(g, g->clock);
		return false;
	}
	m->status_ltime = in->ltime;
	switch (m->status) {
	case HC_GOSSIP_ALIVE:
		m->status = HC_GOSSIP_LEAVING;
		break;
	case HC_GOSSIP_FAILED:
		m->status = HC_GOSSIP_LEFT;
		emit_member(g, HC_GOSSIP_EV_MEMBER_LEAVE, m);
		break;
	case HC_GOSSIP_LEAVING:
	case HC_GOSSIP_LEFT:
		break;
	default:
		return false;
	}
	if (in->prune && m != find_member(g, g->name, strlen(g->name))) {
		emit_member(g, HC_GOSSIP_EV_MEMBER_REAP, m);
		member_remove(g, m);
	}
	return true;
}

static void broadcast_join(struct hc_gossip *g, uint64_t ltime)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_JOIN };

	m.u.intent.ltime = ltime;
	m.u.intent.node = hc_gossip_bytes_str(g->name);
	witness(&g->clock, ltime);
	handle_join_intent(g, &m.u.intent);
	queue_msg(g, g->intent_q, &m, NULL, NULL);
}

/* ---- user events ---- */

static bool event_seen(const struct event_slot *slot, const struct hc_gossip_serf_user_event *e)
{
	for (size_t i = 0; i < slot->n; i++) {
		const struct user_event *p = &slot->events[i];

		if (p->name_len == e->name.len && p->payload_len == e->payload.len &&
		    (!e->name.len || memcmp(p->name, e->name.ptr, e->name.len) == 0) &&
		    (!e->payload.len || memcmp(p->payload, e->payload.ptr, e->payload.len) == 0))
			return true;
	}
	return false;
}

static void event_slot_clear(struct event_slot *slot)
{
	for (size_t i = 0; i < slot->n; i++) {
		free(slot->events[i].name);
		free(slot->events[i].payload);
	}
	free(slot->events);
	memset(slot, 0, sizeof(*slot));
}

static int event_slot_add(struct event_slot *slot, const struct hc_gossip_serf_user_event *e)
{
	struct user_event *evs, *ue;

	if (slot->n >= MAX_PER_LTIME)
		return -ENOSPC;
	evs = realloc(slot->events, (slot->n + 1) * sizeof(*evs));
	if (!evs)
		return -ENOMEM;
	slot->events = evs;
	ue = &evs[slot->n];
	ue->name = malloc(e->name.len + 1);
	ue->payload = malloc(e->payload.len + 1);
	if (!ue->name || !ue->payload) {
		free(ue->name);
		free(ue->payload);
		return -ENOMEM;
	}
	memcpy(ue->name, e->name.ptr ? e->name.ptr : (const uint8_t *)"", e->name.len);
	ue->name[e->name.len] = '\0';
	memcpy(ue->payload, e->payload.ptr ? e->payload.ptr : (const uint8_t *)"", e->payload.len);
	ue->name_len = e->name.len;
	ue->payload_len = e->payload.len;
	slot->n++;
	return 0;
}

/* serf's handleUserEvent: true if new (deliver and gossip on). */
static bool handle_user_event(struct hc_gossip *g, const struct hc_gossip_serf_user_event *e)
{
	struct event_slot *slot;
	char *name;

	witness(&g->event_clock, e->ltime);
	if (e->ltime < g->event_min_time)
		return false;
	if (g->event_clock > RING && e->ltime < g->event_clock - RING) {
		hc_log(HC_LOG_WARN, "old user event from time %llu (now %llu) dropped",
		       (unsigned long long)e->ltime, (unsigned long long)g->event_clock);
		g->st.events_too_old++;
		return false;
	}
	slot = &g->events[e->ltime % RING];
	if (slot->used && slot->ltime == e->ltime) {
		if (event_seen(slot, e)) {
			g->st.events_duplicate++;
			return false;
		}
	} else {
		event_slot_clear(slot);
		slot->used = true;
		slot->ltime = e->ltime;
	}
	if (event_slot_add(slot, e) < 0)
		return false;
	if (e->cc && g->cfg.coalesce_ms && coalesce_user(g, e))
		return true;
	name = bytes_dup(e->name);
	if (name)
		deliver_user(g, name, e->payload.ptr, e->payload.len, e->ltime, e->cc);
	free(name);
	return true;
}

int hc_gossip_user_event(struct hc_gossip *g, const char *name, const uint8_t *payload,
			 size_t len, bool coalesce)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_USER_EVENT };
	struct hc_gossip_mp_writer w;
	int r;

	if (strlen(name) + len > g->cfg.user_event_size_limit)
		return -EMSGSIZE;
	m.u.event.ltime = g->event_clock;
	m.u.event.name = hc_gossip_bytes_str(name);
	m.u.event.payload = (struct hc_gossip_bytes){ payload ? payload : (const uint8_t *)"",
						      len };
	m.u.event.cc = coalesce;
	hc_gossip_mp_writer_init(&w, 0);
	r = encode_serf(&m, &w);
	if (r == 0 && w.len > g->cfg.user_event_size_limit)
		r = -EMSGSIZE;
	if (r == 0) {
		g->event_clock++;
		handle_user_event(g, &m.u.event);
		r = queue_raw(g, g->event_q, w.buf, w.len, NULL, NULL);
	}
	hc_gossip_mp_writer_fini(&w);
	return r;
}

/* ---- queries ---- */

static struct out_query *find_out_query(struct hc_gossip *g, uint64_t ltime)
{
	for (struct out_query *q = g->out_queries; q; q = q->next)
		if (q->ltime == ltime)
			return q;
	return NULL;
}

static bool name_listed(char **names, size_t n, struct hc_gossip_bytes who)
{
	for (size_t i = 0; i < n; i++)
		if (bytes_eq_str(who, names[i]))
			return true;
	return false;
}

static int name_append(char ***names, size_t *n, struct hc_gossip_bytes who)
{
	char **grown = realloc(*names, (*n + 1) * sizeof(**names));

	if (!grown)
		return -ENOMEM;
	*names = grown;
	if (!(grown[*n] = bytes_dup(who)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void handle_query_response(struct hc_gossip *g,
				  const struct hc_gossip_serf_query_response *resp)
{
	struct out_query *q = find_out_query(g, resp->ltime);
	bool ack = resp->flags & HC_GOSSIP_SERF_QUERY_ACK;
	char *from;

	if (!q || q->id != resp->id)
		return;
	if (ack ? name_listed(q->acked, q->nacked, resp->from)
		: name_listed(q->responded, q->nresponded, resp->from))
		return;
	if ((ack ? name_append(&q->acked, &q->nacked, resp->from)
		 : name_append(&q->responded, &q->nresponded, resp->from)) < 0)
		return;
	from = bytes_dup(resp->from);
	if (from && q->on_response)
		q->on_response(q->arg, from, resp->payload.ptr, resp->payload.len, ack);
	free(from);
}

/* Sends a query response to the originator, and through relay_factor
 * random members when asked (serf's relayResponse). */
static int send_response(struct hc_gossip *g, const struct hc_gossip_addr *origin,
			 uint8_t relay_factor, const struct hc_gossip_serf_msg *resp)
{
	struct hc_gossip_mp_writer w, relay;
	struct member *via[255];
	size_t alive_others = 0, k = 0;
	int r;

	hc_gossip_mp_writer_init(&w, 0);
	r = encode_serf(resp, &w);
	if (r == 0 && w.len > QUERY_SIZE_LIMIT)
		r = -EMSGSIZE;
	if (r == 0)
		r = send_to(g, origin, w.buf, w.len);
	if (r < 0 || relay_factor == 0 || g->nmembers < (size_t)relay_factor + 1)
		goto out;
	for (size_t i = 0; i < g->nmembers; i++) {
		struct member *m = g->members[i];

		if (m->status == HC_GOSSIP_ALIVE && m->vsn[4] >= 5 && strcmp(m->name, g->name))
			alive_others++;
	}
	/* Random distinct eligible members, up to relay_factor. */
	for (size_t tries = 0; tries < 4 * g->nmembers && k < relay_factor && k < alive_others;
	     tries++) {
		struct member *m = g->members[rnd(g) % g->nmembers];
		bool dup = false;

		if (m->status != HC_GOSSIP_ALIVE || m->vsn[4] < 5 || !strcmp(m->name, g->name))
			continue;
		for (size_t i = 0; i < k; i++)
			dup |= via[i] == m;
		if (!dup)
			via[k++] = m;
	}
	{
		struct hc_gossip_serf_msg rm = { .type = HC_GOSSIP_SERF_RELAY };

		rm.u.relay.dest_ip = (struct hc_gossip_bytes){ origin->ip, origin->ip_len };
		rm.u.relay.dest_port = origin->port;
		rm.u.relay.dest_zone = hc_gossip_bytes_str("");
		rm.u.relay.dest_name = hc_gossip_bytes_str(g->name);
		rm.u.relay.inner = (struct hc_gossip_bytes){ w.buf, w.len };
		hc_gossip_mp_writer_init(&relay, 0);
		r = encode_serf(&rm, &relay);
		if (r == 0 && relay.len > QUERY_SIZE_LIMIT)
			r = -EMSGSIZE;
		for (size_t i = 0; r == 0 && i < k; i++)
			send_to(g, &via[i]->addr, relay.buf, relay.len);
		hc_gossip_mp_writer_fini(&relay);
	}
out:
	hc_gossip_mp_writer_fini(&w);
	return r;
}

static bool tag_matches(const struct hc_gossip *g, struct hc_gossip_bytes tag,
			struct hc_gossip_bytes expr)
{
	const char *value = "";
	char *pattern = bytes_dup(expr);
	regex_t re;
	bool ok;

	for (size_t i = 0; i < g->ntags; i++)
		if (bytes_eq_str(tag, g->tags[i].key))
			value = g->tags[i].value;
	/* Go's regexp (RE2) and POSIX EREs agree on the patterns people use
	 * in tag filters; an expression POSIX cannot compile matches nothing,
	 * as Go's behaviour for an invalid one. Unanchored, as Go's
	 * MatchString. */
	if (!pattern || regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
		free(pattern);
		return false;
	}
	ok = regexec(&re, value, 0, NULL, 0) == 0;
	regfree(&re);
	free(pattern);
	return ok;
}

/* serf's shouldProcessQuery: every filter must match. */
static bool query_matches(const struct hc_gossip *g, const struct hc_gossip_serf_query *q)
{
	for (size_t i = 0; i < q->nfilters; i++) {
		struct hc_gossip_serf_filter f;
		bool ok = false;

		if (hc_gossip_serf_filter_decode(q->filters[i], &f) < 0)
			return false;
		if (f.type == HC_GOSSIP_SERF_FILTER_NODE) {
			for (size_t k = 0; k < f.nnodes; k++)
				ok |= bytes_eq_str(f.nodes[k], g->name);
		} else if (f.type == HC_GOSSIP_SERF_FILTER_TAG) {
			ok = tag_matches(g, f.tag, f.expr);
		}
		hc_gossip_serf_filter_fini(&f);
		if (!ok)
			return false;
	}
	return true;
}

static bool query_seen(struct hc_gossip *g, const struct hc_gossip_serf_query *q)
{
	struct query_slot *slot = &g->queries[q->ltime % RING];
	uint32_t *ids;

	if (slot->used && slot->ltime == q->ltime) {
		for (size_t i = 0; i < slot->n; i++)
			if (slot->ids[i] == q->id)
				return true;
	} else {
		free(slot->ids);
		memset(slot, 0, sizeof(*slot));
		slot->used = true;
		slot->ltime = q->ltime;
	}
	if (slot->n >= MAX_PER_LTIME)
		return true; /* treat a flood at one Lamport time as already seen */
	ids = realloc(slot->ids, (slot->n + 1) * sizeof(*ids));
	if (ids) {
		slot->ids = ids;
		ids[slot->n++] = q->id;
	}
	return false;
}

static int64_t in_query_expired(struct hc_loop *loop, uint64_t id, void *arg);
static void drop_oldest_in_query(struct hc_gossip *g);
static void internal_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q,
			   uint64_t handle);

static uint64_t answer_window_ms(int64_t timeout_ns)
{
	uint64_t ms = timeout_ns > 0 ? (uint64_t)timeout_ns / 1000000 : 0;

	return ms < MAX_ANSWER_WINDOW_MS ? ms : MAX_ANSWER_WINDOW_MS;
}

/* serf's handleQuery: true if the query should be gossiped on. */
static bool handle_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q)
{
	bool rebroadcast = !(q->flags & HC_GOSSIP_SERF_QUERY_NO_BCAST);
	struct hc_gossip_addr origin;
	struct in_query *in;
	char *name;

	witness(&g->query_clock, q->ltime);
	if (g->query_clock > RING && q->ltime < g->query_clock - RING) {
		g->st.queries_too_old++;
		return false;
	}
	if (query_seen(g, q))
		return false;
	if (!query_matches(g, q))
		return rebroadcast;
	if (q->addr.len != 4 && q->addr.len != 16)
		return rebroadcast;
	memset(&origin, 0, sizeof(origin));
	memcpy(origin.ip, q->addr.ptr, q->addr.len);
	origin.ip_len = (uint8_t)q->addr.len;
	origin.port = q->port;
	if (q->flags & HC_GOSSIP_SERF_QUERY_ACK) {
		struct hc_gossip_serf_msg ack = { .type = HC_GOSSIP_SERF_QUERY_RESPONSE };

		ack.u.response.ltime = q->ltime;
		ack.u.response.id = q->id;
		ack.u.response.from = hc_gossip_bytes_str(g->name);
		ack.u.response.flags = HC_GOSSIP_SERF_QUERY_ACK;
		send_response(g, &origin, q->relay_factor, &ack);
	}
	in = calloc(1, sizeof(*in));
	if (!in)
		return rebroadcast;
	in->g = g;
	in->handle = ++g->next_handle;
	in->ltime = q->ltime;
	in->id = q->id;
	in->origin = origin;
	in->relay_factor = q->relay_factor;
	in->timer = hc_loop_add_timer(g->loop, answer_window_ms(q->timeout_ns), in_query_expired,
				      in);
	in->next = g->in_queries;
	g->in_queries = in;
	if (++g->nin_queries > MAX_OPEN_QUERIES)
		drop_oldest_in_query(g);
	g->st.queries_delivered++;

	name = bytes_dup(q->name);
	if (!name)
		return rebroadcast;
	if (strncmp(name, INTERNAL_PREFIX, strlen(INTERNAL_PREFIX)) == 0) {
		internal_query(g, q, in->handle);
	} else if (g->cfg.on_event) {
		char *source = bytes_dup(q->source_node);
		struct hc_gossip_event ev = {
			.type = HC_GOSSIP_EV_QUERY, .name = name, .payload = q->payload.ptr,
			.len = q->payload.len, .ltime = q->ltime, .query_id = in->handle,
			.query_source = source,
		};

		g->cfg.on_event(&ev, g->cfg.event_arg);
		free(source);
	}
	free(name);
	return rebroadcast;
}

static struct in_query **find_in_query(struct hc_gossip *g, uint64_t handle)
{
	for (struct in_query **p = &g->in_queries; *p; p = &(*p)->next)
		if ((*p)->handle == handle)
			return p;
	return NULL;
}

static void in_query_free(struct hc_gossip *g, struct in_query **link)
{
	struct in_query *in = *link;

	*link = in->next;
	g->nin_queries--;
	if (in->timer)
		hc_loop_del_timer(g->loop, in->timer);
	free(in);
}

static void drop_oldest_in_query(struct hc_gossip *g)
{
	struct in_query **link = &g->in_queries;

	while (*link && (*link)->next)
		link = &(*link)->next;
	if (*link)
		in_query_free(g, link);
}

static int64_t in_query_expired(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct in_query *in = arg;
	struct in_query **link = find_in_query(in->g, in->handle);

	(void)loop;
	(void)id;
	in->timer = 0;
	if (link)
		in_query_free(in->g, link);
	return HC_LOOP_TIMER_DONE;
}

int hc_gossip_respond(struct hc_gossip *g, uint64_t query_id, const uint8_t *payload,
		      size_t len)
{
	struct in_query **link = find_in_query(g, query_id);
	struct hc_gossip_serf_msg resp = { .type = HC_GOSSIP_SERF_QUERY_RESPONSE };
	struct in_query *in;
	int r;

	if (!link)
		return -ENOENT;
	in = *link;
	if (in->answered)
		return -EALREADY;
	resp.u.response.ltime = in->ltime;
	resp.u.response.id = in->id;
	resp.u.response.from = hc_gossip_bytes_str(g->name);
	resp.u.response.payload = (struct hc_gossip_bytes){ payload ? payload
								    : (const uint8_t *)"",
							    len };
	r = send_response(g, &in->origin, in->relay_factor, &resp);
	if (r == 0)
		in->answered = true;
	return r;
}

static int64_t out_query_expired(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct out_query *q = arg;
	struct hc_gossip *g = q->g;

	(void)loop;
	(void)id;
	for (struct out_query **p = &g->out_queries; *p; p = &(*p)->next) {
		if (*p == q) {
			*p = q->next;
			break;
		}
	}
	if (q->done)
		q->done(q->arg);
	for (size_t i = 0; i < q->nacked; i++)
		free(q->acked[i]);
	for (size_t i = 0; i < q->nresponded; i++)
		free(q->responded[i]);
	free(q->acked);
	free(q->responded);
	free(q);
	return HC_LOOP_TIMER_DONE;
}

static uint32_t default_query_timeout_ms(const struct hc_gossip *g)
{
	size_t n = hc_ml_member_count(g->ml);

	return g->cfg.gossip_interval_ms * QUERY_TIMEOUT_MULT *
	       (uint32_t)ceil(log10((double)n + 1.0));
}

static int encode_filters(const struct hc_gossip_query_params *p, struct hc_gossip_bytes *out,
			  struct hc_gossip_mp_writer *bufs, size_t *n)
{
	*n = 0;
	if (p && p->nnodes) {
		struct hc_gossip_bytes *names = calloc(p->nnodes, sizeof(*names));
		struct hc_gossip_serf_filter f = { .type = HC_GOSSIP_SERF_FILTER_NODE,
						   .nodes = names, .nnodes = p->nnodes };
		int r;

		if (!names)
			return -ENOMEM;
		for (size_t i = 0; i < p->nnodes; i++)
			names[i] = hc_gossip_bytes_str(p->nodes[i]);
		hc_gossip_mp_writer_init(&bufs[*n], 0);
		r = hc_gossip_serf_filter_encode(&f, &bufs[*n]);
		free(names);
		if (r < 0)
			return r;
		(*n)++;
	}
	for (size_t i = 0; p && i < p->ntags; i++) {
		struct hc_gossip_serf_filter f = {
			.type = HC_GOSSIP_SERF_FILTER_TAG,
			.tag = hc_gossip_bytes_str(p->tags[i].key),
			.expr = hc_gossip_bytes_str(p->tags[i].value),
		};

		hc_gossip_mp_writer_init(&bufs[*n], 0);
		if (hc_gossip_serf_filter_encode(&f, &bufs[*n]) < 0)
			return -EINVAL;
		(*n)++;
	}
	for (size_t i = 0; i < *n; i++)
		out[i] = (struct hc_gossip_bytes){ bufs[i].buf, bufs[i].len };
	return 0;
}

#define MAX_FILTERS 17

int hc_gossip_query(struct hc_gossip *g, const char *name, const uint8_t *payload, size_t len,
		    const struct hc_gossip_query_params *params, hc_gossip_response_fn *on_response,
		    void (*done)(void *arg), void *arg)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_QUERY };
	struct hc_gossip_serf_query *q = &m.u.query;
	struct hc_gossip_mp_writer bufs[MAX_FILTERS], w;
	struct hc_gossip_bytes filters[MAX_FILTERS];
	const struct hc_ml_node *self = hc_ml_self(g->ml);
	struct out_query *oq = NULL;
	size_t nfilters = 0;
	uint32_t timeout;
	int r;

	if (params && params->ntags > MAX_FILTERS - 1)
		return -E2BIG;
	hc_gossip_mp_writer_init(&w, 0);
	r = encode_filters(params, filters, bufs, &nfilters);
	if (r < 0)
		goto out;
	timeout = params && params->timeout_ms ? params->timeout_ms : default_query_timeout_ms(g);
	q->ltime = g->query_clock;
	q->id = (uint32_t)(rnd(g) & 0x7fffffff);
	q->addr = (struct hc_gossip_bytes){ self->addr.ip, self->addr.ip_len };
	q->port = self->addr.port;
	q->source_node = hc_gossip_bytes_str(g->name);
	q->filters = nfilters ? filters : NULL;
	q->nfilters = nfilters;
	q->filters_nil = nfilters == 0;
	q->flags = params && params->ack ? HC_GOSSIP_SERF_QUERY_ACK : 0;
	q->relay_factor = params ? params->relay_factor : 0;
	q->timeout_ns = (int64_t)timeout * 1000000;
	q->name = hc_gossip_bytes_str(name);
	q->payload = (struct hc_gossip_bytes){ payload ? payload : (const uint8_t *)"", len };
	r = encode_serf(&m, &w);
	if (r == 0 && w.len > QUERY_SIZE_LIMIT)
		r = -EMSGSIZE;
	if (r < 0)
		goto out;
	oq = calloc(1, sizeof(*oq));
	if (!oq) {
		r = -ENOMEM;
		goto out;
	}
	oq->g = g;
	oq->ltime = q->ltime;
	oq->id = q->id;
	oq->on_response = on_response;
	oq->done = done;
	oq->arg = arg;
	oq->timer = hc_loop_add_timer(g->loop, timeout, out_query_expired, oq);
	oq->next = g->out_queries;
	g->out_queries = oq;
	/* Process it here too: we may match our own filters and answer. The
	 * decoded copy must not alias our filter array. */
	{
		struct hc_gossip_serf_msg local;

		if (hc_gossip_serf_decode(w.buf, w.len, &local) == 0) {
			handle_query(g, &local.u.query);
			hc_gossip_serf_msg_fini(&local);
		}
	}
	/* Registered: from here on done() runs at the deadline, so a failed
	 * queueing (logged) is not an error the caller could clean up after. */
	queue_raw(g, g->query_q, w.buf, w.len, NULL, NULL);
	g->st.queries_sent++;
	r = 0;
out:
	for (size_t i = 0; i < nfilters; i++)
		hc_gossip_mp_writer_fini(&bufs[i]);
	hc_gossip_mp_writer_fini(&w);
	return r;
}

/* ---- internal queries (_serf_ping, _serf_conflict, key management) ---- */

static void respond_key(struct hc_gossip *g, uint64_t handle, bool ok, const char *message,
			bool list)
{
	struct hc_gossip_serf_key_response kr = { .result = ok };
	struct hc_gossip_bytes keys[64];
	char b64[64][48], primary[48] = "";
	struct hc_gossip_mp_writer w;
	size_t n = list && g->keyring ? hc_gossip_keyring_count(g->keyring) : 0;

	if (n > 64)
		n = 64;
	for (size_t i = 0; i < n; i++) {
		size_t klen;
		const uint8_t *k = hc_gossip_keyring_key(g->keyring, i, &klen);

		hc_gossip_key_to_base64(k, klen, b64[i], sizeof(b64[i]));
		keys[i] = hc_gossip_bytes_str(b64[i]);
		if (i == 0)
			memcpy(primary, b64[0], sizeof(primary));
	}
	kr.keys = n ? keys : NULL;
	kr.nkeys = n;
	kr.keys_nil = n == 0;
	kr.message = hc_gossip_bytes_str(message);
	kr.primary_key = hc_gossip_bytes_str(primary);
	hc_gossip_mp_writer_init(&w, 0);
	if (hc_gossip_serf_key_response_encode(&kr, &w) == 0 && !hc_gossip_mp_writer_error(&w))
		hc_gossip_respond(g, handle, w.buf, w.len);
	hc_gossip_mp_writer_fini(&w);
}

static void key_query(struct hc_gossip *g, const char *op, const struct hc_gossip_serf_query *q,
		      uint64_t handle)
{
	struct hc_gossip_serf_key_request req = { 0 };
	bool list = strcmp(op, "list-keys") == 0;
	int r = 0;

	if (!g->keyring) {
		respond_key(g, handle, false, "No keyring to modify (encryption not enabled)", false);
		return;
	}
	if (hc_gossip_serf_key_request_decode(q->payload.ptr, q->payload.len, &req) < 0) {
		respond_key(g, handle, false, "Failed to decode key request", false);
		return;
	}
	if (strcmp(op, "install-key") == 0)
		r = hc_gossip_keyring_install(g->keyring, req.key.ptr, req.key.len);
	else if (strcmp(op, "use-key") == 0)
		r = hc_gossip_keyring_use(g->keyring, req.key.ptr, req.key.len);
	else if (strcmp(op, "remove-key") == 0)
		r = hc_gossip_keyring_remove(g->keyring, req.key.ptr, req.key.len);
	else if (!list)
		return;
	if (r < 0) {
		respond_key(g, handle, false, strerror(-r), false);
		return;
	}
	if (!list && g->keyring_file && hc_gossip_keyring_save(g->keyring, g->keyring_file) < 0) {
		respond_key(g, handle, false, "Failed to write keyring file", false);
		return;
	}
	if (!list)
		hc_log(HC_LOG_INFO, "keyring: %s applied (%zu keys)", op,
		       hc_gossip_keyring_count(g->keyring));
	respond_key(g, handle, true, "", list);
}

static void conflict_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q,
			   uint64_t handle)
{
	struct hc_gossip_serf_member out = { 0 };
	struct hc_gossip_tag tags[64];
	struct member *m;
	struct hc_gossip_mp_writer w;

	if (bytes_eq_str(q->payload, g->name))
		return; /* we are the one in conflict: others answer */
	m = find_member(g, (const char *)q->payload.ptr, q->payload.len);
	if (m) {
		out.known = true;
		out.addr = (struct hc_gossip_bytes){ m->addr.ip, m->addr.ip_len };
		out.port = m->addr.port;
		out.name = hc_gossip_bytes_str(m->name);
		out.protocol_min = m->vsn[0];
		out.protocol_max = m->vsn[1];
		out.protocol_cur = m->vsn[2];
		out.delegate_min = m->vsn[3];
		out.delegate_max = m->vsn[4];
		out.delegate_cur = m->vsn[5];
		out.status = m->status;
		out.tags.n = m->ntags < 64 ? m->ntags : 64;
		out.tags.tags = tags;
		for (size_t i = 0; i < out.tags.n; i++) {
			tags[i].key = hc_gossip_bytes_str(m->tags[i].key);
			tags[i].value = hc_gossip_bytes_str(m->tags[i].value);
		}
	}
	hc_gossip_mp_writer_init(&w, 0);
	if (hc_gossip_serf_conflict_encode(&out, &w) == 0 && !hc_gossip_mp_writer_error(&w))
		hc_gossip_respond(g, handle, w.buf, w.len);
	hc_gossip_mp_writer_fini(&w);
}

static void internal_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q,
			   uint64_t handle)
{
	size_t plen = strlen(INTERNAL_PREFIX);
	char op[32];

	if (q->name.len - plen >= sizeof(op))
		return;
	memcpy(op, q->name.ptr + plen, q->name.len - plen);
	op[q->name.len - plen] = '\0';
	if (strcmp(op, "ping") == 0)
		return; /* the ack, if asked for, was the answer */
	if (strcmp(op, "conflict") == 0)
		conflict_query(g, q, handle);
	else
		key_query(g, op, q, handle);
}

/* ---- memberlist delegate ---- */

static void on_user_msg(void *arg, const uint8_t *buf, size_t len)
{
	struct hc_gossip *g = arg;
	struct hc_gossip_serf_msg m;
	bool rebroadcast = false;
	struct hc_gossip_bcast_queue *q = NULL;
	int r;

	if (len == 0)
		return;
	r = hc_gossip_serf_decode(buf, len, &m);
	if (r < 0) {
		g->st.dropped[hc_gossip_drop_reason(r)]++;
		return;
	}
	g->st.msgs_in[m.type < HC_SERF_MSG_TYPES ? m.type : 0]++;
	switch (m.type) {
	case HC_GOSSIP_SERF_LEAVE:
		rebroadcast = handle_leave_intent(g, &m.u.intent);
		q = g->intent_q;
		break;
	case HC_GOSSIP_SERF_JOIN:
		rebroadcast = handle_join_intent(g, &m.u.intent);
		q = g->intent_q;
		break;
	case HC_GOSSIP_SERF_USER_EVENT:
		rebroadcast = handle_user_event(g, &m.u.event);
		q = g->event_q;
		break;
	case HC_GOSSIP_SERF_QUERY:
		rebroadcast = handle_query(g, &m.u.query);
		q = g->query_q;
		break;
	case HC_GOSSIP_SERF_QUERY_RESPONSE:
		handle_query_response(g, &m.u.response);
		break;
	case HC_GOSSIP_SERF_RELAY: {
		struct hc_gossip_addr to = { 0 };

		if (m.u.relay.dest_ip.len == 4 || m.u.relay.dest_ip.len == 16) {
			memcpy(to.ip, m.u.relay.dest_ip.ptr, m.u.relay.dest_ip.len);
			to.ip_len = (uint8_t)m.u.relay.dest_ip.len;
			to.port = m.u.relay.dest_port;
			send_to(g, &to, m.u.relay.inner.ptr, m.u.relay.inner.len);
		}
		break;
	}
	default:
		break;
	}
	/* Gossip on the exact bytes received, as serf does. */
	if (rebroadcast && q)
		queue_raw(g, q, buf, len, NULL, NULL);
	hc_gossip_serf_msg_fini(&m);
}

static void get_broadcasts(void *arg, size_t overhead, size_t limit, struct hc_gossip_bytes *out,
			   size_t max, size_t *n)
{
	struct hc_gossip *g = arg;
	struct hc_gossip_bcast_queue *qs[] = { g->intent_q, g->query_q, g->event_q };
	unsigned tl = retransmit_limit(g);
	size_t used = 0;

	for (size_t i = 0; i < 3; i++) {
		size_t before = *n;

		if (used >= limit)
			break;
		hc_gossip_bcast_queue_take(qs[i], overhead, limit - used, tl, out, max, n);
		for (size_t k = before; k < *n; k++)
			used += out[k].len + overhead;
	}
}

static void local_state(void *arg, bool join, struct hc_gossip_mp_writer *w)
{
	struct hc_gossip *g = arg;
	struct hc_gossip_serf_event_slot *slots = calloc(RING, sizeof(*slots));
	struct hc_gossip_serf_status_ltime *status = calloc(g->nmembers + 1, sizeof(*status));
	struct hc_gossip_bytes *left = calloc(g->nmembers + 1, sizeof(*left));
	struct hc_gossip_serf_push_pull pp = { 0 };
	struct hc_gossip_serf_event *evs = NULL;
	size_t total = 0;

	(void)join;
	if (!slots || !status || !left)
		goto out;
	for (size_t i = 0; i < RING; i++)
		total += g->events[i].used ? g->events[i].n : 0;
	evs = calloc(total + 1, sizeof(*evs));
	if (!evs)
		goto out;
	total = 0;
	for (size_t i = 0; i < RING; i++) {
		const struct event_slot *s = &g->events[i];

		if (!s->used)
			continue;
		slots[i].used = true;
		slots[i].ltime = s->ltime;
		slots[i].events = &evs[total];
		slots[i].nevents = s->n;
		for (size_t k = 0; k < s->n; k++, total++) {
			evs[total].name = (struct hc_gossip_bytes){ s->events[k].name,
								    s->events[k].name_len };
			evs[total].payload = (struct hc_gossip_bytes){ s->events[k].payload,
								       s->events[k].payload_len };
		}
	}
	for (size_t i = 0; i < g->nmembers; i++) {
		const struct member *m = g->members[i];

		status[pp.nstatus].name = hc_gossip_bytes_str(m->name);
		status[pp.nstatus++].ltime = m->status_ltime;
		if (m->status == HC_GOSSIP_LEFT)
			left[pp.nleft++] = hc_gossip_bytes_str(m->name);
	}
	pp.ltime = g->clock;
	pp.event_ltime = g->event_clock;
	pp.query_ltime = g->query_clock;
	pp.slots = slots;
	pp.nslots = RING;
	pp.status = status;
	pp.left_members = left;
	hc_gossip_serf_push_pull_encode(&pp, w);
out:
	free(evs);
	free(slots);
	free(status);
	free(left);
}

static void merge_remote_state(void *arg, const uint8_t *buf, size_t len, bool join)
{
	struct hc_gossip *g = arg;
	struct hc_gossip_serf_push_pull pp;
	int r = hc_gossip_serf_push_pull_decode(buf, len, &pp);

	if (r < 0) {
		g->st.dropped[hc_gossip_drop_reason(r)]++;
		return;
	}
	if (pp.ltime > 0)
		witness(&g->clock, pp.ltime - 1);
	if (pp.event_ltime > 0)
		witness(&g->event_clock, pp.event_ltime - 1);
	if (pp.query_ltime > 0)
		witness(&g->query_clock, pp.query_ltime - 1);
	for (size_t i = 0; i < pp.nstatus; i++) {
		struct hc_gossip_serf_intent in = { .node = pp.status[i].name,
						    .ltime = pp.status[i].ltime };
		bool left = false;

		for (size_t k = 0; k < pp.nleft; k++)
			left |= hc_gossip_bytes_eq(pp.left_members[k], in.node);
		if (left) {
			in.ltime++;
			handle_leave_intent(g, &in);
		} else {
			handle_join_intent(g, &in);
		}
	}
	/* A join that asked to ignore old events sets the floor first. */
	if (join && g->join_ignore_old && pp.event_ltime > g->event_min_time)
		g->event_min_time = pp.event_ltime;
	for (size_t i = 0; i < pp.nslots; i++) {
		const struct hc_gossip_serf_event_slot *s = &pp.slots[i];

		for (size_t k = 0; s->used && k < s->nevents; k++) {
			struct hc_gossip_serf_user_event e = { .ltime = s->ltime,
							       .name = s->events[k].name,
							       .payload = s->events[k].payload };

			handle_user_event(g, &e);
		}
	}
	hc_gossip_serf_push_pull_fini(&pp);
}

static struct member *member_for_node(struct hc_gossip *g, const struct hc_ml_node *n)
{
	return find_member(g, n->name, strlen(n->name));
}

static void notify_join(void *arg, const struct hc_ml_node *n)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	if (!m) {
		struct intent *in;

		m = member_add(g, n->name);
		if (!m)
			return;
		m->status = HC_GOSSIP_ALIVE;
		/* Intents that arrived before the node did take effect now. */
		in = find_intent(g, n->name, strlen(n->name));
		if (in) {
			m->status_ltime = in->ltime;
			if (in->leave)
				m->status = HC_GOSSIP_LEAVING;
			drop_intent(g, (size_t)(in - g->intents));
		}
	} else {
		m->status = HC_GOSSIP_ALIVE;
		m->leave_ms = 0;
	}
	member_set_from_node(m, n);
	emit_member(g, HC_GOSSIP_EV_MEMBER_JOIN, m);
}

static void notify_leave(void *arg, const struct hc_ml_node *n)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	if (!m)
		return;
	if (m->status == HC_GOSSIP_LEAVING) {
		m->status = HC_GOSSIP_LEFT;
	} else if (m->status == HC_GOSSIP_ALIVE) {
		m->status = HC_GOSSIP_FAILED;
	} else {
		return;
	}
	m->leave_ms = now_ms(g);
	emit_member(g, m->status == HC_GOSSIP_LEFT ? HC_GOSSIP_EV_MEMBER_LEAVE
						   : HC_GOSSIP_EV_MEMBER_FAILED,
		    m);
}

static void notify_update(void *arg, const struct hc_ml_node *n)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	if (!m)
		return;
	member_set_from_node(m, n);
	emit_member(g, HC_GOSSIP_EV_MEMBER_UPDATE, m);
}

static void notify_ping_complete(void *arg, const struct hc_ml_node *n, int64_t rtt_us,
				 const uint8_t *payload, size_t len)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	(void)payload;
	(void)len;
	if (!m)
		return;
	m->rtt.samples[m->rtt.next] = rtt_us;
	m->rtt.next = (m->rtt.next + 1) % RTT_WINDOW;
	if (m->rtt.n < RTT_WINDOW)
		m->rtt.n++;
	m->rtt.probes++;
}

static void notify_probe_failed(void *arg, const struct hc_ml_node *n)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	if (m) {
		m->rtt.probes++;
		m->rtt.failures++;
	}
}

/* ---- periodic work: reaping, reconnecting, queue depth ---- */

static void reap_list(struct hc_gossip *g, enum hc_gossip_status status, uint32_t timeout_ms)
{
	uint64_t now = now_ms(g);

	for (size_t i = 0; i < g->nmembers;) {
		struct member *m = g->members[i];

		if (m->status == status && now - m->leave_ms > timeout_ms) {
			emit_member(g, HC_GOSSIP_EV_MEMBER_REAP, m);
			member_remove(g, m);
			continue;
		}
		i++;
	}
}

static int64_t reap_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_gossip *g = arg;
	uint64_t now = now_ms(g);

	(void)loop;
	(void)id;
	reap_list(g, HC_GOSSIP_FAILED, g->cfg.reconnect_timeout_ms);
	reap_list(g, HC_GOSSIP_LEFT, g->cfg.tombstone_timeout_ms);
	for (size_t i = 0; i < g->nintents;) {
		if (now - g->intents[i].when_ms > RECENT_INTENT_MS)
			drop_intent(g, i);
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
	if (failed && alive && (double)(rnd(g) % 1000) / 1000.0 <= (double)failed / (double)alive) {
		size_t pick = rnd(g) % failed;

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
			tags_free(copy, i + 1);
			return -ENOMEM;
		}
	}
	tags_free(g->tags, g->ntags);
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

static int open_keyring(struct hc_gossip *g, const struct hc_gossip_config *cfg, char *err,
			size_t errlen)
{
	int r;

	if (!cfg->nkeys && !cfg->keyring_file)
		return 0;
	g->keyring = hc_gossip_keyring_new();
	if (!g->keyring) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (cfg->keyring_file) {
		g->keyring_file = strdup(cfg->keyring_file);
		r = g->keyring_file ? hc_gossip_keyring_load(g->keyring, cfg->keyring_file)
				    : -ENOMEM;
		if (r < 0 && r != -ENOENT) {
			snprintf(err, errlen, "cannot load keyring %s: %s", cfg->keyring_file,
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
			snprintf(err, errlen, "invalid encryption key: want base64 of 16, 24 or 32 "
					      "bytes (as `serf keygen` makes)");
			return r;
		}
	}
	if (hc_gossip_keyring_count(g->keyring) == 0) {
		snprintf(err, errlen, "keyring %s holds no keys", cfg->keyring_file);
		return -EINVAL;
	}
	if (g->keyring_file && (r = hc_gossip_keyring_save(g->keyring, g->keyring_file)) < 0) {
		snprintf(err, errlen, "cannot write keyring %s: %s", g->keyring_file, strerror(-r));
		return r;
	}
	return 0;
}

struct hc_gossip *hc_gossip_new_with_transport(struct hc_loop *loop,
					       const struct hc_gossip_config *cfg,
					       const struct hc_gossip_addr *advertise,
					       const struct hc_gossip_transport_ops *ops,
					       void *ops_ctx, char *err, size_t errlen)
{
	struct hc_gossip *g = calloc(1, sizeof(*g));
	struct hc_ml_delegate d;
	struct hc_ml_config mc;

	if (!g) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->loop = loop;
	g->cfg = *cfg;
	apply_defaults(&g->cfg);
	g->name = strdup(cfg->name);
	g->cfg.name = g->name;
	g->clock = g->event_clock = g->query_clock = 1; /* serf increments once at start */
	hc_gossip_rand_init(&g->rng, cfg->seed);
	g->intent_q = hc_gossip_bcast_queue_new();
	g->event_q = hc_gossip_bcast_queue_new();
	g->query_q = hc_gossip_bcast_queue_new();
	if (!g->name || !g->intent_q || !g->event_q || !g->query_q ||
	    copy_tags(g, cfg->tags, cfg->ntags) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	g->cfg.tags = g->tags;
	if (encode_meta(g) < 0) {
		snprintf(err, errlen, "tags take more than 512 bytes");
		goto fail;
	}
	if (open_keyring(g, cfg, err, errlen) < 0)
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
	mc.seed = rnd(g);
	d = (struct hc_ml_delegate){
		.arg = g,
		.notify_msg = on_user_msg,
		.get_broadcasts = get_broadcasts,
		.local_state = local_state,
		.merge_remote_state = merge_remote_state,
		.notify_join = notify_join,
		.notify_leave = notify_leave,
		.notify_update = notify_update,
		.notify_ping_complete = notify_ping_complete,
		.notify_probe_failed = notify_probe_failed,
	};
	g->ml = hc_ml_new(loop, &mc, ops, ops_ctx, &d);
	if (!g->ml) {
		snprintf(err, errlen, "cannot start the membership engine");
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
		out_query_expired(g->loop, 0, q);
	}
	while (g->in_queries)
		in_query_free(g, &g->in_queries);
	if (g->reap_timer)
		hc_loop_del_timer(g->loop, g->reap_timer);
	if (g->reconnect_timer)
		hc_loop_del_timer(g->loop, g->reconnect_timer);
	if (g->queue_timer)
		hc_loop_del_timer(g->loop, g->queue_timer);
	if (g->leave_timer)
		hc_loop_del_timer(g->loop, g->leave_timer);
	g->cfg.on_event = NULL; /* held-back events die with us */
	coalesce_flush(g);
	hc_gossip_bcast_queue_free(g->intent_q);
	hc_gossip_bcast_queue_free(g->event_q);
	hc_gossip_bcast_queue_free(g->query_q);
	for (size_t i = 0; i < RING; i++) {
		event_slot_clear(&g->events[i]);
		free(g->queries[i].ids);
	}
	for (size_t i = 0; i < g->nmembers; i++)
		member_free(g->members[i]);
	free(g->members);
	while (g->nintents)
		drop_intent(g, 0);
	free(g->intents);
	hc_gossip_keyring_free(g->keyring);
	free(g->keyring_file);
	tags_free(g->tags, g->ntags);
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

static int bridge_stream(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf,
			 size_t len, struct hc_gossip_mp_writer *reply)
{
	struct net_bridge *b = arg;

	return b->ml ? hc_ml_on_stream(b->ml, from, buf, len, reply) : -ECONNREFUSED;
}

struct hc_gossip *hc_gossip_new(struct hc_loop *loop, const struct hc_gossip_config *cfg,
				char *err, size_t errlen)
{
	struct hc_gossip_net_config nc = { .tcp_timeout_ms = 10000, .max_streams = 128 };
	const struct hc_addr *adv = cfg->advertise ? cfg->advertise : &cfg->bind;
	struct hc_gossip_addr advertise;
	struct net_bridge *bridge;
	struct hc_gossip_net *net;
	struct hc_gossip *g;
	struct hc_addr bound;

	if (hc_addr_is_any(adv)) {
		snprintf(err, errlen, "cannot advertise a wildcard address: give a specific "
				      "bind or advertise address");
		return NULL;
	}
	bridge = calloc(1, sizeof(*bridge));
	if (!bridge) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	bridge->recv = (struct hc_gossip_receiver){ bridge_packet, bridge_stream, bridge };
	net = hc_gossip_net_new(loop, &cfg->bind, &nc, &bridge->recv, err, errlen);
	if (!net) {
		free(bridge);
		return NULL;
	}
	bound = *adv;
	if (!cfg->advertise || hc_addr_port(adv) == 0)
		hc_gossip_addr_set_port(&bound, hc_gossip_net_port(net));
	hc_gossip_addr_from_sockaddr(&bound, &advertise);
	g = hc_gossip_new_with_transport(loop, cfg, &advertise, &hc_gossip_net_ops, net, err,
					 errlen);
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
		broadcast_join(g, g->clock);
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
	char why[128];

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

		if (hc_addr_parse(seeds[i], false, &a, why, sizeof(why)) < 0 ||
		    hc_gossip_addr_from_sockaddr(&a, &js->addrs[i]) < 0) {
			hc_log(HC_LOG_ERROR, "invalid join address %s: %s", seeds[i], why);
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
	handle_leave_intent(g, &m.u.intent);
	if (hc_ml_alive_count(g->ml) <= 1) {
		/* Alone: nobody to tell, nothing to wait for. */
		hc_ml_leave(g->ml, BROADCAST_TIMEOUT_MS, NULL, NULL);
		leave_finish(g);
		return 0;
	}
	g->leave_timer = hc_loop_add_timer(g->loop, BROADCAST_TIMEOUT_MS, leave_intent_timeout, g);
	if (queue_msg(g, g->intent_q, &m, leave_intent_sent, g) < 0)
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

		member_view(m, &out[i]);
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
		tags_free((struct hc_gossip_kv *)members[i].tags, members[i].ntags);
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
	char depth[32];

	hc_ml_stats(g->ml, &ms);
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
