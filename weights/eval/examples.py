"""A 4x4 grid of example outputs (the blob's default cascade and sampling settings, seed 0) with captions.

    python weights/eval/examples.py --blob weights/ediff-tiny.bin --out docs/examples.png
"""
import argparse
import sys
import textwrap
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import ediffi  # noqa: E402

PROMPTS = [
    "a red circle above a blue square", "a small green triangle to the left of a large yellow circle",
    "a blue square below an orange circle", "a purple triangle", "an orange square on top of a green circle",
    "a yellow triangle to the right of a red square", "a large blue circle", "a green square under a purple circle",
    "a red circle and a blue square", "a small orange triangle", "the yellow square left of the purple triangle",
    "a large red triangle beneath a small green square", "one blue triangle right of one orange circle",
    "a purple square", "a green circle over a yellow triangle", "to the left of a red triangle there is a blue circle",
]
SCALE, CAPTION_H = 3, 44


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blob", default=str(ediffi.REPO / "weights/ediff-tiny.bin"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default="base")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    pipe = ediffi.load_blob(args.blob)
    images = ediffi.to_uint8(pipe.generate(PROMPTS, [args.seed] * len(PROMPTS), base=args.base))
    size = images.shape[1] * SCALE
    sheet = Image.new("RGB", (4 * size, 4 * (size + CAPTION_H)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for i, (img, prompt) in enumerate(zip(images, PROMPTS)):
        x, y = (i % 4) * size, (i // 4) * (size + CAPTION_H)
        sheet.paste(Image.fromarray(img).resize((size, size), Image.NEAREST), (x, y))
        draw.multiline_text((x + 4, y + size + 3), "\n".join(textwrap.wrap(prompt, 30)), fill="black", font=font)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
