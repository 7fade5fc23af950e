/* memberlist's streams: push/pull anti-entropy, joins, TCP pings. */
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

/* A push/pull this long after a join (at least 5 gossip rounds) catches
 * what the join storm's gossip missed. */
#define CATCHUP_MIN_MS 1000

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

/* Scans for the end of a stream message as its bytes arrive: 1 when buf
 * holds all of it (or a scan error says it never will, for the decoder to
 * name), 0 to read more. Counts the work for the stats. */
static int stream_scan(struct hc_ml *ml, struct hc_gossip_stream_scan *scan, const uint8_t *buf,
		       size_t len)
{
	uint64_t before = scan->examined;
	int r = hc_gossip_stream_scan(scan, buf, len);

	ml->st.stream_scanned += scan->examined - before;
	if (r == 0)
		return 0;
	ml->st.stream_decodes++;
	return 1;
}

/* 1 if buf holds one whole stream message (as stream_complete_fn): found
 * by the scan, then opened and decoded once. */
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
	if (stream_scan(ml, &x->scan, buf, len) == 0)
		return 0;
	/* The end is found: a message that still does not open or decode
	 * (-ENODATA too) never will. */
	r = hc_gossip_stream_open(ml->cfg.keyring, buf, len, &msg, &mlen);
	if (r < 0)
		return r;
	if (mlen && msg[0] == HC_GOSSIP_MSG_PUSH_PULL) {
		r = hc_gossip_push_pull_decode(msg, mlen, &pp);
		if (r == 0)
			hc_gossip_push_pull_fini(&pp);
	}
	free(msg);
	return r < 0 ? r : 1;
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

		nodes[i].addr = hc_ml_addr_ip(&n->addr);
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

			hc_ml_on_alive(ml, &a, false);
		} else if (r->state == HC_GOSSIP_STATE_LEFT) {
			struct hc_gossip_suspect d = { .incarnation = r->incarnation,
						       .node = r->name, .from = r->name };

			hc_ml_on_dead(ml, &d);
		} else {
			/* Someone else's verdict of dead is only a suspicion here. */
			struct hc_gossip_suspect s = {
				.incarnation = r->incarnation, .node = r->name,
				.from = hc_gossip_bytes_str(ml->self->name),
			};

			hc_ml_on_suspect(ml, &s);
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

int hc_ml_on_stream(void *arg, const struct hc_gossip_addr *from,
		    struct hc_gossip_stream_scan *scan, const uint8_t *buf, size_t len,
		    struct hc_gossip_mp_writer *reply)
{
	struct hc_ml *ml = arg;
	struct hc_gossip_push_pull pp;
	uint8_t *msg = NULL;
	size_t mlen;
	int r;

	(void)from;
	if (stream_scan(ml, scan, buf, len) == 0)
		return -ENODATA;
	/* The scan found the end: what does not open or decode now (-ENODATA
	 * too) never will, and is dropped rather than decoded again. */
	r = open_stream(ml, buf, len, &msg, &mlen);
	if (r < 0 || mlen == 0)
		goto drop;
	switch (msg[0]) {
	case HC_GOSSIP_MSG_PUSH_PULL:
		r = hc_gossip_push_pull_decode(msg, mlen, &pp);
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
		if (m.u.ping.node.len && !hc_ml_bytes_is(m.u.ping.node, ml->self->name)) {
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

int hc_ml_stream_send(struct hc_ml *ml, const struct hc_gossip_addr *to, const uint8_t *msg,
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

void hc_ml_tcp_ping_done(void *arg, int err, const uint8_t *buf, size_t len)
{
	struct hc_ml *ml = arg;
	struct hc_gossip_msg m;
	uint8_t *msg;
	size_t mlen;

	if (err || open_stream(ml, buf, len, &msg, &mlen) < 0)
		return; /* also -ECANCELED: ml may be gone */
	if (hc_gossip_msg_decode(msg, mlen, &m) == 0 && m.type == HC_GOSSIP_MSG_ACK)
		hc_ml_on_ack(ml, &m.u.ack);
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
		       js ? "join" : "push/pull", hc_ml_addr_str(&req->to, where, sizeof(where)),
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
	if (!ml->leaving && hc_ml_random_nodes(ml, 1, hc_ml_skip_for_indirect, NULL, &peer) == 1)
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

int64_t hc_ml_push_pull_tick(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_ml *ml = arg;
	struct node *peer;
	size_t n = hc_ml_alive_count(ml);
	double scale = 1.0;

	(void)loop;
	(void)id;
	if (hc_ml_random_nodes(ml, 1, hc_ml_skip_for_indirect, NULL, &peer) == 1)
		push_pull(ml, &peer->pub.addr, false, NULL);
	/* Above 32 nodes, slow down as memberlist's pushPullScale does. */
	if (n > 32)
		scale = ceil(log2((double)n) - log2(32.0)) + 1.0;
	return (int64_t)(ml->cfg.push_pull_interval_ms * scale);
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
