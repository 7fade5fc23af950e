/* The `hypercore` command line: verbs, option parsing, errors, output. */
#ifndef HC_CLI_H
#define HC_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

struct hc_rpc_status;

/* Exit statuses: 0 success, 1 the operation failed, 2 bad usage. */
#define HC_EXIT_OK 0
#define HC_EXIT_FAIL 1
#define HC_EXIT_USAGE 2

struct hc_cli_cmd {
	const char *path;    /* "cluster list": words after `hypercore` */
	const char *summary; /* one line for the command list */
	const char *usage;   /* the options block of --help */
	int (*run)(const struct hc_cli_cmd *cmd, int argc, char **argv);
};

/* Every command, for dispatch and for `hypercore --help`. */
extern const struct hc_cli_cmd hc_cli_cmds[];
extern const unsigned hc_cli_ncmds;

/* Returned by hc_cli_getopt() besides option values and -1. */
#define HC_CLI_OPT_HELP (-2) /* --help was printed: exit 0 */
#define HC_CLI_OPT_BAD (-3)  /* an error and the usage were printed: exit 2 */

/*
 * getopt_long() over argv (argv[0] is the command path) with our error
 * handling: every command takes -h/--help; unknown options and missing
 * values print one line and the usage to stderr. Returns the option's val,
 * -1 at the end of the options, or HC_CLI_OPT_HELP/HC_CLI_OPT_BAD.
 */
int hc_cli_getopt(const struct hc_cli_cmd *cmd, int argc, char **argv,
		  const struct option *opts);

void hc_cli_print_usage(const struct hc_cli_cmd *cmd, FILE *out);
/* Prints "hypercore <path>: <message>" and the usage to stderr; returns 2. */
int hc_cli_usage_error(const struct hc_cli_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Prints "hypercore: <message>" to stderr; returns 1. */
int hc_cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One readable line for a failed call to the agent at addr; returns 1. */
int hc_cli_rpc_fail(const char *addr, const struct hc_rpc_status *st);

/* Parses a whole number in [min, max] (digits only). 0 or -EINVAL. */
int hc_cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* Parses a positive whole number of seconds (for --timeout). */
int hc_cli_parse_seconds(const char *s, int *ms);

/* Sends one request to the agent's HTTP API at addr (a bind address: the
 * wildcard is dialled on loopback) and reads the answer within timeout_ms.
 * On success *status is the HTTP status and *body a NUL-terminated copy of
 * the body (free it). Otherwise -errno with a one-line reason in err. */
int hc_cli_http(const char *addr, const char *method, const char *path, const void *payload,
		size_t payload_len, int timeout_ms, int *status, char **body, size_t *body_len,
		char *err, size_t errlen);

/* Calls the agent's HTTP API and returns the "response" member of its JSON
 * answer (the caller json_decref()s *doc, which owns it), or prints one
 * error line and returns NULL. */
struct json_t;
struct json_t *hc_cli_api_call(const char *addr, const char *method, const char *path,
			       const void *payload, size_t len, int timeout_ms,
			       struct json_t **doc);

/* Tables: column widths are measured over all rows before printing. */
struct hc_cli_table;
struct hc_cli_table *hc_cli_table_new(unsigned ncols, const char *const *headers);
/* Adds a row of ncols cells; NULL or "" prints as "-". Copies the text. */
int hc_cli_table_add(struct hc_cli_table *t, const char *const *cells);
void hc_cli_table_print(const struct hc_cli_table *t, FILE *out);
void hc_cli_table_free(struct hc_cli_table *t);

/* Command runners (cli/cmd_*.c). */
int hc_cli_cmd_cluster(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_list(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_spawn(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_stop(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_logs(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_metrics(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_members(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_event(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_query(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_containerd(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_spawn(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_stop(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_list(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_logs(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_attach(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_routes(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_routes_add(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_routes_del(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_dataplane(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_dataplane_cleanup(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_version(const struct hc_cli_cmd *cmd, int argc, char **argv);

#endif /* HC_CLI_H */
