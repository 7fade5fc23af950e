/* The cluster's runtime operations (cluster.h) over agent/runtime, which
 * reaches containerd through CRI. ctx is one struct hc_runtime shared by
 * every job thread: its calls are thread-safe and share one gRPC channel
 * (runtime_int.h), instead of a channel opened and torn down per call. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/cluster.h"
#include "runtime/runtime.h"

static int cri_spawn(void *ctx, const struct hc_workload_spec *spec, const char *id,
		     struct hc_workload *out, struct hc_err *err)
{
	return hc_runtime_spawn(ctx, spec, id, out, err);
}

static int cri_stop(void *ctx, const char *id, int grace_s, struct hc_err *err)
{
	return hc_runtime_stop(ctx, id, grace_s, err);
}

static int cri_list(void *ctx, struct hc_workload **list, size_t *n, struct hc_err *err)
{
	return hc_runtime_list(ctx, list, n, err);
}

static int cri_logs(void *ctx, const char *id, uint32_t tail, uint64_t from_line, uint64_t window,
		    hc_runtime_log_fn *fn, void *arg, uint64_t *next_line, struct hc_err *err)
{
	return hc_runtime_logs_lines(ctx, id, tail, from_line, window, fn, arg, next_line, err);
}

static int cri_capacity(void *ctx, struct hc_runtime_capacity *out, struct hc_err *err)
{
	return hc_runtime_capacity(ctx, out, err);
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
