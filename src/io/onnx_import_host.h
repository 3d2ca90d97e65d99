/*
 * The ONNX importer, first stage of the converter pipeline (host only; see
 * graph/convert_pipeline_host.c for the whole data flow).
 *
 * mdl__onnx_open parses a model file; mdl__onnx_import lowers it into an empty converter IR
 * (graph/convert_host.h): initializers become constants, inputs get their shapes (dynamic dims at
 * the sizes of the context's probe), the nodes are lowered in topological order with constant
 * subgraphs folded as they are met, and the graph outputs are bound.  It runs no pass and writes
 * nothing; it may be called more than once on one model (the dynamic-shape probes), each time into
 * a fresh context.  protobuf-c's types stay inside the importer (io/onnx_lower_host.h).
 */
#ifndef MDL_ONNX_IMPORT_HOST_H
#define MDL_ONNX_IMPORT_HOST_H

#include "graph/convert_host.h"

typedef struct mdl__onnx_model mdl__onnx_model;

/* What the pipeline copies into the file's metadata (strings owned by the model; NULL when
   absent). */
typedef struct mdl__onnx_info {
    const char *graph_name, *doc_string, *graph_doc_string;
    const char *producer_name, *producer_version;
    bool has_model_version;
    int64_t model_version;
    int32_t nodes; /* ONNX nodes in the main graph */
} mdl__onnx_info;

/* Reads and parses path.  Fails with MDL_IO or MDL_CORRUPT_MODEL (not a protobuf, no graph). */
mdl_status mdl__onnx_open(const char *path, mdl__onnx_model **out, mdl_error *err);
/* Parses a model held in memory (no directory: external data is refused).  MDL_CORRUPT_MODEL. */
mdl_status mdl__onnx_open_buffer(const void *data, size_t size, mdl__onnx_model **out, mdl_error *err);
void mdl__onnx_close(mdl__onnx_model *m);
void mdl__onnx_info_get(const mdl__onnx_model *m, mdl__onnx_info *info);
/* Entry i of the model's metadata_props; false past the end. */
bool mdl__onnx_metadata_at(const mdl__onnx_model *m, int32_t i, const char **key, const char **value);

/* Lowers model m into c (zeroed but for err and probe) with the input shapes of o.  Sets
   c->opset, c->model_dir (NULL for a model from memory), inputs, outputs and the dynamic symbols met. */
mdl_status mdl__onnx_import(const mdl__onnx_model *m, cv_ctx *c, const mdl_convert_options *o);

#endif
