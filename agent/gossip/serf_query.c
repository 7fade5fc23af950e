/* The serf layer's queries: filters, acks, responses, relays, and the internal _serf_ queries. */
#include "gossip/gossip.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "gossip"
#include "gossip/keyring_int.h"
#include "gossip/memberlist_int.h"
#include "gossip/regex_int.h"
#include "gossip/serf_int.h"
#include "gossip/wire_int.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

#define QUERY_SIZE_LIMIT 1024  /* encoded query and response, type byte included */
#define QUERY_TIMEOUT_MULT 16
#define INTERNAL_PREFIX "_serf_"
/* Queries come with the sender's timeout: we keep what we need to answer
 * one for at most this long, and at most this many at once (the oldest
 * goes first), so a peer cannot make us hold state without bound. */
#define MAX_ANSWER_WINDOW_MS (10u * 60 * 1000)
#define MAX_OPEN_QUERIES 1024

/* ---- queries ---- */

static struct out_query *find_out_query(struct hc_gossip *g, uint64_t ltime)
{
	for (struct out_query *q = g->out_queries; q; q = q->next)
		if (q->ltime == ltime)
			return q;
	return NULL;
}

static bool name_listed(const struct name_set *set, struct hc_gossip_bytes who)
{
	for (size_t at = 0; at < set->len; at += strlen(set->buf + at) + 1)
		if (hc_serf_bytes_eq_str(who, set->buf + at))
			return true;
	return false;
}

static int name_append(struct name_set *set, struct hc_gossip_bytes who)
{
	size_t need = who.len + 1;

	if (!set->buf) {
		set->buf = set->inline_buf;
		set->cap = sizeof(set->inline_buf);
	}
	if (need > set->cap - set->len) {
		size_t cap = set->cap * 2 > set->len + need ? set->cap * 2 : set->len + need;
		char *grown = set->buf == set->inline_buf ? malloc(cap) : realloc(set->buf, cap);

		if (!grown)
			return -ENOMEM;
		if (set->buf == set->inline_buf)
			memcpy(grown, set->inline_buf, set->len);
		set->buf = grown;
		set->cap = cap;
	}
	if (who.len)
		memcpy(set->buf + set->len, who.ptr, who.len);
	set->buf[set->len + who.len] = '\0';
	set->len += need;
	return 0;
}

static void name_set_fini(struct name_set *set)
{
	if (set->buf != set->inline_buf)
		free(set->buf);
}

void hc_serf_handle_query_response(struct hc_gossip *g,
				   const struct hc_gossip_serf_query_response *resp)
{
	struct out_query *q = find_out_query(g, resp->ltime);
	bool ack = resp->flags & HC_GOSSIP_SERF_QUERY_ACK;
	char *from;

	if (!q || q->id != resp->id)
		return;
	if (name_listed(ack ? &q->acked : &q->responded, resp->from))
		return;
	if (name_append(ack ? &q->acked : &q->responded, resp->from) < 0)
		return;
	from = hc_serf_bytes_dup(resp->from);
	if (from && q->on_response)
		q->on_response(q->arg, from, resp->payload.ptr, resp->payload.len, ack);
	free(from);
}

/* Sends a query response to the originator, and through relay_factor
 * random members when asked (serf's relayResponse). */
static int send_response(struct hc_gossip *g, const struct hc_gossip_addr *origin,
			 uint8_t relay_factor, const struct hc_gossip_serf_msg *resp)
{
	struct hc_gossip_mp_writer w, relay;
	struct member *via[255];
	size_t alive_others = 0, k = 0;
	int r;

	hc_gossip_mp_writer_init(&w, 0);
	r = hc_serf_encode(resp, &w);
	if (r == 0 && w.len > QUERY_SIZE_LIMIT)
		r = -EMSGSIZE;
	if (r == 0)
		r = hc_serf_send_to(g, origin, w.buf, w.len);
	if (r < 0 || relay_factor == 0 || g->nmembers < (size_t)relay_factor + 1)
		goto out;
	for (size_t i = 0; i < g->nmembers; i++) {
		struct member *m = g->members[i];

		if (m->status == HC_GOSSIP_ALIVE && m->vsn[4] >= 5 && strcmp(m->name, g->name))
			alive_others++;
	}
	/* Random distinct eligible members, up to relay_factor. */
	for (size_t tries = 0; tries < 4 * g->nmembers && k < relay_factor && k < alive_others;
	     tries++) {
		struct member *m = g->members[hc_serf_rnd(g) % g->nmembers];
		bool dup = false;

		if (m->status != HC_GOSSIP_ALIVE || m->vsn[4] < 5 || !strcmp(m->name, g->name))
			continue;
		for (size_t i = 0; i < k; i++)
			dup |= via[i] == m;
		if (!dup)
			via[k++] = m;
	}
	{
		struct hc_gossip_serf_msg rm = { .type = HC_GOSSIP_SERF_RELAY };

		rm.u.relay.dest_ip = (struct hc_gossip_bytes){ origin->ip, origin->ip_len };
		rm.u.relay.dest_port = origin->port;
		rm.u.relay.dest_zone = hc_gossip_bytes_str("");
		rm.u.relay.dest_name = hc_gossip_bytes_str(g->name);
		rm.u.relay.inner = (struct hc_gossip_bytes){ w.buf, w.len };
		hc_gossip_mp_writer_init(&relay, 0);
		r = hc_serf_encode(&rm, &relay);
		if (r == 0 && relay.len > QUERY_SIZE_LIMIT)
			r = -EMSGSIZE;
		for (size_t i = 0; r == 0 && i < k; i++)
			hc_serf_send_to(g, &via[i]->addr, relay.buf, relay.len);
		hc_gossip_mp_writer_fini(&relay);
	}
out:
	hc_gossip_mp_writer_fini(&w);
	return r;
}

/* Unanchored, as Go's MatchString, by our own RE2 matcher: the pattern
 * comes from the network and runs on the loop thread of every node, so it
 * is bounded in length and runs in linear time without recursion. One Go
 * would reject, or that is too long or large here, matches nothing (a Go
 * node answers nothing to an invalid one either). */
static bool tag_matches(struct hc_gossip *g, struct hc_gossip_bytes tag,
			struct hc_gossip_bytes expr)
{
	const char *value = "";
	int r;

	for (size_t i = 0; i < g->ntags; i++)
		if (hc_serf_bytes_eq_str(tag, g->tags[i].key))
			value = g->tags[i].value;
	r = hc_gossip_re_match((const char *)expr.ptr, expr.len, value, strlen(value));
	if (r < 0) {
		g->st.dropped[HC_GOSSIP_DROP_BAD_FILTER]++;
		hc_log(HC_LOG_DEBUG, "query tag filter refused (%zu bytes): %s", expr.len,
		       strerror(-r));
	}
	return r == 1;
}

/* serf's shouldProcessQuery: every filter must match. */
static bool query_matches(struct hc_gossip *g, const struct hc_gossip_serf_query *q)
{
	for (size_t i = 0; i < q->nfilters; i++) {
		struct hc_gossip_serf_filter f;
		bool ok = false;

		if (hc_gossip_serf_filter_decode(q->filters[i], &f) < 0)
			return false;
		if (f.type == HC_GOSSIP_SERF_FILTER_NODE) {
			for (size_t k = 0; k < f.nnodes; k++)
				ok |= hc_serf_bytes_eq_str(f.nodes[k], g->name);
		} else if (f.type == HC_GOSSIP_SERF_FILTER_TAG) {
			ok = tag_matches(g, f.tag, f.expr);
		}
		hc_gossip_serf_filter_fini(&f);
		if (!ok)
			return false;
	}
	return true;
}

static bool query_seen(struct hc_gossip *g, const struct hc_gossip_serf_query *q)
{
	struct query_slot *slot = &g->queries[q->ltime % RING];
	uint32_t *ids;

	if (slot->used && slot->ltime == q->ltime) {
		for (size_t i = 0; i < slot->n; i++)
			if (slot->ids[i] == q->id)
				return true;
	} else {
		free(slot->ids);
		memset(slot, 0, sizeof(*slot));
		slot->used = true;
		slot->ltime = q->ltime;
	}
	if (slot->n >= MAX_PER_LTIME)
		return true; /* treat a flood at one Lamport time as already seen */
	ids = realloc(slot->ids, (slot->n + 1) * sizeof(*ids));
	if (ids) {
		slot->ids = ids;
		ids[slot->n++] = q->id;
	}
	return false;
}

static int64_t in_query_expired(struct hc_loop *loop, uint64_t id, void *arg);
static void drop_oldest_in_query(struct hc_gossip *g);
static void internal_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q,
			   uint64_t handle);

static uint64_t answer_window_ms(int64_t timeout_ns)
{
	uint64_t ms = timeout_ns > 0 ? (uint64_t)timeout_ns / 1000000 : 0;

	return ms < MAX_ANSWER_WINDOW_MS ? ms : MAX_ANSWER_WINDOW_MS;
}

/* serf's handleQuery: true if the query should be gossiped on. */
bool hc_serf_handle_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q)
{
	bool rebroadcast = !(q->flags & HC_GOSSIP_SERF_QUERY_NO_BCAST);
	struct hc_gossip_addr origin;
	struct in_query *in;
	char *name;

	hc_serf_witness(&g->query_clock, q->ltime);
	if (g->query_clock > RING && q->ltime < g->query_clock - RING) {
		g->st.queries_too_old++;
		return false;
	}
	if (query_seen(g, q))
		return false;
	if (!query_matches(g, q))
		return rebroadcast;
	if (q->addr.len != 4 && q->addr.len != 16)
		return rebroadcast;
	memset(&origin, 0, sizeof(origin));
	memcpy(origin.ip, q->addr.ptr, q->addr.len);
	origin.ip_len = (uint8_t)q->addr.len;
	origin.port = q->port;
	if (q->flags & HC_GOSSIP_SERF_QUERY_ACK) {
		struct hc_gossip_serf_msg ack = { .type = HC_GOSSIP_SERF_QUERY_RESPONSE };

		ack.u.response.ltime = q->ltime;
		ack.u.response.id = q->id;
		ack.u.response.from = hc_gossip_bytes_str(g->name);
		ack.u.response.flags = HC_GOSSIP_SERF_QUERY_ACK;
		send_response(g, &origin, q->relay_factor, &ack);
	}
	in = calloc(1, sizeof(*in));
	if (!in)
		return rebroadcast;
	in->g = g;
	in->handle = ++g->next_handle;
	in->ltime = q->ltime;
	in->id = q->id;
	in->origin = origin;
	in->relay_factor = q->relay_factor;
	in->timer = hc_loop_add_timer(g->loop, answer_window_ms(q->timeout_ns), in_query_expired,
				      in);
	in->next = g->in_queries;
	g->in_queries = in;
	if (++g->nin_queries > MAX_OPEN_QUERIES)
		drop_oldest_in_query(g);
	g->st.queries_delivered++;

	name = hc_serf_bytes_dup(q->name);
	if (!name)
		return rebroadcast;
	if (strncmp(name, INTERNAL_PREFIX, strlen(INTERNAL_PREFIX)) == 0) {
		internal_query(g, q, in->handle);
	} else if (g->cfg.on_event) {
		char *source = hc_serf_bytes_dup(q->source_node);
		struct hc_gossip_event ev = {
			.type = HC_GOSSIP_EV_QUERY, .name = name, .payload = q->payload.ptr,
			.len = q->payload.len, .ltime = q->ltime, .query_id = in->handle,
			.query_source = source,
		};

		g->cfg.on_event(&ev, g->cfg.event_arg);
		free(source);
	}
	free(name);
	return rebroadcast;
}

static struct in_query **find_in_query(struct hc_gossip *g, uint64_t handle)
{
	for (struct in_query **p = &g->in_queries; *p; p = &(*p)->next)
		if ((*p)->handle == handle)
			return p;
	return NULL;
}

void hc_serf_in_query_free(struct hc_gossip *g, struct in_query **link)
{
	struct in_query *in = *link;

	*link = in->next;
	g->nin_queries--;
	if (in->timer)
		hc_loop_del_timer(g->loop, in->timer);
	free(in);
}

static void drop_oldest_in_query(struct hc_gossip *g)
{
	struct in_query **link = &g->in_queries;

	while (*link && (*link)->next)
		link = &(*link)->next;
	if (*link)
		hc_serf_in_query_free(g, link);
}

static int64_t in_query_expired(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct in_query *in = arg;
	struct in_query **link = find_in_query(in->g, in->handle);

	(void)loop;
	(void)id;
	in->timer = 0;
	if (link)
		hc_serf_in_query_free(in->g, link);
	return HC_LOOP_TIMER_DONE;
}

int hc_gossip_respond(struct hc_gossip *g, uint64_t query_id, const uint8_t *payload,
		      size_t len)
{
	struct in_query **link = find_in_query(g, query_id);
	struct hc_gossip_serf_msg resp = { .type = HC_GOSSIP_SERF_QUERY_RESPONSE };
	struct in_query *in;
	int r;

	if (!link)
		return -ENOENT;
	in = *link;
	if (in->answered)
		return -EALREADY;
	resp.u.response.ltime = in->ltime;
	resp.u.response.id = in->id;
	resp.u.response.from = hc_gossip_bytes_str(g->name);
	resp.u.response.payload = (struct hc_gossip_bytes){ payload ? payload
								    : (const uint8_t *)"",
							    len };
	r = send_response(g, &in->origin, in->relay_factor, &resp);
	if (r == 0)
		in->answered = true;
	return r;
}

int64_t hc_serf_out_query_expired(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct out_query *q = arg;
	struct hc_gossip *g = q->g;

	(void)loop;
	(void)id;
	for (struct out_query **p = &g->out_queries; *p; p = &(*p)->next) {
		if (*p == q) {
			*p = q->next;
			break;
		}
	}
	if (q->done)
		q->done(q->arg);
	name_set_fini(&q->acked);
	name_set_fini(&q->responded);
	free(q);
	return HC_LOOP_TIMER_DONE;
}

static uint32_t default_query_timeout_ms(const struct hc_gossip *g)
{
	size_t n = hc_ml_member_count(g->ml);

	return g->cfg.gossip_interval_ms * QUERY_TIMEOUT_MULT *
	       (uint32_t)ceil(log10((double)n + 1.0));
}

static int encode_filters(const struct hc_gossip_query_params *p, struct hc_gossip_bytes *out,
			  struct hc_gossip_mp_writer *bufs, size_t *n)
{
	*n = 0;
	if (p && p->nnodes) {
		struct hc_gossip_bytes *names = calloc(p->nnodes, sizeof(*names));
		struct hc_gossip_serf_filter f = { .type = HC_GOSSIP_SERF_FILTER_NODE,
						   .nodes = names, .nnodes = p->nnodes };
		int r;

		if (!names)
			return -ENOMEM;
		for (size_t i = 0; i < p->nnodes; i++)
			names[i] = hc_gossip_bytes_str(p->nodes[i]);
		hc_gossip_mp_writer_init(&bufs[*n], 0);
		r = hc_gossip_serf_filter_encode(&f, &bufs[*n]);
		free(names);
		if (r < 0)
			return r;
		(*n)++;
	}
	for (size_t i = 0; p && i < p->ntags; i++) {
		struct hc_gossip_serf_filter f = {
			.type = HC_GOSSIP_SERF_FILTER_TAG,
			.tag = hc_gossip_bytes_str(p->tags[i].key),
			.expr = hc_gossip_bytes_str(p->tags[i].value),
		};

		hc_gossip_mp_writer_init(&bufs[*n], 0);
		if (hc_gossip_serf_filter_encode(&f, &bufs[*n]) < 0)
			return -EINVAL;
		(*n)++;
	}
	for (size_t i = 0; i < *n; i++)
		out[i] = (struct hc_gossip_bytes){ bufs[i].buf, bufs[i].len };
	return 0;
}

#define MAX_FILTERS 17

/*
 * A query is gossiped as serf does, and also sent straight to each member
 * params->direct names that is alive (a user message by UDP, as serf sends
 * responses): the node it is for has it in one round trip instead of after
 * the gossip rounds that happen to reach it, which on a busy cluster take
 * seconds, and an ack asked for comes back as soon. Gossip gives a message
 * few transmissions, so now and then one misses a node altogether; the
 * direct copy covers that, the gossiped one a lost packet, and the receiver
 * answers once (it knows the id). A serf agent handles the direct copy as
 * any user message.
 */
static void send_direct(struct hc_gossip *g, const struct hc_gossip_query_params *params,
			const uint8_t *msg, size_t len)
{
	for (size_t i = 0; i < params->ndirect; i++) {
		const char *name = params->direct[i];
		struct member *m = hc_serf_find_member(g, name, strlen(name));

		if (m && m->status == HC_GOSSIP_ALIVE && strcmp(name, g->name) != 0 &&
		    hc_serf_send_to(g, &m->addr, msg, len) < 0)
			hc_log(HC_LOG_DEBUG, "query: no direct copy to %s (gossip carries it)",
			       name);
	}
}

int hc_gossip_query(struct hc_gossip *g, const char *name, const uint8_t *payload, size_t len,
		    const struct hc_gossip_query_params *params, hc_gossip_response_fn *on_response,
		    void (*done)(void *arg), void *arg)
{
	struct hc_gossip_serf_msg m = { .type = HC_GOSSIP_SERF_QUERY };
	struct hc_gossip_serf_query *q = &m.u.query;
	struct hc_gossip_mp_writer bufs[MAX_FILTERS], w;
	struct hc_gossip_bytes filters[MAX_FILTERS];
	const struct hc_ml_node *self = hc_ml_self(g->ml);
	struct out_query *oq = NULL;
	size_t nfilters = 0;
	uint32_t timeout;
	int r;

	if (params && params->ntags > MAX_FILTERS - 1)
		return -E2BIG;
	hc_gossip_mp_writer_init(&w, 0);
	r = encode_filters(params, filters, bufs, &nfilters);
	if (r < 0)
		goto out;
	timeout = params && params->timeout_ms ? params->timeout_ms : default_query_timeout_ms(g);
	q->ltime = g->query_clock;
	q->id = (uint32_t)(hc_serf_rnd(g) & 0x7fffffff);
	q->addr = (struct hc_gossip_bytes){ self->addr.ip, self->addr.ip_len };
	q->port = self->addr.port;
	q->source_node = hc_gossip_bytes_str(g->name);
	q->filters = nfilters ? filters : NULL;
	q->nfilters = nfilters;
	q->filters_nil = nfilters == 0;
	q->flags = params && params->ack ? HC_GOSSIP_SERF_QUERY_ACK : 0;
	q->relay_factor = params ? params->relay_factor : 0;
	q->timeout_ns = (int64_t)timeout * 1000000;
	q->name = hc_gossip_bytes_str(name);
	q->payload = (struct hc_gossip_bytes){ payload ? payload : (const uint8_t *)"", len };
	r = hc_serf_encode(&m, &w);
	if (r == 0 && w.len > QUERY_SIZE_LIMIT)
		r = -EMSGSIZE;
	if (r < 0)
		goto out;
	oq = calloc(1, sizeof(*oq));
	if (!oq) {
		r = -ENOMEM;
		goto out;
	}
	oq->g = g;
	oq->ltime = q->ltime;
	oq->id = q->id;
	oq->on_response = on_response;
	oq->done = done;
	oq->arg = arg;
	oq->timer = hc_loop_add_timer(g->loop, timeout, hc_serf_out_query_expired, oq);
	oq->next = g->out_queries;
	g->out_queries = oq;
	/* Process it here too: we may match our own filters and answer. The
	 * decoded copy must not alias our filter array. */
	{
		struct hc_gossip_serf_msg local;

		if (hc_gossip_serf_decode(w.buf, w.len, &local) == 0) {
			hc_serf_handle_query(g, &local.u.query);
			hc_gossip_serf_msg_fini(&local);
		}
	}
	/* Registered: from here on done() runs at the deadline, so a failed
	 * queueing (logged) is not an error the caller could clean up after. */
	hc_serf_queue_raw(g, g->query_q, w.buf, w.len, NULL, NULL);
	if (params && params->ndirect)
		send_direct(g, params, w.buf, w.len);
	g->st.queries_sent++;
	r = 0;
out:
	for (size_t i = 0; i < nfilters; i++)
		hc_gossip_mp_writer_fini(&bufs[i]);
	hc_gossip_mp_writer_fini(&w);
	return r;
}

/* ---- internal queries (_serf_ping, _serf_conflict, key management) ---- */

static void respond_key(struct hc_gossip *g, uint64_t handle, bool ok, const char *message,
			bool list)
{
	struct hc_gossip_serf_key_response kr = { .result = ok };
	struct hc_gossip_bytes keys[64];
	char b64[64][48], primary[48] = "";
	struct hc_gossip_mp_writer w;
	size_t n = list && g->keyring ? hc_gossip_keyring_count(g->keyring) : 0;

	if (n > 64)
		n = 64;
	for (size_t i = 0; i < n; i++) {
		size_t klen;
		const uint8_t *k = hc_gossip_keyring_key(g->keyring, i, &klen);

		hc_gossip_key_to_base64(k, klen, b64[i], sizeof(b64[i]));
		keys[i] = hc_gossip_bytes_str(b64[i]);
		if (i == 0)
			memcpy(primary, b64[0], sizeof(primary));
	}
	kr.keys = n ? keys : NULL;
	kr.nkeys = n;
	kr.keys_nil = n == 0;
	kr.message = hc_gossip_bytes_str(message);
	kr.primary_key = hc_gossip_bytes_str(primary);
	hc_gossip_mp_writer_init(&w, 0);
	if (hc_gossip_serf_key_response_encode(&kr, &w) == 0 && !hc_gossip_mp_writer_error(&w))
		hc_gossip_respond(g, handle, w.buf, w.len);
	hc_gossip_mp_writer_fini(&w);
}

static void key_query(struct hc_gossip *g, const char *op, const struct hc_gossip_serf_query *q,
		      uint64_t handle)
{
	struct hc_gossip_serf_key_request req = { 0 };
	bool list = strcmp(op, "list-keys") == 0;
	int r = 0;

	if (!g->keyring) {
		respond_key(g, handle, false, "No keyring to modify (encryption not enabled)", false);
		return;
	}
	if (hc_gossip_serf_key_request_decode(q->payload.ptr, q->payload.len, &req) < 0) {
		respond_key(g, handle, false, "Failed to decode key request", false);
		return;
	}
	if (strcmp(op, "install-key") == 0)
		r = hc_gossip_keyring_install(g->keyring, req.key.ptr, req.key.len);
	else if (strcmp(op, "use-key") == 0)
		r = hc_gossip_keyring_use(g->keyring, req.key.ptr, req.key.len);
	else if (strcmp(op, "remove-key") == 0)
		r = hc_gossip_keyring_remove(g->keyring, req.key.ptr, req.key.len);
	else if (!list)
		return;
	if (r < 0) {
		respond_key(g, handle, false, strerror(-r), false);
		return;
	}
	if (!list && g->keyring_file && hc_gossip_keyring_save(g->keyring, g->keyring_file) < 0) {
		respond_key(g, handle, false, "Failed to write keyring file", false);
		return;
	}
	if (!list)
		hc_log(HC_LOG_INFO, "keyring: %s applied (%zu keys)", op,
		       hc_gossip_keyring_count(g->keyring));
	respond_key(g, handle, true, "", list);
}

static void conflict_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q,
			   uint64_t handle)
{
	struct hc_gossip_serf_member out = { 0 };
	struct hc_gossip_tag tags[64];
	struct member *m;
	struct hc_gossip_mp_writer w;

	if (hc_serf_bytes_eq_str(q->payload, g->name))
		return; /* we are the one in conflict: others answer */
	m = hc_serf_find_member(g, (const char *)q->payload.ptr, q->payload.len);
	if (m) {
		out.known = true;
		out.addr = (struct hc_gossip_bytes){ m->addr.ip, m->addr.ip_len };
		out.port = m->addr.port;
		out.name = hc_gossip_bytes_str(m->name);
		out.protocol_min = m->vsn[0];
		out.protocol_max = m->vsn[1];
		out.protocol_cur = m->vsn[2];
		out.delegate_min = m->vsn[3];
		out.delegate_max = m->vsn[4];
		out.delegate_cur = m->vsn[5];
		out.status = m->status;
		out.tags.n = m->ntags < 64 ? m->ntags : 64;
		out.tags.tags = tags;
		for (size_t i = 0; i < out.tags.n; i++) {
			tags[i].key = hc_gossip_bytes_str(m->tags[i].key);
			tags[i].value = hc_gossip_bytes_str(m->tags[i].value);
		}
	}
	hc_gossip_mp_writer_init(&w, 0);
	if (hc_gossip_serf_conflict_encode(&out, &w) == 0 && !hc_gossip_mp_writer_error(&w))
		hc_gossip_respond(g, handle, w.buf, w.len);
	hc_gossip_mp_writer_fini(&w);
}

static void internal_query(struct hc_gossip *g, const struct hc_gossip_serf_query *q,
			   uint64_t handle)
{
	size_t plen = strlen(INTERNAL_PREFIX);
	char op[32];

	if (q->name.len - plen >= sizeof(op))
		return;
	memcpy(op, q->name.ptr + plen, q->name.len - plen);
	op[q->name.len - plen] = '\0';
	if (strcmp(op, "ping") == 0)
		return; /* the ack, if asked for, was the answer */
	if (strcmp(op, "conflict") == 0)
		conflict_query(g, q, handle);
	else
		key_query(g, op, q, handle);
}
