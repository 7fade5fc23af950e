/* CRI container log files: record parsing, line reassembly, tail and follow. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crilog_int.h"

#define BLOCK 65536
#define HEADER_MAX 64 /* timestamp + stream + tag fit well within this */

/* ---- records ---- */

static int timestamp_valid(const char *s, size_t len)
{
	/* 2026-11-23T20:49:19.275610613Z: digits and the RFC 3339 punctuation */
	if (len < 20 || len >= sizeof(((struct hc_crilog_line *)0)->timestamp))
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!strchr("0123456789-:.TZ+", s[i]))
			return 0;
	return s[4] == '-' && s[10] == 'T';
}

int hc_crilog_parse_record(const char *rec, size_t len, struct hc_crilog_record *out)
{
	const char *end = rec + len, *sp1, *sp2;

	sp1 = memchr(rec, ' ', len);
	if (!sp1 || !timestamp_valid(rec, (size_t)(sp1 - rec)))
		return -EINVAL;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (!sp2)
		return -EINVAL;
	if (sp2 - sp1 - 1 == 6 && memcmp(sp1 + 1, "stdout", 6) == 0)
		out->stream = HC_CRILOG_STDOUT;
	else if (sp2 - sp1 - 1 == 6 && memcmp(sp1 + 1, "stderr", 6) == 0)
		out->stream = HC_CRILOG_STDERR;
	else
		return -EINVAL;
	/* the tag, then one space and the payload, which may be empty: a
	 * record of an empty line is "... F" or "... F " */
	if (end - sp2 < 2 || (sp2[1] != 'F' && sp2[1] != 'P') || (end - sp2 > 2 && sp2[2] != ' '))
		return -EINVAL;
	out->partial = sp2[1] == 'P';
	out->timestamp = rec;
	out->timestamp_len = (size_t)(sp1 - rec);
	out->payload = end - sp2 > 2 ? sp2 + 3 : end;
	out->len = (size_t)(end - out->payload);
	return 0;
}

/* ---- reassembly ---- */

void hc_crilog_parser_init(struct hc_crilog_parser *p)
{
	memset(p, 0, sizeof(*p));
}

void hc_crilog_parser_fini(struct hc_crilog_parser *p)
{
	free(p->rec);
	free(p->part[0].buf);
	free(p->part[1].buf);
	memset(p, 0, sizeof(*p));
}

void hc_crilog_parser_reset(struct hc_crilog_parser *p)
{
	p->rec_len = 0;
	p->rec_overflow = false;
	for (int i = 0; i < 2; i++) {
		p->part[i].len = 0;
		p->part[i].active = p->part[i].truncated = false;
	}
}

/* Appends up to the line cap; returns -ENOMEM only if memory ran out. */
static int append_capped(char **buf, size_t *len, size_t *cap, const char *data, size_t n,
			 size_t limit, bool *truncated)
{
	if (*len + n > limit) {
		*truncated = true;
		n = limit - *len;
	}
	if (*len + n > *cap) {
		size_t want = *cap ? *cap : 256;
		char *grown;

		while (want < *len + n)
			want *= 2;
		if (want > limit)
			want = limit;
		grown = realloc(*buf, want);
		if (!grown)
			return -ENOMEM;
		*buf = grown;
		*cap = want;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	return 0;
}

static int emit(hc_crilog_line_fn *fn, void *arg, enum hc_crilog_stream stream,
		const char *ts, size_t ts_len, const char *text, size_t len, bool truncated)
{
	struct hc_crilog_line line = { .stream = stream, .text = text, .len = len,
				       .truncated = truncated };

	if (ts_len >= sizeof(line.timestamp))
		ts_len = sizeof(line.timestamp) - 1;
	memcpy(line.timestamp, ts, ts_len);
	line.timestamp[ts_len] = '\0';
	return fn(arg, &line);
}

static int handle_record(struct hc_crilog_parser *p, const char *rec, size_t len,
			 hc_crilog_line_fn *fn, void *arg)
{
	struct hc_crilog_record r;
	int ret;

	if (len && rec[len - 1] == '\r')
		len--; /* a CRLF-written file */
	if (hc_crilog_parse_record(rec, len, &r) < 0) {
		p->malformed++;
		return 0;
	}
	if (!p->part[r.stream].active && !r.partial) /* the common case: no copy */
		return emit(fn, arg, r.stream, r.timestamp, r.timestamp_len, r.payload,
			    r.len > HC_CRILOG_MAX_LINE ? HC_CRILOG_MAX_LINE : r.len,
			    r.len > HC_CRILOG_MAX_LINE);
	if (!p->part[r.stream].active) {
		size_t n = r.timestamp_len < sizeof(p->part[0].timestamp) - 1
				   ? r.timestamp_len
				   : sizeof(p->part[0].timestamp) - 1;

		memcpy(p->part[r.stream].timestamp, r.timestamp, n);
		p->part[r.stream].timestamp[n] = '\0';
		p->part[r.stream].active = true;
	}
	if (append_capped(&p->part[r.stream].buf, &p->part[r.stream].len, &p->part[r.stream].cap,
			  r.payload, r.len, HC_CRILOG_MAX_LINE, &p->part[r.stream].truncated) < 0)
		return -ENOMEM;
	if (r.partial)
		return 0;
	ret = emit(fn, arg, r.stream, p->part[r.stream].timestamp,
		   strlen(p->part[r.stream].timestamp), p->part[r.stream].buf,
		   p->part[r.stream].len, p->part[r.stream].truncated);
	p->part[r.stream].len = 0;
	p->part[r.stream].active = p->part[r.stream].truncated = false;
	return ret;
}

int hc_crilog_parser_feed(struct hc_crilog_parser *p, const char *data, size_t len,
			  hc_crilog_line_fn *fn, void *arg)
{
	const char *end = data + len;
	int r;

	while (data < end) {
		const char *nl = memchr(data, '\n', (size_t)(end - data));
		size_t n = (size_t)((nl ? nl : end) - data);
		bool dropped = false;

		if (p->rec_overflow) {
			/* the rest of a record too long to be containerd's */
			if (nl)
				p->rec_overflow = false;
		} else if (nl && p->rec_len == 0) {
			r = handle_record(p, data, n, fn, arg); /* whole record in the input */
			if (r)
				return r;
		} else if (append_capped(&p->rec, &p->rec_len, &p->rec_cap, data, n,
					 HC_CRILOG_MAX_RECORD, &dropped) < 0) {
			return -ENOMEM;
		} else if (dropped) {
			p->malformed++;
			p->rec_len = 0;
			p->rec_overflow = !nl;
		} else if (nl) {
			r = handle_record(p, p->rec, p->rec_len, fn, arg);
			p->rec_len = 0;
			if (r)
				return r;
		}
		data += n + (nl ? 1 : 0);
	}
	return 0;
}

int hc_crilog_parser_flush(struct hc_crilog_parser *p, hc_crilog_line_fn *fn, void *arg)
{
	int r = 0;

	if (p->rec_len) {
		/* a last record cut short: parse what there is */
		size_t len = p->rec_len;

		p->rec_len = 0;
		r = handle_record(p, p->rec, len, fn, arg);
	}
	for (int s = 0; !r && s < 2; s++) {
		if (!p->part[s].active)
			continue;
		r = emit(fn, arg, (enum hc_crilog_stream)s, p->part[s].timestamp,
			 strlen(p->part[s].timestamp), p->part[s].buf, p->part[s].len,
			 p->part[s].truncated);
		p->part[s].len = 0;
		p->part[s].active = p->part[s].truncated = false;
	}
	return r;
}

/* ---- the cursor ---- */

struct hc_crilog_cursor {
	char *path;
	int fd;
	int ino_fd; /* inotify */
	dev_t dev;
	ino_t ino;
	off_t offset;
	struct hc_crilog_parser parser;
};

/* The last '\n' before position `before`, into *at; 0 if there is none. */
static int prev_newline(int fd, off_t before, off_t *at)
{
	char buf[BLOCK];

	while (before > 0) {
		off_t start = before > BLOCK ? before - BLOCK : 0;
		ssize_t n = pread(fd, buf, (size_t)(before - start), start);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		for (ssize_t i = n - 1; i >= 0; i--)
			if (buf[i] == '\n') {
				*at = start + i;
				return 1;
			}
		before = start;
	}
	return 0;
}

/* Whether the record starting at off is a final (F) one. */
static int record_is_final(int fd, off_t off, off_t end)
{
	char hdr[HEADER_MAX + 1];
	size_t want = end - off < HEADER_MAX ? (size_t)(end - off) : HEADER_MAX;
	ssize_t n = pread(fd, hdr, want, off);
	struct hc_crilog_record r;
	const char *nl;

	if (n <= 0)
		return 0;
	nl = memchr(hdr, '\n', (size_t)n);
	if (nl)
		n = nl - hdr;
	/* the header alone parses as a record (payload cut short) */
	return hc_crilog_parse_record(hdr, (size_t)n, &r) == 0 && !r.partial;
}

/* The offset to start at for the last tail lines: just after the end of
 * the (tail+1)-th final record from the end, or 0. */
static int find_tail(int fd, off_t size, long tail, off_t *start)
{
	off_t rec_end, q;
	long finals = 0;
	int r;

	r = prev_newline(fd, size, &rec_end);
	if (r <= 0) {
		*start = 0; /* no complete record yet */
		return r;
	}
	if (tail == 0) {
		*start = rec_end + 1;
		return 0;
	}
	for (;;) {
		r = prev_newline(fd, rec_end, &q);
		if (r < 0)
			return r;
		if (record_is_final(fd, r ? q + 1 : 0, rec_end + 1) && ++finals > tail) {
			*start = rec_end + 1;
			return 0;
		}
		if (!r) {
			*start = 0;
			return 0;
		}
		rec_end = q;
	}
}

static int watch(struct hc_crilog_cursor *c)
{
	char *slash = strrchr(c->path, '/');

	if (inotify_add_watch(c->ino_fd, c->path,
			      IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF) < 0)
		return -errno;
	if (slash) {
		/* a replacement appears as a new name in the directory */
		*slash = '\0';
		inotify_add_watch(c->ino_fd, *c->path ? c->path : "/", IN_CREATE | IN_MOVED_TO);
		*slash = '/';
	}
	return 0;
}

static int open_file(struct hc_crilog_cursor *c)
{
	struct stat st;
	int fd = open(c->path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = fd;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	return 0;
}

void hc_crilog_cursor_free(struct hc_crilog_cursor *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->ino_fd >= 0)
		close(c->ino_fd);
	hc_crilog_parser_fini(&c->parser);
	free(c->path);
	free(c);
}

struct hc_crilog_cursor *hc_crilog_cursor_open(const char *path, long tail)
{
	struct hc_crilog_cursor *c = calloc(1, sizeof(*c));
	struct stat st;
	int r;

	if (!c)
		return NULL;
	c->fd = c->ino_fd = -1;
	hc_crilog_parser_init(&c->parser);
	c->path = strdup(path);
	c->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (!c->path || c->ino_fd < 0) {
		r = c->path ? -errno : -ENOMEM;
		goto fail;
	}
	if ((r = open_file(c)) < 0 || (r = watch(c)) < 0)
		goto fail;
	if (fstat(c->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	if (tail >= 0 && (r = find_tail(c->fd, st.st_size, tail, &c->offset)) < 0)
		goto fail;
	return c;
fail:
	hc_crilog_cursor_free(c);
	errno = -r;
	return NULL;
}

int hc_crilog_cursor_fd(const struct hc_crilog_cursor *c)
{
	return c->ino_fd;
}

unsigned long hc_crilog_cursor_malformed(const struct hc_crilog_cursor *c)
{
	return c->parser.malformed;
}

static void drain_events(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Follows a replaced file (new inode at the path) from its start. */
static int check_replaced(struct hc_crilog_cursor *c)
{
	struct stat st;

	if (stat(c->path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (st.st_ino == c->ino && st.st_dev == c->dev)
		return 0;
	if (open_file(c) < 0)
		return 0; /* gone again; next time */
	watch(c);
	c->offset = 0;
	hc_crilog_parser_reset(&c->parser);
	return 0;
}

int hc_crilog_cursor_read(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	char buf[BLOCK];
	struct stat st;
	int r;

	drain_events(c->ino_fd);
	r = check_replaced(c);
	if (r < 0)
		return r;
	if (fstat(c->fd, &st) < 0)
		return -errno;
	if (st.st_size < c->offset) {
		/* truncated under us: what is there now is new */
		c->offset = 0;
		hc_crilog_parser_reset(&c->parser);
	}
	for (;;) {
		ssize_t n = pread(c->fd, buf, sizeof(buf), c->offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		c->offset += n;
		r = hc_crilog_parser_feed(&c->parser, buf, (size_t)n, fn, arg);
		if (r)
			return r;
	}
}

int hc_crilog_cursor_flush(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	return hc_crilog_parser_flush(&c->parser, fn, arg);
}

int hc_crilog_follow(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg, int stop_fd)
{
	struct stat st;
	int r;

	for (;;) {
		struct pollfd pfd[2] = { { .fd = c->ino_fd, .events = POLLIN },
					 { .fd = stop_fd, .events = POLLIN } };

		r = hc_crilog_cursor_read(c, fn, arg);
		if (r)
			return r;
		if (stat(c->path, &st) < 0 && errno == ENOENT)
			return hc_crilog_cursor_flush(c, fn, arg); /* the workload was removed */
		/* the timeout covers changes inotify cannot see (other mounts) */
		r = poll(pfd, stop_fd >= 0 ? 2 : 1, 1000);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && stop_fd >= 0 && pfd[1].revents)
			return 0;
	}
}
