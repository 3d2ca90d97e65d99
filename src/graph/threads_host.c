/* A small worker pool for one session (see threads.h).
 *
 * Jobs are published through one 64-bit ticket, generation << 32 | next task.  Workers (and the
 * caller, worker 0) claim tasks with a compare-and-swap on the ticket, which also checks that
 * the job they read is still current: a worker that wakes late finds the ticket moved on and
 * claims nothing, so the caller never waits for a sleeping worker to start — it runs the tasks
 * itself and waits only for tasks already claimed.  Before writing a new job the caller closes
 * the ticket (next = CLOSED), so a stale claim cannot succeed while the job fields change.
 *
 * Waiting: workers spin on the ticket for at most SPIN_NS (consecutive parallel nodes usually
 * follow within that), then sleep on a condition variable; the caller likewise spins briefly for
 * the last claimed tasks, then sleeps.  Nothing spins longer than a few microseconds, and
 * between runs every worker sleeps. */
#include "threads.h"

#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define SPIN_NS 5000
#define CLOSED 0xFFFFFFFFu

typedef struct worker {
    struct mdl__pool *pool;
    int id;
    pthread_t thread;
} worker;

struct mdl__pool {
    const mdl_allocator *alloc;
    int nworkers, started;
    _Atomic uint64_t ticket;
    _Atomic(mdl__par_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t ntasks;
    _Atomic int64_t done;
    _Atomic int sleeping;
    _Atomic bool stop;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    worker *workers;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Claims and runs tasks of the job whose ticket generation is gen until none are left. */
static void work(mdl__pool *p, uint32_t gen, int id) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen) return;
        uint32_t next = (uint32_t)t;
        if (next == CLOSED) return;
        mdl__par_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
        int64_t n = atomic_load_explicit(&p->ntasks, memory_order_relaxed);
        if ((int64_t)next >= n) return;
        /* success: the job was still gen, so fn/arg/n read above were its own (the caller
           changes them only after every task of gen is done, i.e. never while one is open) */
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &t, t + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(arg, next, id);
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == n) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
        t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    }
}

/* Whether ticket t announces a job after generation seen. */
static bool fresh(uint64_t t, uint32_t seen) {
    return (uint32_t)(t >> 32) != seen && (uint32_t)t != CLOSED;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    mdl__pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if (!fresh(t, seen) && !atomic_load(&p->stop)) {
            uint64_t until = now_ns() + SPIN_NS;
            for (int i = 0;; i++) {
                cpu_relax();
                t = atomic_load_explicit(&p->ticket, memory_order_acquire);
                if (fresh(t, seen) || atomic_load(&p->stop)) break;
                if ((i & 63) == 63 && now_ns() > until) break;
            }
        }
        if (!fresh(t, seen) && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1); /* seq_cst: pairs with the caller's check */
            while (!fresh(t = atomic_load(&p->ticket), seen) && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = (uint32_t)(t >> 32);
        work(p, seen, w->id);
    }
}

void mdl__pool_run(void *pool, int64_t ntasks, mdl__par_fn fn, void *arg) {
    mdl__pool *p = pool;
    if (ntasks <= 0) return;
    if (ntasks >= (int64_t)CLOSED) { /* not a real case: kernels make a few dozen tasks */
        for (int64_t i = 0; i < ntasks; i++) fn(arg, i, 0);
        return;
    }
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_relaxed);
    uint32_t gen = (uint32_t)(t >> 32) + 1;
    if (gen == 0) gen = 1; /* 0 is the workers' initial "seen" */
    atomic_store(&p->ticket, (uint64_t)gen << 32 | CLOSED);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->ntasks, ntasks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store(&p->ticket, (uint64_t)gen << 32); /* seq_cst: publish, then look for sleepers */
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, gen, 0);
    /* Every task is claimed; wait for the ones other workers still run. */
    if (atomic_load_explicit(&p->done, memory_order_acquire) == ntasks) return;
    uint64_t until = now_ns() + SPIN_NS;
    for (int i = 0; atomic_load_explicit(&p->done, memory_order_acquire) != ntasks; i++) {
        cpu_relax();
        if ((i & 63) == 63 && now_ns() > until) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load_explicit(&p->done, memory_order_acquire) != ntasks)
                pthread_cond_wait(&p->done_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }
}

mdl_status mdl__pool_create(const mdl_allocator *a, int nworkers, mdl__pool **out,
                            mdl_error *err) {
    *out = NULL;
    size_t bytes = sizeof(mdl__pool) + (size_t)nworkers * sizeof(worker);
    mdl__pool *p = mdl__alloc(a, bytes);
    if (!p) return mdl__error(err, MDL_OUT_OF_MEMORY, "out of memory creating a thread pool");
    memset(p, 0, bytes);
    p->alloc = a;
    p->nworkers = nworkers;
    p->workers = (worker *)(p + 1);
    atomic_init(&p->ticket, 0);
    atomic_init(&p->fn, NULL);
    atomic_init(&p->arg, NULL);
    atomic_init(&p->ntasks, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleeping, 0);
    atomic_init(&p->stop, false);
    if (pthread_mutex_init(&p->mu, NULL)) goto fail_mutex;
    if (pthread_cond_init(&p->work_cv, NULL)) goto fail_work_cv;
    if (pthread_cond_init(&p->done_cv, NULL)) goto fail_done_cv;
    for (int i = 1; i < nworkers; i++) {
        p->workers[i].pool = p;
        p->workers[i].id = i;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i])) {
            mdl__pool_free(p);
            return mdl__error(err, MDL_OUT_OF_MEMORY, "cannot start thread %d of %d", i, nworkers);
        }
        p->started = i;
    }
    *out = p;
    return MDL_OK;
fail_done_cv:
    pthread_cond_destroy(&p->work_cv);
fail_work_cv:
    pthread_mutex_destroy(&p->mu);
fail_mutex:
    mdl__free(a, p);
    return mdl__error(err, MDL_OUT_OF_MEMORY, "cannot create a thread pool's mutex");
}

void mdl__pool_free(mdl__pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i <= p->started; i++) pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    mdl__free(p->alloc, p);
}
