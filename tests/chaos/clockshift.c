/*
 * LD_PRELOAD shim for the chaos tests' clock scenario: shifts the wall clock
 * (CLOCK_REALTIME and its variants, gettimeofday, time) of the process it is
 * preloaded into by the number of milliseconds in the file
 * $HC_CLOCK_OFFSET_FILE (signed decimal; absent or unreadable: 0), re-read at
 * most every 100 ms so a test can step a running agent's clock back or
 * forward. Monotonic clocks are left alone, as NTP leaves them.
 *
 * Why a shim: a time namespace (unshare --time) offsets only CLOCK_MONOTONIC
 * and CLOCK_BOOTTIME, never CLOCK_REALTIME, and setting the host's clock
 * would step every process on the machine. The agent calls the libc
 * functions through the PLT, so preloading catches all its wall-clock reads
 * (its own, OpenSSL's and gRPC's); Go programs it starts (containerd) read
 * the vDSO directly and keep the true time, as separate daemons would.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static int64_t offset_ms;        /* atomically read and written */
static int64_t next_check_ns;    /* CLOCK_MONOTONIC ns of the next re-read */

static clock_gettime_fn real(void)
{
	clock_gettime_fn f = __atomic_load_n(&real_clock_gettime, __ATOMIC_ACQUIRE);

	if (!f) {
		f = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
		__atomic_store_n(&real_clock_gettime, f, __ATOMIC_RELEASE);
	}
	return f;
}

static int64_t read_offset(void)
{
	const char *path = getenv("HC_CLOCK_OFFSET_FILE");
	char buf[32];
	ssize_t n;
	int fd;

	if (!path)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

static int64_t current_offset_ms(void)
{
	struct timespec mono;
	int64_t now, next = __atomic_load_n(&next_check_ns, __ATOMIC_RELAXED);

	if (real()(CLOCK_MONOTONIC, &mono) == 0) {
		now = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;
		if (now >= next && __atomic_compare_exchange_n(&next_check_ns, &next,
							       now + 100000000, 0, __ATOMIC_RELAXED,
							       __ATOMIC_RELAXED))
			__atomic_store_n(&offset_ms, read_offset(), __ATOMIC_RELAXED);
	}
	return __atomic_load_n(&offset_ms, __ATOMIC_RELAXED);
}

static void shift(struct timespec *ts, int64_t ms)
{
	int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + ms * 1000000;

	ts->tv_sec = ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
	if (ts->tv_nsec < 0) {
		ts->tv_nsec += 1000000000;
		ts->tv_sec--;
	}
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
	int r = real()(id, ts);

	if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI))
		shift(ts, current_offset_ms());
	return r;
}

int gettimeofday(struct timeval *tv, void *tz)
{
	struct timespec ts;

	(void)tz;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return -1;
	tv->tv_sec = ts.tv_sec; /* glibc declares tv nonnull */
	tv->tv_usec = ts.tv_nsec / 1000;
	return 0;
}

time_t time(time_t *t)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return (time_t)-1;
	if (t)
		*t = ts.tv_sec;
	return ts.tv_sec;
}
