/* test/t_encoders.c — T5, CLIP text, CLIP vision and CLIP's image preprocessing against `transformers`
 * run in float64 (test/gen_encoders.py). The cases are listed in test/ref/enc_ref.bin (cases.KIND);
 * each loads its model blob (converted by weights/convert.py), encodes the stored inputs and prints its
 * error: final hidden states and pooled/projected embeddings, the f16 blob, every per-module output
 * the DumpHook hands out, the padding mask, the relative-position buckets.
 *
 * With EDIFF_ENC_BENCH=DIR the suite walks DIR/enc_ref.bin instead, written by test/bench_encoders.py
 * for the real-size shapes (t5-small, CLIP ViT-B/32), and also prints the time per encode next to
 * transformers' and the memory of the process. */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define TOL       1e-4    /* max-abs, f32 blob vs transformers float64 (the bound) */
#define TOL_F16   2e-2    /* max-abs, f16 blob vs the float64 output of the f32 weights */
#define TOL_PIXEL 1e-6    /* max-abs, preprocessing vs CLIPImageProcessor (float32 rounding) */
#define NAME      400     /* room for a test name or a reference key */

typedef struct {
    TestRun    *T;
    const Blob *ref;      /* inputs and expected outputs */
    const char *dir;      /* folder of the model blobs */
    const char *tag;      /* "encoders" or "encoders.bench" */
    int         bench;    /* also time the encoders and report memory */
} Ctx;

/* ------------------------------------------------------------------ helpers ----------------------- */

static void fmt(char *buf, size_t n, const char *f, va_list ap) { vsnprintf(buf, n, f, ap); }

/* Reference tensor KIND.CASE.FIELD as floats (NULL and a failed test if absent). */
static float *ref_floats(Ctx *C, size_t *n, const char *name_fmt, ...)
{
    char name[NAME];
    va_list ap;
    va_start(ap, name_fmt);
    fmt(name, sizeof name, name_fmt, ap);
    va_end(ap);
    return ref_f32(C->T, C->ref, name, n);
}

static int32_t *ref_ints(Ctx *C, size_t *n, const char *name_fmt, ...)
{
    char name[NAME];
    const Tensor *t;
    int32_t *v;
    int64_t i;
    va_list ap;
    va_start(ap, name_fmt);
    fmt(name, sizeof name, name_fmt, ap);
    va_end(ap);
    if (!(t = ref_tensor(C->T, C->ref, name))) return NULL;
    v = xmalloc((size_t)t->numel * sizeof *v + 1);
    for (i = 0; i < t->numel; i++) v[i] = (int32_t)tensor_at(t, i);
    if (n) *n = (size_t)t->numel;
    return v;
}

static int has_ref(Ctx *C, const char *name_fmt, ...)
{
    char name[NAME];
    va_list ap;
    va_start(ap, name_fmt);
    fmt(name, sizeof name, name_fmt, ap);
    va_end(ap);
    return blob_get(C->ref, name) != NULL;
}

/* Open DIR/<value of meta KIND.CASE.KEY>.bin: 0, 1 if the key is absent, -1 (failed test) on error. */
static int open_model(Ctx *C, Blob *b, const char *kind, const char *c, const char *key)
{
    char k[NAME], path[NAME + 64], err[EDIFF_ERR], name[NAME];
    const char *v;
    snprintf(k, sizeof k, "%s.%s.%s", kind, c, key);
    if (!(v = blob_meta(C->ref, k))) return 1;
    snprintf(path, sizeof path, "%s/%s.bin", C->dir, v);
    if (blob_open(b, path, err) == 0) return 0;
    snprintf(name, sizeof name, "%s.%s.%s.%s", C->tag, kind, c, key);
    report(C->T, 0, name, "%s", err);
    return -1;
}

static void name_of(Ctx *C, char *buf, size_t n, const char *kind, const char *c, const char *what)
{
    snprintf(buf, n, "%s.%s.%s.%s", C->tag, kind, c, what);
}

/* Does the filter select anything under this prefix? */
static int case_selected(const TestRun *T, const char *prefix)
{
    return !T->filter || strstr(prefix, T->filter) || strstr(T->filter, prefix);
}

static double now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* Bench mode: the time per encode (best of the runs) next to transformers' (meta KIND.CASE.hf_ms). */
static void print_time(Ctx *C, const char *kind, const char *c, double best)
{
    char k[NAME];
    const char *hf;
    snprintf(k, sizeof k, "%s.%s.hf_ms", kind, c);
    hf = blob_meta(C->ref, k);
    printf("TIME  %s.%s.%s  C %.1f ms per encode (%d threads)  transformers float32 %s ms (threads: %s)\n", C->tag,
           kind, c, 1e3 * best, get_threads(), hf ? hf : "?", blob_meta(C->ref, "bench.threads") ? blob_meta(C->ref, "bench.threads") : "?");
}

/* Bench mode: this process's peak and current memory (Linux /proc; silent elsewhere). */
static void print_memory(Ctx *C, const char *kind, const char *c)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    printf("MEM   %s.%s.%s ", C->tag, kind, c);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6) || !strncmp(line, "VmRSS:", 6) || !strncmp(line, "RssAnon:", 8) ||
            !strncmp(line, "RssFile:", 8)) {
            line[strcspn(line, "\n")] = 0;
            printf(" %s", line);
        }
    printf("\n");
    fclose(f);
}

/* The DumpHook of the tests: compares each module output with the reference KIND.CASE.hook.NAME. */
typedef struct {
    const Blob *ref;
    char        prefix[NAME];
    int         calls, matched, missing;
    double      max_err;
} HookCheck;

static void hook_check(void *ctx, const char *name, const float *x, int rank, const int64_t *shape)
{
    HookCheck *h = ctx;
    char key[2 * NAME];
    const Tensor *t;
    int64_t n = 1, i;
    int d;
    for (d = 0; d < rank; d++) n *= shape[d];
    snprintf(key, sizeof key, "%s%s", h->prefix, name);
    h->calls++;
    if (!(t = blob_get(h->ref, key)) || t->numel != n) {
        h->missing++;
        return;
    }
    for (i = 0; i < n; i++) {
        double e = fabs((double)x[i] - tensor_at(t, i));
        if (!(e <= h->max_err)) h->max_err = e;            /* NaN propagates into the error */
    }
    h->matched++;
}

static int count_prefixed(const Blob *b, const char *prefix)
{
    int n = 0, i;
    size_t len = strlen(prefix);
    for (i = 0; i < b->n_tensors; i++) n += strncmp(b->tensors[i].name, prefix, len) == 0;
    return n;
}

/* The hook for KIND.CASE, or NULL when the reference holds no module outputs for it. */
static DumpHook *hook_begin(Ctx *C, HookCheck *h, DumpHook *dh, const char *kind, const char *c)
{
    memset(h, 0, sizeof *h);
    h->ref = C->ref;
    snprintf(h->prefix, sizeof h->prefix, "%s.%s.hook.", kind, c);
    dh->fn = hook_check;
    dh->ctx = h;
    return count_prefixed(C->ref, h->prefix) ? dh : NULL;
}

static void hook_end(Ctx *C, const HookCheck *h, const char *kind, const char *c)
{
    char name[NAME];
    int expected = count_prefixed(C->ref, h->prefix);
    name_of(C, name, sizeof name, kind, c, "hooks");
    report(C->T, h->matched == expected && h->missing == 0 && h->max_err <= TOL, name,
           "%d module outputs of %d matched (%d unknown), max-abs %.2e  (tol %.0e)", h->matched, expected, h->missing,
           h->max_err, TOL);
}

static void fail_line(Ctx *C, const char *kind, const char *c, const char *what, const char *err)
{
    char name[NAME];
    name_of(C, name, sizeof name, kind, c, what);
    report(C->T, 0, name, "%s", err);
}

/* ------------------------------------------------------------------ T5 ---------------------------- */

static void t5_buckets(Ctx *C, const T5Encoder *m, const char *c)
{
    char name[NAME];
    size_t n;
    int32_t *b = ref_ints(C, &n, "t5.%s.buckets", c);
    int R, rp, bad = 0, first = 0;
    if (!b) return;
    R = (int)(n - 1) / 2;
    for (rp = -R; rp <= R; rp++)
        if (t5_relative_position_bucket(rp, m->cfg.num_buckets, m->cfg.max_distance) != b[rp + R] && !bad++) first = rp;
    name_of(C, name, sizeof name, "t5", c, "buckets");
    report(C->T, bad == 0, name, "relative positions -%d..%d (%d buckets, max distance %d): %d differ from PyTorch%s",
           R, R, m->cfg.num_buckets, m->cfg.max_distance, bad, bad ? " (first shown below)" : "");
    if (bad) printf("      rp %d: ours %d, PyTorch %d\n", first,
                    t5_relative_position_bucket(first, m->cfg.num_buckets, m->cfg.max_distance), b[first + R]);
    free(b);
}

/* A padded batch row: equal to HF's row, and on its real tokens equal to the unpadded encoding. */
static void t5_padding(Ctx *C, const T5Encoder *m, const char *c, Arena *a)
{
    char name[NAME], err[EDIFF_ERR];
    size_t n;
    int32_t *ids = ref_ints(C, &n, "t5.%s.pad_ids", c), *mask = ref_ints(C, NULL, "t5.%s.pad_mask", c);
    float *want = ref_floats(C, NULL, "t5.%s.pad_want", c), *out, *alone;
    int T = (int)n, d = m->cfg.d_model, real = 0;
    Arena big;
    if (ids && mask && want && arena_init(&big, t5_arena_bytes(m, T), err) == 0) {
        while (real < T && mask[real]) real++;
        out = xmalloc((size_t)T * d * sizeof(float));
        alone = xmalloc((size_t)real * d * sizeof(float));
        if (t5_encode(m, ids, mask, T, out, &big, NULL, err) || t5_encode(m, ids, NULL, real, alone, a, NULL, err)) {
            fail_line(C, "t5", c, "padded_row", err);
        } else {
            name_of(C, name, sizeof name, "t5", c, "padded_row");
            check_close(C->T, name, out, want, (size_t)T * d, TOL, TOL_ABS);
            name_of(C, name, sizeof name, "t5", c, "padded_row_vs_unpadded");
            check_close(C->T, name, out, alone, (size_t)real * d, 1e-6, TOL_ABS);
        }
        free(out);
        free(alone);
        arena_free(&big);
    }
    free(ids);
    free(mask);
    free(want);
}

static void t5_case(Ctx *C, const char *c)
{
    char name[NAME], prefix[NAME], err[EDIFF_ERR];
    size_t n;
    int32_t *ids;
    float *want, *out;
    Blob mb;
    T5Encoder m;
    Arena a;
    HookCheck hc;
    DumpHook dh, *hook;
    int T, d;
    snprintf(prefix, sizeof prefix, "%s.t5.%s", C->tag, c);
    if (!case_selected(C->T, prefix) || open_model(C, &mb, "t5", c, "model")) return;
    if (t5_load(&m, &mb, "t5.", err)) {
        fail_line(C, "t5", c, "load", err);
        blob_close(&mb);
        return;
    }
    ids = ref_ints(C, &n, "t5.%s.ids", c);
    want = ref_floats(C, NULL, "t5.%s.want", c);
    T = ids ? (int)n : 0;
    d = m.cfg.d_model;
    out = xmalloc((size_t)T * d * sizeof(float));
    if (ids && want && arena_init(&a, t5_arena_bytes(&m, T), err) == 0) {
        hook = hook_begin(C, &hc, &dh, "t5", c);
        if (t5_encode(&m, ids, NULL, T, out, &a, hook, err)) fail_line(C, "t5", c, "last_hidden_state", err);
        else {
            name_of(C, name, sizeof name, "t5", c, "last_hidden_state");
            check_close(C->T, name, out, want, (size_t)T * d, TOL, TOL_ABS);
            if (hook) hook_end(C, &hc, "t5", c);
        }
        t5_buckets(C, &m, c);
        if (has_ref(C, "t5.%s.pad_ids", c)) t5_padding(C, &m, c, &a);
        if (C->bench) {
            double best = 1e30, t0;
            int r;
            for (r = 0; r < 3; r++) {
                t0 = now();
                t5_encode(&m, ids, NULL, T, out, &a, NULL, err);
                if (now() - t0 < best) best = now() - t0;
            }
            print_time(C, "t5", c, best);
            print_memory(C, "t5", c);
        }
        arena_free(&a);
    }
    t5_free(&m);
    blob_close(&mb);
    if (ids && want && open_model(C, &mb, "t5", c, "model_f16") == 0) {           /* the f16 blob */
        float *want16 = ref_floats(C, NULL, "t5.%s.want_f16w", c);
        if (t5_load(&m, &mb, "t5.", err) == 0 && arena_init(&a, t5_arena_bytes(&m, T), err) == 0) {
            if (want16 && t5_encode(&m, ids, NULL, T, out, &a, NULL, err) == 0) {
                name_of(C, name, sizeof name, "t5", c, "f16.last_hidden_state");
                check_close(C->T, name, out, want16, (size_t)T * d, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "t5", c, "f16.vs_f32_weights");
                check_close(C->T, name, out, want, (size_t)T * d, TOL_F16, TOL_ABS);
            }
            arena_free(&a);
            t5_free(&m);
        } else {
            fail_line(C, "t5", c, "f16", err);
        }
        free(want16);
        blob_close(&mb);
    }
    free(ids);
    free(want);
    free(out);
}

/* ------------------------------------------------------------------ CLIP text --------------------- */

/* Encode every row of KIND.CASE.ids; 0 on success. */
static int clip_text_rows(const ClipText *m, const int32_t *ids, int R, int T, float *hidden, float *embeds,
                          Arena *a, const DumpHook *hook, char err[EDIFF_ERR])
{
    int r, W = m->cfg.hidden_size, E = m->cfg.projection_dim;
    for (r = 0; r < R; r++)
        if (clip_text_encode(m, ids + (size_t)r * T, T, hidden + (size_t)r * T * W, embeds + (size_t)r * E, a,
                             r == 0 ? hook : NULL, err))
            return -1;
    return 0;
}

static void clip_text_case(Ctx *C, const char *c)
{
    char name[NAME], prefix[NAME], err[EDIFF_ERR];
    const Tensor *idt;
    int32_t *ids;
    float *want_h, *want_e, *hidden = NULL, *embeds = NULL;
    Blob mb;
    ClipText m;
    Arena a;
    HookCheck hc;
    DumpHook dh, *hook;
    int R, T;
    size_t nh = 0, ne = 0;
    snprintf(prefix, sizeof prefix, "%s.clip_text.%s", C->tag, c);
    if (!case_selected(C->T, prefix)) return;
    snprintf(name, sizeof name, "clip_text.%s.ids", c);
    if (!(idt = ref_tensor(C->T, C->ref, name)) || idt->rank != 2) return;
    R = (int)idt->shape[0];
    T = (int)idt->shape[1];
    ids = ref_ints(C, NULL, "clip_text.%s.ids", c);
    want_h = ref_floats(C, &nh, "clip_text.%s.want_hidden", c);
    want_e = ref_floats(C, &ne, "clip_text.%s.want_embeds", c);
    if (ids && want_h && want_e && open_model(C, &mb, "clip_text", c, "model") == 0) {
        if (clip_text_load(&m, &mb, "clip.", err)) fail_line(C, "clip_text", c, "load", err);
        else if (nh != (size_t)R * T * m.cfg.hidden_size || ne != (size_t)R * m.cfg.projection_dim)
            fail_line(C, "clip_text", c, "load", "reference sizes do not match the model");
        else if (arena_init(&a, clip_text_arena_bytes(&m, T), err) == 0) {
            hidden = xmalloc(nh * sizeof(float));
            embeds = xmalloc(ne * sizeof(float));
            hook = hook_begin(C, &hc, &dh, "clip_text", c);
            if (clip_text_rows(&m, ids, R, T, hidden, embeds, &a, hook, err)) fail_line(C, "clip_text", c, "encode", err);
            else {
                name_of(C, name, sizeof name, "clip_text", c, "last_hidden_state");
                check_close(C->T, name, hidden, want_h, nh, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "clip_text", c, "text_embeds");
                check_close(C->T, name, embeds, want_e, ne, TOL, TOL_ABS);
                if (hook) hook_end(C, &hc, "clip_text", c);
            }
            if (C->bench) {
                double best = 1e30, t0;
                int r;
                for (r = 0; r < 3; r++) {
                    t0 = now();
                    clip_text_encode(&m, ids, T, hidden, embeds, &a, NULL, err);
                    if (now() - t0 < best) best = now() - t0;
                }
                print_time(C, "clip_text", c, best);
                print_memory(C, "clip_text", c);
            }
            arena_free(&a);
        }
        clip_text_free(&m);
        blob_close(&mb);
    }
    if (hidden && open_model(C, &mb, "clip_text", c, "model_f16") == 0) {
        float *w16h = ref_floats(C, NULL, "clip_text.%s.want_hidden_f16w", c);
        float *w16e = ref_floats(C, NULL, "clip_text.%s.want_embeds_f16w", c);
        if (clip_text_load(&m, &mb, "clip.", err) == 0 && arena_init(&a, clip_text_arena_bytes(&m, T), err) == 0) {
            if (w16h && w16e && clip_text_rows(&m, ids, R, T, hidden, embeds, &a, NULL, err) == 0) {
                name_of(C, name, sizeof name, "clip_text", c, "f16.last_hidden_state");
                check_close(C->T, name, hidden, w16h, nh, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "clip_text", c, "f16.text_embeds");
                check_close(C->T, name, embeds, w16e, ne, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "clip_text", c, "f16.vs_f32_weights");
                check_close(C->T, name, embeds, want_e, ne, TOL_F16, TOL_ABS);
            }
            arena_free(&a);
            clip_text_free(&m);
        } else {
            fail_line(C, "clip_text", c, "f16", err);
        }
        free(w16h);
        free(w16e);
        blob_close(&mb);
    }
    free(ids);
    free(want_h);
    free(want_e);
    free(hidden);
    free(embeds);
}

/* ------------------------------------------------------------------ CLIP preprocessing ------------- */

/* The u8 image preprocess.IMAGE.rgb [h, w, 3]. */
static const Tensor *ref_image(Ctx *C, const char *image)
{
    char key[NAME];
    const Tensor *t;
    snprintf(key, sizeof key, "preprocess.%s.rgb", image);
    if (!(t = ref_tensor(C->T, C->ref, key))) return NULL;
    if (t->dtype != DT_U8 || t->rank != 3 || t->shape[2] != 3) {
        report(C->T, 0, key, "expected u8 [h, w, 3]");
        return NULL;
    }
    return t;
}

static void preprocess_case(Ctx *C, const char *c)
{
    char name[NAME], err[EDIFF_ERR];
    const Tensor *img;
    float *want, *got;
    size_t n;
    Blob mb;
    ClipVision m;
    name_of(C, name, sizeof name, "preprocess", c, "pixels");
    if (!selected(C->T, name) || !(img = ref_image(C, c)) || !(want = ref_floats(C, &n, "preprocess.%s.want", c)))
        return;
    if (open_model(C, &mb, "preprocess", c, "model") == 0) {
        if (clip_vision_load(&m, &mb, "clip.", err)) {
            report(C->T, 0, name, "%s", err);
        } else {
            const ClipImageProcessor *p = &m.processor;
            got = xmalloc(n * sizeof(float));
            if (n != (size_t)3 * p->crop_height * p->crop_width)
                report(C->T, 0, name, "reference has %zu values, the processor makes 3x%dx%d", n, p->crop_height, p->crop_width);
            else if (clip_preprocess(p, img->data, (int)img->shape[1], (int)img->shape[0], got, err))
                report(C->T, 0, name, "%s", err);
            else
                check_close(C->T, name, got, want, n, TOL_PIXEL, TOL_ABS);
            free(got);
            clip_vision_free(&m);
        }
        blob_close(&mb);
    }
    free(want);
}

/* ------------------------------------------------------------------ CLIP vision ------------------- */

static void clip_vision_case(Ctx *C, const char *c)
{
    char name[NAME], prefix[NAME], key[NAME], err[EDIFF_ERR];
    const char *image;
    const Tensor *img;
    float *pixels, *want_e, *want_h, *want_p, *embeds, *hidden, *pooled, *own;
    size_t np, ne, nh, npool;
    Blob mb;
    ClipVision m;
    Arena a;
    HookCheck hc;
    DumpHook dh, *hook;
    snprintf(prefix, sizeof prefix, "%s.clip_vision.%s", C->tag, c);
    snprintf(key, sizeof key, "clip_vision.%s.image", c);
    if (!case_selected(C->T, prefix)) return;
    if (!(image = blob_meta(C->ref, key))) {
        report(C->T, 0, key, "missing from the reference");
        return;
    }
    pixels = ref_floats(C, &np, "preprocess.%s.want", image);
    want_e = ref_floats(C, &ne, "clip_vision.%s.want_embeds", c);
    want_h = ref_floats(C, &nh, "clip_vision.%s.want_hidden", c);
    want_p = ref_floats(C, &npool, "clip_vision.%s.want_pooled", c);
    img = ref_image(C, image);
    if (!pixels || !want_e || !want_h || !want_p || !img) goto done;
    embeds = xmalloc(ne * sizeof(float));
    hidden = xmalloc(nh * sizeof(float));
    pooled = xmalloc(npool * sizeof(float));
    own = xmalloc(np * sizeof(float));
    if (open_model(C, &mb, "clip_vision", c, "model") == 0) {
        if (clip_vision_load(&m, &mb, "clip.", err)) fail_line(C, "clip_vision", c, "load", err);
        else {
            int G = m.image_size / m.patch_size;
            if (np != (size_t)3 * m.image_size * m.image_size || ne != (size_t)m.cfg.projection_dim ||
                nh != (size_t)(1 + G * G) * m.cfg.hidden_size || npool != (size_t)m.cfg.hidden_size)
                fail_line(C, "clip_vision", c, "load", "reference sizes do not match the model");
            else if (arena_init(&a, clip_vision_arena_bytes(&m), err) == 0) {
                hook = hook_begin(C, &hc, &dh, "clip_vision", c);
                clip_vision_encode(&m, pixels, embeds, hidden, pooled, &a, hook);
                name_of(C, name, sizeof name, "clip_vision", c, "last_hidden_state");
                check_close(C->T, name, hidden, want_h, nh, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "clip_vision", c, "pooled");
                check_close(C->T, name, pooled, want_p, npool, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "clip_vision", c, "image_embeds");
                check_close(C->T, name, embeds, want_e, ne, TOL, TOL_ABS);
                if (hook) hook_end(C, &hc, "clip_vision", c);
                /* the whole chain: RGB bytes -> our preprocessing -> image_embeds */
                if (clip_preprocess(&m.processor, img->data, (int)img->shape[1], (int)img->shape[0], own, err)) {
                    fail_line(C, "clip_vision", c, "rgb_to_image_embeds", err);
                } else {
                    clip_vision_encode(&m, own, embeds, NULL, NULL, &a, NULL);
                    name_of(C, name, sizeof name, "clip_vision", c, "rgb_to_image_embeds");
                    check_close(C->T, name, embeds, want_e, ne, TOL, TOL_ABS);
                }
                if (C->bench) {
                    double best = 1e30, t0;
                    int r;
                    for (r = 0; r < 3; r++) {
                        t0 = now();
                        clip_preprocess(&m.processor, img->data, (int)img->shape[1], (int)img->shape[0], own, err);
                        clip_vision_encode(&m, own, embeds, NULL, NULL, &a, NULL);
                        if (now() - t0 < best) best = now() - t0;
                    }
                    print_time(C, "clip_vision", c, best);
                    print_memory(C, "clip_vision", c);
                }
                arena_free(&a);
            }
            clip_vision_free(&m);
        }
        blob_close(&mb);
    }
    if (open_model(C, &mb, "clip_vision", c, "model_f16") == 0) {
        float *w16 = ref_floats(C, NULL, "clip_vision.%s.want_embeds_f16w", c);
        if (clip_vision_load(&m, &mb, "clip.", err) == 0 && arena_init(&a, clip_vision_arena_bytes(&m), err) == 0) {
            if (w16) {
                clip_vision_encode(&m, pixels, embeds, NULL, NULL, &a, NULL);
                name_of(C, name, sizeof name, "clip_vision", c, "f16.image_embeds");
                check_close(C->T, name, embeds, w16, ne, TOL, TOL_ABS);
                name_of(C, name, sizeof name, "clip_vision", c, "f16.vs_f32_weights");
                check_close(C->T, name, embeds, want_e, ne, TOL_F16, TOL_ABS);
            }
            arena_free(&a);
            clip_vision_free(&m);
        } else {
            fail_line(C, "clip_vision", c, "f16", err);
        }
        free(w16);
        blob_close(&mb);
    }
    free(embeds);
    free(hidden);
    free(pooled);
    free(own);
done:
    free(pixels);
    free(want_e);
    free(want_h);
    free(want_p);
}

/* ------------------------------------------------------------------ bad input --------------------- */

/* A copy of test/ref/FILE with `from` replaced by `to` (same length) and the CRC redone, opened. */
static int open_patched(Blob *b, unsigned char **buf, const char *file, const char *from, const char *to,
                        char err[EDIFF_ERR])
{
    char path[256];
    FILE *f;
    long size;
    unsigned char *p = NULL;
    size_t i, n = strlen(from);
    uint32_t crc;
    snprintf(path, sizeof path, "test/ref/%s", file);
    *buf = NULL;
    if (!(f = fopen(path, "rb")) || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 64 || fseek(f, 0, SEEK_SET)) {
        if (f) fclose(f);
        snprintf(err, EDIFF_ERR, "%s: cannot read", path);
        return -1;
    }
    *buf = xmalloc((size_t)size);
    if (fread(*buf, 1, (size_t)size, f) != (size_t)size) size = 0;
    fclose(f);
    for (i = 0; size && i + n <= (size_t)size && !p; i++)
        if (memcmp(*buf + i, from, n) == 0) p = *buf + i;
    if (!p || strlen(to) != n) {
        snprintf(err, EDIFF_ERR, "%s: '%s' not found", path, from);
        return -1;
    }
    memcpy(p, to, n);
    memset(*buf + 56, 0, 4);
    crc = crc32_update(0, *buf, (size_t)size);
    for (i = 0; i < 4; i++) (*buf)[56 + i] = (unsigned char)(crc >> (8 * i));
    return blob_open_memory(b, *buf, (size_t)size, file, err);
}

/* Each bad input gives one error line naming the problem (and no crash, under the sanitizers). */
static void bad_input(Ctx *C)
{
    char err[EDIFF_ERR] = "", name[96];
    unsigned char *buf = NULL;
    Blob b;
    T5Encoder t5;
    ClipText text;
    ClipVision vision;
    Arena a;
    int32_t ids[3] = {1, 2, 3}, mask[3] = {1, 2, 0};
    float out[3 * 64], px[3 * 32 * 32];
    uint8_t rgb[3] = {0, 0, 0};
    int ok;

    snprintf(name, sizeof name, "%s.errors.shape_mismatch", C->tag);
    if (selected(C->T, name) && open_patched(&b, &buf, "enc_t5_a.bin", "t5.d_ff=64\n", "t5.d_ff=65\n", err) == 0) {
        ok = t5_load(&t5, &b, "t5.", err) == -1 && strstr(err, "DenseReluDense.wi.weight' has shape [64,64], the config needs [65,64]");
        report(C->T, ok, name, "%s", err);
        blob_close(&b);
    } else if (selected(C->T, name)) report(C->T, 0, name, "%s", err);
    free(buf);
    buf = NULL;

    snprintf(name, sizeof name, "%s.errors.bad_metadata", C->tag);
    if (selected(C->T, name) && open_patched(&b, &buf, "enc_clip_vision_a.bin", "0.4578275,", "0.4578z75,", err) == 0) {
        ok = clip_vision_load(&vision, &b, "clip.", err) == -1 && strstr(err, "clip.vision.image_mean");
        report(C->T, ok, name, "%s", err);
        blob_close(&b);
    } else if (selected(C->T, name)) report(C->T, 0, name, "%s", err);
    free(buf);

    snprintf(name, sizeof name, "%s.errors.wrong_component", C->tag);
    if (selected(C->T, name) && open_ref(C->T, &b, "enc_t5_a.bin") == 0) {
        ok = clip_text_load(&text, &b, "clip.", err) == -1 && strstr(err, "'clip.text.hidden_size'");
        report(C->T, ok, name, "%s", err);
        blob_close(&b);
    }

    snprintf(name, sizeof name, "%s.errors.bad_tokens", C->tag);
    if (selected(C->T, name) && open_ref(C->T, &b, "enc_t5_a.bin") == 0) {
        char err2[EDIFF_ERR] = "", err3[EDIFF_ERR] = "";
        if (t5_load(&t5, &b, "t5.", err) == 0 && arena_init(&a, t5_arena_bytes(&t5, 3), err) == 0) {
            ids[1] = t5.cfg.vocab_size;
            ok = t5_encode(&t5, ids, NULL, 3, out, &a, NULL, err) == -1 && strstr(err, "outside the vocabulary");
            ids[1] = 2;
            ok = ok && t5_encode(&t5, ids, mask, 3, out, &a, NULL, err2) == -1 && strstr(err2, "not 0 or 1");
            ok = ok && t5_encode(&t5, ids, NULL, 0, out, &a, NULL, err3) == -1;
            report(C->T, ok && a.used == 0, name, "%s | %s | %s", err, err2, err3);
            arena_free(&a);
            t5_free(&t5);
        } else report(C->T, 0, name, "%s", err);
        blob_close(&b);
    }

    snprintf(name, sizeof name, "%s.errors.bad_image", C->tag);
    if (selected(C->T, name) && open_ref(C->T, &b, "enc_clip_vision_a.bin") == 0) {
        if (clip_vision_load(&vision, &b, "clip.", err) == 0) {
            ok = clip_preprocess(&vision.processor, rgb, 0, 1, px, err) == -1 && strstr(err, "empty image");
            report(C->T, ok, name, "%s", err);
            clip_vision_free(&vision);
        } else report(C->T, 0, name, "%s", err);
        blob_close(&b);
    }
}

/* ------------------------------------------------------------------ the suite --------------------- */

static void each_case(Ctx *C, const char *kind, void (*fn)(Ctx *, const char *))
{
    char key[64], list[256], *name, *next;
    const char *v;
    snprintf(key, sizeof key, "cases.%s", kind);
    if (!(v = blob_meta(C->ref, key))) return;
    snprintf(list, sizeof list, "%s", v);
    for (name = list; name && *name; name = next) {
        if ((next = strchr(name, ','))) *next++ = 0;
        fn(C, name);
    }
}

void suite_encoders(TestRun *T)
{
    const char *bench = getenv("EDIFF_ENC_BENCH");
    char path[512], err[EDIFF_ERR];
    Blob ref;
    Ctx C;
    if (!bench && !case_selected(T, "encoders")) return;
    C.T = T;
    C.dir = bench ? bench : "test/ref";
    C.tag = bench ? "encoders.bench" : "encoders";
    C.bench = bench != NULL;
    snprintf(path, sizeof path, "%s/enc_ref.bin", C.dir);
    if (blob_open(&ref, path, err)) {
        report(T, 0, C.tag, "cannot open the reference: %s", err);
        return;
    }
    C.ref = &ref;
    if (!blob_meta(&ref, "cases.t5") && !blob_meta(&ref, "cases.clip_text") && !blob_meta(&ref, "cases.clip_vision"))
        report(T, 0, C.tag, "%s lists no cases", path);
    each_case(&C, "t5", t5_case);
    each_case(&C, "clip_text", clip_text_case);
    each_case(&C, "preprocess", preprocess_case);
    each_case(&C, "clip_vision", clip_vision_case);
    if (!bench) bad_input(&C);
    blob_close(&ref);
}
