/*
 * Placement policies: upstream's JSON (pkg/policy/policy.go) parsed and
 * validated field by field, each error naming the field and where the
 * policy came from. Stricter than upstream where upstream lets a mistake
 * pass silently: unknown fields (a misspelt rule would never apply) and
 * negative thresholds or weights are refused.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ibrl/ibrl.h"

#define LABEL_MAX 63

struct ctx {
	const char *source;
	struct hc_err *err;
};

static int fail(struct ctx *x, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctx *x, const char *field, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return hc_err_set(x->err, -EINVAL, "%s: %s: %s", x->source, field, what);
}

static int oom(struct ctx *x)
{
	return hc_err_set(x->err, -ENOMEM, "%s: out of memory", x->source);
}

/* Keys other than those allowed are refused: Go would ignore them. */
static int only_keys(struct ctx *x, json_t *o, const char *prefix, const char *const *allowed)
{
	const char *key;
	json_t *v;

	json_object_foreach(o, key, v) {
		size_t i = 0;
		char field[160];

		while (allowed[i] && strcmp(allowed[i], key) != 0)
			i++;
		if (!allowed[i]) {
			snprintf(field, sizeof(field), "%s%s", prefix, key);
			return fail(x, field, "unknown field");
		}
	}
	return 0;
}

/* o[key] when present and not null. */
static json_t *get(json_t *o, const char *key)
{
	json_t *v = o ? json_object_get(o, key) : NULL;

	return json_is_null(v) ? NULL : v;
}

static int get_string(struct ctx *x, json_t *o, const char *key, const char *field, char **out)
{
	json_t *v = get(o, key);

	if (!v)
		return 0;
	if (!json_is_string(v))
		return fail(x, field, "must be a string");
	*out = strdup(json_string_value(v));
	return *out ? 0 : oom(x);
}

/* A number in [lo, hi] (hi NAN: no upper bound). */
static int get_number(struct ctx *x, json_t *o, const char *key, const char *field, double lo,
		      double hi, double *out)
{
	json_t *v = get(o, key);
	double d;

	if (!v)
		return 0;
	if (!json_is_number(v))
		return fail(x, field, "must be a number");
	d = json_number_value(v);
	if (!isfinite(d) || d < lo || (!isnan(hi) && d > hi)) {
		if (isnan(hi))
			return fail(x, field, "must be at least %g, not %g", lo, d);
		return fail(x, field, "must be between %g and %g, not %g", lo, hi, d);
	}
	*out = d;
	return 0;
}

static int get_bool(struct ctx *x, json_t *o, const char *key, const char *field, bool *out)
{
	json_t *v = get(o, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return fail(x, field, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int parse_capabilities(struct ctx *x, json_t *rules, struct hc_ibrl_policy *p)
{
	json_t *v = get(rules, "required_capabilities"), *e;
	size_t i;

	if (!v)
		return 0;
	if (!json_is_array(v))
		return fail(x, "rules.required_capabilities", "must be a list of strings");
	p->rules.required_capabilities = calloc(json_array_size(v) + 1, sizeof(char *));
	if (!p->rules.required_capabilities)
		return oom(x);
	json_array_foreach(v, i, e) {
		char field[64];

		snprintf(field, sizeof(field), "rules.required_capabilities[%zu]", i);
		if (!json_is_string(e) || !*json_string_value(e))
			return fail(x, field, "must be a non-empty string");
		p->rules.required_capabilities[i] = strdup(json_string_value(e));
		if (!p->rules.required_capabilities[i])
			return oom(x);
		p->rules.ncapabilities++;
	}
	return 0;
}

static int parse_rules(struct ctx *x, json_t *root, struct hc_ibrl_policy *p)
{
	static const char *const keys[] = {
		"required_capabilities", "max_latency_ms", "max_price_per_gb",
		"min_reputation_score", "max_queue_depth", "max_packet_loss", "max_jitter_ms",
		"prefer_low_latency", "prefer_low_price", "prefer_high_reputation", NULL,
	};
	json_t *rules = get(root, "rules"), *q;
	int r;

	if (!rules)
		return 0;
	if (!json_is_object(rules))
		return fail(x, "rules", "must be an object");
	if ((r = only_keys(x, rules, "rules.", keys)) < 0 ||
	    (r = parse_capabilities(x, rules, p)) < 0 ||
	    (r = get_number(x, rules, "max_latency_ms", "rules.max_latency_ms", 0, NAN,
			    &p->rules.max_latency_ms)) < 0 ||
	    (r = get_number(x, rules, "max_price_per_gb", "rules.max_price_per_gb", 0, NAN,
			    &p->rules.max_price_per_gb)) < 0 ||
	    (r = get_number(x, rules, "min_reputation_score", "rules.min_reputation_score", 0, 1,
			    &p->rules.min_reputation_score)) < 0 ||
	    (r = get_number(x, rules, "max_packet_loss", "rules.max_packet_loss", 0, 100,
			    &p->rules.max_packet_loss)) < 0 ||
	    (r = get_number(x, rules, "max_jitter_ms", "rules.max_jitter_ms", 0, NAN,
			    &p->rules.max_jitter_ms)) < 0 ||
	    (r = get_bool(x, rules, "prefer_low_latency", "rules.prefer_low_latency",
			  &p->rules.prefer_low_latency)) < 0 ||
	    (r = get_bool(x, rules, "prefer_low_price", "rules.prefer_low_price",
			  &p->rules.prefer_low_price)) < 0 ||
	    (r = get_bool(x, rules, "prefer_high_reputation", "rules.prefer_high_reputation",
			  &p->rules.prefer_high_reputation)) < 0)
		return r;
	q = get(rules, "max_queue_depth");
	if (q) {
		if (!json_is_integer(q) || json_integer_value(q) < 0 ||
		    json_integer_value(q) > (json_int_t)UINT32_MAX)
			return fail(x, "rules.max_queue_depth",
				    "must be a whole number between 0 and 4294967295");
		p->rules.max_queue_depth = (uint32_t)json_integer_value(q);
	}
	return 0;
}

static int parse_scoring(struct ctx *x, json_t *root, struct hc_ibrl_policy *p)
{
	static const char *const keys[] = { "latency_weight", "price_weight", "reputation_weight",
					    "queue_weight", NULL };
	json_t *s = get(root, "scoring");
	int r;

	if (s && !json_is_object(s))
		return fail(x, "scoring", "must be an object");
	if (s && ((r = only_keys(x, s, "scoring.", keys)) < 0 ||
		  (r = get_number(x, s, "latency_weight", "scoring.latency_weight", 0, NAN,
				  &p->scoring.latency)) < 0 ||
		  (r = get_number(x, s, "price_weight", "scoring.price_weight", 0, NAN,
				  &p->scoring.price)) < 0 ||
		  (r = get_number(x, s, "reputation_weight", "scoring.reputation_weight", 0, NAN,
				  &p->scoring.reputation)) < 0 ||
		  (r = get_number(x, s, "queue_weight", "scoring.queue_weight", 0, NAN,
				  &p->scoring.queue)) < 0))
		return r;
	/* upstream's LoadPolicyFromJSON: no weights at all means the default's */
	if (p->scoring.latency == 0 && p->scoring.price == 0 && p->scoring.reputation == 0 &&
	    p->scoring.queue == 0)
		p->scoring.latency = p->scoring.price = p->scoring.reputation = p->scoring.queue = 0.25;
	return 0;
}

static bool label_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > LABEL_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("-_.=/", *s)))
			return false;
	return true;
}

static int parse_selector(struct ctx *x, json_t *root, struct hc_ibrl_policy *p)
{
	json_t *sel = get(root, "node_selector"), *v;
	const char *key;

	if (!sel)
		return 0;
	if (!json_is_object(sel))
		return fail(x, "node_selector", "must be an object of tag names to values");
	p->node_selector = calloc(json_object_size(sel) + 1, sizeof(*p->node_selector));
	if (!p->node_selector)
		return oom(x);
	json_object_foreach(sel, key, v) {
		struct hc_ibrl_kv *kv = &p->node_selector[p->nselector];
		char field[160];

		snprintf(field, sizeof(field), "node_selector.%s", key);
		if (!json_is_string(v))
			return fail(x, field, "must be a string (the tag's exact value)");
		kv->key = strdup(key);
		kv->value = strdup(json_string_value(v));
		p->nselector++;
		if (!kv->key || !kv->value)
			return oom(x);
	}
	return 0;
}

/* hypercore's fields: strategy, node_selector, anti_affinity, replicas. */
static int parse_extensions(struct ctx *x, json_t *root, struct hc_ibrl_policy *p)
{
	json_t *v;
	char *strategy = NULL;
	int r;

	if ((r = get_string(x, root, "strategy", "strategy", &strategy)) < 0)
		return r;
	if (strategy) {
		if (strcmp(strategy, "spread") == 0)
			p->strategy = HC_IBRL_STRATEGY_SPREAD;
		else if (strcmp(strategy, "binpack") == 0)
			p->strategy = HC_IBRL_STRATEGY_BINPACK;
		else
			r = fail(x, "strategy", "must be \"spread\" or \"binpack\", not \"%s\"",
				 strategy);
		free(strategy);
		if (r < 0)
			return r;
	}
	if ((r = parse_selector(x, root, p)) < 0 ||
	    (r = get_string(x, root, "anti_affinity", "anti_affinity", &p->anti_affinity)) < 0)
		return r;
	if (p->anti_affinity && !label_ok(p->anti_affinity))
		return fail(x, "anti_affinity",
			    "must be a label of 1..%d letters, digits or -_.=/", LABEL_MAX);
	v = get(root, "replicas");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > HC_IBRL_MAX_REPLICAS)
			return fail(x, "replicas", "must be a whole number between 1 and %d",
				    HC_IBRL_MAX_REPLICAS);
		p->replicas = (uint32_t)json_integer_value(v);
	}
	return 0;
}

static int parse_root(struct ctx *x, json_t *root, struct hc_ibrl_policy *p)
{
	static const char *const keys[] = { "name",	     "description",   "mode",
					    "rules",	     "scoring",	      "strategy",
					    "node_selector", "anti_affinity", "replicas",
					    NULL };
	char *mode = NULL;
	int r;

	if (!json_is_object(root))
		return hc_err_set(x->err, -EINVAL, "%s: a policy must be a JSON object",
				  x->source);
	if ((r = only_keys(x, root, "", keys)) < 0 ||
	    (r = get_string(x, root, "name", "name", &p->name)) < 0 ||
	    (r = get_string(x, root, "description", "description", &p->description)) < 0 ||
	    (r = get_string(x, root, "mode", "mode", &mode)) < 0)
		goto out;
	/* upstream checks the mode first, then the name (Validate) */
	if (!mode || (strcmp(mode, "enforce") != 0 && strcmp(mode, "permissive") != 0)) {
		r = fail(x, "mode", "must be \"enforce\" or \"permissive\", not \"%s\"",
			 mode ? mode : "");
		goto out;
	}
	p->mode = strcmp(mode, "enforce") == 0 ? HC_IBRL_MODE_ENFORCE : HC_IBRL_MODE_PERMISSIVE;
	if (!p->name || !*p->name) {
		r = fail(x, "name", "must not be empty");
		goto out;
	}
	if ((r = parse_rules(x, root, p)) < 0 || (r = parse_scoring(x, root, p)) < 0 ||
	    (r = parse_extensions(x, root, p)) < 0)
		goto out;
out:
	free(mode);
	return r;
}

int hc_ibrl_policy_parse(const char *text, size_t len, const char *source,
			 struct hc_ibrl_policy **out, struct hc_err *err)
{
	struct ctx x = { source ? source : "policy", err };
	struct hc_ibrl_policy *p;
	json_error_t jerr;
	json_t *root;
	int r;

	*out = NULL;
	if (len > HC_IBRL_POLICY_MAX_BYTES)
		return hc_err_set(err, -EINVAL, "%s: larger than %d bytes", x.source,
				  HC_IBRL_POLICY_MAX_BYTES);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return hc_err_set(err, -EINVAL, "%s: not JSON: line %d column %d: %s", x.source,
				  jerr.line, jerr.column, jerr.text);
	p = calloc(1, sizeof(*p));
	if (!p) {
		json_decref(root);
		return oom(&x);
	}
	p->replicas = 1;
	r = parse_root(&x, root, p);
	json_decref(root);
	if (r == 0 && !(p->json = strndup(text, len)))
		r = oom(&x);
	if (r < 0) {
		hc_ibrl_policy_free(p);
		return r;
	}
	*out = p;
	return 0;
}

int hc_ibrl_policy_load(const char *path, struct hc_ibrl_policy **out, struct hc_err *err)
{
	char source[300], *buf = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	*out = NULL;
	snprintf(source, sizeof(source), "policy file %s", path);
	f = fopen(path, "re");
	if (!f)
		return hc_err_set(err, -errno, "%s: %s", source, strerror(errno));
	buf = malloc(HC_IBRL_POLICY_MAX_BYTES + 1);
	if (buf)
		len = fread(buf, 1, HC_IBRL_POLICY_MAX_BYTES + 1, f);
	if (!buf)
		r = hc_err_set(err, -ENOMEM, "%s: out of memory", source);
	else if (ferror(f))
		r = hc_err_set(err, -EIO, "%s: cannot read it", source);
	else
		r = hc_ibrl_policy_parse(buf, len, source, out, err);
	fclose(f);
	free(buf);
	return r;
}

struct hc_ibrl_policy *hc_ibrl_policy_default(void)
{
	static const char text[] =
		"{\"name\": \"default\", \"description\": \"Default permissive policy - accepts "
		"any node\", \"mode\": \"permissive\", \"rules\": {\"max_packet_loss\": 100}, "
		"\"scoring\": {\"latency_weight\": 0.25, \"price_weight\": 0.25, "
		"\"reputation_weight\": 0.25, \"queue_weight\": 0.25}}";
	struct hc_ibrl_policy *p;
	struct hc_err err;
	int r = hc_ibrl_policy_parse(text, sizeof(text) - 1, "default policy", &p, &err);

	if (r < 0) {
		errno = -r;
		return NULL;
	}
	return p;
}

void hc_ibrl_policy_free(struct hc_ibrl_policy *p)
{
	if (!p)
		return;
	free(p->name);
	free(p->description);
	for (size_t i = 0; i < p->rules.ncapabilities; i++)
		free(p->rules.required_capabilities[i]);
	free(p->rules.required_capabilities);
	for (size_t i = 0; i < p->nselector; i++) {
		free(p->node_selector[i].key);
		free(p->node_selector[i].value);
	}
	free(p->node_selector);
	free(p->anti_affinity);
	free(p->json);
	free(p);
}
