/*
 * MicroVM workloads (docs/runtime.md, "MicroVMs"): what differs from a
 * container. The sandbox is the same CRI pod sandbox (network namespace,
 * CNI address, the data plane's TC on its veth); in it, a tap for the VM
 * (joined to the veth by the data plane's redirect programs); instead of
 * the image's process, the container runs the launcher (guest/vmm.c) on
 * the pause image with the VMM, the kernel and the VM's files mounted in,
 * so containerd's lifecycle, logs, exit codes, cgroups and adoption after
 * an agent restart serve VMs exactly as containers.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "base/base.h"
#include "log/log.h"
#include "runtime_int.h"

#define RUNTIME_MICROVM "microvm"
/* Where the VM's container sees its files. */
#define CT_VMM "/hc/hc-vmm"
#define CT_KERNEL "/hc/vmlinuz"
#define CT_ROOTFS "/hc/rootfs.ext4"
#define CT_DIR "/vm"
#define CT_INITRD CT_DIR "/initrd"
#define CT_CONSOLE CT_DIR "/console.log"
#define CT_CTL CT_DIR "/ctl.sock"
#define CT_ATTACH CT_DIR "/attach.sock"
/* The modules a guest needs from the cloud kernel (their dependencies come
 * from modules.dep): virtio-mmio transport, disk, network, serial port. */
static const char *const guest_modules[] = { "virtio_mmio", "virtio_blk", "virtio_net",
					     "virtio_console" };

bool hc_spec_is_vm(const struct hc_workload_spec *spec)
{
	return spec->runtime_handler && strcmp(spec->runtime_handler, RUNTIME_MICROVM) == 0;
}

/* ---- the network: a tap beside eth0 in the sandbox ---- */

/* The sandbox's network namespace, from containerd's verbose status. */
static int sandbox_netns(struct hc_runtime *rt, const char *sandbox_id, char *path, size_t len,
			 struct hc_err *err)
{
	Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
	Runtime__V1__PodSandboxStatusResponse *resp = NULL;
	json_t *info = NULL, *nss, *ns;
	const char *text;
	size_t i;
	int r;

	req.pod_sandbox_id = (char *)sandbox_id;
	req.verbose = true;
	r = hc_cri_call(rt, "RuntimeService/PodSandboxStatus", &req.base,
			&runtime__v1__pod_sandbox_status_response__descriptor,
			(ProtobufCMessage **)&resp, HC_CRI_TIMEOUT_MS, "sandbox status", err);
	if (r < 0)
		return r;
	text = hc_cri_map_get(resp->info, resp->n_info, "info");
	info = text ? json_loads(text, 0, NULL) : NULL;
	nss = json_object_get(json_object_get(json_object_get(info, "runtimeSpec"), "linux"),
			      "namespaces");
	r = hc_err_set(err, -ENOENT, "sandbox %s has no network namespace", sandbox_id);
	json_array_foreach(nss, i, ns) {
		const char *p = json_string_value(json_object_get(ns, "path"));
		const char *type = json_string_value(json_object_get(ns, "type"));

		if (p && p[0] && type && strcmp(type, "network") == 0) {
			snprintf(path, len, "%s", p);
			r = 0;
			break;
		}
	}
	json_decref(info);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return r;
}

static int make_tap(int sock, unsigned mtu)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), r = 0;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", HC_VM_TAP);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	/* owned by root: the VMM (root in its container, without
	 * CAP_NET_ADMIN) may open it, nothing else in the sandbox may */
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETOWNER, 0) < 0 ||
	    ioctl(fd, TUNSETPERSIST, 1) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	if (r < 0)
		return r;
	ifr.ifr_mtu = (int)mtu;
	if (ioctl(sock, SIOCSIFMTU, &ifr) < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(sock, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
}

/* eth0's address, prefix, MAC and MTU. */
static int read_veth(int sock, struct hc_vm_net *net, unsigned *mtu)
{
	struct ifreq ifr;
	const unsigned char *m;
	uint32_t mask;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", HC_VM_VETH);
	if (ioctl(sock, SIOCGIFADDR, &ifr) < 0)
		return -errno;
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, net->ip,
		  sizeof(net->ip));
	if (ioctl(sock, SIOCGIFNETMASK, &ifr) < 0)
		return -errno;
	mask = ntohl(((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr.s_addr);
	net->prefix = (unsigned)__builtin_popcount(mask);
	if (ioctl(sock, SIOCGIFHWADDR, &ifr) < 0)
		return -errno;
	m = (const unsigned char *)ifr.ifr_hwaddr.sa_data;
	snprintf(net->mac, sizeof(net->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2],
		 m[3], m[4], m[5]);
	if (ioctl(sock, SIOCGIFMTU, &ifr) < 0)
		return -errno;
	*mtu = (unsigned)ifr.ifr_mtu;
	return 0;
}

/* The default route's gateway in the thread's namespace. */
static int read_gateway(struct hc_vm_net *net)
{
	FILE *f = fopen("/proc/thread-self/net/route", "re");
	char line[256], ifname[32];
	unsigned dst, gw, flags;
	int r = -ENOENT;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%31s %x %x %x", ifname, &dst, &gw, &flags) == 4 && dst == 0 &&
		    gw != 0) {
			struct in_addr a = { .s_addr = gw };

			inet_ntop(AF_INET, &a, net->gw, sizeof(net->gw));
			r = 0;
			break;
		}
	if (f)
		fclose(f);
	return r;
}

int hc_vm_net_setup(struct hc_runtime *rt, const char *sandbox_id, struct hc_vm_net *net,
		    struct hc_err *err)
{
	unsigned mtu = 1500;
	int saved, sock, r;

	memset(net, 0, sizeof(*net));
	r = sandbox_netns(rt, sandbox_id, net->netns, sizeof(net->netns), err);
	if (r < 0)
		return r;
	r = hc_netns_enter(net->netns, &saved);
	if (r < 0)
		return hc_err_set(err, r, "entering %s: %s", net->netns, strerror(-r));
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	r = sock < 0 ? -errno : read_veth(sock, net, &mtu);
	if (r == 0)
		r = read_gateway(net);
	if (r == 0)
		r = make_tap(sock, mtu);
	if (sock >= 0)
		close(sock);
	if (hc_netns_leave(saved) < 0)
		hc_log(HC_LOG_ERROR, "cannot leave the network namespace %s", net->netns);
	if (r < 0)
		return hc_err_set(err, r, "making the VM's tap in %s: %s", net->netns, strerror(-r));
	return 0;
}

/* ---- the initramfs: our init, the modules, the guest's spec ---- */

struct cpio {
	FILE *f;
	unsigned ino;
};

static int cpio_entry(struct cpio *c, const char *name, unsigned mode, const void *data,
		      size_t len)
{
	static const char zeros[4];
	size_t namelen = strlen(name) + 1;

	fprintf(c->f, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ++c->ino,
		mode, 0, 0, 1, 0, len, 0, 0, 0, 0, namelen, 0);
	fwrite(name, 1, namelen, c->f);
	fwrite(zeros, 1, (4 - (110 + namelen) % 4) % 4, c->f);
	if (len)
		fwrite(data, 1, len, c->f);
	fwrite(zeros, 1, (4 - len % 4) % 4, c->f);
	return ferror(c->f) ? -EIO : 0;
}

static int cpio_file(struct cpio *c, const char *name, const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	long len;
	int r = -errno;

	if (!f)
		return r;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len)
		r = cpio_entry(c, name, 0100644, buf, (size_t)len);
	else
		r = -EIO;
	free(buf);
	fclose(f);
	return r;
}

/* The dependencies of module path (relative to the modules dir) from
 * modules.dep, then path itself, each once, into order. */
static int module_order(const char *dep, const char *path, struct hc_strv *order, int depth)
{
	size_t plen = strlen(path);
	const char *line = dep;

	if (depth > 16)
		return -ELOOP;
	for (size_t i = 0; i < order->n; i++)
		if (strcmp(order->v[i], path) == 0)
			return 0;
	while (line && *line && !(strncmp(line, path, plen) == 0 && line[plen] == ':'))
		line = (line = strchr(line, '\n')) ? line + 1 : NULL;
	if (!line || !*line)
		return -ENOENT;
	for (const char *p = line + plen + 1; *p && *p != '\n';) {
		char d[512];
		size_t n;
		int r;

		p += strspn(p, " ");
		n = strcspn(p, " \n");
		if (!n || n >= sizeof(d))
			break;
		memcpy(d, p, n);
		d[n] = '\0';
		p += n;
		if ((r = module_order(dep, d, order, depth + 1)) < 0)
			return r;
	}
	return hc_strv_add(order, "%s", path);
}

/* The module named name's path in modules.dep ("kernel/.../name.ko"). */
static int module_path(const char *dep, const char *name, char *out, size_t len)
{
	char needle[128];
	const char *p;

	snprintf(needle, sizeof(needle), "/%s.ko:", name);
	p = strstr(dep, needle);
	if (!p)
		return -ENOENT;
	while (p > dep && p[-1] != '\n')
		p--;
	snprintf(out, len, "%.*s", (int)(strchr(p, ':') - p), p);
	return 0;
}

static int pack_modules(struct cpio *c, const char *release, struct hc_err *err)
{
	char dir[512], path[1024], *dep = NULL, *list = NULL;
	struct hc_strv order = { 0 };
	size_t len = 0, dlen;
	int r;
	FILE *f;

	snprintf(dir, sizeof(dir), "/lib/modules/%s", release);
	snprintf(path, sizeof(path), "%s/modules.dep", dir);
	f = fopen(path, "re");
	if (!f)
		return hc_err_set(err, -errno, "%s: %s (the guest kernel's modules)", path,
				  strerror(errno));
	r = getdelim(&dep, &dlen, '\0', f) < 0 ? -EIO : 0;
	fclose(f);
	for (size_t i = 0; r == 0 && i < sizeof(guest_modules) / sizeof(*guest_modules); i++)
		if ((r = module_path(dep, guest_modules[i], path, sizeof(path))) == 0)
			r = module_order(dep, path, &order, 0);
	if (r < 0)
		hc_err_set(err, r, "the guest's modules are not all in %s/modules.dep", dir);
	for (size_t i = 0; r == 0 && i < order.n; i++) {
		const char *slash = strrchr(order.v[i], '/');
		const char *base = slash ? slash + 1 : order.v[i];
		char name[600], *grown = realloc(list, len + strlen(base) + 8);

		snprintf(name, sizeof(name), "hc/%s", base);
		snprintf(path, sizeof(path), "%s/%s", dir, order.v[i]);
		if (!grown) {
			r = -ENOMEM;
			break;
		}
		list = grown;
		len += (size_t)sprintf(list + len, "/hc/%s\n", base);
		if ((r = cpio_file(c, name, path)) < 0)
			hc_err_set(err, r, "%s: %s", path, strerror(-r));
	}
	if (r == 0)
		r = cpio_entry(c, "hc/modules", 0100644, list, len);
	free(list);
	free(dep);
	hc_strv_fini(&order);
	return r;
}

/* The guest's spec (guest/init.c reads it): key=value records, each
 * NUL-terminated. The image's env, then the spawn's (later wins). */
static int guest_spec(const char *id, const struct hc_workload_spec *spec,
		      const struct hc_vm_image *img, const struct hc_vm_net *net, char **out,
		      size_t *len)
{
	FILE *f = open_memstream(out, len);

	if (!f)
		return -ENOMEM;
	fprintf(f, "ip=%s%cprefix=%u%cgw=%s%chostname=%s%c", net->ip, 0, net->prefix, 0, net->gw,
		0, id, 0);
	fprintf(f, "workdir=%s%cuser=%s%cro=%d%c", img->workdir, 0, img->user, 0,
		spec->read_only_rootfs, 0);
	for (size_t i = 0; i < img->argv.n; i++)
		fprintf(f, "arg=%s%c", img->argv.v[i], 0);
	for (size_t i = 0; i < img->env.n; i++)
		fprintf(f, "env=%s%c", img->env.v[i], 0);
	for (size_t i = 0; i < spec->nenv; i++)
		fprintf(f, "env=%s%c", spec->env[i], 0);
	fprintf(f, "env=HC_WORKLOAD_ID=%s%cenv=HOSTNAME=%s%c", id, 0, id, 0);
	return fclose(f) == 0 ? 0 : -ENOMEM;
}

static int write_initrd(const char *path, const char *id, const struct hc_workload_spec *spec,
			const struct hc_vm_image *img, const struct hc_vm_net *net,
			const char *release, struct hc_err *err)
{
	static const char *const dirs[] = { "dev", "proc", "sys", "hc", "newroot" };
	struct cpio c = { .f = fopen(path, "we") };
	char *gspec = NULL;
	size_t glen = 0;
	int r = 0;

	if (!c.f)
		return hc_err_set(err, -errno, "%s: %s", path, strerror(errno));
	for (size_t i = 0; r == 0 && i < sizeof(dirs) / sizeof(*dirs); i++)
		r = cpio_entry(&c, dirs[i], 040755, NULL, 0);
	if (r == 0)
		r = cpio_entry(&c, "init", 0100755, hc_vm_init_start,
			       (size_t)(hc_vm_init_end - hc_vm_init_start));
	if (r == 0 && (r = pack_modules(&c, release, err)) < 0)
		goto out;
	if (r == 0 && (r = guest_spec(id, spec, img, net, &gspec, &glen)) == 0)
		r = cpio_entry(&c, "hc/spec", 0100644, gspec, glen);
	if (r == 0)
		r = cpio_entry(&c, "TRAILER!!!", 0, NULL, 0);
	if (r < 0)
		hc_err_set(err, r, "writing %s: %s", path, strerror(-r));
out:
	free(gspec);
	if (fclose(c.f) != 0 && r == 0)
		r = hc_err_set(err, -EIO, "writing %s", path);
	return r;
}

/* ---- the container ---- */

/* Whether the file at path holds exactly data[0..size). */
static bool file_holds(const char *path, const unsigned char *data, size_t size)
{
	FILE *f = fopen(path, "re");
	unsigned char buf[65536];
	size_t off = 0, n;

	if (!f)
		return false;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && off + n <= size &&
	       memcmp(buf, data + off, n) == 0)
		off += n;
	fclose(f);
	return off == size && n == 0;
}

/* The launcher as a file the container can mount, rewritten when this
 * binary carries another one (a running VM keeps the one it mounted). */
static int write_launcher(struct hc_runtime *rt, char *path, size_t len, struct hc_err *err)
{
	size_t size = (size_t)(hc_vm_vmm_end - hc_vm_vmm_start);
	char dir[4096];
	int r;

	snprintf(dir, sizeof(dir), "%s/boot", rt->vm_root);
	if (snprintf(path, len, "%s/hc-vmm", dir) >= (int)len)
		return hc_err_set(err, -ENAMETOOLONG, "%s: name too long", dir);
	if (file_holds(path, hc_vm_vmm_start, size))
		return 0;
	r = hc_mkdir_p(dir, 0700);
	if (r == 0)
		r = hc_file_write_atomic(path, hc_vm_vmm_start, size, 0755);
	return r < 0 ? hc_err_set(err, r, "%s: %s", path, strerror(-r)) : 0;
}

static void add_mount(struct hc_vm_container *c, const char *ct, const char *host, bool ro)
{
	Runtime__V1__Mount init = RUNTIME__V1__MOUNT__INIT;
	Runtime__V1__Mount *m = &c->mounts[c->nmounts];

	*m = init;
	m->container_path = (char *)ct;
	m->host_path = (char *)host;
	m->readonly = ro;
	c->mountp[c->nmounts++] = m;
}

static void add_device(struct hc_vm_container *c, const char *path)
{
	Runtime__V1__Device init = RUNTIME__V1__DEVICE__INIT;
	Runtime__V1__Device *d = &c->devices[c->ndevices];

	*d = init;
	d->container_path = d->host_path = (char *)path;
	d->permissions = "rw";
	c->devicep[c->ndevices++] = d;
}

static int container_command(struct hc_vm_container *c, const struct hc_vmm_ops *vmm,
			     const struct hc_vm_launch *l)
{
	struct hc_strv argv = { 0 };
	int r;

	r = hc_strv_add(&c->cmd, CT_VMM) | hc_strv_add(&c->cmd, "run") |
	    hc_strv_add(&c->cmd, "--ctl") | hc_strv_add(&c->cmd, CT_CTL) |
	    hc_strv_add(&c->cmd, "--attach") | hc_strv_add(&c->cmd, CT_ATTACH) |
	    hc_strv_add(&c->cmd, "--");
	if (r == 0)
		r = vmm->argv(l, &argv);
	for (size_t i = 0; r == 0 && i < argv.n; i++)
		r = hc_strv_add(&c->cmd, "%s", argv.v[i]);
	hc_strv_fini(&argv);
	return r ? -ENOMEM : 0;
}

int hc_vm_container_init(struct hc_runtime *rt, const char *id,
			 const struct hc_workload_spec *spec, const struct hc_vm_image *img,
			 const struct hc_vm_net *net, const char *rootfs,
			 struct hc_vm_container *c, struct hc_err *err)
{
	Runtime__V1__KeyValue env = RUNTIME__V1__KEY_VALUE__INIT;
	const struct hc_vmm_ops *vmm = hc_vm_vmm();
	char release[256], initrd[4200];
	struct hc_vm_launch l = { .kernel = CT_KERNEL, .initrd = CT_INITRD, .rootfs = CT_ROOTFS,
				  .console = CT_CONSOLE, .ctl_sock = CT_CTL, .tap = HC_VM_TAP,
				  .mac = net->mac, .cores = spec->cores,
				  .memory_mb = spec->memory_mb, .read_only = spec->read_only_rootfs };
	int r;

	memset(c, 0, sizeof(*c));
	if (!vmm)
		return hc_err_set(err, -ENOTSUP, "runtime microvm is not available on this node: "
				  "no VMM (install qemu-system-x86)");
	if (hc_vm_kernel(c->kernel, sizeof(c->kernel), release, sizeof(release)) < 0)
		return hc_err_set(err, -ENOTSUP, "runtime microvm is not available on this node: "
				  "no guest kernel (install linux-image-cloud-amd64, or set "
				  "HC_VM_KERNEL)");
	snprintf(c->rootfs, sizeof(c->rootfs), "%s", rootfs);
	snprintf(c->dir, sizeof(c->dir), "%s/run/%s", rt->vm_root, id);
	snprintf(initrd, sizeof(initrd), "%s/initrd", c->dir);
	r = hc_mkdir_p(c->dir, 0700);
	if (r < 0)
		return hc_err_set(err, r, "%s: %s", c->dir, strerror(-r));
	r = write_launcher(rt, c->vmm, sizeof(c->vmm), err);
	if (r == 0)
		r = write_initrd(initrd, id, spec, img, net, release, err);
	l.kvm = r == 0 && hc_vm_kvm(rt->vm_root, c->kernel);
	if (r == 0 && container_command(c, vmm, &l) < 0)
		r = hc_err_set(err, -ENOMEM, "out of memory");
	if (r < 0)
		return r;
	/* the VMM and its libraries from the host, read-only; the pause
	 * image has no /lib of its own */
	add_mount(c, "/usr", "/usr", true);
	add_mount(c, "/lib", "/usr/lib", true);
	add_mount(c, "/lib64", "/usr/lib64", true);
	add_mount(c, CT_VMM, c->vmm, true);
	add_mount(c, CT_KERNEL, c->kernel, true);
	add_mount(c, CT_ROOTFS, c->rootfs, true);
	add_mount(c, CT_DIR, c->dir, false);
	add_device(c, "/dev/net/tun");
	if (l.kvm)
		add_device(c, "/dev/kvm");
	/* the VM's disk overlay goes next to its other files */
	env.key = "TMPDIR";
	env.value = CT_DIR;
	c->env = env;
	c->envp = &c->env;
	return 0;
}

void hc_vm_container_fini(struct hc_vm_container *c)
{
	hc_strv_fini(&c->cmd);
}

void hc_vm_remove_dir(struct hc_runtime *rt, const char *id)
{
	char path[4096];

	/* id was checked to be a UUID, so the path stays inside vm_root */
	snprintf(path, sizeof(path), "%s/run/%s", rt->vm_root, id);
	hc_runtime_remove_tree(path);
}

int hc_vm_attach_argv(char *const argv[], struct hc_strv *out)
{
	int r = hc_strv_add(out, CT_VMM) | hc_strv_add(out, "attach") |
		hc_strv_add(out, "--attach") | hc_strv_add(out, CT_ATTACH) |
		hc_strv_add(out, "--");

	for (size_t i = 0; r == 0 && argv[i]; i++)
		r = hc_strv_add(out, "%s", argv[i]);
	return r ? -ENOMEM : 0;
}
