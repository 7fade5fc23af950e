/*
 * API tokens and join tokens: what a caller must show to use a node's APIs,
 * and the one string that carries a cluster's secrets to a joining node.
 *
 * A node accepts the admin tokens of its token file (one per line; more
 * than one while a token is rotated) and, for each, a read-only token
 * derived from it (HMAC-SHA256), so a read-only token needs no file of its
 * own and changes when its admin token does. Tokens are compared in
 * constant time. A leaf module: files and OpenSSL only.
 */
#ifndef HC_AUTH_H
#define HC_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"

#define HC_AUTH_TOKEN_FILE "api-token"   /* in the state dir */
#define HC_AUTH_TOKEN_MIN 16             /* shorter tokens are refused */
#define HC_AUTH_TOKEN_MAX 128            /* characters, without the NUL */
#define HC_AUTH_MAX_TOKENS 8             /* admin tokens in one file */
#define HC_AUTH_READ_ONLY_PREFIX "ro-"

enum hc_auth_role {
	HC_AUTH_DENIED,    /* no token, or not one of ours */
	HC_AUTH_READ_ONLY, /* list, logs, members, metrics */
	HC_AUTH_ADMIN,     /* everything */
};

/* "read-only", "admin" or "denied". */
const char *hc_auth_role_name(enum hc_auth_role role);

/* A new admin token: 64 hex digits of 32 random bytes. 0 or -errno. */
int hc_auth_token_generate(char out[HC_AUTH_TOKEN_MAX + 1]);

/* The admin token that nodes given the same cluster key derive from it
 * (HMAC-SHA256 of a fixed label under the key's base64 text, in hex), so
 * that nodes started with the same --cluster-encrypt agree on it without a
 * join token. 0 or -errno. */
int hc_auth_token_from_key(const char *key_b64, char out[HC_AUTH_TOKEN_MAX + 1]);

/* The read-only token that goes with admin: "ro-" and 64 hex digits. */
int hc_auth_read_only_token(const char *admin, char out[HC_AUTH_TOKEN_MAX + 1]);

/* 0 if tok is usable as a token (HC_AUTH_TOKEN_MIN..MAX printable ASCII
 * characters, no spaces), else -EINVAL. */
int hc_auth_token_check(const char *tok);

/* ---- token files ---- */

/* Creates the token file at path holding token, mode 0600, atomically;
 * -EEXIST if it exists (never replaced). */
int hc_auth_token_file_create(const char *path, const char *token);

/* The accepted admin tokens of a token file: one per line, blank lines
 * and lines starting with '#' skipped, the first is the one this node
 * sends. Refused (with a reason in err) when missing, empty, holding a
 * malformed token, or readable by group or others. */
struct hc_auth;
struct hc_auth *hc_auth_load(const char *path, struct hc_err *err);
void hc_auth_free(struct hc_auth *auth);

/* The token this node sends to other nodes (the file's first). */
const char *hc_auth_token(const struct hc_auth *auth);

/* 1 if the file holds token, else 0. */
bool hc_auth_holds(const struct hc_auth *auth, const char *token);

/* What the bearer of token may do; NULL or "" is denied. */
enum hc_auth_role hc_auth_check(const struct hc_auth *auth, const char *token);

/* The token of an HTTP Authorization header or gRPC authorization
 * metadata value: "Bearer <token>" (scheme case-insensitive), copied into
 * out. NULL when the value is missing or of another scheme. */
const char *hc_auth_bearer(const char *value, char out[HC_AUTH_TOKEN_MAX + 1]);

/* ---- join tokens ---- */

/* "hcjoin1.<gossip key, base64>.<admin token>": what `hypercore cluster
 * join-token` prints and `--join-token` takes. */
#define HC_AUTH_JOIN_PREFIX "hcjoin1."
#define HC_AUTH_JOIN_MAX 256

int hc_auth_join_token_format(const char *key_b64, const char *admin, char *out, size_t size);

/* Splits a join token into its key (base64, up to 44 characters) and
 * admin token. -EINVAL for anything malformed; the key is not checked
 * beyond its alphabet (the gossip module does that). */
int hc_auth_join_token_parse(const char *s, char key_b64[64], char admin[HC_AUTH_TOKEN_MAX + 1]);

#endif /* HC_AUTH_H */
