/* test/bench.c — times ediff's ops for `make bench`: test/bench.py runs this program beside PyTorch
 * and prints the table; this program only measures. Not part of `make test` (no test depends on
 * timing).
 *
 *   bench [--threads N] [--budget SECONDS] CASE...   time each CASE, one line each
 *   bench --serve                                     read "THREADS BUDGET CASE" lines from stdin,
 *                                                     answer each with one line (bench.py interleaves
 *                                                     ediff and PyTorch runs this way)
 * Cases (shapes as the model uses them):
 *   peak                  FMA throughput of the core(s) on register-resident data (see fma_chains)
 *   gemm:M,N,K            C = A B, f32 row-major
 *   conv:C,H,W            conv2d 3x3, stride 1, pad 1, C -> C channels, f32 weights and bias
 *   attn:Tq,Tk,H,dh[,c]   attention, q/k/v [T, H*dh], scale 1/sqrt(dh); c = 1: causal mask
 * Answer: "CASE flop=F median_s=S min_s=S reps=N threads=T" (flop per call, a multiply-add is 2).
 * Each case runs once to warm up, then repeats until its time budget (default 0.25 s) is spent. */
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

typedef struct {
    char   kind[8];
    int    v[5];
    float *a, *b, *c, *d;       /* operands */
    Tensor w, bias;             /* conv weights (f32, as if from a blob) */
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
        return strcmp(spec, "peak") == 0 ? 0 : -1;
    }
    if (colon - spec >= (long)sizeof cs->kind) return -1;
    memcpy(cs->kind, spec, (size_t)(colon - spec));
    if (sscanf(colon + 1, "%d,%d,%d,%d,%d", &cs->v[0], &cs->v[1], &cs->v[2], &cs->v[3], &cs->v[4]) < 3) return -1;
    for (int i = 0; i < 5; i++) if (cs->v[i] < 0 || cs->v[i] > 65536) return -1;
    return 0;
}

static void setup(Case *cs)
{
    int *v = cs->v;
    if (strcmp(cs->kind, "peak") == 0) {
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
    if (strcmp(cs->kind, "peak") == 0) {
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
static int bench_case(const char *spec, double budget)
{
    static double t[1000];
    Case cs;
    double start;
    int reps = 0;
    if (parse(&cs, spec) != 0 || (strcmp(cs.kind, "peak") && strcmp(cs.kind, "gemm") &&
                                  strcmp(cs.kind, "conv") && strcmp(cs.kind, "attn"))) {
        fprintf(stderr, "bench: bad case '%s' (peak, gemm:M,N,K, conv:C,H,W, attn:Tq,Tk,H,dh)\n", spec);
        return -1;
    }
    setup(&cs);
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
    return 0;
}

int main(int argc, char **argv)
{
    double budget = 0.25;
    int i;
    if (argc == 2 && strcmp(argv[1], "--serve") == 0) {
        char line[256], spec[200];
        int threads;
        while (fgets(line, sizeof line, stdin)) {
            if (sscanf(line, "%d %lf %199s", &threads, &budget, spec) != 3) {
                fprintf(stderr, "bench: expected 'THREADS BUDGET CASE', got: %s", line);
                return 2;
            }
            set_threads(threads);
            if (bench_case(spec, budget) != 0) return 2;
        }
        return 0;
    }
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) set_threads(atoi(argv[++i]));
        else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) budget = atof(argv[++i]);
        else if (bench_case(argv[i], budget) != 0) return 2;
    }
    return 0;
}
