/* Socket addresses <-> memberlist's raw IP + port form; see serf_int.h. */
#include "gossip/serf_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

int hc_gossip_addr_from_sockaddr(const struct hc_addr *in, struct hc_gossip_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (in->ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&in->ss;

		memcpy(out->ip, &s4->sin_addr, 4);
		out->ip_len = 4;
		out->port = ntohs(s4->sin_port);
		return 0;
	}
	if (in->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&in->ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(out->ip, s6->sin6_addr.s6_addr + 12, 4);
			out->ip_len = 4;
		} else {
			memcpy(out->ip, &s6->sin6_addr, 16);
			out->ip_len = 16;
		}
		out->port = ntohs(s6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int hc_gossip_addr_to_sockaddr(const struct hc_gossip_addr *in, struct hc_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (in->ip_len == 4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, in->ip, 4);
		s4->sin_port = htons(in->port);
		out->len = sizeof(*s4);
		return 0;
	}
	if (in->ip_len == 16) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;

		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, in->ip, 16);
		s6->sin6_port = htons(in->port);
		out->len = sizeof(*s6);
		return 0;
	}
	return -EAFNOSUPPORT;
}

void hc_gossip_addr_set_port(struct hc_addr *a, uint16_t port)
{
	if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
}
