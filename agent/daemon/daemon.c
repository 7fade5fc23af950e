/* The node agent process; see daemon.h. */
#include "daemon/daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "daemon"
#include "addr/addr.h"
#include "api/api.h"
#include "auth/auth.h"
#include "base/base.h"
#include "cluster/cluster.h"
#include "ibrl/ibrl.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "daemon/daemon_int.h"
#include "proxy/proxy.h"
#include "runtime/runtime.h"

#define LEAVE_LIMIT_MS 10000
#define CONTAINERD_STOP_MS 10000
#define WATCH_INTERVAL_MS 2000

struct daemon {
	struct hc_loop *loop;
	const char *policy_path; /* --cluster-policy, re-read on SIGHUP */
	bool stopping;
	bool draining; /* after the leave: the proxy's exchanges end, then the loop */
	uint64_t drain_until_ms;
	unsigned drain_ms;
	struct hc_metrics *metrics;
	struct hc_cluster *cluster;
	struct hc_api *api;
	struct hc_ibrl_identity *identity; /* the node key; outlives the cluster */
	struct hc_containerd *containerd; /* NULL with --containerd-socket */
	struct hc_runtime_watch *watch;
	struct hc_runtime *runtime; /* one CRI client, shared by the cluster's job threads */
	struct daemon_dataplane *dataplane; /* NULL with --no-dataplane */
	struct hc_proxy *proxy;             /* NULL with --no-proxy or --no-dataplane */
	uint64_t proxy_timer;
	char token_path[PATH_MAX]; /* the API token file, re-read on SIGHUP; "" for none */
	double start_time; /* unix seconds */
	long clock_ticks;
	rlim_t nofile; /* the descriptor limit, raised at start */
	long page_size;
};

int hc_daemon_prepare_state_dir(const char *dir, struct hc_err *err)
{
	struct stat st;
	int r, fd;

	if (!dir || !*dir) {
		hc_err_set(err, -EINVAL, "--state-dir is empty");
		return -EINVAL;
	}
	r = hc_mkdir_p(dir, 0755);
	if (r < 0 || stat(dir, &st) < 0) {
		r = r < 0 ? r : -errno;
		hc_err_set(err, r, "cannot create state dir %s: %s", dir, strerror(-r));
		return r;
	}
	if (!S_ISDIR(st.st_mode)) {
		hc_err_set(err, -ENOTDIR, "state dir %s is not a directory", dir);
		return -ENOTDIR;
	}
	/* access(2) says yes to root for nearly everything; an unnamed file
	 * proves we can really write here (read-only mounts, full disks). */
	fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR) {
		r = -errno;
		hc_err_set(err, r, "cannot write in state dir %s: %s", dir, strerror(-r));
		return r;
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* ---- process metrics (the standard process_* family) ---- */

/* The heap as malloc sees it, so that an operator can tell live heap growth
 * (a leak, a structure that is never pruned) from memory the allocator keeps
 * but nobody uses (free chunks inside its arenas), which RSS alone mixes up.
 * mallinfo2 walks every arena's free lists under its lock, once a scrape. In
 * an ASan build malloc is ASan's and these read near 0. */
static void collect_heap(struct hc_metrics_writer *w)
{
	struct mallinfo2 mi = mallinfo2();

	hc_metrics_family(w, "hypercore_heap_bytes", "gauge",
			  "Bytes the agent has allocated and not freed (malloc's in-use chunks, "
			  "mmapped ones included).");
	hc_metrics_sample(w, "hypercore_heap_bytes", NULL, (double)(mi.uordblks + mi.hblkhd));
	hc_metrics_family(w, "hypercore_heap_free_bytes", "gauge",
			  "Bytes malloc holds free in its arenas, resident or not: no object uses them.");
	hc_metrics_sample(w, "hypercore_heap_free_bytes", NULL, (double)mi.fordblks);
}

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
	collect_heap(w);
}

/* ---- signals ---- */

#define DRAIN_POLL_MS 50
#define DEFAULT_DRAIN_MS 10000

static int64_t check_drained(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct daemon *d = arg;
	unsigned long open = hc_proxy_open_conns(d->proxy);

	(void)id;
	if (open && hc_loop_now_ms(loop) < d->drain_until_ms)
		return DRAIN_POLL_MS;
	if (open)
		hc_log(HC_LOG_WARN, "proxy: %lu connections still open after %u s (tunnels, or "
				    "exchanges not done): closing them",
		       open, d->drain_ms / 1000);
	else
		hc_log(HC_LOG_INFO, "proxy: every exchange in flight answered");
	hc_loop_stop(loop);
	return HC_LOOP_TIMER_DONE;
}

/* Out of the cluster (or past the time to leave): peers route around us
 * now, so the proxy stops accepting and its exchanges in flight end before
 * the loop stops (a second signal stops at once). */
static void drain_then_stop(struct daemon *d)
{
	if (d->draining)
		return;
	d->draining = true;
	if (!d->proxy) {
		hc_loop_stop(d->loop);
		return;
	}
	hc_log(HC_LOG_INFO, "proxy: accepting no more; waiting up to %u s for %lu connections",
	       d->drain_ms / 1000, hc_proxy_open_conns(d->proxy));
	hc_proxy_drain(d->proxy);
	d->drain_until_ms = hc_loop_now_ms(d->loop) + d->drain_ms;
	if (!hc_loop_add_timer(d->loop, 0, check_drained, d))
		hc_loop_stop(d->loop);
}

static void left_cluster(void *arg)
{
	drain_then_stop(arg);
}

static int64_t leave_overdue(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct daemon *d = arg;

	(void)loop;
	(void)id;
	if (!d->draining) {
		hc_log(HC_LOG_WARN, "leave did not finish in time: stopping anyway");
		drain_then_stop(d);
	}
	return HC_LOOP_TIMER_DONE;
}

/* First signal: leave the cluster gracefully, then stop. A second one
 * stops at once. */
static void on_stop_signal(struct hc_loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping) {
		hc_log(HC_LOG_INFO, "%s again: stopping now", strsignal(signo));
		hc_loop_stop(loop);
		return;
	}
	d->stopping = true;
	hc_log(HC_LOG_INFO, "%s: leaving the cluster, then shutting down", strsignal(signo));
	hc_loop_add_timer(loop, LEAVE_LIMIT_MS, leave_overdue, d);
	hc_cluster_leave(d->cluster, left_cluster, d);
}

/* A token file being rotated holds the old token and the new one: both
 * work until the old line goes. A file that no longer loads changes
 * nothing. */
static void reload_api_tokens(struct daemon *d)
{
	struct hc_auth *auth;
	struct hc_err why;

	if (!d->token_path[0])
		return;
	auth = hc_auth_load(d->token_path, &why);
	if (!auth) {
		hc_log(HC_LOG_ERROR, "SIGHUP: keeping the API tokens: %s", why.msg);
		return;
	}
	hc_cluster_set_api_token(d->cluster, hc_auth_token(auth));
	hc_api_set_auth(d->api, auth);
	hc_log(HC_LOG_INFO, "SIGHUP: API tokens reloaded from %s", d->token_path);
}

/* A policy file that no longer parses changes nothing: spawns keep the
 * policy they had, and the error says which field. */
static void reload_policy(struct daemon *d)
{
	struct hc_ibrl_policy *p;
	struct hc_err why;

	if (!d->policy_path)
		return;
	if (hc_ibrl_policy_load(d->policy_path, &p, &why) < 0) {
		hc_log(HC_LOG_ERROR, "SIGHUP: keeping the placement policy: %s", why.msg);
		return;
	}
	hc_log(HC_LOG_INFO, "SIGHUP: placement policy %s (%s) reloaded from %s", p->name,
	       p->mode == HC_IBRL_MODE_ENFORCE ? "enforce" : "permissive", d->policy_path);
	hc_cluster_set_policy(d->cluster, p);
}

static void on_reload_signal(struct hc_loop *loop, int signo, void *arg)
{
	struct daemon *d = arg;
	struct hc_err why;

	(void)loop;
	(void)signo;
	/* Reloadable pieces: tokens, the placement policy, the certificate;
	 * flags need a restart. */
	reload_api_tokens(d);
	reload_policy(d);
	if (d->proxy && hc_proxy_reload_tls(d->proxy, &why) == 0)
		hc_log(HC_LOG_INFO, "SIGHUP: TLS certificate reloaded");
	else if (d->proxy && why.code != -ENOENT)
		hc_log(HC_LOG_ERROR, "SIGHUP: keeping the old certificate: %s", why.msg);
	else if (!d->policy_path)
		hc_log(HC_LOG_INFO, "SIGHUP: nothing reloadable is configured");
}

/* ---- proxy ---- */

#define PROXY_REFRESH_MS 1000

static int64_t refresh_proxy(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct daemon *d = arg;

	(void)loop;
	(void)id;
	hc_proxy_refresh(d->proxy);
	return PROXY_REFRESH_MS;
}

/* Descriptors kept for everything but the proxy: gossip streams (at most
 * 128), API connections (512 HTTP, gRPC's), CRI channels, job threads'
 * sockets, log files, BPF objects. */
#define RESERVED_FDS 2048

/* Raises the soft descriptor limit to the hard one (the proxy alone can
 * want tens of thousands; select() is used nowhere) and returns it. */
static rlim_t raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t old = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			hc_log(HC_LOG_WARN, "cannot raise the descriptor limit from %llu: %s",
			       (unsigned long long)old, strerror(errno));
			rl.rlim_cur = old;
		}
	}
	return rl.rlim_cur == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_cur;
}

/* The proxy's worker count as hc_proxy_start picks it (--proxy-workers, or
 * one per online CPU, 64 at most). */
static unsigned proxy_workers(const struct hc_daemon_config *cfg)
{
	long n = cfg->proxy_workers ? (long)cfg->proxy_workers : sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* How many descriptors the proxy's connections may hold at once so that the
 * rest of the agent always has RESERVED_FDS (half the limit when it is
 * small), after the pipes its workers may hold (proxy.h). */
static unsigned proxy_fd_budget(rlim_t nofile, unsigned workers)
{
	rlim_t rest = nofile <= 2 * RESERVED_FDS ? nofile / 2 : nofile - RESERVED_FDS;
	rlim_t pipes = (rlim_t)workers * HC_PROXY_PIPE_FDS;

	/* a small limit: the connections get half of what is left */
	rest = rest <= 2 * pipes ? rest / 2 : rest - pipes;
	return rest > UINT32_MAX ? UINT32_MAX : (unsigned)rest;
}

static int start_proxy(struct daemon *d, const struct hc_daemon_config *cfg, struct hc_err *err)
{
	struct hc_proxy_config pcfg = {
		.pin_dir = cfg->bpf_pin_dir,
		.base_url = cfg->base_url,
		.bind_host = cfg->proxy_bind_addr,
		.workers = cfg->proxy_workers,
		.forwarding = (enum hc_proxy_forwarding)cfg->proxy_forwarding,
		.forwarded_headers = !cfg->proxy_no_forwarded_headers,
		.backend_reuse = !cfg->proxy_no_backend_reuse,
		.head_timeout_ms = cfg->proxy_head_timeout_ms,
		.idle_timeout_ms = cfg->proxy_idle_timeout * 1000u,
		.tunnel_idle_timeout_ms = cfg->proxy_tunnel_idle_timeout * 1000u,
		.max_conns = cfg->proxy_max_conns,
		.max_conns_per_ip = cfg->proxy_max_conns_per_ip,
		.max_fds = proxy_fd_budget(d->nofile, proxy_workers(cfg)),
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.tls_ticket_rotate_s = cfg->tls_ticket_rotate_s,
	};

	d->proxy = hc_proxy_start(&pcfg, err);
	if (!d->proxy)
		return err->code;
	hc_log(HC_LOG_INFO, "proxy: at most %u connections over all ports forwarding, or %u "
			    "waiting for their head (%u descriptors: what the limit leaves after "
			    "%d for the rest of the agent)",
	       pcfg.max_fds / hc_proxy_fds_per_conn(d->proxy), pcfg.max_fds, pcfg.max_fds,
	       RESERVED_FDS);
	d->proxy_timer = hc_loop_add_timer(d->loop, PROXY_REFRESH_MS, refresh_proxy, d);
	if (!d->proxy_timer || hc_proxy_register_metrics(d->proxy, d->metrics) < 0)
		return hc_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

static int watch_signals(struct daemon *d, struct hc_err *err)
{
	struct sigaction ign = { .sa_handler = SIG_IGN };
	struct hc_loop *loop = d->loop;
	int r;

	/* A client that hangs up mid-reply must not kill the agent. */
	sigaction(SIGPIPE, &ign, NULL);
	if ((r = hc_loop_watch_signal(loop, SIGINT, on_stop_signal, d)) < 0 ||
	    (r = hc_loop_watch_signal(loop, SIGTERM, on_stop_signal, d)) < 0 ||
	    (r = hc_loop_watch_signal(loop, SIGHUP, on_reload_signal, d)) < 0) {
		hc_err_set(err, r, "cannot watch signals: %s", strerror(-r));
		return r;
	}
	return 0;
}

/* ---- gossip configuration ---- */

/* The address of the interface that carries the default route, for nodes
 * bound to the wildcard address: what peers can dial. */
static int default_route_addr(struct hc_addr *out, uint16_t port)
{
	char line[256], ifname[IF_NAMESIZE] = "";
	struct ifaddrs *ifs, *ifa;
	FILE *f = fopen("/proc/net/route", "re");
	int r = -ENOENT;

	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char name[IF_NAMESIZE + 1];
			unsigned long dest;

			if (sscanf(line, "%16s %lx", name, &dest) == 2 && dest == 0) {
				snprintf(ifname, sizeof(ifname), "%.*s", IF_NAMESIZE - 1, name);
				break;
			}
		}
		fclose(f);
	}
	if (getifaddrs(&ifs) < 0)
		return -errno;
	for (ifa = ifs; ifa; ifa = ifa->ifa_next) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ifa->ifa_addr;

		if (!sin || sin->sin_family != AF_INET || !(ifa->ifa_flags & IFF_UP) ||
		    (ifa->ifa_flags & IFF_LOOPBACK))
			continue;
		if (*ifname && strcmp(ifa->ifa_name, ifname) != 0)
			continue;
		memset(out, 0, sizeof(*out));
		memcpy(&out->ss, sin, sizeof(*sin));
		((struct sockaddr_in *)&out->ss)->sin_port = htons(port);
		out->len = sizeof(*sin);
		r = 0;
		break;
	}
	freeifaddrs(ifs);
	return r;
}

struct gossip_setup {
	struct hc_addr bind, advertise;
	const char *keys[1];
};

static int gossip_config(const struct hc_daemon_config *cfg, struct gossip_setup *gs,
			 struct hc_gossip_config *gc, struct hc_err *err)
{
	struct hc_err why;

	memset(gc, 0, sizeof(*gc));
	if (hc_addr_parse(cfg->cluster_bind_addr, true, &gs->bind, &why) < 0)
		return hc_err_set(err, -EINVAL, "invalid --cluster-bind-addr %s: %s",
				  cfg->cluster_bind_addr, why.msg);
	gc->bind = gs->bind;
	if (cfg->cluster_advertise_addr) {
		if (hc_addr_parse(cfg->cluster_advertise_addr, true, &gs->advertise, &why) < 0 ||
		    hc_addr_is_any(&gs->advertise))
			return hc_err_set(err, -EINVAL, "invalid --cluster-advertise-addr %s: %s",
					  cfg->cluster_advertise_addr,
					  hc_addr_is_any(&gs->advertise) ? "a wildcard address"
					  : why.msg);
		gc->advertise = &gs->advertise;
	} else if (hc_addr_is_any(&gs->bind)) {
		if (default_route_addr(&gs->advertise, hc_addr_port(&gs->bind)) < 0)
			return hc_err_set(err, -EADDRNOTAVAIL,
					  "--cluster-bind-addr %s is a wildcard and no default "
					  "route address was found: give --cluster-advertise-addr",
					  cfg->cluster_bind_addr);
		gc->advertise = &gs->advertise;
	}
	if (cfg->encrypt_key) {
		gs->keys[0] = cfg->encrypt_key;
		gc->keys = gs->keys;
		gc->nkeys = 1;
	}
	gc->name = cfg->node_name;
	gc->keyring_file = cfg->keyring_file;
	gc->tags = cfg->tags;
	gc->ntags = cfg->ntags;
	gc->gossip_interval_ms = cfg->gossip_interval_ms;
	gc->probe_interval_ms = cfg->probe_interval_ms;
	gc->suspicion_mult = cfg->suspicion_mult;
	gc->gossip_nodes = cfg->gossip_nodes;
	gc->user_event_size_limit = cfg->user_event_size_limit;
	gc->coalesce_ms = cfg->coalesce_ms;
	return 0;
}

/* ---- runtime ---- */

/* Restarting is the orchestration's decision (agent/cluster). */
static void on_workload_exit(void *arg, const struct hc_runtime_exit *ev)
{
	struct daemon *d = arg;

	if (d->cluster)
		hc_cluster_on_exit(d->cluster, ev);
}

/* The runtime's running set changed: the cluster re-reads it. */
static void on_running(void *arg, const struct hc_runtime_running *list, size_t n)
{
	struct daemon *d = arg;

	if (d->cluster)
		hc_cluster_on_running(d->cluster, list, n);
}

/* The cluster's local workloads changed (a spawn done, a stop, an exit):
 * TC goes on new ones at once, and the watch looks again now (its gauges
 * follow), not at its next period. */
static void on_local_workloads(void *arg, const struct hc_runtime_running *list, size_t n)
{
	struct daemon *d = arg;

	if (d->dataplane)
		hc_daemon_dataplane_on_running(d->dataplane, list, n);
	hc_runtime_watch_refresh(d->watch);
}

/* A map sync changed the routes: the proxy opens new ports now rather
 * than at its next refresh. */
static void on_routes_changed(void *arg)
{
	struct daemon *d = arg;

	if (d->proxy)
		hc_proxy_refresh(d->proxy);
}

/* Starts the embedded containerd unless one was named, then the watch. */
static int start_runtime(struct daemon *d, const struct hc_daemon_config *cfg, struct hc_err *err)
{
	struct hc_runtime_config rcfg = {
		.state_dir = cfg->state_dir,
		.capacity_cpus = cfg->capacity_cpus,
		.capacity_mem_mb = cfg->capacity_mem_mb,
		.log_max_size = cfg->log_max_size,
		.log_max_files = cfg->log_max_files,
	};
	struct hc_containerd_config ccfg = {
		.state_dir = cfg->state_dir,
		.run_dir = cfg->run_dir ? cfg->run_dir : HC_RUNTIME_DEFAULT_RUN_DIR,
		.insecure_registries = cfg->insecure_registries,
		.ninsecure = cfg->ninsecure,
		.subnet = cfg->workload_subnet,
	};
	struct hc_err rerr;
	struct hc_runtime *probe;
	char lease_dir[4096], why[4200];
	int r;

	if (cfg->vm_kernel && hc_runtime_microvm_set_kernel(cfg->vm_kernel, why, sizeof(why)) < 0)
		return hc_err_set(err, -ENOENT, "%s", why);

	if (cfg->containerd_socket) {
		rcfg.socket = cfg->containerd_socket;
		probe = hc_runtime_new(&rcfg);
		r = probe ? hc_runtime_ready(probe, 5000, &rerr) : -ENOMEM;
		hc_runtime_free(probe);
		if (r < 0 && r != -EAGAIN) {
			return hc_err_set(err, r, "--containerd-socket %s: %s",
					  cfg->containerd_socket,
					  r == -ENOMEM ? "out of memory" : rerr.msg);
		}
		if (r == -EAGAIN)
			hc_log(HC_LOG_WARN, "%s", rerr.msg);
	} else {
		struct timespec now;

		/* whatever our containerd holds half-made from before it started
		 * was left by a crash: no spawn can still be making it */
		clock_gettime(CLOCK_REALTIME, &now);
		rcfg.orphans_before_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
		d->containerd = hc_containerd_start(d->loop, &ccfg, &rerr);
		if (!d->containerd)
			return hc_err_set(err, rerr.code, "%s", rerr.msg);
		rcfg.socket = hc_containerd_socket(d->containerd);
		/* its CNI leases are ours to collect and count */
		if (hc_containerd_lease_dir(cfg->state_dir, lease_dir, sizeof(lease_dir)) == 0) {
			rcfg.lease_dir = lease_dir;
			rcfg.subnet = cfg->workload_subnet;
		}
	}
	d->runtime = hc_runtime_new(&rcfg);
	if (!d->runtime)
		return hc_err_set(err, -ENOMEM, "out of memory");
	d->watch = hc_runtime_watch_start(d->loop, &rcfg,
					  cfg->watch_interval_ms ? cfg->watch_interval_ms
								 : WATCH_INTERVAL_MS,
					  on_workload_exit, d);
	if (!d->watch)
		return hc_err_set(err, errno ? -errno : -ENOMEM,
				  "cannot start the workload watch: %s", strerror(errno));
	if (hc_runtime_watch_register_metrics(d->watch, d->metrics) < 0 ||
	    (d->containerd && hc_containerd_register_metrics(d->containerd, d->metrics) < 0))
		return hc_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* ---- run ---- */

/* ---- IBRL ---- */

/* The node key (made on first start) and how peers' states are judged:
 * enforce by default when gossip is encrypted (only key holders send
 * anything, and each name's key is pinned on first sight), permissive for
 * insecure clusters, whose upstream nodes never sign. */
static int ibrl_config(struct daemon *d, const struct hc_daemon_config *cfg,
		       struct hc_cluster_config *ccfg, struct hc_err *err)
{
	int r = hc_ibrl_identity_open(cfg->state_dir, &d->identity, err);

	if (r < 0)
		return r;
	ccfg->identity = d->identity;
	ccfg->ibrl_mode = cfg->ibrl_mode ? (enum hc_cluster_ibrl_mode)(cfg->ibrl_mode - 1)
			  : cfg->cluster_insecure ? HC_CLUSTER_IBRL_PERMISSIVE
						  : HC_CLUSTER_IBRL_ENFORCE;
	ccfg->trusted_keys = cfg->trusted_keys;
	ccfg->beacon_price = cfg->beacon_price;
	ccfg->beacon_reputation = cfg->beacon_reputation;
	ccfg->beacon_endpoint = cfg->beacon_endpoint;
	return 0;
}

/* Once the agent is ready (a failed start says one thing only). */
static void log_identity(const struct daemon *d, const struct hc_daemon_config *cfg,
			 const struct hc_cluster_config *ccfg)
{
	char id[HC_IBRL_BEACON_ID_LEN + 1];

	hc_ibrl_beacon_node_id(hc_ibrl_identity_public(d->identity), id);
	hc_log(HC_LOG_INFO, "node key %s/%s: beacon id %s; peers' states: %s%s", cfg->state_dir,
	       HC_IBRL_KEY_FILE, id,
	       ccfg->ibrl_mode == HC_CLUSTER_IBRL_ENFORCE ? "signed only" : "unsigned accepted",
	       cfg->trusted_keys ? " (keys from --trusted-keys)" : " (keys pinned on first use)");
}

/* What this node really has, for the beacon: a runtime that answered at
 * start, microVMs (the VMM and guest kernel installed, and the data plane
 * that joins a VM's tap), the data plane's mode, TLS termination. */
static int set_capabilities(struct daemon *d, const struct hc_daemon_config *cfg)
{
	const char *caps[5];
	char why[512];
	size_t n = 0;

	if (d->runtime)
		caps[n++] = "container";
	if (d->runtime && d->dataplane && hc_runtime_microvm_check(why, sizeof(why)) == 0)
		caps[n++] = "vm";
	if (d->dataplane)
		caps[n++] = hc_daemon_dataplane_capability(d->dataplane);
	if (d->proxy && cfg->tls_cert)
		caps[n++] = "tls";
	return hc_cluster_set_capabilities(d->cluster, caps, n);
}

static void daemon_fini(struct daemon *d)
{
	hc_api_free(d->api);
	/* before the runtime and the maps its jobs and syncs use */
	hc_cluster_free(d->cluster);
	d->cluster = NULL;
	hc_ibrl_identity_free(d->identity);
	d->identity = NULL;
	hc_runtime_watch_stop(d->watch);
	hc_runtime_free(d->runtime); /* after the cluster's jobs ended */
	/* workloads keep running in their shims; the next agent adopts them */
	hc_containerd_stop(d->containerd, CONTAINERD_STOP_MS);
	/* the proxy's connections end with it; node ports keep flowing */
	hc_proxy_stop(d->proxy);
	/* programs and maps stay attached: traffic flows while no agent runs */
	hc_daemon_dataplane_stop(d->dataplane);
	hc_metrics_free(d->metrics);
	hc_loop_free(d->loop);
}

/*
 * glibc gives threads arenas of their own, up to 8 per CPU, and never
 * returns one: the agent's short-lived threads (pulls, spawns, gRPC) each
 * leave an arena behind whose free chunks stay resident and serve no other
 * thread (14 arenas held 2.3 MB free on 2 CPUs; a 64-CPU box could make
 * 512). As many as CPUs (the proxy runs a worker a CPU) and two more bound
 * that and leave the busy threads arenas of their own to take.
 * MALLOC_ARENA_MAX, when the operator sets it, wins (glibc has read it).
 */
static void bound_malloc_arenas(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (getenv("MALLOC_ARENA_MAX"))
		return;
	/* refused only by another allocator (a sanitizer's): it keeps its own */
	(void)mallopt(M_ARENA_MAX, (int)(cpus > 0 && cpus < 4096 ? cpus : 1) + 2);
}

#define MMAP_THRESHOLD (128 * 1024)

/*
 * Chunks of 128 KB and more get mappings of their own, always. glibc starts
 * there but raises the bar to the size of each mapped chunk freed (up to
 * 32 MB), after which the agent's transient large buffers (a map snapshot's
 * port table, push/pull states, large API answers: up to a few hundred KB,
 * a few a minute) come from the heap: each leaves a hole that small,
 * longer-lived chunks then spread over, pinning its pages after the buffer
 * is gone. Setting the bar fixes it (glibc stops moving it). It stays above
 * the proxy's 64 KB copy buffers, which a worker pools and which should not
 * cost a mapping and its page faults each.
 * MALLOC_MMAP_THRESHOLD_, when the operator sets it, wins.
 */
static void fix_mmap_threshold(void)
{
	if (getenv("MALLOC_MMAP_THRESHOLD_"))
		return;
	(void)mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
}

#define ARENA_SLACK (64 * 1024)

/*
 * A thread's arena keeps at most ARENA_SLACK of free memory at its top.
 * glibc keeps M_TOP_PAD (128 KB) there whatever the trim threshold, and
 * malloc_trim() does not touch the top of a thread's arena: so a job
 * worker that took an idle arena left it 140-156 KB resident for good,
 * which was the rest of the soak's growth (docs/operations.md). Now a free
 * that leaves the top over ARENA_SLACK gives all of it back. The cost is a
 * brk or madvise where one was not before, only when 64 KB and more come
 * free at the top at once. MALLOC_TOP_PAD_ and MALLOC_TRIM_THRESHOLD_,
 * when the operator sets them, win.
 */
static void bound_arena_slack(void)
{
	if (!getenv("MALLOC_TOP_PAD_"))
		(void)mallopt(M_TOP_PAD, 0);
	if (!getenv("MALLOC_TRIM_THRESHOLD_"))
		(void)mallopt(M_TRIM_THRESHOLD, ARENA_SLACK);
}

#define TRIM_MS 60000

/* Gives malloc's free pages back to the kernel. glibc returns only the top
 * of its main heap by itself; the free chunks that spawn and stop churn
 * leaves inside its arenas stay resident: over an hour's churn, trimming
 * took two thirds of the agent's RSS growth away (1.24 to 0.40 MiB/h;
 * docs/operations.md), and no allocation site of its own grew. One pass
 * a minute walks a few MB of free lists: well under a millisecond. Under a
 * sanitizer's allocator it finds nothing to do. */
static int64_t trim_heap(struct hc_loop *loop, uint64_t id, void *arg)
{
	(void)loop;
	(void)id;
	(void)arg;
	malloc_trim(0);
	return TRIM_MS;
}

int hc_daemon_run(const struct hc_daemon_config *cfg, struct hc_err *err)
{
	struct hc_cluster_config ccfg = { .state_dir = cfg->state_dir, .base_url = cfg->base_url,
					  .join = cfg->join, .njoin = cfg->njoin,
					  .respawn = cfg->respawn_on_node_failure,
					  .default_restart = cfg->default_restart,
					  .state_period_ms = cfg->state_period_ms,
					  .state_mode = (enum hc_cluster_state_mode)cfg->state_mode };
	struct gossip_setup gs;
	struct daemon_secrets secrets;
	struct hc_api_config acfg = { 0 };
	char gossip_at[64];
	struct daemon d = { 0 };
	struct hc_ibrl_policy *policy = NULL;
	struct hc_err why, none;
	struct timespec now;
	int r;

	if (!err)
		err = &none;
	err->code = 0;
	bound_malloc_arenas(); /* before any thread starts */
	fix_mmap_threshold();
	bound_arena_slack();
	/* Check every input before starting anything. */
	r = hc_fault_init(getenv("HYPERCORE_FAULT"), err);
	if (r < 0)
		return r;
	if (getenv("HYPERCORE_FAULT") && *getenv("HYPERCORE_FAULT"))
		hc_log(HC_LOG_WARN, "fault points armed: HYPERCORE_FAULT=%s", getenv("HYPERCORE_FAULT"));
	if (hc_addr_parse(cfg->grpc_bind_addr, true, &acfg.grpc_addr, &why) < 0)
		return hc_err_set(err, -EINVAL, "invalid --grpc-bind-addr %s: %s",
				  cfg->grpc_bind_addr, why.msg);
	if (hc_addr_parse(cfg->http_bind_addr, true, &acfg.http_addr, &why) < 0)
		return hc_err_set(err, -EINVAL, "invalid --http-bind-addr %s: %s",
				  cfg->http_bind_addr, why.msg);
	r = gossip_config(cfg, &gs, &ccfg.gossip, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < cfg->njoin; i++) {
		struct hc_addr a;

		if (hc_addr_parse(cfg->join[i], false, &a, &why) < 0)
			return hc_err_set(err, -EINVAL, "invalid join address %s: %s", cfg->join[i],
					  why.msg);
	}
	r = hc_daemon_prepare_state_dir(cfg->state_dir, err);
	if (r < 0)
		return r;
	r = hc_daemon_secrets_gossip(cfg, &secrets, &ccfg.gossip, err);
	if (r == 0)
		r = hc_daemon_secrets_api(cfg, &secrets, &acfg.auth, err);
	hc_daemon_secrets_clear(&secrets);
	if (r < 0)
		return r;
	acfg.metrics_auth = cfg->metrics_auth;
	snprintf(d.token_path, sizeof(d.token_path), "%s", secrets.token_path);
	if (cfg->cluster_policy &&
	    (r = hc_ibrl_policy_load(cfg->cluster_policy, &policy, err)) < 0)
		return r;
	d.policy_path = cfg->cluster_policy;

	clock_gettime(CLOCK_REALTIME, &now);
	d.start_time = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	d.clock_ticks = sysconf(_SC_CLK_TCK);
	d.page_size = sysconf(_SC_PAGESIZE);
	d.drain_ms = cfg->proxy_drain_timeout ? cfg->proxy_drain_timeout * 1000u : DEFAULT_DRAIN_MS;
	d.loop = hc_loop_new(NULL, NULL);
	d.metrics = hc_metrics_new();
	if (!d.loop || !d.metrics) {
		hc_err_set(err, errno ? -errno : -ENOMEM, "cannot start the event loop: %s",
			   strerror(errno));
		goto fail;
	}
	if (!hc_loop_add_timer(d.loop, TRIM_MS, trim_heap, NULL)) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	/* Before any thread exists (gRPC starts several), so all inherit the
	 * blocked mask and signals arrive only through the loop. */
	if (watch_signals(&d, err) < 0)
		goto fail;
	d.nofile = raise_fd_limit();
	if (!cfg->no_runtime && start_runtime(&d, cfg, err) < 0)
		goto fail;
	if (d.runtime) {
		ccfg.runtime = &hc_cluster_runtime_cri;
		ccfg.runtime_ctx = d.runtime;
		acfg.runtime = d.runtime;
	}
	if (ibrl_config(&d, cfg, &ccfg, err) < 0)
		goto fail;
	ccfg.on_local = on_local_workloads;
	ccfg.on_routes = on_routes_changed;
	ccfg.notify_arg = &d;
	d.cluster = hc_cluster_new(d.loop, &ccfg, err);
	if (!d.cluster)
		goto fail;
	if (policy) {
		hc_log(HC_LOG_INFO, "placement policy %s (%s) from %s", policy->name,
		       policy->mode == HC_IBRL_MODE_ENFORCE ? "enforce" : "permissive",
		       cfg->cluster_policy);
		hc_cluster_set_policy(d.cluster, policy);
		policy = NULL;
	}
	if (acfg.auth)
		hc_cluster_set_api_token(d.cluster, hc_auth_token(acfg.auth));
	d.api = hc_api_new(d.loop, d.cluster, d.metrics, &acfg, err);
	acfg.auth = NULL; /* the api's now, also if it failed */
	if (!d.api)
		goto fail;
	/* After every listener is bound: an agent that cannot start leaves the
	 * data plane as it found it. */
	if (!cfg->no_dataplane) {
		d.dataplane = hc_daemon_dataplane_start(d.loop, d.metrics, cfg, err);
		if (!d.dataplane)
			goto fail;
		hc_cluster_set_maps(d.cluster, hc_daemon_dataplane_maps(d.dataplane));
		/* every spawn of the cluster's (a spawn, a respawn, a restart) is
		 * isolated before its container exists; set before any job runs */
		if (d.runtime)
			hc_runtime_set_on_sandbox(d.runtime, hc_daemon_dataplane_on_sandbox,
						  d.dataplane);
		if (!cfg->no_proxy && start_proxy(&d, cfg, err) < 0)
			goto fail;
	}
	if (d.watch)
		hc_runtime_watch_on_running(d.watch, on_running, &d);
	if (set_capabilities(&d, cfg) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	hc_cluster_set_http_port(d.cluster, (uint16_t)hc_api_http_port(d.api));
	if (hc_cluster_start(d.cluster, err) < 0)
		goto fail;
	if (hc_metrics_register(d.metrics, collect_process, &d) < 0 ||
	    hc_cluster_register_metrics(d.cluster, d.metrics) < 0) {
		hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}

	hc_daemon_secrets_report(&secrets);
	hc_cluster_gossip_addr(d.cluster, gossip_at, sizeof(gossip_at));
	hc_log(HC_LOG_INFO,
	       "hypercore %s ready: node %s, gRPC port %d, HTTP port %d, gossip %s", HC_VERSION,
	       hc_cluster_node_id(d.cluster), hc_api_grpc_port(d.api), hc_api_http_port(d.api),
	       gossip_at);
	log_identity(&d, cfg, &ccfg);
	r = hc_loop_run(d.loop);
	if (r < 0)
		hc_log(HC_LOG_ERROR, "event loop failed: %s", strerror(-r));
	daemon_fini(&d);
	hc_log(HC_LOG_INFO, "stopped");
	return 0;
fail:
	hc_auth_free(acfg.auth); /* when the api never took it */
	hc_ibrl_policy_free(policy);
	daemon_fini(&d);
	return err->code < 0 ? err->code : -EIO;
}
