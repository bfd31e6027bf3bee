#!/usr/bin/env python3
"""Convert a PyTorch checkpoint into an ediff blob (docs/blob.md).

    python weights/convert.py IN OUT.bin [--dtype f32|f16|bf16] [--prefix P] [--meta KEY=VALUE ...]

IN is one of
  - a `.safetensors` file (read with the `safetensors` package),
  - a PyTorch state dict `.pt` / `.pth` / `.bin` (torch.load with weights_only=True),
  - a Hugging Face model folder as `transformers` / `diffusers` save it (config.json + weights, sharded
    or not). The folder's config decides the component: T5 -> prefix "t5." and `t5.*` keys; CLIP (whole
    model, text or vision tower) -> "clip." and `clip.text.*` / `clip.vision.*` (plus, for a vision
    tower, the preprocessing of a `preprocessor_config.json` beside it); diffusers
    UNet2DConditionModel -> "unet." and `unet.*`.
Tensor names stay those of the state dict, after the prefix. Non-float buffers (e.g. CLIP's int64
`position_ids`) are not weights and are skipped. Without --dtype every float tensor keeps f32, f16 or
bf16 (f64 becomes f32); with it, every float tensor is stored in that dtype.
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blob  # noqa: E402


# ------------------------------------------------------------------------------ metadata from configs

def flat_value(value):
    """A config value as blob metadata text: lists comma-joined, booleans true/false, None none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(flat_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def config_meta(config, prefix):
    """Every scalar or flat-list field of a HF/diffusers config, as prefix+field -> text.
    Private fields (leading '_'), nested dicts and label maps are left out."""
    meta = {}
    for key, value in config.items():
        if key.startswith("_") or isinstance(value, dict) or key in ("id2label", "label2id", "architectures"):
            continue
        if isinstance(value, (list, tuple)) and any(isinstance(v, (list, tuple, dict)) for v in value):
            continue
        text = flat_value(value)
        if "\n" not in text:
            meta[prefix + key] = text
    return meta


def component_of(config):
    """(tensor prefix, metadata) for a HF/diffusers config.json."""
    kind = config.get("model_type") or config.get("_class_name")
    if kind in ("t5", "mt5", "umt5"):
        return "t5.", config_meta(config, "t5.")
    if kind == "clip":
        meta = config_meta(config.get("text_config", {}), "clip.text.")
        meta.update(config_meta(config.get("vision_config", {}), "clip.vision."))
        # CLIPModel sizes both projections by its own projection_dim; the towers' fields may hold
        # another (default) value, so they are overwritten to keep one truth per tower.
        projection_dim = flat_value(config.get("projection_dim", 512))
        meta["clip.projection_dim"] = meta["clip.text.projection_dim"] = meta["clip.vision.projection_dim"] = projection_dim
        return "clip.", meta
    if kind == "clip_text_model":
        return "clip.", config_meta(config, "clip.text.")
    if kind == "clip_vision_model":
        return "clip.", config_meta(config, "clip.vision.")
    if kind == "UNet2DConditionModel":
        return "unet.", config_meta(config, "unet.")
    raise SystemExit(f"convert.py: unsupported model type {kind!r} in config.json")


def processor_meta(pp, prefix="clip.vision."):
    """A CLIPImageProcessor preprocessor_config.json as the keys the C preprocessing reads:
    shortest_edge, crop_height, crop_width, rescale_factor, image_mean, image_std (docs/encoders.md).
    Absent fields take CLIPImageProcessor's defaults; settings the C side does not implement are refused."""
    for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
        if not pp.get(flag, True):
            raise SystemExit(f"convert.py: preprocessor_config.json sets {flag}=false; ediff always resizes, "
                             "crops, rescales and normalises")
    if pp.get("resample", 3) != 3:
        raise SystemExit(f"convert.py: preprocessor_config.json resample={pp['resample']}; only bicubic (3) is implemented")
    size, crop = pp.get("size", {"shortest_edge": 224}), pp.get("crop_size", {"height": 224, "width": 224})
    shortest = size if isinstance(size, int) else size.get("shortest_edge")
    if shortest is None:
        raise SystemExit(f"convert.py: preprocessor_config.json size={size}; only shortest_edge resizing is implemented")
    height, width = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"])
    return {prefix + "shortest_edge": str(shortest), prefix + "crop_height": str(height),
            prefix + "crop_width": str(width),
            prefix + "rescale_factor": flat_value(float(pp.get("rescale_factor", 1 / 255))),
            prefix + "image_mean": flat_value([float(v) for v in pp.get("image_mean", [0.48145466, 0.4578275, 0.40821073])]),
            prefix + "image_std": flat_value([float(v) for v in pp.get("image_std", [0.26862954, 0.26130258, 0.27577711])])}


# ------------------------------------------------------------------------------ reading checkpoints

def to_numpy(t):
    """A torch tensor as a numpy array; bf16 goes through float32 (exact)."""
    import torch
    if t.dtype == torch.bfloat16:
        return t.float().numpy(), "bf16"
    return t.detach().cpu().numpy(), None


def read_safetensors(path):
    from safetensors import safe_open
    tensors, kinds = {}, {}
    with safe_open(path, framework="pt") as f:
        for name in f.keys():
            tensors[name], kinds[name] = to_numpy(f.get_tensor(name))
    return tensors, kinds


def read_torch(path):
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SystemExit(f"convert.py: {path} does not hold a state dict")
    tensors, kinds = {}, {}
    for name, t in state.items():
        if hasattr(t, "dtype"):
            tensors[name], kinds[name] = to_numpy(t)
    return tensors, kinds


def read_any(path):
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    return read_torch(path)


def read_folder(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors"))) or \
        sorted(glob.glob(os.path.join(folder, "*.bin")) + glob.glob(os.path.join(folder, "*.pt")))
    if not files:
        raise SystemExit(f"convert.py: no weights (*.safetensors, *.bin) in {folder}")
    tensors, kinds = {}, {}
    for path in files:
        t, k = read_any(path)
        tensors.update(t)
        kinds.update(k)
    return config, tensors, kinds


# ------------------------------------------------------------------------------ conversion

def prepare(tensors, kinds, prefix, dtype):
    """Prefixed float tensors and their per-tensor storage dtype."""
    out, overrides = {}, {}
    for name, arr in tensors.items():
        if arr.dtype.kind != "f":
            continue                                     # buffers such as position_ids
        key = prefix + name
        if dtype:
            overrides[key] = dtype
        elif kinds.get(name) == "bf16":
            overrides[key] = "bf16"
        elif arr.dtype == np.float16:
            overrides[key] = "f16"
        else:
            overrides[key] = "f32"
        out[key] = arr.astype(np.float32) if arr.dtype == np.float64 else arr
    return out, overrides


def convert(src, dst, dtype=None, prefix=None, extra_meta=None):
    meta = {}
    if os.path.isdir(src):
        config, tensors, kinds = read_folder(src)
        auto_prefix, meta = component_of(config)
        processor = os.path.join(src, "preprocessor_config.json")
        if auto_prefix == "clip." and any(k.startswith("clip.vision.") for k in meta) and os.path.exists(processor):
            with open(processor) as f:
                meta.update(processor_meta(json.load(f)))
    else:
        tensors, kinds = read_any(src)
        auto_prefix = ""
    prefix = auto_prefix if prefix is None else prefix
    out, overrides = prepare(tensors, kinds, prefix, dtype)
    meta["ediff.source"] = os.path.basename(os.path.normpath(src))
    meta.update(extra_meta or {})
    blob.write_blob(dst, out, meta, dtype_overrides=overrides)
    return len(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help=".safetensors, .pt/.pth/.bin state dict, or a HF model folder")
    ap.add_argument("dst", help="output blob")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], help="store every float tensor in this dtype")
    ap.add_argument("--prefix", help="prepend this to every tensor name (default: from the config, or none)")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra metadata")
    args = ap.parse_args()
    extra = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--meta {item!r}: expected KEY=VALUE")
        extra[key] = value
    n = convert(args.src, args.dst, args.dtype, args.prefix, extra)
    print(f"{args.dst}: {n} tensors")


if __name__ == "__main__":
    main()
