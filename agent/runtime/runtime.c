/* Workload operations on CRI: spawn, stop, list, stats, capacity. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "base/base.h"
#include "log/log.h"
#include "runtime_int.h"

#define CPU_PERIOD_US 100000
#define UPSTREAM_MIN_VCPUS 225 /* upstream allows max(nproc, 225) vCPUs */
#define LOG_PATH "workload/0.log"

/* Frees a protobuf-c response (NULL ok). */
static void free_msg(void *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* ---- finding our sandboxes ---- */

/* Lists sandboxes with label key=value. */
static int list_sandboxes(struct hc_runtime *rt, const char *key, const char *value,
			  Runtime__V1__ListPodSandboxResponse **resp, struct hc_err *err)
{
	Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
	Runtime__V1__PodSandboxFilter filter = RUNTIME__V1__POD_SANDBOX_FILTER__INIT;
	Runtime__V1__StringEntry sel = RUNTIME__V1__STRING_ENTRY__INIT, *selp = &sel;

	sel.key = (char *)key;
	sel.value = (char *)value;
	filter.label_selector = &selp;
	filter.n_label_selector = 1;
	req.filter = &filter;
	return hc_cri_call(rt, "RuntimeService/ListPodSandbox", &req.base,
			   &runtime__v1__list_pod_sandbox_response__descriptor,
			   (ProtobufCMessage **)resp, HC_CRI_TIMEOUT_MS, "listing sandboxes", err);
}

static int list_containers(struct hc_runtime *rt, const char *sandbox_id,
			   Runtime__V1__ListContainersResponse **resp, struct hc_err *err)
{
	Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
	Runtime__V1__ContainerFilter filter = RUNTIME__V1__CONTAINER_FILTER__INIT;
	Runtime__V1__StringEntry sel = RUNTIME__V1__STRING_ENTRY__INIT, *selp = &sel;

	if (sandbox_id) {
		filter.pod_sandbox_id = (char *)sandbox_id;
	} else {
		sel.key = HC_LABEL_MANAGED;
		sel.value = "true";
		filter.label_selector = &selp;
		filter.n_label_selector = 1;
	}
	req.filter = &filter;
	return hc_cri_call(rt, "RuntimeService/ListContainers", &req.base,
			   &runtime__v1__list_containers_response__descriptor,
			   (ProtobufCMessage **)resp, HC_CRI_TIMEOUT_MS, "listing containers", err);
}

int hc_runtime_find(struct hc_runtime *rt, const char *id, char sandbox_id[65],
		    char container_id[65], struct hc_err *err)
{
	Runtime__V1__ListPodSandboxResponse *pods = NULL;
	Runtime__V1__ListContainersResponse *ctrs = NULL;
	int r;

	if (!hc_uuid_valid(id))
		return hc_err_set(err, -EINVAL, "invalid workload id \"%.64s\" (want a UUID)", id);
	r = list_sandboxes(rt, HC_LABEL_WORKLOAD, id, &pods, err);
	if (r < 0)
		return r;
	if (pods->n_items == 0) {
		r = hc_err_set(err, -ENOENT, "no workload with id %s", id);
		goto out;
	}
	copy_str(sandbox_id, 65, pods->items[0]->id);
	container_id[0] = '\0';
	r = list_containers(rt, sandbox_id, &ctrs, err);
	if (r < 0)
		goto out;
	if (ctrs->n_containers)
		copy_str(container_id, 65, ctrs->containers[0]->id);
out:
	free_msg(pods);
	free_msg(ctrs);
	return r;
}

/* ---- describing a workload ---- */

static enum hc_workload_state state_of(Runtime__V1__ContainerState s)
{
	switch (s) {
	case RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED:
		return HC_WORKLOAD_CREATED;
	case RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING:
		return HC_WORKLOAD_RUNNING;
	case RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED:
		return HC_WORKLOAD_EXITED;
	default:
		return HC_WORKLOAD_UNKNOWN;
	}
}

const char *hc_workload_state_name(enum hc_workload_state s)
{
	static const char *const names[] = { "created", "running", "exited", "unknown" };

	return (unsigned)s < 4 ? names[s] : "unknown";
}

void hc_workload_fini(struct hc_workload *w)
{
	if (!w)
		return;
	hc_workload_spec_fini(&w->spec);
	free(w->spec_json);
	w->spec_json = NULL;
}

void hc_workload_list_free(struct hc_workload *list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		hc_workload_fini(&list[i]);
	free(list);
}

/* Fills w from a sandbox (id, annotations) and, if there is one, its
 * container. A sandbox whose pause died is UNKNOWN whatever its container. */
static int describe(struct hc_runtime *rt, const Runtime__V1__PodSandbox *pod,
		    const char *container_id, struct hc_workload *w, struct hc_err *err)
{
	Runtime__V1__PodSandboxStatusRequest preq = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
	Runtime__V1__ContainerStatusRequest creq = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
	Runtime__V1__PodSandboxStatusResponse *ps = NULL;
	Runtime__V1__ContainerStatusResponse *cs = NULL;
	const char *id = hc_cri_map_get(pod->labels, pod->n_labels, HC_LABEL_WORKLOAD);
	const char *req = hc_cri_map_get(pod->annotations, pod->n_annotations, HC_ANNOTATION_REQUEST);
	int r;

	memset(w, 0, sizeof(*w));
	copy_str(w->id, sizeof(w->id), id);
	copy_str(w->sandbox_id, sizeof(w->sandbox_id), pod->id);
	copy_str(w->runtime_handler, sizeof(w->runtime_handler),
		 pod->runtime_handler && pod->runtime_handler[0] ? pod->runtime_handler : "runc");
	w->created_ns = pod->created_at;
	w->state = HC_WORKLOAD_UNKNOWN;
	if (req) {
		w->spec_json = strdup(req);
		if (!w->spec_json || hc_workload_spec_from_json(req, &w->spec) < 0)
			hc_log(HC_LOG_WARN, "workload %s: unreadable request annotation", w->id);
	}
	if (hc_spec_is_vm(&w->spec)) /* its sandbox and VMM run under runc */
		copy_str(w->runtime_handler, sizeof(w->runtime_handler), w->spec.runtime_handler);
	preq.pod_sandbox_id = pod->id;
	r = hc_cri_call(rt, "RuntimeService/PodSandboxStatus", &preq.base,
			&runtime__v1__pod_sandbox_status_response__descriptor,
			(ProtobufCMessage **)&ps, HC_CRI_TIMEOUT_MS, "sandbox status", err);
	if (r == -ENOENT)
		return 0; /* removed meanwhile: report what we have */
	if (r < 0)
		goto out;
	if (ps->status && ps->status->network)
		copy_str(w->ip, sizeof(w->ip), ps->status->network->ip);
	if (!container_id || !container_id[0])
		goto out;
	copy_str(w->container_id, sizeof(w->container_id), container_id);
	creq.container_id = (char *)container_id;
	r = hc_cri_call(rt, "RuntimeService/ContainerStatus", &creq.base,
			&runtime__v1__container_status_response__descriptor,
			(ProtobufCMessage **)&cs, HC_CRI_TIMEOUT_MS, "container status", err);
	if (r == -ENOENT) {
		r = 0;
		goto out;
	}
	if (r < 0 || !cs->status)
		goto out;
	w->state = state_of(cs->status->state);
	w->exit_code = cs->status->exit_code;
	copy_str(w->reason, sizeof(w->reason), cs->status->reason);
	copy_str(w->image_id, sizeof(w->image_id), cs->status->image_ref);
	copy_str(w->log_path, sizeof(w->log_path), cs->status->log_path);
	w->started_ns = cs->status->started_at;
	w->finished_ns = cs->status->finished_at;
	if (ps->status && ps->status->state != RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY &&
	    w->state == HC_WORKLOAD_RUNNING)
		w->state = HC_WORKLOAD_UNKNOWN;
out:
	free_msg(ps);
	free_msg(cs);
	if (r < 0)
		hc_workload_fini(w);
	return r;
}

static int by_creation(const void *a, const void *b)
{
	const struct hc_workload *x = a, *y = b;

	return (x->created_ns > y->created_ns) - (x->created_ns < y->created_ns);
}

int hc_runtime_list(struct hc_runtime *rt, struct hc_workload **list, size_t *n,
		    struct hc_err *err)
{
	Runtime__V1__ListPodSandboxResponse *pods = NULL;
	Runtime__V1__ListContainersResponse *ctrs = NULL;
	struct hc_workload *out = NULL;
	size_t count = 0;
	int r;

	*list = NULL;
	*n = 0;
	r = list_sandboxes(rt, HC_LABEL_MANAGED, "true", &pods, err);
	if (r < 0)
		return r;
	r = list_containers(rt, NULL, &ctrs, err);
	if (r < 0)
		goto out;
	if (pods->n_items && !(out = calloc(pods->n_items, sizeof(*out)))) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < pods->n_items; i++) {
		const char *cid = NULL;

		/* one container per sandbox; the newest if a restart left two */
		for (size_t j = 0; j < ctrs->n_containers; j++)
			if (strcmp(ctrs->containers[j]->pod_sandbox_id, pods->items[i]->id) == 0)
				cid = ctrs->containers[j]->id;
		r = describe(rt, pods->items[i], cid, &out[count], err);
		if (r < 0)
			goto out;
		count++;
	}
	if (count)
		qsort(out, count, sizeof(*out), by_creation);
	*list = out;
	*n = count;
	out = NULL;
out:
	hc_workload_list_free(out, count);
	free_msg(pods);
	free_msg(ctrs);
	return r;
}

int hc_runtime_get(struct hc_runtime *rt, const char *id, struct hc_workload *w,
		   struct hc_err *err)
{
	Runtime__V1__ListPodSandboxResponse *pods = NULL;
	char sandbox_id[65], container_id[65];
	int r;

	r = hc_runtime_find(rt, id, sandbox_id, container_id, err);
	if (r < 0)
		return r;
	r = list_sandboxes(rt, HC_LABEL_WORKLOAD, id, &pods, err);
	if (r < 0)
		return r;
	if (pods->n_items == 0)
		r = hc_err_set(err, -ENOENT, "no workload with id %s", id);
	else
		r = describe(rt, pods->items[0], container_id, w, err);
	free_msg(pods);
	return r;
}

/* ---- capacity ---- */

static uint64_t meminfo_mb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	unsigned long long kb = 0;
	size_t klen = strlen(key);

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			kb = strtoull(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb / 1024;
}

static uint32_t cpus_total(const struct hc_runtime *rt)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (rt->capacity_cpus)
		return rt->capacity_cpus;
	return n > UPSTREAM_MIN_VCPUS ? (uint32_t)n : UPSTREAM_MIN_VCPUS;
}

static int holds_resources(const struct hc_workload *w)
{
	return w->state != HC_WORKLOAD_EXITED;
}

void hc_runtime_capacity_of(const struct hc_runtime *rt, const struct hc_workload *list,
			    size_t n, struct hc_runtime_capacity *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		if (!holds_resources(&list[i]))
			continue;
		out->cpus_used += list[i].spec.cores;
		out->mem_used_mb += hc_workload_spec_mem_held(&list[i].spec);
		out->workloads++;
	}
	out->cpus_total = cpus_total(rt);
	out->mem_total_mb = rt->capacity_mem_mb ? rt->capacity_mem_mb
						: meminfo_mb("MemAvailable") + out->mem_used_mb;
}

int hc_runtime_capacity(struct hc_runtime *rt, struct hc_runtime_capacity *out,
			struct hc_err *err)
{
	struct hc_workload *list;
	size_t n;
	int r = hc_runtime_list(rt, &list, &n, err);

	if (r < 0)
		return r;
	hc_runtime_capacity_of(rt, list, n, out);
	hc_workload_list_free(list, n);
	return 0;
}

/* Refused where upstream only warned (an overcommitted node kills
 * workloads), so the message says what would fit and how to offer more;
 * hc_runtime_refusal_free_mb() reads the figure back. */
#define MEM_REFUSAL                                                                      \
	"not enough memory: %u MB requested, %llu MB free (%llu of %llu MB in use; the "   \
	"agent's --capacity-mem MB sets what a node offers)"

int hc_runtime_refusal_free_mb(const char *msg, uint64_t *free_mb)
{
	const char *p = msg ? strstr(msg, "not enough memory: ") : NULL;
	unsigned requested;
	unsigned long long mb;

	if (!p || sscanf(p, "not enough memory: %u MB requested, %llu MB free", &requested,
			 &mb) != 2)
		return -EINVAL;
	*free_mb = mb;
	return 0;
}

uint32_t hc_workload_spec_mem_held(const struct hc_workload_spec *spec)
{
	return spec->memory_mb + (hc_spec_is_vm(spec) ? HC_VM_OVERHEAD_MB : 0);
}

int hc_runtime_capacity_check(const struct hc_runtime_capacity *cap,
			      const struct hc_workload_spec *spec, struct hc_err *err)
{
	uint32_t mem = hc_workload_spec_mem_held(spec);

	if ((uint64_t)cap->cpus_used + spec->cores > cap->cpus_total)
		return hc_err_set(err, -ENOSPC,
				  "not enough CPU: %u vCPUs requested, %u of %u in use",
				  spec->cores, cap->cpus_used, cap->cpus_total);
	if (cap->mem_used_mb + mem > cap->mem_total_mb)
		return hc_err_set(err, -ENOSPC, MEM_REFUSAL, mem,
				  (unsigned long long)(cap->mem_total_mb > cap->mem_used_mb
							       ? cap->mem_total_mb - cap->mem_used_mb
							       : 0),
				  (unsigned long long)cap->mem_used_mb,
				  (unsigned long long)cap->mem_total_mb);
	return 0;
}

static int check_capacity(struct hc_runtime *rt, const struct hc_workload_spec *spec,
			  struct hc_err *err)
{
	struct hc_runtime_capacity cap;
	int r = hc_runtime_capacity(rt, &cap, err);

	return r < 0 ? r : hc_runtime_capacity_check(&cap, spec, err);
}

/* ---- images ---- */

static int image_present(struct hc_runtime *rt, const char *ref, struct hc_err *err)
{
	Runtime__V1__ImageStatusRequest req = RUNTIME__V1__IMAGE_STATUS_REQUEST__INIT;
	Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
	Runtime__V1__ImageStatusResponse *resp = NULL;
	int r;

	spec.image = (char *)ref;
	req.image = &spec;
	r = hc_cri_call(rt, "ImageService/ImageStatus", &req.base,
			&runtime__v1__image_status_response__descriptor, (ProtobufCMessage **)&resp,
			HC_CRI_TIMEOUT_MS, "image status", err);
	if (r < 0)
		return r;
	r = resp->image != NULL; /* an absent image is an answer without one */
	free_msg(resp);
	return r;
}

static int pull_image(struct hc_runtime *rt, const char *ref, struct hc_err *err)
{
	Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
	Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
	Runtime__V1__PullImageResponse *resp = NULL;
	int r;

	spec.image = (char *)ref;
	req.image = &spec;
	r = hc_cri_call(rt, "ImageService/PullImage", &req.base,
			&runtime__v1__pull_image_response__descriptor, (ProtobufCMessage **)&resp,
			HC_CRI_PULL_TIMEOUT_MS, "pulling image", err);
	if (r == 0) {
		hc_log(HC_LOG_INFO, "pulled %s as %s", ref, resp->image_ref);
		free_msg(resp);
		return 0;
	}
	/* containerd answers NOT_FOUND for an unknown repository or tag but
	 * UNKNOWN for most transport errors; tell the user which it was. */
	if (r == -ENOENT || strstr(err->msg, "not found"))
		return hc_err_set(err, -ENOENT, "image %s not found in its registry", ref);
	if (strstr(err->msg, "connection refused") || strstr(err->msg, "no such host") ||
	    strstr(err->msg, "dial tcp") || strstr(err->msg, "i/o timeout"))
	{
		char cause[sizeof(err->msg)];

		memcpy(cause, err->msg, sizeof(cause));
		return hc_err_set(err, -EHOSTUNREACH, "registry for %s unreachable (%.300s)",
				  ref, cause);
	}
	return r;
}

/* ---- teardown ---- */

static int remove_tree_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		hc_log(HC_LOG_WARN, "cannot remove %s: %s", path, strerror(errno));
	return 0;
}

void hc_runtime_remove_tree(const char *path)
{
	if (nftw(path, remove_tree_entry, 8, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		hc_log(HC_LOG_WARN, "cannot remove %s: %s", path, strerror(errno));
}

static void remove_log_dir(struct hc_runtime *rt, const char *id)
{
	char path[4096];

	/* id was checked to be a UUID, so the path stays inside log_root */
	snprintf(path, sizeof(path), "%s/%s", rt->log_root, id);
	hc_runtime_remove_tree(path);
}

static int call_id(struct hc_runtime *rt, const char *method, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_type, int timeout_ms, const char *what,
		   struct hc_err *err)
{
	ProtobufCMessage *resp = NULL;
	int r = hc_cri_call(rt, method, req, resp_type, &resp, timeout_ms, what, err);

	free_msg(resp);
	return r == -ENOENT ? 0 : r; /* already gone is what we want */
}

static int remove_container(struct hc_runtime *rt, const char *cid, int grace_s,
			    struct hc_err *err)
{
	Runtime__V1__StopContainerRequest sreq = RUNTIME__V1__STOP_CONTAINER_REQUEST__INIT;
	Runtime__V1__RemoveContainerRequest rreq = RUNTIME__V1__REMOVE_CONTAINER_REQUEST__INIT;
	int r;

	sreq.container_id = (char *)cid;
	sreq.timeout = grace_s;
	r = call_id(rt, "RuntimeService/StopContainer", &sreq.base,
		    &runtime__v1__stop_container_response__descriptor,
		    HC_CRI_TIMEOUT_MS + grace_s * 1000, "stopping container", err);
	if (r < 0)
		return r;
	rreq.container_id = (char *)cid;
	return call_id(rt, "RuntimeService/RemoveContainer", &rreq.base,
		       &runtime__v1__remove_container_response__descriptor, HC_CRI_TIMEOUT_MS,
		       "removing container", err);
}

static int remove_sandbox(struct hc_runtime *rt, const char *sid, struct hc_err *err)
{
	Runtime__V1__StopPodSandboxRequest sreq = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
	Runtime__V1__RemovePodSandboxRequest rreq = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
	int r;

	sreq.pod_sandbox_id = (char *)sid;
	r = call_id(rt, "RuntimeService/StopPodSandbox", &sreq.base,
		    &runtime__v1__stop_pod_sandbox_response__descriptor, HC_CRI_START_TIMEOUT_MS,
		    "stopping sandbox", err);
	if (r < 0)
		return r;
	rreq.pod_sandbox_id = (char *)sid;
	return call_id(rt, "RuntimeService/RemovePodSandbox", &rreq.base,
		       &runtime__v1__remove_pod_sandbox_response__descriptor,
		       HC_CRI_START_TIMEOUT_MS, "removing sandbox", err);
}

/* Removes every container of the sandbox, then the sandbox. */
static int teardown_sandbox(struct hc_runtime *rt, const char *sid, int grace_s,
			    struct hc_err *err)
{
	Runtime__V1__ListContainersResponse *ctrs = NULL;
	int r = list_containers(rt, sid, &ctrs, err);

	for (size_t i = 0; r == 0 && i < ctrs->n_containers; i++)
		r = remove_container(rt, ctrs->containers[i]->id, grace_s, err);
	free_msg(ctrs);
	if (r == 0)
		HC_FAULT("stop:after_containers");
	return r < 0 ? r : remove_sandbox(rt, sid, err);
}

static int stop_workload(struct hc_runtime *rt, const char *id, int grace_s,
			 struct hc_err *err)
{
	Runtime__V1__ListPodSandboxResponse *pods = NULL;
	int r;

	if (!hc_uuid_valid(id))
		return hc_err_set(err, -EINVAL, "invalid workload id \"%.64s\" (want a UUID)", id);
	HC_FAULT("stop:before");
	r = list_sandboxes(rt, HC_LABEL_WORKLOAD, id, &pods, err);
	if (r < 0)
		return r;
	if (pods->n_items == 0)
		r = hc_err_set(err, -ENOENT, "no workload with id %s", id);
	for (size_t i = 0; r == 0 && i < pods->n_items; i++)
		r = teardown_sandbox(rt, pods->items[i]->id, grace_s, err);
	free_msg(pods);
	if (r == 0) {
		HC_FAULT("stop:after_sandbox");
		remove_log_dir(rt, id);
		hc_vm_remove_dir(rt, id);
		hc_runtime_cgroup_remove(rt->cgroup_parent, id);
		hc_log(HC_LOG_INFO, "stopped workload %s", id);
	}
	return r;
}

int hc_runtime_stop(struct hc_runtime *rt, const char *id, int grace_s,
		    struct hc_err *err)
{
	int r;

	pthread_rwlock_rdlock(&rt->teardown_lock);
	r = stop_workload(rt, id, grace_s, err);
	pthread_rwlock_unlock(&rt->teardown_lock);
	return r;
}

/* After a failed spawn: whatever exists under the id goes. Errors here are
 * only logged; the caller reports the spawn's own error. */
static void undo_spawn(struct hc_runtime *rt, const char *id)
{
	struct hc_err e;

	if (hc_runtime_stop(rt, id, 0, &e) < 0 && !strstr(e.msg, "no workload"))
		hc_log(HC_LOG_WARN, "cleanup after failed spawn of %s: %s", id, e.msg);
	remove_log_dir(rt, id);
	hc_vm_remove_dir(rt, id);
	hc_runtime_cgroup_remove(rt->cgroup_parent, id);
}

/* ---- spawn ---- */

struct entries {
	Runtime__V1__StringEntry items[HC_RUNTIME_MAX_LABELS + 2];
	Runtime__V1__StringEntry *ptrs[HC_RUNTIME_MAX_LABELS + 2];
	size_t n;
};

static void entries_add(struct entries *e, const char *key, const char *value)
{
	Runtime__V1__StringEntry init = RUNTIME__V1__STRING_ENTRY__INIT;

	e->items[e->n] = init;
	e->items[e->n].key = (char *)key;
	e->items[e->n].value = (char *)value;
	e->ptrs[e->n] = &e->items[e->n];
	e->n++;
}

/* Everything a spawn sends, kept together because CreateContainer needs the
 * sandbox config again (containerd 1.6 reads the log dir and cgroup parent
 * from there). Points into spec and the caller's strings. */
struct pod_request {
	Runtime__V1__PodSandboxConfig config;
	Runtime__V1__PodSandboxMetadata meta;
	Runtime__V1__LinuxPodSandboxConfig linux_cfg;
	Runtime__V1__LinuxSandboxSecurityContext sec;
	Runtime__V1__NamespaceOption ns;
	Runtime__V1__SecurityProfile seccomp;
	struct entries labels, annotations;
	char log_dir[4096];
	char cgroup_parent[512]; /* <rt's parent>/<id>: the workload's pids limit */
};

static void pod_request_init(struct pod_request *p, struct hc_runtime *rt, const char *id,
			     const struct hc_workload_spec *spec, const char *spec_json)
{
	Runtime__V1__PodSandboxConfig config = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__PodSandboxMetadata meta = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
	Runtime__V1__LinuxPodSandboxConfig linux_cfg = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__LinuxSandboxSecurityContext sec = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
	Runtime__V1__NamespaceOption ns = RUNTIME__V1__NAMESPACE_OPTION__INIT;
	Runtime__V1__SecurityProfile seccomp = RUNTIME__V1__SECURITY_PROFILE__INIT;

	p->config = config;
	p->seccomp = seccomp;
	p->meta = meta;
	p->linux_cfg = linux_cfg;
	p->sec = sec;
	p->ns = ns;
	p->labels.n = p->annotations.n = 0;

	/* name and uid are the workload id: containerd reserves the name, so
	 * a second spawn with the same id fails instead of duplicating it */
	p->meta.name = (char *)id;
	p->meta.uid = (char *)id;
	p->meta.namespace_ = HC_SANDBOX_NAMESPACE;
	p->config.metadata = &p->meta;
	p->config.hostname = (char *)id;
	snprintf(p->log_dir, sizeof(p->log_dir), "%s/%s", rt->log_root, id);
	p->config.log_directory = p->log_dir;

	for (size_t i = 0; i < spec->nlabels; i++)
		entries_add(&p->labels, spec->labels[i].key, spec->labels[i].value);
	entries_add(&p->labels, HC_LABEL_MANAGED, "true");
	entries_add(&p->labels, HC_LABEL_WORKLOAD, id);
	p->config.labels = p->labels.ptrs;
	p->config.n_labels = p->labels.n;
	entries_add(&p->annotations, HC_ANNOTATION_REQUEST, spec_json);
	p->config.annotations = p->annotations.ptrs;
	p->config.n_annotations = p->annotations.n;

	p->ns.network = RUNTIME__V1__NAMESPACE_MODE__POD;
	p->ns.pid = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
	p->ns.ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
	p->sec.namespace_options = &p->ns;
	/* the pause process too runs under the default seccomp filter */
	p->seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RUNTIME_DEFAULT;
	p->sec.seccomp = &p->seccomp;
	p->linux_cfg.security_context = &p->sec;
	snprintf(p->cgroup_parent, sizeof(p->cgroup_parent), "%s/%s", rt->cgroup_parent, id);
	p->linux_cfg.cgroup_parent = p->cgroup_parent;
	p->config.linux = &p->linux_cfg;
}

static int run_sandbox(struct hc_runtime *rt, struct pod_request *p,
		       const struct hc_workload_spec *spec, char sandbox_id[65],
		       struct hc_err *err)
{
	Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
	Runtime__V1__RunPodSandboxResponse *resp = NULL;
	int r;

	req.config = &p->config;
	/* "" is containerd's default handler (runc); name others explicitly */
	if (spec->runtime_handler && strcmp(spec->runtime_handler, "runc") != 0 &&
	    !hc_spec_is_vm(spec)) /* a VM's sandbox and VMM are runc's */
		req.runtime_handler = spec->runtime_handler;
	r = hc_cri_call(rt, "RuntimeService/RunPodSandbox", &req.base,
			&runtime__v1__run_pod_sandbox_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_START_TIMEOUT_MS, "starting sandbox", err);
	if (r == 0)
		copy_str(sandbox_id, 65, resp->pod_sandbox_id);
	else if (strstr(err->msg, "is reserved for"))
		r = hc_err_set(err, -EEXIST, "a workload with id %s exists", p->meta.name);
	else if (strstr(err->msg, "no runtime for"))
		r = hc_err_set(err, -ENOTSUP,
			       "runtime %s is not available on this node (runsc needs gVisor's "
			       "containerd-shim-runsc-v1, which Debian 12 does not ship)",
			       req.runtime_handler);
	free_msg(resp);
	return r;
}

/* The container's hardening (docs/runtime.md): containerd's default seccomp
 * filter, no_new_privs (setuid binaries and file capabilities grant
 * nothing), every capability dropped and only the spec's set added back,
 * optionally a read-only root filesystem. Points into spec and caps. */
static void harden(Runtime__V1__LinuxContainerSecurityContext *sec, Runtime__V1__Capability *cap,
		   Runtime__V1__SecurityProfile *seccomp, const struct hc_workload_spec *spec,
		   const char **caps, size_t ncaps)
{
	static char *drop_all[] = { "ALL" };

	seccomp->profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RUNTIME_DEFAULT;
	sec->seccomp = seccomp;
	sec->no_new_privs = true;
	/* containerd applies "drop ALL" first, then the adds */
	cap->drop_capabilities = drop_all;
	cap->n_drop_capabilities = 1;
	cap->add_capabilities = (char **)caps;
	cap->n_add_capabilities = ncaps;
	sec->capabilities = cap;
	sec->readonly_rootfs = spec->read_only_rootfs;
}

/* A microVM's container: the launcher on the pause image, with the VMM's
 * files mounted in, the tap's device, memory for the guest and the VMM,
 * and a read-only root (its files are the mounts). The workload's env
 * stays out of it: the guest gets it in its initramfs. */
static void vm_container_config(Runtime__V1__ContainerConfig *cfg, Runtime__V1__ImageSpec *image,
				Runtime__V1__LinuxContainerResources *res,
				Runtime__V1__LinuxContainerSecurityContext *sec,
				const struct hc_vm_container *vm)
{
	image->image = (char *)hc_pause_image_name;
	cfg->command = vm->cmd.v;
	cfg->n_command = vm->cmd.n;
	cfg->mounts = (Runtime__V1__Mount **)vm->mountp;
	cfg->n_mounts = vm->nmounts;
	cfg->devices = (Runtime__V1__Device **)vm->devicep;
	cfg->n_devices = vm->ndevices;
	cfg->envs = (Runtime__V1__KeyValue **)&vm->envp;
	cfg->n_envs = 1;
	res->memory_limit_in_bytes += (int64_t)HC_VM_OVERHEAD_MB << 20;
	sec->readonly_rootfs = true;
}

static int create_container(struct hc_runtime *rt, struct pod_request *p, const char *sandbox_id,
			    const char *id, const struct hc_workload_spec *spec,
			    const struct hc_vm_container *vm, char container_id[65],
			    struct hc_err *err)
{
	Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
	Runtime__V1__ContainerConfig cfg = RUNTIME__V1__CONTAINER_CONFIG__INIT;
	Runtime__V1__ContainerMetadata meta = RUNTIME__V1__CONTAINER_METADATA__INIT;
	Runtime__V1__ImageSpec image = RUNTIME__V1__IMAGE_SPEC__INIT;
	Runtime__V1__LinuxContainerConfig linux_cfg = RUNTIME__V1__LINUX_CONTAINER_CONFIG__INIT;
	Runtime__V1__LinuxContainerResources res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
	Runtime__V1__LinuxContainerSecurityContext sec =
		RUNTIME__V1__LINUX_CONTAINER_SECURITY_CONTEXT__INIT;
	Runtime__V1__Capability cap = RUNTIME__V1__CAPABILITY__INIT;
	Runtime__V1__SecurityProfile seccomp = RUNTIME__V1__SECURITY_PROFILE__INIT;
	const char *caps[HC_RUNTIME_MAX_CAP_ADD + 16];
	size_t ncaps = hc_workload_spec_caps(spec, caps, sizeof(caps) / sizeof(caps[0]));
	Runtime__V1__CreateContainerResponse *resp = NULL;
	Runtime__V1__KeyValue *env = calloc(spec->nenv + 1, sizeof(*env));
	Runtime__V1__KeyValue **envp = calloc(spec->nenv + 1, sizeof(*envp));
	char **names = calloc(spec->nenv + 1, sizeof(*names));
	struct entries labels = { .n = 0 };
	int r = -ENOMEM;

	if (!env || !envp || !names) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i <= spec->nenv; i++) {
		Runtime__V1__KeyValue kv = RUNTIME__V1__KEY_VALUE__INIT;
		const char *e = i < spec->nenv ? spec->env[i] : NULL;

		env[i] = kv;
		envp[i] = &env[i];
		if (!e) { /* last: the workload's own id, for its logs and answers */
			env[i].key = HC_ENV_WORKLOAD_ID;
			env[i].value = (char *)id;
			continue;
		}
		names[i] = strndup(e, (size_t)(strchr(e, '=') - e));
		if (!names[i]) {
			r = hc_err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		env[i].key = names[i];
		env[i].value = strchr(e, '=') + 1;
	}
	meta.name = HC_CONTAINER_NAME;
	image.image = spec->image_ref;
	res.cpu_period = CPU_PERIOD_US;
	res.cpu_quota = (int64_t)spec->cores * CPU_PERIOD_US;
	res.cpu_shares = (int64_t)spec->cores * 1024;
	res.memory_limit_in_bytes = (int64_t)spec->memory_mb << 20;
	linux_cfg.resources = &res;
	harden(&sec, &cap, &seccomp, spec, caps, ncaps);
	linux_cfg.security_context = &sec;
	entries_add(&labels, HC_LABEL_MANAGED, "true");
	entries_add(&labels, HC_LABEL_WORKLOAD, id);
	cfg.metadata = &meta;
	cfg.image = &image;
	cfg.envs = envp;
	cfg.n_envs = spec->nenv + 1;
	cfg.labels = labels.ptrs;
	cfg.n_labels = labels.n;
	cfg.log_path = LOG_PATH;
	cfg.linux = &linux_cfg;
	if (vm)
		vm_container_config(&cfg, &image, &res, &sec, vm);
	req.pod_sandbox_id = (char *)sandbox_id;
	req.config = &cfg;
	req.sandbox_config = &p->config;
	r = hc_cri_call(rt, "RuntimeService/CreateContainer", &req.base,
			&runtime__v1__create_container_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_START_TIMEOUT_MS, "creating container",
			err);
	if (r == 0)
		copy_str(container_id, 65, resp->container_id);
out:
	for (size_t i = 0; names && i < spec->nenv; i++)
		free(names[i]);
	free(names);
	free(envp);
	free(env);
	free_msg(resp);
	return r;
}

static int start_container(struct hc_runtime *rt, const char *container_id,
			   struct hc_err *err)
{
	Runtime__V1__StartContainerRequest req = RUNTIME__V1__START_CONTAINER_REQUEST__INIT;

	req.container_id = (char *)container_id;
	return call_id(rt, "RuntimeService/StartContainer", &req.base,
		       &runtime__v1__start_container_response__descriptor, HC_CRI_START_TIMEOUT_MS,
		       "starting container", err);
}

/* The sandbox's address from CNI, into ip ("" if none). 0 or -errno. */
static int sandbox_ip(struct hc_runtime *rt, const char *sandbox_id, char ip[46],
		      struct hc_err *err)
{
	Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
	Runtime__V1__PodSandboxStatusResponse *resp = NULL;
	int r;

	req.pod_sandbox_id = (char *)sandbox_id;
	r = hc_cri_call(rt, "RuntimeService/PodSandboxStatus", &req.base,
			&runtime__v1__pod_sandbox_status_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_TIMEOUT_MS, "sandbox status", err);
	ip[0] = '\0';
	if (r == 0 && resp->status && resp->status->network)
		copy_str(ip, 46, resp->status->network->ip);
	free_msg(resp);
	return r;
}

/* The sandbox is up, nothing runs in it yet: the caller's hook (the data
 * plane's attach) goes here, before CreateContainer, so that the workload
 * never runs a single instruction without it. */
static int sandbox_ready(struct hc_runtime *rt, const char *id, const char *sandbox_id,
			 const struct hc_workload_spec *spec, struct hc_vm_net *vm_net,
			 struct hc_err *err)
{
	struct hc_runtime_sandbox sb = { .id = id, .sandbox_id = sandbox_id, .spec = spec };
	char ip[46];
	int r;

	if (vm_net && !rt->on_sandbox)
		return hc_err_set(err, -ENOTSUP, "a microVM needs the data plane: its programs "
				  "join the VM's tap to the workload's network");
	if (!rt->on_sandbox)
		return 0;
	if (vm_net) {
		r = hc_vm_net_setup(rt, sandbox_id, vm_net, err);
		if (r < 0)
			return r;
		sb.vm_netns = vm_net->netns;
		sb.vm_veth = HC_VM_VETH;
		sb.vm_tap = HC_VM_TAP;
	}
	r = sandbox_ip(rt, sandbox_id, ip, err);
	if (r < 0)
		return r;
	sb.ip = ip;
	r = rt->on_sandbox(rt->on_sandbox_arg, &sb, err);
	if (r < 0 && !err->msg[0])
		hc_err_set(err, r, "preparing the sandbox of %s: %s", id, strerror(-r));
	return r < 0 ? r : 0;
}

/* What a microVM spawn prepares besides a container's. */
struct vm_spawn {
	struct hc_vm_image image;
	char rootfs[4096];
	struct hc_vm_net net;
	struct hc_vm_container container;
};

static void vm_spawn_free(struct vm_spawn *vm)
{
	if (!vm)
		return;
	hc_vm_image_fini(&vm->image);
	hc_vm_container_fini(&vm->container);
	free(vm);
}

/* The image's process and its root filesystem as an ext4 file (made from
 * containerd's snapshot once per image). */
static int vm_image(struct hc_runtime *rt, const struct hc_workload_spec *spec,
		    struct vm_spawn **out, struct hc_err *err)
{
	struct vm_spawn *vm = calloc(1, sizeof(*vm));
	int r;

	if (!vm)
		return hc_err_set(err, -ENOMEM, "out of memory");
	r = hc_vm_image_info(rt, spec->image_ref, &vm->image, err);
	if (r == 0)
		r = hc_vm_rootfs(rt, &vm->image, vm->rootfs, sizeof(vm->rootfs), err);
	if (r < 0) {
		vm_spawn_free(vm);
		return r;
	}
	*out = vm;
	return 0;
}

/* hc_runtime_spawn() once the id is known, each phase told to the
 * progress tracking. */
static int spawn_as(struct hc_runtime *rt, const struct hc_workload_spec *spec, const char *wid,
		    struct hc_workload *out, struct hc_err *err)
{
	struct hc_workload_spec stored;
	char sandbox_id[65], container_id[65];
	struct pod_request *pod = NULL;
	char *spec_json = NULL;
	struct vm_spawn *vm = NULL;
	int r;

	r = check_capacity(rt, spec, err);
	if (r < 0)
		return r;
	HC_FAULT("spawn:before_pull");
	r = image_present(rt, spec->image_ref, err);
	if (r == 0) {
		hc_runtime_track_pulling(rt, wid);
		r = pull_image(rt, spec->image_ref, err);
	}
	if (r < 0)
		return r;
	if (hc_spec_is_vm(spec) && (r = vm_image(rt, spec, &vm, err)) < 0)
		return r;
	HC_FAULT("spawn:after_pull");
	hc_runtime_track_phase(rt, wid, HC_SPAWN_SANDBOX);

	/* the request is stored with the pids limit it got, not "default" */
	stored = *spec;
	stored.pids_limit = hc_workload_spec_pids_limit(spec);
	spec_json = hc_workload_spec_to_json(&stored);
	pod = calloc(1, sizeof(*pod));
	if (!spec_json || !pod) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	pod_request_init(pod, rt, wid, spec, spec_json);
	r = hc_runtime_find(rt, wid, sandbox_id, container_id, err);
	if (r == 0) /* its cgroup is not ours to touch either */
		r = hc_err_set(err, -EEXIST, "a workload with id %s exists", wid);
	if (r != -ENOENT)
		goto out;
	r = hc_runtime_cgroup_prepare(rt->cgroup_parent, wid, stored.pids_limit, err);
	if (r == 0)
		r = run_sandbox(rt, pod, spec, sandbox_id, err);
	if (r == -EEXIST)
		goto out; /* the existing workload is not ours to undo */
	if (r == 0)
		HC_FAULT("spawn:after_sandbox");
	if (r == 0)
		r = sandbox_ready(rt, wid, sandbox_id, spec, vm ? &vm->net : NULL, err);
	if (r == 0 && vm)
		r = hc_vm_container_init(rt, wid, spec, &vm->image, &vm->net, vm->rootfs,
					 &vm->container, err);
	if (r == 0) {
		hc_runtime_track_phase(rt, wid, HC_SPAWN_CONTAINER);
		r = create_container(rt, pod, sandbox_id, wid, spec, vm ? &vm->container : NULL,
				     container_id, err);
	}
	if (r == 0)
		HC_FAULT("spawn:after_create");
	if (r == 0) {
		hc_runtime_track_phase(rt, wid, HC_SPAWN_START);
		r = start_container(rt, container_id, err);
	}
	if (r == 0)
		HC_FAULT("spawn:after_start");
	if (r < 0) {
		undo_spawn(rt, wid);
		goto out;
	}
	r = hc_runtime_get(rt, wid, out, err);
	if (r == 0)
		hc_log(HC_LOG_INFO, "spawned workload %s image=%s ip=%s", wid, spec->image_ref, out->ip);
out:
	free(pod);
	free(spec_json);
	vm_spawn_free(vm);
	return r;
}

int hc_runtime_spawn(struct hc_runtime *rt, const struct hc_workload_spec *spec, const char *id,
		     struct hc_workload *out, struct hc_err *err)
{
	char wid[HC_WORKLOAD_ID_LEN + 1];
	int r;

	memset(out, 0, sizeof(*out));
	r = hc_workload_spec_validate(spec, err);
	if (r < 0)
		return r;
	if (id && !hc_uuid_valid(id))
		return hc_err_set(err, -EINVAL, "invalid workload id \"%.64s\" (want a UUID)", id);
	if (id)
		copy_str(wid, sizeof(wid), id);
	else if ((r = hc_uuid_new(wid)) < 0)
		return hc_err_set(err, r, "cannot generate an id: %s", strerror(-r));
	hc_runtime_track_begin(rt, wid);
	r = spawn_as(rt, spec, wid, out, err);
	hc_runtime_track_end(rt, wid);
	return r;
}

/* ---- stats ---- */

int hc_runtime_stats(struct hc_runtime *rt, const char *id, struct hc_workload_stats *out,
		     struct hc_err *err)
{
	Runtime__V1__ContainerStatsRequest req = RUNTIME__V1__CONTAINER_STATS_REQUEST__INIT;
	Runtime__V1__ContainerStatsResponse *resp = NULL;
	struct hc_workload w;
	int r;

	memset(out, 0, sizeof(*out));
	r = hc_runtime_get(rt, id, &w, err);
	if (r < 0)
		return r;
	out->memory_limit = (uint64_t)w.spec.memory_mb << 20;
	if (!w.container_id[0]) {
		r = hc_err_set(err, -ENOENT, "workload %s has no container", id);
		goto out;
	}
	req.container_id = w.container_id;
	r = hc_cri_call(rt, "RuntimeService/ContainerStats", &req.base,
			&runtime__v1__container_stats_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_TIMEOUT_MS, "container stats", err);
	if (r < 0)
		goto out;
	if (resp->stats && resp->stats->cpu) {
		out->timestamp_ns = resp->stats->cpu->timestamp;
		if (resp->stats->cpu->usage_core_nano_seconds)
			out->cpu_ns = resp->stats->cpu->usage_core_nano_seconds->value;
	}
	if (resp->stats && resp->stats->memory) {
		if (resp->stats->memory->working_set_bytes)
			out->memory_working_set = resp->stats->memory->working_set_bytes->value;
		if (resp->stats->memory->usage_bytes)
			out->memory_usage = resp->stats->memory->usage_bytes->value;
	}
out:
	free_msg(resp);
	hc_workload_fini(&w);
	return r;
}

/* ---- orphans ---- */

int hc_runtime_collect_orphans(struct hc_runtime *rt, int min_age_s, struct hc_err *err)
{
	struct hc_workload *list;
	size_t n;
	struct timespec now;
	int r, removed = 0;

	if (pthread_rwlock_trywrlock(&rt->teardown_lock) != 0)
		return 0; /* a stop is under way: the next round looks */
	r = hc_runtime_list(rt, &list, &n, err);
	if (r < 0) {
		pthread_rwlock_unlock(&rt->teardown_lock);
		return r;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	for (size_t i = 0; i < n; i++) {
		struct hc_workload *w = &list[i];
		int64_t age_s = now.tv_sec - w->created_ns / 1000000000;

		/* a spawn that died between RunPodSandbox and StartContainer */
		if (w->started_ns || !hc_uuid_valid(w->id) ||
		    (age_s < min_age_s && (int64_t)w->created_ns >= rt->orphans_before_ns))
			continue;
		hc_log(HC_LOG_WARN, "removing half-created workload %s (sandbox %s, %lld s old)",
		       w->id, w->sandbox_id, (long long)age_s);
		if (stop_workload(rt, w->id, 0, err) == 0)
			removed++;
	}
	pthread_rwlock_unlock(&rt->teardown_lock);
	hc_workload_list_free(list, n);
	return removed;
}
