/* memberlist's probing (SWIM with Lifeguard's nacks and indirect pings) and gossip rounds. */
#include "gossip/keyring_int.h"
#include "gossip/memberlist_engine_int.h"
#include "gossip/memberlist_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "gossip"
#include "log/log.h"
#include "loop/loop.h"

#define BUSY_BURST 16 /* packets per round while broadcasts wait */
#define BURST_MIN_LEFTOVER 512 /* a packet with less room left was full */

/* ---- probing ---- */

static struct relay *find_relay(struct hc_ml *ml, uint32_t seq, struct relay ***link)
{
	for (struct relay **p = &ml->relays; *p; p = &(*p)->next) {
		if ((*p)->seq == seq) {
			*link = p;
			return *p;
		}
	}
	return NULL;
}

void hc_ml_relay_free(struct hc_ml *ml, struct relay **link)
{
	struct relay *r = *link;

	*link = r->next;
	if (r->timer)
		hc_loop_del_timer(ml->loop, r->timer);
	free(r);
}

void hc_ml_probe_end(struct hc_ml *ml)
{
	struct probe *p = &ml->probe;

	if (p->indirect_timer)
		hc_loop_del_timer(ml->loop, p->indirect_timer);
	if (p->deadline_timer)
		hc_loop_del_timer(ml->loop, p->deadline_timer);
	free(p->target);
	memset(p, 0, sizeof(*p));
}

void hc_ml_on_ack(struct hc_ml *ml, const struct hc_gossip_ack *ack)
{
	struct probe *p = &ml->probe;
	struct relay **link, *r;

	if (p->active && ack->seq_no == p->seq) {
		struct node *n = hc_ml_find_node(ml, hc_gossip_bytes_str(p->target));
		int64_t rtt = (int64_t)(hc_loop_now_ns(ml->loop) - p->sent_ns) / 1000;

		hc_ml_awareness_delta(ml, -1);
		if (n) {
			n->pub.rtt_us = rtt;
			if (ml->d.notify_ping_complete)
				ml->d.notify_ping_complete(ml->d.arg, &n->pub, rtt, ack->payload.ptr,
							   ack->payload.len);
		}
		hc_ml_probe_end(ml);
		return;
	}
	r = find_relay(ml, ack->seq_no, &link);
	if (r) {
		struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_ACK };

		m.u.ack.seq_no = r->orig_seq;
		hc_ml_send_msg(ml, &r->requester, &m);
		hc_ml_relay_free(ml, link);
	}
}

void hc_ml_on_nack(struct hc_ml *ml, const struct hc_gossip_nack *nack)
{
	if (ml->probe.active && nack->seq_no == ml->probe.seq)
		ml->probe.nacks++;
}

static int64_t relay_timeout(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct relay *r = arg, **link;
	struct hc_ml *ml = r->ml;

	(void)loop;
	(void)id;
	r->timer = 0;
	if (r->nack) {
		struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_NACK };

		m.u.nack.seq_no = r->orig_seq;
		hc_ml_send_msg(ml, &r->requester, &m);
	}
	if (find_relay(ml, r->seq, &link))
		hc_ml_relay_free(ml, link);
	return HC_LOOP_TIMER_DONE;
}

static void fill_ping(struct hc_ml *ml, struct hc_gossip_msg *m, uint32_t seq, const char *target)
{
	memset(m, 0, sizeof(*m));
	m->type = HC_GOSSIP_MSG_PING;
	m->u.ping.seq_no = seq;
	m->u.ping.node = hc_gossip_bytes_str(target);
	m->u.ping.source_addr = hc_ml_addr_ip(&ml->self->pub.addr);
	m->u.ping.source_port = ml->self->pub.addr.port;
	m->u.ping.source_node = hc_gossip_bytes_str(ml->self->name);
}

void hc_ml_on_indirect_ping(struct hc_ml *ml, const struct hc_gossip_indirect_ping *ind,
			    const struct hc_gossip_addr *from)
{
	struct relay *r = calloc(1, sizeof(*r));
	struct hc_gossip_addr target;
	struct hc_gossip_msg m;
	char *name;

	if (!r)
		return;
	if (hc_ml_addr_from_bytes(ind->target, ind->port, &target) < 0 ||
	    !(name = strndup(ind->node.ptr ? (const char *)ind->node.ptr : "", ind->node.len))) {
		free(r);
		return;
	}
	r->ml = ml;
	r->seq = ++ml->seq;
	r->orig_seq = ind->seq_no;
	r->nack = ind->nack;
	/* Answer where the requester says it listens, else to the sender. */
	if (!ind->source_addr.len ||
	    hc_ml_addr_from_bytes(ind->source_addr, ind->source_port, &r->requester) < 0)
		r->requester = *from;
	r->timer = hc_loop_add_timer(ml->loop, ml->cfg.probe_timeout_ms, relay_timeout, r);
	r->next = ml->relays;
	ml->relays = r;
	fill_ping(ml, &m, r->seq, name);
	hc_ml_send_msg(ml, &target, &m);
	free(name);
}

void hc_ml_on_ping(struct hc_ml *ml, const struct hc_gossip_ping *ping,
		   const struct hc_gossip_addr *from)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_ACK };
	struct hc_gossip_mp_writer payload;
	struct hc_gossip_addr to = *from;

	/* A ping for another name means the sender has stale addresses. */
	if (ping->node.len && !hc_ml_bytes_is(ping->node, ml->self->name))
		return;
	if (ping->source_addr.len)
		hc_ml_addr_from_bytes(ping->source_addr, ping->source_port, &to);
	hc_gossip_mp_writer_init(&payload, 0);
	if (ml->d.ack_payload)
		ml->d.ack_payload(ml->d.arg, &payload);
	m.u.ack.seq_no = ping->seq_no;
	if (payload.len && !hc_gossip_mp_writer_error(&payload))
		m.u.ack.payload = (struct hc_gossip_bytes){ payload.buf, payload.len };
	hc_ml_send_msg(ml, &to, &m);
	hc_gossip_mp_writer_fini(&payload);
}

/* Picks up to k distinct random nodes for which skip() is false. */
size_t hc_ml_random_nodes(struct hc_ml *ml, size_t k, bool (*skip)(struct hc_ml *,
								   const struct node *, const void *),
			  const void *ctx, struct node **out)
{
	size_t found = 0;

	for (size_t tries = 0; tries < 3 * ml->nnodes && found < k; tries++) {
		struct node *n = ml->nodes[hc_ml_rnd(ml) % ml->nnodes];
		bool dup = false;

		if (skip(ml, n, ctx))
			continue;
		for (size_t i = 0; i < found; i++)
			dup |= out[i] == n;
		if (!dup)
			out[found++] = n;
	}
	return found;
}

bool hc_ml_skip_for_indirect(struct hc_ml *ml, const struct node *n, const void *target)
{
	return n == ml->self || n == target || n->pub.state != HC_GOSSIP_STATE_ALIVE;
}

static int64_t probe_indirect(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct probe *p = &ml->probe;
	struct node *target = hc_ml_find_node(ml, hc_gossip_bytes_str(p->target));
	struct node *peers[16];
	size_t k;

	(void)loop;
	(void)id;
	p->indirect_timer = 0;
	if (!target)
		return HC_LOOP_TIMER_DONE;
	k = hc_ml_random_nodes(ml, ml->cfg.indirect_checks < 16 ? ml->cfg.indirect_checks : 16,
			       hc_ml_skip_for_indirect, target, peers);
	for (size_t i = 0; i < k; i++) {
		struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_INDIRECT_PING };
		struct hc_gossip_indirect_ping *ind = &m.u.indirect_ping;

		ind->seq_no = p->seq;
		ind->target = hc_ml_addr_ip(&target->pub.addr);
		ind->port = target->pub.addr.port;
		ind->node = hc_gossip_bytes_str(target->name);
		ind->nack = peers[i]->pub.vsn[1] >= 4;
		ind->source_addr = hc_ml_addr_ip(&ml->self->pub.addr);
		ind->source_port = ml->self->pub.addr.port;
		ind->source_node = hc_gossip_bytes_str(ml->self->name);
		if (ind->nack)
			p->expected_nacks++;
		hc_ml_send_msg(ml, &peers[i]->pub.addr, &m);
		ml->st.indirect_probes++;
	}
	/* memberlist also tries TCP, which gets through some UDP-only faults. */
	if (target->pub.vsn[1] >= 3) {
		struct hc_gossip_mp_writer w;
		struct hc_gossip_msg m;

		fill_ping(ml, &m, p->seq, target->name);
		hc_gossip_mp_writer_init(&w, 0);
		if (hc_gossip_msg_encode(&m, &w) == 0)
			hc_ml_stream_send(ml, &target->pub.addr, w.buf, w.len, hc_ml_tcp_ping_done, ml);
		hc_gossip_mp_writer_fini(&w);
	}
	return HC_LOOP_TIMER_DONE;
}

static int64_t probe_deadline(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct probe *p = &ml->probe;
	struct node *n = hc_ml_find_node(ml, hc_gossip_bytes_str(p->target));

	(void)loop;
	(void)id;
	p->deadline_timer = 0;
	ml->st.probe_failures++;
	/* Lifeguard: missing nacks from healthy helpers mean *we* may be the
	 * slow one; with no helpers any failure counts against us. */
	if (p->expected_nacks)
		hc_ml_awareness_delta(ml, (int)(p->expected_nacks > p->nacks
						? p->expected_nacks - p->nacks : 0));
	else
		hc_ml_awareness_delta(ml, 1);
	if (n && ml->d.notify_probe_failed)
		ml->d.notify_probe_failed(ml->d.arg, &n->pub);
	/* As memberlist's probeNode: suspect it even if it is suspected
	 * already. Then our failed probe is an independent confirmation,
	 * which pulls the suspicion deadline in from its maximum (6x) towards
	 * the minimum, and is gossiped on as one to the others. */
	if (n && (n->pub.state == HC_GOSSIP_STATE_ALIVE ||
		  n->pub.state == HC_GOSSIP_STATE_SUSPECT)) {
		struct hc_gossip_suspect s = {
			.incarnation = n->pub.incarnation,
			.node = hc_gossip_bytes_str(n->name),
			.from = hc_gossip_bytes_str(ml->self->name),
		};

		hc_log(HC_LOG_DEBUG, "no ack from %s: suspecting it", n->name);
		hc_ml_on_suspect(ml, &s);
	}
	hc_ml_probe_end(ml);
	return HC_LOOP_TIMER_DONE;
}

static struct node *next_probe_target(struct hc_ml *ml)
{
	for (size_t tries = 0; tries < ml->nnodes; tries++) {
		struct node *n;

		if (ml->probe_index >= ml->nnodes) {
			ml->probe_index = 0;
			/* Reshuffle each round (memberlist's resetNodes). */
			for (size_t i = ml->nnodes; i > 1; i--) {
				size_t j = hc_ml_rnd(ml) % i;
				struct node *t = ml->nodes[i - 1];

				ml->nodes[i - 1] = ml->nodes[j];
				ml->nodes[j] = t;
			}
		}
		n = ml->nodes[ml->probe_index++];
		if (n != ml->self && (n->pub.state == HC_GOSSIP_STATE_ALIVE ||
				      n->pub.state == HC_GOSSIP_STATE_SUSPECT))
			return n;
	}
	return NULL;
}

static void probe_start(struct hc_ml *ml, struct node *n)
{
	struct probe *p = &ml->probe;
	struct hc_gossip_msg m;
	uint32_t interval = hc_ml_scaled(ml, ml->cfg.probe_interval_ms);

	p->target = strdup(n->name);
	if (!p->target)
		return;
	p->active = true;
	p->seq = ++ml->seq;
	p->sent_ns = hc_loop_now_ns(ml->loop);
	ml->st.probes++;
	fill_ping(ml, &m, p->seq, n->name);
	if (n->pub.state == HC_GOSSIP_STATE_ALIVE) {
		hc_ml_send_msg(ml, &n->pub.addr, &m);
	} else {
		/* Tell a suspect it is suspected, so it can refute at once. */
		struct hc_gossip_msg s = { .type = HC_GOSSIP_MSG_SUSPECT };
		struct hc_gossip_mp_writer w1, w2, out;
		struct hc_gossip_bytes parts[2];

		s.u.suspect.incarnation = n->pub.incarnation;
		s.u.suspect.node = hc_gossip_bytes_str(n->name);
		s.u.suspect.from = hc_gossip_bytes_str(ml->self->name);
		hc_gossip_mp_writer_init(&w1, 0);
		hc_gossip_mp_writer_init(&w2, 0);
		hc_gossip_mp_writer_init(&out, 0);
		if (hc_gossip_msg_encode(&m, &w1) == 0 && hc_gossip_msg_encode(&s, &w2) == 0) {
			parts[0] = (struct hc_gossip_bytes){ w1.buf, w1.len };
			parts[1] = (struct hc_gossip_bytes){ w2.buf, w2.len };
			if (hc_gossip_compound_encode(parts, 2, &out) == 0)
				hc_ml_send_packet(ml, &n->pub.addr, out.buf, out.len);
		}
		hc_gossip_mp_writer_fini(&w1);
		hc_gossip_mp_writer_fini(&w2);
		hc_gossip_mp_writer_fini(&out);
	}
	p->indirect_timer = hc_loop_add_timer(ml->loop, hc_ml_scaled(ml, ml->cfg.probe_timeout_ms),
					      probe_indirect, ml);
	p->deadline_timer = hc_loop_add_timer(ml->loop, interval, probe_deadline, ml);
}

int64_t hc_ml_probe_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *n;

	(void)loop;
	(void)id;
	if (ml->leaving)
		return HC_LOOP_TIMER_DONE;
	if (!ml->probe.active && (n = next_probe_target(ml)))
		probe_start(ml, n);
	return hc_ml_scaled(ml, ml->cfg.probe_interval_ms);
}

/* ---- gossip ---- */

static bool skip_for_gossip(struct hc_ml *ml, const struct node *n, const void *ctx)
{
	(void)ctx;
	if (n == ml->self)
		return true;
	switch (n->pub.state) {
	case HC_GOSSIP_STATE_ALIVE:
	case HC_GOSSIP_STATE_SUSPECT:
		return false;
	case HC_GOSSIP_STATE_DEAD:
		return hc_ml_now_ms(ml) - n->pub.state_change_ms > ml->cfg.gossip_to_dead_ms;
	default:
		return true;
	}
}

static uint32_t gossip_interval(const struct hc_ml *ml)
{
	return (ml->hurry || ml->busy) && ml->cfg.gossip_interval_ms > HURRY_MS
		       ? HURRY_MS
		       : ml->cfg.gossip_interval_ms;
}

/* One gossip packet of queued broadcasts, sent to each of targets[0..k).
 * Returns the bytes of broadcasts it carried (0: none were queued). */
static size_t gossip_to(struct hc_ml *ml, struct node **targets, size_t k, size_t avail)
{
	struct hc_gossip_bytes parts[MAX_PARTS];
	struct hc_gossip_mp_writer out;
	size_t n = 0, used = 0;

	hc_ml_take_broadcasts(ml, avail, parts, &n);
	for (size_t i = 0; i < n; i++)
		used += parts[i].len;
	if (n == 1) {
		for (size_t t = 0; t < k; t++)
			hc_ml_send_packet(ml, &targets[t]->pub.addr, parts[0].ptr, parts[0].len);
	} else if (n > 1) {
		hc_gossip_mp_writer_init(&out, 0);
		if (hc_gossip_compound_encode(parts, n, &out) == 0)
			for (size_t t = 0; t < k; t++)
				hc_ml_send_packet(ml, &targets[t]->pub.addr, out.buf, out.len);
		hc_gossip_mp_writer_fini(&out);
	}
	return used;
}

int64_t hc_ml_gossip_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *targets[16];
	size_t k = hc_ml_random_nodes(ml, ml->cfg.gossip_nodes < 16 ? ml->cfg.gossip_nodes : 16,
				      skip_for_gossip, NULL, targets);
	size_t avail = ml->cfg.udp_buffer - COMPOUND_HEADER - CRC_OVERHEAD -
		       (ml->cfg.keyring ? HC_GOSSIP_ENC_OVERHEAD : 0);
	bool sent = false, full = true;

	(void)loop;
	(void)id;
	if (!ml->busy) {
		/* as memberlist: a packet per target, each taken on its own */
		for (size_t i = 0; i < k; i++)
			sent |= gossip_to(ml, &targets[i], 1, avail) > 0;
	}
	/* While broadcasts wait (a big state in chunks): each packet goes to
	 * every target, so each transmission reaches all of them (taken per
	 * target, a message's few transmissions can all miss one node, which
	 * then waits for push/pull), and more packets follow while they leave
	 * full. A packet with room to spare means the queue had nothing more
	 * to give this round. */
	for (unsigned pass = 0; ml->busy && k && pass < BUSY_BURST && full; pass++) {
		size_t used = gossip_to(ml, targets, k, avail);

		sent |= used > 0;
		full = used > 0 && avail - used < BURST_MIN_LEFTOVER;
	}
	ml->st.broadcast_queue = hc_gossip_bcast_queue_len(ml->queue);
	if (!sent)
		ml->busy = false;
	return gossip_interval(ml);
}
