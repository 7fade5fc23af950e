/* hypercore logs: a workload's CRI log file, read through the crilog cursor. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "crilog_int.h"
#include "runtime_int.h"

struct forward {
	hc_runtime_log_fn *fn;
	void *arg;
};

static int forward_line(void *arg, const struct hc_crilog_line *line)
{
	struct forward *f = arg;
	struct hc_log_line out = {
		.stream = line->stream == HC_CRILOG_STDERR ? HC_LOG_STDERR : HC_LOG_STDOUT,
		.timestamp = line->timestamp,
		.text = line->text,
		.len = line->len,
		.truncated = line->truncated,
	};

	return f->fn(f->arg, &out);
}

int hc_runtime_logs(struct hc_runtime *rt, const char *id, long tail, bool follow, int stop_fd,
		    hc_runtime_log_fn *fn, void *arg, struct hc_err *err)
{
	struct forward f = { fn, arg };
	struct hc_crilog_cursor *c;
	struct hc_workload w;
	int r;

	r = hc_runtime_get(rt, id, &w, err);
	if (r < 0)
		return r;
	if (!w.log_path[0]) {
		hc_workload_fini(&w);
		return hc_err_set(err, -ENOENT, "workload %s has no log", id);
	}
	c = hc_crilog_cursor_open(w.log_path, tail);
	if (!c) {
		r = errno == ENOENT ? hc_err_set(err, -ENOENT, "workload %s has written no output yet", id)
				    : hc_err_set(err, -errno, "cannot read %s: %s", w.log_path,
						 strerror(errno));
		hc_workload_fini(&w);
		return r;
	}
	hc_workload_fini(&w);
	r = follow ? hc_crilog_follow(c, forward_line, &f, stop_fd)
		   : hc_crilog_cursor_read(c, forward_line, &f);
	if (r == 0 && !follow)
		r = hc_crilog_cursor_flush(c, forward_line, &f);
	hc_crilog_cursor_free(c);
	if (r < 0)
		return hc_err_set(err, r, "reading the log of %s: %s", id, strerror(-r));
	return 0;
}
