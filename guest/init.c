/*
 * PID 1 of a hypercore microVM (docs/runtime.md, "MicroVMs").
 *
 * The initramfs the agent packs holds this program (static, no libc in the
 * guest), the kernel modules the devices need (/hc/modules lists them in
 * load order) and the workload's spec (/hc/spec: "key=value" records, each
 * NUL-terminated, written by the agent). It loads the modules, mounts the
 * workload's root filesystem from /dev/vda, sets up eth0 from the spec,
 * switches into that root and runs the image's entrypoint with its
 * environment. Output and the exit status go to the host over the
 * virtio-serial port "hc.ctl" in vmproto.h's frames; from there it takes a
 * stop signal and the commands of `hypercore attach`. When the workload
 * ends, the VM resets, which ends the VMM (-no-reboot).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmproto.h"

#define SPEC_PATH "/hc/spec"
#define MODULES_PATH "/hc/modules"
#define NEWROOT "/newroot"
#define ROOT_DEV "/dev/vda"
#define CTL_PORT "hc.ctl"
#define WAIT_DEV_MS 20000
#define MAX_ARGS 256
#define MAX_ENV 512
#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct spec {
	char *ip, *prefix, *gw, *hostname, *workdir, *user;
	int read_only;
	char *argv[MAX_ARGS + 1];
	size_t nargv;
	char *env[MAX_ENV + 2];
	size_t nenv;
};

/* A child with its output pipes: the workload, or an attached command. */
struct child {
	pid_t pid;
	int out, err, in; /* -1 when closed */
	uint8_t out_type, err_type, exit_type;
};

static int ctl = -1;

static void send_frame(uint8_t type, const void *payload, uint32_t len);

/* To the console (the VM's console.log) and, once the channel is up, to
 * the workload's stderr on the host, so `hypercore logs` shows why a VM
 * did not start its workload. */
static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = snprintf(line, sizeof(line), "hc-init: ");
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
	if (ctl >= 0)
		send_frame(HC_VMP_STDERR, line, (uint32_t)strlen(line));
}

/* The end: no way back from PID 1 exiting but a kernel panic, so reset. */
static void __attribute__((noreturn)) power_off(void)
{
	sync();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

static void __attribute__((noreturn)) fail(const char *what)
{
	say("%s: %s", what, strerror(errno));
	power_off();
}

static void send_frame(uint8_t type, const void *payload, uint32_t len)
{
	if (ctl >= 0 && hc_vmp_write(ctl, type, payload, len) < 0)
		fprintf(stderr, "hc-init: cannot write to the host: %s\n", strerror(errno));
}

static void send_int(uint8_t type, int32_t v)
{
	if (ctl >= 0 && hc_vmp_write_int(ctl, type, v) < 0)
		fprintf(stderr, "hc-init: cannot write to the host: %s\n", strerror(errno));
}

/* ---- setting up ---- */

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;

	if (fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
		close(fd);
		free(buf);
		return NULL;
	}
	close(fd);
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return buf;
}

static void load_modules(void)
{
	size_t len;
	char *list = read_file(MODULES_PATH, &len), *save = NULL;

	for (char *p = list ? strtok_r(list, "\n", &save) : NULL; p; p = strtok_r(NULL, "\n", &save)) {
		int fd = open(p, O_RDONLY | O_CLOEXEC);

		if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
			say("cannot load %s: %s", p, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	free(list);
}

static void spec_add(struct spec *s, char *key, char *value)
{
	if (strcmp(key, "arg") == 0 && s->nargv < MAX_ARGS)
		s->argv[s->nargv++] = value;
	else if (strcmp(key, "env") == 0 && s->nenv < MAX_ENV)
		s->env[s->nenv++] = value;
	else if (strcmp(key, "ip") == 0)
		s->ip = value;
	else if (strcmp(key, "prefix") == 0)
		s->prefix = value;
	else if (strcmp(key, "gw") == 0)
		s->gw = value;
	else if (strcmp(key, "hostname") == 0)
		s->hostname = value;
	else if (strcmp(key, "workdir") == 0)
		s->workdir = value;
	else if (strcmp(key, "user") == 0)
		s->user = value;
	else if (strcmp(key, "ro") == 0)
		s->read_only = strcmp(value, "1") == 0;
}

static void read_spec(struct spec *s)
{
	size_t len, off = 0;
	char *buf = read_file(SPEC_PATH, &len);
	int has_path = 0;

	if (!buf)
		fail("reading " SPEC_PATH);
	while (off < len) {
		char *rec = buf + off, *eq = strchr(rec, '=');

		off += strlen(rec) + 1;
		if (!eq)
			continue;
		*eq = '\0';
		spec_add(s, rec, eq + 1);
	}
	for (size_t i = 0; i < s->nenv; i++)
		has_path |= strncmp(s->env[i], "PATH=", 5) == 0;
	if (!has_path)
		s->env[s->nenv++] = DEFAULT_PATH;
	s->env[s->nenv] = NULL;
	s->argv[s->nargv] = NULL;
	if (!s->nargv) {
		errno = EINVAL;
		fail("the spec names no command");
	}
}

/* The /dev node of the virtio-serial port named name, once udev-less
 * devtmpfs has it; waits up to WAIT_DEV_MS. */
static int open_port(const char *name)
{
	for (int waited = 0; waited < WAIT_DEV_MS; waited += 10) {
		DIR *d = opendir("/sys/class/virtio-ports");
		struct dirent *e;

		while (d && (e = readdir(d))) {
			char path[300], buf[64] = "";
			int fd;
			ssize_t n;

			snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n <= 0 || strncmp(buf, name, strlen(name)) != 0)
				continue;
			snprintf(path, sizeof(path), "/dev/%s", e->d_name);
			fd = open(path, O_RDWR | O_CLOEXEC);
			if (fd >= 0) {
				closedir(d);
				return fd;
			}
		}
		if (d)
			closedir(d);
		usleep(10000);
	}
	return -1;
}

static void wait_for(const char *path)
{
	for (int waited = 0; access(path, F_OK) < 0; waited += 10) {
		if (waited >= WAIT_DEV_MS)
			fail(path);
		usleep(10000);
	}
}

static void set_addr(int s, const char *ifname, unsigned long req, const char *addr)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	sin->sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1 || ioctl(s, req, &ifr) < 0)
		say("%s: cannot set %s: %s", ifname, addr, strerror(errno));
}

static void link_up(int s, const char *ifname)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		fail(ifname);
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		fail(ifname);
}

static void add_route(int s, const char *dst, const char *gw, unsigned mask_bits, int flags)
{
	struct rtentry rt;
	struct sockaddr_in *d = (struct sockaddr_in *)&rt.rt_dst;
	struct sockaddr_in *g = (struct sockaddr_in *)&rt.rt_gateway;
	struct sockaddr_in *m = (struct sockaddr_in *)&rt.rt_genmask;

	memset(&rt, 0, sizeof(rt));
	d->sin_family = g->sin_family = m->sin_family = AF_INET;
	inet_pton(AF_INET, dst, &d->sin_addr);
	if (gw)
		inet_pton(AF_INET, gw, &g->sin_addr);
	m->sin_addr.s_addr = mask_bits ? htonl(~0u << (32 - mask_bits)) : 0;
	rt.rt_flags = (unsigned short)(RTF_UP | flags);
	rt.rt_dev = "eth0";
	if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
		say("cannot add the route to %s: %s", dst, strerror(errno));
}

/* eth0 as the workload's address (the CNI veth's, whose frames the host
 * redirects to this VM's tap) with the gateway reached on the link. */
static void setup_network(const struct spec *s)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	unsigned prefix = s->prefix ? (unsigned)atoi(s->prefix) : 32;
	char mask[16];
	struct in_addr m = { .s_addr = htonl(prefix ? ~0u << (32 - prefix) : 0) };

	if (sock < 0)
		fail("socket");
	link_up(sock, "lo");
	if (s->ip) {
		wait_for("/sys/class/net/eth0");
		set_addr(sock, "eth0", SIOCSIFADDR, s->ip);
		inet_ntop(AF_INET, &m, mask, sizeof(mask));
		set_addr(sock, "eth0", SIOCSIFNETMASK, mask);
		link_up(sock, "eth0");
		if (s->gw) {
			add_route(sock, s->gw, NULL, 32, RTF_HOST);
			add_route(sock, "0.0.0.0", s->gw, 0, RTF_GATEWAY);
		}
	}
	close(sock);
}

static void mount_in(const char *root, const char *dir, const char *type, unsigned long flags)
{
	char path[256];

	snprintf(path, sizeof(path), "%s%s", root, dir);
	mkdir(path, 0755);
	if (mount(type, path, type, flags, NULL) < 0)
		say("cannot mount %s on %s: %s", type, path, strerror(errno));
}

static void switch_root(const struct spec *s)
{
	mkdir(NEWROOT, 0755);
	wait_for(ROOT_DEV);
	if (mount(ROOT_DEV, NEWROOT, "ext4", s->read_only ? MS_RDONLY : 0, NULL) < 0)
		fail("mounting the root filesystem");
	mount_in(NEWROOT, "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_in(NEWROOT, "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_in(NEWROOT, "/dev", "devtmpfs", MS_NOSUID);
	mount_in(NEWROOT, "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC);
	mount_in(NEWROOT, "/tmp", "tmpfs", MS_NOSUID | MS_NODEV);
	if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0)
		fail("switching to the root filesystem");
}

/* ---- children ---- */

static void drop_to_user(const char *user)
{
	unsigned uid = 0, gid = 0;

	if (!user || !user[0])
		return;
	if (sscanf(user, "%u:%u", &uid, &gid) < 1) {
		say("user \"%s\" is not numeric: running as root", user);
		return;
	}
	if (strchr(user, ':') == NULL)
		gid = uid;
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		fail("dropping to the image's user");
}

static int spawn(struct child *c, char *const argv[], const struct spec *s, int with_stdin)
{
	int out[2], err[2], in[2] = { -1, -1 };

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    (with_stdin && pipe2(in, O_CLOEXEC) < 0))
		return -1;
	c->pid = fork();
	if (c->pid < 0)
		return -1;
	if (c->pid == 0) {
		int null = open("/dev/null", O_RDWR);
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL); /* init blocks SIGCHLD for its signalfd */
		setsid();
		dup2(with_stdin ? in[0] : null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (s->workdir && s->workdir[0] && chdir(s->workdir) < 0)
			say("cannot enter %s: %s", s->workdir, strerror(errno));
		drop_to_user(s->user);
		environ = (char **)s->env;
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	if (with_stdin)
		close(in[0]);
	/* non-blocking: a child's own children may keep the pipes open after
	 * it exits, and its end must not wait for theirs */
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	c->out = out[0];
	c->err = err[0];
	c->in = in[1];
	return 0;
}

static int status_code(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Forwards what fd has; closes it at its end. 1 when it forwarded bytes. */
static int forward(int *fd, uint8_t type)
{
	char buf[16384];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return 0;
	}
	send_frame(type, buf, (uint32_t)n);
	return 1;
}

/* What an exited child left in its pipes, without waiting for processes
 * it left behind that hold them too; then the pipes close. */
static void drain(struct child *c)
{
	while (c->out >= 0 && forward(&c->out, c->out_type))
		;
	while (c->err >= 0 && forward(&c->err, c->err_type))
		;
	if (c->out >= 0)
		close(c->out);
	if (c->err >= 0)
		close(c->err);
	c->out = c->err = -1;
}

/* ---- the host's messages ---- */

struct state {
	struct spec spec;
	struct child wl, ash;
	uint8_t in[HC_VMP_HDR_LEN + HC_VMP_MAX_PAYLOAD];
	size_t inlen;
};

static void start_attach(struct state *st, const struct hc_vmp_frame *f)
{
	char *argv[MAX_ARGS + 1];
	char copy[HC_VMP_MAX_PAYLOAD];

	if (st->ash.pid > 0) {
		static const char busy[] = "another attach session is running in this VM\n";

		send_frame(HC_VMP_ATTACH_ERR, busy, sizeof(busy) - 1);
		send_int(HC_VMP_ATTACH_EXIT, 126);
		return;
	}
	memcpy(copy, f->payload, f->len);
	struct hc_vmp_frame fc = { f->type, f->len, (const uint8_t *)copy };
	if (hc_vmp_argv(&fc, argv, MAX_ARGS + 1) < 0 || spawn(&st->ash, argv, &st->spec, 1) < 0) {
		send_int(HC_VMP_ATTACH_EXIT, 127);
		return;
	}
}

static void on_frame(struct state *st, const struct hc_vmp_frame *f)
{
	int sig;

	switch (f->type) {
	case HC_VMP_STOP:
		if (hc_vmp_int(f, &sig) == 0 && st->wl.pid > 0)
			kill(-st->wl.pid, sig);
		break;
	case HC_VMP_ATTACH_START:
		start_attach(st, f);
		break;
	case HC_VMP_ATTACH_IN:
		if (st->ash.in >= 0 && hc_vmp_write_raw(st->ash.in, f->payload, f->len) < 0) {
			close(st->ash.in);
			st->ash.in = -1;
		}
		break;
	case HC_VMP_ATTACH_EOF:
		if (st->ash.in >= 0)
			close(st->ash.in);
		st->ash.in = -1;
		break;
	default:
		break; /* the host sends nothing else; ignore what a newer one adds */
	}
}

static void read_host(struct state *st)
{
	ssize_t n = read(ctl, st->in + st->inlen, sizeof(st->in) - st->inlen);
	struct hc_vmp_frame f;
	size_t off = 0;
	int used;

	if (n <= 0)
		return; /* the host end closed: nothing more comes, the workload goes on */
	st->inlen += (size_t)n;
	while ((used = hc_vmp_parse(st->in + off, st->inlen - off, &f)) > 0) {
		on_frame(st, &f);
		off += (size_t)used;
	}
	if (used < 0) {
		say("bad frame from the host: dropped what it sent");
		off = st->inlen;
	}
	memmove(st->in, st->in + off, st->inlen - off);
	st->inlen -= off;
}

static void reap(struct state *st)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == st->ash.pid) {
			drain(&st->ash);
			if (st->ash.in >= 0)
				close(st->ash.in);
			send_int(HC_VMP_ATTACH_EXIT, status_code(status));
			st->ash.pid = 0;
			st->ash.in = -1;
		} else if (pid == st->wl.pid) {
			drain(&st->wl);
			send_int(HC_VMP_EXIT, status_code(status));
			power_off();
		}
	}
}

static void run(struct state *st, int sigfd)
{
	for (;;) {
		struct pollfd p[6] = {
			{ .fd = sigfd, .events = POLLIN },     { .fd = ctl, .events = POLLIN },
			{ .fd = st->wl.out, .events = POLLIN }, { .fd = st->wl.err, .events = POLLIN },
			{ .fd = st->ash.out, .events = POLLIN }, { .fd = st->ash.err, .events = POLLIN },
		};

		if (poll(p, 6, -1) < 0 && errno != EINTR)
			fail("poll");
		if (p[1].revents & POLLIN)
			read_host(st);
		if (p[2].revents)
			forward(&st->wl.out, HC_VMP_STDOUT);
		if (p[3].revents)
			forward(&st->wl.err, HC_VMP_STDERR);
		if (p[4].revents)
			forward(&st->ash.out, HC_VMP_ATTACH_OUT);
		if (p[5].revents)
			forward(&st->ash.err, HC_VMP_ATTACH_ERR);
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sigfd, &si, sizeof(si)) == sizeof(si))
				;
			reap(st);
		}
	}
}

int main(void)
{
	static struct state st = { .wl = { .out = -1, .err = -1, .in = -1 },
				   .ash = { .out = -1, .err = -1, .in = -1 } };
	struct utsname u;
	sigset_t mask;
	int sigfd;

	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	load_modules();
	read_spec(&st.spec);
	ctl = open_port(CTL_PORT);
	if (ctl < 0)
		fail("opening the port " CTL_PORT);
	uname(&u);
	send_frame(HC_VMP_READY, u.release, (uint32_t)strlen(u.release));
	setup_network(&st.spec);
	switch_root(&st.spec);
	if (st.spec.hostname)
		sethostname(st.spec.hostname, strlen(st.spec.hostname));
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		fail("signalfd");
	st.wl.out_type = HC_VMP_STDOUT;
	st.wl.err_type = HC_VMP_STDERR;
	st.ash.out_type = HC_VMP_ATTACH_OUT;
	st.ash.err_type = HC_VMP_ATTACH_ERR;
	if (spawn(&st.wl, st.spec.argv, &st.spec, 0) < 0)
		fail("starting the workload");
	run(&st, sigfd);
}
