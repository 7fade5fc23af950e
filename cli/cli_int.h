/* Between the option parser (cli/opts.c) and where values come from
 * besides the command line (cli/config.c): private to the CLI. */
#ifndef HC_CLI_INT_H
#define HC_CLI_INT_H

#include "cli.h"

/* Where an option's value came from, weakest first. */
enum hc_cli_source { HC_CLI_SRC_DEFAULT, HC_CLI_SRC_CONFIG, HC_CLI_SRC_ENV, HC_CLI_SRC_FLAG };

/* Keeps s (malloc'd) until the process exits and returns it; NULL (s
 * freed) when out of memory. Option values point into what is kept. */
char *hc_cli_keep(char *s);

/* The row of table named by len bytes of name, or NULL. */
const struct hc_cli_opt *hc_cli_find_opt(const struct hc_cli_opt *table, const char *name,
					 size_t len);
bool hc_cli_takes_value(const struct hc_cli_opt *o);

/* Stores value (NULL for a flag given bare; else a flag takes true or
 * false) into args as row o says, splitting it first if o->csv. 0, or
 * -errno with maybe a reason in why: -E2BIG a list is full. */
int hc_cli_store(const struct hc_cli_opt *o, char *value, void *args, char *why, size_t len);
/* The message for hc_cli_store's failure r; where names the file or
 * variable the value came from (NULL: the command line, with the usage).
 * Returns the exit status. */
int hc_cli_store_error(const struct hc_cli_cmd *cmd, const struct hc_cli_opt *o, const char *value,
		       int r, const char *why, const char *where);

/* Notes that o of cmd got value from src, for hc_cli_print_config. */
void hc_cli_record(const struct hc_cli_cmd *cmd, const struct hc_cli_opt *o, enum hc_cli_source src,
		   const char *value);

/* Applies, to the options of cmd not given[] on the command line (indexed
 * by row), $HYPERCORE_<NAME> or else the configuration file (config: --config,
 * or NULL). -1 to go on, else the exit status after one line. */
int hc_cli_apply_defaults(const struct hc_cli_cmd *cmd, void *args, const bool *given,
			  const char *config);

/* What a row's help says its default is ("(default 2000)": "2000"), or "". */
void hc_cli_help_default(const struct hc_cli_opt *o, char *buf, size_t len);

/* The help of --config, which every command takes beside its table. */
#define HC_CLI_CONFIG_HELP                                                            \
	"read options from this TOML file, by their long names (default "             \
	HC_CLI_DEFAULT_CONFIG " when present); $HYPERCORE_<OPTION> overrides it, the "  \
	"command line both"

/* `hypercore help --man [GROUP]|--man-groups|--bash-completion|--config`
 * (argv[0] is "help"): prints what the tables generate; the exit status. */
int hc_cli_gendoc(int argc, char **argv);

/* ---- hypercore doctor (cli/cmd_doctor.c) ---- */

enum hc_cli_doctor_status { HC_DOCTOR_OK, HC_DOCTOR_WARN, HC_DOCTOR_FAIL };

/* The verdict on a secret file's mode: fail when group or others have any
 * bit, ok for 0600 or less and for a file not made yet; what says which in
 * one line. */
enum hc_cli_doctor_status hc_cli_doctor_file_mode(const char *path, char *what, size_t len);

/* The value of the first sample of metric name (with or without labels) in
 * Prometheus text. 0; -ENOENT when none; -EINVAL for a sample that does
 * not parse. */
int hc_cli_metric_value(const char *text, const char *name, double *out);

#endif /* HC_CLI_INT_H */
