/* tensor.c — the op library of ediff: one GEMM, one attention, one of each norm, activations,
 * resampling. float32 compute; weights may be f16/bf16 and are converted while packing.
 * OpenMP is optional; every result is independent of the thread count (each output element is
 * produced by one thread, summing in a fixed order). */
#include "ediff.h"

#include <float.h>
#include <math.h>
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

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    if (exp == 31) return bits_to_f32(sign | 0x7F800000u | (man << 13));       /* inf / NaN */
    if (exp == 0) {                                                              /* zero / subnormal */
        float f = (float)man * (1.0f / 16777216.0f);                             /* man * 2^-24 */
        return sign ? -f : f;
    }
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

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

/* n elements p[off], p[off+stride], ... of a float-typed buffer as float32. */
static void load_f32(float *dst, const void *p, int dtype, long off, long stride, long n)
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
        for (i = 0; i < n; i++) dst[i] = f16_to_f32(s[i * stride]);
        break;
    }
    case DT_BF16: {
        const uint16_t *s = (const uint16_t *)p + off;
        for (i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i * stride]);
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

/* ------------------------------------------------------------------ memory ------------------------ */

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
    a->base = malloc(bytes + ALIGN);
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

/* ------------------------------------------------------------------ GEMM -------------------------- */
/* Goto/BLIS structure: for each KC-deep slice of K, pack B (KC x N) into NR-wide column panels and A
 * (M x KC) into MR-tall row panels, then run the MR x NR micro-kernel over every (row panel, column
 * panel) pair. Panels are zero-padded, so edge tiles cost the same as full ones. */

#define MR 6
#define NR 16
#define KC 256

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

/* Rows r0..r0+nr-1, columns k0..k0+kc-1 of A into a panel: dst[k*MR + i]. */
static void pack_a_panel(float *dst, const Mat *A, int r0, int nr, int k0, int kc)
{
    int i, k;
    if (A->cs == 1) {
        float row[KC];
        for (i = 0; i < nr; i++) {
            load_f32(row, A->p, A->dtype, (long)(r0 + i) * A->rs + k0, 1, kc);
            for (k = 0; k < kc; k++) dst[k * MR + i] = row[k];
        }
    } else {
        for (k = 0; k < kc; k++)
            load_f32(dst + k * MR, A->p, A->dtype, (long)r0 * A->rs + (long)(k0 + k) * A->cs, A->rs, nr);
    }
    for (i = nr; i < MR; i++)
        for (k = 0; k < kc; k++) dst[k * MR + i] = 0.0f;
}

/* Rows k0..k0+kc-1, columns c0..c0+nc-1 of B into a panel: dst[k*NR + j]. */
static void pack_b_panel(float *dst, const Mat *B, int k0, int kc, int c0, int nc)
{
    int j, k;
    if (B->kind == MAT_IM2COL) {
        for (k = 0; k < kc; k++) {
            int r = k0 + k, kx = r % B->kw, ky = (r / B->kw) % B->kh, ci = r / (B->kw * B->kh);
            const float *img = (const float *)B->p + (long)ci * B->h * B->w;
            float *d = dst + k * NR;
            for (j = 0; j < nc; j++) {
                int c = c0 + j, oy = c / B->wout, ox = c % B->wout;
                int iy = oy * B->stride - B->pad + ky * B->dil, ix = ox * B->stride - B->pad + kx * B->dil;
                d[j] = (iy >= 0 && iy < B->h && ix >= 0 && ix < B->w) ? img[(long)iy * B->w + ix] : 0.0f;
            }
            for (; j < NR; j++) d[j] = 0.0f;
        }
        return;
    }
    if (B->cs == 1 || B->rs != 1) {
        for (k = 0; k < kc; k++) {
            load_f32(dst + k * NR, B->p, B->dtype, (long)(k0 + k) * B->rs + (long)c0 * B->cs, B->cs, nc);
            for (j = nc; j < NR; j++) dst[k * NR + j] = 0.0f;
        }
    } else {                                    /* column-contiguous (B = Wᵀ of a row-major W) */
        float col[KC];
        for (j = 0; j < nc; j++) {
            load_f32(col, B->p, B->dtype, (long)k0 + (long)(c0 + j) * B->cs, 1, kc);
            for (k = 0; k < kc; k++) dst[k * NR + j] = col[k];
        }
        for (k = 0; k < kc; k++)
            for (j = nc; j < NR; j++) dst[k * NR + j] = 0.0f;
    }
}

/* acc[MR][NR] = sum_k a[k*MR + i] * b[k*NR + j]; then C tile (+)= acc. */
static void micro_kernel(int kc, const float *a, const float *b, float *C, long ldc,
                         int mr, int nr, int accumulate)
{
    float acc[MR][NR];
    int i, j, k;
    for (i = 0; i < MR; i++)
        for (j = 0; j < NR; j++) acc[i][j] = 0.0f;
    for (k = 0; k < kc; k++) {
        const float *ak = a + k * MR, *bk = b + k * NR;
        for (i = 0; i < MR; i++) {
            float ai = ak[i];
            for (j = 0; j < NR; j++) acc[i][j] += ai * bk[j];
        }
    }
    for (i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        if (accumulate) for (j = 0; j < nr; j++) c[j] += acc[i][j];
        else            for (j = 0; j < nr; j++) c[j] = acc[i][j];
    }
}

void gemm(int M, int N, int K, const Mat *A, const Mat *B, float *C, long ldc, int accumulate)
{
    int mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR, k0;
    float *pa, *pb;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate) for (int i = 0; i < M; i++) memset(C + (long)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    pa = xmalloc((size_t)mp * MR * KC * sizeof(float));
    pb = xmalloc((size_t)np * NR * KC * sizeof(float));
    for (k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC, t;
        int acc = accumulate || k0 > 0;
OMP(omp parallel)
        {
OMP(omp for schedule(static) nowait)
            for (t = 0; t < mp; t++)
                pack_a_panel(pa + (size_t)t * MR * KC, A, t * MR, M - t * MR < MR ? M - t * MR : MR, k0, kc);
OMP(omp for schedule(static))
            for (t = 0; t < np; t++)
                pack_b_panel(pb + (size_t)t * NR * KC, B, k0, kc, t * NR, N - t * NR < NR ? N - t * NR : NR);
OMP(omp for schedule(static))
            for (t = 0; t < mp * np; t++) {
                int ip = t % mp, jp = t / mp;
                int mr = M - ip * MR < MR ? M - ip * MR : MR, nr = N - jp * NR < NR ? N - jp * NR : NR;
                micro_kernel(kc, pa + (size_t)ip * MR * KC, pb + (size_t)jp * NR * KC,
                             C + (long)ip * MR * ldc + (long)jp * NR, ldc, mr, nr, acc);
            }
        }
    }
    free(pa);
    free(pb);
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
OMP(omp parallel for schedule(static) private(j))
        for (i = 0; i < n; i++)
            for (j = 0; j < out; j++) y[(long)i * out + j] += bias[j];
        free(bias);
    }
}

int conv_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

void conv2d(float *y, const float *x, int cin, int h, int w, const Tensor *W, const Tensor *b,
            int stride, int pad)
{
    int cout = (int)W->shape[0], kh = (int)W->shape[2], kw = (int)W->shape[3], co;
    int hout = conv_out_size(h, kh, stride, pad), wout = conv_out_size(w, kw, stride, pad);
    long hw = (long)hout * wout;
    Mat A = mat_tensor(W, (long)cin * kh * kw, 1), B;
    if (kh == 1 && kw == 1 && stride == 1 && pad == 0) {
        B = mat_f32(x, hw, 1);                                 /* 1x1 conv: a plain GEMM over pixels */
    } else {
        memset(&B, 0, sizeof B);
        B.kind = MAT_IM2COL; B.dtype = DT_F32; B.p = x;
        B.cin = cin; B.h = h; B.w = w; B.kh = kh; B.kw = kw; B.stride = stride; B.pad = pad; B.dil = 1;
        B.hout = hout; B.wout = wout;
    }
    gemm(cout, (int)hw, cin * kh * kw, &A, &B, y, hw, 0);
    if (b) {
OMP(omp parallel for schedule(static))
        for (co = 0; co < cout; co++) {
            float bc = tensor_at(b, co);
            float *yc = y + (long)co * hw;
            for (long p = 0; p < hw; p++) yc[p] += bc;
        }
    }
}

/* ------------------------------------------------------------------ attention --------------------- */
/* Per head and per block of queries: S = scale·Q Kᵀ (GEMM), S += bias, row softmax, O = P V (GEMM). */

#define ATTN_QBLOCK 256

static float raw_logit_max(const float *q, long ldq, const float *k, long ldk, int Tq, int Tk,
                           int heads, int dh)
{
    float m = -INFINITY;
    int h;
    for (h = 0; h < heads; h++) {
        float *s = xmalloc((size_t)Tq * Tk * sizeof(float));
        Mat A = mat_f32(q + h * dh, ldq, 1), B = mat_f32(k + h * dh, 1, ldk);
        gemm(Tq, Tk, dh, &A, &B, s, Tk, 0);
        for (long i = 0; i < (long)Tq * Tk; i++) if (s[i] > m) m = s[i];
        free(s);
    }
    return m;
}

void attention(float *out, long ldo, const float *q, long ldq, const float *k, long ldk,
               const float *v, long ldv, int Tq, int Tk, int heads, int dh, float scale,
               const AttnBias *bias)
{
    float bias_mult = 0.0f;
    float *s = xmalloc((size_t)ATTN_QBLOCK * Tk * sizeof(float));
    int h, i0;
    if (bias && bias->add) {
        bias_mult = bias->add_scale;
        if (bias->add_times_max) bias_mult *= raw_logit_max(q, ldq, k, ldk, Tq, Tk, heads, dh);
    }
    for (h = 0; h < heads; h++) {
        for (i0 = 0; i0 < Tq; i0 += ATTN_QBLOCK) {
            int nq = Tq - i0 < ATTN_QBLOCK ? Tq - i0 : ATTN_QBLOCK, i;
            Mat A = mat_f32(q + (long)i0 * ldq + h * dh, ldq, 1), B = mat_f32(k + h * dh, 1, ldk);
            Mat P, V;
            gemm(nq, Tk, dh, &A, &B, s, Tk, 0);
OMP(omp parallel for schedule(static))
            for (i = 0; i < nq; i++) {
                float *row = s + (long)i * Tk;
                int qi = i0 + i, j;
                for (j = 0; j < Tk; j++) row[j] *= scale;
                if (bias && bias->add) {
                    const float *b = bias->add + h * bias->hs + (long)qi * bias->qs;
                    for (j = 0; j < Tk; j++) row[j] += bias_mult * b[j * bias->ks];
                }
                if (bias && bias->causal)
                    for (j = qi + 1; j < Tk; j++) row[j] = -INFINITY;
            }
            softmax_rows(s, nq, Tk);
            P = mat_f32(s, Tk, 1);
            V = mat_f32(v + h * dh, ldv, 1);
            gemm(nq, dh, Tk, &P, &V, out + (long)i0 * ldo + h * dh, ldo, 0);
        }
    }
    free(s);
}

/* ------------------------------------------------------------------ norms ------------------------- */

void softmax_rows(float *x, int rows, int cols)
{
    int r;
OMP(omp parallel for schedule(static))
    for (r = 0; r < rows; r++) {
        float *row = x + (long)r * cols, m = -INFINITY;
        double sum = 0.0;
        int j;
        for (j = 0; j < cols; j++) if (row[j] > m) m = row[j];
        if (m == -INFINITY) {                 /* every key masked: attend to nothing */
            for (j = 0; j < cols; j++) row[j] = 0.0f;
            continue;
        }
        for (j = 0; j < cols; j++) { row[j] = expf(row[j] - m); sum += row[j]; }
        for (j = 0; j < cols; j++) row[j] = (float)(row[j] / sum);
    }
}

/* GroupNorm (Wu & He 2018), as torch.nn.GroupNorm: per group mean and biased variance over
 * (C/groups) x HW, then the per-channel affine; optionally SiLU fused (diffusers' norm -> act). */
void group_norm(float *y, const float *x, int C, int HW, int groups, float eps,
                const Tensor *gamma, const Tensor *beta, int fuse_silu)
{
    int cpg = C / groups, g;
OMP(omp parallel for schedule(static))
    for (g = 0; g < groups; g++) {
        const float *xg = x + (long)g * cpg * HW;
        long n = (long)cpg * HW, i;
        double mean = 0.0, var = 0.0, inv;
        int c;
        for (i = 0; i < n; i++) mean += xg[i];
        mean /= (double)n;
        for (i = 0; i < n; i++) { double d = xg[i] - mean; var += d * d; }
        var /= (double)n;
        inv = 1.0 / sqrt(var + eps);
        for (c = g * cpg; c < (g + 1) * cpg; c++) {
            float a = (float)inv * (gamma ? tensor_at(gamma, c) : 1.0f);
            float b = (beta ? tensor_at(beta, c) : 0.0f) - (float)mean * a;
            const float *xc = x + (long)c * HW;
            float *yc = y + (long)c * HW;
            for (i = 0; i < HW; i++) {
                float t = xc[i] * a + b;
                yc[i] = fuse_silu ? t / (1.0f + expf(-t)) : t;
            }
        }
    }
}

/* LayerNorm (Ba et al. 2016) over the last dimension, biased variance, eps inside the root. */
void layer_norm(float *y, const float *x, int rows, int dim, float eps, const Tensor *w, const Tensor *b)
{
    int r;
OMP(omp parallel for schedule(static))
    for (r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        float *yr = y + (long)r * dim;
        double mean = 0.0, var = 0.0;
        float inv;
        int j;
        for (j = 0; j < dim; j++) mean += xr[j];
        mean /= dim;
        for (j = 0; j < dim; j++) { double d = xr[j] - mean; var += d * d; }
        inv = (float)(1.0 / sqrt(var / dim + eps));
        for (j = 0; j < dim; j++)
            yr[j] = (xr[j] - (float)mean) * inv * (w ? tensor_at(w, j) : 1.0f) + (b ? tensor_at(b, j) : 0.0f);
    }
}

/* T5LayerNorm: y = w * x / sqrt(mean(x^2) + eps) — no mean subtraction, no bias. */
void rms_norm(float *y, const float *x, int rows, int dim, float eps, const Tensor *w)
{
    int r;
OMP(omp parallel for schedule(static))
    for (r = 0; r < rows; r++) {
        const float *xr = x + (long)r * dim;
        float *yr = y + (long)r * dim;
        double ss = 0.0;
        float inv;
        int j;
        for (j = 0; j < dim; j++) ss += (double)xr[j] * xr[j];
        inv = (float)(1.0 / sqrt(ss / dim + eps));
        for (j = 0; j < dim; j++) yr[j] = (w ? tensor_at(w, j) : 1.0f) * (xr[j] * inv);
    }
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

void activate(int act, float *x, size_t n)
{
    long i, nn = (long)n;
    switch (act) {
    case ACT_RELU:
OMP(omp parallel for schedule(static))
        for (i = 0; i < nn; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case ACT_SILU:                                   /* x * sigmoid(x) */
OMP(omp parallel for schedule(static))
        for (i = 0; i < nn; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case ACT_GELU:                                   /* exact: x * Phi(x) */
OMP(omp parallel for schedule(static))
        for (i = 0; i < nn; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    case ACT_GELU_TANH:                              /* HF gelu_new / NewGELUActivation */
OMP(omp parallel for schedule(static))
        for (i = 0; i < nn; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        }
        break;
    case ACT_QUICK_GELU:                             /* CLIP: x * sigmoid(1.702 x) */
OMP(omp parallel for schedule(static))
        for (i = 0; i < nn; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    default:
        break;
    }
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
    int c;
OMP(omp parallel for schedule(static))
    for (c = 0; c < C; c++)
        for (int oy = 0; oy < H2; oy++) {
            const float *xr = x + ((long)c * H + nearest_tap(oy, H, H2)) * W;
            float *yr = y + ((long)c * H2 + oy) * W2;
            for (int ox = 0; ox < W2; ox++) yr[ox] = xr[nearest_tap(ox, W, W2)];
        }
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
OMP(omp parallel for schedule(static))
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
OMP(omp parallel for schedule(static))
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
OMP(omp parallel for schedule(static))
    for (i = 0; i < nn; i++) y[i] += x[i];
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

int npy_write(const char *path, const float *data, int rank, const int64_t *shape, char err[EDIFF_ERR])
{
    char header[512];
    int n, d, pad;
    int64_t numel = 1;
    FILE *f;
    n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
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
    fwrite(data, sizeof(float), (size_t)numel, f);       /* x86, ARM: little-endian floats */
    if (fclose(f) != 0) {
        snprintf(err, EDIFF_ERR, "%s: write error", path);
        return -1;
    }
    return 0;
}

int npy_read(const char *path, float **data, int *rank, int64_t shape[MAX_RANK], int64_t max_elems,
             char err[EDIFF_ERR])
{
    unsigned char pre[10];
    char header[4096], *s;
    int hlen, f8, r = 0;
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
    if ((!f8 && !strstr(header, "'descr': '<f4'")) || !strstr(header, "'fortran_order': False") ||
        !(s = strstr(header, "'shape': ("))) {
        fclose(f);
        snprintf(err, EDIFF_ERR, "%s: only C-order float32/float64 .npy arrays are read", path);
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
