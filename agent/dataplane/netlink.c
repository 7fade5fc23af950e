/* rtnetlink queries the loader needs: the route to an address, the default
 * route, a link's veth peer, netns ids, local addresses; and turning on GRO
 * for a veth peer that may live in another network namespace.
 *
 * Routes, links and addresses go through libnl-route-3. What it does not
 * cover stays raw, each place says so: netns ids (no libnl object; the
 * message is built with libnl-3's core) and GRO (ethtool's ioctl). */
#define HC_LOG_MODULE "dataplane"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/dataplane_int.h"
#include "log/log.h"

/* ---- one rtnetlink socket per call ----
 *
 * Each public function opens its own socket and frees it before it
 * returns, rather than keeping one: these are free functions with no owner
 * to close a kept socket (the CLI's cleanup and the tests call them too,
 * not only the loop), a socket left with an unread answer after an error
 * would hand the next call a sequence mismatch, and a socket costs a few
 * syscalls next to the map syscalls of the same 2 s refresh. A call that
 * asks many questions (the netns scan) reuses its one socket. */

struct route_sock {
	struct nl_sock *sk;
	int syserr; /* the kernel's -errno from its last NLMSG_ERROR, 0 if none */
};

/* libnl turns the kernel's errno into an -NLE_* code, and not one to one
 * (ENETUNREACH becomes NLE_FAILURE): keep the kernel's own. */
static int kernel_err(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
	*(int *)arg = e->error;
	return NL_STOP;
}

/* libnl's -NLE_* codes as -errno: nl_syserr2nlerr() read backwards where
 * it is one to one, the nearest errno where libnl made the code up. */
static int nle_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case NLE_SUCCESS: return 0;
	case NLE_INTR: return -EINTR;
	case NLE_BAD_SOCK: return -EBADF;
	case NLE_AGAIN: return -EAGAIN;
	case NLE_NOMEM: return -ENOMEM;
	case NLE_EXIST: return -EEXIST;
	case NLE_INVAL: return -EINVAL;
	case NLE_RANGE: return -ERANGE;
	case NLE_MSGSIZE: return -EMSGSIZE;
	case NLE_OPNOTSUPP: return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT: return -EAFNOSUPPORT;
	case NLE_OBJ_NOTFOUND: return -ENOENT;
	case NLE_NOADDR: return -EADDRNOTAVAIL;
	case NLE_BUSY: return -EBUSY;
	case NLE_PROTO_MISMATCH: return -EPROTONOSUPPORT;
	case NLE_NOACCESS: return -EACCES;
	case NLE_PERM: return -EPERM;
	case NLE_NODEV: return -ENODEV;
	case NLE_DUMP_INTR: return -EAGAIN;
	case NLE_NOATTR:
	case NLE_MISSING_ATTR:
	case NLE_SEQ_MISMATCH:
	case NLE_MSG_OVERFLOW:
	case NLE_MSG_TRUNC:
	case NLE_MSG_TOOSHORT:
	case NLE_PARSE_ERR:
	case NLE_ATTRSIZE: return -EBADMSG;
	default: return -EIO;
	}
}

/* The -errno of a failed libnl call on s: the kernel's own when it sent
 * one, else nle mapped. Clears the kernel's for the next call on s. */
static int route_sock_err(struct route_sock *s, int nle)
{
	int rc = s->syserr < 0 ? s->syserr : nle_errno(nle);

	s->syserr = 0;
	return rc;
}

static int route_sock_open(struct route_sock *s)
{
	int rc;

	s->syserr = 0;
	s->sk = nl_socket_alloc();
	if (!s->sk)
		return -ENOMEM;
	rc = nl_socket_modify_err_cb(s->sk, NL_CB_CUSTOM, kernel_err, &s->syserr);
	if (rc == 0)
		rc = nl_connect(s->sk, NETLINK_ROUTE);
	if (rc < 0) {
		nl_socket_free(s->sk);
		s->sk = NULL;
		return nle_errno(rc);
	}
	return 0;
}

static void route_sock_close(struct route_sock *s)
{
	nl_socket_free(s->sk); /* closes the fd, frees the callbacks */
	s->sk = NULL;
}

/* ---- routes (libnl-route) ---- */

/* The interface of a route with one next hop (RTA_OIF); 0 for a multipath
 * route or one without an interface. */
static int route_single_oif(struct rtnl_route *route)
{
	if (!route || rtnl_route_get_nnexthops(route) != 1)
		return 0;
	return rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0));
}

int hc_nl_route_oif(const struct hc_ipaddr *addr, int *ifindex)
{
	bool v4 = addr->family == HC_AF_INET;
	struct nl_addr *dst = nl_addr_build(v4 ? AF_INET : AF_INET6, addr->ip6, v4 ? 4 : 16);
	struct rtnl_route *route = NULL;
	struct route_sock s;
	int rc;

	*ifindex = 0;
	if (!dst)
		return -ENOMEM;
	rc = route_sock_open(&s);
	if (rc == 0) {
		rc = rtnl_route_lookup(s.sk, dst, &route); /* RTM_GETROUTE to a /32 or /128 */
		if (rc < 0)
			rc = route_sock_err(&s, rc);
		else if (!(*ifindex = route_single_oif(route)))
			rc = -ENETUNREACH;
		rtnl_route_put(route);
		route_sock_close(&s);
	}
	nl_addr_put(dst);
	return rc;
}

/* Whether route is a unicast default route of the main table. */
static bool route_is_main_default(struct rtnl_route *route)
{
	struct nl_addr *dst = rtnl_route_get_dst(route);

	return dst && nl_addr_get_prefixlen(dst) == 0 && rtnl_route_get_type(route) == RTN_UNICAST &&
	       rtnl_route_get_table(route) == RT_TABLE_MAIN;
}

/* The interface of family's lowest-metric default route into *ifindex.
 * 0, -ENETUNREACH when there is none, or -errno. */
static int default_oif_of(struct route_sock *s, int family, int *ifindex)
{
	struct nl_cache *routes;
	struct nl_object *obj;
	uint32_t best = 0;
	int rc, found = 0;

	rc = rtnl_route_alloc_cache(s->sk, family, 0, &routes); /* RTM_GETROUTE dump */
	if (rc < 0)
		return route_sock_err(s, rc);
	for (obj = nl_cache_get_first(routes); obj; obj = nl_cache_get_next(obj)) {
		struct rtnl_route *route = (struct rtnl_route *)obj;
		int oif = route_single_oif(route);

		if (!oif || !route_is_main_default(route))
			continue;
		if (found == 0 || rtnl_route_get_priority(route) < best) {
			found = oif;
			best = rtnl_route_get_priority(route);
		}
	}
	nl_cache_free(routes);
	if (!found)
		return -ENETUNREACH;
	*ifindex = found;
	return 0;
}

int hc_nl_default_oif(int *ifindex)
{
	struct route_sock s;
	int rc;

	rc = route_sock_open(&s);
	if (rc)
		return rc;
	rc = default_oif_of(&s, AF_INET, ifindex);
	if (rc == -ENETUNREACH)
		rc = default_oif_of(&s, AF_INET6, ifindex);
	route_sock_close(&s);
	return rc;
}

/* ---- links (libnl-route) ---- */

static void link_fill(struct hc_dp_link *out, struct rtnl_link *link)
{
	const char *name = rtnl_link_get_name(link);
	const char *kind = rtnl_link_get_type(link); /* IFLA_INFO_KIND */
	int32_t nsid;

	out->ifindex = rtnl_link_get_ifindex(link);
	if (name)
		snprintf(out->name, sizeof(out->name), "%s", name);
	out->peer_ifindex = rtnl_link_get_link(link); /* IFLA_LINK, 0 without */
	if (rtnl_link_get_link_netnsid(link, &nsid) == 0)
		out->peer_netnsid = nsid;
	out->is_veth = kind && strcmp(kind, "veth") == 0;
}

int hc_nl_link_get(int ifindex, struct hc_dp_link *link)
{
	struct rtnl_link *found = NULL;
	struct route_sock s;
	int rc;

	memset(link, 0, sizeof(*link));
	link->peer_netnsid = -1;
	if (ifindex <= 0)
		return -EINVAL; /* as the kernel answers; libnl would ask for a name */
	rc = route_sock_open(&s);
	if (rc)
		return rc;
	rc = rtnl_link_get_kernel(s.sk, ifindex, NULL, &found);
	if (rc < 0)
		rc = route_sock_err(&s, rc);
	else if (!found)
		rc = -ENODEV;
	else
		link_fill(link, found);
	rtnl_link_put(found);
	route_sock_close(&s);
	return rc;
}

/* ---- netns ids (raw: libnl-route has no object for RTM_GETNSID; the
 * message is built and parsed with libnl-3's core) ---- */

static int nsid_answer(struct nl_msg *msg, void *arg)
{
	struct nlmsghdr *nh = nlmsg_hdr(msg);
	struct nlattr *tb[NETNSA_MAX + 1];

	if (nh->nlmsg_type != RTM_NEWNSID ||
	    nlmsg_parse(nh, sizeof(struct rtgenmsg), tb, NETNSA_MAX, NULL) < 0 || !tb[NETNSA_NSID])
		return NL_SKIP;
	*(int *)arg = nla_get_s32(tb[NETNSA_NSID]);
	return NL_OK;
}

/* The id this namespace has for the one behind nsfd, asked on s. */
static int netnsid_of_fd(struct route_sock *s, int nsfd)
{
	struct rtgenmsg gen = {.rtgen_family = AF_UNSPEC};
	struct nl_msg *msg;
	int nsid = -1, rc;

	/* Set again for each question: the answer lands in this call's nsid. */
	rc = nl_socket_modify_cb(s->sk, NL_CB_VALID, NL_CB_CUSTOM, nsid_answer, &nsid);
	if (rc < 0)
		return nle_errno(rc);
	msg = nlmsg_alloc_simple(RTM_GETNSID, NLM_F_REQUEST);
	if (!msg)
		return -ENOMEM;
	if (nlmsg_append(msg, &gen, sizeof(gen), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(msg, NETNSA_FD, (uint32_t)nsfd) < 0) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	/* The answer, then the ack, as two reads: nl_send_sync() would take
	 * the answer for the ack and leave the ack to the next question. */
	rc = nl_send_auto(s->sk, msg);
	nlmsg_free(msg);
	if (rc >= 0)
		rc = nl_recvmsgs_default(s->sk);
	if (rc >= 0)
		rc = nl_wait_for_ack(s->sk);
	if (rc < 0)
		return route_sock_err(s, rc);
	return nsid < 0 ? -ENOENT : nsid;
}

int hc_nl_netnsid_of_fd(int nsfd)
{
	struct route_sock s;
	int rc;

	rc = route_sock_open(&s);
	if (rc)
		return rc;
	rc = netnsid_of_fd(&s, nsfd);
	route_sock_close(&s);
	return rc;
}

/* ---- addresses (libnl-route) ---- */

/* a as an hc_ipaddr; false for another family. */
static bool ipaddr_of(struct nl_addr *a, struct hc_ipaddr *out)
{
	int family = a ? nl_addr_get_family(a) : AF_UNSPEC;
	unsigned int len = a ? nl_addr_get_len(a) : 0;

	if (family == AF_INET && len == 4) {
		out->family = HC_AF_INET;
		memcpy(&out->ip4, nl_addr_get_binary_addr(a), 4);
	} else if (family == AF_INET6 && len == 16) {
		out->family = HC_AF_INET6;
		memcpy(out->ip6, nl_addr_get_binary_addr(a), 16);
	} else {
		return false;
	}
	return true;
}

/* Link-local addresses (169.254/16, fe80::/10): every veth has its own v6
 * one, and workloads are kept off the whole range by their own rule. */
static bool link_local(const struct hc_ipaddr *a)
{
	if (a->family == HC_AF_INET)
		return (ntohl(a->ip4) >> 16) == 0xa9fe;
	return a->ip6[0] == 0xfe && (a->ip6[1] & 0xc0) == 0x80;
}

/* Already among out[0..n)? Workload veths all carry the same gateway
 * address, so a node with many workloads has it many times. */
static bool seen_before(const struct hc_ipaddr *out, size_t n, const struct hc_ipaddr *a)
{
	for (size_t i = 0; i < n; i++)
		if (out[i].family == a->family &&
		    memcmp(out[i].ip6, a->ip6, a->family == HC_AF_INET ? 4 : 16) == 0)
			return true;
	return false;
}

int hc_nl_local_addrs(struct hc_ipaddr **addrs, size_t *n)
{
	struct nl_cache *cache = NULL;
	struct hc_ipaddr *out;
	struct nl_object *obj;
	struct route_sock s;
	size_t count = 0;
	int rc;

	*addrs = NULL;
	*n = 0;
	rc = route_sock_open(&s);
	if (rc)
		return rc;
	rc = rtnl_addr_alloc_cache(s.sk, &cache); /* RTM_GETADDR dump, every family */
	if (rc < 0) {
		rc = route_sock_err(&s, rc);
		goto out;
	}
	out = calloc(nl_cache_nitems(cache) > 0 ? (size_t)nl_cache_nitems(cache) : 1, sizeof(*out));
	if (!out) {
		rc = -ENOMEM;
		goto out;
	}
	for (obj = nl_cache_get_first(cache); obj; obj = nl_cache_get_next(obj)) {
		struct hc_ipaddr a = { 0 };

		if (ipaddr_of(rtnl_addr_get_local((struct rtnl_addr *)obj), &a) && !link_local(&a) &&
		    !seen_before(out, count, &a))
			out[count++] = a;
	}
	*addrs = out;
	*n = count;
out:
	nl_cache_free(cache);
	route_sock_close(&s);
	return rc;
}

/* ---- the veth peer's GRO (raw: ethtool is not rtnetlink, libnl-route
 * has no call for it; the SIOCETHTOOL ioctl works on every kernel we run
 * on, where ethtool's genetlink needs 5.6 and libnl-genl) ---- */

/* Looks through the entries of dir for the namespace whose id is nsid;
 * under_proc: dir is /proc, its entries are pids and the file is ns/net.
 * Asks every candidate on s. */
static int find_netns_in(struct route_sock *s, const char *dir, bool under_proc, int nsid)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);
	int found = -ENOENT;

	if (!d)
		return -ENOENT;
	while (found < 0 && (de = readdir(d))) {
		int fd;

		if (de->d_name[0] == '.' || (under_proc && (de->d_name[0] < '1' || de->d_name[0] > '9')))
			continue;
		snprintf(path, sizeof(path), under_proc ? "%s/%s/ns/net" : "%s/%s", dir, de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (netnsid_of_fd(s, fd) == nsid)
			found = fd;
		else
			close(fd);
	}
	closedir(d);
	return found;
}

/* Opens the namespace whose id (as seen from here) is nsid: the named ones
 * (ip netns, CNI) first, then every process's. Returns an fd or -errno
 * (-ENOENT). */
static int open_netns_by_id(int nsid)
{
	struct route_sock s;
	int fd;

	fd = route_sock_open(&s);
	if (fd)
		return fd;
	fd = find_netns_in(&s, "/run/netns", false, nsid);
	if (fd < 0)
		fd = find_netns_in(&s, "/var/run/netns", false, nsid);
	if (fd < 0)
		fd = find_netns_in(&s, "/proc", true, nsid);
	route_sock_close(&s);
	return fd;
}
struct gro_job {
	int nsfd; /* -1: this namespace */
	int ifindex;
	int rc;
};

/* Runs in its own thread: setns() changes only the calling thread's
 * namespace, and this thread ends right after. */
static void *gro_thread(void *arg)
{
	struct gro_job *job = arg;
	struct ethtool_value ev = {.cmd = ETHTOOL_SGRO, .data = 1};
	struct ifreq ifr = {0};
	int fd;

	if (job->nsfd >= 0 && setns(job->nsfd, CLONE_NEWNET) < 0) {
		job->rc = -errno;
		return NULL;
	}
	if (!if_indextoname((unsigned)job->ifindex, ifr.ifr_name)) {
		job->rc = -errno;
		return NULL;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		job->rc = -errno;
		return NULL;
	}
	ifr.ifr_data = (void *)&ev;
	job->rc = ioctl(fd, SIOCETHTOOL, &ifr) < 0 ? -errno : 0;
	close(fd);
	return NULL;
}

int hc_dp_veth_peer_enable_gro(const struct hc_dp_link *link)
{
	struct gro_job job = {.nsfd = -1, .ifindex = link->peer_ifindex, .rc = 0};
	pthread_t t;
	int rc;

	if (!link->is_veth || link->peer_ifindex <= 0)
		return -EINVAL;
	if (link->peer_netnsid >= 0) {
		job.nsfd = open_netns_by_id(link->peer_netnsid);
		if (job.nsfd < 0)
			return job.nsfd;
	}
	rc = pthread_create(&t, NULL, gro_thread, &job);
	if (rc == 0)
		pthread_join(t, NULL);
	if (job.nsfd >= 0)
		close(job.nsfd);
	return rc ? -rc : job.rc;
}
