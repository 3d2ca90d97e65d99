/* Operator registration (include/mdeploy/resolver.h) and the loader's kernel lookup.  Each
   mdl_op_resolver_add_OP_DTYPE function refers to one kernel only, so with -ffunction-sections
   and --gc-sections an image keeps just the kernels it registers.  The full table
   (registry.c) is referenced only from mdl__kernel_resolve's NULL-resolver path, which
   MDL_NO_DEFAULT_KERNELS (firmware) compiles out. */
#include "mdeploy/resolver.h"

#include "graph/model.h"
#include "graph/util.h"
#include "ops.h"

#define MDL__KERNEL_DECL(op, dtype, kernel) extern const mdl__kernel mdl__##kernel;
MDL_KERNEL_MAP(MDL__KERNEL_DECL)
#undef MDL__KERNEL_DECL

void mdl_op_resolver_init(mdl_op_resolver *r, mdl_op_resolver_entry *entries, int32_t capacity) {
    if (!r) return;
    r->entries = entries;
    r->count = 0;
    r->capacity = entries && capacity > 0 ? capacity : 0;
    r->load_planner = NULL;
}

mdl_status mdl_op_resolver_add_load_planner(mdl_op_resolver *r) {
    if (!r) return MDL_INVALID_ARGUMENT;
    r->load_planner = &mdl__load_planner;
    return MDL_OK;
}

static const mdl__kernel *lookup(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype) {
    for (int32_t i = 0; i < r->count; i++)
        if (r->entries[i].op == (int16_t)op && r->entries[i].dtype == (int16_t)dtype)
            return r->entries[i].kernel;
    return NULL;
}

static mdl_status add(mdl_op_resolver *r, mdl_op op, mdl_dtype dtype, const mdl__kernel *k) {
    if (!r) return MDL_INVALID_ARGUMENT;
    if (lookup(r, op, dtype)) return MDL_OK;
    if (r->count >= r->capacity) return MDL_BUFFER_TOO_SMALL;
    mdl_op_resolver_entry *e = &r->entries[r->count++];
    e->op = (int16_t)op;
    e->dtype = (int16_t)dtype;
    e->kernel = k;
    return MDL_OK;
}

#define MDL__RESOLVER_ADD_DEF(op, dtype, kernel)                                                   \
    mdl_status mdl_op_resolver_add_##op##_##dtype(mdl_op_resolver *r) {                            \
        return add(r, MDL_OP_##op, MDL_DTYPE_##dtype, &mdl__##kernel);                             \
    }
MDL_KERNEL_MAP(MDL__RESOLVER_ADD_DEF)
#undef MDL__RESOLVER_ADD_DEF

mdl_status mdl_op_resolver_add_all(mdl_op_resolver *r) {
    mdl_status st = MDL_OK;
#define MDL__RESOLVER_ADD_ONE(op, dtype, kernel)                                                   \
    if (st == MDL_OK) st = mdl_op_resolver_add_##op##_##dtype(r);
    MDL_KERNEL_MAP(MDL__RESOLVER_ADD_ONE)
#undef MDL__RESOLVER_ADD_ONE
    return st;
}

bool mdl_op_resolver_has(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype) {
    return r && lookup(r, op, dtype) != NULL;
}

const mdl__kernel *mdl__kernel_resolve(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype) {
    if ((unsigned)op >= MDL_OP_COUNT || (unsigned)dtype >= MDL_DTYPE_COUNT) return NULL;
    if (r) return lookup(r, op, dtype);
#ifdef MDL_NO_DEFAULT_KERNELS
    return NULL; /* firmware: only what the application registered */
#else
    return mdl__kernel_find(op, dtype);
#endif
}

#ifndef MDL_NO_ERROR_STRINGS
/* (op, dtype) pairs that have a kernel, without referring to any kernel. */
static bool kernel_exists(mdl_op op, mdl_dtype dtype) {
    static const struct { int16_t op, dtype; } all[] = {
#define MDL__KERNEL_PAIR(op, dtype, kernel) {MDL_OP_##op, MDL_DTYPE_##dtype},
        MDL_KERNEL_MAP(MDL__KERNEL_PAIR)
#undef MDL__KERNEL_PAIR
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].op == (int16_t)op && all[i].dtype == (int16_t)dtype) return true;
    return false;
}

static const char *op_token(mdl_op op) {
    static const char *const names[] = {
#define MDL__OP_TOKEN(name, text, kind) #name,
        MDL_OP_MAP(MDL__OP_TOKEN)
#undef MDL__OP_TOKEN
    };
    return (unsigned)op < MDL_OP_COUNT ? names[op] : "?";
}

static const char *dtype_token(mdl_dtype dtype) {
    static const char *const names[] = {
#define MDL__DTYPE_TOKEN(name, text, size) #name,
        MDL_DTYPE_MAP(MDL__DTYPE_TOKEN)
#undef MDL__DTYPE_TOKEN
    };
    return (unsigned)dtype < MDL_DTYPE_COUNT ? names[dtype] : "?";
}
#endif

mdl_status mdl__kernel_missing(const mdl_op_resolver *r, mdl_op op, mdl_dtype dtype,
                               const char *nm, mdl_error *err) {
#ifdef MDL_NO_ERROR_STRINGS
    (void)r;
    (void)nm;
    return mdl__error(err, MDL_UNSUPPORTED, "%s", "");
#else
    const char *o = mdl_op_name(op), *d = mdl_dtype_name(dtype);
    if (!kernel_exists(op, dtype))
        return mdl__error(err, MDL_UNSUPPORTED, "%s '%s': no kernel for %s input", o, nm, d);
    if (!r)
        return mdl__error(err, MDL_UNSUPPORTED,
                          "%s '%s': no kernel for %s input: this build has no default kernel "
                          "table (MDL_NO_DEFAULT_KERNELS); load with a resolver that registers "
                          "MDL_OP_RESOLVER_ADD(r, %s, %s)", o, nm, d, op_token(op), dtype_token(dtype));
    return mdl__error(err, MDL_UNSUPPORTED,
                      "%s '%s': no kernel for %s input in the operator resolver: register "
                      "MDL_OP_RESOLVER_ADD(r, %s, %s)", o, nm, d, op_token(op), dtype_token(dtype));
#endif
}
