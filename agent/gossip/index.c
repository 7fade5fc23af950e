/* Hash index of gossip items by key; see index_int.h. */
#include "gossip/index_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 16

static const char tomb;
#define TOMB ((const void *)&tomb)

/* FNV-1a: names and addresses are short, and peers cannot choose a
 * collision that costs more than the scan this replaces. */
static size_t hash(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 32));
}

static bool key_is(const struct hc_gossip_index *ix, const void *item, const void *key,
		   size_t len)
{
	struct hc_gossip_bytes k = ix->key(item);

	return k.len == len && (len == 0 || memcmp(k.ptr, key, len) == 0);
}

void hc_gossip_index_init(struct hc_gossip_index *ix, hc_gossip_index_key_fn *key)
{
	memset(ix, 0, sizeof(*ix));
	ix->key = key;
}

void hc_gossip_index_fini(struct hc_gossip_index *ix)
{
	free(ix->slots);
	ix->slots = NULL;
	ix->cap = ix->used = ix->live = 0;
}

static void place(const void **slots, size_t cap, size_t h, const void *item)
{
	size_t i = h & (cap - 1);

	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = item;
}

/* Rebuilds at a size that leaves the table at most half full, dropping
 * tombstones. */
static int rehash(struct hc_gossip_index *ix, size_t want)
{
	size_t cap = MIN_CAP;
	const void **slots;

	while (cap < 2 * want)
		cap *= 2;
	slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < ix->cap; i++) {
		const void *it = ix->slots[i];

		if (it && it != TOMB) {
			struct hc_gossip_bytes k = ix->key(it);

			place(slots, cap, hash(k.ptr, k.len), it);
		}
	}
	free(ix->slots);
	ix->slots = slots;
	ix->cap = cap;
	ix->used = ix->live;
	return 0;
}

int hc_gossip_index_add(struct hc_gossip_index *ix, const void *item)
{
	struct hc_gossip_bytes k = ix->key(item);
	size_t i;

	/* Keep at most 3/4 of the slots used (tombstones count: they lengthen
	 * probes just as items do). */
	if (4 * (ix->used + 1) > 3 * ix->cap && rehash(ix, ix->live + 1) < 0)
		return -ENOMEM;
	i = hash(k.ptr, k.len) & (ix->cap - 1);
	while (ix->slots[i] && ix->slots[i] != TOMB)
		i = (i + 1) & (ix->cap - 1);
	if (!ix->slots[i])
		ix->used++;
	ix->slots[i] = item;
	ix->live++;
	return 0;
}

void hc_gossip_index_remove(struct hc_gossip_index *ix, const void *item)
{
	struct hc_gossip_bytes k;
	size_t i;

	if (!ix->cap)
		return;
	k = ix->key(item);
	i = hash(k.ptr, k.len) & (ix->cap - 1);
	for (; ix->slots[i]; i = (i + 1) & (ix->cap - 1)) {
		if (ix->slots[i] == item) {
			ix->slots[i] = TOMB;
			ix->live--;
			return;
		}
	}
}

void *hc_gossip_index_get(const struct hc_gossip_index *ix, const void *key, size_t len)
{
	if (!ix->cap)
		return NULL;
	for (size_t i = hash(key, len) & (ix->cap - 1); ix->slots[i];
	     i = (i + 1) & (ix->cap - 1)) {
		const void *it = ix->slots[i];

		if (it != TOMB && key_is(ix, it, key, len))
			return (void *)it;
	}
	return NULL;
}
