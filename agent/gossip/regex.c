/*
 * Tag-filter regular expressions, as Go's regexp matches them: a parser for
 * RE2's syntax into a small tree and a compiler into a Pike VM program (one
 * kind of consuming instruction: a sorted set of rune ranges), which
 * regex_vm.c runs every thread of in lockstep over the text.
 * Patterns come from the network and run on the loop thread, so the work
 * is bounded everywhere: the pattern's length (which bounds the parser's
 * and compiler's recursion), the program's size, the compile work of
 * nested counted repetitions, and the search at O(text x program) with an
 * explicit stack. Only whether there is a match is asked, so greedy and
 * lazy forms compile alike.
 */
#include "gossip/regex_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RUNE_MAX 0x10FFFFu
#define REPEAT_MAX 1000 /* RE2's limit on a count */
#define EMIT_WORK_MAX (4 * HC_GOSSIP_RE_PROG_MAX) /* tree nodes visited compiling */

/* ---- the tree ---- */

enum node_kind { N_EMPTY, N_CLASS, N_CAT, N_ALT, N_REPEAT, N_ASSERT };

struct node {
	enum node_kind kind;
	int a, b;     /* children; N_CLASS: class index; N_ASSERT: assert_kind */
	int min, max; /* N_REPEAT; max -1: unbounded */
};

enum { F_FOLD = 1, F_MULTILINE = 2, F_DOTNL = 4, F_UNGREEDY = 8 };

/*
 * What a pattern of len bytes can make at most, so the parser's arrays are
 * sized once: a tree node per atom, repetition, concatenation or
 * alternative (a few per byte); a class per byte; and a class item's
 * ranges (\W's five, tripled by case folding) come from at least two
 * bytes. Past these the pattern is refused (-E2BIG), which none can reach.
 */
#define NODES_MAX(len) (4 * (len) + 8)
#define CLASSES_MAX(len) ((len) + 1)
#define RANGES_MAX(len) (16 * (len) + 16)

struct parser {
	const char *p, *end;
	unsigned flags;
	bool quoting; /* inside \Q...\E */
	int err;
	struct node *nodes;
	size_t nnodes, node_cap;
	struct hc_gossip_re_range *ranges; /* every class's, back to back */
	size_t nranges, range_cap;
	struct hc_gossip_re_class *classes;
	size_t nclasses, class_cap;
};

static int fail(struct parser *ps, int err)
{
	if (!ps->err)
		ps->err = err;
	return -1;
}

static int node_new(struct parser *ps, enum node_kind kind, int a, int b)
{
	if (ps->nnodes == ps->node_cap)
		return fail(ps, -E2BIG);
	ps->nodes[ps->nnodes] = (struct node){ .kind = kind, .a = a, .b = b };
	return (int)ps->nnodes++;
}

/* ---- classes: built as ranges appended at the pool's end ---- */

static void add_range(struct parser *ps, uint32_t lo, uint32_t hi)
{
	if (ps->nranges == ps->range_cap) {
		fail(ps, -E2BIG);
		return;
	}
	ps->ranges[ps->nranges++] = (struct hc_gossip_re_range){ lo, hi };
}

static int range_cmp(const void *a, const void *b)
{
	const struct hc_gossip_re_range *x = a, *y = b;

	return (x->lo > y->lo) - (x->lo < y->lo);
}

/* ASCII case folding: each letter range also brings the other case. */
static void fold_ranges(struct parser *ps, size_t first)
{
	size_t n = ps->nranges;

	for (size_t i = first; i < n; i++) {
		struct hc_gossip_re_range r = ps->ranges[i];
		uint32_t lo, hi;

		lo = r.lo > 'a' ? r.lo : 'a';
		hi = r.hi < 'z' ? r.hi : 'z';
		if (lo <= hi)
			add_range(ps, lo - 32, hi - 32);
		lo = r.lo > 'A' ? r.lo : 'A';
		hi = r.hi < 'Z' ? r.hi : 'Z';
		if (lo <= hi)
			add_range(ps, lo + 32, hi + 32);
	}
}

/* Sorts and merges ranges[first..], negates them if asked, and makes
 * them a class. Returns an N_CLASS node. */
static int class_end(struct parser *ps, size_t first, bool negate)
{
	size_t n = ps->nranges - first, k = 0;
	struct hc_gossip_re_range *r = ps->ranges + first;

	if (ps->err)
		return -1;
	qsort(r, n, sizeof(*r), range_cmp);
	for (size_t i = 0; i < n; i++) {
		if (k && r[i].lo <= r[k - 1].hi + 1) {
			if (r[i].hi > r[k - 1].hi)
				r[k - 1].hi = r[i].hi;
		} else {
			r[k++] = r[i];
		}
	}
	ps->nranges = first + k;
	if (negate) {
		uint32_t next = 0;
		struct hc_gossip_re_range *copy = malloc((k ? k : 1) * sizeof(*copy));

		if (!copy)
			return fail(ps, -ENOMEM);
		memcpy(copy, ps->ranges + first, k * sizeof(*copy));
		ps->nranges = first;
		for (size_t i = 0; i < k; i++) {
			if (copy[i].lo > next)
				add_range(ps, next, copy[i].lo - 1);
			next = copy[i].hi + 1;
		}
		if (next <= RUNE_MAX)
			add_range(ps, next, RUNE_MAX);
		free(copy);
	}
	if (ps->nclasses == ps->class_cap)
		return fail(ps, -E2BIG);
	ps->classes[ps->nclasses] = (struct hc_gossip_re_class){ first, ps->nranges - first };
	return ps->err ? -1 : node_new(ps, N_CLASS, (int)ps->nclasses++, 0);
}

static int single_rune(struct parser *ps, uint32_t r)
{
	size_t first = ps->nranges;

	add_range(ps, r, r);
	if (ps->flags & F_FOLD)
		fold_ranges(ps, first);
	return class_end(ps, first, false);
}

/* ---- the pattern's runes and escapes ---- */

static bool at(const struct parser *ps, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(ps->end - ps->p) >= n && memcmp(ps->p, s, n) == 0;
}

static int next_rune(struct parser *ps, uint32_t *r)
{
	size_t size;
	bool bad;

	if (ps->p >= ps->end)
		return fail(ps, -EINVAL);
	*r = hc_gossip_re_decode_rune((const uint8_t *)ps->p, (size_t)(ps->end - ps->p), &size,
				      &bad);
	if (bad)
		return fail(ps, -EINVAL); /* Go rejects invalid UTF-8 in a pattern */
	ps->p += size;
	return 0;
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_alnum(uint32_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* \x41 or \x{10FFFF}, after the x. */
static int hex_escape(struct parser *ps, uint32_t *r)
{
	uint32_t v = 0;
	int digits = 0, d;

	if (ps->p < ps->end && *ps->p == '{') {
		for (ps->p++; ps->p < ps->end && *ps->p != '}'; ps->p++, digits++) {
			if ((d = hex_val(*ps->p)) < 0 || (v = v * 16 + (uint32_t)d) > RUNE_MAX)
				return fail(ps, -EINVAL);
		}
		if (ps->p >= ps->end || !digits)
			return fail(ps, -EINVAL);
		ps->p++;
	} else {
		for (; digits < 2; digits++, ps->p++) {
			if (ps->p >= ps->end || (d = hex_val(*ps->p)) < 0)
				return fail(ps, -EINVAL);
			v = v * 16 + (uint32_t)d;
		}
	}
	*r = v;
	return 0;
}

/* An escape that stands for one rune (Go's parseEscape), after the \. */
static int rune_escape(struct parser *ps, uint32_t c, uint32_t *r)
{
	static const char ctl[] = "a\af\fn\nr\rt\tv\v";
	const char *hit;

	if (c >= '1' && c <= '7' &&
	    !(ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7'))
		return fail(ps, -EINVAL); /* a backreference */
	if (c >= '0' && c <= '7') {
		*r = c - '0';
		for (int i = 1; i < 3 && ps->p < ps->end && *ps->p >= '0' && *ps->p <= '7'; i++)
			*r = *r * 8 + (uint32_t)(*ps->p++ - '0');
		return 0;
	}
	if (c == 'x')
		return hex_escape(ps, r);
	if (c < 0x80 && c && (hit = strchr(ctl, (int)c)) && (hit - ctl) % 2 == 0) {
		*r = (uint8_t)hit[1];
		return 0;
	}
	if (c < 0x80 && !is_alnum(c)) {
		*r = c;
		return 0;
	}
	return fail(ps, -EINVAL);
}

/* Perl's \d \s \w and their negations into the class being built; 1 if
 * c was one, 0 if not. */
static int perl_class(struct parser *ps, uint32_t c, bool *negated)
{
	switch (c | 0x20) {
	case 'd':
		add_range(ps, '0', '9');
		break;
	case 's':
		add_range(ps, '\t', '\n');
		add_range(ps, '\f', '\r');
		add_range(ps, ' ', ' ');
		break;
	case 'w':
		add_range(ps, '0', '9');
		add_range(ps, 'A', 'Z');
		add_range(ps, '_', '_');
		add_range(ps, 'a', 'z');
		break;
	default:
		return 0;
	}
	*negated = c >= 'A' && c <= 'Z';
	return 1;
}

/* Appends the complement of ranges[from..] in place of them. */
static void negate_tail(struct parser *ps, size_t from)
{
	size_t first = ps->nclasses;

	if (class_end(ps, from, true) < 0)
		return;
	/* class_end made a class and a node of them: take back both, keep
	 * the negated ranges where they are */
	ps->nclasses = first;
	ps->nnodes--;
}

/* ---- parsing ---- */

struct posix_class {
	const char *name;
	const char *ranges; /* pairs lo, hi */
};

static const struct posix_class posix_classes[] = {
	{ "alnum", "09AZaz" },	{ "alpha", "AZaz" },   { "ascii", "\x01\x7f" },
	{ "blank", "\t\t  " },	{ "cntrl", "\x01\x1f\x7f\x7f" },
	{ "digit", "09" },	{ "graph", "!~" },     { "lower", "az" },
	{ "print", " ~" },	{ "punct", "!/:@[`{~" }, { "space", "\t\r  " },
	{ "upper", "AZ" },	{ "word", "09AZ__az" }, { "xdigit", "09AFaf" },
};

/* [:name:] or [:^name:] at ps->p: 1 if added, 0 if it is none (then '['
 * is a literal), -1 on an unknown name. */
static int posix_class_item(struct parser *ps)
{
	const char *close, *name = ps->p + 2;
	bool neg = name < ps->end && *name == '^';
	size_t from = ps->nranges;

	if (!at(ps, "[:"))
		return 0;
	name += neg;
	for (close = name; close + 1 < ps->end && !(close[0] == ':' && close[1] == ']'); close++)
		;
	if (close + 1 >= ps->end)
		return 0;
	for (size_t i = 0; i < sizeof(posix_classes) / sizeof(posix_classes[0]); i++) {
		const struct posix_class *pc = &posix_classes[i];

		if (strlen(pc->name) != (size_t)(close - name) ||
		    memcmp(pc->name, name, (size_t)(close - name)) != 0)
			continue;
		if (!strcmp(pc->name, "ascii"))
			add_range(ps, 0, 0x7f); /* the table cannot hold the NUL */
		else if (!strcmp(pc->name, "cntrl"))
			add_range(ps, 0, 0x1f), add_range(ps, 0x7f, 0x7f);
		else
			for (const char *r = pc->ranges; *r; r += 2)
				add_range(ps, (uint8_t)r[0], (uint8_t)r[1]);
		if (neg)
			negate_tail(ps, from);
		ps->p = close + 2;
		return 1;
	}
	return fail(ps, -EINVAL);
}

/* One class item's rune (a literal or an escape). */
static int class_rune(struct parser *ps, uint32_t *r)
{
	if (next_rune(ps, r) < 0)
		return -1;
	if (*r != '\\')
		return 0;
	if (next_rune(ps, r) < 0)
		return -1;
	return rune_escape(ps, *r, r);
}

/* [...] after the [. */
static int parse_class(struct parser *ps)
{
	size_t first = ps->nranges;
	bool negate = false, first_item = true;

	if (ps->p < ps->end && *ps->p == '^') {
		negate = true;
		ps->p++;
	}
	while (ps->p < ps->end && (*ps->p != ']' || first_item) && !ps->err) {
		uint32_t lo, hi, c;
		int k;

		first_item = false;
		if ((k = posix_class_item(ps)) != 0) {
			if (k < 0)
				return -1;
			continue;
		}
		if (at(ps, "\\p") || at(ps, "\\P"))
			return fail(ps, -ENOTSUP);
		if (ps->p + 1 < ps->end && *ps->p == '\\') {
			size_t from = ps->nranges;
			bool neg;

			c = (uint8_t)ps->p[1];
			if (perl_class(ps, c, &neg)) {
				if (neg)
					negate_tail(ps, from);
				ps->p += 2;
				continue;
			}
		}
		if (class_rune(ps, &lo) < 0)
			return -1;
		hi = lo;
		if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
			ps->p++;
			if (class_rune(ps, &hi) < 0)
				return -1;
			if (hi < lo)
				return fail(ps, -EINVAL);
		}
		add_range(ps, lo, hi);
	}
	if (ps->p >= ps->end)
		return fail(ps, -EINVAL); /* no closing ] */
	ps->p++;
	if (ps->flags & F_FOLD)
		fold_ranges(ps, first);
	return class_end(ps, first, negate);
}

static int assert_node(struct parser *ps, enum hc_gossip_re_assert k)
{
	return node_new(ps, N_ASSERT, (int)k, 0);
}

/* An escape outside a class, after the \. */
static int parse_escape(struct parser *ps)
{
	size_t first = ps->nranges;
	uint32_t c, r;
	bool neg;

	if (next_rune(ps, &c) < 0)
		return -1;
	switch (c) {
	case 'A':
		return assert_node(ps, A_BOT);
	case 'z':
		return assert_node(ps, A_EOT);
	case 'b':
		return assert_node(ps, A_WORD);
	case 'B':
		return assert_node(ps, A_NOT_WORD);
	case 'p':
	case 'P':
		return fail(ps, -ENOTSUP);
	case 'Q':
		ps->quoting = true;
		return node_new(ps, N_EMPTY, 0, 0);
	default:
		break;
	}
	if (perl_class(ps, c, &neg)) {
		if (ps->flags & F_FOLD)
			fold_ranges(ps, first);
		return class_end(ps, first, neg);
	}
	if (rune_escape(ps, c, &r) < 0)
		return -1;
	return single_rune(ps, r);
}

/* {n}, {n,} or {n,m} at ps->p: 1 and the counts (ps->p after it), or 0
 * if it is none (then { is a literal). */
static int counted(struct parser *ps, int *min, int *max)
{
	const char *q = ps->p + 1;
	long v[2] = { -1, -1 };
	int k = 0;

	for (; k < 2; k++) {
		if (q >= ps->end || *q < '0' || *q > '9') {
			if (k == 1)
				break; /* {n,} */
			return 0;
		}
		for (v[k] = 0; q < ps->end && *q >= '0' && *q <= '9'; q++)
			if ((v[k] = v[k] * 10 + (*q - '0')) > 100000)
				v[k] = 100000; /* refused below */
		if (k == 0 && q < ps->end && *q == '}') {
			v[1] = v[0];
			k = 2;
			break;
		}
		if (k == 1 || q >= ps->end || *q != ',')
			break;
		q++;
	}
	if (q >= ps->end || *q != '}')
		return 0;
	*min = (int)v[0];
	*max = k == 1 && v[1] < 0 ? -1 : (int)v[1];
	ps->p = q + 1;
	return 1;
}

static int parse_alt(struct parser *ps);

/* (?flags) or (?flags:re) after the "(?"; *flags_only says which. */
static int parse_flags(struct parser *ps, bool *flags_only)
{
	unsigned on = 0, off = 0, *set = &on;
	bool any = false, neg = false;

	for (; ps->p < ps->end; ps->p++) {
		char c = *ps->p;
		unsigned f = c == 'i' ? F_FOLD : c == 'm' ? F_MULTILINE : c == 's' ? F_DOTNL
			   : c == 'U' ? F_UNGREEDY : 0;

		if (f) {
			*set |= f;
			any = true;
		} else if (c == '-' && !neg) {
			neg = true;
			set = &off;
			any = false;
		} else if ((c == ':' || c == ')') && any) {
			ps->flags = (ps->flags | on) & ~off;
			*flags_only = c == ')';
			ps->p++;
			return 0;
		} else {
			break;
		}
	}
	return fail(ps, -EINVAL);
}

/* A group after the (; the flags set inside end with it. */
static int parse_group(struct parser *ps, bool *flags_only)
{
	unsigned saved = ps->flags;
	int n;

	*flags_only = false;
	if (at(ps, "?P<")) {
		const char *name = ps->p += 3;

		while (ps->p < ps->end && (is_alnum((uint8_t)*ps->p) || *ps->p == '_'))
			ps->p++;
		if (ps->p == name || ps->p >= ps->end || *ps->p != '>')
			return fail(ps, -EINVAL);
		ps->p++;
	} else if (at(ps, "?:")) {
		ps->p += 2;
	} else if (at(ps, "?")) {
		ps->p++;
		if (parse_flags(ps, flags_only) < 0)
			return -1;
		if (*flags_only)
			return node_new(ps, N_EMPTY, 0, 0); /* the flags last to the group's end */
	}
	n = parse_alt(ps);
	if (n < 0)
		return -1;
	if (ps->p >= ps->end || *ps->p != ')')
		return fail(ps, -EINVAL);
	ps->p++;
	ps->flags = saved;
	return n;
}

/* One atom; *repeatable is false for what a repetition may not follow. */
static int parse_atom(struct parser *ps, bool *repeatable)
{
	int min, max;
	uint32_t r;

	*repeatable = true;
	if (ps->quoting && at(ps, "\\E")) { /* \Q\E quotes nothing */
		ps->p += 2;
		ps->quoting = false;
		*repeatable = false;
		return node_new(ps, N_EMPTY, 0, 0);
	}
	if (ps->quoting) {
		if (next_rune(ps, &r) < 0)
			return -1;
		if (at(ps, "\\E")) {
			ps->p += 2;
			ps->quoting = false;
		}
		return single_rune(ps, r);
	}
	switch (*ps->p) {
	case '(': {
		bool flags_only;
		int n;

		ps->p++;
		n = parse_group(ps, &flags_only);
		*repeatable = !flags_only;
		return n;
	}
	case '[':
		ps->p++;
		return parse_class(ps);
	case '.': {
		size_t first = ps->nranges;

		ps->p++;
		add_range(ps, 0, RUNE_MAX);
		if (!(ps->flags & F_DOTNL)) {
			ps->nranges = first;
			add_range(ps, 0, '\n' - 1);
			add_range(ps, '\n' + 1, RUNE_MAX);
		}
		return class_end(ps, first, false);
	}
	case '^':
		ps->p++;
		return assert_node(ps, ps->flags & F_MULTILINE ? A_BOL : A_BOT);
	case '$':
		ps->p++;
		return assert_node(ps, ps->flags & F_MULTILINE ? A_EOL : A_EOT);
	case '\\':
		ps->p++;
		return parse_escape(ps); /* \E outside \Q is an error there, as in Go */
	case '*':
	case '+':
	case '?':
		return fail(ps, -EINVAL); /* missing argument to repetition */
	case '{':
		if (counted(ps, &min, &max))
			return fail(ps, -EINVAL);
		break;
	default:
		break;
	}
	if (next_rune(ps, &r) < 0)
		return -1;
	return single_rune(ps, r);
}

/* An atom and at most one repetition of it (a** is an error in Go). */
static int parse_repeat(struct parser *ps)
{
	bool repeatable;
	int n = parse_atom(ps, &repeatable), min, max;

	if (n < 0 || ps->quoting || ps->p >= ps->end)
		return n;
	switch (*ps->p) {
	case '*':
		min = 0, max = -1, ps->p++;
		break;
	case '+':
		min = 1, max = -1, ps->p++;
		break;
	case '?':
		min = 0, max = 1, ps->p++;
		break;
	case '{':
		if (!counted(ps, &min, &max))
			return n;
		if (min > REPEAT_MAX || max > REPEAT_MAX || (max >= 0 && max < min))
			return fail(ps, -EINVAL);
		break;
	default:
		return n;
	}
	if (!repeatable)
		return fail(ps, -EINVAL);
	if (ps->p < ps->end && *ps->p == '?')
		ps->p++; /* lazy: the same for whether it matches */
	if (ps->p < ps->end && (*ps->p == '*' || *ps->p == '+' || *ps->p == '?' ||
				(*ps->p == '{' && counted(&(struct parser){ .p = ps->p, .end = ps->end },
							  &min, &max))))
		return fail(ps, -EINVAL); /* nested repetition operator */
	n = node_new(ps, N_REPEAT, n, 0);
	if (n >= 0) {
		ps->nodes[n].min = min;
		ps->nodes[n].max = max;
	}
	return n;
}

static int parse_cat(struct parser *ps)
{
	int acc = -1;

	while (ps->p < ps->end && (ps->quoting || (*ps->p != '|' && *ps->p != ')'))) {
		int n = parse_repeat(ps);

		if (n < 0)
			return -1;
		acc = acc < 0 ? n : node_new(ps, N_CAT, acc, n);
		if (acc < 0)
			return -1;
	}
	ps->quoting = false; /* \Q runs to the end of the pattern without \E */
	return acc < 0 ? node_new(ps, N_EMPTY, 0, 0) : acc;
}

static int parse_alt(struct parser *ps)
{
	int n = parse_cat(ps);

	while (n >= 0 && ps->p < ps->end && *ps->p == '|') {
		int m;

		ps->p++;
		m = parse_cat(ps);
		n = m < 0 ? -1 : node_new(ps, N_ALT, n, m);
	}
	return n;
}

/* ---- the program ---- */

struct compiler {
	struct parser *ps;
	struct hc_gossip_re_inst *prog;
	size_t n;
	unsigned work;
};

static int emit(struct compiler *cc, uint8_t op, uint8_t arg, uint32_t x, uint32_t y)
{
	if (cc->n >= HC_GOSSIP_RE_PROG_MAX)
		return fail(cc->ps, -E2BIG);
	cc->prog[cc->n] = (struct hc_gossip_re_inst){ op, arg, x, y };
	return (int)cc->n++;
}

static int compile_node(struct compiler *cc, int id);

/* e{min,max}: min copies, then e* or (max - min) times e?. */
static int compile_repeat(struct compiler *cc, const struct node *nd)
{
	int split;

	for (int i = 0; i < nd->min; i++)
		if (compile_node(cc, nd->a) < 0)
			return -1;
	if (nd->max < 0) {
		if ((split = emit(cc, OP_SPLIT, 0, 0, 0)) < 0 || compile_node(cc, nd->a) < 0 ||
		    emit(cc, OP_JMP, 0, (uint32_t)split, 0) < 0)
			return -1;
		cc->prog[split].x = (uint32_t)split + 1;
		cc->prog[split].y = (uint32_t)cc->n;
		return 0;
	}
	for (int i = nd->min; i < nd->max; i++) {
		if ((split = emit(cc, OP_SPLIT, 0, 0, 0)) < 0 || compile_node(cc, nd->a) < 0)
			return -1;
		cc->prog[split].x = (uint32_t)split + 1;
		cc->prog[split].y = (uint32_t)cc->n;
	}
	return 0;
}

static int compile_node(struct compiler *cc, int id)
{
	const struct node *nd = &cc->ps->nodes[id];
	int split, jmp;

	if (++cc->work > EMIT_WORK_MAX)
		return fail(cc->ps, -E2BIG); /* (?:(?:){1000}){1000} emits nothing, slowly */
	switch (nd->kind) {
	case N_EMPTY:
		return 0;
	case N_CLASS:
		return emit(cc, OP_CLASS, 0, (uint32_t)nd->a, 0) < 0 ? -1 : 0;
	case N_ASSERT:
		return emit(cc, OP_ASSERT, (uint8_t)nd->a, 0, 0) < 0 ? -1 : 0;
	case N_CAT:
		return compile_node(cc, nd->a) < 0 ? -1 : compile_node(cc, nd->b);
	case N_ALT:
		if ((split = emit(cc, OP_SPLIT, 0, 0, 0)) < 0 || compile_node(cc, nd->a) < 0 ||
		    (jmp = emit(cc, OP_JMP, 0, 0, 0)) < 0)
			return -1;
		cc->prog[split].x = (uint32_t)split + 1;
		cc->prog[split].y = (uint32_t)cc->n;
		if (compile_node(cc, nd->b) < 0)
			return -1;
		cc->prog[jmp].x = (uint32_t)cc->n;
		return 0;
	case N_REPEAT:
		return compile_repeat(cc, nd);
	}
	return fail(cc->ps, -EINVAL);
}

int hc_gossip_re_compile(const char *pattern, size_t len, struct hc_gossip_re **out)
{
	struct parser ps = { .p = pattern, .end = pattern + len };
	struct compiler cc = { .ps = &ps };
	struct hc_gossip_re *re = NULL;
	int root;

	*out = NULL;
	if (len > HC_GOSSIP_RE_PATTERN_MAX)
		return -E2BIG;
	ps.node_cap = NODES_MAX(len);
	ps.range_cap = RANGES_MAX(len);
	ps.class_cap = CLASSES_MAX(len);
	ps.nodes = malloc(ps.node_cap * sizeof(*ps.nodes));
	ps.ranges = malloc(ps.range_cap * sizeof(*ps.ranges));
	ps.classes = malloc(ps.class_cap * sizeof(*ps.classes));
	root = !ps.nodes || !ps.ranges || !ps.classes ? fail(&ps, -ENOMEM) : parse_alt(&ps);
	if (root >= 0 && ps.p < ps.end)
		fail(&ps, -EINVAL); /* an unmatched ) */
	if (!ps.err) {
		cc.prog = malloc(HC_GOSSIP_RE_PROG_MAX * sizeof(*cc.prog));
		re = calloc(1, sizeof(*re));
		if (!cc.prog || !re)
			fail(&ps, -ENOMEM);
	}
	if (!ps.err && compile_node(&cc, root) == 0)
		emit(&cc, OP_MATCH, 0, 0, 0);
	free(ps.nodes);
	if (ps.err) {
		free(cc.prog);
		free(re);
		free(ps.ranges);
		free(ps.classes);
		return ps.err;
	}
	re->prog = cc.prog;
	re->n = cc.n;
	re->ranges = ps.ranges;
	re->classes = ps.classes;
	*out = re;
	return 0;
}
