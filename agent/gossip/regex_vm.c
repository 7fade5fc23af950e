/* The tag-filter matcher's VM (regex.c compiles): every thread in
 * lockstep over the text, one rune at a time, each instruction at most
 * once per position, with an explicit stack: O(text x program), whatever
 * the pattern. */
#include "gossip/regex_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define RUNE_ERROR 0xFFFDu

/* ---- UTF-8, as Go's utf8.DecodeRune: a bad byte is U+FFFD, 1 byte ---- */

static bool cont(uint8_t c, uint8_t lo, uint8_t hi)
{
	return c >= lo && c <= hi;
}

uint32_t hc_gossip_re_decode_rune(const uint8_t *s, size_t n, size_t *size, bool *bad)
{
	uint8_t c = s[0];

	*size = 1;
	*bad = false;
	if (c < 0x80)
		return c;
	if (c >= 0xC2 && c < 0xE0 && n >= 2 && cont(s[1], 0x80, 0xBF)) {
		*size = 2;
		return (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
	}
	if (c >= 0xE0 && c < 0xF0 && n >= 3 &&
	    cont(s[1], c == 0xE0 ? 0xA0 : 0x80, c == 0xED ? 0x9F : 0xBF) && cont(s[2], 0x80, 0xBF)) {
		*size = 3;
		return (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
	}
	if (c >= 0xF0 && c < 0xF5 && n >= 4 &&
	    cont(s[1], c == 0xF0 ? 0x90 : 0x80, c == 0xF4 ? 0x8F : 0xBF) &&
	    cont(s[2], 0x80, 0xBF) && cont(s[3], 0x80, 0xBF)) {
		*size = 4;
		return (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
		       (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
	}
	*bad = true;
	return RUNE_ERROR;
}

void hc_gossip_re_free(struct hc_gossip_re *re)
{
	if (!re)
		return;
	free(re->prog);
	free(re->ranges);
	free(re->classes);
	free(re);
}

/* ---- the VM ---- */

static bool class_has(const struct hc_gossip_re *re, uint32_t cls, uint32_t r)
{
	const struct hc_gossip_re_range *rg = re->ranges + re->classes[cls].first;
	size_t lo = 0, hi = re->classes[cls].n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r < rg[mid].lo)
			hi = mid;
		else if (r > rg[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool is_word(int32_t r)
{
	return (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') ||
	       r == '_';
}

/* Where the VM stands: the runes on either side (-1 at an end). */
struct pos {
	int32_t prev, next;
};

static bool assert_holds(uint8_t kind, struct pos at)
{
	switch (kind) {
	case A_BOT:
		return at.prev < 0;
	case A_EOT:
		return at.next < 0;
	case A_BOL:
		return at.prev < 0 || at.prev == '\n';
	case A_EOL:
		return at.next < 0 || at.next == '\n';
	case A_WORD:
		return is_word(at.prev) != is_word(at.next);
	case A_NOT_WORD:
		return is_word(at.prev) == is_word(at.next);
	}
	return false;
}

struct vm {
	const struct hc_gossip_re *re;
	uint32_t *mark; /* per instruction: the generation that added it */
	uint32_t *stack;
	uint32_t gen;
	uint64_t steps;
};

struct list {
	uint32_t *pc;
	size_t n;
};

/* Adds pc and everything it reaches without consuming to l, each
 * instruction once per generation. true if that reaches a match. */
static bool add_thread(struct vm *vm, struct list *l, uint32_t pc, struct pos at)
{
	size_t sp = 0;

	vm->stack[sp++] = pc;
	while (sp) {
		const struct hc_gossip_re_inst *in;

		pc = vm->stack[--sp];
		vm->steps++;
		if (vm->mark[pc] == vm->gen)
			continue;
		vm->mark[pc] = vm->gen;
		in = &vm->re->prog[pc];
		switch (in->op) {
		case OP_MATCH:
			return true;
		case OP_CLASS:
			l->pc[l->n++] = pc;
			break;
		case OP_JMP:
			vm->stack[sp++] = in->x;
			break;
		case OP_SPLIT:
			vm->stack[sp++] = in->y;
			vm->stack[sp++] = in->x;
			break;
		case OP_ASSERT:
			if (assert_holds(in->arg, at))
				vm->stack[sp++] = pc + 1;
			break;
		}
	}
	return false;
}

static int32_t rune_at(const uint8_t *s, size_t len, size_t i, size_t *size)
{
	bool bad;

	*size = 0;
	return i < len ? (int32_t)hc_gossip_re_decode_rune(s + i, len - i, size, &bad) : -1;
}

int hc_gossip_re_search(const struct hc_gossip_re *re, const char *text, size_t len,
			uint64_t *steps)
{
	/* each instruction is marked once per generation and pushes at most
	 * two: the stack never holds more than 2n + 1 */
	uint32_t *mem = calloc(re->n * 5 + 1, sizeof(*mem));
	struct vm vm = { .re = re, .mark = mem, .stack = mem + re->n * 3, .gen = 1 };
	struct list cur = { mem + re->n, 0 }, next = { mem + re->n * 2, 0 }, tmp;
	const uint8_t *s = (const uint8_t *)text;
	size_t i = 0, size, size2;
	struct pos at = { -1, rune_at(s, len, 0, &size) };
	bool found = false;

	if (!mem)
		return -ENOMEM;
	for (;;) {
		struct pos after;

		/* cur holds the threads that reached position i (generation
		 * gen); unanchored, a match may also start here */
		if ((found = add_thread(&vm, &cur, 0, at)) || i >= len)
			break;
		after = (struct pos){ at.next, rune_at(s, len, i + size, &size2) };
		vm.gen++;
		next.n = 0;
		for (size_t k = 0; k < cur.n && !found; k++) {
			vm.steps++;
			if (class_has(re, re->prog[cur.pc[k]].x, (uint32_t)at.next))
				found = add_thread(&vm, &next, cur.pc[k] + 1, after);
		}
		if (found)
			break;
		tmp = cur, cur = next, next = tmp;
		i += size;
		size = size2;
		at = after;
	}
	if (steps)
		*steps = vm.steps;
	free(mem);
	return found;
}

int hc_gossip_re_match(const char *pattern, size_t plen, const char *text, size_t len)
{
	struct hc_gossip_re *re;
	int r = hc_gossip_re_compile(pattern, plen, &re);

	if (r < 0)
		return r;
	r = hc_gossip_re_search(re, text, len, NULL);
	hc_gossip_re_free(re);
	return r;
}
