/* The base helpers: UUIDs, mkdir -p, atomic and whole writes, deadlines, the list. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base.h"
#include "base/list.h"
#include "tmpdir.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	return hc_tmpdir_new(dir, sizeof(dir), "hc-base");
}

static int teardown(void **state)
{
	(void)state;
	return hc_tmpdir_remove(dir);
}

static void in_dir(char *path, size_t len, const char *name)
{
	assert_true(snprintf(path, len, "%s/%s", dir, name) < (int)len);
}

/* The number of entries in d besides . and .. */
static int count_entries(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	int n = 0;

	assert_non_null(dp);
	while ((e = readdir(dp)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dp);
	return n;
}

static char *read_text(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

/* ---- UUIDs ---- */

static void test_uuid_new_is_v4_and_valid(void **state)
{
	char a[HC_UUID_LEN + 1], b[HC_UUID_LEN + 1];

	(void)state;
	assert_int_equal(hc_uuid_new(a), 0);
	assert_int_equal(hc_uuid_new(b), 0);
	assert_int_equal(strlen(a), HC_UUID_LEN);
	assert_true(hc_uuid_valid(a));
	assert_string_not_equal(a, b);
	assert_int_equal(a[14], '4');			   /* version 4 */
	assert_non_null(strchr("89ab", a[19]));		   /* RFC 4122 variant */
}

static void test_uuid_valid_forms(void **state)
{
	static const char *const bad[] = {
		"",
		"0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f1",	   /* 35 */
		"0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f100",   /* 37 */
		"0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f10\n",  /* a newline is not part of it */
		"0B5C3C52-6A11-4C39-9A57-1F0A6B6A2F10",	   /* uppercase */
		"0b5c3c52-6a11-4c39-9a57-1f0a6b6A2f10",	   /* one uppercase digit */
		"0b5c3c52x6a11-4c39-9a57-1f0a6b6a2f10",	   /* a dash missing */
		"0b5c3c526-a11-4c39-9a57-1f0a6b6a2f10",	   /* a dash misplaced */
		"0b5c3c52-6a11-4c39-9a57-1f0a6b6a2g10",	   /* not hex */
		"{0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f1}",   /* braces */
		"0b5c3c526a114c399a571f0a6b6a2f10",	   /* no dashes */
		"../../etc/passwd",
	};

	(void)state;
	assert_false(hc_uuid_valid(NULL));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(hc_uuid_valid(bad[i]));
	assert_true(hc_uuid_valid("0b5c3c52-6a11-4c39-9a57-1f0a6b6a2f10"));
	/* the form is checked, not the version or variant: other
	 * implementations' ids (v1, v7, the nil UUID) pass */
	assert_true(hc_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430c8"));
	assert_true(hc_uuid_valid("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"));
	assert_true(hc_uuid_valid("00000000-0000-0000-0000-000000000000"));
	assert_true(hc_uuid_valid("0b5c3c52-6a11-4c39-0a57-1f0a6b6a2f10")); /* NCS variant */
}

/* ---- mkdir -p ---- */

static void test_mkdir_p(void **state)
{
	char path[PATH_MAX], file[PATH_MAX], *longp;
	struct stat st;

	(void)state;
	in_dir(path, sizeof(path), "a/b/c");
	assert_int_equal(hc_mkdir_p(path, 0700), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* again, and with a trailing slash: what exists is fine */
	assert_int_equal(hc_mkdir_p(path, 0700), 0);
	in_dir(path, sizeof(path), "a/b/c/d/");
	assert_int_equal(hc_mkdir_p(path, 0755), 0);
	in_dir(path, sizeof(path), "a/b/c/d");
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* a file in the way of a parent */
	in_dir(file, sizeof(file), "file");
	assert_int_equal(hc_file_write_atomic(file, "x", 1, 0600), 0);
	in_dir(path, sizeof(path), "file/sub");
	assert_int_equal(hc_mkdir_p(path, 0700), -ENOTDIR);
	assert_int_equal(hc_mkdir_p("", 0700), -ENOENT);
	longp = malloc(PATH_MAX + 1);
	assert_non_null(longp);
	memset(longp, 'a', PATH_MAX);
	longp[PATH_MAX] = '\0';
	assert_int_equal(hc_mkdir_p(longp, 0700), -ENAMETOOLONG);
	free(longp);
}

/* ---- atomic writes ---- */

static void test_atomic_write_content_and_mode(void **state)
{
	char path[PATH_MAX];
	mode_t old = umask(077);
	struct stat st;

	(void)state;
	in_dir(path, sizeof(path), "file");
	assert_int_equal(hc_file_write_atomic(path, "first\n", 6, 0644), 0);
	assert_string_equal(read_text(path), "first\n");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644); /* the umask does not change it */
	/* replacing: new content, new mode, nothing else left in the directory */
	assert_int_equal(hc_file_write_atomic(path, "second", 6, 0600), 0);
	assert_string_equal(read_text(path), "second");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(hc_file_write_atomic(path, "", 0, 0600), 0);
	assert_string_equal(read_text(path), "");
	assert_int_equal(count_entries(dir), 1);
	umask(old);
}

static void test_atomic_write_replaces_a_link_not_its_target(void **state)
{
	char path[PATH_MAX], target[PATH_MAX];
	struct stat st;

	(void)state;
	in_dir(target, sizeof(target), "target");
	in_dir(path, sizeof(path), "link");
	assert_int_equal(hc_file_write_atomic(target, "target", 6, 0600), 0);
	assert_int_equal(symlink(target, path), 0);
	assert_int_equal(hc_file_write_atomic(path, "new", 3, 0600), 0);
	assert_string_equal(read_text(target), "target");
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_string_equal(read_text(path), "new");
	assert_int_equal(count_entries(dir), 2);
}

/* A write that fails half way (here: over the file size limit, which holds
 * for root too) leaves the old file as it was and no temporary file. */
static void test_atomic_write_failure_keeps_the_old_file(void **state)
{
	static char big[64 * 1024];
	char path[PATH_MAX];
	struct rlimit old, small;
	void (*old_handler)(int);

	(void)state;
	in_dir(path, sizeof(path), "file");
	assert_int_equal(hc_file_write_atomic(path, "old", 3, 0644), 0);
	memset(big, 'x', sizeof(big));
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = (struct rlimit){ 4096, old.rlim_max }; /* the hard limit stays */
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(hc_file_write_atomic(path, big, sizeof(big), 0644), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_string_equal(read_text(path), "old");
	assert_int_equal(count_entries(dir), 1);
}

static void test_atomic_write_errors(void **state)
{
	char path[PATH_MAX], sub[PATH_MAX];

	(void)state;
	in_dir(path, sizeof(path), "a/file"); /* no such directory */
	assert_int_equal(hc_file_write_atomic(path, "x", 1, 0600), -ENOENT);
	/* a directory where the file should be: rename fails, nothing left */
	in_dir(sub, sizeof(sub), "sub");
	in_dir(path, sizeof(path), "sub/file");
	assert_int_equal(hc_mkdir_p(path, 0700), 0);
	assert_int_equal(hc_file_write_atomic(sub, "x", 1, 0600), -EISDIR);
	assert_int_equal(count_entries(dir), 1);
	assert_int_equal(count_entries(sub), 1);
}

/* A secret made once is never replaced: neither a file nor a link (even a
 * dangling one) where it goes; nothing is left behind. */
static void test_create_atomic_never_replaces(void **state)
{
	char path[PATH_MAX], link_path[PATH_MAX], target[PATH_MAX];
	struct stat st;

	(void)state;
	in_dir(path, sizeof(path), "secret");
	assert_int_equal(hc_file_create_atomic(path, "one", 3, 0600), 0);
	assert_string_equal(read_text(path), "one");
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(hc_file_create_atomic(path, "two", 3, 0600), -EEXIST);
	assert_string_equal(read_text(path), "one");
	in_dir(link_path, sizeof(link_path), "link");
	in_dir(target, sizeof(target), "elsewhere");
	assert_int_equal(symlink(target, link_path), 0);
	assert_int_equal(hc_file_create_atomic(link_path, "x", 1, 0600), -EEXIST);
	assert_int_equal(lstat(target, &st), -1); /* not written through the link */
	assert_int_equal(count_entries(dir), 2);
}

/* A secret is read only from a regular file nobody but its owner may read. */
static void test_read_private(void **state)
{
	char path[PATH_MAX], link_path[PATH_MAX], buf[8];
	size_t len = 99;

	(void)state;
	in_dir(path, sizeof(path), "key");
	assert_int_equal(hc_file_write_atomic(path, "secret", 6, 0600), 0);
	assert_int_equal(hc_file_read_private(path, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "secret", 6);
	/* exactly the buffer's size: it may have been cut, so refused */
	assert_int_equal(hc_file_read_private(path, buf, 6, &len), -EFBIG);
	for (mode_t m = 0640; m; m = m == 0640 ? 0604 : 0) {
		assert_int_equal(chmod(path, m), 0);
		assert_int_equal(hc_file_read_private(path, buf, sizeof(buf), &len), -EPERM);
	}
	assert_int_equal(chmod(path, 0400), 0);
	assert_int_equal(hc_file_read_private(path, buf, sizeof(buf), &len), 0);
	in_dir(link_path, sizeof(link_path), "link");
	assert_int_equal(symlink(path, link_path), 0);
	assert_int_equal(hc_file_read_private(link_path, buf, sizeof(buf), &len), -ELOOP);
	assert_int_equal(hc_file_read_private(dir, buf, sizeof(buf), &len), -EPERM);
	in_dir(path, sizeof(path), "missing");
	assert_int_equal(hc_file_read_private(path, buf, sizeof(buf), &len), -ENOENT);
}

static void test_write_all_to_a_pipe(void **state)
{
	static char buf[200 * 1024], back[sizeof(buf)];
	size_t got = 0;
	int p[2], status;
	pid_t pid;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 7);
	assert_int_equal(pipe(p), 0);
	/* more than a pipe holds: the writer blocks until the reader drains */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		_exit(hc_write_all(p[1], buf, sizeof(buf)) == 0 ? 0 : 1);
	}
	close(p[1]);
	while (got < sizeof(back)) {
		ssize_t n = read(p[0], back + got, sizeof(back) - got);

		assert_true(n > 0);
		got += (size_t)n;
	}
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_memory_equal(buf, back, sizeof(buf));
	assert_int_equal(hc_write_all(-1, "x", 1), -EBADF);
}

/* The reader end of a socket pair in a child that reads len bytes and
 * exits 0 if they match buf. */
static pid_t read_in_child(int fd, const char *buf, size_t len)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		static char back[256 * 1024];
		size_t got = 0;

		while (got < len) {
			ssize_t n = read(fd, back + got, len - got);

			if (n <= 0)
				_exit(2);
			got += (size_t)n;
		}
		_exit(memcmp(buf, back, len) == 0 ? 0 : 1);
	}
	return pid;
}

static void test_send_all(void **state)
{
	static char buf[256 * 1024];
	struct timespec d;
	int sv[2], status;
	pid_t pid;

	(void)state;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 13);
	/* non-blocking and more than the socket holds: waits for the reader
	 * (whose end blocks) */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	pid = read_in_child(sv[1], buf, sizeof(buf));
	assert_int_equal(hc_send_all(sv[0], buf, sizeof(buf), NULL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* nobody reads: the deadline ends the wait */
	hc_deadline_in(&d, 20);
	assert_int_equal(hc_send_all(sv[0], buf, sizeof(buf), &d), -ETIMEDOUT);
	/* the peer is gone: EPIPE, and no SIGPIPE ends the test */
	close(sv[1]);
	assert_int_equal(hc_send_all(sv[0], "x", 1, NULL), -EPIPE);
	close(sv[0]);
}

/* ---- deadlines ---- */

static void test_deadline_left(void **state)
{
	struct timespec d;
	int64_t left;

	(void)state;
	hc_deadline_in(&d, 1500);
	left = hc_deadline_left_ms(&d);
	assert_true(left > 1000 && left <= 1500);
	assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000);
	hc_deadline_in(&d, 0);
	assert_true(hc_deadline_left_ms(&d) <= 0);
	hc_deadline_in(&d, -1500);
	assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000);
	left = hc_deadline_left_ms(&d);
	assert_true(left <= -1500 && left > -2000);
}

static void test_deadline_wait_fd(void **state)
{
	struct timespec d;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	/* nothing to read: a deadline already passed does not wait */
	hc_deadline_in(&d, 0);
	assert_int_equal(hc_deadline_wait_fd(p[0], POLLIN, &d), -ETIMEDOUT);
	/* a short one times out */
	hc_deadline_in(&d, 20);
	assert_int_equal(hc_deadline_wait_fd(p[0], POLLIN, &d), -ETIMEDOUT);
	assert_true(hc_deadline_left_ms(&d) <= 0);
	/* ready at once, whatever the deadline */
	hc_deadline_in(&d, 60000);
	assert_int_equal(hc_deadline_wait_fd(p[1], POLLOUT, &d), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(hc_deadline_wait_fd(p[0], POLLIN, &d), 0);
	/* a hung-up peer counts as ready: the read says what happened */
	close(p[1]);
	assert_int_equal(hc_deadline_wait_fd(p[0], POLLIN, &d), 0);
	close(p[0]);
}

/* ---- the list ---- */

struct item {
	int v;
	struct hc_list link;
};

/* The values in l front to back into out; their count. */
static size_t values(struct hc_list *l, int *out, size_t max)
{
	struct item *it;
	size_t n = 0;

	hc_list_for_each(it, l, link) {
		assert_true(n < max);
		out[n++] = it->v;
	}
	return n;
}

static void test_list_insert_append_remove(void **state)
{
	struct hc_list l;
	struct item it[4] = { { .v = 0 }, { .v = 1 }, { .v = 2 }, { .v = 3 } };
	int got[8];

	(void)state;
	hc_list_init(&l);
	assert_true(hc_list_empty(&l));
	assert_int_equal(values(&l, got, 8), 0);
	hc_list_insert(&l, &it[1].link);
	hc_list_insert(&l, &it[0].link); /* front */
	hc_list_append(&l, &it[2].link); /* back */
	hc_list_append(&l, &it[3].link);
	assert_false(hc_list_empty(&l));
	assert_int_equal(values(&l, got, 8), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(got[i], i);
	assert_ptr_equal(hc_list_first(&l, struct item, link), &it[0]);
	assert_ptr_equal(hc_list_last(&l, struct item, link), &it[3]);
	/* the middle, the front, the back */
	hc_list_remove(&it[2].link);
	assert_false(hc_list_linked(&it[2].link));
	hc_list_remove(&it[2].link); /* again: harmless */
	hc_list_remove(&it[0].link);
	hc_list_remove(&it[3].link);
	assert_int_equal(values(&l, got, 8), 1);
	assert_int_equal(got[0], 1);
	assert_true(hc_list_linked(&it[1].link));
	assert_ptr_equal(hc_list_first(&l, struct item, link), &it[1]);
	assert_ptr_equal(hc_list_last(&l, struct item, link), &it[1]);
	hc_list_remove(&it[1].link);
	assert_true(hc_list_empty(&l));
	/* removed elements go back in */
	hc_list_append(&l, &it[2].link);
	assert_int_equal(values(&l, got, 8), 1);
	assert_int_equal(got[0], 2);
}

static void test_list_safe_iteration_frees(void **state)
{
	static struct hc_list l = HC_LIST_HEAD_INIT(l);
	struct item *it, *tmp;
	int got[16], n = 0;

	(void)state;
	assert_true(hc_list_empty(&l));
	for (int i = 0; i < 10; i++) {
		it = malloc(sizeof(*it));
		assert_non_null(it);
		it->v = i;
		hc_list_append(&l, &it->link);
	}
	/* drop the odd ones while walking */
	hc_list_for_each_safe(it, tmp, &l, link) {
		if (it->v % 2) {
			hc_list_remove(&it->link);
			free(it);
		}
	}
	assert_int_equal(values(&l, got, 16), 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(got[i], 2 * i);
	/* then all of them, as a module's _free does */
	hc_list_for_each_safe(it, tmp, &l, link) {
		hc_list_remove(&it->link);
		free(it);
		n++;
	}
	assert_int_equal(n, 5);
	assert_true(hc_list_empty(&l));
	/* over an empty list the bodies never run */
	hc_list_for_each_safe(it, tmp, &l, link)
		fail();
}

/* Fault points: specs parse or are refused with a reason; an armed point
 * kills the process at its Nth hit and not before; unarmed ones do nothing. */
static void test_fault_points(void **state)
{
	struct hc_err err;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(hc_fault_init(NULL, &err), 0);
	assert_int_equal(hc_fault_init("", &err), 0);
	if (!hc_fault_supported()) {
		assert_int_equal(hc_fault_init("spawn:after_pull:kill", &err), -ENOTSUP);
		return;
	}
	assert_int_equal(hc_fault_init("spawn:after_pull", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "only action is kill"));
	assert_int_equal(hc_fault_init("nocolon", &err), -EINVAL);
	assert_int_equal(hc_fault_init("a:kill@0", &err), -EINVAL);
	assert_int_equal(hc_fault_init("a:kill@x", &err), -EINVAL);
	assert_int_equal(hc_fault_init("a:kills", &err), -EINVAL);
	assert_int_equal(hc_fault_init("spawn:after_pull:kill,stop:before:kill@3", &err), 0);
	HC_FAULT("spawn:other"); /* not armed: returns */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		HC_FAULT("stop:before");
		HC_FAULT("stop:before"); /* the 2nd hit: still alive */
		HC_FAULT("spawn:other");
		HC_FAULT("stop:before"); /* the 3rd: SIGKILL */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_int_equal(hc_fault_init(NULL, &err), 0);
	HC_FAULT("stop:before"); /* disarmed again */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid_new_is_v4_and_valid),
		cmocka_unit_test(test_uuid_valid_forms),
		cmocka_unit_test_setup_teardown(test_mkdir_p, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_content_and_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_replaces_a_link_not_its_target,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_failure_keeps_the_old_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_atomic_never_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_private, setup, teardown),
		cmocka_unit_test(test_write_all_to_a_pipe),
		cmocka_unit_test(test_send_all),
		cmocka_unit_test(test_deadline_left),
		cmocka_unit_test(test_deadline_wait_fd),
		cmocka_unit_test(test_list_insert_append_remove),
		cmocka_unit_test(test_list_safe_iteration_frees),
		cmocka_unit_test(test_fault_points),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
