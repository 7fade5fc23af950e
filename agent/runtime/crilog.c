/* CRI container log files: records, line reassembly, tail and follow; see crilog_int.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "crilog_int.h"
#include "log/log.h"

#define TAG_MAX 16
#define HEADER_MAX HC_CRILOG_HEADER_MAX
_Static_assert(HC_CRILOG_TIMESTAMP_MAX + 1 + 6 + 1 + TAG_MAX + 1 <= HEADER_MAX, "header bound");

#define BLOCK HC_CRILOG_BLOCK /* read and backward-scan unit */
#define SHRINK_ABOVE 65536     /* buffers grown past this are released after use */
#define FOLLOW_RECHECK_MS 2000 /* with inotify: a safety net for what it cannot see */
#define FOLLOW_POLL_MS 250     /* without inotify */

/* Emission classes for skipping: one per stream, and malformed records. */
#define CLASS_MALFORMED 2

/* ---- records ---- */

/* n decimal digits with a value in [min, max]. */
static bool digits(const char *s, size_t n, int min, int max)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	return v >= min && v <= max;
}

/* RFC 3339 as Go's RFC3339Nano writes it: 2026-11-23T20:49:19.27561Z, the
 * fraction 0-9 digits (trailing zeros dropped), Z or +hh:mm. Ranges are
 * checked field by field, not against the calendar. */
static bool timestamp_valid(const char *s, size_t len)
{
	size_t i = 19;

	if (len < 20 || len > HC_CRILOG_TIMESTAMP_MAX)
		return false;
	if (!digits(s, 4, 0, 9999) || s[4] != '-' || !digits(s + 5, 2, 1, 12) || s[7] != '-' ||
	    !digits(s + 8, 2, 1, 31) || s[10] != 'T' || !digits(s + 11, 2, 0, 23) ||
	    s[13] != ':' || !digits(s + 14, 2, 0, 59) || s[16] != ':' ||
	    !digits(s + 17, 2, 0, 59))
		return false;
	if (s[i] == '.') {
		size_t from = ++i;

		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == from || i - from > 9)
			return false;
	}
	if (i + 1 == len)
		return s[i] == 'Z';
	return i + 6 == len && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2, 0, 23) &&
	       s[i + 3] == ':' && digits(s + i + 4, 2, 0, 59);
}

int hc_crilog_parse_record(const char *rec, size_t len, struct hc_crilog_record *out)
{
	const char *end = rec + len, *sp, *tag, *tag_end;
	size_t n;

	if (len == 0)
		return -EINVAL;
	sp = memchr(rec, ' ', len);
	if (!sp || !timestamp_valid(rec, (size_t)(sp - rec)))
		return -EINVAL;
	if (end - sp < 8 || sp[7] != ' ')
		return -EINVAL;
	if (memcmp(sp + 1, "stdout", 6) == 0)
		out->stream = HC_CRILOG_STDOUT;
	else if (memcmp(sp + 1, "stderr", 6) == 0)
		out->stream = HC_CRILOG_STDERR;
	else
		return -EINVAL;
	tag = sp + 8;
	/* the space after the tag must be there even for an empty payload:
	 * containerd always writes it, and kubelet rejects records without */
	n = (size_t)(end - tag) < TAG_MAX + 1 ? (size_t)(end - tag) : TAG_MAX + 1;
	tag_end = memchr(tag, ' ', n);
	if (!tag_end || tag_end == tag || (tag[0] != 'F' && tag[0] != 'P') ||
	    (tag_end - tag > 1 && tag[1] != ':'))
		return -EINVAL;
	out->partial = tag[0] == 'P';
	out->timestamp = rec;
	out->timestamp_len = (size_t)(sp - rec);
	out->payload = tag_end + 1;
	out->len = (size_t)(end - out->payload);
	return 0;
}

/* ---- parser ---- */

struct pending {
	char *buf;
	size_t len, cap;
	uint64_t seq; /* of its last record: a flush emits the oldest first */
	bool active, truncated;
	char timestamp[HC_CRILOG_TIMESTAMP_MAX + 1];
};

struct hc_crilog_parser {
	size_t line_max;
	char *rec; /* a record split across feeds, waiting for its '\n' */
	size_t rec_len, rec_cap;
	bool rec_cut;	       /* bytes past the cap were dropped */
	struct pending part[2]; /* per stream: a line still taking P records */
	uint64_t seq;
	long skip[3];	       /* per class: lines to drop unseen (a tail's window) */
};

struct hc_crilog_parser *hc_crilog_parser_new(size_t line_max)
{
	struct hc_crilog_parser *p;

	/* the cap bounds the doubling in reserve() far from overflow */
	if (line_max > SIZE_MAX / 4) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->line_max = line_max ? line_max : HC_CRILOG_MAX_LINE;
	return p;
}

void hc_crilog_parser_free(struct hc_crilog_parser *p)
{
	if (!p)
		return;
	free(p->rec);
	free(p->part[0].buf);
	free(p->part[1].buf);
	free(p);
}

/*
 * Appends n bytes to buf (len, cap) without going past limit bytes. What
 * does not fit, past the limit or for want of memory, is dropped and
 * *truncated set: a line cut short is better than a reader that fails.
 */
static void append_capped(char **buf, size_t *len, size_t *cap, size_t limit, const char *data,
			  size_t n, bool *truncated)
{
	if (n > limit - *len) {
		n = limit - *len;
		*truncated = true;
	}
	if (*len + n > *cap) {
		size_t want = *cap ? *cap : 256;
		char *grown;

		while (want < *len + n)
			want *= 2;
		if (want > limit)
			want = limit;
		grown = realloc(*buf, want);
		if (grown) {
			*buf = grown;
			*cap = want;
		} else {
			n = *cap - *len;
			*truncated = true;
		}
	}
	if (n) {
		memcpy(*buf + *len, data, n);
		*len += n;
	}
}

static void release_if_big(char **buf, size_t *cap)
{
	if (*cap > SHRINK_ABOVE) {
		free(*buf);
		*buf = NULL;
		*cap = 0;
	}
}

static void set_timestamp(char *dst, const char *ts, size_t len)
{
	memcpy(dst, ts, len); /* len <= HC_CRILOG_TIMESTAMP_MAX, checked by the parse */
	dst[len] = '\0';
}

static int emit(struct hc_crilog_parser *p, const struct hc_crilog_line *line,
		hc_crilog_line_fn *fn, void *arg)
{
	long *skip = &p->skip[line->malformed ? CLASS_MALFORMED : line->stream];

	if (*skip > 0) {
		(*skip)--;
		return 0;
	}
	return fn(arg, line);
}

static int emit_pending(struct hc_crilog_parser *p, enum hc_crilog_stream s, bool unfinished,
			hc_crilog_line_fn *fn, void *arg)
{
	struct pending *pd = &p->part[s];
	struct hc_crilog_line line = {
		.stream = s,
		.text = pd->buf ? pd->buf : "",
		.len = pd->len,
		.truncated = pd->truncated,
		.unfinished = unfinished,
	};
	int r;

	memcpy(line.timestamp, pd->timestamp, sizeof(line.timestamp));
	pd->active = pd->truncated = false;
	pd->len = 0;
	r = emit(p, &line, fn, arg);
	release_if_big(&pd->buf, &pd->cap);
	return r;
}

/* One record of the file, its '\n' removed; cut: it was longer than the
 * record buffer and only its beginning is here. */
static int take_record(struct hc_crilog_parser *p, const char *rec, size_t len, bool cut,
		       hc_crilog_line_fn *fn, void *arg)
{
	struct hc_crilog_line line = { .stream = HC_CRILOG_STDOUT };
	struct hc_crilog_record r;
	struct pending *pd;

	/* containerd strips a '\r' before the '\n' from the payload; a file that
	 * went through CRLF conversion reads the same */
	if (!cut && len && rec[len - 1] == '\r')
		len--;
	if (hc_crilog_parse_record(rec, len, &r) < 0) {
		/* shown as it is: a damaged or foreign file should not read as empty */
		line.malformed = true;
		line.text = len ? rec : "";
		line.len = len < p->line_max ? len : p->line_max;
		line.truncated = cut || len > p->line_max;
		return emit(p, &line, fn, arg);
	}
	pd = &p->part[r.stream];
	if (!pd->active && !r.partial) {
		/* the common case, a whole line in one record: no copy */
		line.stream = r.stream;
		set_timestamp(line.timestamp, r.timestamp, r.timestamp_len);
		line.text = r.payload;
		line.len = r.len < p->line_max ? r.len : p->line_max;
		line.truncated = cut || r.len > p->line_max;
		return emit(p, &line, fn, arg);
	}
	if (!pd->active) {
		pd->active = true;
		set_timestamp(pd->timestamp, r.timestamp, r.timestamp_len);
	}
	append_capped(&pd->buf, &pd->len, &pd->cap, p->line_max, r.payload, r.len,
		      &pd->truncated);
	if (cut)
		pd->truncated = true;
	pd->seq = ++p->seq;
	if (r.partial)
		return 0;
	return emit_pending(p, r.stream, false, fn, arg);
}

static int take_held_record(struct hc_crilog_parser *p, hc_crilog_line_fn *fn, void *arg)
{
	int r = take_record(p, p->rec, p->rec_len, p->rec_cut, fn, arg);

	p->rec_len = 0;
	p->rec_cut = false;
	release_if_big(&p->rec, &p->rec_cap);
	return r;
}

int hc_crilog_parser_feed(struct hc_crilog_parser *p, const char *data, size_t len, size_t *used,
			  hc_crilog_line_fn *fn, void *arg)
{
	/* enough of a record to classify it and to fill a line */
	size_t rec_limit = p->line_max + HEADER_MAX + 1;
	size_t pos = 0;
	int r = 0;

	while (pos < len && !r) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;

		if (nl && !p->rec_len && !p->rec_cut) {
			/* a whole record in data: parsed in place */
			r = take_record(p, data + pos, n, false, fn, arg);
			pos += n + 1;
			continue;
		}
		append_capped(&p->rec, &p->rec_len, &p->rec_cap, rec_limit, data + pos, n,
			      &p->rec_cut);
		pos += n;
		if (!nl)
			break;
		pos++;
		r = take_held_record(p, fn, arg);
	}
	*used = pos;
	return r;
}

void hc_crilog_parser_skip(struct hc_crilog_parser *p, const long skip[3])
{
	memcpy(p->skip, skip, sizeof(p->skip));
}

int hc_crilog_parser_flush(struct hc_crilog_parser *p, hc_crilog_line_fn *fn, void *arg)
{
	int r = 0;

	if (p->rec_len || p->rec_cut)
		r = take_held_record(p, fn, arg);
	while (!r && (p->part[0].active || p->part[1].active)) {
		enum hc_crilog_stream s = HC_CRILOG_STDOUT;

		if (!p->part[0].active || (p->part[1].active && p->part[1].seq < p->part[0].seq))
			s = HC_CRILOG_STDERR;
		r = emit_pending(p, s, true, fn, arg);
	}
	return r;
}

/* ---- finding the tail ---- */

/*
 * The backward scan. Going from the end, each line end (an F, a malformed
 * record, or the last P of a stream with no F after it) is a line; the first
 * tail of them are selected. A selected line of a stream takes the P records
 * before it up to the previous F of that stream, and the window starts at the
 * earliest record of a selected line. Lines ending inside the window that are
 * not selected (an older line of the other stream, finishing between the
 * pieces of a selected one) are counted, per class, for the parser to skip:
 * they all end before any selected line, so they are the first of their class
 * to come out.
 */
struct tail_scan {
	long tail, count;
	off_t start;
	bool exceeded;
	bool seen[2];	    /* met a record of the stream (so its later P records were a run) */
	bool collecting[2]; /* taking the P records of a selected line */
	long unsel[3];	    /* unselected line ends met so far */
	long skip[3];	    /* unselected line ends inside the window */
	long skip_run[2];   /* unselected open lines: they end after the window */
};

static void scan_move(struct tail_scan *t, off_t o)
{
	t->start = o;
	memcpy(t->skip, t->unsel, sizeof(t->skip));
}

static void scan_line_end(struct tail_scan *t, int class, off_t o, bool open_line)
{
	if (t->count < t->tail) {
		t->count++;
		if (class != CLASS_MALFORMED)
			t->collecting[class] = true;
		scan_move(t, o);
	} else {
		t->exceeded = true;
		if (open_line)
			t->skip_run[class]++;
		else
			t->unsel[class]++;
	}
}

/* rec: the first bytes of the record at o, enough to classify it. */
static void scan_record(struct tail_scan *t, off_t o, const char *rec, size_t len)
{
	struct hc_crilog_record r;
	int s;

	if (hc_crilog_parse_record(rec, len, &r) < 0) {
		scan_line_end(t, CLASS_MALFORMED, o, false);
		return;
	}
	s = r.stream;
	if (!r.partial) {
		t->collecting[s] = false; /* the line before this one is not ours */
		t->seen[s] = true;
		scan_line_end(t, s, o, false);
	} else if (!t->seen[s]) {
		t->seen[s] = true;
		scan_line_end(t, s, o, true);
	} else if (t->collecting[s]) {
		scan_move(t, o);
	}
}

/* A record [o, o + len) whose bytes from o are at rec, at least
 * min(len, HEADER_MAX) of them. */
static void scan_visit(struct tail_scan *t, off_t o, const char *rec, size_t len)
{
	if (len > HEADER_MAX)
		len = HEADER_MAX; /* the rest cannot change what it is */
	else if (len && rec[len - 1] == '\r')
		len--; /* as the parser does */
	scan_record(t, o, rec, len);
}

static int pread_full(int fd, char *buf, size_t len, off_t off, size_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t n = pread(fd, buf + *got, len - *got, off + (off_t)*got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return 0;
}

int hc_crilog_find_tail(int fd, off_t size, off_t floor, long tail, off_t *start, long skip[3],
			long *found)
{
	struct tail_scan t = { .tail = tail };
	off_t bend = size, next_nl = -1;
	char *buf;
	int r = 0;

	*start = 0;
	*found = 0;
	memset(skip, 0, 3 * sizeof(skip[0]));
	if (tail < 0 || size == 0)
		return 0;
	/* a block, and the header bytes of a record starting at its end */
	buf = malloc(BLOCK + HEADER_MAX);
	if (!buf)
		return -ENOMEM;
	while (bend > floor) {
		off_t bstart = bend - floor > BLOCK ? bend - BLOCK : floor;
		size_t want = size - bstart < BLOCK + HEADER_MAX ? (size_t)(size - bstart)
								 : BLOCK + HEADER_MAX;
		size_t got, i;

		r = pread_full(fd, buf, want, bstart, &got);
		if (r < 0)
			goto out;
		if (got < want) {
			/* shrank while we looked: read it all, the cursor will see
			 * the truncation */
			t.exceeded = false;
			break;
		}
		for (i = (size_t)(bend - bstart); i > 0;) {
			char *nl = memrchr(buf, '\n', i);
			off_t at;

			if (!nl)
				break;
			i = (size_t)(nl - buf);
			at = bstart + (off_t)i;
			if (next_nl < 0)
				t.start = at + 1; /* bytes after the last '\n' are being written */
			else
				scan_visit(&t, at + 1, nl + 1, (size_t)(next_nl - at - 1));
			next_nl = at;
		}
		if (bstart == 0 && next_nl >= 0)
			scan_visit(&t, 0, buf, (size_t)next_nl); /* the first record */
		bend = bstart;
		/* the rest of a block is scanned after the window is complete, to
		 * find an open line of a stream not met yet: it must be skipped
		 * too when it ends, if it does while followed */
		if (t.exceeded && !t.collecting[0] && !t.collecting[1])
			break;
	}
	if (!t.exceeded) {
		/* every line is shown: from the start, or the first whole
		 * record past the floor */
		t.start = floor == 0 ? 0 : next_nl >= 0 ? next_nl + 1 : size;
		memset(t.skip, 0, sizeof(t.skip));
		memset(t.skip_run, 0, sizeof(t.skip_run));
	}
	*start = t.start;
	*found = t.count;
	skip[HC_CRILOG_STDOUT] = t.skip[HC_CRILOG_STDOUT] + t.skip_run[HC_CRILOG_STDOUT];
	skip[HC_CRILOG_STDERR] = t.skip[HC_CRILOG_STDERR] + t.skip_run[HC_CRILOG_STDERR];
	skip[CLASS_MALFORMED] = t.skip[CLASS_MALFORMED];
out:
	free(buf);
	return r;
}

/* ---- cursor ---- */

struct hc_crilog_cursor {
	char *path;
	int fd;
	dev_t dev;
	ino_t ino;
	off_t off; /* next byte of fd to feed */
	bool gone;
	int ifd;	/* inotify: -1 until asked for */
	int ifd_err;	/* why it could not be had */
	int wd_file;
	struct hc_crilog_parser *parser;
	char *buf; /* BLOCK bytes */
	/* a tail reaching into rotated files: their part, read first */
	struct hc_crilog_seg *backlog;
	size_t nbacklog, ibacklog;
	long skip[3]; /* the current file's tail window, after the backlog */
	/* the file before a replacement: a rotated log's writer may still add
	 * its last lines after the new file appeared; read until the next one */
	int prev_fd;
	off_t prev_off;
};

static int open_log(const char *path, int *fd_out, struct stat *st)
{
	/* O_NONBLOCK: a FIFO at path must not hang us; it is refused below */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int r = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0)
		r = -errno;
	else if (!S_ISREG(st->st_mode))
		r = S_ISDIR(st->st_mode) ? -EISDIR : -EINVAL;
	if (r < 0) {
		close(fd);
		return r;
	}
	*fd_out = fd;
	return 0;
}

void hc_crilog_cursor_free(struct hc_crilog_cursor *c)
{
	if (!c)
		return;
	if (c->ifd >= 0)
		close(c->ifd);
	if (c->fd >= 0)
		close(c->fd);
	if (c->prev_fd >= 0)
		close(c->prev_fd);
	for (size_t i = c->ibacklog; i < c->nbacklog; i++)
		close(c->backlog[i].fd);
	free(c->backlog);
	hc_crilog_parser_free(c->parser);
	free(c->buf);
	free(c->path);
	free(c);
}

struct hc_crilog_cursor *hc_crilog_cursor_open(const char *path, long tail)
{
	struct hc_crilog_cursor *c = calloc(1, sizeof(*c));
	struct stat st;
	long found;
	int dfd = -1, r;

	if (!c)
		return NULL;
	c->fd = c->ifd = c->wd_file = c->prev_fd = -1;
	c->path = strdup(path);
	c->parser = hc_crilog_parser_new(0);
	c->buf = malloc(BLOCK);
	if (!c->path || !c->parser || !c->buf) {
		r = -ENOMEM;
		goto fail;
	}
	/* no rotation between opening the file and its rotated ones */
	dfd = hc_crilog_lock_dir(path, false);
	r = open_log(path, &c->fd, &st);
	if (r < 0)
		goto fail;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	r = hc_crilog_find_tail(c->fd, st.st_size, 0, tail, &c->off, c->skip, &found);
	if (r < 0)
		goto fail;
	if (tail < 0 || found < tail) {
		c->backlog = calloc(HC_CRILOG_MAX_FILES, sizeof(*c->backlog));
		r = c->backlog ? hc_crilog_backlog_open(path, tail < 0 ? -1 : tail - found,
							c->backlog, &c->nbacklog)
			       : -ENOMEM;
		if (r < 0)
			goto fail;
	}
	if (!c->nbacklog)
		hc_crilog_parser_skip(c->parser, c->skip);
	if (dfd >= 0)
		close(dfd);
	return c;
fail:
	if (dfd >= 0)
		close(dfd);
	hc_crilog_cursor_free(c);
	errno = -r;
	return NULL;
}

static void watch_file(struct hc_crilog_cursor *c)
{
	if (c->ifd < 0)
		return;
	if (c->wd_file >= 0)
		inotify_rm_watch(c->ifd, c->wd_file); /* may be gone with its inode */
	c->wd_file = inotify_add_watch(c->ifd, c->path,
				       IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
}

int hc_crilog_cursor_fd(struct hc_crilog_cursor *c)
{
	char *dir, *slash;
	int wd_dir;

	if (c->ifd >= 0)
		return c->ifd;
	if (c->ifd_err)
		return c->ifd_err;
	c->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (c->ifd < 0) {
		c->ifd_err = -errno;
		return c->ifd_err;
	}
	/* a replacement or a deletion shows in the directory, not on the file */
	dir = strdup(c->path);
	if (!dir) {
		close(c->ifd);
		c->ifd = -1;
		return c->ifd_err = -ENOMEM;
	}
	slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	wd_dir = inotify_add_watch(c->ifd, slash ? dir : ".",
				   IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_ONLYDIR);
	free(dir);
	watch_file(c);
	if (wd_dir < 0 && c->wd_file < 0) {
		c->ifd_err = -errno;
		close(c->ifd);
		c->ifd = -1;
		return c->ifd_err;
	}
	return c->ifd;
}

bool hc_crilog_cursor_gone(const struct hc_crilog_cursor *c)
{
	return c->gone;
}

static void drain_events(struct hc_crilog_cursor *c)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	if (c->ifd < 0)
		return;
	/* the events only say "look again": the file is stat'ed every time */
	while (read(c->ifd, buf, sizeof(buf)) > 0)
		;
}

int hc_crilog_feed_range(struct hc_crilog_parser *p, int fd, off_t *off, off_t to, char *buf,
			 hc_crilog_line_fn *fn, void *arg)
{
	while (*off < to) {
		size_t want = to - *off < BLOCK ? (size_t)(to - *off) : BLOCK;
		ssize_t n = pread(fd, buf, want, *off);
		size_t used;
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* shrank meanwhile: the next read sees it */
		r = hc_crilog_parser_feed(p, buf, (size_t)n, &used, fn, arg);
		*off += (off_t)used;
		if (r)
			return r;
	}
	return 0;
}

/* Feeds fd from c->off up to size (not past: a writer as fast as us must
 * not keep us here). */
static int feed_file(struct hc_crilog_cursor *c, off_t size, hc_crilog_line_fn *fn, void *arg)
{
	return hc_crilog_feed_range(c->parser, c->fd, &c->off, size, c->buf, fn, arg);
}

/* Reads what the open file holds now. */
static int feed_current(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	struct stat st;

	if (fstat(c->fd, &st) < 0)
		return -errno;
	return feed_file(c, st.st_size, fn, arg);
}

/* Ends the old content: a record cut short and open partial lines come out
 * as they are (their rest will not), then nothing from the tail is left to
 * skip. */
static int finish_content(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	int r = hc_crilog_parser_flush(c->parser, fn, arg);

	if (r)
		return r;
	memset(c->parser->skip, 0, sizeof(c->parser->skip));
	return 0;
}

/* Another file is at path: finish ours, then read that one from its start. */
static int switch_file(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	struct stat st;
	int fd, r;

	/* what was written to the old file since we looked */
	r = feed_current(c, fn, arg);
	if (r)
		return r;
	r = finish_content(c, fn, arg);
	if (r)
		return r;
	r = open_log(c->path, &fd, &st);
	if (r == -ENOENT)
		return 0; /* gone again: the next read looks again */
	if (r < 0)
		return r;
	hc_log(HC_LOG_DEBUG, "%s was replaced, reading the new file", c->path);
	if (c->prev_fd >= 0)
		close(c->prev_fd);
	c->prev_fd = c->fd;
	c->prev_off = c->off;
	c->fd = fd;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	c->off = 0;
	watch_file(c);
	return feed_file(c, st.st_size, fn, arg);
}

/* The rotated files' part of a tail, once, before the current file. */
static int read_backlog(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	while (c->ibacklog < c->nbacklog) {
		struct hc_crilog_seg *g = &c->backlog[c->ibacklog];

		int r;

		hc_crilog_parser_skip(c->parser, g->skip);
		r = hc_crilog_feed_range(c->parser, g->fd, &g->from, g->to, c->buf, fn, arg);
		if (r)
			return r;
		close(g->fd);
		c->ibacklog++;
		if (c->ibacklog == c->nbacklog)
			hc_crilog_parser_skip(c->parser, c->skip);
	}
	return 0;
}

int hc_crilog_cursor_read(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	struct stat st, at;
	int r;

	r = read_backlog(c, fn, arg);
	if (r)
		return r;
	drain_events(c);
	if (c->prev_fd >= 0 && fstat(c->prev_fd, &st) == 0 && st.st_size > c->prev_off) {
		/* late lines of the file before (out of order, but not lost) */
		r = hc_crilog_feed_range(c->parser, c->prev_fd, &c->prev_off, st.st_size, c->buf,
					 fn, arg);
		if (r)
			return r;
	}
	if (fstat(c->fd, &st) < 0)
		return -errno;
	if (st.st_size < c->off) {
		/* truncated: what it holds now was written after */
		hc_log(HC_LOG_DEBUG, "%s was truncated, reading it from the start", c->path);
		r = finish_content(c, fn, arg);
		if (r)
			return r;
		c->off = 0;
	}
	r = feed_file(c, st.st_size, fn, arg);
	if (r)
		return r;
	if (stat(c->path, &at) == 0) {
		c->gone = false;
		if (at.st_dev == c->dev && at.st_ino == c->ino)
			return 0;
		return switch_file(c, fn, arg);
	}
	if (errno != ENOENT && errno != ENOTDIR)
		return -errno;
	if (fstat(c->fd, &st) < 0)
		return -errno;
	/* renamed away (rotation) still has a name and a writer: keep reading
	 * it; deleted, it ends once what it holds is read */
	r = feed_file(c, st.st_size, fn, arg);
	if (r)
		return r;
	c->gone = st.st_nlink == 0;
	return 0;
}

int hc_crilog_cursor_flush(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg)
{
	return hc_crilog_parser_flush(c->parser, fn, arg);
}

int hc_crilog_follow(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg, int stop_fd)
{
	int ifd = hc_crilog_cursor_fd(c);

	if (ifd < 0)
		hc_log(HC_LOG_DEBUG, "no inotify for %s (%s), polling it", c->path, strerror(-ifd));
	for (;;) {
		struct pollfd pfd[2];
		nfds_t n = 0;
		int r;

		r = hc_crilog_cursor_read(c, fn, arg);
		if (r)
			return r;
		if (c->gone)
			return hc_crilog_cursor_flush(c, fn, arg);
		if (stop_fd >= 0)
			pfd[n++] = (struct pollfd){ .fd = stop_fd, .events = POLLIN };
		if (ifd >= 0)
			pfd[n++] = (struct pollfd){ .fd = ifd, .events = POLLIN };
		r = poll(pfd, n, ifd >= 0 ? FOLLOW_RECHECK_MS : FOLLOW_POLL_MS);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && stop_fd >= 0 && pfd[0].revents)
			return 0;
	}
}
