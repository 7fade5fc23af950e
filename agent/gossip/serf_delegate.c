/* Serf as memberlist's delegate: messages in, broadcasts out, push/pull state, member news. */
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
		rebroadcast = hc_serf_handle_leave_intent(g, &m.u.intent);
		q = g->intent_q;
		break;
	case HC_GOSSIP_SERF_JOIN:
		rebroadcast = hc_serf_handle_join_intent(g, &m.u.intent);
		q = g->intent_q;
		break;
	case HC_GOSSIP_SERF_USER_EVENT:
		rebroadcast = hc_serf_handle_user_event(g, &m.u.event);
		q = g->event_q;
		break;
	case HC_GOSSIP_SERF_QUERY:
		rebroadcast = hc_serf_handle_query(g, &m.u.query);
		q = g->query_q;
		break;
	case HC_GOSSIP_SERF_QUERY_RESPONSE:
		hc_serf_handle_query_response(g, &m.u.response);
		break;
	case HC_GOSSIP_SERF_RELAY: {
		struct hc_gossip_addr to = { 0 };

		if (m.u.relay.dest_ip.len == 4 || m.u.relay.dest_ip.len == 16) {
			memcpy(to.ip, m.u.relay.dest_ip.ptr, m.u.relay.dest_ip.len);
			to.ip_len = (uint8_t)m.u.relay.dest_ip.len;
			to.port = m.u.relay.dest_port;
			hc_serf_send_to(g, &to, m.u.relay.inner.ptr, m.u.relay.inner.len);
		}
		break;
	}
	default:
		break;
	}
	/* Gossip on the exact bytes received, as serf does. */
	if (rebroadcast && q)
		hc_serf_queue_raw(g, q, buf, len, NULL, NULL);
	hc_gossip_serf_msg_fini(&m);
}

static void get_broadcasts(void *arg, size_t overhead, size_t limit, struct hc_gossip_bytes *out,
			   size_t max, size_t *n)
{
	struct hc_gossip *g = arg;
	struct hc_gossip_bcast_queue *qs[] = { g->intent_q, g->query_q, g->event_q };
	unsigned tl = hc_serf_retransmit_limit(g);
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

/*
 * The ring's events into slots (evs holds them all), less those drop marks:
 * a slot left with none goes as nil, as an unused one. Receivers dedupe by
 * (time, name, payload) and take whatever subset comes, so leaving events
 * out changes nothing for them but the bytes.
 */
static void ring_slots(const struct hc_gossip *g, const bool *drop,
		       struct hc_gossip_serf_event_slot *slots, struct hc_gossip_serf_event *evs)
{
	size_t ix = 0, total = 0;

	for (size_t i = 0; i < RING; i++) {
		const struct event_slot *s = &g->events[i];

		for (size_t k = 0; s->used && k < s->n; k++, ix++) {
			if (drop[ix])
				continue;
			if (!slots[i].used) {
				slots[i].used = true;
				slots[i].ltime = s->ltime;
				slots[i].events = &evs[total];
			}
			evs[total].name = (struct hc_gossip_bytes){ s->events[k].name,
								    s->events[k].name_len };
			evs[total++].payload = (struct hc_gossip_bytes){
				s->events[k].payload, s->events[k].payload_len
			};
			slots[i].nevents++;
		}
	}
}

static void local_state(void *arg, bool join, struct hc_gossip_mp_writer *w)
{
	struct hc_gossip *g = arg;
	size_t nevents = hc_serf_ring_events(g);
	struct hc_gossip_serf_event_slot *slots = calloc(RING, sizeof(*slots));
	struct hc_gossip_serf_status_ltime *status = calloc(g->nmembers + 1, sizeof(*status));
	struct hc_gossip_bytes *left = calloc(g->nmembers + 1, sizeof(*left));
	struct hc_gossip_serf_event *evs = calloc(nevents + 1, sizeof(*evs));
	bool *drop = calloc(nevents + 1, sizeof(*drop));
	struct hc_gossip_serf_push_pull pp = { 0 };

	(void)join;
	if (!slots || !status || !left || !evs || !drop)
		goto out;
	/* -ENOMEM marks none: then all go, as serf sends them */
	(void)hc_serf_ring_superseded(g, drop);
	ring_slots(g, drop, slots, evs);
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
	free(drop);
	free(evs);
	free(slots);
	free(status);
	free(left);
}

static void told(void *arg, unsigned joined)
{
	(void)arg;
	(void)joined;
}

/*
 * A member another node lists as left, merged here as a leave intent (one
 * past its status time), turned m, alive to us, into "leaving". After a
 * real leave memberlist's death notice follows within seconds. After a
 * restart (the other node held it left until its alive came) nothing
 * would: m refutes a status time newer than its join only when our push/pull
 * state reaches it, a round (30 s) later, and until then we drop its states
 * and answers. A push/pull with m now hands it the time at once, and its
 * refuting join comes back by gossip within a few rounds. On the wire it is
 * an ordinary push/pull.
 */
static void tell_leaving_member(struct hc_gossip *g, struct member *m)
{
	const struct hc_ml_node *n = hc_ml_find(g->ml, m->name);

	if (n && (n->state == HC_GOSSIP_STATE_ALIVE || n->state == HC_GOSSIP_STATE_SUSPECT))
		hc_ml_join(g->ml, &m->addr, 1, told, NULL);
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
		hc_serf_witness(&g->clock, pp.ltime - 1);
	if (pp.event_ltime > 0)
		hc_serf_witness(&g->event_clock, pp.event_ltime - 1);
	if (pp.query_ltime > 0)
		hc_serf_witness(&g->query_clock, pp.query_ltime - 1);
	for (size_t i = 0; i < pp.nstatus; i++) {
		struct hc_gossip_serf_intent in = { .node = pp.status[i].name,
						    .ltime = pp.status[i].ltime };
		bool left = false;

		for (size_t k = 0; k < pp.nleft; k++)
			left |= hc_gossip_bytes_eq(pp.left_members[k], in.node);
		if (left) {
			struct member *m = hc_serf_find_member(g, (const char *)in.node.ptr,
							       in.node.len);
			bool was_alive = m && m->status == HC_GOSSIP_ALIVE &&
					 !hc_serf_bytes_eq_str(in.node, g->name);

			in.ltime++;
			hc_serf_handle_leave_intent(g, &in); /* not a prune: m stays */
			if (was_alive && m->status == HC_GOSSIP_LEAVING)
				tell_leaving_member(g, m);
		} else {
			hc_serf_handle_join_intent(g, &in);
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

			hc_serf_handle_user_event(g, &e);
		}
	}
	hc_gossip_serf_push_pull_fini(&pp);
}

static struct member *member_for_node(struct hc_gossip *g, const struct hc_ml_node *n)
{
	return hc_serf_find_member(g, n->name, strlen(n->name));
}

static void notify_join(void *arg, const struct hc_ml_node *n)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	if (!m) {
		struct intent *in;

		m = hc_serf_member_add(g, n->name);
		if (!m)
			return;
		m->status = HC_GOSSIP_ALIVE;
		/* Intents that arrived before the node did take effect now. */
		in = hc_serf_find_intent(g, n->name, strlen(n->name));
		if (in) {
			m->status_ltime = in->ltime;
			if (in->leave)
				m->status = HC_GOSSIP_LEAVING;
			hc_serf_drop_intent(g, (size_t)(in - g->intents));
		}
	} else {
		m->status = HC_GOSSIP_ALIVE;
		m->leave_ms = 0;
	}
	hc_serf_member_set_from_node(m, n);
	hc_serf_emit_member(g, HC_GOSSIP_EV_MEMBER_JOIN, m);
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
	m->leave_ms = hc_serf_now_ms(g);
	hc_serf_emit_member(g, m->status == HC_GOSSIP_LEFT ? HC_GOSSIP_EV_MEMBER_LEAVE
			    : HC_GOSSIP_EV_MEMBER_FAILED,
			    m);
}

static void notify_update(void *arg, const struct hc_ml_node *n)
{
	struct hc_gossip *g = arg;
	struct member *m = member_for_node(g, n);

	if (!m)
		return;
	hc_serf_member_set_from_node(m, n);
	hc_serf_emit_member(g, HC_GOSSIP_EV_MEMBER_UPDATE, m);
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

struct hc_ml_delegate hc_serf_delegate(struct hc_gossip *g)
{
	return (struct hc_ml_delegate){
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
}
