"""Alignment accuracy of a blob: expert ensemble vs single model, with and without guidance, on
training-combination and held-out prompts (weights/train/world.py eval_prompts), scored by checker.py.

    python weights/eval/evaluate.py --blob weights/ediff-tiny.bin --out /work/ckpt/eval

Writes OUT/results.json (every image's scores), OUT/summary.md (the table of docs/training.md) and
OUT/grid_<split>_<base>_cfg<w>.png (the first 32 images of each setting, prompt order, seed 0).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "train"))
import checker  # noqa: E402
import ediffi  # noqa: E402
import world  # noqa: E402

METRICS = ("all", "colour", "shape", "relation", "size")


def grid(images, cols=8, scale=2):
    rows = [np.concatenate(list(images[i:i + cols]), axis=1) for i in range(0, len(images), cols)]
    rows[-1] = np.pad(rows[-1], ((0, 0), (0, rows[0].shape[1] - rows[-1].shape[1]), (0, 0)))
    g = np.concatenate(rows, axis=0)
    return Image.fromarray(g).resize((g.shape[1] * scale, g.shape[0] * scale), Image.NEAREST)


def run_setting(pipe, prompts, seeds, base, cfg_scale, batch, steps=None, sampler=None):
    """uint8 images [len(prompts) * len(seeds), 64, 64, 3], seed-major."""
    jobs = [(p, s) for s in seeds for p, _ in prompts]
    out = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        imgs = pipe.generate([p for p, _ in chunk], [1000 * s + j for j, (_, s) in enumerate(chunk, start=i)],
                             base=base, cfg_scale=cfg_scale, steps=steps, sampler=sampler)
        out.append(ediffi.to_uint8(imgs))
    return np.concatenate(out)


def background_style(img):
    """(tone, texture) of a generated image's background: pixels > 100 from every named colour."""
    d = np.linalg.norm(img[:, :, None, :].astype(np.float32) - checker.PALETTE[None, None], axis=-1).min(-1)
    bg = img[d > 100].astype(np.float32).mean(-1)
    if bg.size < 64:
        return None, None
    striped = (np.abs(bg - np.median(bg)) > 10).mean() > 0.2      # stripes: ~half the background is offset
    return ("light" if bg.mean() > 128 else "dark"), ("striped" if striped else "plain")


def style_transfer(pipe, n, cfg_scale, batch, seed=0):
    """Does the CLIP image embedding of a style image carry its background tone and texture? Each prompt is
    generated with the style image of another, random scene; accuracy = output style == style image's."""
    rng = np.random.default_rng([seed, 2])
    prompts = world.eval_prompts("train", n, seed=seed)
    styles = [world.sample_scene(rng)["style"] for _ in range(n)]
    images = [Image.fromarray(world.render(dict(world.sample_scene(rng), style=st))) for st in styles]
    out = {"tone": [], "texture": []}
    for i in range(0, n, batch):
        imgs = ediffi.to_uint8(pipe.generate([p for p, _ in prompts[i:i + batch]], list(range(i, min(i + batch, n))),
                                             style_images=images[i:i + batch], cfg_scale=cfg_scale))
        for img, st in zip(imgs, styles[i:i + batch]):
            tone, texture = background_style(img)
            out["tone"].append(tone == st["tone"])
            out["texture"].append(texture == st["texture"])
    return {k: float(np.mean(v)) for k, v in out.items()}


def plain(value):
    """numpy scalars (the checker's bools and floats) as JSON values."""
    return value.item()


def summarize(scores):
    out = {}
    for m in METRICS:
        vals = [s[m] for s in scores if s[m] is not None and (m != "relation" or s["has_relation"])]
        out[m] = (float(np.mean(vals)), len(vals)) if vals else (None, 0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blob", default=str(ediffi.REPO / "weights/ediff-tiny.bin"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--bases", default="base,base_single")
    ap.add_argument("--cfg", default="1,default", help="guidance scales; 'default' = the blob's base.cfg_scale")
    ap.add_argument("--splits", default="train,heldout")
    ap.add_argument("--steps", type=int, default=None, help="base-stage steps (default: the blob's)")
    ap.add_argument("--sampler", default=None, help="base-stage sampler (default: the blob's)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = ediffi.load_blob(args.blob)
    default_cfg = pipe.stages["base"].meta["cfg_scale"]
    scales = [default_cfg if c == "default" else float(c) for c in args.cfg.split(",")]
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    for split in args.splits.split(","):
        prompts = world.eval_prompts(split, args.prompts, seed=0)
        for base in args.bases.split(","):
            for w in scales:
                name = f"{split}/{base}/cfg{w:g}"
                if name in results:
                    continue
                t0 = time.time()
                imgs = run_setting(pipe, prompts, range(args.seeds), base, w, args.batch, args.steps, args.sampler)
                scores = []
                for k, img in enumerate(imgs):
                    prompt, spec = prompts[k % len(prompts)]
                    s = checker.score(img, spec)
                    scores.append(dict(s, prompt=prompt, seed=k // len(prompts), has_relation=bool(spec["relation"])))
                results[name] = dict(scores=scores, summary=summarize(scores), seconds=time.time() - t0)
                grid(imgs[:32]).save(out / f"grid_{split}_{base}_cfg{w:g}.png")
                summ = results[name]["summary"]
                print(name, " ".join(f"{m} {v[0]:.3f}" for m, v in summ.items() if v[0] is not None),
                      f"({time.time() - t0:.0f} s)", flush=True)
                (out / "results.json").write_text(json.dumps(results, default=plain))
    if "style" not in results:
        results["style"] = {f"cfg{w:g}": style_transfer(pipe, args.prompts, w, args.batch) for w in scales}
        (out / "results.json").write_text(json.dumps(results, default=plain))
    write_summary(results, out / "summary.md", args)


def write_summary(results, path, args):
    lines = [f"Alignment accuracy ({args.prompts} prompts x {args.seeds} seeds per row; 64x64 cascade output; "
             "'all' = colour, shape and relation all right)", "",
             "| prompts | base stage | CFG | all | colour | shape | relation | size (when named) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if name == "style":
            continue
        split, base, cfg = name.split("/")
        s = r["summary"]
        cell = lambda m: "-" if s[m][0] is None else f"{100 * s[m][0]:.1f} %"
        label = {"base": "2-expert ensemble", "base_single": "single model"}.get(base, base)
        lines.append(f"| {split} | {label} | {cfg[3:]} | {cell('all')} | {cell('colour')} | {cell('shape')} | "
                     f"{cell('relation')} | {cell('size')} |")
    lines += ["", "Style from the CLIP image embedding (style image of another scene; background tone / texture of "
              "the output = the style image's; chance is 50 %):", ""]
    lines += [f"- CFG {cfg[3:]}: tone {100 * v['tone']:.1f} %, texture {100 * v['texture']:.1f} %"
              for cfg, v in results.get("style", {}).items()]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
