/* The ONNX converter: small ONNX models built in Python with onnx.helper, converted with
   mdl_convert_onnx (and the mdeploy-convert CLI), run with the C API and compared with ONNX
   Runtime's outputs on the same inputs (saved as .npy by the same Python call).  Python with
   numpy, onnx and onnxruntime is required: without it the tests fail, they never skip. */
#include "common/harness.h"

#include "mdeploy/convert.h"
#include "mdeploy/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-4

/* Helpers every generator script starts with.  save() writes model.onnx, runs ONNX Runtime
   (graph optimizations off) and stores in<i>.npy / out<i>.npy in the order of feeds / outputs. */
static const char PRELUDE[] =
    "import sys, os\n"
    "import numpy as np, onnx, onnxruntime as ort\n"
    "from onnx import helper as h, TensorProto as TP, numpy_helper as nh\n"
    "D = sys.argv[1]\n"
    "rng = np.random.default_rng(1234)\n"
    "def R(*s, lo=-1.0, hi=1.0): return rng.uniform(lo, hi, size=s).astype(np.float32)\n"
    "def I(name, arr): return nh.from_array(np.asarray(arr), name)\n"
    "def V(name, shape, t=TP.FLOAT): return h.make_tensor_value_info(name, t, shape)\n"
    "def N(op, ins, outs, name=None, **kw):\n"
    "    return h.make_node(op, ins, outs, name=name or (op.lower() + '_' + outs[0]), **kw)\n"
    "def save(nodes, ins, outs, inits=(), feeds=None, opset=13, ext=False):\n"
    "    g = h.make_graph(nodes, 'g', ins, outs, list(inits))\n"
    "    m = h.make_model(g, opset_imports=[h.make_opsetid('', opset)], producer_name='test')\n"
    "    m.ir_version = 8 if opset <= 17 else 10\n"
    "    m.model_version = 7\n"
    "    m.doc_string = 'a test model'\n"
    "    inf = onnx.shape_inference.infer_shapes(m)\n"
    "    known = {v.name: v.type for v in list(inf.graph.value_info) + list(inf.graph.output)}\n"
    "    for o in m.graph.output:\n"
    "        if not o.type.tensor_type.HasField('shape') and o.name in known: o.type.CopyFrom(known[o.name])\n"
    "    if all(o.type.tensor_type.HasField('shape') for o in m.graph.output): onnx.checker.check_model(m)\n"
    "    p = os.path.join(D, 'model.onnx')\n"
    "    if ext:\n"
    "        onnx.save_model(m, p, save_as_external_data=True, all_tensors_to_one_file=True,\n"
    "                        location='weights.bin', size_threshold=0)\n"
    "    else:\n"
    "        onnx.save(m, p)\n"
    "    if feeds is None: return\n"
    "    so = ort.SessionOptions()\n"
    "    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL\n"
    "    s = ort.InferenceSession(p, so, providers=['CPUExecutionProvider'])\n"
    "    res = s.run(None, feeds)\n"
    "    for i, v in enumerate(feeds.values()): np.save(os.path.join(D, 'in%d.npy' % i), v)\n"
    "    for i, v in enumerate(res): np.save(os.path.join(D, 'out%d.npy' % i), np.array(v, order='C'))\n";

/* A fresh directory per case. */
static const char *case_dir(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s", th_tmp(name));
    if (th_system("rm -rf '%s' && mkdir -p '%s'", dir, dir) != 0) fail_msg("cannot create %s", dir);
    return dir;
}

/* Writes PRELUDE + body as gen.py in dir and runs it. */
static void generate(const char *dir, const char *body) {
    char path[600];
    snprintf(path, sizeof path, "%s/gen.py", dir);
    size_t n1 = strlen(PRELUDE), n2 = strlen(body);
    char *src = malloc(n1 + n2 + 1);
    assert_non_null(src);
    memcpy(src, PRELUDE, n1);
    memcpy(src + n1, body, n2 + 1);
    assert_true(th_write_file(path, src, n1 + n2));
    free(src);
    int rc = th_system("python3 '%s' '%s'", path, dir);
    if (rc != 0) fail_msg("model generator failed (python3 with numpy, onnx, onnxruntime needed): rc %d", rc);
}

static char *path_in(const char *dir, const char *file) {
    static char bufs[4][600];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 600, "%s/%s", dir, file);
    return b;
}

/* Runs the converted model on in<i>.npy and compares every output with out<i>.npy. */
static void run_and_compare(const char *dir, const mdl_model *m, double tol) {
    mdl_error err;
    mdl_session *s;
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    for (int i = 0; i < mdl_model_input_count(m); i++) {
        char name[32];
        snprintf(name, sizeof name, "in%d.npy", i);
        mdl_npy x;
        if (mdl_npy_read(path_in(dir, name), &x, &err) != MDL_OK) fail_msg("%s", err.msg);
        mdl_tensor_info info;
        assert_int_equal(mdl_model_input_info(m, i, &info), MDL_OK);
        assert_int_equal(info.dtype, x.dtype);
        if (mdl_session_set_input(s, i, x.data, x.bytes, &err) != MDL_OK) fail_msg("input %d: %s", i, err.msg);
        mdl_npy_free(&x);
    }
    if (mdl_session_run(s) != MDL_OK) fail_msg("run: %s", mdl_session_message(s));
    for (int i = 0; i < mdl_model_output_count(m); i++) {
        char name[32];
        snprintf(name, sizeof name, "out%d.npy", i);
        mdl_npy ref;
        if (mdl_npy_read(path_in(dir, name), &ref, &err) != MDL_OK) fail_msg("%s", err.msg);
        mdl_tensor_info info;
        assert_int_equal(mdl_model_output_info(m, i, &info), MDL_OK);
        if (info.rank != ref.rank) fail_msg("output %d '%s': rank %d, ONNX Runtime gives %d", i, info.name, (int)info.rank, (int)ref.rank);
        for (int d = 0; d < info.rank; d++)
            if (info.dims[d] != ref.dims[d])
                fail_msg("output %d '%s': dim %d is %lld, ONNX Runtime gives %lld", i, info.name, d,
                         (long long)info.dims[d], (long long)ref.dims[d]);
        assert_int_equal(info.dtype, ref.dtype);
        const void *got = mdl_session_output_data(s, i);
        if (ref.dtype == MDL_DTYPE_FLOAT32) {
            double e = th_max_rel_err(got, ref.data, (int64_t)(ref.bytes / 4));
            if (!(e <= tol)) fail_msg("output %d '%s': relative error %g > %g", i, info.name, e, tol);
        } else {
            assert_memory_equal(got, ref.data, ref.bytes);
        }
        mdl_npy_free(&ref);
    }
    mdl_session_free(s);
}

/* Generates, converts (options may be NULL), runs and compares; returns the loaded model. */
static mdl_model *check_case(const char *name, const char *body, const mdl_convert_options *o,
                             mdl_convert_report *rep) {
    const char *dir = case_dir(name);
    generate(dir, body);
    mdl_error err;
    mdl_convert_report r;
    char out[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    if (mdl_convert_onnx(path_in(dir, "model.onnx"), out, o, &r, &err) != MDL_OK)
        fail_msg("%s: conversion failed: %s", name, err.msg);
    assert_true(r.file_bytes > 0);
    assert_true(r.nodes_out >= 1);
    mdl_model *m;
    if (mdl_model_load_file(out, NULL, &m, &err) != MDL_OK) fail_msg("%s", err.msg);
    assert_int_equal(r.arena_bytes, mdl_model_activation_bytes(m));
    assert_int_equal(r.weight_bytes, mdl_model_weight_bytes(m));
    assert_int_equal(r.nodes_out, mdl_model_node_count(m));
    run_and_compare(dir, m, TOL);
    if (rep) *rep = r;
    return m;
}

/* Operators of a converted model with this runtime name. */
static int count_op(const mdl_model *m, const char *op) {
    int n = 0;
    for (int i = 0; i < mdl_model_node_count(m); i++) {
        mdl_node_info ni;
        assert_int_equal(mdl_model_node_info(m, i, &ni), MDL_OK);
        n += strcmp(ni.op, op) == 0;
    }
    return n;
}

static void run_simple(const char *name, const char *body) {
    mdl_model_free(check_case(name, body, NULL, NULL));
}

/* ---- passes ------------------------------------------------------------------------------ */

/* Conv + BatchNorm + Relu + MaxPool + Flatten + Gemm: BN folded, Relu fused, NHWC inside with a
   transpose only at the input, and Flatten feeding Gemm through permuted weights. */
static void test_cnn_passes(void **state) {
    (void)state;
    mdl_convert_report r;
    mdl_model *m = check_case("cnn",
        "x = R(2, 3, 9, 8)\n"
        "nodes = [N('Conv', ['x','W','B'], ['c'], pads=[1,1,1,1]),\n"
        "         N('BatchNormalization', ['c','sc','bi','mu','va'], ['b'], epsilon=1e-3),\n"
        "         N('Relu', ['b'], ['r']), N('MaxPool', ['r'], ['p'], kernel_shape=[2,2], strides=[2,2]),\n"
        "         N('Flatten', ['p'], ['f']), N('Gemm', ['f','FW','FB'], ['y'], transB=1)]\n"
        "inits = [I('W', R(5,3,3,3)), I('B', R(5)), I('sc', R(5)), I('bi', R(5)), I('mu', R(5)),\n"
        "         I('va', R(5, lo=0.5, hi=2)), I('FW', R(4, 80)), I('FB', R(4))]\n"
        "save(nodes, [V('x', [2,3,9,8])], [V('y', [2,4])], inits, {'x': x})\n",
        NULL, &r);
    assert_int_equal(count_op(m, "BatchNorm"), 0);
    assert_int_equal(count_op(m, "Relu"), 0);
    assert_int_equal(count_op(m, "Conv2D"), 1);
    assert_int_equal(count_op(m, "FullyConnected"), 1);
    assert_int_equal(count_op(m, "Transpose"), 1); /* the input only: Flatten needs none */
    assert_int_equal(r.fused, 2);
    assert_int_equal(r.onnx_nodes, 6);
    assert_int_equal(r.opset, 13);
    mdl_model_free(m);
}

/* BatchNorm after Gemm and after MatMul+Add folds too; MatMul+Add+Relu is one FullyConnected. */
static void test_dense_passes(void **state) {
    (void)state;
    mdl_convert_report r;
    mdl_model *m = check_case("dense",
        "x = R(3, 6)\n"
        "nodes = [N('MatMul', ['x','W1'], ['m']), N('Add', ['m','b1'], ['a']), N('Relu', ['a'], ['r']),\n"
        "         N('Gemm', ['r','W2','b2'], ['g']),\n"
        "         N('BatchNormalization', ['g','sc','bi','mu','va'], ['bn']),\n"
        "         N('Clip', ['bn', 'lo', 'hi'], ['y'])]\n"
        "inits = [I('W1', R(6, 8)), I('b1', R(8)), I('W2', R(8, 5)), I('b2', R(5)), I('sc', R(5)),\n"
        "         I('bi', R(5)), I('mu', R(5)), I('va', R(5, lo=0.5, hi=2)),\n"
        "         I('lo', np.float32(-0.3)), I('hi', np.float32(0.4))]\n"
        "save(nodes, [V('x', [3,6])], [V('y', [3,5])], inits, {'x': x})\n",
        NULL, &r);
    assert_int_equal(mdl_model_node_count(m), 2);
    assert_int_equal(count_op(m, "FullyConnected"), 2);
    assert_int_equal(r.fused, 4); /* bias, relu, batchnorm, clip */
    mdl_model_free(m);
}

/* Depthwise conv + BN + ReLU6 (Clip with min/max inputs, opset 13) + pointwise conv. */
static void test_depthwise_relu6(void **state) {
    (void)state;
    mdl_model *m = check_case("depthwise",
        "x = R(1, 6, 7, 7, lo=-3, hi=3)\n"
        "nodes = [N('Conv', ['x','DW'], ['d'], group=6, pads=[1,1,1,1], strides=[2,2]),\n"
        "         N('BatchNormalization', ['d','sc','bi','mu','va'], ['b']),\n"
        "         N('Clip', ['b','z','six'], ['r']), N('Conv', ['r','PW','PB'], ['p']),\n"
        "         N('Conv', ['p','M'], ['y'], group=4, kernel_shape=[3,3])]\n"
        "inits = [I('DW', R(6,1,3,3)), I('sc', R(6)), I('bi', R(6)), I('mu', R(6)),\n"
        "         I('va', R(6, lo=0.5, hi=2)), I('z', np.float32(0)), I('six', np.float32(6)),\n"
        "         I('PW', R(4,6,1,1)), I('PB', R(4)), I('M', R(8,1,3,3))]\n"
        "save(nodes, [V('x', [1,6,7,7])], [V('y', [1,8,2,2])], inits, {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "DepthwiseConv2D"), 2); /* incl. channel multiplier 2 */
    assert_int_equal(count_op(m, "Clip"), 0);
    assert_int_equal(count_op(m, "BatchNorm"), 0);
    mdl_model_free(m);
}

/* PyTorch's LSTM export: initial states from Shape -> Gather -> Unsqueeze -> Concat ->
   ConstantOfShape / Expand, a Reshape whose target is computed the same way, Transposes around
   the LSTM.  Everything but the LSTM and data moves folds away. */
static void test_shape_subgraph_lstm(void **state) {
    (void)state;
    mdl_convert_options o = mdl_convert_options_default();
    assert_int_equal(mdl_parse_input_shape("x=3x5x4", &o.input_shapes[0], NULL), MDL_OK);
    o.ninput_shapes = 1;
    mdl_convert_report r;
    mdl_model *m = check_case("lstm",
        "H = 6\n"
        "x = R(3, 5, 4)\n"
        "nodes = [N('Shape', ['x'], ['s']), N('Gather', ['s','one'], ['bsz'], axis=0),\n"
        "         N('Unsqueeze', ['bsz','ax0'], ['bsz1']), N('Concat', ['two','bsz1','hid'], ['hs'], axis=0),\n"
        "         N('ConstantOfShape', ['hs'], ['h0'], value=h.make_tensor('v', TP.FLOAT, [1], [0.0])),\n"
        "         N('Expand', ['c0v','hs'], ['c0']),\n"
        "         N('Transpose', ['x'], ['xt'], perm=[1,0,2]),\n"
        "         N('LSTM', ['xt','W','Rr','B','','h0','c0'], ['Y','Yh','Yc'], hidden_size=H, direction='bidirectional'),\n"
        "         N('Transpose', ['Y'], ['Yt'], perm=[2,0,1,3]),\n"
        "         N('Concat', ['bsz1','seq','m1'], ['tgt'], axis=0), N('Reshape', ['Yt','tgt'], ['y']),\n"
        "         N('Identity', ['Yc'], ['yc'])]\n"
        "inits = [I('one', np.int64(0)), I('ax0', np.array([0], np.int64)), I('two', np.array([2], np.int64)),\n"
        "         I('hid', np.array([H], np.int64)), I('c0v', np.array([0.5], np.float32)),\n"
        "         I('seq', np.array([5], np.int64)), I('m1', np.array([-1], np.int64)),\n"
        "         I('W', R(2,4*H,4)), I('Rr', R(2,4*H,H)), I('B', R(2,8*H))]\n"
        "save(nodes, [V('x', ['batch', 5, 4])], [V('y', ['b', 5, 2*H]), V('yc', [2, 'b', H])], inits, {'x': x})\n",
        &o, &r);
    assert_int_equal(count_op(m, "LSTM"), 1);
    assert_int_equal(count_op(m, "Concat"), 0);
    assert_int_equal(count_op(m, "Gather"), 0);
    assert_true(r.folded >= 6);
    mdl_model_free(m);
}

/* ---- operator coverage ----------------------------------------------------------------------- */

static void test_conv_variants(void **state) {
    (void)state;
    run_simple("conv_variants",
        "x = R(1, 4, 11, 10)\n"
        "x1 = R(2, 3, 17)\n"
        "nodes = [N('Conv', ['x','W1'], ['a'], strides=[2,1], dilations=[1,2], pads=[0,1,2,3]),\n"
        "         N('Conv', ['x','W2','B2'], ['b'], auto_pad='SAME_UPPER', strides=[2,2]),\n"
        "         N('Conv', ['x','W3'], ['c'], group=2, auto_pad='VALID'),\n"
        "         N('Conv', ['x1','W4','B4'], ['d'], pads=[2,1], strides=[2]),\n"
        "         N('Conv', ['x','W5'], ['e'], auto_pad='SAME_LOWER', kernel_shape=[2,2])]\n"
        "inits = [I('W1', R(3,4,3,2)), I('W2', R(5,4,3,3)), I('B2', R(5)), I('W3', R(6,2,2,3)),\n"
        "         I('W4', R(4,3,5)), I('B4', R(4)), I('W5', R(2,4,2,2))]\n"
        "save(nodes, [V('x', [1,4,11,10]), V('x1', [2,3,17])],\n"
        "     [V('a', None), V('b', None), V('c', None), V('d', None), V('e', None)], inits, {'x': x, 'x1': x1})\n");
}

static void test_pools(void **state) {
    (void)state;
    run_simple("pools",
        "x = R(2, 3, 9, 8)\n"
        "x1 = R(1, 4, 10)\n"
        "nodes = [N('MaxPool', ['x'], ['a'], kernel_shape=[3,3], strides=[2,2], ceil_mode=1),\n"
        "         N('AveragePool', ['x'], ['b'], kernel_shape=[3,2], strides=[2,2], pads=[1,0,1,1]),\n"
        "         N('AveragePool', ['x'], ['c'], kernel_shape=[3,3], pads=[1,1,1,1], count_include_pad=1),\n"
        "         N('AveragePool', ['x'], ['d'], kernel_shape=[2,2], strides=[2,2], ceil_mode=1),\n"
        "         N('GlobalAveragePool', ['x'], ['e']), N('GlobalMaxPool', ['x'], ['f']),\n"
        "         N('MaxPool', ['x1'], ['g'], kernel_shape=[3], strides=[2], pads=[1,1]),\n"
        "         N('GlobalAveragePool', ['x1'], ['k']),\n"
        "         N('MaxPool', ['x'], ['m'], kernel_shape=[2,3], auto_pad='SAME_UPPER', strides=[2,2])]\n"
        "save(nodes, [V('x', [2,3,9,8]), V('x1', [1,4,10])],\n"
        "     [V(n, None) for n in 'abcdefgkm'], [], {'x': x, 'x1': x1}, opset=13)\n");
}

static void test_gemm_matmul(void **state) {
    (void)state;
    mdl_model *m = check_case("gemm",
        "a = R(4, 3); b = R(5, 4); c = R(4, 5)\n"
        "nodes = [N('Gemm', ['a','W1','C1'], ['y1'], alpha=0.5, beta=2.0),\n"
        "         N('Gemm', ['b','W2'], ['y2'], transA=1, transB=1),\n"
        "         N('Gemm', ['a','W3','c3'], ['y3'], beta=0.5),\n"
        "         N('Gemm', ['a','W4','C4'], ['y4'], transB=1),\n"
        "         N('MatMul', ['a','W5'], ['y5']),\n"
        "         N('MatMul', ['b3','W6'], ['y6']),\n"
        "         N('MatMul', ['b3','b3t'], ['y7']),\n"
        "         N('MatMul', ['v','W6'], ['y8'])]\n"
        "inits = [I('W1', R(3,5)), I('C1', R(1,5)), I('W2', R(6,5)), I('W3', R(3,4)),\n"
        "         I('W4', R(7,3)), I('C4', R(4,7)), I('W5', R(3,2)), I('W6', R(4,3))]\n"
        "b3 = R(2, 5, 4); b3t = R(2, 4, 3); v = R(4); c3 = R(4, 4)\n"
        "save(nodes, [V('a', [4,3]), V('b', [5,4]), V('c3', [4,4]), V('b3', [2,5,4]), V('b3t', [2,4,3]), V('v', [4])],\n"
        "     [V('y%d' % i, None) for i in range(1, 9)], inits,\n"
        "     {'a': a, 'b': b, 'c3': c3, 'b3': b3, 'b3t': b3t, 'v': v})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "MatMul"), 2); /* Gemm with transA and the activation x activation */
    mdl_model_free(m);
}

static void test_activations(void **state) {
    (void)state;
    run_simple("activations",
        "x = R(2, 3, 4, lo=-4, hi=4)\n"
        "nodes = [N('Relu', ['x'], ['a']), N('LeakyRelu', ['x'], ['b'], alpha=0.2), N('Sigmoid', ['x'], ['c']),\n"
        "         N('Tanh', ['x'], ['d']), N('HardSigmoid', ['x'], ['e'], alpha=0.3, beta=0.4),\n"
        "         N('HardSwish', ['x'], ['f']), N('Clip', ['x','','hi'], ['g']),\n"
        "         N('Softmax', ['x'], ['k'], axis=1), N('LogSoftmax', ['x'], ['m']),\n"
        "         N('Clip', ['x','lo'], ['n'])]\n"
        "save(nodes, [V('x', [2,3,4])], [V(n, None) for n in 'abcdefgkmn'],\n"
        "     [I('hi', np.float32(1.5)), I('lo', np.float32(-0.5))], {'x': x}, opset=14)\n");
    /* opset 11: Softmax coerces to 2-D at the axis; Clip bounds are inputs already */
    run_simple("softmax11",
        "x = R(2, 3, 4, lo=-4, hi=4)\n"
        "nodes = [N('Softmax', ['x'], ['a'], axis=1), N('LogSoftmax', ['x'], ['b']),\n"
        "         N('Softmax', ['x'], ['c'], axis=2), N('Clip', ['x','lo'], ['d'])]\n"
        "save(nodes, [V('x', [2,3,4])], [V(n, None) for n in 'abcd'], [I('lo', np.float32(-0.5))], {'x': x}, opset=11)\n");
    run_simple("clip6",
        "x = R(2, 5, lo=-4, hi=4)\n"
        "save([N('Clip', ['x'], ['y'], min=-1.0, max=2.0)], [V('x', [2,5])], [V('y', None)], [], {'x': x}, opset=7)\n");
}

static void test_gelu(void **state) {
    (void)state;
    run_simple("gelu",
        "x = R(3, 7, lo=-4, hi=4)\n"
        "save([N('Gelu', ['x'], ['a']), N('Gelu', ['x'], ['b'], approximate='tanh')],\n"
        "     [V('x', [3,7])], [V('a', None), V('b', None)], [], {'x': x}, opset=20)\n");
}

/* Broadcasting binary ops, including inside an NHWC region (constants permuted at conversion,
   two permuted activations combined without transposes). */
static void test_binary(void **state) {
    (void)state;
    run_simple("binary",
        "x = R(2, 3, 4); y = R(3, 1); z = R(4, lo=0.5, hi=2)\n"
        "nodes = [N('Add', ['x','y'], ['a']), N('Sub', ['z','x'], ['b']), N('Mul', ['x','k'], ['c']),\n"
        "         N('Div', ['x','z'], ['d']), N('Add', ['x','x'], ['e'])]\n"
        "save(nodes, [V('x', [2,3,4]), V('y', [3,1]), V('z', [4])], [V(n, None) for n in 'abcde'],\n"
        "     [I('k', np.float32(3.0))], {'x': x, 'y': y, 'z': z})\n");
    mdl_model *m = check_case("binary_nhwc",
        "x = R(1, 3, 6, 5)\n"
        "nodes = [N('Conv', ['x','W1'], ['c1'], pads=[1,1,1,1]), N('Conv', ['x','W2'], ['c2'], pads=[1,1,1,1]),\n"
        "         N('Add', ['c1','cb'], ['a']), N('Mul', ['a','c2'], ['m']), N('Sub', ['m','s'], ['s1']),\n"
        "         N('Relu', ['s1'], ['r']), N('Conv', ['r','W3'], ['y'])]\n"
        "save(nodes, [V('x', [1,3,6,5])], [V('y', None)],\n"
        "     [I('W1', R(4,3,3,3)), I('W2', R(4,3,3,3)), I('cb', R(4,1,1)), I('s', R(1,4,6,5)), I('W3', R(2,4,1,1))],\n"
        "     {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Transpose"), 2); /* the input in, the output back */
    assert_int_equal(count_op(m, "Add"), 0);        /* the [4,1,1] constant became conv bias */
    mdl_model_free(m);
    /* residual: the NCHW input plus an NHWC conv output reuses the input's NHWC copy */
    m = check_case("residual",
        "x = R(1, 4, 5, 5)\n"
        "nodes = [N('Conv', ['x','W'], ['c'], pads=[1,1,1,1]), N('Add', ['x','c'], ['a']),\n"
        "         N('GlobalAveragePool', ['a'], ['g']), N('Flatten', ['g'], ['f']), N('Gemm', ['f','FW'], ['y'], transB=1)]\n"
        "save(nodes, [V('x', [1,4,5,5])], [V('y', None)], [I('W', R(4,4,3,3)), I('FW', R(3,4))], {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Transpose"), 1);
    mdl_model_free(m);
}

static void test_shape_ops(void **state) {
    (void)state;
    run_simple("shape_ops",
        "x = R(2, 3, 4, 5)\n"
        "nodes = [N('Concat', ['x','x'], ['a'], axis=-2),\n"
        "         N('Reshape', ['x','s1'], ['b']), N('Reshape', ['x','s2'], ['c']),\n"
        "         N('Squeeze', ['u','ax1'], ['d']), N('Unsqueeze', ['x','ax2'], ['e']),\n"
        "         N('Transpose', ['x'], ['f'], perm=[3,1,0,2]), N('Transpose', ['x'], ['g']),\n"
        "         N('Slice', ['x','st','en','sa','sp'], ['k']),\n"
        "         N('Slice', ['x','st2','en2'], ['m']),\n"
        "         N('Pad', ['x','pads','pv'], ['n']),\n"
        "         N('Gather', ['x','idx'], ['p'], axis=2), N('Gather', ['x','i0'], ['q'], axis=-1),\n"
        "         N('Flatten', ['x'], ['r'], axis=2), N('Flatten', ['x'], ['t'], axis=0),\n"
        "         N('Concat', ['x','cst'], ['w'], axis=1)]\n"
        "inits = [I('s1', np.array([0, -1, 5], np.int64)), I('s2', np.array([6, 20], np.int64)),\n"
        "         I('ax1', np.array([1], np.int64)), I('ax2', np.array([0, -1], np.int64)),\n"
        "         I('st', np.array([3, -1], np.int64)), I('en', np.array([0, -100], np.int64)),\n"
        "         I('sa', np.array([2, 3], np.int64)), I('sp', np.array([-1, -2], np.int64)),\n"
        "         I('st2', np.array([1, 0], np.int64)), I('en2', np.array([9, 4], np.int64)),\n"
        "         I('pads', np.array([0, 1, 2, 0, 1, 0, 1, 2], np.int64)), I('pv', np.float32(0.25)),\n"
        "         I('idx', np.array([[3, 0], [-1, 2]], np.int64)), I('i0', np.int64(1)), I('cst', R(2, 2, 4, 5))]\n"
        "u = R(2, 1, 3)\n"
        "save(nodes, [V('x', [2,3,4,5]), V('u', [2,1,3])], [V(n, None) for n in 'abcdefgkmnpqrtw'], inits, {'x': x, 'u': u})\n");
    /* opset 11: axes as attributes, Slice with inputs, Pad with inputs */
    run_simple("shape_ops11",
        "x = R(2, 1, 4)\n"
        "nodes = [N('Squeeze', ['x'], ['a'], axes=[1]), N('Unsqueeze', ['x'], ['b'], axes=[0, 4]),\n"
        "         N('Squeeze', ['x'], ['c']), N('ReduceSum', ['x'], ['d'], axes=[2], keepdims=0),\n"
        "         N('Pad', ['x','pads'], ['e'])]\n"
        "save(nodes, [V('x', [2,1,4])], [V(n, None) for n in 'abcde'],\n"
        "     [I('pads', np.array([1, 0, 0, 0, 2, 1], np.int64))], {'x': x}, opset=11)\n");
}

/* The layout tracking through ops that take an axis in an NHWC region. */
static void test_nhwc_region_ops(void **state) {
    (void)state;
    mdl_model *m = check_case("nhwc_ops",
        "x = R(2, 3, 6, 6)\n"
        "nodes = [N('Conv', ['x','W'], ['c'], pads=[1,1,1,1]),\n"
        "         N('Concat', ['c','c'], ['cc'], axis=1), N('Softmax', ['cc'], ['sm'], axis=1),\n"
        "         N('Slice', ['sm','st','en','ax'], ['sl']), N('Pad', ['sl','pads'], ['pd']),\n"
        "         N('ReduceMean', ['pd'], ['rm'], axes=[2,3], keepdims=0),\n"
        "         N('ReduceMax', ['pd'], ['rx'], axes=[1], keepdims=1),\n"
        "         N('Transpose', ['c'], ['tc'], perm=[0,2,3,1]), N('Transpose', ['tc'], ['back'], perm=[0,3,1,2]),\n"
        "         N('Add', ['back', 'c'], ['y'])]\n"
        "inits = [I('W', R(4,3,3,3)), I('st', np.array([1, 0], np.int64)), I('en', np.array([7, 5], np.int64)),\n"
        "         I('ax', np.array([1, 3], np.int64)), I('pads', np.array([0,0,1,0, 0,1,0,2], np.int64))]\n"
        "save(nodes, [V('x', [2,3,6,6])], [V('rm', None), V('rx', None), V('tc', None), V('y', None)], inits, {'x': x})\n",
        NULL, NULL);
    mdl_model_free(m);
}

static void test_reduce(void **state) {
    (void)state;
    run_simple("reduce",
        "x = R(2, 3, 4)\n"
        "nodes = [N('ReduceMean', ['x'], ['a'], axes=[1]), N('ReduceMean', ['x'], ['b'], axes=[0, 2], keepdims=0),\n"
        "         N('ReduceSum', ['x','ax'], ['c']), N('ReduceSum', ['x'], ['d'], keepdims=0),\n"
        "         N('ReduceMax', ['x'], ['e'], axes=[-1]), N('ReduceMax', ['x'], ['f'])]\n"
        "save(nodes, [V('x', [2,3,4])], [V(n, None) for n in 'abcdef'], [I('ax', np.array([-2], np.int64))], {'x': x})\n");
    run_simple("reduce18",
        "x = R(2, 3, 4)\n"
        "nodes = [N('ReduceMean', ['x','ax'], ['a']), N('ReduceMax', ['x','ax'], ['b'], keepdims=0),\n"
        "         N('ReduceSum', ['x','ax'], ['c'])]\n"
        "save(nodes, [V('x', [2,3,4])], [V(n, None) for n in 'abc'], [I('ax', np.array([0, 2], np.int64))], {'x': x}, opset=18)\n");
}

static void test_gru_and_lstm_variants(void **state) {
    (void)state;
    run_simple("gru",
        "H = 5\n"
        "x = R(4, 2, 3)\n"
        "nodes = [N('GRU', ['x','W','Rr','B','','h0'], ['Y','Yh'], hidden_size=H, linear_before_reset=1),\n"
        "         N('GRU', ['x','W2','R2'], ['', 'Yh2'], hidden_size=H, direction='reverse')]\n"
        "inits = [I('W', R(1,3*H,3)), I('Rr', R(1,3*H,H)), I('B', R(1,6*H)), I('h0', R(1,2,H)),\n"
        "         I('W2', R(1,3*H,3)), I('R2', R(1,3*H,H))]\n"
        "save(nodes, [V('x', [4,2,3])], [V('Y', None), V('Yh', None), V('Yh2', None)], inits, {'x': x})\n");
    run_simple("lstm_fwd",
        "H = 4\n"
        "x = R(3, 1, 2)\n"
        "nodes = [N('LSTM', ['x','W','Rr'], ['', 'Yh'], hidden_size=H, direction='reverse'),\n"
        "         N('LSTM', ['x','W','Rr','B'], ['Y'], hidden_size=H)]\n"
        "inits = [I('W', R(1,4*H,2)), I('Rr', R(1,4*H,H)), I('B', R(1,8*H))]\n"
        "save(nodes, [V('x', [3,1,2])], [V('Yh', None), V('Y', None)], inits, {'x': x})\n");
}

/* Embedding (Gather on a constant table with int64 ids) and a dot product via Mul + ReduceSum. */
static void test_embedding_dot(void **state) {
    (void)state;
    mdl_model *m = check_case("embedding",
        "u = np.array([3, 0, 7], np.int64); v = np.array([1, 9, 2], np.int64)\n"
        "nodes = [N('Gather', ['U','u'], ['eu']), N('Gather', ['Vt','v'], ['ev']), N('Mul', ['eu','ev'], ['p']),\n"
        "         N('ReduceSum', ['p','ax'], ['s'], keepdims=0), N('Sigmoid', ['s'], ['y']),\n"
        "         N('MatMul', ['eu','Wd'], ['z'])]\n"
        "save(nodes, [V('u', [3], TP.INT64), V('v', [3], TP.INT64)], [V('y', None), V('z', None)],\n"
        "     [I('U', R(8, 6)), I('Vt', R(10, 6)), I('ax', np.array([1], np.int64)), I('Wd', R(6, 1))], {'u': u, 'v': v})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Gather"), 2);
    mdl_model_free(m);
}

/* BatchNormalization with nothing to fold into stays a (channels-last) BatchNorm operator. */
static void test_batch_norm_unfolded(void **state) {
    (void)state;
    mdl_model *m = check_case("bn",
        "x = R(2, 3, 4, 5); x2 = R(4, 3)\n"
        "nodes = [N('BatchNormalization', ['x','sc','bi','mu','va'], ['a']),\n"
        "         N('BatchNormalization', ['x2','sc','bi','mu','va'], ['b'], epsilon=0.1)]\n"
        "inits = [I('sc', R(3)), I('bi', R(3)), I('mu', R(3)), I('va', R(3, lo=0.5, hi=2))]\n"
        "save(nodes, [V('x', [2,3,4,5]), V('x2', [4,3])], [V('a', None), V('b', None)], inits, {'x': x, 'x2': x2})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "BatchNorm"), 2);
    mdl_model_free(m);
}

/* Identity, Dropout and same-type Cast disappear; Cast/Range/Where/Equal fold on constants. */
static void test_removed_and_folded(void **state) {
    (void)state;
    mdl_convert_report r;
    mdl_model *m = check_case("removed",
        "x = R(2, 6)\n"
        "nodes = [N('Identity', ['x'], ['i']), N('Dropout', ['i'], ['d']), N('Cast', ['d'], ['c'], to=TP.FLOAT),\n"
        "         N('Range', ['r0','r1','r2'], ['rg']), N('Cast', ['rg'], ['rf'], to=TP.FLOAT),\n"
        "         N('Equal', ['rg','e'], ['eq']), N('Where', ['eq','rf','neg'], ['w']),\n"
        "         N('Mul', ['c','w'], ['m']), N('Relu', ['unused_in'], ['dead']), N('Add', ['m','c'], ['y'])]\n"
        "inits = [I('r0', np.int64(0)), I('r1', np.int64(6)), I('r2', np.int64(1)), I('e', np.int64(2)),\n"
        "         I('neg', np.float32(-1.0))]\n"
        "save(nodes, [V('x', [2,6]), V('unused_in', [3])], [V('y', None)], inits,\n"
        "     {'x': x, 'unused_in': R(3)})\n",
        NULL, &r);
    assert_int_equal(mdl_model_node_count(m), 2); /* Mul, Add */
    assert_true(r.removed >= 4);                  /* Identity, Dropout, Cast, dead Relu */
    assert_true(r.folded >= 4); /* Range, Cast, Equal, Where */
    mdl_model_free(m);
}

/* Initializers stored in typed fields instead of raw_data. */
static void test_typed_initializers(void **state) {
    (void)state;
    run_simple("typed",
        "x = R(2, 3)\n"
        "W = R(3, 4); B = R(4)\n"
        "Wt = h.make_tensor('W', TP.FLOAT, [3, 4], W.flatten().tolist(), raw=False)\n"
        "Bt = h.make_tensor('B', TP.DOUBLE, [4], B.astype(np.float64).tolist(), raw=False)\n"
        "St = h.make_tensor('S', TP.INT64, [2], [4, 2], raw=False)\n"
        "Kt = h.make_tensor('K', TP.INT32, [1], [2], raw=False)\n"
        "nodes = [N('Cast', ['B'], ['Bf'], to=TP.FLOAT), N('MatMul', ['x','W'], ['m']), N('Add', ['m','Bf'], ['a']),\n"
        "         N('Reshape', ['a','S'], ['r']), N('Cast', ['K'], ['Kf'], to=TP.FLOAT), N('Mul', ['r','Kf'], ['y'])]\n"
        "save(nodes, [V('x', [2,3])], [V('y', None)], [Wt, Bt, St, Kt], {'x': x})\n");
}

/* ---- interface: errors, options, CLI ------------------------------------------------------- */

/* The directory part of path (a static copy). */
static const char *dirname_of(const char *path) {
    static char d[512];
    snprintf(d, sizeof d, "%s", path);
    char *s = strrchr(d, '/');
    if (s) *s = 0;
    return d;
}

static void test_unsupported_op(void **state) {
    (void)state;
    const char *dir = case_dir("unsupported");
    generate(dir, "x = R(2, 3)\n"
                  "save([N('Relu', ['x'], ['r']), N('Softsign', ['r'], ['y'], name='my_softsign')],\n"
                  "     [V('x', [2,3])], [V('y', None)], [], None, opset=15)\n");
    char out[600], errf[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    mdl_error err;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "Softsign"));
    assert_non_null(strstr(err.msg, "my_softsign"));
    assert_non_null(strstr(err.msg, "opset 15"));
    assert_false(th_exists(out));
    int rc = th_system("'%s' '%s/model.onnx' -o '%s' 2> '%s'", th_tool("mdeploy-convert"), dir, out, errf);
    assert_int_equal(rc, 1);
    assert_false(th_exists(out));
    size_t n;
    char *text = th_read_file(errf, &n);
    assert_non_null(text);
    assert_non_null(strstr(text, "Softsign"));
    assert_non_null(strstr(text, "my_softsign"));
    assert_non_null(strstr(text, "opset 15"));
    assert_non_null(strchr(text, '\n'));
    assert_ptr_equal(strchr(text, '\n'), text + n - 1); /* one line */
    free(text);
    /* no temporary file left behind either */
    assert_int_equal(th_system("ls '%s' | grep -q tmp", dir), 1);
}

/* ---- transformer-era operators (onnx_lower_nn_host.c, onnx_fuse_nn_host.c) ------------------- */

/* The exported decompositions of GELU (three associations of x * 0.5 * (1 + erf(x / sqrt 2)),
   Div or Mul by 1/sqrt 2) and of LayerNorm (opset 13 attribute axes with Pow, with Mul(d, d) and
   no affine part, over two trailing axes; opset 18 axes input) each become one node. */
static void test_nn_fusions(void **state) {
    (void)state;
    const char *gelu =
        "x = R(3, 8, lo=-4, hi=4)\n"
        "s2 = I('s2', np.float32(np.sqrt(2))); r2 = I('r2', np.float32(1/np.sqrt(2)))\n"
        "one = I('one', np.float32(1)); half = I('half', np.float32(0.5))\n"
        "nodes = [N('Div', ['x','s2'], ['a1']), N('Erf', ['a1'], ['e1']), N('Add', ['e1','one'], ['p1']),\n"
        "         N('Mul', ['x','p1'], ['m1']), N('Mul', ['m1','half'], ['y1']),\n"
        "         N('Mul', ['x','r2'], ['a2']), N('Erf', ['a2'], ['e2']), N('Add', ['one','e2'], ['p2']),\n"
        "         N('Mul', ['x','half'], ['h2']), N('Mul', ['h2','p2'], ['y2']),\n"
        "         N('Div', ['x','s2'], ['a3']), N('Erf', ['a3'], ['e3']), N('Add', ['e3','one'], ['p3']),\n"
        "         N('Mul', ['p3','half'], ['m3']), N('Mul', ['x','m3'], ['y3'])]\n"
        "save(nodes, [V('x', [3,8])], [V('y%d' % i, None) for i in (1,2,3)], [s2, r2, one, half], {'x': x})\n";
    mdl_convert_report rep;
    mdl_model *m = check_case("nn_gelu", gelu, NULL, &rep);
    assert_int_equal(count_op(m, "Gelu"), 3);
    assert_int_equal(mdl_model_node_count(m), 3);
    assert_int_equal(rep.onnx_nodes, 15);
    mdl_model_free(m);

    const char *ln =
        "x = R(2, 5, 16, lo=-3, hi=5)\n"
        "def ln(p, x, axes, sq='pow', affine=True, opset=13):\n"
        "    ax = {'axes': axes} if opset < 18 else {}\n"
        "    ins = (lambda t: [t] if opset < 18 else [t, p + 'ax'])\n"
        "    n = [N('ReduceMean', ins(x), [p+'m'], **ax), N('Sub', [x, p+'m'], [p+'d']),\n"
        "         N('Pow', [p+'d', 'two'], [p+'q']) if sq == 'pow' else N('Mul', [p+'d', p+'d'], [p+'q']),\n"
        "         N('ReduceMean', ins(p+'q'), [p+'v'], **ax), N('Add', [p+'v', 'eps'], [p+'ve']),\n"
        "         N('Sqrt', [p+'ve'], [p+'sd']), N('Div', [p+'d', p+'sd'], [p+'n' if affine else p+'y'])]\n"
        "    if affine: n += [N('Mul', [p+'n', p+'g'], [p+'gn']), N('Add', [p+'gn', p+'b'], [p+'y'])]\n"
        "    return n\n"
        "inits = [I('two', np.float32(2)), I('eps', np.float32(1e-5)), I('ag', R(16)), I('ab', R(16)),\n"
        "         I('cg', R(5, 16)), I('cb', R(16))]\n"
        "nodes = ln('a', 'x', [-1]) + ln('b', 'x', [-1], sq='mul', affine=False) + ln('c', 'x', [-2, -1])\n"
        "save(nodes, [V('x', [2,5,16])], [V(p + 'y', None) for p in 'abc'], inits, {'x': x})\n";
    m = check_case("nn_ln", ln, NULL, &rep);
    assert_int_equal(count_op(m, "LayerNorm"), 3);
    assert_int_equal(rep.onnx_nodes, 25);
    mdl_model_free(m);
    m = check_case("nn_ln18",
        "x = R(2, 5, 16, lo=-3, hi=5)\n"
        "ax = I('ax', np.array([-1], np.int64)); two = I('two', np.float32(2)); eps = I('eps', np.float32(1e-6))\n"
        "nodes = [N('ReduceMean', ['x','ax'], ['m']), N('Sub', ['x','m'], ['d']), N('Pow', ['d','two'], ['q']),\n"
        "         N('ReduceMean', ['q','ax'], ['v']), N('Add', ['eps','v'], ['ve']), N('Sqrt', ['ve'], ['sd']),\n"
        "         N('Div', ['d','sd'], ['n']), N('Mul', ['g','n'], ['gn']), N('Add', ['gn','b'], ['y'])]\n"
        "save(nodes, [V('x', [2,5,16])], [V('y', None)], [ax, two, eps, I('g', R(16)), I('b', R(16))], {'x': x}, opset=18)\n",
        NULL, &rep);
    assert_int_equal(count_op(m, "LayerNorm"), 1);
    assert_int_equal(mdl_model_node_count(m), 1);
    mdl_model_free(m);
}

/* A pattern whose intermediate value is used elsewhere is not fused: the GELU's erf output is
   also a graph output (so Erf runs on its own kernel); the LayerNorm's mean is too (its pieces
   need run-time Pow/Sqrt: either they are supported and the model matches ORT, or it is refused
   naming one of them, never fused into a wrong answer). */
static void test_nn_not_fused(void **state) {
    (void)state;
    mdl_model *m = check_case("nn_gelu_out",
        "x = R(3, 8, lo=-4, hi=4)\n"
        "nodes = [N('Div', ['x','s2'], ['a1']), N('Erf', ['a1'], ['e1']), N('Add', ['e1','one'], ['p1']),\n"
        "         N('Mul', ['x','p1'], ['m1']), N('Mul', ['m1','half'], ['y1'])]\n"
        "save(nodes, [V('x', [3,8])], [V('y1', None), V('e1', None)],\n"
        "     [I('s2', np.float32(np.sqrt(2))), I('one', np.float32(1)), I('half', np.float32(0.5))], {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Gelu"), 0);
    assert_int_equal(count_op(m, "Erf"), 1);
    mdl_model_free(m);
    const char *dir = case_dir("nn_ln_out");
    generate(dir,
        "x = R(2, 16, lo=-3, hi=5)\n"
        "nodes = [N('ReduceMean', ['x'], ['m'], axes=[-1]), N('Sub', ['x','m'], ['d']), N('Pow', ['d','two'], ['q']),\n"
        "         N('ReduceMean', ['q'], ['v'], axes=[-1]), N('Add', ['v','eps'], ['ve']), N('Sqrt', ['ve'], ['sd']),\n"
        "         N('Div', ['d','sd'], ['y'])]\n"
        "save(nodes, [V('x', [2,16])], [V('y', None), V('m', None)],\n"
        "     [I('two', np.float32(2)), I('eps', np.float32(1e-5))], {'x': x})\n");
    mdl_error err;
    char out[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    mdl_status st = mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err);
    if (st == MDL_OK) {
        mdl_model *m2;
        if (mdl_model_load_file(out, NULL, &m2, &err) != MDL_OK) fail_msg("%s", err.msg);
        assert_int_equal(count_op(m2, "LayerNorm"), 0);
        run_and_compare(dir, m2, TOL);
        mdl_model_free(m2);
    } else {
        assert_int_equal(st, MDL_UNSUPPORTED);
        if (!strstr(err.msg, "Pow") && !strstr(err.msg, "Sqrt")) fail_msg("unexpected refusal: %s", err.msg);
    }
}

/* ONNX LayerNormalization (opset 17): trailing axes, broadcast scale, no bias. */
static void test_layer_norm_op(void **state) {
    (void)state;
    mdl_model *m = check_case("nn_ln17",
        "x = R(2, 3, 4, 6, lo=-2, hi=3)\n"
        "nodes = [N('LayerNormalization', ['x','g1','b1'], ['y1']),\n"
        "         N('LayerNormalization', ['x','g2'], ['y2'], axis=-2, epsilon=1e-3),\n"
        "         N('LayerNormalization', ['x','g3','b3'], ['y3'], axis=1)]\n"
        "save(nodes, [V('x', [2,3,4,6])], [V('y%d' % i, None) for i in (1,2,3)],\n"
        "     [I('g1', R(6)), I('b1', R(6)), I('g2', R(1, 6)), I('g3', R(3, 1, 6)), I('b3', R(4, 6))], {'x': x}, opset=17)\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "LayerNorm"), 3);
    mdl_model_free(m);
    const char *dir = case_dir("nn_ln_mean");
    generate(dir, "save([N('LayerNormalization', ['x','g'], ['y', 'mean'], name='ln_with_mean')],\n"
                  "     [V('x', [2,6])], [V('y', None), V('mean', None)], [I('g', R(6))], None, opset=17)\n");
    char out[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    mdl_error err;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "ln_with_mean"));
    assert_non_null(strstr(err.msg, "Mean"));
}

/* Resize: nearest and linear with every supported coordinate mode, scales and sizes, opset 11
   and 13, after a Conv (an NHWC region: no transpose around the resize). */
static void test_resize_variants(void **state) {
    (void)state;
    mdl_model *m = check_case("nn_resize",
        "x = R(1, 3, 5, 7)\n"
        "nodes = [N('Conv', ['x','W'], ['c'], pads=[1,1,1,1])]\n"
        "outs = []\n"
        "k = 0\n"
        "for mode in ['nearest', 'linear']:\n"
        "    for ct in ['half_pixel', 'asymmetric', 'align_corners', 'pytorch_half_pixel']:\n"
        "        for nm in (['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'] if mode == 'nearest' else ['floor']):\n"
        "            k += 1\n"
        "            sc = 'sc%d' % (k % 3)\n"
        "            ins = ['c', '', sc] if k % 2 else ['c', '', '', 'sz%d' % (k % 2)]\n"
        "            nodes.append(N('Resize', ins, ['r%d' % k], mode=mode, coordinate_transformation_mode=ct, nearest_mode=nm))\n"
        "            nodes.append(N('Conv', ['r%d' % k, 'W2'], ['y%d' % k]))\n"
        "            outs.append('y%d' % k)\n"
        "inits = [I('W', R(4, 3, 3, 3)), I('W2', R(2, 4, 1, 1)), I('sc0', np.array([1, 1, 2, 2], np.float32)),\n"
        "         I('sc1', np.array([1, 1, 0.5, 1.5], np.float32)), I('sc2', np.array([1, 1, 3, 0.75], np.float32)),\n"
        "         I('sz0', np.array([1, 4, 9, 4], np.int64))]\n"
        "save(nodes, [V('x', [1,3,5,7])], [V(o, None) for o in outs], inits, {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Resize"), 20);
    assert_int_equal(count_op(m, "Transpose"), 21); /* the input, and each output back to NCHW */
    mdl_model_free(m);
    run_simple("nn_resize11",
        "x = R(2, 2, 4, 3)\n"
        "save([N('Resize', ['x', 'roi', 'sc'], ['y'], mode='linear'), N('Resize', ['x', 'roi', 'roi', 'sz'], ['z'])],\n"
        "     [V('x', [2,2,4,3])], [V('y', None), V('z', None)],\n"
        "     [I('roi', np.zeros(0, np.float32)), I('sc', np.array([1, 1, 1.5, 2], np.float32)),\n"
        "      I('sz', np.array([2, 2, 7, 5], np.int64))], {'x': x}, opset=11)\n");
}

/* Tile of a run-time tensor (holding a -0.0 and a NaN), of a constant int64 tensor (folded), and
   repeats of 1 (an alias). */
static void test_tile(void **state) {
    (void)state;
    mdl_model *m = check_case("nn_tile",
        "x = R(2, 3, 4); x[0, 0, 0] = -0.0; x[1, 2, 3] = np.nan\n"
        "nodes = [N('Tile', ['x', 'r1'], ['y1']), N('Tile', ['x', 'r2'], ['y2']), N('Tile', ['x', 'r3'], ['y3']),\n"
        "         N('Tile', ['ci', 'r4'], ['t4']), N('Cast', ['t4'], ['c4'], to=1), N('Add', ['x', 'c4'], ['y4'])]\n"
        "inits = [I('r1', np.array([2, 1, 3], np.int64)), I('r2', np.array([1, 1, 1], np.int64)),\n"
        "         I('r3', np.array([1, 4, 1], np.int64)), I('ci', np.arange(3, dtype=np.int64).reshape(1, 3, 1)),\n"
        "         I('r4', np.array([2, 1, 4], np.int64))]\n"
        "save(nodes, [V('x', [2,3,4])], [V('y%d' % i, None) for i in (1,2,3,4)], inits, {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Add"), 3); /* y1, y3 and the constant y4 added to x */
    mdl_model_free(m);
}

/* What Resize cannot do exactly is refused with the reason. */
static void test_resize_refused(void **state) {
    (void)state;
    static const struct { const char *node, *want; } cases[] = {
        {"N('Resize', ['x', '', 'sc'], ['y'], mode='cubic', name='rz')", "cubic"},
        {"N('Resize', ['x', 'roi', 'sc'], ['y'], coordinate_transformation_mode='tf_crop_and_resize', name='rz')", "tf_crop_and_resize"},
        {"N('Resize', ['x', '', 'sc2'], ['y'], name='rz')", "N and C"},
        {"N('Resize', ['x', '', 'scd'], ['y'], name='rz')", "constant"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = case_dir("nn_resize_refused");
        char body[1024];
        snprintf(body, sizeof body,
                 "save([N('Relu', ['s'], ['scd']), %s], [V('x', [1,2,3,4]), V('s', [4])], [V('y', None)],\n"
                 "     [I('sc', np.array([1, 1, 2, 2], np.float32)), I('sc2', np.array([1, 2, 2, 2], np.float32)),\n"
                 "      I('roi', np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32))], None)\n",
                 cases[i].node);
        generate(dir, body);
        char out[600];
        snprintf(out, sizeof out, "%s/model.mdl", dir);
        mdl_error err;
        assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err), MDL_UNSUPPORTED);
        if (!strstr(err.msg, cases[i].want) || !strstr(err.msg, "rz"))
            fail_msg("case %zu: message '%s' does not name '%s'", i, err.msg, cases[i].want);
    }
}

/* MatMul of two run-time operands with broadcast batch dims (attention's Q K^T and P V). */
static void test_matmul_runtime(void **state) {
    (void)state;
    mdl_model *m = check_case("nn_matmul",
        "a = R(2, 3, 4, 5); b = R(3, 5, 6); c = R(4, 5); d = R(2, 1, 5, 2)\n"
        "save([N('MatMul', ['a','b'], ['y1']), N('MatMul', ['c','b'], ['y2']), N('MatMul', ['a','d'], ['y3'])],\n"
        "     [V('a', [2,3,4,5]), V('b', [3,5,6]), V('c', [4,5]), V('d', [2,1,5,2])], [V('y%d' % i, None) for i in (1,2,3)],\n"
        "     [], {'a': a, 'b': b, 'c': c, 'd': d})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "MatMul"), 3);
    mdl_model_free(m);
}

/* Every unsupported operator at once: type, node count, first node, the domain when not the
   default one; element types by name. */
static void test_unsupported_all_at_once(void **state) {
    (void)state;
    const char *dir = case_dir("unsupported_all");
    generate(dir, "x = R(2, 3)\n"
                  "nodes = [N('Softsign', ['x'], ['a'], name='s1'), N('Det', ['a'], ['d'], name='det'),\n"
                  "         N('Softsign', ['a'], ['b'], name='s2'), N('Relu', ['b'], ['r']),\n"
                  "         N('Frobnicate', ['r'], ['y'], name='frob', domain='com.example')]\n"
                  "m = h.make_model(h.make_graph(nodes, 'g', [V('x', [2,3])], [V('y', None)]),\n"
                  "                 opset_imports=[h.make_opsetid('', 15), h.make_opsetid('com.example', 1)])\n"
                  "onnx.save(m, os.path.join(D, 'model.onnx'))\n");
    char out[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    mdl_error err;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "3 unsupported operators (opset 15)"));
    assert_non_null(strstr(err.msg, "Softsign (2 nodes, first 's1')"));
    assert_non_null(strstr(err.msg, "Det (1 node, first 'det')"));
    assert_non_null(strstr(err.msg, "Frobnicate (domain com.example, 1 node, first 'frob')"));
    assert_false(th_exists(out));

    const char *dir2 = case_dir("elem_type_name");
    generate(dir2, "save([N('Relu', ['x'], ['y'])], [h.make_tensor_value_info('x', TP.DOUBLE, [2])],\n"
                   "     [V('y', None)], [], None)\n");
    assert_int_equal(mdl_convert_onnx(path_in(dir2, "model.onnx"), out, NULL, NULL, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "graph input 'x' has element type double"));
}

static void test_external_data(void **state) {
    (void)state;
    mdl_model *m = check_case("external",
        "x = R(2, 8)\n"
        "save([N('Gemm', ['x','W','B'], ['y'], transB=1)], [V('x', [2,8])], [V('y', None)],\n"
        "     [I('W', R(16, 8)), I('B', R(16))], {'x': x}, ext=True)\n",
        NULL, NULL);
    mdl_model_free(m);
    /* the weights file gone: a clear I/O error naming it */
    const char *dir = th_tmp("external");
    char w[600], out[600];
    snprintf(w, sizeof w, "%s/weights.bin", dir);
    snprintf(out, sizeof out, "%s/again.mdl", dir);
    assert_int_equal(remove(w), 0);
    mdl_error err;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err), MDL_IO);
    assert_non_null(strstr(err.msg, "weights.bin"));
    assert_false(th_exists(out));
}

static void test_dynamic_dims(void **state) {
    (void)state;
    const char *body =
        "x = R(2, 3, 5, 7)\n"
        "nodes = [N('Conv', ['x','W'], ['c'], pads=[1,1,1,1]), N('GlobalAveragePool', ['c'], ['g']),\n"
        "         N('Flatten', ['g'], ['f']), N('Gemm', ['f','FW'], ['y'], transB=1)]\n"
        "save(nodes, [V('x', ['N', 3, 'H', 'W'])], [V('y', ['N', 4])], [I('W', R(6,3,3,3)), I('FW', R(4,6))], {'x': x})\n";
    mdl_convert_options o = mdl_convert_options_default();
    assert_int_equal(mdl_parse_input_shape("x=2x3x5x7", &o.input_shapes[0], NULL), MDL_OK);
    o.ninput_shapes = 1;
    mdl_model *m = check_case("dynamic", body, &o, NULL);
    mdl_tensor_info info;
    assert_int_equal(mdl_model_input_info(m, 0, &info), MDL_OK);
    assert_int_equal(info.dims[0], 2);
    assert_int_equal(info.dims[3], 7);
    mdl_model_free(m);
    const char *dir = th_tmp("dynamic");
    char out[600];
    snprintf(out, sizeof out, "%s/default.mdl", dir);
    /* without --input-shape the dynamic dims stay dynamic, named by their dim_param, and the
       report says so; a session picks the sizes */
    mdl_error err;
    mdl_convert_report rep;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, &rep, &err), MDL_OK);
    assert_int_equal(rep.nsymbols, 3);
    assert_string_equal(rep.dynamic, "x[0]=N, x[2]=H, x[3]=W");
    assert_int_equal(mdl_model_load_file(out, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_model_input_info(m, 0, &info), MDL_OK);
    assert_int_equal(info.dims[0], -1);
    assert_int_equal(info.dims[1], 3);
    assert_int_equal(info.dims[2], -1);
    assert_string_equal(info.dim_names[0], "N");
    assert_string_equal(info.dim_names[3], "W");
    assert_null(info.dim_names[1]);
    assert_int_equal(mdl_model_output_info(m, 0, &info), MDL_OK);
    assert_int_equal(info.dims[0], -1);
    assert_int_equal(info.dims[1], 4);
    mdl_session *s;
    mdl_shape sh = {4, {2, 3, 9, 11}};
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    assert_int_equal(mdl_session_resize(s, 1, &sh, &err), MDL_OK);
    memset(mdl_session_input_data(s, 0), 0, 2 * 3 * 9 * 11 * sizeof(float));
    assert_int_equal(mdl_session_run(s), MDL_OK);
    assert_int_equal(mdl_session_output_info(s, 0, &info), MDL_OK);
    assert_int_equal(info.dims[0], 2);
    mdl_session_free(s);
    mdl_model_free(m);
    /* a fixed dim cannot change, the rank must match, the name must exist */
    const char *bad[] = {"x=2x4x5x7", "x=2x3x5", "nope=1x3x5x7"};
    const mdl_status want[] = {MDL_SHAPE, MDL_SHAPE, MDL_INVALID_ARGUMENT};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mdl_parse_input_shape(bad[i], &o.input_shapes[0], NULL), MDL_OK);
        assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, &o, NULL, &err), want[i]);
    }
    /* the CLI takes the same option */
    snprintf(out, sizeof out, "%s/cli.mdl", dir);
    assert_int_equal(th_system("'%s' '%s/model.onnx' -o '%s' --input-shape x=3x3x4x4 --name net "
                               "--model-version 2.5 --description 'hello there' > /dev/null",
                               th_tool("mdeploy-convert"), dir, out), 0);
    assert_int_equal(mdl_model_load_file(out, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_model_input_info(m, 0, &info), MDL_OK);
    assert_int_equal(info.dims[0], 3);
    assert_int_equal(info.dims[2], 4);
    assert_string_equal(mdl_model_name(m), "net");
    assert_string_equal(mdl_model_version(m), "2.5");
    assert_string_equal(mdl_model_description(m), "hello there");
    mdl_model_free(m);
    /* defaults come from the ONNX model */
    snprintf(out, sizeof out, "%s/default.mdl", dir);
    assert_int_equal(mdl_model_load_file(out, NULL, &m, &err), MDL_OK);
    assert_string_equal(mdl_model_name(m), "g");
    assert_string_equal(mdl_model_version(m), "7");
    assert_string_equal(mdl_model_description(m), "a test model");
    mdl_model_free(m);
}

/* The ONNX metadata_props are carried into the file; --metadata / options add to them and replace
   a key they share. */
static void test_metadata(void **state) {
    (void)state;
    const char *dir = case_dir("metadata");
    generate(dir, "save([N('Relu', ['x'], ['y'])], [V('x', [2,3])], [V('y', None)], [], None)\n"
                  "m = onnx.load(os.path.join(D, 'model.onnx'))\n"
                  "h.set_model_props(m, {'author': 'me', 'license': 'MIT'})\n"
                  "onnx.save(m, os.path.join(D, 'model.onnx'))\n");
    char out[600];
    snprintf(out, sizeof out, "%s/api.mdl", dir);
    mdl_convert_options o = mdl_convert_options_default();
    const char *keys[] = {"license", "team", "version"}, *values[] = {"Apache-2.0", "vision", "3.1"};
    o.nmetadata = 3;
    o.metadata_keys = keys;
    o.metadata_values = values;
    mdl_error err;
    mdl_model *m;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, &o, NULL, &err), MDL_OK);
    assert_int_equal(mdl_model_load_file(out, NULL, &m, &err), MDL_OK);
    assert_string_equal(mdl_model_metadata(m, "author"), "me");
    assert_string_equal(mdl_model_metadata(m, "license"), "Apache-2.0");
    assert_string_equal(mdl_model_metadata(m, "team"), "vision");
    assert_string_equal(mdl_model_version(m), "3.1");
    int nlicense = 0;
    const char *k, *v;
    for (int i = 0; mdl_model_metadata_at(m, i, &k, &v); i++) nlicense += !strcmp(k, "license");
    assert_int_equal(nlicense, 1);
    mdl_model_free(m);
    /* the CLI */
    snprintf(out, sizeof out, "%s/cli.mdl", dir);
    assert_int_equal(th_system("'%s' '%s/model.onnx' -o '%s' --metadata team=audio --metadata 'note=a=b' -q",
                               th_tool("mdeploy-convert"), dir, out), 0);
    assert_int_equal(mdl_model_load_file(out, NULL, &m, &err), MDL_OK);
    assert_string_equal(mdl_model_metadata(m, "author"), "me");
    assert_string_equal(mdl_model_metadata(m, "license"), "MIT");
    assert_string_equal(mdl_model_metadata(m, "team"), "audio");
    assert_string_equal(mdl_model_metadata(m, "note"), "a=b");
    mdl_model_free(m);
    assert_int_not_equal(th_system("'%s' '%s/model.onnx' -o '%s' --metadata novalue 2>/dev/null", th_tool("mdeploy-convert"), dir, out), 0);
}

/* mdl_onnx_summarize and mdeploy-inspect MODEL.onnx: inputs/outputs with types and shapes
   (dim_params kept), operators marked supported / folded only / unsupported. */
static void test_onnx_summary(void **state) {
    (void)state;
    const char *dir = case_dir("summary");
    generate(dir, "nodes = [N('Relu', ['x'], ['r'], name='relu1'), N('Shape', ['r'], ['s']),\n"
                  "         N('Softsign', ['r'], ['a']), N('Relu', ['a'], ['y'], name='relu2'),\n"
                  "         N('Frob', ['a'], ['z'], name='frob', domain='com.example')]\n"
                  "g = h.make_graph(nodes, 'net', [V('x', ['batch', 3]), V('ids', [2, None], TP.INT64)],\n"
                  "                 [V('y', ['batch', 3]), V('z', None, TP.BOOL), V('s', [2], TP.INT64)])\n"
                  "m = h.make_model(g, opset_imports=[h.make_opsetid('', 17), h.make_opsetid('com.example', 1)],\n"
                  "                 producer_name='gen')\n"
                  "h.set_model_props(m, {'author': 'me'})\n"
                  "onnx.save(m, os.path.join(D, 'model.onnx'))\n");
    mdl_onnx_summary *s;
    mdl_error err;
    assert_int_equal(mdl_onnx_summarize(path_in(dir, "model.onnx"), &s, &err), MDL_OK);
    assert_int_equal(s->opset, 17);
    assert_string_equal(s->producer_name, "gen");
    assert_string_equal(s->graph_name, "net");
    assert_int_equal(s->ninputs, 2);
    assert_string_equal(s->inputs[0].name, "x");
    assert_string_equal(s->inputs[0].elem_type, "float");
    assert_int_equal(s->inputs[0].rank, 2);
    assert_string_equal(s->inputs[0].dim_params[0], "batch");
    assert_int_equal(s->inputs[0].dims[0], -1);
    assert_int_equal(s->inputs[0].dims[1], 3);
    assert_string_equal(s->inputs[1].elem_type, "int64");
    assert_int_equal(s->inputs[1].dims[1], -1);
    assert_null(s->inputs[1].dim_params[1]);
    assert_int_equal(s->noutputs, 3);
    assert_string_equal(s->outputs[1].elem_type, "bool");
    assert_int_equal(s->outputs[1].rank, -1);
    assert_int_equal(s->nops, 4);
    assert_string_equal(s->ops[0].op_type, "Relu");
    assert_int_equal(s->ops[0].count, 2);
    assert_string_equal(s->ops[0].first_node, "relu1");
    assert_int_equal(s->ops[0].support, MDL_ONNX_SUPPORTED);
    assert_string_equal(s->ops[1].op_type, "Shape");
    assert_int_equal(s->ops[1].support, MDL_ONNX_FOLDED);
    assert_string_equal(s->ops[2].op_type, "Softsign");
    assert_int_equal(s->ops[2].support, MDL_ONNX_UNSUPPORTED);
    assert_string_equal(s->ops[3].domain, "com.example");
    assert_int_equal(s->ops[3].support, MDL_ONNX_UNSUPPORTED);
    assert_int_equal(s->nunsupported, 2);
    assert_int_equal(s->nmetadata, 1);
    assert_string_equal(s->metadata_keys[0], "author");
    assert_string_equal(s->metadata_values[0], "me");
    mdl_onnx_summary_free(s);
    assert_int_equal(mdl_onnx_summarize(path_in(dir, "missing.onnx"), &s, &err), MDL_IO);

    /* the tool */
    char txt[700];
    snprintf(txt, sizeof txt, "%s/inspect.txt", dir);
    assert_int_equal(th_system("'%s/mdeploy-inspect' '%s/model.onnx' > '%s'", dirname_of(th_tool("mdeploy-convert")), dir, txt), 0);
    char *text = th_read_file(txt, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "input  0     x float [batch, 3]"));
    assert_non_null(strstr(text, "input  1     ids int64 [2, ?]"));
    assert_non_null(strstr(text, "output 1     z bool (no shape)"));
    assert_non_null(strstr(text, "meta         author = me"));
    assert_non_null(strstr(text, "operators    4 types, 2 unsupported"));
    assert_non_null(strstr(text, "Softsign                         1  UNSUPPORTED"));
    assert_non_null(strstr(text, "com.example:Frob                 1  UNSUPPORTED  first 'frob'"));
    assert_non_null(strstr(text, "Shape                            1  folded only  first 'shape_s'"));
    free(text);
}

static void test_bad_files(void **state) {
    (void)state;
    const char *dir = case_dir("bad");
    char out[600], in[600];
    snprintf(out, sizeof out, "%s/x.mdl", dir);
    mdl_error err;
    assert_int_equal(mdl_convert_onnx(path_in(dir, "missing.onnx"), out, NULL, NULL, &err), MDL_IO);
    assert_non_null(strstr(err.msg, "missing.onnx"));
    /* random bytes and truncations of a real model: an error, never a crash */
    generate(dir, "x = R(1, 3, 8, 8)\n"
                  "save([N('Conv', ['x','W','B'], ['c']), N('Relu', ['c'], ['y'])], [V('x', [1,3,8,8])],\n"
                  "     [V('y', None)], [I('W', R(4,3,3,3)), I('B', R(4))], None)\n");
    size_t n;
    uint8_t *model = th_read_file(path_in(dir, "model.onnx"), &n);
    assert_non_null(model);
    snprintf(in, sizeof in, "%s/broken.onnx", dir);
    th_seed(7);
    int corrupt = 0;
    for (int k = 0; k < 200; k++) {
        size_t len = k < 100 ? (size_t)th_rand_int(0, (int64_t)n - 1) : n;
        uint8_t *b = malloc(n + 1);
        memcpy(b, model, n);
        if (k >= 100)
            for (int j = 0; j < 1 + k % 5; j++) b[th_rand_int(0, (int64_t)n - 1)] = (uint8_t)th_rand_u64();
        assert_true(th_write_file(in, b, len));
        free(b);
        mdl_status st = mdl_convert_onnx(in, out, NULL, NULL, &err);
        if (st != MDL_OK) {
            assert_true(err.msg[0] != 0);
            corrupt += st == MDL_CORRUPT_MODEL;
        }
    }
    assert_true(corrupt > 0);
    free(model);
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)th_rand_u64();
    assert_true(th_write_file(in, junk, sizeof junk));
    assert_int_equal(mdl_convert_onnx(in, out, NULL, NULL, &err), MDL_CORRUPT_MODEL);
}

static void test_parse_input_shape(void **state) {
    (void)state;
    mdl_input_shape s;
    assert_int_equal(mdl_parse_input_shape("input_ids=1x128", &s, NULL), MDL_OK);
    assert_int_equal(s.rank, 2);
    assert_int_equal(s.dims[0], 1);
    assert_int_equal(s.dims[1], 128);
    assert_int_equal(strncmp(s.name, "input_ids", 9), 0);
    assert_int_equal(mdl_parse_input_shape("a=b=3,4,5", &s, NULL), MDL_OK); /* name "a=b" */
    assert_int_equal(s.rank, 3);
    assert_int_equal(mdl_parse_input_shape("x=7", &s, NULL), MDL_OK);
    assert_int_equal(s.rank, 1);
    const char *bad[] = {"x", "=1x2", "x=", "x=1x", "x=0x3", "x=-1x3", "x=1xx3", "x=1x3a",
                         "x=1x2x3x4x5x6x7x8x9", "x=99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mdl_error err;
        if (mdl_parse_input_shape(bad[i], &s, &err) != MDL_INVALID_ARGUMENT) fail_msg("accepted '%s'", bad[i]);
        assert_true(err.msg[0] != 0);
    }
}

/* The same model at opsets 11, 13 and 17 (axes/bounds move from attributes to inputs). */
static void test_opsets(void **state) {
    (void)state;
    const int opsets[] = {11, 13, 17};
    for (int i = 0; i < 3; i++) {
        char body[2048], name[32];
        snprintf(body, sizeof body,
                 "op = %d\n"
                 "x = R(2, 3, 4, 5, lo=-8, hi=8)\n"
                 "ax = (lambda n, axes, **kw: N(n, ['x' if n != 'Unsqueeze' else 'sq', 'axes'], ['%%s_o' %% n.lower()], **kw)) if op >= 13 else \\\n"
                 "     (lambda n, axes, **kw: N(n, ['x' if n != 'Unsqueeze' else 'sq'], ['%%s_o' %% n.lower()], axes=axes, **kw))\n"
                 "nodes = [N('Slice', ['x','st','en','sa'], ['sq']), ax('Unsqueeze', [1]), ax('ReduceSum', [1], keepdims=0),\n"
                 "         N('Clip', ['x','lo','hi'], ['c']), N('Pad', ['x','pads','pv'], ['p']), N('Softmax', ['x'], ['s'], axis=-1)]\n"
                 "inits = [I('st', np.array([1], np.int64)), I('en', np.array([2], np.int64)), I('sa', np.array([1], np.int64)),\n"
                 "         I('lo', np.float32(-1)), I('hi', np.float32(6)), I('pads', np.array([0,0,1,1,0,0,2,0], np.int64)),\n"
                 "         I('pv', np.float32(-2))]\n"
                 "if op >= 13: inits.append(I('axes', np.array([1], np.int64)))\n"
                 "save(nodes, [V('x', [2,3,4,5])], [V(n, None) for n in ['unsqueeze_o', 'reducesum_o', 'c', 'p', 's']],\n"
                 "     inits, {'x': x}, opset=op)\n",
                 opsets[i]);
        snprintf(name, sizeof name, "opset%d", opsets[i]);
        mdl_convert_report r;
        mdl_model *m = check_case(name, body, NULL, &r);
        assert_int_equal(r.opset, opsets[i]);
        mdl_model_free(m);
    }
}

/* ---- run-time element-wise operators (src/ops/elementwise.c, compare.c, cast.c, binary.c) ---- */

/* Every element-wise operator on run-time inputs, with broadcasting, against ONNX Runtime:
   float outputs within TOL, integer and bool outputs bit-exact. */
static void test_elementwise_runtime(void **state) {
    (void)state;
    mdl_model *m = check_case("elementwise",
        "x = R(2, 3, 4, lo=-3, hi=3); y = R(3, 1, lo=-2, hi=2); p = R(2, 3, 4, lo=0.1, hi=4)\n"
        "x[0, 0, :2] = y[0, 0]  # some equal elements for Equal/LessOrEqual\n"
        "i = rng.integers(-50, 50, (2, 3, 4)).astype(np.int32); j = rng.integers(1, 9, (4,)).astype(np.int32)\n"
        "j[1] = -j[1]\n"
        "k = rng.integers(-2**40, 2**40, (3, 4)).astype(np.int64); q = rng.integers(-7, 8, (4,)).astype(np.int64)\n"
        "q[q == 0] = 3\n"
        "b = rng.integers(0, 2, (2, 3, 4)).astype(bool); c = rng.integers(0, 2, (4,)).astype(bool)\n"
        "ops = [('Exp', ['x']), ('Sqrt', ['p']), ('Log', ['p']), ('Neg', ['x']), ('Reciprocal', ['p']),\n"
        "       ('Abs', ['x']), ('Neg', ['i']), ('Abs', ['k']), ('Pow', ['p', 'y']), ('Pow', ['x', 'two']),\n"
        "       ('Equal', ['x', 'y']), ('Less', ['x', 'y']), ('Greater', ['i', 'j']), ('LessOrEqual', ['x', 'y']),\n"
        "       ('GreaterOrEqual', ['k', 'q']), ('Equal', ['b', 'c']), ('Not', ['b']), ('And', ['b', 'c']),\n"
        "       ('Or', ['b', 'c']), ('Xor', ['b', 'c']), ('Where', ['b', 'x', 'y']), ('Where', ['c', 'i', 'j']),\n"
        "       ('Add', ['i', 'j']), ('Sub', ['j', 'i']), ('Mul', ['i', 'j']), ('Div', ['i', 'j']),\n"
        "       ('Add', ['k', 'q']), ('Sub', ['k', 'q']), ('Mul', ['k', 'q']), ('Div', ['k', 'q'])]\n"
        "nodes = [N(op, ins, ['o%d' % n]) for n, (op, ins) in enumerate(ops)]\n"
        "casts = [('x', TP.INT32), ('x', TP.INT8), ('x', TP.INT64), ('x', TP.BOOL), ('i', TP.FLOAT),\n"
        "         ('i', TP.UINT8), ('i', TP.INT8), ('i', TP.BOOL), ('k', TP.INT32), ('k', TP.FLOAT),\n"
        "         ('b', TP.FLOAT), ('b', TP.INT64), ('i', TP.INT64)]\n"
        "nodes += [N('Cast', [a], ['c%d' % n], to=t) for n, (a, t) in enumerate(casts)]\n"
        "outs = ['o%d' % n for n in range(len(ops))] + ['c%d' % n for n in range(len(casts))]\n"
        "ins = [V('x', [2,3,4]), V('y', [3,1]), V('p', [2,3,4]), V('i', [2,3,4], TP.INT32),\n"
        "       V('j', [4], TP.INT32), V('k', [3,4], TP.INT64), V('q', [4], TP.INT64),\n"
        "       V('b', [2,3,4], TP.BOOL), V('c', [4], TP.BOOL)]\n"
        "inits = [I('two', np.float32(2.0))]\n"
        "inf = onnx.shape_inference.infer_shapes(h.make_model(h.make_graph(nodes, 'g', ins, [], inits),\n"
        "                                        opset_imports=[h.make_opsetid('', 15)]))\n"
        "typed = {v.name: v for v in inf.graph.value_info}\n"
        "save(nodes, ins, [typed[o] for o in outs], inits,\n"
        "     {'x': x, 'y': y, 'p': p, 'i': i, 'j': j, 'k': k, 'q': q, 'b': b, 'c': c}, opset=15)\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Cast"), 13);
    assert_int_equal(count_op(m, "Where"), 2);
    /* the target type is the Cast's attribute (mdeploy-inspect shows it) */
    int casts_to_int8 = 0;
    for (int i = 0; i < mdl_model_node_count(m); i++) {
        char attrs[128];
        mdl_model_node_attrs(m, i, attrs, sizeof attrs);
        casts_to_int8 += strcmp(attrs, "to=int8") == 0;
    }
    assert_int_equal(casts_to_int8, 2);
    mdl_model_free(m);
}

/* Converts dir/model.onnx, runs it on the stored inputs and returns the run's status (the
   message in msg). */
static mdl_status run_status(const char *dir, char *msg, size_t size) {
    mdl_error err;
    char out[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    if (mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err) != MDL_OK)
        fail_msg("conversion failed: %s", err.msg);
    mdl_model *m;
    mdl_session *s;
    assert_int_equal(mdl_model_load_file(out, NULL, &m, &err), MDL_OK);
    assert_int_equal(mdl_session_create(m, NULL, &s, &err), MDL_OK);
    for (int i = 0; i < mdl_model_input_count(m); i++) {
        char name[32];
        snprintf(name, sizeof name, "in%d.npy", i);
        mdl_npy x;
        if (mdl_npy_read(path_in(dir, name), &x, &err) != MDL_OK) fail_msg("%s", err.msg);
        assert_int_equal(mdl_session_set_input(s, i, x.data, x.bytes, &err), MDL_OK);
        mdl_npy_free(&x);
    }
    mdl_status st = mdl_session_run(s);
    snprintf(msg, size, "%s", mdl_session_message(s));
    mdl_session_free(s);
    mdl_model_free(m);
    return st;
}

/* What ONNX leaves undefined fails the run with a message instead of crashing or making up a
   value: integer division by zero, a float cast to an integer type that cannot hold it. */
static void test_elementwise_undefined(void **state) {
    (void)state;
    char msg[MDL_ERROR_MSG_SIZE];
    const char *dir = case_dir("int_div_zero");
    generate(dir, "i = np.array([7, -7, 3], np.int32); j = np.array([2, 0, 1], np.int32)\n"
                  "np.save(os.path.join(D, 'in0.npy'), i); np.save(os.path.join(D, 'in1.npy'), j)\n"
                  "save([N('Div', ['i', 'j'], ['y'], name='idiv')], [V('i', [3], TP.INT32), V('j', [3], TP.INT32)],\n"
                  "     [V('y', [3], TP.INT32)])\n");
    assert_int_equal(run_status(dir, msg, sizeof msg), MDL_OUT_OF_RANGE);
    assert_non_null(strstr(msg, "idiv"));
    assert_non_null(strstr(msg, "division by zero"));
    assert_non_null(strstr(msg, "element 1"));
    dir = case_dir("cast_range");
    generate(dir, "x = np.array([1.5, -2.7, 3e9], np.float32)\n"
                  "np.save(os.path.join(D, 'in0.npy'), x)\n"
                  "save([N('Cast', ['x'], ['y'], name='tocast', to=TP.INT32)], [V('x', [3])], [V('y', [3], TP.INT32)])\n");
    assert_int_equal(run_status(dir, msg, sizeof msg), MDL_OUT_OF_RANGE);
    assert_non_null(strstr(msg, "tocast"));
    assert_non_null(strstr(msg, "element 2"));
    /* in range: truncation toward zero, as ORT */
    run_simple("cast_trunc", "x = np.array([1.5, -2.7, 2147483520.0, -0.9], np.float32)\n"
                             "save([N('Cast', ['x'], ['y'], to=TP.INT32)], [V('x', [4])], [V('y', [4], TP.INT32)], [], {'x': x})\n");
}

/* The Keras 3 embedding lookup as tf2onnx writes it: ids < 0 wrapped to ids + n by
   Less/Not/Cast/Mul/Add before the Gather.  With n the table's row count the wrap is dropped
   (the runtime Gather wraps negative ids itself) and the result still matches ORT on negative
   ids; ids outside [-n, n) are an error of the run.  With another n it stays. */
static const char WRAP_MODEL[] =
    "def wrap_model(n, ids):\n"
    "    nodes = [N('Cast', ['ids'], ['f'], to=TP.FLOAT), N('Less', ['f', 'zero'], ['l']), N('Not', ['l'], ['nl']),\n"
    "             N('Cast', ['nl'], ['cn'], to=TP.INT32), N('Mul', ['ids', 'cn'], ['keep']),\n"
    "             N('Add', ['ids', 'n'], ['plus']), N('Cast', ['l'], ['cl'], to=TP.INT32),\n"
    "             N('Mul', ['cl', 'plus'], ['wrapped']), N('Add', ['wrapped', 'keep'], ['s']),\n"
    "             N('Gather', ['E', 's'], ['e'], axis=0), N('ReduceSum', ['e', 'ax'], ['y'], keepdims=0)]\n"
    "    save(nodes, [V('ids', [2, 5], TP.INT32)], [V('y', None)],\n"
    "         [I('E', R(10, 4)), I('zero', np.float32(0)), I('n', np.int32(n)), I('ax', np.array([1], np.int64))],\n"
    "         {'ids': ids}, opset=15)\n";

static void test_keras_id_wrap(void **state) {
    (void)state;
    char body[4096], msg[MDL_ERROR_MSG_SIZE];
    snprintf(body, sizeof body, "%s%s", WRAP_MODEL,
             "wrap_model(10, np.array([[0, -1, 9, -10, 3], [-5, 5, 2, -3, 1]], np.int32))\n");
    mdl_model *m = check_case("keras_wrap", body, NULL, NULL);
    assert_int_equal(count_op(m, "Gather"), 1);
    assert_int_equal(count_op(m, "Less") + count_op(m, "Not") + count_op(m, "Cast") +
                         count_op(m, "Mul") + count_op(m, "Add"), 0);
    assert_int_equal(mdl_model_node_count(m), 2); /* Gather, ReduceSum */
    mdl_model_free(m);
    /* out of range: an error, never a read outside the table */
    for (int k = 0; k < 2; k++) {
        const char *dir = case_dir("keras_wrap_range");
        snprintf(body, sizeof body, "%s%s", WRAP_MODEL,
                 k ? "wrap_model(10, np.zeros((2, 5), np.int32))\nnp.save(os.path.join(D, 'in0.npy'), np.array([[0, 1, 2, 3, 10], [0] * 5], np.int32))\n"
                   : "wrap_model(10, np.zeros((2, 5), np.int32))\nnp.save(os.path.join(D, 'in0.npy'), np.array([[0] * 5, [0, -11, 0, 0, 0]], np.int32))\n");
        generate(dir, body);
        assert_int_equal(run_status(dir, msg, sizeof msg), MDL_OUT_OF_RANGE);
        assert_non_null(strstr(msg, k ? "index 10" : "index -11"));
    }
    /* n = 7 is not the table's size: the wrap is not what Gather does, it stays (and ids in
       [-7, 0) map to rows 0..6 as ORT computes) */
    snprintf(body, sizeof body, "%s%s", WRAP_MODEL,
             "wrap_model(7, np.array([[0, -1, 9, -7, 3], [-5, 5, 2, -3, 1]], np.int32))\n");
    m = check_case("keras_wrap_other_n", body, NULL, NULL);
    assert_int_equal(count_op(m, "Less"), 1);
    assert_int_equal(count_op(m, "Not"), 1);
    mdl_model_free(m);
}

/* Keras 3's BatchNorm after a depthwise conv, exported as Mul + Add of per-channel constants:
   both go into the conv (and the ReLU6 into its epilogue).  A Mul by a full-size constant is
   not per channel and stays. */
static void test_mul_add_into_conv(void **state) {
    (void)state;
    mdl_convert_report rep;
    mdl_model *m = check_case("dw_mul_add",
        "x = R(1, 6, 7, 7)\n"
        "nodes = [N('Conv', ['x', 'W'], ['c'], group=6, pads=[1,1,1,1]), N('Mul', ['c', 's'], ['m']),\n"
        "         N('Add', ['m', 'b'], ['a']), N('Clip', ['a', 'lo', 'hi'], ['y'])]\n"
        "save(nodes, [V('x', [1,6,7,7])], [V('y', None)],\n"
        "     [I('W', R(6,1,3,3)), I('s', R(6,1,1, lo=0.5, hi=2)), I('b', R(6,1,1)),\n"
        "      I('lo', np.float32(0)), I('hi', np.float32(6))], {'x': x})\n",
        NULL, &rep);
    assert_int_equal(count_op(m, "Mul"), 0);
    assert_int_equal(count_op(m, "Add"), 0);
    assert_int_equal(count_op(m, "Clip"), 0);
    assert_int_equal(count_op(m, "DepthwiseConv2D"), 1);
    assert_int_equal(rep.nodes_out, 3); /* transpose in, depthwise conv, transpose out */
    mdl_model_free(m);
    m = check_case("conv_mul_full",
        "x = R(1, 3, 5, 5)\n"
        "nodes = [N('Conv', ['x', 'W'], ['c']), N('Mul', ['c', 's'], ['y'])]\n"
        "save(nodes, [V('x', [1,3,5,5])], [V('y', None)], [I('W', R(4,3,1,1)), I('s', R(1,4,5,5))], {'x': x})\n",
        NULL, NULL);
    assert_int_equal(count_op(m, "Mul"), 1);
    mdl_model_free(m);
}

static void test_loop_refused_with_hint(void **state) {
    (void)state;
    const char *dir = case_dir("loop");
    generate(dir, "body = h.make_graph([N('Identity', ['c'], ['c2'])], 'b',\n"
                  "    [V('i', [], TP.INT64), V('cond', [], TP.BOOL), V('c', [2])], [V('cond2', [], TP.BOOL), V('c2', [2])])\n"
                  "body.node.insert(0, N('Identity', ['cond'], ['cond2']))\n"
                  "save([N('Loop', ['M', '', 'x'], ['y'], name='rnn_loop', body=body)], [V('x', [2])], [V('y', [2])],\n"
                  "     [I('M', np.int64(3))])\n");
    mdl_error err;
    char out[600];
    snprintf(out, sizeof out, "%s/model.mdl", dir);
    assert_int_equal(mdl_convert_onnx(path_in(dir, "model.onnx"), out, NULL, NULL, &err), MDL_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "rnn_loop"));
    assert_non_null(strstr(err.msg, "unroll=True"));
}

static void *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

/* mdl_convert_onnx_buffer writes the same bytes as mdl_convert_onnx from the file; garbage and
   an external-data reference are refused. */
static void test_convert_from_memory(void **state) {
    (void)state;
    const char *models[] = {"tests/models/mlp.onnx", "tests/models/gru.onnx", "tests/models/dynamic/dyn_text.onnx"};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        size_t isize, fsize;
        void *onnx = read_whole(models[k], &isize);
        char out[256];
        snprintf(out, sizeof out, "%s/tests/convert/mem-%zu.mdl", MDL_BUILD_DIR, k);
        mdl_error err;
        mdl_convert_report rep;
        if (mdl_convert_onnx(models[k], out, NULL, NULL, &err)) fail_msg("%s", err.msg);
        void *want = read_whole(out, &fsize);
        remove(out);
        void *got;
        size_t gsize;
        if (mdl_convert_onnx_buffer(onnx, isize, &got, &gsize, NULL, &rep, &err)) fail_msg("%s", err.msg);
        assert_int_equal(gsize, fsize);
        assert_int_equal(rep.file_bytes, gsize);
        assert_memory_equal(got, want, fsize);
        mdl_convert_report_free(&rep);
        free(got);
        free(want);
        free(onnx);
    }
    void *got = (void *)1;
    size_t gsize = 1;
    mdl_error err;
    static const char junk[] = "\x0a\x05hello not a model";
    assert_int_equal(mdl_convert_onnx_buffer(junk, sizeof junk, &got, &gsize, NULL, NULL, &err), MDL_CORRUPT_MODEL);
    assert_null(got);
    assert_int_equal(gsize, 0);
    assert_int_equal(mdl_convert_onnx_buffer(NULL, 0, &got, &gsize, NULL, NULL, &err), MDL_INVALID_ARGUMENT);
}

/* Hostile files the fuzzer found.  An initializer whose shape asks for more data than the file
   carries is refused before the importer allocates for it (tests/fuzz/regress/make_huge_initializers.py: 2^40 floats declared,
   4 bytes present; before the check the import failed with OUT_OF_MEMORY, or reserved 12.9 GB
   for the fuzzer's 1.5 KB file). */
static void test_hostile_onnx_refused(void **state) {
    (void)state;
    const struct {
        const char *file, *msg;
        mdl_status st;
    } cases[] = {
        {"tests/fuzz/regress/onnx-initializer-huge-raw.onnx",
         "raw_data has 4 bytes, its shape needs 4398046511104", MDL_CORRUPT_MODEL},
        {"tests/fuzz/regress/onnx-initializer-huge-typed.onnx",
         "has 1 values, its shape needs 1099511627776", MDL_CORRUPT_MODEL},
        {"tests/fuzz/regress/onnx-initializer-oom.onnx", "its shape needs", MDL_CORRUPT_MODEL},
        /* fuzz finds: a node with no outputs read out[0] uninitialized (an ASan overflow in
           QuantizeLinear's lowering; a null output name in the GELU matcher) */
        {"tests/fuzz/regress/onnx-quantize-node-without-output.onnx", "node has no outputs",
         MDL_CORRUPT_MODEL},
        {"tests/fuzz/regress/onnx-gelu-node-without-output.onnx", "node has no outputs",
         MDL_CORRUPT_MODEL},
        /* a Resize scale of 5e38: the output length overflowed int64 (UBSan) */
        {"tests/fuzz/regress/onnx-resize-scale-huge.onnx", "is too large", MDL_SHAPE},
        /* a Mul of the quantize_dynamic pattern with an empty input name (an ASan overflow:
           the lowering read the value at index -1) */
        {"tests/fuzz/regress/onnx-dyn-mul-empty-input.onnx", "input 0 is missing", MDL_CORRUPT_MODEL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        size_t isize;
        void *onnx = read_whole(cases[k].file, &isize);
        void *got = NULL;
        size_t gsize = 0;
        mdl_error err;
        mdl_status st = mdl_convert_onnx_buffer(onnx, isize, &got, &gsize, NULL, NULL, &err);
        if (st != cases[k].st || !strstr(err.msg, cases[k].msg))
            fail_msg("%s: status %s '%s', expected %s '...%s...'", cases[k].file,
                     mdl_status_str(st), err.msg, mdl_status_str(cases[k].st), cases[k].msg);
        assert_null(got);
        free(onnx);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_from_memory),
        cmocka_unit_test(test_hostile_onnx_refused),
        cmocka_unit_test(test_cnn_passes),
        cmocka_unit_test(test_dense_passes),
        cmocka_unit_test(test_depthwise_relu6),
        cmocka_unit_test(test_shape_subgraph_lstm),
        cmocka_unit_test(test_conv_variants),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_gemm_matmul),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_shape_ops),
        cmocka_unit_test(test_nhwc_region_ops),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_gru_and_lstm_variants),
        cmocka_unit_test(test_embedding_dot),
        cmocka_unit_test(test_batch_norm_unfolded),
        cmocka_unit_test(test_removed_and_folded),
        cmocka_unit_test(test_typed_initializers),
        cmocka_unit_test(test_unsupported_op),
        cmocka_unit_test(test_unsupported_all_at_once),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_onnx_summary),
        cmocka_unit_test(test_external_data),
        cmocka_unit_test(test_dynamic_dims),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_parse_input_shape),
        cmocka_unit_test(test_opsets),
        cmocka_unit_test(test_elementwise_runtime),
        cmocka_unit_test(test_elementwise_undefined),
        cmocka_unit_test(test_keras_id_wrap),
        cmocka_unit_test(test_mul_add_into_conv),
        cmocka_unit_test(test_loop_refused_with_hint),
        cmocka_unit_test(test_nn_fusions),
        cmocka_unit_test(test_nn_not_fused),
        cmocka_unit_test(test_layer_norm_op),
        cmocka_unit_test(test_resize_variants),
        cmocka_unit_test(test_resize_refused),
        cmocka_unit_test(test_matmul_runtime),
        cmocka_unit_test(test_tile),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    th_system("rm -rf '%s'", th_tmpdir());
    return rc;
}
