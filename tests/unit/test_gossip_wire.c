/* gossip wire codec against captured Debian serf traffic: decode, re-encode byte for byte, hostile input. */
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serfvec.h"

#include "gossip/keyring_int.h"
#include "gossip/lzw_int.h"
#include "gossip/wire_int.h"

/* ---- vectors ---- */

static const char *const udp_vectors[] = {
	"ack.hex", "ack_compressed.hex", "alive_compound_crc.hex", "dead_failed.hex",
	"dead_leave.hex", "join_intent.hex", "keys_list_query.hex", "keys_list_response.hex",
	"leave_intent.hex", "ping.hex", "query.hex", "query_ack.hex", "query_filtered.hex",
	"query_response.hex", "relay.hex", "suspect_ping_compound.hex", "user_event.hex",
};

static const char *const stream_vectors[] = {
	"pushpull_tcp.hex", "pushpull_tcp_big_lzw.hex", "pushpull_tcp_events.hex",
	"pushpull_tcp_reply.hex",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))


static void expect_bytes(struct hc_gossip_bytes b, const void *want, size_t len)
{
	assert_non_null(b.ptr);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.ptr, want, len);
}

#define EXPECT_STR(b, s) expect_bytes((b), (s), sizeof(s) - 1)

static const uint8_t localhost[] = { 127, 0, 0, 1 };
static const uint8_t serf_vsn[] = { 1, 5, 2, 2, 5, 5 };

static void expect_writer(struct hc_gossip_mp_writer *w, const uint8_t *want, size_t len)
{
	assert_int_equal(hc_gossip_mp_writer_error(w), 0);
	assert_int_equal(w->len, len);
	assert_memory_equal(w->buf, want, len);
	w->len = 0;
}

/* ---- full decode, as the protocol layer will do it ---- */

struct tally {
	struct hc_gossip_msg msgs[8];
	size_t n;
	int err; /* first error below the memberlist layer */
};

static void note(struct tally *t, int err)
{
	if (err && !t->err)
		t->err = err;
}

static void decode_serf(struct tally *t, struct hc_gossip_bytes raw, unsigned depth)
{
	struct hc_gossip_serf_msg m;
	int err = hc_gossip_serf_decode(raw.ptr, raw.len, &m);

	note(t, err);
	if (err)
		return;
	if (m.type == HC_GOSSIP_SERF_QUERY) {
		for (size_t i = 0; i < m.u.query.nfilters; i++) {
			struct hc_gossip_serf_filter f;

			note(t, hc_gossip_serf_filter_decode(m.u.query.filters[i], &f));
			hc_gossip_serf_filter_fini(&f);
		}
	}
	if (m.type == HC_GOSSIP_SERF_RELAY && depth == 0)
		decode_serf(t, m.u.relay.inner, depth + 1);
	hc_gossip_serf_msg_fini(&m);
}

static void on_msg(const struct hc_gossip_msg *m, void *arg)
{
	struct tally *t = arg;

	if (t->n < COUNT(t->msgs))
		t->msgs[t->n] = *m;
	t->n++;
	if (m->type == HC_GOSSIP_MSG_USER)
		decode_serf(t, m->u.user, 0);
}

/* Returns the first error of any layer of a datagram. */
static int decode_datagram(const uint8_t *buf, size_t len, struct tally *t)
{
	int err;

	memset(t, 0, sizeof(*t));
	err = hc_gossip_packet_walk(buf, len, on_msg, t);
	return err ? err : t->err;
}

/* Returns the first error of any layer of a stream; *pp_out gets the
 * memberlist node count when non-NULL. */
static int decode_stream(const uint8_t *buf, size_t len, size_t *nodes)
{
	struct hc_gossip_push_pull pp;
	struct hc_gossip_serf_push_pull spp;
	uint8_t *msg;
	size_t msg_len;
	int err = hc_gossip_stream_open(NULL, buf, len, &msg, &msg_len);

	if (err)
		return err;
	err = hc_gossip_push_pull_decode(msg, msg_len, &pp);
	if (!err) {
		err = hc_gossip_serf_push_pull_decode(pp.user_state.ptr, pp.user_state.len, &spp);
		hc_gossip_serf_push_pull_fini(&spp);
		if (nodes)
			*nodes = pp.nnodes;
	}
	hc_gossip_push_pull_fini(&pp);
	free(msg);
	return err;
}

static void test_every_captured_datagram_decodes(void **state)
{
	(void)state;
	for (size_t i = 0; i < COUNT(udp_vectors); i++) {
		struct serf_vec v = serf_vec_load(udp_vectors[i]);
		struct tally t;

		if (decode_datagram(v.p, v.len, &t) != 0 || t.n == 0)
			fail_msg("%s: err %d, %zu messages", udp_vectors[i], t.err, t.n);
		free(v.p);
	}
}

static void test_every_captured_stream_decodes(void **state)
{
	(void)state;
	for (size_t i = 0; i < COUNT(stream_vectors); i++) {
		struct serf_vec v = serf_vec_load(stream_vectors[i]);
		size_t nodes = 0;
		int err = decode_stream(v.p, v.len, &nodes);

		if (err || nodes == 0)
			fail_msg("%s: err %d, %zu nodes", stream_vectors[i], err, nodes);
		free(v.p);
	}
}

/* ---- memberlist messages, field by field and byte for byte ---- */

static void test_ping_decodes_and_reencodes(void **state)
{
	struct serf_vec v = serf_vec_load("ping.hex");
	struct hc_gossip_mp_writer w;
	struct hc_gossip_msg m;

	(void)state;
	assert_int_equal(hc_gossip_msg_decode(v.p, v.len, &m), 0);
	assert_int_equal(m.type, HC_GOSSIP_MSG_PING);
	EXPECT_STR(m.u.ping.node, "b");
	assert_int_equal(m.u.ping.seq_no, 1);
	expect_bytes(m.u.ping.source_addr, localhost, 4);
	EXPECT_STR(m.u.ping.source_node, "a");
	assert_int_equal(m.u.ping.source_port, 7946);
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_msg_encode(&m, &w), 0);
	expect_writer(&w, v.p, v.len);
	/* The Source* fields are omitempty: a bare ping has two keys. */
	m.u.ping.source_addr = (struct hc_gossip_bytes){ NULL, 0 };
	m.u.ping.source_node = (struct hc_gossip_bytes){ NULL, 0 };
	m.u.ping.source_port = 0;
	assert_int_equal(hc_gossip_msg_encode(&m, &w), 0);
	assert_int_equal(w.buf[1], 0x82);
	hc_gossip_mp_writer_fini(&w);
	free(v.p);
}

static void test_ack_carries_a_vivaldi_coordinate(void **state)
{
	struct serf_vec v = serf_vec_load("ack.hex");
	struct hc_gossip_mp_writer w;
	struct hc_gossip_coord c;
	struct hc_gossip_msg m;

	(void)state;
	assert_int_equal(hc_gossip_msg_decode(v.p, v.len, &m), 0);
	assert_int_equal(m.type, HC_GOSSIP_MSG_ACK);
	assert_int_equal(m.u.ack.seq_no, 1);
	assert_int_equal(m.u.ack.payload.len, 130);
	assert_int_equal(hc_gossip_coord_decode(m.u.ack.payload, &c), 0);
	assert_int_equal(c.dim, 8);
	assert_true(c.adjustment == 1.1689890625e-05);
	assert_true(c.error == 1.4329905798212466);
	assert_true(c.height == 1e-05);
	assert_true(c.vec[0] == -3.390267335751189e-05);
	assert_true(c.vec[7] == 3.6011472722072056e-05);
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_coord_encode(&c, &w), 0);
	expect_writer(&w, m.u.ack.payload.ptr, m.u.ack.payload.len);
	assert_int_equal(hc_gossip_msg_encode(&m, &w), 0);
	expect_writer(&w, v.p, v.len);
	hc_gossip_mp_writer_fini(&w);
	free(v.p);
}

static void test_compressed_ack_recompresses_identically(void **state)
{
	struct serf_vec v = serf_vec_load("ack_compressed.hex");
	struct hc_gossip_mp_writer w;
	struct hc_gossip_coord c;
	struct hc_gossip_msg m;
	uint8_t *plain;
	size_t plain_len;

	(void)state;
	assert_int_equal(hc_gossip_compress_unwrap(v.p, v.len, HC_GOSSIP_UDP_MAX, &plain,
						   &plain_len), 0);
	assert_int_equal(plain_len, 150);
	assert_int_equal(hc_gossip_msg_decode(plain, plain_len, &m), 0);
	assert_int_equal(m.type, HC_GOSSIP_MSG_ACK);
	assert_int_equal(hc_gossip_coord_decode(m.u.ack.payload, &c), 0);
	assert_true(c.error == 1.5 && c.height == 1e-05 && c.vec[3] == 0.0);
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_compress_wrap(plain, plain_len, &w), 0);
	expect_writer(&w, v.p, v.len);
	hc_gossip_mp_writer_fini(&w);
	free(plain);
	free(v.p);
}

/* Re-encodes decoded messages as a (compound of) parts under hasCrc. */
static void expect_reencoded_gossip(const struct serf_vec *v, const struct hc_gossip_msg *msgs,
				    size_t n, bool crc)
{
	struct hc_gossip_mp_writer part[4], body, out;
	struct hc_gossip_bytes parts[4];

	assert_true(n >= 1 && n <= 4);
	for (size_t i = 0; i < n; i++) {
		hc_gossip_mp_writer_init(&part[i], 0);
		assert_int_equal(hc_gossip_msg_encode(&msgs[i], &part[i]), 0);
		parts[i] = (struct hc_gossip_bytes){ part[i].buf, part[i].len };
	}
	hc_gossip_mp_writer_init(&body, 0);
	if (n > 1)
		assert_int_equal(hc_gossip_compound_encode(parts, n, &body), 0);
	else
		hc_gossip_mp_write_raw(&body, parts[0].ptr, parts[0].len);
	hc_gossip_mp_writer_init(&out, 0);
	if (crc)
		assert_int_equal(hc_gossip_crc_wrap(body.buf, body.len, &out), 0);
	else
		hc_gossip_mp_write_raw(&out, body.buf, body.len);
	expect_writer(&out, v->p, v->len);
	for (size_t i = 0; i < n; i++)
		hc_gossip_mp_writer_fini(&part[i]);
	hc_gossip_mp_writer_fini(&body);
	hc_gossip_mp_writer_fini(&out);
}

static void test_alive_compound_with_crc(void **state)
{
	struct serf_vec v = serf_vec_load("alive_compound_crc.hex");
	struct hc_gossip_bytes parts[HC_GOSSIP_COMPOUND_MAX], inner;
	struct hc_gossip_mp_writer w;
	struct hc_gossip_tags tags;
	struct hc_gossip_alive *a;
	struct tally t;
	size_t n;

	(void)state;
	assert_int_equal(hc_gossip_crc_unwrap(v.p, v.len, &inner), 0);
	assert_int_equal(hc_gossip_compound_split(inner.ptr, inner.len, parts, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(parts[0].len, 68);
	assert_int_equal(parts[1].len, 59);
	assert_int_equal(decode_datagram(v.p, v.len, &t), 0);
	assert_int_equal(t.n, 2);
	a = &t.msgs[0].u.alive;
	assert_int_equal(t.msgs[0].type, HC_GOSSIP_MSG_ALIVE);
	expect_bytes(a->addr, localhost, 4);
	assert_int_equal(a->incarnation, 1);
	EXPECT_STR(a->node, "a");
	assert_int_equal(a->port, 7946);
	expect_bytes(a->vsn, serf_vsn, 6);
	assert_int_equal(hc_gossip_meta_decode(a->meta, &tags), 0);
	assert_int_equal(tags.n, 1);
	EXPECT_STR(tags.tags[0].key, "role");
	EXPECT_STR(tags.tags[0].value, "web");
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_meta_encode(&tags, &w), 0);
	expect_writer(&w, a->meta.ptr, a->meta.len);
	hc_gossip_tags_fini(&tags);
	/* b has no tags: ff 80, not empty Meta. */
	a = &t.msgs[1].u.alive;
	EXPECT_STR(a->node, "b");
	assert_int_equal(a->port, 7947);
	expect_bytes(a->meta, "\xff\x80", 2);
	assert_int_equal(hc_gossip_meta_decode(a->meta, &tags), 0);
	assert_int_equal(tags.n, 0);
	assert_int_equal(hc_gossip_meta_encode(&tags, &w), 0);
	expect_writer(&w, a->meta.ptr, a->meta.len);
	hc_gossip_mp_writer_fini(&w);
	expect_reencoded_gossip(&v, t.msgs, 2, true);
	free(v.p);
}

static void test_legacy_meta_is_the_role(void **state)
{
	struct hc_gossip_tags tags;

	(void)state;
	assert_int_equal(hc_gossip_meta_decode(hc_gossip_bytes_str("db"), &tags), 0);
	assert_int_equal(tags.n, 1);
	EXPECT_STR(tags.tags[0].key, "role");
	EXPECT_STR(tags.tags[0].value, "db");
	hc_gossip_tags_fini(&tags);
	assert_int_equal(hc_gossip_meta_decode((struct hc_gossip_bytes){ NULL, 0 }, &tags), 0);
	assert_int_equal(tags.n, 1);
	assert_int_equal(tags.tags[0].value.len, 0);
	hc_gossip_tags_fini(&tags);
}

static void test_suspect_ping_compound_and_dead_messages(void **state)
{
	struct serf_vec v = serf_vec_load("suspect_ping_compound.hex");
	struct tally t;

	(void)state;
	assert_int_equal(decode_datagram(v.p, v.len, &t), 0);
	assert_int_equal(t.n, 2);
	assert_int_equal(t.msgs[0].type, HC_GOSSIP_MSG_PING);
	assert_int_equal(t.msgs[0].u.ping.seq_no, 14);
	assert_int_equal(t.msgs[1].type, HC_GOSSIP_MSG_SUSPECT);
	EXPECT_STR(t.msgs[1].u.suspect.from, "a");
	EXPECT_STR(t.msgs[1].u.suspect.node, "b");
	assert_int_equal(t.msgs[1].u.suspect.incarnation, 1);
	expect_reencoded_gossip(&v, t.msgs, 2, true);
	free(v.p);

	v = serf_vec_load("dead_leave.hex");
	assert_int_equal(decode_datagram(v.p, v.len, &t), 0);
	assert_int_equal(t.msgs[0].type, HC_GOSSIP_MSG_DEAD);
	EXPECT_STR(t.msgs[0].u.suspect.from, "c");
	EXPECT_STR(t.msgs[0].u.suspect.node, "c"); /* From == Node: left */
	expect_reencoded_gossip(&v, t.msgs, 1, true);
	free(v.p);

	v = serf_vec_load("dead_failed.hex");
	assert_int_equal(decode_datagram(v.p, v.len, &t), 0);
	assert_int_equal(t.msgs[0].type, HC_GOSSIP_MSG_DEAD);
	EXPECT_STR(t.msgs[0].u.suspect.from, "a");
	EXPECT_STR(t.msgs[0].u.suspect.node, "b");
	expect_reencoded_gossip(&v, t.msgs, 1, true);
	free(v.p);
}

static void test_other_memberlist_messages_round_trip(void **state)
{
	struct hc_gossip_msg in[4] = {
		{ .type = HC_GOSSIP_MSG_INDIRECT_PING,
		  .u.indirect_ping = { .nack = true, .node = { (const uint8_t *)"b", 1 },
				       .port = 7947, .seq_no = 9,
				       .target = { localhost, 4 } } },
		{ .type = HC_GOSSIP_MSG_NACK, .u.nack = { .seq_no = 300 } },
		{ .type = HC_GOSSIP_MSG_ERR, .u.err = { { (const uint8_t *)"boom", 4 } } },
		{ .type = HC_GOSSIP_MSG_ACK, .u.ack = { .seq_no = 70000 } },
	};
	static const uint8_t indirect[] = {
		0x01, 0x85, 0xa4, 'N', 'a', 'c', 'k', 0xc3, 0xa4, 'N', 'o', 'd', 'e', 0xa1, 'b',
		0xa4, 'P', 'o', 'r', 't', 0xcd, 0x1f, 0x0b, 0xa5, 'S', 'e', 'q', 'N', 'o', 0x09,
		0xa6, 'T', 'a', 'r', 'g', 'e', 't', 0xa4, 127, 0, 0, 1,
	};
	struct hc_gossip_mp_writer w;

	(void)state;
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_msg_encode(&in[0], &w), 0);
	assert_int_equal(w.len, sizeof(indirect));
	assert_memory_equal(w.buf, indirect, sizeof(indirect));
	for (size_t i = 0; i < COUNT(in); i++) {
		struct hc_gossip_msg out;
		size_t len;

		w.len = 0;
		assert_int_equal(hc_gossip_msg_encode(&in[i], &w), 0);
		len = w.len;
		assert_int_equal(hc_gossip_msg_decode(w.buf, len, &out), 0);
		assert_int_equal(out.type, in[i].type);
		w.len = len;
		assert_int_equal(hc_gossip_msg_encode(&out, &w), 0);
		assert_int_equal(w.len, 2 * len);
		assert_memory_equal(w.buf, w.buf + len, len);
	}
	/* An ack without a coordinate has a nil Payload, as Go sends it. */
	w.len = 0;
	assert_int_equal(hc_gossip_msg_encode(&in[3], &w), 0);
	assert_memory_equal(w.buf, "\x02\x82\xa7Payload\xc0", 11);
	hc_gossip_mp_writer_fini(&w);
}

/* ---- serf messages ---- */

/* Decodes a CRC'd or plain user message carrying one serf message. */
static void decode_user(const struct serf_vec *v, struct tally *t, struct hc_gossip_serf_msg *m)
{
	assert_int_equal(decode_datagram(v->p, v->len, t), 0);
	assert_int_equal(t->n, 1);
	assert_int_equal(t->msgs[0].type, HC_GOSSIP_MSG_USER);
	assert_int_equal(hc_gossip_serf_decode(t->msgs[0].u.user.ptr, t->msgs[0].u.user.len, m), 0);
}

static void expect_reencoded_serf(const struct serf_vec *v, const struct hc_gossip_serf_msg *m,
				  bool crc)
{
	struct hc_gossip_mp_writer w;
	struct hc_gossip_msg user = { .type = HC_GOSSIP_MSG_USER };

	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_serf_encode(m, &w), 0);
	user.u.user = (struct hc_gossip_bytes){ w.buf, w.len };
	expect_reencoded_gossip(v, &user, 1, crc);
	hc_gossip_mp_writer_fini(&w);
}

static void test_join_and_leave_intents(void **state)
{
	struct serf_vec v = serf_vec_load("join_intent.hex");
	struct hc_gossip_serf_msg m;
	struct tally t;

	(void)state;
	decode_user(&v, &t, &m);
	assert_int_equal(m.type, HC_GOSSIP_SERF_JOIN);
	assert_int_equal(m.u.intent.ltime, 1);
	EXPECT_STR(m.u.intent.node, "b");
	expect_reencoded_serf(&v, &m, true);
	free(v.p);

	v = serf_vec_load("leave_intent.hex");
	decode_user(&v, &t, &m);
	assert_int_equal(m.type, HC_GOSSIP_SERF_LEAVE);
	assert_int_equal(m.u.intent.ltime, 3);
	EXPECT_STR(m.u.intent.node, "c");
	assert_false(m.u.intent.prune);
	expect_reencoded_serf(&v, &m, true);
	free(v.p);
}

static void test_user_event(void **state)
{
	struct serf_vec v = serf_vec_load("user_event.hex");
	struct hc_gossip_serf_msg m;
	struct tally t;

	(void)state;
	decode_user(&v, &t, &m);
	assert_int_equal(m.type, HC_GOSSIP_SERF_USER_EVENT);
	assert_true(m.u.event.cc);
	assert_int_equal(m.u.event.ltime, 1);
	EXPECT_STR(m.u.event.name, "deploy");
	EXPECT_STR(m.u.event.payload, "v1.2.3");
	expect_reencoded_serf(&v, &m, true);
	free(v.p);
}

static void test_query_ack_and_response(void **state)
{
	struct serf_vec v = serf_vec_load("query.hex");
	struct hc_gossip_serf_msg m;
	struct tally t;

	(void)state;
	decode_user(&v, &t, &m);
	assert_int_equal(m.type, HC_GOSSIP_SERF_QUERY);
	expect_bytes(m.u.query.addr, localhost, 4);
	assert_true(m.u.query.filters_nil);
	assert_int_equal(m.u.query.nfilters, 0);
	assert_int_equal(m.u.query.flags, HC_GOSSIP_SERF_QUERY_ACK);
	assert_int_equal(m.u.query.id, 1704678665);
	assert_int_equal(m.u.query.ltime, 1);
	EXPECT_STR(m.u.query.name, "whoami");
	EXPECT_STR(m.u.query.payload, "hello");
	assert_int_equal(m.u.query.port, 7946);
	assert_int_equal(m.u.query.relay_factor, 0);
	EXPECT_STR(m.u.query.source_node, "a");
	assert_int_equal(m.u.query.timeout_ns, 2000000000);
	expect_reencoded_serf(&v, &m, true);
	hc_gossip_serf_msg_fini(&m);
	free(v.p);

	v = serf_vec_load("query_ack.hex");
	decode_user(&v, &t, &m);
	assert_int_equal(m.type, HC_GOSSIP_SERF_QUERY_RESPONSE);
	assert_int_equal(m.u.response.flags, 1);
	EXPECT_STR(m.u.response.from, "b");
	assert_int_equal(m.u.response.id, 1704678665);
	assert_null(m.u.response.payload.ptr);
	expect_reencoded_serf(&v, &m, false);
	free(v.p);

	v = serf_vec_load("query_response.hex");
	decode_user(&v, &t, &m);
	assert_int_equal(m.u.response.flags, 0);
	EXPECT_STR(m.u.response.payload, "pong-from-b");
	expect_reencoded_serf(&v, &m, false);
	free(v.p);
}

static void test_filtered_query_filters(void **state)
{
	struct serf_vec v = serf_vec_load("query_filtered.hex");
	struct hc_gossip_serf_filter nodes, tag;
	struct hc_gossip_mp_writer w;
	struct hc_gossip_serf_msg m;
	struct tally t;

	(void)state;
	decode_user(&v, &t, &m);
	assert_int_equal(m.u.query.nfilters, 2);
	assert_int_equal(m.u.query.relay_factor, 1);
	EXPECT_STR(m.u.query.name, "filtered");
	assert_int_equal(hc_gossip_serf_filter_decode(m.u.query.filters[0], &nodes), 0);
	assert_int_equal(nodes.type, HC_GOSSIP_SERF_FILTER_NODE);
	assert_int_equal(nodes.nnodes, 1);
	EXPECT_STR(nodes.nodes[0], "b");
	assert_int_equal(hc_gossip_serf_filter_decode(m.u.query.filters[1], &tag), 0);
	assert_int_equal(tag.type, HC_GOSSIP_SERF_FILTER_TAG);
	EXPECT_STR(tag.expr, "db");
	EXPECT_STR(tag.tag, "role");
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_serf_filter_encode(&nodes, &w), 0);
	expect_writer(&w, m.u.query.filters[0].ptr, m.u.query.filters[0].len);
	assert_int_equal(hc_gossip_serf_filter_encode(&tag, &w), 0);
	expect_writer(&w, m.u.query.filters[1].ptr, m.u.query.filters[1].len);
	hc_gossip_mp_writer_fini(&w);
	expect_reencoded_serf(&v, &m, true);
	hc_gossip_serf_filter_fini(&nodes);
	hc_gossip_serf_filter_fini(&tag);
	hc_gossip_serf_msg_fini(&m);
	free(v.p);
}

static void test_relay_wraps_a_query_response(void **state)
{
	struct serf_vec v = serf_vec_load("relay.hex");
	struct hc_gossip_serf_msg m, inner;
	struct tally t;

	(void)state;
	decode_user(&v, &t, &m);
	assert_int_equal(m.type, HC_GOSSIP_SERF_RELAY);
	expect_bytes(m.u.relay.dest_ip, localhost, 4);
	assert_int_equal(m.u.relay.dest_port, 7948);
	EXPECT_STR(m.u.relay.dest_zone, "");
	EXPECT_STR(m.u.relay.dest_name, "c");
	assert_int_equal(hc_gossip_serf_decode(m.u.relay.inner.ptr, m.u.relay.inner.len, &inner), 0);
	assert_int_equal(inner.type, HC_GOSSIP_SERF_QUERY_RESPONSE);
	assert_int_equal(inner.u.response.id, 1556269891);
	assert_int_equal(inner.u.response.flags, 1);
	expect_reencoded_serf(&v, &m, false);
	free(v.p);
}

static void test_key_list_query_and_response(void **state)
{
	struct serf_vec v = serf_vec_load("keys_list_query.hex");
	struct hc_gossip_serf_key_response resp;
	struct hc_gossip_serf_key_request req;
	struct hc_gossip_mp_writer w;
	struct hc_gossip_serf_msg m;
	struct tally t;

	(void)state;
	decode_user(&v, &t, &m);
	EXPECT_STR(m.u.query.name, "_serf_list-keys");
	assert_int_equal(m.u.query.flags, 0);
	assert_int_equal(m.u.query.timeout_ns, 3200000000);
	assert_int_equal(hc_gossip_serf_key_request_decode(m.u.query.payload.ptr,
							   m.u.query.payload.len, &req), 0);
	EXPECT_STR(req.key, "");
	hc_gossip_mp_writer_init(&w, 0);
	req.key = (struct hc_gossip_bytes){ NULL, 0 };
	assert_int_equal(hc_gossip_serf_key_request_encode(&req, &w), 0);
	expect_writer(&w, m.u.query.payload.ptr, m.u.query.payload.len);
	expect_reencoded_serf(&v, &m, true);
	free(v.p);

	v = serf_vec_load("keys_list_response.hex");
	decode_user(&v, &t, &m);
	assert_int_equal(hc_gossip_serf_key_response_decode(m.u.response.payload.ptr,
							    m.u.response.payload.len, &resp), 0);
	assert_true(resp.keys_nil);
	EXPECT_STR(resp.message, "Keyring is empty (encryption not enabled)");
	EXPECT_STR(resp.primary_key, "");
	assert_false(resp.result);
	assert_int_equal(hc_gossip_serf_key_response_encode(&resp, &w), 0);
	expect_writer(&w, m.u.response.payload.ptr, m.u.response.payload.len);
	hc_gossip_serf_key_response_fini(&resp);
	hc_gossip_mp_writer_fini(&w);
	expect_reencoded_serf(&v, &m, false);
	free(v.p);
}

static void test_conflict_response_round_trips(void **state)
{
	struct hc_gossip_tag tag = { hc_gossip_bytes_str("role"), hc_gossip_bytes_str("web") };
	struct hc_gossip_serf_member in = {
		.known = true, .addr = { localhost, 4 }, .delegate_cur = 5, .delegate_max = 5,
		.delegate_min = 2, .name = { (const uint8_t *)"a", 1 }, .port = 7946,
		.protocol_cur = 2, .protocol_max = 5, .protocol_min = 1,
		.status = HC_GOSSIP_MEMBER_ALIVE, .tags = { &tag, 1 },
	}, out;
	struct hc_gossip_mp_writer w;
	size_t len;

	(void)state;
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_serf_conflict_encode(&in, &w), 0);
	assert_memory_equal(w.buf, "\x06\x8b\xa4" "Addr", 7);
	len = w.len;
	assert_int_equal(hc_gossip_serf_conflict_decode(w.buf, len, &out), 0);
	assert_true(out.known);
	EXPECT_STR(out.name, "a");
	assert_int_equal(out.port, 7946);
	assert_int_equal(out.protocol_max, 5);
	assert_int_equal(out.status, HC_GOSSIP_MEMBER_ALIVE);
	assert_int_equal(out.tags.n, 1);
	EXPECT_STR(out.tags.tags[0].value, "web");
	assert_int_equal(hc_gossip_serf_conflict_encode(&out, &w), 0);
	assert_memory_equal(w.buf, w.buf + len, len);
	hc_gossip_serf_member_fini(&out);
	/* Unknown member: 06 c0. */
	w.len = 0;
	in.known = false;
	assert_int_equal(hc_gossip_serf_conflict_encode(&in, &w), 0);
	expect_writer(&w, (const uint8_t *)"\x06\xc0", 2);
	assert_int_equal(hc_gossip_serf_conflict_decode((const uint8_t *)"\x06\xc0", 2, &out), 0);
	assert_false(out.known);
	hc_gossip_mp_writer_fini(&w);
}

/* ---- TCP push/pull ---- */

struct stream_expect {
	const char *file;
	size_t nodes;
	const char *first_node;
	size_t user_state_len;
	uint64_t event_ltime, ltime;
	size_t used_slots;
};

static void check_stream(const struct stream_expect *e)
{
	struct serf_vec v = serf_vec_load(e->file);
	struct hc_gossip_push_pull pp;
	struct hc_gossip_serf_push_pull spp;
	struct hc_gossip_mp_writer w, wrapped;
	uint8_t *msg;
	size_t msg_len, used = 0;

	assert_int_equal(hc_gossip_stream_open(NULL, v.p, v.len, &msg, &msg_len), 0);
	assert_int_equal(hc_gossip_push_pull_decode(msg, msg_len, &pp), 0);
	assert_true(pp.join);
	assert_int_equal(pp.nnodes, e->nodes);
	expect_bytes(pp.nodes[0].name, e->first_node, strlen(e->first_node));
	expect_bytes(pp.nodes[0].vsn, serf_vsn, 6);
	expect_bytes(pp.nodes[0].addr, localhost, 4);
	assert_int_equal(pp.nodes[0].state, HC_GOSSIP_STATE_ALIVE);
	assert_int_equal(pp.user_state.len, e->user_state_len);
	assert_int_equal(hc_gossip_serf_push_pull_decode(pp.user_state.ptr, pp.user_state.len,
							 &spp), 0);
	assert_int_equal(spp.nslots, HC_GOSSIP_SERF_EVENT_BUFFER);
	assert_int_equal(spp.event_ltime, e->event_ltime);
	assert_int_equal(spp.ltime, e->ltime);
	assert_int_equal(spp.query_ltime, 1);
	for (size_t i = 0; i < spp.nslots; i++) {
		if (!spp.slots[i].used)
			continue;
		/* The ring is indexed by LTime mod 512. */
		assert_int_equal(spp.slots[i].ltime % HC_GOSSIP_SERF_EVENT_BUFFER, i);
		assert_int_equal(spp.slots[i].nevents, 1);
		used++;
	}
	assert_int_equal(used, e->used_slots);

	/* Byte for byte: serf state, push/pull, then the LZW wrapper. */
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_serf_push_pull_encode(&spp, &w), 0);
	expect_writer(&w, pp.user_state.ptr, pp.user_state.len);
	assert_int_equal(hc_gossip_push_pull_encode(&pp, &w), 0);
	assert_int_equal(w.len, msg_len);
	assert_memory_equal(w.buf, msg, msg_len);
	hc_gossip_mp_writer_init(&wrapped, 0);
	assert_int_equal(hc_gossip_compress_wrap(w.buf, w.len, &wrapped), 0);
	expect_writer(&wrapped, v.p, v.len);

	hc_gossip_mp_writer_fini(&wrapped);
	hc_gossip_mp_writer_fini(&w);
	hc_gossip_serf_push_pull_fini(&spp);
	hc_gossip_push_pull_fini(&pp);
	free(msg);
	free(v.p);
}

static void test_push_pull_streams_reencode_with_identical_lzw(void **state)
{
	static const struct stream_expect streams[] = {
		{ "pushpull_tcp.hex", 1, "b", 585, 1, 1, 0 },
		{ "pushpull_tcp_reply.hex", 1, "a", 585, 1, 1, 0 },
		{ "pushpull_tcp_events.hex", 2, "a", 672, 3, 2, 2 },
		{ "pushpull_tcp_big_lzw.hex", 1, "a", 14886, 31, 1, 30 },
	};

	(void)state;
	for (size_t i = 0; i < COUNT(streams); i++)
		check_stream(&streams[i]);
}

static void test_push_pull_events_carry_names_and_payloads(void **state)
{
	struct serf_vec v = serf_vec_load("pushpull_tcp_events.hex");
	struct hc_gossip_push_pull pp;
	struct hc_gossip_serf_push_pull spp;
	uint8_t *msg;
	size_t msg_len;

	(void)state;
	assert_int_equal(hc_gossip_stream_open(NULL, v.p, v.len, &msg, &msg_len), 0);
	assert_int_equal(hc_gossip_push_pull_decode(msg, msg_len, &pp), 0);
	EXPECT_STR(pp.nodes[1].name, "b");
	expect_bytes(pp.nodes[1].meta, "\xff\x81\xa4role\xa2" "db", 10);
	assert_int_equal(hc_gossip_serf_push_pull_decode(pp.user_state.ptr, pp.user_state.len,
							 &spp), 0);
	assert_false(spp.slots[0].used);
	EXPECT_STR(spp.slots[1].events[0].name, "deploy");
	EXPECT_STR(spp.slots[1].events[0].payload, "v1.2.3");
	EXPECT_STR(spp.slots[2].events[0].name, "restart");
	EXPECT_STR(spp.slots[2].events[0].payload, "web");
	assert_int_equal(spp.nleft, 0);
	assert_int_equal(spp.nstatus, 2);
	for (size_t i = 0; i < spp.nstatus; i++)
		assert_int_equal(spp.status[i].ltime, spp.status[i].name.ptr[0] == 'b' ? 1 : 0);
	hc_gossip_serf_push_pull_fini(&spp);
	hc_gossip_push_pull_fini(&pp);
	free(msg);
	free(v.p);
}

static void test_user_stream_and_tcp_ping_framing(void **state)
{
	struct hc_gossip_mp_writer w;
	struct hc_gossip_bytes got;
	uint8_t *msg;
	size_t msg_len;

	(void)state;
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_user_stream_encode((const uint8_t *)"\x03xyz", 4, &w), 0);
	assert_memory_equal(w.buf, "\x08\x81\xaaUserMsgLen\x04\x03xyz", 18);
	assert_int_equal(hc_gossip_user_stream_decode(w.buf, w.len, &got), 0);
	expect_bytes(got, "\x03xyz", 4);
	assert_int_equal(hc_gossip_user_stream_decode(w.buf, w.len - 1, &got), -ENODATA);
	/* A stream may also be uncompressed; stream_open passes it through. */
	assert_int_equal(hc_gossip_stream_open(NULL, w.buf, w.len, &msg, &msg_len), 0);
	assert_int_equal(msg_len, w.len);
	free(msg);
	hc_gossip_mp_writer_fini(&w);
}

/* ---- LZW ---- */

static void test_lzw_empty_input_is_clear_then_eof(void **state)
{
	struct hc_gossip_mp_writer w;
	uint8_t *out;
	size_t len;

	(void)state;
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_lzw_compress(NULL, 0, &w), 0);
	expect_writer(&w, (const uint8_t *)"\x00\x03\x02", 3);
	assert_int_equal(hc_gossip_lzw_decompress((const uint8_t *)"\x00\x03\x02", 3, 10, &out,
						  &len), 0);
	assert_int_equal(len, 0);
	free(out);
	hc_gossip_mp_writer_fini(&w);
}

static void test_lzw_round_trips_through_table_resets(void **state)
{
	size_t sizes[] = { 1, 2, 255, 4096, 100000 };
	uint32_t seed = 12345;

	(void)state;
	for (size_t s = 0; s < COUNT(sizes); s++) {
		uint8_t *in = malloc(sizes[s]), *out;
		struct hc_gossip_mp_writer w;
		size_t len;

		assert_non_null(in);
		/* Mixed: random bytes with runs, so codes of every width occur. */
		for (size_t i = 0; i < sizes[s]; i++) {
			seed = seed * 1103515245 + 12345;
			in[i] = (seed >> 16) % 7 == 0 ? 'a' : (uint8_t)(seed >> 24);
		}
		hc_gossip_mp_writer_init(&w, 0);
		assert_int_equal(hc_gossip_lzw_compress(in, sizes[s], &w), 0);
		assert_int_equal(hc_gossip_lzw_decompress(w.buf, w.len, sizes[s], &out, &len), 0);
		assert_int_equal(len, sizes[s]);
		assert_memory_equal(out, in, len);
		free(out);
		/* One byte less room than needed is refused. */
		if (sizes[s] > 1)
			assert_int_equal(hc_gossip_lzw_decompress(w.buf, w.len, sizes[s] - 1, &out,
								  &len), -EMSGSIZE);
		hc_gossip_mp_writer_fini(&w);
		free(in);
	}
}

static void test_lzw_rejects_bad_codes_and_missing_eof(void **state)
{
	uint8_t *out;
	size_t len;

	(void)state;
	/* clear, then code 300 which is not defined yet: 256 | 300 << 9. */
	assert_int_equal(hc_gossip_lzw_decompress((const uint8_t *)"\x00\x59\x02", 3, 100, &out,
						  &len), -EBADMSG);
	/* clear, 'A', then the input ends without EOF. */
	assert_int_equal(hc_gossip_lzw_decompress((const uint8_t *)"\x00\x83\x00", 3, 100, &out,
						  &len), -ENODATA);
	assert_int_equal(hc_gossip_lzw_decompress(NULL, 0, 100, &out, &len), -ENODATA);
}

static void test_compression_bomb_is_bounded(void **state)
{
	size_t big = 4u * 1024 * 1024;
	uint8_t *zeros = calloc(1, big), *out;
	struct hc_gossip_mp_writer w;
	struct tally t;
	size_t len;

	(void)state;
	assert_non_null(zeros);
	hc_gossip_mp_writer_init(&w, 0);
	assert_int_equal(hc_gossip_compress_wrap(zeros, big, &w), 0);
	assert_true(w.len < 65536); /* fits a datagram ... */
	assert_int_equal(hc_gossip_compress_unwrap(w.buf, w.len, HC_GOSSIP_UDP_MAX, &out, &len),
			 -EMSGSIZE); /* ... but may not inflate past the bound */
	assert_int_equal(decode_datagram(w.buf, w.len, &t), -EMSGSIZE);
	assert_int_equal(hc_gossip_drop_reason(-EMSGSIZE), HC_GOSSIP_DROP_TOO_LARGE);
	hc_gossip_mp_writer_fini(&w);
	free(zeros);
}

/* ---- hostile input ---- */

static void test_every_truncation_of_every_vector_is_an_error(void **state)
{
	(void)state;
	for (size_t i = 0; i < COUNT(udp_vectors); i++) {
		struct serf_vec v = serf_vec_load(udp_vectors[i]);

		for (size_t len = 0; len < v.len; len++) {
			struct tally t;
			int err = decode_datagram(v.p, len, &t);

			if (err == 0)
				fail_msg("%s cut at %zu decoded", udp_vectors[i], len);
			assert_int_not_equal(hc_gossip_drop_reason(err), HC_GOSSIP_DROP_OTHER);
		}
		free(v.p);
	}
	for (size_t i = 0; i < COUNT(stream_vectors); i++) {
		struct serf_vec v = serf_vec_load(stream_vectors[i]);

		for (size_t len = 0; len < v.len; len++) {
			int err = decode_stream(v.p, len, NULL);

			/* A stream reader keeps reading on -ENODATA. */
			if (err != -ENODATA)
				fail_msg("%s cut at %zu: %d", stream_vectors[i], len, err);
		}
		free(v.p);
	}
}

static void test_any_corrupted_byte_under_crc_is_dropped(void **state)
{
	struct serf_vec v = serf_vec_load("query_filtered.hex");
	struct tally t;

	(void)state;
	for (size_t i = 1; i < v.len; i++) {
		v.p[i] ^= 0x20;
		assert_int_equal(decode_datagram(v.p, v.len, &t), -EILSEQ);
		assert_int_equal(t.n, 0);
		v.p[i] ^= 0x20;
	}
	assert_int_equal(hc_gossip_drop_reason(-EILSEQ), HC_GOSSIP_DROP_BAD_CRC);
	assert_string_equal(hc_gossip_drop_name(HC_GOSSIP_DROP_BAD_CRC), "bad_crc");
	free(v.p);
}

static void test_unknown_types_are_reported(void **state)
{
	struct hc_gossip_serf_filter f;
	struct hc_gossip_serf_msg sm;
	struct hc_gossip_msg m;
	struct tally t;

	(void)state;
	assert_int_equal(decode_datagram((const uint8_t *)"\x0e\x80", 2, &t), -ENOMSG);
	assert_int_equal(decode_datagram((const uint8_t *)"\xff", 1, &t), -ENOMSG);
	/* hasCrc is only valid outermost, encrypt only on streams. */
	assert_int_equal(hc_gossip_msg_decode((const uint8_t *)"\x0a", 1, &m), -ENOMSG);
	assert_int_equal(hc_gossip_serf_decode((const uint8_t *)"\x0a\x80", 2, &sm), -ENOMSG);
	assert_int_equal(hc_gossip_serf_decode((const uint8_t *)"\x02\x80", 2, &sm), -ENOMSG);
	assert_int_equal(hc_gossip_serf_filter_decode((struct hc_gossip_bytes){
				 (const uint8_t *)"\x02\x80", 2 }, &f), -ENOMSG);
	/* Compression algorithm 1 does not exist. */
	assert_int_equal(decode_datagram((const uint8_t *)"\x09\x82\xa4" "Algo\x01\xa3" "Buf\xa0",
					 14, &t), -EPROTONOSUPPORT);
	assert_int_equal(hc_gossip_drop_reason(-ENOMSG), HC_GOSSIP_DROP_UNKNOWN_TYPE);
	assert_string_equal(hc_gossip_drop_name(HC_GOSSIP_DROP_UNKNOWN_TYPE), "unknown_type");
	assert_int_equal(hc_gossip_drop_reason(-E2BIG), HC_GOSSIP_DROP_OTHER);
}

static void test_compound_keeps_parts_before_a_truncated_one(void **state)
{
	/* 3 parts declared: nack{SeqNo:1}, nack{SeqNo:2}, then 50 bytes missing. */
	static const uint8_t pkt[] = {
		0x07, 0x03, 0x00, 0x09, 0x00, 0x09, 0x00, 0x32,
		0x0b, 0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0x01,
		0x0b, 0x81, 0xa5, 'S', 'e', 'q', 'N', 'o', 0x02,
	};
	struct tally t;

	(void)state;
	assert_int_equal(decode_datagram(pkt, sizeof(pkt), &t), -ENODATA);
	assert_int_equal(t.n, 2);
	assert_int_equal(t.msgs[1].u.nack.seq_no, 2);
	/* A count byte promising 255 length slots in a 4-byte packet. */
	assert_int_equal(decode_datagram((const uint8_t *)"\x07\xff\x00\x01", 4, &t), -ENODATA);
	assert_int_equal(t.n, 0);
}

static void test_wrapper_nesting_is_bounded(void **state)
{
	struct hc_gossip_mp_writer w[2];
	struct tally t;
	int cur = 0;

	(void)state;
	hc_gossip_mp_writer_init(&w[0], 0);
	hc_gossip_mp_writer_init(&w[1], 0);
	hc_gossip_mp_write_raw(&w[0], "\x0b\x81\xa5SeqNo\x07", 9);
	for (int depth = 0; depth < 6; depth++) {
		struct hc_gossip_bytes part = { w[cur].buf, w[cur].len };

		w[!cur].len = 0;
		if (depth % 2)
			assert_int_equal(hc_gossip_compound_encode(&part, 1, &w[!cur]), 0);
		else
			assert_int_equal(hc_gossip_compress_wrap(part.ptr, part.len, &w[!cur]), 0);
		cur = !cur;
		assert_int_equal(decode_datagram(w[cur].buf, w[cur].len, &t),
				 depth < HC_GOSSIP_MAX_WRAP_DEPTH ? 0 : -ELOOP);
	}
	hc_gossip_mp_writer_fini(&w[0]);
	hc_gossip_mp_writer_fini(&w[1]);
}

static void test_forged_counts_do_not_allocate(void **state)
{
	/* Nodes = 2^31 with no node states: read more, never calloc(2^31). */
	static const uint8_t pp[] = {
		0x06, 0x83, 0xa4, 'J', 'o', 'i', 'n', 0xc3, 0xa5, 'N', 'o', 'd', 'e', 's',
		0xce, 0x80, 0x00, 0x00, 0x00, 0xac, 'U', 's', 'e', 'r', 'S', 't', 'a', 't',
		'e', 'L', 'e', 'n', 0x00,
	};
	static const uint8_t neg[] = {
		0x06, 0x81, 0xa5, 'N', 'o', 'd', 'e', 's', 0xff,
	};
	/* Encrypted stream frame announcing 4 GiB. */
	static const uint8_t frame[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x01 };
	struct hc_gossip_push_pull out;
	struct hc_gossip_keyring *kr = hc_gossip_keyring_new();
	uint8_t key[16] = { 0 }, *msg;
	size_t len;

	(void)state;
	assert_int_equal(hc_gossip_push_pull_decode(pp, sizeof(pp), &out), -EMSGSIZE);
	assert_int_equal(hc_gossip_push_pull_decode(neg, sizeof(neg), &out), -EBADMSG);
	assert_non_null(kr);
	assert_int_equal(hc_gossip_keyring_install(kr, key, sizeof(key)), 0);
	assert_int_equal(hc_gossip_stream_open(kr, frame, sizeof(frame), &msg, &len), -EMSGSIZE);
	hc_gossip_keyring_free(kr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_captured_datagram_decodes),
		cmocka_unit_test(test_every_captured_stream_decodes),
		cmocka_unit_test(test_ping_decodes_and_reencodes),
		cmocka_unit_test(test_ack_carries_a_vivaldi_coordinate),
		cmocka_unit_test(test_compressed_ack_recompresses_identically),
		cmocka_unit_test(test_alive_compound_with_crc),
		cmocka_unit_test(test_legacy_meta_is_the_role),
		cmocka_unit_test(test_suspect_ping_compound_and_dead_messages),
		cmocka_unit_test(test_other_memberlist_messages_round_trip),
		cmocka_unit_test(test_join_and_leave_intents),
		cmocka_unit_test(test_user_event),
		cmocka_unit_test(test_query_ack_and_response),
		cmocka_unit_test(test_filtered_query_filters),
		cmocka_unit_test(test_relay_wraps_a_query_response),
		cmocka_unit_test(test_key_list_query_and_response),
		cmocka_unit_test(test_conflict_response_round_trips),
		cmocka_unit_test(test_push_pull_streams_reencode_with_identical_lzw),
		cmocka_unit_test(test_push_pull_events_carry_names_and_payloads),
		cmocka_unit_test(test_user_stream_and_tcp_ping_framing),
		cmocka_unit_test(test_lzw_empty_input_is_clear_then_eof),
		cmocka_unit_test(test_lzw_round_trips_through_table_resets),
		cmocka_unit_test(test_lzw_rejects_bad_codes_and_missing_eof),
		cmocka_unit_test(test_compression_bomb_is_bounded),
		cmocka_unit_test(test_every_truncation_of_every_vector_is_an_error),
		cmocka_unit_test(test_any_corrupted_byte_under_crc_is_dropped),
		cmocka_unit_test(test_unknown_types_are_reported),
		cmocka_unit_test(test_compound_keeps_parts_before_a_truncated_one),
		cmocka_unit_test(test_wrapper_nesting_is_bounded),
		cmocka_unit_test(test_forged_counts_do_not_allocate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
