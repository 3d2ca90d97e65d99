/* Helpers the command-line tools share (header only: each tool is one .c file linked against
   libmdeploy.a).  Only the public API is used here. */
#ifndef MDL_TOOL_UTIL_H
#define MDL_TOOL_UTIL_H

#include "mdeploy/mdeploy.h"

#include <cjson/cJSON.h>
#include <stdio.h>

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
