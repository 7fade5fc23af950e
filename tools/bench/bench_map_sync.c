/* Map sync benchmark: how long hc_dpmaps_sync takes to apply the desired
 * routes and node ports (a) from empty and (b) for a 1% change on top, against
 * the naive way a state sync could be written: rewrite every desired entry
 * one bpf() call at a time and delete the rest. Real maps, pinned in a
 * scratch bpffs directory removed at the end. Targets: (a) < 50 ms, (b) < 5 ms
 * for 10,000 entries. Prints both sides and the ratio. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/dataplane.h"
#include "hc_xdp.skel.h"

#define RUNS 5

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	(void)level, (void)fmt, (void)ap;
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fill(struct hc_dp_route *routes, struct hc_dp_service *services, size_t n,
		 uint16_t port_bump)
{
	for (size_t i = 0; i < n; i++) {
		char host[64];

		snprintf(host, sizeof(host), "%08zx-0000-4000-8000-000000000000", i);
		memset(&routes[i], 0, sizeof(routes[i]));
		hc_dp_route_key_init(&routes[i].key, host, 0);
		routes[i].val.backend.family = HC_AF_INET;
		routes[i].val.backend.ip4 = htonl(0x0a000000u + (uint32_t)i);
		routes[i].val.port = 8080;
		snprintf(routes[i].val.node, sizeof(routes[i].val.node), "node-%zu", i % 50);
		memset(&services[i], 0, sizeof(services[i]));
		services[i].key.port = (uint16_t)(1 + i);
		services[i].key.proto = IPPROTO_TCP;
		services[i].val.count = 1;
		services[i].val.backends[0].addr = routes[i].val.backend;
		services[i].val.backends[0].port = 80;
	}
	/* The 1% change: every 100th entry moves to another port. */
	for (size_t i = 0; port_bump && i < n; i += 100) {
		routes[i].val.port = (uint16_t)(8080 + port_bump);
		services[i].val.backends[0].port = (uint16_t)(80 + port_bump);
	}
}

/* Empties a map: keys first (deleting while walking restarts the walk). */
static void clear(int fd, size_t ksize)
{
	size_t cap = 1024, n = 0;
	char *keys = malloc(cap * ksize), *prev = NULL;

	while (keys && bpf_map_get_next_key(fd, prev, keys + n * ksize) == 0) {
		prev = keys + n * ksize;
		if (++n == cap) {
			char *k = realloc(keys, 2 * cap * ksize);

			if (!k)
				break;
			keys = k;
			cap *= 2;
			prev = keys + (n - 1) * ksize;
		}
	}
	for (size_t i = 0; keys && i < n; i++)
		bpf_map_delete_elem(fd, keys + i * ksize);
	free(keys);
}

/* The naive sync: one update per desired entry, one delete per stale one. */
static int naive_sync(int routes_fd, int services_fd, const struct hc_dp_desired *want)
{
	for (size_t i = 0; i < want->n_routes; i++)
		if (bpf_map_update_elem(routes_fd, &want->routes[i].key, &want->routes[i].val, BPF_ANY))
			return -errno;
	for (size_t i = 0; i < want->n_services; i++)
		if (bpf_map_update_elem(services_fd, &want->services[i].key, &want->services[i].val,
					BPF_ANY))
			return -errno;
	/* Nothing is stale in this benchmark, but finding that out is part of
	 * the work: walk both maps looking each key up in the desired set. */
	{
		struct hc_route_key k, *prev = NULL;
		size_t seen = 0;

		while (bpf_map_get_next_key(routes_fd, prev, &k) == 0) {
			prev = &k;
			seen++;
		}
		if (seen != want->n_routes)
			return -EIO;
	}
	return 0;
}

struct figures {
	double full_ms, diff_ms;
};

static int median_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), median_cmp);
	return v[n / 2];
}

/* One size: n routes and n node ports. Returns 0, or 1 on a failure. */
static int bench(size_t n)
{
	char pin_dir[128];
	struct hc_err err;
	struct hc_xdp *skel;
	struct hc_dpmaps *maps;
	struct hc_dp_route *routes = calloc(n, sizeof(*routes));
	struct hc_dp_service *services = calloc(n, sizeof(*services));
	struct hc_dp_desired want = {routes, n, services, n};
	double hc_full[RUNS], hc_diff[RUNS], nv_full[RUNS], nv_diff[RUNS];
	struct figures hc, nv;
	int routes_fd, services_fd, rc = 1;
	char path[256];

	if (!routes || !services) {
		free(routes);
		free(services);
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	libbpf_set_print(quiet);
	snprintf(pin_dir, sizeof(pin_dir), "/sys/fs/bpf/hc-bench-sync-%d", (int)getpid());
	if (mkdir(pin_dir, 0700) < 0) {
		perror(pin_dir);
		return 1;
	}
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_dir);
	skel = hc_xdp__open_opts(&opts);
	if (!skel || hc_xdp__load(skel)) {
		fprintf(stderr, "cannot load the XDP object (root and bpffs needed)\n");
		goto out;
	}
	maps = hc_dpmaps_open(pin_dir, &err);
	if (!maps) {
		fprintf(stderr, "%s\n", err.msg);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s", pin_dir, HC_MAP_ROUTES);
	routes_fd = bpf_obj_get(path);
	snprintf(path, sizeof(path), "%s/%s", pin_dir, HC_MAP_SERVICES);
	services_fd = bpf_obj_get(path);

	for (int r = 0; r < RUNS; r++) {
		struct hc_dp_sync_report rep;
		double t;

		clear(routes_fd, sizeof(struct hc_route_key));
		clear(services_fd, sizeof(struct hc_service_key));
		fill(routes, services, n, 0);
		/* A new agent: its first sync reads what the maps hold. */
		hc_dpmaps_close(maps);
		maps = hc_dpmaps_open(pin_dir, &err);
		if (!maps)
			goto out_maps;
		t = now_ms();
		if (hc_dpmaps_sync(maps, &want, &rep) || rep.routes.added != n)
			goto out_maps;
		hc_full[r] = now_ms() - t;
		fill(routes, services, n, (uint16_t)(r + 1));
		t = now_ms();
		if (hc_dpmaps_sync(maps, &want, &rep))
			goto out_maps;
		hc_diff[r] = now_ms() - t;
		if (rep.routes.updated != (n + 99) / 100 || rep.services.updated != (n + 99) / 100) {
			fprintf(stderr, "the diff touched %zu/%zu entries, expected %zu\n",
				rep.routes.updated, rep.services.updated, (n + 99) / 100);
			goto out_maps;
		}

		clear(routes_fd, sizeof(struct hc_route_key));
		clear(services_fd, sizeof(struct hc_service_key));
		fill(routes, services, n, 0);
		t = now_ms();
		if (naive_sync(routes_fd, services_fd, &want))
			goto out_maps;
		nv_full[r] = now_ms() - t;
		fill(routes, services, n, (uint16_t)(r + 1));
		t = now_ms();
		if (naive_sync(routes_fd, services_fd, &want))
			goto out_maps;
		nv_diff[r] = now_ms() - t;
	}
	hc.full_ms = median(hc_full, RUNS);
	hc.diff_ms = median(hc_diff, RUNS);
	nv.full_ms = median(nv_full, RUNS);
	nv.diff_ms = median(nv_diff, RUNS);
	printf("map sync: %zu routes + %zu node ports = %zu entries, median of %d runs\n", n, n,
	       2 * n, RUNS);
	printf("  %-34s %12s %14s\n", "", "from empty", "1% change");
	printf("  %-34s %9.2f ms %11.2f ms\n", "hypercore (read, diff, batch ops)", hc.full_ms,
	       hc.diff_ms);
	printf("  %-34s %9.2f ms %11.2f ms\n", "naive (rewrite all, one by one)", nv.full_ms,
	       nv.diff_ms);
	printf("  %-34s %11.2fx %13.2fx\n", "ratio naive/hypercore", nv.full_ms / hc.full_ms,
	       nv.diff_ms / hc.diff_ms);
	printf("  targets: from empty < 50 ms (%s), 1%% change < 5 ms (%s)\n",
	       hc.full_ms < 50 ? "met" : "MISSED", hc.diff_ms < 5 ? "met" : "MISSED");
	rc = 0;
out_maps:
	close(routes_fd);
	close(services_fd);
	hc_dpmaps_close(maps);
out:
	hc_xdp__destroy(skel);
	hc_dataplane_cleanup(pin_dir, NULL, NULL);
	free(routes);
	free(services);
	return rc;
}

/* The size, 10,000 entries (half routes, half node ports), then twice
 * that; or the given number of each kind. */
int main(int argc, char **argv)
{
	unsigned long n;
	char *end;

	if (argc > 2 || (argc == 2 && (errno = 0, n = strtoul(argv[1], &end, 10),
				       errno || *end || n == 0 || n > 30000))) {
		fprintf(stderr, "usage: bench_map_sync [ENTRIES_PER_KIND (1..30000)]\n");
		return 2;
	}
	if (argc == 2)
		return bench(n);
	return bench(5000) || bench(10000);
}
