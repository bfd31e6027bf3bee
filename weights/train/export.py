"""Write the ediff blob of a finished training run (docs/model.md; format: weights/blob.py).

    python weights/train/export.py --run /work/ckpt/run3 --out weights/ediff-tiny.bin

Every module is the EMA of its phase: T5 from 'base', CLIP from 'clip', stage 'base' = experts 'expert0',
'expert1', stage 'base_single' = 'single', stage 'sr' = 'sr'. Weights are stored as f16.
"""
import argparse
import gzip
import math
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import ediffi  # noqa: E402
from blob import write_blob  # noqa: E402
from train import EXPERT_QUANTILES  # noqa: E402

# Default sampling settings of each stage (chosen in docs/training.md, "Sampling defaults").
SAMPLING = {
    "base": dict(steps=16, sampler="heun", cfg_scale=3.0, sigma_min=0.002, sigma_max=80.0, rho=7.0),
    "sr": dict(steps=8, sampler="heun", cfg_scale=1.0, sigma_min=0.002, sigma_max=80.0, rho=7.0, aug_sigma=0.05),
}
STAGE_PHASES = {"base": ["expert0", "expert1"], "base_single": ["single"], "sr": ["sr"]}
CLIP_TEXT_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "max_position_embeddings", "hidden_act", "layer_norm_eps", "projection_dim"]
CLIP_VISION_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act",
                    "layer_norm_eps", "projection_dim", "image_size", "patch_size", "num_channels"]


def meta_value(v):
    """Metadata text of a config value: lists comma-joined, None 'none', booleans 'true'/'false'."""
    if isinstance(v, (list, tuple)):
        return ",".join(meta_value(x) for x in v)
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else repr(v)
    return str(v)


def ema(run, phase):
    return torch.load(Path(run) / f"{phase}.pt", weights_only=False)["ema"]


def encoder_tensors(run):
    out = {}
    for k, v in ema(run, "t5").items():
        # encoder.embed_tokens.weight is the same tensor as shared.weight (tied); the blob keeps shared.weight
        # the t5 phase trains an encoder-decoder; the blob keeps the encoder (docs/training.md)
        if k.startswith(("t5.shared.", "t5.encoder.")) and k != "t5.encoder.embed_tokens.weight":
            out[k] = v
    for k, v in ema(run, "clip").items():
        if k != "logit_scale" and not k.endswith("position_ids"):      # similarity temperature: not inference
            out["clip." + k] = v
    return out


def stage_tensors(run, stage):
    out = {}
    for k, phase in enumerate(STAGE_PHASES[stage]):
        for name, v in ema(run, phase).items():
            out[f"{stage}.{k}.{name}"] = v      # names are unet.* and cond.* already
    return out


def tokenizer_tensors():
    merges = gzip.open(ediffi.CLIP_MERGES).read().decode("utf-8").split("\n")[:48895]
    return {"tokenizer.clip_merges": np.frombuffer(("\n".join(merges) + "\n").encode("utf-8"), np.uint8),
            "tokenizer.t5_spiece": np.frombuffer(ediffi.T5_SPIECE.read_bytes(), np.uint8)}


def metadata():
    t5, clip = ediffi.t5_config(), ediffi.clip_config()
    meta = {"ediff.model": "ediff-tiny",
            "ediff.description": "architecture-true tiny eDiff-I (T5 + CLIP text + CLIP image conditioning, "
                                 "2-expert base 32x32, super-resolution to 64x64) trained on ediff's procedural "
                                 "shapes world (weights/train/world.py)",
            "stages": "base,sr", "stage_alternatives": "base_single:base"}
    meta.update({f"t5.{k}": meta_value(getattr(t5, k)) for k in ediffi.T5_KEYS})
    meta["t5.max_tokens"] = str(ediffi.T5_MAX_TOKENS)
    meta.update({f"clip.text.{k}": meta_value(getattr(clip.text_config, k)) for k in CLIP_TEXT_KEYS})
    meta.update({f"clip.vision.{k}": meta_value(getattr(clip.vision_config, k)) for k in CLIP_VISION_KEYS})
    meta["clip.vision.image_mean"] = meta_value(ediffi.CLIP_MEAN)
    meta["clip.vision.image_std"] = meta_value(ediffi.CLIP_STD)
    for stage, phases in STAGE_PHASES.items():
        kind = "sr" if stage == "sr" else "base"
        unet = ediffi.unet_config(kind)
        sampling = SAMPLING[kind]
        bounds = ediffi.expert_bounds(EXPERT_QUANTILES if stage == "base" else np.linspace(0, 1, len(phases) + 1))
        meta[f"{stage}.resolution"] = str(unet["sample_size"])
        meta[f"{stage}.experts"] = str(len(phases))
        for k, (lo, hi) in enumerate(bounds):
            meta[f"{stage}.{k}.sigma_lo"] = meta_value(float(lo))
            meta[f"{stage}.{k}.sigma_hi"] = meta_value(float(hi))
        meta[f"{stage}.sigma_data"] = meta_value(ediffi.SIGMA_DATA)
        for key in ("sigma_min", "sigma_max", "rho"):
            meta[f"{stage}.{key}"] = meta_value(sampling[key])
        meta[f"{stage}.p_mean"] = meta_value(ediffi.P_MEAN)
        meta[f"{stage}.p_std"] = meta_value(ediffi.P_STD)
        for key in ("steps", "sampler", "cfg_scale"):
            meta[f"{stage}.{key}"] = meta_value(sampling[key])
        if kind == "sr":
            meta[f"{stage}.lowres_upsample"] = "bilinear"
            meta[f"{stage}.aug_sigma"] = meta_value(sampling["aug_sigma"])
            meta[f"{stage}.aug_dim"] = str(ediffi.AUG_DIM)
        full = dict(ediffi.Expert(kind).unet.config)
        for k in range(len(phases)):
            for key, v in full.items():
                if not key.startswith("_"):
                    meta[f"{stage}.{k}.unet.{key}"] = meta_value(v)
            for key, v in ediffi.cond_config(kind).items():
                meta[f"{stage}.{k}.cond.{key}"] = meta_value(v)
    return meta


def export(run, out):
    tensors = {k: v.float().numpy() for k, v in {**encoder_tensors(run), **stage_tensors(run, "base"),
                                                  **stage_tensors(run, "base_single"), **stage_tensors(run, "sr")}.items()}
    big = max(float(np.abs(v).max()) for v in tensors.values())
    assert big < 60000, f"a weight of magnitude {big} does not fit f16"
    tensors.update(tokenizer_tensors())
    write_blob(out, tensors, metadata(), dtype="f16")
    n = sum(v.size for k, v in tensors.items() if not k.startswith("tokenizer."))
    print(f"wrote {out}: {len(tensors)} tensors, {n / 1e6:.2f}M weights, {Path(out).stat().st_size / 2**20:.2f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", default=str(ediffi.REPO / "weights/ediff-tiny.bin"))
    args = ap.parse_args()
    export(args.run, args.out)
