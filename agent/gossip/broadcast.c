/* Transmit-limited broadcast queue (memberlist's TransmitLimitedQueue) and the
 * gossip layers' random numbers. */
#include "gossip/memberlist_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct bcast {
	char *key; /* NULL: never replaced */
	uint8_t *msg;
	size_t len;
	unsigned transmits;
	uint64_t seq; /* insertion order: higher is newer */
	hc_gossip_bcast_done_fn *done;
	void *arg;
};

/*
 * items[0..sorted) are in take order (bcast_cmp); items[sorted..n) were
 * pushed since the last take, in no order. A take sorts only those and
 * merges them in, and after it puts the messages it sent back in order by
 * another merge (a transmission more keeps their order among themselves):
 * O(n) per packet rather than a sort of the whole queue, which at 1,000
 * members (a queue of about as many alive messages) dominated the cost.
 */
struct hc_gossip_bcast_queue {
	struct bcast *items;
	size_t n, cap, sorted;
	struct bcast *tmp; /* cap of them, for the merges */
	uint64_t next_seq;
	/* Messages handed out by the last take are freed only at the next call,
	 * so the borrowed pointers stay valid until then. */
	struct bcast *retired;
	size_t nretired, capretired;
};

struct hc_gossip_bcast_queue *hc_gossip_bcast_queue_new(void)
{
	return calloc(1, sizeof(struct hc_gossip_bcast_queue));
}

static void bcast_release(struct bcast *b, bool sent)
{
	if (b->done)
		b->done(b->arg, sent);
	free(b->key);
	free(b->msg);
}

static void free_retired(struct hc_gossip_bcast_queue *q)
{
	for (size_t i = 0; i < q->nretired; i++) {
		free(q->retired[i].key);
		free(q->retired[i].msg);
	}
	q->nretired = 0;
}

void hc_gossip_bcast_queue_free(struct hc_gossip_bcast_queue *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++)
		bcast_release(&q->items[i], false);
	free_retired(q);
	free(q->retired);
	free(q->items);
	free(q->tmp);
	free(q);
}

/* Removes item i, keeping the sorted part sorted. */
static void remove_at(struct hc_gossip_bcast_queue *q, size_t i)
{
	if (i < q->sorted) {
		memmove(&q->items[i], &q->items[i + 1], (q->n - i - 1) * sizeof(*q->items));
		q->sorted--;
		q->n--;
		return;
	}
	q->items[i] = q->items[--q->n];
}

int hc_gossip_bcast_queue_push(struct hc_gossip_bcast_queue *q, const char *key,
			       const uint8_t *msg, size_t len, hc_gossip_bcast_done_fn *done,
			       void *arg)
{
	struct bcast b = { .len = len, .done = done, .arg = arg };

	b.msg = malloc(len ? len : 1);
	b.key = key ? strdup(key) : NULL;
	if (!b.msg || (key && !b.key)) {
		free(b.msg);
		free(b.key);
		return -ENOMEM;
	}
	memcpy(b.msg, msg, len);
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 32;
		struct bcast *items = realloc(q->items, cap * sizeof(*items));
		struct bcast *tmp = items ? realloc(q->tmp, cap * sizeof(*tmp)) : NULL;

		if (items)
			q->items = items;
		if (!tmp) {
			free(b.msg);
			free(b.key);
			return -ENOMEM;
		}
		q->tmp = tmp;
		q->cap = cap;
	}
	if (key) {
		for (size_t i = 0; i < q->n; i++) {
			if (q->items[i].key && strcmp(q->items[i].key, key) == 0) {
				bcast_release(&q->items[i], false);
				remove_at(q, i);
				break;
			}
		}
	}
	b.seq = ++q->next_seq;
	q->items[q->n++] = b;
	return 0;
}

/* Fewest transmissions first, then longer, then newer. */
static int bcast_cmp(const void *pa, const void *pb)
{
	const struct bcast *a = pa, *b = pb;

	if (a->transmits != b->transmits)
		return a->transmits < b->transmits ? -1 : 1;
	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return a->seq > b->seq ? -1 : a->seq < b->seq;
}

static int retire(struct hc_gossip_bcast_queue *q, struct bcast *b)
{
	if (q->nretired == q->capretired) {
		size_t cap = q->capretired ? q->capretired * 2 : 16;
		struct bcast *r = realloc(q->retired, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		q->retired = r;
		q->capretired = cap;
	}
	if (b->done)
		b->done(b->arg, true);
	b->done = NULL;
	q->retired[q->nretired++] = *b;
	return 0;
}

/* Merges the sorted run tmp[0..nb) into the sorted run items[0..na), from
 * the back so that items needs no copy; the queue then holds na + nb. */
static void merge_back(struct hc_gossip_bcast_queue *q, size_t na, size_t nb)
{
	size_t i = na, j = nb, k = na + nb;

	while (j > 0) {
		if (i > 0 && bcast_cmp(&q->items[i - 1], &q->tmp[j - 1]) > 0)
			q->items[--k] = q->items[--i];
		else
			q->items[--k] = q->tmp[--j];
	}
	q->n = q->sorted = na + nb;
}

/* Brings the messages pushed since the last take into order. */
static void sort_new(struct hc_gossip_bcast_queue *q)
{
	size_t fresh = q->n - q->sorted;

	if (!fresh)
		return;
	qsort(q->items + q->sorted, fresh, sizeof(*q->items), bcast_cmp);
	memcpy(q->tmp, q->items + q->sorted, fresh * sizeof(*q->items));
	merge_back(q, q->sorted, fresh);
}

void hc_gossip_bcast_queue_take(struct hc_gossip_bcast_queue *q, size_t overhead, size_t limit,
				unsigned transmit_limit, struct hc_gossip_bytes *out, size_t max,
				size_t *n)
{
	size_t used = 0, nsent = 0, nrest = 0;

	free_retired(q);
	if (q->n == 0)
		return;
	sort_new(q);
	/* Messages not sent close up in place (in order); those sent, a
	 * transmission more, go to tmp in order; then one merge. */
	for (size_t i = 0; i < q->n; i++) {
		struct bcast *b = &q->items[i];

		if (*n >= max || used + overhead + b->len > limit) {
			q->items[nrest++] = *b;
			continue;
		}
		used += overhead + b->len;
		b->transmits++;
		if (b->transmits >= transmit_limit && retire(q, b) == 0) {
			out[(*n)++] = (struct hc_gossip_bytes){ q->retired[q->nretired - 1].msg,
								 b->len };
			continue;
		}
		out[(*n)++] = (struct hc_gossip_bytes){ b->msg, b->len };
		q->tmp[nsent++] = *b;
	}
	merge_back(q, nrest, nsent);
	if (q->n == 0) {
		/* A burst (a join storm: an alive per member) grew the arrays;
		 * an idle queue gives that memory back. */
		free(q->items);
		free(q->tmp);
		q->items = q->tmp = NULL;
		q->cap = 0;
	}
}

size_t hc_gossip_bcast_queue_len(const struct hc_gossip_bcast_queue *q)
{
	return q->n;
}

void hc_gossip_bcast_queue_prune(struct hc_gossip_bcast_queue *q, size_t max_len)
{
	while (q->n > max_len) {
		size_t oldest = 0;

		for (size_t i = 1; i < q->n; i++)
			if (q->items[i].seq < q->items[oldest].seq)
				oldest = i;
		bcast_release(&q->items[oldest], false);
		remove_at(q, oldest);
	}
}

unsigned hc_gossip_retransmit_limit(unsigned mult, size_t n)
{
	return mult * (unsigned)ceil(log10((double)n + 1.0));
}

void hc_gossip_rand_init(uint64_t *state, uint64_t seed)
{
	*state = seed;
	if (!*state && getrandom(state, sizeof(*state), 0) != (ssize_t)sizeof(*state)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		*state = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	*state |= 1; /* xorshift must not start at 0 */
}

uint64_t hc_gossip_rand(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545f4914f6cdd1dull;
}
