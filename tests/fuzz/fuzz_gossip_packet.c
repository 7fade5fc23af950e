/* libFuzzer harness: one input as a received gossip datagram and as a TCP stream, through every decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/keyring_int.h"
#include "gossip/wire_int.h"
#include "log/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoding is lenient, encoding canonical: re-encoding what we decoded
 * must be a fixed point after one round, or encoder and decoder disagree. */
static void check_fixed_point(const struct hc_gossip_mp_writer *first,
			      const struct hc_gossip_mp_writer *second)
{
	if (first->err || second->err || first->len != second->len ||
	    memcmp(first->buf, second->buf, first->len) != 0)
		__builtin_trap();
}

static void serf_round_trip(const struct hc_gossip_serf_msg *m)
{
	struct hc_gossip_mp_writer a, b;
	struct hc_gossip_serf_msg again;

	hc_gossip_mp_writer_init(&a, 0);
	hc_gossip_mp_writer_init(&b, 0);
	if (hc_gossip_serf_encode(m, &a) == 0 && hc_gossip_serf_decode(a.buf, a.len, &again) == 0) {
		hc_gossip_serf_encode(&again, &b);
		check_fixed_point(&a, &b);
		hc_gossip_serf_msg_fini(&again);
	}
	hc_gossip_mp_writer_fini(&a);
	hc_gossip_mp_writer_fini(&b);
}

/* Query and response payloads whose meaning depends on the query name;
 * a fuzzer cannot know it, so every payload is tried as each kind. */
static void decode_payload(struct hc_gossip_bytes p)
{
	struct hc_gossip_serf_key_request req;
	struct hc_gossip_serf_key_response resp;
	struct hc_gossip_serf_member member;
	struct hc_gossip_serf_filter filter;

	if (!p.ptr)
		return;
	hc_gossip_serf_key_request_decode(p.ptr, p.len, &req);
	if (hc_gossip_serf_key_response_decode(p.ptr, p.len, &resp) == 0)
		hc_gossip_serf_key_response_fini(&resp);
	if (hc_gossip_serf_conflict_decode(p.ptr, p.len, &member) == 0)
		hc_gossip_serf_member_fini(&member);
	if (hc_gossip_serf_filter_decode(p, &filter) == 0)
		hc_gossip_serf_filter_fini(&filter);
}

static void decode_serf(struct hc_gossip_bytes raw, int depth)
{
	struct hc_gossip_serf_msg m;

	if (hc_gossip_serf_decode(raw.ptr, raw.len, &m) != 0)
		return;
	serf_round_trip(&m);
	switch (m.type) {
	case HC_GOSSIP_SERF_QUERY:
		for (size_t i = 0; i < m.u.query.nfilters; i++)
			decode_payload(m.u.query.filters[i]);
		decode_payload(m.u.query.payload);
		break;
	case HC_GOSSIP_SERF_QUERY_RESPONSE:
		decode_payload(m.u.response.payload);
		break;
	case HC_GOSSIP_SERF_RELAY:
		if (depth == 0)
			decode_serf(m.u.relay.inner, depth + 1);
		break;
	default:
		break;
	}
	hc_gossip_serf_msg_fini(&m);
}

static void msg_round_trip(const struct hc_gossip_msg *m)
{
	struct hc_gossip_mp_writer a, b;
	struct hc_gossip_msg again;

	hc_gossip_mp_writer_init(&a, 0);
	hc_gossip_mp_writer_init(&b, 0);
	if (hc_gossip_msg_encode(m, &a) == 0 && hc_gossip_msg_decode(a.buf, a.len, &again) == 0) {
		hc_gossip_msg_encode(&again, &b);
		check_fixed_point(&a, &b);
	}
	hc_gossip_mp_writer_fini(&a);
	hc_gossip_mp_writer_fini(&b);
}

static void on_msg(const struct hc_gossip_msg *m, void *arg)
{
	struct hc_gossip_coord coord;
	struct hc_gossip_tags tags;

	(void)arg;
	msg_round_trip(m);
	switch (m->type) {
	case HC_GOSSIP_MSG_USER:
		decode_serf(m->u.user, 0);
		break;
	case HC_GOSSIP_MSG_ACK:
		hc_gossip_coord_decode(m->u.ack.payload, &coord);
		break;
	case HC_GOSSIP_MSG_ALIVE:
		if (hc_gossip_meta_decode(m->u.alive.meta, &tags) == 0)
			hc_gossip_tags_fini(&tags);
		break;
	default:
		break;
	}
}

static void decode_push_pull(const uint8_t *msg, size_t len)
{
	struct hc_gossip_push_pull pp;
	struct hc_gossip_serf_push_pull spp;
	struct hc_gossip_tags tags;

	if (hc_gossip_push_pull_decode(msg, len, &pp) != 0)
		return;
	for (size_t i = 0; i < pp.nnodes; i++)
		if (hc_gossip_meta_decode(pp.nodes[i].meta, &tags) == 0)
			hc_gossip_tags_fini(&tags);
	if (hc_gossip_serf_push_pull_decode(pp.user_state.ptr, pp.user_state.len, &spp) == 0) {
		struct hc_gossip_mp_writer a, b;
		struct hc_gossip_serf_push_pull again;

		hc_gossip_mp_writer_init(&a, 0);
		hc_gossip_mp_writer_init(&b, 0);
		if (hc_gossip_serf_push_pull_encode(&spp, &a) == 0 &&
		    hc_gossip_serf_push_pull_decode(a.buf, a.len, &again) == 0) {
			hc_gossip_serf_push_pull_encode(&again, &b);
			check_fixed_point(&a, &b);
			hc_gossip_serf_push_pull_fini(&again);
		}
		hc_gossip_mp_writer_fini(&a);
		hc_gossip_mp_writer_fini(&b);
		hc_gossip_serf_push_pull_fini(&spp);
	}
	hc_gossip_push_pull_fini(&pp);
}

static void decode_stream(const struct hc_gossip_keyring *kr, const uint8_t *data, size_t size)
{
	struct hc_gossip_bytes user;
	struct hc_gossip_msg m;
	uint8_t *msg;
	size_t len;

	if (hc_gossip_stream_open(kr, data, size, &msg, &len) != 0)
		return;
	if (len > 0 && msg[0] == HC_GOSSIP_MSG_PUSH_PULL)
		decode_push_pull(msg, len);
	else if (hc_gossip_user_stream_decode(msg, len, &user) == 0)
		decode_serf(user, 0);
	else if (hc_gossip_msg_decode(msg, len, &m) == 0) /* TCP ping, ack, err */
		on_msg(&m, NULL);
	free(msg);
}

/* The key of the captured encrypted vectors, so the seed corpus decrypts. */
static struct hc_gossip_keyring *test_keyring(void)
{
	static struct hc_gossip_keyring *kr;
	uint8_t key[32];

	if (kr)
		return kr;
	hc_log_set_level(HC_LOG_ERROR);
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)i;
	kr = hc_gossip_keyring_new();
	if (!kr || hc_gossip_keyring_install(kr, key, sizeof(key)) != 0)
		abort();
	return kr;
}

/* The end of a stream message is found alike whether it comes whole or in
 * three reads, inside the input, for about the same work. */
static void scan_stream(const uint8_t *data, size_t size)
{
	struct hc_gossip_stream_scan whole = { 0 }, cut = { 0 };
	size_t a = size / 3, b = 2 * size / 3;
	int r = hc_gossip_stream_scan(&whole, data, size), q;

	q = hc_gossip_stream_scan(&cut, data, a);
	if (q == 0)
		q = hc_gossip_stream_scan(&cut, data, b);
	if (q == 0)
		q = hc_gossip_stream_scan(&cut, data, size);
	if (q != r || (r == 1 && (cut.end != whole.end || whole.end > size)))
		__builtin_trap();
	if (cut.examined > 2 * whole.examined + 32)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct hc_gossip_keyring *kr = test_keyring();

	hc_gossip_datagram_walk(NULL, data, size, on_msg, NULL);
	hc_gossip_datagram_walk(kr, data, size, on_msg, NULL);
	decode_stream(NULL, data, size);
	decode_stream(kr, data, size);
	scan_stream(data, size);
	return 0;
}
