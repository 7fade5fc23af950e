/* Writing whole buffers to files, pipes and sockets; see base.h. */
#include "base/base.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

int hc_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t hc_read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* A full non-blocking socket: wait until it drains, or until the deadline */
static int wait_writable(int fd, const struct timespec *deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	if (deadline)
		return hc_deadline_wait_fd(fd, POLLOUT, deadline);
	return poll(&p, 1, -1) < 0 && errno != EINTR ? -errno : 0;
}

int hc_send_all(int fd, const void *buf, size_t len, const struct timespec *deadline)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		int r;

		if (n >= 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		if ((r = wait_writable(fd, deadline)) < 0)
			return r;
	}
	return 0;
}
