/* A fake runtime for the cluster's unit tests; see fakert.h. */
#include "fakert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/list.h"
#include "loop/loop.h"

#define MAX_IDS 256 /* ids whose spawn calls are counted */

struct fake_wl {
	struct hc_workload w;
	struct hc_cluster_usage usage; /* grows at each usage call */
};

struct fake_job {
	struct hc_fakert *fr;
	void (*done)(void *arg);
	void *arg;
	uint64_t timer;
	struct hc_loop_task task;
	struct hc_list link; /* fr->jobs */
};

struct hc_fakert {
	struct hc_loop *loop;
	char ip_prefix[32];
	unsigned next_ip;
	struct fake_wl *wls;
	size_t n, cap; /* cap doubles: clusters of 10,000 workloads are added one by one */
	unsigned fail_spawns, fail_stops;
	int fail_err, fail_stop_err;
	uint32_t latency[HC_FAKERT_NCALLS];
	uint32_t job_latency; /* of the calls the running job made */
	unsigned calls[HC_FAKERT_NCALLS];
	char spawned_ids[MAX_IDS][HC_WORKLOAD_ID_LEN + 1];
	unsigned spawned_count[MAX_IDS];
	size_t nspawned_ids;
	struct hc_list jobs;
	size_t npending;
	unsigned usage_calls;
};

struct hc_fakert *hc_fakert_new(struct hc_loop *loop, const char *ip_prefix)
{
	struct hc_fakert *fr = calloc(1, sizeof(*fr));

	if (!fr)
		return NULL;
	fr->loop = loop;
	snprintf(fr->ip_prefix, sizeof(fr->ip_prefix), "%s", ip_prefix);
	fr->next_ip = 2;
	hc_list_init(&fr->jobs);
	return fr;
}

static void job_unlink(struct fake_job *fj)
{
	if (fj->timer)
		hc_loop_del_timer(fj->fr->loop, fj->timer);
	hc_list_remove(&fj->link);
	fj->fr->npending--;
}

void hc_fakert_free(struct hc_fakert *fr)
{
	if (!fr)
		return;
	while (!hc_list_empty(&fr->jobs)) {
		struct fake_job *fj = hc_list_first(&fr->jobs, struct fake_job, link);

		job_unlink(fj);
		free(fj);
	}
	for (size_t i = 0; i < fr->n; i++)
		hc_workload_fini(&fr->wls[i].w);
	free(fr->wls);
	free(fr);
}

/* ---- copies of workloads ---- */

static char *dup_or_null(const char *s, bool *oom)
{
	char *d = s ? strdup(s) : NULL;

	*oom |= s && !d;
	return d;
}

static int spec_copy(struct hc_workload_spec *to, const struct hc_workload_spec *from)
{
	bool oom = false;

	memset(to, 0, sizeof(*to));
	to->cores = from->cores;
	to->memory_mb = from->memory_mb;
	to->image_ref = dup_or_null(from->image_ref, &oom);
	to->runtime_handler = dup_or_null(from->runtime_handler, &oom);
	to->env = calloc(from->nenv + 1, sizeof(*to->env));
	to->ports = calloc(from->nports + 1, sizeof(*to->ports));
	to->labels = calloc(from->nlabels + 1, sizeof(*to->labels));
	if (oom || !to->env || !to->ports || !to->labels)
		goto oom;
	for (; to->nenv < from->nenv; to->nenv++)
		if (!(to->env[to->nenv] = strdup(from->env[to->nenv])))
			goto oom;
	if (from->nports)
		memcpy(to->ports, from->ports, from->nports * sizeof(*to->ports));
	to->nports = from->nports;
	for (; to->nlabels < from->nlabels; to->nlabels++) {
		struct hc_label *l = &to->labels[to->nlabels];

		l->key = dup_or_null(from->labels[to->nlabels].key, &oom);
		l->value = dup_or_null(from->labels[to->nlabels].value, &oom);
		if (oom) {
			to->nlabels++;
			goto oom;
		}
	}
	return 0;
oom:
	hc_workload_spec_fini(to);
	return -ENOMEM;
}

static int workload_copy(struct hc_workload *to, const struct hc_workload *from)
{
	*to = *from;
	to->spec_json = NULL;
	return spec_copy(&to->spec, &from->spec);
}

static struct fake_wl *find(const struct hc_fakert *fr, const char *id)
{
	for (size_t i = 0; i < fr->n; i++)
		if (strcmp(fr->wls[i].w.id, id) == 0)
			return &fr->wls[i];
	return NULL;
}

/* ---- the calls ---- */

static void called(struct hc_fakert *fr, enum hc_fakert_call call)
{
	fr->calls[call]++;
	fr->job_latency += fr->latency[call];
}

static void count_spawn(struct hc_fakert *fr, const char *id)
{
	for (size_t i = 0; i < fr->nspawned_ids; i++)
		if (strcmp(fr->spawned_ids[i], id) == 0) {
			fr->spawned_count[i]++;
			return;
		}
	if (fr->nspawned_ids == MAX_IDS)
		return;
	snprintf(fr->spawned_ids[fr->nspawned_ids], sizeof(fr->spawned_ids[0]), "%s", id);
	fr->spawned_count[fr->nspawned_ids++] = 1;
}

int hc_fakert_add(struct hc_fakert *fr, const char *id, const struct hc_workload_spec *spec)
{
	struct fake_wl *grown;
	struct hc_workload *w;
	struct timespec now;

	if (find(fr, id))
		return -EEXIST;
	if (fr->n == fr->cap) {
		size_t cap = fr->cap ? 2 * fr->cap : 16;

		grown = realloc(fr->wls, cap * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		fr->wls = grown;
		fr->cap = cap;
	}
	w = &fr->wls[fr->n].w;
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", id);
	w->state = HC_WORKLOAD_RUNNING;
	snprintf(w->ip, sizeof(w->ip), "%s%u", fr->ip_prefix, fr->next_ip++);
	clock_gettime(CLOCK_REALTIME, &now); /* proofs measure uptime on the wall clock */
	w->started_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	snprintf(w->runtime_handler, sizeof(w->runtime_handler), "runc");
	memset(&fr->wls[fr->n].usage, 0, sizeof(fr->wls[fr->n].usage));
	if (spec_copy(&w->spec, spec) < 0)
		return -ENOMEM;
	fr->n++;
	return 0;
}

static int fake_spawn(void *ctx, const struct hc_workload_spec *spec, const char *id,
		      struct hc_workload *out, struct hc_err *err)
{
	struct hc_fakert *fr = ctx;
	int r;

	called(fr, HC_FAKERT_SPAWN);
	count_spawn(fr, id);
	if (fr->fail_spawns) {
		fr->fail_spawns--;
		snprintf(err->msg, sizeof(err->msg), "fake runtime: spawn failed as told");
		return -fr->fail_err;
	}
	r = hc_fakert_add(fr, id, spec);
	if (r == 0)
		r = workload_copy(out, &fr->wls[fr->n - 1].w);
	if (r < 0)
		snprintf(err->msg, sizeof(err->msg), "fake runtime: %s", strerror(-r));
	return r;
}

static int fake_stop(void *ctx, const char *id, int grace_s, struct hc_err *err)
{
	struct hc_fakert *fr = ctx;
	struct fake_wl *f = find(fr, id);
	size_t i;

	(void)grace_s;
	called(fr, HC_FAKERT_STOP);
	if (!f) {
		snprintf(err->msg, sizeof(err->msg), "no workload %s", id);
		return -ENOENT;
	}
	if (fr->fail_stops) {
		fr->fail_stops--;
		f->w.state = HC_WORKLOAD_EXITED;
		f->w.exit_code = 137;
		snprintf(err->msg, sizeof(err->msg), "fake runtime: stop failed half way as told");
		return -fr->fail_stop_err;
	}
	i = (size_t)(f - fr->wls);
	hc_workload_fini(&f->w);
	memmove(f, f + 1, (fr->n - i - 1) * sizeof(*f));
	fr->n--;
	return 0;
}

static int fake_list(void *ctx, struct hc_workload **list, size_t *n, struct hc_err *err)
{
	struct hc_fakert *fr = ctx;
	struct hc_workload *l = calloc(fr->n + 1, sizeof(*l));

	called(fr, HC_FAKERT_LIST);
	*n = 0;
	for (size_t i = 0; l && i < fr->n; i++, (*n)++)
		if (workload_copy(&l[i], &fr->wls[i].w) < 0)
			break;
	if (!l || *n < fr->n) {
		hc_workload_list_free(l, *n);
		snprintf(err->msg, sizeof(err->msg), "out of memory");
		return -ENOMEM;
	}
	*list = l;
	return 0;
}

/* Three lines, numbered 0..2, read as the runtime's numbered reads do. */
static int fake_logs(void *ctx, const char *id, uint32_t tail, uint64_t from_line,
		     uint64_t window, hc_runtime_log_fn *fn, void *arg, uint64_t *next_line,
		     struct hc_err *err)
{
	struct hc_fakert *fr = ctx;
	char text[128];
	struct hc_log_line line = { .stream = HC_LOG_STDOUT, .timestamp = "", .text = text };
	uint64_t first = from_line;
	int r = 0;

	(void)window;
	called(fr, HC_FAKERT_LOGS);
	if (!find(fr, id)) {
		snprintf(err->msg, sizeof(err->msg), "no workload %s", id);
		return -ENOENT;
	}
	*next_line = 3;
	if (tail && tail < 3 && 3 - tail > first)
		first = 3 - tail;
	for (uint64_t i = first; i < 3 && r == 0; i++) {
		line.len = (size_t)snprintf(text, sizeof(text), "line %d of %s", (int)i, id);
		r = fn(arg, &line);
	}
	return r < 0 ? r : 0;
}

static int fake_capacity(void *ctx, struct hc_runtime_capacity *out, struct hc_err *err)
{
	struct hc_fakert *fr = ctx;

	(void)err;
	called(fr, HC_FAKERT_CAPACITY);
	memset(out, 0, sizeof(*out));
	out->cpus_total = 64;
	out->mem_total_mb = 65536;
	for (size_t i = 0; i < fr->n; i++) {
		out->cpus_used += fr->wls[i].w.spec.cores;
		out->mem_used_mb += fr->wls[i].w.spec.memory_mb;
		out->workloads++;
	}
	return 0;
}

/* ---- jobs: on the loop thread, ended after their calls' latency ---- */

static void job_end(void *arg)
{
	struct fake_job *fj = arg;
	void (*done)(void *) = fj->done;
	void *darg = fj->arg;

	fj->timer = 0;
	job_unlink(fj);
	free(fj);
	done(darg);
}

static int64_t job_due(struct hc_loop *loop, uint64_t id, void *arg)
{
	(void)loop;
	(void)id;
	((struct fake_job *)arg)->timer = 0;
	job_end(arg);
	return HC_LOOP_TIMER_DONE;
}

static int fake_run_job(void *ctx, void (*run)(void *arg), void (*done)(void *arg), void *arg)
{
	struct hc_fakert *fr = ctx;
	struct fake_job *fj = calloc(1, sizeof(*fj));

	if (!fj)
		return -ENOMEM;
	fj->fr = fr;
	fj->done = done;
	fj->arg = arg;
	fr->job_latency = 0;
	run(arg);
	fj->timer = hc_loop_add_timer(fr->loop, fr->job_latency, job_due, fj);
	if (!fj->timer) {
		free(fj);
		return -ENOMEM; /* the calls ran: a fake's own failure, not the cluster's */
	}
	hc_list_insert(&fr->jobs, &fj->link);
	fr->npending++;
	return 0;
}

/* Every call: 1 ms more CPU, 100 bytes more in, 200 out, 1 MiB in use. */
static int fake_usage(void *ctx, const char *id, struct hc_cluster_usage *out,
		      struct hc_err *err)
{
	struct hc_fakert *fr = ctx;
	struct fake_wl *f = find(fr, id);

	fr->usage_calls++;
	if (!f) {
		snprintf(err->msg, sizeof(err->msg), "no workload %s", id);
		return -ENOENT;
	}
	f->usage.cpu_ns += 1000000;
	f->usage.rx_bytes += 100;
	f->usage.tx_bytes += 200;
	f->usage.memory_bytes = 1 << 20;
	*out = f->usage;
	return 0;
}

int hc_fakert_set_usage(struct hc_fakert *fr, const char *id, const struct hc_cluster_usage *u)
{
	struct fake_wl *f = find(fr, id);

	if (!f)
		return -ENOENT;
	f->usage = *u;
	return 0;
}

unsigned hc_fakert_usage_calls(const struct hc_fakert *fr)
{
	return fr->usage_calls;
}

const struct hc_cluster_runtime_ops hc_fakert_ops = {
	.spawn = fake_spawn,
	.stop = fake_stop,
	.list = fake_list,
	.logs = fake_logs,
	.capacity = fake_capacity,
	.run_job = fake_run_job,
	.usage = fake_usage,
};

void hc_fakert_flush(struct hc_fakert *fr)
{
	struct fake_job *fj;

	hc_list_for_each(fj, &fr->jobs, link) {
		if (!fj->timer)
			continue; /* posted already */
		hc_loop_del_timer(fr->loop, fj->timer);
		fj->timer = 0;
		fj->task.fn = job_end;
		fj->task.arg = fj;
		hc_loop_post_task(fr->loop, &fj->task);
	}
}

/* ---- telling and asking ---- */

void hc_fakert_fail_spawns(struct hc_fakert *fr, unsigned n, int err)
{
	fr->fail_spawns = n;
	fr->fail_err = err;
}

void hc_fakert_fail_stops(struct hc_fakert *fr, unsigned n, int err)
{
	fr->fail_stops = n;
	fr->fail_stop_err = err;
}

void hc_fakert_set_latency(struct hc_fakert *fr, enum hc_fakert_call call, uint32_t ms)
{
	fr->latency[call] = ms;
}

int hc_fakert_exit(struct hc_fakert *fr, const char *id, int code, struct hc_runtime_exit *ev)
{
	struct fake_wl *f = find(fr, id);

	if (!f)
		return -ENOENT;
	f->w.state = HC_WORKLOAD_EXITED;
	f->w.exit_code = code;
	memset(ev, 0, sizeof(*ev));
	snprintf(ev->id, sizeof(ev->id), "%s", id);
	ev->exit_code = code;
	snprintf(ev->reason, sizeof(ev->reason), "%s", code ? "Error" : "Completed");
	return 0;
}

bool hc_fakert_has(const struct hc_fakert *fr, const char *id)
{
	return find(fr, id) != NULL;
}

size_t hc_fakert_count(const struct hc_fakert *fr)
{
	return fr->n;
}

unsigned hc_fakert_calls(const struct hc_fakert *fr, enum hc_fakert_call call)
{
	return fr->calls[call];
}

unsigned hc_fakert_spawns_of(const struct hc_fakert *fr, const char *id)
{
	for (size_t i = 0; i < fr->nspawned_ids; i++)
		if (strcmp(fr->spawned_ids[i], id) == 0)
			return fr->spawned_count[i];
	return 0;
}

size_t hc_fakert_pending(const struct hc_fakert *fr)
{
	return fr->npending;
}
