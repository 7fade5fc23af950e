/* hypercore: the single executable. Finds the command and runs it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_int.h"
#include "log/log.h"

static void print_help(FILE *out)
{
	fprintf(out, "hypercore %s: an edge cluster node agent with kernel data paths\n\n"
		     "Usage: hypercore <command> [options]\n\nCommands:\n",
		HC_VERSION);
	for (unsigned i = 0; i < hc_cli_ncmds; i++)
		fprintf(out, "  %-22s %s\n", hc_cli_cmds[i].path, hc_cli_cmds[i].summary);
	fputs("\nRun 'hypercore <command> --help' for its options.\n", out);
}

/*
 * A service manager starts us with default dispositions and nothing
 * blocked; a shell's `cmd &` ignores SIGINT and SIGQUIT, nohup SIGHUP, a
 * parent may block some. An ignored disposition survives exec into all we
 * start (containerd, its shims, the workloads, which then ignore the
 * SIGINT a stop sends), and while the agent starts up an ignored SIGTERM is
 * lost. Back to the defaults, unblocked, before anything else; the agent's
 * loop then blocks the ones it reads, and ignores SIGPIPE itself.
 */
static void reset_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE };
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	sigset_t set;

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaction(sigs[i], &dfl, NULL);
		sigaddset(&set, sigs[i]);
	}
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* The longest command path that matches the leading words of argv. */
static const struct hc_cli_cmd *find_cmd(int argc, char **argv, int *nwords)
{
	const struct hc_cli_cmd *best = NULL;

	for (unsigned i = 0; i < hc_cli_ncmds; i++) {
		const char *p = hc_cli_cmds[i].path;
		int w = 0;

		while (*p && w < argc) {
			size_t n = strcspn(p, " ");

			if (strlen(argv[w]) != n || strncmp(argv[w], p, n) != 0)
				break;
			p += n;
			w++;
			if (*p == ' ')
				p++;
			else if (!*p)
				break;
		}
		if (!*p && (!best || w > *nwords)) {
			best = &hc_cli_cmds[i];
			*nwords = w;
		}
	}
	return best;
}

int main(int argc, char **argv)
{
	const struct hc_cli_cmd *cmd;
	int nwords = 0;

	reset_signals();
	/* Client verbs print their own one-line errors; library chatter (grpc
	 * routes its errors through our log) stays quiet unless asked for. */
	hc_log_set_level(HC_LOG_ERROR);
	if (argc < 2) {
		print_help(stderr);
		return HC_EXIT_USAGE;
	}
	/* hidden: what make install generates from the option tables */
	if (strcmp(argv[1], "help") == 0 && argc > 2)
		return hc_cli_gendoc(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		print_help(stdout);
		return HC_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return hc_cli_cmd_version(&hc_cli_cmds[0], 1, argv);
	cmd = find_cmd(argc - 1, argv + 1, &nwords);
	if (!cmd) {
		fprintf(stderr, "hypercore: unknown command '%s'\n\n", argv[1]);
		print_help(stderr);
		return HC_EXIT_USAGE;
	}
	/* The command sees argv[0] = its last word, then its own arguments. */
	return cmd->run(cmd, argc - nwords, argv + nwords);
}
