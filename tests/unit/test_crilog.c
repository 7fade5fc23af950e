/* CRI log files: records, reassembly of partial records, tail, follow,
 * truncation and replacement, hostile content. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/crilog_int.h"

#define TS "2026-11-23T20:49:19.275610613Z"

static char dir[64], path[128];

struct seen {
	size_t n;
	char text[64][256];
	size_t len[64];
	int stream[64];
	bool truncated[64];
	char ts[64][40];
};

static int collect(void *arg, const struct hc_crilog_line *line)
{
	struct seen *s = arg;

	if (s->n < 64) {
		size_t n = line->len < 255 ? line->len : 255;

		memcpy(s->text[s->n], line->text, n);
		s->text[s->n][n] = '\0';
		s->len[s->n] = line->len;
		s->stream[s->n] = line->stream;
		s->truncated[s->n] = line->truncated;
		snprintf(s->ts[s->n], sizeof(s->ts[0]), "%s", line->timestamp);
	}
	s->n++;
	return 0;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/hc-crilog-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/0.log", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static void write_log(const char *text, bool append)
{
	int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void read_all(long tail, struct seen *s)
{
	struct hc_crilog_cursor *c = hc_crilog_cursor_open(path, tail);

	assert_non_null(c);
	memset(s, 0, sizeof(*s));
	assert_int_equal(hc_crilog_cursor_read(c, collect, s), 0);
	assert_int_equal(hc_crilog_cursor_flush(c, collect, s), 0);
	hc_crilog_cursor_free(c);
}

static void test_records(void **state)
{
	struct hc_crilog_record r;
	static const char *const bad[] = {
		"", "x", TS, TS " stdout", TS " stdin F x", TS " stdout X x", TS " stdout Fx",
		"notatime stdout F x", "2026 stdout F x",
	};

	(void)state;
	assert_int_equal(hc_crilog_parse_record(TS " stderr F hello world", strlen(TS) + 21, &r), 0);
	assert_int_equal(r.stream, HC_CRILOG_STDERR);
	assert_false(r.partial);
	assert_int_equal(r.len, 11);
	assert_memory_equal(r.payload, "hello world", 11);
	assert_int_equal(r.timestamp_len, strlen(TS));
	assert_int_equal(hc_crilog_parse_record(TS " stdout P ", strlen(TS) + 10, &r), 0);
	assert_true(r.partial);
	assert_int_equal(r.len, 0);
	assert_int_equal(hc_crilog_parse_record(TS " stdout F", strlen(TS) + 9, &r), 0);
	assert_int_equal(r.len, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(hc_crilog_parse_record(bad[i], strlen(bad[i]), &r), -EINVAL);
}

/* containerd's split of a 20000-byte line: 16384 bytes P, 3616 bytes F */
static void test_partials_joined(void **state)
{
	char *text = malloc(40000), *p = text;
	struct seen s;

	(void)state;
	p += sprintf(p, "2026-11-23T20:49:19.1Z stdout P ");
	memset(p, 'a', 16384);
	p += 16384;
	p += sprintf(p, "\n2026-11-23T20:49:19.2Z stderr F interleaved\n");
	p += sprintf(p, "2026-11-23T20:49:19.3Z stdout F ");
	memset(p, 'b', 3616);
	p += 3616;
	sprintf(p, "\n");
	write_log(text, false);
	read_all(-1, &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[0], "interleaved");
	assert_int_equal(s.stream[0], HC_CRILOG_STDERR);
	assert_int_equal(s.len[1], 20000);
	assert_int_equal(s.stream[1], HC_CRILOG_STDOUT);
	assert_string_equal(s.ts[1], "2026-11-23T20:49:19.1Z"); /* of its first record */
	assert_false(s.truncated[1]);
	free(text);
}

static void test_malformed_skipped_and_crlf(void **state)
{
	struct seen s;
	struct hc_crilog_cursor *c;

	(void)state;
	write_log("garbage\n" TS " stdout F one\r\n\n" TS " stdio F x\n" TS " stdout F two\n", false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	memset(&s, 0, sizeof(s));
	assert_int_equal(hc_crilog_cursor_read(c, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[0], "one");
	assert_string_equal(s.text[1], "two");
	assert_int_equal(hc_crilog_cursor_malformed(c), 3);
	hc_crilog_cursor_free(c);
}

static void test_final_partial_flushed(void **state)
{
	struct seen s;

	(void)state;
	write_log(TS " stdout F first\n" TS " stdout P no-newline-at-end\n", false);
	read_all(-1, &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[1], "no-newline-at-end");
	/* and a last record cut before its newline */
	write_log(TS " stdout F first\n" TS " stdout F cut", false);
	read_all(-1, &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[1], "cut");
}

static void test_tail(void **state)
{
	char *text = malloc(300000), *p = text;
	struct seen s;

	(void)state;
	for (int i = 1; i <= 10; i++) {
		if (i == 5) { /* a line of three partial records spanning blocks */
			for (int k = 0; k < 2; k++) {
				p += sprintf(p, TS " stdout P ");
				memset(p, 'x', 70000);
				p += 70000;
				*p++ = '\n';
			}
		}
		p += sprintf(p, TS " stdout F line %d\n", i);
	}
	*p = '\0';
	write_log(text, false);
	read_all(3, &s);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.text[0], "line 8");
	assert_string_equal(s.text[2], "line 10");
	read_all(1, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text[0], "line 10");
	read_all(6, &s);
	assert_int_equal(s.n, 6);
	assert_int_equal(s.len[0], 140000 + 6); /* the long line, whole */
	read_all(10, &s);
	assert_int_equal(s.n, 10);
	read_all(50, &s);
	assert_int_equal(s.n, 10);
	read_all(0, &s);
	assert_int_equal(s.n, 0);
	free(text);
}

static void test_follow_append_truncate_replace(void **state)
{
	struct hc_crilog_cursor *c;
	struct seen s;
	char other[160];

	(void)state;
	write_log(TS " stdout F old\n", false);
	c = hc_crilog_cursor_open(path, 0);
	assert_non_null(c);
	memset(&s, 0, sizeof(s));
	assert_int_equal(hc_crilog_cursor_read(c, collect, &s), 0);
	assert_int_equal(s.n, 0);
	write_log(TS " stdout F new 1\n" TS " stderr P half", true);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &s), 0);
	assert_int_equal(s.n, 1);
	write_log("\n" TS " stderr F  and rest\n", true);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[1], "half and rest");
	/* truncated: starts over */
	write_log(TS " stdout F after truncate\n", false);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.text[2], "after truncate");
	/* replaced by a new file: read from its start */
	snprintf(other, sizeof(other), "%s/new", dir);
	{
		int fd = open(other, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		const char *t = TS " stdout F a\n" TS " stdout F replaced\n";

		assert_true(fd >= 0);
		assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
		close(fd);
	}
	assert_int_equal(rename(other, path), 0);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &s), 0);
	assert_int_equal(s.n, 5);
	assert_string_equal(s.text[4], "replaced");
	/* deleted: follow ends */
	unlink(path);
	assert_int_equal(hc_crilog_follow(c, collect, &s, -1), 0);
	hc_crilog_cursor_free(c);
	assert_null(hc_crilog_cursor_open(path, -1));
	assert_int_equal(errno, ENOENT);
}

static void test_endless_line_is_bounded(void **state)
{
	struct hc_crilog_parser p;
	struct seen s;
	char rec[16500];
	int len;

	(void)state;
	memset(&s, 0, sizeof(s));
	hc_crilog_parser_init(&p);
	len = snprintf(rec, 64, TS " stdout P ");
	memset(rec + len, 'z', 16384);
	rec[len + 16384] = '\n';
	for (int i = 0; i < 100; i++) /* 1.6 MB of one line */
		assert_int_equal(hc_crilog_parser_feed(&p, rec, (size_t)len + 16385, collect, &s), 0);
	assert_int_equal(hc_crilog_parser_feed(&p, TS " stdout F end\n", strlen(TS) + 14, collect, &s),
			 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.len[0], HC_CRILOG_MAX_LINE);
	assert_true(s.truncated[0]);
	/* a "record" of megabytes without a newline is dropped, not buffered */
	for (int i = 0; i < 100; i++)
		assert_int_equal(hc_crilog_parser_feed(&p, rec + len, 16384, collect, &s), 0);
	assert_true(p.rec_cap <= HC_CRILOG_MAX_RECORD);
	assert_int_equal(hc_crilog_parser_feed(&p, "\n" TS " stdout F ok\n", strlen(TS) + 14, collect,
					       &s),
			 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text[1], "ok");
	hc_crilog_parser_fini(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records),
		cmocka_unit_test_setup_teardown(test_partials_joined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_skipped_and_crlf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_partial_flushed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_append_truncate_replace, setup, teardown),
		cmocka_unit_test(test_endless_line_is_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
