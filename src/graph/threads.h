/* The session's worker pool (host builds only: src/graph/threads_host.c, pthreads).  The core
   reaches it only through the mdl__par function pointer (src/ops/ops.h). */
#ifndef MDL_THREADS_H
#define MDL_THREADS_H

#include "ops/ops.h"

typedef struct mdl__pool mdl__pool;

/* Starts nworkers - 1 threads (the caller of mdl__pool_run is worker 0); memory from a. */
mdl_status mdl__pool_create(const mdl_allocator *a, int nworkers, mdl__pool **out, mdl_error *err);

/* Stops and joins the threads, frees the pool.  NULL is a no-op. */
void mdl__pool_free(mdl__pool *p);

/* mdl__par.run: fn(arg, i, worker) for i in [0, ntasks), the caller taking part; returns when
   all are done.  One caller at a time; allocates nothing. */
void mdl__pool_run(void *pool, int64_t ntasks, mdl__par_fn fn, void *arg);

#endif
