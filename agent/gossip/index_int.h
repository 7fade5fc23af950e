/*
 * Private to agent/gossip: a hash index from a key (a member's name, a
 * member's address) to the items that hold it, so the per-packet lookups of
 * a 1,000-member cluster cost O(1) rather than a scan of every member.
 * Items are borrowed; the index stores pointers and asks key() for the
 * bytes, which must not change while the item is indexed (remove, change,
 * add again). Several items may share a key; get returns one of them.
 * Open addressing, linear probing; loop thread only.
 */
#ifndef HC_GOSSIP_INDEX_INT_H
#define HC_GOSSIP_INDEX_INT_H

#include <stddef.h>
#include <stdint.h>

#include "gossip/gossip_int.h"

typedef struct hc_gossip_bytes hc_gossip_index_key_fn(const void *item);

struct hc_gossip_index {
	const void **slots; /* NULL: empty; &hc_gossip_index_tomb: removed */
	size_t cap, used, live; /* used counts tombstones too */
	hc_gossip_index_key_fn *key;
};

void hc_gossip_index_init(struct hc_gossip_index *ix, hc_gossip_index_key_fn *key);
void hc_gossip_index_fini(struct hc_gossip_index *ix);
/* Adds item (not already in). 0 or -ENOMEM (then the index is unchanged). */
int hc_gossip_index_add(struct hc_gossip_index *ix, const void *item);
/* Removes item itself (not another with its key); absent items are fine. */
void hc_gossip_index_remove(struct hc_gossip_index *ix, const void *item);
/* An item whose key is these bytes, or NULL. */
void *hc_gossip_index_get(const struct hc_gossip_index *ix, const void *key, size_t len);

#endif /* HC_GOSSIP_INDEX_INT_H */
