/* Shared CLI plumbing: the command table, option errors, tables. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

const struct hc_cli_cmd hc_cli_cmds[] = {
	{
		"cluster",
		"run the node agent (gossip, runtime, data plane, proxy, APIs)",
		"Usage: hypercore cluster [options] [JOIN-ADDR...]\n"
		"\n"
		"Runs the node agent in the foreground until SIGINT or SIGTERM.\n"
		"\n"
		"Options:\n"
		"  --grpc-bind-addr ADDR   gRPC API address (default 0.0.0.0:8000)\n"
		"  --http-bind-addr ADDR   HTTP API address (default 0.0.0.0:8001)\n"
		"  --state-dir DIR         persistent state: node id, keys (default /var/lib/hypercore)\n"
		"  --cluster-base-url DOM  workloads are served at <id>.DOM (default example.com)\n"
		"  --log-level LEVEL       debug, info, warn or error (default info)\n"
		"\n"
		"Gossip (the Serf protocol; serf agents can join the same cluster):\n"
		"  JOIN-ADDR...            seeds to join, HOST:PORT of any member\n"
		"  --cluster-bind-addr ADDR     gossip UDP+TCP address (default 0.0.0.0:7946)\n"
		"  --cluster-advertise-addr ADDR  address peers dial (default: the bind\n"
		"                          address, or the default route's for a wildcard)\n"
		"  --node-name NAME        name in the cluster (default: the node id)\n"
		"  --cluster-encrypt KEY   base64 key, as `serf agent -encrypt` takes\n"
		"  --cluster-keyring FILE  JSON list of base64 keys, first primary; kept up\n"
		"                          to date when keys rotate (as serf -keyring-file)\n"
		"  --cluster-tag KEY=VALUE a tag of this node (repeatable)\n"
		"  --gossip-interval-ms N  (default 2000)   --probe-interval-ms N (default 5000)\n"
		"  --suspicion-mult N      (default 6)      --gossip-nodes N      (default 2)\n"
		"  --user-event-size-limit BYTES (default 2048)\n"
		"  --coalesce-ms N         hold member events and coalescable user events\n"
		"                          this long, keeping the newest (default 0: off)\n"
		"\n"
		"Runtime (containerd through CRI):\n"
		"  --run-dir DIR           sockets and volatile state (default /run/hypercore);\n"
		"                          the embedded containerd serves DIR/containerd.sock\n"
		"  --containerd-socket PATH  use this containerd instead of starting one\n"
		"  --no-runtime            run no workloads here (gossip and APIs only)\n"
		"  --insecure-registry HOST:PORT  pull from it over plain HTTP (repeatable)\n"
		"  --workload-subnet CIDR  workload addresses (default 192.168.127.0/24)\n"
		"  --capacity-cpu N        vCPUs offered to workloads (default max(nproc, 225))\n"
		"  --capacity-mem MB       memory offered (default: MemAvailable)\n"
		"\n"
		"Data plane (XDP and TC programs, pinned maps):\n"
		"  --dataplane-iface IF    the uplink node ports are served on (default: the\n"
		"                          default route's interface)\n"
		"  --dataplane-mode MODE   how: xdp, tc or auto (default): XDP where the\n"
		"                          driver runs it natively and hands it whole\n"
		"                          checksums, TC ingress on veth/tap uplinks (their\n"
		"                          frames may carry partial checksums) or without\n"
		"                          native XDP\n"
		"  --bpf-pin-dir DIR       where programs' links and maps are pinned\n"
		"                          (default /sys/fs/bpf/hypercore)\n"
		"  --no-dataplane          load no BPF programs (gossip, runtime and APIs only;\n"
		"                          no proxy either)\n"
		"\n"
		"Proxy (Host/SNI routing of hc_routes on every port a route names):\n"
		"  --proxy-bind-addr IP    listen address (default 0.0.0.0)\n"
		"  --proxy-workers N       worker threads (default: one per CPU)\n"
		"  --proxy-forwarding M    splice (default), sockmap or copy\n"
		"  --proxy-forwarded-headers  add X-Forwarded-For/-Proto and Forwarded\n"
		"  --proxy-head-timeout-ms N  408 for a head not complete by then (10000)\n"
		"  --proxy-max-conns N     open connections per port (default 10000)\n"
		"  --cluster-tls-cert FILE --cluster-tls-key FILE  terminate TLS for names\n"
		"                          under the base URL (a wildcard certificate);\n"
		"                          SIGHUP reloads them\n"
		"  --no-proxy              run no proxy\n"
		"\n"
		"Orchestration:\n"
		"  --respawn-on-node-failure  reschedule the workloads of failed nodes (one\n"
		"                          respawn-enabled node each, chosen the same way by\n"
		"                          all) and restart workloads that exit here\n"
		"  --state-period-ms N     state broadcast period (default 5000); a node silent\n"
		"                          for 3 periods loses its routes\n"
		"  -h, --help              show this help\n"
		"\n"
		"ADDR is IPV4:PORT, [IPV6]:PORT or :PORT (all IPv4 addresses).\n"
		"Subcommands: hypercore cluster spawn|stop|list|logs|metrics|members|event|query\n"
		"--help\n",
		hc_cli_cmd_cluster,
	},
	{
		"cluster spawn",
		"start a workload somewhere in the cluster; prints its id and URL",
		"Usage: hypercore cluster spawn --image-ref REF [options]\n"
		"\n"
		"Asks an agent to place the workload: it checks which nodes have capacity,\n"
		"spawns it on the first in policy order (the next if that one fails) and\n"
		"prints \"ID URL\"; every node's proxy then serves https://ID.<base-url>.\n"
		"\n"
		"Options:\n"
		"  --grpc-bind-addr ADDR   the agent's gRPC address (default 0.0.0.0:8000,\n"
		"                          dialled as 127.0.0.1:8000)\n"
		"  --image-ref REF         the OCI image\n"
		"  --cpu N                 whole vCPUs, default 1\n"
		"  --mem MB                memory limit in MB, default 512\n"
		"  --ports H:C[,H:C...]    host port -> container port: H in 30000-32767 is a\n"
		"                          node port on the owner, any other H a proxy port\n"
		"  --env NAME=VALUE        environment variable (repeatable)\n"
		"  --id UUID               the workload id (default: a new one)\n"
		"  --json                  print {\"id\", \"url\"}\n"
		"  --timeout SECONDS       give up after this long (default 200)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_spawn,
	},
	{
		"cluster stop",
		"stop a workload wherever it runs in the cluster",
		"Usage: hypercore cluster stop --id ID [options]\n"
		"\n"
		"Options:\n"
		"  --grpc-bind-addr ADDR   the agent's gRPC address (default 0.0.0.0:8000)\n"
		"  --id ID                 the workload\n"
		"  --timeout SECONDS       give up after this long (default 60)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_stop,
	},
	{
		"cluster logs",
		"print a workload's output, from whichever node runs it",
		"Usage: hypercore cluster logs --id ID [options]\n"
		"\n"
		"Options:\n"
		"  --grpc-bind-addr ADDR   the agent's gRPC address (default 0.0.0.0:8000)\n"
		"  --id ID                 the workload\n"
		"  --tail N                only the last N lines (default: all, at most 1 MiB)\n"
		"  --follow                keep printing new lines until interrupted\n"
		"  --timeout SECONDS       give up on one call after this long (default 60)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_logs,
	},
	{
		"cluster metrics",
		"print an agent's Prometheus metrics",
		"Usage: hypercore cluster metrics [options]\n"
		"\n"
		"Options:\n"
		"  --http-bind-addr ADDR   the agent's HTTP address (default 0.0.0.0:8001)\n"
		"  --timeout SECONDS       give up after this long (default 60)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_metrics,
	},
	{
		"cluster list",
		"list the cluster's nodes and workloads",
		"Usage: hypercore cluster list [options]\n"
		"\n"
		"Asks an agent for the state of every node it knows.\n"
		"\n"
		"Options:\n"
		"  --grpc-bind-addr ADDR   the agent's gRPC address (default 0.0.0.0:8000,\n"
		"                          dialled as 127.0.0.1:8000)\n"
		"  --json                  print JSON instead of a table\n"
		"  --timeout SECONDS       give up after this long (default 10)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_list,
	},
	{
		"cluster members",
		"list the cluster's members as gossip sees them (like `serf members`)",
		"Usage: hypercore cluster members [options]\n"
		"\n"
		"Asks an agent's HTTP API for every member: name, address, status (alive,\n"
		"leaving, left, failed), last probe round trip and tags.\n"
		"\n"
		"Options:\n"
		"  --http-bind-addr ADDR   the agent's HTTP address (default 0.0.0.0:8001,\n"
		"                          dialled as 127.0.0.1:8001)\n"
		"  --json                  print JSON instead of a table\n"
		"  --timeout SECONDS       give up after this long (default 10)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_members,
	},
	{
		"cluster event",
		"send a user event to the cluster (like `serf event`)",
		"Usage: hypercore cluster event [options] NAME [PAYLOAD]\n"
		"\n"
		"Options:\n"
		"  --http-bind-addr ADDR   the agent's HTTP address (default 0.0.0.0:8001)\n"
		"  --no-coalesce           ask receivers not to coalesce it (default: may)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_event,
	},
	{
		"cluster query",
		"query the cluster and print acks and responses (like `serf query`)",
		"Usage: hypercore cluster query [options] NAME [PAYLOAD]\n"
		"\n"
		"Options:\n"
		"  --http-bind-addr ADDR   the agent's HTTP address (default 0.0.0.0:8001)\n"
		"  --node NAME             only this node answers (repeatable)\n"
		"  --tag KEY=REGEXP        only nodes whose tag matches (repeatable)\n"
		"  --no-ack                do not ask for acknowledgements\n"
		"  --relay-factor N        responses also come through N other members\n"
		"  --timeout SECONDS       how long to collect (default: serf's formula)\n"
		"  --json                  print JSON\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_cluster_query,
	},
	{
		"containerd",
		"run the embedded containerd alone, for local use without an agent",
		"Usage: hypercore containerd [options]\n"
		"\n"
		"Writes hypercore's containerd configuration (CRI on, CNI network \"hypercore\":\n"
		"ptp + host-local + firewall, overlayfs, the built-in pause image) and runs\n"
		"containerd in the foreground until SIGINT or SIGTERM, restarting it if it\n"
		"crashes. Workloads keep running when it stops.\n"
		"\n"
		"Options:\n"
		"  --state-dir DIR         persistent root: images, CNI config and leases, logs\n"
		"                          (default /var/lib/hypercore)\n"
		"  --run-dir DIR           socket and volatile state (default /run/hypercore)\n"
		"  --insecure-registry HOST:PORT  pull from this registry over plain HTTP\n"
		"                          (repeatable)\n"
		"  --workload-subnet CIDR  workload addresses (default 192.168.127.0/24)\n"
		"  --log-level LEVEL       debug, info, warn or error (default info)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_containerd,
	},
	{
		"spawn",
		"start a workload on this node's containerd; prints its id",
		"Usage: hypercore spawn --image-ref REF [options]\n"
		"\n"
		"Pulls REF if needed, starts it in its own network namespace with an address\n"
		"on the workload subnet and the given limits, and prints the workload id.\n"
		"\n"
		"Options:\n"
		"  --image-ref REF         the OCI image, e.g. registry:5000/repo/name:tag\n"
		"  --cpu N                 whole vCPUs (CPU quota), default 1\n"
		"  --mem MB                memory limit in MB, default 512\n"
		"  --env NAME=VALUE        environment variable (repeatable)\n"
		"  --ports H:C[,H:C...]    host port -> container port, recorded for the proxy\n"
		"  --label KEY=VALUE       label kept with the workload (repeatable)\n"
		"  --runtime runc|runsc    OCI runtime; runsc is gVisor (default runc)\n"
		"  --egress-mbit N         limit what it sends to N Mbit/s (the data plane\n"
		"                          drops the excess; label hypercore.egress-mbit)\n"
		"  --capacity-cpu N        vCPUs this node offers (default max(nproc, 225))\n"
		"  --capacity-mem MB       memory this node offers (default: MemAvailable)\n"
		"  --json                  print the workload as JSON\n"
		"Where containerd is (every local verb):\n"
		"  --run-dir DIR           the embedded containerd's socket is DIR/containerd.sock\n"
		"                          (default /run/hypercore)\n"
		"  --containerd-socket PATH  use this containerd instead\n"
		"  --state-dir DIR         hypercore's state, workload logs (default /var/lib/hypercore)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_spawn,
	},
	{
		"stop",
		"stop and remove a workload on this node",
		"Usage: hypercore stop --id ID [options]\n"
		"\n"
		"Stops the workload (SIGTERM, SIGKILL after the grace period) and removes its\n"
		"container, sandbox, network namespace, address and logs.\n"
		"\n"
		"Options:\n"
		"  --id ID                 the workload id\n"
		"  --grace SECONDS         time to exit after SIGTERM (default 5)\n"
		"Where containerd is (every local verb):\n"
		"  --run-dir DIR           the embedded containerd's socket is DIR/containerd.sock\n"
		"                          (default /run/hypercore)\n"
		"  --containerd-socket PATH  use this containerd instead\n"
		"  --state-dir DIR         hypercore's state, workload logs (default /var/lib/hypercore)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_stop,
	},
	{
		"list",
		"list the workloads on this node",
		"Usage: hypercore list [options]\n"
		"\n"
		"Options:\n"
		"  --json                  print JSON (with the original spawn request)\n"
		"Where containerd is (every local verb):\n"
		"  --run-dir DIR           the embedded containerd's socket is DIR/containerd.sock\n"
		"                          (default /run/hypercore)\n"
		"  --containerd-socket PATH  use this containerd instead\n"
		"  --state-dir DIR         hypercore's state, workload logs (default /var/lib/hypercore)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_list,
	},
	{
		"logs",
		"print a workload's output",
		"Usage: hypercore logs --id ID [options]\n"
		"\n"
		"Prints the workload's stdout to stdout and its stderr to stderr.\n"
		"\n"
		"Options:\n"
		"  --id ID                 the workload id\n"
		"  --tail N                only the last N lines\n"
		"  --follow                keep printing new lines until ^C\n"
		"Where containerd is (every local verb):\n"
		"  --run-dir DIR           the embedded containerd's socket is DIR/containerd.sock\n"
		"                          (default /run/hypercore)\n"
		"  --containerd-socket PATH  use this containerd instead\n"
		"  --state-dir DIR         hypercore's state, workload logs (default /var/lib/hypercore)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_logs,
	},
	{
		"attach",
		"open a shell (or run a command) inside a workload",
		"Usage: hypercore attach --id ID [options] [-- COMMAND [ARG...]]\n"
		"\n"
		"Runs /bin/sh (or COMMAND) in the workload with a terminal when stdin is one,\n"
		"through containerd's streaming server. Exits with the command's status.\n"
		"\n"
		"Options:\n"
		"  --id ID                 the workload id\n"
		"Where containerd is (every local verb):\n"
		"  --run-dir DIR           the embedded containerd's socket is DIR/containerd.sock\n"
		"                          (default /run/hypercore)\n"
		"  --containerd-socket PATH  use this containerd instead\n"
		"  --state-dir DIR         hypercore's state, workload logs (default /var/lib/hypercore)\n"
		"  -h, --help              show this help\n",
		hc_cli_cmd_attach,
	},
	{
		"routes",
		"print the data plane's routes, node ports and workload counters",
		"Usage: hypercore routes [options]\n"
		"\n"
		"Decodes the pinned maps (what `bpftool map dump pinned DIR/hc_routes` shows):\n"
		"L7 routes (host -> backend, for the proxy), L4 node ports (-> backends, for\n"
		"XDP), per-workload packet and byte counters, and untranslated/dropped counts.\n"
		"\n"
		"Options:\n"
		"  --json                  print JSON instead of tables\n"
"  --bpf-pin-dir DIR       where the maps are pinned (default /sys/fs/bpf/hypercore)\n"		"  -h, --help              show this help\n",
		hc_cli_cmd_routes,
	},
	{
		"routes add",
		"add a static route or node-port backend (kept by every state sync)",
		"Usage: hypercore routes add --host NAME --port P --backend IP:PORT [options]\n"
		"       hypercore routes add --node-port P [--proto tcp|udp] --backend IP:PORT\n"
		"\n"
		"Static entries route to backends outside the cluster; state syncs never change\n"
		"or remove them. With --host, the proxy serves NAME on port P from the backend.\n"
		"With --node-port, XDP sends P (tcp by default) on the node's addresses to the\n"
		"backend; adding more backends spreads flows over them by consistent hashing.\n"
		"\n"
		"Options:\n"
		"  --host NAME             exact host name or workload id (Host header, SNI)\n"
		"  --port P                the port the proxy serves NAME on\n"
		"  --node-port P           an L4 service on the node's addresses\n"
		"  --proto tcp|udp         the node port's protocol (default tcp)\n"
		"  --backend IP:PORT       where the traffic goes ([IPV6]:PORT for IPv6)\n"
"  --bpf-pin-dir DIR       where the maps are pinned (default /sys/fs/bpf/hypercore)\n"		"  -h, --help              show this help\n",
		hc_cli_cmd_routes_add,
	},
	{
		"routes del",
		"remove a static route, node port, or one backend of it",
		"Usage: hypercore routes del --host NAME --port P [options]\n"
		"       hypercore routes del --node-port P [--proto tcp|udp] [--backend IP:PORT]\n"
		"\n"
		"Removes a static entry; the cluster's own entries are refused. With --backend,\n"
		"only that backend leaves the node port.\n"
		"\n"
		"Options:\n"
		"  --host NAME --port P    the static L7 route\n"
		"  --node-port P           the static node port\n"
		"  --proto tcp|udp         its protocol (default tcp)\n"
		"  --backend IP:PORT       remove only this backend\n"
"  --bpf-pin-dir DIR       where the maps are pinned (default /sys/fs/bpf/hypercore)\n"		"  -h, --help              show this help\n",
		hc_cli_cmd_routes_del,
	},
	{
		"dataplane",
		"the data plane's own verbs (see dataplane cleanup --help)",
		"Usage: hypercore dataplane cleanup [options]\n"
		"\n"
		"The agent loads, attaches and syncs the data plane itself; `hypercore routes`\n"
		"reads and changes its maps. `dataplane cleanup` removes it all.\n",
		hc_cli_cmd_dataplane,
	},
	{
		"dataplane cleanup",
		"detach the BPF programs and remove the pinned maps",
		"Usage: hypercore dataplane cleanup [options]\n"
		"\n"
		"Detaches XDP or TC from the uplink and TC from every workload veth the maps\n"
		"name, then removes the pins and the pin directory. Stop the agent first: a\n"
		"running agent keeps its programs loaded until it exits.\n"
		"\n"
		"Options:\n"
		"  --dataplane-iface IF    the uplink (default: the one the agent recorded);\n"
		"                          also detaches an XDP program of ours attached to\n"
		"                          IF without a pinned link\n"
"  --bpf-pin-dir DIR       where the maps are pinned (default /sys/fs/bpf/hypercore)\n"		"  -h, --help              show this help\n",
		hc_cli_cmd_dataplane_cleanup,
	},
	{
		"version",
		"print the version",
		"Usage: hypercore version\n",
		hc_cli_cmd_version,
	},
};
const unsigned hc_cli_ncmds = sizeof(hc_cli_cmds) / sizeof(hc_cli_cmds[0]);

void hc_cli_print_usage(const struct hc_cli_cmd *cmd, FILE *out)
{
	fputs(cmd->usage, out);
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
