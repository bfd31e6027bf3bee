"""Real-size check of the encoders (acceptance: same tolerance at the real shapes, C time per encode
next to transformers', peak memory). Random weights at the shapes of t5-small and CLIP ViT-B/32 (text
and vision towers, real vocabularies), converted like the committed references, written to a scratch
folder (default /tmp/ediff_enc_bench, ~0.8 GB) and never committed. Runs the C suite on them.

    .venv/bin/python test/bench_encoders.py [--out DIR] [--threads N]

The C side is `make test` with EDIFF_ENC_BENCH=DIR (test/t_encoders.c walks DIR/enc_ref.bin): it
prints the usual PASS/FAIL lines, then TIME (best of 3 encodes, next to transformers float32 best of 3
on as many threads) and MEM (the C process's VmHWM, RssAnon, RssFile: weights are mmapped, so they
appear as file pages, and only the pages an encode touches).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_encoders as G  # noqa: E402
from transformers import CLIPImageProcessorPil, CLIPTextConfig, CLIPVisionConfig, T5Config  # noqa: E402


def best_ms(fn, runs=3):
    """transformers' time per call: best of `runs` after one warm-up, in milliseconds."""
    with torch.no_grad():
        fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return f"{1e3 * min(times):.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/ediff_enc_bench")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(3)
    ref = G.Ref()
    ref.meta["bench.threads"] = str(args.threads)

    # t5-small shape (v1.0, relu), 77 ids ending in </s>
    ids = rng.integers(2, 32100, 76).tolist() + [1]
    t5 = G.t5_case(ref, "small", T5Config(vocab_size=32128, d_model=512, d_kv=64, num_heads=8, d_ff=2048,
                                          num_layers=6, feed_forward_proj="relu"), seed=41, ids=ids, outdir=args.out)
    ref.meta["t5.small.hf_ms"] = best_ms(lambda: t5(input_ids=torch.tensor([ids])))

    # CLIP ViT-B/32 text tower (the CLIPTextConfig defaults), one OpenAI-style row of 77 ids
    row = [49406] + rng.integers(0, 49406, 20).tolist() + [49407] + [0] * 55
    text = G.clip_text_case(ref, "b32", CLIPTextConfig(projection_dim=512), seed=42, rows=[row], outdir=args.out)
    ref.meta["clip_text.b32.hf_ms"] = best_ms(lambda: text(input_ids=torch.tensor([row])))

    # CLIP ViT-B/32 vision tower (the CLIPVisionConfig defaults) on a 640x480 PNG, default processor
    proc = CLIPImageProcessorPil()
    G.preprocess_case(ref, "b32_640x480", "enc_clip_vision_b32", proc, 640, 480, seed=43, png_dir=args.out)
    vision = G.clip_vision_case(ref, "b32", CLIPVisionConfig(projection_dim=512), seed=44, processor=proc,
                                image="b32_640x480", outdir=args.out)
    img = Image.open(os.path.join(args.out, "enc_img_b32_640x480.png")).convert("RGB")
    ref.meta["clip_vision.b32.hf_ms"] = best_ms(
        lambda: vision(pixel_values=torch.from_numpy(proc(images=img, return_tensors="np")["pixel_values"])))
    ref.write(os.path.join(args.out, "enc_ref.bin"))

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, EDIFF_ENC_BENCH=args.out, OMP_NUM_THREADS=str(args.threads))
    for kind in ("t5", "clip_text", "preprocess", "clip_vision"):     # one process each: separate peak memory
        out = subprocess.run(["make", "--no-print-directory", "-C", root, "test", f"TESTS=encoders.bench.{kind}"],
                             env=env, capture_output=True, text=True)
        print("".join(line + "\n" for line in out.stdout.splitlines() if "encoders.bench" in line), end="")
        if out.returncode:
            print(out.stdout[-2000:], out.stderr[-2000:])


if __name__ == "__main__":
    main()
