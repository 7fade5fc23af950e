/*
 * memberlist: SWIM failure detection with Lifeguard (awareness, suspicion
 * confirmations, nacks), gossip of broadcasts, and push/pull anti-entropy,
 * following hashicorp/memberlist 0.2.2 so a Debian `serf agent` sees us as
 * one of its own. See memberlist_int.h. This file holds nodes, sending,
 * state changes, receiving packets and the lifecycle; probing and gossip
 * rounds are in memberlist_probe.c, streams (push/pull, joins, TCP ping) in
 * memberlist_stream.c, the state they share in memberlist_engine_int.h.
 */
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

#define MAX_NODES 16384 /* a peer cannot make us track more than this */
#define COMPOUND_OVERHEAD 2

void hc_ml_config_lan(struct hc_ml_config *cfg)
{
	static const uint8_t vsn[6] = { 1, 5, 2, 2, 5, 5 };

	memset(cfg, 0, sizeof(*cfg));
	memcpy(cfg->vsn, vsn, sizeof(vsn));
	cfg->probe_interval_ms = 1000;
	cfg->probe_timeout_ms = 500;
	cfg->indirect_checks = 3;
	cfg->suspicion_mult = 4;
	cfg->suspicion_max_mult = 6;
	cfg->retransmit_mult = 4;
	cfg->gossip_interval_ms = 200;
	cfg->gossip_nodes = 3;
	cfg->gossip_to_dead_ms = 30000;
	cfg->push_pull_interval_ms = 30000;
	cfg->tcp_timeout_ms = 10000;
	cfg->awareness_max = 8;
	cfg->udp_buffer = 1400;
}

/* ---- small helpers ---- */

uint64_t hc_ml_rnd(struct hc_ml *ml)
{
	return hc_gossip_rand(&ml->rng);
}

uint64_t hc_ml_now_ms(const struct hc_ml *ml)
{
	return hc_loop_now_ms(ml->loop);
}

static bool addr_eq(const struct hc_gossip_addr *a, const struct hc_gossip_addr *b)
{
	return a->ip_len == b->ip_len && a->port == b->port && memcmp(a->ip, b->ip, a->ip_len) == 0;
}

bool hc_ml_bytes_is(struct hc_gossip_bytes b, const char *s)
{
	return b.len == strlen(s) && memcmp(b.ptr ? (const void *)b.ptr : "", s, b.len) == 0;
}

int hc_ml_addr_from_bytes(struct hc_gossip_bytes ip, uint16_t port, struct hc_gossip_addr *a)
{
	if (ip.len != 4 && ip.len != 16)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	memcpy(a->ip, ip.ptr, ip.len);
	a->ip_len = (uint8_t)ip.len;
	a->port = port;
	return 0;
}

struct hc_gossip_bytes hc_ml_addr_ip(const struct hc_gossip_addr *a)
{
	return (struct hc_gossip_bytes){ a->ip, a->ip_len };
}

const char *hc_ml_addr_str(const struct hc_gossip_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	inet_ntop(a->ip_len == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip));
	snprintf(buf, len, a->ip_len == 4 ? "%s:%u" : "[%s]:%u", ip, a->port);
	return buf;
}

/* Scales a timeout by the Lifeguard health score. */
uint32_t hc_ml_scaled(const struct hc_ml *ml, uint32_t ms)
{
	return ms * (ml->awareness + 1);
}

void hc_ml_awareness_delta(struct hc_ml *ml, int delta)
{
	int v = (int)ml->awareness + delta;

	if (v < 0)
		v = 0;
	if (v > (int)ml->cfg.awareness_max - 1)
		v = (int)ml->cfg.awareness_max - 1;
	ml->awareness = (unsigned)v;
}

/* ---- nodes ---- */

struct node *hc_ml_find_node(const struct hc_ml *ml, struct hc_gossip_bytes name)
{
	return hc_gossip_index_get(&ml->by_name, name.ptr, name.len);
}

static struct hc_gossip_bytes name_key(const void *item)
{
	const struct node *n = item;

	return (struct hc_gossip_bytes){ (const uint8_t *)n->name, n->name_len };
}

static struct hc_gossip_bytes addr_key(const void *item)
{
	const struct node *n = item;

	return (struct hc_gossip_bytes){ n->addr_key, n->addr_key_len };
}

/* The bytes by_addr files an address under: the IP, then the port. */
static size_t addr_key_of(const struct hc_gossip_addr *a, uint8_t key[18])
{
	size_t len = a->ip_len <= 16 ? a->ip_len : 16;

	memcpy(key, a->ip, len);
	key[len] = (uint8_t)(a->port >> 8);
	key[len + 1] = (uint8_t)a->port;
	return len + 2;
}

static struct node *find_by_addr(const struct hc_ml *ml, const struct hc_gossip_addr *a)
{
	uint8_t key[18];

	return hc_gossip_index_get(&ml->by_addr, key, addr_key_of(a, key));
}

/* Moves n to a new address, in its index too. */
static int node_set_addr(struct hc_ml *ml, struct node *n, const struct hc_gossip_addr *a)
{
	hc_gossip_index_remove(&ml->by_addr, n);
	n->pub.addr = *a;
	n->addr_key_len = (uint8_t)addr_key_of(a, n->addr_key);
	return hc_gossip_index_add(&ml->by_addr, n);
}

static void suspicion_free(struct hc_ml *ml, struct node *n)
{
	struct suspicion *s = n->susp;

	if (!s)
		return;
	if (s->timer)
		hc_loop_del_timer(ml->loop, s->timer);
	for (unsigned i = 0; i < s->nseen; i++)
		free(s->seen[i]);
	free(s->seen);
	free(s);
	n->susp = NULL;
}

static void node_free(struct hc_ml *ml, struct node *n)
{
	suspicion_free(ml, n);
	free(n->name);
	free(n->meta);
	free(n);
}

static int node_set_meta(struct node *n, struct hc_gossip_bytes meta)
{
	uint8_t *copy = malloc(meta.len ? meta.len : 1);

	if (!copy)
		return -ENOMEM;
	if (meta.len)
		memcpy(copy, meta.ptr, meta.len);
	free(n->meta);
	n->meta = copy;
	n->pub.meta = copy;
	n->pub.meta_len = meta.len;
	return 0;
}

static struct node *node_add(struct hc_ml *ml, struct hc_gossip_bytes name,
			     const struct hc_gossip_addr *addr)
{
	struct node *n;

	if (ml->nnodes >= MAX_NODES || name.len == 0 || memchr(name.ptr, 0, name.len))
		return NULL;
	if (ml->nnodes == ml->capnodes) {
		size_t cap = ml->capnodes ? ml->capnodes * 2 : 16;
		struct node **nodes = realloc(ml->nodes, cap * sizeof(*nodes));

		if (!nodes)
			return NULL;
		ml->nodes = nodes;
		ml->capnodes = cap;
	}
	n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strndup((const char *)name.ptr, name.len))) {
		free(n);
		return NULL;
	}
	n->ml = ml;
	n->name_len = strlen(n->name); /* a name with a NUL was refused above */
	n->pub.name = n->name;
	n->pub.state = HC_GOSSIP_STATE_DEAD; /* aliveNode makes it alive */
	n->pub.rtt_us = -1;
	if (hc_gossip_index_add(&ml->by_name, n) < 0) {
		node_free(ml, n);
		return NULL;
	}
	if (node_set_addr(ml, n, addr) < 0) {
		hc_gossip_index_remove(&ml->by_name, n);
		node_free(ml, n);
		return NULL;
	}
	/* Insert at a random position so probe order is not join order. */
	{
		size_t at = ml->nnodes ? hc_ml_rnd(ml) % (ml->nnodes + 1) : 0;

		ml->nodes[ml->nnodes++] = ml->nodes[at];
		ml->nodes[at] = n;
	}
	return n;
}

/* ---- sending ---- */

/* Adds broadcasts (ours first, then the delegate's) that fit in avail.
 * The delegate's go out as user messages: memberlist prefixes each with the
 * user type byte, so the delegate pays one more byte of overhead. Parts
 * borrow from the queues and ml->scratch until the next call. */
void hc_ml_take_broadcasts(struct hc_ml *ml, size_t avail, struct hc_gossip_bytes *parts,
			   size_t *n)
{
	size_t used = 0, before = *n, first_user;
	unsigned limit = hc_gossip_retransmit_limit(ml->cfg.retransmit_mult, hc_ml_alive_count(ml));

	hc_gossip_bcast_queue_take(ml->queue, COMPOUND_OVERHEAD, avail, limit, parts, MAX_PARTS,
				   n);
	for (size_t i = before; i < *n; i++)
		used += parts[i].len + COMPOUND_OVERHEAD;
	if (!ml->d.get_broadcasts || used >= avail)
		return;
	first_user = *n;
	ml->d.get_broadcasts(ml->d.arg, COMPOUND_OVERHEAD + 1, avail - used, parts, MAX_PARTS,
			     n);
	ml->scratch.len = 0;
	for (size_t i = first_user; i < *n; i++) {
		hc_gossip_mp_write_u8(&ml->scratch, HC_GOSSIP_MSG_USER);
		hc_gossip_mp_write_raw(&ml->scratch, parts[i].ptr, parts[i].len);
	}
	if (hc_gossip_mp_writer_error(&ml->scratch)) {
		*n = first_user; /* out of memory: send ours only */
		ml->scratch.err = 0;
		return;
	}
	/* Point the parts at the prefixed copies only now: appending may have
	 * moved the scratch buffer. */
	for (size_t i = first_user, offset = 0; i < *n; i++) {
		size_t len = parts[i].len + 1;

		parts[i] = (struct hc_gossip_bytes){ ml->scratch.buf + offset, len };
		offset += len;
	}
}

/* Wraps a packet as memberlist does (hasCrc for peers that know it, then
 * encryption) and sends it. */
int hc_ml_send_packet(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *buf,
		      size_t len)
{
	struct hc_gossip_mp_writer crc, enc;
	struct node *peer = find_by_addr(ml, to);
	int r;

	hc_gossip_mp_writer_init(&crc, 0);
	hc_gossip_mp_writer_init(&enc, 0);
	if (peer && peer->pub.vsn[1] >= 5) {
		r = hc_gossip_crc_wrap(buf, len, &crc);
		if (r < 0)
			goto out;
		buf = crc.buf;
		len = crc.len;
	}
	if (ml->cfg.keyring && hc_gossip_keyring_count(ml->cfg.keyring)) {
		r = hc_gossip_encrypt_packet(ml->cfg.keyring, buf, len, &enc);
		if (r < 0)
			goto out;
		buf = enc.buf;
		len = enc.len;
	}
	r = ml->ops->send_packet(ml->ops_ctx, to, buf, len);
out:
	hc_gossip_mp_writer_fini(&crc);
	hc_gossip_mp_writer_fini(&enc);
	return r;
}

/* Encodes m, piggybacks what broadcasts fit, sends. */
int hc_ml_send_msg(struct hc_ml *ml, const struct hc_gossip_addr *to,
		   const struct hc_gossip_msg *m)
{
	struct hc_gossip_bytes parts[MAX_PARTS];
	struct hc_gossip_mp_writer w, out;
	size_t n = 1, overhead;
	int r;

	hc_gossip_mp_writer_init(&w, 0);
	hc_gossip_mp_writer_init(&out, 0);
	r = hc_gossip_msg_encode(m, &w);
	if (r < 0)
		goto done;
	parts[0] = (struct hc_gossip_bytes){ w.buf, w.len };
	overhead = COMPOUND_HEADER + COMPOUND_OVERHEAD + CRC_OVERHEAD +
		   (ml->cfg.keyring ? HC_GOSSIP_ENC_OVERHEAD : 0);
	if (w.len + overhead < ml->cfg.udp_buffer)
		hc_ml_take_broadcasts(ml, ml->cfg.udp_buffer - w.len - overhead, parts, &n);
	if (n > 1) {
		r = hc_gossip_compound_encode(parts, n, &out);
		if (r == 0)
			r = hc_ml_send_packet(ml, to, out.buf, out.len);
	} else {
		r = hc_ml_send_packet(ml, to, w.buf, w.len);
	}
	if (r == 0)
		ml->st.msgs_out[m->type]++;
done:
	hc_gossip_mp_writer_fini(&w);
	hc_gossip_mp_writer_fini(&out);
	return r;
}

/* Queues a memberlist broadcast about a node (replacing older ones). */
static void broadcast(struct hc_ml *ml, const char *node, const struct hc_gossip_msg *m,
		      hc_gossip_bcast_done_fn *done, void *arg)
{
	struct hc_gossip_mp_writer w;

	hc_gossip_mp_writer_init(&w, 0);
	if (hc_gossip_msg_encode(m, &w) == 0 &&
	    hc_gossip_bcast_queue_push(ml->queue, node, w.buf, w.len, done, arg) == 0) {
		hc_gossip_mp_writer_fini(&w);
		return;
	}
	hc_gossip_mp_writer_fini(&w);
	hc_log(HC_LOG_WARN, "cannot queue a broadcast about %s", node);
	if (done)
		done(arg, false);
}

static void alive_msg_of(const struct node *n, struct hc_gossip_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = HC_GOSSIP_MSG_ALIVE;
	m->u.alive.addr = hc_ml_addr_ip(&n->pub.addr);
	m->u.alive.port = n->pub.addr.port;
	m->u.alive.incarnation = n->pub.incarnation;
	m->u.alive.meta = (struct hc_gossip_bytes){ n->pub.meta ? n->pub.meta : (const uint8_t *)"",
						   n->pub.meta_len };
	m->u.alive.node = hc_gossip_bytes_str(n->name);
	m->u.alive.vsn = (struct hc_gossip_bytes){ n->pub.vsn, 6 };
}

/* ---- state changes (memberlist's aliveNode/suspectNode/deadNode) ---- */

static void refute(struct hc_ml *ml, uint32_t accused)
{
	struct hc_gossip_msg m;
	struct node *me = ml->self;

	me->pub.incarnation = (accused >= me->pub.incarnation ? accused : me->pub.incarnation) + 1;
	hc_ml_awareness_delta(ml, 1);
	ml->st.refutations++;
	alive_msg_of(me, &m);
	broadcast(ml, me->name, &m, NULL, NULL);
}

static bool counts_alive(enum hc_gossip_node_state state)
{
	return state == HC_GOSSIP_STATE_ALIVE || state == HC_GOSSIP_STATE_SUSPECT;
}

static void set_state(struct hc_ml *ml, struct node *n, enum hc_gossip_node_state state)
{
	if (n->pub.state != state)
		n->pub.state_change_ms = hc_ml_now_ms(ml);
	ml->nalive += counts_alive(state);
	ml->nalive -= counts_alive(n->pub.state);
	n->pub.state = state;
}

void hc_ml_on_alive(struct hc_ml *ml, const struct hc_gossip_alive *a, bool bootstrap)
{
	struct hc_gossip_addr addr;
	enum hc_gossip_node_state old_state;
	bool is_self, meta_changed;
	struct node *n;
	char claimed[64], known[64];

	if (hc_ml_addr_from_bytes(a->addr, a->port, &addr) < 0 || a->node.len == 0)
		return;
	n = hc_ml_find_node(ml, a->node);
	if (!n) {
		n = node_add(ml, a->node, &addr);
		if (!n)
			return;
	} else if (!addr_eq(&n->pub.addr, &addr)) {
		/* A left node may come back elsewhere; a live or dead one may
		 * not (DeadNodeReclaimTime 0). */
		if (n->pub.state != HC_GOSSIP_STATE_LEFT) {
			hc_log(HC_LOG_WARN, "conflicting address for %s: %s claims it, known at %s",
			       n->name, hc_ml_addr_str(&addr, claimed, sizeof(claimed)),
			       hc_ml_addr_str(&n->pub.addr, known, sizeof(known)));
			return;
		}
		if (node_set_addr(ml, n, &addr) < 0)
			hc_log(HC_LOG_WARN, "out of memory indexing %s by address", n->name);
	} else if (a->incarnation <= n->pub.incarnation && n != ml->self) {
		return;
	}
	is_self = n == ml->self;
	if (is_self && a->incarnation < n->pub.incarnation)
		return;
	suspicion_free(ml, n);
	old_state = n->pub.state;
	meta_changed = n->pub.meta_len != a->meta.len ||
		       (a->meta.len && memcmp(n->pub.meta, a->meta.ptr, a->meta.len));
	if (is_self && !bootstrap) {
		if (a->incarnation == n->pub.incarnation && !meta_changed && a->vsn.len == 6 &&
		    memcmp(a->vsn.ptr, n->pub.vsn, 6) == 0)
			return;
		refute(ml, a->incarnation);
		return;
	}
	{
		struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_ALIVE, .u.alive = *a };

		broadcast(ml, n->name, &m, NULL, NULL);
	}
	if (a->vsn.len == 6)
		memcpy(n->pub.vsn, a->vsn.ptr, 6);
	n->pub.incarnation = a->incarnation;
	if (meta_changed && node_set_meta(n, a->meta) < 0)
		return;
	set_state(ml, n, HC_GOSSIP_STATE_ALIVE);
	if (old_state == HC_GOSSIP_STATE_DEAD || old_state == HC_GOSSIP_STATE_LEFT) {
		if (ml->d.notify_join)
			ml->d.notify_join(ml->d.arg, &n->pub);
	} else if (meta_changed && ml->d.notify_update) {
		ml->d.notify_update(ml->d.arg, &n->pub);
	}
}

static int64_t suspicion_expired(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct node *n = arg;
	struct hc_ml *ml = n->ml;
	struct hc_gossip_suspect d = {
		.incarnation = n->pub.incarnation,
		.node = hc_gossip_bytes_str(n->name),
		.from = hc_gossip_bytes_str(ml->self->name),
	};

	(void)loop;
	(void)id;
	n->susp->timer = 0;
	if (n->pub.state == HC_GOSSIP_STATE_SUSPECT) {
		hc_log(HC_LOG_INFO, "marking %s as failed: suspect timeout reached (%u confirmations)",
		       n->name, n->susp->n);
		hc_ml_on_dead(ml, &d);
	}
	return HC_LOOP_TIMER_DONE;
}

/* Lifeguard: each independent confirmation brings the deadline from max
 * towards min, logarithmically. Returns ms left from now. */
static uint32_t suspicion_remaining(const struct suspicion *s, uint64_t now)
{
	double frac = s->k ? log((double)s->n + 1.0) / log((double)s->k + 1.0) : 1.0;
	double raw = (double)s->max_ms - frac * (double)(s->max_ms - s->min_ms);
	uint64_t timeout = (uint64_t)floor(raw), elapsed = now - s->start_ms;

	if (timeout < s->min_ms)
		timeout = s->min_ms;
	return timeout > elapsed ? (uint32_t)(timeout - elapsed) : 0;
}

/* Returns true if from is a new confirmation (then re-gossip the suspect). */
static bool suspicion_confirm(struct hc_ml *ml, struct node *n, struct hc_gossip_bytes from)
{
	struct suspicion *s = n->susp;
	char *who;

	if (s->n >= s->k)
		return false;
	for (unsigned i = 0; i < s->nseen; i++)
		if (hc_ml_bytes_is(from, s->seen[i]))
			return false;
	who = strndup(from.ptr ? (const char *)from.ptr : "", from.len);
	if (!who)
		return false;
	s->seen[s->nseen++] = who;
	s->n++;
	hc_loop_del_timer(ml->loop, s->timer);
	s->timer = hc_loop_add_timer(ml->loop, suspicion_remaining(s, hc_ml_now_ms(ml)),
				     suspicion_expired, n);
	return true;
}

static uint32_t suspicion_timeout_ms(const struct hc_ml *ml, size_t n)
{
	double scale = fmax(1.0, log10(fmax(1.0, (double)n)));

	return (uint32_t)(ml->cfg.suspicion_mult * (uint64_t)(scale * 1000) *
			  ml->cfg.probe_interval_ms / 1000);
}

static int suspicion_start(struct hc_ml *ml, struct node *n, struct hc_gossip_bytes from)
{
	struct suspicion *s = calloc(1, sizeof(*s));
	size_t nodes = hc_ml_alive_count(ml);
	unsigned k = ml->cfg.suspicion_mult > 2 ? ml->cfg.suspicion_mult - 2 : 0;

	if (!s)
		return -ENOMEM;
	/* Subtract ourselves and the suspect: who else could confirm. */
	if (nodes < 2 || nodes - 2 < k)
		k = 0;
	s->k = k;
	s->seen = calloc(k + 1, sizeof(*s->seen));
	if (!s->seen) {
		free(s);
		return -ENOMEM;
	}
	/* The accuser is remembered but is not a confirmation of itself. */
	s->seen[0] = strndup(from.ptr ? (const char *)from.ptr : "", from.len);
	s->nseen = s->seen[0] != NULL;
	s->start_ms = hc_ml_now_ms(ml);
	s->min_ms = suspicion_timeout_ms(ml, nodes);
	s->max_ms = ml->cfg.suspicion_max_mult * s->min_ms;
	n->susp = s;
	/* With confirmations to expect, start at max and let each pull the
	 * deadline in; with none, min is all the evidence there will be. */
	s->timer = hc_loop_add_timer(ml->loop, k < 1 ? s->min_ms : s->max_ms, suspicion_expired, n);
	return 0;
}

void hc_ml_on_suspect(struct hc_ml *ml, const struct hc_gossip_suspect *s)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_SUSPECT, .u.suspect = *s };
	struct node *n = hc_ml_find_node(ml, s->node);

	if (!n || s->incarnation < n->pub.incarnation)
		return;
	if (n->susp) {
		if (suspicion_confirm(ml, n, s->from))
			broadcast(ml, n->name, &m, NULL, NULL);
		return;
	}
	if (n->pub.state != HC_GOSSIP_STATE_ALIVE)
		return;
	if (n == ml->self) {
		hc_log(HC_LOG_INFO, "refuting a suspicion about us (incarnation %u)",
		       s->incarnation);
		refute(ml, s->incarnation);
		return;
	}
	broadcast(ml, n->name, &m, NULL, NULL);
	n->pub.incarnation = s->incarnation;
	set_state(ml, n, HC_GOSSIP_STATE_SUSPECT);
	if (suspicion_start(ml, n, s->from) < 0)
		hc_log(HC_LOG_ERROR, "out of memory starting a suspicion of %s", n->name);
}

static void leave_broadcast_done(void *arg, bool sent);

void hc_ml_on_dead(struct hc_ml *ml, const struct hc_gossip_suspect *d)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_DEAD, .u.suspect = *d };
	struct node *n = hc_ml_find_node(ml, d->node);

	if (!n || d->incarnation < n->pub.incarnation)
		return;
	suspicion_free(ml, n);
	if (n->pub.state == HC_GOSSIP_STATE_DEAD || n->pub.state == HC_GOSSIP_STATE_LEFT)
		return;
	if (n == ml->self) {
		if (!ml->leaving) {
			hc_log(HC_LOG_INFO, "refuting a death notice about us");
			refute(ml, d->incarnation);
			return;
		}
		broadcast(ml, n->name, &m, leave_broadcast_done, ml);
	} else {
		broadcast(ml, n->name, &m, NULL, NULL);
	}
	n->pub.incarnation = d->incarnation;
	set_state(ml, n, hc_ml_bytes_is(d->from, n->name) ? HC_GOSSIP_STATE_LEFT : HC_GOSSIP_STATE_DEAD);
	if (n != ml->self && ml->d.notify_leave)
		ml->d.notify_leave(ml->d.arg, &n->pub);
}

/* ---- receiving packets ---- */

struct walk_ctx {
	struct hc_ml *ml;
	const struct hc_gossip_addr *from;
};

static void on_msg(const struct hc_gossip_msg *m, void *arg)
{
	struct walk_ctx *c = arg;
	struct hc_ml *ml = c->ml;

	ml->st.msgs_in[m->type]++;
	switch (m->type) {
	case HC_GOSSIP_MSG_PING:
		hc_ml_on_ping(ml, &m->u.ping, c->from);
		break;
	case HC_GOSSIP_MSG_INDIRECT_PING:
		hc_ml_on_indirect_ping(ml, &m->u.indirect_ping, c->from);
		break;
	case HC_GOSSIP_MSG_ACK:
		hc_ml_on_ack(ml, &m->u.ack);
		break;
	case HC_GOSSIP_MSG_NACK:
		hc_ml_on_nack(ml, &m->u.nack);
		break;
	case HC_GOSSIP_MSG_SUSPECT:
		hc_ml_on_suspect(ml, &m->u.suspect);
		break;
	case HC_GOSSIP_MSG_ALIVE:
		hc_ml_on_alive(ml, &m->u.alive, false);
		break;
	case HC_GOSSIP_MSG_DEAD:
		hc_ml_on_dead(ml, &m->u.suspect);
		break;
	case HC_GOSSIP_MSG_USER:
		if (ml->d.notify_msg)
			ml->d.notify_msg(ml->d.arg, m->u.user.ptr, m->u.user.len);
		break;
	default:
		break;
	}
}

void hc_ml_on_packet(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf,
		     size_t len)
{
	struct hc_ml *ml = arg;
	struct walk_ctx c = { ml, from };
	int r = hc_gossip_datagram_walk(ml->cfg.keyring, buf, len, on_msg, &c);

	if (r < 0) {
		enum hc_gossip_drop why = hc_gossip_drop_reason(r);
		char where[64];

		ml->st.dropped[why]++;
		hc_log(HC_LOG_DEBUG, "dropped a packet of %zu bytes from %s: %s", len,
		       hc_ml_addr_str(from, where, sizeof(where)), hc_gossip_drop_name(why));
	}
}

/* ---- lifecycle ---- */

struct hc_ml *hc_ml_new(struct hc_loop *loop, const struct hc_ml_config *cfg,
			const struct hc_gossip_transport_ops *ops, void *ops_ctx,
			const struct hc_ml_delegate *delegate)
{
	struct hc_ml *ml = calloc(1, sizeof(*ml));
	struct hc_gossip_alive self;

	if (!ml)
		return NULL;
	ml->loop = loop;
	ml->cfg = *cfg;
	ml->ops = ops;
	ml->ops_ctx = ops_ctx;
	if (delegate)
		ml->d = *delegate;
	hc_gossip_rand_init(&ml->rng, cfg->seed);
	hc_gossip_index_init(&ml->by_name, name_key);
	hc_gossip_index_init(&ml->by_addr, addr_key);
	hc_gossip_mp_writer_init(&ml->scratch, 0);
	ml->queue = hc_gossip_bcast_queue_new();
	if (!ml->queue)
		goto fail;

	/* Become alive: memberlist's setAlive, applied with bootstrap so we
	 * do not refute ourselves. */
	memset(&self, 0, sizeof(self));
	self.addr = hc_ml_addr_ip(&cfg->addr);
	self.port = cfg->addr.port;
	self.incarnation = 1;
	self.meta = (struct hc_gossip_bytes){ cfg->meta ? cfg->meta : (const uint8_t *)"",
					      cfg->meta_len };
	self.node = hc_gossip_bytes_str(cfg->name);
	self.vsn = (struct hc_gossip_bytes){ cfg->vsn, 6 };
	hc_ml_on_alive(ml, &self, true);
	ml->self = hc_ml_find_node(ml, self.node);
	if (!ml->self)
		goto fail;

	ml->probe_timer = hc_loop_add_timer(loop, cfg->probe_interval_ms, hc_ml_probe_tick, ml);
	ml->gossip_timer = hc_loop_add_timer(loop, cfg->gossip_interval_ms, hc_ml_gossip_tick, ml);
	/* The first push/pull a random part of the interval later, as
	 * memberlist's pushPullTrigger staggers it: nodes started together
	 * would push/pull together, every member's state landing on each at
	 * once, round after round. */
	if (cfg->push_pull_interval_ms)
		ml->push_pull_timer = hc_loop_add_timer(
			loop, cfg->push_pull_interval_ms + hc_ml_rnd(ml) % cfg->push_pull_interval_ms,
			hc_ml_push_pull_tick, ml);
	if (!ml->probe_timer || !ml->gossip_timer)
		goto fail;
	return ml;
fail:
	hc_ml_free(ml);
	return NULL;
}

void hc_ml_free(struct hc_ml *ml)
{
	if (!ml)
		return;
	/* Exchanges still in flight complete later; make them harmless. */
	for (struct exchange *x = ml->exchanges; x; x = x->next)
		x->ml = NULL;
	while (ml->relays)
		hc_ml_relay_free(ml, &ml->relays);
	hc_ml_probe_end(ml);
	if (ml->probe_timer)
		hc_loop_del_timer(ml->loop, ml->probe_timer);
	if (ml->gossip_timer)
		hc_loop_del_timer(ml->loop, ml->gossip_timer);
	if (ml->push_pull_timer)
		hc_loop_del_timer(ml->loop, ml->push_pull_timer);
	if (ml->catchup_timer)
		hc_loop_del_timer(ml->loop, ml->catchup_timer);
	if (ml->leave_timer)
		hc_loop_del_timer(ml->loop, ml->leave_timer);
	ml->leave_done = NULL;
	hc_gossip_bcast_queue_free(ml->queue);
	hc_gossip_mp_writer_fini(&ml->scratch);
	for (size_t i = 0; i < ml->nnodes; i++)
		node_free(ml, ml->nodes[i]);
	free(ml->nodes);
	hc_gossip_index_fini(&ml->by_name);
	hc_gossip_index_fini(&ml->by_addr);
	free(ml);
}

static void finish_leave(struct hc_ml *ml)
{
	void (*done)(void *) = ml->leave_done;

	ml->leave_done = NULL;
	if (ml->leave_timer) {
		hc_loop_del_timer(ml->loop, ml->leave_timer);
		ml->leave_timer = 0;
	}
	if (done)
		done(ml->leave_arg);
}

static void leave_broadcast_done(void *arg, bool sent)
{
	(void)sent;
	finish_leave(arg);
}

static int64_t leave_timeout(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;

	(void)loop;
	(void)id;
	ml->leave_timer = 0;
	hc_log(HC_LOG_WARN, "leave: timed out waiting for the broadcast to go out");
	finish_leave(ml);
	return HC_LOOP_TIMER_DONE;
}

int hc_ml_leave(struct hc_ml *ml, uint32_t timeout_ms, void (*done)(void *arg), void *arg)
{
	struct hc_gossip_suspect d = {
		.incarnation = ml->self->pub.incarnation,
		.node = hc_gossip_bytes_str(ml->self->name),
		.from = hc_gossip_bytes_str(ml->self->name),
	};

	if (ml->leaving)
		return -EALREADY;
	ml->leaving = true;
	ml->leave_done = done;
	ml->leave_arg = arg;
	if (hc_ml_alive_count(ml) <= 1) {
		set_state(ml, ml->self, HC_GOSSIP_STATE_LEFT);
		finish_leave(ml);
		return 0;
	}
	ml->leave_timer = hc_loop_add_timer(ml->loop, timeout_ms, leave_timeout, ml);
	hc_ml_on_dead(ml, &d);
	return 0;
}

void hc_ml_hurry(struct hc_ml *ml)
{
	if (ml->hurry)
		return;
	ml->hurry = true;
	/* Do not wait out the current slow round. */
	hc_loop_del_timer(ml->loop, ml->gossip_timer);
	ml->gossip_timer = hc_loop_add_timer(ml->loop, 0, hc_ml_gossip_tick, ml);
}

void hc_ml_busy(struct hc_ml *ml)
{
	if (!ml || ml->busy || ml->hurry || ml->cfg.gossip_interval_ms <= HURRY_MS ||
	    !ml->gossip_timer)
		return;
	ml->busy = true;
	hc_loop_del_timer(ml->loop, ml->gossip_timer);
	ml->gossip_timer = hc_loop_add_timer(ml->loop, 0, hc_ml_gossip_tick, ml);
}

int hc_ml_update_meta(struct hc_ml *ml, const uint8_t *meta, size_t len)
{
	struct hc_gossip_msg m;
	int r = node_set_meta(ml->self, (struct hc_gossip_bytes){ meta, len });

	if (r < 0)
		return r;
	ml->self->pub.incarnation++;
	alive_msg_of(ml->self, &m);
	broadcast(ml, ml->self->name, &m, NULL, NULL);
	return 0;
}

int hc_ml_send_user(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *msg,
		    size_t len)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_USER };

	m.u.user = (struct hc_gossip_bytes){ msg, len };
	return hc_ml_send_msg(ml, to, &m);
}

const struct hc_ml_node *hc_ml_member(const struct hc_ml *ml, size_t i)
{
	return i < ml->nnodes ? &ml->nodes[i]->pub : NULL;
}

size_t hc_ml_member_count(const struct hc_ml *ml)
{
	return ml->nnodes;
}

const struct hc_ml_node *hc_ml_find(const struct hc_ml *ml, const char *name)
{
	struct node *n = hc_ml_find_node(ml, hc_gossip_bytes_str(name));

	return n ? &n->pub : NULL;
}

size_t hc_ml_alive_count(const struct hc_ml *ml)
{
	return ml->nalive;
}

const struct hc_ml_node *hc_ml_self(const struct hc_ml *ml)
{
	return &ml->self->pub;
}

void hc_ml_stats(const struct hc_ml *ml, struct hc_ml_stats *st)
{
	*st = ml->st;
	st->broadcast_queue = hc_gossip_bcast_queue_len(ml->queue);
	st->awareness = ml->awareness;
}
