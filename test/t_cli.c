/* test/t_cli.c — the command-line program (ediff.c, docs/cli.md), run as a user runs it:
 *   help      --help names every flag and its default; --version
 *   usage     each bad flag / value / file: its exit status (2 usage, 1 input), one error line that
 *             starts as expected, and no output file
 *   pipeline  the toy random-weights model test/ref/pipeline.bin against the whole pipeline in PyTorch
 *             (test/gen_pipeline.py: transformers encoders, diffusers UNets, k-diffusion samplers, the
 *             real tokenizers, float64): every tensor --dump writes (encodings, each expert's context
 *             and class labels in both CFG branches, paint maps, each stage's output); the PNG is the
 *             SR resolution, holds the last stage's pixels and the parameters text
 *   runs      1 vs 2 threads byte-identical, same seed identical, another seed differs, --batch-count
 *             naming and seeds, --no-sr, --stage base_single, paint changes the image but not the
 *             unconditional branch, progress lines with -v
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
static int ediff(const TestRun *T, char *out, const char *fmt, ...)
{
    char args[3000], cmd[3400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s %s", T->ediff, args);
    return run_cmd(cmd, out, OUT);
}

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* Byte-identical files (both readable). */
static int same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = read_file(a, &na), *y = read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

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

/* ------------------------------------------------------------------ bad usage and bad input ----- */

typedef struct {
    const char *args;     /* after "ediff " */
    int         status;
    const char *error;    /* the start of the one error line */
} BadCase;

static const BadCase bad_cases[] = {
    {"", 2, "ediff: no prompt"},
    {"a b", 2, "ediff: more than one prompt"},
    {"x --frobnicate 3", 2, "ediff: unknown option '--frobnicate'"},
    {"x -q", 2, "ediff: unknown option '-q'"},
    {"x --steps", 2, "ediff: --steps needs a value"},
    {"x -o", 2, "ediff: -o needs a value"},
    {"x --no-sr=1", 2, "ediff: --no-sr takes no value"},
    {"x --steps abc", 2, "ediff: --steps: 'abc' is not an integer"},
    {"x --steps 3.5", 2, "ediff: --steps: '3.5' is not an integer"},
    {"x --steps nan", 2, "ediff: --steps: 'nan' is not an integer"},
    {"x --steps -3", 2, "ediff: --steps: -3 is out of range 1..10000"},
    {"x --steps 0", 2, "ediff: --steps: 0 is out of range"},
    {"x --steps 10001", 2, "ediff: --steps: 10001 is out of range"},
    {"x --steps 99999999999999999999", 2, "ediff: --steps: '99999999999999999999' is not an integer"},
    {"x --steps sr=0", 2, "ediff: --steps: 0 is out of range"},
    {"x --steps =5", 2, "ediff: --steps: '=5': expected VALUE or STAGE=VALUE"},
    {"x --sampler lms", 2, "ediff: --sampler: unknown sampler 'lms'"},
    {"x --sampler Heun", 2, "ediff: --sampler: unknown sampler 'Heun'"},
    {"x --cfg-scale nan", 2, "ediff: --cfg-scale: 'nan' is not a finite number"},
    {"x --cfg-scale inf", 2, "ediff: --cfg-scale: 'inf' is not a finite number"},
    {"x --cfg-scale -1", 2, "ediff: --cfg-scale: -1 is out of range"},
    {"x --cfg-scale 3x", 2, "ediff: --cfg-scale: '3x' is not a finite number"},
    {"x --cfg-scale ''", 2, "ediff: --cfg-scale: '' is not a finite number"},
    {"x --seed abc", 2, "ediff: --seed: 'abc' is not -1 or an integer"},
    {"x -s -5", 2, "ediff: -s: '-5' is not -1 or an integer"},
    {"x -s 18446744073709551616", 2, "ediff: -s: '18446744073709551616' is not -1"},
    {"x --threads 0", 2, "ediff: --threads: 0 is out of range 1..1024"},
    {"x -t two", 2, "ediff: -t: 'two' is not an integer"},
    {"x --batch-count 0", 2, "ediff: --batch-count: 0 is out of range"},
    {"x --paint-weight -0.5", 2, "ediff: --paint-weight: -0.5 is out of range"},
    {"x --paint-weight nan", 2, "ediff: --paint-weight: 'nan' is not a finite number"},
    {"x --paint circle", 2, "ediff: --paint: 'circle': expected WORDS=MASK.png"},
    {"x --paint =m.png", 2, "ediff: --paint: '=m.png': expected WORDS=MASK.png"},
    {"x --paint x=m.png --no-t5 --no-clip-text", 2, "ediff: --paint needs a text conditioning"},
    {"x --sigma-min 0", 2, "ediff: --sigma-min: 0 is out of range"},
    {"x --s-churn -1", 2, "ediff: --s-churn: -1 is out of range"},
    {"x -o ''", 2, "ediff: -o: empty file name"},
    {"\"$(printf 'caf\\351')\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    /* with a model: errors that need it */
    {"x --model test/out/no-such-model.bin", 1, "ediff: test/out/no-such-model.bin: cannot open"},
    {"x --model test/ref/pipeline_style.png", 1, "ediff: test/ref/pipeline_style.png:"},
    {"x " MODEL "--steps nosuch=3", 2, "ediff: no stage 'nosuch' in this run (stages: base, sr)"},
    {"x " MODEL "--no-sr --steps sr=3", 2, "ediff: no stage 'sr' in this run (stages: base)"},
    {"x " MODEL "--sampler ddpm --steps 1001", 2, "ediff: stage 'base': sampler ddpm: ddpm takes at most 1000 steps"},
    {"x " MODEL "--sigma-min 5 --sigma-max 1", 2, "ediff: stage 'base': sampler heun: need 0 < sigma_min < sigma_max"},
    {"x " MODEL "--stage nosuch", 1, "ediff: test/ref/pipeline.bin: 'nosuch' replaces no stage"},
    {"'a circle' " MODEL "--paint circle=test/out/no-such-mask.png", 1, "ediff: test/out/no-such-mask.png: cannot open"},
    {"'a circle' " MODEL "--paint circle=test/ref/pipeline.bin", 1, "ediff: test/ref/pipeline.bin: not a PNG file"},
    {"'a circle' " MODEL "--paint square=test/ref/pipeline_mask_left.png", 1, "ediff: --paint: 'square' is not in the prompt"},
    {"'a circle' " MODEL "--paint 'red circle=test/ref/pipeline_mask_left.png'", 1, "ediff: --paint: 'red circle' is not in the prompt"},
    {"'a circle' " MODEL "--paint circ=test/ref/pipeline_mask_left.png", 1, "ediff: --paint: 'circ' is not in the prompt"},
    {"x " MODEL "--style-image test/out/no-such-style.png", 1, "ediff: test/out/no-such-style.png: cannot open"},
    {"x " MODEL "--style-image test/out/cli_garbage.png", 1, "ediff: test/out/cli_garbage.png: not a PNG file"},
    {"x " MODEL "--noise test/ref/pipeline_style.png", 1, "ediff: test/ref/pipeline_style.png: not a version-1 .npy"},
    {"x " MODEL "--noise test/out/cli_noise_shape.npy", 1, "ediff: test/out/cli_noise_shape.npy: noise has shape [3,8,8], need [3,16,16]"},
    {"x --model test/ref/pipeline.bin -o test/out/no-such-dir/out.png", 1,
     "ediff: test/out/no-such-dir/out.png: cannot write to directory 'test/out/no-such-dir'"},
    {"x --model test/ref/pipeline.bin -o test/out", 1, "ediff: test/out: is a directory"},
    {"x " MODEL "--dump test/ref/pipeline.bin/d", 1, "ediff: --dump test/ref/pipeline.bin/d: cannot create the directory"},
    {"x --dump-steps 0", 2, "ediff: --dump-steps needs --dump DIR"},
    {"x --dump-filter unet", 2, "ediff: --dump-filter needs --dump DIR"},
    {"x --dump d --dump-filter ''", 2, "ediff: --dump-filter: empty pattern"},
    {"x --dump d --dump-steps ''", 2, "ediff: --dump-steps: '' is not a step"},
    {"x --dump d --dump-steps 1,x", 2, "ediff: --dump-steps: 'x' is not a step (N, A-B, A-last, last, all or none)"},
    {"x --dump d --dump-steps 3-", 2, "ediff: --dump-steps: '3-' is not a step"},
    {"x --dump d --dump-steps last-3", 2, "ediff: --dump-steps: 'last-3' is not a step"},
    {"x --dump d --dump-steps -1", 2, "ediff: --dump-steps: '-1' is not a step"},
    {"x --dump d --dump-steps 10000", 2, "ediff: --dump-steps: '10000' is not a step"},
    {MODEL "--from-png test/ref/pipeline_style.png", 1, "ediff: --from-png test/ref/pipeline_style.png: no ediff parameters text"},
    {MODEL "--from-png test/out/no-such.png", 1, "ediff: test/out/no-such.png: cannot open"},
    {MODEL "--from-png test/out/cli_a1111.png", 2, "ediff: --from-png: unknown sampler 'Euler a'"},
    {MODEL "--from-png test/out/cli_params.png --from-png test/out/cli_params.png", 2, "ediff: --from-png given twice"},
};

static void test_bad_usage(TestRun *T)
{
    char out[OUT], name[64], *nl;
    int i, rc, ok, n = (int)(sizeof bad_cases / sizeof bad_cases[0]), failed = 0;
    FILE *f;
    float small[3 * 8 * 8] = {0};
    int64_t shape[3] = {3, 8, 8};
    char err[EDIFF_ERR];
    if (!selected(T, "cli.bad")) return;
    if ((f = fopen("test/out/cli_garbage.png", "wb"))) {          /* a file that is not a PNG */
        fputs("\x89PNG but not really", f);
        fclose(f);
    }
    npy_write("test/out/cli_noise_shape.npy", small, 3, shape, err);
    {                                                           /* an A1111 text with A1111's sampler name */
        const char *text[] = {"parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512", NULL};
        uint8_t px[3] = {0, 0, 0};
        png_write("test/out/cli_a1111.png", px, 1, 1, 3, text, err);
        text[1] = "a cat\nSteps: 3, Seed: 1";
        png_write("test/out/cli_params.png", px, 1, 1, 3, text, err);
    }
    for (i = 0; i < n; i++) {
        const BadCase *c = &bad_cases[i];
        remove("test/out/cli_bad.png");
        rc = ediff(T, out, "-o test/out/cli_bad.png %s", c->args);     /* a later -o in the case wins */
        nl = strchr(out, '\n');
        ok = rc == c->status && strncmp(out, c->error, strlen(c->error)) == 0 && nl && nl[1] == 0 &&
             !file_exists("test/out/cli_bad.png");
        snprintf(name, sizeof name, "cli.bad.%d", i);
        if (!ok) {
            failed++;
            report(T, 0, name, "ediff %s: exit %d (want %d), output '%s' (want one line '%s...')", c->args, rc,
                   c->status, out, c->error);
        }
    }
    if (!failed) report(T, 1, "cli.bad", "%d cases: each its exit status and one error line, no output file", n);
}

/* ------------------------------------------------------------------ the pipeline vs PyTorch ----- */

/* A dumped tensor, DIR/NAME.npy, against the reference CASE.NAME. */
static void check_dump(TestRun *T, const char *dir, const Tensor *ref, const char *name)
{
    float *got = NULL, *want;
    int rank, d, same_shape;
    int64_t shape[MAX_RANK];
    char path[512], test[160], err[EDIFF_ERR];
    double tol = strstr(name, "/out") ? 1e-4 : strstr(name, "/paint.") ? 1e-6 : 1e-5;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    snprintf(test, sizeof test, "cli.pipeline.%s", ref->name);
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
static void check_png(TestRun *T, const char *png, const char *dir, const char *last, int R, const char *text)
{
    Image img;
    float *x = NULL;
    int rank, ok = 0;
    int64_t shape[MAX_RANK], i, diff = 0;
    char path[512], err[EDIFF_ERR];
    uint8_t *rgb;
    snprintf(path, sizeof path, "%s/%s/out.npy", dir, last);
    if (png_read(png, &img, err) || npy_read(path, &x, &rank, shape, 1 << 24, err)) {
        report(T, 0, png, "%s", err);
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
    report(T, ok, "cli.pipeline.png", "%s: %dx%d (want %dx%d), %lld pixel bytes differ from the dumped %s output, "
           "parameters start '%.*s'", png, img.w, img.h, R, R, (long long)diff, last,
           img.parameters ? (int)strcspn(img.parameters, "\n") : 6, img.parameters ? img.parameters : "(none)");
    image_free(&img);
    free(x);
}

static void test_pipeline(TestRun *T)
{
    Blob ref;
    const char *cases, *c;
    char name[64], key[96], dir[128], png[160], out[OUT], last[64] = "";
    const char *prompt;
    int i, rc, R = 0;
    if (!selected(T, "cli.pipeline") || open_ref(T, &ref, "pipeline_ref.bin")) return;
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
        rc = ediff(T, out, MODEL "%s --dump %s -o %s -t 1", args ? args : "", dir, png);
        if (!report(T, rc == 0, "cli.pipeline.run", "ediff %s: exit %d %s", args ? args : "?", rc, rc ? out : ""))
            continue;
        for (i = 0; i < ref.n_tensors; i++) {
            const char *t = ref.tensors[i].name;
            if (strncmp(t, name, strlen(name)) != 0 || t[strlen(name)] != '.') continue;
            check_dump(T, dir, &ref.tensors[i], t + strlen(name) + 1);
            snprintf(key, sizeof key, "%s.paint_columns", name);
            if (strstr(t, "/paint.") && blob_meta(&ref, key))
                check_paint_columns(T, dir, t + strlen(name) + 1, blob_meta(&ref, key));
            if (strstr(t, "/out") && strlen(t) - strlen(name) - 5 < sizeof last) {     /* the last stage */
                snprintf(last, sizeof last, "%.*s", (int)(strlen(t) - strlen(name) - 5), t + strlen(name) + 1);
                R = (int)ref.tensors[i].shape[2];
            }
        }
        check_png(T, png, dir, last, R, prompt ? prompt : "?");
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

    rc = ediff(T, out, FULL "-s 11 -t 1 -o test/out/cli_t1.png") | ediff(T, out, FULL "-s 11 -t 2 -o test/out/cli_t2.png");
    report(T, rc == 0 && same_file("test/out/cli_t1.png", "test/out/cli_t2.png"), "cli.runs.threads",
           "--threads 1 and --threads 2 give byte-identical PNGs (exit %d)", rc);
    rc = ediff(T, out, FULL "-s 11 -o test/out/cli_again.png");
    report(T, rc == 0 && same_file("test/out/cli_t1.png", "test/out/cli_again.png"), "cli.runs.same_seed",
           "the same seed twice: identical");
    rc = ediff(T, out, FULL "-s 12 -o test/out/cli_s12.png");
    report(T, rc == 0 && !same_file("test/out/cli_t1.png", "test/out/cli_s12.png"), "cli.runs.other_seed",
           "another seed: a different image");

    remove("test/out/cli_batch-1.png");
    remove("test/out/cli_batch-2.png");
    rc = ediff(T, out, FULL "-s 11 --batch-count 2 -o test/out/cli_batch.png");
    ok = rc == 0 && same_file("test/out/cli_batch.png", "test/out/cli_t1.png") &&
         same_file("test/out/cli_batch-1.png", "test/out/cli_s12.png") && !file_exists("test/out/cli_batch-2.png");
    report(T, ok, "cli.runs.batch", "--batch-count 2 -s 11: out.png = the seed-11 image, out-1.png = the seed-12 image");

    rc = ediff(T, out, MODEL "--from-png test/out/cli_t1.png -o test/out/cli_from.png") |
         ediff(T, out, MODEL "-s 12 --from-png test/out/cli_t1.png -o test/out/cli_from12.png");
    report(T, rc == 0 && same_file("test/out/cli_from.png", "test/out/cli_t1.png") &&
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
    test_bad_usage(T);
    test_pipeline(T);
    test_runs(T);
}
