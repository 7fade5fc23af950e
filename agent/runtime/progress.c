/* What a spawn in flight is doing, for progress displays: the phase each
 * spawn of this runtime object is in with the time each phase took, and
 * containerd's downloads in progress (its content service's ingests),
 * which is all there is to see of a pull while CRI's PullImage runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HC_LOG_MODULE "runtime"
#include "content.pb-c.h"
#include "log/log.h"
#include "runtime_int.h"

/* The namespace CRI keeps its images in, where its pulls' ingests are. */
#define CRI_NAMESPACE "k8s.io"

/* Spawns that ended stay listed this long, and at most this many. */
#define DONE_KEEP_MS 60000
#define DONE_KEEP 16

struct spawn_track {
	struct hc_spawn_progress p;
	uint64_t phase_start_ms; /* when done: when it ended */
};

static const char *const phase_names[HC_SPAWN_PHASES] = {
	[HC_SPAWN_PULL] = "pull",
	[HC_SPAWN_SANDBOX] = "sandbox",
	[HC_SPAWN_CONTAINER] = "container",
	[HC_SPAWN_START] = "start",
};

const char *hc_spawn_phase_name(enum hc_spawn_phase p)
{
	return (unsigned)p < HC_SPAWN_PHASES ? phase_names[p] : NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The spawn in flight with this id. Under rt->lock. */
static struct spawn_track *find(struct hc_runtime *rt, const char *id)
{
	for (size_t i = 0; i < rt->nspawns; i++)
		if (!rt->spawns[i].p.done && strcmp(rt->spawns[i].p.id, id) == 0)
			return &rt->spawns[i];
	return NULL;
}

/* Drops ended spawns past their time, and the oldest beyond DONE_KEEP.
 * Under rt->lock; the array stays in start order. */
static void prune(struct hc_runtime *rt, uint64_t now)
{
	size_t done = 0, keep = 0;

	for (size_t i = rt->nspawns; i-- > 0;) {
		struct spawn_track *t = &rt->spawns[i];

		if (t->p.done && (++done > DONE_KEEP || now - t->phase_start_ms >= DONE_KEEP_MS))
			t->p.id[0] = '\0'; /* marked for removal */
	}
	for (size_t i = 0; i < rt->nspawns; i++)
		if (rt->spawns[i].p.id[0])
			rt->spawns[keep++] = rt->spawns[i];
	rt->nspawns = keep;
	if (keep == 0) {
		free(rt->spawns);
		rt->spawns = NULL;
	}
}

void hc_runtime_track_begin(struct hc_runtime *rt, const char *id)
{
	struct spawn_track *more;

	pthread_mutex_lock(&rt->lock);
	prune(rt, now_ms());
	more = realloc(rt->spawns, (rt->nspawns + 1) * sizeof(*more));
	if (more) {
		rt->spawns = more;
		memset(&more[rt->nspawns], 0, sizeof(*more));
		snprintf(more[rt->nspawns].p.id, sizeof(more->p.id), "%s", id);
		more[rt->nspawns].phase_start_ms = now_ms();
		rt->nspawns++;
	}
	pthread_mutex_unlock(&rt->lock);
}

void hc_runtime_track_phase(struct hc_runtime *rt, const char *id, enum hc_spawn_phase phase)
{
	struct spawn_track *t;
	uint64_t now = now_ms();

	pthread_mutex_lock(&rt->lock);
	t = find(rt, id);
	if (t && phase > t->p.phase && phase < HC_SPAWN_PHASES) {
		t->p.phase_ms[t->p.phase] = now - t->phase_start_ms;
		t->p.phase = phase;
		t->phase_start_ms = now;
	}
	pthread_mutex_unlock(&rt->lock);
}

void hc_runtime_track_pulling(struct hc_runtime *rt, const char *id)
{
	struct spawn_track *t;

	pthread_mutex_lock(&rt->lock);
	t = find(rt, id);
	if (t)
		t->p.pulled = true;
	pthread_mutex_unlock(&rt->lock);
}

void hc_runtime_track_end(struct hc_runtime *rt, const char *id)
{
	struct spawn_track *t;
	uint64_t now = now_ms();

	pthread_mutex_lock(&rt->lock);
	t = find(rt, id);
	if (t) {
		t->p.phase_ms[t->p.phase] = now - t->phase_start_ms;
		t->p.done = true;
		t->phase_start_ms = now;
	}
	prune(rt, now);
	pthread_mutex_unlock(&rt->lock);
}

void hc_runtime_track_fini(struct hc_runtime *rt)
{
	free(rt->spawns);
	rt->spawns = NULL;
	rt->nspawns = 0;
}

/* A copy of the spawns in flight (id: that one only), with the current
 * phase's time so far. 0 or -ENOMEM. */
static int copy_spawns(struct hc_runtime *rt, const char *id, struct hc_runtime_progress *out)
{
	uint64_t now = now_ms();
	int r = 0;

	pthread_mutex_lock(&rt->lock);
	if (rt->nspawns) {
		out->spawns = calloc(rt->nspawns, sizeof(*out->spawns));
		if (!out->spawns)
			r = -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < rt->nspawns; i++) {
		struct spawn_track *t = &rt->spawns[i];

		if (id && strcmp(t->p.id, id) != 0)
			continue;
		out->spawns[out->nspawns] = t->p;
		if (!t->p.done)
			out->spawns[out->nspawns].phase_ms[t->p.phase] = now - t->phase_start_ms;
		out->nspawns++;
	}
	pthread_mutex_unlock(&rt->lock);
	return r;
}

/* containerd's ingests in progress. 0, -ENOMEM, or -errno when the
 * content service did not answer. */
static int list_ingests(struct hc_runtime *rt, int timeout_ms, struct hc_runtime_progress *out)
{
	static const struct hc_rpc_metadata ns = { "containerd-namespace", CRI_NAMESPACE };
	Containerd__Services__Content__V1__ListStatusesRequest req =
		CONTAINERD__SERVICES__CONTENT__V1__LIST_STATUSES_REQUEST__INIT;
	Containerd__Services__Content__V1__ListStatusesResponse *resp = NULL;
	struct hc_err err;
	int r;

	r = hc_containerd_call(rt, "/containerd.services.content.v1.Content/ListStatuses", &ns, 1,
			       &req.base,
			       &containerd__services__content__v1__list_statuses_response__descriptor,
			       (ProtobufCMessage **)&resp, timeout_ms, "content statuses", &err);
	if (r < 0)
		return r;
	if (resp->n_statuses) {
		out->ingests = calloc(resp->n_statuses, sizeof(*out->ingests));
		if (!out->ingests) {
			protobuf_c_message_free_unpacked(&resp->base, NULL);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < resp->n_statuses; i++) {
		const Containerd__Services__Content__V1__Status *s = resp->statuses[i];
		struct hc_pull_ingest *g = &out->ingests[out->ningests++];

		snprintf(g->ref, sizeof(g->ref), "%s", s->ref ? s->ref : "");
		g->offset = s->offset > 0 ? s->offset : 0;
		g->total = s->total > 0 ? s->total : 0;
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

int hc_runtime_progress(struct hc_runtime *rt, const char *id, int timeout_ms,
			struct hc_runtime_progress *out)
{
	int r;

	memset(out, 0, sizeof(*out));
	r = copy_spawns(rt, id, out);
	if (r == 0 && timeout_ms > 0) {
		r = list_ingests(rt, timeout_ms, out);
		out->ingests_known = r == 0;
		if (r != -ENOMEM)
			r = 0;
	}
	if (r < 0)
		hc_runtime_progress_fini(out);
	return r;
}

void hc_runtime_progress_fini(struct hc_runtime_progress *p)
{
	free(p->spawns);
	free(p->ingests);
	memset(p, 0, sizeof(*p));
}
