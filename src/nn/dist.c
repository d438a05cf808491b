/* dist.c — data-parallel training over MPI: start and stop, broadcast, and the fused
 * gradient combine that tg_dist_allreduce_grads and tg_model_fit's distributed mode use.
 *
 * Every collective starts with an agreement step: one MPI_Allreduce (MIN) of seven
 * int64 values carrying a signature of the call (operation, tensor count, dtypes and
 * sizes, weights as well as its negation so that the minimum also gives the maximum)
 * and the lowest rank whose local checks failed. Every rank gets the same answer, so a
 * mismatched call or a local failure makes every rank return -1 together, and no rank
 * enters a data collective whose sizes differ from its peers' (where MPI would hang or
 * abort).
 *
 * The combine packs every gradient (scaled by this rank's weight) into one buffer per
 * dtype, padded to a multiple of the world size, and runs MPI_Reduce_scatter_block
 * followed by MPI_Allgather on it: each block is summed once, by one rank, and the
 * gathered bytes are the same on every rank. That is what keeps the parameters of all
 * ranks bitwise identical without relying on the MPI library's allreduce returning the
 * same rounding everywhere (the standard does not promise it). */
#include <limits.h>
#include <mpi.h>
#include <string.h>

#include "nn_internal.h"

static struct {
    bool active;      /* between tg_dist_init and tg_dist_finalize */
    bool started_mpi; /* tg_dist_init called MPI_Init_thread, so finalize ends MPI */
    MPI_Comm comm;    /* the library's duplicate of MPI_COMM_WORLD */
    int rank, size;
    void *buf;  /* the fused buffer of the combine (tg__alloc), kept between steps */
    size_t cap; /* its size in bytes */
} dist;

/* Operation codes mixed into the signature, so that a broadcast on one rank never
 * agrees with a combine on another. */
enum { SIG_BROADCAST = 1, SIG_REDUCE = 2 };

/* ---------------- start, stop, rank ---------------- */

int tg_dist_init(int *argc, char ***argv) {
    if (dist.active) return 0;
    int initialized = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized)
        return tg__fail_int("tg_dist_init: MPI has already been finalised and cannot restart");
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return tg__fail_int("tg_dist_init: MPI_Init_thread failed");
        dist.started_mpi = true;
    }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &dist.comm) != MPI_SUCCESS)
        return tg__fail_int("tg_dist_init: MPI_Comm_dup of MPI_COMM_WORLD failed");
    MPI_Comm_rank(dist.comm, &dist.rank);
    MPI_Comm_size(dist.comm, &dist.size);
    dist.active = true;
    return 0;
}

void tg_dist_finalize(void) {
    if (!dist.active) return;
    MPI_Comm_free(&dist.comm);
    tg__release(dist.buf);
    dist.buf = NULL;
    dist.cap = 0;
    dist.active = false;
    if (dist.started_mpi) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
        dist.started_mpi = false;
    }
}

static bool check_active(const char *op) {
    if (dist.active) return true;
    tg__fail("%s: MPI is not initialised (call tg_dist_init first)", op);
    return false;
}

int tg_dist_rank(void) { return check_active("tg_dist_rank") ? dist.rank : -1; }

int tg_dist_size(void) { return check_active("tg_dist_size") ? dist.size : -1; }

/* ---------------- the agreement step ---------------- */

static uint64_t sig_mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xbf58476d1ce4e5b9ULL;
}

/* What one rank says about a collective call: a signature of its arguments, the
 * tensor count and element total (for the message), and whether its own checks failed. */
typedef struct {
    uint64_t sig;
    int64_t count, elems;
    bool failed;
} call_summary;

/* The agreement step (see the top of the file). Returns 0 when every rank passed its
 * checks and the summaries agree, else -1 on every rank with tg_error() set: a rank
 * that failed keeps its own message, the others name the first failed rank or the
 * disagreement. */
static int agree_on(const char *op, const char *what, const call_summary *me) {
    enum { SIG, NSIG, COUNT, NCOUNT, ELEMS, NELEMS, FAILED, N };
    int64_t sig = (int64_t)(me->sig >> 2); /* non-negative, so its negation fits */
    int64_t v[N] = {sig,
                    -sig,
                    me->count,
                    -me->count,
                    me->elems,
                    -me->elems,
                    me->failed ? dist.rank : INT64_MAX};
    if (dist.size > 1) MPI_Allreduce(MPI_IN_PLACE, v, N, MPI_INT64_T, MPI_MIN, dist.comm);
    if (v[FAILED] != INT64_MAX) {
        if (!me->failed)
            tg__fail("%s: rank %lld failed its checks, so every rank stops (its own message "
                     "says why)",
                     op, (long long)v[FAILED]);
        return -1;
    }
    if (v[SIG] == -v[NSIG]) return 0;
    if (what) {
        tg__fail("%s: ranks disagree on %s: every rank must make the same call", op, what);
        return -1;
    }
    tg__fail("%s: ranks disagree on the tensors (%lld to %lld tensors, %lld to %lld elements; "
             "rank %d has %lld tensors, %lld elements): every rank must pass the same list",
             op, (long long)v[COUNT], (long long)-v[NCOUNT], (long long)v[ELEMS],
             (long long)-v[NELEMS], dist.rank, (long long)me->count, (long long)me->elems);
    return -1;
}

static int agree(const char *op, const call_summary *me) { return agree_on(op, NULL, me); }

int tg__dist_agree(const char *op, const char *what, const int64_t *values, int n, bool failed) {
    if (!check_active(op)) return -1;
    call_summary me = {0x5a4d, n, 0, failed};
    for (int i = 0; i < n; i++)
        me.sig = sig_mix(me.sig, (uint64_t)values[i]);
    return agree_on(op, what, &me);
}

bool tg__dist_any(bool flag) {
    int v = flag;
    if (dist.active && dist.size > 1)
        MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LOR, dist.comm);
    return v != 0;
}

/* ---------------- broadcast ---------------- */

static bool check_tensor(const char *op, const char *what, int i, const tg_tensor *t,
                         bool float_only) {
    if (!t) return tg__fail("%s: %s %d is NULL", op, what, i), false;
    if (!t->tg__persistent)
        return tg__fail("%s: %s %d %s is a tape tensor; only persistent tensors can be sent", op,
                        what, i, tg__shp(t)),
               false;
    if (float_only && t->dtype != TG_F32 && t->dtype != TG_F64)
        return tg__fail("%s: %s %d must be f32 or f64, got %s %s", op, what, i,
                        tg_dtype_name(t->dtype), tg__shp(t)),
               false;
    return true;
}

/* MPI counts are int: a large tensor goes in pieces of at most 1 GiB. */
static void bcast_bytes(void *data, size_t bytes, int root) {
    const size_t piece = (size_t)1 << 30;
    for (size_t at = 0; at < bytes; at += piece) {
        size_t len = bytes - at < piece ? bytes - at : piece;
        MPI_Bcast((char *)data + at, (int)len, MPI_BYTE, root, dist.comm);
    }
}

int tg__dist_broadcast(const char *op, tg_tensor *const *ts, int n, int root) {
    if (!check_active(op)) return -1;
    call_summary me = {sig_mix(SIG_BROADCAST, (uint64_t)root), n, 0, false};
    if (n < 0 || (n > 0 && !ts)) {
        tg__fail("%s: needs n >= 0 and a tensor array when n > 0, got n %d", op, n);
        me.failed = true;
    } else if (root < 0 || root >= dist.size) {
        tg__fail("%s: root %d is not a rank (size %d)", op, root, dist.size);
        me.failed = true;
    }
    for (int i = 0; i < n && !me.failed; i++) {
        if (!check_tensor(op, "tensor", i, ts[i], false)) {
            me.failed = true;
            break;
        }
        me.sig = sig_mix(sig_mix(me.sig, (uint64_t)ts[i]->dtype), (uint64_t)ts[i]->numel);
        me.elems += ts[i]->numel;
    }
    if (agree(op, &me) != 0) return -1;
    if (dist.size == 1) return 0;
    for (int i = 0; i < n; i++)
        bcast_bytes(ts[i]->data, (size_t)ts[i]->numel * tg_dtype_size(ts[i]->dtype), root);
    return 0;
}

int tg_dist_broadcast(tg_tensor *const *ts, int n, int root) {
    return tg__dist_broadcast("tg_dist_broadcast", ts, n, root);
}

/* ---------------- the combine ---------------- */

/* Element counts of the two parts of the fused buffer (F64 first, then F32), each
 * padded to a multiple of the world size so that it splits into equal blocks. */
typedef struct {
    int64_t n64, n32; /* elements before padding */
    int64_t p64, p32; /* after padding */
    double *b64;      /* the parts inside dist.buf */
    float *b32;
} fused_layout;

static int64_t pad_to(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* The tensor whose values param i contributes: its gradient (NULL: zeros), or nothing
 * for a frozen parameter. Buffers contribute their data. */
static bool takes_part(const tg_tensor *p) { return p->requires_grad; }

static void add_size(fused_layout *L, const tg_tensor *t) {
    if (t->dtype == TG_F64)
        L->n64 += t->numel;
    else
        L->n32 += t->numel;
}

static void scale_f64(double *dst, const double *src, int64_t n, double w) {
    for (int64_t k = 0; k < n; k++)
        dst[k] = w * src[k];
}

static void scale_f32(float *dst, const float *src, int64_t n, float w) {
    for (int64_t k = 0; k < n; k++)
        dst[k] = w * src[k];
}

/* Copies weight * src (or zeros when src is NULL) into the buffer part of dtype dt at the
 * running offset of that part (*o64 or *o32), or back from the buffer into dst when
 * unpack is set; advances the offset by numel. */
static void move_values(fused_layout *L, tg_dtype dt, int64_t numel, const void *src, void *dst,
                        double weight, bool unpack, int64_t *o64, int64_t *o32) {
    if (numel == 0) return; /* src, dst and the buffer may all be NULL then */
    int64_t *at = dt == TG_F64 ? o64 : o32;
    void *b = dt == TG_F64 ? (void *)(L->b64 + *at) : (void *)(L->b32 + *at);
    size_t bytes = (size_t)numel * tg_dtype_size(dt);
    if (unpack)
        memcpy(dst, b, bytes);
    else if (!src)
        memset(b, 0, bytes);
    else if (dt == TG_F64)
        scale_f64(b, src, numel, weight);
    else
        scale_f32(b, src, numel, (float)weight);
    *at += numel;
}

/* Sums the n elements at buf (n a multiple of the size) over all ranks: reduce-scatter
 * (rank r sums block r), then allgather of the blocks (see the top of the file). */
static void sum_blocks(void *buf, int64_t n, MPI_Datatype type, size_t esize) {
    if (n == 0 || dist.size == 1) return;
    int block = (int)(n / dist.size);
    MPI_Reduce_scatter_block(MPI_IN_PLACE, buf, block, type, MPI_SUM, dist.comm);
    memmove((char *)buf + (size_t)dist.rank * (size_t)block * esize, buf, (size_t)block * esize);
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, block, type, dist.comm);
}

/* Local checks of a combine; fills the summary and the layout. 0 or -1 (tg_error set). */
static int check_reduce(const char *op, const tg__dist_reduce_args *a, call_summary *me,
                        fused_layout *L) {
    if (a->nparams < 0 || (a->nparams > 0 && !a->params) || a->nbufs < 0 ||
        (a->nbufs > 0 && !a->bufs) || a->nsums < 0 || (a->nsums > 0 && !a->sums))
        return tg__fail_int("%s: needs n >= 0 and an array when n > 0, got %d parameters", op,
                            a->nparams);
    for (int i = 0; i < a->nparams; i++) {
        const tg_tensor *p = a->params[i];
        if (!check_tensor(op, "parameter", i, p, true)) return -1;
        const tg_tensor *g = p->grad;
        if (takes_part(p) && g &&
            (!g->tg__persistent || g->dtype != p->dtype || g->numel != p->numel))
            return tg__fail_int("%s: the gradient of parameter %d %s %s is %s %s %s", op, i,
                                tg_dtype_name(p->dtype), tg__shp(p),
                                g->tg__persistent ? "a persistent" : "a tape tensor",
                                tg_dtype_name(g->dtype), tg__shp(g));
        me->sig = sig_mix(sig_mix(sig_mix(me->sig, (uint64_t)p->dtype), (uint64_t)p->numel),
                          takes_part(p));
        if (takes_part(p)) {
            add_size(L, p);
            me->elems += p->numel;
        }
    }
    for (int i = 0; i < a->nbufs; i++) {
        if (!check_tensor(op, "buffer", i, a->bufs[i], true)) return -1;
        me->sig =
            sig_mix(sig_mix(me->sig, (uint64_t)a->bufs[i]->dtype), (uint64_t)a->bufs[i]->numel);
        add_size(L, a->bufs[i]);
        me->elems += a->bufs[i]->numel;
    }
    me->sig = sig_mix(sig_mix(me->sig, (uint64_t)a->nbufs), (uint64_t)a->nsums);
    L->n64 += a->nsums;
    L->p64 = pad_to(L->n64, dist.size);
    L->p32 = pad_to(L->n32, dist.size);
    if (L->p64 / dist.size > INT_MAX || L->p32 / dist.size > INT_MAX)
        return tg__fail_int("%s: %lld elements are too many for one MPI message per rank", op,
                            (long long)(L->n64 + L->n32));
    size_t bytes = (size_t)L->p64 * sizeof(double) + (size_t)L->p32 * sizeof(float);
    if (bytes > dist.cap) {
        void *bigger = tg__alloc(bytes);
        if (!bigger) return -1;
        tg__release(dist.buf);
        dist.buf = bigger;
        dist.cap = bytes;
    }
    L->b64 = dist.buf;
    L->b32 = dist.buf ? (float *)(L->b64 + L->p64) : NULL;
    return 0;
}

/* New zero gradients for the parameters that take part and have none, so that the
 * combine has somewhere to write; fresh[i] records which ones, so a failed agreement
 * can take them back. Returns 0 or -1 (tg_error set, nothing created). */
static int make_missing_grads(const tg__dist_reduce_args *a, bool **fresh_out) {
    *fresh_out = NULL;
    int missing = 0;
    for (int i = 0; i < a->nparams; i++)
        missing += takes_part(a->params[i]) && !a->params[i]->grad;
    if (!missing) return 0;
    bool *fresh = tg__alloc(sizeof *fresh * (size_t)a->nparams);
    if (!fresh) return -1;
    for (int i = 0; i < a->nparams; i++) {
        tg_tensor *p = a->params[i];
        fresh[i] = takes_part(p) && !p->grad;
        if (fresh[i] && !(p->grad = tg_tensor_new(p->dtype, p->ndim, p->shape))) {
            for (int j = 0; j < i; j++)
                if (fresh[j]) {
                    tg_tensor_free(a->params[j]->grad);
                    a->params[j]->grad = NULL;
                }
            tg__release(fresh);
            return -1;
        }
    }
    *fresh_out = fresh;
    return 0;
}

static void drop_fresh_grads(const tg__dist_reduce_args *a, bool *fresh) {
    for (int i = 0; fresh && i < a->nparams; i++)
        if (fresh[i]) {
            tg_tensor_free(a->params[i]->grad);
            a->params[i]->grad = NULL;
        }
}

/* Packs (unpack false) or unpacks every value of the combine, in one fixed order:
 * parameters' gradients, buffers, then the sums. */
static void move_all(fused_layout *L, const tg__dist_reduce_args *a, bool unpack) {
    int64_t o64 = 0, o32 = 0;
    for (int i = 0; i < a->nparams; i++) {
        tg_tensor *p = a->params[i];
        if (!takes_part(p)) continue;
        move_values(L, p->dtype, p->numel, p->grad->data, p->grad->data, a->weight, unpack, &o64,
                    &o32);
    }
    for (int i = 0; i < a->nbufs; i++) {
        tg_tensor *t = a->bufs[i];
        move_values(L, t->dtype, t->numel, t->data, t->data, a->weight, unpack, &o64, &o32);
    }
    move_values(L, TG_F64, a->nsums, a->sums, a->sums, 1.0, unpack, &o64, &o32);
    if (unpack) return;
    for (int64_t k = L->n64; k < L->p64; k++) /* the padding */
        L->b64[k] = 0.0;
    for (int64_t k = L->n32; k < L->p32; k++)
        L->b32[k] = 0.0f;
}

int tg__dist_reduce(const char *op, const tg__dist_reduce_args *a) {
    if (!check_active(op)) return -1;
    call_summary me = {SIG_REDUCE, a->nparams, 0, a->failed};
    fused_layout L = {0};
    bool *fresh = NULL;
    if (!me.failed)
        me.failed = check_reduce(op, a, &me, &L) != 0 || make_missing_grads(a, &fresh) != 0;
    if (agree(op, &me) != 0) {
        drop_fresh_grads(a, fresh);
        tg__release(fresh);
        return -1;
    }
    tg__release(fresh);
    move_all(&L, a, false);
    sum_blocks(L.b64, L.p64, MPI_DOUBLE, sizeof(double));
    sum_blocks(L.b32, L.p32, MPI_FLOAT, sizeof(float));
    move_all(&L, a, true);
    return 0;
}

int tg_dist_allreduce_grads(tg_tensor *const *params, int n) {
    static const char op[] = "tg_dist_allreduce_grads";
    if (!check_active(op)) return -1;
    tg__dist_reduce_args a = {.params = params, .nparams = n, .weight = 1.0 / dist.size};
    return tg__dist_reduce(op, &a);
}
