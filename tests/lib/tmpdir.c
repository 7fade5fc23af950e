/* Scratch directories for unit tests; see tmpdir.h. */
#include "tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int hc_tmpdir_new(char *dir, size_t len, const char *prefix)
{
	if (snprintf(dir, len, "/tmp/%s-XXXXXX", prefix) >= (int)len)
		return -ENAMETOOLONG;
	return mkdtemp(dir) ? 0 : -errno;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

int hc_tmpdir_remove(const char *dir)
{
	/* depth first: a directory goes once it is empty */
	return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}
