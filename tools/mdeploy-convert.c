/* mdeploy-convert: ONNX model -> .mdl file (the CLI over mdl_convert_onnx). */
#include "mdeploy/convert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: mdeploy-convert MODEL.onnx -o MODEL.mdl [options]\n"
            "  -o, --output FILE          the .mdl file to write (required)\n"
            "  --input-shape NAME=DIMS    fix an input's dynamic dims, e.g. x=1x3x224x224\n"
            "                             (repeatable; dynamic dims not given stay dynamic:\n"
            "                             each session chooses them)\n"
            "  --max-shape NAME=DIMS      upper bounds of an input's dynamic dims, e.g. ids=64x512\n"
            "                             (repeatable; sessions may not exceed them)\n"
            "  --name N                   model name (default: the ONNX graph name)\n"
            "  --model-version V          model version (default: the ONNX model_version)\n"
            "  --description D            description (default: the ONNX doc_string)\n"
            "  -q, --quiet                no summary\n"
            "  -h, --help                 this help\n");
}

static void human(char *buf, size_t size, size_t bytes) {
    if (bytes >= 10u * 1024 * 1024) snprintf(buf, size, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    else if (bytes >= 10u * 1024) snprintf(buf, size, "%.1f KiB", (double)bytes / 1024.0);
    else snprintf(buf, size, "%zu B", bytes);
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    bool quiet = false;
    mdl_convert_options o = mdl_convert_options_default();
    mdl_error err;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* options that take a value: "--opt VALUE" or "--opt=VALUE" */
        const char *val = NULL;
        const char *names[] = {"-o", "--output", "--input-shape", "--name", "--model-version", "--description",
                               "--max-shape"};
        int which = -1;
        for (int k = 0; k < 7; k++) {
            size_t n = strlen(names[k]);
            if (!strcmp(a, names[k])) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "mdeploy-convert: %s needs a value\n", a);
                    return 1;
                }
                val = argv[++i];
                which = k;
            } else if (k > 0 && !strncmp(a, names[k], n) && a[n] == '=') {
                val = a + n + 1;
                which = k;
            }
            if (which >= 0) break;
        }
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
        default: break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "mdeploy-convert: unknown option '%s' (see --help)\n", a);
            return 1;
        } else if (in) {
            fprintf(stderr, "mdeploy-convert: more than one input model ('%s', '%s')\n", in, a);
            return 1;
        } else {
            in = a;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return 1;
    }
    mdl_convert_report r;
    if (mdl_convert_onnx(in, out, &o, &r, &err) != MDL_OK) {
        fprintf(stderr, "mdeploy-convert: %s\n", err.msg);
        return 1;
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
    }
    return 0;
}
