/* The serf layer's members (status, tags, RTT windows) and join/leave intents. */
#include "gossip/gossip.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "gossip"
#include "gossip/memberlist_int.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

/* ---- members ---- */

struct member *hc_serf_find_member(const struct hc_gossip *g, const char *name, size_t len)
{
	return hc_gossip_index_get(&g->member_ix, name, len);
}

struct hc_gossip_bytes hc_serf_member_key(const void *item)
{
	const struct member *m = item;

	return (struct hc_gossip_bytes){ (const uint8_t *)m->name, m->name_len };
}

void hc_serf_tags_free(struct hc_gossip_kv *tags, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)tags[i].key);
		free((char *)tags[i].value);
	}
	free(tags);
}

/* Decodes node meta into owned tags; legacy meta becomes role=<meta>. */
static int tags_from_meta(const uint8_t *meta, size_t len, struct hc_gossip_kv **out, size_t *n)
{
	struct hc_gossip_tags t = { 0 };
	struct hc_gossip_kv *kv;
	int r = hc_gossip_meta_decode((struct hc_gossip_bytes){ meta, len }, &t);

	if (r < 0)
		return r;
	kv = calloc(t.n ? t.n : 1, sizeof(*kv));
	if (!kv) {
		hc_gossip_tags_fini(&t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t.n; i++) {
		kv[i].key = hc_serf_bytes_dup(t.tags[i].key);
		kv[i].value = hc_serf_bytes_dup(t.tags[i].value);
		if (!kv[i].key || !kv[i].value) {
			hc_serf_tags_free(kv, i + 1);
			hc_gossip_tags_fini(&t);
			return -ENOMEM;
		}
	}
	*out = kv;
	*n = t.n;
	hc_gossip_tags_fini(&t);
	return 0;
}

void hc_serf_member_set_from_node(struct member *m, const struct hc_ml_node *n)
{
	struct hc_gossip_kv *tags;
	size_t ntags;

	m->addr = n->addr;
	memcpy(m->vsn, n->vsn, 6);
	if (tags_from_meta(n->meta, n->meta_len, &tags, &ntags) == 0) {
		hc_serf_tags_free(m->tags, m->ntags);
		m->tags = tags;
		m->ntags = ntags;
	}
}

struct member *hc_serf_member_add(struct hc_gossip *g, const char *name)
{
	struct member *m;

	if (g->nmembers == g->capmembers) {
		size_t cap = g->capmembers ? g->capmembers * 2 : 16;
		struct member **ms = realloc(g->members, cap * sizeof(*ms));

		if (!ms)
			return NULL;
		g->members = ms;
		g->capmembers = cap;
	}
	m = calloc(1, sizeof(*m));
	if (m && (m->name = strdup(name)))
		m->name_len = strlen(name);
	if (!m || !m->name || hc_gossip_index_add(&g->member_ix, m) < 0) {
		if (m)
			free(m->name);
		free(m);
		return NULL;
	}
	g->members[g->nmembers++] = m;
	return m;
}

void hc_serf_member_free(struct member *m)
{
	hc_serf_tags_free(m->tags, m->ntags);
	free(m->name);
	free(m);
}

void hc_serf_member_remove(struct hc_gossip *g, struct member *m)
{
	for (size_t i = 0; i < g->nmembers; i++) {
		if (g->members[i] == m) {
			g->members[i] = g->members[--g->nmembers];
			hc_gossip_index_remove(&g->member_ix, m);
			hc_serf_member_free(m);
			return;
		}
	}
}

/* Fills a public view of m; strings borrowed from m. */
void hc_serf_member_view(const struct member *m, struct hc_gossip_member *out)
{
	const struct rtt_window *w = &m->rtt;

	memset(out, 0, sizeof(*out));
	out->name = m->name;
	hc_serf_format_addr(&m->addr, out->addr, sizeof(out->addr));
	out->tags = m->tags;
	out->ntags = m->ntags;
	out->status = m->status;
	out->protocol_min = m->vsn[0];
	out->protocol_max = m->vsn[1];
	out->protocol_cur = m->vsn[2];
	out->delegate_min = m->vsn[3];
	out->delegate_max = m->vsn[4];
	out->delegate_cur = m->vsn[5];
	out->rtt_us = out->rtt_mean_us = out->jitter_us = -1;
	if (w->n) {
		int64_t sum = 0, dev = 0;
		unsigned last = (w->next + RTT_WINDOW - 1) % RTT_WINDOW;

		out->rtt_us = w->samples[last];
		for (unsigned i = 0; i < w->n; i++)
			sum += w->samples[i];
		out->rtt_mean_us = sum / w->n;
		for (unsigned i = 1; i < w->n; i++) {
			int64_t d = w->samples[i] - w->samples[i - 1];

			dev += d < 0 ? -d : d;
		}
		out->jitter_us = w->n > 1 ? dev / (w->n - 1) : 0;
	}
	out->loss = w->probes ? (double)w->failures / (double)w->probes : 0;
}

/* ---- intents ---- */

struct intent *hc_serf_find_intent(struct hc_gossip *g, const char *node, size_t len)
{
	for (size_t i = 0; i < g->nintents; i++)
		if (strlen(g->intents[i].node) == len && memcmp(g->intents[i].node, node, len) == 0)
			return &g->intents[i];
	return NULL;
}

void hc_serf_drop_intent(struct hc_gossip *g, size_t i)
{
	free(g->intents[i].node);
	g->intents[i] = g->intents[--g->nintents];
}

/* Remembers an intent for a node we do not know yet; true if it is news. */
static bool upsert_intent(struct hc_gossip *g, struct hc_gossip_bytes node, uint64_t ltime,
			  bool leave)
{
	struct intent *in = hc_serf_find_intent(g, (const char *)node.ptr, node.len);

	if (in) {
		if (in->ltime >= ltime)
			return false;
	} else {
		if (g->nintents >= MAX_INTENTS) {
			size_t oldest = 0;

			for (size_t i = 1; i < g->nintents; i++)
				if (g->intents[i].when_ms < g->intents[oldest].when_ms)
					oldest = i;
			hc_serf_drop_intent(g, oldest);
		}
		if (g->nintents == g->capintents) {
			size_t cap = g->capintents ? g->capintents * 2 : 16;
			struct intent *ins = realloc(g->intents, cap * sizeof(*ins));

			if (!ins)
				return false;
			g->intents = ins;
			g->capintents = cap;
		}
		in = &g->intents[g->nintents];
		in->node = hc_serf_bytes_dup(node);
		if (!in->node)
			return false;
		g->nintents++;
	}
	in->ltime = ltime;
	in->leave = leave;
	in->when_ms = hc_serf_now_ms(g);
	return true;
}

/* serf's handleNodeJoinIntent: true if the intent should be gossiped on. */
static bool apply_join_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in)
{
	struct member *m;

	hc_serf_witness(&g->clock, in->ltime);
	m = hc_serf_find_member(g, (const char *)in->node.ptr, in->node.len);
	if (!m)
		return upsert_intent(g, in->node, in->ltime, false);
	if (in->ltime <= m->status_ltime)
		return false;
	m->status_ltime = in->ltime;
	if (m->status == HC_GOSSIP_LEAVING)
		m->status = HC_GOSSIP_ALIVE;
	return true;
}

/*
 * A join intent from elsewhere (gossip, or a status time merged from a
 * push/pull). About us, and newer than our own last join, it can only be a
 * leave of ours that someone holds: serf merges a member another node lists
 * as left as a leave intent one past its status time, so a node that saw
 * us left for a moment after we came back (our join intent before
 * memberlist's alive) can make a third one take us for "leaving", newer
 * than our join. Memberlist has us alive there, and serf would never
 * change its mind; the time travels on by push/pull as ours, so we refute
 * it here with a newer join, as serf refutes an older leave intent. A serf
 * agent sees an ordinary join intent.
 */
bool hc_serf_handle_join_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in)
{
	struct member *self = hc_serf_find_member(g, g->name, strlen(g->name));
	bool about_us = hc_serf_bytes_eq_str(in->node, g->name);
	bool newer = about_us && self && in->ltime > self->status_ltime;
	bool rebroadcast = apply_join_intent(g, in);

	if (newer && g->state == SERF_ALIVE) {
		hc_log(HC_LOG_DEBUG, "refuting a status time newer than our join (%llu)",
		       (unsigned long long)in->ltime);
		hc_serf_broadcast_join(g, g->clock);
	}
	return rebroadcast;
}

bool hc_serf_handle_leave_intent(struct hc_gossip *g, const struct hc_gossip_serf_intent *in)
{
	struct member *m;

	hc_serf_witness(&g->clock, in->ltime);
	m = hc_serf_find_member(g, (const char *)in->node.ptr, in->node.len);
	if (!m)
		return upsert_intent(g, in->node, in->ltime, true);
	if (in->ltime <= m->status_ltime)
		return false;
	if (hc_serf_bytes_eq_str(in->node, g->name) && g->state == SERF_ALIVE) {
		hc_log(HC_LOG_DEBUG, "refuting an older leave intent");
		hc_serf_broadcast_join(g, g->clock);
		return false;
	}
	m->status_ltime = in->ltime;
	switch (m->status) {
	case HC_GOSSIP_ALIVE:
		m->status = HC_GOSSIP_LEAVING;
		break;
	case HC_GOSSIP_FAILED:
		m->status = HC_GOSSIP_LEFT;
		hc_serf_emit_member(g, HC_GOSSIP_EV_MEMBER_LEAVE, m);
		break;
	case HC_GOSSIP_LEAVING:
	case HC_GOSSIP_LEFT:
		break;
	default:
		return false;
	}
	if (in->prune && m != hc_serf_find_member(g, g->name, strlen(g->name))) {
		hc_serf_emit_member(g, HC_GOSSIP_EV_MEMBER_REAP, m);
		hc_serf_member_remove(g, m);
	}
	return true;
}

void hc_serf_broadcast_join(struct hc_gossip *g, uint64_t ltime)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_JOIN };

	m.u.intent.ltime = ltime;
	m.u.intent.node = hc_gossip_bytes_str(g->name);
	hc_serf_witness(&g->clock, ltime);
	apply_join_intent(g, &m.u.intent);
	hc_serf_queue_msg(g, g->intent_q, &m, NULL, NULL);
}
