/* test/bench.c — times ediff's ops and model pieces for `make bench`: test/bench.py runs this program
 * beside PyTorch and prints the table; this program only measures. Not part of `make test` (no test
 * depends on timing).
 *
 *   bench [--model BLOB] [--prompt TEXT] [--threads N] [--budget SECONDS] CASE...
 *                                           time each CASE, one line each
 *   bench [--model BLOB] [--prompt TEXT] --serve
 *                                           read "THREADS BUDGET CASE" lines from stdin, answer each
 *                                           with one line (bench.py interleaves ediff and PyTorch so)
 * Op cases (shapes as the model uses them):
 *   peak                  FMA throughput of the core(s) on register-resident data (see fma_chains)
 *   gemm:M,N,K            C = A B, f32 row-major
 *   conv:C,H,W            conv2d 3x3, stride 1, pad 1, C -> C channels, f32 weights and bias
 *   attn:Tq,Tk,H,dh[,c]   attention, q/k/v [T, H*dh], scale 1/sqrt(dh); c = 1: causal mask
 * Model cases, on the weights of BLOB (as the pipeline in ediff.c runs them):
 *   unet:STAGE            one forward of expert 0 of STAGE at the stage's resolution (one CFG branch)
 *   cfg:STAGE             the two CFG branches of one denoiser call, side by side (parallel_tasks),
 *                         each with its own arena
 *   t5, clip              T5 encode of the prompt's ids (unpadded), CLIP text encode of its 77 ids
 *                         (hidden states and the projected embedding)
 * Answer: "CASE flop=F median_s=S min_s=S reps=N threads=T" (flop per call, a multiply-add is 2; 0 for
 * model cases). Each case runs once to warm up, then repeats until its time budget (default 0.25 s). */
#define _POSIX_C_SOURCE 200809L
#include "../ediff.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Deterministic pseudo-random floats in [-1, 1). */
static void fill(float *x, size_t n, uint32_t seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
}

/* --- peak: the GEMM micro-kernel's loop (a 12 x 32 accumulator tile: 24 of the 32 AVX-512 registers,
 * two vector loads and twelve broadcasts per 24 multiply-adds) over 16 k-steps of data that stay in
 * L1, repeated. Compiled with NATIVE=1 this is vfmadd231ps on zmm registers at 2 per cycle: the
 * machine's FMA peak (bench.py takes it from the native program; the portable one runs it as plain
 * SSE2, since only the library's hot loops are dispatched). */
#define PEAK_ROWS 12
#define PEAK_COLS 32
#ifdef __clang__
#define NO_VECTORIZE _Pragma("clang loop vectorize(disable)")
#else
#define NO_VECTORIZE
#endif

static float fma_chains(long iters, const float *a, const float *b)
{
    float acc[PEAK_ROWS][PEAK_COLS], s = 0.0f;
    long it;
    int i, j;
    for (i = 0; i < PEAK_ROWS; i++)
        for (j = 0; j < PEAK_COLS; j++) acc[i][j] = 0.0f;
    for (it = 0; it < iters; it++) {
        const float *ak = a + (it & 15) * PEAK_ROWS, *bk = b + (it & 15) * PEAK_COLS;
        NO_VECTORIZE
        for (i = 0; i < PEAK_ROWS; i++)
            for (j = 0; j < PEAK_COLS; j++) acc[i][j] += ak[i] * bk[j];
    }
    for (i = 0; i < PEAK_ROWS; i++)
        for (j = 0; j < PEAK_COLS; j++) s += acc[i][j];
    return s;
}

/* Flop per call of one thread's fma_chains(iters). */
static double peak_flop(long iters) { return 2.0 * PEAK_ROWS * PEAK_COLS * (double)iters; }

/* --- the cases ----------------------------------------------------------------------------------- */

/* The weights of the model cases: the blob and the prompt, loaded once. */
typedef struct {
    Blob        blob;
    int         open;
    const char *prompt;
} Model;

/* One model case: a UNet expert with its inputs (per CFG branch), or an encoder with its ids. */
typedef struct {
    Unet      unet;
    int       R, n_ctx;
    float    *x, *context, *class_vec, *out[2];
    UnetCrossKV kv;                    /* the context's cross-attention keys/values, as the pipeline keeps them */
    Arena     arena[2];
    T5Encoder t5;
    ClipText  clip;
    Tokens    ids;
    int32_t   clip_ids[CLIP_CONTEXT];
} Net;

typedef struct {
    char   kind[8];
    int    v[5];
    char   stage[64];
    float *a, *b, *c, *d;       /* operands */
    Tensor w, bias;             /* conv weights (f32, as if from a blob) */
    Net    net;
    double flop;
    long   peak_iters;
    float  sink;
} Case;

static int parse(Case *cs, const char *spec)
{
    const char *colon = strchr(spec, ':');
    memset(cs, 0, sizeof *cs);
    if (!colon) {
        snprintf(cs->kind, sizeof cs->kind, "%s", spec);
        return strcmp(spec, "peak") == 0 || strcmp(spec, "t5") == 0 || strcmp(spec, "clip") == 0 ? 0 : -1;
    }
    if (colon - spec >= (long)sizeof cs->kind) return -1;
    memcpy(cs->kind, spec, (size_t)(colon - spec));
    if (strcmp(cs->kind, "unet") == 0 || strcmp(cs->kind, "cfg") == 0)
        return snprintf(cs->stage, sizeof cs->stage, "%s", colon + 1) < (int)sizeof cs->stage && colon[1] ? 0 : -1;
    if (sscanf(colon + 1, "%d,%d,%d,%d,%d", &cs->v[0], &cs->v[1], &cs->v[2], &cs->v[3], &cs->v[4]) < 3) return -1;
    for (int i = 0; i < 5; i++) if (cs->v[i] < 0 || cs->v[i] > 65536) return -1;
    return 0;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench: %s: %s\n", what, err);
    exit(2);
}

/* Expert 0 of the stage: its UNet, random input [in_channels, R, R], context [n_ctx, dim] and class
 * vector, an arena per CFG branch. */
static void setup_unet(Net *n, const Model *m, const char *stage)
{
    char key[128], err[EDIFF_ERR];
    const char *res, *l5;
    size_t bytes;
    int b;
    const UnetConfig *c;
    snprintf(key, sizeof key, "%s.resolution", stage);
    res = blob_meta(&m->blob, key);
    l5 = blob_meta(&m->blob, "t5.max_tokens");
    if (!res || !l5) die(stage, "no such stage in the blob (or no t5.max_tokens)");
    snprintf(key, sizeof key, "%s.0.unet.", stage);
    if (unet_load(&n->unet, &m->blob, key, err)) die(stage, err);
    c = &n->unet.config;
    n->R = atoi(res);
    n->n_ctx = cond_context_rows(atoi(l5), CLIP_CONTEXT);
    n->x = xmalloc((size_t)c->in_channels * n->R * n->R * sizeof(float));
    n->context = xmalloc((size_t)n->n_ctx * c->context_dim * sizeof(float));
    n->class_vec = xmalloc((size_t)(c->class_embed_dim ? c->class_embed_dim : 1) * sizeof(float));
    fill(n->x, (size_t)c->in_channels * n->R * n->R, 11);
    fill(n->context, (size_t)n->n_ctx * c->context_dim, 12);
    fill(n->class_vec, (size_t)(c->class_embed_dim ? c->class_embed_dim : 1), 13);
    unet_cross_kv(&n->unet, n->context, n->n_ctx, &n->kv);
    bytes = unet_arena_bytes(&n->unet, n->R, n->R, n->n_ctx);
    for (b = 0; b < 2; b++) {
        n->out[b] = xmalloc((size_t)c->out_channels * n->R * n->R * sizeof(float));
        if (arena_init(&n->arena[b], bytes, err)) die(stage, err);
    }
}

/* One CFG branch's forward (a parallel_tasks task): branch b's arena and output, c_noise 0.3. */
static void unet_branch(void *ctx, int b)
{
    Net *n = ctx;
    char err[EDIFF_ERR];
    if (unet_forward(&n->unet, &n->arena[b], n->x, n->R, n->R, 0.3f, n->context, n->n_ctx, &n->kv,
                     n->unet.config.class_embed_dim ? n->class_vec : NULL, NULL, NULL, n->out[b], err))
        die("unet_forward", err);
}

/* The encoders and the prompt's ids, as the pipeline tokenizes it (T5 unpadded, CLIP 77 ids). */
static void setup_encoder(Net *n, const Model *m, const char *kind)
{
    ClipTokenizer ct;
    T5Tokenizer tt;
    char err[EDIFF_ERR];
    size_t len = strlen(m->prompt);
    int t5 = strcmp(kind, "t5") == 0;
    if (tokenizers_open(t5 ? NULL : &ct, t5 ? &tt : NULL, &m->blob, err)) die("tokenizers", err);
    if (t5) {
        const char *l5 = blob_meta(&m->blob, "t5.max_tokens");
        if (t5_tokenize(&tt, m->prompt, len, l5 ? atoi(l5) : 0, &n->ids, err) || t5_load(&n->t5, &m->blob, "t5.", err))
            die("t5", err);
        t5_tokenizer_free(&tt);
        n->out[0] = xmalloc((size_t)n->ids.n * n->t5.cfg.d_model * sizeof(float));
        if (arena_init(&n->arena[0], t5_arena_bytes(&n->t5, n->ids.n), err)) die("t5", err);
    } else {
        if (clip_tokenize(&ct, m->prompt, len, n->clip_ids, err) || clip_text_load(&n->clip, &m->blob, "clip.", err))
            die("clip", err);
        clip_tokenizer_free(&ct);
        n->out[0] = xmalloc((size_t)CLIP_CONTEXT * n->clip.cfg.hidden_size * sizeof(float));
        n->out[1] = xmalloc((size_t)n->clip.cfg.projection_dim * sizeof(float));
        if (arena_init(&n->arena[0], clip_text_arena_bytes(&n->clip, CLIP_CONTEXT), err)) die("clip", err);
    }
}

static void free_net(Net *n)
{
    unet_cross_kv_free(&n->kv);
    unet_free(&n->unet);
    t5_free(&n->t5);
    clip_text_free(&n->clip);
    tokens_free(&n->ids);
    free(n->x); free(n->context); free(n->class_vec); free(n->out[0]); free(n->out[1]);
    arena_free(&n->arena[0]);
    arena_free(&n->arena[1]);
}

static void setup(Case *cs, const Model *m)
{
    int *v = cs->v;
    if (!strcmp(cs->kind, "unet") || !strcmp(cs->kind, "cfg") || !strcmp(cs->kind, "t5") || !strcmp(cs->kind, "clip")) {
        if (!m->open) die(cs->kind, "a model case needs --model BLOB");
        if (cs->stage[0]) setup_unet(&cs->net, m, cs->stage);
        else setup_encoder(&cs->net, m, cs->kind);
    } else if (strcmp(cs->kind, "peak") == 0) {
        cs->peak_iters = 2000000;
        cs->a = xmalloc(16 * PEAK_ROWS * sizeof(float)); fill(cs->a, 16 * PEAK_ROWS, 9);
        cs->b = xmalloc(16 * PEAK_COLS * sizeof(float)); fill(cs->b, 16 * PEAK_COLS, 10);
        cs->flop = peak_flop(cs->peak_iters) * get_threads();
    } else if (strcmp(cs->kind, "gemm") == 0) {             /* M, N, K */
        size_t M = (size_t)v[0], N = (size_t)v[1], K = (size_t)v[2];
        cs->a = xmalloc(M * K * sizeof(float)); fill(cs->a, M * K, 1);
        cs->b = xmalloc(K * N * sizeof(float)); fill(cs->b, K * N, 2);
        cs->c = xmalloc(M * N * sizeof(float));
        cs->flop = 2.0 * (double)M * N * K;
    } else if (strcmp(cs->kind, "conv") == 0) {             /* C, H, W */
        size_t C = (size_t)v[0], HW = (size_t)v[1] * v[2];
        cs->a = xmalloc(C * HW * sizeof(float)); fill(cs->a, C * HW, 3);
        cs->b = xmalloc(C * C * 9 * sizeof(float)); fill(cs->b, C * C * 9, 4);
        cs->d = xmalloc(C * sizeof(float)); fill(cs->d, C, 5);
        cs->c = xmalloc(C * HW * sizeof(float));
        cs->w.dtype = DT_F32; cs->w.rank = 4; cs->w.data = cs->b; cs->w.numel = (int64_t)(C * C * 9);
        cs->w.shape[0] = (int64_t)C; cs->w.shape[1] = (int64_t)C; cs->w.shape[2] = 3; cs->w.shape[3] = 3;
        cs->bias.dtype = DT_F32; cs->bias.rank = 1; cs->bias.data = cs->d; cs->bias.numel = (int64_t)C;
        cs->bias.shape[0] = (int64_t)C;
        cs->flop = 2.0 * (double)C * C * 9 * HW;
    } else {                                                /* attn: Tq, Tk, H, dh */
        size_t Tq = (size_t)v[0], Tk = (size_t)v[1], D = (size_t)v[2] * v[3];
        cs->a = xmalloc(Tq * D * sizeof(float)); fill(cs->a, Tq * D, 6);
        cs->b = xmalloc(Tk * D * sizeof(float)); fill(cs->b, Tk * D, 7);
        cs->d = xmalloc(Tk * D * sizeof(float)); fill(cs->d, Tk * D, 8);
        cs->c = xmalloc(Tq * D * sizeof(float));
        cs->flop = 4.0 * (double)Tq * Tk * D;               /* QKᵀ and PV (causal: all the same) */
    }
}

static void run_once(Case *cs)
{
    int *v = cs->v;
    char err[EDIFF_ERR];
    if (strcmp(cs->kind, "unet") == 0) {
        unet_branch(&cs->net, 0);
    } else if (strcmp(cs->kind, "cfg") == 0) {
        parallel_tasks(2, unet_branch, &cs->net);
    } else if (strcmp(cs->kind, "t5") == 0) {
        if (t5_encode(&cs->net.t5, cs->net.ids.id, NULL, cs->net.ids.n, cs->net.out[0], &cs->net.arena[0], NULL, err))
            die("t5_encode", err);
    } else if (strcmp(cs->kind, "clip") == 0) {
        if (clip_text_encode(&cs->net.clip, cs->net.clip_ids, CLIP_CONTEXT, cs->net.out[0], cs->net.out[1],
                             &cs->net.arena[0], NULL, err))
            die("clip_text_encode", err);
    } else if (strcmp(cs->kind, "peak") == 0) {
        float s = 0.0f;
        OMP(omp parallel reduction(+ : s))
        s += fma_chains(cs->peak_iters, cs->a, cs->b);
        cs->sink += s;
    } else if (strcmp(cs->kind, "gemm") == 0) {
        Mat A = mat_f32(cs->a, v[2], 1), B = mat_f32(cs->b, v[1], 1);
        gemm(v[0], v[1], v[2], &A, &B, cs->c, v[1], 0);
    } else if (strcmp(cs->kind, "conv") == 0) {
        conv2d(cs->c, cs->a, v[0], v[1], v[2], &cs->w, &cs->bias, 1, 1);
    } else {
        long ld = (long)v[2] * v[3];
        AttnBias mask;
        memset(&mask, 0, sizeof mask);
        mask.causal = v[4];
        attention(cs->c, ld, cs->a, ld, cs->b, ld, cs->d, ld, v[0], v[1], v[2], v[3],
                  1.0f / sqrtf((float)v[3]), &mask);
    }
}

/* Times one case (spec) for about budget seconds; prints its line. Returns 0, or -1 for a bad spec. */
static int bench_case(const char *spec, double budget, const Model *m)
{
    static double t[1000];
    Case cs;
    double start;
    int reps = 0;
    if (parse(&cs, spec) != 0 || (strcmp(cs.kind, "peak") && strcmp(cs.kind, "gemm") && strcmp(cs.kind, "conv") &&
                                  strcmp(cs.kind, "attn") && strcmp(cs.kind, "unet") && strcmp(cs.kind, "cfg") &&
                                  strcmp(cs.kind, "t5") && strcmp(cs.kind, "clip"))) {
        fprintf(stderr, "bench: bad case '%s' (peak, gemm:M,N,K, conv:C,H,W, attn:Tq,Tk,H,dh, unet:STAGE, "
                "cfg:STAGE, t5, clip)\n", spec);
        return -1;
    }
    setup(&cs, m);
    run_once(&cs);                                           /* warm-up: caches, page faults */
    start = now();
    while (reps < 1000 && (reps < 3 || now() - start < budget)) {
        double t0 = now();
        run_once(&cs);
        t[reps++] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    printf("%s flop=%.6g median_s=%.6g min_s=%.6g reps=%d threads=%d\n", spec, cs.flop, t[reps / 2], t[0],
           reps, get_threads());
    fflush(stdout);
    free(cs.a); free(cs.b); free(cs.c); free(cs.d);
    free_net(&cs.net);
    return 0;
}

int main(int argc, char **argv)
{
    Model m;
    char err[EDIFF_ERR];
    double budget = 0.25;
    int i, serve = 0, rc = 0;
    memset(&m, 0, sizeof m);
    m.prompt = "a red circle above a blue square";
    for (i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            if (blob_open(&m.blob, argv[++i], err)) die("--model", err);
            m.open = 1;
        } else if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) {
            m.prompt = argv[++i];
        } else if (strcmp(argv[i], "--serve") == 0) {
            serve = 1;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            set_threads(atoi(argv[++i]));
        } else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) {
            budget = atof(argv[++i]);
        } else if (bench_case(argv[i], budget, &m) != 0) {
            rc = 2;
        }
    }
    if (serve && rc == 0) {
        char line[256], spec[200];
        int threads;
        while (rc == 0 && fgets(line, sizeof line, stdin)) {
            if (sscanf(line, "%d %lf %199s", &threads, &budget, spec) != 3) {
                fprintf(stderr, "bench: expected 'THREADS BUDGET CASE', got: %s", line);
                rc = 2;
                break;
            }
            set_threads(threads);
            if (bench_case(spec, budget, &m) != 0) rc = 2;
        }
    }
    if (m.open) blob_close(&m.blob);
    return rc;
}
