/* Counters per route host: a chained hash table under one mutex, taken once
 * per routed connection (or HTTP/2 stream to a new host), never per
 * request. Entries are allocated as hosts arrive and freed by the sweep, so
 * memory follows the hosts routed now, not every host ever routed. Hosts
 * are hashed with a per-process random key: they come from routes, which
 * tenants name. */
#include "proxy/wlstats.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define BUCKETS 1024 /* a power of two; chains stay short up to a few thousand hosts */

struct hc_proxy_wlstats {
	pthread_mutex_t lock;
	size_t capacity, count;
	uint64_t key;
	struct hc_proxy_wl_stats *buckets[BUCKETS];
};

struct hc_proxy_wlstats *hc_proxy_wlstats_new(size_t capacity)
{
	struct hc_proxy_wlstats *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	if (getrandom(&t->key, sizeof(t->key), 0) != (ssize_t)sizeof(t->key)) {
		free(t);
		errno = EIO;
		return NULL;
	}
	t->capacity = capacity;
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void hc_proxy_wlstats_free(struct hc_proxy_wlstats *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < BUCKETS; i++) {
		while (t->buckets[i]) {
			struct hc_proxy_wl_stats *e = t->buckets[i];

			t->buckets[i] = e->next;
			free(e);
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* FNV-1a over the key and the name. */
static struct hc_proxy_wl_stats **bucket_of(struct hc_proxy_wlstats *t, const char *host)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ t->key;

	for (const unsigned char *s = (const unsigned char *)host; *s; s++)
		h = (h ^ *s) * 0x100000001b3ULL;
	return &t->buckets[(h ^ (h >> 32)) & (BUCKETS - 1)];
}

static struct hc_proxy_wl_stats *find(struct hc_proxy_wl_stats *e, const char *host)
{
	while (e && strcmp(e->host, host) != 0)
		e = e->next;
	return e;
}

struct hc_proxy_wl_stats *hc_proxy_wlstats_get(struct hc_proxy_wlstats *t, const char *host)
{
	struct hc_proxy_wl_stats **b, *e;

	pthread_mutex_lock(&t->lock);
	b = bucket_of(t, host);
	e = find(*b, host);
	if (!e && t->count < t->capacity && (e = calloc(1, sizeof(*e)))) {
		snprintf(e->host, sizeof(e->host), "%s", host);
		/* a route found it just now: as good as marked */
		e->routed = true;
		e->next = *b;
		*b = e;
		t->count++;
	}
	if (e)
		atomic_fetch_add_explicit(&e->users, 1, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
	return e;
}

void hc_proxy_wl_ref(struct hc_proxy_wl_stats *e)
{
	if (e)
		atomic_fetch_add_explicit(&e->users, 1, memory_order_relaxed);
}

void hc_proxy_wl_put(struct hc_proxy_wl_stats *e)
{
	/* release: the holder's last counts are in before the sweep may see 0
	 * (it reads users with acquire under the lock) */
	if (e)
		atomic_fetch_sub_explicit(&e->users, 1, memory_order_release);
}

void hc_proxy_wlstats_mark(struct hc_proxy_wlstats *t, const char *host)
{
	struct hc_proxy_wl_stats *e;

	pthread_mutex_lock(&t->lock);
	e = find(*bucket_of(t, host), host);
	if (e)
		e->routed = true;
	pthread_mutex_unlock(&t->lock);
}

size_t hc_proxy_wlstats_sweep(struct hc_proxy_wlstats *t)
{
	size_t dropped = 0;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < BUCKETS; i++) {
		for (struct hc_proxy_wl_stats **pp = &t->buckets[i]; *pp;) {
			struct hc_proxy_wl_stats *e = *pp;

			e->missed = e->routed ? 0 : e->missed + 1;
			e->routed = false;
			/* Nobody can take a new reference without the lock, and
			 * every holder's reference is counted: 0 stays 0. */
			if (e->missed >= 2 && atomic_load_explicit(&e->users, memory_order_acquire) == 0) {
				*pp = e->next;
				free(e);
				t->count--;
				dropped++;
				continue;
			}
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return dropped;
}

size_t hc_proxy_wlstats_count(struct hc_proxy_wlstats *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void hc_proxy_wlstats_each(struct hc_proxy_wlstats *t,
			   void (*fn)(const struct hc_proxy_wl_stats *e, void *arg), void *arg)
{
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < BUCKETS; i++)
		for (const struct hc_proxy_wl_stats *e = t->buckets[i]; e; e = e->next)
			fn(e, arg);
	pthread_mutex_unlock(&t->lock);
}
