/* The microVM guest channel's frames (guest/vmproto.h): exact encodings,
 * what the launcher accepts and refuses, statuses, signals and argvs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmproto.h"

static size_t frame(uint8_t *buf, uint8_t type, const void *payload, uint32_t len)
{
	hc_vmp_header(buf, type, len);
	memcpy(buf + HC_VMP_HDR_LEN, payload, len);
	return HC_VMP_HDR_LEN + len;
}

static void test_header_bytes(void **state)
{
	uint8_t hdr[HC_VMP_HDR_LEN];
	static const uint8_t want[] = { 0x48, HC_VMP_STDOUT, 0, 0, 0x04, 0x03, 0x02, 0x01 };

	(void)state;
	hc_vmp_header(hdr, HC_VMP_STDOUT, 0x01020304);
	assert_memory_equal(hdr, want, sizeof(want));
}

static void test_parse_whole_and_partial(void **state)
{
	uint8_t buf[64];
	struct hc_vmp_frame f;
	size_t n = frame(buf, HC_VMP_STDERR, "oops\n", 5);

	(void)state;
	for (size_t cut = 0; cut < n; cut++) /* a frame not all there yet asks for more */
		assert_int_equal(hc_vmp_parse(buf, cut, &f), cut && buf[0] != 0x48 ? -1 : 0);
	assert_int_equal(hc_vmp_parse(buf, n, &f), (int)n);
	assert_int_equal(f.type, HC_VMP_STDERR);
	assert_int_equal(f.len, 5);
	assert_memory_equal(f.payload, "oops\n", 5);
}

static void test_parse_refuses(void **state)
{
	uint8_t buf[HC_VMP_HDR_LEN + 4];
	struct hc_vmp_frame f;

	(void)state;
	frame(buf, HC_VMP_EXIT, "\0\0\0\0", 4);
	buf[0] = 'X'; /* not a frame */
	assert_int_equal(hc_vmp_parse(buf, 1, &f), -1);
	buf[0] = HC_VMP_MAGIC;
	buf[1] = 9; /* no such type */
	assert_int_equal(hc_vmp_parse(buf, sizeof(buf), &f), -1);
	buf[1] = HC_VMP_EXIT;
	buf[3] = 1; /* reserved */
	assert_int_equal(hc_vmp_parse(buf, sizeof(buf), &f), -1);
	hc_vmp_header(buf, HC_VMP_STDOUT, HC_VMP_MAX_PAYLOAD + 1); /* too long to buffer */
	assert_int_equal(hc_vmp_parse(buf, HC_VMP_HDR_LEN, &f), -1);
}

static void test_int(void **state)
{
	uint8_t buf[HC_VMP_HDR_LEN + 4];
	struct hc_vmp_frame f;
	int v;

	(void)state;
	frame(buf, HC_VMP_EXIT, "\x89\0\0\0", 4);
	assert_int_equal(hc_vmp_parse(buf, sizeof(buf), &f), (int)sizeof(buf));
	assert_int_equal(hc_vmp_int(&f, &v), 0);
	assert_int_equal(v, 137); /* killed by signal 9 */
	frame(buf, HC_VMP_EXIT, "\0\1\0\0", 4); /* 256: no exit status */
	hc_vmp_parse(buf, sizeof(buf), &f);
	assert_int_equal(hc_vmp_int(&f, &v), -1);
	frame(buf, HC_VMP_STOP, "\0\0\0\0", 4); /* signal 0 is none */
	hc_vmp_parse(buf, sizeof(buf), &f);
	assert_int_equal(hc_vmp_int(&f, &v), -1);
	frame(buf, HC_VMP_STOP, "\x0f\0\0\0", 4);
	hc_vmp_parse(buf, sizeof(buf), &f);
	assert_int_equal(hc_vmp_int(&f, &v), 0);
	assert_int_equal(v, 15);
	frame(buf, HC_VMP_EXIT, "\0\0\0", 3); /* short */
	assert_int_equal(hc_vmp_parse(buf, HC_VMP_HDR_LEN + 3, &f), HC_VMP_HDR_LEN + 3);
	assert_int_equal(hc_vmp_int(&f, &v), -1);
}

static void test_argv(void **state)
{
	static const char args[] = "uname\0-r\0";
	uint8_t buf[64];
	struct hc_vmp_frame f;
	char *argv[3];

	(void)state;
	hc_vmp_parse(buf, frame(buf, HC_VMP_ATTACH_START, args, sizeof(args) - 1), &f);
	assert_int_equal(hc_vmp_argv(&f, argv, 3), 2);
	assert_string_equal(argv[0], "uname");
	assert_string_equal(argv[1], "-r");
	assert_null(argv[2]);
	assert_int_equal(hc_vmp_argv(&f, argv, 2), -1); /* no room for the NULL */
	hc_vmp_parse(buf, frame(buf, HC_VMP_ATTACH_START, "sh", 2), &f);
	assert_int_equal(hc_vmp_argv(&f, argv, 3), -1); /* unterminated */
	hc_vmp_parse(buf, frame(buf, HC_VMP_ATTACH_START, "\0", 1), &f);
	assert_int_equal(hc_vmp_argv(&f, argv, 3), -1); /* an empty command */
}

static void test_write_reads_back(void **state)
{
	uint8_t buf[64];
	struct hc_vmp_frame f;
	int p[2], v;
	ssize_t n;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(hc_vmp_write_int(p[1], HC_VMP_ATTACH_EXIT, 3), 0);
	assert_int_equal(hc_vmp_write(-1, HC_VMP_STDOUT, "x", 1), -1);
	assert_int_equal(errno, EBADF);
	n = read(p[0], buf, sizeof(buf));
	assert_int_equal(n, HC_VMP_HDR_LEN + 4);
	assert_int_equal(hc_vmp_parse(buf, (size_t)n, &f), (int)n);
	assert_int_equal(f.type, HC_VMP_ATTACH_EXIT);
	assert_int_equal(hc_vmp_int(&f, &v), 0);
	assert_int_equal(v, 3);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_bytes), cmocka_unit_test(test_parse_whole_and_partial),
		cmocka_unit_test(test_parse_refuses), cmocka_unit_test(test_int),
		cmocka_unit_test(test_argv),	     cmocka_unit_test(test_write_reads_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
