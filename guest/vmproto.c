/* The guest channel's framing (vmproto.h); built into the guest init, the
 * launcher and, for the fuzzer, libhypercore. No allocation, no libc state. */
#include "vmproto.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static int known_type(uint8_t t)
{
	return (t >= HC_VMP_READY && t <= HC_VMP_ATTACH_EXIT) ||
	       (t >= HC_VMP_STOP && t <= HC_VMP_ATTACH_EOF);
}

int hc_vmp_parse(const uint8_t *buf, size_t len, struct hc_vmp_frame *f)
{
	uint32_t plen;

	if (len < HC_VMP_HDR_LEN)
		return len && buf[0] != HC_VMP_MAGIC ? -1 : 0;
	if (buf[0] != HC_VMP_MAGIC || !known_type(buf[1]) || buf[2] || buf[3])
		return -1;
	plen = (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
	       (uint32_t)buf[7] << 24;
	if (plen > HC_VMP_MAX_PAYLOAD)
		return -1;
	if (len - HC_VMP_HDR_LEN < plen)
		return 0;
	f->type = buf[1];
	f->len = plen;
	f->payload = buf + HC_VMP_HDR_LEN;
	return (int)(HC_VMP_HDR_LEN + plen);
}

void hc_vmp_header(uint8_t hdr[HC_VMP_HDR_LEN], uint8_t type, uint32_t len)
{
	hdr[0] = HC_VMP_MAGIC;
	hdr[1] = type;
	hdr[2] = hdr[3] = 0;
	hdr[4] = (uint8_t)len;
	hdr[5] = (uint8_t)(len >> 8);
	hdr[6] = (uint8_t)(len >> 16);
	hdr[7] = (uint8_t)(len >> 24);
}

int hc_vmp_write_raw(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int hc_vmp_write(int fd, uint8_t type, const void *payload, uint32_t len)
{
	uint8_t hdr[HC_VMP_HDR_LEN];

	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	hc_vmp_header(hdr, type, len);
	if (hc_vmp_write_raw(fd, hdr, sizeof(hdr)) < 0)
		return -1;
	return hc_vmp_write_raw(fd, payload, len);
}

int hc_vmp_write_int(int fd, uint8_t type, int32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	return hc_vmp_write(fd, type, b, sizeof(b));
}

int hc_vmp_int(const struct hc_vmp_frame *f, int *value)
{
	int32_t v;
	int lo = f->type == HC_VMP_STOP ? 1 : 0, hi = f->type == HC_VMP_STOP ? 64 : 255;

	if (f->len != 4)
		return -1;
	v = (int32_t)((uint32_t)f->payload[0] | (uint32_t)f->payload[1] << 8 |
		      (uint32_t)f->payload[2] << 16 | (uint32_t)f->payload[3] << 24);
	if (v < lo || v > hi)
		return -1;
	*value = v;
	return 0;
}

int hc_vmp_argv(const struct hc_vmp_frame *f, char **argv, size_t max)
{
	size_t n = 0, off = 0;

	if (f->len == 0 || f->payload[f->len - 1] != '\0')
		return -1;
	while (off < f->len) {
		const char *s = (const char *)f->payload + off;

		if (n + 1 >= max)
			return -1;
		argv[n++] = (char *)s;
		off += strlen(s) + 1;
	}
	argv[n] = NULL;
	return argv[0][0] ? (int)n : -1;
}
