/* `hypercore cluster policy explain` and `hypercore cluster metrics`: where
 * a spawn would go and why, and upstream's per-node beacon table; both
 * through the agent's HTTP API. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ibrl/ibrl.h"
#include "runtime/runtime.h"

#define DEFAULT_TIMEOUT_MS 60000

int hc_cli_read_policy(const char *path, char **text)
{
	struct hc_ibrl_policy *p;
	struct hc_err err;

	/* checked here, so a mistake is named before anything is asked */
	if (hc_ibrl_policy_load(path, &p, &err) < 0)
		return hc_cli_fail("%s", err.msg);
	*text = p->json;
	p->json = NULL;
	hc_ibrl_policy_free(p);
	return 0;
}

/* ---- policy explain ---- */

struct explain_args {
	const char *addr, *image_ref, *policy;
	uint32_t cores, memory;
	int timeout_ms;
	bool json;
};

#define E struct explain_args
const struct hc_cli_opt hc_cli_opts_cluster_policy_explain[] = {
	HC_CLI_HTTP_ADDR(E, addr),
	HC_CLI_STR("image-ref", E, image_ref, "REF", "the OCI image the spawn would run"),
	HC_CLI_UINT("cores", E, cores, 1, 1024, "1..1024", "N", "whole vCPUs, default 1"),
	HC_CLI_UINT("mem", E, memory, HC_RUNTIME_MIN_MEM_MB, 16u << 20,
		    "MB, at least " HC_CLI_QUOTE(HC_RUNTIME_MIN_MEM_MB), "MB",
		    "memory in MB, default 512"),
	HC_CLI_STR("policy", E, policy, "FILE",
		   "explain under this policy (default: the agent's --cluster-policy)"),
	HC_CLI_FLAG("json", E, json, "print the explanation as JSON"),
	HC_CLI_TIMEOUT(E, timeout_ms, "give up after this long (default 60)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef E

/* o[key] as "<pre><value with prec decimals><post>" */
static const char *num(char *buf, size_t len, json_t *o, const char *key, int prec, const char *pre,
		       const char *post)
{
	snprintf(buf, len, "%s%.*f%s", pre, prec, json_number_value(json_object_get(o, key)), post);
	return buf;
}

static void print_explain(json_t *resp)
{
	static const char *const head[] = { "NODE", "VERDICT", "SCORE", "FREE", "LATENCY",
					    "JITTER", "LOSS", "QUEUE", "PRICE/GB", "REPUTATION",
					    "WHY" };
	json_t *pol = json_object_get(resp, "policy"), *nodes = json_object_get(resp, "nodes"),
	       *order = json_object_get(resp, "order"), *n, *err = json_object_get(resp, "error");
	struct hc_cli_table *t = hc_cli_table_new(11, head);
	size_t i;

	printf("policy %s (%s, strategy %s)\n", json_string_value(json_object_get(pol, "name")),
	       json_string_value(json_object_get(pol, "mode")),
	       json_string_value(json_object_get(pol, "strategy")));
	json_array_foreach(nodes, i, n) {
		char score[16], fr[48], lat[24], jit[24], loss[24], q[16], price[24];
		bool beacon = json_is_true(json_object_get(n, "beacon"));
		const char *cells[11] = {
			json_string_value(json_object_get(n, "name")),
			!json_is_true(json_object_get(n, "eligible"))	       ? "excluded"
			: json_is_true(json_object_get(n, "passes_all_rules")) ? "ok"
									       : "fallback",
			num(score, sizeof(score), n, "score", 3, "", ""),
			fr,
			num(lat, sizeof(lat), n, "latency_ms", 1, "", " ms"),
			num(jit, sizeof(jit), n, "jitter_ms", 1, "", " ms"),
			num(loss, sizeof(loss), n, "packet_loss", 1, "", "%"),
			beacon ? q : "-",
			beacon ? num(price, sizeof(price), n, "price_per_gb", 4, "", "") : "-",
			beacon ? json_string_value(json_object_get(n, "reputation")) : "-",
			json_string_value(json_object_get(n, "reasons")),
		};

		snprintf(fr, sizeof(fr), "%lld cores %lld MB",
			 (long long)json_integer_value(json_object_get(n, "free_cores")),
			 (long long)json_integer_value(json_object_get(n, "free_memory_mb")));
		snprintf(q, sizeof(q), "%lld",
			 (long long)json_integer_value(json_object_get(n, "queue_depth")));
		if (t)
			hc_cli_table_add(t, cells);
	}
	if (t)
		hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);
	printf("order:");
	json_array_foreach(order, i, n)
		printf(" %s", json_string_value(n));
	printf("%s\n", json_array_size(order) ? "" : " (none)");
	if (err)
		printf("error: %s\n", json_string_value(err));
}

int hc_cli_cmd_cluster_policy_explain(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct explain_args a = { .addr = HC_CLI_DEFAULT_HTTP_ADDR, .timeout_ms = DEFAULT_TIMEOUT_MS,
				  .cores = 1, .memory = HC_RUNTIME_DEFAULT_MEM_MB };
	json_t *body, *doc = NULL, *resp;
	char *text = NULL, *policy = NULL;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (!a.image_ref)
		return hc_cli_usage_error(cmd, "--image-ref is required");
	if (a.policy && (r = hc_cli_read_policy(a.policy, &policy)) != 0)
		return r;
	body = json_pack("{s:s, s:i, s:i}", "image_ref", a.image_ref, "cores", (int)a.cores,
			 "memory", (int)a.memory);
	if (body && policy)
		json_object_set_new(body, "policy", json_string(policy));
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	free(policy);
	if (!text)
		return hc_cli_fail("out of memory");
	resp = hc_cli_api_call(a.addr, "POST", "/policy/explain", text, strlen(text), a.timeout_ms,
			       &doc);
	free(text);
	if (!resp)
		return HC_EXIT_FAIL;
	if (a.json) {
		json_dumpf(resp, stdout, JSON_INDENT(2));
		printf("\n");
	} else {
		print_explain(resp);
	}
	r = json_array_size(json_object_get(resp, "order")) ? HC_EXIT_OK : HC_EXIT_FAIL;
	json_decref(doc);
	return r;
}

/* ---- metrics: upstream's beacon table ---- */

static void beacon_row(struct hc_cli_table *t, json_t *st)
{
	json_t *b = json_object_get(st, "beacon"), *caps = json_object_get(b, "node_capabilities"), *c;
	char lat[24], jit[24], loss[24], q[16], price[24], wl[16], capbuf[256] = "";
	const char *name = json_string_value(json_object_get(json_object_get(st, "node"), "id"));
	size_t i, off = 0;

	snprintf(wl, sizeof(wl), "%zu", json_array_size(json_object_get(st, "workloads")));
	json_array_foreach(caps, i, c)
		if (off < sizeof(capbuf))
			off += (size_t)snprintf(capbuf + off, sizeof(capbuf) - off, "%s%s",
						i ? "," : "", json_string_value(c));
	snprintf(q, sizeof(q), "%lld", (long long)json_integer_value(json_object_get(b, "queue_depth")));
	{
		const char *cells[] = {
			name,
			b ? num(lat, sizeof(lat), b, "latency_ms", 2, "", " ms") : "not available",
			b ? num(jit, sizeof(jit), b, "jitter_ms", 2, "", " ms") : "-",
			b ? num(loss, sizeof(loss), b, "packet_loss", 2, "", "%") : "-",
			b ? q : "-",
			b ? num(price, sizeof(price), b, "price_per_gb", 4, "$", "") : "-",
			b ? json_string_value(json_object_get(b, "reputation_score")) : "-",
			b ? capbuf : "-",
			wl,
		};

		hc_cli_table_add(t, cells);
	}
}

int hc_cli_cluster_beacon_table(const char *addr, int timeout_ms)
{
	static const char *const head[] = { "NODE",	"LATENCY",    "JITTER",
					    "LOSS",	"QUEUE",      "PRICE/GB",
					    "REPUTATION", "CAPABILITIES", "WORKLOADS" };
	json_t *doc = NULL, *resp = hc_cli_api_call(addr, "GET", "/list", NULL, 0, timeout_ms, &doc);
	json_t *st;
	struct hc_cli_table *t;
	size_t i;

	if (!resp)
		return HC_EXIT_FAIL;
	t = hc_cli_table_new(9, head);
	if (!t) {
		json_decref(doc);
		return hc_cli_fail("out of memory");
	}
	json_array_foreach(json_object_get(resp, "states"), i, st)
		beacon_row(t, st);
	hc_cli_table_print(t, stdout);
	hc_cli_table_free(t);
	json_decref(doc);
	return HC_EXIT_OK;
}
