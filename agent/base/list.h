/*
 * An intrusive, circular doubly linked list, in the spirit of HAProxy's
 * include/haproxy/list.h and Linux's list.h: a struct hc_list member in each
 * element, and a struct hc_list as the head. An empty head points to itself,
 * so inserting and removing never test for the ends. Header-only.
 *
 *   struct conn { ...; struct hc_list link; };
 *   struct hc_list conns;              (hc_list_init(&conns) before use)
 *   hc_list_insert(&conns, &c->link);
 *   hc_list_for_each(c, &conns, link) ...
 *   hc_list_for_each_safe(c, next, &conns, link) { hc_list_remove(&c->link); free(c); }
 *
 * Not thread-safe: a list is owned by one thread (the loop's, usually).
 */
#ifndef HC_BASE_LIST_H
#define HC_BASE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct hc_list {
	struct hc_list *next, *prev;
};

/* The element of type holding member at ptr. */
#define hc_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* An empty list, for static heads: static struct hc_list l = HC_LIST_HEAD_INIT(l); */
#define HC_LIST_HEAD_INIT(name) { &(name), &(name) }

/* Makes l an empty list (a head), or an element that is in no list. */
static inline void hc_list_init(struct hc_list *l)
{
	l->next = l;
	l->prev = l;
}

static inline bool hc_list_empty(const struct hc_list *head)
{
	return head->next == head;
}

/* Whether an element initialised or removed with these functions is in a
 * list now. */
static inline bool hc_list_linked(const struct hc_list *item)
{
	return item->next != item;
}

static inline void hc_list_link_(struct hc_list *prev, struct hc_list *item,
				 struct hc_list *next)
{
	item->prev = prev;
	item->next = next;
	prev->next = item;
	next->prev = item;
}

/* Adds item at the front of head's list. item must be in no list. */
static inline void hc_list_insert(struct hc_list *head, struct hc_list *item)
{
	hc_list_link_(head, item, head->next);
}

/* Adds item at the back of head's list. item must be in no list. */
static inline void hc_list_append(struct hc_list *head, struct hc_list *item)
{
	hc_list_link_(head->prev, item, head);
}

/* Takes item out of its list and leaves it in none (re-initialised), so
 * removing it again is harmless and hc_list_linked() says false. */
static inline void hc_list_remove(struct hc_list *item)
{
	item->prev->next = item->next;
	item->next->prev = item->prev;
	hc_list_init(item);
}

/* The element holding the first / last link of a non-empty list. */
#define hc_list_first(head, type, member) hc_container_of((head)->next, type, member)
#define hc_list_last(head, type, member) hc_container_of((head)->prev, type, member)

/* The element after pos (pos's type, link member). */
#define hc_list_next_(pos, member) \
	hc_container_of((pos)->member.next, __typeof__(*(pos)), member)

/* pos walks the elements of head's list front to back. The body must not
 * remove pos; use hc_list_for_each_safe for that. */
#define hc_list_for_each(pos, head, member)                                   \
	for (pos = hc_container_of((head)->next, __typeof__(*(pos)), member); \
	     &(pos)->member != (head); pos = hc_list_next_(pos, member))

/* The same, with tmp holding the next element, so the body may remove (and
 * free) pos. It must not remove any other element. */
#define hc_list_for_each_safe(pos, tmp, head, member)                         \
	for (pos = hc_container_of((head)->next, __typeof__(*(pos)), member), \
	    tmp = hc_list_next_(pos, member);                                 \
	     &(pos)->member != (head); pos = tmp, tmp = hc_list_next_(tmp, member))

#endif /* HC_BASE_LIST_H */
