/*
 * The serf layer (gossip.h) as whole clusters on the simulated network:
 * membership with tags, user events once each, queries with filters, acks,
 * relays and responses, failure, leave, reaping, tag updates, key rotation.
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

#include "gossip/gossip.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "loop/loop.h"
#include "pushpull.h"
#include "simnet.h"

#define MAX_NODES 8

struct node {
	struct hc_gossip *g;
	struct hc_gossip_receiver recv;
	char name[16];
	unsigned user_events, joins, leaves, fails, updates, reaps, queries;
	char last_event[64];
	char seen[8][64]; /* the first user events, "name:payload" */
	bool respond; /* answer queries with our name */
	bool left;
	int joined;
};

struct cluster {
	struct hc_simnet *net;
	struct node nodes[MAX_NODES];
	int n;
	const char *const *keys; /* base64 */
	size_t nkeys;
	uint32_t coalesce_ms;
	hc_gossip_event_version_fn *event_version;
};


static void on_event(const struct hc_gossip_event *ev, void *arg)
{
	struct node *nd = arg;

	switch (ev->type) {
	case HC_GOSSIP_EV_USER:
		nd->user_events++;
		snprintf(nd->last_event, sizeof(nd->last_event), "%s:%.*s", ev->name, (int)ev->len,
			 (const char *)ev->payload);
		if (nd->user_events <= 8)
			snprintf(nd->seen[nd->user_events - 1], sizeof(nd->seen[0]), "%s",
				 nd->last_event);
		break;
	case HC_GOSSIP_EV_MEMBER_JOIN:
		nd->joins++;
		break;
	case HC_GOSSIP_EV_MEMBER_LEAVE:
		nd->leaves++;
		break;
	case HC_GOSSIP_EV_MEMBER_FAILED:
		nd->fails++;
		break;
	case HC_GOSSIP_EV_MEMBER_UPDATE:
		nd->updates++;
		break;
	case HC_GOSSIP_EV_MEMBER_REAP:
		nd->reaps++;
		break;
	case HC_GOSSIP_EV_QUERY:
		nd->queries++;
		if (nd->respond)
			assert_int_equal(hc_gossip_respond(nd->g, ev->query_id,
							   (const uint8_t *)nd->name,
							   strlen(nd->name)),
					 0);
		break;
	}
}

static void start_node(struct cluster *c, int i, const char *role)
{
	struct node *nd = &c->nodes[i];
	struct hc_gossip_kv tags[] = { { "role", role } };
	struct hc_gossip_config cfg = {
		.name = nd->name,
		.tags = tags,
		.ntags = 1,
		.keys = c->keys,
		.nkeys = c->nkeys,
		/* LAN-like timing so simulated tests stay short */
		.gossip_interval_ms = 200,
		.probe_interval_ms = 1000,
		.suspicion_mult = 4,
		.gossip_nodes = 3,
		.reconnect_timeout_ms = 20000,
		.reap_interval_ms = 1000,
		.coalesce_ms = c->coalesce_ms,
		.on_event = on_event,
		.event_arg = nd,
		.event_version = c->event_version,
		.seed = 77 + (uint64_t)i,
	};
	struct hc_err err;

	hc_simnet_set_down(c->net, i, false);
	nd->g = hc_gossip_new_with_transport(hc_simnet_loop(c->net), &cfg,
					     hc_simnet_addr(c->net, i), &hc_simnet_ops,
					     hc_simnet_ctx(c->net, i), &err);
	assert_non_null(nd->g);
	nd->recv = (struct hc_gossip_receiver){ hc_ml_on_packet, hc_ml_on_stream,
						hc_gossip_memberlist(nd->g) };
	hc_simnet_attach(c->net, i, &nd->recv);
}

static void join_done(void *arg, unsigned joined)
{
	((struct node *)arg)->joined = (int)joined;
}

static void join_first(struct cluster *c, int i)
{
	const char *seed = "10.0.0.1:7946";

	c->nodes[i].joined = -1;
	assert_int_equal(hc_gossip_join(c->nodes[i].g, &seed, 1, 1, false, join_done,
					&c->nodes[i]),
			 0);
}

static struct cluster *cluster_new_with(int n, const char *const *keys, size_t nkeys,
					hc_gossip_event_version_fn *event_version)
{
	struct cluster *c = calloc(1, sizeof(*c));

	c->net = hc_simnet_new(n, 99);
	c->n = n;
	c->keys = keys;
	c->nkeys = nkeys;
	c->event_version = event_version;
	for (int i = 0; i < n; i++) {
		snprintf(c->nodes[i].name, sizeof(c->nodes[i].name), "n%d", i);
		start_node(c, i, i % 2 ? "db" : "web");
	}
	return c;
}

static struct cluster *cluster_new(int n, const char *const *keys, size_t nkeys)
{
	return cluster_new_with(n, keys, nkeys, NULL);
}

static void cluster_free(struct cluster *c)
{
	for (int i = 0; i < c->n; i++)
		hc_gossip_free(c->nodes[i].g);
	hc_simnet_free(c->net);
	free(c);
}

static enum hc_gossip_status status_of(struct cluster *c, int viewer, const char *name)
{
	size_t n;
	struct hc_gossip_member *ms = hc_gossip_members(c->nodes[viewer].g, &n);
	enum hc_gossip_status st = HC_GOSSIP_NONE;

	for (size_t i = 0; i < n; i++)
		if (strcmp(ms[i].name, name) == 0)
			st = ms[i].status;
	hc_gossip_members_free(ms, n);
	return st;
}

static bool all_alive(const void *ctx)
{
	const struct cluster *c = ctx;

	for (int v = 0; v < c->n; v++) {
		if (hc_simnet_is_down(c->net, v))
			continue;
		for (int j = 0; j < c->n; j++)
			if (!hc_simnet_is_down(c->net, j) &&
			    status_of((struct cluster *)c, v, c->nodes[j].name) != HC_GOSSIP_ALIVE)
				return false;
	}
	return true;
}

static struct cluster *joined_cluster(int n)
{
	struct cluster *c = cluster_new(n, NULL, 0);

	for (int i = 1; i < n; i++)
		join_first(c, i);
	assert_true(hc_simnet_run_until(c->net, all_alive, c, 20000) >= 0);
	return c;
}

/* ---- tests ---- */

static void test_members_and_tags(void **state)
{
	struct cluster *c = joined_cluster(5);
	struct hc_gossip_member *ms;
	size_t n;

	(void)state;
	ms = hc_gossip_members(c->nodes[4].g, &n);
	assert_int_equal(n, 5);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(ms[i].name, c->nodes[i].name); /* sorted by name */
		assert_int_equal(ms[i].status, HC_GOSSIP_ALIVE);
		assert_int_equal(ms[i].ntags, 1);
		assert_string_equal(ms[i].tags[0].key, "role");
		assert_string_equal(ms[i].tags[0].value, i % 2 ? "db" : "web");
		assert_int_equal(ms[i].protocol_max, 5);
		assert_int_equal(ms[i].delegate_cur, 5);
	}
	assert_string_equal(ms[0].addr, "10.0.0.1:7946");
	hc_gossip_members_free(ms, n);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(c->nodes[i].joins, 5);
		assert_true(c->nodes[i].joined == -0 || c->nodes[i].joined == 1 || i == 0);
	}
	cluster_free(c);
}

static bool all_got_event(const void *ctx)
{
	const struct cluster *c = ctx;

	for (int i = 0; i < c->n; i++)
		if (c->nodes[i].user_events == 0)
			return false;
	return true;
}

static void test_user_event_reaches_everyone_once(void **state)
{
	struct cluster *c = joined_cluster(6);

	(void)state;
	assert_int_equal(hc_gossip_user_event(c->nodes[2].g, "deploy", (const uint8_t *)"v1", 2,
					      false),
			 0);
	assert_true(hc_simnet_run_until(c->net, all_got_event, c, 5000) >= 0);
	hc_simnet_run_ms(c->net, 10000); /* every retransmission has happened */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(c->nodes[i].user_events, 1);
		assert_string_equal(c->nodes[i].last_event, "deploy:v1");
	}
	cluster_free(c);
}

static void test_coalescing_keeps_the_newest(void **state)
{
	struct cluster *c = cluster_new(3, NULL, 0);

	(void)state;
	c->coalesce_ms = 1500;
	for (int i = 0; i < 3; i++) { /* restart with coalescing on */
		hc_gossip_free(c->nodes[i].g);
		c->nodes[i].user_events = c->nodes[i].joins = 0;
		start_node(c, i, i % 2 ? "db" : "web");
	}
	for (int i = 1; i < 3; i++)
		join_first(c, i);
	hc_simnet_run_ms(c->net, 3000);
	/* Member joins were coalesced too: one per member, self included. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(c->nodes[i].joins, 3);
	for (int k = 0; k < 5; k++) {
		char payload[8];

		snprintf(payload, sizeof(payload), "v%d", k);
		assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "deploy",
						      (const uint8_t *)payload, 2, true),
				 0);
		hc_simnet_run_ms(c->net, 100);
	}
	assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "audit", (const uint8_t *)"a", 1,
					      false),
			 0);
	hc_simnet_run_ms(c->net, 5000);
	for (int i = 0; i < 3; i++) {
		/* deploy once (the newest) + audit once (not coalescable) */
		assert_int_equal(c->nodes[i].user_events, 2);
	}
	cluster_free(c);
}

static void test_user_event_size_limit(void **state)
{
	struct cluster *c = cluster_new(1, NULL, 0);
	uint8_t big[2048] = { 0 };

	(void)state;
	assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "x", big, sizeof(big), false),
			 -EMSGSIZE);
	assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "x", big, 1000, false), 0);
	cluster_free(c);
}

static void test_old_events_reach_a_later_joiner(void **state)
{
	struct cluster *c = cluster_new(3, NULL, 0);

	(void)state;
	join_first(c, 1);
	assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "early", (const uint8_t *)"e", 1,
					      false),
			 0);
	hc_simnet_run_ms(c->net, 10000);
	/* Node 2 joins after the gossip died down: push/pull carries it. */
	join_first(c, 2);
	hc_simnet_run_ms(c->net, 1000);
	assert_int_equal(c->nodes[2].user_events, 1);
	assert_string_equal(c->nodes[2].last_event, "early:e");
	cluster_free(c);
}

/*
 * Events named "d" stand for state digests: payload "OWNER:VERSION", of
 * which only the newest per owner matters; "?OWNER:VERSION" is one not
 * vouched for (as a digest this node has not verified), always sent.
 */
static bool test_event_version(const char *name, const uint8_t *payload, size_t len,
			       const uint8_t **key, size_t *key_len, uint64_t *version, void *arg)
{
	const uint8_t *colon = memchr(payload, ':', len);

	(void)arg;
	if (strcmp(name, "d") != 0 || !colon || payload[0] == '?')
		return false;
	*key = payload;
	*key_len = (size_t)(colon - payload);
	/* the payload is not NUL-terminated: parse only its own bytes */
	*version = 0;
	for (const uint8_t *p = colon + 1; p < payload + len && *p >= '0' && *p <= '9'; p++)
		*version = *version * 10 + (uint64_t)(*p - '0');
	return true;
}

static bool seen(const struct node *nd, const char *ev)
{
	for (unsigned i = 0; i < nd->user_events && i < 8; i++)
		if (strcmp(nd->seen[i], ev) == 0)
			return true;
	return false;
}

/* The events in g's push/pull, "name:payload" each, as a peer decodes them. */
static size_t push_pull_events(struct hc_gossip *g, char out[][32], size_t max)
{
	struct hc_test_push_pull t;
	size_t n = 0;

	assert_int_equal(hc_test_push_pull(g, &t), 0);
	assert_int_equal(t.pp.nslots, 512); /* serf's EventBuffer, nil where left out */
	for (size_t i = 0; i < t.pp.nslots; i++) {
		const struct hc_gossip_serf_event_slot *sl = &t.pp.slots[i];

		for (size_t k = 0; sl->used && k < sl->nevents; k++, n++) {
			assert_true(n < max);
			snprintf(out[n], 32, "%.*s:%.*s", (int)sl->events[k].name.len,
				 (const char *)sl->events[k].name.ptr,
				 (int)sl->events[k].payload.len,
				 (const char *)sl->events[k].payload.ptr);
		}
	}
	hc_test_push_pull_fini(&t);
	return n;
}

static bool listed(char evs[][32], size_t n, const char *ev)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(evs[i], ev) == 0)
			return true;
	return false;
}

/* Our push/pull leaves out a digest its owner's newer one supersedes, and
 * keeps the newest, equal versions, unvouched ones and every other event;
 * a node that missed them all still gets the newest from it. */
static void test_push_pull_leaves_out_superseded(void **state)
{
	static const char *const sent[][2] = {
		{ "d", "a:1" }, { "d", "b:1" }, { "x", "keep" }, { "d", "a:2" },
		{ "d", "b:1 " /* b again, same version */ }, { "d", "?a:9" }, { "x", "a:0" },
	};
	struct cluster *c = cluster_new_with(3, NULL, 0, test_event_version);
	char evs[16][32];
	size_t n;

	(void)state;
	join_first(c, 1);
	hc_simnet_run_ms(c->net, 2000);
	for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
		assert_int_equal(hc_gossip_user_event(c->nodes[0].g, sent[i][0],
						      (const uint8_t *)sent[i][1],
						      strlen(sent[i][1]), false),
				 0);
	n = push_pull_events(c->nodes[0].g, evs, 16);
	assert_int_equal(n, 6);
	assert_false(listed(evs, n, "d:a:1"));
	assert_true(listed(evs, n, "d:a:2"));
	assert_true(listed(evs, n, "d:b:1"));
	assert_true(listed(evs, n, "d:b:1 "));
	assert_true(listed(evs, n, "d:?a:9"));
	assert_true(listed(evs, n, "x:keep"));
	assert_true(listed(evs, n, "x:a:0"));
	/* Node 2 joins after the gossip died down: push/pull carries them. */
	hc_simnet_run_ms(c->net, 10000);
	join_first(c, 2);
	hc_simnet_run_ms(c->net, 1000);
	assert_int_equal(c->nodes[2].user_events, 6);
	assert_true(seen(&c->nodes[2], "d:a:2"));
	assert_false(seen(&c->nodes[2], "d:a:1"));
	assert_true(seen(&c->nodes[2], "x:keep"));
	cluster_free(c);
}

/* Without the hook (serf's way) the push/pull is the whole ring. */
static void test_push_pull_whole_ring_without_hook(void **state)
{
	struct cluster *c = cluster_new(1, NULL, 0);
	char evs[8][32];

	(void)state;
	assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "d", (const uint8_t *)"a:1", 3, false),
			 0);
	assert_int_equal(hc_gossip_user_event(c->nodes[0].g, "d", (const uint8_t *)"a:2", 3, false),
			 0);
	assert_int_equal(push_pull_events(c->nodes[0].g, evs, 8), 2);
	cluster_free(c);
}

struct collected {
	unsigned acks, responses, done;
	char from[MAX_NODES][16];
};

static void on_response(void *arg, const char *from, const uint8_t *payload, size_t len,
			bool is_ack)
{
	struct collected *col = arg;

	if (is_ack) {
		col->acks++;
		return;
	}
	assert_true(col->responses < MAX_NODES);
	assert_int_equal(len, strlen(from)); /* nodes answer with their name */
	assert_memory_equal(payload, from, len);
	snprintf(col->from[col->responses++], 16, "%s", from);
}

static void on_done(void *arg)
{
	((struct collected *)arg)->done++;
}

static void test_query_acks_and_responses(void **state)
{
	struct cluster *c = joined_cluster(5);
	struct hc_gossip_query_params p = { .ack = true, .timeout_ms = 3000 };
	struct collected col = { 0 };

	(void)state;
	for (int i = 0; i < 5; i++)
		c->nodes[i].respond = true;
	assert_int_equal(hc_gossip_query(c->nodes[1].g, "who", (const uint8_t *)"?", 1, &p,
					 on_response, on_done, &col),
			 0);
	hc_simnet_run_ms(c->net, 4000);
	assert_int_equal(col.done, 1);
	assert_int_equal(col.acks, 5); /* the asker answers itself too */
	assert_int_equal(col.responses, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(c->nodes[i].queries, 1);
	cluster_free(c);
}

static void count_answer(void *arg, const char *from, const uint8_t *payload, size_t len,
			 bool is_ack)
{
	(void)from, (void)payload, (void)len;
	((unsigned *)arg)[is_ack]++;
}

/* Each name is reported once, acks and responses apart, however many
 * answer and however long their names (past the query's inline room). */
static void test_query_answers_once_per_name(void **state)
{
	struct cluster *c = joined_cluster(2);
	struct hc_gossip_query_params p = { .ack = true, .timeout_ms = 3000,
					    .nodes = (const char *[]){ "nobody" }, .nnodes = 1 };
	unsigned counts[2] = { 0 }; /* responses, acks */
	struct hc_gossip *g = c->nodes[0].g;
	char from[64];

	(void)state;
	assert_int_equal(hc_gossip_query(g, "who", (const uint8_t *)"?", 1, &p, count_answer, NULL,
					 counts),
			 0);
	assert_non_null(g->out_queries);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 40; i++) {
			struct hc_gossip_serf_query_response r = {
				.ltime = g->out_queries->ltime, .id = g->out_queries->id,
				.payload = hc_gossip_bytes_str("x"),
			};

			snprintf(from, sizeof(from), "a-responder-with-a-long-name-%02d", i);
			r.from = hc_gossip_bytes_str(from);
			hc_serf_handle_query_response(g, &r);
			r.flags = HC_GOSSIP_SERF_QUERY_ACK;
			hc_serf_handle_query_response(g, &r);
		}
	}
	assert_int_equal(counts[0], 40);
	assert_int_equal(counts[1], 40);
	assert_true(g->out_queries->responded.buf != g->out_queries->responded.inline_buf);
	cluster_free(c);
}

/* A query to all that names a member in params.direct reaches that one
 * at once (a packet straight to it), before any gossip round could carry
 * it, and its ack comes back as soon; the others get it by gossip. */
static void test_query_direct_copy(void **state)
{
	struct cluster *c = joined_cluster(5);
	const char *owner[] = { "n3" };
	struct hc_gossip_query_params p = { .ack = true, .timeout_ms = 3000, .direct = owner,
					    .ndirect = 1 };
	struct collected col = { 0 };

	(void)state;
	for (int i = 0; i < 5; i++)
		c->nodes[i].respond = true;
	assert_int_equal(hc_gossip_query(c->nodes[0].g, "who", (const uint8_t *)"?", 1, &p,
					 on_response, on_done, &col),
			 0);
	hc_simnet_run_ms(c->net, 5); /* a gossip round is 200 ms */
	assert_int_equal(c->nodes[3].queries, 1);
	assert_int_equal(c->nodes[1].queries + c->nodes[2].queries + c->nodes[4].queries, 0);
	assert_int_equal(col.acks, 2); /* the asker's own and n3's */
	hc_simnet_run_ms(c->net, 4000);
	assert_int_equal(col.responses, 5); /* each once: n3 knows the id */
	for (int i = 0; i < 5; i++)
		assert_int_equal(c->nodes[i].queries, 1);
	cluster_free(c);
}

static void test_query_filters(void **state)
{
	struct cluster *c = joined_cluster(6);
	const char *only[] = { "n3", "n5" };
	struct hc_gossip_kv db[] = { { "role", "^d.$" } };
	struct hc_gossip_query_params by_node = { .nodes = only, .nnodes = 2, .timeout_ms = 2000 };
	struct hc_gossip_query_params by_tag = { .tags = db, .ntags = 1, .timeout_ms = 2000,
						 .relay_factor = 2 };
	struct collected a = { 0 }, b = { 0 };

	(void)state;
	for (int i = 0; i < 6; i++)
		c->nodes[i].respond = true;
	assert_int_equal(hc_gossip_query(c->nodes[0].g, "q1", NULL, 0, &by_node, on_response,
					 on_done, &a),
			 0);
	assert_int_equal(hc_gossip_query(c->nodes[0].g, "q2", NULL, 0, &by_tag, on_response,
					 on_done, &b),
			 0);
	hc_simnet_run_ms(c->net, 3000);
	assert_int_equal(a.responses, 2);
	assert_int_equal(b.responses, 3); /* n1, n3, n5 are role=db; relays deduplicated */
	assert_int_equal(a.done + b.done, 2);
	for (unsigned i = 0; i < b.responses; i++)
		assert_true(b.from[i][1] == '1' || b.from[i][1] == '3' || b.from[i][1] == '5');
	cluster_free(c);
}

/* Tag filters from the network: a pattern a backtracking matcher would
 * take exponential time on is answered (by no node) at once; one too long
 * or invalid matches no node and is counted as a bad filter. */
static void test_hostile_tag_filters(void **state)
{
	struct cluster *c = joined_cluster(3);
	char longer[300];
	struct hc_gossip_kv slow[] = { { "role", "^(d|d|b*)*(b*)*(x+x+)+y$" } };
	struct hc_gossip_kv big[] = { { "role", longer } };
	struct hc_gossip_kv bad[] = { { "role", "(d" } };
	struct hc_gossip_query_params p = { .ntags = 1, .timeout_ms = 2000 };
	struct collected got[3] = { 0 };
	struct hc_serf_stats st;
	uint64_t refused = 0;

	(void)state;
	memset(longer, 'd', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	for (int i = 0; i < 3; i++)
		c->nodes[i].respond = true;
	p.tags = slow;
	assert_int_equal(hc_gossip_query(c->nodes[0].g, "q1", NULL, 0, &p, on_response, on_done,
					 &got[0]), 0);
	p.tags = big;
	assert_int_equal(hc_gossip_query(c->nodes[0].g, "q2", NULL, 0, &p, on_response, on_done,
					 &got[1]), 0);
	p.tags = bad;
	assert_int_equal(hc_gossip_query(c->nodes[0].g, "q3", NULL, 0, &p, on_response, on_done,
					 &got[2]), 0);
	hc_simnet_run_ms(c->net, 3000);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(got[i].responses, 0);
		assert_int_equal(got[i].done, 1);
		hc_gossip_stats(c->nodes[i].g, &st);
		refused += st.dropped[HC_GOSSIP_DROP_BAD_FILTER];
	}
	assert_int_equal(refused, 2 * 3); /* q2 and q3, on every node */
	cluster_free(c);
}

static void test_respond_rules(void **state)
{
	struct cluster *c = joined_cluster(2);

	(void)state;
	assert_int_equal(hc_gossip_respond(c->nodes[0].g, 12345, NULL, 0), -ENOENT);
	cluster_free(c);
}

static bool all_see_n3_failed(const void *ctx)
{
	struct cluster *c = (struct cluster *)ctx;

	for (int i = 0; i < 3; i++)
		if (status_of(c, i, "n3") != HC_GOSSIP_FAILED)
			return false;
	return true;
}

static void test_failure_then_reap(void **state)
{
	struct cluster *c = joined_cluster(4);

	(void)state;
	hc_simnet_set_down(c->net, 3, true);
	assert_true(hc_simnet_run_until(c->net, all_see_n3_failed, c, 30000) >= 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c->nodes[i].fails, 1);
		assert_int_equal(c->nodes[i].leaves, 0);
	}
	hc_simnet_run_ms(c->net, 25000); /* reconnect timeout 20 s */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c->nodes[i].reaps, 1);
		assert_int_equal(status_of(c, i, "n3"), HC_GOSSIP_NONE);
	}
	cluster_free(c);
}

static void on_left(void *arg)
{
	((struct node *)arg)->left = true;
}

static void test_graceful_leave_is_left_not_failed(void **state)
{
	struct cluster *c = joined_cluster(4);

	(void)state;
	assert_int_equal(hc_gossip_leave(c->nodes[2].g, on_left, &c->nodes[2]), 0);
	hc_simnet_run_ms(c->net, 8000);
	assert_true(c->nodes[2].left);
	hc_simnet_set_down(c->net, 2, true);
	hc_simnet_run_ms(c->net, 20000);
	for (int i = 0; i < 4; i++) {
		if (i == 2)
			continue;
		assert_int_equal(status_of(c, i, "n2"), HC_GOSSIP_LEFT);
		assert_int_equal(c->nodes[i].leaves, 1);
		assert_int_equal(c->nodes[i].fails, 0);
	}
	cluster_free(c);
}

static void test_tag_update(void **state)
{
	struct cluster *c = joined_cluster(3);
	struct hc_gossip_kv tags[] = { { "role", "cache" }, { "zone", "a" } };
	struct hc_gossip_member *ms;
	size_t n;

	(void)state;
	assert_int_equal(hc_gossip_set_tags(c->nodes[0].g, tags, 2), 0);
	hc_simnet_run_ms(c->net, 3000);
	ms = hc_gossip_members(c->nodes[2].g, &n);
	assert_string_equal(ms[0].name, "n0");
	assert_int_equal(ms[0].ntags, 2);
	hc_gossip_members_free(ms, n);
	assert_int_equal(c->nodes[1].updates, 1);
	assert_int_equal(c->nodes[2].updates, 1);
	cluster_free(c);
}

struct key_result {
	unsigned ok, failed, calls;
};

static void key_done(void *arg, unsigned ok, unsigned failed)
{
	struct key_result *r = arg;

	r->ok = ok;
	r->failed = failed;
	r->calls++;
}

static void test_key_rotation_keeps_cluster(void **state)
{
	static const uint8_t keys[2][32] = { "0123456789abcdef0123456789abcde",
					     "fedcba9876543210fedcba987654321" };
	/* base64 of keys[0] */
	static const char *const b64[] = { "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZQA=" };
	struct cluster *c = cluster_new(4, b64, 1);
	struct key_result r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	(void)state;
	for (int i = 1; i < 4; i++)
		join_first(c, i);
	assert_true(hc_simnet_run_until(c->net, all_alive, c, 20000) >= 0);
	assert_int_equal(hc_gossip_key_op(c->nodes[0].g, HC_GOSSIP_KEY_INSTALL, keys[1], 32,
					  key_done, &r1),
			 0);
	hc_simnet_run_ms(c->net, 8000);
	assert_int_equal(r1.ok, 4);
	assert_int_equal(hc_gossip_key_op(c->nodes[0].g, HC_GOSSIP_KEY_USE, keys[1], 32, key_done,
					  &r2),
			 0);
	hc_simnet_run_ms(c->net, 8000);
	assert_int_equal(r2.ok, 4);
	assert_int_equal(hc_gossip_key_op(c->nodes[0].g, HC_GOSSIP_KEY_REMOVE, keys[0], 32,
					  key_done, &r3),
			 0);
	hc_simnet_run_ms(c->net, 8000);
	assert_int_equal(r3.ok, 4);
	assert_int_equal(r1.calls + r2.calls + r3.calls, 3);
	hc_simnet_run_ms(c->net, 30000);
	assert_true(all_alive(c));
	for (int i = 0; i < 4; i++)
		assert_int_equal(c->nodes[i].fails, 0);
	cluster_free(c);
}

static void test_forged_serf_messages_are_dropped(void **state)
{
	struct cluster *c = joined_cluster(2);
	static const uint8_t junk[][6] = {
		{ 0x08, 0x03, 0xde, 0xad }, /* user event, bad msgpack */
		{ 0x08, 0x04, 0x81, 0xc1 }, /* query, reserved byte */
		{ 0x08, 0x2a },             /* unknown serf type */
		{ 0x08, 0x09, 0xdf, 0xff, 0xff, 0xff }, /* relay with a huge map */
	};
	struct hc_serf_stats st;
	uint64_t dropped = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		hc_ml_on_packet(hc_gossip_memberlist(c->nodes[0].g), hc_simnet_addr(c->net, 1),
				junk[i], sizeof(junk[i]));
	hc_gossip_stats(c->nodes[0].g, &st);
	for (int r = 0; r < HC_GOSSIP_DROP_COUNT; r++)
		dropped += st.dropped[r];
	assert_int_equal(dropped, 4);
	assert_true(all_alive(c));
	cluster_free(c);
}

static void test_hostile_query_timeouts_are_bounded(void **state)
{
	struct cluster *c = joined_cluster(2);
	struct hc_serf_stats st;

	(void)state;
	/* 1500 distinct queries asking to stay answerable for ~292 years. */
	for (uint32_t i = 0; i < 1500; i++) {
		struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_QUERY };
		struct hc_gossip_mp_writer w;
		uint8_t user = HC_GOSSIP_MSG_USER;

		m.u.query.ltime = 100 + i;
		m.u.query.id = i;
		m.u.query.addr = (struct hc_gossip_bytes){ hc_simnet_addr(c->net, 1)->ip, 4 };
		m.u.query.port = 7946;
		m.u.query.name = hc_gossip_bytes_str("q");
		m.u.query.source_node = hc_gossip_bytes_str("n1");
		m.u.query.filters_nil = true;
		m.u.query.timeout_ns = INT64_MAX;
		hc_gossip_mp_writer_init(&w, 0);
		hc_gossip_mp_write_raw(&w, &user, 1);
		assert_int_equal(hc_gossip_serf_encode(&m, &w), 0);
		hc_ml_on_packet(hc_gossip_memberlist(c->nodes[0].g), hc_simnet_addr(c->net, 1),
				w.buf, w.len);
		hc_gossip_mp_writer_fini(&w);
	}
	hc_gossip_stats(c->nodes[0].g, &st);
	assert_int_equal(st.open_queries, 1024);
	hc_simnet_run_ms(c->net, 11 * 60 * 1000); /* the answer window is capped at 10 min */
	hc_gossip_stats(c->nodes[0].g, &st);
	assert_int_equal(st.open_queries, 0);
	cluster_free(c);
}

/* Delivers one serf message to node 0 as if node 1 had sent it. */
static void inject(struct cluster *c, const struct hc_gossip_serf_msg *m)
{
	struct hc_gossip_mp_writer w;
	uint8_t user = HC_GOSSIP_MSG_USER;

	hc_gossip_mp_writer_init(&w, 0);
	hc_gossip_mp_write_raw(&w, &user, 1);
	assert_int_equal(hc_gossip_serf_encode(m, &w), 0);
	hc_ml_on_packet(hc_gossip_memberlist(c->nodes[0].g), hc_simnet_addr(c->net, 1), w.buf,
			w.len);
	hc_gossip_mp_writer_fini(&w);
}

static void inject_event(struct cluster *c, uint64_t ltime, const char *name,
			 const char *payload)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_USER_EVENT };

	m.u.event.ltime = ltime;
	m.u.event.name = hc_gossip_bytes_str(name);
	m.u.event.payload = hc_gossip_bytes_str(payload);
	inject(c, &m);
}

/* A ring slot holds every event of its Lamport time, bytes intact, and
 * only the new one once it is taken for a newer time. */
static void test_ring_slot_events(void **state)
{
	struct cluster *c = joined_cluster(2);
	const struct event_slot *slot = &c->nodes[0].g->events[60 % RING];
	char name[32], payload[1200];

	(void)state;
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "ev%d", i);
		memset(payload, 'A' + i % 26, 1024);
		payload[1024] = '\0';
		inject_event(c, 60, name, payload);
	}
	assert_int_equal(slot->n, 30);
	for (size_t i = 0; i < slot->n; i++) {
		snprintf(name, sizeof(name), "ev%zu", i);
		assert_string_equal((const char *)slot->events[i].name, name);
		assert_int_equal(slot->events[i].payload_len, 1024);
		assert_int_equal(slot->events[i].payload[0], 'A' + (int)i % 26);
		assert_int_equal(slot->events[i].payload[1023], 'A' + (int)i % 26);
	}
	inject_event(c, 60 + RING, "later", "x"); /* the same slot, a newer time */
	assert_int_equal(slot->ltime, 60 + RING);
	assert_int_equal(slot->n, 1);
	assert_string_equal((const char *)slot->events[0].name, "later");
	assert_int_equal(slot->events[0].payload_len, 1);
	assert_memory_equal(slot->events[0].payload, "x", 1);
	cluster_free(c);
}

static void test_hostile_intents_and_events_are_bounded(void **state)
{
	struct cluster *c = joined_cluster(2);
	struct hc_serf_stats st;
	char name[32];

	(void)state;
	for (int i = 0; i < 5000; i++) { /* join intents for nodes that do not exist */
		struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_JOIN };

		snprintf(name, sizeof(name), "ghost-%d", i);
		m.u.intent.ltime = 10 + (uint64_t)i;
		m.u.intent.node = hc_gossip_bytes_str(name);
		inject(c, &m);
	}
	hc_gossip_stats(c->nodes[0].g, &st);
	assert_int_equal(st.recent_intents, 4096);
	for (int i = 0; i < 300; i++) { /* distinct events, one Lamport time */
		struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_USER_EVENT };

		snprintf(name, sizeof(name), "e%d", i);
		m.u.event.ltime = 50;
		m.u.event.name = hc_gossip_bytes_str(name);
		m.u.event.payload = hc_gossip_bytes_str("");
		inject(c, &m);
	}
	assert_int_equal(c->nodes[0].user_events, 256);
	/* They expire after 5 min; rebroadcast echoes may re-add a few until
	 * every retransmission is spent. */
	hc_simnet_run_ms(c->net, 20 * 60 * 1000);
	hc_gossip_stats(c->nodes[0].g, &st);
	assert_int_equal(st.recent_intents, 0);
	cluster_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_members_and_tags),
		cmocka_unit_test(test_user_event_reaches_everyone_once),
		cmocka_unit_test(test_user_event_size_limit),
		cmocka_unit_test(test_coalescing_keeps_the_newest),
		cmocka_unit_test(test_old_events_reach_a_later_joiner),
		cmocka_unit_test(test_push_pull_leaves_out_superseded),
		cmocka_unit_test(test_push_pull_whole_ring_without_hook),
		cmocka_unit_test(test_query_acks_and_responses),
		cmocka_unit_test(test_query_answers_once_per_name),
		cmocka_unit_test(test_query_direct_copy),
		cmocka_unit_test(test_query_filters),
		cmocka_unit_test(test_hostile_tag_filters),
		cmocka_unit_test(test_respond_rules),
		cmocka_unit_test(test_failure_then_reap),
		cmocka_unit_test(test_graceful_leave_is_left_not_failed),
		cmocka_unit_test(test_tag_update),
		cmocka_unit_test(test_key_rotation_keeps_cluster),
		cmocka_unit_test(test_forged_serf_messages_are_dropped),
		cmocka_unit_test(test_hostile_query_timeouts_are_bounded),
		cmocka_unit_test(test_hostile_intents_and_events_are_bounded),
		cmocka_unit_test(test_ring_slot_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
