/* mdeploy-run: run a model on .npy inputs and write .npy outputs (options: the table below). */
#include "mdeploy/mdeploy.h"
#include "tool_util.h"
#include "mdeploy/npy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_IO 64

static const tool_opt opts[] = {
    {"input", 'i', "IN.npy", "an input, in the model's order (repeat for each input)"},
    {"output", 'o', "OUT.npy", "write an output, in the model's order (repeatable; the rest are not written)"},
    {"threads", 256, "N", "threads for the run (1..64, default 1; same results as 1)"},
    {"json", 257, NULL, "print shapes, dtypes and the run time as JSON"},
};
static const tool_cli cli = {
    "mdeploy-run", "Runs a .mdl model on .npy inputs and writes .npy outputs (an ONNX model: mdeploy-convert it first).",
    "MODEL.mdl -i IN.npy [-i IN2.npy ...] [-o OUT.npy ...] [--threads N] [--json]", opts, TOOL_NOPTS(opts),
    "mdeploy-run net.mdl -i x.npy -o y.npy\n"
    "mdeploy-run net.mdl --input=x.npy --output=y.npy --threads 2 --json",
};

static cJSON *tensor_json(const mdl_tensor_info *ti, const char *file) {
    cJSON *o = tool_tensor_json(ti);
    if (file) cJSON_AddStringToObject(o, "file", file);
    return o;
}

static int die(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "mdeploy-run: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *ins[MAX_IO], *outs[MAX_IO];
    int nin = 0, nout = 0;
    bool json = false;
    int threads = 1;
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        if (c == 257) json = true;
        else if (c == 256) {
            char *end;
            long v = strtol(tool_optarg, &end, 10);
            if (!*tool_optarg || *end || v < 1 || v > MDL_MAX_THREADS)
                return die("bad value '%s' for %s (1..64)", tool_optarg, "--threads");
            threads = (int)v;
        } else if (c == 'i' || c == 'o') {
            bool in = c == 'i';
            if ((in ? nin : nout) >= MAX_IO) return die("too many %s files%s", in ? "input" : "output", "");
            if (in) ins[nin++] = tool_optarg;
            else outs[nout++] = tool_optarg;
        } else if (!model_path) model_path = tool_optarg;
        else return die("more than one model given ('%s' and '%s')", model_path, tool_optarg);
    }
    if (!model_path) return tool_usage_error(&cli, "no model given");
    if (tool_is_onnx_path(model_path))
        return die("'%s' is an ONNX model: convert it first (mdeploy-convert %s -o MODEL.mdl)", model_path, model_path);
    mdl_error err;
    mdl_model *m = NULL;
    mdl_session *s = NULL;
    mdl_npy arrays[MAX_IO];
    memset(arrays, 0, sizeof arrays);
    int rc = 1;
    char a[128], b[128];
    if (mdl_model_load_file(model_path, NULL, &m, &err)) {
        fprintf(stderr, "mdeploy-run: %s\n", err.msg);
        return 1;
    }
    int mi = mdl_model_input_count(m), mo = mdl_model_output_count(m);
    if (nin != mi) {
        fprintf(stderr, "mdeploy-run: the model takes %d input%s, %d given with -i\n", mi, mi == 1 ? "" : "s", nin);
        goto done;
    }
    if (nout > mo) {
        fprintf(stderr, "mdeploy-run: the model has %d output%s, %d given with -o\n", mo, mo == 1 ? "" : "s", nout);
        goto done;
    }
    /* a model with dynamic dims runs at the arrays' shapes (the session checks them) */
    mdl_shape shapes[MAX_IO];
    bool dynamic = mdl_model_symbol_count(m) > 0;
    for (int i = 0; i < nin; i++) {
        if (mdl_npy_read(ins[i], &arrays[i], &err)) {
            fprintf(stderr, "mdeploy-run: %s\n", err.msg);
            goto done;
        }
        shapes[i].rank = arrays[i].rank;
        memcpy(shapes[i].dims, arrays[i].dims, sizeof shapes[i].dims);
    }
    mdl_session_options so = mdl_session_options_default();
    if (dynamic) {
        so.ninput_shapes = nin;
        so.input_shapes = shapes;
    }
    so.threads = threads;
    if (mdl_session_create(m, &so, &s, &err)) {
        fprintf(stderr, "mdeploy-run: %s\n", err.msg);
        goto done;
    }
    for (int i = 0; i < nin; i++) {
        mdl_tensor_info ti;
        mdl_session_input_info(s, i, &ti);
        const mdl_npy *x = &arrays[i];
        bool same = x->rank == ti.rank && !memcmp(x->dims, ti.dims, sizeof(int64_t) * (size_t)ti.rank);
        if (x->dtype != ti.dtype || !same) {
            fprintf(stderr, "mdeploy-run: input %d '%s' (%s) must be %s %s, got %s %s\n", i, ti.name,
                    ins[i], mdl_dtype_name(ti.dtype), tool_shape_str(a, sizeof a, ti.rank, ti.dims),
                    mdl_dtype_name(x->dtype), tool_shape_str(b, sizeof b, x->rank, x->dims));
            goto done;
        }
        mdl_session_set_input(s, i, x->data, x->bytes, NULL);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mdl_status st = mdl_session_run(s);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st) {
        fprintf(stderr, "mdeploy-run: %s\n", mdl_session_message(s));
        goto done;
    }
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    for (int i = 0; i < nout; i++) {
        mdl_tensor_info ti;
        mdl_session_output_info(s, i, &ti);
        if (mdl_npy_write(outs[i], ti.dtype, ti.rank, ti.dims, mdl_session_output_data(s, i), &err)) {
            fprintf(stderr, "mdeploy-run: %s\n", err.msg);
            goto done;
        }
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model_path);
        cJSON *ji = cJSON_AddArrayToObject(o, "inputs"), *jo = cJSON_AddArrayToObject(o, "outputs");
        for (int i = 0; i < mi; i++) {
            mdl_tensor_info ti;
            mdl_session_input_info(s, i, &ti);
            cJSON_AddItemToArray(ji, tensor_json(&ti, ins[i]));
        }
        for (int i = 0; i < mo; i++) {
            mdl_tensor_info ti;
            mdl_session_output_info(s, i, &ti);
            cJSON_AddItemToArray(jo, tensor_json(&ti, i < nout ? outs[i] : NULL));
        }
        cJSON_AddNumberToObject(o, "run_ms", ms);
        char *text = cJSON_Print(o);
        puts(text);
        free(text);
        cJSON_Delete(o);
    } else {
        printf("ran %s in %.3f ms\n", model_path, ms);
        for (int i = 0; i < mo; i++) {
            mdl_tensor_info ti;
            mdl_session_output_info(s, i, &ti);
            printf("output %d '%s': %s %s%s%s\n", i, ti.name, mdl_dtype_name(ti.dtype),
                   tool_shape_str(a, sizeof a, ti.rank, ti.dims), i < nout ? " -> " : "", i < nout ? outs[i] : "");
        }
    }
    rc = 0;
done:
    for (int i = 0; i < nin; i++) mdl_npy_free(&arrays[i]);
    mdl_session_free(s);
    mdl_model_free(m);
    return rc;
}
