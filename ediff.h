/* ediff.h — the one header of ediff, a C99 reference implementation of eDiff-I.
 *
 * Sections follow the files that implement them:
 *   tensor.c     dtypes, the weight Tensor, the activation Arena, the op library (one GEMM, one
 *                attention, one of each norm, activations, resampling)
 *   blob.c       the weight blob (docs/blob.md): mmap, validation, lookup, the component Loader
 *   (more sections are added by the files that follow: tokenizer.c, encoders, UNet, sampler, PNG)
 *
 * Conventions: activations are float32, row-major, images channels-first [C, H, W]; weights are
 * read-only Tensors that point into the mapped blob and may be f32, f16 or bf16 (converted inside the
 * GEMM's packing, never copied whole). Functions that can fail on bad input return 0 on success and
 * -1 on failure, after writing one line into an `err` buffer of EDIFF_ERR bytes. No globals.
 */
#ifndef EDIFF_H
#define EDIFF_H

#include <stddef.h>
#include <stdint.h>

#define EDIFF_VERSION "0.1.0"
#define EDIFF_ERR 320            /* size of every error-message buffer */

/* ================================================================ tensor.c ===================== */

/* Element types of blob tensors. Activations are always float32. */
enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2, DT_F64 = 3, DT_I32 = 4, DT_U8 = 5, DT_COUNT };
size_t      dtype_size(int dtype);           /* 0 for an unknown dtype */
const char *dtype_name(int dtype);           /* "f32", ... or "?" */
float       f16_to_f32(uint16_t h);          /* IEEE binary16, subnormals/inf/NaN exact */
uint16_t    f32_to_f16(float f);             /* round to nearest even */
float       bf16_to_f32(uint16_t b);         /* exact: bits << 16 */

#define MAX_RANK 8

/* A read-only tensor inside the blob (a weight, or reference data in the tests). */
typedef struct {
    const char *name;                        /* NUL-terminated, inside the blob */
    int         dtype;
    int         rank;
    int64_t     shape[MAX_RANK];
    int64_t     numel;
    const void *data;                        /* 64-byte aligned, little-endian */
} Tensor;

float tensor_at(const Tensor *t, int64_t i); /* element i as float (any float dtype, i32, u8) */
void  tensor_to_f32(const Tensor *t, float *dst, int64_t start, int64_t n); /* elements [start, start+n) */

/* Activation memory: one bump allocator per run, sized once; mark/reset frees everything allocated
 * after the mark. Allocations are 64-byte aligned. Out of memory is reported (arena_alloc returns
 * NULL only if the arena was given a size it cannot honour; see arena_init). */
typedef struct {
    unsigned char *base;
    size_t         cap, used, peak;
} Arena;
int    arena_init(Arena *a, size_t bytes, char err[EDIFF_ERR]);
void   arena_free(Arena *a);
float *arena_alloc(Arena *a, size_t nfloats);   /* aborts with a clear message if the arena is full */
size_t arena_mark(const Arena *a);
void   arena_reset(Arena *a, size_t mark);

void *xmalloc(size_t bytes);                     /* malloc or exit(1) with "ediff: out of memory" */
void *xcalloc(size_t n, size_t size);

/* Threads: the op library uses OpenMP when compiled with it (OMP(...) is "#pragma omp ..." then, and
 * nothing otherwise, so builds without OpenMP stay warning-free). Results never depend on the count. */
#ifdef _OPENMP
#define OMP(directive) _Pragma(#directive)
#else
#define OMP(directive)
#endif
void set_threads(int n);                         /* n <= 0: leave the OpenMP default */
int  get_threads(void);

/* --- The one GEMM: C[M,N] (+)= A[M,K] · B[K,N] ---------------------------------------------------
 * Operands are described, not copied: a strided matrix of any float dtype (transposition is just a
 * choice of strides), or for B an im2col view of an image, which makes conv2d an implicit GEMM.
 * Packing converts dtype/layout into contiguous float panels; one micro-kernel does all the work.
 * Each output element sums over k in the same order whatever the thread count. */
enum { MAT_STRIDED = 0, MAT_IM2COL = 1 };
typedef struct {
    int         kind;
    int         dtype;          /* MAT_STRIDED: DT_F32, DT_F16 or DT_BF16 */
    const void *p;
    long        rs, cs;         /* MAT_STRIDED: element (r, c) at p[r*rs + c*cs] */
    /* MAT_IM2COL (B only; dtype f32): row r = (ci*kh + ky)*kw + kx, column c = oy*wout + ox of an
     * image [cin, h, w], reading x[ci, oy*stride - pad + ky*dil, ox*stride - pad + kx*dil], 0 outside. */
    int cin, h, w, kh, kw, stride, pad, dil, hout, wout;
} Mat;
Mat  mat_f32(const float *p, long rs, long cs);
Mat  mat_tensor(const Tensor *t, long rs, long cs);  /* weight tensor, any float dtype */
void gemm(int M, int N, int K, const Mat *A, const Mat *B, float *C, long ldc, int accumulate);

/* --- Layers built on the GEMM -------------------------------------------------------------------- */
/* y[n, out] = x[n, in] · W^T + b, W = [out, in] (PyTorch nn.Linear); b may be NULL. */
void linear(float *y, const float *x, int n, int in, const Tensor *W, const Tensor *b);
/* y[cout, hout, wout] = conv(x[cin, h, w]) with W = [cout, cin, kh, kw] (nn.Conv2d), b may be NULL. */
void conv2d(float *y, const float *x, int cin, int h, int w, const Tensor *W, const Tensor *b,
            int stride, int pad);
int  conv_out_size(int in, int k, int stride, int pad);

/* --- The one attention ----------------------------------------------------------------------------
 * q [Tq, heads*dh], k and v [Tk, heads*dh], out [Tq, heads*dh] (row strides ldq, ldk, ldv, ldo; head h
 * owns columns h*dh .. h*dh+dh-1). Per head: out = softmax(scale · q kᵀ + bias) v.
 * Every additive term on the logits comes through AttnBias: T5 relative positions and padding masks
 * (add), causal masks (causal), paint-with-words (add times max over all heads of q kᵀ, eDiff-I §4.3). */
typedef struct {
    const float *add;           /* NULL or bias[h*hs + i*qs + j*ks]; a stride of 0 broadcasts */
    long         hs, qs, ks;
    float        add_scale;     /* the bias is multiplied by this (1 for a plain bias) */
    int          add_times_max; /* also multiply by max over heads, queries, keys of raw q·k */
    int          causal;        /* key j is visible to query i iff j <= i */
} AttnBias;
void attention(float *out, long ldo, const float *q, long ldq, const float *k, long ldk,
               const float *v, long ldv, int Tq, int Tk, int heads, int dh, float scale,
               const AttnBias *bias);

/* --- Norms (statistics in double, as PyTorch does with its float accumulation close enough) ------- */
void group_norm(float *y, const float *x, int C, int HW, int groups, float eps,
                const Tensor *gamma, const Tensor *beta, int fuse_silu);
void layer_norm(float *y, const float *x, int rows, int dim, float eps, const Tensor *w, const Tensor *b);
void rms_norm(float *y, const float *x, int rows, int dim, float eps, const Tensor *w);
void softmax_rows(float *x, int rows, int cols);

/* --- Activations, in place ------------------------------------------------------------------------ */
enum { ACT_NONE = 0, ACT_RELU, ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_QUICK_GELU };
int  act_from_name(const char *name);  /* HF/diffusers names ("relu", "silu", "swish", "gelu",
                                          "gelu_new", "gelu_pytorch_tanh", "quick_gelu"); -1 if unknown */
void activate(int act, float *x, size_t n);

/* --- Resampling, pooling, embedding, concatenation ------------------------------------------------- */
void upsample_nearest(float *y, const float *x, int C, int H, int W, int factor);
/* Bilinear resize [C,H,W] -> [C,H2,W2]; align_corners 0 = half-pixel centres (PyTorch default). */
void resize_bilinear(float *y, const float *x, int C, int H, int W, int H2, int W2, int align_corners);
void avg_pool2d(float *y, const float *x, int C, int H, int W, int k, int stride);
void embedding(float *y, const Tensor *table, const int32_t *ids, int n);   /* y[n, dim] = table[ids] */
void concat_channels(float *y, const float *a, int Ca, const float *b, int Cb, int HW);
void vec_add(float *y, const float *x, size_t n);                       /* y += x */
/* diffusers' get_timestep_embedding (Timesteps, max_period 10000): half = dim/2,
 * f_k = exp(-ln(10000) k / (half - freq_shift)), out = [sin(t f_k) | cos(t f_k)], the halves swapped
 * (cos first) when flip_sin_to_cos, a trailing 0 for odd dim; in float32 as diffusers computes it. */
void timestep_embedding(float *out, float t, int dim, int flip_sin_to_cos, float freq_shift);

/* --- numpy .npy files (format 1.0): tensor dumps, injected noise, cross-checking ------------------ */
/* Write float32 data of the given shape ("<f4", C order). */
int npy_write(const char *path, const float *data, int rank, const int64_t *shape, char err[EDIFF_ERR]);
/* Read a C-order "<f4" or "<f8" array as float32 (malloc'd, caller frees); at most MAX_RANK dims and
 * max_elems elements. */
int npy_read(const char *path, float **data, int *rank, int64_t shape[MAX_RANK], int64_t max_elems,
             char err[EDIFF_ERR]);

/* ================================================================ blob.c ======================= */

/* The weight blob (docs/blob.md): mmapped read-only, every field validated before use. */
enum { BLOB_BORROWED = 0, BLOB_MMAP = 1, BLOB_READ = 2 };
typedef struct {
    char           path[256];
    const uint8_t *base;        /* the whole file */
    size_t         size;
    int            storage;     /* BLOB_MMAP, BLOB_READ (malloc'd copy, no mmap here) or BLOB_BORROWED */
    Tensor        *tensors;     /* n_tensors, in file order */
    int            n_tensors;
    const Tensor **by_name;     /* the same tensors sorted by name, for lookup */
    char          *meta;        /* private copy of the metadata text, split into key/value strings */
    const char   **meta_kv;     /* 2*n_meta pointers: key0, value0, key1, value1, ... sorted by key */
    int            n_meta;
} Blob;
int  blob_open(Blob *b, const char *path, char err[EDIFF_ERR]);
/* The same over bytes the caller owns (and keeps alive until blob_close); label names it in errors. */
int  blob_open_memory(Blob *b, const void *data, size_t size, const char *label, char err[EDIFF_ERR]);
void blob_close(Blob *b);
const Tensor *blob_get(const Blob *b, const char *name);       /* NULL if absent */
const char   *blob_meta(const Blob *b, const char *key);       /* NULL if absent */
uint32_t crc32_update(uint32_t crc, const void *data, size_t n); /* zlib/PNG CRC-32; start with 0 */

/* Loader: reads one component (an encoder, a UNet expert) out of a blob. Names and keys are given
 * relative to a prefix ("t5.", "base.0.unet."). The first problem is kept in `err` and every later
 * call is a no-op returning NULL/0, so a component loader reads linearly and checks `failed` once. */
typedef struct {
    const Blob *blob;
    char        prefix[128];
    int         failed;
    char        err[EDIFF_ERR];
} Loader;
void          loader_init(Loader *L, const Blob *b, const char *prefix);
int           loader_fail(Loader *L, const char *fmt, ...);      /* records an error, returns -1 */
/* A float tensor that must exist with exactly this shape (rank dims given as ints). */
const Tensor *ld_tensor(Loader *L, int rank, const int *shape, const char *name_fmt, ...);
const Tensor *ld_optional(Loader *L, int rank, const int *shape, const char *name_fmt, ...); /* NULL if absent */
int           ld_has(Loader *L, const char *name_fmt, ...);
long          ld_int(Loader *L, const char *key_fmt, ...);
long          ld_int_or(Loader *L, long dflt, const char *key_fmt, ...);
double        ld_float(Loader *L, const char *key_fmt, ...);
double        ld_float_or(Loader *L, double dflt, const char *key_fmt, ...);
const char   *ld_str(Loader *L, const char *key_fmt, ...);
const char   *ld_str_or(Loader *L, const char *dflt, const char *key_fmt, ...);
int           ld_ints(Loader *L, int *out, int max, const char *key_fmt, ...); /* "32,64,128" */
int           ld_bool_or(Loader *L, int dflt, const char *key_fmt, ...);

#endif /* EDIFF_H */
