/* Stream messages under hostile input: their ends are found as the bytes
 * arrive, in work linear in the message however it is cut (a byte at a time
 * too), decoded once, and lies about sizes refused at once. */
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
#include "gossip/wire_int.h"
#include "serfvec.h"
#include "simnet.h"

/* Scans buf a byte at a time: returns the scan's verdict at the end, and
 * fails if it says anything but "more" earlier. */
static int scan_bytewise(struct hc_gossip_stream_scan *sc, const uint8_t *buf, size_t len)
{
	for (size_t i = 1; i < len; i++)
		if (hc_gossip_stream_scan(sc, buf, i) != 0)
			fail_msg("scan ended at %zu of %zu bytes", i, len);
	return hc_gossip_stream_scan(sc, buf, len);
}

/* Captured serf streams, whole and a byte at a time: the end is the end. */
static void test_captured_streams_end_where_they_end(void **state)
{
	static const char *const names[] = { "pushpull_tcp.hex", "pushpull_tcp_big_lzw.hex",
					     "pushpull_tcp_events.hex", "pushpull_tcp_reply.hex",
					     "encrypted_pushpull_tcp.hex" };

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct serf_vec v = serf_vec_load(names[i]);
		struct hc_gossip_stream_scan whole = { 0 }, bytewise = { 0 };

		assert_int_equal(hc_gossip_stream_scan(&whole, v.p, v.len), 1);
		assert_int_equal(whole.end, v.len);
		assert_int_equal(scan_bytewise(&bytewise, v.p, v.len), 1);
		assert_int_equal(bytewise.end, v.len);
		assert_true(bytewise.examined <= 2 * whole.examined + 16);
		free(v.p);
	}
}

/* A plaintext push/pull (the one stream whose end only parsing finds) of
 * n node states and user_state bytes of user state. */
static void push_pull_of(size_t n, size_t user_state, struct hc_gossip_mp_writer *w)
{
	struct hc_gossip_push_node *nodes = calloc(n, sizeof(*nodes));
	char (*names)[24] = calloc(n, sizeof(*names));
	uint8_t *us = calloc(1, user_state + 1);
	static const uint8_t ip[4] = { 10, 1, 0, 0 }, vsn[6] = { 1, 5, 5, 2, 5, 4 };
	struct hc_gossip_push_pull pp = { .join = false, .nodes = nodes, .nnodes = n };

	assert_true(nodes && names && us);
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "peer-%zu", i);
		nodes[i] = (struct hc_gossip_push_node){
			.addr = { ip, 4 }, .incarnation = 70000 + (uint32_t)i, .meta = { vsn, 2 },
			.name = { (const uint8_t *)names[i], strlen(names[i]) },
			.port = 7946, .state = HC_GOSSIP_STATE_ALIVE, .vsn = { vsn, 6 },
		};
	}
	pp.user_state = (struct hc_gossip_bytes){ us, user_state };
	hc_gossip_mp_writer_init(w, 0);
	assert_int_equal(hc_gossip_push_pull_encode(&pp, w), 0);
	free(nodes);
	free(names);
	free(us);
}

struct fed {
	uint64_t decodes, scanned;
	size_t reply_len;
};

/* Feeds msg to a fresh engine's stream receiver a byte at a time, as a
 * transport would after each one-byte read. */
static struct fed feed_bytewise(const uint8_t *msg, size_t len)
{
	struct hc_simnet *net = hc_simnet_new(1, 42);
	struct hc_ml_delegate d = { 0 };
	struct hc_gossip_stream_scan scan = { 0 };
	struct hc_ml_config cfg;
	struct hc_ml_stats st;
	struct hc_ml *ml;
	struct fed out;

	hc_ml_config_lan(&cfg);
	cfg.name = "n0";
	cfg.addr = *hc_simnet_addr(net, 0);
	ml = hc_ml_new(hc_simnet_loop(net), &cfg, &hc_simnet_ops, hc_simnet_ctx(net, 0), &d);
	assert_non_null(ml);
	for (size_t i = 1; i <= len; i++) {
		struct hc_gossip_mp_writer reply;
		int r;

		hc_gossip_mp_writer_init(&reply, HC_GOSSIP_STREAM_MAX);
		r = hc_ml_on_stream(ml, hc_simnet_addr(net, 0), &scan, msg, i, &reply);
		if (i < len && r != -ENODATA)
			fail_msg("answered %d at %zu of %zu bytes", r, i, len);
		if (i == len) {
			assert_int_equal(r, 0);
			out.reply_len = reply.len;
		}
		hc_gossip_mp_writer_fini(&reply);
	}
	hc_ml_stats(ml, &st);
	out.decodes = st.stream_decodes;
	out.scanned = st.stream_scanned;
	hc_ml_free(ml);
	hc_simnet_free(net);
	return out;
}

/* Before, every read decoded the buffer from its start: n reads of an
 * n-byte message, O(n^2). Now one decode, and the scans look at each byte
 * about once: twice the message, twice the work. */
static void test_push_pull_bytewise_is_linear(void **state)
{
	struct hc_gossip_mp_writer small, big;
	struct fed a, b;

	(void)state;
	push_pull_of(500, 20000, &small);
	push_pull_of(1000, 40000, &big);
	a = feed_bytewise(small.buf, small.len);
	b = feed_bytewise(big.buf, big.len);
	print_message("push/pull of %zu bytes a byte at a time: %llu decode(s), %llu bytes scanned\n",
		      big.len, (unsigned long long)b.decodes, (unsigned long long)b.scanned);
	assert_int_equal(a.decodes, 1);
	assert_int_equal(b.decodes, 1);
	assert_true(a.reply_len > 0 && b.reply_len > 0);
	assert_true(b.scanned <= 2 * big.len);
	assert_true(b.scanned <= 2 * a.scanned + 64);
	hc_gossip_mp_writer_fini(&small);
	hc_gossip_mp_writer_fini(&big);
}

/* Compressed (as Go sends streams), a byte at a time: also one decode. */
static void test_compressed_push_pull_bytewise(void **state)
{
	struct hc_gossip_mp_writer msg, z;
	struct fed f;

	(void)state;
	push_pull_of(300, 5000, &msg);
	hc_gossip_mp_writer_init(&z, 0);
	assert_int_equal(hc_gossip_compress_wrap(msg.buf, msg.len, &z), 0);
	f = feed_bytewise(z.buf, z.len);
	assert_int_equal(f.decodes, 1);
	assert_true(f.scanned <= 64); /* the wrapper's few headers */
	hc_gossip_mp_writer_fini(&msg);
	hc_gossip_mp_writer_fini(&z);
}

#define BYTES(s) (const uint8_t *)(s), sizeof(s) - 1

/* Sizes no stream can hold are refused with the first bytes that say them. */
static void test_lies_refused_at_once(void **state)
{
	static const struct {
		const char *what;
		const uint8_t *buf;
		size_t len;
		int want;
	} cases[] = {
		{ "encrypted frame of 4 GiB", BYTES("\x0a\xff\xff\xff\xff"), -EMSGSIZE },
		{ "ping holding a 4 GiB bin", BYTES("\x00\x81\xa1x\xc6\xff\xff\xff\xff"),
		  -EMSGSIZE },
		{ "compress map of 2^32-1 pairs", BYTES("\x09\xdf\xff\xff\xff\xff"), -EMSGSIZE },
		{ "push/pull of 10^9 nodes",
		  BYTES("\x06\x83\xa4Join\xc2\xa5Nodes\xce\x3b\x9a\xca\x00"
			"\xacUserStateLen\x00"),
		  -EMSGSIZE },
		{ "push/pull of 32 MiB user state",
		  BYTES("\x06\x83\xa4Join\xc2\xa5Nodes\x00"
			"\xacUserStateLen\xce\x02\x00\x00\x00"),
		  -EMSGSIZE },
		{ "the byte msgpack never uses", BYTES("\x00\xc1"), -EBADMSG },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hc_gossip_stream_scan sc = { 0 };
		int r = hc_gossip_stream_scan(&sc, cases[i].buf, cases[i].len);

		if (r != cases[i].want)
			fail_msg("%s: %d, want %d", cases[i].what, r, cases[i].want);
		/* and it stays refused */
		assert_int_equal(hc_gossip_stream_scan(&sc, cases[i].buf, cases[i].len), r);
	}
}

/* Every msgpack header cut anywhere waits for its rest (the fuzzer found
 * a fixext's type byte read before it came). */
static void test_cut_headers_wait(void **state)
{
	static const uint8_t heads[][10] = {
		{ 0xd8, 0x00 }, { 0xc7, 0x01, 0x00 }, { 0xc8, 0x00, 0x01, 0x00 },
		{ 0xc9, 0x00, 0x00, 0x00, 0x01, 0x00 }, { 0xcb, 0, 0, 0, 0, 0, 0, 0, 0 },
		{ 0xcf, 0, 0, 0, 0, 0, 0, 0, 0 }, { 0xdb, 0, 0, 0, 1 }, { 0xdd, 0, 0, 0, 1 },
	};
	static const size_t hlen[] = { 2, 3, 4, 6, 9, 9, 5, 5 };

	(void)state;
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		uint8_t msg[16] = { HC_GOSSIP_MSG_PING };
		struct hc_gossip_stream_scan sc = { 0 };

		memcpy(msg + 1, heads[i], hlen[i]);
		for (size_t cut = 1; cut <= hlen[i]; cut++) {
			assert_int_equal(hc_gossip_stream_scan(&sc, msg, cut), 0);
			assert_true(sc.pos <= cut);
		}
	}
}

/* No stream message type: done at its first byte, for the decoder to drop. */
static void test_unknown_type_ends_at_once(void **state)
{
	struct hc_gossip_stream_scan sc = { 0 };

	(void)state;
	assert_int_equal(hc_gossip_stream_scan(&sc, (const uint8_t *)"\x04\x81", 2), 1);
	assert_int_equal(sc.end, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_captured_streams_end_where_they_end),
		cmocka_unit_test(test_push_pull_bytewise_is_linear),
		cmocka_unit_test(test_compressed_push_pull_bytewise),
		cmocka_unit_test(test_lies_refused_at_once),
		cmocka_unit_test(test_cut_headers_wait),
		cmocka_unit_test(test_unknown_type_ends_at_once),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
