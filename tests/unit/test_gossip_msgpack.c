/* gossip msgpack: go-msgpack 0.5.5 encodings, lenient decoding, bounds on hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/msgpack_int.h"

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ })
#define NBYTES(...) sizeof((const uint8_t[]){ __VA_ARGS__ })

/* Asserts that the writer holds exactly the expected bytes, then empties it. */
static void expect_written(struct hc_gossip_mp_writer *w, const uint8_t *want, size_t len)
{
	assert_int_equal(hc_gossip_mp_writer_error(w), 0);
	assert_int_equal(w->len, len);
	assert_memory_equal(w->buf, want, len);
	w->len = 0;
}

#define EXPECT(w, ...) expect_written((w), BYTES(__VA_ARGS__), NBYTES(__VA_ARGS__))

static void test_integers_use_the_smallest_form_for_the_value(void **state)
{
	struct hc_gossip_mp_writer w;

	(void)state;
	hc_gossip_mp_writer_init(&w, 0);
	hc_gossip_mp_write_uint(&w, 0);
	EXPECT(&w, 0x00);
	hc_gossip_mp_write_uint(&w, 127);
	EXPECT(&w, 0x7f);
	hc_gossip_mp_write_uint(&w, 128);
	EXPECT(&w, 0xcc, 0x80);
	hc_gossip_mp_write_uint(&w, 7946);
	EXPECT(&w, 0xcd, 0x1f, 0x0a);
	hc_gossip_mp_write_uint(&w, 2000000000);
	EXPECT(&w, 0xce, 0x77, 0x35, 0x94, 0x00);
	hc_gossip_mp_write_uint(&w, 6400000000u);
	EXPECT(&w, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x7d, 0x78, 0x40, 0x00);
	/* Non-negative signed values take the unsigned forms, as Go does. */
	hc_gossip_mp_write_int(&w, 3200000000);
	EXPECT(&w, 0xce, 0xbe, 0xbc, 0x20, 0x00);
	hc_gossip_mp_write_int(&w, -1);
	EXPECT(&w, 0xff);
	hc_gossip_mp_write_int(&w, -32);
	EXPECT(&w, 0xe0);
	hc_gossip_mp_write_int(&w, -33);
	EXPECT(&w, 0xd0, 0xdf);
	hc_gossip_mp_write_int(&w, -129);
	EXPECT(&w, 0xd1, 0xff, 0x7f);
	hc_gossip_mp_write_int(&w, INT64_MIN);
	EXPECT(&w, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);
	hc_gossip_mp_writer_fini(&w);
}

static void test_strings_and_bytes_use_the_str_family_without_str8(void **state)
{
	struct hc_gossip_mp_writer w;
	uint8_t data[70000];
	struct hc_gossip_bytes b = { data, 31 };

	(void)state;
	memset(data, 'x', sizeof(data));
	hc_gossip_mp_writer_init(&w, 0);
	hc_gossip_mp_write_bytes(&w, b);
	assert_int_equal(w.buf[0], 0xbf);
	assert_int_equal(w.len, 32);
	w.len = 0;
	b.len = 41;
	hc_gossip_mp_write_bytes(&w, b);
	assert_memory_equal(w.buf, BYTES(0xda, 0x00, 0x29), 3);
	assert_int_equal(w.len, 44);
	w.len = 0;
	b.len = 65536;
	hc_gossip_mp_write_bytes(&w, b);
	assert_memory_equal(w.buf, BYTES(0xdb, 0x00, 0x01, 0x00, 0x00), 5);
	w.len = 0;
	/* nil and empty are different on the wire. */
	hc_gossip_mp_write_bytes(&w, (struct hc_gossip_bytes){ NULL, 0 });
	EXPECT(&w, 0xc0);
	hc_gossip_mp_write_bytes(&w, (struct hc_gossip_bytes){ data, 0 });
	EXPECT(&w, 0xa0);
	hc_gossip_mp_write_float(&w, 1.5);
	EXPECT(&w, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0);
	hc_gossip_mp_write_bool(&w, true);
	hc_gossip_mp_write_bool(&w, false);
	EXPECT(&w, 0xc3, 0xc2);
	hc_gossip_mp_write_array(&w, 512);
	hc_gossip_mp_write_map(&w, 15);
	hc_gossip_mp_write_map(&w, 70000);
	EXPECT(&w, 0xdc, 0x02, 0x00, 0x8f, 0xdf, 0x00, 0x01, 0x11, 0x70);
	hc_gossip_mp_writer_fini(&w);
}

static void test_decoder_accepts_every_encoding_go_accepts(void **state)
{
	static const uint8_t in[] = {
		0xd9, 0x02, 'h', 'i',       /* str8 as bytes */
		0xc4, 0x01, 0x07,           /* bin8 as bytes */
		0xc5, 0x00, 0x01, 0x08,     /* bin16 as bytes */
		0xc0,                       /* nil as bytes */
		0xd0, 0x05,                 /* int8 5 as uint */
		0xcf, 0, 0, 0, 0, 0, 0, 0, 9, /* uint64 9 as uint */
		0x01,                       /* fixint 1 as bool */
		0xc0,                       /* nil as bool */
		0xca, 0x3f, 0xc0, 0x00, 0x00, /* float32 1.5 as float */
		0x07,                       /* int 7 as float */
		0xd1, 0xff, 0x00,           /* int16 -256 as int */
	};
	struct hc_gossip_mp_reader r;
	struct hc_gossip_bytes b;
	uint64_t u;
	int64_t i;
	double f;
	bool v = true;

	(void)state;
	hc_gossip_mp_reader_init(&r, in, sizeof(in));
	assert_int_equal(hc_gossip_mp_read_str(&r, &b), 0);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.ptr, "hi", 2);
	assert_int_equal(hc_gossip_mp_read_bytes(&r, &b), 0);
	assert_int_equal(b.ptr[0], 7);
	assert_int_equal(hc_gossip_mp_read_bytes(&r, &b), 0);
	assert_int_equal(b.ptr[0], 8);
	assert_int_equal(hc_gossip_mp_read_bytes(&r, &b), 0);
	assert_null(b.ptr);
	assert_int_equal(hc_gossip_mp_read_uint(&r, UINT64_MAX, &u), 0);
	assert_int_equal(u, 5);
	assert_int_equal(hc_gossip_mp_read_uint(&r, UINT8_MAX, &u), 0);
	assert_int_equal(u, 9);
	assert_int_equal(hc_gossip_mp_read_bool(&r, &v), 0);
	assert_true(v);
	assert_int_equal(hc_gossip_mp_read_bool(&r, &v), 0);
	assert_false(v);
	assert_int_equal(hc_gossip_mp_read_float(&r, &f), 0);
	assert_true(f == 1.5);
	assert_int_equal(hc_gossip_mp_read_float(&r, &f), 0);
	assert_true(f == 7.0);
	assert_int_equal(hc_gossip_mp_read_int(&r, &i), 0);
	assert_int_equal(i, -256);
	assert_int_equal(hc_gossip_mp_remaining(&r), 0);
}

static void test_decoder_refuses_what_go_refuses(void **state)
{
	struct hc_gossip_mp_reader r;
	struct hc_gossip_bytes b;
	uint64_t u;
	bool v;

	(void)state;
	hc_gossip_mp_reader_init(&r, BYTES(0xc4, 0x01, 0x07), 3);
	assert_int_equal(hc_gossip_mp_read_str(&r, &b), -EBADMSG); /* bin into a string */
	hc_gossip_mp_reader_init(&r, BYTES(0xff), 1);
	assert_int_equal(hc_gossip_mp_read_uint(&r, UINT64_MAX, &u), -EBADMSG);
	hc_gossip_mp_reader_init(&r, BYTES(0xcd, 0x01, 0x00), 3);
	assert_int_equal(hc_gossip_mp_read_uint(&r, UINT8_MAX, &u), -EBADMSG); /* 256 into u8 */
	hc_gossip_mp_reader_init(&r, BYTES(0x02), 1);
	assert_int_equal(hc_gossip_mp_read_bool(&r, &v), -EBADMSG);
	hc_gossip_mp_reader_init(&r, BYTES(0xc1), 1);
	assert_int_equal(hc_gossip_mp_skip(&r), -EBADMSG);
	hc_gossip_mp_reader_init(&r, BYTES(0xa1, 'x'), 2);
	assert_int_equal(hc_gossip_mp_read_uint(&r, UINT64_MAX, &u), -EBADMSG);
}

static void test_huge_length_fields_fail_without_reading_or_allocating(void **state)
{
	static const uint8_t huge[][5] = {
		{ 0xdb, 0xff, 0xff, 0xff, 0xff }, /* str32 of 4 GiB */
		{ 0xc6, 0x7f, 0xff, 0xff, 0xff }, /* bin32 */
		{ 0xdd, 0xff, 0xff, 0xff, 0xff }, /* array32 */
		{ 0xdf, 0x80, 0x00, 0x00, 0x00 }, /* map32 */
		{ 0xc9, 0xff, 0xff, 0xff, 0xff }, /* ext32 */
	};
	struct hc_gossip_mp_reader r;
	uint32_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		hc_gossip_mp_reader_init(&r, huge[i], sizeof(huge[i]));
		assert_int_equal(hc_gossip_mp_skip(&r), -ENODATA);
	}
	/* A count is checked against what remains: 3 elements need 3 bytes. */
	hc_gossip_mp_reader_init(&r, BYTES(0x93, 0x01, 0x02), 3);
	assert_int_equal(hc_gossip_mp_read_array(&r, &n, NULL), -ENODATA);
	hc_gossip_mp_reader_init(&r, BYTES(0x82, 0xa0, 0x01, 0xa0), 4);
	assert_int_equal(hc_gossip_mp_read_map(&r, &n, NULL), -ENODATA);
}

static void test_deep_nesting_is_refused(void **state)
{
	uint8_t deep[64];
	struct hc_gossip_mp_reader r;

	(void)state;
	memset(deep, 0x91, sizeof(deep)); /* [[[[...]]]] */
	deep[sizeof(deep) - 1] = 0x01;
	hc_gossip_mp_reader_init(&r, deep, sizeof(deep));
	assert_int_equal(hc_gossip_mp_skip(&r), -ELOOP);
	/* Exactly the bound is fine. */
	hc_gossip_mp_reader_init(&r, deep + sizeof(deep) - 1 - HC_GOSSIP_MP_MAX_DEPTH,
				 HC_GOSSIP_MP_MAX_DEPTH + 1);
	assert_int_equal(hc_gossip_mp_skip(&r), 0);
	assert_int_equal(hc_gossip_mp_remaining(&r), 0);
	/* Depth already used by the caller counts too. */
	r.depth = 0;
	for (unsigned i = 0; i < HC_GOSSIP_MP_MAX_DEPTH; i++)
		assert_int_equal(hc_gossip_mp_enter(&r), 0);
	assert_int_equal(hc_gossip_mp_enter(&r), -ELOOP);
}

static void test_skip_handles_every_type_and_every_truncation(void **state)
{
	static const uint8_t value[] = {
		0x8a,                                     /* map of 10 */
		0xa1, 'a', 0xc0,                          /* nil */
		0xa1, 'b', 0xc3,                          /* true */
		0xa1, 'c', 0xd2, 0xff, 0xff, 0xff, 0xfe,  /* int32 */
		0xa1, 'd', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0,  /* float64 */
		0xa1, 'e', 0xd9, 0x01, 'z',               /* str8 */
		0xa1, 'f', 0xc5, 0x00, 0x02, 1, 2,        /* bin16 */
		0xa1, 'g', 0xd6, 0x01, 1, 2, 3, 4,        /* fixext4 */
		0xa1, 'h', 0xc7, 0x02, 0x05, 9, 9,        /* ext8 */
		0xa1, 'i', 0xdc, 0x00, 0x02, 0x90, 0x80,  /* array16 [[], {}] */
		0xa1, 'j', 0xde, 0x00, 0x01, 0xa0, 0xe0,  /* map16 {"": -32} */
	};
	struct hc_gossip_mp_reader r;

	(void)state;
	hc_gossip_mp_reader_init(&r, value, sizeof(value));
	assert_int_equal(hc_gossip_mp_skip(&r), 0);
	assert_int_equal(hc_gossip_mp_remaining(&r), 0);
	for (size_t len = 0; len < sizeof(value); len++) {
		hc_gossip_mp_reader_init(&r, value, len);
		assert_int_equal(hc_gossip_mp_skip(&r), -ENODATA);
		assert_true(r.pos <= len);
	}
}

struct sample {
	bool flag;
	uint16_t port;
	uint64_t big;
	int64_t neg;
	double f;
	struct hc_gossip_bytes name, blob;
};

static const struct hc_gossip_field sample_fields[] = {
	{ "Big", HC_GOSSIP_F_U64, offsetof(struct sample, big), false, NULL, NULL },
	{ "Blob", HC_GOSSIP_F_BYTES, offsetof(struct sample, blob), true, NULL, NULL },
	{ "F", HC_GOSSIP_F_F64, offsetof(struct sample, f), false, NULL, NULL },
	{ "Flag", HC_GOSSIP_F_BOOL, offsetof(struct sample, flag), false, NULL, NULL },
	{ "Name", HC_GOSSIP_F_STR, offsetof(struct sample, name), false, NULL, NULL },
	{ "Neg", HC_GOSSIP_F_I64, offsetof(struct sample, neg), false, NULL, NULL },
	{ "Port", HC_GOSSIP_F_U16, offsetof(struct sample, port), true, NULL, NULL },
};

static void test_struct_keys_are_sorted_on_output_and_free_on_input(void **state)
{
	static const uint8_t shuffled[] = {
		0x86,
		0xa4, 'P', 'o', 'r', 't', 0xcd, 0x1f, 0x0a,
		0xa7, 'U', 'n', 'k', 'n', 'o', 'w', 'n', 0x92, 0x01, 0x81, 0xa0, 0xc0,
		0xa4, 'N', 'a', 'm', 'e', 0xa1, 'a',
		0xa3, 'N', 'e', 'g', 0xfe,
		0xa4, 'F', 'l', 'a', 'g', 0xc3,
		0xa3, 'B', 'i', 'g', 0x2a,
	};
	static const uint8_t sorted[] = {
		0x86,
		0xa3, 'B', 'i', 'g', 0x2a,
		0xa1, 'F', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0,
		0xa4, 'F', 'l', 'a', 'g', 0xc3,
		0xa4, 'N', 'a', 'm', 'e', 0xa1, 'a',
		0xa3, 'N', 'e', 'g', 0xfe,
		0xa4, 'P', 'o', 'r', 't', 0xcd, 0x1f, 0x0a,
	};
	struct sample s = { 0 };
	struct hc_gossip_mp_reader r;
	struct hc_gossip_mp_writer w;

	(void)state;
	hc_gossip_mp_reader_init(&r, shuffled, sizeof(shuffled));
	assert_int_equal(hc_gossip_mp_read_struct(&r, sample_fields, 7, &s), 0);
	assert_int_equal(r.depth, 0);
	assert_true(s.flag);
	assert_int_equal(s.port, 7946);
	assert_int_equal(s.big, 42);
	assert_int_equal(s.neg, -2);
	assert_null(s.blob.ptr);
	/* Blob is empty and omitempty, so it is left out and the map has 6. */
	hc_gossip_mp_writer_init(&w, 0);
	hc_gossip_mp_write_struct(&w, sample_fields, 7, &s);
	expect_written(&w, sorted, sizeof(sorted));
	hc_gossip_mp_writer_fini(&w);
	/* A non-string key is malformed. */
	hc_gossip_mp_reader_init(&r, BYTES(0x81, 0x01, 0x01), 3);
	assert_int_equal(hc_gossip_mp_read_struct(&r, sample_fields, 7, &s), -EBADMSG);
}

static void test_writer_errors_are_sticky_and_bounded(void **state)
{
	struct hc_gossip_mp_writer w;
	size_t len;
	uint8_t *buf;

	(void)state;
	hc_gossip_mp_writer_init(&w, 4);
	hc_gossip_mp_write_uint(&w, 7946);
	assert_int_equal(hc_gossip_mp_writer_error(&w), 0);
	hc_gossip_mp_write_uint(&w, 7946);
	assert_int_equal(hc_gossip_mp_writer_error(&w), -EMSGSIZE);
	hc_gossip_mp_write_u8(&w, 1);
	assert_int_equal(w.len, 3);
	assert_int_equal(hc_gossip_mp_writer_error(&w), -EMSGSIZE);
	buf = hc_gossip_mp_writer_steal(&w, &len);
	assert_int_equal(len, 3);
	assert_null(w.buf);
	free(buf);
	hc_gossip_mp_writer_fini(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers_use_the_smallest_form_for_the_value),
		cmocka_unit_test(test_strings_and_bytes_use_the_str_family_without_str8),
		cmocka_unit_test(test_decoder_accepts_every_encoding_go_accepts),
		cmocka_unit_test(test_decoder_refuses_what_go_refuses),
		cmocka_unit_test(test_huge_length_fields_fail_without_reading_or_allocating),
		cmocka_unit_test(test_deep_nesting_is_refused),
		cmocka_unit_test(test_skip_handles_every_type_and_every_truncation),
		cmocka_unit_test(test_struct_keys_are_sorted_on_output_and_free_on_input),
		cmocka_unit_test(test_writer_errors_are_sticky_and_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
