/* UUIDs as node and workload ids; see base.h. */
#include "base/base.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int hc_uuid_new(char out[HC_UUID_LEN + 1])
{
	unsigned char b[16];
	ssize_t n = getrandom(b, sizeof(b), 0);

	/* getrandom never returns fewer than 256 bytes asked for, but a
	 * short count must not pass as success with errno left at 0. */
	if (n != (ssize_t)sizeof(b))
		return n < 0 ? -errno : -EIO;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, HC_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return 0;
}

static int is_lower_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

int hc_uuid_valid(const char *s)
{
	if (!s || strlen(s) != HC_UUID_LEN)
		return 0;
	for (int i = 0; i < HC_UUID_LEN; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !is_lower_hex(s[i]))
			return 0;
	}
	return 1;
}
