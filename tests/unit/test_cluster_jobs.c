/* The cluster's worker jobs: listed while they run, done() once each on the
 * loop thread, drained before the cluster goes. No gossip, no runtime. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/cluster_int.h"
#include "loop/loop.h"
#include "tmpdir.h"

#define NJOBS 5

static char dir[64]; /* the state dir: the cluster writes its node id there */

struct test_job {
	struct job j; /* first: hc_cluster_job_start's callbacks get &j */
	int index;
	atomic_int *ran;
	int *done_order;
	int *ndone;
	pthread_t loop_thread;
};

static void run_job(struct job *j)
{
	struct test_job *t = (struct test_job *)j;

	atomic_fetch_add(t->ran, 1);
}

static void done_job(struct job *j)
{
	struct test_job *t = (struct test_job *)j;

	/* back on the loop thread, already off the cluster's list */
	assert_true(pthread_equal(pthread_self(), t->loop_thread));
	assert_false(hc_list_linked(&t->j.link));
	t->done_order[(*t->ndone)++] = t->index;
	free(t);
}

static int setup(void **state)
{
	(void)state;
	return hc_tmpdir_new(dir, sizeof(dir), "hc-jobs");
}

static int teardown(void **state)
{
	(void)state;
	return hc_tmpdir_remove(dir);
}

static size_t listed(struct hc_cluster *c)
{
	struct job *j;
	size_t n = 0;

	hc_list_for_each(j, &c->jobs, link)
		n++;
	return n;
}

static void test_jobs_listed_then_drained(void **state)
{
	struct hc_cluster_config cfg = { .state_dir = dir, .base_url = "example.test" };
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct hc_cluster *c;
	atomic_int ran = 0;
	int order[NJOBS], ndone = 0, seen = 0;
	struct hc_err err;

	(void)state;
	assert_non_null(loop);
	c = hc_cluster_new(loop, &cfg, &err);
	assert_non_null(c);
	assert_true(hc_list_empty(&c->jobs));
	for (int i = 0; i < NJOBS; i++) {
		struct test_job *t = calloc(1, sizeof(*t));

		assert_non_null(t);
		*t = (struct test_job){ .index = i, .ran = &ran, .done_order = order,
					.ndone = &ndone, .loop_thread = pthread_self() };
		assert_int_equal(hc_cluster_job_start(c, &t->j, run_job, done_job), 0);
	}
	/* done() runs only from the loop, so all are still listed */
	assert_int_equal(c->njobs, NJOBS);
	assert_int_equal(listed(c), NJOBS);
	hc_cluster_jobs_drain(c);
	assert_int_equal(c->njobs, 0);
	assert_true(hc_list_empty(&c->jobs));
	assert_int_equal(atomic_load(&ran), NJOBS);
	assert_int_equal(ndone, NJOBS);
	for (int i = 0; i < NJOBS; i++)
		seen |= 1 << order[i];
	assert_int_equal(seen, (1 << NJOBS) - 1); /* each one's done() once */
	hc_cluster_free(c);
	hc_loop_free(loop);
}

/* Jobs that wait at a gate until the test opens it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int running_slow, running_fast, finished;

static void gated_run(struct job *j)
{
	atomic_int *running = j->slow ? &running_slow : &running_fast;

	atomic_fetch_add(running, 1);
	pthread_mutex_lock(&gate_lock);
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
	atomic_fetch_add(&finished, 1);
}

static void gated_done(struct job *j)
{
	free(j);
}

static int start_gated(struct hc_cluster *c, bool slow)
{
	struct job *j = calloc(1, sizeof(*j));
	int r;

	assert_non_null(j);
	j->slow = slow;
	r = hc_cluster_job_start(c, j, gated_run, gated_done);
	if (r < 0)
		free(j);
	return r;
}

/* Waits (on the wall clock: the jobs are real threads) until *n == want. */
static void wait_count(atomic_int *n, int want)
{
	for (int i = 0; i < 500 && atomic_load(n) != want; i++)
		usleep(10000);
	assert_int_equal(atomic_load(n), want);
}

/* The pool is bounded: slow jobs (spawns) hold at most their share of the
 * threads, so a fast one still runs; the threads never pass their cap; a
 * full queue refuses (-EBUSY, counted) instead of growing; every accepted
 * job still runs and is done once the gate opens. */
static void test_pool_is_bounded(void **state)
{
	struct hc_cluster_config cfg = { .state_dir = dir, .base_url = "example.test" };
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct hc_cluster *c;
	int accepted = 0, r = 0;
	unsigned threads;
	size_t queued;
	struct hc_err err;

	(void)state;
	gate_open = false;
	atomic_store(&running_slow, 0);
	atomic_store(&running_fast, 0);
	atomic_store(&finished, 0);
	assert_non_null(loop);
	c = hc_cluster_new(loop, &cfg, &err);
	assert_non_null(c);
	for (int i = 0; i < 30; i++, accepted++)
		assert_int_equal(start_gated(c, true), 0);
	wait_count(&running_slow, 24);
	usleep(50000);
	assert_int_equal(atomic_load(&running_slow), 24); /* 6 wait, threads or not */
	assert_int_equal(start_gated(c, false), 0);
	accepted++;
	wait_count(&running_fast, 1);
	for (int i = 0; i < 7; i++, accepted++) /* the threads left: 32 in all */
		assert_int_equal(start_gated(c, false), 0);
	wait_count(&running_fast, 8);
	hc_cluster_jobs_threads(c, &threads, &queued);
	assert_int_equal(threads, 32);
	assert_int_equal(queued, 6);
	while ((r = start_gated(c, false)) == 0)
		accepted++;
	assert_int_equal(r, -EBUSY);
	assert_int_equal(c->jobs_refused, 1);
	hc_cluster_jobs_threads(c, &threads, &queued);
	assert_int_equal(threads, 32);
	assert_int_equal(queued, 512);
	assert_int_equal(accepted, 32 + 512);
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	hc_cluster_jobs_drain(c);
	assert_int_equal(atomic_load(&finished), accepted);
	assert_int_equal(c->njobs, 0);
	hc_cluster_free(c);
	hc_loop_free(loop);
}

static atomic_int quick_done;

static void quick_run(struct job *j)
{
	(void)j;
}

static void quick_done_fn(struct job *j)
{
	atomic_fetch_add(&quick_done, 1);
	free(j);
}

/* After a burst, a steady trickle of jobs is served by the worker idle the
 * shortest, and the others, idle past the pool's idle time, end: the pool
 * does not keep what its busiest moment needed. */
static void test_surplus_workers_end(void **state)
{
	struct hc_cluster_config cfg = { .state_dir = dir, .base_url = "example.test" };
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct hc_cluster *c;
	unsigned threads;
	size_t queued;
	struct hc_err err;

	(void)state;
	gate_open = false;
	atomic_store(&running_fast, 0);
	atomic_store(&finished, 0);
	atomic_store(&quick_done, 0);
	assert_non_null(loop);
	c = hc_cluster_new(loop, &cfg, &err);
	assert_non_null(c);
	c->job_idle_exit_ms = 500;
	for (int i = 0; i < 6; i++) /* the burst: six threads */
		assert_int_equal(start_gated(c, false), 0);
	wait_count(&running_fast, 6);
	hc_cluster_jobs_threads(c, &threads, &queued);
	assert_int_equal(threads, 6);
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	wait_count(&finished, 6);
	/* a job every 50 ms for 3 s: each idle worker would be woken within
	 * 6 x 50 ms if they took turns, inside the 500 ms; the one serving has
	 * 50 ms to be idle again, a slow moment may wake a second */
	for (int i = 0; i < 60; i++) {
		struct job *j = calloc(1, sizeof(*j));

		assert_non_null(j);
		assert_int_equal(hc_cluster_job_start(c, j, quick_run, quick_done_fn), 0);
		hc_loop_run_once(loop, 25);
		usleep(25000);
	}
	hc_cluster_jobs_threads(c, &threads, &queued);
	assert_true(threads <= 3);
	hc_cluster_jobs_drain(c);
	assert_int_equal(atomic_load(&quick_done), 60);
	hc_cluster_free(c);
	hc_loop_free(loop);
}

/* A cluster that never started frees its (empty) lists of operations,
 * queries and jobs. */
static void test_unstarted_cluster_frees(void **state)
{
	struct hc_cluster_config cfg = { .state_dir = dir, .base_url = "example.test" };
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct hc_err err;
	struct hc_cluster *c;

	(void)state;
	assert_non_null(loop);
	c = hc_cluster_new(loop, &cfg, &err);
	assert_non_null(c);
	assert_true(hc_list_empty(&c->ops) && hc_list_empty(&c->queries));
	hc_cluster_free(c);
	hc_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobs_listed_then_drained),
		cmocka_unit_test(test_unstarted_cluster_frees),
		cmocka_unit_test(test_pool_is_bounded),
		cmocka_unit_test(test_surplus_workers_end),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
