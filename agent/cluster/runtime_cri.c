/* The cluster's runtime operations (cluster.h) over agent/runtime, which
 * reaches containerd through CRI. A client per call: the calls block and run
 * on several job threads at once, and a client connects lazily. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "runtime/runtime.h"

/* A client for one call; NULL with err filled when out of memory. */
static struct hc_runtime *client(void *ctx, struct hc_err *err)
{
	struct hc_runtime *rt = hc_runtime_new(ctx);

	if (!rt)
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	return rt;
}

static int cri_spawn(void *ctx, const struct hc_workload_spec *spec, const char *id,
		     struct hc_workload *out, struct hc_err *err)
{
	struct hc_runtime *rt = client(ctx, err);
	int r = rt ? hc_runtime_spawn(rt, spec, id, out, err) : -ENOMEM;

	hc_runtime_free(rt);
	return r;
}

static int cri_stop(void *ctx, const char *id, int grace_s, struct hc_err *err)
{
	struct hc_runtime *rt = client(ctx, err);
	int r = rt ? hc_runtime_stop(rt, id, grace_s, err) : -ENOMEM;

	hc_runtime_free(rt);
	return r;
}

static int cri_list(void *ctx, struct hc_workload **list, size_t *n, struct hc_err *err)
{
	struct hc_runtime *rt = client(ctx, err);
	int r = rt ? hc_runtime_list(rt, list, n, err) : -ENOMEM;

	hc_runtime_free(rt);
	return r;
}

static int cri_logs(void *ctx, const char *id, long tail, bool follow, int stop_fd,
		    hc_runtime_log_fn *fn, void *arg, struct hc_err *err)
{
	struct hc_runtime *rt = client(ctx, err);
	int r = rt ? hc_runtime_logs(rt, id, tail, follow, stop_fd, fn, arg, err) : -ENOMEM;

	hc_runtime_free(rt);
	return r;
}

static int cri_capacity(void *ctx, struct hc_runtime_capacity *out, struct hc_err *err)
{
	struct hc_runtime *rt = client(ctx, err);
	int r = rt ? hc_runtime_capacity(rt, out, err) : -ENOMEM;

	hc_runtime_free(rt);
	return r;
}

/* No client: the cgroup's files are read directly (the data plane counts
 * the network bytes). */
static int cri_usage(void *ctx, const char *id, struct hc_cluster_usage *out, struct hc_err *err)
{
	const struct hc_runtime_config *cfg = ctx;
	int r;

	memset(out, 0, sizeof(*out));
	r = hc_runtime_cgroup_usage(cfg->cgroup_parent, id, &out->cpu_ns, &out->memory_bytes);
	if (r < 0)
		hc_err_set(err, r, "cannot read the cgroup of %s: %s", id, strerror(-r));
	return r;
}

const struct hc_cluster_runtime_ops hc_cluster_runtime_cri = {
	.spawn = cri_spawn,
	.stop = cri_stop,
	.list = cri_list,
	.logs = cri_logs,
	.capacity = cri_capacity,
	.usage = cri_usage,
	/* run_job NULL: every call blocks, so each job gets a thread */
};
