/* "host:port" parsing, formatting and the client-side dial target. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr/addr.h"

static void expect_ok(const char *in, bool port0, const char *formatted)
{
	struct hc_addr a;
	struct hc_err err;
	char out[64];

	assert_int_equal(hc_addr_parse(in, port0, &a, &err), 0);
	assert_string_equal(hc_addr_format(&a, out, sizeof(out)), formatted);
}

static void expect_bad(const char *in, const char *why)
{
	struct hc_addr a;
	struct hc_err err = { 0 };

	assert_int_equal(hc_addr_parse(in, false, &a, &err), -EINVAL);
	assert_non_null(strstr(err.msg, why));
	assert_int_equal(err.code, -EINVAL);
}

static void test_valid_addresses(void **state)
{
	(void)state;
	expect_ok("0.0.0.0:8000", false, "0.0.0.0:8000");
	expect_ok("127.0.0.1:1", false, "127.0.0.1:1");
	expect_ok(":65535", false, "0.0.0.0:65535");
	expect_ok("localhost:80", false, "127.0.0.1:80");
	expect_ok("[::1]:8001", false, "[::1]:8001");
	expect_ok("[::]:7946", false, "[::]:7946");
	expect_ok("127.0.0.1:0", true, "127.0.0.1:0");
}

static void test_invalid_addresses(void **state)
{
	(void)state;
	expect_bad("", "empty");
	expect_bad("127.0.0.1", "missing port");
	expect_bad("127.0.0.1:", "port must be");
	expect_bad("127.0.0.1:0", "port must be");
	expect_bad("127.0.0.1:65536", "port must be");
	expect_bad("127.0.0.1:-1", "port must be");
	expect_bad("127.0.0.1:80x", "port must be");
	expect_bad("127.0.0.1:+80", "port must be");
	expect_bad("1.2.3:80", "not an IPv4");
	expect_bad("example.com:80", "not resolved");
	expect_bad("::1:80", "brackets");
	expect_bad("[::1]80", "bad IPv6");
	expect_bad("[1.2.3.4]:80", "not an IPv6");
	expect_bad("[::1", "bad IPv6");
}

static void test_dial_target_turns_wildcard_into_loopback(void **state)
{
	char out[64];
	struct hc_err err;

	(void)state;
	assert_int_equal(hc_addr_dial_target("0.0.0.0:8000", out, sizeof(out), &err), 0);
	assert_string_equal(out, "127.0.0.1:8000");
	assert_int_equal(hc_addr_dial_target("[::]:8000", out, sizeof(out), &err), 0);
	assert_string_equal(out, "[::1]:8000");
	assert_int_equal(hc_addr_dial_target("10.1.2.3:9", out, sizeof(out), &err), 0);
	assert_string_equal(out, "10.1.2.3:9");
	assert_int_equal(hc_addr_dial_target("x", out, sizeof(out), &err), -EINVAL);
}

static void test_listen_and_probe(void **state)
{
	struct hc_addr a;
	struct hc_err err;
	int fd;

	(void)state;
	assert_int_equal(hc_addr_parse("127.0.0.1:0", true, &a, &err), 0);
	fd = hc_addr_listen_tcp(&a, 8);
	assert_true(fd >= 0);
	{
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
		memcpy(&a.ss, &ss, len);
		a.len = len;
	}
	assert_int_equal(hc_addr_probe_tcp(&a), -EADDRINUSE);
	close(fd);
	assert_int_equal(hc_addr_probe_tcp(&a), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_addresses),
		cmocka_unit_test(test_invalid_addresses),
		cmocka_unit_test(test_dial_target_turns_wildcard_into_loopback),
		cmocka_unit_test(test_listen_and_probe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
