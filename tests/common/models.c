#include "models.h"

#include "harness.h"

#include "graph/model.h"
#include "graph/selftest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mdl_status tm_build_mlp(tm_mlp *p, uint64_t seed, void **data, size_t *size) {
    th_seed(seed);
    int64_t B = p->batch, I = p->in, H = p->hid, O = p->out;
    p->w1 = malloc(sizeof(float) * (size_t)(H * I));
    p->b1 = malloc(sizeof(float) * (size_t)H);
    p->w2 = malloc(sizeof(float) * (size_t)(H * H));
    p->b2 = malloc(sizeof(float) * (size_t)H);
    p->w3 = malloc(sizeof(float) * (size_t)(O * H));
    p->b3 = malloc(sizeof(float) * (size_t)O);
    th_fill_uniform(p->w1, H * I, -0.5f, 0.5f);
    th_fill_uniform(p->b1, H, -0.5f, 0.5f);
    th_fill_uniform(p->w2, H * H, -0.5f, 0.5f);
    th_fill_uniform(p->b2, H, -0.5f, 0.5f);
    th_fill_uniform(p->w3, O * H, -0.5f, 0.5f);
    th_fill_uniform(p->b3, O, -0.5f, 0.5f);
    mdl_builder *b;
    mdl_error err;
    mdl_status st = mdl_builder_create(NULL, &b, &err);
    if (st) return st;
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){B, I}, NULL);
    int w1 = mdl_builder_tensor(b, "fc1/w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){H, I}, p->w1);
    int b1 = mdl_builder_tensor(b, "fc1/b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){H}, p->b1);
    int w2 = mdl_builder_tensor(b, "fc2/w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){H, H}, p->w2);
    int b2 = mdl_builder_tensor(b, "fc2/b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){H}, p->b2);
    int w3 = mdl_builder_tensor(b, "fc3/w", MDL_DTYPE_FLOAT32, 2, (int64_t[]){O, H}, p->w3);
    int b3 = mdl_builder_tensor(b, "fc3/b", MDL_DTYPE_FLOAT32, 1, (int64_t[]){O}, p->b3);
    int h1 = mdl_builder_tensor(b, "h1", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int h2 = mdl_builder_tensor(b, "h2", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int h3 = mdl_builder_tensor(b, "h3", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int h4 = mdl_builder_tensor(b, "h4", MDL_DTYPE_FLOAT32, -1, NULL, NULL);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){B, O}, NULL);
    mdl_op_options relu = mdl_op_options_default(MDL_OP_FULLY_CONNECTED);
    relu.fc.act.kind = MDL_ACT_RELU;
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc1", 3, (int[]){x, w1, b1}, 1, &h1, &relu);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc2", 3, (int[]){h1, w2, b2}, 1, &h2, NULL);
    mdl_builder_node(b, MDL_OP_RELU, "relu2", 1, &h2, 1, &h3, NULL);
    mdl_builder_node(b, MDL_OP_ADD, "residual", 2, (int[]){h3, h1}, 1, &h4, NULL);
    mdl_builder_node(b, MDL_OP_FULLY_CONNECTED, "fc3", 3, (int[]){h4, w3, b3}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    mdl_builder_set_metadata(b, "name", "test-mlp");
    mdl_builder_set_metadata(b, "version", "1.2.3");
    mdl_builder_set_metadata(b, "description", "residual MLP for tests");
    mdl_builder_set_metadata(b, "license", "MIT");
    st = mdl_builder_finish(b, data, size, &err);
    if (st) fprintf(stderr, "tm_build_mlp: %s\n", err.msg);
    mdl_builder_free(b);
    return st;
}

void tm_mlp_free(tm_mlp *p) {
    free(p->w1); free(p->b1); free(p->w2); free(p->b2); free(p->w3); free(p->b3);
}

static void dense(int64_t B, int64_t O, int64_t I, const float *x, const float *w, const float *bias,
                  bool relu, float *y) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t o = 0; o < O; o++) {
            double s = bias[o];
            for (int64_t i = 0; i < I; i++) s += (double)x[b * I + i] * w[o * I + i];
            y[b * O + o] = relu && s < 0 ? 0.0f : (float)s;
        }
}

void tm_mlp_reference(const tm_mlp *p, const float *x, float *y) {
    int64_t B = p->batch, H = p->hid;
    float *h1 = malloc(sizeof(float) * (size_t)(B * H)), *h2 = malloc(sizeof(float) * (size_t)(B * H));
    dense(B, H, p->in, x, p->w1, p->b1, true, h1);
    dense(B, H, H, h1, p->w2, p->b2, true, h2);
    for (int64_t i = 0; i < B * H; i++) h2[i] += h1[i];
    dense(B, p->out, H, h2, p->w3, p->b3, false, y);
    free(h1);
    free(h2);
}

mdl_status tm_build_chain(int n, int with_plan, void **data, size_t *size) {
    mdl_builder *b;
    mdl_error err;
    mdl_status st = mdl_builder_create(NULL, &b, &err);
    if (st) return st;
    char name[32];
    int cur = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, 8}, NULL);
    mdl_builder_add_input(b, cur);
    bool row = true; /* cur is [1, 8] */
    for (int i = 0; i < n; i++) {
        mdl_op op = i % 3 == 0 ? MDL_OP_NEG : i % 3 == 1 ? MDL_OP_RELU : MDL_OP_RESHAPE;
        if (op == MDL_OP_RESHAPE) row = !row;
        snprintf(name, sizeof name, "t%d", i);
        int y = mdl_builder_tensor(b, name, MDL_DTYPE_FLOAT32, 2,
                                   row ? (int64_t[]){1, 8} : (int64_t[]){8, 1}, NULL);
        snprintf(name, sizeof name, "n%d", i);
        mdl_builder_node(b, op, name, 1, &cur, 1, &y, NULL);
        cur = y;
    }
    mdl_builder_add_output(b, cur);
    /* check, plan and write with the internal API (mdl_builder_finish would load it back) */
    mdl__graph *g = mdl__builder_graph(b);
    mdl__plan plan = {0, NULL, NULL};
    if (!(st = mdl__graph_check(g, true, NULL, &err)) && with_plan) st = mdl__plan_compute(g, NULL, &plan, &err);
    if (!st && with_plan == TM_PLAN_OVERLAPPING) {
        for (int32_t t = 0; t < g->ntensors; t++) plan.tensor_offsets[t] = 0;
        for (int32_t i = 0; i < g->nnodes; i++) plan.scratch_offsets[i] = 0;
        plan.arena_bytes = 64;
    }
    if (!st) {
        fb_builder fb;
        fb_builder_init(&fb, NULL);
        mdl__meta meta = {"chain", "", "tests/common/models.c", "", 0, NULL, 0, NULL};
        const uint8_t *bytes;
        if (!(st = mdl__format_write(&fb, g, with_plan ? &plan : NULL, &meta, &bytes, size, &err))) {
            *data = malloc(*size);
            if (*data) memcpy(*data, bytes, *size);
            else st = MDL_OUT_OF_MEMORY;
        }
        fb_builder_release(&fb);
    }
    if (st) fprintf(stderr, "tm_build_chain: %s\n", err.msg);
    mdl__plan_free(&plan, NULL);
    mdl_builder_free(b);
    return st;
}

void tm_chain_reference(int n, const float *x, float *y) {
    for (int k = 0; k < 8; k++) {
        float v = x[k];
        for (int i = 0; i < n; i++)
            if (i % 3 == 0) v = -v;
            else if (i % 3 == 1) v = v > 0 ? v : 0;
        y[k] = v;
    }
}

void tm_reseal(void *data, size_t size) { mdl__seal_finish(data, size); }

float tm_addc_input(int k, int i) { return (float)k - (float)i / 4.0f; }

mdl_status tm_build_addc(float c, int width, const char *version, int ncases, float skew, void **data,
                         size_t *size) {
    mdl_builder *b;
    mdl_error err;
    mdl_status st = mdl_builder_create(NULL, &b, &err);
    if (st) return st;
    float *cv = malloc(sizeof(float) * (size_t)width);
    for (int i = 0; i < width; i++) cv[i] = c;
    int x = mdl_builder_tensor(b, "x", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, width}, NULL);
    int k = mdl_builder_tensor(b, "c", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, width}, cv);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){1, width}, NULL);
    mdl_builder_node(b, MDL_OP_ADD, "add", 2, (int[]){x, k}, 1, &y, NULL);
    mdl_builder_add_input(b, x);
    mdl_builder_add_output(b, y);
    mdl_builder_set_metadata(b, "name", "addc");
    mdl_builder_set_metadata(b, "version", version);
    /* the vectors: one block of 2 * ncases * width floats, inputs then outputs */
    mdl__st_tensor *ts = calloc((size_t)(2 * ncases + 1), sizeof *ts);
    mdl__st_case *cs = calloc((size_t)ncases + 1, sizeof *cs);
    float *vals = malloc(sizeof(float) * (size_t)(2 * ncases * width + 1));
    for (int j = 0; j < ncases; j++) {
        float *in = vals + 2 * j * width, *out = in + width;
        for (int i = 0; i < width; i++) {
            in[i] = tm_addc_input(j, i);
            out[i] = in[i] + c + skew;
        }
        for (int t = 0; t < 2; t++)
            ts[2 * j + t] = (mdl__st_tensor){0, MDL_DTYPE_FLOAT32, 2, {1, width}, t ? out : in,
                                             sizeof(float) * (size_t)width};
        cs[j] = (mdl__st_case){1, 1, &ts[2 * j], &ts[2 * j + 1]};
    }
    mdl__selftest s = {ncases, cs, 1e-4f, 1e-3f, "test"};
    if (ncases > 0) mdl__builder_set_selftest(b, &s);
    st = mdl_builder_finish(b, data, size, &err);
    if (st) fprintf(stderr, "tm_build_addc: %s\n", err.msg);
    mdl_builder_free(b);
    free(cv);
    free(ts);
    free(cs);
    free(vals);
    return st;
}
