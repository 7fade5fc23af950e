/* The node agent process; see daemon.h. */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "daemon"
#include "addr/addr.h"
#include "api/api.h"
#include "cluster/cluster.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"

struct daemon {
	struct hc_loop *loop;
	struct hc_metrics *metrics;
	struct hc_cluster *cluster;
	struct hc_api *api;
	double start_time; /* unix seconds */
	long clock_ticks;
	long page_size;
};

static int mkdir_p(char *path, mode_t mode)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, mode) < 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int hc_daemon_prepare_state_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	char *copy;
	int r, fd;

	if (!dir || !*dir) {
		snprintf(err, errlen, "--state-dir is empty");
		return -EINVAL;
	}
	copy = strdup(dir);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r = mkdir_p(copy, 0755);
	free(copy);
	if (r < 0 || stat(dir, &st) < 0) {
		r = r < 0 ? r : -errno;
		snprintf(err, errlen, "cannot create state dir %s: %s", dir, strerror(-r));
		return r;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "state dir %s is not a directory", dir);
		return -ENOTDIR;
	}
	/* access(2) says yes to root for nearly everything; an unnamed file
	 * proves we can really write here (read-only mounts, full disks). */
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR) {
		r = -errno;
		snprintf(err, errlen, "cannot write in state dir %s: %s", dir, strerror(-r));
		return r;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* ---- process metrics (the standard process_* family) ---- */

static void collect_process(struct hc_metrics_writer *w, void *arg)
{
	struct daemon *d = arg;
	unsigned long utime = 0, stime = 0;
	long rss_pages = 0, vsize_pages = 0;
	char buf[1024];
	FILE *f;

	const char *build[] = { "version", HC_VERSION, "revision", HC_GIT_REV, NULL };

	hc_metrics_family(w, "hypercore_build_info", "gauge",
			  "Always 1; the labels say which build runs.");
	hc_metrics_sample(w, "hypercore_build_info", build, 1);

	f = fopen("/proc/self/stat", "re");
	if (f) {
		/* Fields 14 and 15 (utime, stime) follow the parenthesised comm,
		 * which may itself contain spaces: parse from the last ')'. */
		if (fgets(buf, sizeof(buf), f)) {
			char *p = strrchr(buf, ')');

			if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
					&utime, &stime) != 2)
				utime = stime = 0;
		}
		fclose(f);
	}
	f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%ld %ld", &vsize_pages, &rss_pages) != 2)
			vsize_pages = rss_pages = 0;
		fclose(f);
	}
	hc_metrics_family(w, "process_cpu_seconds_total", "counter",
			  "User and system CPU time spent, in seconds.");
	hc_metrics_sample(w, "process_cpu_seconds_total", NULL,
			  (double)(utime + stime) / (double)d->clock_ticks);
	hc_metrics_family(w, "process_resident_memory_bytes", "gauge",
			  "Resident memory size in bytes.");
	hc_metrics_sample(w, "process_resident_memory_bytes", NULL,
			  (double)rss_pages * (double)d->page_size);
	hc_metrics_family(w, "process_virtual_memory_bytes", "gauge",
			  "Virtual memory size in bytes.");
	hc_metrics_sample(w, "process_virtual_memory_bytes", NULL,
			  (double)vsize_pages * (double)d->page_size);
	hc_metrics_family(w, "process_start_time_seconds", "gauge",
			  "Start time of the process since the Unix epoch, in seconds.");
	hc_metrics_sample(w, "process_start_time_seconds", NULL, d->start_time);
}

static void collect_cluster(struct hc_metrics_writer *w, void *arg)
{
	struct daemon *d = arg;

	hc_metrics_family(w, "hypercore_workload_count", "gauge",
			  "Workloads running on this node.");
	hc_metrics_sample(w, "hypercore_workload_count", NULL,
			  (double)hc_cluster_local_workloads(d->cluster));
}

/* ---- signals ---- */

static void on_stop_signal(struct hc_loop *loop, int signo, void *arg)
{
	(void)arg;
	hc_log(HC_LOG_INFO, "%s: shutting down", strsignal(signo));
	hc_loop_stop(loop);
}

static void on_reload_signal(struct hc_loop *loop, int signo, void *arg)
{
	(void)loop;
	(void)signo;
	(void)arg;
	/* Reloadable pieces (TLS certificates, policy files, the keyring)
	 * hook in here as they arrive; flags need a restart. */
	hc_log(HC_LOG_INFO, "SIGHUP: nothing reloadable is configured");
}

static int watch_signals(struct hc_loop *loop, char *err, size_t errlen)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	int r;

	/* A client that hangs up mid-reply must not kill the agent. */
	sigaction(SIGPIPE, &ign, NULL);
	if ((r = hc_loop_watch_signal(loop, SIGINT, on_stop_signal, NULL)) < 0 ||
	    (r = hc_loop_watch_signal(loop, SIGTERM, on_stop_signal, NULL)) < 0 ||
	    (r = hc_loop_watch_signal(loop, SIGHUP, on_reload_signal, NULL)) < 0) {
		snprintf(err, errlen, "cannot watch signals: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* ---- run ---- */

static void daemon_fini(struct daemon *d)
{
	hc_api_free(d->api);
	hc_cluster_free(d->cluster);
	hc_metrics_free(d->metrics);
	hc_loop_free(d->loop);
}

int hc_daemon_run(const struct hc_daemon_config *cfg, char *err, size_t errlen)
{
	struct hc_cluster_config ccfg = { .state_dir = cfg->state_dir, .base_url = cfg->base_url };
	struct hc_api_config acfg;
	struct daemon d = { 0 };
	struct timespec now;
	char why[256];
	int r;

	/* Check every input before starting anything. */
	if (hc_addr_parse(cfg->grpc_bind_addr, true, &acfg.grpc_addr, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "invalid --grpc-bind-addr %s: %s", cfg->grpc_bind_addr, why);
		return -1;
	}
	if (hc_addr_parse(cfg->http_bind_addr, true, &acfg.http_addr, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "invalid --http-bind-addr %s: %s", cfg->http_bind_addr, why);
		return -1;
	}
	if (hc_daemon_prepare_state_dir(cfg->state_dir, err, errlen) < 0)
		return -1;

	clock_gettime(CLOCK_REALTIME, &now);
	d.start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	d.clock_ticks = sysconf(_SC_CLK_TCK);
	d.page_size = sysconf(_SC_PAGESIZE);
	d.loop = hc_loop_new(NULL, NULL);
	d.metrics = hc_metrics_new();
	if (!d.loop || !d.metrics) {
		snprintf(err, errlen, "cannot start the event loop: %s", strerror(errno));
		goto fail;
	}
	/* Before any thread exists (gRPC starts several), so all inherit the
	 * blocked mask and signals arrive only through the loop. */
	if (watch_signals(d.loop, err, errlen) < 0)
		goto fail;
	d.cluster = hc_cluster_new(d.loop, &ccfg, err, errlen);
	if (!d.cluster)
		goto fail;
	d.api = hc_api_new(d.loop, d.cluster, d.metrics, &acfg, err, errlen);
	if (!d.api)
		goto fail;
	if (hc_metrics_register(d.metrics, collect_process, &d) < 0 ||
	    hc_metrics_register(d.metrics, collect_cluster, &d) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	hc_log(HC_LOG_INFO, "hypercore %s ready: node %s, gRPC port %d, HTTP port %d", HC_VERSION,
	       hc_cluster_node_id(d.cluster), hc_api_grpc_port(d.api), hc_api_http_port(d.api));
	r = hc_loop_run(d.loop);
	if (r < 0)
		hc_log(HC_LOG_ERROR, "event loop failed: %s", strerror(-r));
	daemon_fini(&d);
	hc_log(HC_LOG_INFO, "stopped");
	return 0;
fail:
	daemon_fini(&d);
	return -1;
}
