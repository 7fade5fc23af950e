/* serf 0.9.4 messages carried in memberlist user messages, push/pull state and query payloads. */
#include "gossip/wire_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(type, member, kind_, name_) \
	{ .name = name_, .kind = HC_GOSSIP_F_##kind_, .offset = offsetof(type, member) }
#define CUSTOM(name_, read_, write_) \
	{ .name = name_, .kind = HC_GOSSIP_F_CUSTOM, .read = read_, .write = write_ }
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers for nested values ---- */

/* Reads an array header and allocates count elements of size each; the
 * count was checked against the input, so the allocation is bounded. */
static int read_array_alloc(struct hc_gossip_mp_reader *r, size_t size, void **items,
			    size_t *count, bool *is_nil)
{
	uint32_t n;
	int err = hc_gossip_mp_read_array(r, &n, is_nil);

	if (err)
		return err;
	*items = NULL;
	*count = 0;
	if (n == 0)
		return 0;
	*items = calloc(n, size);
	if (!*items)
		return -ENOMEM;
	*count = n;
	return 0;
}

static int read_bytes_list(struct hc_gossip_mp_reader *r, bool strings,
			   struct hc_gossip_bytes **list, size_t *n, bool *is_nil)
{
	void *items;
	int err = read_array_alloc(r, sizeof(**list), &items, n, is_nil);

	if (err)
		return err;
	*list = items;
	/* Elements are scalars, so this array adds no nesting to bound. */
	for (size_t i = 0; i < *n && !err; i++)
		err = strings ? hc_gossip_mp_read_str(r, &(*list)[i])
			      : hc_gossip_mp_read_bytes(r, &(*list)[i]);
	return err;
}

static void write_bytes_list(struct hc_gossip_mp_writer *w, const struct hc_gossip_bytes *list,
			     size_t n, bool is_nil)
{
	if (is_nil && n == 0) {
		hc_gossip_mp_write_nil(w);
		return;
	}
	hc_gossip_mp_write_array(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		hc_gossip_mp_write_bytes(w, list[i]);
}

/* Starts a decode of type byte + msgpack: checks the type, sets up r. */
static int open_typed(const uint8_t *buf, size_t len, uint8_t type, struct hc_gossip_mp_reader *r)
{
	if (len < 1)
		return -ENODATA;
	if (buf[0] != type)
		return -ENOMSG;
	hc_gossip_mp_reader_init(r, buf + 1, len - 1);
	return 0;
}

/* ---- intents, user events, queries, responses, relays ---- */

static const struct hc_gossip_field leave_fields[] = {
	FIELD(struct hc_gossip_serf_intent, ltime, U64, "LTime"),
	FIELD(struct hc_gossip_serf_intent, node, STR, "Node"),
	FIELD(struct hc_gossip_serf_intent, prune, BOOL, "Prune"),
};

static const struct hc_gossip_field join_fields[] = {
	FIELD(struct hc_gossip_serf_intent, ltime, U64, "LTime"),
	FIELD(struct hc_gossip_serf_intent, node, STR, "Node"),
};

static const struct hc_gossip_field user_event_fields[] = {
	FIELD(struct hc_gossip_serf_user_event, cc, BOOL, "CC"),
	FIELD(struct hc_gossip_serf_user_event, ltime, U64, "LTime"),
	FIELD(struct hc_gossip_serf_user_event, name, STR, "Name"),
	FIELD(struct hc_gossip_serf_user_event, payload, BYTES, "Payload"),
};

static int read_filters(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_serf_query *q = obj;

	free(q->filters); /* a repeated key replaces, as in Go */
	return read_bytes_list(r, false, &q->filters, &q->nfilters, &q->filters_nil);
}

static void write_filters(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_serf_query *q = obj;

	write_bytes_list(w, q->filters, q->nfilters, q->filters_nil);
}

static const struct hc_gossip_field query_fields[] = {
	FIELD(struct hc_gossip_serf_query, addr, BYTES, "Addr"),
	CUSTOM("Filters", read_filters, write_filters),
	FIELD(struct hc_gossip_serf_query, flags, U32, "Flags"),
	FIELD(struct hc_gossip_serf_query, id, U32, "ID"),
	FIELD(struct hc_gossip_serf_query, ltime, U64, "LTime"),
	FIELD(struct hc_gossip_serf_query, name, STR, "Name"),
	FIELD(struct hc_gossip_serf_query, payload, BYTES, "Payload"),
	FIELD(struct hc_gossip_serf_query, port, U16, "Port"),
	FIELD(struct hc_gossip_serf_query, relay_factor, U8, "RelayFactor"),
	FIELD(struct hc_gossip_serf_query, source_node, STR, "SourceNode"),
	FIELD(struct hc_gossip_serf_query, timeout_ns, I64, "Timeout"),
};

static const struct hc_gossip_field query_response_fields[] = {
	FIELD(struct hc_gossip_serf_query_response, flags, U32, "Flags"),
	FIELD(struct hc_gossip_serf_query_response, from, STR, "From"),
	FIELD(struct hc_gossip_serf_query_response, id, U32, "ID"),
	FIELD(struct hc_gossip_serf_query_response, ltime, U64, "LTime"),
	FIELD(struct hc_gossip_serf_query_response, payload, BYTES, "Payload"),
};

/* DestAddr is a Go net.UDPAddr. */
static const struct hc_gossip_field udp_addr_fields[] = {
	FIELD(struct hc_gossip_serf_relay, dest_ip, BYTES, "IP"),
	FIELD(struct hc_gossip_serf_relay, dest_port, U16, "Port"),
	FIELD(struct hc_gossip_serf_relay, dest_zone, STR, "Zone"),
};

static int read_dest_addr(struct hc_gossip_mp_reader *r, void *obj)
{
	return hc_gossip_mp_read_struct(r, udp_addr_fields, NFIELDS(udp_addr_fields), obj);
}

static void write_dest_addr(struct hc_gossip_mp_writer *w, const void *obj)
{
	hc_gossip_mp_write_struct(w, udp_addr_fields, NFIELDS(udp_addr_fields), obj);
}

static const struct hc_gossip_field relay_fields[] = {
	CUSTOM("DestAddr", read_dest_addr, write_dest_addr),
	FIELD(struct hc_gossip_serf_relay, dest_name, STR, "DestName"),
};

struct serf_layout {
	const struct hc_gossip_field *fields;
	size_t n;
};

static int serf_layout_of(enum hc_gossip_serf_type type, struct serf_layout *l)
{
	switch (type) {
	case HC_GOSSIP_SERF_LEAVE:
		*l = (struct serf_layout){ leave_fields, NFIELDS(leave_fields) };
		return 0;
	case HC_GOSSIP_SERF_JOIN:
		*l = (struct serf_layout){ join_fields, NFIELDS(join_fields) };
		return 0;
	case HC_GOSSIP_SERF_USER_EVENT:
		*l = (struct serf_layout){ user_event_fields, NFIELDS(user_event_fields) };
		return 0;
	case HC_GOSSIP_SERF_QUERY:
		*l = (struct serf_layout){ query_fields, NFIELDS(query_fields) };
		return 0;
	case HC_GOSSIP_SERF_QUERY_RESPONSE:
		*l = (struct serf_layout){ query_response_fields, NFIELDS(query_response_fields) };
		return 0;
	case HC_GOSSIP_SERF_RELAY:
		*l = (struct serf_layout){ relay_fields, NFIELDS(relay_fields) };
		return 0;
	default:
		return -ENOMSG;
	}
}

int hc_gossip_serf_decode(const uint8_t *buf, size_t len, struct hc_gossip_serf_msg *m)
{
	struct hc_gossip_mp_reader r;
	struct serf_layout l;
	int err;

	memset(m, 0, sizeof(*m));
	if (len < 1)
		return -ENODATA;
	m->type = buf[0];
	err = serf_layout_of(m->type, &l);
	if (err)
		return err;
	hc_gossip_mp_reader_init(&r, buf + 1, len - 1);
	err = hc_gossip_mp_read_struct(&r, l.fields, l.n, &m->u);
	if (!err && m->type == HC_GOSSIP_SERF_RELAY) {
		/* The rest is the message to forward, a type byte at least. */
		m->u.relay.inner = (struct hc_gossip_bytes){ r.buf + r.pos, hc_gossip_mp_remaining(&r) };
		if (m->u.relay.inner.len == 0)
			err = -ENODATA;
	}
	if (err)
		hc_gossip_serf_msg_fini(m);
	return err;
}

int hc_gossip_serf_encode(const struct hc_gossip_serf_msg *m, struct hc_gossip_mp_writer *w)
{
	struct serf_layout l;
	int err = serf_layout_of(m->type, &l);

	if (err)
		return err;
	hc_gossip_mp_write_u8(w, (uint8_t)m->type);
	hc_gossip_mp_write_struct(w, l.fields, l.n, &m->u);
	if (m->type == HC_GOSSIP_SERF_RELAY)
		hc_gossip_mp_write_raw(w, m->u.relay.inner.ptr, m->u.relay.inner.len);
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_serf_msg_fini(struct hc_gossip_serf_msg *m)
{
	if (!m || m->type != HC_GOSSIP_SERF_QUERY)
		return;
	free(m->u.query.filters);
	m->u.query.filters = NULL;
	m->u.query.nfilters = 0;
}

/* ---- query filters ---- */

static const struct hc_gossip_field tag_filter_fields[] = {
	FIELD(struct hc_gossip_serf_filter, expr, STR, "Expr"),
	FIELD(struct hc_gossip_serf_filter, tag, STR, "Tag"),
};

int hc_gossip_serf_filter_decode(struct hc_gossip_bytes raw, struct hc_gossip_serf_filter *f)
{
	struct hc_gossip_mp_reader r;
	bool is_nil;
	int err;

	memset(f, 0, sizeof(*f));
	if (raw.len < 1)
		return -ENODATA;
	f->type = raw.ptr[0];
	hc_gossip_mp_reader_init(&r, raw.ptr + 1, raw.len - 1);
	switch (f->type) {
	case HC_GOSSIP_SERF_FILTER_NODE:
		err = read_bytes_list(&r, true, &f->nodes, &f->nnodes, &is_nil);
		break;
	case HC_GOSSIP_SERF_FILTER_TAG:
		err = hc_gossip_mp_read_struct(&r, tag_filter_fields, NFIELDS(tag_filter_fields), f);
		break;
	default:
		return -ENOMSG;
	}
	if (err)
		hc_gossip_serf_filter_fini(f);
	return err;
}

int hc_gossip_serf_filter_encode(const struct hc_gossip_serf_filter *f,
				 struct hc_gossip_mp_writer *w)
{
	hc_gossip_mp_write_u8(w, (uint8_t)f->type);
	switch (f->type) {
	case HC_GOSSIP_SERF_FILTER_NODE:
		write_bytes_list(w, f->nodes, f->nnodes, false);
		break;
	case HC_GOSSIP_SERF_FILTER_TAG:
		hc_gossip_mp_write_struct(w, tag_filter_fields, NFIELDS(tag_filter_fields), f);
		break;
	default:
		return -EINVAL;
	}
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_serf_filter_fini(struct hc_gossip_serf_filter *f)
{
	if (!f)
		return;
	free(f->nodes);
	f->nodes = NULL;
	f->nnodes = 0;
}

/* ---- tags (node Meta, Member.Tags) ---- */

#define META_TAGS_MAGIC 0xff

static int read_tags(struct hc_gossip_mp_reader *r, struct hc_gossip_tags *t)
{
	uint32_t n;
	int err = hc_gossip_mp_read_map(r, &n, NULL);

	if (err)
		return err;
	free(t->tags);
	t->tags = n ? calloc(n, sizeof(*t->tags)) : NULL;
	t->n = 0;
	if (n && !t->tags)
		return -ENOMEM;
	for (; t->n < n && !err; t->n++) {
		err = hc_gossip_mp_read_str(r, &t->tags[t->n].key);
		if (!err)
			err = hc_gossip_mp_read_str(r, &t->tags[t->n].value);
	}
	return err;
}

static void write_tags(struct hc_gossip_mp_writer *w, const struct hc_gossip_tags *t)
{
	hc_gossip_mp_write_map(w, (uint32_t)t->n);
	for (size_t i = 0; i < t->n; i++) {
		hc_gossip_mp_write_bytes(w, t->tags[i].key);
		hc_gossip_mp_write_bytes(w, t->tags[i].value);
	}
}

int hc_gossip_meta_decode(struct hc_gossip_bytes meta, struct hc_gossip_tags *t)
{
	struct hc_gossip_mp_reader r;
	int err;

	memset(t, 0, sizeof(*t));
	if (meta.len == 0 || meta.ptr[0] != META_TAGS_MAGIC) {
		/* serf protocol 2: the whole Meta is the role. */
		t->tags = calloc(1, sizeof(*t->tags));
		if (!t->tags)
			return -ENOMEM;
		t->tags[0] = (struct hc_gossip_tag){ hc_gossip_bytes_str("role"), meta };
		t->n = 1;
		return 0;
	}
	hc_gossip_mp_reader_init(&r, meta.ptr + 1, meta.len - 1);
	err = read_tags(&r, t);
	if (err)
		hc_gossip_tags_fini(t);
	return err;
}

int hc_gossip_meta_encode(const struct hc_gossip_tags *t, struct hc_gossip_mp_writer *w)
{
	hc_gossip_mp_write_u8(w, META_TAGS_MAGIC);
	write_tags(w, t);
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_tags_fini(struct hc_gossip_tags *t)
{
	if (!t)
		return;
	free(t->tags);
	t->tags = NULL;
	t->n = 0;
}

/* ---- serf push/pull state ---- */

static const struct hc_gossip_field event_fields[] = {
	FIELD(struct hc_gossip_serf_event, name, STR, "Name"),
	FIELD(struct hc_gossip_serf_event, payload, BYTES, "Payload"),
};

static int read_slot_events(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_serf_event_slot *s = obj;
	void *items;
	int err;

	free(s->events);
	s->events = NULL;
	err = read_array_alloc(r, sizeof(*s->events), &items, &s->nevents, NULL);
	if (err)
		return err;
	s->events = items;
	err = hc_gossip_mp_enter(r);
	if (err)
		return err;
	for (size_t i = 0; i < s->nevents && !err; i++)
		err = hc_gossip_mp_read_struct(r, event_fields, NFIELDS(event_fields), &s->events[i]);
	hc_gossip_mp_leave(r);
	return err;
}

static void write_slot_events(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_serf_event_slot *s = obj;

	hc_gossip_mp_write_array(w, (uint32_t)s->nevents);
	for (size_t i = 0; i < s->nevents; i++)
		hc_gossip_mp_write_struct(w, event_fields, NFIELDS(event_fields), &s->events[i]);
}

static const struct hc_gossip_field slot_fields[] = {
	CUSTOM("Events", read_slot_events, write_slot_events),
	FIELD(struct hc_gossip_serf_event_slot, ltime, U64, "LTime"),
};

static void free_slots(struct hc_gossip_serf_push_pull *pp)
{
	for (size_t i = 0; i < pp->nslots; i++)
		free(pp->slots[i].events);
	free(pp->slots);
	pp->slots = NULL;
	pp->nslots = 0;
}

static int read_slots(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_serf_push_pull *pp = obj;
	void *items;
	int err;

	free_slots(pp);
	err = read_array_alloc(r, sizeof(*pp->slots), &items, &pp->nslots, NULL);
	if (err)
		return err;
	pp->slots = items;
	err = hc_gossip_mp_enter(r);
	if (err)
		return err;
	for (size_t i = 0; i < pp->nslots && !err; i++) {
		struct hc_gossip_serf_event_slot *s = &pp->slots[i];

		/* nil is an empty ring slot. */
		s->used = !hc_gossip_mp_peek_nil(r);
		err = hc_gossip_mp_read_struct(r, slot_fields, NFIELDS(slot_fields), s);
	}
	hc_gossip_mp_leave(r);
	return err;
}

static void write_slots(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_serf_push_pull *pp = obj;

	hc_gossip_mp_write_array(w, (uint32_t)pp->nslots);
	for (size_t i = 0; i < pp->nslots; i++) {
		if (pp->slots[i].used)
			hc_gossip_mp_write_struct(w, slot_fields, NFIELDS(slot_fields), &pp->slots[i]);
		else
			hc_gossip_mp_write_nil(w);
	}
}

static int read_left(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_serf_push_pull *pp = obj;

	free(pp->left_members);
	return read_bytes_list(r, true, &pp->left_members, &pp->nleft, NULL);
}

static void write_left(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_serf_push_pull *pp = obj;

	/* Go builds LeftMembers with make(), so it is [] rather than nil. */
	write_bytes_list(w, pp->left_members, pp->nleft, false);
}

static int read_status(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_serf_push_pull *pp = obj;
	uint32_t n;
	int err = hc_gossip_mp_read_map(r, &n, NULL);

	if (err)
		return err;
	free(pp->status);
	pp->status = n ? calloc(n, sizeof(*pp->status)) : NULL;
	pp->nstatus = 0;
	if (n && !pp->status)
		return -ENOMEM;
	for (; pp->nstatus < n && !err; pp->nstatus++) {
		struct hc_gossip_serf_status_ltime *s = &pp->status[pp->nstatus];

		err = hc_gossip_mp_read_str(r, &s->name);
		if (!err)
			err = hc_gossip_mp_read_uint(r, UINT64_MAX, &s->ltime);
	}
	return err;
}

static void write_status(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_serf_push_pull *pp = obj;

	hc_gossip_mp_write_map(w, (uint32_t)pp->nstatus);
	for (size_t i = 0; i < pp->nstatus; i++) {
		hc_gossip_mp_write_bytes(w, pp->status[i].name);
		hc_gossip_mp_write_uint(w, pp->status[i].ltime);
	}
}

static const struct hc_gossip_field serf_push_pull_fields[] = {
	FIELD(struct hc_gossip_serf_push_pull, event_ltime, U64, "EventLTime"),
	CUSTOM("Events", read_slots, write_slots),
	FIELD(struct hc_gossip_serf_push_pull, ltime, U64, "LTime"),
	CUSTOM("LeftMembers", read_left, write_left),
	FIELD(struct hc_gossip_serf_push_pull, query_ltime, U64, "QueryLTime"),
	CUSTOM("StatusLTimes", read_status, write_status),
};

int hc_gossip_serf_push_pull_decode(const uint8_t *buf, size_t len,
				    struct hc_gossip_serf_push_pull *pp)
{
	struct hc_gossip_mp_reader r;
	int err;

	memset(pp, 0, sizeof(*pp));
	err = open_typed(buf, len, HC_GOSSIP_SERF_PUSH_PULL, &r);
	if (err)
		return err;
	err = hc_gossip_mp_read_struct(&r, serf_push_pull_fields, NFIELDS(serf_push_pull_fields),
				       pp);
	if (err)
		hc_gossip_serf_push_pull_fini(pp);
	return err;
}

int hc_gossip_serf_push_pull_encode(const struct hc_gossip_serf_push_pull *pp,
				    struct hc_gossip_mp_writer *w)
{
	hc_gossip_mp_write_u8(w, HC_GOSSIP_SERF_PUSH_PULL);
	hc_gossip_mp_write_struct(w, serf_push_pull_fields, NFIELDS(serf_push_pull_fields), pp);
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_serf_push_pull_fini(struct hc_gossip_serf_push_pull *pp)
{
	if (!pp)
		return;
	free_slots(pp);
	free(pp->left_members);
	free(pp->status);
	pp->left_members = NULL;
	pp->status = NULL;
	pp->nleft = pp->nstatus = 0;
}

/* ---- key management ---- */

static const struct hc_gossip_field key_request_fields[] = {
	FIELD(struct hc_gossip_serf_key_request, key, BYTES, "Key"),
};

int hc_gossip_serf_key_request_decode(const uint8_t *buf, size_t len,
				      struct hc_gossip_serf_key_request *kr)
{
	struct hc_gossip_mp_reader r;
	int err;

	memset(kr, 0, sizeof(*kr));
	err = open_typed(buf, len, HC_GOSSIP_SERF_KEY_REQUEST, &r);
	if (err)
		return err;
	return hc_gossip_mp_read_struct(&r, key_request_fields, NFIELDS(key_request_fields), kr);
}

int hc_gossip_serf_key_request_encode(const struct hc_gossip_serf_key_request *kr,
				      struct hc_gossip_mp_writer *w)
{
	struct hc_gossip_serf_key_request out = *kr;

	/* list-keys sends Key "" (a0), never nil. */
	if (!out.key.ptr)
		out.key = hc_gossip_bytes_str("");
	hc_gossip_mp_write_u8(w, HC_GOSSIP_SERF_KEY_REQUEST);
	hc_gossip_mp_write_struct(w, key_request_fields, NFIELDS(key_request_fields), &out);
	return hc_gossip_mp_writer_error(w);
}

static int read_keys(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_serf_key_response *kr = obj;

	free(kr->keys);
	return read_bytes_list(r, true, &kr->keys, &kr->nkeys, &kr->keys_nil);
}

static void write_keys(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_serf_key_response *kr = obj;

	write_bytes_list(w, kr->keys, kr->nkeys, kr->keys_nil);
}

static const struct hc_gossip_field key_response_fields[] = {
	CUSTOM("Keys", read_keys, write_keys),
	FIELD(struct hc_gossip_serf_key_response, message, STR, "Message"),
	FIELD(struct hc_gossip_serf_key_response, primary_key, STR, "PrimaryKey"),
	FIELD(struct hc_gossip_serf_key_response, result, BOOL, "Result"),
};

int hc_gossip_serf_key_response_decode(const uint8_t *buf, size_t len,
				       struct hc_gossip_serf_key_response *kr)
{
	struct hc_gossip_mp_reader r;
	int err;

	memset(kr, 0, sizeof(*kr));
	err = open_typed(buf, len, HC_GOSSIP_SERF_KEY_RESPONSE, &r);
	if (err)
		return err;
	err = hc_gossip_mp_read_struct(&r, key_response_fields, NFIELDS(key_response_fields), kr);
	if (err)
		hc_gossip_serf_key_response_fini(kr);
	return err;
}

int hc_gossip_serf_key_response_encode(const struct hc_gossip_serf_key_response *kr,
				       struct hc_gossip_mp_writer *w)
{
	hc_gossip_mp_write_u8(w, HC_GOSSIP_SERF_KEY_RESPONSE);
	hc_gossip_mp_write_struct(w, key_response_fields, NFIELDS(key_response_fields), kr);
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_serf_key_response_fini(struct hc_gossip_serf_key_response *kr)
{
	if (!kr)
		return;
	free(kr->keys);
	kr->keys = NULL;
	kr->nkeys = 0;
}

/* ---- conflict response (Member) ---- */

static int read_member_tags(struct hc_gossip_mp_reader *r, void *obj)
{
	return read_tags(r, &((struct hc_gossip_serf_member *)obj)->tags);
}

static void write_member_tags(struct hc_gossip_mp_writer *w, const void *obj)
{
	write_tags(w, &((const struct hc_gossip_serf_member *)obj)->tags);
}

static const struct hc_gossip_field member_fields[] = {
	FIELD(struct hc_gossip_serf_member, addr, BYTES, "Addr"),
	FIELD(struct hc_gossip_serf_member, delegate_cur, U8, "DelegateCur"),
	FIELD(struct hc_gossip_serf_member, delegate_max, U8, "DelegateMax"),
	FIELD(struct hc_gossip_serf_member, delegate_min, U8, "DelegateMin"),
	FIELD(struct hc_gossip_serf_member, name, STR, "Name"),
	FIELD(struct hc_gossip_serf_member, port, U16, "Port"),
	FIELD(struct hc_gossip_serf_member, protocol_cur, U8, "ProtocolCur"),
	FIELD(struct hc_gossip_serf_member, protocol_max, U8, "ProtocolMax"),
	FIELD(struct hc_gossip_serf_member, protocol_min, U8, "ProtocolMin"),
	FIELD(struct hc_gossip_serf_member, status, I64, "Status"),
	CUSTOM("Tags", read_member_tags, write_member_tags),
};

int hc_gossip_serf_conflict_decode(const uint8_t *buf, size_t len,
				   struct hc_gossip_serf_member *m)
{
	struct hc_gossip_mp_reader r;
	int err;

	memset(m, 0, sizeof(*m));
	err = open_typed(buf, len, HC_GOSSIP_SERF_CONFLICT_RESPONSE, &r);
	if (err)
		return err;
	m->known = hc_gossip_mp_remaining(&r) > 0 && !hc_gossip_mp_peek_nil(&r);
	err = hc_gossip_mp_read_struct(&r, member_fields, NFIELDS(member_fields), m);
	if (err)
		hc_gossip_serf_member_fini(m);
	return err;
}

int hc_gossip_serf_conflict_encode(const struct hc_gossip_serf_member *m,
				   struct hc_gossip_mp_writer *w)
{
	hc_gossip_mp_write_u8(w, HC_GOSSIP_SERF_CONFLICT_RESPONSE);
	if (m->known)
		hc_gossip_mp_write_struct(w, member_fields, NFIELDS(member_fields), m);
	else
		hc_gossip_mp_write_nil(w);
	return hc_gossip_mp_writer_error(w);
}

void hc_gossip_serf_member_fini(struct hc_gossip_serf_member *m)
{
	if (m)
		hc_gossip_tags_fini(&m->tags);
}

/* ---- Vivaldi coordinate in ack payloads ---- */

#define COORD_VERSION 1

static int read_vec(struct hc_gossip_mp_reader *r, void *obj)
{
	struct hc_gossip_coord *c = obj;
	uint32_t n;
	int err = hc_gossip_mp_read_array(r, &n, NULL);

	if (err)
		return err;
	if (n > HC_GOSSIP_COORD_DIM)
		return -EMSGSIZE;
	c->dim = n;
	for (uint32_t i = 0; i < n && !err; i++)
		err = hc_gossip_mp_read_float(r, &c->vec[i]);
	return err;
}

static void write_vec(struct hc_gossip_mp_writer *w, const void *obj)
{
	const struct hc_gossip_coord *c = obj;

	hc_gossip_mp_write_array(w, (uint32_t)c->dim);
	for (size_t i = 0; i < c->dim; i++)
		hc_gossip_mp_write_float(w, c->vec[i]);
}

static const struct hc_gossip_field coord_fields[] = {
	FIELD(struct hc_gossip_coord, adjustment, F64, "Adjustment"),
	FIELD(struct hc_gossip_coord, error, F64, "Error"),
	FIELD(struct hc_gossip_coord, height, F64, "Height"),
	CUSTOM("Vec", read_vec, write_vec),
};

int hc_gossip_coord_decode(struct hc_gossip_bytes payload, struct hc_gossip_coord *c)
{
	struct hc_gossip_mp_reader r;
	int err;

	memset(c, 0, sizeof(*c));
	err = open_typed(payload.ptr, payload.len, COORD_VERSION, &r);
	if (err)
		return err;
	return hc_gossip_mp_read_struct(&r, coord_fields, NFIELDS(coord_fields), c);
}

int hc_gossip_coord_encode(const struct hc_gossip_coord *c, struct hc_gossip_mp_writer *w)
{
	if (c->dim > HC_GOSSIP_COORD_DIM)
		return -EINVAL;
	hc_gossip_mp_write_u8(w, COORD_VERSION);
	hc_gossip_mp_write_struct(w, coord_fields, NFIELDS(coord_fields), c);
	return hc_gossip_mp_writer_error(w);
}
