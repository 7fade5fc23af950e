/* A minimal blocking HTTP/1.1 client; see httpc.h. */
#include "httpc/httpc.h"

#include "base/base.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE (16u << 20)

static int connect_to(const struct hc_addr *a, const struct timespec *deadline)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int err = 0, r;
	socklen_t len = sizeof(err);

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
		r = -errno;
		goto fail;
	}
	r = hc_deadline_wait_fd(fd, POLLOUT, deadline);
	if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		r = -errno;
	if (r == 0 && err)
		r = -err;
	if (r == 0)
		return fd;
fail:
	close(fd);
	return r;
}

static int read_all(int fd, char **out, size_t *outlen, const struct timespec *deadline)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *grown;

			if (cap >= MAX_RESPONSE) {
				r = -EMSGSIZE;
				break;
			}
			cap *= 2;
			grown = realloc(buf, cap + 1);
			if (!grown) {
				r = -ENOMEM;
				break;
			}
			buf = grown;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno != EAGAIN) {
				r = -errno;
				break;
			}
			if ((r = hc_deadline_wait_fd(fd, POLLIN, deadline)) < 0)
				break;
			continue;
		}
		len += (size_t)n;
	}
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

/* Copies the value of header name (case-insensitive) from the head. */
static void find_header(const char *head, const char *end, const char *name, char *out,
			size_t len)
{
	size_t nlen = strlen(name);

	out[0] = '\0';
	for (const char *line = strstr(head, "\r\n"); line && line < end;
	     line = strstr(line + 2, "\r\n")) {
		const char *v = line + 2, *eol;

		if (strncasecmp(v, name, nlen) != 0 || v[nlen] != ':')
			continue;
		v += nlen + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		eol = strstr(v, "\r\n");
		if (!eol)
			return;
		snprintf(out, len, "%.*s", (int)(eol - v), v);
		return;
	}
}

/* A header value must not end the line it is on (request splitting). */
static bool header_safe(const char *v)
{
	return !v || !strpbrk(v, "\r\n");
}

/* The request head into buf; -E2BIG if it does not fit. */
static int format_head(const struct hc_httpc_request *rq, char *buf, size_t size)
{
	int n = snprintf(buf, size,
			 "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n%s%s%s%s%s%s\r\n",
			 rq->method, rq->path, rq->host, rq->payload_len,
			 rq->content_type ? "Content-Type: " : "",
			 rq->content_type ? rq->content_type : "", rq->content_type ? "\r\n" : "",
			 rq->bearer ? "Authorization: Bearer " : "", rq->bearer ? rq->bearer : "",
			 rq->bearer ? "\r\n" : "");

	return n < 0 || (size_t)n >= size ? -E2BIG : 0;
}

int hc_httpc_request(const struct hc_addr *a, const struct hc_httpc_request *rq,
		     struct hc_httpc_response *out)
{
	struct timespec deadline;
	char req[2048], *resp = NULL, *head_end;
	size_t len = 0;
	int fd, r;

	memset(out, 0, sizeof(*out));
	if (!header_safe(rq->method) || !header_safe(rq->path) || !header_safe(rq->host) ||
	    !header_safe(rq->content_type) || !header_safe(rq->bearer))
		return -EINVAL;
	if ((r = format_head(rq, req, sizeof(req))) < 0)
		return r;
	hc_deadline_in(&deadline, rq->timeout_ms);
	fd = connect_to(a, &deadline);
	if (fd < 0)
		return fd;
	r = hc_send_all(fd, req, strlen(req), &deadline);
	if (r == 0 && rq->payload_len)
		r = hc_send_all(fd, rq->payload, rq->payload_len, &deadline);
	explicit_bzero(req, sizeof(req)); /* it may hold a token */
	if (r == 0)
		r = read_all(fd, &resp, &len, &deadline);
	close(fd);
	if (r < 0)
		return r;
	head_end = strstr(resp, "\r\n\r\n");
	if (!head_end || sscanf(resp, "HTTP/1.%*d %d", &out->status) != 1) {
		free(resp);
		return -EBADMSG;
	}
	if (rq->want_header)
		find_header(resp, head_end, rq->want_header, out->header, sizeof(out->header));
	head_end += 4;
	out->body_len = len - (size_t)(head_end - resp);
	memmove(resp, head_end, out->body_len + 1);
	out->body = resp;
	return 0;
}
