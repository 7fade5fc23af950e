/* logfmt records: levels, quoting, one line per record. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/stat.h>

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

static const struct timespec at = { .tv_sec = 1795124801, .tv_nsec = 123456789 };

/* A record as JSON, parsed back; its "msg" member in *msg (free it). */
static void json_record(const char *msg, char **out)
{
	char buf[16384];
	size_t n = hc_log_format_record(buf, sizeof(buf), HC_LOG_JSON, false, HC_LOG_INFO, "api",
					&at, msg);
	json_error_t jerr;
	json_t *doc;

	assert_true(n > 0 && buf[n - 1] == '\n');
	buf[n] = '\0';
	assert_null(memchr(buf, '\n', n - 1)); /* one line */
	doc = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc)
		fail_msg("not JSON (%s): %s", jerr.text, buf);
	assert_string_equal(json_string_value(json_object_get(doc, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(doc, "module")), "api");
	assert_string_equal(json_string_value(json_object_get(doc, "ts")), "2026-11-19T21:46:41.123Z");
	*out = strdup(json_string_value(json_object_get(doc, "msg")));
	json_decref(doc);
}

/* Every byte alone, and each between other text: valid JSON whose message is
 * the byte (ASCII) or U+FFFD (no UTF-8 alone). */
static void test_json_escapes_every_byte(void **state)
{
	(void)state;
	for (int b = 1; b < 256; b++) {
		char in[8] = { 'a', (char)b, 'z', 0 }, *got;

		json_record(in, &got);
		if (b < 0x80)
			assert_memory_equal(got, in, 4);
		else
			assert_string_equal(got, "a\xef\xbf\xbdz");
		free(got);
	}
}

static void test_json_keeps_utf8_and_refuses_bad_sequences(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
		{ "\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd" },           /* overlong '/' */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* a surrogate */
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" }, /* > U+10FFFF */
		{ "\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd" },           /* cut short */
		{ "q\"b\\s/\n\t\r\x1f\x7f", "q\"b\\s/\n\t\r\x1f\x7f" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got;

		json_record(cases[i].in, &got);
		assert_string_equal(got, cases[i].want);
		free(got);
	}
}

/* A message that fills the buffer is cut, and the record still closes. */
static void test_records_are_cut_not_broken(void **state)
{
	char msg[3000], buf[512];
	json_error_t jerr;
	json_t *doc;
	size_t n;

	(void)state;
	memset(msg, '"', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_JSON, false, HC_LOG_WARN, "x", &at, msg);
	assert_true(n <= sizeof(buf));
	doc = json_loadb(buf, n, 0, &jerr);
	assert_non_null(doc);
	json_decref(doc);
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_LOGFMT, false, HC_LOG_WARN, "x", &at, msg);
	assert_true(n <= sizeof(buf));
	assert_memory_equal(buf + n - 2, "\"\n", 2);
}

static void test_text_and_logfmt_and_journal_prefix(void **state)
{
	char buf[512];
	size_t n;

	(void)state;
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_TEXT, false, HC_LOG_WARN, "daemon", &at,
				 "a \"b\"\nc");
	buf[n] = '\0';
	assert_string_equal(buf, "2026-11-19T21:46:41.123Z warn  daemon: a \"b\"\\nc\n");
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_LOGFMT, true, HC_LOG_ERROR, "daemon", &at,
				 "x");
	buf[n] = '\0';
	assert_string_equal(buf, "<3>ts=2026-11-19T21:46:41.123Z level=error module=daemon msg=\"x\"\n");
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_JSON, true, HC_LOG_DEBUG, "m", &at, "");
	buf[n] = '\0';
	assert_string_equal(buf, "<7>{\"ts\":\"2026-11-19T21:46:41.123Z\",\"level\":\"debug\","
				 "\"module\":\"m\",\"msg\":\"\"}\n");
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_TEXT, true, HC_LOG_INFO, "m", &at, "y");
	assert_memory_equal(buf, "<6>", 3);
	n = hc_log_format_record(buf, sizeof(buf), HC_LOG_TEXT, true, HC_LOG_WARN, "m", &at, "y");
	assert_memory_equal(buf, "<4>", 3);
}

static void test_parse_formats(void **state)
{
	enum hc_log_format f;

	(void)state;
	assert_int_equal(hc_log_format_parse("json", &f), 0);
	assert_int_equal(f, HC_LOG_JSON);
	assert_int_equal(hc_log_format_parse("logfmt", &f), 0);
	assert_int_equal(f, HC_LOG_LOGFMT);
	assert_int_equal(hc_log_format_parse("text", &f), 0);
	assert_int_equal(f, HC_LOG_TEXT);
	assert_int_equal(hc_log_format_parse("xml", &f), -EINVAL);
}

/* $JOURNAL_STREAM counts only while it names the stderr we have. */
static void test_journal_stream_must_match_stderr(void **state)
{
	struct stat st;
	char v[64];

	(void)state;
	assert_int_equal(fstat(2, &st), 0);
	unsetenv("JOURNAL_STREAM");
	assert_false(hc_log_journal_stream());
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	assert_true(hc_log_journal_stream());
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	setenv("JOURNAL_STREAM", v, 1);
	assert_false(hc_log_journal_stream());
	setenv("JOURNAL_STREAM", "garbage", 1);
	assert_false(hc_log_journal_stream());
	unsetenv("JOURNAL_STREAM");
}

/* The format set is the one records are written in. */
static void test_set_format_applies_to_records(void **state)
{
	char buf[4096];

	(void)state;
	hc_log_set_format(HC_LOG_JSON);
	hc_log(HC_LOG_WARN, "j");
	hc_log_set_format(HC_LOG_LOGFMT);
	drain(buf, sizeof(buf));
	assert_non_null(strstr(buf, "\"level\":\"warn\",\"module\":\"test\",\"msg\":\"j\"}\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_filter_before_formatting),
		cmocka_unit_test(test_message_is_quoted_and_escaped),
		cmocka_unit_test(test_parse_level_names),
		cmocka_unit_test(test_json_escapes_every_byte),
		cmocka_unit_test(test_json_keeps_utf8_and_refuses_bad_sequences),
		cmocka_unit_test(test_records_are_cut_not_broken),
		cmocka_unit_test(test_text_and_logfmt_and_journal_prefix),
		cmocka_unit_test(test_parse_formats),
		cmocka_unit_test(test_journal_stream_must_match_stderr),
		cmocka_unit_test(test_set_format_applies_to_records),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
