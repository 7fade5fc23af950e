/* Workload specs: validation, the ports syntax, the stored JSON form, ids. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime_int.h"

/* Upper bounds that catch typos (--mem 5000000) before they reach the
 * capacity check, whose message would be less clear. */
#define MAX_CORES 1024
#define MAX_MEM_MB (16u * 1024 * 1024) /* 16 TiB */
#define MAX_REF_LEN 1024
#define MAX_ENV_LEN 32768
#define MAX_LABEL_KEY 253
#define MAX_LABEL_VALUE 4096

void hc_workload_spec_fini(struct hc_workload_spec *spec)
{
	if (!spec)
		return;
	free(spec->image_ref);
	for (size_t i = 0; i < spec->nenv; i++)
		free(spec->env[i]);
	free(spec->env);
	free(spec->ports);
	for (size_t i = 0; i < spec->nlabels; i++) {
		free(spec->labels[i].key);
		free(spec->labels[i].value);
	}
	free(spec->labels);
	free(spec->runtime_handler);
	for (size_t i = 0; i < spec->ncap_add; i++)
		free(spec->cap_add[i]);
	free(spec->cap_add);
	memset(spec, 0, sizeof(*spec));
}

/* ---- capabilities and the pids limit ---- */

/* Linux's capability names (linux/capability.h, up to CAP_CHECKPOINT_RESTORE)
 * without CAP_, as CRI takes them. */
static const char *const cap_names[] = {
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
	"SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
	"NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
	"SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
	"AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
};
static const char *const default_caps[] = { HC_RUNTIME_DEFAULT_CAPS };

_Static_assert(sizeof(cap_names) / sizeof(cap_names[0]) == HC_RUNTIME_MAX_CAP_ADD,
	       "one cap_add slot per capability");

#define NCAPS (sizeof(cap_names) / sizeof(cap_names[0]))
#define NDEFAULT_CAPS (sizeof(default_caps) / sizeof(default_caps[0]))

/* The canonical name of a capability ("net_raw", "CAP_NET_RAW" ->
 * "NET_RAW"), or NULL. */
static const char *cap_lookup(const char *name)
{
	if (strncasecmp(name, "CAP_", 4) == 0)
		name += 4;
	for (size_t i = 0; i < NCAPS; i++)
		if (strcasecmp(name, cap_names[i]) == 0)
			return cap_names[i];
	return NULL;
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

int hc_workload_spec_add_cap(struct hc_workload_spec *spec, const char *name,
			     struct hc_err *err)
{
	const char *cap = cap_lookup(name);
	char **grown;

	if (!cap)
		return hc_err_set(err, -EINVAL,
				  "unknown capability \"%.40s\" (a Linux capability name such as "
				  "NET_RAW or NET_ADMIN)", name);
	if (in_list(cap, default_caps, NDEFAULT_CAPS) ||
	    in_list(cap, (const char *const *)spec->cap_add, spec->ncap_add))
		return 0;
	grown = realloc(spec->cap_add, (spec->ncap_add + 1) * sizeof(*grown));
	if (!grown)
		return hc_err_set(err, -ENOMEM, "out of memory");
	spec->cap_add = grown;
	if (!(grown[spec->ncap_add] = strdup(cap)))
		return hc_err_set(err, -ENOMEM, "out of memory");
	spec->ncap_add++;
	return 0;
}

size_t hc_workload_spec_caps(const struct hc_workload_spec *spec, const char **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < NDEFAULT_CAPS && n < max; i++)
		out[n++] = default_caps[i];
	for (size_t i = 0; i < spec->ncap_add && n < max; i++) {
		const char *cap = cap_lookup(spec->cap_add[i]);

		if (cap && !in_list(cap, out, n))
			out[n++] = cap;
	}
	return n;
}

uint32_t hc_workload_spec_pids_limit(const struct hc_workload_spec *spec)
{
	return spec->pids_limit ? spec->pids_limit : HC_RUNTIME_DEFAULT_PIDS_LIMIT;
}

/* ---- image references (the docker/distribution grammar, simplified) ---- */

static int path_component_valid(const char *s, size_t len)
{
	/* [a-z0-9]+ separated by '.', '_', '__' or runs of '-' */
	if (len == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'a' && c <= 'z') || isdigit(c) || c == '-')
			continue;
		if (c == '.' || c == '_') {
			if (s[i + 1] == '.' || (c == '.' && s[i + 1] == '_'))
				return 0;
			if (c == '_' && s[i + 1] == '_' && s[i + 2] == '_')
				return 0;
			continue;
		}
		return 0;
	}
	return 1;
}

static int domain_valid(const char *s, size_t len)
{
	size_t colon = len;

	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = i;
	if (colon == 0)
		return 0;
	for (size_t i = 0; i < colon; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '-')
			return 0;
	}
	if (colon < len) {
		if (colon + 1 == len || len - colon - 1 > 5)
			return 0;
		for (size_t i = colon + 1; i < len; i++)
			if (!isdigit((unsigned char)s[i]))
				return 0;
	}
	return 1;
}

int hc_image_ref_valid(const char *ref)
{
	size_t len = strlen(ref), name_end = len;
	const char *at = strchr(ref, '@'), *slash, *colon, *start = ref;

	if (len == 0 || len > MAX_REF_LEN)
		return 0;
	if (at) {
		/* digest: sha256:<64 hex> */
		const char *d = at + 1;

		if (strncmp(d, "sha256:", 7) != 0 || strlen(d + 7) != 64)
			return 0;
		for (const char *p = d + 7; *p; p++)
			if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
				return 0;
		name_end = (size_t)(at - ref);
	}
	/* tag: after a ':' that follows the last '/' */
	slash = memrchr(ref, '/', name_end);
	colon = memrchr(ref, ':', name_end);
	if (colon && (!slash || colon > slash)) {
		size_t tlen = name_end - (size_t)(colon + 1 - ref);

		if (tlen == 0 || tlen > 128 || !(isalnum((unsigned char)colon[1]) || colon[1] == '_'))
			return 0;
		for (const char *p = colon + 1; p < ref + name_end; p++)
			if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
				return 0;
		name_end = (size_t)(colon - ref);
	}
	/* the first component is a registry host if it looks like one */
	slash = memchr(ref, '/', name_end);
	if (slash) {
		size_t dlen = (size_t)(slash - ref);

		if (memchr(ref, '.', dlen) || memchr(ref, ':', dlen) ||
		    (dlen == 9 && memcmp(ref, "localhost", 9) == 0)) {
			if (!domain_valid(ref, dlen))
				return 0;
			start = slash + 1;
		}
	}
	if (start >= ref + name_end)
		return 0;
	while (start < ref + name_end) {
		const char *end = memchr(start, '/', (size_t)(ref + name_end - start));

		if (!end)
			end = ref + name_end;
		if (!path_component_valid(start, (size_t)(end - start)))
			return 0;
		start = end + 1;
		if (end < ref + name_end && start >= ref + name_end)
			return 0; /* trailing '/' */
	}
	return 1;
}

/* ---- validation ---- */

static int env_valid(const char *e)
{
	const char *eq = strchr(e, '=');

	if (!eq || eq == e || strlen(e) > MAX_ENV_LEN)
		return 0;
	for (const char *p = e; p < eq; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return 0;
	return !isdigit((unsigned char)e[0]);
}

static int label_key_valid(const char *k)
{
	size_t len = strlen(k);

	if (len == 0 || len > MAX_LABEL_KEY)
		return 0;
	for (const char *p = k; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-/", *p))
			return 0;
	/* our own labels cannot be set by a request */
	return strncmp(k, "io.hypercore.", 13) != 0;
}

/* Whole Mbit/s in 1..HC_EGRESS_MBIT_MAX, or 0 when text is not that. */
static unsigned long egress_mbit(const char *text)
{
	unsigned long v = 0;

	if (!text[0] || strlen(text) > 6)
		return 0;
	for (const char *p = text; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return 0;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	return v <= HC_EGRESS_MBIT_MAX ? v : 0;
}

uint64_t hc_workload_spec_egress_bytes(const struct hc_workload_spec *spec)
{
	for (size_t i = 0; i < spec->nlabels; i++)
		if (strcmp(spec->labels[i].key, HC_LABEL_EGRESS_MBIT) == 0)
			return (uint64_t)egress_mbit(spec->labels[i].value) * 1000000 / 8;
	return 0;
}

static const char *const restart_names[] = { "", "always", "on-failure", "never" };

const char *hc_restart_policy_name(enum hc_restart_policy p)
{
	return (unsigned)p < sizeof(restart_names) / sizeof(restart_names[0]) ? restart_names[p]
									       : "";
}

enum hc_restart_policy hc_restart_policy_parse(const char *name)
{
	for (size_t i = 1; name && i < sizeof(restart_names) / sizeof(restart_names[0]); i++)
		if (strcmp(name, restart_names[i]) == 0)
			return (enum hc_restart_policy)i;
	return HC_RESTART_UNSET;
}

enum hc_restart_policy hc_workload_spec_restart(const struct hc_workload_spec *spec)
{
	for (size_t i = 0; i < spec->nlabels; i++)
		if (strcmp(spec->labels[i].key, HC_LABEL_RESTART) == 0)
			return hc_restart_policy_parse(spec->labels[i].value);
	return HC_RESTART_UNSET;
}

int hc_workload_spec_validate(const struct hc_workload_spec *spec, struct hc_err *err)
{
	if (!spec->image_ref || !spec->image_ref[0])
		return hc_err_set(err, -EINVAL, "an image reference is required");
	if (!hc_image_ref_valid(spec->image_ref))
		return hc_err_set(err, -EINVAL, "invalid image reference \"%.200s\"",
				  spec->image_ref);
	if (spec->cores < 1 || spec->cores > MAX_CORES)
		return hc_err_set(err, -EINVAL, "cores must be 1..%d, not %u", MAX_CORES,
				  spec->cores);
	if (spec->memory_mb < HC_RUNTIME_MIN_MEM_MB || spec->memory_mb > MAX_MEM_MB)
		return hc_err_set(err, -EINVAL, "memory must be %d..%u MB, not %u",
				  HC_RUNTIME_MIN_MEM_MB, MAX_MEM_MB, spec->memory_mb);
	if (spec->nenv > HC_RUNTIME_MAX_ENV)
		return hc_err_set(err, -EINVAL, "at most %d environment variables",
				  HC_RUNTIME_MAX_ENV);
	for (size_t i = 0; i < spec->nenv; i++)
		if (!env_valid(spec->env[i]))
			return hc_err_set(err, -EINVAL,
					  "environment entry \"%.100s\" is not NAME=VALUE",
					  spec->env[i]);
	if (spec->nports > HC_RUNTIME_MAX_PORTS)
		return hc_err_set(err, -EINVAL, "at most %d ports", HC_RUNTIME_MAX_PORTS);
	for (size_t i = 0; i < spec->nports; i++) {
		if (!spec->ports[i].host || !spec->ports[i].container)
			return hc_err_set(err, -EINVAL, "ports must be 1..65535");
		for (size_t j = 0; j < i; j++)
			if (spec->ports[j].host == spec->ports[i].host)
				return hc_err_set(err, -EINVAL, "host port %u given twice",
						  spec->ports[i].host);
	}
	if (spec->nlabels > HC_RUNTIME_MAX_LABELS)
		return hc_err_set(err, -EINVAL, "at most %d labels", HC_RUNTIME_MAX_LABELS);
	for (size_t i = 0; i < spec->nlabels; i++) {
		if (!label_key_valid(spec->labels[i].key))
			return hc_err_set(err, -EINVAL, "invalid label key \"%.100s\"",
					  spec->labels[i].key);
		if (strlen(spec->labels[i].value) > MAX_LABEL_VALUE)
			return hc_err_set(err, -EINVAL, "label %s: value too long",
					  spec->labels[i].key);
		if (strcmp(spec->labels[i].key, HC_LABEL_EGRESS_MBIT) == 0 &&
		    !egress_mbit(spec->labels[i].value))
			return hc_err_set(err, -EINVAL,
					  "label %s must be whole Mbit/s, 1..%d, not \"%.20s\"",
					  HC_LABEL_EGRESS_MBIT, HC_EGRESS_MBIT_MAX,
					  spec->labels[i].value);
		if (strcmp(spec->labels[i].key, HC_LABEL_RESTART) == 0 &&
		    !hc_restart_policy_parse(spec->labels[i].value))
			return hc_err_set(err, -EINVAL,
					  "restart policy must be always, on-failure or never, not "
					  "\"%.20s\"", spec->labels[i].value);
	}
	if (spec->ncap_add > HC_RUNTIME_MAX_CAP_ADD)
		return hc_err_set(err, -EINVAL, "at most %d capabilities to add",
				  HC_RUNTIME_MAX_CAP_ADD);
	for (size_t i = 0; i < spec->ncap_add; i++)
		if (!cap_lookup(spec->cap_add[i]))
			return hc_err_set(err, -EINVAL, "unknown capability \"%.40s\"",
					  spec->cap_add[i]);
	if (spec->pids_limit && (spec->pids_limit < HC_RUNTIME_MIN_PIDS_LIMIT ||
				 spec->pids_limit > HC_RUNTIME_MAX_PIDS_LIMIT))
		return hc_err_set(err, -EINVAL, "pids limit must be %d..%d, not %u",
				  HC_RUNTIME_MIN_PIDS_LIMIT, HC_RUNTIME_MAX_PIDS_LIMIT,
				  spec->pids_limit);
	if (spec->runtime_handler && strcmp(spec->runtime_handler, "runc") != 0 &&
	    strcmp(spec->runtime_handler, "runsc") != 0 && !hc_spec_is_vm(spec))
		return hc_err_set(err, -EINVAL,
				  "unknown runtime \"%.50s\" (runc, runsc or microvm)",
				  spec->runtime_handler);
	if (hc_spec_is_vm(spec) && spec->memory_mb < HC_VM_MIN_MEM_MB)
		return hc_err_set(err, -EINVAL, "memory must be at least %d MB for a microVM, not %u",
				  HC_VM_MIN_MEM_MB, spec->memory_mb);
	return 0;
}

static int parse_port(const char *s, size_t len, uint16_t *out)
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

int hc_workload_spec_parse_ports(struct hc_workload_spec *spec, const char *text,
				 struct hc_err *err)
{
	const char *p = text;

	while (*p) {
		const char *end = strchrnul(p, ','), *colon = memchr(p, ':', (size_t)(end - p));
		const char *next = *end ? end + 1 : end;
		struct hc_port_map m = {0}, *grown;

		/* HOST:CONTAINER/h2c: the proxy speaks HTTP/2 to it */
		if (end - p > 4 && memcmp(end - 4, "/h2c", 4) == 0) {
			m.h2c = true;
			end -= 4;
		}
		if (colon) {
			if (parse_port(p, (size_t)(colon - p), &m.host) < 0 ||
			    parse_port(colon + 1, (size_t)(end - colon - 1), &m.container) < 0)
				goto bad;
		} else {
			if (parse_port(p, (size_t)(end - p), &m.host) < 0)
				goto bad;
			m.container = m.host;
		}
		if (spec->nports >= HC_RUNTIME_MAX_PORTS)
			return hc_err_set(err, -EINVAL, "at most %d ports", HC_RUNTIME_MAX_PORTS);
		grown = realloc(spec->ports, (spec->nports + 1) * sizeof(*grown));
		if (!grown)
			return hc_err_set(err, -ENOMEM, "out of memory");
		spec->ports = grown;
		spec->ports[spec->nports++] = m;
		if (*next == '\0' && next[-1] == ',')
			return hc_err_set(err, -EINVAL, "invalid port list \"%.40s\": it ends with ','",
					  text);
		p = next;
		continue;
bad:
		return hc_err_set(err, -EINVAL,
				  "invalid port mapping \"%.*s\": want HOST:CONTAINER[/h2c], ports "
				  "1..65535",
				  (int)(end - p > 40 ? 40 : end - p), p);
	}
	if (p == text)
		return hc_err_set(err, -EINVAL, "empty port list");
	return 0;
}

/* ---- stored JSON: upstream's VmSpawnRequest keys, omitempty ---- */

/* "h2c_ports": the host ports marked /h2c (VmSpawnRequest.h2c_ports),
 * omitted when none is. */
static void h2c_ports_to_json(json_t *o, const struct hc_workload_spec *spec)
{
	json_t *a = NULL;

	for (size_t i = 0; i < spec->nports; i++) {
		if (!spec->ports[i].h2c)
			continue;
		if (!a && !(a = json_array()))
			return;
		json_array_append_new(a, json_integer(spec->ports[i].host));
	}
	if (a)
		json_object_set_new(o, "h2c_ports", a);
}

static void h2c_ports_from_json(json_t *o, struct hc_workload_spec *spec)
{
	json_t *a = json_object_get(o, "h2c_ports"), *e;
	size_t i;

	json_array_foreach(a, i, e)
		for (size_t k = 0; json_is_integer(e) && k < spec->nports; k++)
			if (spec->ports[k].host == json_integer_value(e))
				spec->ports[k].h2c = true;
}

char *hc_workload_spec_to_json(const struct hc_workload_spec *spec)
{
	json_t *o = json_object(), *env, *ports, *labels;
	char *text = NULL;

	if (!o)
		return NULL;
	if (spec->cores)
		json_object_set_new(o, "cores", json_integer(spec->cores));
	if (spec->memory_mb)
		json_object_set_new(o, "memory", json_integer(spec->memory_mb));
	if (spec->image_ref)
		json_object_set_new(o, "image_ref", json_string(spec->image_ref));
	if (spec->nports) {
		ports = json_object();
		for (size_t i = 0; ports && i < spec->nports; i++) {
			char key[8];

			snprintf(key, sizeof(key), "%u", spec->ports[i].host);
			json_object_set_new(ports, key, json_integer(spec->ports[i].container));
		}
		json_object_set_new(o, "ports", ports);
		h2c_ports_to_json(o, spec);
	}
	if (spec->nenv) {
		env = json_array();
		for (size_t i = 0; env && i < spec->nenv; i++)
			json_array_append_new(env, json_string(spec->env[i]));
		json_object_set_new(o, "env", env);
	}
	if (spec->nlabels) {
		labels = json_object();
		for (size_t i = 0; labels && i < spec->nlabels; i++)
			json_object_set_new(labels, spec->labels[i].key,
					    json_string(spec->labels[i].value));
		json_object_set_new(o, "labels", labels);
	}
	if (spec->runtime_handler)
		json_object_set_new(o, "runtime", json_string(spec->runtime_handler));
	if (spec->ncap_add) {
		json_t *caps = json_array();

		for (size_t i = 0; caps && i < spec->ncap_add; i++)
			json_array_append_new(caps, json_string(spec->cap_add[i]));
		json_object_set_new(o, "cap_add", caps);
	}
	if (spec->pids_limit)
		json_object_set_new(o, "pids_limit", json_integer(spec->pids_limit));
	if (spec->read_only_rootfs)
		json_object_set_new(o, "read_only_rootfs", json_true());
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return text;
}

static char *dup_string(json_t *v)
{
	return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static uint32_t get_u32(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	json_int_t i = json_is_integer(v) ? json_integer_value(v) : 0;

	return i < 0 || i > UINT32_MAX ? 0 : (uint32_t)i;
}

int hc_workload_spec_from_json(const char *text, struct hc_workload_spec *spec)
{
	json_t *o = json_loads(text, 0, NULL), *v, *e;
	const char *key;
	size_t i;
	int r = -ENOMEM;

	memset(spec, 0, sizeof(*spec));
	if (!json_is_object(o)) {
		json_decref(o);
		return -EINVAL;
	}
	spec->cores = get_u32(o, "cores");
	spec->memory_mb = get_u32(o, "memory");
	spec->image_ref = dup_string(json_object_get(o, "image_ref"));
	spec->runtime_handler = dup_string(json_object_get(o, "runtime"));
	spec->pids_limit = get_u32(o, "pids_limit");
	spec->read_only_rootfs = json_is_true(json_object_get(o, "read_only_rootfs"));
	v = json_object_get(o, "cap_add");
	if (json_is_array(v) && json_array_size(v)) {
		spec->cap_add = calloc(json_array_size(v), sizeof(char *));
		if (!spec->cap_add)
			goto out;
		json_array_foreach(v, i, e)
			if (json_is_string(e) && !(spec->cap_add[spec->ncap_add++] = dup_string(e)))
				goto out;
	}
	v = json_object_get(o, "env");
	if (json_is_array(v) && json_array_size(v)) {
		spec->env = calloc(json_array_size(v), sizeof(char *));
		if (!spec->env)
			goto out;
		json_array_foreach(v, i, e)
			if (json_is_string(e) && !(spec->env[spec->nenv++] = dup_string(e)))
				goto out;
	}
	v = json_object_get(o, "ports");
	if (json_is_object(v) && json_object_size(v)) {
		spec->ports = calloc(json_object_size(v), sizeof(*spec->ports));
		if (!spec->ports)
			goto out;
		json_object_foreach(v, key, e) {
			uint16_t host;
			json_int_t c = json_is_integer(e) ? json_integer_value(e) : 0;

			if (parse_port(key, strlen(key), &host) == 0 && c > 0 && c <= 65535)
				spec->ports[spec->nports++] = (struct hc_port_map){ host, (uint16_t)c, false };
		}
		h2c_ports_from_json(o, spec);
	}
	v = json_object_get(o, "labels");
	if (json_is_object(v) && json_object_size(v)) {
		spec->labels = calloc(json_object_size(v), sizeof(*spec->labels));
		if (!spec->labels)
			goto out;
		json_object_foreach(v, key, e) {
			struct hc_label *l = &spec->labels[spec->nlabels];

			if (!json_is_string(e))
				continue;
			l->key = strdup(key);
			l->value = dup_string(e);
			spec->nlabels++;
			if (!l->key || !l->value)
				goto out;
		}
	}
	r = 0;
out:
	json_decref(o);
	if (r < 0)
		hc_workload_spec_fini(spec);
	return r;
}
