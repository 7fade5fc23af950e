/* The tag-filter matcher: Go's regexp semantics on the patterns serf users
 * write (what matches, what Go refuses), and bounded work on hostile ones:
 * pathological patterns over long texts in time linear in the text, length
 * and size limits, nothing that recurses over the input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/regex_int.h"

struct want {
	const char *pattern, *text;
	int result; /* 1, 0, or the -errno compile gives */
};

static int match(const char *pattern, const char *text)
{
	return hc_gossip_re_match(pattern, strlen(pattern), text, strlen(text));
}

static void check_table(const struct want *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int got = match(w[i].pattern, w[i].text);

		if (got != w[i].result)
			fail_msg("/%s/ on \"%s\": %d, Go's regexp gives %d", w[i].pattern, w[i].text,
				 got, w[i].result);
	}
}

/* What serf users write in -tag filters, and what Go's MatchString says. */
static void test_filters_people_write(void **state)
{
	static const struct want w[] = {
		{ "web", "web", 1 },
		{ "web", "webserver", 1 }, /* unanchored */
		{ "^web$", "webserver", 0 },
		{ "^web$", "web", 1 },
		{ "^web$", "web\n", 0 }, /* $ is the end of the text, not before a \n */
		{ "(?m)^web$", "db\nweb\n", 1 },
		{ "^(web|db)$", "db", 1 },
		{ "^(web|db)$", "cache", 0 },
		{ "web|db", "cache", 0 },
		{ "^eu-(west|east)-[0-9]+$", "eu-west-12", 1 },
		{ "^eu-(west|east)-[0-9]+$", "eu-north-1", 0 },
		{ "^v1\\.[0-9]+\\.[0-9]+$", "v1.22.3", 1 },
		{ "^v1\\.[0-9]+\\.[0-9]+$", "v1x22.3", 0 },
		{ "^v[0-9]{1,3}$", "v100", 1 },
		{ "^v[0-9]{1,3}$", "v1000", 0 },
		{ "^a{2,}$", "aaa", 1 },
		{ "^a{2}$", "aaa", 0 },
		{ "x{", "x{", 1 },	  /* not a count: literal */
		{ "x{,2}", "x{,2}", 1 },  /* neither */
		{ ".*", "", 1 },
		{ "", "anything", 1 },
		{ "^$", "", 1 },
		{ ".", "\n", 0 },
		{ "(?s).", "\n", 1 },
		{ "[^a]", "\n", 1 }, /* negated classes take \n in Go */
		{ "\\d+", "abc123", 1 },
		{ "^\\w+$", "node_1", 1 },
		{ "^\\w+$", "node-1", 0 },
		{ "^\\S+$", "a b", 0 },
		{ "\\s", "a\tb", 1 },
		{ "\\bdb\\b", "my db here", 1 },
		{ "\\bdb\\b", "mydb", 0 },
		{ "\\Bdb", "mydb", 1 },
		{ "(?i)^WEB$", "web", 1 },
		{ "(?i:W)eb", "web", 1 },
		{ "(?i:W)EB", "web", 0 },
		{ "^(?i)[A-C]+$", "aBc", 1 },
		{ "^(?i)[^a]$", "A", 0 },
		{ "[[:digit:]]+", "x9", 1 },
		{ "^[[:^alpha:]]+$", "123", 1 },
		{ "^[[:alpha:]]+$", "ab1", 0 },
		{ "[]a]", "]", 1 },
		{ "^[a-]$", "-", 1 },
		{ "^[\\d\\-]+$", "1-2", 1 },
		{ "\\Qa.b\\E", "a.b", 1 },
		{ "\\Qa.b\\E", "axb", 0 },
		{ "^\\Qab\\E+$", "abbb", 1 }, /* + binds to the last quoted rune */
		{ "\\x41\\x{42}", "AB", 1 },
		{ "\\101", "A", 1 }, /* octal */
		{ "\\.", "a", 0 },
		{ "a*?b", "aab", 1 }, /* lazy: the same yes or no */
		{ "(?P<zone>eu|us)-1", "us-1", 1 },
		{ "^.$", "\xc3\xa9", 1 },	   /* one rune, two bytes */
		{ "^..$", "\xc3\xa9", 0 },
		{ "^\xc3\xa9+$", "\xc3\xa9\xc3\xa9", 1 },
		{ "^.$", "\xff", 1 }, /* a bad byte is one U+FFFD */
		{ "\\A\\z", "", 1 },
	};

	(void)state;
	check_table(w, sizeof(w) / sizeof(w[0]));
}

/* What Go refuses to compile; such a filter matches no node there either. */
static void test_what_go_refuses(void **state)
{
	static const struct want w[] = {
		{ "(", "", -EINVAL },	  { ")", "", -EINVAL },	    { "a)", "", -EINVAL },
		{ "[a", "", -EINVAL },	  { "[]", "", -EINVAL },    { "[z-a]", "", -EINVAL },
		{ "*", "", -EINVAL },	  { "a**", "", -EINVAL },   { "a*+", "", -EINVAL },
		{ "a|*", "", -EINVAL },	  { "(*)", "", -EINVAL },   { "{2}", "", -EINVAL },
		{ "a{2}{3}", "", -EINVAL }, { "a{1001}", "", -EINVAL }, { "a{3,2}", "", -EINVAL },
		{ "(a)\\1", "", -EINVAL }, { "\\8", "", -EINVAL },   { "\\q", "", -EINVAL },
		{ "\\Z", "", -EINVAL },	  { "(?<n>a)", "", -EINVAL }, { "(?x)", "", -EINVAL },
		{ "(?)", "", -EINVAL },	  { "(?i-)", "", -EINVAL }, { "(?i)*", "", -EINVAL },
		{ "[[:foo:]]", "", -EINVAL }, { "\xff", "", -EINVAL }, { "[\\b]", "", -EINVAL },
		{ "\\E", "", -EINVAL },   { "a\\Qb\\E\\E", "", -EINVAL },
		{ "\\pL", "", -ENOTSUP }, { "[\\p{Greek}]", "", -ENOTSUP },
	};

	(void)state;
	check_table(w, sizeof(w) / sizeof(w[0]));
}

/* Steps the VM takes for pattern over n copies of c plus a tail. */
static uint64_t steps_for(const char *pattern, char c, size_t n, const char *tail, int want)
{
	size_t tl = strlen(tail);
	char *text = malloc(n + tl + 1);
	struct hc_gossip_re *re;
	uint64_t steps = 0;

	assert_non_null(text);
	memset(text, c, n);
	memcpy(text + n, tail, tl + 1);
	assert_int_equal(hc_gossip_re_compile(pattern, strlen(pattern), &re), 0);
	assert_int_equal(hc_gossip_re_search(re, text, n + tl, &steps), want);
	hc_gossip_re_free(re);
	free(text);
	return steps;
}

/* Patterns that take a backtracking matcher exponential time or stack
 * depth linear in the text: here the steps grow linearly (twice the text,
 * at most twice the steps, and a few per byte and instruction). */
static void test_pathological_patterns_are_linear(void **state)
{
	static const struct {
		const char *pattern;
		char fill;
		const char *tail;
		int want;
	} cases[] = {
		{ "(a*)*b", 'a', "", 0 },	{ "(a|a)*c", 'a', "", 0 },
		{ "^(a+)+$", 'a', "!", 0 },	{ "(x+x+)+y", 'x', "", 0 },
		{ "(a|aa)*$b", 'a', "", 0 },	{ "(.*)*(.*)*z", 'q', "", 0 },
		{ "(a*)*b", 'a', "b", 1 },	{ "((a?){20}a{20})", 'a', "", 1 },
		{ "(?:(?:a*)*)*$", 'a', "", 1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t small = steps_for(cases[i].pattern, cases[i].fill, 50000, cases[i].tail,
					   cases[i].want);
		uint64_t big = steps_for(cases[i].pattern, cases[i].fill, 100000, cases[i].tail,
					 cases[i].want);
		struct hc_gossip_re *re;

		assert_int_equal(hc_gossip_re_compile(cases[i].pattern, strlen(cases[i].pattern),
						      &re), 0);
		if (big > 2 * small + 1000)
			fail_msg("/%s/: %llu steps for 50k, %llu for 100k", cases[i].pattern,
				 (unsigned long long)small, (unsigned long long)big);
		/* each position visits each instruction at most twice */
		assert_true(big <= 4 * (100000 + 2) * (uint64_t)(HC_GOSSIP_RE_PROG_MAX));
		hc_gossip_re_free(re);
	}
}

/* Length and size bounds: refused at once, however they are built. */
static void test_bounds(void **state)
{
	char pattern[HC_GOSSIP_RE_PATTERN_MAX + 2];
	struct hc_gossip_re *re;

	(void)state;
	memset(pattern, 'a', sizeof(pattern) - 1);
	pattern[sizeof(pattern) - 1] = '\0';
	assert_int_equal(match(pattern, "a"), -E2BIG);
	pattern[HC_GOSSIP_RE_PATTERN_MAX] = '\0';
	assert_int_equal(match(pattern, pattern), 1);

	/* as deep as the length allows: 128 groups, no stack trouble */
	for (int i = 0; i < 128; i++) {
		pattern[i] = '(';
		pattern[128 + i] = ')';
	}
	pattern[256] = '\0';
	assert_int_equal(match(pattern, ""), 1);

	assert_int_equal(match("a{1000}", "a"), 0);
	assert_int_equal(match("(a{1000}){1000}", "a"), -E2BIG);
	assert_int_equal(match("[a-z]{100}[0-9]{100}x{1000}", "a"), 0);
	assert_int_equal(match("((((((){1000}){1000}){1000}){1000}){1000}){1000}", ""), -E2BIG);
	assert_int_equal(match("(?:(?:(?:){1000}){1000}){1000}", ""), -E2BIG);
	assert_int_equal(hc_gossip_re_compile("ab", 2, &re), 0);
	assert_int_equal(hc_gossip_re_search(re, "xxab", 4, NULL), 1);
	assert_int_equal(hc_gossip_re_search(re, "xxa", 3, NULL), 0);
	hc_gossip_re_free(re);
	hc_gossip_re_free(NULL);
}

/* Embedded NULs: the pattern and the text are counted bytes. */
static void test_counted_bytes(void **state)
{
	(void)state;
	assert_int_equal(hc_gossip_re_match("a\0b", 3, "xa\0b", 4), 1);
	assert_int_equal(hc_gossip_re_match("a\0b", 3, "ab", 2), 0);
	assert_int_equal(hc_gossip_re_match("^\\x00$", 6, "\0", 1), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filters_people_write),
		cmocka_unit_test(test_what_go_refuses),
		cmocka_unit_test(test_pathological_patterns_are_linear),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_counted_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
