/* logfmt records: levels, quoting, one line per record. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define HC_LOG_MODULE "test"
#include "log/log.h"

static int fds[2];

static int setup(void **state)
{
	(void)state;
	if (pipe(fds) < 0)
		return -1;
	hc_log_set_fd(fds[1]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	hc_log_set_fd(2);
	close(fds[0]);
	close(fds[1]);
	return 0;
}

static size_t drain(char *buf, size_t len)
{
	ssize_t n;

	close(fds[1]);
	n = read(fds[0], buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	assert_int_equal(pipe(fds), 0);
	hc_log_set_fd(fds[1]);
	return n > 0 ? (size_t)n : 0;
}

static void test_levels_filter_before_formatting(void **state)
{
	char buf[4096];

	(void)state;
	hc_log_set_level(HC_LOG_WARN);
	hc_log(HC_LOG_INFO, "hidden %d", 1);
	hc_log(HC_LOG_ERROR, "shown %d", 2);
	drain(buf, sizeof(buf));
	assert_null(strstr(buf, "hidden"));
	assert_non_null(strstr(buf, " level=error module=test msg=\"shown 2\"\n"));
	assert_int_equal(strncmp(buf, "ts=", 3), 0);
	hc_log_set_level(HC_LOG_INFO);
}

static void test_message_is_quoted_and_escaped(void **state)
{
	char buf[4096];

	(void)state;
	hc_log(HC_LOG_WARN, "a \"q\" \\ b\nc\td");
	drain(buf, sizeof(buf));
	assert_non_null(strstr(buf, "msg=\"a \\\"q\\\" \\\\ b\\nc\\x09d\"\n"));
	assert_int_equal(strchr(buf, '\n') - buf + 1, (long)strlen(buf));
}

static void test_parse_level_names(void **state)
{
	enum hc_log_level l;

	(void)state;
	assert_int_equal(hc_log_level_parse("debug", &l), 0);
	assert_int_equal(l, HC_LOG_DEBUG);
	assert_int_equal(hc_log_level_parse("WARNING", &l), 0);
	assert_int_equal(l, HC_LOG_WARN);
	assert_int_equal(hc_log_level_parse("loud", &l), -EINVAL);
	assert_string_equal(hc_log_level_name(HC_LOG_ERROR), "error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_filter_before_formatting),
		cmocka_unit_test(test_message_is_quoted_and_escaped),
		cmocka_unit_test(test_parse_level_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
