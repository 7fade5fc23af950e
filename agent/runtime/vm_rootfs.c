/*
 * A microVM's root filesystem: the same OCI image the container path pulls,
 * as containerd unpacked it. CRI's verbose ImageStatus names the image's
 * config (entrypoint, cmd, env, working dir, user) and the chain id of its
 * top layer; containerd's snapshots service gives a read-only view of that
 * layer and how to mount it; mke2fs -d copies the mounted tree into an ext4
 * file. The file is made once per image id, under <vm_root>/images, and
 * shared read-only by every VM of that image (each writes to an overlay of
 * its own).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HC_LOG_MODULE "runtime"
#include "base/base.h"
#include "log/log.h"
#include "runtime_int.h"
#include "snapshots.pb-c.h"

#define CRI_NAMESPACE "k8s.io"
#define SNAPSHOTTER "overlayfs"
#define SNAPSHOTS "/containerd.services.snapshots.v1.Snapshots/"
#define MKE2FS "/usr/sbin/mke2fs"
#define SLACK_MB 256 /* free space in the guest's root (sparse: costs nothing until used) */

static const struct hc_rpc_metadata cri_ns = { "containerd-namespace", CRI_NAMESPACE };

void hc_vm_image_fini(struct hc_vm_image *img)
{
	hc_strv_fini(&img->argv);
	hc_strv_fini(&img->env);
	free(img->workdir);
	free(img->user);
	memset(img, 0, sizeof(*img));
}

static int add_strings(struct hc_strv *v, json_t *arr)
{
	size_t i;
	json_t *s;

	json_array_foreach(arr, i, s)
		if (json_is_string(s) && hc_strv_add(v, "%s", json_string_value(s)) < 0)
			return -ENOMEM;
	return 0;
}

/* containerd 1.6's verbose answer: info["info"] = {"chainID": ...,
 * "imageSpec": {"config": {"Entrypoint", "Cmd", "Env", "WorkingDir",
 * "User"}}}. */
static int parse_info(const char *text, struct hc_vm_image *img, struct hc_err *err)
{
	json_t *root = json_loads(text, 0, NULL);
	json_t *cfg = json_object_get(json_object_get(root, "imageSpec"), "config");
	const char *chain = json_string_value(json_object_get(root, "chainID"));
	int r = 0;

	if (!root || !chain)
		r = hc_err_set(err, -EIO, "containerd's image status has no chain id");
	if (r == 0) {
		snprintf(img->chain_id, sizeof(img->chain_id), "%s", chain);
		if (add_strings(&img->argv, json_object_get(cfg, "Entrypoint")) < 0 ||
		    add_strings(&img->argv, json_object_get(cfg, "Cmd")) < 0 ||
		    add_strings(&img->env, json_object_get(cfg, "Env")) < 0 ||
		    !(img->workdir = strdup(json_string_value(json_object_get(cfg, "WorkingDir"))
						    ?: "")) ||
		    !(img->user = strdup(json_string_value(json_object_get(cfg, "User")) ?: "")))
			r = hc_err_set(err, -ENOMEM, "out of memory");
	}
	if (r == 0 && img->argv.n == 0)
		r = hc_err_set(err, -EINVAL, "the image names no command (no Entrypoint or Cmd)");
	json_decref(root);
	return r;
}

int hc_vm_image_info(struct hc_runtime *rt, const char *ref, struct hc_vm_image *img,
		     struct hc_err *err)
{
	Runtime__V1__ImageStatusRequest req = RUNTIME__V1__IMAGE_STATUS_REQUEST__INIT;
	Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
	Runtime__V1__ImageStatusResponse *resp = NULL;
	const char *info;
	int r;

	memset(img, 0, sizeof(*img));
	spec.image = (char *)ref;
	req.image = &spec;
	req.verbose = true;
	r = hc_cri_call(rt, "ImageService/ImageStatus", &req.base,
			&runtime__v1__image_status_response__descriptor, (ProtobufCMessage **)&resp,
			HC_CRI_TIMEOUT_MS, "image status", err);
	if (r < 0)
		return r;
	info = hc_cri_map_get(resp->info, resp->n_info, "info");
	if (!resp->image || !info)
		r = hc_err_set(err, -ENOENT, "image %s is not in containerd", ref);
	else
		r = parse_info(info, img, err);
	if (r == 0)
		snprintf(img->image_id, sizeof(img->image_id), "%s", resp->image->id);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (r < 0)
		hc_vm_image_fini(img);
	return r;
}

/* ---- the snapshot, mounted ---- */

static int snapshot_view(struct hc_runtime *rt, const char *key, const char *parent,
			 Containerd__Services__Snapshots__V1__ViewSnapshotResponse **resp,
			 struct hc_err *err)
{
	Containerd__Services__Snapshots__V1__ViewSnapshotRequest req =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__VIEW_SNAPSHOT_REQUEST__INIT;

	req.snapshotter = SNAPSHOTTER;
	req.key = (char *)key;
	req.parent = (char *)parent;
	return hc_containerd_call(rt, SNAPSHOTS "View", &cri_ns, 1, &req.base,
				  &containerd__services__snapshots__v1__view_snapshot_response__descriptor,
				  (ProtobufCMessage **)resp, HC_CRI_TIMEOUT_MS, "snapshot view", err);
}

static void snapshot_remove(struct hc_runtime *rt, const char *key)
{
	Containerd__Services__Snapshots__V1__RemoveSnapshotRequest req =
		CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	struct hc_err err;

	req.snapshotter = SNAPSHOTTER;
	req.key = (char *)key;
	if (hc_containerd_call(rt, SNAPSHOTS "Remove", &cri_ns, 1, &req.base,
			       &containerd__services__snapshots__v1__empty__descriptor, &resp,
			       HC_CRI_TIMEOUT_MS, "snapshot remove", &err) < 0)
		hc_log(HC_LOG_WARN, "%s", err.msg);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
}

/* mount(2) of a containerd Mount: "ro", "bind", "rbind" are flags, the
 * rest (overlay's lowerdir=...) the data. */
static int mount_snapshot(const Containerd__Services__Snapshots__V1__Mount *m, const char *dir,
			  struct hc_err *err)
{
	unsigned long flags = MS_RDONLY;
	char data[8192] = "";
	size_t len = 0;
	const char *type = m->type;

	for (size_t i = 0; i < m->n_options; i++) {
		const char *o = m->options[i];

		if (strcmp(o, "ro") == 0)
			flags |= MS_RDONLY;
		else if (strcmp(o, "bind") == 0 || strcmp(o, "rbind") == 0)
			flags |= MS_BIND | (o[0] == 'r' ? MS_REC : 0);
		else if (len + strlen(o) + 2 < sizeof(data))
			len += (size_t)snprintf(data + len, sizeof(data) - len, "%s%s", len ? "," : "", o);
		else
			return hc_err_set(err, -E2BIG, "the image's layers are too many to mount");
	}
	if (strcmp(type, "bind") == 0)
		flags |= MS_BIND;
	if (mount(m->source, dir, type, flags, data[0] ? data : NULL) < 0)
		return hc_err_set(err, -errno, "mounting the image's layers: %s", strerror(errno));
	/* a bind mount ignores MS_RDONLY until remounted */
	if ((flags & MS_BIND) && mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		hc_log(HC_LOG_WARN, "cannot make %s read-only: %s", dir, strerror(errno));
	return 0;
}

/* ---- ext4 ---- */

static uint64_t tree_bytes, tree_inodes;

static int count_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	tree_bytes += ((uint64_t)st->st_size + 4095) & ~4095ull;
	tree_inodes++;
	return 0;
}

static int run_mke2fs(const char *dir, const char *out, uint64_t size_mb, uint64_t inodes,
		      struct hc_err *err)
{
	char size[32], n[32];
	int status;
	pid_t pid;

	snprintf(size, sizeof(size), "%lluM", (unsigned long long)size_mb);
	snprintf(n, sizeof(n), "%llu", (unsigned long long)inodes);
	pid = fork();
	if (pid < 0)
		return hc_err_set(err, -errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		execl(MKE2FS, MKE2FS, "-q", "-F", "-t", "ext4", "-N", n, "-E",
		      "root_owner=0:0", "-d", dir, out, size, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return hc_err_set(err, -EIO, "%s -d %s failed (status %d)", MKE2FS, dir, status);
	return 0;
}

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;

/* The tree at dir into the ext4 file out, sized to it plus slack. */
static int make_ext4(const char *dir, const char *out, struct hc_err *err)
{
	uint64_t bytes, inodes;

	pthread_mutex_lock(&count_lock); /* nftw has no argument for its callback */
	tree_bytes = tree_inodes = 0;
	if (nftw(dir, count_entry, 32, FTW_PHYS | FTW_MOUNT) < 0) {
		pthread_mutex_unlock(&count_lock);
		return hc_err_set(err, -errno, "reading the image's files: %s", strerror(errno));
	}
	bytes = tree_bytes;
	inodes = tree_inodes;
	pthread_mutex_unlock(&count_lock);
	return run_mke2fs(dir, out, bytes / (1 << 20) * 5 / 4 + SLACK_MB, inodes * 2 + 4096, err);
}

/* The image's layers mounted on a fresh directory, turned into out. */
static int export_rootfs(struct hc_runtime *rt, const struct hc_vm_image *img, const char *images,
			 const char *out, struct hc_err *err)
{
	Containerd__Services__Snapshots__V1__ViewSnapshotResponse *view = NULL;
	char key[160], mnt[4096], tmp[4200];
	int r;

	snprintf(key, sizeof(key), "hypercore-vm-export-%d-%s", (int)getpid(), img->image_id);
	if (snprintf(mnt, sizeof(mnt), "%s/mnt.XXXXXX", images) >= (int)sizeof(mnt) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp", out) >= (int)sizeof(tmp))
		return hc_err_set(err, -ENAMETOOLONG, "%s: name too long", images);
	if (!mkdtemp(mnt))
		return hc_err_set(err, -errno, "%s: %s", mnt, strerror(errno));
	r = snapshot_view(rt, key, img->chain_id, &view, err);
	if (r == 0 && view->n_mounts != 1)
		r = hc_err_set(err, -EIO, "the image's snapshot has %zu mounts (want 1)",
			       view->n_mounts);
	if (r == 0)
		r = mount_snapshot(view->mounts[0], mnt, err);
	if (r == 0) {
		r = make_ext4(mnt, tmp, err);
		if (umount2(mnt, MNT_DETACH) < 0)
			hc_log(HC_LOG_WARN, "cannot unmount %s: %s", mnt, strerror(errno));
	}
	if (r == 0 && rename(tmp, out) < 0)
		r = hc_err_set(err, -errno, "%s: %s", out, strerror(errno));
	if (r < 0)
		unlink(tmp);
	if (view) {
		protobuf_c_message_free_unpacked(&view->base, NULL);
		snapshot_remove(rt, key);
	}
	rmdir(mnt);
	return r;
}

int hc_vm_rootfs(struct hc_runtime *rt, const struct hc_vm_image *img, char *path, size_t len,
		 struct hc_err *err)
{
	const char *hex = strchr(img->image_id, ':');
	char images[4096], lock[4200];
	int fd, r;

	hex = hex ? hex + 1 : img->image_id;
	if (!hex[0] || strspn(hex, "0123456789abcdef") != strlen(hex))
		return hc_err_set(err, -EINVAL, "unexpected image id \"%.80s\"", img->image_id);
	snprintf(images, sizeof(images), "%s/images", rt->vm_root);
	snprintf(lock, sizeof(lock), "%s/.lock", images);
	snprintf(path, len, "%s/%s.ext4", images, hex);
	r = hc_mkdir_p(images, 0700);
	if (r < 0)
		return hc_err_set(err, r, "%s: %s", images, strerror(-r));
	/* one export per image at a time: the second spawn waits, then finds it */
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		r = hc_err_set(err, -errno, "%s: %s", lock, strerror(errno));
		goto out;
	}
	if (access(path, R_OK) == 0)
		goto out;
	hc_log(HC_LOG_INFO, "making the root filesystem of image %s for microVMs", img->image_id);
	r = export_rootfs(rt, img, images, path, err);
out:
	if (fd >= 0)
		close(fd);
	return r;
}
