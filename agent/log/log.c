/* Leveled logging: logfmt, JSON or text records; see log.h. */
#include "log/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

volatile int hc_log_threshold = HC_LOG_INFO;
static volatile int log_fd = 2;
static volatile int log_format = HC_LOG_LOGFMT;
static volatile bool log_journal;

static const char *const level_names[] = {
	[HC_LOG_DEBUG] = "debug",
	[HC_LOG_INFO] = "info",
	[HC_LOG_WARN] = "warn",
	[HC_LOG_ERROR] = "error",
};

/* syslog(3) priorities, as sd-daemon(3)'s SD_DEBUG..SD_ERR. */
static const int journal_priority[] = {
	[HC_LOG_DEBUG] = 7,
	[HC_LOG_INFO] = 6,
	[HC_LOG_WARN] = 4,
	[HC_LOG_ERROR] = 3,
};

static const char *const format_names[] = {
	[HC_LOG_LOGFMT] = "logfmt",
	[HC_LOG_JSON] = "json",
	[HC_LOG_TEXT] = "text",
};

void hc_log_set_level(enum hc_log_level level)
{
	hc_log_threshold = level;
}

void hc_log_set_fd(int fd)
{
	log_fd = fd;
}

void hc_log_set_format(enum hc_log_format format)
{
	log_format = format;
}

void hc_log_set_journal(bool on)
{
	log_journal = on;
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

int hc_log_format_parse(const char *name, enum hc_log_format *format)
{
	for (unsigned i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
		if (strcmp(name, format_names[i]) == 0) {
			*format = i;
			return 0;
		}
	}
	return -EINVAL;
}

bool hc_log_journal_stream(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int end = 0;

	if (!v || sscanf(v, "%llu:%llu%n", &dev, &ino, &end) != 2 || v[end] != '\0')
		return false;
	if (fstat(2, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* ---- formatting ---- */

/* A record being built; bytes past cap are dropped (the message is cut). */
struct out {
	char *buf;
	size_t len, cap;
};

static bool put(struct out *o, const char *s, size_t n)
{
	if (o->len + n > o->cap)
		return false;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	return true;
}

static bool puts_(struct out *o, const char *s)
{
	return put(o, s, strlen(s));
}

/* The message with control characters escaped (newline as \n, others as
 * \xNN); with quoted, quote and backslash too, for logfmt's quoted value
 * (the caller writes the quotes). */
static void put_escaped(struct out *o, const char *src, bool quoted)
{
	char esc[8];

	for (; *src; src++) {
		unsigned char c = (unsigned char)*src;
		bool ok;

		if (quoted && (c == '"' || c == '\\')) {
			esc[0] = '\\';
			esc[1] = (char)c;
			ok = put(o, esc, 2);
		} else if (c == '\n') {
			ok = put(o, "\\n", 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			ok = put(o, esc, 4);
		} else {
			ok = put(o, (const char *)&c, 1);
		}
		if (!ok)
			return;
	}
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* src as the inside of a JSON string (RFC 8259): quote, backslash and
 * control characters escaped, bytes that are no UTF-8 as U+FFFD. */
static void put_json(struct out *o, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	char esc[8];
	size_t n;
	bool ok;

	while (*s) {
		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*s;
			ok = put(o, esc, 2), n = 1;
		} else if (*s == '\n' || *s == '\t' || *s == '\r') {
			ok = put(o, *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : "\\r", 2), n = 1;
		} else if (*s < 0x20 || *s == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *s);
			ok = put(o, esc, 6), n = 1;
		} else if (*s < 0x80) {
			ok = put(o, (const char *)s, 1), n = 1;
		} else if ((n = utf8_len(s)) > 0) {
			ok = put(o, (const char *)s, n);
		} else {
			ok = put(o, "\\ufffd", 6), n = 1;
		}
		if (!ok)
			return;
		s += n;
	}
}

/* "2026-11-23T21:46:41.123Z" */
static void put_time(struct out *o, const struct timespec *ts)
{
	char t[40];
	struct tm tm;
	size_t n;

	gmtime_r(&ts->tv_sec, &tm);
	n = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(t + n, sizeof(t) - n, ".%03ldZ", ts->tv_nsec / 1000000);
	puts_(o, t);
}

/* The bytes kept back for what closes a record ("\"}\n" at most). */
#define TAIL 4

size_t hc_log_format_record(char *buf, size_t cap, enum hc_log_format format, bool journal,
			    enum hc_log_level level, const char *module,
			    const struct timespec *ts, const char *msg)
{
	struct out o = { .buf = buf, .cap = cap > TAIL ? cap - TAIL : 0 };
	const char *name = hc_log_level_name(level);
	char prefix[8];

	if (journal && (unsigned)level <= HC_LOG_ERROR) {
		snprintf(prefix, sizeof(prefix), "<%d>", journal_priority[level]);
		puts_(&o, prefix);
	}
	switch (format) {
	case HC_LOG_JSON:
		puts_(&o, "{\"ts\":\"");
		put_time(&o, ts);
		puts_(&o, "\",\"level\":\"");
		puts_(&o, name);
		puts_(&o, "\",\"module\":\"");
		put_json(&o, module);
		puts_(&o, "\",\"msg\":\"");
		put_json(&o, msg);
		o.cap += TAIL;
		puts_(&o, "\"}\n");
		break;
	case HC_LOG_TEXT:
		put_time(&o, ts);
		snprintf(prefix, sizeof(prefix), " %-5s ", name);
		puts_(&o, prefix);
		puts_(&o, module);
		puts_(&o, ": ");
		put_escaped(&o, msg, false);
		o.cap += TAIL;
		puts_(&o, "\n");
		break;
	default:
		puts_(&o, "ts=");
		put_time(&o, ts);
		puts_(&o, " level=");
		puts_(&o, name);
		puts_(&o, " module=");
		puts_(&o, module);
		puts_(&o, " msg=\"");
		put_escaped(&o, msg, true);
		o.cap += TAIL;
		puts_(&o, "\"\n");
		break;
	}
	return o.len;
}

void hc_log_vwrite(enum hc_log_level level, const char *module, const char *fmt, va_list ap)
{
	char msg[2048], line[12800];
	struct timespec ts;
	size_t len;
	int saved_errno = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	len = hc_log_format_record(line, sizeof(line), (enum hc_log_format)log_format, log_journal,
				   level, module, &ts, msg);
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
