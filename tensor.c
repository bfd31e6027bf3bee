/* tensor.c — the op library of ediff: one GEMM, one attention, one of each norm, activations,
 * resampling. float32 compute; weights may be f16/bf16 and are converted while packing.
 * OpenMP is optional; every result is independent of the thread count (each output element is
 * produced by one thread, summing in a fixed order). */
#include "ediff.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ dtypes ------------------------ */

size_t dtype_size(int dtype)
{
    static const size_t size[DT_COUNT] = {4, 2, 2, 8, 4, 1};
    return dtype >= 0 && dtype < DT_COUNT ? size[dtype] : 0;
}

const char *dtype_name(int dtype)
{
    static const char *name[DT_COUNT] = {"f32", "f16", "bf16", "f64", "i32", "u8"};
    return dtype >= 0 && dtype < DT_COUNT ? name[dtype] : "?";
}

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* IEEE binary16 -> binary32, branch-free so conversion loops vectorise: the half's exponent and
 * mantissa bits, moved to float positions, read as a float and scaled by 2^112 give every normal and
 * subnormal half exactly; exponent 31 (inf/NaN) becomes 255; the sign is copied. The inf/NaN case is
 * selected with a bit mask, not a conditional, which gcc would not vectorise. */
static inline float half_to_float(uint16_t h)
{
    uint32_t em = (uint32_t)(h & 0x7FFFu) << 13, sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t special = 0u - (uint32_t)((h & 0x7C00u) == 0x7C00u);               /* all ones: inf/NaN */
    uint32_t u = (f32_to_bits(bits_to_f32(em) * 0x1p112f) & ~special) | ((em | 0x7F800000u) & special);
    return bits_to_f32(u | sign);
}

float f16_to_f32(uint16_t h) { return half_to_float(h); }

uint16_t f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) return (uint16_t)(sign | 0x7C00u | (a > 0x7F800000u ? 0x200u : 0));
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);                    /* rounds to inf */
    if (a < 0x38800000u) {                                                       /* subnormal half */
        float m = bits_to_f32(a) * 16777216.0f;                                  /* in units of 2^-24 */
        uint32_t r = (uint32_t)m; float frac = m - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t mant = a + 0xFFFu + ((a >> 13) & 1);                                /* round to nearest even */
    return (uint16_t)(sign | ((mant - 0x38000000u) >> 13));
}

float bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

/* n elements p[off], p[off+stride], ... of a float-typed buffer as float32 (inline: the packing
 * routines of every instruction-set version get their own vectorised copy). */
static inline void load_f32(float *dst, const void *p, int dtype, long off, long stride, long n)
{
    long i;
    switch (dtype) {
    case DT_F32: {
        const float *s = (const float *)p + off;
        if (stride == 1) memcpy(dst, s, (size_t)n * sizeof(float));
        else for (i = 0; i < n; i++) dst[i] = s[i * stride];
        break;
    }
    case DT_F16: {
        const uint16_t *s = (const uint16_t *)p + off;
        for (i = 0; i < n; i++) dst[i] = half_to_float(s[i * stride]);
        break;
    }
    case DT_BF16: {
        const uint16_t *s = (const uint16_t *)p + off;
        for (i = 0; i < n; i++) dst[i] = bits_to_f32((uint32_t)s[i * stride] << 16);
        break;
    }
    case DT_F64: {
        const double *s = (const double *)p + off;
        for (i = 0; i < n; i++) dst[i] = (float)s[i * stride];
        break;
    }
    case DT_I32: {
        const int32_t *s = (const int32_t *)p + off;
        for (i = 0; i < n; i++) dst[i] = (float)s[i * stride];
        break;
    }
    default: {
        const uint8_t *s = (const uint8_t *)p + off;
        for (i = 0; i < n; i++) dst[i] = (float)s[i * stride];
    }
    }
}

float tensor_at(const Tensor *t, int64_t i)
{
    float f;
    load_f32(&f, t->data, t->dtype, (long)i, 1, 1);
    return f;
}

void tensor_to_f32(const Tensor *t, float *dst, int64_t start, int64_t n)
{
    load_f32(dst, t->data, t->dtype, (long)start, 1, (long)n);
}

/* ------------------------------------------------------------------ vector-friendly math ---------- */
/* Loops over these inline functions vectorise (a call to libm's expf per element does not). */

/* exp(x) for float32: exp(x) = 2^n exp(r) with n = round(x / ln 2) and r = x - n ln 2 in two parts
 * (Cody & Waite 1980), exp(r) by the polynomial of Cephes' expf (Moshier 1992), 2^n written into the
 * exponent bits in two halves so subnormal results and results near FLT_MAX come out right. Within 1 ulp
 * of the correctly rounded exp (test/t_ops.c measures it over the whole float range); exp(-inf) = 0,
 * exp(+inf) = inf, NaN stays NaN. */
static inline float vexpf(float x)
{
    const float magic = 12582912.0f;                              /* 1.5 * 2^23: t - magic rounds */
    float xc = x < -104.0f ? -104.0f : x > 89.0f ? 89.0f : x;     /* exp is 0 / inf beyond; NaN passes */
    float t = xc * 1.44269504088896341f + magic, n = t - magic;
    uint32_t u = f32_to_bits(t) - f32_to_bits(magic) + 256u;      /* n + 256, in [106, 384] */
    uint32_t n1 = u >> 1, n2 = u - n1;                            /* n = (n1 - 128) + (n2 - 128) */
    float r = xc - n * 0.693359375f, r2, p;
    r = r - n * -2.12194440e-4f;
    r2 = r * r;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    return p * bits_to_f32((n1 - 1u) << 23) * bits_to_f32((n2 - 1u) << 23);
}

/* The activations, per element, on vexpf. */
static inline float silu_f(float x) { return x / (1.0f + vexpf(-x)); }             /* x sigmoid(x) */
static inline float quick_gelu_f(float x) { return x / (1.0f + vexpf(-1.702f * x)); } /* CLIP */

/* HF gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), tanh(u) = 1 - 2 / (exp(2u) + 1). */
static inline float gelu_tanh_f(float x)
{
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (2.0f - 2.0f / (vexpf(2.0f * u) + 1.0f));
}

/* Exact GELU, x Phi(x) = x (1 - erfc(x/sqrt 2) / 2), through erfc(z) = t exp(-z^2 + P(t)),
 * t = 1 / (1 + z/2), z >= 0, relative error < 1.2e-7 (Numerical Recipes' erfcc, a Chebyshev fit);
 * for x < 0, x Phi(x) = x erfc(|x|/sqrt 2) / 2 keeps full relative accuracy in the tail. */
static inline float gelu_f(float x)
{
    float z = (x < 0.0f ? -x : x) * 0.70710678118654752f, t = 1.0f / (1.0f + 0.5f * z), p, c;
    p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    c = t * vexpf(p - z * z);                    /* erfc(z) */
    return x < 0.0f ? 0.5f * x * c : x - 0.5f * x * c;
}

/* Sum and maximum of n floats in a fixed order that vectorises: 16 interleaved partial results, then
 * those in order. The same bits on every machine and for every vector width. */
#define LANES 16

static inline float sum_f32(const float *x, int n)
{
    float part[LANES] = {0}, s = 0.0f;
    int i = 0, j;
    for (; i + LANES <= n; i += LANES)
        for (j = 0; j < LANES; j++) part[j] += x[i + j];
    for (j = 0; i < n; i++, j++) part[j] += x[i];
    for (j = 0; j < LANES; j++) s += part[j];
    return s;
}

/* Floats as ordered integers: with the sign bit flipped for positives and every bit flipped for
 * negatives, the bits of two floats (NaN aside) compare as unsigned integers the way the floats do;
 * compilers vectorise an integer maximum where they keep a float one scalar. */
static inline uint32_t order_key(float f) { uint32_t u = f32_to_bits(f); return u ^ (-(u >> 31) | 0x80000000u); }
static inline float key_float(uint32_t k) { return bits_to_f32(k ^ (((k >> 31) - 1u) | 0x80000000u)); }

static inline float max_f32(const float *x, int n)
{
    uint32_t part[LANES], m = order_key(-INFINITY);
    int i = 0, j;
    for (j = 0; j < LANES; j++) part[j] = m;
    for (; i + LANES <= n; i += LANES)
        for (j = 0; j < LANES; j++) {
            uint32_t k = order_key(x[i + j]);
            part[j] = k > part[j] ? k : part[j];
        }
    for (; i < n; i++) {
        uint32_t k = order_key(x[i]);
        m = k > m ? k : m;
    }
    for (j = 0; j < LANES; j++) m = part[j] > m ? part[j] : m;
    return key_float(m);
}

/* ------------------------------------------------------------------ errors and memory ------------- */

int errorf(char err[EDIFF_ERR], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, EDIFF_ERR, fmt, ap);
    va_end(ap);
    return -1;
}


void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "ediff: out of memory (allocating %zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "ediff: out of memory (allocating %zu x %zu bytes)\n", n, size);
        exit(1);
    }
    return p;
}

#define ALIGN 64

int arena_init(Arena *a, size_t bytes, char err[EDIFF_ERR])
{
    memset(a, 0, sizeof *a);
    a->base = bytes <= (size_t)-1 - ALIGN ? malloc(bytes + ALIGN) : NULL;
    if (!a->base) {
        snprintf(err, EDIFF_ERR, "out of memory: cannot reserve %zu MiB of activation memory",
                 bytes >> 20);
        return -1;
    }
    a->cap = bytes;
    return 0;
}

void arena_free(Arena *a)
{
    free(a->base);
    memset(a, 0, sizeof *a);
}

float *arena_alloc(Arena *a, size_t nfloats)
{
    size_t start = (a->used + ALIGN - 1) / ALIGN * ALIGN;
    size_t bytes = nfloats * sizeof(float);
    unsigned char *aligned = a->base + (ALIGN - (size_t)((uintptr_t)a->base % ALIGN)) % ALIGN;
    if (nfloats > ((size_t)-1) / sizeof(float) || start > a->cap || bytes > a->cap - start) {
        fprintf(stderr, "ediff: activation arena exhausted (%zu of %zu bytes used, %zu more asked)\n",
                a->used, a->cap, bytes);
        exit(1);
    }
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return (float *)(void *)(aligned + start);
}

size_t arena_mark(const Arena *a) { return a->used; }
void   arena_reset(Arena *a, size_t mark) { a->used = mark; }

/* ------------------------------------------------------------------ threads ----------------------- */

void set_threads(int n)
{
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int get_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* A team of min(n, threads) runs the tasks in static order; each member gives the ops of its task its
 * share of the threads (a nested level, opened only when that share is above one). */
void parallel_tasks(int n, void (*task)(void *ctx, int i), void *ctx)
{
    int i;
#ifdef _OPENMP
    int threads = omp_get_max_threads(), team = n < threads ? n : threads, share = team > 1 ? threads / team : threads;
    if (team > 1 && share > 1 && omp_get_max_active_levels() < omp_get_level() + 2)
        omp_set_max_active_levels(omp_get_level() + 2);
OMP(omp parallel for num_threads(team > 1 ? team : 1) schedule(static) if (team > 1))
    for (i = 0; i < n; i++) {
        omp_set_num_threads(share);
        task(ctx, i);
    }
#else
    for (i = 0; i < n; i++) task(ctx, i);
#endif
}

/* ------------------------------------------------------------------ GEMM -------------------------- */
/* Goto & van de Geijn, "Anatomy of high-performance matrix multiplication" (2008), as in BLIS: for each
 * NC-wide block of columns and each KC-deep slice of K, pack B (KC x NC) into NR-wide column panels;
 * for each MC-tall block of rows pack A (MC x KC) into MR-tall row panels; then the MR x NR micro-kernel
 * runs over every (row panel, column panel) pair. Panels are zero-padded, so an edge tile costs one
 * full tile and its partial store. Packing is where Mat's strides, f16/bf16 and the implicit im2col
 * are resolved: the micro-kernel only ever sees contiguous float panels. An A panel keeps A's rows
 * (MR rows of kc, so packing a row-major A, weights included, is a copy or a vectorised conversion);
 * a B panel is k-major (kc rows of NR), what the vector loads of the micro-kernel read.
 *
 * Sizes (float32, for a core with 32 vector registers of 16 floats, 48 KiB L1d, 2 MiB L2): the MR x NR
 * = 8 x 32 accumulator tile is 16 AVX-512 registers (enough independent chains to keep two FMA units
 * busy; MR = 8 divides the model's channel counts, so no rows are wasted); a B micro-panel (KC x NR,
 * 32 KiB) stays in L1 while A micro-panels stream from the packed A block (MC x KC, 480 KiB) held in
 * L2. Smaller vector units run the same code with register spills; the results are identical. */

#define MR 8
#define NR 32
#define KC 256
#define MC 480          /* multiple of MR */
#define NC 2048         /* multiple of NR */

/* The packing and the other hot loops are compiled for AVX-512, AVX2 and baseline x86-64 (SSE2), and
 * the best one the CPU has is picked when the program starts (GCC/clang function multi-versioning, via
 * the ELF ifunc of glibc): the default build runs on any x86-64 yet uses AVX-512 where present. Every
 * version computes the same operations in the same order, and the portable build never contracts
 * a*b+c into a fused multiply-add (-ffp-contract=off), so they give the same bits, with gcc or clang.
 * NATIVE=1 builds (-march=native) need no dispatch; -DEDIFF_NO_DISPATCH builds only the baseline. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && !defined(__AVX512F__) && !defined(EDIFF_NO_DISPATCH)
#define KERNEL_VERSIONS __attribute__((target_clones("avx512f", "avx2", "default")))
#define FMA_DISPATCH 1
#define INLINE_ALWAYS inline __attribute__((always_inline))   /* into each instruction-set version */
#else
#define KERNEL_VERSIONS
#define FMA_DISPATCH 0
#define INLINE_ALWAYS inline
#endif
/* clang vectorises the row loop of the micro-kernel (with gathers) instead of its column loop unless
 * told not to; other compilers need no hint. */
#ifdef __clang__
#define NO_VECTORIZE _Pragma("clang loop vectorize(disable)")
#else
#define NO_VECTORIZE
#endif

static int imin(int a, int b) { return a < b ? a : b; }

Mat mat_f32(const float *p, long rs, long cs)
{
    Mat m;
    memset(&m, 0, sizeof m);
    m.kind = MAT_STRIDED; m.dtype = DT_F32; m.p = p; m.rs = rs; m.cs = cs;
    return m;
}

Mat mat_tensor(const Tensor *t, long rs, long cs)
{
    Mat m = mat_f32(NULL, rs, cs);
    m.dtype = t->dtype; m.p = t->data;
    return m;
}

/* Rows r0..r0+nr-1, columns k0..k0+kc-1 of A into one panel, row after row: dst[i*kc + k], rows
 * nr..MR-1 zero. The rows of a row-major A (activations, weights [out, in]) are contiguous runs, so
 * this is a copy or a vectorised f16/bf16 conversion; a transposed A reads its rows strided. */
static KERNEL_VERSIONS void pack_a_panel(float *dst, const Mat *A, int r0, int nr, int k0, int kc)
{
    int i;
    for (i = 0; i < nr; i++)
        load_f32(dst + (size_t)i * kc, A->p, A->dtype, (long)(r0 + i) * A->rs + (long)k0 * A->cs, A->cs, kc);
    if (nr < MR) memset(dst + (size_t)nr * kc, 0, (size_t)(MR - nr) * kc * sizeof(float));
}

/* dst[k*NR + j] = v_j[k] for n vectors v_j = p[off + j*stride + k] (k < kc) of a float dtype: a B panel
 * of column-contiguous columns (B = Wᵀ of a row-major W). Read the n vectors k by k and store each row
 * contiguously: what compilers vectorise best here (in a micro-benchmark, 1.5x faster than converting
 * each column as a run and transposing after). */
static inline void gather_columns(float *dst, int n, const void *p, int dtype, long off, long stride, int kc)
{
    int j, k;
    if (dtype == DT_F32) {
        const float *s = (const float *)p + off;
        for (k = 0; k < kc; k++)
            for (j = 0; j < n; j++) dst[k * NR + j] = s[j * stride + k];
    } else if (dtype == DT_F16) {
        const uint16_t *s = (const uint16_t *)p + off;
        for (k = 0; k < kc; k++)
            for (j = 0; j < n; j++) dst[k * NR + j] = half_to_float(s[j * stride + k]);
    } else {
        const uint16_t *s = (const uint16_t *)p + off;
        for (k = 0; k < kc; k++)
            for (j = 0; j < n; j++) dst[k * NR + j] = bits_to_f32((uint32_t)s[j * stride + k] << 16);
    }
}

/* Columns c0..c0+nc-1 of an implicit im2col matrix, rows k0..k0+kc-1, into a panel dst[k*NR + j].
 * Row r is the filter tap (ci, ky, kx), stepped through without divisions; column c is output pixel
 * (c / wout, c % wout). The panel's columns fall into runs, one per output row they touch, along which
 * the input pixels are evenly spaced: without padding (conv2d pads a copy first) each run is a plain
 * copy from the tap's origin plus a fixed offset; with padding, a zero-fill, a copy and a zero-fill. */
static KERNEL_VERSIONS void pack_b_im2col(float *dst, const Mat *B, int k0, int kc, int c0, int nc)
{
    int s = B->stride, k, j, r, t, runs = 0;
    int ci = k0 / (B->kh * B->kw), ky = k0 / B->kw % B->kh, kx = k0 % B->kw;
    int oy0 = c0 / B->wout, ox0 = c0 % B->wout, run_j[NR + 1];
    long run_off[NR];
    for (j = 0; j < nc; runs++) {                              /* runs: columns [run_j[r], run_j[r+1]) */
        int oy = oy0 + runs, ox = runs ? 0 : ox0;
        run_j[runs] = j;
        run_off[runs] = (long)oy * s * B->w + (long)ox * s;
        j += imin(B->wout - ox, nc - j);
    }
    run_j[runs] = nc;
    for (k = 0; k < kc; k++) {
        const float *img = (const float *)B->p + (long)ci * B->h * B->w;
        float *d = dst + k * NR;
        if (B->pad == 0) {
            const float *tap = img + (long)ky * B->dil * B->w + (long)kx * B->dil;
            for (r = 0; r < runs; r++) {
                const float *src = tap + run_off[r];
                float *dj = d + run_j[r];
                int n = run_j[r + 1] - run_j[r];
                if (s == 1 && n == NR) for (t = 0; t < NR; t++) dj[t] = src[t];
                else if (s == 1)       for (t = 0; t < n; t++) dj[t] = src[t];
                else                   for (t = 0; t < n; t++) dj[t] = src[(long)t * s];
            }
        } else {
            int off = kx * B->dil - B->pad;                                /* ix = ox*s + off */
            int ox_lo = off >= 0 ? 0 : (-off + s - 1) / s;                 /* first ox with ix >= 0 */
            int ox_hi = B->w - 1 - off >= 0 ? (B->w - 1 - off) / s + 1 : 0; /* past the last with ix < w */
            for (r = 0; r < runs; r++) {
                int ox = r ? 0 : ox0, n = run_j[r + 1] - run_j[r];
                int iy = (oy0 + r) * s - B->pad + ky * B->dil;
                int lo = ox_lo - ox > 0 ? ox_lo - ox : 0, hi = imin(ox_hi - ox, n); /* valid t in [lo, hi) */
                float *dj = d + run_j[r];
                if (iy < 0 || iy >= B->h || lo >= hi) {
                    for (t = 0; t < n; t++) dj[t] = 0.0f;
                } else {
                    const float *src = img + (long)iy * B->w + (long)ox * s + off;
                    for (t = 0; t < lo; t++) dj[t] = 0.0f;
                    for (t = lo; t < hi; t++) dj[t] = src[(long)t * s];
                    for (t = hi; t < n; t++) dj[t] = 0.0f;
                }
            }
        }
        for (j = nc; j < NR; j++) d[j] = 0.0f;
        if (++kx == B->kw) {                                           /* next filter tap */
            kx = 0;
            if (++ky == B->kh) { ky = 0; ci++; }
        }
    }
}

/* Rows k0..k0+kc-1, columns c0..c0+nc-1 of B into one panel: dst[k*NR + j], columns nc..NR-1 zero. */
static KERNEL_VERSIONS void pack_b_panel(float *dst, const Mat *B, int k0, int kc, int c0, int nc)
{
    int j, k;
    if (B->kind == MAT_IM2COL) {
        pack_b_im2col(dst, B, k0, kc, c0, nc);
        return;
    }
    if (B->cs == 1 && B->dtype == DT_F32) {               /* row-contiguous f32: activations */
        const float *s = (const float *)B->p + (long)k0 * B->rs + c0;
        for (k = 0; k < kc; k++)
            for (j = 0; j < nc; j++) dst[k * NR + j] = s[k * B->rs + j];
    } else if (B->cs == 1 || B->rs != 1) {
        for (k = 0; k < kc; k++)
            load_f32(dst + k * NR, B->p, B->dtype, (long)(k0 + k) * B->rs + (long)c0 * B->cs, B->cs, nc);
    } else {                                              /* column-contiguous: B = Wᵀ of a row-major W */
        gather_columns(dst, nc, B->p, B->dtype, (long)k0 + (long)c0 * B->cs, B->cs, kc);
    }
    for (k = 0; k < kc; k++)
        for (j = nc; j < NR; j++) dst[k * NR + j] = 0.0f;
}

/* The micro-kernel: acc[MR][NR] = sum over k of a[i*kc + k] * b[boff[k] + j] (k ascending), then the
 * mr x nr corner of the C tile = acc (+ C when accumulate). Row k of the B panel is at b + boff[k]:
 * k*NR in a packed panel, or where an im2col row lies in the image itself (see im2col_in_place). The compiler keeps acc in vector
 * registers and turns the j loop into vector multiply-adds of a broadcast ak[i]. With `fused`, each
 * step is one fused multiply-add, fmaf (C99: a*b + c rounded once), which is both the fastest and a
 * fully specified result: every machine with FMA instructions gives the same bits. Without, a multiply
 * and an add (rounded twice), which is what a CPU without FMA does fast. */
static INLINE_ALWAYS void micro_kernel_body(int kc, const float *restrict a, const float *restrict b,
                                            const int *boff, float *restrict C, long ldc, int mr, int nr,
                                            int accumulate, int fused)
{
    float acc[MR][NR], ak[MR];
    int i, j, k;
    for (i = 0; i < MR; i++)
        for (j = 0; j < NR; j++) acc[i][j] = 0.0f;
    for (k = 0; k < kc; k++) {
        const float *bk = b + boff[k];
        for (i = 0; i < MR; i++) ak[i] = a[i * kc + k];
        NO_VECTORIZE
        for (i = 0; i < MR; i++)
            for (j = 0; j < NR; j++) acc[i][j] = fused ? fmaf(ak[i], bk[j], acc[i][j]) : acc[i][j] + ak[i] * bk[j];
    }
    if (mr == MR && nr == NR) {
        if (accumulate) for (i = 0; i < MR; i++) for (j = 0; j < NR; j++) C[i * ldc + j] += acc[i][j];
        else            for (i = 0; i < MR; i++) for (j = 0; j < NR; j++) C[i * ldc + j] = acc[i][j];
    } else {
        if (accumulate) for (i = 0; i < mr; i++) for (j = 0; j < nr; j++) C[i * ldc + j] += acc[i][j];
        else            for (i = 0; i < mr; i++) for (j = 0; j < nr; j++) C[i * ldc + j] = acc[i][j];
    }
}

#define MICRO_KERNEL_ARGS int kc, const float *restrict a, const float *restrict b, const int *boff, \
                          float *restrict C, long ldc, int mr, int nr, int accumulate
#if FMA_DISPATCH
/* The portable x86-64 build fuses where the CPU can (AVX-512 or AVX2 with FMA, checked at each call:
 * a load and a test), and keeps the unfused baseline for x86-64 CPUs without FMA. */
static __attribute__((target("avx512f,fma"))) void micro_kernel_avx512(MICRO_KERNEL_ARGS)
{
    micro_kernel_body(kc, a, b, boff, C, ldc, mr, nr, accumulate, 1);
}

static __attribute__((target("avx2,fma"))) void micro_kernel_avx2(MICRO_KERNEL_ARGS)
{
    micro_kernel_body(kc, a, b, boff, C, ldc, mr, nr, accumulate, 1);
}

static void micro_kernel(MICRO_KERNEL_ARGS)
{
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
        micro_kernel_avx512(kc, a, b, boff, C, ldc, mr, nr, accumulate);
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        micro_kernel_avx2(kc, a, b, boff, C, ldc, mr, nr, accumulate);
    else
        micro_kernel_body(kc, a, b, boff, C, ldc, mr, nr, accumulate, 0);
}
#else
/* Other builds fuse when the target has FMA (FP_FAST_FMAF: fmaf is an instruction), e.g. NATIVE=1 on a
 * current x86 or any 64-bit ARM. Kept out of gemm_block (noinline), where gcc, short of registers for
 * the eight row pointers of the A panel, would stage them through the stack. */
#ifdef __GNUC__
__attribute__((noinline))
#endif
static void micro_kernel(MICRO_KERNEL_ARGS)
{
#ifdef FP_FAST_FMAF
    micro_kernel_body(kc, a, b, boff, C, ldc, mr, nr, accumulate, 1);
#else
    micro_kernel_body(kc, a, b, boff, C, ldc, mr, nr, accumulate, 0);
#endif
}
#endif

/* One GEMM call, or the part of it one thread computes: rows m0..m1-1 and columns n0..n1-1 of C,
 * with its own packing buffers (MC x KC and KC x NC floats, or less). */
typedef struct {
    int         M, N, K, accumulate;
    const Mat  *A, *B;
    float      *C;
    long        ldc;
    int         m0, m1, n0, n1;
    float      *pa, *pb;
} Gemm;

/* Depth of the K slices: at most KC, and all about equal (K = 576 is 3 x 192, not 256 + 256 + 64), so
 * no slice is too shallow to amortise its C-tile update. Depends on K only. */
static int kc_step(int K)
{
    int slices = (K + KC - 1) / KC;
    return (K + slices - 1) / slices;
}

/* Whether B's column panels can be read in place, unpacked: an im2col view with stride 1 and no padding
 * (conv2d pads a copy) whose output rows hold whole panels. Row k of a panel is then NR consecutive
 * pixels of the image, at an offset that depends on k alone (its channel and tap). */
static int im2col_in_place(const Mat *B)
{
    return B->kind == MAT_IM2COL && B->stride == 1 && B->pad == 0 && B->wout % NR == 0;
}

/* Row offsets of the panels of rows k0..k0+kc-1: k*NR in a packed panel; in place, the offset of tap
 * (ci, ky, kx) of row k from the panel's first pixel. */
static void panel_offsets(int *boff, const Mat *B, int k0, int kc, int in_place)
{
    int k;
    for (k = 0; k < kc; k++) {
        int r = k0 + k;
        boff[k] = in_place ? (r / (B->kh * B->kw) * B->h + r / B->kw % B->kh * B->dil) * B->w + r % B->kw * B->dil
                           : k * NR;
    }
}

/* Computes the block [m0, m1) x [n0, n1) of C on the calling thread. Every C element sums k in
 * ascending KC slices whatever the block, so how C is split between threads never changes a bit.
 * When the rows fit one MC block (every GEMM of the model: a few hundred output channels or tokens at
 * most), A's panels are packed first and each B panel just before the row panels use it, so it goes
 * from the packing straight into L1 (or, for a 3x3 convolution whose rows hold whole panels, is read
 * in place from the image: no packing at all); otherwise the whole KC x NC block of B is packed first
 * and reused by every MC block of rows. */
static void gemm_block(const Gemm *g)
{
    int jc, pc, ic, ir, jr, ks = kc_step(g->K), one_mc = g->m1 - g->m0 <= MC;
    int in_place = one_mc && im2col_in_place(g->B), boff[KC];
    for (jc = g->n0; jc < g->n1; jc += NC) {
        int nc = imin(NC, g->n1 - jc), np = (nc + NR - 1) / NR;
        for (pc = 0; pc < g->K; pc += ks) {
            int kc = imin(ks, g->K - pc), beta = g->accumulate || pc > 0;
            panel_offsets(boff, g->B, pc, kc, in_place);
            for (jr = 0; !one_mc && jr < np; jr++)
                pack_b_panel(g->pb + (size_t)jr * kc * NR, g->B, pc, kc, jc + jr * NR, imin(NR, nc - jr * NR));
            for (ic = g->m0; ic < g->m1; ic += MC) {
                int mc = imin(MC, g->m1 - ic), mp = (mc + MR - 1) / MR;
                for (ir = 0; ir < mp; ir++)
                    pack_a_panel(g->pa + (size_t)ir * kc * MR, g->A, ic + ir * MR, imin(MR, mc - ir * MR), pc, kc);
                for (jr = 0; jr < np; jr++) {           /* a B micro-panel stays in L1 across ir */
                    int c0 = jc + jr * NR;
                    const float *b = g->pb + (one_mc ? 0 : (size_t)jr * kc * NR);
                    if (in_place) b = (const float *)g->B->p + (long)(c0 / g->B->wout) * g->B->w + c0 % g->B->wout;
                    else if (one_mc) pack_b_panel(g->pb, g->B, pc, kc, c0, imin(NR, nc - jr * NR));
                    for (ir = 0; ir < mp; ir++)
                        micro_kernel(kc, g->pa + (size_t)ir * kc * MR, b, boff,
                                     g->C + (long)(ic + ir * MR) * g->ldc + c0, g->ldc,
                                     imin(MR, mc - ir * MR), imin(NR, nc - jr * NR), beta);
                }
            }
        }
    }
}

/* Packing buffers for gemm_block on an m x n x K block: one allocation holding *pa and *pb. */
static float *gemm_buffers(int m, int n, int K, float **pa, float **pb)
{
    size_t kc = (size_t)kc_step(K);
    size_t na = (size_t)(imin(MC, m) + MR - 1) / MR * MR * kc;
    size_t nb = (m <= MC ? NR : (size_t)(imin(NC, n) + NR - 1) / NR * NR) * kc;     /* one panel, or a block */
    float *buf = xmalloc((na + nb) * sizeof(float));
    *pa = buf;
    *pb = buf + na;
    return buf;
}

/* Per unit of K, the cost of one thread's block of m rows and n columns, in cycles of a core: the
 * multiply-adds (32 a cycle) and the packing of its m rows of A and n columns of B (about one element
 * a cycle). Used only to choose how threads split a GEMM, which never changes the result. */
static double block_cost(int m, int n) { return (double)m * n / 32.0 + m + n; }

/* Thread tid of nth computes a contiguous share of the row panels or of the column panels, whichever
 * leaves the busiest thread less to do (each thread packs all it needs itself, so the operand that is
 * not split is packed by every thread). No barrier inside, which matters on a loaded machine. */
static void gemm_share(const Gemm *g, int tid, int nth)
{
    Gemm s = *g;
    int mp = (g->M + MR - 1) / MR, np = (g->N + NR - 1) / NR;
    int per_m = imin((mp + nth - 1) / nth * MR, g->M), per_n = imin((np + nth - 1) / nth * NR, g->N);
    float *buf;
    if (block_cost(per_m, g->N) < block_cost(g->M, per_n)) {
        s.m0 = imin(g->M, (int)((long)mp * tid / nth) * MR);
        s.m1 = imin(g->M, (int)((long)mp * (tid + 1) / nth) * MR);
    } else {
        s.n0 = imin(g->N, (int)((long)np * tid / nth) * NR);
        s.n1 = imin(g->N, (int)((long)np * (tid + 1) / nth) * NR);
    }
    if (s.m0 >= s.m1 || s.n0 >= s.n1) return;
    buf = gemm_buffers(s.m1 - s.m0, s.n1 - s.n0, g->K, &s.pa, &s.pb);
    gemm_block(&s);
    free(buf);
}

void gemm(int M, int N, int K, const Mat *A, const Mat *B, float *C, long ldc, int accumulate)
{
    Gemm g;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate) for (int i = 0; i < M; i++) memset(C + (long)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    memset(&g, 0, sizeof g);
    g.M = M; g.N = N; g.K = K; g.A = A; g.B = B; g.C = C; g.ldc = ldc; g.accumulate = accumulate;
    g.m1 = M; g.n1 = N;
#ifdef _OPENMP
OMP(omp parallel if ((double)M * N * K >= PAR_WORK))
    gemm_share(&g, omp_get_thread_num(), omp_get_num_threads());
#else
    gemm_share(&g, 0, 1);
#endif
}

/* ------------------------------------------------------------------ layers ------------------------ */

void linear(float *y, const float *x, int n, int in, const Tensor *W, const Tensor *b)
{
    int out = (int)W->shape[0], i, j;
    Mat A = mat_f32(x, in, 1), B = mat_tensor(W, 1, in);       /* B = Wᵀ: element (k, j) = W[j, k] */
    gemm(n, out, in, &A, &B, y, out, 0);
    if (b) {
        float *bias = xmalloc((size_t)out * sizeof(float));
        tensor_to_f32(b, bias, 0, out);
OMP(omp parallel for schedule(static) private(j) if ((double)n * out >= PAR_WORK))
        for (i = 0; i < n; i++)
            for (j = 0; j < out; j++) y[(long)i * out + j] += bias[j];
        free(bias);
    }
}

int conv_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* conv2d as one implicit GEMM: y[cout, pixels] = W[cout, cin*kh*kw] · im2col(x). A padded input is
 * first copied once with its zero border (cin x (h+2p) x (w+2p), cheap next to the GEMM), so that
 * packing the im2col panels is plain copying, without bounds checks. */
void conv2d(float *y, const float *x, int cin, int h, int w, const Tensor *W, const Tensor *b,
            int stride, int pad)
{
    int cout = (int)W->shape[0], kh = (int)W->shape[2], kw = (int)W->shape[3], co;
    int hout = conv_out_size(h, kh, stride, pad), wout = conv_out_size(w, kw, stride, pad);
    long hw = (long)hout * wout;
    float *padded = NULL;
    Mat A = mat_tensor(W, (long)cin * kh * kw, 1), B;
    if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
        B = mat_f32(x, hw, 1);                                 /* 1x1 conv: a plain GEMM over pixels */
    } else {
        memset(&B, 0, sizeof B);
        B.kind = MAT_IM2COL; B.dtype = DT_F32; B.p = x;
        B.cin = cin; B.h = h; B.w = w; B.kh = kh; B.kw = kw; B.stride = stride; B.pad = pad; B.dil = 1;
        B.hout = hout; B.wout = wout;
        if (pad > 0) {
            int hp = h + 2 * pad, wp = w + 2 * pad, c, i;
            padded = xcalloc((size_t)cin * hp * wp, sizeof(float));
            for (c = 0; c < cin; c++)
                for (i = 0; i < h; i++)
                    memcpy(padded + ((long)c * hp + i + pad) * wp + pad, x + ((long)c * h + i) * w,
                           (size_t)w * sizeof(float));
            B.p = padded; B.h = hp; B.w = wp; B.pad = 0;
        }
    }
    gemm(cout, (int)hw, cin * kh * kw, &A, &B, y, hw, 0);
    free(padded);
    if (b) {
OMP(omp parallel for schedule(static) if ((double)cout * hw >= PAR_WORK))
        for (co = 0; co < cout; co++) {
            float bc = tensor_at(b, co);
            float *yc = y + (long)co * hw;
            for (long p = 0; p < hw; p++) yc[p] += bc;
        }
    }
}

/* ------------------------------------------------------------------ attention --------------------- */
/* Per head h and block of at most ATTN_BQ queries (one thread each): for each block of at most ATTN_BK
 * keys, S = Q Kᵀ by the GEMM, logits = scale·S + bias, then the online softmax of Milakov & Gimelshein
 * (2018) as in FlashAttention (Dao et al. 2022): keep the running row maximum m and denominator l,
 * rescale the partial output by exp(m_old - m_new), add P V by the GEMM; divide by l at the end. Scores
 * exist for one (query block, key block) pair at a time, never for the whole Tq x Tk x heads. With
 * Tk <= ATTN_BK this is exactly softmax(logits) V. A query's result does not depend on the query
 * blocking or on the thread count. */

#define ATTN_BQ 96      /* queries per work item: a multiple of MR */
#define ATTN_BK 1024    /* keys per online-softmax step */

typedef struct {
    float       *out;
    const float *q, *k, *v;
    long         ldo, ldq, ldk, ldv;
    int          Tq, Tk, heads, dh;
    float        scale, bias_mult;  /* bias_mult: add_scale, times the global raw maximum if asked */
    const AttnBias *bias;
} Attn;

typedef struct {                    /* one thread's working memory */
    float *s, *o, *m, *l, *pa, *pb;
    float *mem;
} AttnScratch;

static void attn_scratch(AttnScratch *w, const Attn *a)
{
    int bk = imin(a->Tk, ATTN_BK);
    size_t ns = (size_t)ATTN_BQ * bk, no = (size_t)ATTN_BQ * a->dh, na = (size_t)ATTN_BQ * KC;
    size_t nb1 = (size_t)(bk + NR - 1) / NR * NR * kc_step(a->dh);           /* Kᵀ panels */
    size_t nb2 = (size_t)(a->dh + NR - 1) / NR * NR * kc_step(bk);           /* V panels */
    size_t nb = nb1 > nb2 ? nb1 : nb2;
    w->mem = xmalloc((ns + no + 2 * ATTN_BQ + na + nb) * sizeof(float));
    w->s = w->mem;
    w->o = w->s + ns;
    w->m = w->o + no;
    w->l = w->m + ATTN_BQ;
    w->pa = w->l + ATTN_BQ;
    w->pb = w->pa + na;
}

/* s[i*ld + j] = q_{q0+i} · k_{j0+j} over head h's dh columns, for i < nq, j < nk (serial GEMM). */
static void attn_scores(const Attn *a, AttnScratch *w, int h, int q0, int nq, int j0, int nk, long ld)
{
    Mat A = mat_f32(a->q + (long)q0 * a->ldq + (long)h * a->dh, a->ldq, 1);
    Mat B = mat_f32(a->k + (long)j0 * a->ldk + (long)h * a->dh, 1, a->ldk);
    Gemm g;
    memset(&g, 0, sizeof g);
    g.M = nq; g.N = nk; g.K = a->dh; g.A = &A; g.B = &B; g.C = w->s; g.ldc = ld;
    g.m1 = nq; g.n1 = nk; g.pa = w->pa; g.pb = w->pb;
    gemm_block(&g);
}

/* Queries q0..q0+nq-1 of head h: the output rows, on the calling thread. */
static KERNEL_VERSIONS void attention_rows(const Attn *a, AttnScratch *w, int h, int q0, int nq)
{
    const AttnBias *bias = a->bias;
    int dh = a->dh, i, j, j0;
    for (i = 0; i < nq; i++) { w->m[i] = -INFINITY; w->l[i] = 0.0f; }
    for (j0 = 0; j0 < a->Tk; j0 += ATTN_BK) {
        int nk = imin(ATTN_BK, a->Tk - j0);
        Mat P = mat_f32(w->s, nk, 1), V = mat_f32(a->v + (long)j0 * a->ldv + (long)h * dh, a->ldv, 1);
        Gemm g;
        attn_scores(a, w, h, q0, nq, j0, nk, nk);
        for (i = 0; i < nq; i++) {
            float *row = w->s + (long)i * nk, m_new, corr = 1.0f;
            int qi = q0 + i;
            for (j = 0; j < nk; j++) row[j] *= a->scale;
            if (bias && bias->add) {
                const float *b = bias->add + (long)h * bias->hs + (long)qi * bias->qs + (long)j0 * bias->ks;
                float bm = a->bias_mult;
                if (bias->ks == 1) for (j = 0; j < nk; j++) row[j] += bm * b[j];
                else               for (j = 0; j < nk; j++) row[j] += bm * b[(long)j * bias->ks];
            }
            if (bias && bias->causal)
                for (j = qi + 1 - j0 > 0 ? qi + 1 - j0 : 0; j < nk; j++) row[j] = -INFINITY;
            m_new = max_f32(row, nk);
            if (w->m[i] > m_new) m_new = w->m[i];
            if (m_new == -INFINITY) {                /* every key so far masked: weight 0 */
                for (j = 0; j < nk; j++) row[j] = 0.0f;
            } else {
                corr = vexpf(w->m[i] - m_new);       /* 0 on the first block: m = -inf */
                for (j = 0; j < nk; j++) row[j] = vexpf(row[j] - m_new);
                w->l[i] = w->l[i] * corr + sum_f32(row, nk);
                w->m[i] = m_new;
            }
            if (j0 > 0)
                for (j = 0; j < dh; j++) w->o[(long)i * dh + j] *= corr;
        }
        memset(&g, 0, sizeof g);                     /* o (+)= P V */
        g.M = nq; g.N = dh; g.K = nk; g.A = &P; g.B = &V; g.C = w->o; g.ldc = dh; g.accumulate = j0 > 0;
        g.m1 = nq; g.n1 = dh; g.pa = w->pa; g.pb = w->pb;
        gemm_block(&g);
    }
    for (i = 0; i < nq; i++) {
        float *dst = a->out + (long)(q0 + i) * a->ldo + (long)h * dh, l = w->l[i];
        for (j = 0; j < dh; j++) dst[j] = l > 0.0f ? w->o[(long)i * dh + j] / l : 0.0f;
    }
}

/* Work items: (head, query block) pairs. */
static int attn_items(const Attn *a) { return a->heads * ((a->Tq + ATTN_BQ - 1) / ATTN_BQ); }

/* Paint-with-words scales its bias by the maximum of the raw q·k over all heads, queries and keys
 * (eDiff-I §4.3): a first pass over the same blocks. A maximum does not depend on the order. */
static float raw_logit_max(const Attn *a)
{
    float m = -INFINITY;
    int nqb = (a->Tq + ATTN_BQ - 1) / ATTN_BQ, items = attn_items(a);
OMP(omp parallel if (items > 1 && 2.0 * a->Tq * a->Tk * a->heads * a->dh >= PAR_WORK) reduction(max : m))
    {
        AttnScratch w;
        int t, j0;
        attn_scratch(&w, a);
OMP(omp for schedule(static))
        for (t = 0; t < items; t++) {
            int h = t / nqb, q0 = t % nqb * ATTN_BQ, nq = imin(ATTN_BQ, a->Tq - q0);
            for (j0 = 0; j0 < a->Tk; j0 += ATTN_BK) {
                int nk = imin(ATTN_BK, a->Tk - j0), i;
                attn_scores(a, &w, h, q0, nq, j0, nk, nk);
                for (i = 0; i < nq; i++) {
                    float r = max_f32(w.s + (long)i * nk, nk);
                    if (r > m) m = r;
                }
            }
        }
        free(w.mem);
    }
    return m;
}

void attention(float *out, long ldo, const float *q, long ldq, const float *k, long ldk,
               const float *v, long ldv, int Tq, int Tk, int heads, int dh, float scale,
               const AttnBias *bias)
{
    Attn a;
    int nqb = (Tq + ATTN_BQ - 1) / ATTN_BQ, items;
    if (Tq <= 0 || heads <= 0 || dh <= 0) return;
    a.out = out; a.q = q; a.k = k; a.v = v; a.ldo = ldo; a.ldq = ldq; a.ldk = ldk; a.ldv = ldv;
    a.Tq = Tq; a.Tk = Tk; a.heads = heads; a.dh = dh; a.scale = scale; a.bias = bias; a.bias_mult = 0.0f;
    if (Tk <= 0) {                                   /* nothing to attend to */
        for (int i = 0; i < Tq; i++) memset(out + (long)i * ldo, 0, (size_t)heads * dh * sizeof(float));
        return;
    }
    if (bias && bias->add) {
        a.bias_mult = bias->add_scale;
        if (bias->add_times_max) a.bias_mult *= raw_logit_max(&a);
    }
    items = attn_items(&a);
OMP(omp parallel if (items > 1 && 2.0 * Tq * Tk * heads * dh >= PAR_WORK))
    {
        AttnScratch w;
        int t;
        attn_scratch(&w, &a);
OMP(omp for schedule(static))
        for (t = 0; t < items; t++) {
            int h = t / nqb, q0 = t % nqb * ATTN_BQ;
            attention_rows(&a, &w, h, q0, imin(ATTN_BQ, Tq - q0));
        }
        free(w.mem);
    }
}

/* ------------------------------------------------------------------ norms ------------------------- */

/* Softmax of each row: exp(x - max) / sum, in float with the fixed-order sums of sum_f32. A row whose
 * entries are all -inf (every key masked) becomes zeros. */
static KERNEL_VERSIONS void softmax_row(float *row, int cols)
{
    float m = max_f32(row, cols), sum;
    int j;
    if (m == -INFINITY) {
        for (j = 0; j < cols; j++) row[j] = 0.0f;
        return;
    }
    for (j = 0; j < cols; j++) row[j] = vexpf(row[j] - m);
    sum = sum_f32(row, cols);
    for (j = 0; j < cols; j++) row[j] /= sum;
}

void softmax_rows(float *x, int rows, int cols)
{
    int r;
OMP(omp parallel for schedule(static) if (8.0 * rows * cols >= PAR_WORK))
    for (r = 0; r < rows; r++) softmax_row(x + (long)r * cols, cols);
}

/* Sum of n floats, and sum of squared deviations from mean, in double: 16 interleaved partial sums
 * (vectorisable, fixed order), then those in order. */
static inline double sum_f64(const float *x, long n)
{
    double part[LANES] = {0}, s = 0.0;
    long i = 0;
    int j;
    for (; i + LANES <= n; i += LANES)
        for (j = 0; j < LANES; j++) part[j] += x[i + j];
    for (j = 0; i < n; i++, j++) part[j] += x[i];
    for (j = 0; j < LANES; j++) s += part[j];
    return s;
}

static inline double sq_dev_f64(const float *x, long n, double mean)
{
    double part[LANES] = {0}, s = 0.0;
    long i = 0;
    int j;
    for (; i + LANES <= n; i += LANES)
        for (j = 0; j < LANES; j++) { double d = x[i + j] - mean; part[j] += d * d; }
    for (j = 0; i < n; i++, j++) { double d = x[i] - mean; part[j] += d * d; }
    for (j = 0; j < LANES; j++) s += part[j];
    return s;
}

/* A small weight vector (a norm's gamma/beta) as float32: malloc'd, or NULL for NULL. */
static float *vector_f32(const Tensor *t, int n)
{
    float *v;
    if (!t) return NULL;
    v = xmalloc((size_t)n * sizeof(float));
    tensor_to_f32(t, v, 0, n);
    return v;
}

/* GroupNorm (Wu & He 2018), as torch.nn.GroupNorm: per group mean and biased variance over
 * (C/groups) x HW, then the per-channel affine; optionally SiLU fused (diffusers' norm -> act), so the
 * activation costs no extra pass over memory. */
/* One group of channels c0..c1-1: its statistics, then each channel's affine (and SiLU). */
static KERNEL_VERSIONS void group_norm_group(float *y, const float *x, int c0, int c1, int HW, float eps,
                                             const float *gamma, const float *beta, int fuse_silu)
{
    long n = (long)(c1 - c0) * HW, i;
    double mean = sum_f64(x + (long)c0 * HW, n) / (double)n;
    double inv = 1.0 / sqrt(sq_dev_f64(x + (long)c0 * HW, n, mean) / (double)n + eps);
    int c;
    for (c = c0; c < c1; c++) {
        float a = (float)inv * (gamma ? gamma[c] : 1.0f);
        float b = (beta ? beta[c] : 0.0f) - (float)mean * a;
        const float *xc = x + (long)c * HW;
        float *yc = y + (long)c * HW;
        if (fuse_silu) for (i = 0; i < HW; i++) yc[i] = silu_f(xc[i] * a + b);
        else           for (i = 0; i < HW; i++) yc[i] = xc[i] * a + b;
    }
}

void group_norm(float *y, const float *x, int C, int HW, int groups, float eps,
                const Tensor *gamma, const Tensor *beta, int fuse_silu)
{
    int cpg = C / groups, g;
    float *gm = vector_f32(gamma, C), *bt = vector_f32(beta, C);
OMP(omp parallel for schedule(static) if ((fuse_silu ? 8.0 : 4.0) * C * HW >= PAR_WORK))
    for (g = 0; g < groups; g++)
        group_norm_group(y, x, g * cpg, (g + 1) * cpg, HW, eps, gm, bt, fuse_silu);
    free(gm);
    free(bt);
}

/* LayerNorm (Ba et al. 2016) over the last dimension, biased variance, eps inside the root. */
void layer_norm(float *y, const float *x, int rows, int dim, float eps, const Tensor *w, const Tensor *b)
{
    int r;
    float *wv = vector_f32(w, dim), *bv = vector_f32(b, dim);
OMP(omp parallel for schedule(static) if (4.0 * rows * dim >= PAR_WORK))
    for (r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        float *yr = y + (long)r * dim;
        double mean = sum_f64(xr, dim) / dim;
        float inv = (float)(1.0 / sqrt(sq_dev_f64(xr, dim, mean) / dim + eps)), fm = (float)mean;
        int j;
        for (j = 0; j < dim; j++) yr[j] = (xr[j] - fm) * inv;
        if (wv) for (j = 0; j < dim; j++) yr[j] *= wv[j];
        if (bv) for (j = 0; j < dim; j++) yr[j] += bv[j];
    }
    free(wv);
    free(bv);
}

/* T5LayerNorm: y = w * x / sqrt(mean(x^2) + eps) — no mean subtraction, no bias. */
void rms_norm(float *y, const float *x, int rows, int dim, float eps, const Tensor *w)
{
    int r;
    float *wv = vector_f32(w, dim);
OMP(omp parallel for schedule(static) if (4.0 * rows * dim >= PAR_WORK))
    for (r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        float *yr = y + (long)r * dim;
        float inv = (float)(1.0 / sqrt(sq_dev_f64(xr, dim, 0.0) / dim + eps));
        int j;
        if (wv) for (j = 0; j < dim; j++) yr[j] = wv[j] * (xr[j] * inv);
        else    for (j = 0; j < dim; j++) yr[j] = xr[j] * inv;
    }
    free(wv);
}

/* ------------------------------------------------------------------ activations ------------------- */

int act_from_name(const char *name)
{
    static const struct { const char *name; int act; } map[] = {
        {"relu", ACT_RELU}, {"silu", ACT_SILU}, {"swish", ACT_SILU}, {"gelu", ACT_GELU},
        {"gelu_new", ACT_GELU_TANH}, {"gelu_pytorch_tanh", ACT_GELU_TANH}, {"gelu_tanh", ACT_GELU_TANH},
        {"quick_gelu", ACT_QUICK_GELU}, {"none", ACT_NONE}};
    size_t i;
    for (i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(name, map[i].name) == 0) return map[i].act;
    return -1;
}

static KERNEL_VERSIONS void activate_span(int act, float *x, long n)
{
    long i;
    switch (act) {
    case ACT_RELU:       for (i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case ACT_SILU:       for (i = 0; i < n; i++) x[i] = silu_f(x[i]); break;
    case ACT_GELU:       for (i = 0; i < n; i++) x[i] = gelu_f(x[i]); break;
    case ACT_GELU_TANH:  for (i = 0; i < n; i++) x[i] = gelu_tanh_f(x[i]); break;
    case ACT_QUICK_GELU: for (i = 0; i < n; i++) x[i] = quick_gelu_f(x[i]); break;
    default:             break;
    }
}

#define ACT_SPAN 8192   /* elements per parallel work item */

void activate(int act, float *x, size_t n)
{
    long s, spans = ((long)n + ACT_SPAN - 1) / ACT_SPAN;
OMP(omp parallel for schedule(static) if (spans > 1 && (act == ACT_RELU ? 1.0 : 8.0) * (double)n >= PAR_WORK))
    for (s = 0; s < spans; s++)
        activate_span(act, x + s * ACT_SPAN, s == spans - 1 ? (long)n - s * ACT_SPAN : ACT_SPAN);
}

/* ------------------------------------------------------------------ resampling -------------------- */

/* Source index of output index o, as PyTorch's nearest mode computes it (float scale in/out, floor). */
static int nearest_tap(int o, int in, int out)
{
    int s = (int)floorf((float)o * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

void upsample_nearest(float *y, const float *x, int C, int H, int W, int H2, int W2)
{
    int c, *tap = xmalloc((size_t)W2 * sizeof(int));          /* the source column of each output column */
    for (c = 0; c < W2; c++) tap[c] = nearest_tap(c, W, W2);
OMP(omp parallel for schedule(static) if ((double)C * H2 * W2 >= PAR_WORK))
    for (c = 0; c < C; c++)
        for (int oy = 0; oy < H2; oy++) {
            const float *xr = x + ((long)c * H + nearest_tap(oy, H, H2)) * W;
            float *yr = y + ((long)c * H2 + oy) * W2;
            for (int ox = 0; ox < W2; ox++) yr[ox] = xr[tap[ox]];
        }
    free(tap);
}

/* Source coordinate of output index o, as torch.nn.functional.interpolate computes it. */
static void bilinear_tap(int o, int in, int out, int align_corners, int *i0, int *i1, float *frac)
{
    double s;
    if (align_corners) s = out > 1 ? (double)o * (in - 1) / (out - 1) : 0.0;
    else {
        s = ((double)o + 0.5) * in / out - 0.5;
        if (s < 0.0) s = 0.0;
    }
    *i0 = (int)s;
    if (*i0 > in - 1) *i0 = in - 1;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *frac = (float)(s - *i0);
}

void resize_bilinear(float *y, const float *x, int C, int H, int W, int H2, int W2, int align_corners)
{
    int c;
OMP(omp parallel for schedule(static) if (4.0 * C * H2 * W2 >= PAR_WORK))
    for (c = 0; c < C; c++) {
        const float *xc = x + (long)c * H * W;
        for (int oy = 0; oy < H2; oy++) {
            int y0, y1, x0, x1;
            float fy, fx;
            bilinear_tap(oy, H, H2, align_corners, &y0, &y1, &fy);
            for (int ox = 0; ox < W2; ox++) {
                bilinear_tap(ox, W, W2, align_corners, &x0, &x1, &fx);
                float top = xc[(long)y0 * W + x0] * (1 - fx) + xc[(long)y0 * W + x1] * fx;
                float bot = xc[(long)y1 * W + x0] * (1 - fx) + xc[(long)y1 * W + x1] * fx;
                y[((long)c * H2 + oy) * W2 + ox] = top * (1 - fy) + bot * fy;
            }
        }
    }
}

void avg_pool2d(float *y, const float *x, int C, int H, int W, int k, int stride)
{
    int Ho = (H - k) / stride + 1, Wo = (W - k) / stride + 1, c;
OMP(omp parallel for schedule(static) if ((double)C * Ho * Wo * k * k >= PAR_WORK))
    for (c = 0; c < C; c++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                float s = 0.0f;
                for (int dy = 0; dy < k; dy++)
                    for (int dx = 0; dx < k; dx++)
                        s += x[((long)c * H + oy * stride + dy) * W + ox * stride + dx];
                y[((long)c * Ho + oy) * Wo + ox] = s / (float)(k * k);
            }
}

void embedding(float *y, const Tensor *table, const int32_t *ids, int n)
{
    int dim = (int)table->shape[1], i;
    for (i = 0; i < n; i++) tensor_to_f32(table, y + (long)i * dim, (int64_t)ids[i] * dim, dim);
}

void concat_channels(float *y, const float *a, int Ca, const float *b, int Cb, int HW)
{
    memmove(y, a, (size_t)Ca * HW * sizeof(float));
    memmove(y + (long)Ca * HW, b, (size_t)Cb * HW * sizeof(float));
}

void vec_add(float *y, const float *x, size_t n)
{
    long i, nn = (long)n;
OMP(omp parallel for schedule(static) if (nn >= PAR_WORK))
    for (i = 0; i < nn; i++) y[i] += x[i];
}

void vec_exp(float *x, size_t n)
{
    long i, nn = (long)n;
OMP(omp parallel for schedule(static) if (8.0 * nn >= PAR_WORK))
    for (i = 0; i < nn; i++) x[i] = vexpf(x[i]);
}

void timestep_embedding(float *out, float t, int dim, int flip_sin_to_cos, float freq_shift)
{
    const float neg_ln_period = (float)-log(10000.0);
    int half = dim / 2, k;
    for (k = 0; k < half; k++) {                          /* float32 throughout, as diffusers computes it */
        float arg = t * expf(neg_ln_period * (float)k / ((float)half - freq_shift));
        out[flip_sin_to_cos ? half + k : k] = sinf(arg);
        out[flip_sin_to_cos ? k : half + k] = cosf(arg);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}

/* ------------------------------------------------------------------ .npy files -------------------- */
/* numpy format 1.0: "\x93NUMPY", version 1.0, a little-endian u16 header length, then a Python dict
 * literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces to a multiple
 * of 64 bytes and ending in a newline, then the data. */

int npy_write_dtype(const char *path, const void *data, int dtype, int rank, const int64_t *shape,
                    char err[EDIFF_ERR])
{
    char header[512];
    const char *descr = dtype == DT_F32 ? "<f4" : dtype == DT_F64 ? "<f8" : dtype == DT_I32 ? "<i4" : NULL;
    int n, d, pad;
    int64_t numel = 1;
    FILE *f;
    if (!descr || rank < 0 || rank > MAX_RANK) {
        snprintf(err, EDIFF_ERR, "%s: cannot write a %s array of rank %d as .npy", path, dtype_name(dtype), rank);
        return -1;
    }
    n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (d = 0; d < rank; d++) {
        n += snprintf(header + n, sizeof header - (size_t)n, "%lld,%s", (long long)shape[d], d + 1 < rank ? " " : "");
        numel *= shape[d];
    }
    n += snprintf(header + n, sizeof header - (size_t)n, "), }");
    pad = (int)((64 - (10 + n + 1) % 64) % 64);
    memset(header + n, ' ', (size_t)pad);
    n += pad;
    header[n++] = '\n';
    if (!(f = fopen(path, "wb"))) {
        snprintf(err, EDIFF_ERR, "%s: cannot write", path);
        return -1;
    }
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(n & 255, f);
    fputc(n >> 8, f);
    fwrite(header, 1, (size_t)n, f);
    fwrite(data, dtype_size(dtype), (size_t)numel, f);   /* x86, ARM: little-endian */
    if (fclose(f) != 0) {
        snprintf(err, EDIFF_ERR, "%s: write error", path);
        return -1;
    }
    return 0;
}

int npy_write(const char *path, const float *data, int rank, const int64_t *shape, char err[EDIFF_ERR])
{
    return npy_write_dtype(path, data, DT_F32, rank, shape, err);
}

int npy_read(const char *path, float **data, int *rank, int64_t shape[MAX_RANK], int64_t max_elems,
             char err[EDIFF_ERR])
{
    unsigned char pre[10];
    char header[4096], *s;
    int hlen, f8, i4, r = 0;
    int64_t numel = 1, i;
    FILE *f = fopen(path, "rb");
    *data = NULL;
    if (!f) { snprintf(err, EDIFF_ERR, "%s: cannot open", path); return -1; }
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1) {
        fclose(f);
        snprintf(err, EDIFF_ERR, "%s: not a version-1 .npy file", path);
        return -1;
    }
    hlen = pre[8] | pre[9] << 8;
    if (hlen >= (int)sizeof header || fread(header, 1, (size_t)hlen, f) != (size_t)hlen) {
        fclose(f);
        snprintf(err, EDIFF_ERR, "%s: bad .npy header", path);
        return -1;
    }
    header[hlen] = 0;
    f8 = strstr(header, "'descr': '<f8'") != NULL;
    i4 = strstr(header, "'descr': '<i4'") != NULL;
    if ((!f8 && !i4 && !strstr(header, "'descr': '<f4'")) || !strstr(header, "'fortran_order': False") ||
        !(s = strstr(header, "'shape': ("))) {
        fclose(f);
        snprintf(err, EDIFF_ERR, "%s: only C-order float32/float64/int32 .npy arrays are read", path);
        return -1;
    }
    for (s += 10; *s && *s != ')';) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0 || r == MAX_RANK || (v && numel > max_elems / v)) {
            fclose(f);
            snprintf(err, EDIFF_ERR, "%s: bad or too large shape", path);
            return -1;
        }
        shape[r++] = v;
        numel *= v;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    *rank = r;
    *data = xmalloc((size_t)numel * sizeof(float) + 1);
    if (f8) {
        double v;
        for (i = 0; i < numel && fread(&v, sizeof v, 1, f) == 1; i++) (*data)[i] = (float)v;
    } else if (i4) {
        int32_t v;
        for (i = 0; i < numel && fread(&v, sizeof v, 1, f) == 1; i++) (*data)[i] = (float)v;
    } else {
        i = (int64_t)fread(*data, sizeof(float), (size_t)numel, f);
    }
    fclose(f);
    if (i != numel) {
        free(*data);
        *data = NULL;
        snprintf(err, EDIFF_ERR, "%s: file holds fewer than the %lld elements of its shape", path, (long long)numel);
        return -1;
    }
    return 0;
}
