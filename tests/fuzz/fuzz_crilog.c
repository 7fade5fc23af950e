/*
 * libFuzzer: container log files hold whatever a workload printed, framed by
 * containerd, and may be damaged. Input: a byte choosing the line cap, a byte
 * seeding how the rest is cut, then the file's content. Checked:
 *  - any bytes go through the parser without crashing, leaking or a line
 *    passing the cap;
 *  - the same lines come out whatever pieces the bytes arrive in and
 *    wherever the callback stops the feed (the cursor's code path);
 *  - the same bytes as a file: the cursor reads what the parser does, and a
 *    tail of N gives min(N, all) lines, each one of the full read's lines,
 *    in its order.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/crilog_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct line {
	int stream;
	bool truncated, malformed, unfinished;
	char ts[HC_CRILOG_TIMESTAMP_MAX + 1];
	char *text;
	size_t len;
};

struct lines {
	struct line *v;
	size_t n, cap;
	size_t line_max;
	uint32_t rng; /* nonzero: stop the feed at random lines */
};

static uint32_t next(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static int keep(void *arg, const struct hc_crilog_line *l)
{
	struct lines *ls = arg;
	struct line *x;
	size_t tslen = strnlen(l->timestamp, sizeof(l->timestamp));

	if (l->len > ls->line_max || !l->text || tslen > HC_CRILOG_TIMESTAMP_MAX)
		abort();
	if (l->malformed && (tslen || l->stream != HC_CRILOG_STDOUT || l->unfinished))
		abort();
	if (!l->malformed && tslen < 20)
		abort();
	if (ls->n == ls->cap) {
		ls->cap = ls->cap ? 2 * ls->cap : 16;
		ls->v = realloc(ls->v, ls->cap * sizeof(*ls->v));
		if (!ls->v)
			abort();
	}
	x = &ls->v[ls->n++];
	x->stream = l->stream;
	x->truncated = l->truncated;
	x->malformed = l->malformed;
	x->unfinished = l->unfinished;
	memcpy(x->ts, l->timestamp, sizeof(x->ts));
	x->len = l->len;
	x->text = malloc(l->len + 1);
	if (!x->text)
		abort();
	memcpy(x->text, l->text, l->len); /* and ASan checks it is all readable */
	return ls->rng && next(&ls->rng) % 4 == 0 ? 9 : 0;
}

static void lines_free(struct lines *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		free(ls->v[i].text);
	free(ls->v);
}

static bool line_equal(const struct line *a, const struct line *b)
{
	return a->stream == b->stream && a->truncated == b->truncated &&
	       a->malformed == b->malformed && a->unfinished == b->unfinished &&
	       strcmp(a->ts, b->ts) == 0 && a->len == b->len &&
	       memcmp(a->text, b->text, a->len) == 0;
}

static void same_lines(const struct lines *a, const struct lines *b)
{
	if (a->n != b->n)
		abort();
	for (size_t i = 0; i < a->n; i++)
		if (!line_equal(&a->v[i], &b->v[i]))
			abort();
}

/* Everything at once, then a flush. */
static void parse_whole(const char *text, size_t len, size_t line_max, struct lines *out)
{
	struct hc_crilog_parser *p = hc_crilog_parser_new(line_max);
	size_t used;

	if (!p)
		abort();
	out->line_max = line_max ? line_max : HC_CRILOG_MAX_LINE;
	if (hc_crilog_parser_feed(p, text, len, &used, keep, out) != 0 || used != len ||
	    hc_crilog_parser_flush(p, keep, out) != 0)
		abort();
	hc_crilog_parser_free(p);
}

/* In random pieces, the callback stopping at random lines. */
static void parse_pieces(const char *text, size_t len, size_t line_max, uint32_t seed,
			 struct lines *out)
{
	struct hc_crilog_parser *p = hc_crilog_parser_new(line_max);
	uint32_t x = seed | 1;
	size_t pos = 0;
	int r;

	if (!p)
		abort();
	out->line_max = line_max ? line_max : HC_CRILOG_MAX_LINE;
	out->rng = seed | 1;
	while (pos < len) {
		size_t n = 1 + next(&x) % 97, used;

		if (n > len - pos)
			n = len - pos;
		r = hc_crilog_parser_feed(p, text + pos, n, &used, keep, out);
		if ((r != 0 && r != 9) || used > n || (r == 0 && used != n))
			abort();
		pos += used;
	}
	while ((r = hc_crilog_parser_flush(p, keep, out)) == 9)
		;
	if (r)
		abort();
	hc_crilog_parser_free(p);
}

static void read_file(const char *path, long tail, struct lines *out)
{
	struct hc_crilog_cursor *c = hc_crilog_cursor_open(path, tail);

	if (!c)
		abort();
	out->line_max = HC_CRILOG_MAX_LINE;
	if (hc_crilog_cursor_read(c, keep, out) != 0 || hc_crilog_cursor_flush(c, keep, out) != 0)
		abort();
	hc_crilog_cursor_free(c);
}

static void check_tails(const char *text, size_t len)
{
	struct lines all = { 0 }, direct = { 0 };
	char path[64];
	int fd;

	fd = memfd_create("crilog", MFD_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, text, len) != (ssize_t)len)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	read_file(path, -1, &all);
	parse_whole(text, len, 0, &direct);
	same_lines(&all, &direct);
	lines_free(&direct);

	long tails[] = { 0, 1, 2, 3, (long)all.n / 2, (long)all.n - 1, (long)all.n,
			 (long)all.n + 1 };
	for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
		struct lines some = { 0 };
		size_t want, j = 0;

		if (tails[t] < 0)
			continue;
		want = (size_t)tails[t] < all.n ? (size_t)tails[t] : all.n;
		read_file(path, tails[t], &some);
		if (some.n != want)
			abort();
		/* a subsequence of the full read */
		for (size_t i = 0; i < some.n; i++) {
			while (j < all.n && !line_equal(&some.v[i], &all.v[j]))
				j++;
			if (j++ == all.n)
				abort();
		}
		lines_free(&some);
	}
	lines_free(&all);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lines whole = { 0 }, pieces = { 0 };
	const char *text = (const char *)data + 2;
	size_t len, line_max;
	char *terminated;

	if (size < 2)
		return 0;
	len = size - 2;
	/* small caps so that truncation is reached with small inputs */
	line_max = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) + 1 : 0;

	parse_whole(text, len, line_max, &whole);
	parse_pieces(text, len, line_max, (uint32_t)data[1] * 2654435761u, &pieces);
	same_lines(&whole, &pieces);
	lines_free(&whole);
	lines_free(&pieces);

	/* the tail counts complete records: end the content with a newline */
	terminated = malloc(len + 1);
	if (!terminated)
		abort();
	if (len)
		memcpy(terminated, text, len);
	if (!len || text[len - 1] != '\n')
		terminated[len++] = '\n';
	check_tails(terminated, len);
	free(terminated);
	return 0;
}
