/* test/t_ops.c — every op of tensor.c against PyTorch float64 references (test/gen_ops.py).
 * Cases are listed in the reference blob's metadata (cases.OP), so this file walks whatever the
 * generator wrote; each comparison prints its measured error next to its tolerance. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls fn(T, ref, op, case_name) for each case of op listed in the blob. */
static void each_case(TestRun *T, const Blob *ref, const char *op,
                      void (*fn)(TestRun *, const Blob *, const char *, const char *))
{
    char key[64], list[4096], *name, *save;
    const char *v;
    snprintf(key, sizeof key, "cases.%s", op);
    v = blob_meta(ref, key);
    if (!v) { report(T, 0, key, "no cases in the reference blob"); return; }
    snprintf(list, sizeof list, "%s", v);
    for (name = list; name && *name; name = save) {
        save = strchr(name, ',');
        if (save) *save++ = 0;
        fn(T, ref, op, name);
    }
}

/* Reference tensor "OP.CASE.FIELD" (as f32 copy, or as the Tensor itself). */
static float *field(TestRun *T, const Blob *ref, const char *op, const char *c, const char *f, size_t *n)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s.%s", op, c, f);
    return ref_f32(T, ref, key, n);
}

static const Tensor *field_tensor(TestRun *T, const Blob *ref, const char *op, const char *c, const char *f)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s.%s", op, c, f);
    return ref_tensor(T, ref, key);
}

static int field_int(const Tensor *t, int i) { return (int)tensor_at(t, i); }

static void test_name(char *buf, size_t n, const char *op, const char *c) { snprintf(buf, n, "ops.%s.%s", op, c); }

/* ------------------------------------------------------------------ GEMM -------------------------- */

static void gemm_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *dims = field_tensor(T, ref, op, c, "dims"), *bt = field_tensor(T, ref, op, c, "b");
    const Tensor *at = field_tensor(T, ref, op, c, "a");
    float *c0 = field(T, ref, op, c, "c0", NULL);
    float *want = field(T, ref, op, c, "want", NULL), *out;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && dims && at && bt && c0 && want) {
        int M = field_int(dims, 0), N = field_int(dims, 1), K = field_int(dims, 2);
        int atr = field_int(dims, 3), btr = field_int(dims, 4), acc = field_int(dims, 5);
        Mat A = atr ? mat_tensor(at, 1, M) : mat_tensor(at, K, 1);  /* stored [K,M] when transposed */
        Mat B = btr ? mat_tensor(bt, 1, K) : mat_tensor(bt, N, 1);  /* stored [N,K] when transposed */
        out = xmalloc((size_t)M * N * sizeof(float));
        memcpy(out, c0, (size_t)M * N * sizeof(float));
        gemm(M, N, K, &A, &B, out, N, acc);
        check_close(T, name, out, want, (size_t)M * N, 1e-5, TOL_REL);
        free(out);
    }
    free(c0); free(want);
}

/* 1 and 2 threads must give identical bits: the GEMM (split by rows or by columns), a convolution
 * (implicit im2col, split by pixels) and attention (split by head and query block; causal, so the
 * online softmax also crosses a masked key block). */
static void fill_sin(float *x, size_t n, double f)
{
    size_t i;
    for (i = 0; i < n; i++) x[i] = (float)sin((double)i * f);
}

static void threads_identical(TestRun *T)
{
    enum { M = 97, N = 83, K = 611, C = 24, H = 19, W = 23, TQ = 1100, HEADS = 2, DH = 8 };
    size_t nbuf = (size_t)TQ * HEADS * DH * 3 + 2 * (size_t)M * K;
    float *a = xmalloc(nbuf * sizeof(float)), *b = a + (size_t)M * K, *out[2];
    int t, before = get_threads();
    Tensor wt;
    fill_sin(a, nbuf, 0.37);
    memset(&wt, 0, sizeof wt);
    wt.dtype = DT_F32; wt.rank = 4; wt.shape[0] = C; wt.shape[1] = C; wt.shape[2] = 3; wt.shape[3] = 3;
    wt.numel = C * C * 9; wt.data = b;
    out[0] = xmalloc(sizeof(float) * TQ * HEADS * DH * 2);
    out[1] = out[0] + TQ * HEADS * DH;
    if (selected(T, "ops.threads.gemm")) {
        Mat A = mat_f32(a, K, 1), B = mat_f32(b, N, 1), Bt = mat_f32(b, 1, K);
        for (t = 0; t < 2; t++) {
            set_threads(t + 1);
            gemm(M, N, K, &A, &B, out[t], N, 0);
            gemm(M, N, K, &A, &Bt, out[t], N, 1);
        }
        report(T, memcmp(out[0], out[1], sizeof(float) * M * N) == 0, "ops.threads.gemm",
               "%dx%dx%d, 1 vs 2 threads: %s", M, N, K, memcmp(out[0], out[1], sizeof(float) * M * N) ? "DIFFERENT" : "identical");
    }
    if (selected(T, "ops.threads.conv2d")) {
        for (t = 0; t < 2; t++) {
            set_threads(t + 1);
            conv2d(out[t], a, C, H, W, &wt, NULL, 1, 1);
        }
        report(T, memcmp(out[0], out[1], sizeof(float) * C * H * W) == 0, "ops.threads.conv2d",
               "%dx%dx%d 3x3, 1 vs 2 threads: %s", C, H, W, memcmp(out[0], out[1], sizeof(float) * C * H * W) ? "DIFFERENT" : "identical");
    }
    if (selected(T, "ops.threads.attention")) {
        const float *q = a, *k = a + TQ * HEADS * DH, *v = k + TQ * HEADS * DH;
        AttnBias mask;
        memset(&mask, 0, sizeof mask);
        mask.causal = 1;
        for (t = 0; t < 2; t++) {
            set_threads(t + 1);
            attention(out[t], HEADS * DH, q, HEADS * DH, k, HEADS * DH, v, HEADS * DH, TQ, TQ, HEADS, DH, 0.35f, &mask);
        }
        report(T, memcmp(out[0], out[1], sizeof(float) * TQ * HEADS * DH) == 0, "ops.threads.attention",
               "T %d, %d heads of %d, causal, 1 vs 2 threads: %s", TQ, HEADS, DH,
               memcmp(out[0], out[1], sizeof(float) * TQ * HEADS * DH) ? "DIFFERENT" : "identical");
    }
    set_threads(before);
    free(a);
    free(out[0]);
}

/* The passes over memory go parallel only above PAR_WORK: each op here runs on sizes past its threshold
 * (2^18 elements; 2^20 for nearest upsampling), 1 and 2 threads, identical bits required. */
static Tensor vector_tensor(const float *p, int n)
{
    Tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = DT_F32; t.rank = 1; t.shape[0] = n; t.numel = n; t.data = p;
    return t;
}

static void passes_identical(TestRun *T)
{
    enum { C = 64, HW = 4096, N = C * HW, UP = 4 * 512 * 512 };
    float *x = xmalloc((size_t)N * sizeof(float)), *par = xmalloc((size_t)C * 2 * sizeof(float)), *out[2];
    Tensor gamma = vector_tensor(par, C), beta = vector_tensor(par + C, C), lnw = vector_tensor(x, 1024);
    int t, k, before = get_threads(), same = 1;
    char which[256] = "";
    if (!selected(T, "ops.threads.passes")) goto done;
    fill_sin(x, N, 0.0173);
    fill_sin(par, 2 * C, 0.91);
    out[0] = xmalloc((size_t)UP * sizeof(float));
    out[1] = xmalloc((size_t)UP * sizeof(float));
    for (k = 0; k < 8; k++) {
        static const char *name[8] = {"group_norm+silu", "layer_norm", "rms_norm", "softmax_rows", "gelu",
                                      "resize_bilinear", "upsample_nearest", "vec_exp"};
        size_t n = k == 5 ? (size_t)C * 64 * 64 : k == 6 ? UP : N;
        for (t = 0; t < 2; t++) {
            set_threads(t + 1);
            memcpy(out[t], x, (size_t)N * sizeof(float));
            switch (k) {
            case 0: group_norm(out[t], x, C, HW, 32, 1e-5f, &gamma, &beta, 1); break;
            case 1: layer_norm(out[t], x, N / 1024, 1024, 1e-5f, &lnw, NULL); break;
            case 2: rms_norm(out[t], x, N / 1024, 1024, 1e-6f, &lnw); break;
            case 3: softmax_rows(out[t], N / 111, 111); break;
            case 4: activate(ACT_GELU, out[t], N); break;
            case 5: resize_bilinear(out[t], x, C, 32, 32, 64, 64, 0); break;
            case 6: upsample_nearest(out[t], x, 4, 256, 256, 512, 512); break;
            default: vec_exp(out[t], N); break;
            }
        }
        if (memcmp(out[0], out[1], n * sizeof(float)) != 0) {
            same = 0;
            snprintf(which + strlen(which), sizeof which - strlen(which), " %s", name[k]);
        }
    }
    report(T, same, "ops.threads.passes", "group_norm+silu, layer_norm, rms_norm, softmax, gelu, resize_bilinear, "
           "upsample_nearest, vec_exp past PAR_WORK, 1 vs 2 threads: %s%s", same ? "identical" : "DIFFERENT:", which);
    free(out[0]);
    free(out[1]);
done:
    set_threads(before);
    free(x);
    free(par);
}

/* parallel_tasks: every task runs once, with its share of the threads (2 threads, 2 tasks: 1 each),
 * and the GEMMs inside give the bits they give when run in turn. */
typedef struct {
    const float *a, *b;
    float       *c[3];
    int          runs[3], threads[3];
} Tasks;

static void gemm_task(void *ctx, int i)
{
    Tasks *t = ctx;
    Mat A = mat_f32(t->a + i, 300, 1), B = mat_f32(t->b, 200, 1);
    t->runs[i]++;
    t->threads[i] = get_threads();
    gemm(128, 200, 300, &A, &B, t->c[i], 200, 0);
}

static void tasks_identical(TestRun *T)
{
    size_t nc = 128 * 200;
    float *a = xmalloc((128 * 300 + 2 + 300 * 200) * sizeof(float)), *c = xmalloc(6 * nc * sizeof(float));
    Tasks par, seq;
    int i, before = get_threads(), ok;
    if (!selected(T, "ops.threads.tasks")) goto done;
    fill_sin(a, 128 * 300 + 2 + 300 * 200, 0.29);
    memset(&par, 0, sizeof par);
    par.a = a; par.b = a + 128 * 300 + 2;
    seq = par;
    for (i = 0; i < 3; i++) { par.c[i] = c + i * nc; seq.c[i] = c + (3 + i) * nc; }
    set_threads(2);
    parallel_tasks(2, gemm_task, &par);
    set_threads(1);
    for (i = 0; i < 2; i++) gemm_task(&seq, i);
    ok = par.runs[0] == 1 && par.runs[1] == 1 && par.runs[2] == 0 && par.threads[0] == 1 && par.threads[1] == 1 &&
         memcmp(c, c + 3 * nc, 2 * nc * sizeof(float)) == 0;
    report(T, ok, "ops.threads.tasks", "2 tasks on 2 threads: runs %d/%d, threads seen %d/%d, GEMMs %s", par.runs[0],
           par.runs[1], par.threads[0], par.threads[1], memcmp(c, c + 3 * nc, 2 * nc * sizeof(float)) ? "DIFFERENT" : "identical");
done:
    set_threads(before);
    free(a);
    free(c);
}

/* ------------------------------------------------------------------ layers ------------------------ */

static void linear_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *w = field_tensor(T, ref, op, c, "w"), *b = field_tensor(T, ref, op, c, "b");
    const Tensor *xt = field_tensor(T, ref, op, c, "x");
    float *x = field(T, ref, op, c, "x", NULL), *want = field(T, ref, op, c, "want", NULL), *y;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && w && b && xt && x && want) {
        int n = (int)xt->shape[0], in = (int)xt->shape[1], out = (int)w->shape[0];
        y = xmalloc(sizeof(float) * n * out);
        linear(y, x, n, in, w, b);
        check_close(T, name, y, want, (size_t)n * out, 1e-5, TOL_REL);
        free(y);
    }
    free(x); free(want);
}

static void conv_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *w = field_tensor(T, ref, op, c, "w"), *b = field_tensor(T, ref, op, c, "b");
    const Tensor *xt = field_tensor(T, ref, op, c, "x"), *p = field_tensor(T, ref, op, c, "params");
    float *x = field(T, ref, op, c, "x", NULL), *want = field(T, ref, op, c, "want", NULL), *y;
    size_t nwant = 0;
    test_name(name, sizeof name, op, c);
    free(want);
    want = field(T, ref, op, c, "want", &nwant);
    if (selected(T, name) && w && b && xt && p && x && want) {
        y = xmalloc(sizeof(float) * nwant);
        conv2d(y, x, (int)xt->shape[0], (int)xt->shape[1], (int)xt->shape[2], w,
               field_int(p, 2) ? b : NULL, field_int(p, 0), field_int(p, 1));
        check_close(T, name, y, want, nwant, 1e-5, TOL_REL);
        if (field_int(p, 1) > 0) {          /* the GEMM's own zero padding (conv2d pads a copy instead) */
            int cin = (int)xt->shape[0], h = (int)xt->shape[1], wd = (int)xt->shape[2], s = field_int(p, 0);
            int cout = (int)w->shape[0], k = (int)w->shape[2], pad = field_int(p, 1), co;
            int hout = conv_out_size(h, k, s, pad), wout = conv_out_size(wd, k, s, pad);
            Mat A = mat_tensor(w, (long)cin * k * k, 1), B;
            memset(&B, 0, sizeof B);
            B.kind = MAT_IM2COL; B.dtype = DT_F32; B.p = x; B.cin = cin; B.h = h; B.w = wd; B.kh = k; B.kw = k;
            B.stride = s; B.pad = pad; B.dil = 1; B.hout = hout; B.wout = wout;
            gemm(cout, hout * wout, cin * k * k, &A, &B, y, (long)hout * wout, 0);
            for (co = 0; co < cout && field_int(p, 2); co++)
                for (long i = 0; i < (long)hout * wout; i++) y[co * hout * wout + i] += tensor_at(b, co);
            snprintf(name, sizeof name, "ops.conv2d_im2col_pad.%s", c);
            check_close(T, name, y, want, nwant, 1e-5, TOL_REL);
        }
        free(y);
    }
    free(x); free(want);
}

/* ------------------------------------------------------------------ attention --------------------- */

static void attention_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *d = field_tensor(T, ref, op, c, "dims"), *s = field_tensor(T, ref, op, c, "scales");
    float *q = field(T, ref, op, c, "q", NULL), *k = field(T, ref, op, c, "k", NULL);
    float *v = field(T, ref, op, c, "v", NULL), *want = field(T, ref, op, c, "want", NULL);
    float *bias = NULL, *out;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && d && s && q && k && v && want) {
        int Tq = field_int(d, 0), Tk = field_int(d, 1), H = field_int(d, 2), dh = field_int(d, 3);
        AttnBias ab;
        memset(&ab, 0, sizeof ab);
        ab.causal = field_int(d, 4);
        ab.add_times_max = field_int(d, 5);
        if (field_int(d, 6)) {
            bias = field(T, ref, op, c, "bias", NULL);
            ab.add = bias;
            ab.hs = field_int(d, 7); ab.qs = field_int(d, 8); ab.ks = field_int(d, 9);
            ab.add_scale = tensor_at(s, 1);
        }
        out = xmalloc(sizeof(float) * Tq * H * dh);
        attention(out, H * dh, q, H * dh, k, H * dh, v, H * dh, Tq, Tk, H, dh, tensor_at(s, 0), &ab);
        check_close(T, name, out, want, (size_t)Tq * H * dh, 1e-5, TOL_ABS);
        free(out);
    }
    free(q); free(k); free(v); free(want); free(bias);
}

/* ------------------------------------------------------------------ norms and pointwise ----------- */

static void norm_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *xt = field_tensor(T, ref, op, c, "x");
    float *x = field(T, ref, op, c, "x", NULL), *want = field(T, ref, op, c, "want", NULL), *y;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && xt && x && want) {
        int rows = (int)xt->shape[0], dim = (int)xt->shape[1];
        y = xmalloc(sizeof(float) * rows * dim);
        if (strcmp(op, "group_norm") == 0) {
            const Tensor *p = field_tensor(T, ref, op, c, "params");
            group_norm(y, x, rows, dim, field_int(p, 2), 1e-5f, field_tensor(T, ref, op, c, "g"),
                       field_tensor(T, ref, op, c, "b"), field_int(p, 3));
        } else if (strcmp(op, "layer_norm") == 0) {
            layer_norm(y, x, rows, dim, 1e-5f, field_tensor(T, ref, op, c, "w"), field_tensor(T, ref, op, c, "b"));
        } else if (strcmp(op, "rms_norm") == 0) {
            rms_norm(y, x, rows, dim, 1e-6f, field_tensor(T, ref, op, c, "w"));
        } else {
            memcpy(y, x, sizeof(float) * rows * dim);
            softmax_rows(y, rows, dim);
        }
        check_close(T, name, y, want, (size_t)rows * dim, 2e-6, TOL_ABS);
        free(y);
    }
    free(x); free(want);
}

static void activation_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128], act[32];
    size_t n = 0;
    float *x = field(T, ref, op, c, "x", &n), *want = field(T, ref, op, c, "want", NULL);
    test_name(name, sizeof name, op, c);
    snprintf(act, sizeof act, "%.*s", (int)strcspn(c, "."), c);
    if (selected(T, name) && x && want) {
        activate(act_from_name(act), x, n);
        check_close(T, name, x, want, n, 2e-6, TOL_ABS);
    }
    free(x); free(want);
}

static void resample_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *p = field_tensor(T, ref, op, c, "params");
    size_t n = 0;
    float *x = field(T, ref, op, c, "x", NULL), *want = field(T, ref, op, c, "want", &n), *y;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && p && x && want) {
        y = xmalloc(sizeof(float) * n);
        if (strcmp(op, "upsample_nearest") == 0)
            upsample_nearest(y, x, field_int(p, 0), field_int(p, 1), field_int(p, 2), field_int(p, 3),
                             field_int(p, 4));
        else if (strcmp(op, "resize_bilinear") == 0)
            resize_bilinear(y, x, field_int(p, 0), field_int(p, 1), field_int(p, 2), field_int(p, 3),
                            field_int(p, 4), field_int(p, 5));
        else
            avg_pool2d(y, x, field_int(p, 0), field_int(p, 1), field_int(p, 2), field_int(p, 3), field_int(p, 4));
        check_close(T, name, y, want, n, 1e-6, TOL_ABS);
        free(y);
    }
    free(x); free(want);
}

static void embedding_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *table = field_tensor(T, ref, op, c, "table"), *ids = field_tensor(T, ref, op, c, "ids");
    size_t n = 0;
    float *want = field(T, ref, op, c, "want", &n), *y;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && table && ids && want) {
        y = xmalloc(sizeof(float) * n);
        embedding(y, table, (const int32_t *)ids->data, (int)ids->numel);
        check_close(T, name, y, want, n, 0.0, TOL_ABS);
        free(y);
    }
    free(want);
}

static void concat_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *at = field_tensor(T, ref, op, c, "a"), *bt = field_tensor(T, ref, op, c, "b");
    size_t n = 0;
    float *a = field(T, ref, op, c, "a", NULL), *b = field(T, ref, op, c, "b", NULL);
    float *want = field(T, ref, op, c, "want", &n), *y;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && at && bt && a && b && want) {
        y = xmalloc(sizeof(float) * n);
        concat_channels(y, a, (int)at->shape[0], b, (int)bt->shape[0], (int)at->shape[1]);
        check_close(T, name, y, want, n, 0.0, TOL_ABS);
        free(y);
    }
    free(a); free(b); free(want);
}

static void timestep_embedding_case(TestRun *T, const Blob *ref, const char *op, const char *c)
{
    char name[128];
    const Tensor *p = field_tensor(T, ref, op, c, "params");
    size_t n = 0;
    float *want = field(T, ref, op, c, "want", &n), *y;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && p && want) {
        y = xmalloc(sizeof(float) * n);
        timestep_embedding(y, (float)((const double *)p->data)[0], field_int(p, 1), field_int(p, 2),
                           (float)((const double *)p->data)[3]);
        check_close(T, name, y, want, n, ((const double *)p->data)[4], TOL_ABS);
        free(y);
    }
    free(want);
}

/* ------------------------------------------------------------------ half precision ---------------- */

static void conversions(TestRun *T, const Blob *ref)
{
    const Tensor *f16w = ref_tensor(T, ref, "convert.f16.want"), *bf16w = ref_tensor(T, ref, "convert.bf16.want");
    const Tensor *x = ref_tensor(T, ref, "convert.f32_to_f16.x"), *w = ref_tensor(T, ref, "convert.f32_to_f16.want");
    int i, bad = 0;
    if (f16w && selected(T, "ops.convert.f16_to_f32")) {
        for (i = 0, bad = 0; i < 65536; i++) {
            float got = f16_to_f32((uint16_t)i), want = tensor_at(f16w, i);
            if (!(got == want || (got != got && want != want))) bad++;
        }
        report(T, bad == 0, "ops.convert.f16_to_f32", "all 65536 halves, %d mismatches (exact)", bad);
    }
    if (bf16w && selected(T, "ops.convert.bf16_to_f32")) {
        for (i = 0, bad = 0; i < 65536; i++) {
            float got = bf16_to_f32((uint16_t)i), want = tensor_at(bf16w, i);
            if (!(got == want || (got != got && want != want))) bad++;
        }
        report(T, bad == 0, "ops.convert.bf16_to_f32", "all 65536 bfloat16s, %d mismatches (exact)", bad);
    }
    if (x && w && selected(T, "ops.convert.f32_to_f16")) {
        for (i = 0, bad = 0; i < x->numel; i++)
            if (f32_to_f16(tensor_at(x, i)) != (uint16_t)tensor_at(w, i)) bad++;
        report(T, bad == 0, "ops.convert.f32_to_f16", "%lld values incl. ties/subnormals/overflow, %d mismatches (exact)",
               (long long)x->numel, bad);
    }
}

/* vec_exp against exp() in double over the whole float range where exp is neither 0 nor inf, in ulps
 * of the correctly rounded result (subnormal results: in units of the smallest subnormal), and at the
 * special values. */
static void exp_accuracy(TestRun *T)
{
    enum { N = 400000 };
    float *x, *y;
    double worst = 0.0, at = 0.0;
    int i, special_ok;
    if (!selected(T, "ops.vec_exp")) return;
    x = xmalloc(sizeof(float) * (N + 5));
    y = xmalloc(sizeof(float) * (N + 5));
    for (i = 0; i < N; i++) x[i] = -104.5f + 194.0f * (float)i / N;        /* -104.5 .. 89.5 */
    x[N] = -INFINITY; x[N + 1] = INFINITY; x[N + 2] = NAN; x[N + 3] = 0.0f; x[N + 4] = -200.0f;
    memcpy(y, x, sizeof(float) * (N + 5));
    vec_exp(y, N + 5);
    for (i = 0; i < N; i++) {
        double ref = exp((double)x[i]), rf = (float)ref, ulp, err;
        if (isinf(rf)) { if (!isinf(y[i])) worst = INFINITY; continue; }
        ulp = fabs(rf) < ldexp(1.0, -126) ? ldexp(1.0, -149) : ldexp(1.0, ilogb(rf) - 23);
        err = fabs((double)y[i] - ref) / ulp;
        if (!(err <= worst)) { worst = err; at = x[i]; }
    }
    special_ok = y[N] == 0.0f && isinf(y[N + 1]) && y[N + 1] > 0 && isnan(y[N + 2]) && y[N + 3] == 1.0f && y[N + 4] == 0.0f;
    report(T, worst <= 2.0 && special_ok, "ops.vec_exp", "max %.2f ulp (at %.6g; tol 2) over [-104.5, 89.5], "
           "exp(-inf, inf, nan, 0, -200) %s", worst, at, special_ok ? "right" : "WRONG");
    free(x);
    free(y);
}

void suite_ops(TestRun *T)
{
    Blob ref;
    if (open_ref(T, &ref, "ops.bin")) return;
    each_case(T, &ref, "gemm", gemm_case);
    threads_identical(T);
    passes_identical(T);
    tasks_identical(T);
    each_case(T, &ref, "linear", linear_case);
    each_case(T, &ref, "conv2d", conv_case);
    each_case(T, &ref, "attention", attention_case);
    each_case(T, &ref, "group_norm", norm_case);
    each_case(T, &ref, "layer_norm", norm_case);
    each_case(T, &ref, "rms_norm", norm_case);
    each_case(T, &ref, "softmax", norm_case);
    each_case(T, &ref, "activation", activation_case);
    each_case(T, &ref, "upsample_nearest", resample_case);
    each_case(T, &ref, "resize_bilinear", resample_case);
    each_case(T, &ref, "avg_pool2d", resample_case);
    each_case(T, &ref, "embedding", embedding_case);
    each_case(T, &ref, "concat_channels", concat_case);
    each_case(T, &ref, "timestep_embedding", timestep_embedding_case);
    conversions(T, &ref);
    exp_accuracy(T);
    blob_close(&ref);
}
