/* `hypercore cluster spawn|stop|logs|metrics`: cluster operations through
 * an agent's gRPC API (metrics through its HTTP API). */
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

#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_GRPC_ADDR "0.0.0.0:" STR(HC_DEFAULT_GRPC_PORT)
#define DEFAULT_HTTP_ADDR "0.0.0.0:" STR(HC_DEFAULT_HTTP_PORT)
#define SERVICE "/cluster.services.api.ClusterService/"
#define SPAWN_TIMEOUT_MS 200000 /* the agent tries candidates for 90 s each */
#define DEFAULT_TIMEOUT_MS 60000
#define FOLLOW_POLL_US 500000

enum {
	OPT_ADDR = 256,
	OPT_CPU,
	OPT_MEM,
	OPT_IMAGE,
	OPT_PORTS,
	OPT_ENV,
	OPT_ID,
	OPT_JSON,
	OPT_TIMEOUT,
	OPT_TAIL,
	OPT_FOLLOW,
};

/* One call to the agent at addr (a bind address, dialled as the CLI's
 * other verbs do). 0 with *resp, or the exit status after one line. */
static int call_agent(const struct hc_cli_cmd *cmd, const char *addr, const char *method,
		      const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_type,
		      ProtobufCMessage **resp, int timeout_ms)
{
	char target[128], why[256], path[128];
	struct hc_rpc_client *client;
	struct hc_rpc_status st;
	int r;

	if (hc_addr_dial_target(addr, target, sizeof(target), why, sizeof(why)) < 0)
		return hc_cli_usage_error(cmd, "invalid --grpc-bind-addr %s: %s", addr, why);
	client = hc_rpc_client_new(target);
	if (!client)
		return hc_cli_fail("out of memory");
	snprintf(path, sizeof(path), SERVICE "%s", method);
	r = hc_rpc_client_call(client, path, req, resp_type, resp, NULL, 0, timeout_ms, &st);
	hc_rpc_client_free(client);
	return r < 0 ? hc_cli_rpc_fail(target, &st) : 0;
}

/* ---- spawn ---- */

struct spawn_args {
	Cluster__Services__Api__VmSpawnRequest req;
	struct hc_workload_spec spec; /* ports and env parsed as the local verb does */
	Cluster__Services__Api__VmSpawnRequest__PortsEntry *entries;
	Cluster__Services__Api__VmSpawnRequest__PortsEntry **ports;
	char *env[HC_RUNTIME_MAX_ENV];
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
	a->req.env = a->env;
	return 0;
}

int hc_cli_cmd_cluster_spawn(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "grpc-bind-addr", required_argument, NULL, OPT_ADDR },
		{ "cpu", required_argument, NULL, OPT_CPU },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "image-ref", required_argument, NULL, OPT_IMAGE },
		{ "ports", required_argument, NULL, OPT_PORTS },
		{ "env", required_argument, NULL, OPT_ENV },
		{ "id", required_argument, NULL, OPT_ID },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct spawn_args a = { .req = CLUSTER__SERVICES__API__VM_SPAWN_REQUEST__INIT };
	const char *addr = DEFAULT_GRPC_ADDR;
	Cluster__Services__Api__VmSpawnResponse *resp = NULL;
	struct hc_runtime_err rerr;
	int timeout_ms = SPAWN_TIMEOUT_MS, c, r = HC_EXIT_OK;
	bool json = false;
	unsigned long v;

	while ((c = hc_cli_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case OPT_ADDR:
			addr = optarg;
			break;
		case OPT_CPU:
			if (hc_cli_parse_uint(optarg, 1, 1024, &v) < 0) {
				r = hc_cli_usage_error(cmd, "invalid --cpu %s (1..1024)", optarg);
				goto out;
			}
			a.req.cores = (uint32_t)v;
			break;
		case OPT_MEM:
			if (hc_cli_parse_uint(optarg, HC_RUNTIME_MIN_MEM_MB, 16u << 20, &v) < 0) {
				r = hc_cli_usage_error(cmd, "invalid --mem %s (MB, at least %d)", optarg,
						       HC_RUNTIME_MIN_MEM_MB);
				goto out;
			}
			a.req.memory = (uint32_t)v;
			break;
		case OPT_IMAGE:
			a.req.image_ref = optarg;
			break;
		case OPT_PORTS:
			if (hc_workload_spec_parse_ports(&a.spec, optarg, &rerr) < 0) {
				r = hc_cli_usage_error(cmd, "invalid --ports %s: %s", optarg, rerr.msg);
				goto out;
			}
			break;
		case OPT_ENV:
			if (!strchr(optarg, '=') || optarg[0] == '=' ||
			    a.req.n_env >= HC_RUNTIME_MAX_ENV) {
				r = hc_cli_usage_error(cmd, "invalid --env %s (NAME=VALUE, at most %d)",
						       optarg, HC_RUNTIME_MAX_ENV);
				goto out;
			}
			a.env[a.req.n_env++] = optarg;
			break;
		case OPT_ID:
			if (!hc_uuid_valid(optarg)) {
				r = hc_cli_usage_error(cmd, "invalid --id %s (a lowercase UUID)", optarg);
				goto out;
			}
			a.req.id = optarg;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_TIMEOUT:
			if (hc_cli_parse_seconds(optarg, &timeout_ms) < 0) {
				r = hc_cli_usage_error(cmd, "invalid --timeout %s", optarg);
				goto out;
			}
			break;
		case HC_CLI_OPT_HELP:
			goto out;
		default:
			r = HC_EXIT_USAGE;
			goto out;
		}
	}
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
	r = call_agent(cmd, addr, "Spawn", &a.req.base,
		       &cluster__services__api__vm_spawn_response__descriptor,
		       (ProtobufCMessage **)&resp, timeout_ms);
	if (r)
		goto out;
	if (json)
		printf("{\"id\": \"%s\", \"url\": \"%s\"}\n", resp->id, resp->url);
	else
		printf("%s %s\n", resp->id, resp->url);
out:
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	hc_workload_spec_fini(&a.spec);
	free(a.entries);
	free(a.ports);
	return r;
}

/* ---- stop ---- */

/* --grpc-bind-addr, --id, --timeout, and for logs --tail and --follow. */
struct id_args {
	const char *addr, *id;
	int timeout_ms;
	unsigned long tail;
	bool follow;
};

static int parse_id_args(const struct hc_cli_cmd *cmd, int argc, char **argv, bool logs,
			 struct id_args *a)
{
	const struct option opts[] = {
		{ "grpc-bind-addr", required_argument, NULL, OPT_ADDR },
		{ "id", required_argument, NULL, OPT_ID },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ logs ? "tail" : "help", logs ? required_argument : no_argument, NULL,
		  logs ? OPT_TAIL : 'h' },
		{ logs ? "follow" : "help", no_argument, NULL, logs ? OPT_FOLLOW : 'h' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	a->addr = DEFAULT_GRPC_ADDR;
	a->timeout_ms = DEFAULT_TIMEOUT_MS;
	while ((c = hc_cli_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case OPT_ADDR:
			a->addr = optarg;
			break;
		case OPT_ID:
			a->id = optarg;
			break;
		case OPT_TIMEOUT:
			if (hc_cli_parse_seconds(optarg, &a->timeout_ms) < 0)
				return hc_cli_usage_error(cmd, "invalid --timeout %s", optarg);
			break;
		case OPT_TAIL:
			if (hc_cli_parse_uint(optarg, 0, 100000000, &a->tail) < 0)
				return hc_cli_usage_error(cmd, "invalid --tail %s", optarg);
			break;
		case OPT_FOLLOW:
			a->follow = true;
			break;
		case HC_CLI_OPT_HELP:
			return HC_EXIT_OK;
		default:
			return HC_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (!a->id)
		return hc_cli_usage_error(cmd, "--id is required");
	if (!hc_uuid_valid(a->id))
		return hc_cli_usage_error(cmd, "invalid --id %s (a workload id is a lowercase UUID)",
					  a->id);
	return -1;
}

int hc_cli_cmd_cluster_stop(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	Cluster__Services__Api__VmStopRequest req = CLUSTER__SERVICES__API__VM_STOP_REQUEST__INIT;
	Cluster__Services__Api__Node *node = NULL;
	struct id_args a = { 0 };
	int r = parse_id_args(cmd, argc, argv, false, &a);

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
	struct id_args a = { 0 };
	int r = parse_id_args(cmd, argc, argv, true, &a);

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

int hc_cli_cmd_cluster_metrics(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "http-bind-addr", required_argument, NULL, OPT_ADDR },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *addr = DEFAULT_HTTP_ADDR;
	int timeout_ms = DEFAULT_TIMEOUT_MS, c, status = 0, r;
	char err[256], *body = NULL;
	size_t len = 0;

	while ((c = hc_cli_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case OPT_ADDR:
			addr = optarg;
			break;
		case OPT_TIMEOUT:
			if (hc_cli_parse_seconds(optarg, &timeout_ms) < 0)
				return hc_cli_usage_error(cmd, "invalid --timeout %s", optarg);
			break;
		case HC_CLI_OPT_HELP:
			return HC_EXIT_OK;
		default:
			return HC_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	r = hc_cli_http(addr, "GET", "/metrics", NULL, 0, timeout_ms, &status, &body, &len, err,
			sizeof(err));
	if (r < 0)
		return hc_cli_fail("cannot reach the agent's HTTP API at %s: %s", addr, err);
	if (status != 200) {
		free(body);
		return hc_cli_fail("the agent answered /metrics with HTTP %d", status);
	}
	fwrite(body, 1, len, stdout);
	free(body);
	return HC_EXIT_OK;
}
