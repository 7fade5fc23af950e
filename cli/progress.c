/*
 * A spawn's progress on a terminal: while it runs, one status line on
 * stderr (the phase, its time so far, and for the pull the layers and bytes
 * containerd has downloaded); each phase that ended becomes a line of its
 * own with its time. Only when stdout and stderr are both terminals, so
 * scripts and logs see exactly what they saw before.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define MAX_LAYERS 128

struct layer {
	char ref[128];
	int64_t offset, total;
	bool active;
};


struct hc_cli_progress {
	int shown;             /* phases below this have their final line */
	int phase;             /* the spawn's current phase; -1 not seen yet */
	uint64_t phase_ms;     /* the current phase's time when last seen */
	uint64_t seen_at;      /* when (local ms) */
	uint64_t mark;         /* end of the last final line, for hc_cli_progress_step */
	struct layer layers[MAX_LAYERS];
	size_t nlayers;
	char where[96];
	bool pulled; /* the image was pulled, not found present */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct hc_cli_progress *hc_cli_progress_new(bool wanted)
{
	struct hc_cli_progress *pr;

	if (!wanted || !isatty(STDOUT_FILENO) || !isatty(STDERR_FILENO))
		return NULL;
	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return NULL; /* no progress is no failure */
	pr->phase = -1;
	pr->mark = pr->seen_at = now_ms();
	return pr;
}

static const char *mb(int64_t bytes, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f MB", (double)bytes / 1e6);
	return buf;
}

/* Layers and bytes of the pull so far. */
static void pull_totals(const struct hc_cli_progress *pr, unsigned *done, int64_t *got,
			int64_t *want)
{
	*done = 0;
	*got = *want = 0;
	for (size_t i = 0; i < pr->nlayers; i++) {
		*done += !pr->layers[i].active;
		*got += pr->layers[i].active ? pr->layers[i].offset : pr->layers[i].total;
		*want += pr->layers[i].total;
	}
}

/* A finished phase's line (the status line it replaces is cleared). */
static void final_line(struct hc_cli_progress *pr, int phase, uint64_t ms)
{
	char detail[96] = "", a[32];
	unsigned done;
	int64_t got, want;

	if (phase == HC_SPAWN_PULL) {
		pull_totals(pr, &done, &got, &want);
		if (pr->nlayers)
			snprintf(detail, sizeof(detail), "pulled %s in %zu layers",
				 mb(want, a, sizeof(a)), pr->nlayers);
		else
			/* a pull too quick to be seen between two looks */
			snprintf(detail, sizeof(detail), pr->pulled ? "pulled" : "image present");
	}
	fprintf(stderr, "\r\033[K  %-10s %6.2f s  %s%s%s\n", hc_spawn_phase_name(phase),
		(double)ms / 1000, detail, phase == 0 && *pr->where ? "  on " : "",
		phase == 0 ? pr->where : "");
	pr->mark = now_ms();
}

/* Takes in the node's downloads: the layers listed are active; one seen
 * before and listed no more was committed. */
static void track_layers(struct hc_cli_progress *pr, const struct hc_runtime_progress *p)
{
	for (size_t i = 0; i < pr->nlayers; i++)
		pr->layers[i].active = false;
	for (size_t i = 0; i < p->ningests; i++) {
		const struct hc_pull_ingest *g = &p->ingests[i];
		size_t k;

		if (strncmp(g->ref, "layer-", 6) != 0)
			continue;
		for (k = 0; k < pr->nlayers && strcmp(pr->layers[k].ref, g->ref) != 0; k++)
			;
		if (k == pr->nlayers) {
			if (k == MAX_LAYERS)
				continue;
			snprintf(pr->layers[k].ref, sizeof(pr->layers[k].ref), "%s", g->ref);
			pr->nlayers++;
		}
		pr->layers[k].offset = g->offset;
		pr->layers[k].total = g->total > g->offset ? g->total : g->offset;
		pr->layers[k].active = true;
	}
}

void hc_cli_progress_show(struct hc_cli_progress *pr, const struct hc_runtime_progress *p,
			  const char *where)
{
	uint64_t now = now_ms();
	char detail[128] = "", a[32], b[32];

	if (!pr)
		return;
	if (p && p->nspawns) {
		const struct hc_spawn_progress *s = &p->spawns[0];

		if (where)
			snprintf(pr->where, sizeof(pr->where), "%s", where);
		pr->pulled |= s->pulled;
		if (p->ingests_known && s->phase == HC_SPAWN_PULL)
			track_layers(pr, p);
		for (; pr->shown < (int)s->phase + s->done; pr->shown++)
			final_line(pr, pr->shown, s->phase_ms[pr->shown]);
		pr->phase = (int)s->phase;
		pr->phase_ms = s->phase_ms[s->phase];
		pr->seen_at = now;
	}
	if (pr->phase == HC_SPAWN_PULL && pr->nlayers) {
		unsigned done;
		int64_t got, want;

		pull_totals(pr, &done, &got, &want);
		snprintf(detail, sizeof(detail), "%zu layers, %u done, %s of %s", pr->nlayers, done,
			 mb(got, a, sizeof(a)), mb(want, b, sizeof(b)));
	}
	if (pr->phase >= 0 && pr->shown > pr->phase)
		return; /* it ended: nothing runs to show */
	fprintf(stderr, "\r\033[K  %-10s %6.2f s  %s", pr->phase < 0 ? "starting"
				: hc_spawn_phase_name(pr->phase),
		(double)(pr->phase < 0 ? now - pr->mark : pr->phase_ms + (now - pr->seen_at)) / 1000,
		detail);
}

void hc_cli_progress_step(struct hc_cli_progress *pr, const char *label, const char *detail)
{
	if (!pr)
		return;
	fprintf(stderr, "\r\033[K  %-10s %6.2f s  %s\n", label, (double)(now_ms() - pr->mark) / 1000,
		detail);
	pr->mark = now_ms();
}

void hc_cli_progress_end(struct hc_cli_progress *pr, bool ok)
{
	if (!pr)
		return;
	if (ok && pr->phase >= 0 && pr->shown <= pr->phase) {
		/* never saw it end: the last phase seen, to now */
		final_line(pr, pr->phase, pr->phase_ms + (now_ms() - pr->seen_at));
		pr->shown = pr->phase + 1;
	}
	fputs("\r\033[K", stderr);
}

void hc_cli_progress_free(struct hc_cli_progress *pr)
{
	free(pr);
}
