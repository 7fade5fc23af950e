/*
 * Reading CRI container log files (what containerd writes for a workload):
 * one record per line, "<RFC 3339 time> <stdout|stderr> <F|P> <payload>",
 * P records being pieces of a longer line continued by the next records of
 * the same stream up to an F. The content comes from the workload and the
 * file may be damaged, truncated or replaced: nothing here trusts it.
 *
 * Two layers: a parser fed bytes in any pieces (pure, what the fuzzer
 * drives), and a cursor that feeds it from the file, finds the tail and
 * follows. Neither is thread-safe; use one from one thread at a time.
 */
#ifndef HC_CRILOG_INT_H
#define HC_CRILOG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Longest line handed out; the rest of a longer one is dropped and the line
 * marked truncated, so a workload printing without newlines costs at most
 * this much per stream. */
#define HC_CRILOG_MAX_LINE (1u << 20)
/* The longest timestamp accepted: "2006-01-02T15:04:05.999999999-07:00" */
#define HC_CRILOG_TIMESTAMP_MAX 35
/* Everything that decides whether a record is valid and what it is lies in
 * its first HC_CRILOG_HEADER_MAX bytes: timestamp, stream, tag, spaces. */
#define HC_CRILOG_HEADER_MAX 64
/* The unit files are read in, forwards and backwards. */
#define HC_CRILOG_BLOCK 65536

enum hc_crilog_stream { HC_CRILOG_STDOUT = 0, HC_CRILOG_STDERR = 1 };

/* One record, pointing into the bytes it was parsed from. */
struct hc_crilog_record {
	enum hc_crilog_stream stream;
	bool partial;	       /* tag P: the line goes on in the next record of the stream */
	const char *timestamp; /* not NUL-terminated */
	size_t timestamp_len;  /* at most HC_CRILOG_TIMESTAMP_MAX */
	const char *payload;   /* not NUL-terminated; may hold any byte but '\n' */
	size_t len;
};

/* One line, valid during the callback only. */
struct hc_crilog_line {
	enum hc_crilog_stream stream;	/* HC_CRILOG_STDOUT for a malformed record */
	char timestamp[HC_CRILOG_TIMESTAMP_MAX + 1]; /* of its first record; "" if malformed */
	const char *text; /* without the newline; not NUL-terminated, may hold NULs */
	size_t len;	  /* at most the parser's line cap */
	bool truncated;	  /* longer than the cap (or memory ran out): the rest was dropped */
	bool malformed;	  /* not a CRI record: the raw bytes of the file's line */
	bool unfinished;  /* no F ended it: emitted by a flush (output that ended without '\n') */
};

/* Called for every line; a nonzero return stops the reading where it is
 * (later reads go on from the next line) and is returned to the caller. */
typedef int hc_crilog_line_fn(void *arg, const struct hc_crilog_line *line);

/*
 * Parses one record given without its '\n' (a '\r' before it must be removed
 * by the caller, as the parser does). The timestamp must be RFC 3339 with
 * 0 to 9 fractional digits and Z or a numeric offset; the tag F or P,
 * optionally followed by ":"-separated extensions (kubelet's forward
 * compatibility), 16 bytes at most; then one space and the payload, which
 * may be empty. 0 or -EINVAL. Pure: no allocation, no I/O.
 */
int hc_crilog_parse_record(const char *rec, size_t len, struct hc_crilog_record *out);

/*
 * ---- parser: file bytes in, lines out ----
 *
 * Records of one stream are joined from P records to the F that ends them;
 * the two streams interleave independently. A line's text is capped at
 * line_max bytes. A malformed record (any line of the file that does not
 * parse, the empty one included) is emitted as it is, flagged malformed, and
 * does not interrupt pending partial lines. Memory held: at most the start
 * of one record split across feeds (line_max + 65 bytes) and one line per
 * stream (line_max); buffers grown past 64 KiB are released after use.
 */
struct hc_crilog_parser;

/* line_max 0 means HC_CRILOG_MAX_LINE. Caller owns it (hc_crilog_parser_free,
 * which accepts NULL). NULL + ENOMEM, or EINVAL for a cap above SIZE_MAX / 4. */
struct hc_crilog_parser *hc_crilog_parser_new(size_t line_max);
void hc_crilog_parser_free(struct hc_crilog_parser *p);

/*
 * Takes the next len bytes of the file. Lines completed by them go to fn
 * (text may point into data). *used is how many bytes were taken: all of
 * them, unless fn stopped the feed, in which case the bytes after the record
 * that completed the stopping line are left for the caller to feed again.
 * An incomplete record at the end is kept for the next feed. 0 or fn's
 * nonzero value; nothing fails (memory short of the caps truncates lines).
 */
int hc_crilog_parser_feed(struct hc_crilog_parser *p, const char *data, size_t len, size_t *used,
			  hc_crilog_line_fn *fn, void *arg);

/*
 * For the end of a log (the writer is gone, or a one-shot read): takes a
 * last record without '\n' as if it had one, then emits the partial lines
 * still waiting for their F, flagged unfinished, oldest first. After it the
 * parser holds nothing. 0 or fn's nonzero value (the rest stays pending).
 */
int hc_crilog_parser_flush(struct hc_crilog_parser *p, hc_crilog_line_fn *fn, void *arg);

/* Feeds p from fd's bytes [*off, to), read into buf (HC_CRILOG_BLOCK
 * bytes); *off advances past what the parser took. A file shorter than to
 * ends the feed early (not an error). 0, fn's nonzero value or -errno. */
int hc_crilog_feed_range(struct hc_crilog_parser *p, int fd, off_t *off, off_t to, char *buf,
			 hc_crilog_line_fn *fn, void *arg);

/* Sets how many lines of each class (stdout, stderr, malformed) the parser
 * drops unseen before it emits any: a tail's window (hc_crilog_find_tail). */
void hc_crilog_parser_skip(struct hc_crilog_parser *p, const long skip[3]);

/*
 * Where to start reading the first size bytes of fd for their last tail
 * lines (tail < 0: all), how many lines of each class to skip from there,
 * and how many lines that yields (*found, at most tail). Reads backwards in
 * 64 KiB blocks, never below floor (a window: then at most from the first
 * whole record past it): the cost is what is shown. 0 or -errno.
 */
int hc_crilog_find_tail(int fd, off_t size, off_t floor, long tail, off_t *start, long skip[3],
			long *found);

/* ---- rotation: <path>, then <path>.1 (newest rotated) ... <path>.N ----
 *
 * The agent renames a log that reached its size cap to <path>.1 (shifting
 * older ones, dropping those past the count kept) and has containerd reopen
 * <path> (CRI ReopenContainerLog). Lines are numbered from the workload's
 * first, across rotations: <path>.lines records, per file (by inode), the
 * number of its first line, so numbers survive rotations, dropped files and
 * agent restarts. A file the index does not know (a crash mid-rotation)
 * starts where the one before it ends, counted. A line's number is that of
 * the record that ends it (an F record or a malformed one).
 *
 * Rotation takes an exclusive flock on the log's directory, readers a shared
 * one while they open the files, so a reader never sees a rotation half
 * done; once open, a file is read through its descriptor whatever its name.
 */
#define HC_CRILOG_MAX_FILES 32 /* rotated files at most */

/* The name of rotated file k of path (k 0: path). 0 or -ENAMETOOLONG. */
int hc_crilog_rotated_name(const char *path, unsigned k, char *buf, size_t len);

/* Counts the lines that end in fd's bytes [from, to): F and malformed
 * records. *end: just past the last whole record ('\n') in the range.
 * 0 or -errno. Reads forward; no allocation beyond one block. */
int hc_crilog_count_lines(int fd, off_t from, off_t to, uint64_t *lines, off_t *end);

/* Has containerd write path afresh (CRI ReopenContainerLog); the unit
 * tests pass a double. 0 or -errno. */
typedef int hc_crilog_reopen_fn(void *arg);

/*
 * Rotates path when it holds at least min_size bytes: drops rotated files
 * numbered max_files and up, shifts the others up by one, renames path to
 * <path>.1, calls reopen, and records in the index where the new file's
 * lines start. If reopen fails the renames are undone (the writer never
 * lost its file) and its error returned. 1 rotated, 0 not needed, -errno.
 * Blocks on the disk and on reopen.
 */
int hc_crilog_rotate(const char *path, uint64_t min_size, unsigned max_files,
		     hc_crilog_reopen_fn *reopen, void *arg);

/* Byte offsets of line numbers seen lately, shared by the readers of every
 * log (thread-safe), so that a follower's next read starts where its last
 * one ended instead of counting from the file's start. Bounded. */
struct hc_crilog_marks;

struct hc_crilog_marks *hc_crilog_marks_new(void);
void hc_crilog_marks_free(struct hc_crilog_marks *m);

struct hc_crilog_query {
	uint64_t from_line; /* the first line wanted */
	uint32_t tail;	    /* at most the last tail of them; 0: no limit */
	uint64_t window;    /* bytes of log read at most, back from its end; 0: all */
	bool flush;	    /* also an open partial line at the end (not counted) */
};

/*
 * Numbered reads of a rotated log: calls fn for the lines from q->from_line
 * on (across rotated files, oldest first), the last q->tail of them, within
 * q->window bytes of the end; *next_line is the number after the last whole
 * line now in the log, what the next read asks for. Lines older than the
 * oldest file kept are gone: the read starts at its first. Cost: the lines
 * returned, plus what was written since the last read (counted once).
 * 0, -ENOENT without a log, fn's nonzero value or -errno. marks may be NULL.
 */
int hc_crilog_read_lines(const char *path, const struct hc_crilog_query *q,
			 struct hc_crilog_marks *marks, hc_crilog_line_fn *fn, void *arg,
			 uint64_t *next_line);

/* For the cursor (crilog.c): the rotated files' part of a tail. */
struct hc_crilog_seg {
	int fd;
	off_t from, to;
	long skip[3];
};

/* The log's directory, flocked shared (or exclusive): a descriptor to
 * close when done, or -errno. */
int hc_crilog_lock_dir(const char *path, bool exclusive);

/* With the directory locked: the last want lines (want < 0: all) of the
 * rotated files of path, oldest first, as segments to read (their fds are
 * the caller's). 0 or -errno. */
int hc_crilog_backlog_open(const char *path, long want, struct hc_crilog_seg *segs,
			   size_t *nsegs);

/* ---- cursor: a log file on disk ---- */

struct hc_crilog_cursor;

/*
 * Opens the log at path, positioned so that reading it (and flushing, for a
 * finished log) yields its last tail lines: tail < 0 all, 0 only lines
 * completed from now on. Lines are counted by where they end: an F record, a
 * malformed record, or the last record of a stream whose line is still open
 * (P records at the end). Bytes after the last '\n' are a record still being
 * written and are not counted. The tail is found by reading backwards from
 * the end in 64 KiB blocks: the cost is what is shown, not the file's size.
 * Lines of the other stream that end inside the window but are older than
 * the tail are skipped, so exactly min(tail, lines) come out. (One thing is
 * not searched for: a line of a stream left open long before the window, in
 * blocks not scanned; if it ends while followed, its last piece comes out.)
 * When the file holds fewer than tail lines, the rest come from the rotated
 * files before it (newest first, as far as needed), read before it.
 * Caller owns the cursor (hc_crilog_cursor_free). NULL + errno: ENOENT when
 * there is no file, EISDIR/EINVAL for something not a regular file, ENOMEM,
 * or open(2)/read(2)'s errno. Blocks only on the file's I/O.
 */
struct hc_crilog_cursor *hc_crilog_cursor_open(const char *path, long tail);

/*
 * Emits every line completed by what the file holds now (up to its size at
 * the call, so a fast writer cannot keep it looping), keeping an incomplete
 * record and open partial lines for the next read. A file that shrank below
 * what was read is started over; another file at path (replaced or recreated)
 * is read from its start once the rest of the old one has been read. Either
 * way what was pending of the old content is first flushed. (A file
 * truncated and rewritten past our offset between two reads cannot be told
 * from one appended to.) Does not wait for data. 0, fn's nonzero value, or
 * -errno.
 */
int hc_crilog_cursor_read(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg);

/* hc_crilog_parser_flush on the cursor's parser: for a one-shot read after
 * hc_crilog_cursor_read, so a log ending without '\n' shows its last line. */
int hc_crilog_cursor_flush(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg);

/*
 * An inotify descriptor, readable when the file or its directory changed:
 * poll it, then call hc_crilog_cursor_read (which drains it). Created on the
 * first call (one-shot readers use no inotify instance) and owned by the
 * cursor. Returns the fd, or -errno if inotify is unavailable (e.g. -EMFILE
 * at the per-user instance limit): poll with a timeout instead.
 */
int hc_crilog_cursor_fd(struct hc_crilog_cursor *c);

/* Whether the file was deleted (no name left, nothing at path) and all of it
 * has been read: no more lines will come. */
bool hc_crilog_cursor_gone(const struct hc_crilog_cursor *c);

/*
 * Reads, waits for a change, reads again, until fn returns nonzero, stop_fd
 * (-1: none) is readable or hung up, or the file is gone (then partial lines
 * are flushed). An open partial line is emitted only when its F arrives.
 * Without inotify it polls the file every 250 ms. Blocks. 0, fn's nonzero
 * value or -errno.
 */
int hc_crilog_follow(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg, int stop_fd);

/* Accepts NULL. */
void hc_crilog_cursor_free(struct hc_crilog_cursor *c);

#endif /* HC_CRILOG_INT_H */
