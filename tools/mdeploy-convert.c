/* mdeploy-convert: ONNX model -> .mdl file (the CLI over mdl_convert_onnx). */
#include "mdeploy/convert.h"
#include "seal_util.h"
#include "tool_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The options; a value option's key is 256 + its case in main's switch (-o/--output: 'o'). */
enum { OPT_PER_TENSOR = 300, OPT_PRUNE_SENSITIVITY };
static const tool_opt opts[] = {
    {"output", 'o', "FILE", "the .mdl file to write (required)"},
    {"input-shape", 256 + 2, "NAME=DIMS", "fix an input's dynamic dims, e.g. x=1x3x224x224\n"
                                          "(repeatable; dynamic dims not given stay dynamic: each session chooses them)"},
    {"max-shape", 256 + 16, "NAME=DIMS", "upper bounds of an input's dynamic dims, e.g. ids=64x512\n"
                                         "(repeatable; sessions may not exceed them)"},
    {"name", 256 + 3, "N", "model name (default: the ONNX graph name)"},
    {"model-version", 256 + 4, "V", "model version (default: the ONNX model_version)"},
    {"description", 256 + 5, "D", "description (default: the ONNX doc_string)"},
    {"metadata", 256 + 17, "KEY=VALUE", "extra metadata (repeatable; the ONNX metadata_props\n"
                                        "are carried over, a key given here replaces one)"},
    {NULL, 0, NULL, "post-training quantization"},
    {"quantize", 256 + 6, "int8", "int8 weights and activations (calibrated)"},
    {"calibration", 256 + 7, "DATA", ".npy (one input), .npz (arrays by input name) or a\n"
                                     "directory of them; N rows of each input, any N"},
    {"calibration-method", 256 + 8, "M", "minmax (default), percentile or entropy (KL)"},
    {"percentile", 256 + 9, "P", "percentile method's clip point (default 99.99)"},
    {"max-calibration-rows", 256 + 15, "N", "use at most N calibration rows"},
    {"per-tensor", OPT_PER_TENSOR, NULL, "one weight scale per tensor (default: per channel)"},
    {"float-ops", 256 + 10, "NAME,...", "keep these nodes in float"},
    {"eval", 256 + 11, "X.npy [Y.npy]", "measure on these rows (Y: integer labels); also without --quantize:\n"
                                        "top-1 of the float source and of the converted model, both run by\n"
                                        "the runtime"},
    {"max-accuracy-drop", 256 + 12, "P", "keep the most sensitive layers float until top-1 drops\n"
                                         "at most P points (needs --eval X Y)"},
    {"max-output-error", 256 + 13, "E", "same, until max |int8 - float| <= E"},
    {NULL, 0, NULL, "pruning and sparse weights"},
    {"prune", 256 + 18, "magnitude:S|channels:S",
     "magnitude:S zeroes the weakest 8x1 weight blocks of the prunable layers\n"
     "(FullyConnected, MatMul with constant B, Conv2D without groups) until a share S in\n"
     "[0, 1) of their weights is 0; channels:S removes the share S of the filters / units of\n"
     "smallest L1 norm of each Conv2D / FullyConnected whose channels reach one Conv2D or\n"
     "FullyConnected (through pooling, ReLU), shrinking it too (repeatable: both kinds)"},
    {"prune-layer", 256 + 19, "NAME=S", "prune that layer alone at S (repeatable; 0 keeps it)"},
    {"sparse-density", 256 + 20, "D", "store a prunable layer sparse when the share of its 8x1 blocks\n"
                                      "holding a non-zero is below D (default: 0.7 FullyConnected/MatMul,\n"
                                      "0.5 Conv2D; 0 never); sparsity already in the weights is found\n"
                                      "without --prune"},
    {"prune-sensitivity", OPT_PRUNE_SENSITIVITY, NULL, "with --eval X Y: top-1 per prunable layer pruned alone\n"
                                                       "at 0.5, 0.7, 0.8, 0.9 and 0.95 (float conversions)"},
    {NULL, 0, NULL, "self-test vectors (mdl_model_selftest, mdeploy-inspect --verify, hot swap)"},
    {"selftest-from", 256 + 24, "[NAME=]X.npy", "an input of the stored cases (repeatable: every\n"
                                                "input once; one case, or N stacked on a new first axis)"},
    {"selftest-expect", 256 + 25, "[NAME=]Y.npy", "expected outputs from an outside oracle (e.g.\n"
                                                  "ONNX Runtime); without: the converted model's outputs"},
    {"selftest-oracle", 256 + 26, "NAME", "the oracle's name stored in the file"},
    {"selftest-tolerance", 256 + 27, "ATOL[,RTOL]", "default 1e-4,1e-3 (0,0: exact)"},
    {NULL, 0, NULL, "report, security"},
    {"report", 256 + 14, "FILE.json", "write the conversion report (quantization, pruning)"},
    {"security-counter", 256 + 21, "N", "anti-rollback counter (loaders refuse below their\n"
                                        "min_counter); the version is --model-version"},
    {"sign", 256 + 22, "KEY", "sign with this Ed25519 secret key (mdeploy-keygen --sign)"},
    {"encrypt", 256 + 23, "KEY", "encrypt the model at rest (mdeploy-keygen --encryption)"},
    {"quiet", 'q', NULL, "no summary"},
};
static const tool_cli cli = {
    "mdeploy-convert", "Converts an ONNX model to a .mdl file (fold, fuse, plan; optionally quantize, prune, sign).",
    "MODEL.onnx -o MODEL.mdl [options]", opts, TOOL_NOPTS(opts),
    "mdeploy-convert net.onnx -o net.mdl --model-version 1.0\n"
    "mdeploy-convert net.onnx -o net.mdl --input-shape x=1x3x224x224\n"
    "mdeploy-convert net.onnx --output=net_int8.mdl --quantize int8 --calibration calib.npy --eval x.npy y.npy\n"
    "mdeploy-convert net.onnx -o net.mdl --prune magnitude:0.8 --report report.json",
};

static void human(char *buf, size_t size, size_t bytes) {
    if (bytes >= 10u * 1024 * 1024) snprintf(buf, size, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    else if (bytes >= 10u * 1024) snprintf(buf, size, "%.1f KiB", (double)bytes / 1024.0);
    else snprintf(buf, size, "%zu B", bytes);
}

typedef struct bar {
    struct timespec t0;
    const char *stage;
    int last_len;
    double last_print;
} bar;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A progress bar with counts and ETA, on a terminal only. */
static void on_progress(void *user, const char *stage, int64_t done, int64_t total) {
    bar *b = user;
    static const char *const shown[] = {"calibrate", "evaluate", "sensitivity", "budget"};
    bool show = false;
    for (int k = 0; k < 4; k++) show = show || !strcmp(stage, shown[k]);
    if (!show || total <= 0) return;
    if (!b->stage || strcmp(b->stage, stage) || done == 0) {
        b->stage = stage;
        b->t0.tv_sec = 0;
        b->t0.tv_nsec = (long)0;
        double t = now_s();
        b->t0.tv_sec = (time_t)t;
        b->t0.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    }
    double t = now_s(), el = t - ((double)b->t0.tv_sec + 1e-9 * (double)b->t0.tv_nsec);
    if (done > 0 && done < total && t - b->last_print < 0.1) return; /* ~10 updates a second */
    b->last_print = t;
    double eta = done > 0 ? el / (double)done * (double)(total - done) : 0;
    int width = 30, fill = (int)(width * done / total);
    char line[160];
    int n = snprintf(line, sizeof line, "\r%-11s [%.*s%*s] %lld/%lld  %.1fs  ETA %.1fs", stage, fill,
                     "##############################", width - fill, "", (long long)done, (long long)total, el, eta);
    fprintf(stderr, "%s%*s", line, b->last_len > n ? b->last_len - n : 0, "");
    b->last_len = n;
    if (done == total) {
        fputc('\n', stderr);
        b->last_len = 0;
    }
    fflush(stderr);
}

static void print_quant(const mdl_quant_report *q) {
    char a[32], b[32];
    human(a, sizeof a, q->float_file_bytes);
    human(b, sizeof b, q->int8_file_bytes);
    printf("  quantize: int8, %s calibration on %lld rows, %s weights\n", q->method,
           (long long)q->calibration_rows, q->per_tensor ? "per-tensor" : "per-channel");
    printf("  layers:   %d int8, %d float/hybrid\n", (int)q->int8_ops, (int)q->float_ops);
    printf("  size:     float %s -> int8 %s (%.2fx smaller)\n", a, b,
           q->int8_file_bytes ? (double)q->float_file_bytes / (double)q->int8_file_bytes : 0.0);
    printf("  measured on %lld %s rows:\n", (long long)q->eval_rows, q->eval_is_calibration ? "calibration" : "eval");
    if (!isnan(q->float_accuracy))
        printf("    top-1 accuracy  float %.2f%%  int8 %.2f%%  (drop %.2f points)\n", q->float_accuracy,
               q->int8_accuracy, q->float_accuracy - q->int8_accuracy);
    if (!isnan(q->top1_agreement)) printf("    top-1 agreement with float %.2f%%\n", q->top1_agreement);
    printf("    output error    max %.4g  mean %.4g\n", q->max_abs_error, q->mean_abs_error);
    if (q->budget[0])
        printf("  budget:   %s <= %g: %s (%.4g), %d layer(s) kept float for it\n", q->budget, q->budget_limit,
               q->budget_met ? "met" : "NOT met", q->budget_value, (int)q->nkept_float);
    printf("  %-44s %-15s %-9s %9s %9s  %s\n", "layer", "op", "precision", "SQNR dB", "impact", "why float");
    for (int32_t i = 0; i < q->nlayers; i++) {
        const mdl_quant_layer *l = &q->layers[i];
        char sq[16], im[16];
        if (isnan(l->sqnr_db)) snprintf(sq, sizeof sq, "-");
        else if (isinf(l->sqnr_db)) snprintf(sq, sizeof sq, "exact");
        else snprintf(sq, sizeof sq, "%.1f", l->sqnr_db);
        if (isnan(l->impact)) snprintf(im, sizeof im, "-");
        else snprintf(im, sizeof im, "%.4g", l->impact);
        printf("  %-44s %-15s %-9s %9s %9s  %s\n", l->name, l->op, l->precision, sq, im, l->reason);
    }
}

/* The prunable layers: always with pruning, else when one is stored sparse. */
static void print_prune(const mdl_convert_report *r, bool pruned) {
    bool any = pruned;
    for (int32_t i = 0; i < r->nprune_layers; i++) any = any || !strncmp(r->prune_layers[i].storage, "sparse", 6);
    if (!any || !r->nprune_layers) return;
    printf("  %-44s %-15s %9s %9s %8s %-10s %10s\n", "prunable layer", "op", "weights", "sparsity",
           "blocks", "storage", "bytes");
    for (int32_t i = 0; i < r->nprune_layers; i++) {
        const mdl_prune_layer *l = &r->prune_layers[i];
        char b[32];
        human(b, sizeof b, l->bytes);
        printf("  %-44s %-15s %9lld %8.1f%% %7.1f%% %-10s %10s\n", l->name, l->op, (long long)l->weights,
               100 * l->sparsity, 100 * l->block_density, l->storage, b);
    }
}

/* ---- --eval X Y and --prune-sensitivity ----------------------------------------------------- */

static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    long n = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    char *p = n >= 0 && !fseek(f, 0, SEEK_SET) ? malloc((size_t)n + 1) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *size = p ? (size_t)n : 0;
    return p;
}

/* What the summary prints after the rest (malloc'd; "" when nothing). */
static char *eval_printed;

/* Appends printf-style text to a malloc'd string. */
static void append(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(char **s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    size_t len = *s ? strlen(*s) : 0;
    char *p = realloc(*s, len + (size_t)n + 1);
    if (!p) return;
    va_start(ap, fmt);
    vsnprintf(p + len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *s = p;
}

static void append_json_str(char **s, const char *v) {
    append(s, "\"");
    for (const unsigned char *q = (const unsigned char *)v; *q; q++) {
        if (*q == '"' || *q == '\\') append(s, "\\%c", *q);
        else if (*q < 0x20) append(s, "\\u%04x", *q);
        else append(s, "%c", *q);
    }
    append(s, "\"");
}

/* Top-1 of the float source (converted as it is: no pruning, no quantization) and of the
   written model, both run by the runtime (mdl_eval_top1); with sensitivity, of float conversions
   with one prunable layer pruned at each of a few sparsities.  Adds an "eval" member to the
   report JSON (*json_out, malloc'd) and the lines to print.  1 on failure (message printed). */
static int eval_and_report(const char *in, const char *out, const char *x, const char *y, bool sensitivity,
                           bool quiet, const char *json, char **json_out) {
    mdl_error err;
    size_t osize = 0, msize = 0;
    void *onnx = read_all(in, &osize), *conv = read_all(out, &msize), *fl = NULL;
    double before = NAN, after = NAN;
    int64_t rows = 0;
    int rc = 1;
    mdl_convert_report fr;
    memset(&fr, 0, sizeof fr);
    mdl_convert_options fo = mdl_convert_options_default();
    fo.prune.max_density = 1; /* every prunable layer listed (stored sparse: the same values) */
    size_t fsize;
    char *js = NULL;
    if (!onnx || !conv) {
        fprintf(stderr, "mdeploy-convert: --eval: cannot read '%s'\n", onnx ? out : in);
        goto done;
    }
    if (mdl_convert_onnx_buffer(onnx, osize, &fl, &fsize, &fo, &fr, &err) ||
        mdl_eval_top1(fl, fsize, x, y, &before, &rows, &err) || mdl_eval_top1(conv, msize, x, y, &after, &rows, &err)) {
        fprintf(stderr, "mdeploy-convert: %s\n", err.msg);
        goto done;
    }
    append(&eval_printed, "  eval on %lld rows: top-1 float source %.2f%%, converted %.2f%% (%+.2f points)\n",
           (long long)rows, before, after, after - before);
    append(&js, "\"eval\": {\"rows\": %lld, \"float_accuracy\": %.4f, \"accuracy\": %.4f", (long long)rows,
           before, after);
    if (sensitivity) {
        static const double levels[] = {0.5, 0.7, 0.8, 0.9, 0.95};
        enum { NL = sizeof levels / sizeof levels[0] };
        append(&eval_printed, "  prune sensitivity (top-1 %%, float, that layer alone pruned):\n  %-44s", "layer");
        for (int k = 0; k < NL; k++) append(&eval_printed, " %7.0f%%", 100 * levels[k]);
        append(&eval_printed, "\n");
        append(&js, ", \"sensitivity\": [");
        for (int32_t i = 0, listed = 0; i < fr.nprune_layers; i++) {
            const char *name = fr.prune_layers[i].name;
            if (strchr(name, ',') || strchr(name, '=')) continue; /* not expressible as NAME=S */
            append(&eval_printed, "  %-44s", name);
            append(&js, "%s\n    {\"layer\": ", listed++ ? "," : "");
            append_json_str(&js, name);
            append(&js, ", \"sparsity\": [");
            for (int k = 0; k < NL; k++) {
                char spec[1024];
                snprintf(spec, sizeof spec, "%s=%g", name, levels[k]);
                mdl_convert_options po = mdl_convert_options_default();
                po.prune.layers = spec;
                void *pm = NULL;
                size_t psize;
                double acc;
                if (mdl_convert_onnx_buffer(onnx, osize, &pm, &psize, &po, NULL, &err) ||
                    mdl_eval_top1(pm, psize, x, y, &acc, &rows, &err)) {
                    free(pm);
                    fprintf(stderr, "mdeploy-convert: --prune-sensitivity %s: %s\n", spec, err.msg);
                    goto done;
                }
                free(pm);
                append(&eval_printed, " %7.2f%%", acc);
                append(&js, "%s[%g, %.4f]", k ? ", " : "", levels[k], acc);
            }
            append(&eval_printed, "\n");
            append(&js, "]}");
        }
        append(&js, "\n  ]");
    }
    append(&js, "}");
    /* the report with "eval" as its last member */
    {
        const char *base = json ? json : "{\n}\n";
        size_t n = strlen(base);
        while (n && base[n - 1] != '}') n--;
        size_t keep = n ? n - 1 : 0;
        while (keep && (base[keep - 1] == '\n' || base[keep - 1] == ' ')) keep--;
        bool empty = keep && base[keep - 1] == '{';
        *json_out = NULL;
        append(json_out, "%.*s%s\n  %s\n}\n", (int)keep, base, empty ? "" : ",", js);
    }
    rc = 0;
done:
    (void)quiet;
    free(js);
    free(onnx);
    free(conv);
    free(fl);
    mdl_convert_report_free(&fr);
    return rc;
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *report_path = NULL;
    bool quiet = false, sensitivity = false;
    mdl_convert_options o = mdl_convert_options_default();
    mdl_error err;
    bar pb;
    memset(&pb, 0, sizeof pb);
    const char *sign_key = NULL, *enc_key = NULL; /* --sign, --encrypt (tools/seal_util.h) */
    /* --selftest-from / --selftest-expect [NAME=]FILE entries */
    const char *st_names[2][argc + 1], *st_paths[2][argc + 1];
    o.selftest.input_names = st_names[0];
    o.selftest.input_paths = st_paths[0];
    o.selftest.output_names = st_names[1];
    o.selftest.output_paths = st_paths[1];
    /* --metadata KEY=VALUE pairs: the argument split in place at its first '=' */
    const char *meta_keys[argc + 1], *meta_values[argc + 1];
    /* --prune-layer entries joined with commas (mdl_prune_options.layers) */
    size_t layers_cap = 1;
    for (int i = 1; i < argc; i++) layers_cap += strlen(argv[i]) + 1;
    char prune_layers[layers_cap];
    prune_layers[0] = 0;
    o.metadata_keys = meta_keys;
    o.metadata_values = meta_values;
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        const char *a = tool_optarg;
        char *val = (char *)tool_optarg; /* points into argv (split in place below) */
        int which = c == 'o' ? 1 : c >= 256 && c < 256 + 28 ? c - 256 : -1;
        char opt_name[32] = "";
        for (int k = 0; k < cli.nopts; k++)
            if (cli.opts[k].name && cli.opts[k].key == c) snprintf(opt_name, sizeof opt_name, "--%s", cli.opts[k].name);
        char *end = NULL;
        switch (which) {
        case 0:
        case 1: out = val; continue;
        case 2:
            if (o.ninput_shapes == MDL_CONVERT_MAX_SHAPES) {
                fprintf(stderr, "mdeploy-convert: at most %d --input-shape options\n", MDL_CONVERT_MAX_SHAPES);
                return 1;
            }
            if (mdl_parse_input_shape(val, &o.input_shapes[o.ninput_shapes], &err) != MDL_OK) {
                fprintf(stderr, "mdeploy-convert: %s\n", err.msg);
                return 1;
            }
            o.ninput_shapes++;
            continue;
        case 3: o.name = val; continue;
        case 4: o.model_version = val; continue;
        case 5: o.description = val; continue;
        case 6:
            if (strcmp(val, "int8")) {
                fprintf(stderr, "mdeploy-convert: --quantize '%s': only int8 is supported\n", val);
                return 1;
            }
            o.quant.mode = MDL_QUANTIZE_INT8;
            continue;
        case 7: o.quant.calibration = val; continue;
        case 8:
            if (!strcmp(val, "minmax")) o.quant.method = MDL_CALIBRATION_MINMAX;
            else if (!strcmp(val, "percentile")) o.quant.method = MDL_CALIBRATION_PERCENTILE;
            else if (!strcmp(val, "entropy")) o.quant.method = MDL_CALIBRATION_ENTROPY;
            else {
                fprintf(stderr, "mdeploy-convert: --calibration-method '%s': expected minmax, percentile or entropy\n", val);
                return 1;
            }
            continue;
        case 9:
        case 12:
        case 13: {
            double v = strtod(val, &end);
            if (!*val || *end || !(v > 0)) {
                fprintf(stderr, "mdeploy-convert: %s '%s': expected a positive number\n", opt_name, val);
                return 1;
            }
            if (which == 9) o.quant.percentile = v;
            else if (which == 12) o.quant.max_accuracy_drop = v;
            else o.quant.max_output_error = v;
            continue;
        }
        case 10: o.quant.float_ops = val; continue;
        case 11:
            o.quant.eval_inputs = val;
            /* an optional second file: the labels (positionals come in order: no permutation) */
            if (optind < argc && argv[optind][0] != '-' && strlen(argv[optind]) > 4 &&
                !strcmp(argv[optind] + strlen(argv[optind]) - 4, ".npy"))
                o.quant.eval_labels = argv[optind++];
            continue;
        case 14: report_path = val; continue;
        case 15: {
            long long v = strtoll(val, &end, 10);
            if (!*val || *end || v <= 0) {
                fprintf(stderr, "mdeploy-convert: --max-calibration-rows '%s': expected a positive integer\n", val);
                return 1;
            }
            o.quant.max_calibration_rows = v;
            continue;
        }
        case 16:
            if (o.nmax_shapes == MDL_CONVERT_MAX_SHAPES) {
                fprintf(stderr, "mdeploy-convert: at most %d --max-shape options\n", MDL_CONVERT_MAX_SHAPES);
                return 1;
            }
            if (mdl_parse_input_shape(val, &o.max_shapes[o.nmax_shapes], &err) != MDL_OK) {
                fprintf(stderr, "mdeploy-convert: --max-shape %s\n", err.msg);
                return 1;
            }
            o.nmax_shapes++;
            continue;
        case 17: {
            char *eq = strchr(val, '=');
            if (!eq || eq == val) {
                fprintf(stderr, "mdeploy-convert: --metadata '%s': expected KEY=VALUE\n", val);
                return 1;
            }
            *eq = 0; /* val points into argv */
            meta_keys[o.nmetadata] = val;
            meta_values[o.nmetadata++] = eq + 1;
            continue;
        }
        case 18: {
            double v = NAN;
            bool chan = !strncmp(val, "channels:", 9);
            size_t skip = chan ? 9 : 10;
            if (chan || !strncmp(val, "magnitude:", 10)) v = strtod(val + skip, &end);
            if (!end || end == val + skip || *end || !(v >= 0 && v < 1)) {
                fprintf(stderr, "mdeploy-convert: --prune '%s': expected magnitude:S or channels:S with S in [0, 1)\n",
                        val);
                return 1;
            }
            if (chan) o.prune.channels = v;
            else o.prune.sparsity = v;
            continue;
        }
        case 19:
            if (!strchr(val, '=') || strchr(val, ',')) {
                fprintf(stderr, "mdeploy-convert: --prune-layer '%s': expected NAME=S\n", val);
                return 1;
            }
            if (prune_layers[0]) strcat(prune_layers, ",");
            strcat(prune_layers, val);
            o.prune.layers = prune_layers;
            continue;
        case 20: {
            double v = strtod(val, &end);
            if (!*val || *end || !(v >= 0)) {
                fprintf(stderr, "mdeploy-convert: --sparse-density '%s': expected a number >= 0\n", val);
                return 1;
            }
            o.prune.max_density = v > 0 ? v : -1;
            continue;
        }
        case 21: /* a dedicated metadata key of the builder (mdl_builder_set_metadata) */
            meta_keys[o.nmetadata] = "security_counter";
            meta_values[o.nmetadata++] = val;
            continue;
        case 22: sign_key = val; continue;
        case 23: enc_key = val; continue;
        case 24:
        case 25: {
            int io = which == 25;
            int32_t *n = io ? &o.selftest.noutputs : &o.selftest.ninputs;
            char *eq = strchr(val, '=');
            if (eq) *eq = 0; /* val points into argv */
            st_names[io][*n] = eq ? val : NULL;
            st_paths[io][(*n)++] = eq ? eq + 1 : val;
            continue;
        }
        case 26: o.selftest.oracle = val; continue;
        case 27: {
            double at = strtod(val, &end), rt = o.selftest.rtol;
            if (end != val && *end == ',') rt = strtod(end + 1, &end);
            if (!*val || *end || !(at >= 0) || !(rt >= 0)) {
                fprintf(stderr, "mdeploy-convert: --selftest-tolerance '%s': expected ATOL[,RTOL] >= 0\n", val);
                return 1;
            }
            o.selftest.atol = at;
            o.selftest.rtol = rt;
            continue;
        }
        default: break;
        }
        if (c == 'q') {
            quiet = true;
        } else if (c == OPT_PER_TENSOR) {
            o.quant.per_tensor = true;
        } else if (c == OPT_PRUNE_SENSITIVITY) {
            sensitivity = true;
        } else if (in) {
            fprintf(stderr, "mdeploy-convert: more than one input model ('%s', '%s')\n", in, a);
            return 1;
        } else {
            in = a;
        }
    }
    if (!in) return tool_usage_error(&cli, "no ONNX model given");
    if (!out) return tool_usage_error(&cli, "-o MODEL.mdl is required");
    /* --eval X Y: top-1 before and after (eval_and_report); without --quantize it is that alone */
    const char *eval_x = o.quant.eval_labels ? o.quant.eval_inputs : NULL, *eval_y = o.quant.eval_labels;
    if (sensitivity && !eval_y) {
        fprintf(stderr, "mdeploy-convert: --prune-sensitivity needs --eval X.npy Y.npy (rows and labels)\n");
        return 1;
    }
    if (o.quant.mode == MDL_QUANTIZE_NONE && eval_y) o.quant.eval_inputs = o.quant.eval_labels = NULL;
    if (o.quant.mode == MDL_QUANTIZE_NONE &&
        (o.quant.calibration || o.quant.eval_inputs || o.quant.float_ops || o.quant.per_tensor ||
         o.quant.max_accuracy_drop > 0 || o.quant.max_output_error > 0)) {
        fprintf(stderr, "mdeploy-convert: quantization options need --quantize int8\n");
        return 1;
    }
    if (!quiet && isatty(STDERR_FILENO)) {
        o.quant.progress = on_progress;
        o.quant.progress_user = &pb;
    }
    mdl_convert_report r;
    if (mdl_convert_onnx(in, out, &o, &r, &err) != MDL_OK) {
        if (pb.last_len) fputc('\n', stderr);
        fprintf(stderr, "mdeploy-convert: %s\n", err.msg);
        return 1;
    }
    if ((sign_key || enc_key) && !seal_file(out, out, sign_key, enc_key, "mdeploy-convert")) {
        remove(out); /* not left unsigned or unencrypted */
        mdl_convert_report_free(&r);
        return 1;
    }
    const char *json = mdl_convert_report_json(&r);
    char *eval_json = NULL;
    if (eval_y && eval_and_report(in, out, eval_x, eval_y, sensitivity, quiet, json, &eval_json)) {
        remove(out); /* no output file on failure */
        mdl_convert_report_free(&r);
        return 1;
    }
    if (eval_json) json = eval_json;
    if (report_path) {
        FILE *f = fopen(report_path, "w");
        if (!f || fputs(json ? json : "{}\n", f) < 0 || fclose(f)) {
            fprintf(stderr, "mdeploy-convert: cannot write the report '%s'\n", report_path);
            free(eval_json);
            free(eval_printed);
            mdl_convert_report_free(&r);
            return 1;
        }
    }
    if (!quiet) {
        char w[32], a[32], f[32];
        human(w, sizeof w, r.weight_bytes);
        human(a, sizeof a, r.arena_bytes);
        human(f, sizeof f, r.file_bytes);
        printf("%s -> %s (opset %lld)\n", in, out, (long long)r.opset);
        printf("  ops:     %d ONNX nodes -> %d operators (%d folded, %d fused, %d removed)\n",
               (int)r.onnx_nodes, (int)r.nodes_out, (int)r.folded, (int)r.fused, (int)r.removed);
        printf("  weights: %s   arena: %s%s   file: %s\n", w, a, r.nsymbols ? " (at the initial sizes)" : "", f);
        if (r.nsymbols)
            printf("  dynamic: %s (kept symbolic; sessions choose them, --input-shape fixes them)\n",
                   r.dynamic);
        if (r.quant) print_quant(r.quant);
        print_prune(&r, o.prune.sparsity > 0 || o.prune.layers);
        if (eval_printed) fputs(eval_printed, stdout);
        if (o.selftest.ninputs)
            printf("  selftest: vectors stored and passed (oracle %s, atol %g, rtol %g)\n",
                   o.selftest.oracle ? o.selftest.oracle : o.selftest.noutputs ? "external" : "mdeploy-convert",
                   o.selftest.atol, o.selftest.rtol);
    }
    free(eval_json);
    free(eval_printed);
    mdl_convert_report_free(&r);
    return 0;
}
