/* Fault points for the chaos tests: HYPERCORE_FAULT arms named steps where
 * the agent kills itself; see base.h. */
#include "base/base.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HC_FAULTS

#define FAULT_MAX 8
#define FAULT_POINT_LEN 48

struct fault {
	char point[FAULT_POINT_LEN];
	unsigned fire_at; /* the hit that fires, from 1 */
	unsigned hits;    /* atomically counted: points run on workers too */
};

int hc_fault_armed;
static struct fault faults[FAULT_MAX];
static size_t nfaults;

void hc_fault_hit(const char *point)
{
	static const char prefix[] = "hypercore: fault point ";
	char line[128];
	int n;

	for (size_t i = 0; i < nfaults; i++) {
		if (strcmp(faults[i].point, point) != 0)
			continue;
		if (__atomic_add_fetch(&faults[i].hits, 1, __ATOMIC_SEQ_CST) != faults[i].fire_at)
			continue;
		/* straight to stderr with write(2): the log's lock may be held by
		 * the very thread that is about to die */
		n = snprintf(line, sizeof(line), "%s%s: kill\n", prefix, point);
		if (n > 0)
			(void)!write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n
									     : sizeof(line) - 1);
		kill(getpid(), SIGKILL);
	}
}

/* One "POINT:kill[@N]" of len bytes at s into faults[nfaults]. */
static int parse_one(const char *s, size_t len, struct hc_err *err)
{
	const char *colon = NULL, *at = NULL;
	struct fault *f = &faults[nfaults];
	unsigned long fire_at = 1;
	size_t plen;

	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (!colon || colon == s)
		return hc_err_set(err, -EINVAL, "fault \"%.*s\": want POINT:ACTION[@N]", (int)len, s);
	plen = (size_t)(colon - s);
	at = memchr(colon, '@', len - plen);
	if (strncmp(colon + 1, "kill", 4) != 0 || colon + 5 != (at ? at : s + len))
		return hc_err_set(err, -EINVAL, "fault \"%.*s\": the only action is kill", (int)len,
				  s);
	if (at) {
		char num[12], *end;
		size_t nlen = len - (size_t)(at + 1 - s);

		if (nlen == 0 || nlen >= sizeof(num))
			return hc_err_set(err, -EINVAL, "fault \"%.*s\": bad @N", (int)len, s);
		memcpy(num, at + 1, nlen);
		num[nlen] = '\0';
		errno = 0;
		fire_at = strtoul(num, &end, 10);
		if (errno || *end || fire_at < 1 || fire_at > 1000000)
			return hc_err_set(err, -EINVAL, "fault \"%.*s\": bad @N", (int)len, s);
	}
	if (plen >= sizeof(f->point))
		return hc_err_set(err, -EINVAL, "fault \"%.*s\": point name too long", (int)len, s);
	memcpy(f->point, s, plen);
	f->point[plen] = '\0';
	f->fire_at = (unsigned)fire_at;
	f->hits = 0;
	nfaults++;
	return 0;
}

int hc_fault_init(const char *spec, struct hc_err *err)
{
	const char *s = spec;

	nfaults = 0;
	hc_fault_armed = 0;
	if (!spec || !*spec)
		return 0;
	while (*s) {
		size_t len = strcspn(s, ",");
		int r;

		if (nfaults == FAULT_MAX)
			return hc_err_set(err, -EINVAL, "at most %d fault points", FAULT_MAX);
		r = parse_one(s, len, err);
		if (r < 0) {
			nfaults = 0;
			return r;
		}
		s += len;
		if (*s == ',')
			s++;
	}
	hc_fault_armed = 1;
	return 0;
}

int hc_fault_supported(void)
{
	return 1;
}

#else /* !HC_FAULTS */

int hc_fault_init(const char *spec, struct hc_err *err)
{
	if (!spec || !*spec)
		return 0;
	return hc_err_set(err, -ENOTSUP,
			  "HYPERCORE_FAULT is set but this build has no fault points (FAULTS=0)");
}

int hc_fault_supported(void)
{
	return 0;
}

#endif /* HC_FAULTS */
