/* Simulated network and clock for gossip tests; see simnet.h. */
#include "simnet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/msgpack_int.h"
#include "gossip/wire_int.h"
#include "loop/loop.h"

/* Node i is 10.a.b.c with a.b.c = i + 1, so the index comes back from the
 * address in O(1) and the first 254 nodes keep their 10.0.0.<i+1>. */
#define MAX_NODES 65536
#define LATENCY_MS 1

struct simnode {
	struct hc_simnet *net;
	int idx;
	struct hc_gossip_addr addr;
	const struct hc_gossip_receiver *recv;
	bool down;
	uint32_t delay_ms;
};

struct delivery {
	struct delivery *next, **prevp;
	struct hc_simnet *net;
	int from, to;
	uint8_t *buf;
	size_t len;
	uint64_t timer;
	bool stream, timing_out;
	uint32_t timeout_ms;
	hc_gossip_stream_complete_fn *complete;
	hc_gossip_stream_done_fn *done;
	void *arg;
};

struct hc_simnet {
	struct hc_loop *loop;
	uint64_t now_ns;
	struct simnode *nodes;
	int n;
	uint64_t rng;
	unsigned loss_pct;
	/* blocked[from * n + to]; allocated by the first hc_simnet_block, so
	 * big clusters that never partition do not pay n^2 bytes */
	bool *blocked;
	struct delivery *inflight;
	struct hc_simnet_traffic *traffic; /* per node, for benchmarks */
};

static uint64_t sim_clock(void *ctx)
{
	return ((struct hc_simnet *)ctx)->now_ns;
}

static unsigned sim_rand(struct hc_simnet *s)
{
	s->rng = s->rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(s->rng >> 33);
}

struct hc_simnet *hc_simnet_new(int nodes, uint64_t seed)
{
	struct hc_simnet *s = calloc(1, sizeof(*s));

	if (!s || nodes < 1 || nodes > MAX_NODES ||
	    !(s->nodes = calloc((size_t)nodes, sizeof(*s->nodes))) ||
	    !(s->traffic = calloc((size_t)nodes, sizeof(*s->traffic)))) {
		if (s)
			free(s->nodes);
		free(s);
		return NULL;
	}
	s->now_ns = 1000000000ull;
	s->loop = hc_loop_new(sim_clock, s);
	s->rng = seed | 1;
	s->n = nodes;
	for (int i = 0; i < nodes; i++) {
		struct simnode *sn = &s->nodes[i];

		sn->net = s;
		sn->idx = i;
		sn->addr.ip_len = 4;
		sn->addr.ip[0] = 10;
		sn->addr.ip[1] = (uint8_t)((i + 1) >> 16);
		sn->addr.ip[2] = (uint8_t)((i + 1) >> 8);
		sn->addr.ip[3] = (uint8_t)(i + 1);
		sn->addr.port = 7946;
	}
	return s;
}

static void delivery_free(struct delivery *d)
{
	if (d->timer)
		hc_loop_del_timer(d->net->loop, d->timer);
	*d->prevp = d->next;
	if (d->next)
		d->next->prevp = d->prevp;
	free(d->buf);
	free(d);
}

void hc_simnet_free(struct hc_simnet *s)
{
	if (!s)
		return;
	while (s->inflight) {
		struct delivery *d = s->inflight;
		hc_gossip_stream_done_fn *done = d->done;
		void *arg = d->arg;

		delivery_free(d);
		if (done)
			done(arg, -ECANCELED, NULL, 0);
	}
	hc_loop_free(s->loop);
	free(s->blocked);
	free(s->traffic);
	free(s->nodes);
	free(s);
}

struct hc_loop *hc_simnet_loop(struct hc_simnet *s)
{
	return s->loop;
}

const struct hc_gossip_addr *hc_simnet_addr(struct hc_simnet *s, int i)
{
	return &s->nodes[i].addr;
}

void *hc_simnet_ctx(struct hc_simnet *s, int i)
{
	return &s->nodes[i];
}

void hc_simnet_attach(struct hc_simnet *s, int i, const struct hc_gossip_receiver *recv)
{
	s->nodes[i].recv = recv;
}

void hc_simnet_set_down(struct hc_simnet *s, int i, bool down)
{
	s->nodes[i].down = down;
}

bool hc_simnet_is_down(struct hc_simnet *s, int i)
{
	return s->nodes[i].down;
}

int hc_simnet_block(struct hc_simnet *s, int from, int to, bool blocked)
{
	if (!s->blocked) {
		if (!blocked)
			return 0;
		s->blocked = calloc((size_t)s->n * (size_t)s->n, sizeof(*s->blocked));
		if (!s->blocked)
			return -ENOMEM;
	}
	s->blocked[(size_t)from * (size_t)s->n + (size_t)to] = blocked;
	return 0;
}

void hc_simnet_set_loss(struct hc_simnet *s, unsigned percent)
{
	s->loss_pct = percent;
}

void hc_simnet_set_delay(struct hc_simnet *s, int i, uint32_t ms)
{
	s->nodes[i].delay_ms = ms;
}

const struct hc_simnet_traffic *hc_simnet_traffic(const struct hc_simnet *s, int i)
{
	return &s->traffic[i];
}

static struct simnode *by_addr(struct hc_simnet *s, const struct hc_gossip_addr *a)
{
	long i;

	if (a->ip_len != 4 || a->ip[0] != 10 || a->port != 7946)
		return NULL;
	i = ((long)a->ip[1] << 16 | (long)a->ip[2] << 8 | a->ip[3]) - 1;
	return i >= 0 && i < s->n ? &s->nodes[i] : NULL;
}

static bool link_up(struct hc_simnet *s, int from, int to)
{
	return !s->nodes[from].down && !s->nodes[to].down &&
	       !(s->blocked && s->blocked[(size_t)from * (size_t)s->n + (size_t)to]);
}

static struct delivery *delivery_new(struct hc_simnet *s, int from, int to, const uint8_t *buf,
				     size_t len)
{
	struct delivery *d = calloc(1, sizeof(*d));

	if (!d || !(d->buf = malloc(len ? len : 1))) {
		free(d);
		return NULL;
	}
	d->net = s;
	d->from = from;
	d->to = to;
	memcpy(d->buf, buf, len);
	d->len = len;
	d->next = s->inflight;
	if (s->inflight)
		s->inflight->prevp = &d->next;
	d->prevp = &s->inflight;
	s->inflight = d;
	return d;
}

static int64_t deliver_packet(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct delivery *d = arg;
	struct hc_simnet *s = d->net;
	const struct hc_gossip_receiver *r = s->nodes[d->to].recv;

	(void)loop;
	(void)id;
	d->timer = 0;
	if (link_up(s, d->from, d->to) && r) {
		s->traffic[d->to].packets_in++;
		s->traffic[d->to].bytes_in += d->len;
		r->on_packet(r->arg, &s->nodes[d->from].addr, d->buf, d->len);
	}
	delivery_free(d);
	return HC_LOOP_TIMER_DONE;
}

static int sim_send_packet(void *ctx, const struct hc_gossip_addr *to, const uint8_t *buf,
			   size_t len)
{
	struct simnode *src = ctx;
	struct hc_simnet *s = src->net;
	struct simnode *dst = by_addr(s, to);
	struct delivery *d;

	s->traffic[src->idx].packets_out++;
	s->traffic[src->idx].bytes_out += len;
	if (!dst || (s->loss_pct && sim_rand(s) % 100 < s->loss_pct))
		return 0; /* lost, as UDP may be */
	d = delivery_new(s, src->idx, dst->idx, buf, len);
	if (!d)
		return -ENOMEM;
	d->timer = hc_loop_add_timer(s->loop, LATENCY_MS + dst->delay_ms, deliver_packet, d);
	if (!d->timer) {
		delivery_free(d);
		return -ENOMEM;
	}
	return 0;
}

/* One stream exchange: the request reaches the responder after the
 * latency, which answers at once; failures as a kernel reports them (a
 * dead process refuses, a partition swallows the SYN until the timeout). */
static int64_t finish_stream(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct delivery *d = arg;
	struct hc_simnet *s = d->net;
	const struct hc_gossip_receiver *r = s->nodes[d->to].recv;
	hc_gossip_stream_done_fn *done = d->done;
	void *darg = d->arg;
	struct hc_gossip_mp_writer reply;
	struct hc_gossip_stream_scan scan = { 0 }; /* the whole stream comes at once */
	int err;

	(void)id;
	d->timer = 0;
	if (d->timing_out) {
		delivery_free(d);
		done(darg, -ETIMEDOUT, NULL, 0);
		return HC_LOOP_TIMER_DONE;
	}
	if (!d->stream || s->nodes[d->to].down || !r) {
		delivery_free(d);
		done(darg, -ECONNREFUSED, NULL, 0);
		return HC_LOOP_TIMER_DONE;
	}
	if (!link_up(s, d->from, d->to) || !link_up(s, d->to, d->from)) {
		d->timing_out = true;
		d->timer = hc_loop_add_timer(loop, d->timeout_ms, finish_stream, d);
		return HC_LOOP_TIMER_DONE;
	}
	hc_gossip_mp_writer_init(&reply, 0);
	s->traffic[d->from].stream_bytes_out += d->len;
	s->traffic[d->to].stream_bytes_in += d->len;
	err = r->on_stream(r->arg, &s->nodes[d->from].addr, &scan, d->buf, d->len, &reply);
	if (err == 0) {
		s->traffic[d->to].stream_bytes_out += reply.len;
		s->traffic[d->from].stream_bytes_in += reply.len;
	}
	if (err == 0 && d->complete(darg, reply.buf, reply.len) != 1)
		err = -EBADMSG;
	delivery_free(d);
	done(darg, err, err ? NULL : reply.buf, err ? 0 : reply.len);
	hc_gossip_mp_writer_fini(&reply);
	return HC_LOOP_TIMER_DONE;
}

static int sim_stream_exchange(void *ctx, const struct hc_gossip_addr *to, const uint8_t *req,
			       size_t len, uint32_t timeout_ms,
			       hc_gossip_stream_complete_fn *complete,
			       hc_gossip_stream_done_fn *done, void *arg)
{
	struct simnode *src = ctx;
	struct hc_simnet *s = src->net;
	struct simnode *dst = by_addr(s, to);
	struct delivery *d = delivery_new(s, src->idx, dst ? dst->idx : src->idx, req, len);

	if (!d)
		return -ENOMEM;
	d->stream = dst != NULL;
	d->timeout_ms = timeout_ms;
	d->complete = complete;
	d->done = done;
	d->arg = arg;
	/* A slow end answers (or reads the answer) that much later. */
	d->timer = hc_loop_add_timer(s->loop, LATENCY_MS * 2 + src->delay_ms +
						      (dst ? dst->delay_ms : 0),
				     finish_stream, d);
	return 0;
}

const struct hc_gossip_transport_ops hc_simnet_ops = {
	.send_packet = sim_send_packet,
	.stream_exchange = sim_stream_exchange,
};

void hc_simnet_run_ms(struct hc_simnet *s, uint64_t ms)
{
	for (uint64_t t = 0; t < ms; t++) {
		s->now_ns += 1000000u;
		while (hc_loop_run_once(s->loop, 0) > 0)
			;
	}
}

int64_t hc_simnet_run_until(struct hc_simnet *s, bool (*pred)(const void *ctx), const void *ctx,
			    uint64_t limit_ms)
{
	for (uint64_t t = 0; t <= limit_ms; t += 10) {
		if (pred(ctx))
			return (int64_t)t;
		hc_simnet_run_ms(s, 10);
	}
	return -1;
}
