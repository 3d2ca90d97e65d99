/* int8 ADD, SUB, MUL with NumPy broadcasting, every operand with its own scale and zero point,
   and the fused activation as a clamp in the quantized domain (mdl__quant_act_range).

   ADD / SUB follow TFLite's reference kernel (bit-exact with TFLM and CMSIS-NN): both inputs
   are brought to a common fixed-point scale 2 * max(sa, sb) / 2^20 first,
       a' = ((qa - za) << 20) * (sa / (2 max))      (Q31 multiplier < 1)
       b' = ((qb - zb) << 20) * (sb / (2 max))
       y  = zy + (a' +- b') * (2 max / (2^20 sy))
   MUL: y = zy + (qa - za) (qb - zb) * (sa sb / sy).  Every product is rounded to nearest by
   mdl__qmul_apply (ties away from zero); the multipliers are computed once in pack.

   Broadcasting walks the output with an odometer over all but the last dim; each operand has
   stride 0 along the dims it repeats. */
#include "int8_elem.h"

#ifdef MDL_HAVE_X86_SIMD
#include "x86/int8_x86.h"
#include "x86/x86.h"
#endif

#define ADD_LEFT_SHIFT 20

typedef struct bin_pack {
    mdl__qmul ma, mb, mo; /* ADD/SUB: input and output multipliers; MUL: mo only */
    int32_t za, zb, zy, lo, hi;
} bin_pack;

/* Element strides of t along the output's dims (0 where t is broadcast). */
static void bcast_strides(const mdl__tensor *t, const mdl__shape *o, int64_t *st) {
    int64_t s = 1;
    for (int32_t d = o->rank - 1; d >= 0; d--) {
        int32_t it = d - (o->rank - t->rank);
        int64_t dt = it >= 0 ? t->dims[it] : 1;
        st[d] = dt == 1 ? 0 : s;
        s *= dt;
    }
}

static mdl_status binary_prepare(mdl__kctx *c) {
    mdl_status st;
    if ((st = mdl__broadcast_prepare(c))) return st;
    if ((st = mdl__q8_operand(c, c->in[0], "input A"))) return st;
    if ((st = mdl__q8_operand(c, c->in[1], "input B"))) return st;
    if ((st = mdl__q8_operand(c, c->out[0], "output"))) return st;
    if ((st = mdl__q8_check_act(c, &c->opt->binary.act))) return st;
    c->out_shape[0].dtype = MDL_DTYPE_INT8;
    c->packed_bytes = sizeof(bin_pack);
    return MDL_OK;
}

static mdl_status binary_pack(mdl__kctx *c) {
    const mdl__tensor *a = c->in[0], *b = c->in[1], *y = c->out[0];
    bin_pack *p = c->packed;
    const double sa = a->scale[0], sb = b->scale[0], sy = y->scale[0];
    p->za = (int32_t)a->zero_point[0];
    p->zb = (int32_t)b->zero_point[0];
    p->zy = (int32_t)y->zero_point[0];
    mdl__q8_act_range(&c->opt->binary.act, y, &p->lo, &p->hi);
    bool ok;
    if (c->op == MDL_OP_MUL) {
        p->ma = p->mb = (mdl__qmul){0, 0};
        ok = mdl__qmul_from_real(sa * sb / sy, &p->mo);
    } else {
        const double twice_max = 2.0 * (sa > sb ? sa : sb);
        ok = mdl__qmul_from_real(sa / twice_max, &p->ma) &&
             mdl__qmul_from_real(sb / twice_max, &p->mb) &&
             mdl__qmul_from_real(twice_max / ((double)(1 << ADD_LEFT_SHIFT) * sy), &p->mo);
    }
    if (!ok)
        return mdl__fail(c, MDL_UNSUPPORTED,
                         "scales A %g, B %g, output %g give a multiplier out of the fixed-point "
                         "range",
                         sa, sb, sy);
    return MDL_OK;
}

static inline int8_t add_one(const bin_pack *p, int32_t qa, int32_t qb, bool sub) {
    const int32_t a = mdl__qmul_apply((qa - p->za) * (1 << ADD_LEFT_SHIFT), p->ma);
    const int32_t b = mdl__qmul_apply((qb - p->zb) * (1 << ADD_LEFT_SHIFT), p->mb);
    return (int8_t)mdl__q8_requant(sub ? a - b : a + b, p->mo, p->zy, p->lo, p->hi);
}

static inline int8_t mul_one(const bin_pack *p, int32_t qa, int32_t qb) {
    return (int8_t)mdl__q8_requant((qa - p->za) * (qb - p->zb), p->mo, p->zy, p->lo, p->hi);
}

/* One output row of n elements; operands advance by sa / sb (0 = broadcast). */
static void row(mdl_op op, const bin_pack *p, const int8_t *a, int64_t sa, const int8_t *b,
                int64_t sb, int8_t *o, int64_t n) {
#ifdef MDL_HAVE_X86_SIMD
    if (sa == 1 && sb == 1 && mdl__cpu_level() >= MDL_CPU_AVX2) {
        const mdl__q8_add_args args = {
            p->za, p->zb, p->zy, p->lo, p->hi, ADD_LEFT_SHIFT,
            p->mo.shift > 0 ? (int32_t)(((int64_t)1 << (31 - p->mo.shift)) - 1) : INT32_MAX,
            p->ma, p->mb, p->mo};
        if (op == MDL_OP_MUL) mdl__mul_q8_avx2(a, b, o, n, &args);
        else if (mdl__cpu_level() >= MDL_CPU_AVX512) mdl__add_q8_avx512(a, b, o, n, &args, op == MDL_OP_SUB);
        else mdl__add_q8_avx2(a, b, o, n, &args, op == MDL_OP_SUB);
        return;
    }
#endif
    switch (op) {
    case MDL_OP_ADD:
        for (int64_t i = 0; i < n; i++)
            o[i] = add_one(p, a[i * sa], b[i * sb], false);
        break;
    case MDL_OP_SUB:
        for (int64_t i = 0; i < n; i++)
            o[i] = add_one(p, a[i * sa], b[i * sb], true);
        break;
    default:
        for (int64_t i = 0; i < n; i++)
            o[i] = mul_one(p, a[i * sa], b[i * sb]);
        break;
    }
}

static mdl_status binary_run(mdl__kctx *c) {
    const mdl__tensor *at = c->in[0], *bt = c->in[1];
    const bin_pack *p = c->packed;
    if (!p) return mdl__fail(c, MDL_INTERNAL, "run without packed multipliers");
    mdl__shape os;
    mdl__broadcast_shape(at, bt, &os);
    const int64_t total = mdl__shape_count(&os);
    if (total == 0) return MDL_OK;
    const int8_t *a = c->in_data[0], *b = c->in_data[1];
    int8_t *o = c->out_data[0];
#ifdef MDL_HAVE_X86_SIMD
    /* no broadcasting (each operand has all the output's elements, in its order): one row, so
       that the SIMD loop's setup runs once, not once per innermost row */
    int64_t na = 1, nb = 1;
    for (int32_t d = 0; d < at->rank; d++) na *= at->dims[d];
    for (int32_t d = 0; d < bt->rank; d++) nb *= bt->dims[d];
    if (na == total && nb == total) {
        row(c->op, p, a, 1, b, 1, o, total);
        return MDL_OK;
    }
#endif
    if (os.rank == 0) {
        row(c->op, p, a, 0, b, 0, o, 1);
        return MDL_OK;
    }
    int64_t as[MDL_MAX_RANK], bs[MDL_MAX_RANK], idx[MDL_MAX_RANK] = {0};
    bcast_strides(at, &os, as);
    bcast_strides(bt, &os, bs);
    const int32_t last = os.rank - 1;
    const int64_t inner = os.dims[last], rows = total / inner;
    int64_t ao = 0, bo = 0;
    for (int64_t r = 0; r < rows; r++) {
        row(c->op, p, a + ao, as[last], b + bo, bs[last], o + r * inner, inner);
        for (int32_t d = last - 1; d >= 0; d--) {
            ao += as[d];
            bo += bs[d];
            if (++idx[d] < os.dims[d]) break;
            ao -= as[d] * os.dims[d];
            bo -= bs[d] * os.dims[d];
            idx[d] = 0;
        }
    }
    return MDL_OK;
}

const mdl__kernel mdl__add_q8 = {.prepare = binary_prepare, .run = binary_run, .pack = binary_pack};
const mdl__kernel mdl__sub_q8 = {.prepare = binary_prepare, .run = binary_run, .pack = binary_pack};
const mdl__kernel mdl__mul_q8 = {.prepare = binary_prepare, .run = binary_run, .pack = binary_pack};
