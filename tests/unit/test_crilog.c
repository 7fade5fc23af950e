/* CRI log files: records, reassembly of partial records, tail, follow,
 * truncation and replacement, hostile content; on real temp files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/crilog_int.h"

#define TS "2026-11-23T20:49:19.275610613Z"

static char dir[64], path[128];

/* ---- helpers ---- */

struct got_line {
	int stream;
	char ts[HC_CRILOG_TIMESTAMP_MAX + 1];
	char *text; /* NUL-terminated copy */
	size_t len;
	bool truncated, malformed, unfinished;
};

struct got {
	struct got_line *v;
	size_t n, cap;
	int stop_every; /* return 7 after this many lines (0: never) */
	int since;
};

static int collect(void *arg, const struct hc_crilog_line *l)
{
	struct got *g = arg;
	struct got_line *x;

	assert_non_null(l->text);
	assert_true(strlen(l->timestamp) <= HC_CRILOG_TIMESTAMP_MAX);
	if (g->n == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 16;
		g->v = realloc(g->v, g->cap * sizeof(*g->v));
		assert_non_null(g->v);
	}
	x = &g->v[g->n++];
	x->stream = l->stream;
	memcpy(x->ts, l->timestamp, sizeof(x->ts));
	x->text = malloc(l->len + 1);
	assert_non_null(x->text);
	memcpy(x->text, l->text, l->len);
	x->text[l->len] = '\0';
	x->len = l->len;
	x->truncated = l->truncated;
	x->malformed = l->malformed;
	x->unfinished = l->unfinished;
	if (g->stop_every && ++g->since >= g->stop_every) {
		g->since = 0;
		return 7;
	}
	return 0;
}

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		free(g->v[i].text);
	free(g->v);
	memset(g, 0, sizeof(*g));
}

static void assert_same_lines(const struct got *a, const struct got *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->v[i].stream, b->v[i].stream);
		assert_string_equal(a->v[i].ts, b->v[i].ts);
		assert_int_equal(a->v[i].len, b->v[i].len);
		assert_memory_equal(a->v[i].text, b->v[i].text, a->v[i].len);
		assert_int_equal(a->v[i].truncated, b->v[i].truncated);
		assert_int_equal(a->v[i].malformed, b->v[i].malformed);
		assert_int_equal(a->v[i].unfinished, b->v[i].unfinished);
	}
}

struct sb {
	char *p;
	size_t len, cap;
};

static void sb_add(struct sb *b, const void *data, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? 2 * b->cap : 4096;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_fill(struct sb *b, char c, size_t n)
{
	char chunk[4096];

	memset(chunk, c, sizeof(chunk));
	while (n) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);

		sb_add(b, chunk, k);
		n -= k;
	}
}

static void sb_str(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* TS stream tag payload\n */
static void sb_rec(struct sb *b, const char *stream, char tag, const char *payload)
{
	char head[64];

	snprintf(head, sizeof(head), TS " %s %c ", stream, tag);
	sb_str(b, head);
	sb_str(b, payload);
	sb_add(b, "\n", 1);
}

static void write_at(const char *p, const void *data, size_t len, bool append)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0640);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void write_log(const char *text, bool append)
{
	write_at(path, text, strlen(text), append);
}

/* open(tail) + read + flush: what "logs --tail" of a finished log shows. */
static void read_tail(long tail, struct got *g)
{
	struct hc_crilog_cursor *c = hc_crilog_cursor_open(path, tail);

	assert_non_null(c);
	assert_int_equal(hc_crilog_cursor_read(c, collect, g), 0);
	assert_int_equal(hc_crilog_cursor_flush(c, collect, g), 0);
	hc_crilog_cursor_free(c);
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
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	(void)state;
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
	rmdir(dir);
	return 0;
}

/* ---- records ---- */

static void test_parse_valid(void **state)
{
	static const char *const stamps[] = {
		"2026-11-23T20:49:19Z",
		"2026-11-23T20:49:19.1Z",
		"2026-11-23T20:49:19.08211332Z", /* Go drops trailing zeros */
		"2026-11-23T20:49:19.275610613Z",
		"2026-11-23T20:49:19.5+01:00",
		"2006-01-02T15:04:05.999999999-07:00", /* the longest */
	};
	struct hc_crilog_record r;
	char rec[128];

	(void)state;
	for (size_t i = 0; i < sizeof(stamps) / sizeof(stamps[0]); i++) {
		int n = snprintf(rec, sizeof(rec), "%s stderr F hello  world ", stamps[i]);

		assert_int_equal(hc_crilog_parse_record(rec, (size_t)n, &r), 0);
		assert_int_equal(r.stream, HC_CRILOG_STDERR);
		assert_false(r.partial);
		assert_int_equal(r.timestamp_len, strlen(stamps[i]));
		assert_ptr_equal(r.timestamp, rec);
		assert_int_equal(r.len, 13);
		assert_memory_equal(r.payload, "hello  world ", 13);
	}
	/* every fraction length 1..9 */
	for (int d = 1; d <= 9; d++) {
		int n = snprintf(rec, sizeof(rec), "2026-11-23T20:49:19.%.*sZ stdout P x", d,
				 "123456789");

		assert_int_equal(hc_crilog_parse_record(rec, (size_t)n, &r), 0);
		assert_true(r.partial);
		assert_int_equal(r.stream, HC_CRILOG_STDOUT);
	}
	/* an empty payload still has its separator */
	assert_int_equal(hc_crilog_parse_record(TS " stdout F ", strlen(TS) + 10, &r), 0);
	assert_int_equal(r.len, 0);
	/* kubelet's forward-compatible tag list: the first one counts */
	assert_int_equal(hc_crilog_parse_record(TS " stdout P:x:y pay", strlen(TS) + 17, &r), 0);
	assert_true(r.partial);
	assert_int_equal(r.len, 3);
	/* any bytes in the payload, '\r' and NUL included */
	assert_int_equal(hc_crilog_parse_record(TS " stdout F a\rb\0c\r", strlen(TS) + 16, &r), 0);
	assert_int_equal(r.len, 6);
	assert_memory_equal(r.payload, "a\rb\0c\r", 6);
}

static void test_parse_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"x",
		" ",
		TS,
		TS " ",
		TS " stdout",
		TS " stdout ",
		TS " stdout F", /* no separator after the tag */
		TS " stdin F x",
		TS " Stdout F x",
		TS " stdoutF x",
		TS " stdout X x",
		TS " stdout f x",
		TS " stdout FP x",
		TS " stdout  F x",
		TS "  stdout F x",
		" " TS " stdout F x",
		TS " stdout F:aaaaaaaaaaaaaaaa x", /* tag of 17 bytes */
		"2026-11-23T20:49:19.1234567890Z stdout F x", /* 10 fraction digits */
		"2026-11-23T20:49:19.Z stdout F x",
		"2026-11-23T20:49:19 stdout F x",
		"2026-11-23T20:49:19z stdout F x",
		"2026-11-23t20:49:19Z stdout F x",
		"2026-11-23 20:49:19Z stdout F x",
		"2026-13-23T20:49:19Z stdout F x",
		"2026-11-00T20:49:19Z stdout F x",
		"2026-11-23T24:49:19Z stdout F x",
		"2026-11-23T20:60:19Z stdout F x",
		"2026-11-23T20:49:19+0100 stdout F x",
		"2026-11-23T20:49:19+01:00Z stdout F x",
		"2026-1x-23T20:49:19Z stdout F x",
		"notatime stdout F x",
	};
	struct hc_crilog_record r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (hc_crilog_parse_record(bad[i], strlen(bad[i]), &r) != -EINVAL)
			fail_msg("accepted: \"%s\"", bad[i]);
	}
	/* a tag of 16 bytes is the longest accepted */
	assert_int_equal(hc_crilog_parse_record(TS " stdout F:aaaaaaaaaaaaaa x", strlen(TS) + 26, &r),
			 0);
}

/* ---- the parser ---- */

static void feed_all(struct hc_crilog_parser *p, const char *data, size_t len, struct got *g)
{
	size_t used;

	assert_int_equal(hc_crilog_parser_feed(p, data, len, &used, collect, g), 0);
	assert_int_equal(used, len);
}

/* A log with everything: partials of both streams interleaved, malformed
 * lines in the middle of a partial, CRLF, an empty line, a last P. */
static void sample_log(struct sb *b)
{
	sb_rec(b, "stdout", 'F', "one");
	sb_rec(b, "stdout", 'P', "a1-");
	sb_rec(b, "stderr", 'P', "b1-");
	sb_str(b, "garbage in the middle\n");
	sb_rec(b, "stdout", 'P', "a2-");
	sb_rec(b, "stderr", 'F', "b2");
	sb_str(b, "\n");
	sb_str(b, TS " stdout F a3\r\n");
	sb_str(b, "2026-11-23T20:49:20.5Z stderr F x\ry\n");
	sb_rec(b, "stdout", 'F', "");
	sb_rec(b, "stderr", 'P', "no-newline-at-end");
}

static void test_interleaved_partials_and_malformed(void **state)
{
	struct hc_crilog_parser *p = hc_crilog_parser_new(0);
	struct sb b = { 0 };
	struct got g = { 0 };

	(void)state;
	sample_log(&b);
	feed_all(p, b.p, b.len, &g);
	assert_int_equal(g.n, 7);
	assert_string_equal(g.v[0].text, "one");
	assert_true(g.v[1].malformed);
	assert_string_equal(g.v[1].text, "garbage in the middle");
	assert_string_equal(g.v[1].ts, "");
	assert_int_equal(g.v[1].stream, HC_CRILOG_STDOUT);
	assert_int_equal(g.v[2].stream, HC_CRILOG_STDERR);
	assert_string_equal(g.v[2].text, "b1-b2");
	assert_false(g.v[2].malformed);
	assert_true(g.v[3].malformed); /* the empty line */
	assert_int_equal(g.v[3].len, 0);
	assert_int_equal(g.v[4].stream, HC_CRILOG_STDOUT);
	assert_string_equal(g.v[4].text, "a1-a2-a3"); /* CRLF stripped */
	assert_string_equal(g.v[5].text, "x\ry");     /* an inner '\r' is kept */
	assert_string_equal(g.v[5].ts, "2026-11-23T20:49:20.5Z");
	assert_int_equal(g.v[6].len, 0);
	for (size_t i = 0; i < g.n; i++)
		assert_false(g.v[i].unfinished || g.v[i].truncated);
	/* the last P waits for its F; a flush gives it up */
	assert_int_equal(hc_crilog_parser_flush(p, collect, &g), 0);
	assert_int_equal(g.n, 8);
	assert_string_equal(g.v[7].text, "no-newline-at-end");
	assert_true(g.v[7].unfinished);
	assert_int_equal(g.v[7].stream, HC_CRILOG_STDERR);
	assert_int_equal(hc_crilog_parser_flush(p, collect, &g), 0);
	assert_int_equal(g.n, 8);
	hc_crilog_parser_free(p);
	got_free(&g);
	free(b.p);
}

/* The same lines whatever the pieces the bytes come in, and when the
 * callback stops after every line and the caller feeds the rest again. */
static void test_any_split_same_lines(void **state)
{
	struct sb b = { 0 };
	struct got whole = { 0 };
	struct hc_crilog_parser *p;
	uint32_t x = 12345;

	(void)state;
	sample_log(&b);
	sb_fill(&b, 'z', 1); /* and a last record cut short */
	p = hc_crilog_parser_new(0);
	feed_all(p, b.p, b.len, &whole);
	assert_int_equal(hc_crilog_parser_flush(p, collect, &whole), 0);
	hc_crilog_parser_free(p);
	assert_int_equal(whole.n, 9);
	assert_true(whole.v[7].malformed); /* the cut record, taken as it is */
	assert_string_equal(whole.v[8].text, "no-newline-at-end");

	for (int mode = 0; mode < 3; mode++) {
		struct got g = { .stop_every = mode == 2 ? 1 : 0 };
		size_t pos = 0;

		p = hc_crilog_parser_new(0);
		while (pos < b.len) {
			size_t n = mode == 0 ? 1 : 1 + (x = x * 1103515245 + 12345) % 40;
			size_t used;
			int r;

			if (n > b.len - pos)
				n = b.len - pos;
			r = hc_crilog_parser_feed(p, b.p + pos, n, &used, collect, &g);
			assert_true(r == 0 || r == 7);
			assert_true(used <= n);
			assert_true(r == 7 || used == n);
			pos += used;
		}
		while (hc_crilog_parser_flush(p, collect, &g) == 7)
			;
		hc_crilog_parser_free(p);
		assert_same_lines(&whole, &g);
		got_free(&g);
	}
	got_free(&whole);
	free(b.p);
}

static void test_line_cap(void **state)
{
	struct hc_crilog_parser *p = hc_crilog_parser_new(10);
	struct got g = { 0 };
	struct sb b = { 0 };

	(void)state;
	sb_rec(&b, "stdout", 'P', "0123456");
	sb_rec(&b, "stdout", 'P', "789abc");
	sb_rec(&b, "stdout", 'F', "def");
	sb_rec(&b, "stderr", 'F', "0123456789"); /* exactly the cap */
	sb_rec(&b, "stderr", 'F', "0123456789x");
	sb_str(&b, "not a record but long\n");
	feed_all(p, b.p, b.len, &g);
	assert_int_equal(g.n, 4);
	assert_string_equal(g.v[0].text, "0123456789");
	assert_true(g.v[0].truncated);
	assert_string_equal(g.v[0].ts, TS);
	assert_string_equal(g.v[1].text, "0123456789");
	assert_false(g.v[1].truncated);
	assert_string_equal(g.v[2].text, "0123456789");
	assert_true(g.v[2].truncated);
	assert_string_equal(g.v[3].text, "not a reco");
	assert_true(g.v[3].malformed && g.v[3].truncated);
	got_free(&g);
	/* a record far longer than the cap, fed in small pieces: only a bounded
	 * beginning is held, enough to know what it is */
	b.len = 0;
	sb_str(&b, TS " stderr F ");
	sb_fill(&b, 'y', 100000);
	sb_str(&b, "\r\n");
	for (size_t i = 0; i < b.len; i += 7) {
		size_t used, n = b.len - i < 7 ? b.len - i : 7;

		assert_int_equal(hc_crilog_parser_feed(p, b.p + i, n, &used, collect, &g), 0);
	}
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].stream, HC_CRILOG_STDERR);
	assert_string_equal(g.v[0].text, "yyyyyyyyyy");
	assert_true(g.v[0].truncated);
	hc_crilog_parser_free(p);
	got_free(&g);
	free(b.p);
}

/* A workload printing megabytes without a newline: containerd writes 16 KiB
 * P records; the line stops growing at 1 MiB. */
static void test_endless_line_is_bounded(void **state)
{
	struct hc_crilog_parser *p = hc_crilog_parser_new(0);
	struct got g = { 0 };
	struct sb b = { 0 };

	(void)state;
	sb_str(&b, TS " stdout P ");
	sb_fill(&b, 'z', 16384);
	sb_str(&b, "\n");
	for (int i = 0; i < 200; i++) /* 3.2 MB of one line */
		feed_all(p, b.p, b.len, &g);
	assert_int_equal(g.n, 0);
	feed_all(p, TS " stdout F end\n", strlen(TS) + 14, &g);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].len, HC_CRILOG_MAX_LINE);
	assert_true(g.v[0].truncated);
	/* the same as one 3 MB record */
	b.len = 0;
	sb_str(&b, TS " stdout F ");
	sb_fill(&b, 'w', 3 << 20);
	sb_str(&b, "\n");
	feed_all(p, b.p, b.len, &g);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.v[1].len, HC_CRILOG_MAX_LINE);
	assert_true(g.v[1].truncated);
	hc_crilog_parser_free(p);
	got_free(&g);
	free(b.p);
}

/* ---- files ---- */

/* containerd's split of a 20000-byte line: 16384 bytes P, 3616 bytes F */
static void test_real_partial_example(void **state)
{
	struct sb b = { 0 };
	struct got g = { 0 };

	(void)state;
	sb_str(&b, "2026-11-23T20:49:19.1Z stdout P ");
	sb_fill(&b, 'a', 16384);
	sb_str(&b, "\n2026-11-23T20:49:19.2Z stderr F interleaved\n");
	sb_str(&b, "2026-11-23T20:49:19.3Z stdout F ");
	sb_fill(&b, 'b', 3616);
	sb_str(&b, "\n");
	write_log(b.p, false);
	read_tail(-1, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.v[0].text, "interleaved");
	assert_int_equal(g.v[0].stream, HC_CRILOG_STDERR);
	assert_int_equal(g.v[1].stream, HC_CRILOG_STDOUT);
	assert_int_equal(g.v[1].len, 20000);
	assert_int_equal(strspn(g.v[1].text, "a"), 16384);
	assert_int_equal(strspn(g.v[1].text + 16384, "b"), 3616);
	assert_string_equal(g.v[1].ts, "2026-11-23T20:49:19.1Z"); /* of its first record */
	assert_false(g.v[1].truncated || g.v[1].unfinished);
	got_free(&g);
	/* tail 1 takes the whole line, not its last piece, and not the line
	 * of the other stream that ended between the pieces */
	read_tail(1, &g);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.v[0].len, 20000);
	got_free(&g);
	free(b.p);
}

static void test_final_partial(void **state)
{
	struct hc_crilog_cursor *c;
	struct got g = { 0 };

	(void)state;
	write_log(TS " stdout F first\n" TS " stdout P no-newline-at-end\n", false);
	/* a read alone waits for the F ... */
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 1);
	/* ... which a flush does not */
	assert_int_equal(hc_crilog_cursor_flush(c, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.v[1].text, "no-newline-at-end");
	assert_true(g.v[1].unfinished);
	hc_crilog_cursor_free(c);
	got_free(&g);
	/* the open line is the log's last line */
	read_tail(1, &g);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.v[0].text, "no-newline-at-end");
	got_free(&g);
	/* a last record cut before its newline comes out on a flush */
	write_log(TS " stdout F first\n" TS " stdout F cut", false);
	read_tail(-1, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.v[1].text, "cut");
	got_free(&g);
}

static void test_tail_counts(void **state)
{
	struct sb b = { 0 };
	struct got g = { 0 };
	char text[32];
	static const long tails[] = { 0, 1, 3, 9, 10, 11, 1000 };

	(void)state;
	for (int i = 1; i <= 10; i++) {
		snprintf(text, sizeof(text), "line %d", i);
		sb_rec(&b, i % 3 ? "stdout" : "stderr", 'F', text);
	}
	write_log(b.p, false);
	for (size_t k = 0; k < sizeof(tails) / sizeof(tails[0]); k++) {
		long want = tails[k] < 10 ? tails[k] : 10;

		read_tail(tails[k], &g);
		assert_int_equal(g.n, want);
		for (long i = 0; i < want; i++) {
			snprintf(text, sizeof(text), "line %ld", 10 - want + 1 + i);
			assert_string_equal(g.v[i].text, text);
		}
		got_free(&g);
	}
	read_tail(-1, &g);
	assert_int_equal(g.n, 10);
	got_free(&g);
	/* an empty file, and one without a complete record */
	write_log("", false);
	read_tail(5, &g);
	assert_int_equal(g.n, 0);
	write_log(TS " stdout F half", false);
	read_tail(0, &g);
	assert_int_equal(g.n, 1); /* being written: not counted, read whole */
	got_free(&g);
	free(b.p);
}

/* Lines of many 16 KiB records and single records longer than the 64 KiB
 * blocks the tail is searched in. */
static void test_tail_long_lines_across_blocks(void **state)
{
	struct sb b = { 0 };
	struct got g = { 0 };

	(void)state;
	sb_rec(&b, "stdout", 'F', "first");
	for (int i = 0; i < 20; i++) { /* 327680 bytes as P records */
		sb_str(&b, TS " stdout P ");
		sb_fill(&b, (char)('a' + i), 16384);
		sb_str(&b, "\n");
		if (i == 10)
			sb_rec(&b, "stderr", 'F', "between"); /* ends inside it */
	}
	sb_rec(&b, "stdout", 'F', "!");
	sb_str(&b, TS " stderr F ");
	sb_fill(&b, 'Q', 200000);
	sb_str(&b, "\n");
	sb_str(&b, "malformed ");
	sb_fill(&b, 'M', 150000);
	sb_str(&b, "\n");
	sb_rec(&b, "stdout", 'F', "last");
	write_log(b.p, false);

	read_tail(1, &g);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.v[0].text, "last");
	got_free(&g);
	read_tail(3, &g);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.v[0].len, 200000);
	assert_true(g.v[1].malformed);
	assert_int_equal(g.v[1].len, 150010);
	got_free(&g);
	read_tail(4, &g);
	assert_int_equal(g.n, 4);
	assert_int_equal(g.v[0].len, 327681);
	assert_int_equal(g.v[0].text[0], 'a');
	assert_int_equal(g.v[0].text[327679], 't');
	assert_int_equal(g.v[0].text[327680], '!');
	got_free(&g);
	read_tail(5, &g);
	assert_int_equal(g.n, 5);
	assert_string_equal(g.v[0].text, "between"); /* it ended before the long line */
	assert_int_equal(g.v[1].len, 327681);
	got_free(&g);
	read_tail(6, &g);
	assert_int_equal(g.n, 6);
	assert_string_equal(g.v[0].text, "first");
	got_free(&g);
	free(b.p);
}

/*
 * Random logs against a model: records of both streams, P and F, malformed
 * ones, CRLF, sizes from empty to longer than a block, open lines at the end.
 * tail N must give the N lines ending last (by where their last record is)
 * in the order a full read gives them.
 */
struct model_line {
	int stream;
	bool malformed, unfinished;
	size_t end; /* record index of the line's last record */
	char ts[40];
	struct sb text;
};

static uint32_t rnd(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void run_model(uint32_t seed, int records, int big_percent)
{
	struct model_line *lines = calloc((size_t)records + 2, sizeof(*lines));
	struct model_line open[2] = { 0 };
	bool active[2] = { false, false };
	size_t nlines = 0, open_end[2] = { 0, 0 };
	struct sb file = { 0 };
	uint32_t x = seed;
	long tails[12];
	int ntails = 0;

	assert_non_null(lines);
	for (int i = 0; i < records; i++) {
		uint32_t kind = rnd(&x) % 100;
		int s = (int)(rnd(&x) % 2);
		size_t len = rnd(&x) % 100 < (uint32_t)big_percent ? 1000 + rnd(&x) % 150000
								      : rnd(&x) % 40;
		bool partial = rnd(&x) % 100 < 40;
		char head[80], *payload = malloc(len + 1);

		assert_non_null(payload);
		for (size_t k = 0; k < len; k++)
			payload[k] = (char)('a' + (i + k) % 26);
		payload[len] = '\0';
		if (kind < 5) { /* malformed */
			struct model_line *m = &lines[nlines++];

			m->malformed = true;
			m->end = (size_t)i;
			snprintf(head, sizeof(head), "junk%d ", i);
			sb_str(&file, head);
			sb_add(&file, payload, len);
			sb_str(&file, "\n");
			sb_str(&m->text, head);
			sb_add(&m->text, payload, len);
			free(payload);
			continue;
		}
		snprintf(head, sizeof(head), "2026-11-23T20:49:19.%dZ %s %c ", i + 1,
			 s ? "stderr" : "stdout", partial ? 'P' : 'F');
		sb_str(&file, head);
		sb_add(&file, payload, len);
		sb_str(&file, kind < 10 ? "\r\n" : "\n");
		if (!active[s]) {
			memset(&open[s], 0, sizeof(open[s]));
			open[s].stream = s;
			snprintf(open[s].ts, sizeof(open[s].ts), "2026-11-23T20:49:19.%dZ", i + 1);
			active[s] = true;
		}
		sb_add(&open[s].text, payload, len);
		free(payload);
		open_end[s] = (size_t)i;
		if (!partial) {
			open[s].end = (size_t)i;
			lines[nlines++] = open[s];
			active[s] = false;
		}
	}
	/* open lines come out last, the one whose last record is older first */
	for (int k = 0; k < 2; k++) {
		int s = active[0] && active[1] ? (open_end[0] < open_end[1] ? k : 1 - k)
					       : (active[0] ? 0 : 1);

		if (!active[s])
			continue;
		open[s].end = open_end[s];
		open[s].unfinished = true;
		lines[nlines++] = open[s];
		active[s] = false;
	}
	write_at(path, file.p, file.len, false);

	tails[ntails++] = 0;
	tails[ntails++] = 1;
	tails[ntails++] = 2;
	tails[ntails++] = 3;
	tails[ntails++] = 7;
	tails[ntails++] = (long)nlines / 2;
	tails[ntails++] = (long)nlines - 1;
	tails[ntails++] = (long)nlines;
	tails[ntails++] = (long)nlines + 1;
	tails[ntails++] = -1;
	for (int t = 0; t < ntails; t++) {
		long n = tails[t] < 0 || tails[t] > (long)nlines ? (long)nlines : tails[t];
		size_t threshold = SIZE_MAX, k = 0;
		struct got g = { .stop_every = t % 2 ? 1 : 0 };
		struct hc_crilog_cursor *c;
		int r;

		/* the n-th largest end */
		if (n > 0) {
			size_t *ends = malloc(nlines * sizeof(*ends));

			for (size_t i = 0; i < nlines; i++)
				ends[i] = lines[i].end;
			for (size_t i = 1; i < nlines; i++) /* insertion sort, descending */
				for (size_t j = i; j > 0 && ends[j - 1] < ends[j]; j--) {
					size_t tmp = ends[j];

					ends[j] = ends[j - 1];
					ends[j - 1] = tmp;
				}
			threshold = ends[n - 1];
			free(ends);
		}
		c = hc_crilog_cursor_open(path, tails[t]);
		assert_non_null(c);
		while ((r = hc_crilog_cursor_read(c, collect, &g)) == 7)
			;
		assert_int_equal(r, 0);
		while ((r = hc_crilog_cursor_flush(c, collect, &g)) == 7)
			;
		assert_int_equal(r, 0);
		hc_crilog_cursor_free(c);
		if (g.n != (size_t)n)
			fail_msg("seed %u tail %ld: %zu lines, want %ld", seed, tails[t], g.n, n);
		for (size_t i = 0; i < nlines; i++) {
			const struct model_line *m = &lines[i];
			size_t want_len;

			if (threshold == SIZE_MAX || m->end < threshold)
				continue;
			want_len = m->text.len < HC_CRILOG_MAX_LINE ? m->text.len
								     : HC_CRILOG_MAX_LINE;
			if (g.v[k].len != want_len || g.v[k].malformed != m->malformed ||
			    (!m->malformed && g.v[k].stream != m->stream))
				fail_msg("seed %u tail %ld: line %zu differs", seed, tails[t], k);
			assert_memory_equal(g.v[k].text, m->text.p ? m->text.p : "", want_len);
			assert_string_equal(g.v[k].ts, m->malformed ? "" : m->ts);
			assert_int_equal(g.v[k].truncated, m->text.len > HC_CRILOG_MAX_LINE);
			assert_int_equal(g.v[k].unfinished, m->unfinished);
			k++;
		}
		got_free(&g);
	}
	for (size_t i = 0; i < nlines; i++)
		free(lines[i].text.p);
	for (int s = 0; s < 2; s++)
		if (active[s])
			free(open[s].text.p);
	free(lines);
	free(file.p);
}

static void test_tail_matches_model(void **state)
{
	(void)state;
	for (uint32_t seed = 1; seed <= 40; seed++)
		run_model(seed, 60, 0); /* small records, heavy interleaving */
	for (uint32_t seed = 100; seed <= 105; seed++)
		run_model(seed, 150, 12); /* records across blocks, lines past the cap */
}

/* Bytes this process has read through read(2)/pread(2) so far, or -1. */
static long long bytes_read(void)
{
	FILE *f = fopen("/proc/self/io", "re");
	long long n = -1;

	if (f) {
		if (fscanf(f, "rchar: %lld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* A hole of 1 GiB then a few lines: the tail is found in the last block,
 * the hole is not read (counted by the kernel, not timed). */
static void test_tail_does_not_read_from_the_start(void **state)
{
	struct sb b = { 0 };
	struct got g = { 0 };
	long long before, after;
	int fd;

	(void)state;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	assert_true(fd >= 0);
	if (ftruncate(fd, (off_t)1 << 30) < 0) {
		close(fd);
		skip();
	}
	close(fd);
	sb_str(&b, "\n");
	for (int i = 0; i < 5; i++)
		sb_rec(&b, i % 2 ? "stdout" : "stderr", 'F', "x");
	sb_rec(&b, "stderr", 'P', "open ");
	sb_rec(&b, "stdout", 'F', "end");
	write_log(b.p, true);
	before = bytes_read();
	read_tail(3, &g);
	after = bytes_read();
	assert_int_equal(g.n, 3);
	assert_string_equal(g.v[1].text, "end");
	assert_string_equal(g.v[2].text, "open ");
	if (before >= 0 && after >= 0 && after - before > 1 << 20)
		fail_msg("read %lld bytes for a tail of 3 lines", after - before);
	got_free(&g);
	free(b.p);
}

static void test_appended_after_open(void **state)
{
	struct hc_crilog_cursor *c;
	struct got g = { 0 };

	(void)state;
	write_log(TS " stdout F old\n", false);
	c = hc_crilog_cursor_open(path, 0);
	assert_non_null(c);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 0);
	write_log(TS " stdout F new 1\n" TS " stderr P half", true);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.v[0].text, "new 1");
	write_log("-way\n" TS " stdout F new 2\n" TS " stderr F  and rest\n", true);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.v[1].text, "new 2");
	assert_string_equal(g.v[2].text, "half-way and rest");
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 3);
	hc_crilog_cursor_free(c);
	got_free(&g);
}

/* With tail 0, a line already open at the start is not shown half when it
 * ends; with tail 1 it is shown whole. */
static void test_open_line_at_start(void **state)
{
	struct hc_crilog_cursor *c0, *c1;
	struct got g0 = { 0 }, g1 = { 0 };

	(void)state;
	write_log(TS " stdout F before\n" TS " stdout P head-", false);
	write_log("\n", true);
	c0 = hc_crilog_cursor_open(path, 0);
	c1 = hc_crilog_cursor_open(path, 1);
	assert_non_null(c0);
	assert_non_null(c1);
	assert_int_equal(hc_crilog_cursor_read(c0, collect, &g0), 0);
	assert_int_equal(hc_crilog_cursor_read(c1, collect, &g1), 0);
	assert_int_equal(g0.n + g1.n, 0);
	write_log(TS " stdout F tail\n" TS " stdout F next\n", true);
	assert_int_equal(hc_crilog_cursor_read(c0, collect, &g0), 0);
	assert_int_equal(hc_crilog_cursor_read(c1, collect, &g1), 0);
	assert_int_equal(g0.n, 1);
	assert_string_equal(g0.v[0].text, "next");
	assert_int_equal(g1.n, 2);
	assert_string_equal(g1.v[0].text, "head-tail");
	assert_string_equal(g1.v[1].text, "next");
	hc_crilog_cursor_free(c0);
	hc_crilog_cursor_free(c1);
	got_free(&g0);
	got_free(&g1);
}

static void test_truncation(void **state)
{
	struct hc_crilog_cursor *c;
	struct got g = { 0 };
	int fd;

	(void)state;
	write_log(TS " stdout F before 1\n" TS " stdout F before 2\n" TS " stderr P pending\n", false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 2);
	/* truncated and rewritten shorter: the pending line is given up, then
	 * the file is read again from its start */
	write_log(TS " stdout F after\n", false);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 4);
	assert_string_equal(g.v[2].text, "pending");
	assert_true(g.v[2].unfinished);
	assert_string_equal(g.v[3].text, "after");
	/* truncated to nothing, written later */
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	close(fd);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 4);
	write_log(TS " stdout F again\n", true);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 5);
	assert_string_equal(g.v[4].text, "again");
	hc_crilog_cursor_free(c);
	got_free(&g);
}

static void test_replacement(void **state)
{
	struct hc_crilog_cursor *c;
	struct got g = { 0 };
	char other[160], rotated[160];
	const char *t = TS " stdout F new 1\n" TS " stdout F new 2\n";

	(void)state;
	snprintf(other, sizeof(other), "%s/next", dir);
	snprintf(rotated, sizeof(rotated), "%s/0.log.1", dir);
	write_log(TS " stdout F old 1\n", false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 1);
	/* written to the old file, then another file renamed over it: the old
	 * file's rest first, then the new one from its start */
	write_log(TS " stdout F old 2\n", true);
	write_at(other, t, strlen(t), false);
	assert_int_equal(rename(other, path), 0);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 4);
	assert_string_equal(g.v[1].text, "old 2");
	assert_string_equal(g.v[2].text, "new 1");
	assert_string_equal(g.v[3].text, "new 2");
	/* deleted and created again */
	assert_int_equal(unlink(path), 0);
	write_log(TS " stdout F recreated\n", false);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 5);
	assert_string_equal(g.v[4].text, "recreated");
	/* rotated (renamed away): still read until a new file appears */
	assert_int_equal(rename(path, rotated), 0);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_false(hc_crilog_cursor_gone(c));
	write_at(rotated, TS " stdout F late\n", strlen(TS " stdout F late\n"), true);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 6);
	assert_string_equal(g.v[5].text, "late");
	write_log(TS " stdout F reopened\n", false);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 7);
	assert_string_equal(g.v[6].text, "reopened");
	/* deleted for good */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_true(hc_crilog_cursor_gone(c));
	hc_crilog_cursor_free(c);
	got_free(&g);
}

/* A callback that stops after every line loses nothing. */
static void test_stop_and_resume(void **state)
{
	struct hc_crilog_cursor *c;
	struct got g = { .stop_every = 1 };
	int r, calls = 0;

	(void)state;
	write_log(TS " stdout F one\n" TS " stdout F two\n" TS " stdout P th\n" TS " stdout F ree\n",
		  false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	while ((r = hc_crilog_cursor_read(c, collect, &g)) == 7)
		calls++;
	assert_int_equal(r, 0);
	assert_int_equal(calls, 3);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.v[1].text, "two");
	assert_string_equal(g.v[2].text, "three");
	hc_crilog_cursor_free(c);
	got_free(&g);
}

static void test_open_errors(void **state)
{
	char fifo[160];

	(void)state;
	assert_null(hc_crilog_cursor_open(path, -1));
	assert_int_equal(errno, ENOENT);
	assert_null(hc_crilog_cursor_open(dir, -1));
	assert_int_equal(errno, EISDIR);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_null(hc_crilog_cursor_open(fifo, -1));
	assert_int_equal(errno, EINVAL);
}

static void test_change_fd(void **state)
{
	struct hc_crilog_cursor *c;
	struct got g = { 0 };
	struct pollfd pfd = { .events = POLLIN };

	(void)state;
	write_log(TS " stdout F one\n", false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	pfd.fd = hc_crilog_cursor_fd(c);
	assert_true(pfd.fd >= 0);
	assert_int_equal(hc_crilog_cursor_fd(c), pfd.fd);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	write_log(TS " stdout F two\n", true);
	assert_int_equal(poll(&pfd, 1, 0), 1); /* inotify queues at write time */
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(poll(&pfd, 1, 0), 0); /* drained by the read */
	hc_crilog_cursor_free(c);
	got_free(&g);
}

/* follow: each line seen makes the "workload" write the next thing. */
struct script {
	struct got g;
	const char *const *steps; /* appended after line i */
	int nsteps;
	bool unlink_after_first;
};

static int scripted(void *arg, const struct hc_crilog_line *l)
{
	struct script *s = arg;
	int i = (int)s->g.n;

	collect(&s->g, l);
	if (s->unlink_after_first && i == 0)
		assert_int_equal(unlink(path), 0);
	if (i < s->nsteps) {
		if (s->steps[i])
			write_log(s->steps[i], true);
		return 0;
	}
	return 42;
}

/* Lines appended while following (here by the callback, as the workload
 * would between two reads) wake the follower through inotify; a line whose
 * pieces come in separate wakeups is joined. */
static void test_follow(void **state)
{
	static const char *const steps[] = {
		TS " stdout P a1-\n" TS " stderr F mid\n", /* after "start" */
		TS " stdout F a2\n",			   /* after "mid" */
	};
	struct script s = { .steps = steps, .nsteps = 2 };
	struct hc_crilog_cursor *c;

	(void)state;
	write_log(TS " stdout F old\n" TS " stdout F start\n", false);
	c = hc_crilog_cursor_open(path, 1);
	assert_non_null(c);
	assert_int_equal(hc_crilog_follow(c, scripted, &s, -1), 42);
	assert_int_equal(s.g.n, 3);
	assert_string_equal(s.g.v[0].text, "start");
	assert_string_equal(s.g.v[1].text, "mid");
	assert_string_equal(s.g.v[2].text, "a1-a2");
	hc_crilog_cursor_free(c);
	got_free(&s.g);
}

/* stop_fd ends a follow without giving up an open line; the next follow
 * goes on where it was. */
static void test_follow_stop_fd(void **state)
{
	static const char *const steps[] = { NULL };
	struct script s = { .steps = steps, .nsteps = 1 };
	struct hc_crilog_cursor *c;
	int p[2];

	(void)state;
	write_log(TS " stdout F w\n" TS " stderr P one-\n" TS " stderr P", false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(hc_crilog_follow(c, scripted, &s, p[0]), 0);
	assert_int_equal(s.g.n, 1);
	/* a hung-up stop_fd stops too */
	close(p[1]);
	assert_int_equal(read(p[0], (char[1]){ 0 }, 1), 1);
	assert_int_equal(hc_crilog_follow(c, scripted, &s, p[0]), 0);
	close(p[0]);
	assert_int_equal(s.g.n, 1);
	write_log(" two\n" TS " stderr F three\n", true);
	assert_int_equal(hc_crilog_follow(c, scripted, &s, -1), 42);
	assert_int_equal(s.g.n, 2);
	assert_string_equal(s.g.v[1].text, "one-twothree");
	assert_false(s.g.v[1].unfinished);
	hc_crilog_cursor_free(c);
	got_free(&s.g);
}

static void test_follow_ends_when_deleted(void **state)
{
	static const char *const steps[] = { NULL, NULL };
	struct script s = { .unlink_after_first = true, .nsteps = 2, .steps = steps };
	struct hc_crilog_cursor *c;

	(void)state;
	write_log(TS " stdout F first\n" TS " stdout P last words", false);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	assert_int_equal(hc_crilog_follow(c, scripted, &s, -1), 0);
	assert_int_equal(s.g.n, 2);
	assert_string_equal(s.g.v[1].text, "last words");
	assert_true(s.g.v[1].unfinished);
	assert_true(hc_crilog_cursor_gone(c));
	hc_crilog_cursor_free(c);
	got_free(&s.g);
}

/* ---- rotation, numbered reads ---- */

/* Appends lines "line FROM" .. "line TO-1" to file p. */
static void append_numbered(const char *p, int from, int to)
{
	struct sb b = { 0 };
	char text[32];

	for (int i = from; i < to; i++) {
		snprintf(text, sizeof(text), "line %d", i);
		sb_rec(&b, "stdout", 'F', text);
	}
	write_at(p, b.p ? b.p : "", b.len, true);
	free(b.p);
}

/* The reopen double: containerd opens the path afresh (an empty file). */
struct reopen_double {
	int calls;
	int fail; /* -errno to return instead */
};

static int reopen_double(void *arg)
{
	struct reopen_double *rd = arg;

	rd->calls++;
	if (rd->fail)
		return rd->fail;
	write_at(path, "", 0, false);
	return 0;
}

static bool exists_k(unsigned k)
{
	char name[160];

	assert_int_equal(hc_crilog_rotated_name(path, k, name, sizeof(name)), 0);
	return access(name, F_OK) == 0;
}

/* Numbered read; the lines' texts into g, *next the next line. */
static void read_lines(struct hc_crilog_marks *m, uint64_t from, uint32_t tail, uint64_t window,
		       struct got *g, uint64_t *next)
{
	struct hc_crilog_query q = { .from_line = from, .tail = tail, .window = window };

	assert_int_equal(hc_crilog_read_lines(path, &q, m, collect, g, next), 0);
}

/* g holds exactly "line FROM" .. "line TO-1". */
static void assert_numbered(const struct got *g, int from, int to)
{
	char want[32];

	assert_int_equal(g->n, (size_t)(to - from));
	for (int i = from; i < to; i++) {
		snprintf(want, sizeof(want), "line %d", i);
		assert_string_equal(g->v[i - from].text, want);
	}
}

static void test_rotated_names(void **state)
{
	char buf[32], longp[64];

	(void)state;
	assert_int_equal(hc_crilog_rotated_name("/l/0.log", 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/l/0.log");
	assert_int_equal(hc_crilog_rotated_name("/l/0.log", 1, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/l/0.log.1");
	assert_int_equal(hc_crilog_rotated_name("/l/0.log", 12, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/l/0.log.12");
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(hc_crilog_rotated_name(longp, 1, buf, sizeof(buf)), -ENAMETOOLONG);
}

/* Four rotations keeping two files: the oldest are dropped, the renames
 * shift, and lines keep their numbers across all of it. */
static void test_rotate_shifts_drops_and_numbers(void **state)
{
	struct hc_crilog_marks *m = hc_crilog_marks_new();
	struct reopen_double rd = { 0 };
	struct got g = { 0 };
	uint64_t next;

	(void)state;
	assert_non_null(m);
	for (int round = 0; round < 4; round++) {
		append_numbered(path, 10 * round, 10 * round + 10);
		assert_int_equal(hc_crilog_rotate(path, 1, 2, reopen_double, &rd), 1);
	}
	append_numbered(path, 40, 45);
	assert_int_equal(rd.calls, 4);
	assert_true(exists_k(0) && exists_k(1) && exists_k(2));
	assert_false(exists_k(3));
	/* from the oldest line kept */
	read_lines(m, 0, 0, 0, &g, &next);
	assert_numbered(&g, 20, 45);
	assert_int_equal(next, 45);
	got_free(&g);
	/* from a line in the oldest file kept, through both renamed ones */
	read_lines(m, 25, 0, 0, &g, &next);
	assert_numbered(&g, 25, 45);
	got_free(&g);
	/* a tail reaching back into .1 */
	read_lines(m, 0, 8, 0, &g, &next);
	assert_numbered(&g, 37, 45);
	got_free(&g);
	/* nothing new */
	read_lines(m, 45, 0, 0, &g, &next);
	assert_int_equal(g.n, 0);
	assert_int_equal(next, 45);
	hc_crilog_marks_free(m);
}

static void test_rotate_below_size_or_failing(void **state)
{
	struct reopen_double rd = { 0 };
	struct got g = { 0 };
	uint64_t next;

	(void)state;
	assert_int_equal(hc_crilog_rotate(path, 1, 2, reopen_double, &rd), 0); /* no file */
	append_numbered(path, 0, 10);
	assert_int_equal(hc_crilog_rotate(path, 1 << 20, 2, reopen_double, &rd), 0);
	assert_int_equal(rd.calls, 0);
	/* a reopen that fails: containerd still writes the file, under its name */
	assert_int_equal(hc_crilog_rotate(path, 1, 2, reopen_double, &rd), 1);
	append_numbered(path, 10, 20);
	rd.fail = -EIO;
	assert_int_equal(hc_crilog_rotate(path, 1, 2, reopen_double, &rd), -EIO);
	assert_true(exists_k(0) && exists_k(1));
	assert_false(exists_k(2));
	read_lines(NULL, 0, 0, 0, &g, &next);
	assert_numbered(&g, 0, 20);
	assert_int_equal(next, 20);
	got_free(&g);
}

/* A follower asks from the line after its last: it gets every line once,
 * also when the log was rotated (twice) between two of its reads. */
static void test_follower_across_rotation(void **state)
{
	struct hc_crilog_marks *m = hc_crilog_marks_new();
	struct reopen_double rd = { 0 };
	struct got g = { 0 };
	uint64_t next;

	(void)state;
	append_numbered(path, 0, 7);
	read_lines(m, 0, 0, 0, &g, &next);
	assert_numbered(&g, 0, 7);
	got_free(&g);
	append_numbered(path, 7, 12);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(path, 12, 15);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(path, 15, 16);
	read_lines(m, next, 0, 0, &g, &next);
	assert_numbered(&g, 7, 16);
	assert_int_equal(next, 16);
	got_free(&g);
	hc_crilog_marks_free(m);
}

/* Numbers live on disk: a reader with no marks (an agent restarted) and a
 * file the index misses (a crash between the rename and the index) number
 * lines as before. */
static void test_numbers_survive_restart_and_crash(void **state)
{
	struct reopen_double rd = { 0 };
	struct got g = { 0 };
	char one[160], two[160];
	uint64_t next;

	(void)state;
	append_numbered(path, 0, 10);
	assert_int_equal(hc_crilog_rotate(path, 1, 1, reopen_double, &rd), 1);
	append_numbered(path, 10, 20);
	assert_int_equal(hc_crilog_rotate(path, 1, 1, reopen_double, &rd), 1);
	append_numbered(path, 20, 25);
	read_lines(NULL, 12, 0, 0, &g, &next);
	assert_numbered(&g, 12, 25);
	got_free(&g);
	/* a rotation cut short after its renames: no index entry for the new file */
	hc_crilog_rotated_name(path, 1, one, sizeof(one));
	hc_crilog_rotated_name(path, 2, two, sizeof(two));
	assert_int_equal(rename(one, two), 0);
	assert_int_equal(rename(path, one), 0);
	append_numbered(path, 25, 30);
	read_lines(NULL, 22, 0, 0, &g, &next);
	assert_numbered(&g, 22, 30);
	assert_int_equal(next, 30);
	got_free(&g);
}

/* containerd flushes the last of the old file after its reopen answered:
 * the lines it gained are counted when the numbers are next read, and the
 * next rotation records them. */
static void test_late_lines_in_the_rotated_file(void **state)
{
	struct reopen_double rd = { 0 };
	struct got g = { 0 };
	char one[160];
	uint64_t next;

	(void)state;
	hc_crilog_rotated_name(path, 1, one, sizeof(one));
	append_numbered(path, 0, 10);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(one, 10, 12);
	append_numbered(path, 12, 15);
	read_lines(NULL, 0, 0, 0, &g, &next);
	assert_numbered(&g, 0, 15);
	assert_int_equal(next, 15);
	got_free(&g);
	read_lines(NULL, 13, 0, 0, &g, &next);
	assert_numbered(&g, 13, 15);
	got_free(&g);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(path, 15, 16);
	read_lines(NULL, 14, 0, 0, &g, &next);
	assert_numbered(&g, 14, 16);
	assert_int_equal(next, 16);
	got_free(&g);
}

/* "logs --follow" across a rotation: the new file after the old one, and
 * what containerd still writes to the old one after the new one appeared
 * is read too. */
static void test_follow_across_rotation(void **state)
{
	struct hc_crilog_cursor *c;
	struct reopen_double rd = { 0 };
	struct got g = { 0 };
	char one[160];

	(void)state;
	hc_crilog_rotated_name(path, 1, one, sizeof(one));
	append_numbered(path, 0, 3);
	c = hc_crilog_cursor_open(path, -1);
	assert_non_null(c);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	append_numbered(path, 3, 5);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(path, 5, 7);
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_numbered(&g, 0, 7);
	append_numbered(one, 7, 8); /* late, to the old file */
	assert_int_equal(hc_crilog_cursor_read(c, collect, &g), 0);
	assert_numbered(&g, 0, 8);
	hc_crilog_cursor_free(c);
	got_free(&g);
}

/* "logs --tail N" with fewer lines in the current file: the rest comes
 * from the rotated files, oldest first. */
static void test_cursor_tail_across_rotation(void **state)
{
	struct reopen_double rd = { 0 };
	struct got g = { 0 };

	(void)state;
	append_numbered(path, 0, 10);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(path, 10, 13);
	assert_int_equal(hc_crilog_rotate(path, 1, 3, reopen_double, &rd), 1);
	append_numbered(path, 13, 15);
	read_tail(6, &g);
	assert_numbered(&g, 9, 15);
	got_free(&g);
	read_tail(-1, &g);
	assert_numbered(&g, 0, 15);
	got_free(&g);
	read_tail(1, &g);
	assert_numbered(&g, 14, 15);
	got_free(&g);
}

/* On a large log, a follower's read and a tail cost what they return and
 * what was written since (the end is counted once, then remembered), and a
 * read from far back stops at its window. */
static void test_numbered_reads_cost_what_they_return(void **state)
{
	struct hc_crilog_marks *m = hc_crilog_marks_new();
	struct got g = { 0 };
	long long before;
	uint64_t next, n;
	const int lines = 200000; /* about 10 MiB */

	(void)state;
	append_numbered(path, 0, lines);
	read_lines(m, 0, 5, 0, &g, &next); /* counts the file once */
	assert_numbered(&g, lines - 5, lines);
	assert_int_equal(next, lines);
	got_free(&g);
	append_numbered(path, lines, lines + 10);
	before = bytes_read();
	read_lines(m, next, 0, 0, &g, &n);
	assert_numbered(&g, lines, lines + 10);
	assert_int_equal(n, lines + 10);
	got_free(&g);
	read_lines(m, 0, 3, 8 << 20, &g, &n); /* as the API asks: a window too */
	assert_numbered(&g, lines + 7, lines + 10);
	got_free(&g);
	if (before >= 0 && bytes_read() - before > 1 << 20)
		fail_msg("read %lld bytes for 13 lines", bytes_read() - before);
	/* from the first line, but a window of 64 KiB: only the newest lines */
	before = bytes_read();
	read_lines(m, 0, 0, 65536, &g, &n);
	assert_true(g.n > 100 && g.n < 2000);
	assert_string_equal(g.v[g.n - 1].text, "line 200009");
	if (before >= 0 && bytes_read() - before > 1 << 20)
		fail_msg("read %lld bytes for a 64 KiB window", bytes_read() - before);
	got_free(&g);
	hc_crilog_marks_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_interleaved_partials_and_malformed),
		cmocka_unit_test(test_any_split_same_lines),
		cmocka_unit_test(test_line_cap),
		cmocka_unit_test(test_endless_line_is_bounded),
		cmocka_unit_test_setup_teardown(test_real_partial_example, setup, teardown),
		cmocka_unit_test_setup_teardown(test_final_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_long_lines_across_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_matches_model, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_does_not_read_from_the_start, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_appended_after_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_line_at_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replacement, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_stop_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_ends_when_deleted, setup, teardown),
		cmocka_unit_test(test_rotated_names),
		cmocka_unit_test_setup_teardown(test_rotate_shifts_drops_and_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_below_size_or_failing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follower_across_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_numbers_survive_restart_and_crash, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_late_lines_in_the_rotated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cursor_tail_across_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_follow_across_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_numbered_reads_cost_what_they_return, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
