/* test/t_sampler.c — the diffusion core against the real libraries (test/gen_sampler.py): every sampler
 * vs k-diffusion / diffusers over the exact Gaussian denoiser with the very normals they drew, the Karras
 * and DDPM grids, expert routing at and around each boundary of a toy 3-expert stage, the EDM
 * preconditioning over that ensemble (alone and under Heun with churn), CFG (scale 1, negative prompt),
 * the random generator (Random123 known answers, the spec's normals, moments, thread invariance), the
 * SR conditioning and the uint8 conversion. */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A float64 reference tensor, read in place (NULL and a failed test if absent or of another dtype). */
static const double *f64(TestRun *T, const Blob *ref, size_t *n, const char *fmt, ...)
{
    char name[256];
    const Tensor *t;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (!(t = ref_tensor(T, ref, name))) return NULL;
    if (t->dtype != DT_F64) { report(T, 0, name, "reference is %s, expected f64", dtype_name(t->dtype)); return NULL; }
    if (n) *n = (size_t)t->numel;
    return (const double *)t->data;
}

static const int32_t *i32(TestRun *T, const Blob *ref, size_t *n, const char *name)
{
    const Tensor *t = ref_tensor(T, ref, name);
    if (!t) return NULL;
    if (t->dtype != DT_I32) { report(T, 0, name, "reference is %s, expected i32", dtype_name(t->dtype)); return NULL; }
    if (n) *n = (size_t)t->numel;
    return (const int32_t *)t->data;
}

/* Calls fn(T, ref, case) for each case of kind listed in the blob's metadata. */
static void each_case(TestRun *T, const Blob *ref, const char *kind,
                      void (*fn)(TestRun *, const Blob *, const char *))
{
    char key[64], list[4096], *name, *next;
    const char *v;
    snprintf(key, sizeof key, "cases.%s", kind);
    if (!(v = blob_meta(ref, key))) { report(T, 0, key, "no cases in the reference blob"); return; }
    snprintf(list, sizeof list, "%s", v);
    for (name = list; name && *name; name = next) {
        if ((next = strchr(name, ','))) *next++ = 0;
        fn(T, ref, name);
    }
}

/* ------------------------------------------------------------------ test denoisers and noise ------ */

/* The exact denoiser of N(mu, sd^2 I) data: D(x; s) = mu + (x - mu) sd^2 / (sd^2 + s^2); counts calls. */
typedef struct {
    const double *mu;
    double        sd;
    size_t        n;
    int           calls;
} Gaussian;

static void gaussian_fn(void *ctx, const double *x, double sigma, double *denoised)
{
    Gaussian *g = ctx;
    double k = g->sd * g->sd / (g->sd * g->sd + sigma * sigma);
    size_t i;
    for (i = 0; i < g->n; i++) denoised[i] = g->mu[i] + (x[i] - g->mu[i]) * k;
    g->calls++;
}

static Denoiser gaussian(Gaussian *g, const double *mu, double sd, size_t n)
{
    Denoiser d;
    g->mu = mu;
    g->sd = sd;
    g->n = n;
    g->calls = 0;
    d.fn = gaussian_fn;
    d.ctx = g;
    d.n = n;
    return d;
}

/* Normals replayed from a recorded tensor, in order; over-reads are counted (and give zeros). */
typedef struct {
    const double *data;
    size_t        len, pos, overrun;
} Recorded;

static void recorded_draw(void *ctx, double *out, size_t n)
{
    Recorded *r = ctx;
    size_t i;
    for (i = 0; i < n; i++) {
        if (r->pos < r->len) out[i] = r->data[r->pos++];
        else { out[i] = 0.0; r->overrun++; }
    }
}

static NoiseSource recorded(Recorded *r, const double *data, size_t len)
{
    NoiseSource s;
    r->data = data;
    r->len = len;
    r->pos = r->overrun = 0;
    s.draw = recorded_draw;
    s.ctx = r;
    return s;
}

/* params = [N, s_churn, s_tmin, s_tmax, s_noise, eta, sd] as gen_sampler.py writes them */
static SamplerConfig config_from(const double *p, int kind)
{
    SamplerConfig c;
    sampler_defaults(&c);
    c.kind = kind;
    c.steps = (int)p[0];
    c.s_churn = p[1]; c.s_tmin = p[2]; c.s_tmax = p[3]; c.s_noise = p[4]; c.eta = p[5];
    return c;
}

/* ------------------------------------------------------------------ schedules --------------------- */

static void karras_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128];
    size_t nw = 0;
    const double *p = f64(T, ref, NULL, "karras.%s.params", c), *want = f64(T, ref, &nw, "karras.%s.want", c);
    double *got;
    snprintf(name, sizeof name, "sampler.karras.%s", c);
    if (!selected(T, name) || !p || !want) return;
    got = xmalloc(nw * sizeof(double));
    karras_sigmas(got, (int)p[0], p[1], p[2], p[3]);
    check_close_f64(T, name, got, want, nw, 1e-12, TOL_REL);
    free(got);
}

/* The shared doc's 5-significant-digit table for N = 18 (docs/ediffi.md §3.1). */
static void karras_doc(TestRun *T, const Blob *ref)
{
    size_t n = 0, i;
    const double *want = f64(T, ref, &n, "karras_doc.want");
    double got[19], worst = 0;
    if (!selected(T, "sampler.karras.doc_table_n18") || !want || n != 19) return;
    karras_sigmas(got, 18, 0.002, 80.0, 7.0);
    for (i = 0; i < 18; i++) worst = fmax(worst, fabs(got[i] - want[i]) / want[i]);
    report(T, worst <= 5e-5 && got[18] == 0.0, "sampler.karras.doc_table_n18",
           "max per-value rel %.1e vs the 5-digit table (tol 5e-05), last 0: %s", worst, got[18] == 0.0 ? "yes" : "NO");
}

static void ddpm_grid_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128];
    size_t nw = 0;
    const double *p = f64(T, ref, NULL, "ddpm_grid.%s.params", c), *want = f64(T, ref, &nw, "ddpm_grid.%s.want", c);
    double *got;
    snprintf(name, sizeof name, "sampler.ddpm_grid.%s", c);
    if (!selected(T, name) || !p || !want) return;
    got = xmalloc(nw * sizeof(double));
    ddpm_sigmas(got, (int)p[0], DDPM_T, DDPM_BETA_START, DDPM_BETA_END);
    check_close_f64(T, name, got, want, nw, 1e-12, TOL_REL);
    free(got);
}

/* ------------------------------------------------------------------ samplers ---------------------- */

/* One sampler run: C's own grid for the config (Karras, or DDPM for ddpm), the reference's recorded
 * normals, the Gaussian denoiser; the final sample within 1e-10, and exactly the reference's draws. */
static void sample_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128], key[160];
    size_t n = 0, nnoise = 0, nsig = 0;
    const double *p = f64(T, ref, NULL, "sample.%s.params", c), *mu = f64(T, ref, &n, "sample.%s.mu", c);
    const double *x0 = f64(T, ref, NULL, "sample.%s.x0", c), *want = f64(T, ref, NULL, "sample.%s.want", c);
    const double *noise = f64(T, ref, &nnoise, "sample.%s.noise", c);
    const double *ref_sigmas = f64(T, ref, &nsig, "sample.%s.sigmas", c);
    const char *kind_name;
    SamplerConfig cfg;
    Gaussian G;
    Recorded rec;
    NoiseSource src;
    Denoiser D;
    double *x, *sigmas;
    int kind, nfe_want;
    snprintf(name, sizeof name, "sampler.sample.%s", c);
    snprintf(key, sizeof key, "sample.%s.sampler", c);
    if (!selected(T, name) || !p || !mu || !x0 || !want || !noise || !ref_sigmas) return;
    kind_name = blob_meta(ref, key);
    if ((kind = kind_name ? sampler_from_name(kind_name) : -1) < 0) { report(T, 0, name, "unknown sampler"); return; }
    cfg = config_from(p, kind);
    sigmas = xmalloc(((size_t)cfg.steps + 1) * sizeof(double));
    sampler_sigmas(&cfg, sigmas);
    x = xmalloc(n * sizeof(double));
    memcpy(x, x0, n * sizeof(double));
    D = gaussian(&G, mu, p[6], n);
    src = recorded(&rec, noise, nnoise);
    sample(&cfg, &D, &src, sigmas, x, NULL);
    check_close_f64(T, name, x, want, n, 1e-10, TOL_ABS);     /* the acceptance asks 1e-5; float64 holds 1e-10 */
    /* Heun: NFE = 2N - 1 on a grid ending in 0; the others: N. */
    nfe_want = kind == SAMPLER_HEUN ? 2 * cfg.steps - 1 : cfg.steps;
    snprintf(key, sizeof key, "%s.draws_nfe", name);
    report(T, rec.pos == nnoise && rec.overrun == 0 && G.calls == nfe_want, key,
           "drew %zu of the reference's %zu normals (over-read %zu); %d denoiser calls (want %d); "
           "grid vs reference: %s",
           rec.pos, nnoise, rec.overrun, G.calls, nfe_want,
           memcmp(sigmas, ref_sigmas, nsig * sizeof(double)) == 0 ? "identical" : "rounding-level");
    free(x);
    free(sigmas);
}

/* ------------------------------------------------------------------ experts and stages ------------ */

static void experts_toy(TestRun *T, const Blob *ref)
{
    size_t n = 0, nw = 0, i, bad = 0;
    const double *probe = f64(T, ref, &n, "experts.toy.probe");
    const int32_t *want = i32(T, ref, &nw, "experts.toy.want");
    char err[EDIFF_ERR], first[160] = "";
    ExpertTable E;
    if (!selected(T, "sampler.experts.toy3_boundaries") || !probe || !want || n != nw) return;
    if (experts_load(&E, ref, "toy", err)) { report(T, 0, "sampler.experts.toy3_boundaries", "%s", err); return; }
    for (i = 0; i < n; i++)
        if (expert_for_sigma(&E, probe[i]) != want[i]) {
            if (!bad++) snprintf(first, sizeof first, "; first: sigma %.17g -> %d, want %d", probe[i],
                                 expert_for_sigma(&E, probe[i]), want[i]);
        }
    report(T, bad == 0 && E.n == 3, "sampler.experts.toy3_boundaries",
           "%d experts, cuts %.6g %.6g; %zu probes at, just below (nextafter) and just above each cut, 0, 1e30: "
           "%zu wrong%s", E.n, E.sigma_hi[0], E.sigma_hi[1], n, bad, first);
}

static void stages_good(TestRun *T, const Blob *ref)
{
    StageConfig S, R, one;
    char err[EDIFF_ERR], e2[EDIFF_ERR], e3[EDIFF_ERR];
    int ok;
    if (!selected(T, "sampler.stage.load")) return;
    ok = stage_config_load(&S, ref, "toy", err) == 0 && stage_config_load(&R, ref, "toysr", e2) == 0 &&
         stage_config_load(&one, ref, "single", e3) == 0;
    ok = ok && S.resolution == 32 && S.experts.n == 3 && S.sigma_data == 0.5 && S.sampler.kind == SAMPLER_DPMPP_2M &&
         S.sampler.steps == 25 && S.sampler.sigma_max == 80 && S.cfg_scale == 4.5 && !S.sr &&
         R.sr && R.resolution == 64 && R.experts.n == 2 && R.aug_sigma == 0.25 && R.aug_dim == 32 &&
         R.sampler.kind == SAMPLER_HEUN && R.sampler.steps == 18 && R.cfg_scale == 1.0 &&
         one.experts.n == 1 && expert_for_sigma(&one.experts, 1e-30) == 0 && expert_for_sigma(&one.experts, 1e30) == 0;
    report(T, ok, "sampler.stage.load", "toy (3 experts, dpmpp2m/25, cfg 4.5), toysr (SR, aug 0.25/32, defaults), "
           "single: %s", ok ? "as written" : "MISMATCH");
}

/* The cascade `stages=toy,toysr` and its alternatives: single replaces toy; an SR stage first, a base
 * stage second, or an alternative that replaces nothing are refused. */
static void cascade(TestRun *T, const Blob *ref)
{
    StageConfig S[CASCADE_MAX];
    char e1[EDIFF_ERR], e2[EDIFF_ERR], e3[EDIFF_ERR], e4[EDIFF_ERR], e5[EDIFF_ERR];
    int n1, n2, ok;
    if (!selected(T, "sampler.cascade_load")) return;
    n1 = cascade_load(S, CASCADE_MAX, ref, NULL, e1);
    ok = n1 == 2 && strcmp(S[0].name, "toy") == 0 && strcmp(S[1].name, "toysr") == 0 && S[1].sr;
    n2 = cascade_load(S, CASCADE_MAX, ref, "single", e2);
    ok = ok && n2 == 2 && strcmp(S[0].name, "single") == 0 && strcmp(S[1].name, "toysr") == 0;
    ok = ok && cascade_load(S, CASCADE_MAX, ref, "srfirst", e3) == -1 && strstr(e3, "'srfirst' is a super-resolution");
    ok = ok && cascade_load(S, CASCADE_MAX, ref, "basesecond", e4) == -1 && strstr(e4, "is not a super-resolution");
    ok = ok && cascade_load(S, CASCADE_MAX, ref, "toysr", e5) == -1 && strstr(e5, "'toysr' replaces no stage");
    ok = ok && cascade_load(S, 1, ref, NULL, e1) == -1 && strstr(e1, "more than 1 stages");
    report(T, ok, "sampler.cascade_load", "toy,toysr; single replaces toy; refused: %s | %s | %s", e3, e4, e5);
}

static void stage_bad_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128], key[128], stage[64], err[EDIFF_ERR] = "";
    const char *expect;
    StageConfig S;
    int rc;
    snprintf(name, sizeof name, "sampler.stage_bad.%s", c);
    snprintf(key, sizeof key, "stage_bad.%s.expect", c);
    snprintf(stage, sizeof stage, "bad_%s", c);
    if (!selected(T, name) || !(expect = blob_meta(ref, key))) return;
    rc = stage_config_load(&S, ref, stage, err);
    report(T, rc == -1 && strstr(err, expect) && !strchr(err, '\n') && strstr(err, "sampler.bin"), name, "%s", err);
}

/* ------------------------------------------------------------------ EDM precond over toy experts --- */

/* F_k(input)[c,p] = tanh(sum_c' W_k[c,c'] input[c',p] + c_noise b_k[c]) on [3+3, 4, 4]; logs every call. */
typedef struct {
    float        W[3][3][6], b[3][3];
    int          HW;
    int          calls[64], ncalls;
} ToyNet;

static void toy_forward(void *ctx, int expert, const float *input, float c_noise, float *out)
{
    ToyNet *t = ctx;
    int c, j, p;
    if (t->ncalls < 64) t->calls[t->ncalls] = expert;
    t->ncalls++;
    for (c = 0; c < 3; c++)
        for (p = 0; p < t->HW; p++) {
            double s = (double)c_noise * t->b[expert][c];
            for (j = 0; j < 6; j++) s += (double)t->W[expert][c][j] * input[j * t->HW + p];
            out[c * t->HW + p] = (float)tanh(s);
        }
}

static int toy_net_load(TestRun *T, const Blob *ref, ToyNet *net, float **z_lr)
{
    float *W = ref_f32(T, ref, "edm.W", NULL), *b = ref_f32(T, ref, "edm.b", NULL);
    *z_lr = ref_f32(T, ref, "edm.z_lr", NULL);
    if (!W || !b || !*z_lr) { free(W); free(b); free(*z_lr); return -1; }
    memcpy(net->W, W, sizeof net->W);
    memcpy(net->b, b, sizeof net->b);
    net->HW = 16;
    net->ncalls = 0;
    free(W);
    free(b);
    return 0;
}

static void edm_precond(TestRun *T, const Blob *ref)
{
    size_t n = 0, ns = 0, k;
    const double *x = f64(T, ref, &n, "edm.x"), *sig = f64(T, ref, &ns, "edm.sigma");
    const double *want = f64(T, ref, NULL, "edm.want");
    ToyNet net;
    float *z_lr;
    ExpertTable E;
    EdmDenoiser e;
    Network nw;
    Denoiser D;
    double *got;
    char err[EDIFF_ERR];
    if (!selected(T, "sampler.edm.precond_3experts") || !x || !sig || !want || toy_net_load(T, ref, &net, &z_lr))
        return;
    if (experts_load(&E, ref, "toy", err)) {
        report(T, 0, "sampler.edm.precond_3experts", "%s", err);
        free(z_lr);
        return;
    }
    nw.forward = toy_forward;
    nw.ctx = &net;
    D = edm_denoiser(&e, &E, nw, 0.5, 3, 4, 4, z_lr, 3);
    got = xmalloc(ns * n * sizeof(double));
    for (k = 0; k < ns; k++) D.fn(D.ctx, x, sig[k], got + k * n);
    check_close_f64(T, "sampler.edm.precond_3experts", got, want, ns * n, 1e-6, TOL_ABS);   /* float32 net */
    edm_denoiser_free(&e);
    free(got);
    free(z_lr);
}

/* Heun with churn through route -> precond -> F: the expert of every call follows the sigma of that call
 * (sigma_hat for the first evaluation, sigma_{i+1} for the correction), as k-diffusion's run saw it. */
static void edm_heun(TestRun *T, const Blob *ref)
{
    size_t n = 0, nnoise = 0, ncalls = 0, i, same = 0;
    const double *p = f64(T, ref, NULL, "edm_heun.params"), *x0 = f64(T, ref, &n, "edm_heun.x0");
    const double *noise = f64(T, ref, &nnoise, "edm_heun.noise"), *want = f64(T, ref, NULL, "edm_heun.want");
    const double *ref_sigmas = f64(T, ref, NULL, "edm_heun.sigmas");
    const int32_t *calls = i32(T, ref, &ncalls, "edm_heun.calls");
    ToyNet net;
    float *z_lr;
    ExpertTable E;
    EdmDenoiser e;
    Network nw;
    Denoiser D;
    Recorded rec;
    NoiseSource src;
    SamplerConfig cfg;
    double *x;
    char err[EDIFF_ERR], seq[65];
    if (!selected(T, "sampler.edm.heun_churn_3experts") || !p || !x0 || !noise || !want || !calls || !ref_sigmas ||
        toy_net_load(T, ref, &net, &z_lr))
        return;
    if (experts_load(&E, ref, "toy", err)) {
        report(T, 0, "sampler.edm.heun_churn_3experts", "%s", err);
        free(z_lr);
        return;
    }
    nw.forward = toy_forward;
    nw.ctx = &net;
    D = edm_denoiser(&e, &E, nw, 0.5, 3, 4, 4, z_lr, 3);
    cfg = config_from(p, SAMPLER_HEUN);
    x = xmalloc(n * sizeof(double));
    memcpy(x, x0, n * sizeof(double));
    src = recorded(&rec, noise, nnoise);
    sample_heun(&cfg, &D, &src, ref_sigmas, x, NULL);
    check_close_f64(T, "sampler.edm.heun_churn_3experts", x, want, n, 1e-6, TOL_ABS);
    for (i = 0; i < ncalls && i < 64; i++) {
        same += net.calls[i] == calls[i];
        seq[i] = (char)('0' + net.calls[i]);
    }
    seq[i] = 0;
    report(T, (size_t)net.ncalls == ncalls && same == ncalls && rec.pos == nnoise, "sampler.edm.heun_expert_per_call",
           "%d calls (k-diffusion %zu), %zu route alike; expert per call: %s", net.ncalls, ncalls, same, seq);
    edm_denoiser_free(&e);
    free(x);
    free(z_lr);
}

/* ------------------------------------------------------------------ classifier-free guidance ------- */

static void cfg_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128];
    size_t n = 0;
    const double *p = f64(T, ref, NULL, "cfg.%s.params", c), *want = f64(T, ref, NULL, "cfg.%s.want", c);
    const double *mu_c = f64(T, ref, &n, "cfg.mu_cond"), *mu_u = f64(T, ref, NULL, "cfg.mu_uncond");
    const double *x = f64(T, ref, NULL, "cfg.x");
    Gaussian Gc, Gu;
    Denoiser Dc, Du, D;
    Guidance g;
    double *got, *cond_only;
    snprintf(name, sizeof name, "sampler.cfg.%s", c);
    if (!selected(T, name) || !p || !want || !mu_c || !mu_u || !x) return;
    Dc = gaussian(&Gc, mu_c, p[2], n);
    Du = gaussian(&Gu, mu_u, p[2], n);
    D = cfg_denoiser(&g, &Dc, &Du, p[0]);
    got = xmalloc(n * sizeof(double));
    cond_only = xmalloc(n * sizeof(double));
    D.fn(D.ctx, x, p[1], got);
    if (p[0] == 1.0) {              /* scale 1: exactly the conditional denoiser, one evaluation */
        Dc.fn(Dc.ctx, x, p[1], cond_only);
        report(T, memcmp(got, cond_only, n * sizeof(double)) == 0 && Gu.calls == 0 && Gc.calls == 2, name,
               "scale 1: bit-identical to D_cond: %s; unconditional evaluations: %d",
               memcmp(got, cond_only, n * sizeof(double)) == 0 ? "yes" : "NO", Gu.calls);
    } else {
        check_close_f64(T, name, got, want, n, 1e-12, TOL_ABS);
    }
    cfg_free(&g);
    free(got);
    free(cond_only);
}

/* A denoiser driven by a Conditioning: the Gaussian denoiser with mu = t5_tokens (zero when dropped). */
typedef struct {
    Conditioning cond;
    size_t       n;
    double      *mu;
} CondGaussian;

static void cond_gaussian_fn(void *ctx, const double *x, double sigma, double *denoised)
{
    CondGaussian *g = ctx;
    size_t i;
    double k = 0.25 / (0.25 + sigma * sigma);
    for (i = 0; i < g->n; i++) {
        double mu = g->cond.t5_tokens ? g->cond.t5_tokens[i] : 0.0;
        denoised[i] = mu + (x[i] - mu) * k;
    }
}

/* The negative prompt replaces the null condition: CFG with scale 5 under DPM-Solver++(2M) equals
 * k-diffusion's run of D_neg + 5 (D_cond - D_neg); the branch pointers follow docs/model.md. */
static void cfg_negative(TestRun *T, const Blob *ref)
{
    size_t n = 0, i;
    const double *p = f64(T, ref, NULL, "cfg_run.params"), *x0 = f64(T, ref, &n, "cfg_run.x0");
    const double *want = f64(T, ref, NULL, "cfg_run.want"), *sig = f64(T, ref, NULL, "cfg_run.sigmas");
    const double *mu_c = f64(T, ref, NULL, "cfg.mu_cond"), *mu_n = f64(T, ref, NULL, "cfg.mu_neg");
    float *t5_c, *t5_n, img[4] = {1, 2, 3, 4}, pooled[4] = {5, 6, 7, 8};
    Conditioning cond, neg, u_base, u_sr, u_none;
    CondGaussian gc, gu;
    Denoiser Dc, Du, D;
    Guidance g;
    SamplerConfig cfg;
    double *x;
    int ptr_ok;
    if (!selected(T, "sampler.cfg.negative_prompt") || !p || !x0 || !want || !sig || !mu_c || !mu_n) return;
    t5_c = xmalloc(n * sizeof(float));
    t5_n = xmalloc(n * sizeof(float));
    for (i = 0; i < n; i++) { t5_c[i] = (float)mu_c[i]; t5_n[i] = (float)mu_n[i]; }
    cond.t5_tokens = t5_c; cond.clip_tokens = t5_c; cond.clip_text_embed = pooled; cond.clip_image_embed = img;
    neg.t5_tokens = t5_n; neg.clip_tokens = t5_n; neg.clip_text_embed = pooled + 1; neg.clip_image_embed = NULL;
    u_base = cfg_uncond(&cond, &neg, 0);
    u_sr = cfg_uncond(&cond, &neg, 1);
    u_none = cfg_uncond(&cond, NULL, 1);
    ptr_ok = u_base.t5_tokens == t5_n && u_base.clip_tokens == t5_n && u_base.clip_text_embed == pooled + 1 &&
             !u_base.clip_image_embed && u_sr.t5_tokens == t5_n && u_sr.clip_image_embed == img &&
             !u_none.t5_tokens && !u_none.clip_tokens && !u_none.clip_text_embed && u_none.clip_image_embed == img;
    gc.cond = cond; gc.n = n;
    gu.cond = u_base; gu.n = n;
    Dc.fn = Du.fn = cond_gaussian_fn;
    Dc.ctx = &gc; Du.ctx = &gu;
    Dc.n = Du.n = n;
    D = cfg_denoiser(&g, &Dc, &Du, p[1]);
    sampler_defaults(&cfg);
    cfg.kind = SAMPLER_DPMPP_2M;
    cfg.steps = (int)p[0];
    x = xmalloc(n * sizeof(double));
    memcpy(x, x0, n * sizeof(double));
    sample(&cfg, &D, NULL, sig, x, NULL);
    check_close_f64(T, "sampler.cfg.negative_prompt", x, want, n, 1e-6, TOL_ABS);   /* float32 mu */
    report(T, ptr_ok, "sampler.cfg.uncond_branches", "negative text replaces the null text; image embedding "
           "dropped in base, kept in SR; no negative: text dropped: %s", ptr_ok ? "yes" : "NO");
    cfg_free(&g);
    free(x); free(t5_c); free(t5_n);
}

/* ------------------------------------------------------------------ RNG --------------------------- */

static void rng_kat(TestRun *T, const Blob *ref)
{
    size_t n = 0, i, ok = 0;
    const int32_t *ctr = i32(T, ref, &n, "rng.kat.ctr"), *key = i32(T, ref, NULL, "rng.kat.key");
    const int32_t *want = i32(T, ref, NULL, "rng.kat.want");
    if (!selected(T, "sampler.rng.philox_kat") || !ctr || !key || !want) return;
    for (i = 0; i < n / 4; i++) {
        uint32_t c[4], k[2], out[4];
        int j;
        for (j = 0; j < 4; j++) c[j] = (uint32_t)ctr[4 * i + j];
        k[0] = (uint32_t)key[2 * i]; k[1] = (uint32_t)key[2 * i + 1];
        philox4x32_10(c, k, out);
        ok += out[0] == (uint32_t)want[4 * i] && out[1] == (uint32_t)want[4 * i + 1] &&
              out[2] == (uint32_t)want[4 * i + 2] && out[3] == (uint32_t)want[4 * i + 3];
    }
    report(T, ok == n / 4 && n == 12, "sampler.rng.philox_kat", "Random123 kat_vectors philox4x32 10: %zu of %zu match",
           ok, n / 4);
}

static void rng_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128], key[64];
    size_t n = 0;
    const int32_t *p;
    const double *want = f64(T, ref, &n, "rng.%s.want", c);
    double *got;
    Rng r;
    snprintf(name, sizeof name, "sampler.rng.%s", c);
    snprintf(key, sizeof key, "rng.%s.params", c);
    if (!selected(T, name) || !want || !(p = i32(T, ref, NULL, key))) return;
    r = rng_init((uint64_t)(uint32_t)p[1] << 32 | (uint32_t)p[0], (uint64_t)(uint32_t)p[3] << 32 | (uint32_t)p[2]);
    r.offset = (uint64_t)(uint32_t)p[5] << 32 | (uint32_t)p[4];
    got = xmalloc(n * sizeof(double));
    rng_normal(&r, got, n);
    check_close_f64(T, name, got, want, n, 1e-13, TOL_ABS);
    free(got);
}

/* Moments of 2^20 normals, each within 5 standard errors. */
static void rng_moments(TestRun *T)
{
    const size_t n = (size_t)1 << 20;
    double *z = xmalloc(n * sizeof(double)), m1 = 0, m2 = 0, m3 = 0, m4 = 0, tail = 0;
    Rng r = rng_init(1234, rng_stream(0, 0, RNG_INIT));
    size_t i;
    int ok;
    if (!selected(T, "sampler.rng.moments")) { free(z); return; }
    rng_normal(&r, z, n);
    for (i = 0; i < n; i++) {
        double v = z[i];
        m1 += v; m2 += v * v; m3 += v * v * v; m4 += v * v * v * v;
        tail += fabs(v) > 3.0;
    }
    m1 /= n; m2 /= n; m3 /= n; m4 /= n; tail /= n;
    ok = fabs(m1) < 5 / sqrt((double)n) && fabs(m2 - 1) < 5 * sqrt(2.0 / n) && fabs(m3) < 5 * sqrt(15.0 / n) &&
         fabs(m4 - 3) < 5 * sqrt(96.0 / n) && fabs(tail - 0.0026998) < 5 * sqrt(0.0027 / n);
    report(T, ok, "sampler.rng.moments", "2^20 normals: mean %+.5f, var %.5f, skew %+.5f, kurt %.4f, P(|z|>3) %.5f "
           "(0.00270)", m1, m2, m3, m4, tail);
    free(z);
}

/* A pure function of (seed, stream, index): chunked draws (odd sizes, odd offsets) equal one long draw,
 * for 1 and 2 threads; another stream or seed gives other numbers. */
static void rng_pure(TestRun *T)
{
    const size_t n = 40001;                  /* above the size rng_normal draws with 2 threads */
    double *a = xmalloc(n * sizeof(double)), *b = xmalloc(n * sizeof(double)), *c = xmalloc(n * sizeof(double));
    double other[8];
    Rng r1 = rng_init(99, 7), r2 = rng_init(99, 7), r3 = rng_init(99, 8), r4 = rng_init(100, 7);
    int before = get_threads(), same_chunks, same_threads, differ;
    if (!selected(T, "sampler.rng.pure_function_of_index")) goto done;
    set_threads(1);
    rng_normal(&r1, a, n);
    rng_normal(&r2, b, 1);
    rng_normal(&r2, b + 1, 7);
    rng_normal(&r2, b + 8, 0);
    rng_normal(&r2, b + 8, 1000);
    rng_normal(&r2, b + 1008, n - 1008);
    same_chunks = memcmp(a, b, n * sizeof(double)) == 0 && r2.offset == n;
    set_threads(2);
    r1 = rng_init(99, 7);
    rng_normal(&r1, c, n);
    same_threads = memcmp(a, c, n * sizeof(double)) == 0;
    rng_normal(&r3, other, 4);
    rng_normal(&r4, other + 4, 4);
    differ = memcmp(other, a, 4 * sizeof(double)) != 0 && memcmp(other + 4, a, 4 * sizeof(double)) != 0;
    set_threads(before);
    report(T, same_chunks && same_threads && differ, "sampler.rng.pure_function_of_index",
           "chunks 1+7+0+1000+%zu = one draw: %s; 1 vs 2 threads: %s; other stream/seed differ: %s",
           n - 1008, same_chunks ? "yes" : "NO", same_threads ? "identical" : "DIFFERENT", differ ? "yes" : "NO");
done:
    free(a); free(b); free(c);
}

/* ------------------------------------------------------------------ SR conditioning, I/O ----------- */

static void aug_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128];
    size_t n = 0;
    const double *p = f64(T, ref, NULL, "aug.%s.params", c), *want = f64(T, ref, &n, "aug.%s.want", c);
    float out[64];
    double got[64];
    size_t i;
    snprintf(name, sizeof name, "sampler.aug_features.%s", c);
    if (!selected(T, name) || !p || !want || n > 64 || (size_t)p[1] != n) return;
    aug_features(out, p[0], (int)p[1]);
    for (i = 0; i < n; i++) got[i] = out[i];
    check_close_f64(T, name, got, want, n, 2e-6, TOL_ABS);
}

static void lowres_case(TestRun *T, const Blob *ref, const char *c)
{
    char name[128];
    size_t n = 0, i;
    const double *p = f64(T, ref, NULL, "lowres.%s.params", c), *want = f64(T, ref, &n, "lowres.%s.want", c);
    const double *noise = f64(T, ref, NULL, "lowres.%s.noise", c);
    float *y_lr, *z;
    double *got;
    Recorded rec;
    NoiseSource src;
    char key[128];
    snprintf(name, sizeof name, "sampler.lowres_condition.%s", c);
    snprintf(key, sizeof key, "lowres.%s.y_lr", c);
    if (!selected(T, name) || !p || !want || !noise || !(y_lr = ref_f32(T, ref, key, NULL))) return;
    z = xmalloc(n * sizeof(float));
    got = xmalloc(n * sizeof(double));
    src = recorded(&rec, noise, n);
    lowres_condition(z, y_lr, (int)p[0], (int)p[1], (int)p[2], (int)p[3], (int)p[4], p[5], &src);
    for (i = 0; i < n; i++) got[i] = z[i];
    check_close_f64(T, name, got, want, n, 1e-6, TOL_ABS);
    free(y_lr); free(z); free(got);
}

static void rgb8(TestRun *T, const Blob *ref)
{
    const Tensor *x = ref_tensor(T, ref, "rgb8.x");
    size_t n = 0, i, wrong = 0;
    const int32_t *want = i32(T, ref, &n, "rgb8.want");
    const char *halves = blob_meta(ref, "rgb8.halves");
    uint8_t *got;
    if (!selected(T, "sampler.image_to_rgb8") || !x || !want || x->dtype != DT_F32 || (size_t)x->numel != n) return;
    got = xmalloc(n);
    image_to_rgb8(got, (const float *)x->data, (int)x->shape[1], (int)x->shape[2]);
    for (i = 0; i < n; i++) wrong += got[i] != want[i];
    report(T, wrong == 0, "sampler.image_to_rgb8", "%zu bytes vs torch round() (half to even; %s exact .5 cases): "
           "%zu differ", n, halves ? halves : "?", wrong);
    free(got);
}

static void noise_file(TestRun *T)
{
    float data[60], *got = NULL, *bad = NULL;
    int64_t shape4[4] = {1, 3, 4, 5}, shape3[3] = {5, 4, 3};
    char err[EDIFF_ERR] = "", err2[EDIFF_ERR] = "";
    int i, ok;
    if (!selected(T, "sampler.noise_load")) return;
    for (i = 0; i < 60; i++) data[i] = (float)i * 0.25f - 7.0f;
    ok = npy_write("test/out/noise_ok.npy", data, 4, shape4, err) == 0 &&
         npy_write("test/out/noise_bad.npy", data, 3, shape3, err) == 0 &&
         noise_load("test/out/noise_ok.npy", 3, 4, 5, &got, err) == 0 && memcmp(got, data, sizeof data) == 0 &&
         noise_load("test/out/noise_bad.npy", 3, 4, 5, &bad, err2) == -1 && !bad &&
         strstr(err2, "has shape [5,4,3], need [3,4,5]");
    report(T, ok, "sampler.noise_load", "[1,3,4,5] read back exactly; [5,4,3] refused: %s", err2);
    free(got);
}

/* stage_sample: the same seed gives the same bytes on 1 and 2 threads; another seed does not; the
 * injected initial noise path equals sampling by hand from sigma_0 n. */
static void stage_determinism(TestRun *T)
{
    const size_t n = 3 * 8 * 8;
    float a[3 * 8 * 8], b[3 * 8 * 8], c[3 * 8 * 8], d[3 * 8 * 8], init[3 * 8 * 8];
    double mu[3 * 8 * 8], x[3 * 8 * 8], sigmas[21];
    Gaussian G;
    Denoiser D;
    SamplerConfig cfg;
    Rng r;
    NoiseSource src;
    size_t i;
    int before = get_threads(), same, differ, init_ok = 1;
    if (!selected(T, "sampler.stage_sample.determinism")) return;
    for (i = 0; i < n; i++) mu[i] = 0.3 * sin((double)i);
    D = gaussian(&G, mu, 0.5, n);
    sampler_defaults(&cfg);
    cfg.kind = SAMPLER_EULER_A;
    cfg.steps = 20;
    set_threads(1);
    stage_sample(&cfg, &D, 42, 0, 1, NULL, NULL, a);
    set_threads(2);
    stage_sample(&cfg, &D, 42, 0, 1, NULL, NULL, b);
    set_threads(before);
    stage_sample(&cfg, &D, 43, 0, 1, NULL, NULL, c);
    same = memcmp(a, b, sizeof a) == 0;
    differ = memcmp(a, c, sizeof a) != 0;
    /* injected noise: x = sigma_0 init, then the same sampler with the stream RNG_SAMPLER */
    for (i = 0; i < n; i++) init[i] = (float)sin(i * 0.7);
    stage_sample(&cfg, &D, 42, 0, 1, init, NULL, d);
    sampler_sigmas(&cfg, sigmas);
    for (i = 0; i < n; i++) x[i] = sigmas[0] * init[i];
    r = rng_init(42, rng_stream(0, 1, RNG_SAMPLER));
    src = noise_from_rng(&r);
    sample(&cfg, &D, &src, sigmas, x, NULL);
    for (i = 0; i < n; i++) init_ok &= d[i] == (float)fmin(fmax(x[i], -1), 1);
    report(T, same && differ && init_ok, "sampler.stage_sample.determinism",
           "seed 42 on 1 vs 2 threads: %s; seed 43 differs: %s; injected noise = sigma_0 n by hand: %s",
           same ? "identical bytes" : "DIFFERENT", differ ? "yes" : "NO", init_ok ? "yes" : "NO");
}

/* What a SampleHook saw: the step indices in order, the last sample, the draws and draw 0. */
typedef struct {
    int    steps_seen, in_order, draws;
    double last[3 * 4 * 4], first_draw[3 * 4 * 4];
} Observed;

static void observe_step(void *ctx, int i, const double *x, size_t n)
{
    Observed *o = ctx;
    o->in_order &= i == o->steps_seen++;
    memcpy(o->last, x, n * sizeof *x);
}

static void observe_noise(void *ctx, int draw, const double *eps, size_t n)
{
    Observed *o = ctx;
    o->in_order &= draw == o->draws++;
    if (draw == 0) memcpy(o->first_draw, eps, n * sizeof *eps);
}

/* stage_sample's SampleHook (--dump): every sampler reports steps 0..N-1 in order, the last sample is
 * the output before clamping, draw 0 is the initial noise of stream RNG_INIT, then one draw per step
 * that takes noise (heun/euler: every step; euler_a/ddpm: every step but the last; dpmpp2m: none);
 * observing changes no byte of the output. */
static void stage_hook(TestRun *T)
{
    static const int kinds[] = {SAMPLER_HEUN, SAMPLER_EULER, SAMPLER_EULER_A, SAMPLER_DDPM, SAMPLER_DPMPP_2M};
    const size_t n = 3 * 4 * 4;
    double mu[3 * 4 * 4], n0[3 * 4 * 4];
    float plain[3 * 4 * 4], seen[3 * 4 * 4];
    Gaussian G;
    Denoiser D;
    SamplerConfig cfg;
    SampleHook hook;
    Observed o;
    Rng r;
    char name[64];
    size_t i;
    int k, want_draws, last_ok, n0_ok;
    for (i = 0; i < n; i++) mu[i] = 0.2 * cos((double)i);
    D = gaussian(&G, mu, 0.5, n);
    r = rng_init(7, rng_stream(0, 0, RNG_INIT));
    rng_normal(&r, n0, n);
    hook.step = observe_step;
    hook.noise = observe_noise;
    hook.ctx = &o;
    for (k = 0; k < (int)(sizeof kinds / sizeof kinds[0]); k++) {
        snprintf(name, sizeof name, "sampler.hook.%s", sampler_name(kinds[k]));
        if (!selected(T, name)) continue;
        sampler_defaults(&cfg);
        cfg.kind = kinds[k];
        cfg.steps = 5;
        cfg.s_churn = kinds[k] == SAMPLER_EULER ? 1.0 : 0.0;
        memset(&o, 0, sizeof o);
        o.in_order = 1;
        stage_sample(&cfg, &D, 7, 0, 0, NULL, NULL, plain);
        stage_sample(&cfg, &D, 7, 0, 0, NULL, &hook, seen);
        want_draws = 1 + (kinds[k] == SAMPLER_DPMPP_2M ? 0 : kinds[k] == SAMPLER_EULER_A || kinds[k] == SAMPLER_DDPM ?
                          cfg.steps - 1 : cfg.steps);
        for (i = 0, last_ok = 1, n0_ok = 1; i < n; i++) {
            last_ok &= seen[i] == (float)fmin(fmax(o.last[i], -1), 1);
            n0_ok &= o.first_draw[i] == n0[i];
        }
        report(T, o.steps_seen == cfg.steps && o.in_order && o.draws == want_draws && last_ok && n0_ok &&
               memcmp(plain, seen, sizeof plain) == 0, name,
               "%d steps reported in order (want %d), %d draws (want %d), last sample = output: %s, draw 0 = "
               "RNG_INIT stream: %s, output unchanged by observing: %s", o.steps_seen, cfg.steps, o.draws,
               want_draws, last_ok ? "yes" : "NO", n0_ok ? "yes" : "NO",
               memcmp(plain, seen, sizeof plain) == 0 ? "yes" : "NO");
    }
}

void suite_sampler(TestRun *T)
{
    Blob ref;
    if (open_ref(T, &ref, "sampler.bin")) return;
    each_case(T, &ref, "karras", karras_case);
    karras_doc(T, &ref);
    each_case(T, &ref, "ddpm_grid", ddpm_grid_case);
    each_case(T, &ref, "sample", sample_case);
    experts_toy(T, &ref);
    stages_good(T, &ref);
    cascade(T, &ref);
    each_case(T, &ref, "stage_bad", stage_bad_case);
    edm_precond(T, &ref);
    edm_heun(T, &ref);
    each_case(T, &ref, "cfg", cfg_case);
    cfg_negative(T, &ref);
    rng_kat(T, &ref);
    each_case(T, &ref, "rng", rng_case);
    rng_moments(T);
    rng_pure(T);
    each_case(T, &ref, "aug", aug_case);
    each_case(T, &ref, "lowres", lowres_case);
    rgb8(T, &ref);
    noise_file(T);
    stage_determinism(T);
    stage_hook(T);
    blob_close(&ref);
}
