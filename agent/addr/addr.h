/* Parsing and probing of "host:port" socket addresses given by users. */
#ifndef HC_ADDR_H
#define HC_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/base.h"

struct hc_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/*
 * Parses "IPV4:PORT", "[IPV6]:PORT", ":PORT" (all IPv4 addresses) or
 * "localhost:PORT". Host names are not resolved: a bind or agent address must
 * not depend on DNS. The port must be 0..65535 (0 only if allow_port_zero).
 * Returns 0, or -EINVAL with a reason in err (for a one-line message; err
 * may be NULL).
 */
int hc_addr_parse(const char *text, bool allow_port_zero, struct hc_addr *addr,
		  struct hc_err *err);

/* Formats as "1.2.3.4:80" or "[::1]:80". Returns buf. */
char *hc_addr_format(const struct hc_addr *addr, char *buf, size_t len);

uint16_t hc_addr_port(const struct hc_addr *addr);
bool hc_addr_is_any(const struct hc_addr *addr);

/* Opens a non-blocking, close-on-exec TCP listening socket on addr with
 * SO_REUSEADDR (never SO_REUSEPORT: a second agent on the same port must fail,
 * not share it). Returns the fd or -errno. */
int hc_addr_listen_tcp(const struct hc_addr *addr, int backlog);

/* Checks that addr could be bound now (for servers whose library binds for
 * us and reports failures vaguely). Returns 0 or -errno (-EADDRINUSE,
 * -EADDRNOTAVAIL, -EACCES...). */
int hc_addr_probe_tcp(const struct hc_addr *addr);

/* For a client: the address to dial to reach a server bound on text, i.e.
 * the wildcard address becomes loopback. Writes "host:port" into out. */
int hc_addr_dial_target(const char *text, char *out, size_t outlen, struct hc_err *err);

#endif /* HC_ADDR_H */
