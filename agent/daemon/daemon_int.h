/* Private pieces of the agent process (agent/daemon). */
#ifndef HC_DAEMON_INT_H
#define HC_DAEMON_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth/auth.h"
#include "daemon/daemon.h"
#include "runtime/runtime.h"

struct hc_loop;
struct hc_metrics;

/* The data plane as the agent runs it: loaded at start, host addresses and
 * static backends refreshed on a timer, local workloads attached and their
 * ports published as node ports when the runtime reports them. */
struct daemon_dataplane;

/* NULL with a reason in err when the data plane cannot start. */
struct daemon_dataplane *hc_daemon_dataplane_start(struct hc_loop *loop, struct hc_metrics *metrics,
						const struct hc_daemon_config *cfg,
						struct hc_err *err);

/* The runtime's running workloads changed (hc_runtime_running_fn). */
void hc_daemon_dataplane_on_running(void *arg, const struct hc_runtime_running *list, size_t n);

/* hc_runtime_sandbox_fn: attaches TC (isolated, with the spec's egress
 * limit) to a new sandbox's veth before its container is created; a failure
 * fails the spawn. Safe on any thread (the cluster's job threads call it). */
int hc_daemon_dataplane_on_sandbox(void *arg, const struct hc_runtime_sandbox *sb,
				   struct hc_err *err);

/* The maps the cluster keeps in sync. */
struct hc_dpmaps *hc_daemon_dataplane_maps(struct daemon_dataplane *dd);
/* The beacon capability of how node ports are served: "xdp-native",
 * "xdp-generic" or "tc". */
const char *hc_daemon_dataplane_capability(struct daemon_dataplane *dd);

/* Releases the agent's handles; programs and maps stay attached and pinned
 * so traffic keeps flowing until the next agent. NULL is fine. */
void hc_daemon_dataplane_stop(struct daemon_dataplane *dd);

/* ---- secrets (daemon_secrets.c) ---- */

struct hc_auth;
struct hc_gossip_config;

/* What the agent's secrets settled to; keys are wiped by
 * hc_daemon_secrets_clear once the modules have what they need. */
struct daemon_secrets {
	const char *state_dir;
	char keyring_path[PATH_MAX]; /* the state dir's cluster keyring */
	char token_path[PATH_MAX];   /* the API token file; "" with --api-auth none */
	char key[64];                /* the gossip primary key (base64); "" if plaintext */
	char join_key[64];           /* from --join-token */
	char join_admin[HC_AUTH_TOKEN_MAX + 1];
	/* Told by hc_daemon_secrets_report once the agent is ready: a start
	 * that fails says only why, on one line. */
	bool made_key, wrote_token, insecure, api_open;
	const char *gossip_bind; /* for the --cluster-insecure warning */
};

/* Settles gossip encryption: the given key or keyring, a join token's key,
 * the state dir's keyring, or (first node) a new key written there; none
 * only with --cluster-insecure. Fills gc->keyring_file when the state dir's
 * keyring is used. 0, or -errno with a one-line reason in err. */
int hc_daemon_secrets_gossip(const struct hc_daemon_config *cfg, struct daemon_secrets *s,
			     struct hc_gossip_config *gc, struct hc_err *err);

/* Settles the API tokens (after hc_daemon_secrets_gossip): the token file
 * is made in the state dir on first start, and loaded. *out is NULL with
 * --api-auth none. 0, or -errno with a reason in err. */
int hc_daemon_secrets_api(const struct hc_daemon_config *cfg, struct daemon_secrets *s,
			  struct hc_auth **out, struct hc_err *err);

void hc_daemon_secrets_clear(struct daemon_secrets *s);

/* Logs what settling the secrets did or gave up (a new key or token file,
 * --cluster-insecure, --api-auth none); called once the agent is ready. */
void hc_daemon_secrets_report(const struct daemon_secrets *s);

#endif /* HC_DAEMON_INT_H */
