/* The `hypercore` command line: verbs, option parsing, errors, output. */
#ifndef HC_CLI_H
#define HC_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "base/base.h"
#include "hypercore/defaults.h"
#include "log/log.h"

struct hc_rpc_status;

/* The agent's API addresses the clients dial by default. */
#define HC_CLI_QUOTE_(x) #x
#define HC_CLI_QUOTE(x) HC_CLI_QUOTE_(x)
#define HC_CLI_DEFAULT_GRPC_ADDR "0.0.0.0:" HC_CLI_QUOTE(HC_DEFAULT_GRPC_PORT)
#define HC_CLI_DEFAULT_HTTP_ADDR "0.0.0.0:" HC_CLI_QUOTE(HC_DEFAULT_HTTP_PORT)

/* Exit statuses: 0 success, 1 the operation failed, 2 bad usage. */
#define HC_EXIT_OK 0
#define HC_EXIT_FAIL 1
#define HC_EXIT_USAGE 2

struct hc_cli_opt;

/*
 * A command. Its --help is the usage text, then "Options:" generated from
 * the option table (and -h, --help), then the epilogue: no option is
 * described anywhere but in its table row.
 */
struct hc_cli_cmd {
	const char *path;    /* "cluster list": words after `hypercore` */
	const char *summary; /* one line for the command list */
	const char *usage;   /* the usage line(s) and what the command does */
	const struct hc_cli_opt *opts; /* its options; NULL: it takes none */
	const char *epilogue;          /* after the options, or NULL */
	int (*run)(const struct hc_cli_cmd *cmd, int argc, char **argv);
};

/* Every command, for dispatch and for `hypercore --help`. */
extern const struct hc_cli_cmd hc_cli_cmds[];
extern const unsigned hc_cli_ncmds;

/*
 * Option tables, after xdp-tools' DEFINE_OPTION: one row per long option
 * ties its name, how its value is parsed, where in the caller's struct it
 * lands and how --help describes it, so a command is a table and not a
 * switch, and its help cannot leave an option out.
 */
enum hc_cli_opt_type {
	HC_CLI_OPT_STR,    /* const char *: the value as is */
	HC_CLI_OPT_FLAG,   /* bool: set true; takes no value */
	HC_CLI_OPT_NOFLAG, /* bool: set false; takes no value */
	HC_CLI_OPT_UINT,   /* an unsigned integer of any size, in [min, max] */
	HC_CLI_OPT_LIST,   /* const char *[max], repeatable; count in the size_t at .aux */
	HC_CLI_OPT_FUNC,   /* .parse(value, field, why, len): 0 or -errno */
	HC_CLI_OPT_GROUP,  /* not an option: a heading in --help (.help) for the rows after */
};

struct hc_cli_opt {
	const char *name; /* long name without "--"; NULL ends a table */
	enum hc_cli_opt_type type;
	size_t off;  /* the field's offset in the caller's struct */
	size_t size; /* the field's size (HC_CLI_OPT_UINT) */
	size_t aux;  /* HC_CLI_OPT_LIST: the count's offset */
	unsigned long min, max;
	/* Fills field from value; on -errno it may write a reason into why,
	 * printed as "invalid --NAME VALUE: reason" instead of .why. */
	int (*parse)(char *value, void *field, char *why, size_t len);
	const char *why; /* appended to "invalid --NAME VALUE" as " (why)" */
	bool bare;       /* print the parse function's reason alone */
	bool csv;        /* a value is a comma-separated list, as pflag's StringSlice */
	bool secret;     /* never printed in full (config show) */
	const char *metavar; /* the value in --help ("ADDR"); NULL for a flag */
	const char *help;    /* one paragraph for --help, wrapped there; "\n" breaks */
};

/* Rows. mv is the metavar, h the help text; every row has both (a flag
 * only h). */
#define HC_CLI_FIELD_(s, f) .off = offsetof(s, f), .size = sizeof(((s *)0)->f)
#define HC_CLI_STR(n, s, f, mv, h)                                                    \
	{ .name = n, .type = HC_CLI_OPT_STR, HC_CLI_FIELD_(s, f), .metavar = mv, .help = h }
#define HC_CLI_FLAG(n, s, f, h) { .name = n, .type = HC_CLI_OPT_FLAG, HC_CLI_FIELD_(s, f), .help = h }
#define HC_CLI_NOFLAG(n, s, f, h)                                                     \
	{ .name = n, .type = HC_CLI_OPT_NOFLAG, HC_CLI_FIELD_(s, f), .help = h }
#define HC_CLI_UINT(n, s, f, lo, hi, w, mv, h)                                        \
	{ .name = n, .type = HC_CLI_OPT_UINT, HC_CLI_FIELD_(s, f), .min = lo, .max = hi, \
	  .why = w, .metavar = mv, .help = h }
#define HC_CLI_LIST(n, s, f, count, mv, h)                                            \
	{ .name = n, .type = HC_CLI_OPT_LIST, HC_CLI_FIELD_(s, f),                    \
	  .aux = offsetof(s, count), .max = sizeof(((s *)0)->f) / sizeof(char *),     \
	  .metavar = mv, .help = h }
#define HC_CLI_FUNC(n, s, f, fn, w, mv, h)                                            \
	{ .name = n, .type = HC_CLI_OPT_FUNC, HC_CLI_FIELD_(s, f), .parse = fn, .why = w, \
	  .metavar = mv, .help = h }
/* A string that is a secret: config show prints its length, not it. */
#define HC_CLI_SECRET(n, s, f, mv, h)                                                 \
	{ .name = n, .type = HC_CLI_OPT_STR, HC_CLI_FIELD_(s, f), .secret = true,     \
	  .metavar = mv, .help = h }
/* A heading for the rows after it, as "Gossip (the Serf protocol)". */
#define HC_CLI_GROUP(title) { .name = "", .type = HC_CLI_OPT_GROUP, .help = title }

/* Rows every client verb shares: the agent's address and --timeout SECONDS
 * into an int of milliseconds (h: its help, which names the default). */
int hc_cli_opt_seconds(char *value, void *field, char *why, size_t len);
#define HC_CLI_GRPC_ADDR(s, f)                                                        \
	HC_CLI_STR("grpc-bind-addr", s, f, "ADDR",                                    \
		   "the agent's gRPC address (default " HC_CLI_DEFAULT_GRPC_ADDR       \
		   ", dialled as 127.0.0.1:" HC_CLI_QUOTE(HC_DEFAULT_GRPC_PORT) ")")
#define HC_CLI_HTTP_ADDR(s, f)                                                        \
	HC_CLI_STR("http-bind-addr", s, f, "ADDR",                                    \
		   "the agent's HTTP address (default " HC_CLI_DEFAULT_HTTP_ADDR       \
		   ", dialled as 127.0.0.1:" HC_CLI_QUOTE(HC_DEFAULT_HTTP_PORT) ")")
#define HC_CLI_TIMEOUT(s, f, h) HC_CLI_FUNC("timeout", s, f, hc_cli_opt_seconds, NULL, "SECONDS", h)
/* --log-level LEVEL into an enum hc_log_level, for the commands that run. */
int hc_cli_opt_log_level(char *value, void *field, char *why, size_t len);
#define HC_CLI_LOG_LEVEL(s, f)                                                        \
	HC_CLI_FUNC("log-level", s, f, hc_cli_opt_log_level, "debug, info, warn or error", \
		    "LEVEL",                                                              \
		    "debug, info, warn or error (default info)")
/* --log-format FORMAT into an enum hc_log_format, beside --log-level. */
int hc_cli_opt_log_format(char *value, void *field, char *why, size_t len);
#define HC_CLI_LOG_FORMAT(s, f)                                                       \
	HC_CLI_FUNC("log-format", s, f, hc_cli_opt_log_format, "logfmt, json or text",   \
		    "FORMAT",                                                             \
		    "logfmt (default): key=value records; json: one object per line; "    \
		    "text: for people at a terminal. Under systemd each record also "    \
		    "carries its journal priority")
/* Sets the log's level and format for a command that runs until stopped,
 * and journald's priority prefix when stderr is the journal. */
void hc_cli_log_setup(enum hc_log_level level, enum hc_log_format format);

/* The help of both spawn verbs' --env, a list as upstream's StringSlice. */
#define HC_CLI_ENV_HELP                                                               \
	"environment variables, comma-separated as upstream's: A=1,B=2 is two; a "     \
	"value with a comma in quotes, '\"A=x,y\"' (the quotes go) or 'A=\"x,y\"' "     \
	"(they stay) (repeatable)"

/* Rows both spawn verbs (local and cluster) share for hardening: --cap-add
 * CAP into the struct hc_workload_spec at spec (validated, repeatable),
 * --pids-limit N into the uint32_t pids, --read-only-rootfs into the bool ro. */
int hc_cli_opt_cap(char *value, void *field, char *why, size_t len);
#define HC_CLI_HARDENING_ROWS(s, spec, pids, ro)                                       \
	{ .name = "cap-add", .type = HC_CLI_OPT_FUNC, .off = offsetof(s, spec),          \
	  .parse = hc_cli_opt_cap, .bare = true, .metavar = "CAP",                       \
	  .help = "a capability beyond the default set, e.g. NET_RAW (repeatable)" },    \
	HC_CLI_UINT("pids-limit", s, pids, HC_RUNTIME_MIN_PIDS_LIMIT,                     \
		    HC_RUNTIME_MAX_PIDS_LIMIT,                                            \
		    HC_CLI_QUOTE(HC_RUNTIME_MIN_PIDS_LIMIT) ".." HC_CLI_QUOTE(            \
			    HC_RUNTIME_MAX_PIDS_LIMIT),                                   \
		    "N", "at most N processes and threads (default "                     \
		    HC_CLI_QUOTE(HC_RUNTIME_DEFAULT_PIDS_LIMIT) ")"),                     \
	HC_CLI_FLAG("read-only-rootfs", s, ro, "mount the image's root filesystem read-only")

/* Rows every client verb shares for its credentials (cli/cmd_auth.c):
 * --token TOKEN, and --state-dir DIR to read the agent's own token file. */
int hc_cli_opt_token(char *value, void *field, char *why, size_t len);
int hc_cli_opt_token_state_dir(char *value, void *field, char *why, size_t len);
#define HC_CLI_AUTH_ROWS                                                              \
	{ .name = "token", .type = HC_CLI_OPT_FUNC, .parse = hc_cli_opt_token,            \
	  .bare = true, .secret = true, .metavar = "TOKEN",                              \
	  .help = "the bearer token the agent wants (default: $HYPERCORE_TOKEN, else the " \
		  "agent's token file in --state-dir)" },                                \
	{ .name = "state-dir", .type = HC_CLI_OPT_FUNC, .parse = hc_cli_opt_token_state_dir, \
	  .metavar = "DIR",                                                              \
	  .help = "a local agent's state dir, to read its API token from (default "      \
		  HC_DEFAULT_STATE_DIR ")" }

/* The token client verbs send: --token, $HYPERCORE_TOKEN, the token file of
 * --state-dir or of the default state dir; NULL when none was found. */
const char *hc_cli_token(void);
/* hc_rpc_client_call with the token (authorization metadata) and, when
 * show_env, List's ask for env values. */
struct hc_rpc_client;
int hc_cli_rpc_call(struct hc_rpc_client *client, const char *path, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_type, ProtobufCMessage **resp,
		    bool show_env, int timeout_ms, struct hc_rpc_status *st);
/* What to tell a user the agent refused: where tokens come from, and why
 * the state dir gave none. */
const char *hc_cli_token_hint(void);

/* What the verbs on one workload parse: the agent's address, --id,
 * --timeout, and (some of them) --tail, --follow, --json. */
struct hc_cli_id_args {
	const char *addr, *id;
	int timeout_ms;
	unsigned long tail;
	bool follow, json;
};
/* Parses them (addr defaults to default_addr, the timeout to 60 s) and
 * takes the id (ID or --id ID, hc_cli_take_id); -1 when the command runs,
 * else the exit status, as hc_cli_parse_opts. */
int hc_cli_parse_id_args(const struct hc_cli_cmd *cmd, int argc, char **argv,
			 struct hc_cli_id_args *a, const char *default_addr);

/* Every command's table (cli/cmd_*.c), named in hc_cli_cmds[]. */
/* A restart policy (always, on-failure, never) into an int field holding
 * enum hc_restart_policy; -EINVAL for anything else. An HC_CLI_FUNC parser. */
int hc_cli_parse_restart(char *arg, void *field, char *why, size_t len);
/* A runtime name (runc, runsc, microvm) into a const char * field (arg
 * itself); -EINVAL for anything else. An HC_CLI_FUNC parser. */
int hc_cli_parse_runtime(char *arg, void *field, char *why, size_t len);
/* The --runtime row's help, the same for the local and the cluster spawn. */
#define HC_CLI_RUNTIME_HELP                                                              \
	"runc (default), runsc (gVisor) or microvm (a VM of its own, with its own "     \
	"kernel: docs/runtime.md, MicroVMs)"

extern const struct hc_cli_opt hc_cli_opts_cluster[], hc_cli_opts_cluster_spawn[],
	hc_cli_opts_cluster_stop[], hc_cli_opts_cluster_logs[], hc_cli_opts_cluster_metrics[],
	hc_cli_opts_cluster_list[], hc_cli_opts_cluster_members[], hc_cli_opts_cluster_event[],
	hc_cli_opts_cluster_query[], hc_cli_opts_containerd[], hc_cli_opts_spawn[],
	hc_cli_opts_stop[], hc_cli_opts_list[], hc_cli_opts_logs[], hc_cli_opts_attach[],
	hc_cli_opts_routes[], hc_cli_opts_routes_add[], hc_cli_opts_routes_del[],
	hc_cli_opts_dataplane_cleanup[], hc_cli_opts_cluster_join_token[],
	hc_cli_opts_cluster_api_token[], hc_cli_opts_cluster_keys[], hc_cli_opts_identity[],
	hc_cli_opts_cluster_proof[], hc_cli_opts_cluster_policy_explain[],
	hc_cli_opts_cluster_attest[], hc_cli_opts_doctor[], hc_cli_opts_cluster_top[];

/* Reads and checks a policy file (cli/cmd_cluster_policy.c): 0 with *text
 * (free it), or the exit status after one line naming the file and field. */
int hc_cli_read_policy(const char *path, char **text);
/* Prints upstream's per-node beacon table from the agent's /list. */
int hc_cli_cluster_beacon_table(const char *addr, int timeout_ms);

/*
 * Parses argv's options (argv[0] is the command path) into args as the
 * command's table says, as upstream's pflag does: options anywhere among the
 * operands, "--NAME VALUE" or "--NAME=VALUE" (a flag takes "=true"/"=false"),
 * "--" ends the options. Every command takes -h/--help and --config FILE.
 * Each option's value comes from, strongest first: the command line,
 * $HYPERCORE_<NAME> (upper case, '-' as '_'), the configuration file
 * (--config, $HYPERCORE_CONFIG, else HC_CLI_DEFAULT_CONFIG when present), the
 * caller's default in args. Unknown options and missing values print one
 * line naming the option and the usage; a bad value prints "invalid --NAME
 * VALUE (why)" and the usage; a bad file or variable one line naming it; a
 * parse function's -ENOMEM prints "out of memory" and exits 1. Returns -1
 * when the options are done, else the exit status: 0 after --help, 2 after a
 * usage error. Then the operands are argv[optind..argc), in order (argv is
 * reordered to put them there), those from argv[hc_cli_dashdash] on given
 * after "--". Values stay valid until the process exits.
 */
int hc_cli_parse_opts(const struct hc_cli_cmd *cmd, int argc, char **argv, void *args);
extern int hc_cli_dashdash;

#define HC_CLI_DEFAULT_CONFIG "/etc/hypercore/hypercore.toml"

/* After hc_cli_parse_opts: the workload id as the operand before "--" (as
 * upstream's `stop ID`) or --id, whichever was given (*id, the --id field,
 * is updated); both and different, none, or more than one operand before
 * "--" is a usage error, as is an id that is no workload id. Then optind is
 * hc_cli_dashdash: the operands left are those after "--". -1 to go on,
 * else the exit status. */
int hc_cli_take_id(const struct hc_cli_cmd *cmd, char **argv, const char **id);

/* Prints every option of cmd's table with its effective value in args and
 * where it came from (default, config, env, flag), as the last
 * hc_cli_parse_opts on cmd found them; secrets only as their length. */
void hc_cli_print_config(const struct hc_cli_cmd *cmd, const void *args, FILE *out);

/* ---- the configuration file: a strict TOML subset (cli/toml.c) ---- */

enum hc_toml_type { HC_TOML_STRING, HC_TOML_INT, HC_TOML_FLOAT, HC_TOML_BOOL, HC_TOML_ARRAY };
#define HC_TOML_MAX_VALUE 4096 /* bytes of one value, unescaped */

/* One `key = value`. The value as text: strings unescaped, numbers as
 * written without '_' or a leading '+', booleans "true" or "false"; an
 * array has one item per element, all of type elem. */
struct hc_toml_entry {
	char *table; /* "" before any [table], else its dotted name */
	char *key;
	enum hc_toml_type type, elem;
	char **items;
	size_t nitems;
	unsigned line;
};

struct hc_toml {
	struct hc_toml_entry *entries; /* in file order */
	size_t n;
};

/*
 * Parses len bytes of text (name: the file, for messages) into out (free it
 * with hc_toml_fini). The subset: comments; `key = value` with bare or
 * quoted keys; basic and literal one-line strings, decimal integers and
 * floats, booleans, arrays of one scalar type over several lines; [table]
 * and [a.b] headers. Anything else (dotted keys, multi-line strings, dates,
 * inline tables, arrays of tables, keys or tables given twice) is refused.
 * 0, or -EINVAL with "NAME:LINE: what is wrong" in err (-ENOMEM).
 */
int hc_toml_parse(const char *text, size_t len, const char *name, struct hc_toml *out,
		  struct hc_err *err);
void hc_toml_fini(struct hc_toml *t);

/* Splits a pflag StringSlice value: comma-separated, a field in double
 * quotes may hold commas ("" is a quote in it), as encoding/csv reads it;
 * a quote inside a field also protects commas up to the next one, and
 * stays. Fields go to *out (free each and the array). 0, -EINVAL for an
 * unterminated quote, -ENOMEM. */
int hc_cli_split_csv(const char *s, char ***out, size_t *n);

/* Prints the command's --help: usage, the options from its table, epilogue. */
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
		struct hc_err *err);

/* Calls the agent's HTTP API and returns the "response" member of its JSON
 * answer (the caller json_decref()s *doc, which owns it), or prints one
 * error line and returns NULL. */
struct json_t;
struct json_t *hc_cli_api_call(const char *addr, const char *method, const char *path,
			       const void *payload, size_t len, int timeout_ms,
			       struct json_t **doc);

/* Appends "?key=<value, percent-encoded>" (or "&...") to the URL being
 * built in url. 0, or -E2BIG when it does not fit in cap. */
int hc_cli_url_param(char *url, size_t cap, const char *key, const char *value);

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
int hc_cli_cmd_cluster_proof_show(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_proof_verify(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_policy_explain(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_attest(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_members(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_top(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_event(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_query(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_join_token(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_api_token(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_identity(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_cluster_keys(const struct hc_cli_cmd *cmd, int argc, char **argv);
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
int hc_cli_cmd_config_show(const struct hc_cli_cmd *cmd, int argc, char **argv);
int hc_cli_cmd_doctor(const struct hc_cli_cmd *cmd, int argc, char **argv);

/* ---- a spawn's progress on a terminal (cli/progress.c) ---- */

struct hc_runtime_progress;
struct hc_cli_progress;
/* A display on stderr, or NULL (every call below then does nothing) unless
 * wanted and stdout and stderr are both terminals. */
struct hc_cli_progress *hc_cli_progress_new(bool wanted);
/* Shows where the spawn is: p is its node's hc_runtime_progress (the first
 * spawn in it is the one shown; none: not started there yet), where names
 * the node (NULL: this one). Phases that ended get a line each. */
void hc_cli_progress_show(struct hc_cli_progress *pr, const struct hc_runtime_progress *p,
			  const char *where);
/* A line of its own after the phases: label, the time since the last line,
 * detail (e.g. "routed", "on 3 of 3 nodes"). */
void hc_cli_progress_step(struct hc_cli_progress *pr, const char *label, const char *detail);
/* Ends the status line: ok, the phase it was last seen in gets its line. */
void hc_cli_progress_end(struct hc_cli_progress *pr, bool ok);
void hc_cli_progress_free(struct hc_cli_progress *pr);

/* Runs call(arg) on a thread while calling look(look_arg, pr) four times a
 * second, and once after it returned; pr NULL: just the call. Returns 0. */
int hc_cli_watch(struct hc_cli_progress *pr, void *(*call)(void *), void *arg,
		 void (*look)(void *, struct hc_cli_progress *), void *look_arg);
/* A look for hc_cli_watch at a local struct hc_runtime's spawns. */
void hc_cli_look_local(void *rt, struct hc_cli_progress *pr);

/* The nodes a cluster spawn's progress is asked of (cli/spawn_progress.c). */
#define HC_CLI_WATCH_NODES 16
struct hc_cli_watch_node {
	char host[96]; /* its HTTP API, "IP:PORT" */
	char name[64];
};
struct hc_cli_watch_nodes {
	struct hc_cli_watch_node nodes[HC_CLI_WATCH_NODES];
	size_t n;
	const char *id; /* the workload; NULL: whatever spawn a node runs */
};
/* The first HC_CLI_WATCH_NODES nodes of a List answer (a
 * NodesStateResponse) into wn; returns how many. */
int hc_cli_watch_nodes_of(struct hc_cli_watch_nodes *wn, const void *list_resp);
/* A look for hc_cli_watch (look_arg: the struct hc_cli_watch_nodes): each
 * node's /spawn/progress until one runs the spawn. */
void hc_cli_look_nodes(void *wn, struct hc_cli_progress *pr);
/* After the spawn: until every node's /list holds id (at most 10 s), then
 * a "routed on N of M nodes" line. */
void hc_cli_watch_routed(struct hc_cli_progress *pr, const struct hc_cli_watch_nodes *wn,
			 const char *id);

/* ---- Prometheus text (format 0.0.4) as agents serve it (cli/promtext.c) ---- */

#define HC_PROM_MAX_LABELS 8
/* One sample; the strings live only during the callback. Labels past
 * HC_PROM_MAX_LABELS are parsed and dropped. */
struct hc_prom_sample {
	const char *name;
	size_t nlabels;
	const char *keys[HC_PROM_MAX_LABELS], *values[HC_PROM_MAX_LABELS];
	double value;
};
/* Calls fn for each sample line of text (len bytes, NUL not needed);
 * comments and blank lines are skipped. fn returns 0 to go on, else that
 * is returned. 0, -EBADMSG at the first malformed line, -ENOMEM. */
int hc_prom_parse(const char *text, size_t len,
		  int (*fn)(const struct hc_prom_sample *s, void *arg), void *arg);
/* The value of label key in s, or NULL. */
const char *hc_prom_label(const struct hc_prom_sample *s, const char *key);

#endif /* HC_CLI_H */
