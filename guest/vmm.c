/*
 * hc-vmm: the process a microVM workload's container runs (docs/runtime.md,
 * "MicroVMs"). Static, so it needs nothing from the (pause) image it runs in.
 *
 *   hc-vmm run --ctl SOCK --attach SOCK -- VMM ARGS...
 *	listens on SOCK (the VMM connects its guest channel there), starts the
 *	VMM and relays: the guest's workload output to its own stdout and
 *	stderr (containerd's log of the workload), its exit status as its own,
 *	SIGTERM as a stop request to the guest, and attach sessions.
 *   hc-vmm attach --attach SOCK -- CMD ARGS...
 *	runs CMD inside the guest through the launcher (what `hypercore
 *	attach` execs in the container), relaying stdin and output; exits
 *	with CMD's status.
 *
 * Everything the guest sends is parsed by vmproto.c and checked: a guest
 * that sends garbage loses its channel, never the launcher.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmproto.h"

#define EXIT_NO_STATUS 255 /* the VM ended without saying how the workload did */
/* A peer that does not read for this long loses its write: one thread
 * relays everything, and a stalled attach client or a guest that stops
 * reading its port must not hold up the rest (the workload's logs, a stop). */
#define SEND_TIMEOUT_S 5
#define BUF_LEN (HC_VMP_HDR_LEN + HC_VMP_MAX_PAYLOAD)

/* A frame stream being read: bytes accumulate until whole frames parse. */
struct stream {
	int fd;
	uint8_t buf[BUF_LEN];
	size_t len;
};

static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("hc-vmm: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int unix_socket(const char *path, int listening)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (listening)
		unlink(path);
	if ((listening ? bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0
		       : connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* accept(2) of a peer whose writes give up after SEND_TIMEOUT_S. */
static int accept_peer(int listen_fd)
{
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_S };
	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads what fd has into s and calls fn for each whole frame. 1 while the
 * stream goes on, 0 at its end, -1 when it sent something not a frame. */
static int read_frames(struct stream *s, void (*fn)(void *, const struct hc_vmp_frame *),
		       void *arg)
{
	ssize_t n = read(s->fd, s->buf + s->len, sizeof(s->buf) - s->len);
	struct hc_vmp_frame f;
	size_t off = 0;
	int used = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	if (n <= 0)
		return 0;
	s->len += (size_t)n;
	while ((used = hc_vmp_parse(s->buf + off, s->len - off, &f)) > 0) {
		fn(arg, &f);
		off += (size_t)used;
	}
	memmove(s->buf, s->buf + off, s->len - off);
	s->len -= off;
	return used < 0 ? -1 : 1;
}

/* ---- run ---- */

struct launcher {
	struct stream guest;  /* the guest's channel; fd -1 until the VMM connects */
	struct stream client; /* the attach client; fd -1 when none */
	int ctl_listen, attach_listen, sigfd;
	pid_t vmm;
	int exit_code; /* -1 until the guest reports it */
	int stopping;
};

static void close_client(struct launcher *l)
{
	/* a client that went away closes its command's stdin, so a shell
	 * left waiting on it ends and frees the VM's attach session */
	if (l->client.fd >= 0 && l->guest.fd >= 0)
		hc_vmp_write(l->guest.fd, HC_VMP_ATTACH_EOF, "", 0);
	if (l->client.fd >= 0)
		close(l->client.fd);
	l->client.fd = -1;
	l->client.len = 0;
}

static void close_guest(struct launcher *l)
{
	if (l->guest.fd >= 0)
		close(l->guest.fd);
	l->guest.fd = -1;
}

static void on_guest_frame(void *arg, const struct hc_vmp_frame *f)
{
	struct launcher *l = arg;
	int code;

	switch (f->type) {
	case HC_VMP_STDOUT:
	case HC_VMP_STDERR:
		hc_vmp_write_raw(f->type == HC_VMP_STDOUT ? 1 : 2, f->payload, f->len);
		break;
	case HC_VMP_EXIT:
		if (hc_vmp_int(f, &code) == 0)
			l->exit_code = code;
		break;
	case HC_VMP_ATTACH_OUT:
	case HC_VMP_ATTACH_ERR:
	case HC_VMP_ATTACH_EXIT:
		if (hc_vmp_write(l->client.fd, f->type, f->payload, f->len) < 0 ||
		    f->type == HC_VMP_ATTACH_EXIT)
			close_client(l);
		break;
	default:
		break; /* READY, or what the host sends: nothing to do */
	}
}

static void on_client_frame(void *arg, const struct hc_vmp_frame *f)
{
	struct launcher *l = arg;

	/* only what an attach client may ask for reaches the guest */
	if (f->type != HC_VMP_ATTACH_START && f->type != HC_VMP_ATTACH_IN &&
	    f->type != HC_VMP_ATTACH_EOF)
		return;
	if (l->guest.fd < 0) {
		static const char msg[] = "the VM is not up yet\n";

		hc_vmp_write(l->client.fd, HC_VMP_ATTACH_ERR, msg, sizeof(msg) - 1);
		hc_vmp_write_int(l->client.fd, HC_VMP_ATTACH_EXIT, 126);
		close_client(l);
		return;
	}
	/* a guest that stopped reading: half a frame may be out, the channel
	 * is lost (its output with it) */
	if (hc_vmp_write(l->guest.fd, f->type, f->payload, f->len) < 0) {
		say("the guest does not read its channel: closed");
		close_guest(l);
	}
}

static void accept_client(struct launcher *l)
{
	int fd = accept_peer(l->attach_listen);

	if (fd < 0)
		return;
	if (l->client.fd >= 0) {
		static const char msg[] = "another attach session is running in this VM\n";

		hc_vmp_write(fd, HC_VMP_ATTACH_ERR, msg, sizeof(msg) - 1);
		hc_vmp_write_int(fd, HC_VMP_ATTACH_EXIT, 126);
		close(fd);
		return;
	}
	l->client.fd = fd;
	l->client.len = 0;
}

static void on_signal(struct launcher *l)
{
	struct signalfd_siginfo si;

	while (read(l->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD)
			continue;
		/* the workload gets the stop first; the VMM only if the guest cannot */
		if (l->guest.fd < 0 || hc_vmp_write_int(l->guest.fd, HC_VMP_STOP, (int32_t)si.ssi_signo) < 0)
			kill(l->vmm, SIGTERM);
		l->stopping = 1;
	}
}

static int vmm_exited(struct launcher *l)
{
	int status;

	if (waitpid(l->vmm, &status, WNOHANG) != l->vmm)
		return 0;
	/* what the guest wrote before the end is still in the channel */
	while (l->guest.fd >= 0 && read_frames(&l->guest, on_guest_frame, l) > 0)
		;
	if (l->exit_code < 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0 && l->stopping)) {
		char why[64];

		snprintf(why, sizeof(why), WIFEXITED(status) ? "exit status %d" : "signal %d",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		say("the VM ended without an exit status from the workload (VMM %s)", why);
	}
	return 1;
}

static void loop(struct launcher *l)
{
	for (;;) {
		struct pollfd p[5] = {
			{ .fd = l->sigfd, .events = POLLIN },
			{ .fd = l->guest.fd < 0 ? l->ctl_listen : -1, .events = POLLIN },
			{ .fd = l->guest.fd, .events = POLLIN },
			{ .fd = l->attach_listen, .events = POLLIN },
			{ .fd = l->client.fd, .events = POLLIN },
		};

		if (poll(p, 5, -1) < 0 && errno != EINTR)
			return;
		if (p[0].revents) {
			on_signal(l);
			if (vmm_exited(l))
				return;
		}
		if (p[1].revents)
			l->guest.fd = accept_peer(l->ctl_listen);
		if (p[2].revents) {
			int r = read_frames(&l->guest, on_guest_frame, l);

			if (r < 0)
				say("%s", "the guest sent a malformed frame: its channel is closed");
			if (r <= 0)
				close_guest(l);
		}
		if (p[3].revents)
			accept_client(l);
		if (p[4].revents && read_frames(&l->client, on_client_frame, l) <= 0)
			close_client(l);
	}
}

static pid_t start_vmm(char **argv)
{
	pid_t pid = fork();

	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDWR);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(null, 0);
		dup2(null, 1);
		execv(argv[0], argv);
		say("cannot run %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static int cmd_run(const char *ctl, const char *attach, char **argv)
{
	static struct launcher l = { .guest = { .fd = -1 }, .client = { .fd = -1 }, .exit_code = -1 };
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	l.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	l.ctl_listen = unix_socket(ctl, 1);
	l.attach_listen = unix_socket(attach, 1);
	if (l.sigfd < 0 || l.ctl_listen < 0 || l.attach_listen < 0) {
		say("cannot listen for the guest: %s", strerror(errno));
		return EXIT_NO_STATUS;
	}
	l.vmm = start_vmm(argv);
	if (l.vmm < 0) {
		say("cannot start the VMM: %s", strerror(errno));
		return EXIT_NO_STATUS;
	}
	loop(&l);
	return l.exit_code >= 0 ? l.exit_code : EXIT_NO_STATUS;
}

/* ---- attach ---- */

struct attach {
	int exit_code;
};

static void on_attach_frame(void *arg, const struct hc_vmp_frame *f)
{
	struct attach *a = arg;
	int code;

	if (f->type == HC_VMP_ATTACH_OUT || f->type == HC_VMP_ATTACH_ERR)
		hc_vmp_write_raw(f->type == HC_VMP_ATTACH_OUT ? 1 : 2, f->payload, f->len);
	else if (f->type == HC_VMP_ATTACH_EXIT && hc_vmp_int(f, &code) == 0)
		a->exit_code = code;
}

static int send_argv(int fd, char **argv)
{
	static uint8_t payload[HC_VMP_MAX_PAYLOAD];
	size_t len = 0;

	for (; *argv; argv++) {
		size_t n = strlen(*argv) + 1;

		if (len + n > sizeof(payload))
			return -1;
		memcpy(payload + len, *argv, n);
		len += n;
	}
	return hc_vmp_write(fd, HC_VMP_ATTACH_START, payload, (uint32_t)len);
}

static int cmd_attach(const char *path, char **argv)
{
	static struct stream s;
	struct attach a = { .exit_code = -1 };
	int in_open = 1;

	s.fd = unix_socket(path, 0);
	if (s.fd < 0 || send_argv(s.fd, argv) < 0) {
		say("cannot reach the VM's launcher: %s", strerror(errno));
		return EXIT_NO_STATUS;
	}
	signal(SIGPIPE, SIG_IGN);
	while (a.exit_code < 0) {
		struct pollfd p[2] = { { .fd = s.fd, .events = POLLIN },
				       { .fd = in_open ? 0 : -1, .events = POLLIN } };
		char buf[16384];
		ssize_t n;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents && read_frames(&s, on_attach_frame, &a) <= 0)
			break;
		if (!p[1].revents)
			continue;
		n = read(0, buf, sizeof(buf));
		if (n > 0) {
			hc_vmp_write(s.fd, HC_VMP_ATTACH_IN, buf, (uint32_t)n);
			continue;
		}
		hc_vmp_write(s.fd, HC_VMP_ATTACH_EOF, "", 0);
		in_open = 0;
	}
	return a.exit_code >= 0 ? a.exit_code : EXIT_NO_STATUS;
}

static void usage(void)
{
	fputs("usage: hc-vmm run --ctl SOCK --attach SOCK -- VMM [ARGS...]\n"
	      "       hc-vmm attach --attach SOCK -- CMD [ARGS...]\n",
	      stderr);
}

int main(int argc, char **argv)
{
	const char *ctl = NULL, *attach = NULL;
	int i = 2;

	if (argc < 2) {
		usage();
		return 2;
	}
	for (; i + 1 < argc && strcmp(argv[i], "--") != 0; i += 2) {
		if (strcmp(argv[i], "--ctl") == 0)
			ctl = argv[i + 1];
		else if (strcmp(argv[i], "--attach") == 0)
			attach = argv[i + 1];
		else
			break;
	}
	if (i >= argc - 1 || strcmp(argv[i], "--") != 0 || !attach) {
		usage();
		return 2;
	}
	if (strcmp(argv[1], "run") == 0 && ctl)
		return cmd_run(ctl, attach, argv + i + 1);
	if (strcmp(argv[1], "attach") == 0)
		return cmd_attach(attach, argv + i + 1);
	usage();
	return 2;
}
