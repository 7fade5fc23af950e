/* The per-workload proof logs, <state_dir>/proofs/<id>.log: one line per
 * proof, appended, never rewritten (a torn last line excepted); see ibrl.h. */
#include "ibrl/ibrl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAIL_READ (2 * HC_IBRL_PROOF_LINE_MAX)

int hc_ibrl_proof_log_path(const char *state_dir, const char *id, char *buf, size_t size)
{
	if (!hc_uuid_valid(id))
		return -EINVAL;
	if (snprintf(buf, size, "%s/" HC_IBRL_PROOF_DIR "/%s.log", state_dir, id) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* Reads the file's last TAIL_READ bytes into buf; *off is where they start. */
static int read_tail(int fd, char *buf, size_t *n, off_t *off)
{
	struct stat st;
	ssize_t got;

	if (fstat(fd, &st) < 0)
		return -errno;
	*off = st.st_size > TAIL_READ ? st.st_size - TAIL_READ : 0;
	got = pread(fd, buf, (size_t)(st.st_size - *off), *off);
	if (got < 0)
		return -errno;
	*n = (size_t)got;
	return 0;
}

int hc_ibrl_proof_log_last(const char *state_dir, const char *id, struct hc_ibrl_proof *out)
{
	char path[PATH_MAX], buf[TAIL_READ + 1];
	size_t n = 0, end, start;
	off_t off;
	int fd, r = hc_ibrl_proof_log_path(state_dir, id, path, sizeof(path));

	if (r < 0)
		return r;
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	r = read_tail(fd, buf, &n, &off);
	if (r < 0)
		goto out;
	end = n;
	while (end > 0 && buf[end - 1] != '\n')
		end--;
	if (end < n && ftruncate(fd, off + (off_t)end) < 0) { /* a torn write: cut it off */
		r = -errno;
		goto out;
	}
	if (end == 0) {
		r = -ENOENT;
		goto out;
	}
	start = end - 1;
	while (start > 0 && buf[start - 1] != '\n')
		start--;
	r = hc_ibrl_proof_parse(buf + start, end - start, out);
out:
	close(fd);
	return r;
}

int hc_ibrl_proof_log_append(const char *state_dir, const char *id,
			     const struct hc_ibrl_proof *p, bool sync)
{
	char path[PATH_MAX], line[HC_IBRL_PROOF_LINE_MAX];
	int fd, n, r = hc_ibrl_proof_log_path(state_dir, id, path, sizeof(path));

	if (r < 0)
		return r;
	n = hc_ibrl_proof_format(p, line, sizeof(line));
	if (n < 0)
		return n;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == ENOENT) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s/" HC_IBRL_PROOF_DIR, state_dir);
		if ((r = hc_mkdir_p(dir, 0700)) < 0)
			return r;
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (fd < 0)
		return -errno;
	r = hc_write_all(fd, line, (size_t)n);
	if (r == 0 && sync && fdatasync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

int hc_ibrl_proof_log_read(const char *state_dir, const char *id, char **text, size_t *len)
{
	char path[PATH_MAX], *buf = NULL;
	struct stat st;
	size_t got = 0;
	ssize_t n;
	int fd, r = hc_ibrl_proof_log_path(state_dir, id, path, sizeof(path));

	*text = NULL;
	*len = 0;
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_size > HC_IBRL_PROOF_LOG_MAX) {
		r = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	/* it may grow meanwhile: read what was there */
	n = hc_read_full(fd, buf, (size_t)st.st_size);
	if (n < 0) {
		r = (int)n;
		goto out;
	}
	got = (size_t)n;
	buf[got] = '\0';
	*text = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

int hc_ibrl_proof_log_remove(const char *state_dir, const char *id)
{
	char path[PATH_MAX];
	int r = hc_ibrl_proof_log_path(state_dir, id, path, sizeof(path));

	if (r < 0)
		return r;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int hc_ibrl_proof_log_sync(const char *state_dir)
{
	char dir[PATH_MAX];
	int fd, r = 0;

	snprintf(dir, sizeof(dir), "%s/" HC_IBRL_PROOF_DIR, state_dir);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (syncfs(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}
