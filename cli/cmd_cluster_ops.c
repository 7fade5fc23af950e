/* `hypercore cluster spawn|stop|logs|metrics`: cluster operations through
 * an agent's gRPC API (metrics through its HTTP API; its beacon table is
 * cmd_cluster_policy.c's). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hypercore/defaults.h>

#include "addr/addr.h"
#include "base/base.h"
#include "cluster.pb-c.h"
#include "rpc/rpc.h"
#include "runtime/runtime.h"

#define SERVICE "/cluster.services.api.ClusterService/"
#define SPAWN_TIMEOUT_MS 200000 /* the agent tries candidates for 90 s each */
#define DEFAULT_TIMEOUT_MS 60000
#define FOLLOW_POLL_US 500000

/* One call to the agent at addr (a bind address, dialled as the CLI's
 * other verbs do). 0 with *resp, or the exit status after one line. */
static int call_agent(const struct hc_cli_cmd *cmd, const char *addr, const char *method,
		      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_type,
		      ProtobufCMessage **resp, int timeout_ms)
{
	char target[128], path[128];
	struct hc_err why;
	struct hc_rpc_client *client;
	struct hc_rpc_status st;
	int r;

	if (hc_addr_dial_target(addr, target, sizeof(target), &why) < 0)
		return hc_cli_usage_error(cmd, "invalid --grpc-bind-addr %s: %s", addr, why.msg);
	client = hc_rpc_client_new(target);
	if (!client)
		return hc_cli_fail("out of memory");
	snprintf(path, sizeof(path), SERVICE "%s", method);
	r = hc_cli_rpc_call(client, path, req, resp_type, resp, false, timeout_ms, &st);
	hc_rpc_client_free(client);
	return r < 0 ? hc_cli_rpc_fail(target, &st) : 0;
}

/* ---- spawn ---- */

struct spawn_args {
	Cluster__Services__Api__VmSpawnRequest req;
	struct hc_workload_spec spec; /* ports and env parsed as the local verb does */
	Cluster__Services__Api__VmSpawnRequest__PortsEntry *entries;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry **ports;
	uint32_t *h2c; /* req.h2c_ports */
	char *env[HC_RUNTIME_MAX_ENV];
	const char *addr;
	const char *policy; /* --policy FILE */
	int restart;	    /* enum hc_restart_policy; UNSET: the agent's default */
	int timeout_ms;
	bool json;
	bool progress;
};

static int to_request(struct spawn_args *a)
{
	a->entries = calloc(a->spec.nports + 1, sizeof(*a->entries));
	a->ports = calloc(a->spec.nports + 1, sizeof(*a->ports));
	if (!a->entries || !a->ports)
		return -ENOMEM;
	for (size_t i = 0; i < a->spec.nports; i++) {
		cluster__services__api__vm_spawn_request__ports_entry__init(&a->entries[i]);
		a->entries[i].key = a->spec.ports[i].host;
		a->entries[i].value = a->spec.ports[i].container;
		a->ports[i] = &a->entries[i];
	}
	a->req.ports = a->ports;
	a->req.n_ports = a->spec.nports;
	a->h2c = calloc(a->spec.nports + 1, sizeof(*a->h2c));
	if (!a->h2c)
		return -ENOMEM;
	for (size_t i = 0; i < a->spec.nports; i++)
		if (a->spec.ports[i].h2c)
			a->h2c[a->req.n_h2c_ports++] = a->spec.ports[i].host;
	a->req.h2c_ports = a->h2c;
	a->req.env = a->env;
	a->req.cap_add = a->spec.cap_add;
	a->req.n_cap_add = a->spec.ncap_add;
	a->req.read_only_rootfs = a->spec.read_only_rootfs;
	if (a->restart != HC_RESTART_UNSET)
		a->req.restart = (char *)hc_restart_policy_name((enum hc_restart_policy)a->restart);
	return 0;
}


static int parse_ports(char *arg, void *field, char *why, size_t len)
{
	struct hc_err rerr;

	if (hc_workload_spec_parse_ports(field, arg, &rerr) < 0) {
		snprintf(why, len, "%s", rerr.msg);
		return -EINVAL;
	}
	return 0;
}

/* NAME=VALUE into the next env slot; field is the whole struct spawn_args. */
static int parse_env(char *arg, void *field, char *why, size_t len)
{
	struct spawn_args *a = field;

	(void)why;
	(void)len;
	if (!strchr(arg, '=') || arg[0] == '=' || a->req.n_env >= HC_RUNTIME_MAX_ENV)
		return -EINVAL;
	a->env[a->req.n_env++] = arg;
	return 0;
}

static int parse_id(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (!hc_uuid_valid(arg))
		return -EINVAL;
	*(char **)field = arg;
	return 0;
}

#define S struct spawn_args
const struct hc_cli_opt hc_cli_opts_cluster_spawn[] = {
	HC_CLI_GRPC_ADDR(S, addr),
	HC_CLI_STR("image-ref", S, req.image_ref, "REF", "the OCI image"),
	HC_CLI_UINT("cpu", S, req.cores, 1, 1024, "1..1024", "N", "whole vCPUs, default 1"),
	HC_CLI_UINT("mem", S, req.memory, HC_RUNTIME_MIN_MEM_MB, 16u << 20,
		    "MB, at least " HC_CLI_QUOTE(HC_RUNTIME_MIN_MEM_MB), "MB",
		    "memory limit in MB, default 512"),
	HC_CLI_FUNC("ports", S, spec, parse_ports, NULL, "H:C[/h2c][,...]",
		    "host port -> container port: H in 30000-32767 is a node port on the owner, "
		    "any other H a proxy port; /h2c: the container speaks HTTP/2 without TLS "
		    "(gRPC), and the proxy's HTTP/2 clients reach it as HTTP/2"),
	{ .name = "env", .type = HC_CLI_OPT_FUNC, .parse = parse_env, .csv = true,
	  .why = "NAME=VALUE, at most " HC_CLI_QUOTE(HC_RUNTIME_MAX_ENV),
	  .metavar = "NAME=VALUE[,...]", .help = HC_CLI_ENV_HELP },
	HC_CLI_FUNC("id", S, req.id, parse_id, "a lowercase UUID", "UUID",
		    "the workload id (default: a new one)"),
	HC_CLI_FUNC("restart", S, restart, hc_cli_parse_restart, "always, on-failure or never",
		    "POLICY",
		    "when it exits, its node brings it back (same id, with a backoff): always, "
		    "on-failure (exit code not 0) or never (default: the agent's "
		    "--default-restart, always unless set)"),
	HC_CLI_FUNC("runtime", S, req.runtime, hc_cli_parse_runtime, "runc, runsc or microvm",
		    "runc|runsc|microvm", HC_CLI_RUNTIME_HELP),
	HC_CLI_HARDENING_ROWS(S, spec, req.pids_limit, spec.read_only_rootfs),
	HC_CLI_STR("policy", S, policy, "FILE",
		   "place by this policy instead of the agent's --cluster-policy (JSON: "
		   "examples/policies); replicas N prints N lines"),
	HC_CLI_FLAG("json", S, json, "print {\"id\", \"url\"} (and \"replicas\")"),
	HC_CLI_FLAG("progress", S, progress,
		    "on a terminal (stdout and stderr), show on stderr where the spawn is: the "
		    "node, its image pull (layers, bytes), each step with its time, then on how "
		    "many nodes it is routed (default true; --progress=false: never)"),
	HC_CLI_TIMEOUT(S, timeout_ms, "give up after this long (default 200)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef S

/* "ID URL", one line per replica; or the JSON. */
static void print_spawned(const Cluster__Services__Api__VmSpawnResponse *resp, bool json)
{
	if (json) {
		printf("{\"id\": \"%s\", \"url\": \"%s\"", resp->id, resp->url);
		for (size_t i = 0; i < resp->n_replicas; i++)
			printf("%s{\"id\": \"%s\", \"url\": \"%s\"}", i ? ", " : ", \"replicas\": [",
			       resp->replicas[i]->id, resp->replicas[i]->url);
		printf("%s}\n", resp->n_replicas ? "]" : "");
		return;
	}
	if (!resp->n_replicas)
		printf("%s %s\n", resp->id, resp->url);
	for (size_t i = 0; i < resp->n_replicas; i++)
		printf("%s %s\n", resp->replicas[i]->id, resp->replicas[i]->url);
}

/* The Spawn call, on the thread hc_cli_watch runs it on; it prints
 * nothing (the display owns the terminal until it returns). */
struct spawn_call {
	const char *target;
	const ProtobufCMessage *req;
	ProtobufCMessage *resp;
	struct hc_rpc_status st;
	int timeout_ms, r;
};

static void *spawn_call(void *arg)
{
	struct spawn_call *sc = arg;
	struct hc_rpc_client *client = hc_rpc_client_new(sc->target);

	if (!client) {
		sc->st.code = HC_RPC_RESOURCE_EXHAUSTED;
		snprintf(sc->st.message, sizeof(sc->st.message), "out of memory");
		sc->r = -ENOMEM;
		return NULL;
	}
	sc->r = hc_cli_rpc_call(client, SERVICE "Spawn", sc->req,
				&cluster__services__api__vm_spawn_response__descriptor, &sc->resp,
				false, sc->timeout_ms, &sc->st);
	hc_rpc_client_free(client);
	return NULL;
}

/* The nodes to ask for progress: a List of the agent at target. 0 when
 * there are none to ask (no progress then, the spawn goes on). */
static size_t progress_nodes(const char *target, struct hc_cli_watch_nodes *wn)
{
	Cluster__Services__Api__VmQueryRequest req = CLUSTER__SERVICES__API__VM_QUERY_REQUEST__INIT;
	struct hc_rpc_client *client = hc_rpc_client_new(target);
	ProtobufCMessage *resp = NULL;
	struct hc_rpc_status st;

	wn->n = 0;
	if (client && hc_cli_rpc_call(client, SERVICE "List", &req.base,
				      &cluster__services__api__nodes_state_response__descriptor,
				      &resp, false, 5000, &st) == 0)
		hc_cli_watch_nodes_of(wn, resp);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	hc_rpc_client_free(client);
	return wn->n;
}

/* The Spawn call with its progress shown (when pr): 0 with *resp, or
 * the exit status after one line. */
static int spawn_watched(const struct hc_cli_cmd *cmd, struct spawn_args *a,
			 struct hc_cli_progress *pr, Cluster__Services__Api__VmSpawnResponse **resp)
{
	struct spawn_call sc = { .req = &a->req.base, .timeout_ms = a->timeout_ms };
	struct hc_cli_watch_nodes *wn = pr ? calloc(1, sizeof(*wn)) : NULL;
	char target[128];
	struct hc_err why;

	if (hc_addr_dial_target(a->addr, target, sizeof(target), &why) < 0) {
		free(wn);
		return hc_cli_usage_error(cmd, "invalid --grpc-bind-addr %s: %s", a->addr, why.msg);
	}
	sc.target = target;
	if (wn) /* a preset id (--id) is followed; else the node's spawn in flight */
		wn->id = a->req.id && *a->req.id ? a->req.id : NULL;
	if (!wn || progress_nodes(target, wn) == 0)
		pr = NULL;
	hc_cli_watch(pr, spawn_call, &sc, hc_cli_look_nodes, wn);
	if (sc.r == 0 && pr && !wn->id) { /* how it ended, now that its id is known */
		wn->id = ((Cluster__Services__Api__VmSpawnResponse *)sc.resp)->id;
		hc_cli_look_nodes(wn, pr);
	}
	hc_cli_progress_end(pr, sc.r == 0);
	*resp = (Cluster__Services__Api__VmSpawnResponse *)sc.resp;
	if (sc.r == 0 && pr && (*resp)->n_replicas == 0)
		hc_cli_watch_routed(pr, wn, (*resp)->id);
	free(wn);
	return sc.r < 0 ? hc_cli_rpc_fail(target, &sc.st) : 0;
}

int hc_cli_cmd_cluster_spawn(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct spawn_args a = {
		.req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT,
		.addr = HC_CLI_DEFAULT_GRPC_ADDR,
		.timeout_ms = SPAWN_TIMEOUT_MS,
		.progress = true,
	};
	Cluster__Services__Api__VmSpawnResponse *resp = NULL;
	struct hc_cli_progress *pr = NULL;
	char *policy = NULL;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		goto out;
	r = HC_EXIT_OK;
	if (optind < argc) {
		r = hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
		goto out;
	}
	if (!a.req.image_ref || !*a.req.image_ref) {
		r = hc_cli_usage_error(cmd, "--image-ref is required");
		goto out;
	}
	if (to_request(&a) < 0) {
		r = hc_cli_fail("out of memory");
		goto out;
	}
	if (a.policy && (r = hc_cli_read_policy(a.policy, &policy)) != 0)
		goto out;
	a.req.policy = policy;
	pr = hc_cli_progress_new(a.progress);
	r = spawn_watched(cmd, &a, pr, &resp);
	if (r)
		goto out;
	print_spawned(resp, a.json);
out:
	hc_cli_progress_free(pr);
	free(policy);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	hc_workload_spec_fini(&a.spec);
	free(a.entries);
	free(a.ports);
	free(a.h2c);
	return r;
}

/* ---- stop ---- */

#define I struct hc_cli_id_args
const struct hc_cli_opt hc_cli_opts_cluster_stop[] = {
	HC_CLI_GRPC_ADDR(I, addr),
	HC_CLI_STR("id", I, id, "ID", "the workload"),
	HC_CLI_TIMEOUT(I, timeout_ms, "give up after this long (default 60)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_cluster_logs[] = {
	HC_CLI_GRPC_ADDR(I, addr),
	HC_CLI_STR("id", I, id, "ID", "the workload"),
	HC_CLI_UINT("tail", I, tail, 0, 100000000, NULL, "N",
		    "only the last N lines (default: all, at most 1 MiB)"),
	HC_CLI_FLAG("follow", I, follow, "keep printing new lines until interrupted"),
	HC_CLI_TIMEOUT(I, timeout_ms, "give up on one call after this long (default 60)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef I

int hc_cli_parse_id_args(const struct hc_cli_cmd *cmd, int argc, char **argv,
			 struct hc_cli_id_args *a, const char *default_addr)
{
	int r;

	a->addr = default_addr;
	a->timeout_ms = DEFAULT_TIMEOUT_MS;
	r = hc_cli_parse_opts(cmd, argc, argv, a);
	if (r >= 0 || (r = hc_cli_take_id(cmd, argv, &a->id)) >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	return -1;
}

int hc_cli_cmd_cluster_stop(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	Cluster__Services__Api__VmStopRequest req = CLUSTER__SERVICES__API__VM_STOP_REQUEST__INIT;
	Cluster__Services__Api__Node *node = NULL;
	struct hc_cli_id_args a = { 0 };
	int r = hc_cli_parse_id_args(cmd, argc, argv, &a, HC_CLI_DEFAULT_GRPC_ADDR);

	if (r >= 0)
		return r;
	req.id = (char *)a.id;
	r = call_agent(cmd, a.addr, "Stop", &req.base, &cluster__services__api__node__descriptor,
		       (ProtobufCMessage **)&node, a.timeout_ms);
	if (r)
		return r;
	printf("stopped %s on %s\n", a.id, node->id ? node->id : "?");
	protobuf_c_message_free_unpacked(&node->base, NULL);
	return HC_EXIT_OK;
}

/* ---- logs ---- */

static volatile sig_atomic_t interrupted;

static void on_interrupt(int signo)
{
	(void)signo;
	interrupted = 1;
}

int hc_cli_cmd_cluster_logs(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	Cluster__Services__Api__VmLogsRequest req = CLUSTER__SERVICES__API__VM_LOGS_REQUEST__INIT;
	struct sigaction sa = { .sa_handler = on_interrupt };
	struct hc_cli_id_args a = { 0 };
	int r = hc_cli_parse_id_args(cmd, argc, argv, &a, HC_CLI_DEFAULT_GRPC_ADDR);

	if (r >= 0)
		return r;
	req.id = (char *)a.id;
	req.tail = (uint32_t)a.tail;
	if (a.follow) {
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	/* Following polls for lines past the last one seen: the API is
	 * unary, and a line count is stable while the log only grows. */
	do {
		Cluster__Services__Api__VmLogsResponse *resp = NULL;

		r = call_agent(cmd, a.addr, "Logs", &req.base,
			       &cluster__services__api__vm_logs_response__descriptor,
			       (ProtobufCMessage **)&resp, a.timeout_ms);
		if (r)
			return interrupted ? HC_EXIT_OK : r;
		fputs(resp->logs ? resp->logs : "", stdout);
		fflush(stdout);
		if (resp->next_line > req.from_line)
			req.from_line = resp->next_line;
		req.tail = 0;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		if (a.follow && !interrupted)
			usleep(FOLLOW_POLL_US);
	} while (a.follow && !interrupted);
	return HC_EXIT_OK;
}

/* ---- metrics ---- */

struct metrics_args {
	const char *addr;
	int timeout_ms;
	bool prometheus;
};

#define M struct metrics_args
const struct hc_cli_opt hc_cli_opts_cluster_metrics[] = {
	HC_CLI_HTTP_ADDR(M, addr),
	HC_CLI_FLAG("prometheus", M, prometheus,
		    "print the agent's Prometheus text instead of the beacon table"),
	HC_CLI_TIMEOUT(M, timeout_ms, "give up after this long (default 60)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef M

int hc_cli_cmd_cluster_metrics(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct metrics_args a = { HC_CLI_DEFAULT_HTTP_ADDR, DEFAULT_TIMEOUT_MS, false };
	const char *addr = a.addr;
	struct hc_err err;
	char *body = NULL;
	int status = 0, r = hc_cli_parse_opts(cmd, argc, argv, &a);
	size_t len = 0;

	if (r >= 0)
		return r;
	addr = a.addr;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (!a.prometheus)
		return hc_cli_cluster_beacon_table(addr, a.timeout_ms);
	r = hc_cli_http(addr, "GET", "/metrics", NULL, 0, a.timeout_ms, &status, &body, &len,
			&err);
	if (r < 0)
		return hc_cli_fail("cannot reach the agent's HTTP API at %s: %s", addr, err.msg);
	if (status != 200) {
		free(body);
		return hc_cli_fail("the agent answered /metrics with HTTP %d%s%s", status,
				   status == 401 ? "; " : "", status == 401 ? hc_cli_token_hint() : "");
	}
	fwrite(body, 1, len, stdout);
	free(body);
	return HC_EXIT_OK;
}
