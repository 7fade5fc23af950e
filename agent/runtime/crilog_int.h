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

/* Longest line handed out; the rest of a longer one is dropped and the line
 * marked truncated, so a workload printing without newlines costs at most
 * this much per stream. */
#define HC_CRILOG_MAX_LINE (1u << 20)
/* The longest timestamp accepted: "2006-01-02T15:04:05.999999999-07:00" */
#define HC_CRILOG_TIMESTAMP_MAX 35

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
