/* Leveled logging to stderr in logfmt, one line per record. */
#ifndef HC_LOG_H
#define HC_LOG_H

#include <stdarg.h>

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

#endif /* HC_LOG_H */
