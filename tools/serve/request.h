/*
 * mdeploy-serve's request bodies: parsing a predict request against a model's input signature,
 * and writing a session's outputs as the response.  Pure functions, no HTTP (tools/serve/serve.c
 * is the server); public mdeploy API only.  Every byte of a body is untrusted.
 *
 * Bodies (TensorFlow Serving's REST conventions):
 *   JSON, row format     {"instances": [I0, I1, ...]}: each instance is one row of the batch, the
 *                        input without its first (batch) dim; a model with several inputs takes
 *                        objects {"NAME": value, ...} as instances (a single-input model takes
 *                        either).  The inputs are the instances stacked along a new first dim.
 *                        Answer: {"predictions": [P0, P1, ...]}, one per row: the output's row,
 *                        or {"NAME": row, ...} when the model has several outputs.
 *   JSON, columnar       {"inputs": value} (single input) or {"inputs": {"NAME": value, ...}}:
 *                        each value is the whole tensor, batch dim included.
 *                        Answer: {"outputs": value} or {"outputs": {"NAME": value, ...}}.
 *   .npy                 Content-Type application/x-npy: the model's inputs as .npy arrays
 *                        written one after the other, in input order (np.save to one file
 *                        appends them; one array for a single-input model), dtypes exactly the
 *                        model's.  Answer: the outputs the same way, in output order.
 * A JSON body may also carry "signature_name" (only "serving_default" or "" is accepted).
 * Values in JSON are nested arrays of numbers (true/false also for bool inputs); a non-rectangular
 * array, a fraction or an out-of-range value for an integer input, or a number that overflows
 * float32 is refused.  Floats are written with 9 significant digits (float32 round-trips); a NaN
 * or infinite output is written as NaN, Infinity or -Infinity, as TensorFlow Serving does
 * (Python's json module reads them).
 *
 * Shapes: a fixed dim of the model must match exactly; a dynamic dim (e.g. the batch) takes the
 * request's size, up to its bound; the session is resized as needed (req_apply).
 *
 * Errors: the functions return 0 or an HTTP status (400 a malformed body or one that does not fit
 * the signature, 415 an unsupported content type, 500 the server's fault) with a message in err
 * that names the problem: the input, the dim, the expected and received sizes or dtypes, the
 * place of a JSON syntax error.
 */
#ifndef MDL_SERVE_REQUEST_H
#define MDL_SERVE_REQUEST_H

#include "mdeploy/mdeploy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum req_format { REQ_JSON_ROWS, REQ_JSON_COLUMNS, REQ_NPY } req_format;

/* One input of a request, converted to the model's dtype, C order. */
typedef struct req_tensor {
    int32_t rank;
    int64_t dims[MDL_MAX_RANK];
    size_t bytes;
    void *data; /* malloc'd (non-NULL, even when bytes == 0) */
} req_tensor;

/* A parsed request: one tensor per model input, in the model's input order. */
typedef struct req_inputs {
    req_format format;
    int count;
    req_tensor *tensors;
} req_inputs;

/* Recognizes the body's format from its Content-Type (NULL or "" = JSON; parameters such as
   "; charset=utf-8" are ignored).  0, or 415 with a message. */
int req_content_format(const char *content_type, bool *npy, char *err, size_t cap);

/* Parses body (len bytes, not necessarily terminated) against m's inputs into *out (zeroed on
   failure; release with req_inputs_free).  npy: the body is .npy arrays, else JSON.
   0 or an HTTP status (400) with a message. */
int req_parse(const mdl_model *m, bool npy, const void *body, size_t len, req_inputs *out, char *err,
              size_t cap);

void req_inputs_free(req_inputs *in);

/* Sizes the session for the request's shapes (mdl_session_resize when they differ from its
   current ones) and copies the inputs in.  0, or 400 (shapes the model refuses: the library's
   message), or 500. */
int req_apply(mdl_session *s, const req_inputs *in, char *err, size_t cap);

/* A response body (malloc'd). */
typedef struct req_body {
    char *data;
    size_t len;
    const char *content_type; /* static string */
} req_body;

/* Writes the session's outputs after a run: JSON in the layout of format (REQ_NPY answers
   REQ_JSON_COLUMNS layout when json is forced), or .npy arrays.  npy_out chooses .npy.
   0, or 500 (out of memory, a dtype that has no .npy code) with a message. */
int req_write_outputs(const mdl_session *s, req_format format, bool npy_out, req_body *out, char *err,
                      size_t cap);

/* {"error": "msg"} (JSON-escaped); NULL when out of memory.  The caller frees it. */
char *req_error_json(const char *msg, size_t *len);

#endif
