/*
 * The memberlist engine as whole clusters on a simulated network and clock
 * (in the spirit of Tarantool's swim fakenet/fakeev): deterministic, no root,
 * no sockets. Packets take 1 ms; links can drop, partition or crash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/memberlist_int.h"
#include "loop/loop.h"

#define MAX_SIM 12
#define LATENCY_MS 1

struct sim;

struct simnode {
	struct sim *sim;
	int idx;
	struct hc_ml *ml;
	struct hc_gossip_addr addr;
	char name[16];
	bool down;
	struct hc_gossip_keyring *kr;
	unsigned joins, leaves, updates, user_msgs;
	struct hc_gossip_bcast_queue *user_queue; /* what this node gossips as "serf" */
	int joined; /* result of the last hc_ml_join, -1 while pending */
	bool left;
};

struct delivery {
	struct delivery *next, **prevp;
	struct sim *sim;
	int from, to;
	uint8_t *buf;
	size_t len;
	uint64_t timer;
	/* streams */
	bool stream;
	uint32_t timeout_ms;
	hc_gossip_stream_complete_fn *complete;
	hc_gossip_stream_done_fn *done;
	void *arg;
};

struct sim {
	struct hc_loop *loop;
	uint64_t now_ns;
	struct simnode nodes[MAX_SIM];
	int n;
	uint64_t rng;
	unsigned loss_pct;
	bool blocked[MAX_SIM][MAX_SIM];
	struct delivery *inflight;
};

static uint64_t sim_clock(void *ctx)
{
	return ((struct sim *)ctx)->now_ns;
}

static unsigned sim_rand(struct sim *s)
{
	s->rng = s->rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)(s->rng >> 33);
}

static struct simnode *by_addr(struct sim *s, const struct hc_gossip_addr *a)
{
	for (int i = 0; i < s->n; i++)
		if (s->nodes[i].addr.port == a->port && s->nodes[i].addr.ip_len == a->ip_len &&
		    memcmp(s->nodes[i].addr.ip, a->ip, a->ip_len) == 0)
			return &s->nodes[i];
	return NULL;
}

static bool link_up(struct sim *s, int from, int to)
{
	return !s->nodes[from].down && !s->nodes[to].down && !s->blocked[from][to];
}

static void delivery_free(struct delivery *d)
{
	if (d->timer)
		hc_loop_del_timer(d->sim->loop, d->timer);
	*d->prevp = d->next;
	if (d->next)
		d->next->prevp = d->prevp;
	free(d->buf);
	free(d);
}

static struct delivery *delivery_new(struct sim *s, int from, int to, const uint8_t *buf,
				     size_t len)
{
	struct delivery *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	d->sim = s;
	d->from = from;
	d->to = to;
	d->buf = malloc(len ? len : 1);
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
	struct sim *s = d->sim;

	(void)loop;
	(void)id;
	d->timer = 0;
	if (link_up(s, d->from, d->to) && s->nodes[d->to].ml)
		hc_ml_on_packet(s->nodes[d->to].ml, &s->nodes[d->from].addr, d->buf, d->len);
	delivery_free(d);
	return HC_LOOP_TIMER_DONE;
}

static int sim_send_packet(void *ctx, const struct hc_gossip_addr *to, const uint8_t *buf,
			   size_t len)
{
	struct simnode *src = ctx;
	struct sim *s = src->sim;
	struct simnode *dst = by_addr(s, to);
	struct delivery *d;

	if (!dst)
		return 0; /* nobody there: lost, as UDP would be */
	if (s->loss_pct && sim_rand(s) % 100 < s->loss_pct)
		return 0;
	d = delivery_new(s, src->idx, dst->idx, buf, len);
	d->timer = hc_loop_add_timer(s->loop, LATENCY_MS, deliver_packet, d);
	return 0;
}

/* Stream: after the latency the responder sees the request; its reply goes
 * back after the latency again. Failures as a kernel would report them. */
static int64_t finish_stream(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct delivery *d = arg;
	hc_gossip_stream_done_fn *done = d->done;
	void *darg = d->arg;
	struct hc_gossip_mp_writer reply;
	struct sim *s = d->sim;
	struct simnode *dst = &s->nodes[d->to];
	int r;

	(void)loop;
	(void)id;
	d->timer = 0;
	if (dst->down || !dst->ml) {
		delivery_free(d);
		done(darg, -ECONNREFUSED, NULL, 0);
		return HC_LOOP_TIMER_DONE;
	}
	if (!link_up(s, d->from, d->to) || !link_up(s, d->to, d->from)) {
		/* A partition swallows the SYN: the caller waits out its timeout. */
		d->timer = hc_loop_add_timer(loop, d->timeout_ms, finish_stream, d);
		d->to = d->from; /* second pass: report the timeout */
		d->stream = false;
		return HC_LOOP_TIMER_DONE;
	}
	if (!d->stream) {
		delivery_free(d);
		done(darg, -ETIMEDOUT, NULL, 0);
		return HC_LOOP_TIMER_DONE;
	}
	hc_gossip_mp_writer_init(&reply, 0);
	r = hc_ml_on_stream(dst->ml, &s->nodes[d->from].addr, d->buf, d->len, &reply);
	if (r == 0 && d->complete(d->arg, reply.buf, reply.len) == 1) {
		uint8_t *copy = malloc(reply.len);

		memcpy(copy, reply.buf, reply.len);
		delivery_free(d);
		done(darg, 0, copy, reply.len);
		free(copy);
	} else {
		delivery_free(d);
		done(darg, r == 0 ? -EBADMSG : r, NULL, 0);
	}
	hc_gossip_mp_writer_fini(&reply);
	return HC_LOOP_TIMER_DONE;
}

static int sim_stream_exchange(void *ctx, const struct hc_gossip_addr *to, const uint8_t *req,
			       size_t len, uint32_t timeout_ms,
			       hc_gossip_stream_complete_fn *complete,
			       hc_gossip_stream_done_fn *done, void *arg)
{
	struct simnode *src = ctx;
	struct sim *s = src->sim;
	struct simnode *dst = by_addr(s, to);
	struct delivery *d = delivery_new(s, src->idx, dst ? dst->idx : src->idx, req, len);

	d->stream = dst != NULL;
	d->timeout_ms = timeout_ms;
	d->complete = complete;
	d->done = done;
	d->arg = arg;
	d->timer = hc_loop_add_timer(s->loop, LATENCY_MS * 2, finish_stream, d);
	return 0;
}

static const struct hc_gossip_transport_ops sim_ops = {
	.send_packet = sim_send_packet,
	.stream_exchange = sim_stream_exchange,
};

/* ---- a delegate standing in for serf ---- */

static void d_notify_msg(void *arg, const uint8_t *msg, size_t len)
{
	struct simnode *sn = arg;

	/* Like serf: deliver the first copy and gossip it on. */
	if (len == 5 && memcmp(msg, "hello", 5) == 0 && sn->user_msgs++ == 0)
		assert_int_equal(hc_gossip_bcast_queue_push(sn->user_queue, NULL, msg, len, NULL,
							    NULL),
				 0);
}

static void d_get_broadcasts(void *arg, size_t overhead, size_t limit, struct hc_gossip_bytes *out,
			     size_t max, size_t *n)
{
	struct simnode *sn = arg;

	hc_gossip_bcast_queue_take(sn->user_queue, overhead, limit, 4, out, max, n);
}

static void d_join(void *arg, const struct hc_ml_node *n)
{
	(void)n;
	((struct simnode *)arg)->joins++;
}

static void d_leave(void *arg, const struct hc_ml_node *n)
{
	(void)n;
	((struct simnode *)arg)->leaves++;
}

static void d_update(void *arg, const struct hc_ml_node *n)
{
	(void)n;
	((struct simnode *)arg)->updates++;
}

/* ---- the simulation ---- */

static void node_start(struct sim *s, int i, const struct hc_gossip_keyring *kr)
{
	struct simnode *sn = &s->nodes[i];
	struct hc_ml_delegate d = {
		.arg = sn,
		.notify_msg = d_notify_msg,
		.get_broadcasts = d_get_broadcasts,
		.notify_join = d_join,
		.notify_leave = d_leave,
		.notify_update = d_update,
	};
	struct hc_ml_config cfg;

	hc_ml_config_lan(&cfg);
	cfg.name = sn->name;
	cfg.addr = sn->addr;
	cfg.meta = (const uint8_t *)"\xff\x80";
	cfg.meta_len = 2;
	cfg.seed = 1000 + (uint64_t)i;
	cfg.keyring = kr;
	sn->down = false;
	if (!sn->user_queue)
		sn->user_queue = hc_gossip_bcast_queue_new();
	sn->ml = hc_ml_new(s->loop, &cfg, &sim_ops, sn, &d);
	assert_non_null(sn->ml);
}

static struct sim *sim_new(int n, const struct hc_gossip_keyring *kr)
{
	struct sim *s = calloc(1, sizeof(*s));

	s->now_ns = 1000000000ull;
	s->loop = hc_loop_new(sim_clock, s);
	s->rng = 42;
	s->n = n;
	for (int i = 0; i < n; i++) {
		struct simnode *sn = &s->nodes[i];

		sn->sim = s;
		sn->idx = i;
		snprintf(sn->name, sizeof(sn->name), "node%d", i);
		sn->addr.ip_len = 4;
		sn->addr.ip[0] = 10;
		sn->addr.ip[3] = (uint8_t)(i + 1);
		sn->addr.port = 7946;
		node_start(s, i, kr);
	}
	return s;
}

static void sim_crash(struct sim *s, int i)
{
	s->nodes[i].down = true;
}

static void sim_free(struct sim *s)
{
	/* Streams in flight end as cancelled, as the real transport does. */
	while (s->inflight) {
		struct delivery *d = s->inflight;
		hc_gossip_stream_done_fn *done = d->done;
		void *arg = d->arg;

		delivery_free(d);
		if (done)
			done(arg, -ECANCELED, NULL, 0);
	}
	for (int i = 0; i < s->n; i++) {
		hc_ml_free(s->nodes[i].ml);
		hc_gossip_bcast_queue_free(s->nodes[i].user_queue);
	}
	hc_loop_free(s->loop);
	free(s);
}

/* Advances the simulated clock 1 ms at a time, running what is due. */
static void run_ms(struct sim *s, uint64_t ms)
{
	for (uint64_t t = 0; t < ms; t++) {
		s->now_ns += 1000000u;
		while (hc_loop_run_once(s->loop, 0) > 0)
			;
	}
}

/* Runs until pred holds or limit_ms passes; returns the ms it took or -1. */
static int64_t run_until(struct sim *s, bool (*pred)(struct sim *, const void *),
			 const void *ctx, uint64_t limit_ms)
{
	for (uint64_t t = 0; t <= limit_ms; t += 10) {
		if (pred(s, ctx))
			return (int64_t)t;
		run_ms(s, 10);
	}
	return -1;
}

static enum hc_gossip_node_state state_of(struct sim *s, int viewer, int subject)
{
	const struct hc_ml_node *n = hc_ml_find(s->nodes[viewer].ml, s->nodes[subject].name);

	return n ? n->state : (enum hc_gossip_node_state)-1;
}

static bool all_alive(struct sim *s, const void *ctx)
{
	(void)ctx;
	for (int v = 0; v < s->n; v++) {
		if (s->nodes[v].down)
			continue;
		for (int j = 0; j < s->n; j++)
			if (!s->nodes[j].down && state_of(s, v, j) != HC_GOSSIP_STATE_ALIVE)
				return false;
	}
	return true;
}

struct verdict {
	int subject;
	enum hc_gossip_node_state state;
};

static bool all_see(struct sim *s, const void *ctx)
{
	const struct verdict *v = ctx;

	for (int i = 0; i < s->n; i++)
		if (i != v->subject && !s->nodes[i].down && state_of(s, i, v->subject) != v->state)
			return false;
	return true;
}

static void join_done(void *arg, unsigned joined)
{
	((struct simnode *)arg)->joined = (int)joined;
}

static void join_all_to_first(struct sim *s)
{
	for (int i = 1; i < s->n; i++) {
		s->nodes[i].joined = -1;
		assert_int_equal(hc_ml_join(s->nodes[i].ml, &s->nodes[0].addr, 1, join_done,
					    &s->nodes[i]),
				 0);
	}
	run_ms(s, 50);
	for (int i = 1; i < s->n; i++)
		assert_int_equal(s->nodes[i].joined, 1);
}

static struct sim *converged_cluster(int n)
{
	struct sim *s = sim_new(n, NULL);
	int64_t t;

	join_all_to_first(s);
	t = run_until(s, all_alive, NULL, 10000);
	assert_true(t >= 0);
	return s;
}

/* ---- tests ---- */

static void test_join_converges(void **state)
{
	struct sim *s = sim_new(8, NULL);
	int64_t t;

	(void)state;
	join_all_to_first(s);
	t = run_until(s, all_alive, NULL, 10000);
	print_message("# 8 nodes converged %lld ms after joining one seed\n", (long long)t);
	assert_true(t >= 0 && t < 5000);
	for (int i = 0; i < s->n; i++) {
		assert_int_equal(hc_ml_alive_count(s->nodes[i].ml), 8);
		assert_int_equal(s->nodes[i].joins, 8); /* everyone, self included */
	}
	sim_free(s);
}

static void test_crashed_node_is_declared_dead(void **state)
{
	struct sim *s = converged_cluster(6);
	struct verdict dead = { 5, HC_GOSSIP_STATE_DEAD };
	int64_t t;

	(void)state;
	sim_crash(s, 5);
	t = run_until(s, all_see, &dead, 60000);
	print_message("# crash detected by all 5 peers after %lld ms\n", (long long)t);
	/* Bound: a probe round (<= 6 s for 5 peers at 1 s) plus the suspicion
	 * timeout (4 s minimum at n = 6, up to 6x without confirmations). */
	assert_true(t > 0 && t < 30000);
	for (int i = 0; i < 5; i++)
		assert_int_equal(s->nodes[i].leaves, 1);
	sim_free(s);
}

static void test_false_suspicion_is_refuted(void **state)
{
	struct sim *s = converged_cluster(5);
	uint32_t before = hc_ml_find(s->nodes[1].ml, "node2")->incarnation;
	struct hc_gossip_msg m = { .type = HC_GOSSIP_MSG_SUSPECT };
	struct hc_gossip_mp_writer w;

	(void)state;
	m.u.suspect.incarnation = before;
	m.u.suspect.node = hc_gossip_bytes_str("node2");
	m.u.suspect.from = hc_gossip_bytes_str("node0");
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_msg_encode(&m, &w), 0);
	hc_ml_on_packet(s->nodes[1].ml, &s->nodes[0].addr, w.buf, w.len);
	hc_gossip_mp_writer_fini(&w);
	assert_int_equal(state_of(s, 1, 2), HC_GOSSIP_STATE_SUSPECT);
	assert_true(run_until(s, all_alive, NULL, 5000) >= 0);
	for (int i = 0; i < 5; i++)
		assert_true(hc_ml_find(s->nodes[i].ml, "node2")->incarnation > before);
	run_ms(s, 30000); /* and nobody declares it dead later */
	for (int i = 0; i < 5; i++)
		assert_int_equal(s->nodes[i].leaves, 0);
	sim_free(s);
}

static void leave_done(void *arg)
{
	((struct simnode *)arg)->left = true;
}

static void test_graceful_leave_shows_as_left(void **state)
{
	struct sim *s = converged_cluster(5);
	struct verdict left = { 3, HC_GOSSIP_STATE_LEFT };

	(void)state;
	assert_int_equal(hc_ml_leave(s->nodes[3].ml, 5000, leave_done, &s->nodes[3]), 0);
	assert_true(run_until(s, all_see, &left, 5000) >= 0);
	assert_true(s->nodes[3].left);
	sim_crash(s, 3); /* the process exits after leaving */
	run_ms(s, 30000);
	for (int i = 0; i < 5; i++)
		if (i != 3)
			assert_int_equal(state_of(s, i, 3), HC_GOSSIP_STATE_LEFT);
	sim_free(s);
}

static void test_lossy_network_has_no_false_failures(void **state)
{
	struct sim *s = converged_cluster(6);

	(void)state;
	s->loss_pct = 15;
	run_ms(s, 120000);
	for (int i = 0; i < 6; i++)
		assert_int_equal(s->nodes[i].leaves, 0);
	s->loss_pct = 0;
	assert_true(run_until(s, all_alive, NULL, 10000) >= 0);
	sim_free(s);
}

static void test_restarted_node_refutes_its_death_and_rejoins(void **state)
{
	struct sim *s = converged_cluster(5);
	struct verdict dead = { 4, HC_GOSSIP_STATE_DEAD };

	(void)state;
	sim_crash(s, 4);
	assert_true(run_until(s, all_see, &dead, 60000) > 0);
	/* Same name and address, fresh process: incarnation starts at 1 again,
	 * below what the others remember, so it must refute its own death. */
	hc_ml_free(s->nodes[4].ml);
	node_start(s, 4, NULL);
	s->nodes[4].joined = -1;
	hc_ml_join(s->nodes[4].ml, &s->nodes[0].addr, 1, join_done, &s->nodes[4]);
	assert_true(run_until(s, all_alive, NULL, 10000) >= 0);
	assert_int_equal(s->nodes[4].joined, 1);
	assert_true(hc_ml_self(s->nodes[4].ml)->incarnation > 1);
	sim_free(s);
}

static void test_partitioned_node_fails_then_heals(void **state)
{
	struct sim *s = converged_cluster(4);
	struct verdict dead = { 3, HC_GOSSIP_STATE_DEAD };

	(void)state;
	for (int i = 0; i < 3; i++)
		s->blocked[i][3] = s->blocked[3][i] = true;
	assert_true(run_until(s, all_see, &dead, 60000) > 0);
	for (int i = 0; i < 3; i++)
		s->blocked[i][3] = s->blocked[3][i] = false;
	/* Anti-entropy (push/pull every 30 s) or node 3's own probes bring it
	 * back: it refutes the death it learns about. */
	hc_ml_join(s->nodes[3].ml, &s->nodes[0].addr, 1, join_done, &s->nodes[3]);
	assert_true(run_until(s, all_alive, NULL, 40000) >= 0);
	sim_free(s);
}

static void test_encrypted_cluster_and_wrong_key(void **state)
{
	static const uint8_t key[32] = "0123456789abcdef0123456789abcde";
	static const uint8_t other[32] = "fedcba9876543210fedcba987654321";
	struct hc_gossip_keyring *kr = hc_gossip_keyring_new(), *bad = hc_gossip_keyring_new();
	struct sim *s;

	(void)state;
	assert_int_equal(hc_gossip_keyring_install(kr, key, 32), 0);
	assert_int_equal(hc_gossip_keyring_install(bad, other, 32), 0);
	s = sim_new(4, kr);
	join_all_to_first(s);
	assert_true(run_until(s, all_alive, NULL, 10000) >= 0);

	/* A fifth node with the wrong key cannot join. */
	hc_ml_free(s->nodes[3].ml);
	node_start(s, 3, bad);
	s->nodes[3].joined = -1;
	hc_ml_join(s->nodes[3].ml, &s->nodes[0].addr, 1, join_done, &s->nodes[3]);
	run_ms(s, 100);
	assert_int_equal(s->nodes[3].joined, 0);
	sim_free(s);
	hc_gossip_keyring_free(kr);
	hc_gossip_keyring_free(bad);
}

static bool all_got_user_msg(struct sim *s, const void *ctx)
{
	(void)ctx;
	for (int i = 1; i < s->n; i++)
		if (!s->nodes[i].user_msgs)
			return false;
	return true;
}

static void test_delegate_broadcasts_reach_everyone(void **state)
{
	struct sim *s = converged_cluster(8);
	int64_t t;

	(void)state;
	assert_int_equal(hc_gossip_bcast_queue_push(s->nodes[0].user_queue, NULL,
						    (const uint8_t *)"hello", 5, NULL, NULL),
			 0);
	/* Epidemic spread: each node gossips it on after the first receipt. */
	t = run_until(s, all_got_user_msg, NULL, 5000);
	print_message("# user broadcast reached 7 peers in %lld ms\n", (long long)t);
	assert_true(t >= 0);
	sim_free(s);
}

static void test_meta_update_reaches_everyone(void **state)
{
	struct sim *s = converged_cluster(4);
	static const uint8_t meta[] = { 0xff, 0x81, 0xa4, 'r', 'o', 'l', 'e', 0xa3, 'w', 'e', 'b' };

	(void)state;
	assert_int_equal(hc_ml_update_meta(s->nodes[2].ml, meta, sizeof(meta)), 0);
	run_ms(s, 3000);
	for (int i = 0; i < 4; i++) {
		const struct hc_ml_node *n = hc_ml_find(s->nodes[i].ml, "node2");

		assert_int_equal(n->meta_len, sizeof(meta));
		assert_memory_equal(n->meta, meta, sizeof(meta));
		if (i != 2)
			assert_int_equal(s->nodes[i].updates, 1);
	}
	sim_free(s);
}

static void test_garbage_packets_are_dropped_and_counted(void **state)
{
	struct sim *s = converged_cluster(3);
	static const uint8_t junk[][8] = {
		{ 0xff, 1, 2, 3 }, { 0x04, 0xdf, 0xff, 0xff, 0xff, 0xff }, { 0x07, 0x05, 0x00 },
		{ 0x0c, 0, 0, 0, 0, 0x00 },
	};
	struct hc_ml_stats st;
	uint64_t dropped = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		hc_ml_on_packet(s->nodes[0].ml, &s->nodes[1].addr, junk[i], sizeof(junk[i]));
	hc_ml_stats(s->nodes[0].ml, &st);
	for (int r = 0; r < HC_GOSSIP_DROP_COUNT; r++)
		dropped += st.dropped[r];
	assert_int_equal(dropped, sizeof(junk) / sizeof(junk[0]));
	assert_true(run_until(s, all_alive, NULL, 100) >= 0);
	sim_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_join_converges),
		cmocka_unit_test(test_crashed_node_is_declared_dead),
		cmocka_unit_test(test_false_suspicion_is_refuted),
		cmocka_unit_test(test_graceful_leave_shows_as_left),
		cmocka_unit_test(test_lossy_network_has_no_false_failures),
		cmocka_unit_test(test_restarted_node_refutes_its_death_and_rejoins),
		cmocka_unit_test(test_partitioned_node_fails_then_heals),
		cmocka_unit_test(test_encrypted_cluster_and_wrong_key),
		cmocka_unit_test(test_delegate_broadcasts_reach_everyone),
		cmocka_unit_test(test_meta_update_reaches_everyone),
		cmocka_unit_test(test_garbage_packets_are_dropped_and_counted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
