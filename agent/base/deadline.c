/* Deadlines for blocking I/O (the CLI's and workers' clients); see base.h. */
#include "base/base.h"

#include <errno.h>
#include <poll.h>

void hc_deadline_in(struct timespec *d, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, d);
	d->tv_sec += (time_t)(ms / 1000);
	d->tv_nsec += (long)(ms % 1000) * 1000000;
	if (d->tv_nsec >= 1000000000) {
		d->tv_sec++;
		d->tv_nsec -= 1000000000;
	} else if (d->tv_nsec < 0) { /* a negative ms: already passed */
		d->tv_sec--;
		d->tv_nsec += 1000000000;
	}
}

int64_t hc_deadline_left_ms(const struct timespec *d)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ((int64_t)d->tv_sec - now.tv_sec) * 1000 + (d->tv_nsec - now.tv_nsec) / 1000000;
}

int hc_deadline_wait_fd(int fd, short events, const struct timespec *d)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = hc_deadline_left_ms(d);
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		/* poll takes an int; a far deadline is reached in several waits */
		r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}
