/* test/t_cli.c — the command-line program (ediff.c, docs/cli.md), run as a user runs it:
 *   help      --help names every flag and its default; --version
 *   pipeline  the toy random-weights model test/ref/pipeline.bin against the whole pipeline in PyTorch
 *             (test/gen_pipeline.py: transformers encoders, diffusers UNets, k-diffusion samplers, the
 *             real tokenizers, float64): every tensor --dump writes (encodings, each expert's context
 *             and class labels in both CFG branches, paint maps, each stage's output); the PNG is the
 *             SR resolution, holds the last stage's pixels and the parameters text
 *   runs      same seed identical, another seed differs, --batch-count naming and seeds, --from-png,
 *             --no-sr, --stage base_single, paint changes the image but not the unconditional branch,
 *             progress lines with -v
 * Bad usage and bad input (exit status, one error line, nothing written) are the battery of
 * test/t_reliability.c, as is determinism across thread counts and builds.
 * Every run sets OMP_WAIT_POLICY=passive: on a loaded machine spinning OpenMP threads make the tiny toy
 * model's two-thread runs take seconds instead of milliseconds. */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL "--model test/ref/pipeline.bin "
#define OUT   8192

/* Runs `ediff ARGS`; returns the exit status, the output (stdout + stderr) in out. */
#define ediff(T, out, ...) run_ediff(T, out, OUT, __VA_ARGS__)

/* The same pixels (both PNGs readable): two runs whose parameters text differs. */
static int same_pixels(const char *a, const char *b)
{
    Image x, y;
    char err[EDIFF_ERR];
    int same = 0;
    if (png_read(a, &x, err)) return 0;
    if (png_read(b, &y, err) == 0) {
        same = x.w == y.w && x.h == y.h && memcmp(x.rgba, y.rgba, (size_t)x.w * x.h * 4) == 0;
        image_free(&y);
    }
    image_free(&x);
    return same;
}

/* ------------------------------------------------------------------ help and version ------------ */

static void test_help(TestRun *T)
{
    static const char *const want[] = {
        "-p, --prompt", "-n, --negative-prompt", "-s, --seed", "--steps", "--cfg-scale", "--sampler", "heun", "euler,",
        "euler_a", "ddpm", "dpmpp2m", "-o, --output", "--model", "-t, --threads", "--batch-count", "--dump", "-v, --verbose",
        "-h, --help", "--version", "--paint WORDS=MASK.png", "--paint-weight", "--style-image", "--no-t5", "--no-clip-text",
        "--dump-steps", "--dump-filter", "default 0,last", "--stage", "--no-sr", "--noise", "--from-png", "--sigma-min", "--sigma-max", "--rho", "--s-churn", "--s-noise", "--eta",
        "default output.png", "default weights/ediff-tiny.bin", "default 42", "default 0.4", "default 1)",
        "FILE-j.png", "SEED+1", "Exit status", "ediff info FILE"};
    char out[OUT], missing[512] = "";
    int i, rc, ok;
    if (selected(T, "cli.help")) {
        rc = ediff(T, out, "--help");
        for (i = 0; i < (int)(sizeof want / sizeof want[0]); i++)
            if (!strstr(out, want[i])) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " '%s'", want[i]);
        report(T, rc == 0 && !missing[0], "cli.help", "exit %d, %d items checked, missing:%s", rc,
               (int)(sizeof want / sizeof want[0]), missing[0] ? missing : " none");
        ok = ediff(T, out, "-h") == 0 && strncmp(out, "usage: ediff", 12) == 0;
        report(T, ok, "cli.help.short", "-h prints the same usage");
    }
    if (selected(T, "cli.version")) {
        rc = ediff(T, out, "--version");
        report(T, rc == 0 && strcmp(out, "ediff " EDIFF_VERSION "\n") == 0, "cli.version", "exit %d, '%.*s'", rc,
               (int)strcspn(out, "\n"), out);
    }
}

/* ------------------------------------------------------------------ the pipeline vs PyTorch ----- */

/* A dumped tensor, DIR/NAME.npy, against the reference CASE.NAME. */
static void check_dump(TestRun *T, const char *suite, const char *dir, const Tensor *ref, const char *name)
{
    float *got = NULL, *want;
    int rank, d, same_shape;
    int64_t shape[MAX_RANK];
    char path[512], test[160], err[EDIFF_ERR];
    double tol = strstr(name, "/out") ? 1e-4 : strstr(name, "/paint.") ? 1e-6 : 1e-5;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    snprintf(test, sizeof test, "%s.%s", suite, ref->name);
    if (npy_read(path, &got, &rank, shape, (int64_t)1 << 24, err)) {
        report(T, 0, test, "%s", err);
        return;
    }
    same_shape = rank == ref->rank;
    for (d = 0; same_shape && d < rank; d++) same_shape = shape[d] == ref->shape[d];
    if (!same_shape) {
        report(T, 0, test, "dumped shape differs from the reference");
    } else {
        want = xmalloc((size_t)ref->numel * sizeof(float));
        tensor_to_f32(ref, want, 0, ref->numel);
        check_close(T, test, got, want, (size_t)ref->numel, tol, TOL_ABS);
        free(want);
    }
    free(got);
}

/* The context rows a dumped paint map A [pixels, n_ctx] paints (non-zero columns), against the rows of
 * the painted words' tokens that the real tokenizers give (CASE.paint_columns): every other token, and
 * every pixel outside the masks, gets no bias. */
static void check_paint_columns(TestRun *T, const char *dir, const char *name, const char *want)
{
    float *A = NULL;
    int rank, j;
    int64_t shape[MAX_RANK], p;
    char path[512], got[512] = "", err[EDIFF_ERR];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (npy_read(path, &A, &rank, shape, (int64_t)1 << 24, err) || rank != 2) {
        report(T, 0, "cli.pipeline.paint_columns", "%s", err);
        free(A);
        return;
    }
    for (j = 0; j < shape[1]; j++) {
        int painted = 0;
        for (p = 0; p < shape[0]; p++) painted |= A[p * shape[1] + j] != 0;
        if (painted) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", got[0] ? "," : "", j);
    }
    report(T, strcmp(got, want) == 0, "cli.pipeline.paint_columns", "%s: context rows %s painted (want %s)", name,
           got, want);
    free(A);
}

/* The PNG: the last stage's resolution, its pixels = image_to_rgb8 of the dumped output, the
 * parameters text starting with the prompt. */
static void check_png(TestRun *T, const char *suite, const char *png, const char *dir, const char *last, int R, const char *text)
{
    Image img;
    float *x = NULL;
    int rank, ok = 0;
    int64_t shape[MAX_RANK], i, diff = 0;
    char path[512], test[64], err[EDIFF_ERR];
    uint8_t *rgb;
    snprintf(test, sizeof test, "%s.png", suite);
    snprintf(path, sizeof path, "%s/%s/out.npy", dir, last);
    if (png_read(png, &img, err) || npy_read(path, &x, &rank, shape, 1 << 24, err)) {
        report(T, 0, test, "%s", err);
        free(x);
        return;
    }
    if (img.w == R && img.h == R && rank == 4 && shape[2] == R) {
        rgb = xmalloc((size_t)3 * R * R);
        image_to_rgb8(rgb, x, R, R);
        for (i = 0; i < (int64_t)R * R * 3; i++) diff += rgb[i] != img.rgba[(i / 3) * 4 + i % 3];
        free(rgb);
        ok = diff == 0 && img.parameters && strncmp(img.parameters, text, strlen(text)) == 0;
    }
    report(T, ok, test, "%s: %dx%d (want %dx%d), %lld pixel bytes differ from the dumped %s output, "
           "parameters start '%.*s'", png, img.w, img.h, R, R, (long long)diff, last,
           img.parameters ? (int)strcspn(img.parameters, "\n") : 6, img.parameters ? img.parameters : "(none)");
    image_free(&img);
    free(x);
}

/* Every case of a reference file (test/gen_pipeline.py, test/gen_default.py): ediff runs the case's
 * arguments on the file's `model` (default: the toy pipeline) with --dump, each reference tensor is
 * compared with its dump, and the PNG with the last stage's output. */
static void test_pipeline(TestRun *T, const char *suite, const char *file)
{
    Blob ref;
    const char *cases, *c, *model;
    char name[64], key[96], dir[128], png[160], out[OUT], last[64] = "", test[64];
    const char *prompt;
    int i, rc, R = 0;
    if (!selected(T, suite) || open_ref(T, &ref, file)) return;
    model = blob_meta(&ref, "model");
    cases = blob_meta(&ref, "cases");
    for (c = cases; c && *c;) {
        size_t len = strcspn(c, ",");
        const char *args;
        snprintf(name, sizeof name, "%.*s", (int)len, c);
        c += len + (c[len] == ',');
        snprintf(key, sizeof key, "%s.args", name);
        args = blob_meta(&ref, key);
        snprintf(key, sizeof key, "%s.prompt", name);
        prompt = blob_meta(&ref, key);
        snprintf(dir, sizeof dir, "test/out/cli.%s", name);
        snprintf(png, sizeof png, "test/out/cli.%s.png", name);
        rc = ediff(T, out, "--model %s %s --dump %s -o %s -t 1", model ? model : "test/ref/pipeline.bin",
                   args ? args : "", dir, png);
        snprintf(test, sizeof test, "%s.run", suite);
        if (!report(T, rc == 0, test, "ediff %s: exit %d %s", args ? args : "?", rc, rc ? out : ""))
            continue;
        for (i = 0; i < ref.n_tensors; i++) {
            const char *t = ref.tensors[i].name;
            if (strncmp(t, name, strlen(name)) != 0 || t[strlen(name)] != '.') continue;
            check_dump(T, suite, dir, &ref.tensors[i], t + strlen(name) + 1);
            snprintf(key, sizeof key, "%s.paint_columns", name);
            if (strstr(t, "/paint.") && blob_meta(&ref, key))
                check_paint_columns(T, dir, t + strlen(name) + 1, blob_meta(&ref, key));
            if (strstr(t, "/out") && strlen(t) - strlen(name) - 5 < sizeof last) {     /* the last stage */
                snprintf(last, sizeof last, "%.*s", (int)(strlen(t) - strlen(name) - 5), t + strlen(name) + 1);
                R = (int)ref.tensors[i].shape[2];
            }
        }
        check_png(T, suite, png, dir, last, R, prompt ? prompt : "?");
    }
    blob_close(&ref);
}

/* ------------------------------------------------------------------ runs ------------------------ */

#define FULL MODEL "'a red circle and a blue square' -n blurry --style-image test/ref/pipeline_style.png " \
             "--paint circle=test/ref/pipeline_mask_left.png --paint 'blue square=test/ref/pipeline_mask_right.png' "

static void test_runs(TestRun *T)
{
    char out[OUT];
    Image img;
    int rc, ok;
    if (!selected(T, "cli.runs")) return;

    rc = ediff(T, out, FULL "-s 11 -o test/out/cli_s11.png") | ediff(T, out, FULL "-s 11 -o test/out/cli_again.png");
    report(T, rc == 0 && same_file("test/out/cli_s11.png", "test/out/cli_again.png"), "cli.runs.same_seed",
           "the same seed twice: identical");
    rc = ediff(T, out, FULL "-s 12 -o test/out/cli_s12.png");
    report(T, rc == 0 && !same_file("test/out/cli_s11.png", "test/out/cli_s12.png"), "cli.runs.other_seed",
           "another seed: a different image");

    remove("test/out/cli_batch-1.png");
    remove("test/out/cli_batch-2.png");
    rc = ediff(T, out, FULL "-s 11 --batch-count 2 -o test/out/cli_batch.png");
    ok = rc == 0 && same_file("test/out/cli_batch.png", "test/out/cli_s11.png") &&
         same_file("test/out/cli_batch-1.png", "test/out/cli_s12.png") && !file_exists("test/out/cli_batch-2.png");
    report(T, ok, "cli.runs.batch", "--batch-count 2 -s 11: out.png = the seed-11 image, out-1.png = the seed-12 image");

    rc = ediff(T, out, MODEL "--from-png test/out/cli_s11.png -o test/out/cli_from.png") |
         ediff(T, out, MODEL "-s 12 --from-png test/out/cli_s11.png -o test/out/cli_from12.png");
    report(T, rc == 0 && same_file("test/out/cli_from.png", "test/out/cli_s11.png") &&
           same_file("test/out/cli_from12.png", "test/out/cli_s12.png"), "cli.runs.from_png",
           "--from-png reproduces a PNG byte for byte (prompt, negative, style, paint, settings); -s overrides it");

    rc = ediff(T, out, MODEL "'a red circle' -s 11 -o test/out/cli_plain.png") |
         ediff(T, out, MODEL "'a red circle' -s 11 --paint circle=test/ref/pipeline_mask_left.png -o test/out/cli_paint.png");
    report(T, rc == 0 && !same_file("test/out/cli_plain.png", "test/out/cli_paint.png"), "cli.runs.paint",
           "paint-with-words changes the image");
    rc = ediff(T, out, MODEL "'a red circle' -s 11 --cfg-scale 0 -o test/out/cli_plain0.png") |
         ediff(T, out, MODEL "'a red circle' -s 11 --cfg-scale 0 --paint circle=test/ref/pipeline_mask_left.png "
               "--paint-weight 5 -o test/out/cli_paint0.png");
    report(T, rc == 0 && same_pixels("test/out/cli_plain0.png", "test/out/cli_paint0.png"), "cli.runs.paint_uncond",
           "--cfg-scale 0 (the unconditional branch alone): painted and plain runs have the same pixels");

    rc = ediff(T, out, MODEL "'a red circle' -s 11 --no-sr -o test/out/cli_nosr.png");
    ok = rc == 0 && png_read("test/out/cli_nosr.png", &img, out) == 0 && img.w == 16 && img.h == 16;
    if (rc == 0 && ok) image_free(&img);
    report(T, ok, "cli.runs.no_sr", "--no-sr: the base resolution, 16x16");
    rc = ediff(T, out, MODEL "'a red circle' -s 11 --stage base_single -o test/out/cli_single.png");
    report(T, rc == 0 && !same_file("test/out/cli_single.png", "test/out/cli_plain.png"), "cli.runs.single_model",
           "--stage base_single runs the control model (another image)");
    rc = ediff(T, out, MODEL "'a red circle' -s 11 --no-t5 --no-clip-text --style-image test/ref/pipeline_style.png "
               "--sampler euler_a --steps 3 --cfg-scale sr=1 -o test/out/cli_subset.png");
    report(T, rc == 0 && file_exists("test/out/cli_subset.png"), "cli.runs.subset",
           "--no-t5 --no-clip-text with a style image, euler_a (exit %d)", rc);

    rc = ediff(T, out, MODEL "'a red circle' -s 11 -v -o test/out/cli_v.png");
    ok = rc == 0 && strstr(out, "ediff: model toy-pipeline") && strstr(out, "base     [") && strstr(out, "4/4") &&
         strstr(out, "sigma") && strstr(out, "expert 3/3") && strstr(out, "sr       [") && strstr(out, "wrote test/out/cli_v.png");
    report(T, ok, "cli.runs.verbose", "-v with stderr not a terminal: settings, a line per step (sigma, expert)");
    rc = ediff(T, out, MODEL "'a red circle' -s 11 -o test/out/cli_quiet.png");
    report(T, rc == 0 && out[0] == 0, "cli.runs.quiet", "without -v and no terminal: no output");
}

void suite_cli(TestRun *T)
{
    test_help(T);
    test_pipeline(T, "cli.pipeline", "pipeline_ref.bin");
    test_pipeline(T, "cli.default", "default_ref.bin");
    test_runs(T);
}
