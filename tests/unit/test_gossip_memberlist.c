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

#include "gossip/keyring_int.h"
#include "gossip/memberlist_int.h"
#include "loop/loop.h"
#include "simnet.h"

#define MAX_SIM 12

struct sim;

struct simnode {
	struct sim *sim;
	int idx;
	struct hc_ml *ml;
	struct hc_gossip_receiver recv;
	char name[16];
	unsigned joins, leaves, updates, user_msgs;
	struct hc_gossip_bcast_queue *user_queue; /* what this node gossips as "serf" */
	int joined; /* result of the last hc_ml_join, -1 while pending */
	bool left;
};

struct sim {
	struct hc_simnet *net;
	struct simnode nodes[MAX_SIM];
	int n;
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

	/* 8 transmissions each: with 4 an 8-node epidemic misses a node a few
	 * percent of the time (gossip is probabilistic; push/pull repairs it). */
	hc_gossip_bcast_queue_take(sn->user_queue, overhead, limit, 8, out, max, n);
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
	cfg.addr = *hc_simnet_addr(s->net, i);
	cfg.meta = (const uint8_t *)"\xff\x80";
	cfg.meta_len = 2;
	cfg.seed = 1000 + (uint64_t)i;
	cfg.keyring = kr;
	hc_simnet_set_down(s->net, i, false);
	if (!sn->user_queue)
		sn->user_queue = hc_gossip_bcast_queue_new();
	sn->ml = hc_ml_new(hc_simnet_loop(s->net), &cfg, &hc_simnet_ops, hc_simnet_ctx(s->net, i),
			   &d);
	assert_non_null(sn->ml);
	sn->recv = (struct hc_gossip_receiver){ hc_ml_on_packet, hc_ml_on_stream, sn->ml };
	hc_simnet_attach(s->net, i, &sn->recv);
}

static struct sim *sim_new(int n, const struct hc_gossip_keyring *kr)
{
	struct sim *s = calloc(1, sizeof(*s));

	s->net = hc_simnet_new(n, 42);
	s->n = n;
	for (int i = 0; i < n; i++) {
		struct simnode *sn = &s->nodes[i];

		sn->sim = s;
		sn->idx = i;
		snprintf(sn->name, sizeof(sn->name), "node%d", i);
		node_start(s, i, kr);
	}
	return s;
}

static void sim_crash(struct sim *s, int i)
{
	hc_simnet_set_down(s->net, i, true);
}

static bool is_down(struct sim *s, int i)
{
	return hc_simnet_is_down(s->net, i);
}

static void sim_free(struct sim *s)
{
	/* Engines first: streams still in flight then complete as cancelled
	 * when the network (and its loop) goes. */
	for (int i = 0; i < s->n; i++) {
		hc_ml_free(s->nodes[i].ml);
		hc_gossip_bcast_queue_free(s->nodes[i].user_queue);
	}
	hc_simnet_free(s->net);
	free(s);
}

static void run_ms(struct sim *s, uint64_t ms)
{
	hc_simnet_run_ms(s->net, ms);
}

static struct sim *pred_sim;
static const void *pred_ctx;
static bool (*pred_fn)(struct sim *, const void *);

static bool pred_trampoline(const void *ctx)
{
	(void)ctx;
	return pred_fn(pred_sim, pred_ctx);
}

static int64_t run_until(struct sim *s, bool (*pred)(struct sim *, const void *),
			 const void *ctx, uint64_t limit_ms)
{
	pred_sim = s;
	pred_ctx = ctx;
	pred_fn = pred;
	return hc_simnet_run_until(s->net, pred_trampoline, NULL, limit_ms);
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
		if (is_down(s, v))
			continue;
		for (int j = 0; j < s->n; j++)
			if (!is_down(s, j) && state_of(s, v, j) != HC_GOSSIP_STATE_ALIVE)
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
		if (i != v->subject && !is_down(s, i) && state_of(s, i, v->subject) != v->state)
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
		assert_int_equal(hc_ml_join(s->nodes[i].ml, hc_simnet_addr(s->net, 0), 1, join_done,
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
	hc_ml_on_packet(s->nodes[1].ml, hc_simnet_addr(s->net, 0), w.buf, w.len);
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
	hc_simnet_set_loss(s->net, 15);
	run_ms(s, 120000);
	for (int i = 0; i < 6; i++)
		assert_int_equal(s->nodes[i].leaves, 0);
	hc_simnet_set_loss(s->net, 0);
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
	hc_ml_join(s->nodes[4].ml, hc_simnet_addr(s->net, 0), 1, join_done, &s->nodes[4]);
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
	for (int i = 0; i < 3; i++) {
		assert_int_equal(hc_simnet_block(s->net, i, 3, true), 0);
		assert_int_equal(hc_simnet_block(s->net, 3, i, true), 0);
	}
	assert_true(run_until(s, all_see, &dead, 60000) > 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(hc_simnet_block(s->net, i, 3, false), 0);
		assert_int_equal(hc_simnet_block(s->net, 3, i, false), 0);
	}
	/* Anti-entropy (push/pull every 30 s) or node 3's own probes bring it
	 * back: it refutes the death it learns about. */
	hc_ml_join(s->nodes[3].ml, hc_simnet_addr(s->net, 0), 1, join_done, &s->nodes[3]);
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
	hc_ml_join(s->nodes[3].ml, hc_simnet_addr(s->net, 0), 1, join_done, &s->nodes[3]);
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
		hc_ml_on_packet(s->nodes[0].ml, hc_simnet_addr(s->net, 1), junk[i], sizeof(junk[i]));
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
