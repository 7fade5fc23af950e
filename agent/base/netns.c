/* Running the calling thread in another network namespace for a while
 * (a workload's sandbox: its tap, its TC filters) and coming back. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "base.h"

int hc_netns_enter(const char *path, int *saved)
{
	int target = open(path, O_RDONLY | O_CLOEXEC);
	int r = 0;

	*saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (target < 0 || *saved < 0 || setns(target, CLONE_NEWNET) < 0)
		r = -errno;
	if (target >= 0)
		close(target);
	if (r < 0 && *saved >= 0) {
		close(*saved);
		*saved = -1;
	}
	return r;
}

int hc_netns_leave(int saved)
{
	int r = setns(saved, CLONE_NEWNET) < 0 ? -errno : 0;

	close(saved);
	return r;
}
