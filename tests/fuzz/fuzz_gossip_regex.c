/*
 * libFuzzer: a serf query's tag filter is a regular expression from the
 * network, compiled and run on the loop thread of every node. The input is
 * a pattern and a text: its first byte says how long the pattern is (the
 * rest is the text), so both vary freely. Checked:
 *  - compiling and searching stay in bounds (under ASan) and finish: the
 *    VM's steps stay within (text + 1) x 3 x the largest program;
 *  - compile gives 0 or one of its documented errors;
 *  - wrapping a pattern (without \Q) in (?:...) changes nothing, and anchoring it
 *    (^(?:...)) can only take matches away;
 *  - \Q...\E over a piece of the text matches exactly when memmem finds it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/regex_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Compiles and searches; aborts if the work is out of bounds. */
static int run(const char *pattern, size_t plen, const char *text, size_t tlen)
{
	struct hc_gossip_re *re;
	uint64_t steps = 0;
	int r = hc_gossip_re_compile(pattern, plen, &re);

	if (r < 0) {
		if (r != -EINVAL && r != -E2BIG && r != -ENOTSUP && r != -ENOMEM)
			abort();
		return r;
	}
	r = hc_gossip_re_search(re, text, tlen, &steps);
	hc_gossip_re_free(re);
	if (r != 0 && r != 1 && r != -ENOMEM)
		abort();
	if (steps > ((uint64_t)tlen + 1) * 3 * HC_GOSSIP_RE_PROG_MAX)
		abort();
	return r;
}

static void check_wrapped(const char *p, size_t plen, const char *text, size_t tlen, int r)
{
	char w[HC_GOSSIP_RE_PATTERN_MAX + 8];
	int again;

	/* \Q quotes to the end of the pattern without \E: it would quote the ) */
	if (r < 0 || plen + 6 > HC_GOSSIP_RE_PATTERN_MAX || memmem(p, plen, "\\Q", 2))
		return;
	memcpy(w, "(?:", 3);
	memcpy(w + 3, p, plen);
	w[3 + plen] = ')';
	again = run(w, plen + 4, text, tlen);
	if (again != r && again != -E2BIG)
		abort();
	memmove(w + 1, w, plen + 4);
	w[0] = '^';
	again = run(w, plen + 5, text, tlen);
	if (again == 1 && r != 1)
		abort();
}

/* The first half of the text, quoted, as a pattern. */
static void check_quoted(const char *text, size_t tlen)
{
	char q[HC_GOSSIP_RE_PATTERN_MAX + 1];
	size_t n = tlen / 2;
	int r;

	if (n + 4 > HC_GOSSIP_RE_PATTERN_MAX || memmem(text, n, "\\E", 2))
		return;
	memcpy(q, "\\Q", 2);
	memcpy(q + 2, text, n);
	memcpy(q + 2 + n, "\\E", 2);
	r = run(q, n + 4, text + n, tlen - n);
	if (r == -EINVAL)
		return; /* the quoted bytes are not UTF-8 */
	if (r != (n == 0 || memmem(text + n, tlen - n, text, n) != NULL))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t plen;
	char *buf;
	int r;

	if (size == 0)
		return 0;
	plen = data[0];
	if (plen > size - 1)
		plen = size - 1;
	/* exact-size copies so ASan sees any read past either */
	buf = malloc(size);
	if (!buf)
		return 0;
	memcpy(buf, data + 1, size - 1);
	r = run(buf, plen, buf + plen, size - 1 - plen);
	check_wrapped(buf, plen, buf + plen, size - 1 - plen, r);
	check_quoted(buf + plen, size - 1 - plen);
	free(buf);
	return 0;
}
