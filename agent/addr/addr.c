/* "host:port" parsing and listening sockets; see addr.h. */
#include "addr/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(struct hc_err *err, const char *why)
{
	return hc_err_set(err, -EINVAL, "%s", why);
}

static int parse_port(const char *s, bool allow_zero, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535 || (v == 0 && !allow_zero))
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int hc_addr_parse(const char *text, bool allow_port_zero, struct hc_addr *addr,
		  struct hc_err *err)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *hstart, *hend;
	uint16_t port;
	size_t hlen;

	memset(addr, 0, sizeof(*addr));
	if (!text || !*text)
		return fail(err, "empty address (want HOST:PORT)");
	if (text[0] == '[') {
		hend = strchr(text, ']');
		if (!hend || hend[1] != ':')
			return fail(err, "bad IPv6 address (want [ADDR]:PORT)");
		hstart = text + 1;
		colon = hend + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return fail(err, "missing port (want HOST:PORT)");
		if (memchr(text, ':', (size_t)(colon - text)))
			return fail(err, "IPv6 addresses need brackets ([ADDR]:PORT)");
		hstart = text;
		hend = colon;
	}
	if (parse_port(colon + 1, allow_port_zero, &port) < 0)
		return fail(err,
			    allow_port_zero ? "port must be a number from 0 to 65535"
					    : "port must be a number from 1 to 65535");
	hlen = (size_t)(hend - hstart);
	if (hlen >= sizeof(host))
		return fail(err, "host part too long");
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';

	if (text[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addr->ss;

		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return fail(err, "not an IPv6 address");
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		addr->len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&addr->ss;

		if (hlen == 0)
			s4->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (strcmp(host, "localhost") == 0)
			s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return fail(err, "not an IPv4 address (host names are not resolved)");
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		addr->len = sizeof(*s4);
	}
	return 0;
}

char *hc_addr_format(const struct hc_addr *addr, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (addr->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&addr->ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&addr->ss;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
	}
	return buf;
}

uint16_t hc_addr_port(const struct hc_addr *addr)
{
	if (addr->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&addr->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&addr->ss)->sin_port);
}

bool hc_addr_is_any(const struct hc_addr *addr)
{
	if (addr->ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&addr->ss)->sin6_addr);
	return ((const struct sockaddr_in *)&addr->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

int hc_addr_listen_tcp(const struct hc_addr *addr, int backlog)
{
	int one = 1, fd, err;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 ||
	    listen(fd, backlog) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int hc_addr_probe_tcp(const struct hc_addr *addr)
{
	/* listen() too: two sockets may bind one port with SO_REUSEADDR, but
	 * only one may listen on it. */
	int fd = hc_addr_listen_tcp(addr, 1);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int hc_addr_dial_target(const char *text, char *out, size_t outlen, struct hc_err *err)
{
	struct hc_addr addr;
	int r = hc_addr_parse(text, false, &addr, err);

	if (r < 0)
		return r;
	if (hc_addr_is_any(&addr)) {
		if (addr.ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&addr.ss)->sin6_addr = in6addr_loopback;
		else
			((struct sockaddr_in *)&addr.ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	hc_addr_format(&addr, out, outlen);
	return 0;
}
