/*
 * The node agent process (`hypercore cluster`): checks its configuration,
 * starts every module on one event loop, and runs until SIGINT or SIGTERM.
 */
#ifndef HC_DAEMON_H
#define HC_DAEMON_H

#include <stddef.h>

struct hc_daemon_config {
	const char *grpc_bind_addr; /* "HOST:PORT" */
	const char *http_bind_addr;
	const char *state_dir; /* created if missing */
	const char *base_url;  /* workloads answer at <id>.<base_url> */
};

/*
 * Runs the agent in the calling thread, which must be the process's only
 * thread so far (signals are blocked before any other starts). Returns 0
 * after a clean shutdown, or -1 with a one-line reason in err if it could not
 * start; then nothing was left running or listening.
 */
int hc_daemon_run(const struct hc_daemon_config *cfg, char *err, size_t errlen);

/* Creates dir (and parents) if missing and checks that files can be created
 * in it. Returns 0 or -errno with a reason in err. */
int hc_daemon_prepare_state_dir(const char *dir, char *err, size_t errlen);

#endif /* HC_DAEMON_H */
