/* A small worker pool for one session (see threads.h).
 *
 * Jobs are published through one 64-bit ticket, generation << 32 | next task.  Workers (and the
 * caller, worker 0) claim tasks with a compare-and-swap on the ticket, which also checks that
 * the job they read is still current: a worker that wakes late finds the ticket moved on and
 * claims nothing, so the caller never waits for a sleeping worker to start — it runs the tasks
 * itself and waits only for tasks already claimed.  Before writing a new job the caller closes
 * the ticket (next = CLOSED), so a stale claim cannot succeed while the job fields change.
 *
 * Waiting: a worker with nothing to do spins on the ticket for a while, then sleeps on a
 * condition variable; the caller likewise spins for the last claimed tasks, then sleeps.  How
 * long to spin is the classic spin-then-block choice: spinning for as long as a wake-up costs
 * wastes at most that much CPU per idle stretch and never delays work by more than twice the
 * best choice in hindsight (Karlin et al., "Competitive randomized algorithms for
 * non-uniform problems", 1990).  The pool therefore measures what a wake-up costs here (time from
 * the caller's publish to the woken worker running, a moving average) and spins that long,
 * clamped to [SPIN_MIN_NS, SPIN_MAX_NS]; it starts at the most, so a new session's first runs
 * find the workers awake.  Where a futex wake-up is cheap the spin is as short; on a virtual
 * machine (an IPI to a halted vCPU: 15-30 us measured on a KVM guest, and the waker's own
 * syscall 6-9 us) it grows to match, so back-to-back runs of a small model find the workers
 * awake instead of paying a wake-up each (the batch-64 MLP at 2 threads: 45 -> 34 us, 1 thread
 * 61 us).  A fixed 5 us spin was shorter than the gap between such runs.  An idle session's
 * workers sleep after at most SPIN_MAX_NS (test_idle_workers_sleep). */
#include "threads.h"

#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define SPIN_MIN_NS 2000u
#define SPIN_MAX_NS 50000u
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
    _Atomic uint32_t spin_ns;  /* current spin, a moving average of measured wake-up costs */
    _Atomic uint64_t wake_ns;  /* when the caller last woke sleeping workers (now_ns) */
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

/* Whether ticket t announces a job after generation seen. */
static bool fresh(uint64_t t, uint32_t seen) {
    return (uint32_t)(t >> 32) != seen && (uint32_t)t != CLOSED;
}

/* Spins (pause) until ticket changes from not-fresh, stop is set, or the pool's spin time is
   up; returns the last ticket read. */
static uint64_t spin_for_job(mdl__pool *p, uint32_t seen) {
    uint64_t t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    uint64_t until = now_ns() + atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
    for (int i = 0;; i++) {
        if (fresh(t, seen) || atomic_load(&p->stop)) return t;
        if ((i & 63) == 63 && now_ns() > until) return t;
        cpu_relax();
        t = atomic_load_explicit(&p->ticket, memory_order_acquire);
    }
}

/* Folds one measured wake-up cost into the spin time (weight 1/4; concurrent updates may lose
   one, which only slows the average). */
static void learn_wake_cost(mdl__pool *p, uint64_t cost) {
    if (cost < SPIN_MIN_NS) cost = SPIN_MIN_NS;
    if (cost > SPIN_MAX_NS) cost = SPIN_MAX_NS;
    uint32_t s = atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
    atomic_store_explicit(&p->spin_ns, (uint32_t)((3 * (uint64_t)s + cost) / 4),
                          memory_order_relaxed);
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

static void *worker_main(void *arg) {
    worker *w = arg;
    mdl__pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        uint64_t t = spin_for_job(p, seen);
        if (!fresh(t, seen) && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleeping, 1); /* seq_cst: pairs with the caller's check */
            while (!fresh(t = atomic_load(&p->ticket), seen) && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->mu);
            uint64_t sent = atomic_load_explicit(&p->wake_ns, memory_order_relaxed), now = now_ns();
            if (sent && now > sent) learn_wake_cost(p, now - sent);
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
        atomic_store_explicit(&p->wake_ns, now_ns(), memory_order_relaxed);
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, gen, 0);
    /* Every task is claimed; wait for the ones other workers still run. */
    if (atomic_load_explicit(&p->done, memory_order_acquire) == ntasks) return;
    uint64_t until = now_ns() + atomic_load_explicit(&p->spin_ns, memory_order_relaxed);
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
    atomic_init(&p->spin_ns, SPIN_MAX_NS);
    atomic_init(&p->wake_ns, 0);
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
