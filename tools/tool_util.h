/* Helpers the command-line tools share (header only: each tool is one .c file linked against
   libmdeploy.a).  Only the public API is used here.

   Command lines: every tool describes its options once, in a tool_opt table, and parses them
   with tool_getopt (getopt_long: "--opt VALUE", "--opt=VALUE", "-o VALUE", "-oVALUE", unique
   prefixes of long names); --help (from the same table: every option, one line each, and the
   examples) and --version are added to every tool here, so they cannot drift apart.  An unknown
   option or a missing value exits with status 2 and a message naming the option and --help. */
#ifndef MDL_TOOL_UTIL_H
#define MDL_TOOL_UTIL_H

#include "mdeploy/mdeploy.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One option of a tool.  name: the long name without "--" (NULL: a heading line, help is its
   text); key: the short letter, or a value >= 256 for a long-only option (getopt's return);
   arg: the value's placeholder (NULL: a flag); help: one line (a '\n' starts a continuation
   line for details). */
typedef struct tool_opt {
    const char *name;
    int key;
    const char *arg;
    const char *help;
} tool_opt;

/* A tool's command line: name ("mdeploy-run"), what it does (one line), the usage forms after
   the name (several separated by '\n'), its options and examples (lines of shell, '\n'). */
typedef struct tool_cli {
    const char *name;
    const char *summary;
    const char *usage;
    const tool_opt *opts;
    int nopts;
    const char *examples;
} tool_cli;

#define TOOL_MAX_OPTS 64
#define TOOL_NOPTS(a) ((int)(sizeof(a) / sizeof((a)[0])))
enum { TOOL_OPT_HELP = 'h', TOOL_OPT_VERSION = 255 };

/* "NAME (mdeploy) VERSION": the library's version string (mdl_version). */
static inline void tool_print_version(const tool_cli *t) { printf("%s (mdeploy) %s\n", t->name, mdl_version()); }

/* Prints lines of text, each after prefix. */
static inline void tool_print_lines(FILE *f, const char *prefix, const char *text) {
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        int n = nl ? (int)(nl - text) : (int)strlen(text);
        fprintf(f, "%s%.*s\n", prefix, n, text);
        text += n + (nl != NULL);
    }
}

static inline void tool_print_opt(FILE *f, const char *name, int key, const char *arg, const char *help) {
    char left[96];
    int n = 0;
    if (key > 0 && key < 128) n = snprintf(left, sizeof left, "-%c, --%s", key, name);
    else n = snprintf(left, sizeof left, "    --%s", name);
    if (arg && n < (int)sizeof left) snprintf(left + n, sizeof left - (size_t)n, " %s", arg);
    const char *nl = strchr(help, '\n');
    int len = nl ? (int)(nl - help) : (int)strlen(help);
    if (strlen(left) > 27) fprintf(f, "  %s\n  %-28s %.*s\n", left, "", len, help);
    else fprintf(f, "  %-28s %.*s\n", left, len, help);
    if (nl) tool_print_lines(f, "                                 ", nl + 1);
}

/* --help: usage, summary, every option of the table plus -h/--help and --version, examples. */
static inline void tool_help(const tool_cli *t, FILE *f) {
    const char *u = t->usage;
    for (int first = 1; u && *u; first = 0) {
        const char *nl = strchr(u, '\n');
        int n = nl ? (int)(nl - u) : (int)strlen(u);
        fprintf(f, "%s %s %.*s\n", first ? "usage:" : "      ", t->name, n, u);
        u += n + (nl != NULL);
    }
    fprintf(f, "%s\n\noptions:\n", t->summary);
    for (int i = 0; i < t->nopts; i++) {
        const tool_opt *o = &t->opts[i];
        if (!o->name) fprintf(f, "%s:\n", o->help);
        else tool_print_opt(f, o->name, o->key, o->arg, o->help);
    }
    tool_print_opt(f, "help", 'h', NULL, "print this help and exit");
    tool_print_opt(f, "version", 0, NULL, "print the version (the library's) and exit");
    fprintf(f, "\nexamples:\n");
    tool_print_lines(f, "  ", t->examples);
}

/* getopt_long over the tool's table, in command-line order: returns an option's key (its value
   in tool_optarg), 1 for a positional argument (in tool_optarg), -1 at the end.  --help and
   --version print and exit 0; an unknown option or a missing value prints a message naming it
   and exits 2. */
static const char *tool_optarg;
static inline int tool_getopt(const tool_cli *t, int argc, char **argv) {
    static struct option longs[TOOL_MAX_OPTS + 3];
    static char shorts[3 * TOOL_MAX_OPTS + 8];
    if (!longs[0].name) {
        int nl = 0;
        size_t ns = 0;
        shorts[ns++] = '-'; /* positionals in order (returned as 1), no permutation */
        shorts[ns++] = ':'; /* a missing value returns ':' (our message, not getopt's) */
        for (int i = 0; i < t->nopts && nl < TOOL_MAX_OPTS; i++) {
            const tool_opt *o = &t->opts[i];
            if (!o->name) continue;
            longs[nl++] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, o->key};
            if (o->key > 0 && o->key < 128) {
                shorts[ns++] = (char)o->key;
                if (o->arg) shorts[ns++] = ':';
            }
        }
        longs[nl++] = (struct option){"help", no_argument, NULL, TOOL_OPT_HELP};
        longs[nl++] = (struct option){"version", no_argument, NULL, TOOL_OPT_VERSION};
        shorts[ns++] = 'h';
        shorts[ns] = 0;
        opterr = 0;
    }
    int prev = optind;
    int c = getopt_long(argc, argv, shorts, longs, NULL);
    tool_optarg = optarg;
    if (c == TOOL_OPT_HELP) {
        tool_help(t, stdout);
        exit(0);
    }
    if (c == TOOL_OPT_VERSION) {
        tool_print_version(t);
        exit(0);
    }
    if (c == '?' || c == ':') {
        /* the argument that failed: optind moved past it (or stays on it within "-xyz") */
        const char *a = argv[optind > prev && optind - 1 < argc ? optind - 1 : prev];
        char name[64];
        if (a[0] == '-' && a[1] == '-') snprintf(name, sizeof name, "%.*s", (int)strcspn(a, "="), a);
        else snprintf(name, sizeof name, "-%c", optopt ? optopt : a[1]);
        const char *why = c == ':' ? "needs a value" : name[1] == '-' && optopt ? "takes no value" : NULL;
        if (why) fprintf(stderr, "%s: option '%s' %s (see %s --help)\n", t->name, name, why, t->name);
        else {
            int matches = 0; /* an abbreviation of several long names */
            for (int i = 0; name[1] == '-' && longs[i].name; i++) matches += !strncmp(longs[i].name, name + 2, strlen(name + 2));
            fprintf(stderr, "%s: %s option '%s' (see %s --help)\n", t->name, matches > 1 ? "ambiguous" : "unknown", name,
                    t->name);
        }
        exit(2);
    }
    return c;
}

/* A path ending in .onnx (any case): an ONNX model, not a .mdl file. */
static inline bool tool_is_onnx_path(const char *p) {
    size_t n = strlen(p);
    return n >= 5 && (p[n - 5] == '.') && (p[n - 4] | 32) == 'o' && (p[n - 3] | 32) == 'n' &&
           (p[n - 2] | 32) == 'n' && (p[n - 1] | 32) == 'x';
}

/* A bad command line found after parsing (no model given, ...): the message and exit 2. */
static inline int tool_usage_error(const tool_cli *t, const char *msg) {
    fprintf(stderr, "%s: %s (see %s --help)\n", t->name, msg, t->name);
    return 2;
}

/* A shape as "[1,28,28,3]" in buf (truncated to cap bytes); returns buf. */
static inline const char *tool_shape_str(char *buf, size_t cap, int32_t rank, const int64_t *dims) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%lld" : "%lld", (long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* A tensor's shape with dynamic dims shown by name: "[batch,784]" ("?" for a computed dim,
   "<=64" after a bounded one). */
static inline const char *tool_info_shape_str(char *buf, size_t cap, const mdl_tensor_info *ti) {
    if (!ti->dim_names) return tool_shape_str(buf, cap, ti->rank, ti->dims);
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ti->rank && n < cap; i++) {
        const char *sep = i ? "," : "";
        if (!ti->dim_names[i]) n += (size_t)snprintf(buf + n, cap - n, "%s%lld", sep, (long long)ti->dims[i]);
        else if (!*ti->dim_names[i]) n += (size_t)snprintf(buf + n, cap - n, "%s?", sep);
        else if (ti->dim_max[i])
            n += (size_t)snprintf(buf + n, cap - n, "%s%s<=%lld", sep, ti->dim_names[i], (long long)ti->dim_max[i]);
        else n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, ti->dim_names[i]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* {"name", "dtype", "shape": [...]} of a tensor; callers add their own fields. */
static inline cJSON *tool_tensor_json(const mdl_tensor_info *ti) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", ti->name);
    cJSON_AddStringToObject(o, "dtype", mdl_dtype_name(ti->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int32_t d = 0; d < ti->rank; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ti->dims[d]));
    return o;
}

#endif
