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
 *
 * Network verbs (test_runtime.py's escape tests). TARGET is ADDR:PORT or
 * [ADDR%IFNAME]:PORT; each target gets one line; SECS bounds the whole verb.
 *
 *   hcprobe tcp SECS TARGET...   connects to all at once, sends "ping\n" on
 *                                each connection -> "tcp T: echo" (the same
 *                                back) | "tcp T: connected" | "tcp T: timeout"
 *                                | "tcp T: ECONNREFUSED" (or another errno)
 *   hcprobe udp SECS TARGET...   "ping" to each, again every second
 *                                -> "udp T: reply" | "udp T: no reply" | errno
 *   hcprobe dns SECS SERVER...   an A query for probe.hypercore.test to
 *                                SERVER:53 -> "dns S: A.B.C.D" | "dns S: no answer"
 *   hcprobe http SECS TARGET HOST  GET / with Host: HOST
 *                                -> "http: STATUS FIRST-BODY-LINE" | errno
 *   hcprobe spoof TARGET SRC=PAYLOAD...  one UDP datagram per argument, in
 *                                order, from source SRC, through a raw socket
 *                                -> "spoof: sent N" | "spoof: EPERM"
 *   hcprobe frame IFNAME SRC KIND...  one broadcast Ethernet frame per KIND
 *                                through a packet socket: "notip" (an unknown
 *                                EtherType), "vlan" (a UDP datagram from SRC
 *                                in an 802.1Q tag), "badip" (the same untagged
 *                                with an IPv4 header length of 16 bytes)
 *                                -> "frame: sent N" | "frame: EPERM"
 *
 * With PROBE_HTTP=PORT the entrypoint also serves HTTP on PORT (after the
 * PROBE_CONNECT attempts): "hcprobe id=$HC_WORKLOAD_ID" for any request.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

/* ---- network verbs ---- */

#define MAX_TARGETS 32

union sa_any {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* ADDR:PORT or [ADDR%IFNAME]:PORT into sa; its length, or 0. */
static socklen_t parse_target(const char *t, union sa_any *sa)
{
	char host[80];
	const char *colon = strrchr(t, ':'), *start = t;
	size_t n;

	memset(sa, 0, sizeof(*sa));
	if (!colon)
		return 0;
	n = (size_t)(colon - t);
	if (t[0] == '[') {
		if (n < 2 || t[n - 1] != ']')
			return 0;
		start = t + 1;
		n -= 2;
	}
	if (n >= sizeof(host))
		return 0;
	memcpy(host, start, n);
	host[n] = '\0';
	if (t[0] != '[') {
		sa->in.sin_family = AF_INET;
		sa->in.sin_port = htons((uint16_t)atoi(colon + 1));
		return inet_pton(AF_INET, host, &sa->in.sin_addr) == 1 ? sizeof(sa->in) : 0;
	}
	char *pct = strchr(host, '%');

	sa->in6.sin6_family = AF_INET6;
	sa->in6.sin6_port = htons((uint16_t)atoi(colon + 1));
	if (pct) {
		*pct = '\0';
		sa->in6.sin6_scope_id = if_nametoindex(pct + 1);
		if (sa->in6.sin6_scope_id == 0)
			return 0;
	}
	return inet_pton(AF_INET6, host, &sa->in6.sin6_addr) == 1 ? sizeof(sa->in6) : 0;
}

static const char *err_name(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case ENETUNREACH:
		return "ENETUNREACH";
	case EHOSTUNREACH:
		return "EHOSTUNREACH";
	case EADDRNOTAVAIL:
		return "EADDRNOTAVAIL";
	case EPERM:
		return "EPERM";
	case EACCES:
		return "EACCES";
	case ECONNRESET:
		return "ECONNRESET";
	default:
		return strerror(e);
	}
}

enum attempt_state { A_START, A_CONNECTING, A_WAITING, A_DONE };

struct attempt {
	const char *target;
	int fd;
	enum attempt_state state;
	const char *outcome; /* set once A_DONE, or at the deadline */
	int err;
	char got[64];
	size_t ngot;
};

/* Opens a socket of type for each target; an attempt that cannot even be
 * made is A_DONE with its errno. */
static void open_attempts(struct attempt *a, int n, char **targets, int type)
{
	for (int i = 0; i < n; i++) {
		union sa_any sa;
		socklen_t len = parse_target(targets[i], &sa);

		a[i] = (struct attempt){ .target = targets[i], .fd = -1 };
		if (len == 0) {
			a[i].state = A_DONE;
			a[i].outcome = "bad target";
			continue;
		}
		a[i].fd = socket(sa.sa.sa_family, type | SOCK_NONBLOCK, 0);
		if (a[i].fd < 0 || (connect(a[i].fd, &sa.sa, len) < 0 && errno != EINPROGRESS)) {
			a[i].state = A_DONE;
			a[i].err = errno;
			continue;
		}
		a[i].state = type == SOCK_STREAM ? A_CONNECTING : A_WAITING;
	}
}

/* Waits for events on the attempts still running, until deadline; step(i,
 * revents) advances one. Returns when all are done or time is up. */
static void run_attempts(struct attempt *a, int n, double deadline,
			 void (*step)(struct attempt *, short), void (*tick)(struct attempt *))
{
	struct pollfd p[MAX_TARGETS];
	double next_tick = now_s() + 1;

	for (;;) {
		int live = 0, idx[MAX_TARGETS];
		double left = deadline - now_s(), wait = next_tick - now_s();

		for (int i = 0; i < n; i++) {
			if (a[i].state == A_DONE)
				continue;
			p[live].fd = a[i].fd;
			p[live].events = a[i].state == A_CONNECTING ? POLLOUT : POLLIN;
			idx[live++] = i;
		}
		if (live == 0 || left <= 0)
			return;
		if (wait > left)
			wait = left;
		if (poll(p, (nfds_t)live, wait > 0 ? (int)(wait * 1000) + 1 : 0) < 0 && errno != EINTR)
			return;
		for (int j = 0; j < live; j++)
			if (p[j].revents)
				step(&a[idx[j]], p[j].revents);
		if (tick && now_s() >= next_tick) {
			next_tick = now_s() + 1;
			for (int i = 0; i < n; i++)
				if (a[i].state == A_WAITING)
					tick(&a[i]);
		}
	}
}

static void tcp_step(struct attempt *a, short revents)
{
	int err = 0;
	socklen_t len = sizeof(err);
	ssize_t r;

	(void)revents;
	if (a->state == A_CONNECTING) {
		getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			a->state = A_DONE;
			a->err = err;
			return;
		}
		a->state = A_WAITING;
		if (send(a->fd, "ping\n", 5, MSG_NOSIGNAL) != 5) {
			a->state = A_DONE;
			a->outcome = "connected";
		}
		return;
	}
	r = recv(a->fd, a->got + a->ngot, sizeof(a->got) - 1 - a->ngot, 0);
	if (r > 0)
		a->ngot += (size_t)r;
	if (r <= 0 || a->ngot >= 5) {
		a->state = A_DONE;
		a->outcome = a->ngot >= 5 && memcmp(a->got, "ping\n", 5) == 0 ? "echo" : "connected";
	}
}

static void print_attempts(const char *verb, struct attempt *a, int n, const char *at_deadline)
{
	for (int i = 0; i < n; i++) {
		const char *o = a[i].outcome;

		if (!o && a[i].err)
			o = err_name(a[i].err);
		if (!o)
			o = a[i].state == A_CONNECTING ? "timeout" : at_deadline;
		printf("%s %s: %s\n", verb, a[i].target, o);
		if (a[i].fd >= 0)
			close(a[i].fd);
	}
}

static int tcp_probe(double secs, int n, char **targets)
{
	struct attempt a[MAX_TARGETS];

	if (n > MAX_TARGETS)
		return 2;
	open_attempts(a, n, targets, SOCK_STREAM);
	run_attempts(a, n, now_s() + secs, tcp_step, NULL);
	print_attempts("tcp", a, n, "connected");
	return 0;
}

static void udp_send(struct attempt *a)
{
	if (send(a->fd, "ping", 4, 0) < 0 && errno != EAGAIN) {
		a->state = A_DONE;
		a->err = errno;
	}
}

static void udp_step(struct attempt *a, short revents)
{
	ssize_t r = recv(a->fd, a->got, sizeof(a->got) - 1, 0);

	(void)revents;
	if (r >= 0) {
		a->state = A_DONE;
		a->outcome = "reply";
	} else if (errno != EAGAIN) {
		a->state = A_DONE;
		a->err = errno;
	}
}

static int udp_probe(double secs, int n, char **targets)
{
	struct attempt a[MAX_TARGETS];

	if (n > MAX_TARGETS)
		return 2;
	open_attempts(a, n, targets, SOCK_DGRAM);
	for (int i = 0; i < n; i++)
		if (a[i].state == A_WAITING)
			udp_send(&a[i]);
	run_attempts(a, n, now_s() + secs, udp_step, udp_send);
	print_attempts("udp", a, n, "no reply");
	return 0;
}

/* An A query for probe.hypercore.test, id 0x4863. */
static const unsigned char dns_query[] = {
	0x48, 0x63, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
	5, 'p', 'r', 'o', 'b', 'e', 9, 'h', 'y', 'p', 'e', 'r', 'c', 'o', 'r', 'e',
	4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
};

static void dns_send(struct attempt *a)
{
	if (send(a->fd, dns_query, sizeof(dns_query), 0) < 0 && errno != EAGAIN) {
		a->state = A_DONE;
		a->err = errno;
	}
}

/* The answer's last 4 bytes are the A record's address (one answer, as the
 * test's responder gives it). */
static void dns_step(struct attempt *a, short revents)
{
	unsigned char buf[512];
	ssize_t r = recv(a->fd, buf, sizeof(buf), 0);

	(void)revents;
	if (r < 0) {
		if (errno != EAGAIN) {
			a->state = A_DONE;
			a->err = errno;
		}
		return;
	}
	if (r < (ssize_t)sizeof(dns_query) + 16 || buf[0] != 0x48 || buf[1] != 0x63 ||
	    !(buf[2] & 0x80) || buf[7] != 1)
		return; /* not our answer: keep waiting */
	a->state = A_DONE;
	inet_ntop(AF_INET, buf + r - 4, a->got, sizeof(a->got));
	a->outcome = a->got;
}

static int dns_probe(double secs, int n, char **servers)
{
	struct attempt a[MAX_TARGETS];
	char *targets[MAX_TARGETS];
	static char buf[MAX_TARGETS][80];

	if (n > MAX_TARGETS)
		return 2;
	for (int i = 0; i < n; i++) {
		snprintf(buf[i], sizeof(buf[i]), strchr(servers[i], ':') ? "%s" : "%s:53",
			 servers[i]);
		targets[i] = buf[i];
	}
	open_attempts(a, n, targets, SOCK_DGRAM);
	for (int i = 0; i < n; i++) {
		a[i].target = servers[i];
		if (a[i].state == A_WAITING)
			dns_send(&a[i]);
	}
	run_attempts(a, n, now_s() + secs, dns_step, dns_send);
	print_attempts("dns", a, n, "no answer");
	return 0;
}

/* GET / with Host: host; "http: STATUS FIRST-BODY-LINE". */
static int http_probe(double secs, const char *target, const char *host)
{
	char req[256], resp[4096], *body, *eol;
	size_t n = 0;
	double deadline = now_s() + secs;
	struct timeval tv = { .tv_sec = (time_t)secs };
	union sa_any sa;
	socklen_t len = parse_target(target, &sa);
	int fd, status = 0;

	if (len == 0)
		return 2;
	fd = socket(sa.sa.sa_family, SOCK_STREAM, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, &sa.sa, len) < 0)
		goto fail;
	snprintf(req, sizeof(req), "GET / HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
		goto fail;
	while (n < sizeof(resp) - 1 && now_s() < deadline) {
		ssize_t r = recv(fd, resp + n, sizeof(resp) - 1 - n, 0);

		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	resp[n] = '\0';
	body = strstr(resp, "\r\n\r\n");
	if (sscanf(resp, "HTTP/%*s %d", &status) != 1 || !body) {
		printf("http: bad answer (%zu bytes)\n", n);
		return 1;
	}
	body += 4;
	eol = strchr(body, '\n');
	if (eol)
		*eol = '\0';
	printf("http: %d %s\n", status, body);
	return 0;
fail:
	printf("http: %s\n", errno == EAGAIN || errno == EINPROGRESS ? "timeout" : err_name(errno));
	if (fd >= 0)
		close(fd);
	return 1;
}

static uint16_t ip_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* An IPv4 + UDP datagram from src to dst carrying payload, into buf; its
 * length. */
static size_t build_udp4(uint8_t *buf, size_t cap, struct in_addr src,
			 const struct sockaddr_in *dst, const char *payload)
{
	size_t plen = strlen(payload), len = sizeof(struct iphdr) + sizeof(struct udphdr) + plen;
	struct iphdr *ip = (struct iphdr *)buf;
	struct udphdr *udp = (struct udphdr *)(ip + 1);

	if (len > cap)
		return 0;
	memset(buf, 0, sizeof(*ip) + sizeof(*udp));
	ip->version = 4;
	ip->ihl = 5;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons((uint16_t)len);
	ip->saddr = src.s_addr;
	ip->daddr = dst->sin_addr.s_addr;
	ip->check = ip_checksum(ip, sizeof(*ip));
	udp->source = htons(40000);
	udp->dest = dst->sin_port;
	udp->len = htons((uint16_t)(sizeof(*udp) + plen));
	memcpy(udp + 1, payload, plen); /* UDP checksum 0: none, as IPv4 allows */
	return len;
}

static int spoof_probe(const char *target, int n, char **items)
{
	union sa_any sa;
	uint8_t pkt[1500];
	int fd, sent = 0;

	if (parse_target(target, &sa) != sizeof(sa.in))
		return 2;
	fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* IP_HDRINCL implied */
	if (fd < 0) {
		printf("spoof: %s\n", err_name(errno));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char src[64];
		const char *eq = strchr(items[i], '=');
		struct in_addr a;
		size_t len;

		if (!eq || (size_t)(eq - items[i]) >= sizeof(src))
			continue;
		memcpy(src, items[i], (size_t)(eq - items[i]));
		src[eq - items[i]] = '\0';
		if (inet_pton(AF_INET, src, &a) != 1)
			continue;
		len = build_udp4(pkt, sizeof(pkt), a, &sa.in, eq + 1);
		if (len && sendto(fd, pkt, len, 0, &sa.sa, sizeof(sa.in)) == (ssize_t)len)
			sent++;
	}
	close(fd);
	printf("spoof: sent %d\n", sent);
	return 0;
}

/* One frame of kind ("notip", "vlan", "badip") from mac to broadcast, its
 * IP source src; its length, or 0 for an unknown kind. */
static size_t build_frame(uint8_t *f, const char *kind, const uint8_t mac[6], struct in_addr src)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(9) };
	size_t l2 = 14;

	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	inet_pton(AF_INET, "198.18.0.9", &dst.sin_addr);
	if (strcmp(kind, "notip") == 0) {
		f[12] = 0x88, f[13] = 0xb5; /* IEEE 802 local experimental */
		memset(f + 14, 0, 46);
		return 60;
	}
	if (strcmp(kind, "vlan") == 0) {
		f[12] = 0x81, f[13] = 0x00, f[14] = 0, f[15] = 42; /* VLAN 42 */
		l2 += 4;
	} else if (strcmp(kind, "badip") != 0) {
		return 0;
	}
	f[l2 - 2] = 0x08, f[l2 - 1] = 0x00;
	size_t len = build_udp4(f + l2, 1500, src, &dst, "frame");

	if (strcmp(kind, "badip") == 0)
		f[l2] = 0x44; /* version 4, header length 4 x 4 bytes: less than a header */
	return l2 + len;
}

static int frame_probe(const char *ifname, const char *srcs, int n, char **kinds)
{
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_halen = 6 };
	struct ifreq ifr = { 0 };
	struct in_addr src;
	uint8_t f[1600];
	int fd, sent = 0;

	if (inet_pton(AF_INET, srcs, &src) != 1)
		return 2;
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		printf("frame: %s\n", err_name(errno));
		return 1;
	}
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ll.sll_ifindex = (int)if_nametoindex(ifname);
	if (ll.sll_ifindex == 0 || ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		printf("frame: %s: %s\n", ifname, err_name(errno));
		close(fd);
		return 1;
	}
	memset(ll.sll_addr, 0xff, 6);
	for (int i = 0; i < n; i++) {
		size_t len = build_frame(f, kinds[i], (const uint8_t *)ifr.ifr_hwaddr.sa_data,
					 src);

		if (len && sendto(fd, f, len, 0, (struct sockaddr *)&ll, sizeof(ll)) == (ssize_t)len)
			sent++;
	}
	close(fd);
	printf("frame: sent %d\n", sent);
	return 0;
}

/* PROBE_HTTP: a child answering every request with the workload's id. */
static void serve_http(const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	const char *id = getenv("HC_WORKLOAD_ID");
	char resp[256], req[2048];
	int one = 1, fd;

	if (fork() != 0)
		return;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		fprintf(stderr, "http: cannot serve on %s: %s\n", port, strerror(errno));
		_exit(1);
	}
	snprintf(resp, sizeof(resp), "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
		 "Connection: close\r\n\r\nhcprobe id=%s\n", id ? id : "unknown");
	for (;;) {
		int c = accept(fd, NULL, NULL);

		if (c < 0)
			continue;
		struct timeval tv = { .tv_sec = 5 };

		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)!recv(c, req, sizeof(req), 0); /* the request's first bytes: any will do */
		(void)!send(c, resp, strlen(resp), MSG_NOSIGNAL);
		close(c);
	}
}

int main(int argc, char **argv)
{
	const char *target = getenv("PROBE_CONNECT");

	/* first: before anything else the workload does */
	if (argc < 2 && target)
		probe_connect(target);
	if (argc < 2 && getenv("PROBE_HTTP"))
		serve_http(getenv("PROBE_HTTP"));
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
	if (argc >= 4 && strcmp(argv[1], "tcp") == 0)
		return tcp_probe(atof(argv[2]), argc - 3, argv + 3);
	if (argc >= 4 && strcmp(argv[1], "udp") == 0)
		return udp_probe(atof(argv[2]), argc - 3, argv + 3);
	if (argc >= 4 && strcmp(argv[1], "dns") == 0)
		return dns_probe(atof(argv[2]), argc - 3, argv + 3);
	if (argc == 5 && strcmp(argv[1], "http") == 0)
		return http_probe(atof(argv[2]), argv[3], argv[4]);
	if (argc >= 4 && strcmp(argv[1], "spoof") == 0)
		return spoof_probe(argv[2], argc - 3, argv + 3);
	if (argc >= 5 && strcmp(argv[1], "frame") == 0)
		return frame_probe(argv[2], argv[3], argc - 4, argv + 4);
	if (argc >= 2) {
		fprintf(stderr, "hcprobe: unknown verb %s\n", argv[1]);
		return 2;
	}
	for (;;)
		pause();
}
