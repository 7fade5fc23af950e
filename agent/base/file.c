/* Directories and whole-file writes that survive crashes; see base.h. */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tries so many temporary names before giving up: only stale files of
 * crashed writers can collide with a random one. */
#define TEMP_ATTEMPTS 16

static int mkdir_one(const char *path, mode_t mode)
{
	return mkdir(path, mode) < 0 && errno != EEXIST ? -errno : 0;
}

int hc_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	int r;

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	/* from buf + 1: a leading '/' names the root, not an empty component */
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		r = mkdir_one(buf, mode);
		*p = '/';
		if (r < 0)
			return r;
	}
	return mkdir_one(buf, mode);
}

/* Creates "<path>.tmp.<random>" beside path, so the rename stays within one
 * file system. O_EXCL and O_NOFOLLOW: never write through a file or link
 * someone else put there. Returns the fd, or -errno. */
static int open_temp(const char *path, char *tmp, size_t tmplen, mode_t mode)
{
	for (int i = 0; i < TEMP_ATTEMPTS; i++) {
		uint32_t rnd;
		int fd;

		if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return -EIO;
		if (snprintf(tmp, tmplen, "%s.tmp.%08x", path, rnd) >= (int)tmplen)
			return -ENAMETOOLONG;
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

/* The new name is durable only once the directory holding it is synced. */
static int sync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, r = 0;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* file systems that cannot sync a directory say EINVAL */
	if (fsync(fd) < 0 && errno != EINVAL)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

/* write, exact mode (the umask applied at open), flush; 0 or -errno */
static int fill_temp(int fd, const void *data, size_t len, mode_t mode)
{
	int r = hc_write_all(fd, data, len);

	if (!r && fchmod(fd, mode) < 0)
		r = -errno;
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

/* Moves tmp to path without replacing anything there: renameat2's
 * RENAME_NOREPLACE, or link(2) where the file system lacks it (link fails
 * with EEXIST just the same). 0 or -errno; tmp stays on failure. */
static int rename_noreplace(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(tmp, path) < 0)
		return -errno;
	unlink(tmp);
	return 0;
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode,
		      bool replace)
{
	char tmp[PATH_MAX];
	int fd = open_temp(path, tmp, sizeof(tmp), mode);
	int r;

	if (fd < 0)
		return fd;
	r = fill_temp(fd, data, len, mode);
	if (!r)
		r = replace ? (rename(tmp, path) < 0 ? -errno : 0) : rename_noreplace(tmp, path);
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	return sync_dir_of(path);
}

int hc_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_file(path, data, len, mode, true);
}

int hc_file_create_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	return write_file(path, data, len, mode, false);
}

int hc_file_read_private(const char *path, void *buf, size_t size, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	ssize_t got;
	int r = 0;

	if (fd < 0)
		return -errno;
	/* fstat of the opened file: what is checked is what is read */
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		r = -EPERM;
		goto out;
	}
	got = hc_read_full(fd, buf, size);
	if (got < 0)
		r = (int)got;
	else if ((size_t)got == size)
		r = -EFBIG;
	else
		*len = (size_t)got;
out:
	close(fd);
	return r;
}
