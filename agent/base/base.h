/*
 * Small helpers every module needs, written once: the error type, UUIDs,
 * directories and atomic file writes, whole writes to fds, deadlines for
 * blocking I/O. base is the leaf layer: it
 * includes no other agent module, and any module may include it. The
 * intrusive list is header-only and lives apart in base/list.h.
 */
#ifndef HC_BASE_H
#define HC_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* ---- errors (err.c) ---- */

/*
 * What a failed call tells its caller beyond its -errno return: the same
 * code and one line for a person ("cannot open /x: No such file or
 * directory"), which the CLI and the API pass on as they are. Callers own
 * it (on the stack); functions that take one fill it only when they fail.
 */
struct hc_err {
	int code;      /* -errno, as the call returned; 0 before a failure */
	char msg[512]; /* NUL-terminated, without a trailing newline */
};

/* Sets err (NULL is allowed: the message is dropped) to code and the
 * formatted message, truncated to fit; returns code, so a failure path is
 * `return hc_err_set(err, -EINVAL, "bad %s", what);`. */
int hc_err_set(struct hc_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same with a va_list, for a module's own variadic fail helper. */
int hc_err_vset(struct hc_err *err, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* ---- UUIDs (uuid.c) ---- */

#define HC_UUID_LEN 36 /* text form, without the NUL */

/* Writes a new random UUID (version 4, RFC 4122 variant) in canonical
 * lowercase text into out. Does not block once the kernel's random pool is
 * ready. Returns 0 or -errno. */
int hc_uuid_new(char out[HC_UUID_LEN + 1]);

/* 1 if s is a UUID in canonical lowercase text form (8-4-4-4-12 hex
 * digits), else 0; NULL is 0. Any version and variant is accepted: ids made
 * by other implementations (upstream's workload ids) must pass. */
int hc_uuid_valid(const char *s);

/* ---- files (file.c) ---- */

/* Creates path and its missing parents with mode (before the umask), like
 * mkdir -p. A component that already exists, whatever it is, counts as
 * made: callers that need a directory check for one. 0 or -errno,
 * -ENAMETOOLONG for a path over PATH_MAX. */
int hc_mkdir_p(const char *path, mode_t mode);

/* Replaces path with len bytes of data so that readers see the old file or
 * the new one, never a part: a temporary file in the same directory
 * (O_EXCL, O_NOFOLLOW), all written, fsync, rename over path, fsync of the
 * directory. The file gets exactly mode, whatever the umask. On failure the
 * temporary file is removed and path is as it was, except when only the
 * directory's fsync failed (the new file is in place, maybe not durable).
 * Blocks on the disk. 0 or -errno. */
int hc_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* As hc_file_write_atomic, but never replaces: -EEXIST when path exists
 * (checked by the final rename itself, so two writers racing cannot both
 * win). For secrets made once and kept. */
int hc_file_create_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads the whole file at path (at most size bytes) into buf and sets *len,
 * refusing a secret others could read, as ssh does with keys: path must be
 * a regular file (a symbolic link is not followed) with no group or other
 * permission bits. Blocks on the disk. 0, -EPERM for such a file, -EFBIG
 * when it holds size bytes or more, or -errno. The caller wipes buf. */
int hc_file_read_private(const char *path, void *buf, size_t size, size_t *len);

/* ---- whole writes (io.c) ---- */

/* Writes all len bytes of buf to fd with write(2), retrying after EINTR
 * and short writes. Blocks as fd does. 0 or -errno (-EAGAIN from a
 * non-blocking fd that is full). */
int hc_write_all(int fd, const void *buf, size_t len);

/* Reads from fd until len bytes or the end of the file, retrying after
 * EINTR and short reads. Blocks as fd does. The bytes read (< len only at
 * the end), or -errno. */
ssize_t hc_read_full(int fd, void *buf, size_t len);

/* Sends all len bytes of buf on socket fd. MSG_NOSIGNAL: a peer that hung
 * up gives -EPIPE, not SIGPIPE. When a non-blocking socket is full it
 * waits until it drains, until *deadline (then -ETIMEDOUT), or without
 * limit if deadline is NULL. 0 or -errno. */
int hc_send_all(int fd, const void *buf, size_t len, const struct timespec *deadline);

/* ---- deadlines (deadline.c) ---- */

/* A point on CLOCK_MONOTONIC ms milliseconds from now, into *d. */
void hc_deadline_in(struct timespec *d, int64_t ms);

/* Milliseconds from now until *d; zero or negative once it has passed. */
int64_t hc_deadline_left_ms(const struct timespec *d);

/* Waits until fd is ready for events (POLLIN, POLLOUT...) or *d passes,
 * retrying after EINTR. 0 when ready (or in error or hung up: the next
 * read or write tells), -ETIMEDOUT at the deadline, else -errno. */
int hc_deadline_wait_fd(int fd, short events, const struct timespec *d);

/* ---- network namespaces (netns.c) ---- */

/* Moves the calling thread into the network namespace at path (a bind
 * mount or /proc/PID/ns/net), keeping a handle on its own in *saved.
 * 0 or -errno (nothing changed). Blocks briefly. */
int hc_netns_enter(const char *path, int *saved);
/* Moves the thread back into saved and closes it. 0 or -errno: a thread
 * that cannot go back must not serve anything else. */
int hc_netns_leave(int saved);

/* ---- fault points (fault.c) ---- */

/*
 * Named steps where a test build can crash the agent on purpose, so the
 * chaos tests (tests/chaos) see what a crash at exactly that step leaves
 * behind. HYPERCORE_FAULT="POINT:ACTION[@N][,...]" arms them, e.g.
 * "spawn:after_pull:kill" or "stop:after_container:kill@2"; ACTION is
 * "kill" (SIGKILL to the agent itself, as the OOM killer or a power loss
 * would end it) and N the hit that fires (default 1). The points are listed
 * in docs/operations.md.
 *
 * Built with HC_FAULTS (make FAULTS=1, the default for development and
 * test builds): a point costs one load and an untaken branch until a spec
 * arms one. Built without it (make FAULTS=0, a release build), HC_FAULT()
 * compiles to nothing and hc_fault_init() refuses any spec, so an agent
 * cannot be started believing it is being tested.
 */
#ifdef HC_FAULTS
extern int hc_fault_armed; /* nonzero once hc_fault_init armed a point */
/* Called by HC_FAULT() when armed: fires the action if point is armed. */
void hc_fault_hit(const char *point);
#define HC_FAULT(point)                                                   \
	do {                                                              \
		if (__builtin_expect(hc_fault_armed, 0))                  \
			hc_fault_hit(point);                              \
	} while (0)
#else
#define HC_FAULT(point) \
	do {            \
	} while (0)
#endif /* HC_FAULTS */

/* Arms the points spec names (NULL or "" arms none). Call once, before any
 * thread starts. 0, -EINVAL for a spec that does not parse (err says
 * where), -ENOTSUP for a spec given to a build without fault points. */
int hc_fault_init(const char *spec, struct hc_err *err);

/* 1 if this build honours HYPERCORE_FAULT, else 0. */
int hc_fault_supported(void);

#endif /* HC_BASE_H */
