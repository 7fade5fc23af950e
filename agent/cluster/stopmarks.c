/* Stops this node still owes, kept across agent restarts: one empty file
 * per workload id in <state-dir>/stopping/, written when a stop fails and
 * removed when the workload is gone. An agent that restarts in between
 * finds its marked workloads in the runtime and stops them again rather
 * than adopting them as running (or restarting them by their policy). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "log/log.h"

#define MARK_DIR "stopping"
#define MARKS_MAX 4096 /* read at start: a damaged dir costs no more */

static int mark_path(const struct hc_cluster *c, const char *id, char *path, size_t len)
{
	int n = id ? snprintf(path, len, "%s/" MARK_DIR "/%s", c->cfg.state_dir, id)
		   : snprintf(path, len, "%s/" MARK_DIR, c->cfg.state_dir);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

void hc_cluster_stop_mark_set(struct hc_cluster *c, const char *id)
{
	char path[4096];
	int fd;

	if (!c->cfg.state_dir || !hc_uuid_valid(id) || mark_path(c, NULL, path, sizeof(path)) < 0)
		return;
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		hc_log(HC_LOG_WARN, "cannot create %s: %s (a restart forgets the stop of %s)", path,
		       strerror(errno), id);
		return;
	}
	if (mark_path(c, id, path, sizeof(path)) < 0)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		hc_log(HC_LOG_WARN, "cannot write %s: %s (a restart forgets the stop of %s)", path,
		       strerror(errno), id);
		return;
	}
	close(fd);
}

void hc_cluster_stop_mark_clear(struct hc_cluster *c, const char *id)
{
	char path[4096];

	if (!c->cfg.state_dir || !hc_uuid_valid(id) || mark_path(c, id, path, sizeof(path)) < 0)
		return;
	if (unlink(path) < 0 && errno != ENOENT)
		hc_log(HC_LOG_WARN, "cannot remove %s: %s", path, strerror(errno));
}

void hc_cluster_stop_marks_load(struct hc_cluster *c)
{
	char path[4096];
	struct dirent *e;
	DIR *d;

	if (!c->cfg.state_dir || mark_path(c, NULL, path, sizeof(path)) < 0)
		return;
	d = opendir(path);
	if (!d) {
		if (errno != ENOENT)
			hc_log(HC_LOG_WARN, "cannot read %s: %s", path, strerror(errno));
		return;
	}
	while ((e = readdir(d)) && c->nstop_marks < MARKS_MAX) {
		void *grown;

		if (!hc_uuid_valid(e->d_name))
			continue; /* ".", "..", or not ours */
		grown = realloc(c->stop_marks, (c->nstop_marks + 1) * sizeof(*c->stop_marks));
		if (!grown)
			break; /* those not read are stopped by hand, as before */
		c->stop_marks = grown;
		snprintf(c->stop_marks[c->nstop_marks++], sizeof(c->stop_marks[0]), "%.*s",
			 HC_WORKLOAD_ID_LEN, e->d_name);
	}
	closedir(d);
	if (c->nstop_marks)
		hc_log(HC_LOG_INFO, "%zu stop(s) owed from before this start (%s)", c->nstop_marks,
		       path);
}

bool hc_cluster_stop_marked(const struct hc_cluster *c, const char *id)
{
	for (size_t i = 0; i < c->nstop_marks; i++)
		if (strcmp(c->stop_marks[i], id) == 0)
			return true;
	return false;
}

void hc_cluster_stop_marks_settle(struct hc_cluster *c)
{
	for (size_t i = 0; i < c->nstop_marks; i++) {
		const struct local_wl *l = hc_cluster_local_find(c, c->stop_marks[i]);

		if (!l || !l->stop_failures) /* not in the runtime any more: stopped */
			hc_cluster_stop_mark_clear(c, c->stop_marks[i]);
	}
	free(c->stop_marks);
	c->stop_marks = NULL;
	c->nstop_marks = 0;
}
