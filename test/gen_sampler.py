"""Reference data for the diffusion core (test/t_sampler.c). Writes test/ref/sampler.bin.

    .venv/bin/python test/gen_sampler.py

Every sampler runs in the real library, in float64, over the exact denoiser of Gaussian data
D(x; s) = mu + (x - mu) sd^2 / (sd^2 + s^2):
  - k-diffusion 0.1.1 (k_diffusion.sampling): get_sigmas_karras, sample_heun (churn on and off),
    sample_euler, sample_euler_ancestral, sample_dpmpp_2m. Every normal k-diffusion draws goes through
    torch.randn_like, which is wrapped here to record the draws in order (stored as `noise`).
  - diffusers 0.42.1 DDPMScheduler (linear betas, fixed_small, epsilon, "leading" spacing, no clipping),
    its alphas_cumprod recomputed in float64, driven by the same denoiser written as an eps-model; the
    normals it draws (scheduling_ddpm.randn_tensor, wrapped) are recorded the same way.
  - diffusers EDMEulerScheduler's precondition_inputs/_noise/_outputs for the EDM preconditioning of a
    toy 3-expert ensemble (analytic networks), alone and under k-diffusion's sample_heun with churn.
  - diffusers get_timestep_embedding for aug_features; torch interpolate for the SR conditioning;
    torch round for the uint8 conversion.
The random generator is checked against Random123's known-answer vectors (Philox4x32-10), and the
normals against the spec of docs/sampling.md implemented below in numpy.

Each case stores its inputs, parameters and `want`; metadata `cases.KIND` lists the cases, so the C
suite walks exactly what is written here. Metadata also holds a toy pipeline: stages with their expert
tables (good and broken ones), as docs/blob.md names the keys.
"""
import math
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402
from ediffi import load_k_diffusion_sampling  # noqa: E402
import diffusers  # noqa: E402
from diffusers import DDPMScheduler, EDMEulerScheduler  # noqa: E402
from diffusers.models.embeddings import get_timestep_embedding  # noqa: E402
from diffusers.schedulers import scheduling_ddpm  # noqa: E402

K = load_k_diffusion_sampling()

torch.set_default_dtype(torch.float64)      # k-diffusion's linspace and randn_like then work in float64
gen = torch.Generator().manual_seed(20221101)
rng = np.random.default_rng(7)
tensors, meta, cases = {}, {}, {}


def add(kind, name, **arrays):
    cases.setdefault(kind, []).append(name)
    for key, value in arrays.items():
        tensors[f"{kind}.{name}.{key}"] = value


class Recorder:
    """Replaces a normal-drawing function; every draw comes from `gen` and is kept in order."""

    def __init__(self):
        self.draws = []

    def randn_like(self, x, *args, **kwargs):
        e = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        self.draws.append(e.reshape(-1).clone())
        return e

    def randn_tensor(self, shape, generator=None, device=None, dtype=None, **kwargs):
        e = torch.randn(shape, generator=gen, dtype=torch.float64)
        self.draws.append(e.reshape(-1).clone())
        return e

    def stacked(self, n):
        return torch.stack(self.draws).numpy() if self.draws else np.zeros((0, n))


def gaussian_denoiser(mu, sd):
    """The exact denoiser of N(mu, sd^2 I) data (EDM Eq. 57 for a single Gaussian)."""
    def model(x, sigma):
        s = sigma.reshape(-1, *[1] * (x.ndim - 1))
        return mu + (x - mu) * sd ** 2 / (sd ** 2 + s ** 2)
    return model


# ----------------------------------------------------------------------------- Karras schedule
for n, smin, smax, rho in [(18, 0.002, 80.0, 7.0), (10, 0.002, 80.0, 7.0), (30, 0.02, 160.0, 7.0),
                           (25, 0.0005, 14.6, 3.0), (1, 0.002, 80.0, 7.0), (2, 0.1, 10.0, 1.0)]:
    add("karras", f"n{n}.{smin}-{smax}.rho{rho}", params=np.array([n, smin, smax, rho]),
        want=K.get_sigmas_karras(n, smin, smax, rho).numpy())
# The unit-test values of /work/shared/docs/ediffi.md §3.1 (N = 18, 5 significant digits).
tensors["karras_doc.want"] = np.array([80, 57.586, 40.786, 28.375, 19.352, 12.910, 8.4009, 5.3152, 3.2568, 1.9233,
                                       1.0882, 0.58535, 0.29644, 0.13952, 0.059947, 0.022935, 0.0075280, 0.0020000, 0])

# ----------------------------------------------------------------------------- samplers vs k-diffusion
KINDS = {"heun": K.sample_heun, "euler": K.sample_euler, "euler_a": K.sample_euler_ancestral,
         "dpmpp2m": K.sample_dpmpp_2m}
for name, kind, n, size, kw in [
        ("heun.n10.x7", "heun", 10, 7, {}),
        ("heun.n18.x192", "heun", 18, 192, {}),
        ("heun.churn.n30.x192", "heun", 30, 192, dict(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)),
        ("heun.churn_all.n12.x48", "heun", 12, 48, dict(s_churn=80.0)),
        ("euler.n18.x192", "euler", 18, 192, {}),
        ("euler.churn.n20.x48", "euler", 20, 48, dict(s_churn=30.0, s_tmin=0.1, s_tmax=20.0, s_noise=1.007)),
        ("euler_a.n20.x192", "euler_a", 20, 192, {}),
        ("euler_a.eta0.6.snoise1.003.n25.x48", "euler_a", 25, 48, dict(eta=0.6, s_noise=1.003)),
        ("euler_a.eta0.n10.x7", "euler_a", 10, 7, dict(eta=0.0)),
        ("dpmpp2m.n10.x7", "dpmpp2m", 10, 7, {}),
        ("dpmpp2m.n30.x192", "dpmpp2m", 30, 192, {}),
        ("dpmpp2m.n1.x7", "dpmpp2m", 1, 7, {})]:
    sd = 0.5
    mu = torch.randn(1, size, generator=gen) * 0.3
    sigmas = K.get_sigmas_karras(n, 0.002, 80.0, 7.0)
    x0 = torch.randn(1, size, generator=gen) * sigmas[0]
    rec = Recorder()
    real = torch.randn_like
    torch.randn_like = rec.randn_like
    try:
        out = KINDS[kind](gaussian_denoiser(mu, sd), x0.clone(), sigmas, disable=True, **kw)
    finally:
        torch.randn_like = real
    p = dict(s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0, eta=1.0)
    p.update(kw)
    meta[f"sample.{name}.sampler"] = kind
    add("sample", name, params=np.array([n, p["s_churn"], p["s_tmin"], p["s_tmax"], p["s_noise"], p["eta"], sd]),
        sigmas=sigmas.numpy(), mu=mu[0].numpy(), x0=x0[0].numpy(), noise=rec.stacked(size), want=out[0].numpy())

# ----------------------------------------------------------------------------- DDPM ancestral vs diffusers
for n, size in [(10, 48), (25, 192)]:
    sd = 0.5
    mu = torch.randn(1, size, generator=gen) * 0.3
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          variance_type="fixed_small", clip_sample=False, prediction_type="epsilon",
                          timestep_spacing="leading")
    sched.betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)   # the same schedule in float64
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, 0)
    sched.one = torch.tensor(1.0, dtype=torch.float64)
    sched.set_timesteps(n)
    abar = sched.alphas_cumprod
    D = gaussian_denoiser(mu, sd)

    def eps_model(x_vp, t):
        """The Gaussian denoiser as an eps-prediction on VP inputs: x_ve = x_vp/sqrt(abar), eps = (x_ve - D)/sigma."""
        a = abar[t]
        sigma = torch.sqrt((1 - a) / a)
        x_ve = x_vp / torch.sqrt(a)
        return (x_ve - D(x_ve, sigma.reshape(1))) / sigma

    x_vp = torch.randn(1, size, generator=gen)
    x0_ve = x_vp / torch.sqrt(abar[sched.timesteps[0]])
    rec = Recorder()
    real = scheduling_ddpm.randn_tensor
    scheduling_ddpm.randn_tensor = rec.randn_tensor
    try:
        for t in sched.timesteps:
            x_vp = sched.step(eps_model(x_vp, t), t, x_vp).prev_sample
    finally:
        scheduling_ddpm.randn_tensor = real
    sigmas = np.concatenate([torch.sqrt((1 - abar[sched.timesteps]) / abar[sched.timesteps]).numpy(), [0.0]])
    meta[f"sample.ddpm.n{n}.x{size}.sampler"] = "ddpm"
    add("sample", f"ddpm.n{n}.x{size}", params=np.array([n, 0.0, 0.0, math.inf, 1.0, 1.0, sd]), sigmas=sigmas,
        mu=mu[0].numpy(), x0=x0_ve[0].numpy(), noise=rec.stacked(size), want=x_vp[0].numpy())  # final abar = 1: VP = VE
for n in (10, 25, 1000):
    sched = DDPMScheduler(timestep_spacing="leading")
    sched.set_timesteps(n)
    abar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[sched.timesteps]
    add("ddpm_grid", f"n{n}", params=np.array([float(n)]), want=np.concatenate([torch.sqrt((1 - abar) / abar).numpy(), [0.0]]))

# ----------------------------------------------------------------------------- experts: toy 3-expert stage
from scipy.stats import norm  # noqa: E402
P_MEAN, P_STD = -1.2, 1.2
b1, b2 = (math.exp(P_MEAN + P_STD * norm.ppf(q)) for q in (1 / 3, 2 / 3))    # equal-mass cuts (eDiff-I §4.1)
bounds = [(0.0, b1), (b1, b2), (b2, math.inf)]


def put_stage(stage, bnds, experts=None, **keys):
    meta[f"{stage}.experts"] = len(bnds) if experts is None else experts
    for k, (lo, hi) in enumerate(bnds):
        if lo is not None:
            meta[f"{stage}.{k}.sigma_lo"] = "inf" if lo == math.inf else repr(float(lo)) if not isinstance(lo, str) else lo
        if hi is not None:
            meta[f"{stage}.{k}.sigma_hi"] = "inf" if hi == math.inf else repr(float(hi)) if not isinstance(hi, str) else hi
    for key, value in keys.items():
        meta[f"{stage}.{key}"] = value


put_stage("toy", bounds, resolution=32, sigma_data=0.5, sampler="dpmpp2m", steps=25, sigma_min=0.002,
          sigma_max=80, rho=7, cfg_scale=4.5)
put_stage("toysr", [(0.0, b1 * 2), (b1 * 2, math.inf)], resolution=64, sigma_data=0.5, lowres_upsample="bilinear",
          aug_sigma=0.25, aug_dim=32)
put_stage("single", [(0.0, math.inf)], resolution=16, sigma_data=0.5)
put_stage("srfirst", [(0.0, math.inf)], resolution=64, sigma_data=0.5, lowres_upsample="bilinear", aug_sigma=0.25,
          aug_dim=32)
put_stage("basesecond", [(0.0, math.inf)], resolution=64, sigma_data=0.5)
meta["stages"] = "toy,toysr"                       # the cascade, and its alternatives (docs/blob.md)
meta["stage_alternatives"] = "single:toy,srfirst:toy,basesecond:toysr"
bad = {"gap": ([(0.0, b1), (b1 * 1.0000001, b2), (b2, math.inf)], None, {}, "does not start where"),
       "order": ([(0.0, b2), (b2, b1), (b1, math.inf)], None, {}, "is empty"),
       "lo": ([(0.001, b1), (b1, b2), (b2, math.inf)], None, {}, "must start at sigma_lo=0"),
       "hi": ([(0.0, b1), (b1, b2), (b2, 1e3)], None, {}, "must end at sigma_hi=inf"),
       "count0": ([], 0, {}, "0 experts"),
       "count_big": ([(0.0, math.inf)], 65, {}, "65 experts"),
       "missing": ([(0.0, b1), (b1, None), (b2, math.inf)], None, {}, "missing metadata key 'bad_missing.1.sigma_hi'"),
       "number": ([(0.0, "abc"), (b1, math.inf)], None, {}, "is not a number"),
       "sampler": ([(0.0, math.inf)], None, dict(resolution=8, sigma_data=0.5, sampler="lms"), "unknown sampler 'lms'"),
       "upsample": ([(0.0, math.inf)], None, dict(resolution=8, sigma_data=0.5, lowres_upsample="bicubic",
                                                   aug_sigma=0.2, aug_dim=8), "bicubic' is not supported"),
       "schedule": ([(0.0, math.inf)], None, dict(resolution=8, sigma_data=0.5, sigma_min=5, sigma_max=1),
                    "0 < sigma_min < sigma_max")}
for name, (bnds, experts, keys, expect) in bad.items():
    put_stage(f"bad_{name}", bnds, experts, **keys)
    meta[f"stage_bad.{name}.expect"] = expect
meta["cases.stage_bad"] = ",".join(bad)

probe, want = [0.0, 1e-30, 0.002, 80.0, 1e30], []
for b in (b1, b2):
    probe += [b, np.nextafter(b, 0), np.nextafter(b, math.inf), b * (1 - 1e-6), b * (1 + 1e-6)]
for s in probe:
    want.append(next(k for k, (lo, hi) in enumerate(bounds) if lo <= s < hi))
tensors["experts.toy.probe"] = np.array(probe)
tensors["experts.toy.want"] = np.array(want, np.int32)

# ----------------------------------------------------------------------------- EDM precond over the toy experts
# Expert k's "network": F_k(input)[c, p] = tanh(sum_c' W_k[c, c'] input[c', p] + c_noise b_k[c]) on [3 + 3, 4, 4]
# (c_in x ++ z_lr); D = diffusers EDMEulerScheduler's precondition_outputs(x, F(precondition_inputs(x) ++ z_lr,
# precondition_noise(sigma)), sigma), the expert picked by the sigma of the call.
edm = EDMEulerScheduler(sigma_data=0.5)
C, C_LR, H, W = 3, 3, 4, 4
Wk = (rng.standard_normal((3, C, C + C_LR)) * 0.5).astype(np.float32)
bk = rng.standard_normal((3, C)).astype(np.float32)
z_lr = rng.standard_normal((C_LR, H, W)).astype(np.float32)
calls = []


def expert_for(s):
    return next(k for k, (lo, hi) in enumerate(bounds) if lo <= s < hi)


def toy_denoiser(x, sigma):
    """route -> EDM precond -> F_k, for x [1, C*H*W] (float64) and one sigma."""
    s = float(sigma.reshape(-1)[0])
    k = expert_for(s)
    calls.append((k, s))
    sig = torch.tensor(s)
    inp = torch.cat([edm.precondition_inputs(x.reshape(C, H, W), sig), torch.from_numpy(z_lr).double()])
    c_noise = edm.precondition_noise(sig)
    F = torch.tanh(torch.einsum("ij,jhw->ihw", torch.from_numpy(Wk[k]).double(), inp)
                   + c_noise * torch.from_numpy(bk[k]).double()[:, None, None])
    return edm.precondition_outputs(x, F.reshape(1, -1), sig)


x = torch.randn(1, C * H * W, generator=gen) * 2
sig_probe = [80.0, 3.0, b2, np.nextafter(b2, 0), b1, np.nextafter(b1, 0), 0.1, 0.002]
tensors["edm.W"], tensors["edm.b"], tensors["edm.z_lr"] = Wk, bk, z_lr
tensors["edm.x"] = x[0].numpy()
tensors["edm.sigma"] = np.array(sig_probe)
tensors["edm.want"] = np.stack([toy_denoiser(x, torch.tensor([s]))[0].numpy() for s in sig_probe])
# 13 steps with churn 20 (gamma = sqrt2 - 1 on S_tmin..S_tmax): at steps 8 and 9 sigma_hat lies in another
# expert than sigma_i, so routing by sigma_i instead of the sigma passed would change the result.
sigmas = K.get_sigmas_karras(13, 0.002, 80.0, 7.0)
assert [i for i in range(13) if expert_for(float(sigmas[i])) != expert_for(float(sigmas[i]) * 2 ** 0.5)] [-2:] == [8, 9]
x0 = torch.randn(1, C * H * W, generator=gen) * sigmas[0]
rec, calls = Recorder(), []
real = torch.randn_like
torch.randn_like = rec.randn_like
try:
    out = K.sample_heun(toy_denoiser, x0.clone(), sigmas, disable=True, s_churn=20.0, s_tmin=0.05, s_tmax=50.0)
finally:
    torch.randn_like = real
tensors["edm_heun.params"] = np.array([13, 20.0, 0.05, 50.0, 1.0, 1.0, 0.5])
tensors["edm_heun.sigmas"], tensors["edm_heun.x0"] = sigmas.numpy(), x0[0].numpy()
tensors["edm_heun.noise"], tensors["edm_heun.want"] = rec.stacked(C * H * W), out[0].numpy()
tensors["edm_heun.calls"] = np.array([k for k, _ in calls], np.int32)       # expert of each denoiser call
tensors["edm_heun.call_sigma"] = np.array([s for _, s in calls])

# ----------------------------------------------------------------------------- CFG with analytic branches
size, sd = 48, 0.5
mu_c, mu_u, mu_n = (torch.randn(1, size, generator=gen) * 0.4 for _ in range(3))
x = torch.randn(1, size, generator=gen) * 3
tensors.update({"cfg.mu_cond": mu_c[0].numpy(), "cfg.mu_uncond": mu_u[0].numpy(), "cfg.mu_neg": mu_n[0].numpy(),
                "cfg.x": x[0].numpy()})
for w in (1.0, 0.0, 3.5, 7.5):
    for s in (0.3, 12.0):
        Dc = gaussian_denoiser(mu_c, sd)(x, torch.tensor([s]))
        Du = gaussian_denoiser(mu_u, sd)(x, torch.tensor([s]))
        add("cfg", f"w{w}.s{s}", params=np.array([w, s, sd]), want=(Du + w * (Dc - Du))[0].numpy())
sigmas = K.get_sigmas_karras(15, 0.002, 80.0, 7.0)
x0 = torch.randn(1, size, generator=gen) * sigmas[0]
w = 5.0
guided = lambda x, s: gaussian_denoiser(mu_n, sd)(x, s) + w * (gaussian_denoiser(mu_c, sd)(x, s)   # noqa: E731
                                                               - gaussian_denoiser(mu_n, sd)(x, s))
tensors["cfg_run.params"] = np.array([15, w, sd])
tensors["cfg_run.sigmas"], tensors["cfg_run.x0"] = sigmas.numpy(), x0[0].numpy()
tensors["cfg_run.want"] = K.sample_dpmpp_2m(guided, x0.clone(), sigmas, disable=True)[0].numpy()

# ----------------------------------------------------------------------------- RNG
M0, M1, W0, W1, MASK = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF


def philox4x32_10(ctr, key):
    """Philox4x32-10 on numpy uint64 arrays of 32-bit words: ctr [4, m], key [2, m]."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) for c in ctr)
    k0, k1 = (np.asarray(k, np.uint64) for k in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + np.uint64(W0)) & np.uint64(MASK), (k1 + np.uint64(W1)) & np.uint64(MASK)
        p0, p1 = np.uint64(M0) * c0, np.uint64(M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & np.uint64(MASK), (p0 >> np.uint64(32)) ^ c3 ^ k1,
                          p0 & np.uint64(MASK))
    return [c0, c1, c2, c3]


def normals(seed, stream, offset, count):
    """docs/sampling.md "RNG": normal i = half i%2 of Box-Muller on Philox block i//2, counter (block, stream)."""
    idx = np.arange(offset, offset + count, dtype=np.uint64)
    block = idx >> np.uint64(1)
    lo32 = lambda v: np.asarray(v, np.uint64) & np.uint64(MASK)      # noqa: E731
    hi32 = lambda v: np.asarray(v, np.uint64) >> np.uint64(32)       # noqa: E731
    ones = np.ones_like(block)
    w = philox4x32_10([lo32(block), hi32(block), lo32(stream) * ones, hi32(stream) * ones],
                      [lo32(seed) * ones, hi32(seed) * ones])
    u1 = (((w[1] << np.uint64(32)) | w[0]) >> np.uint64(11)).astype(np.float64) + 1.0
    u1 = u1 * 2.0 ** -53                  # (k + 1) 2^-53 <= 2^53 2^-53: exact, so adding before scaling is fine
    u2 = (((w[3] << np.uint64(32)) | w[2]) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    r = np.sqrt(-2.0 * np.log(u1))
    return np.where(idx % np.uint64(2) == 0, r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2))


# Random123 kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2 words), result (4 words).
kat = [([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
       ([MASK] * 4, [MASK] * 2, [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
       ([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1])]
for ctr, key, res in kat:
    got = [int(v[0]) for v in philox4x32_10([[c] for c in ctr], [[k] for k in key])]
    assert got == res, (got, res)
as_i32 = lambda words: np.array(words, np.uint64).astype(np.uint32).view(np.int32)   # noqa: E731
tensors["rng.kat.ctr"] = as_i32([c for c, _, _ in kat])
tensors["rng.kat.key"] = as_i32([k for _, k, _ in kat])
tensors["rng.kat.want"] = as_i32([r for _, _, r in kat])
for name, seed, stream, offset, count in [("seed0", 0, 0, 0, 64), ("seed42.stream0x101.odd", 42, 0x101, 1, 33),
                                          ("far", 2 ** 64 - 1, 2 ** 40 + 5, 2 ** 33 + 3, 16)]:
    words = [seed & MASK, seed >> 32, stream & MASK, stream >> 32, offset & MASK, offset >> 32, count]
    add("rng", name, params=as_i32(words), want=normals(seed, stream, offset, count))

# ----------------------------------------------------------------------------- super-resolution conditioning
for sigma_aug, dim in [(0.25, 32), (0.05, 32), (1.7, 16), (0.7, 33)]:
    emb = get_timestep_embedding(torch.log(torch.tensor([sigma_aug], dtype=torch.float32)) / 4, dim,
                                 flip_sin_to_cos=True, downscale_freq_shift=0)
    add("aug", f"s{sigma_aug}.d{dim}", params=np.array([sigma_aug, dim]), want=emb[0].double().numpy())
for c, h, w_, H2, W2, sigma_aug in [(3, 8, 8, 16, 16, 0.25), (3, 5, 7, 12, 9, 0.7)]:
    y_lr = rng.uniform(-1, 1, (c, h, w_)).astype(np.float32)
    eps = torch.randn(c, H2, W2, generator=gen)
    up = torch.nn.functional.interpolate(torch.from_numpy(y_lr).double()[None], size=(H2, W2), mode="bilinear",
                                         align_corners=False)[0]
    add("lowres", f"{h}x{w_}to{H2}x{W2}", params=np.array([c, h, w_, H2, W2, sigma_aug]), y_lr=y_lr,
        noise=eps.numpy(), want=(up + sigma_aug * eps).numpy())

# uint8 conversion: random values, out-of-range values, and float32 values whose (x + 1) * 127.5 is exactly k + 0.5
halves = []
for k in range(255):
    x = np.float32((k + 0.5) / 127.5 - 1)
    for _ in range(40):
        v = np.float32(np.float32(x + np.float32(1)) * np.float32(127.5))
        if v - np.floor(v) == 0.5:
            halves.append(x)
            break
        x = np.nextafter(x, np.float32(2) if v - np.floor(v) < 0.5 else np.float32(-2))
vals = np.concatenate([np.array(halves, np.float32), np.array([-1, 1, 0, -1.5, 2, -1e-8, 1e-8], np.float32),
                       rng.uniform(-1.1, 1.1, 3 * 12 * 12).astype(np.float32)])
H = W = int(math.ceil(math.sqrt(len(vals) / 3)))
img = np.zeros(3 * H * W, np.float32)
img[:len(vals)] = vals
img = img.reshape(3, H, W)
u8 = ((torch.from_numpy(img).float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0)
tensors["rgb8.x"], tensors["rgb8.want"] = img, u8.numpy().astype(np.int32)
meta["rgb8.halves"] = len(halves)

meta.update({f"cases.{k}": ",".join(v) for k, v in cases.items()})
meta["generator"] = f"test/gen_sampler.py, torch {torch.__version__}, diffusers {diffusers.__version__}, k-diffusion 0.1.1.post1"
path = os.path.join(ROOT, "test", "ref", "sampler.bin")
blob.write_blob(path, tensors, meta)
print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes, {len(halves)} exact-half uint8 cases")
