/* test/t_unet.c — the UNet (unet.c) against diffusers' UNet2DConditionModel in float64 and the eDiff-I
 * conditioning against its PyTorch module (test/gen_unet.py writes the references): whole forward
 * passes at three configs, module dumps named as PyTorch hooks name them, paint-with-words against a
 * diffusers attention processor, the arena bound, thread-count independence, bad input, and the
 * refusal of diffusers configs ediff does not implement. */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_TOL 1e-4          /* the acceptance tolerance, max-abs against float64 diffusers */
#define CLIP_ROWS 77

/* A test or tensor name (vsnprintf: names are short; a long one would only be cut). */
static void name_of(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* ref tensor CASE.FIELD as a malloc'd f32 copy, or NULL if the case does not have it */
static float *field(const Blob *ref, const char *c, const char *f, size_t *n)
{
    char key[256];
    const Tensor *t;
    float *x;
    name_of(key, sizeof key, "%s.%s", c, f);
    if (!(t = blob_get(ref, key))) return NULL;
    x = xmalloc((size_t)t->numel * sizeof(float) + 1);
    tensor_to_f32(t, x, 0, t->numel);
    if (n) *n = (size_t)t->numel;
    return x;
}

/* One error line, mentioning `words`, and nothing else. */
static int clear_error(int rc, const char *err, const char *words)
{
    return rc == -1 && strstr(err, words) && !strchr(err, '\n');
}

/* ------------------------------------------------------------------ a forward pass ---------------- */

typedef struct {
    const Unet *u;
    Arena       arena;
    int         H, W, n_ctx;
    float      *x, *context, *class_vec, *out, timestep;
} Pass;

/* Load the inputs of a case; the context and class vector come from the conditioning module when one is
 * given (and are checked against PyTorch's), else from the case itself. */
static int pass_init(TestRun *T, Pass *p, const Blob *ref, const Unet *u, const Cond *cond, const char *file,
                     const char *c)   /* file NULL: do not check the conditioning again */
{
    char name[128], err[EDIFF_ERR];
    const Tensor *xt, *tt;
    size_t nx;
    memset(p, 0, sizeof *p);
    p->u = u;
    name_of(name, sizeof name, "%s.x", c);
    xt = ref_tensor(T, ref, name);
    name_of(name, sizeof name, "%s.timestep", c);
    tt = ref_tensor(T, ref, name);
    if (!xt || !tt) return -1;
    p->H = (int)xt->shape[1];
    p->W = (int)xt->shape[2];
    p->timestep = tensor_at(tt, 0);
    p->x = field(ref, c, "x", &nx);
    if (cond) {
        const Tensor *present = ref_tensor(T, ref, strcat(strcpy(name, c), ".present"));
        const char *l5 = blob_meta(ref, "L5");
        float *t5 = field(ref, c, "t5", NULL), *clip = field(ref, c, "clip", NULL);
        float *text = field(ref, c, "text_embed", NULL), *image = field(ref, c, "image_embed", NULL);
        float *want_ctx = field(ref, c, "context", NULL), *want_cls = field(ref, c, "class_vec", NULL);
        int L5 = l5 ? atoi(l5) : 0, given = 0, k;
        for (k = 0; present && k < 4; k++) given += (int)tensor_at(present, k);
        given -= !!t5 + !!clip + !!text + !!image;                 /* the blob holds exactly the present ones */
        p->n_ctx = cond_context_rows(L5, CLIP_ROWS);
        p->context = xmalloc(sizeof(float) * (size_t)p->n_ctx * cond->dim);
        p->class_vec = xmalloc(sizeof(float) * 2 * (size_t)cond->embed_dim);
        cond_context(cond, t5, L5, clip, CLIP_ROWS, image, p->context);
        cond_class_vector(cond, text, image, NULL, 0, p->class_vec);
        if (file) {                                                /* check the conditioning once per case */
            name_of(name, sizeof name, "unet.%s.%s.context", file, c);
            if (selected(T, name) && want_ctx)
                check_close(T, name, p->context, want_ctx, (size_t)p->n_ctx * cond->dim, 1e-5, TOL_ABS);
            name_of(name, sizeof name, "unet.%s.%s.class_vec", file, c);
            if (selected(T, name) && want_cls)
                check_close(T, name, p->class_vec, want_cls, 2 * (size_t)cond->embed_dim, 0.0, TOL_ABS);
            if (given != 0) report(T, 0, name, "the case's present flags and tensors disagree");
        }
        free(t5); free(clip); free(text); free(image); free(want_ctx); free(want_cls);
        if (!u->config.class_embed_dim) { free(p->class_vec); p->class_vec = NULL; }
    } else {
        size_t nc = 0;
        p->context = field(ref, c, "context", &nc);
        p->n_ctx = (int)(nc / (size_t)u->config.context_dim);
    }
    p->out = xmalloc(sizeof(float) * (size_t)u->config.out_channels * p->H * p->W);
    if (arena_init(&p->arena, unet_arena_bytes(u, p->H, p->W, p->n_ctx), err)) {
        report(T, 0, c, "%s", err);
        return -1;
    }
    return 0;
}

static void pass_free(Pass *p)
{
    arena_free(&p->arena);
    free(p->x); free(p->context); free(p->class_vec); free(p->out);
}

static int pass_run(Pass *p, const PaintBias *paint, const DumpHook *hook, char err[EDIFF_ERR])
{
    return unet_forward(p->u, &p->arena, p->x, p->H, p->W, p->timestep, p->context, p->n_ctx, NULL, p->class_vec,
                        paint, hook, p->out, err);
}

/* The forward of case c against want, and the arena bound it ran under. */
static void forward_case(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond, const char *file, const char *c)
{
    char name[128], err[EDIFF_ERR];
    size_t n;
    float *want = field(ref, c, "want", &n);
    Pass p;
    name_of(name, sizeof name, "unet.%s.%s", file, c);
    if (!selected(T, name) || !want) { free(want); return; }
    if (pass_init(T, &p, ref, u, cond, file, c) == 0) {
        if (pass_run(&p, NULL, NULL, err)) report(T, 0, name, "%s", err);
        else check_close(T, name, p.out, want, n, UNET_TOL, TOL_ABS);
        name_of(name, sizeof name, "unet.%s.%s.arena_bound", file, c);
        report(T, p.arena.peak <= p.arena.cap, name, "peak %zu of bound %zu bytes (%.0f%%)", p.arena.peak, p.arena.cap,
               100.0 * (double)p.arena.peak / (double)p.arena.cap);
        if (p.context) {                          /* memoised keys/values: the very same numbers */
            UnetCrossKV kv;
            float *plain = xmalloc(n * sizeof(float));
            int rc;
            memcpy(plain, p.out, n * sizeof(float));
            unet_cross_kv(u, p.context, p.n_ctx, &kv);
            rc = unet_forward(u, &p.arena, p.x, p.H, p.W, p.timestep, p.context, p.n_ctx, &kv, p.class_vec, NULL,
                              NULL, p.out, err);
            name_of(name, sizeof name, "unet.%s.%s.cross_kv", file, c);
            report(T, rc == 0 && memcmp(plain, p.out, n * sizeof(float)) == 0, name,
                   "%d cross-attention layers' keys/values computed once: output %s", kv.n,
                   rc ? err : memcmp(plain, p.out, n * sizeof(float)) ? "DIFFERENT" : "bit-identical");
            unet_cross_kv_free(&kv);
            free(plain);
        }
    }
    pass_free(&p);
    free(want);
}

/* ------------------------------------------------------------------ module dumps ------------------ */

typedef struct {
    TestRun    *T;
    const Blob *ref;
    int         matched;
    const char *capture;      /* also copy this module's output into `captured` */
    float      *captured;
    size_t      n_captured;
} Dumps;

/* Every dump that has a reference "dump.NAME" (written without the batch dimension) is compared. */
static void dump_check(void *ctx, const char *name, const float *x, int rank, const int64_t *shape)
{
    Dumps *d = ctx;
    char key[256], test[256];
    const Tensor *t;
    size_t n = 1;
    int k, same = 1;
    for (k = 1; k < rank; k++) n *= (size_t)shape[k];
    if (d->capture && strcmp(name, d->capture) == 0) {
        d->captured = xmalloc(n * sizeof(float));
        memcpy(d->captured, x, n * sizeof(float));
        d->n_captured = n;
    }
    if (!d->ref) return;
    name_of(key, sizeof key, "dump.%s", name);
    if (!(t = blob_get(d->ref, key))) return;
    name_of(test, sizeof test, "unet.a.dump.%s", name);
    same = t->rank == rank - 1;
    for (k = 1; same && k < rank; k++) same = t->shape[k - 1] == shape[k];
    d->matched++;
    if (!same) { report(d->T, 0, test, "shape differs from PyTorch's"); return; }
    {
        float *want = xmalloc(n * sizeof(float));
        tensor_to_f32(t, want, 0, (int64_t)n);
        check_close(d->T, test, x, want, n, UNET_TOL, TOL_ABS);
        free(want);
    }
}

static void dumps_case(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond)
{
    char err[EDIFF_ERR];
    const char *list = blob_meta(ref, "dumps");
    int expected = 1;
    Dumps d;
    DumpHook hook;
    Pass p;
    if (!selected(T, "unet.a.dump") || !list) return;
    for (; *list; list++) expected += *list == ',';
    memset(&d, 0, sizeof d);
    d.T = T;
    d.ref = ref;
    hook.fn = dump_check;
    hook.ctx = &d;
    if (pass_init(T, &p, ref, u, cond, NULL, "all") == 0) {
        if (pass_run(&p, NULL, &hook, err)) report(T, 0, "unet.a.dump", "%s", err);
        report(T, d.matched == expected, "unet.a.dump.names", "%d of the %d PyTorch module paths dumped", d.matched,
               expected);
    }
    pass_free(&p);
}

/* ------------------------------------------------------------------ paint-with-words -------------- */

static void paint_case(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond)
{
    char err[EDIFF_ERR], key[64];
    const Tensor *grids = ref_tensor(T, ref, "paint.grids"), *wt = ref_tensor(T, ref, "paint.weight");
    const char *first = blob_meta(ref, "paint.first_cross");
    float *want = field(ref, "paint", "want", NULL), *want_first = field(ref, "paint", "first_cross", NULL);
    float *A[UNET_MAX_LEVELS], *plain_first = NULL, *A56 = NULL;
    PaintMap maps[UNET_MAX_LEVELS];
    PaintBias paint;
    Dumps d;
    DumpHook hook;
    Pass p;
    int n_maps = 0, k, c_grids[32], n_c;
    memset(&d, 0, sizeof d);
    if (!selected(T, "unet.a.paint") || !grids || !wt || !first || !want || !want_first) goto done;
    n_maps = (int)grids->shape[0];
    for (k = 0; k < n_maps; k++) {
        maps[k].h = (int)tensor_at(grids, 2 * k);
        maps[k].w = (int)tensor_at(grids, 2 * k + 1);
        name_of(key, sizeof key, "A.%dx%d", maps[k].h, maps[k].w);
        maps[k].A = A[k] = field(ref, "paint", key, NULL);
        if (maps[k].h == 5 && maps[k].w == 6) A56 = A[k];
    }
    if (pass_init(T, &p, ref, u, cond, NULL, "all")) goto free_pass;
    paint.maps = maps;
    paint.n_maps = n_maps;
    paint.n_ctx = p.n_ctx;
    paint.weight = tensor_at(wt, 0);

    /* the grids the pipeline must build maps for */
    n_c = unet_attention_grids(u, p.H, p.W, c_grids, 16);
    report(T, n_c == 2 && c_grids[0] == 5 && c_grids[1] == 6 && c_grids[2] == 3 && c_grids[3] == 3,
           "unet.a.paint.attention_grids", "%d grids at 9x11: %dx%d, %dx%d (want 5x6, 3x3)", n_c, c_grids[0], c_grids[1],
           c_grids[2], c_grids[3]);

    d.capture = first;
    hook.fn = dump_check;
    hook.ctx = &d;
    if (pass_run(&p, NULL, &hook, err)) { report(T, 0, "unet.a.paint", "%s", err); goto free_pass; }
    plain_first = d.captured;
    d.captured = NULL;
    if (pass_run(&p, &paint, &hook, err)) { report(T, 0, "unet.a.paint", "%s", err); goto free_pass; }
    check_close(T, "unet.a.paint", p.out, want, (size_t)3 * p.H * p.W, UNET_TOL, TOL_ABS);
    if (d.captured && plain_first && A56) {
        /* the first cross-attention sees the same input with and without paint: its output may change only
         * in the rows (pixels) some mask covers, and must change there */
        int D = (int)(d.n_captured / 30), rows_out = 0, rows_in = 0, bad = 0, i, j;
        check_close(T, "unet.a.paint.first_cross_attention", d.captured, want_first, d.n_captured, UNET_TOL, TOL_ABS);
        for (i = 0; i < 30; i++) {
            int painted = 0, changed = memcmp(d.captured + i * D, plain_first + i * D, sizeof(float) * (size_t)D) != 0;
            for (j = 0; j < p.n_ctx; j++) painted |= A56[(size_t)i * p.n_ctx + j] != 0.0f;
            rows_in += painted;
            rows_out += !painted;
            bad += painted != changed;
        }
        report(T, bad == 0 && rows_in > 0 && rows_out > 0, "unet.a.paint.only_inside_masks",
               "%s: %d unpainted pixels bit-identical, %d painted pixels changed, %d wrong", first, rows_out, rows_in, bad);
    } else {
        report(T, 0, "unet.a.paint.only_inside_masks", "no dump of %s", first);
    }

    /* bad paint input: one error line each */
    paint.n_maps = 1;
    maps[0].h = 9;
    maps[0].w = 11;
    report(T, clear_error(pass_run(&p, &paint, NULL, err), err, "no map for the"), "unet.a.paint.missing_grid", "%s", err);
    paint.n_maps = n_maps;
    paint.n_ctx = p.n_ctx - 1;
    report(T, clear_error(pass_run(&p, &paint, NULL, err), err, "context columns"), "unet.a.paint.wrong_n_ctx", "%s", err);
free_pass:
    pass_free(&p);
    for (k = 0; k < n_maps; k++) free(A[k]);
    free(plain_first);
    free(d.captured);
done:
    free(want);
    free(want_first);
}

/* ------------------------------------------------------------------ threads and bad input --------- */

static void threads_and_errors(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond)
{
    char err[EDIFF_ERR];
    float *one;
    size_t n;
    int before = get_threads(), rc, same;
    Pass p;
    if (!selected(T, "unet.a.threads") && !selected(T, "unet.a.bad_input")) return;
    if (pass_init(T, &p, ref, u, cond, NULL, "all")) { pass_free(&p); return; }
    n = (size_t)u->config.out_channels * p.H * p.W;
    one = xmalloc(n * sizeof(float));
    set_threads(1);
    rc = pass_run(&p, NULL, NULL, err);
    memcpy(one, p.out, n * sizeof(float));
    set_threads(2);
    rc |= pass_run(&p, NULL, NULL, err);
    set_threads(before);
    same = rc == 0 && memcmp(one, p.out, n * sizeof(float)) == 0;
    report(T, same, "unet.a.threads_bit_identical", "1 vs 2 threads: %s", same ? "identical" : "DIFFERENT");
    free(one);

    rc = unet_forward(u, &p.arena, p.x, p.H, p.W, p.timestep, NULL, 0, NULL, p.class_vec, NULL, NULL, p.out, err);
    report(T, clear_error(rc, err, "needs a context"), "unet.a.bad_input.no_context", "%s", err);
    rc = unet_forward(u, &p.arena, p.x, p.H, p.W, p.timestep, p.context, p.n_ctx, NULL, NULL, NULL, NULL, p.out, err);
    report(T, clear_error(rc, err, "class_vec is needed"), "unet.a.bad_input.no_class_vec", "%s", err);
    rc = unet_forward(u, &p.arena, p.x, 0, p.W, p.timestep, p.context, p.n_ctx, NULL, p.class_vec, NULL, NULL, p.out,
                      err);
    report(T, clear_error(rc, err, "too small"), "unet.a.bad_input.empty_image", "%s", err);
    report(T, p.arena.used == 0, "unet.a.arena_left_as_found", "%zu bytes still in use after the calls", p.arena.used);
    pass_free(&p);
}

/* ------------------------------------------------------------------ suites per reference ---------- */

static void each_forward(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond, const char *file)
{
    char list[1024], *c, *next;
    const char *v = blob_meta(ref, "cases");
    name_of(list, sizeof list, "%s", v ? v : "");
    for (c = list; *c; c = next) {
        next = c + strcspn(c, ",");
        if (*next) *next++ = 0;
        if (strcmp(c, "paint") != 0) forward_case(T, ref, u, cond, file, c);
    }
}

static void with_model(TestRun *T, const char *file, const char *unet_prefix, const char *cond_prefix,
                       void (*extra)(TestRun *, const Blob *, const Unet *, const Cond *))
{
    char blob_name[64], err[EDIFF_ERR], name[64], tag[8];
    Blob ref;
    Unet u;
    Cond cond;
    name_of(tag, sizeof tag, "%c", file[0]);
    name_of(name, sizeof name, "unet.%s.load", tag);
    name_of(blob_name, sizeof blob_name, "unet_%s.bin", tag);
    if (open_ref(T, &ref, blob_name)) return;
    if (unet_load(&u, &ref, unet_prefix, err)) { report(T, 0, name, "%s", err); blob_close(&ref); return; }
    if (cond_prefix && cond_load(&cond, &ref, cond_prefix, err)) {
        report(T, 0, name, "%s", err);
        unet_free(&u);
        blob_close(&ref);
        return;
    }
    each_forward(T, &ref, &u, cond_prefix ? &cond : NULL, tag);
    if (extra) extra(T, &ref, &u, cond_prefix ? &cond : NULL);
    unet_free(&u);
    blob_close(&ref);
}

static void model_a_extras(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond)
{
    dumps_case(T, ref, u, cond);
    paint_case(T, ref, u, cond);
    threads_and_errors(T, ref, u, cond);
}

static void model_b_extras(TestRun *T, const Blob *ref, const Unet *u, const Cond *cond)
{
    char err[EDIFF_ERR];
    float x[6], out[3], ctx[20];
    Arena a;
    int rc;
    (void)ref; (void)cond;
    if (!selected(T, "unet.b.bad_input")) return;
    memset(x, 0, sizeof x);
    memset(ctx, 0, sizeof ctx);
    if (arena_init(&a, 1 << 20, err)) return;
    rc = unet_forward(u, &a, x, 1, 1, 0.0f, ctx, 1, NULL, NULL, NULL, NULL, out, err);   /* padding 0 needs 2 pixels */
    report(T, clear_error(rc, err, "too small"), "unet.b.bad_input.1x1", "%s", err);
    arena_free(&a);
}

/* Real diffusers configs and unsupported variants: each refused with one line naming the value (the
 * supported SD configs get as far as their first weight, absent from this metadata-only blob). */
static void refusals(TestRun *T)
{
    char list[1024], prefix[64], key[96], name[96], err[EDIFF_ERR], *c, *next;
    const char *v, *expect;
    Blob ref;
    Unet u;
    if (!selected(T, "unet.refuse")) return;
    if (open_ref(T, &ref, "unet_refuse.bin")) return;
    v = blob_meta(&ref, "cases");
    name_of(list, sizeof list, "%s", v ? v : "");
    for (c = list; *c; c = next) {
        next = c + strcspn(c, ",");
        if (*next) *next++ = 0;
        name_of(prefix, sizeof prefix, "%s.", c);
        name_of(key, sizeof key, "expect.%s", c);
        name_of(name, sizeof name, "unet.refuse.%s", c);
        expect = blob_meta(&ref, key);
        report(T, expect && clear_error(unet_load(&u, &ref, prefix, err), err, expect), name, "%s", err);
    }
    blob_close(&ref);
    if (open_ref(T, &ref, "unet_c.bin")) return;
    report(T, clear_error(unet_load(&u, &ref, "fewer.", err), err, "missing tensor 'fewer.down_blocks.0.resnets.1."),
           "unet.refuse.weights_missing", "%s", err);
    report(T, clear_error(unet_load(&u, &ref, "extra.", err), err, "not in the UNet its config describes"),
           "unet.refuse.weights_extra", "%s", err);
    blob_close(&ref);
}

void suite_unet(TestRun *T)
{
    with_model(T, "a", "base.0.unet.", "base.0.cond.", model_a_extras);
    with_model(T, "b", "unet.", "cond.", model_b_extras);
    with_model(T, "c", "unet.", NULL, NULL);
    refusals(T);
}
