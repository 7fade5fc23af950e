/* Open connections per client address, over every proxy worker: the table
 * behind --proxy-max-conns-per-ip. Private to the proxy module (apart from
 * proxy_int.h so that its unit test needs no OpenSSL or BPF). */
#ifndef HC_PROXY_IPLIMIT_H
#define HC_PROXY_IPLIMIT_H

#include <stdint.h>
#include <sys/socket.h>

/* A client address: IPv4 as an IPv4-mapped IPv6 address, so that one key
 * form serves both families (and a v4 client on a v6 socket counts once). */
struct hc_proxy_ip {
	uint8_t a[16];
};

struct hc_proxy_iplimit;

/* A table allowing limit open connections per address and tracking up to
 * about capacity addresses at once (rounded up; memory is reserved for it
 * but only touched as addresses arrive). NULL with errno on failure. */
struct hc_proxy_iplimit *hc_proxy_iplimit_new(unsigned limit, unsigned capacity);
void hc_proxy_iplimit_free(struct hc_proxy_iplimit *t);

/* Counts one more connection from ip. 1: counted (release it later); 0:
 * ip already has limit open (not counted); -ENOSPC: no room to track ip
 * (not counted: the caller lets it in, the other limits still apply).
 * Never blocks beyond a short lock of one stripe of the table. */
int hc_proxy_iplimit_take(struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip);

/* Uncounts one connection hc_proxy_iplimit_take counted. */
void hc_proxy_iplimit_release(struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip);

/* Open connections counted for ip now (tests and metrics). */
unsigned hc_proxy_iplimit_count(struct hc_proxy_iplimit *t, const struct hc_proxy_ip *ip);

/* The address of an AF_INET or AF_INET6 sockaddr; -EAFNOSUPPORT otherwise. */
int hc_proxy_ip_from_sockaddr(struct hc_proxy_ip *ip, const struct sockaddr *sa, socklen_t len);

#endif /* HC_PROXY_IPLIMIT_H */
