/* The local verbs: `hypercore containerd|spawn|stop|list|logs|attach`, which
 * talk to this node's containerd directly, without an agent. */
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
#include "log/log.h"
#include "loop/loop.h"
#include "runtime/runtime.h"

#define MAX_REGISTRIES 32
#define STOP_GRACE_S 5

enum {
	OPT_SOCKET = 300,
	OPT_RUN_DIR,
	OPT_STATE_DIR,
	OPT_IMAGE,
	OPT_CPU,
	OPT_MEM,
	OPT_ENV,
	OPT_PORTS,
	OPT_LABEL,
	OPT_RUNTIME,
	OPT_EGRESS_MBIT,
	OPT_CAP_CPU,
	OPT_CAP_MEM,
	OPT_JSON,
};

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

/* Handles a shared option; returns 1 if c was one. */
static int local_opt(struct local_opts *o, int c)
{
	switch (c) {
	case OPT_SOCKET:
		o->socket = optarg;
		return 1;
	case OPT_RUN_DIR:
		o->run_dir = optarg;
		return 1;
	case OPT_STATE_DIR:
		o->state_dir = optarg;
		return 1;
	default:
		return 0;
	}
}

static int parse_u32(const char *s, unsigned long min, unsigned long max, uint32_t *out)
{
	unsigned long v;

	if (hc_cli_parse_uint(s, min, max, &v) < 0)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/*
 * Opens a runtime client on the local containerd, after checking that
 * something answers there: otherwise one line naming both ways to start one.
 */
static struct hc_runtime *open_runtime(struct local_opts *o)
{
	struct hc_runtime_config cfg = {
		.state_dir = o->state_dir,
		.capacity_cpus = o->capacity_cpus,
		.capacity_mem_mb = o->capacity_mem_mb,
	};
	struct hc_runtime_err err;
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
	const char *registries[MAX_REGISTRIES];
};

#define D struct containerd_args
static const struct hc_cli_opt containerd_opts[] = {
	HC_CLI_STR("run-dir", D, cfg.run_dir),
	HC_CLI_STR("state-dir", D, cfg.state_dir),
	HC_CLI_LIST("insecure-registry", D, registries, cfg.ninsecure),
	HC_CLI_STR("workload-subnet", D, cfg.subnet),
	HC_CLI_LOG_LEVEL(D, level),
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
	struct hc_runtime_err err;
	struct hc_containerd *cd;
	struct hc_loop *loop;
	int r = hc_cli_parse_opts(cmd, argc, argv, containerd_opts, &a);

	if (r >= 0)
		return r;
	cfg->insecure_registries = a.registries;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	hc_log_set_level(a.level);
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

static int parse_spawn_opts(const struct hc_cli_cmd *cmd, int argc, char **argv,
			    struct local_opts *o, struct hc_workload_spec *spec, bool *json)
{
	static const struct option opts[] = {
		{ "image-ref", required_argument, NULL, OPT_IMAGE },
		{ "cpu", required_argument, NULL, OPT_CPU },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "env", required_argument, NULL, OPT_ENV },
		{ "ports", required_argument, NULL, OPT_PORTS },
		{ "label", required_argument, NULL, OPT_LABEL },
		{ "runtime", required_argument, NULL, OPT_RUNTIME },
		{ "egress-mbit", required_argument, NULL, OPT_EGRESS_MBIT },
		{ "capacity-cpu", required_argument, NULL, OPT_CAP_CPU },
		{ "capacity-mem", required_argument, NULL, OPT_CAP_MEM },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "containerd-socket", required_argument, NULL, OPT_SOCKET },
		{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct hc_runtime_err err;
	int c;

	spec->cores = HC_RUNTIME_DEFAULT_CPUS;
	spec->memory_mb = HC_RUNTIME_DEFAULT_MEM_MB;
	while ((c = hc_cli_getopt(cmd, argc, argv, opts)) != -1) {
		if (local_opt(o, c))
			continue;
		switch (c) {
		case OPT_IMAGE:
			free(spec->image_ref);
			if (!(spec->image_ref = strdup(optarg)))
				return hc_cli_fail("out of memory");
			break;
		case OPT_CPU:
			if (parse_u32(optarg, 1, 1024, &spec->cores) < 0)
				return hc_cli_usage_error(cmd, "invalid --cpu %s (whole vCPUs, 1..1024)",
							  optarg);
			break;
		case OPT_MEM:
			if (parse_u32(optarg, HC_RUNTIME_MIN_MEM_MB, 16u << 20, &spec->memory_mb) < 0)
				return hc_cli_usage_error(cmd, "invalid --mem %s (MB, %d..%u)", optarg,
							  HC_RUNTIME_MIN_MEM_MB, 16u << 20);
			break;
		case OPT_ENV:
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return hc_cli_usage_error(cmd, "invalid --env %s (want NAME=VALUE)",
							  optarg);
			if (add_string(&spec->env, &spec->nenv, optarg) < 0)
				return hc_cli_fail("out of memory");
			break;
		case OPT_PORTS:
			if (hc_workload_spec_parse_ports(spec, optarg, &err) < 0)
				return hc_cli_usage_error(cmd, "%s", err.msg);
			break;
		case OPT_LABEL:
			if (add_label(spec, optarg) < 0)
				return hc_cli_usage_error(cmd, "invalid --label %s (want KEY=VALUE)",
							  optarg);
			break;
		case OPT_RUNTIME:
			if (strcmp(optarg, "runc") != 0 && strcmp(optarg, "runsc") != 0)
				return hc_cli_usage_error(cmd, "invalid --runtime %s (runc or runsc)",
							  optarg);
			free(spec->runtime_handler);
			if (!(spec->runtime_handler = strdup(optarg)))
				return hc_cli_fail("out of memory");
			break;
		case OPT_EGRESS_MBIT: {
			char label[64];

			snprintf(label, sizeof(label), "%s=%.20s", HC_LABEL_EGRESS_MBIT, optarg);
			if (add_label(spec, label) < 0)
				return hc_cli_fail("out of memory");
			break;
		}
		case OPT_CAP_CPU:
			if (parse_u32(optarg, 1, 1u << 20, &o->capacity_cpus) < 0)
				return hc_cli_usage_error(cmd, "invalid --capacity-cpu %s", optarg);
			break;
		case OPT_CAP_MEM:
			if (parse_u32(optarg, 1, 1u << 30, &o->capacity_mem_mb) < 0)
				return hc_cli_usage_error(cmd, "invalid --capacity-mem %s", optarg);
			break;
		case OPT_JSON:
			*json = true;
			break;
		case HC_CLI_OPT_HELP:
			return HC_EXIT_OK;
		default:
			return HC_EXIT_USAGE;
		}
	}
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
	json_object_set_new(o, "request", spec_json(w));
	return o;
}

/* Adds what containerd measures of a running workload: cumulative CPU time
 * and memory (the figures execution proofs use). Left out if not available. */
static void add_stats(struct hc_runtime *rt, json_t *o, const char *id)
{
	struct hc_workload_stats st;
	struct hc_runtime_err err;
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

int hc_cli_cmd_spawn(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct hc_workload_spec spec = { 0 };
	struct local_opts o;
	struct hc_runtime_err err;
	struct hc_runtime *rt = NULL;
	struct hc_workload w;
	bool json = false;
	int r;

	local_opts_init(&o);
	r = parse_spawn_opts(cmd, argc, argv, &o, &spec, &json);
	if (r >= 0)
		goto out;
	rt = open_runtime(&o);
	if (!rt) {
		r = HC_EXIT_FAIL;
		goto out;
	}
	if (hc_runtime_spawn(rt, &spec, NULL, &w, &err) < 0) {
		r = hc_cli_fail("%s", err.msg);
		goto out;
	}
	if (json)
		r = print_json(workload_json(&w));
	else
		printf("%s\n", w.id), r = HC_EXIT_OK;
	hc_workload_fini(&w);
out:
	hc_workload_spec_fini(&spec);
	hc_runtime_free(rt);
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

/* The rows every local verb shares: where containerd and our state are. */
#define LOCAL_ROWS(s)                                            \
	HC_CLI_STR("id", s, id), HC_CLI_STR("containerd-socket", s, o.socket), \
		HC_CLI_STR("run-dir", s, o.run_dir), HC_CLI_STR("state-dir", s, o.state_dir)

#define L struct local_args
static const struct hc_cli_opt stop_opts[] = {
	LOCAL_ROWS(L),
	HC_CLI_UINT("grace", L, grace, 0, 3600, "seconds, 0..3600"),
	{ .name = NULL },
};
static const struct hc_cli_opt list_opts[] = {
	LOCAL_ROWS(L),
	HC_CLI_FLAG("json", L, json),
	{ .name = NULL },
};
static const struct hc_cli_opt logs_opts[] = {
	LOCAL_ROWS(L),
	HC_CLI_FLAG("follow", L, follow),
	HC_CLI_FUNC("tail", L, tail, parse_tail, "a number of lines"),
	{ .name = NULL },
};
static const struct hc_cli_opt attach_opts[] = {
	LOCAL_ROWS(L),
	{ .name = NULL },
};
#undef L

/* Parses a local verb's options into a (initialised here) with --id
 * required when need_id. Arguments after the options are the caller's to
 * check. Returns -1 to go on, else the exit status to return. */
static int parse_id_opts(const struct hc_cli_cmd *cmd, int argc, char **argv,
			 const struct hc_cli_opt *table, bool need_id, struct local_args *a)
{
	int r;

	memset(a, 0, sizeof(*a));
	local_opts_init(&a->o);
	a->grace = STOP_GRACE_S;
	a->tail = -1;
	r = hc_cli_parse_opts(cmd, argc, argv, table, a);
	if (r >= 0)
		return r;
	if (need_id && !a->id)
		return hc_cli_usage_error(cmd, "--id is required");
	if (need_id && !hc_uuid_valid(a->id))
		return hc_cli_usage_error(cmd, "invalid --id %s (a workload id is a UUID)", a->id);
	return -1;
}

int hc_cli_cmd_stop(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct local_args a;
	struct hc_runtime_err err;
	struct hc_runtime *rt;
	int r;

	r = parse_id_opts(cmd, argc, argv, stop_opts, true, &a);
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
		off += (size_t)snprintf(buf + off, len - off, "%s%u:%u", i ? "," : "",
					spec->ports[i].host, spec->ports[i].container);
}

static int print_table(const struct hc_workload *list, size_t n)
{
	static const char *const headers[] = { "ID", "STATE", "IP", "IMAGE", "CPU", "MEM", "PORTS",
					       "AGE" };
	struct hc_cli_table *t = hc_cli_table_new(8, headers);

	if (!t)
		return hc_cli_fail("out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct hc_workload *w = &list[i];
		char state[48], cpu[16], mem[24], ports[256], age[24];
		const char *cells[8] = { w->id, state, w->ip, w->spec.image_ref, cpu, mem, ports, age };

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
	struct hc_runtime_err err;
	struct hc_runtime *rt;
	struct hc_workload *list;
	size_t n;
	int r;

	r = parse_id_opts(cmd, argc, argv, list_opts, false, &a);
	if (r >= 0)
		return r;
	if (optind < argc || a.id)
		return hc_cli_usage_error(cmd, "unexpected argument %s", a.id ? "--id" : argv[optind]);
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
	struct hc_runtime_err err;
	struct hc_runtime *rt;
	bool timestamps = false;
	sigset_t stop_set;
	int stop_fd = -1, r;

	r = parse_id_opts(cmd, argc, argv, logs_opts, true, &a);
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
	struct hc_runtime_err err;
	struct hc_runtime_exec_io io = { STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, -1, -1 };
	struct hc_runtime *rt;
	char **command = default_argv;
	bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	sigset_t winch;
	int exit_code = 0, r;

	r = parse_id_opts(cmd, argc, argv, attach_opts, true, &a);
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
