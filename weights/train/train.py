"""Train ediff-tiny from a seed: world data, CLIP, base (+T5), base experts, single-model control, super-resolution.

    python weights/train/train.py --run /work/ckpt/run3 --seed 0          # everything, resumable
    python weights/train/train.py --run /work/ckpt/run3 --phases base      # one phase (its inputs must exist)

Each phase saves a checkpoint (weights, EMA, optimizer, step, RNG state) to RUN/PHASE.ckpt.pt every few
minutes and RUN/PHASE.pt when done; rerunning the same command skips finished phases and resumes the current
one. All randomness of a step (batch, sigma, noise, condition drops) comes from a generator seeded with
(seed, phase, step), so a resumed run draws the same batches. Losses go to RUN/log/PHASE.csv.
"""
import argparse
import copy
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import ediffi  # noqa: E402
import world  # noqa: E402

# Phase recipes. steps x batch = training samples; sized for ~3 h on 2 CPU cores (docs/training.md).
RECIPE = {
    "clip": dict(steps=1500, batch=256, lr=1e-3, warmup=200, schedule="cosine", weight_decay=0.1),
    "t5": dict(steps=1200, batch=128, lr=2e-3, warmup=100, schedule="cosine", weight_decay=0.01),
    "base": dict(steps=7000, batch=64, lr=6e-4, warmup=300, schedule="constant", weight_decay=0.01),
    "expert0": dict(steps=600, batch=64, lr=3e-4, warmup=0, schedule="cosine", weight_decay=0.01),
    "expert1": dict(steps=1400, batch=64, lr=3e-4, warmup=0, schedule="cosine", weight_decay=0.01),
    "single": dict(steps=2000, batch=64, lr=3e-4, warmup=0, schedule="cosine", weight_decay=0.01),
    "sr": dict(steps=2400, batch=64, lr=6e-4, warmup=300, schedule="cosine", weight_decay=0.01),
}
PHASES = ["clip", "t5", "base", "expert0", "expert1", "single", "sr"]
# The base stage's experts as quantile cuts of p(sigma) (eDiff-I §4.1, ediffi.md §1.5): the high-noise
# expert E(4, 15) owns the top 1/16 of the mass (sigma >= 1.90), where the layout is decided and the shared
# model is rarely trained; one model owns the rest (the paper's Config-C, with E(4, 15) for its E(9, 511)).
EXPERT_QUANTILES = (0.0, 15 / 16, 1.0)
P_DROP = dict(t5=0.25, clip_text=0.2, clip_image=0.7)     # independent drop rates (docs/training.md)
EMA_HALFLIFE = 25000        # samples (EDM's ema_halflife_kimg, scaled down)
EMA_RAMPUP = 0.1            # halflife <= this fraction of the phase's samples so far (EDM ema_rampup_ratio)
SR_CROP = 32                # SR trains on random 32x32 crops of the 64x64 target (eDiff-I SR1024 style)
SR_AUG_RANGE = (0.002, 0.5)  # ln(sigma_aug) ~ U(ln lo, ln hi) in SR training
CKPT_EVERY_S = 300
DATA_N = 200000


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# ---------------------------------------------------------------------------------------------------
# Utilities


def lr_at(recipe, step):
    warm = recipe["warmup"]
    if step < warm:
        return recipe["lr"] * (step + 1) / warm
    if recipe["schedule"] == "constant":
        return recipe["lr"]
    t = (step - warm) / max(1, recipe["steps"] - warm)
    return recipe["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def ema_update(ema, model, batch, nimg):
    """EDM's EMA: beta = 0.5^(batch / halflife), halflife ramped up with the samples seen (training_loop.py)."""
    halflife = min(EMA_HALFLIFE, nimg * EMA_RAMPUP)
    beta = 0.5 ** (batch / max(halflife, 1e-8))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm.detach(), 1 - beta)


def step_generator(seed, phase, step):
    return torch.Generator().manual_seed(hash((seed, PHASES.index(phase), step)) & 0x7FFFFFFFFFFF)


def save_atomic(obj, path):
    tmp = str(path) + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state():
    return dict(torch=torch.get_rng_state(), numpy=np.random.get_state())


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])


class ThreadTuner:
    """Intra-op threads, 1 or `max_threads`, chosen by measured step times.

    The 2 cores are shared with other jobs: when they are busy, a step with 2 threads can be ~10x slower
    than with 1 (each parallel region waits for a descheduled thread); when they are idle, 2 threads are
    ~1.8x faster. So: run 1 thread; now and then try the other setting for up to TRIAL steps, abandon the
    trial as soon as a step is 1.5x slower than usual, keep the faster setting; after a failed trial wait
    twice as long before the next (up to MAX_WAIT steps); leave 2 threads as soon as they slow down."""

    TRIAL, FIRST, MIN_WAIT, MAX_WAIT = 6, 10, 100, 400

    def __init__(self, max_threads):
        self.max_threads = max_threads
        self.threads, self.trial, self.history, self.reference = 1, None, [], None
        self.next_trial, self.wait = self.FIRST, self.MIN_WAIT
        torch.set_num_threads(1)

    def before(self, step):
        if self.max_threads > 1 and self.trial is None and step >= self.next_trial and len(self.history) >= 5:
            self.trial = dict(keep=self.threads, usual=float(np.median(self.history[-10:])), times=[])
            self.set(self.max_threads if self.threads == 1 else 1)
        self.t0 = time.time()

    def after(self, step):
        dt = time.time() - self.t0
        if self.trial is not None:
            t = self.trial
            t["times"].append(dt)
            if len(t["times"]) >= 2 and (dt > 1.5 * t["usual"] or len(t["times"]) == self.TRIAL):
                better = float(np.median(t["times"][1:])) < t["usual"]     # the first step after a switch warms up
                if not better:
                    self.set(t["keep"])
                self.reference = float(np.median(t["times"][1:])) if better else t["usual"]
                self.wait = self.MIN_WAIT if better else min(2 * self.wait, self.MAX_WAIT)
                self.next_trial, self.trial, self.history = step + self.wait, None, []
            return
        self.history = (self.history + [dt])[-20:]
        if self.threads > 1 and len(self.history) >= 5 and np.median(self.history[-5:]) > 1.5 * self.reference:
            self.set(1)
            self.history, self.next_trial = [], step + self.wait

    def set(self, n):
        if n != self.threads:
            log(f"threads {self.threads} -> {n}")
        self.threads = n
        torch.set_num_threads(n)


class Data:
    """The generated world dataset (uint8 memmaps) and batch assembly."""

    def __init__(self, root):
        self.meta, self.arrays = world.open_dataset(root)
        self.n = self.meta["n"]

    def batch_indices(self, g, batch):
        return torch.randint(0, self.n, (batch,), generator=g).sort().values.numpy()

    def get(self, name, idx):
        return torch.from_numpy(np.ascontiguousarray(self.arrays[name][idx]))

    def images32(self, idx):
        """Base-stage targets: exact 2x2 mean of the 64x64 image, scaled to [-1, 1]."""
        x = self.get("images64", idx).float().view(len(idx), 32, 2, 32, 2, 3).mean(dim=(2, 4))
        return x.permute(0, 3, 1, 2) / 127.5 - 1

    def images64(self, idx):
        return self.get("images64", idx).float().permute(0, 3, 1, 2) / 127.5 - 1


class Phase:
    """Checkpointed training loop of one phase; subclasses define the model, parameters and loss."""

    name = None

    def __init__(self, run, seed, data, recipe, threads=2):
        self.run, self.seed, self.data, self.recipe, self.threads = Path(run), seed, data, recipe, threads
        self.final = self.run / f"{self.name}.pt"
        self.ckpt = self.run / f"{self.name}.ckpt.pt"

    def done(self):
        return self.final.exists()

    def train(self):
        model = self.build()
        params = [p for p in self.trainable(model) if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.recipe["lr"], betas=(0.9, 0.999),
                                weight_decay=self.recipe["weight_decay"])
        ema = copy.deepcopy(model).requires_grad_(False)
        step = 0
        if self.ckpt.exists():
            state = torch.load(self.ckpt, weights_only=False)
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            set_rng_state(state["rng"])
            step = state["step"]
            log(f"{self.name}: resuming at step {step}")
        else:
            self.init_state(model, ema, opt)
        csv_path = self.run / "log" / f"{self.name}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        rows = csv_path.read_text().splitlines()[1:] if csv_path.exists() and step else []
        csv_path.write_text("\n".join(["step,samples,loss,lr,seconds"] + [r for r in rows if int(r.split(",")[0]) <= step]) + "\n")
        batch, steps = self.recipe["batch"], self.recipe["steps"]
        t_save = t_log = time.time()
        losses, t0, done0 = [], time.time(), step
        model.train()
        tuner = ThreadTuner(self.threads)
        while step < steps:
            tuner.before(step)
            lr = lr_at(self.recipe, step)
            for group in opt.param_groups:
                group["lr"] = lr
            g = step_generator(self.seed, self.name, step)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = self.loss(model, g, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            tuner.after(step)
            step += 1
            ema_update(ema, model, batch, step * batch)
            losses.append(loss.item())
            if step % 50 == 0 or step == steps:
                rate = (step - done0) * batch / (time.time() - t0)
                with open(csv_path, "a") as f:
                    csv.writer(f).writerow([step, step * batch, f"{np.mean(losses):.5f}", f"{lr:.3g}",
                                            f"{time.time() - t0:.1f}"])
                if time.time() - t_log > 60 or step == steps:
                    log(f"{self.name} step {step}/{steps} loss {np.mean(losses):.4f} lr {lr:.2e} {rate:.1f} samples/s")
                    t_log = time.time()
                losses = []
            if time.time() - t_save > CKPT_EVERY_S and step < steps:
                save_atomic(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(),
                                 rng=rng_state(), step=step), self.ckpt)
                t_save = time.time()
        save_atomic(dict(model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict(), step=step,
                         param_names=[n for n, p in model.named_parameters() if p.requires_grad],
                         recipe=self.recipe), self.final)
        if self.ckpt.exists():
            self.ckpt.unlink()
        log(f"{self.name}: done, {step * batch} samples")

    def init_state(self, model, ema, opt):
        """Initial weights of a fresh phase (default: as built)."""


# ---------------------------------------------------------------------------------------------------
# CLIP: contrastive pre-training on (image, styled caption) pairs


class ClipPhase(Phase):
    name = "clip"

    def __init__(self, *a):
        super().__init__(*a)
        records = world.load_records(self.data_root)
        keys = [r["key"] for r in records] + [r["neg_key"] for r in records]
        ids = {k: i for i, k in enumerate(sorted(set(keys)))}
        key_ids = torch.tensor([ids[k] for k in keys])         # same key = the caption cannot tell them apart
        self.key_ids, self.neg_key_ids = key_ids[:len(records)], key_ids[len(records):]

    @property
    def data_root(self):
        return self.run / "data"

    def build(self):
        from transformers import CLIPModel
        torch.manual_seed(self.seed)
        return CLIPModel(ediffi.clip_config())

    def trainable(self, model):
        return model.parameters()

    def loss(self, model, g, batch):
        """Symmetric InfoNCE (CLIP) with every pair of equal semantic key counted as a positive; each image
        also scores its caption's hard negative (world.hard_negative: same words, another scene), so the
        text tower must encode which colour goes with which shape and which object is where (NegCLIP)."""
        idx = self.data.batch_indices(g, batch)
        pixels = ediffi.normalize_clip_pixels(self.data.get("clip32", idx))
        ids = torch.cat([self.data.get("clip_style_ids", idx), self.data.get("clip_neg_ids", idx)]).long()
        img = F.normalize(model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output).float(), dim=-1)
        txt = F.normalize(model.text_projection(model.text_model(input_ids=ids).pooler_output).float(), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T           # [B images, B captions + B negatives]
        k = self.key_ids[idx]
        k_txt = torch.cat([k, self.neg_key_ids[idx]])
        target = (k[:, None] == k_txt[None, :]).float()
        i2t = F.cross_entropy(logits, target / target.sum(1, keepdim=True))
        target = target[:, :batch].T
        t2i = F.cross_entropy(logits[:, :batch].T, target / target.sum(1, keepdim=True))
        return (i2t + t2i) / 2


class T5Phase(Phase):
    """T5 learns what the captions mean as T5 learns everything, text to text (Raffel et al. 2020): an
    encoder-decoder T5 (the encoder of docs/model.md, a 2-layer decoder) is trained to rewrite each
    diffusion caption into its canonical description (world.canonical): "below a blue square there is a
    red circle" -> "red circle above blue square". To do that the encoder's token states must say which
    colour goes with which shape and which object is on top or on the left, whatever the wording; that is
    what the denoisers' cross-attention reads. There is no pretrained T5 this small; eDiff-I's T5-XXL brings
    that understanding from its own pretraining, and this phase is the stand-in. The decoder is discarded
    and the encoder frozen from here on, as eDiff-I's T5 is."""

    name = "t5"
    DECODER_LAYERS = 2
    TARGET_TOKENS = 16

    def __init__(self, *a):
        super().__init__(*a)
        tok = ediffi.T5Tokenizer(max_tokens=self.TARGET_TOKENS)
        cache = {}
        targets = np.full((self.data.n, self.TARGET_TOKENS), -100, np.int64)      # -100: ignored by the loss
        for i, r in enumerate(world.load_records(self.run / "data")):
            text = world.canonical(json.loads(r["content"]))
            ids = cache.setdefault(text, tok(text))
            targets[i, :len(ids)] = ids
        self.targets = torch.from_numpy(targets)

    def build(self):
        from transformers import T5ForConditionalGeneration
        torch.manual_seed(self.seed + 3)
        config = ediffi.t5_config()
        config.update(dict(is_encoder_decoder=True, num_decoder_layers=self.DECODER_LAYERS,
                           decoder_start_token_id=0, pad_token_id=0, tie_word_embeddings=False))
        return nn.ModuleDict(dict(t5=T5ForConditionalGeneration(config)))

    def trainable(self, model):
        return model.parameters()

    def loss(self, model, g, batch):
        idx = self.data.batch_indices(g, batch)
        ids = self.data.get("t5_ids", idx).long()
        return model["t5"](input_ids=ids, attention_mask=(ids != 0).long(), labels=self.targets[idx]).loss


def load_encoders(run, with_t5=True):
    """The frozen encoders: CLIP (EMA of the clip phase) and T5 (EMA of the t5 phase)."""
    from transformers import CLIPModel, T5EncoderModel
    clip = CLIPModel(ediffi.clip_config())
    clip.load_state_dict(torch.load(Path(run) / "clip.pt", weights_only=False)["ema"])
    t5 = None
    if with_t5:
        t5 = T5EncoderModel(ediffi.t5_config())
        ema = torch.load(Path(run) / "t5.pt", weights_only=False)["ema"]
        t5.load_state_dict({k[3:]: v for k, v in ema.items() if k.startswith(("t5.shared.", "t5.encoder."))})
    enc = ediffi.Encoders(t5=t5, clip=clip)
    return enc.eval().requires_grad_(False)


@torch.no_grad()
def precompute_image_embeds(run, data):
    """clip_image_embed of every training image (frozen CLIP), cached in RUN/clip_image_embed.npy."""
    path = Path(run) / "clip_image_embed.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    enc = load_encoders(run, with_t5=False)
    out = np.empty((data.n, ediffi.CLIP_EMBED), np.float32)
    for s in range(0, data.n, 1024):
        idx = np.arange(s, min(s + 1024, data.n))
        out[idx] = enc.encode_image(ediffi.normalize_clip_pixels(data.get("clip32", idx))).numpy()
    np.save(path, out)
    log(f"clip image embeddings cached: {path}")
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------------------------------
# Denoisers


class DenoiserPhase(Phase):
    """Shared batch assembly: conditioning from the (frozen or trained) encoders with independent drops."""

    stage = "base"
    quantiles = (0.0, 1.0)

    def __init__(self, *a):
        super().__init__(*a)
        self.image_embeds = precompute_image_embeds(self.run, self.data)
        self.encoders = load_encoders(self.run)

    def conditions(self, idx, g):
        batch = len(idx)
        t5_ids = self.data.get("t5_ids", idx).long()
        with torch.no_grad():
            clip_tokens, clip_text_embed = self.encoders.encode_clip_text(self.data.get("clip_ids", idx).long())
            t5_tokens = self.encoders.encode_t5(t5_ids, (t5_ids != 0).long())
        cond = dict(t5_tokens=t5_tokens, clip_tokens=clip_tokens, clip_text_embed=clip_text_embed,
                    clip_image_embed=self.image_embeds[torch.from_numpy(idx)])
        keep = {k: (torch.rand(batch, generator=g) >= p).float() for k, p in P_DROP.items()}
        return ediffi.drop_conditions(cond, keep["t5"], keep["clip_text"], keep["clip_image"])

    def sigmas(self, g, batch):
        return ediffi.sample_sigma(batch, g, *self.quantiles)


class BasePhase(DenoiserPhase):
    """The shared base model on the full p(sigma) (the encoders frozen)."""

    name = "base"

    def build(self):
        torch.manual_seed(self.seed + 1)
        return ediffi.Expert("base")

    def trainable(self, model):
        return model.parameters()

    def loss(self, model, g, batch):
        idx = self.data.batch_indices(g, batch)
        cond = self.conditions(idx, g)
        y = self.data.images32(idx)
        return ediffi.edm_loss(model, y, self.sigmas(g, batch), cond, noise=torch.randn(y.shape, generator=g))


class FineTunePhase(DenoiserPhase):
    """Continue the shared model (weights = its EMA, Adam moments kept): an expert on its equal-mass sigma
    interval (eDiff-I §4.1), or the single-model control on all of p(sigma)."""

    def build(self):
        return ediffi.Expert("base")

    def trainable(self, model):
        return model.parameters()

    def init_state(self, model, ema, opt):
        base = torch.load(self.run / "base.pt", weights_only=False)
        model.load_state_dict(base["ema"])
        ema.load_state_dict(base["ema"])
        names = [n for n, _ in model.named_parameters()]
        moments = {n: base["opt"]["state"][i] for i, n in enumerate(base["param_names"]) if i in base["opt"]["state"]}
        state = opt.state_dict()
        state["state"] = {i: moments[n] for i, n in enumerate(names)}
        opt.load_state_dict(state)

    def loss(self, model, g, batch):
        idx = self.data.batch_indices(g, batch)
        cond = self.conditions(idx, g)
        y = self.data.images32(idx)
        return ediffi.edm_loss(model, y, self.sigmas(g, batch), cond, noise=torch.randn(y.shape, generator=g))


def expert_phase(k):
    class ExpertPhase(FineTunePhase):
        name = f"expert{k}"
        quantiles = EXPERT_QUANTILES[k:k + 2]
    return ExpertPhase


class SinglePhase(FineTunePhase):
    name = "single"


class SRPhase(DenoiserPhase):
    """Super-resolution 32 -> 64 on random crops; z_lr = up(y_lr) + sigma_aug n, sigma_aug log-uniform."""

    name = "sr"
    stage = "sr"

    def build(self):
        torch.manual_seed(self.seed + 2)
        return ediffi.Expert("sr")

    def trainable(self, model):
        return model.parameters()

    def loss(self, model, g, batch):
        idx = self.data.batch_indices(g, batch)
        cond = self.conditions(idx, g)
        y64 = self.data.images64(idx)
        y_lr = self.data.images32(idx)
        lo, hi = SR_AUG_RANGE
        sigma_aug = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(batch, generator=g))
        z_lr = ediffi.upsample_lowres(y_lr, 64) + sigma_aug.view(-1, 1, 1, 1) * torch.randn(y64.shape, generator=g)
        top, left = torch.randint(0, 64 - SR_CROP + 1, (2,), generator=g).tolist()
        crop = lambda t: t[:, :, top:top + SR_CROP, left:left + SR_CROP]
        cond["sigma_aug"] = sigma_aug
        y = crop(y64)
        return ediffi.edm_loss(model, y, self.sigmas(g, batch), cond, z_lr=crop(z_lr),
                               noise=torch.randn(y.shape, generator=g))


PHASE_CLASSES = {"clip": ClipPhase, "t5": T5Phase, "base": BasePhase, "expert0": expert_phase(0), "expert1": expert_phase(1),
                 "single": SinglePhase, "sr": SRPhase}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="checkpoint directory (outside git)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--data-n", type=int, default=DATA_N)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every phase's steps (pilot runs)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    config = dict(seed=args.seed, data_n=args.data_n, scale=args.scale)
    cfg_path = run / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != config:
        sys.exit(f"{cfg_path} holds {cfg_path.read_text()}; use a new --run for other settings")
    cfg_path.write_text(json.dumps(config))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    world.generate_dataset(run / "data", args.data_n, args.seed)
    data = Data(run / "data")
    for name in args.phases.split(","):
        recipe = dict(RECIPE[name], steps=max(1, round(RECIPE[name]["steps"] * args.scale)))
        phase = PHASE_CLASSES[name](run, args.seed, data, recipe, args.threads)
        if phase.done():
            log(f"{name}: already done")
            continue
        t0 = time.time()
        phase.train()
        log(f"{name}: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
