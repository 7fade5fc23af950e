/* `hypercore cluster proof show|verify`: a workload's execution proofs
 * through an agent's HTTP API (/proofs, /proofs/verify), whichever node
 * runs it. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ibrl/ibrl.h"

#define HC_EXIT_UNKNOWN 3 /* verify: neither VALID nor INVALID */

#define P struct hc_cli_id_args
const struct hc_cli_opt hc_cli_opts_cluster_proof[] = {
	HC_CLI_HTTP_ADDR(P, addr),
	HC_CLI_STR("id", P, id, "ID", "the workload"),
	HC_CLI_FLAG("json", P, json, "print the agent's answer as JSON"),
	HC_CLI_TIMEOUT(P, timeout_ms, "give up after this long (default 60)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef P

/* Parses the command line and asks the agent for <endpoint>?id=ID: the
 * answer's "response" (doc owns it), or NULL with *rc the exit status. */
static json_t *ask(const struct hc_cli_cmd *cmd, int argc, char **argv, const char *endpoint,
		   struct hc_cli_id_args *a, json_t **doc, int *rc)
{
	char path[96];
	json_t *resp;

	*rc = hc_cli_parse_id_args(cmd, argc, argv, a, HC_CLI_DEFAULT_HTTP_ADDR);
	if (*rc >= 0)
		return NULL;
	snprintf(path, sizeof(path), "%s?id=%s", endpoint, a->id);
	resp = hc_cli_api_call(a->addr, "GET", path, NULL, 0, a->timeout_ms, doc);
	*rc = HC_EXIT_FAIL;
	return resp;
}

static const char *str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : "";
}

static int print_json(json_t *resp)
{
	int r = json_dumpf(resp, stdout, JSON_INDENT(2)) < 0 ? HC_EXIT_FAIL : HC_EXIT_OK;

	putchar('\n');
	return r;
}

/* One entry per line: time, metrics, hash (prev -> this). */
static void print_chain(const char *log)
{
	const char *p = log;
	size_t n = 0;

	printf("%-4s %-13s %-6s %14s %12s %12s %12s %9s %4s  %s\n", "#", "TIME_MS", "HV",
	       "CPU_NS", "MEMORY", "RX_BYTES", "TX_BYTES", "UPTIME_S", "RST", "HASH");
	while (*p) {
		const char *nl = strchr(p, '\n');
		struct hc_ibrl_proof e;
		char hash[2 * HC_IBRL_HASH_LEN + 1];

		if (!nl)
			break;
		n++;
		if (hc_ibrl_proof_parse(p, (size_t)(nl - p) + 1, &e) < 0) {
			printf("%-4zu (not a proof entry) %.*s\n", n, (int)(nl - p), p);
		} else {
			const uint64_t *m = e.metrics;

			hc_ibrl_hash_hex(e.hash, hash);
			printf("%-4zu %-13" PRId64 " %-6s %14" PRIu64 " %12" PRIu64 " %12" PRIu64
			       " %12" PRIu64 " %9" PRIu64 " %4" PRIu64 "  %.16s\n",
			       n, e.timestamp_ms, e.hypervisor, m[HC_IBRL_CPU_NS],
			       m[HC_IBRL_MEMORY_BYTES], m[HC_IBRL_RX_BYTES], m[HC_IBRL_TX_BYTES],
			       m[HC_IBRL_UPTIME_S], m[HC_IBRL_RESTARTS], hash);
		}
		p = nl + 1;
	}
	if (!n)
		printf("(no proofs yet)\n");
}

int hc_cli_cmd_cluster_proof_show(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct hc_cli_id_args a = { 0 };
	json_t *doc, *resp;
	int r;

	if (!(resp = ask(cmd, argc, argv, "/proofs", &a, &doc, &r)))
		return r;
	if (a.json) {
		r = print_json(resp);
	} else {
		printf("workload %s on node %s, key %s\n", a.id, str(resp, "node"),
		       *str(resp, "node_key") ? str(resp, "node_key") : "(unknown)");
		print_chain(str(resp, "log"));
		r = HC_EXIT_OK;
	}
	json_decref(doc);
	return r;
}

/* Exit status: 0 VALID, 1 INVALID or a failure, 3 UNKNOWN. */
int hc_cli_cmd_cluster_proof_verify(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct hc_cli_id_args a = { 0 };
	json_t *doc, *resp;
	const char *verdict, *detail;
	int r;

	if (!(resp = ask(cmd, argc, argv, "/proofs/verify", &a, &doc, &r)))
		return r;
	verdict = str(resp, "verification_result");
	detail = str(resp, "detail");
	if (a.json)
		print_json(resp);
	else if (strcmp(verdict, "VALID") == 0)
		printf("VALID: %" JSON_INTEGER_FORMAT " proofs of %s on %s, head %.16s\n",
		       json_integer_value(json_object_get(resp, "entries")), a.id,
		       str(resp, "node"), str(resp, "proof_hash"));
	else
		printf("%s: %s%s%s\n", verdict, str(resp, "reason"), *detail ? ": " : "", detail);
	r = strcmp(verdict, "VALID") == 0	? HC_EXIT_OK
	    : strcmp(verdict, "INVALID") == 0 ? HC_EXIT_FAIL
					       : HC_EXIT_UNKNOWN;
	json_decref(doc);
	return r;
}
