/* Whole gossip clusters on the simulated network; see gossipsim.h. */
#include "gossipsim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/memberlist_engine_int.h"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "loop/loop.h"

#define NAME_LEN 37
#define CHECK_MS 100 /* how often run_until looks */

const struct hc_gossipsim_timing hc_gossipsim_lan = {
	.name = "memberlist DefaultLANConfig (serf's default)",
	.gossip_interval_ms = 200, .probe_interval_ms = 1000, .probe_timeout_ms = 500,
	.suspicion_mult = 4, .gossip_nodes = 3, .push_pull_interval_ms = 30000,
};

const struct hc_gossipsim_timing hc_gossipsim_hypercore = {
	.name = "hypercore defaults (upstream hypercore's)",
	.gossip_interval_ms = 2000, .probe_interval_ms = 5000, .probe_timeout_ms = 500,
	.suspicion_mult = 6, .gossip_nodes = 2, .push_pull_interval_ms = 30000,
};

struct simnode {
	struct hc_gossipsim *sim;
	int idx;
	struct hc_gossip *g;
	struct hc_gossip_receiver recv;
	char name[NAME_LEN];
	int64_t join_ms, fail_ms; /* of the watched subject */
	uint64_t wrong;           /* verdicts of failed while it was up */
};

struct hc_gossipsim {
	struct hc_simnet *net;
	struct simnode *nodes;
	int cap;
	struct hc_gossipsim_timing t;
	uint64_t seed;
	int subject;
	uint64_t watch_start_ms;
	struct hc_gossipsim_false wrong;
};

static uint64_t now_ms(const struct hc_gossipsim *s)
{
	return hc_loop_now_ms(hc_simnet_loop(s->net));
}

/* The node index a name stands for, or -1: the last 12 digits. */
static int index_of(const struct hc_gossipsim *s, const char *name)
{
	size_t len = strlen(name);
	long i;

	if (len != NAME_LEN - 1)
		return -1;
	i = strtol(name + len - 12, NULL, 10);
	return i >= 0 && i < s->cap ? (int)i : -1;
}

static void on_event(const struct hc_gossip_event *ev, void *arg)
{
	struct simnode *nd = arg;
	struct hc_gossipsim *s = nd->sim;
	int who;

	/* A node that is down is cut off, as if crashed: what its engine
	 * still concludes about the others reaches nobody and is not counted. */
	if ((ev->type != HC_GOSSIP_EV_MEMBER_JOIN && ev->type != HC_GOSSIP_EV_MEMBER_FAILED) ||
	    hc_simnet_is_down(s->net, nd->idx))
		return;
	who = index_of(s, ev->member->name);
	if (who < 0)
		return;
	if (ev->type == HC_GOSSIP_EV_MEMBER_JOIN) {
		if (who == s->subject && nd->join_ms < 0)
			nd->join_ms = (int64_t)(now_ms(s) - s->watch_start_ms);
		return;
	}
	if (who == s->subject && nd->fail_ms < 0)
		nd->fail_ms = (int64_t)(now_ms(s) - s->watch_start_ms);
	if (!hc_simnet_is_down(s->net, who)) {
		s->wrong.events++;
		s->wrong.members += s->nodes[who].wrong++ == 0;
	}
}

struct hc_gossipsim *hc_gossipsim_new(int capacity, const struct hc_gossipsim_timing *t,
				      uint64_t seed)
{
	struct hc_gossipsim *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->cap = capacity;
	s->t = *t;
	s->seed = seed;
	s->subject = -1;
	s->net = hc_simnet_new(capacity, seed);
	s->nodes = calloc((size_t)capacity, sizeof(*s->nodes));
	if (!s->net || !s->nodes) {
		hc_gossipsim_free(s);
		return NULL;
	}
	for (int i = 0; i < capacity; i++) {
		struct simnode *nd = &s->nodes[i];

		nd->sim = s;
		nd->idx = i;
		nd->join_ms = nd->fail_ms = -1;
		snprintf(nd->name, sizeof(nd->name), "6f1c0de2-5b7a-4c1e-9d3f-%012d", i);
	}
	return s;
}

void hc_gossipsim_free(struct hc_gossipsim *s)
{
	if (!s)
		return;
	for (int i = 0; s->nodes && i < s->cap; i++)
		hc_gossip_free(s->nodes[i].g);
	hc_simnet_free(s->net);
	free(s->nodes);
	free(s);
}

struct hc_simnet *hc_gossipsim_net(struct hc_gossipsim *s)
{
	return s->net;
}

struct hc_gossip *hc_gossipsim_node(struct hc_gossipsim *s, int i)
{
	return s->nodes[i].g;
}

const char *hc_gossipsim_name(const struct hc_gossipsim *s, int i)
{
	return s->nodes[i].name;
}

int hc_gossipsim_start(struct hc_gossipsim *s, int i)
{
	struct simnode *nd = &s->nodes[i];
	struct hc_gossip_config cfg = {
		.name = nd->name,
		.gossip_interval_ms = s->t.gossip_interval_ms,
		.probe_interval_ms = s->t.probe_interval_ms,
		.probe_timeout_ms = s->t.probe_timeout_ms,
		.suspicion_mult = s->t.suspicion_mult,
		.gossip_nodes = s->t.gossip_nodes,
		.push_pull_interval_ms = s->t.push_pull_interval_ms,
		.on_event = on_event,
		.event_arg = nd,
		.seed = s->seed * 1000003u + (uint64_t)i + 1,
	};
	struct hc_err err;

	if (nd->g)
		return -EALREADY;
	nd->g = hc_gossip_new_with_transport(hc_simnet_loop(s->net), &cfg,
					     hc_simnet_addr(s->net, i), &hc_simnet_ops,
					     hc_simnet_ctx(s->net, i), &err);
	if (!nd->g)
		return err.code ? err.code : -ENOMEM;
	nd->recv = (struct hc_gossip_receiver){ hc_ml_on_packet, hc_ml_on_stream,
						hc_gossip_memberlist(nd->g) };
	hc_simnet_attach(s->net, i, &nd->recv);
	hc_simnet_set_down(s->net, i, false);
	return 0;
}

void hc_gossipsim_crash(struct hc_gossipsim *s, int i)
{
	struct simnode *nd = &s->nodes[i];

	hc_simnet_set_down(s->net, i, true);
	hc_gossip_free(nd->g);
	nd->g = NULL;
}

static void join_done(void *arg, unsigned joined)
{
	(void)arg;
	(void)joined;
}

int hc_gossipsim_join(struct hc_gossipsim *s, int i, int seed)
{
	const struct hc_gossip_addr *a = hc_simnet_addr(s->net, seed);
	char text[32];
	const char *seeds[1] = { text };

	snprintf(text, sizeof(text), "%u.%u.%u.%u:%u", a->ip[0], a->ip[1], a->ip[2], a->ip[3],
		 a->port);
	return hc_gossip_join(s->nodes[i].g, seeds, 1, 1, false, join_done, NULL);
}

bool hc_gossipsim_all_see(struct hc_gossipsim *s, size_t alive)
{
	for (int i = 0; i < s->cap; i++) {
		struct simnode *nd = &s->nodes[i];

		if (!nd->g || hc_simnet_is_down(s->net, i))
			continue;
		if (hc_ml_alive_count(hc_gossip_memberlist(nd->g)) != alive)
			return false;
	}
	return true;
}

size_t hc_gossipsim_queued(struct hc_gossipsim *s)
{
	size_t sum = 0;

	for (int i = 0; i < s->cap; i++)
		if (s->nodes[i].g && !hc_simnet_is_down(s->net, i))
			sum += hc_gossip_queue_depth(s->nodes[i].g);
	return sum;
}

struct form_ctx {
	struct hc_gossipsim *s;
	size_t n;
};

static bool formed(const void *arg)
{
	const struct form_ctx *c = arg;

	return hc_gossipsim_all_see(c->s, c->n);
}

int64_t hc_gossipsim_form(struct hc_gossipsim *s, int n, uint32_t stagger_ms,
			  uint64_t limit_ms)
{
	struct form_ctx c = { s, (size_t)n };
	uint64_t start;
	int64_t t;

	for (int i = 0; i < n; i++)
		if (hc_gossipsim_start(s, i) < 0)
			return -1;
	start = now_ms(s);
	for (int i = 1; i < n; i++) {
		if (hc_gossipsim_join(s, i, 0) < 0)
			return -1;
		hc_simnet_run_ms(s->net, stagger_ms);
	}
	t = hc_simnet_run_until(s->net, formed, &c, limit_ms);
	return t < 0 ? -1 : (int64_t)(now_ms(s) - start);
}

void hc_gossipsim_watch(struct hc_gossipsim *s, int subject)
{
	s->subject = subject;
	s->watch_start_ms = now_ms(s);
	for (int i = 0; i < s->cap; i++)
		s->nodes[i].join_ms = s->nodes[i].fail_ms = -1;
}

int64_t hc_gossipsim_join_ms(const struct hc_gossipsim *s, int observer)
{
	return s->nodes[observer].join_ms;
}

int64_t hc_gossipsim_fail_ms(const struct hc_gossipsim *s, int observer)
{
	return s->nodes[observer].fail_ms;
}

/* Every started, up node but the subject has a time in the field. */
static bool all_have(const struct hc_gossipsim *s, bool fail)
{
	for (int i = 0; i < s->cap; i++) {
		const struct simnode *nd = &s->nodes[i];

		if (i == s->subject || !nd->g || hc_simnet_is_down(s->net, i))
			continue;
		if ((fail ? nd->fail_ms : nd->join_ms) < 0)
			return false;
	}
	return true;
}

static bool all_joined(const void *arg)
{
	return all_have(arg, false);
}

static bool all_failed(const void *arg)
{
	return all_have(arg, true);
}

int64_t hc_gossipsim_run_until_joined(struct hc_gossipsim *s, uint64_t limit_ms)
{
	return hc_simnet_run_until(s->net, all_joined, s, limit_ms) < 0
		       ? -1
		       : (int64_t)(now_ms(s) - s->watch_start_ms);
}

int64_t hc_gossipsim_run_until_failed(struct hc_gossipsim *s, uint64_t limit_ms)
{
	return hc_simnet_run_until(s->net, all_failed, s, limit_ms) < 0
		       ? -1
		       : (int64_t)(now_ms(s) - s->watch_start_ms);
}

void hc_gossipsim_false_reset(struct hc_gossipsim *s)
{
	memset(&s->wrong, 0, sizeof(s->wrong));
	for (int i = 0; i < s->cap; i++)
		s->nodes[i].wrong = 0;
}

void hc_gossipsim_false_get(const struct hc_gossipsim *s, struct hc_gossipsim_false *out)
{
	*out = s->wrong;
}

uint64_t hc_gossipsim_wrong_verdicts(const struct hc_gossipsim *s, int i)
{
	return s->nodes[i].wrong;
}

void hc_gossipsim_set_lifeguard(struct hc_gossipsim *s, bool on)
{
	struct hc_ml_config lan;

	hc_ml_config_lan(&lan);
	for (int i = 0; i < s->cap; i++) {
		struct hc_ml *ml;

		if (!s->nodes[i].g)
			continue;
		ml = hc_gossip_memberlist(s->nodes[i].g);
		ml->cfg.awareness_max = on ? lan.awareness_max : 1;
		ml->cfg.suspicion_max_mult = on ? lan.suspicion_max_mult : 1;
		ml->awareness = 0;
	}
}

uint64_t hc_gossipsim_refutations(struct hc_gossipsim *s)
{
	uint64_t sum = 0;

	for (int i = 0; i < s->cap; i++) {
		struct hc_ml_stats st;

		if (!s->nodes[i].g)
			continue;
		hc_ml_stats(hc_gossip_memberlist(s->nodes[i].g), &st);
		sum += st.refutations;
	}
	return sum;
}
