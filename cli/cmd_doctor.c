/* `hypercore doctor`: checks what the agent needs of this machine and says,
 * for each thing found wanting, how to fix it. Probes that change anything
 * (attaching XDP and TC) run in a network namespace of their own, on a
 * scratch veth, never on the uplink: some drivers reset their rings when an
 * XDP program comes or goes. */
#include "cli.h"
#include "cli_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>

#include "addr/addr.h"
#include "auth/auth.h"
#include "daemon/daemon.h"
#include "ibrl/ibrl.h"
#include "runtime/runtime.h"

#define HTTP_TIMEOUT_MS 2000
#define CNI_DIR "/usr/lib/cni"
/* Below this many free workload addresses a warning: spawns start failing
 * soon after. */
#define FEW_ADDRESSES 16

#define DOC_OK HC_DOCTOR_OK
#define DOC_WARN HC_DOCTOR_WARN
#define DOC_FAIL HC_DOCTOR_FAIL
static const char *const status_name[] = { "ok", "warn", "fail" };

struct doctor_args {
	const char *state_dir, *grpc_addr, *http_addr, *gossip_addr, *subnet, *iface;
	const char *vm_kernel;
	bool json;
};

struct doctor {
	const struct doctor_args *a;
	json_t *checks; /* --json: the results, printed at the end */
	unsigned count[3];
};

/* One result: "STATUS  NAME  what was found", and the fix on the same line. */
static void report(struct doctor *d, enum hc_cli_doctor_status st, const char *name, const char *fix,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void report(struct doctor *d, enum hc_cli_doctor_status st, const char *name, const char *fix,
		   const char *fmt, ...)
{
	char what[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	d->count[st]++;
	if (d->checks) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "name", name, "status", status_name[st],
				      "detail", what);

		if (o && fix && st != DOC_OK)
			json_object_set_new(o, "fix", json_string(fix));
		if (o)
			json_array_append_new(d->checks, o);
		return;
	}
	printf("%-4s  %-16s %s", status_name[st], name, what);
	if (fix && st != DOC_OK)
		printf("; fix: %s", fix);
	putchar('\n');
}

/* ---- kernel ---- */

static void check_btf(struct doctor *d)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK) == 0)
		report(d, DOC_OK, "kernel-btf", NULL, "/sys/kernel/btf/vmlinux present");
	else
		report(d, DOC_FAIL, "kernel-btf",
		       "run a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are)",
		       "/sys/kernel/btf/vmlinux: %s", strerror(errno));
}

static void check_bpffs(struct doctor *d)
{
	struct statfs st;

	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
		report(d, DOC_OK, "bpffs", NULL, "mounted at /sys/fs/bpf");
	else
		report(d, DOC_WARN, "bpffs", "mount -t bpf bpf /sys/fs/bpf (the agent tries at start)",
		       "/sys/fs/bpf is no bpf filesystem");
}

/* A program that only returns ret: enough to load and attach. -errno. */
static int trivial_prog(enum bpf_prog_type type, int ret)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = ret },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	int fd = bpf_prog_load(type, "hc_doctor", "GPL", insns, 2, NULL);

	return fd < 0 ? -errno : fd;
}

static void check_sockmap(struct doctor *d)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_SOCKHASH, "hc_doctor", sizeof(__u64), sizeof(__u64), 1,
				NULL);

	if (fd >= 0) {
		close(fd);
		report(d, DOC_OK, "sockmap", NULL, "sockhash maps can be made");
		return;
	}
	report(d, DOC_WARN, "sockmap", "use --proxy-forwarding splice (the default)",
	       "cannot make a sockhash map: %s", strerror(errno));
}

/* What the probe in the scratch namespace found, one bit each. */
#define PROBE_NETNS (1u << 0)
#define PROBE_XDP_NATIVE (1u << 1)
#define PROBE_XDP_GENERIC (1u << 2)
#define PROBE_CLSACT (1u << 3)

/* In the child, in a network namespace of its own: a veth pair, native XDP
 * on one end, generic XDP on lo, a clsact qdisc and a TC program. */
static unsigned probe_in_netns(void)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, tc);
	struct nl_sock *sk;
	unsigned found = 0;
	int xdp, cls, ifindex;

	if (unshare(CLONE_NEWNET) < 0)
		return 0;
	found |= PROBE_NETNS;
	sk = nl_socket_alloc();
	if (!sk || nl_connect(sk, NETLINK_ROUTE) < 0 ||
	    rtnl_link_veth_add(sk, "hcdoc0", "hcdoc1", getpid()) < 0)
		return found;
	ifindex = (int)if_nametoindex("hcdoc0");
	xdp = trivial_prog(BPF_PROG_TYPE_XDP, XDP_PASS);
	cls = trivial_prog(BPF_PROG_TYPE_SCHED_CLS, 0);
	if (xdp >= 0 && ifindex && bpf_xdp_attach(ifindex, xdp, XDP_FLAGS_DRV_MODE, NULL) == 0)
		found |= PROBE_XDP_NATIVE;
	if (xdp >= 0 && bpf_xdp_attach(1, xdp, XDP_FLAGS_SKB_MODE, NULL) == 0)
		found |= PROBE_XDP_GENERIC;
	hook.ifindex = ifindex;
	tc.prog_fd = cls;
	if (cls >= 0 && ifindex && bpf_tc_hook_create(&hook) == 0 && bpf_tc_attach(&hook, &tc) == 0)
		found |= PROBE_CLSACT;
	nl_socket_free(sk);
	return found; /* the namespace, and all in it, goes with the process */
}

static unsigned probe(void)
{
	int fds[2], status;
	unsigned found = 0;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return 0;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		found = probe_in_netns();
		_exit(write(fds[1], &found, sizeof(found)) == sizeof(found) ? 0 : 1);
	}
	close(fds[1]);
	if (pid > 0 && read(fds[0], &found, sizeof(found)) != sizeof(found))
		found = 0;
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	return found;
}

static void check_probes(struct doctor *d)
{
	unsigned found = probe();

	if (!(found & PROBE_NETNS)) {
		report(d, DOC_WARN, "xdp", "run hypercore doctor as root",
		       "cannot probe XDP and TC: no network namespace of our own (%s)",
		       geteuid() ? "not root" : "unshare failed");
		return;
	}
	if (found & PROBE_XDP_NATIVE)
		report(d, DOC_OK, "xdp", NULL, "native XDP attaches (veth in a scratch namespace)");
	else if (found & PROBE_XDP_GENERIC)
		report(d, DOC_WARN, "xdp", "--dataplane-mode tc, or a kernel with native XDP",
		       "only generic XDP attaches");
	else
		report(d, DOC_FAIL, "xdp", "a kernel with CONFIG_BPF_SYSCALL (Debian's has it)",
		       "no XDP program attaches");
	if (found & PROBE_CLSACT)
		report(d, DOC_OK, "tc-clsact", NULL, "clsact qdisc and a TC program attach");
	else
		report(d, DOC_FAIL, "tc-clsact", "a kernel with CONFIG_NET_SCH_INGRESS and "
		       "CONFIG_NET_CLS_BPF", "no clsact qdisc or TC program attaches");
}

/* The interface of the default route, as the agent picks its uplink. */
static int default_iface(char *buf, size_t len)
{
	char line[256], name[IF_NAMESIZE];
	unsigned long dest;
	FILE *f = fopen("/proc/net/route", "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof(line), f))
		if (sscanf(line, "%15s %lx", name, &dest) == 2 && dest == 0) {
			snprintf(buf, len, "%s", name);
			r = 0;
		}
	fclose(f);
	return r;
}

static void check_uplink(struct doctor *d)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr = { 0 };
	char iface[IF_NAMESIZE] = "";
	int fd;

	if (d->a->iface)
		snprintf(iface, sizeof(iface), "%s", d->a->iface);
	else if (default_iface(iface, sizeof(iface)) < 0) {
		report(d, DOC_FAIL, "uplink", "add a default route, or give --dataplane-iface IF",
		       "no default route: the agent would not know its uplink");
		return;
	}
	if (!if_nametoindex(iface)) {
		report(d, DOC_FAIL, "uplink", "give --dataplane-iface an existing interface",
		       "%s: no such interface", iface);
		return;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", iface);
	ifr.ifr_data = (void *)&info;
	if (fd < 0 || ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		snprintf(info.driver, sizeof(info.driver), "unknown");
	if (fd >= 0)
		close(fd);
	/* the agent's auto mode: TC ingress on veth/tun (partial checksums),
	 * else native XDP where the driver has it, generic otherwise */
	report(d, DOC_OK, "uplink", NULL, "%s (driver %.32s): node ports by %s", iface, info.driver,
	       strcmp(info.driver, "veth") == 0 || strcmp(info.driver, "tun") == 0
		       ? "TC ingress"
		       : "XDP, native where the driver has it");
}

/* ---- programs ---- */

/* The first line `name --version` prints, or "" when name is not found. */
static void tool_version(const char *name, char *buf, size_t len)
{
	char cmd[128];
	FILE *p;

	buf[0] = '\0';
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null && %s --version 2>&1", name, name);
	p = popen(cmd, "re");
	if (!p)
		return;
	if (fgets(buf, (int)len, p))
		buf[strcspn(buf, "\n")] = '\0';
	pclose(p);
}

static void check_tool(struct doctor *d, const char *name, const char *fix)
{
	char v[256];

	tool_version(name, v, sizeof(v));
	if (v[0])
		/* "runc version 1.1.5": the name is already the check's */
		report(d, DOC_OK, name, NULL, "%s",
		       strncmp(v, name, strlen(name)) == 0 && v[strlen(name)] == ' '
			       ? v + strlen(name) + 1
			       : v);
	else
		report(d, DOC_FAIL, name, fix, "%s not found on PATH", name);
}

static void check_cni(struct doctor *d)
{
	static const char *const plugins[] = { "ptp", "host-local", "firewall", "loopback" };
	char path[128], missing[128] = "";
	size_t n = 0;

	for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
		snprintf(path, sizeof(path), CNI_DIR "/%s", plugins[i]);
		if (access(path, X_OK) < 0)
			n += (size_t)snprintf(missing + n, sizeof(missing) - n, " %s", plugins[i]);
	}
	if (!missing[0])
		report(d, DOC_OK, "cni-plugins", NULL, CNI_DIR ": ptp, host-local, firewall, loopback");
	else
		report(d, DOC_FAIL, "cni-plugins", "apt-get install containernetworking-plugins",
		       CNI_DIR " lacks:%s", missing);
}

/* microVM workloads: the VMM and kernel, and KVM or TCG (a VM with KVM is
 * booted to find out: /dev/kvm alone does not say it works). */
static void check_microvm(struct doctor *d)
{
	char found[4200], why[256];
	const char *accel;

	if (d->a->vm_kernel &&
	    hc_runtime_microvm_set_kernel(d->a->vm_kernel, found, sizeof(found)) < 0) {
		report(d, DOC_FAIL, "microvm", "name a readable vmlinuz-<release>", "%s", found);
		return;
	}
	if (hc_runtime_microvm_check(found, sizeof(found)) < 0) {
		report(d, DOC_WARN, "microvm", "apt-get install qemu-system-x86 linux-image-cloud-amd64",
		       "--runtime microvm unavailable: %s", found);
		return;
	}
	accel = hc_runtime_microvm_accel(why, sizeof(why));
	if (strcmp(accel, "kvm") == 0)
		report(d, DOC_OK, "microvm", NULL, "%s, with KVM", found);
	else
		report(d, DOC_WARN, "microvm",
		       "on hardware with virtualization exposed (VT-x/AMD-V), /dev/kvm works",
		       "%s, under TCG: KVM start failed (%s); VMs boot in seconds, not "
		       "milliseconds", found, why);
}

/* ---- ports ---- */

/* Whether an agent answers /healthz at the HTTP address. */
static bool agent_answers(const struct doctor *d)
{
	struct hc_err err;
	char *body = NULL;
	size_t len;
	int status = 0;

	if (hc_cli_http(d->a->http_addr, "GET", "/healthz", NULL, 0, HTTP_TIMEOUT_MS, &status,
			&body, &len, &err) < 0)
		return false;
	free(body);
	return status == 200;
}

/* 0 when addr:port could be bound now, else -errno. */
static int try_bind(const struct hc_addr *a, int type)
{
	int fd = socket(a->ss.ss_family, type | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		r = -errno;
	close(fd);
	return r;
}

static void check_port(struct doctor *d, const char *what, const char *opt, const char *text,
		       bool udp_too, bool agent)
{
	char name[32], fix[160];
	struct hc_addr a;
	struct hc_err err;
	int r;

	snprintf(name, sizeof(name), "port-%s", what);
	if (hc_addr_parse(text, true, &a, &err) < 0) {
		report(d, DOC_FAIL, name, "fix the address in the configuration", "--%s %s: %s", opt,
		       text, err.msg);
		return;
	}
	r = try_bind(&a, SOCK_STREAM);
	if (r == 0 && udp_too)
		r = try_bind(&a, SOCK_DGRAM);
	if (r == 0) {
		report(d, DOC_OK, name, NULL, "%s free", text);
	} else if (r == -EADDRINUSE && agent) {
		report(d, DOC_OK, name, NULL, "%s held by the running agent", text);
	} else {
		snprintf(fix, sizeof(fix), "stop what holds it (ss -lntup 'sport = :%d') or set --%s",
			 hc_addr_port(&a), opt);
		report(d, DOC_FAIL, name, fix, "%s: %s", text, strerror(-r));
	}
}

/* ---- the workload subnet ---- */

int hc_cli_metric_value(const char *text, const char *name, double *out)
{
	size_t n = strlen(name);

	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		char *end;
		double v;

		if (strncmp(l, name, n) != 0 || (l[n] != ' ' && l[n] != '{'))
			continue;
		l += n;
		if (*l == '{') {
			/* labels end on their own line */
			l += strcspn(l, "}\n");
			if (*l != '}')
				return -EINVAL;
			l++;
		}
		if (*l != ' ')
			continue;
		errno = 0;
		v = strtod(l + 1, &end);
		if (errno || end == l + 1 || (*end && *end != '\n' && *end != ' '))
			return -EINVAL;
		*out = v;
		return 0;
	}
	return -ENOENT;
}

/* From a running agent's /metrics; -errno when there is none to ask. */
static int free_from_agent(const struct doctor *d, double *free_addrs)
{
	struct hc_err err;
	char *body = NULL;
	size_t len;
	int status = 0, r;

	r = hc_cli_http(d->a->http_addr, "GET", "/metrics", NULL, 0, HTTP_TIMEOUT_MS, &status,
			&body, &len, &err);
	if (r < 0)
		return r;
	r = status == 200 ? hc_cli_metric_value(body, "hypercore_workload_addresses_free",
						free_addrs)
			  : -EACCES;
	free(body);
	return r;
}

static void check_addresses(struct doctor *d)
{
	char lease_dir[4096];
	const char *subnet = d->a->subnet ? d->a->subnet : HC_WORKLOAD_SUBNET;
	double free_addrs;
	unsigned prefix;
	uint32_t net;
	long used;
	const char *from = "the running agent";

	if (hc_runtime_subnet_parse(subnet, &net, &prefix) < 0) {
		report(d, DOC_FAIL, "workload-subnet", "give --workload-subnet a.b.c.d/16 or so",
		       "%s is no subnet", subnet);
		return;
	}
	if (free_from_agent(d, &free_addrs) < 0) {
		from = "the leases on disk";
		if (hc_containerd_lease_dir(d->a->state_dir, lease_dir, sizeof(lease_dir)) < 0 ||
		    (used = hc_runtime_leases_count(lease_dir)) < 0) {
			report(d, DOC_WARN, "workload-subnet", "check --state-dir",
			       "cannot count the leases under %s", d->a->state_dir);
			return;
		}
		free_addrs = (double)hc_runtime_subnet_addresses(prefix) - (double)used;
	}
	if (free_addrs < 1)
		report(d, DOC_FAIL, "workload-subnet", "stop workloads or use a larger --workload-subnet",
		       "%s: no address free (from %s)", subnet, from);
	else if (free_addrs < FEW_ADDRESSES)
		report(d, DOC_WARN, "workload-subnet", "use a larger --workload-subnet",
		       "%s: only %.0f addresses free (from %s)", subnet, free_addrs, from);
	else
		report(d, DOC_OK, "workload-subnet", NULL, "%s: %.0f addresses free (from %s)",
		       subnet, free_addrs, from);
}

/* ---- clock and files ---- */

static void check_clock(struct doctor *d)
{
	struct timex tx = { 0 };
	int state = adjtimex(&tx);

	if (state < 0)
		report(d, DOC_WARN, "clock", NULL, "adjtimex: %s", strerror(errno));
	else if (state == TIME_ERROR || (tx.status & STA_UNSYNC))
		report(d, DOC_WARN, "clock", "timedatectl set-ntp true (or run chronyd)",
		       "not synchronized: proofs and token expiry compare times across nodes");
	else
		report(d, DOC_OK, "clock", NULL, "synchronized (estimated error %ld us)", tx.esterror);
}

enum hc_cli_doctor_status hc_cli_doctor_file_mode(const char *path, char *what, size_t len)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(what, len, "%s: %s", path, strerror(errno));
		return errno == ENOENT ? DOC_OK : DOC_FAIL;
	}
	if (st.st_mode & 077) {
		snprintf(what, len, "%s is mode %04o: others may read the secret", path,
			 (unsigned)(st.st_mode & 07777));
		return DOC_FAIL;
	}
	snprintf(what, len, "%s is mode %04o", path, (unsigned)(st.st_mode & 07777));
	return DOC_OK;
}

static void check_secret_file(struct doctor *d, const char *name, const char *file)
{
	char path[4096], what[4200], fix[4200];
	enum hc_cli_doctor_status st;

	snprintf(path, sizeof(path), "%s/%s", d->a->state_dir, file);
	st = hc_cli_doctor_file_mode(path, what, sizeof(what));
	snprintf(fix, sizeof(fix), "chmod 600 %s", path);
	if (st == DOC_OK && access(path, F_OK) < 0)
		report(d, DOC_OK, name, NULL, "%s: not made yet (the first start makes it 0600)",
		       path);
	else
		report(d, st, name, fix, "%s", what);
}

/* Whether a configuration line sets key ("key = ...", not a comment). */
static bool sets_key(const char *line, const char *key)
{
	size_t n = strlen(key);

	line += strspn(line, " \t");
	return strncmp(line, key, n) == 0 && strchr(" \t=", line[n]);
}

/* The configuration file may hold the cluster's key or a join token; then
 * only root may read it (docs/cli.md). */
static void check_config(struct doctor *d)
{
	const char *path = getenv("HYPERCORE_CONFIG");
	bool secret = false;
	char line[4096], fix[4200];
	struct stat st;
	FILE *f;

	if (!path || !*path)
		path = HC_CLI_DEFAULT_CONFIG;
	f = fopen(path, "re");
	if (!f) {
		report(d, DOC_OK, "config", NULL, "%s: %s", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f))
		secret |= sets_key(line, "cluster-encrypt") || sets_key(line, "join-token");
	if (fstat(fileno(f), &st) < 0)
		st.st_mode = 0;
	fclose(f);
	snprintf(fix, sizeof(fix), "chmod 600 %s", path);
	if (secret && (st.st_mode & 077))
		report(d, DOC_FAIL, "config", fix,
		       "%s holds a secret (cluster-encrypt or join-token) and is mode %04o", path,
		       (unsigned)(st.st_mode & 07777));
	else
		report(d, DOC_OK, "config", NULL, "%s is mode %04o%s", path,
		       (unsigned)(st.st_mode & 07777), secret ? " and holds a secret" : "");
}

/* ---- the command ---- */

#define D struct doctor_args
const struct hc_cli_opt hc_cli_opts_doctor[] = {
	HC_CLI_STR("state-dir", D, state_dir, "DIR",
		   "the agent's state dir, whose secrets and leases are checked (default "
		   HC_DEFAULT_STATE_DIR ")"),
	HC_CLI_STR("grpc-bind-addr", D, grpc_addr, "ADDR",
		   "the agent's gRPC address, checked free or the agent's (default "
		   HC_CLI_DEFAULT_GRPC_ADDR ")"),
	HC_CLI_STR("http-bind-addr", D, http_addr, "ADDR",
		   "the agent's HTTP address, the same; a running agent's /metrics is read "
		   "there (default " HC_CLI_DEFAULT_HTTP_ADDR ")"),
	HC_CLI_STR("cluster-bind-addr", D, gossip_addr, "ADDR",
		   "the gossip address, TCP and UDP (default 0.0.0.0:"
		   HC_CLI_QUOTE(HC_DEFAULT_GOSSIP_PORT) ")"),
	HC_CLI_STR("workload-subnet", D, subnet, "CIDR",
		   "the workload subnet whose free addresses are counted (default "
		   HC_WORKLOAD_SUBNET ")"),
	HC_CLI_STR("dataplane-iface", D, iface, "IF",
		   "the uplink (default: the default route's interface)"),
	HC_CLI_STR("vm-kernel", D, vm_kernel, "FILE",
		   "the guest kernel the agent is given (--vm-kernel), checked instead of the "
		   "default one"),
	HC_CLI_FLAG("json", D, json, "print the results as JSON"),
	{ .name = NULL },
};
#undef D

int hc_cli_cmd_doctor(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct doctor_args a = {
		.state_dir = HC_DEFAULT_STATE_DIR,
		.grpc_addr = HC_CLI_DEFAULT_GRPC_ADDR,
		.http_addr = HC_CLI_DEFAULT_HTTP_ADDR,
		.gossip_addr = "0.0.0.0:" HC_CLI_QUOTE(HC_DEFAULT_GOSSIP_PORT),
	};
	struct doctor d = { .a = &a };
	bool agent;
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (a.json && !(d.checks = json_array()))
		return hc_cli_fail("out of memory");
	libbpf_set_print(NULL); /* a refused probe is a result, not noise */
	check_btf(&d);
	check_bpffs(&d);
	check_probes(&d);
	check_sockmap(&d);
	check_uplink(&d);
	check_tool(&d, "containerd", "apt-get install containerd");
	check_tool(&d, "runc", "apt-get install runc");
	check_cni(&d);
	check_microvm(&d);
	agent = agent_answers(&d);
	check_port(&d, "grpc", "grpc-bind-addr", a.grpc_addr, false, agent);
	check_port(&d, "http", "http-bind-addr", a.http_addr, false, agent);
	check_port(&d, "gossip", "cluster-bind-addr", a.gossip_addr, true, agent);
	check_addresses(&d);
	check_clock(&d);
	check_secret_file(&d, "api-token", HC_AUTH_TOKEN_FILE);
	check_secret_file(&d, "cluster-keyring", HC_DAEMON_KEYRING_FILE);
	check_secret_file(&d, "node-key", HC_IBRL_KEY_FILE);
	check_config(&d);
	if (d.checks) {
		json_t *out = json_pack("{s:o, s:i, s:i, s:i}", "checks", d.checks, "ok",
					(int)d.count[DOC_OK], "warn", (int)d.count[DOC_WARN], "fail",
					(int)d.count[DOC_FAIL]);

		if (!out || json_dumpf(out, stdout, JSON_INDENT(2)) < 0)
			r = hc_cli_fail("out of memory");
		putchar('\n');
		json_decref(out);
		if (r >= 0)
			return r;
	} else {
		printf("\n%u ok, %u warn, %u fail\n", d.count[DOC_OK], d.count[DOC_WARN],
		       d.count[DOC_FAIL]);
	}
	return d.count[DOC_FAIL] ? HC_EXIT_FAIL : HC_EXIT_OK;
}
