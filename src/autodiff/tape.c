/* tape.c — the per-thread arena and Wengert tape: allocation, recording, reset,
 * mark/rewind, grad mode, printing. The backward sweep is in backward.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The arena is a list of blocks used in order; each new block doubles the last, up to
 * MAX_GROWTH (see add_block).
 * A position is base(block) + offset, where base is the total capacity of the blocks
 * before it, so positions grow monotonically across blocks and a mark is one number. */
typedef struct {
    char *mem;  /* 64-byte aligned start */
    char *raw;  /* what the allocator returned */
    size_t cap; /* usable bytes */
    size_t base;
} arena_block;

/* ALIGN: tensor data and most allocations; SMALL_ALIGN: nodes and the tensors of scalar
 * code (data of at most SMALL_DATA bytes), which would otherwise be mostly padding. */
enum { FIRST_BLOCK = 64 * 1024, ALIGN = 64, SMALL_ALIGN = 16, SMALL_DATA = 8 };
#define MAX_GROWTH ((size_t)64 << 20) /* blocks stop doubling at 64 MiB */

typedef struct {
    arena_block *blocks;
    int nblocks, cap_blocks;
    int cur;        /* block being filled */
    size_t off;     /* offset in blocks[cur] */
    tg__node *last; /* newest node */
    size_t nnodes;
    int32_t next_id;
    bool grad_off;     /* grad mode is on by default, so store its negation */
    bool anomaly;      /* forward checks on: anomaly_user and no sweep running; read by
                          every tg__record, next to grad_off */
    bool anomaly_user; /* tg_set_anomaly_mode */
    int sweep_depth;   /* sweeps running (a checkpoint's replay sweeps inside a sweep) */
    bool tape_hooks;   /* a tape tensor got a hook since the last reset */
    size_t peak;       /* highest arena position since the last reset, as of the last rewind (the
                          position only falls at rewinds, so the arena allocator never updates it) */
    /* checked mode only (see tg_set_checked_mode) */
    struct spare_arena {
        arena_block *blocks;
        int nblocks, cap_blocks;
    } spare; /* the other arena: a reset swaps the two */
    struct hole {
        size_t from, to;
    } * holes; /* MAX_HOLES ranges released by rewinds, poisoned and unused, ascending */
    int nholes;
    size_t hole_bytes; /* their total size */
    tg_tensor **kept;  /* persistent tensors freed while on the tape */
    size_t nkept, cap_kept;
} tape_state;

static _Thread_local tape_state tape TG__TLS_FAST;

static size_t position(void) { return tape.nblocks ? tape.blocks[tape.cur].base + tape.off : 0; }

/* The arena's slow path, kept out of line: inlined into the allocators it would cost
 * the scalar ops' fast path registers it does not need (47 instructions a scalar cycle
 * by callgrind when GCC inlined it). */
static __attribute__((noinline)) bool add_block(size_t min_size) {
    if (tape.nblocks == tape.cap_blocks) {
        int ncap = tape.cap_blocks ? tape.cap_blocks * 2 : 16;
        arena_block *nb = tg__alloc((size_t)ncap * sizeof *nb);
        if (!nb) return false;
        if (tape.nblocks) memcpy(nb, tape.blocks, (size_t)tape.nblocks * sizeof *nb);
        tg__release(tape.blocks);
        tape.blocks = nb;
        tape.cap_blocks = ncap;
    }
    /* Doubling, up to MAX_GROWTH; a request larger than that gets a block of its own
     * size (in whole FIRST_BLOCKs). When the allocator refuses the block, the smallest
     * one that fits is tried before giving up: a tensor of a few MiB does not fail for
     * want of a doubled block of hundreds. */
    /* min_size is at most SIZE_MAX / 2 (tg__arena_alloc refuses more; tensors are
     * smaller, TG__MAX_NUMEL), so the rounding below does not wrap. */
    size_t cap = tape.nblocks ? tape.blocks[tape.nblocks - 1].cap * 2 : FIRST_BLOCK;
    if (cap > MAX_GROWTH) cap = MAX_GROWTH;
    size_t fit = (min_size + FIRST_BLOCK - 1) / FIRST_BLOCK * FIRST_BLOCK;
    if (cap < fit) cap = fit;
    char *raw = cap > fit ? tg__try_alloc(cap + ALIGN) : NULL;
    if (!raw) raw = tg__alloc((cap = fit) + ALIGN);
    if (!raw) return false;
    arena_block *b = &tape.blocks[tape.nblocks];
    b->raw = raw;
    b->mem = (char *)(((uintptr_t)raw + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    b->cap = cap;
    b->base =
        tape.nblocks ? tape.blocks[tape.nblocks - 1].base + tape.blocks[tape.nblocks - 1].cap : 0;
    tape.nblocks++;
    return true;
}

/* Bump allocation of size bytes aligned to align (a power of two, 16 to ALIGN). Sizes are
 * kept multiples of SMALL_ALIGN, so the offset always is one. */
static inline void *arena_alloc(size_t size, size_t align) {
    size = (size + SMALL_ALIGN - 1) & ~(size_t)(SMALL_ALIGN - 1);
    if (size == 0) size = SMALL_ALIGN;
    for (;;) {
        if (tape.nblocks) {
            size_t off = (tape.off + align - 1) & ~(align - 1);
            if (off + size <= tape.blocks[tape.cur].cap) {
                void *p = tape.blocks[tape.cur].mem + off;
                tape.off = off + size;
                return p;
            }
        }
        /* The rest of this block is skipped; positions stay monotonic. */
        if (tape.nblocks && tape.cur + 1 < tape.nblocks) {
            tape.cur++;
            tape.off = 0;
            continue;
        }
        if (!add_block(size)) return NULL;
        if (tape.nblocks > 1) {
            tape.cur = tape.nblocks - 1;
            tape.off = 0;
        }
    }
}

/* The entry for sizes that callers compute (a user op's ctx_size among them): a size no
 * allocator gives is refused before arena_alloc's rounding could wrap it. */
void *tg__arena_alloc(size_t size) {
    return size > SIZE_MAX / 2 ? tg__out_of_memory(size) : arena_alloc(size, ALIGN);
}

void *tg__arena_alloc_small(size_t size) { return arena_alloc(size, SMALL_ALIGN); }

/* A tensor header rounded up to SMALL_ALIGN: a small tape tensor's data follows it. */
#define HDR_SMALL ((sizeof(tg_tensor) + SMALL_ALIGN - 1) & ~(size_t)(SMALL_ALIGN - 1))
#define HDR_BYTES ((sizeof(tg_tensor) + ALIGN - 1) & ~(size_t)(ALIGN - 1))

/* Fills in a new tape tensor's header: a 0-d tensor (unused shape entries are 1)
 * without gradient, node or name. Field by field: a struct copy or memset of the whole
 * header becomes `rep stos`, slow to start, and scalar code makes a header per op. */
static inline void init_header(tg_tensor *t, tg_dtype dt, void *data) {
    static const int64_t ones[TG_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1};
    t->dtype = dt;
    t->ndim = 0;
    memcpy(t->shape, ones, sizeof ones);
    t->numel = 1;
    t->data = data;
    t->grad = NULL;
    t->requires_grad = false;
    t->tg__persistent = false;
    t->tg__view = false;
    t->tg__state = 0;
    t->tg__id = tape.next_id++;
    t->tg__magic = TG__MAGIC_LIVE;
    t->tg__node = NULL;
    t->tg__acc = NULL;
    t->tg__name = NULL;
    t->tg__hooks = NULL;
}

/* shape is valid (tg__shape_numel) and has numel elements. Data of at most SMALL_DATA
 * bytes (one element: scalar code) sits right after a SMALL_ALIGN-aligned
 * header; larger data is ALIGN-aligned. */
static tg_tensor *tape_header(tg_dtype dt, int ndim, const int64_t *shape, int64_t numel,
                              size_t data_bytes) {
    bool small = data_bytes <= SMALL_DATA;
    size_t hdr = small ? HDR_SMALL : HDR_BYTES;
    char *mem =
        small ? arena_alloc(hdr + data_bytes, SMALL_ALIGN) : arena_alloc(hdr + data_bytes, ALIGN);
    if (!mem) return NULL;
    tg_tensor *t = (tg_tensor *)mem;
    init_header(t, dt, mem + hdr);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
    return t;
}

tg_tensor *tg__tape_scalar(tg_dtype dt) {
    char *mem = arena_alloc(HDR_SMALL + SMALL_DATA, SMALL_ALIGN);
    if (!mem) {
        tg__fail("%s: out of memory for a [] %s result", tg__op_name ? tg__op_name : "tapegrad",
                 tg_dtype_name(dt));
        return NULL;
    }
    tg_tensor *t = (tg_tensor *)mem;
    init_header(t, dt, mem + HDR_SMALL);
    return t;
}

tg_tensor *tg__tape_tensor(tg_dtype dt, int ndim, const int64_t *shape) {
    const char *op = tg__op_name ? tg__op_name : "tapegrad";
    int64_t n = tg__shape_numel(op, ndim, shape);
    if (n < 0) return NULL;
    size_t bytes = (size_t)n * tg_dtype_size(dt);
    tg_tensor *t = tape_header(dt, ndim, shape, n, bytes);
    if (!t)
        tg__fail("%s: out of memory for a %s %s result (%zu bytes)", op, tg__shp_raw(ndim, shape),
                 tg_dtype_name(dt), bytes);
    return t;
}

tg_tensor *tg__tape_zeros(tg_dtype dt, int ndim, const int64_t *shape) {
    tg_tensor *t = tg__tape_tensor(dt, ndim, shape);
    if (t) memset(t->data, 0, (size_t)t->numel * tg_dtype_size(dt));
    return t;
}

tg_tensor *tg__tape_view(tg_tensor *x, int ndim, const int64_t *shape) {
    tg_tensor *t = tape_header(x->dtype, ndim, shape, x->numel, 0);
    if (!t) return NULL;
    t->data = x->data;
    t->tg__view = true;
    return t;
}

tg_tensor *tg__tape_full(tg_dtype dt, int ndim, const int64_t *shape, double value) {
    tg_tensor *t = tg__tape_tensor(dt, ndim, shape);
    if (!t) return NULL;
    if (dt == TG_F64) {
        double *d = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            d[i] = value;
    } else if (dt == TG_F32) {
        float *d = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            d[i] = (float)value;
    } else {
        int64_t *d = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            d[i] = (int64_t)value;
    }
    return t;
}

tg_tensor *tg__ones_like(const tg_tensor *x) {
    return tg__tape_full(x->dtype, x->ndim, x->shape, 1.0);
}

/* ---- recording ---- */

bool tg__should_record(int nin, tg_tensor *const *in) {
    if (tape.grad_off) return false;
    for (int i = 0; i < nin; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

/* Anomaly mode, forward: false (error set) when y holds a non-finite value while every
 * input is finite. */
static bool anomaly_forward_ok(const char *op, const tg_tensor *y, int nin, tg_tensor *const *in) {
    int64_t bad = tg__first_nonfinite(y);
    if (bad < 0) return true;
    for (int i = 0; i < nin; i++)
        if (in[i] && tg__first_nonfinite(in[i]) >= 0) return true;
    tg__fail("%s: anomaly: %s gave %s at element %lld of its %s %s result from finite inputs "
             "(node %zu of the tape)",
             tg__op_name ? tg__op_name : op, op, tg__value_name(tg__get(y, bad)), (long long)bad,
             tg__shp(y), tg_dtype_name(y->dtype), tape.nnodes + 1);
    return false;
}

/* Records the node for y = op(in...) once tg__should_record said so; small: allocate
 * only up to TG__NODE_SMALL (nin <= TG__NODE_INLINE). */
static inline __attribute__((always_inline)) tg__node *record(const char *op, tg_tensor *y, int nin,
                                                              tg_tensor *const *in,
                                                              tg__backward_fn backward,
                                                              bool small) {
    if (__builtin_expect(tape.anomaly, 0) && !anomaly_forward_ok(op, y, nin, in))
        return TG__RECORD_FAILED;
    if (!tg__should_record(nin, in)) return NULL;
    size_t pos = position();
    tg__node *n =
        small ? arena_alloc(TG__NODE_SMALL, SMALL_ALIGN) : arena_alloc(sizeof *n, SMALL_ALIGN);
    if (!n) return TG__RECORD_FAILED;
    if (nin <= TG__NODE_INLINE) {
        n->in = n->inline_in;
    } else {
        n->in = tg__arena_alloc_small((size_t)nin * sizeof *n->in);
        if (!n->in) return TG__RECORD_FAILED;
    }
    for (int i = 0; i < nin; i++)
        n->in[i] = in[i];
    n->prev = tape.last;
    n->pos = pos;
    n->op = op;
    n->backward = backward;
    n->scalar_backward = NULL;
    n->out = y;
    n->nin = nin;
    n->small = small;
    n->d[0] = n->d[1] = 0;
    if (!small) {
        n->aux[0] = n->aux[1] = NULL;
        n->i[0] = n->i[1] = n->i[2] = n->i[3] = 0;
        n->extra = NULL;
    }
    tape.last = n;
    tape.nnodes++;
    y->requires_grad = true;
    y->tg__node = n;
    return n;
}

tg__node *tg__record(const char *op, tg_tensor *y, int nin, tg_tensor *const *in,
                     tg__backward_fn backward) {
    return record(op, y, nin, in, backward, false);
}

tg__node *tg__record_small(const char *op, tg_tensor *y, int nin, tg_tensor *const *in,
                           tg__backward_fn backward) {
    return record(op, y, nin, in, backward, nin <= 2);
}

tg__node *tg__tape_last(void) { return tape.last; }

/* ---- reset, mark, rewind ---- */

/* ---- the checked mode ---- */

static int checks_from_environment(void) {
    const char *v = getenv("TAPEGRAD_CHECKS");
    return v && *v && strcmp(v, "0") != 0;
}

_Atomic int tg__checked;

__attribute__((constructor)) static void checked_mode_init(void) {
    atomic_store(&tg__checked, checks_from_environment());
}

bool tg_set_checked_mode(bool on) { return atomic_exchange(&tg__checked, on) != 0; }

bool tg_is_checked_mode(void) { return tg__checks_on(); }

/* Fills the arena positions [from, to) with the poison byte. */
static void poison(size_t from, size_t to, int byte) {
    for (int b = 0; b < tape.nblocks && from < to; b++) {
        arena_block *k = &tape.blocks[b];
        size_t lo = from > k->base ? from : k->base, hi = k->base + k->cap;
        if (hi > to) hi = to;
        if (lo < hi) memset(k->mem + (lo - k->base), byte, hi - lo);
    }
}

/* Rewinds may leave up to MAX_HOLES ranges of MAX_DEAD_BYTES in all unused before
 * memory is reused. */
enum { MAX_DEAD_BYTES = 64 << 20, MAX_HOLES = 32 };

bool tg__check_live(const char *op, const char *what, const tg_tensor *x) {
    const char *by;
    switch (x->tg__magic) {
    case TG__MAGIC_LIVE:
        return true;
    case TG__POISON_RESET * 0x01010101u:
        by = "a tape tensor released by tg_tape_reset";
        break;
    case TG__POISON_REWIND * 0x01010101u:
        by = "a tape tensor released by tg_tape_rewind";
        break;
    case TG__MAGIC_FREED:
        by = "a persistent tensor released by tg_tensor_free";
        break;
    default:
        by = "not a live tensor (a stale or invalid pointer)";
        break;
    }
    tg__fail("%s: %s is %s", op, what, by);
    return false;
}

bool tg__check_tape_live(const char *op) {
    if (!tg__checks_on()) return true;
    size_t pos = tape.nnodes;
    for (tg__node *n = tape.last; n; n = n->prev, pos--) {
        const tg_tensor *refs[TG__NODE_INLINE + 2];
        for (int i = 0; i < n->nin; i++) {
            const tg_tensor *x = n->in[i];
            if (x->tg__magic != TG__MAGIC_LIVE) {
                char what[96];
                snprintf(what, sizeof what, "input %d of node %zu (%s) on the tape", i, pos, n->op);
                return tg__check_live(op, what, x);
            }
        }
        refs[0] = n->small ? NULL : n->aux[0];
        refs[1] = n->small ? NULL : n->aux[1];
        for (int i = 0; i < 2; i++)
            if (refs[i] && refs[i]->tg__magic != TG__MAGIC_LIVE) {
                char what[96];
                snprintf(what, sizeof what, "an argument of node %zu (%s) on the tape", pos, n->op);
                return tg__check_live(op, what, refs[i]);
            }
    }
    return true;
}

bool tg__tape_keep_if_referenced(tg_tensor *t) {
    bool found = false;
    for (tg__node *n = tape.last; n && !found; n = n->prev) {
        for (int i = 0; i < n->nin && !found; i++)
            found = n->in[i] == t;
        found = found || (!n->small && (n->aux[0] == t || n->aux[1] == t));
    }
    if (!found) return false;
    if (tape.nkept == tape.cap_kept) {
        size_t ncap = tape.cap_kept ? tape.cap_kept * 2 : 16;
        tg_tensor **nk = tg__alloc(ncap * sizeof *nk);
        if (!nk) return true; /* leaked rather than freed under the tape's feet */
        if (tape.nkept) memcpy(nk, tape.kept, tape.nkept * sizeof *nk);
        tg__release(tape.kept);
        tape.kept = nk;
        tape.cap_kept = ncap;
    }
    t->tg__magic = TG__MAGIC_FREED;
    tape.kept[tape.nkept++] = t;
    return true;
}

/* Frees the persistent tensors kept by the checked mode (the tape no longer refers to
 * them: it has just been emptied). */
static void release_kept(void) {
    for (size_t i = 0; i < tape.nkept; i++)
        tg_tensor_free(tape.kept[i]);
    tape.nkept = 0;
}

/* ---- reset, mark, rewind ---- */

static void note_peak(void);

void tg_tape_reset(void) {
    if (tg__checks_on()) {
        /* Poison what is released and allocate from the other arena, so that tensors of
         * this generation are caught until the next reset. */
        poison(0, position(), TG__POISON_RESET);
        struct spare_arena s = tape.spare;
        tape.spare = (struct spare_arena){tape.blocks, tape.nblocks, tape.cap_blocks};
        tape.blocks = s.blocks;
        tape.nblocks = s.nblocks;
        tape.cap_blocks = s.cap_blocks;
    }
    tape.cur = 0;
    tape.off = 0;
    tape.last = NULL;
    tape.nnodes = 0;
    tape.next_id = 0;
    tape.nholes = 0;
    tape.hole_bytes = 0;
    tape.tape_hooks = false;
    tape.peak = 0;
    release_kept();
}

size_t tg_tape_mark(void) { return position(); }

/* Checked mode: poisons [mark, position()) but for the holes earlier rewinds left in it
 * (already poisoned), merges them into one hole and says whether that hole may stay
 * unused (true) or the memory from mark on is to be reused (holes over budget). */
static bool rewind_checked(size_t mark) {
    size_t pos = position(), from = mark, top = pos;
    while (tape.nholes && tape.holes[tape.nholes - 1].to > mark) {
        struct hole h = tape.holes[--tape.nholes];
        if (h.to < top) poison(h.to, top, TG__POISON_REWIND);
        top = h.from;
        tape.hole_bytes -= h.to - h.from;
        if (h.from < from) from = h.from; /* it straddles mark */
    }
    if (mark < top) poison(mark, top, TG__POISON_REWIND);
    if (!tape.holes && !(tape.holes = tg__alloc(MAX_HOLES * sizeof *tape.holes))) {
        tg_clear_error(); /* no room to track holes: rewind as usual */
        return false;
    }
    bool keep = tape.nholes < MAX_HOLES && tape.hole_bytes + (pos - from) <= MAX_DEAD_BYTES;
    size_t to = keep ? pos : mark; /* reused from mark on: only [from, mark) stays a hole */
    if (from < to) {
        tape.holes[tape.nholes++] = (struct hole){from, to};
        tape.hole_bytes += to - from;
    }
    return keep;
}

void tg_tape_rewind(size_t mark) {
    if (mark > position()) return;
    note_peak();
    while (tape.last && tape.last->pos >= mark) {
        tape.last = tape.last->prev;
        tape.nnodes--;
    }
    if (!tape.nblocks) return;
    if (tg__checks_on() && rewind_checked(mark)) return;
    int b = 0;
    while (b + 1 < tape.nblocks && tape.blocks[b + 1].base <= mark)
        b++;
    tape.cur = b;
    tape.off = mark - tape.blocks[b].base;
}

tg_tensor *tg__tape_keep_only(size_t mark, tg_tensor *y) {
    size_t bytes = (size_t)y->numel * tg_dtype_size(y->dtype);
    void *save = tg__alloc(bytes ? bytes : 1);
    if (!save) return NULL;
    memcpy(save, y->data, bytes);
    int ndim = y->ndim;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, y->shape, sizeof shape);
    tg_dtype dt = y->dtype;
    tg_tape_rewind(mark);
    tg_tensor *t = tg__tape_tensor(dt, ndim, shape);
    if (t) memcpy(t->data, save, bytes);
    tg__release(save);
    return t;
}

void tg_tape_free(void) {
    tape.last = NULL;
    tape.nnodes = 0;
    release_kept();
    tg__release(tape.kept);
    tg__release(tape.holes);
    for (int i = 0; i < tape.nblocks; i++)
        tg__release(tape.blocks[i].raw);
    tg__release(tape.blocks);
    for (int i = 0; i < tape.spare.nblocks; i++)
        tg__release(tape.spare.blocks[i].raw);
    tg__release(tape.spare.blocks);
    bool off = tape.grad_off, anomaly = tape.anomaly_user;
    memset(&tape, 0, sizeof tape);
    tape.grad_off = off;
    tape.anomaly = tape.anomaly_user = anomaly;
}

size_t tg_tape_size(void) { return tape.nnodes; }

size_t tg_tape_bytes_reserved(void) {
    size_t s = 0;
    for (int i = 0; i < tape.nblocks; i++)
        s += tape.blocks[i].cap;
    for (int i = 0; i < tape.spare.nblocks; i++)
        s += tape.spare.blocks[i].cap;
    return s;
}

/* The holes the checked mode leaves after rewinds are not in use. */
size_t tg_tape_bytes_used(void) { return position() - tape.hole_bytes; }

size_t tg_tape_bytes_peak(void) {
    size_t pos = position();
    return pos > tape.peak ? pos : tape.peak;
}

/* Called before the position falls (rewind). */
static void note_peak(void) {
    size_t pos = position();
    if (pos > tape.peak) tape.peak = pos;
}

bool tg_set_grad_enabled(bool on) {
    bool prev = !tape.grad_off;
    tape.grad_off = !on;
    return prev;
}

bool tg_is_grad_enabled(void) { return !tape.grad_off; }

/* ---- anomaly mode ---- */

bool tg_set_anomaly_mode(bool on) {
    bool prev = tape.anomaly_user;
    tape.anomaly_user = on;
    tape.anomaly = on && tape.sweep_depth == 0;
    return prev;
}

bool tg_is_anomaly_mode(void) { return tape.anomaly_user; }

/* Inside a sweep the ops a backward closure calls are not checked one by one: the
 * sweep checks the closure as a whole and names the node's own op. */
unsigned tg__sweep_begin(void) {
    tape.sweep_depth++;
    tape.anomaly = false;
    return (tape.anomaly_user ? TG__SWEEP_ANOMALY : 0u) |
           (tg__hooks_exist() ? TG__SWEEP_HOOKS : 0u);
}

void tg__sweep_end(void) {
    if (--tape.sweep_depth == 0) tape.anomaly = tape.anomaly_user;
}

int64_t tg__first_nonfinite(const tg_tensor *t) {
    if (t->dtype == TG_F64) {
        const double *d = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(d[i])) return i;
    } else if (t->dtype == TG_F32) {
        const float *d = t->data;
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(d[i])) return i;
    }
    return -1;
}

const char *tg__value_name(double v) { return isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

/* ---- gradient hooks ---- */

/* Hooks on persistent tensors, over all threads: a sweep looks for hooked leaves only
 * when there may be some. */
static _Atomic long persistent_hooks;

bool tg__hooks_exist(void) {
    return tape.tape_hooks || atomic_load_explicit(&persistent_hooks, memory_order_relaxed) > 0;
}

int tg_register_hook(tg_tensor *t, tg_hook_fn fn, void *ctx) {
    if (!t) return tg__fail_soft("tg_register_hook: tensor is NULL"), -1;
    if (!fn) return tg__fail_int("tg_register_hook: hook function is NULL for %s", tg__shp(t));
    if (tg__checks_on() && !tg__check_live("tg_register_hook", "the tensor", t)) return -1;
    if (t->dtype == TG_I64)
        return tg__fail_int("tg_register_hook: %s is i64 and has no gradient", tg__shp(t));
    tg__op_name = "tg_register_hook";
    /* A persistent tensor's hooks outlive resets; a tape tensor's go with the tape. */
    tg__hook *h = t->tg__persistent ? tg__alloc(sizeof *h) : tg__arena_alloc(sizeof *h);
    if (!h) return -1;
    if (t->tg__persistent)
        atomic_fetch_add(&persistent_hooks, 1);
    else
        tape.tape_hooks = true;
    *h = (tg__hook){fn, ctx, NULL, t->tg__persistent, 0};
    tg__hook **end = &t->tg__hooks;
    while (*end)
        end = &(*end)->next;
    *end = h;
    return 0;
}

void tg_clear_hooks(tg_tensor *t) {
    if (!t) return;
    for (tg__hook *h = t->tg__hooks, *next; h; h = next) {
        next = h->next;
        if (h->heap) {
            atomic_fetch_sub(&persistent_hooks, 1);
            tg__release(h);
        }
    }
    t->tg__hooks = NULL;
}

/* ---- printing ---- */

static const char *label(const tg_tensor *t, char *buf, size_t len) {
    if (t->tg__name && t->tg__name[0])
        snprintf(buf, len, "%s", t->tg__name);
    else if (t->tg__persistent)
        snprintf(buf, len, "p%04x", (unsigned)(((uintptr_t)t >> 6) & 0xffff));
    else
        snprintf(buf, len, "t%d", (int)t->tg__id);
    return buf;
}

/* The nodes oldest first, in a temporary array (the list is linked newest first). */
static tg__node **nodes_in_order(size_t *count) {
    *count = tape.nnodes;
    tg__node **v = tg__alloc((tape.nnodes ? tape.nnodes : 1) * sizeof *v);
    if (!v) return NULL;
    size_t i = tape.nnodes;
    for (tg__node *n = tape.last; n; n = n->prev)
        v[--i] = n;
    return v;
}

void tg_tape_print(FILE *out) {
    if (!out) return;
    size_t count;
    tg__node **v = nodes_in_order(&count);
    if (!v) return;
    char a[32], b[32];
    for (size_t k = 0; k < count; k++) {
        tg__node *n = v[k];
        char args[256];
        size_t pos = 0;
        args[0] = '\0';
        for (int i = 0; i < n->nin && pos < sizeof args - 40; i++)
            pos += (size_t)snprintf(args + pos, sizeof args - pos, "%s%s", i ? ", " : "",
                                    label(n->in[i], a, sizeof a));
        char lhs[300];
        snprintf(lhs, sizeof lhs, "%s = %s(%s)", label(n->out, b, sizeof b), n->op, args);
        fprintf(out, "%-32s %s %s\n", lhs, tg__shp(n->out), tg_dtype_name(n->out->dtype));
    }
    tg__release(v);
}

/* A set of pointers (open addressing) so each leaf is declared once in the DOT output. */
typedef struct {
    const void **slot;
    size_t cap;
} ptr_set;

/* Returns true when p was not in the set (and adds it). */
static bool ptr_set_add(ptr_set *s, const void *p) {
    size_t h = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull;
    for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == p) return false;
        if (!s->slot[i]) {
            s->slot[i] = p;
            return true;
        }
    }
}

int tg_tape_dot(FILE *out) {
    if (!out) return tg__fail_int("tg_tape_dot: output stream is NULL");
    size_t count;
    tg__node **v = nodes_in_order(&count);
    if (!v) return -1;
    /* At most 2 * inputs leaves; keep the table at most half full. */
    size_t nin = 0;
    for (size_t k = 0; k < count; k++)
        nin += (size_t)v[k]->nin;
    ptr_set leaves = {NULL, 16};
    while (leaves.cap < 2 * nin + 2)
        leaves.cap *= 2;
    leaves.slot = tg__alloc(leaves.cap * sizeof *leaves.slot);
    if (!leaves.slot) {
        tg__release(v);
        return -1;
    }
    memset(leaves.slot, 0, leaves.cap * sizeof *leaves.slot);
    char a[32], b[32];
    int rc = fprintf(out, "digraph tape {\n  rankdir=BT;\n  node [fontname=\"monospace\"];\n");
    for (size_t k = 0; k < count && rc >= 0; k++) {
        tg__node *n = v[k];
        rc = fprintf(out, "  \"%p\" [shape=ellipse, label=\"%s = %s\\n%s %s\"];\n", (void *)n->out,
                     label(n->out, b, sizeof b), n->op, tg__shp(n->out),
                     tg_dtype_name(n->out->dtype));
        for (int i = 0; i < n->nin && rc >= 0; i++) {
            tg_tensor *x = n->in[i];
            if (!x->tg__node && ptr_set_add(&leaves, x))
                rc = fprintf(out, "  \"%p\" [shape=box, label=\"%s\\n%s %s\"];\n", (void *)x,
                             label(x, a, sizeof a), tg__shp(x), tg_dtype_name(x->dtype));
            if (rc >= 0) rc = fprintf(out, "  \"%p\" -> \"%p\";\n", (void *)x, (void *)n->out);
        }
    }
    if (rc >= 0) rc = fprintf(out, "}\n");
    tg__release(leaves.slot);
    tg__release(v);
    if (rc < 0 || ferror(out)) return tg__fail_int("tg_tape_dot: write error");
    return 0;
}
