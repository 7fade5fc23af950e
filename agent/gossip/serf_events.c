/* The serf layer's events: member and user events delivered, coalesced, and the event ring. */
#include "gossip/gossip.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "gossip"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

static void deliver_member(struct hc_gossip *g, enum hc_gossip_event_type type,
			   const struct member *m)
{
	struct hc_gossip_member view;
	struct hc_gossip_event ev = { .type = type, .member = &view };

	hc_serf_member_view(m, &view);
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

void hc_serf_coalesce_flush(struct hc_gossip *g)
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
		struct member *m = hc_serf_find_member(g, pm[i].name, strlen(pm[i].name));

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
	hc_serf_coalesce_flush(g);
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

void hc_serf_emit_member(struct hc_gossip *g, enum hc_gossip_event_type type,
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
		if (hc_serf_bytes_eq_str(e->name, g->pending_events[i].name))
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
		if (!(pe->name = hc_serf_bytes_dup(e->name)))
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

void hc_serf_event_slot_clear(struct event_slot *slot)
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
bool hc_serf_handle_user_event(struct hc_gossip *g, const struct hc_gossip_serf_user_event *e)
{
	struct event_slot *slot;
	char *name;

	hc_serf_witness(&g->event_clock, e->ltime);
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
		hc_serf_event_slot_clear(slot);
		slot->used = true;
		slot->ltime = e->ltime;
	}
	if (event_slot_add(slot, e) < 0)
		return false;
	if (e->cc && g->cfg.coalesce_ms && coalesce_user(g, e))
		return true;
	name = hc_serf_bytes_dup(e->name);
	if (name)
		deliver_user(g, name, e->payload.ptr, e->payload.len, e->ltime, e->cc);
	free(name);
	return true;
}

/* ---- what our push/pull leaves out ---- */

struct versioned {
	const uint8_t *key;
	size_t key_len;
	uint64_t version;
	size_t ix; /* the event's place in ring order */
};

/* By key, then newest first. */
static int versioned_cmp(const void *a, const void *b)
{
	const struct versioned *x = a, *y = b;
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = n ? memcmp(x->key, y->key, n) : 0;

	if (c)
		return c;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return x->version > y->version ? -1 : x->version < y->version;
}

static bool same_key(const struct versioned *x, const struct versioned *y)
{
	return x->key_len == y->key_len && (!x->key_len || memcmp(x->key, y->key, x->key_len) == 0);
}

size_t hc_serf_ring_events(const struct hc_gossip *g)
{
	size_t n = 0;

	for (size_t i = 0; i < RING; i++)
		n += g->events[i].used ? g->events[i].n : 0;
	return n;
}

int hc_serf_ring_superseded(const struct hc_gossip *g, bool *drop)
{
	struct versioned *v;
	size_t n = 0, ix = 0, head = 0;

	if (!g->cfg.event_version)
		return 0;
	v = calloc(hc_serf_ring_events(g) + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < RING; i++) {
		const struct event_slot *s = &g->events[i];

		for (size_t k = 0; s->used && k < s->n; k++, ix++) {
			const struct user_event *e = &s->events[k];
			struct versioned *x = &v[n];

			x->ix = ix;
			if (g->cfg.event_version((const char *)e->name, e->payload, e->payload_len,
						 &x->key, &x->key_len, &x->version,
						 g->cfg.event_version_arg))
				n++;
		}
	}
	qsort(v, n, sizeof(*v), versioned_cmp);
	/* each key's run starts with its newest; the rest of the run older or
	 * equal, and only the strictly older ones are superseded */
	for (size_t i = 1; i < n; i++) {
		if (!same_key(&v[head], &v[i]))
			head = i;
		else if (v[i].version < v[head].version)
			drop[v[i].ix] = true;
	}
	free(v);
	return 0;
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
	r = hc_serf_encode(&m, &w);
	if (r == 0 && w.len > g->cfg.user_event_size_limit)
		r = -EMSGSIZE;
	if (r == 0) {
		g->event_clock++;
		hc_serf_handle_user_event(g, &m.u.event);
		r = hc_serf_queue_raw(g, g->event_q, w.buf, w.len, NULL, NULL);
	}
	hc_gossip_mp_writer_fini(&w);
	return r;
}
