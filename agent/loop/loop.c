/* epoll event loop with a timer heap, signalfd and an eventfd task queue. */
#include "loop/loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 64

struct fd_watch {
	hc_loop_fd_fn *fn;
	void *arg;
	unsigned events;
	uint32_t gen; /* bumped on every add, so stale epoll events are ignored */
};

struct timer {
	uint64_t id; /* a generation above, the slot below: found in O(1) */
	uint64_t deadline_ns;
	hc_loop_timer_fn *fn;
	void *arg;
	size_t pos; /* in the heap, while it is there */
};

struct signal_watch {
	hc_loop_signal_fn *fn;
	void *arg;
};

struct hc_loop {
	int epfd;
	int wakefd;
	int sigfd;
	sigset_t sigmask;
	struct signal_watch signals[NSIG];

	struct fd_watch *fds; /* indexed by fd */
	int nfds;

	struct timer **heap; /* min-heap on deadline_ns */
	size_t nheap, capheap;
	/* Every live timer by slot (the low 32 bits of its id), so cancelling
	 * costs O(log n) however many timers there are (a simulated cluster
	 * of 1,000 engines keeps tens of thousands in one loop). */
	struct timer **slots;
	uint32_t nslots, capslots;
	uint32_t *free_slots;
	uint32_t nfree;
	uint64_t next_timer_id;
	/* Timers freed, kept for the next: many live for a query's deadline
	 * (90 s), and allocated each time they were scattered over malloc's
	 * pages among short-lived chunks (docs/operations.md). */
	struct timer *spare;
	size_t nspare;
	uint64_t running_timer; /* id of the timer whose callback runs now */
	bool running_cancelled;

	pthread_mutex_t task_lock;
	struct hc_loop_task *task_head, *task_tail;

	hc_loop_task_fn *before_sleep;
	void *before_sleep_arg;

	hc_loop_clock_fn *clock;
	void *clock_ctx;
	atomic_bool stop;
};

/* Tags for the loop's own descriptors in epoll_event.data. */
#define TAG_WAKE (UINT64_MAX)
#define TAG_SIGNAL (UINT64_MAX - 1)

static uint64_t monotonic_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t hc_loop_now_ns(const struct hc_loop *loop)
{
	return loop->clock(loop->clock_ctx);
}

uint64_t hc_loop_now_ms(const struct hc_loop *loop)
{
	return hc_loop_now_ns(loop) / 1000000u;
}

struct hc_loop *hc_loop_new(hc_loop_clock_fn *clock, void *clock_ctx)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };
	struct hc_loop *loop = calloc(1, sizeof(*loop));
	int err;

	if (!loop)
		return NULL;
	loop->epfd = loop->wakefd = loop->sigfd = -1;
	loop->clock = clock ? clock : monotonic_ns;
	loop->clock_ctx = clock_ctx;
	sigemptyset(&loop->sigmask);
	pthread_mutex_init(&loop->task_lock, NULL);

	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		goto fail;
	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop->wakefd < 0)
		goto fail;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
		goto fail;
	return loop;
fail:
	err = errno;
	hc_loop_free(loop);
	errno = err;
	return NULL;
}

void hc_loop_free(struct hc_loop *loop)
{
	struct hc_loop_task *t, *next;

	if (!loop)
		return;
	for (t = loop->task_head; t; t = next) {
		next = t->next;
		if (t->owned_by_loop)
			free(t);
	}
	for (size_t i = 0; i < loop->nheap; i++)
		free(loop->heap[i]);
	while (loop->spare) {
		struct timer *spare = loop->spare;

		loop->spare = spare->arg;
		free(spare);
	}
	free(loop->heap);
	free(loop->slots);
	free(loop->free_slots);
	free(loop->fds);
	if (loop->sigfd >= 0)
		close(loop->sigfd);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	pthread_mutex_destroy(&loop->task_lock);
	free(loop);
}

/* ---- file descriptors ---- */

static uint32_t to_epoll(unsigned events)
{
	return (events & HC_LOOP_READ ? EPOLLIN | EPOLLRDHUP : 0) |
	       (events & HC_LOOP_WRITE ? EPOLLOUT : 0);
}

static int grow_fds(struct hc_loop *loop, int fd)
{
	int n = loop->nfds ? loop->nfds : 64;
	struct fd_watch *fds;

	while (n <= fd)
		n *= 2;
	fds = realloc(loop->fds, (size_t)n * sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	memset(fds + loop->nfds, 0, (size_t)(n - loop->nfds) * sizeof(*fds));
	loop->fds = fds;
	loop->nfds = n;
	return 0;
}

int hc_loop_add_fd(struct hc_loop *loop, int fd, unsigned events, hc_loop_fd_fn *fn, void *arg)
{
	struct epoll_event ev;
	struct fd_watch *w;
	int err;

	if (fd < 0 || !fn)
		return -EINVAL;
	if (fd >= loop->nfds && (err = grow_fds(loop, fd)) < 0)
		return err;
	w = &loop->fds[fd];
	if (w->fn)
		return -EEXIST;
	w->gen++;
	ev.events = to_epoll(events);
	ev.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	w->fn = fn;
	w->arg = arg;
	w->events = events;
	return 0;
}

int hc_loop_set_fd_events(struct hc_loop *loop, int fd, unsigned events)
{
	struct epoll_event ev;
	struct fd_watch *w;

	if (fd < 0 || fd >= loop->nfds || !loop->fds[fd].fn)
		return -ENOENT;
	w = &loop->fds[fd];
	if (w->events == events)
		return 0;
	ev.events = to_epoll(events);
	ev.data.u64 = (uint64_t)w->gen << 32 | (uint32_t)fd;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -errno;
	w->events = events;
	return 0;
}

int hc_loop_del_fd(struct hc_loop *loop, int fd)
{
	if (fd < 0 || fd >= loop->nfds || !loop->fds[fd].fn)
		return -ENOENT;
	loop->fds[fd].fn = NULL;
	loop->fds[fd].arg = NULL;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) < 0)
		return -errno;
	return 0;
}

/* ---- timers ---- */

static void heap_swap(struct timer **h, size_t a, size_t b)
{
	struct timer *t = h[a];

	h[a] = h[b];
	h[b] = t;
	h[a]->pos = a;
	h[b]->pos = b;
}

static void heap_up(struct timer **h, size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (h[parent]->deadline_ns <= h[i]->deadline_ns)
			break;
		heap_swap(h, parent, i);
		i = parent;
	}
}

static void heap_down(struct timer **h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;

		if (l < n && h[l]->deadline_ns < h[min]->deadline_ns)
			min = l;
		if (r < n && h[r]->deadline_ns < h[min]->deadline_ns)
			min = r;
		if (min == i)
			return;
		heap_swap(h, i, min);
		i = min;
	}
}

static int heap_push(struct hc_loop *loop, struct timer *t)
{
	if (loop->nheap == loop->capheap) {
		size_t cap = loop->capheap ? loop->capheap * 2 : 16;
		struct timer **h = realloc(loop->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		loop->heap = h;
		loop->capheap = cap;
	}
	loop->heap[loop->nheap] = t;
	t->pos = loop->nheap;
	heap_up(loop->heap, loop->nheap++);
	return 0;
}

static struct timer *heap_remove(struct hc_loop *loop, size_t i)
{
	struct timer *t = loop->heap[i];

	loop->heap[i] = loop->heap[--loop->nheap];
	loop->heap[i]->pos = i;
	if (i < loop->nheap) {
		heap_down(loop->heap, loop->nheap, i);
		heap_up(loop->heap, i);
	}
	return t;
}

/* Gives t a slot and an id that names it. 0 or -ENOMEM. */
static int slot_take(struct hc_loop *loop, struct timer *t)
{
	uint32_t slot;

	if (loop->nfree) {
		slot = loop->free_slots[--loop->nfree];
	} else {
		if (loop->nslots == loop->capslots) {
			uint32_t cap = loop->capslots ? loop->capslots * 2 : 16;
			struct timer **s = realloc(loop->slots, cap * sizeof(*s));
			uint32_t *f;

			if (!s)
				return -ENOMEM;
			loop->slots = s;
			/* room to free every slot later: releasing never fails */
			f = realloc(loop->free_slots, cap * sizeof(*f));
			if (!f)
				return -ENOMEM;
			loop->free_slots = f;
			loop->capslots = cap;
		}
		slot = loop->nslots++;
	}
	loop->slots[slot] = t;
	t->id = ++loop->next_timer_id << 32 | slot; /* never 0: the generation is >= 1 */
	return 0;
}

static void slot_release(struct hc_loop *loop, struct timer *t)
{
	uint32_t slot = (uint32_t)t->id;

	loop->slots[slot] = NULL;
	loop->free_slots[loop->nfree++] = slot;
}

/* The live timer with this id, or NULL. */
static struct timer *timer_find(const struct hc_loop *loop, uint64_t id)
{
	uint32_t slot = (uint32_t)id;
	struct timer *t = slot < loop->nslots ? loop->slots[slot] : NULL;

	return t && t->id == id ? t : NULL;
}

#define TIMER_SPARE_MAX 512 /* 20 KB at most */

static void timer_free(struct hc_loop *loop, struct timer *t)
{
	slot_release(loop, t);
	if (loop->nspare >= TIMER_SPARE_MAX) {
		free(t);
		return;
	}
	t->arg = loop->spare; /* the spare list's link */
	loop->spare = t;
	loop->nspare++;
}

static struct timer *timer_alloc(struct hc_loop *loop)
{
	struct timer *t = loop->spare;

	if (!t)
		return malloc(sizeof(*t));
	loop->spare = t->arg;
	loop->nspare--;
	return t;
}

uint64_t hc_loop_add_timer(struct hc_loop *loop, uint64_t delay_ms, hc_loop_timer_fn *fn,
			   void *arg)
{
	struct timer *t;
	int err;

	if (!fn) {
		errno = EINVAL;
		return 0;
	}
	t = timer_alloc(loop);
	if (!t)
		return 0;
	err = slot_take(loop, t);
	if (err < 0) {
		free(t);
		errno = -err;
		return 0;
	}
	t->deadline_ns = hc_loop_now_ns(loop) + delay_ms * 1000000u;
	t->fn = fn;
	t->arg = arg;
	err = heap_push(loop, t);
	if (err < 0) {
		timer_free(loop, t);
		errno = -err;
		return 0;
	}
	return t->id;
}

int hc_loop_del_timer(struct hc_loop *loop, uint64_t id)
{
	struct timer *t;

	if (id && id == loop->running_timer) {
		/* out of the heap while it runs; run_timers frees it */
		loop->running_cancelled = true;
		return 0;
	}
	t = timer_find(loop, id);
	if (!t)
		return -ENOENT;
	timer_free(loop, heap_remove(loop, t->pos));
	return 0;
}

static int run_timers(struct hc_loop *loop)
{
	uint64_t now = hc_loop_now_ns(loop);
	int ran = 0;

	while (loop->nheap && loop->heap[0]->deadline_ns <= now) {
		struct timer *t = heap_remove(loop, 0);
		int64_t again;

		loop->running_timer = t->id;
		loop->running_cancelled = false;
		again = t->fn(loop, t->id, t->arg);
		loop->running_timer = 0;
		ran++;
		if (again < 0 || loop->running_cancelled) {
			timer_free(loop, t);
			continue;
		}
		/* Re-arm from now, not from the old deadline: a stalled loop must
		 * not fire a burst of catch-up runs. */
		t->deadline_ns = hc_loop_now_ns(loop) + (uint64_t)again * 1000000u;
		if (heap_push(loop, t) < 0)
			timer_free(loop, t);
	}
	return ran;
}

static int next_timeout_ms(const struct hc_loop *loop, int limit_ms)
{
	uint64_t now, deadline, ms;

	if (!loop->nheap)
		return limit_ms;
	now = hc_loop_now_ns(loop);
	deadline = loop->heap[0]->deadline_ns;
	if (deadline <= now)
		return 0;
	/* Round up so we never wake just before the deadline and spin. */
	ms = (deadline - now + 999999u) / 1000000u;
	if (ms > INT32_MAX)
		ms = INT32_MAX;
	if (limit_ms >= 0 && (uint64_t)limit_ms < ms)
		return limit_ms;
	return (int)ms;
}

/* ---- signals ---- */

static int reset_ignored(int signo)
{
	struct sigaction sa;

	if (sigaction(signo, NULL, &sa) < 0)
		return -1;
	if (sa.sa_handler != SIG_IGN)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	return sigaction(signo, &sa, NULL);
}

int hc_loop_watch_signal(struct hc_loop *loop, int signo, hc_loop_signal_fn *fn, void *arg)
{
	sigset_t one;
	int fd, err;

	if (signo <= 0 || signo >= NSIG || !fn)
		return -EINVAL;
	if (loop->signals[signo].fn)
		return -EEXIST;
	sigemptyset(&one);
	sigaddset(&one, signo);
	err = pthread_sigmask(SIG_BLOCK, &one, NULL);
	if (err)
		return -err;
	/* A disposition of SIG_IGN survives exec (a shell's `cmd &` gives one
	 * for SIGINT and SIGQUIT, nohup for SIGHUP), and an ignored signal is
	 * discarded before the signalfd could read it. Blocked now, so the
	 * default action never runs: the loop is the signal's only reader. */
	if (reset_ignored(signo) < 0)
		return -errno;
	sigaddset(&loop->sigmask, signo);
	fd = signalfd(loop->sigfd, &loop->sigmask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0) {
		err = -errno;
		sigdelset(&loop->sigmask, signo);
		return err;
	}
	if (loop->sigfd < 0) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_SIGNAL };

		if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			err = -errno;
			close(fd);
			sigdelset(&loop->sigmask, signo);
			return err;
		}
		loop->sigfd = fd;
	}
	loop->signals[signo].fn = fn;
	loop->signals[signo].arg = arg;
	return 0;
}

static int run_signals(struct hc_loop *loop)
{
	struct signalfd_siginfo si;
	int ran = 0;

	while (read(loop->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		struct signal_watch *w;

		if (si.ssi_signo >= NSIG)
			continue;
		w = &loop->signals[si.ssi_signo];
		if (w->fn) {
			w->fn(loop, (int)si.ssi_signo, w->arg);
			ran++;
		}
	}
	return ran;
}

/* ---- tasks from other threads ---- */

static void wake(struct hc_loop *loop)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (write(loop->wakefd, &one, sizeof(one)) < 0) {
		/* nothing to do */
	}
}

static void enqueue(struct hc_loop *loop, struct hc_loop_task *t)
{
	bool was_empty;

	t->next = NULL;
	pthread_mutex_lock(&loop->task_lock);
	was_empty = !loop->task_head;
	if (loop->task_tail)
		loop->task_tail->next = t;
	else
		loop->task_head = t;
	loop->task_tail = t;
	pthread_mutex_unlock(&loop->task_lock);
	if (was_empty)
		wake(loop);
}

int hc_loop_post(struct hc_loop *loop, hc_loop_task_fn *fn, void *arg)
{
	struct hc_loop_task *t = malloc(sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->fn = fn;
	t->arg = arg;
	t->owned_by_loop = 1;
	enqueue(loop, t);
	return 0;
}

void hc_loop_post_task(struct hc_loop *loop, struct hc_loop_task *task)
{
	task->owned_by_loop = 0;
	enqueue(loop, task);
}

static int run_tasks(struct hc_loop *loop)
{
	struct hc_loop_task *t, *next;
	uint64_t count;
	int ran = 0;

	if (read(loop->wakefd, &count, sizeof(count)) < 0) {
		/* EAGAIN: a wakeup from hc_loop_stop() was already consumed */
	}
	pthread_mutex_lock(&loop->task_lock);
	t = loop->task_head;
	loop->task_head = loop->task_tail = NULL;
	pthread_mutex_unlock(&loop->task_lock);
	for (; t; t = next) {
		bool owned = t->owned_by_loop;

		/* Read next first: fn may free or re-post an embedded node. */
		next = t->next;
		t->fn(t->arg);
		if (owned)
			free(t);
		ran++;
	}
	return ran;
}

void hc_loop_set_before_sleep(struct hc_loop *loop, hc_loop_task_fn *fn, void *arg)
{
	loop->before_sleep = fn;
	loop->before_sleep_arg = arg;
}

/* ---- running ---- */

int hc_loop_run_once(struct hc_loop *loop, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];
	int n, ran = 0;

	if (loop->before_sleep)
		loop->before_sleep(loop->before_sleep_arg);
	n = epoll_wait(loop->epfd, evs, MAX_EVENTS, next_timeout_ms(loop, timeout_ms));
	if (n < 0)
		return errno == EINTR ? 0 : -errno;

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		struct fd_watch *w;
		unsigned events = 0;
		int fd;

		if (tag == TAG_WAKE) {
			ran += run_tasks(loop);
			continue;
		}
		if (tag == TAG_SIGNAL) {
			ran += run_signals(loop);
			continue;
		}
		fd = (int)(uint32_t)tag;
		w = fd < loop->nfds ? &loop->fds[fd] : NULL;
		/* An earlier callback in this batch may have removed (or replaced)
		 * this watch; the generation tells. */
		if (!w || !w->fn || w->gen != (uint32_t)(tag >> 32))
			continue;
		if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			events |= HC_LOOP_READ;
		if (evs[i].events & EPOLLOUT)
			events |= HC_LOOP_WRITE;
		events &= w->events ? w->events : HC_LOOP_READ;
		if (!events)
			events = HC_LOOP_READ; /* error on a write-only watch */
		w->fn(loop, fd, events, w->arg);
		ran++;
	}
	return ran + run_timers(loop);
}

int hc_loop_run(struct hc_loop *loop)
{
	while (!atomic_load(&loop->stop)) {
		int r = hc_loop_run_once(loop, -1);

		if (r < 0)
			return r;
	}
	atomic_store(&loop->stop, false);
	return 0;
}

void hc_loop_stop(struct hc_loop *loop)
{
	atomic_store(&loop->stop, true);
	wake(loop);
}
