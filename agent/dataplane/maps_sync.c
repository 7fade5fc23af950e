/* The diff-based sync of the routes and services maps, against a mirror of what they hold. */
#define HC_LOG_MODULE "dataplane"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/dataplane_int.h"
#include "log/log.h"

/* ---- the mirror: what the maps hold, as the last sync left them ---- */

/* Word at a time: keys are up to 132 bytes and a sync hashes every one. */
static uint64_t key_hash(const void *key, size_t len)
{
	const unsigned char *p = key;
	uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, sizeof(w));
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static char *mirror_entry(const struct hc_dp_mirror *m, size_t i)
{
	return m->entries + i * m->stride;
}

static void mirror_slot_insert(struct hc_dp_mirror *m, size_t i)
{
	size_t s = key_hash(mirror_entry(m, i), m->ksize) & m->mask;

	while (m->slots[s])
		s = (s + 1) & m->mask;
	m->slots[s] = i + 1;
}

/* (Re)builds the open-addressing index over the live entries, dropping the
 * dead ones first. */
static int mirror_rebuild(struct hc_dp_mirror *m)
{
	size_t cap = 16, k = 0;

	for (size_t i = 0; i < m->n; i++) {
		if (!m->live[i])
			continue;
		if (k != i)
			memcpy(mirror_entry(m, k), mirror_entry(m, i), m->stride);
		m->live[k++] = 1;
	}
	m->n = k;
	m->ndead = 0;
	while (cap < m->n * 2 + 2)
		cap *= 2;
	free(m->slots);
	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	m->mask = cap - 1;
	for (size_t i = 0; i < m->n; i++)
		mirror_slot_insert(m, i);
	return 0;
}

/* Index of the live entry with this key, or -1. */
static ssize_t mirror_find(const struct hc_dp_mirror *m, const void *key)
{
	size_t s = key_hash(key, m->ksize) & m->mask;

	while (m->slots[s]) {
		size_t i = m->slots[s] - 1;

		if (m->live[i] && memcmp(mirror_entry(m, i), key, m->ksize) == 0)
			return (ssize_t)i;
		s = (s + 1) & m->mask;
	}
	return -1;
}

/* Appends an entry (key then value). 0 or -ENOMEM. */
static int mirror_append(struct hc_dp_mirror *m, const void *key, const void *val)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		char *e = realloc(m->entries, cap * m->stride);
		unsigned char *l = e ? realloc(m->live, cap) : NULL;

		if (e)
			m->entries = e;
		if (l)
			m->live = l;
		if (!e || !l)
			return -ENOMEM;
		m->cap = cap;
	}
	memcpy(mirror_entry(m, m->n), key, m->ksize);
	memcpy(mirror_entry(m, m->n) + m->ksize, val, m->stride - m->ksize);
	m->live[m->n] = 1;
	m->n++;
	if (m->n * 2 + 2 > m->mask + 1)
		return mirror_rebuild(m);
	mirror_slot_insert(m, m->n - 1);
	return 0;
}

void hc_dp_mirror_fini(struct hc_dp_mirror *m)
{
	free(m->entries);
	free(m->live);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

/* ---- the diff-based sync ---- */

/* How one kind of entry is laid out and which entries are static. */
struct sync_kind {
	int fd;
	size_t ksize, vsize;
	size_t flags_off; /* offset of the __u16 flags in the value */
	__u16 static_flag;
};

static bool val_is_static(const struct sync_kind *k, const void *val)
{
	__u16 flags;

	memcpy(&flags, (const char *)val + k->flags_off, sizeof(flags));
	return flags & k->static_flag;
}

/* Fills the mirror with everything the map holds (after an agent start, or
 * when a sync failed half-way). */
static int mirror_load(struct hc_dp_mirror *m, const struct sync_kind *k)
{
	struct hc_dp_map_dump d;
	int rc = 0;

	hc_dp_mirror_fini(m);
	m->ksize = k->ksize;
	m->stride = k->ksize + k->vsize;
	rc = mirror_rebuild(m);
	if (!rc)
		rc = hc_dp_map_dump_all(k->fd, k->ksize, k->vsize, &d);
	if (rc)
		return rc;
	for (size_t i = 0; i < d.n && !rc; i++)
		rc = mirror_append(m, (char *)d.keys + i * k->ksize, (char *)d.vals + i * k->vsize);
	hc_dp_map_dump_fini(&d);
	if (!rc)
		m->valid = true;
	return rc;
}

/* Writes n entries (keys and values in two arrays) with one batch call per
 * HC_DP_BATCH, falling back to single updates when batches are refused. */
static int map_write_many(int fd, const void *keys, const void *vals, size_t n, size_t ksize,
			  size_t vsize)
{
	for (size_t done = 0; done < n;) {
		__u32 count = n - done > HC_DP_BATCH ? HC_DP_BATCH : (__u32)(n - done);
		const char *k = (const char *)keys + done * ksize;
		const char *v = (const char *)vals + done * vsize;

		if (bpf_map_update_batch(fd, k, v, &count, NULL) < 0) {
			int rc = -errno;

			if (rc != -EINVAL && rc != -524 /* ENOTSUPP */ && rc != -EOPNOTSUPP)
				return rc;
			for (__u32 i = 0; i < count; i++)
				if (bpf_map_update_elem(fd, k + i * ksize, v + i * vsize, BPF_ANY) < 0)
					return -errno;
		}
		done += count;
	}
	return 0;
}

static int map_delete_many(int fd, const void *keys, size_t n, size_t ksize)
{
	for (size_t done = 0; done < n;) {
		__u32 count = n - done > HC_DP_BATCH ? HC_DP_BATCH : (__u32)(n - done);
		const char *k = (const char *)keys + done * ksize;

		if (bpf_map_delete_batch(fd, k, &count, NULL) < 0) {
			/* An entry went away between our look and now: finish
			 * one by one, absent entries are fine. */
			for (__u32 i = 0; i < n - done; i++)
				if (bpf_map_delete_elem(fd, k + i * ksize) < 0 && errno != ENOENT)
					return -errno;
			return 0;
		}
		done += count;
	}
	return 0;
}

/* A growable array of fixed-size items. */
struct vec {
	char *items;
	size_t n, cap, size;
};

static int vec_push(struct vec *v, const void *item)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		char *items = realloc(v->items, cap * v->size);

		if (!items)
			return -ENOMEM;
		v->items = items;
		v->cap = cap;
	}
	memcpy(v->items + v->n++ * v->size, item, v->size);
	return 0;
}

/* The work one sync of one kind does. Writes carry the mirror entry they
 * replace (or -1 for a new key), so the mirror follows once the map did. */
struct sync_plan {
	struct vec upd_keys, upd_vals, upd_at; /* upd_at: ssize_t */
	struct vec del_keys, del_at;		/* del_at: size_t */
	struct vec keep_static;			/* mirror entries to refresh: key + value */
	char *cur;				/* a value read back from the map */
};

static void sync_plan_fini(struct sync_plan *p)
{
	free(p->upd_keys.items);
	free(p->upd_vals.items);
	free(p->upd_at.items);
	free(p->del_keys.items);
	free(p->del_at.items);
	free(p->keep_static.items);
	free(p->cur);
}

/* Reads the map's own entry for key into p->cur: 1 if it is static (an
 * operator's, which no sync may change), 0 if not, -1 if there is none. */
static int map_entry_static(const struct sync_kind *k, struct sync_plan *p, const void *key)
{
	if (bpf_map_lookup_elem(k->fd, key, p->cur) < 0)
		return -1;
	return val_is_static(k, p->cur) ? 1 : 0;
}

static int plan_write(struct sync_plan *p, const void *key, const void *val, ssize_t at)
{
	int rc = vec_push(&p->upd_keys, key);

	if (!rc)
		rc = vec_push(&p->upd_vals, val);
	if (!rc)
		rc = vec_push(&p->upd_at, &at);
	return rc;
}

/* Decides every write and delete. Entries equal to what the mirror says the
 * map holds cost nothing; a write or delete first reads the map's own entry,
 * so a static entry an operator added or removed since the last sync is
 * honoured although the mirror did not see it happen. fresh: the mirror was
 * read from the map just now, so a key it lacks is not in the map either. */
static int sync_plan_make(const struct sync_kind *k, const struct hc_dp_mirror *mirror,
			  bool fresh, const char *want, size_t n, struct sync_plan *p,
			  struct hc_dp_change_count *count)
{
	size_t stride = k->ksize + k->vsize;
	bool *seen = calloc(mirror->n + 1, sizeof(*seen));
	int rc = 0;

	p->upd_keys.size = p->del_keys.size = k->ksize;
	p->upd_vals.size = k->vsize;
	p->upd_at.size = sizeof(ssize_t);
	p->del_at.size = sizeof(size_t);
	p->keep_static.size = stride;
	p->cur = malloc(stride);
	if (!seen || !p->cur) {
		free(seen);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		const char *key = want + i * stride, *val = key + k->ksize;
		ssize_t at = mirror_find(mirror, key);
		int st = -1;

		if (at >= 0) {
			const char *have = mirror_entry(mirror, (size_t)at) + k->ksize;

			seen[at] = true;
			if (!val_is_static(k, have) && memcmp(have, val, k->vsize) == 0) {
				count->unchanged++;
				continue;
			}
		}
		if (at >= 0 || !fresh)
			st = map_entry_static(k, p, key);
		if (st == 1) {
			count->static_kept++;
			memmove(p->cur + k->ksize, p->cur, k->vsize);
			memcpy(p->cur, key, k->ksize);
			rc = vec_push(&p->keep_static, p->cur);
			continue;
		}
		if (st == 0)
			count->updated++;
		else
			count->added++;
		rc = plan_write(p, key, val, at);
	}
	for (size_t j = 0; j < mirror->n && !rc; j++) {
		const char *key = mirror_entry(mirror, j);
		int st;

		if (seen[j] || !mirror->live[j])
			continue;
		st = map_entry_static(k, p, key);
		if (st == 1) {
			memmove(p->cur + k->ksize, p->cur, k->vsize);
			memcpy(p->cur, key, k->ksize);
			rc = vec_push(&p->keep_static, p->cur);
		} else {
			/* Not the map's any more (st < 0) or ours to remove. */
			if (st == 0)
				rc = vec_push(&p->del_keys, key);
			if (!rc)
				rc = vec_push(&p->del_at, &j);
		}
	}
	count->deleted = p->del_keys.n;
	free(seen);
	return rc;
}

/* Brings the mirror to what the map now holds. */
static int mirror_apply(struct hc_dp_mirror *m, const struct sync_plan *p)
{
	size_t vsize = m->stride - m->ksize;
	int rc = 0;

	for (size_t i = 0; i < p->del_at.n; i++) {
		size_t at = ((const size_t *)p->del_at.items)[i];

		m->live[at] = 0;
		m->ndead++;
	}
	for (size_t i = 0; i < p->upd_at.n && !rc; i++) {
		ssize_t at = ((const ssize_t *)p->upd_at.items)[i];
		const char *val = p->upd_vals.items + i * vsize;

		if (at >= 0)
			memcpy(mirror_entry(m, (size_t)at) + m->ksize, val, vsize);
		else
			rc = mirror_append(m, p->upd_keys.items + i * m->ksize, val);
	}
	for (size_t i = 0; i < p->keep_static.n && !rc; i++) {
		const char *e = p->keep_static.items + i * m->stride;
		ssize_t at = mirror_find(m, e);

		if (at >= 0)
			memcpy(mirror_entry(m, (size_t)at), e, m->stride);
		else
			rc = mirror_append(m, e, e + m->ksize);
	}
	if (!rc && m->ndead * 4 > m->n)
		rc = mirror_rebuild(m);
	return rc;
}

/* One kind's sync: want holds n (key, value) pairs back to back. */
static int sync_kind(const struct sync_kind *k, struct hc_dp_mirror *mirror, const void *want,
		     size_t n, struct hc_dp_change_count *count)
{
	struct sync_plan plan = {0};
	bool fresh = !mirror->valid;
	int rc = 0;

	memset(count, 0, sizeof(*count));
	if (fresh)
		rc = mirror_load(mirror, k);
	if (!rc)
		rc = sync_plan_make(k, mirror, fresh, want, n, &plan, count);
	/* Deletes first: a full map must make room before adds. */
	if (!rc)
		rc = map_delete_many(k->fd, plan.del_keys.items, plan.del_keys.n, k->ksize);
	if (!rc)
		rc = map_write_many(k->fd, plan.upd_keys.items, plan.upd_vals.items, plan.upd_keys.n,
				    k->ksize, k->vsize);
	if (!rc)
		rc = mirror_apply(mirror, &plan);
	if (rc)
		hc_dp_mirror_fini(mirror); /* the next sync reads the map again */
	sync_plan_fini(&plan);
	return rc;
}

int hc_dpmaps_sync(struct hc_dpmaps *m, const struct hc_dp_desired *want,
		   struct hc_dp_sync_report *report)
{
	const struct sync_kind routes = {
		.fd = m->routes,
		.ksize = sizeof(struct hc_route_key),
		.vsize = sizeof(struct hc_route_val),
		.flags_off = offsetof(struct hc_route_val, flags),
		.static_flag = HC_ROUTE_F_STATIC,
	};
	const struct sync_kind services = {
		.fd = m->services,
		.ksize = sizeof(struct hc_service_key),
		.vsize = sizeof(struct hc_service_val),
		.flags_off = offsetof(struct hc_service_val, flags),
		.static_flag = HC_SERVICE_F_STATIC,
	};
	struct hc_dp_sync_report local;
	int rc;

	if (!report)
		report = &local;
	memset(report, 0, sizeof(*report));
	for (size_t i = 0; i < want->n_routes; i++)
		if (want->routes[i].val.flags & HC_ROUTE_F_STATIC)
			return -EINVAL;
	for (size_t i = 0; i < want->n_services; i++)
		if ((want->services[i].val.flags & HC_SERVICE_F_STATIC) ||
		    want->services[i].val.count > HC_SERVICE_MAX_BACKENDS)
			return -EINVAL;
	rc = sync_kind(&routes, &m->routes_mirror, want->routes, want->n_routes, &report->routes);
	if (rc)
		return rc;
	if (report->routes.added + report->routes.deleted)
		hc_dpmaps_sync_proxy_ports(m); /* else the agent's next refresh does */
	return sync_kind(&services, &m->services_mirror, want->services, want->n_services,
			 &report->services);
}

int hc_dpmaps_cluster_routes(struct hc_dpmaps *m, struct hc_dp_route **out, size_t *n)
{
	struct hc_dp_map_dump d;
	struct hc_dp_route *r;
	size_t k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = hc_dp_map_dump_all(m->routes, sizeof(struct hc_route_key),
				sizeof(struct hc_route_val), &d);
	if (rc)
		return rc;
	r = malloc((d.n ? d.n : 1) * sizeof(*r));
	if (!r) {
		hc_dp_map_dump_fini(&d);
		return -ENOMEM;
	}
	for (size_t i = 0; i < d.n; i++) {
		memcpy(&r[k].key, (char *)d.keys + i * sizeof(r->key), sizeof(r->key));
		memcpy(&r[k].val, (char *)d.vals + i * sizeof(r->val), sizeof(r->val));
		if (!(r[k].val.flags & HC_ROUTE_F_STATIC))
			k++;
	}
	hc_dp_map_dump_fini(&d);
	*out = r;
	*n = k;
	return 0;
}

_Static_assert(offsetof(struct hc_dp_route, val) == sizeof(struct hc_route_key),
	       "sync reads a route's value right after its key");
_Static_assert(offsetof(struct hc_dp_service, val) == sizeof(struct hc_service_key),
	       "sync reads a service's value right after its key");
