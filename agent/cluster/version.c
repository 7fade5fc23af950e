/* State versions that only grow, across agent restarts and clock steps.
 *
 * A version is the sender's wall clock in ms, and always more than its last
 * while the agent runs. A restarted agent started again at its clock, so
 * with the clock stepped back (NTP, a lost RTC) its first versions were
 * below the one its peers held from before the restart: every state it sent
 * was dropped as older, and its workloads lost their routes until the clock
 * had caught up. Here the agent keeps a mark in <state-dir>/state-version,
 * at least RESERVE_MS above any version it has sent, and starts above it.
 * The mark is rewritten only once the versions come within half of that of
 * it, about every RESERVE_MS / 2 of sending, not per broadcast. A mark at
 * most RESERVE_MS ahead of the clock stays far inside the hour receivers
 * allow ahead of theirs (version_ahead, docs/cluster.md). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HC_LOG_MODULE "cluster"
#include "base/base.h"
#include "cluster/cluster_int.h"
#include "log/log.h"

#define RESERVE_MS 60000
#define VERSION_FILE "state-version"

static void mark_path(const struct hc_cluster *c, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", c->cfg.state_dir, VERSION_FILE);
}

uint64_t hc_cluster_version_first(struct hc_cluster *c, uint64_t clock_ms)
{
	char path[4096], buf[32];
	uint64_t mark = 0;
	ssize_t n;
	int fd;

	if (!c->cfg.state_dir)
		return clock_ms;
	mark_path(c, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			mark = strtoull(buf, NULL, 10);
		}
	} else if (errno != ENOENT) {
		hc_log(HC_LOG_WARN, "cannot read %s: %s", path, strerror(errno));
	}
	c->version_mark = mark;
	if (mark > clock_ms)
		hc_log(HC_LOG_INFO, "state versions start at %" PRIu64 ", %" PRIu64
		       " ms ahead of the clock (it stepped back since the last run)", mark,
		       mark - clock_ms);
	return mark > clock_ms ? mark : clock_ms;
}

void hc_cluster_version_sent(struct hc_cluster *c, uint64_t version)
{
	char path[4096], buf[32];
	int len, r;

	if (!c->cfg.state_dir || version + RESERVE_MS / 2 <= c->version_mark)
		return;
	mark_path(c, path, sizeof(path));
	len = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", version + RESERVE_MS);
	r = hc_file_write_atomic(path, buf, (size_t)len, 0600);
	if (r < 0) {
		hc_log(HC_LOG_WARN, "cannot write %s: %s", path, strerror(-r));
		return;
	}
	c->version_mark = version + RESERVE_MS;
}
