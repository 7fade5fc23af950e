/*
 * The agent's event loop: one thread waits in epoll for file descriptors,
 * timers, signals and tasks posted by other threads, and runs their callbacks.
 * Everything but hc_loop_post() and hc_loop_stop() must be called on the loop
 * thread. In the spirit of Redis's ae; time comes through a clock function so
 * tests can drive it.
 */
#ifndef HC_LOOP_H
#define HC_LOOP_H

#include <stdint.h>

struct hc_loop;

/* Event bits for file descriptors. Errors and hang-ups are reported as
 * HC_LOOP_READ so the reader sees them through read(2). */
#define HC_LOOP_READ 0x1u
#define HC_LOOP_WRITE 0x2u

/* A timer callback returns the delay in ms until it runs again, or this. */
#define HC_LOOP_TIMER_DONE (-1)

typedef void hc_loop_fd_fn(struct hc_loop *loop, int fd, unsigned events, void *arg);
typedef int64_t hc_loop_timer_fn(struct hc_loop *loop, uint64_t id, void *arg);
typedef void hc_loop_signal_fn(struct hc_loop *loop, int signo, void *arg);
typedef void hc_loop_task_fn(void *arg);
/* Returns monotonic nanoseconds. */
typedef uint64_t hc_loop_clock_fn(void *ctx);

/* clock NULL means CLOCK_MONOTONIC. Returns NULL and sets errno on failure. */
struct hc_loop *hc_loop_new(hc_loop_clock_fn *clock, void *clock_ctx);
/* Closes the loop's own descriptors; registered fds stay open (their owners
 * close them). Tasks still queued are discarded without running. NULL is fine. */
void hc_loop_free(struct hc_loop *loop);

/* Watches fd for events (HC_LOOP_READ|HC_LOOP_WRITE, level-triggered). The
 * caller keeps owning fd and must hc_loop_del_fd() it before closing it.
 * Returns 0, -EEXIST if fd is already watched, or another -errno. */
int hc_loop_add_fd(struct hc_loop *loop, int fd, unsigned events, hc_loop_fd_fn *fn, void *arg);
int hc_loop_set_fd_events(struct hc_loop *loop, int fd, unsigned events);
int hc_loop_del_fd(struct hc_loop *loop, int fd);

/* Runs fn after delay_ms, then again after whatever fn returns. Returns the
 * timer's id (never 0), or 0 with errno set. */
uint64_t hc_loop_add_timer(struct hc_loop *loop, uint64_t delay_ms, hc_loop_timer_fn *fn,
			   void *arg);
/* Cancels a timer, also from inside its own callback. -ENOENT if unknown. */
int hc_loop_del_timer(struct hc_loop *loop, uint64_t id);

/* Delivers signo through the loop instead of asynchronously. Blocks signo in
 * the calling thread: call it before any other thread starts, so they inherit
 * the mask. A disposition of SIG_IGN (inherited across exec) is reset to
 * SIG_DFL, or the signal would never arrive. One handler per signal.
 * Returns 0 or -errno. */
int hc_loop_watch_signal(struct hc_loop *loop, int signo, hc_loop_signal_fn *fn, void *arg);

/* Queues fn(arg) to run on the loop thread, in posting order. Safe from any
 * thread. Returns 0 or -ENOMEM. */
int hc_loop_post(struct hc_loop *loop, hc_loop_task_fn *fn, void *arg);

/* A task node the caller embeds in its own object, for posting that cannot
 * fail. Fill fn and arg; the node must stay valid and must not be posted again
 * until fn has started to run. */
struct hc_loop_task {
	struct hc_loop_task *next;
	hc_loop_task_fn *fn;
	void *arg;
	int owned_by_loop; /* internal: set by hc_loop_post() */
};

/* Queues an embedded task. Safe from any thread. */
void hc_loop_post_task(struct hc_loop *loop, struct hc_loop_task *task);

/* Runs fn(arg) each time before the loop goes to sleep. */
void hc_loop_set_before_sleep(struct hc_loop *loop, hc_loop_task_fn *fn, void *arg);

/* Runs until hc_loop_stop(). Returns 0, or -errno if epoll fails. */
int hc_loop_run(struct hc_loop *loop);
/* One iteration: waits at most timeout_ms (-1: until the next timer or
 * event), then runs what is due. Returns the number of callbacks run or -errno. */
int hc_loop_run_once(struct hc_loop *loop, int timeout_ms);
/* Makes hc_loop_run() return after the current iteration. Any thread. */
void hc_loop_stop(struct hc_loop *loop);

/* The loop clock's current time. */
uint64_t hc_loop_now_ns(const struct hc_loop *loop);
uint64_t hc_loop_now_ms(const struct hc_loop *loop);

#endif /* HC_LOOP_H */
