/* test/t_dump.c — ediff --dump (dump.c, docs/crosscheck.md), without Python:
 *   glob, steps, filter   the name patterns and --dump-steps lists
 *   npy                   f32/f64/i32 files: numpy's header, read back exactly
 *   run                   a dump of the toy pipeline: run.json names every tensor written, in order, each file
 *                         is there; the names of the scheme (token ids = the tokenizers', per-call tensors only
 *                         in the steps --dump-steps selects, every step's sample); the dumped quantities are
 *                         the sampler's own: D_cond = c_skip x + c_out F, D = D_u + w (D_c - D_u), Heun's
 *                         step from the two calls' x and D gives the dumped sample, x_0 = sigma_0 n, the last
 *                         sample clamped is the stage output, SR's z_lr = up(base out) + sigma_aug n_aug; the
 *                         expert is the one whose range holds sigma (the blob's table); the PNG is the same
 *                         bytes as without --dump
 *   filter, stochastic    --dump-filter and --dump-steps select exactly; euler_a dumps each step's noise
 * (weights/crosscheck.py and test/test_crosscheck.py compare the same files with PyTorch.) */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL "--model test/ref/pipeline.bin"

/* Runs `ediff ARGS` (OMP_WAIT_POLICY=passive, as test/t_cli.c does); its exit status. */
static int ediff(const TestRun *T, const char *args)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s %s", T->ediff, args);
    return run_cmd(cmd, out, sizeof out);
}

static void test_glob(TestRun *T)
{
    static const struct { const char *pattern, *text; int match; } cases[] = {
        {"*", "", 1}, {"*", "a/b.c", 1}, {"a*", "abc", 1}, {"a*", "bac", 0}, {"*c", "abc", 1}, {"a?c", "abc", 1},
        {"a?c", "ac", 0}, {"*/denoised", "base/step00/call0/cond/denoised", 1}, {"*/denoised", "base/denoised/x", 0},
        {"base/*/call?/x", "base/step03/call1/x", 1}, {"*attn2", "x.attn2.to_k", 0}, {"*a*b*c", "xaxbxbxc", 1},
        {"*a*b*c", "xaxcxb", 0}, {"**", "abc", 1}, {"abc", "abc", 1}, {"abc", "abcd", 0}, {"", "", 1}, {"", "a", 0}};
    int i, bad = 0, n = (int)(sizeof cases / sizeof cases[0]);
    if (!selected(T, "dump.glob")) return;
    for (i = 0; i < n; i++)
        if (glob_match(cases[i].pattern, cases[i].text) != cases[i].match) {
            bad++;
            printf("      glob_match('%s', '%s') = %d\n", cases[i].pattern, cases[i].text, !cases[i].match);
        }
    report(T, bad == 0, "dump.glob", "%d cases, %d wrong", n, bad);
}

static void test_steps(TestRun *T)
{
    static const struct { const char *spec; int steps; const char *want; } cases[] = {
        {"0,last", 4, "0,3"}, {"0,last", 1, "0"}, {"all", 3, "0,1,2"}, {"none", 3, ""}, {"1-2", 5, "1,2"},
        {"2-last", 5, "2,3,4"}, {"7", 5, ""}, {"3,1,none", 4, "1,3"}, {"0-0,last,last", 2, "0,1"}};
    static const char *const bad[] = {"", "x", "1,", ",1", "1-", "-1", "last-2", "2-x", "1.5", "10000", "all1"};
    Dumper d;
    char err[EDIFF_ERR], got[64];
    int i, s, wrong = 0, refused = 0;
    if (!selected(T, "dump.steps")) return;
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        got[0] = 0;
        if (dump_init(&d, "x", NULL, cases[i].spec, err)) {
            wrong++;
            continue;
        }
        for (s = 0; s < cases[i].steps; s++)
            if (dump_step_wanted(&d, s, cases[i].steps)) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", got[0] ? "," : "", s);
        if (strcmp(got, cases[i].want)) {
            wrong++;
            printf("      --dump-steps %s with %d steps: %s (want %s)\n", cases[i].spec, cases[i].steps, got, cases[i].want);
        }
    }
    for (i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) refused += dump_init(&d, "x", NULL, bad[i], err) != 0;
    dump_init(&d, NULL, NULL, "all", err);
    report(T, !wrong && refused == (int)(sizeof bad / sizeof bad[0]) && !dump_step_wanted(&d, 0, 1), "dump.steps",
           "%d lists selected right (%d wrong), %d of %d bad lists refused, nothing selected when off",
           (int)(sizeof cases / sizeof cases[0]) - wrong, wrong, refused, (int)(sizeof bad / sizeof bad[0]));
}

static void test_filter(TestRun *T)
{
    Dumper d;
    char err[EDIFF_ERR];
    int ok;
    if (!selected(T, "dump.filter")) return;
    dump_init(&d, "x", NULL, NULL, err);
    ok = dump_wanted(&d, "anything");
    dump_init(&d, "x", "attn2,*/sample", NULL, err);
    ok &= dump_wanted(&d, "base/step00/call0/cond/base.0.unet.mid_block.attentions.0.transformer_blocks.0.attn2");
    ok &= dump_wanted(&d, "base/step03/sample") && !dump_wanted(&d, "base/step03/sample/x");
    ok &= !dump_wanted(&d, "prompt/t5.encoder.block.0");
    dump_init(&d, NULL, NULL, NULL, err);
    ok &= !dump_wanted(&d, "anything");
    report(T, ok, "dump.filter", "no filter: all; 'attn2,*/sample': a substring or a whole-name wildcard; off: none");
}

/* A float32 view of DIR/NAME.npy (any dtype ediff writes); NULL if it cannot be read. */
static float *load(const char *dir, const char *name, int *rank, int64_t *shape, int64_t *n)
{
    char path[512], err[EDIFF_ERR];
    float *x = NULL;
    int d;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (npy_read(path, &x, rank, shape, (int64_t)1 << 26, err)) return NULL;
    for (*n = 1, d = 0; d < *rank; d++) *n *= shape[d];
    return x;
}

static void test_npy(TestRun *T)
{
    const double f8[3] = {0.1, -2.5e300, 80.0};
    const int32_t i4[2] = {49406, -7};
    const float f4[2] = {1.5f, -0.25f};
    const int64_t s3[1] = {3}, s2[2] = {1, 2}, s0[1] = {0};
    char err[EDIFF_ERR];
    unsigned char *raw;
    size_t len;
    float *x;
    int rank, ok;
    int64_t shape[MAX_RANK], n;
    if (!selected(T, "dump.npy")) return;
    ok = npy_write_dtype("test/out/dump_f8.npy", f8, DT_F64, 1, s3, err) == 0 &&
         npy_write_dtype("test/out/dump_i4.npy", i4, DT_I32, 2, s2, err) == 0 &&
         npy_write_dtype("test/out/dump_f4.npy", f4, DT_F32, 0, s0, err) == 0 &&
         npy_write_dtype("test/out/dump_u8.npy", f4, DT_U8, 1, s3, err) == -1;
    raw = read_file("test/out/dump_f8.npy", &len);
    ok &= raw && len == 128 + 24 && memcmp(raw, "\x93NUMPY\x01\x00\x76\x00", 10) == 0 &&
          strstr((char *)raw + 10, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }") && raw[127] == '\n' &&
          memcmp(raw + 128, f8, sizeof f8) == 0;
    free(raw);
    raw = read_file("test/out/dump_i4.npy", &len);
    ok &= raw && len == 128 + 8 && strstr((char *)raw + 10, "'descr': '<i4'") && strstr((char *)raw + 10, "'shape': (1, 2,), ");
    free(raw);
    raw = read_file("test/out/dump_f4.npy", &len);
    ok &= raw && len == 128 + 4 && strstr((char *)raw + 10, "'shape': (), ");   /* rank 0: one element */
    free(raw);
    x = load("test/out", "dump_i4", &rank, shape, &n);
    ok &= x && rank == 2 && n == 2 && x[0] == 49406.0f && x[1] == -7.0f;
    free(x);
    report(T, ok, "dump.npy", "<f8 [3], <i4 [1,2], <f4 [] written with numpy's 128-byte header and the exact bytes; "
           "u8 refused; <i4 read back");
}

/* ------------------------------------------------------------------ a dump of the toy pipeline ---- */

/* The manifest of DIR/run.json: its "tensors" names (no escapes in them), joined by '\n'; NULL if absent. */
static char *manifest(const char *dir, int *count)
{
    char path[256], *text, *p, *out, *o;
    size_t len;
    snprintf(path, sizeof path, "%s/run.json", dir);
    *count = 0;
    if (!(text = (char *)read_file(path, &len)) || !(p = strstr(text, "\"tensors\": ["))) {
        free(text);
        return NULL;
    }
    out = o = xmalloc(len + 1);
    for (p += 12; (p = strchr(p, '"')); p++) {
        char *end = strchr(p + 1, '"');
        if (!end) break;
        memcpy(o, p + 1, (size_t)(end - p - 1));
        o += end - p - 1;
        *o++ = '\n';
        (*count)++;
        p = end;
    }
    *o = 0;
    free(text);
    return out;
}

static int listed(const char *list, const char *name)
{
    const char *p = list;
    size_t n = strlen(name);
    while ((p = strstr(p, name))) {
        if ((p == list || p[-1] == '\n') && p[n] == '\n') return 1;
        p += n;
    }
    return 0;
}

/* Every listed name has its file; count them. */
static int files_present(const char *dir, const char *list, int *missing)
{
    char name[512], path[600];
    const char *p;
    int n = 0;
    FILE *f;
    *missing = 0;
    for (p = list; *p;) {
        size_t len = strcspn(p, "\n");
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        snprintf(path, sizeof path, "%s/%s.npy", dir, name);
        if ((f = fopen(path, "rb"))) fclose(f), n++;
        else (*missing)++;
        p += len + (p[len] == '\n');
    }
    return n;
}

/* A one-element tensor SCOPE/NAME; NaN if absent. */
static double scalar(const char *dir, const char *scope, const char *name)
{
    char full[256];
    int rank;
    int64_t shape[MAX_RANK], n;
    float *x;
    double v;
    snprintf(full, sizeof full, "%s/%s", scope, name);
    if (!(x = load(dir, full, &rank, shape, &n)) || n != 1) {
        free(x);
        return NAN;
    }
    v = x[0];
    free(x);
    return v;
}

/* DIR/NAME (fmt with one %s, the call scope) as floats; n its size. */
static float *get(const char *dir, const char *fmt, const char *scope, int64_t *n)
{
    char name[256];
    int rank;
    int64_t shape[MAX_RANK];
    float *x;
    snprintf(name, sizeof name, fmt, scope);
    x = load(dir, name, &rank, shape, n);
    if (!x) *n = 0;
    return x;
}

static double max_rel(const float *a, const double *b, int64_t n)
{
    double e = 0, s = 1e-30;
    int64_t i;
    for (i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) > e) e = fabs(a[i] - b[i]);
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    return e / s;
}

/* The quantities of base step 0 (Heun: two calls) and what ties them together. */
static void check_base_step0(TestRun *T, const char *dir, double w)
{
    static const char *const names[] = {"x", "c_skip", "c_out", "cond/denoised", "uncond/denoised", "denoised",
                                        "cond/base.2.unet.conv_out"};
    float *v[2][7];
    double s[2], *want, e_precond = 0, e_cfg = 0, e_euler, e_heun, e_noise, sigma0;
    int64_t n = 0, m, i;
    int c, j, complete = 1;
    char scope[64];
    float *sample, *noise, *sig;
    for (c = 0; c < 2; c++) {
        snprintf(scope, sizeof scope, "base/step00/call%d", c);
        for (j = 0; j < 7; j++) {
            char fmt[96];
            snprintf(fmt, sizeof fmt, "%%s/%s", names[j]);
            v[c][j] = get(dir, fmt, scope, &m);
            if (!v[c][j] || (j != 1 && j != 2 && n && m != n)) complete = 0;
            if (j == 0) n = m;
        }
        s[c] = scalar(dir, scope, "sigma");
    }
    sample = get(dir, "%s/step00/sample", "base", &m);
    noise = get(dir, "%s/noise", "base", &m);
    sig = get(dir, "%s/sigmas", "base", &m);
    if (!complete || !sample || !noise || !sig || n == 0) {
        report(T, 0, "dump.run.consistent", "base step 0: a dumped tensor is missing or has the wrong size");
        goto done;
    }
    want = xmalloc((size_t)n * sizeof(double));
    for (c = 0; c < 2; c++) {             /* D_cond = c_skip x + c_out F ; D = D_u + w (D_c - D_u) */
        double e;
        for (i = 0; i < n; i++) want[i] = (double)v[c][1][0] * v[c][0][i] + (double)v[c][2][0] * v[c][6][i];
        if ((e = max_rel(v[c][3], want, n)) > e_precond) e_precond = e;
        for (i = 0; i < n; i++) want[i] = v[c][4][i] + w * ((double)v[c][3][i] - v[c][4][i]);
        if ((e = max_rel(v[c][5], want, n)) > e_cfg) e_cfg = e;
    }
    for (i = 0; i < n; i++)               /* Heun's predictor: x_1 = x_0 + (s1 - s0) d_0 */
        want[i] = v[0][0][i] + (s[1] - s[0]) * ((double)v[0][0][i] - v[0][5][i]) / s[0];
    e_euler = max_rel(v[1][0], want, n);
    for (i = 0; i < n; i++) {             /* and the corrector: x = x_0 + (s1 - s0) (d_0 + d_1) / 2 */
        double d0 = ((double)v[0][0][i] - v[0][5][i]) / s[0], d1 = ((double)v[1][0][i] - v[1][5][i]) / s[1];
        want[i] = v[0][0][i] + (s[1] - s[0]) * (d0 + d1) / 2;
    }
    e_heun = max_rel(sample, want, n);
    sigma0 = sig[0];
    for (i = 0; i < n; i++) want[i] = sigma0 * noise[i];
    e_noise = max_rel(v[0][0], want, n);
    report(T, e_precond < 1e-5 && e_cfg < 1e-5 && e_euler < 1e-5 && e_heun < 1e-5 && e_noise < 1e-6 &&
           s[0] == (float)sig[0] && s[1] == (float)sig[1], "dump.run.consistent",
           "base step 0: D_cond = c_skip x + c_out conv_out %.1e, D = D_u + w(D_c - D_u) %.1e, call1 x = Euler "
           "predictor %.1e, sample = Heun step %.1e, x_0 = sigma_0 n %.1e (max-rel, tol 1e-5); sigmas = schedule",
           e_precond, e_cfg, e_euler, e_heun, e_noise);
    free(want);
done:
    for (c = 0; c < 2; c++)
        for (j = 0; j < 7; j++) free(v[c][j]);
    free(sample);
    free(noise);
    free(sig);
}

/* The last sample clamped = the output; SR's z_lr = bilinear up(base out) + sigma_aug n_aug. */
static void check_outputs(TestRun *T, const char *dir, const Blob *model)
{
    int64_t n, m, k, i;
    float *last = get(dir, "%s/step03/sample", "base", &n), *out = get(dir, "%s/out", "base", &m);
    float *z = get(dir, "%s/z_lr", "sr", &k), *aug = get(dir, "%s/aug_noise", "sr", &k), *up;
    double e_clamp = 1, e_z = 1, *want, aug_sigma = atof(blob_meta(model, "sr.aug_sigma"));
    if (last && out && n == m) {
        want = xmalloc((size_t)n * sizeof(double));
        for (i = 0; i < n; i++) want[i] = fmin(fmax(last[i], -1.0), 1.0);
        e_clamp = max_rel(out, want, n);
        free(want);
    }
    if (out && z && aug && k == 3 * 32 * 32 && m == 3 * 16 * 16) {
        up = xmalloc((size_t)k * sizeof(float));
        want = xmalloc((size_t)k * sizeof(double));
        resize_bilinear(up, out, 3, 16, 16, 32, 32, 0);
        for (i = 0; i < k; i++) want[i] = (float)(up[i] + aug_sigma * aug[i]);
        e_z = max_rel(z, want, k);
        free(up);
        free(want);
    }
    report(T, e_clamp == 0 && e_z < 1e-6, "dump.run.outputs", "base out = clamp(last sample): %.1e; sr z_lr = "
           "up(base out) + %g n_aug: %.1e", e_clamp, aug_sigma, e_z);
    free(last); free(out); free(z); free(aug);
}

/* Per-call expert = the blob's expert for the call's sigma; the ids = the tokenizers'. */
static void check_expert_and_ids(TestRun *T, const char *dir, const char *list, const Blob *model)
{
    ExpertTable E;
    ClipTokenizer clip;
    T5Tokenizer t5;
    Tokens ids = {0};
    int32_t clip_ids[CLIP_CONTEXT];
    char err[EDIFF_ERR], scope[64];
    const char *p;
    int calls = 0, wrong = 0, ok_ids = 0, n_t5 = 0, i, rank;
    int64_t shape[MAX_RANK], n;
    float *x;
    if (experts_load(&E, model, "base", err)) {
        report(T, 0, "dump.run.expert", "%s", err);
        return;
    }
    for (p = list; (p = strstr(p, "/expert\n")); p++) {          /* STAGE/stepNN/callM/expert */
        const char *start = p;
        while (start > list && start[-1] != '\n') start--;
        if (strncmp(start, "base/", 5) != 0) continue;
        snprintf(scope, sizeof scope, "%.*s", (int)(p - start), start);
        calls++;
        if (scalar(dir, scope, "expert") != expert_for_sigma(&E, scalar(dir, scope, "sigma"))) wrong++;
    }
    report(T, calls == 3 && !wrong, "dump.run.expert", "%d calls dumped (want 3: step 0's two, step 3's one), "
           "%d with an expert other than the one whose range holds sigma", calls, wrong);
    if (tokenizers_open(&clip, &t5, NULL, err) == 0) {
        if (t5_tokenize(&t5, "a red circle", 12, 16, &ids, err) == 0 && (x = load(dir, "prompt/t5.input_ids", &rank, shape, &n))) {
            ok_ids = rank == 2 && shape[0] == 1 && n == ids.n;
            n_t5 = ids.n;
            for (i = 0; ok_ids && i < ids.n; i++) ok_ids = x[i] == (float)ids.id[i];
            free(x);
        }
        if (clip_tokenize(&clip, "a red circle", 12, clip_ids, err) == 0 && (x = load(dir, "prompt/clip.input_ids", &rank, shape, &n))) {
            ok_ids &= rank == 2 && n == CLIP_CONTEXT;
            for (i = 0; ok_ids && i < CLIP_CONTEXT; i++) ok_ids = x[i] == (float)clip_ids[i];
            free(x);
        }
        tokens_free(&ids);
        clip_tokenizer_free(&clip);
        t5_tokenizer_free(&t5);
    }
    report(T, ok_ids, "dump.run.ids", "prompt/t5.input_ids [1,%d] and prompt/clip.input_ids [1,77] are the tokenizers' ids",
           n_t5);
}

static void test_run(TestRun *T)
{
    static const char *const present[] = {
        "prompt/t5.input_ids", "prompt/t5.encoder.embed_tokens", "prompt/t5.encoder.block.0", "prompt/t5.encoder.final_layer_norm",
        "prompt/clip.input_ids", "prompt/clip.text_model.encoder.layers.0", "prompt/clip.text_projection", "prompt/t5_tokens",
        "prompt/clip_tokens", "prompt/clip_text_embed", "base/cond/base.0.cond.context", "base/uncond/base.2.cond.class_labels",
        "sr/cond/sr.1.cond.context", "base/sigmas", "base/noise", "base/step00/call0/x", "base/step00/call0/sigma",
        "base/step00/call0/expert", "base/step00/call0/c_noise", "base/step00/call0/cond/base.2.unet.time_embedding",
        "base/step00/call0/cond/base.2.unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2",
        "base/step00/call1/uncond/base.2.unet.mid_block", "base/step00/call0/denoised", "base/step00/sample",
        "base/step01/sample", "base/step03/call0/cond/base.0.unet.conv_out", "base/out", "sr/aug_noise", "sr/z_lr",
        "sr/step00/call0/cond/sr.1.unet.conv_in", "sr/step02/call0/uncond/sr.0.unet.conv_out", "sr/out"};
    static const char *const absent[] = {"base/step01/call0/x", "base/step02/call1/cond/base.0.unet.conv_out",
                                         "base/step00/noise", "base/step03/call1/x", "negative/t5_tokens", "style/pixel_values"};
    const char *dir = "test/out/dump.run";
    char *list;
    int rc, i, count, missing, files, bad = 0;
    Blob model;
    char err[EDIFF_ERR];
    if (!selected(T, "dump.run")) return;
    run_cmd("rm -rf test/out/dump.run", NULL, 0);
    rc = ediff(T, "'a red circle' " MODEL " -o test/out/dump.run.png -t 1 --dump test/out/dump.run");
    rc |= ediff(T, "'a red circle' " MODEL " -o test/out/dump.plain.png -t 1");
    list = manifest(dir, &count);
    if (!report(T, rc == 0 && list && count > 0, "dump.run", "ediff --dump: exit %d, run.json lists %d tensors", rc, count)) {
        free(list);
        return;
    }
    files = files_present(dir, list, &missing);
    for (i = 0; i < (int)(sizeof present / sizeof present[0]); i++)
        if (!listed(list, present[i])) bad++, printf("      missing: %s\n", present[i]);
    for (i = 0; i < (int)(sizeof absent / sizeof absent[0]); i++)
        if (listed(list, absent[i])) bad++, printf("      unexpected: %s\n", absent[i]);
    report(T, !missing && !bad, "dump.run.names", "%d files for %d names (%d missing); %d expected names present and "
           "%d absent (default --dump-steps 0,last of 4 and 3 steps): %d wrong", files, count, missing,
           (int)(sizeof present / sizeof present[0]), (int)(sizeof absent / sizeof absent[0]), bad);
    {
        size_t na, nb;
        unsigned char *a = read_file("test/out/dump.run.png", &na), *b = read_file("test/out/dump.plain.png", &nb);
        report(T, a && b && na == nb && !memcmp(a, b, na), "dump.run.same_image", "the PNG with --dump is byte-identical "
               "to the one without");
        free(a);
        free(b);
    }
    if (blob_open(&model, "test/ref/pipeline.bin", err) == 0) {
        check_base_step0(T, dir, atof(blob_meta(&model, "base.cfg_scale")));
        check_outputs(T, dir, &model);
        check_expert_and_ids(T, dir, list, &model);
        blob_close(&model);
    }
    free(list);
}

static void test_select(TestRun *T)
{
    char *list;
    const char *p;
    int rc, count, bad = 0, conv = 0, samples = 0, noises = 0;
    if (selected(T, "dump.select")) {
        run_cmd("rm -rf test/out/dump.sel", NULL, 0);
        rc = ediff(T, "x " MODEL " --no-sr -o test/out/dump.sel.png -t 1 --dump test/out/dump.sel --dump-steps 1 "
                   "--dump-filter '*/call?/cond/*conv_out,*/sample'");
        list = manifest("test/out/dump.sel", &count);
        for (p = list; list && *p; p += strcspn(p, "\n") + 1) {
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(p, "\n"), p);
            if (glob_match("base/step01/call?/cond/base.?.unet.conv_out", name)) conv++;
            else if (glob_match("base/step0?/sample", name)) samples++;
            else bad++, printf("      unexpected: %s\n", name);
        }
        report(T, rc == 0 && count == 6 && conv == 2 && samples == 4 && !bad, "dump.select",
               "--dump-steps 1 --dump-filter '*/call?/cond/*conv_out,*/sample': %d names: step 1's %d conv_out, %d "
               "samples, %d others", count, conv, samples, bad);
        free(list);
    }
    if (selected(T, "dump.stochastic")) {
        run_cmd("rm -rf test/out/dump.sto", NULL, 0);
        rc = ediff(T, "x " MODEL " --no-sr -o test/out/dump.sto.png -t 1 --sampler euler_a --steps 3 "
                   "--dump test/out/dump.sto --dump-steps none");
        list = manifest("test/out/dump.sto", &count);
        for (p = list; list && (p = strstr(p, "base/step")); p++) {
            if (strncmp(p + 11, "/noise\n", 7) == 0) noises++;
            else if (strncmp(p + 11, "/call", 5) == 0) bad++;
        }
        report(T, rc == 0 && list && noises == 2 && listed(list, "base/noise") && !bad, "dump.stochastic",
               "euler_a, 3 steps, --dump-steps none: the initial noise, %d steps' noise (want 2: none drawn in the "
               "last), %d calls dumped (want 0)", noises, bad);
        free(list);
    }
}

void suite_dump(TestRun *T)
{
    test_glob(T);
    test_steps(T);
    test_filter(T);
    test_npy(T);
    test_run(T);
    test_select(T);
}
