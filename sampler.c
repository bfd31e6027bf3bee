/* sampler.c — the diffusion core of ediff (docs/sampling.md): a counter-based random generator, the
 * EDM-preconditioned ensemble of expert denoisers, the samplers of Karras et al. (2022) and friends as
 * short functions over a denoiser (after k-diffusion's sampling.py), classifier-free guidance, and the
 * conditioning of super-resolution stages. The sampler state lives in double; networks run in float. */
#include "ediff.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The noise must be bit-identical everywhere, so a*b + c is rounded twice, never fused: GCC never
 * contracts in ISO C mode (-std=c99); other compilers are told so. */
#if defined(__clang__) || !defined(__GNUC__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ================================================================ randomness ==================== */

/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11):
 * ten rounds of two 32x32->64-bit products, the key bumped by the Weyl constants between rounds. */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    int round;
    for (round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        c0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        c1 = (uint32_t)p1;
        c2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c3 = (uint32_t)p0;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* ln u for u in (0, 1], from an exact frexp and + - * / only (so bit-identical on every IEEE-754
 * platform): u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^23/23),
 * s = (m-1)/(m+1), |s| <= 0.172; ln 2 split in two so that e ln2_hi is exact. */
static double ln_unit(double u)
{
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    int e, k;
    double m = frexp(u, &e), s, s2, p = 0.0;
    if (m < 0.70710678118654752440) { m *= 2.0; e--; }
    s = (m - 1.0) / (m + 1.0);
    s2 = s * s;
    for (k = 11; k >= 0; k--) p = p * s2 + 1.0 / (2 * k + 1);
    return e * ln2_hi + (e * ln2_lo + 2.0 * s * p);
}

/* cos(2 pi v) and sin(2 pi v) for v in [0, 1), from + - * / only: 4v = q + f with integer q and
 * |f| <= 1/2, theta = f pi/2, Taylor series to degree 20/21 (|theta| <= pi/4), then q quarter turns. */
static void sincos_2pi(double v, double *c, double *s)
{
    double q = floor(4.0 * v + 0.5), f = 4.0 * v - q, t = f * 1.57079632679489661923, t2 = t * t;
    double sp = 1.0, cp = 1.0, sn, cs;
    int k;
    for (k = 10; k >= 1; k--) {
        sp = 1.0 - t2 / ((2 * k) * (2 * k + 1)) * sp;
        cp = 1.0 - t2 / ((2 * k - 1) * (2 * k)) * cp;
    }
    sn = t * sp;
    cs = cp;
    switch ((int)q & 3) {
    case 0: *c = cs; *s = sn; break;
    case 1: *c = -sn; *s = cs; break;
    case 2: *c = -cs; *s = -sn; break;
    default: *c = sn; *s = -cs; break;
    }
}

/* Normals 2b and 2b+1 of (seed, stream): one Philox block with counter (b, stream) and key seed gives
 * two 53-bit uniforms u1 in (0, 1], u2 in [0, 1); Box-Muller: r = sqrt(-2 ln u1), (r cos 2pi u2, r sin 2pi u2). */
static void normal_pair(uint64_t seed, uint64_t stream, uint64_t b, double out[2])
{
    const double two_m53 = 1.0 / 9007199254740992.0;
    uint32_t ctr[4], key[2], w[4];
    double u1, u2, r, c, s;
    ctr[0] = (uint32_t)b; ctr[1] = (uint32_t)(b >> 32);
    ctr[2] = (uint32_t)stream; ctr[3] = (uint32_t)(stream >> 32);
    key[0] = (uint32_t)seed; key[1] = (uint32_t)(seed >> 32);
    philox4x32_10(ctr, key, w);
    u1 = (double)(((((uint64_t)w[1] << 32) | w[0]) >> 11) + 1) * two_m53;
    u2 = (double)((((uint64_t)w[3] << 32) | w[2]) >> 11) * two_m53;
    r = sqrt(-2.0 * ln_unit(u1));
    sincos_2pi(u2, &c, &s);
    out[0] = r * c;
    out[1] = r * s;
}

Rng rng_init(uint64_t seed, uint64_t stream)
{
    Rng r;
    r.seed = seed;
    r.stream = stream;
    r.offset = 0;
    return r;
}

void rng_normal(Rng *r, double *out, size_t n)
{
    uint64_t first, off = r->offset;
    long nb, j;
    if (n == 0) return;
    first = off / 2;
    nb = (long)((off + n - 1) / 2 - first + 1);
    /* A pair takes ~80 ns, some 64 element operations of PAR_WORK: 2 threads from 16384 pairs. */
OMP(omp parallel for schedule(static) if (64.0 * nb >= PAR_WORK))
    for (j = 0; j < nb; j++) {
        double pair[2];
        uint64_t i = 2 * (first + (uint64_t)j);
        int h;
        normal_pair(r->seed, r->stream, first + (uint64_t)j, pair);
        for (h = 0; h < 2; h++)
            if (i + h >= off && i + h < off + n) out[i + h - off] = pair[h];
    }
    r->offset += n;
}

uint64_t rng_stream(int image, int stage, int purpose)
{
    return ((uint64_t)image << 16) | ((uint64_t)stage << 8) | (uint64_t)purpose;
}

static void rng_draw(void *ctx, double *out, size_t n) { rng_normal((Rng *)ctx, out, n); }

NoiseSource noise_from_rng(Rng *r)
{
    NoiseSource s;
    s.draw = rng_draw;
    s.ctx = r;
    return s;
}

/* ================================================================ experts ======================= */

int experts_load(ExpertTable *E, const Blob *b, const char *stage, char err[EDIFF_ERR])
{
    Loader L;
    long n;
    int k;
    loader_init(&L, b, "");
    n = ld_int(&L, "%s.experts", stage);
    if (!L.failed && (n < 1 || n > EXPERTS_MAX))
        loader_fail(&L, "stage '%s': %ld experts (1..%d supported)", stage, n, EXPERTS_MAX);
    for (k = 0; !L.failed && k < n; k++) {
        E->sigma_lo[k] = ld_float(&L, "%s.%d.sigma_lo", stage, k);
        E->sigma_hi[k] = ld_float(&L, "%s.%d.sigma_hi", stage, k);
    }
    E->n = (int)n;
    /* Ordered, contiguous, covering [0, inf): then every sigma >= 0 has exactly one expert. */
    for (k = 0; !L.failed && k < E->n; k++) {
        const char *why = NULL;
        if (!(E->sigma_lo[k] < E->sigma_hi[k])) why = "is empty (sigma_lo >= sigma_hi)";
        else if (k == 0 && E->sigma_lo[0] != 0.0) why = "must start at sigma_lo=0";
        else if (k == E->n - 1 && E->sigma_hi[k] != HUGE_VAL) why = "must end at sigma_hi=inf";
        else if (k > 0 && E->sigma_lo[k] != E->sigma_hi[k - 1]) why = "does not start where the previous one ends";
        if (why)
            loader_fail(&L, "stage '%s': expert %d [%.9g, %.9g) %s", stage, k, E->sigma_lo[k], E->sigma_hi[k], why);
    }
    memcpy(err, L.err, EDIFF_ERR);
    return L.failed ? -1 : 0;
}

int expert_for_sigma(const ExpertTable *E, double sigma)
{
    int k;
    for (k = 0; k < E->n; k++)
        if (E->sigma_lo[k] <= sigma && sigma < E->sigma_hi[k]) return k;
    return -1;
}

/* ================================================================ the denoiser ================= */

/* EDM Table 1: c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2),
 * c_noise = ln(s)/4. */
EdmScalings edm_scalings(double sigma, double sigma_data)
{
    EdmScalings e;
    double r2 = sigma * sigma + sigma_data * sigma_data;
    e.c_skip = sigma_data * sigma_data / r2;
    e.c_out = sigma * sigma_data / sqrt(r2);
    e.c_in = 1.0 / sqrt(r2);
    e.c_noise = log(sigma) / 4.0;
    return e;
}

/* D(x; sigma) = c_skip x + c_out F_k(c_in x [++ z_lr]; c_noise), the expert k chosen by this call's sigma. */
static void edm_denoise(void *ctx, const double *x, double sigma, double *denoised)
{
    EdmDenoiser *e = ctx;
    EdmScalings s = edm_scalings(sigma, e->sigma_data);
    size_t i, n = (size_t)e->C * e->H * e->W;
    for (i = 0; i < n; i++) e->input[i] = (float)(s.c_in * x[i]);
    if (e->z_lr) memcpy(e->input + n, e->z_lr, (size_t)e->C_lr * e->H * e->W * sizeof(float));
    e->net.forward(e->net.ctx, expert_for_sigma(e->experts, sigma), e->input, (float)s.c_noise, e->out);
    for (i = 0; i < n; i++) denoised[i] = s.c_skip * x[i] + s.c_out * e->out[i];
}

Denoiser edm_denoiser(EdmDenoiser *e, const ExpertTable *experts, Network net, double sigma_data,
                      int C, int H, int W, const float *z_lr, int C_lr)
{
    Denoiser d;
    size_t hw = (size_t)H * W;
    e->experts = experts;
    e->net = net;
    e->sigma_data = sigma_data;
    e->C = C; e->H = H; e->W = W;
    e->z_lr = z_lr;
    e->C_lr = z_lr ? C_lr : 0;
    e->input = xmalloc((size_t)(C + e->C_lr) * hw * sizeof(float));
    e->out = xmalloc((size_t)C * hw * sizeof(float));
    d.fn = edm_denoise;
    d.ctx = e;
    d.n = (size_t)C * hw;
    return d;
}

void edm_denoiser_free(EdmDenoiser *e)
{
    free(e->input);
    free(e->out);
    e->input = e->out = NULL;
}

/* ================================================================ guidance ===================== */

/* One call of both branches: branch 0 is D_cond into denoised, branch 1 D_uncond into d_uncond. */
typedef struct {
    const Guidance *g;
    const double   *x;
    double          sigma, *denoised;
} GuidedCall;

static void cfg_branch(void *ctx, int i)
{
    const GuidedCall *c = ctx;
    const Denoiser *d = i == 0 ? c->g->cond : c->g->uncond;
    d->fn(d->ctx, c->x, c->sigma, i == 0 ? c->denoised : c->g->d_uncond);
}

/* CFG (Ho & Salimans 2022): D_w = D_uncond + w (D_cond - D_uncond). Both branches see the same sigma,
 * hence the same expert; they are independent, so they run side by side (one thread each on 2). */
static void cfg_denoise(void *ctx, const double *x, double sigma, double *denoised)
{
    Guidance *g = ctx;
    GuidedCall call;
    size_t i, n = g->cond->n;
    if (g->scale == 1.0) {
        g->cond->fn(g->cond->ctx, x, sigma, denoised);
        return;
    }
    call.g = g; call.x = x; call.sigma = sigma; call.denoised = denoised;
    parallel_tasks(2, cfg_branch, &call);
    for (i = 0; i < n; i++) denoised[i] = g->d_uncond[i] + g->scale * (denoised[i] - g->d_uncond[i]);
}

Denoiser cfg_denoiser(Guidance *g, const Denoiser *cond, const Denoiser *uncond, double scale)
{
    Denoiser d;
    g->cond = cond;
    g->uncond = uncond;
    g->scale = scale;
    g->d_uncond = scale == 1.0 ? NULL : xmalloc(cond->n * sizeof(double));
    d.fn = cfg_denoise;
    d.ctx = g;
    d.n = cond->n;
    return d;
}

void cfg_free(Guidance *g)
{
    free(g->d_uncond);
    g->d_uncond = NULL;
}

Conditioning cfg_uncond(const Conditioning *cond, const Conditioning *negative, int keep_image)
{
    Conditioning u;
    u.t5_tokens = negative ? negative->t5_tokens : NULL;
    u.clip_tokens = negative ? negative->clip_tokens : NULL;
    u.clip_text_embed = negative ? negative->clip_text_embed : NULL;
    u.clip_image_embed = keep_image ? cond->clip_image_embed : NULL;
    return u;
}

/* ================================================================ schedules ==================== */

/* Karras et al. 2022, Eq. 5 (k-diffusion get_sigmas_karras): N sigmas from sigma_max to sigma_min, then 0. */
void karras_sigmas(double *sigmas, int n, double sigma_min, double sigma_max, double rho)
{
    double max_inv_rho = pow(sigma_max, 1.0 / rho), min_inv_rho = pow(sigma_min, 1.0 / rho);
    int i;
    for (i = 0; i < n; i++) {
        double ramp = n > 1 ? (double)i / (n - 1) : 0.0;
        sigmas[i] = pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho);
    }
    sigmas[n] = 0.0;
}

/* DDPM (Ho et al. 2020) in sigma form: abar_t = prod_{s<=t} (1 - beta_s), sigma_t = sqrt((1-abar_t)/abar_t),
 * at diffusers DDPMScheduler's "leading" timesteps; the step after t = 0 goes to abar = 1, sigma = 0. */
void ddpm_sigmas(double *sigmas, int n, int T, double beta_start, double beta_end)
{
    double *abar = xmalloc((size_t)T * sizeof(double)), prod = 1.0;
    int t, k, step = T / n;
    for (t = 0; t < T; t++) {
        prod *= 1.0 - (beta_start + (beta_end - beta_start) * t / (T - 1));
        abar[t] = prod;
    }
    for (k = 0; k < n; k++) {
        t = (n - 1 - k) * step;
        sigmas[k] = sqrt((1.0 - abar[t]) / abar[t]);
    }
    sigmas[n] = 0.0;
    free(abar);
}

void sampler_sigmas(const SamplerConfig *c, double *sigmas)
{
    if (c->kind == SAMPLER_DDPM) ddpm_sigmas(sigmas, c->steps, DDPM_T, DDPM_BETA_START, DDPM_BETA_END);
    else karras_sigmas(sigmas, c->steps, c->sigma_min, c->sigma_max, c->rho);
}

/* ================================================================ samplers ===================== */

/* d = (x - D(x; sigma)) / sigma: the probability-flow ODE's slope dx/dsigma (Karras et al. Eq. 3). */
static void to_d(double *d, const double *x, const double *denoised, double sigma, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) d[i] = (x[i] - denoised[i]) / sigma;
}

/* y = x + a * v */
static void axpy(double *y, const double *x, double a, const double *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) y[i] = x[i] + a * v[i];
}

/* Algorithm 2, lines 4-6 (stochastic churn): gamma = min(S_churn/N, sqrt2 - 1) for S_tmin <= sigma <=
 * S_tmax, sigma_hat = sigma (1 + gamma), x += S_noise sqrt(sigma_hat^2 - sigma^2) eps. eps is drawn even
 * when gamma = 0, as k-diffusion draws it, so both consume their noise streams alike. Returns sigma_hat. */
static double churn(const SamplerConfig *c, const NoiseSource *noise, double sigma, double *x, double *eps,
                    size_t n)
{
    double gamma = c->s_tmin <= sigma && sigma <= c->s_tmax ? fmin(c->s_churn / c->steps, sqrt(2.0) - 1.0) : 0.0;
    double sigma_hat = sigma * (gamma + 1.0);
    size_t i;
    noise->draw(noise->ctx, eps, n);
    if (gamma > 0) {
        double amount = sqrt(sigma_hat * sigma_hat - sigma * sigma);
        for (i = 0; i < n; i++) x[i] += eps[i] * c->s_noise * amount;
    }
    return sigma_hat;
}

/* The sample after step i to the hook (k-diffusion's callback, there given before the step's update). */
static void observe_step(const SampleHook *hook, int i, const double *x, size_t n)
{
    if (hook && hook->step) hook->step(hook->ctx, i, x, n);
}

/* EDM Algorithm 2 (Karras et al. 2022; k-diffusion sample_heun): churn, Euler predictor, and the Heun
 * corrector d' = (d_cur + d_next)/2 unless the step ends at sigma = 0. NFE = 2N - 1. */
void sample_heun(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise, const double *sigmas, double *x,
                 const SampleHook *hook)
{
    size_t n = D->n, j;
    double *eps = xmalloc(n * sizeof(double)), *denoised = xmalloc(n * sizeof(double));
    double *d_cur = xmalloc(n * sizeof(double)), *x_next = xmalloc(n * sizeof(double));
    int i;
    for (i = 0; i < c->steps; i++) {
        double sigma_hat = churn(c, noise, sigmas[i], x, eps, n), dt = sigmas[i + 1] - sigma_hat;
        D->fn(D->ctx, x, sigma_hat, denoised);
        to_d(d_cur, x, denoised, sigma_hat, n);
        if (sigmas[i + 1] == 0) {
            axpy(x, x, dt, d_cur, n);
        } else {
            axpy(x_next, x, dt, d_cur, n);
            D->fn(D->ctx, x_next, sigmas[i + 1], denoised);
            for (j = 0; j < n; j++) {
                double d_next = (x_next[j] - denoised[j]) / sigmas[i + 1];
                x[j] += (d_cur[j] + d_next) / 2 * dt;
            }
        }
        observe_step(hook, i, x, n);
    }
    free(eps); free(denoised); free(d_cur); free(x_next);
}

/* Algorithm 2 without the corrector (k-diffusion sample_euler): churn, then x += (sigma_{i+1} - sigma_hat) d. */
void sample_euler(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise, const double *sigmas, double *x,
                  const SampleHook *hook)
{
    size_t n = D->n;
    double *eps = xmalloc(n * sizeof(double)), *denoised = xmalloc(n * sizeof(double));
    double *d = xmalloc(n * sizeof(double));
    int i;
    for (i = 0; i < c->steps; i++) {
        double sigma_hat = churn(c, noise, sigmas[i], x, eps, n);
        D->fn(D->ctx, x, sigma_hat, denoised);
        to_d(d, x, denoised, sigma_hat, n);
        axpy(x, x, sigmas[i + 1] - sigma_hat, d, n);
        observe_step(hook, i, x, n);
    }
    free(eps); free(denoised); free(d);
}

/* k-diffusion get_ancestral_step: sigma_up = min(sigma_to, eta sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2)
 * / sigma_from^2)), sigma_down = sqrt(sigma_to^2 - sigma_up^2); eta = 0 gives (sigma_to, 0). */
static void ancestral_step(double sigma_from, double sigma_to, double eta, double *sigma_down, double *sigma_up)
{
    if (eta == 0) {
        *sigma_down = sigma_to;
        *sigma_up = 0.0;
        return;
    }
    *sigma_up = fmin(sigma_to, eta * sqrt(sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to) /
                                          (sigma_from * sigma_from)));
    *sigma_down = sqrt(sigma_to * sigma_to - *sigma_up * *sigma_up);
}

/* Euler ancestral (k-diffusion sample_euler_ancestral): an Euler step down to sigma_down, then noise
 * S_noise sigma_up eps back up to sigma_{i+1} (drawn whenever sigma_{i+1} > 0, even for eta = 0). */
void sample_euler_ancestral(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise,
                            const double *sigmas, double *x, const SampleHook *hook)
{
    size_t n = D->n, j;
    double *eps = xmalloc(n * sizeof(double)), *denoised = xmalloc(n * sizeof(double));
    double *d = xmalloc(n * sizeof(double));
    int i;
    for (i = 0; i < c->steps; i++) {
        double sigma_down, sigma_up;
        D->fn(D->ctx, x, sigmas[i], denoised);
        ancestral_step(sigmas[i], sigmas[i + 1], c->eta, &sigma_down, &sigma_up);
        to_d(d, x, denoised, sigmas[i], n);
        axpy(x, x, sigma_down - sigmas[i], d, n);
        if (sigmas[i + 1] > 0) {
            noise->draw(noise->ctx, eps, n);
            for (j = 0; j < n; j++) x[j] += eps[j] * c->s_noise * sigma_up;
        }
        observe_step(hook, i, x, n);
    }
    free(eps); free(denoised); free(d);
}

/* DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2; k-diffusion sample_dpmpp_2m), with lambda = -ln sigma,
 * h = lambda_{i+1} - lambda_i, r = h_{i-1}/h: D_hat = (1 + 1/2r) D_i - (1/2r) D_{i-1} (D_i on the first
 * step), x = (sigma_{i+1}/sigma_i) x - expm1(-h) D_hat; a step to sigma = 0 (h = inf) lands on D_i. */
void sample_dpmpp_2m(const SamplerConfig *c, const Denoiser *D, const double *sigmas, double *x,
                     const SampleHook *hook)
{
    size_t n = D->n, j;
    double *denoised = xmalloc(n * sizeof(double)), *old_denoised = xmalloc(n * sizeof(double)), *swap;
    int i;
    for (i = 0; i < c->steps; i++) {
        D->fn(D->ctx, x, sigmas[i], denoised);
        if (sigmas[i + 1] == 0) {
            memcpy(x, denoised, n * sizeof(double));
        } else {
            double h = log(sigmas[i]) - log(sigmas[i + 1]), ratio = sigmas[i + 1] / sigmas[i];
            double a = -expm1(-h), w_cur = 1.0, w_old = 0.0;
            if (i > 0) {
                double r = (log(sigmas[i - 1]) - log(sigmas[i])) / h;
                w_cur = 1.0 + 1.0 / (2.0 * r);
                w_old = 1.0 / (2.0 * r);
            }
            for (j = 0; j < n; j++) x[j] = ratio * x[j] + a * (w_cur * denoised[j] - w_old * old_denoised[j]);
        }
        observe_step(hook, i, x, n);
        swap = old_denoised; old_denoised = denoised; denoised = swap;
    }
    free(denoised); free(old_denoised);
}

void sample(const SamplerConfig *c, const Denoiser *D, const NoiseSource *noise, const double *sigmas, double *x,
            const SampleHook *hook)
{
    SamplerConfig ddpm;
    switch (c->kind) {
    case SAMPLER_HEUN: sample_heun(c, D, noise, sigmas, x, hook); break;
    case SAMPLER_EULER: sample_euler(c, D, noise, sigmas, x, hook); break;
    case SAMPLER_EULER_A: sample_euler_ancestral(c, D, noise, sigmas, x, hook); break;
    case SAMPLER_DDPM:     /* one fixed-small DDPM step = one Euler-ancestral step with eta = 1 (docs/sampling.md) */
        ddpm = *c;
        ddpm.eta = 1.0;
        ddpm.s_noise = 1.0;
        sample_euler_ancestral(&ddpm, D, noise, sigmas, x, hook);
        break;
    case SAMPLER_DPMPP_2M: sample_dpmpp_2m(c, D, sigmas, x, hook); break;
    }
}

static const char *const sampler_names[SAMPLER_COUNT] = {"heun", "euler", "euler_a", "ddpm", "dpmpp2m"};

int sampler_from_name(const char *name)
{
    int k;
    for (k = 0; k < SAMPLER_COUNT; k++)
        if (strcmp(name, sampler_names[k]) == 0) return k;
    return -1;
}

const char *sampler_name(int kind) { return kind >= 0 && kind < SAMPLER_COUNT ? sampler_names[kind] : "?"; }

/* NVlabs/edm generate.py defaults: 18 Heun steps from 80 to 0.002 with rho 7, no churn. */
void sampler_defaults(SamplerConfig *c)
{
    c->kind = SAMPLER_HEUN;
    c->steps = 18;
    c->sigma_min = 0.002;
    c->sigma_max = 80.0;
    c->rho = 7.0;
    c->s_churn = 0.0;
    c->s_tmin = 0.0;
    c->s_tmax = HUGE_VAL;
    c->s_noise = 1.0;
    c->eta = 1.0;
}

int sampler_check(const SamplerConfig *c, char err[EDIFF_ERR])
{
    const char *why = NULL;
    if (c->kind < 0 || c->kind >= SAMPLER_COUNT) why = "unknown sampler";
    else if (c->steps < 1 || c->steps > 10000) why = "steps must be in 1..10000";
    else if (c->kind == SAMPLER_DDPM && c->steps > DDPM_T) why = "ddpm takes at most 1000 steps";
    else if (!(c->sigma_min > 0 && c->sigma_max > c->sigma_min && c->sigma_max < HUGE_VAL))
        why = "need 0 < sigma_min < sigma_max < inf";
    else if (!(c->rho > 0 && c->rho < HUGE_VAL)) why = "rho must be positive and finite";
    else if (!(c->s_churn >= 0 && c->s_churn < HUGE_VAL && c->s_noise >= 0 && c->s_noise < HUGE_VAL))
        why = "s_churn and s_noise must be finite and >= 0";
    else if (!(c->s_tmin >= 0 && c->s_tmax >= c->s_tmin)) why = "need 0 <= s_tmin <= s_tmax";
    else if (!(c->eta >= 0 && c->eta < HUGE_VAL)) why = "eta must be finite and >= 0";
    if (why) snprintf(err, EDIFF_ERR, "sampler %s: %s", sampler_name(c->kind), why);
    return why ? -1 : 0;
}

/* ================================================================ stages ======================= */

int stage_config_load(StageConfig *S, const Blob *b, const char *stage, char err[EDIFF_ERR])
{
    Loader L;
    const char *name, *upsample;
    char why[EDIFF_ERR];
    memset(S, 0, sizeof *S);
    loader_init(&L, b, "");
    if (strlen(stage) >= sizeof S->name) {
        loader_fail(&L, "stage name '%.40s...' too long", stage);
        memcpy(err, L.err, EDIFF_ERR);
        return -1;
    }
    strcpy(S->name, stage);
    if (experts_load(&S->experts, b, stage, err)) return -1;
    sampler_defaults(&S->sampler);
    S->resolution = (int)ld_int(&L, "%s.resolution", stage);
    S->sigma_data = ld_float(&L, "%s.sigma_data", stage);
    name = ld_str_or(&L, sampler_name(S->sampler.kind), "%s.sampler", stage);
    S->sampler.kind = sampler_from_name(name);
    S->sampler.steps = (int)ld_int_or(&L, S->sampler.steps, "%s.steps", stage);
    S->sampler.sigma_min = ld_float_or(&L, S->sampler.sigma_min, "%s.sigma_min", stage);
    S->sampler.sigma_max = ld_float_or(&L, S->sampler.sigma_max, "%s.sigma_max", stage);
    S->sampler.rho = ld_float_or(&L, S->sampler.rho, "%s.rho", stage);
    S->cfg_scale = ld_float_or(&L, 1.0, "%s.cfg_scale", stage);
    upsample = ld_str_or(&L, NULL, "%s.lowres_upsample", stage);
    S->sr = upsample != NULL;
    if (S->sr) {
        if (strcmp(upsample, "bilinear") != 0)
            loader_fail(&L, "stage '%s': lowres_upsample '%s' is not supported (bilinear is)", stage, upsample);
        S->aug_sigma = ld_float(&L, "%s.aug_sigma", stage);
        S->aug_dim = (int)ld_int(&L, "%s.aug_dim", stage);
    }
    if (!L.failed && S->sampler.kind < 0) loader_fail(&L, "stage '%s': unknown sampler '%s'", stage, name);
    if (!L.failed && (S->resolution < 1 || S->resolution > 16384))
        loader_fail(&L, "stage '%s': resolution %d out of range", stage, S->resolution);
    if (!L.failed && !(S->sigma_data > 0 && S->sigma_data < HUGE_VAL))
        loader_fail(&L, "stage '%s': sigma_data must be positive and finite", stage);
    if (!L.failed && !(S->cfg_scale > -HUGE_VAL && S->cfg_scale < HUGE_VAL))
        loader_fail(&L, "stage '%s': cfg_scale must be finite", stage);
    if (!L.failed && S->sr && !(S->aug_sigma > 0 && S->aug_sigma < HUGE_VAL && S->aug_dim >= 2 && S->aug_dim <= 4096))
        loader_fail(&L, "stage '%s': need aug_sigma > 0 and aug_dim in 2..4096", stage);
    if (!L.failed && sampler_check(&S->sampler, why)) loader_fail(&L, "stage '%s': %s", stage, why);
    memcpy(err, L.err, EDIFF_ERR);
    return L.failed ? -1 : 0;
}

/* The next item of the comma-separated list *s into buf, advancing *s; its length (>= bufn: too long),
 * or -1 at the end of the list. */
static long next_item(const char **s, char *buf, size_t bufn)
{
    size_t len = strcspn(*s, ",");
    if (!**s) return -1;
    snprintf(buf, bufn, "%.*s", (int)(len < bufn ? len : bufn - 1), *s);
    *s += len + ((*s)[len] == ',');
    return (long)len;
}

int cascade_load(StageConfig *stages, int max, const Blob *b, const char *use, char err[EDIFF_ERR])
{
    Loader L;
    const char *list, *alternatives, *s, *a;
    char name[64], alt[160];
    long len;
    int n = 0, used = 0;
    loader_init(&L, b, "");
    list = ld_str(&L, "stages");
    alternatives = ld_str_or(&L, "", "stage_alternatives");
    for (s = list; !L.failed && (len = next_item(&s, name, sizeof name)) >= 0;) {
        for (a = alternatives; use && next_item(&a, alt, sizeof alt) >= 0;) {     /* "use:name" replaces name */
            char *colon = strchr(alt, ':');
            if (colon && strcmp(colon + 1, name) == 0 && (size_t)(colon - alt) == strlen(use) &&
                strncmp(alt, use, strlen(use)) == 0 && strlen(use) < sizeof name) {
                strcpy(name, use);
                used = 1;
            }
        }
        if (len == 0 || len >= (long)sizeof name) loader_fail(&L, "stages '%s': bad stage name", list);
        else if (n == max) loader_fail(&L, "stages '%s': more than %d stages", list, max);
        else if (stage_config_load(&stages[n], b, name, err)) return -1;
        else if (n == 0 && stages[n].sr)
            loader_fail(&L, "stage '%s' is a super-resolution stage but comes first", name);
        else if (n > 0 && !stages[n].sr)
            loader_fail(&L, "stage '%s' follows another stage but is not a super-resolution stage", name);
        else n++;
    }
    if (!L.failed && n == 0) loader_fail(&L, "stages '%s': no stage", list);
    if (!L.failed && use && !used)
        loader_fail(&L, "'%s' replaces no stage (stage_alternatives '%s')", use, alternatives);
    memcpy(err, L.err, EDIFF_ERR);
    return L.failed ? -1 : n;
}

/* A NoiseSource that shows every draw to a SampleHook (draw 1, 2, ...: draw 0 is the initial noise). */
typedef struct {
    NoiseSource       inner;
    const SampleHook *hook;
    int               draws;
} ObservedNoise;

static void observed_draw(void *ctx, double *out, size_t n)
{
    ObservedNoise *o = ctx;
    o->inner.draw(o->inner.ctx, out, n);
    o->hook->noise(o->hook->ctx, ++o->draws, out, n);
}

void stage_sample(const SamplerConfig *c, const Denoiser *D, uint64_t seed, int image, int stage,
                  const float *init, const SampleHook *hook, float *out)
{
    size_t n = D->n, i;
    double *x = xmalloc(n * sizeof(double)), *sigmas = xmalloc(((size_t)c->steps + 1) * sizeof(double));
    Rng init_rng = rng_init(seed, rng_stream(image, stage, RNG_INIT));
    Rng step_rng = rng_init(seed, rng_stream(image, stage, RNG_SAMPLER));
    NoiseSource noise = noise_from_rng(&step_rng);
    ObservedNoise observed;
    sampler_sigmas(c, sigmas);
    if (init) for (i = 0; i < n; i++) x[i] = init[i];
    else rng_normal(&init_rng, x, n);
    if (hook && hook->noise) {
        hook->noise(hook->ctx, 0, x, n);
        observed.inner = noise;
        observed.hook = hook;
        observed.draws = 0;
        noise.draw = observed_draw;
        noise.ctx = &observed;
    }
    for (i = 0; i < n; i++) x[i] *= sigmas[0];                    /* x_0 = sigma_0 n */
    sample(c, D, &noise, sigmas, x, hook);
    for (i = 0; i < n; i++) out[i] = (float)fmin(fmax(x[i], -1.0), 1.0);
    free(x);
    free(sigmas);
}

/* ================================================================ super-resolution ============= */

void lowres_condition(float *z_lr, const float *y_lr, int C, int h, int w, int H, int W, double sigma_aug,
                      const NoiseSource *noise)
{
    size_t i, n = (size_t)C * H * W;
    double *eps = xmalloc(n * sizeof(double));
    resize_bilinear(z_lr, y_lr, C, h, w, H, W, 0);
    noise->draw(noise->ctx, eps, n);
    for (i = 0; i < n; i++) z_lr[i] = (float)(z_lr[i] + sigma_aug * eps[i]);
    free(eps);
}

void aug_features(float *out, double sigma_aug, int dim)
{
    timestep_embedding(out, (float)(log(sigma_aug) / 4.0), dim, 1, 0.0f);
}

/* ================================================================ input and output ============= */

int noise_load(const char *path, int C, int H, int W, float **noise, char err[EDIFF_ERR])
{
    int rank, lead, d;
    int64_t shape[MAX_RANK];
    char got[96] = "";
    if (npy_read(path, noise, &rank, shape, (int64_t)64 * C * H * W, err)) return -1;
    lead = rank == 4 ? 1 : 0;
    if ((rank == 3 || (rank == 4 && shape[0] == 1)) && shape[lead] == C && shape[lead + 1] == H &&
        shape[lead + 2] == W) {
        long i, n = (long)C * H * W;
        for (i = 0; i < n && isfinite((*noise)[i]); i++) {}
        if (i == n) return 0;
        snprintf(err, EDIFF_ERR, "%s: noise element %ld is not finite (%g)", path, i, (double)(*noise)[i]);
        free(*noise);
        *noise = NULL;
        return -1;
    }
    for (d = 0; d < rank; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)shape[d]);
    snprintf(err, EDIFF_ERR, "%s: noise has shape [%s], need [%d,%d,%d] or [1,%d,%d,%d]", path, got, C, H, W, C, H, W);
    free(*noise);
    *noise = NULL;
    return -1;
}

void image_to_rgb8(uint8_t *rgb, const float *x, int H, int W)
{
    long p, hw = (long)H * W;
    int c;
    for (p = 0; p < hw; p++)
        for (c = 0; c < 3; c++) {
            float v = x[c * hw + p];
            v = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
            rgb[p * 3 + c] = (uint8_t)nearbyintf((v + 1.0f) * 127.5f);   /* default rounding: half to even */
        }
}
