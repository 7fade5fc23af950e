/* Leveled logfmt logging; see log.h. */
#include "log/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

volatile int hc_log_threshold = HC_LOG_INFO;
static volatile int log_fd = 2;

static const char *const level_names[] = {
	[HC_LOG_DEBUG] = "debug",
	[HC_LOG_INFO] = "info",
	[HC_LOG_WARN] = "warn",
	[HC_LOG_ERROR] = "error",
};

void hc_log_set_level(enum hc_log_level level)
{
	hc_log_threshold = level;
}

void hc_log_set_fd(int fd)
{
	log_fd = fd;
}

const char *hc_log_level_name(enum hc_log_level level)
{
	if ((unsigned)level > HC_LOG_ERROR)
		return "unknown";
	return level_names[level];
}

int hc_log_level_parse(const char *name, enum hc_log_level *level)
{
	for (unsigned i = 0; i <= HC_LOG_ERROR; i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level = i;
			return 0;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*level = HC_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

/* Appends src to buf[*len] with logfmt quoting; truncates at cap. */
static void append_escaped(char *buf, size_t *len, size_t cap, const char *src)
{
	for (; *src && *len + 2 < cap; src++) {
		unsigned char c = (unsigned char)*src;

		if (c == '"' || c == '\\') {
			buf[(*len)++] = '\\';
			buf[(*len)++] = c;
		} else if (c == '\n') {
			buf[(*len)++] = '\\';
			buf[(*len)++] = 'n';
		} else if (c < 0x20 || c == 0x7f) {
			if (*len + 4 >= cap)
				break;
			*len += snprintf(buf + *len, cap - *len, "\\x%02x", c);
		} else {
			buf[(*len)++] = c;
		}
	}
}

void hc_log_vwrite(enum hc_log_level level, const char *module, const char *fmt, va_list ap)
{
	char msg[2048], line[4608];
	struct timespec ts;
	struct tm tm;
	size_t len;
	int saved_errno = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	len = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	len += snprintf(line + len, sizeof(line) - len, ".%03ldZ level=%s module=%s msg=\"",
			ts.tv_nsec / 1000000, hc_log_level_name(level), module);
	append_escaped(line, &len, sizeof(line) - 2, msg);
	line[len++] = '"';
	line[len++] = '\n';
	/* One write per record keeps lines whole across threads; a short or
	 * failed write to stderr has nowhere better to be reported. */
	if (write(log_fd, line, len) < 0) {
		/* nothing to do */
	}
	errno = saved_errno;
}

void hc_log_write(enum hc_log_level level, const char *module, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hc_log_vwrite(level, module, fmt, ap);
	va_end(ap);
}
