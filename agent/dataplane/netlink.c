/* rtnetlink queries the loader needs: the route to an address, the default
 * route, a link's veth peer, netns ids, local addresses; and turning on GRO
 * for a veth peer that may live in another network namespace. */
#define HC_LOG_MODULE "dataplane"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <netinet/in.h>
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

#define NL_BUF 32768

struct nl_req {
	struct nlmsghdr nh;
	union {
		struct rtmsg rt;
		struct ifinfomsg ifi;
		struct rtgenmsg gen;
	};
	char attrs[64];
};

static void nl_put_attr(struct nl_req *req, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->nh.nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	req->nh.nlmsg_len = NLMSG_ALIGN(req->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

typedef int (*nl_cb)(const struct nlmsghdr *nh, void *arg);

/* Sends req and feeds each answer to cb until the request is done: one
 * message for a get, NLMSG_DONE for a dump. Returns 0, cb's first non-zero
 * result, or -errno from the kernel. */
static int nl_talk(struct nl_req *req, nl_cb cb, void *arg)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	bool dump = req->nh.nlmsg_flags & NLM_F_DUMP;
	char *buf;
	int fd, rc = 0;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	buf = malloc(NL_BUF);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	req->nh.nlmsg_seq = 1;
	if (sendto(fd, req, req->nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		ssize_t n = recv(fd, buf, NL_BUF, 0);
		struct nlmsghdr *nh;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n); nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_type == NLMSG_DONE)
				goto out;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(nh);

				rc = e->error;
				goto out;
			}
			if (rc == 0)
				rc = cb(nh, arg);
			if (!dump)
				goto out;
		}
	}
out:
	free(buf);
	close(fd);
	return rc;
}

/* Attribute table of a message body starting at attrs. */
static void nl_parse_attrs(struct rtattr *rta, int len, struct rtattr **tb, int max)
{
	memset(tb, 0, sizeof(*tb) * (max + 1));
	for (; RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type <= max && !tb[rta->rta_type])
			tb[rta->rta_type] = rta;
	}
}

static int route_oif_cb(const struct nlmsghdr *nh, void *arg)
{
	struct rtmsg *rt = NLMSG_DATA(nh);
	struct rtattr *tb[RTA_MAX + 1];

	if (nh->nlmsg_type != RTM_NEWROUTE)
		return 0;
	nl_parse_attrs(RTM_RTA(rt), RTM_PAYLOAD(nh), tb, RTA_MAX);
	if (!tb[RTA_OIF])
		return -ENETUNREACH;
	*(int *)arg = *(int *)RTA_DATA(tb[RTA_OIF]);
	return 0;
}

int hc_nl_route_oif(const struct hc_ipaddr *addr, int *ifindex)
{
	struct nl_req req = {0};
	bool v4 = addr->family == HC_AF_INET;

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.nh.nlmsg_type = RTM_GETROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.rt.rtm_family = v4 ? AF_INET : AF_INET6;
	req.rt.rtm_dst_len = v4 ? 32 : 128;
	nl_put_attr(&req, RTA_DST, v4 ? (const void *)&addr->ip4 : addr->ip6, v4 ? 4 : 16);
	*ifindex = 0;
	return nl_talk(&req, route_oif_cb, ifindex);
}

struct default_route {
	int ifindex;
	uint32_t best_metric;
};

static int default_route_cb(const struct nlmsghdr *nh, void *arg)
{
	struct default_route *d = arg;
	struct rtmsg *rt = NLMSG_DATA(nh);
	struct rtattr *tb[RTA_MAX + 1];
	uint32_t table, metric = 0;

	if (nh->nlmsg_type != RTM_NEWROUTE || rt->rtm_dst_len != 0 || rt->rtm_type != RTN_UNICAST)
		return 0;
	nl_parse_attrs(RTM_RTA(rt), RTM_PAYLOAD(nh), tb, RTA_MAX);
	table = tb[RTA_TABLE] ? *(uint32_t *)RTA_DATA(tb[RTA_TABLE]) : rt->rtm_table;
	if (table != RT_TABLE_MAIN || !tb[RTA_OIF])
		return 0;
	if (tb[RTA_PRIORITY])
		metric = *(uint32_t *)RTA_DATA(tb[RTA_PRIORITY]);
	if (d->ifindex == 0 || metric < d->best_metric) {
		d->ifindex = *(int *)RTA_DATA(tb[RTA_OIF]);
		d->best_metric = metric;
	}
	return 0;
}

int hc_nl_default_oif(int *ifindex)
{
	static const unsigned char families[] = {AF_INET, AF_INET6};

	for (size_t i = 0; i < sizeof(families); i++) {
		struct default_route d = {0};
		struct nl_req req = {0};
		int rc;

		req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
		req.nh.nlmsg_type = RTM_GETROUTE;
		req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
		req.rt.rtm_family = families[i];
		rc = nl_talk(&req, default_route_cb, &d);
		if (rc)
			return rc;
		if (d.ifindex) {
			*ifindex = d.ifindex;
			return 0;
		}
	}
	return -ENETUNREACH;
}

static int link_cb(const struct nlmsghdr *nh, void *arg)
{
	struct hc_dp_link *link = arg;
	struct ifinfomsg *ifi = NLMSG_DATA(nh);
	struct rtattr *tb[IFLA_MAX + 1], *info[IFLA_INFO_MAX + 1];

	if (nh->nlmsg_type != RTM_NEWLINK)
		return 0;
	nl_parse_attrs(IFLA_RTA(ifi), IFLA_PAYLOAD(nh), tb, IFLA_MAX);
	link->ifindex = ifi->ifi_index;
	if (tb[IFLA_IFNAME])
		snprintf(link->name, sizeof(link->name), "%s", (char *)RTA_DATA(tb[IFLA_IFNAME]));
	if (tb[IFLA_LINK])
		link->peer_ifindex = *(int *)RTA_DATA(tb[IFLA_LINK]);
	if (tb[IFLA_LINK_NETNSID])
		link->peer_netnsid = *(int *)RTA_DATA(tb[IFLA_LINK_NETNSID]);
	if (tb[IFLA_LINKINFO]) {
		nl_parse_attrs(RTA_DATA(tb[IFLA_LINKINFO]), RTA_PAYLOAD(tb[IFLA_LINKINFO]), info,
			       IFLA_INFO_MAX);
		if (info[IFLA_INFO_KIND] &&
		    strncmp(RTA_DATA(info[IFLA_INFO_KIND]), "veth", RTA_PAYLOAD(info[IFLA_INFO_KIND])) == 0)
			link->is_veth = true;
	}
	return 0;
}

int hc_nl_link_get(int ifindex, struct hc_dp_link *link)
{
	struct nl_req req = {0};

	memset(link, 0, sizeof(*link));
	link->peer_netnsid = -1;
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	req.nh.nlmsg_type = RTM_GETLINK;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = ifindex;
	return nl_talk(&req, link_cb, link);
}

static int nsid_cb(const struct nlmsghdr *nh, void *arg)
{
	struct rtattr *tb[NETNSA_MAX + 1];
	struct rtgenmsg *g = NLMSG_DATA(nh);

	if (nh->nlmsg_type != RTM_NEWNSID)
		return 0;
	nl_parse_attrs((struct rtattr *)((char *)g + NLMSG_ALIGN(sizeof(*g))),
		       nh->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(*g))), tb, NETNSA_MAX);
	if (!tb[NETNSA_NSID])
		return -ENOENT;
	*(int *)arg = *(int *)RTA_DATA(tb[NETNSA_NSID]);
	return 0;
}

int hc_nl_netnsid_of_fd(int nsfd)
{
	struct nl_req req = {0};
	uint32_t fd = (uint32_t)nsfd;
	int nsid = -1, rc;

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtgenmsg));
	req.nh.nlmsg_type = RTM_GETNSID;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.gen.rtgen_family = AF_UNSPEC;
	nl_put_attr(&req, NETNSA_FD, &fd, sizeof(fd));
	rc = nl_talk(&req, nsid_cb, &nsid);
	if (rc)
		return rc;
	return nsid < 0 ? -ENOENT : nsid;
}

int hc_nl_local_addrs(struct hc_ipaddr **addrs, size_t *n)
{
	struct ifaddrs *ifa, *it;
	struct hc_ipaddr *out;
	size_t count = 0, cap = 0;

	*addrs = NULL;
	*n = 0;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (it = ifa; it; it = it->ifa_next)
		cap++;
	out = calloc(cap ? cap : 1, sizeof(*out));
	if (!out) {
		freeifaddrs(ifa);
		return -ENOMEM;
	}
	for (it = ifa; it; it = it->ifa_next) {
		if (!it->ifa_addr)
			continue;
		if (it->ifa_addr->sa_family == AF_INET) {
			out[count].family = HC_AF_INET;
			out[count].ip4 = ((struct sockaddr_in *)it->ifa_addr)->sin_addr.s_addr;
			count++;
		} else if (it->ifa_addr->sa_family == AF_INET6) {
			out[count].family = HC_AF_INET6;
			memcpy(out[count].ip6, &((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr, 16);
			count++;
		}
	}
	freeifaddrs(ifa);
	*addrs = out;
	*n = count;
	return 0;
}

/* Looks through the entries of dir for the namespace whose id is nsid;
 * under_proc: dir is /proc, its entries are pids and the file is ns/net. */
static int find_netns_in(const char *dir, bool under_proc, int nsid)
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
		if (hc_nl_netnsid_of_fd(fd) == nsid)
			found = fd;
		else
			close(fd);
	}
	closedir(d);
	return found;
}

/* Opens the namespace whose id (as seen from here) is nsid: the named ones
 * (ip netns, CNI) first, then every process's. Returns an fd or -ENOENT. */
static int open_netns_by_id(int nsid)
{
	int fd = find_netns_in("/run/netns", false, nsid);

	if (fd < 0)
		fd = find_netns_in("/var/run/netns", false, nsid);
	if (fd < 0)
		fd = find_netns_in("/proc", true, nsid);
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
