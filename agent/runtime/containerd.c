/*
 * The embedded containerd: its configuration (TOML, CNI conflist, registry
 * hosts, runsc wrapper), the pause image import, and supervision on the loop
 * (restart with backoff when it dies).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "containerd"
#include "base/base.h"
#include "log/log.h"
#include "loop/loop.h"
#include "metrics/metrics.h"
#include "runtime_int.h"

/* containerd's root under the state dir and its state under the run dir:
 * names of our own, not upstream's containerd's (docs/runtime.md) */
#define HC_CONTAINERD_ROOT "embedded-containerd"
#define READY_TIMEOUT_MS 20000
#define ROOT_RELEASE_MS 5000 /* a stopping containerd's database lock goes within this */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define STABLE_AFTER_MS 60000 /* a containerd up this long resets the backoff */
#define RUNSC_SHIM "containerd-shim-runsc-v1"

struct hc_containerd {
	struct hc_loop *loop;
	char *state_dir, *run_dir, *binary;
	char *root, *state; /* containerd's own root and state directories */
	char *config_path, *socket, *log_path;
	pid_t pid;
	int pidfd;
	uint64_t started_ms;
	uint64_t restart_timer;
	unsigned backoff_ms;
	unsigned restarts;
	int stopping;
};

/* ---- files ---- */

static int path_printf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int path_printf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Writes text to path atomically, so containerd never reads half a file
 * (it watches the CNI directory). */
static int write_file(const char *path, const char *text, mode_t mode)
{
	return hc_file_write_atomic(path, text, strlen(text), mode);
}

/* Paths and hosts go into TOML and JSON strings unescaped. */
static int plain_text(const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* "HOST:PORT" with a DNS name or IPv4 address, or "[v6]:PORT". */
static int registry_host_valid(const char *h)
{
	const char *colon = strrchr(h, ':');
	size_t hostlen;
	long port;
	char *end;

	if (!colon || colon == h || strlen(h) > 255)
		return 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 1 || port > 65535)
		return 0;
	hostlen = (size_t)(colon - h);
	if (h[0] == '[')
		return h[hostlen - 1] == ']' && strspn(h + 1, "0123456789abcdefABCDEF:.") == hostlen - 2;
	return strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == hostlen;
}

/* The gateway of a subnet hc_runtime_subnet_parse accepts: its first address. */
static void subnet_gateway(uint32_t net, char *gw, size_t len)
{
	net++;
	snprintf(gw, len, "%u.%u.%u.%u", net >> 24, net >> 16 & 255, net >> 8 & 255, net & 255);
}

static int write_conflist(const char *state_dir, const char *subnet, struct hc_err *err)
{
	char gw[32], *path = NULL, *text = NULL;
	uint32_t net;
	unsigned prefix;
	int r;

	if (hc_runtime_subnet_parse(subnet, &net, &prefix) < 0)
		return hc_err_set(err, -EINVAL, "invalid workload subnet %s (want a.b.c.d/%d..%d, "
				  "the network's own address)", subnet,
				  HC_RUNTIME_SUBNET_MIN_PREFIX, HC_RUNTIME_SUBNET_MAX_PREFIX);
	subnet_gateway(net, gw, sizeof(gw));
	/* ptp: a veth per workload with a /32 route, no shared bridge to
	 * attach to; host-local keeps its leases under our state dir so two
	 * instances never share an allocation file; firewall opens FORWARD for
	 * the workload's address. */
	r = path_printf(&text,
			"{\n"
			"  \"cniVersion\": \"1.0.0\",\n"
			"  \"name\": \"hypercore\",\n"
			"  \"plugins\": [\n"
			"    {\n"
			"      \"type\": \"ptp\",\n"
			"      \"ipMasq\": true,\n"
			"      \"mtu\": 1500,\n"
			"      \"ipam\": {\n"
			"        \"type\": \"host-local\",\n"
			"        \"ranges\": [[{ \"subnet\": \"%s\", \"gateway\": \"%s\" }]],\n"
			"        \"routes\": [{ \"dst\": \"0.0.0.0/0\" }],\n"
			"        \"dataDir\": \"%s/cni-ipam\"\n"
			"      }\n"
			"    },\n"
			"    { \"type\": \"firewall\", \"backend\": \"iptables\" }\n"
			"  ]\n"
			"}\n",
			subnet, gw, state_dir);
	if (r == 0)
		r = path_printf(&path, "%s/net.d/10-hypercore.conflist", state_dir);
	if (r == 0)
		r = write_file(path, text, 0644);
	if (r < 0)
		hc_err_set(err, r, "cannot write the CNI config %s: %s", path ? path : "",
			   strerror(-r));
	free(path);
	free(text);
	return r;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	if (ftw->level == 0)
		return 0;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

static int write_registry_hosts(const char *state_dir, const char *const *hosts, size_t n,
				struct hc_err *err)
{
	char *dir = NULL, *path = NULL, *text = NULL;
	int r = path_printf(&dir, "%s/certs.d", state_dir);

	/* the directory holds exactly the hosts of this start's flags */
	if (r == 0 && nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		r = -errno;
	for (size_t i = 0; r == 0 && i < n; i++) {
		if (!registry_host_valid(hosts[i])) {
			r = hc_err_set(err, -EINVAL, "invalid --insecure-registry %s (want HOST:PORT)",
				       hosts[i]);
			goto out;
		}
		free(path);
		free(text);
		path = text = NULL;
		/* containerd looks for a directory named exactly HOST:PORT */
		r = path_printf(&path, "%s/%s", dir, hosts[i]);
		if (r == 0)
			r = hc_mkdir_p(path, 0755);
		free(path);
		path = NULL;
		if (r == 0)
			r = path_printf(&path, "%s/%s/hosts.toml", dir, hosts[i]);
		if (r == 0)
			r = path_printf(&text,
					"# written by hypercore for --insecure-registry %s\n"
					"server = \"http://%s\"\n\n"
					"[host.\"http://%s\"]\n"
					"  capabilities = [\"pull\", \"resolve\"]\n",
					hosts[i], hosts[i], hosts[i]);
		if (r == 0)
			r = write_file(path, text, 0644);
	}
	if (r < 0)
		hc_err_set(err, r, "cannot write registry hosts under %s: %s", dir,
			   strerror(-r));
out:
	free(dir);
	free(path);
	free(text);
	return r;
}

/* Whether gVisor's own containerd shim is installed. Debian 12 ships runsc
 * but not containerd-shim-runsc-v1, and runsc under the runc shim hangs
 * StartContainer and never sees exits (docs/runtime.md), so the runsc
 * handler exists only where the proper shim does. */
static int have_runsc_shim(void)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (!path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*path) {
		size_t len = strcspn(path, ":");

		if (len && len + sizeof("/" RUNSC_SHIM) < sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, RUNSC_SHIM);
			if (access(buf, X_OK) == 0)
				return 1;
		}
		path += len + (path[len] == ':');
	}
	return 0;
}

static int write_config(struct hc_containerd *cd, const struct hc_containerd_config *cfg,
			struct hc_err *err)
{
	const char *runsc = "";
	char *text = NULL;
	int r;

	if (have_runsc_shim())
		runsc = "\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]\n"
			"      runtime_type = \"io.containerd.runsc.v1\"\n";
	/* Notes on the keys (cri-subset.md, section 3 and its pitfalls):
	 * restrict_oom_score_adj because root here may lack CAP_SYS_RESOURCE;
	 * netns under the state dir so StopPodSandbox removes them; a runc
	 * root of our own so a system containerd's state never mixes in;
	 * cgroupfs because there is no systemd to delegate to. */
	r = path_printf(&text,
		"# written by hypercore at every start; edits are lost\n"
		"version = 2\n"
		"root = \"%6$s\"\n"
		"state = \"%7$s\"\n"
		"disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\",\n"
		"  \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.zfs\",\n"
		"  \"io.containerd.tracing.processor.v1.otlp\", \"io.containerd.internal.v1.tracing\"]\n"
		"\n"
		"[grpc]\n"
		"  address = \"%3$s\"\n"
		"[ttrpc]\n"
		"  address = \"%3$s.ttrpc\"\n"
		"\n"
		"[plugins.\"io.containerd.internal.v1.opt\"]\n"
		"  path = \"%1$s/opt\"\n"
		"\n"
		"[plugins.\"io.containerd.grpc.v1.cri\"]\n"
		"  sandbox_image = \"%4$s\"\n"
		"  netns_mounts_under_state_dir = true\n"
		"  restrict_oom_score_adj = true\n"
		"  stream_server_address = \"127.0.0.1\"\n"
		"  stream_server_port = \"0\"\n"
		"  enable_tls_streaming = false\n"
		"  max_container_log_line_size = 16384\n"
		"\n"
		"  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
		"    bin_dir = \"/usr/lib/cni\"\n"
		"    conf_dir = \"%1$s/net.d\"\n"
		"    max_conf_num = 1\n"
		"\n"
		"  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
		"    snapshotter = \"overlayfs\"\n"
		"    default_runtime_name = \"runc\"\n"
		"\n"
		"    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
		"      runtime_type = \"io.containerd.runc.v2\"\n"
		"      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
		"        SystemdCgroup = false\n"
		"        Root = \"%2$s/runc\"\n"
		"%5$s"
		"\n"
		"  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
		"    config_path = \"%1$s/certs.d\"\n",
		cd->state_dir, cd->run_dir, cd->socket, hc_pause_image_name, runsc, cd->root,
		cd->state);
	if (r < 0)
		return hc_err_set(err, -ENOMEM, "out of memory");
	r = write_file(cd->config_path, text, 0600);
	free(text);
	if (r < 0)
		return hc_err_set(err, r, "cannot write %s: %s", cd->config_path, strerror(-r));
	return 0;
}

static int prepare_dirs(const struct hc_containerd *cd, struct hc_err *err)
{
	static const char *const state_sub[] = { "net.d", "certs.d", "cni-ipam", "logs" };
	char path[4096];
	int r;

	for (size_t i = 0; i < sizeof(state_sub) / sizeof(state_sub[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", cd->state_dir, state_sub[i]);
		r = hc_mkdir_p(path, 0700);
		if (r < 0)
			return hc_err_set(err, r, "cannot create %s: %s", path, strerror(-r));
	}
	if ((r = hc_mkdir_p(cd->root, 0700)) < 0 || (r = hc_mkdir_p(cd->state, 0700)) < 0)
		return hc_err_set(err, r, "cannot create %s: %s",
				  access(cd->root, F_OK) == 0 ? cd->state : cd->root, strerror(-r));
	return 0;
}

/* Whether state_dir holds the layout of an earlier hypercore: its
 * containerd root at <state_dir>/containerd, named so by the configuration
 * that version wrote (upstream's containerd uses the same directory, but
 * writes no containerd.toml there). */
static bool earlier_layout(const char *state_dir)
{
	char path[4096], want[4200], text[4096];
	struct stat st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", state_dir, HC_CONTAINERD_ROOT);
	if (stat(path, &st) == 0)
		return false; /* the current layout is there already */
	snprintf(path, sizeof(path), "%s/containerd", state_dir);
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return false;
	snprintf(path, sizeof(path), "%s/containerd.toml", state_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return false;
	text[n] = '\0';
	snprintf(want, sizeof(want), "root = \"%s/containerd\"\n", state_dir);
	return strncmp(text, "# written by hypercore", 22) == 0 && strstr(text, want);
}

int hc_containerd_layout(const char *state_dir, const char *run_dir, char **root, char **state)
{
	bool earlier = earlier_layout(state_dir);

	/* An earlier hypercore kept containerd in <state>/containerd and
	 * <run>/containerd, the directories upstream's containerd uses too.
	 * Its workloads keep running in their shims, whose bundles, runc
	 * state and network namespaces are recorded under those paths, so
	 * they are kept rather than moved (hc_containerd_start says so). */
	*state = NULL;
	if (path_printf(root, "%s/%s", state_dir, earlier ? "containerd" : HC_CONTAINERD_ROOT) < 0 ||
	    path_printf(state, "%s/%s", run_dir, earlier ? "containerd" : HC_CONTAINERD_ROOT) < 0) {
		free(*root);
		*root = NULL;
		return -ENOMEM;
	}
	return earlier;
}

/* Refuses a root another containerd holds: containerd keeps its metadata
 * database locked (bolt's flock) while it runs, and a second one on the same
 * root would wait on that lock forever. One that is stopping (the previous
 * agent's, after a SIGKILL of the agent) lets go within ROOT_RELEASE_MS. */
static int check_root_free(const struct hc_containerd *cd, struct hc_err *err)
{
	struct timespec deadline;
	char path[4096];
	int fd, r;

	snprintf(path, sizeof(path), "%s/io.containerd.metadata.v1.bolt/meta.db", cd->root);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* a new root */
	hc_deadline_in(&deadline, ROOT_RELEASE_MS);
	while ((r = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EWOULDBLOCK &&
	       hc_deadline_left_ms(&deadline) > 0)
		usleep(50000);
	if (r < 0 && errno == EWOULDBLOCK)
		r = hc_err_set(err, -EBUSY,
			       "another containerd holds %s (its database %s is locked): stop it, "
			       "or give this node another --state-dir", cd->root, path);
	else if (r < 0)
		r = hc_err_set(err, -errno, "cannot lock %s: %s", path, strerror(errno));
	close(fd); /* releases our probe's lock */
	return r;
}

/* ---- the process ---- */

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void on_exit_event(struct hc_loop *loop, int fd, unsigned events, void *arg);

/* Starts the containerd process; it runs in its own process group so a ^C
 * at the agent's terminal reaches only the agent, which stops it in order. */
static int spawn_process(struct hc_containerd *cd, struct hc_err *err)
{
	pid_t parent = getpid(), pid;
	int logfd, pidfd;

	logfd = open(cd->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0)
		return hc_err_set(err, -errno, "cannot open %s: %s", cd->log_path,
				  strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(logfd);
		return hc_err_set(err, -errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		sigset_t none;
		int devnull = open("/dev/null", O_RDONLY);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL); /* the loop blocked some */
		setpgid(0, 0);
		/* containerd must not outlive an agent killed with SIGKILL: a
		 * second one would wait forever on the first one's database lock */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		execlp(cd->binary, cd->binary, "--config", cd->config_path, (char *)NULL);
		dprintf(2, "hypercore: cannot run %s: %s\n", cd->binary, strerror(errno));
		_exit(127);
	}
	close(logfd);
	pidfd = pidfd_open_(pid);
	if (pidfd < 0) {
		int e = errno;

		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return hc_err_set(err, -e, "pidfd_open: %s", strerror(e));
	}
	cd->pid = pid;
	cd->pidfd = pidfd;
	cd->started_ms = hc_loop_now_ms(cd->loop);
	if (hc_loop_add_fd(cd->loop, pidfd, HC_LOOP_READ, on_exit_event, cd) < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(pidfd);
		cd->pid = 0;
		cd->pidfd = -1;
		return hc_err_set(err, -ENOMEM, "cannot watch containerd");
	}
	hc_log(HC_LOG_INFO, "started containerd pid=%d socket=%s log=%s", (int)pid, cd->socket,
	       cd->log_path);
	return 0;
}

/* Collects the exited process; returns its wait status. */
static int reap(struct hc_containerd *cd)
{
	int status = 0;

	hc_loop_del_fd(cd->loop, cd->pidfd);
	close(cd->pidfd);
	cd->pidfd = -1;
	while (waitpid(cd->pid, &status, 0) < 0 && errno == EINTR)
		;
	cd->pid = 0;
	return status;
}

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "status 0x%x", status);
}

static int64_t on_restart_timer(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct hc_containerd *cd = arg;
	struct hc_err err;

	(void)loop;
	(void)id;
	cd->restart_timer = 0;
	if (spawn_process(cd, &err) < 0) {
		hc_log(HC_LOG_ERROR, "cannot restart containerd: %s; next try in %u ms", err.msg,
		       cd->backoff_ms);
		cd->restart_timer = hc_loop_add_timer(cd->loop, cd->backoff_ms, on_restart_timer, cd);
		cd->backoff_ms = cd->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cd->backoff_ms * 2;
		return HC_LOOP_TIMER_DONE;
	}
	cd->restarts++;
	return HC_LOOP_TIMER_DONE;
}

static void on_exit_event(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct hc_containerd *cd = arg;
	char how[64];
	int status;
	uint64_t ran_ms;

	(void)loop;
	(void)fd;
	(void)events;
	status = reap(cd);
	describe_status(status, how, sizeof(how));
	if (cd->stopping)
		return;
	ran_ms = hc_loop_now_ms(cd->loop) - cd->started_ms;
	if (ran_ms >= STABLE_AFTER_MS)
		cd->backoff_ms = BACKOFF_MIN_MS;
	hc_log(HC_LOG_ERROR, "containerd exited (%s) after %llu ms; restarting in %u ms (see %s)", how,
	       (unsigned long long)ran_ms, cd->backoff_ms, cd->log_path);
	cd->restart_timer = hc_loop_add_timer(cd->loop, cd->backoff_ms, on_restart_timer, cd);
	cd->backoff_ms = cd->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cd->backoff_ms * 2;
}

/* The last lines of containerd's log, to explain a failed start. */
static void log_tail(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size;
	ssize_t n;
	char *p;

	buf[0] = '\0';
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	if (size > 0 && lseek(fd, size > (off_t)len - 1 ? size - (off_t)len + 1 : 0, SEEK_SET) >= 0 &&
	    (n = read(fd, buf, len - 1)) > 0) {
		buf[n] = '\0';
		while (n > 0 && buf[n - 1] == '\n')
			buf[--n] = '\0';
		p = strrchr(buf, '\n');
		if (p)
			memmove(buf, p + 1, strlen(p + 1) + 1);
	}
	close(fd);
}

/* Waits until containerd's CRI answers with runtime and network ready. */
static int wait_ready(struct hc_containerd *cd, struct hc_runtime *rt, struct hc_err *err)
{
	struct timespec deadline;
	int r;

	hc_deadline_in(&deadline, READY_TIMEOUT_MS);
	for (;;) {
		struct pollfd pfd = { .fd = cd->pidfd, .events = POLLIN };

		if (poll(&pfd, 1, 0) > 0) {
			char how[64], tail[400];

			describe_status(reap(cd), how, sizeof(how));
			log_tail(cd->log_path, tail, sizeof(tail));
			return hc_err_set(err, -ECHILD, "containerd exited at start (%s): %s", how,
					  tail);
		}
		if (hc_cri_socket_probe(cd->socket) == 0) {
			r = hc_runtime_ready(rt, 2000, err);
			if (r == 0)
				return 0;
		} else {
			r = hc_err_set(err, -ETIMEDOUT, "containerd did not open %s", cd->socket);
		}
		if (hc_deadline_left_ms(&deadline) < 0) {
			char last[sizeof(err->msg)];

			memcpy(last, err->msg, sizeof(last));
			return hc_err_set(err, -ETIMEDOUT, "containerd not ready after %d s: %s",
					  READY_TIMEOUT_MS / 1000, last);
		}
		usleep(20000);
	}
}

/* Imports the pause image linked into this binary with ctr, so sandboxes
 * start without a registry. Idempotent: the same archive gives the same
 * digests. */
static int import_pause_image(struct hc_containerd *cd, struct hc_err *err)
{
	size_t len = (size_t)(hc_pause_image_end - hc_pause_image_start);
	char *archive = NULL, *out = NULL, tail[400];
	pid_t pid;
	int status, r;

	if (path_printf(&archive, "%s/pause-image.tar", cd->run_dir) < 0 ||
	    path_printf(&out, "%s/ctr-import.log", cd->run_dir) < 0) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto done;
	}
	{
		/* a scratch copy for ctr, removed below: no temp file or fsync */
		int fd = open(archive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0) {
			r = hc_err_set(err, -errno, "cannot write %s: %s", archive, strerror(errno));
			goto done;
		}
		r = hc_write_all(fd, hc_pause_image_start, len);
		if (close(fd) < 0 && r == 0)
			r = -errno;
		if (r < 0) {
			r = hc_err_set(err, -EIO, "cannot write %s", archive);
			goto done;
		}
	}
	pid = fork();
	if (pid < 0) {
		r = hc_err_set(err, -errno, "fork: %s", strerror(errno));
		goto done;
	}
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("ctr", "ctr", "--address", cd->socket, "--namespace", "k8s.io", "images",
		       "import", "--snapshotter", "overlayfs", archive, (char *)NULL);
		dprintf(2, "cannot run ctr: %s\n", strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_tail(out, tail, sizeof(tail));
		r = hc_err_set(err, -EIO, "importing the pause image failed: %s", tail);
		goto done;
	}
	hc_log(HC_LOG_INFO, "imported the pause image %s", hc_pause_image_name);
	r = 0;
done:
	if (archive)
		unlink(archive);
	if (out)
		unlink(out);
	free(archive);
	free(out);
	return r;
}

static void containerd_free(struct hc_containerd *cd)
{
	if (!cd)
		return;
	free(cd->state_dir);
	free(cd->run_dir);
	free(cd->root);
	free(cd->state);
	free(cd->binary);
	free(cd->config_path);
	free(cd->socket);
	free(cd->log_path);
	free(cd);
}

struct hc_containerd *hc_containerd_start(struct hc_loop *loop, const struct hc_containerd_config *cfg,
					  struct hc_err *err)
{
	struct hc_containerd *cd = calloc(1, sizeof(*cd));
	struct hc_runtime *rt = NULL;
	struct hc_runtime_config rcfg = { 0 };
	char lease_dir[4096];
	const char *subnet;
	int r = -ENOMEM;

	if (!cd) {
		hc_err_set(err, -ENOMEM, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	cd->loop = loop;
	cd->pidfd = -1;
	cd->backoff_ms = BACKOFF_MIN_MS;
	if (!plain_text(cfg->state_dir) || !plain_text(cfg->run_dir)) {
		r = hc_err_set(err, -EINVAL, "state and run directories must not contain quotes, "
			       "backslashes or control characters");
		goto fail;
	}
	/* containerd and its shims resolve relative paths elsewhere */
	cd->state_dir = hc_runtime_abspath(cfg->state_dir);
	cd->run_dir = hc_runtime_abspath(cfg->run_dir);
	cd->binary = strdup(cfg->binary ? cfg->binary : "containerd");
	if (!cd->state_dir || !cd->run_dir || !cd->binary ||
	    path_printf(&cd->config_path, "%s/containerd.toml", cd->state_dir) < 0 ||
	    path_printf(&cd->socket, "%s/containerd.sock", cd->run_dir) < 0 ||
	    path_printf(&cd->log_path, "%s/containerd.log", cd->state_dir) < 0 ||
	    (r = hc_containerd_layout(cd->state_dir, cd->run_dir, &cd->root, &cd->state)) < 0) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if (r == 1)
		hc_log(HC_LOG_WARN, "keeping containerd in %s and %s, where an earlier hypercore put "
		       "it (upstream's containerd uses them too): to move it to %s/%s, stop every "
		       "workload and the agent, then remove both", cd->root, cd->state, cd->state_dir,
		       HC_CONTAINERD_ROOT);
	subnet = cfg->subnet ? cfg->subnet : HC_WORKLOAD_SUBNET;
	if (hc_containerd_lease_dir(cd->state_dir, lease_dir, sizeof(lease_dir)) < 0) {
		r = hc_err_set(err, -ENAMETOOLONG, "state directory path too long");
		goto fail;
	}
	if ((r = check_root_free(cd, err)) < 0 ||
	    (r = hc_runtime_subnet_check_node(subnet, lease_dir, err)) < 0 ||
	    (r = prepare_dirs(cd, err)) < 0 ||
	    (r = write_conflist(cd->state_dir, subnet, err)) < 0 ||
	    (r = write_registry_hosts(cd->state_dir, cfg->insecure_registries, cfg->ninsecure, err)) < 0 ||
	    (r = write_config(cd, cfg, err)) < 0)
		goto fail;
	if (hc_cri_socket_probe(cd->socket) == 0) {
		r = hc_err_set(err, -EADDRINUSE,
			       "a containerd already serves %s (another agent, or `hypercore "
			       "containerd`?)", cd->socket);
		goto fail;
	}
	rcfg.socket = cd->socket;
	rcfg.state_dir = cd->state_dir;
	rt = hc_runtime_new(&rcfg);
	if (!rt) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = spawn_process(cd, err)) < 0 || (r = wait_ready(cd, rt, err)) < 0 ||
	    (r = import_pause_image(cd, err)) < 0)
		goto fail;
	hc_runtime_free(rt);
	return cd;
fail:
	hc_runtime_free(rt);
	hc_containerd_stop(cd, 5000);
	errno = -r;
	return NULL;
}

int hc_containerd_lease_dir(const char *state_dir, char *buf, size_t len)
{
	/* host-local's dataDir (the conflist's) plus the network's name */
	int n = snprintf(buf, len, "%s/cni-ipam/hypercore", state_dir);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

const char *hc_containerd_socket(const struct hc_containerd *cd)
{
	return cd->socket;
}

unsigned hc_containerd_restarts(const struct hc_containerd *cd)
{
	return cd->restarts;
}

void hc_containerd_stop(struct hc_containerd *cd, int timeout_ms)
{
	struct pollfd pfd;

	if (!cd)
		return;
	cd->stopping = 1;
	if (cd->restart_timer)
		hc_loop_del_timer(cd->loop, cd->restart_timer);
	if (cd->pid > 0) {
		kill(cd->pid, SIGTERM);
		pfd = (struct pollfd){ .fd = cd->pidfd, .events = POLLIN };
		if (poll(&pfd, 1, timeout_ms) <= 0) {
			hc_log(HC_LOG_WARN, "containerd did not stop within %d ms; killing it",
			       timeout_ms);
			kill(cd->pid, SIGKILL);
		}
		reap(cd);
		hc_log(HC_LOG_INFO, "stopped containerd");
	}
	containerd_free(cd);
}

static void collect(struct hc_metrics_writer *w, void *arg)
{
	const struct hc_containerd *cd = arg;

	hc_metrics_family(w, "hypercore_containerd_up", "gauge",
			  "1 while the embedded containerd process runs.");
	hc_metrics_sample(w, "hypercore_containerd_up", NULL, cd->pid > 0);
	hc_metrics_family(w, "hypercore_containerd_restarts_total", "counter",
			  "Restarts of the embedded containerd after it died.");
	hc_metrics_sample(w, "hypercore_containerd_restarts_total", NULL, cd->restarts);
}

int hc_containerd_register_metrics(struct hc_containerd *cd, struct hc_metrics *m)
{
	return hc_metrics_register(m, collect, cd);
}
