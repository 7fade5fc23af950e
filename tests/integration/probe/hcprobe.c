/*
 * hcprobe: what a hostile workload tries, from inside a hypercore workload
 * (tests/integration/test_runtime.py; tools/mkimage.py packs it, static, as
 * the "probe" image). Each verb prints one line "<verb>: <outcome>".
 *
 *   hcprobe                 with PROBE_CONNECT=IP:PORT: tries to connect there
 *                           from its very first instruction, for PROBE_SECONDS
 *                           (default 3); then (or without it) sleeps forever
 *   hcprobe raw             opens a raw ICMP socket        -> "raw: ok" | "raw: EPERM"
 *   hcprobe forkbomb        forks until the kernel refuses -> "forkbomb: N children, then EAGAIN"
 *   hcprobe setuid          drops to uid 1000, executes the setuid-root copy
 *                           /hcprobe-suid                  -> "setuid: euid=N nnp=N"
 *   hcprobe write PATH      creates PATH                   -> "write: ok" | "write: EROFS"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 100000

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One attempt, 200 ms at most: 0 when the connection was made. */
static int try_connect(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), err = ETIMEDOUT;
	socklen_t len = sizeof(err);
	struct pollfd p;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
		close(fd);
		return 0;
	}
	if (errno == EINPROGRESS) {
		p.fd = fd;
		p.events = POLLOUT;
		if (poll(&p, 1, 200) == 1)
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	} else {
		err = errno;
	}
	close(fd);
	return err ? -err : 0;
}

static void probe_connect(const char *target)
{
	const char *secs = getenv("PROBE_SECONDS");
	double end = now_s() + (secs ? atof(secs) : 3);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char host[64];
	const char *colon = strrchr(target, ':');
	int r = -EINVAL, tries = 0;

	if (!colon || (size_t)(colon - target) >= sizeof(host))
		goto out;
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		goto out;
	do {
		tries++;
		r = try_connect(&sa);
		if (r == 0)
			break;
		usleep(20000);
	} while (now_s() < end);
out:
	if (r == 0)
		printf("connect: got through at try %d\n", tries);
	else
		printf("connect: never in %d tries (%s)\n", tries, strerror(-r));
	fflush(stdout);
}

static int raw(void)
{
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);

	if (fd < 0) {
		printf("raw: %s\n", errno == EPERM ? "EPERM" : strerror(errno));
		return 1;
	}
	close(fd);
	printf("raw: ok\n");
	return 0;
}

static int forkbomb(void)
{
	static pid_t kids[MAX_CHILDREN];
	int n = 0, err = 0;

	while (n < MAX_CHILDREN) {
		pid_t pid = fork();

		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0) {
			err = errno;
			break;
		}
		kids[n++] = pid;
	}
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	for (int i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
	printf("forkbomb: %d children, then %s\n", n, err == EAGAIN ? "EAGAIN" : strerror(err));
	return 0;
}

/* NoNewPrivs from /proc/self/status, or -1. */
static int nnp(void)
{
	char line[256];
	int v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "NoNewPrivs: %d", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static int setuid_probe(void)
{
	if (setgid(1000) < 0 || setuid(1000) < 0) {
		printf("setuid: cannot drop to 1000: %s\n", strerror(errno));
		return 1;
	}
	execl("/hcprobe-suid", "hcprobe-suid", "whoami", (char *)NULL);
	printf("setuid: exec: %s\n", strerror(errno));
	return 1;
}

static int write_probe(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	if (fd < 0) {
		printf("write: %s\n", errno == EROFS ? "EROFS" : strerror(errno));
		return 1;
	}
	close(fd);
	unlink(path);
	printf("write: ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *target = getenv("PROBE_CONNECT");

	/* first: before anything else the workload does */
	if (argc < 2 && target)
		probe_connect(target);
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 2 && strcmp(argv[1], "raw") == 0)
		return raw();
	if (argc >= 2 && strcmp(argv[1], "forkbomb") == 0)
		return forkbomb();
	if (argc >= 2 && strcmp(argv[1], "setuid") == 0)
		return setuid_probe();
	if (argc >= 2 && strcmp(argv[1], "whoami") == 0) {
		printf("setuid: euid=%d nnp=%d\n", (int)geteuid(), nnp());
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "write") == 0)
		return write_probe(argv[2]);
	if (argc >= 2) {
		fprintf(stderr, "hcprobe: unknown verb %s\n", argv[1]);
		return 2;
	}
	for (;;)
		pause();
}
