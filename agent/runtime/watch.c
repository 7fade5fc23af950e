/*
 * The agent's view of its workloads: a thread lists them through CRI every
 * interval (the calls block, the loop must not), reports exits to the loop
 * thread, removes half-created sandboxes and keeps figures for /metrics.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "base/base.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "runtime_int.h"

#define ORPHAN_MIN_AGE_S 120 /* far longer than any spawn takes */
#define LEASE_MIN_AGE_S 120  /* the same: a lease that young may be a spawn's */
#define LEASE_SWEEP_MS 30000 /* leases of vanished sandboxes are collected this often */
#define LOG_FAST_CHECK_MS 5 /* log checks while a log grows fast */
#define LOG_ROTATE_MS 10     /* about what a rotation takes (rename, CRI reopen) */
#define LOG_FAST_HOLD_MS 2000

struct exit_node {
	struct exit_node *next;
	struct hc_runtime_exit ev;
};

/* What the last look found, for the metrics collector. */
struct snapshot {
	int valid;
	size_t by_state[4];
	struct hc_runtime_capacity cap;
};

/* A running workload's log, checked for size between looks. */
struct watched_log {
	char path[4096];
	char container_id[65];
	off_t last_size;  /* at the previous check */
	int64_t last_ms;  /* when that was (monotonic) */
	int64_t fast_until_ms; /* checked often until then: it grew fast lately */
	int wd;		       /* its inotify watch, or -1 */
};

struct hc_runtime_watch {
	struct hc_loop *loop;
	struct hc_runtime *rt;
	unsigned interval_ms;
	hc_runtime_exit_fn *fn;
	void *arg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	int stopping;
	int refresh; /* under lock: look again now, not at the end of the period */
	/* under lock: exits waiting for the loop thread, and the snapshot */
	struct exit_node *pending;
	int drain_posted;
	struct snapshot snap;
	/* under lock: the running set, and whether the loop has seen it */
	hc_runtime_running_fn *running_fn;
	void *running_arg;
	struct hc_runtime_running *running;
	size_t nrunning;
	int running_dirty, running_posted;
	/* thread-only: ids already reported, with their finish times */
	struct hc_runtime_exit *reported;
	size_t nreported;
	int failing; /* thread-only: the last look could not list (and said so) */
	/* The log thread's: the running workloads' logs it checks. */
	pthread_t log_thread;
	bool log_thread_live;
	int log_ifd; /* inotify: a log was written to; -1 without (then timers only) */
	struct watched_log *logs;
	size_t nlogs;
	/* under lock: the newest list from a look, for the log thread to take */
	struct watched_log *logs_new;
	size_t nlogs_new;
	bool logs_changed;
	/* under lock: for the metrics */
	uint64_t rotations, rotation_errors;

	/* CNI leases (cni.c): NULL lease_dir when the containerd is not ours */
	char *lease_dir;
	uint32_t addresses;    /* the subnet's, 0: unknown */
	int64_t next_sweep_ms; /* thread-only: monotonic; 0: at the first look */
	long leases;	       /* under lock: at the last look; -1 unknown */
	uint64_t leases_collected;
};

static int was_reported(const struct hc_runtime_watch *w, const struct hc_workload *wl)
{
	for (size_t i = 0; i < w->nreported; i++)
		if (strcmp(w->reported[i].id, wl->id) == 0 &&
		    w->reported[i].finished_ns == wl->finished_ns)
			return 1;
	return 0;
}

/* On the loop thread: hands every pending exit to the callback. */
static void drain(void *arg)
{
	struct hc_runtime_watch *w = arg;
	struct exit_node *list, *next, *rev = NULL;

	pthread_mutex_lock(&w->lock);
	list = w->pending;
	w->pending = NULL;
	w->drain_posted = 0;
	pthread_mutex_unlock(&w->lock);
	for (; list; list = next) { /* pending is newest first */
		next = list->next;
		list->next = rev;
		rev = list;
	}
	for (; rev; rev = next) {
		next = rev->next;
		w->fn(w->arg, &rev->ev);
		free(rev);
	}
}

static void queue_exit(struct hc_runtime_watch *w, const struct hc_workload *wl)
{
	struct exit_node *n = calloc(1, sizeof(*n));

	if (!n) {
		hc_log(HC_LOG_ERROR, "out of memory reporting the exit of %s", wl->id);
		return;
	}
	memcpy(n->ev.id, wl->id, sizeof(n->ev.id));
	n->ev.exit_code = wl->exit_code;
	memcpy(n->ev.reason, wl->reason, sizeof(n->ev.reason));
	n->ev.finished_ns = wl->finished_ns;
	pthread_mutex_lock(&w->lock);
	n->next = w->pending;
	w->pending = n;
	/* the task is loop-owned, so a loop freed before it ran frees it; it
	 * runs only while the loop runs, and the watch outlives that */
	if (!w->drain_posted && hc_loop_post(w->loop, drain, w) == 0)
		w->drain_posted = 1;
	pthread_mutex_unlock(&w->lock);
}

/* On the loop thread: hands the newest running set to the callback. */
static void deliver_running(void *arg)
{
	struct hc_runtime_watch *w = arg;
	struct hc_runtime_running *copy = NULL;
	hc_runtime_running_fn *fn;
	size_t n;

	pthread_mutex_lock(&w->lock);
	w->running_posted = 0;
	fn = w->running_fn;
	n = w->nrunning;
	if (fn && w->running_dirty && n)
		copy = malloc(n * sizeof(*copy));
	if (copy)
		memcpy(copy, w->running, n * sizeof(*copy));
	if (fn && w->running_dirty && (copy || n == 0))
		w->running_dirty = 0;
	else
		fn = NULL;
	pthread_mutex_unlock(&w->lock);
	if (fn)
		fn(w->running_arg, copy, n);
	free(copy);
}

static int running_cmp(const void *a, const void *b)
{
	return strcmp(((const struct hc_runtime_running *)a)->id,
		      ((const struct hc_runtime_running *)b)->id);
}

/* Publishes the running workloads when they differ from the last set. */
static void publish_running(struct hc_runtime_watch *w, const struct hc_workload *list, size_t n)
{
	struct hc_runtime_running *now = calloc(n ? n : 1, sizeof(*now));
	size_t k = 0;

	if (!now)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct hc_workload *wl = &list[i];

		if (wl->state != HC_WORKLOAD_RUNNING || !wl->ip[0])
			continue;
		memcpy(now[k].id, wl->id, sizeof(now[k].id));
		memcpy(now[k].ip, wl->ip, sizeof(now[k].ip));
		now[k].nports = wl->spec.nports < HC_RUNTIME_MAX_PORTS ? wl->spec.nports
									 : HC_RUNTIME_MAX_PORTS;
		if (now[k].nports)
			memcpy(now[k].ports, wl->spec.ports,
			       now[k].nports * sizeof(now[k].ports[0]));
		now[k].egress_bytes_per_sec = hc_workload_spec_egress_bytes(&wl->spec);
		k++;
	}
	qsort(now, k, sizeof(*now), running_cmp);
	pthread_mutex_lock(&w->lock);
	if (w->running && w->nrunning == k && memcmp(w->running, now, k * sizeof(*now)) == 0) {
		pthread_mutex_unlock(&w->lock);
		free(now);
		return;
	}
	free(w->running);
	w->running = now;
	w->nrunning = k;
	w->running_dirty = 1;
	if (w->running_fn && !w->running_posted && hc_loop_post(w->loop, deliver_running, w) == 0)
		w->running_posted = 1;
	pthread_mutex_unlock(&w->lock);
}

void hc_runtime_watch_on_running(struct hc_runtime_watch *w, hc_runtime_running_fn *fn, void *arg)
{
	pthread_mutex_lock(&w->lock);
	w->running_fn = fn;
	w->running_arg = arg;
	w->running_dirty = 1;
	if (w->running && !w->running_posted && hc_loop_post(w->loop, deliver_running, w) == 0)
		w->running_posted = 1;
	pthread_mutex_unlock(&w->lock);
}

/* Remembers the exits now visible (forgetting removed workloads). */
static void remember(struct hc_runtime_watch *w, const struct hc_workload *list, size_t n)
{
	struct hc_runtime_exit *now = n ? calloc(n, sizeof(*now)) : NULL;
	size_t k = 0;

	if (n && !now)
		return; /* keep the old set: at worst an exit is reported twice */
	for (size_t i = 0; i < n; i++) {
		if (list[i].state != HC_WORKLOAD_EXITED)
			continue;
		memcpy(now[k].id, list[i].id, sizeof(now[k].id));
		now[k].finished_ns = list[i].finished_ns;
		k++;
	}
	free(w->reported);
	w->reported = now;
	w->nreported = k;
}

/* The figures /metrics shows, from the listing the rest of the look uses:
 * one listing per look, so that states and capacity agree and a second
 * CRI round trip can neither fail on its own nor delay them. */
static void take_snapshot(struct hc_runtime_watch *w, const struct hc_workload *list, size_t n)
{
	struct snapshot snap = { .valid = 1 };

	for (size_t i = 0; i < n; i++)
		snap.by_state[list[i].state]++;
	hc_runtime_capacity_of(w->rt, list, n, &snap.cap);
	pthread_mutex_lock(&w->lock);
	w->snap = snap;
	pthread_mutex_unlock(&w->lock);
}

/* No listing: no figures rather than stale ones, and the reason in the log
 * once per outage (every look would repeat it). */
static void look_failed(struct hc_runtime_watch *w, const char *why)
{
	pthread_mutex_lock(&w->lock);
	w->snap.valid = 0;
	pthread_mutex_unlock(&w->lock);
	hc_log(w->failing ? HC_LOG_DEBUG : HC_LOG_WARN, "cannot list workloads: %s", why);
	w->failing = 1;
}

/* Hands the running workloads' logs to the log thread. */
static void publish_logs(struct hc_runtime_watch *w, const struct hc_workload *list, size_t n)
{
	struct watched_log *now = calloc(n ? n : 1, sizeof(*now));
	size_t k = 0;

	if (!now)
		return; /* the old set stays: a removed file is only a failed stat */
	for (size_t i = 0; i < n; i++) {
		if (list[i].state != HC_WORKLOAD_RUNNING || !list[i].log_path[0] ||
		    !list[i].container_id[0])
			continue;
		memcpy(now[k].path, list[i].log_path, sizeof(now[k].path));
		memcpy(now[k].container_id, list[i].container_id, sizeof(now[k].container_id));
		k++;
	}
	pthread_mutex_lock(&w->lock);
	free(w->logs_new);
	w->logs_new = now;
	w->nlogs_new = k;
	w->logs_changed = true;
	pthread_mutex_unlock(&w->lock);
}

/* Log thread: takes the newest list, keeping the sizes it knew. Under lock. */
static void take_logs(struct hc_runtime_watch *w)
{
	struct watched_log *now = w->logs_new;

	if (!w->logs_changed)
		return;
	for (size_t i = 0; i < w->nlogs_new; i++) {
		now[i].wd = -1;
		for (size_t j = 0; j < w->nlogs; j++)
			if (strcmp(w->logs[j].path, now[i].path) == 0) {
				now[i] = w->logs[j];
				w->logs[j].wd = -1; /* kept */
			}
	}
	for (size_t j = 0; j < w->nlogs; j++)
		if (w->logs[j].wd >= 0 && w->log_ifd >= 0)
			inotify_rm_watch(w->log_ifd, w->logs[j].wd);
	free(w->logs);
	w->logs = now;
	w->nlogs = w->nlogs_new;
	w->logs_new = NULL;
	w->nlogs_new = 0;
	w->logs_changed = false;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A stat per running workload. A log is rotated once it would reach the
 * cap before the next check and the rotation are done, at the pace it grew
 * since the last check (never below half the cap): a fast writer's files
 * stay under the cap rather than a period's output past it. Returns whether
 * a log grew fast lately (an eighth of the cap per HC_RUNTIME_LOG_CHECK_MS,
 * within LOG_FAST_HOLD_MS): then the next check comes after LOG_FAST_CHECK_MS.
 */
static bool check_logs(struct hc_runtime_watch *w)
{
	uint64_t max = w->rt->log_max_size;
	int64_t now = mono_ms();
	bool fast = false;

	for (size_t i = 0; i < w->nlogs; i++) {
		struct watched_log *l = &w->logs[i];
		uint64_t grew, ahead;
		int64_t elapsed = l->last_ms && now > l->last_ms ? now - l->last_ms : 1;
		bool this_fast;
		struct hc_err err;
		struct stat st;
		int r;

		if (l->wd < 0 && w->log_ifd >= 0)
			l->wd = inotify_add_watch(w->log_ifd, l->path, IN_MODIFY);
		if (stat(l->path, &st) < 0)
			continue;
		grew = st.st_size > l->last_size ? (uint64_t)(st.st_size - l->last_size) : 0;
		l->last_size = st.st_size;
		l->last_ms = now;
		/* writes come in bursts: a pause of a few ms is no slowdown */
		if (grew * HC_RUNTIME_LOG_CHECK_MS / (uint64_t)elapsed >= max / 8)
			l->fast_until_ms = now + LOG_FAST_HOLD_MS;
		this_fast = now < l->fast_until_ms;
		fast |= this_fast;
		ahead = grew * ((this_fast ? LOG_FAST_CHECK_MS : HC_RUNTIME_LOG_CHECK_MS) +
				LOG_ROTATE_MS) / (uint64_t)elapsed;
		/* a fast writer's pace is noisy: its files go at 3/4 of the cap */
		if (this_fast && ahead < max / 4)
			ahead = max / 4;
		if ((uint64_t)st.st_size + ahead < max || (uint64_t)st.st_size < max / 2)
			continue;
		r = hc_runtime_log_rotate(w->rt, l->path, l->container_id, max / 2, &err);
		pthread_mutex_lock(&w->lock);
		w->rotations += r > 0;
		w->rotation_errors += r < 0;
		pthread_mutex_unlock(&w->lock);
		if (r < 0)
			hc_log(HC_LOG_WARN, "cannot rotate %s: %s", l->path, err.msg);
		else if (r > 0) {
			l->last_size = 0;
			/* the watch went with the renamed file: the new one's next */
			if (l->wd >= 0)
				inotify_rm_watch(w->log_ifd, l->wd);
			l->wd = -1;
		}
	}
	return fast;
}

/* Collects the leases whose sandbox is gone at the first look and every
 * LEASE_SWEEP_MS, and counts them at every look for the free addresses. */
static void look_leases(struct hc_runtime_watch *w)
{
	struct hc_runtime_leases got = { 0 };
	struct hc_err err;
	int64_t now = mono_ms();
	long n;

	if (!w->lease_dir)
		return;
	if (now >= w->next_sweep_ms) {
		if (hc_runtime_collect_leases(w->rt, w->lease_dir, LEASE_MIN_AGE_S, &got, &err) < 0)
			hc_log(HC_LOG_WARN, "CNI lease collection: %s", err.msg);
		else if (got.collected)
			hc_log(HC_LOG_INFO, "collected %zu CNI leases of vanished sandboxes",
			       got.collected);
		w->next_sweep_ms = now + LEASE_SWEEP_MS;
	}
	n = hc_runtime_leases_count(w->lease_dir);
	pthread_mutex_lock(&w->lock);
	w->leases = n;
	w->leases_collected += got.collected;
	pthread_mutex_unlock(&w->lock);
}

static void look(struct hc_runtime_watch *w)
{
	struct hc_err err;
	struct hc_workload *list;
	size_t n;
	int r;

	if (hc_runtime_list(w->rt, &list, &n, &err) < 0) {
		look_failed(w, err.msg);
		return;
	}
	if (w->failing)
		hc_log(HC_LOG_INFO, "workloads listed again");
	w->failing = 0;
	take_snapshot(w, list, n);
	for (size_t i = 0; i < n; i++)
		if (list[i].state == HC_WORKLOAD_EXITED && !was_reported(w, &list[i]))
			queue_exit(w, &list[i]);
	remember(w, list, n);
	publish_running(w, list, n);
	publish_logs(w, list, n);
	hc_workload_list_free(list, n);
	r = hc_runtime_collect_orphans(w->rt, ORPHAN_MIN_AGE_S, &err);
	if (r < 0)
		hc_log(HC_LOG_DEBUG, "orphan collection: %s", err.msg);
	look_leases(w);
}

static void *watch_main(void *arg)
{
	struct hc_runtime_watch *w = arg;
	struct timespec until;

	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		w->refresh = 0; /* this look answers every refresh asked so far */
		pthread_mutex_unlock(&w->lock);
		look(w);
		pthread_mutex_lock(&w->lock);
		hc_deadline_in(&until, w->interval_ms); /* the cond waits on CLOCK_MONOTONIC */
		while (!w->stopping && !w->refresh &&
		       pthread_cond_timedwait(&w->wake, &w->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Waits up to ms for a log to be written to (or the time to pass without
 * inotify), draining the events: they only say "look". */
static void wait_for_writes(struct hc_runtime_watch *w, int ms)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd pfd = { .fd = w->log_ifd, .events = POLLIN };

	if (poll(&pfd, w->log_ifd >= 0 ? 1 : 0, ms) > 0)
		while (read(w->log_ifd, buf, sizeof(buf)) > 0)
			;
}

/*
 * The log thread: a look's CRI listing may take a while, the logs' sizes
 * are checked meanwhile, when one was written to (inotify) but at most every
 * LOG_FAST_CHECK_MS, and every HC_RUNTIME_LOG_CHECK_MS anyway. A stop is
 * seen within HC_RUNTIME_LOG_CHECK_MS.
 */
static void *logs_main(void *arg)
{
	struct hc_runtime_watch *w = arg;
	bool fast = false;

	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		take_logs(w);
		pthread_mutex_unlock(&w->lock);
		fast = check_logs(w);
		if (fast || w->log_ifd < 0)
			wait_for_writes(w, fast ? LOG_FAST_CHECK_MS : HC_RUNTIME_LOG_CHECK_MS);
		else
			wait_for_writes(w, HC_RUNTIME_LOG_CHECK_MS);
		/* at most one check per LOG_FAST_CHECK_MS, however often it is written */
		if (!fast)
			usleep(LOG_FAST_CHECK_MS * 1000);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

void hc_runtime_watch_refresh(struct hc_runtime_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->refresh = 1;
	pthread_cond_broadcast(&w->wake); /* the log thread waits on it too */
	pthread_mutex_unlock(&w->lock);
}

struct hc_runtime_watch *hc_runtime_watch_start(struct hc_loop *loop,
						const struct hc_runtime_config *cfg,
						unsigned interval_ms, hc_runtime_exit_fn *fn,
						void *arg)
{
	struct hc_runtime_watch *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	int r;

	if (!w)
		return NULL;
	w->loop = loop;
	w->interval_ms = interval_ms ? interval_ms : 1000;
	w->fn = fn;
	w->arg = arg;
	w->rt = hc_runtime_new(cfg);
	w->leases = -1;
	if (cfg->lease_dir) {
		uint32_t net;
		unsigned prefix;

		w->lease_dir = strdup(cfg->lease_dir);
		if (hc_runtime_subnet_parse(cfg->subnet ? cfg->subnet : HC_WORKLOAD_SUBNET, &net,
					    &prefix) == 0)
			w->addresses = hc_runtime_subnet_addresses(prefix);
	}
	if (!w->rt || (cfg->lease_dir && !w->lease_dir)) {
		hc_runtime_free(w->rt);
		free(w->lease_dir);
		free(w);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->wake, &ca);
	pthread_condattr_destroy(&ca);
	w->log_ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->log_ifd < 0)
		hc_log(HC_LOG_WARN, "no inotify for the logs' sizes (%s): checked every %d ms",
		       strerror(errno), HC_RUNTIME_LOG_CHECK_MS);
	r = pthread_create(&w->log_thread, NULL, logs_main, w);
	w->log_thread_live = r == 0;
	if (r == 0)
		r = pthread_create(&w->thread, NULL, watch_main, w);
	if (r != 0) {
		if (w->log_thread_live) {
			pthread_mutex_lock(&w->lock);
			w->stopping = 1;
			pthread_cond_broadcast(&w->wake);
			pthread_mutex_unlock(&w->lock);
			pthread_join(w->log_thread, NULL);
		}
		if (w->log_ifd >= 0)
			close(w->log_ifd);
		pthread_cond_destroy(&w->wake);
		pthread_mutex_destroy(&w->lock);
		hc_runtime_free(w->rt);
		free(w->lease_dir);
		free(w);
		errno = r;
		return NULL;
	}
	return w;
}

static void collect(struct hc_metrics_writer *mw, void *arg)
{
	struct hc_runtime_watch *w = arg;
	uint64_t rotations, rotation_errors;
	struct snapshot s;
	static const char *const states[] = { "created", "running", "exited", "unknown" };
	uint64_t collected;
	long leases;

	pthread_mutex_lock(&w->lock);
	s = w->snap;
	rotations = w->rotations;
	rotation_errors = w->rotation_errors;
	leases = w->leases;
	collected = w->leases_collected;
	pthread_mutex_unlock(&w->lock);
	if (w->lease_dir) {
		hc_metrics_family(mw, "hypercore_cni_leases_collected_total", "counter",
				  "CNI address leases removed because their sandbox was gone.");
		hc_metrics_sample(mw, "hypercore_cni_leases_collected_total", NULL,
				  (double)collected);
	}
	if (w->lease_dir && w->addresses && leases >= 0) {
		hc_metrics_family(mw, "hypercore_workload_addresses_total", "gauge",
				  "Addresses of the workload subnet CNI can hand out.");
		hc_metrics_sample(mw, "hypercore_workload_addresses_total", NULL, w->addresses);
		hc_metrics_family(mw, "hypercore_workload_addresses_free", "gauge",
				  "Addresses of the workload subnet not leased to a sandbox.");
		hc_metrics_sample(mw, "hypercore_workload_addresses_free", NULL,
				  (unsigned long)leases >= w->addresses ? 0 : w->addresses - leases);
	}
	hc_metrics_family(mw, "hypercore_log_rotations_total", "counter",
			  "Workload log files rotated at their size cap (and rotations that failed).");
	hc_metrics_sample(mw, "hypercore_log_rotations_total",
			  (const char *const[]){ "result", "ok", NULL }, (double)rotations);
	hc_metrics_sample(mw, "hypercore_log_rotations_total",
			  (const char *const[]){ "result", "error", NULL }, (double)rotation_errors);
	if (!s.valid)
		return; /* containerd not answering: no figures rather than zeros */
	hc_metrics_family(mw, "hypercore_runtime_workloads", "gauge",
			  "Workloads on this node by state, as containerd reports them.");
	for (int i = 0; i < 4; i++) {
		const char *labels[] = { "state", states[i], NULL };

		hc_metrics_sample(mw, "hypercore_runtime_workloads", labels, (double)s.by_state[i]);
	}
	hc_metrics_family(mw, "hypercore_capacity_vcpus", "gauge",
			  "vCPUs this node offers (total) and has given to workloads (used).");
	hc_metrics_sample(mw, "hypercore_capacity_vcpus", (const char *const[]){ "kind", "total", NULL },
			  s.cap.cpus_total);
	hc_metrics_sample(mw, "hypercore_capacity_vcpus", (const char *const[]){ "kind", "used", NULL },
			  s.cap.cpus_used);
	hc_metrics_family(mw, "hypercore_capacity_memory_bytes", "gauge",
			  "Memory this node offers (total) and has given to workloads (used).");
	hc_metrics_sample(mw, "hypercore_capacity_memory_bytes",
			  (const char *const[]){ "kind", "total", NULL },
			  (double)s.cap.mem_total_mb * 1048576.0);
	hc_metrics_sample(mw, "hypercore_capacity_memory_bytes",
			  (const char *const[]){ "kind", "used", NULL },
			  (double)s.cap.mem_used_mb * 1048576.0);
}

int hc_runtime_watch_register_metrics(struct hc_runtime_watch *w, struct hc_metrics *m)
{
	return hc_metrics_register(m, collect, w);
}

void hc_runtime_watch_stop(struct hc_runtime_watch *w)
{
	struct exit_node *n, *next;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = 1;
	pthread_cond_broadcast(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	if (w->log_thread_live)
		pthread_join(w->log_thread, NULL);
	for (n = w->pending; n; n = next) {
		next = n->next;
		free(n);
	}
	free(w->reported);
	free(w->running);
	free(w->logs);
	free(w->logs_new);
	free(w->lease_dir);
	if (w->log_ifd >= 0)
		close(w->log_ifd);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	hc_runtime_free(w->rt);
	free(w);
}
