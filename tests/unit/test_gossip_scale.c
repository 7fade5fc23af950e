/*
 * Gossip at scale: the hash index the engine finds members by (names and
 * addresses, shared keys, removal, growth), and a 100-node cluster of the
 * real engine on the simulated network: it forms, every node learns of a
 * join and of a failure, and at 0 % loss no member that stayed up is ever
 * declared failed. Behaviour only; the figures are tools/bench's.
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

#include "gossip/index_int.h"
#include "gossip/memberlist_int.h"
#include "gossipsim.h"
#include "log/log.h"
#include "simnet.h"

#define NODES 100

struct item {
	char name[16];
};

static struct hc_gossip_bytes item_key(const void *p)
{
	return hc_gossip_bytes_str(((const struct item *)p)->name);
}

static void *get(struct hc_gossip_index *ix, const char *name)
{
	return hc_gossip_index_get(ix, name, strlen(name));
}

/* Thousands of items through several growths; each is found, removed ones
 * are not, and their slots do not make the table grow without bound. */
static void test_index_add_get_remove(void **state)
{
	enum { N = 5000 };
	struct item *items = calloc(N, sizeof(*items));
	struct hc_gossip_index ix;

	(void)state;
	assert_non_null(items);
	hc_gossip_index_init(&ix, item_key);
	assert_null(get(&ix, "nobody"));
	hc_gossip_index_remove(&ix, &items[0]); /* empty: harmless */
	for (int i = 0; i < N; i++) {
		snprintf(items[i].name, sizeof(items[i].name), "node-%d", i);
		assert_int_equal(hc_gossip_index_add(&ix, &items[i]), 0);
	}
	for (int i = 0; i < N; i++)
		assert_ptr_equal(get(&ix, items[i].name), &items[i]);
	assert_null(get(&ix, "node-"));
	assert_null(get(&ix, "node-5000"));
	for (int i = 0; i < N; i += 2)
		hc_gossip_index_remove(&ix, &items[i]);
	for (int i = 0; i < N; i++)
		assert_ptr_equal(get(&ix, items[i].name), i % 2 ? &items[i] : NULL);
	/* churn: removing and adding back reuses room rather than growing */
	{
		size_t cap = ix.cap;

		for (int round = 0; round < 20; round++) {
			for (int i = 0; i < N; i += 2)
				assert_int_equal(hc_gossip_index_add(&ix, &items[i]), 0);
			for (int i = 0; i < N; i += 2)
				hc_gossip_index_remove(&ix, &items[i]);
		}
		assert_true(ix.cap <= 2 * cap);
		assert_int_equal(ix.live, N / 2);
	}
	hc_gossip_index_fini(&ix);
	free(items);
}

/* Two items with one key (two members at one address): each can be
 * removed by itself, and the other is still found. */
static void test_index_shared_keys(void **state)
{
	struct item a = { "same" }, b = { "same" };
	struct hc_gossip_index ix;
	void *first;

	(void)state;
	hc_gossip_index_init(&ix, item_key);
	assert_int_equal(hc_gossip_index_add(&ix, &a), 0);
	assert_int_equal(hc_gossip_index_add(&ix, &b), 0);
	first = get(&ix, "same");
	assert_true(first == &a || first == &b);
	hc_gossip_index_remove(&ix, &a);
	assert_ptr_equal(get(&ix, "same"), &b);
	hc_gossip_index_remove(&ix, &a); /* not in: nothing happens */
	assert_ptr_equal(get(&ix, "same"), &b);
	hc_gossip_index_remove(&ix, &b);
	assert_null(get(&ix, "same"));
	hc_gossip_index_fini(&ix);
	hc_gossip_index_fini(&ix); /* twice is fine */
}

/* A model of memberlist's TransmitLimitedQueue: a full sort before every
 * packet (fewest transmissions, then longer, then newer). */
struct ref_msg {
	int id;
	size_t len;
	unsigned transmits;
	bool gone;
};

static int ref_cmp(const void *pa, const void *pb)
{
	const struct ref_msg *a = pa, *b = pb;

	if (a->transmits != b->transmits)
		return a->transmits < b->transmits ? -1 : 1;
	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return b->id - a->id; /* ids grow with pushes: newer first */
}

/* The queue keeps its order incrementally (sorting only what was pushed
 * since, merging back what it sent); it must hand out exactly what a full
 * sort before every packet would, packet after packet. */
static void test_broadcast_queue_order_matches_full_sort(void **state)
{
	enum { STEPS = 400, MAXMSG = STEPS * 3, LIMIT = 3 };
	struct hc_gossip_bcast_queue *q = hc_gossip_bcast_queue_new();
	struct ref_msg *ref = calloc(MAXMSG, sizeof(*ref));
	int next = 0;
	uint64_t rng = 12345;

	(void)state;
	assert_non_null(q);
	assert_non_null(ref);
	for (int step = 0; step < STEPS; step++) {
		struct hc_gossip_bytes out[16];
		struct ref_msg *sorted = calloc(MAXMSG, sizeof(*sorted));
		size_t n = 0, nref = 0, used = 0, limit, k = 0;
		int pushes = (int)(hc_gossip_rand(&rng) % 4);

		assert_non_null(sorted);
		for (int p = 0; p < pushes && next < MAXMSG; p++, next++) {
			uint8_t msg[80];
			size_t len = 8 + hc_gossip_rand(&rng) % 60;

			memset(msg, 0, sizeof(msg));
			memcpy(msg, &next, sizeof(next));
			assert_int_equal(hc_gossip_bcast_queue_push(q, NULL, msg, len, NULL, NULL), 0);
			ref[next] = (struct ref_msg){ .id = next, .len = len };
		}
		limit = 60 + hc_gossip_rand(&rng) % 300;
		hc_gossip_bcast_queue_take(q, 2, limit, LIMIT, out, 16, &n);
		for (int i = 0; i < next; i++)
			if (!ref[i].gone)
				sorted[nref++] = ref[i];
		qsort(sorted, nref, sizeof(*sorted), ref_cmp);
		for (size_t i = 0; i < nref && k < 16; i++) {
			struct ref_msg *r = &ref[sorted[i].id];
			int id;

			if (used + 2 + r->len > limit)
				continue;
			used += 2 + r->len;
			assert_true(k < n);
			memcpy(&id, out[k].ptr, sizeof(id));
			assert_int_equal(id, r->id);
			assert_int_equal(out[k].len, r->len);
			k++;
			if (++r->transmits >= LIMIT)
				r->gone = true;
		}
		assert_int_equal(n, k);
		free(sorted);
	}
	hc_gossip_bcast_queue_free(q);
	free(ref);
}

/* 100 nodes of the real engine at memberlist's LAN timing: they form, a
 * join and a failure reach every node, and with no loss nobody that stayed
 * up is ever declared failed. The bounds are generous (minutes of
 * simulated time); the run is deterministic, so this checks behaviour. */
static void test_hundred_nodes_converge_without_false_failures(void **state)
{
	struct hc_gossipsim *s = hc_gossipsim_new(NODES, &hc_gossipsim_lan, 7);
	struct hc_simnet *net;
	struct hc_gossipsim_false f;
	int joiner = NODES - 1, victim = NODES / 2;

	(void)state;
	assert_non_null(s);
	net = hc_gossipsim_net(s);
	assert_true(hc_gossipsim_form(s, NODES - 1, 20, 120000) > 0);
	hc_gossipsim_false_reset(s);

	/* join */
	assert_int_equal(hc_gossipsim_start(s, joiner), 0);
	hc_gossipsim_watch(s, joiner);
	assert_int_equal(hc_gossipsim_join(s, joiner, 0), 0);
	assert_true(hc_gossipsim_run_until_joined(s, 30000) > 0);
	assert_true(hc_gossipsim_all_see(s, NODES));
	for (int i = 0; i < NODES - 1; i++)
		assert_true(hc_gossipsim_join_ms(s, i) >= 0);

	/* failure: every other node marks the victim failed */
	hc_gossipsim_watch(s, victim);
	hc_simnet_set_down(net, victim, true);
	assert_true(hc_gossipsim_run_until_failed(s, 120000) > 0);
	for (int i = 0; i < NODES; i++)
		if (i != victim)
			assert_true(hc_gossipsim_fail_ms(s, i) >= 0);

	/* a further minute with no loss: still no wrong verdicts */
	hc_simnet_run_ms(net, 60000);
	hc_gossipsim_false_get(s, &f);
	assert_int_equal(f.events, 0);
	assert_int_equal(f.members, 0);
	assert_true(hc_gossipsim_all_see(s, NODES - 1));
	hc_gossipsim_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_add_get_remove),
		cmocka_unit_test(test_index_shared_keys),
		cmocka_unit_test(test_broadcast_queue_order_matches_full_sort),
		cmocka_unit_test(test_hundred_nodes_converge_without_false_failures),
	};

	hc_log_set_level(getenv("HC_TEST_VERBOSE") ? (enum hc_log_level)atoi(getenv("HC_TEST_VERBOSE")) : HC_LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
