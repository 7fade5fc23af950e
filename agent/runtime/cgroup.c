/* Each workload's own cgroup parent, <cgroup_parent>/<id>: it carries the
 * workload's pids limit, which CRI in containerd 1.6 has no field for
 * (LinuxContainerResources stops at memory_swap_limit_in_bytes), and which
 * must hold before the first process starts. The pause process and the
 * workload's container both land under it (cgroupfs driver), so the limit
 * counts every task of the workload, threads too. */
#define HC_LOG_MODULE "runtime"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "runtime_int.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

static bool cgroup_v2(void)
{
	return access(CGROUP_ROOT "/cgroup.controllers", F_OK) == 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -errno;
	r = hc_write_all(fd, text, strlen(text));
	close(fd);
	return r;
}

/* cgroup v2: the pids controller must be enabled in every ancestor's
 * subtree_control for the leaf to have pids.max. */
static int enable_pids_v2(const char *dir)
{
	char path[1100];
	int r;

	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
	r = write_file(path, "+pids");
	return r == -EBUSY ? 0 : r; /* busy: a process sits there, the controller may well be on */
}

int hc_runtime_cgroup_prepare(const char *parent, const char *id, uint32_t pids_max,
			      struct hc_err *err)
{
	char dir[1024], file[1100], value[16];
	int r;

	if (cgroup_v2()) {
		snprintf(dir, sizeof(dir), CGROUP_ROOT "%s", parent);
		r = hc_mkdir_p(dir, 0755);
		if (!r)
			r = enable_pids_v2(CGROUP_ROOT);
		if (!r)
			r = enable_pids_v2(dir);
		if (r < 0)
			return hc_err_set(err, r, "cannot enable the pids controller under %s: %s",
					  dir, strerror(-r));
		snprintf(dir, sizeof(dir), CGROUP_ROOT "%s/%s", parent, id);
	} else {
		if (access(CGROUP_ROOT "/pids", F_OK) < 0)
			return hc_err_set(err, -ENOTSUP,
					  "no pids cgroup controller at " CGROUP_ROOT
					  "/pids: cannot enforce a pids limit");
		snprintf(dir, sizeof(dir), CGROUP_ROOT "/pids%s/%s", parent, id);
	}
	r = hc_mkdir_p(dir, 0755);
	if (r < 0)
		return hc_err_set(err, r, "cannot create cgroup %s: %s", dir, strerror(-r));
	snprintf(file, sizeof(file), "%s/pids.max", dir);
	snprintf(value, sizeof(value), "%u", pids_max);
	r = write_file(file, value);
	if (r < 0)
		return hc_err_set(err, r, "cannot write %s: %s", file, strerror(-r));
	return 0;
}

static void remove_dir(const char *path)
{
	if (rmdir(path) < 0 && errno != ENOENT)
		hc_log(HC_LOG_WARN, "cannot remove cgroup %s: %s", path, strerror(errno));
}

void hc_runtime_cgroup_remove(const char *parent, const char *id)
{
	char path[1024];
	struct dirent *de;
	DIR *d;

	if (cgroup_v2()) {
		snprintf(path, sizeof(path), CGROUP_ROOT "%s/%s", parent, id);
		remove_dir(path);
		return;
	}
	/* runc made <parent>/<id> in every v1 hierarchy and removes only the
	 * containers' own directories below it */
	d = opendir(CGROUP_ROOT);
	if (!d)
		return;
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), CGROUP_ROOT "/%s", de->d_name);
		if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue; /* cpu -> cpu,cpuacct and the like */
		snprintf(path, sizeof(path), CGROUP_ROOT "/%s%s/%s", de->d_name, parent, id);
		remove_dir(path);
	}
	closedir(d);
}

/* The first number in file (after "key " when key is given). */
static int read_number(const char *path, const char *key, uint64_t *out)
{
	char buf[1024], *p = buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if (key) {
		size_t klen = strlen(key);

		for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
			if (strncmp(p, key, klen) == 0 && p[klen] == ' ')
				break;
		if (!p)
			return -ENOENT;
		p += klen + 1;
	}
	if (sscanf(p, "%" SCNu64, out) != 1)
		return -EINVAL;
	return 0;
}

int hc_runtime_cgroup_usage(const char *parent, const char *id, uint64_t *cpu_ns,
			    uint64_t *memory_bytes)
{
	char path[1100];
	uint64_t usec = 0;
	int r;

	if (!parent)
		parent = HC_RUNTIME_DEFAULT_CGROUP_PARENT;
	if (!hc_uuid_valid(id))
		return -EINVAL;
	if (cgroup_v2()) {
		snprintf(path, sizeof(path), CGROUP_ROOT "%s/%s/cpu.stat", parent, id);
		r = read_number(path, "usage_usec", &usec);
		*cpu_ns = usec * 1000;
		snprintf(path, sizeof(path), CGROUP_ROOT "%s/%s/memory.current", parent, id);
	} else {
		snprintf(path, sizeof(path), CGROUP_ROOT "/cpuacct%s/%s/cpuacct.usage", parent, id);
		r = read_number(path, NULL, cpu_ns);
		snprintf(path, sizeof(path), CGROUP_ROOT "/memory%s/%s/memory.usage_in_bytes",
			 parent, id);
	}
	if (r == 0)
		r = read_number(path, NULL, memory_bytes);
	return r;
}
