/* Private to agent/gossip: the regular expressions of serf's tag filters
 * (regex.c), as Go's regexp (RE2 syntax) matches them, in time linear in
 * the text and without recursion over it. */
#ifndef HC_GOSSIP_REGEX_INT_H
#define HC_GOSSIP_REGEX_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Patterns longer than this are refused (serf sets no limit; a query
 * carries at most 1024 bytes, and tag filters are short). */
#define HC_GOSSIP_RE_PATTERN_MAX 256
/* Compiled program size: counted repetitions expand, so a{1000} is the
 * most a pattern may ask for (RE2's own limit on a count is 1000). */
#define HC_GOSSIP_RE_PROG_MAX 4096

struct hc_gossip_re;

/*
 * Compiles pattern (len bytes, UTF-8, no NUL needed) in Go's syntax:
 * literals and escapes, ., [] and [^] with ranges, Perl (\d \s \w) and
 * POSIX ([:alpha:]) classes, * + ? {n} {n,} {n,m} (lazy forms too), |,
 * (), (?:), (?P<name>), ^ $ \A \z \b \B, \Q...\E, and the flags i m s U
 * in (?flags) and (?flags:re). Returns 0 with *out (free with
 * hc_gossip_re_free), -E2BIG (pattern over HC_GOSSIP_RE_PATTERN_MAX or
 * program over HC_GOSSIP_RE_PROG_MAX), -ENOTSUP (what Go accepts but we
 * do not: \p{...} Unicode classes), -EINVAL (what Go rejects too:
 * backreferences, bad escapes, unbalanced parentheses...) or -ENOMEM.
 * Case folding covers ASCII letters only.
 */
int hc_gossip_re_compile(const char *pattern, size_t len, struct hc_gossip_re **out);
void hc_gossip_re_free(struct hc_gossip_re *re);

/* 1 if the pattern matches anywhere in text (Go's MatchString: unanchored
 * unless the pattern says otherwise), else 0. Work is O(len x program
 * size); when steps is not NULL it receives the VM steps taken, which tests
 * use to check that. Never blocks, never recurses. */
int hc_gossip_re_search(const struct hc_gossip_re *re, const char *text, size_t len,
			uint64_t *steps);

/* Compile and search in one: 1 match, 0 none, or compile's -errno. */
int hc_gossip_re_match(const char *pattern, size_t plen, const char *text, size_t len);

/* ---- the compiled program: regex.c writes it, regex_vm.c runs it ---- */

/* Go's utf8.DecodeRune: the rune at s (n > 0 bytes) and its size; a bad
 * byte is U+FFFD of size 1 (*bad set). */
uint32_t hc_gossip_re_decode_rune(const uint8_t *s, size_t n, size_t *size, bool *bad);

enum hc_gossip_re_assert { A_BOT, A_EOT, A_BOL, A_EOL, A_WORD, A_NOT_WORD };

/* A class is a sorted run of disjoint rune ranges. */
struct hc_gossip_re_range {
	uint32_t lo, hi;
};

struct hc_gossip_re_class {
	size_t first, n; /* in ranges[] */
};

enum hc_gossip_re_op { OP_CLASS, OP_SPLIT, OP_JMP, OP_ASSERT, OP_MATCH };

struct hc_gossip_re_inst {
	uint8_t op;
	uint8_t arg;   /* OP_ASSERT: enum hc_gossip_re_assert */
	uint32_t x, y; /* OP_CLASS: the class; OP_SPLIT: both ways; OP_JMP: x */
};

struct hc_gossip_re {
	struct hc_gossip_re_inst *prog;
	size_t n;
	struct hc_gossip_re_range *ranges;
	struct hc_gossip_re_class *classes;
};

#endif /* HC_GOSSIP_REGEX_INT_H */
