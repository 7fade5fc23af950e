/*
 * Workloads as CRI pod sandboxes in containerd, and the embedded containerd.
 *
 * A workload is one pod sandbox (own network namespace, an address on the
 * workload subnet from CNI) holding one container with CPU and memory limits.
 * Its id is a UUID used as the sandbox name, its hostname and a label; the
 * spawn request travels with it as an annotation in upstream's JSON, so
 * everything list() reports is read back from containerd and survives agent
 * restarts. containerd is reached through its CRI gRPC API (runtime.v1).
 *
 * The client calls block (they are gRPC calls to containerd): the CLI calls
 * them directly, the agent from a worker thread, never from its loop thread.
 */
#ifndef HC_RUNTIME_H
#define HC_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hypercore/defaults.h"

#include "base/base.h"

struct hc_loop;
struct hc_metrics;

/* ---- paths and defaults ---- */

#define HC_RUNTIME_DEFAULT_STATE_DIR HC_DEFAULT_STATE_DIR
#define HC_RUNTIME_DEFAULT_RUN_DIR "/run/hypercore"
#define HC_RUNTIME_DEFAULT_CGROUP_PARENT "/hypercore"
#define HC_RUNTIME_DEFAULT_CPUS 1
#define HC_RUNTIME_DEFAULT_MEM_MB 512
#define HC_RUNTIME_MIN_MEM_MB 8 /* runc refuses limits below 6 MiB */
#define HC_RUNTIME_MAX_PORTS 64
#define HC_RUNTIME_MAX_ENV 256
#define HC_RUNTIME_MAX_LABELS 64
#define HC_RUNTIME_DEFAULT_PIDS_LIMIT 1024
#define HC_RUNTIME_MIN_PIDS_LIMIT 8 /* the pause process and a shell's first forks */
#define HC_RUNTIME_MAX_PIDS_LIMIT 4194304 /* the kernel's pid_max ceiling */
#define HC_RUNTIME_MAX_CAP_ADD 41

/* Socket path of the embedded containerd under run_dir, into buf. */
int hc_runtime_socket_path(const char *run_dir, char *buf, size_t len);

/* ---- the CRI client ---- */

struct hc_workload_spec;

/* A spawn's sandbox is up (RunPodSandbox done: network namespace, veth and
 * address from CNI) and nothing of the workload runs yet. */
struct hc_runtime_sandbox {
	const char *id;	/* the workload id */
	const char *sandbox_id;
	const char *ip; /* its address on the workload subnet; "" if CNI gave none */
	const struct hc_workload_spec *spec;
	/* A microVM's: the sandbox's network namespace, where the tap
	 * vm_tap waits to be joined to the CNI veth's end vm_veth (the hook
	 * must: hc_dataplane_tap_join). NULL for a container. */
	const char *vm_netns, *vm_veth, *vm_tap;
};

/* Called by hc_runtime_spawn() on the spawning thread, between RunPodSandbox
 * and CreateContainer: the agent attaches the workload's TC program there,
 * so the workload's first instruction already runs isolated. 0 to go on;
 * -errno (with err) fails the spawn, which then removes the sandbox. */
typedef int hc_runtime_sandbox_fn(void *arg, const struct hc_runtime_sandbox *sb,
				  struct hc_err *err);

struct hc_runtime_config {
	const char *socket;	   /* containerd's socket (required) */
	const char *state_dir;	   /* workload logs go to <state_dir>/logs */
	const char *cgroup_parent; /* NULL: HC_RUNTIME_DEFAULT_CGROUP_PARENT */
	uint32_t capacity_cpus;	   /* 0: max(nproc, 225), as upstream */
	uint32_t capacity_mem_mb;  /* 0: MemAvailable plus what workloads hold */
	uint64_t log_max_size;	   /* a workload's log is rotated past it; 0: default */
	unsigned log_max_files;	   /* rotated files kept besides the current; 0: default */
	hc_runtime_sandbox_fn *on_sandbox; /* NULL: nothing between sandbox and container */
	void *on_sandbox_arg;
	/* The embedded containerd's CNI leases (hc_containerd_lease_dir) and
	 * subnet: the watch collects leases whose sandbox is gone and reports
	 * the free addresses. NULL: not ours to look after (an external
	 * containerd). */
	const char *lease_dir;
	const char *subnet;
	/* Unix ns; 0: none. A sandbox without a started container made before
	 * it is no spawn in progress but one a crash left: the agent's own
	 * containerd started after it, so no spawn can still be running on
	 * it. hc_runtime_collect_orphans removes such ones at once. */
	int64_t orphans_before_ns;
};

/* Logs: at most (files + 1) x size per workload, plus what is written
 * between two checks (the watch looks every HC_RUNTIME_LOG_CHECK_MS). */
#define HC_RUNTIME_DEFAULT_LOG_MAX_SIZE (10ull << 20)
#define HC_RUNTIME_DEFAULT_LOG_MAX_FILES 3
#define HC_RUNTIME_LOG_MIN_SIZE (64ull << 10)
#define HC_RUNTIME_LOG_MAX_FILES 32
#define HC_RUNTIME_LOG_CHECK_MS 200

struct hc_runtime;

/* Errors: -errno, with one readable line in a struct hc_err (base.h). */

/* Allocates a client; connects lazily. NULL + errno on allocation failure. */
struct hc_runtime *hc_runtime_new(const struct hc_runtime_config *cfg);
void hc_runtime_free(struct hc_runtime *rt);

/* Sets the client's on_sandbox hook (as hc_runtime_config's) after it was
 * made: the agent's shared client gets it once the data plane is up. Call
 * before any spawn runs on rt; not synchronised with calls in flight. */
void hc_runtime_set_on_sandbox(struct hc_runtime *rt, hc_runtime_sandbox_fn *fn, void *arg);

/* Whether something accepts connections on the socket now (no gRPC call);
 * 0, or -ENOENT / -ECONNREFUSED / -EACCES... with err saying what is missing. */
int hc_runtime_probe(const struct hc_runtime *rt, struct hc_err *err);

/* CRI Version + Status: 0 when the runtime and its network are ready;
 * -EAGAIN while CNI is not loaded yet; other -errno otherwise. */
int hc_runtime_ready(struct hc_runtime *rt, int timeout_ms, struct hc_err *err);

struct hc_port_map {
	uint16_t host;
	uint16_t container;
	bool h2c; /* "/h2c": the container speaks HTTP/2 without TLS (the proxy's HTTP/2 goes as is) */
};

struct hc_label {
	char *key;
	char *value;
};

/* What a workload was asked to be; stored on the workload. */
struct hc_workload_spec {
	char *image_ref;
	uint32_t cores;	    /* whole vCPUs; CPU quota = cores * period */
	uint32_t memory_mb; /* memory limit */
	char **env;	    /* "KEY=VALUE" */
	size_t nenv;
	struct hc_port_map *ports; /* host port -> container port (recorded; exposed by the proxy) */
	size_t nports;
	struct hc_label *labels;
	size_t nlabels;
	char *runtime_handler; /* NULL/"runc", "runsc" or "microvm" */
	/* Hardening beyond the fixed defaults (seccomp RuntimeDefault,
	 * no_new_privs, HC_RUNTIME_DEFAULT_CAPS): docs/runtime.md. */
	char **cap_add;	     /* capability names, no CAP_ prefix, upper case */
	size_t ncap_add;
	uint32_t pids_limit; /* 0: HC_RUNTIME_DEFAULT_PIDS_LIMIT */
	bool read_only_rootfs;
};

void hc_workload_spec_fini(struct hc_workload_spec *spec);

/* The capabilities every workload gets, containerd's default set without
 * NET_RAW, MKNOD, SETFCAP, SETPCAP, SYS_CHROOT and AUDIT_WRITE: what a web
 * service needs to prepare its files as root, drop to a user of its own,
 * signal its children and listen below 1024. */
#define HC_RUNTIME_DEFAULT_CAPS                                                          \
	"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",         \
		"NET_BIND_SERVICE"

/* Adds a capability to spec->cap_add: a Linux capability name, with or
 * without CAP_, any case ("net_raw", "CAP_NET_RAW"), stored as "NET_RAW";
 * a repeat or a default one is accepted and not stored twice. 0, or
 * -EINVAL (unknown name) / -ENOMEM with err. */
int hc_workload_spec_add_cap(struct hc_workload_spec *spec, const char *name,
			     struct hc_err *err);

/* The capabilities a workload of this spec runs with: the defaults, then
 * cap_add; up to max names into out (static strings). Returns the count. */
size_t hc_workload_spec_caps(const struct hc_workload_spec *spec, const char **out, size_t max);

/* The pids limit a spec asks for (its own or the default). */
uint32_t hc_workload_spec_pids_limit(const struct hc_workload_spec *spec);

/* The label that limits a workload's egress (what it sends), in whole
 * Mbit/s; the data plane enforces it on the workload's veth. */
#define HC_LABEL_EGRESS_MBIT "hypercore.egress-mbit"
#define HC_EGRESS_MBIT_MAX 100000

/* The label that says what the agent does when the workload exits (see
 * enum hc_restart_policy); no label: the agent's --default-restart. */
#define HC_LABEL_RESTART "hypercore.restart"

enum hc_restart_policy {
	HC_RESTART_UNSET,      /* not said: the default applies */
	HC_RESTART_ALWAYS,     /* bring it back whatever its exit code (upstream's way) */
	HC_RESTART_ON_FAILURE, /* only when its exit code is not 0 */
	HC_RESTART_NEVER,      /* an exit is final */
};

/* "always", "on-failure", "never"; "" for UNSET. */
const char *hc_restart_policy_name(enum hc_restart_policy p);
/* The policy of a name above (not ""), or HC_RESTART_UNSET for anything else. */
enum hc_restart_policy hc_restart_policy_parse(const char *name);
/* The policy a spec's label asks for; UNSET without one. */
enum hc_restart_policy hc_workload_spec_restart(const struct hc_workload_spec *spec);

/* The egress limit a spec asks for, in bytes per second; 0 = none. */
uint64_t hc_workload_spec_egress_bytes(const struct hc_workload_spec *spec);

/* Checks a spec without side effects: a parsable image reference, cores and
 * memory in range, env as KEY=VALUE, ports 1..65535 without duplicates,
 * label keys, a known runtime handler. 0 or -EINVAL with err. */
int hc_workload_spec_validate(const struct hc_workload_spec *spec, struct hc_err *err);

/* Parses "HOST:CONTAINER[,HOST:CONTAINER...]" (or bare "PORT" = same on both
 * sides) into spec->ports, appending. 0 or -EINVAL with err. */
int hc_workload_spec_parse_ports(struct hc_workload_spec *spec, const char *text,
				 struct hc_err *err);

enum hc_workload_state {
	HC_WORKLOAD_CREATED, /* container created, not started (transient) */
	HC_WORKLOAD_RUNNING,
	HC_WORKLOAD_EXITED,  /* its process ended; exit_code says how */
	HC_WORKLOAD_UNKNOWN, /* no container, or the sandbox is not ready */
};

const char *hc_workload_state_name(enum hc_workload_state s);

#define HC_WORKLOAD_ID_LEN HC_UUID_LEN /* a workload id is a UUID (base.h) */

struct hc_workload {
	char id[HC_WORKLOAD_ID_LEN + 1];
	enum hc_workload_state state;
	char ip[46];		  /* workload subnet address; "" if none */
	char sandbox_id[65];
	char container_id[65];
	char image_id[80];	  /* sha256:... */
	int exit_code;		  /* valid when EXITED */
	char reason[32];	  /* containerd's: Completed, Error, OOMKilled */
	int64_t created_ns;	  /* sandbox creation, ns since the epoch */
	int64_t started_ns;	  /* container start; 0 if never */
	int64_t finished_ns;	  /* container end; 0 while running */
	char log_path[4096];	  /* absolute; "" if none */
	char runtime_handler[16];
	struct hc_workload_spec spec; /* the original request */
	char *spec_json;	      /* the same, as stored (upstream's JSON) */
};

void hc_workload_fini(struct hc_workload *w);
void hc_workload_list_free(struct hc_workload *list, size_t n);

/*
 * Starts a workload: checks the spec and the capacity, pulls the image when
 * absent, runs the sandbox (the IP comes from CNI), creates the container
 * with the limits and starts it. id: a preset id (the cluster chooses ids) or
 * NULL to generate one. On success fills *out (caller finis it) and returns 0.
 * On failure nothing is left behind and -errno returns with err:
 * -EINVAL bad spec, -ENOSPC over capacity, -ENOENT image not found,
 * -EEXIST id in use, -EHOSTUNREACH registry unreachable, -ECONNREFUSED
 * containerd not running, -EIO anything else containerd refused.
 * Blocks for the pull and the start (seconds).
 */
int hc_runtime_spawn(struct hc_runtime *rt, const struct hc_workload_spec *spec, const char *id,
		     struct hc_workload *out, struct hc_err *err);

/* Stops and removes the workload: container, sandbox (netns, IP), log
 * directory. A partly torn-down workload is finished off. -ENOENT if no
 * workload has this id. Blocks up to the stop grace period (grace_s). */
int hc_runtime_stop(struct hc_runtime *rt, const char *id, int grace_s,
		    struct hc_err *err);

/* Every workload of this runtime (managed by hypercore), oldest first.
 * *list is the caller's (hc_workload_list_free). 0 or -errno. */
int hc_runtime_list(struct hc_runtime *rt, struct hc_workload **list, size_t *n,
		    struct hc_err *err);

/* One workload by id. 0, -ENOENT or -errno. */
int hc_runtime_get(struct hc_runtime *rt, const char *id, struct hc_workload *out,
		   struct hc_err *err);

struct hc_workload_stats {
	int64_t timestamp_ns;
	uint64_t cpu_ns;	     /* cumulative CPU time */
	uint64_t memory_working_set; /* bytes */
	uint64_t memory_usage;	     /* bytes */
	uint64_t memory_limit;	     /* bytes, 0 if none */
};

int hc_runtime_stats(struct hc_runtime *rt, const char *id, struct hc_workload_stats *out,
		     struct hc_err *err);

/* Workload id's CPU time (ns, cumulative) and memory in use (bytes) from
 * its cgroup <parent>/<id> (parent NULL: HC_RUNTIME_DEFAULT_CGROUP_PARENT;
 * v2: cpu.stat usage_usec and memory.current; v1: cpuacct.usage and
 * memory.usage_in_bytes): two small file reads, no CRI call, so it can run
 * every period for every workload. 0 or -errno (-ENOENT: no such cgroup). */
int hc_runtime_cgroup_usage(const char *parent, const char *id, uint64_t *cpu_ns,
			    uint64_t *memory_bytes);

struct hc_runtime_capacity {
	uint32_t cpus_total, cpus_used;
	uint64_t mem_total_mb, mem_used_mb;
	size_t workloads;
};

/* Whether a workload of spec fits in cap: 0, or -ENOSPC with err saying
 * what is short ("not enough CPU: …", "not enough memory: N MB requested,
 * F MB free … --capacity-mem …"), for a spawn and a cluster's dry run alike. */
int hc_runtime_capacity_check(const struct hc_runtime_capacity *cap,
			      const struct hc_workload_spec *spec, struct hc_err *err);

/* The memory a workload of spec holds on the node in MB: its limit, plus
 * the VMM's overhead for a microVM. */
uint32_t hc_workload_spec_mem_held(const struct hc_workload_spec *spec);

/* Capacity from the running workloads' specs and the config. 0 or -errno. */
int hc_runtime_capacity(struct hc_runtime *rt, struct hc_runtime_capacity *out,
			struct hc_err *err);

/* Removes sandboxes of ours that never got a started container and are older
 * than min_age_s, or made before the config's orphans_before_ns (left by a
 * crash mid-spawn). Returns how many, or -errno. */
int hc_runtime_collect_orphans(struct hc_runtime *rt, int min_age_s, struct hc_err *err);

/* ---- logs ---- */

enum hc_log_stream { HC_LOG_STDOUT = 1, HC_LOG_STDERR = 2 };

/* One output line (P records reassembled), valid during the callback. */
struct hc_log_line {
	enum hc_log_stream stream;
	const char *timestamp; /* RFC 3339 with nanoseconds, as containerd wrote it */
	const char *text;
	size_t len;
	bool truncated;
};

typedef int hc_runtime_log_fn(void *arg, const struct hc_log_line *line);

/* Calls fn for the last tail lines of the workload's log (tail < 0: all),
 * reaching into its rotated files when the current one holds fewer, then,
 * with follow, for new lines (going on in the new file after a rotation)
 * until fn returns nonzero, stop_fd becomes readable or the workload is
 * gone. 0, -ENOENT or -errno. Blocks. */
int hc_runtime_logs(struct hc_runtime *rt, const char *id, long tail, bool follow, int stop_fd,
		    hc_runtime_log_fn *fn, void *arg, struct hc_err *err);

/*
 * Numbered reads, for the APIs: calls fn for the lines from from_line on
 * (lines are numbered from the workload's first, across rotations), the
 * last tail of them (0: no limit), read from at most window bytes back from
 * the log's end (0: no limit); *next_line is what the next read asks for.
 * A read that continues where the last one ended (a follower) starts at the
 * offset remembered for it; a tail is found backwards: the cost is what is
 * returned plus what was written since. Safe from several threads at once.
 * 0, -ENOENT (no such workload, or no output yet: err says) or -errno. Blocks
 * on a CRI call and the files.
 */
int hc_runtime_logs_lines(struct hc_runtime *rt, const char *id, uint32_t tail,
			  uint64_t from_line, uint64_t window, hc_runtime_log_fn *fn, void *arg,
			  uint64_t *next_line, struct hc_err *err);

/* ---- interactive exec (hypercore attach) ---- */

struct hc_runtime_exec_io {
	int in_fd, out_fd, err_fd;
	int tty_fd;  /* a terminal whose size is forwarded, or -1 */
	int winch_fd; /* readable when the terminal size changed, or -1 */
};

/* Runs argv in the workload through CRI Exec and the streaming server,
 * forwarding io until the command ends; *exit_code is its exit status.
 * With tty, stderr is merged into stdout. 0 or -errno. Blocks. */
int hc_runtime_exec(struct hc_runtime *rt, const char *id, char *const argv[], bool tty,
		    const struct hc_runtime_exec_io *io, int *exit_code, struct hc_err *err);

/* ---- watching workloads from the agent ---- */

/* A workload whose process ended. */
struct hc_runtime_exit {
	char id[HC_WORKLOAD_ID_LEN + 1];
	int exit_code;
	char reason[32];
	int64_t finished_ns;
};

typedef void hc_runtime_exit_fn(void *arg, const struct hc_runtime_exit *ev);

struct hc_runtime_watch;

/*
 * Lists the workloads every interval_ms on a thread of its own (CRI calls
 * block) and calls fn on the loop thread once for each workload that exited,
 * including those found exited at the first look. It also removes sandboxes
 * left half-created by a crash, and keeps the figures the metrics show. A
 * second thread keeps the running workloads' logs under cfg's size cap,
 * rotating them (a stat per log when it was written, or every
 * HC_RUNTIME_LOG_CHECK_MS; see docs/runtime.md).
 * NULL + errno on failure.
 */
struct hc_runtime_watch *hc_runtime_watch_start(struct hc_loop *loop,
						const struct hc_runtime_config *cfg,
						unsigned interval_ms, hc_runtime_exit_fn *fn,
						void *arg);

/* The running workloads with an address, as the data plane needs them. */
struct hc_runtime_running {
	char id[HC_WORKLOAD_ID_LEN + 1];
	char ip[46];
	struct hc_port_map ports[HC_RUNTIME_MAX_PORTS];
	size_t nports;
	uint64_t egress_bytes_per_sec; /* 0 = no limit */
};

typedef void hc_runtime_running_fn(void *arg, const struct hc_runtime_running *list, size_t n);

/* Also calls fn on the loop thread with every running workload whenever that
 * set (ids, addresses, ports) changed, and after the first look. The list is
 * valid during the call. Set before the first look is likely: right after
 * hc_runtime_watch_start(). */
void hc_runtime_watch_on_running(struct hc_runtime_watch *w, hc_runtime_running_fn *fn, void *arg);

/* Asks for a look now instead of at the end of the period: after a spawn or
 * stop on this node, so that the running set and the gauges follow it at
 * once. A look in progress is followed by another. Does not block (beyond
 * the watch's lock); NULL is fine. */
void hc_runtime_watch_refresh(struct hc_runtime_watch *w);

/* Registers the workload and capacity gauges. 0 or -ENOMEM. */
int hc_runtime_watch_register_metrics(struct hc_runtime_watch *w, struct hc_metrics *m);

/* Stops and joins the thread (waits for a CRI call in flight), frees. Call
 * after the loop stopped running, before it is freed. NULL is fine. */
void hc_runtime_watch_stop(struct hc_runtime_watch *w);

/* The memory free on the node that refused a spawn with msg ("not enough
 * memory: N MB requested, F MB free ..."; a node's answer may carry it
 * after its name). 0 with *free_mb, or -EINVAL for any other message. */
int hc_runtime_refusal_free_mb(const char *msg, uint64_t *free_mb);

/* ---- microVM workloads (docs/runtime.md, "MicroVMs") ---- */

/* Whether this node can run microVM workloads (runtime "microvm"): its VMM
 * and a guest kernel with its modules are installed. 0 with why naming
 * them, or -ENOTSUP with why saying what is missing and how to install it.
 * Looks at files only. */
int hc_runtime_microvm_check(char *why, size_t len);

/* The guest kernel microVMs boot (--vm-kernel): a vmlinuz-<release> whose
 * modules are in /lib/modules/<release>. Before it, $HC_VM_KERNEL, then the
 * newest /boot/vmlinuz-*-cloud-amd64. Call before any VM starts; path must
 * outlive the process's VMs (an option's argv string). 0, or -ENOENT with
 * why saying why it cannot be read. */
int hc_runtime_microvm_set_kernel(const char *path, char *why, size_t len);

/* How microVMs run here: "kvm", "tcg" (why says why not KVM) or "none".
 * The first call in a process boots a VM with KVM to find out (up to 5 s
 * where /dev/kvm is there but does not work); later calls answer at once. */
const char *hc_runtime_microvm_accel(char *why, size_t len);

/* ---- the embedded containerd ---- */

struct hc_containerd_config {
	const char *state_dir;	 /* persistent: root, CNI config and IPAM, logs */
	const char *run_dir;	 /* volatile: socket, task state */
	const char *const *insecure_registries; /* HOST:PORT served over plain HTTP */
	size_t ninsecure;
	const char *subnet;	 /* NULL: HC_WORKLOAD_SUBNET (10.88.0.0/16) */
	const char *binary;	 /* NULL: containerd from PATH */
};

struct hc_containerd;

/*
 * Writes the configuration (containerd TOML, the "hypercore" CNI conflist,
 * registry hosts, the runsc wrapper) and starts containerd under the loop's
 * supervision: waits until its CRI answers and the pause image is imported,
 * restarts it with backoff when it dies. NULL + errno with err on failure.
 */
struct hc_containerd *hc_containerd_start(struct hc_loop *loop, const struct hc_containerd_config *cfg,
					  struct hc_err *err);

/* Socket path containerd serves on. */
const char *hc_containerd_socket(const struct hc_containerd *cd);

/* Number of restarts after crashes so far. */
unsigned hc_containerd_restarts(const struct hc_containerd *cd);

/* Registers containerd's up/restarts metrics. 0 or -ENOMEM. */
int hc_containerd_register_metrics(struct hc_containerd *cd, struct hc_metrics *m);

/* Stops containerd (SIGTERM, SIGKILL after timeout_ms) and frees. Running
 * workloads keep running in their shims; a new containerd adopts them. */
void hc_containerd_stop(struct hc_containerd *cd, int timeout_ms);

/* Where the embedded containerd under state_dir keeps host-local's leases
 * (one file per address), into buf. 0 or -ENAMETOOLONG. */
int hc_containerd_lease_dir(const char *state_dir, char *buf, size_t len);

/*
 * containerd's root and state directories (malloc'd, the caller frees):
 * <state_dir>/embedded-containerd and <run_dir>/embedded-containerd, or
 * <state_dir>/containerd and <run_dir>/containerd where an earlier
 * hypercore left its containerd there (its configuration in
 * <state_dir>/containerd.toml names that root), so its workloads keep
 * running. 0 (current layout), 1 (earlier layout) or -ENOMEM.
 */
int hc_containerd_layout(const char *state_dir, const char *run_dir, char **root, char **state);

/* ---- the workload subnet and its CNI leases (cni.c) ---- */

#define HC_RUNTIME_SUBNET_MIN_PREFIX 8
#define HC_RUNTIME_SUBNET_MAX_PREFIX 28

/* "a.b.c.d/p" (the network's own address, p in MIN..MAX_PREFIX) into net
 * (host order) and prefix. 0 or -EINVAL. */
int hc_runtime_subnet_parse(const char *text, uint32_t *net, unsigned *prefix);

/* Addresses host-local can hand out on a subnet of this prefix (all but
 * the network, broadcast and gateway addresses). */
uint32_t hc_runtime_subnet_addresses(unsigned prefix);

/*
 * Checks that subnet overlaps no route of route_table (the text of
 * /proc/net/route: the main table) but the default route and the /32 routes
 * to addresses leased in lease_dir (our own workloads, from an earlier
 * run; NULL: none). 0; -EINVAL for a bad subnet; -EADDRINUSE with err
 * naming the first overlapping route and --workload-subnet.
 */
int hc_runtime_subnet_check(const char *subnet, const char *route_table, const char *lease_dir,
			    struct hc_err *err);

/* The same against the node's own /proc/net/route. */
int hc_runtime_subnet_check_node(const char *subnet, const char *lease_dir, struct hc_err *err);

struct hc_runtime_leases {
	size_t leases;	  /* left after the sweep */
	size_t collected; /* removed by it */
};

/*
 * Removes the leases in lease_dir whose sandbox id is not in ids, unless
 * younger than min_age_s at now (a sandbox being made holds its lease
 * before containerd lists it), under host-local's own lock. Logs each one
 * removed. A missing directory holds no leases. 0 or -errno with err.
 */
int hc_runtime_leases_sweep(const char *lease_dir, const char *const *ids, size_t nids,
			    int min_age_s, time_t now, struct hc_runtime_leases *out,
			    struct hc_err *err);

/* The number of leases in lease_dir (0 when it does not exist yet), or
 * -errno. */
long hc_runtime_leases_count(const char *lease_dir);

/* The same with the ids of every sandbox containerd lists (CRI call,
 * blocks). 0 or -errno with err. */
int hc_runtime_collect_leases(struct hc_runtime *rt, const char *lease_dir, int min_age_s,
			      struct hc_runtime_leases *out, struct hc_err *err);

/* ---- progress of spawns in flight (agent/runtime/progress.c) ---- */

/* The steps of hc_runtime_spawn(), in order. */
enum hc_spawn_phase {
	HC_SPAWN_PULL,      /* pulling the image (skipped when present) */
	HC_SPAWN_SANDBOX,   /* RunPodSandbox: network namespace, address, veth */
	HC_SPAWN_CONTAINER, /* CreateContainer */
	HC_SPAWN_START,     /* StartContainer */
	HC_SPAWN_PHASES,
};
/* "pull", "sandbox", "container", "start"; NULL past the last. */
const char *hc_spawn_phase_name(enum hc_spawn_phase p);

struct hc_spawn_progress {
	char id[HC_WORKLOAD_ID_LEN + 1];
	enum hc_spawn_phase phase;
	/* ms spent in each phase that ended, and in the current one so far */
	uint64_t phase_ms[HC_SPAWN_PHASES];
	/* it returned (ok or not) and these are its final times: a spawn
	 * stays listed for a while after, so a display polling it learns how
	 * it ended however short the last phases were */
	bool done;
	bool pulled; /* the image was not there: the pull phase pulled it */
};

/* One download of containerd's content store in progress. */
struct hc_pull_ingest {
	char ref[128]; /* "layer-sha256:…", "manifest-sha256:…", "config-sha256:…" */
	int64_t offset, total; /* bytes so far and expected (0: not known yet) */
};

struct hc_runtime_progress {
	struct hc_spawn_progress *spawns; /* this runtime object's, oldest first */
	size_t nspawns;
	/* every pull on the node (containerd does not say for whom) */
	struct hc_pull_ingest *ingests;
	size_t ningests;
	bool ingests_known; /* false: containerd's content service did not answer */
};

/*
 * The spawns in flight through rt, and the last few that ended within a
 * minute (id: that one only, else all), and
 * containerd's downloads in progress (one ListStatuses call on its content
 * service, at most timeout_ms; none when timeout_ms <= 0). Any thread;
 * blocks for that call only.
 * Fills *out (hc_runtime_progress_fini): 0, or -ENOMEM. A content service
 * that does not answer is not an error: ingests_known says so.
 */
int hc_runtime_progress(struct hc_runtime *rt, const char *id, int timeout_ms,
			struct hc_runtime_progress *out);
void hc_runtime_progress_fini(struct hc_runtime_progress *p);

#endif /* HC_RUNTIME_H */
