/*
 * The CLI's credentials: which token client verbs send (--token,
 * HYPERCORE_TOKEN, or the agent's own token file found through
 * --state-dir), and `cluster join-token` / `cluster api-token`, which read
 * a node's state dir with no agent running.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "daemon/daemon.h"
#include "gossip/gossip.h"
#include "rpc/rpc.h"

#define TOKEN_ENV "HYPERCORE_TOKEN"

static const char *opt_token;     /* --token */
static const char *opt_state_dir; /* --state-dir of a client verb */
static char found[HC_AUTH_TOKEN_MAX + 1];
static char not_found[512]; /* why the state dir gave no token */

int hc_cli_opt_token(char *value, void *field, char *why, size_t len)
{
	(void)field;
	if (hc_auth_token_check(value) < 0) {
		snprintf(why, len, "a token is %d to %d printable characters", HC_AUTH_TOKEN_MIN,
			 HC_AUTH_TOKEN_MAX);
		return -EINVAL;
	}
	opt_token = value;
	return 0;
}

int hc_cli_opt_token_state_dir(char *value, void *field, char *why, size_t len)
{
	(void)field;
	(void)why;
	(void)len;
	opt_state_dir = value;
	return 0;
}

/* The first token of <dir>/api-token into found; why not into not_found. */
static const char *token_of_state_dir(const char *dir, bool quiet)
{
	char path[PATH_MAX];
	struct hc_auth *auth;
	struct hc_err why;

	snprintf(path, sizeof(path), "%s/%s", dir, HC_AUTH_TOKEN_FILE);
	auth = hc_auth_load(path, &why);
	if (!auth) {
		if (!quiet)
			snprintf(not_found, sizeof(not_found), "%s", why.msg);
		return NULL;
	}
	snprintf(found, sizeof(found), "%s", hc_auth_token(auth));
	hc_auth_free(auth);
	return found;
}

const char *hc_cli_token(void)
{
	const char *env = getenv(TOKEN_ENV);

	if (opt_token)
		return opt_token;
	if (env && *env)
		return env;
	if (found[0])
		return found;
	if (opt_state_dir)
		return token_of_state_dir(opt_state_dir, false);
	/* the local agent's default: quietly, as the caller may not be root */
	return token_of_state_dir(HC_DEFAULT_STATE_DIR, true);
}

const char *hc_cli_token_hint(void)
{
	static char hint[768];

	snprintf(hint, sizeof(hint), "give --token, set " TOKEN_ENV ", or --state-dir of the "
				     "agent to read its token%s%s",
		 not_found[0] ? ": " : "", not_found);
	return hint;
}

int hc_cli_rpc_call(struct hc_rpc_client *client, const char *path, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp,
		    bool show_env, int timeout_ms, struct hc_rpc_status *st)
{
	char bearer[HC_AUTH_TOKEN_MAX + 8];
	const char *token = hc_cli_token();
	struct hc_rpc_metadata md[2];
	size_t n = 0;
	int r;

	if (token) {
		snprintf(bearer, sizeof(bearer), "Bearer %s", token);
		md[n++] = (struct hc_rpc_metadata){ "authorization", bearer };
	}
	if (show_env)
		md[n++] = (struct hc_rpc_metadata){ "hypercore-show-env", "1" };
	r = hc_rpc_client_call(client, path, req, resp_type, resp, md, n, timeout_ms, st);
	explicit_bzero(bearer, sizeof(bearer));
	return r;
}

/* ---- cluster join-token, cluster api-token ---- */

struct token_args {
	const char *state_dir;
	bool read_only;
};

#define T struct token_args
const struct hc_cli_opt hc_cli_opts_cluster_join_token[] = {
	HC_CLI_STR("state-dir", T, state_dir, "DIR",
		   "the member's state dir (default " HC_DEFAULT_STATE_DIR ")"),
	{ .name = NULL },
};
const struct hc_cli_opt hc_cli_opts_cluster_api_token[] = {
	HC_CLI_STR("state-dir", T, state_dir, "DIR",
		   "the node's state dir (default " HC_DEFAULT_STATE_DIR ")"),
	HC_CLI_FLAG("read-only", T, read_only,
		    "print the read-only token (list, logs, members, metrics) instead of the "
		    "admin one"),
	{ .name = NULL },
};
#undef T

static int parse_token_args(const struct hc_cli_cmd *cmd, int argc, char **argv,
			    struct token_args *a)
{
	int r;

	a->state_dir = HC_DEFAULT_STATE_DIR;
	r = hc_cli_parse_opts(cmd, argc, argv, a);
	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	return -1;
}

/* The admin token of the node whose state dir is dir, into out. */
static int admin_token(const char *dir, char out[HC_AUTH_TOKEN_MAX + 1])
{
	char path[PATH_MAX];
	struct hc_auth *auth;
	struct hc_err why;

	snprintf(path, sizeof(path), "%s/%s", dir, HC_AUTH_TOKEN_FILE);
	auth = hc_auth_load(path, &why);
	if (!auth)
		return hc_cli_fail("%s (has an agent run with --state-dir %s?)", why.msg, dir);
	snprintf(out, HC_AUTH_TOKEN_MAX + 1, "%s", hc_auth_token(auth));
	hc_auth_free(auth);
	return HC_EXIT_OK;
}

int hc_cli_cmd_cluster_api_token(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	char admin[HC_AUTH_TOKEN_MAX + 1], ro[HC_AUTH_TOKEN_MAX + 1];
	struct token_args a = { 0 };
	int r = parse_token_args(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if ((r = admin_token(a.state_dir, admin)) != HC_EXIT_OK)
		return r;
	if (a.read_only && hc_auth_read_only_token(admin, ro) < 0)
		return hc_cli_fail("cannot derive the read-only token");
	printf("%s\n", a.read_only ? ro : admin);
	explicit_bzero(admin, sizeof(admin));
	explicit_bzero(ro, sizeof(ro));
	return HC_EXIT_OK;
}

int hc_cli_cmd_cluster_join_token(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	char admin[HC_AUTH_TOKEN_MAX + 1], key[HC_GOSSIP_KEY_B64_MAX], path[PATH_MAX];
	char join[HC_AUTH_JOIN_MAX];
	struct token_args a = { 0 };
	int r = parse_token_args(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s", a.state_dir, HC_DAEMON_KEYRING_FILE);
	r = hc_gossip_keyring_file_primary(path, key);
	if (r == -ENOENT)
		return hc_cli_fail("%s: no such file: this node made no cluster key (it was started "
				   "with --cluster-encrypt, --cluster-keyring or --cluster-insecure, "
				   "or never with --state-dir %s)", path, a.state_dir);
	if (r < 0)
		return hc_cli_fail("%s: %s", path, r == -EINVAL ? "not a keyring file" : strerror(-r));
	if ((r = admin_token(a.state_dir, admin)) != HC_EXIT_OK)
		return r;
	r = hc_auth_join_token_format(key, admin, join, sizeof(join));
	explicit_bzero(key, sizeof(key));
	explicit_bzero(admin, sizeof(admin));
	if (r < 0)
		return hc_cli_fail("the API token cannot go into a join token: %s", strerror(-r));
	printf("%s\n", join);
	explicit_bzero(join, sizeof(join));
	return HC_EXIT_OK;
}

/* ---- cluster keys ---- */

struct keys_args {
	const char *addr;
	int timeout_ms;
};

#define K struct keys_args
const struct hc_cli_opt hc_cli_opts_cluster_keys[] = {
	HC_CLI_HTTP_ADDR(K, addr),
	HC_CLI_TIMEOUT(K, timeout_ms, "give up after this long (default 60)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef K

static int print_new_key(void)
{
	char key[HC_GOSSIP_KEY_B64_MAX];

	if (hc_gossip_key_generate(key) < 0)
		return hc_cli_fail("cannot make a key: no randomness");
	printf("%s\n", key);
	explicit_bzero(key, sizeof(key));
	return HC_EXIT_OK;
}

int hc_cli_cmd_cluster_keys(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct keys_args a = { HC_CLI_DEFAULT_HTTP_ADDR, 60000 };
	char path[64], body[128];
	struct json_t *doc, *resp;
	const char *op, *key;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (argc - optind == 1 && strcmp(argv[optind], "generate") == 0)
		return print_new_key();
	if (argc - optind != 2)
		return hc_cli_usage_error(cmd, "want generate, or an operation (install, use or "
					       "remove) and a key");
	op = argv[optind];
	key = argv[optind + 1];
	if (strcmp(op, "install") != 0 && strcmp(op, "use") != 0 && strcmp(op, "remove") != 0)
		return hc_cli_usage_error(cmd, "unknown operation %s (install, use or remove)", op);
	if (hc_gossip_key_check(key) < 0)
		return hc_cli_usage_error(cmd, "invalid key (want base64 of 16, 24 or 32 bytes, as "
					       "`hypercore cluster keys generate` prints)");
	snprintf(path, sizeof(path), "/keys?op=%s", op);
	snprintf(body, sizeof(body), "{\"key\":\"%s\"}", key);
	resp = hc_cli_api_call(a.addr, "POST", path, body, strlen(body), a.timeout_ms, &doc);
	explicit_bzero(body, sizeof(body));
	if (!resp)
		return HC_EXIT_FAIL;
	printf("%s: done on %lld members\n", op,
	       (long long)json_integer_value(json_object_get(resp, "members")));
	json_decref(doc);
	return HC_EXIT_OK;
}
