/*
 * Blocking runtime calls on a bounded pool of worker threads, each job's end
 * handed back to the loop thread through an embedded task. Bounded both
 * ways: at most JOB_THREADS threads (started as needed, ending after a
 * while idle) and JOB_QUEUE jobs waiting; a job over that is refused, so a
 * flood of requests costs a refusal, not a thread. Spawns pull images for
 * seconds: they may hold at most JOB_SLOW_THREADS threads, so stops, lists
 * and logs always find one. A runtime whose calls never block may run the
 * jobs itself (run_job in cluster.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "log/log.h"

#define JOB_THREADS 32
#define JOB_SLOW_THREADS 24
#define JOB_QUEUE 512
#define JOB_IDLE_EXIT_MS 30000
#define JOB_STACK (256 * 1024)
#define JOB_BUSY_WARN_MS 10000

/* An idle worker, on the pool's stack of them while it waits. */
struct idler {
	pthread_cond_t wake;
	struct idler *next;
	bool woken;
};

struct job_pool {
	pthread_mutex_t lock;
	/* The idle workers, the one idle the shortest first: a job wakes that
	 * one, so under a steady load the same few workers take every job and
	 * the rest, idle idle_exit_ms, end. (One condition variable for all
	 * woke them in turn: none stayed idle that long, and the pool kept as
	 * many threads as its busiest moment ever needed, each with its
	 * stack's pages and a malloc arena: an agent's RSS rose with every
	 * new peak over an hour's churn.) */
	struct idler *idle;
	unsigned idle_exit_ms;
	struct hc_list queue; /* struct job, by j->queued */
	size_t nqueued, nqueued_slow;
	unsigned nthreads, nidle, nslow; /* nslow: slow jobs running */
	pthread_t threads[JOB_THREADS];
	bool live[JOB_THREADS];  /* threads[i] is running (or exited, unjoined) */
	bool exited[JOB_THREADS];
	bool stopping;
};

static void job_finished(void *arg)
{
	struct job *j = arg;
	struct hc_cluster *c = j->c;

	hc_list_remove(&j->link);
	c->njobs--;
	j->done(j);
}

/* The first queued job a worker may take: any fast one, a slow one only
 * while slow jobs hold fewer than their share. Under the lock. */
static struct job *next_job(struct job_pool *pool)
{
	struct job *j;

	hc_list_for_each(j, &pool->queue, queued)
		if (!j->slow || pool->nslow < JOB_SLOW_THREADS)
			return j;
	return NULL;
}

/* Queued jobs a thread could take now. Under the lock. */
static size_t runnable(const struct job_pool *pool)
{
	size_t slow_room = pool->nslow < JOB_SLOW_THREADS ? JOB_SLOW_THREADS - pool->nslow : 0;

	return pool->nqueued - pool->nqueued_slow +
	       (pool->nqueued_slow < slow_room ? pool->nqueued_slow : slow_room);
}

/* Waits on the idle stack's top until woken or until; ETIMEDOUT or 0.
 * Under the lock. */
static int idle_wait(struct job_pool *pool, const struct timespec *until)
{
	struct idler me = { .next = pool->idle };
	int r = 0;

	pthread_cond_init(&me.wake, NULL);
	pool->idle = &me;
	pool->nidle++;
	while (!me.woken && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&me.wake, &pool->lock, until);
	if (!me.woken) { /* still on the stack: off it */
		struct idler **pp = &pool->idle;

		while (*pp != &me)
			pp = &(*pp)->next;
		*pp = me.next;
	}
	pool->nidle--;
	pthread_cond_destroy(&me.wake);
	return me.woken ? 0 : ETIMEDOUT;
}

/* Wakes the worker idle the shortest, or (all) every one. Under the lock. */
static void idle_wake(struct job_pool *pool, bool all)
{
	do {
		struct idler *w = pool->idle;

		if (!w)
			return;
		pool->idle = w->next;
		w->woken = true;
		pthread_cond_signal(&w->wake);
	} while (all);
}

static void run_one(struct job_pool *pool, struct job *j)
{
	bool slow = j->slow;

	hc_list_remove(&j->queued);
	pool->nqueued--;
	pool->nqueued_slow -= j->slow;
	pool->nslow += slow;
	pthread_mutex_unlock(&pool->lock);
	j->run(j);
	j->task.fn = job_finished;
	j->task.arg = j;
	/* from here on the loop thread may free j */
	hc_loop_post_task(j->c->loop, &j->task);
	pthread_mutex_lock(&pool->lock);
	if (slow) {
		pool->nslow--;
		idle_wake(pool, true); /* a slow job may now run */
	}
}

struct worker_arg {
	struct job_pool *pool;
	unsigned slot;
};

static void *worker_main(void *arg)
{
	struct worker_arg wa = *(struct worker_arg *)arg;
	struct job_pool *pool = wa.pool;
	struct timespec until;
	struct job *j;

	free(arg);
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		if ((j = next_job(pool))) {
			run_one(pool, j);
			continue;
		}
		if (pool->stopping)
			break;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += pool->idle_exit_ms / 1000;
		until.tv_nsec += (long)(pool->idle_exit_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (idle_wait(pool, &until) == ETIMEDOUT && !next_job(pool))
			break;
	}
	pool->nthreads--;
	pool->exited[wa.slot] = true;
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Joins threads that ended idle, freeing their slots. Under the lock. */
static void reap_exited(struct job_pool *pool)
{
	for (unsigned i = 0; i < JOB_THREADS; i++)
		if (pool->live[i] && pool->exited[i]) {
			pthread_join(pool->threads[i], NULL);
			pool->live[i] = pool->exited[i] = false;
		}
}

/* One more worker, if under the cap. Under the lock. */
static int add_worker(struct job_pool *pool)
{
	struct worker_arg *wa;
	pthread_attr_t attr;
	sigset_t all, old;
	unsigned slot;
	int r;

	reap_exited(pool);
	for (slot = 0; slot < JOB_THREADS && pool->live[slot]; slot++)
		;
	if (slot == JOB_THREADS)
		return -EAGAIN;
	wa = malloc(sizeof(*wa));
	if (!wa)
		return -ENOMEM;
	*wa = (struct worker_arg){ pool, slot };
	if ((r = pthread_attr_init(&attr)) != 0) {
		free(wa);
		return -r;
	}
	pthread_attr_setstacksize(&attr, JOB_STACK);
	/* Signals belong to the loop thread (it reads them from a signalfd). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&pool->threads[slot], &attr, worker_main, wa);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		free(wa);
		return -r;
	}
	pool->live[slot] = true;
	pool->nthreads++;
	return 0;
}

static struct job_pool *pool_of(struct hc_cluster *c)
{
	struct job_pool *pool = c->job_pool;

	if (pool)
		return pool;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pthread_mutex_init(&pool->lock, NULL);
	pool->idle_exit_ms = c->job_idle_exit_ms ? c->job_idle_exit_ms : JOB_IDLE_EXIT_MS;
	hc_list_init(&pool->queue);
	return c->job_pool = pool;
}

/* A refusal is counted; the log says so at most every JOB_BUSY_WARN_MS. */
static void note_busy(struct hc_cluster *c, size_t queued)
{
	uint64_t now = hc_loop_now_ms(c->loop);

	c->jobs_refused++;
	if (now < c->busy_warn_next_ms)
		return;
	c->busy_warn_next_ms = now + JOB_BUSY_WARN_MS;
	hc_log(HC_LOG_WARN, "%zu runtime jobs waiting: refusing more (%llu refused so far)",
	       queued, (unsigned long long)c->jobs_refused);
}

static void job_init(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done)
{
	j->c = c;
	j->run = run;
	j->done = done;
	memset(&j->task, 0, sizeof(j->task));
}

int hc_cluster_job_start_thread(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done)
{
	struct job_pool *pool = pool_of(c);
	int r = 0;

	if (!pool)
		return -ENOMEM;
	job_init(c, j, run, done);
	pthread_mutex_lock(&pool->lock);
	if (pool->nqueued >= JOB_QUEUE) {
		size_t queued = pool->nqueued;

		pthread_mutex_unlock(&pool->lock);
		note_busy(c, queued);
		return -EBUSY;
	}
	hc_list_append(&pool->queue, &j->queued);
	pool->nqueued++;
	pool->nqueued_slow += j->slow;
	/* A new thread when the jobs that may run now outnumber the idle
	 * threads (woken ones count as idle until they take a job): the pool
	 * grows with the load. */
	if (runnable(pool) > pool->nidle && pool->nthreads < JOB_THREADS)
		r = add_worker(pool);
	if (r < 0 && pool->nthreads == 0) {
		hc_list_remove(&j->queued);
		pool->nqueued--;
		pool->nqueued_slow -= j->slow;
		pthread_mutex_unlock(&pool->lock);
		hc_log(HC_LOG_ERROR, "cannot start a worker thread: %s", strerror(-r));
		return r;
	}
	idle_wake(pool, false);
	pthread_mutex_unlock(&pool->lock);
	hc_list_insert(&c->jobs, &j->link);
	c->njobs++;
	return 0;
}

static void job_run(void *arg)
{
	struct job *j = arg;

	j->run(j);
}

int hc_cluster_job_start(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done)
{
	int r;

	if (!c->cfg.runtime || !c->cfg.runtime->run_job)
		return hc_cluster_job_start_thread(c, j, run, done);
	job_init(c, j, run, done);
	hc_list_insert(&c->jobs, &j->link);
	c->njobs++;
	r = c->cfg.runtime->run_job(c->cfg.runtime_ctx, job_run, job_finished, j);
	if (r < 0) {
		hc_list_remove(&j->link);
		c->njobs--;
	}
	return r;
}

void hc_cluster_jobs_threads(struct hc_cluster *c, unsigned *threads, size_t *queued)
{
	struct job_pool *pool = c->job_pool;

	*threads = 0;
	*queued = 0;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	*threads = pool->nthreads;
	*queued = pool->nqueued;
	pthread_mutex_unlock(&pool->lock);
}

void hc_cluster_jobs_drain(struct hc_cluster *c)
{
	struct job_pool *pool = c->job_pool;

	while (c->njobs)
		hc_loop_run_once(c->loop, 100);
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	idle_wake(pool, true);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < JOB_THREADS; i++)
		if (pool->live[i])
			pthread_join(pool->threads[i], NULL);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
	c->job_pool = NULL;
}
