/* Blocking runtime calls on worker threads: one thread per job (spawns pull
 * images for seconds; a pool would queue a stop behind them), its end
 * handed back to the loop thread through an embedded task. A runtime whose
 * calls never block may run the jobs itself (run_job in cluster.h). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define HC_LOG_MODULE "cluster"
#include "cluster/cluster_int.h"
#include "log/log.h"

static void job_finished(void *arg)
{
	struct job *j = arg;
	struct hc_cluster *c = j->c;

	if (j->threaded)
		pthread_join(j->thread, NULL);
	hc_list_remove(&j->link);
	c->njobs--;
	j->done(j);
}

static void *job_main(void *arg)
{
	struct job *j = arg;

	j->run(j);
	j->task.fn = job_finished;
	j->task.arg = j;
	hc_loop_post_task(j->c->loop, &j->task);
	return NULL;
}

static void job_run(void *arg)
{
	struct job *j = arg;

	j->run(j);
}

/* Hands the job to the runtime's own runner. */
static int job_start_external(struct hc_cluster *c, struct job *j)
{
	int r;

	j->threaded = false;
	hc_list_insert(&c->jobs, &j->link);
	c->njobs++;
	r = c->cfg.runtime->run_job(c->cfg.runtime_ctx, job_run, job_finished, j);
	if (r < 0) {
		hc_list_remove(&j->link);
		c->njobs--;
	}
	return r;
}

int hc_cluster_job_start(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done)
{
	if (!c->cfg.runtime || !c->cfg.runtime->run_job)
		return hc_cluster_job_start_thread(c, j, run, done);
	j->c = c;
	j->run = run;
	j->done = done;
	memset(&j->task, 0, sizeof(j->task));
	return job_start_external(c, j);
}

int hc_cluster_job_start_thread(struct hc_cluster *c, struct job *j, job_fn *run, job_fn *done)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	j->c = c;
	j->run = run;
	j->done = done;
	memset(&j->task, 0, sizeof(j->task));
	j->threaded = true;
	if ((r = pthread_attr_init(&attr)) != 0)
		return -r;
	pthread_attr_setstacksize(&attr, 256 * 1024);
	/* Signals belong to the loop thread (it reads them from a signalfd). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&j->thread, &attr, job_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		hc_log(HC_LOG_ERROR, "cannot start a worker thread: %s", strerror(r));
		return -r;
	}
	hc_list_insert(&c->jobs, &j->link);
	c->njobs++;
	return 0;
}

void hc_cluster_jobs_drain(struct hc_cluster *c)
{
	while (c->njobs)
		hc_loop_run_once(c->loop, 100);
}
