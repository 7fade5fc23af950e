/* Rotated CRI logs: rotation, the line index, numbered reads from
 * remembered offsets; see crilog_int.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "base/base.h"
#include "crilog_int.h"
#include "log/log.h"

#define BLOCK HC_CRILOG_BLOCK
#define INDEX_SUFFIX ".lines"
#define MARKS 1024 /* offsets remembered, over every log */
#define QUIET_STEP_US 2000
#define QUIET_TRIES 10

int hc_crilog_rotated_name(const char *path, unsigned k, char *buf, size_t len)
{
	int n = k ? snprintf(buf, len, "%s.%u", path, k) : snprintf(buf, len, "%s", path);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Whether a record whose first hl bytes are hdr (len in all) ends a line. */
static bool ends_line(const char *hdr, size_t hl, size_t len)
{
	struct hc_crilog_record r;

	if (len <= HC_CRILOG_HEADER_MAX && hl && hdr[hl - 1] == '\r')
		hl--; /* as the parser does */
	return hc_crilog_parse_record(hdr, hl, &r) < 0 || !r.partial;
}

int hc_crilog_count_lines(int fd, off_t from, off_t to, uint64_t *lines, off_t *end)
{
	char *buf = malloc(BLOCK), hdr[HC_CRILOG_HEADER_MAX];
	size_t hl = 0, rec_len = 0;
	off_t o = from;
	int r = 0;

	*lines = 0;
	*end = from;
	if (!buf)
		return -ENOMEM;
	while (o < to) {
		size_t want = to - o < BLOCK ? (size_t)(to - o) : BLOCK, i = 0;
		ssize_t n = pread(fd, buf, want, o);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		while (i < (size_t)n) {
			char *nl = memchr(buf + i, '\n', (size_t)n - i);
			size_t seg = nl ? (size_t)(nl - (buf + i)) : (size_t)n - i;
			size_t take = seg < sizeof(hdr) - hl ? seg : sizeof(hdr) - hl;

			memcpy(hdr + hl, buf + i, take);
			hl += take;
			rec_len += seg;
			if (!nl)
				break;
			*lines += ends_line(hdr, hl, rec_len);
			i += seg + 1;
			*end = o + (off_t)i;
			hl = rec_len = 0;
		}
		o += n;
	}
	free(buf);
	return r;
}

/* ---- the directory lock ---- */

/* The log's directory, opened and flocked (how: LOCK_SH or LOCK_EX); the
 * lock goes with the descriptor. -errno. */
static int lock_dir(const char *path, int how)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int fd;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (flock(fd, how) < 0) {
		if (errno != EINTR) {
			int e = -errno;

			close(fd);
			return e;
		}
	}
	return fd;
}

/* ---- the set of files and the index ---- */

struct logfile {
	uint64_t key; /* the log's path, hashed: marks of other logs never match */
	int fd;
	dev_t dev;
	ino_t ino;
	off_t size;
	uint64_t first; /* number of its first line */
	off_t counted;	/* a rotated file's lines are counted up to here */
};

struct logset {
	struct logfile f[HC_CRILOG_MAX_FILES + 1]; /* oldest first; the last is <path> */
	size_t n;
};

static void set_close(struct logset *s)
{
	for (size_t i = 0; i < s->n; i++)
		close(s->f[i].fd);
	s->n = 0;
}

struct index_entry {
	ino_t ino;
	uint64_t first;
	off_t counted;
};

/* Reads <path>.lines: "INODE FIRST_LINE COUNTED_BYTES" per line. Missing:
 * none. */
static size_t index_read(const char *path, struct index_entry *e, size_t max)
{
	char name[4096];
	unsigned long long ino, first, counted;
	size_t n = 0;
	FILE *f;

	if (snprintf(name, sizeof(name), "%s%s", path, INDEX_SUFFIX) >= (int)sizeof(name))
		return 0;
	f = fopen(name, "re");
	if (!f)
		return 0;
	while (n < max && fscanf(f, "%llu %llu %llu\n", &ino, &first, &counted) == 3)
		e[n++] = (struct index_entry){ (ino_t)ino, first, (off_t)counted };
	fclose(f);
	return n;
}

/* The index replaced by a rename, without fsync: it must survive the
 * agent, not the machine (a stale one is recounted, see set_open_locked),
 * and a rotation must not wait for the disk while the writer goes on. */
static int write_replace(const char *name, const char *text, size_t len)
{
	char tmp[4096 + 8];
	int fd, r;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return -errno;
	r = hc_write_all(fd, text, len);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, name) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

static int index_write(const char *path, const struct logset *s)
{
	char name[4096], text[(HC_CRILOG_MAX_FILES + 1) * 72];
	size_t len = 0;

	if (snprintf(name, sizeof(name), "%s%s", path, INDEX_SUFFIX) >= (int)sizeof(name))
		return -ENAMETOOLONG;
	for (size_t i = 0; i < s->n; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "%llu %" PRIu64 " %lld\n",
					(unsigned long long)s->f[i].ino, s->f[i].first,
					(long long)s->f[i].counted);
	return write_replace(name, text, len);
}

static int open_file(const char *name, struct logfile *lf)
{
	struct stat st;

	lf->fd = open(name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (lf->fd < 0)
		return -errno;
	if (fstat(lf->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = S_ISREG(st.st_mode) ? -errno : -EINVAL;

		close(lf->fd);
		return e;
	}
	lf->dev = st.st_dev;
	lf->ino = st.st_ino;
	lf->size = st.st_size;
	return 0;
}

/* FNV-1a */
static uint64_t path_key(const char *path)
{
	uint64_t h = 14695981039346656037ull;

	for (; *path; path++)
		h = (h ^ (unsigned char)*path) * 1099511628211ull;
	return h;
}

/*
 * Numbers the files' lines from the index. A file the index misses starts
 * where the one before it ends, counted. A rotated file that grew past what
 * was counted of it (containerd flushes the last of the old file after
 * ReopenContainerLog answered) shifts the files after it by the lines it
 * gained: the numbers heal once the old file is complete.
 */
static int number_files(struct logset *s, const struct index_entry *idx, size_t nidx)
{
	uint64_t shift = 0, lines;
	off_t end;
	int r;

	for (size_t i = 0; i < s->n; i++) {
		struct logfile *lf = &s->f[i];
		bool known = false, last = i == s->n - 1;

		for (size_t j = 0; j < nidx && !known; j++)
			if (idx[j].ino == lf->ino) {
				lf->first = idx[j].first + shift;
				lf->counted = idx[j].counted;
				known = true;
			}
		if (!known) {
			/* a crash mid-rotation: after the one before, counted */
			lf->first = 0;
			if (i > 0) {
				struct logfile *prev = &s->f[i - 1];

				r = hc_crilog_count_lines(prev->fd, 0, prev->size, &lines, &end);
				if (r < 0)
					return r;
				lf->first = prev->first + lines;
			}
			lf->counted = lf->size;
			continue;
		}
		if (last || lf->counted >= lf->size)
			continue;
		r = hc_crilog_count_lines(lf->fd, lf->counted, lf->size, &lines, &end);
		if (r < 0)
			return r;
		shift += lines;
		lf->counted = end;
	}
	return 0;
}

/* Opens <path>.k ... <path>.1, <path> (those that exist, with the
 * directory locked by the caller) and numbers their lines. -ENOENT when
 * there is no <path>. */
static int set_open_locked(const char *path, struct logset *s)
{
	struct index_entry idx[HC_CRILOG_MAX_FILES + 1];
	struct logfile rot[HC_CRILOG_MAX_FILES];
	size_t nrot = 0, nidx;
	char name[4096];
	int r;

	s->n = 0;
	for (unsigned k = 1; k <= HC_CRILOG_MAX_FILES; k++) {
		if (hc_crilog_rotated_name(path, k, name, sizeof(name)) < 0 ||
		    open_file(name, &rot[nrot]) < 0)
			break;
		nrot++;
	}
	while (nrot)
		s->f[s->n++] = rot[--nrot];
	r = open_file(path, &s->f[s->n]);
	if (r < 0) {
		set_close(s);
		return r;
	}
	s->n++;
	for (size_t i = 0; i < s->n; i++)
		s->f[i].key = path_key(path);
	nidx = index_read(path, idx, HC_CRILOG_MAX_FILES + 1);
	r = number_files(s, idx, nidx);
	if (r < 0)
		set_close(s);
	return r;
}

static int set_open(const char *path, struct logset *s)
{
	int dfd = lock_dir(path, LOCK_SH), r;

	if (dfd < 0)
		return dfd;
	r = set_open_locked(path, s);
	close(dfd);
	return r;
}

/* ---- rotation ---- */

/* Renames <path>.from to <path>.to; a missing one is fine. */
static int rename_k(const char *path, unsigned from, unsigned to)
{
	char a[4096], b[4096];

	if (hc_crilog_rotated_name(path, from, a, sizeof(a)) < 0 ||
	    hc_crilog_rotated_name(path, to, b, sizeof(b)) < 0)
		return -ENAMETOOLONG;
	if (rename(a, b) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* Undoes the shift of nrot files and the rename of path (reopen failed). */
static void unshift(const char *path, unsigned nrot)
{
	for (unsigned k = 0; k <= nrot; k++)
		if (rename_k(path, k + 1, k) < 0)
			hc_log(HC_LOG_WARN, "cannot undo the rotation of %s: %s", path,
			       strerror(errno));
}

/* containerd writes what its old log writer still held after it answered
 * ReopenContainerLog: waits (briefly) until the old file stops growing, so
 * that it is counted whole. What comes later is counted when the numbers are
 * next read (number_files). */
static int wait_quiet(int fd, struct stat *st)
{
	off_t last = -1;

	for (int i = 0; i < QUIET_TRIES; i++) {
		if (fstat(fd, st) < 0)
			return -errno;
		if (st->st_size == last)
			return 0;
		last = st->st_size;
		usleep(QUIET_STEP_US);
	}
	return 0;
}

/* After the rename and the reopen: drops files past max_files and writes
 * where each remaining file's lines start. old: the set before (its last
 * file is now <path>.1, complete). */
static int finish_rotation(const char *path, struct logset *old, unsigned max_files)
{
	struct logset now = { .n = 0 };
	struct logfile *prev = &old->f[old->n - 1];
	char name[4096];
	struct stat st;
	uint64_t lines;
	off_t end;
	int r;

	/* no rotated file kept at all: the one just renamed goes too */
	if (max_files == 0 && hc_crilog_rotated_name(path, 1, name, sizeof(name)) == 0)
		unlink(name);
	r = wait_quiet(prev->fd, &st);
	if (r < 0)
		return r;
	r = hc_crilog_count_lines(prev->fd, 0, st.st_size, &lines, &end);
	if (r < 0)
		return r;
	prev->counted = end;
	/* the files kept, old and new, numbered as the set had them */
	for (size_t i = old->n > max_files ? old->n - max_files : 0; i < old->n; i++)
		now.f[now.n++] = old->f[i];
	if (stat(path, &st) == 0)
		now.f[now.n++] = (struct logfile){ .ino = st.st_ino, .first = prev->first + lines };
	return index_write(path, &now);
}

int hc_crilog_rotate(const char *path, uint64_t min_size, unsigned max_files,
		     hc_crilog_reopen_fn *reopen, void *arg)
{
	struct logset s = { .n = 0 };
	unsigned nrot;
	struct stat st;
	int dfd, r;

	if (max_files > HC_CRILOG_MAX_FILES)
		max_files = HC_CRILOG_MAX_FILES;
	if (stat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((uint64_t)st.st_size < min_size)
		return 0;
	dfd = lock_dir(path, LOCK_EX);
	if (dfd < 0)
		return dfd;
	r = set_open_locked(path, &s);
	if (r < 0 || (uint64_t)s.f[s.n - 1].size < min_size) {
		r = r == -ENOENT ? 0 : r; /* gone, or rotated by another meanwhile */
		goto out;
	}
	/* the oldest go first: never more than max_files rotated files */
	nrot = (unsigned)s.n - 1;
	for (; nrot >= max_files && nrot > 0; nrot--) {
		char name[4096];

		if (hc_crilog_rotated_name(path, nrot, name, sizeof(name)) == 0 && unlink(name) < 0 &&
		    errno != ENOENT) {
			r = -errno;
			goto out;
		}
	}
	for (unsigned k = nrot; k > 0 && r == 0; k--)
		r = rename_k(path, k, k + 1);
	if (r == 0)
		r = rename_k(path, 0, 1);
	if (r < 0) {
		unshift(path, nrot); /* what was shifted goes back */
		goto out;
	}
	r = reopen(arg);
	if (r < 0) {
		unshift(path, nrot);
		goto out;
	}
	r = finish_rotation(path, &s, max_files);
	hc_log(HC_LOG_DEBUG, "rotated %s at %lld bytes", path, (long long)s.f[s.n - 1].size);
	if (r < 0)
		hc_log(HC_LOG_WARN, "rotated %s, but its line index: %s (recounted when read)",
		       path, strerror(-r));
	r = 1;
out:
	set_close(&s);
	close(dfd);
	return r;
}

/* ---- marks: offsets of line numbers seen lately ---- */

struct mark {
	uint64_t key;
	dev_t dev;
	ino_t ino;
	off_t off; /* a record starts here (a line of over 16 KiB may be open) */
	uint64_t line;
	bool used;
};

struct hc_crilog_marks {
	pthread_mutex_t lock;
	struct mark m[MARKS];
	size_t next; /* the slot replaced next */
};

struct hc_crilog_marks *hc_crilog_marks_new(void)
{
	struct hc_crilog_marks *m = calloc(1, sizeof(*m));

	if (m)
		pthread_mutex_init(&m->lock, NULL);
	return m;
}

void hc_crilog_marks_free(struct hc_crilog_marks *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static void mark_put(struct hc_crilog_marks *m, const struct logfile *lf, off_t off,
		     uint64_t line)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < MARKS; i++)
		if (m->m[i].used && m->m[i].key == lf->key && m->m[i].dev == lf->dev &&
		    m->m[i].ino == lf->ino && m->m[i].line == line) {
			pthread_mutex_unlock(&m->lock);
			return;
		}
	m->m[m->next] = (struct mark){ lf->key, lf->dev, lf->ino, off, line, true };
	m->next = (m->next + 1) % MARKS;
	pthread_mutex_unlock(&m->lock);
}

/* The mark in lf with the greatest line at most line (exact: equal only);
 * false if none. */
static bool mark_get(struct hc_crilog_marks *m, const struct logfile *lf, uint64_t line,
		     bool exact, struct mark *out)
{
	bool found = false;

	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < MARKS; i++) {
		const struct mark *k = &m->m[i];

		/* a mark below the file's first line is of an older file
		 * whose inode number the file reuses */
		if (!k->used || k->key != lf->key || k->dev != lf->dev || k->ino != lf->ino ||
		    k->line > line || k->line < lf->first || k->off > lf->size ||
		    (exact && k->line != line))
			continue;
		if (!found || k->line > out->line) {
			*out = *k;
			found = true;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return found;
}

/* ---- numbered reads ---- */

/* Where the current file's whole lines end now: its line count, from the
 * best mark on (what was written since the last read), remembered. */
static int count_to_end(struct logset *s, struct hc_crilog_marks *marks, uint64_t *end_line,
			off_t *end_off)
{
	struct logfile *cur = &s->f[s->n - 1];
	struct mark k = { .off = 0, .line = cur->first };
	uint64_t lines;
	int r;

	mark_get(marks, cur, UINT64_MAX, false, &k);
	r = hc_crilog_count_lines(cur->fd, k.off, cur->size, &lines, end_off);
	if (r < 0)
		return r;
	*end_line = k.line + lines;
	mark_put(marks, cur, *end_off, *end_line);
	return 0;
}

struct segment {
	struct logfile *lf;
	off_t from, to;
	long skip[3];
};

struct reader {
	hc_crilog_line_fn *fn;
	void *arg;
	struct hc_crilog_parser *p;
};

static int feed_segment(struct reader *rd, const struct segment *sg, char *buf)
{
	off_t o = sg->from;

	hc_crilog_parser_skip(rd->p, sg->skip);
	return hc_crilog_feed_range(rd->p, sg->lf->fd, &o, sg->to, buf, rd->fn, rd->arg);
}

/* The start of the first record at or after o (to if none before it). */
static int record_after(int fd, off_t o, off_t to, off_t *out)
{
	char buf[4096];

	*out = to;
	if (o <= 0) {
		*out = 0;
		return 0;
	}
	for (off_t at = o - 1; at < to;) {
		size_t want = to - at < (off_t)sizeof(buf) ? (size_t)(to - at) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, at);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		nl = memchr(buf, '\n', (size_t)n);
		if (nl) {
			*out = at + (nl - buf) + 1;
			return 0;
		}
		at += n;
	}
	return 0;
}

/*
 * Plans the segments to read: from line `from` (in file i, at most `want`
 * lines before the end) to end_off in the current file, no more than
 * window bytes back. A mark exactly at `from` (a follower's last read)
 * is used as is; otherwise each file's part is found backwards.
 */
static int plan(struct logset *s, struct hc_crilog_marks *marks, uint64_t from, uint64_t end_line,
		off_t end_off, uint64_t window, struct segment *sg, size_t *nsg)
{
	uint64_t budget = window ? window : UINT64_MAX;
	size_t i = s->n;

	*nsg = 0;
	while (i-- > 0 && budget) {
		struct logfile *lf = &s->f[i];
		off_t to = i == s->n - 1 ? end_off : lf->size;
		uint64_t last = i == s->n - 1 ? end_line : s->f[i + 1].first;
		struct segment *g = &sg[*nsg];
		struct mark k;
		long found;
		int r;

		memset(g, 0, sizeof(*g));
		g->lf = lf;
		g->to = to;
		if (last <= from && i != s->n - 1)
			break; /* nothing wanted here or before */
		if (from >= lf->first && mark_get(marks, lf, from, true, &k)) {
			g->from = k.off;
		} else if (from >= lf->first) {
			off_t floor = budget < (uint64_t)to ? to - (off_t)budget : 0;

			r = hc_crilog_find_tail(lf->fd, to, floor, (long)(last - from), &g->from,
						g->skip, &found);
			if (r < 0)
				return r;
		}
		/* else: the whole file (g->from 0), and the ones before */
		if ((uint64_t)(g->to - g->from) > budget) {
			/* the window ends inside: from its first whole record on */
			r = record_after(lf->fd, g->to - (off_t)budget, g->to, &g->from);
			if (r < 0)
				return r;
			memset(g->skip, 0, sizeof(g->skip));
			budget = 0;
		} else {
			budget -= (uint64_t)(g->to - g->from);
		}
		(*nsg)++;
		if (from >= lf->first)
			break;
	}
	/* oldest first */
	for (size_t a = 0, b = *nsg ? *nsg - 1 : 0; a < b; a++, b--) {
		struct segment t = sg[a];

		sg[a] = sg[b];
		sg[b] = t;
	}
	return 0;
}

int hc_crilog_read_lines(const char *path, const struct hc_crilog_query *q,
			 struct hc_crilog_marks *marks, hc_crilog_line_fn *fn, void *arg,
			 uint64_t *next_line)
{
	struct segment sg[HC_CRILOG_MAX_FILES + 1];
	struct reader rd = { fn, arg, NULL };
	struct logset s = { .n = 0 };
	uint64_t end_line, from;
	char *buf = NULL;
	off_t end_off;
	size_t nsg;
	int r;

	*next_line = 0;
	r = set_open(path, &s);
	if (r < 0)
		return r;
	r = count_to_end(&s, marks, &end_line, &end_off);
	if (r < 0)
		goto out;
	*next_line = end_line;
	from = q->from_line;
	if (q->tail && end_line > q->tail && end_line - q->tail > from)
		from = end_line - q->tail;
	if (from >= end_line && !q->flush)
		goto out; /* nothing new */
	r = plan(&s, marks, from, end_line, end_off, q->window, sg, &nsg);
	if (r < 0)
		goto out;
	if (q->flush && nsg)
		sg[nsg - 1].to = s.f[s.n - 1].size; /* the record being written too */
	rd.p = hc_crilog_parser_new(0);
	buf = malloc(BLOCK);
	if (!rd.p || !buf) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nsg && r == 0; i++)
		r = feed_segment(&rd, &sg[i], buf);
	if (r == 0 && q->flush)
		r = hc_crilog_parser_flush(rd.p, fn, arg);
out:
	free(buf);
	hc_crilog_parser_free(rd.p);
	set_close(&s);
	return r;
}

int hc_crilog_backlog_open(const char *path, long want, struct hc_crilog_seg *segs, size_t *nsegs)
{
	struct logset s = { .n = 0 };
	int r;

	*nsegs = 0;
	r = set_open_locked(path, &s);
	if (r < 0)
		return r;
	/* the current file is the cursor's own: only the rotated ones here */
	close(s.f[--s.n].fd);
	for (size_t i = s.n; i-- > 0 && want != 0;) {
		struct hc_crilog_seg *g = &segs[*nsegs];
		long found;

		r = hc_crilog_find_tail(s.f[i].fd, s.f[i].size, 0, want, &g->from, g->skip, &found);
		if (r < 0)
			break;
		g->fd = s.f[i].fd;
		s.f[i].fd = -1;
		g->to = s.f[i].size;
		(*nsegs)++;
		if (want > 0)
			want -= found;
	}
	for (size_t i = 0; i < s.n; i++)
		if (s.f[i].fd >= 0)
			close(s.f[i].fd);
	/* oldest first */
	for (size_t a = 0, b = *nsegs ? *nsegs - 1 : 0; a < b; a++, b--) {
		struct hc_crilog_seg t = segs[a];

		segs[a] = segs[b];
		segs[b] = t;
	}
	if (r < 0) {
		for (size_t i = 0; i < *nsegs; i++)
			close(segs[i].fd);
		*nsegs = 0;
	}
	return r;
}

int hc_crilog_lock_dir(const char *path, bool exclusive)
{
	return lock_dir(path, exclusive ? LOCK_EX : LOCK_SH);
}
