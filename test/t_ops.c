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
    float *a = field(T, ref, op, c, "a", NULL), *c0 = field(T, ref, op, c, "c0", NULL);
    float *want = field(T, ref, op, c, "want", NULL), *out;
    test_name(name, sizeof name, op, c);
    if (selected(T, name) && dims && bt && a && c0 && want) {
        int M = field_int(dims, 0), N = field_int(dims, 1), K = field_int(dims, 2);
        int at = field_int(dims, 3), btr = field_int(dims, 4), acc = field_int(dims, 5);
        Mat A = at ? mat_f32(a, 1, M) : mat_f32(a, K, 1);          /* stored [K,M] when transposed */
        Mat B = btr ? mat_tensor(bt, 1, K) : mat_tensor(bt, N, 1);  /* stored [N,K] when transposed */
        out = xmalloc((size_t)M * N * sizeof(float));
        memcpy(out, c0, (size_t)M * N * sizeof(float));
        gemm(M, N, K, &A, &B, out, N, acc);
        check_close(T, name, out, want, (size_t)M * N, 1e-5, TOL_REL);
        free(out);
    }
    free(a); free(c0); free(want);
}

/* The same GEMM on 1 and 2 threads must give identical bits. */
static void gemm_threads(TestRun *T)
{
    const int M = 97, N = 83, K = 611;
    float *a = xmalloc(sizeof(float) * M * K), *b = xmalloc(sizeof(float) * K * N);
    float *c1 = xmalloc(sizeof(float) * M * N), *c2 = xmalloc(sizeof(float) * M * N);
    int i, before = get_threads();
    Mat A = mat_f32(a, K, 1), B = mat_f32(b, N, 1);
    if (!selected(T, "ops.gemm.threads_bit_identical")) goto done;
    for (i = 0; i < M * K; i++) a[i] = (float)sin(i * 0.37) * 3.0f;
    for (i = 0; i < K * N; i++) b[i] = (float)cos(i * 0.11);
    set_threads(1);
    gemm(M, N, K, &A, &B, c1, N, 0);
    set_threads(2);
    gemm(M, N, K, &A, &B, c2, N, 0);
    set_threads(before);
    report(T, memcmp(c1, c2, sizeof(float) * M * N) == 0, "ops.gemm.threads_bit_identical",
           "97x83x611, 1 vs 2 threads: %s", memcmp(c1, c2, sizeof(float) * M * N) == 0 ? "identical" : "DIFFERENT");
done:
    free(a); free(b); free(c1); free(c2);
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

void suite_ops(TestRun *T)
{
    Blob ref;
    if (open_ref(T, &ref, "ops.bin")) return;
    each_case(T, &ref, "gemm", gemm_case);
    gemm_threads(T);
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
    blob_close(&ref);
}
