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
#include <stdio.h>

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

int   errorf(char err[EDIFF_ERR], const char *fmt, ...);   /* err = the message (printf format); returns -1 */
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
/* Work below which an op stays on the calling thread, in multiply-adds (GEMM, attention) or element
 * operations (a pass over memory counts 1 per element, a norm 4, an exp-based activation or softmax 8).
 * Opening a parallel region costs microseconds on an idle machine, and up to a scheduler slice
 * (milliseconds) on a busy one, where a woken thread may wait for a core: so only ops that are worth
 * it open one, and a model forward opens few. */
#define PAR_WORK 1048576.0
/* Coarse parallelism over independent evaluations (the two branches of classifier-free guidance):
 * task(ctx, i) for i = 0..n-1, side by side when there are threads to spare, each task's ops using
 * its share of them (with 2 threads and 2 tasks: one each, ops single-threaded); else one after
 * another. Tasks must not share scratch memory; their results are the same as run in turn. */
void parallel_tasks(int n, void (*task)(void *ctx, int i), void *ctx);

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
 * (add), causal masks (causal), paint-with-words (add times max over all heads of q kᵀ, eDiff-I §4.3).
 * Computed by blocks of queries and keys with an online softmax: the Tq x Tk scores are never all in
 * memory. A query whose every key is masked (-inf) gets 0. */
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
/* Nearest-neighbour resize [C,H,W] -> [C,H2,W2], PyTorch interpolate(mode="nearest") (integer factor
 * or an explicit size: source index floor(o * (in/out)) with the ratio in float, as PyTorch does). */
void upsample_nearest(float *y, const float *x, int C, int H, int W, int H2, int W2);
/* Bilinear resize [C,H,W] -> [C,H2,W2]; align_corners 0 = half-pixel centres (PyTorch default). */
void resize_bilinear(float *y, const float *x, int C, int H, int W, int H2, int W2, int align_corners);
void avg_pool2d(float *y, const float *x, int C, int H, int W, int k, int stride);
void embedding(float *y, const Tensor *table, const int32_t *ids, int n);   /* y[n, dim] = table[ids] */
void concat_channels(float *y, const float *a, int Ca, const float *b, int Cb, int HW);
void vec_add(float *y, const float *x, size_t n);                       /* y += x */
void vec_exp(float *x, size_t n);          /* x = exp(x): the vectorisable exp of every op, within 2 ulp */
/* diffusers' get_timestep_embedding (Timesteps, max_period 10000): half = dim/2,
 * f_k = exp(-ln(10000) k / (half - freq_shift)), out = [sin(t f_k) | cos(t f_k)], the halves swapped
 * (cos first) when flip_sin_to_cos, a trailing 0 for odd dim; in float32 as diffusers computes it. */
void timestep_embedding(float *out, float t, int dim, int flip_sin_to_cos, float freq_shift);

/* Optional observer of intermediate outputs (--dump, cross-checks): fn is called with the HF module
 * path of the output ("encoder.block.3", "text_model.encoder.layers.1", "visual_projection"), its
 * data (valid only during the call) and its shape without the batch dimension. NULL = no hook. */
typedef struct {
    void (*fn)(void *ctx, const char *name, const float *x, int rank, const int64_t *shape);
    void *ctx;
} DumpHook;

/* --- numpy .npy files (format 1.0): tensor dumps, injected noise, cross-checking ------------------ */
/* Write data of the given shape in C order: dtype DT_F32 ("<f4"), DT_F64 ("<f8") or DT_I32 ("<i4"). */
int npy_write_dtype(const char *path, const void *data, int dtype, int rank, const int64_t *shape,
                    char err[EDIFF_ERR]);
int npy_write(const char *path, const float *data, int rank, const int64_t *shape, char err[EDIFF_ERR]); /* f32 */
/* Read a C-order "<f4", "<f8" or "<i4" array as float32 (malloc'd, caller frees); at most MAX_RANK dims
 * and max_elems elements. */
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
long          ld_int(Loader *L, const char *key_fmt, ...);     /* an integer in int range (else an error) */
long          ld_int_or(Loader *L, long dflt, const char *key_fmt, ...);
double        ld_float(Loader *L, const char *key_fmt, ...);
double        ld_float_or(Loader *L, double dflt, const char *key_fmt, ...);
const char   *ld_str(Loader *L, const char *key_fmt, ...);
const char   *ld_str_or(Loader *L, const char *dflt, const char *key_fmt, ...);
int           ld_ints(Loader *L, int *out, int max, const char *key_fmt, ...); /* "32,64,128" */
/* A list of numbers ("0.5,0.25"): its length, or 0 if the key is absent (out untouched: the caller's
 * defaults stay). A malformed list, or more than max numbers, is an error. */
int           ld_floats_or(Loader *L, double *out, int max, const char *key_fmt, ...);
int           ld_bool_or(Loader *L, int dflt, const char *key_fmt, ...);

/* ================================================================ sampler.c ==================== */
/* The diffusion core (docs/sampling.md): the random generator, the EDM-preconditioned expert ensemble,
 * the samplers, classifier-free guidance and the super-resolution conditioning. The sampler state x
 * lives in double (as NVlabs/edm samples in float64); networks run in float32; the boundary between
 * the two is the preconditioning. Functions that take sizes trust them (callers validated the config). */

/* --- Randomness: Philox4x32-10 (Salmon et al. 2011) + Box-Muller in double ------------------------
 * Normal number i of stream s under seed k is a pure function of (k, s, i): the same on every platform
 * and thread count (the log/sin/cos inside are ours, built from + - * / only). docs/sampling.md "RNG". */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
typedef struct {
    uint64_t seed, stream;
    uint64_t offset;                  /* index of the next normal to draw */
} Rng;
Rng  rng_init(uint64_t seed, uint64_t stream);         /* offset 0 */
void rng_normal(Rng *r, double *out, size_t n);        /* normals offset .. offset+n-1; offset += n */
/* The stream of one purpose: image j of a run (0 for the first), stage s of the cascade (0 = base). */
enum { RNG_INIT = 0, RNG_SAMPLER = 1, RNG_AUG = 2 };   /* initial noise, churn/ancestral noise, SR augmentation */
uint64_t rng_stream(int image, int stage, int purpose);

/* Where samplers get their standard normals, in draw order: an Rng in production, recorded tensors in
 * the tests against k-diffusion/diffusers. */
typedef struct {
    void (*draw)(void *ctx, double *out, size_t n);
    void *ctx;
} NoiseSource;
NoiseSource noise_from_rng(Rng *r);                    /* borrows r */

/* --- The denoiser: D(x; sigma) over n doubles -------------------------------------------------------
 * Samplers see only this; tests plug in analytic denoisers, the pipeline route -> precond -> UNet -> CFG. */
typedef struct {
    void  (*fn)(void *ctx, const double *x, double sigma, double *denoised);
    void   *ctx;
    size_t  n;
} Denoiser;

/* --- Expert ensemble (eDiff-I §4.1; docs/model.md "Experts") ------------------------------------------
 * Expert k serves sigma_lo[k] <= sigma < sigma_hi[k]: lower bound inclusive; sigma_lo[0] = 0,
 * sigma_hi[n-1] = inf, each sigma_hi[k] = sigma_lo[k+1]. */
#define EXPERTS_MAX 64
typedef struct {
    int    n;
    double sigma_lo[EXPERTS_MAX], sigma_hi[EXPERTS_MAX];
} ExpertTable;
/* Reads S.experts and S.k.sigma_lo / S.k.sigma_hi of stage S; checks the table is ordered, contiguous
 * and covers [0, inf). Needs the metadata only, no weights. */
int experts_load(ExpertTable *E, const Blob *b, const char *stage, char err[EDIFF_ERR]);
int expert_for_sigma(const ExpertTable *E, double sigma);  /* the k holding sigma; -1 if none (NaN, < 0, inf) */

/* --- EDM preconditioning (Karras et al. 2022, Table 1) ------------------------------------------------ */
typedef struct { double c_skip, c_out, c_in, c_noise; } EdmScalings;
EdmScalings edm_scalings(double sigma, double sigma_data);

/* F_theta: the raw network of expert k, out [C,H,W] = F(input [C+C_lr,H,W]; c_noise), with one CFG
 * branch's conditioning held in ctx. */
typedef struct {
    void (*forward)(void *ctx, int expert, const float *input, float c_noise, float *out);
    void *ctx;
} Network;
/* D(x; sigma) = c_skip x + c_out F_k(c_in x [++ z_lr]; c_noise), k = expert_for_sigma(sigma). */
typedef struct {
    const ExpertTable *experts;
    Network            net;
    double             sigma_data;
    int                C, H, W;     /* x is [C,H,W] */
    const float       *z_lr;        /* super-resolution: [C_lr,H,W] concatenated after c_in x; else NULL */
    int                C_lr;
    float             *input, *out; /* scratch, owned: [C+C_lr,H,W] and [C,H,W] */
} EdmDenoiser;
/* Fills e (allocating its scratch; the pointers given are borrowed) and returns its Denoiser. */
Denoiser edm_denoiser(EdmDenoiser *e, const ExpertTable *experts, Network net, double sigma_data,
                      int C, int H, int W, const float *z_lr, int C_lr);
void     edm_denoiser_free(EdmDenoiser *e);

/* --- Classifier-free guidance: D_w = D_uncond + w (D_cond - D_uncond); w = 1 runs D_cond alone ------- */
typedef struct {
    const Denoiser *cond, *uncond;
    double          scale;
    double         *d_uncond;           /* scratch, owned (NULL when scale is 1) */
} Guidance;
/* uncond may be NULL when scale is 1 (then only cond runs: no wasted pass). Otherwise the two branches
 * run side by side (parallel_tasks): cond and uncond must own separate scratch (arenas, buffers). */
Denoiser cfg_denoiser(Guidance *g, const Denoiser *cond, const Denoiser *uncond, double scale);
void     cfg_free(Guidance *g);
/* The encoder outputs of one branch (docs/model.md "Conditioning"); NULL = dropped (all zero). */
typedef struct {
    const float *t5_tokens, *clip_tokens, *clip_text_embed, *clip_image_embed;
} Conditioning;
/* The unconditional branch of cond: the text encodings are the negative prompt's (negative != NULL) or
 * dropped; the CLIP image embedding is kept in super-resolution stages (keep_image), else dropped. */
Conditioning cfg_uncond(const Conditioning *cond, const Conditioning *negative, int keep_image);

/* --- Noise schedules and samplers (docs/sampling.md; k-diffusion sampling.py) ----------------------- */
enum { SAMPLER_HEUN = 0, SAMPLER_EULER, SAMPLER_EULER_A, SAMPLER_DDPM, SAMPLER_DPMPP_2M, SAMPLER_COUNT };
typedef struct {
    int    kind;                        /* SAMPLER_* */
    int    steps;                       /* N: sigmas before the final 0 */
    double sigma_min, sigma_max, rho;   /* Karras schedule (every sampler but ddpm) */
    double s_churn, s_tmin, s_tmax;     /* stochastic churn (heun, euler) */
    double s_noise;                     /* noise scale of churn and of ancestral steps */
    double eta;                         /* ancestral noise fraction (euler_a) */
} SamplerConfig;
int         sampler_from_name(const char *name);      /* "heun" "euler" "euler_a" "ddpm" "dpmpp2m"; -1 */
const char *sampler_name(int kind);
void        sampler_defaults(SamplerConfig *c);       /* heun, 18 steps, 0.002..80, rho 7, no churn */
int         sampler_check(const SamplerConfig *c, char err[EDIFF_ERR]);
/* sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0: N+1 values. */
void karras_sigmas(double *sigmas, int n, double sigma_min, double sigma_max, double rho);
/* The DDPM grid: sigma_t = sqrt((1 - abar_t)/abar_t) of a linear beta schedule (T steps, beta_start ..
 * beta_end) at diffusers' "leading" timesteps t_k = (N-1-k) floor(T/N), then 0: N+1 values, N <= T. */
void ddpm_sigmas(double *sigmas, int n, int T, double beta_start, double beta_end);
#define DDPM_T          1000            /* the grid of --sampler ddpm: Ho et al. 2020's linear schedule */
#define DDPM_BETA_START 1e-4
#define DDPM_BETA_END   0.02
void sampler_sigmas(const SamplerConfig *c, double *sigmas);  /* the grid of c->kind: N+1 values */
/* Observer of sampling (--dump; k-diffusion's `callback`): `step` gets the sample x after step i (at
 * sigmas[i+1]); `noise` (stage_sample only) every standard normal drawn, in draw order: draw 0 is the
 * initial noise n, then one draw per step of the samplers that take one (churn, ancestral noise). The
 * data are valid only during the call. A NULL hook, or a NULL member, observes nothing. */
typedef struct {
    void (*step)(void *ctx, int i, const double *x, size_t n);
    void (*noise)(void *ctx, int draw, const double *eps, size_t n);
    void *ctx;
} SampleHook;
/* Each sampler walks sigmas[0 .. c->steps] (decreasing, may end in 0), updating x in place. */
void sample_heun(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise, const double *sigmas, double *x,
                 const SampleHook *hook);
void sample_euler(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise, const double *sigmas, double *x,
                  const SampleHook *hook);
void sample_euler_ancestral(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise,
                            const double *sigmas, double *x, const SampleHook *hook);
void sample_dpmpp_2m(const SamplerConfig *c, const Denoiser *D, const double *sigmas, double *x,
                     const SampleHook *hook);
/* The sampler of c->kind over sigmas from sampler_sigmas(c) (ddpm: euler_a with eta 1 and s_noise 1 on
 * the DDPM grid). noise may be NULL for dpmpp2m, which draws none; hook may be NULL. */
void sample(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise, const double *sigmas, double *x,
            const SampleHook *hook);

/* --- Stages of the cascade (docs/blob.md "Pipeline keys") ------------------------------------------ */
typedef struct {
    char          name[64];
    int           resolution;
    ExpertTable   experts;
    double        sigma_data;
    SamplerConfig sampler;              /* the stage's defaults: S.sampler, S.steps, S.sigma_min, ... */
    double        cfg_scale;
    int           sr;                   /* super-resolution: S.lowres_upsample is present */
    double        aug_sigma;            /* SR: inference noise-augmentation level */
    int           aug_dim;              /* SR: width of aug_features */
} StageConfig;
int stage_config_load(StageConfig *S, const Blob *b, const char *stage, char err[EDIFF_ERR]);
/* The cascade: the stages named by the comma-separated key `stages`, in order, with a stage replaced by
 * the alternative `use` (NULL: none) that `stage_alternatives` lists as use:REPLACED. The first stage
 * must generate from text, every later one must be a super-resolution stage. Returns the count (<= max). */
#define CASCADE_MAX 8
int cascade_load(StageConfig *stages, int max, const Blob *b, const char *use, char err[EDIFF_ERR]);

/* x = sigma_0 n (n = init, else stream RNG_INIT), sampled by c with churn/ancestral noise from stream
 * RNG_SAMPLER, clamped to [-1, 1]: out [D->n] floats. hook (may be NULL) sees n, each step's noise and
 * each step's sample. */
void stage_sample(const SamplerConfig *c, const Denoiser *D, uint64_t seed, int image, int stage,
                  const float *init, const SampleHook *hook, float *out);

/* --- Super-resolution conditioning (docs/model.md "Super-resolution stages") ----------------------- */
/* z_lr [C,H,W] = up(y_lr [C,h,w]) + sigma_aug n: bilinear with half-pixel centres, n drawn from noise. */
void lowres_condition(float *z_lr, const float *y_lr, int C, int h, int w, int H, int W, double sigma_aug,
                      const NoiseSource *noise);
/* aug_features [dim] = timestep_embedding(ln(sigma_aug)/4), cos half first (as time_proj embeds c_noise). */
void aug_features(float *out, double sigma_aug, int dim);

/* --- Input and output --------------------------------------------------------------------------- */
/* Initial noise from a .npy of shape [C,H,W] or [1,C,H,W] (float32 or float64), every value finite:
 * *noise malloc'd. */
int  noise_load(const char *path, int C, int H, int W, float **noise, char err[EDIFF_ERR]);
/* [3,H,W] in [-1,1] -> [H,W,3] bytes: round-half-even((clamp(x,-1,1) + 1) * 127.5) in float32. */
void image_to_rgb8(uint8_t *rgb, const float *x, int H, int W);
/* ================================================================ unicode_data.c =============== */
/* Generated by weights/gen_unicode.py from Python 3.11's own data (Unicode 14.0.0): what CLIP's text
 * clean-up and pre-tokenisation need (docs/tokenizers.md). Flags of uni_flags(): */
enum {
    UNI_L = 1,              /* general category L*: the pattern's [\p{L}] */
    UNI_N = 2,              /* N*: [\p{N}] */
    UNI_O = 4,              /* [^\s\p{L}\p{N}] under IGNORECASE (no case relative is L, N or space) */
    UNI_RE_SPACE = 8,       /* White_Space: the regex module's \s */
    UNI_PY_SPACE = 16,      /* str.isspace(): what str.strip() removes */
    UNI_CASED = 32,         /* Cased and not Case_Ignorable (CPython's final-sigma context) */
    UNI_CASE_IGNORABLE = 64 /* Case_Ignorable (skipped by the final-sigma context) */
};
unsigned    uni_flags(uint32_t cp);                  /* 0 for cp >= 0x110000 */
int         uni_lower(uint32_t cp, uint32_t out[3]); /* str.lower of one code point (not U+03A3): count */
int         uni_ascii_fold(uint32_t cp);             /* the ASCII character cp matches under IGNORECASE
                                                        (cp itself below 0x80, 's' for U+017F), else 0 */
const char *html_entity(const char *name, size_t len); /* html.entities.html5[name] as UTF-8, or NULL */
int         html_charref_remap(uint32_t num, uint32_t *cp); /* 1 if html.unescape remaps &#num; */
int         html_charref_dropped(uint32_t cp);       /* 1 if html.unescape drops &#cp; */

/* ================================================================ tokenizer.c ================== */
/* The two text tokenizers, bit-exact with the original tools (docs/tokenizers.md):
 *   CLIP: OpenAI CLIP's SimpleTokenizer (byte-level BPE, 49,408 ids) and clip.tokenize(truncate=True);
 *   T5:   sentencepiece's unigram model (spiece.model read directly), EncodeAsIds + </s>.
 * Input is any byte string: ill-formed UTF-8 is first replaced by U+FFFD exactly as Python's
 * bytes.decode("utf-8", "replace") does (one U+FFFD per maximal ill-formed subpart); no input is an
 * error. Work is linear in the prompt (CLIP BPE by a bucket queue over merge ranks, T5 Viterbi cut
 * at positions no piece crosses) and stops once max_ids ids exist.
 * Tokenizers are read-only after init: one may be shared by threads. */

/* A growable list of token ids (malloc'd; tokens_free releases it, a zeroed struct is empty). */
typedef struct {
    int32_t *id;
    int      n, cap;
} Tokens;
void tokens_free(Tokens *t);
/* Index of the first occurrence of sub[0..m) in seq[0..n) at or after `from`, or -1. For
 * paint-with-words: a phrase's positions in the prompt's ids are token_find(prompt ids, phrase ids
 * encoded alone without start/end tokens) + offset of the first content id (1 for CLIP, 0 for T5). */
int  token_find(const int32_t *seq, int n, const int32_t *sub, int m, int from);

/* An open-addressing map from 64-bit keys to non-negative int32 values (the tokenizers' tables). */
typedef struct {
    uint64_t *key;
    int32_t  *val;        /* -1 marks an empty slot */
    size_t    cap;        /* a power of two */
} IdMap;

#define CLIP_CONTEXT 77
typedef struct {
    int      n_merges;    /* 48,894: ids 0-255 bytes, 256-511 bytes+</w>, 512.. merges, then sot, eot */
    int      sot, eot;    /* <|startoftext|> 49406, <|endoftext|> 49407 */
    uint8_t  byte_sym[256]; /* byte -> id of its bytes_to_unicode() character */
    int32_t *merge;       /* [n_merges][2]: left and right symbol id of merge rank r (result 512 + r) */
    IdMap    pair_rank;   /* (left << 32 | right) -> merge rank */
} ClipTokenizer;
/* From the merge list text (the uncompressed bpe_simple_vocab_16e6.txt or its first 48,895 lines:
 * a header line, then "left right" lines; lines after the 48,894th merge are ignored). The bytes
 * are not kept. Malformed lists (a part that is not an earlier symbol, duplicates) are an error. */
int  clip_tokenizer_init(ClipTokenizer *t, const uint8_t *merges, size_t n, char err[EDIFF_ERR]);
void clip_tokenizer_free(ClipTokenizer *t);
/* SimpleTokenizer.encode(text): ids without start/end tokens, appended to out; stops after max_ids
 * ids (max_ids < 0: all). Returns 0, or -1 if the text is longer than 1 GiB. */
int  clip_tokenizer_encode(const ClipTokenizer *t, const char *text, size_t len, int max_ids, Tokens *out,
                           char err[EDIFF_ERR]);
/* clip.tokenize(text, context_length=77, truncate=True): sot, ids, eot, cut to 77 with the last id
 * forced to eot, padded with 0. */
int  clip_tokenize(const ClipTokenizer *t, const char *text, size_t len, int32_t ids[CLIP_CONTEXT],
                   char err[EDIFF_ERR]);

typedef struct {
    int       n_pieces, unk_id, eos_id;   /* T5: 32,000 pieces, <unk> 2, </s> 1 */
    float    *score;                      /* [n_pieces] */
    uint8_t  *type;                       /* [n_pieces] sentencepiece types (1 NORMAL .. 6 BYTE) */
    float     unk_score;                  /* min NORMAL score - 10 */
    IdMap     edge;                       /* vocabulary trie: (node << 8 | byte) -> child node */
    int32_t  *node_piece;                 /* piece id spelled by a trie node, or -1 */
    uint32_t *unit;                       /* precompiled charsmap: darts-clone double array */
    size_t    n_units;
    char     *pool;                       /* its NUL-terminated replacement strings */
    size_t    pool_len;
    int       add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} T5Tokenizer;
/* From the bytes of a sentencepiece ModelProto (spiece.model), validated as untrusted input; only
 * unigram models without user-defined or byte pieces, with a control piece as eos, are accepted.
 * The bytes are not kept. */
int  t5_tokenizer_init(T5Tokenizer *t, const uint8_t *spiece, size_t n, char err[EDIFF_ERR]);
void t5_tokenizer_free(T5Tokenizer *t);
/* SentencePieceProcessor.EncodeAsIds(text), appended to out; stops after max_ids ids (< 0: all).
 * Returns 0, or -1 if the text is longer than 1 GiB (before or after normalisation). */
int  t5_tokenizer_encode(const T5Tokenizer *t, const char *text, size_t len, int max_ids, Tokens *out,
                         char err[EDIFF_ERR]);
/* EncodeAsIds(text) + </s> (as HF T5Tokenizer): with max_len > 0, the first max_len - 1 ids and
 * </s> when longer (HF truncation=True, max_length=max_len). No padding. */
int  t5_tokenize(const T5Tokenizer *t, const char *text, size_t len, int max_len, Tokens *out,
                 char err[EDIFF_ERR]);

/* Both tokenizers' data: from the model blob's u8 tensors tokenizer.clip_merges and
 * tokenizer.t5_spiece when blob is non-NULL, else from weights/vocab/clip_merges.txt and
 * weights/vocab/t5_spiece.model (relative to the current directory). clip or t5 may be NULL. */
int  tokenizers_open(ClipTokenizer *clip, T5Tokenizer *t5, const Blob *blob, char err[EDIFF_ERR]);
/* Check every case of a file in the test/tokenizer_cases.tsv format; each failure is printed to
 * log (text and both id lists). Adds to *passed / *failed; -1 if the file cannot be read/parsed. */
int  tokenizer_check_cases(const ClipTokenizer *clip, const T5Tokenizer *t5, const char *path,
                           FILE *log, int *passed, int *failed, char err[EDIFF_ERR]);

/* ================================================================ unet.c ======================= */

/* diffusers' UNet2DConditionModel (docs/unet.md): structure and parameter names are diffusers', so a
 * real diffusers checkpoint converted by weights/convert.py either runs exactly or is refused at load
 * with one line naming the config value ediff does not implement. Pixel space, no VAE (eDiff-I).
 * Weights point into the blob; the small arrays of blocks are owned by the Unet (unet_free). */

#define UNET_MAX_LEVELS 8        /* len(block_out_channels) */
#define UNET_MAX_LAYERS 16       /* layers_per_block, transformer_layers_per_block */

/* The parameters of one nn.Linear / nn.Conv2d / nn.GroupNorm / nn.LayerNorm; bias NULL when absent. */
typedef struct { const Tensor *weight, *bias; } UnetLayer;

/* ResnetBlock2D: GN-SiLU-conv1, + time_emb_proj(SiLU(emb)) (added, or FiLM for "scale_shift"),
 * GN-SiLU-conv2, + shortcut (conv_shortcut when cin != cout), / output_scale_factor. */
typedef struct {
    int       cin, cout;
    float     output_scale_factor;
    UnetLayer norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut;
} UnetResnet;

/* diffusers Attention: to_q/to_k/to_v without bias (attention_bias=False), to_out.0 with bias. */
typedef struct {
    int       cross;               /* keys/values from the context: attn2, and attn1 if only_cross_attention */
    int       kv_slot;             /* cross: its index in Unet.cross_layers and in a UnetCrossKV */
    UnetLayer to_q, to_k, to_v, to_out;
} UnetAttention;

/* BasicTransformerBlock: LN-attn1, LN-attn2 (cross), LN-GEGLU feed-forward, each with a residual. */
typedef struct {
    UnetLayer     norm1, norm2, norm3;
    UnetAttention attn1, attn2;
    Tensor        ff_value_w, ff_value_b, ff_gate_w, ff_gate_b;  /* views of the halves of ff.net.0.proj */
    UnetLayer     ff_out;                                        /* ff.net.2 */
} UnetTransformerBlock;

/* Transformer2DModel (continuous input): GroupNorm, proj_in, blocks over the h*w tokens, proj_out, + x. */
typedef struct {
    int                   channels, heads, head_dim, ff_dim, n_blocks;   /* tokens are heads*head_dim wide */
    UnetLayer             norm, proj_in, proj_out;
    UnetTransformerBlock *blocks;                                         /* n_blocks, owned */
} UnetTransformer;

/* A down/up block (DownBlock2D, CrossAttnDownBlock2D, UpBlock2D, CrossAttnUpBlock2D) or the mid block:
 * resnets[j] (then attentions[j] in a CrossAttn* block); the mid block is resnets[0], then
 * attentions[j], resnets[j+1]. */
typedef struct {
    int              n_resnets, has_attention;
    UnetResnet      *resnets;      /* n_resnets, owned */
    UnetTransformer *attentions;   /* n_resnets (mid block: n_resnets - 1) when has_attention, owned */
    UnetLayer        sampler;      /* downsamplers.0.conv / upsamplers.0.conv; weight NULL if none */
} UnetBlock;

enum { UNET_MID_NONE = 0, UNET_MID_RESNET = 1, UNET_MID_CROSSATTN = 2 };  /* None, UNetMidBlock2D, ...CrossAttn */

/* Every config value that changes the computation, after diffusers' own defaults and expansions. */
typedef struct {
    int   in_channels, out_channels, n_levels;
    int   block_out_channels[UNET_MAX_LEVELS];
    int   layers_per_block[UNET_MAX_LEVELS];
    int   down_attention[UNET_MAX_LEVELS];          /* 1: CrossAttnDownBlock2D */
    int   up_attention[UNET_MAX_LEVELS];            /* 1: CrossAttnUpBlock2D (index = up block) */
    int   heads[UNET_MAX_LEVELS];                   /* attention_head_dim (diffusers' legacy name) */
    int   transformer_layers[UNET_MAX_LEVELS];
    int   only_cross_attention[UNET_MAX_LEVELS];
    int   mid_block;                                /* UNET_MID_* */
    int   cross_attention_dim;                      /* width of the keys'/values' input */
    int   encoder_hid_dim;                          /* 0, or the input width of encoder_hid_proj (text_proj) */
    int   context_dim;                              /* width of the context given to unet_forward */
    int   use_linear_projection, norm_num_groups;
    float norm_eps;
    int   scale_shift;                              /* resnet_time_scale_shift == "scale_shift" */
    int   flip_sin_to_cos;
    float freq_shift;
    int   time_embed_dim;
    int   class_embed_dim;                          /* 0, or projection_class_embeddings_input_dim */
    int   time_embedding_act, timestep_post_act;   /* ACT_NONE or ACT_SILU */
    int   conv_in_kernel, conv_out_kernel, downsample_padding;
    float mid_block_scale_factor;
} UnetConfig;

typedef struct {
    UnetConfig config;
    UnetLayer  conv_in, conv_norm_out, conv_out, encoder_hid_proj;
    UnetLayer  time_embedding[2];                   /* time_embedding.linear_1, .linear_2 */
    UnetLayer  class_embedding[2];                  /* class_embedding.linear_1, .linear_2 ("projection") */
    UnetBlock  down[UNET_MAX_LEVELS], mid, up[UNET_MAX_LEVELS];
    const UnetAttention **cross_layers;             /* every cross-attention layer, n_cross (array owned) */
    int        n_cross;
} Unet;

/* The keys and values of every cross-attention layer for one context: k = to_k(ctx), v = to_v(ctx),
 * ctx = the context (after encoder_hid_proj when the UNet has one). They depend on the context alone,
 * which is fixed for a CFG branch and an expert through a run, so the pipeline computes them once and
 * every unet_forward reads them (memoisation: the same numbers the forward would compute; no weight is
 * copied). */
typedef struct {
    int     n_ctx, n;              /* context rows; layers (Unet.n_cross) */
    float **k, **v;                /* [n] -> [n_ctx, heads*head_dim of the layer] */
    float  *mem;                   /* one allocation holding them all */
} UnetCrossKV;

/* Paint-with-words (eDiff-I §4.3; docs/unet.md): every cross-attention layer computes
 * softmax((Q Kᵀ + W)/sqrt(d)) V with W = weight · max(Q Kᵀ) · A, max over all heads, queries and keys
 * of that call, and A the map of the layer's grid: A[p, j] = how much pixel p paints context token j. */
typedef struct {
    int          h, w;             /* the attention grid */
    const float *A;                /* [h*w, n_ctx], row-major */
} PaintMap;
typedef struct {
    const PaintMap *maps;          /* one per grid of unet_attention_grids() */
    int             n_maps, n_ctx;
    float           weight;        /* w' · ln(1 + sigma) for this call */
} PaintBias;

/* Optional tensor dumps: called with diffusers module paths ("conv_in", "down_blocks.1.attentions.0",
 * "mid_block", "up_blocks.0.resnets.1", "conv_out", ...) and the module's output as PyTorch shapes it
 * ([1, C, H, W] images, [1, T, D] tokens, [1, D] vectors). x is valid only during the call. */
/* Load the UNet named by prefix ("unet.", "base.0.unet."): config from PREFIX<field> metadata, every
 * tensor checked for existence and shape. Unsupported config values are refused with one line. */
int  unet_load(Unet *u, const Blob *b, const char *prefix, char err[EDIFF_ERR]);
void unet_free(Unet *u);
/* The distinct grids (h, w) at which cross-attention runs for an H x W input, into grids[2*i], [2*i+1];
 * returns their number (at most max), or -1 if the input size is too small for the UNet. */
int  unet_attention_grids(const Unet *u, int H, int W, int *grids, int max);
/* An upper bound of the arena bytes one unet_forward needs (size the arena once per run). */
size_t unet_arena_bytes(const Unet *u, int H, int W, int n_ctx);
/* kv = the cross-attention keys and values of context[n_ctx, context_dim] (malloc'd; free with
 * unet_cross_kv_free). A UNet without cross-attention gets an empty kv. */
void unet_cross_kv(const Unet *u, const float *context, int n_ctx, UnetCrossKV *kv);
void unet_cross_kv_free(UnetCrossKV *kv);
/* out[out_channels, H, W] = UNet(x[in_channels, H, W]; timestep, context[n_ctx, context_dim],
 * class_vec[class_embed_dim] (NULL when the UNet has no class embedding)). kv: unet_cross_kv of this
 * context, or NULL to compute the keys and values in this call. paint and hook may be NULL.
 * Activations come from the arena, which is left as it was found. */
int  unet_forward(const Unet *u, Arena *a, const float *x, int H, int W, float timestep,
                  const float *context, int n_ctx, const UnetCrossKV *kv, const float *class_vec,
                  const PaintBias *paint, const DumpHook *hook, float *out, char err[EDIFF_ERR]);

/* eDiff-I's conditioning module, weights/ediffi.py EDiffIConditioning (docs/model.md "Conditioning"):
 * t5_proj, clip_proj, image_proj (nn.Linear) and a learned null_token. Widths are read off the tensors. */
typedef struct {
    int       t5_dim, clip_dim, embed_dim, dim;    /* d_t5, d_clip, E_clip, cross-attention context width */
    UnetLayer t5_proj, clip_proj, image_proj;
    const Tensor *null_token;                       /* [1, dim] or [dim] */
} Cond;
int  cond_load(Cond *c, const Blob *b, const char *prefix, char err[EDIFF_ERR]);
/* Rows of the context: L5 + n_clip + 2. */
int  cond_context_rows(int L5, int n_clip);
/* context = rows(t5_proj(t5_tokens[L5]), clip_proj(clip_tokens[n_clip]), image_proj(clip_image_embed),
 * null_token), [cond_context_rows, dim]. A NULL input is a dropped conditioning (all zeros). */
void cond_context(const Cond *c, const float *t5_tokens, int L5, const float *clip_tokens, int n_clip,
                  const float *clip_image_embed, float *context);
/* class_vec = concat(clip_text_embed, clip_image_embed, aug[n_aug]) (NULL = zeros), 2*embed_dim + n_aug. */
void cond_class_vector(const Cond *c, const float *clip_text_embed, const float *clip_image_embed,
                       const float *aug, int n_aug, float *class_vec);

/* ================================================================ encoders.c =================== */
/* The three frozen encoders of eDiff-I (§4.2) with Hugging Face `transformers` semantics and names
 * (docs/encoders.md): T5EncoderModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection, and
 * CLIPImageProcessor's preprocessing. A model struct holds its config and Tensor pointers into the
 * blob (nothing is copied); the per-layer pointer array is malloc'd by *_load and freed by *_free.
 * Forward functions write into caller buffers and take their scratch from the Arena (size it with
 * *_arena_bytes); the arena is back at its entry mark when they return. */

/* --- T5 encoder: T5 v1.0 (relu) and v1.1 (gated-gelu), transformers T5EncoderModel ------------- */
typedef struct {
    int   vocab_size, d_model, d_kv, num_heads, d_ff, num_layers;
    int   num_buckets, max_distance;  /* relative_attention_num_buckets, relative_attention_max_distance */
    int   gated, act;                 /* from feed_forward_proj: "relu" -> 0, ACT_RELU; "gated-gelu" -> 1, ACT_GELU_TANH */
    float eps;                        /* layer_norm_epsilon (RMS norm) */
} T5Config;
typedef struct {
    const Tensor *ln_attn, *q, *k, *v, *o;  /* layer.0: layer_norm, SelfAttention.{q,k,v,o} */
    const Tensor *ln_ff, *wi0, *wi1, *wo;   /* layer.1: layer_norm, DenseReluDense.{wi or wi_0, wi_1 (gated only), wo} */
} T5Block;
typedef struct {
    T5Config      cfg;
    const Tensor *embed;        /* shared.weight (or encoder.embed_tokens.weight) [vocab_size, d_model] */
    const Tensor *rel_bias;     /* encoder.block.0.layer.0.SelfAttention.relative_attention_bias [buckets, heads] */
    const Tensor *final_ln;     /* encoder.final_layer_norm.weight */
    T5Block      *block;        /* num_layers entries, owned */
} T5Encoder;
/* Config from `prefix`+T5Config fields and every weight, shape-checked; 0 or -1 with err. */
int    t5_load(T5Encoder *m, const Blob *b, const char *prefix, char err[EDIFF_ERR]);
void   t5_free(T5Encoder *m);                               /* frees the block array (not the blob) */
/* Bucket of relative position (key - query) in the bidirectional encoder (T5Attention). */
int    t5_relative_position_bucket(int relative_position, int num_buckets, int max_distance);
size_t t5_arena_bytes(const T5Encoder *m, int T);            /* scratch of one t5_encode of T ids */
/* out[T, d_model] = last_hidden_state of ids[T]; mask[T] (1 real, 0 padding) or NULL for all real.
 * Padded keys are masked; padded query rows are computed like HF's (callers ignore them). */
int    t5_encode(const T5Encoder *m, const int32_t *ids, const int32_t *mask, int T, float *out,
                 Arena *a, const DumpHook *hook, char err[EDIFF_ERR]);

/* --- CLIP: one pre-LN transformer layer type shared by both towers ------------------------------- */
typedef struct {
    int   hidden_size, num_heads, num_layers, intermediate_size, projection_dim, act;
    float eps;                  /* layer_norm_eps */
} ClipTowerConfig;
typedef struct {
    const Tensor *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
    const Tensor *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} ClipLayer;

/* CLIP text tower (CLIPTextModelWithProjection; blob names text_model.*, text_projection.weight). */
typedef struct {
    ClipTowerConfig cfg;
    int             vocab_size, max_positions, eos_token_id;
    const Tensor   *token_embedding, *position_embedding, *final_ln_w, *final_ln_b, *projection;
    ClipLayer      *layer;      /* cfg.num_layers entries, owned */
} ClipText;
/* Config from `prefix`+"text."+CLIPTextConfig fields and every weight, shape-checked; 0 or -1 with err. */
int    clip_text_load(ClipText *m, const Blob *b, const char *prefix, char err[EDIFF_ERR]);
void   clip_text_free(ClipText *m);
size_t clip_text_arena_bytes(const ClipText *m, int T);   /* scratch of one clip_text_encode of T ids */
/* Position whose hidden state is pooled: the first id == eos_token_id, or, for legacy configs with
 * eos_token_id == 2, the first maximal id (HF CLIPTextTransformer). */
int    clip_text_pool_index(const ClipText *m, const int32_t *ids, int T);
/* hidden[T, W] = last_hidden_state (after final_layer_norm) of ids[T] (T <= max_positions, causal);
 * text_embeds[E] = text_projection(hidden[pool index]) if not NULL. */
int    clip_text_encode(const ClipText *m, const int32_t *ids, int T, float *hidden, float *text_embeds,
                        Arena *a, const DumpHook *hook, char err[EDIFF_ERR]);

/* CLIPImageProcessor: shortest-edge resize with Pillow's bicubic, centre crop, rescale, normalise. */
typedef struct {
    int    shortest_edge;                 /* size.shortest_edge */
    int    crop_height, crop_width;       /* crop_size */
    double rescale_factor;                /* 1/255 */
    float  image_mean[3], image_std[3];
} ClipImageProcessor;
/* pixels[3, crop_height, crop_width] from an 8-bit RGB image rgb[h][w][3]; bit-exact with Pillow 13's
 * resize and the float32 arithmetic of HF's numpy path. 0 or -1 with err (bad size). */
int    clip_preprocess(const ClipImageProcessor *p, const uint8_t *rgb, int w, int h, float *pixels,
                       char err[EDIFF_ERR]);

/* CLIP vision tower (CLIPVisionModelWithProjection; names vision_model.*, visual_projection.weight). */
typedef struct {
    ClipTowerConfig    cfg;
    int                image_size, patch_size;
    ClipImageProcessor processor;        /* clip.vision.{shortest_edge, crop_height, crop_width, rescale_factor, image_mean, image_std} */
    const Tensor      *class_embedding, *patch_embedding, *position_embedding;
    const Tensor      *pre_ln_w, *pre_ln_b, *post_ln_w, *post_ln_b, *projection;
    ClipLayer         *layer;            /* cfg.num_layers entries, owned */
} ClipVision;
/* Config (tower and preprocessing) from `prefix`+"vision." keys and every weight, shape-checked. */
int    clip_vision_load(ClipVision *m, const Blob *b, const char *prefix, char err[EDIFF_ERR]);
void   clip_vision_free(ClipVision *m);
size_t clip_vision_arena_bytes(const ClipVision *m);       /* scratch of one clip_vision_encode */
/* image_embeds[E] of pixels[3, S, S] (S = image_size, preprocessed); optionally last_hidden[1+G², W]
 * (the last layer's output, no norm) and pooled[W] (post_layernorm of the class token); NULL skips. */
void   clip_vision_encode(const ClipVision *m, const float *pixels, float *image_embeds, float *last_hidden,
                          float *pooled, Arena *a, const DumpHook *hook);

/* ================================================================ png.c ======================== */

/* PNG images (docs/png.md), written and read by our own zlib/deflate. Reading accepts every colour
 * type, bit depth and interlacing of the specification and gives 8-bit RGBA: grey is replicated,
 * palettes and tRNS are applied (alpha 255 where the file has none), 1/2/4-bit samples are scaled
 * exactly (x255, x85, x17) and 16-bit samples keep their high byte (as Pillow does for RGB/RGBA).
 * Every chunk CRC and the Adler-32 are checked; a bad, truncated or oversized file gives one error
 * line before anything large is allocated. Alpha, by use:
 *   masks (paint-with-words)  a pixel is painted when it is visible and not black: A > 0 and
 *                             max(R, G, B) > 0 (image_mask) — white-on-black or strokes on transparency
 *   style / reference images  alpha is ignored: RGB as stored, as Pillow's convert("RGB") in the
 *                             reference CLIPImageProcessor does */
#define PNG_MAX_SIDE   16384         /* pixels per side, read or written */
#define PNG_MAX_PIXELS (1 << 26)     /* width x height (64 Mpx: 256 MiB as RGBA) */
#define PNG_TEXT_MAX   (1 << 20)     /* bytes of a text value, written or (decompressed) read */

typedef struct {
    int      w, h;
    uint8_t *rgba;        /* w*h*4 bytes, row-major RGBA, malloc'd */
    char    *parameters;  /* the "parameters" text (tEXt, zTXt or iTXt) as UTF-8, malloc'd; NULL if none */
} Image;

/* Read a PNG file / PNG bytes (label names it in errors). On failure *img is empty. Free with image_free. */
int  png_read(const char *path, Image *img, char err[EDIFF_ERR]);
int  png_decode(const uint8_t *data, size_t size, const char *label, Image *img, char err[EDIFF_ERR]);
void image_free(Image *img);
void image_mask(const Image *img, uint8_t *painted);   /* painted[w*h] = 1 where painted, else 0 */

/* Write 8-bit pixels (row-major, `channels` interleaved: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) with
 * text chunks: text = {key, value, key, value, ..., NULL} or NULL. ASCII values go in tEXt, other UTF-8
 * in iTXt. The file is written beside `path` under a temporary name and renamed into place when
 * complete, so `path` is never left half-written. png_encode gives the bytes instead (*png malloc'd). */
int  png_write(const char *path, const uint8_t *px, int w, int h, int channels, const char *const *text,
               char err[EDIFF_ERR]);
int  png_encode(const uint8_t *px, int w, int h, int channels, const char *const *text, uint8_t **png,
                size_t *size, const char *label, char err[EDIFF_ERR]);

/* The zlib format (RFC 1950/1951) underneath, for tests and the fuzz harness. zlib_decompress writes
 * at most cap bytes into out (more is an error) and reports how many in *len; zlib_compress returns
 * a malloc'd stream (n < 2^31). */
int      zlib_decompress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *len, const char *label,
                         char err[EDIFF_ERR]);
int      zlib_compress(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len, char err[EDIFF_ERR]);
uint32_t adler32_update(uint32_t adler, const void *data, size_t n);   /* start with 1 */

/* ================================================================ dump.c ======================= */
/* ediff --dump DIR (docs/crosscheck.md): named intermediate tensors as .npy files that line up with
 * PyTorch forward hooks. A name is a slash-separated path, its last part the module path as the blob
 * names the module's weights ("prompt/t5.encoder.block.3", "base/step03/call1/cond/base.1.unet.conv_out");
 * the file is DIR/NAME.npy. The Dumper keeps the names in write order (run.json's manifest). */
#define DUMP_RANGES_MAX 64
#define DUMP_LAST (-1)                  /* "last" in --dump-steps: the stage's last step */
typedef struct {
    const char *dir;                    /* NULL: dumping is off, every call is a no-op */
    const char *filter;                 /* --dump-filter: comma-separated patterns; NULL: every tensor */
    int         n_ranges;               /* --dump-steps: steps lo[i]..hi[i] (DUMP_LAST allowed) */
    int         lo[DUMP_RANGES_MAX], hi[DUMP_RANGES_MAX];
    char      **names;                  /* the names written, in order, owned */
    int         n_names, cap_names;
    char        prefix[256];            /* of the names a hook from dump_hook writes */
    int         hook_batch;             /* that hook prepends a batch dimension of 1 */
    int         failed;                 /* the first failure is kept in err; later writes are skipped */
    char        err[EDIFF_ERR];
} Dumper;
/* dir may be NULL (off); filter NULL or "" for all; steps NULL for the default "0,last". 0 or -1 (bad steps). */
int  dump_init(Dumper *d, const char *dir, const char *filter, const char *steps, char err[EDIFF_ERR]);
void dump_free(Dumper *d);
/* --dump-steps: comma-separated N, A-B, A-last, last, all, none (steps count from 0). */
int  dump_steps_parse(Dumper *d, const char *spec, char err[EDIFF_ERR]);
int  dump_step_wanted(const Dumper *d, int step, int steps);  /* step of a stage with `steps` steps */
/* --dump-filter: a name is written if it matches one of the comma-separated patterns: a pattern with
 * '*' or '?' is a wildcard over the whole name ('*' crosses '/'), any other a substring. */
int  dump_wanted(const Dumper *d, const char *name);
int  glob_match(const char *pattern, const char *text);
/* DIR/NAME.npy of data (DT_F32, DT_F64 or DT_I32) when dumping is on and the filter wants NAME. */
void dump_array(Dumper *d, const char *name, int dtype, const void *data, int rank, const int64_t *shape);
/* A DumpHook writing PREFIX + module name (float32); batch: prepend a dimension of 1 to the shape. */
DumpHook dump_hook(Dumper *d, const char *prefix, int batch);

#endif /* EDIFF_H */
