/*
 * libFuzzer: an Authorization header (HTTP) or authorization metadata
 * (gRPC) is the first thing the APIs read from anyone who connects, and a
 * join token is pasted from wherever an operator keeps it. Checked:
 *  - nothing is read past the input (it is a NUL-terminated copy of its
 *    exact size, under ASan);
 *  - hc_auth_bearer gives NULL or a token of 1..HC_AUTH_TOKEN_MAX characters
 *    that occurs in the input after the scheme;
 *  - no input but the file's token is admin, none but its derived one
 *    read-only;
 *  - a join token that parses formats back to the same string.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ADMIN "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"

static struct hc_auth *auth;
static char read_only[HC_AUTH_TOKEN_MAX + 1];

static void load_once(void)
{
	char path[] = "/tmp/hc-fuzz-auth-XXXXXX";
	struct hc_err err;
	int fd;

	if (auth)
		return;
	fd = mkstemp(path);
	if (fd < 0 || write(fd, ADMIN "\n", sizeof(ADMIN)) != (ssize_t)sizeof(ADMIN))
		abort();
	close(fd);
	auth = hc_auth_load(path, &err);
	unlink(path);
	if (!auth || hc_auth_read_only_token(ADMIN, read_only) < 0)
		abort();
}

static void check_bearer(const char *in)
{
	char tok[HC_AUTH_TOKEN_MAX + 1];
	const char *t = hc_auth_bearer(in, tok);
	enum hc_auth_role role;

	if (!t)
		return;
	if (t != tok || !*t || strlen(t) > HC_AUTH_TOKEN_MAX || !strstr(in + 7, t))
		abort();
	role = hc_auth_check(auth, t);
	if ((role == HC_AUTH_ADMIN) != (strcmp(t, ADMIN) == 0) ||
	    (role == HC_AUTH_READ_ONLY) != (strcmp(t, read_only) == 0))
		abort();
}

static void check_join(const char *in)
{
	char key[64], admin[HC_AUTH_TOKEN_MAX + 1], back[HC_AUTH_JOIN_MAX * 2];

	if (hc_auth_join_token_parse(in, key, admin) < 0)
		return;
	if (hc_auth_join_token_format(key, admin, back, sizeof(back)) < 0 || strcmp(back, in) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);

	if (!in)
		abort();
	load_once();
	memcpy(in, data, size);
	in[size] = '\0';
	check_bearer(in);
	check_join(in);
	free(in);
	return 0;
}
