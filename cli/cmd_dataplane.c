/* `hypercore routes [add|del]` and `hypercore dataplane cleanup`: the data
 * plane's pinned maps, read and written directly (no agent needed). */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addr.h"
#include "cli.h"
#include "dataplane/dataplane.h"


struct route_opts {
	const char *pin_dir;
	const char *host;
	const char *iface;
	unsigned long port, node_port;
	uint8_t proto;
	bool has_backend;
	struct hc_ipaddr backend;
	uint16_t backend_port;
	uint16_t route_flags; /* HC_ROUTE_F_H2C from --backend-protocol h2c */
	bool json;
};

/* --backend-protocol: what the proxy speaks to the backend for HTTP/2
 * clients (HTTP/1.1 clients' requests always go as HTTP/1.1). */
static int parse_backend_protocol(char *text, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (strcmp(text, "h1") == 0)
		*(uint16_t *)field = 0;
	else if (strcmp(text, "h2c") == 0)
		*(uint16_t *)field = HC_ROUTE_F_H2C;
	else
		return -EINVAL;
	return 0;
}

static int parse_proto(char *text, void *field, char *why, size_t len)
{
	(void)why;
	(void)len;
	if (strcmp(text, "tcp") == 0)
		*(uint8_t *)field = IPPROTO_TCP;
	else if (strcmp(text, "udp") == 0)
		*(uint8_t *)field = IPPROTO_UDP;
	else
		return -EINVAL;
	return 0;
}

/* IPV4:PORT or [IPV6]:PORT into the backend; field is the whole route_opts. */
static int parse_backend(char *text, void *field, char *why, size_t len)
{
	struct route_opts *o = field;
	struct hc_addr a;

	(void)why;
	(void)len;
	if (hc_addr_parse(text, false, &a, NULL) < 0 || hc_addr_is_any(&a))
		return -EINVAL;
	memset(&o->backend, 0, sizeof(o->backend));
	if (a.ss.ss_family == AF_INET) {
		o->backend.family = HC_AF_INET;
		o->backend.ip4 = ((struct sockaddr_in *)&a.ss)->sin_addr.s_addr;
	} else {
		o->backend.family = HC_AF_INET6;
		memcpy(o->backend.ip6, &((struct sockaddr_in6 *)&a.ss)->sin6_addr, 16);
	}
	o->backend_port = hc_addr_port(&a);
	o->has_backend = true;
	return 0;
}

/* Each verb's table; they share struct route_opts. */
#define R struct route_opts
#define PIN_DIR_ROW                                                                    \
	HC_CLI_STR("bpf-pin-dir", R, pin_dir, "DIR",                                  \
		   "where the maps are pinned (default " HC_DEFAULT_BPF_PIN_DIR ")")
#define PROTO_ROW(h) HC_CLI_FUNC("proto", R, proto, parse_proto, "tcp or udp", "tcp|udp", h)
#define BACKEND_ROW(h)                                                                 \
	{ .name = "backend", .type = HC_CLI_OPT_FUNC, .parse = parse_backend,          \
	  .why = "IPV4:PORT or [IPV6]:PORT", .metavar = "IP:PORT", .help = h }
const struct hc_cli_opt hc_cli_opts_routes[] = {
	HC_CLI_FLAG("json", R, json, "print JSON instead of tables"),
	PIN_DIR_ROW,
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_routes_add[] = {
	HC_CLI_STR("host", R, host, "NAME", "exact host name or workload id (Host header, SNI)"),
	HC_CLI_UINT("port", R, port, 1, 65535, "1..65535", "P", "the port the proxy serves NAME on"),
	HC_CLI_UINT("node-port", R, node_port, 1, 65535, "1..65535", "P",
		    "an L4 service on the node's addresses"),
	PROTO_ROW("the node port's protocol (default tcp)"),
	BACKEND_ROW("where the traffic goes ([IPV6]:PORT for IPv6)"),
	HC_CLI_FUNC("backend-protocol", R, route_flags, parse_backend_protocol, "h1 or h2c",
		    "h1|h2c",
		    "what the proxy speaks to the backend for HTTP/2 clients: HTTP/1.1 (the "
		    "default) or HTTP/2 without TLS (gRPC)"),
	PIN_DIR_ROW,
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_routes_del[] = {
	HC_CLI_STR("host", R, host, "NAME", "the static L7 route's host name, with --port"),
	HC_CLI_UINT("port", R, port, 1, 65535, "1..65535", "P", "the static L7 route's port"),
	HC_CLI_UINT("node-port", R, node_port, 1, 65535, "1..65535", "P", "the static node port"),
	PROTO_ROW("its protocol (default tcp)"),
	BACKEND_ROW("remove only this backend"),
	PIN_DIR_ROW,
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_dataplane_cleanup[] = {
	HC_CLI_STR("dataplane-iface", R, iface, "IF",
		   "the uplink (default: the one the agent recorded); also detaches an XDP "
		   "program of ours attached to IF without a pinned link"),
	PIN_DIR_ROW,
	{ .name = NULL },
};
#undef BACKEND_ROW
#undef PROTO_ROW
#undef PIN_DIR_ROW
#undef R

/* Returns -1 to go on, else the exit status. */
static int parse_route_opts(const struct hc_cli_cmd *cmd, int argc, char **argv,
			    struct route_opts *o)
{
	int r;

	memset(o, 0, sizeof(*o));
	o->pin_dir = HC_DEFAULT_BPF_PIN_DIR;
	o->proto = IPPROTO_TCP;
	r = hc_cli_parse_opts(cmd, argc, argv, o);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	return -1;
}

static struct hc_dpmaps *open_maps(const char *pin_dir)
{
	struct hc_err err;
	struct hc_dpmaps *m = hc_dpmaps_open(pin_dir, &err);

	if (!m)
		hc_cli_fail("%s", err.msg);
	return m;
}

static const char *proto_name(uint8_t proto)
{
	return proto == IPPROTO_TCP ? "tcp" : proto == IPPROTO_UDP ? "udp" : "?";
}

static void format_ip(const struct hc_ipaddr *a, char *buf, size_t len)
{
	if (!a->family || !inet_ntop(a->family == HC_AF_INET ? AF_INET : AF_INET6, a->ip6, buf, len))
		snprintf(buf, len, "-");
}

static void format_endpoint(const struct hc_ipaddr *a, uint16_t port, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	format_ip(a, ip, sizeof(ip));
	snprintf(buf, len, a->family == HC_AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

/* ---- hypercore routes ---- */

/* The uplink the agent recorded and how node ports are served there. */
struct uplink_text {
	char iface[IF_NAMESIZE];
	const char *mode; /* "xdp", "tc"; "none" before an agent attached */
	const char *xdp_mode; /* "native", "generic"; "none" in tc mode */
};

static void uplink_describe(const struct hc_config *c, struct uplink_text *u)
{
	snprintf(u->iface, sizeof(u->iface), "%.*s", (int)sizeof(c->uplink_iface) - 1,
		 c->uplink_iface);
	u->mode = c->uplink_mode == HC_UPLINK_XDP ? "xdp"
		  : c->uplink_mode == HC_UPLINK_TC ? "tc"
						   : "none";
	u->xdp_mode = c->uplink_mode != HC_UPLINK_XDP ? "none"
		      : c->uplink_xdp_native	      ? "native"
						      : "generic";
}

static json_t *uplink_json(const struct hc_config *c)
{
	struct uplink_text u;

	uplink_describe(c, &u);
	return json_pack("{s:s, s:i, s:s, s:s}", "iface", u.iface, "ifindex", (int)c->uplink_ifindex,
			 "mode", u.mode, "xdp_mode", u.xdp_mode);
}

/* The egress policy's state: how many addresses it keeps workloads off,
 * the flows it lets answer, the proxy's ports, the operator's rules. */
static json_t *egress_json(const struct hc_dp_snapshot *s)
{
	json_t *ports = json_array(), *allow = json_array();
	char rule[256];

	for (size_t i = 0; i < s->n_proxy_ports; i++)
		json_array_append_new(ports, json_integer(s->proxy_ports[i]));
	for (size_t i = 0; i < s->n_allow; i++) {
		hc_dp_egress_format(&s->allow[i].key, &s->allow[i].val, rule, sizeof(rule));
		json_array_append_new(allow, json_string(rule));
	}
	return json_pack("{s:I, s:I, s:I, s:o, s:o}", "member_addresses",
			 (json_int_t)s->member_addrs, "local_addresses", (json_int_t)s->local_addrs,
			 "flows", (json_int_t)s->wl_flows, "proxy_ports", ports, "allow", allow);
}

static void print_egress(const struct hc_dp_snapshot *s)
{
	char rule[256];

	printf("\nWorkload egress: kept off %zu member and %zu local addresses, %zu flows opened "
	       "to workloads\n  proxy ports:", s->member_addrs, s->local_addrs, s->wl_flows);
	for (size_t i = 0; i < s->n_proxy_ports; i++)
		printf("%s%u", i ? "," : " ", s->proxy_ports[i]);
	printf("%s\n  allowed by the operator:", s->n_proxy_ports ? "" : " none");
	for (size_t i = 0; i < s->n_allow; i++) {
		hc_dp_egress_format(&s->allow[i].key, &s->allow[i].val, rule, sizeof(rule));
		printf("%s%s", i ? ", " : " ", rule);
	}
	printf("%s\n", s->n_allow ? "" : " none");
}

static json_t *snapshot_json(const struct hc_dp_snapshot *s)
{
	json_t *root = json_object(), *routes = json_array(), *services = json_array();
	json_t *wls = json_array(), *drops = json_object();
	char ip[INET6_ADDRSTRLEN];

	for (size_t i = 0; i < s->n_routes; i++) {
		const struct hc_dp_route *r = &s->routes[i];

		format_ip(&r->val.backend, ip, sizeof(ip));
		json_array_append_new(
			routes, json_pack("{s:s, s:i, s:s, s:i, s:s, s:b, s:s}", "host", r->key.host,
					  "port", r->key.port, "backend", ip, "backend_port",
					  r->val.port, "node", r->val.node, "static",
					  (r->val.flags & HC_ROUTE_F_STATIC) != 0, "backend_protocol",
					  r->val.flags & HC_ROUTE_F_H2C ? "h2c" : "h1"));
	}
	for (size_t i = 0; i < s->n_services; i++) {
		const struct hc_dp_service *sv = &s->services[i];
		json_t *backends = json_array();

		for (uint32_t b = 0; b < sv->val.count && b < HC_SERVICE_MAX_BACKENDS; b++) {
			format_ip(&sv->val.backends[b].addr, ip, sizeof(ip));
			json_array_append_new(backends, json_pack("{s:s, s:i}", "address", ip, "port",
								  sv->val.backends[b].port));
		}
		json_array_append_new(services,
				      json_pack("{s:i, s:s, s:b, s:o}", "node_port", sv->key.port,
						"proto", proto_name(sv->key.proto), "static",
						(sv->val.flags & HC_SERVICE_F_STATIC) != 0,
						"backends", backends));
	}
	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct hc_dp_workload_row *w = &s->workloads[i];

		format_ip(&w->wl.addr, ip, sizeof(ip));
		json_array_append_new(
			wls, json_pack("{s:s, s:i, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "id",
				       w->wl.id, "ifindex", (int)w->ifindex, "address", ip, "isolated",
				       (w->wl.flags & HC_WL_F_ISOLATE) != 0, "rate_bytes_per_sec",
				       (json_int_t)w->wl.rate_bytes_per_sec, "rx_packets",
				       (json_int_t)w->stats.rx_packets, "rx_bytes",
				       (json_int_t)w->stats.rx_bytes, "tx_packets",
				       (json_int_t)w->stats.tx_packets, "tx_bytes",
				       (json_int_t)w->stats.tx_bytes, "dropped_packets",
				       (json_int_t)w->stats.dropped_packets, "dropped_bytes",
				       (json_int_t)w->stats.dropped_bytes));
	}
	for (unsigned r = 1; r < HC_DROP_REASONS; r++)
		json_object_set_new(drops, hc_dp_drop_reason_name(r), json_integer((json_int_t)s->drops[r]));
	json_object_set_new(root, "uplink", uplink_json(&s->config));
	json_object_set_new(root, "routes", routes);
	json_object_set_new(root, "services", services);
	json_object_set_new(root, "workloads", wls);
	json_object_set_new(root, "drops", drops);
	json_object_set_new(root, "egress", egress_json(s));
	json_object_set_new(root, "conntrack_entries", json_integer((json_int_t)s->conntrack_entries));
	return root;
}

static int print_tables(const struct hc_dp_snapshot *s)
{
	static const char *const rh[] = {"HOST", "PORT", "BACKEND", "PROTOCOL", "NODE", "STATIC"};
	static const char *const sh[] = {"NODE PORT", "PROTO", "BACKENDS", "STATIC"};
	static const char *const wh[] = {"WORKLOAD", "VETH", "ADDRESS", "ISOLATED", "RX PKTS",
					 "RX BYTES", "TX PKTS", "TX BYTES", "DROPPED"};
	struct hc_cli_table *t;
	char a[64], b[64], c[32], d[32], e[32], f[32], g[32], backends[1024];
	struct uplink_text u;

	uplink_describe(&s->config, &u);
	if (strcmp(u.mode, "tc") == 0)
		printf("Uplink: %s, node ports by TC ingress\n\n", u.iface);
	else if (strcmp(u.mode, "xdp") == 0)
		printf("Uplink: %s, node ports by XDP (%s mode)\n\n", u.iface, u.xdp_mode);
	else
		printf("Uplink: none recorded\n\n");
	t = hc_cli_table_new(6, rh);
	for (size_t i = 0; t && i < s->n_routes; i++) {
		const struct hc_dp_route *r = &s->routes[i];
		/* the backend protocol as --backend-protocol and --json say it */
		const char *row[6] = {r->key.host, a, b, r->val.flags & HC_ROUTE_F_H2C ? "h2c" : "h1",
				      r->val.node, r->val.flags & HC_ROUTE_F_STATIC ? "yes" : "no"};

		snprintf(a, sizeof(a), "%u", r->key.port);
		format_endpoint(&r->val.backend, r->val.port, b, sizeof(b));
		hc_cli_table_add(t, row);
	}
	if (!t)
		return hc_cli_fail("out of memory");
	printf("Routes (L7, %zu):\n", s->n_routes);
	hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);

	t = hc_cli_table_new(4, sh);
	for (size_t i = 0; t && i < s->n_services; i++) {
		const struct hc_dp_service *sv = &s->services[i];
		const char *row[4] = {a, proto_name(sv->key.proto), backends,
				      sv->val.flags & HC_SERVICE_F_STATIC ? "yes" : "no"};
		size_t used = 0;

		snprintf(a, sizeof(a), "%u", sv->key.port);
		backends[0] = '\0';
		for (uint32_t k = 0; k < sv->val.count && k < HC_SERVICE_MAX_BACKENDS; k++) {
			format_endpoint(&sv->val.backends[k].addr, sv->val.backends[k].port, b,
					sizeof(b));
			used += (size_t)snprintf(backends + used, sizeof(backends) - used, "%s%s",
						 k ? "," : "", b);
			if (used >= sizeof(backends))
				break;
		}
		hc_cli_table_add(t, row);
	}
	if (!t)
		return hc_cli_fail("out of memory");
	printf("\nNode ports (L4, %zu):\n", s->n_services);
	hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);

	t = hc_cli_table_new(9, wh);
	for (size_t i = 0; t && i < s->n_workloads; i++) {
		const struct hc_dp_workload_row *w = &s->workloads[i];
		const char *row[9] = {w->wl.id, a, b, w->wl.flags & HC_WL_F_ISOLATE ? "yes" : "no",
				      c, d, e, f, g};

		snprintf(a, sizeof(a), "%u", w->ifindex);
		format_ip(&w->wl.addr, b, sizeof(b));
		snprintf(c, sizeof(c), "%llu", (unsigned long long)w->stats.rx_packets);
		snprintf(d, sizeof(d), "%llu", (unsigned long long)w->stats.rx_bytes);
		snprintf(e, sizeof(e), "%llu", (unsigned long long)w->stats.tx_packets);
		snprintf(f, sizeof(f), "%llu", (unsigned long long)w->stats.tx_bytes);
		snprintf(g, sizeof(g), "%llu", (unsigned long long)w->stats.dropped_packets);
		hc_cli_table_add(t, row);
	}
	if (!t)
		return hc_cli_fail("out of memory");
	printf("\nWorkloads (%zu):\n", s->n_workloads);
	hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);

	print_egress(s);
	printf("\nConntrack entries: %zu\nUntranslated or dropped:", s->conntrack_entries);
	for (unsigned r = 1; r < HC_DROP_REASONS; r++)
		printf(" %s=%llu", hc_dp_drop_reason_name(r), (unsigned long long)s->drops[r]);
	printf("\n");
	return HC_EXIT_OK;
}

int hc_cli_cmd_routes(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct hc_dp_snapshot snap;
	struct route_opts o;
	struct hc_dpmaps *m;
	int r;

	r = parse_route_opts(cmd, argc, argv, &o);
	if (r >= 0)
		return r;
	m = open_maps(o.pin_dir);
	if (!m)
		return HC_EXIT_FAIL;
	r = hc_dpmaps_snapshot(m, &snap);
	hc_dpmaps_close(m);
	if (r < 0)
		return hc_cli_fail("cannot read the maps in %s: %s", o.pin_dir, strerror(-r));
	if (o.json) {
		json_t *j = snapshot_json(&snap);
		char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

		json_decref(j);
		r = text ? (puts(text), HC_EXIT_OK) : hc_cli_fail("out of memory");
		free(text);
	} else {
		r = print_tables(&snap);
	}
	hc_dp_snapshot_fini(&snap);
	return r;
}

/* ---- hypercore routes add / del ---- */

/* Either --host with --port (an L7 route) or --node-port (an L4 service). */
static int check_target(const struct hc_cli_cmd *cmd, const struct route_opts *o)
{
	if (o->host && o->node_port)
		return hc_cli_usage_error(cmd, "give either --host with --port or --node-port");
	if (o->host && !o->port)
		return hc_cli_usage_error(cmd, "--host needs --port (the port the proxy serves)");
	if (!o->host && !o->node_port)
		return hc_cli_usage_error(cmd, "--host NAME --port P or --node-port P is required");
	if (!o->host && o->port)
		return hc_cli_usage_error(cmd, "--port goes with --host; a service takes --node-port");
	return -1;
}

int hc_cli_cmd_routes_add(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct route_opts o;
	struct hc_err err;
	struct hc_dpmaps *m;
	int r;

	r = parse_route_opts(cmd, argc, argv, &o);
	if (r >= 0)
		return r;
	r = check_target(cmd, &o);
	if (r >= 0)
		return r;
	if (!o.has_backend)
		return hc_cli_usage_error(cmd, "--backend IP:PORT is required");
	if (o.route_flags && !o.host)
		return hc_cli_usage_error(cmd, "--backend-protocol goes with --host (an L7 route)");
	if (o.host) {
		struct hc_route_key key;

		if (hc_dp_route_key_init(&key, o.host, (uint16_t)o.port))
			return hc_cli_usage_error(cmd,
						  "invalid --host %s (letters, digits, '-', '.', '_'; "
						  "at most %d)",
						  o.host, HC_ROUTE_HOST_MAX - 1);
	}
	m = open_maps(o.pin_dir);
	if (!m)
		return HC_EXIT_FAIL;
	if (o.host)
		r = hc_dpmaps_route_add_static(m, o.host, (uint16_t)o.port, &o.backend,
					       o.backend_port, o.route_flags, &err);
	else
		r = hc_dpmaps_service_add_static(m, o.proto, (uint16_t)o.node_port, &o.backend,
						 o.backend_port, &err);
	hc_dpmaps_close(m);
	return r < 0 ? hc_cli_fail("%s", err.msg) : HC_EXIT_OK;
}

int hc_cli_cmd_routes_del(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct route_opts o;
	struct hc_err err;
	struct hc_dpmaps *m;
	int r;

	r = parse_route_opts(cmd, argc, argv, &o);
	if (r >= 0)
		return r;
	r = check_target(cmd, &o);
	if (r >= 0)
		return r;
	if (o.host && o.has_backend)
		return hc_cli_usage_error(cmd, "--backend goes with --node-port (one backend of it)");
	m = open_maps(o.pin_dir);
	if (!m)
		return HC_EXIT_FAIL;
	if (o.host)
		r = hc_dpmaps_route_del_static(m, o.host, (uint16_t)o.port, &err);
	else
		r = hc_dpmaps_service_del_static(m, o.proto, (uint16_t)o.node_port,
						 o.has_backend ? &o.backend : NULL, o.backend_port, &err);
	hc_dpmaps_close(m);
	return r < 0 ? hc_cli_fail("%s", err.msg) : HC_EXIT_OK;
}

/* ---- hypercore dataplane [cleanup] ---- */

/* `dataplane` alone only explains its subcommand. */
int hc_cli_cmd_dataplane(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		hc_cli_print_usage(cmd, stdout);
		return HC_EXIT_OK;
	}
	return hc_cli_usage_error(cmd, argc > 1 ? "unknown subcommand %s" : "a subcommand is needed%s",
				  argc > 1 ? argv[1] : "");
}

int hc_cli_cmd_dataplane_cleanup(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct route_opts o;
	struct hc_err err;
	int r;

	r = parse_route_opts(cmd, argc, argv, &o);
	if (r >= 0)
		return r;
	if (hc_dataplane_cleanup(o.pin_dir, o.iface, &err) < 0)
		return hc_cli_fail("%s", err.msg);
	return HC_EXIT_OK;
}
