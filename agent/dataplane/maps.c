/* The pinned maps from userspace: opening, the diff-based sync, static
 * entries, host addresses and decoded snapshots. */
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

/* Entries read or written per batch call. */
#define HC_DP_BATCH 4096

int hc_dp_fail(struct hc_dp_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- opening ---- */

struct map_slot {
	const char *name;
	size_t offset;
};

#define SLOT(field, name) {name, offsetof(struct hc_dpmaps, field)}
static const struct map_slot map_slots[] = {
	SLOT(routes, HC_MAP_ROUTES),	     SLOT(services, HC_MAP_SERVICES),
	SLOT(conntrack, HC_MAP_CONNTRACK),   SLOT(wl_stats, HC_MAP_WL_STATS),
	SLOT(workloads, HC_MAP_WORKLOADS),   SLOT(wl_rate, HC_MAP_WL_RATE),
	SLOT(host_addrs, HC_MAP_HOST_ADDRS), SLOT(config, HC_MAP_CONFIG),
	SLOT(drops, HC_MAP_DROPS),
};
#undef SLOT

static int *slot_fd(struct hc_dpmaps *m, const struct map_slot *s)
{
	return (int *)((char *)m + s->offset);
}

int hc_dpmaps_init_from_pins(struct hc_dpmaps *m, const char *pin_dir, struct hc_dp_err *err)
{
	char path[512];

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < sizeof(map_slots) / sizeof(map_slots[0]); i++)
		*slot_fd(m, &map_slots[i]) = -1;
	for (size_t i = 0; i < sizeof(map_slots) / sizeof(map_slots[0]); i++) {
		int fd, rc;

		snprintf(path, sizeof(path), "%s/%s", pin_dir, map_slots[i].name);
		fd = bpf_obj_get(path);
		if (fd < 0) {
			rc = -errno;
			hc_dpmaps_fini(m);
			if (rc == -ENOENT)
				return hc_dp_fail(err, rc,
						  "no data plane pinned in %s (%s missing): start an agent "
						  "(hypercore cluster) or give --bpf-pin-dir",
						  pin_dir, map_slots[i].name);
			return hc_dp_fail(err, rc, "cannot open %s: %s", path, strerror(-rc));
		}
		*slot_fd(m, &map_slots[i]) = fd;
	}
	return 0;
}

void hc_dpmaps_fini(struct hc_dpmaps *m)
{
	hc_dp_mirror_fini(&m->routes_mirror);
	hc_dp_mirror_fini(&m->services_mirror);
	for (size_t i = 0; i < sizeof(map_slots) / sizeof(map_slots[0]); i++) {
		int *fd = slot_fd(m, &map_slots[i]);

		if (*fd >= 0)
			close(*fd);
		*fd = -1;
	}
}

struct hc_dpmaps *hc_dpmaps_open(const char *pin_dir, struct hc_dp_err *err)
{
	struct hc_dpmaps *m = calloc(1, sizeof(*m));
	int rc;

	if (!m) {
		hc_dp_fail(err, -ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	rc = hc_dpmaps_init_from_pins(m, pin_dir ? pin_dir : HC_DEFAULT_BPF_PIN_DIR, err);
	if (rc) {
		free(m);
		errno = -rc;
		return NULL;
	}
	return m;
}

void hc_dpmaps_close(struct hc_dpmaps *m)
{
	if (!m)
		return;
	hc_dpmaps_fini(m);
	free(m);
}

/* ---- reading a whole hash map ---- */

/* Every key and value of a (non per-CPU) hash map, into malloc'ed arrays. */
struct map_dump {
	void *keys;
	void *vals;
	size_t n;
};

static void map_dump_fini(struct map_dump *d)
{
	free(d->keys);
	free(d->vals);
	memset(d, 0, sizeof(*d));
}

/* Batch lookups where the kernel has them; a get_next_key walk otherwise.
 * vsize is the value size as userspace sees it (per-CPU maps: times CPUs). */
static int map_dump_all(int fd, size_t ksize, size_t vsize, struct map_dump *d)
{
	size_t cap = HC_DP_BATCH;
	__u64 in_batch = 0, out_batch = 0;
	bool first = true;
	int rc = 0;

	memset(d, 0, sizeof(*d));
	d->keys = malloc(cap * ksize);
	d->vals = malloc(cap * vsize);
	if (!d->keys || !d->vals) {
		map_dump_fini(d);
		return -ENOMEM;
	}
	for (;;) {
		__u32 count = HC_DP_BATCH;

		if (d->n + count > cap) {
			void *k, *v;

			cap *= 2;
			k = realloc(d->keys, cap * ksize);
			if (k)
				d->keys = k;
			v = k ? realloc(d->vals, cap * vsize) : NULL;
			if (v)
				d->vals = v;
			if (!k || !v) {
				map_dump_fini(d);
				return -ENOMEM;
			}
		}
		rc = bpf_map_lookup_batch(fd, first ? NULL : &in_batch, &out_batch,
					  (char *)d->keys + d->n * ksize,
					  (char *)d->vals + d->n * vsize, &count, NULL);
		if (rc < 0)
			rc = -errno;
		d->n += count;
		if (rc == -ENOENT)
			return 0; /* the end */
		if (rc) {
			map_dump_fini(d);
			return rc;
		}
		in_batch = out_batch;
		first = false;
	}
}

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
	struct map_dump d;
	int rc = 0;

	hc_dp_mirror_fini(m);
	m->ksize = k->ksize;
	m->stride = k->ksize + k->vsize;
	rc = mirror_rebuild(m);
	if (!rc)
		rc = map_dump_all(k->fd, k->ksize, k->vsize, &d);
	if (rc)
		return rc;
	for (size_t i = 0; i < d.n && !rc; i++)
		rc = mirror_append(m, (char *)d.keys + i * k->ksize, (char *)d.vals + i * k->vsize);
	map_dump_fini(&d);
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
	return sync_kind(&services, &m->services_mirror, want->services, want->n_services,
			 &report->services);
}

_Static_assert(offsetof(struct hc_dp_route, val) == sizeof(struct hc_route_key),
	       "sync reads a route's value right after its key");
_Static_assert(offsetof(struct hc_dp_service, val) == sizeof(struct hc_service_key),
	       "sync reads a service's value right after its key");

/* ---- static entries ---- */

/* Host names as the proxy will see them in Host headers and SNI: letters,
 * digits, '-', '.', '_' (workload ids are UUIDs), lower-cased. */
int hc_dp_ipaddr_parse(const char *text, struct hc_ipaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, &out->ip4) == 1) {
		out->family = HC_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->ip6) == 1) {
		out->family = HC_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

int hc_dp_route_key_init(struct hc_route_key *key, const char *host, uint16_t port)
{
	size_t len = host ? strlen(host) : 0;

	memset(key, 0, sizeof(*key));
	if (len == 0 || len >= sizeof(key->host))
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return -EINVAL;
		key->host[i] = (char)tolower(c);
	}
	key->port = port;
	return 0;
}

static int bad_host(struct hc_dp_err *err, const char *host)
{
	return hc_dp_fail(err, -EINVAL,
			  "invalid host %s%s%s: 1-%d characters of letters, digits, '-', '.', '_'",
			  host ? "\"" : "", host ? host : "(none)", host ? "\"" : "",
			  HC_ROUTE_HOST_MAX - 1);
}

int hc_dpmaps_route_add_static(struct hc_dpmaps *m, const char *host, uint16_t port,
			       const struct hc_ipaddr *backend, uint16_t backend_port,
			       struct hc_dp_err *err)
{
	struct hc_route_key key;
	struct hc_route_val val = {0};

	if (hc_dp_route_key_init(&key, host, port))
		return bad_host(err, host);
	val.backend = *backend;
	val.port = backend_port;
	val.flags = HC_ROUTE_F_STATIC;
	if (bpf_map_update_elem(m->routes, &key, &val, BPF_ANY) < 0)
		return hc_dp_fail(err, -errno, "cannot write %s: %s", HC_MAP_ROUTES, strerror(errno));
	return 0;
}

int hc_dpmaps_route_del_static(struct hc_dpmaps *m, const char *host, uint16_t port,
			       struct hc_dp_err *err)
{
	struct hc_route_key key;
	struct hc_route_val val;

	if (hc_dp_route_key_init(&key, host, port))
		return bad_host(err, host);
	if (bpf_map_lookup_elem(m->routes, &key, &val) < 0)
		return hc_dp_fail(err, -errno, "no route for %s port %u", key.host, port);
	if (!(val.flags & HC_ROUTE_F_STATIC))
		return hc_dp_fail(err, -EPERM,
				  "the route for %s port %u belongs to the cluster, not a static route",
				  key.host, port);
	if (bpf_map_delete_elem(m->routes, &key) < 0 && errno != ENOENT)
		return hc_dp_fail(err, -errno, "cannot delete from %s: %s", HC_MAP_ROUTES,
				  strerror(errno));
	return 0;
}

static bool backend_eq(const struct hc_backend *b, const struct hc_ipaddr *addr, uint16_t port)
{
	return b->port == port && b->addr.family == addr->family &&
	       memcmp(b->addr.ip6, addr->ip6, addr->family == HC_AF_INET ? 4 : 16) == 0;
}

int hc_dpmaps_service_add_static(struct hc_dpmaps *m, uint8_t proto, uint16_t node_port,
				 const struct hc_ipaddr *backend, uint16_t backend_port,
				 struct hc_dp_err *err)
{
	struct hc_service_key key = {.port = node_port, .proto = proto};
	struct hc_service_val val;

	if (bpf_map_lookup_elem(m->services, &key, &val) < 0) {
		if (errno != ENOENT)
			return hc_dp_fail(err, -errno, "cannot read %s: %s", HC_MAP_SERVICES,
					  strerror(errno));
		memset(&val, 0, sizeof(val));
		val.flags = HC_SERVICE_F_STATIC;
	} else if (!(val.flags & HC_SERVICE_F_STATIC)) {
		return hc_dp_fail(err, -EPERM, "node port %u belongs to a cluster workload", node_port);
	}
	for (uint32_t i = 0; i < val.count; i++)
		if (backend_eq(&val.backends[i], backend, backend_port))
			return 0;
	if (val.count >= HC_SERVICE_MAX_BACKENDS)
		return hc_dp_fail(err, -ENOSPC, "node port %u already has %d backends", node_port,
				  HC_SERVICE_MAX_BACKENDS);
	val.backends[val.count].addr = *backend;
	val.backends[val.count].port = backend_port;
	val.count++;
	if (bpf_map_update_elem(m->services, &key, &val, BPF_ANY) < 0)
		return hc_dp_fail(err, -errno, "cannot write %s: %s", HC_MAP_SERVICES,
				  strerror(errno));
	return 0;
}

int hc_dpmaps_service_del_static(struct hc_dpmaps *m, uint8_t proto, uint16_t node_port,
				 const struct hc_ipaddr *backend, uint16_t backend_port,
				 struct hc_dp_err *err)
{
	struct hc_service_key key = {.port = node_port, .proto = proto};
	struct hc_service_val val;
	uint32_t kept = 0;

	if (bpf_map_lookup_elem(m->services, &key, &val) < 0)
		return hc_dp_fail(err, -errno, "no service on node port %u", node_port);
	if (!(val.flags & HC_SERVICE_F_STATIC))
		return hc_dp_fail(err, -EPERM, "node port %u belongs to a cluster workload", node_port);
	if (backend) {
		for (uint32_t i = 0; i < val.count; i++)
			if (!backend_eq(&val.backends[i], backend, backend_port))
				val.backends[kept++] = val.backends[i];
		if (kept == val.count)
			return hc_dp_fail(err, -ENOENT, "node port %u has no such backend", node_port);
		memset(&val.backends[kept], 0, (val.count - kept) * sizeof(val.backends[0]));
		val.count = kept;
	}
	if (kept > 0) {
		if (bpf_map_update_elem(m->services, &key, &val, BPF_EXIST) < 0)
			return hc_dp_fail(err, -errno, "cannot write %s: %s", HC_MAP_SERVICES,
					  strerror(errno));
		return 0;
	}
	if (bpf_map_delete_elem(m->services, &key) < 0 && errno != ENOENT)
		return hc_dp_fail(err, -errno, "cannot delete from %s: %s", HC_MAP_SERVICES,
				  strerror(errno));
	return 0;
}

/* ---- host addresses ---- */

int hc_dpmaps_set_host_addrs(struct hc_dpmaps *m, const struct hc_ipaddr *addrs, size_t n)
{
	struct hc_ipaddr stale[HC_HOST_ADDRS_MAX], key;
	size_t n_stale = 0;
	__u8 one = 1;
	void *prev = NULL;
	int rc = 0;

	/* Collect what is no longer ours first: deleting during the walk
	 * would restart it. */
	while (n_stale < HC_HOST_ADDRS_MAX && bpf_map_get_next_key(m->host_addrs, prev, &key) == 0) {
		bool keep = false;

		for (size_t i = 0; i < n && !keep; i++)
			keep = memcmp(&addrs[i], &key, sizeof(key)) == 0;
		if (!keep)
			stale[n_stale++] = key;
		prev = &key;
	}
	for (size_t i = 0; i < n_stale; i++)
		if (bpf_map_delete_elem(m->host_addrs, &stale[i]) < 0 && errno != ENOENT)
			rc = rc ? rc : -errno;
	for (size_t i = 0; i < n; i++)
		if (bpf_map_update_elem(m->host_addrs, &addrs[i], &one, BPF_ANY) < 0)
			rc = rc ? rc : -errno;
	return rc;
}

/* ---- snapshots ---- */

static const char *const drop_reason_names[HC_DROP_REASONS] = {
	[HC_DROP_NONE] = "none",
	[HC_DROP_NO_BACKEND] = "no_backend",
	[HC_DROP_FIB] = "no_route",
	[HC_DROP_ISOLATION] = "isolation",
	[HC_DROP_RATE] = "rate_limit",
	[HC_DROP_CT_FULL] = "conntrack_full",
	[HC_DROP_MALFORMED] = "malformed",
	[HC_DROP_TOO_BIG] = "too_big",
};

const char *hc_dp_drop_reason_name(unsigned int reason)
{
	if (reason >= HC_DROP_REASONS || !drop_reason_names[reason])
		return "unknown";
	return drop_reason_names[reason];
}

static int route_cmp(const void *a, const void *b)
{
	const struct hc_dp_route *x = a, *y = b;
	int c = strncmp(x->key.host, y->key.host, sizeof(x->key.host));

	return c ? c : (int)x->key.port - (int)y->key.port;
}

static int service_cmp(const void *a, const void *b)
{
	const struct hc_dp_service *x = a, *y = b;

	if (x->key.port != y->key.port)
		return (int)x->key.port - (int)y->key.port;
	return (int)x->key.proto - (int)y->key.proto;
}

static int workload_cmp(const void *a, const void *b)
{
	const struct hc_dp_workload_row *x = a, *y = b;
	int c = strncmp(x->wl.id, y->wl.id, sizeof(x->wl.id));

	return c ? c : (x->ifindex > y->ifindex) - (x->ifindex < y->ifindex);
}

/* Unpacks a dump of a hash map whose entries are (K, V) into an array of
 * struct { K key; V val; } with no padding between. */
static void *pair_up(const struct map_dump *d, size_t ksize, size_t vsize)
{
	char *out = malloc(d->n * (ksize + vsize) + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < d->n; i++) {
		memcpy(out + i * (ksize + vsize), (char *)d->keys + i * ksize, ksize);
		memcpy(out + i * (ksize + vsize) + ksize, (char *)d->vals + i * vsize, vsize);
	}
	return out;
}

static int snapshot_workloads(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	int ncpu = libbpf_num_possible_cpus();
	size_t stride = (sizeof(struct hc_wl_stats) + 7) & ~(size_t)7;
	struct map_dump stats, wls;
	int rc;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	rc = map_dump_all(m->wl_stats, sizeof(__u32), stride * ncpu, &stats);
	if (rc)
		return rc;
	rc = map_dump_all(m->workloads, sizeof(__u32), sizeof(struct hc_wl_info), &wls);
	if (rc) {
		map_dump_fini(&stats);
		return rc;
	}
	snap->workloads = calloc(wls.n + stats.n + 1, sizeof(*snap->workloads));
	if (!snap->workloads) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < wls.n; i++) {
		struct hc_dp_workload_row *row = &snap->workloads[snap->n_workloads++];

		row->ifindex = ((__u32 *)wls.keys)[i];
		row->wl = ((struct hc_wl_info *)wls.vals)[i];
	}
	for (size_t i = 0; i < stats.n; i++) {
		__u32 ifindex = ((__u32 *)stats.keys)[i];
		struct hc_dp_workload_row *row = NULL;
		struct hc_wl_stats *sum;

		for (size_t j = 0; j < snap->n_workloads && !row; j++)
			if (snap->workloads[j].ifindex == ifindex)
				row = &snap->workloads[j];
		if (!row) {
			row = &snap->workloads[snap->n_workloads++];
			row->ifindex = ifindex;
		}
		sum = &row->stats;
		for (int c = 0; c < ncpu; c++) {
			const struct hc_wl_stats *s =
				(const void *)((char *)stats.vals + (i * ncpu + c) * stride);

			sum->rx_packets += s->rx_packets;
			sum->rx_bytes += s->rx_bytes;
			sum->tx_packets += s->tx_packets;
			sum->tx_bytes += s->tx_bytes;
			sum->dropped_packets += s->dropped_packets;
			sum->dropped_bytes += s->dropped_bytes;
		}
	}
	qsort(snap->workloads, snap->n_workloads, sizeof(*snap->workloads), workload_cmp);
out:
	map_dump_fini(&stats);
	map_dump_fini(&wls);
	return rc;
}

static int snapshot_drops(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 *vals;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	vals = calloc(ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (__u32 r = 0; r < HC_DROP_REASONS; r++) {
		if (bpf_map_lookup_elem(m->drops, &r, vals) < 0)
			continue;
		for (int c = 0; c < ncpu; c++)
			snap->drops[r] += vals[c];
	}
	free(vals);
	return 0;
}

static int count_entries(int fd, size_t ksize, size_t *n)
{
	char key[256], next[256];
	void *prev = NULL;

	*n = 0;
	if (ksize > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, ksize);
		prev = key;
		(*n)++;
	}
	return 0;
}

/* The settings, uplink and mode included; zeros when nothing was written
 * (an agent of an older layout wrote fewer bytes: the rest stay zero). */
static void snapshot_config(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	__u32 zero = 0;

	if (bpf_map_lookup_elem(m->config, &zero, &snap->config) < 0)
		memset(&snap->config, 0, sizeof(snap->config));
}

int hc_dpmaps_snapshot(struct hc_dpmaps *m, struct hc_dp_snapshot *snap)
{
	struct map_dump d;
	int rc;

	memset(snap, 0, sizeof(*snap));
	rc = map_dump_all(m->routes, sizeof(struct hc_route_key), sizeof(struct hc_route_val), &d);
	if (rc)
		goto fail;
	snap->routes = pair_up(&d, sizeof(struct hc_route_key), sizeof(struct hc_route_val));
	snap->n_routes = d.n;
	map_dump_fini(&d);
	if (!snap->routes) {
		rc = -ENOMEM;
		goto fail;
	}
	qsort(snap->routes, snap->n_routes, sizeof(*snap->routes), route_cmp);

	rc = map_dump_all(m->services, sizeof(struct hc_service_key), sizeof(struct hc_service_val),
			  &d);
	if (rc)
		goto fail;
	snap->services = pair_up(&d, sizeof(struct hc_service_key), sizeof(struct hc_service_val));
	snap->n_services = d.n;
	map_dump_fini(&d);
	if (!snap->services) {
		rc = -ENOMEM;
		goto fail;
	}
	qsort(snap->services, snap->n_services, sizeof(*snap->services), service_cmp);

	rc = snapshot_workloads(m, snap);
	if (!rc)
		rc = snapshot_drops(m, snap);
	if (!rc)
		rc = count_entries(m->conntrack, sizeof(struct hc_ct_key), &snap->conntrack_entries);
	if (rc)
		goto fail;
	snapshot_config(m, snap);
	return 0;
fail:
	hc_dp_snapshot_fini(snap);
	return rc;
}

void hc_dp_snapshot_fini(struct hc_dp_snapshot *snap)
{
	free(snap->routes);
	free(snap->services);
	free(snap->workloads);
	memset(snap, 0, sizeof(*snap));
}
