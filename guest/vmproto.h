/*
 * The framed messages between a microVM's init (guest/init.c) and its
 * launcher on the host (guest/vmm.c), over one virtio-serial port, and
 * between the launcher and an attach client over a unix socket.
 *
 * A frame is an 8-byte header, then its payload:
 *   byte 0  HC_VMP_MAGIC
 *   byte 1  type (enum hc_vmp_type)
 *   2..3    zero
 *   4..7    payload length, little endian, at most HC_VMP_MAX_PAYLOAD
 * The launcher parses what the guest sends: the guest runs untrusted code,
 * so every field is checked and a bad frame ends the channel (never the
 * launcher). tests/fuzz/fuzz_vmproto.c runs the parser on arbitrary bytes.
 */
#ifndef HC_GUEST_VMPROTO_H
#define HC_GUEST_VMPROTO_H

#include <stddef.h>
#include <stdint.h>

#define HC_VMP_MAGIC 0x48 /* 'H' */
#define HC_VMP_HDR_LEN 8
#define HC_VMP_MAX_PAYLOAD 65536

enum hc_vmp_type {
	/* guest -> host */
	HC_VMP_READY = 1,	/* init is up; payload: the guest kernel's release */
	HC_VMP_STDOUT = 2,	/* workload output */
	HC_VMP_STDERR = 3,
	HC_VMP_EXIT = 4,	/* the workload ended; payload: int32 LE exit status */
	HC_VMP_ATTACH_OUT = 5,	/* output of the attached command */
	HC_VMP_ATTACH_ERR = 6,
	HC_VMP_ATTACH_EXIT = 7, /* the attached command ended; int32 LE status */
	/* host -> guest */
	HC_VMP_STOP = 16,	  /* payload: int32 LE signal for the workload */
	HC_VMP_ATTACH_START = 17, /* payload: argv, each NUL-terminated */
	HC_VMP_ATTACH_IN = 18,	  /* stdin of the attached command */
	HC_VMP_ATTACH_EOF = 19,	  /* its stdin is closed */
};

struct hc_vmp_frame {
	uint8_t type;
	uint32_t len;
	const uint8_t *payload; /* points into the parsed buffer */
};

/* Parses the frame at the start of buf[0..len): the bytes it takes (> 0)
 * with *f filled, 0 when more bytes are needed, -1 when the bytes are not
 * a frame (bad magic, unknown type, reserved bits, too long). */
int hc_vmp_parse(const uint8_t *buf, size_t len, struct hc_vmp_frame *f);

/* Writes the header of a frame of type and len into hdr. */
void hc_vmp_header(uint8_t hdr[HC_VMP_HDR_LEN], uint8_t type, uint32_t len);

/* Writes a whole frame to fd (retrying short writes and EINTR): 0, or -1
 * with errno. */
int hc_vmp_write(int fd, uint8_t type, const void *payload, uint32_t len);
/* Writes len bytes to fd whole (no frame): 0, or -1 with errno. */
int hc_vmp_write_raw(int fd, const void *buf, size_t len);
/* A frame whose payload is the int32 v (EXIT, ATTACH_EXIT, STOP). */
int hc_vmp_write_int(int fd, uint8_t type, int32_t v);

/* The int32 status of an EXIT, ATTACH_EXIT or STOP frame into *value:
 * 0, or -1 when the payload is not 4 bytes or out of 0..255 (exit
 * statuses; 128+N for a signal) and 1..64 (signals). */
int hc_vmp_int(const struct hc_vmp_frame *f, int *value);

/* The argv of an ATTACH_START payload: up to max pointers into the
 * payload (each string NUL-terminated inside it), NULL after the last.
 * The count (>= 1), or -1 for an empty, unterminated or too long list. */
int hc_vmp_argv(const struct hc_vmp_frame *f, char **argv, size_t max);

#endif /* HC_GUEST_VMPROTO_H */
