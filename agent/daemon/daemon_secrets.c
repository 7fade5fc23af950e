/*
 * The agent's secrets, settled before anything starts: the gossip key
 * (made on a cluster's first node, carried to the others by a join token)
 * and the API tokens. Secure by default: a node encrypts gossip and wants a
 * token on its APIs unless told otherwise, and then it says so in the log.
 */
#include "daemon/daemon_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define HC_LOG_MODULE "daemon"
#include "auth/auth.h"
#include "gossip/gossip.h"
#include "log/log.h"

static int state_path(const struct hc_daemon_config *cfg, const char *name, char *out,
		      size_t size, struct hc_err *err)
{
	int n = snprintf(out, size, "%s/%s", cfg->state_dir, name);

	if (n < 0 || (size_t)n >= size) {
		hc_err_set(err, -ENAMETOOLONG, "state dir path too long: %s", cfg->state_dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

static int check_combinations(const struct hc_daemon_config *cfg, struct hc_err *err)
{
	bool given_key = cfg->encrypt_key || cfg->keyring_file;

	if (cfg->cluster_insecure && (given_key || cfg->join_token)) {
		hc_err_set(err, -EINVAL,
			   "--cluster-insecure turns gossip encryption off: do not give "
			   "it with --cluster-encrypt, --cluster-keyring or --join-token");
		return -EINVAL;
	}
	if (cfg->join_token && given_key) {
		hc_err_set(err, -EINVAL, "--join-token carries the cluster's key: do not give "
			   "--cluster-encrypt or --cluster-keyring with it");
		return -EINVAL;
	}
	if (cfg->api_auth_none && cfg->api_token_file) {
		hc_err_set(err, -EINVAL, "--api-auth none takes no --api-token-file");
		return -EINVAL;
	}
	return 0;
}

/* The join token's key goes into the state dir's keyring, unless that
 * already holds it; a keyring of another cluster is never replaced. */
static int keyring_from_join_token(const struct daemon_secrets *s, const char *key,
				   struct hc_err *err)
{
	int r = hc_gossip_keyring_file_holds(s->keyring_path, key);

	if (r == 1)
		return 0;
	if (r == 0) {
		hc_err_set(err, -EEXIST, "%s holds another cluster's key: remove it to join the "
			   "cluster of this join token (or the key was rotated: ask a "
			   "member for a new join token)", s->keyring_path);
		return -EEXIST;
	}
	if (r != -ENOENT) {
		hc_err_set(err, r, "cannot read %s: %s", s->keyring_path,
			   r == -EINVAL ? "not a keyring file" : strerror(-r));
		return r;
	}
	r = hc_gossip_keyring_file_create(s->keyring_path, key);
	if (r < 0)
		hc_err_set(err, r, "cannot write %s: %s", s->keyring_path, strerror(-r));
	return r;
}

/* A cluster's first node: a new key in the state dir. */
static int make_cluster_key(struct daemon_secrets *s, struct hc_err *err)
{
	char key[HC_GOSSIP_KEY_B64_MAX];
	int r = hc_gossip_key_generate(key);

	if (r == 0)
		r = hc_gossip_keyring_file_create(s->keyring_path, key);
	explicit_bzero(key, sizeof(key));
	if (r < 0) {
		hc_err_set(err, r, "cannot write the cluster key to %s: %s", s->keyring_path,
			   strerror(-r));
		return r;
	}
	s->made_key = true;
	return 0;
}

/* Which key gossip uses; fills gc->keyring_file when it is the state
 * dir's, and s->key with the primary key (for the API token). */
static int settle_gossip_key(const struct hc_daemon_config *cfg, struct daemon_secrets *s,
			     struct hc_gossip_config *gc, struct hc_err *err)
{
	bool have_file = access(s->keyring_path, F_OK) == 0;
	int r;

	if (cfg->encrypt_key) {
		snprintf(s->key, sizeof(s->key), "%s", cfg->encrypt_key);
		return 0;
	}
	if (cfg->keyring_file) {
		r = hc_gossip_keyring_file_primary(cfg->keyring_file, s->key);
		if (r < 0)
			hc_err_set(err, r, "--cluster-keyring %s: %s", cfg->keyring_file,
				   r == -ENOENT ? "no such file" : "not a keyring file");
		return r;
	}
	if (s->join_key[0]) {
		r = keyring_from_join_token(s, s->join_key, err);
	} else if (!have_file && cfg->njoin) {
		hc_err_set(err, -ENOKEY,
			   "joining %s needs the cluster's key: give --join-token (what "
			   "`hypercore cluster join-token` prints on a member), "
			   "--cluster-encrypt or --cluster-keyring, or --cluster-insecure "
			   "for a plaintext cluster", cfg->join[0]);
		return -ENOKEY;
	} else {
		r = have_file ? 0 : make_cluster_key(s, err);
	}
	if (r == 0 && (r = hc_gossip_keyring_file_primary(s->keyring_path, s->key)) < 0)
		hc_err_set(err, r, "%s is not a keyring file (remove it to make a new cluster "
			   "key)", s->keyring_path);
	if (r == 0)
		gc->keyring_file = s->keyring_path;
	return r;
}

int hc_daemon_secrets_gossip(const struct hc_daemon_config *cfg, struct daemon_secrets *s,
			     struct hc_gossip_config *gc, struct hc_err *err)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->state_dir = cfg->state_dir;
	if ((r = check_combinations(cfg, err)) < 0 ||
	    (r = state_path(cfg, HC_DAEMON_KEYRING_FILE, s->keyring_path, sizeof(s->keyring_path),
			    err)) < 0)
		return r;
	if (cfg->join_token &&
	    (hc_auth_join_token_parse(cfg->join_token, s->join_key, s->join_admin) < 0 ||
	     hc_gossip_key_check(s->join_key) < 0)) {
		hc_err_set(err, -EINVAL, "invalid --join-token: give the string `hypercore cluster "
			   "join-token` prints on a member");
		return -EINVAL;
	}
	if (cfg->cluster_insecure) {
		s->insecure = true;
		s->gossip_bind = cfg->cluster_bind_addr;
		return 0;
	}
	return settle_gossip_key(cfg, s, gc, err);
}

/* The state dir's token file: the join token's token, else one derived
 * from the cluster key (nodes given the same key agree), else a random
 * one. An existing file is kept; one of another cluster is an error. */
static int settle_token_file(struct daemon_secrets *s, const char *path, struct hc_err *err)
{
	char token[HC_AUTH_TOKEN_MAX + 1];
	struct hc_auth *held;
	int r;

	if (access(path, F_OK) == 0) {
		if (!s->join_admin[0])
			return 0;
		held = hc_auth_load(path, err);
		if (!held)
			return -EINVAL;
		r = hc_auth_holds(held, s->join_admin) ? 0 : -EEXIST;
		hc_auth_free(held);
		if (r < 0)
			hc_err_set(err, r, "%s holds another cluster's API token: remove it to "
				   "join the cluster of this join token", path);
		return r;
	}
	if (s->join_admin[0])
		r = snprintf(token, sizeof(token), "%s", s->join_admin) < 0 ? -EINVAL : 0;
	else if (s->key[0])
		r = hc_auth_token_from_key(s->key, token);
	else
		r = hc_auth_token_generate(token);
	if (r == 0)
		r = hc_auth_token_file_create(path, token);
	explicit_bzero(token, sizeof(token));
	if (r < 0)
		hc_err_set(err, r, "cannot write the API token to %s: %s", path, strerror(-r));
	else
		s->wrote_token = true;
	return r;
}

int hc_daemon_secrets_api(const struct hc_daemon_config *cfg, struct daemon_secrets *s,
			  struct hc_auth **out, struct hc_err *err)
{
	int r;

	*out = NULL;
	if (cfg->api_auth_none) {
		s->api_open = true;
		s->token_path[0] = '\0';
		return 0;
	}
	if (cfg->api_token_file) {
		snprintf(s->token_path, sizeof(s->token_path), "%s", cfg->api_token_file);
	} else {
		r = state_path(cfg, HC_AUTH_TOKEN_FILE, s->token_path, sizeof(s->token_path),
			       err);
		if (r == 0)
			r = settle_token_file(s, s->token_path, err);
		if (r < 0)
			return r;
	}
	*out = hc_auth_load(s->token_path, err);
	return *out ? 0 : -EINVAL;
}

void hc_daemon_secrets_clear(struct daemon_secrets *s)
{
	explicit_bzero(s->key, sizeof(s->key));
	explicit_bzero(s->join_key, sizeof(s->join_key));
	explicit_bzero(s->join_admin, sizeof(s->join_admin));
}

void hc_daemon_secrets_report(const struct daemon_secrets *s)
{
	if (s->made_key)
		hc_log(HC_LOG_INFO, "made a new cluster key in %s: other nodes join with the "
				    "string `hypercore cluster join-token --state-dir %s` prints",
		       s->keyring_path, s->state_dir);
	if (s->wrote_token)
		hc_log(HC_LOG_INFO, "API token written to %s (`hypercore cluster api-token` "
				    "prints it)", s->token_path);
	if (s->insecure)
		hc_log(HC_LOG_WARN, "gossip is plaintext (--cluster-insecure): anyone who reaches "
				    "%s can join the cluster, read spawn requests and forge states",
		       s->gossip_bind);
	if (s->api_open)
		hc_log(HC_LOG_WARN, "the gRPC and HTTP APIs take no token (--api-auth none): "
				    "anyone who reaches them controls this node");
}
