/* API tokens and join tokens; see auth.h. */
#include "auth/auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "base/base.h"

/* Labels of the derivations: a new label makes new tokens, so they are
 * versioned rather than ever changed. */
#define FROM_KEY_LABEL "hypercore api admin token v1"
#define READ_ONLY_LABEL "hypercore api read-only token v1"
#define TOKEN_FILE_MAX 4096

/* One token padded with NULs to a fixed size: every comparison reads the
 * same number of bytes whatever the tokens' lengths and contents. */
struct padded {
	char s[HC_AUTH_TOKEN_MAX + 1];
};

struct hc_auth {
	size_t n;
	struct padded admin[HC_AUTH_MAX_TOKENS];
	struct padded read_only[HC_AUTH_MAX_TOKENS];
};

const char *hc_auth_role_name(enum hc_auth_role role)
{
	switch (role) {
	case HC_AUTH_ADMIN:
		return "admin";
	case HC_AUTH_READ_ONLY:
		return "read-only";
	default:
		return "denied";
	}
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int hc_auth_token_generate(char out[HC_AUTH_TOKEN_MAX + 1])
{
	unsigned char b[32];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	hex(b, sizeof(b), out);
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

/* hex(HMAC-SHA256(key, label)) into out (65 bytes at least). */
static int hmac_hex(const char *key, const char *label, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)label, strlen(label),
		  mac, &len) || len != 32)
		return -EIO;
	hex(mac, len, out);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

int hc_auth_token_from_key(const char *key_b64, char out[HC_AUTH_TOKEN_MAX + 1])
{
	return hmac_hex(key_b64, FROM_KEY_LABEL, out);
}

int hc_auth_read_only_token(const char *admin, char out[HC_AUTH_TOKEN_MAX + 1])
{
	size_t plen = strlen(HC_AUTH_READ_ONLY_PREFIX);

	memcpy(out, HC_AUTH_READ_ONLY_PREFIX, plen);
	return hmac_hex(admin, READ_ONLY_LABEL, out + plen);
}

int hc_auth_token_check(const char *tok)
{
	size_t n = tok ? strlen(tok) : 0;

	if (n < HC_AUTH_TOKEN_MIN || n > HC_AUTH_TOKEN_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)tok[i]))
			return -EINVAL;
	return 0;
}

/* ---- token files ---- */

int hc_auth_token_file_create(const char *path, const char *token)
{
	char text[HC_AUTH_TOKEN_MAX + 2];
	int n, r;

	if (hc_auth_token_check(token) < 0)
		return -EINVAL;
	n = snprintf(text, sizeof(text), "%s\n", token);
	r = hc_file_create_atomic(path, text, (size_t)n, 0600);
	OPENSSL_cleanse(text, sizeof(text));
	return r;
}

/* Reads the whole (small) file at path into buf; refuses files others may
 * read, as ssh does with keys: a token there is no longer a secret. */
static int read_secret_file(const char *path, char *buf, size_t size, struct hc_err *err)
{
	size_t n = 0;
	int r = hc_file_read_private(path, buf, size - 1, &n);

	if (r == -EPERM)
		return hc_err_set(err, r, "API token file %s must be a regular file only its "
			       "owner can read (chmod 600 %s)", path, path);
	if (r < 0)
		return hc_err_set(err, r, "cannot read API token file %s: %s", path,
				  r == -EFBIG ? "too large" : strerror(-r));
	buf[n] = '\0';
	return 0;
}

/* Adds one line's token to auth. */
static int add_token(struct hc_auth *auth, char *line, const char *path, struct hc_err *err)
{
	size_t len = strlen(line);

	while (len && isspace((unsigned char)line[len - 1]))
		line[--len] = '\0';
	while (isspace((unsigned char)*line))
		line++;
	if (!*line || *line == '#')
		return 0;
	if (hc_auth_token_check(line) < 0) {
		hc_err_set(err, -EINVAL, "API token file %s: a token must be %d to %d printable "
			   "characters without spaces", path, HC_AUTH_TOKEN_MIN,
			   HC_AUTH_TOKEN_MAX);
		return -EINVAL;
	}
	if (auth->n == HC_AUTH_MAX_TOKENS) {
		hc_err_set(err, -E2BIG, "API token file %s: more than %d tokens", path,
			   HC_AUTH_MAX_TOKENS);
		return -E2BIG;
	}
	snprintf(auth->admin[auth->n].s, sizeof(auth->admin[0].s), "%s", line);
	if (hc_auth_read_only_token(line, auth->read_only[auth->n].s) < 0) {
		hc_err_set(err, -EIO, "cannot derive the read-only token");
		return -EIO;
	}
	auth->n++;
	return 0;
}

struct hc_auth *hc_auth_load(const char *path, struct hc_err *err)
{
	struct hc_auth *auth = calloc(1, sizeof(*auth));
	char buf[TOKEN_FILE_MAX], *save = NULL;
	int r = auth ? read_secret_file(path, buf, sizeof(buf), err) : -ENOMEM;

	if (!auth)
		hc_err_set(err, -ENOMEM, "out of memory");
	for (char *line = r == 0 ? strtok_r(buf, "\n", &save) : NULL; line && r == 0;
	     line = strtok_r(NULL, "\n", &save))
		r = add_token(auth, line, path, err);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (r == 0 && auth->n == 0) {
		hc_err_set(err, -EINVAL, "API token file %s holds no token", path);
		r = -EINVAL;
	}
	if (r < 0) {
		hc_auth_free(auth);
		return NULL;
	}
	return auth;
}

void hc_auth_free(struct hc_auth *auth)
{
	if (!auth)
		return;
	OPENSSL_cleanse(auth, sizeof(*auth));
	free(auth);
}

const char *hc_auth_token(const struct hc_auth *auth)
{
	return auth->admin[0].s;
}

/* Constant time in the contents: every slot is compared in full. */
static bool matches(const struct padded *slots, size_t n, const struct padded *tok)
{
	int hit = 0;

	for (size_t i = 0; i < n; i++)
		hit |= CRYPTO_memcmp(slots[i].s, tok->s, sizeof(tok->s)) == 0;
	return hit;
}

bool hc_auth_holds(const struct hc_auth *auth, const char *token)
{
	return hc_auth_check(auth, token) == HC_AUTH_ADMIN;
}

enum hc_auth_role hc_auth_check(const struct hc_auth *auth, const char *token)
{
	struct padded tok = { { 0 } };
	enum hc_auth_role role = HC_AUTH_DENIED;

	if (!auth || !token || hc_auth_token_check(token) < 0)
		return HC_AUTH_DENIED;
	memcpy(tok.s, token, strlen(token));
	if (matches(auth->admin, auth->n, &tok))
		role = HC_AUTH_ADMIN;
	else if (matches(auth->read_only, auth->n, &tok))
		role = HC_AUTH_READ_ONLY;
	OPENSSL_cleanse(&tok, sizeof(tok));
	return role;
}

const char *hc_auth_bearer(const char *value, char out[HC_AUTH_TOKEN_MAX + 1])
{
	size_t n;

	if (!value || strncasecmp(value, "Bearer ", 7) != 0)
		return NULL;
	value += 7;
	while (*value == ' ')
		value++;
	n = strlen(value);
	while (n && value[n - 1] == ' ')
		n--;
	if (n == 0 || n > HC_AUTH_TOKEN_MAX)
		return NULL;
	memcpy(out, value, n);
	out[n] = '\0';
	return out;
}

/* ---- join tokens ---- */

/* The key is base64, which has no '.': the first '.' after the prefix ends
 * it, and the token (which may hold dots) is the rest. */

int hc_auth_join_token_format(const char *key_b64, const char *admin, char *out, size_t size)
{
	int n;

	if (hc_auth_token_check(admin) < 0 || !*key_b64 || strchr(key_b64, '.'))
		return -EINVAL;
	n = snprintf(out, size, "%s%s.%s", HC_AUTH_JOIN_PREFIX, key_b64, admin);
	return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

static bool base64_text(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '+' && s[i] != '/' && s[i] != '=')
			return false;
	return true;
}

int hc_auth_join_token_parse(const char *s, char key_b64[64], char admin[HC_AUTH_TOKEN_MAX + 1])
{
	size_t plen = strlen(HC_AUTH_JOIN_PREFIX);
	const char *key, *dot;

	if (!s || strncmp(s, HC_AUTH_JOIN_PREFIX, plen) != 0)
		return -EINVAL;
	key = s + plen;
	dot = strchr(key, '.');
	if (!dot || dot == key || (size_t)(dot - key) > 44 || !base64_text(key, (size_t)(dot - key)) ||
	    hc_auth_token_check(dot + 1) < 0)
		return -EINVAL;
	memcpy(key_b64, key, (size_t)(dot - key));
	key_b64[dot - key] = '\0';
	snprintf(admin, HC_AUTH_TOKEN_MAX + 1, "%s", dot + 1);
	return 0;
}
