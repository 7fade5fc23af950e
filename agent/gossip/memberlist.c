/*
 * memberlist: SWIM failure detection with Lifeguard (awareness, suspicion
 * confirmations, nacks), gossip of broadcasts, and push/pull anti-entropy,
 * following hashicorp/memberlist 0.2.2 so a Debian `serf agent` sees us as
 * one of its own. See memberlist_int.h.
 */
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
#define MAX_PARTS 64    /* messages per gossip packet */
#define COMPOUND_OVERHEAD 2
#define COMPOUND_HEADER 2
#define CRC_OVERHEAD 5
#define HURRY_MS 200
#define BUSY_BURST 16 /* packets per round while broadcasts wait */
#define BURST_MIN_LEFTOVER 512 /* a packet with less room left was full */
/* A push/pull this long after a join (at least 5 gossip rounds) catches
 * what the join storm's gossip missed. */
#define CATCHUP_MIN_MS 1000

struct suspicion {
	uint64_t start_ms;
	uint32_t min_ms, max_ms;
	unsigned k, n; /* confirmations wanted, received */
	char **seen;   /* the accuser, then each confirmer: k + 1 slots */
	unsigned nseen;
	uint64_t timer;
};

struct node {
	struct hc_ml_node pub; /* pub.name and pub.meta point to the fields below */
	char *name;
	uint8_t *meta;
	struct suspicion *susp;
	struct hc_ml *ml; /* for the suspicion timer */
};

/* An indirect probe we run for another node: relay the target's ack. */
struct relay {
	struct relay *next;
	struct hc_ml *ml;
	uint32_t seq;      /* our ping to the target */
	uint32_t orig_seq; /* the requester's */
	struct hc_gossip_addr requester;
	bool nack;
	uint64_t timer;
};

/* The probe in progress (memberlist runs one at a time). */
struct probe {
	bool active;
	char *target;
	uint32_t seq;
	uint64_t sent_ns;
	unsigned expected_nacks, nacks;
	uint64_t indirect_timer, deadline_timer;
};

/* An outgoing stream exchange (push/pull or TCP ping): the transport's
 * arg, so completions can find the engine or learn that it is gone. */
struct exchange {
	struct exchange *next;
	struct hc_ml *ml;
	hc_gossip_stream_done_fn *done;
	void *arg;
};

struct hc_ml {
	struct hc_loop *loop;
	struct hc_ml_config cfg;
	const struct hc_gossip_transport_ops *ops;
	void *ops_ctx;
	struct hc_ml_delegate d;

	struct node **nodes;
	size_t nnodes, capnodes;
	struct node *self;
	size_t probe_index;

	uint32_t seq;
	unsigned awareness;
	struct probe probe;
	struct relay *relays;
	struct exchange *exchanges;

	struct hc_gossip_bcast_queue *queue;
	struct hc_gossip_mp_writer scratch; /* delegate broadcasts as user messages */
	uint64_t probe_timer, gossip_timer, push_pull_timer, catchup_timer;
	bool leaving;
	bool hurry; /* gossip at least every HURRY_MS */
	bool busy;  /* the same until a round finds nothing to send */
	void (*leave_done)(void *arg);
	void *leave_arg;
	uint64_t leave_timer;

	uint64_t rng;
	struct hc_ml_stats st;
};

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

static uint64_t rnd(struct hc_ml *ml)
{
	return hc_gossip_rand(&ml->rng);
}

static uint64_t now_ms(const struct hc_ml *ml)
{
	return hc_loop_now_ms(ml->loop);
}

static bool addr_eq(const struct hc_gossip_addr *a, const struct hc_gossip_addr *b)
{
	return a->ip_len == b->ip_len && a->port == b->port && memcmp(a->ip, b->ip, a->ip_len) == 0;
}

static bool bytes_is(struct hc_gossip_bytes b, const char *s)
{
	return b.len == strlen(s) && memcmp(b.ptr ? (const void *)b.ptr : "", s, b.len) == 0;
}

static int addr_from_bytes(struct hc_gossip_bytes ip, uint16_t port, struct hc_gossip_addr *a)
{
	if (ip.len != 4 && ip.len != 16)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	memcpy(a->ip, ip.ptr, ip.len);
	a->ip_len = (uint8_t)ip.len;
	a->port = port;
	return 0;
}

static struct hc_gossip_bytes addr_ip(const struct hc_gossip_addr *a)
{
	return (struct hc_gossip_bytes){ a->ip, a->ip_len };
}

static const char *addr_str(const struct hc_gossip_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	inet_ntop(a->ip_len == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip));
	snprintf(buf, len, a->ip_len == 4 ? "%s:%u" : "[%s]:%u", ip, a->port);
	return buf;
}

/* Scales a timeout by the Lifeguard health score. */
static uint32_t scaled(const struct hc_ml *ml, uint32_t ms)
{
	return ms * (ml->awareness + 1);
}

static void awareness_delta(struct hc_ml *ml, int delta)
{
	int v = (int)ml->awareness + delta;

	if (v < 0)
		v = 0;
	if (v > (int)ml->cfg.awareness_max - 1)
		v = (int)ml->cfg.awareness_max - 1;
	ml->awareness = (unsigned)v;
}

/* ---- nodes ---- */

static struct node *find(const struct hc_ml *ml, struct hc_gossip_bytes name)
{
	for (size_t i = 0; i < ml->nnodes; i++) {
		const struct node *n = ml->nodes[i];

		if (strlen(n->name) == name.len && memcmp(n->name, name.ptr, name.len) == 0)
			return ml->nodes[i];
	}
	return NULL;
}

static struct node *find_by_addr(const struct hc_ml *ml, const struct hc_gossip_addr *a)
{
	for (size_t i = 0; i < ml->nnodes; i++)
		if (addr_eq(&ml->nodes[i]->pub.addr, a))
			return ml->nodes[i];
	return NULL;
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
	n->pub.name = n->name;
	n->pub.addr = *addr;
	n->pub.state = HC_GOSSIP_STATE_DEAD; /* aliveNode makes it alive */
	n->pub.rtt_us = -1;
	/* Insert at a random position so probe order is not join order. */
	{
		size_t at = ml->nnodes ? rnd(ml) % (ml->nnodes + 1) : 0;

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
static void take_broadcasts(struct hc_ml *ml, size_t avail, struct hc_gossip_bytes *parts,
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
static int send_packet(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *buf,
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
static int send_msg(struct hc_ml *ml, const struct hc_gossip_addr *to,
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
		take_broadcasts(ml, ml->cfg.udp_buffer - w.len - overhead, parts, &n);
	if (n > 1) {
		r = hc_gossip_compound_encode(parts, n, &out);
		if (r == 0)
			r = send_packet(ml, to, out.buf, out.len);
	} else {
		r = send_packet(ml, to, w.buf, w.len);
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
	m->u.alive.addr = addr_ip(&n->pub.addr);
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
	awareness_delta(ml, 1);
	ml->st.refutations++;
	alive_msg_of(me, &m);
	broadcast(ml, me->name, &m, NULL, NULL);
}

static void set_state(struct hc_ml *ml, struct node *n, enum hc_gossip_node_state state)
{
	if (n->pub.state != state)
		n->pub.state_change_ms = now_ms(ml);
	n->pub.state = state;
}

static void on_alive(struct hc_ml *ml, const struct hc_gossip_alive *a, bool bootstrap)
{
	struct hc_gossip_addr addr;
	enum hc_gossip_node_state old_state;
	bool is_self, meta_changed;
	struct node *n;
	char claimed[64], known[64];

	if (addr_from_bytes(a->addr, a->port, &addr) < 0 || a->node.len == 0)
		return;
	n = find(ml, a->node);
	if (!n) {
		n = node_add(ml, a->node, &addr);
		if (!n)
			return;
	} else if (!addr_eq(&n->pub.addr, &addr)) {
		/* A left node may come back elsewhere; a live or dead one may
		 * not (DeadNodeReclaimTime 0). */
		if (n->pub.state != HC_GOSSIP_STATE_LEFT) {
			hc_log(HC_LOG_WARN, "conflicting address for %s: %s claims it, known at %s",
			       n->name, addr_str(&addr, claimed, sizeof(claimed)),
			       addr_str(&n->pub.addr, known, sizeof(known)));
			return;
		}
		n->pub.addr = addr;
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

static void on_dead(struct hc_ml *ml, const struct hc_gossip_suspect *d);

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
		on_dead(ml, &d);
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
		if (bytes_is(from, s->seen[i]))
			return false;
	who = strndup(from.ptr ? (const char *)from.ptr : "", from.len);
	if (!who)
		return false;
	s->seen[s->nseen++] = who;
	s->n++;
	hc_loop_del_timer(ml->loop, s->timer);
	s->timer = hc_loop_add_timer(ml->loop, suspicion_remaining(s, now_ms(ml)),
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
	s->start_ms = now_ms(ml);
	s->min_ms = suspicion_timeout_ms(ml, nodes);
	s->max_ms = ml->cfg.suspicion_max_mult * s->min_ms;
	n->susp = s;
	/* With confirmations to expect, start at max and let each pull the
	 * deadline in; with none, min is all the evidence there will be. */
	s->timer = hc_loop_add_timer(ml->loop, k < 1 ? s->min_ms : s->max_ms, suspicion_expired, n);
	return 0;
}

static void on_suspect(struct hc_ml *ml, const struct hc_gossip_suspect *s)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_SUSPECT, .u.suspect = *s };
	struct node *n = find(ml, s->node);

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

static void on_dead(struct hc_ml *ml, const struct hc_gossip_suspect *d)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_DEAD, .u.suspect = *d };
	struct node *n = find(ml, d->node);

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
	set_state(ml, n, bytes_is(d->from, n->name) ? HC_GOSSIP_STATE_LEFT : HC_GOSSIP_STATE_DEAD);
	if (n != ml->self && ml->d.notify_leave)
		ml->d.notify_leave(ml->d.arg, &n->pub);
}

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

static void relay_free(struct hc_ml *ml, struct relay **link)
{
	struct relay *r = *link;

	*link = r->next;
	if (r->timer)
		hc_loop_del_timer(ml->loop, r->timer);
	free(r);
}

static void probe_end(struct hc_ml *ml)
{
	struct probe *p = &ml->probe;

	if (p->indirect_timer)
		hc_loop_del_timer(ml->loop, p->indirect_timer);
	if (p->deadline_timer)
		hc_loop_del_timer(ml->loop, p->deadline_timer);
	free(p->target);
	memset(p, 0, sizeof(*p));
}

static void on_ack(struct hc_ml *ml, const struct hc_gossip_ack *ack)
{
	struct probe *p = &ml->probe;
	struct relay **link, *r;

	if (p->active && ack->seq_no == p->seq) {
		struct node *n = find(ml, hc_gossip_bytes_str(p->target));
		int64_t rtt = (int64_t)(hc_loop_now_ns(ml->loop) - p->sent_ns) / 1000;

		awareness_delta(ml, -1);
		if (n) {
			n->pub.rtt_us = rtt;
			if (ml->d.notify_ping_complete)
				ml->d.notify_ping_complete(ml->d.arg, &n->pub, rtt, ack->payload.ptr,
							   ack->payload.len);
		}
		probe_end(ml);
		return;
	}
	r = find_relay(ml, ack->seq_no, &link);
	if (r) {
		struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_ACK };

		m.u.ack.seq_no = r->orig_seq;
		send_msg(ml, &r->requester, &m);
		relay_free(ml, link);
	}
}

static void on_nack(struct hc_ml *ml, const struct hc_gossip_nack *nack)
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
		send_msg(ml, &r->requester, &m);
	}
	if (find_relay(ml, r->seq, &link))
		relay_free(ml, link);
	return HC_LOOP_TIMER_DONE;
}

static void fill_ping(struct hc_ml *ml, struct hc_gossip_msg *m, uint32_t seq, const char *target)
{
	memset(m, 0, sizeof(*m));
	m->type = HC_GOSSIP_MSG_PING;
	m->u.ping.seq_no = seq;
	m->u.ping.node = hc_gossip_bytes_str(target);
	m->u.ping.source_addr = addr_ip(&ml->self->pub.addr);
	m->u.ping.source_port = ml->self->pub.addr.port;
	m->u.ping.source_node = hc_gossip_bytes_str(ml->self->name);
}

static void on_indirect_ping(struct hc_ml *ml, const struct hc_gossip_indirect_ping *ind,
			     const struct hc_gossip_addr *from)
{
	struct relay *r = calloc(1, sizeof(*r));
	struct hc_gossip_addr target;
	struct hc_gossip_msg m;
	char *name;

	if (!r)
		return;
	if (addr_from_bytes(ind->target, ind->port, &target) < 0 ||
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
	    addr_from_bytes(ind->source_addr, ind->source_port, &r->requester) < 0)
		r->requester = *from;
	r->timer = hc_loop_add_timer(ml->loop, ml->cfg.probe_timeout_ms, relay_timeout, r);
	r->next = ml->relays;
	ml->relays = r;
	fill_ping(ml, &m, r->seq, name);
	send_msg(ml, &target, &m);
	free(name);
}

static void on_ping(struct hc_ml *ml, const struct hc_gossip_ping *ping,
		    const struct hc_gossip_addr *from)
{
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_ACK };
	struct hc_gossip_mp_writer payload;
	struct hc_gossip_addr to = *from;

	/* A ping for another name means the sender has stale addresses. */
	if (ping->node.len && !bytes_is(ping->node, ml->self->name))
		return;
	if (ping->source_addr.len)
		addr_from_bytes(ping->source_addr, ping->source_port, &to);
	hc_gossip_mp_writer_init(&payload, 0);
	if (ml->d.ack_payload)
		ml->d.ack_payload(ml->d.arg, &payload);
	m.u.ack.seq_no = ping->seq_no;
	if (payload.len && !hc_gossip_mp_writer_error(&payload))
		m.u.ack.payload = (struct hc_gossip_bytes){ payload.buf, payload.len };
	send_msg(ml, &to, &m);
	hc_gossip_mp_writer_fini(&payload);
}

/* Picks up to k distinct random nodes for which skip() is false. */
static size_t random_nodes(struct hc_ml *ml, size_t k, bool (*skip)(struct hc_ml *,
								 const struct node *, const void *),
			   const void *ctx, struct node **out)
{
	size_t found = 0;

	for (size_t tries = 0; tries < 3 * ml->nnodes && found < k; tries++) {
		struct node *n = ml->nodes[rnd(ml) % ml->nnodes];
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

static bool skip_for_indirect(struct hc_ml *ml, const struct node *n, const void *target)
{
	return n == ml->self || n == target || n->pub.state != HC_GOSSIP_STATE_ALIVE;
}

static void tcp_ping_done(void *arg, int err, const uint8_t *buf, size_t len);
static int stream_send(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *msg,
		       size_t len, hc_gossip_stream_done_fn *done, void *arg);

static int64_t probe_indirect(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct probe *p = &ml->probe;
	struct node *target = find(ml, hc_gossip_bytes_str(p->target));
	struct node *peers[16];
	size_t k;

	(void)loop;
	(void)id;
	p->indirect_timer = 0;
	if (!target)
		return HC_LOOP_TIMER_DONE;
	k = random_nodes(ml, ml->cfg.indirect_checks < 16 ? ml->cfg.indirect_checks : 16,
			 skip_for_indirect, target, peers);
	for (size_t i = 0; i < k; i++) {
		struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_INDIRECT_PING };
		struct hc_gossip_indirect_ping *ind = &m.u.indirect_ping;

		ind->seq_no = p->seq;
		ind->target = addr_ip(&target->pub.addr);
		ind->port = target->pub.addr.port;
		ind->node = hc_gossip_bytes_str(target->name);
		ind->nack = peers[i]->pub.vsn[1] >= 4;
		ind->source_addr = addr_ip(&ml->self->pub.addr);
		ind->source_port = ml->self->pub.addr.port;
		ind->source_node = hc_gossip_bytes_str(ml->self->name);
		if (ind->nack)
			p->expected_nacks++;
		send_msg(ml, &peers[i]->pub.addr, &m);
		ml->st.indirect_probes++;
	}
	/* memberlist also tries TCP, which gets through some UDP-only faults. */
	if (target->pub.vsn[1] >= 3) {
		struct hc_gossip_mp_writer w;
		struct hc_gossip_msg m;

		fill_ping(ml, &m, p->seq, target->name);
		hc_gossip_mp_writer_init(&w, 0);
		if (hc_gossip_msg_encode(&m, &w) == 0)
			stream_send(ml, &target->pub.addr, w.buf, w.len, tcp_ping_done, ml);
		hc_gossip_mp_writer_fini(&w);
	}
	return HC_LOOP_TIMER_DONE;
}

static int64_t probe_deadline(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct probe *p = &ml->probe;
	struct node *n = find(ml, hc_gossip_bytes_str(p->target));

	(void)loop;
	(void)id;
	p->deadline_timer = 0;
	ml->st.probe_failures++;
	/* Lifeguard: missing nacks from healthy helpers mean *we* may be the
	 * slow one; with no helpers any failure counts against us. */
	if (p->expected_nacks)
		awareness_delta(ml, (int)(p->expected_nacks > p->nacks
						  ? p->expected_nacks - p->nacks : 0));
	else
		awareness_delta(ml, 1);
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
		on_suspect(ml, &s);
	}
	probe_end(ml);
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
				size_t j = rnd(ml) % i;
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
	uint32_t interval = scaled(ml, ml->cfg.probe_interval_ms);

	p->target = strdup(n->name);
	if (!p->target)
		return;
	p->active = true;
	p->seq = ++ml->seq;
	p->sent_ns = hc_loop_now_ns(ml->loop);
	ml->st.probes++;
	fill_ping(ml, &m, p->seq, n->name);
	if (n->pub.state == HC_GOSSIP_STATE_ALIVE) {
		send_msg(ml, &n->pub.addr, &m);
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
				send_packet(ml, &n->pub.addr, out.buf, out.len);
		}
		hc_gossip_mp_writer_fini(&w1);
		hc_gossip_mp_writer_fini(&w2);
		hc_gossip_mp_writer_fini(&out);
	}
	p->indirect_timer = hc_loop_add_timer(ml->loop, scaled(ml, ml->cfg.probe_timeout_ms),
					      probe_indirect, ml);
	p->deadline_timer = hc_loop_add_timer(ml->loop, interval, probe_deadline, ml);
}

static int64_t probe_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *n;

	(void)loop;
	(void)id;
	if (ml->leaving)
		return HC_LOOP_TIMER_DONE;
	if (!ml->probe.active && (n = next_probe_target(ml)))
		probe_start(ml, n);
	return scaled(ml, ml->cfg.probe_interval_ms);
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
		return now_ms(ml) - n->pub.state_change_ms > ml->cfg.gossip_to_dead_ms;
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

	take_broadcasts(ml, avail, parts, &n);
	for (size_t i = 0; i < n; i++)
		used += parts[i].len;
	if (n == 1) {
		for (size_t t = 0; t < k; t++)
			send_packet(ml, &targets[t]->pub.addr, parts[0].ptr, parts[0].len);
	} else if (n > 1) {
		hc_gossip_mp_writer_init(&out, 0);
		if (hc_gossip_compound_encode(parts, n, &out) == 0)
			for (size_t t = 0; t < k; t++)
				send_packet(ml, &targets[t]->pub.addr, out.buf, out.len);
		hc_gossip_mp_writer_fini(&out);
	}
	return used;
}

static int64_t gossip_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *targets[16];
	size_t k = random_nodes(ml, ml->cfg.gossip_nodes < 16 ? ml->cfg.gossip_nodes : 16,
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
		on_ping(ml, &m->u.ping, c->from);
		break;
	case HC_GOSSIP_MSG_INDIRECT_PING:
		on_indirect_ping(ml, &m->u.indirect_ping, c->from);
		break;
	case HC_GOSSIP_MSG_ACK:
		on_ack(ml, &m->u.ack);
		break;
	case HC_GOSSIP_MSG_NACK:
		on_nack(ml, &m->u.nack);
		break;
	case HC_GOSSIP_MSG_SUSPECT:
		on_suspect(ml, &m->u.suspect);
		break;
	case HC_GOSSIP_MSG_ALIVE:
		on_alive(ml, &m->u.alive, false);
		break;
	case HC_GOSSIP_MSG_DEAD:
		on_dead(ml, &m->u.suspect);
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
		       addr_str(from, where, sizeof(where)), hc_gossip_drop_name(why));
	}
}

/* ---- streams: push/pull and TCP ping ---- */

/* Wraps a stream message as Go does: always compressed, then encrypted. */
static int stream_wrap(struct hc_ml *ml, const uint8_t *msg, size_t len,
		       struct hc_gossip_mp_writer *out)
{
	struct hc_gossip_mp_writer z;
	int r;

	hc_gossip_mp_writer_init(&z, HC_GOSSIP_STREAM_MAX);
	r = hc_gossip_compress_wrap(msg, len, &z);
	if (r == 0) {
		if (ml->cfg.keyring && hc_gossip_keyring_count(ml->cfg.keyring))
			r = hc_gossip_encrypt_stream(ml->cfg.keyring, z.buf, z.len, out);
		else
			hc_gossip_mp_write_raw(out, z.buf, z.len);
	}
	hc_gossip_mp_writer_fini(&z);
	return r ? r : hc_gossip_mp_writer_error(out);
}

/* 1 if buf holds one whole stream message (as stream_complete_fn). */
static int stream_complete(void *arg, const uint8_t *buf, size_t len)
{
	struct exchange *x = arg;
	struct hc_ml *ml = x->ml;
	struct hc_gossip_push_pull pp;
	uint8_t *msg;
	size_t mlen;
	int r;

	if (!ml)
		return -ECANCELED;
	r = hc_gossip_stream_open(ml->cfg.keyring, buf, len, &msg, &mlen);
	if (r == -ENODATA)
		return 0;
	if (r < 0)
		return r;
	/* A plaintext, uncompressed push/pull has no length: parse to know. */
	if (mlen && msg[0] == HC_GOSSIP_MSG_PUSH_PULL) {
		r = hc_gossip_push_pull_decode(msg, mlen, &pp);
		if (r == 0)
			hc_gossip_push_pull_fini(&pp);
	}
	free(msg);
	return r == -ENODATA ? 0 : r < 0 ? r : 1;
}

static int encode_local_state(struct hc_ml *ml, bool join, struct hc_gossip_mp_writer *out)
{
	struct hc_gossip_push_node *nodes = calloc(ml->nnodes ? ml->nnodes : 1, sizeof(*nodes));
	struct hc_gossip_push_pull pp = { .join = join, .nodes = nodes, .nnodes = ml->nnodes };
	struct hc_gossip_mp_writer user, msg;
	int r;

	if (!nodes)
		return -ENOMEM;
	for (size_t i = 0; i < ml->nnodes; i++) {
		const struct hc_ml_node *n = &ml->nodes[i]->pub;

		nodes[i].addr = addr_ip(&n->addr);
		nodes[i].port = n->addr.port;
		nodes[i].incarnation = n->incarnation;
		nodes[i].meta = (struct hc_gossip_bytes){ n->meta ? n->meta : (const uint8_t *)"",
							  n->meta_len };
		nodes[i].name = hc_gossip_bytes_str(n->name);
		nodes[i].state = (uint8_t)n->state;
		nodes[i].vsn = (struct hc_gossip_bytes){ n->vsn, 6 };
	}
	hc_gossip_mp_writer_init(&user, 0);
	hc_gossip_mp_writer_init(&msg, HC_GOSSIP_STREAM_MAX);
	if (ml->d.local_state)
		ml->d.local_state(ml->d.arg, join, &user);
	pp.user_state = (struct hc_gossip_bytes){ user.buf, user.len };
	r = hc_gossip_mp_writer_error(&user);
	if (r == 0)
		r = hc_gossip_push_pull_encode(&pp, &msg);
	if (r == 0)
		r = stream_wrap(ml, msg.buf, msg.len, out);
	hc_gossip_mp_writer_fini(&user);
	hc_gossip_mp_writer_fini(&msg);
	free(nodes);
	return r;
}

static void merge_state(struct hc_ml *ml, const struct hc_gossip_push_pull *pp)
{
	for (size_t i = 0; i < pp->nnodes; i++) {
		const struct hc_gossip_push_node *r = &pp->nodes[i];

		if (r->state == HC_GOSSIP_STATE_ALIVE) {
			struct hc_gossip_alive a = {
				.addr = r->addr, .port = r->port, .incarnation = r->incarnation,
				.meta = r->meta, .node = r->name, .vsn = r->vsn,
			};

			on_alive(ml, &a, false);
		} else if (r->state == HC_GOSSIP_STATE_LEFT) {
			struct hc_gossip_suspect d = { .incarnation = r->incarnation,
						       .node = r->name, .from = r->name };

			on_dead(ml, &d);
		} else {
			/* Someone else's verdict of dead is only a suspicion here. */
			struct hc_gossip_suspect s = {
				.incarnation = r->incarnation, .node = r->name,
				.from = hc_gossip_bytes_str(ml->self->name),
			};

			on_suspect(ml, &s);
		}
	}
	if (ml->d.merge_remote_state && pp->user_state.len)
		ml->d.merge_remote_state(ml->d.arg, pp->user_state.ptr, pp->user_state.len,
					 pp->join);
}

/* Opens (decrypts, decompresses) a received stream message and, for
 * push/pull, decodes it. *msg must be freed. */
static int open_stream(struct hc_ml *ml, const uint8_t *buf, size_t len, uint8_t **msg,
		       size_t *mlen)
{
	return hc_gossip_stream_open(ml->cfg.keyring, buf, len, msg, mlen);
}

int hc_ml_on_stream(void *arg, const struct hc_gossip_addr *from, const uint8_t *buf, size_t len,
		    struct hc_gossip_mp_writer *reply)
{
	struct hc_ml *ml = arg;
	struct hc_gossip_push_pull pp;
	uint8_t *msg = NULL;
	size_t mlen;
	int r = open_stream(ml, buf, len, &msg, &mlen);

	(void)from;
	if (r == -ENODATA)
		return r;
	if (r < 0 || mlen == 0)
		goto drop;
	switch (msg[0]) {
	case HC_GOSSIP_MSG_PUSH_PULL:
		r = hc_gossip_push_pull_decode(msg, mlen, &pp);
		if (r == -ENODATA)
			break;
		if (r < 0)
			goto drop;
		ml->st.push_pulls_in++;
		r = encode_local_state(ml, pp.join, reply);
		merge_state(ml, &pp);
		hc_gossip_push_pull_fini(&pp);
		break;
	case HC_GOSSIP_MSG_PING: {
		struct hc_gossip_msg m, ack = { .type = HC_GOSSIP_MSG_ACK };
		struct hc_gossip_mp_writer w;

		r = hc_gossip_msg_decode(msg, mlen, &m);
		if (r < 0)
			goto drop;
		if (m.u.ping.node.len && !bytes_is(m.u.ping.node, ml->self->name)) {
			r = -EINVAL;
			goto drop;
		}
		ack.u.ack.seq_no = m.u.ping.seq_no;
		hc_gossip_mp_writer_init(&w, 0);
		r = hc_gossip_msg_encode(&ack, &w);
		if (r == 0)
			r = stream_wrap(ml, w.buf, w.len, reply);
		hc_gossip_mp_writer_fini(&w);
		break;
	}
	case HC_GOSSIP_MSG_USER: {
		struct hc_gossip_bytes user;

		r = hc_gossip_user_stream_decode(msg, mlen, &user);
		if (r < 0)
			goto drop;
		if (ml->d.notify_msg)
			ml->d.notify_msg(ml->d.arg, user.ptr, user.len);
		break;
	}
	default:
		r = -ENOMSG;
		goto drop;
	}
	free(msg);
	return r;
drop:
	ml->st.dropped[hc_gossip_drop_reason(r < 0 ? r : -EBADMSG)]++;
	free(msg);
	return r < 0 ? r : -EBADMSG;
}

/* Completions of exchanges that outlive the engine get -ECANCELED, and
 * their handlers then only free their own state. */
static void exchange_done(void *arg, int err, const uint8_t *buf, size_t len)
{
	struct exchange *x = arg;

	if (x->ml) {
		for (struct exchange **p = &x->ml->exchanges; *p; p = &(*p)->next) {
			if (*p == x) {
				*p = x->next;
				break;
			}
		}
	} else {
		err = -ECANCELED;
	}
	x->done(x->arg, err, err ? NULL : buf, err ? 0 : len);
	free(x);
}

/* Sends an already wrapped stream message and tracks the exchange until
 * done(arg, ...) runs. */
static int start_exchange(struct hc_ml *ml, const struct hc_gossip_addr *to,
			  const struct hc_gossip_mp_writer *wrapped, hc_gossip_stream_done_fn *done,
			  void *arg)
{
	struct exchange *x = calloc(1, sizeof(*x));
	int r;

	if (!x)
		return -ENOMEM;
	x->ml = ml;
	x->done = done;
	x->arg = arg;
	r = ml->ops->stream_exchange(ml->ops_ctx, to, wrapped->buf, wrapped->len,
				     ml->cfg.tcp_timeout_ms, stream_complete, exchange_done, x);
	if (r < 0) {
		free(x);
		return r;
	}
	x->next = ml->exchanges;
	ml->exchanges = x;
	return 0;
}

static int stream_send(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *msg,
		       size_t len, hc_gossip_stream_done_fn *done, void *arg)
{
	struct hc_gossip_mp_writer w;
	int r;

	hc_gossip_mp_writer_init(&w, HC_GOSSIP_STREAM_MAX);
	r = stream_wrap(ml, msg, len, &w);
	if (r == 0)
		r = start_exchange(ml, to, &w, done, arg);
	hc_gossip_mp_writer_fini(&w);
	return r;
}

static void tcp_ping_done(void *arg, int err, const uint8_t *buf, size_t len)
{
	struct hc_ml *ml = arg;
	struct hc_gossip_msg m;
	uint8_t *msg;
	size_t mlen;

	if (err || open_stream(ml, buf, len, &msg, &mlen) < 0)
		return; /* also -ECANCELED: ml may be gone */
	if (hc_gossip_msg_decode(msg, mlen, &m) == 0 && m.type == HC_GOSSIP_MSG_ACK)
		on_ack(ml, &m.u.ack);
	free(msg);
}

struct push_pull_req {
	struct hc_ml *ml;
	struct hc_ml_join_state *join;
	struct hc_gossip_addr to;
};

/* Why a push/pull failed, in words an operator can act on. */
static const char *push_pull_reason(const struct hc_ml *ml, int r)
{
	bool encrypting = ml->cfg.keyring && hc_gossip_keyring_count(ml->cfg.keyring);

	switch (r) {
	case -EKEYREJECTED:
		return "cannot decrypt the answer: the peer uses another encryption key";
	case -EACCES:
		return encrypting ? "the peer answered without encryption, but we encrypt"
				  : "the peer answered encrypted, but we have no key";
	case -ECONNRESET:
		/* A peer that cannot read our request just hangs up. */
		return encrypting ? "the peer hung up: it may use another key or none"
				  : "the peer hung up: it may require encryption";
	case -ECONNREFUSED:
		return "connection refused";
	case -ETIMEDOUT:
		return "no answer in time";
	default:
		return strerror(-r);
	}
}

struct hc_ml_join_state {
	struct hc_ml *ml;
	unsigned pending, joined;
	hc_ml_join_done_fn *done;
	void *arg;
};

static void schedule_catchup(struct hc_ml *ml);

static void push_pull_done(void *arg, int err, const uint8_t *buf, size_t len)
{
	struct push_pull_req *req = arg;
	struct hc_ml *ml = req->ml;
	struct hc_ml_join_state *js = req->join;
	struct hc_gossip_push_pull pp;
	uint8_t *msg = NULL;
	size_t mlen;
	int r = err;

	if (r == -ECANCELED) { /* the engine is gone: only free our state */
		free(req);
		if (js && --js->pending == 0)
			free(js);
		return;
	}
	if (r == 0)
		r = open_stream(ml, buf, len, &msg, &mlen);
	if (r == 0)
		r = mlen && msg[0] == HC_GOSSIP_MSG_PUSH_PULL
			    ? hc_gossip_push_pull_decode(msg, mlen, &pp)
			    : -EBADMSG;
	if (r == 0) {
		merge_state(ml, &pp);
		hc_gossip_push_pull_fini(&pp);
	} else {
		char where[64];

		ml->st.push_pull_failures++;
		hc_log(js ? HC_LOG_WARN : HC_LOG_DEBUG, "%s with %s failed: %s",
		       js ? "join" : "push/pull", addr_str(&req->to, where, sizeof(where)),
		       push_pull_reason(ml, r));
	}
	free(msg);
	free(req);
	if (js) {
		js->joined += r == 0;
		if (--js->pending == 0) {
			if (js->joined)
				schedule_catchup(js->ml);
			js->done(js->arg, js->joined);
			free(js);
		}
	}
}

static int push_pull(struct hc_ml *ml, const struct hc_gossip_addr *to, bool join,
		     struct hc_ml_join_state *js)
{
	struct push_pull_req *req = calloc(1, sizeof(*req));
	struct hc_gossip_mp_writer w;
	int r;

	if (!req)
		return -ENOMEM;
	req->ml = ml;
	req->join = js;
	req->to = *to;
	hc_gossip_mp_writer_init(&w, HC_GOSSIP_STREAM_MAX);
	r = encode_local_state(ml, join, &w);
	if (r == 0)
		r = start_exchange(ml, to, &w, push_pull_done, req);
	hc_gossip_mp_writer_fini(&w);
	if (r < 0) {
		free(req);
		return r;
	}
	ml->st.push_pulls_out++;
	return 0;
}

/*
 * Nodes that join together learn of each other only from gossip, and an
 * informed node spends its few retransmissions of a newcomer's alive while
 * it may not yet know the other newcomers: under load one of them can miss
 * another until the next periodic push/pull (30 s). One extra push/pull with
 * a random member soon after a join closes that gap; on the wire it is an
 * ordinary anti-entropy exchange.
 */
static int64_t catchup_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *peer;

	(void)loop;
	(void)id;
	ml->catchup_timer = 0;
	if (!ml->leaving && random_nodes(ml, 1, skip_for_indirect, NULL, &peer) == 1)
		push_pull(ml, &peer->pub.addr, false, NULL);
	return HC_LOOP_TIMER_DONE;
}

static void schedule_catchup(struct hc_ml *ml)
{
	uint32_t delay = 5 * ml->cfg.gossip_interval_ms;

	if (ml->catchup_timer)
		return;
	ml->catchup_timer = hc_loop_add_timer(ml->loop, delay > CATCHUP_MIN_MS ? delay
										 : CATCHUP_MIN_MS,
					      catchup_tick, ml);
}

static int64_t push_pull_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *peer;
	size_t n = hc_ml_alive_count(ml);
	double scale = 1.0;

	(void)loop;
	(void)id;
	if (random_nodes(ml, 1, skip_for_indirect, NULL, &peer) == 1)
		push_pull(ml, &peer->pub.addr, false, NULL);
	/* Above 32 nodes, slow down as memberlist's pushPullScale does. */
	if (n > 32)
		scale = ceil(log2((double)n) - log2(32.0)) + 1.0;
	return (int64_t)(ml->cfg.push_pull_interval_ms * scale);
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
	hc_gossip_mp_writer_init(&ml->scratch, 0);
	ml->queue = hc_gossip_bcast_queue_new();
	if (!ml->queue)
		goto fail;

	/* Become alive: memberlist's setAlive, applied with bootstrap so we
	 * do not refute ourselves. */
	memset(&self, 0, sizeof(self));
	self.addr = addr_ip(&cfg->addr);
	self.port = cfg->addr.port;
	self.incarnation = 1;
	self.meta = (struct hc_gossip_bytes){ cfg->meta ? cfg->meta : (const uint8_t *)"",
					      cfg->meta_len };
	self.node = hc_gossip_bytes_str(cfg->name);
	self.vsn = (struct hc_gossip_bytes){ cfg->vsn, 6 };
	on_alive(ml, &self, true);
	ml->self = find(ml, self.node);
	if (!ml->self)
		goto fail;

	ml->probe_timer = hc_loop_add_timer(loop, cfg->probe_interval_ms, probe_tick, ml);
	ml->gossip_timer = hc_loop_add_timer(loop, cfg->gossip_interval_ms, gossip_tick, ml);
	if (cfg->push_pull_interval_ms)
		ml->push_pull_timer = hc_loop_add_timer(loop, cfg->push_pull_interval_ms,
							push_pull_tick, ml);
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
		relay_free(ml, &ml->relays);
	probe_end(ml);
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
	free(ml);
}

int hc_ml_join(struct hc_ml *ml, const struct hc_gossip_addr *addrs, size_t n,
	       hc_ml_join_done_fn *done, void *arg)
{
	struct hc_ml_join_state *js;

	if (n == 0)
		return -EINVAL;
	js = calloc(1, sizeof(*js));
	if (!js)
		return -ENOMEM;
	js->ml = ml;
	js->done = done;
	js->arg = arg;
	js->pending = (unsigned)n + 1; /* +1 until every exchange has started */
	for (size_t i = 0; i < n; i++) {
		if (push_pull(ml, &addrs[i], true, js) < 0)
			js->pending--;
	}
	if (--js->pending == 0) {
		if (js->joined)
			schedule_catchup(ml);
		done(arg, js->joined);
		free(js);
	}
	return 0;
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
	on_dead(ml, &d);
	return 0;
}

void hc_ml_hurry(struct hc_ml *ml)
{
	if (ml->hurry)
		return;
	ml->hurry = true;
	/* Do not wait out the current slow round. */
	hc_loop_del_timer(ml->loop, ml->gossip_timer);
	ml->gossip_timer = hc_loop_add_timer(ml->loop, 0, gossip_tick, ml);
}

void hc_ml_busy(struct hc_ml *ml)
{
	if (!ml || ml->busy || ml->hurry || ml->cfg.gossip_interval_ms <= HURRY_MS ||
	    !ml->gossip_timer)
		return;
	ml->busy = true;
	hc_loop_del_timer(ml->loop, ml->gossip_timer);
	ml->gossip_timer = hc_loop_add_timer(ml->loop, 0, gossip_tick, ml);
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
	return send_msg(ml, to, &m);
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
	struct node *n = find(ml, hc_gossip_bytes_str(name));

	return n ? &n->pub : NULL;
}

size_t hc_ml_alive_count(const struct hc_ml *ml)
{
	size_t n = 0;

	for (size_t i = 0; i < ml->nnodes; i++)
		n += ml->nodes[i]->pub.state == HC_GOSSIP_STATE_ALIVE ||
		     ml->nodes[i]->pub.state == HC_GOSSIP_STATE_SUSPECT;
	return n;
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
