/* `hypercore cluster` (the agent) and its client verbs. */
#include "cli.h"
#include "proxy/proxy.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "cluster.pb-c.h"
#include "cluster/cluster.h"
#include "daemon/daemon.h"
#include "dataplane/dataplane.h"
#include "log/log.h"
#include "pbjson/pbjson.h"
#include "rpc/rpc.h"
#include "runtime/runtime.h"

#define DEFAULT_BASE_URL "example.com"
#define DEFAULT_TIMEOUT_MS 10000

#define DEFAULT_CLUSTER_ADDR "0.0.0.0:" HC_CLI_QUOTE(HC_DEFAULT_GOSSIP_PORT)
#define MAX_TAGS 64

#define MAX_REGISTRIES 32
#define MAX_EGRESS_RULES 64

/* What `hypercore cluster` parses into: the agent's configuration and the
 * storage its pointers refer to. */
struct cluster_args {
	struct hc_daemon_config cfg;
	enum hc_log_level level;
	enum hc_log_format log_format;
	struct hc_gossip_kv tags[MAX_TAGS];
	const char *registries[MAX_REGISTRIES];
	const char *egress[MAX_EGRESS_RULES];
};

/* KEY=VALUE into the next tag; both parts non-empty keys, as serf's -tag.
 * field is the whole struct cluster_args. */
static int parse_tag(char *arg, void *field, char *why, size_t len)
{
	struct cluster_args *a = field;
	char *eq = strchr(arg, '=');

	(void)why;
	(void)len;
	if (!eq || eq == arg || a->cfg.ntags >= MAX_TAGS)
		return -EINVAL;
	*eq = '\0';
	a->tags[a->cfg.ntags].key = arg;
	a->tags[a->cfg.ntags].value = eq + 1;
	a->cfg.ntags++;
	return 0;
}

static int parse_node_name(char *arg, void *field, char *why, size_t whylen)
{
	size_t len = strlen(arg);

	(void)why;
	(void)whylen;
	if (!len || len > 128 ||
	    strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789-_.") != len)
		return -EINVAL;
	*(const char **)field = arg;
	return 0;
}

static int parse_dp_mode(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	return hc_dp_mode_parse(arg, field);
}

static int parse_forwarding(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	enum hc_proxy_forwarding mode;

	if (hc_proxy_forwarding_parse(arg, &mode) < 0)
		return -EINVAL;
	*(int *)field = (int)mode;
	return 0;
}

static int parse_api_auth(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (strcmp(arg, "token") != 0 && strcmp(arg, "none") != 0)
		return -EINVAL;
	*(bool *)field = strcmp(arg, "none") == 0;
	return 0;
}

static int parse_ibrl_mode(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (strcmp(arg, "enforce") == 0)
		*(int *)field = HC_CLUSTER_IBRL_ENFORCE + 1;
	else if (strcmp(arg, "permissive") == 0)
		*(int *)field = HC_CLUSTER_IBRL_PERMISSIVE + 1;
	else
		return -EINVAL;
	return 0;
}

static int parse_state_mode(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (strcmp(arg, "auto") == 0)
		*(int *)field = HC_CLUSTER_STATE_AUTO;
	else if (strcmp(arg, "chunked") == 0)
		*(int *)field = HC_CLUSTER_STATE_CHUNKED;
	else if (strcmp(arg, "digest") == 0)
		*(int *)field = HC_CLUSTER_STATE_DIGEST;
	else
		return -EINVAL;
	return 0;
}

static int parse_price(char *arg, void *field, char *why, size_t len)
{
	char *end;
	double v;

	(void)why;
	(void)len;
	errno = 0;
	v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v >= 0 && v <= 1e9))
		return -EINVAL;
	*(double *)field = v;
	return 0;
}

int hc_cli_parse_runtime(char *arg, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (strcmp(arg, "runc") != 0 && strcmp(arg, "runsc") != 0 && strcmp(arg, "microvm") != 0)
		return -EINVAL;
	*(const char **)field = arg;
	return 0;
}

int hc_cli_parse_restart(char *arg, void *field, char *why, size_t len)
{
	enum hc_restart_policy p = hc_restart_policy_parse(arg);

	(void)why;
	(void)len;
	if (p == HC_RESTART_UNSET)
		return -EINVAL;
	*(int *)field = (int)p;
	return 0;
}

#define A struct cluster_args
const struct hc_cli_opt hc_cli_opts_cluster[] = {
	HC_CLI_STR("grpc-bind-addr", A, cfg.grpc_bind_addr, "ADDR",
		   "gRPC API address (default " HC_CLI_DEFAULT_GRPC_ADDR ")"),
	HC_CLI_STR("http-bind-addr", A, cfg.http_bind_addr, "ADDR",
		   "HTTP API address (default " HC_CLI_DEFAULT_HTTP_ADDR ")"),
	HC_CLI_STR("state-dir", A, cfg.state_dir, "DIR",
		   "persistent state: node id, keys (default " HC_DEFAULT_STATE_DIR ")"),
	HC_CLI_STR("cluster-base-url", A, cfg.base_url, "DOM",
		   "workloads are served at <id>.DOM (default " DEFAULT_BASE_URL ")"),
	HC_CLI_LOG_LEVEL(A, level),
	HC_CLI_LOG_FORMAT(A, log_format),

	HC_CLI_GROUP("Gossip (the Serf protocol; serf agents can join the same cluster)"),
	HC_CLI_STR("cluster-bind-addr", A, cfg.cluster_bind_addr, "ADDR",
		   "gossip UDP+TCP address (default " DEFAULT_CLUSTER_ADDR ")"),
	HC_CLI_STR("cluster-advertise-addr", A, cfg.cluster_advertise_addr, "ADDR",
		   "address peers dial (default: the bind address, or the default route's for "
		   "a wildcard)"),
	HC_CLI_FUNC("node-name", A, cfg.node_name, parse_node_name,
		    "letters, digits, -, _ and ., at most 128", "NAME",
		    "name in the cluster (default: the node id)"),
	HC_CLI_SECRET("cluster-encrypt", A, cfg.encrypt_key, "KEY",
		   "base64 key, as `serf agent -encrypt` takes"),
	HC_CLI_STR("cluster-keyring", A, cfg.keyring_file, "FILE",
		   "JSON list of base64 keys, first primary; kept up to date when keys rotate "
		   "(as serf -keyring-file)"),
	HC_CLI_SECRET("join-token", A, cfg.join_token, "STRING",
		   "join the cluster whose key and API token it carries (what `hypercore cluster "
		   "join-token` prints on a member); kept in --state-dir. Without a key, token or "
		   "keyring, a node with no seeds makes a new cluster key there, and a node with "
		   "seeds refuses to start"),
	HC_CLI_FLAG("cluster-insecure", A, cfg.cluster_insecure,
		    "plaintext gossip, for upstream nodes and serf agents without a key: anyone "
		    "who reaches the gossip port can join and forge states"),
	{ .name = "cluster-tag", .type = HC_CLI_OPT_FUNC, .parse = parse_tag,
	  .why = "want KEY=VALUE", .metavar = "KEY=VALUE",
	  .help = "a tag of this node (repeatable)" },
	HC_CLI_UINT("gossip-interval-ms", A, cfg.gossip_interval_ms, 10, 600000, "ms, 10..600000",
		    "N", "gossip round period (default 2000)"),
	HC_CLI_UINT("probe-interval-ms", A, cfg.probe_interval_ms, 10, 600000, "ms, 10..600000",
		    "N", "failure detection probe period (default 5000)"),
	HC_CLI_UINT("suspicion-mult", A, cfg.suspicion_mult, 1, 64, "1..64", "N",
		    "how many probe periods, scaled by the cluster's size, a suspect member has "
		    "to refute it before it counts as failed (default 6)"),
	HC_CLI_UINT("gossip-nodes", A, cfg.gossip_nodes, 1, 64, "1..64", "N",
		    "members each gossip round sends to (default 2)"),
	HC_CLI_UINT("user-event-size-limit", A, cfg.user_event_size_limit, 64, 9216,
		    "64..9216 bytes, serf's hard maximum", "BYTES",
		    "largest user event sent or accepted (default 2048)"),
	HC_CLI_UINT("coalesce-ms", A, cfg.coalesce_ms, 0, 600000, "0..600000", "N",
		    "hold member events and coalescable user events this long, keeping the "
		    "newest (default 0: off)"),

	HC_CLI_GROUP("API authentication (bearer tokens on gRPC and HTTP)"),
	HC_CLI_FUNC("api-auth", A, cfg.api_auth_none, parse_api_auth, "token or none", "MODE",
		    "token (default): every call but /healthz wants a token; none: upstream's "
		    "open APIs, for closed networks only"),
	HC_CLI_STR("api-token-file", A, cfg.api_token_file, "FILE",
		   "the admin tokens accepted, one per line, the first also sent to other "
		   "nodes (default: <state-dir>/api-token, made on first start); SIGHUP re-reads "
		   "it"),
	HC_CLI_FLAG("metrics-auth", A, cfg.metrics_auth, "/metrics wants a token too"),

	HC_CLI_GROUP("Runtime (containerd through CRI)"),
	HC_CLI_STR("run-dir", A, cfg.run_dir, "DIR",
		   "sockets and volatile state (default /run/hypercore); the embedded "
		   "containerd serves DIR/containerd.sock"),
	HC_CLI_STR("containerd-socket", A, cfg.containerd_socket, "PATH",
		   "use this containerd instead of starting one"),
	HC_CLI_FLAG("no-runtime", A, cfg.no_runtime, "run no workloads here (gossip and APIs only)"),
	HC_CLI_LIST("insecure-registry", A, registries, cfg.ninsecure, "HOST:PORT",
		    "pull from it over plain HTTP (repeatable)"),
	HC_CLI_STR("workload-subnet", A, cfg.workload_subnet, "CIDR",
		   "workload addresses (default " HC_WORKLOAD_SUBNET "); must overlap no "
		   "route the node has"),
	HC_CLI_UINT("capacity-cpu", A, cfg.capacity_cpus, 1, 1ul << 30, NULL, "N",
		    "vCPUs offered to workloads (default max(nproc, 225))"),
	HC_CLI_UINT("capacity-mem", A, cfg.capacity_mem_mb, 1, 1ul << 30, NULL, "MB",
		    "memory offered (default: MemAvailable)"),
	HC_CLI_UINT("log-max-size", A, cfg.log_max_size, HC_RUNTIME_LOG_MIN_SIZE, 1ul << 40, NULL,
		    "BYTES",
		    "rotate a workload's log when it reaches this size (default 10485760, "
		    "10 MiB; at least 65536)"),
	HC_CLI_UINT("log-max-files", A, cfg.log_max_files, 1, HC_RUNTIME_LOG_MAX_FILES, NULL, "N",
		    "rotated log files kept per workload besides the current one (default 3): "
		    "a workload's logs take at most (N + 1) x --log-max-size"),
	HC_CLI_STR("vm-kernel", A, cfg.vm_kernel, "FILE",
		   "the guest kernel of --runtime microvm workloads, a vmlinuz-<release> with "
		   "its modules in /lib/modules/<release> (default: $HC_VM_KERNEL, else the "
		   "newest /boot/vmlinuz-*-cloud-amd64)"),

	HC_CLI_GROUP("Data plane (XDP and TC programs, pinned maps)"),
	HC_CLI_STR("dataplane-iface", A, cfg.dataplane_iface, "IF",
		   "the uplink node ports are served on (default: the default route's "
		   "interface)"),
	HC_CLI_FUNC("dataplane-mode", A, cfg.dataplane_mode, parse_dp_mode, "auto, xdp or tc",
		    "MODE",
		    "how: xdp, tc or auto (default): XDP where the driver runs it natively and "
		    "hands it whole checksums, TC ingress on veth/tap uplinks (their frames may "
		    "carry partial checksums) or without native XDP"),
	HC_CLI_LIST("workload-allow-egress", A, egress, cfg.nworkload_allow_egress,
		    "CIDR[:PORTS]",
		    "let workloads reach this destination, which the egress policy refuses "
		    "them (cluster members' addresses but for the proxy, node and DNS ports; "
		    "link-local and metadata addresses; other workloads): a prefix, with a port "
		    "or range and /tcp or /udp if given (10.0.0.5:5432, 10.1.0.0/16:8000-8099/tcp, "
		    "169.254.169.253:53, [2001:db8::1]:443); every port and protocol without one "
		    "(repeatable)"),
	HC_CLI_STR("bpf-pin-dir", A, cfg.bpf_pin_dir, "DIR",
		   "where programs' links and maps are pinned (default " HC_DEFAULT_BPF_PIN_DIR
		   ")"),
	HC_CLI_FLAG("no-dataplane", A, cfg.no_dataplane,
		    "load no BPF programs (gossip, runtime and APIs only; no proxy either)"),

	HC_CLI_GROUP("Proxy (Host/SNI routing of hc_routes on every port a route names)"),
	HC_CLI_STR("proxy-bind-addr", A, cfg.proxy_bind_addr, "IP", "listen address (default 0.0.0.0)"),
	HC_CLI_UINT("proxy-workers", A, cfg.proxy_workers, 1, 64, "1..64", "N",
		    "worker threads (default: one per CPU)"),
	HC_CLI_FUNC("proxy-forwarding", A, cfg.proxy_forwarding, parse_forwarding,
		    "splice, sockmap or copy", "M", "splice (default), sockmap or copy"),
	HC_CLI_FLAG("proxy-forwarded-headers", A, cfg.proxy_forwarded_headers,
		    "replace X-Forwarded-For/-Proto and Forwarded on every request with ours "
		    "(the default; kept for compatibility)"),
	HC_CLI_FLAG("no-proxy-forwarded-headers", A, cfg.proxy_no_forwarded_headers,
		    "pass request heads' forwarded fields unchanged (only behind a proxy that "
		    "sets them)"),
	HC_CLI_FLAG("no-proxy-backend-reuse", A, cfg.proxy_no_backend_reuse,
		    "open a backend connection per client connection instead of reusing idle "
		    "keep-alive ones (splice and copy modes)"),
	HC_CLI_UINT("proxy-head-timeout-ms", A, cfg.proxy_head_timeout_ms, 100, 3600000,
		    "100..3600000", "N", "408 for a head not complete by then (default 10000)"),
	HC_CLI_UINT("proxy-idle-timeout", A, cfg.proxy_idle_timeout, 1, 86400, "1..86400", "S",
		    "close an HTTP connection after S seconds without a byte either way "
		    "(default 60)"),
	HC_CLI_UINT("proxy-tunnel-idle-timeout", A, cfg.proxy_tunnel_idle_timeout, 1, 604800,
		    "1..604800", "S",
		    "the same for upgraded (WebSocket) and TLS passthrough connections "
		    "(default 3600)"),
	HC_CLI_UINT("proxy-drain-timeout", A, cfg.proxy_drain_timeout, 1, 3600, "1..3600", "S",
		    "at a stop (SIGTERM, SIGINT), after leaving the cluster: wait up to S seconds "
		    "for requests in flight to be answered, accepting none (default 10)"),
	HC_CLI_UINT("proxy-max-conns", A, cfg.proxy_max_conns, 1, 1000000, "1..1000000", "N",
		    "open connections per port (default 10000); over it a new connection is "
		    "reset at once"),
	HC_CLI_UINT("proxy-max-conns-per-ip", A, cfg.proxy_max_conns_per_ip, 1, 1000000,
		    "1..1000000", "N",
		    "open connections per client address over every port (default 1024); over "
		    "it a new connection is reset at once"),
	HC_CLI_STR("cluster-tls-cert", A, cfg.tls_cert, "FILE",
		   "terminate TLS for names under the base URL with this (wildcard) "
		   "certificate; SIGHUP reloads it and the key"),
	HC_CLI_STR("cluster-tls-key", A, cfg.tls_key, "FILE",
		   "the certificate's private key (a file only its owner may read)"),
	HC_CLI_UINT("proxy-tls-ticket-rotate-s", A, cfg.tls_ticket_rotate_s, 1, 86400, "1..86400",
		    "N",
		    "replace the TLS session ticket key this often (default 3600); tickets of "
		    "the key before stay valid for one more period"),
	HC_CLI_FLAG("no-proxy", A, cfg.no_proxy, "run no proxy"),

	HC_CLI_GROUP("Orchestration"),
	HC_CLI_FLAG("respawn-on-node-failure", A, cfg.respawn_on_node_failure,
		    "reschedule the workloads of failed nodes (one respawn-enabled node each, "
		    "chosen the same way by all), except those whose restart policy is never"),
	HC_CLI_FUNC("default-restart", A, cfg.default_restart, hc_cli_parse_restart,
		    "always, on-failure or never", "POLICY",
		    "restart policy of spawns that name none (default always, as upstream: a "
		    "workload that exits is brought back with the same id)"),
	HC_CLI_STR("cluster-policy", A, cfg.cluster_policy, "FILE",
		   "place spawns by this policy (JSON: examples/policies); checked at start, "
		   "SIGHUP reloads it (default: upstream's permissive default)"),
	HC_CLI_UINT("state-period-ms", A, cfg.state_period_ms, 100, 600000, "100..600000", "N",
		    "state broadcast period (default 5000); a node silent for 3 periods loses "
		    "its routes"),
	HC_CLI_FUNC("state-broadcast", A, cfg.state_mode, parse_state_mode,
		    "auto, chunked or digest", "MODE",
		    "auto (default): signed digests carrying each change, peers pull the rest "
		    "over HTTP; upstream's chunked states too while a member sends no digests; "
		    "chunked: upstream's only; digest: digests only"),

	HC_CLI_GROUP("IBRL beacon (signed states; the node key is <state-dir>/node-key.pem)"),
	HC_CLI_FUNC("ibrl-mode", A, cfg.ibrl_mode, parse_ibrl_mode, "enforce or permissive",
		    "MODE",
		    "enforce (default with encrypted gossip): only states signed by their node's "
		    "key are used; permissive (default with --cluster-insecure): unsigned states "
		    "of nodes that never signed (upstream's) are used too, shown unverified"),
	HC_CLI_STR("trusted-keys", A, cfg.trusted_keys, "FILE",
		   "JSON {\"node name\": \"base64 public key\"}: the only keys accepted "
		   "(default: each node's key is pinned the first time it is seen, in "
		   "<state-dir>/trusted-keys.json)"),
	HC_CLI_FUNC("beacon-price", A, cfg.beacon_price, parse_price, "a number >= 0", "N",
		    "price per GB announced in the beacon (default 0.01)"),
	HC_CLI_STR("beacon-reputation", A, cfg.beacon_reputation, "SCORE",
		   "reputation score announced, as upstream a string (default 1.0)"),
	HC_CLI_STR("beacon-endpoint", A, cfg.beacon_endpoint, "URL|HOST:PORT",
		   "beacon network endpoint, checked every 30 s (http://: GET /health must "
		   "answer 200; otherwise a TCP connect; 5 s) into "
		   "hypercore_ibrl_beacon_connected"),
	{ .name = NULL },
};
#undef A

/* The agent's options with their defaults, then as argv, the environment
 * and the configuration file set them. -1 to go on, else the exit status. */
static int parse_cluster_args(const struct hc_cli_cmd *cmd, int argc, char **argv,
			      struct cluster_args *a)
{
	*a = (struct cluster_args){
		.cfg = {
			.grpc_bind_addr = HC_CLI_DEFAULT_GRPC_ADDR,
			.http_bind_addr = HC_CLI_DEFAULT_HTTP_ADDR,
			.state_dir = HC_DEFAULT_STATE_DIR,
			.base_url = DEFAULT_BASE_URL,
			.cluster_bind_addr = DEFAULT_CLUSTER_ADDR,
			.beacon_price = 0.01,
		},
		.level = HC_LOG_INFO,
	};
	return hc_cli_parse_opts(cmd, argc, argv, a);
}

int hc_cli_cmd_config_show(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct cluster_args a;
	int r = parse_cluster_args(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	hc_cli_print_config(cmd, &a, stdout);
	if (optind < argc) {
		printf("\nJOIN-ADDR:");
		for (int i = optind; i < argc; i++)
			printf(" %s", argv[i]);
		putchar('\n');
	}
	return HC_EXIT_OK;
}

int hc_cli_cmd_cluster(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct cluster_args a;
	struct hc_daemon_config *cfg = &a.cfg;
	struct hc_err err;
	int r = parse_cluster_args(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (cfg->ntags)
		cfg->tags = a.tags;
	if (cfg->ninsecure)
		cfg->insecure_registries = a.registries;
	if (cfg->nworkload_allow_egress)
		cfg->workload_allow_egress = a.egress;
	/* Positional arguments are seeds to join, as upstream's. */
	cfg->join = (const char *const *)argv + optind;
	cfg->njoin = (size_t)(argc - optind);
	if (!*cfg->base_url || strchr(cfg->base_url, '/') || strchr(cfg->base_url, ' '))
		return hc_cli_usage_error(cmd, "invalid --cluster-base-url %s (want a domain)",
					  cfg->base_url);

	hc_cli_log_setup(a.level, a.log_format);
	if (hc_daemon_run(cfg, &err) < 0)
		return hc_cli_fail("%s", err.msg);
	return HC_EXIT_OK;
}

/* ---- client verbs ---- */

/* What read-only client verbs take: the agent's address, --json, --timeout. */
struct client_opts {
	const char *addr;
	bool json;
	bool show_env; /* cluster list */
	int timeout_ms;
};

#define C struct client_opts
const struct hc_cli_opt hc_cli_opts_cluster_list[] = {
	HC_CLI_GRPC_ADDR(C, addr),
	HC_CLI_FLAG("json", C, json, "print JSON instead of a table"),
	HC_CLI_FLAG("show-env", C, show_env,
		    "with --json, env values as given (admin token only; else NAME=<redacted>)"),
	HC_CLI_TIMEOUT(C, timeout_ms, "give up after this long (default 10)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_cluster_members[] = {
	HC_CLI_HTTP_ADDR(C, addr),
	HC_CLI_FLAG("json", C, json, "print JSON instead of a table"),
	HC_CLI_TIMEOUT(C, timeout_ms, "give up after this long (default 10)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef C

/* Parses a read-only verb's options (its table starts with the address).
 * Returns -1 to go on, else the exit status to return. */
static int parse_client_opts(const struct hc_cli_cmd *cmd, int argc, char **argv,
			     struct client_opts *o)
{
	struct hc_addr check;
	struct hc_err why;
	int r;

	o->timeout_ms = DEFAULT_TIMEOUT_MS;
	r = hc_cli_parse_opts(cmd, argc, argv, o);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (hc_addr_parse(o->addr, false, &check, &why) < 0)
		return hc_cli_usage_error(cmd, "invalid --%s %s: %s", cmd->opts[0].name, o->addr,
					  why.msg);
	return -1;
}

/* ---- cluster list ---- */

static void print_ports(const Cluster__Services__Api__VmSpawnRequest *req, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; req && i < req->n_ports && used < len; i++) {
		bool h2c = false;

		for (size_t k = 0; k < req->n_h2c_ports; k++)
			h2c |= req->h2c_ports[k] == req->ports[i]->key;
		used += (size_t)snprintf(buf + used, len - used, "%s%u:%u%s", i ? "," : "",
					 req->ports[i]->key, req->ports[i]->value, h2c ? "/h2c" : "");
	}
}

static int print_list_table(const Cluster__Services__Api__NodesStateResponse *list)
{
	static const char *const node_hdr[] = { "NODE", "ADDRESS", "WORKLOADS", "TRUST" };
	static const char *const wl_hdr[] = { "WORKLOAD", "NODE", "IMAGE", "CPU", "MEM(MB)",
					      "PORTS", "RESTART" };
	struct hc_cli_table *nodes = hc_cli_table_new(4, node_hdr);
	struct hc_cli_table *wls = hc_cli_table_new(7, wl_hdr);
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
							     count, st->trust });
		for (size_t k = 0; k < st->n_workloads; k++) {
			const Cluster__Services__Api__WorkloadState *w = st->workloads[k];
			const Cluster__Services__Api__VmSpawnRequest *req = w->source_request;
			char cpu[16] = "", mem[16] = "", ports[256];

			if (req) {
				snprintf(cpu, sizeof(cpu), "%u", req->cores);
				snprintf(mem, sizeof(mem), "%u", req->memory);
			}
			print_ports(req, ports, sizeof(ports));
			/* upstream nodes say nothing: they always bring it back */
			r |= hc_cli_table_add(wls, (const char *const[]){
							   w->id, id, req ? req->image_ref : NULL,
							   cpu, mem, ports,
							   req && req->restart && *req->restart
								   ? req->restart
								   : "always" });
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
	Cluster__Services__Api__VmQueryRequest req = CLUSTER__SERVICES__API__VM_QUERY_REQUEST__INIT;
	struct client_opts o = { .addr = HC_CLI_DEFAULT_GRPC_ADDR };
	char target[128];
	struct hc_err why;
	ProtobufCMessage *resp = NULL;
	struct hc_rpc_client *client;
	struct hc_rpc_status st;
	int r = parse_client_opts(cmd, argc, argv, &o);

	if (r >= 0)
		return r;
	if (hc_addr_dial_target(o.addr, target, sizeof(target), &why) < 0)
		return hc_cli_usage_error(cmd, "invalid --grpc-bind-addr %s: %s", o.addr, why.msg);

	client = hc_rpc_client_new(target);
	if (!client)
		return hc_cli_fail("out of memory");
	r = hc_cli_rpc_call(client, "/cluster.services.api.ClusterService/List", &req.base,
			    &cluster__services__api__nodes_state_response__descriptor, &resp,
			    o.show_env, o.timeout_ms, &st);
	hc_rpc_client_free(client);
	if (r < 0)
		return hc_cli_rpc_fail(target, &st);
	r = o.json ? print_list_json((const void *)resp) : print_list_table((const void *)resp);
	protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

/* ---- cluster members ---- */

static void format_tags(json_t *tags, char *buf, size_t len)
{
	const char *key;
	json_t *value;
	size_t used = 0;

	buf[0] = '\0';
	json_object_foreach(tags, key, value) {
		if (used < len)
			used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", used ? "," : "",
						 key, json_string_value(value));
	}
}

static int print_members_table(json_t *members)
{
	static const char *const hdr[] = { "NAME", "ADDRESS", "STATUS", "RTT(ms)", "TAGS" };
	struct hc_cli_table *t = hc_cli_table_new(5, hdr);
	json_t *m;
	size_t i;
	int r = 0;

	if (!t)
		return hc_cli_fail("out of memory");
	json_array_foreach(members, i, m) {
		json_t *rtt = json_object_get(m, "rtt_ms");
		char rtt_text[32] = "", tags[512];

		if (json_is_number(rtt))
			snprintf(rtt_text, sizeof(rtt_text), "%.3f", json_number_value(rtt));
		format_tags(json_object_get(m, "tags"), tags, sizeof(tags));
		r |= hc_cli_table_add(t, (const char *const[]){
						 json_string_value(json_object_get(m, "name")),
						 json_string_value(json_object_get(m, "addr")),
						 json_string_value(json_object_get(m, "status")),
						 rtt_text, tags });
	}
	if (r == 0)
		hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);
	return r ? hc_cli_fail("out of memory") : HC_EXIT_OK;
}

int hc_cli_cmd_cluster_members(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct client_opts o = { .addr = HC_CLI_DEFAULT_HTTP_ADDR };
	json_t *doc, *members;
	int r = parse_client_opts(cmd, argc, argv, &o);

	if (r >= 0)
		return r;
	members = hc_cli_api_call(o.addr, "GET", "/members", NULL, 0, o.timeout_ms, &doc);
	if (!members)
		return HC_EXIT_FAIL;
	if (!json_is_array(members)) {
		json_decref(doc);
		return hc_cli_fail("agent at %s: unexpected answer", o.addr);
	}
	if (o.json) {
		r = json_dumpf(members, stdout, JSON_INDENT(2)) < 0 ? HC_EXIT_FAIL : HC_EXIT_OK;
		putchar('\n');
	} else {
		r = print_members_table(members);
	}
	json_decref(doc);
	return r;
}

json_t *hc_cli_api_call(const char *addr, const char *method, const char *path,
			const void *payload, size_t len, int timeout_ms, json_t **doc)
{
	struct hc_err err;
	char *body;
	json_error_t jerr;
	json_t *resp, *e;
	size_t blen;
	int status;

	*doc = NULL;
	if (hc_cli_http(addr, method, path, payload, len, timeout_ms, &status, &body, &blen,
			&err) < 0) {
		hc_cli_fail("%s", err.msg);
		return NULL;
	}
	*doc = json_loadb(body, blen, 0, &jerr);
	free(body);
	resp = json_object_get(*doc, "response");
	if (status == 200 && resp)
		return resp;
	e = json_object_get(*doc, "error");
	hc_cli_fail("%s (agent at %s: HTTP %d)%s%s",
		    json_is_string(e) ? json_string_value(e) : "unexpected answer", addr, status,
		    status == 401 ? "; " : "", status == 401 ? hc_cli_token_hint() : "");
	json_decref(*doc);
	*doc = NULL;
	return NULL;
}

/* Appends "&key=<value, percent-encoded>" to a URL being built. */
int hc_cli_url_param(char *url, size_t cap, const char *key, const char *value)
{
	size_t n = strlen(url);

	n += (size_t)snprintf(url + n, n < cap ? cap - n : 0, "%s%s=", strchr(url, '?') ? "&" : "?",
			      key);
	for (const unsigned char *p = (const unsigned char *)value; *p && n + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-_.~", *p))
			url[n++] = (char)*p;
		else
			n += (size_t)snprintf(url + n, cap - n, "%%%02X", *p);
	}
	if (n + 4 >= cap)
		return -E2BIG;
	url[n] = '\0';
	return 0;
}

/* The NAME [PAYLOAD] arguments of `cluster event` and `cluster query`:
 * the name is argv[optind]; payload stays "" when absent. */
static int name_and_payload(int argc, char **argv, const char **payload)
{
	if (optind >= argc || argc - optind > 2)
		return -EINVAL;
	if (argc - optind == 2)
		*payload = argv[optind + 1];
	return 0;
}

struct event_args {
	const char *addr;
	bool coalesce;
};

#define E struct event_args
const struct hc_cli_opt hc_cli_opts_cluster_event[] = {
	HC_CLI_HTTP_ADDR(E, addr),
	HC_CLI_FLAG("coalesce", E, coalesce,
		    "let receivers coalesce it (the default; as serf's -coalesce=true)"),
	HC_CLI_NOFLAG("no-coalesce", E, coalesce, "ask receivers not to coalesce it"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef E

int hc_cli_cmd_cluster_event(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct event_args a = { .addr = HC_CLI_DEFAULT_HTTP_ADDR, .coalesce = true };
	const char *payload = "";
	char url[1024] = "/event";
	json_t *doc, *resp;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (name_and_payload(argc, argv, &payload) < 0)
		return hc_cli_usage_error(cmd, "want NAME [PAYLOAD]");
	if (hc_cli_url_param(url, sizeof(url), "name", argv[optind]) < 0 ||
	    hc_cli_url_param(url, sizeof(url), "coalesce", a.coalesce ? "1" : "0") < 0)
		return hc_cli_usage_error(cmd, "event name too long");
	resp = hc_cli_api_call(a.addr, "POST", url, payload, strlen(payload), DEFAULT_TIMEOUT_MS,
			       &doc);
	if (!resp)
		return HC_EXIT_FAIL;
	printf("Event '%s' dispatched! Coalescing enabled: %s\n", argv[optind],
	       a.coalesce ? "true" : "false");
	json_decref(doc);
	return HC_EXIT_OK;
}

/* What `cluster query` parses into: its filters go straight into the URL,
 * in the order given. */
struct query_args {
	const char *addr;
	char url[4096];
	unsigned long timeout_ms;
	bool json, ack;
	int bad; /* the URL ran out of room */
};

static int query_node(char *arg, void *field, char *why, size_t len)
{
	struct query_args *q = field;

	(void)why;
	(void)len;
	q->bad |= hc_cli_url_param(q->url, sizeof(q->url), "node", arg);
	return 0;
}

static int query_tag(char *arg, void *field, char *why, size_t len)
{
	struct query_args *q = field;

	(void)why;
	(void)len;
	if (!strchr(arg, '='))
		return -EINVAL;
	q->bad |= hc_cli_url_param(q->url, sizeof(q->url), "tag", arg);
	return 0;
}

static int query_relay(char *arg, void *field, char *why, size_t len)
{
	struct query_args *q = field;
	unsigned long relay;

	(void)why;
	(void)len;
	if (hc_cli_parse_uint(arg, 0, 255, &relay) < 0)
		return -EINVAL;
	q->bad |= hc_cli_url_param(q->url, sizeof(q->url), "relay", arg);
	return 0;
}

static int query_timeout(char *arg, void *field, char *why, size_t len)
{
	struct query_args *q = field;
	char num[32];

	(void)why;
	(void)len;
	if (hc_cli_parse_uint(arg, 1, 600, &q->timeout_ms) < 0)
		return -EINVAL;
	q->timeout_ms *= 1000;
	snprintf(num, sizeof(num), "%lu", q->timeout_ms);
	q->bad |= hc_cli_url_param(q->url, sizeof(q->url), "timeout", num);
	return 0;
}

#define Q struct query_args
const struct hc_cli_opt hc_cli_opts_cluster_query[] = {
	HC_CLI_HTTP_ADDR(Q, addr),
	{ .name = "node", .type = HC_CLI_OPT_FUNC, .parse = query_node, .metavar = "NAME",
	  .help = "only this node answers (repeatable)" },
	{ .name = "tag", .type = HC_CLI_OPT_FUNC, .parse = query_tag, .why = "want KEY=REGEXP",
	  .metavar = "KEY=REGEXP", .help = "only nodes whose tag matches (repeatable)" },
	HC_CLI_NOFLAG("no-ack", Q, ack, "do not ask for acknowledgements"),
	{ .name = "relay-factor", .type = HC_CLI_OPT_FUNC, .parse = query_relay, .why = "0..255",
	  .metavar = "N", .help = "responses also come through N other members" },
	{ .name = "timeout", .type = HC_CLI_OPT_FUNC, .parse = query_timeout, .why = "seconds",
	  .metavar = "SECONDS", .help = "how long to collect (default: serf's formula)" },
	HC_CLI_FLAG("json", Q, json, "print JSON"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef Q

int hc_cli_cmd_cluster_query(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct query_args q = { .addr = HC_CLI_DEFAULT_HTTP_ADDR, .url = "/query", .ack = true };
	const char *payload = "";
	json_t *doc, *resp, *item;
	size_t i;
	int r = hc_cli_parse_opts(cmd, argc, argv, &q);

	if (r >= 0)
		return r;
	if (name_and_payload(argc, argv, &payload) < 0)
		return hc_cli_usage_error(cmd, "want NAME [PAYLOAD]");
	q.bad |= hc_cli_url_param(q.url, sizeof(q.url), "name", argv[optind]);
	q.bad |= hc_cli_url_param(q.url, sizeof(q.url), "ack", q.ack ? "1" : "0");
	if (q.bad)
		return hc_cli_usage_error(cmd, "too many filters");
	/* The agent answers when the query's time is up: wait a bit longer. */
	resp = hc_cli_api_call(q.addr, "POST", q.url, payload, strlen(payload),
			       (int)(q.timeout_ms ? q.timeout_ms : 60000) + 10000, &doc);
	if (!resp)
		return HC_EXIT_FAIL;
	if (q.json) {
		json_dumpf(resp, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		json_array_foreach(json_object_get(resp, "acks"), i, item)
			printf("Ack from '%s'\n", json_string_value(item));
		json_array_foreach(json_object_get(resp, "responses"), i, item) {
			json_t *p = json_object_get(item, "payload");

			printf("Response from '%s': %s\n",
			       json_string_value(json_object_get(item, "from")),
			       p ? json_string_value(p)
				 : json_string_value(json_object_get(item, "payload_hex")));
		}
		printf("Total Acks: %zu\nTotal Responses: %zu\n",
		       json_array_size(json_object_get(resp, "acks")),
		       json_array_size(json_object_get(resp, "responses")));
	}
	json_decref(doc);
	return HC_EXIT_OK;
}
