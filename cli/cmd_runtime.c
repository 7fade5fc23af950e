/* The local verbs: `hypercore containerd|spawn|stop|list|logs|attach`, which
 * talk to this node's containerd directly, without an agent. A local spawn
 * isolates its workload itself, before the container exists, with the data
 * plane the agent pinned (its maps and TC programs): it works whether the
 * agent runs or not, and the agent, when it next looks, finds the workload
 * already attached. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "dataplane/dataplane.h"
#include "log/log.h"
#include "loop/loop.h"
#include "runtime/runtime.h"

#define MAX_REGISTRIES 32
#define STOP_GRACE_S 5

/* Options every local verb shares: where containerd and our state are. */
struct local_opts {
	const char *socket; /* NULL: <run_dir>/containerd.sock */
	const char *run_dir;
	const char *state_dir;
	uint32_t capacity_cpus, capacity_mem_mb;
	char socket_buf[4096];
};

static void local_opts_init(struct local_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->run_dir = HC_RUNTIME_DEFAULT_RUN_DIR;
	o->state_dir = HC_RUNTIME_DEFAULT_STATE_DIR;
}

/* The rows every local verb ends its table with: where containerd and our
 * state are. */
#define LOCAL_ROWS(s)                                                                  \
	HC_CLI_GROUP("Where containerd is (every local verb)"),                        \
		HC_CLI_STR("run-dir", s, o.run_dir, "DIR",                             \
			   "the embedded containerd's socket is DIR/containerd.sock "   \
			   "(default " HC_RUNTIME_DEFAULT_RUN_DIR ")"),                 \
		HC_CLI_STR("containerd-socket", s, o.socket, "PATH",                   \
			   "use this containerd instead"),                              \
		HC_CLI_STR("state-dir", s, o.state_dir, "DIR",                         \
			   "hypercore's state, workload logs (default "                 \
			   HC_RUNTIME_DEFAULT_STATE_DIR ")")

/*
 * Opens a runtime client on the local containerd, after checking that
 * something answers there: otherwise one line naming both ways to start one.
 */
static struct hc_runtime *open_runtime_with(struct local_opts *o, hc_runtime_sandbox_fn *hook,
					    void *hook_arg)
{
	struct hc_runtime_config cfg = {
		.state_dir = o->state_dir,
		.capacity_cpus = o->capacity_cpus,
		.capacity_mem_mb = o->capacity_mem_mb,
		.on_sandbox = hook,
		.on_sandbox_arg = hook_arg,
	};
	struct hc_err err;
	struct hc_runtime *rt;

	if (!o->socket) {
		if (hc_runtime_socket_path(o->run_dir, o->socket_buf, sizeof(o->socket_buf)) < 0) {
			hc_cli_fail("--run-dir too long");
			return NULL;
		}
		o->socket = o->socket_buf;
	}
	cfg.socket = o->socket;
	rt = hc_runtime_new(&cfg);
	if (!rt) {
		hc_cli_fail("out of memory");
		return NULL;
	}
	if (hc_runtime_probe(rt, &err) < 0) {
		hc_cli_fail("%s: start an agent (hypercore cluster) or the embedded containerd "
			    "alone (hypercore containerd), or name a running one with "
			    "--containerd-socket PATH",
			    err.msg);
		hc_runtime_free(rt);
		return NULL;
	}
	return rt;
}

static struct hc_runtime *open_runtime(struct local_opts *o)
{
	return open_runtime_with(o, NULL, NULL);
}

/* ---- hypercore containerd ---- */

static void on_stop_signal(struct hc_loop *loop, int signo, void *arg)
{
	(void)signo;
	(void)arg;
	hc_loop_stop(loop);
}

/* What `hypercore containerd` parses into. */
struct containerd_args {
	struct hc_containerd_config cfg;
	enum hc_log_level level;
	enum hc_log_format log_format;
	const char *registries[MAX_REGISTRIES];
};

#define D struct containerd_args
const struct hc_cli_opt hc_cli_opts_containerd[] = {
	HC_CLI_STR("state-dir", D, cfg.state_dir, "DIR",
		   "persistent root: images, CNI config and leases, logs (default "
		   HC_RUNTIME_DEFAULT_STATE_DIR ")"),
	HC_CLI_STR("run-dir", D, cfg.run_dir, "DIR",
		   "socket and volatile state (default " HC_RUNTIME_DEFAULT_RUN_DIR ")"),
	HC_CLI_LIST("insecure-registry", D, registries, cfg.ninsecure, "HOST:PORT",
		    "pull from this registry over plain HTTP (repeatable)"),
	HC_CLI_STR("workload-subnet", D, cfg.subnet, "CIDR",
		   "workload addresses (default " HC_WORKLOAD_SUBNET "); must overlap no "
		   "route the node has"),
	HC_CLI_LOG_LEVEL(D, level),
	HC_CLI_LOG_FORMAT(D, log_format),
	{ .name = NULL },
};
#undef D

int hc_cli_cmd_containerd(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct containerd_args a = {
		.cfg = {
			.state_dir = HC_RUNTIME_DEFAULT_STATE_DIR,
			.run_dir = HC_RUNTIME_DEFAULT_RUN_DIR,
		},
		.level = HC_LOG_INFO,
	};
	struct hc_containerd_config *cfg = &a.cfg;
	struct hc_err err;
	struct hc_containerd *cd;
	struct hc_loop *loop;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	cfg->insecure_registries = a.registries;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	hc_cli_log_setup(a.level, a.log_format);
	loop = hc_loop_new(NULL, NULL);
	if (!loop)
		return hc_cli_fail("cannot create the event loop: %s", strerror(errno));
	if (hc_loop_watch_signal(loop, SIGINT, on_stop_signal, NULL) < 0 ||
	    hc_loop_watch_signal(loop, SIGTERM, on_stop_signal, NULL) < 0) {
		hc_loop_free(loop);
		return hc_cli_fail("cannot watch signals");
	}
	cd = hc_containerd_start(loop, cfg, &err);
	if (!cd) {
		hc_loop_free(loop);
		return hc_cli_fail("%s", err.msg);
	}
	fprintf(stderr, "hypercore: containerd serving on %s until SIGINT or SIGTERM\n",
		hc_containerd_socket(cd));
	r = hc_loop_run(loop);
	hc_containerd_stop(cd, 10000);
	hc_loop_free(loop);
	return r < 0 ? hc_cli_fail("event loop failed: %s", strerror(-r)) : HC_EXIT_OK;
}

/* ---- hypercore spawn ---- */

static int add_string(char ***list, size_t *n, const char *s)
{
	char **grown = realloc(*list, (*n + 1) * sizeof(char *));

	if (!grown)
		return -ENOMEM;
	*list = grown;
	if (!(grown[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int add_label(struct hc_workload_spec *spec, const char *kv)
{
	const char *eq = strchr(kv, '=');
	struct hc_label *grown;

	if (!eq || eq == kv)
		return -EINVAL;
	grown = realloc(spec->labels, (spec->nlabels + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	spec->labels = grown;
	grown[spec->nlabels].key = strndup(kv, (size_t)(eq - kv));
	grown[spec->nlabels].value = strdup(eq + 1);
	spec->nlabels++;
	return grown[spec->nlabels - 1].key && grown[spec->nlabels - 1].value ? 0 : -ENOMEM;
}

/* What `hypercore spawn` parses into. */
struct spawn_args {
	struct local_opts o;
	struct hc_workload_spec spec;
	const char *pin_dir;
	bool no_isolation;
	bool json;
	bool progress;
};

static int replace_string(char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static int parse_image(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	return replace_string(field, arg);
}

static int parse_env(char *arg, void *field, char *why, size_t len)
{
	struct hc_workload_spec *spec = field;

	(void)why;
	(void)len;
	if (!strchr(arg, '=') || arg[0] == '=')
		return -EINVAL;
	return add_string(&spec->env, &spec->nenv, arg);
}

static int parse_ports(char *arg, void *field, char *why, size_t len)
{
	struct hc_err err;

	if (hc_workload_spec_parse_ports(field, arg, &err) < 0) {
		snprintf(why, len, "%s", err.msg);
		return -EINVAL;
	}
	return 0;
}

static int parse_label(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	return add_label(field, arg) < 0 ? -EINVAL : 0;
}

static int parse_runtime(char *arg, void *field, char *why, size_t len)
{
	const char *name;
	int r = hc_cli_parse_runtime(arg, &name, why, len);

	return r < 0 ? r : replace_string(field, name);
}

static int parse_egress(char *arg, void *field, char *why, size_t len)
{
	char label[64];

	(void)why;
	(void)len;
	snprintf(label, sizeof(label), "%s=%.20s", HC_LABEL_EGRESS_MBIT, arg);
	return add_label(field, label) < 0 ? -ENOMEM : 0;
}

/* always, on-failure or never, kept as the label the agent reads. */
static int parse_restart(char *arg, void *field, char *why, size_t len)
{
	char label[64];

	(void)why;
	(void)len;
	if (hc_restart_policy_parse(arg) == HC_RESTART_UNSET)
		return -EINVAL;
	snprintf(label, sizeof(label), "%s=%s", HC_LABEL_RESTART, arg);
	return add_label(field, label) < 0 ? -ENOMEM : 0;
}

#define S struct spawn_args
const struct hc_cli_opt hc_cli_opts_spawn[] = {
	HC_CLI_FUNC("image-ref", S, spec.image_ref, parse_image, NULL, "REF",
		    "the OCI image, e.g. registry:5000/repo/name:tag"),
	HC_CLI_UINT("cpu", S, spec.cores, 1, 1024, "whole vCPUs, 1..1024", "N",
		    "whole vCPUs (CPU quota), default " HC_CLI_QUOTE(HC_RUNTIME_DEFAULT_CPUS)),
	HC_CLI_UINT("mem", S, spec.memory_mb, HC_RUNTIME_MIN_MEM_MB, 16u << 20,
		    "MB, " HC_CLI_QUOTE(HC_RUNTIME_MIN_MEM_MB) "..16777216", "MB",
		    "memory limit in MB, default " HC_CLI_QUOTE(HC_RUNTIME_DEFAULT_MEM_MB)),
	{ .name = "env", .type = HC_CLI_OPT_FUNC, .off = offsetof(S, spec), .parse = parse_env,
	  .csv = true, .why = "want NAME=VALUE", .metavar = "NAME=VALUE[,...]",
	  .help = HC_CLI_ENV_HELP },
	{ .name = "ports", .type = HC_CLI_OPT_FUNC, .off = offsetof(S, spec), .parse = parse_ports,
	  .bare = true, .metavar = "H:C[/h2c][,...]",
	  .help = "host port -> container port, recorded for the proxy (/h2c: it speaks HTTP/2 "
		  "without TLS)" },
	HC_CLI_FUNC("label", S, spec, parse_label, "want KEY=VALUE", "KEY=VALUE",
		    "label kept with the workload (repeatable)"),
	HC_CLI_FUNC("runtime", S, spec.runtime_handler, parse_runtime, "runc, runsc or microvm",
		    "runc|runsc|microvm", HC_CLI_RUNTIME_HELP),
	HC_CLI_FUNC("egress-mbit", S, spec, parse_egress, NULL, "N",
		    "limit what it sends to N Mbit/s (the data plane drops the excess; label "
		    HC_LABEL_EGRESS_MBIT ")"),
	HC_CLI_FUNC("restart", S, spec, parse_restart, "always, on-failure or never", "POLICY",
		    "when it exits, the agent brings it back (same id, with a backoff): always, "
		    "on-failure (exit code not 0) or never (default: the agent's "
		    "--default-restart; label " HC_LABEL_RESTART ")"),
	HC_CLI_GROUP("Hardening (docs/runtime.md)"),
	HC_CLI_HARDENING_ROWS(S, spec, spec.pids_limit, spec.read_only_rootfs),
	HC_CLI_STR("bpf-pin-dir", S, pin_dir, "DIR",
		   "the agent's pinned data plane, which isolates the workload before it "
		   "starts (default " HC_DEFAULT_BPF_PIN_DIR ")"),
	HC_CLI_FLAG("no-isolation", S, no_isolation,
		    "run it even without a data plane: it may then reach the node and other "
		    "workloads"),
	HC_CLI_UINT("capacity-cpu", S, o.capacity_cpus, 1, 1u << 20, NULL, "N",
		    "vCPUs this node offers (default max(nproc, 225))"),
	HC_CLI_UINT("capacity-mem", S, o.capacity_mem_mb, 1, 1u << 30, NULL, "MB",
		    "memory this node offers (default: MemAvailable)"),
	HC_CLI_FLAG("json", S, json, "print the workload as JSON"),
	HC_CLI_FLAG("progress", S, progress,
		    "on a terminal (stdout and stderr), show the image pull (layers, bytes) and "
		    "each step with its time on stderr (default true; --progress=false: never)"),
	LOCAL_ROWS(S),
	{ .name = NULL },
};
#undef S

static int parse_spawn_opts(const struct hc_cli_cmd *cmd, int argc, char **argv,
			    struct spawn_args *a)
{
	struct hc_workload_spec *spec = &a->spec;
	struct hc_err err;
	int r;

	spec->cores = HC_RUNTIME_DEFAULT_CPUS;
	spec->memory_mb = HC_RUNTIME_DEFAULT_MEM_MB;
	r = hc_cli_parse_opts(cmd, argc, argv, a);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (!spec->image_ref)
		return hc_cli_usage_error(cmd, "--image-ref is required");
	if (hc_workload_spec_validate(spec, &err) < 0)
		return hc_cli_usage_error(cmd, "%s", err.msg);
	return -1;
}

static json_t *spec_json(const struct hc_workload *w)
{
	json_t *j = w->spec_json ? json_loads(w->spec_json, 0, NULL) : NULL;

	return j ? j : json_object();
}

/* How the workload is confined: null for one spawned before hardening
 * (its stored request has no pids limit), which runs with containerd's
 * defaults. */
static json_t *security_json(const struct hc_workload_spec *spec)
{
	const char *caps[HC_RUNTIME_MAX_CAP_ADD + 16];
	size_t n = hc_workload_spec_caps(spec, caps, sizeof(caps) / sizeof(caps[0]));
	json_t *o, *list;

	if (!spec->pids_limit)
		return json_null();
	o = json_object();
	list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_string(caps[i]));
	json_object_set_new(o, "seccomp", json_string("RuntimeDefault"));
	json_object_set_new(o, "no_new_privs", json_true());
	json_object_set_new(o, "capabilities", list);
	json_object_set_new(o, "pids_limit", json_integer(spec->pids_limit));
	json_object_set_new(o, "read_only_rootfs", json_boolean(spec->read_only_rootfs));
	return o;
}

static json_t *workload_json(const struct hc_workload *w)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(w->id));
	json_object_set_new(o, "state", json_string(hc_workload_state_name(w->state)));
	json_object_set_new(o, "ip", json_string(w->ip));
	json_object_set_new(o, "image", json_string(w->spec.image_ref ? w->spec.image_ref : ""));
	json_object_set_new(o, "image_id", json_string(w->image_id));
	json_object_set_new(o, "runtime", json_string(w->runtime_handler));
	json_object_set_new(o, "sandbox_id", json_string(w->sandbox_id));
	json_object_set_new(o, "container_id", json_string(w->container_id));
	json_object_set_new(o, "created_ns", json_integer(w->created_ns));
	json_object_set_new(o, "started_ns", json_integer(w->started_ns));
	if (w->state == HC_WORKLOAD_EXITED) {
		json_object_set_new(o, "exit_code", json_integer(w->exit_code));
		json_object_set_new(o, "reason", json_string(w->reason));
		json_object_set_new(o, "finished_ns", json_integer(w->finished_ns));
	}
	json_object_set_new(o, "log_path", json_string(w->log_path));
	/* "" without a policy of its own: the agent's --default-restart */
	json_object_set_new(o, "restart",
			    json_string(hc_restart_policy_name(hc_workload_spec_restart(&w->spec))));
	json_object_set_new(o, "request", spec_json(w));
	json_object_set_new(o, "security", security_json(&w->spec));
	return o;
}

/* Adds what containerd measures of a running workload: cumulative CPU time
 * and memory (the figures execution proofs use). Left out if not available. */
static void add_stats(struct hc_runtime *rt, json_t *o, const char *id)
{
	struct hc_workload_stats st;
	struct hc_err err;
	json_t *j;

	if (hc_runtime_stats(rt, id, &st, &err) < 0)
		return;
	j = json_object();
	json_object_set_new(j, "cpu_ns", json_integer((json_int_t)st.cpu_ns));
	json_object_set_new(j, "memory_working_set_bytes",
			    json_integer((json_int_t)st.memory_working_set));
	json_object_set_new(j, "memory_usage_bytes", json_integer((json_int_t)st.memory_usage));
	json_object_set_new(j, "memory_limit_bytes", json_integer((json_int_t)st.memory_limit));
	json_object_set_new(o, "stats", j);
}

static int print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

	json_decref(j);
	if (!text)
		return hc_cli_fail("out of memory");
	puts(text);
	free(text);
	return HC_EXIT_OK;
}

/* The data plane's attach of the workload's veth, as the agent does it
 * (isolated, with the spec's egress limit). */
static int isolate_with(struct hc_dataplane *dp, const struct hc_runtime_sandbox *sb,
			struct hc_err *err)
{
	struct hc_ipaddr ip;
	int r;

	if (hc_dp_ipaddr_parse(sb->ip, &ip) < 0)
		return hc_err_set(err, -EADDRNOTAVAIL,
				  "workload %s has no address to isolate (\"%s\" from CNI)", sb->id,
				  sb->ip);
	r = hc_dataplane_workload_attach(dp, sb->id, &ip, true,
					 hc_workload_spec_egress_bytes(sb->spec), err);
	if (r < 0) {
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		return hc_err_set(err, r, "isolating workload %s before it starts: %s", sb->id,
				  why);
	}
	return 0;
}

/* hc_runtime_sandbox_fn of the local spawn: isolation (none with
 * --no-isolation: arg NULL), and a microVM's tap joined to its veth. */
static int isolate(void *arg, const struct hc_runtime_sandbox *sb, struct hc_err *err)
{
	int r;

	if (arg && (r = isolate_with(arg, sb, err)) < 0)
		return r;
	return sb->vm_netns ? hc_dataplane_tap_join(sb->vm_netns, sb->vm_veth, sb->vm_tap, err)
			    : 0;
}

/* The pinned data plane, or NULL with the reason printed (exit status in
 * *r): without one the spawn is refused unless --no-isolation says so. */
static struct hc_dataplane *open_isolation(const struct spawn_args *a, int *r)
{
	struct hc_dataplane *dp;
	struct hc_err err;

	*r = HC_EXIT_OK;
	if (a->no_isolation)
		return NULL;
	dp = hc_dataplane_open_pinned(a->pin_dir, &err);
	if (!dp)
		*r = hc_cli_fail("%s; a local spawn isolates the workload with the agent's data "
				 "plane before it starts (--no-isolation runs it without)",
				 err.msg);
	return dp;
}

/* The spawn, on the thread hc_cli_watch runs it on. */
struct local_spawn {
	struct hc_runtime *rt;
	const struct hc_workload_spec *spec;
	struct hc_workload w;
	struct hc_err err;
	int r;
};

static void *local_spawn(void *arg)
{
	struct local_spawn *ls = arg;

	ls->r = hc_runtime_spawn(ls->rt, ls->spec, NULL, &ls->w, &ls->err);
	return NULL;
}

int hc_cli_cmd_spawn(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct spawn_args a = { .json = false, .progress = true };
	struct hc_cli_progress *pr = NULL;
	struct local_spawn ls = { 0 };
	struct hc_dataplane *dp = NULL;
	struct hc_runtime *rt = NULL;
	int r;

	local_opts_init(&a.o);
	r = parse_spawn_opts(cmd, argc, argv, &a);
	if (r >= 0)
		goto out;
	dp = open_isolation(&a, &r);
	if (r != HC_EXIT_OK)
		goto out;
	if (!dp)
		fprintf(stderr, "hypercore: warning: --no-isolation: the workload runs without the "
				"data plane's isolation\n");
	rt = open_runtime_with(&a.o, isolate, dp);
	if (!rt) {
		r = HC_EXIT_FAIL;
		goto out;
	}
	ls.rt = rt;
	ls.spec = &a.spec;
	pr = hc_cli_progress_new(a.progress);
	hc_cli_watch(pr, local_spawn, &ls, hc_cli_look_local, rt);
	hc_cli_progress_end(pr, ls.r == 0);
	if (ls.r < 0) {
		r = hc_cli_fail("%s", ls.err.msg);
		goto out;
	}
	if (a.json)
		r = print_json(workload_json(&ls.w));
	else
		printf("%s\n", ls.w.id), r = HC_EXIT_OK;
	hc_workload_fini(&ls.w);
out:
	hc_cli_progress_free(pr);
	hc_workload_spec_fini(&a.spec);
	hc_runtime_free(rt);
	hc_dataplane_close(dp);
	return r;
}

/* ---- hypercore stop / list ---- */

/* What the local verbs that name a workload parse into. */
struct local_args {
	struct local_opts o;
	const char *id;
	uint32_t grace; /* stop */
	bool json;      /* list */
	bool follow;    /* logs */
	long tail;      /* logs; -1: all */
};

static int parse_tail(char *arg, void *field, char *why, size_t len)
{
	long *tail = field;
	char *end;

	(void)why;
	(void)len;
	errno = 0;
	*tail = strtol(arg, &end, 10);
	return !errno && end != arg && !*end && *tail >= 0 ? 0 : -EINVAL;
}

#define L struct local_args
const struct hc_cli_opt hc_cli_opts_stop[] = {
	HC_CLI_STR("id", L, id, "ID", "the workload id"),
	HC_CLI_UINT("grace", L, grace, 0, 3600, "seconds, 0..3600", "SECONDS",
		    "time to exit after SIGTERM (default " HC_CLI_QUOTE(STOP_GRACE_S) ")"),
	LOCAL_ROWS(L),
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_list[] = {
	HC_CLI_FLAG("json", L, json, "print JSON (with the original spawn request)"),
	LOCAL_ROWS(L),
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_logs[] = {
	HC_CLI_STR("id", L, id, "ID", "the workload id"),
	HC_CLI_FUNC("tail", L, tail, parse_tail, "a number of lines", "N", "only the last N lines"),
	HC_CLI_FLAG("follow", L, follow, "keep printing new lines until ^C"),
	LOCAL_ROWS(L),
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_attach[] = {
	HC_CLI_STR("id", L, id, "ID", "the workload id"),
	LOCAL_ROWS(L),
	{ .name = NULL },
};
#undef L

/* Parses a local verb's options into a (initialised here) with the id
 * (ID or --id ID) required when need_id. Operands after it are the
 * caller's to check. Returns -1 to go on, else the exit status to return. */
static int parse_id_opts(const struct hc_cli_cmd *cmd, int argc, char **argv, bool need_id,
			 struct local_args *a)
{
	int r;

	memset(a, 0, sizeof(*a));
	local_opts_init(&a->o);
	a->grace = STOP_GRACE_S;
	a->tail = -1;
	r = hc_cli_parse_opts(cmd, argc, argv, a);
	if (r >= 0 || !need_id)
		return r;
	return hc_cli_take_id(cmd, argv, &a->id);
}

int hc_cli_cmd_stop(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct local_args a;
	struct hc_err err;
	struct hc_runtime *rt;
	int r;

	r = parse_id_opts(cmd, argc, argv, true, &a);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	rt = open_runtime(&a.o);
	if (!rt)
		return HC_EXIT_FAIL;
	r = hc_runtime_stop(rt, a.id, (int)a.grace, &err) < 0 ? hc_cli_fail("%s", err.msg)
								: HC_EXIT_OK;
	if (r == HC_EXIT_OK)
		printf("%s\n", a.id);
	hc_runtime_free(rt);
	return r;
}

static void format_age(int64_t since_ns, char *buf, size_t len)
{
	struct timespec now;
	int64_t s;

	if (!since_ns) {
		snprintf(buf, len, "-");
		return;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	s = now.tv_sec - since_ns / 1000000000;
	if (s < 120)
		snprintf(buf, len, "%llds", (long long)(s < 0 ? 0 : s));
	else if (s < 7200)
		snprintf(buf, len, "%lldm", (long long)s / 60);
	else
		snprintf(buf, len, "%lldh", (long long)s / 3600);
}

static void format_ports(const struct hc_workload_spec *spec, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < spec->nports && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%u:%u%s", i ? "," : "",
					spec->ports[i].host, spec->ports[i].container,
					spec->ports[i].h2c ? "/h2c" : "");
}

static int print_table(const struct hc_workload *list, size_t n)
{
	static const char *const headers[] = { "ID", "STATE", "IP", "IMAGE", "CPU", "MEM", "PORTS",
					       "RESTART", "AGE" };
	struct hc_cli_table *t = hc_cli_table_new(9, headers);

	if (!t)
		return hc_cli_fail("out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct hc_workload *w = &list[i];
		char state[48], cpu[16], mem[24], ports[256], age[24];
		enum hc_restart_policy rp = hc_workload_spec_restart(&w->spec);
		/* without a policy of its own, the agent's --default-restart applies */
		const char *restart = rp ? hc_restart_policy_name(rp) : "default";
		const char *cells[9] = { w->id, state, w->ip, w->spec.image_ref, cpu, mem, ports,
					 restart, age };

		if (w->state == HC_WORKLOAD_EXITED)
			snprintf(state, sizeof(state), "exited(%d)", w->exit_code);
		else
			snprintf(state, sizeof(state), "%s", hc_workload_state_name(w->state));
		snprintf(cpu, sizeof(cpu), "%u", w->spec.cores);
		snprintf(mem, sizeof(mem), "%uMB", w->spec.memory_mb);
		format_ports(&w->spec, ports, sizeof(ports));
		format_age(w->created_ns, age, sizeof(age));
		if (hc_cli_table_add(t, cells) < 0) {
			hc_cli_table_free(t);
			return hc_cli_fail("out of memory");
		}
	}
	hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);
	return HC_EXIT_OK;
}

int hc_cli_cmd_list(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct local_args a;
	struct hc_err err;
	struct hc_runtime *rt;
	struct hc_workload *list;
	size_t n;
	int r;

	r = parse_id_opts(cmd, argc, argv, false, &a);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	rt = open_runtime(&a.o);
	if (!rt)
		return HC_EXIT_FAIL;
	if (hc_runtime_list(rt, &list, &n, &err) < 0) {
		hc_runtime_free(rt);
		return hc_cli_fail("%s", err.msg);
	}
	if (a.json) {
		json_t *arr = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *item = workload_json(&list[i]);

			if (list[i].state == HC_WORKLOAD_RUNNING)
				add_stats(rt, item, list[i].id);
			json_array_append_new(arr, item);
		}
		r = print_json(arr);
	} else {
		r = print_table(list, n);
	}
	hc_workload_list_free(list, n);
	hc_runtime_free(rt);
	return r;
}

/* ---- hypercore logs ---- */

static int print_log_line(void *arg, const struct hc_log_line *line)
{
	FILE *out = line->stream == HC_LOG_STDERR ? stderr : stdout;
	bool *timestamps = arg;

	if (*timestamps)
		fprintf(out, "%s ", line->timestamp);
	fwrite(line->text, 1, line->len, out);
	fputs(line->truncated ? " [truncated]\n" : "\n", out);
	fflush(out);
	return ferror(out) ? 1 : 0;
}

int hc_cli_cmd_logs(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct local_args a;
	struct hc_err err;
	struct hc_runtime *rt;
	bool timestamps = false;
	sigset_t stop_set;
	int stop_fd = -1, r;

	r = parse_id_opts(cmd, argc, argv, true, &a);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (a.follow) {
		/* ^C ends following cleanly instead of killing us mid-line. Blocked
		 * before the runtime client starts gRPC's threads, which inherit
		 * the mask; otherwise one of them would take the signal and die. */
		sigemptyset(&stop_set);
		sigaddset(&stop_set, SIGINT);
		sigaddset(&stop_set, SIGTERM);
		sigprocmask(SIG_BLOCK, &stop_set, NULL);
		stop_fd = signalfd(-1, &stop_set, SFD_CLOEXEC);
		if (stop_fd < 0)
			return hc_cli_fail("signalfd: %s", strerror(errno));
	}
	rt = open_runtime(&a.o);
	if (!rt) {
		if (stop_fd >= 0)
			close(stop_fd);
		return HC_EXIT_FAIL;
	}
	r = hc_runtime_logs(rt, a.id, a.tail, a.follow, stop_fd, print_log_line, &timestamps, &err);
	if (stop_fd >= 0)
		close(stop_fd);
	hc_runtime_free(rt);
	return r < 0 ? hc_cli_fail("%s", err.msg) : HC_EXIT_OK;
}

/* ---- hypercore attach ---- */

static struct termios saved_termios;
static bool termios_saved;

static void restore_terminal(void)
{
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
	termios_saved = false;
}

/* Raw mode: keys, ^C included, go to the workload's shell. */
static int make_raw(int fd)
{
	struct termios raw;

	if (tcgetattr(fd, &saved_termios) < 0)
		return -errno;
	raw = saved_termios;
	cfmakeraw(&raw);
	if (tcsetattr(fd, TCSADRAIN, &raw) < 0)
		return -errno;
	termios_saved = true;
	return 0;
}

int hc_cli_cmd_attach(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	static char *default_argv[] = { "/bin/sh", NULL };
	struct local_args a;
	struct hc_err err;
	struct hc_runtime_exec_io io = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, -1, -1 };
	struct hc_runtime *rt;
	char **command = default_argv;
	bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	sigset_t winch;
	int exit_code = 0, r;

	r = parse_id_opts(cmd, argc, argv, true, &a);
	if (r >= 0)
		return r;
	/* after "--": the command to run instead of a shell */
	if (optind < argc)
		command = argv + optind;
	if (tty) {
		/* blocked before gRPC's threads exist, as in logs --follow */
		sigemptyset(&winch);
		sigaddset(&winch, SIGWINCH);
		sigprocmask(SIG_BLOCK, &winch, NULL);
		io.winch_fd = signalfd(-1, &winch, SFD_CLOEXEC);
		io.tty_fd = STDIN_FILENO;
	}
	rt = open_runtime(&a.o);
	if (!rt) {
		if (io.winch_fd >= 0)
			close(io.winch_fd);
		return HC_EXIT_FAIL;
	}
	if (tty && make_raw(STDIN_FILENO) < 0) {
		tty = false;
		io.tty_fd = -1;
	}
	r = hc_runtime_exec(rt, a.id, command, tty, &io, &exit_code, &err);
	restore_terminal();
	if (io.winch_fd >= 0)
		close(io.winch_fd);
	hc_runtime_free(rt);
	if (r < 0)
		return hc_cli_fail("%s", err.msg);
	return exit_code;
}
