/* Leveled logging to stderr, one line per record: logfmt (default), JSON or
 * plain text, with journald's priority prefix when stderr is the journal. */
#ifndef HC_LOG_H
#define HC_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum hc_log_level {
	HC_LOG_DEBUG = 0,
	HC_LOG_INFO = 1,
	HC_LOG_WARN = 2,
	HC_LOG_ERROR = 3,
};

/* Records below this level are dropped before formatting. */
extern volatile int hc_log_threshold;

/*
 * hc_log(level, fmt, ...) writes one record for the module named by
 * HC_LOG_MODULE, which each .c file defines before including this header:
 *
 *   ts=2026-11-23T21:46:41.123Z level=info module=api msg="listening on 0.0.0.0:8000"
 *
 * The message is quoted and escaped, so every line parses as logfmt. Safe from
 * any thread; a record is written with one write(2) so lines never interleave.
 */
#define hc_log(level, ...)                                                      \
	do {                                                                    \
		if ((int)(level) >= hc_log_threshold)                           \
			hc_log_write((level), HC_LOG_MODULE, __VA_ARGS__);      \
	} while (0)

void hc_log_write(enum hc_log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void hc_log_vwrite(enum hc_log_level level, const char *module, const char *fmt,
		   va_list ap) __attribute__((format(printf, 3, 0)));

void hc_log_set_level(enum hc_log_level level);

/* Parses "debug", "info", "warn"/"warning", "error". Returns 0 or -EINVAL. */
int hc_log_level_parse(const char *name, enum hc_log_level *level);
const char *hc_log_level_name(enum hc_log_level level);

/* Sends the file descriptor records go to (default 2); for tests. */
void hc_log_set_fd(int fd);

/*
 * How a record is written. logfmt is the default above; json is one object
 * per line, {"ts":"...","level":"info","module":"api","msg":"..."}, valid
 * UTF-8 whatever the message holds (control characters escaped, a byte that
 * is no UTF-8 replaced by U+FFFD); text is for people at a terminal:
 *
 *   2026-11-23T21:46:41.123Z info  api: listening on 0.0.0.0:8000
 */
enum hc_log_format { HC_LOG_LOGFMT = 0, HC_LOG_JSON = 1, HC_LOG_TEXT = 2 };

void hc_log_set_format(enum hc_log_format format);
/* Parses "logfmt", "json", "text". Returns 0 or -EINVAL. */
int hc_log_format_parse(const char *name, enum hc_log_format *format);

/*
 * Prefixes every record with "<N>" (sd-daemon(3): 7 debug, 6 info, 4 warn,
 * 3 error), which journald reads as the record's priority and strips, when
 * on. hc_log_journal_stream() says whether fd 2 is journald's stream: the
 * service manager sets $JOURNAL_STREAM to "DEV:INO" of the stderr it hands
 * over, and a stderr redirected since then no longer matches it.
 */
void hc_log_set_journal(bool on);
bool hc_log_journal_stream(void);

/* Formats one record as the format says, newline included, into buf (at
 * most cap bytes, truncating the message to fit). Returns its length. For
 * hc_log_vwrite and tests; never blocks. */
size_t hc_log_format_record(char *buf, size_t cap, enum hc_log_format format, bool journal,
			    enum hc_log_level level, const char *module,
			    const struct timespec *ts, const char *msg);

#endif /* HC_LOG_H */
