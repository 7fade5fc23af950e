/*
 * The workload subnet and the CNI leases on it: the check that the subnet
 * overlaps nothing the node already routes, and the collection of
 * host-local leases whose sandbox is gone (a crash between CNI ADD and DEL
 * leaves them, and each one holds an address for good).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "log/log.h"
#include "runtime_int.h"

int hc_runtime_subnet_parse(const char *text, uint32_t *net, unsigned *prefix)
{
	unsigned a, b, c, d, p;
	char tail;
	uint32_t mask;

	if (!text || sscanf(text, "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &p, &tail) != 5 ||
	    a > 255 || b > 255 || c > 255 || d > 255 || p < HC_RUNTIME_SUBNET_MIN_PREFIX ||
	    p > HC_RUNTIME_SUBNET_MAX_PREFIX)
		return -EINVAL;
	*net = a << 24 | b << 16 | c << 8 | d;
	mask = ~0u << (32 - p);
	if (*net & ~mask)
		return -EINVAL; /* host bits set: not the network's own address */
	*prefix = p;
	return 0;
}

uint32_t hc_runtime_subnet_addresses(unsigned prefix)
{
	/* host-local hands out everything but the network and broadcast
	 * addresses and the gateway (the first address) */
	return (uint32_t)((1ull << (32 - prefix)) - 3);
}

/* Whether an IPv4 text names a file in dir (a host-local lease). */
static bool leased(const char *dir, uint32_t addr)
{
	char path[4096];

	if (!dir)
		return false;
	snprintf(path, sizeof(path), "%s/%u.%u.%u.%u", dir, addr >> 24, addr >> 16 & 255,
		 addr >> 8 & 255, addr & 255);
	return access(path, F_OK) == 0;
}

static void ip_text(uint32_t a, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u", a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255);
}

/* One line of /proc/net/route into dev, dst and mask (host order). */
static bool route_line(const char *line, char dev[32], uint32_t *dst, uint32_t *mask)
{
	unsigned long d, m;
	unsigned flags;
	char gw[16];

	/* Iface Destination Gateway Flags RefCnt Use Metric Mask ...; the
	 * addresses are the kernel's network-order words printed in hex */
	if (sscanf(line, "%31s %lx %15s %x %*d %*d %*d %lx", dev, &d, gw, &flags, &m) != 5)
		return false;
	*dst = ntohl((uint32_t)d);
	*mask = ntohl((uint32_t)m);
	return true;
}

int hc_runtime_subnet_check(const char *subnet, const char *route_table, const char *lease_dir,
			    struct hc_err *err)
{
	uint32_t net, mask;
	unsigned prefix;
	const char *line;

	if (hc_runtime_subnet_parse(subnet, &net, &prefix) < 0)
		return hc_err_set(err, -EINVAL, "invalid workload subnet %s (want a.b.c.d/%d..%d, "
				  "the network's own address)", subnet,
				  HC_RUNTIME_SUBNET_MIN_PREFIX, HC_RUNTIME_SUBNET_MAX_PREFIX);
	mask = ~0u << (32 - prefix);
	for (line = route_table; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		char dev[32], dst_text[16], route[64];
		uint32_t dst, rmask, common;
		unsigned rprefix;

		if (!route_line(line, dev, &dst, &rmask) || rmask == 0)
			continue; /* the header, or a default route: it overlaps everything */
		common = mask & rmask; /* the shorter of the two prefixes */
		if ((net & common) != (dst & common))
			continue;
		/* ptp routes each of our workloads as a /32 on its veth: the
		 * leases under our IPAM directory say which ones are ours */
		if (rmask == ~0u && (dst & mask) == net && leased(lease_dir, dst))
			continue;
		rprefix = (unsigned)__builtin_popcount(rmask);
		ip_text(dst, dst_text, sizeof(dst_text));
		snprintf(route, sizeof(route), "%s/%u dev %s", dst_text, rprefix, dev);
		return hc_err_set(err, -EADDRINUSE,
				  "the workload subnet %s overlaps the route %s this node already "
				  "has: choose a free subnet with --workload-subnet CIDR",
				  subnet, route);
	}
	return 0;
}

int hc_runtime_subnet_check_node(const char *subnet, const char *lease_dir, struct hc_err *err)
{
	char *text = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/net/route", "re");
	int r;

	if (!f)
		return hc_err_set(err, -errno, "cannot read /proc/net/route: %s", strerror(errno));
	/* the table holds no NUL: one getdelim reads it whole */
	if (getdelim(&text, &cap, '\0', f) < 0 && ferror(f)) {
		r = -errno;
		fclose(f);
		free(text);
		return hc_err_set(err, r, "cannot read /proc/net/route: %s", strerror(-r));
	}
	fclose(f);
	r = hc_runtime_subnet_check(subnet, text ? text : "", lease_dir, err);
	free(text);
	return r;
}

/* ---- leases ---- */

/* Whether name is a dotted IPv4 address: host-local names each lease file
 * after its address; "lock" and "last_reserved_ip.0" are its own. */
static bool lease_name(const char *name)
{
	struct in_addr a;

	return inet_pton(AF_INET, name, &a) == 1;
}

/* The sandbox id a lease file holds: host-local writes the container id
 * (CRI: the sandbox id), a line break (\r\n in newer plugins) and the
 * interface name. */
static int lease_owner(int dirfd, const char *name, char *id, size_t len, time_t *mtime)
{
	char buf[256];
	struct stat st;
	ssize_t n;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || (n = read(fd, buf, sizeof(buf) - 1)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	snprintf(id, len, "%s", buf);
	*mtime = st.st_mtime;
	return 0;
}

long hc_runtime_leases_count(const char *lease_dir)
{
	DIR *d = opendir(lease_dir);
	struct dirent *e;
	long n = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d)))
		n += lease_name(e->d_name);
	closedir(d);
	return n;
}

static bool id_listed(const char *id, const char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ids[i], id) == 0)
			return true;
	return false;
}

int hc_runtime_leases_sweep(const char *lease_dir, const char *const *ids, size_t nids,
			    int min_age_s, time_t now, struct hc_runtime_leases *out,
			    struct hc_err *err)
{
	DIR *d;
	struct dirent *e;
	int lock, r = 0;
	char path[4096];

	memset(out, 0, sizeof(*out));
	d = opendir(lease_dir);
	if (!d) {
		if (errno == ENOENT)
			return 0; /* nothing leased yet */
		return hc_err_set(err, -errno, "cannot read %s: %s", lease_dir, strerror(errno));
	}
	/* host-local holds this lock (flock) while it allocates or releases,
	 * so a lease is never removed between its write and its use */
	snprintf(path, sizeof(path), "%s/lock", lease_dir);
	lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0 || flock(lock, LOCK_EX) < 0) {
		r = hc_err_set(err, -errno, "cannot lock %s: %s", path, strerror(errno));
		goto out;
	}
	while ((e = readdir(d))) {
		char id[256];
		time_t mtime = 0;

		if (!lease_name(e->d_name) || lease_owner(dirfd(d), e->d_name, id, sizeof(id),
							  &mtime) < 0)
			continue;
		out->leases++;
		/* a sandbox in the middle of RunPodSandbox holds its lease
		 * before containerd lists it: young leases are left alone */
		if (id_listed(id, ids, nids) || now - mtime < min_age_s)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) < 0) {
			hc_log(HC_LOG_WARN, "cannot remove the CNI lease %s/%s: %s", lease_dir,
			       e->d_name, strerror(errno));
			continue;
		}
		hc_log(HC_LOG_INFO, "collected the CNI lease of %s: its sandbox %.64s is gone",
		       e->d_name, id);
		out->leases--;
		out->collected++;
	}
out:
	if (lock >= 0)
		close(lock); /* releases the flock */
	closedir(d);
	return r;
}

int hc_runtime_collect_leases(struct hc_runtime *rt, const char *lease_dir, int min_age_s,
			      struct hc_runtime_leases *out, struct hc_err *err)
{
	Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
	Runtime__V1__ListPodSandboxResponse *resp = NULL;
	const char **ids = NULL;
	int r;

	/* every sandbox, not only ours by label: a lease is live while any
	 * sandbox of this containerd has its id */
	r = hc_cri_call(rt, "RuntimeService/ListPodSandbox", &req.base,
			&runtime__v1__list_pod_sandbox_response__descriptor, (ProtobufCMessage **)&resp,
			HC_CRI_TIMEOUT_MS, "listing sandboxes", err);
	if (r < 0)
		return r;
	if (resp->n_items && !(ids = calloc(resp->n_items, sizeof(*ids)))) {
		r = hc_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < resp->n_items; i++)
		ids[i] = resp->items[i]->id ? resp->items[i]->id : "";
	r = hc_runtime_leases_sweep(lease_dir, ids, resp->n_items, min_age_s, time(NULL), out, err);
out:
	free(ids);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}
