/* Small models built with the builder API for tests (and the fuzz seed corpus). */
#ifndef MDL_TEST_MODELS_H
#define MDL_TEST_MODELS_H

#include "mdeploy/graph.h"

/* A residual MLP over x [batch, in]:
     h1 = relu(fc1(x));  h2 = fc2(h1);  h3 = relu(h2);  h4 = h3 + h1;  y = fc3(h4)
   with hidden = 2*in and weights drawn from seed.  The weights are returned in w (caller frees
   with free()) laid out as W1 [hid,in] b1 [hid] W2 [hid,hid] b2 [hid] W3 [out,hid] b3 [out]. */
typedef struct tm_mlp {
    int64_t batch, in, hid, out;
    float *w1, *b1, *w2, *b2, *w3, *b3;
} tm_mlp;

/* Builds the model; *data from malloc (free()).  Returns MDL_OK or the builder's error. */
mdl_status tm_build_mlp(tm_mlp *p, uint64_t seed, void **data, size_t *size);
void tm_mlp_free(tm_mlp *p);

/* Independent reference forward pass (double accumulation). */
void tm_mlp_reference(const tm_mlp *p, const float *x, float *y);

/* A chain of n cheap nodes over x [1, 8] float (load-time and planner tests, bench/loadtime.c):
   node i is Neg (i % 3 == 0), Relu (1) or a Reshape between [1, 8] and [8, 1] (2), the last
   node's output is the graph output.  plan: TM_PLAN_NONE (the loader plans), TM_PLAN_STORED (the
   file stores the library planner's plan) or TM_PLAN_OVERLAPPING (a stored plan with every
   buffer at offset 0, which the plan check must reject).  Written with the internal writer, without the
   builder's load-back, so that a generator never depends on load speed.  *data from malloc. */
enum { TM_PLAN_NONE, TM_PLAN_STORED, TM_PLAN_OVERLAPPING };
mdl_status tm_build_chain(int n, int plan, void **data, size_t *size);
/* Reference of tm_build_chain's output for input x[8]. */
void tm_chain_reference(int n, const float *x, float *y);

/* Writes the content digest of a sealed model again after a test changed its bytes: a hostile
   file passes the digest (anyone can compute it), so the checks behind it must still refuse it. */
void tm_reseal(void *data, size_t size);

/* y = x + c over x [1, width] float, named "addc" with the given version (self-test and hot-swap
   tests).  With ncases > 0 the file carries that many self-test cases (tolerance atol 1e-4,
   rtol 1e-3, oracle "test"): inputs x_k[i] = k - i / 4 and expected outputs computed here in
   plain C as x_k[i] + c + skew (skew 0: right; otherwise deliberately wrong). */
mdl_status tm_build_addc(float c, int width, const char *version, int ncases, float skew, void **data,
                         size_t *size);
/* tm_build_addc's input of case k, element i. */
float tm_addc_input(int k, int i);

#endif
