"""Alignment of a training run's base model as it trains (no blob needed): the EMA of RUN/base.ckpt.pt (or
base.pt, or another phase's), sampled at 32x32 with the base stage's settings, scored by checker.py.

    python weights/eval/probe_run.py --run /work/ckpt/run3 [--phase base] [--prompts 64] [--cfg 3]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "train"))
import checker  # noqa: E402
import ediffi  # noqa: E402
import train  # noqa: E402
import world  # noqa: E402
from export import SAMPLING  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--phase", default="base")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--split", default="train")
    ap.add_argument("--cfg", type=float, default=SAMPLING["base"]["cfg_scale"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", help="also write the images as one PNG (evaluate.grid), prompts in order")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    path = run / f"{args.phase}.pt"
    state = torch.load(path if path.exists() else run / f"{args.phase}.ckpt.pt", weights_only=False)
    expert = ediffi.Expert("base")
    expert.load_state_dict(state["ema"])
    stage = ediffi.Stage([expert], [(0.0, float("inf"))], dict(SAMPLING["base"], resolution=32))
    pipe = ediffi.Pipeline(train.load_encoders(run), {"base": stage}).eval().requires_grad_(False)
    prompts = world.eval_prompts(args.split, args.prompts, seed=0)
    imgs = ediffi.to_uint8(pipe.generate([p for p, _ in prompts], list(range(len(prompts))), cfg_scale=args.cfg, sr=False))
    if args.grid:
        from evaluate import grid
        grid(imgs, scale=3).save(args.grid)
    scores = [checker.score(img, spec) for img, (_, spec) in zip(imgs, prompts)]
    rel = [s["relation"] for s, (_, spec) in zip(scores, prompts) if spec["relation"]]
    print(f"{args.phase} step {state['step']} cfg {args.cfg:g}: all {np.mean([s['all'] for s in scores]):.3f} "
          f"colour {np.mean([s['colour'] for s in scores]):.3f} shape {np.mean([s['shape'] for s in scores]):.3f} "
          f"relation {np.mean(rel):.3f} ({len(scores)} prompts)", flush=True)


if __name__ == "__main__":
    main()
