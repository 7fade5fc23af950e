/* Internals shared by the runtime module's files; not for other modules. */
#ifndef HC_RUNTIME_INT_H
#define HC_RUNTIME_INT_H

#include <jansson.h>
#include <pthread.h>

#include "cri.pb-c.h"
#include "rpc/rpc.h"
#include "runtime/runtime.h"

/* Labels and annotations hypercore puts on its sandboxes. The request
 * annotation has upstream's name and JSON (a VmSpawnRequest). */
#define HC_LABEL_MANAGED "io.hypercore.managed"
#define HC_LABEL_WORKLOAD "io.hypercore.workload"
#define HC_ANNOTATION_REQUEST "hypercore-request-payload"
#define HC_SANDBOX_NAMESPACE "hypercore"
#define HC_CONTAINER_NAME "workload"
#define HC_ENV_WORKLOAD_ID "HC_WORKLOAD_ID"

/* CRI calls that may take a while: pulls and sandbox starts. */
#define HC_CRI_TIMEOUT_MS 30000
#define HC_CRI_PULL_TIMEOUT_MS 600000
#define HC_CRI_START_TIMEOUT_MS 120000

/* A gRPC channel to containerd, shared by the calls in flight on it. */
struct hc_cri_chan {
	struct hc_rpc_client *client;
	unsigned refs; /* the runtime's own (while current) + one per call; under rt->lock */
};

/*
 * One client may serve several threads at once (the agent's job pool):
 * hc_rpc_client calls are thread-safe, and the channel is swapped for a
 * fresh one after containerd went away under the lock, the old one living
 * on until the last call made on it returned.
 */
struct hc_runtime {
	pthread_mutex_t lock;	  /* chan, reconnect */
	struct hc_cri_chan *chan; /* the current channel */
	bool reconnect;		  /* a call on chan found containerd gone */
	char *socket;
	char *target; /* "unix:<socket>" */
	char *log_root; /* <state_dir>/logs */
	char *cgroup_parent;
	uint32_t capacity_cpus;
	uint32_t capacity_mem_mb;
	int64_t orphans_before_ns; /* see hc_runtime_config */
	uint64_t log_max_size;
	unsigned log_max_files;
	struct hc_crilog_marks *log_marks; /* where readers stopped (crilog_int.h) */
	hc_runtime_sandbox_fn *on_sandbox;
	void *on_sandbox_arg;
	struct spawn_track *spawns; /* in flight (progress.c), under lock */
	size_t nspawns;
};

/* progress.c: hc_runtime_spawn() says where it is, for hc_runtime_progress().
 * Tracking is best effort: out of memory, a spawn is just not shown. */
void hc_runtime_track_begin(struct hc_runtime *rt, const char *id);
void hc_runtime_track_phase(struct hc_runtime *rt, const char *id, enum hc_spawn_phase phase);
/* The image of spawn id is being pulled (it was not there). */
void hc_runtime_track_pulling(struct hc_runtime *rt, const char *id);
void hc_runtime_track_end(struct hc_runtime *rt, const char *id);
/* Frees what tracking holds, at hc_runtime_free(). */
void hc_runtime_track_fini(struct hc_runtime *rt);

/* A call to any of containerd's gRPC services by its full path, with
 * metadata md (e.g. containerd-namespace); errors as hc_cri_call. */
int hc_containerd_call(struct hc_runtime *rt, const char *path, const struct hc_rpc_metadata *md,
		       size_t nmd, const ProtobufCMessage *req,
		       const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp,
		       int timeout_ms, const char *what, struct hc_err *err);

/* logs.c, for the watch: rotates the log of a running workload (container
 * container_id) if it holds at least min_size bytes (the watch passes less
 * than the cap for a fast writer). 1 rotated, 0 not needed, -errno. */
int hc_runtime_log_rotate(struct hc_runtime *rt, const char *log_path, const char *container_id,
			  uint64_t min_size, struct hc_err *err);

/* path made absolute against the working directory (malloc'd), or NULL. */
char *hc_runtime_abspath(const char *path);

/* Whether something accepts connections on the unix socket path: 0 or
 * -errno (-ENOENT, -ECONNREFUSED...). */
int hc_cri_socket_probe(const char *path);

/*
 * One CRI call: "RuntimeService/RunPodSandbox" etc. On failure maps the gRPC
 * status to -errno (NOT_FOUND -> -ENOENT, UNAVAILABLE -> -ECONNREFUSED,
 * DEADLINE_EXCEEDED -> -ETIMEDOUT, others -EIO) and puts "what: message"
 * into err.
 */
int hc_cri_call(struct hc_runtime *rt, const char *method, const ProtobufCMessage *req,
		const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp, int timeout_ms,
		const char *what, struct hc_err *err);

/* The value of key in a CRI map (repeated entries), or NULL. */
const char *hc_cri_map_get(Runtime__V1__StringEntry *const *entries, size_t n, const char *key);

/* spec.c: the stored request, as upstream's VmSpawnRequest JSON plus our
 * extra keys (labels, runtime). */
char *hc_workload_spec_to_json(const struct hc_workload_spec *spec);
int hc_workload_spec_from_json(const char *text, struct hc_workload_spec *spec);
int hc_image_ref_valid(const char *ref);

/* exec.c / logs.c use these from runtime.c: the workload's sandbox and
 * container ids (container_id may come back empty). */
int hc_runtime_find(struct hc_runtime *rt, const char *id, char sandbox_id[65],
		    char container_id[65], struct hc_err *err);

/* Capacity as hc_runtime_capacity() counts it, from a listing the caller
 * already has (hc_runtime_list's), so that figures and list agree. */
void hc_runtime_capacity_of(const struct hc_runtime *rt, const struct hc_workload *list,
			    size_t n, struct hc_runtime_capacity *out);

/* cgroup.c: the workload's own cgroup parent <parent>/<id>, made before its
 * sandbox with pids.max set (0 or -errno with err), removed after it in
 * every hierarchy (what is not there is skipped). */
int hc_runtime_cgroup_prepare(const char *parent, const char *id, uint32_t pids_max,
			      struct hc_err *err);
void hc_runtime_cgroup_remove(const char *parent, const char *id);

/* The pause image linked into the binary (pause_image.S). */
extern const unsigned char hc_pause_image_start[];
extern const unsigned char hc_pause_image_end[];
extern const char hc_pause_image_name[];

#endif /* HC_RUNTIME_INT_H */
