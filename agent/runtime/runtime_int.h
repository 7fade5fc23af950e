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
	/* Stops hold it shared; the orphan collector exclusively and only if
	 * it can at once: a workload a stop has taken the container of looks
	 * half-created, and the collector removing its sandbox meanwhile made
	 * the stop fail (and the workload come back by its restart policy). */
	pthread_rwlock_t teardown_lock;
	struct hc_cri_chan *chan; /* the current channel */
	bool reconnect;		  /* a call on chan found containerd gone */
	char *socket;
	char *target; /* "unix:<socket>" */
	char *log_root; /* <state_dir>/logs */
	char *vm_root;	/* <state_dir>/vm: microVMs' boot files, root images, run dirs */
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

/* Removes the tree at path (what is already gone is fine; the rest is
 * logged). */
void hc_runtime_remove_tree(const char *path);

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

/* ---- microVM workloads (vm*.c, vmm_qemu.c; docs/runtime.md, "MicroVMs") ---- */

/* The VMM beside the guest's RAM (QEMU's own heap, TCG's translation cache,
 * the launcher): added to the container's memory limit and to what the
 * workload holds in capacity accounting. */
#define HC_VM_OVERHEAD_MB 128
#define HC_VM_MIN_MEM_MB 64 /* the guest kernel and init need about 40 */

/* Whether spec asks for a microVM (runtime "microvm"). */
bool hc_spec_is_vm(const struct hc_workload_spec *spec);

/* A growable NULL-terminated string vector. */
struct hc_strv {
	char **v;
	size_t n, cap;
};
/* Appends a formatted string. 0 or -ENOMEM. */
int hc_strv_add(struct hc_strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hc_strv_fini(struct hc_strv *s);

/* What a VMM is given to boot one VM; paths as the VMM's container sees
 * them (vm.c mounts them there). */
struct hc_vm_launch {
	const char *kernel, *initrd, *rootfs, *console, *ctl_sock;
	const char *tap, *mac;
	uint32_t cores, memory_mb;
	bool kvm, read_only;
};

/*
 * A VMM behind the launcher (guest/vmm.c): QEMU's microvm machine today.
 * Another VMM (Firecracker, Cloud Hypervisor) is another table: its binary,
 * how to tell whether hardware acceleration starts, and its command line
 * for a launch, with the guest channel on launch->ctl_sock (a unix socket
 * the launcher listens on) and the network on the tap launch->tap.
 */
struct hc_vmm_ops {
	const char *name;
	const char *binary; /* host path; mounted into the container under /usr */
	/* 1 when a VM with KVM boots here, 0 when not (why says so), <0 -errno */
	int (*kvm_works)(const char *kernel, char *why, size_t len);
	int (*argv)(const struct hc_vm_launch *l, struct hc_strv *out);
};
extern const struct hc_vmm_ops hc_vmm_qemu_microvm;

/* The VMM and the kernel a node uses; NULL/"" when none is installed. */
const struct hc_vmm_ops *hc_vm_vmm(void);
/* The guest kernel (--vm-kernel, else $HC_VM_KERNEL, else the newest
 * /boot/vmlinuz-*-cloud-amd64)
 * into path, its release into release. 0 or -ENOENT. */
int hc_vm_kernel(char *path, size_t plen, char *release, size_t rlen);
/* Whether VMs get KVM here: probed once per boot of the host (a VM booted
 * with KVM must show its kernel's first line within seconds), the answer
 * kept in <cache_dir>/kvm-probe with the host's boot id (NULL: once per
 * process), logged when probed. */
bool hc_vm_kvm(const char *cache_dir, const char *kernel);

/* The workload's network as the guest gets it, read in its sandbox. */
struct hc_vm_net {
	char netns[4096];
	char ip[16], gw[16], mac[18];
	unsigned prefix;
};

/* The image's process: entrypoint + cmd, env, working dir, user; and how
 * to find its unpacked layers. */
struct hc_vm_image {
	struct hc_strv argv, env;
	char *workdir, *user;
	char chain_id[80], image_id[80];
};
void hc_vm_image_fini(struct hc_vm_image *img);

/* ImageStatus (verbose) of ref: the image config and chain id. 0 or -errno. */
int hc_vm_image_info(struct hc_runtime *rt, const char *ref, struct hc_vm_image *img,
		     struct hc_err *err);

/* The image's root filesystem as an ext4 file cached per image id under
 * <vm_root>/images (made from containerd's snapshot the first time), into
 * path. 0 or -errno. Blocks (mke2fs: seconds for a big image). */
int hc_vm_rootfs(struct hc_runtime *rt, const struct hc_vm_image *img, char *path, size_t len,
		 struct hc_err *err);

/* Makes tap HC_VM_TAP in the sandbox's network namespace (persistent,
 * owned by root, up, the veth's MTU) and reads eth0's address, prefix,
 * MAC and gateway into net. 0 or -errno. */
#define HC_VM_TAP "tap0"
#define HC_VM_VETH "eth0"
int hc_vm_net_setup(struct hc_runtime *rt, const char *sandbox_id, struct hc_vm_net *net,
		    struct hc_err *err);

/* Writes the VM's files under <vm_root>/run/<id> (the initramfs with the
 * guest's spec) and its container's command, mounts and devices into c. */
struct hc_vm_container {
	struct hc_strv cmd;
	Runtime__V1__Mount mounts[8], *mountp[8];
	size_t nmounts;
	Runtime__V1__Device devices[2], *devicep[2];
	size_t ndevices;
	Runtime__V1__KeyValue env, *envp;
	char dir[4096], kernel[4096], rootfs[4096], vmm[4096];
};
int hc_vm_container_init(struct hc_runtime *rt, const char *id,
			 const struct hc_workload_spec *spec, const struct hc_vm_image *img,
			 const struct hc_vm_net *net, const char *rootfs,
			 struct hc_vm_container *c, struct hc_err *err);
void hc_vm_container_fini(struct hc_vm_container *c);

/* Removes <vm_root>/run/<id> (what a stopped VM leaves). */
void hc_vm_remove_dir(struct hc_runtime *rt, const char *id);

/* The command attach runs in a VM's container for argv (hc-vmm attach). */
int hc_vm_attach_argv(char *const argv[], struct hc_strv *out);

/* The launcher and guest init linked into the binary (vm_blobs.S). */
extern const unsigned char hc_vm_init_start[], hc_vm_init_end[];
extern const unsigned char hc_vm_vmm_start[], hc_vm_vmm_end[];

/* The pause image linked into the binary (pause_image.S). */
extern const unsigned char hc_pause_image_start[];
extern const unsigned char hc_pause_image_end[];
extern const char hc_pause_image_name[];

#endif /* HC_RUNTIME_INT_H */
