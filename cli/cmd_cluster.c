/* `hypercore cluster` (the agent) and its client verbs. */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "cluster.pb-c.h"
#include "hypercore/defaults.h"
#include "daemon/daemon.h"
#include "log/log.h"
#include "pbjson/pbjson.h"
#include "rpc/rpc.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_GRPC_ADDR "0.0.0.0:" STR(HC_DEFAULT_GRPC_PORT)
#define DEFAULT_HTTP_ADDR "0.0.0.0:" STR(HC_DEFAULT_HTTP_PORT)
#define DEFAULT_STATE_DIR "/var/lib/hypercore"
#define DEFAULT_BASE_URL "example.com"
#define DEFAULT_TIMEOUT_MS 10000

enum {
	OPT_GRPC_ADDR = 256,
	OPT_HTTP_ADDR,
	OPT_STATE_DIR,
	OPT_BASE_URL,
	OPT_LOG_LEVEL,
	OPT_JSON,
	OPT_TIMEOUT,
};

int hc_cli_cmd_cluster(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "grpc-bind-addr", required_argument, NULL, OPT_GRPC_ADDR },
		{ "http-bind-addr", required_argument, NULL, OPT_HTTP_ADDR },
		{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
		{ "cluster-base-url", required_argument, NULL, OPT_BASE_URL },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct hc_daemon_config cfg = {
		.grpc_bind_addr = DEFAULT_GRPC_ADDR,
		.http_bind_addr = DEFAULT_HTTP_ADDR,
		.state_dir = DEFAULT_STATE_DIR,
		.base_url = DEFAULT_BASE_URL,
	};
	enum hc_log_level level = HC_LOG_INFO;
	char err[512];
	int c;

	while ((c = hc_cli_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case OPT_GRPC_ADDR:
			cfg.grpc_bind_addr = optarg;
			break;
		case OPT_HTTP_ADDR:
			cfg.http_bind_addr = optarg;
			break;
		case OPT_STATE_DIR:
			cfg.state_dir = optarg;
			break;
		case OPT_BASE_URL:
			cfg.base_url = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (hc_log_level_parse(optarg, &level) < 0)
				return hc_cli_usage_error(cmd, "invalid --log-level %s", optarg);
			break;
		case HC_CLI_OPT_HELP:
			return HC_EXIT_OK;
		default:
			return HC_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (!*cfg.base_url || strchr(cfg.base_url, '/') || strchr(cfg.base_url, ' '))
		return hc_cli_usage_error(cmd, "invalid --cluster-base-url %s (want a domain)",
					  cfg.base_url);

	hc_log_set_level(level);
	if (hc_daemon_run(&cfg, err, sizeof(err)) < 0)
		return hc_cli_fail("%s", err);
	return HC_EXIT_OK;
}

/* ---- cluster list ---- */

static void print_ports(const Cluster__Services__Api__VmSpawnRequest *req, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; req && i < req->n_ports && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%u:%u", i ? "," : "",
					 req->ports[i]->key, req->ports[i]->value);
}

static int print_list_table(const Cluster__Services__Api__NodesStateResponse *list)
{
	static const char *const node_hdr[] = { "NODE", "ADDRESS", "WORKLOADS" };
	static const char *const wl_hdr[] = { "WORKLOAD", "NODE", "IMAGE", "CPU", "MEM(MB)",
					      "PORTS" };
	struct hc_cli_table *nodes = hc_cli_table_new(3, node_hdr);
	struct hc_cli_table *wls = hc_cli_table_new(6, wl_hdr);
	size_t total = 0;
	int r = 0;

	if (!nodes || !wls) {
		r = -1;
		goto out;
	}
	for (size_t i = 0; i < list->n_states; i++) {
		const Cluster__Services__Api__NodeStateResponse *st = list->states[i];
		const char *id = st->node ? st->node->id : NULL;
		char count[16];

		snprintf(count, sizeof(count), "%zu", st->n_workloads);
		r |= hc_cli_table_add(nodes,
				      (const char *const[]){ id, st->node ? st->node->ip : NULL,
							     count });
		for (size_t k = 0; k < st->n_workloads; k++) {
			const Cluster__Services__Api__WorkloadState *w = st->workloads[k];
			const Cluster__Services__Api__VmSpawnRequest *req = w->source_request;
			char cpu[16] = "", mem[16] = "", ports[256];

			if (req) {
				snprintf(cpu, sizeof(cpu), "%u", req->cores);
				snprintf(mem, sizeof(mem), "%u", req->memory);
			}
			print_ports(req, ports, sizeof(ports));
			r |= hc_cli_table_add(wls, (const char *const[]){
							   w->id, id, req ? req->image_ref : NULL,
							   cpu, mem, ports });
			total++;
		}
	}
	if (r)
		goto out;
	hc_cli_table_print(nodes, stdout);
	if (total) {
		putchar('\n');
		hc_cli_table_print(wls, stdout);
	}
out:
	hc_cli_table_free(nodes);
	hc_cli_table_free(wls);
	return r ? hc_cli_fail("out of memory") : HC_EXIT_OK;
}

static int print_list_json(const Cluster__Services__Api__NodesStateResponse *list)
{
	json_t *j = hc_pbjson_encode(&list->base);
	int r;

	if (!j)
		return hc_cli_fail("out of memory");
	r = json_dumpf(j, stdout, JSON_INDENT(2));
	json_decref(j);
	putchar('\n');
	return r < 0 ? hc_cli_fail("cannot write output") : HC_EXIT_OK;
}

int hc_cli_cmd_cluster_list(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "grpc-bind-addr", required_argument, NULL, OPT_GRPC_ADDR },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	Cluster__Services__Api__VmQueryRequest req = CLUSTER__SERVICES__API__VM_QUERY_REQUEST__INIT;
	const char *addr = DEFAULT_GRPC_ADDR;
	int timeout_ms = DEFAULT_TIMEOUT_MS;
	char target[128], why[256];
	ProtobufCMessage *resp = NULL;
	struct hc_rpc_client *client;
	struct hc_rpc_status st;
	bool json = false;
	int c, r;

	while ((c = hc_cli_getopt(cmd, argc, argv, opts)) != -1) {
		switch (c) {
		case OPT_GRPC_ADDR:
			addr = optarg;
			break;
		case OPT_JSON:
			json = true;
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
	if (hc_addr_dial_target(addr, target, sizeof(target), why, sizeof(why)) < 0)
		return hc_cli_usage_error(cmd, "invalid --grpc-bind-addr %s: %s", addr, why);

	client = hc_rpc_client_new(target);
	if (!client)
		return hc_cli_fail("out of memory");
	r = hc_rpc_client_call(client, "/cluster.services.api.ClusterService/List", &req.base,
			       &cluster__services__api__nodes_state_response__descriptor, &resp,
			       NULL, 0, timeout_ms, &st);
	hc_rpc_client_free(client);
	if (r < 0)
		return hc_cli_rpc_fail(target, &st);
	r = json ? print_list_json((const void *)resp) : print_list_table((const void *)resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}
