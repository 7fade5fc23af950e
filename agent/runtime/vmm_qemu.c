/*
 * The VMM behind microVM workloads: QEMU's microvm machine (Debian's
 * qemu-system-x86), virtio-mmio devices only: a block device for the root
 * filesystem, a net device on the sandbox's tap, a virtio-serial port for
 * the guest channel, and the serial console into a file. KVM when a VM
 * with it really boots here, TCG otherwise. The kernel is Debian's
 * linux-image-cloud-amd64.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "base/base.h"
#include "log/log.h"
#include "runtime_int.h"

#define QEMU_BINARY "/usr/bin/qemu-system-x86_64"
#define KERNEL_GLOB_PREFIX "vmlinuz-"
#define KERNEL_FLAVOUR "-cloud-amd64"
#define KVM_PROBE_MS 3000
#define KVM_SIGN_OF_LIFE "Linux version"
/* TCG: a TSC frequency given up front spares the guest a calibration
 * against the PIT that takes seconds, or hangs, on a loaded host; the
 * translation cache is bounded so the VMM's memory is too. */
#define TCG_KERNEL_ARGS "tsc_early_khz=2000000 tsc=reliable lpj=4000000"
#define TCG_TB_SIZE_MB 32
#define KERNEL_ARGS "console=ttyS0 reboot=t panic=-1 pci=off quiet"

/* ---- string vectors ---- */

int hc_strv_add(struct hc_strv *s, const char *fmt, ...)
{
	va_list ap;
	char *str;
	int r;

	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	va_start(ap, fmt);
	r = vasprintf(&str, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
	return 0;
}

void hc_strv_fini(struct hc_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- QEMU microvm ---- */

/* Adds the option name and its formatted value. */
static int __attribute__((format(printf, 3, 4)))
opt(struct hc_strv *o, const char *name, const char *fmt, ...)
{
	va_list ap;
	char *value;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&value, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	r = hc_strv_add(o, "%s", name) | hc_strv_add(o, "%s", value);
	free(value);
	return r;
}

static int qemu_argv(const struct hc_vm_launch *l, struct hc_strv *o)
{
	int r = hc_strv_add(o, "%s", QEMU_BINARY);

	r |= opt(o, "-M", "microvm,rtc=on");
	if (l->kvm)
		r |= opt(o, "-accel", "kvm") | opt(o, "-cpu", "host");
	else
		r |= opt(o, "-accel", "tcg,tb-size=%d", TCG_TB_SIZE_MB);
	r |= opt(o, "-m", "%u", l->memory_mb) | opt(o, "-smp", "%u", l->cores);
	r |= hc_strv_add(o, "-nodefaults") | hc_strv_add(o, "-no-user-config") |
	     hc_strv_add(o, "-no-reboot") | opt(o, "-display", "none");
	r |= opt(o, "-kernel", "%s", l->kernel) | opt(o, "-initrd", "%s", l->initrd);
	r |= opt(o, "-append", "%s%s%s", KERNEL_ARGS, l->kvm ? "" : " ",
		 l->kvm ? "" : TCG_KERNEL_ARGS);
	r |= opt(o, "-serial", "file:%s", l->console);
	/* the cached image is shared: the VM writes to a throwaway overlay,
	 * or to nothing at all with a read-only root */
	r |= opt(o, "-drive", "id=root,file=%s,format=raw,if=none,%s", l->rootfs,
		 l->read_only ? "readonly=on" : "snapshot=on");
	r |= opt(o, "-device", "virtio-blk-device,drive=root");
	r |= opt(o, "-netdev", "tap,id=net0,ifname=%s,script=no,downscript=no", l->tap);
	r |= opt(o, "-device", "virtio-net-device,netdev=net0,mac=%s", l->mac);
	r |= opt(o, "-device", "virtio-serial-device");
	r |= opt(o, "-chardev", "socket,id=ctl,path=%s", l->ctl_sock);
	r |= opt(o, "-device", "virtserialport,chardev=ctl,name=hc.ctl");
	return r ? -ENOMEM : 0;
}

/* Reads the VM's console from fd until the kernel's first line or the
 * deadline. 1 seen, 0 not. */
static int console_shows_life(int fd, int timeout_ms)
{
	char buf[4096];
	size_t len = 0;
	struct timespec d;

	hc_deadline_in(&d, timeout_ms);
	while (hc_deadline_wait_fd(fd, POLLIN, &d) == 0) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n <= 0)
			return 0;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, KVM_SIGN_OF_LIFE))
			return 1;
		if (len > sizeof(buf) / 2) { /* keep the tail: the line may straddle */
			memmove(buf, buf + len - 64, 64);
			len = 64;
		}
	}
	return 0;
}

/* /dev/kvm can be there and still not run a guest (here: no usable
 * hardware virtualization, "failed to set MSR 0x10a", or a guest that
 * never leaves its decompressor): boot the kernel with KVM and wait for
 * its first console line. */
static int qemu_kvm_works(const char *kernel, char *why, size_t len)
{
	int out[2], status;
	pid_t pid;
	int ok;

	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		snprintf(why, len, "/dev/kvm: %s", strerror(errno));
		return 0;
	}
	if (pipe2(out, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(out[0]);
		close(out[1]);
		return -errno;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(out[1], 1);
		dup2(null, 2);
		execl(QEMU_BINARY, QEMU_BINARY, "-M", "microvm", "-accel", "kvm", "-cpu", "host",
		      "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
		      "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-append",
		      "console=ttyS0 panic=-1", (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	ok = console_shows_life(out[0], KVM_PROBE_MS);
	close(out[0]);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	if (!ok)
		snprintf(why, len, "a VM with KVM did not boot within %d ms", KVM_PROBE_MS);
	return ok;
}

const struct hc_vmm_ops hc_vmm_qemu_microvm = {
	.name = "qemu-microvm",
	.binary = QEMU_BINARY,
	.kvm_works = qemu_kvm_works,
	.argv = qemu_argv,
};

const struct hc_vmm_ops *hc_vm_vmm(void)
{
	return access(hc_vmm_qemu_microvm.binary, X_OK) == 0 ? &hc_vmm_qemu_microvm : NULL;
}

/* --vm-kernel; NULL: $HC_VM_KERNEL or /boot */
static const char *configured_kernel;

int hc_runtime_microvm_set_kernel(const char *path, char *why, size_t len)
{
	/* the modules are looked for by hc_runtime_microvm_check, which says
	 * what is missing where the node's capabilities are decided */
	if (access(path, R_OK) < 0) {
		snprintf(why, len, "--vm-kernel %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	configured_kernel = path;
	return 0;
}

int hc_vm_kernel(char *path, size_t plen, char *release, size_t rlen)
{
	const char *env = configured_kernel ? configured_kernel : getenv("HC_VM_KERNEL");
	char best[256] = "";
	struct dirent *e;
	DIR *d;

	if (env && env[0]) {
		const char *base = strrchr(env, '/');

		base = base ? base + 1 : env;
		snprintf(path, plen, "%s", env);
		snprintf(release, rlen, "%s",
			 strncmp(base, KERNEL_GLOB_PREFIX, 8) == 0 ? base + 8 : base);
		return access(path, R_OK) == 0 ? 0 : -ENOENT;
	}
	d = opendir("/boot");
	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name), f = strlen(KERNEL_FLAVOUR);

		if (strncmp(e->d_name, KERNEL_GLOB_PREFIX, 8) != 0 || n <= f ||
		    strcmp(e->d_name + n - f, KERNEL_FLAVOUR) != 0)
			continue;
		if (strverscmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	}
	if (d)
		closedir(d);
	if (!best[0])
		return -ENOENT;
	snprintf(path, plen, "/boot/%s", best);
	snprintf(release, rlen, "%s", best + 8);
	return 0;
}

static pthread_mutex_t kvm_lock = PTHREAD_MUTEX_INITIALIZER;
static int kvm_state = -1; /* -1 not known yet */
static char kvm_why[256];

#define BOOT_ID "/proc/sys/kernel/random/boot_id"
#define KVM_CACHE "kvm-probe"

/* The answer an earlier process of this boot wrote: "BOOTID 0|1 WHY". */
static void read_cached(const char *dir, const char *boot_id)
{
	char path[4200], text[512], id[64];
	size_t len;
	int state, off = 0;

	snprintf(path, sizeof(path), "%s/" KVM_CACHE, dir);
	if (hc_file_read_private(path, text, sizeof(text) - 1, &len) < 0)
		return;
	text[len] = '\0';
	if (sscanf(text, "%63s %d %n", id, &state, &off) == 2 && off > 0 &&
	    strcmp(id, boot_id) == 0 && (state == 0 || state == 1)) {
		kvm_state = state;
		snprintf(kvm_why, sizeof(kvm_why), "%.*s", (int)strcspn(text + off, "\n"),
			 text + off);
	}
}

static void write_cached(const char *dir, const char *boot_id)
{
	char path[4200], text[512];
	int n;

	snprintf(path, sizeof(path), "%s/" KVM_CACHE, dir);
	n = snprintf(text, sizeof(text), "%s %d %s\n", boot_id, kvm_state, kvm_why);
	if (hc_mkdir_p(dir, 0700) < 0 ||
	    hc_file_write_atomic(path, text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1,
				 0600) < 0)
		hc_log(HC_LOG_DEBUG, "cannot keep the KVM probe's answer in %s", path);
}

static void probe(const struct hc_vmm_ops *vmm, const char *kernel)
{
	kvm_state = vmm->kvm_works(kernel, kvm_why, sizeof(kvm_why)) > 0;
	if (kvm_state)
		snprintf(kvm_why, sizeof(kvm_why), "a VM with KVM booted");
	if (kvm_state)
		hc_log(HC_LOG_INFO, "microVMs run with KVM (%s)", vmm->name);
	else
		hc_log(HC_LOG_WARN, "KVM start failed (%s): microVMs fall back to TCG, much slower",
		       kvm_why);
}

/* This boot of the host, as the kernel names it; "" when unknown. */
static void read_boot_id(char *buf, size_t len)
{
	int fd = open(BOOT_ID, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

bool hc_vm_kvm(const char *cache_dir, const char *kernel)
{
	const struct hc_vmm_ops *vmm = hc_vm_vmm();
	char boot_id[64] = "";

	pthread_mutex_lock(&kvm_lock);
	if (kvm_state < 0 && vmm) {
		if (cache_dir)
			read_boot_id(boot_id, sizeof(boot_id));
		if (boot_id[0])
			read_cached(cache_dir, boot_id);
		if (kvm_state < 0) {
			probe(vmm, kernel);
			if (boot_id[0])
				write_cached(cache_dir, boot_id);
		}
	}
	pthread_mutex_unlock(&kvm_lock);
	return kvm_state > 0;
}

int hc_runtime_microvm_check(char *why, size_t len)
{
	char kernel[4096], release[256], modules[512];

	if (!hc_vm_vmm())
		return snprintf(why, len, "no VMM: %s is missing (apt-get install "
			       "qemu-system-x86)", hc_vmm_qemu_microvm.binary), -ENOTSUP;
	if (hc_vm_kernel(kernel, sizeof(kernel), release, sizeof(release)) < 0)
		return snprintf(why, len, "no guest kernel: no /boot/vmlinuz-*%s (apt-get install "
			       "linux-image-cloud-amd64), no --vm-kernel and no HC_VM_KERNEL", KERNEL_FLAVOUR),
		       -ENOTSUP;
	snprintf(modules, sizeof(modules), "/lib/modules/%s/modules.dep", release);
	if (access(modules, R_OK) < 0)
		return snprintf(why, len, "%s: %s (the guest's modules)", modules, strerror(errno)),
		       -ENOTSUP;
	snprintf(why, len, "%s, kernel %s", hc_vmm_qemu_microvm.name, release);
	return 0;
}

const char *hc_runtime_microvm_accel(char *why, size_t len)
{
	char kernel[4096], release[256];
	bool kvm;

	if (hc_vm_kernel(kernel, sizeof(kernel), release, sizeof(release)) < 0 || !hc_vm_vmm()) {
		snprintf(why, len, "no VMM or guest kernel");
		return "none";
	}
	kvm = hc_vm_kvm(NULL, kernel);
	pthread_mutex_lock(&kvm_lock);
	snprintf(why, len, "%s", kvm_why);
	pthread_mutex_unlock(&kvm_lock);
	return kvm ? "kvm" : "tcg";
}
