/* Private pieces of the agent process (agent/daemon). */
#ifndef HC_DAEMON_INT_H
#define HC_DAEMON_INT_H

#include <stddef.h>

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
						const struct hc_daemon_config *cfg, char *err,
						size_t errlen);

/* The runtime's running workloads changed (hc_runtime_running_fn). */
void hc_daemon_dataplane_on_running(void *arg, const struct hc_runtime_running *list, size_t n);

/* The maps the cluster keeps in sync. */
struct hc_dpmaps *hc_daemon_dataplane_maps(struct daemon_dataplane *dd);

/* Releases the agent's handles; programs and maps stay attached and pinned
 * so traffic keeps flowing until the next agent. NULL is fine. */
void hc_daemon_dataplane_stop(struct daemon_dataplane *dd);

#endif /* HC_DAEMON_INT_H */
