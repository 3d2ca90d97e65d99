/* mdeploy-embed: a model (and optionally fixed inputs) as C source for firmware.
   usage: mdeploy-embed MODEL.mdl -n NAME [-o DIR] [-i INPUT.npy ...] [-r MAX_ROWS] (mdeploy-embed --help)

   Writes DIR/NAME.h and DIR/NAME.c:
     NAME_model[]            the .mdl bytes, const (flash), 64-byte aligned, used in place
     NAME_MODEL_BYTES        its size
     NAME_TENSOR_COUNT, NAME_ACTIVATION_BYTES
     NAME_ARENA_BYTES        exact bytes of mdl_session_create_in on the target that compiles it
                             (MDL_SESSION_ARENA_BYTES: pointer size comes from that compiler)
     NAME_LOAD_BYTES         model-owned memory mdl_model_load_buffer takes from its allocator
                             (measured here on the host, with the portable kernels' packing; the
                             host's 64-bit records make it an upper bound for 32-bit targets)
     NAME_OPS(X)             X(OPERATOR, DTYPE) for every kernel the model needs
     NAME_LOAD_PLANNER       1 when the loader must widen weights or plan the arena itself
                             (mdl_model_needs_load_planner), else 0
     NAME_register(r)        registers exactly those in an mdl_op_resolver (and the load planner
                             where NAME_LOAD_PLANNER)
     NAME_inputK[]           with -i: the K-th input's bytes: as many runs' worth ("rows" of the
                             model's first dimension) as the .npy holds, at most MAX_ROWS; the
                             bytes used are also written to DIR/NAME.inK.npy for a host run
   The kernel list is what the loader asks for: the model is loaded with an empty resolver and
   every registration its error message names is added until the load succeeds. */
#define _POSIX_C_SOURCE 200809L
#include "mdeploy/mdeploy.h"
#include "mdeploy/npy.h"
#include "mdeploy/resolver.h"
#include "tool_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUTS 16

typedef struct kernel_reg {
    const char *op, *dtype;
    mdl_status (*add)(mdl_op_resolver *r);
} kernel_reg;

static const kernel_reg all_kernels[] = {
#define REG(op, dtype, kernel) {#op, #dtype, mdl_op_resolver_add_##op##_##dtype},
    MDL_KERNEL_MAP(REG)
#undef REG
};
#define NKERNELS ((int)(sizeof all_kernels / sizeof all_kernels[0]))

static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n))) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else *size = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

/* A 64-byte aligned copy: loading in place needs MDL_ALIGN, as the firmware array has. */
static void *aligned_copy(const void *p, size_t n) {
    void *q = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (q) memcpy(q, p, n);
    return q;
}

/* Finds which kernels the model needs: "MDL_OP_RESOLVER_ADD(r, OP, DTYPE)" in the loader's
   message names the next one.  Returns the count (used[] marks them) or -1. */
static int find_kernels(const void *data, size_t size, bool *used) {
    mdl_op_resolver_entry entries[NKERNELS];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, entries, NKERNELS);
    for (int round = 0; round <= NKERNELS; round++) {
        mdl_load_options o = mdl_load_options_default();
        o.resolver = &r;
        mdl_model *m;
        mdl_error err;
        mdl_status st = mdl_model_load_buffer(data, size, &o, &m, &err);
        if (st == MDL_OK) {
            mdl_model_free(m);
            return r.count;
        }
        const char *at = strstr(err.msg, "MDL_OP_RESOLVER_ADD(r, ");
        if (st != MDL_UNSUPPORTED || !at) {
            fprintf(stderr, "mdeploy-embed: %s\n", err.msg);
            return -1;
        }
        at += strlen("MDL_OP_RESOLVER_ADD(r, ");
        int k;
        for (k = 0; k < NKERNELS; k++) {
            size_t lo = strlen(all_kernels[k].op), ld = strlen(all_kernels[k].dtype);
            if (!strncmp(at, all_kernels[k].op, lo) && !strncmp(at + lo, ", ", 2) &&
                !strncmp(at + lo + 2, all_kernels[k].dtype, ld) && at[lo + 2 + ld] == ')')
                break;
        }
        if (k == NKERNELS || used[k]) {
            fprintf(stderr, "mdeploy-embed: cannot satisfy: %s\n", err.msg);
            return -1;
        }
        used[k] = true;
        all_kernels[k].add(&r);
    }
    return -1;
}

static bool write_bytes(FILE *f, const char *name, const uint8_t *p, size_t n) {
    fprintf(f, "_Alignas(64) const uint8_t %s[%zu] = {", name, n ? n : 1);
    for (size_t i = 0; i < n; i++) fprintf(f, "%s0x%02x,", i % 16 ? "" : "\n    ", p[i]);
    if (!n) fprintf(f, "0");
    fprintf(f, "\n};\n\n");
    return !ferror(f);
}

static const tool_opt opts[] = {
    {"name", 'n', "NAME", "C identifier of the generated files (NAME.h, NAME.c) and symbols (required)"},
    {"output-dir", 'o', "DIR", "write the files here (default: the current directory)"},
    {"input", 'i', "IN.npy", "also embed the K-th input (repeat for each, in the model's order)"},
    {"max-rows", 'r', "N", "embed at most N rows (runs' worth) of each input (default: all)"},
};
static const tool_cli cli = {
    "mdeploy-embed", "Writes a model (and optionally fixed inputs) as C source for firmware.",
    "MODEL.mdl -n NAME [-o DIR] [-i IN.npy ...] [-r MAX_ROWS]", opts, TOOL_NOPTS(opts),
    "mdeploy-embed net.mdl -n net                        # net.h, net.c\n"
    "mdeploy-embed net.mdl -n net -o fw/ -i x.npy -r 4   # and net_input0[] with 4 rows",
};

int main(int argc, char **argv) {
    const char *path = NULL, *name = NULL, *dir = ".";
    const char *inputs[MAX_INPUTS];
    int ninputs = 0;
    long long max_rows = 0;
    int64_t nrows = 0;
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        if (c == 'n') name = tool_optarg;
        else if (c == 'o') dir = tool_optarg;
        else if (c == 'i') {
            if (ninputs == MAX_INPUTS) {
                fprintf(stderr, "mdeploy-embed: at most %d inputs\n", MAX_INPUTS);
                return 1;
            }
            inputs[ninputs++] = tool_optarg;
        } else if (c == 'r') {
            char *end;
            max_rows = strtoll(tool_optarg, &end, 10);
            if (!*tool_optarg || *end || max_rows < 0) {
                fprintf(stderr, "mdeploy-embed: bad value '%s' for --max-rows (a count >= 0)\n", tool_optarg);
                return 1;
            }
        } else if (path) {
            fprintf(stderr, "mdeploy-embed: more than one model given ('%s' and '%s')\n", path, tool_optarg);
            return 2;
        } else path = tool_optarg;
    }
    if (!path) return tool_usage_error(&cli, "no model given");
    if (!name) return tool_usage_error(&cli, "-n NAME is required");
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
              (c > name && *c >= '0' && *c <= '9'))) {
            fprintf(stderr, "mdeploy-embed: NAME '%s' is not a C identifier\n", name);
            return 1;
        }
    /* The firmware packs weights for its portable kernels: measure those, not this CPU's. */
    setenv("MDL_CPU_LEVEL", "0", 1);

    size_t size = 0;
    void *file = read_all(path, &size);
    void *data = file ? aligned_copy(file, size) : NULL;
    if (!data) {
        fprintf(stderr, "mdeploy-embed: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    bool used[NKERNELS] = {false};
    int nused = find_kernels(data, size, used);
    if (nused < 0) return 1;

    /* load once more, counting what the loader takes from its allocator */
    mdl_op_resolver_entry entries[NKERNELS];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, entries, NKERNELS);
    for (int k = 0; k < NKERNELS; k++)
        if (used[k]) all_kernels[k].add(&r);
    size_t heap_size = 64 * size + ((size_t)64 << 20);
    void *heap = malloc(heap_size);
    mdl_bump bump;
    mdl_allocator a = mdl_bump_init(&bump, heap, heap_size);
    mdl_load_options o = mdl_load_options_default();
    o.allocator = &a;
    o.resolver = &r;
    mdl_model *m;
    mdl_error err;
    if (!heap || mdl_model_load_buffer(data, size, &o, &m, &err) != MDL_OK) {
        fprintf(stderr, "mdeploy-embed: %s\n", heap ? err.msg : "out of memory");
        return 1;
    }
    if (mdl_model_symbol_count(m) > 0) {
        const char *sym = "";
        int64_t max = 0, init = 0;
        mdl_model_symbol(m, 0, &sym, &max, &init);
        fprintf(stderr,
                "mdeploy-embed: %s has dynamic dims (e.g. '%s'): a firmware image needs fixed shapes "
                "(its arena is sized at compile time); convert with --input-shape\n",
                path, sym);
        return 1;
    }

    char hpath[4096], cpath[4096];
    snprintf(hpath, sizeof hpath, "%s/%s.h", dir, name);
    snprintf(cpath, sizeof cpath, "%s/%s.c", dir, name);
    FILE *h = fopen(hpath, "w"), *c = fopen(cpath, "w");
    if (!h || !c) {
        fprintf(stderr, "mdeploy-embed: cannot write %s: %s\n", !h ? hpath : cpath, strerror(errno));
        return 1;
    }
    fprintf(h, "/* Generated by mdeploy-embed from %s: do not edit. */\n", path);
    fprintf(h, "#ifndef %s_H\n#define %s_H\n\n#include \"mdeploy/resolver.h\"\n\n", name, name);
    fprintf(h, "#include <stddef.h>\n#include <stdint.h>\n\n");
    fprintf(h, "#define %s_MODEL_BYTES %zu\n", name, size);
    fprintf(h, "#define %s_TENSOR_COUNT %d\n", name, mdl_model_tensor_count(m));
    fprintf(h, "#define %s_ACTIVATION_BYTES %zu\n", name, mdl_model_activation_bytes(m));
    fprintf(h, "/* == mdl_model_arena_size() on the target that compiles this */\n");
    fprintf(h, "#define %s_ARENA_BYTES MDL_SESSION_ARENA_BYTES(%s_TENSOR_COUNT, %s_ACTIVATION_BYTES)\n",
            name, name, name);
    fprintf(h, "/* model-owned memory of mdl_model_load_buffer (host-measured upper bound) */\n");
    fprintf(h, "#define %s_LOAD_BYTES %zu\n", name, bump.used);
    fprintf(h, "#define %s_WEIGHT_BYTES %zu\n\n", name, mdl_model_weight_bytes(m));
    fprintf(h, "/* The kernels this model needs: X(OPERATOR, DTYPE). */\n#define %s_OPS(X)", name);
    for (int k = 0; k < NKERNELS; k++)
        if (used[k]) fprintf(h, " \\\n    X(%s, %s)", all_kernels[k].op, all_kernels[k].dtype);
    fprintf(h, "\n#define %s_OP_COUNT %d\n", name, nused);
    bool planner = mdl_model_needs_load_planner(m);
    fprintf(h, "/* 1: the loader widens weights or plans the arena (mdl_op_resolver_add_load_planner) */\n");
    fprintf(h, "#define %s_LOAD_PLANNER %d\n\n", name, planner ? 1 : 0);
    fprintf(h, "extern const uint8_t %s_model[%zu];\n\n", name, size);
    fprintf(h, "/* Registers the model's kernels in r (capacity >= %s_OP_COUNT)%s. */\n", name,
            planner ? " and the load planner" : "");
    fprintf(h, "static inline mdl_status %s_register(mdl_op_resolver *r) {\n    mdl_status st = MDL_OK;\n", name);
    if (planner) fprintf(h, "    if (st == MDL_OK) st = mdl_op_resolver_add_load_planner(r);\n");
    for (int k = 0; k < NKERNELS; k++)
        if (used[k])
            fprintf(h, "    if (st == MDL_OK) st = MDL_OP_RESOLVER_ADD(r, %s, %s);\n", all_kernels[k].op,
                    all_kernels[k].dtype);
    fprintf(h, "    return st;\n}\n");

    fprintf(c, "/* Generated by mdeploy-embed from %s: do not edit. */\n#include \"%s.h\"\n\n", path, name);
    char sym[256];
    snprintf(sym, sizeof sym, "%s_model", name);
    write_bytes(c, sym, data, size);

    if (ninputs) {
        if (ninputs != mdl_model_input_count(m)) {
            fprintf(stderr, "mdeploy-embed: the model has %d inputs, %d .npy files given\n",
                    mdl_model_input_count(m), ninputs);
            return 1;
        }
        fprintf(h, "\n#define %s_INPUT_COUNT %d\n", name, ninputs);
        for (int i = 0; i < ninputs; i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            mdl_npy x;
            if (mdl_npy_read(inputs[i], &x, &err) != MDL_OK) {
                fprintf(stderr, "mdeploy-embed: %s\n", err.msg);
                return 1;
            }
            bool rows_ok = x.dtype == ti.dtype && x.rank == ti.rank && ti.rank > 0 &&
                           ti.dims[0] > 0 && x.dims[0] >= ti.dims[0] &&
                           !memcmp(x.dims + 1, ti.dims + 1, sizeof(int64_t) * (size_t)(ti.rank - 1));
            int64_t rows = rows_ok ? x.dims[0] / ti.dims[0] : 0;
            if (max_rows > 0 && rows > max_rows) rows = max_rows;
            if (i == 0) nrows = rows;
            else if (rows_ok && rows < nrows) rows_ok = false; /* every input needs input 0's rows */
            rows = nrows;
            if (!rows_ok) {
                fprintf(stderr, "mdeploy-embed: %s: %s with %zu bytes does not fit input %d '%s' (%s, %zu bytes)\n",
                        inputs[i], mdl_dtype_name(x.dtype), x.bytes, i, ti.name, mdl_dtype_name(ti.dtype),
                        ti.bytes);
                return 1;
            }
            snprintf(sym, sizeof sym, "%s_input%d", name, i);
            size_t bytes = (size_t)rows * ti.bytes;
            fprintf(h, "extern const uint8_t %s[%zu]; /* '%s' %s: %lld row(s) of %zu bytes */\n",
                    sym, bytes ? bytes : 1, ti.name, mdl_dtype_name(ti.dtype), (long long)rows, ti.bytes);
            write_bytes(c, sym, x.data, bytes);
            char npath[4096];
            snprintf(npath, sizeof npath, "%s/%s.in%d.npy", dir, name, i);
            int64_t dims[MDL_MAX_RANK];
            memcpy(dims, ti.dims, sizeof(int64_t) * (size_t)ti.rank);
            dims[0] *= rows;
            if (mdl_npy_write(npath, ti.dtype, ti.rank, dims, x.data, &err) != MDL_OK) {
                fprintf(stderr, "mdeploy-embed: %s\n", err.msg);
                return 1;
            }
            mdl_npy_free(&x);
        }
    }
    fprintf(h, "\n#endif\n");
    bool ok = !ferror(h) && !ferror(c);
    ok = (fclose(h) == 0) && ok;
    ok = (fclose(c) == 0) && ok;
    if (!ok) {
        fprintf(stderr, "mdeploy-embed: write error in %s\n", dir);
        return 1;
    }
    printf("%s: %zu bytes, %d kernels, arena %zu bytes (host), load %zu bytes\n", name, size, nused,
           mdl_model_arena_size(m), bump.used);
    mdl_model_free(m);
    free(heap);
    free(data);
    free(file);
    return 0;
}
