/* Which key may sign for which node name: TOFU pins or a fixed file; see
 * ibrl.h ("beacon"). */
#include "ibrl/ibrl.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME_MAX_LEN 256

struct pin {
	char *name;
	uint8_t pub[HC_IBRL_PUBLIC_LEN];
};

struct hc_ibrl_trust {
	struct pin *pins;
	size_t n;
	bool fixed;	      /* from --trusted-keys: nothing is learnt */
	char path[PATH_MAX]; /* the TOFU file */
};

static const struct pin *find(const struct hc_ibrl_trust *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->pins[i].name, name) == 0)
			return &t->pins[i];
	return NULL;
}

static int add(struct hc_ibrl_trust *t, const char *name, const uint8_t *pub)
{
	struct pin *grown = realloc(t->pins, (t->n + 1) * sizeof(*grown));

	if (!grown)
		return -ENOMEM;
	t->pins = grown;
	grown[t->n].name = strdup(name);
	if (!grown[t->n].name)
		return -ENOMEM;
	memcpy(grown[t->n].pub, pub, HC_IBRL_PUBLIC_LEN);
	t->n++;
	return 0;
}

/* {"name": "base64 key", ...}: every value a 32-byte key, every name once. */
static int parse(struct hc_ibrl_trust *t, const char *path, struct hc_err *err)
{
	json_error_t je;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	const char *name;
	json_t *v;
	int r = 0;

	if (!root) {
		if (je.line < 0 && access(path, F_OK) < 0)
			return hc_err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
		return hc_err_set(err, -EINVAL, "%s:%d:%d: %s", path, je.line, je.column, je.text);
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return hc_err_set(err, -EINVAL, "%s: not a JSON object of node name -> public key",
				  path);
	}
	json_object_foreach(root, name, v) {
		uint8_t pub[HC_IBRL_PUBLIC_LEN + 3];
		size_t len = 0;

		if (!*name || strlen(name) > NAME_MAX_LEN) {
			r = hc_err_set(err, -EINVAL, "%s: node name \"%.40s\" is empty or too long",
				       path, name);
			break;
		}
		if (!json_is_string(v) ||
		    hc_ibrl_b64_decode(json_string_value(v), pub, sizeof(pub), &len) < 0 ||
		    len != HC_IBRL_PUBLIC_LEN) {
			r = hc_err_set(err, -EINVAL, "%s: the key of \"%s\" is not the base64 of a "
						     "32-byte Ed25519 public key",
				       path, name);
			break;
		}
		if ((r = add(t, name, pub)) < 0) {
			hc_err_set(err, r, "out of memory");
			break;
		}
	}
	json_decref(root);
	return r;
}

int hc_ibrl_trust_open(const char *state_dir, const char *trusted_keys_file,
		       struct hc_ibrl_trust **out, struct hc_err *err)
{
	struct hc_ibrl_trust *t = calloc(1, sizeof(*t));
	const char *path;
	int r = 0;

	if (!t)
		return hc_err_set(err, -ENOMEM, "out of memory");
	if (snprintf(t->path, sizeof(t->path), "%s/%s", state_dir, HC_IBRL_TRUST_FILE) >=
	    (int)sizeof(t->path)) {
		hc_ibrl_trust_free(t);
		return hc_err_set(err, -ENAMETOOLONG, "state dir path too long");
	}
	t->fixed = trusted_keys_file != NULL;
	path = t->fixed ? trusted_keys_file : t->path;
	if (t->fixed || access(path, F_OK) == 0)
		r = parse(t, path, err);
	if (r < 0) {
		hc_ibrl_trust_free(t);
		return r;
	}
	*out = t;
	return 0;
}

void hc_ibrl_trust_free(struct hc_ibrl_trust *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->pins[i].name);
	free(t->pins);
	free(t);
}

enum hc_ibrl_trust_verdict hc_ibrl_trust_check(const struct hc_ibrl_trust *t, const char *name,
					       const uint8_t pub[HC_IBRL_PUBLIC_LEN])
{
	const struct pin *p = find(t, name);

	if (!p)
		return t->fixed ? HC_IBRL_TRUST_UNKNOWN : HC_IBRL_TRUST_NEW;
	return memcmp(p->pub, pub, HC_IBRL_PUBLIC_LEN) == 0 ? HC_IBRL_TRUST_MATCH
							     : HC_IBRL_TRUST_MISMATCH;
}

bool hc_ibrl_trust_known(const struct hc_ibrl_trust *t, const char *name)
{
	return find(t, name) != NULL;
}

size_t hc_ibrl_trust_count(const struct hc_ibrl_trust *t)
{
	return t ? t->n : 0;
}

/* The pins as the file holds them. */
static char *dump(const struct hc_ibrl_trust *t)
{
	json_t *root = json_object();
	char *text = NULL;
	bool ok = root != NULL;

	for (size_t i = 0; ok && i < t->n; i++) {
		char b64[4 * ((HC_IBRL_PUBLIC_LEN + 2) / 3) + 1];

		ok = hc_ibrl_b64_encode(t->pins[i].pub, HC_IBRL_PUBLIC_LEN, b64, sizeof(b64)) == 0 &&
		     json_object_set_new(root, t->pins[i].name, json_string(b64)) == 0;
	}
	if (ok)
		text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	return text;
}

int hc_ibrl_trust_pin(struct hc_ibrl_trust *t, const char *name,
		      const uint8_t pub[HC_IBRL_PUBLIC_LEN], struct hc_err *err)
{
	char *text;
	int r;

	if (t->fixed)
		return hc_err_set(err, -EPERM, "keys come from the trusted-keys file only");
	if (find(t, name))
		return hc_err_set(err, -EEXIST, "%s has a key pinned already", name);
	if (!*name || strlen(name) > NAME_MAX_LEN)
		return hc_err_set(err, -EINVAL, "node name empty or too long");
	if ((r = add(t, name, pub)) < 0)
		return hc_err_set(err, r, "out of memory");
	text = dump(t);
	if (!text)
		return hc_err_set(err, -ENOMEM, "out of memory");
	r = hc_file_write_atomic(t->path, text, strlen(text), 0600);
	free(text);
	if (r < 0)
		return hc_err_set(err, r, "cannot write %s: %s", t->path, strerror(-r));
	return 0;
}
