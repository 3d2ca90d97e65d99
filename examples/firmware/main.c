/* Bare-metal firmware example: a model in flash, no heap, a static session arena of exactly
   mdl_model_arena_size() bytes, outputs printed over semihosting.

   The model comes from `mdeploy-embed MODEL.mdl -n NAME -i INPUT.npy ...` (NAME.c/.h); build with
   -DFW_NAME=NAME -DFW_HEADER='"NAME.h"'.  The same file builds for the host (FW_HOST, against the full libmdeploy.a) so
   that the host's output for the same model and inputs can be compared line by line with the
   target's (tests/firmware/compare.py).

   Output (one line each):
     model NAME bytes=... kernels=... arena=... load=.../...
     out I ROW DTYPE HEX...           the raw bytes of output I for input row ROW, element by
                                      element (floats as their bit patterns: exact)
     check NAME ok|FAIL ...           failure paths: a missing kernel, a short arena, a short heap
     ram arena=... load=... stack=... peak RAM use (stack by painting)
   Exit status 0 when everything ran and every check passed. */
#include "mdeploy/mdeploy.h"
#include "mdeploy/resolver.h"
#include "mdeploy/security.h"

#include <stdio.h>
#include <string.h>

#define FW_CAT2(a, b) a##b
#define FW_CAT(a, b) FW_CAT2(a, b)
#define FW_STR2(a) #a
#define FW_STR(a) FW_STR2(a)
#define FW(x) FW_CAT(FW_NAME, x)
#include FW_HEADER /* "NAME.h" */

/* All the RAM the runtime gets: the session arena, exactly its size, and the loader's heap. */
static _Alignas(64) uint8_t arena[FW(_ARENA_BYTES)];
#ifdef FW_HOST
/* the host's SIMD kernels pack weights their own way: more room than the portable kernels need */
static _Alignas(16) uint8_t load_heap[2 * FW(_LOAD_BYTES) + (1 << 20)];
#else
static _Alignas(16) uint8_t load_heap[FW(_LOAD_BYTES)];
#endif
static mdl_op_resolver_entry kernel_entries[FW(_OP_COUNT)];

/* ---- peak stack by painting --------------------------------------------------------------- */
#ifdef FW_HOST
static void stack_paint(void) {}
static size_t stack_peak(void) { return 0; }
#else
/* picolibc.ld: static data ends at __bss_end, the stack grows down from __stack (the top of RAM);
   everything between is free (no heap), so the stack may use it all and all of it is painted. */
extern uint8_t __bss_end[], __stack[];
#define PAINT 0xa5
static __attribute__((noinline)) void stack_paint(void) {
    /* up to 256 bytes below this frame: the rest is live */
    uint8_t *p = __bss_end, *top = (uint8_t *)((uintptr_t)__builtin_frame_address(0) - 256);
    while (p < top) *p++ = PAINT;
}
static size_t stack_peak(void) {
    const uint8_t *p = __bss_end;
    while (p < __stack && *p == PAINT) p++;
    return (size_t)(__stack - p);
}
#endif

static int failures;

static void check(const char *what, bool ok, mdl_status st) {
    printf("check %s %s (status %d: %s)\n", what, ok ? "ok" : "FAIL", (int)st, mdl_status_str(st));
    if (!ok) failures++;
}

static void print_output(int i, int row, const mdl_tensor_info *ti, const void *data) {
    printf("out %d %d %s", i, row, mdl_dtype_name(ti->dtype));
    size_t esize = mdl_dtype_size(ti->dtype), n = esize ? ti->bytes / esize : 0;
    const uint8_t *p = data;
    for (size_t k = 0; k < n; k++) {
        unsigned long long v = 0;
        for (size_t b = 0; b < esize; b++) v |= (unsigned long long)p[k * esize + b] << (8 * b);
        if (esize == 8) printf(" %08lx%08lx", (unsigned long)(v >> 32), (unsigned long)(v & 0xffffffffu));
        else printf(" %0*lx", (int)(2 * esize), (unsigned long)v);
    }
    printf("\n");
}

/* The failure paths a firmware user meets: each must give its status, never a fault. */
static void check_failures(void) {
    mdl_error err;
    mdl_model *m = NULL;
    mdl_bump bump;
    mdl_allocator a;
    mdl_load_options o = mdl_load_options_default();
    o.allocator = &a;

    /* 1. the model's kernels not registered: an empty resolver, then one without the last */
    static mdl_op_resolver_entry few[FW(_OP_COUNT)];
    mdl_op_resolver r;
    mdl_op_resolver_init(&r, few, FW(_OP_COUNT));
    o.resolver = &r;
    a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    mdl_status st = mdl_model_load_buffer(FW(_model), sizeof FW(_model), &o, &m, &err);
    check("unregistered-kernels", st == MDL_UNSUPPORTED && !m, st);
#ifndef MDL_NO_ERROR_STRINGS
    printf("  message: %s\n", err.msg);
    check("unregistered-kernels-message", strstr(err.msg, "register MDL_OP_RESOLVER_ADD(r, ") != NULL, st);
#endif

    /* 2. no resolver at all: the firmware core has no default table */
#ifndef FW_HOST
    o.resolver = NULL;
    a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    st = mdl_model_load_buffer(FW(_model), sizeof FW(_model), &o, &m, &err);
    check("no-resolver", st == MDL_UNSUPPORTED && !m, st);
#endif

    /* 3. a loader heap one allocation short */
    mdl_op_resolver_init(&r, kernel_entries, FW(_OP_COUNT));
    FW(_register)(&r);
    o.resolver = &r;
    a = mdl_bump_init(&bump, load_heap, 64);
    st = mdl_model_load_buffer(FW(_model), sizeof FW(_model), &o, &m, &err);
    check("small-load-heap", st == MDL_OUT_OF_MEMORY && !m, st);

    /* 4. a session arena one byte short of mdl_model_arena_size */
    a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    st = mdl_model_load_buffer(FW(_model), sizeof FW(_model), &o, &m, &err);
    if (st == MDL_OK) {
        mdl_session *s = NULL;
        st = mdl_session_create_in(m, arena, mdl_model_arena_size(m) - 1, &s, &err);
        check("small-arena", st == MDL_BUFFER_TOO_SMALL && !s, st);
#ifndef MDL_NO_ERROR_STRINGS
        printf("  message: %s\n", err.msg);
        check("small-arena-message", strstr(err.msg, "too small") != NULL, st);
#endif
        mdl_model_free(m);
    } else check("small-arena (load)", false, st);

    /* 5. a model file that is not one (a corrupt flash image) */
    static _Alignas(16) const uint8_t junk[64] = {1, 2, 3};
    a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    st = mdl_model_load_buffer(junk, sizeof junk, &o, &m, &err);
    check("corrupt-model", st != MDL_OK && !m, st);

#if FW(_LOAD_PLANNER) && !defined(FW_HOST)
    /* 6. the model needs the load planner (weights widened at load) and only its kernels are
       registered: the firmware core links the planner only through its registration */
    mdl_op_resolver_init(&r, kernel_entries, FW(_OP_COUNT));
#define FW_ADD(op, dtype) MDL_OP_RESOLVER_ADD(&r, op, dtype);
    FW(_OPS)(FW_ADD)
#undef FW_ADD
    a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    st = mdl_model_load_buffer(FW(_model), sizeof FW(_model), &o, &m, &err);
    check("no-load-planner", st == MDL_UNSUPPORTED && !m, st);
#endif

#ifdef FW_SEAL_CHECK
    /* 8. the seal (include/mdeploy/security.h; -DFW_SEAL_CHECK images only): the firmware loader
       does not check it, an application that wants it calls mdl_seal_check (which links the
       SHA-256): the model in flash verifies, a RAM copy with one weight byte flipped does not */
    {
        mdl_seal_info info;
        st = mdl_seal_check(FW(_model), sizeof FW(_model), NULL, &info, &err);
        check("seal-digest", st == MDL_OK && info.has_seal && info.digest_checked, st);
        static _Alignas(16) uint8_t copy[sizeof FW(_model)];
        memcpy(copy, FW(_model), sizeof copy);
        copy[sizeof copy - 100] ^= 1; /* the weights are at the end of the file */
        st = mdl_seal_check(copy, sizeof copy, NULL, &info, &err);
        check("seal-tampered", st == MDL_CORRUPT_MODEL, st);
#ifndef MDL_NO_ERROR_STRINGS
        printf("  message: %s\n", err.msg);
        check("seal-tampered-message", strstr(err.msg, "content digest mismatch") != NULL, st);
#endif
    }
#endif

#ifdef FW_DYN_MODEL
    /* 7. a model with dynamic dims (a symbolic batch; -DFW_DYN_MODEL images only): a core built
       with MDL_NO_DYNAMIC has no code for them and refuses it at load */
    extern const uint8_t fw_dyn_model[];
    extern const size_t fw_dyn_model_bytes;
    a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    st = mdl_model_load_buffer(fw_dyn_model, fw_dyn_model_bytes, &o, &m, &err);
    check("dynamic-model", st == MDL_UNSUPPORTED && !m, st);
#ifndef MDL_NO_ERROR_STRINGS
    printf("  message: %s\n", err.msg);
    check("dynamic-model-message", strstr(err.msg, "MDL_NO_DYNAMIC") != NULL, st);
#endif
#endif
}

int main(void) {
    stack_paint();
    check_failures();

    mdl_op_resolver r;
    mdl_op_resolver_init(&r, kernel_entries, FW(_OP_COUNT));
    mdl_status st = FW(_register)(&r);
    mdl_bump bump;
    mdl_allocator a = mdl_bump_init(&bump, load_heap, sizeof load_heap);
    mdl_load_options o = mdl_load_options_default();
    o.allocator = &a;
    o.resolver = &r;
    mdl_error err;
    mdl_model *m = NULL;
    if (st == MDL_OK) st = mdl_model_load_buffer(FW(_model), sizeof FW(_model), &o, &m, &err);
    if (st != MDL_OK) {
        printf("error: load: %s %s\n", mdl_status_str(st), err.msg);
        return 1;
    }
    size_t need = mdl_model_arena_size(m);
    printf("model %s bytes=%u kernels=%d arena=%u load=%u/%u\n", FW_STR(FW_NAME),
           (unsigned)sizeof FW(_model), FW(_OP_COUNT), (unsigned)need, (unsigned)bump.used,
           (unsigned)sizeof load_heap);
    /* the static arena is exactly what the model asks for: not a byte more */
    check("arena-exact", need == sizeof arena, MDL_OK);
    mdl_session *s;
    if ((st = mdl_session_create_in(m, arena, sizeof arena, &s, &err)) != MDL_OK) {
        printf("error: session: %s %s\n", mdl_status_str(st), err.msg);
        return 1;
    }

    /* The embedded inputs may hold several rows of the model's first dimension: run each. */
    int nin = mdl_model_input_count(m), nout = mdl_model_output_count(m);
    const uint8_t *const ins[] = {
        FW(_input0),
#if FW(_INPUT_COUNT) > 1
        FW(_input1),
#endif
#if FW(_INPUT_COUNT) > 2
        FW(_input2),
#endif
    };
    const size_t in_bytes[] = {
        sizeof FW(_input0),
#if FW(_INPUT_COUNT) > 1
        sizeof FW(_input1),
#endif
#if FW(_INPUT_COUNT) > 2
        sizeof FW(_input2),
#endif
    };
    if (nin != (int)(sizeof ins / sizeof ins[0])) {
        printf("error: the model has %d inputs, %d embedded\n", nin, (int)(sizeof ins / sizeof ins[0]));
        return 1;
    }
    int rows = 1;
    for (int i = 0; i < nin; i++) {
        mdl_tensor_info ti;
        mdl_model_input_info(m, i, &ti);
        if (ti.bytes == 0 || in_bytes[i] % ti.bytes) {
            printf("error: input %d: %u bytes embedded, the model takes %u\n", i,
                   (unsigned)in_bytes[i], (unsigned)ti.bytes);
            return 1;
        }
        if (i == 0) rows = (int)(in_bytes[i] / ti.bytes);
    }
    for (int row = 0; row < rows; row++) {
        for (int i = 0; i < nin; i++) {
            mdl_tensor_info ti;
            mdl_model_input_info(m, i, &ti);
            memcpy(mdl_session_input_data(s, i), ins[i] + (size_t)row * ti.bytes, ti.bytes);
        }
        if ((st = mdl_session_run(s)) != MDL_OK) {
            printf("error: run: %s %s\n", mdl_status_str(st), mdl_session_message(s));
            return 1;
        }
        for (int i = 0; i < nout; i++) {
            mdl_tensor_info ti;
            mdl_model_output_info(m, i, &ti);
            print_output(i, row, &ti, mdl_session_output_data(s, i));
        }
    }
    mdl_session_free(s);
    mdl_model_free(m);
    size_t peak = stack_peak();
    printf("ram arena=%u load=%u stack=%u\n", (unsigned)sizeof arena, (unsigned)bump.used,
           (unsigned)peak);
#ifndef FW_HOST
    /* the whole painted region used means the stack may have overflowed */
    check("stack-fits", peak < (size_t)(__stack - __bss_end) - 256, MDL_OK);
#endif
    printf("%s\n", failures ? "FAILED" : "PASSED");
    return failures ? 1 : 0;
}
