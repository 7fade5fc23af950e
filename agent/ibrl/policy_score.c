/*
 * Placement under a policy: every candidate checked against every rule,
 * scored as upstream's pkg/policy/engine.go scores it, and ordered without
 * randomness. Pure computation on what the caller measured and collected;
 * no I/O, so tests and the benchmark drive it directly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ibrl/ibrl.h"

#define SCORE_EPSILON 1e-9
#define NO_DATA_SCORE 0.5 /* upstream's neutral score, permissive mode */

/* Rules no mode relaxes: the workload must fit, and the user's placement
 * constraints are not preferences. */
#define HARD_RULES                                                                   \
	((1u << HC_IBRL_RULE_CAPACITY) | (1u << HC_IBRL_RULE_SELECTOR) |             \
	 (1u << HC_IBRL_RULE_ANTI_AFFINITY))

const char *const hc_ibrl_rule_names[HC_IBRL_RULES] = {
	[HC_IBRL_RULE_CAPACITY] = "capacity",
	[HC_IBRL_RULE_SELECTOR] = "node_selector",
	[HC_IBRL_RULE_ANTI_AFFINITY] = "anti_affinity",
	[HC_IBRL_RULE_BEACON] = "beacon",
	[HC_IBRL_RULE_CAPABILITIES] = "required_capabilities",
	[HC_IBRL_RULE_LATENCY] = "max_latency_ms",
	[HC_IBRL_RULE_PRICE] = "max_price_per_gb",
	[HC_IBRL_RULE_REPUTATION] = "min_reputation_score",
	[HC_IBRL_RULE_QUEUE] = "max_queue_depth",
	[HC_IBRL_RULE_LOSS] = "max_packet_loss",
	[HC_IBRL_RULE_JITTER] = "max_jitter_ms",
};

/* upstream parses the reputation string with strconv.ParseFloat */
static bool reputation_of(const struct hc_ibrl_node *n, double *out)
{
	char *end;

	if (!n->reputation || !*n->reputation)
		return false;
	errno = 0;
	*out = strtod(n->reputation, &end);
	return errno == 0 && *end == '\0';
}

static const char *tag_of(const struct hc_ibrl_node *n, const char *key)
{
	for (size_t i = 0; i < n->ntags; i++)
		if (strcmp(n->tags[i].key, key) == 0)
			return n->tags[i].value;
	return NULL;
}

static bool has_capability(const struct hc_ibrl_node *n, const char *cap)
{
	for (size_t i = 0; i < n->ncapabilities; i++)
		if (strcmp(n->capabilities[i], cap) == 0)
			return true;
	return false;
}

static bool selector_matches(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *n)
{
	for (size_t i = 0; i < p->nselector; i++) {
		const char *v = tag_of(n, p->node_selector[i].key);

		if (!v || strcmp(v, p->node_selector[i].value) != 0)
			return false;
	}
	return true;
}

/* Sets the rule's bit in applied, and in failed when it fails. */
static void check(struct hc_ibrl_policy_verdict *v, enum hc_ibrl_rule rule, bool applies, bool fails)
{
	if (!applies)
		return;
	v->applied |= 1u << rule;
	if (fails)
		v->failed |= 1u << rule;
}

/* upstream's meetsConstraints: a threshold applies only when > 0, and a
 * value equal to it passes. */
static void check_beacon_rules(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *n,
			       struct hc_ibrl_policy_verdict *v)
{
	bool caps_ok = true;
	double rep;

	for (size_t i = 0; i < p->rules.ncapabilities; i++)
		caps_ok = caps_ok && has_capability(n, p->rules.required_capabilities[i]);
	check(v, HC_IBRL_RULE_CAPABILITIES, p->rules.ncapabilities > 0, !caps_ok);
	check(v, HC_IBRL_RULE_LATENCY, p->rules.max_latency_ms > 0,
	      n->latency_ms > p->rules.max_latency_ms);
	check(v, HC_IBRL_RULE_PRICE, p->rules.max_price_per_gb > 0,
	      n->price_per_gb > p->rules.max_price_per_gb);
	check(v, HC_IBRL_RULE_REPUTATION, p->rules.min_reputation_score > 0,
	      !reputation_of(n, &rep) || rep < p->rules.min_reputation_score);
	check(v, HC_IBRL_RULE_QUEUE, p->rules.max_queue_depth > 0,
	      n->queue_depth > p->rules.max_queue_depth);
	check(v, HC_IBRL_RULE_LOSS, p->rules.max_packet_loss > 0,
	      n->packet_loss > p->rules.max_packet_loss);
	check(v, HC_IBRL_RULE_JITTER, p->rules.max_jitter_ms > 0,
	      n->jitter_ms > p->rules.max_jitter_ms);
}

static double clamp0(double x)
{
	return x < 0 ? 0 : x;
}

double hc_ibrl_score(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *n)
{
	double score = 0, rep;

	if (p->scoring.latency > 0)
		score += p->scoring.latency * clamp0(1.0 - n->latency_ms / 200.0);
	if (p->scoring.price > 0)
		score += p->scoring.price * clamp0(1.0 - n->price_per_gb / 1.0);
	if (p->scoring.reputation > 0 && reputation_of(n, &rep))
		score += p->scoring.reputation * rep;
	if (p->scoring.queue > 0)
		score += p->scoring.queue * clamp0(1.0 - (double)n->queue_depth / 100.0);
	return score;
}

static void judge(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *n,
		  struct hc_ibrl_policy_verdict *v)
{
	bool enforce = p->mode == HC_IBRL_MODE_ENFORCE;

	memset(v, 0, sizeof(*v));
	check(v, HC_IBRL_RULE_CAPACITY, true, !n->capable);
	check(v, HC_IBRL_RULE_SELECTOR, p->nselector > 0, !selector_matches(p, n));
	check(v, HC_IBRL_RULE_ANTI_AFFINITY, p->anti_affinity != NULL, n->anti_affinity_hit);
	/* without beacon data: enforce skips the node, permissive scores it 0.5 */
	check(v, HC_IBRL_RULE_BEACON, true, enforce && !n->has_beacon);
	if (n->has_beacon)
		check_beacon_rules(p, n, v);
	v->score = n->has_beacon ? hc_ibrl_score(p, n) : NO_DATA_SCORE;
	v->preferred = v->failed == 0;
	v->eligible = enforce ? v->preferred : !(v->failed & HARD_RULES);
}

struct sort_ctx {
	const struct hc_ibrl_policy *p;
	const struct hc_ibrl_node *nodes;
	const struct hc_ibrl_policy_verdict *v;
};

/* More free capacity: > 0. Cores first, then memory. */
static int free_cmp(const struct hc_ibrl_node *a, const struct hc_ibrl_node *b)
{
	if (a->free_cores != b->free_cores)
		return a->free_cores > b->free_cores ? 1 : -1;
	if (a->free_mem_mb != b->free_mem_mb)
		return a->free_mem_mb > b->free_mem_mb ? 1 : -1;
	return 0;
}

static int score_cmp(double a, double b)
{
	if (a > b + SCORE_EPSILON)
		return 1;
	if (b > a + SCORE_EPSILON)
		return -1;
	return 0;
}

/* Best first: those passing every rule, then by strategy, score, free
 * capacity and name, so equal nodes always come out in one order. */
static int order_cmp(const void *x, const void *y, void *arg)
{
	const struct sort_ctx *s = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	const struct hc_ibrl_node *a = &s->nodes[i], *b = &s->nodes[j];
	int c;

	if (s->v[i].preferred != s->v[j].preferred)
		return s->v[i].preferred ? -1 : 1;
	switch (s->p->strategy) {
	case HC_IBRL_STRATEGY_SPREAD:
		if ((c = free_cmp(a, b)) != 0)
			return -c;
		break;
	case HC_IBRL_STRATEGY_BINPACK:
		if ((c = free_cmp(a, b)) != 0)
			return c;
		break;
	case HC_IBRL_STRATEGY_SCORE:
		break;
	}
	if ((c = score_cmp(s->v[i].score, s->v[j].score)) != 0)
		return -c;
	if ((c = free_cmp(a, b)) != 0)
		return -c;
	return strcmp(a->name, b->name);
}

int hc_ibrl_place(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *nodes, size_t n,
		  struct hc_ibrl_policy_verdict *out, size_t *order, size_t *norder)
{
	struct sort_ctx s = { p, nodes, out };
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		judge(p, &nodes[i], &out[i]);
		if (out[i].eligible)
			order[k++] = i;
	}
	qsort_r(order, k, sizeof(*order), order_cmp, &s);
	*norder = k;
	return 0;
}

static void reason(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *n,
		   enum hc_ibrl_rule rule, char *buf, size_t len)
{
	double rep;

	switch (rule) {
	case HC_IBRL_RULE_CAPACITY:
		snprintf(buf, len, "capacity: %s", n->capacity_why ? n->capacity_why : "no room");
		break;
	case HC_IBRL_RULE_SELECTOR:
		for (size_t i = 0, off = 0; i < p->nselector && off < len; i++) {
			const char *v = tag_of(n, p->node_selector[i].key);

			if (v && strcmp(v, p->node_selector[i].value) == 0)
				continue;
			off += (size_t)snprintf(buf + off, len - off, "%snode_selector: %s=%s (%s%s)",
						off ? ", " : "", p->node_selector[i].key,
						p->node_selector[i].value, v ? "has " : "no such tag",
						v ? v : "");
		}
		break;
	case HC_IBRL_RULE_ANTI_AFFINITY:
		snprintf(buf, len, "anti_affinity: runs a workload labelled %s", p->anti_affinity);
		break;
	case HC_IBRL_RULE_BEACON:
		snprintf(buf, len, "no beacon data (enforce skips such nodes)");
		break;
	case HC_IBRL_RULE_CAPABILITIES: {
		size_t off = (size_t)snprintf(buf, len, "required_capabilities: lacks");

		for (size_t i = 0; i < p->rules.ncapabilities && off < len; i++)
			if (!has_capability(n, p->rules.required_capabilities[i]))
				off += (size_t)snprintf(buf + off, len - off, " %s",
							p->rules.required_capabilities[i]);
		break;
	}
	case HC_IBRL_RULE_LATENCY:
		snprintf(buf, len, "max_latency_ms: %.1f > %g", n->latency_ms, p->rules.max_latency_ms);
		break;
	case HC_IBRL_RULE_PRICE:
		snprintf(buf, len, "max_price_per_gb: %g > %g", n->price_per_gb,
			 p->rules.max_price_per_gb);
		break;
	case HC_IBRL_RULE_REPUTATION:
		if (reputation_of(n, &rep))
			snprintf(buf, len, "min_reputation_score: %g < %g", rep,
				 p->rules.min_reputation_score);
		else
			snprintf(buf, len, "min_reputation_score: reputation \"%s\" is not a number",
				 n->reputation ? n->reputation : "");
		break;
	case HC_IBRL_RULE_QUEUE:
		snprintf(buf, len, "max_queue_depth: %u > %u", n->queue_depth,
			 p->rules.max_queue_depth);
		break;
	case HC_IBRL_RULE_LOSS:
		snprintf(buf, len, "max_packet_loss: %.2f%% > %g%%", n->packet_loss,
			 p->rules.max_packet_loss);
		break;
	case HC_IBRL_RULE_JITTER:
		snprintf(buf, len, "max_jitter_ms: %.1f > %g", n->jitter_ms, p->rules.max_jitter_ms);
		break;
	case HC_IBRL_RULES:
		buf[0] = '\0';
		break;
	}
}

void hc_ibrl_policy_reasons(const struct hc_ibrl_policy *p, const struct hc_ibrl_node *n,
			     const struct hc_ibrl_policy_verdict *v, char *buf, size_t len)
{
	size_t off = 0;

	if (len)
		buf[0] = '\0';
	for (int r = 0; r < HC_IBRL_RULES && off + 1 < len; r++) {
		char one[256];

		if (!(v->failed & (1u << r)))
			continue;
		reason(p, n, (enum hc_ibrl_rule)r, one, sizeof(one));
		off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "; " : "", one);
	}
}
