/*
 * `hypercore cluster top`: the cluster at a glance, refreshed every second.
 * Each refresh asks one agent for /members (status, round trip) and /list
 * (nodes, workloads, where each node's HTTP API is), then reads /metrics of
 * at most --max-nodes nodes (capacity, restarts, the proxy's per-host and
 * BPF's per-workload counters): 2 + N requests, over the same token as every
 * client verb. Rates are the difference of two refreshes' counters.
 *
 * On a terminal it draws with plain ANSI escapes in the alternate screen and
 * reads single keys; the terminal's mode is restored on q, ^C, SIGTERM,
 * SIGHUP and on every error. Elsewhere (or with --once) it prints frames
 * as text.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define TOP_ROUTES 10 /* the busiest routes shown */

enum top_sort { SORT_NAME, SORT_CPU, SORT_MEM, SORT_RATE, SORT_BYTES };
static const char *const sort_names[] = { "name", "cpu", "memory", "req/s", "bytes/s" };

struct top_args {
	const char *addr;
	int timeout_ms, interval_ms;
	unsigned long max_nodes;
	bool once;
};

#define A struct top_args
const struct hc_cli_opt hc_cli_opts_cluster_top[] = {
	HC_CLI_HTTP_ADDR(A, addr),
	HC_CLI_FUNC("interval", A, interval_ms, hc_cli_opt_seconds, NULL, "SECONDS",
		    "refresh every SECONDS (default 1)"),
	HC_CLI_FLAG("once", A, once,
		    "print one frame (rates over one interval) as text and exit"),
	HC_CLI_UINT("max-nodes", A, max_nodes, 1, 256, "1..256", "N",
		    "read /metrics of at most N nodes per refresh (default 16)"),
	HC_CLI_TIMEOUT(A, timeout_ms, "give up on one request after this long (default 2)"),
	HC_CLI_AUTH_ROWS,
	{ .name = NULL },
};
#undef A

/* ---- one refresh's figures ---- */

struct top_node {
	char *name, *status, *host; /* host: where its HTTP API is, "IP:PORT" */
	double rtt_ms;              /* NAN: not probed yet */
	unsigned workloads, cores, mem_mb; /* what its workloads asked for */
	double cpu_total, cpu_used, mem_total, mem_used; /* NAN: no runtime figures */
	double restarts;                                 /* NAN: not read */
	bool scraped;
};

struct top_wl {
	char *id, *node, *image, *restart;
	unsigned cores, mem_mb;
	double req_rate, byte_rate, net_rate; /* NAN until two refreshes */
	double restarts;                      /* NAN: no node said */
};

/* Counters summed over the nodes read, by route host or workload id. */
struct top_counter {
	char *key;
	double reqs, bytes, net;
	double req_rate, byte_rate, net_rate;
	double restarts; /* a workload's, from its node; NAN: none read */
};

struct top_frame {
	struct timespec at;
	struct top_node *nodes;
	size_t nnodes;
	struct top_wl *wls;
	size_t nwls;
	struct top_counter *counters;
	size_t ncounters;
	char error[640]; /* what went wrong this refresh, "" if nothing */
};

static void frame_fini(struct top_frame *f)
{
	for (size_t i = 0; i < f->nnodes; i++) {
		free(f->nodes[i].name);
		free(f->nodes[i].status);
		free(f->nodes[i].host);
	}
	for (size_t i = 0; i < f->nwls; i++) {
		free(f->wls[i].id);
		free(f->wls[i].node);
		free(f->wls[i].image);
		free(f->wls[i].restart);
	}
	for (size_t i = 0; i < f->ncounters; i++)
		free(f->counters[i].key);
	free(f->nodes);
	free(f->wls);
	free(f->counters);
	memset(f, 0, sizeof(*f));
}

/* Grows *arr (of n elements of size) by one zeroed element; NULL on ENOMEM. */
static void *grow(void *arr, size_t *n, size_t size)
{
	char *bigger = realloc(*(void **)arr, (*n + 1) * size);

	if (!bigger)
		return NULL;
	*(void **)arr = bigger;
	memset(bigger + *n * size, 0, size);
	return bigger + (*n)++ * size;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static struct top_counter *counter_of(struct top_frame *f, const char *key)
{
	struct top_counter *c;

	for (size_t i = 0; i < f->ncounters; i++)
		if (strcmp(f->counters[i].key, key) == 0)
			return &f->counters[i];
	c = grow(&f->counters, &f->ncounters, sizeof(*c));
	if (!c)
		return NULL;
	c->key = strdup(key);
	if (!c->key) {
		f->ncounters--;
		return NULL;
	}
	c->req_rate = c->byte_rate = c->net_rate = c->restarts = NAN;
	return c;
}

/* ---- fetching ---- */

/* GET path from addr: the "response" member of its JSON (json_decref *doc),
 * or NULL with the reason in f->error. */
static json_t *get_json(struct top_frame *f, const char *addr, const char *path, int timeout_ms,
			json_t **doc)
{
	struct hc_err err;
	char *body = NULL;
	size_t len = 0;
	int status = 0;
	json_t *resp;

	*doc = NULL;
	if (hc_cli_http(addr, "GET", path, NULL, 0, timeout_ms, &status, &body, &len, &err) < 0) {
		snprintf(f->error, sizeof(f->error), "%s", err.msg);
		return NULL;
	}
	*doc = json_loadb(body, len, 0, NULL);
	free(body);
	resp = json_object_get(*doc, "response");
	if (status == 200 && resp)
		return resp;
	snprintf(f->error, sizeof(f->error), "%s %s: HTTP %d%s%s", addr, path, status,
		 status == 401 ? "; " : "", status == 401 ? hc_cli_token_hint() : "");
	json_decref(*doc);
	*doc = NULL;
	return NULL;
}

static int add_workload(struct top_frame *f, struct top_node *n, json_t *w)
{
	json_t *req = json_object_get(w, "source_request");
	const char *restart = json_string_value(json_object_get(req, "restart"));
	struct top_wl *wl = grow(&f->wls, &f->nwls, sizeof(*wl));

	if (!wl)
		return -ENOMEM;
	wl->id = dup_or_empty(json_string_value(json_object_get(w, "id")));
	wl->node = dup_or_empty(n->name);
	wl->image = dup_or_empty(json_string_value(json_object_get(req, "image_ref")));
	/* upstream nodes say nothing: they always bring it back */
	wl->restart = dup_or_empty(restart && *restart ? restart : "always");
	wl->cores = (unsigned)json_integer_value(json_object_get(req, "cores"));
	wl->mem_mb = (unsigned)json_integer_value(json_object_get(req, "memory"));
	wl->req_rate = wl->byte_rate = wl->net_rate = wl->restarts = NAN;
	n->workloads++;
	n->cores += wl->cores;
	n->mem_mb += wl->mem_mb;
	return wl->id && wl->node && wl->image && wl->restart ? 0 : -ENOMEM;
}

/* One node of /list's answer into f. */
static int add_node(struct top_frame *f, json_t *st)
{
	const char *addr = json_string_value(json_object_get(st, "node_addr"));
	json_int_t port = json_integer_value(json_object_get(st, "http_port"));
	json_t *ws = json_object_get(st, "workloads"), *w;
	struct top_node *n = grow(&f->nodes, &f->nnodes, sizeof(*n));
	char host[96] = "";
	size_t i;

	if (!n)
		return -ENOMEM;
	n->rtt_ms = n->cpu_total = n->cpu_used = n->mem_total = n->mem_used = n->restarts = NAN;
	n->name = dup_or_empty(json_string_value(json_object_get(json_object_get(st, "node"), "id")));
	n->status = strdup("-");
	/* an upstream node announces no address: its gossip IP, port 8001 */
	if (!addr || !*addr)
		addr = json_string_value(json_object_get(json_object_get(st, "node"), "ip"));
	if (addr && *addr)
		snprintf(host, sizeof(host), strchr(addr, ':') ? "[%s]:%lld" : "%s:%lld", addr,
			 port > 0 && port < 65536 ? (long long)port : 8001LL);
	n->host = strdup(host);
	if (!n->name || !n->status || !n->host)
		return -ENOMEM;
	json_array_foreach(ws, i, w)
		if (add_workload(f, n, w) < 0)
			return -ENOMEM;
	return 0;
}

static void add_members(struct top_frame *f, json_t *members)
{
	json_t *m;
	size_t i;

	json_array_foreach(members, i, m) {
		const char *name = json_string_value(json_object_get(m, "name"));
		const char *status = json_string_value(json_object_get(m, "status"));
		json_t *rtt = json_object_get(m, "rtt_ms");

		for (size_t k = 0; name && status && k < f->nnodes; k++) {
			char *s;

			if (strcmp(f->nodes[k].name, name) != 0 || !(s = strdup(status)))
				continue;
			free(f->nodes[k].status);
			f->nodes[k].status = s;
			if (json_is_number(rtt))
				f->nodes[k].rtt_ms = json_number_value(rtt);
		}
	}
}

struct scrape {
	struct top_frame *f;
	struct top_node *n;
};

static void add_to(double *field, double v)
{
	*field = isnan(*field) ? v : *field + v;
}

/* One sample of a node's /metrics: what top shows, the rest ignored. */
static int take_sample(const struct hc_prom_sample *s, void *arg)
{
	struct scrape *sc = arg;
	const char *kind = hc_prom_label(s, "kind");
	const char *host = hc_prom_label(s, "host"), *wl = hc_prom_label(s, "workload");
	struct top_counter *c;

	if (strcmp(s->name, "hypercore_capacity_vcpus") == 0 && kind)
		add_to(strcmp(kind, "used") == 0 ? &sc->n->cpu_used : &sc->n->cpu_total, s->value);
	else if (strcmp(s->name, "hypercore_capacity_memory_bytes") == 0 && kind)
		add_to(strcmp(kind, "used") == 0 ? &sc->n->mem_used : &sc->n->mem_total,
		       s->value / 1048576.0);
	else if (strcmp(s->name, "hypercore_restarts_total") == 0)
		sc->n->restarts = s->value;
	else if (strcmp(s->name, "hypercore_proxy_workload_requests_total") == 0 && host)
		return (c = counter_of(sc->f, host)) ? (c->reqs += s->value, 0) : -ENOMEM;
	else if (strcmp(s->name, "hypercore_workload_restarts_total") == 0 && wl)
		return (c = counter_of(sc->f, wl)) ? (add_to(&c->restarts, s->value), 0) : -ENOMEM;
	else if (strcmp(s->name, "hypercore_proxy_workload_bytes_total") == 0 && host)
		return (c = counter_of(sc->f, host)) ? (c->bytes += s->value, 0) : -ENOMEM;
	else if (strcmp(s->name, "hypercore_workload_network_bytes_total") == 0 && wl)
		return (c = counter_of(sc->f, wl)) ? (c->net += s->value, 0) : -ENOMEM;
	return 0;
}

static int scrape_node(struct top_frame *f, struct top_node *n, int timeout_ms)
{
	struct scrape sc = { f, n };
	struct hc_err err;
	char *body = NULL;
	size_t len = 0;
	int status = 0, r;

	if (!*n->host)
		return 0;
	r = hc_cli_http(n->host, "GET", "/metrics", NULL, 0, timeout_ms, &status, &body, &len,
			&err);
	if (r < 0 || status != 200) {
		snprintf(f->error, sizeof(f->error), "%.100s: %.500s", n->name,
			 r < 0 ? err.msg : "/metrics refused");
		free(body);
		return 0; /* one node's figures missing is shown, not fatal */
	}
	r = hc_prom_parse(body, len, take_sample, &sc);
	free(body);
	if (r == -ENOMEM)
		return r;
	n->scraped = r == 0;
	if (r < 0)
		snprintf(f->error, sizeof(f->error), "%s: unreadable /metrics", n->name);
	return 0;
}

/* One refresh into f (zeroed). 0, -EIO when the agent asked gave no
 * list (reason in f->error), -ENOMEM. */
static int fetch(const struct top_args *a, struct top_frame *f)
{
	json_t *doc = NULL, *list, *st;
	size_t i;
	int r = 0;

	clock_gettime(CLOCK_MONOTONIC, &f->at);
	list = get_json(f, a->addr, "/list", a->timeout_ms, &doc);
	if (!list)
		return -EIO;
	json_array_foreach(json_object_get(list, "states"), i, st)
		if ((r = add_node(f, st)) < 0)
			break;
	json_decref(doc);
	if (r < 0)
		return r;
	list = get_json(f, a->addr, "/members", a->timeout_ms, &doc);
	if (list)
		add_members(f, list);
	json_decref(doc);
	for (i = 0; i < f->nnodes && i < a->max_nodes; i++)
		if ((r = scrape_node(f, &f->nodes[i], a->timeout_ms)) < 0)
			return r;
	if (f->nnodes > a->max_nodes && !*f->error)
		snprintf(f->error, sizeof(f->error), "figures of the first %lu nodes only (--max-nodes)",
			 a->max_nodes);
	return 0;
}

/* ---- rates ---- */

static double rate(double now, double before, double secs)
{
	/* a counter that went back is a restarted agent: no rate this time */
	return now >= before && secs > 0 ? (now - before) / secs : NAN;
}

static void compute_rates(struct top_frame *now, const struct top_frame *prev)
{
	double secs = (double)(now->at.tv_sec - prev->at.tv_sec) +
		      (double)(now->at.tv_nsec - prev->at.tv_nsec) / 1e9;

	for (size_t i = 0; i < now->ncounters; i++) {
		struct top_counter *c = &now->counters[i];

		for (size_t k = 0; k < prev->ncounters; k++) {
			const struct top_counter *p = &prev->counters[k];

			if (strcmp(p->key, c->key) != 0)
				continue;
			c->req_rate = rate(c->reqs, p->reqs, secs);
			c->byte_rate = rate(c->bytes, p->bytes, secs);
			c->net_rate = rate(c->net, p->net, secs);
		}
	}
	for (size_t i = 0; i < now->nwls; i++)
		for (size_t k = 0; k < now->ncounters; k++)
			if (strcmp(now->counters[k].key, now->wls[i].id) == 0) {
				now->wls[i].req_rate = now->counters[k].req_rate;
				now->wls[i].restarts = now->counters[k].restarts;
				now->wls[i].byte_rate = now->counters[k].byte_rate;
				now->wls[i].net_rate = now->counters[k].net_rate;
			}
}

/* ---- drawing ---- */

/* "12.3k"-style figures; "-" for NAN. */
static const char *human(double v, const char *unit, char *buf, size_t len)
{
	static const char *const prefix[] = { "", "k", "M", "G", "T" };
	unsigned p = 0;

	if (isnan(v))
		return "-";
	while (v >= 1000 && p < 4) {
		v /= 1000;
		p++;
	}
	snprintf(buf, len, p == 0 && v == floor(v) ? "%.0f%s%s" : "%.1f%s%s", v, prefix[p], unit);
	return buf;
}

static const char *used_of(double used, double total, unsigned asked, char *buf, size_t len)
{
	if (isnan(total))
		snprintf(buf, len, "%u", asked); /* no runtime: what workloads asked for */
	else
		snprintf(buf, len, "%.0f/%.0f", isnan(used) ? 0 : used, total);
	return buf;
}

static enum top_sort sort_mode;

static double wl_key(const struct top_wl *w)
{
	switch (sort_mode) {
	case SORT_CPU: return w->cores;
	case SORT_MEM: return w->mem_mb;
	case SORT_RATE: return isnan(w->req_rate) ? -1 : w->req_rate;
	case SORT_BYTES: return isnan(w->byte_rate) ? -1 : w->byte_rate + (isnan(w->net_rate) ? 0 : w->net_rate);
	default: return 0;
	}
}

static int cmp_wl(const void *a, const void *b)
{
	const struct top_wl *x = a, *y = b;
	double kx = wl_key(x), ky = wl_key(y);

	if (kx != ky)
		return kx > ky ? -1 : 1; /* biggest first */
	return strcmp(x->id, y->id);
}

static double node_key(const struct top_node *n)
{
	switch (sort_mode) {
	case SORT_CPU: return isnan(n->cpu_used) ? n->cores : n->cpu_used;
	case SORT_MEM: return isnan(n->mem_used) ? n->mem_mb : n->mem_used;
	case SORT_RATE:
	case SORT_BYTES: return n->workloads;
	default: return 0;
	}
}

static int cmp_node(const void *a, const void *b)
{
	const struct top_node *x = a, *y = b;
	double kx = node_key(x), ky = node_key(y);

	if (kx != ky)
		return kx > ky ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_route(const void *a, const void *b)
{
	const struct top_counter *x = *(struct top_counter *const *)a;
	const struct top_counter *y = *(struct top_counter *const *)b;
	double kx = isnan(x->req_rate) ? -1 : x->req_rate, ky = isnan(y->req_rate) ? -1 : y->req_rate;

	if (kx == ky) {
		kx = isnan(x->byte_rate) ? -1 : x->byte_rate;
		ky = isnan(y->byte_rate) ? -1 : y->byte_rate;
	}
	if (kx != ky)
		return kx > ky ? -1 : 1;
	return strcmp(x->key, y->key);
}

static int draw_nodes(struct top_frame *f, FILE *out)
{
	static const char *const hdr[] = { "NODE", "API", "STATUS", "RTT(ms)", "WORKLOADS",
					   "CPU", "MEM(MiB)", "RESTARTS" };
	struct hc_cli_table *t = hc_cli_table_new(8, hdr);
	int r = t ? 0 : -ENOMEM;

	qsort(f->nodes, f->nnodes, sizeof(*f->nodes), cmp_node);
	for (size_t i = 0; t && i < f->nnodes; i++) {
		const struct top_node *n = &f->nodes[i];
		char rtt[32] = "", count[16], cpu[32], mem[48], restarts[32];

		if (!isnan(n->rtt_ms))
			snprintf(rtt, sizeof(rtt), "%.2f", n->rtt_ms);
		snprintf(count, sizeof(count), "%u", n->workloads);
		r |= hc_cli_table_add(t, (const char *const[]){
			n->name, n->host, n->status, rtt, count,
			used_of(n->cpu_used, n->cpu_total, n->cores, cpu, sizeof(cpu)),
			used_of(n->mem_used, n->mem_total, n->mem_mb, mem, sizeof(mem)),
			human(n->restarts, "", restarts, sizeof(restarts)) });
	}
	if (r == 0)
		hc_cli_table_print(t, out);
	hc_cli_table_free(t);
	return r ? -ENOMEM : 0;
}

static int draw_workloads(struct top_frame *f, FILE *out)
{
	static const char *const hdr[] = { "WORKLOAD", "NODE", "IMAGE", "CPU", "MEM(MiB)",
					   "REQ/s", "PROXY B/s", "NET B/s", "RESTARTS", "POLICY" };
	struct hc_cli_table *t;
	int r = 0;

	if (f->nwls == 0)
		return 0;
	t = hc_cli_table_new(10, hdr);
	if (!t)
		return -ENOMEM;
	qsort(f->wls, f->nwls, sizeof(*f->wls), cmp_wl);
	for (size_t i = 0; i < f->nwls; i++) {
		const struct top_wl *w = &f->wls[i];
		char cpu[16], mem[16], req[32], bytes[32], net[32], restarts[32];

		snprintf(cpu, sizeof(cpu), "%u", w->cores);
		snprintf(mem, sizeof(mem), "%u", w->mem_mb);
		r |= hc_cli_table_add(t, (const char *const[]){
			w->id, w->node, w->image, cpu, mem,
			human(w->req_rate, "", req, sizeof(req)),
			human(w->byte_rate, "B", bytes, sizeof(bytes)),
			human(w->net_rate, "B", net, sizeof(net)),
			human(w->restarts, "", restarts, sizeof(restarts)), w->restart });
	}
	fputc('\n', out);
	if (r == 0)
		hc_cli_table_print(t, out);
	hc_cli_table_free(t);
	return r ? -ENOMEM : 0;
}

/* The busiest route hosts by requests per second across the nodes read. */
static int draw_routes(struct top_frame *f, FILE *out)
{
	static const char *const hdr[] = { "ROUTE", "REQ/s", "PROXY B/s" };
	struct top_counter **order;
	struct hc_cli_table *t;
	size_t n = 0;
	int r = 0;

	order = calloc(f->ncounters + 1, sizeof(*order));
	t = hc_cli_table_new(3, hdr);
	if (!order || !t) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < f->ncounters; i++)
		if (f->counters[i].reqs > 0 || f->counters[i].bytes > 0)
			order[n++] = &f->counters[i]; /* proxied: a route, not only a workload */
	qsort(order, n, sizeof(*order), cmp_route);
	for (size_t i = 0; i < n && i < TOP_ROUTES; i++) {
		char req[32], bytes[32];

		r |= hc_cli_table_add(t, (const char *const[]){
			order[i]->key, human(order[i]->req_rate, "", req, sizeof(req)),
			human(order[i]->byte_rate, "B", bytes, sizeof(bytes)) });
	}
	if (r == 0 && n) {
		fputc('\n', out);
		hc_cli_table_print(t, out);
	}
out:
	hc_cli_table_free(t);
	free(order);
	return r ? -ENOMEM : 0;
}

/* The whole frame as text (free *text). 0 or -ENOMEM. */
static int draw(const struct top_args *a, struct top_frame *f, bool keys, char **text,
		size_t *len)
{
	FILE *out = open_memstream(text, len);
	char clock[16];
	time_t now = time(NULL);
	struct tm tm;
	int r;

	if (!out)
		return -ENOMEM;
	strftime(clock, sizeof(clock), "%H:%M:%S", localtime_r(&now, &tm));
	fprintf(out, "hypercore cluster top  %s  %zu nodes, %zu workloads  %s  sort: %s%s\n",
		a->addr, f->nnodes, f->nwls, clock, sort_names[sort_mode],
		keys ? "  (n c m r b: sort, q: quit)" : "");
	fprintf(out, "%s%s\n\n", *f->error ? "! " : "", f->error);
	r = draw_nodes(f, out);
	if (r == 0)
		r = draw_workloads(f, out);
	if (r == 0)
		r = draw_routes(f, out);
	if (fclose(out) != 0 && r == 0)
		r = -ENOMEM;
	if (r < 0) {
		free(*text);
		*text = NULL;
	}
	return r;
}

/* ---- the terminal ---- */

static struct termios saved_tio;
static bool tio_saved;
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

/* Back to the terminal as we found it; safe to call more than once. */
static void restore_terminal(void)
{
	static const char leave[] = "\033[?25h\033[?1049l";

	if (!tio_saved)
		return;
	tio_saved = false;
	if (write(STDOUT_FILENO, leave, sizeof(leave) - 1) < 0) {
		/* nothing left to tell it with */
	}
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
}

/* Keys without Enter or echo, in the alternate screen. ISIG stays on: ^C
 * comes as SIGINT, which ends the loop like q. 0 or -errno. */
static int enter_terminal(void)
{
	static const char enter[] = "\033[?1049h\033[?25l";
	struct termios raw;

	if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return -errno;
	raw = saved_tio;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
		return -errno;
	tio_saved = true;
	atexit(restore_terminal);
	if (write(STDOUT_FILENO, enter, sizeof(enter) - 1) < 0) {
		int e = -errno;

		restore_terminal();
		return e;
	}
	return 0;
}

static int catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: poll returns */
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };

	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return -errno;
	return 0;
}

/* Writes text over the screen: each line cleared to its end and cut at the
 * terminal's width, so a shorter frame leaves nothing of the last one. */
static void paint(const char *text, size_t len)
{
	struct winsize ws = { 0 };
	size_t cols = 0, rows = 0, row = 0;
	FILE *out = stdout;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
		cols = ws.ws_col;
		rows = ws.ws_row;
	}
	fputs("\033[H", out);
	for (size_t at = 0; at < len && (!rows || row + 1 < rows); row++) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = (nl ? (size_t)(nl - text) : len) - at;

		fwrite(text + at, 1, cols && n > cols ? cols : n, out);
		fputs("\033[K\n", out);
		at += n + 1;
	}
	fputs("\033[J", out);
	fflush(out);
}

/* Waits up to ms for keys; applies sort keys. 1 when q was pressed. */
static int read_keys(int ms)
{
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
	char keys[16];
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return 0; /* timeout, or a signal: the loop looks at stop_signal */
	n = read(STDIN_FILENO, keys, sizeof(keys));
	for (ssize_t i = 0; i < n; i++) {
		switch (keys[i]) {
		case 'q': case 'Q': return 1;
		case 'n': sort_mode = SORT_NAME; break;
		case 'c': sort_mode = SORT_CPU; break;
		case 'm': sort_mode = SORT_MEM; break;
		case 'r': sort_mode = SORT_RATE; break;
		case 'b': sort_mode = SORT_BYTES; break;
		default: break;
		}
	}
	return n > 0 ? 2 : 0; /* 2: redraw now */
}

static long ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Reads keys until interval_ms after since, a signal, or a key that
 * needs a redraw (2) or quits (1); 0 when the time is up. */
static int wait_keys(int interval_ms, const struct timespec *since)
{
	long left;
	int key = 0;

	while (!stop_signal && key == 0 && (left = interval_ms - ms_since(since)) > 0)
		key = read_keys((int)left);
	return key;
}

static void sleep_interval(const struct top_args *a)
{
	struct timespec d = { a->interval_ms / 1000, (a->interval_ms % 1000) * 1000000L };

	nanosleep(&d, NULL); /* a signal cuts it short: the loop looks */
}

/* Draws f over the screen (tty) or prints it as text. 0 or -ENOMEM. */
static int show(const struct top_args *a, struct top_frame *f, bool tty)
{
	char *text = NULL;
	size_t len = 0;
	int r = draw(a, f, tty, &text, &len);

	if (r < 0)
		return r;
	if (tty) {
		paint(text, len);
	} else {
		fwrite(text, 1, len, stdout);
		putchar('\n');
		fflush(stdout);
	}
	free(text);
	return 0;
}

/* The live view until q or a signal. Exit status. */
static int run_live(const struct top_args *a, bool tty)
{
	struct top_frame prev = { 0 }, cur = { 0 };
	int r = 0, key = 0;

	if (tty && (r = enter_terminal()) < 0)
		return hc_cli_fail("cannot set up the terminal: %s", strerror(-r));
	while (!stop_signal && key != 1 && r == 0) {
		frame_fini(&prev);
		prev = cur;
		memset(&cur, 0, sizeof(cur));
		if (fetch(a, &cur) == -ENOMEM) {
			r = -ENOMEM;
			break;
		}
		if (prev.at.tv_sec)
			compute_rates(&cur, &prev);
		/* a sort key redraws the same figures at once */
		do {
			r = show(a, &cur, tty);
			if (r == 0 && tty)
				key = wait_keys(a->interval_ms, &cur.at);
			else if (r == 0)
				sleep_interval(a);
		} while (r == 0 && key == 2 && !stop_signal);
	}
	restore_terminal();
	frame_fini(&prev);
	frame_fini(&cur);
	return r < 0 ? hc_cli_fail("out of memory") : HC_EXIT_OK;
}

/* Two refreshes an interval apart and one frame with their rates. */
static int run_once(const struct top_args *a)
{
	struct top_frame first = { 0 }, second = { 0 };
	char *text = NULL;
	size_t len = 0;
	int r = fetch(a, &first);

	if (r == 0) {
		sleep_interval(a);
		r = fetch(a, &second);
	}
	if (r == 0) {
		compute_rates(&second, &first);
		r = draw(a, &second, false, &text, &len);
	}
	if (r == 0)
		fwrite(text, 1, len, stdout);
	free(text);
	if (r == -EIO)
		r = hc_cli_fail("%s", *second.error ? second.error : first.error);
	else if (r < 0)
		r = hc_cli_fail("out of memory");
	frame_fini(&first);
	frame_fini(&second);
	return r ? HC_EXIT_FAIL : HC_EXIT_OK;
}

int hc_cli_cmd_cluster_top(const struct hc_cli_cmd *cmd, int argc, char **argv)
{
	struct top_args a = { .addr = HC_CLI_DEFAULT_HTTP_ADDR, .timeout_ms = 2000,
			      .interval_ms = 1000, .max_nodes = 16 };
	int r = hc_cli_parse_opts(cmd, argc, argv, &a);

	if (r >= 0)
		return r;
	if (optind < argc)
		return hc_cli_usage_error(cmd, "unexpected argument %s", argv[optind]);
	if (a.once)
		return run_once(&a);
	if ((r = catch_signals()) < 0)
		return hc_cli_fail("cannot catch signals: %s", strerror(-r));
	return run_live(&a, isatty(STDIN_FILENO) && isatty(STDOUT_FILENO));
}
