/* Open connections per client address: a fixed-size hash table split into
 * stripes, each an open-addressing table (linear probing, backward-shift
 * deletion: no tombstones to pile up) under its own mutex. An entry lives
 * while its address has a connection open, so the table tracks at most as
 * many addresses as the proxy holds connections; nothing is allocated per
 * connection. Addresses are hashed with a per-process random key, so a
 * client cannot aim many addresses at one stripe without knowing it; a full
 * stripe lets the address in untracked (the per-port and total limits still
 * hold) rather than refuse strangers. */
#include "proxy/iplimit.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define STRIPES 64 /* two workers rarely share one; a power of two */
#define STRIPE_MIN_SLOTS 16

struct slot {
	struct hc_proxy_ip ip;
	uint32_t hash; /* its home is a function of this: kept for deletion */
	uint32_t count; /* 0: the slot is free */
};

struct stripe {
	pthread_mutex_t lock;
	uint32_t used; /* slots in use; kept <= 3/4 of them, so probes end */
	struct slot *slots;
} __attribute__((aligned(64))); /* one cache line per lock */

struct hc_proxy_iplimit {
	unsigned limit;
	uint32_t mask; /* slots per stripe - 1 */
	uint64_t key[2];
	struct stripe stripes[STRIPES];
};

/* MurmurHash3's finalizer: every input bit moves every output bit. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint32_t hash_ip(const struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip)
{
	uint64_t w[2];

	memcpy(w, ip->a, sizeof(w));
	return (uint32_t)mix(mix(w[0] ^ t->key[0]) ^ w[1] ^ t->key[1]);
}

static struct stripe *stripe_of(struct hc_proxy_iplimit *t, uint32_t h)
{
	return &t->stripes[h % STRIPES];
}

static uint32_t home_of(const struct hc_proxy_iplimit *t, uint32_t h)
{
	return (h / STRIPES) & t->mask;
}

static uint32_t next_pow2(uint64_t n)
{
	uint32_t p = STRIPE_MIN_SLOTS;

	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

struct hc_proxy_iplimit *hc_proxy_iplimit_new(unsigned limit, unsigned capacity)
{
	struct hc_proxy_iplimit *t = calloc(1, sizeof(*t));
	uint32_t per;

	if (!t)
		return NULL;
	t->limit = limit;
	/* 4/3: the load a stripe may reach; x2: stripes fill unevenly */
	per = next_pow2(((uint64_t)capacity * 8 / 3 + STRIPES - 1) / STRIPES);
	t->mask = per - 1;
	if (getrandom(t->key, sizeof(t->key), 0) != (ssize_t)sizeof(t->key)) {
		free(t);
		errno = EIO;
		return NULL;
	}
	for (unsigned i = 0; i < STRIPES; i++) {
		/* calloc: untouched pages cost no memory until addresses land */
		t->stripes[i].slots = calloc(per, sizeof(struct slot));
		if (!t->stripes[i].slots) {
			hc_proxy_iplimit_free(t);
			errno = ENOMEM;
			return NULL;
		}
		pthread_mutex_init(&t->stripes[i].lock, NULL);
	}
	return t;
}

void hc_proxy_iplimit_free(struct hc_proxy_iplimit *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < STRIPES; i++) {
		if (!t->stripes[i].slots)
			break; /* allocation failed here: the rest were never made */
		pthread_mutex_destroy(&t->stripes[i].lock);
		free(t->stripes[i].slots);
	}
	free(t);
}

/* The slot holding ip, or the free slot where it would go (the stripe is
 * never full, so there is one). */
static uint32_t probe(const struct hc_proxy_iplimit *t, const struct stripe *s, uint32_t h,
		      const struct hc_proxy_ip *ip)
{
	uint32_t i = home_of(t, h);

	while (s->slots[i].count &&
	       (s->slots[i].hash != h || memcmp(&s->slots[i].ip, ip, sizeof(*ip)) != 0))
		i = (i + 1) & t->mask;
	return i;
}

int hc_proxy_iplimit_take(struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip)
{
	uint32_t h = hash_ip(t, ip);
	struct stripe *s = stripe_of(t, h);
	struct slot *e;
	int r = 1;

	pthread_mutex_lock(&s->lock);
	e = &s->slots[probe(t, s, h, ip)];
	if (e->count >= t->limit) {
		r = 0;
	} else if (e->count) {
		e->count++;
	} else if ((uint64_t)(s->used + 1) * 4 > (uint64_t)(t->mask + 1) * 3) {
		r = -ENOSPC;
	} else {
		e->ip = *ip;
		e->hash = h;
		e->count = 1;
		s->used++;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Is k cyclically within (i, j]? Then an entry whose home is k may not
 * move back to i. */
static bool between(uint32_t i, uint32_t k, uint32_t j)
{
	return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

/* Frees slot i, moving later entries of its run back so that every entry
 * stays reachable from its home without tombstones. */
static void delete_at(const struct hc_proxy_iplimit *t, struct stripe *s, uint32_t i)
{
	uint32_t j = i;

	for (;;) {
		j = (j + 1) & t->mask;
		if (!s->slots[j].count)
			break;
		if (between(i, home_of(t, s->slots[j].hash), j))
			continue;
		s->slots[i] = s->slots[j];
		i = j;
	}
	memset(&s->slots[i], 0, sizeof(s->slots[i]));
	s->used--;
}

void hc_proxy_iplimit_release(struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip)
{
	uint32_t h = hash_ip(t, ip);
	struct stripe *s = stripe_of(t, h);
	uint32_t i;

	pthread_mutex_lock(&s->lock);
	i = probe(t, s, h, ip);
	if (s->slots[i].count && --s->slots[i].count == 0)
		delete_at(t, s, i);
	pthread_mutex_unlock(&s->lock);
}

unsigned hc_proxy_iplimit_count(struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip)
{
	uint32_t h = hash_ip(t, ip);
	struct stripe *s = stripe_of(t, h);
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = s->slots[probe(t, s, h, ip)].count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int hc_proxy_ip_from_sockaddr(struct hc_proxy_ip *ip, const struct sockaddr *sa, socklen_t len)
{
	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		ip->a[10] = ip->a[11] = 0xff;
		memcpy(ip->a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		memcpy(ip->a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return 0;
	}
	return -EAFNOSUPPORT;
}
