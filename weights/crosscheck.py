"""Cross-check ediff against PyTorch, layer by layer (docs/crosscheck.md).

    .venv/bin/python weights/crosscheck.py BLOB DUMPDIR [--tol 1e-4] [--double] [--failures] [--json FILE]

DUMPDIR is what `./ediff ... --model BLOB --dump DUMPDIR` wrote: `.npy` files named after the modules that
produced them and `run.json` (the invocation, every setting as the run resolved it, and the names in the
order ediff computed them). This script loads the same blob into `transformers` (T5EncoderModel, CLIPModel)
and `diffusers` (UNet2DConditionModel) modules with eDiff-I's conditioning and EDM experts from
weights/ediffi.py, runs the same prompt, seed, settings and noise (the dumped initial noise, SR
augmentation noise and, for stochastic samplers, each step's noise) through k-diffusion's samplers,
records every module whose name ediff dumped with a forward hook, and prints one row per dumped tensor:

    name  shape  max-abs  max-rel  status

max-abs = max |ediff - torch|, max-rel = max-abs / max |torch|. A tensor fails when
max-abs > tol * max(1, max |torch|) (absolute for small tensors, relative for large ones); token ids and
the expert index must match exactly. The first failing tensor in ediff's execution order is marked
"FIRST DIVERGENT": the first module whose output differs, usually the one to look at. Inputs read from the
dump (noise) are listed as "input". Exit status: 0 all within tolerance, 1 a tensor fails (or could not be
compared), 2 bad usage or a dump it cannot rerun (a noise or paint map left out by --dump-filter).

Paths in run.json (style image) are relative to where ediff ran: run this from the same directory.
"""
import argparse
import contextlib
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ediffi  # noqa: E402


# ---------------------------------------------------------------------------------------------------
# The blob as PyTorch modules


def stop(message):
    """One line on stderr and exit status 2: the blob or the dump cannot be used."""
    print(f"crosscheck: {message}", file=sys.stderr)
    sys.exit(2)


def load_pipeline(path, run):
    """(Encoders, {stage name: ediffi.Stage}, metadata) of the blob, read by ediffi.load_blob as ediff reads it
    (tokenizer files from the blob); every stage that run.json names must be there."""
    try:
        pipe = ediffi.load_blob(path)
    except KeyError as e:
        stop(f"{path}: metadata {e} missing")
    except (OSError, ValueError) as e:
        stop(f"{path}: {e}")
    missing = [st["name"] for st in run["stages"] if st["name"] not in pipe.stages]
    if missing:
        stop(f"{path}: no stage {missing[0]!r}, which the dump ran")
    return pipe.encoders, dict(pipe.stages.items()), pipe.meta


def clip_processor(meta):
    """transformers' CLIPImageProcessor (Pillow path) with the blob's preprocessing (docs/encoders.md)."""
    from transformers import CLIPImageProcessorPil
    size = int(meta.get("clip.vision.image_size", 224))
    floats = lambda key, d: [float(v) for v in meta[key].split(",")] if key in meta else d  # noqa: E731
    return CLIPImageProcessorPil(
        size={"shortest_edge": int(meta.get("clip.vision.shortest_edge", size))},
        crop_size={"height": int(meta.get("clip.vision.crop_height", size)),
                   "width": int(meta.get("clip.vision.crop_width", size))},
        rescale_factor=float(meta.get("clip.vision.rescale_factor", 1 / 255)),
        image_mean=floats("clip.vision.image_mean", list(ediffi.CLIP_MEAN)),
        image_std=floats("clip.vision.image_std", list(ediffi.CLIP_STD)))


# ---------------------------------------------------------------------------------------------------
# Comparing with the dump


class Recorder:
    """Compares tensors with the dump as they are computed: record(name, x) when `scope/name` was dumped.
    Forward hooks on every module report `scope/PREFIX<module path>`; the driver sets `scope`."""

    def __init__(self, dumpdir, names, tol, keep=None):
        self.dir, self.tol, self.scope = dumpdir, tol, ""
        self.wanted = set(names)
        self.rows = {}          # name -> dict(shape, abs, rel, ok, status)
        self.keep = keep        # None, or a dict that receives the PyTorch value of each compared tensor

    def load(self, name):
        return np.load(os.path.join(self.dir, name + ".npy"))

    def record(self, name, x, exact=False):
        full = f"{self.scope}/{name}" if self.scope else name
        if full not in self.wanted or full in self.rows:
            return
        got = self.load(full)
        want = np.asarray(x.detach().double().numpy() if torch.is_tensor(x) else x, dtype=np.float64)
        if self.keep is not None:
            self.keep[full] = want
        if got.shape != want.shape:
            self.rows[full] = dict(shape=got.shape, abs=math.inf, rel=math.inf, ok=False,
                                   status=f"shape {list(got.shape)}, torch {list(want.shape)}")
            return
        err = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        ok = err == 0 if exact else err <= self.tol * max(1.0, scale)
        self.rows[full] = dict(shape=got.shape, abs=err, rel=err / scale if scale else err, ok=bool(ok),
                               status="ok" if ok else "FAIL")

    def input(self, name):
        """A tensor the PyTorch run takes from the dump (noise): listed, not compared."""
        full = f"{self.scope}/{name}" if self.scope else name
        if full not in self.wanted:
            stop(f"the dump has no {full}.npy, which the PyTorch run needs "
                             "(was it left out by --dump-filter?)")
        self.rows[full] = dict(shape=None, abs=None, rel=None, ok=True, status="input")
        return torch.from_numpy(self.load(full))

    def hook(self, name):
        """A forward hook reporting the module's output as NAME (the first element of a tuple output; the
        conditioning module's (context, class vector) as NAME.context, NAME.class_labels)."""
        def fn(module, args, out):
            if isinstance(module, ediffi.EDiffIConditioning):
                self.record(name + ".context", out[0])
                self.record(name + ".class_labels", out[1])
                return
            while not torch.is_tensor(out):
                out = out[0] if isinstance(out, (tuple, list)) else out.to_tuple()[0]
            self.record(name, out)
        return fn

    def attach(self, module, prefix):
        """Hooks on every submodule of `module`, named PREFIX + its path (shared modules under each path)."""
        for path, m in module.named_modules(remove_duplicate=False):
            m.register_forward_hook(self.hook(prefix + path if path else prefix.rstrip(".")))


@contextlib.contextmanager
def patched(obj, attr, value):
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)


@contextlib.contextmanager
def scope(rec, name):
    old, rec.scope = rec.scope, name
    try:
        yield
    finally:
        rec.scope = old


# ---------------------------------------------------------------------------------------------------
# The run, in PyTorch


def encode_text(encoders, rec, run, text, dtype, d_t5, d_clip, embed):
    """T5 tokens [1, L5, d] (encoder on the unpadded ids, zero rows after), CLIP tokens, pooled embedding;
    ids and every encoder module compared (scope set by the caller)."""
    L5 = run["t5_max_tokens"]
    t5_tokens = torch.zeros(1, L5, d_t5, dtype=dtype)
    if not run["no_t5"]:
        ids = torch.tensor([encoders.t5_tokenizer(text)])
        rec.record("t5.input_ids", ids, exact=True)
        t5_tokens[:, :ids.shape[1]] = encoders.encode_t5(ids, torch.ones_like(ids))
    clip_tokens = torch.zeros(1, ediffi.CLIP_CONTEXT, d_clip, dtype=dtype)
    clip_text_embed = torch.zeros(1, embed, dtype=dtype)
    if not run["no_clip_text"]:
        ids = torch.tensor([encoders.clip_tokenizer(text)])
        rec.record("clip.input_ids", ids, exact=True)
        clip_tokens, clip_text_embed = encoders.encode_clip_text(ids)
    if not run["no_t5"]:
        rec.record("t5_tokens", t5_tokens)
    if not run["no_clip_text"]:
        rec.record("clip_tokens", clip_tokens)
        rec.record("clip_text_embed", clip_text_embed)
    return dict(t5_tokens=t5_tokens, clip_tokens=clip_tokens, clip_text_embed=clip_text_embed)


def karras_or_ddpm(st, K, dtype):
    """The sampler's noise levels: Karras et al. (k-diffusion get_sigmas_karras), or for ddpm the
    sigmas of diffusers DDPMScheduler's "leading" timesteps (linear betas 1e-4..0.02, 1000 steps)."""
    if st["sampler"] == "ddpm":
        from diffusers import DDPMScheduler
        sched = DDPMScheduler(timestep_spacing="leading")
        sched.set_timesteps(st["steps"])
        abar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)[sched.timesteps]
        return torch.cat([torch.sqrt((1 - abar) / abar), torch.zeros(1, dtype=torch.float64)]).to(dtype)
    return K.get_sigmas_karras(st["steps"], float(st["sigma_min"]), float(st["sigma_max"]), float(st["rho"])).to(dtype)


def run_stage(stage, st, rec, conds, guided_scale, y_lr, dtype, K, paint_weight):
    """One stage: x = sigma_0 n (n read from the dump), the guided expert ensemble sampled by k-diffusion;
    returns the clamped output. Names follow ediff's StageDump (STAGE/stepNN/callM/...)."""
    name, R = st["name"], st["resolution"]
    sigmas = karras_or_ddpm(st, K, dtype)
    painter = None
    with scope(rec, name):
        maps = [n.split("/", 1)[1] for n in rec.wanted if n.startswith(name + "/paint.")]
        if maps:                                  # the dump's S/paint.HxW, keyed by pixel count; weight set per call
            painter = ediffi.PaintWithWords({int(np.prod([int(v) for v in m[6:].split("x")])): rec.input(m)
                                             for m in maps})
            for expert in stage.experts:
                expert.unet.set_attn_processor(painter)
        rec.record("sigmas", sigmas)
        n = rec.input("noise").to(dtype)
        z_lr = None
        if st["sr"]:
            z_lr = ediffi.upsample_lowres(y_lr, R) + float(st["aug_sigma"]) * rec.input("aug_noise").to(dtype)
            rec.record("z_lr", z_lr)
    heun = st["sampler"] == "heun"
    steps = st["steps"]
    calls = [2 if heun and sigmas[i + 1] > 0 else 1 for i in range(steps)]
    counter = dict(step=0, call=0)
    stochastic = st["sampler"] in ("euler_a", "ddpm") or float(st["s_churn"]) > 0

    def step_noise(i):
        with scope(rec, f"{name}/step{i:02d}"):
            return rec.input("noise").to(dtype)

    def denoise(x, sigma):
        i, c = counter["step"], counter["call"]
        call = f"{name}/step{i:02d}/call{c}"
        s = float(sigma.flatten()[0])
        k = stage.expert_for(s)
        expert = stage.experts[k]
        c_skip, c_out, c_in, c_noise = ediffi.edm_precond(sigma.to(dtype), expert.sigma_data)
        with scope(rec, call):
            rec.record("x", x)
            rec.record("sigma", sigma)
            rec.record("expert", np.array([k], np.int32), exact=True)
            for key, v in (("c_skip", c_skip), ("c_out", c_out), ("c_in", c_in), ("c_noise", c_noise)):
                rec.record(key, v)
        out = {}
        for branch, cond in conds.items():
            if painter:
                painter.weight = paint_weight * math.log1p(s) if branch == "cond" else 0.0
            with scope(rec, f"{call}/{branch}"):
                out[branch] = expert(x, sigma.to(dtype), cond, z_lr)
                rec.record("denoised", out[branch])
        d = out["cond"] if "uncond" not in out else out["uncond"] + guided_scale * (out["cond"] - out["uncond"])
        with scope(rec, call):
            rec.record("denoised", d)
        counter["call"] += 1
        if counter["call"] == calls[i]:
            counter.update(step=i + 1, call=0)
        return d

    starts = []                                   # the sample entering each step (= after the previous one)
    kw = dict(disable=True)
    sampler = st["sampler"]
    churn_noise = contextlib.nullcontext()
    if sampler in ("heun", "euler"):              # k-diffusion draws eps = randn_like(x) as every step begins
        kw.update(s_churn=float(st["s_churn"]), s_tmin=float(st["s_tmin"]), s_tmax=float(st["s_tmax"]),
                  s_noise=float(st["s_noise"]))

        def randn_like(x, *args, **kwargs):
            starts.append(x)
            return step_noise(len(starts) - 1) if stochastic else torch.zeros_like(x)
        churn_noise = patched(torch, "randn_like", randn_like)
    else:
        kw["callback"] = lambda info: starts.append(info["x"])
        if sampler in ("euler_a", "ddpm"):        # ddpm = euler_a with eta 1, s_noise 1 on the DDPM grid
            draws = iter(range(steps))
            kw.update(eta=1.0 if sampler == "ddpm" else float(st["eta"]),
                      s_noise=1.0 if sampler == "ddpm" else float(st["s_noise"]),
                      noise_sampler=lambda s, s_next: step_noise(next(draws)))
    fn = {"heun": K.sample_heun, "euler": K.sample_euler, "euler_a": K.sample_euler_ancestral,
          "ddpm": K.sample_euler_ancestral, "dpmpp2m": K.sample_dpmpp_2m}[sampler]
    with churn_noise:
        x = fn(denoise, (n * sigmas[0]).reshape(1, 3, R, R), sigmas, **kw)
    samples = starts[1:] + [x]
    with scope(rec, name):
        for i, xs in enumerate(samples):
            rec.record(f"step{i:02d}/sample", xs)
        out = x.clamp(-1, 1)
        rec.record("out", out)
    return out


def crosscheck(blob, dumpdir, tol=1e-4, double=False, keep=None):
    """Rerun the dump's invocation in PyTorch; returns (run, rows in ediff's order). keep: a dict that
    receives PyTorch's value of every compared tensor (test/gen_default.py stores them as references)."""
    with open(os.path.join(dumpdir, "run.json")) as f:
        run = json.load(f)
    if run.get("paint") and not any("/paint." in n for n in run["tensors"]):
        stop("a --paint run needs its paint maps (STAGE/paint.HxW) in the dump: "
                         "dump again without a --dump-filter that leaves them out")
    dtype = torch.float64 if double else torch.float32
    torch.set_grad_enabled(False)
    K = ediffi.load_k_diffusion_sampling()
    encoders, stages, meta = load_pipeline(blob, run)
    encoders.to(dtype)
    for m in stages.values():
        m.to(dtype)
    rec = Recorder(dumpdir, run["tensors"], tol, keep)
    rec.attach(encoders.t5, "t5.")
    rec.attach(encoders.clip, "clip.")
    for s, stage in stages.items():
        for k, expert in enumerate(stage.experts):
            rec.attach(expert.cond, f"{s}.{k}.cond.")
            rec.attach(expert.unet, f"{s}.{k}.unet.")

    d_t5 = encoders.t5.config.d_model
    d_clip = encoders.clip.config.text_config.hidden_size
    embed = encoders.clip.config.projection_dim
    texts = {}
    for key, text in (("prompt", run["prompt"]), ("negative", run["negative_prompt"])):
        if text is not None:
            with scope(rec, key):
                texts[key] = encode_text(encoders, rec, run, text, dtype, d_t5, d_clip, embed)
    image = torch.zeros(1, embed, dtype=dtype)
    if run["style_image"]:
        from PIL import Image
        with scope(rec, "style"):
            pixels = clip_processor(meta)(images=Image.open(run["style_image"]).convert("RGB"),
                                          return_tensors="pt")["pixel_values"].to(dtype)
            rec.record("pixel_values", pixels)
            image = encoders.encode_image(pixels)
            rec.record("clip_image_embed", image)

    zero_text = dict(t5_tokens=torch.zeros_like(texts["prompt"]["t5_tokens"]),
                     clip_tokens=torch.zeros_like(texts["prompt"]["clip_tokens"]),
                     clip_text_embed=torch.zeros_like(texts["prompt"]["clip_text_embed"]))
    y = None
    branch_conds = []
    for st in run["stages"]:                          # ediff prepares every stage's conditioning first
        s, stage = st["name"], stages[st["name"]]
        extra = dict(sigma_aug=torch.full((1,), float(st["aug_sigma"]), dtype=dtype)) if st["sr"] else {}
        conds = {"cond": dict(texts["prompt"], clip_image_embed=image, **extra)}
        if float(st["cfg_scale"]) != 1.0:             # docs/sampling.md §5: negative text or none; image kept in SR
            uncond_image = image if st["sr"] else torch.zeros_like(image)
            conds["uncond"] = dict(texts.get("negative", zero_text), clip_image_embed=uncond_image, **extra)
        for branch, cond in conds.items():
            with scope(rec, f"{s}/{branch}"):
                for expert in stage.experts:
                    expert.cond(**cond)
        branch_conds.append(conds)
    for st, conds in zip(run["stages"], branch_conds):
        y = run_stage(stages[st["name"]], st, rec, conds, float(st["cfg_scale"]), y, dtype, K,
                      float(run["paint_weight"]))

    rows = []
    for name in run["tensors"]:
        row = rec.rows.get(name, dict(shape=None, abs=None, rel=None, ok=False, status="not computed"))
        rows.append(dict(row, name=name))
    return run, rows


def blob_crc(path):
    """The CRC-32 of the blob's header (ediff's "Model hash"), as 8 hex digits."""
    with open(path, "rb") as f:
        head = f.read(64)
    return f"{int.from_bytes(head[56:60], 'little'):08x}"


def print_table(rows, tol, failures_only=False, out=sys.stdout):
    first = next((i for i, r in enumerate(rows) if not r["ok"]), None)
    color = out.isatty()
    width = max(len(r["name"]) for r in rows)
    out.write(f"{'':2}{'tensor':<{width}}  {'shape':<18} {'max-abs':>9} {'max-rel':>9}  status\n")
    for i, r in enumerate(rows):
        if failures_only and r["ok"] and i != first:
            continue
        shape = "" if r["shape"] is None else "[" + ",".join(str(d) for d in r["shape"]) + "]"
        num = lambda v: "" if v is None else f"{v:9.2e}"  # noqa: E731
        mark = ">>" if i == first else ""
        status = r["status"] + ("   <== FIRST DIVERGENT" if i == first else "")
        line = f"{mark:2}{r['name']:<{width}}  {shape:<18} {num(r['abs']):>9} {num(r['rel']):>9}  {status}\n"
        out.write(f"\033[1;31m{line}\033[0m" if color and i == first else line)
    compared = [r for r in rows if r["abs"] is not None]
    bad = [r for r in rows if not r["ok"]]
    worst = max(compared, key=lambda r: r["rel"], default=None)
    out.write(f"\n{len(compared)} tensors compared, {sum(r['status'] == 'input' for r in rows)} inputs, "
              f"{len(bad)} over tolerance {tol:g} (max-abs > tol x max(1, max|torch|))")
    if worst:
        out.write(f"; largest max-rel {worst['rel']:.2e} ({worst['name']})")
    out.write("\n")
    if first is not None:
        out.write(f"first divergent: {rows[first]['name']}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="docs/crosscheck.md")
    ap.add_argument("blob", help="the weight blob ediff ran (--model)")
    ap.add_argument("dumpdir", help="the directory of ediff --dump")
    ap.add_argument("--tol", type=float, default=1e-4, help="tolerance (default 1e-4; see above)")
    ap.add_argument("--double", action="store_true", help="run PyTorch in float64 (default float32)")
    ap.add_argument("--failures", action="store_true", help="print only the failing rows (and the summary)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.exists(os.path.join(args.dumpdir, "run.json")):
        ap.error(f"{args.dumpdir}/run.json not found: give the directory ediff --dump wrote")
    run, rows = crosscheck(args.blob, args.dumpdir, args.tol, args.double)
    print(f"ediff {run['version']} dump of {run['model']} ({run['model_name']}), prompt {run['prompt']!r}, "
          f"seed {run['seed']}; PyTorch {torch.__version__} in {'float64' if args.double else 'float32'}")
    crc = blob_crc(args.blob)
    if crc != run["model_hash"]:
        print(f"note: ediff ran a blob with hash {run['model_hash']}, {args.blob} has {crc}: the weights may differ")
    print_table(rows, args.tol, args.failures)
    if args.json:
        def plain(v):
            return "inf" if isinstance(v, float) and math.isinf(v) else list(v) if isinstance(v, tuple) else v
        with open(args.json, "w") as f:
            json.dump([{k: plain(v) for k, v in r.items()} for r in rows], f, indent=1)
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
