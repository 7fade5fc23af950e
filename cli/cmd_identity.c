/* `hypercore identity`: the node's name and IBRL key, read from a state dir
 * with no agent running. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/cluster.h"
#include "ibrl/ibrl.h"

struct identity_args {
	const char *state_dir;
	bool json;
};

#define I struct identity_args
const struct hc_cli_opt hc_cli_opts_identity[] = {
	HC_CLI_STR("state-dir", I, state_dir, "DIR",
		   "the node's state dir (default " HC_DEFAULT_STATE_DIR ")"),
	HC_CLI_FLAG("json", I, json, "print JSON instead of lines"),
	{ .name = NULL },
};
#undef I

static int print_json(const char *name, const char *beacon_id, const char *pub)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "node_name", name, "beacon_node_id",
			      beacon_id, "public_key", pub, "key_type", "ed25519");
	int r;

	if (!o)
		return hc_cli_fail("out of memory");
	r = json_dumpf(o, stdout, JSON_INDENT(2));
	json_decref(o);
	putchar('\n');
	return r < 0 ? hc_cli_fail("cannot write output") : HC_EXIT_OK;
}

int hc_cli_cmd_identity(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct identity_args a = { .state_dir = HC_DEFAULT_STATE_DIR };
	char path[PATH_MAX], name[HC_NODE_ID_LEN + 1], id[HC_IBRL_BEACON_ID_LEN + 1];
	char pub[4 * ((HC_IBRL_PUBLIC_LEN + 2) / 3) + 1];
	struct hc_ibrl_identity *key;
	struct hc_err err;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	snprintf(path, sizeof(path), "%s/node-id", a.state_dir);
	r = hc_node_id_read(path, name, &err);
	if (r < 0)
		return hc_cli_fail("%s%s", err.msg,
				   r == -ENOENT ? " (has an agent run with this --state-dir?)" : "");
	r = hc_ibrl_identity_read(a.state_dir, &key, &err);
	if (r < 0)
		return hc_cli_fail("%s%s", err.msg,
				   r == -ENOENT ? " (has an agent run with this --state-dir?)" : "");
	hc_ibrl_beacon_node_id(hc_ibrl_identity_public(key), id);
	r = hc_ibrl_b64_encode(hc_ibrl_identity_public(key), HC_IBRL_PUBLIC_LEN, pub, sizeof(pub));
	hc_ibrl_identity_free(key);
	if (r < 0)
		return hc_cli_fail("cannot encode the key");
	if (a.json)
		return print_json(name, id, pub);
	printf("node name:      %s\nbeacon_node_id: %s\npublic key:     %s\n", name, id, pub);
	return HC_EXIT_OK;
}

/* ---- cluster attest ---- */

struct attest_args {
	const char *addr;
	const char *node;
	int timeout_ms;
};

#define T struct attest_args
const struct hc_cli_opt hc_cli_opts_cluster_attest[] = {
	HC_CLI_HTTP_ADDR(T, addr),
	HC_CLI_STR("node", T, node, "NAME", "the member to attest"),
	HC_CLI_TIMEOUT(T, timeout_ms, "give up after this long (default 30)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef T

int hc_cli_cmd_cluster_attest(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct attest_args a = { HC_CLI_DEFAULT_HTTP_ADDR, NULL, 30000 };
	char path[256] = "/beacon/attest";
	struct json_t *doc, *resp;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (!a.node || !*a.node)
		return hc_cli_usage_error(cmd, "--node is required");
	if (hc_cli_url_param(path, sizeof(path), "node", a.node) < 0)
		return hc_cli_usage_error(cmd, "--node too long");
	resp = hc_cli_api_call(a.addr, "GET", path, NULL, 0, a.timeout_ms, &doc);
	if (!resp)
		return HC_EXIT_FAIL;
	printf("%s: %s\n", json_string_value(json_object_get(resp, "node")),
	       json_string_value(json_object_get(resp, "result")));
	json_decref(doc);
	return HC_EXIT_OK;
}
