/*
 * Reading CRI container log files (what containerd writes for a workload):
 * one record per line, "<RFC 3339 time> <stdout|stderr> <F|P> <payload>",
 * P records being pieces of a longer line continued by the next records of
 * the same stream up to an F. The content comes from the workload and is
 * untrusted: any bytes, endless lines, files truncated or replaced.
 */
#ifndef HC_CRILOG_INT_H
#define HC_CRILOG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HC_CRILOG_MAX_LINE (1u << 20)	  /* longer lines are cut and marked truncated */
#define HC_CRILOG_MAX_RECORD (256u << 10) /* containerd writes at most 16 KiB + header */

enum hc_crilog_stream { HC_CRILOG_STDOUT, HC_CRILOG_STDERR };

struct hc_crilog_record {
	enum hc_crilog_stream stream;
	bool partial;
	const char *timestamp; /* not NUL-terminated */
	size_t timestamp_len;
	const char *payload;
	size_t len;
};

/* One reassembled line, valid during the callback only. */
struct hc_crilog_line {
	enum hc_crilog_stream stream;
	char timestamp[40]; /* of its first record, as written */
	const char *text;   /* without the newline */
	size_t len;
	bool truncated;	    /* longer than HC_CRILOG_MAX_LINE; the rest was dropped */
};

/* A nonzero return stops the reading and is passed back to the caller. */
typedef int hc_crilog_line_fn(void *arg, const struct hc_crilog_line *line);

/* Parses one record (without its '\n'). 0 or -EINVAL. Pure. */
int hc_crilog_parse_record(const char *rec, size_t len, struct hc_crilog_record *out);

/* The byte-stream layer under the cursor: feed file bytes in any pieces;
 * complete lines come out through fn. Malformed records are skipped and
 * counted. Memory is bounded by the two caps above. */
struct hc_crilog_parser {
	char *rec; /* an incomplete record, waiting for its '\n' */
	size_t rec_len, rec_cap;
	bool rec_overflow; /* skipping the rest of an oversized record */
	struct {
		char *buf;
		size_t len, cap;
		bool active, truncated;
		char timestamp[40];
	} part[2]; /* pending P records per stream */
	unsigned long malformed;
};

void hc_crilog_parser_init(struct hc_crilog_parser *p);
void hc_crilog_parser_fini(struct hc_crilog_parser *p);
/* Forgets everything pending (after truncation or replacement of the file). */
void hc_crilog_parser_reset(struct hc_crilog_parser *p);
int hc_crilog_parser_feed(struct hc_crilog_parser *p, const char *data, size_t len,
			  hc_crilog_line_fn *fn, void *arg);
/* Emits what is pending as lines: unfinished P sequences (a stream that
 * ended without a newline) and a final record without '\n'. For a log that
 * is read to its end, not followed. */
int hc_crilog_parser_flush(struct hc_crilog_parser *p, hc_crilog_line_fn *fn, void *arg);

struct hc_crilog_cursor;

/*
 * Opens the log at path positioned so the next read yields its last tail
 * lines (tail < 0: everything; 0: only lines written from now on). The tail
 * is found by reading backwards from the end, so a large file costs only
 * what is shown. NULL + errno (ENOENT when there is no file yet).
 */
struct hc_crilog_cursor *hc_crilog_cursor_open(const char *path, long tail);

/* Emits every line completed by what is in the file now. Notices truncation
 * (restarts at 0) and replacement of the file (reopens it). Never blocks.
 * 0, the callback's nonzero value, or -errno. */
int hc_crilog_cursor_read(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg);

/* hc_crilog_parser_flush for the cursor's parser. */
int hc_crilog_cursor_flush(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg);

/* An inotify descriptor that becomes readable when the file may have
 * changed (cursor_read drains it). */
int hc_crilog_cursor_fd(const struct hc_crilog_cursor *c);

/* Reads, waits for changes, reads again, until fn returns nonzero, stop_fd
 * (-1: none) becomes readable, or the file is deleted (the workload was
 * removed). Blocks. 0, fn's value or -errno. */
int hc_crilog_follow(struct hc_crilog_cursor *c, hc_crilog_line_fn *fn, void *arg, int stop_fd);

/* Malformed records skipped so far. */
unsigned long hc_crilog_cursor_malformed(const struct hc_crilog_cursor *c);

void hc_crilog_cursor_free(struct hc_crilog_cursor *c);

#endif /* HC_CRILOG_INT_H */
