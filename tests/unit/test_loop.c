/* Event loop: timers on a fake clock, fds, cross-thread tasks, signals. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop/loop.h"

static uint64_t fake_now_ns;

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now_ns;
}

static void advance_ms(uint64_t ms)
{
	fake_now_ns += ms * 1000000u;
}

struct counter {
	int runs;
	int64_t again; /* what the timer callback returns */
	uint64_t order[8];
	struct hc_loop *loop;
	uint64_t victim; /* timer to delete from inside a callback */
};

static int64_t count_timer(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct counter *c = arg;

	(void)loop;
	if (c->runs < 8)
		c->order[c->runs] = id;
	c->runs++;
	return c->again;
}

static void test_timers_fire_in_deadline_order(void **state)
{
	struct hc_loop *loop = hc_loop_new(fake_clock, NULL);
	struct counter c = { .again = HC_LOOP_TIMER_DONE };
	uint64_t t30, t10, t20;

	(void)state;
	t30 = hc_loop_add_timer(loop, 30, count_timer, &c);
	t10 = hc_loop_add_timer(loop, 10, count_timer, &c);
	t20 = hc_loop_add_timer(loop, 20, count_timer, &c);
	assert_true(t30 && t10 && t20);
	assert_int_equal(hc_loop_run_once(loop, 0), 0);
	advance_ms(9);
	hc_loop_run_once(loop, 0);
	assert_int_equal(c.runs, 0);
	advance_ms(25);
	hc_loop_run_once(loop, 0);
	assert_int_equal(c.runs, 3);
	assert_int_equal(c.order[0], t10);
	assert_int_equal(c.order[1], t20);
	assert_int_equal(c.order[2], t30);
	hc_loop_free(loop);
}

static void test_timer_repeats_from_now_and_can_be_deleted(void **state)
{
	struct hc_loop *loop = hc_loop_new(fake_clock, NULL);
	struct counter c = { .again = 100 };
	uint64_t id;

	(void)state;
	id = hc_loop_add_timer(loop, 100, count_timer, &c);
	for (int i = 0; i < 5; i++) {
		advance_ms(100);
		hc_loop_run_once(loop, 0);
	}
	assert_int_equal(c.runs, 5);
	/* A long stall fires once, not once per missed period. */
	advance_ms(1000);
	hc_loop_run_once(loop, 0);
	assert_int_equal(c.runs, 6);
	assert_int_equal(hc_loop_del_timer(loop, id), 0);
	assert_int_equal(hc_loop_del_timer(loop, id), -ENOENT);
	advance_ms(1000);
	hc_loop_run_once(loop, 0);
	assert_int_equal(c.runs, 6);
	hc_loop_free(loop);
}

static int64_t self_deleting_timer(struct hc_loop *loop, uint64_t id, void *arg)
{
	struct counter *c = arg;

	c->runs++;
	assert_int_equal(hc_loop_del_timer(loop, id), 0);
	if (c->victim)
		assert_int_equal(hc_loop_del_timer(loop, c->victim), 0);
	return 10; /* ignored: the timer was deleted */
}

static void test_timer_deletes_itself_and_others(void **state)
{
	struct hc_loop *loop = hc_loop_new(fake_clock, NULL);
	struct counter c = { 0 }, other = { .again = HC_LOOP_TIMER_DONE };

	(void)state;
	hc_loop_add_timer(loop, 5, self_deleting_timer, &c);
	c.victim = hc_loop_add_timer(loop, 50, count_timer, &other);
	advance_ms(5);
	hc_loop_run_once(loop, 0);
	advance_ms(100);
	hc_loop_run_once(loop, 0);
	assert_int_equal(c.runs, 1);
	assert_int_equal(other.runs, 0);
	hc_loop_free(loop);
}

struct fd_state {
	int reads;
	char last;
	int other_fd;
};

static int64_t mark_fired(struct hc_loop *loop, uint64_t id, void *arg)
{
	(void)loop;
	(void)id;
	(*(int *)arg)++;
	return HC_LOOP_TIMER_DONE;
}

/* Thousands of timers cancelled in a scattered order: the others still fire
 * once each, and ids stay unique when slots are
 * reused (a fired or cancelled id is unknown, never someone else's). */
static void test_many_timers_cancelled_in_any_order(void **state)
{
	enum { N = 4000 };
	struct hc_loop *loop = hc_loop_new(fake_clock, NULL);
	uint64_t *ids = calloc(N, sizeof(*ids)), reused;
	int *fired = calloc(N, sizeof(*fired));
	bool *cancelled = calloc(N, sizeof(*cancelled));

	(void)state;
	assert_non_null(ids);
	assert_non_null(fired);
	assert_non_null(cancelled);
	for (int i = 0; i < N; i++) {
		ids[i] = hc_loop_add_timer(loop, 1 + (uint64_t)(i * 7919 % N), mark_fired, &fired[i]);
		assert_true(ids[i] != 0);
	}
	for (int i = 0; i < N; i += 3) {
		size_t k = (size_t)i * 2654435761u % N;

		assert_int_equal(hc_loop_del_timer(loop, ids[k]), cancelled[k] ? -ENOENT : 0);
		cancelled[k] = true;
	}
	assert_int_equal(hc_loop_del_timer(loop, ids[0]), -ENOENT); /* cancelled above */
	/* a new timer reuses a freed slot under a new id */
	reused = hc_loop_add_timer(loop, 1, count_timer, &(struct counter){ .again = -1 });
	assert_true(reused != 0);
	for (int i = 0; i < N; i++)
		assert_true(reused != ids[i]);
	assert_int_equal(hc_loop_del_timer(loop, reused), 0);
	advance_ms(N + 1);
	hc_loop_run_once(loop, 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(fired[i], cancelled[i] ? 0 : 1);
		assert_int_equal(hc_loop_del_timer(loop, ids[i]), -ENOENT);
	}
	hc_loop_free(loop);
	free(ids);
	free(fired);
	free(cancelled);
}

static void on_readable(struct hc_loop *loop, int fd, unsigned events, void *arg)
{
	struct fd_state *s = arg;

	assert_true(events & HC_LOOP_READ);
	assert_int_equal(read(fd, &s->last, 1), 1);
	s->reads++;
	/* Removing a watch whose event is pending in the same batch must be safe. */
	if (s->other_fd >= 0)
		hc_loop_del_fd(loop, s->other_fd);
}

static void test_fd_events_and_removal_within_a_batch(void **state)
{
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	struct fd_state a = { .other_fd = -1 }, b = { .other_fd = -1 };
	int p1[2], p2[2];

	(void)state;
	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	a.other_fd = p2[0];
	b.other_fd = p1[0];
	assert_int_equal(hc_loop_add_fd(loop, p1[0], HC_LOOP_READ, on_readable, &a), 0);
	assert_int_equal(hc_loop_add_fd(loop, p2[0], HC_LOOP_READ, on_readable, &b), 0);
	assert_int_equal(hc_loop_add_fd(loop, p2[0], HC_LOOP_READ, on_readable, &b), -EEXIST);
	assert_int_equal(write(p1[1], "x", 1), 1);
	assert_int_equal(write(p2[1], "y", 1), 1);
	hc_loop_run_once(loop, 1000);
	/* Exactly one ran; it removed the other before its event was handled. */
	assert_int_equal(a.reads + b.reads, 1);
	assert_int_equal(hc_loop_del_fd(loop, a.reads ? p1[0] : p2[0]), 0);
	assert_int_equal(hc_loop_del_fd(loop, p1[0]), -ENOENT);
	hc_loop_free(loop);
	close(p1[0]), close(p1[1]), close(p2[0]), close(p2[1]);
}

struct post_state {
	struct hc_loop *loop;
	int seen[1000];
	int n;
};

static void record_task(void *arg)
{
	int *slot = arg;

	(*slot)++;
}

static void *poster(void *arg)
{
	struct post_state *s = arg;

	for (int i = 0; i < 1000; i++)
		assert_int_equal(hc_loop_post(s->loop, record_task, &s->seen[i]), 0);
	return NULL;
}

static void stop_task(void *arg)
{
	hc_loop_stop(arg);
}

static void test_tasks_posted_from_another_thread_run_once_each(void **state)
{
	struct post_state s = { .loop = hc_loop_new(NULL, NULL) };
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, poster, &s), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(hc_loop_post(s.loop, stop_task, s.loop), 0);
	assert_int_equal(hc_loop_run(s.loop), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(s.seen[i], 1);
	hc_loop_free(s.loop);
}

static void on_signal(struct hc_loop *loop, int signo, void *arg)
{
	*(int *)arg = signo;
	hc_loop_stop(loop);
}

static void test_signals_arrive_through_the_loop(void **state)
{
	struct hc_loop *loop = hc_loop_new(NULL, NULL);
	int got = 0;

	(void)state;
	assert_int_equal(hc_loop_watch_signal(loop, SIGUSR1, on_signal, &got), 0);
	assert_int_equal(hc_loop_watch_signal(loop, SIGUSR1, on_signal, &got), -EEXIST);
	assert_int_equal(kill(getpid(), SIGUSR1), 0); /* blocked: queued for the signalfd */
	assert_int_equal(hc_loop_run(loop), 0);
	assert_int_equal(got, SIGUSR1);
	hc_loop_free(loop);
}

/* A signal ignored by inheritance (a shell's `cmd &` ignores SIGINT) still
 * arrives once the loop watches it. */
static void test_inherited_ignored_signal_arrives(void **state)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, now;
	struct hc_loop *loop;
	int got = 0;

	(void)state;
	assert_int_equal(sigaction(SIGUSR2, &ign, NULL), 0);
	loop = hc_loop_new(NULL, NULL);
	assert_int_equal(hc_loop_watch_signal(loop, SIGUSR2, on_signal, &got), 0);
	assert_int_equal(sigaction(SIGUSR2, NULL, &now), 0);
	assert_true(now.sa_handler == SIG_DFL);
	assert_int_equal(kill(getpid(), SIGUSR2), 0);
	assert_int_equal(hc_loop_run(loop), 0);
	assert_int_equal(got, SIGUSR2);
	hc_loop_free(loop);
}

static void before_sleep(void *arg)
{
	(*(int *)arg)++;
}

static void test_before_sleep_runs_each_iteration(void **state)
{
	struct hc_loop *loop = hc_loop_new(fake_clock, NULL);
	int n = 0;

	(void)state;
	hc_loop_set_before_sleep(loop, before_sleep, &n);
	hc_loop_run_once(loop, 0);
	hc_loop_run_once(loop, 0);
	assert_int_equal(n, 2);
	hc_loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timers_fire_in_deadline_order),
		cmocka_unit_test(test_timer_repeats_from_now_and_can_be_deleted),
		cmocka_unit_test(test_timer_deletes_itself_and_others),
		cmocka_unit_test(test_many_timers_cancelled_in_any_order),
		cmocka_unit_test(test_fd_events_and_removal_within_a_batch),
		cmocka_unit_test(test_tasks_posted_from_another_thread_run_once_each),
		cmocka_unit_test(test_signals_arrive_through_the_loop),
		cmocka_unit_test(test_inherited_ignored_signal_arrives),
		cmocka_unit_test(test_before_sleep_runs_each_iteration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
