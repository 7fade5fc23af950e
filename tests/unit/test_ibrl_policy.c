/* Placement policies (agent/ibrl/policy.c, policy_score.c): every field's
 * error names the field and the source; upstream's rules and scores; the
 * node each shipped example policy picks from given metrics; enforce
 * failing with reasons; deterministic ties; hypercore's extensions. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ibrl/ibrl.h"

#ifndef HC_EXAMPLES_DIR
#error "HC_EXAMPLES_DIR must name the repository's examples (the Makefile sets it)"
#endif

static struct hc_ibrl_policy *example(const char *name)
{
	char path[512];
	struct hc_ibrl_policy *p;
	struct hc_err err;

	snprintf(path, sizeof(path), HC_EXAMPLES_DIR "/policies/%s.json", name);
	if (hc_ibrl_policy_load(path, &p, &err) < 0)
		fail_msg("%s", err.msg);
	return p;
}

static int parse(const char *text, struct hc_ibrl_policy **p, struct hc_err *err)
{
	return hc_ibrl_policy_parse(text, strlen(text), "file t.json", p, err);
}

/* The text fails to parse with an error containing want. */
static void refused(const char *text, const char *want)
{
	struct hc_ibrl_policy *p;
	struct hc_err err;

	assert_int_equal(parse(text, &p, &err), -EINVAL);
	assert_null(p);
	if (!strstr(err.msg, want) || !strstr(err.msg, "file t.json"))
		fail_msg("for %s\n  got  %s\n  want %s", text, err.msg, want);
}

#define HEAD "{\"name\": \"x\", \"mode\": \"enforce\", "

static void test_every_field_error_names_field_and_file(void **state)
{
	(void)state;
	refused("{", "not JSON: line");
	refused("[]", "a policy must be a JSON object");
	refused("{\"name\": \"x\"}", "mode: must be \"enforce\" or \"permissive\", not \"\"");
	refused("{\"name\": \"x\", \"mode\": \"Enforce\"}", "mode: must be \"enforce\"");
	refused("{\"name\": \"x\", \"mode\": 1}", "mode: must be a string");
	refused("{\"mode\": \"enforce\"}", "name: must not be empty");
	refused("{\"name\": \"\", \"mode\": \"enforce\"}", "name: must not be empty");
	refused("{\"name\": 3, \"mode\": \"enforce\"}", "name: must be a string");
	refused(HEAD "\"description\": []}", "description: must be a string");
	refused(HEAD "\"colour\": 1}", ": colour: unknown field");
	refused(HEAD "\"rules\": 1}", "rules: must be an object");
	refused(HEAD "\"rules\": {\"max_latancy_ms\": 1}}", "rules.max_latancy_ms: unknown field");
	refused(HEAD "\"rules\": {\"required_capabilities\": \"tls\"}}",
		"rules.required_capabilities: must be a list of strings");
	refused(HEAD "\"rules\": {\"required_capabilities\": [\"tls\", 2]}}",
		"rules.required_capabilities[1]: must be a non-empty string");
	refused(HEAD "\"rules\": {\"max_latency_ms\": -1}}", "rules.max_latency_ms: must be at least 0");
	refused(HEAD "\"rules\": {\"max_latency_ms\": \"5\"}}", "rules.max_latency_ms: must be a number");
	refused(HEAD "\"rules\": {\"max_price_per_gb\": -0.5}}", "rules.max_price_per_gb: must be at least 0");
	refused(HEAD "\"rules\": {\"min_reputation_score\": 1.5}}",
		"rules.min_reputation_score: must be between 0 and 1");
	refused(HEAD "\"rules\": {\"min_reputation_score\": -0.1}}",
		"rules.min_reputation_score: must be between 0 and 1");
	refused(HEAD "\"rules\": {\"max_queue_depth\": 1.5}}", "rules.max_queue_depth: must be a whole number");
	refused(HEAD "\"rules\": {\"max_queue_depth\": -1}}", "rules.max_queue_depth: must be a whole number");
	refused(HEAD "\"rules\": {\"max_queue_depth\": 4294967296}}", "rules.max_queue_depth");
	refused(HEAD "\"rules\": {\"max_packet_loss\": 101}}", "rules.max_packet_loss: must be between 0 and 100");
	refused(HEAD "\"rules\": {\"max_jitter_ms\": -2}}", "rules.max_jitter_ms: must be at least 0");
	refused(HEAD "\"rules\": {\"prefer_low_latency\": 1}}", "rules.prefer_low_latency: must be true or false");
	refused(HEAD "\"rules\": {\"prefer_low_price\": \"yes\"}}", "rules.prefer_low_price: must be true or false");
	refused(HEAD "\"rules\": {\"prefer_high_reputation\": 0}}",
		"rules.prefer_high_reputation: must be true or false");
	refused(HEAD "\"scoring\": []}", "scoring: must be an object");
	refused(HEAD "\"scoring\": {\"speed_weight\": 1}}", "scoring.speed_weight: unknown field");
	refused(HEAD "\"scoring\": {\"latency_weight\": -1}}", "scoring.latency_weight: must be at least 0");
	refused(HEAD "\"scoring\": {\"price_weight\": \"a\"}}", "scoring.price_weight: must be a number");
	refused(HEAD "\"scoring\": {\"reputation_weight\": -1}}", "scoring.reputation_weight");
	refused(HEAD "\"scoring\": {\"queue_weight\": null, \"latency_weight\": true}}",
		"scoring.latency_weight: must be a number");
	refused(HEAD "\"strategy\": \"random\"}", "strategy: must be \"spread\" or \"binpack\"");
	refused(HEAD "\"node_selector\": [\"zone\"]}", "node_selector: must be an object");
	refused(HEAD "\"node_selector\": {\"zone\": 1}}", "node_selector.zone: must be a string");
	refused(HEAD "\"anti_affinity\": \"a b\"}", "anti_affinity: must be a label");
	refused(HEAD "\"anti_affinity\": \"\"}", "anti_affinity: must be a label");
	refused(HEAD "\"replicas\": 0}", "replicas: must be a whole number between 1 and 16");
	refused(HEAD "\"replicas\": 17}", "replicas");
	refused(HEAD "\"name\": \"y\"}", "not JSON"); /* duplicate keys */
}

static void test_load_names_the_file(void **state)
{
	struct hc_ibrl_policy *p;
	struct hc_err err;

	(void)state;
	assert_int_equal(hc_ibrl_policy_load("/nonexistent/p.json", &p, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "policy file /nonexistent/p.json"));
}

static void test_upstream_defaults(void **state)
{
	struct hc_ibrl_policy *p, *d = hc_ibrl_policy_default();
	struct hc_err err;

	(void)state;
	/* no weights: 0.25 each; nulls are absent; mode exact */
	assert_int_equal(parse("{\"name\": \"w\", \"mode\": \"permissive\", \"rules\": null, "
			       "\"scoring\": {\"latency_weight\": 0}}",
			       &p, &err),
			 0);
	assert_true(p->mode == HC_IBRL_MODE_PERMISSIVE);
	assert_true(p->scoring.latency == 0.25 && p->scoring.price == 0.25 &&
		    p->scoring.reputation == 0.25 && p->scoring.queue == 0.25);
	assert_int_equal(p->replicas, 1);
	assert_true(p->strategy == HC_IBRL_STRATEGY_SCORE);
	hc_ibrl_policy_free(p);
	/* one weight given: the others stay 0 */
	assert_int_equal(parse(HEAD "\"scoring\": {\"price_weight\": 1}}", &p, &err), 0);
	assert_true(p->scoring.price == 1 && p->scoring.latency == 0);
	hc_ibrl_policy_free(p);
	assert_non_null(d);
	assert_string_equal(d->name, "default");
	assert_true(d->mode == HC_IBRL_MODE_PERMISSIVE && d->rules.max_packet_loss == 100);
	hc_ibrl_policy_free(d);
	hc_ibrl_policy_free(NULL);
}

/* A node with beacon data and room. */
static struct hc_ibrl_node node(const char *name, double lat, double jit, double loss,
				uint32_t queue, double price, const char *rep)
{
	return (struct hc_ibrl_node){
		.name = name, .capable = true, .free_cores = 4, .free_mem_mb = 4096,
		.has_beacon = true, .latency_ms = lat, .jitter_ms = jit, .packet_loss = loss,
		.queue_depth = queue, .price_per_gb = price, .reputation = rep,
	};
}

/* Places nodes under p: the name of the first choice ("" if none), and
 * verdicts in v. */
static const char *pick(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *nodes, size_t n,
			struct hc_ibrl_policy_verdict *v, size_t *order, size_t *norder)
{
	assert_int_equal(hc_ibrl_place(p, nodes, n, v, order, norder), 0);
	return *norder ? nodes[order[0]].name : "";
}

static void test_score_formula(void **state)
{
	struct hc_ibrl_policy *p = example("balanced");
	struct hc_ibrl_node a = node("a", 50, 0, 0, 20, 0.01, "0.9");

	(void)state;
	/* 0.25*(1-50/200) + 0.25*(1-0.01) + 0.25*0.9 + 0.25*(1-20/100) */
	assert_float_equal(hc_ibrl_score(p, &a), 0.25 * (0.75 + 0.99 + 0.9 + 0.8), 1e-12);
	/* terms clamp at 0; an unparsable reputation adds nothing */
	a = node("a", 400, 0, 0, 500, 2.0, "high");
	assert_float_equal(hc_ibrl_score(p, &a), 0, 1e-12);
	hc_ibrl_policy_free(p);
}

static void test_balanced_picks(void **state)
{
	struct hc_ibrl_policy *p = example("balanced");
	struct hc_ibrl_node n[] = {
		node("fast-pricey", 10, 2, 0, 5, 0.03, "0.99"),	/* price > 0.02 */
		node("far", 250, 2, 0, 5, 0.01, "0.99"),	/* latency > 200 */
		node("ok", 80, 10, 0.5, 40, 0.015, "0.8"),
		node("better", 40, 5, 0.1, 10, 0.01, "0.9"),
		node("edge", 200, 30, 2.0, 100, 0.02, "0.7"), /* every value at the limit passes */
	};
	struct hc_ibrl_policy_verdict v[5];
	size_t order[5], k;

	(void)state;
	assert_string_equal(pick(p, n, 5, v, order, &k), "better");
	assert_int_equal(k, 3);
	assert_string_equal(n[order[1]].name, "ok");
	assert_string_equal(n[order[2]].name, "edge");
	assert_true(v[0].failed == 1u << HC_IBRL_RULE_PRICE);
	assert_true(v[1].failed == 1u << HC_IBRL_RULE_LATENCY);
	assert_int_equal(v[4].failed, 0);
	hc_ibrl_policy_free(p);
}

static void test_cost_optimized_picks(void **state)
{
	struct hc_ibrl_policy *p = example("cost-optimized");
	struct hc_ibrl_node n[] = {
		node("premium", 5, 1, 0, 0, 0.08, "0.99"), /* price > 0.05 */
		node("cheap-far", 450, 40, 3, 0, 0.001, "0.6"),
		node("mid", 100, 5, 0, 0, 0.04, "0.9"),
	};
	struct hc_ibrl_policy_verdict v[3];
	size_t order[3], k;

	(void)state;
	/* 0.1*0 + 0.7*0.999 + 0.1*0.6 + 0.1 = 0.8593 vs 0.05 + 0.672 + 0.09 + 0.1 = 0.912 */
	assert_string_equal(pick(p, n, 3, v, order, &k), "mid");
	assert_int_equal(k, 2);
	assert_true(v[0].failed == 1u << HC_IBRL_RULE_PRICE);
	/* the balanced policy refuses the cheap one outright (latency, loss, jitter) */
	hc_ibrl_policy_free(p);
	p = example("balanced");
	pick(p, n, 3, v, order, &k);
	assert_true(v[1].failed == ((1u << HC_IBRL_RULE_LATENCY) | (1u << HC_IBRL_RULE_LOSS) |
				    (1u << HC_IBRL_RULE_JITTER) | (1u << HC_IBRL_RULE_REPUTATION)));
	hc_ibrl_policy_free(p);
}

static void test_high_trust_picks(void **state)
{
	struct hc_ibrl_policy *p = example("high-trust");
	struct hc_ibrl_node n[] = {
		node("near-unknown", 5, 1, 0, 0, 0.01, "0.85"), /* reputation < 0.9 */
		node("trusted", 150, 10, 0.5, 10, 0.05, "0.95"),
		node("very-trusted-far", 290, 10, 0.5, 10, 0.05, "1.0"),
		node("bad-text", 5, 1, 0, 0, 0.01, "0.9x"), /* not a number */
	};
	struct hc_ibrl_policy_verdict v[4];
	size_t order[4], k;

	(void)state;
	/* 0.2*0.25+0.1*0.95+0.6*0.95+0.09 = 0.805 vs 0.2*0.05+0.095+0.6+0.09 = 0.795 */
	assert_string_equal(pick(p, n, 4, v, order, &k), "trusted");
	assert_int_equal(k, 2);
	assert_true(v[0].failed == 1u << HC_IBRL_RULE_REPUTATION);
	assert_true(v[3].failed == 1u << HC_IBRL_RULE_REPUTATION);
	hc_ibrl_policy_free(p);
}

static void test_low_latency_picks(void **state)
{
	struct hc_ibrl_policy *p = example("low-latency");
	struct hc_ibrl_node n[] = {
		node("jittery", 30, 25, 0, 0, 0.01, "0.9"), /* jitter > 20 */
		node("lossy", 20, 2, 2, 0, 0.01, "0.9"),    /* loss > 1 */
		node("steady", 60, 5, 0.5, 0, 0.01, "0.9"),
		node("steadier", 45, 3, 0, 0, 0.5, "0.5"),
	};
	struct hc_ibrl_policy_verdict v[4];
	size_t order[4], k;

	(void)state;
	/* 0.6*0.7+0.1*0.99+0.2*0.9+0.1 = 0.799 vs 0.6*0.775+0.05+0.1+0.1 = 0.715 */
	assert_string_equal(pick(p, n, 4, v, order, &k), "steady");
	assert_int_equal(k, 2);
	assert_true(v[0].failed == 1u << HC_IBRL_RULE_JITTER);
	assert_true(v[1].failed == 1u << HC_IBRL_RULE_LOSS);
	hc_ibrl_policy_free(p);
}

static void test_permissive_picks(void **state)
{
	struct hc_ibrl_policy *p = example("permissive");
	struct hc_ibrl_node n[] = {
		node("poor", 100, 0, 0, 50, 0.5, "0.2"), /* 0.425 */
		{ .name = "no-data", .capable = true, .free_cores = 4, .free_mem_mb = 4096 },
		node("good", 10, 0, 0, 0, 0.01, "0.9"), /* 0.96 */
		{ .name = "full", .capable = false, .capacity_why = "over capacity" },
	};
	struct hc_ibrl_policy_verdict v[4];
	size_t order[4], k;

	(void)state;
	assert_string_equal(pick(p, n, 4, v, order, &k), "good");
	assert_int_equal(k, 3);
	assert_string_equal(n[order[1]].name, "no-data");
	assert_float_equal(v[1].score, 0.5, 0);
	assert_string_equal(n[order[2]].name, "poor");
	assert_false(v[3].eligible); /* capacity holds in every mode */
	hc_ibrl_policy_free(p);
}

static void test_enforce_fails_with_reasons(void **state)
{
	struct hc_ibrl_policy *p = example("balanced");
	struct hc_ibrl_node n[] = {
		node("far", 250, 40, 3, 200, 0.5, "0.1"),
		{ .name = "silent", .capable = true },
		{ .name = "full", .capable = false, .capacity_why = "over capacity: 4 of 4 vCPUs" },
	};
	struct hc_ibrl_policy_verdict v[3];
	size_t order[3], k;
	char why[512];

	(void)state;
	assert_string_equal(pick(p, n, 3, v, order, &k), "");
	assert_int_equal(k, 0);
	hc_ibrl_policy_reasons(p, &n[0], &v[0], why, sizeof(why));
	assert_string_equal(why, "max_latency_ms: 250.0 > 200; max_price_per_gb: 0.5 > 0.02; "
				 "min_reputation_score: 0.1 < 0.7; max_queue_depth: 200 > 100; "
				 "max_packet_loss: 3.00% > 2%; max_jitter_ms: 40.0 > 30");
	hc_ibrl_policy_reasons(p, &n[1], &v[1], why, sizeof(why));
	assert_string_equal(why, "no beacon data (enforce skips such nodes)");
	hc_ibrl_policy_reasons(p, &n[2], &v[2], why, sizeof(why));
	assert_string_equal(why, "capacity: over capacity: 4 of 4 vCPUs; "
				 "no beacon data (enforce skips such nodes)");
	hc_ibrl_policy_free(p);
}

static void test_ties_are_deterministic(void **state)
{
	struct hc_ibrl_policy *p = example("permissive");
	struct hc_ibrl_node n[] = {
		{ .name = "c", .capable = true, .free_cores = 2, .free_mem_mb = 100 },
		{ .name = "b", .capable = true, .free_cores = 8, .free_mem_mb = 100 },
		{ .name = "a", .capable = true, .free_cores = 2, .free_mem_mb = 100 },
		{ .name = "d", .capable = true, .free_cores = 2, .free_mem_mb = 900 },
	};
	struct hc_ibrl_policy_verdict v[4];
	size_t order[4], k;
	const char *want[] = { "b", "d", "a", "c" };

	(void)state;
	for (int round = 0; round < 3; round++) {
		pick(p, n, 4, v, order, &k);
		assert_int_equal(k, 4);
		for (size_t i = 0; i < 4; i++)
			assert_string_equal(n[order[i]].name, want[i]);
	}
	hc_ibrl_policy_free(p);
}

static void test_strategy_selector_anti_affinity(void **state)
{
	struct hc_ibrl_policy *p;
	struct hc_err err;
	const struct hc_ibrl_kv eu[] = { { (char *)"zone", (char *)"eu" } };
	const struct hc_ibrl_kv us[] = { { (char *)"zone", (char *)"us" } };
	struct hc_ibrl_node n[] = {
		{ .name = "big", .capable = true, .free_cores = 16, .tags = eu, .ntags = 1 },
		{ .name = "small", .capable = true, .free_cores = 2, .tags = eu, .ntags = 1 },
		{ .name = "mid", .capable = true, .free_cores = 8, .tags = us, .ntags = 1 },
		{ .name = "bare", .capable = true, .free_cores = 4 },
	};
	struct hc_ibrl_policy_verdict v[4];
	size_t order[4], k;
	char why[256];

	(void)state;
	assert_int_equal(parse("{\"name\": \"bp\", \"mode\": \"permissive\", \"strategy\": "
			       "\"binpack\"}", &p, &err), 0);
	assert_string_equal(pick(p, n, 4, v, order, &k), "small");
	assert_string_equal(n[order[3]].name, "big");
	hc_ibrl_policy_free(p);
	assert_int_equal(parse("{\"name\": \"sp\", \"mode\": \"permissive\", \"strategy\": "
			       "\"spread\", \"node_selector\": {\"zone\": \"eu\"}, "
			       "\"anti_affinity\": \"web\"}", &p, &err), 0);
	n[0].anti_affinity_hit = true;
	assert_string_equal(pick(p, n, 4, v, order, &k), "small");
	assert_int_equal(k, 1);
	hc_ibrl_policy_reasons(p, &n[0], &v[0], why, sizeof(why));
	assert_string_equal(why, "anti_affinity: runs a workload labelled web");
	hc_ibrl_policy_reasons(p, &n[2], &v[2], why, sizeof(why));
	assert_string_equal(why, "node_selector: zone=eu (has us)");
	hc_ibrl_policy_reasons(p, &n[3], &v[3], why, sizeof(why));
	assert_string_equal(why, "node_selector: zone=eu (no such tag)");
	hc_ibrl_policy_free(p);
}

static void test_capabilities_rule(void **state)
{
	struct hc_ibrl_policy *p;
	struct hc_err err;
	const char *caps[] = { "container", "tls" };
	struct hc_ibrl_node n[] = { node("plain", 1, 0, 0, 0, 0, "1"), node("tls", 1, 0, 0, 0, 0, "1") };
	struct hc_ibrl_policy_verdict v[2];
	size_t order[2], k;
	char why[256];

	(void)state;
	n[1].capabilities = caps;
	n[1].ncapabilities = 2;
	assert_int_equal(parse(HEAD "\"rules\": {\"required_capabilities\": [\"tls\", \"vm\"]}}",
			       &p, &err), 0);
	assert_string_equal(pick(p, n, 2, v, order, &k), "");
	hc_ibrl_policy_reasons(p, &n[1], &v[1], why, sizeof(why));
	assert_string_equal(why, "required_capabilities: lacks vm");
	hc_ibrl_policy_reasons(p, &n[0], &v[0], why, sizeof(why));
	assert_string_equal(why, "required_capabilities: lacks tls vm");
	hc_ibrl_policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_field_error_names_field_and_file),
		cmocka_unit_test(test_load_names_the_file),
		cmocka_unit_test(test_upstream_defaults),
		cmocka_unit_test(test_score_formula),
		cmocka_unit_test(test_balanced_picks),
		cmocka_unit_test(test_cost_optimized_picks),
		cmocka_unit_test(test_high_trust_picks),
		cmocka_unit_test(test_low_latency_picks),
		cmocka_unit_test(test_permissive_picks),
		cmocka_unit_test(test_enforce_fails_with_reasons),
		cmocka_unit_test(test_ties_are_deterministic),
		cmocka_unit_test(test_strategy_selector_anti_affinity),
		cmocka_unit_test(test_capabilities_rule),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
