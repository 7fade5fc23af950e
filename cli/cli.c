/* Shared CLI plumbing: the command table, option errors, tables. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

const struct hc_cli_cmd hc_cli_cmds[] = {
	{
		.path = "cluster",
		.summary = "run the node agent (gossip, runtime, data plane, proxy, APIs)",
		.usage = "Usage: hypercore cluster [options] [JOIN-ADDR...]\n"
			 "\n"
			 "Runs the node agent in the foreground until SIGINT or SIGTERM. JOIN-ADDR...\n"
			 "are seeds to join: HOST:PORT of any member.\n",
		.opts = hc_cli_opts_cluster,
		.epilogue = "ADDR is IPV4:PORT, [IPV6]:PORT or :PORT (all IPv4 addresses).\n"
			    "Subcommands: spawn, stop, list, logs, metrics, members, top, event, query,\n"
			    "join-token, api-token, keys, proof, policy explain\n"
			    "(hypercore cluster SUBCOMMAND --help).\n",
		.run = hc_cli_cmd_cluster,
	},
	{
		.path = "cluster spawn",
		.summary = "start a workload somewhere in the cluster; prints its id and URL",
		.usage = "Usage: hypercore cluster spawn --image-ref REF [options]\n"
			 "\n"
			 "Asks an agent to place the workload: it checks which nodes have capacity,\n"
			 "spawns it on the first in policy order (the next if that one fails) and\n"
			 "prints \"ID URL\"; every node's proxy then serves https://ID.<base-url>.\n",
		.opts = hc_cli_opts_cluster_spawn,
		.run = hc_cli_cmd_cluster_spawn,
	},
	{
		.path = "cluster stop",
		.summary = "stop a workload wherever it runs in the cluster",
		.usage = "Usage: hypercore cluster stop [--id] ID [options]\n",
		.opts = hc_cli_opts_cluster_stop,
		.run = hc_cli_cmd_cluster_stop,
	},
	{
		.path = "cluster logs",
		.summary = "print a workload's output, from whichever node runs it",
		.usage = "Usage: hypercore cluster logs [--id] ID [options]\n",
		.opts = hc_cli_opts_cluster_logs,
		.run = hc_cli_cmd_cluster_logs,
	},
	{
		.path = "cluster metrics",
		.summary = "print every node's beacon metrics (--prometheus: the agent's metrics)",
		.usage = "Usage: hypercore cluster metrics [--prometheus] [options]\n"
			 "\n"
			 "Prints upstream's per-node table: latency, jitter, loss, queue depth,\n"
			 "price, reputation and capabilities as each node's BeaconMetadata says,\n"
			 "and its workloads. --prometheus prints the agent's Prometheus text.\n",
		.opts = hc_cli_opts_cluster_metrics,
		.run = hc_cli_cmd_cluster_metrics,
	},
	{
		.path = "cluster policy explain",
		.summary = "explain where a spawn would go: every node, each rule, scores, the order",
		.usage = "Usage: hypercore cluster policy explain --image-ref REF [--cores N] [--mem MB]\n"
			 "                                       [--policy FILE] [--json] [options]\n"
			 "\n"
			 "Asks an agent to place the workload without spawning it (a dry run on\n"
			 "every node, then the policy): prints every node with its verdict, the\n"
			 "values measured, its score and the rules it fails, then the order a\n"
			 "spawn would try. Exit status 1 when no node may take it.\n",
		.opts = hc_cli_opts_cluster_policy_explain,
		.run = hc_cli_cmd_cluster_policy_explain,
	},
	{
		.path = "cluster list",
		.summary = "list the cluster's nodes and workloads",
		.usage = "Usage: hypercore cluster list [options]\n"
			 "\n"
			 "Asks an agent for the state of every node it knows.\n",
		.opts = hc_cli_opts_cluster_list,
		.run = hc_cli_cmd_cluster_list,
	},
	{
		.path = "cluster members",
		.summary = "list the cluster's members as gossip sees them (like `serf members`)",
		.usage = "Usage: hypercore cluster members [options]\n"
			 "\n"
			 "Asks an agent's HTTP API for every member: name, address, status (alive,\n"
			 "leaving, left, failed), last probe round trip and tags.\n",
		.opts = hc_cli_opts_cluster_members,
		.run = hc_cli_cmd_cluster_members,
	},
	{
		.path = "cluster top",
		.summary = "a live view of the cluster: nodes, workloads and routes with their rates",
		.usage = "Usage: hypercore cluster top [options]\n"
			 "\n"
			 "Shows every node (status, round trip, workloads, CPU and memory used,\n"
			 "restarts), every workload (node, connections and bytes per second through\n"
			 "the proxies, bytes per second metered by BPF) and the busiest routes,\n"
			 "refreshed every --interval. Each refresh asks the agent at --http-bind-addr\n"
			 "for /list and /members and reads /metrics of at most --max-nodes nodes.\n"
			 "Keys: n (name), c (CPU), m (memory), r (connections/s), b (bytes/s) sort;\n"
			 "q quits. Not on a terminal, frames are printed as text.\n",
		.opts = hc_cli_opts_cluster_top,
		.run = hc_cli_cmd_cluster_top,
	},
	{
		.path = "cluster event",
		.summary = "send a user event to the cluster (like `serf event`)",
		.usage = "Usage: hypercore cluster event [options] NAME [PAYLOAD]\n",
		.opts = hc_cli_opts_cluster_event,
		.run = hc_cli_cmd_cluster_event,
	},
	{
		.path = "cluster query",
		.summary = "query the cluster and print acks and responses (like `serf query`)",
		.usage = "Usage: hypercore cluster query [options] NAME [PAYLOAD]\n",
		.opts = hc_cli_opts_cluster_query,
		.run = hc_cli_cmd_cluster_query,
	},
	{
		.path = "cluster join-token",
		.summary = "print what another node needs to join this node's cluster",
		.usage = "Usage: hypercore cluster join-token [--state-dir DIR]\n"
			 "\n"
			 "Prints one string holding the cluster's gossip key and API token, read\n"
			 "from a member's state dir (no running agent needed). On the new node:\n"
			 "  hypercore cluster --join-token STRING MEMBER-ADDR:7946\n"
			 "Anyone holding it can join the cluster and control it: pass it as a\n"
			 "secret.\n",
		.opts = hc_cli_opts_cluster_join_token,
		.run = hc_cli_cmd_cluster_join_token,
	},
	{
		.path = "cluster api-token",
		.summary = "print the token the agents' APIs want (admin or read-only)",
		.usage = "Usage: hypercore cluster api-token [--read-only] [--state-dir DIR]\n"
			 "\n"
			 "Prints a bearer token for the gRPC and HTTP APIs of every node of the\n"
			 "cluster, read from a member's state dir. Send it as `Authorization: Bearer\n"
			 "TOKEN`, or give it to the CLI with --token or $HYPERCORE_TOKEN.\n",
		.opts = hc_cli_opts_cluster_api_token,
		.run = hc_cli_cmd_cluster_api_token,
	},
	{
		.path = "identity",
		.summary = "print this node's name and IBRL identity (beacon id, public key)",
		.usage = "Usage: hypercore identity [--state-dir DIR] [--json]\n"
			 "\n"
			 "Prints the node name (its node id), its beacon_node_id (hex of the public\n"
			 "key's first 8 bytes, as upstream derives it) and its Ed25519 public key in\n"
			 "base64, the form a --trusted-keys file takes. Read from the state dir, where\n"
			 "the agent made the key (node-key.pem) on its first start; no agent needed.\n",
		.opts = hc_cli_opts_identity,
		.run = hc_cli_cmd_identity,
	},
	{
		.path = "cluster attest",
		.summary = "ask a member to prove it holds the key pinned for it (BEACON_ATTEST)",
		.usage = "Usage: hypercore cluster attest --node NAME [options]\n"
			 "\n"
			 "The agent sends NAME a BEACON_ATTEST query with a fresh nonce; the answer\n"
			 "must be signed for that nonce, by the key pinned (or trusted) for NAME, and\n"
			 "recent. Prints \"NAME: verified\", or fails naming why (no answer, another\n"
			 "key, a replay, no key pinned yet).\n",
		.opts = hc_cli_opts_cluster_attest,
		.run = hc_cli_cmd_cluster_attest,
	},
	{
		.path = "cluster keys",
		.summary = "rotate the cluster's gossip key on every member (like `serf keys`)",
		.usage = "Usage: hypercore cluster keys generate\n"
			 "       hypercore cluster keys install|use|remove KEY [options]\n"
			 "\n"
			 "generate prints a new random key. install adds KEY to every member's\n"
			 "keyring, use makes it the one members encrypt with, remove drops it (not\n"
			 "the one in use). Rotating without downtime: generate, install, use, then\n"
			 "remove the old key; each step waits for every member's answer. Members\n"
			 "keep their keyring file (--state-dir or --cluster-keyring) up to date.\n",
		.opts = hc_cli_opts_cluster_keys,
		.run = hc_cli_cmd_cluster_keys,
	},
	{
		.path = "cluster proof show",
		.summary = "print a workload's execution proofs, from whichever node runs it",
		.usage = "Usage: hypercore cluster proof show [--id] ID [options]\n"
			 "\n"
			 "Prints the workload's proof chain as its owner logged it: one signed entry\n"
			 "per broadcast period with its metrics and hash.\n",
		.opts = hc_cli_opts_cluster_proof,
		.run = hc_cli_cmd_cluster_proof_show,
	},
	{
		.path = "cluster proof verify",
		.summary = "verify a workload's execution proofs: VALID, INVALID or UNKNOWN",
		.usage = "Usage: hypercore cluster proof verify [--id] ID [options]\n"
			 "\n"
			 "The agent fetches the workload's proof chain from its owner and checks every\n"
			 "entry: signature under the owner's key, hash, chain continuity, counters that\n"
			 "never go down, timestamps that always go up, and that the head the owner\n"
			 "announces is in it. Exits 0 for VALID, 1 for INVALID (with the reason) or a\n"
			 "failure, 3 for UNKNOWN (no proofs yet, owner unreachable).\n",
		.opts = hc_cli_opts_cluster_proof,
		.run = hc_cli_cmd_cluster_proof_verify,
	},
	{
		.path = "containerd",
		.summary = "run the embedded containerd alone, for local use without an agent",
		.usage = "Usage: hypercore containerd [options]\n"
			 "\n"
			 "Writes hypercore's containerd configuration (CRI on, CNI network \"hypercore\":\n"
			 "ptp + host-local + firewall, overlayfs, the built-in pause image) and runs\n"
			 "containerd in the foreground until SIGINT or SIGTERM, restarting it if it\n"
			 "crashes. Workloads keep running when it stops.\n",
		.opts = hc_cli_opts_containerd,
		.run = hc_cli_cmd_containerd,
	},
	{
		.path = "spawn",
		.summary = "start a workload on this node's containerd; prints its id",
		.usage = "Usage: hypercore spawn --image-ref REF [options]\n"
			 "\n"
			 "Pulls REF if needed, starts it in its own network namespace with an address\n"
			 "on the workload subnet and the given limits, and prints the workload id.\n",
		.opts = hc_cli_opts_spawn,
		.run = hc_cli_cmd_spawn,
	},
	{
		.path = "stop",
		.summary = "stop and remove a workload on this node",
		.usage = "Usage: hypercore stop [--id] ID [options]\n"
			 "\n"
			 "Stops the workload (SIGTERM, SIGKILL after the grace period) and removes its\n"
			 "container, sandbox, network namespace, address and logs.\n",
		.opts = hc_cli_opts_stop,
		.run = hc_cli_cmd_stop,
	},
	{
		.path = "list",
		.summary = "list the workloads on this node",
		.usage = "Usage: hypercore list [options]\n",
		.opts = hc_cli_opts_list,
		.run = hc_cli_cmd_list,
	},
	{
		.path = "logs",
		.summary = "print a workload's output",
		.usage = "Usage: hypercore logs [--id] ID [options]\n"
			 "\n"
			 "Prints the workload's stdout to stdout and its stderr to stderr.\n",
		.opts = hc_cli_opts_logs,
		.run = hc_cli_cmd_logs,
	},
	{
		.path = "attach",
		.summary = "open a shell (or run a command) inside a workload",
		.usage = "Usage: hypercore attach [--id] ID [options] [-- COMMAND [ARG...]]\n"
			 "\n"
			 "Runs /bin/sh (or COMMAND) in the workload with a terminal when stdin is one,\n"
			 "through containerd's streaming server. Exits with the command's status.\n",
		.opts = hc_cli_opts_attach,
		.run = hc_cli_cmd_attach,
	},
	{
		.path = "routes",
		.summary = "print the data plane's routes, node ports and workload counters",
		.usage = "Usage: hypercore routes [options]\n"
			 "\n"
			 "Decodes the pinned maps (what `bpftool map dump pinned DIR/hc_routes` shows):\n"
			 "L7 routes (host -> backend and the protocol the proxy speaks to it, h1 or\n"
			 "h2c), L4 node ports (-> backends, for XDP), per-workload packet and byte\n"
			 "counters, and untranslated/dropped counts.\n",
		.opts = hc_cli_opts_routes,
		.run = hc_cli_cmd_routes,
	},
	{
		.path = "routes add",
		.summary = "add a static route or node-port backend (kept by every state sync)",
		.usage = "Usage: hypercore routes add --host NAME --port P --backend IP:PORT [options]\n"
			 "       hypercore routes add --node-port P [--proto tcp|udp] --backend IP:PORT\n"
			 "\n"
			 "Static entries route to backends outside the cluster; state syncs never change\n"
			 "or remove them. With --host, the proxy serves NAME on port P from the backend.\n"
			 "With --node-port, XDP sends P (tcp by default) on the node's addresses to the\n"
			 "backend; adding more backends spreads flows over them by consistent hashing.\n",
		.opts = hc_cli_opts_routes_add,
		.run = hc_cli_cmd_routes_add,
	},
	{
		.path = "routes del",
		.summary = "remove a static route, node port, or one backend of it",
		.usage = "Usage: hypercore routes del --host NAME --port P [options]\n"
			 "       hypercore routes del --node-port P [--proto tcp|udp] [--backend IP:PORT]\n"
			 "\n"
			 "Removes a static entry; the cluster's own entries are refused. With --backend,\n"
			 "only that backend leaves the node port.\n",
		.opts = hc_cli_opts_routes_del,
		.run = hc_cli_cmd_routes_del,
	},
	{
		.path = "dataplane",
		.summary = "the data plane's own verbs (see dataplane cleanup --help)",
		.usage = "Usage: hypercore dataplane cleanup [options]\n"
			 "\n"
			 "The agent loads, attaches and syncs the data plane itself; `hypercore routes`\n"
			 "reads and changes its maps. `dataplane cleanup` removes it all.\n",
		.run = hc_cli_cmd_dataplane,
	},
	{
		.path = "dataplane cleanup",
		.summary = "detach the BPF programs and remove the pinned maps",
		.usage = "Usage: hypercore dataplane cleanup [options]\n"
			 "\n"
			 "Detaches XDP or TC from the uplink and TC from every workload veth the maps\n"
			 "name, then removes the pins and the pin directory. Stop the agent first: a\n"
			 "running agent keeps its programs loaded until it exits.\n",
		.opts = hc_cli_opts_dataplane_cleanup,
		.run = hc_cli_cmd_dataplane_cleanup,
	},
	{
		.path = "config show",
		.summary = "print the agent's effective options and where each comes from",
		.usage = "Usage: hypercore config show [options] [JOIN-ADDR...]\n"
			 "\n"
			 "Prints every option of `hypercore cluster` with the value it would run with\n"
			 "and its source: flag (these arguments), env ($HYPERCORE_<OPTION>: upper\n"
			 "case, '-' as '_'), config (the --config file, by default\n"
			 HC_CLI_DEFAULT_CONFIG ") or default. Secrets show only their length.\n",
		.opts = hc_cli_opts_cluster,
		.run = hc_cli_cmd_config_show,
	},
	{
		.path = "doctor",
		.summary = "check this machine for the agent: kernel, runtime, ports, clock, secrets",
		.usage = "Usage: hypercore doctor [options]\n"
			 "\n"
			 "Checks what the agent needs here and prints one line per check: ok, warn or\n"
			 "fail, what was found and, when not ok, the fix. Kernel: BTF, bpffs, XDP\n"
			 "(native and generic) and TC clsact (probed on a veth in a scratch network\n"
			 "namespace, never on the uplink), sockmap, the uplink's driver. Runtime:\n"
			 "containerd, runc, the CNI plugins. The agent's ports (free, or held by the\n"
			 "running agent), free addresses in the workload subnet (from the running\n"
			 "agent's /metrics, else its leases on disk), clock synchronization, the\n"
			 "modes of the secrets in the state dir and of a configuration file holding\n"
			 "one (0600). Exit status 0 when nothing failed (warnings allowed), 1 when\n"
			 "something did, 2 for a usage error.\n",
		.opts = hc_cli_opts_doctor,
		.run = hc_cli_cmd_doctor,
	},
	{
		.path = "version",
		.summary = "print the version",
		.usage = "Usage: hypercore version\n",
		.run = hc_cli_cmd_version,
	},
};
const unsigned hc_cli_ncmds = sizeof(hc_cli_cmds) / sizeof(hc_cli_cmds[0]);

int hc_cli_cmd_version(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			hc_cli_print_usage(cmd, stdout);
			return HC_EXIT_OK;
		}
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[1]);
	}
	printf("hypercore %s (%s)\n", HC_VERSION, HC_GIT_REV);
	return HC_EXIT_OK;
}

int hc_cli_usage_error(const struct hc_cli_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hypercore %s: ", cmd->path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n\n", stderr);
	hc_cli_print_usage(cmd, stderr);
	return HC_EXIT_USAGE;
}

int hc_cli_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("hypercore: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return HC_EXIT_FAIL;
}

int hc_cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int hc_cli_parse_seconds(const char *s, int *ms)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > 24 * 3600)
		return -EINVAL;
	*ms = (int)v * 1000;
	return 0;
}

int hc_cli_rpc_fail(const char *addr, const struct hc_rpc_status *st)
{
	const char *msg = st->message;

	switch (st->code) {
	case HC_RPC_UNAVAILABLE:
		/* grpc's text is long and nested; the cause is what matters. */
		if (strstr(msg, "Connection refused"))
			msg = "connection refused";
		else if (strstr(msg, "No route to host"))
			msg = "no route to host";
		else if (strstr(msg, "Network is unreachable"))
			msg = "network is unreachable";
		else if (strstr(msg, "Timeout occurred") || strstr(msg, "timed out"))
			msg = "connection timed out";
		return hc_cli_fail("cannot reach the agent at %s: %s (is `hypercore cluster` "
				   "running there?)",
				   addr, msg);
	case HC_RPC_DEADLINE_EXCEEDED:
		return hc_cli_fail("the agent at %s did not answer in time", addr);
	case HC_RPC_UNAUTHENTICATED:
		return hc_cli_fail("the agent at %s refused: %s (%s)", addr, msg, hc_cli_token_hint());
	default:
		return hc_cli_fail("%s (agent at %s: %s)", *msg ? msg : "call failed", addr,
				   hc_rpc_code_name(st->code));
	}
}

/* ---- tables ---- */

struct hc_cli_table {
	unsigned ncols;
	size_t nrows;
	char **cells; /* (nrows + 1) * ncols, row 0 the headers */
};

static int table_append(struct hc_cli_table *t, const char *const *cells)
{
	char **grown = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*grown));
	char **row;

	if (!grown)
		return -ENOMEM;
	t->cells = grown;
	row = t->cells + t->nrows * t->ncols;
	for (unsigned i = 0; i < t->ncols; i++) {
		row[i] = strdup(cells[i] && *cells[i] ? cells[i] : "-");
		if (!row[i]) {
			while (i--)
				free(row[i]);
			return -ENOMEM;
		}
	}
	t->nrows++;
	return 0;
}

struct hc_cli_table *hc_cli_table_new(unsigned ncols, const char *const *headers)
{
	struct hc_cli_table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	if (table_append(t, headers) < 0) {
		free(t);
		return NULL;
	}
	return t;
}

int hc_cli_table_add(struct hc_cli_table *t, const char *const *cells)
{
	return table_append(t, cells);
}

void hc_cli_table_print(const struct hc_cli_table *t, FILE *out)
{
	size_t width[16] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (unsigned c = 0; c < t->ncols && c < 16; c++) {
			size_t n = strlen(t->cells[r * t->ncols + c]);

			if (n > width[c])
				width[c] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (unsigned c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];

			if (c + 1 == t->ncols)
				fprintf(out, "%s\n", cell);
			else
				fprintf(out, "%-*s  ", (int)(c < 16 ? width[c] : 0), cell);
		}
	}
}

void hc_cli_table_free(struct hc_cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
